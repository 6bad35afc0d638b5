#!/usr/bin/env python3
"""Egress proxy: the agent reaches the server through a real HTTP proxy
(Debian's tinyproxy on loopback) with CONNECT, with and without Basic proxy
authentication; NO_PROXY sends it direct; credentials never reach the log.

Real peers: build/asan/aurora-server and aurora-agent, /usr/sbin/tinyproxy
(its own config and log in the test's temp dir), /usr/bin/kubectl against the
kube API fixture.  The server is addressed as `localhost`, so the proxy is
asked to CONNECT to a host name (and resolves it itself)."""

import os
import pwd
import grp
import shutil
import tempfile

from harness import (check, contains, eq, free_port, main, refusing_port, suite_world, test,
                     wait_until)

TINYPROXY = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"


class Tinyproxy:
    def __init__(self, t, auth=None):
        check(os.access(TINYPROXY, os.X_OK), "tinyproxy is not installed (scripts/install-deps.sh)")
        # its own directory outside the test's private temp dir: tinyproxy drops
        # root for `nobody`, who must reach its log file
        self.dir = tempfile.mkdtemp(prefix="aurora-tinyproxy-")
        os.chmod(self.dir, 0o755)
        t.defer(lambda: shutil.rmtree(self.dir, ignore_errors=True))
        self.port = free_port()
        self.log = os.path.join(self.dir, "tinyproxy.log")
        open(self.log, "w").close()
        conf = ["Port %d" % self.port, "Listen 127.0.0.1", "Timeout 60", "MaxClients 50",
                "LogFile \"%s\"" % self.log, "LogLevel Info", "Allow 127.0.0.1",
                "DisableViaHeader Yes"]
        if os.geteuid() == 0:
            # tinyproxy will not keep root: it switches to this user, who must write the log
            user, group = "nobody", grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
            conf += ["User %s" % user, "Group %s" % group]
            os.chown(self.log, pwd.getpwnam("nobody").pw_uid, -1)
        if auth:
            conf.append("BasicAuth %s %s" % auth)
        self.conf = os.path.join(self.dir, "tinyproxy.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(conf) + "\n")
        self.proc = t.spawn("tinyproxy", [TINYPROXY, "-d", "-c", self.conf], dict(os.environ),
                            os.path.join(self.dir, "stderr.log"), os.path.join(self.dir, "san"))
        self.proc.tolerate_exit = True
        wait_until(self._listening, 10, what="tinyproxy to listen on %d" % self.port)

    def _listening(self):
        import socket
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", self.port))
            return True
        except OSError:
            return False
        finally:
            s.close()

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def connects_to(self, target):
        """CONNECT requests for target ("host:port") seen in the log."""
        return [ln for ln in self.log_text().splitlines() if "CONNECT " + target in ln]


def proxied_agent(w, t, name, env):
    tok = w.create_token("proxy-%s" % name)
    e = {"NEXT_PUBLIC_WEBSOCKET_URL": "wss://localhost:%d/kubectl-agent" % w.port,
         "NO_PROXY": "", "no_proxy": ""}
    e.update(env)
    a = w.start_agent(tok["token"], name=name, extra_env=e, wait=False)
    return tok, a


@test(timeout=60)
def connect_through_proxy(t):
    w = suite_world()
    px = Tinyproxy(t)
    tok, a = proxied_agent(w, t, "via-proxy", {"HTTPS_PROXY": "http://127.0.0.1:%d" % px.port})
    a.wait_ready(20)
    w.wait_connection(tok["cluster_id"])
    target = "localhost:%d" % w.port
    wait_until(lambda: px.connects_to(target), 10, 0.05, "tinyproxy to log a CONNECT to %s" % target)
    r = w.kubectl(tok["cluster_id"], args=["get", "--raw", "/fixture/echo/through-proxy"])
    eq(r.status, 200, "kubectl through the proxied tunnel (%r)" % r)
    eq(r.json.get("output"), "through-proxy", "output")
    contains(a.log(), "egress proxy http://127.0.0.1:%d from HTTPS_PROXY" % px.port, "agent log")


@test(timeout=60)
def connect_through_proxy_with_basic_auth(t):
    w = suite_world()
    password = "s3cr3t-pw-%d" % free_port()
    px = Tinyproxy(t, auth=("aurora", password))
    encoded = password.replace("-", "%2D")  # the agent percent-decodes the credentials
    url = "http://aurora:%s@127.0.0.1:%d" % (encoded, px.port)
    tok, a = proxied_agent(w, t, "auth-proxy", {"HTTPS_PROXY": url, "AURORA_LOG_LEVEL": "debug"})
    a.wait_ready(20)
    wait_until(lambda: px.connects_to("localhost:%d" % w.port), 10, 0.05, "tinyproxy to log the CONNECT")
    r = w.kubectl(tok["cluster_id"], args=["get", "--raw", "/fixture/echo/auth-ok"])
    eq(r.json.get("output"), "auth-ok", "output (%r)" % r)
    log = a.log()
    contains(log, "with basic authentication", "agent log mentions the authentication")
    check(password not in log and encoded not in log,
          "the proxy password must never be logged", log[-3000:])

    # a wrong password: the proxy refuses (407), the agent keeps retrying, never ready
    tok2, b = proxied_agent(w, t, "bad-auth", {
        "HTTPS_PROXY": "http://aurora:wrong-%s@127.0.0.1:%d" % (password[:3], px.port),
        "AURORA_RECONNECT_MAX": "1"})
    wait_until(lambda: b.log().count("connection failed") >= 2, 20, 0.1, "the proxy to refuse the agent twice")
    eq(b.health("/ready")[0], 503, "an agent the proxy refused is not ready")
    check(w.connection(tok2["cluster_id"]) is None
          or w.connection(tok2["cluster_id"]).get("status") != "active",
          "the refused agent must not be connected")
    contains(b.log(), "connection failed", "the failure is logged")
    check("wrong-" not in b.log(), "the wrong password is not logged either", b.log()[-2000:])


@test(timeout=60)
def no_proxy_goes_direct(t):
    w = suite_world()
    dead = refusing_port(t)  # nothing listens there, nor will
    # HTTPS_PROXY, and lowercase http_proxy (which libwebsockets itself would read)
    tok, a = proxied_agent(w, t, "no-proxy", {"HTTPS_PROXY": "http://127.0.0.1:%d" % dead,
                                              "http_proxy": "http://127.0.0.1:%d" % dead,
                                              "NO_PROXY": "example.com, localhost:%d" % w.port})
    a.wait_ready(20)
    contains(a.log(), "NO_PROXY lists localhost: connecting directly", "agent log")
    tok2, b = proxied_agent(w, t, "no-proxy-suffix", {"http_proxy": "http://127.0.0.1:%d" % dead,
                                                      "no_proxy": ".localhost,localhost"})
    b.wait_ready(20)
    # and without NO_PROXY the dead proxy is really used (so the above proves a bypass)
    tok3, c = proxied_agent(w, t, "dead-proxy", {"HTTPS_PROXY": "http://127.0.0.1:%d" % dead,
                                                 "AURORA_RECONNECT_MAX": "1"})
    wait_until(lambda: "connection failed" in c.log(), 20, 0.1, "the connection through the dead proxy to fail")
    eq(c.health("/ready")[0], 503, "an agent behind a dead proxy is not ready")
    contains(c.log(), "through the proxy http://127.0.0.1:%d" % dead, "it tried the proxy")


@test(timeout=30)
def malformed_proxy_setting_is_a_config_error(t):
    w = suite_world()
    tok, a = proxied_agent(w, t, "bad-url", {"HTTPS_PROXY": "socks5://u:pw-hidden@127.0.0.1:1080"})
    wait_until(lambda: not a.proc.alive(), 10, what="the agent to exit")
    a.proc.killed = True
    contains(a.log(), "HTTPS_PROXY: proxy URL scheme socks5:// is not supported", "agent log")
    check("pw-hidden" not in a.log(), "credentials of a bad proxy URL are not logged", a.log())


if __name__ == "__main__":
    main()
