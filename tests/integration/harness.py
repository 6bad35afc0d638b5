"""harness.py — integration-test harness for the Aurora tunnel (Python stdlib only).

What it gives a test program:

  @test / @test(timeout=90)      register a test function f(t)
  main()                         run the registered tests (optionally filtered by
                                 substrings given on the command line), print one
                                 line per test and the summary `N passed, M failed`
                                 as the last line; exit status 1 if anything failed
  t (class T)                    per-test context: t.tmp (a fresh directory),
                                 t.world() (server + bootstrap), t.defer(fn)
  World                          one aurora-server (build/asan) on a free port with
                                 its own data dir, bootstrapped with `admin
                                 bootstrap`; HTTP helpers, admin helpers, agents
  Agent / LegacyAgent            build/asan/aurora-agent; tests/fixtures/legacy_agent.js
  check/eq/...                   assertions raising AssertionError with details

Every process a test starts is stopped at the end of the test with SIGTERM; the test
fails if a process does not exit with status 0 (unless it was killed on purpose) or
if any ASan/UBSan/LSan report file appears in its sanitizer directory (the report is
printed).  A per-test timeout (SIGALRM) turns a hung test into a failure.

The Kubernetes API fixture (tests/fixtures/kube_api.py) is shared: when
AURORA_TEST_KUBECONFIG is set (tests/run-integration.sh starts the fixture once and
exports it), it is used; otherwise the harness starts one for the program's lifetime.

Environment knobs: AURORA_BUILD_DIR (default build/asan), AURORA_KEEP_TMP=1 (keep the
temp dir even on success), AURORA_TEST_VERBOSE=1 (print process logs for passing tests
too).
"""

import glob
import hashlib
import http.client
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS_DIR = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS_DIR)
FIXTURES = os.path.join(TESTS_DIR, "fixtures")
sys.path.insert(0, FIXTURES)
import kube_api  # noqa: E402,F401  (re-exported: the byte generator + kubeconfig helper)

BUILD = os.path.join(ROOT, os.environ.get("AURORA_BUILD_DIR") or os.path.join("build", "asan"))
SERVER_BIN = os.path.join(BUILD, "aurora-server")
AGENT_BIN = os.path.join(BUILD, "aurora-agent")
# Test-only commands on the store (tests/tools/aurora-testctl.c), built by
# `make test` / `make build/asan/aurora-testctl`.
TESTCTL_BIN = os.path.join(BUILD, "aurora-testctl")
KUBECTL = os.environ.get("AURORA_TEST_KUBECTL", "/usr/bin/kubectl")
LEGACY_JS = os.path.join(FIXTURES, "legacy_agent.js")
NODE = shutil.which("node") or "node"
VERBOSE = os.environ.get("AURORA_TEST_VERBOSE") == "1"

TOKEN_RE = re.compile(r"^aurora_kubectl_[A-Za-z0-9_-]{64}$")


# ---------------------------------------------------------------------------
# assertions
# ---------------------------------------------------------------------------
class TestTimeout(Exception):
    pass


def check(cond, msg, *details):
    if not cond:
        extra = "".join("\n      " + _short(d) for d in details)
        raise AssertionError(msg + extra)


def eq(got, want, what):
    if got != want:
        raise AssertionError("%s: expected %s, got %s" % (what, _short(want), _short(got)))


def contains(hay, needle, what):
    if hay is None or needle not in hay:
        raise AssertionError("%s: expected to contain %s, got %s" % (what, _short(needle), _short(hay)))


def _short(v, limit=600):
    s = v if isinstance(v, str) else repr(v)
    if len(s) > limit:
        s = s[:limit] + "...(%d chars)" % len(s)
    return s


def wait_until(pred, timeout, interval=0.05, what="condition"):
    """Polls pred() until it returns a truthy value; returns it, or raises."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def within_one_window(window, body, attempts=3):
    """Runs body() until one run fits in one fixed window of `window` s.
    The rate limits count fixed windows (as the existing service's limiter):
    a run that straddles a window's end sees the count reset mid-test.  Such
    a run is started over (body must start from fresh users or addresses,
    or from a new window's count); a failure inside one window is a
    failure."""
    for _ in range(attempts):
        start = int(time.time()) // window
        try:
            body()
        except AssertionError:
            if int(time.time()) // window == start:
                raise
            continue
        if int(time.time()) // window == start:
            return
    raise AssertionError("no run of the test fitted in one %d s window" % window)


class BesideHung:
    """Requests timed beside a call that hangs until the server's timeout
    (`timeout_s`; `hung` is the thread making it): one that ends while the
    hung call still waits must have taken less than half that timeout (one
    queued behind it would end only after the hung call's own answer, about a
    whole timeout after both began).  One that ends after the hung call
    shows nothing either way (a loaded machine may have slowed it just then)
    and is not judged, unless it must be (`must_end_beside`: the test made
    it first, at once); `done` checks that at least one request was."""

    def __init__(self, hung, timeout_s):
        self.hung, self.limit, self.judged, self.worst = hung, timeout_s / 2.0, 0, 0.0

    def request(self, what, fn, must_end_beside=False):
        t0 = time.monotonic()
        r = fn()
        took = time.monotonic() - t0
        in_flight = self.hung.is_alive()  # read when it ended, not later
        check(in_flight or not must_end_beside,
              "%s ended only after the hung call did (%.2fs)" % (what, took))
        if in_flight:
            self.judged += 1
            self.worst = max(self.worst, took)
            check(took < self.limit, "%s took %.2fs while a call hung" % (what, took))
        return r

    def done(self):
        check(self.judged, "no request ended while the call hung")


def cluster_id_for(token):
    return "cluster-" + hashlib.sha256(token.encode()).hexdigest()[:16]


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A port for a server a test starts.  Chosen at random below the kernel's
    ephemeral range: the integration programs run in parallel, and a port taken
    from the ephemeral range (bind to port 0) can be handed to another program's
    outgoing connection before our server binds it (EADDRINUSE at start-up)."""
    hi = _ephemeral_low() - 1
    lo = 10000 if hi > 12000 else 1024
    for _ in range(200):
        p = secrets.randbelow(hi - lo) + lo
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def refusing_port(t):
    """A port on 127.0.0.1 that refuses connections for the rest of test t:
    bound by this process and never listening, so that no program running
    beside this one can start a server there meanwhile (a port free_port()
    found free is only a guess: another program's server or fixture may
    bind it before the connection the test expects to be refused)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    t.defer(s.close)
    return s.getsockname()[1]


class SilentPeer:
    """A provider (a Splunk instance, a self-hosted GitHub's token endpoint)
    that takes every connection on 127.0.0.1 and answers nothing until
    released: each call the server sends it holds an outbound worker until
    then."""

    def __init__(self):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(64)
        self.port = self.s.getsockname()[1]
        self.conns, self.lock, self.released = [], threading.Lock(), False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.s.accept()
            except OSError:
                return
            with self.lock:
                if self.released:  # a retry accepted while released: refused too
                    c.close()
                    return
                self.conns.append(c)

    def accepted(self):
        with self.lock:
            return len(self.conns)

    def release(self):
        """Stops listening and closes every connection: each waiting call
        then fails at once, and a later one finds the port refusing."""
        with self.lock:
            if self.released:
                return
            self.released = True
            try:  # wakes the thread blocked in accept(); close alone would not
                self.s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.s.close()
            for c in self.conns:
                c.close()
            self.conns = []


def listens_on(pid, port):
    """Whether process pid holds a listening TCP socket on port (by the
    socket inodes of /proc/net/tcp{,6} and of its descriptors)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            col = row.split()
            if len(col) > 9 and col[3] == "0A" and int(col[1].rsplit(":", 1)[1], 16) == port:
                inodes.add("socket:[%s]" % col[9])
    if not inodes:
        return False
    fds = "/proc/%d/fd" % pid
    try:
        names = os.listdir(fds)
    except OSError:
        return False
    for n in names:
        try:
            if os.readlink(os.path.join(fds, n)) in inodes:
                return True
        except OSError:
            continue
    return False


# How many times a process the harness starts on a port of its choosing is
# started again on another one when it found the port taken.
PORT_TRIES = 4


def lost_port_race(proc, port, message):
    """Whether proc exited by itself because another process had bound
    `port` (EADDRINUSE): free_port's pick is only a guess until our process
    binds it, and the other integration programs (and the browser tests)
    pick from the same range at the same time.  `message` is what proc logs
    when its listener cannot start; lws logs errno 98 beside it."""
    if proc.alive():
        return False
    log = proc.log_text()
    return message in log and ("to port %d (-1 98)" % port) in log


def rand_tag(n=8):
    return secrets.token_hex(n)


def procs_matching(needle):
    """[(pid, cmdline)] of live processes whose command line contains needle."""
    out = []
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            with open("/proc/%s/stat" % d) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmd and state != "Z":
            out.append((int(d), cmd))
    return out


def vm_rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class RssSampler:
    """Samples VmRSS of pid every `interval` seconds in a thread."""

    def __init__(self, pid, interval=0.02):
        self.pid = pid
        self.interval = interval
        self.baseline = vm_rss_kib(pid)
        self.peak = self.baseline or 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            v = vm_rss_kib(self.pid)
            if v is not None and v > self.peak:
                self.peak = v
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join()

    @property
    def growth_mib(self):
        return (self.peak - (self.baseline or 0)) / 1024.0


# ---------------------------------------------------------------------------
# the kube API fixture (shared per program)
# ---------------------------------------------------------------------------
_kube = {"kubeconfig": None, "proc": None, "port": None}


def kube_fixture():
    """Returns (kubeconfig path, port) of the running kube_api fixture."""
    if _kube["kubeconfig"]:
        return _kube["kubeconfig"], _kube["port"]
    env_kc = os.environ.get("AURORA_TEST_KUBECONFIG")
    if env_kc and os.path.exists(env_kc):
        _kube["kubeconfig"] = env_kc
        _kube["port"] = int(os.environ.get("AURORA_TEST_KUBE_PORT", "0"))
        return _kube["kubeconfig"], _kube["port"]
    d = tempfile.mkdtemp(prefix="aurora-kube-")
    kc = os.path.join(d, "kubeconfig")
    p = subprocess.Popen([sys.executable, os.path.join(FIXTURES, "kube_api.py"), "--kubeconfig", kc],
                         stdout=subprocess.PIPE, stderr=open(os.path.join(d, "kube_api.log"), "wb"))
    line = p.stdout.readline()
    check(line.strip().isdigit(), "kube_api fixture did not print its port", line)
    _kube.update(kubeconfig=kc, proc=p, port=int(line), dir=d)
    return kc, _kube["port"]


def release_held(tag):
    """Ends the kube API fixture's `kubectl get --raw /fixture/hold/<tag>`
    request (before or after it arrived): a command that runs until the
    test has seen what it waits for, not for a fixed time."""
    c = http.client.HTTPConnection("127.0.0.1", kube_fixture()[1], timeout=30)
    try:
        c.request("GET", "/fixture/release/%s" % tag)
        r = c.getresponse()
        r.read()
        check(r.status == 200, "the kube API fixture did not release %s" % tag, r.status)
    finally:
        c.close()


def _stop_kube_fixture():
    p = _kube.get("proc")
    if p and p.poll() is None:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
    if _kube.get("dir"):
        shutil.rmtree(_kube["dir"], ignore_errors=True)


# ---------------------------------------------------------------------------
# HTTP over TLS
# ---------------------------------------------------------------------------
class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        self.json = None
        if body:
            try:
                self.json = json.loads(body.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                self.json = None

    def get(self, k, default=None):
        return self.json.get(k, default) if isinstance(self.json, dict) else default

    @property
    def error_code(self):
        return self.get("error_code")

    def __repr__(self):
        return "<HTTP %s %s>" % (self.status, _short(self.body.decode("utf-8", "replace"), 800))


def tls_context(cafile, hostname_check=True):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = hostname_check
    return ctx


class HTTPSConn(http.client.HTTPSConnection):
    """Connects to 127.0.0.1 but verifies the certificate for `sni` (default 127.0.0.1)."""

    def __init__(self, port, ctx, sni="127.0.0.1", timeout=30):
        super().__init__("127.0.0.1", port, context=ctx, timeout=timeout)
        self._sni = sni

    def connect(self):
        sock = socket.create_connection((self.host, self.port), self.timeout)
        # As http.client's own connect does: the body goes in a write of its
        # own, and Nagle would hold it for the server's delayed ACK (40 ms).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._sni)


def parse_head(head):
    """(status, {lowercase header: value}) of an answer's head (bytes before the
    blank line); status None when the status line is not HTTP's."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs


def parse_responses(data):
    """Splits what the server sent into [(status, {header: value}, body)]."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            out.append((None, {}, data))  # a truncated response still counts
            break
        status, hdrs = parse_head(head)
        n = int(hdrs.get("content-length", len(rest)))
        out.append((status, hdrs, rest[:n]))
        data = rest[n:]
    return out


def https_request(port, ctx, method, path, body=None, headers=None, timeout=30, sni="127.0.0.1"):
    """One request on a fresh connection. body: dict/list (sent as JSON), bytes or str.
    Tolerates a server that answers (e.g. 413) and closes before reading the body."""
    hdrs = {"Connection": "close"}
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    elif isinstance(body, str):
        body = body.encode()
        hdrs["Content-Type"] = "application/json"
    if headers:
        hdrs.update(headers)
    conn = HTTPSConn(port, ctx, sni=sni, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        if body is not None:
            hdrs.setdefault("Content-Length", str(len(body)))
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders()
        send_err = None
        if body:
            try:
                view = memoryview(body)
                for i in range(0, len(body), 65536):
                    conn.sock.sendall(view[i:i + 65536])
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError) as e:
                send_err = e
        try:
            r = conn.getresponse()
            data = r.read()
        except (ConnectionResetError, http.client.RemoteDisconnected, ssl.SSLError) as e:
            if send_err:
                raise AssertionError("%s %s: server closed the connection while the body was "
                                     "being sent (%r) and no response could be read (%r)"
                                     % (method, path, send_err, e))
            raise
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        conn.close()


def post_many(w, path, bodies, headers_of, threads=4):
    """POSTs every body to path over a few kept-alive connections (headers_of(i):
    body i's headers); the statuses, in order.  For filling a server with
    thousands of deliveries without a TLS handshake each."""
    out = [None] * len(bodies)

    def run(k):
        conn = None
        for i in range(k, len(bodies), threads):
            h = headers_of(i)
            for attempt in range(2):  # a connection the server closed: one more on a new one
                try:
                    conn = conn or HTTPSConn(w.port, w.ctx)
                    conn.request("POST", path, bodies[i], h)
                    r = conn.getresponse()
                    r.read()
                    out[i] = r.status
                    if r.getheader("connection", "").lower() == "close":
                        conn.close()
                        conn = None
                    break
                except (OSError, http.client.HTTPException):
                    if conn:
                        conn.close()
                    conn = None
                    if attempt:
                        raise
        if conn:
            conn.close()

    ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    return out


def parse_sse_stream(resp, on_event):
    """Reads a text/event-stream http.client response incrementally, calling
    on_event(event, data_str) for each event.  Returns when the stream ends or
    on_event returns True."""
    buf = b""
    while True:
        chunk = resp.read1(256 * 1024)
        if not chunk:
            break
        buf += chunk
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        while True:
            i = buf.find(b"\n\n")
            if i < 0:
                break
            block, buf = buf[:i], buf[i + 2:]
            ev, data = "message", []
            for line in block.split(b"\n"):
                if line.startswith(b":") or not line:
                    continue
                k, _, v = line.partition(b":")
                if v.startswith(b" "):
                    v = v[1:]
                if k == b"event":
                    ev = v.decode()
                elif k == b"data":
                    data.append(v.decode("utf-8"))
            if not data:
                continue  # comments / keep-alives / an event without data
            if on_event(ev, "\n".join(data)):
                return
    if buf.strip():
        raise AssertionError("SSE stream ended inside an event: %s" % _short(buf.decode("utf-8", "replace")))


# ---------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------
# ASan keeps freed memory poisoned in a quarantine so that a use after free is
# caught; its default, 256 MiB per process, made each long-running test server
# fault in and recycle up to 256 MiB: ~10% of the integration part's CPU on a
# 2-core machine (552 -> 499 CPU seconds alone, 2026-12-05), where the suite is
# CPU-bound.  A freed chunk now stays poisoned until 32 MiB more has been
# freed: many requests later on these servers, so a stale pointer used in the
# same or a nearby request is still caught; the RSS tests use 4 MiB anyway.
ASAN_QUARANTINE = "quarantine_size_mb=32"


def _san_env(sandir):
    os.makedirs(sandir, exist_ok=True)
    return {
        "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:%s:log_path=%s/asan" % (ASAN_QUARANTINE,
                                                                                 sandir),
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:log_path=%s/ubsan" % sandir,
    }


def _base_env(home):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AURORA_", "ASAN_", "UBSAN_", "LSAN_", "KUBECONFIG",
                                "INTERNAL_API_SECRET", "NEXT_PUBLIC_"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env["HOME"] = home
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    os.makedirs(home, exist_ok=True)
    return env


def sanitizer_reports(sandir):
    """[(file, text)] for every sanitizer report file in sandir."""
    out = []
    if not os.path.isdir(sandir):
        return out
    for f in sorted(os.listdir(sandir)):
        if f.startswith(("asan", "ubsan", "lsan")):
            p = os.path.join(sandir, f)
            try:
                with open(p, "rb") as fh:
                    out.append((p, fh.read(20000).decode("utf-8", "replace")))
            except OSError as e:
                out.append((p, "<unreadable: %s>" % e))
    return out


class Proc:
    """A child process with its log file and sanitizer directory."""

    def __init__(self, name, argv, env, logpath, sandir, cwd=None, stdin=None, stdout=None,
                 stderr=None):
        self.name = name
        self.argv = argv
        self.logpath = logpath
        self.sandir = sandir
        self.killed = False          # set when the test killed it on purpose
        self.tolerate_exit = False   # a self-exit (any status) is not a failure
        self.checked = False
        self._log = open(logpath, "ab")
        self.p = subprocess.Popen(argv, env=env, cwd=cwd, stdin=stdin or subprocess.DEVNULL,
                                  stdout=stdout or self._log,
                                  stderr=self._log if stderr is None else stderr,
                                  start_new_session=True)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def log_text(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])

    def kill9(self):
        self.killed = True
        try:
            self.p.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.p.wait()

    def stop(self, timeout=20):
        """SIGTERM and wait.  Returns a list of problems (empty if clean)."""
        problems = []
        if self.checked:
            return problems
        self.checked = True
        self_exited = not self.alive()
        if not self_exited:
            try:
                self.p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                problems.append("%s (pid %d) did not exit within %ds of SIGTERM; killed"
                                % (self.name, self.pid, timeout))
                self.p.kill()
                self.p.wait()
        rc = self.p.returncode
        if not self.killed and rc != 0 and not (self_exited and self.tolerate_exit):
            problems.append("%s (pid %d) exited with status %s%s"
                            % (self.name, self.pid, rc, " (on its own)" if self_exited else ""))
        for path, text in sanitizer_reports(self.sandir):
            problems.append("%s: sanitizer report %s:\n%s" % (self.name, path, text))
        self._log.close()
        return problems


# ---------------------------------------------------------------------------
# server world
# ---------------------------------------------------------------------------
# ---------------------------------------------------------------------------
# a throwaway PostgreSQL
# ---------------------------------------------------------------------------
class Postgres:
    """initdb + postgres on a unix socket only (no TCP), trust auth for role aurora.
    As root, it runs as the postgres user (PostgreSQL refuses root).  durable=False
    (tests) turns fsync and synchronous commit off; benchmarks keep them on."""

    def __init__(self, durable=False):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                      key=lambda p: int(p.split("/")[4]))
        check(bins, "no PostgreSQL server binaries (/usr/lib/postgresql/<v>/bin): install postgresql")
        self.bindir = os.path.dirname(bins[-1])
        # Short: a unix socket path has a 107-byte limit.
        self.dir = tempfile.mkdtemp(prefix="aurora-pg-", dir="/tmp")
        self.user = None
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            self.user = pw.pw_uid, pw.pw_gid
            os.chown(self.dir, *self.user)
        self.log = open(os.path.join(self.dir, "server.log"), "ab")
        self.proc = None
        self.stopped = False
        r = subprocess.run([os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", "aurora",
                            "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
                           **self._as_user())
        check(r.returncode == 0, "initdb failed", r.stdout.decode("utf-8", "replace"))
        self.proc = subprocess.Popen(
            [os.path.join(self.bindir, "postgres"), "-D", self.data, "-k", self.dir, "-p", "5432",
             "-c", "listen_addresses=", "-c", "max_connections=60"]
            + ([] if durable else ["-c", "fsync=off", "-c", "synchronous_commit=off",
                                   "-c", "full_page_writes=off"]),
            stdout=self.log, stderr=self.log, start_new_session=True, **self._as_user())
        isready = [os.path.join(self.bindir, "pg_isready"), "-q", "-h", self.dir, "-p", "5432"]
        wait_until(lambda: self.proc.poll() is None and subprocess.run(isready).returncode == 0,
                   30, 0.1, "postgres to accept connections")

    @property
    def data(self):
        return os.path.join(self.dir, "data")

    def _as_user(self):
        if not self.user:
            return {}
        return {"user": self.user[0], "group": self.user[1], "extra_groups": []}

    @property
    def url(self):
        return "postgres://aurora@/postgres?host=%s&port=5432" % urllib.parse.quote(self.dir, safe="")

    def pids(self):
        """The postmaster and every process it forked (backends, background workers)."""
        out = [self.proc.pid]
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == self.proc.pid:
                out.append(int(d))
        return out

    def freeze(self):
        """SIGSTOP: the server keeps its sockets and answers nothing."""
        os.kill(self.proc.pid, signal.SIGSTOP)  # first: no new backend meanwhile
        for pid in self.pids()[1:]:
            os.kill(pid, signal.SIGSTOP)
        self.stopped = True

    def thaw(self):
        for pid in self.pids()[1:]:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        os.kill(self.proc.pid, signal.SIGCONT)
        self.stopped = False

    def destroy(self):
        if self.proc and self.proc.poll() is None:
            if self.stopped:
                self.thaw()
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: sessions are ended
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)



class World:
    """One aurora-server with its own data dir, bootstrapped."""

    def __init__(self, t, name="server", extra_env=None, start=True, asan_extra=None):
        self.t = t
        self.name = name
        self.dir = os.path.join(t.tmp, name)
        self.data = os.path.join(self.dir, "data")
        os.makedirs(self.data, exist_ok=True)
        self.port = free_port()
        self._picked_port = self.port  # chosen here: may be chosen again (start)
        self._was_up = False
        self.secret = secrets.token_hex(24)
        self.extra_env = dict(extra_env or {})
        self.asan_extra = asan_extra
        self.server = None
        self.stderr = None  # the server's stderr: its log file unless a test sets a descriptor
        self.generation = 0
        self.ctx = None
        self.org_id = self.user_id = self.api_key = None
        if start:
            self.start()
            self.bootstrap()

    # -- server process ----------------------------------------------------
    @property
    def ca(self):
        return os.path.join(self.data, "tls", "server.crt")

    def env(self, sandir):
        env = _base_env(os.path.join(self.dir, "home"))
        env.update({
            "AURORA_DATA_DIR": self.data,
            "AURORA_PORT": str(self.port),
            "AURORA_BIND": "127.0.0.1",
            "INTERNAL_API_SECRET": self.secret,
            "AURORA_LOG_LEVEL": "info",
            # Tests make tokens faster than people do; the per-minute default
            # (5) is tested on its own (test_compat_frontend.py).
            "AURORA_TOKEN_RATE_LIMIT_PER_MINUTE": "1000",
        })
        env.update(_san_env(sandir))
        if self.asan_extra:
            env["ASAN_OPTIONS"] += ":" + self.asan_extra
        env.update(self.extra_env)
        return env

    def start(self, timeout=20):
        check(os.access(SERVER_BIN, os.X_OK), "server binary missing: %s" % SERVER_BIN)
        for attempt in range(PORT_TRIES):
            self.generation += 1
            tag = "%s-%d" % (self.name, self.generation)
            sandir = os.path.join(self.dir, "san", tag)
            self.server = self.t.spawn(tag, [SERVER_BIN], self.env(sandir),
                                       os.path.join(self.dir, tag + ".log"), sandir, cwd=self.dir,
                                       stderr=self.stderr)
            try:
                self.wait_healthy(timeout)
            except AssertionError:
                if attempt + 1 == PORT_TRIES or not self._may_take_another_port():
                    raise
                self.t.note("%s: port %d was taken by another process; trying another"
                            % (tag, self.port))
                self.server.tolerate_exit = True  # exited on its own, as it should
                self.port = self._picked_port = free_port()
                continue
            self._was_up = True
            return self.server

    def _may_take_another_port(self):
        """A first start that lost the port free_port picked to another
        process may go to another port: nothing knows the port yet (no
        earlier start, no setting naming it, as a redirect URI would)."""
        return (not self._was_up and self.port == self._picked_port
                and not any(str(self.port) in str(v) for v in self.extra_env.values())
                and lost_port_race(self.server, self.port,
                                   "cannot start the listener on 127.0.0.1:%d" % self.port))

    def wait_healthy(self, timeout=20):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if not self.server.alive():
                raise AssertionError("%s exited during startup with status %s; log:\n%s"
                                     % (self.server.name, self.server.p.returncode,
                                        self.server.log_tail()))
            if os.path.exists(self.ca):
                try:
                    if self.ctx is None:
                        self.ctx = tls_context(self.ca)
                    if self.extra_env.get("AURORA_OPS_PORT"):
                        # /health lives on the plain-HTTP operations listener then.
                        c = http.client.HTTPConnection("127.0.0.1",
                                                       int(self.extra_env["AURORA_OPS_PORT"]), timeout=3)
                        try:
                            c.request("GET", "/health")
                            hr = c.getresponse()
                            r = Resp(hr.status, {}, hr.read())
                        finally:
                            c.close()
                    else:
                        r = https_request(self.port, self.ctx, "GET", "/health", timeout=3)
                    if r.status == 200:
                        return r
                    last = r
                except (OSError, ssl.SSLError, http.client.HTTPException) as e:
                    last = e
                    if isinstance(e, ssl.SSLCertVerificationError):
                        self.ctx = None  # certificate may have been half-written
            time.sleep(0.05)
        raise AssertionError("server did not become healthy on port %d within %ds (last: %r); log:\n%s"
                             % (self.port, timeout, last, self.server.log_tail()))

    def kill9(self):
        self.server.kill9()

    def replica(self, t, name="replica", start=True):
        """Another server of this deployment: this one's data dir (store and
        local secrets) and internal secret, its settings, its own port; owned
        by t (the test), started unless start=False."""
        r = World(t, name, start=False)
        r.data, r.secret = self.data, self.secret
        r.extra_env.update(self.extra_env)
        if start:
            r.start()
        return r

    def restart(self, timeout=20):
        """Starts the server again on the same port and data dir."""
        return self.start(timeout)

    # -- admin CLI -----------------------------------------------------------
    def redact_until_wal_truncated(self, command, tries=10):
        """Runs `admin <command>` (redact-audit, redact-webhooks) again while it
        reports that a reader of the server's kept SQLite's WAL, as its message tells
        the operator to, and checks that the WAL got truncated in the end.  Returns
        the last answer."""
        got = self.admin(command)
        for _ in range(tries):
            if got["wal_truncated"]:
                break
            got = self.admin(command)
        eq(got["wal_truncated"], True, "admin %s: the WAL truncated (%r)" % (command, got))
        return got

    def data_files_holding(self, needle):
        """Which of the SQLite database file and its WAL hold these bytes."""
        held = []
        for name in ("aurora.db", "aurora.db-wal"):
            path = os.path.join(self.data, name)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    if needle in f.read():
                        held.append(name)
        return held

    def admin(self, *args, expect_ok=True, stdin=b""):
        self.generation += 1
        tag = "admin-%d" % self.generation
        sandir = os.path.join(self.dir, "san", tag)
        env = self.env(sandir)
        r = subprocess.run([SERVER_BIN, "admin"] + list(args), env=env, cwd=self.dir,
                           capture_output=True, timeout=60, input=stdin)
        out = r.stdout.decode("utf-8", "replace")
        err = r.stderr.decode("utf-8", "replace")
        reports = sanitizer_reports(sandir)
        if reports:
            raise AssertionError("admin %s: sanitizer report:\n%s" % (" ".join(args), reports[0][1]))
        if expect_ok and r.returncode != 0:
            raise AssertionError("admin %s exited %d\nstdout: %s\nstderr: %s"
                                 % (" ".join(args), r.returncode, out, err))
        doc = None
        for line in reversed(out.strip().splitlines()):
            try:
                doc = json.loads(line)
                break
            except ValueError:
                continue
        if doc is None:
            try:
                doc = json.loads(out)
            except ValueError:
                pass
        if expect_ok:
            check(isinstance(doc, dict), "admin %s: stdout is not a JSON object" % " ".join(args), out, err)
        return doc if doc is not None else {"_rc": r.returncode, "_stdout": out, "_stderr": err}

    def testctl(self, *args):
        """Runs `aurora-testctl ARGS` (test-only state changes, e.g.
        expire-oauth-state) on this world's store; returns its JSON output."""
        check(os.access(TESTCTL_BIN, os.X_OK),
              "%s is missing: make build/asan/aurora-testctl" % TESTCTL_BIN)
        self.generation += 1
        sandir = os.path.join(self.dir, "san", "testctl-%d" % self.generation)
        r = subprocess.run([TESTCTL_BIN] + list(args), env=self.env(sandir), cwd=self.dir,
                           capture_output=True, timeout=60)
        out = r.stdout.decode("utf-8", "replace")
        err = r.stderr.decode("utf-8", "replace")
        reports = sanitizer_reports(sandir)
        if reports:
            raise AssertionError("testctl %s: sanitizer report:\n%s" % (" ".join(args), reports[0][1]))
        if r.returncode != 0:
            raise AssertionError("testctl %s exited %d\nstdout: %s\nstderr: %s"
                                 % (" ".join(args), r.returncode, out, err))
        return json.loads(out)

    def bootstrap(self):
        d = self.admin("bootstrap")
        for k in ("org_id", "user_id", "api_key"):
            check(d.get(k), "admin bootstrap: missing %s" % k, d)
        self.org_id, self.user_id, self.api_key = d["org_id"], d["user_id"], d["api_key"]
        return d

    def new_user(self, org_id=None, email=None, role=None):
        org_id = org_id or self.org_id
        email = email or "user-%s@example.test" % rand_tag(4)
        args = ["create-user", "--org", org_id, "--email", email, "--with-key"]
        if role:
            args += ["--role", role]
        u = self.admin(*args)
        check(u.get("id") and u.get("api_key"), "admin create-user --with-key: no id or key", u)
        return u["id"], u["api_key"]

    def new_org(self, name=None):
        """A new org with one member user and its API key: (org_id, user_id, key)."""
        o = self.admin("create-org", "--name", name or "org-%s" % rand_tag(4),
                       "--user-email", "user-%s@example.test" % rand_tag(4))
        check(o.get("id") and o.get("user_id") and o.get("api_key"),
              "admin create-org --user-email: no id, user or key", o)
        return o["id"], o["user_id"], o["api_key"]

    # -- HTTP ----------------------------------------------------------------
    def request(self, method, path, body=None, headers=None, key=None, auth=True, timeout=60):
        h = {}
        if auth:
            h["Authorization"] = "Bearer %s" % (key or self.api_key)
        if headers:
            h.update(headers)
        return https_request(self.port, self.ctx, method, path, body, h, timeout)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def as_frontend(self, key=None):
        """The headers with which the trusted frontend acts for the user of
        `key` (X-Internal-Secret, X-Org-ID, X-User-ID): how the documented
        OAuth flows start (an API key starts a flow no browser is tied to, and
        its callback must then carry the key)."""
        me = self.get("/api/me", key=key)
        eq(me.status, 200, "GET /api/me (%r)" % me)
        return {"X-Internal-Secret": self.secret, "X-Org-ID": me.json["org_id"],
                "X-User-ID": me.json["user_id"]}

    def frontend_get(self, path, key=None):
        """GET path as the frontend, for the user of `key` (as_frontend)."""
        return self.request("GET", path, auth=False, headers=self.as_frontend(key))

    def frontend_post(self, path, body=None, key=None):
        """POST path as the frontend, for the user of `key` (as_frontend)."""
        return self.request("POST", path, body, auth=False, headers=self.as_frontend(key))

    def internal(self, body, secret=None, headers=None, timeout=60):
        h = {"X-Internal-Secret": self.secret if secret is None else secret}
        if headers:
            h.update(headers)
        return https_request(self.port, self.ctx, "POST", "/internal/kubectl/execute", body, h, timeout)

    def create_token(self, cluster_name=None, key=None, expect=201, **extra):
        body = {"cluster_name": cluster_name or "it-%s" % rand_tag(4)}
        body.update(extra)
        r = self.post("/api/kubectl/tokens", body, key=key)
        eq(r.status, expect, "POST /api/kubectl/tokens status (%r)" % r)
        return r.json

    def revoke_token(self, token_id, key=None):
        return self.delete("/api/kubectl/tokens/%s" % token_id, key=key)

    def connections(self, key=None):
        r = self.get("/api/kubectl/connections", key=key)
        eq(r.status, 200, "GET /api/kubectl/connections status (%r)" % r)
        check(isinstance(r.get("connections"), list), "connections is not a list", r)
        return r.json["connections"]

    def connection(self, cluster_id, key=None):
        for c in self.connections(key):
            if c.get("cluster_id") == cluster_id:
                return c
        return None

    def wait_connection(self, cluster_id, status="active", timeout=30, key=None):
        # 30 s, as for any Node peer (NodePeer, LegacyAgent.wait_event): called
        # just after spawning one, it covers Node's start, the TLS handshake,
        # the register and its store write on a loaded machine; it returns as
        # soon as the connection is there
        def ok():
            c = self.connection(cluster_id, key)
            return c if c and c.get("status") == status else None
        return wait_until(ok, timeout, 0.1, "connection %s to be %s" % (cluster_id, status))

    def kubectl(self, cluster_id, args=None, command=None, key=None, headers=None, http_timeout=120,
                auth=True, **extra):
        """POST /api/clusters/{id}/kubectl.  extra goes into the body (timeout, max_output)."""
        body = {}
        if args is not None:
            body["args"] = args
        if command is not None:
            body["command"] = command
        body.update(extra)
        return self.post("/api/clusters/%s/kubectl" % cluster_id, body, key=key,
                         headers=headers, timeout=http_timeout, auth=auth)

    def kubectl_sse(self, cluster_id, body, on_event, key=None, timeout=300):
        """POSTs with Accept: text/event-stream; calls on_event(event, data) per event.
        Returns (status, headers)."""
        conn = HTTPSConn(self.port, self.ctx, timeout=timeout)
        try:
            payload = json.dumps(body).encode()
            conn.request("POST", "/api/clusters/%s/kubectl" % cluster_id, body=payload, headers={
                "Authorization": "Bearer %s" % (key or self.api_key),
                "Content-Type": "application/json", "Accept": "text/event-stream",
                "Connection": "close"})
            r = conn.getresponse()
            headers = {}
            for k, v in r.getheaders():  # a repeated header reads as its values joined
                headers[k.lower()] = headers[k.lower()] + ", " + v if k.lower() in headers else v
            if "text/event-stream" not in headers.get("content-type", ""):
                raise AssertionError("expected text/event-stream, got HTTP %d %s: %s"
                                     % (r.status, headers.get("content-type"),
                                        _short(r.read().decode("utf-8", "replace"))))
            parse_sse_stream(r, on_event)
            return r.status, headers
        finally:
            conn.close()

    # -- agents ----------------------------------------------------------------
    def ws_url(self):
        return "wss://127.0.0.1:%d/kubectl-agent" % self.port

    def start_agent(self, token, name=None, wait=True, extra_env=None, timeout=20, owner=None,
                    stderr=None):
        """owner: the T whose teardown stops the agent (default: the running test;
        pass world.t to keep it for the whole program).  stderr: a descriptor for
        the agent's stderr instead of its log file."""
        a = Agent(self, token, name or "agent-%s" % cluster_id_for(token)[8:16], extra_env, owner,
                  stderr)
        if wait:
            a.wait_ready(timeout)
        return a

    def legacy_agent(self, token=None, args=(), name=None, owner=None):
        return LegacyAgent(self, token, list(args), name, owner)

    def new_connected_agent(self, key=None, cluster_name=None):
        """Creates a token, starts a v2 agent and waits for its connection to be active."""
        tok = self.create_token(cluster_name, key=key)
        a = self.start_agent(tok["token"])
        self.wait_connection(tok["cluster_id"], key=key)
        return tok, a


def _owner(world):
    """Agents belong to the running test (stopped at its end), even on a suite world."""
    return _CURRENT.get("t") or world.t


class Agent:
    """build/asan/aurora-agent connected to a World."""

    def __init__(self, world, token, name, extra_env=None, owner=None, stderr=None):
        check(os.access(AGENT_BIN, os.X_OK), "agent binary missing: %s" % AGENT_BIN)
        self.world = world
        self.token = token
        self.cluster_id = cluster_id_for(token)
        self.health_port = free_port()
        owner = owner or _owner(world)
        d = os.path.join(owner.tmp, name)
        os.makedirs(d, exist_ok=True)
        kubeconfig, _ = kube_fixture()
        env = _base_env(os.path.join(d, "home"))
        env.update({
            "NEXT_PUBLIC_WEBSOCKET_URL": world.ws_url(),
            "AURORA_AGENT_TOKEN": token,
            "AURORA_CA_FILE": world.ca,
            "AURORA_HEALTH_PORT": str(self.health_port),
            "AURORA_KUBECTL_PATH": KUBECTL,
            "KUBECONFIG": kubeconfig,
            "AURORA_LOG_LEVEL": "info",
        })
        env.update(_san_env(os.path.join(d, "san")))
        env.update(extra_env or {})
        self._respawn = dict(owner=owner, name=name, env=env, dir=d, tries=1,
                             port_is_ours=env["AURORA_HEALTH_PORT"] == str(self.health_port))
        self.proc = owner.spawn(name, [AGENT_BIN], env, os.path.join(d, "agent.log"),
                                  os.path.join(d, "san"), cwd=d, stderr=stderr)

    def _on_another_port(self):
        """The agent exited because its health port (free_port's pick) was
        taken by another process meanwhile: the same agent again on another
        port; False when that is not what happened (or it happened too often)."""
        r = self._respawn
        if (not r["port_is_ours"] or r["tries"] >= PORT_TRIES or
                not lost_port_race(self.proc, self.health_port,
                                   "health: cannot listen on 0.0.0.0:%d" % self.health_port)):
            return False
        r["owner"].note("%s: health port %d was taken by another process; trying another"
                        % (self.proc.name, self.health_port))
        self.proc.tolerate_exit = True  # exited on its own, as it should
        # its log moves aside: agent.log is the running agent's
        old = os.path.join(r["dir"], "agent-port-taken-%d.log" % r["tries"])
        os.rename(self.proc.logpath, old)
        self.proc.logpath = old
        r["tries"] += 1
        self.health_port = free_port()
        r["env"]["AURORA_HEALTH_PORT"] = str(self.health_port)
        self.proc = r["owner"].spawn(r["name"], [AGENT_BIN], r["env"], os.path.join(r["dir"], "agent.log"),
                                     os.path.join(r["dir"], "san"), cwd=r["dir"])
        return True

    def health(self, path="/ready"):
        try:
            # generous: a loaded machine may keep the agent from answering for seconds
            c = http.client.HTTPConnection("127.0.0.1", self.health_port, timeout=15)
            c.request("GET", path)
            r = c.getresponse()
            body = r.read()
            c.close()
            return r.status, body
        except OSError:
            return None, b""

    def wait_ready(self, timeout=20):
        def ok():
            if not self.proc.alive() and not self._on_another_port():
                raise AssertionError("%s exited with status %s before becoming ready; log:\n%s"
                                     % (self.proc.name, self.proc.p.returncode, self.proc.log_tail()))
            # this agent's own listener, not another process's on a port both picked
            if not listens_on(self.proc.pid, self.health_port):
                return False
            return self.health("/ready")[0] == 200
        wait_until(ok, timeout, 0.05, "%s /ready on port %d" % (self.proc.name, self.health_port))

    def log(self):
        return self.proc.log_text()


class LegacyAgent:
    """tests/fixtures/legacy_agent.js as a child process; events are JSON lines."""

    def __init__(self, world, token, args, name=None, owner=None):
        self.world = world
        self.token = token
        self.events = []
        self.cv = threading.Condition()
        name = name or "legacy-%s" % rand_tag(3)
        owner = owner or _owner(world)
        d = os.path.join(owner.tmp, name)
        os.makedirs(d, exist_ok=True)
        kubeconfig, _ = kube_fixture()
        env = _base_env(os.path.join(d, "home"))
        env.update({"KUBECONFIG": kubeconfig, "AURORA_KUBECTL_PATH": KUBECTL})
        argv = [NODE, LEGACY_JS, "--url", world.ws_url(), "--ca", world.ca]
        if token is not None:
            argv += ["--token", token]
        argv += args
        self.proc = owner.spawn(name, argv, env, os.path.join(d, "legacy.log"),
                                  os.path.join(d, "san"), cwd=d, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE)
        self.proc.tolerate_exit = True  # it exits 0 by itself when the connection closes
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        for line in self.proc.p.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {"event": "garbage", "line": line.decode("utf-8", "replace")}
            with self.cv:
                self.events.append(ev)
                self.cv.notify_all()
        with self.cv:
            self.events.append({"event": "exit"})
            self.cv.notify_all()

    def wait_event(self, pred, timeout=30, what="event"):
        """Waits for an event matching pred (a name or a function); returns it.
        (30 s: the node process, its TLS handshake and the server's answer, on
        a loaded machine; a wait ends as soon as the event is there.)"""
        if isinstance(pred, str):
            name = pred
            pred = lambda e: e.get("event") == name  # noqa: E731
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for e in self.events:
                    if pred(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("legacy agent: timed out after %.1fs waiting for %s; events: %s"
                                         % (timeout, what, _short(self.events, 2000)))
                self.cv.wait(left)

    def has_event(self, name):
        with self.cv:
            return any(e.get("event") == name for e in self.events)

    def wait_close(self, timeout=30):
        return self.wait_event("close", timeout, "close")

    def op(self, **op):
        self.proc.p.stdin.write((json.dumps(op) + "\n").encode())
        self.proc.p.stdin.flush()


# ---------------------------------------------------------------------------
# test registry and runner
# ---------------------------------------------------------------------------
_TESTS = []
_CURRENT = {"t": None}
_SUITE = {"t": None, "world": None, "root": None}


def suite_world(**kw):
    """A server shared by the tests of this program that ask for it (started on first
    use, stopped and checked after the last test, which counts as one more test)."""
    if _SUITE["world"] is None:
        if _SUITE["t"] is None:
            _SUITE["t"] = T(_SUITE["root"], "suite")
        _SUITE["world"] = World(_SUITE["t"], "suite-server", **kw)
    return _SUITE["world"]


def suite_shared(key, make):
    """One object for the whole program, made on first use as make(T) with the
    suite's own T (its processes are stopped and checked after the last test,
    as suite_world's are)."""
    if key not in _SUITE_SHARED:
        if _SUITE["t"] is None:
            _SUITE["t"] = T(_SUITE["root"], "suite")
        _SUITE_SHARED[key] = make(_SUITE["t"])
    return _SUITE_SHARED[key]


_SUITE_SHARED = {}


def suite_user():
    """(user id, API key) of one user of the suite's server, made on first use."""
    return suite_shared("user", lambda _t: suite_world().new_user())


def test(fn=None, *, timeout=60):
    def deco(f):
        _TESTS.append((f.__name__, f, timeout))
        return f
    return deco(fn) if fn is not None else deco


class T:
    """Per-test context."""

    def __init__(self, root, name):
        self.name = name
        self.tmp = os.path.join(root, name)
        os.makedirs(self.tmp, exist_ok=True)
        self.procs = []
        self._defer = []
        self.notes = []

    def spawn(self, name, argv, env, logpath, sandir, **kw):
        os.makedirs(sandir, exist_ok=True)
        p = Proc(name, argv, env, logpath, sandir, **kw)
        self.procs.append(p)
        return p

    def world(self, name="server", **kw):
        return World(self, name, **kw)

    def defer(self, fn):
        self._defer.append(fn)

    def note(self, msg):
        self.notes.append(msg)

    def teardown(self):
        problems = []
        for fn in reversed(self._defer):
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                problems.append("deferred cleanup failed: %r" % e)
        # agents first, then servers, so each side sees an orderly shutdown
        order = sorted(self.procs, key=lambda p: 0 if not p.name.startswith("server") else 1)
        for p in order:
            problems.extend(p.stop())
        return problems

    def dump_logs(self, n=40):
        for p in self.procs:
            tail = p.log_tail(n)
            if tail.strip():
                print("    --- %s log (%s), last %d lines ---" % (p.name, p.logpath, n))
                for line in tail.splitlines():
                    print("    | " + line)


def _alarm(signum, frame):
    raise TestTimeout("test exceeded its time limit")


def main():
    filters = [a for a in sys.argv[1:] if not a.startswith("-")]
    prog = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    root = tempfile.mkdtemp(prefix="aurora-%s-" % prog)
    signal.signal(signal.SIGALRM, _alarm)
    passed = failed = 0
    _SUITE["root"] = root
    print("%s: temp dir %s" % (prog, root), flush=True)

    def report(name, dur, err, problems, t):
        nonlocal passed, failed
        if err is None and not problems:
            passed += 1
            print("PASS %s (%.1fs)" % (name, dur), flush=True)
            for n in t.notes:
                print("    note: %s" % n)
            if VERBOSE:
                t.dump_logs()
            return
        failed += 1
        print("FAIL %s (%.1fs)" % (name, dur), flush=True)
        for n in t.notes:
            print("    note: %s" % n)
        if err:
            for line in err.rstrip().splitlines():
                print("    " + line)
        for pr in problems:
            for line in pr.rstrip().splitlines():
                print("    " + line)
        t.dump_logs()
        if _SUITE["t"] is not None and _SUITE["t"] is not t:
            _SUITE["t"].dump_logs(20)
        sys.stdout.flush()

    try:
        for name, fn, limit in _TESTS:
            if filters and not any(f in name for f in filters):
                continue
            t = T(root, name)
            _CURRENT["t"] = t
            start = time.monotonic()
            err = None
            try:
                signal.setitimer(signal.ITIMER_REAL, limit)
                fn(t)
            except TestTimeout:
                err = "timed out after %ds\n%s" % (limit, traceback.format_exc(limit=-4))
            except AssertionError as e:
                err = "%s\n%s" % (e, "".join(traceback.format_tb(e.__traceback__)[-2:]))
            except Exception:  # noqa: BLE001
                err = traceback.format_exc()
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            try:
                signal.setitimer(signal.ITIMER_REAL, 60)
                problems = t.teardown()
            except TestTimeout:
                problems = ["teardown timed out"]
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                _CURRENT["t"] = None
            report(name, time.monotonic() - start, err, problems, t)
        st = _SUITE["t"]
        if st is not None and st.procs:
            start = time.monotonic()
            try:
                signal.setitimer(signal.ITIMER_REAL, 60)
                problems = st.teardown()
            except TestTimeout:
                problems = ["suite teardown timed out"]
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            report("suite_server_exits_cleanly", time.monotonic() - start, None, problems, st)
    finally:
        _stop_kube_fixture()
    # A name given on the command line that matches no test is a typo, not a pass.
    for f in filters:
        if not any(f in name for name, _, _ in _TESTS):
            failed += 1
            print("FAIL %s: no test of %s has that name" % (f, prog), flush=True)
    if failed == 0 and os.environ.get("AURORA_KEEP_TMP") != "1":
        shutil.rmtree(root, ignore_errors=True)
    else:
        print("%s: logs kept in %s" % (prog, root))
    print("%d passed, %d failed" % (passed, failed), flush=True)
    sys.exit(1 if failed else 0)


def scripted_bytes(n, seed):
    """The bytes tests/fixtures/v2_scripted_agent.js emits for `emit n seed`
    (computed here independently of the fixture's code path)."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(("%s:%d" % (seed, i)).encode()).digest()
        i += 1
    return bytes(out[:n])


class NodePeer:
    """A Node.js test peer from tests/fixtures/ connected to a World, reporting what
    it sees as JSON lines on stdout; events are kept in order and waited for."""

    def __init__(self, w, token, owner, script, tag, extra_args=(), stdin=False):
        self.events = []
        self.cv = threading.Condition()
        d = os.path.join(owner.tmp, "%s-%s" % (tag, rand_tag(3)))
        os.makedirs(d, exist_ok=True)
        self.proc = owner.spawn(tag, [NODE, os.path.join(FIXTURES, script), "--url", w.ws_url(),
                                      "--token", token, "--ca", w.ca] + list(extra_args),
                                dict(os.environ), os.path.join(d, tag + ".log"), os.path.join(d, "san"),
                                cwd=os.path.dirname(FIXTURES), stdout=subprocess.PIPE,
                                stdin=subprocess.PIPE if stdin else None)
        self.proc.tolerate_exit = True
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.p.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self.cv:
                self.events.append(ev)
                self.cv.notify_all()

    def wait(self, pred, timeout=20, what="peer event"):
        """The first event matching pred, waiting up to timeout seconds for it."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for e in self.events:
                    if pred(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("%s: timed out after %.1fs waiting for %s; events: %s"
                                         % (self.proc.name, timeout, what, _short(self.events[-20:], 2000)))
                self.cv.wait(left)



def scrape(w):
    """The server's /metrics text (answered on the event loop, whatever the
    workers do)."""
    r = w.get("/metrics", auth=False)
    eq(r.status, 200, "GET /metrics status")
    contains(r.headers.get("content-type", ""), "text/plain", "metrics content type")
    return r.body.decode()


def sample(text, name, **labels):
    """The value of one sample, or None."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(4))
    return None


class HostTrap:
    """A listener standing for every host but a test's fixture (point
    HTTPS_PROXY/HTTP_PROXY at it): records the first line of whatever
    connects, so a test can show the server called nobody else."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.seen = []
        self.lock = threading.Lock()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                c.settimeout(5)
                first = c.recv(512).split(b"\r\n", 1)[0].decode("latin-1")
            except OSError:
                first = "<nothing>"
            with self.lock:
                self.seen.append(first)
            c.close()

    def hits(self):
        with self.lock:
            return list(self.seen)


class HttpFixture:
    """A Node script under tests/fixtures standing in for a provider's HTTP API:
    it prints "PORT <n>" once listening and is driven through /_fixture/*
    (config, stats, ...).  Stopped by the harness with the test t."""

    def __init__(self, t, name, script):
        d = os.path.join(t.tmp, name)
        os.makedirs(d, exist_ok=True)
        p = t.spawn(name, [NODE, os.path.join(FIXTURES, script)], dict(os.environ),
                    os.path.join(d, name + ".log"), os.path.join(d, "san"), cwd=os.path.dirname(FIXTURES),
                    stdout=subprocess.PIPE)
        line = p.p.stdout.readline().decode()
        check(line.startswith("PORT "), "%s fixture did not start" % script, line, p.log_tail())
        p.killed = True  # stopped with SIGTERM by the harness; not ours to judge
        self.base = "http://127.0.0.1:%d" % int(line.split()[1])

    def ctl(self, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method="POST" if data is not None else "GET",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"{}")

    def config(self, **kw):
        return self.ctl("/_fixture/config", kw)

    def stats(self):
        return self.ctl("/_fixture/stats")

class V2Agent(NodePeer):
    """tests/fixtures/v2_agent.js, a v2-dialect stand-in agent that reports every
    exec it receives (kind, program, argv, env) as JSON lines; for testing what
    the server sends (cloud_exec credentials, injected flags) without running it."""

    def __init__(self, w, token, owner):
        super().__init__(w, token, owner, "v2_agent.js", "v2agent")

    def execs(self):
        with self.cv:
            return [e for e in self.events if e.get("event") == "exec"]

    def wait_execs(self, n, timeout=10):
        """The exec events once there are at least n.  The agent reports each exec
        before it answers, but a thread reads those reports: the server's HTTP answer
        can reach the test first, so read them through this, never execs()[-1]."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                execs = [e for e in self.events if e.get("event") == "exec"]
                if len(execs) >= n:
                    return execs
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("v2 agent: timed out after %.1fs waiting for exec frame #%d "
                                         "(%d arrived)" % (timeout, n, len(execs)))
                self.cv.wait(left)
