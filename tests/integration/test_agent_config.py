#!/usr/bin/env python3
"""The agent settings the Helm chart sets actually take effect:
network.commandTimeout (AURORA_COMMAND_TIMEOUT_MAX), network.heartbeatInterval
(AURORA_HEARTBEAT_INTERVAL), network.reconnectInterval
(AURORA_RECONNECT_INTERVAL), monitoring.metrics.port (AURORA_METRICS_PORT: own
listener, shared with the health port, or off), the cloud_exec sandbox's
Landlock settings (sandbox.landlock, sandbox.allowedPorts, sandbox.readOnlyPaths,
sandbox.cliEnv), and the same keys from the YAML file named by
AURORA_AGENT_CONFIG (environment wins).

Real peers: build/asan/aurora-server and aurora-agent, /usr/bin/kubectl against
the kube API fixture."""

import ctypes
import http.client
import os
import re
import time

from harness import check, contains, eq, free_port, main, suite_world, test, wait_until


def get(port, path):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=15)  # a loaded machine
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body.decode(errors="replace")
    except OSError:
        return None, ""


@test(timeout=60)
def command_timeout_caps_every_command(t):
    w = suite_world()
    tok = w.create_token("cfg-timeout")
    w.start_agent(tok["token"], name="timeout", extra_env={"AURORA_COMMAND_TIMEOUT_MAX": "2"})
    w.wait_connection(tok["cluster_id"])
    t0 = time.monotonic()
    r = w.kubectl(tok["cluster_id"], args=["get", "--raw", "/fixture/sleep/60/cfg"], timeout=50)
    took = time.monotonic() - t0
    eq(r.json.get("error_code"), "TIMEOUT", "a command beyond the agent's cap (%r)" % r)
    eq(r.json.get("return_code"), 124, "return code")
    check(took < 20, "killed after about 2 s, not the server's 30 s (took %.1fs)" % took)


@test(timeout=60)
def heartbeat_interval(t):
    w = suite_world()
    tok = w.create_token("cfg-heartbeat")
    a = w.start_agent(tok["token"], name="heartbeat",
                      extra_env={"AURORA_HEARTBEAT_INTERVAL": "1", "AURORA_LOG_LEVEL": "debug"})
    w.wait_connection(tok["cluster_id"])
    def gaps():
        stamps = re.findall(r"T\d\d:\d\d:(\d\d\.\d{3})Z debug agent: tunnel: heartbeat sent",
                            a.log())
        return sorted((float(b) - float(x)) % 60 for x, b in zip(stamps, stamps[1:]))
    # A heartbeat goes out on the agent's 1 s tick (agent/tunnel.c) once the
    # interval has passed: a late tick on a loaded machine lengthens a gap,
    # and two of four made the median fail; none makes a gap shorter than
    # the interval.  So: no gap under it, one gap near it (waited for), and
    # the median nowhere near the default 30 s.
    wait_until(lambda: len(gaps()) >= 4 and gaps()[0] <= 1.6, 30, 0.1,
               "five heartbeats, two of them about 1 s apart")
    g = gaps()
    check(0.8 <= g[0] and g[len(g) // 2] < 5, "heartbeats about 1 s apart", g)
    wait_until(lambda: a.log().count("tunnel: heartbeat_ack") >= 2, 20, 0.1, "the server to acknowledge two of them")


@test(timeout=60)
def reconnect_interval(t):
    w = t.world()
    tok = w.create_token("cfg-reconnect")
    a = w.start_agent(tok["token"], name="reconnect", extra_env={"AURORA_RECONNECT_INTERVAL": "4",
                                                                   "AURORA_RECONNECT_MAX": "8"})
    w.wait_connection(tok["cluster_id"])
    w.kill9()
    wait_until(lambda: "reconnecting in" in a.log(), 10, 0.1, "the agent to notice")
    delays = [float(x) for x in re.findall(r"reconnecting in ([0-9.]+)s", a.log())]
    check(2.0 <= delays[0] <= 4.0, "first delay within [base/2, base] = [2, 4] s", delays)
    w.restart()
    wait_until(lambda: a.health("/ready")[0] == 200, 20, 0.1, "the agent to come back")


@test(timeout=60)
def metrics_port_settings(t):
    w = suite_world()
    # own listener
    tok = w.create_token("cfg-metrics")
    mport = free_port()
    a = w.start_agent(tok["token"], name="metrics-own", extra_env={"AURORA_METRICS_PORT": str(mport)})
    st, body = get(mport, "/metrics")
    eq(st, 200, "/metrics on AURORA_METRICS_PORT")
    contains(body, "# TYPE aurora_agent_commands_total counter", "exposition")
    contains(body, "aurora_agent_connected 1", "connected gauge")
    eq(get(mport, "/ready")[0], 404, "the metrics listener serves only /metrics")
    eq(a.health("/metrics")[0], 404, "the health port no longer serves /metrics")
    eq(a.health("/ready")[0], 200, "the health port still serves /ready")
    # off
    tok2 = w.create_token("cfg-metrics-off")
    b = w.start_agent(tok2["token"], name="metrics-off", extra_env={"AURORA_METRICS_PORT": "0"})
    eq(b.health("/metrics")[0], 404, "AURORA_METRICS_PORT=0 disables /metrics")
    # default: the health port
    tok3 = w.create_token("cfg-metrics-default")
    c = w.start_agent(tok3["token"], name="metrics-default")
    st, body = c.health("/metrics")
    eq(st, 200, "/metrics on the health port by default")
    check(body.startswith(b"# HELP "), "text exposition", body[:200])


@test(timeout=60)
def yaml_file_settings(t):
    w = suite_world()
    tok = w.create_token("cfg-yaml")
    path = os.path.join(t.tmp, "agent.yaml")
    with open(path, "w") as f:
        f.write("policy:\n  mode: custom\n  allow: \"get, version\"\n  deny: describe\n"
                "network:\n  heartbeat_interval: 7\n  reconnect_interval: 2\n"
                "exec:\n  command_timeout_max: 3\n"
                "log:\n  level: debug\n  format: json\n")
    a = w.start_agent(tok["token"], name="yaml", extra_env={
        "AURORA_AGENT_CONFIG": path,
        "AURORA_POLICY_DENY": "logs"})  # the environment wins over the file
    cid = tok["cluster_id"]
    w.wait_connection(cid)
    r = w.kubectl(cid, args=["describe", "pod", "x"])
    eq(r.json.get("error_code"), "POLICY_DENIED", "describe is outside the file's allow list")
    r = w.kubectl(cid, args=["version", "--client"])
    eq(r.json.get("return_code"), 0, "version is allowed by the file (%r)" % r)
    r = w.kubectl(cid, args=["logs", "x"])
    contains(r.json.get("error"), "deny list", "logs refused by the environment's deny list")
    r = w.kubectl(cid, args=["get", "--raw", "/fixture/sleep/10/yaml"], timeout=30)
    eq(r.json.get("error_code"), "TIMEOUT", "exec.command_timeout_max from the file")
    first = a.log().splitlines()[0]
    check(first.startswith("{") and '"level":"info"' in first, "log.format json from the file", first)
    check('"level":"debug"' not in a.log(), "AURORA_LOG_LEVEL=info (environment) beats the file")


def landlock_abi():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return max(0, libc.syscall(ctypes.c_long(444), None, ctypes.c_long(0), ctypes.c_long(1)))


def isolation(agent):
    st, body = agent.health("/metrics")
    eq(st, 200, "/metrics")
    m = dict(re.findall(r'aurora_agent_sandbox_isolation\{layer="(\w+)"\} (\d)', body.decode()))
    abi = re.search(r"aurora_agent_sandbox_landlock_abi (\d+)", body.decode())
    check(m and abi, "sandbox gauges in /metrics", body[-800:])
    return int(abi.group(1)), {k: int(v) for k, v in m.items()}


@test(timeout=60)
def landlock_settings_take_effect(t):
    w = suite_world()
    abi = landlock_abi()
    check(abi >= 6, "this test needs Landlock ABI 6 (this machine's kernel offers 7)", abi)
    tok = w.create_token("cfg-landlock")
    a = w.start_agent(tok["token"], name="landlock-default")
    got_abi, iso = isolation(a)
    eq((got_abi, iso["filesystem"], iso["network"], iso["scoped"]), (abi, 1, 1, 1),
       "the defaults: Landlock files, TCP ports and scoping")
    contains(a.log(), "TCP connect only to port(s) 443;", "start-up log names the allowed ports")
    # all ports: no TCP rules, said at start
    tok2 = w.create_token("cfg-landlock-ports")
    b = w.start_agent(tok2["token"], name="landlock-allports",
                      extra_env={"AURORA_SANDBOX_ALLOWED_PORTS": "all"})
    eq(isolation(b)[1]["network"], 0, "AURORA_SANDBOX_ALLOWED_PORTS=all")
    contains(b.log(), "TCP ports are not restricted (AURORA_SANDBOX_ALLOWED_PORTS=all)", "warning")
    # from the YAML file: Landlock off, and what still holds is said
    path = os.path.join(t.tmp, "agent-landlock.yaml")
    with open(path, "w") as f:
        f.write("sandbox:\n  landlock: \"off\"\n")
    tok3 = w.create_token("cfg-landlock-off")
    c = w.start_agent(tok3["token"], name="landlock-off", extra_env={"AURORA_AGENT_CONFIG": path})
    eq(isolation(c)[1]["filesystem"], 0, "sandbox.landlock off from the file")
    contains(c.log(), "Landlock is turned off (AURORA_SANDBOX_LANDLOCK=off)", "start-up warning")
    contains(c.log(), "Still in force for every cloud command", "what still holds")


@test(timeout=60)
def bad_sandbox_settings_stop_the_agent(t):
    w = suite_world()
    tok = w.create_token("cfg-bad-sandbox")
    for env, want in (({"AURORA_SANDBOX_ALLOWED_PORTS": "443,80x"}, "AURORA_SANDBOX_ALLOWED_PORTS"),
                      ({"AURORA_SANDBOX_LANDLOCK": "sometimes"}, "auto, required or off"),
                      ({"AURORA_SANDBOX_READONLY_PATHS": "/usr,opt"}, "AURORA_SANDBOX_READONLY_PATHS"),
                      ({"AURORA_SANDBOX_DENY_PATHS": "/var/../etc"}, "AURORA_SANDBOX_DENY_PATHS"),
                      ({"AURORA_CLOUD_ENV": "gcloud:LD_PRELOAD=/tmp/evil.so"}, "LD_PRELOAD"),
                      ({"AURORA_CLOUD_ENV": "kubectl:A=b"}, "not a cloud CLI"),
                      ({"AURORA_CLOUD_PROGRAMS": "gcloud,python3=/usr/bin/python3"}, "plug-in")):
        a = w.start_agent(tok["token"], name="bad-%s" % list(env)[0].lower(), wait=False, extra_env=env)
        wait_until(lambda: not a.proc.alive(), 15, what="the agent to exit on %r" % env)
        eq(a.proc.p.returncode, 2, "exit status on %r" % env)
        contains(a.log(), want, "the error for %r" % env)
        check("/tmp/evil.so" not in a.log(), "a value of AURORA_CLOUD_ENV in the log")
        a.proc.killed = True  # exited on purpose


@test(timeout=60)
def a_bracketed_host_must_be_an_ipv6_address(t):
    """URL brackets hold an IPv6 address and nothing else (RFC 3986).
    wss://[example.com]/ was taken as the name example.com, and a zone id
    made every handshake fail later with an IP mismatch: both are refused at
    start, with what was wrong."""
    w = suite_world()
    tok = w.create_token("cfg-bad-brackets")
    for url in ("wss://[example.com]:8443/kubectl-agent", "wss://[fe80::1%25eth0]/kubectl-agent",
                "wss://[127.0.0.1]/kubectl-agent"):
        a = w.start_agent(tok["token"], name="bad-brackets", wait=False,
                          extra_env={"NEXT_PUBLIC_WEBSOCKET_URL": url})
        wait_until(lambda: not a.proc.alive(), 15, what="the agent to exit on %s" % url)
        eq(a.proc.p.returncode, 2, "exit status on %s" % url)
        contains(a.log(), "must hold an IPv6 address", "the error for %s" % url)
        a.proc.killed = True  # exited on purpose

if __name__ == "__main__":
    main()
