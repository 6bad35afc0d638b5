#!/usr/bin/env python3
"""bigout_bench.py — a big `kubectl logs`-like output streamed through the tunnel
as Server-Sent Events, against the same generator run directly (Python 3 stdlib).

Setup (all on 127.0.0.1, a fresh temp dir, every process stopped at the end):
RELEASE build/rel/aurora-server + one real build/rel/aurora-agent (v2 dialect)
whose AURORA_KUBECTL_PATH is bench/loggen.c (compiled here with cc -O2): text
lines with timestamps, pods, request ids, a per-line sequence number and now and
then a multi-byte UTF-8 character, exactly N bytes, deterministic per seed.

Rows:
  direct   loggen piped into bench/sse_sink.c --raw (C: read and SHA-256).
  tunnel   POST /api/clusters/{id}/kubectl {"args":["logs",N,seed]} with
           Accept: text/event-stream, made and read by bench/sse_sink.c (C: TLS,
           chunking and event decoding must not be the bottleneck), which decodes
           every `output` event ("text" or "base64"), SHA-256s stdout and is
           compared with the direct run's digest (byte-exact).  Server and agent VmRSS sampled
           every 20 ms: peak growth over the value before the request.
  slow     the same, decoded in Python, by a client that reads at BENCH_SLOW_RATE MiB/s for
           BENCH_SLOW_SECONDS, then at full speed: server/agent RSS growth while
           slow, and whether the generator is blocked writing its pipe (what flow
           control should do: the agent stops reading, nothing piles up).

Knobs (env or flags): BENCH_BIGOUT_MIB (1024), BENCH_SLOW_MIB (256),
BENCH_SLOW_RATE (10 MiB/s), BENCH_SLOW_SECONDS (10), BENCH_STREAM_WINDOW (server's
AURORA_STREAM_WINDOW; unset: its default), BENCH_BIN (build/rel: the binaries
measured).  Exit status 1 on any mismatch/error.
Targets (issue 14): >= 200 MiB/s, server RSS growth <= 16 MiB, byte-exact.
"""

import argparse
import base64
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import targets  # bench/targets.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1024 * 1024


def log(msg):
    print("bigout: " + msg, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def vm_rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_s(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


class Rss:
    """Peak VmRSS of some pids, sampled every 20 ms in a thread."""

    def __init__(self, pids):
        self.pids = pids
        self.base = {p: vm_rss_kib(p) or 0 for p in pids}
        self.peak = dict(self.base)
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop.is_set():
            for p in self.pids:
                v = vm_rss_kib(p)
                if v and v > self.peak[p]:
                    self.peak[p] = v
            self.stop.wait(0.02)

    def mark(self):
        """Peak growths (MiB) so far, and restart the peaks from now."""
        g = {p: (self.peak[p] - self.base[p]) / 1024.0 for p in self.pids}
        return g

    def done(self):
        self.stop.set()
        self.t.join()
        return {p: (self.peak[p] - self.base[p]) / 1024.0 for p in self.pids}


def children_blocked_on_pipe(agent_pid):
    """(name, wchan) of the agent's child processes: a generator paused by flow
    control sleeps in pipe_write."""
    out = []
    kids = []
    try:
        for tid in os.listdir("/proc/%d/task" % agent_pid):  # forked by job threads
            kids += open("/proc/%d/task/%s/children" % (agent_pid, tid)).read().split()
    except OSError:
        pass
    for k in kids:
        try:
            name = open("/proc/%s/comm" % k).read().strip()
            wchan = open("/proc/%s/wchan" % k).read().strip()
            out.append((name, wchan))
        except OSError:
            pass
    return out


class Sse:
    """Reads the event stream of one request and SHA-256s its stdout."""

    def __init__(self, resp):
        self.resp = resp
        self.h = hashlib.sha256()
        self.bytes = 0
        self.stderr = b""
        self.result = None
        self.errors = []
        self.text_events = self.b64_events = 0
        self.buf = b""

    def feed(self, chunk):
        buf = self.buf + chunk if self.buf else chunk
        start = 0
        while True:
            i = buf.find(b"\n\n", start)
            if i < 0:
                break
            block = buf[start:i]
            start = i + 2
            if block.startswith(b"event: output\ndata: "):
                d = json.loads(block[20:])
                t = d.get("text")
                if t is not None:
                    b = t.encode("utf-8")
                    self.text_events += 1
                else:
                    b = base64.b64decode(d["base64"])
                    self.b64_events += 1
                if d.get("stream") == "stderr":
                    self.stderr += b[:4096]
                else:
                    self.h.update(b)
                    self.bytes += len(b)
            elif block.startswith(b"event: result\ndata: "):
                self.result = json.loads(block[20:])
            elif block.startswith(b"event: error\ndata: "):
                self.errors.append(json.loads(block[19:]))
            elif block and not block.startswith(b":"):
                self.errors.append("unexpected event block %r" % block[:200])
        self.buf = buf[start:]

    def read(self, n=1 << 20):
        chunk = self.resp.read(n)
        if chunk:
            self.feed(chunk)
        return len(chunk)


class World:
    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="aurora-bigout.")
        self.procs = []
        b = os.path.join(self.work, "bin")
        os.makedirs(b)
        for name in ("aurora-server", "aurora-agent"):
            src = os.path.join(args.bin, name)
            if not os.access(src, os.X_OK):
                sys.exit("bigout: %s missing: run 'make all' first" % src)
            shutil.copy2(src, b)  # build/rel may be rebuilt while we run
        self.server_bin = os.path.join(b, "aurora-server")
        self.agent_bin = os.path.join(b, "aurora-agent")
        self.loggen = os.path.join(b, "loggen")
        subprocess.run(["cc", "-O2", "-o", self.loggen, os.path.join(ROOT, "bench/loggen.c")],
                       check=True)
        self.sink = os.path.join(b, "sse_sink")
        subprocess.run(["cc", "-O2", "-o", self.sink, os.path.join(ROOT, "bench/sse_sink.c"),
                        "-lssl", "-lcrypto"], check=True)
        self.port = free_port()
        self.health_port = free_port()
        self.data = os.path.join(self.work, "data")
        os.makedirs(self.data, mode=0o700)
        self.env = dict(os.environ, AURORA_DATA_DIR=self.data, AURORA_PORT=str(self.port),
                        AURORA_BIND="127.0.0.1", AURORA_LOG_LEVEL="info",
                        INTERNAL_API_SECRET="bench-" + os.urandom(16).hex())
        if args.window:
            self.env["AURORA_STREAM_WINDOW"] = str(args.window)

    def spawn(self, argv, env, logname):
        f = open(os.path.join(self.work, logname), "ab")
        p = subprocess.Popen(argv, env=env, stdout=f, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def start(self):
        self.server = self.spawn([self.server_bin, "serve"], self.env, "server.log")
        ca = self.ca = os.path.join(self.data, "tls/server.crt")
        deadline = time.monotonic() + 15
        while True:
            try:
                self.ctx = ssl.create_default_context(cafile=ca)
                c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=2)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except (OSError, ssl.SSLError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline or self.server.poll() is not None:
                sys.exit("bigout: aurora-server did not start (%s/server.log)" % self.work)
            time.sleep(0.1)
        boot = json.loads(subprocess.run(
            [self.server_bin, "admin", "bootstrap", "--org-name", "bench", "--email",
             "bench@example.invalid"], env=self.env, check=True, capture_output=True).stdout)
        self.key = boot["api_key"]
        tok = json.loads(subprocess.run(
            [self.server_bin, "admin", "create-agent-token", "--org", boot["org_id"], "--user",
             boot["user_id"], "--cluster-name", "bench-bigout"], env=self.env, check=True,
            capture_output=True).stdout)
        self.cluster = tok["cluster_id"]
        aenv = dict(os.environ, NEXT_PUBLIC_WEBSOCKET_URL="wss://127.0.0.1:%d/kubectl-agent" % self.port,
                    AURORA_AGENT_TOKEN=tok["token"], AURORA_CA_FILE=ca,
                    AURORA_HEALTH_PORT=str(self.health_port), AURORA_HEALTH_BIND="127.0.0.1",
                    AURORA_KUBECTL_PATH=self.loggen, AURORA_POLICY_MODE="custom",
                    AURORA_POLICY_ALLOW="logs", AURORA_MAX_OUTPUT=str(4 << 30),
                    AURORA_COMMAND_TIMEOUT_MAX="3600", AURORA_LOG_LEVEL="info")
        self.agent = self.spawn([self.agent_bin], aenv, "agent.log")
        deadline = time.monotonic() + 15
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.health_port, timeout=2)
                c.request("GET", "/ready")
                if c.getresponse().status == 200:
                    break
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline or self.agent.poll() is not None:
                sys.exit("bigout: aurora-agent not ready (%s/agent.log)" % self.work)
            time.sleep(0.1)

    def sse(self, nbytes, seed, sink=False):
        """Starts the request.  sink: bench/sse_sink.c makes it and decodes the
        stream (TLS, chunking, events, SHA-256 in one C process, so that the client
        is not what is measured); returns (None, sink process).  Else curl writes
        the event stream to a pipe that this process parses; returns (curl, Sse)."""
        body = json.dumps({"args": ["logs", str(nbytes), str(seed)], "timeout": 3000,
                           "max_output": nbytes})
        if sink:
            req = os.path.join(self.work, "request-%d.http" % seed)
            with open(req, "wb") as f:
                f.write(("POST /api/clusters/%s/kubectl HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                         "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                         "Accept: text/event-stream\r\nContent-Length: %d\r\n"
                         "Connection: close\r\n\r\n%s"
                         % (self.cluster, self.port, self.key, len(body), body)).encode())
            return None, subprocess.Popen([self.sink, "--connect", str(self.port), self.ca, req],
                                          stdout=subprocess.PIPE)
        c = subprocess.Popen(
            ["curl", "-sS", "-N", "--fail-with-body", "--cacert", self.ca, "-X", "POST",
             "-H", "Authorization: Bearer " + self.key, "-H", "Content-Type: application/json",
             "-H", "Accept: text/event-stream", "--data-binary", body,
             "https://127.0.0.1:%d/api/clusters/%s/kubectl" % (self.port, self.cluster)],
            stdout=subprocess.PIPE, bufsize=0)
        return c, Sse(c.stdout)

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.args.keep:
            log("kept %s" % self.work)
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def direct(w, nbytes, seed):
    """The generator straight into sse_sink --raw (C: read and SHA-256), the
    same reader work as the tunnel row's minus the tunnel."""
    t0 = time.monotonic()
    g = subprocess.Popen([w.loggen, "logs", str(nbytes), str(seed)], stdout=subprocess.PIPE)
    k = subprocess.Popen([w.sink, "--raw"], stdin=g.stdout, stdout=subprocess.PIPE)
    g.stdout.close()  # the sink holds the pipe now
    rep = json.loads(k.communicate()[0])
    g.wait()
    return rep["bytes"], rep["sha256"], time.monotonic() - t0


def tunnel(w, nbytes, seed, slow_rate=0, slow_s=0):
    """Returns a dict of measurements.  Full speed: sse_sink (C, its own HTTPS
    request); slow: curl | this process, reading at slow_rate MiB/s for slow_s
    seconds."""
    pids = [w.server.pid, w.agent.pid]
    scpu0, acpu0, ccpu0 = cpu_s(w.server.pid), cpu_s(w.agent.pid), os.times()
    rss = Rss(pids)
    t0 = time.monotonic()
    out = {}
    if not slow_rate:
        _, k = w.sse(nbytes, seed, sink=True)
        rep = json.loads(k.communicate()[0])
        dt = time.monotonic() - t0
        errors = rep["errors"] + ([rep["bad"]] if rep["bad"] else [])
        if rep["status"] != 200:
            errors.append("HTTP status %d" % rep["status"])
        if k.returncode != 0:
            errors.append("sse_sink exited with status %d" % k.returncode)
        out.update(bytes=rep["bytes"], digest=rep["sha256"], result=rep["result"], errors=errors,
                   text=rep["text"], b64=rep["base64"], stderr=b"")
    else:
        c, s = w.sse(nbytes, seed)
        end = t0 + slow_s
        got = 0
        while time.monotonic() < end and s.result is None:
            got += s.read(64 * 1024)
            ahead = got / (slow_rate * MIB) - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
        out["slow_growth"] = rss.mark()
        out["slow_bytes"] = got
        out["children"] = children_blocked_on_pipe(w.agent.pid)
        while s.result is None and not s.errors:
            if not s.read():
                break
        dt = time.monotonic() - t0
        c.stdout.close()
        if c.wait() != 0:
            s.errors.append("curl exited with status %d" % c.returncode)
        out.update(bytes=s.bytes, digest=s.h.hexdigest(), result=s.result, errors=s.errors,
                   text=s.text_events, b64=s.b64_events, stderr=s.stderr)
    ccpu = os.times()
    out["growth"] = rss.done()
    out.update(secs=dt, server_cpu=cpu_s(w.server.pid) - scpu0,
               agent_cpu=cpu_s(w.agent.pid) - acpu0,
               client_cpu=(ccpu.user + ccpu.system + ccpu.children_user + ccpu.children_system
                           - ccpu0.user - ccpu0.system - ccpu0.children_user - ccpu0.children_system))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=int(os.environ.get("BENCH_BIGOUT_MIB", 1024)))
    ap.add_argument("--slow-mib", type=int, default=int(os.environ.get("BENCH_SLOW_MIB", 256)))
    ap.add_argument("--slow-rate", type=float, default=float(os.environ.get("BENCH_SLOW_RATE", 10)))
    ap.add_argument("--slow-seconds", type=float,
                    default=float(os.environ.get("BENCH_SLOW_SECONDS", 10)))
    ap.add_argument("--window", type=int, default=int(os.environ.get("BENCH_STREAM_WINDOW", 0)))
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    ap.add_argument("--bin", default=os.environ.get("BENCH_BIN", os.path.join(ROOT, "build/rel")),
                    help="directory of the aurora-server and aurora-agent to measure "
                         "(default build/rel; e.g. an older build to compare)")
    args = ap.parse_args()
    w = World(args)
    problems = []
    try:
        w.start()
        # warm-up: first-use allocations (TLS, SQLite pages, audit rows)
        tunnel(w, 4 * MIB, 1)
        n = args.mib * MIB
        log("direct: %d MiB" % args.mib)
        dn, dsum, dsec = direct(w, n, 42)
        log("tunnel: %d MiB through SSE" % args.mib)
        t = tunnel(w, n, 42)
        sn = args.slow_mib * MIB
        _, ssum, _ = direct(w, sn, 7)
        log("slow reader: %d MiB, %.0f MiB/s for %.0f s" % (args.slow_mib, args.slow_rate,
                                                            args.slow_seconds))
        s = tunnel(w, sn, 7, args.slow_rate, args.slow_seconds)
    finally:
        w.stop()

    def check(r, want_sum, want_n, what):
        ok = (r["digest"] == want_sum and r["bytes"] == want_n and not r["errors"] and r["result"]
              and r["result"].get("return_code") == 0 and r["result"].get("truncated") is False)
        if not ok:
            problems.append("%s: bytes %d/%d sha256 %s (want %s) result %s errors %s stderr %r"
                            % (what, r["bytes"], want_n, r["digest"][:16], want_sum[:16],
                               r["result"], r["errors"][:3], r["stderr"][:200]))
        return "yes" if ok else "NO"

    sp, ap_ = w.server.pid, w.agent.pid
    tr = t["bytes"] / MIB / t["secs"]
    dr = dn / MIB / dsec
    print("== big output: %d MiB of kubectl-logs-like lines, SSE through the tunnel vs direct "
          "(release build, window %s)" % (args.mib, args.window or "default 256 KiB"))
    print("load average: %s" % open("/proc/loadavg").read().split(" ", 3)[:3])
    print("%-8s %9s %9s %9s %12s %12s %10s %10s %7s" % (
        "row", "MiB", "secs", "MiB/s", "srv RSS +MiB", "agt RSS +MiB", "srv CPU s", "agt CPU s",
        "exact") + " client CPU s")
    print("%-8s %9d %9.2f %9.1f %12s %12s %10s %10s %7s" % ("direct", dn // MIB, dsec, dr, "-", "-",
                                                             "-", "-", "ref"))
    print("%-8s %9d %9.2f %9.1f %12.1f %12.1f %10.2f %10.2f %7s" % (
        "tunnel", t["bytes"] // MIB, t["secs"], tr, t["growth"][sp], t["growth"][ap_],
        t["server_cpu"], t["agent_cpu"], check(t, dsum, dn, "tunnel")) + " %12.2f" % t["client_cpu"])
    print("%-8s %9d %9.2f %9.1f %12.1f %12.1f %10.2f %10.2f %7s" % (
        "slow", s["bytes"] // MIB, s["secs"], s["bytes"] / MIB / s["secs"], s["growth"][sp],
        s["growth"][ap_], s["server_cpu"], s["agent_cpu"], check(s, ssum, sn, "slow"))
          + " %12.2f" % s["client_cpu"])
    print("tunnel/direct throughput: %.2fx; SSE events: %d text, %d base64" % (
        tr / dr, t["text"], t["b64"]))
    print("slow reader: %.1f MiB read in the first %.0f s (%.1f MiB/s); RSS growth meanwhile: "
          "server %.1f MiB, agent %.1f MiB; generator then: %s" % (
              s["slow_bytes"] / MIB, args.slow_seconds, s["slow_bytes"] / MIB / args.slow_seconds,
              s["slow_growth"][sp], s["slow_growth"][ap_],
              ", ".join("%s in %s" % c for c in s["children"]) or "(none)"))
    if not any("pipe_write" in wchan for _, wchan in s["children"]):
        problems.append("slow reader: the generator was not blocked writing its pipe: %r"
                        % (s["children"],))
    print(targets.line([
        (">= 200 MiB/s", "%.1f MiB/s" % tr, tr >= 200),
        ("server RSS growth <= 16 MiB", "%.1f MiB" % t["growth"][sp], t["growth"][sp] <= 16),
        ("byte-exact", "yes" if not problems else "no", not problems)]))
    for p in problems:
        print("PROBLEM " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
