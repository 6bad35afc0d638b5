/* test_admission.c — handshake admission bookkeeping (server/admission.c):
 * the token bucket, the pending-handshake table and its deadlines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "admission.h"

static void test_bucket_unlimited(void **state)
{
    (void)state;
    token_bucket b;
    token_bucket_init(&b, 0, 0, 1000);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(token_bucket_take(&b, 1000), 1);
}

static void test_bucket_burst_then_rate(void **state)
{
    (void)state;
    token_bucket b;
    token_bucket_init(&b, 10, 10, 0); /* 10 a second, 10 saved up */
    for (int i = 0; i < 10; i++)
        assert_int_equal(token_bucket_take(&b, 0), 1);
    assert_int_equal(token_bucket_take(&b, 0), 0);
    assert_int_equal(token_bucket_take(&b, 50), 0);  /* half a token */
    assert_int_equal(token_bucket_take(&b, 100), 1); /* one more after 100 ms */
    assert_int_equal(token_bucket_take(&b, 100), 0);
    /* a long pause saves up no more than the burst */
    int n = 0;
    while (token_bucket_take(&b, 60000))
        n++;
    assert_int_equal(n, 10);
}

static void test_bucket_clock_backwards(void **state)
{
    (void)state;
    token_bucket b;
    token_bucket_init(&b, 1, 1, 5000);
    assert_int_equal(token_bucket_take(&b, 5000), 1);
    assert_int_equal(token_bucket_take(&b, 1000), 0); /* earlier: no time passed */
    assert_int_equal(token_bucket_take(&b, 5999), 0); /* the later time counts from 5000 */
    assert_int_equal(token_bucket_take(&b, 6000), 1);
}

static void test_pending_cap(void **state)
{
    (void)state;
    admission_opts o = { .max_pending = 2, .accept_rate = 0, .handshake_timeout_s = 10 };
    admission *a = admission_new(&o, 0);
    assert_non_null(a);
    int c1, c2, c3;
    assert_int_equal(admission_accept(a, 0), 1);
    int t1 = admission_begin(a, &c1, 0);
    assert_int_equal(admission_accept(a, 0), 1);
    int t2 = admission_begin(a, &c2, 0);
    assert_true(t1 > 0 && t2 > 0 && t1 != t2);
    /* full: refused at accept, and a begin without a slot gets no ticket */
    assert_int_equal(admission_accept(a, 0), 0);
    assert_int_equal(admission_begin(a, &c3, 0), 0);
    admission_end(a, t1);
    admission_end(a, t1); /* twice: ignored */
    admission_end(a, 0);
    admission_end(a, 99);
    assert_int_equal(admission_accept(a, 0), 1);
    int t3 = admission_begin(a, &c3, 0);
    assert_true(t3 > 0);
    admission_stats st;
    admission_get_stats(a, &st);
    assert_int_equal(st.pending, 2);
    assert_int_equal(st.refused_pending, 1);
    assert_int_equal(st.admitted, 3);
    assert_int_equal(st.max_pending_seen, 2);
    admission_free(a);
}

static void test_accept_rate(void **state)
{
    (void)state;
    admission_opts o = { .max_pending = 100, .accept_rate = 5, .handshake_timeout_s = 10 };
    admission *a = admission_new(&o, 0);
    int ok = 0;
    for (int i = 0; i < 20; i++)
        ok += admission_accept(a, 0);
    assert_int_equal(ok, 5); /* a second's worth of burst */
    assert_int_equal(admission_accept(a, 200), 1); /* 5/s: one every 200 ms */
    assert_int_equal(admission_accept(a, 200), 0);
    admission_stats st;
    admission_get_stats(a, &st);
    assert_int_equal(st.refused_rate, 16);
    assert_int_equal(st.refused_pending, 0);
    admission_free(a);
}

static int dropped[8];
static int ndropped;

static void drop(void *conn, void *arg)
{
    assert_ptr_equal(arg, &ndropped);
    dropped[ndropped++] = *(int *)conn;
}

static void test_expire(void **state)
{
    (void)state;
    admission_opts o = { .max_pending = 4, .accept_rate = 0, .handshake_timeout_s = 2 };
    admission *a = admission_new(&o, 0);
    int c1 = 1, c2 = 2, c3 = 3;
    int t1 = admission_begin(a, &c1, 0);
    admission_begin(a, &c2, 1500);
    int t3 = admission_begin(a, &c3, 1000);
    admission_end(a, t3); /* done before its deadline: never dropped */
    ndropped = 0;
    assert_int_equal(admission_expire(a, 1999, drop, &ndropped), 0);
    assert_int_equal(admission_expire(a, 2000, drop, &ndropped), 1);
    assert_int_equal(dropped[0], 1);
    admission_end(a, t1); /* the caller's late end of a dropped one: ignored */
    assert_int_equal(admission_expire(a, 3499, drop, &ndropped), 0);
    assert_int_equal(admission_expire(a, 3500, drop, &ndropped), 1);
    assert_int_equal(dropped[1], 2);
    admission_stats st;
    admission_get_stats(a, &st);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.expired, 2);
    /* every slot is free again */
    int c[4];
    for (int i = 0; i < 4; i++)
        assert_true(admission_begin(a, &c[i], 4000) > 0);
    assert_int_equal(admission_accept(a, 4000), 0);
    admission_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_unlimited),
        cmocka_unit_test(test_bucket_burst_then_rate),
        cmocka_unit_test(test_bucket_clock_backwards),
        cmocka_unit_test(test_pending_cap),
        cmocka_unit_test(test_accept_rate),
        cmocka_unit_test(test_expire),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
