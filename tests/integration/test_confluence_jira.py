#!/usr/bin/env python3
"""test_confluence_jira.py — Confluence and Jira reads (and Jira comments) as a
user connected them, Data Center (PAT) and Cloud (3LO): pages by full URL,
viewpage URL, /display/ URL, short links (Data Center resolved; Cloud tried by
following the site's redirect with the user's token, else the guide's "Unable
to parse Confluence page ID from URL"), URLs of another site, CQL search with
its cursor, JQL search over pages, issues with ADF text, comments gated by the
Jira permission tier (Read Only: refused before anything is sent), bad input
on every route.

Peers: tests/fixtures/atlassian_api.mjs (3LO and accessible-resources, as in
test_atlassian.py) and tests/fixtures/atlassian_products.mjs (the Confluence and
Jira REST APIs, Cloud through the /ex/ gateway and Data Center under a
context path, plus the Cloud site's short links).
"""
import os
import sys
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (T, World, _SUITE, HttpFixture, check, contains, eq, https_request,  # noqa: E402
                     main, rand_tag, test)

CLIENT_SECRET = "atl-secret-" + rand_tag(8)
CONF_PAT = "NjM2ODQ" + rand_tag(24)
JIRA_PAT = "MzE0MTU" + rand_tag(24)
_env = {}


def world():
    if _SUITE["world"] is None:
        if _SUITE["t"] is None:
            _SUITE["t"] = T(_SUITE["root"], "suite")
        st = _SUITE["t"]
        auth = HttpFixture(st, "atlassian", "atlassian_api.mjs")
        prod = HttpFixture(st, "products", "atlassian_products.mjs")
        w = World(st, "suite-server", start=False)
        w.extra_env.update({
            "ATLASSIAN_CLIENT_ID": "atl-client", "ATLASSIAN_CLIENT_SECRET": CLIENT_SECRET,
            "ATLASSIAN_REDIRECT_URI": "https://127.0.0.1:%d/atlassian/callback" % w.port,
            "ATLASSIAN_AUTH_URL": auth.base + "/authorize",
            "ATLASSIAN_TOKEN_URL": auth.base + "/oauth/token",
            "ATLASSIAN_API_BASE_URL": prod.base,
            "NEXT_PUBLIC_ENABLE_CONFLUENCE": "true", "NEXT_PUBLIC_ENABLE_JIRA": "true",
            "ATLASSIAN_DC_ALLOW_LOOPBACK": "true",
            # no test here waits for a provider timeout: ample, for a loaded machine
            "AURORA_PROVIDER_TIMEOUT_MS": "30000",
        })
        w.start()
        w.bootstrap()
        _env.update(auth=auth, prod=prod)
        _SUITE["world"] = w
    w = _SUITE["world"]
    auth, prod = _env["auth"], _env["prod"]
    auth.config(client_id="atl-client", client_secret=CLIENT_SECRET,
                redirect_uris=[w.extra_env["ATLASSIAN_REDIRECT_URI"]], mode="both", expires_in=3600,
                token_delay_ms=0, dc_delay_ms=0, authorize_error=None, token_error=None, pats={},
                site_url=prod.base + "/cloudsite")
    prod.config(auth=auth.base, pats=[CONF_PAT, JIRA_PAT])
    return w, prod


def dc_connect(w, key, product, pat):
    _, prod = world()
    r = w.post("/atlassian/connect", {"product": product, "base_url": prod.base + "/dc", "pat": pat,
                                      "allow_http": True}, key=key)
    eq(r.status, 200, "Data Center connect of %s (%r)" % (product, r))


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


def cloud_connect(w, key):
    r = w.frontend_get("/atlassian/login?products=confluence,jira", key=key)
    eq(r.status, 302, "login (%r)" % r)
    try:
        a = urllib.request.build_opener(NoRedirect).open(r.headers["location"], timeout=10)
    except urllib.error.HTTPError as e:
        a = e
    with a:
        cb = urllib.parse.urlsplit(a.headers["Location"])
    c = https_request(w.port, w.ctx, "GET", cb.path + "?" + cb.query)
    eq(c.status, 302, "callback (%r)" % c)


def page(w, key, **q):
    return w.get("/confluence/page?" + urllib.parse.urlencode(q), key=key)


def calls(prod, prefix):
    return [c for c in prod.stats()["calls"] if c["path"].startswith(prefix)]


# ---------------------------------------------------------------------------
@test
def test_dc_pages_by_url(t):
    w, prod = world()
    _, _, key = w.new_org()
    dc_connect(w, key, "confluence", CONF_PAT)
    base = prod.base + "/dc"
    for url, what in ((base + "/pages/viewpage.action?pageId=123456", "viewpage URL"),
                      (base + "/spaces/OPS/pages/123456/Disk+full+runbook", "spaces URL"),
                      (base + "/display/OPS/Disk+full+runbook", "/display/ URL"),
                      (base + "/x/QQ", "Data Center short link")):
        r = page(w, key, url=url)
        eq(r.status, 200, "%s (%r)" % (what, r))
        eq((r.json["id"], r.json["title"], r.json["space_key"], r.json["version"]),
           ("123456", "Disk full runbook", "OPS", 7), what)
    eq(r.json["body_text"], "Disk full\nCheck /var & rotate logs.", "storage as text")
    contains(r.json["body_storage"], "<strong>/var</strong>", "storage kept")
    eq(r.json["url"], base + "/display/OPS/Disk+full+runbook", "web URL on the site")
    r = page(w, key, id="123456")
    eq(r.status, 200, "by id (%r)" % r)
    r = page(w, key, id="999")
    eq((r.status, r.get("error_code")), (404, "CONFLUENCE_PAGE_NOT_FOUND"), "unknown page (%r)" % r)
    r = page(w, key, url="https://confluence.other.example/pages/viewpage.action?pageId=123456")
    eq((r.status, r.get("error_code")), (400, "CONFLUENCE_URL_MISMATCH"), "another site (%r)" % r)
    contains(r.get("error"), "Confluence page URL does not match configured base URL", "the guide's message")
    r = page(w, key, url=base + "/x/NOPE")
    eq((r.status, r.get("error_code")), (400, "CONFLUENCE_URL_UNPARSABLE"), "dead short link (%r)" % r)


@test
def test_cloud_pages_and_short_links(t):
    w, prod = world()
    _, _, key = w.new_org()
    cloud_connect(w, key)
    site = prod.base + "/cloudsite"
    r = page(w, key, url=site + "/wiki/spaces/OPS/pages/123456/Disk+full+runbook")
    eq((r.status, r.json.get("id") if r.json else None), (200, "123456"), "Cloud full URL (%r)" % r)
    eq(r.json["url"], site + "/wiki/spaces/OPS/pages/123456/Disk+full+runbook", "web URL")
    check(any(c["path"].endswith("/wiki/api/v2/pages/123456") for c in calls(prod, "/ex/confluence/")),
          "through the gateway's v2 API")
    r = page(w, key, url=site + "/wiki/pages/viewpage.action?pageId=123456")
    eq(r.status, 200, "Cloud viewpage URL (%r)" % r)
    for code in ("ABC123", "HOP1"):
        r = page(w, key, url=site + "/wiki/x/" + code)
        eq((r.status, r.json.get("id")), (200, "123456"), "Cloud short link %s followed (%r)" % (code, r))
    for code in ("DEAD", "AWAY"):
        r = page(w, key, url=site + "/wiki/x/" + code)
        eq((r.status, r.get("error_code")), (400, "CONFLUENCE_URL_UNPARSABLE"), "short link %s (%r)" % (code, r))
        contains(r.get("error"), "Unable to parse Confluence page ID from URL", "the guide's message")
        contains(r.get("error"), "Use full page URL instead of short link (Cloud only)", "the guide's fix")
    r = page(w, key, url="https://acme.atlassian.net/wiki/x/ABC123")
    eq((r.status, r.get("error_code")), (400, "CONFLUENCE_URL_MISMATCH"), "not the connected site (%r)" % r)


@test
def test_search_with_cursor(t):
    w, prod = world()
    _, _, key_dc = w.new_org()
    dc_connect(w, key_dc, "confluence", CONF_PAT)
    _, _, key_cloud = w.new_org()
    cloud_connect(w, key_cloud)
    for key, what in ((key_dc, "Data Center"), (key_cloud, "Cloud")):
        seen, cursor = [], None
        for _ in range(5):
            q = {"cql": 'type = page AND text ~ "runbook"', "limit": 2}
            if cursor:
                q["cursor"] = cursor
            r = w.get("/confluence/search?" + urllib.parse.urlencode(q), key=key)
            eq(r.status, 200, "%s search (%r)" % (what, r))
            seen += [x["id"] for x in r.json["results"]]
            cursor = r.json["next_cursor"]
            if not cursor:
                break
        eq(seen, ["1000", "1001", "1002", "1003", "1004"], "%s: every result once, in order" % what)
        eq(r.json["results"][0]["excerpt"], "@@@hl@@@Runbook 4@@@endhl@@@ & more", "excerpt as text")
    r = w.get("/confluence/search?cql=bad+syntax", key=key_dc)
    eq((r.status, r.get("error_code")), (400, "CONFLUENCE_BAD_REQUEST"), "CQL error passed on (%r)" % r)
    contains(r.get("error"), "Could not parse cql", "Confluence's words")


@test
def test_jira_search_issue_and_tier(t):
    w, prod = world()
    _, _, key_dc = w.new_org()
    dc_connect(w, key_dc, "jira", JIRA_PAT)
    _, _, key_cloud = w.new_org()
    cloud_connect(w, key_cloud)
    for key, what in ((key_dc, "Data Center"), (key_cloud, "Cloud")):
        r = w.get("/jira/search?" + urllib.parse.urlencode({"jql": "project = OPS", "max": 5}), key=key)
        eq(r.status, 200, "%s JQL (%r)" % (what, r))
        eq(([i["key"] for i in r.json["issues"]], r.json["truncated"]),
           (["OPS-1", "OPS-2", "OPS-3", "OPS-4", "OPS-5"], True), "%s: pages joined up to max" % what)
        r = w.get("/jira/search?jql=project+%3D+OPS", key=key)
        eq((r.json["count"], r.json["truncated"]), (7, False), "%s: every page" % what)
        i = w.get("/jira/issue/OPS-2", key=key)
        eq(i.status, 200, "%s issue (%r)" % (what, i))
        eq((i.json["summary"], i.json["status"], i.json["assignee"], i.json["description"]),
           ("Checkout errors 2", "In Progress", "Jane Doe", "Checkout fails\nsecond line"
            + ("\nitem" if what == "Cloud" else "")), "%s issue fields (ADF/text)" % what)
        # Read Only (the default): a comment is refused and nothing reaches Jira.
        before = len(prod.stats()["comments"])
        r = w.post("/jira/issue/OPS-2/comment", {"body": "Aurora: root cause found"}, key=key)
        eq((r.status, r.get("error_code")), (403, "JIRA_READ_ONLY"), "%s read-only comment (%r)" % (what, r))
        eq(len(prod.stats()["comments"]), before, "nothing sent to Jira")
        r = w.request("PUT", "/jira/permissions", {"tier": "full_access"}, key=key)
        eq(r.status, 200, "tier to Full Access (%r)" % r)
        r = w.post("/jira/issue/OPS-2/comment", {"body": "Aurora: root cause found\nsee runbook"}, key=key)
        eq((r.status, r.get("key")), (201, "OPS-2"), "%s comment with Full Access (%r)" % (what, r))
        body = prod.stats()["comments"][-1]["body"]
        if what == "Cloud":
            eq([p["content"][0]["text"] for p in body["content"]], ["Aurora: root cause found", "see runbook"],
               "an ADF document, one paragraph per line")
        else:
            eq(body, "Aurora: root cause found\nsee runbook", "plain text for v2")
        i = w.get("/jira/issue/OPS-2", key=key)
        contains(i.json["comments"][-1]["body"], "Aurora: root cause found", "%s: the comment reads back" % what)
    r = w.get("/jira/search?jql=bad+syntax", key=key_dc)
    eq((r.status, r.get("error_code")), (400, "JIRA_BAD_REQUEST"), "JQL error passed on (%r)" % r)
    contains(r.get("error"), "Error in the JQL Query", "Jira's words")


@test
def test_bad_input_every_route(t):
    w, prod = world()
    _, _, key = w.new_org()
    # not connected: 404 from every route
    for path in ("/confluence/page?id=1", "/confluence/search?cql=x", "/jira/search?jql=x", "/jira/issue/OPS-1"):
        eq(w.get(path, key=key).status, 404, "%s before connecting" % path)
    eq(w.post("/jira/issue/OPS-1/comment", {"body": "x"}, key=key).status, 404, "comment before connecting")
    dc_connect(w, key, "confluence", CONF_PAT)
    dc_connect(w, key, "jira", JIRA_PAT)
    w.request("PUT", "/jira/permissions", {"tier": "full_access"}, key=key)
    n0 = len(prod.stats()["calls"])
    for path, what in (("/confluence/page", "neither url nor id"),
                       ("/confluence/page?url=x&id=1", "both"),
                       ("/confluence/page?id=12a", "id not digits"),
                       ("/confluence/page?id=123456789012345678901", "id too long"),
                       ("/confluence/page?url=", "empty url"),
                       ("/confluence/page?url=" + "a" * 5000, "url too long"),
                       ("/confluence/search", "no cql"),
                       ("/confluence/search?cql=" + "a" * 9000, "cql too long"),
                       ("/confluence/search?cql=x&limit=0", "limit 0"),
                       ("/confluence/search?cql=x&limit=101", "limit too big"),
                       ("/confluence/search?cql=x&cursor=%3Cscript%3E", "forged cursor"),
                       ("/jira/search", "no jql"),
                       ("/jira/search?jql=" + "a" * 9000, "jql too long"),
                       ("/jira/search?jql=x&max=1001", "max too big"),
                       ("/jira/search?jql=x&max=abc", "max not a number"),
                       ("/jira/search?jql=x&fields=summary;drop", "fields with punctuation"),
                       ("/jira/issue/ops-1", "lowercase key"),
                       ("/jira/issue/OPS-", "key without number"),
                       ("/jira/issue/OPS-1x", "key with junk"),
                       ("/jira/issue/" + "A" * 70 + "-1", "key too long")):
        r = w.get(path, key=key)
        eq(r.status, 400, "%s (%r)" % (what, r))
    for body, what in (({}, "no body"), ({"body": ""}, "empty"), ({"body": 5}, "not a string"),
                       ({"body": "x" * 33000}, "too long")):
        r = w.post("/jira/issue/OPS-1/comment", body, key=key)
        eq(r.status, 400, "comment %s (%r)" % (what, r))
    r = https_request(w.port, w.ctx, "POST", "/jira/issue/OPS-1/comment", b'{"body": "x"',
                      {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    eq(r.status, 400, "truncated JSON (%r)" % r)
    eq(len(prod.stats()["calls"]), n0, "no bad request reached Atlassian")
    eq(w.get("/jira/issue/OPS-99", key=key).get("error_code"), "JIRA_ISSUE_NOT_FOUND", "unknown issue")
    # another user's connection is not usable
    _, _, other = w.new_org()
    eq(w.get("/confluence/page?id=123456", key=other).status, 404, "another org's user")
    eq(w.get("/health", auth=False).status, 200, "still serving")


@test
def test_pat_revoked_is_expired(t):
    w, prod = world()
    _, _, key = w.new_org()
    dc_connect(w, key, "jira", JIRA_PAT)
    prod.config(pats=[CONF_PAT])  # the Jira PAT was revoked in Jira
    r = w.get("/jira/issue/OPS-1", key=key)
    eq((r.status, r.get("error_code")), (401, "JIRA_CREDENTIALS_EXPIRED"), "revoked PAT (%r)" % r)
    contains(r.get("error"), "Jira credentials expired", "the guide's message")


@test
def test_cloud_reconnect_and_disconnect_through_another_replica(t):
    """A grant replaced or removed through another replica (same store and
    secrets) must not live on in this replica's token cache.  The Cloud
    access token was cached under the org and user alone and only the
    replica that took the callback forgot it: after a reconnect there this
    one went on reading Confluence and Jira with the replaced grant's token
    for up to its hour (found in review)."""
    w, prod = world()
    _, _, key = w.new_org()
    cloud_connect(w, key)
    url = prod.base + "/cloudsite/wiki/spaces/OPS/pages/123456/Disk+full+runbook"
    eq(page(w, key, url=url).status, 200, "a read caches the first grant's token")
    first = calls(prod, "/ex/confluence/")[-1]["token"]
    r2 = w.replica(t)
    cloud_connect(r2, key)
    for what, get, prefix in (("Confluence", lambda: page(w, key, url=url), "/ex/confluence/"),
                              ("Jira", lambda: w.get("/jira/issue/OPS-2", key=key), "/ex/jira/")):
        r = get()
        eq(r.status, 200, "%s on this replica after the reconnect (%r)" % (what, r))
        got = calls(prod, prefix)[-1]["token"]
        check(got not in (None, first), "%s: not the replaced grant's token" % what, got)
    r = r2.request("DELETE", "/api/connectors/atlassian", key=key)
    eq(r.status, 200, "disconnect through the other replica (%r)" % r)
    n0 = len(prod.stats()["calls"])
    r = page(w, key, url=url)
    eq(r.status, 404, "this replica after the other's disconnect (%r)" % r)
    eq(len(prod.stats()["calls"]), n0, "nothing sent to Atlassian for a removed connection")


if __name__ == "__main__":
    main()
