/* test_https_redirect.c — the https URL a plain-HTTP request on the TLS port
 * is sent to (server/https_redirect.c): the same path and query, re-encoded
 * from lws's decoded arguments, and no Location for a Host that could send the
 * browser elsewhere.  The expected URLs are written by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "https_redirect.h"

/* query as lws hands it over: decoded arguments, each NUL-terminated */
static void check(const char *host, const char *path, const char *query, size_t qlen,
                  const char *want)
{
    char *got = https_redirect_location(host, path, query, qlen);
    if (!want) {
        if (got)
            fail_msg("Host %s: no Location wanted, got %s", host, got);
        return;
    }
    if (!got || strcmp(got, want))
        fail_msg("%s %s: got %s, wanted %s", host, path, got ? got : "(none)", want);
    free(got);
}

static void test_path_and_query_reencoded(void **state)
{
    (void)state;
    static const char q1[] = "code=4/0Ab&x=1\0state=s t+u\0";
    check("localhost:5080", "/callback", q1, sizeof(q1) - 1,
          "https://localhost:5080/callback?code=4%2F0Ab%26x%3D1&state=s%20t%2Bu");
    check("127.0.0.1:5080", "/health", NULL, 0, "https://127.0.0.1:5080/health");
    check("h", "", NULL, 0, "https://h/");
    check("h", NULL, NULL, 0, "https://h/");
    static const char q2[] = "flag\0a=\0=b\0";
    check("h", "/x y/\xc3\xa9", q2, sizeof(q2) - 1, "https://h/x%20y/%C3%A9?flag&a=&=b");
    check("[::1]:5080", "/a/b", NULL, 0, "https://[::1]:5080/a/b");
    check("[::ffff:127.0.0.1]", "/", NULL, 0, "https://[::ffff:127.0.0.1]/");
    check("10.0.0.1:443", "/", NULL, 0, "https://10.0.0.1:443/");
    check("aurora.example.com", "/~u/a-b_c.d", NULL, 0, "https://aurora.example.com/~u/a-b_c.d");
}

static void test_hosts_that_could_send_the_browser_elsewhere(void **state)
{
    (void)state;
    const char *bad[] = { "",        "evil.example/x", "a@b",     "a b",      "\\\\evil",
                          "h?x",     "h#x",            ":80",     ".x",       "h\r\nX: 1",
                          "evil.example]:[", "[::1",   "[]:80",   "[g::1]",   "h:",
                          "h:80:80", "h:123456",       "h:8a",    "-h",       "[::1]x",
                          NULL };
    for (size_t i = 0; bad[i]; i++)
        check(bad[i], "/callback", NULL, 0, NULL);
    check(NULL, "/callback", NULL, 0, NULL);
    char longhost[300];
    memset(longhost, 'a', sizeof(longhost) - 1);
    longhost[sizeof(longhost) - 1] = '\0';
    check(longhost, "/", NULL, 0, NULL);
    longhost[255] = '\0';
    char *ok = https_redirect_location(longhost, "/", NULL, 0);
    assert_non_null(ok); /* 255 bytes: a host name's longest */
    free(ok);
}

/* Served in plain text only from a loopback peer that says the request
 * came in over https (a tunnel such as ngrok on this host); the peer as
 * lws_get_peer_simple writes it.  A remote peer's header proves nothing. */
static void test_tunnel_on_this_host(void **state)
{
    (void)state;
    static const char *const local[] = { "127.0.0.1", "127.3.4.5", "::1", "::ffff:127.0.0.1" };
    for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++) {
        assert_true(https_redirect_tunneled(local[i], "https"));
        assert_true(https_redirect_tunneled(local[i], " HTTPS\t"));
        assert_false(https_redirect_tunneled(local[i], NULL));
        assert_false(https_redirect_tunneled(local[i], "http"));
        assert_false(https_redirect_tunneled(local[i], ""));
        assert_false(https_redirect_tunneled(local[i], "https, http"));
        assert_false(https_redirect_tunneled(local[i], "httpsx"));
    }
    static const char *const remote[] = { "10.0.0.5",     "192.168.1.20", "::ffff:10.0.0.5",
                                          "::ffff:7f00:1x", "2001:db8::1", "0.0.0.0",
                                          "::",           "",             "128.0.0.1",
                                          "localhost",    NULL };
    for (size_t i = 0; i < sizeof(remote) / sizeof(remote[0]); i++)
        assert_false(https_redirect_tunneled(remote[i], "https"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_and_query_reencoded),
        cmocka_unit_test(test_hosts_that_could_send_the_browser_elsewhere),
        cmocka_unit_test(test_tunnel_on_this_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
