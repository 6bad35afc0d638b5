#!/usr/bin/env python3
"""swarm_bench.py — many simulated agents against one release aurora-server
(Python 3 stdlib only; the load comes from build/rel/aurora-swarm, a C
process, so the server is what is measured).

Starts aurora-server (build/rel unless AURORA_BUILD_DIR says otherwise) on
127.0.0.1 with a temp data dir, creates SWARM_AGENTS (default 1000) agent
tokens, runs the swarm and reports:
  1. time until every agent is connected, server RSS per agent;
  2. one command through the API to one simulated agent (answer checked);
  3. kill -9 + restart of the server on the same port and data dir, then the
     convergence curve (agents connected vs seconds since the kill) with the
     agents' real backoff, then again with a fresh swarm whose agents retry
     every 500 ms without backoff (the storm case).

Environment: SWARM_AGENTS, SWARM_DIALECT (v2|legacy), SWARM_RECONNECT
(comma-separated modes, each backoff|fixed:MS; default backoff,fixed:500), SWARM_CONNECT_RATE (agents/s in the ramp, 0 = all at
once), SWARM_CONVERGE_TIMEOUT (s, default 90).
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("AURORA_BUILD_DIR", os.path.join("build", "rel"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import harness  # noqa: E402
from harness import T, World, vm_rss_kib  # noqa: E402

AGENTS = int(os.environ.get("SWARM_AGENTS", "1000"))
DIALECT = os.environ.get("SWARM_DIALECT", "v2")
RECONNECT = os.environ.get("SWARM_RECONNECT", "backoff,fixed:500")
CONNECT_RATE = os.environ.get("SWARM_CONNECT_RATE", "0")
CONVERGE_TIMEOUT = float(os.environ.get("SWARM_CONVERGE_TIMEOUT", "90"))
SWARM_BIN = os.path.join(ROOT, os.environ["AURORA_BUILD_DIR"], "aurora-swarm")
REPORT_S = 0.5


def log(msg):
    print("swarm-bench: " + msg, file=sys.stderr, flush=True)


class Swarm:
    """The aurora-swarm process; its report lines are collected with the
    monotonic time they arrived."""

    def __init__(self, argv):
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        self.lock = threading.Lock()
        self.reports = []  # (monotonic, {field: int})
        self.summary = None
        self.all_connected = None  # monotonic time of the "all_connected" line
        self.stderr = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for raw in self.p.stdout:
            line = raw.decode("utf-8", "replace").strip()
            now = time.monotonic()
            fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            with self.lock:
                if line.startswith("summary "):
                    self.summary = fields
                elif line.startswith("all_connected "):
                    self.all_connected = now
                elif line.startswith("t="):
                    self.reports.append((now, {k: float(v) for k, v in fields.items()}))

    def _read_err(self):
        for raw in self.p.stderr:
            self.stderr.append(raw.decode("utf-8", "replace").rstrip())

    def last(self):
        with self.lock:
            return self.reports[-1][1] if self.reports else None

    def since(self, t):
        with self.lock:
            return [(m - t, r) for m, r in self.reports if m >= t]

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        deadline = time.monotonic() + 5
        while self.summary is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.summary


def cpu_s(pid):
    """User + system CPU seconds of a process so far."""
    with open("/proc/%d/stat" % pid) as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def swarm_cpu_s(pid):
    try:
        return cpu_s(pid)
    except OSError:
        return float("nan")


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out after %.0fs waiting for %s" % (timeout, what))


def make_tokens(w, root):
    out = os.path.join(root, "tokens.jsonl")
    subprocess.run([sys.executable, os.path.join(ROOT, "bench", "make_tokens.py"),
                    "--port", str(w.port), "--ca", w.ca, "--key", w.api_key,
                    "--count", str(AGENTS), "--prefix", "swarm-", "--out", out],
                   check=True, cwd=ROOT)
    toks = []
    with open(out) as fh:
        for line in fh:
            if line.strip():
                toks.append(json.loads(line))
    path = os.path.join(root, "tokens.txt")
    with open(path, "w") as fh:
        for x in toks:
            fh.write(x["token"] + "\n")
    return path, toks


def print_curve(curve, failures0):
    """Every report for the first 10 s, then every 5 s, and the row where all are back."""
    print("  %8s | %9s | %10s | %s" % ("s", "connected", "connecting",
                                       "handshake failures since the kill"))
    next_row = 0.0
    for dt, r in curve:
        done = r["connected"] >= AGENTS
        if dt + 1e-9 >= next_row or done:
            print("  %8.1f | %9d | %10d | %18d" % (dt, r["connected"], r["connecting"],
                                                   r["handshake_failures"] - failures0))
            next_row = dt + (REPORT_S if dt < 10 else 5.0) - 1e-6
        if done:
            break


def start_swarm(w, tokfile, reconnect):
    t_start = time.monotonic()
    srv0 = cpu_s(w.server.pid)
    swarm = Swarm([SWARM_BIN, "--url", w.ws_url(), "--tokens", tokfile, "--ca", w.ca,
                   "--dialect", DIALECT, "--heartbeat", "30", "--reconnect", reconnect,
                   "--connect-rate", CONNECT_RATE, "--report-interval", str(REPORT_S)])
    try:
        wait_for(lambda: swarm.all_connected or swarm.p.poll() is not None, 120,
                 "all %d agents connected" % AGENTS)
    except AssertionError:
        log("the swarm's last report: %r" % (swarm.last(),))
        raise
    if swarm.all_connected is None:
        raise AssertionError("aurora-swarm exited: %s" % "\n".join(swarm.stderr[-20:]))
    # the server's view: every agent listed as active
    wait_for(lambda: sum(1 for c in w.connections() if c.get("status") == "active")
             >= AGENTS, 30, "the server to list %d active connections" % AGENTS)
    return swarm, swarm.all_connected - t_start, cpu_s(w.server.pid) - srv0, swarm_cpu_s(swarm.p.pid)


def storm(w, swarm, reconnect):
    """kill -9 + restart; returns True if every agent came back."""
    failures0 = swarm.last()["handshake_failures"]
    sw0 = swarm_cpu_s(swarm.p.pid)
    w.kill9()
    t_kill = time.monotonic()
    w.restart(timeout=60)
    srv0 = cpu_s(w.server.pid)
    t_healthy = time.monotonic() - t_kill

    def back():
        r = swarm.last()
        return r and r["connected"] >= AGENTS and swarm.since(t_kill + t_healthy)
    converged = True
    try:
        wait_for(back, CONVERGE_TIMEOUT, "all agents back after the restart")
    except AssertionError:
        converged = False
    curve = swarm.since(t_kill)
    t_back = next((dt for dt, r in curve if r["connected"] >= AGENTS), None)
    rss = vm_rss_kib(w.server.pid)
    srv = cpu_s(w.server.pid) - srv0
    sw = swarm_cpu_s(swarm.p.pid) - sw0
    print("Kill -9 + restart, reconnect %s: server healthy again %.2f s after the kill"
          % (reconnect, t_healthy))
    if t_back is not None:
        print("  all %d agents back            %8.2f s after the kill" % (AGENTS, t_back))
    else:
        print("  NOT all back within %.0f s" % CONVERGE_TIMEOUT)
    print("  server RSS after              %8s KiB" % rss)
    print("  CPU until then: server %.2f s, swarm %.2f s" % (srv, sw))
    print_curve(curve, failures0)
    return converged


def main():
    for b in (harness.SERVER_BIN, SWARM_BIN):
        if not os.access(b, os.X_OK):
            sys.exit("swarm-bench: %s missing: run 'make all build/rel/aurora-swarm' first" % b)
    root = os.path.join("/tmp", "aurora-swarm-bench-%d" % os.getpid())
    os.makedirs(root, exist_ok=True)
    harness._SUITE["root"] = root
    t = T(root, "bench")
    swarm = None
    ok = True
    try:
        env = {"AURORA_LOG_LEVEL": "warn",
               "AURORA_TOKEN_RATE_LIMIT": str(AGENTS * 2 + 100),
               "AURORA_TOKEN_RATE_LIMIT_PER_MINUTE": str(AGENTS * 2 + 100)}
        w = World(t, "server", extra_env=env)
        t_tok = time.monotonic()
        tokfile, toks = make_tokens(w, root)
        log("%d tokens in %.1fs" % (len(toks), time.monotonic() - t_tok))
        rss0 = vm_rss_kib(w.server.pid)

        print("Swarm: %d simulated %s agents (aurora-swarm: TLS, one process) on one server"
              % (AGENTS, DIALECT))
        for n, reconnect in enumerate(RECONNECT.split(",")):
            swarm, t_all, srv, sw = start_swarm(w, tokfile, reconnect)
            print("Connect, reconnect %s: all %d connected after %.2f s (CPU: server %.2f s, "
                  "swarm %.2f s)" % (reconnect, AGENTS, t_all, srv, sw))
            if n == 0:
                rss1 = vm_rss_kib(w.server.pid)
                # one command to one simulated agent, answered like /bin/echo would
                r = w.kubectl(toks[len(toks) // 2]["cluster_id"], args=["version"])
                harness.eq(r.status, 200, "kubectl through a simulated agent (%r)" % r)
                harness.check("swarm" in (r.json.get("output") or ""),
                              "the simulated agent's output is in the result", r.json)
                wait_for(lambda: (swarm.last() or {}).get("commands", 0) >= 1, 10,
                         "the swarm to count the command")
                print("  server RSS idle / with agents %7d / %d KiB  (+%.1f KiB per agent)"
                      % (rss0, rss1, (rss1 - rss0) / AGENTS))
                print("  one command through the API answered by a simulated agent")
            ok = storm(w, swarm, reconnect) and ok
            summary = swarm.stop()
            swarm = None
            if summary:
                print("  swarm: " + " ".join("%s=%s" % kv for kv in summary.items()))
    finally:
        if swarm is not None:
            swarm.stop()
        for p in t.teardown():
            log(p)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
