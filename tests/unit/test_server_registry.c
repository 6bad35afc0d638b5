/* test_server_registry.c — AURORA_REDIS_URL as server/registry.c reads it
 * (registry_parse_url): what is accepted, and every malformed form refused
 * with a reason rather than half-read.  The registry itself (Redis, leases,
 * pub/sub) is tested against a real redis-server in
 * tests/unit/test_server_registry_redis.c and
 * tests/integration/test_replicas.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry.h"
#include "server_config.h"
#include "tunnel.h"

static void accepts_the_documented_forms(void **state)
{
    (void)state;
    registry_redis_url u;
    char why[128];
    assert_int_equal(registry_parse_url("redis://127.0.0.1:6380/2", &u, why, sizeof(why)), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 2);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "");

    assert_int_equal(registry_parse_url("redis://redis.aurora.svc", &u, why, sizeof(why)), 0);
    assert_string_equal(u.host, "redis.aurora.svc");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);

    assert_int_equal(registry_parse_url("redis://:s3cr@t:x@redis:7000/", &u, why, sizeof(why)), 0);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "s3cr@t:x"); /* the last '@' ends the credentials */
    assert_string_equal(u.host, "redis");
    assert_int_equal(u.port, 7000);

    assert_int_equal(registry_parse_url("redis://aurora:pw@h:1/15", &u, why, sizeof(why)), 0);
    assert_string_equal(u.user, "aurora");
    assert_string_equal(u.password, "pw");
    assert_int_equal(u.db, 15);
}

static void refuses_malformed_urls(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "http://h:6379", "redis://", "redis://:6379", "redis://h:0", "redis://h:65536",
        "redis://h:12x", "redis://h:6379/db", "redis://h:6379/-1", "redis://h:6379/1/2",
        "redis://pw@h", "redis://user:@h", "redis://h?x=1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        registry_redis_url u;
        char why[128] = "";
        if (registry_parse_url(bad[i], &u, why, sizeof(why)) != -1)
            fail_msg("accepted %s", bad[i]);
        if (!why[0])
            fail_msg("no reason for %s", bad[i]);
    }
    registry_redis_url u;
    char why[128];
    assert_int_equal(registry_parse_url(NULL, &u, why, sizeof(why)), -1);
}

static void disabled_without_redis(void **state)
{
    (void)state;
    /* Not started: one replica, everything a no-op. */
    assert_int_equal(registry_enabled(), 0);
    assert_string_equal(registry_self_addr(), "");
    char addr[64] = "x";
    assert_int_equal(registry_lookup("cluster-0011223344556677", addr, sizeof(addr)), 0);
    assert_string_equal(addr, "");
    registry_session_up("cluster-0011223344556677");
    registry_session_down("cluster-0011223344556677");
    registry_publish_close("org", "cluster-0011223344556677", NULL, "Token revoked");
    registry_stop();
}

/* registry_start with AURORA_INTERNAL_ADDR set to addr: 0 or -1 (err). */
static int start_with_addr(const char *addr, char *err, size_t errlen)
{
    setenv("DATABASE_URL", "sqlite:///tmp/aurora-registry-unit-unused.db", 1);
    setenv("AURORA_REDIS_URL", "redis://127.0.0.1:1/0", 1);
    setenv("AURORA_INTERNAL_FORWARD_SECRET", "0123456789abcdef0123456789abcdef", 1);
    setenv("AURORA_INTERNAL_ADDR", addr, 1);
    unsetenv("AURORA_CONFIG");
    server_config cfg;
    char why[256] = "";
    if (server_config_load(&cfg, why, sizeof(why)) != 0)
        fail_msg("server_config_load(%s): %s", addr, why);
    err[0] = '\0';
    int rc = registry_start(&cfg, NULL, err, errlen);
    registry_stop();
    server_config_free(&cfg);
    unsetenv("AURORA_REDIS_URL");
    unsetenv("AURORA_INTERNAL_ADDR");
    unsetenv("AURORA_INTERNAL_FORWARD_SECRET");
    return rc;
}

/* The address this replica registers is the one every other replica dials
 * (forward.c): its port must be what they accept, 1-65535 in digits only.
 * Read with atoi, "5081x", "+5081" or a trailing newline (a value written
 * from a file) started the server, and every command another replica
 * forwarded here failed with "registered a bad address". */
static void internal_addr_port_is_what_peers_dial(void **state)
{
    (void)state;
    const char *bad[] = { "127.0.0.1:5081x", "127.0.0.1:+5081", "127.0.0.1:5081\n",
                          "127.0.0.1:5081/", "[::1]:5081 ", "127.0.0.1:0x50", "127.0.0.1:-1",
                          "127.0.0.1:65536", "127.0.0.1:", "127.0.0.1" };
    const char *good[] = { "127.0.0.1:5081", "[::1]:5081", "fd00::5:5081", "10.0.0.5:65535" };
    char err[256];
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (start_with_addr(good[i], err, sizeof(err)) != 0)
            fail_msg("AURORA_INTERNAL_ADDR \"%s\" refused: %s", good[i], err);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = start_with_addr(bad[i], err, sizeof(err));
        if (rc == 0 || !strstr(err, "AURORA_INTERNAL_ADDR"))
            fail_msg("AURORA_INTERNAL_ADDR \"%s\": %d (%s)", bad[i], rc, err);
    }
}

/* Replicas need not share AURORA_REGISTRY_LEASE_S: a session stepped aside
 * waits out the announcer's lease, counted in its own replica's renewals.
 * Equal periods give TUNNEL_LEGACY_ASIDE_RENEWALS, as before; a longer
 * announcer's period more of ours (4 of ours, 10.7 s, lapsed a 30 s
 * replica that announces every 10 s), a shorter one fewer; a period out of
 * the setting's range counts as its bound. */
static void aside_renewals_follow_the_announcers_period(void **state)
{
    (void)state;
    assert_int_equal(registry_aside_renewals(10000, 10000), TUNNEL_LEGACY_ASIDE_RENEWALS);
    assert_int_equal(registry_aside_renewals(2666, 2666), TUNNEL_LEGACY_ASIDE_RENEWALS);
    /* lease 30 s announcing, lease 8 s counting: 12 of ours span 32 s > 30 s */
    assert_int_equal(registry_aside_renewals(10000, 2666), 13);
    /* lease 8 s announcing, lease 30 s counting: 1 of ours spans 10 s > 8 s */
    assert_int_equal(registry_aside_renewals(2666, 10000), 2);
    for (long long their = 1; their <= 4000000; their = their * 3 + 7) {
        for (long long own = REGISTRY_MIN_PERIOD_MS; own <= REGISTRY_MAX_PERIOD_MS; own *= 5) {
            int n = registry_aside_renewals(their, own);
            long long bounded = their < REGISTRY_MIN_PERIOD_MS   ? REGISTRY_MIN_PERIOD_MS
                                : their > REGISTRY_MAX_PERIOD_MS ? REGISTRY_MAX_PERIOD_MS
                                                                 : their;
            /* the silence n of ours span is at least its lease, not a renewal more */
            if ((n - 1) * own < (TUNNEL_LEGACY_ASIDE_RENEWALS - 1) * bounded ||
                (n - 2) * own >= (TUNNEL_LEGACY_ASIDE_RENEWALS - 1) * bounded)
                fail_msg("their %lld ms, own %lld ms: %d renewals", their, own, n);
        }
    }
    /* a hostile or broken peer keeps a session aside for an hour at most */
    assert_int_equal(registry_aside_renewals(1000000000000LL, REGISTRY_MIN_PERIOD_MS),
                     registry_aside_renewals(REGISTRY_MAX_PERIOD_MS, REGISTRY_MIN_PERIOD_MS));
    assert_true((long long)registry_aside_renewals(1000000000000LL, REGISTRY_MIN_PERIOD_MS) *
                    REGISTRY_MIN_PERIOD_MS <= 3600 * 1000 + 2 * REGISTRY_MIN_PERIOD_MS);
    assert_int_equal(registry_aside_renewals(-5, 10000), 2);
}

/* A message sealed as docs/security.md says (the vector made with
 * Python's hmac, not with this code), and every change to it refused. */
static void seals_are_the_documented_hmac(void **state)
{
    (void)state;
    unsigned char key[32];
    assert_int_equal(registry_seal_key("0123456789abcdef0123456789abcdef", key), 0);
    static const char want[] =
        "{\"from\":\"ins_a\",\"legacy_resync\":true,\"ts\":1700000000000,\"seq\":42,\"sig\":"
        "\"d0c5e382c30dea0348b9b6053abc62aba3ab836cc349e30d59e63fe94d39c51f\"}";
    char *m = registry_seal(key, "{\"from\":\"ins_a\",\"legacy_resync\":true}", 1700000000000LL,
                            42);
    assert_non_null(m);
    assert_string_equal(m, want);
    size_t n = strlen(m);
    assert_int_equal(registry_unseal(key, m, n), 1);
    /* any byte changed, the seal's own included */
    for (size_t i = 0; i < n; i++) {
        char was = m[i];
        m[i] = (char)(was == 'a' ? 'b' : 'a');
        int r = registry_unseal(key, m, n);
        if (r == 1)
            fail_msg("byte %zu changed, the seal still holds", i);
        m[i] = was;
    }
    /* cut, or nothing where the seal goes: not sealed */
    assert_int_equal(registry_unseal(key, m, n - 1), 0);
    assert_int_equal(registry_unseal(key, "{\"from\":\"x\"}", 12), 0);
    assert_int_equal(registry_unseal(key, "", 0), 0);
    /* another secret's key */
    unsigned char other[32];
    assert_int_equal(registry_seal_key("another-secret-0123456789abcdef01", other), 0);
    assert_int_equal(registry_unseal(other, m, n), -1);
    free(m);
    /* an empty object, and what is not one */
    m = registry_seal(key, "{}", 1, 1);
    assert_non_null(m);
    assert_true(!strncmp(m, "{\"ts\":1,\"seq\":1,\"sig\":\"", 23));
    assert_int_equal(registry_unseal(key, m, strlen(m)), 1);
    free(m);
    assert_null(registry_seal(key, "[1]", 1, 1));
    assert_null(registry_seal(key, "{", 1, 1));
}

/* A registration's seal is the documented HMAC (registry.h; the vector
 * made with Python's hmac), bound to every field and to its cluster; what
 * is not a registration of either form is refused, whatever it holds. */
static void registrations_are_sealed_as_documented(void **state)
{
    (void)state;
    unsigned char key[32];
    assert_int_equal(registry_member_key("0123456789abcdef0123456789abcdef", key), 0);
    char m[REGISTRY_MEMBER_MAX];
    assert_int_equal(registry_seal_member(key, "cl_a", "ins_a", "10.0.0.5:5081", 1700000030000LL,
                                          m, sizeof(m)),
                     0);
    assert_string_equal(m, "ins_a 10.0.0.5:5081 1700000030000 "
                           "4b0848e9e436a8bf6c3f66058a8edbb3068ae41621d45801601ab0062d4fd8a8");
    char inst[65], addr[256];
    long long exp = 0;
    assert_int_equal(registry_open_member(key, "cl_a", m, inst, sizeof(inst), addr, sizeof(addr),
                                          &exp),
                     1);
    assert_string_equal(inst, "ins_a");
    assert_string_equal(addr, "10.0.0.5:5081");
    assert_int_equal(exp, 1700000030000LL);
    /* another cluster's key, another secret */
    assert_int_equal(registry_open_member(key, "cl_b", m, inst, sizeof(inst), addr, sizeof(addr),
                                          &exp),
                     -2);
    unsigned char other[32];
    assert_int_equal(registry_member_key("another-secret-0123456789abcdef01", other), 0);
    assert_int_equal(registry_open_member(other, "cl_a", m, inst, sizeof(inst), addr,
                                          sizeof(addr), &exp),
                     -2);
    /* not the messages' key: a seal of one kind is never the other's */
    unsigned char msg_key[32];
    assert_int_equal(registry_seal_key("0123456789abcdef0123456789abcdef", msg_key), 0);
    assert_true(memcmp(msg_key, key, sizeof(key)) != 0);
    /* any byte changed (a space included: then it is not a registration) */
    size_t n = strlen(m);
    for (size_t i = 0; i < n; i++) {
        char was = m[i];
        m[i] = (char)(was == '1' ? '2' : '1');
        if (registry_open_member(key, "cl_a", m, inst, sizeof(inst), addr, sizeof(addr), &exp) ==
            1)
            fail_msg("byte %zu changed, the seal still holds", i);
        m[i] = was;
    }
    /* the form before the seals; and what is neither */
    assert_int_equal(registry_open_member(key, "cl_a", "ins_b 10.0.0.6:5081", inst, sizeof(inst),
                                          addr, sizeof(addr), &exp),
                     0);
    assert_string_equal(addr, "10.0.0.6:5081");
    static const char *const bad[] = {
        "",
        "ins_b",
        "ins_b 10.0.0.6:5081 1700000030000",
        "ins_b 10.0.0.6:5081 1700000030000 abcd",
        "ins_b 10.0.0.6:5081 17000x0030000 "
        "4b0848e9e436a8bf6c3f66058a8edbb3068ae41621d45801601ab0062d4fd8a8",
        "ins_b 10.0.0.6:5081 1700000030000 "
        "4b0848e9e436a8bf6c3f66058a8edbb3068ae41621d45801601ab0062d4fd8a8 extra",
        "ins_b 10.0.0.6:5081 9999999999999999 "
        "4b0848e9e436a8bf6c3f66058a8edbb3068ae41621d45801601ab0062d4fd8a8",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (registry_open_member(key, "cl_a", bad[i], inst, sizeof(inst), addr, sizeof(addr),
                                 &exp) >= 0)
            fail_msg("taken: '%s'", bad[i]);
    /* a non-hex seal, an instance too long for its buffer */
    char nonhex[REGISTRY_MEMBER_MAX];
    snprintf(nonhex, sizeof(nonhex), "%.*sg", (int)n - 1, m);
    assert_int_equal(registry_open_member(key, "cl_a", nonhex, inst, sizeof(inst), addr,
                                          sizeof(addr), &exp),
                     -2);
    assert_int_equal(registry_open_member(key, "cl_a", m, inst, 5, addr, sizeof(addr), &exp), -1);
    /* a field with a space cannot be sealed */
    assert_int_equal(registry_seal_member(key, "cl_a", "ins a", "10.0.0.5:5081", 1, m, sizeof(m)),
                     -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepts_the_documented_forms),
        cmocka_unit_test(refuses_malformed_urls),
        cmocka_unit_test(disabled_without_redis),
        cmocka_unit_test(internal_addr_port_is_what_peers_dial),
        cmocka_unit_test(aside_renewals_follow_the_announcers_period),
        cmocka_unit_test(seals_are_the_documented_hmac),
        cmocka_unit_test(registrations_are_sealed_as_documented),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
