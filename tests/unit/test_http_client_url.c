/* test_http_client_url.c — URL checks through curl's URL API
 * (server/http_client.c): a table of tricky URLs and what the check sees,
 * which must be what curl connects to.  Each accepted row is also fetched
 * through http_client_do() against a refused port on loopback: curl's error
 * names the host it tried, and that host must be the one the check saw. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "http_client.h"

typedef struct {
    const char *url;
    int https_only;
    int ok;           /* accepted */
    const char *host; /* what the check sees (ok rows) */
    int port;
} url_row;

static const url_row rows[] = {
    /* plain */
    { "https://oauth2.googleapis.com/token", 1, 1, "oauth2.googleapis.com", 443 },
    { "http://127.0.0.1:8080/x", 0, 1, "127.0.0.1", 8080 },
    { "http://127.0.0.1:8080/x", 1, 0, NULL, 0 },
    /* a lookalike suffix is another host */
    { "https://oauth2.googleapis.com.evil.com/", 1, 1, "oauth2.googleapis.com.evil.com", 443 },
    /* userinfo, with or without a backslash before the '@': curl would send
     * it as credentials, and a hand parser and curl may disagree on the host */
    { "https://evil.com\\@oauth2.googleapis.com/", 1, 0, NULL, 0 },
    { "https://u:p@oauth2.googleapis.com/t", 1, 0, NULL, 0 },
    { "https://user@evil.example@oauth2.googleapis.com/x", 1, 0, NULL, 0 },
    { "https://oauth2.googleapis.com@evil.com/", 1, 0, NULL, 0 },
    { "https://:@oauth2.googleapis.com/", 1, 0, NULL, 0 },
    /* '#' and '?' end the authority: the host is before them */
    { "https://evil.com#@oauth2.googleapis.com/", 1, 1, "evil.com", 443 },
    { "https://evil.com?@oauth2.googleapis.com/", 1, 1, "evil.com", 443 },
    /* a backslash in the host */
    { "https://oauth2.googleapis.com\\evil.com/", 1, 0, NULL, 0 },
    { "https://\\\\evil.com/", 1, 0, NULL, 0 },
    /* percent-encoded hosts are decoded by curl: the decoded host is checked */
    { "https://oauth2%2egoogleapis%2ecom/token", 1, 1, "oauth2.googleapis.com", 443 },
    { "https://%6fauth2.googleapis.com/", 1, 1, "oauth2.googleapis.com", 443 },
    { "https://oauth2.googleapis.com%00.evil.com/", 1, 0, NULL, 0 },
    { "https://evil.com%2f@oauth2.googleapis.com/", 1, 0, NULL, 0 },
    /* IPv6 literals, brackets removed */
    { "http://[::1]:5080/", 0, 1, "::1", 5080 },
    { "https://[::ffff:127.0.0.1]/", 1, 1, "::ffff:127.0.0.1", 443 },
    { "https://[::1/", 1, 0, NULL, 0 },
    /* numeric IPv4 forms as curl normalises them */
    { "https://0x7f.1/", 1, 1, "127.0.0.1", 443 },
    { "https://127.1/", 1, 1, "127.0.0.1", 443 },
    { "https://2130706433/", 1, 1, "127.0.0.1", 443 },
    /* case is not significant in a host name; a trailing dot is (it skips
     * /etc/hosts and search domains): it stays, and matches no allow-list */
    { "HTTPS://OAUTH2.GOOGLEAPIS.COM/token", 1, 1, "oauth2.googleapis.com", 443 },
    { "https://OAuth2.GoogleAPIs.com:443/token", 1, 1, "oauth2.googleapis.com", 443 },
    { "https://oauth2.googleapis.com./token", 1, 1, "oauth2.googleapis.com.", 443 },
    /* ports */
    { "https://oauth2.googleapis.com:8443/token", 1, 1, "oauth2.googleapis.com", 8443 },
    { "http://example.com/", 0, 1, "example.com", 80 },
    { "https://example.com:0/", 1, 0, NULL, 0 },
    { "https://example.com:65536/", 1, 0, NULL, 0 },
    { "https://example.com:x/", 1, 0, NULL, 0 },
    /* schemes */
    { "file:///etc/passwd", 0, 0, NULL, 0 },
    { "file://localhost/etc/passwd", 0, 0, NULL, 0 },
    { "gopher://x/", 0, 0, NULL, 0 },
    { "ftp://x/", 0, 0, NULL, 0 },
    { "dict://127.0.0.1:11211/", 0, 0, NULL, 0 },
    { "//example.com/", 0, 0, NULL, 0 },
    { "example.com/token", 0, 0, NULL, 0 },
    /* shapes curl would "fix" but no configured URL has */
    { "https:/oauth2.googleapis.com/token", 1, 0, NULL, 0 },
    { "https:///path", 0, 0, NULL, 0 },
    { "https:oauth2.googleapis.com", 1, 0, NULL, 0 },
    { "https://", 0, 0, NULL, 0 },
    { "https://:443/", 1, 0, NULL, 0 },
    { " https://x.com/", 1, 0, NULL, 0 },
    { "https://x.com/ a", 1, 0, NULL, 0 },
    { "https://a b/", 0, 0, NULL, 0 },
    { "https://x.com/\r\nHost: evil", 1, 0, NULL, 0 },
    { "https://x.com\t/", 1, 0, NULL, 0 },
    { "", 0, 0, NULL, 0 },
};

static void test_table(void **state)
{
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const url_row *r = &rows[i];
        http_client_url u;
        int rc = http_client_url_parse(r->url, r->https_only, &u);
        if ((rc == 0) != r->ok)
            fail_msg("[%s] (https_only %d): expected %s", r->url, r->https_only,
                     r->ok ? "accepted" : "refused");
        assert_int_equal(http_client_url_ok(r->url, r->https_only), r->ok);
        if (!r->ok)
            continue;
        if (strcmp(u.host, r->host) || u.port != r->port)
            fail_msg("[%s]: host %s port %d, expected %s %d", r->url, u.host, u.port, r->host,
                     r->port);
        char host[256];
        assert_int_equal(http_client_url_host(r->url, host, sizeof(host)), 0);
        assert_string_equal(host, r->host);
        assert_int_equal(http_client_url_host(r->url, host, strlen(r->host)), -1); /* no room */
    }
    assert_false(http_client_url_ok(NULL, 0));
    char host[8];
    assert_int_equal(http_client_url_host(NULL, host, sizeof(host)), -1);
}

/* http_client_do() refuses what the check refuses, before any connection. */
static void test_fetch_refuses_what_the_check_refuses(void **state)
{
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        if (rows[i].ok)
            continue;
        http_client_req rq = { .url = rows[i].url, .timeout_ms = 2000,
                               .https_only = rows[i].https_only };
        http_client_resp rp;
        if (http_client_do(&rq, &rp) != AUR_E_INVALID)
            fail_msg("[%s] was fetched", rows[i].url);
        assert_non_null(strstr(rp.err, "URL must be"));
        assert_null(rp.body);
    }
}

/* The fetch goes where the check looked: percent-encoded and numeric forms
 * of loopback reach loopback (a closed port answers "refused" at once). */
static void test_fetch_connects_to_the_checked_host(void **state)
{
    static const char *const urls[] = {
        "http://127.0.0.1:1/x", "http://%31%32%37.0.0.1:1/x", "http://0x7f.1:1/",
        "http://2130706433:1/", "http://[::1]:1/", "http://LOCALHOST.:1/",
    };
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        http_client_url u;
        assert_int_equal(http_client_url_parse(urls[i], 0, &u), 0);
        assert_int_equal(u.port, 1);
        /* a refusal answers at once: 20 s only bounds a broken build, and a
         * loaded machine cannot turn the refusal into a timeout */
        http_client_req rq = { .url = urls[i], .timeout_ms = 20000 };
        http_client_resp rp;
        assert_true(http_client_do(&rq, &rp) < 0);
        assert_int_equal(rp.status, 0);
        if (!strcasestr(rp.err, u.host) && !strstr(rp.err, "refused") &&
            !strstr(rp.err, "onnect"))
            fail_msg("[%s]: checked host %s, curl said: %s", urls[i], u.host, rp.err);
        assert_int_equal(rp.code, AUR_E_UNAVAILABLE);
    }
}

typedef struct {
    const char *url, *base;
    int under;
} under_row;

static const under_row under_rows[] = {
    { "https://management.azure.com/subscriptions?api-version=1&$skiptoken=x",
      "https://management.azure.com", 1 },
    { "https://management.azure.com/", "https://management.azure.com/", 1 },
    { "https://MANAGEMENT.azure.com:443/subscriptions", "https://management.azure.com", 1 },
    { "http://127.0.0.1:8080/v1/x", "http://127.0.0.1:8080/v1", 1 },
    { "http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1/", 1 },
    { "http://127.0.0.1:8080/v10/x", "http://127.0.0.1:8080/v1", 0 },
    { "http://127.0.0.1:8080/v1/../x", "http://127.0.0.1:8080/v1", 0 },
    { "http://127.0.0.1:8081/v1/x", "http://127.0.0.1:8080/v1", 0 },
    { "https://127.0.0.1:8080/v1/x", "http://127.0.0.1:8080/v1", 0 },
    { "https://management.azure.com.evil.com/subscriptions", "https://management.azure.com", 0 },
    { "https://management.azure.com@evil.com/", "https://management.azure.com", 0 },
    { "https://evil.com\\@management.azure.com/", "https://management.azure.com", 0 },
    { "https://evil.com#@management.azure.com/", "https://management.azure.com", 0 },
    { "https://evil.com/https://management.azure.com/", "https://management.azure.com", 0 },
    { "/subscriptions?page=2", "https://management.azure.com", 0 },
    { "https://management.azure.com/", "not a url", 0 },
};

static void test_under(void **state)
{
    for (size_t i = 0; i < sizeof(under_rows) / sizeof(under_rows[0]); i++)
        if (http_client_url_under(under_rows[i].url, under_rows[i].base) != under_rows[i].under)
            fail_msg("[%s] under [%s]: expected %d", under_rows[i].url, under_rows[i].base,
                     under_rows[i].under);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_fetch_refuses_what_the_check_refuses),
        cmocka_unit_test(test_fetch_connects_to_the_checked_host),
        cmocka_unit_test(test_under),
    };
    return cmocka_run_group_tests_name("http_client_url", tests, NULL, NULL);
}
