#!/usr/bin/env python3
"""Agent logging: one line per event, text or JSON, level filter; and secrets
never reach the logs.  A server and an agent run at debug level with fake
credentials in the agent's environment (cloud keys, a proxy password); the
test drives commands (allowed, refused with a credential flag, failing,
timing out, through the internal API) and then greps both processes' logs
for the agent token, the API key, the internal API secret and every fake
credential.

Real peers: build/asan/aurora-server and aurora-agent, /usr/bin/kubectl against
the kube API fixture."""

import json
import re

from harness import check, contains, eq, main, rand_tag, test, wait_until

LINE_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warn|error) +agent: \S")


@test(timeout=90)
def secrets_never_logged_at_debug(t):
    w = t.world(extra_env={"AURORA_LOG_LEVEL": "debug"})
    tok = w.create_token("logs")
    fake = {
        "AWS_SECRET_ACCESS_KEY": "fakeAwsSecret%s" % rand_tag(8),
        "GOOGLE_APPLICATION_CREDENTIALS_JSON": "fakeGcpKey%s" % rand_tag(8),
        "GITHUB_TOKEN": "ghp_fake%s" % rand_tag(8),
    }
    proxy_pw = "proxyPw%s" % rand_tag(6)
    env = dict(fake)
    env.update({"AURORA_LOG_LEVEL": "debug",
                # a proxy with a password that NO_PROXY bypasses: still never logged
                "HTTPS_PROXY": "http://user:%s@127.0.0.1:9" % proxy_pw,
                "NO_PROXY": "127.0.0.1"})
    a = w.start_agent(tok["token"], name="debug-agent", extra_env=env)
    cid = tok["cluster_id"]
    w.wait_connection(cid)

    flag_secret = "flagSecret%s" % rand_tag(8)
    r = w.kubectl(cid, args=["get", "pods", "-n", "default"])
    eq(r.json.get("return_code"), 0, "get pods (%r)" % r)
    r = w.kubectl(cid, args=["get", "pods", "--token=%s" % flag_secret])
    eq(r.json.get("error_code"), "POLICY_DENIED", "a credential flag is refused (%r)" % r)
    r = w.kubectl(cid, args=["get", "pods", "--token", flag_secret])
    eq(r.json.get("error_code"), "POLICY_DENIED", "a credential flag is refused (%r)" % r)
    r = w.kubectl(cid, args=["get", "--raw", "/fixture/status/500"])
    eq(r.json.get("return_code"), 1, "failing command (%r)" % r)
    r = w.kubectl(cid, args=["get", "--raw", "/fixture/sleep/5/x"], timeout=1)
    eq(r.json.get("error_code"), "TIMEOUT", "timeout (%r)" % r)
    r = w.internal({"user_id": w.user_id, "cluster_id": cid, "command": "version --client",
                    "timeout": 30})
    eq(r.status, 200, "internal API (%r)" % r)

    for p in (a.proc, w.server):
        problems = p.stop()
        eq(problems, [], "%s stops cleanly" % p.name)
    logs = {"agent": a.log(), "server": w.server.log_text()}
    secrets = {"agent token": tok["token"], "token body": tok["token"][len("aurora_kubectl_"):],
               "API key": w.api_key, "internal API secret": w.secret,
               "proxy password": proxy_pw, "credential flag value": flag_secret}
    secrets.update(fake)
    for who, text in logs.items():
        check(len(text.splitlines()) > 10, "%s log is suspiciously short" % who, text)
        for what, value in secrets.items():
            check(value not in text, "%s log contains the %s" % (who, what))
    contains(logs["agent"], " debug ", "debug lines are there")
    for line in logs["agent"].splitlines():
        check(LINE_RE.match(line), "agent text log line has the expected shape", line)


@test(timeout=60)
def json_format_and_level_filter(t):
    w = t.world()
    tok = w.create_token("json-logs")
    a = w.start_agent(tok["token"], name="json-agent", extra_env={"AURORA_LOG_FORMAT": "json",
                                                                   "AURORA_LOG_LEVEL": "info"})
    cid = tok["cluster_id"]
    w.wait_connection(cid)
    w.kubectl(cid, args=["delete", "pod", "x"])
    w.kubectl(cid, args=["version", "--client"])
    wait_until(lambda: "ended return_code=0" in a.log(), 10, what="the command to be logged")
    lines = a.log().splitlines()
    check(len(lines) >= 5, "json log too short", lines)
    levels = set()
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            raise AssertionError("not one JSON object per line: %r" % line)
        check(isinstance(doc, dict), "each line is an object", line)
        msg = doc.get("msg") or doc.get("message")
        check(isinstance(msg, str) and msg, "each line has a message", doc)
        levels.add(doc.get("level"))
    check(levels <= {"info", "warn", "error"}, "no debug lines at level info", levels)
    check(any("refused by the readonly policy" in l for l in lines), "policy refusal logged",
          lines)

    tok2 = w.create_token("warn-logs")
    b = w.start_agent(tok2["token"], name="warn-agent", extra_env={"AURORA_LOG_LEVEL": "warn"})
    w.wait_connection(tok2["cluster_id"])
    w.kubectl(tok2["cluster_id"], args=["version", "--client"])
    w.kubectl(tok2["cluster_id"], args=["delete", "pod", "x"])
    wait_until(lambda: "refused" in b.log(), 10, what="the refusal (a warning) to be logged")
    for line in b.log().splitlines():
        check(" info " not in line[:40] and " debug " not in line[:40],
              "level warn filters info and debug", line)


if __name__ == "__main__":
    main()
