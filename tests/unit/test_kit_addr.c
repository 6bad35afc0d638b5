/* test_kit_addr.c — the addresses a user-typed URL may lead the server to
 * (kit_addr.c): the one policy of Splunk, self-hosted Sentry and Atlassian
 * Data Center, on literal hosts and on resolved socket addresses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "kit_addr.h"

/* The kind of a literal, judged both as a URL host and as the address a
 * name resolved to. */
static kit_addr_kind kind_of(const char *lit)
{
    kit_addr_kind host = kit_addr_host(lit);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, lit, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
    } else {
        assert_int_equal(inet_pton(AF_INET6, lit, &in6->sin6_addr), 1);
        in6->sin6_family = AF_INET6;
    }
    const struct sockaddr *sa = (const struct sockaddr *)&ss;
    assert_int_equal(kit_addr_sockaddr(sa), host);
    /* allow_address: loopback only when the setting says so; the rest never */
    int yes = 1, no = 0;
    assert_int_equal(kit_addr_allow(sa, &yes), host != KIT_ADDR_FORBIDDEN);
    assert_int_equal(kit_addr_allow(sa, &no), host == KIT_ADDR_OK);
    assert_int_equal(kit_addr_allow(sa, NULL), host == KIT_ADDR_OK);
    return host;
}

/* The cloud metadata services outside link-local, in every spelling curl
 * may connect to, whatever the loopback setting. */
static void test_cloud_metadata_refused(void **state)
{
    (void)state;
    static const char *const meta[] = {
        "fd00:ec2::254",            /* AWS IMDS over IPv6 */
        "fd00:0ec2:0:0:0:0:0:254",  /* the same, written out */
        "fd20:ce::254",             /* GCP metadata server over IPv6 */
        "168.63.129.16",            /* Azure wireserver */
        "::ffff:168.63.129.16",     /* IPv4-mapped */
        "64:ff9b::a83f:8110",       /* NAT64 of 168.63.129.16 */
        "100.100.100.200",          /* Alibaba Cloud metadata */
        "::ffff:100.100.100.200",
        "169.254.169.254",          /* link-local: AWS, GCP, Azure IMDS, OCI */
        "::ffff:169.254.169.254",
        "fe80::a9fe:a9fe",
    };
    for (size_t i = 0; i < sizeof(meta) / sizeof(meta[0]); i++) {
        print_message("%s\n", meta[i]);
        assert_int_equal(kind_of(meta[i]), KIT_ADDR_FORBIDDEN);
    }
}

/* Their neighbours are ordinary addresses (private and unique-local ranges
 * included: on-premises servers live there). */
static void test_neighbours_and_private_ranges_allowed(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "fd00:ec2::253", "fd00:ec2::255", "fd00:ec3::254", "fd20:ce::253", "fd12:3456::1",
        "168.63.129.15", "168.63.129.17", "100.100.100.199", "100.100.100.201", "100.64.0.1",
        "10.0.0.5", "172.16.3.4", "192.168.1.10", "203.0.113.7", "2001:db8::1", "::ffff:10.1.2.3",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        print_message("%s\n", ok[i]);
        assert_int_equal(kind_of(ok[i]), KIT_ADDR_OK);
    }
}

static void test_loopback_and_the_rest(void **state)
{
    (void)state;
    static const char *const lo[] = { "127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1",
                                      "64:ff9b::7f00:1" };
    for (size_t i = 0; i < sizeof(lo) / sizeof(lo[0]); i++)
        assert_int_equal(kind_of(lo[i]), KIT_ADDR_LOOPBACK);
    static const char *const never[] = { "0.0.0.0", "0.1.2.3", "::", "169.254.0.1", "fe80::1",
                                         "febf::1", "224.0.0.1", "255.255.255.255", "ff02::1" };
    for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++)
        assert_int_equal(kind_of(never[i]), KIT_ADDR_FORBIDDEN);
    /* names: "localhost" is loopback here, any other name is judged once resolved */
    assert_int_equal(kit_addr_host("localhost"), KIT_ADDR_LOOPBACK);
    assert_int_equal(kit_addr_host("LocalHost."), KIT_ADDR_LOOPBACK);
    assert_int_equal(kit_addr_host("metadata.google.internal"), KIT_ADDR_OK);
    assert_int_equal(kit_addr_host(NULL), KIT_ADDR_FORBIDDEN);
    /* a family that is neither IPv4 nor IPv6 is never connected to */
    struct sockaddr sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_family = AF_UNIX;
    int yes = 1;
    assert_int_equal(kit_addr_sockaddr(&sa), KIT_ADDR_FORBIDDEN);
    assert_int_equal(kit_addr_allow(&sa, &yes), 0);
}

/* The other IPv6 forms that carry an IPv4 address, which a host with the
 * matching tunnel or translator sends on to that IPv4 address: judged as
 * it (Teredo refused outright). */
static void test_ipv4_in_other_ipv6_forms(void **state)
{
    (void)state;
    static const char *const forbidden[] = {
        "::169.254.169.254",            /* IPv4-compatible (::/96) */
        "::a9fe:a9fe",
        "::168.63.129.16",
        "::0.0.0.2",
        "2002:a9fe:a9fe::",             /* 6to4 of 169.254.169.254 */
        "2002:a9fe:a9fe:1::5",
        "2002:a83f:8110::1",            /* 6to4 of the Azure wireserver */
        "2002:e000:1::",                /* 6to4 of 224.0.1.0 */
        "64:ff9b:1::a9fe:a9fe",         /* local-use NAT64, /96 */
        "64:ff9b:1:a9fe:a9:fe00::",     /* the same at /48 (byte 8 skipped) */
        "64:ff9b:1:64:64:64c8::",       /* 100.100.100.200 at /56 */
        "64:ff9b:1:0:a9:fea9:fe00:0",   /* 169.254.169.254 at /64 */
        "64:ff9b:1::",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2", /* Teredo */
        "2001::1",
    };
    for (size_t i = 0; i < sizeof(forbidden) / sizeof(forbidden[0]); i++) {
        print_message("%s\n", forbidden[i]);
        assert_int_equal(kind_of(forbidden[i]), KIT_ADDR_FORBIDDEN);
    }
    static const char *const lo[] = { "::127.0.0.1", "::7f00:5", "2002:7f00:1::",
                                      "64:ff9b:1::7f00:1", "64:ff9b:1:7f00:0:100::" };
    for (size_t i = 0; i < sizeof(lo) / sizeof(lo[0]); i++) {
        print_message("%s\n", lo[i]);
        assert_int_equal(kind_of(lo[i]), KIT_ADDR_LOOPBACK);
    }
    static const char *const ok[] = { "::10.1.2.3", "::203.0.113.7", "2002:cb00:7107::1",
                                      "64:ff9b:1::a00:1", "64:ff9b:1:cb00:71:700::",
                                      "2001:db8::1", "2001:1::1", "2001:4860::8888" };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        print_message("%s\n", ok[i]);
        assert_int_equal(kind_of(ok[i]), KIT_ADDR_OK);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cloud_metadata_refused),
        cmocka_unit_test(test_neighbours_and_private_ranges_allowed),
        cmocka_unit_test(test_loopback_and_the_rest),
        cmocka_unit_test(test_ipv4_in_other_ipv6_forms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
