/* test_kit_cache.c — the connector kit's credential cache (kit_cache.c):
 * freshness margin, replacement, per-user forgetting, the bound, threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kit_cache.h"
#include "secret.h"

static void expect_cached(kit_cache *c, const char *key, int64_t now, const char *want)
{
    int64_t exp = 0;
    char *v = kit_cache_get(c, key, now, &exp);
    if (!want) {
        assert_null(v);
        return;
    }
    assert_non_null(v);
    assert_string_equal(v, want);
    secret_free(v);
}

static void test_fresh_until_the_margin(void **state)
{
    (void)state;
    static kit_cache c = KIT_CACHE_INIT(16);
    char k[128];
    assert_int_equal(kit_cache_key(k, sizeof(k), "org1", "usr1", "sp\ntenant"), 0);
    assert_string_equal(k, "org1\nusr1\nsp\ntenant");
    kit_cache_put(&c, k, "tok-1", 1000 + 3600, 1000);
    int64_t exp = 0;
    char *v = kit_cache_get(&c, k, 1000, &exp);
    assert_string_equal(v, "tok-1");
    assert_int_equal(exp, 4600);
    secret_free(v);
    /* handed out until KIT_CACHE_MARGIN seconds before expiry, not after */
    expect_cached(&c, k, 4600 - KIT_CACHE_MARGIN - 1, "tok-1");
    expect_cached(&c, k, 4600 - KIT_CACHE_MARGIN, NULL);
    /* replaced under the same key */
    kit_cache_put(&c, k, "tok-2", 9000, 1000);
    expect_cached(&c, k, 1000, "tok-2");
    assert_int_equal(c.n, 1);
    /* a key that does not fit is refused, never cut */
    assert_int_equal(kit_cache_key(k, 8, "org1", "usr1", "x"), -1);
    kit_cache_clear(&c);
    assert_int_equal(c.n, 0);
}

/* A token that lives KIT_CACHE_MARGIN seconds or less is still reused: its
 * margin is a tenth of its lifetime (never under KIT_CACHE_MIN_MARGIN = 5). */
static void test_short_lifetimes_reused(void **state)
{
    (void)state;
    static kit_cache c = KIT_CACHE_INIT(16);
    kit_cache_put(&c, "o\nu\n300", "t300", 1000 + 300, 1000); /* margin 30 */
    kit_cache_put(&c, "o\nu\n60", "t60", 1000 + 60, 1000);    /* margin 6 */
    kit_cache_put(&c, "o\nu\n20", "t20", 1000 + 20, 1000);    /* margin 5, the floor */
    kit_cache_put(&c, "o\nu\n2000", "t2k", 1000 + 2000, 1000); /* margin 200 */
    kit_cache_put(&c, "o\nu\n9000", "t9k", 1000 + 9000, 1000); /* margin 300, the cap */
    expect_cached(&c, "o\nu\n300", 1001, "t300");
    expect_cached(&c, "o\nu\n300", 1269, "t300");
    expect_cached(&c, "o\nu\n300", 1270, NULL);
    expect_cached(&c, "o\nu\n60", 1053, "t60");
    expect_cached(&c, "o\nu\n60", 1054, NULL);
    expect_cached(&c, "o\nu\n20", 1014, "t20");
    expect_cached(&c, "o\nu\n20", 1015, NULL);
    expect_cached(&c, "o\nu\n2000", 2799, "t2k");
    expect_cached(&c, "o\nu\n2000", 2800, NULL);
    expect_cached(&c, "o\nu\n9000", 9699, "t9k");
    expect_cached(&c, "o\nu\n9000", 9700, NULL);
    /* the margin is the lifetime's when stored, not what is left later */
    kit_cache_put(&c, "o\nu\nlate", "late", 1000 + 3600, 1000 + 3000);
    expect_cached(&c, "o\nu\nlate", 4539, "late");
    expect_cached(&c, "o\nu\nlate", 4540, NULL);
    /* a caller's own cap (Atlassian refreshes 60 s before expiry) */
    kit_cache_put_margin(&c, "o\nu\ncap", "cap", 1000 + 3600, 60, 1000);
    expect_cached(&c, "o\nu\ncap", 4539, "cap");
    expect_cached(&c, "o\nu\ncap", 4540, NULL);
    kit_cache_put_margin(&c, "o\nu\ncap", "cap", 1000 + 300, 60, 1000); /* 30 under the cap */
    expect_cached(&c, "o\nu\ncap", 1269, "cap");
    expect_cached(&c, "o\nu\ncap", 1270, NULL);
    kit_cache_clear(&c);
}

static void test_forget_one_user_only(void **state)
{
    (void)state;
    static kit_cache c = KIT_CACHE_INIT(16);
    char a[64], b[64], a2[64], other_org[64];
    kit_cache_key(a, sizeof(a), "org1", "usr1", "role-a");
    kit_cache_key(a2, sizeof(a2), "org1", "usr1", "role-b");
    kit_cache_key(b, sizeof(b), "org1", "usr10", "role-a"); /* a prefix of usr1 is not usr1 */
    kit_cache_key(other_org, sizeof(other_org), "org2", "usr1", "role-a");
    kit_cache_put(&c, a, "A", 5000, 0);
    kit_cache_put(&c, a2, "A2", 5000, 0);
    kit_cache_put(&c, b, "B", 5000, 0);
    kit_cache_put(&c, other_org, "O", 5000, 0);
    kit_cache_forget(&c, "org1", "usr1");
    expect_cached(&c, a, 0, NULL);
    expect_cached(&c, a2, 0, NULL);
    expect_cached(&c, b, 0, "B");
    expect_cached(&c, other_org, 0, "O"); /* the same user id in another org keeps its own */
    kit_cache_clear(&c);
}

static void test_bounded_and_stale_dropped(void **state)
{
    (void)state;
    static kit_cache c = KIT_CACHE_INIT(3);
    char k[32];
    for (int i = 0; i < 5; i++) {
        snprintf(k, sizeof(k), "o\nu%d\n", i);
        kit_cache_put(&c, k, "v", 10000, 0);
    }
    assert_int_equal(c.n, 3);
    expect_cached(&c, "o\nu0\n", 0, NULL); /* the oldest went */
    expect_cached(&c, "o\nu4\n", 0, "v");
    /* a put drops what has gone stale */
    kit_cache_put(&c, "o\nfresh\n", "v", 100000, 9900);
    assert_int_equal(c.n, 1);
    kit_cache_clear(&c);
}

static kit_cache g_shared = KIT_CACHE_INIT(64);

static void *hammer(void *arg)
{
    int id = (int)(intptr_t)arg;
    char k[32], v[32];
    for (int i = 0; i < 500; i++) {
        snprintf(k, sizeof(k), "o\nu%d\n%d", id, i % 10);
        snprintf(v, sizeof(v), "t%d", i);
        kit_cache_put(&g_shared, k, v, 10000, 0);
        char *got = kit_cache_get(&g_shared, k, 0, NULL);
        secret_free(got);
        if (i % 50 == 0)
            kit_cache_forget(&g_shared, "o", "u0");
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, hammer, (void *)(intptr_t)i);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_true(g_shared.n <= 64);
    kit_cache_clear(&g_shared);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh_until_the_margin),
        cmocka_unit_test(test_short_lifetimes_reused),
        cmocka_unit_test(test_forget_one_user_only),
        cmocka_unit_test(test_bounded_and_stale_dropped),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
