#!/usr/bin/env python3
"""The fully static agent (`make static-agent` → build/static/aurora-agent) runs
in an otherwise empty root and connects by host name:

  * `file` says statically linked; there is no program interpreter;
  * a root directory holding only the binary, a CA bundle, /etc/hosts,
    /etc/resolv.conf and /dev/null + /dev/urandom (the two device nodes every
    container runtime provides; libwebsockets reads /dev/urandom) is enough:
    the agent, started there with chroot, resolves `aurora.test` from
    /etc/hosts, connects to the real server on 127.0.0.1 with full certificate
    verification of that name, and a command round trip works;
  * under strace, both runs (hosts file, DNS) open no NSS file or module
    (nsswitch.conf, libnss_*, gai.conf, host.conf, passwd, group, services);
  * resolving through DNS (c-ares, linked statically from Debian's libcares.a):
    /etc/resolv.conf names a small DNS server run by this test on port 53 of a
    loopback address of its own (UDP+TCP); the agent is given `svc`, applies
    the search domain (svc.corp.test), gets a truncated UDP answer and asks
    again over TCP; the server certificate is verified against the system
    store named by SSL_CERT_FILE, as Dockerfile.agent sets it;
  * the static link and the Makefile's agent link the same libraries.

For the round trip a kubectl must exist inside the root: the real, statically
linked kubectl v1.32 binary (Google Cloud SDK's kubectl.1.32, a Go static
build) is copied in as /bin/kubectl with a kubeconfig for the kube API fixture.
Needs root (chroot, mknod, port 53)."""

import glob
import os
import secrets
import shutil
import socket
import struct
import subprocess
import threading
import time

from harness import (KUBECTL, ROOT, World, check, contains, eq, free_port, kube_fixture, main,
                     test, wait_until)

STATIC_BIN = os.path.join(ROOT, "build", "static", "aurora-agent")
BUILD_SCRIPT = os.path.join(ROOT, "scripts", "build-static-agent.sh")
# port 53 is fixed (resolv.conf names no port): an address of this run's own in
# 127.0.0.0/8, so that two runs at once on one machine do not collide
DNS_ADDR = "127.53.%d.%d" % (secrets.randbelow(256), 1 + secrets.randbelow(254))
NSS_FILES = ("nsswitch.conf", "libnss", "gai.conf", "host.conf", "/etc/passwd", "/etc/group",
             "/etc/services")
STATE = {}


def static_binary(t):
    """Builds build/static/aurora-agent when missing or older than its sources."""
    if "bin" in STATE:
        return STATE["bin"]
    srcs = glob.glob(os.path.join(ROOT, "agent", "*.[ch]")) + \
        glob.glob(os.path.join(ROOT, "common", "*.[ch]")) + [BUILD_SCRIPT]
    newest = max(os.path.getmtime(p) for p in srcs)
    if not os.path.exists(STATIC_BIN) or os.path.getmtime(STATIC_BIN) < newest:
        r = subprocess.run([BUILD_SCRIPT, STATIC_BIN], cwd=ROOT, capture_output=True, timeout=900)
        check(r.returncode == 0, "scripts/build-static-agent.sh failed",
              r.stdout.decode(errors="replace")[-3000:], r.stderr.decode(errors="replace")[-3000:])
        t.note("built %s" % STATIC_BIN)
    STATE["bin"] = STATIC_BIN
    return STATIC_BIN


def static_kubectl():
    """A statically linked real kubectl (v1.32 to match the fixture)."""
    real = os.path.realpath(KUBECTL)
    for cand in [os.path.join(os.path.dirname(real), "kubectl.1.32"), real]:
        if os.path.exists(cand):
            out = subprocess.run(["file", "-b", cand], capture_output=True).stdout.decode()
            if "statically linked" in out:
                return cand
    raise AssertionError("no statically linked kubectl found next to %s" % real)


def make_cert(d, names):
    key, crt = os.path.join(d, "server.key"), os.path.join(d, "server.crt")
    san = ",".join(["DNS:%s" % n for n in names] + ["IP:127.0.0.1"])
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                        "-days", "2", "-subj", "/CN=%s" % names[0], "-addext",
                        "subjectAltName=%s" % san], capture_output=True)
    check(r.returncode == 0, "openssl req failed", r.stderr.decode())
    return crt, key


def world_with_names(t, names):
    """A server whose certificate is valid for the given host names."""
    w = World(t, "server", start=False)
    tls = os.path.join(w.data, "tls")
    os.makedirs(tls, exist_ok=True)
    crt, key = make_cert(tls, names)
    os.chmod(key, 0o600)
    w.start()
    w.bootstrap()
    return w


def make_root(t, binary, hosts, resolv):
    root = os.path.join(t.tmp, "root")
    os.makedirs(os.path.join(root, "etc", "ssl", "certs"))
    os.makedirs(os.path.join(root, "dev"))
    os.makedirs(os.path.join(root, "bin"))
    shutil.copy2(binary, os.path.join(root, "aurora-agent"))
    with open(os.path.join(root, "etc", "hosts"), "w") as f:
        f.write(hosts)
    with open(os.path.join(root, "etc", "resolv.conf"), "w") as f:
        f.write(resolv)
    os.mknod(os.path.join(root, "dev", "null"), 0o666 | 0o020000, os.makedev(1, 3))
    os.mknod(os.path.join(root, "dev", "urandom"), 0o666 | 0o020000, os.makedev(1, 9))
    # what the round trip needs: a static kubectl and its kubeconfig
    shutil.copy2(static_kubectl(), os.path.join(root, "bin", "kubectl"))
    kc, _ = kube_fixture()
    shutil.copy2(kc, os.path.join(root, "kubeconfig"))
    return root


def tree(root):
    out = []
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            out.append(os.path.relpath(os.path.join(d, n), root))
    return sorted(out)


class StaticAgent:
    def __init__(self, t, w, root, ca, url_host, name, strace_to=None, env_extra=None):
        tok = w.create_token("static-%s" % name)
        self.token = tok
        self.health_port = free_port()
        env = {"PATH": "/bin", "HOME": "/",
               "NEXT_PUBLIC_WEBSOCKET_URL": "wss://%s:%d/kubectl-agent" % (url_host, w.port),
               "AURORA_AGENT_TOKEN": tok["token"],
               "AURORA_HEALTH_PORT": str(self.health_port), "AURORA_HEALTH_BIND": "127.0.0.1",
               "AURORA_KUBECTL_PATH": "/bin/kubectl", "KUBECONFIG": "/kubeconfig",
               "AURORA_LOG_LEVEL": "debug"}
        if ca:
            env["AURORA_CA_FILE"] = ca
        else:  # the system store, named by SSL_CERT_FILE
            env["SSL_CERT_FILE"] = "/etc/ssl/certs/ca-certificates.crt"
        if env_extra is not None:
            env = {k: v for k, v in env.items() if k != "SSL_CERT_FILE"}
            env.update(env_extra)
        argv = [shutil.which("chroot") or "/usr/sbin/chroot", root, "/aurora-agent"]
        if strace_to:
            argv = [shutil.which("strace"), "-f", "-qq", "-e", "trace=open,openat,execve", "-o", strace_to] + argv
        d = os.path.join(t.tmp, name)
        os.makedirs(d, exist_ok=True)
        self.proc = t.spawn(name, argv, env, os.path.join(d, "agent.log"), os.path.join(d, "san"))
        self.strace = strace_to

    def ready(self):
        import http.client
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.health_port, timeout=15)
            c.request("GET", "/ready")
            s = c.getresponse().status
            c.close()
            return s == 200
        except OSError:
            return False

    def wait_ready(self, timeout=20):
        def ok():
            if not self.proc.alive():
                raise AssertionError("static agent exited (%s):\n%s"
                                     % (self.proc.p.returncode, self.proc.log_tail()))
            return self.ready()
        wait_until(ok, timeout, 0.1, "the static agent to be ready")

    def agent_pid(self):
        """With strace in front, the agent is strace's child."""
        if not self.strace:
            return self.proc.pid
        for task in glob.glob("/proc/%d/task/*/children" % self.proc.pid):
            with open(task) as f:
                kids = f.read().split()
            if kids:
                return int(kids[0])
        return None

    def stop_traced(self):
        """SIGTERM the agent itself; strace then exits with the agent's status."""
        pid = self.agent_pid()
        check(pid, "cannot find the traced agent")
        os.kill(pid, 15)
        self.proc.p.wait(20)
        eq(self.proc.p.returncode, 0, "the static agent's exit status (via strace)")


def round_trip(w, cid, text):
    r = w.kubectl(cid, args=["get", "--raw", "/fixture/echo/%s" % text])
    eq(r.status, 200, "kubectl through the static agent (%r)" % r)
    eq(r.json.get("return_code"), 0, "return_code (%r)" % r.json)
    eq(r.json.get("output"), text, "output")


@test(timeout=900)
def binary_is_fully_static(t):
    b = static_binary(t)
    desc = subprocess.run(["file", "-b", b], capture_output=True).stdout.decode()
    contains(desc, "statically linked", "file(1) output")
    check("interpreter" not in desc and "dynamically" not in desc, "no interpreter", desc)
    ph = subprocess.run(["readelf", "-lW", b], capture_output=True).stdout.decode()
    check("INTERP" not in ph and "DYNAMIC" not in ph, "no INTERP/DYNAMIC program header", ph)
    check(".symtab" not in subprocess.run(["readelf", "-SW", b], capture_output=True).stdout.decode(),
          "the binary is stripped")
    t.note("%s: %d bytes" % (os.path.relpath(b, ROOT), os.path.getsize(b)))


@test(timeout=30)
def dockerfile_in_step_with_makefile(t):
    """Dockerfile.agent cannot be built here: check that it builds the agent the
    way `make static-agent` does, from everything the build script reads."""
    import re
    with open(os.path.join(ROOT, "Dockerfile.agent")) as f:
        df = f.read()
    with open(os.path.join(ROOT, "Makefile")) as f:
        mk = f.read()
    m = re.search(r"^static-agent:.*\n\t(.*)$", mk, re.M)
    check(m and "scripts/build-static-agent.sh build/static/aurora-agent" in m.group(1),
          "the Makefile's static-agent target runs scripts/build-static-agent.sh", m and m.group(0))
    stages = re.split(r"^FROM ", df, flags=re.M)[1:]
    build = [st for st in stages if " AS build" in st.splitlines()[0]]
    check(build, "a build stage")
    contains(build[0], "RUN make static-agent", "the build stage runs the Makefile target")
    for src in ("Makefile", "common/", "agent/", "scripts/build-static-agent.sh"):
        check(re.search(r"^COPY %s " % re.escape(src), build[0], re.M),
              "the build stage copies %s" % src, build[0])
    final = stages[-1]
    eq(final.splitlines()[0].strip(), "scratch", "the final stage is FROM scratch")
    for want in ("COPY --from=build /src/build/static/aurora-agent ", "USER 1000:1000",
                 "ENTRYPOINT [\"/usr/local/bin/aurora-agent\"]",
                 "SSL_CERT_DIR=/etc/ssl/certs"):
        contains(final, want, "final stage")
    check(re.search(r"KUBECTL_VERSION=v\d+\.\d+\.\d+", df), "kubectl version pinned")
    check(re.search(r"KUBECTL_SHA256_AMD64=[0-9a-f]{64}", df), "kubectl checksum pinned")
    contains(df, "sha256sum -c", "the kubectl download is verified")


@test(timeout=30)
def static_link_has_every_agent_library(t):
    """Every library the Makefile links into the agent (AGENT_PKGS, c-ares among
    them) is in the static script's link line too."""
    import re
    with open(os.path.join(ROOT, "Makefile")) as f:
        m = re.search(r"^AGENT_PKGS\s*:=\s*(.*)$", f.read(), re.M)
    check(m, "AGENT_PKGS in the Makefile")
    pkgs = m.group(1).split()
    contains(pkgs, "libcares", "AGENT_PKGS")
    r = subprocess.run(["pkg-config", "--libs"] + pkgs, capture_output=True, text=True)
    check(r.returncode == 0, "pkg-config --libs %s" % " ".join(pkgs), r.stderr)
    want = {f[2:] for f in r.stdout.split() if f.startswith("-l")}
    with open(BUILD_SCRIPT) as f:
        link = re.search(r"-Wl,--start-group(.*?)-Wl,--end-group", f.read(), re.S)
    check(link, "a link group in %s" % BUILD_SCRIPT)
    have = set(re.findall(r"-l(\S+)", link.group(1)))
    eq(sorted(want - have), [], "libraries of AGENT_PKGS missing from the static link")


@test(timeout=120)
def chroot_connects_by_name_from_etc_hosts(t):
    check(os.geteuid() == 0, "this test needs root (chroot, mknod)")
    b = static_binary(t)
    w = world_with_names(t, ["aurora.test", "svc", "localhost"])
    root = make_root(t, b, "127.0.0.1 aurora.test\n",
                     "nameserver %s\noptions timeout:1 attempts:1\n" % DNS_ADDR)
    shutil.copy2(w.ca, os.path.join(root, "etc", "ssl", "certs", "ca-certificates.crt"))
    eq(tree(root), ["aurora-agent", "bin", "bin/kubectl", "dev", "dev/null", "dev/urandom", "etc",
                    "etc/hosts", "etc/resolv.conf", "etc/ssl", "etc/ssl/certs",
                    "etc/ssl/certs/ca-certificates.crt", "kubeconfig"], "the root's contents")
    trace = os.path.join(t.tmp, "strace.txt") if shutil.which("strace") else None
    if not trace:
        t.note("strace not installed: the NSS check is skipped")
    a = StaticAgent(t, w, root, "/etc/ssl/certs/ca-certificates.crt", "aurora.test", "hosts-agent",
                    strace_to=trace)
    a.wait_ready(30)
    cid = a.token["cluster_id"]
    w.wait_connection(cid)
    round_trip(w, cid, "static-hosts-ok")
    contains(a.proc.log_text(), "connecting to wss://aurora.test:%d/kubectl-agent (127.0.0.1)" % w.port,
             "the agent resolved the name itself")
    if trace:
        a.stop_traced()
        with open(trace) as f:
            lines = f.read().splitlines()
        bad = [ln for ln in lines if any(n in ln for n in NSS_FILES)]
        eq(bad, [], "NSS files or modules opened at run time")
        check(any('"/etc/hosts"' in ln for ln in lines), "the agent read /etc/hosts itself",
              "\n".join(lines[:80]))
        check(any('"/bin/kubectl"' in ln and "execve" in ln for ln in lines),
              "kubectl ran inside the root", "\n".join(lines[-40:]))


def hashed_ca_dir(root, ca):
    """root/etc/ssl/certs/<subject hash>.0 = ca: a hashed directory as Debian's
    /etc/ssl/certs and the image's (Dockerfile.agent) have; the hash by the
    openssl command, not by the code under test."""
    r = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", ca], capture_output=True,
                       text=True)
    check(r.returncode == 0, "openssl x509 -hash", r.stderr)
    name = "%s.0" % r.stdout.strip()
    shutil.copy2(ca, os.path.join(root, "etc", "ssl", "certs", name))
    return "/etc/ssl/certs/" + name


@test(timeout=120)
def chroot_system_store_read_on_demand_from_hashed_dir(t):
    """As in the image: SSL_CERT_DIR names a hashed directory and no bundle is
    named; the agent verifies the server through it, opening the one root the
    chain needs (when the handshake needs it) and no bundle file."""
    check(os.geteuid() == 0, "this test needs root (chroot, mknod)")
    check(shutil.which("strace"), "strace is not installed (scripts/install-deps.sh)")
    b = static_binary(t)
    w = world_with_names(t, ["aurora.test", "localhost"])
    root = make_root(t, b, "127.0.0.1 aurora.test\n", "nameserver %s\n" % DNS_ADDR)
    root_file = hashed_ca_dir(root, w.ca)
    # a bundle is there too (as in the image, for kubectl) but must not be parsed
    shutil.copy2(w.ca, os.path.join(root, "etc", "ssl", "certs", "ca-certificates.crt"))
    trace = os.path.join(t.tmp, "strace-dir.txt")
    a = StaticAgent(t, w, root, None, "aurora.test", "dir-agent", strace_to=trace,
                    env_extra={"SSL_CERT_DIR": "/etc/ssl/certs"})
    a.wait_ready(30)
    cid = a.token["cluster_id"]
    w.wait_connection(cid)
    round_trip(w, cid, "static-dir-ok")
    pid = a.agent_pid()  # the TLS set-up runs on the agent's main thread
    a.stop_traced()
    with open(trace) as f:
        opened = [ln for ln in f.read().splitlines()
                  if "/etc/ssl/" in ln and ln.split()[0] == str(pid)]
    check(any('"%s"' % root_file in ln for ln in opened), "the root was read from the hashed "
          "directory", "\n".join(opened))
    eq([ln for ln in opened if "ca-certificates.crt" in ln or "cert.pem" in ln], [],
       "bundle files opened")


@test(timeout=120)
def chroot_ca_file_is_the_only_trust_when_set(t):
    """AURORA_CA_FILE set: that bundle alone is trusted (the system store is not
    added): with a CA that did not sign the server certificate, the agent does
    not connect even though the system store (SSL_CERT_DIR) would verify it."""
    check(os.geteuid() == 0, "this test needs root (chroot, mknod)")
    b = static_binary(t)
    w = world_with_names(t, ["aurora.test", "localhost"])
    root = make_root(t, b, "127.0.0.1 aurora.test\n", "nameserver %s\n" % DNS_ADDR)
    hashed_ca_dir(root, w.ca)
    other = os.path.join(t.tmp, "other")
    os.makedirs(other)
    other_crt, _ = make_cert(other, ["someone-else.test"])
    shutil.copy2(other_crt, os.path.join(root, "other-ca.crt"))
    a = StaticAgent(t, w, root, "/other-ca.crt", "aurora.test", "pinned-agent",
                    env_extra={"SSL_CERT_DIR": "/etc/ssl/certs"})
    wait_until(lambda: "connection failed" in a.proc.log_text(), 30, 0.1,
               "the agent to report the failed connection")
    check(a.proc.alive(), "the agent keeps running (and retrying)")
    check(not a.ready(), "the agent is not ready")
    c = w.connection(a.token["cluster_id"])
    check(not c or c.get("status") != "active", "the pinned agent has no active connection", c)


# ---------------------------------------------------------------------------
class DnsFixture:
    """Answers A svc.corp.test → 127.0.0.1; over UDP the answer is truncated
    (TC), so only TCP carries the address.  Everything else: NXDOMAIN."""

    def __init__(self, addr, answers):
        self.answers = answers
        self.seen = []
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((addr, 53))
        self.tcp = socket.socket()
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((addr, 53))
        self.tcp.listen(8)
        self.stop = threading.Event()
        self.thr = threading.Thread(target=self._run, daemon=True)
        self.thr.start()

    def close(self):
        self.stop.set()
        self.thr.join(5)
        self.udp.close()
        self.tcp.close()

    @staticmethod
    def _qname(q):
        labels, i = [], 12
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode())
            i += 1 + q[i]
        return ".".join(labels).lower(), struct.unpack(">H", q[i + 1:i + 3])[0], i + 5

    def _answer(self, q, tcp):
        name, qtype, qend = self._qname(q)
        self.seen.append((name, qtype, "tcp" if tcp else "udp"))
        ip = self.answers.get(name)
        flags = 0x8180  # QR RD RA
        if ip is None:
            return q[:2] + struct.pack(">HHHHH", flags | 3, 1, 0, 0, 0) + q[12:qend]
        if qtype != 1:
            return q[:2] + struct.pack(">HHHHH", flags, 1, 0, 0, 0) + q[12:qend]
        if not tcp:
            return q[:2] + struct.pack(">HHHHH", flags | 0x0200, 1, 0, 0, 0) + q[12:qend]
        rr = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 30, 4) + socket.inet_aton(ip)
        return q[:2] + struct.pack(">HHHHH", flags, 1, 1, 0, 0) + q[12:qend] + rr

    def _run(self):
        import select
        while not self.stop.is_set():
            r, _, _ = select.select([self.udp, self.tcp], [], [], 0.1)
            if self.udp in r:
                q, peer = self.udp.recvfrom(1500)
                self.udp.sendto(self._answer(q, False), peer)
            if self.tcp in r:
                c, _ = self.tcp.accept()
                c.settimeout(5)
                try:
                    n = struct.unpack(">H", c.recv(2, socket.MSG_WAITALL))[0]
                    q = c.recv(n, socket.MSG_WAITALL)
                    a = self._answer(q, True)
                    c.sendall(struct.pack(">H", len(a)) + a)
                except (OSError, struct.error):
                    pass
                finally:
                    c.close()


@test(timeout=120)
def chroot_connects_by_name_through_dns(t):
    check(os.geteuid() == 0, "this test needs root (chroot, mknod, port 53)")
    b = static_binary(t)
    try:
        dns = DnsFixture(DNS_ADDR, {"svc.corp.test": "127.0.0.1"})
    except OSError as e:
        raise AssertionError("cannot serve DNS on %s:53: %s" % (DNS_ADDR, e))
    t.defer(dns.close)
    w = world_with_names(t, ["svc", "localhost"])
    root = make_root(t, b, "127.0.0.1 localhost\n",
                     "# test resolver\nnameserver %s\nsearch corp.test\n"
                     "options ndots:1 timeout:2 attempts:2\n" % DNS_ADDR)
    shutil.copy2(w.ca, os.path.join(root, "etc", "ssl", "certs", "ca-certificates.crt"))
    # no AURORA_CA_FILE here: SSL_CERT_FILE names the system store (a bundle)
    trace = os.path.join(t.tmp, "strace-dns.txt")
    check(shutil.which("strace"), "strace is not installed (scripts/install-deps.sh)")
    a = StaticAgent(t, w, root, None, "svc", "dns-agent", strace_to=trace)
    a.wait_ready(30)
    cid = a.token["cluster_id"]
    w.wait_connection(cid)
    round_trip(w, cid, "static-dns-ok")
    check(("svc.corp.test", 1, "udp") in dns.seen, "the search domain was applied", dns.seen)
    check(("svc.corp.test", 1, "tcp") in dns.seen, "the truncated answer was retried over TCP",
          dns.seen)
    eq(dns.seen[0], ("svc.corp.test", 1, "udp"), "first question (search list before the bare name)")
    contains(a.proc.log_text(), "svc resolved to 1 address, using 127.0.0.1", "agent debug log")
    # a DNS lookup (c-ares) opens no NSS file either, only what it names itself
    a.stop_traced()
    with open(trace) as f:
        lines = f.read().splitlines()
    eq([ln for ln in lines if any(n in ln for n in NSS_FILES)], [],
       "NSS files or modules opened at run time")
    check(any('"/etc/resolv.conf"' in ln for ln in lines), "the agent read /etc/resolv.conf",
          "\n".join(lines[:80]))


if __name__ == "__main__":
    main()
