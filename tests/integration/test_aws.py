#!/usr/bin/env python3
"""test_aws.py — the AWS connector (connector guide: Cloud Providers > AWS)
against a real moto_server.

Peers: moto_server (STS GetCallerIdentity / AssumeRole, IAM), the real `aws`
CLI (creates the customer's role in moto with the trust policy Aurora shows),
and tests/fixtures/aws_sts_proxy.py in front of moto.  moto's AssumeRole does
not evaluate trust policies (any role, any ExternalId succeeds), so the proxy
evaluates the role's trust policy as AWS does and answers AccessDenied in
AWS's XML when it does not let Aurora in; it also counts STS calls, injects
5xx answers or a hang, and can shorten the credentials' stated expiry.
cloud_exec goes through tests/fixtures/v2_agent.js (an independent `ws`
client of the v2 dialect that reports each exec's env); the credentials it
received are then used with the real `aws` CLI against moto.
"""
import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (V2Agent, BesideHung, FIXTURES, NODE, check, contains, eq, free_port, main,  # noqa: E402
                     rand_tag, refusing_port, suite_world, test, wait_until)

MOTO = shutil.which("moto_server") or "/root/.pyenv/shims/moto_server"
AWS_CLI = shutil.which("aws") or "/root/.pyenv/shims/aws"
MOTO_ACCOUNT = "123456789012"  # moto's fixed account
SERVER_KEY_ID = "AKIAAURORASERVER0001"
SERVER_SECRET = "aurora-server-secret-" + rand_tag(12)
GUIDE_MSG_ACCOUNT = "Unable to determine Aurora's AWS account ID"
GUIDE_MSG_ASSUME = "Aurora cannot assume this role"

_peers = {}


def _stop_peers():
    for name in ("proxy", "moto"):
        p = _peers.get(name)
        if p and p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    if _peers.get("dir"):
        shutil.rmtree(_peers["dir"], ignore_errors=True)


def peers():
    """(moto url, proxy url); started once for the program."""
    if "proxy_url" in _peers:
        return _peers["moto_url"], _peers["proxy_url"]
    import tempfile
    d = tempfile.mkdtemp(prefix="aurora-moto-")
    _peers["dir"] = d
    atexit.register(_stop_peers)
    port = free_port()
    _peers["moto"] = subprocess.Popen([MOTO, "-H", "127.0.0.1", "-p", str(port)],
                                      stdout=open(os.path.join(d, "moto.log"), "wb"),
                                      stderr=subprocess.STDOUT)

    def up():
        check(_peers["moto"].poll() is None, "moto_server exited", open(os.path.join(d, "moto.log")).read())
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            return False
    wait_until(up, 120, 0.1, "moto_server on port %d" % port)  # seconds of imports: minutes on a busy machine
    moto_url = "http://127.0.0.1:%d" % port
    _peers["proxy"] = subprocess.Popen([sys.executable, os.path.join(FIXTURES, "aws_sts_proxy.py"),
                                        "--upstream", moto_url], stdout=subprocess.PIPE,
                                       stderr=open(os.path.join(d, "proxy.log"), "wb"))
    line = _peers["proxy"].stdout.readline().decode()
    check(line.startswith("PORT "), "aws_sts_proxy did not start", line)
    _peers["moto_url"] = moto_url
    _peers["proxy_url"] = "http://127.0.0.1:%d" % int(line.split()[1])
    return _peers["moto_url"], _peers["proxy_url"]


def proxy(path, body=None):
    import urllib.request
    _, url = peers()
    req = urllib.request.Request(url + path, data=json.dumps(body or {}).encode() if body is not None else None,
                                 method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"{}")


def sts_count(action):
    return proxy("/_fixture/stats")["actions"].get(action, 0)


def aws_cli(*args, env=None):
    """The real aws CLI against moto (the customer creating the role, or a
    command run with the environment cloud_exec handed an agent)."""
    moto_url, _ = peers()
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env = dict(base, **(env or {"AWS_ACCESS_KEY_ID": "AKIACUSTOMER00000001", "AWS_SECRET_ACCESS_KEY": "customer",
                                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_PAGER": "",
                                 "AWS_EC2_METADATA_DISABLED": "true"}))
    r = subprocess.run([AWS_CLI, "--endpoint-url", moto_url, "--output", "json"] + list(args),
                       env=env, capture_output=True, timeout=60)
    check(r.returncode == 0, "aws %s failed" % " ".join(args[:2]), r.stdout, r.stderr)
    return json.loads(r.stdout or b"{}")


def create_role(trust_policy, name=None, max_session=None):
    name = name or "AuroraRole-" + rand_tag(4)
    extra = ["--max-session-duration", str(max_session)] if max_session else []
    out = aws_cli("iam", "create-role", "--role-name", name,
                  "--assume-role-policy-document", json.dumps(trust_policy), *extra)
    return out["Role"]["Arn"]


def server_env(**over):
    _, purl = peers()
    # STS calls must never time out where that is not the test (moto and the proxy are
    # Python: seconds per call on a loaded machine); PROVIDER_TIMEOUT_MS tests that.
    env = {"AWS_ACCESS_KEY_ID": SERVER_KEY_ID, "AWS_SECRET_ACCESS_KEY": SERVER_SECRET,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_STS_ENDPOINT": purl + "/",
           "AURORA_PROVIDER_TIMEOUT_MS": "30000"}
    env.update(over)
    return env


# Of the server that tests a hung STS (no provider call on it must succeed): long enough
# for the checks made while the hung call waits, on a loaded machine.
PROVIDER_TIMEOUT_MS = "6000"


def world():
    return suite_world(extra_env=server_env())


def onboarding(w, key=None):
    r = w.get("/aws/onboarding", key=key)
    eq(r.status, 200, "GET /aws/onboarding (%r)" % r)
    return r.json


def status(w, key=None):
    r = w.get("/api/connectors/status", key=key)
    eq(r.status, 200, "GET /api/connectors/status (%r)" % r)
    return r.json["connectors"]["aws"]


def no_secret_in(text, what):
    check(SERVER_SECRET not in text, "%s contains Aurora's AWS secret key" % what)


def connected_user(w):
    """A fresh user (own org) with a connected role; returns (key, user_id, arn, ext)."""
    org, user, key = w.new_org()
    ob = onboarding(w, key)
    arn = create_role(ob["trust_policy"])
    r = w.post("/aws/connect", {"role_arn": arn}, key=key)
    eq(r.status, 200, "POST /aws/connect (%r)" % r)
    return key, user, arn, ob["external_id"]


# ---------------------------------------------------------------------------
@test
def test_onboarding_shows_account_external_id_and_trust_policy(t):
    w = world()
    ob = onboarding(w)
    eq(ob.get("aurora_account_id"), MOTO_ACCOUNT, "aurora_account_id (moto's GetCallerIdentity)")
    ext = ob.get("external_id")
    check(isinstance(ext, str) and len(ext) >= 32, "external_id looks random", ob)
    # exactly the guide's trust policy, with the values filled in
    eq(ob.get("trust_policy"), {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::%s:root" % MOTO_ACCOUNT},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": ext}},
        }],
    }, "trust_policy")
    # the call was SigV4-signed with Aurora's key for STS in AWS_DEFAULT_REGION
    last = proxy("/_fixture/stats")["last"].get("GetCallerIdentity", {})
    check(last.get("authorization_scope", "").startswith(SERVER_KEY_ID + "/")
          and last["authorization_scope"].endswith("/us-east-1/sts/aws4_request"),
          "GetCallerIdentity signed for sts/us-east-1 with Aurora's key", last)
    # created once: same value on every call; the account id is not fetched again
    n = sts_count("GetCallerIdentity")
    eq(onboarding(w)["external_id"], ext, "external_id on a second call")
    eq(sts_count("GetCallerIdentity"), n, "GetCallerIdentity calls after the first onboarding")
    no_secret_in(json.dumps(ob), "onboarding response")


@test
def test_external_id_is_per_org_and_created_once_under_concurrency(t):
    w = world()
    org, user, key = w.new_org()
    results = []

    def one():
        r = w.get("/aws/onboarding", key=key)
        results.append((r.status, r.get("external_id")))
    ths = [threading.Thread(target=one) for _ in range(8)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    eq({s for s, _ in results}, {200}, "statuses of 8 concurrent onboarding calls")
    ids = {e for _, e in results}
    eq(len(ids), 1, "distinct External IDs handed out to one org under concurrency (%s)" % ids)
    check(ids != {onboarding(w)["external_id"]}, "two organizations share an External ID")
    # another user of the same org sees the org's External ID
    _, key2 = w.new_user(org_id=org)
    eq(onboarding(w, key2)["external_id"], ids.pop(), "External ID for a second user of the org")


@test
def test_connect_assumes_role_with_external_id(t):
    w = world()
    org, user, key = w.new_org()
    ob = onboarding(w, key)
    arn = create_role(ob["trust_policy"])
    n = sts_count("AssumeRole")
    r = w.post("/aws/connect", {"role_arn": arn}, key=key)
    eq(r.status, 200, "POST /aws/connect (%r)" % r)
    eq(r.get("connected"), True, "connected")
    eq(r.get("account_id"), MOTO_ACCOUNT, "account_id from the ARN")
    contains(r.get("assumed_role_arn"), ":assumed-role/%s/aurora-" % arn.split("/")[-1], "assumed_role_arn")
    eq(sts_count("AssumeRole"), n + 1, "AssumeRole calls")
    last = proxy("/_fixture/stats")["last"]["AssumeRole"]
    eq(last.get("RoleArn"), arn, "RoleArn sent")
    eq(last.get("ExternalId"), ob["external_id"], "ExternalId sent (the org's)")
    eq(last.get("RoleSessionName"), "aurora-" + user, "RoleSessionName")
    eq(last.get("DurationSeconds"), "900", "DurationSeconds: AWS's shortest session")
    eq(last.get("Version"), "2011-06-15", "STS API version")
    check(last.get("authorization_scope", "").startswith(SERVER_KEY_ID + "/"), "signed with Aurora's key", last)
    # nothing secret comes back: no temporary credentials, not our key
    body = r.body.decode()
    for needle in ("SecretAccessKey", "SessionToken", "ASIA", SERVER_SECRET):
        check(needle not in body, "connect response contains %s" % needle, body)
    st = status(w, key)
    eq(st.get("connected"), True, "status connected")
    eq(st.get("account"), arn, "status account (the role ARN)")
    eq(st.get("account_id"), MOTO_ACCOUNT, "status account_id")
    eq(st.get("region"), "us-east-1", "status region")
    for needle in ("SecretAccessKey", "SessionToken", "ASIA", SERVER_SECRET, "secret_ref"):
        check(needle not in json.dumps(st), "status contains %s" % needle, st)
    # another user of the same org, and a user of another org, see nothing
    _, key2 = w.new_user(org_id=org)
    eq(status(w, key2).get("connected"), False, "connected for another user of the org")
    _, _, key3 = w.new_org()
    eq(status(w, key3).get("connected"), False, "connected for another org")


@test
def test_connect_rejects_malformed_role_arns_without_calling_aws(t):
    w = world()
    n = sts_count("AssumeRole")
    bad = ["", "AuroraRole", "arn:aws:iam::12345678901:role/AuroraRole",
           "arn:aws:iam::1234567890123:role/AuroraRole", "arn:aws:iam::12345678901a:role/x",
           "arn:aws:iam::123456789012:user/AuroraRole", "arn:aws:iam::123456789012:role/",
           "arn:aws:s3:::bucket", "arn:aws:iam::123456789012:role/bad name",
           "arn:aws:iam::123456789012:role/" + "x" * 65, "arn:aws:iam::123456789012:role//x"]
    for arn in bad:
        r = w.post("/aws/connect", {"role_arn": arn})
        eq(r.status, 400, "POST /aws/connect %r (%r)" % (arn, r))
        check(r.error_code in ("AWS_INVALID_ROLE_ARN", "BAD_REQUEST"), "error_code for %r" % arn, r)
    r = w.post("/aws/connect", {})
    eq(r.status, 400, "POST /aws/connect without role_arn")
    r = w.post("/aws/connect", "{not json")
    eq(r.status, 400, "POST /aws/connect with malformed JSON")
    eq(sts_count("AssumeRole"), n, "AssumeRole calls for malformed input")
    # a role path is part of a valid ARN
    ob = onboarding(w)
    arn = aws_cli("iam", "create-role", "--role-name", "PathRole-" + rand_tag(3), "--path", "/aurora/team/",
                  "--assume-role-policy-document", json.dumps(ob["trust_policy"]))["Role"]["Arn"]
    contains(arn, ":role/aurora/team/", "moto role ARN with a path")
    r = w.post("/aws/connect", {"role_arn": arn})
    eq(r.status, 200, "POST /aws/connect with a role path (%r)" % r)


@test
def test_wrong_external_id_or_missing_role_is_refused_with_guide_message(t):
    w = world()
    org, user, key = w.new_org()
    ob = onboarding(w, key)
    wrong = json.loads(json.dumps(ob["trust_policy"]))
    wrong["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"] = "not-" + ob["external_id"]
    foreign = json.loads(json.dumps(ob["trust_policy"]))
    foreign["Statement"][0]["Principal"]["AWS"] = "arn:aws:iam::999999999999:root"
    for policy, what in ((wrong, "trust policy with another External ID"),
                         (foreign, "trust policy for another account")):
        arn = create_role(policy)
        r = w.post("/aws/connect", {"role_arn": arn}, key=key)
        eq(r.status, 400, "connect with %s (%r)" % (what, r))
        eq(r.error_code, "AWS_ASSUME_ROLE_DENIED", "error_code (%s)" % what)
        contains(r.get("error"), GUIDE_MSG_ASSUME, "error (%s)" % what)
        contains(r.get("error"), "External ID", "error names what to check")
    r = w.post("/aws/connect", {"role_arn": "arn:aws:iam::%s:role/NoSuchRole-%s" % (MOTO_ACCOUNT, rand_tag(3))},
               key=key)
    eq(r.status, 400, "connect to a role that does not exist (%r)" % r)
    contains(r.get("error"), GUIDE_MSG_ASSUME, "error for a missing role")
    eq(status(w, key).get("connected"), False, "connected after refusals")
    no_secret_in(w.server.log_text(), "server log")


@test
def test_account_id_missing_credentials_gives_guide_message(t):
    w = t.world(extra_env=server_env(AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY=""))
    r = w.get("/aws/onboarding")
    eq(r.status, 503, "onboarding without Aurora's AWS credentials (%r)" % r)
    eq(r.error_code, "AWS_NOT_CONFIGURED", "error_code")
    contains(r.get("error"), GUIDE_MSG_ACCOUNT, "error")
    contains(r.get("error"), "AWS_ACCESS_KEY_ID", "error names the setting")
    r = w.post("/aws/connect", {"role_arn": "arn:aws:iam::%s:role/AuroraRole" % MOTO_ACCOUNT})
    eq(r.status, 503, "connect without Aurora's AWS credentials (%r)" % r)
    contains(r.get("error"), GUIDE_MSG_ASSUME, "connect error")


@test
def test_temporary_server_credentials_send_their_session_token(t):
    w = t.world(extra_env=server_env(AWS_SESSION_TOKEN="FwoGZXIvYXdzEXAMPLE" + "x" * 3000))
    eq(onboarding(w).get("aurora_account_id"), MOTO_ACCOUNT, "account id with temporary server credentials")
    eq(proxy("/_fixture/stats")["last"]["GetCallerIdentity"].get("security_token"), True,
       "X-Amz-Security-Token sent")


@test
def test_account_id_sts_refusal_gives_guide_message(t):
    w = t.world(extra_env=server_env())
    proxy("/_fixture/fail", {"status": 403, "code": "InvalidClientTokenId", "count": 1,
                             "action": "GetCallerIdentity"})
    r = w.get("/aws/onboarding")
    check(r.status in (502,), "onboarding when STS refuses Aurora's key: 502 (%r)" % r)
    contains(r.get("error"), GUIDE_MSG_ACCOUNT, "error")
    eq(r.error_code, "AWS_CREDENTIALS_INVALID", "error_code")
    # the next call (no fault) works: failures are not cached
    eq(onboarding(w).get("aurora_account_id"), MOTO_ACCOUNT, "account id after the fault")


@test(timeout=60)
def test_sts_errors_timeouts_and_unreachable_keep_server_serving(t):
    # The retries on the suite's server (30 s): a successful AssumeRole
    # through the proxy (four boto3 clients, three moto calls, the forward,
    # all Python) took more than a short timeout on a loaded machine, and
    # kit_call's deadline covers the retry too.
    w = world()
    org, user, key = w.new_org()
    ob = onboarding(w, key)
    arn = create_role(ob["trust_policy"])
    # 5xx: retried once, then a clear 502
    n = sts_count("AssumeRole")
    proxy("/_fixture/fail", {"status": 500, "code": "InternalFailure", "count": 2, "action": "AssumeRole"})
    r = w.post("/aws/connect", {"role_arn": arn}, key=key)
    eq(r.status, 502, "connect when STS answers 500 twice (%r)" % r)
    eq(r.error_code, "AWS_STS_ERROR", "error_code")
    contains(r.get("error"), GUIDE_MSG_ASSUME, "error")
    eq(sts_count("AssumeRole") - n, 2, "attempts for a 5xx (one retry)")
    # one 503 then success: the retry hides a blip
    proxy("/_fixture/fail", {"status": 503, "code": "ServiceUnavailable", "count": 1, "action": "AssumeRole"})
    r = w.post("/aws/connect", {"role_arn": arn}, key=key)
    eq(r.status, 200, "connect after one 503 (%r)" % r)
    # STS answers throttling as HTTP 400 <Code>Throttling</Code>: retried like a 5xx
    n = sts_count("AssumeRole")
    proxy("/_fixture/fail", {"status": 400, "code": "Throttling", "count": 1, "action": "AssumeRole"})
    r = w.post("/aws/connect", {"role_arn": arn}, key=key)
    eq(r.status, 200, "connect after one throttled AssumeRole (%r)" % r)
    eq(sts_count("AssumeRole") - n, 2, "attempts for a throttled call (one retry)")
    # a provider that never answers: 504 within the timeout, while the server
    # keeps serving (a server of its own, with the short timeout this waits for;
    # the hang comes before any check of the role, so the role above will do)
    w = t.world(extra_env=server_env(AURORA_PROVIDER_TIMEOUT_MS=PROVIDER_TIMEOUT_MS))
    org, user, key = w.new_org()
    proxy("/_fixture/fail", {"hang": True, "count": 1, "action": "AssumeRole"})
    res = {}

    def hung():
        t0 = time.monotonic()
        res["r"] = w.post("/aws/connect", {"role_arn": arn}, key=key, timeout=30)
        res["dt"] = time.monotonic() - t0
    th = threading.Thread(target=hung)
    before = proxy("/_fixture/stats")["faults"]  # the 500s and the 503 above count too
    th.start()
    wait_until(lambda: proxy("/_fixture/stats")["faults"] > before, 10, 0.02,
               "the AssumeRole call to reach the hanging STS")
    # Not blocked by the hung call: answered beside it (BesideHung).  The
    # outbound call is made first, at once, and must end while the hung call
    # waits.
    beside = BesideHung(th, int(PROVIDER_TIMEOUT_MS) / 1000.0)
    r = beside.request("another outbound call (validation only)",
                       lambda: w.post("/aws/connect", {"role_arn": "nope"}, key=key),
                       must_end_beside=True)
    eq(r.status, 400, "a second outbound request while STS hangs")
    for path in ("/api/kubectl/tokens", "/api/connectors/status", "/health"):
        r = beside.request("GET " + path, lambda: w.get(path, key=key))
        eq(r.status, 200, "GET %s while STS hangs" % path)
    beside.done()
    th.join(30)
    r = res["r"]
    eq(r.status, 504, "connect when STS never answers (%r)" % r)
    eq(r.error_code, "AWS_STS_TIMEOUT", "error_code")
    contains(r.get("error"), GUIDE_MSG_ASSUME, "error")
    check(int(PROVIDER_TIMEOUT_MS) / 1000.0 - 0.5 <= res["dt"] < 20.0,
          "timed out after AURORA_PROVIDER_TIMEOUT_MS (took %.1fs)" % res["dt"])
    eq(w.get("/health").status, 200, "health after the timeout")


@test
def test_sts_unreachable(t):
    dead = refusing_port(t)  # nothing listens there, nor will
    w = t.world(extra_env=server_env(AWS_STS_ENDPOINT="http://127.0.0.1:%d/" % dead))
    r = w.get("/aws/onboarding")
    eq(r.status, 502, "onboarding with STS unreachable (%r)" % r)
    eq(r.error_code, "AWS_STS_UNREACHABLE", "error_code")
    contains(r.get("error"), GUIDE_MSG_ACCOUNT, "error")
    r = w.post("/aws/connect", {"role_arn": "arn:aws:iam::%s:role/AuroraRole" % MOTO_ACCOUNT})
    eq(r.status, 502, "connect with STS unreachable (%r)" % r)
    eq(r.error_code, "AWS_STS_UNREACHABLE", "error_code")
    contains(r.get("error"), GUIDE_MSG_ASSUME, "error")


def exec_setup(t, w):
    """A user with a connected role, a cluster of its org and a v2 agent on it."""
    key, user, arn, ext = connected_user(w)
    tok = w.create_token("it-aws-" + rand_tag(3), key=key)
    a = V2Agent(w, tok["token"], t)
    w.wait_connection(tok["cluster_id"], key=key)
    return key, user, arn, tok["cluster_id"], a


def cloud_exec(w, key, cid, **body):
    body.update(provider="aws", cluster_id=cid)
    if "command" not in body:
        body.setdefault("args", ["sts", "get-caller-identity"])
    return w.post("/api/cloud_exec", body, key=key)


# Two real `aws` CLI runs and a role made with a third: each ~1 CPU-s
# alone, and past 60 s twice with the machine's load at 15-20.
@test(timeout=150)
def test_cloud_exec_hands_the_agent_assumed_role_credentials(t):
    w = world()
    key, user, arn, cid, a = exec_setup(t, w)
    n = sts_count("AssumeRole")
    r = cloud_exec(w, key, cid, command="aws sts get-caller-identity --output json")
    eq(r.status, 200, "cloud_exec (%r)" % r)
    eq(r.get("return_code"), 0, "return code")
    ex = wait_until(lambda: a.execs() and a.execs()[-1], 15, 0.02, "exec frame at the agent")
    eq((ex["kind"], ex["program"], ex["argv"]), ("cloud_exec", "aws", ["sts", "get-caller-identity", "--output", "json"]),
       "kind/program/argv")
    env = ex["env"]
    eq(sorted(env), sorted(["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION",
                            "AWS_REGION", "AWS_EC2_METADATA_DISABLED", "AWS_PAGER"]), "env names")
    eq((env["AWS_DEFAULT_REGION"], env["AWS_EC2_METADATA_DISABLED"], env["AWS_PAGER"]),
       ("us-east-1", "true", ""), "env settings")
    check(env["AWS_ACCESS_KEY_ID"] != SERVER_KEY_ID and env["AWS_SECRET_ACCESS_KEY"] != SERVER_SECRET,
          "the agent got Aurora's own credentials")
    check(env["AWS_SESSION_TOKEN"], "session token", env.keys())
    # the credentials from connect served the first command: no STS call
    eq(sts_count("AssumeRole"), n, "AssumeRole calls for the first command after connect")
    # they are the assumed role's: the real aws CLI with exactly this environment
    who = aws_cli("sts", "get-caller-identity", env=env)
    eq(who.get("Arn"), "arn:aws:sts::%s:assumed-role/%s/aurora-%s" % (MOTO_ACCOUNT, arn.split("/")[-1], user),
       "identity of the credentials handed to the agent")
    # cached: more commands within the expiry make no STS call and reuse them
    for target in (None, MOTO_ACCOUNT):
        r = cloud_exec(w, key, cid, **({"account": target} if target else {}))
        eq(r.status, 200, "cloud_exec again (account %s) (%r)" % (target, r))
    eq(sts_count("AssumeRole"), n, "AssumeRole calls for cached credentials")
    eq(a.wait_execs(3)[-1]["env"]["AWS_ACCESS_KEY_ID"], env["AWS_ACCESS_KEY_ID"], "same cached key")
    # another account than the role's: refused before anything runs
    k = len(a.execs())
    r = cloud_exec(w, key, cid, account="111111111111")
    eq((r.status, r.error_code), (403, "AWS_ACCOUNT_NOT_CONNECTED"), "foreign account (%r)" % r)
    contains(r.get("error"), "111111111111", "error names the account")
    contains(r.get("error"), MOTO_ACCOUNT, "error names the connected account")
    eq(len(a.execs()), k, "execs sent for a refused command")
    # nothing secret in the server's log, the API answers or the audit
    log = w.server.log_text()
    for v in (env["AWS_SECRET_ACCESS_KEY"], env["AWS_SESSION_TOKEN"], SERVER_SECRET):
        check(v not in log, "server log holds a credential")
        check(v not in r.body.decode(), "API answer holds a credential")


@test
def test_cloud_exec_refuses_profile_endpoint_and_role_switching(t):
    """Issue 8, item 3: what selects an account, role, profile or endpoint in an
    aws command: --profile (any abbreviation aws accepts), --endpoint-url not
    listed in AWS_CLI_ENDPOINT_URLS, and the sts calls that mint other
    credentials are refused before anything reaches the agent."""
    w = world()
    key, user, arn, cid, a = exec_setup(t, w)
    k = len(a.execs())
    refused = [
        (["sts", "get-caller-identity", "--profile", "other"], 403, "CLOUD_ARG_REFUSED"),
        (["--profile=other", "s3", "ls"], 403, "CLOUD_ARG_REFUSED"),
        (["s3", "ls", "--prof", "other"], 400, "CLOUD_ARG_AMBIGUOUS"),
        (["--endpoint-url", "http://127.0.0.1:1", "sts", "get-caller-identity"], 403, "AWS_ENDPOINT_NOT_ALLOWED"),
        (["sts", "get-caller-identity", "--endpoint-url=https://sts.evil.example"], 403,
         "AWS_ENDPOINT_NOT_ALLOWED"),
        (["--endpoint", "http://127.0.0.1:1", "sts", "get-caller-identity"], 400, "CLOUD_ARG_AMBIGUOUS"),
        (["sts", "assume-role", "--role-arn", "arn:aws:iam::111111111111:role/Admin",
          "--role-session-name", "x"], 403, "CLOUD_ARG_REFUSED"),
        (["--region", "us-east-1", "sts", "assume-role", "--role-arn", arn, "--role-session-name", "x"], 403,
         "CLOUD_ARG_REFUSED"),
        (["sts", "get-session-token"], 403, "CLOUD_ARG_REFUSED"),
        (["sts", "assume-role-with-web-identity", "--role-arn", arn], 403, "CLOUD_ARG_REFUSED"),
    ]
    for args, status, code in refused:
        r = cloud_exec(w, key, cid, args=args)
        eq((r.status, r.error_code), (status, code), "%s (%r)" % (" ".join(args), r))
    eq(len(a.execs()), k, "execs for refused commands")
    for args in (["sts", "get-caller-identity", "--region", "eu-west-1"], ["s3", "ls", "--output", "json"],
                 ["iam", "get-instance-profile", "--instance-profile-name", "x"]):
        r = cloud_exec(w, key, cid, args=args)
        eq(r.status, 200, "%s (%r)" % (" ".join(args), r))
        ex = wait_until(lambda: len(a.execs()) > k and a.execs()[-1], 15, 0.02, "exec frame")
        k = len(a.execs())
        eq(ex["argv"], args, "argv")
    eq(w.get("/health").status, 200, "server still serving")


@test
def test_cloud_exec_endpoint_url_from_the_operator_list(t):
    """--endpoint-url is allowed exactly as AWS_CLI_ENDPOINT_URLS lists it (a
    private endpoint, a test fixture), nothing else."""
    w = t.world("endpoints", extra_env=server_env(AWS_CLI_ENDPOINT_URLS="http://127.0.0.1:4566/, https://vpce.example"))
    key, user, arn, cid, a = exec_setup(t, w)
    for url in ("http://127.0.0.1:4566", "http://127.0.0.1:4566/", "https://vpce.example"):
        r = cloud_exec(w, key, cid, args=["sts", "get-caller-identity", "--endpoint-url", url])
        eq(r.status, 200, "%s (%r)" % (url, r))
    for url in ("http://127.0.0.1:4567", "http://127.0.0.1:4566/x", "https://vpce.example.evil",
                "https://u@vpce.example", "HTTPS://vpce.example"):
        r = cloud_exec(w, key, cid, args=["sts", "get-caller-identity", "--endpoint-url=" + url])
        eq((r.status, r.error_code), (403, "AWS_ENDPOINT_NOT_ALLOWED"), "%s (%r)" % (url, r))


# Two real `aws` CLI runs and a role made with a third: each ~1 CPU-s
# alone, and past 60 s twice with the machine's load at 15-20.
@test(timeout=150)
def test_cloud_exec_refreshes_credentials_before_expiry(t):
    w = world()
    # credentials that live 4 minutes (under the 5-minute margin) are still
    # reused: the margin is a tenth of their lifetime
    proxy("/_fixture/expiration", {"seconds": 240})
    try:
        key, user, arn, cid, a = exec_setup(t, w)
        n = sts_count("AssumeRole")
        for i in range(2):
            eq(cloud_exec(w, key, cid).status, 200, "cloud_exec %d" % i)
        eq(sts_count("AssumeRole") - n, 0, "AssumeRole calls for 4-minute credentials from the connect")
    finally:
        proxy("/_fixture/expiration", {"seconds": None})
    # credentials that live no longer than the margin's 5-second floor are
    # never reused
    proxy("/_fixture/expiration", {"seconds": 5})
    try:
        key, user, arn, cid, a = exec_setup(t, w)
        n = sts_count("AssumeRole")
        for i in range(2):
            eq(cloud_exec(w, key, cid).status, 200, "cloud_exec %d" % i)
        eq(sts_count("AssumeRole") - n, 2, "AssumeRole calls when credentials expire within the margin")
        k1, k2 = [e["env"]["AWS_ACCESS_KEY_ID"] for e in a.wait_execs(2)[-2:]]
        check(k1 != k2, "fresh credentials each time")
        # a refusal during a refresh (the customer changed the trust policy) is reported
        proxy("/_fixture/fail", {"status": 403, "code": "AccessDenied", "count": 1, "action": "AssumeRole"})
        k = len(a.execs())
        r = cloud_exec(w, key, cid)
        eq((r.status, r.error_code), (400, "AWS_ASSUME_ROLE_DENIED"), "refresh refused (%r)" % r)
        contains(r.get("error"), GUIDE_MSG_ASSUME, "error")
        eq(len(a.execs()), k, "execs sent without credentials")
        proxy("/_fixture/expiration", {"seconds": 3600})
        n = sts_count("AssumeRole")
        for i in range(3):
            eq(cloud_exec(w, key, cid).status, 200, "cloud_exec with 1 h credentials %d" % i)
        eq(sts_count("AssumeRole") - n, 1, "AssumeRole calls for three commands with 1 h credentials")
    finally:
        proxy("/_fixture/expiration", {"seconds": None})


@test(timeout=150)
def test_cloud_exec_sessions_last_as_long_as_the_command(t):
    """The assumed role's session covers the command's timeout and not much
    more: AWS's 15-minute minimum for usual commands, longer ones for long
    commands as far as the role's MaxSessionDuration allows (found in review:
    every session lasted one hour, and cached credentials with 5 minutes
    left were handed to a command allowed to run for an hour).  Seven
    commands, three roles and two `aws` CLI runs: 60 s was too little on a
    machine loaded to 9 (each cloud_exec took 2-4 s there)."""
    w = world()

    def last_duration():
        return proxy("/_fixture/stats")["last"]["AssumeRole"].get("DurationSeconds")

    key, user, arn, cid, a = exec_setup(t, w)
    n = sts_count("AssumeRole")
    eq(cloud_exec(w, key, cid, timeout=60).status, 200, "a 60 s command")
    eq(sts_count("AssumeRole"), n, "the connect's 15-minute session covers a 60 s command")
    k0 = a.wait_execs(1)[-1]["env"]["AWS_ACCESS_KEY_ID"]
    # 20 minutes: the 15-minute session does not cover it; the role's
    # default MaxSessionDuration (1 h) allows what is asked
    eq(cloud_exec(w, key, cid, timeout=1200).status, 200, "a 20-minute command")
    eq(sts_count("AssumeRole"), n + 1, "AssumeRole for a command longer than the cached session")
    d = int(last_duration())
    check(1200 < d <= 1800, "DurationSeconds covers the 20 minutes", d)
    k1 = a.wait_execs(2)[-1]["env"]["AWS_ACCESS_KEY_ID"]
    check(k1 != k0, "fresh credentials for the long command")
    # now cached: another such command, and a short one, reuse them
    for to in (1200, 60):
        eq(cloud_exec(w, key, cid, timeout=to).status, 200, "timeout %d again" % to)
    eq(sts_count("AssumeRole"), n + 1, "AssumeRole calls while the session covers the commands")
    eq(a.wait_execs(4)[-1]["env"]["AWS_ACCESS_KEY_ID"], k1, "cached credentials reused")
    # an hour: past the role's 1 h maximum AWS refuses (ValidationError); the
    # longest session the role allows is asked instead
    eq(cloud_exec(w, key, cid, timeout=3600).status, 200, "a 1 h command")
    eq(last_duration(), "3600", "DurationSeconds after AWS refused a longer session")
    # a role that allows 12 h sessions gets one that covers the hour
    org, user2, key2 = w.new_org()
    ob = onboarding(w, key2)
    arn2 = create_role(ob["trust_policy"], max_session=43200)
    eq(w.post("/aws/connect", {"role_arn": arn2}, key=key2).status, 200, "connect a 12 h role")
    tok = w.create_token("it-aws-" + rand_tag(3), key=key2)
    a2 = V2Agent(w, tok["token"], t)
    w.wait_connection(tok["cluster_id"], key=key2)
    m = sts_count("AssumeRole")
    eq(cloud_exec(w, key2, tok["cluster_id"], timeout=3600).status, 200, "a 1 h command (12 h role)")
    eq(sts_count("AssumeRole"), m + 1, "one AssumeRole, accepted")
    d = int(last_duration())
    check(3600 < d <= 4200, "DurationSeconds covers the hour", d)
    env = a2.wait_execs(1)[-1]["env"]
    who = aws_cli("sts", "get-caller-identity", env=env)
    contains(who.get("Arn"), ":assumed-role/%s/" % arn2.split("/")[-1], "the 12 h role's credentials")


@test
def test_cloud_exec_without_a_connection(t):
    w = world()
    org, user, key = w.new_org()
    tok = w.create_token("it-aws-none", key=key)
    r = cloud_exec(w, key, tok["cluster_id"])
    eq((r.status, r.error_code), (404, "MISSING_CONNECTOR"), "cloud_exec without AWS connected (%r)" % r)


@test
def test_disconnect(t):
    w = world()
    key, user, arn, _ = connected_user(w)
    eq(status(w, key).get("connected"), True, "connected before")
    tok = w.create_token("it-aws-dc", key=key)
    r = w.delete("/api/connectors/aws", key=key)
    eq(r.status, 200, "DELETE /api/connectors/aws (%r)" % r)
    eq(status(w, key).get("connected"), False, "connected after disconnect")
    # the cached credentials went with it
    r = cloud_exec(w, key, tok["cluster_id"])
    eq((r.status, r.error_code), (404, "MISSING_CONNECTOR"), "cloud_exec after disconnect (%r)" % r)


if __name__ == "__main__":
    main()
