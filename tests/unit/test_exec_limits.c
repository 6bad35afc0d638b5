/* test_exec_limits.c — the counters behind the output budgets and the
 * per-cluster command limit (server/exec_limits.c): which budget refuses,
 * that a refusal charges nothing, that every release returns exactly what
 * was held (twice is harmless), tenant separation in the usage view, and
 * that concurrent reserve/release from several threads balances to zero,
 * that two exec_limits objects count apart, and that memory already
 * allocated is charged past the budgets (exec_limits_charge), then refuses
 * every reservation until partial returns (exec_limits_unreserve) bring the
 * usage back under. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "exec_limits.h"

#define ORG_A "org_aaaaaaaaaaaaaaaaaaaaaaaa"
#define ORG_B "org_bbbbbbbbbbbbbbbbbbbbbbbb"

static exec_usage usage_of(exec_limits *L, const char *org, exec_cluster_usage *cl, size_t cap,
                           size_t *n)
{
    exec_usage u;
    exec_limits_usage(L, org, &u, cl, cap, n);
    return u;
}

static void test_budgets(void **state)
{
    (void)state;
    exec_limits *L = exec_limits_new(1000, 600, 2);
    assert_non_null(L);
    exec_budget a1 = { 0 }, a2 = { 0 }, b1 = { 0 };
    assert_int_equal(exec_limits_reserve(L, &a1, ORG_A, 500), EXEC_BUDGET_OK);
    assert_int_equal(a1.bytes, 500);
    /* The organization's 600 refuses first; nothing is charged. */
    assert_int_equal(exec_limits_reserve(L, &a2, ORG_A, 101), EXEC_BUDGET_ORG);
    assert_int_equal(a2.bytes, 0);
    assert_int_equal(exec_limits_reserve(L, &a2, ORG_A, 100), EXEC_BUDGET_OK);
    /* Another org has its own 600 but shares the server's 1000 (600 used). */
    assert_int_equal(exec_limits_reserve(L, &b1, ORG_B, 401), EXEC_BUDGET_SERVER);
    assert_int_equal(b1.bytes, 0);
    assert_int_equal(exec_limits_reserve(L, &b1, ORG_B, 400), EXEC_BUDGET_OK);
    exec_usage u = usage_of(L, ORG_A, NULL, 0, NULL);
    assert_int_equal(u.org_bytes, 600);
    assert_int_equal(u.org_budget, 600);
    assert_int_equal(u.server_bytes, 1000);
    assert_int_equal(u.server_budget, 1000);
    assert_int_equal(usage_of(L, ORG_B, NULL, 0, NULL).org_bytes, 400);
    /* Zero or negative asks succeed and change nothing. */
    assert_int_equal(exec_limits_reserve(L, &b1, ORG_B, 0), EXEC_BUDGET_OK);
    assert_int_equal(exec_limits_reserve(L, &b1, ORG_B, -5), EXEC_BUDGET_OK);
    assert_int_equal(b1.bytes, 400);

    exec_limits_release(&a1);
    assert_int_equal(a1.bytes, 0);
    exec_limits_release(&a1); /* twice: harmless */
    u = usage_of(L, ORG_A, NULL, 0, NULL);
    assert_int_equal(u.org_bytes, 100);
    assert_int_equal(u.server_bytes, 500);
    /* Room again for B, up to its own budget. */
    assert_int_equal(exec_limits_reserve(L, &b1, ORG_B, 200), EXEC_BUDGET_OK);
    assert_int_equal(exec_limits_reserve(L, &b1, ORG_B, 1), EXEC_BUDGET_ORG);
    exec_limits_release(&a2);
    exec_limits_release(&b1);
    exec_limits_release(NULL);
    u = usage_of(L, ORG_A, NULL, 0, NULL);
    assert_int_equal(u.org_bytes, 0);
    assert_int_equal(u.server_bytes, 0);
    assert_int_equal(usage_of(L, ORG_B, NULL, 0, NULL).org_bytes, 0);
    exec_limits_free(L);
}

/* A JSON answer built from a capture that fitted is charged at its size even
 * past the budgets; new reservations are refused until enough is returned. */
static void test_charge_past_budget(void **state)
{
    (void)state;
    exec_limits *L = exec_limits_new(1000, 600, 2);
    assert_non_null(L);
    exec_budget ans = { 0 }, cap = { 0 }, other = { 0 };
    assert_int_equal(exec_limits_reserve(L, &cap, ORG_A, 100), EXEC_BUDGET_OK);
    /* within the budgets: OK, like a reservation */
    assert_int_equal(exec_limits_charge(L, &ans, ORG_A, 400), EXEC_BUDGET_OK);
    /* past the organization's 600: charged all the same, and it says so */
    assert_int_equal(exec_limits_charge(L, &ans, ORG_A, 300), EXEC_BUDGET_ORG);
    assert_int_equal(ans.bytes, 700);
    exec_usage u = usage_of(L, ORG_A, NULL, 0, NULL);
    assert_int_equal(u.org_bytes, 800);
    assert_int_equal(u.server_bytes, 800);
    /* over: even one byte more is refused, for the org; the server has 200 */
    assert_int_equal(exec_limits_reserve(L, &cap, ORG_A, 1), EXEC_BUDGET_ORG);
    assert_int_equal(exec_limits_reserve(L, &other, ORG_B, 201), EXEC_BUDGET_SERVER);
    assert_int_equal(exec_limits_reserve(L, &other, ORG_B, 200), EXEC_BUDGET_OK);
    /* past the server's budget */
    assert_int_equal(exec_limits_charge(L, &ans, ORG_A, 50), EXEC_BUDGET_ORG);
    assert_int_equal(usage_of(L, ORG_A, NULL, 0, NULL).server_bytes, 1050);
    assert_int_equal(exec_limits_charge(L, &other, ORG_B, 1), EXEC_BUDGET_SERVER);
    assert_int_equal(other.bytes, 201);
    /* partial returns, clamped to what is held */
    exec_limits_unreserve(&ans, 250);
    assert_int_equal(ans.bytes, 500);
    assert_int_equal(usage_of(L, ORG_A, NULL, 0, NULL).org_bytes, 600);
    assert_int_equal(exec_limits_reserve(L, &cap, ORG_A, 1), EXEC_BUDGET_ORG);
    exec_limits_unreserve(&ans, 1);
    assert_int_equal(exec_limits_reserve(L, &cap, ORG_A, 1), EXEC_BUDGET_OK);
    exec_limits_unreserve(&ans, 1 << 20);
    assert_int_equal(ans.bytes, 0);
    exec_limits_unreserve(&ans, 5); /* nothing held: harmless */
    exec_limits_unreserve(NULL, 5);
    exec_limits_unreserve(&cap, 0);
    exec_limits_unreserve(&cap, -3);
    assert_int_equal(cap.bytes, 101);
    /* zero and negative charges change nothing */
    assert_int_equal(exec_limits_charge(L, &ans, ORG_A, 0), EXEC_BUDGET_OK);
    assert_int_equal(exec_limits_charge(L, &ans, ORG_A, -1), EXEC_BUDGET_OK);
    assert_int_equal(ans.bytes, 0);
    exec_limits_release(&cap);
    exec_limits_release(&other);
    u = usage_of(L, ORG_A, NULL, 0, NULL);
    assert_int_equal(u.org_bytes, 0);
    assert_int_equal(u.server_bytes, 0);
    assert_int_equal(usage_of(L, ORG_B, NULL, 0, NULL).org_bytes, 0);
    exec_limits_free(L);
}

static void test_cluster_slots(void **state)
{
    (void)state;
    exec_limits *L = exec_limits_new(1000, 600, 2);
    assert_non_null(L);
    exec_slot s1, s2, s3, other, b;
    int count = -1;
    assert_int_equal(exec_limits_slot_acquire(L, &s1, ORG_A, "cluster-1", &count), 0);
    assert_int_equal(count, 0);
    assert_int_equal(exec_limits_slot_acquire(L, &s2, ORG_A, "cluster-1", &count), 0);
    assert_int_equal(count, 1);
    assert_int_equal(exec_limits_slot_acquire(L, &s3, ORG_A, "cluster-1", &count), -1);
    assert_int_equal(count, 2);
    assert_false(s3.held);
    exec_limits_slot_release(&s3); /* not held: nothing happens */
    /* Another cluster, and the same cluster id in another org, count apart. */
    assert_int_equal(exec_limits_slot_acquire(L, &other, ORG_A, "cluster-2", NULL), 0);
    assert_int_equal(exec_limits_slot_acquire(L, &b, ORG_B, "cluster-1", NULL), 0);

    exec_cluster_usage cl[8];
    size_t n = 0;
    exec_usage u = usage_of(L, ORG_A, cl, 8, &n);
    assert_int_equal(n, 2);
    assert_int_equal(u.server_commands, 4);
    assert_int_equal(u.max_per_cluster, 2);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(cl[i].commands, strcmp(cl[i].cluster_id, "cluster-1") == 0 ? 2 : 1);
    /* cap limits what is listed */
    usage_of(L, ORG_A, cl, 1, &n);
    assert_int_equal(n, 1);

    exec_limits_slot_release(&s1);
    exec_limits_slot_release(&s1);
    assert_int_equal(exec_limits_slot_acquire(L, &s3, ORG_A, "cluster-1", &count), 0);
    assert_int_equal(count, 1);
    exec_limits_slot_release(&s2);
    exec_limits_slot_release(&s3);
    exec_limits_slot_release(&other);
    exec_limits_slot_release(&b);
    exec_limits_slot_release(NULL);
    u = usage_of(L, ORG_A, cl, 8, &n);
    assert_int_equal(n, 0);
    assert_int_equal(u.server_commands, 0);
    /* An empty cluster id never lands on the org's byte counter. */
    exec_slot e;
    assert_int_equal(exec_limits_slot_acquire(L, &e, ORG_A, "", NULL), 0);
    assert_int_equal(usage_of(L, ORG_A, NULL, 0, NULL).org_bytes, 0);
    exec_limits_slot_release(&e);
    exec_limits_free(L);
}

/* Two servers' limits (two objects) count apart: what one holds is neither
 * refused nor released by the other, and each holder returns its bytes and
 * slot to the object it took them from. */
static void test_objects_apart(void **state)
{
    (void)state;
    exec_limits *L1 = exec_limits_new(100, 100, 1);
    exec_limits *L2 = exec_limits_new(100, 100, 1);
    assert_non_null(L1);
    assert_non_null(L2);
    exec_budget b1 = { 0 }, b2 = { 0 };
    exec_slot s1, s2;
    assert_int_equal(exec_limits_reserve(L1, &b1, ORG_A, 100), EXEC_BUDGET_OK);
    assert_int_equal(exec_limits_reserve(L2, &b2, ORG_A, 100), EXEC_BUDGET_OK);
    assert_int_equal(exec_limits_slot_acquire(L1, &s1, ORG_A, "c", NULL), 0);
    assert_int_equal(exec_limits_slot_acquire(L2, &s2, ORG_A, "c", NULL), 0);
    assert_ptr_equal(b1.limits, L1);
    assert_ptr_equal(s2.limits, L2);
    exec_limits_release(&b1);
    exec_limits_slot_release(&s1);
    exec_usage u1 = usage_of(L1, ORG_A, NULL, 0, NULL), u2 = usage_of(L2, ORG_A, NULL, 0, NULL);
    assert_int_equal(u1.server_bytes, 0);
    assert_int_equal(u1.server_commands, 0);
    assert_int_equal(u2.server_bytes, 100);
    assert_int_equal(u2.server_commands, 1);
    exec_limits_release(&b2);
    exec_limits_slot_release(&s2);
    exec_limits_free(L1);
    exec_limits_free(L2);
}

#define THREADS 4
#define ROUNDS 20000

typedef struct {
    exec_limits *L;
    const char *org;
} churn_arg;

static void *churn(void *p)
{
    exec_limits *L = ((churn_arg *)p)->L;
    const char *org = ((churn_arg *)p)->org;
    for (int i = 0; i < ROUNDS; i++) {
        exec_budget b = { 0 };
        exec_slot s;
        if (exec_limits_reserve(L, &b, org, 7 + i % 5) == EXEC_BUDGET_OK &&
            exec_limits_reserve(L, &b, org, 3) == EXEC_BUDGET_OK &&
            exec_limits_slot_acquire(L, &s, org, "cluster-x", NULL) == 0)
            exec_limits_slot_release(&s);
        exec_limits_release(&b);
    }
    return NULL;
}

static void test_concurrent_balance(void **state)
{
    (void)state;
    exec_limits *L = exec_limits_new(200, 100, 3);
    assert_non_null(L); /* tight: refusals happen too */
    pthread_t th[THREADS];
    churn_arg args[THREADS] = { { L, ORG_A }, { L, ORG_B }, { L, ORG_A }, { L, ORG_B } };
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, churn, &args[i]), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    size_t n = 1;
    exec_cluster_usage cl[4];
    exec_usage u = usage_of(L, ORG_A, cl, 4, &n);
    assert_int_equal(u.server_bytes, 0);
    assert_int_equal(u.org_bytes, 0);
    assert_int_equal(u.server_commands, 0);
    assert_int_equal(n, 0);
    assert_int_equal(usage_of(L, ORG_B, cl, 4, &n).org_bytes, 0);
    exec_limits_free(L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budgets),
        cmocka_unit_test(test_charge_past_budget),
        cmocka_unit_test(test_cluster_slots),
        cmocka_unit_test(test_objects_apart),
        cmocka_unit_test(test_concurrent_balance),
    };
    return cmocka_run_group_tests_name("exec_limits", tests, NULL, NULL);
}
