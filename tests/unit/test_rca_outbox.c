/* test_rca_outbox.c — the RCA outbox (server/store_rca.c, rca_outbox.c):
 * claim with a lease, ack/nack with the claim token, exponential backoff,
 * dead jobs, lease expiry, restart, and concurrent claimers getting disjoint
 * jobs (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: BEGIN IMMEDIATE).  Runs
 * on a SQLite file and on a throwaway PostgreSQL server (pg_harness.h).
 * Jobs are made the real way, by incident_ingest() opening incidents. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto.h"
#include "db.h"
#include "incidents.h"
#include "pg_harness.h"
#include "rca_outbox.h"
#include "store.h"
#include "store_internal.h"
#include "store_rca.h"

#define STORE_PLACE_DB "aurora_rca"
#include "store_place.h"

/* 2026-11-02T10:00:00Z */
#define T0 1793613600LL
#define DAY 86400LL

/* ---- fixtures ---------------------------------------------------------------- */

typedef struct {
    store_t *s;
    worker_ctx w;
    store_place at; /* its database (store_place.h) */
    char org[STORE_ID_LEN];
    int delivery; /* next delivery number */
} fixture;

static store_t *open_store(const char *url)
{
    store_t *s = NULL;
    char err[256] = "";
    if (store_open(url, &s, err, sizeof(err)) != STORE_OK)
        fail_msg("store_open: %s", err);
    return s;
}

static void init_fixture(fixture *f)
{
    f->s = open_store(f->at.url);
    f->w.store = f->s;
    store_org o;
    assert_int_equal(store_org_create(f->s, "acme", &o), STORE_OK);
    memcpy(f->org, o.id, sizeof(f->org));
}

static int setup_file(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    store_place_sqlite(&f->at, "rca");
    init_fixture(f);
    *state = f;
    return 0;
}

static int setup_pg(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    store_place_pg(&f->at);
    init_fixture(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    db_set_limits(0, 0); /* a failed test may have left short ones */
    store_close(f->s);
    store_place_remove(&f->at);
    free(f);
    return 0;
}

/* ---- reading what was stored (through the engine, not the store) ------------- */

/* The single integer a query returns. */
static int64_t sql_int(fixture *f, const char *sql, const char *arg)
{
    const db_engine *eng = db_engine_for(f->at.url);
    assert_non_null(eng);
    db_t *db = NULL;
    char err[256];
    assert_int_equal(eng->open(f->at.url, &db, err, sizeof(err)), DB_OK);
    db_param p[] = { DB_P_TEXT(arg) };
    db_result r;
    if (eng->query(db, sql, p, arg ? 1 : 0, &r) != DB_OK)
        fail_msg("%s: %s", sql, eng->errmsg(db));
    assert_int_equal(r.nrows, 1);
    const char *v = db_cell(&r, 0, 0);
    int64_t out = v ? strtoll(v, NULL, 10) : -1;
    db_result_free(&r);
    eng->close(db);
    return out;
}

/* ---- helpers ------------------------------------------------------------------------ */

static const store_rca_policy POL = { .max_attempts = 3, .backoff_s = 30, .backoff_max_s = 50 };

/* n incidents (each with its job), created at T0. */
static void make_jobs(fixture *f, int n)
{
    for (int i = 0; i < n; i++) {
        char delivery[32], fp[32];
        snprintf(delivery, sizeof(delivery), "whd_%d", i);
        snprintf(fp, sizeof(fp), "fp-%d", i);
        incident_alert a = { .source = "sentry", .delivery_id = delivery, .fingerprint = fp,
                             .state = ALERT_FIRING, .title = "boom", .severity = "error",
                             .occurred_at = T0 };
        incident_outcome o;
        char err[256];
        if (incident_ingest(&f->w, f->org, NULL, &a, T0, &o, err, sizeof(err)) != 0)
            fail_msg("ingest: %s", err);
        assert_int_equal(o.result, INGEST_CREATED);
    }
}

static void hash_of(int i, char out[65])
{
    char tok[32];
    snprintf(tok, sizeof(tok), "claim-%d", i);
    crypto_sha256_hex(tok, strlen(tok), out);
}

/* Claims up to n jobs at now with hashes starting at seed. */
static size_t claim(fixture *f, int64_t now, int64_t lease, size_t n, int seed, store_rca_job **out)
{
    char hashes[RCA_CLAIM_MAX][65];
    for (size_t i = 0; i < n; i++)
        hash_of(seed + (int)i, hashes[i]);
    size_t got = 0;
    if (store_rca_claim(f->s, now, lease, &POL, (const char(*)[65])hashes, n, out, &got) !=
        STORE_OK)
        fail_msg("claim: %s", store_errmsg(f->s));
    return got;
}

/* ---- tests ------------------------------------------------------------------------- */

static void test_claim_ack(void **state)
{
    fixture *f = *state;
    make_jobs(f, 3);
    store_rca_job *jobs;
    size_t n = claim(f, T0, 60, 2, 0, &jobs);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(jobs[i].status, "claimed");
        assert_int_equal(jobs[i].attempts, 1);
        assert_int_equal(jobs[i].lease_until, T0 + 60);
        assert_string_equal(jobs[i].source_type, "sentry");
        cJSON *p = cJSON_Parse(jobs[i].payload);
        assert_non_null(p);
        const cJSON *inc = cJSON_GetObjectItemCaseSensitive(p, "incident");
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(inc, "id")->valuestring,
                            jobs[i].incident_id);
        assert_non_null(strstr(cJSON_GetObjectItemCaseSensitive(p, "summary")->valuestring,
                               "critical sentry alert: boom"));
        cJSON_Delete(p);
    }
    /* The third only; the two leased are not handed out twice. */
    store_rca_job *more;
    assert_int_equal(claim(f, T0 + 1, 60, 10, 10, &more), 1);
    assert_string_not_equal(more[0].id, jobs[0].id);
    assert_string_not_equal(more[0].id, jobs[1].id);
    store_rca_jobs_free(more, 1);

    char h0[65], wrong[65];
    hash_of(0, h0);
    hash_of(1, wrong); /* job 1's token: valid, but not job 0's */
    assert_int_equal(store_rca_ack(f->s, jobs[0].id, wrong, T0 + 2), STORE_CONFLICT);
    assert_int_equal(store_rca_ack(f->s, jobs[0].id, h0, T0 + 2), STORE_OK);
    assert_int_equal(store_rca_ack(f->s, jobs[0].id, h0, T0 + 3), STORE_OK); /* idempotent */
    assert_int_equal(store_rca_ack(f->s, "rca_nosuchjob", h0, T0 + 3), STORE_NOT_FOUND);
    assert_int_equal(store_rca_ack(f->s, jobs[0].id, "not-a-hash", T0 + 3), STORE_ERR);
    char st[RCA_STATUS_LEN];
    assert_int_equal(store_rca_nack(f->s, jobs[0].id, h0, "late", T0 + 3, &POL, st, NULL),
                     STORE_CONFLICT);
    store_rca_job j;
    assert_int_equal(store_rca_get(f->s, jobs[0].id, &j), STORE_OK);
    assert_string_equal(j.status, "done");
    assert_int_equal(j.acked_at, T0 + 2);
    store_rca_job_free(&j);
    int64_t counts[4];
    assert_int_equal(store_rca_counts(f->s, counts), STORE_OK);
    assert_int_equal(counts[0], 0);
    assert_int_equal(counts[1], 2);
    assert_int_equal(counts[2], 1);
    assert_int_equal(counts[3], 0);
    store_rca_jobs_free(jobs, n);
}

/* nack: retried after 30 s, then 50 s (60, capped); dead after 3 attempts. */
static void test_backoff_and_dead(void **state)
{
    fixture *f = *state;
    make_jobs(f, 1);
    int64_t now = T0;
    int64_t want_delay[] = { 30, 50 }; /* 60, capped */
    for (int attempt = 1; attempt <= 3; attempt++) {
        store_rca_job *jobs;
        assert_int_equal(claim(f, now, 60, 1, attempt, &jobs), 1);
        assert_int_equal(jobs[0].attempts, attempt);
        char h[65], st[RCA_STATUS_LEN];
        hash_of(attempt, h);
        int64_t next = -1;
        assert_int_equal(store_rca_nack(f->s, jobs[0].id, h, "investigation failed", now, &POL,
                                        st, &next),
                         STORE_OK);
        if (attempt < 3) {
            assert_string_equal(st, "pending");
            assert_int_equal(next, now + want_delay[attempt - 1]);
            /* Not before its time. */
            store_rca_job *none;
            assert_int_equal(claim(f, next - 1, 60, 1, 99, &none), 0);
            assert_null(none);
            now = next;
        } else {
            assert_string_equal(st, "dead");
            store_rca_job j;
            assert_int_equal(store_rca_get(f->s, jobs[0].id, &j), STORE_OK);
            assert_string_equal(j.status, "dead");
            assert_string_equal(j.last_error, "investigation failed");
            store_rca_job_free(&j);
        }
        store_rca_jobs_free(jobs, 1);
    }
    store_rca_job *none;
    assert_int_equal(claim(f, now + 100000, 60, 1, 50, &none), 0);
}

/* An expired lease makes the job claimable again with a new token; the old
 * one can no longer ack.  At the last attempt an expired lease is dead. */
static void test_lease_expiry(void **state)
{
    fixture *f = *state;
    make_jobs(f, 1);
    store_rca_job *a, *b, *none;
    assert_int_equal(claim(f, T0, 60, 1, 1, &a), 1);
    assert_int_equal(claim(f, T0 + 59, 60, 1, 2, &none), 0);
    assert_int_equal(claim(f, T0 + 60, 60, 1, 2, &b), 1);
    assert_string_equal(b[0].id, a[0].id);
    assert_int_equal(b[0].attempts, 2);
    char h1[65], h2[65];
    hash_of(1, h1);
    hash_of(2, h2);
    assert_int_equal(store_rca_ack(f->s, a[0].id, h1, T0 + 61), STORE_CONFLICT);
    /* The new holder's lease runs out too, then the third claim is the last. */
    store_rca_job *c;
    assert_int_equal(claim(f, T0 + 120, 60, 1, 3, &c), 1);
    assert_int_equal(c[0].attempts, 3);
    assert_int_equal(claim(f, T0 + 180, 60, 1, 4, &none), 0); /* dead, not handed out */
    store_rca_job j;
    assert_int_equal(store_rca_get(f->s, a[0].id, &j), STORE_OK);
    assert_string_equal(j.status, "dead");
    assert_string_equal(j.last_error, "lease expired on the last attempt");
    store_rca_job_free(&j);
    store_rca_jobs_free(a, 1);
    store_rca_jobs_free(b, 1);
    store_rca_jobs_free(c, 1);
}

/* A claimed job survives a restart (a new handle) and is handed out again
 * once its lease ends: never lost. */
static void test_restart_keeps_jobs(void **state)
{
    fixture *f = *state;
    make_jobs(f, 2);
    store_rca_job *a;
    assert_int_equal(claim(f, T0, 300, 2, 1, &a), 2);
    store_rca_jobs_free(a, 2);
    store_close(f->s);
    f->s = open_store(f->at.url);
    f->w.store = f->s;
    store_rca_job *none, *b;
    assert_int_equal(claim(f, T0 + 10, 300, 2, 5, &none), 0);
    assert_int_equal(claim(f, T0 + 300, 300, 5, 5, &b), 2);
    store_rca_jobs_free(b, 2);
}

#define CLAIMERS 4
#define RACE_JOBS 40

typedef struct {
    fixture *f;
    pthread_barrier_t *go;
    int n;
    char ids[RACE_JOBS][STORE_ID_LEN];
    size_t got;
    int rc;
} claimer;

static void *claimer_main(void *p)
{
    claimer *c = p;
    store_t *s = NULL;
    char err[256];
    int opened = store_open(c->f->at.url, &s, err, sizeof(err)) == STORE_OK;
    pthread_barrier_wait(c->go);
    if (!opened) {
        c->rc = -1;
        return NULL;
    }
    for (int round = 0; round < RACE_JOBS; round++) {
        char hashes[3][65];
        for (int i = 0; i < 3; i++)
            hash_of(c->n * 1000 + round * 3 + i, hashes[i]);
        store_rca_job *jobs = NULL;
        size_t n = 0;
        if (store_rca_claim(s, T0 + 1, 600, &POL, (const char(*)[65])hashes, 3, &jobs, &n) !=
            STORE_OK) {
            c->rc = -2;
            break;
        }
        for (size_t i = 0; i < n && c->got < RACE_JOBS; i++)
            memcpy(c->ids[c->got++], jobs[i].id, STORE_ID_LEN);
        store_rca_jobs_free(jobs, n);
        if (n == 0)
            break;
    }
    store_close(s);
    return NULL;
}

/* Concurrent claimers get disjoint jobs, and together all of them. */
static void test_concurrent_claimers(void **state)
{
    fixture *f = *state;
    make_jobs(f, RACE_JOBS);
    /* A claimer's handle waits up to a minute for the write lock, not the
     * default 5 s: SQLite hands the lock out unfairly, and a claimer may
     * lose it to the others' commits (each with its fsync) many times. */
    db_set_limits(60000, 0);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, CLAIMERS);
    static claimer c[CLAIMERS];
    pthread_t th[CLAIMERS];
    for (int i = 0; i < CLAIMERS; i++) {
        memset(&c[i], 0, sizeof(c[i]));
        c[i].f = f;
        c[i].go = &go;
        c[i].n = i;
        assert_int_equal(pthread_create(&th[i], NULL, claimer_main, &c[i]), 0);
    }
    /* Every claimer is joined before any check: a failed check leaves the
     * test (its fixture is freed), and a claimer still running would use it. */
    for (int i = 0; i < CLAIMERS; i++)
        pthread_join(th[i], NULL);
    db_set_limits(0, 0);
    size_t total = 0;
    for (int i = 0; i < CLAIMERS; i++) {
        assert_int_equal(c[i].rc, 0);
        total += c[i].got;
    }
    pthread_barrier_destroy(&go);
    assert_int_equal(total, RACE_JOBS);
    for (int a = 0; a < CLAIMERS; a++)
        for (size_t i = 0; i < c[a].got; i++)
            for (int b = 0; b < CLAIMERS; b++)
                for (size_t k = 0; k < c[b].got; k++)
                    if ((a != b || i != k) && !strcmp(c[a].ids[i], c[b].ids[k]))
                        fail_msg("job %s claimed twice", c[a].ids[i]);
    assert_int_equal(sql_int(f, "SELECT COUNT(*) FROM rca_jobs WHERE status = 'claimed'"
                                " AND attempts = 1 AND org_id = ?",
                             f->org),
                     RACE_JOBS);
}

/* Listing with a cursor, and the JSON the routes answer. */
static void test_list_and_json(void **state)
{
    fixture *f = *state;
    make_jobs(f, 3);
    store_rca_job *jobs;
    size_t n;
    assert_int_equal(store_rca_list(f->s, "pending", 0, 2, &jobs, &n), STORE_OK);
    assert_int_equal(n, 2);
    int64_t after = jobs[1].list_seq;
    cJSON *o = rca_job_json(&jobs[0], "rcl_x");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(o, "claim_token")->valuestring, "rcl_x");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(o, "status")->valuestring, "pending");
    assert_true(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(o, "payload")));
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(o, "created_at")->valuestring,
                        "2026-11-02T10:00:00Z");
    cJSON_Delete(o);
    store_rca_jobs_free(jobs, n);
    assert_int_equal(store_rca_list(f->s, NULL, after, 10, &jobs, &n), STORE_OK);
    assert_int_equal(n, 1);
    store_rca_jobs_free(jobs, n);
    assert_int_equal(store_rca_list(f->s, "bogus", 0, 10, &jobs, &n), STORE_ERR);
    assert_int_equal(store_rca_list(f->s, NULL, 0, 0, &jobs, &n), STORE_ERR);
    /* Claim through the JSON helper: tokens that hash to the stored hash. */
    cJSON *arr = NULL;
    char err[128];
    assert_int_equal(rca_claim_json(f->s, NULL, 5, 60, T0 + 1, &arr, err, sizeof(err)), STORE_OK);
    assert_int_equal(cJSON_GetArraySize(arr), 3);
    const cJSON *first = cJSON_GetArrayItem(arr, 0);
    const char *tok = cJSON_GetObjectItemCaseSensitive(first, "claim_token")->valuestring;
    const char *id = cJSON_GetObjectItemCaseSensitive(first, "id")->valuestring;
    char h[65];
    assert_int_equal(rca_claim_hash(tok, h), 0);
    assert_int_equal(store_rca_ack(f->s, id, h, T0 + 2), STORE_OK);
    assert_int_equal(rca_claim_hash("rcl_short", h), -1);
    assert_int_equal(rca_claim_hash(NULL, h), -1);
    cJSON_Delete(arr);
    assert_int_equal(rca_claim_json(f->s, NULL, 0, 60, T0 + 1, &arr, err, sizeof(err)), STORE_ERR);
    assert_int_equal(rca_claim_json(f->s, NULL, 101, 60, T0 + 1, &arr, err, sizeof(err)),
                     STORE_ERR);
}

/* The list cursor of a job (GET /internal/rca/jobs?after=, rca watch). */
static int64_t cursor_of(const store_rca_job *j)
{
    return j->list_seq;
}

/* The store's own connection refuses writes from now on (a read-only
 * replica or database): SQLite's query_only, PostgreSQL's read-only
 * transactions. */
static void refuse_writes(fixture *f)
{
    const char *sql = strcmp(f->s->eng->name, "postgres") ? "PRAGMA query_only = ON"
                                                          : "SET default_transaction_read_only = on";
    if (f->s->eng->exec(f->s->db, sql, NULL, 0, NULL) != DB_OK)
        fail_msg("%s: %s", sql, f->s->eng->errmsg(f->s->db));
}

static void store_sql(store_t *s, const char *sql, const db_param *p, size_t n)
{
    if (s->eng->exec(s->db, sql, p, n, NULL) != DB_OK)
        fail_msg("%s: %s", sql, s->eng->errmsg(s->db));
}

/* n new jobs, as the list gives them (free with store_rca_jobs_free). */
static store_rca_job *made_and_listed(fixture *f, size_t n)
{
    make_jobs(f, (int)n);
    store_rca_job *jobs;
    size_t got;
    assert_int_equal(store_rca_list(f->s, NULL, 0, 10, &jobs, &got), STORE_OK);
    assert_int_equal(got, n);
    return jobs;
}

static const char INSERT_JOB[] =
    "INSERT INTO rca_jobs (id, org_id, incident_id, source_type, status, attempts,"
    " next_attempt_at, created_at, created_seq, payload) VALUES"
    " (?, ?, ?, 'sentry', 'pending', 0, ?, ?, ?, '{}')";

/* Two ingest transactions commit out of order: the one that took the
 * smaller created_seq commits last.  A watcher that listed in between (and
 * moved its cursor past the first commit) must still get the late one.
 * Each job is written as store_incident_ingest() writes it (sequence
 * number taken inside the transaction, the list number its last statement
 * before COMMIT), each on a store connection of its own. */
static void test_list_cursor_out_of_order_commit(void **state)
{
    fixture *f = *state;
    size_t n = 2;
    store_rca_job *jobs = made_and_listed(f, n);
    char inc[2][STORE_ID_LEN];
    memcpy(inc[0], jobs[0].incident_id, STORE_ID_LEN);
    memcpy(inc[1], jobs[1].incident_id, STORE_ID_LEN);
    int64_t base = jobs[1].created_seq;
    store_rca_jobs_free(jobs, n);
    store_t *a = open_store(f->at.url), *b = open_store(f->at.url);
    store_sql(a, "DELETE FROM rca_jobs", NULL, 0);
    /* A takes the smaller number, B the larger; B commits first. */
    db_param pa[] = { DB_P_TEXT("rca_late"), DB_P_TEXT(f->org), DB_P_TEXT(inc[0]),
                      DB_P_INT(T0), DB_P_INT(T0), DB_P_INT(base + 10) };
    db_param pb[] = { DB_P_TEXT("rca_early"), DB_P_TEXT(f->org), DB_P_TEXT(inc[1]),
                      DB_P_INT(T0), DB_P_INT(T0), DB_P_INT(base + 20) };
    store_sql(a, "BEGIN", NULL, 0);
    store_sql(a, INSERT_JOB, pa, 6);
    store_sql(b, "BEGIN", NULL, 0);
    store_sql(b, INSERT_JOB, pb, 6);
    assert_int_equal(store_rca_number_job(b, "rca_early", base + 20), STORE_OK);
    store_sql(b, "COMMIT", NULL, 0);

    /* The watcher polls while A is still open: B only, and the cursor moves. */
    int64_t after = 0;
    assert_int_equal(store_rca_list(f->s, NULL, after, 10, &jobs, &n), STORE_OK);
    assert_int_equal(n, 1);
    assert_string_equal(jobs[0].id, "rca_early");
    after = cursor_of(&jobs[0]);
    store_rca_jobs_free(jobs, n);

    assert_int_equal(store_rca_number_job(a, "rca_late", base + 10), STORE_OK);
    store_sql(a, "COMMIT", NULL, 0);
    store_close(a);
    store_close(b);
    /* The next poll gets A, committed after that cursor was handed out. */
    assert_int_equal(store_rca_list(f->s, NULL, after, 10, &jobs, &n), STORE_OK);
    if (n != 1)
        fail_msg("the job committed late was skipped by the cursor (%zu jobs after it)", n);
    assert_string_equal(jobs[0].id, "rca_late");
    store_rca_jobs_free(jobs, n);
}

/* Jobs an older build wrote without a list number (it numbered them when
 * listing) are not listed until the periodic numbering gives them the
 * numbers that build would have: after the numbered ones, oldest first, at
 * least their created_seq. */
static void test_jobs_of_an_older_build_numbered_by_the_task(void **state)
{
    fixture *f = *state;
    size_t n = 3;
    store_rca_job *jobs = made_and_listed(f, n);
    /* the first stays as this build numbered it; the other two as an older
     * build wrote them: no number */
    int64_t last = jobs[0].list_seq, base = jobs[2].created_seq;
    char first[STORE_ID_LEN], inc[2][STORE_ID_LEN];
    memcpy(first, jobs[0].id, STORE_ID_LEN);
    memcpy(inc[0], jobs[1].incident_id, STORE_ID_LEN);
    memcpy(inc[1], jobs[2].incident_id, STORE_ID_LEN);
    db_param pd[] = { DB_P_TEXT(first) };
    store_sql(f->s, "DELETE FROM rca_jobs WHERE id <> ?", pd, 1);
    store_rca_jobs_free(jobs, n);
    db_param p0[] = { DB_P_TEXT("rca_old0"), DB_P_TEXT(f->org), DB_P_TEXT(inc[0]),
                      DB_P_INT(T0), DB_P_INT(T0), DB_P_INT(1) };
    db_param p1[] = { DB_P_TEXT("rca_old1"), DB_P_TEXT(f->org), DB_P_TEXT(inc[1]),
                      DB_P_INT(T0), DB_P_INT(T0), DB_P_INT(base + 1000) };
    store_sql(f->s, INSERT_JOB, p1, 6);
    store_sql(f->s, INSERT_JOB, p0, 6);
    /* not listed yet, and the list still writes nothing */
    refuse_writes(f);
    assert_int_equal(store_rca_list(f->s, NULL, 0, 10, &jobs, &n), STORE_OK);
    assert_int_equal(n, 1);
    assert_string_equal(jobs[0].id, first);
    store_rca_jobs_free(jobs, n);
    store_close(f->s); /* the task runs on a connection that may write */
    f->s = f->w.store = open_store(f->at.url);
    size_t numbered = 0;
    assert_int_equal(store_rca_number_unlisted(f->s, &numbered), STORE_OK);
    assert_int_equal(numbered, 2);
    assert_int_equal(store_rca_list(f->s, NULL, last, 10, &jobs, &n), STORE_OK);
    assert_int_equal(n, 2);
    /* oldest first; above the last number, at least the job's created_seq */
    assert_string_equal(jobs[0].id, "rca_old0");
    assert_int_equal(jobs[0].list_seq, last + 1);
    assert_string_equal(jobs[1].id, "rca_old1");
    assert_int_equal(jobs[1].list_seq, base + 1000);
    store_rca_jobs_free(jobs, n);
    assert_int_equal(store_rca_number_unlisted(f->s, &numbered), STORE_OK);
    assert_int_equal(numbered, 0);
}

/* GET /internal/rca/jobs and `rca watch` are reads: the list numbered the
 * jobs not yet numbered first, a write transaction (the write lock, a
 * failure on a read-only database, a reader causing writes).  Jobs are
 * numbered where they are written; the list runs on a connection that
 * refuses writes, and the numbers still follow creation. */
static void test_list_writes_nothing(void **state)
{
    fixture *f = *state;
    make_jobs(f, 3);
    refuse_writes(f);
    store_rca_job *jobs;
    size_t n;
    if (store_rca_list(f->s, NULL, 0, 10, &jobs, &n) != STORE_OK)
        fail_msg("listing on a connection that refuses writes: %s", store_errmsg(f->s));
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) {
        /* at least created_seq: a cursor of an older build still works */
        assert_true(jobs[i].list_seq >= jobs[i].created_seq);
        if (i > 0) {
            assert_true(jobs[i].list_seq > jobs[i - 1].list_seq);
            assert_true(jobs[i].created_seq > jobs[i - 1].created_seq);
        }
    }
    int64_t after = jobs[0].list_seq;
    store_rca_jobs_free(jobs, n);
    assert_int_equal(store_rca_list(f->s, "pending", after, 10, &jobs, &n), STORE_OK);
    assert_int_equal(n, 2);
    store_rca_jobs_free(jobs, n);
}

#define BOTH(t)                                                                                    \
    { "file/" #t, t, setup_file, teardown, NULL }, { "postgres/" #t, t, setup_pg, teardown, NULL }

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_claim_ack),          BOTH(test_backoff_and_dead),
        BOTH(test_lease_expiry),       BOTH(test_restart_keeps_jobs),
        BOTH(test_concurrent_claimers), BOTH(test_list_and_json),
        BOTH(test_list_writes_nothing), BOTH(test_jobs_of_an_older_build_numbered_by_the_task),
        { "postgres/test_list_cursor_out_of_order_commit", test_list_cursor_out_of_order_commit,
          setup_pg, teardown, NULL },
    };
    return cmocka_run_group_tests_name("rca_outbox", tests, store_place_group_setup,
                                       store_place_group_teardown);
}
