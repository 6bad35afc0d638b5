/* fuzz_console_cookie.c — what the server reads out of a browser's request
 * headers for the web console before any store work (server/console_cookie.c
 * and console_static.c): the aurora_session cookie out of a Cookie header,
 * the Origin check of cookie writes, and which paths are console pages.
 *
 * Input: the Cookie header, then (after a NUL, if any) an Origin header
 * value, then (after a second NUL) a request path.
 *
 * Invariants:
 *  - FOUND: the value is exactly CONSOLE_SESSION_ID_LEN base64url characters
 *    and appears in the header right after "aurora_session" and '=' (white
 *    space around it allowed); the header names aurora_session once;
 *  - MALFORMED always says why; ABSENT leaves the output empty and then no
 *    ';'-separated pair of the header is named aurora_session;
 *  - an origin console_url_origin accepts is allowed against itself and
 *    against nothing else (one other origin given); "null" never is;
 *  - the sign-in bucket of a peer (the Origin bytes, as any text) fits and
 *    is the same every time;
 *  - a console page is "/", or one segment, or two with no "." / ".."
 *    second segment, and never contains '%', '?' or a control character. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "console_cookie.h"
#include "console_static.h"
#include "fuzz_util.h"

static int b64url(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_';
}

/* How many ';'-separated pairs of h are named aurora_session (OWS-trimmed). */
static int pairs_named_session(const char *h)
{
    int n = 0;
    const char *name = CONSOLE_COOKIE_NAME;
    size_t nl = strlen(name);
    for (const char *p = h; *p;) {
        while (*p == ';' || *p == ' ' || *p == '\t')
            p++;
        const char *e = p + strcspn(p, ";");
        const char *eq = memchr(p, '=', (size_t)(e - p));
        if (eq) {
            const char *ne = eq;
            while (ne > p && (ne[-1] == ' ' || ne[-1] == '\t'))
                ne--;
            if ((size_t)(ne - p) == nl && !memcmp(p, name, nl))
                n++;
        }
        p = e;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = fuzz_strndup(data, size);
    if (!in)
        return 0;
    const char *cookie = in;
    size_t cl = strlen(cookie);
    const char *origin = cl < size ? in + cl + 1 : "";
    size_t ol = cl < size ? strlen(origin) : 0;
    const char *path = cl + 1 + ol < size ? origin + ol + 1 : "/";

    char v[CONSOLE_SESSION_ID_LEN + 1];
    const char *why = NULL;
    int rc = console_cookie_session(cookie, 0, v, sizeof(v), &why); /* the plain-HTTP name */
    int named = pairs_named_session(cookie);
    if (rc == CONSOLE_COOKIE_FOUND) {
        FUZZ_CHECK(strlen(v) == CONSOLE_SESSION_ID_LEN, "found a value of %zu chars", strlen(v));
        for (size_t i = 0; i < CONSOLE_SESSION_ID_LEN; i++)
            FUZZ_CHECK(b64url(v[i]), "found a value with %#x", (unsigned char)v[i]);
        FUZZ_CHECK(strstr(cookie, v), "the value is not in the header");
        FUZZ_CHECK(named == 1, "found with %d pairs named aurora_session", named);
    } else if (rc == CONSOLE_COOKIE_MALFORMED) {
        FUZZ_CHECK(why && *why, "malformed without a reason");
        FUZZ_CHECK(named >= 1, "malformed without a pair named aurora_session");
    } else {
        FUZZ_CHECK(rc == CONSOLE_COOKIE_ABSENT, "unknown result %d", rc);
        FUZZ_CHECK(!v[0], "absent but the output is not empty");
        FUZZ_CHECK(named == 0, "absent with %d pairs named aurora_session", named);
    }

    char o[300];
    if (console_url_origin(origin, o, sizeof(o)) == 0) {
        const char *self[] = { o };
        const char *other[] = { "https://aurora.fuzz.invalid:1" };
        int exact = strlen(o) == ol;
        FUZZ_CHECK(console_origin_allowed(origin, self, 1) == exact,
                   "origin %s vs its own origin %s", origin, o);
        if (strcmp(o, other[0]))
            FUZZ_CHECK(!console_origin_allowed(origin, other, 1), "%s allowed as another", origin);
    }
    const char *any[] = { "null", o };
    FUZZ_CHECK(!console_origin_allowed("null", any, 2), "null allowed");

    char bucket[48], again[48];
    console_peer_bucket(origin, bucket, sizeof(bucket));
    console_peer_bucket(origin, again, sizeof(again));
    FUZZ_CHECK(strlen(bucket) < sizeof(bucket) && !strcmp(bucket, again), "peer bucket of %s",
               origin);

    if (console_is_page(path)) {
        FUZZ_CHECK(path[0] == '/', "page %s without a leading /", path);
        for (const char *p = path; *p; p++)
            FUZZ_CHECK(!strchr("%?#\\", *p) && !iscntrl((unsigned char)*p), "page %s", path);
        FUZZ_CHECK(!strstr(path, "/../") && !strstr(path, "//"), "page %s", path);
        size_t n = strlen(path);
        FUZZ_CHECK(!(n >= 3 && !strcmp(path + n - 3, "/..")) &&
                       !(n >= 2 && !strcmp(path + n - 2, "/.")),
                   "page %s ends in a dot segment", path);
    }
    free(in);
    return 0;
}
