/* test_client_addr.c — AURORA_TRUSTED_PROXIES and the X-Forwarded-For walk
 * (server/client_addr.c): which entries the setting accepts, which
 * addresses its networks hold (IPv4, IPv6, IPv4-mapped spellings), and which
 * client a request is attributed to.  Expected values are written by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client_addr.h"

static client_addr_trust trust_of(const char *spec)
{
    client_addr_trust t;
    char err[256] = "";
    if (client_addr_trust_parse(spec, &t, err, sizeof(err)) < 0)
        fail_msg("\"%s\" refused: %s", spec, err);
    return t;
}

static void refused(const char *spec, const char *named)
{
    client_addr_trust t;
    char err[256] = "";
    if (client_addr_trust_parse(spec, &t, err, sizeof(err)) == 0)
        fail_msg("\"%s\" accepted", spec);
    assert_null(t.nets);
    assert_int_equal(t.n, 0);
    if (!strstr(err, "AURORA_TRUSTED_PROXIES") || !strstr(err, named))
        fail_msg("\"%s\": the message \"%s\" does not name \"%s\"", spec, err, named);
}

static void test_setting_accepted(void **state)
{
    (void)state;
    client_addr_trust t = trust_of(NULL);
    assert_int_equal(t.n, 0);
    t = trust_of("");
    assert_int_equal(t.n, 0);
    t = trust_of(" , ,");
    assert_int_equal(t.n, 0);
    client_addr_trust_free(&t);
    t = trust_of("127.0.0.1, 10.0.0.0/8 ,\t2001:db8::/32,::1,0.0.0.0/0,::/0,"
                 "::ffff:192.168.0.0/112,192.168.1.0/24,");
    assert_int_equal(t.n, 8);
    client_addr_trust_free(&t);
    assert_null(t.nets);
    t = trust_of("1.2.3.4/32,fe80::/10,2001:db8::1/128,128.0.0.0/1,::ffff:1.2.3.4");
    assert_int_equal(t.n, 5);
    client_addr_trust_free(&t);
}

static void test_setting_refused_naming_the_entry(void **state)
{
    (void)state;
    refused("10.0.0.0/8,proxy.internal", "\"proxy.internal\"");
    refused("10.0.0.1/8", "10.0.0.0/8");               /* bits past the prefix */
    refused("2001:db8::1/32", "2001:db8::/32");
    refused("10.0.0.0/33", "\"10.0.0.0/33\"");
    refused("::1/129", "\"::1/129\"");
    refused("10.0.0.0/", "\"10.0.0.0/\"");
    refused("10.0.0.0/-1", "\"10.0.0.0/-1\"");
    refused("10.0.0.0/+8", "\"10.0.0.0/+8\"");
    refused("10.0.0.0/0008", "\"10.0.0.0/0008\"");
    refused("10.0.0.0/8/8", "\"10.0.0.0/8/8\"");
    refused("/8", "\"/8\"");
    refused("10.0.0", "\"10.0.0\"");
    refused("10.0.0.256", "\"10.0.0.256\"");
    refused("010.0.0.1", "\"010.0.0.1\"");
    refused("1.2.3.4 5.6.7.8", "\"1.2.3.4 5.6.7.8\"");
    refused("1.2.3.4;5.6.7.8", "\"1.2.3.4;5.6.7.8\"");
    refused("fe80::1%eth0", "\"fe80::1%eth0\"");
    refused("[::1]", "\"[::1]\"");
    refused("::ffff:10.0.0.0/8", "at least 96");
    refused("1.2.3.4:80", "\"1.2.3.4:80\"");
}

static void test_networks_hold(void **state)
{
    (void)state;
    client_addr_trust t = trust_of("10.0.0.0/8,192.168.1.128/25,2001:db8:aa::/48,::1,"
                                   "::ffff:172.16.0.0/108");
    static const char *const in[] = { "10.0.0.0",        "10.255.255.255", "::ffff:10.1.2.3",
                                      "::FFFF:10.1.2.3", "192.168.1.128",  "192.168.1.255",
                                      "2001:db8:aa::1",  "2001:db8:aa:ffff:ffff:ffff:ffff:ffff",
                                      "::1",             "0:0:0:0:0:0:0:1", "172.16.0.1",
                                      "172.31.255.255",  "::ffff:ac10:1" };
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++)
        if (!client_addr_trusted(&t, in[i]))
            fail_msg("%s not trusted", in[i]);
    static const char *const out[] = { "11.0.0.0",     "9.255.255.255", "192.168.1.127",
                                       "2001:db8:ab::1", "::2",         "127.0.0.1",
                                       "172.32.0.1",   "::a00:1",       "::ffff:11.0.0.1",
                                       "",             "10.1.2.3 ",     "10.1.2.3:80",
                                       "[::1]",        "localhost",     "64:ff9b::a00:1" };
    for (size_t i = 0; i < sizeof(out) / sizeof(out[0]); i++)
        if (client_addr_trusted(&t, out[i]))
            fail_msg("%s trusted", out[i]);
    assert_false(client_addr_trusted(&t, NULL));
    assert_false(client_addr_trusted(NULL, "10.0.0.1"));
    client_addr_trust_free(&t);

    /* The families stay apart: ::/0 is IPv6 only, 0.0.0.0/0 IPv4 only
     * (mapped spellings included). */
    t = trust_of("::/0");
    assert_true(client_addr_trusted(&t, "2001:db8::1"));
    assert_false(client_addr_trusted(&t, "10.0.0.1"));
    assert_false(client_addr_trusted(&t, "::ffff:10.0.0.1"));
    client_addr_trust_free(&t);
    t = trust_of("0.0.0.0/0");
    assert_true(client_addr_trusted(&t, "::ffff:10.0.0.1"));
    assert_true(client_addr_trusted(&t, "255.255.255.255"));
    assert_false(client_addr_trusted(&t, "::1"));
    client_addr_trust_free(&t);
    /* Odd prefixes cut inside a byte. */
    t = trust_of("1.2.3.0/27,2001:db8::/33");
    assert_true(client_addr_trusted(&t, "1.2.3.31"));
    assert_false(client_addr_trusted(&t, "1.2.3.32"));
    assert_true(client_addr_trusted(&t, "2001:db8:7fff::1"));
    assert_false(client_addr_trusted(&t, "2001:db8:8000::1"));
    client_addr_trust_free(&t);
}

/* The client of a request from peer with X-Forwarded-For xff under spec;
 * from_header: whether it came from the header. */
static void resolves(const char *spec, const char *peer, const char *xff, const char *want,
                     int from_header)
{
    client_addr_trust t = trust_of(spec);
    char out[CLIENT_ADDR_LEN];
    int got = client_addr_resolve(&t, peer, xff, out, sizeof(out));
    if (strcmp(out, want) || got != from_header)
        fail_msg("[%s] peer %s, X-Forwarded-For \"%s\": got %s (%d), wanted %s (%d)", spec,
                 peer, xff ? xff : "(none)", out, got, want, from_header);
    client_addr_trust_free(&t);
}

static void test_untrusted_peer_is_the_client(void **state)
{
    (void)state;
    /* nothing trusted: today's behaviour, whatever the header says */
    resolves("", "127.0.0.1", "203.0.113.9", "127.0.0.1", 0);
    resolves("", "::ffff:127.0.0.1", "203.0.113.9", "::ffff:127.0.0.1", 0);
    resolves("10.0.0.0/8", "203.0.113.7", "198.51.100.1", "203.0.113.7", 0);
    resolves("10.0.0.0/8", "2001:db8::7", "198.51.100.1", "2001:db8::7", 0);
}

static void test_walk_right_to_left(void **state)
{
    (void)state;
    const char *p = "127.0.0.1/32,10.0.0.0/8";
    resolves(p, "127.0.0.1", "203.0.113.9", "203.0.113.9", 1);
    /* lws's dual-stack spelling of the peer matches the IPv4 network */
    resolves(p, "::ffff:127.0.0.1", "203.0.113.9", "203.0.113.9", 1);
    /* what the client wrote itself is left of what the proxy appended */
    resolves(p, "127.0.0.1", "1.1.1.1, 203.0.113.9", "203.0.113.9", 1);
    resolves(p, "127.0.0.1", "1.1.1.1,203.0.113.9 , 10.0.0.5,10.1.1.1", "203.0.113.9", 1);
    /* a trusted proxy's own entry is skipped, the first untrusted one wins */
    resolves(p, "10.2.3.4", "127.0.0.1,198.51.100.20,10.9.9.9", "198.51.100.20", 1);
    /* written as the header carries it, the client comes back canonical */
    resolves(p, "127.0.0.1", "::ffff:203.0.113.9", "203.0.113.9", 1);
    resolves(p, "127.0.0.1", "2001:DB8:0:0::1", "2001:db8::1", 1);
    resolves(p, "127.0.0.1", "\t2001:db8::1\t", "2001:db8::1", 1);
    /* ports some load balancers append */
    resolves(p, "127.0.0.1", "203.0.113.9:51234", "203.0.113.9", 1);
    resolves(p, "127.0.0.1", "[2001:db8::1]:443", "2001:db8::1", 1);
    resolves(p, "127.0.0.1", "[2001:db8::1]", "2001:db8::1", 1);
    /* a dual-stack proxy's IPv4 client, bracketed: the same client as
     * its plain IPv4 spelling, not the proxy's shared address */
    resolves(p, "127.0.0.1", "[::ffff:203.0.113.9]:51234", "203.0.113.9", 1);
    resolves(p, "127.0.0.1", "[::FFFF:203.0.113.9]", "203.0.113.9", 1);
    resolves(p, "127.0.0.1", "198.51.100.1, [::ffff:10.1.2.3]:80", "198.51.100.1", 1);
    /* two header lines, joined as lws joins them */
    resolves(p, "127.0.0.1", "198.51.100.1,203.0.113.9", "203.0.113.9", 1);
    /* malformed entries left of the client are never read */
    resolves(p, "127.0.0.1", "junk, unknown,,203.0.113.9", "203.0.113.9", 1);
}

static void test_unusable_header_is_the_peer(void **state)
{
    (void)state;
    const char *p = "127.0.0.1/32,10.0.0.0/8";
    static const char *const bad[] = {
        "",             " ",            ",",               "203.0.113.9,",
        "203.0.113.9, ", "unknown",     "_hidden",         "proxy.example",
        "203.0.113.9 198.51.100.1", "203.0.113.9;x", "203.0.113.256", "1.2.3.4:",
        "1.2.3.4:123456", "1.2.3.4:8a", "[1.2.3.4]",      "[2001:db8::1",
        "[2001:db8::1]x", "[2001:db8::1]:", "2001:db8::1:80x", "fe80::1%eth0",
        "203.0.113.9\r\nX: y", "1.2.3.4/32", "\"203.0.113.9\"",
        /* a malformed entry between the proxies and the client */
        "203.0.113.9, junk, 10.0.0.1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        resolves(p, "127.0.0.1", bad[i], "127.0.0.1", 0);
    resolves(p, "127.0.0.1", NULL, "127.0.0.1", 0);
    /* every entry a proxy of ours: the socket peer, not the left-most */
    resolves(p, "127.0.0.1", "10.0.0.1, 10.0.0.2", "127.0.0.1", 0);
    resolves(p, "::ffff:127.0.0.1", "127.0.0.1", "::ffff:127.0.0.1", 0);
}

static void test_size_and_hop_limits(void **state)
{
    (void)state;
    const char *p = "127.0.0.1/32,10.0.0.0/8";
    /* CLIENT_ADDR_MAX_HOPS trusted entries then the client: too deep */
    char xff[CLIENT_ADDR_XFF_MAX + 64];
    size_t n = (size_t)snprintf(xff, sizeof(xff), "203.0.113.9");
    for (int i = 0; i < CLIENT_ADDR_MAX_HOPS; i++)
        n += (size_t)snprintf(xff + n, sizeof(xff) - n, ",10.0.0.%d", i + 1);
    resolves(p, "127.0.0.1", xff, "127.0.0.1", 0);
    /* one fewer: found */
    n = (size_t)snprintf(xff, sizeof(xff), "203.0.113.9");
    for (int i = 0; i < CLIENT_ADDR_MAX_HOPS - 1; i++)
        n += (size_t)snprintf(xff + n, sizeof(xff) - n, ",10.0.0.%d", i + 1);
    resolves(p, "127.0.0.1", xff, "203.0.113.9", 1);

    /* many entries a client wrote itself: only the right end is read */
    n = 0;
    while (n + 16 < CLIENT_ADDR_XFF_MAX - 20)
        n += (size_t)snprintf(xff + n, sizeof(xff) - n, "198.51.100.1, ");
    snprintf(xff + n, sizeof(xff) - n, "203.0.113.9");
    assert_true(strlen(xff) <= CLIENT_ADDR_XFF_MAX);
    resolves(p, "127.0.0.1", xff, "203.0.113.9", 1);
    /* longer than CLIENT_ADDR_XFF_MAX: ignored whole */
    memset(xff, ' ', CLIENT_ADDR_XFF_MAX);
    snprintf(xff + CLIENT_ADDR_XFF_MAX - 11, sizeof(xff) - CLIENT_ADDR_XFF_MAX + 11,
             "203.0.113.9");
    assert_int_equal(strlen(xff), CLIENT_ADDR_XFF_MAX);
    resolves(p, "127.0.0.1", xff, "203.0.113.9", 1);
    snprintf(xff + CLIENT_ADDR_XFF_MAX - 11, sizeof(xff) - CLIENT_ADDR_XFF_MAX + 11,
             "203.0.113.99");
    resolves(p, "127.0.0.1", xff, "127.0.0.1", 0);
    /* an entry longer than any address */
    memset(xff, '1', 200);
    xff[200] = '\0';
    resolves(p, "127.0.0.1", xff, "127.0.0.1", 0);
    /* the longest IPv6 text fits the client field */
    resolves(p, "127.0.0.1", "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
             "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_setting_accepted),
        cmocka_unit_test(test_setting_refused_naming_the_entry),
        cmocka_unit_test(test_networks_hold),
        cmocka_unit_test(test_untrusted_peer_is_the_client),
        cmocka_unit_test(test_walk_right_to_left),
        cmocka_unit_test(test_unusable_header_is_the_peer),
        cmocka_unit_test(test_size_and_hop_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
