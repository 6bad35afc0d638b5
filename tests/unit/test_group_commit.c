/* test_group_commit.c — writes that share a commit, on real SQLite files
 * and a real PostgreSQL server (pg_harness.h):
 *
 * 1. the "started" audit rows of concurrent commands (server/audit_starts.c
 *    over store_audit_start_many).  Covered: several rows in one
 *    transaction get distinct ids and are all there; a batch with one bad
 *    row (an org that does not exist: NOT_FOUND; an invalid field: ERR)
 *    writes nothing at all, on both engines; concurrent callers share
 *    commits: while the first leader waits for the database's write lock,
 *    the callers that arrive queue, and once the lock is free they are
 *    written as one batch (counted: two batches for eight rows); a row of a
 *    missing org or with an invalid field fails alone, with its message, and
 *    the others are written; a store locked past the deadline fails the
 *    whole batch at once with the transaction's error (no second wait row by
 *    row).
 *    Ends ride along: a finished command's end waits for the next start
 *    and is committed with it, or is written by the flush; a bad end, or a
 *    failed start beside it, does not take the rest down.  An end the store
 *    fails to write (SQLite locked past the deadline, PostgreSQL stopped) is
 *    kept and written once the store is back, by the next batch of starts
 *    or the flush; at most AUDIT_ENDS_MAX wait, the oldest dropped past it.
 *    The one row of a command refused before it was admitted, which the
 *    store fails, is kept the same way and written by the flush (its times
 *    the refusal's); kept ones are bounded by the bytes they hold too.
 * 2. connection bookkeeping in bulk (store_connection_write_many, what the
 *    tunnel hub writes for a reconnecting fleet).  Covered: ups, heartbeats
 *    and downs in one batch land as the single-row calls would, in order
 *    (an up then a down of one cluster reads disconnected), a heartbeat or
 *    down of an unknown cluster says NOT_FOUND and the rest is written; a
 *    row that fails its checks fails alone; a row of a missing org (the
 *    schema refuses it) makes the batch be written again row by row, that
 *    row NOT_FOUND, the others in; a locked store fails the batch once,
 *    every row STORE_ERR, nothing written, in one lock wait.
 *
 * The write lock is held by a separate sqlite3 connection (BEGIN
 * IMMEDIATE), and the test waits for the queue it expects (polled state,
 * never a fixed sleep) before letting go. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit_starts.h"
#include "db.h"
#include "pg_harness.h"
#include "store.h"

#define WAIT_MS 60000
#define STORE_PLACE_DB "aurora_group_commit"
#include "store_place.h"


typedef struct {
    store_place at; /* its database (store_place.h) */
    char org[STORE_ID_LEN];
} fixture;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static store_t *open_store(const fixture *f)
{
    store_t *s = NULL;
    char err[256] = "";
    if (store_open(f->at.url, &s, err, sizeof(err)) != STORE_OK)
        fail_msg("store_open(%s): %s", f->at.url, err);
    return s;
}

static void make_org(fixture *f)
{
    store_t *s = open_store(f);
    store_org o;
    assert_int_equal(store_org_create(s, "audit-starts", &o), STORE_OK);
    snprintf(f->org, sizeof(f->org), "%s", o.id);
    store_close(s);
}

static int setup_sqlite(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    store_place_sqlite(&f->at, "group-commit");
    /* A leader waiting for a held lock outlasts the test's own steps, also
     * on a loaded machine (the default 5 s might not). */
    db_set_limits(WAIT_MS, 0);
    make_org(f);
    *state = f;
    return 0;
}

static int setup_pg(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    store_place_pg(&f->at);
    /* A leader waiting for a held lock outlasts the test's own steps, also
     * on a loaded machine (the default 5 s might not). */
    db_set_limits(WAIT_MS, 0);
    make_org(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    store_place_remove(&f->at);
    free(f);
    return 0;
}

static void fill_row(store_audit *a, const char *org, const char *cluster)
{
    memset(a, 0, sizeof(*a));
    snprintf(a->org_id, sizeof(a->org_id), "%s", org);
    snprintf(a->user_id, sizeof(a->user_id), "user-1");
    snprintf(a->cluster_id, sizeof(a->cluster_id), "%s", cluster);
    snprintf(a->kind, sizeof(a->kind), "kubectl");
    snprintf(a->outcome, sizeof(a->outcome), "started");
    a->argv_json = "[\"get\",\"pods\"]";
    a->at = (int64_t)time(NULL);
}

/* Rows of the org, all "started". */
static size_t started_rows(const fixture *f)
{
    store_t *s = open_store(f);
    store_audit *list = NULL;
    size_t n = 0;
    assert_int_equal(store_audit_list(s, f->org, 100, &list, &n), STORE_OK);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(list[i].outcome, "started");
    store_audit_list_free(list, n);
    store_close(s);
    return n;
}

/* ---- store_audit_start_many -------------------------------------------------- */

static void test_many_all_or_nothing(void **state)
{
    fixture *f = *state;
    store_t *s = open_store(f);
    store_audit rows[3];
    store_audit *ptrs[3];
    for (int i = 0; i < 3; i++) {
        fill_row(&rows[i], f->org, "c-1");
        ptrs[i] = &rows[i];
    }
    assert_int_equal(store_audit_start_many(s, ptrs, 3), STORE_OK);
    assert_true(rows[0].id > 0 && rows[1].id > 0 && rows[2].id > 0);
    assert_true(rows[0].id != rows[1].id && rows[1].id != rows[2].id &&
                rows[0].id != rows[2].id);
    assert_int_equal(started_rows(f), 3);

    /* One row of an org that does not exist: nothing of the batch stays. */
    for (int i = 0; i < 3; i++)
        fill_row(&rows[i], i == 1 ? "org-that-does-not-exist" : f->org, "c-2");
    assert_int_equal(store_audit_start_many(s, ptrs, 3), STORE_NOT_FOUND);
    assert_true(rows[0].id == 0 && rows[1].id == 0 && rows[2].id == 0);
    assert_int_equal(started_rows(f), 3);

    /* An invalid row (empty kind) is refused before any SQL, same rule. */
    fill_row(&rows[1], f->org, "c-3");
    rows[2].kind[0] = '\0';
    fill_row(&rows[0], f->org, "c-3");
    assert_int_equal(store_audit_start_many(s, ptrs, 3), STORE_ERR);
    assert_int_equal(started_rows(f), 3);

    /* The handle is usable after the rollback. */
    fill_row(&rows[0], f->org, "c-4");
    assert_int_equal(store_audit_start_many(s, ptrs, 1), STORE_OK);
    assert_int_equal(started_rows(f), 4);
    assert_int_equal(store_audit_start_many(s, ptrs, 0), STORE_OK);
    store_close(s);
}

/* ---- audit_starts ---------------------------------------------------------- */

typedef struct {
    audit_starts *g;
    const fixture *f;
    store_audit row;
    int rc;
    char err[256];
    pthread_t th;
} caller;

static void *call_write(void *arg)
{
    caller *c = arg;
    store_t *s = open_store(c->f); /* each worker has its own handle */
    c->rc = audit_starts_write(c->g, s, &c->row, c->err, sizeof(c->err));
    store_close(s);
    return NULL;
}

static void start_caller(caller *c, audit_starts *g, const fixture *f, const char *org,
                         const char *kind)
{
    memset(c, 0, sizeof(*c));
    c->g = g;
    c->f = f;
    c->rc = -100;
    fill_row(&c->row, org, "c-group");
    snprintf(c->row.kind, sizeof(c->row.kind), "%s", kind);
    assert_int_equal(pthread_create(&c->th, NULL, call_write, c), 0);
}

/* Waits until the group shows `writing` rows in the leader's batch and
 * `waiting` queued behind it. */
static void wait_for_queue(audit_starts *g, size_t writing, size_t waiting)
{
    int64_t until = now_ms() + WAIT_MS;
    for (;;) {
        audit_starts_stats st = audit_starts_stats_now(g);
        if (st.writing == writing && st.waiting == waiting)
            return;
        if (now_ms() > until)
            fail_msg("queue never reached writing=%zu waiting=%zu (now %zu, %zu)", writing,
                     waiting, st.writing, st.waiting);
        usleep(1000);
    }
}

/* Another connection holds the write lock until released. */
static sqlite3 *hold_write_lock(const fixture *f)
{
    sqlite3 *db = NULL;
    char path[sizeof(f->at.dir) + 16];
    snprintf(path, sizeof(path), "%s/store.db", f->at.dir); /* the file the URL names */
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    return db;
}

static void release_write_lock(sqlite3 *db)
{
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static void test_concurrent_callers_share_a_commit(void **state)
{
    fixture *f = *state;
    audit_starts *g = audit_starts_new();
    assert_non_null(g);
    sqlite3 *lock = hold_write_lock(f);
    caller c[8];
    start_caller(&c[0], g, f, f->org, "kubectl");
    wait_for_queue(g, 1, 0); /* the first leader waits for the lock */
    for (int i = 1; i < 8; i++)
        start_caller(&c[i], g, f, f->org, "kubectl");
    wait_for_queue(g, 1, 7);
    release_write_lock(lock);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(pthread_join(c[i].th, NULL), 0);
        assert_int_equal(c[i].rc, STORE_OK);
        assert_string_equal(c[i].err, "");
        assert_true(c[i].row.id > 0);
        for (int j = 0; j < i; j++)
            assert_true(c[i].row.id != c[j].row.id);
    }
    audit_starts_stats st = audit_starts_stats_now(g);
    assert_int_equal(st.batches, 2); /* the first row alone, then the seven together */
    assert_int_equal(st.rows, 8);
    assert_int_equal(st.waiting, 0);
    assert_int_equal(st.writing, 0);
    assert_int_equal(started_rows(f), 8);
    audit_starts_free(g);
}

static void test_failed_batch_answers_each_row(void **state)
{
    fixture *f = *state;
    audit_starts *g = audit_starts_new();
    assert_non_null(g);
    sqlite3 *lock = hold_write_lock(f);
    caller c[5];
    start_caller(&c[0], g, f, f->org, "kubectl");
    wait_for_queue(g, 1, 0);
    for (int i = 1; i < 5; i++)
        start_caller(&c[i], g, f, i == 3 ? "org-that-does-not-exist" : f->org, "kubectl");
    wait_for_queue(g, 1, 4);
    release_write_lock(lock);
    for (int i = 0; i < 5; i++)
        assert_int_equal(pthread_join(c[i].th, NULL), 0);
    for (int i = 0; i < 5; i++) {
        if (i == 3) {
            assert_int_equal(c[i].rc, STORE_NOT_FOUND);
            assert_int_equal(c[i].row.id, 0);
            assert_true(c[i].err[0] != '\0');
        } else {
            assert_int_equal(c[i].rc, STORE_OK);
            assert_string_equal(c[i].err, "");
            assert_true(c[i].row.id > 0);
        }
    }
    assert_int_equal(started_rows(f), 4);
    audit_starts_free(g);
}

static void test_invalid_row_fails_alone(void **state)
{
    fixture *f = *state;
    audit_starts *g = audit_starts_new();
    assert_non_null(g);
    sqlite3 *lock = hold_write_lock(f);
    caller c[4];
    start_caller(&c[0], g, f, f->org, "kubectl");
    wait_for_queue(g, 1, 0);
    for (int i = 1; i < 4; i++)
        start_caller(&c[i], g, f, f->org, i == 2 ? "" : "kubectl"); /* 2: no kind */
    wait_for_queue(g, 1, 3);
    release_write_lock(lock);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_join(c[i].th, NULL), 0);
    for (int i = 0; i < 4; i++) {
        if (i == 2) {
            assert_int_equal(c[i].rc, STORE_ERR);
            assert_string_equal(c[i].err, "kind is empty");
            assert_int_equal(c[i].row.id, 0);
        } else {
            assert_int_equal(c[i].rc, STORE_OK);
            assert_true(c[i].row.id > 0);
        }
    }
    audit_starts_stats st = audit_starts_stats_now(g);
    assert_int_equal(st.batches, 2);
    assert_int_equal(started_rows(f), 3);
    audit_starts_free(g);
}

/* The store locked past the callers' deadline: the batch fails once, with
 * the transaction's error, and its rows are not retried one by one (which
 * would wait for the lock again per row: "writing audit record"). */
static void test_locked_store_fails_the_batch_once(void **state)
{
    fixture *f = *state;
    sqlite3 *lock = hold_write_lock(f);
    audit_starts *g = audit_starts_new();
    assert_non_null(g);
    caller c[6];
    db_set_limits(10000, 0); /* the first leader waits 10 s for the lock ... */
    start_caller(&c[0], g, f, f->org, "kubectl");
    wait_for_queue(g, 1, 0); /* (its handle is open) */
    db_set_limits(300, 0); /* ... the next one's handle 300 ms */
    for (int i = 1; i < 6; i++)
        start_caller(&c[i], g, f, f->org, "kubectl");
    wait_for_queue(g, 1, 5);
    for (int i = 0; i < 6; i++)
        assert_int_equal(pthread_join(c[i].th, NULL), 0);
    db_set_limits(WAIT_MS, 0);
    release_write_lock(lock);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(c[i].rc, STORE_ERR);
        assert_int_equal(c[i].row.id, 0);
        assert_non_null(strstr(c[i].err, i == 0 ? "writing audit record" : "beginning audit starts"));
    }
    audit_starts_stats st = audit_starts_stats_now(g);
    assert_int_equal(st.batches, 2);
    assert_int_equal(st.rows, 6);
    assert_int_equal(started_rows(f), 0);
    audit_starts_free(g);
}

/* Many callers, no lock held: whatever the grouping, every row is written
 * once and the counts add up. */
static void test_many_callers_every_row_once(void **state)
{
    fixture *f = *state;
    audit_starts *g = audit_starts_new();
    assert_non_null(g);
    enum { N = 24 };
    caller *c = calloc(N, sizeof(*c));
    assert_non_null(c);
    for (int i = 0; i < N; i++)
        start_caller(&c[i], g, f, f->org, "kubectl");
    for (int i = 0; i < N; i++) {
        assert_int_equal(pthread_join(c[i].th, NULL), 0);
        assert_int_equal(c[i].rc, STORE_OK);
    }
    audit_starts_stats st = audit_starts_stats_now(g);
    assert_int_equal(st.rows, N);
    assert_true(st.batches >= 1 && st.batches <= N);
    assert_int_equal(started_rows(f), N);
    free(c);
    audit_starts_free(g);
}

/* ---- ends riding with starts ---------------------------------------------- */

static store_audit_end end_of(const char *org, int64_t id, const char *outcome, int rc)
{
    store_audit_end e;
    memset(&e, 0, sizeof(e));
    snprintf(e.org_id, sizeof(e.org_id), "%s", org);
    snprintf(e.outcome, sizeof(e.outcome), "%s", outcome);
    e.id = id;
    e.return_code = rc;
    e.bytes_out = 11;
    e.duration_ms = 7;
    e.ended_at = (int64_t)time(NULL);
    e.rc = -99;
    return e;
}

/* The outcome of row id in the org ("" if there is no such row). */
static void outcome_of(const fixture *f, int64_t id, char *out, size_t cap, int *return_code)
{
    store_t *s = open_store(f);
    store_audit *list = NULL;
    size_t n = 0;
    assert_int_equal(store_audit_list(s, f->org, 100, &list, &n), STORE_OK);
    snprintf(out, cap, "%s", "");
    for (size_t i = 0; i < n; i++) {
        if (list[i].id == id) {
            snprintf(out, cap, "%s", list[i].outcome);
            *return_code = list[i].return_code;
        }
    }
    store_audit_list_free(list, n);
    store_close(s);
}

static int64_t start_one(audit_starts *g, store_t *s, const char *org, int expect)
{
    store_audit a;
    char err[256];
    fill_row(&a, org, "c-ends");
    int rc = audit_starts_write(g, s, &a, err, sizeof(err));
    assert_int_equal(rc, expect);
    return a.id;
}

/* A finished command's end waits for the next start and is committed with
 * it; ends no start takes are written by audit_starts_flush_ends; an end of
 * a row that does not exist is logged and the start beside it still goes in;
 * when the start fails (its org is gone) the ends are written on their own;
 * ends still queued when the group is freed are reported, not leaked. */
static void test_ends_ride_with_starts(void **state)
{
    fixture *f = *state;
    audit_starts *g = audit_starts_new();
    assert_non_null(g);
    store_t *s = open_store(f);
    char outcome[32];
    int rc = 0;

    int64_t first = start_one(g, s, f->org, STORE_OK);
    store_audit_end e = end_of(f->org, first, "ok", 0);
    assert_int_equal(audit_starts_add_end(g, &e), 0);
    audit_starts_stats st = audit_starts_stats_now(g);
    assert_int_equal(st.ends_waiting, 1);
    outcome_of(f, first, outcome, sizeof(outcome), &rc);
    assert_string_equal(outcome, "started"); /* not written yet */

    int64_t second = start_one(g, s, f->org, STORE_OK);
    st = audit_starts_stats_now(g);
    assert_int_equal(st.ends_waiting, 0);
    assert_int_equal(st.ends_written, 1);
    assert_int_equal(st.ends_with_starts, 1);
    assert_int_equal(st.batches, 2);
    outcome_of(f, first, outcome, sizeof(outcome), &rc);
    assert_string_equal(outcome, "ok");
    assert_int_equal(rc, 0);

    /* No start comes: the flush writes it. */
    e = end_of(f->org, second, "failed", 3);
    assert_int_equal(audit_starts_add_end(g, &e), 0);
    audit_starts_flush_ends(g, s);
    st = audit_starts_stats_now(g);
    assert_int_equal(st.ends_waiting, 0);
    assert_int_equal(st.ends_written, 2);
    assert_int_equal(st.ends_with_starts, 1);
    outcome_of(f, second, outcome, sizeof(outcome), &rc);
    assert_string_equal(outcome, "failed");
    assert_int_equal(rc, 3);
    audit_starts_flush_ends(g, s); /* nothing queued: nothing happens */
    assert_int_equal(audit_starts_stats_now(g).ends_written, 2);

    /* An end of no such row beside a good one: the start and the good end go in. */
    int64_t third = start_one(g, s, f->org, STORE_OK);
    e = end_of(f->org, 4242, "ok", 0);
    assert_int_equal(audit_starts_add_end(g, &e), 0);
    e = end_of(f->org, third, "timeout", 124);
    assert_int_equal(audit_starts_add_end(g, &e), 0);
    int64_t fourth = start_one(g, s, f->org, STORE_OK);
    assert_true(fourth > 0);
    st = audit_starts_stats_now(g);
    assert_int_equal(st.ends_with_starts, 3);
    outcome_of(f, third, outcome, sizeof(outcome), &rc);
    assert_string_equal(outcome, "timeout");

    /* The start fails (its org does not exist): the end is written alone. */
    e = end_of(f->org, fourth, "ok", 0);
    assert_int_equal(audit_starts_add_end(g, &e), 0);
    assert_int_equal(start_one(g, s, "org-that-does-not-exist", STORE_NOT_FOUND), 0);
    st = audit_starts_stats_now(g);
    assert_int_equal(st.ends_waiting, 0);
    assert_int_equal(st.ends_written, 5);
    assert_int_equal(st.ends_with_starts, 3);
    outcome_of(f, fourth, outcome, sizeof(outcome), &rc);
    assert_string_equal(outcome, "ok");

    /* Still queued at the end: reported by audit_starts_free (ASan checks
     * nothing leaks); the row stays "started" for the sweep. */
    int64_t fifth = start_one(g, s, f->org, STORE_OK);
    e = end_of(f->org, fifth, "ok", 0);
    assert_int_equal(audit_starts_add_end(g, &e), 0);
    audit_starts_free(g);
    outcome_of(f, fifth, outcome, sizeof(outcome), &rc);
    assert_string_equal(outcome, "started");
    store_close(s);
}

/* The store fails for a while: SQLite's write lock held by another
 * connection (the handles under test wait LOCK_WAIT_MS for it), or the
 * PostgreSQL server stopped (a real outage). */
#define LOCK_WAIT_MS 300
typedef struct {
    sqlite3 *lock;
} outage;

static void store_down(const fixture *f, outage *o)
{
    if (store_place_is_pg(&f->at))
        pg_stop(&g_pg);
    else
        o->lock = hold_write_lock(f);
}

/* Until a new handle answers (the server may take a moment). */
static void store_up(const fixture *f, outage *o)
{
    if (!store_place_is_pg(&f->at)) {
        release_write_lock(o->lock);
        o->lock = NULL;
        return;
    }
    assert_int_equal(pg_start(&g_pg), 0);
    int64_t until = now_ms() + WAIT_MS;
    for (;;) {
        store_t *s = NULL;
        char err[256] = "";
        store_org o1;
        int rc = store_open(f->at.url, &s, err, sizeof(err));
        if (rc == STORE_OK)
            rc = store_org_first(s, &o1);
        store_close(s);
        if (rc == STORE_OK)
            return;
        if (now_ms() > until)
            fail_msg("the store does not answer again: %s", err);
        usleep(20000);
    }
}

static void expect_outcome(const fixture *f, int64_t id, const char *want, int want_rc)
{
    char outcome[32];
    int rc = -100;
    outcome_of(f, id, outcome, sizeof(outcome), &rc);
    assert_string_equal(outcome, want);
    if (want_rc != -100)
        assert_int_equal(rc, want_rc);
}

/* An end the store failed to write (down, locked past its deadline) is not
 * let go: it waits in the queue, in order, through every failed try (a
 * flush, a batch of starts that fails too), and is written once the store
 * is back, with the next start or by the next flush. */
static void test_ends_kept_while_store_fails(void **state)
{
    fixture *f = *state;
    int pg = store_place_is_pg(&f->at);
    if (!pg)
        db_set_limits(LOCK_WAIT_MS, 0); /* the handle below fails after 300 ms */
    audit_starts *g = audit_starts_new();
    assert_non_null(g);
    store_t *s = open_store(f);
    db_set_limits(WAIT_MS, 0);
    int64_t a = start_one(g, s, f->org, STORE_OK);
    int64_t b = start_one(g, s, f->org, STORE_OK);
    int64_t c = start_one(g, s, f->org, STORE_OK);
    outage o = { 0 };

    store_down(f, &o);
    store_audit_end e = end_of(f->org, a, "ok", 0);
    assert_int_equal(audit_starts_add_end(g, &e), 0);
    audit_starts_flush_ends(g, s); /* fails: kept, and the flush returns */
    audit_starts_stats st = audit_starts_stats_now(g);
    assert_int_equal(st.ends_waiting, 1);
    assert_int_equal(st.ends_retried, 1);
    assert_int_equal(st.ends_dropped, 0);
    /* A start while the store fails carries the ends; they fail with it
     * and are kept again. */
    e = end_of(f->org, b, "failed", 3);
    assert_int_equal(audit_starts_add_end(g, &e), 0);
    assert_int_equal(start_one(g, s, f->org, STORE_ERR), 0);
    st = audit_starts_stats_now(g);
    assert_int_equal(st.ends_waiting, 2);
    assert_int_equal(st.ends_retried, 3);
    assert_int_equal(st.ends_with_starts, 0);
    audit_starts_flush_ends(g, s);
    st = audit_starts_stats_now(g);
    assert_int_equal(st.ends_waiting, 2);
    assert_int_equal(st.ends_retried, 5);
    store_up(f, &o);

    /* Back: the next start carries both into its commit. */
    expect_outcome(f, a, "started", -100);
    int64_t d = start_one(g, s, f->org, STORE_OK);
    assert_true(d > 0);
    st = audit_starts_stats_now(g);
    assert_int_equal(st.ends_waiting, 0);
    assert_int_equal(st.ends_with_starts, 2);
    expect_outcome(f, a, "ok", 0);
    expect_outcome(f, b, "failed", 3);

    /* Down again, no start comes: the flush writes it once it is back. */
    store_down(f, &o);
    e = end_of(f->org, c, "timeout", 124);
    assert_int_equal(audit_starts_add_end(g, &e), 0);
    audit_starts_flush_ends(g, s);
    assert_int_equal(audit_starts_stats_now(g).ends_waiting, 1);
    store_up(f, &o);
    audit_starts_flush_ends(g, s);
    st = audit_starts_stats_now(g);
    assert_int_equal(st.ends_waiting, 0);
    assert_int_equal(st.ends_retried, 6);
    assert_int_equal(st.ends_dropped, 0);
    expect_outcome(f, c, "timeout", 124);
    expect_outcome(f, d, "started", -100);
    /* An end of no such row is the row's own fault: not kept. */
    e = end_of(f->org, 4242, "ok", 0);
    assert_int_equal(audit_starts_add_end(g, &e), 0);
    audit_starts_flush_ends(g, s);
    st = audit_starts_stats_now(g);
    assert_int_equal(st.ends_waiting, 0);
    assert_int_equal(st.ends_retried, 6);
    audit_starts_free(g);
    store_close(s);
}

/* The rows of the SQLite file still "started", at most cap of their ids
 * (lowest first) in ids; returns how many there are. */
static size_t started_ids(const fixture *f, int64_t *ids, size_t cap)
{
    sqlite3 *db = NULL;
    char path[sizeof(f->at.dir) + 16];
    snprintf(path, sizeof(path), "%s/store.db", f->at.dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT id FROM audit_log WHERE outcome = 'started'"
                                        " ORDER BY id",
                                        -1, &q, NULL),
                     SQLITE_OK);
    size_t n = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        if (n < cap)
            ids[n] = sqlite3_column_int64(q, 0);
        n++;
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    return n;
}

/* At most AUDIT_ENDS_MAX ends wait: ends kept while the store was locked
 * count, and past the bound the oldest are dropped (counted); the rest are
 * all written once the store is back. */
static void test_kept_ends_bounded(void **state)
{
    fixture *f = *state;
    enum { N = AUDIT_ENDS_MAX + 3, CHUNK = 500 };
    store_audit *rows = calloc(N, sizeof(*rows));
    store_audit **ptrs = calloc(N, sizeof(*ptrs));
    assert_non_null(rows);
    assert_non_null(ptrs);
    store_t *s = open_store(f);
    for (size_t i = 0; i < N; i++) {
        fill_row(&rows[i], f->org, "c-bound");
        ptrs[i] = &rows[i];
    }
    for (size_t i = 0; i < N; i += CHUNK)
        assert_int_equal(store_audit_start_many(s, ptrs + i, N - i < CHUNK ? N - i : CHUNK),
                         STORE_OK);
    store_close(s);
    db_set_limits(LOCK_WAIT_MS, 0);
    s = open_store(f);
    db_set_limits(WAIT_MS, 0);
    audit_starts *g = audit_starts_new();
    assert_non_null(g);

    outage o = { 0 };
    store_down(f, &o);
    for (size_t i = 0; i < 10; i++) {
        store_audit_end e = end_of(f->org, rows[i].id, "ok", 0);
        assert_int_equal(audit_starts_add_end(g, &e), 0);
    }
    audit_starts_flush_ends(g, s); /* the first 64 fail: all ten kept */
    audit_starts_stats st = audit_starts_stats_now(g);
    assert_int_equal(st.ends_waiting, 10);
    assert_int_equal(st.ends_retried, 10);
    for (size_t i = 10; i < N; i++) {
        store_audit_end e = end_of(f->org, rows[i].id, "ok", 0);
        assert_int_equal(audit_starts_add_end(g, &e), 0);
    }
    st = audit_starts_stats_now(g);
    assert_int_equal(st.ends_waiting, AUDIT_ENDS_MAX);
    assert_int_equal(st.ends_dropped, 3);
    store_up(f, &o);

    /* Written through a handle with the usual lock wait: the ~160
     * transactions of this flush pass the checkpoint threshold, and the
     * file's checkpointer may hold the write lock (its copy and fsync)
     * longer than the 300 ms handle waits on a loaded disk. */
    store_t *patient = open_store(f);
    audit_starts_flush_ends(g, patient);
    store_close(patient);
    st = audit_starts_stats_now(g);
    assert_int_equal(st.ends_waiting, 0);
    assert_int_equal(st.ends_dropped, 3);
    /* The three oldest were dropped; every other row has its outcome. */
    int64_t left[4];
    assert_int_equal(started_ids(f, left, 4), 3);
    for (int i = 0; i < 3; i++)
        assert_true(left[i] == rows[0].id || left[i] == rows[1].id || left[i] == rows[2].id);
    audit_starts_free(g);
    store_close(s);
    free(ptrs);
    free(rows);
}

/* ---- final rows of refused commands ------------------------------------------ */

static void fill_final(store_audit *a, const char *org, const char *cluster, const char *outcome)
{
    fill_row(a, org, cluster);
    snprintf(a->outcome, sizeof(a->outcome), "%s", outcome);
    snprintf(a->kind, sizeof(a->kind), "cloud_exec");
    a->at = (int64_t)time(NULL) - 100; /* refused a while before it is written */
}

/* The org's rows of cluster: how many, and the outcome and times of the last. */
static size_t rows_of(const fixture *f, const char *cluster, char *outcome, size_t cap,
                      int64_t *at, int64_t *ended_at)
{
    store_t *s = open_store(f);
    store_audit *list = NULL;
    size_t n = 0, k = 0;
    assert_int_equal(store_audit_list(s, f->org, 100, &list, &n), STORE_OK);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i].cluster_id, cluster) != 0)
            continue;
        k++;
        if (outcome)
            snprintf(outcome, cap, "%s", list[i].outcome);
        if (at)
            *at = list[i].at;
        if (ended_at)
            *ended_at = list[i].ended_at;
    }
    store_audit_list_free(list, n);
    store_close(s);
    return k;
}

/* The one row of a command refused before it was admitted (cluster_busy, a
 * cloud_exec refused) the store fails to write is kept with the ends and
 * written by the flush once the store is back, its times those of the
 * refusal; one refused on its own merits (no such org, invalid) is not
 * kept.  It used to be logged and lost. */
static void test_refusal_rows_kept_while_store_fails(void **state)
{
    fixture *f = *state;
    int pg = store_place_is_pg(&f->at);
    if (!pg)
        db_set_limits(LOCK_WAIT_MS, 0);
    audit_starts *g = audit_starts_new();
    assert_non_null(g);
    store_t *s = open_store(f);
    db_set_limits(WAIT_MS, 0);
    int64_t a = start_one(g, s, f->org, STORE_OK);
    char outcome[32];
    int64_t at = 0, ended_at = 0;

    /* The store answers: written at once, nothing kept. */
    store_audit r;
    fill_final(&r, f->org, "c-refused-0", "refused");
    assert_int_equal(audit_starts_write_final(g, s, &r), 0);
    assert_int_equal(rows_of(f, "c-refused-0", outcome, sizeof(outcome), &at, &ended_at), 1);
    assert_string_equal(outcome, "refused");
    assert_int_equal(audit_starts_stats_now(g).ends_waiting, 0);

    outage o = { 0 };
    store_down(f, &o);
    fill_final(&r, f->org, "c-refused-1", "cluster_busy");
    int64_t refused_at = r.at;
    assert_int_equal(audit_starts_write_final(g, s, &r), 0);
    audit_starts_stats st = audit_starts_stats_now(g);
    assert_int_equal(st.ends_waiting, 1);
    assert_int_equal(st.ends_retried, 1);
    /* An end behind it; a start while the store fails fails, and takes no
     * final row along (a batch of starts carries ends only). */
    store_audit_end e = end_of(f->org, a, "ok", 0);
    assert_int_equal(audit_starts_add_end(g, &e), 0);
    assert_int_equal(start_one(g, s, f->org, STORE_ERR), 0);
    st = audit_starts_stats_now(g);
    assert_int_equal(st.ends_waiting, 2);
    assert_int_equal(st.ends_retried, 1);
    /* The flush tries the row, fails, and keeps both (the end untried). */
    audit_starts_flush_ends(g, s);
    st = audit_starts_stats_now(g);
    assert_int_equal(st.ends_waiting, 2);
    assert_int_equal(st.ends_retried, 3);
    assert_int_equal(st.ends_dropped, 0);
    store_up(f, &o);
    assert_int_equal(rows_of(f, "c-refused-1", NULL, 0, NULL, NULL), 0);

    audit_starts_flush_ends(g, s);
    st = audit_starts_stats_now(g);
    assert_int_equal(st.ends_waiting, 0);
    assert_int_equal(st.ends_retried, 3);
    assert_int_equal(rows_of(f, "c-refused-1", outcome, sizeof(outcome), &at, &ended_at), 1);
    assert_string_equal(outcome, "cluster_busy");
    assert_int_equal(at, refused_at);
    assert_int_equal(ended_at, refused_at); /* when refused, not when written */
    expect_outcome(f, a, "ok", 0);

    /* Its own fault: not kept (a missing org, an invalid row). */
    fill_final(&r, "org-that-does-not-exist", "c-refused-2", "refused");
    assert_int_equal(audit_starts_write_final(g, s, &r), -1);
    fill_final(&r, f->org, "c-refused-2", "refused");
    r.argv_json = NULL;
    assert_int_equal(audit_starts_write_final(g, s, &r), -1);
    st = audit_starts_stats_now(g);
    assert_int_equal(st.ends_waiting, 0);
    assert_int_equal(st.ends_retried, 3);

    /* Queued without a try (the loop thread's way): the flush writes it;
     * one still queued when the group is freed is reported, not leaked. */
    fill_final(&r, f->org, "c-refused-3", "refused");
    assert_int_equal(audit_starts_add_final(g, &r), 0);
    assert_int_equal(audit_starts_stats_now(g).ends_waiting, 1);
    audit_starts_flush_ends(g, s);
    assert_int_equal(rows_of(f, "c-refused-3", NULL, 0, NULL, NULL), 1);
    fill_final(&r, f->org, "c-refused-4", "refused");
    assert_int_equal(audit_starts_add_final(g, &r), 0);
    audit_starts_free(g);
    assert_int_equal(rows_of(f, "c-refused-4", NULL, 0, NULL, NULL), 0);
    store_close(s);
}

/* Kept refusal rows hold their argv: past AUDIT_KEPT_BYTES_MAX of them the
 * oldest are dropped (counted), however few they are. */
static void test_kept_refusal_rows_bounded_in_bytes(void **state)
{
    fixture *f = *state;
    enum { ARGV = 1000 * 1000 };
    size_t fit = AUDIT_KEPT_BYTES_MAX / (ARGV + sizeof(store_audit) + 1);
    char *argv = malloc(ARGV + 1);
    assert_non_null(argv);
    memset(argv, 'x', ARGV);
    argv[0] = '[';
    argv[1] = '"';
    argv[ARGV - 2] = '"';
    argv[ARGV - 1] = ']';
    argv[ARGV] = '\0';
    audit_starts *g = audit_starts_new();
    assert_non_null(g);
    for (size_t i = 0; i <= fit; i++) {
        store_audit r;
        char cluster[32];
        snprintf(cluster, sizeof(cluster), "c-big-%zu", i);
        fill_final(&r, f->org, cluster, "refused");
        r.argv_json = argv;
        assert_int_equal(audit_starts_add_final(g, &r), 0);
    }
    audit_starts_stats st = audit_starts_stats_now(g);
    assert_int_equal(st.ends_waiting, fit);
    assert_int_equal(st.ends_dropped, 1);
    store_t *s = open_store(f);
    audit_starts_flush_ends(g, s);
    assert_int_equal(audit_starts_stats_now(g).ends_waiting, 0);
    assert_int_equal(rows_of(f, "c-big-0", NULL, 0, NULL, NULL), 0); /* the oldest dropped */
    char last[32];
    snprintf(last, sizeof(last), "c-big-%zu", fit);
    assert_int_equal(rows_of(f, "c-big-1", NULL, 0, NULL, NULL), 1);
    assert_int_equal(rows_of(f, last, NULL, 0, NULL, NULL), 1);
    audit_starts_free(g);
    store_close(s);
    free(argv);
}

/* ---- store_connection_write_many ------------------------------------------- */

static void conn_up(store_conn_write *w, const char *org, const char *cluster)
{
    memset(w, 0, sizeof(*w));
    w->what = STORE_CONN_UP;
    snprintf(w->c.cluster_id, sizeof(w->c.cluster_id), "%s", cluster);
    snprintf(w->c.org_id, sizeof(w->c.org_id), "%s", org);
    snprintf(w->c.cluster_name, sizeof(w->c.cluster_name), "name-%s", cluster);
    snprintf(w->c.agent_version, sizeof(w->c.agent_version), "1.2.3");
    snprintf(w->c.protocol, sizeof(w->c.protocol), "aurora-tunnel.v2");
    w->c.connected_at = (int64_t)time(NULL);
    w->rc = -99; /* must be overwritten */
}

static void conn_event(store_conn_write *w, store_conn_event what, const char *cluster)
{
    memset(w, 0, sizeof(*w));
    w->what = what;
    snprintf(w->c.cluster_id, sizeof(w->c.cluster_id), "%s", cluster);
    w->now = (int64_t)time(NULL);
    w->rc = -99;
}

/* connected count of a cluster's row, -1 when there is none */
static int connected_of(store_t *s, const char *org, const char *cluster, int64_t *disc)
{
    store_connection c;
    int rc = store_connection_get(s, org, cluster, &c);
    if (rc == STORE_NOT_FOUND)
        return -1;
    assert_int_equal(rc, STORE_OK);
    if (disc)
        *disc = c.disconnected_at;
    return c.connected;
}

static void test_conn_batch_in_order(void **state)
{
    fixture *f = *state;
    store_t *s = open_store(f);
    store_conn_write w[6];
    conn_up(&w[0], f->org, "cl-a");
    conn_up(&w[1], f->org, "cl-b");
    conn_event(&w[2], STORE_CONN_HEARTBEAT, "cl-a");
    conn_event(&w[3], STORE_CONN_DOWN, "cl-b");
    conn_event(&w[4], STORE_CONN_DOWN, "cl-nobody");
    conn_up(&w[5], f->org, "cl-a"); /* a second session of cl-a */
    assert_int_equal(store_connection_write_many(s, w, 6, "ins-1"), STORE_OK);
    int want[6] = { STORE_OK, STORE_OK, STORE_OK, STORE_OK, STORE_NOT_FOUND, STORE_OK };
    for (int i = 0; i < 6; i++)
        assert_int_equal(w[i].rc, want[i]);
    int64_t disc = -1;
    assert_int_equal(connected_of(s, f->org, "cl-a", &disc), 2);
    assert_int_equal(disc, 0);
    assert_int_equal(connected_of(s, f->org, "cl-b", &disc), 0);
    assert_true(disc > 0); /* up then down, in that order */
    assert_int_equal(connected_of(s, f->org, "cl-nobody", NULL), -1);
    /* an empty batch and a batch of one (no transaction of its own) */
    assert_int_equal(store_connection_write_many(s, w, 0, "ins-1"), STORE_OK);
    conn_event(&w[0], STORE_CONN_DOWN, "cl-a");
    assert_int_equal(store_connection_write_many(s, w, 1, "ins-1"), STORE_OK);
    assert_int_equal(w[0].rc, STORE_OK);
    assert_int_equal(connected_of(s, f->org, "cl-a", NULL), 1);
    store_close(s);
}

static void test_conn_bad_rows_fail_alone(void **state)
{
    fixture *f = *state;
    store_t *s = open_store(f);
    store_conn_write w[5];
    conn_up(&w[0], f->org, "cl-1");
    conn_up(&w[1], f->org, ""); /* fails its checks */
    conn_up(&w[2], "org-that-does-not-exist", "cl-2"); /* refused by the schema */
    conn_up(&w[3], f->org, "cl-3");
    conn_event(&w[4], STORE_CONN_HEARTBEAT, "cl-1");
    assert_int_equal(store_connection_write_many(s, w, 5, "ins-1"), STORE_OK);
    assert_int_equal(w[0].rc, STORE_OK);
    assert_int_equal(w[1].rc, STORE_ERR);
    assert_int_equal(w[2].rc, STORE_NOT_FOUND);
    assert_int_equal(w[3].rc, STORE_OK);
    assert_int_equal(w[4].rc, STORE_OK);
    /* written once each, not twice (the lost transaction's rows again) */
    assert_int_equal(connected_of(s, f->org, "cl-1", NULL), 1);
    assert_int_equal(connected_of(s, f->org, "cl-3", NULL), 1);
    assert_int_equal(connected_of(s, "org-that-does-not-exist", "cl-2", NULL), -1);
    /* the handle is usable after the rollback */
    conn_up(&w[0], f->org, "cl-4");
    conn_up(&w[1], f->org, "cl-5");
    assert_int_equal(store_connection_write_many(s, w, 2, "ins-1"), STORE_OK);
    assert_int_equal(connected_of(s, f->org, "cl-5", NULL), 1);
    store_close(s);
}

/* A store locked past the deadline: one wait for the whole batch, then
 * every row reads STORE_ERR and nothing is written. */
#define LOCK_LIMIT_MS 2000
static void test_conn_locked_store_fails_once(void **state)
{
    fixture *f = *state;
    store_t *s = open_store(f);
    store_conn_write w[8];
    for (int i = 0; i < 8; i++) {
        char cl[16];
        snprintf(cl, sizeof(cl), "cl-l%d", i);
        conn_up(&w[i], f->org, cl);
    }
    sqlite3 *lock = hold_write_lock(f);
    db_set_limits(LOCK_LIMIT_MS, 0);
    store_close(s);
    s = open_store(f); /* opened with that limit */
    int64_t t0 = now_ms();
    assert_int_equal(store_connection_write_many(s, w, 8, "ins-1"), STORE_ERR);
    int64_t took = now_ms() - t0;
    db_set_limits(WAIT_MS, 0);
    release_write_lock(lock);
    for (int i = 0; i < 8; i++)
        assert_int_equal(w[i].rc, STORE_ERR);
    /* one wait, not eight: a row-by-row retry would take 16 s */
    assert_true(took < 8 * LOCK_LIMIT_MS);
    assert_non_null(strstr(store_errmsg(s), "beginning connection writes"));
    for (int i = 0; i < 8; i++)
        assert_int_equal(connected_of(s, f->org, w[i].c.cluster_id, NULL), -1);
    store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_many_all_or_nothing, setup_sqlite, teardown),
        cmocka_unit_test_setup_teardown(test_many_all_or_nothing, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_callers_share_a_commit, setup_sqlite,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failed_batch_answers_each_row, setup_sqlite,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_invalid_row_fails_alone, setup_sqlite, teardown),
        cmocka_unit_test_setup_teardown(test_locked_store_fails_the_batch_once, setup_sqlite,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_many_callers_every_row_once, setup_sqlite, teardown),
        cmocka_unit_test_setup_teardown(test_many_callers_every_row_once, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_ends_ride_with_starts, setup_sqlite, teardown),
        cmocka_unit_test_setup_teardown(test_ends_ride_with_starts, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_ends_kept_while_store_fails, setup_sqlite, teardown),
        cmocka_unit_test_setup_teardown(test_ends_kept_while_store_fails, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_kept_ends_bounded, setup_sqlite, teardown),
        cmocka_unit_test_setup_teardown(test_refusal_rows_kept_while_store_fails, setup_sqlite,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_refusal_rows_kept_while_store_fails, setup_pg,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_kept_refusal_rows_bounded_in_bytes, setup_sqlite,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_conn_batch_in_order, setup_sqlite, teardown),
        cmocka_unit_test_setup_teardown(test_conn_batch_in_order, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_conn_bad_rows_fail_alone, setup_sqlite, teardown),
        cmocka_unit_test_setup_teardown(test_conn_bad_rows_fail_alone, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_conn_locked_store_fails_once, setup_sqlite,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, store_place_group_setup, store_place_group_teardown);
}
