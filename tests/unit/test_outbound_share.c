/* test_outbound_share.c — an organization's places on the outbound pool
 * (server/outbound_share.c): the automatic share, places taken up to it and
 * refused beyond, given back, other organizations unaffected, nothing
 * counted without a limit or an organization, and threads taking and giving
 * back at once leaving every count at zero.  The refusal a caller sees
 * (429 OUTBOUND_BUSY while its organization's slow calls run, another
 * organization served) is in test_http_edge.py: outbound_share_per_org. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "outbound_share.h"

static void test_automatic_share(void **state)
{
    (void)state;
    assert_int_equal(outbound_share_limit(8, 0), 4);
    assert_int_equal(outbound_share_limit(7, 0), 4);
    assert_int_equal(outbound_share_limit(4, 0), 2);
    assert_int_equal(outbound_share_limit(3, 0), 0); /* too few to divide */
    assert_int_equal(outbound_share_limit(1, 0), 0);
    assert_int_equal(outbound_share_limit(8, 6), 6); /* the setting wins */
    assert_int_equal(outbound_share_limit(1, 1), 1);
}

static void test_take_up_to_the_share(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++)
        assert_int_equal(outbound_share_take("org-a", 3), 1);
    assert_int_equal(outbound_share_take("org-a", 3), 0);
    assert_int_equal(outbound_share_held("org-a"), 3);
    /* another organization has its own share */
    assert_int_equal(outbound_share_take("org-b", 3), 1);
    assert_int_equal(outbound_share_held("org-b"), 1);
    /* a place given back can be taken again */
    outbound_share_release("org-a");
    assert_int_equal(outbound_share_take("org-a", 3), 1);
    assert_int_equal(outbound_share_take("org-a", 3), 0);
    for (int i = 0; i < 3; i++)
        outbound_share_release("org-a");
    outbound_share_release("org-b");
    assert_int_equal(outbound_share_held("org-a"), 0);
    assert_int_equal(outbound_share_held("org-b"), 0);
}

static void test_nothing_counted(void **state)
{
    (void)state;
    assert_int_equal(outbound_share_take("org-a", 0), -1);
    assert_int_equal(outbound_share_take("", 2), -1);
    assert_int_equal(outbound_share_take(NULL, 2), -1);
    assert_int_equal(outbound_share_held("org-a"), 0);
    /* a name longer than any organization id is not counted, never cut */
    char longer[300];
    memset(longer, 'x', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    assert_int_equal(outbound_share_take(longer, 1), -1);
}

/* As many organizations as the pool may have threads, each with a place. */
static void test_every_thread_another_org(void **state)
{
    (void)state;
    char org[32];
    for (int i = 0; i < 256; i++) {
        snprintf(org, sizeof(org), "org-%d", i);
        assert_int_equal(outbound_share_take(org, 1), 1);
    }
    for (int i = 0; i < 256; i++) {
        snprintf(org, sizeof(org), "org-%d", i);
        assert_int_equal(outbound_share_take(org, 1), 0);
        outbound_share_release(org);
        assert_int_equal(outbound_share_held(org), 0);
    }
}

#define RACERS 8
#define ROUNDS 20000

static void *racer(void *arg)
{
    const char *org = arg;
    for (int i = 0; i < ROUNDS; i++) {
        int r = outbound_share_take(org, 3);
        if (r == 1)
            outbound_share_release(org);
    }
    return NULL;
}

static void test_threads_leave_no_place_held(void **state)
{
    (void)state;
    pthread_t t[RACERS];
    static const char *orgs[] = { "org-x", "org-y" };
    for (int i = 0; i < RACERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, racer, (void *)orgs[i % 2]), 0);
    for (int i = 0; i < RACERS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(outbound_share_held("org-x"), 0);
    assert_int_equal(outbound_share_held("org-y"), 0);
    /* and the share is whole again */
    for (int i = 0; i < 3; i++)
        assert_int_equal(outbound_share_take("org-x", 3), 1);
    assert_int_equal(outbound_share_take("org-x", 3), 0);
    for (int i = 0; i < 3; i++)
        outbound_share_release("org-x");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_automatic_share),
        cmocka_unit_test(test_take_up_to_the_share),
        cmocka_unit_test(test_nothing_counted),
        cmocka_unit_test(test_every_thread_another_org),
        cmocka_unit_test(test_threads_leave_no_place_held),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
