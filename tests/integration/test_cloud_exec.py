#!/usr/bin/env python3
"""test_cloud_exec.py — cloud_exec end to end with the real agent (build/asan
aurora-agent) and the real cloud CLIs, in the agent's sandbox (agent/sandbox.h).

Peers, none of them this project's code:
  moto_server                        AWS STS + IAM; the server's AWS connector
                                     assumes the customer's role there, and the
                                     agent runs the real `aws` CLI with the
                                     assumed role's credentials against it
  /usr/bin/gcloud                    the real Google Cloud CLI, pointed at local
                                     endpoints with CLOUDSDK_API_ENDPOINT_OVERRIDES_*
                                     (the server's GCP_CLOUDSDK_ENDPOINT_OVERRIDES)
  tests/fixtures/gcp_fixture.py      Google's token endpoint + Cloud Resource
                                     Manager projects.list
  tests/fixtures/gcloud_api_recorder.py  records gcloud's requests (token,
                                     project) and serves Compute's aggregatedList
  /usr/bin/az                        the real Azure CLI (Debian's azure-cli 2.45),
                                     given only the access token the server minted:
                                     the agent writes its AZURE_CONFIG_DIR
                                     (agent/cloud_az.c); its Resource Manager
                                     is the ARM fixture behind a local TLS front
                                     (az sends bearer tokens over https only)
  tests/fixtures/azure_login.mjs     Microsoft's token endpoint (the server's
                                     client-credentials grant)
  tests/fixtures/azure_management.py ARM's subscription list; checks the token

The tests run as root, as CI does: the agent gives each cloud command its own
uid from AURORA_SANDBOX_UID_RANGE.  The image's `aws` lives under /root (mode
0700, unreachable for those uids), so the agent that runs the real `aws` is
started in a private mount namespace where /root is a 0755 tmpfs with only
/root/.pyenv bound back (nothing on the host changes).

Landlock (agent/landlock.h): every agent here runs its commands with the
default read-only view (/usr, /lib*, /bin, /sbin, /etc, /opt, /proc) and TCP
port 443 only, widened by settings for the fixtures, as an operator would:
AURORA_SANDBOX_ALLOWED_PORTS names the local fixtures' ports, the "real"
agent reads /root/.pyenv (where the image's aws lives), and endpoint
overrides come from the agent's own AURORA_CLOUD_ENV (the server may only
repeat them).  A directory standing in for the pod's file system (pod_fs())
holds a world-readable "ServiceAccount token" in a path the agent's
AURORA_SANDBOX_DENY_PATHS names (the real /var/run/secrets/… cannot be made
on a shared machine; the agent's unit test checks the default list holds it).

TEST-ONLY ALLOWLIST: the "limits" agent maps the program name `aws` to
/usr/bin/python3 (AURORA_CLOUD_PROGRAMS=aws=/usr/bin/python3), so that a
cloud_exec of provider aws — with real assumed-role credentials from the
server — can run a fork bomb, a memory hog, a ptrace attempt, writes outside
HOME and a peek at a concurrent command.  No production default allowlists an
interpreter or a shell: the default is gcloud,aws,az looked up in
/usr/local/bin:/usr/bin:/bin.
"""
import ctypes
import atexit
import http.client
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (FIXTURES, NODE, HTTPSConn, T, World, _SUITE, check, contains, eq,  # noqa: E402
                     free_port, main, parse_sse_stream, rand_tag, test, wait_until)
import harness  # noqa: E402

MOTO = shutil.which("moto_server") or "/root/.pyenv/shims/moto_server"
AWS_SHIM = shutil.which("aws") or "/root/.pyenv/shims/aws"
GCLOUD = "/usr/bin/gcloud"
PY = "/usr/bin/python3"
MOTO_ACCOUNT = "123456789012"
SERVER_KEY_ID = "AKIAAURORASERVER0002"
SERVER_SECRET = "aurora-server-secret-" + rand_tag(12)
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
AZ = "/usr/bin/az"
AZ_TENANT = str(uuid.uuid4())
AZ_SP_ID = str(uuid.uuid4())
AZ_SP_SECRET = "az-sp-secret~" + rand_tag(12)
# Sandbox uids of this run: uids are machine-wide and the agent's cleanup kills
# every process of a command's uid, so two runs at once (two checkouts, CI and a
# developer) must not share them.  240 per run: 40 for each agent below.
UID_BASE = 1000000 + 240 * secrets.randbelow(1000000)
AZ_SUBS = [{"subscriptionId": str(uuid.uuid4()), "displayName": "aurora-prod", "state": "Enabled"},
           {"subscriptionId": str(uuid.uuid4()), "displayName": "aurora-staging", "state": "Enabled"}]

_TMP = tempfile.mkdtemp(prefix="aurora-cloudexec-")
SHARED = {}
_PROCS = []


def _cleanup():
    for p in _PROCS:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
    shutil.rmtree(_TMP, ignore_errors=True)


atexit.register(_cleanup)


def real_aws():
    """The aws CLI's real path (pyenv shims are bash scripts needing PYENV_ROOT)."""
    try:
        out = subprocess.run(["pyenv", "which", "aws"], capture_output=True, timeout=20)
        p = out.stdout.decode().strip()
        if out.returncode == 0 and os.path.isabs(p):
            return p
    except (OSError, subprocess.TimeoutExpired):
        pass
    return os.path.realpath(AWS_SHIM)


# ---------------------------------------------------------------------------
# peers
# ---------------------------------------------------------------------------
def _spawn(argv, name, **kw):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=open(os.path.join(_TMP, name + ".log"), "wb"), **kw)
    _PROCS.append(p)
    return p


def moto():
    if "moto" not in SHARED:
        port = free_port()
        p = subprocess.Popen([MOTO, "-H", "127.0.0.1", "-p", str(port)],
                             stdout=open(os.path.join(_TMP, "moto.log"), "wb"), stderr=subprocess.STDOUT)
        _PROCS.append(p)

        def up():
            check(p.poll() is None, "moto_server exited", open(os.path.join(_TMP, "moto.log")).read())
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return True
            except OSError:
                return False
        wait_until(up, 120, 0.1, "moto_server")  # seconds of imports: minutes on a busy machine
        SHARED["moto"] = "http://127.0.0.1:%d" % port
    return SHARED["moto"]


def gcp_peers():
    """(fixture port, recorder port)."""
    if "fx" not in SHARED:
        p = _spawn([sys.executable, os.path.join(FIXTURES, "gcp_fixture.py")], "gcp_fixture")
        SHARED["fx"] = int(p.stdout.readline())
        r = _spawn([sys.executable, os.path.join(FIXTURES, "gcloud_api_recorder.py"),
                    "--upstream", "http://127.0.0.1:%d" % SHARED["fx"]], "recorder")
        SHARED["rec"] = int(r.stdout.readline())
    return SHARED["fx"], SHARED["rec"]


class _ArmFront(BaseHTTPRequestHandler):
    """TLS in front of the ARM fixture (plain http): forwards GETs with their
    Authorization header and records what it saw."""
    protocol_version = "HTTP/1.1"
    upstream = None
    seen = []

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        auth = self.headers.get("Authorization", "")
        _ArmFront.seen.append({"path": self.path, "bearer": auth[7:] if auth.startswith("Bearer ") else None})
        req = urllib.request.Request(self.upstream + self.path, headers={"Authorization": auth} if auth else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def azure_peers():
    """{"login", "mgmt": http URLs of the fixtures, "front": https URL of ARM, "ca": its certificate}."""
    if "azure" in SHARED:
        return SHARED["azure"]
    env = dict(os.environ, NODE_PATH=os.path.join(os.path.dirname(FIXTURES), "node_modules"))
    out = {}
    p = _spawn([NODE, os.path.join(FIXTURES, "azure_login.mjs")], "azure_login", env=env)
    line = p.stdout.readline().decode()
    check(line.startswith("PORT "), "azure_login.mjs did not start", line)
    out["login"] = "http://127.0.0.1:%d" % int(line.split()[1])
    p = _spawn([sys.executable, os.path.join(FIXTURES, "azure_management.py"), "--issuer", out["login"],
                "--jwks", out["login"] + "/discovery/v2.0/keys"], "azure_mgmt")
    line = p.stdout.readline().decode()
    check(line.startswith("PORT "), "azure_management.py did not start", line)
    out["mgmt"] = "http://127.0.0.1:%d" % int(line.split()[1])
    for url, path, body in (
            (out["login"], "/_fixture/config", {"apps": {AZ_SP_ID: {"secret": AZ_SP_SECRET, "redirect_uris": []}},
                                                "tenants": [AZ_TENANT], "home_tenant": AZ_TENANT}),
            (out["mgmt"], "/_fixture/subscriptions", {"tenant": AZ_TENANT, "pages": [AZ_SUBS]})):
        req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()
    # the TLS front, with a certificate the sandbox uids can read (REQUESTS_CA_BUNDLE)
    d = tempfile.mkdtemp(prefix="aurora-az-ca-")
    os.chmod(d, 0o755)
    atexit.register(shutil.rmtree, d, True)
    crt, key = os.path.join(d, "arm.crt"), os.path.join(d, "arm.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", crt], check=True, capture_output=True)
    os.chmod(crt, 0o644)
    _ArmFront.upstream = out["mgmt"]
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _ArmFront)
    srv.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    out["front"] = "https://127.0.0.1:%d/" % srv.server_address[1]
    out["ca"] = crt
    SHARED["azure"] = out
    return out


def http_json(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, json.dumps(body) if body is not None else None,
              {"Content-Type": "application/json"} if body is not None else {})
    r = c.getresponse()
    data = json.loads(r.read() or b"{}")
    c.close()
    return data


def aws_admin(*args):
    """The customer's side: the real aws CLI (as root, outside any sandbox) against moto."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_ACCESS_KEY_ID": "AKIACUSTOMER00000002", "AWS_SECRET_ACCESS_KEY": "customer",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_PAGER": "", "AWS_EC2_METADATA_DISABLED": "true"})
    r = subprocess.run([AWS_SHIM, "--endpoint-url", moto(), "--output", "json"] + list(args),
                       env=env, capture_output=True, timeout=60)
    check(r.returncode == 0, "aws %s failed" % " ".join(args[:2]), r.stdout, r.stderr)
    return json.loads(r.stdout or b"{}")


# ---------------------------------------------------------------------------
# the world: one server, agents
# ---------------------------------------------------------------------------
def world():
    if "world" in SHARED:
        return SHARED["world"]
    fx, rec = gcp_peers()
    if _SUITE["t"] is None:
        _SUITE["t"] = T(_SUITE["root"], "suite")
    w = World(_SUITE["t"], "suite-server", start=False)
    w.extra_env.update({
        "AWS_ACCESS_KEY_ID": SERVER_KEY_ID, "AWS_SECRET_ACCESS_KEY": SERVER_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_STS_ENDPOINT": moto() + "/",
        # the one --endpoint-url a command may give (moto plays AWS)
        "AWS_CLI_ENDPOINT_URLS": moto(),
        # no test here waits for a provider timeout: ample, for a loaded machine
        "AURORA_PROVIDER_TIMEOUT_MS": "30000",
        "GCP_TOKEN_URI_OVERRIDE": "http://127.0.0.1:%d/token" % fx,
        "GCP_CRM_URL": "http://127.0.0.1:%d" % fx,
        "GCP_CLOUDSDK_ENDPOINT_OVERRIDES": "cloudresourcemanager=http://127.0.0.1:%d/,"
                                           "compute=http://127.0.0.1:%d/compute/v1/" % (rec, rec),
        # ARM through the TLS front, as az (on the agent) reaches it too
        "AZURE_LOGIN_BASE": azure_peers()["login"], "AZURE_MANAGEMENT_BASE": azure_peers()["front"].rstrip("/"),
        "AURORA_OUTBOUND_CA_FILE": azure_peers()["ca"],
    })
    w.start()
    w.bootstrap()
    SHARED["world"] = w
    return w


SA_TOKEN_TEXT = "eyJhbGciOiJSUzI1NiJ9.stand-in-service-account-token." + rand_tag(8)
DEFAULT_READONLY = "/usr,/lib,/lib64,/lib32,/libx32,/bin,/sbin,/etc,/opt,/proc"
DEFAULT_DENY = "/var/run/secrets,/run/secrets"


def kernel_landlock_abi():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return max(0, libc.syscall(ctypes.c_long(444), None, ctypes.c_long(0), ctypes.c_long(1)))


def pod_fs():
    """A stand-in for the agent pod's file system: sa/token (world-readable, as
    the kubelet's automounted token is) where the agent's deny list says the
    ServiceAccount token lives, and pub/input.json beside it."""
    if "podfs" not in SHARED:
        d = tempfile.mkdtemp(prefix="aurora-podfs-")
        os.chmod(d, 0o755)
        atexit.register(shutil.rmtree, d, True)
        for sub in ("sa", "pub"):
            os.mkdir(os.path.join(d, sub))
            os.chmod(os.path.join(d, sub), 0o755)
        with open(os.path.join(d, "sa", "token"), "w") as f:
            f.write(SA_TOKEN_TEXT)
        with open(os.path.join(d, "pub", "input.json"), "w") as f:
            f.write("{}")
        for f in ("sa/token", "pub/input.json"):
            os.chmod(os.path.join(d, f), 0o644)
        SHARED["podfs"] = d
    return SHARED["podfs"]


def port_of(url):
    return int(re.match(r"https?://127\.0\.0\.1:(\d+)", url).group(1))


def sandbox_base():
    """AURORA_SANDBOX_DIR: its parents must let the sandbox uids through."""
    if "base" not in SHARED:
        d = tempfile.mkdtemp(prefix="aurora-sbx-it-")
        os.chmod(d, 0o711)
        SHARED["base"] = d
        atexit.register(shutil.rmtree, d, True)
    return SHARED["base"]


UNSHARE_SCRIPT = r"""
set -e
keep=$(mktemp -d /tmp/aurora-pyenv-XXXXXX)
mount --bind /root/.pyenv "$keep"
mount -t tmpfs -o mode=0755,size=1m aurora-root /root
mkdir /root/.pyenv
mount --bind "$keep" /root/.pyenv
umount "$keep"
rmdir "$keep"
exec "$@"
"""


def start_agent(w, name, programs, extra=None, root_visible=False):
    tok = w.create_token("it-cloud-%s-%s" % (name, rand_tag(2)))
    lo = UID_BASE + 40 * ["real", "limits", "restricted", "off", "azure", "azpy"].index(name)
    env = {
        "AURORA_CLOUD_PROGRAMS": programs,
        "AURORA_SANDBOX_DIR": sandbox_base(),
        "AURORA_SANDBOX_UID_RANGE": "%d-%d" % (lo, lo + 39),  # one range per agent
    }
    env.update(extra or {})
    wrap = root_visible and not (os.stat("/root").st_mode & stat.S_IXOTH)
    orig = harness.AGENT_BIN
    if wrap:
        check(shutil.which("unshare"), "unshare(1) is needed to make /root/.pyenv reachable")
    owner = w.t
    # spawn through the harness so logs, sanitizer reports and exit status are checked
    saved_spawn = owner.spawn

    def spawn(pname, argv, penv, logpath, sandir, **kw):
        if wrap and argv == [orig]:
            argv = ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                    UNSHARE_SCRIPT, "sh", orig]
        return saved_spawn(pname, argv, penv, logpath, sandir, **kw)
    owner.spawn = spawn
    try:
        a = harness.Agent(w, tok["token"], "agent-%s" % name, env, owner)
    finally:
        owner.spawn = saved_spawn
    a.wait_ready(30)
    w.wait_connection(tok["cluster_id"])
    return a, tok["cluster_id"]


def agent(name):
    """Agents kept for the whole program: real (real aws + gcloud), limits
    (TEST-ONLY: aws = python3), restricted (gcloud only), off (disabled)."""
    w = world()
    key = "agent_" + name
    if key not in SHARED:
        if name == "real":
            # the operator's settings for the fixtures: moto and the gcloud recorder's
            # ports, the endpoint overrides gcloud needs (the server sends the same
            # values, which the agent accepts only because they equal these), aws
            # under /root/.pyenv, and the pod stand-in with its token out of reach
            fx, rec = gcp_peers()
            SHARED[key] = start_agent(w, name, "aws=%s,gcloud=%s" % (real_aws(), GCLOUD), {
                "AURORA_SANDBOX_ALLOWED_PORTS": "443,%d,%d" % (port_of(moto()), rec),
                "AURORA_SANDBOX_READONLY_PATHS": "%s,/root/.pyenv,%s" % (DEFAULT_READONLY, pod_fs()),
                "AURORA_SANDBOX_DENY_PATHS": "%s,%s/sa" % (DEFAULT_DENY, pod_fs()),
                "AURORA_CLOUD_ENV": "gcloud:CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDRESOURCEMANAGER="
                                    "http://127.0.0.1:%d/,gcloud:CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE="
                                    "http://127.0.0.1:%d/compute/v1/" % (rec, rec),
            }, root_visible=True)
        elif name == "limits":
            # no AURORA_CLOUD_ENV: the server's endpoint overrides are refused here
            SHARED[key] = start_agent(w, name, "aws=%s,gcloud=%s,az=%s" % (PY, PY, PY),
                                      {"AURORA_SANDBOX_NPROC": "48", "AURORA_SANDBOX_CPU_SECONDS": "20"})
        elif name == "restricted":
            SHARED[key] = start_agent(w, name, "gcloud=%s" % GCLOUD)
        elif name == "off":
            SHARED[key] = start_agent(w, name, "gcloud,aws", {"AURORA_CLOUD_EXEC": "disabled"})
        elif name in ("azure", "azpy"):
            # ARM at the TLS front (= the server's AZURE_MANAGEMENT_BASE): the server
            # sends it as AZURE_ARM_ENDPOINT_OVERRIDE because it is not Azure's.
            # "azpy" is TEST-ONLY: az = python3, to look at the command's side.
            az = azure_peers()
            SHARED[key] = start_agent(w, name, "az=%s" % (AZ if name == "azure" else PY), {
                "REQUESTS_CA_BUNDLE": az["ca"],
                "AURORA_SANDBOX_ALLOWED_PORTS": "443,%d" % port_of(az["front"]),
                "AURORA_CLOUD_ENV": "az:AZURE_ARM_ENDPOINT_OVERRIDE=%s" % az["front"]})
    return SHARED[key]


# ---------------------------------------------------------------------------
# connectors
# ---------------------------------------------------------------------------
def aws_user(tag="a"):
    """A fresh user (bootstrap org) with the AWS connector connected to a moto role:
    (api key, user id, role name)."""
    w = world()
    k = "aws_user_" + tag
    if k not in SHARED:
        user, key = w.new_user()  # the bootstrap org, which owns the agents' clusters
        r = w.get("/aws/onboarding", key=key)
        eq(r.status, 200, "GET /aws/onboarding (%r)" % r)
        name = "AuroraCloudExec-" + rand_tag(3)
        aws_admin("iam", "create-role", "--role-name", name,
                  "--assume-role-policy-document", json.dumps(r.json["trust_policy"]))
        r = w.post("/aws/connect", {"role_arn": "arn:aws:iam::%s:role/%s" % (MOTO_ACCOUNT, name)}, key=key)
        eq(r.status, 200, "POST /aws/connect (%r)" % r)
        SHARED[k] = (key, user, name)
    return SHARED[k]


def gcp_user():
    w = world()
    if "gcp_user" not in SHARED:
        fx, _ = gcp_peers()
        d = tempfile.mkdtemp(dir=_TMP)
        priv, pub = os.path.join(d, "k.pem"), os.path.join(d, "pub.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                        "-out", priv], check=True, capture_output=True)
        subprocess.run(["openssl", "pkey", "-in", priv, "-pubout", "-out", pub], check=True, capture_output=True)
        email = "aurora-%s@proj-alpha.iam.gserviceaccount.com" % rand_tag(3)
        key = {"type": "service_account", "project_id": "proj-alpha", "private_key_id": rand_tag(20),
               "private_key": open(priv).read(), "client_email": email, "client_id": "1" + rand_tag(10),
               "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": GOOGLE_TOKEN_URI}
        http_json(fx, "POST", "/_control", {"pubkeys": {email: open(pub).read()},
                                             "expected_aud": GOOGLE_TOKEN_URI})
        uid, api = w.new_user()
        r = w.post("/gcp/service-account", key, key=api)
        eq(r.status, 200, "POST /gcp/service-account (%r)" % r)
        SHARED["gcp_user"] = (api, uid)
    return SHARED["gcp_user"]


def azure_user():
    """A fresh user (bootstrap org) with the Azure connector connected as a service principal."""
    w = world()
    if "azure_user" not in SHARED:
        uid, api = w.new_user()
        r = w.post("/azure/connect", {"tenant_id": AZ_TENANT, "client_id": AZ_SP_ID,
                                      "client_secret": AZ_SP_SECRET}, key=api)
        eq(r.status, 200, "POST /azure/connect (%r)" % r)
        eq(r.get("default_subscription_id"), AZ_SUBS[0]["subscriptionId"], "default subscription")
        SHARED["azure_user"] = (api, uid)
    return SHARED["azure_user"]


def cloud_exec(key, timeout_http=120, **body):
    return world().post("/api/cloud_exec", body, key=key, timeout=timeout_http)


def cloud_exec_sse(key, body, on_event, timeout=120):
    w = world()
    conn = HTTPSConn(w.port, w.ctx, timeout=timeout)
    try:
        conn.request("POST", "/api/cloud_exec", body=json.dumps(body).encode(), headers={
            "Authorization": "Bearer %s" % key, "Content-Type": "application/json",
            "Accept": "text/event-stream", "Connection": "close"})
        r = conn.getresponse()
        if "text/event-stream" not in (r.getheader("content-type") or ""):
            raise AssertionError("cloud_exec SSE: HTTP %d %s" % (r.status, r.read()[:400]))
        parse_sse_stream(r, on_event)
    finally:
        conn.close()


def base_is_empty():
    left = os.listdir(sandbox_base())
    check(left == [], "sandbox directories left behind", left)


def no_secret_in_logs(secrets, what=""):
    w = world()
    logs = {"server": w.server.log_text()}
    for k, v in SHARED.items():
        if k.startswith("agent_"):
            logs[k] = v[0].log()
    for name, text in logs.items():
        for s in secrets:
            if s and len(s) >= 8:
                check(s not in text, "%s log contains a credential %s" % (name, what), s[:6] + "…")


# ---------------------------------------------------------------------------
# tests: the real CLIs
# ---------------------------------------------------------------------------
@test(timeout=240)  # the first test: it also starts every peer of the program (see world())
def real_aws_cli_prints_the_assumed_role_arn(t):
    a, cid = agent("real")
    key, user, role = aws_user("a")
    r = cloud_exec(key, provider="aws", cluster_id=cid,
                   command="sts get-caller-identity --output json --endpoint-url %s" % moto())
    eq(r.status, 200, "cloud_exec (%r)" % r)
    eq((r.get("success"), r.get("return_code"), r.get("error_code")), (True, 0, None),
       "result (%r)" % r)
    ident = json.loads(r.get("output"))
    eq(ident.get("Account"), MOTO_ACCOUNT, "Account")
    contains(ident.get("Arn"), "arn:aws:sts::%s:assumed-role/%s/aurora-%s" % (MOTO_ACCOUNT, role, user),
             "the assumed role's ARN")
    contains(a.log(), "started cloud_exec program=aws", "agent log")
    # the metric counts it as kind cloud_exec
    st, body = a.health("/metrics")
    eq(st, 200, "/metrics")
    check(re.search(rb'aurora_agent_commands_total\{kind="cloud_exec",result="success"\} [1-9]', body),
          "cloud_exec success metric", body[:3000])
    base_is_empty()


@test(timeout=90)
def real_gcloud_lists_fixture_projects_with_token_and_injected_project(t):
    a, cid = agent("real")
    key, uid = gcp_user()
    fx, rec = gcp_peers()
    r = cloud_exec(key, provider="gcp", cluster_id=cid, command="projects list --format=json")
    eq(r.status, 200, "cloud_exec gcloud projects list (%r)" % r)
    eq((r.get("success"), r.get("return_code")), (True, 0), "result (%r)" % r)
    ids = sorted(p["projectId"] for p in json.loads(r.get("output")))
    for p in ("proj-alpha", "proj-beta", "proj-gamma", "proj-delta"):
        check(p in ids, "%s listed by the real gcloud" % p, ids)
    tokens = set(http_json(fx, "GET", "/_control/state")["tokens"])
    reqs = http_json(rec, "GET", "/_rec/requests")
    crm = [q for q in reqs if q["path"].startswith("/v1/projects")]
    check(crm and all(q["authorization"][7:] in tokens for q in crm),
          "gcloud sent the minted bearer token to Cloud Resource Manager", crm)
    # --project injected by the server, used by gcloud in the request path
    n = len(reqs)
    r = cloud_exec(key, provider="gcp", cluster_id=cid, command="compute instances list --format=json")
    eq((r.status, r.get("return_code")), (200, 0), "gcloud compute instances list (%r)" % r)
    inst = json.loads(r.get("output"))
    eq([i["name"] for i in inst], ["vm-proj-alpha"], "instances")
    new = http_json(rec, "GET", "/_rec/requests")[n:]
    agg = [q for q in new if "/aggregated/instances" in q["path"]]
    check(agg and agg[0]["path"].startswith("/compute/v1/projects/proj-alpha/aggregated/instances"),
          "request for the injected project proj-alpha", new)
    check(agg[0]["authorization"][7:] in tokens, "compute request with the minted token", agg)
    # another project by the caller's choice
    r = cloud_exec(key, provider="gcp", cluster_id=cid, command="compute instances list --format=json",
                   project="proj-beta")
    eq((r.status, r.get("return_code")), (200, 0), "with project=proj-beta (%r)" % r)
    eq([i["name"] for i in json.loads(r.get("output"))], ["vm-proj-beta"], "instances of proj-beta")
    no_secret_in_logs(tokens, "(gcloud access token)")
    base_is_empty()


AZ_PROBE = r"""
import json, os
d = os.environ["AZURE_CONFIG_DIR"]
files = {}
for f in sorted(os.listdir(d)):
    st = os.lstat(os.path.join(d, f))
    files[f] = [st.st_mode & 0o777, st.st_uid]
cache = json.load(open(os.path.join(d, "msal_token_cache.json")))
print(json.dumps({"env": sorted(k for k in os.environ if k.startswith("AZURE_")), "uid": os.getuid(),
                  "all_env": sorted(os.environ),
                  "dir": d, "home": os.environ["HOME"], "files": files,
                  "kinds": {k: len(v) for k, v in cache.items()},
                  "secrets": [v["secret"] for v in cache["AccessToken"].values()],
                  "profile": json.load(open(os.path.join(d, "azureProfile.json")))}))
"""


def _login_grants():
    with urllib.request.urlopen(azure_peers()["login"] + "/_fixture/stats", timeout=10) as r:
        return json.loads(r.read())["token"]


@test(timeout=150)
def real_az_uses_the_injected_access_token_without_signing_in(t):
    a, cid = agent("azure")
    key, uid = azure_user()
    az = azure_peers()
    sub0, sub1 = AZ_SUBS[0]["subscriptionId"], AZ_SUBS[1]["subscriptionId"]
    grants = _login_grants()
    # the profile: the connection's default subscription, selected
    r = cloud_exec(key, provider="azure", cluster_id=cid, command="account show --output json")
    eq((r.status, r.get("return_code")), (200, 0), "az account show (%r)" % r)
    acct = json.loads(r.get("output"))
    eq((acct["id"], acct["tenantId"], acct["isDefault"], acct["user"]["type"], acct["environmentName"]),
       (sub0, AZ_TENANT, True, "user", "AuroraCustom"), "az account show (%r)" % acct)
    # a per-call subscription
    r = cloud_exec(key, provider="azure", cluster_id=cid, command="account show --query id --output tsv",
                   subscription=sub1)
    eq((r.get("return_code"), r.get("output").strip()), (0, sub1), "az account show on %s (%r)" % (sub1, r))
    # an ARM call: az takes the token from its MSAL cache and ARM (the fixture) accepts it
    n = len(_ArmFront.seen)
    r = cloud_exec(key, provider="azure", cluster_id=cid,
                   args=["rest", "--method", "get", "--url", "/subscriptions?api-version=2020-01-01"])
    eq((r.status, r.get("return_code")), (200, 0), "az rest GET /subscriptions (%r)" % r)
    got = sorted((x["subscriptionId"], x["displayName"]) for x in json.loads(r.get("output"))["value"])
    eq(got, sorted((x["subscriptionId"], x["displayName"]) for x in AZ_SUBS), "the fixture's subscriptions")
    seen = _ArmFront.seen[n:]
    check(seen and all(q["bearer"] for q in seen), "az sent a bearer token to ARM", seen)
    with urllib.request.urlopen(az["mgmt"] + "/_fixture/stats", timeout=10) as f:
        check(json.loads(f.read())["last_auth_ok"] is True, "the ARM fixture accepted az's token")
    # with --debug: the token came from the cache, and the only connection was to ARM
    r = cloud_exec(key, provider="azure", cluster_id=cid, max_output=4 << 20,
                   args=["rest", "--method", "get", "--url", "/subscriptions?api-version=2020-01-01", "--debug"])
    eq(r.get("return_code"), 0, "az rest --debug (%r)" % r)
    dbg = (r.get("output") or "") + (r.get("error") or "")
    contains(dbg, "Cache hit an AT", "MSAL answered from the token cache")
    hosts = set(re.findall(r"Starting new HTTPS? connection \(\d+\): ([^\s:]+)", dbg))
    eq(hosts, {"127.0.0.1"}, "hosts az connected to")
    check("login.microsoftonline.com:443" not in "".join(l for l in dbg.splitlines() if "connectionpool" in l),
          "az called login.microsoftonline.com")
    # SDK-based commands use it too (ARM's resource groups are not in the fixture: 404 from ARM, not a login)
    r = cloud_exec(key, provider="azure", cluster_id=cid, command="group list --output json")
    check("az login" not in (r.get("output") or "") + (r.get("error") or ""), "az asked for a login", r)
    check(any(q["path"].startswith("/subscriptions/%s/resourcegroups" % sub0) and q["bearer"]
              for q in _ArmFront.seen), "az group list called ARM with the token", _ArmFront.seen[-3:])
    eq(_login_grants(), grants, "token grants at the login endpoint during the az commands (server cache)")
    no_secret_in_logs([q["bearer"] for q in _ArmFront.seen] + [AZ_SP_SECRET], "(Azure)")
    base_is_empty()


@test(timeout=90)
def az_config_dir_holds_the_token_and_the_environment_does_not(t):
    """TEST-ONLY agent where az = python3: what the command finds."""
    a, cid = agent("azpy")
    key, uid = azure_user()
    r = cloud_exec(key, provider="azure", cluster_id=cid, args=["-c", AZ_PROBE])
    eq((r.status, r.get("return_code")), (200, 0), "probe (%r)" % r)
    p = json.loads(r.get("output"))
    check("AZURE_ACCESS_TOKEN" not in p["env"], "AZURE_ACCESS_TOKEN in the command's environment", p["env"])
    # nothing but the sandbox's own, az's config dir, the operator's and az's allowlist
    allowed = {"HOME", "TMPDIR", "PATH", "USER", "LOGNAME", "LANG", "LC_ALL", "AZURE_CONFIG_DIR",
               "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
               "AWS_CA_BUNDLE", "NO_PROXY", "no_proxy", "AZURE_ARM_ENDPOINT_OVERRIDE",
               "AZURE_ACCESS_TOKEN_EXPIRES_ON", "AZURE_SUBSCRIPTION_ID", "AZURE_TENANT_ID",
               "AZURE_DEFAULTS_LOCATION", "AZURE_CORE_OUTPUT", "AZURE_CORE_ONLY_SHOW_ERRORS",
               "AZURE_CORE_NO_COLOR", "AZURE_CORE_COLLECT_TELEMETRY"}
    check(set(p["all_env"]) <= allowed, "unexpected variables in the command's environment",
          sorted(set(p["all_env"]) - allowed))
    for name in ("AZURE_CONFIG_DIR", "AZURE_SUBSCRIPTION_ID", "AZURE_TENANT_ID", "AZURE_ARM_ENDPOINT_OVERRIDE"):
        check(name in p["env"], "%s in the command's environment" % name, p["env"])
    eq(p["dir"], p["home"] + "/.azure", "AZURE_CONFIG_DIR inside the sandbox HOME")
    eq(sorted(p["files"]), ["azureProfile.json", "clouds.config", "config", "msal_http_cache.bin",
                            "msal_token_cache.json"], "files")
    for f, (mode, owner) in p["files"].items():
        eq((mode, owner), (0o600, p["uid"]), "%s mode and owner" % f)
    eq(p["kinds"], {"AccessToken": 1, "Account": 1, "RefreshToken": 0, "IdToken": 0, "AppMetadata": 0},
       "token cache: one access token, no refresh token")
    check(p["secrets"][0].count(".") == 2, "the access token (a JWT) is in the cache")
    eq([(s["id"], s["tenantId"], s["isDefault"]) for s in p["profile"]["subscriptions"]],
       [(AZ_SUBS[0]["subscriptionId"], AZ_TENANT, True)], "profile")
    check(AZ_SP_SECRET not in r.get("output"), "the client secret reached the agent")
    base_is_empty()


# ---------------------------------------------------------------------------
# bad input and the agent's policy
# ---------------------------------------------------------------------------
@test(timeout=90)
def bad_input_unknown_provider_literal_metacharacters_and_policy(t):
    w = world()
    _, cid = agent("limits")
    key, user, _ = aws_user("a")
    r = cloud_exec(key, provider="nosuch", cluster_id=cid, command="x")
    eq((r.status, r.error_code), (400, "UNKNOWN_PROVIDER"), "unknown provider (%r)" % r)
    # literal argv, no shell: the (test-only) python3 shows what it received
    probe = os.path.join(_TMP, "pwned-" + rand_tag(3))
    args = ["-c", "import sys; print(repr(sys.argv[1:]))", "a;b", "$(id)", "`uname`", "|", "&&",
            "x > %s" % probe, "*"]
    r = cloud_exec(key, provider="aws", cluster_id=cid, args=args)
    eq((r.status, r.get("return_code")), (200, 0), "metacharacters (%r)" % r)
    eq(r.get("output").strip(), repr(args[2:]), "argv arrived literally")
    check(not os.path.exists(probe), "a shell redirection ran")
    r = cloud_exec(key, provider="aws", cluster_id=cid,
                   command="-c 'import sys; print(sys.argv[1:])' ';' 'rm -rf /' '$(reboot)'")
    eq(r.get("output").strip(), "[';', 'rm -rf /', '$(reboot)']", "command string split without a shell")
    # a program the agent does not list
    _, rcid = agent("restricted")
    r = cloud_exec(key, provider="aws", cluster_id=rcid, command="sts get-caller-identity")
    eq((r.status, r.get("return_code"), r.get("error_code")), (200, 126, "POLICY_DENIED"),
       "aws on a gcloud-only agent (%r)" % r)
    contains(r.get("error"), "AURORA_CLOUD_PROGRAMS", "error names the setting")
    # cloud_exec disabled
    _, ocid = agent("off")
    r = cloud_exec(key, provider="aws", cluster_id=ocid, command="sts get-caller-identity")
    eq((r.status, r.get("error_code")), (200, "POLICY_DENIED"), "disabled agent (%r)" % r)
    contains(r.get("error"), "AURORA_CLOUD_EXEC=disabled", "error")
    # a command that would print the injected credentials
    _, realcid = agent("real")
    r = cloud_exec(key, provider="aws", cluster_id=realcid, command="configure export-credentials")
    eq((r.status, r.get("error_code")), (200, "POLICY_DENIED"), "export-credentials (%r)" % r)
    base_is_empty()


# ---------------------------------------------------------------------------
# the sandbox's limits, each contained and reported
# ---------------------------------------------------------------------------
FORK_BOMB = r"""
import os, time
fails = 0
for i in range(400):
    try:
        os.fork()
    except OSError as e:
        fails += 1
        if fails == 1:
            print("fork refused:", e.strerror, flush=True)
        time.sleep(0.02)
time.sleep(60)
"""

SANDBOX_PROBE = r"""
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
ctypes.set_errno(0)
r = libc.ptrace(0, 0, None, None)
print("ptrace", r, errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno()))
for target in sys.argv[1:]:
    try:
        with open(target, "w") as f:
            f.write("x")
        print("WROTE", target)
    except OSError as e:
        print("write refused", target, errno.errorcode[e.errno])
with open(os.path.join(os.environ["HOME"], "mine"), "w") as f:
    f.write("ok")
print("home", os.environ["HOME"], "cwd", os.getcwd(), "uid", os.getuid())
"""


@test(timeout=90)
def fork_bomb_memory_hog_ptrace_and_writes_are_contained(t):
    w = world()
    a, cid = agent("limits")
    key, user, _ = aws_user("a")
    # fork bomb: RLIMIT_NPROC refuses the forks, the timeout kills the whole group
    t0 = time.monotonic()
    # 8 s: python must start and try its forks first, also on a loaded machine
    r = cloud_exec(key, provider="aws", cluster_id=cid, args=["-c", FORK_BOMB], timeout=8)
    eq(r.status, 200, "fork bomb (%r)" % r)
    eq((r.get("return_code"), r.get("error_code")), (124, "TIMEOUT"), "fork bomb result (%r)" % r)
    contains(r.get("output"), "fork refused: Resource temporarily unavailable", "RLIMIT_NPROC reported")
    check(time.monotonic() - t0 < 40, "fork bomb took too long")
    wait_until(lambda: not [p for p in harness.procs_matching("import os, time") if "fork" in p[1]],
               10, 0.1, "fork bomb processes gone")
    base_is_empty()
    # memory hog: RLIMIT_AS (2 GiB default) makes a 4 GiB allocation fail
    r = cloud_exec(key, provider="aws", cluster_id=cid,
                   args=["-c", "b = bytearray(4 << 30)\nprint('allocated')"])
    eq((r.status, r.get("success"), r.get("return_code")), (200, False, 1), "memory hog (%r)" % r)
    contains(r.get("error"), "MemoryError", "MemoryError reported on stderr")
    check("allocated" not in (r.get("output") or ""), "the hog got its memory")
    # ptrace and writes outside HOME
    agent_dir = os.path.dirname(a.proc.logpath)
    targets = ["/etc/aurora-sbx-probe", os.path.join(agent_dir, "planted"),
               os.path.join(sandbox_base(), "planted"), "/usr/local/bin/planted"]
    r = cloud_exec(key, provider="aws", cluster_id=cid, args=["-c", SANDBOX_PROBE] + targets)
    eq((r.status, r.get("return_code")), (200, 0), "probe (%r)" % r)
    out = r.get("output")
    contains(out, "ptrace -1 EPERM", "ptrace refused by the seccomp filter")
    for tg in targets:
        contains(out, "write refused %s" % tg, "write outside HOME")
        check(not os.path.exists(tg), "%s was written" % tg)
    m = re.search(r"home (\S+) cwd (\S+) uid (\d+)", out)
    check(m and m.group(1) == m.group(2) and m.group(1).startswith(sandbox_base() + "/aurora-sbx-"),
          "HOME is the sandbox's and the cwd", out)
    check(int(m.group(3)) >= UID_BASE, "runs under a sandbox uid", out)
    check(not os.path.exists(m.group(1)), "HOME removed after the command")
    base_is_empty()
    # the agent still serves: kubectl, and another cloud command
    r = w.kubectl(cid, args=["version", "--client"])
    eq((r.status, r.get("return_code")), (200, 0), "kubectl after the limits (%r)" % r)
    r = cloud_exec(key, provider="aws", cluster_id=cid, args=["-c", "print('still here')"])
    eq(r.get("output"), "still here\n", "cloud_exec after the limits")


PEEK = r"""
import os, sys
home, pid, key = sys.argv[1], sys.argv[2], sys.argv[3]
def attempt(what, fn):
    try:
        fn()
        print("LEAK", what)
    except OSError as e:
        print("refused", what, e.strerror)
attempt("list", lambda: os.listdir(home))
attempt("read", lambda: open(os.path.join(home, "secret")).read())
attempt("environ", lambda: open("/proc/%s/environ" % pid, "rb").read())
attempt("signal", lambda: os.kill(int(pid), 0))
print("own-key-differs", os.environ.get("AWS_ACCESS_KEY_ID") != key)
print("other-key-in-env", any(key in v for v in os.environ.values()))
"""

# Holds until the test, done with command B, writes a byte to the "release"
# FIFO in its HOME (or the default 60 s timeout ends it): a fixed sleep (8 s)
# could end before B ran on a loaded machine, and B's refusals then say
# nothing.  The FIFO is open (read-write: no wait for a writer) before READY,
# so the test's non-blocking write always finds its reader.
HOLDER = r"""
import os
home = os.environ["HOME"]
open(os.path.join(home, "secret"), "w").write("top secret of A")
release = os.path.join(home, "release")
os.mkfifo(release)
fd = os.open(release, os.O_RDWR)
print("READY", home, os.getpid(), os.environ["AWS_ACCESS_KEY_ID"],
      os.environ["AWS_SECRET_ACCESS_KEY"], os.environ["AWS_SESSION_TOKEN"], flush=True)
os.read(fd, 1)
print("done", flush=True)
"""


@test(timeout=90)
def concurrent_commands_cannot_see_each_others_files_or_credentials(t):
    w = world()
    _, cid = agent("limits")
    key_a, _, _ = aws_user("a")
    key_b, _, _ = aws_user("b")
    seen = {}
    done = threading.Event()

    def on_event(ev, data):
        d = json.loads(data)
        if ev == "output" and "READY" in d.get("text", ""):
            seen["ready"] = d["text"]
        if ev in ("result", "error"):
            seen["result"] = d
            return True
        return False

    def run_a():
        try:
            cloud_exec_sse(key_a, {"provider": "aws", "cluster_id": cid, "args": ["-c", HOLDER]}, on_event)
        except Exception as e:  # noqa: BLE001
            seen["exc"] = repr(e)
        done.set()
    th = threading.Thread(target=run_a, daemon=True)
    th.start()
    wait_until(lambda: seen.get("ready") or seen.get("exc"), 30, 0.05, "command A ready")
    check("exc" not in seen, "command A failed", seen)
    _, home_a, pid_a, akid_a, secret_a, token_a = seen["ready"].split()[:6]

    def release_a():  # also when a check below fails: A must not outlive the test
        try:
            fd = os.open(os.path.join(home_a, "release"), os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return  # A has ended (its HOME, and the FIFO, are gone)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
    t.defer(release_a)
    check(os.path.isdir(home_a), "A's HOME exists while A runs", home_a)
    r = cloud_exec(key_b, provider="aws", cluster_id=cid, args=["-c", PEEK, home_a, pid_a, akid_a])
    # A's HOME goes when A ends: still there, A ran all through B
    check(os.path.isdir(home_a), "A still runs once B has ended", home_a)
    release_a()
    eq((r.status, r.get("return_code")), (200, 0), "command B (%r)" % r)
    out = r.get("output")
    check("LEAK" not in out, "command B reached command A", out)
    for what in ("list", "read", "environ", "signal"):
        contains(out, "refused %s" % what, "B's %s of A" % what)
    contains(out, "own-key-differs True", "the two users got different credentials")
    contains(out, "other-key-in-env False", "A's key in B's environment")
    check(done.wait(30), "command A did not finish")
    eq(seen["result"].get("return_code"), 0, "command A's result (%r)" % seen["result"])
    check(not os.path.exists(home_a), "A's HOME removed after it ended")
    base_is_empty()
    # credentials reached the commands but never a log
    no_secret_in_logs([secret_a, token_a], "(AWS)")
    no_secret_in_logs([SERVER_SECRET], "(server's AWS key)")


@test(timeout=90)
def cancel_and_timeout_remove_the_sandbox(t):
    _, cid = agent("limits")
    key, _, _ = aws_user("a")
    # a command that leaves its process group and tries to outlive the timeout
    script = ("import os, time, subprocess\n"
              "subprocess.Popen(['/bin/sleep', '300'], start_new_session=True)\n"
              "print('spawned', flush=True)\ntime.sleep(300)\n")
    r = cloud_exec(key, provider="aws", cluster_id=cid, args=["-c", script], timeout=2)
    eq((r.get("return_code"), r.get("error_code")), (124, "TIMEOUT"), "timeout (%r)" % r)
    wait_until(lambda: not [p for p in harness.procs_matching("/bin/sleep 300")], 10, 0.1,
               "the escaped sleep killed with the sandbox uid")
    base_is_empty()
    # cancel: the API caller goes away mid-command, the server sends cancel
    a, _ = agent("limits")
    w = world()
    conn = HTTPSConn(w.port, w.ctx, timeout=30)
    body = {"provider": "aws", "cluster_id": cid, "timeout": 120,
            "args": ["-c", script.replace("300", "301")]}
    conn.request("POST", "/api/cloud_exec", body=json.dumps(body).encode(), headers={
        "Authorization": "Bearer %s" % key, "Content-Type": "application/json",
        "Accept": "text/event-stream"})
    r = conn.getresponse()
    first = b""  # the stream arrives in pieces: read until the line (each read waits up to 30 s)
    while b"spawned" not in first:
        chunk = r.read1(65536)
        if not chunk:
            break
        first += chunk
    check(b"spawned" in first, "first output of the cancelled command", first)
    check(os.listdir(sandbox_base()), "the running command has its directory")
    r.close()
    conn.close()
    wait_until(lambda: "cancel requested" in a.log(), 10, 0.1,
               "the agent got the cancel")
    wait_until(lambda: not harness.procs_matching("/bin/sleep 301"), 10, 0.1,
               "the cancelled command's processes gone")
    wait_until(lambda: not os.listdir(sandbox_base()), 10, 0.1, "the cancelled command's directory removed")
    # logged once exec_end is out, after the cleanup waited for above
    wait_until(lambda: "error_code=CANCELLED" in a.log(), 10, 0.1, "the agent to log the cancelled command")


# ---------------------------------------------------------------------------
# Landlock: the pod's credentials and the cluster's API are out of reach
# ---------------------------------------------------------------------------
class _ApiServerStandIn(BaseHTTPRequestHandler):
    """A local HTTP port standing in for the cluster's API server: records
    every request that reaches it."""
    seen = []

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        _ApiServerStandIn.seen.append({"path": self.path, "auth": self.headers.get("Authorization")})
        body = b'{"kind":"SecretList","items":[]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET


def api_server_stand_in():
    if "apiserver" not in SHARED:
        srv = ThreadingHTTPServer(("127.0.0.1", 0), _ApiServerStandIn)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        SHARED["apiserver"] = srv.server_address[1]
    return SHARED["apiserver"]


@test(timeout=150)
def cloud_commands_cannot_read_the_service_account_token(t):
    """Issue 8 item 1: `aws … --cli-input-json file://<the SA token>` printed the
    token in its error.  The stand-in token is world-readable (as the kubelet's
    automounted one is) and below a read-only path: only Landlock keeps it out."""
    abi = kernel_landlock_abi()
    check(abi >= 4, "this test needs a kernel with Landlock ABI 4+ (this machine's offers 7)", abi)
    a, cid = agent("real")
    key, user, role = aws_user("a")
    token = os.path.join(pod_fs(), "sa", "token")
    check(os.stat(token).st_mode & 0o004, "the stand-in token is world-readable")
    r = cloud_exec(key, provider="aws", cluster_id=cid,
                   args=["sts", "get-caller-identity", "--output", "json", "--endpoint-url", moto(),
                         "--cli-input-json", "file://" + token])
    eq(r.status, 200, "cloud_exec (%r)" % r)
    out = (r.get("output") or "") + (r.get("error") or "")
    check(SA_TOKEN_TEXT not in out and "stand-in-service-account-token" not in out,
          "the command printed the ServiceAccount token", out[:600])
    check(r.get("return_code") not in (0, None), "aws read the token file", r)
    contains(out, "Permission denied", "aws could not open the token file")
    # a file beside it, not denied: the same command works (the denial is the token's alone)
    r = cloud_exec(key, provider="aws", cluster_id=cid,
                   args=["sts", "get-caller-identity", "--output", "json", "--endpoint-url", moto(),
                         "--cli-input-json", "file://" + os.path.join(pod_fs(), "pub", "input.json")])
    eq((r.status, r.get("return_code")), (200, 0), "with a readable input file (%r)" % r)
    contains(json.loads(r.get("output")).get("Arn"), "assumed-role/%s/" % role, "the assumed role")
    # the agent reports it: start-up log, /metrics
    contains(a.log(), "sandbox: Landlock ABI %d: cloud commands read below" % abi, "agent start-up log")
    st, body = a.health("/metrics")
    eq(st, 200, "/metrics")
    for line in (b"aurora_agent_sandbox_landlock_abi %d\n" % abi,
                 b'aurora_agent_sandbox_isolation{layer="filesystem"} 1\n',
                 b'aurora_agent_sandbox_isolation{layer="network"} 1\n',
                 b'aurora_agent_sandbox_isolation{layer="uid"} 1\n'):
        check(line in body, "/metrics has %r" % line, body[-1500:])
    no_secret_in_logs([SA_TOKEN_TEXT], "(ServiceAccount token)")
    base_is_empty()


@test(timeout=150)
def cloud_commands_cannot_print_their_own_environment(t):
    """aws reads every argument value `file://…` as a file (awscli paramfile), after
    expanding `$NAME` and `~` in its path, and quotes the file (or the path it could
    not open) in its error: `--cli-input-json file:///proc/self/environ` printed the
    command's environment, `file:///x$AWS_SECRET_ACCESS_KEY` the secret itself, to
    the caller, who may not see the role's credentials (the printers are refused for
    that reason).  `s3 cp /proc/self/environ s3://…` ran too (an empty object: aws
    sizes the file by stat, 0 in procfs; an uploader that streams would copy it).
    The agent refuses an argument naming a path below /proc or /dev, and a
    `file://` path with `$`, `~` or not absolute, before anything runs."""
    _, cid = agent("real")
    key, _, _ = aws_user("a")
    bucket = "env-" + rand_tag(6).lower()
    aws_admin("s3api", "create-bucket", "--bucket", bucket)
    base = ["sts", "get-caller-identity", "--output", "json", "--endpoint-url", moto()]
    for args in (base + ["--cli-input-json", "file:///proc/self/environ"],
                 base + ["--cli-input-json=file:///proc/self/../self/environ"],
                 base + ["--cli-input-json", "file://../../../../../../../../proc/self/environ"],
                 base + ["--cli-input-json", "file:///nonexistent-$AWS_SECRET_ACCESS_KEY"],
                 base + ["--cli-input-json", "fileb:///nonexistent-${AWS_SESSION_TOKEN}"],
                 ["s3", "cp", "/proc/self/environ", "s3://%s/env" % bucket, "--endpoint-url", moto()],
                 ["s3", "cp", "//proc//thread-self/environ", "s3://%s/env2" % bucket,
                  "--endpoint-url", moto()]):
        r = cloud_exec(key, provider="aws", cluster_id=cid, args=args)
        out = (r.get("output") or "") + (r.get("error") or "")
        for leak in ("AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN=", "/nonexistent-"):
            check(leak not in out.replace("$AWS_SECRET_ACCESS_KEY", "").replace("${AWS_SESSION_TOKEN}", ""),
                  "%r printed the command's environment" % args[-2:], out[:600])
        eq((r.status, r.get("error_code")), (200, "POLICY_DENIED"), "%r (%r)" % (args[-2:], r))
    listed = aws_admin("s3api", "list-objects-v2", "--bucket", bucket)
    eq(listed.get("Contents", []), [], "the environment was uploaded")
    # an ordinary file and an s3 path that merely contains "proc" still work
    r = cloud_exec(key, provider="aws", cluster_id=cid,
                   args=base + ["--cli-input-json", "file://" + os.path.join(pod_fs(), "pub", "input.json")])
    eq((r.status, r.get("return_code")), (200, 0), "with a readable input file (%r)" % r)
    r = cloud_exec(key, provider="aws", cluster_id=cid,
                   args=["s3", "ls", "s3://%s/proc/x" % bucket, "--endpoint-url", moto()])
    eq((r.status, r.get("error_code")), (200, None), "an s3 key with proc in it (%r)" % r)
    base_is_empty()


@test(timeout=150)
def cloud_commands_cannot_reach_a_local_port_standing_in_for_the_api_server(t):
    """Issue 8 item 1: `az rest --url http://<apiserver>/… --headers Authorization=…`
    sent arbitrary requests from the pod.  TCP connect is limited to port 443 and
    the ports the operator allows (here the fixtures'); az account show and the
    fixtures still work."""
    abi = kernel_landlock_abi()
    check(abi >= 4, "this test needs a kernel with Landlock ABI 4+ (this machine's offers 7)", abi)
    api = api_server_stand_in()
    _, azcid = agent("azure")
    key, uid = azure_user()
    r = cloud_exec(key, provider="azure", cluster_id=azcid, args=[
        "rest", "--method", "get", "--skip-authorization-header",
        "--url", "http://127.0.0.1:%d/api/v1/namespaces/kube-system/secrets" % api,
        "--headers", "Authorization=Bearer stolen-by-az-rest"])
    eq(r.status, 200, "az rest (%r)" % r)
    check(r.get("return_code") not in (0, None), "az rest reached the local port", r)
    contains((r.get("output") or "") + (r.get("error") or ""), "Permission denied",
             "az rest could not connect")
    eq(_ApiServerStandIn.seen, [], "requests that reached the API server stand-in")
    # the same from aws (real CLI, another agent)
    _, cid = agent("real")
    akey, _, _ = aws_user("a")
    r = cloud_exec(akey, provider="aws", cluster_id=cid,
                   args=["sts", "get-caller-identity", "--endpoint-url", "http://127.0.0.1:%d" % api,
                         "--cli-read-timeout", "5", "--cli-connect-timeout", "5"])
    # Two layers hold here: the server refuses an --endpoint-url the operator did not list
    # (403 AWS_ENDPOINT_NOT_ALLOWED, test_aws.py), and behind it Landlock (shown with az above).
    check(r.get("error_code") == "AWS_ENDPOINT_NOT_ALLOWED" or r.get("return_code") not in (0, None),
          "aws reached the local port", r)
    eq(_ApiServerStandIn.seen, [], "requests that reached the API server stand-in")
    # what the commands are for still works, on the allowed ports
    r = cloud_exec(key, provider="azure", cluster_id=azcid, command="account show --output json")
    eq((r.status, r.get("return_code")), (200, 0), "az account show (%r)" % r)
    eq(json.loads(r.get("output"))["id"], AZ_SUBS[0]["subscriptionId"], "az account show")
    r = cloud_exec(akey, provider="aws", cluster_id=cid,
                   command="sts get-caller-identity --output json --endpoint-url %s" % moto())
    eq((r.status, r.get("return_code")), (200, 0), "aws sts get-caller-identity (%r)" % r)
    gkey, _ = gcp_user()
    r = cloud_exec(gkey, provider="gcp", cluster_id=cid, command="projects list --format=json")
    eq((r.status, r.get("return_code")), (200, 0), "gcloud projects list (%r)" % r)
    contains(r.get("output"), "proj-alpha", "gcloud projects list")
    base_is_empty()


@test(timeout=90)
def server_variables_outside_a_clis_allowlist_are_refused(t):
    """Issue 8 item 8: endpoint overrides are the operator's.  The server sends
    AZURE_ARM_ENDPOINT_OVERRIDE (its AZURE_MANAGEMENT_BASE is a fixture) and
    CLOUDSDK_API_ENDPOINT_OVERRIDES_* (GCP_CLOUDSDK_ENDPOINT_OVERRIDES): an agent
    whose operator did not set them refuses the command, naming the variable."""
    _, cid = agent("limits")
    key, uid = azure_user()
    r = cloud_exec(key, provider="azure", cluster_id=cid, args=["-c", "print('ran')"])
    eq((r.status, r.get("return_code"), r.get("error_code")), (200, 126, "POLICY_DENIED"),
       "azure on an agent without the operator's ARM endpoint (%r)" % r)
    contains(r.get("error"), "AZURE_ARM_ENDPOINT_OVERRIDE", "error names the variable")
    contains(r.get("error"), "AURORA_CLOUD_ENV", "error names the agent's setting")
    check("127.0.0.1" not in r.get("error"), "error shows the value", r.get("error"))
    check("ran" not in (r.get("output") or ""), "the command ran")
    gkey, _ = gcp_user()
    r = cloud_exec(gkey, provider="gcp", cluster_id=cid, args=["-c", "print('ran')"])
    eq((r.status, r.get("return_code"), r.get("error_code")), (200, 126, "POLICY_DENIED"),
       "gcp with the server's endpoint overrides (%r)" % r)
    contains(r.get("error"), "CLOUDSDK_API_ENDPOINT_OVERRIDES_", "error names the variable")
    # the agent still serves, aws's allowlisted credentials pass
    akey, _, _ = aws_user("a")
    r = cloud_exec(akey, provider="aws", cluster_id=cid, args=["-c", "print('still here')"])
    eq((r.get("return_code"), r.get("output")), (0, "still here\n"), "aws after the refusals (%r)" % r)


if __name__ == "__main__":
    main()
