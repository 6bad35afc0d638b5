/* store_rca.c — the SQL of the RCA outbox (store_rca.h). */
#include "store_rca.h"

#include "crypto.h"
#include "store_internal.h"

#define RCA_COLS                                                                                   \
    "id, org_id, incident_id, source_type, status, attempts, next_attempt_at, lease_until,"      \
    " created_at, claimed_at, acked_at, created_seq, last_error, payload,"                         \
    " COALESCE(list_seq, 0)"
#define RCA_LIST_MAX 1000

static const char *const rca_statuses[4] = { "pending", "claimed", "done", "dead" };

void store_rca_job_free(store_rca_job *j)
{
    if (j) {
        free(j->payload);
        j->payload = NULL;
    }
}

void store_rca_jobs_free(store_rca_job *j, size_t n)
{
    if (!j)
        return;
    for (size_t i = 0; i < n; i++)
        store_rca_job_free(&j[i]);
    free(j);
}

static int job_row(store_t *s, const db_result *r, size_t i, void *out)
{
    store_rca_job *j = out;
    if (cell_str(s, r, i, 0, j->id, sizeof(j->id), "job id") ||
        cell_str(s, r, i, 1, j->org_id, sizeof(j->org_id), "job org_id") ||
        cell_str(s, r, i, 2, j->incident_id, sizeof(j->incident_id), "job incident_id") ||
        cell_str(s, r, i, 3, j->source_type, sizeof(j->source_type), "job source_type") ||
        cell_str(s, r, i, 4, j->status, sizeof(j->status), "job status") ||
        cell_int(s, r, i, 5, &j->attempts, "job attempts") ||
        cell_i64(s, r, i, 6, &j->next_attempt_at, "next_attempt_at") ||
        cell_i64(s, r, i, 7, &j->lease_until, "lease_until") ||
        cell_i64(s, r, i, 8, &j->created_at, "created_at") ||
        cell_i64(s, r, i, 9, &j->claimed_at, "claimed_at") ||
        cell_i64(s, r, i, 10, &j->acked_at, "acked_at") ||
        cell_i64(s, r, i, 11, &j->created_seq, "created_seq") ||
        cell_str(s, r, i, 12, j->last_error, sizeof(j->last_error), "last_error"))
        return STORE_ERR;
    if (cell_i64(s, r, i, 14, &j->list_seq, "list_seq"))
        return STORE_ERR;
    const char *p = db_cell(r, i, 13);
    j->payload = strdup(p ? p : "{}");
    if (!j->payload)
        return serr(s, "out of memory");
    return STORE_OK;
}

/* Decodes every row into a calloc'd array; frees r.  On failure nothing is
 * left allocated. */
static int job_rows(store_t *s, db_result *r, store_rca_job **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (r->nrows == 0) {
        db_result_free(r);
        return STORE_OK;
    }
    store_rca_job *arr = calloc(r->nrows, sizeof(*arr));
    if (!arr) {
        db_result_free(r);
        return serr(s, "out of memory");
    }
    for (size_t i = 0; i < r->nrows; i++) {
        if (job_row(s, r, i, &arr[i]) != STORE_OK) {
            store_rca_jobs_free(arr, i + 1);
            db_result_free(r);
            return STORE_ERR;
        }
    }
    *out = arr;
    *n = r->nrows;
    db_result_free(r);
    return STORE_OK;
}

static void rollback(store_t *s)
{
    char keep[sizeof(s->err)];
    memcpy(keep, s->err, sizeof(keep));
    (void)s->eng->exec(s->db, "ROLLBACK", NULL, 0, NULL);
    memcpy(s->err, keep, sizeof(keep));
}

static int check_policy(store_t *s, const store_rca_policy *pol)
{
    if (!pol || pol->max_attempts < 1 || pol->backoff_s < 1 || pol->backoff_max_s < pol->backoff_s)
        return serr(s, "rca: invalid retry policy");
    return STORE_OK;
}

/* Between BEGIN and COMMIT of a claim. */
static int claim_locked(store_t *s, int64_t now, int64_t lease_s, const store_rca_policy *pol,
                        const char (*hashes)[65], size_t n, store_rca_job **out, size_t *nout)
{
    int pg = strcmp(s->eng->name, "postgres") == 0;
    db_param p[] = { DB_P_INT(now), DB_P_INT((int64_t)n) };
    db_result r;
    if (run_query(s, "selecting due rca jobs",
                  pg ? "SELECT " RCA_COLS " FROM rca_jobs WHERE status IN ('pending', 'claimed')"
                       " AND next_attempt_at <= ? ORDER BY next_attempt_at, created_seq LIMIT ?"
                       " FOR UPDATE SKIP LOCKED"
                     : "SELECT " RCA_COLS " FROM rca_jobs WHERE status IN ('pending', 'claimed')"
                       " AND next_attempt_at <= ? ORDER BY next_attempt_at, created_seq LIMIT ?",
                  p, 2, &r) != STORE_OK)
        return STORE_ERR;
    store_rca_job *jobs;
    size_t njobs;
    if (job_rows(s, &r, &jobs, &njobs) != STORE_OK)
        return STORE_ERR;
    size_t h = 0;
    int rc = STORE_OK;
    for (size_t i = 0; i < njobs && rc == STORE_OK; i++) {
        store_rca_job *j = &jobs[i];
        if (!strcmp(j->status, "claimed") && j->attempts >= pol->max_attempts) {
            /* Its consumer died with it, every time: a poison job. */
            db_param d[] = { p_text(j->id) };
            rc = run_exec(s, "dead-lettering rca job",
                          "UPDATE rca_jobs SET status = 'dead', lease_until = 0,"
                          " last_error = 'lease expired on the last attempt' WHERE id = ?",
                          d, 1, NULL);
            store_rca_job_free(j);
            j->id[0] = '\0'; /* not handed out */
            continue;
        }
        int64_t lease_until = now + lease_s;
        db_param u[] = { p_text(hashes[h++]), DB_P_INT(lease_until), DB_P_INT(lease_until),
                         DB_P_INT(now), p_text(j->id) };
        rc = run_exec(s, "claiming rca job",
                      "UPDATE rca_jobs SET status = 'claimed', attempts = attempts + 1,"
                      " claim_hash = ?, lease_until = ?, next_attempt_at = ?, claimed_at = ?"
                      " WHERE id = ?",
                      u, 5, NULL);
        memcpy(j->status, "claimed", sizeof("claimed"));
        j->attempts++;
        j->lease_until = j->next_attempt_at = lease_until;
        j->claimed_at = now;
    }
    if (rc != STORE_OK) {
        store_rca_jobs_free(jobs, njobs);
        return STORE_ERR;
    }
    size_t kept = 0;
    for (size_t i = 0; i < njobs; i++)
        if (jobs[i].id[0])
            jobs[kept++] = jobs[i];
    if (kept == 0) {
        free(jobs);
        jobs = NULL;
    }
    *out = jobs;
    *nout = kept;
    return STORE_OK;
}

int store_rca_claim(store_t *s, int64_t now, int64_t lease_s, const store_rca_policy *pol,
                    const char (*claim_hashes)[65], size_t n, store_rca_job **out, size_t *nout)
{
    if (!s)
        return STORE_ERR;
    if (!out || !nout || (n && !claim_hashes))
        return serr(s, "store_rca_claim: missing argument");
    *out = NULL;
    *nout = 0;
    if (check_policy(s, pol) != STORE_OK)
        return STORE_ERR;
    if (n == 0 || n > RCA_CLAIM_MAX || lease_s < 1 || now <= 0)
        return serr(s, "rca: claim size, lease or time out of range");
    for (size_t i = 0; i < n; i++)
        if (check_hash(s, "claim hash", claim_hashes[i]) != STORE_OK)
            return STORE_ERR;
    if (run_exec(s, "beginning claim", "BEGIN", NULL, 0, NULL) != STORE_OK)
        return STORE_ERR;
    if (claim_locked(s, now, lease_s, pol, claim_hashes, n, out, nout) != STORE_OK) {
        rollback(s);
        return STORE_ERR;
    }
    if (run_exec(s, "committing claim", "COMMIT", NULL, 0, NULL) != STORE_OK) {
        rollback(s);
        store_rca_jobs_free(*out, *nout);
        *out = NULL;
        *nout = 0;
        return STORE_ERR;
    }
    return STORE_OK;
}

/* The job's status and claim hash: the check of ack and nack. */
typedef struct {
    char status[RCA_STATUS_LEN];
    char hash[65];
    int attempts;
} job_claim;

static int claim_row(store_t *s, const db_result *r, size_t i, void *out)
{
    job_claim *c = out;
    if (cell_str(s, r, i, 0, c->status, sizeof(c->status), "job status") ||
        cell_str(s, r, i, 1, c->hash, sizeof(c->hash), "claim hash") ||
        cell_int(s, r, i, 2, &c->attempts, "job attempts"))
        return STORE_ERR;
    return STORE_OK;
}

static int read_claim(store_t *s, const char *id, job_claim *c)
{
    memset(c, 0, sizeof(*c));
    db_param p[] = { p_text(id) };
    db_result r;
    if (run_query(s, "reading rca job", "SELECT status, claim_hash, attempts FROM rca_jobs WHERE id = ?",
                  p, 1, &r) != STORE_OK)
        return STORE_ERR;
    int rc = one_row(s, &r, claim_row, c);
    if (rc == STORE_NOT_FOUND)
        serr(s, "rca job not found");
    return rc;
}

static int hash_matches(const job_claim *c, const char *hash)
{
    return c->hash[0] && crypto_ct_equal(c->hash, strlen(c->hash), hash, strlen(hash));
}

static int check_id_hash(store_t *s, const char *id, const char *hash)
{
    if (check_text(s, "job id", id, STORE_ID_LEN, 1) || check_hash(s, "claim hash", hash))
        return STORE_ERR;
    return STORE_OK;
}

int store_rca_ack(store_t *s, const char *id, const char *claim_hash, int64_t now)
{
    if (!s)
        return STORE_ERR;
    if (check_id_hash(s, id, claim_hash) != STORE_OK)
        return STORE_ERR;
    job_claim c;
    int rc = read_claim(s, id, &c);
    if (rc != STORE_OK)
        return rc;
    if (!hash_matches(&c, claim_hash)) {
        serr(s, "claim token does not match this job's current claim");
        return STORE_CONFLICT;
    }
    if (!strcmp(c.status, "done"))
        return STORE_OK; /* the holder acked again (its first answer was lost) */
    if (strcmp(c.status, "claimed")) {
        serr(s, "rca job is %s, not claimed", c.status);
        return STORE_CONFLICT;
    }
    db_param p[] = { DB_P_INT(now_or_clock(now)), p_text(id), p_text(claim_hash) };
    int64_t changes = 0;
    if (run_exec(s, "acknowledging rca job",
                 "UPDATE rca_jobs SET status = 'done', acked_at = ?, lease_until = 0"
                 " WHERE id = ? AND claim_hash = ? AND status = 'claimed'",
                 p, 3, &changes) != STORE_OK)
        return STORE_ERR;
    if (changes == 0) { /* claimed again between the read and the update */
        serr(s, "claim token does not match this job's current claim");
        return STORE_CONFLICT;
    }
    return STORE_OK;
}

int store_rca_nack(store_t *s, const char *id, const char *claim_hash, const char *error,
                   int64_t now, const store_rca_policy *pol, char status[RCA_STATUS_LEN],
                   int64_t *next_attempt_at)
{
    if (!s)
        return STORE_ERR;
    if (check_id_hash(s, id, claim_hash) != STORE_OK || check_policy(s, pol) != STORE_OK ||
        (error && check_text(s, "error", error, RCA_ERROR_MAX + 1, 0)))
        return STORE_ERR;
    now = now_or_clock(now);
    job_claim c;
    int rc = read_claim(s, id, &c);
    if (rc != STORE_OK)
        return rc;
    if (!hash_matches(&c, claim_hash)) {
        serr(s, "claim token does not match this job's current claim");
        return STORE_CONFLICT;
    }
    if (strcmp(c.status, "claimed")) {
        serr(s, "rca job is %s, not claimed", c.status);
        return STORE_CONFLICT;
    }
    int dead = c.attempts >= pol->max_attempts;
    int64_t delay = pol->backoff_s;
    for (int i = 1; i < c.attempts && delay < pol->backoff_max_s; i++)
        delay *= 2;
    if (delay > pol->backoff_max_s)
        delay = pol->backoff_max_s;
    int64_t next = dead ? 0 : now + delay;
    db_param p[] = { p_text(dead ? "dead" : "pending"), DB_P_INT(next),
                     p_text(error ? error : ""), p_text(id), p_text(claim_hash) };
    int64_t changes = 0;
    if (run_exec(s, "releasing rca job",
                 "UPDATE rca_jobs SET status = ?, next_attempt_at = ?, lease_until = 0,"
                 " last_error = ? WHERE id = ? AND claim_hash = ? AND status = 'claimed'",
                 p, 5, &changes) != STORE_OK)
        return STORE_ERR;
    if (changes == 0) {
        serr(s, "claim token does not match this job's current claim");
        return STORE_CONFLICT;
    }
    if (status)
        snprintf(status, RCA_STATUS_LEN, "%s", dead ? "dead" : "pending");
    if (next_attempt_at)
        *next_attempt_at = next;
    return STORE_OK;
}

int store_rca_get(store_t *s, const char *id, store_rca_job *out)
{
    if (!s)
        return STORE_ERR;
    if (!out || check_text(s, "job id", id, STORE_ID_LEN, 1))
        return STORE_ERR;
    memset(out, 0, sizeof(*out));
    db_param p[] = { p_text(id) };
    db_result r;
    if (run_query(s, "reading rca job", "SELECT " RCA_COLS " FROM rca_jobs WHERE id = ?", p, 1,
                  &r) != STORE_OK)
        return STORE_ERR;
    store_rca_job *jobs;
    size_t n;
    if (job_rows(s, &r, &jobs, &n) != STORE_OK)
        return STORE_ERR;
    if (n == 0) {
        serr(s, "rca job not found");
        return STORE_NOT_FOUND;
    }
    *out = jobs[0];
    free(jobs);
    return STORE_OK;
}

/* ---- the list cursor ---------------------------------------------------------------- */

/* PostgreSQL advisory lock of the numberer: "rcal" in ASCII. */
#define RCA_NUMBER_LOCK "1919115628"

/* Why a list number and not created_seq: a job's created_seq is taken
 * before its transaction commits, so on PostgreSQL a job with a smaller
 * created_seq can become visible after a larger one was listed, and a
 * cursor on created_seq skipped it for good.  List numbers are given only
 * by a transaction that holds the numberer until it commits (PostgreSQL: a
 * transaction-scoped advisory lock taken before reading the last number;
 * SQLite: BEGIN IMMEDIATE, one writer), each above the last: they become
 * visible in increasing order, so no job can appear below a cursor already
 * handed out.  The list itself only reads (it numbered the jobs committed
 * since the last list, a write on every poll that found one).  Claims do
 * not use them. */

/* Takes the numberer (PostgreSQL) and reads the last number given: every
 * number committed by an earlier holder.  Inside a transaction. */
static int numberer_take(store_t *s, int64_t *last)
{
    db_result r;
    if (!strcmp(s->eng->name, "postgres")) {
        if (run_query(s, "locking the rca numberer",
                      "SELECT pg_advisory_xact_lock(" RCA_NUMBER_LOCK ")", NULL, 0,
                      &r) != STORE_OK)
            return STORE_ERR;
        db_result_free(&r);
    }
    *last = 0;
    if (run_query(s, "reading the last rca list number",
                  "SELECT COALESCE(MAX(list_seq), 0) FROM rca_jobs", NULL, 0, &r) != STORE_OK)
        return STORE_ERR;
    int rc = r.nrows == 1 ? cell_i64(s, &r, 0, 0, last, "list_seq") : serr(s, "no max list_seq");
    db_result_free(&r);
    return rc;
}

/* The number after last for a job of created_seq seq: at least seq, so
 * that a cursor of an older build (a created_seq) still finds every job
 * created after it. */
static int64_t number_after(int64_t last, int64_t seq)
{
    return seq > last ? seq : last + 1;
}

static int number_one(store_t *s, const char *id, int64_t number)
{
    db_param u[] = { DB_P_INT(number), p_text(id) };
    return run_exec(s, "numbering rca job",
                    "UPDATE rca_jobs SET list_seq = ? WHERE id = ? AND list_seq IS NULL", u, 2,
                    NULL);
}

int store_rca_number_job(store_t *s, const char *id, int64_t created_seq)
{
    int64_t last = 0;
    if (numberer_take(s, &last) != STORE_OK)
        return STORE_ERR;
    return number_one(s, id, number_after(last, created_seq));
}

/* Between BEGIN and COMMIT of store_rca_number_unlisted(): the oldest
 * unnumbered jobs (creation order) get numbers above every number given. */
static int number_locked(store_t *s, size_t *numbered)
{
    int64_t last = 0;
    if (numberer_take(s, &last) != STORE_OK)
        return STORE_ERR;
    db_param lim[] = { DB_P_INT(RCA_NUMBER_BATCH) };
    db_result r;
    if (run_query(s, "selecting unnumbered rca jobs",
                  "SELECT id, created_seq FROM rca_jobs WHERE list_seq IS NULL"
                  " ORDER BY created_seq, id LIMIT ?",
                  lim, 1, &r) != STORE_OK)
        return STORE_ERR;
    int rc = STORE_OK;
    for (size_t i = 0; i < r.nrows && rc == STORE_OK; i++) {
        int64_t seq = 0;
        rc = cell_i64(s, &r, i, 1, &seq, "created_seq");
        int64_t next = number_after(last, seq);
        if (rc == STORE_OK)
            rc = number_one(s, db_cell(&r, i, 0), next);
        last = next;
    }
    *numbered = rc == STORE_OK ? r.nrows : 0;
    db_result_free(&r);
    return rc;
}

int store_rca_number_unlisted(store_t *s, size_t *numbered)
{
    size_t done = 0;
    if (numbered)
        *numbered = 0;
    if (!s)
        return STORE_ERR;
    db_result r;
    if (run_query(s, "looking for unnumbered rca jobs",
                  "SELECT id FROM rca_jobs WHERE list_seq IS NULL LIMIT 1", NULL, 0,
                  &r) != STORE_OK)
        return STORE_ERR;
    size_t any = r.nrows;
    db_result_free(&r);
    if (!any) /* the usual run: nothing to write */
        return STORE_OK;
    if (run_exec(s, "beginning rca numbering", "BEGIN", NULL, 0, NULL) != STORE_OK)
        return STORE_ERR;
    if (number_locked(s, &done) != STORE_OK ||
        run_exec(s, "committing rca numbering", "COMMIT", NULL, 0, NULL) != STORE_OK) {
        rollback(s);
        return STORE_ERR;
    }
    if (numbered)
        *numbered = done;
    return STORE_OK;
}

int store_rca_list(store_t *s, const char *status, int64_t after_seq, int limit,
                   store_rca_job **out, size_t *n)
{
    if (!s)
        return STORE_ERR;
    if (!out || !n)
        return serr(s, "store_rca_list: missing argument");
    *out = NULL;
    *n = 0;
    if (limit < 1 || limit > RCA_LIST_MAX)
        return serr(s, "rca: list limit out of range");
    if (status) {
        int known = 0;
        for (size_t i = 0; i < 4; i++)
            known |= !strcmp(status, rca_statuses[i]);
        if (!known)
            return serr(s, "rca: unknown job status");
    }
    db_param p[] = { DB_P_INT(after_seq), p_text(status ? status : ""),
                     p_text(status ? status : ""), DB_P_INT(limit) };
    db_result r;
    if (run_query(s, "listing rca jobs",
                  "SELECT " RCA_COLS " FROM rca_jobs WHERE list_seq > ?"
                  " AND (? = '' OR status = ?) ORDER BY list_seq LIMIT ?",
                  p, 4, &r) != STORE_OK)
        return STORE_ERR;
    return job_rows(s, &r, out, n);
}

int store_rca_counts(store_t *s, int64_t counts[4])
{
    if (!s)
        return STORE_ERR;
    memset(counts, 0, 4 * sizeof(counts[0]));
    db_result r;
    if (run_query(s, "counting rca jobs", "SELECT status, COUNT(*) FROM rca_jobs GROUP BY status",
                  NULL, 0, &r) != STORE_OK)
        return STORE_ERR;
    int rc = STORE_OK;
    for (size_t i = 0; i < r.nrows && rc == STORE_OK; i++) {
        const char *st = db_cell(&r, i, 0);
        for (size_t k = 0; k < 4; k++)
            if (st && !strcmp(st, rca_statuses[k]))
                rc = cell_i64(s, &r, i, 1, &counts[k], "job count");
    }
    db_result_free(&r);
    return rc;
}
