#!/usr/bin/env python3
"""test_openapi.py — docs/openapi.json is a valid OpenAPI document and says what the
running server does.

- The document passes a real validator (tests/integration/openapi_validate.mjs:
  @apidevtools/swagger-parser from tests/node_modules, plus the project's
  conventions), and the validator refuses broken copies (so a pass means something).
- Against a live server (build/asan): every documented path answers a method it does
  not have with 405 and an `Allow` listing exactly the documented methods; every
  authenticated operation answers a request without credentials with 401
  UNAUTHORIZED and `WWW-Authenticate: Bearer realm="aurora"`, and every internal one
  refuses an API key; public operations never ask for credentials; X-Request-ID is
  echoed or generated; /health, /ready and /metrics answer as documented.

The route table itself is compared with the document by tests/unit/test_openapi.c.
"""
import copy
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, eq, main, suite_world, test, wait_until  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOC_PATH = os.path.join(ROOT, "docs", "openapi.json")
VALIDATOR = os.path.join(ROOT, "tests", "integration", "openapi_validate.mjs")
VERBS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$")


def load_doc():
    with open(DOC_PATH, encoding="utf-8") as f:
        return json.load(f)


def validate(path):
    r = subprocess.run(["node", VALIDATOR, path], capture_output=True, timeout=120)
    out = r.stdout.decode("utf-8", "replace") + r.stderr.decode("utf-8", "replace")
    lines = out.strip().splitlines()
    m = SUMMARY.match(lines[-1]) if lines else None
    check(m, "validator printed no summary line", out)
    return r.returncode, int(m.group(1)), int(m.group(2)), out


def operations(doc):
    for p, item in doc["paths"].items():
        for v in VERBS:
            if v in item:
                yield p, v, item[v]


def concrete(pattern):
    """A request path for a pattern: every {param} becomes a harmless id."""
    return re.sub(r"{[^}]+}", "x1", pattern)


def matches(pattern, path):
    a, b = pattern.strip("/").split("/"), path.strip("/").split("/")
    return len(a) == len(b) and all(x.startswith("{") or x == y for x, y in zip(a, b))


@test(timeout=120)
def test_document_is_valid(t):
    rc, passed, failed, out = validate(DOC_PATH)
    eq((rc, failed), (0, 0), "validator exit status and failures:\n" + out)
    check(passed >= 7, "validator ran fewer checks than it has", out)


@test(timeout=180)
def test_validator_refuses_broken_documents(t):
    # A validator that refuses everything (e.g. its package is missing) proves nothing.
    rc, _, failed, out = validate(DOC_PATH)
    eq((rc, failed), (0, 0), "the validator must accept docs/openapi.json first:\n" + out)
    doc = load_doc()
    any_op = next(o for p, v, o in operations(doc) if "{" in p and v == "get")
    broken = {}
    d = copy.deepcopy(doc)
    del d["paths"]["/api/me"]["get"]["responses"]
    broken["no responses"] = d
    d = copy.deepcopy(doc)
    d["paths"]["/api/me"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] = {
        "$ref": "#/components/schemas/NoSuchSchema"}
    broken["dangling $ref"] = d
    d = copy.deepcopy(doc)
    for p, v, o in operations(d):
        if o["operationId"] == any_op["operationId"]:
            o["parameters"] = [x for x in o.get("parameters", []) if x.get("in") != "path"]
    broken["undeclared path parameter"] = d
    d = copy.deepcopy(doc)
    d["paths"]["/api/me"]["get"]["responses"]["404"] = {
        "description": "x", "content": {"application/json": {"schema": {"type": "object"}}}}
    broken["error without the error shape"] = d
    d = copy.deepcopy(doc)
    d["paths"]["/api/me"]["get"]["security"] = [{"cookie": []}]
    broken["unknown security scheme"] = d
    d = copy.deepcopy(doc)
    d["openapi"] = "2.9.9"
    broken["unknown OpenAPI version"] = d
    for what, bad in broken.items():
        path = os.path.join(t.tmp, re.sub(r"\W+", "_", what) + ".json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(bad, f)
        rc, _, failed, out = validate(path)
        check(rc != 0 and failed >= 1, "the validator accepted a document with %s" % what, out)


@test(timeout=180)
def test_405_allow_lists_the_documented_methods(t):
    w = suite_world()
    doc = load_doc()
    problems = []
    for p in doc["paths"]:
        path = concrete(p)
        want = set()
        for q, item in doc["paths"].items():
            if matches(q, path):
                want |= {v.upper() for v in VERBS if v in item}
        # PATCH: a method no route of the server registers.
        r = w.request("PATCH", path, auth=False)
        if r.status != 405 or r.error_code != "METHOD_NOT_ALLOWED":
            problems.append("%s: PATCH answered %r" % (path, r))
            continue
        allow = {m.strip() for m in r.headers.get("allow", "").split(",") if m.strip()}
        if allow != want:
            problems.append("%s: Allow %r, document %r" % (path, sorted(allow), sorted(want)))
    check(not problems, "%d paths differ from the document" % len(problems), "\n".join(problems))


@test(timeout=180)
def test_auth_levels_answer_as_documented(t):
    w = suite_world()
    doc = load_doc()
    problems = []
    for p, v, op in operations(doc):
        sec = op.get("security", doc.get("security"))
        names = {n for req in sec for n in req}
        path = concrete(p)
        r = w.request(v.upper(), path, auth=False)
        if not names:
            # Public: whatever it answers (a webhook may refuse a missing
            # signature), it never asks for the API's credentials.
            if r.error_code == "UNAUTHORIZED":
                problems.append("%s %s is public but answered %r" % (v, p, r))
            continue
        if r.status != 401 or r.error_code != "UNAUTHORIZED":
            problems.append("%s %s without credentials: %r" % (v, p, r))
        elif r.headers.get("www-authenticate") != 'Bearer realm="aurora"':
            problems.append("%s %s: WWW-Authenticate %r" % (v, p, r.headers.get("www-authenticate")))
        # The internal secret without X-User-ID tells the two levels apart without
        # running an API handler: API routes need a user (401), internal ones do not.
        r = w.request(v.upper(), path, auth=False, headers={"X-Internal-Secret": w.secret})
        if names == {"internalSecret"}:
            if r.status == 401:
                problems.append("%s %s (internal) refused the internal secret: %r" % (v, p, r))
            r = w.request(v.upper(), path)  # the API key: not enough here
            if r.status != 401:
                problems.append("%s %s (internal only) accepted an API key: %r" % (v, p, r))
        elif r.status != 401:
            problems.append("%s %s (API key or internal secret + X-User-ID) ran without a "
                            "user: %r" % (v, p, r))
    check(not problems, "%d operations differ from the document" % len(problems), "\n".join(problems))


@test(timeout=60)
def test_request_id_echoed_or_generated(t):
    w = suite_world()
    given = "req-1.A_b-" + "x" * 100
    for method, path, auth in (("GET", "/api/me", True), ("GET", "/api/me", False),
                               ("GET", "/no/such/route", False), ("PATCH", "/api/me", False)):
        r = w.request(method, path, auth=auth, headers={"X-Request-ID": given})
        eq(r.headers.get("x-request-id"), given, "%s %s (%d): X-Request-ID" % (method, path, r.status))
    for bad in ("x" * 129, "has space", "semi;colon", "é"):
        r = w.request("GET", "/api/me", headers={"X-Request-ID": bad.encode("utf-8").decode("latin-1")})
        got = r.headers.get("x-request-id", "")
        check(got and got != bad and re.fullmatch(r"[A-Za-z0-9._-]{1,128}", got),
              "an invalid X-Request-ID %r must be replaced by a generated one, got %r" % (bad, got))
    a = w.get("/api/me").headers.get("x-request-id")
    b = w.get("/api/me").headers.get("x-request-id")
    check(a and b and a != b, "generated request ids must differ", a, b)


@test(timeout=60)
def test_probes_answer_as_documented(t):
    w = suite_world()
    doc = load_doc()
    r = w.get("/health", auth=False)
    eq((r.status, r.get("status")), (200, "ok"), "/health")
    r = w.get("/metrics", auth=False)
    eq(r.status, 200, "/metrics")
    check(r.headers.get("content-type", "").startswith("text/plain"), "/metrics content type", r.headers)
    check(b"# TYPE " in r.body, "/metrics is Prometheus text", r.body[:200])
    ready = doc["components"]["schemas"]["Ready"]
    r = w.get("/ready", auth=False)
    eq(r.status, 200, "/ready")
    for k in ready["required"]:
        check(r.get(k) in ready["properties"][k]["enum"], "/ready %s=%r not as documented" % (k, r.get(k)), r)
    me = doc["paths"]["/api/me"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    r = w.get("/api/me")
    eq(r.status, 200, "/api/me")
    extra = set(r.json) - set(me["properties"])
    check(not extra, "/api/me answers fields the document lacks: %s" % sorted(extra), r)


def resolve(doc, s):
    for _ in range(10):
        if not isinstance(s, dict) or "$ref" not in s:
            return s
        node = doc
        for part in s["$ref"].lstrip("#/").split("/"):
            node = node[part]
        s = node
    return s


def documented_keys(doc, s):
    """The property names a schema (with its allOf parts) documents, or None when it
    leaves the object free-form."""
    s = resolve(doc, s)
    if "allOf" in s:
        keys = set()
        for part in s["allOf"]:
            k = documented_keys(doc, part)
            if k is None:
                return None
            keys |= k
        return keys
    if s.get("type") == "object" and "properties" not in s:
        return None
    return set(s.get("properties", {}))


def conform(doc, value, s, where, problems, whole=True):
    """Checks value against the document's schema s: types, nullable, enum, required,
    and no member the schema does not document (the answer says nothing unwritten)."""
    s = resolve(doc, s)
    if value is None:
        if not s.get("nullable") and "allOf" not in s:
            problems.append("%s: null, not nullable" % where)
        return
    for part in s.get("allOf", []):
        conform(doc, value, part, where, problems, whole=False)
    t = s.get("type")
    types = {"string": str, "boolean": bool, "array": list, "object": dict}
    if t in types and not isinstance(value, types[t]):
        problems.append("%s: %r is not a %s" % (where, value, t))
        return
    if t in ("integer", "number") and (isinstance(value, bool) or not isinstance(value, (int, float))
                                       or (t == "integer" and value != int(value))):
        problems.append("%s: %r is not an %s" % (where, value, t))
        return
    if "enum" in s and value not in s["enum"]:
        problems.append("%s: %r not in %r" % (where, value, s["enum"]))
    if isinstance(value, dict):
        keys = documented_keys(doc, s) if whole else None  # allOf parts: the whole judges
        if keys is not None:
            for k in sorted(set(value) - keys):
                problems.append("%s: undocumented member %s" % (where, k))
        for k in s.get("required", []):
            if k not in value:
                problems.append("%s: required member %s missing" % (where, k))
        for k, sub in s.get("properties", {}).items():
            if k in value:
                conform(doc, value[k], sub, "%s.%s" % (where, k), problems)
    if isinstance(value, list) and "items" in s:
        for i, item in enumerate(value[:20]):
            conform(doc, item, s["items"], "%s[%d]" % (where, i), problems)


def check_answer(doc, r, method, pattern, problems):
    op = doc["paths"][pattern][method]
    resp = resolve(doc, op["responses"].get(str(r.status)))
    what = "%s %s %d" % (method.upper(), pattern, r.status)
    if resp is None:
        problems.append("%s: status not documented (%s)" % (what, sorted(op["responses"])))
        return
    content = resp.get("content", {}).get("application/json")
    if content is None:
        return
    if r.json is None:
        problems.append("%s: not JSON: %r" % (what, r.body[:200]))
        return
    conform(doc, r.json, content["schema"], what, problems)


@test(timeout=180)
def test_core_answers_match_the_schemas(t):
    """Tokens, connections (with a live agent's session), kubectl (a command run and one
    refused by the agent's policy), usage, audit, incidents: each answer has exactly the
    members, types and enums the document gives it, with a documented status."""
    w = suite_world()
    doc = load_doc()
    problems = []

    def call(method, pattern, path=None, body=None, **kw):
        r = w.request(method.upper(), path or pattern, body, **kw)
        check_answer(doc, r, method, pattern, problems)
        return r

    tok = call("post", "/api/kubectl/tokens", body={"cluster_name": "oapi", "expires_days": 2})
    eq(tok.status, 201, "token created")
    w.start_agent(tok.get("token"))
    w.wait_connection(tok.get("cluster_id"))
    cid = tok.get("cluster_id")
    rot = call("post", "/api/kubectl/tokens", body={"cluster_id": cid})
    eq((rot.status, rot.get("cluster_id"), rot.get("rotated")), (201, cid, True), "rotation")
    r = call("post", "/api/kubectl/tokens", body={"cluster_id": cid[:-1] + ("1" if cid[-1] == "0" else "0")})
    eq((r.status, r.error_code), (404, "CLUSTER_NOT_FOUND"), "rotation of an unknown cluster")
    call("get", "/api/kubectl/tokens")
    r = call("get", "/api/kubectl/connections")
    mine = [c for c in r.get("connections", []) if c.get("cluster_id") == cid]
    check(mine and mine[0].get("sessions"), "the connected agent's session is listed", r)
    kpath = "/api/clusters/%s/kubectl" % cid
    r = call("post", "/api/clusters/{cluster_id}/kubectl", kpath, {"args": ["get", "namespaces"]})
    eq(r.status, 200, "kubectl ran")
    r = call("post", "/api/clusters/{cluster_id}/kubectl", kpath,
             {"args": ["delete", "pod", "x"], "timeout": 30})
    eq((r.status, r.get("error_code"), r.get("return_code")), (200, "POLICY_DENIED", 126),
       "a write refused by the default (readonly) agent policy")
    r = call("post", "/api/clusters/{cluster_id}/kubectl", kpath, {"args": ["get"], "timeout": 3601})
    eq((r.status, r.error_code), (400, "BAD_REQUEST"), "timeout over AURORA_EXEC_MAX_TIMEOUT")
    call("get", "/api/exec/usage")
    r = call("get", "/api/audit", "/api/audit?cluster_id=%s&limit=1" % cid)
    check(r.get("entries") and r.get("next_cursor"), "two commands: a first page of one", r)
    # (the end is written just after the answer: awaited)
    wait_until(lambda: call("get", "/api/audit", "/api/audit?outcome=policy_denied&cluster_id=%s"
                            % cid).get("entries"), 20, 0.05, "the policy_denied audit row")
    r = call("get", "/api/audit", "/api/audit?outcome=policy_denied&cluster_id=%s" % cid)
    eq([e.get("argv") for e in r.get("entries", [])], [["kubectl", "delete", "pod", "x"]],
       "policy_denied audited, argv with the program first")
    call("get", "/api/me")
    call("get", "/api/connectors/status")
    alert = {"source": "oapi", "delivery_id": "d-%s" % cid[-8:], "fingerprint": "fp1",
             "state": "firing", "title": "disk full", "service": "checkout"}
    r = call("post", "/internal/incidents/alerts", body=alert, auth=False,
             headers={"X-Internal-Secret": w.secret, "X-Org-ID": w.org_id})
    eq(r.status, 201, "alert opened an incident")
    inc = r.get("incident_id")
    call("get", "/api/incidents")
    call("get", "/api/incidents/{id}", "/api/incidents/%s" % inc)
    call("post", "/api/incidents/{id}/resolve", "/api/incidents/%s/resolve" % inc)
    call("post", "/api/incidents/{id}/close", "/api/incidents/%s/close" % inc)
    r = call("post", "/api/incidents/{id}/resolve", "/api/incidents/%s/resolve" % inc)
    eq((r.status, r.error_code), (409, "INCIDENT_CLOSED"), "resolving a closed incident")
    call("delete", "/api/kubectl/tokens/{token_id}", "/api/kubectl/tokens/%s" % rot.get("token_id"))
    call("delete", "/api/kubectl/connections/{cluster_id}", "/api/kubectl/connections/%s" % cid)
    check(not problems, "%d answers differ from the document" % len(problems), "\n".join(problems))


@test(timeout=120)
def test_connector_status_answers_match_the_schemas(t):
    """Every connector's status route (store reads only: no provider is called) and
    the connector table answer what their schemas say, before anything is connected."""
    w = suite_world()
    doc = load_doc()
    problems = []
    routes = [p for p in doc["paths"] if p.endswith("/status") and "{" not in p]
    check(len(routes) >= 13, "status routes in the document", routes)
    for p in routes:
        r = w.get(p)
        if r.status != 200:
            problems.append("GET %s: %r" % (p, r))
            continue
        check_answer(doc, r, "get", p, problems)
        if r.get("connected") not in (None, False):
            problems.append("GET %s: connected before anything was connected: %r" % (p, r))
    check(not problems, "%d answers differ from the document" % len(problems), "\n".join(problems))


if __name__ == "__main__":
    main()
