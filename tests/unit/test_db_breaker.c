/* test_db_breaker.c — the breaker shared by a database's handles
 * (server/db_breaker.c), on its own: no database is involved, the outcomes
 * are reported the way db_postgres.c reports them.  Covered: closed admits
 * everyone without a probe; an unreachable outcome opens it; open admits one
 * probe and fails the rest with a message; a probe that could not reach the
 * database gives the turn to the next call; any answer closes it; a probe
 * that never reports loses its turn after the lease; outcomes that asked
 * nothing change nothing; one breaker per url, shared and counted.  The
 * behaviour against a stopped PostgreSQL server is in test_store.c
 * (test_pg_breaker_fails_fast). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <unistd.h>

#include "db.h"
#include "db_breaker.h"

#define URL_A "postgres://aurora@/breaker_a?host=%2Ftmp"
#define URL_B "postgres://aurora@/breaker_b?host=%2Ftmp"

static int admit(db_breaker *b, int *probe, char *why)
{
    why[0] = '\0';
    return db_breaker_admit(b, probe, why, 200);
}

static void test_closed_open_probe_close(void **state)
{
    (void)state;
    db_breaker *b = db_breaker_get(URL_A, 60000);
    assert_non_null(b);
    char why[200];
    int probe = -1;

    /* Closed: every call goes, none is a probe; answers change nothing. */
    assert_int_equal(admit(b, &probe, why), 1);
    assert_int_equal(probe, 0);
    db_breaker_report(b, 0, DB_REACHED, "");
    assert_false(db_breaker_is_open(b));
    /* Nothing asked (bad parameters): still closed. */
    db_breaker_report(b, 0, DB_NOT_ASKED, "");
    assert_false(db_breaker_is_open(b));

    /* A call that could not reach the database opens it. */
    db_breaker_report(b, 0, DB_UNREACHABLE, "no answer within 1000 ms");
    assert_true(db_breaker_is_open(b));
    assert_false(db_breaker_probing(b));

    /* Open: the first call is the probe, the next ones fail at once. */
    assert_int_equal(admit(b, &probe, why), 1);
    assert_int_equal(probe, 1);
    assert_true(db_breaker_probing(b));
    uint64_t fast = db_breaker_fast_failures(b);
    for (int i = 0; i < 3; i++) {
        int p2 = -1;
        assert_int_equal(admit(b, &p2, why), 0);
        assert_int_equal(p2, 0);
        assert_non_null(strstr(why, "failing fast"));
        assert_non_null(strstr(why, "has not answered for"));
    }
    assert_int_equal(db_breaker_fast_failures(b), fast + 3);

    /* The probe could not reach it either: still open, the next call probes. */
    db_breaker_report(b, 1, DB_UNREACHABLE, "cannot connect within 1000 ms");
    assert_true(db_breaker_is_open(b));
    assert_false(db_breaker_probing(b));
    assert_int_equal(admit(b, &probe, why), 1);
    assert_int_equal(probe, 1);

    /* A call from before it opened (inside a transaction) learns nothing:
     * the probe keeps its turn. */
    db_breaker_report(b, 0, DB_NOT_ASKED, "");
    assert_true(db_breaker_probing(b));

    /* The probe's answer (even an SQL error) closes it. */
    db_breaker_report(b, 1, DB_REACHED, "");
    assert_false(db_breaker_is_open(b));
    assert_int_equal(admit(b, &probe, why), 1);
    assert_int_equal(probe, 0);
    db_breaker_put(b);
}

/* Any answer closes it, also one from a call that was not the probe (a
 * statement inside a transaction that began before the stall). */
static void test_any_answer_closes(void **state)
{
    (void)state;
    db_breaker *b = db_breaker_get(URL_A, 60000);
    char why[200];
    int probe;
    db_breaker_report(b, 0, DB_UNREACHABLE, "connection lost");
    assert_int_equal(admit(b, &probe, why), 1);
    assert_int_equal(probe, 1);
    db_breaker_report(b, 0, DB_REACHED, "");
    assert_false(db_breaker_is_open(b));
    assert_false(db_breaker_probing(b));
    /* The probe reports after it closed: nothing changes. */
    db_breaker_report(b, 1, DB_REACHED, "");
    assert_false(db_breaker_is_open(b));
    db_breaker_put(b);
}

/* A probe that never reports holds its turn for its lease only. */
static void test_probe_lease(void **state)
{
    (void)state;
    db_breaker *b = db_breaker_get(URL_B, 50);
    char why[200];
    int probe;
    db_breaker_report(b, 0, DB_UNREACHABLE, "no answer");
    /* t0 before the turn is taken: the lease starts after it. */
    int64_t t0 = db_now_ms();
    assert_int_equal(admit(b, &probe, why), 1);
    assert_int_equal(probe, 1);
    /* Within the lease the next call is refused (the refusal itself is
     * test_closed_open_probe_close's, with a lease no stall outlives; here a
     * test thread that waited 50 ms for a CPU may already be past it). */
    int second = admit(b, &probe, why);
    assert_true(second == 0 || db_now_ms() - t0 >= 50);
    /* Past the lease the next call takes the turn (waited for, bounded). */
    int got = 0;
    while (!got && db_now_ms() - t0 < 10000) {
        usleep(1000);
        got = admit(b, &probe, why);
    }
    assert_int_equal(got, 1);
    assert_int_equal(probe, 1);
    assert_true(db_now_ms() - t0 >= 50);
    db_breaker_report(b, 1, DB_REACHED, "");
    assert_false(db_breaker_is_open(b));
    db_breaker_put(b);
}

/* One breaker per database, shared by its handles, freed with the last:
 * another database is not refused because this one stalls. */
static void test_one_per_url(void **state)
{
    (void)state;
    db_breaker *a1 = db_breaker_get(URL_A, 1000), *a2 = db_breaker_get(URL_A, 3000);
    db_breaker *b = db_breaker_get(URL_B, 1000);
    assert_ptr_equal(a1, a2);
    assert_ptr_not_equal(a1, b);
    db_breaker_report(a1, 0, DB_UNREACHABLE, "no answer");
    assert_true(db_breaker_is_open(a2));
    assert_false(db_breaker_is_open(b));
    char why[200];
    int probe;
    assert_int_equal(admit(b, &probe, why), 1);
    assert_int_equal(probe, 0);
    db_breaker_put(a1);
    db_breaker_put(a2); /* the last handle of A: freed (ASan reports a leak otherwise) */
    db_breaker_put(b);
    /* A fresh breaker for A starts closed. */
    db_breaker *a3 = db_breaker_get(URL_A, 1000);
    assert_false(db_breaker_is_open(a3));
    db_breaker_put(a3);
    /* No breaker (out of memory at open): every call goes. */
    assert_int_equal(db_breaker_admit(NULL, &probe, why, sizeof(why)), 1);
    assert_int_equal(probe, 0);
    db_breaker_report(NULL, 0, DB_UNREACHABLE, "x");
    assert_null(db_breaker_get(NULL, 1000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_closed_open_probe_close),
        cmocka_unit_test(test_any_answer_closes),
        cmocka_unit_test(test_probe_lease),
        cmocka_unit_test(test_one_per_url),
    };
    return cmocka_run_group_tests_name("db_breaker", tests, NULL, NULL);
}
