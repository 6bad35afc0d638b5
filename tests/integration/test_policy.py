#!/usr/bin/env python3
"""Command policy enforced in the agent: the default readonly agent refuses
writes (POLICY_DENIED, return code 126) without ever starting kubectl, allows
reads; a custom policy allows only what it lists; readwrite runs writes; the
policy travels in the register message; /metrics counts the denials.

Real peers: build/asan/aurora-server and aurora-agent, /usr/bin/kubectl (behind
a recording wrapper so the test can see every execution) against the kube API
fixture.  One test speaks to the agent through a minimal WebSocket server
written here (stdlib only) to read the register message verbatim."""

import base64
import hashlib
import json
import os
import socket
import struct
import threading
import time

from harness import (KUBECTL, check, cluster_id_for, contains, eq, main, suite_world, test,
                     wait_until)


def recording_kubectl(t):
    """A kubectl wrapper that appends its argv to a file, then runs the real kubectl."""
    log = os.path.join(t.tmp, "kubectl-calls.log")
    path = os.path.join(t.tmp, "kubectl-rec")
    with open(path, "w") as f:
        f.write("#!/bin/sh\nprintf '%%s\\n' \"$*\" >> '%s'\nexec '%s' \"$@\"\n" % (log, KUBECTL))
    os.chmod(path, 0o755)
    open(log, "w").close()
    return path, log


def calls(log):
    with open(log) as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def policy_agent(t, w, name, env=None):
    tok = w.create_token("pol-%s" % name)
    kpath, klog = recording_kubectl(t)
    e = {"AURORA_KUBECTL_PATH": kpath}
    e.update(env or {})
    a = w.start_agent(tok["token"], name=name, extra_env=e)
    w.wait_connection(tok["cluster_id"])
    return tok["cluster_id"], a, klog


def result(r, what):
    eq(r.status, 200, "%s: HTTP status (%r)" % (what, r))
    return r.json


def expect_denied(w, cid, klog, what, **kw):
    before = calls(klog)
    res = result(w.kubectl(cid, **kw), what)
    eq(res.get("error_code"), "POLICY_DENIED", "%s: error_code (%r)" % (what, res))
    eq(res.get("return_code"), 126, "%s: return_code" % what)
    eq(res.get("success"), False, "%s: success" % what)
    check(res.get("error"), "%s: the refusal must say why" % what, res)
    eq(calls(klog), before, "%s: kubectl must never have been started" % what)
    return res


def metric(agent, name):
    status, body = agent.health("/metrics")
    eq(status, 200, "GET /metrics")
    for line in body.decode().splitlines():
        key, _, value = line.rpartition(" ")
        if key == name:
            return float(value)
    raise AssertionError("metric %s not found in:\n%s" % (name, body.decode()[:3000]))


# ---------------------------------------------------------------------------
@test(timeout=90)
def readonly_default_refuses_writes(t):
    w = suite_world()
    cid, a, klog = policy_agent(t, w, "ro")
    res = expect_denied(w, cid, klog, "delete pod x", args=["delete", "pod", "x"])
    contains(res["error"], "delete", "the refusal names the verb")
    contains(res["error"], "readonly", "the refusal names the policy")
    expect_denied(w, cid, klog, "-n prod delete (verb behind a flag)",
                  args=["-n", "prod", "delete", "pod", "x"])
    expect_denied(w, cid, klog, "exec -it -- sh", args=["--namespace=prod", "exec", "-it", "x", "--", "sh"])
    expect_denied(w, cid, klog, "command string form", command="scale deploy/web --replicas=0")
    expect_denied(w, cid, klog, "get with --kubeconfig", args=["get", "pods", "--kubeconfig", "/etc/passwd"])
    expect_denied(w, cid, klog, "get with -s", args=["get", "pods", "-s", "https://127.0.0.1:1"])
    expect_denied(w, cid, klog, "impersonation", args=["get", "pods", "--as", "system:admin"])
    expect_denied(w, cid, klog, "template file read",
                  args=["get", "pods", "-o", "go-template-file=/var/run/secrets/token"])
    expect_denied(w, cid, klog, "plugin", args=["krew", "install", "evil"])
    cache = os.path.join(t.tmp, "planted-cache")
    expect_denied(w, cid, klog, "--cache-dir writes where the caller says",
                  args=["get", "pods", "--cache-dir=" + cache])
    expect_denied(w, cid, klog, "--cache_dir (pflag reads '_' as '-')",
                  args=["api-resources", "--cache_dir", cache])
    expect_denied(w, cid, klog, "impersonation spelled with '_'",
                  args=["get", "pods", "--as_group", "system:masters"])
    check(not os.path.exists(cache), "kubectl wrote the caller's --cache-dir", cache)
    expect_denied(w, cid, klog, "config view", args=["config", "view", "--raw"])
    expect_denied(w, cid, klog, "rollout restart", args=["rollout", "restart", "deploy/web"])

    # reads run
    res = result(w.kubectl(cid, args=["get", "pods", "-n", "default"]), "get pods")
    eq(res.get("return_code"), 0, "get pods return_code (%r)" % res)
    contains(res.get("output"), "nginx-7c5ddbdf54-x8f2k", "get pods output")
    res = result(w.kubectl(cid, args=["-n", "default", "get", "--raw", "/fixture/echo/ro-ok"]),
                 "get --raw")
    eq(res.get("output"), "ro-ok", "get --raw output")
    res = result(w.kubectl(cid, args=["version", "--client"]), "version --client")
    eq(res.get("return_code"), 0, "version return_code")
    eq(len(calls(klog)), 3, "exactly the three allowed commands ran: %r" % calls(klog))

    # counted
    eq(metric(a, "aurora_agent_policy_denials_total"), 14.0, "policy denials counted")
    status, body = a.health("/metrics")
    contains(body.decode(), 'aurora_agent_commands_total{kind="kubectl",result="policy_denied"} 14',
             "commands by result")
    contains(body.decode(), 'aurora_agent_info{version="aurora-agent-c/', "agent info")
    contains(body.decode(), 'policy_mode="readonly"', "policy mode in info")
    # and logged, naming the verb but no argument values
    log = a.log()
    contains(log, "refused by the readonly policy", "agent log")
    check("/etc/passwd" not in log and "system:admin" not in log,
          "argument values of refused commands stay out of the log", log[-3000:])


@test(timeout=60)
def custom_allows_only_its_list(t):
    w = suite_world()
    cid, a, klog = policy_agent(t, w, "custom", {"AURORA_POLICY_MODE": "custom",
                                                 "AURORA_POLICY_ALLOW": "get",
                                                 "AURORA_POLICY_DENY": ""})
    res = expect_denied(w, cid, klog, "describe under allow=get", args=["describe", "pod", "x"])
    contains(res["error"], "allow list", "the refusal names the allow list")
    # the server shows the policy the agent reported, per live session
    conns = [c for c in w.connections() if c["cluster_id"] == cid]
    eq(len(conns), 1, "connection listed")
    sessions = conns[0].get("sessions")
    eq(len(sessions or []), 1, "one live session")
    eq(sessions[0].get("policy"), {"mode": "custom", "allow": ["get"], "deny": []},
       "policy shown on the connection")
    expect_denied(w, cid, klog, "version under allow=get", args=["version", "--client"])
    res = result(w.kubectl(cid, args=["get", "--raw", "/fixture/echo/custom-ok"]), "get")
    eq(res.get("output"), "custom-ok", "get output")
    eq(len(calls(klog)), 1, "only get ran")


@test(timeout=60)
def readwrite_runs_writes_but_not_credential_flags(t):
    w = suite_world()
    cid, a, klog = policy_agent(t, w, "rw", {"AURORA_POLICY_MODE": "readwrite",
                                             "AURORA_POLICY_DENY": "drain"})
    res = result(w.kubectl(cid, args=["delete", "pod", "x", "-n", "default"]), "delete under readwrite")
    check(res.get("error_code") != "POLICY_DENIED", "readwrite must let delete through", res)
    eq(calls(klog), ["delete pod x -n default"], "kubectl ran the delete")
    expect_denied(w, cid, klog, "deny list under readwrite", args=["drain", "node-1"])
    expect_denied(w, cid, klog, "--token under readwrite", args=["get", "pods", "--token=abc"])


@test(timeout=60)
def bad_policy_settings_stop_the_agent(t):
    w = suite_world()
    tok = w.create_token("pol-bad")
    a = w.start_agent(tok["token"], name="bad", wait=False,
                      extra_env={"AURORA_POLICY_MODE": "custom",
                                 "AURORA_POLICY_ALLOW": "get secrets"})
    wait_until(lambda: not a.proc.alive(), 10, what="the agent to exit")
    eq(a.proc.p.returncode, 2, "exit status on a configuration error")
    contains(a.log(), "RBAC", "the error explains that resources belong in RBAC")
    a.proc.killed = True  # exited on purpose
    b = w.start_agent(tok["token"], name="bad2", wait=False,
                      extra_env={"AURORA_POLICY_MODE": "admin"})
    wait_until(lambda: not b.proc.alive(), 10, what="the agent to exit")
    contains(b.log(), "readonly, readwrite or custom", "the error lists the modes")
    b.proc.killed = True


# ---------------------------------------------------------------------------
# A minimal ws:// server (RFC 6455, stdlib only) to read the register message.
class MiniWsServer:
    def __init__(self, after_register=()):
        self.after_register = list(after_register)  # messages to send once registered
        self.responses = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.messages = []
        self.headers = {}
        self.done = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _recv_exact(self, c, n):
        b = b""
        while len(b) < n:
            chunk = c.recv(n - len(b))
            if not chunk:
                raise EOFError
            b += chunk
        return b

    def _send_text(self, c, text):
        data = text.encode()
        hdr = bytes([0x81]) + (bytes([len(data)]) if len(data) < 126 else
                               bytes([126]) + struct.pack(">H", len(data)))
        c.sendall(hdr + data)

    def _run(self):
        c, _ = self.sock.accept()
        c.settimeout(15)
        try:
            req = b""
            while b"\r\n\r\n" not in req:
                req += c.recv(4096)
            for line in req.decode().split("\r\n")[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    self.headers[k.strip().lower()] = v.strip()
            key = self.headers["sec-websocket-key"]
            acc = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                                                .encode()).digest()).decode()
            c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                       "Sec-WebSocket-Protocol: aurora-tunnel.v2\r\n\r\n" % acc).encode())
            token = self.headers["authorization"].split(" ", 1)[1]
            self._send_text(c, json.dumps({"type": "connected", "cluster_id": cluster_id_for(token),
                                           "cluster_name": "mini", "protocol": 2, "window": 65536}))
            while True:
                h = self._recv_exact(c, 2)
                n = h[1] & 0x7F
                if n == 126:
                    n = struct.unpack(">H", self._recv_exact(c, 2))[0]
                elif n == 127:
                    n = struct.unpack(">Q", self._recv_exact(c, 8))[0]
                mask = self._recv_exact(c, 4) if h[1] & 0x80 else b"\0\0\0\0"
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(self._recv_exact(c, n)))
                if h[0] & 0x0F == 1:
                    self.messages.append(json.loads(data))
                    kind = self.messages[-1].get("type")
                    if kind == "register":
                        self.done.set()
                        for m in self.after_register:
                            self._send_text(c, json.dumps(m))
                    if kind == "command_response" and len(
                            [m for m in self.messages if m.get("type") == "command_response"]) \
                            >= len(self.after_register):
                        self.responses.set()
                elif h[0] & 0x0F == 8:
                    break
        except (EOFError, OSError, KeyError, ValueError):
            pass
        finally:
            self.done.set()
            self.responses.set()
            c.close()
            self.sock.close()


@test(timeout=60)
def register_reports_the_policy(t):
    w = suite_world()  # only for its CA file and helpers; the agent talks to MiniWsServer
    srv = MiniWsServer()
    tok = w.create_token("pol-register")
    a = w.start_agent(tok["token"], name="reg", wait=False, extra_env={
        "NEXT_PUBLIC_WEBSOCKET_URL": "ws://127.0.0.1:%d/kubectl-agent" % srv.port,
        "AURORA_ALLOW_INSECURE_WS": "true",
        "AURORA_POLICY_MODE": "custom",
        "AURORA_POLICY_ALLOW": "@readonly, rollout restart",
        "AURORA_POLICY_DENY": "logs"})
    check(srv.done.wait(20), "the agent never registered", a.log())
    reg = [m for m in srv.messages if m.get("type") == "register"]
    check(reg, "no register message", srv.messages)
    eq(reg[0].get("policy"), {"mode": "custom", "allow": ["@readonly", "rollout restart"],
                              "deny": ["logs"]}, "register.policy")
    eq(reg[0].get("protocol"), 2, "register.protocol")
    eq(reg[0].get("cluster_id"), cluster_id_for(tok["token"]), "register.cluster_id")
    # and how its cloud commands are isolated (agent/cloud.h): Landlock on this kernel
    sbx = (reg[0].get("cloud_exec") or {}).get("sandbox") or {}
    eq((sbx.get("filesystem"), sbx.get("network"), sbx.get("allowed_ports")), (True, True, [443]),
       "register.cloud_exec.sandbox (%r)" % sbx)
    check(sbx.get("landlock_abi", 0) >= 4 and "degraded" not in sbx, "Landlock in force", sbx)
    check("versions" in reg[0]["cloud_exec"], "register.cloud_exec.versions", reg[0]["cloud_exec"])


@test(timeout=60)
def legacy_kubectl_command_goes_through_the_policy(t):
    w = suite_world()
    srv = MiniWsServer(after_register=[
        {"type": "kubectl_command", "command_id": "c-del", "command": "kubectl delete pod x",
         "timeout": 20},
        {"type": "kubectl_command", "command_id": "c-get", "command": "get --raw /fixture/echo/legacy-ok",
         "timeout": 20}])
    tok = w.create_token("pol-legacy")
    kpath, klog = recording_kubectl(t)
    w.start_agent(tok["token"], name="legacy", wait=False, extra_env={
        "NEXT_PUBLIC_WEBSOCKET_URL": "ws://127.0.0.1:%d/kubectl-agent" % srv.port,
        "AURORA_ALLOW_INSECURE_WS": "true", "AURORA_KUBECTL_PATH": kpath})
    check(srv.responses.wait(30), "no command_response", srv.messages)
    resp = {m["command_id"]: m for m in srv.messages if m.get("type") == "command_response"}
    d = resp.get("c-del")
    check(d, "no response for the delete", srv.messages)
    eq(d.get("success"), False, "legacy delete: success")
    eq(d.get("return_code"), 126, "legacy delete: return_code")
    check(str(d.get("error", "")).startswith("POLICY_DENIED: "), "legacy delete: error", d)
    eq(resp.get("c-get", {}).get("output"), "legacy-ok", "legacy get output")
    eq(calls(klog), ["get --raw /fixture/echo/legacy-ok"], "only the get ran")


if __name__ == "__main__":
    main()
