/* test_breaker.c — the breaker shared by a backend's handles (the state
 * store's database, the secrets backend; server/breaker.c), on its own: no
 * backend is involved, the outcomes are reported the way db_postgres.c and
 * the secrets backends report them.  Covered: closed admits
 * everyone without a probe; an unreachable outcome opens it; open admits one
 * probe and fails the rest with a message; a probe that could not reach the
 * database gives the turn to the next call; any answer closes it; a probe
 * that never reports loses its turn after the lease; outcomes that asked
 * nothing change nothing; one breaker per url and kind, shared and counted;
 * each kind's refusal message.  The behaviour against a stopped PostgreSQL
 * server is in test_store.c (test_pg_breaker_fails_fast), against a Vault
 * and an AWS endpoint that never answer in test_secrets_vault.c and
 * test_secrets_aws.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <unistd.h>

#include "db.h"
#include "breaker.h"

#define URL_A "postgres://aurora@/breaker_a?host=%2Ftmp"
#define URL_B "postgres://aurora@/breaker_b?host=%2Ftmp"

static int admit(breaker *b, int *probe, char *why)
{
    why[0] = '\0';
    return breaker_admit(b, probe, why, 200);
}

static void test_closed_open_probe_close(void **state)
{
    (void)state;
    breaker *b = breaker_get(BREAKER_STORE, URL_A, "the database", 60000);
    assert_non_null(b);
    char why[200];
    int probe = -1;

    /* Closed: every call goes, none is a probe; answers change nothing. */
    assert_int_equal(admit(b, &probe, why), 1);
    assert_int_equal(probe, 0);
    breaker_report(b, 0, BREAKER_REACHED, "");
    assert_false(breaker_is_open(b));
    /* Nothing asked (bad parameters): still closed. */
    breaker_report(b, 0, BREAKER_NOT_ASKED, "");
    assert_false(breaker_is_open(b));

    /* A call that could not reach the database opens it. */
    breaker_report(b, 0, BREAKER_UNREACHABLE, "no answer within 1000 ms");
    assert_true(breaker_is_open(b));
    assert_false(breaker_probing(b));

    /* Open: the first call is the probe, the next ones fail at once. */
    assert_int_equal(admit(b, &probe, why), 1);
    assert_true(probe > 0);
    assert_true(breaker_probing(b));
    uint64_t fast = breaker_fast_failures(b);
    for (int i = 0; i < 3; i++) {
        int p2 = -1;
        assert_int_equal(admit(b, &p2, why), 0);
        assert_int_equal(p2, 0);
        assert_non_null(strstr(why, "failing fast"));
        assert_non_null(strstr(why, "has not answered for"));
    }
    assert_int_equal(breaker_fast_failures(b), fast + 3);

    /* The probe could not reach it either: still open, the next call probes. */
    breaker_report(b, probe, BREAKER_UNREACHABLE, "cannot connect within 1000 ms");
    assert_true(breaker_is_open(b));
    assert_false(breaker_probing(b));
    assert_int_equal(admit(b, &probe, why), 1);
    assert_true(probe > 0);

    /* A call from before it opened (inside a transaction) learns nothing:
     * the probe keeps its turn. */
    breaker_report(b, 0, BREAKER_NOT_ASKED, "");
    assert_true(breaker_probing(b));

    /* The probe's answer (even an SQL error) closes it. */
    breaker_report(b, probe, BREAKER_REACHED, "");
    assert_false(breaker_is_open(b));
    assert_int_equal(admit(b, &probe, why), 1);
    assert_int_equal(probe, 0);
    breaker_put(b);
}

/* Any answer closes it, also one from a call that was not the probe (a
 * statement inside a transaction that began before the stall). */
static void test_any_answer_closes(void **state)
{
    (void)state;
    breaker *b = breaker_get(BREAKER_STORE, URL_A, "the database", 60000);
    char why[200];
    int probe;
    breaker_report(b, 0, BREAKER_UNREACHABLE, "connection lost");
    assert_int_equal(admit(b, &probe, why), 1);
    assert_true(probe > 0);
    breaker_report(b, 0, BREAKER_REACHED, "");
    assert_false(breaker_is_open(b));
    assert_false(breaker_probing(b));
    /* The probe reports after it closed: nothing changes. */
    breaker_report(b, probe, BREAKER_REACHED, "");
    assert_false(breaker_is_open(b));
    breaker_put(b);
}

/* A probe that never reports holds its turn for its lease only. */
static void test_probe_lease(void **state)
{
    (void)state;
    breaker *b = breaker_get(BREAKER_STORE, URL_B, "the database", 50);
    char why[200];
    int probe;
    breaker_report(b, 0, BREAKER_UNREACHABLE, "no answer");
    /* t0 before the turn is taken: the lease starts after it. */
    int64_t t0 = db_now_ms();
    assert_int_equal(admit(b, &probe, why), 1);
    assert_true(probe > 0);
    int first_probe = probe;
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
    assert_true(probe > 0);
    assert_true(db_now_ms() - t0 >= 50);
    int second_probe = probe;
    /* The first probe reports late, unreachable: the second keeps its turn. */
    breaker_report(b, first_probe, BREAKER_UNREACHABLE, "late");
    assert_true(breaker_probing(b));
    breaker_report(b, second_probe, BREAKER_REACHED, "");
    assert_false(breaker_is_open(b));
    breaker_put(b);
}

/* One breaker per database, shared by its handles, freed with the last:
 * another database is not refused because this one stalls. */
static void test_one_per_url(void **state)
{
    (void)state;
    breaker *a1 = breaker_get(BREAKER_STORE, URL_A, "the database", 1000);
    breaker *a2 = breaker_get(BREAKER_STORE, URL_A, "the database", 3000);
    breaker *b = breaker_get(BREAKER_STORE, URL_B, "the database", 1000);
    assert_ptr_equal(a1, a2);
    assert_ptr_not_equal(a1, b);
    breaker_report(a1, 0, BREAKER_UNREACHABLE, "no answer");
    assert_true(breaker_is_open(a2));
    assert_false(breaker_is_open(b));
    char why[200];
    int probe;
    assert_int_equal(admit(b, &probe, why), 1);
    assert_int_equal(probe, 0);
    breaker_put(a1);
    breaker_put(a2); /* the last handle of A: freed (ASan reports a leak otherwise) */
    breaker_put(b);
    /* A fresh breaker for A starts closed. */
    breaker *a3 = breaker_get(BREAKER_STORE, URL_A, "the database", 1000);
    assert_false(breaker_is_open(a3));
    breaker_put(a3);
    /* No breaker (out of memory at open): every call goes. */
    assert_int_equal(breaker_admit(NULL, &probe, why, sizeof(why)), 1);
    assert_int_equal(probe, 0);
    breaker_report(NULL, 0, BREAKER_UNREACHABLE, "x");
    assert_null(breaker_get(BREAKER_STORE, NULL, "the database", 1000));
}

/* The same URL as a database and as a secrets backend: two breakers; the
 * secrets one says "has not answered" for its caller to name the backend,
 * the store's says "not connected" (what callers map to STORE_UNAVAILABLE). */
static void test_kinds_apart(void **state)
{
    (void)state;
    breaker *st = breaker_get(BREAKER_STORE, URL_A, "the database", 60000);
    breaker *se = breaker_get(BREAKER_SECRETS, URL_A, "Vault at http://127.0.0.1:1", 60000);
    assert_ptr_not_equal(st, se);
    char why[200];
    int probe;
    breaker_report(se, 0, BREAKER_UNREACHABLE, "Operation timed out");
    assert_true(breaker_is_open(se));
    assert_false(breaker_is_open(st));
    assert_int_equal(admit(st, &probe, why), 1);
    assert_int_equal(admit(se, &probe, why), 1);
    assert_true(probe > 0);
    assert_int_equal(admit(se, &probe, why), 0);
    assert_non_null(strstr(why, "has not answered for"));
    assert_non_null(strstr(why, "failing fast"));
    assert_null(strstr(why, "database"));
    breaker_report(st, 0, BREAKER_UNREACHABLE, "no answer");
    breaker_report(st, 0, BREAKER_UNREACHABLE, "no answer");
    assert_int_equal(admit(st, &probe, why), 1);
    assert_int_equal(admit(st, &probe, why), 0);
    assert_non_null(strstr(why, "not connected: the database has not answered"));
    assert_int_equal(breaker_fast_failures(se), 1);
    assert_int_equal(breaker_fast_failures(st), 1);
    breaker_put(st);
    breaker_put(se);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_closed_open_probe_close),
        cmocka_unit_test(test_any_answer_closes),
        cmocka_unit_test(test_probe_lease),
        cmocka_unit_test(test_one_per_url),
        cmocka_unit_test(test_kinds_apart),
    };
    return cmocka_run_group_tests_name("breaker", tests, NULL, NULL);
}
