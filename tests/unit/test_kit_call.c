/* test_kit_call.c — the connector kit's provider calls
 * (server/connectors/kit_call.c) and the response-header capture of
 * server/http_client.c it stands on.
 *
 * Two halves: the parsers on their own (Link header, Retry-After,
 * rate-limit headers, JSON cursor paths, URLs under a base), then whole
 * calls against tests/fixtures/provider_fixture.py, a local stand-in that
 * answers the way the documented provider APIs do (GitHub's Link pagination,
 * rate-limit 403 and ETags, Sentry's Link with results=, Slack's cursor and
 * Retry-After, Datadog's delta X-RateLimit-Reset, the IETF RateLimit
 * headers).  It listens on 127.0.0.1 only; nothing else is contacted.
 * Attempts are counted by the kit and by the fixture; time is asserted only
 * as generous bounds (a lower bound shows a provider's wait was honoured). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "http_client.h"
#include "kit_call.h"
#include "proc_harness.h"

/* ---- helpers -------------------------------------------------------------------- */

/* A response whose captured headers are `pairs` {name, value, …, NULL}. */
static void fake_resp(http_client_resp *r, long status, const char *const *pairs)
{
    memset(r, 0, sizeof(*r));
    r->status = status;
    size_t n = 0;
    for (size_t i = 0; pairs[i]; i += 2)
        n += strlen(pairs[i]) + strlen(pairs[i + 1]) + 2;
    r->headers = malloc(n + 1);
    assert_non_null(r->headers);
    size_t k = 0;
    for (size_t i = 0; pairs[i]; i += 2) {
        memcpy(r->headers + k, pairs[i], strlen(pairs[i]) + 1);
        k += strlen(pairs[i]) + 1;
        memcpy(r->headers + k, pairs[i + 1], strlen(pairs[i + 1]) + 1);
        k += strlen(pairs[i + 1]) + 1;
    }
    r->headers[k] = '\0';
    r->headers_len = k;
}

static void imf_date(time_t t, char *out, size_t cap)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* ---- Link header ------------------------------------------------------------------- */

static void test_link_github(void **state)
{
    (void)state;
    char out[512];
    const char *v = "<https://api.github.com/repositories/1/issues?page=2>; rel=\"next\", "
                    "<https://api.github.com/repositories/1/issues?page=5>; rel=\"last\"";
    assert_int_equal(kit_link_next(v, NULL, out, sizeof(out)), 1);
    assert_string_equal(out, "https://api.github.com/repositories/1/issues?page=2");
    /* next after others, several params, no blank after the comma */
    v = "<https://h/x?page=1>; rel=\"prev\",<https://h/x?page=3>;rel=\"next\"";
    assert_int_equal(kit_link_next(v, NULL, out, sizeof(out)), 1);
    assert_string_equal(out, "https://h/x?page=3");
    /* only prev/first: the last page */
    v = "<https://h/x?page=1>; rel=\"prev\", <https://h/x?page=1>; rel=\"first\"";
    assert_int_equal(kit_link_next(v, NULL, out, sizeof(out)), 0);
    assert_int_equal(kit_link_next("", NULL, out, sizeof(out)), 0);
    assert_int_equal(kit_link_next(NULL, NULL, out, sizeof(out)), 0);
}

static void test_link_sentry_results(void **state)
{
    (void)state;
    char out[512];
    /* Sentry always names rel="next"; results="false" says there is none */
    const char *more =
        "<https://sentry.io/api/0/organizations/acme/issues/?&cursor=0:0:1>; rel=\"previous\"; "
        "results=\"false\"; cursor=\"0:0:1\", "
        "<https://sentry.io/api/0/organizations/acme/issues/?&cursor=0:100:0>; rel=\"next\"; "
        "results=\"true\"; cursor=\"0:100:0\"";
    assert_int_equal(kit_link_next(more, NULL, out, sizeof(out)), 1);
    assert_string_equal(out, "https://sentry.io/api/0/organizations/acme/issues/?&cursor=0:100:0");
    const char *last =
        "<https://sentry.io/api/0/x/?&cursor=0:0:1>; rel=\"previous\"; results=\"true\"; "
        "cursor=\"0:0:1\", <https://sentry.io/api/0/x/?&cursor=0:200:0>; rel=\"next\"; "
        "results=\"false\"; cursor=\"0:200:0\"";
    assert_int_equal(kit_link_next(last, NULL, out, sizeof(out)), 0);
}

static void test_link_params(void **state)
{
    (void)state;
    char out[512];
    /* quoted values hide commas, semicolons and escaped quotes */
    const char *v = "<https://h/a>; title=\"a, b; <c> \\\"d\\\"\"; rel=\"prev\", "
                    "<https://h/b>; title=\"x,y\"; rel=\"next\"";
    assert_int_equal(kit_link_next(v, NULL, out, sizeof(out)), 1);
    assert_string_equal(out, "https://h/b");
    /* a rel list, an unquoted token, any case */
    assert_int_equal(kit_link_next("<https://h/c>; rel=\"prev next\"", NULL, out, sizeof(out)), 1);
    assert_string_equal(out, "https://h/c");
    assert_int_equal(kit_link_next("<https://h/d>; REL=Next", NULL, out, sizeof(out)), 1);
    assert_string_equal(out, "https://h/d");
    /* "nextpage" is not "next" */
    assert_int_equal(kit_link_next("<https://h/e>; rel=\"nextpage\"", NULL, out, sizeof(out)), 0);
    /* a relative reference is resolved against the page it came with */
    assert_int_equal(kit_link_next("</api/x?page=2>; rel=\"next\"", "https://h:8443/api/x?page=1",
                                   out, sizeof(out)),
                     1);
    assert_string_equal(out, "https://h:8443/api/x?page=2");
    assert_int_equal(kit_link_next("<?page=3>; rel=next", "https://h/api/x?page=2", out,
                                   sizeof(out)),
                     1);
    assert_string_equal(out, "https://h/api/x?page=3");
}

static void test_link_malformed(void **state)
{
    (void)state;
    char out[64];
    const char *bad[] = {
        "<https://h/a; rel=\"next\"",                  /* no '>' */
        "https://h/a; rel=\"next\"",                   /* no '<' */
        "<https://h/a> rel=\"next\"",                  /* no ';' */
        "<https://h/a>; rel=\"next",                   /* unterminated quote */
        "<https://h/a>; =next",                        /* no parameter name */
        "<https://h/a>; rel=",                         /* no value */
        "<>; rel=\"next\"",                            /* no target */
        "<https://h/a b>; rel=\"next\"",               /* a space in the URL */
        "<ftp://h/a>; rel=\"next\"",                   /* not http(s) */
        "<https://u:p@h/a>; rel=\"next\"",             /* credentials in the URL */
        "<https://h/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa>; rel=next",
        "</relative>; rel=\"next\"",                   /* relative with no context */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = kit_link_next(bad[i], NULL, out, sizeof(out));
        if (r != -1)
            fail_msg("row %zu: %d for %s", i, r, bad[i]);
    }
}

/* ---- Retry-After, dates, rate-limit headers ------------------------------------------ */

static void test_retry_after(void **state)
{
    (void)state;
    time_t now = 1700000000;
    assert_int_equal(kit_retry_after_s("120", now), 120);
    assert_int_equal(kit_retry_after_s(" 5 ", now), 5);
    assert_int_equal(kit_retry_after_s("0", now), 0);
    assert_int_equal(kit_retry_after_s("99999999999999999999999", now), KIT_WAIT_CAP_S);
    const char *garbage[] = { "", " ", "-5", "+5", "5s", "1.5", "0x10", "tomorrow", "5 6",
                              "Sun, 06 Nov 1994 08:49:37 PST", "Sun, 6 Nov 1994 08:49:37 GMT",
                              "Sun, 06 Nov 1994 08:49:37 GMT trailing", "Sun, 06 Foo 1994 08:49:37 GMT",
                              "Sun, 06 Nov 1994 25:49:37 GMT", "Sun, 32 Nov 1994 08:49:37 GMT", NULL };
    for (size_t i = 0; garbage[i]; i++)
        if (kit_retry_after_s(garbage[i], now) != -1)
            fail_msg("accepted \"%s\"", garbage[i]);
    assert_int_equal(kit_retry_after_s(NULL, now), -1);

    char d[64];
    imf_date(now + 30, d, sizeof(d));
    assert_int_equal(kit_retry_after_s(d, now), 30);
    imf_date(now - 30, d, sizeof(d));
    assert_int_equal(kit_retry_after_s(d, now), 0); /* in the past: now */
    imf_date(now + 10L * 86400, d, sizeof(d));
    assert_int_equal(kit_retry_after_s(d, now), KIT_WAIT_CAP_S);
}

static void test_http_dates(void **state)
{
    (void)state;
    /* RFC 9110 5.6.7's example in its three forms */
    const time_t t = 784111777;
    assert_int_equal(kit_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), t);
    assert_int_equal(kit_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), t);
    assert_int_equal(kit_http_date("Sun Nov  6 08:49:37 1994"), t);
    assert_int_equal(kit_http_date("Sun Nov 16 08:49:37 1994"), t + 10 * 86400);
    assert_int_equal(kit_http_date("Monday, 01-Jan-35 00:00:00 GMT"), 2051222400);
    assert_int_equal(kit_http_date("Sun Nov 6 08:49:37 1994"), -1);
    assert_int_equal(kit_http_date("Sunday, 06-Nov-1994 08:49:37 GMT"), -1);
    assert_int_equal(kit_http_date("Thu, 01 Jan 1960 00:00:00 GMT"), -1);
    assert_int_equal(kit_http_date(NULL), -1);
}

static void test_ratelimit_headers(void **state)
{
    (void)state;
    time_t now = 1700000000;
    http_client_resp r;
    char reset[32];
    snprintf(reset, sizeof(reset), "%ld", (long)now + 60);
    /* GitHub: epoch reset, applies when nothing remains */
    fake_resp(&r, 403, (const char *const[]){ "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", reset, NULL });
    assert_int_equal(kit_ratelimit_reset_s(&r, now), 60);
    http_client_resp_free(&r);
    fake_resp(&r, 200, (const char *const[]){ "X-RateLimit-Remaining", "12", "X-RateLimit-Reset", reset, NULL });
    assert_int_equal(kit_ratelimit_reset_s(&r, now), -1);
    http_client_resp_free(&r);
    /* header names in any case */
    fake_resp(&r, 403, (const char *const[]){ "x-ratelimit-remaining", "0", "x-ratelimit-reset", reset, NULL });
    assert_int_equal(kit_ratelimit_reset_s(&r, now), 60);
    http_client_resp_free(&r);
    /* a reset already past: now */
    snprintf(reset, sizeof(reset), "%ld", (long)now - 5);
    fake_resp(&r, 403, (const char *const[]){ "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", reset, NULL });
    assert_int_equal(kit_ratelimit_reset_s(&r, now), 0);
    http_client_resp_free(&r);
    /* Datadog: seconds until the reset */
    fake_resp(&r, 429, (const char *const[]){ "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "30", NULL });
    assert_int_equal(kit_ratelimit_reset_s(&r, now), 30);
    http_client_resp_free(&r);
    /* IETF draft: delta seconds, on a 429 or when nothing remains */
    fake_resp(&r, 429, (const char *const[]){ "RateLimit-Reset", "7", NULL });
    assert_int_equal(kit_ratelimit_reset_s(&r, now), 7);
    http_client_resp_free(&r);
    fake_resp(&r, 200, (const char *const[]){ "RateLimit-Remaining", "0", "RateLimit-Reset", "7", NULL });
    assert_int_equal(kit_ratelimit_reset_s(&r, now), 7);
    http_client_resp_free(&r);
    fake_resp(&r, 200, (const char *const[]){ "RateLimit-Remaining", "3", "RateLimit-Reset", "7", NULL });
    assert_int_equal(kit_ratelimit_reset_s(&r, now), -1);
    http_client_resp_free(&r);
    /* garbage */
    const char *bad[] = { "-1", "1e9", "soon", "", "12 34", NULL };
    for (size_t i = 0; bad[i]; i++) {
        fake_resp(&r, 429, (const char *const[]){ "X-RateLimit-Remaining", "0", "X-RateLimit-Reset",
                                                  bad[i], "RateLimit-Reset", bad[i], NULL });
        if (kit_ratelimit_reset_s(&r, now) != -1)
            fail_msg("accepted reset \"%s\"", bad[i]);
        http_client_resp_free(&r);
    }
    fake_resp(&r, 429, (const char *const[]){ "X-RateLimit-Remaining", "zero", "X-RateLimit-Reset", "30", NULL });
    assert_int_equal(kit_ratelimit_reset_s(&r, now), -1);
    http_client_resp_free(&r);
}

static void test_poll_delay(void **state)
{
    (void)state;
    kit_call_resp r;
    memset(&r, 0, sizeof(r));
    r.retry_after_s = r.rl_remaining = r.rl_reset_s = -1;
    assert_int_equal(kit_poll_delay_s(&r, 60, 3), 60);
    r.rl_remaining = 100;
    r.rl_reset_s = 1800;
    assert_int_equal(kit_poll_delay_s(&r, 60, 3), 60);  /* plenty left */
    r.rl_remaining = 2;
    assert_int_equal(kit_poll_delay_s(&r, 60, 3), 1800); /* not enough for a cycle */
    r.rl_reset_s = 10;
    assert_int_equal(kit_poll_delay_s(&r, 60, 3), 60);  /* resets before the next cycle */
    r.rl_remaining = -1;
    r.retry_after_s = 120;
    assert_int_equal(kit_poll_delay_s(&r, 60, 3), 120);
    r.retry_after_s = 10L * KIT_WAIT_CAP_S;
    assert_int_equal(kit_poll_delay_s(&r, 60, 3), KIT_WAIT_CAP_S);
}

/* ---- JSON paths and URLs ---------------------------------------------------------------- */

static void test_json_paths(void **state)
{
    (void)state;
    cJSON *j = cJSON_Parse("{\"ok\":true,\"response_metadata\":{\"next_cursor\":\"dXNlcjpVMEc5V0ZYTlo=\"},"
                           "\"meta\":{\"pagination\":{\"next_cursor\":null,\"n\":3}},"
                           "\"items\":[{\"id\":\"a\"},{\"id\":\"b\"}]}");
    assert_non_null(j);
    assert_string_equal(kit_json_path_string(j, "response_metadata.next_cursor"), "dXNlcjpVMEc5V0ZYTlo=");
    assert_null(kit_json_path_string(j, "meta.pagination.next_cursor")); /* null */
    assert_null(kit_json_path_string(j, "meta.pagination.n"));           /* not a string */
    assert_null(kit_json_path_string(j, "meta.missing.next_cursor"));
    assert_string_equal(kit_json_path_string(j, "items.1.id"), "b");
    assert_null(kit_json_path(j, "items.2"));
    assert_null(kit_json_path(j, "items.-1"));
    assert_null(kit_json_path(j, "response_metadata."));
    assert_null(kit_json_path(j, ".ok"));
    assert_null(kit_json_path(j, "response_metadata..next_cursor"));
    assert_ptr_equal(kit_json_path(j, ""), j);
    assert_ptr_equal(kit_json_path(j, NULL), j);
    assert_null(kit_json_path(NULL, "ok"));
    cJSON_Delete(j);
}

static void test_urls(void **state)
{
    (void)state;
    /* where credentials may go: https anywhere, plain http only to loopback */
    assert_true(kit_url_private("https://api.github.com/x"));
    assert_true(kit_url_private("http://127.0.0.1:8080/x"));
    assert_true(kit_url_private("http://127.9.9.9/x"));
    assert_true(kit_url_private("http://localhost/x"));
    assert_true(kit_url_private("http://[::1]:5/x"));
    assert_false(kit_url_private("http://api.github.com/x"));
    assert_false(kit_url_private("http://10.0.0.1/x"));
    assert_false(kit_url_private("http://0x7f.example/x"));
    assert_false(kit_url_private("ftp://127.0.0.1/x"));
    assert_false(kit_url_private(NULL));
    char *u = kit_url("https://slack.com/api", "chat.postMessage");
    assert_string_equal(u, "https://slack.com/api/chat.postMessage");
    free(u);
    u = kit_url("https://ghe.example/api/v3/", "/repos/o/r");
    assert_string_equal(u, "https://ghe.example/api/v3/repos/o/r");
    free(u);
    assert_null(kit_url("https://ghe.example/api/v3", "../../other"));
    u = kit_url_with_param("https://h/api/x?limit=2", "cursor", "c2/x+y== &a");
    assert_string_equal(u, "https://h/api/x?limit=2&cursor=c2%2fx%2by%3d%3d+%26a");
    free(u);
    u = kit_url_with_param("https://h/api/x", "page", "3");
    assert_string_equal(u, "https://h/api/x?page=3");
    free(u);

    /* configured base URLs */
    char err[128];
    assert_int_equal(kit_base_url_check("https://api.github.com", 0, err, sizeof(err)), AUR_OK);
    assert_int_equal(kit_base_url_check("https://ghe.example/api/v3/", 0, err, sizeof(err)), AUR_OK);
    assert_int_equal(kit_base_url_check("http://127.0.0.1:8080/api", 0, err, sizeof(err)), AUR_OK);
    assert_int_equal(kit_base_url_check("http://[::1]:8080", 0, err, sizeof(err)), AUR_OK);
    assert_int_equal(kit_base_url_check("http://localhost:8080", 0, err, sizeof(err)), AUR_OK);
    assert_int_equal(kit_base_url_check("http://jira.corp:8080", 1, err, sizeof(err)), AUR_OK);
    assert_int_equal(kit_base_url_check("http://jira.corp:8080", 0, err, sizeof(err)), AUR_E_INVALID);
    assert_non_null(strstr(err, "must be https://"));
    assert_int_equal(kit_base_url_check("http://127.evil.example/", 0, err, sizeof(err)), AUR_E_INVALID);
    assert_int_equal(kit_base_url_check("http://localhost.evil.example/", 0, err, sizeof(err)), AUR_E_INVALID);
    assert_int_equal(kit_base_url_check("https://h/api?x=1", 0, err, sizeof(err)), AUR_E_INVALID);
    assert_int_equal(kit_base_url_check("https://h/api#f", 0, err, sizeof(err)), AUR_E_INVALID);
    assert_int_equal(kit_base_url_check("https://u:p@h/api", 0, err, sizeof(err)), AUR_E_INVALID);
    assert_int_equal(kit_base_url_check("ftp://h/api", 1, err, sizeof(err)), AUR_E_INVALID);
    assert_int_equal(kit_base_url_check("", 1, err, sizeof(err)), AUR_E_INVALID);
    assert_int_equal(kit_base_url_check(NULL, 1, err, sizeof(err)), AUR_E_INVALID);

    /* a URL off the base is refused before anything is sent */
    kit_call_resp r;
    kit_call_req q = { .provider = "Test", .base_url = "http://127.0.0.1:9/api",
                       .url = "http://127.0.0.1:9/other" };
    assert_int_equal(kit_call(&q, &r), AUR_E_INVALID);
    assert_int_equal(r.attempts, 0);
    assert_non_null(strstr(r.err, "not under the configured base URL"));
    kit_call_resp_free(&r);
    const char *offbase[] = { "http://127.0.0.1:10/api/x", "https://127.0.0.1:9/api/x",
                              "http://localhost:9/api/x", "http://127.0.0.1:9/api2/x",
                              "http://127.0.0.1:9/api/../other", "http://u@127.0.0.1:9/api/x", NULL };
    for (size_t i = 0; offbase[i]; i++) {
        q.url = offbase[i];
        if (kit_call(&q, &r) != AUR_E_INVALID || r.attempts != 0)
            fail_msg("%s not refused", offbase[i]);
        kit_call_resp_free(&r);
    }
    q.base_url = "ftp://127.0.0.1:9/api";
    q.url = "ftp://127.0.0.1:9/api/x";
    assert_int_equal(kit_call(&q, &r), AUR_E_INVALID);
    kit_call_resp_free(&r);
    /* https_only: an http base is refused */
    q.base_url = "http://127.0.0.1:9/api";
    q.url = "http://127.0.0.1:9/api/x";
    q.https_only = 1;
    assert_int_equal(kit_call(&q, &r), AUR_E_INVALID);
    kit_call_resp_free(&r);
}

/* ---- against the fixture --------------------------------------------------------------- */

static pid_t g_pid = -1;
static int g_port;
static char g_base[64];
static char g_dir[64];

static int group_setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/kitcall.XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    char script[1024], log[128];
    if (ph_fixture_path("provider_fixture.py", script, sizeof(script)) < 0)
        return -1;
    snprintf(log, sizeof(log), "%s/fixture.log", g_dir);
    const char *argv[] = { ph_python(), script, NULL };
    g_pid = ph_start_port_fixture(argv, log, &g_port);
    if (g_pid < 0)
        return -1;
    snprintf(g_base, sizeof(g_base), "http://127.0.0.1:%d/api", g_port);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (g_pid > 0)
        ph_stop(g_pid, SIGTERM, 3000);
    ph_rmtree(g_dir);
    return 0;
}

/* A key of its own per call site, so the fixture's counters are per test. */
static const char *new_key(void)
{
    static char k[32];
    static int n;
    snprintf(k, sizeof(k), "k%d", ++n);
    return k;
}

static char *api_url(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *api_url(const char *fmt, ...)
{
    static char u[2][512];
    static int which;
    char path[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof(path), fmt, ap);
    va_end(ap);
    which ^= 1;
    snprintf(u[which], sizeof(u[which]), "%s%s", g_base, path);
    return u[which];
}

/* The fixture's count for key k (or for a path prefix when k starts with '/'). */
static int fixture_hits(const char *k)
{
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/_fixture/hits?%s=%s", g_port,
             k[0] == '/' ? "path" : "k", k);
    http_client_req q = { .url = url, .timeout_ms = 20000 }; /* the tests' usual wait */
    http_client_resp r;
    assert_int_equal(http_client_do(&q, &r), AUR_OK);
    cJSON *j = http_client_json(&r);
    assert_non_null(j);
    int n = cJSON_GetObjectItem(j, "hits")->valueint;
    cJSON_Delete(j);
    http_client_resp_free(&r);
    return n;
}

static kit_call_req base_req(const char *url)
{
    kit_call_req q = { .provider = "Test", .base_url = g_base, .url = url,
                       .deadline_ms = 20000, .attempt_timeout_ms = 10000 };
    return q;
}

static void test_retry_5xx_then_ok(void **state)
{
    (void)state;
    const char *k = new_key();
    kit_call_req q = base_req(api_url("/fault?k=%s&fail=2&status=503", k));
    kit_call_resp r;
    assert_int_equal(kit_call(&q, &r), AUR_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.attempts, 3);
    assert_int_equal(fixture_hits(k), 3);
    assert_non_null(strstr(r.http.body, "\"n\": 3"));
    /* the success carried GitHub's rate-limit headers */
    assert_int_equal(r.rl_remaining, 59);
    assert_in_range(r.rl_reset_s, 3590, 3600);
    kit_call_resp_free(&r);

    /* 502/504 too; 504 exhausted is a timeout */
    k = new_key();
    q = base_req(api_url("/fault?k=%s&fail=9&status=504", k));
    q.max_attempts = 2;
    assert_int_equal(kit_call(&q, &r), AUR_E_TIMEOUT);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(fixture_hits(k), 2);
    kit_call_resp_free(&r);
}

/* The body names a retryable condition kit_call would not see (AWS Query
 * APIs answer throttling as HTTP 400 <Code>Throttling</Code>). */
static int body_says_retry(const http_client_resp *answer)
{
    return answer->body && strstr(answer->body, "SECRET-BODY-MARKER") != NULL;
}

static void test_retry_if_and_connector_errors(void **state)
{
    (void)state;
    const char *k = new_key();
    kit_call_req q = base_req(api_url("/fault?k=%s&fail=1&status=400", k));
    kit_call_resp r;
    assert_int_equal(kit_call(&q, &r), AUR_E_INVALID); /* a 400 alone is final */
    assert_int_equal(r.attempts, 1);
    kit_call_resp_free(&r);
    k = new_key();
    q = base_req(api_url("/fault?k=%s&fail=1&status=400", k));
    q.method = "POST";
    q.body = "x=1";
    q.body_len = 3;
    q.retry_safe = 1;
    q.retry_if = body_says_retry;
    assert_int_equal(kit_call(&q, &r), AUR_OK);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(fixture_hits(k), 2);
    kit_call_resp_free(&r);
    /* without retry_safe a POST is still sent once */
    k = new_key();
    q.url = api_url("/fault?k=%s&fail=1&status=400", k);
    q.retry_safe = 0;
    assert_int_equal(kit_call(&q, &r), AUR_E_UNAVAILABLE);
    assert_int_equal(fixture_hits(k), 1);

    /* the connector's answer: status, code and a message without the body */
    static const kit_call_errors errs = { .service = "Test API", .timeout = "T_TIMEOUT",
                                          .unreachable = "T_UNREACHABLE", .denied = "T_DENIED",
                                          .failed = "T_ERROR" };
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    kit_call_error(&errs, &r, "Doing it failed", 1500, " while testing", &resp);
    assert_int_equal(resp.status, 502);
    char *text = strndup(buf_head(&resp.body), buf_pending(&resp.body));
    assert_non_null(strstr(text, "\"T_ERROR\""));
    assert_non_null(strstr(text, "Doing it failed: Test API answered HTTP 400 while testing"));
    assert_null(strstr(text, "SECRET-BODY-MARKER"));
    free(text);
    buf_free(&resp.body);
    kit_call_resp_free(&r);
    r.status = 0;
    r.code = AUR_E_TIMEOUT;
    memset(&resp, 0, sizeof(resp));
    kit_call_error(&errs, &r, NULL, 1500, NULL, &resp);
    assert_int_equal(resp.status, 504);
    text = strndup(buf_head(&resp.body), buf_pending(&resp.body));
    assert_non_null(strstr(text, "Test API did not answer within 2 s"));
    free(text);
    buf_free(&resp.body);

    char u[32];
    assert_int_equal(kit_url_fmt(u, sizeof(u), "https://h/x//", "/%s/t", "ten"), 0);
    assert_string_equal(u, "https://h/x/ten/t");
    assert_int_equal(kit_url_fmt(u, sizeof(u), NULL, "/me"), 0);
    assert_string_equal(u, "/me");
    assert_int_equal(kit_url_fmt(u, 16, "https://host.example", "/oauth2/token"), -1);
    assert_string_equal(u, ""); /* never a cut URL */

    char code[16];
    kit_code_text("Access\"Denied <x>\n", code, sizeof(code));
    assert_string_equal(code, "AccessDeniedx");
    kit_code_text("ns#Throttling.Exception_1-2-3-4-5", code, sizeof(code));
    assert_string_equal(code, "nsThrottling.Ex"); /* bounded */
    kit_code_text(NULL, code, sizeof(code));
    assert_string_equal(code, "");
    char *h = kit_bearer_header("tok");
    assert_string_equal(h, "Authorization: Bearer tok");
    secret_free(h);
}

static void test_attempts_exhausted_message_has_no_body(void **state)
{
    (void)state;
    const char *k = new_key();
    kit_call_req q = base_req(api_url("/fault?k=%s&fail=10&status=500", k));
    q.max_attempts = 3;
    kit_call_resp r;
    assert_int_equal(kit_call(&q, &r), AUR_E_UNAVAILABLE);
    assert_int_equal(r.attempts, 3);
    assert_int_equal(fixture_hits(k), 3);
    assert_int_equal(r.status, 500);
    assert_non_null(strstr(r.err, "HTTP 500 from 127.0.0.1 (3 attempts)"));
    assert_null(strstr(r.err, "SECRET-BODY-MARKER"));
    assert_null(strstr(r.err, "/fault")); /* no path either */
    /* the body stays available to the caller */
    assert_non_null(strstr(r.http.body, "SECRET-BODY-MARKER"));
    kit_call_resp_free(&r);
}

static void test_status_mapping(void **state)
{
    (void)state;
    static const struct {
        int status, code;
    } rows[] = { { 400, AUR_E_INVALID },  { 401, AUR_E_DENIED },     { 403, AUR_E_DENIED },
                 { 404, AUR_NOT_FOUND },  { 409, AUR_CONFLICT },     { 410, AUR_NOT_FOUND },
                 { 422, AUR_E_INVALID },  { 418, AUR_E_INTERNAL },   { 501, AUR_E_INTERNAL },
                 { 302, AUR_E_INVALID },  { 304, AUR_E_INVALID } };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const char *k = new_key();
        kit_call_req q = base_req(api_url("/fault?k=%s&fail=5&status=%d", k, rows[i].status));
        kit_call_resp r;
        int rc = kit_call(&q, &r);
        if (rc != rows[i].code || r.attempts != 1 || fixture_hits(k) != 1)
            fail_msg("HTTP %d: code %d, %d attempts", rows[i].status, rc, r.attempts);
        assert_null(strstr(r.err, "SECRET-BODY-MARKER"));
        char want[64];
        snprintf(want, sizeof(want), "Test: HTTP %d from 127.0.0.1", rows[i].status);
        assert_string_equal(r.err, want);
        kit_call_resp_free(&r);
    }
}

static void test_429_retry_after_seconds(void **state)
{
    (void)state;
    const char *k = new_key();
    kit_call_req q = base_req(api_url("/fault?k=%s&fail=1&status=429&retry_after=1", k));
    kit_call_resp r;
    long long t0 = ph_now_ms();
    assert_int_equal(kit_call(&q, &r), AUR_OK);
    long long took = ph_now_ms() - t0;
    assert_int_equal(r.attempts, 2);
    assert_int_equal(fixture_hits(k), 2);
    assert_true(took >= 950); /* the provider's second, not a 100 ms backoff */
    assert_true(took < 15000);
    kit_call_resp_free(&r);
}

static void test_429_retry_after_date(void **state)
{
    (void)state;
    const char *k = new_key();
    kit_call_req q = base_req(api_url("/fault?k=%s&fail=1&mode=date&wait=1", k));
    kit_call_resp r;
    long long t0 = ph_now_ms();
    assert_int_equal(kit_call(&q, &r), AUR_OK);
    assert_int_equal(r.attempts, 2);
    assert_true(ph_now_ms() - t0 >= 950);
    kit_call_resp_free(&r);
}

static void test_ratelimit_reset_headers_honoured(void **state)
{
    (void)state;
    const char *modes[] = { "github", "datadog", "ietf" };
    for (size_t i = 0; i < 3; i++) {
        const char *k = new_key();
        kit_call_req q = base_req(api_url("/fault?k=%s&fail=1&mode=%s&wait=1", k, modes[i]));
        kit_call_resp r;
        long long t0 = ph_now_ms();
        int rc = kit_call(&q, &r);
        if (rc != AUR_OK || r.attempts != 2)
            fail_msg("%s: code %d after %d attempts (%s)", modes[i], rc, r.attempts, r.err);
        /* one second: GitHub's reset is read against the fixture's Date */
        long long took = ph_now_ms() - t0;
        if (took < 950)
            fail_msg("%s: retried after %lld ms (retry_after_s %ld, reset %ld)", modes[i], took,
                     (long)r.retry_after_s, (long)r.rl_reset_s);
        assert_int_equal(fixture_hits(k), 2);
        kit_call_resp_free(&r);
    }
}

static void test_wait_beyond_deadline_is_reported_not_slept(void **state)
{
    (void)state;
    const char *k = new_key();
    kit_call_req q = base_req(api_url("/fault?k=%s&fail=5&status=429&retry_after=3600", k));
    q.deadline_ms = 60000;
    kit_call_resp r;
    long long t0 = ph_now_ms();
    assert_int_equal(kit_call(&q, &r), AUR_E_UNAVAILABLE);
    assert_true(ph_now_ms() - t0 < 30000); /* not slept until the deadline */
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.retry_after_s, 3600);
    assert_non_null(strstr(r.err, "Test: rate limited, retry after 3600 s"));
    kit_call_resp_free(&r);

    /* GitHub's primary limit, reset in an hour */
    k = new_key();
    q = base_req(api_url("/fault?k=%s&fail=5&mode=github&wait=3600", k));
    q.deadline_ms = 5000;
    assert_int_equal(kit_call(&q, &r), AUR_E_UNAVAILABLE);
    assert_int_equal(r.attempts, 1);
    assert_in_range(r.retry_after_s, 3595, 3600);
    assert_int_equal(r.status, 403);
    assert_int_equal(r.rl_remaining, 0);
    assert_non_null(strstr(r.err, "rate limited, retry after"));
    kit_call_resp_free(&r);

    /* a garbage Retry-After is ignored: backoff, attempts run out */
    k = new_key();
    q = base_req(api_url("/fault?k=%s&fail=5&status=429&retry_after=soon", k));
    q.max_attempts = 2;
    assert_int_equal(kit_call(&q, &r), AUR_E_UNAVAILABLE);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(r.retry_after_s, -1);
    assert_non_null(strstr(r.err, "rate limited (HTTP 429"));
    kit_call_resp_free(&r);
}

static void test_non_idempotent_not_retried_unless_safe(void **state)
{
    (void)state;
    const char *k = new_key();
    kit_call_req q = base_req(api_url("/fault?k=%s&fail=1&status=503", k));
    q.method = "POST";
    q.body = "{}";
    q.body_len = 2;
    kit_call_resp r;
    assert_int_equal(kit_call(&q, &r), AUR_E_UNAVAILABLE);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(fixture_hits(k), 1);
    kit_call_resp_free(&r);

    k = new_key();
    q.url = api_url("/fault?k=%s&fail=1&status=503", k);
    q.retry_safe = 1;
    assert_int_equal(kit_call(&q, &r), AUR_OK);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(fixture_hits(k), 2);
    kit_call_resp_free(&r);

    /* a 429 to a POST is not retried either, but its wait is reported */
    k = new_key();
    q.url = api_url("/fault?k=%s&fail=1&status=429&retry_after=7", k);
    q.retry_safe = 0;
    assert_int_equal(kit_call(&q, &r), AUR_E_UNAVAILABLE);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.retry_after_s, 7);
    assert_non_null(strstr(r.err, "rate limited, retry after 7 s"));
    kit_call_resp_free(&r);

    /* PUT and DELETE are idempotent */
    k = new_key();
    q.url = api_url("/fault?k=%s&fail=1&status=502", k);
    q.method = "PUT";
    assert_int_equal(kit_call(&q, &r), AUR_OK);
    assert_int_equal(r.attempts, 2);
    kit_call_resp_free(&r);
    k = new_key();
    q = base_req(api_url("/fault?k=%s&fail=1&status=502", k));
    q.method = "DELETE";
    assert_int_equal(kit_call(&q, &r), AUR_OK);
    assert_int_equal(r.attempts, 2);
    kit_call_resp_free(&r);
    q.method = "get"; /* not a method token the kit sends */
    assert_int_equal(kit_call(&q, &r), AUR_E_INVALID);
    kit_call_resp_free(&r);
}

static void test_transport_failure_retried(void **state)
{
    (void)state;
    int held = -1, port = ph_hold_port(0, &held, 0); /* ours, refusing, for the test */
    assert_true(port > 0);
    char base[64], url[96];
    snprintf(base, sizeof(base), "http://127.0.0.1:%d/api", port);
    snprintf(url, sizeof(url), "%s/x", base);
    kit_call_req q = { .provider = "Test", .base_url = base, .url = url, .max_attempts = 3 };
    kit_call_resp r;
    assert_int_equal(kit_call(&q, &r), AUR_E_UNAVAILABLE);
    assert_int_equal(r.attempts, 3);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.err, "Test: "));
    assert_non_null(strstr(r.err, "(3 attempts)"));
    kit_call_resp_free(&r);
    q.method = "POST";
    q.body = "x";
    q.body_len = 1;
    assert_int_equal(kit_call(&q, &r), AUR_E_UNAVAILABLE);
    assert_int_equal(r.attempts, 1);
    kit_call_resp_free(&r);
    close(held);
}

static void test_slow_answer_bounded_by_deadline(void **state)
{
    (void)state;
    kit_call_req q = base_req(api_url("/slow?delay=40&k=%s", new_key()));
    q.deadline_ms = 1000;
    kit_call_resp r;
    long long t0 = ph_now_ms();
    assert_int_equal(kit_call(&q, &r), AUR_E_TIMEOUT);
    long long took = ph_now_ms() - t0;
    assert_true(took < 20000); /* the deadline, not the 40 s answer */
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.status, 0);
    kit_call_resp_free(&r);
}

static void test_etag_conditional_get(void **state)
{
    (void)state;
    const char *k = new_key();
    kit_call_req q = base_req(api_url("/etag?k=%s", k));
    kit_call_resp r;
    assert_int_equal(kit_call(&q, &r), AUR_OK);
    assert_int_equal(r.status, 200);
    assert_false(r.not_modified);
    char tag[KIT_ETAG_MAX];
    snprintf(tag, sizeof(tag), "%s", r.etag);
    char want[64];
    snprintf(want, sizeof(want), "\"v1-%s\"", k);
    assert_string_equal(tag, want);
    kit_call_resp_free(&r);

    q.etag = tag;
    assert_int_equal(kit_call(&q, &r), AUR_OK);
    assert_int_equal(r.status, 304);
    assert_true(r.not_modified);
    assert_int_equal(r.http.len, 0);
    kit_call_resp_free(&r);
    assert_int_equal(fixture_hits(k), 2);

    /* HEAD: conditional too, no body waited for */
    q.method = "HEAD";
    assert_int_equal(kit_call(&q, &r), AUR_OK);
    assert_true(r.not_modified);
    kit_call_resp_free(&r);
    q.etag = NULL;
    assert_int_equal(kit_call(&q, &r), AUR_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.http.len, 0);
    assert_string_equal(r.etag, want);
    kit_call_resp_free(&r);
    q.method = NULL;
    assert_int_equal(fixture_hits(k), 4);

    q.etag = "\"stale\"";
    assert_int_equal(kit_call(&q, &r), AUR_OK);
    assert_int_equal(r.status, 200);
    assert_false(r.not_modified);
    kit_call_resp_free(&r);

    /* a cached value that would inject a header, or on a POST: refused unsent */
    q.etag = "\"x\"\r\nAuthorization: steal";
    assert_int_equal(kit_call(&q, &r), AUR_E_INVALID);
    assert_int_equal(r.attempts, 0);
    kit_call_resp_free(&r);
    q.etag = "\"x\"";
    q.method = "POST";
    assert_int_equal(kit_call(&q, &r), AUR_E_INVALID);
    kit_call_resp_free(&r);
    assert_int_equal(fixture_hits(k), 5);
}

/* Runs a pager to its end; items' ids must be 1..n in order.  Returns pages. */
static int drain(kit_pager *p, const char *items_field, int *last_rc)
{
    kit_call_resp r;
    int pages = 0, rc, want = 1;
    while ((rc = kit_pager_next(p, &r)) == AUR_OK) {
        pages++;
        cJSON *j = kit_call_json(&r);
        const cJSON *items = kit_json_path(j, items_field);
        assert_true(cJSON_IsArray(items));
        const cJSON *it;
        cJSON_ArrayForEach(it, items)
        {
            assert_int_equal(cJSON_GetObjectItem(it, "id")->valueint, want);
            want++;
        }
        cJSON_Delete(j);
        kit_call_resp_free(&r);
    }
    *last_rc = rc;
    if (rc < 0)
        assert_null(strstr(r.err, "SECRET"));
    kit_call_resp_free(&r);
    return pages;
}

static void test_link_pagination(void **state)
{
    (void)state;
    const char *styles[] = { "github", "sentry", "relative" };
    for (size_t i = 0; i < 3; i++) {
        const char *k = new_key();
        kit_pager_cfg cfg = { .style = KIT_PAGE_LINK };
        kit_call_req q = base_req(api_url("/link?k=%s&n=4&style=%s", k, styles[i]));
        kit_pager p;
        assert_int_equal(kit_pager_init(&p, &cfg, &q), AUR_OK);
        int rc;
        int pages = drain(&p, NULL, &rc);
        if (pages != 4 || rc != AUR_NOT_FOUND)
            fail_msg("%s: %d pages, rc %d", styles[i], pages, rc);
        assert_false(p.capped);
        assert_int_equal(fixture_hits(k), 4);
        kit_pager_free(&p);
    }
    /* a gateway's site-relative links: joined to the base when the connector
     * says so, refused (off the base) otherwise */
    {
        char gw[96];
        snprintf(gw, sizeof(gw), "%s/gw", g_base);
        const char *k2 = new_key();
        kit_pager_cfg gcfg = { .style = KIT_PAGE_LINK, .relative_to_base = 1 };
        kit_call_req gq = base_req(api_url("/gw/wiki/pages?k=%s&n=3", k2));
        gq.base_url = gw;
        kit_pager gp;
        assert_int_equal(kit_pager_init(&gp, &gcfg, &gq), AUR_OK);
        int grc;
        assert_int_equal(drain(&gp, "results", &grc), 3);
        assert_int_equal(grc, AUR_NOT_FOUND);
        kit_pager_free(&gp);
        gcfg.relative_to_base = 0;
        gq.url = api_url("/gw/wiki/pages?k=%s&n=3", new_key());
        assert_int_equal(kit_pager_init(&gp, &gcfg, &gq), AUR_OK);
        assert_int_equal(drain(&gp, "results", &grc), 1);
        assert_int_equal(grc, AUR_E_INVALID);
        kit_pager_free(&gp);
    }

    /* the page cap */
    const char *k = new_key();
    kit_pager_cfg cfg = { .style = KIT_PAGE_LINK, .max_pages = 2 };
    kit_call_req q = base_req(api_url("/link?k=%s&n=5&style=github", k));
    kit_pager p;
    assert_int_equal(kit_pager_init(&p, &cfg, &q), AUR_OK);
    int rc;
    assert_int_equal(drain(&p, NULL, &rc), 2);
    assert_int_equal(rc, AUR_NOT_FOUND);
    assert_true(p.capped);
    assert_int_equal(fixture_hits(k), 2);
    kit_pager_free(&p);
}

static void test_link_next_off_base_refused(void **state)
{
    (void)state;
    const char *styles[] = { "offhost", "offpath", "dotdot" };
    int other_before = fixture_hits("/other");
    for (size_t i = 0; i < 3; i++) {
        const char *k = new_key();
        kit_pager_cfg cfg = { .style = KIT_PAGE_LINK };
        kit_call_req q = base_req(api_url("/link?k=%s&n=3&style=%s", k, styles[i]));
        kit_pager p;
        assert_int_equal(kit_pager_init(&p, &cfg, &q), AUR_OK);
        kit_call_resp r;
        assert_int_equal(kit_pager_next(&p, &r), AUR_OK); /* page 1 is the caller's */
        kit_call_resp_free(&r);
        assert_int_equal(kit_pager_next(&p, &r), AUR_E_INVALID);
        if (!strstr(r.err, "outside the configured base URL"))
            fail_msg("%s: %s", styles[i], r.err);
        kit_call_resp_free(&r);
        /* and it stays refused */
        assert_int_equal(kit_pager_next(&p, &r), AUR_E_INVALID);
        kit_call_resp_free(&r);
        assert_int_equal(fixture_hits(k), 1);
        kit_pager_free(&p);
    }
    assert_int_equal(fixture_hits("/other"), other_before);
}

static void test_cursor_pagination(void **state)
{
    (void)state;
    const char *k = new_key();
    kit_pager_cfg cfg = { .style = KIT_PAGE_CURSOR,
                          .cursor_field = "response_metadata.next_cursor",
                          .cursor_param = "cursor" };
    kit_call_req q = base_req(api_url("/cursor?k=%s&n=3", k));
    kit_pager p;
    assert_int_equal(kit_pager_init(&p, &cfg, &q), AUR_OK);
    int rc;
    assert_int_equal(drain(&p, "items", &rc), 3); /* the fixture 400s a mangled cursor */
    assert_int_equal(rc, AUR_NOT_FOUND);
    assert_int_equal(fixture_hits(k), 3);
    kit_pager_free(&p);

    k = new_key();
    cfg.cursor_field = "meta.pagination.next_cursor";
    q = base_req(api_url("/cursor?k=%s&n=2&shape=meta", k));
    assert_int_equal(kit_pager_init(&p, &cfg, &q), AUR_OK);
    assert_int_equal(drain(&p, "data", &rc), 2);
    assert_int_equal(rc, AUR_NOT_FOUND);
    kit_pager_free(&p);

    /* configuration errors */
    cfg.cursor_param = NULL;
    assert_int_equal(kit_pager_init(&p, &cfg, &q), AUR_E_INVALID);
    kit_pager_free(&p);
}

static void test_page_and_offset_pagination(void **state)
{
    (void)state;
    const char *k = new_key();
    kit_pager_cfg cfg = { .style = KIT_PAGE_NUMBER, .page_param = "page",
                          .limit_param = "per_page", .limit = 3, .items_field = "items" };
    kit_call_req q = base_req(api_url("/paged?k=%s&total=7", k));
    kit_pager p;
    assert_int_equal(kit_pager_init(&p, &cfg, &q), AUR_OK);
    int rc;
    assert_int_equal(drain(&p, "items", &rc), 3); /* 3 + 3 + 1 */
    assert_int_equal(rc, AUR_NOT_FOUND);
    kit_pager_free(&p);

    k = new_key();
    cfg = (kit_pager_cfg){ .style = KIT_PAGE_OFFSET, .page_param = "offset",
                           .limit_param = "limit", .limit = 2 };
    q = base_req(api_url("/offset?k=%s&total=5", k));
    assert_int_equal(kit_pager_init(&p, &cfg, &q), AUR_OK);
    assert_int_equal(drain(&p, NULL, &rc), 3); /* 2 + 2 + 1 */
    assert_int_equal(rc, AUR_NOT_FOUND);
    assert_int_equal(fixture_hits(k), 3);
    kit_pager_free(&p);

    /* PagerDuty: a full last page with "more": false ends there */
    k = new_key();
    cfg = (kit_pager_cfg){ .style = KIT_PAGE_OFFSET, .page_param = "offset", .limit_param = "limit",
                           .limit = 2, .items_field = "incidents", .more_field = "more" };
    q = base_req(api_url("/pd?k=%s&total=4", k));
    assert_int_equal(kit_pager_init(&p, &cfg, &q), AUR_OK);
    assert_int_equal(drain(&p, "incidents", &rc), 2);
    assert_int_equal(rc, AUR_NOT_FOUND);
    assert_int_equal(fixture_hits(k), 2); /* no third, empty request */
    kit_pager_free(&p);

    /* an answer without the item list ends the walk with an error */
    k = new_key();
    cfg = (kit_pager_cfg){ .style = KIT_PAGE_NUMBER, .page_param = "page",
                           .limit_param = "per_page", .limit = 3, .items_field = "nope" };
    q = base_req(api_url("/paged?k=%s&total=7", k));
    assert_int_equal(kit_pager_init(&p, &cfg, &q), AUR_OK);
    kit_call_resp r;
    assert_int_equal(kit_pager_next(&p, &r), AUR_OK);
    kit_call_resp_free(&r);
    assert_int_equal(kit_pager_next(&p, &r), AUR_E_INVALID);
    assert_non_null(strstr(r.err, "no item list"));
    kit_call_resp_free(&r);
    kit_pager_free(&p);
}

static void test_body_url_pagination(void **state)
{
    (void)state;
    const char *k = new_key();
    kit_pager_cfg cfg = { .style = KIT_PAGE_BODY_URL, .cursor_field = "next" };
    kit_call_req q = base_req(api_url("/bb?k=%s&n=3", k));
    kit_pager p;
    assert_int_equal(kit_pager_init(&p, &cfg, &q), AUR_OK);
    int rc;
    assert_int_equal(drain(&p, "values", &rc), 3);
    assert_int_equal(rc, AUR_NOT_FOUND);
    assert_int_equal(fixture_hits(k), 3);
    kit_pager_free(&p);

    /* a "next" on another host is not followed */
    k = new_key();
    q = base_req(api_url("/bb?k=%s&n=3&off=1", k));
    assert_int_equal(kit_pager_init(&p, &cfg, &q), AUR_OK);
    kit_call_resp r;
    assert_int_equal(kit_pager_next(&p, &r), AUR_OK);
    kit_call_resp_free(&r);
    assert_int_equal(kit_pager_next(&p, &r), AUR_E_INVALID);
    assert_non_null(strstr(r.err, "outside the configured base URL"));
    kit_call_resp_free(&r);
    assert_int_equal(fixture_hits(k), 1);
    kit_pager_free(&p);
}

/* Counts a walk's items; a page with page > fail_at is refused. */
typedef struct {
    int items, fail_at;
} walk_count;

static int count_page(const kit_call_resp *page, void *arg)
{
    walk_count *c = arg;
    cJSON *j = kit_call_json(page);
    int n = cJSON_GetArraySize(cJSON_GetObjectItem(j, "values"));
    const cJSON *pg = cJSON_GetObjectItem(j, "page");
    int refuse = c->fail_at && cJSON_IsNumber(pg) && pg->valueint > c->fail_at;
    cJSON_Delete(j);
    c->items += n;
    return refuse ? -1 : 0;
}

static void test_bearer_and_pager_walk(void **state)
{
    (void)state;
    /* the bearer goes out as Authorization, built by the kit */
    const char *k = new_key();
    kit_call_req q = base_req(api_url("/bb?k=%s&n=1", k));
    q.bearer = "tok-123";
    kit_call_resp r;
    assert_int_equal(kit_call(&q, &r), AUR_OK);
    kit_call_resp_free(&r);
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/_fixture/last?k=%s", g_port, k);
    http_client_req lq = { .url = url, .timeout_ms = 20000 };
    http_client_resp lr;
    assert_int_equal(http_client_do(&lq, &lr), AUR_OK);
    assert_non_null(strstr(lr.body, "\"Bearer tok-123\""));
    http_client_resp_free(&lr);

    /* every page, then the end */
    kit_pager_cfg cfg = { .style = KIT_PAGE_BODY_URL, .cursor_field = "next" };
    walk_count c = { 0, 0 };
    kit_walk wk;
    k = new_key();
    q = base_req(api_url("/bb?k=%s&n=3", k));
    assert_int_equal(kit_pager_walk(&q, &cfg, count_page, &c, &wk), AUR_OK);
    assert_int_equal(c.items, 3);
    assert_int_equal(wk.pages, 3);
    assert_false(wk.capped || wk.bad_page || wk.refused);
    kit_walk_free(&wk);
    /* capped */
    cfg.max_pages = 2;
    c.items = 0;
    k = new_key();
    q = base_req(api_url("/bb?k=%s&n=3", k));
    assert_int_equal(kit_pager_walk(&q, &cfg, count_page, &c, &wk), AUR_OK);
    assert_true(wk.capped);
    assert_int_equal(c.items, 2);
    kit_walk_free(&wk);
    cfg.max_pages = 0;
    /* a page the caller refuses stops the walk */
    c = (walk_count){ 0, 1 };
    k = new_key();
    q = base_req(api_url("/bb?k=%s&n=3", k));
    assert_int_not_equal(kit_pager_walk(&q, &cfg, count_page, &c, &wk), AUR_OK);
    assert_true(wk.bad_page);
    assert_int_equal(fixture_hits(k), 2);
    kit_walk_free(&wk);
    /* a next URL off the base: refused, never fetched */
    c = (walk_count){ 0, 0 };
    k = new_key();
    q = base_req(api_url("/bb?k=%s&n=3&off=1", k));
    assert_int_equal(kit_pager_walk(&q, &cfg, count_page, &c, &wk), AUR_E_INVALID);
    assert_true(wk.refused);
    assert_non_null(strstr(wk.err, "outside the configured base URL"));
    assert_int_equal(fixture_hits(k), 1);
    kit_walk_free(&wk);
    /* a failing page: the call's answer is kept */
    k = new_key();
    q = base_req(api_url("/fault?k=%s&fail=9&status=404", k));
    assert_int_equal(kit_pager_walk(&q, &cfg, count_page, &c, &wk), AUR_NOT_FOUND);
    assert_int_equal(wk.last.status, 404);
    assert_false(wk.refused || wk.bad_page);
    kit_walk_free(&wk);
    /* a first URL off the base is a failed call */
    q = base_req("http://localhost:9/elsewhere");
    assert_int_equal(kit_pager_walk(&q, &cfg, count_page, &c, &wk), AUR_E_INVALID);
    assert_int_equal(wk.last.status, 0);
    assert_false(wk.refused);
    kit_walk_free(&wk);
}

static int refuse_every_address(const struct sockaddr *sa, void *ud)
{
    (void)sa;
    (void)ud;
    return 0;
}

/* allow_http: the user's opt-in to plain http to a host that is not
 * loopback (Atlassian Data Center).  The address callback refuses every
 * address, so nothing is ever sent to TEST-NET-1: reaching it proves the
 * scheme check let the call through. */
static void test_allow_http_opt_in(void **state)
{
    (void)state;
    const char *base = "http://192.0.2.1:8080/jira";
    kit_call_req q = { .provider = "Jira", .base_url = base,
                       .url = "http://192.0.2.1:8080/jira/rest/api/2/myself", .max_attempts = 1,
                       /* (the refusal ends the call at once: the deadline
                        * only bounds a broken build, on a loaded machine too) */
                       .attempt_timeout_ms = 30000, .deadline_ms = 30000,
                       .allow_address = refuse_every_address };
    kit_call_resp r;
    assert_int_equal(kit_call(&q, &r), AUR_E_INVALID); /* no opt-in: refused before connecting */
    assert_false(r.http.address_refused);
    assert_non_null(strstr(r.err, "https://"));
    kit_call_resp_free(&r);
    q.allow_http = 1;
    assert_int_not_equal(kit_call(&q, &r), AUR_OK);
    assert_true(r.http.address_refused); /* past the scheme check, stopped at the address */
    kit_call_resp_free(&r);
    q.https_only = 1; /* a connector's https_only wins */
    assert_int_equal(kit_call(&q, &r), AUR_E_INVALID);
    assert_false(r.http.address_refused);
    kit_call_resp_free(&r);
}

static void test_header_capture_bounds(void **state)
{
    (void)state;
    const char *cap[] = { "Link", "ETag", "Content-Type", NULL };
    char url[128];
    http_client_resp r;
    /* an oversized Link is dropped whole; the others stay */
    snprintf(url, sizeof(url), "%s/headers?size=%d", g_base, HTTP_CLIENT_MAX_HEADER_VALUE + 10);
    http_client_req q = { .url = url, .capture = cap };
    assert_int_equal(http_client_do(&q, &r), AUR_OK);
    assert_null(http_client_header(&r, "link"));
    assert_string_equal(http_client_header(&r, "etag"), "\"e\"");
    assert_string_equal(http_client_header(&r, "content-type"), "application/json");
    assert_null(http_client_header(&r, "Date")); /* not asked for */
    http_client_resp_free(&r);
    /* repeated Link lines are joined */
    snprintf(url, sizeof(url), "%s/headers?repeat=3", g_base);
    assert_int_equal(http_client_do(&q, &r), AUR_OK);
    assert_string_equal(http_client_header(&r, "Link"),
                        "<http://127.0.0.1/p0>; rel=\"p0\", <http://127.0.0.1/p1>; rel=\"p1\", "
                        "<http://127.0.0.1/p2>; rel=\"p2\"");
    http_client_resp_free(&r);
    /* too many repeats: dropped */
    snprintf(url, sizeof(url), "%s/headers?repeat=%d", g_base, HTTP_CLIENT_MAX_CAPTURE + 1);
    assert_int_equal(http_client_do(&q, &r), AUR_OK);
    assert_null(http_client_header(&r, "Link"));
    http_client_resp_free(&r);
    /* without a capture list nothing is kept (existing callers) */
    q.capture = NULL;
    assert_int_equal(http_client_do(&q, &r), AUR_OK);
    assert_null(r.headers);
    assert_null(http_client_header(&r, "ETag"));
    http_client_resp_free(&r);
    /* a request header with a line break is refused */
    const char *hdrs[] = { "X-A: 1\r\nX-B: 2", NULL };
    q.headers = hdrs;
    assert_int_equal(http_client_do(&q, &r), AUR_E_INVALID);
    http_client_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest parsers[] = {
        cmocka_unit_test(test_link_github),       cmocka_unit_test(test_link_sentry_results),
        cmocka_unit_test(test_link_params),       cmocka_unit_test(test_link_malformed),
        cmocka_unit_test(test_retry_after),       cmocka_unit_test(test_http_dates),
        cmocka_unit_test(test_ratelimit_headers), cmocka_unit_test(test_poll_delay),
        cmocka_unit_test(test_json_paths),
        cmocka_unit_test(test_urls),
    };
    const struct CMUnitTest calls[] = {
        cmocka_unit_test(test_retry_5xx_then_ok),
        cmocka_unit_test(test_attempts_exhausted_message_has_no_body),
        cmocka_unit_test(test_status_mapping),
        cmocka_unit_test(test_retry_if_and_connector_errors),
        cmocka_unit_test(test_429_retry_after_seconds),
        cmocka_unit_test(test_429_retry_after_date),
        cmocka_unit_test(test_ratelimit_reset_headers_honoured),
        cmocka_unit_test(test_wait_beyond_deadline_is_reported_not_slept),
        cmocka_unit_test(test_non_idempotent_not_retried_unless_safe),
        cmocka_unit_test(test_transport_failure_retried),
        cmocka_unit_test(test_slow_answer_bounded_by_deadline),
        cmocka_unit_test(test_etag_conditional_get),
        cmocka_unit_test(test_link_pagination),
        cmocka_unit_test(test_link_next_off_base_refused),
        cmocka_unit_test(test_cursor_pagination),
        cmocka_unit_test(test_page_and_offset_pagination),
        cmocka_unit_test(test_body_url_pagination),
        cmocka_unit_test(test_bearer_and_pager_walk),
        cmocka_unit_test(test_header_capture_bounds),
        cmocka_unit_test(test_allow_http_opt_in),
    };
    int failed = cmocka_run_group_tests_name("kit_call parsers", parsers, NULL, NULL);
    failed += cmocka_run_group_tests_name("kit_call against provider_fixture.py", calls,
                                          group_setup, group_teardown);
    return failed ? 1 : 0;
}
