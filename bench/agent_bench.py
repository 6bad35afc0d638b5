#!/usr/bin/env python3
"""agent_bench.py — the agent's numbers for `make bench` (run by bench/agent_bench.sh).

  1. binary size: the static agent (build/static/aurora-agent, stripped) and,
     for comparison, the release agent (build/rel, dynamically linked) stripped;
  2. idle RSS: VmRSS/VmHWM of an agent connected to the server and idle for 5 s
     (static and release binaries);
  3. commands per second through one agent (the static binary, kubectl stand-in
     /bin/echo, readonly policy: `get pods bench-<i>`) at concurrency 1 and 16,
     with p50/p99 latency, every output checked;
  4. reconnect time of N (200) agents (release binary) after a server restart:
     from the new server process starting, and from it answering /health, until
     the server lists all N agents connected again.

Everything runs on 127.0.0.1 with a fresh temp data dir; every process is
stopped and the temp dir removed on exit.  Python 3 stdlib only.
Exit status 1 if any step saw an error."""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import targets  # bench/targets.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(msg):
    print("agent-bench: %s" % msg, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_kib(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return out


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="aurora-agent-bench-")
        self.procs = []
        self.errors = 0
        self.bin = os.path.join(self.work, "bin")
        os.makedirs(self.bin)
        for name, src in (("aurora-server", os.path.join(args.rel, "aurora-server")),
                          ("aurora-agent", os.path.join(args.rel, "aurora-agent")),
                          ("aurora-agent-static", args.static)):
            shutil.copy2(src, os.path.join(self.bin, name))
        self.port = free_port()
        self.data = os.path.join(self.work, "data")
        os.makedirs(self.data, mode=0o700)
        self.ca = os.path.join(self.data, "tls", "server.crt")
        self.server = None
        self.ctx = None
        self.key = None

    # -- processes ------------------------------------------------------------
    def spawn(self, argv, env, logname):
        f = open(os.path.join(self.work, logname), "ab")
        p = subprocess.Popen(argv, env=env, stdout=f, stderr=f, stdin=subprocess.DEVNULL)
        f.close()
        self.procs.append(p)
        return p

    def stop(self, p, timeout=15):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.procs:
            self.procs.remove(p)
        return p.returncode

    def cleanup(self):
        for p in list(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in list(self.procs):
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.work, ignore_errors=True)

    def server_env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AURORA_")}
        env.update({"AURORA_DATA_DIR": self.data, "AURORA_PORT": str(self.port),
                    "AURORA_BIND": "127.0.0.1", "AURORA_LOG_LEVEL": "warn",
                    "INTERNAL_API_SECRET": "agent-bench-" + os.urandom(16).hex(),
                    "AURORA_TOKEN_RATE_LIMIT": str(self.args.agents + 100),
                    "AURORA_TOKEN_RATE_LIMIT_PER_MINUTE": str(self.args.agents + 100)})
        return env

    def start_server(self):
        t0 = time.monotonic()
        self.server = self.spawn([os.path.join(self.bin, "aurora-server")], self.server_env(),
                                 "server.log")
        while time.monotonic() - t0 < 20:
            if self.server.poll() is not None:
                raise RuntimeError("aurora-server exited at start (see server.log)")
            if os.path.exists(self.ca):
                try:
                    if self.ctx is None:
                        self.ctx = ssl.create_default_context(cafile=self.ca)
                    if self.request("GET", "/health")[0] == 200:
                        return t0, time.monotonic()
                except (OSError, ssl.SSLError, http.client.HTTPException):
                    pass
            time.sleep(0.02)
        raise RuntimeError("aurora-server not healthy after 20 s")

    def request(self, method, path, body=None, conn=None):
        own = conn is None
        if own:
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=60)
        hdrs = {"Content-Type": "application/json"}
        if self.key:
            hdrs["Authorization"] = "Bearer %s" % self.key
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None,
                         headers=hdrs)
            r = conn.getresponse()
            data = r.read()
            return r.status, (json.loads(data) if data else None)
        finally:
            if own:
                conn.close()

    def agent_env(self, token, health_port, static=True, extra=None):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("AURORA_") and k.lower() not in ("https_proxy", "http_proxy")}
        env.update({"NEXT_PUBLIC_WEBSOCKET_URL": "wss://127.0.0.1:%d/kubectl-agent" % self.port,
                    "AURORA_AGENT_TOKEN": token, "AURORA_CA_FILE": self.ca,
                    "AURORA_HEALTH_PORT": str(health_port), "AURORA_HEALTH_BIND": "127.0.0.1",
                    "AURORA_KUBECTL_PATH": "/bin/echo", "AURORA_LOG_LEVEL": "warn"})
        env.update(extra or {})
        return env

    def start_agent(self, token, static=True, extra=None, name="agent"):
        hp = free_port()
        binary = os.path.join(self.bin, "aurora-agent-static" if static else "aurora-agent")
        p = self.spawn([binary], self.agent_env(token, hp, static, extra), name + ".log")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise RuntimeError("%s exited at start" % name)
            try:
                c = http.client.HTTPConnection("127.0.0.1", hp, timeout=2)
                c.request("GET", "/ready")
                ok = c.getresponse().status == 200
                c.close()
                if ok:
                    return p
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("%s not ready after 20 s" % name)

    # -- setup ------------------------------------------------------------------
    def setup(self):
        log("starting aurora-server on 127.0.0.1:%d" % self.port)
        self.start_server()
        r = subprocess.run([os.path.join(self.bin, "aurora-server"), "admin", "bootstrap",
                            "--org-name", "agent-bench", "--email", "bench@example.invalid"],
                           env=self.server_env(), capture_output=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("admin bootstrap failed: %s" % r.stderr.decode()[-500:])
        self.key = json.loads(r.stdout.decode().strip().splitlines()[-1])["api_key"]
        n = self.args.agents + 1
        log("creating %d agent tokens" % n)
        self.tokens = [None] * n
        lock = threading.Lock()
        nxt = [0]

        def worker():
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=60)
            while True:
                with lock:
                    i = nxt[0]
                    nxt[0] += 1
                if i >= n:
                    break
                st, doc = self.request("POST", "/api/kubectl/tokens",
                                       {"cluster_name": "agent-bench-%d" % i}, conn)
                if st != 201:
                    raise RuntimeError("token creation: HTTP %d %s" % (st, doc))
                self.tokens[i] = doc
            conn.close()
        ts = [threading.Thread(target=worker) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if any(t is None for t in self.tokens):
            raise RuntimeError("token creation failed")

    # -- 1. sizes -------------------------------------------------------------------
    def sizes(self):
        print("== agent binary")
        st = os.path.join(self.bin, "aurora-agent-static")
        desc = subprocess.run(["file", "-b", st], capture_output=True).stdout.decode().strip()
        self.static_kib = os.path.getsize(st) / 1024
        print("  static (build/static/aurora-agent, stripped): %8.1f KiB  [%s]"
              % (self.static_kib, desc.split(",")[3].strip() if desc.count(",") > 3 else desc))
        rel = os.path.join(self.work, "aurora-agent-rel-stripped")
        subprocess.run(["strip", "-o", rel, os.path.join(self.bin, "aurora-agent")], check=True)
        print("  release (build/rel, dynamic, stripped):       %8.1f KiB  (+ shared libraries)"
              % (os.path.getsize(rel) / 1024))

    # -- 2. idle RSS -------------------------------------------------------------------
    def idle_rss(self):
        print("== agent idle memory (connected, idle %ds)" % self.args.idle)
        for static in (True, False):
            p = self.start_agent(self.tokens[0]["token"], static, name="idle")
            time.sleep(self.args.idle)
            m = rss_kib(p.pid)
            print("  %-8s VmRSS %6d KiB   VmHWM %6d KiB"
                  % ("static" if static else "release", m.get("VmRSS", -1), m.get("VmHWM", -1)))
            if static:
                idle_kib = m.get("VmRSS", -1)
            rc = self.stop(p)
            if rc != 0:
                print("  PROBLEM agent exited with status %s" % rc)
                self.errors += 1
        # issue 14: the static agent, stripped and idle, each within 4 MiB
        print(targets.line([
            ("static agent stripped <= 4096 KiB", "%.1f KiB" % self.static_kib,
             self.static_kib <= 4096),
            ("static agent idle RSS <= 4096 KiB", "%d KiB" % idle_kib, 0 < idle_kib <= 4096)]))

    # -- 3. throughput -------------------------------------------------------------------
    def throughput(self):
        tok = self.tokens[0]
        print("== commands per second through one agent (static binary, /bin/echo as kubectl, "
              "readonly policy)")
        p = self.start_agent(tok["token"], True, {"AURORA_MAX_CONCURRENT": "16"}, name="tput")
        path = "/api/clusters/%s/kubectl" % tok["cluster_id"]
        for conc in (1, 16):
            count = self.args.count * (1 if conc == 1 else 4)
            lat, bad = [], []
            lock = threading.Lock()
            nxt = [0]

            def worker():
                conn = None
                while True:
                    with lock:
                        i = nxt[0]
                        nxt[0] += 1
                    if i >= count:
                        break
                    word = "bench-%d" % i
                    t0 = time.monotonic()
                    try:
                        if conn is None:
                            conn = http.client.HTTPSConnection("127.0.0.1", self.port,
                                                               context=self.ctx, timeout=60)
                        st, doc = self.request("POST", path, {"args": ["get", "pods", word]}, conn)
                    except (OSError, http.client.HTTPException) as e:
                        conn = None
                        st, doc = 0, {"error": repr(e)}
                    dt = time.monotonic() - t0
                    ok = st == 200 and doc and doc.get("output") == "get pods %s\n" % word
                    with lock:
                        lat.append(dt)
                        if not ok:
                            bad.append((st, doc))
                if conn:
                    conn.close()
            start = time.monotonic()
            ts = [threading.Thread(target=worker) for _ in range(conc)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            wall = time.monotonic() - start
            lat.sort()
            print("  concurrency %2d: %5d commands in %6.2fs = %7.1f commands/s   "
                  "p50 %6.1f ms  p99 %6.1f ms  errors %d"
                  % (conc, count, wall, count / wall, lat[len(lat) // 2] * 1000,
                     lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, len(bad)))
            if bad:
                self.errors += 1
                print("    first error: %r" % (bad[0],))
        m = rss_kib(p.pid)
        print("  agent VmHWM after the runs: %d KiB" % m.get("VmHWM", -1))
        if self.stop(p) != 0:
            self.errors += 1

    # -- 4. reconnect after a server restart -----------------------------------------
    def connected_agents(self):
        st, doc = self.request("GET", "/api/kubectl/connections")
        if st != 200:
            return -1
        return sum(c.get("agents", 0) for c in doc["connections"]
                   if c.get("cluster_name", "").startswith("agent-bench-")
                   and c.get("cluster_name") != "agent-bench-0")

    def reconnect(self):
        n = self.args.agents
        print("== reconnect of %d agents after a server restart (release binary, default backoff: "
              "first retry after 0.5-1 s, doubling)" % n)
        log("starting %d agents (at most %d starting at once)" % (n, self.args.start_batch))
        agents = []
        for b in range(0, n, self.args.start_batch):
            for i in range(b, min(n, b + self.args.start_batch)):
                env = self.agent_env(self.tokens[i + 1]["token"], 0, False)
                agents.append(self.spawn([os.path.join(self.bin, "aurora-agent")], env,
                                         "agents.log"))
            target = len(agents)
            deadline = time.monotonic() + 30
            while self.connected_agents() < target:
                if time.monotonic() > deadline:
                    raise RuntimeError("only %d of %d agents connected" % (self.connected_agents(),
                                                                          target))
                time.sleep(0.1)
        rss = [rss_kib(p.pid).get("VmRSS", 0) for p in agents]
        print("  %d agents connected; agent VmRSS mean %.0f KiB" % (n, statistics.mean(rss)))
        log("restarting the server")
        rc = self.stop(self.server)
        if rc != 0:
            print("  PROBLEM aurora-server exited with status %s on SIGTERM" % rc)
            self.errors += 1
        stopped = time.monotonic()
        started, healthy = self.start_server()
        marks, seen = {}, 0
        deadline = healthy + 120
        while True:
            seen = self.connected_agents()
            now = time.monotonic()
            for pct in (50, 90, 100):
                if pct not in marks and seen >= n * pct // 100:
                    marks[pct] = now
            if seen >= n or now > deadline:
                break
            time.sleep(0.05)
        if seen < n:
            print("  PROBLEM only %d of %d agents back after 120 s" % (seen, n))
            self.errors += 1
        print("  server down for %.2fs (SIGTERM to new process), healthy %.2fs after its start"
              % (started - stopped, healthy - started))
        for pct in sorted(marks):
            print("  %3d%% of agents back: %5.2fs after the new server started (%5.2fs after "
                  "it was healthy)" % (pct, marks[pct] - started, marks[pct] - healthy))
        for p in agents:
            self.stop(p, timeout=20)

    def run(self):
        try:
            self.setup()
            self.sizes()
            self.idle_rss()
            self.throughput()
            self.reconnect()
        except Exception as e:  # noqa: BLE001
            print("  PROBLEM %s: %s" % (type(e).__name__, e))
            self.errors += 1
        finally:
            self.cleanup()
        return 1 if self.errors else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rel", default=os.path.join(ROOT, "build", "rel"))
    ap.add_argument("--static", default=os.path.join(ROOT, "build", "static", "aurora-agent"))
    ap.add_argument("--agents", type=int, default=int(os.environ.get("BENCH_RECONNECT_AGENTS", 200)))
    ap.add_argument("--count", type=int, default=int(os.environ.get("BENCH_AGENT_COUNT", 200)))
    ap.add_argument("--idle", type=int, default=5)
    ap.add_argument("--start-batch", type=int, default=20)
    args = ap.parse_args()
    sys.exit(Bench(args).run())


if __name__ == "__main__":
    main()
