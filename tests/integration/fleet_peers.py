"""Peers of a multi-replica deployment, shared by the tests that run one
(test_replicas.py, test_listen_share.py): a real redis-server on loopback,
a tiny RESP client to inspect what the replicas registered in it, and the
deployment's certificate chain made with the openssl command (independently
of the server)."""

import os
import signal
import socket
import subprocess
import time

from harness import _base_env, free_port, wait_until


def redis_cmd(port, *args, timeout=15):  # generous: a loaded machine
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        s.sendall(out)
        f = s.makefile("rb")
        return _resp(f)
    finally:
        s.close()


def _resp(f):
    line = f.readline()
    if not line:
        raise OSError("redis closed the connection")
    t, rest = line[:1], line[1:-2]
    if t == b"+":
        return rest.decode()
    if t == b"-":
        raise AssertionError("redis error: %s" % rest.decode())
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode()
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [_resp(f) for _ in range(n)]
    raise AssertionError("bad RESP: %r" % line)


class Redis:
    def __init__(self, t, name="redis"):
        self.t = t
        self.name = name
        self.port = free_port()
        self.dir = os.path.join(t.tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.gen = 0
        self.start()

    def start(self):
        self.gen += 1
        self.proc = self.t.spawn("%s-%d" % (self.name, self.gen),
                                 ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no", "--dir", self.dir],
                                 _base_env(os.path.join(self.dir, "home")),
                                 os.path.join(self.dir, "redis-%d.log" % self.gen),
                                 os.path.join(self.dir, "san"))
        self.proc.killed = True  # stopped by SIGTERM at teardown; its status is not ours

        def up():
            try:
                return redis_cmd(self.port, "PING") == "PONG"
            except OSError:
                return False
        wait_until(up, 20, 0.05, "redis-server to answer PING")

    def stop(self):
        self.proc.p.send_signal(signal.SIGTERM)
        self.proc.p.wait(20)

    def owners(self, cluster_id):
        """{instance_id: addr} of the live registrations of cluster_id (each
        member "<instance_id> <addr> <expires_ms> <seal>", or without the last
        two as a replica of a version before the seals wrote it)."""
        out = {}
        now = "%.3f" % time.time()
        for m in redis_cmd(self.port, "ZRANGEBYSCORE", "aurora:agents:" + cluster_id, now, "+inf") or []:
            inst, addr = (m.split(" ") + [""])[:2]
            out[inst] = addr
        return out


def deployment_pki(d):
    """A root CA, an intermediate it signs, and the deployment's certificate the
    intermediate issues (for 127.0.0.1 and localhost), stored as a full chain
    (leaf then intermediate) as cert-manager writes tls.crt.  Made with the
    openssl command, independently of the server.  `issue(name)` makes another
    certificate from the same intermediate (an impostor's)."""
    os.makedirs(d, exist_ok=True)
    p = lambda n: os.path.join(d, n)  # noqa: E731

    def run(*a):
        subprocess.run(["openssl"] + list(a), check=True, capture_output=True)

    def key_csr(name, cn):
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", p(name + ".key"), "-out", p(name + ".csr"), "-subj", "/CN=" + cn)

    def sign(name, issuer, ext):
        with open(p(name + ".ext"), "w") as e:
            e.write(ext)
        run("x509", "-req", "-in", p(name + ".csr"), "-CA", p(issuer + ".crt"), "-CAkey",
            p(issuer + ".key"), "-CAcreateserial", "-out", p(name + ".crt"), "-days", "2",
            "-extfile", p(name + ".ext"))
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", p("root.key"), "-out", p("root.crt"), "-days", "2", "-subj", "/CN=aurora test root",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    key_csr("inter", "aurora test intermediate")
    sign("inter", "root", "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign\n")
    leaf_ext = ("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth,clientAuth\n")

    def issue(name):
        key_csr(name, name)
        sign(name, "inter", leaf_ext)
        with open(p(name + ".chain"), "w") as out:
            out.write(open(p(name + ".crt")).read() + open(p("inter.crt")).read())
        return {"crt": p(name + ".chain"), "key": p(name + ".key")}
    leaf = issue("server")
    return {"ca": p("root.crt"), "crt": leaf["crt"], "key": leaf["key"], "issue": issue}


def replica_env(pg, redis, forward_secret, lease):
    """The settings every replica of one deployment shares: the store, Redis,
    the forward secret, short leases (a dead replica is forgotten fast) and
    token limits that tests and benches do not hit."""
    return {
        "DATABASE_URL": pg.url,
        # A host name, as in a cluster (a Service name): the registry thread
        # resolves it, workers' lookups use the address it reached.
        "AURORA_REDIS_URL": "redis://localhost:%d/0" % redis.port,
        "AURORA_INTERNAL_FORWARD_SECRET": forward_secret,
        "AURORA_REGISTRY_LEASE_S": str(lease),
        "AURORA_INSTANCE_LEASE": str(lease),
        "AURORA_TOKEN_RATE_LIMIT": "100000",
        "AURORA_TOKEN_RATE_LIMIT_PER_MINUTE": "100000",
    }
