/* store_rca.h — the RCA outbox (rca_jobs, migration 9): one job per new
 * incident, written in the incident's own transaction (store_incidents.c),
 * handed to the investigation service by lease (rca_outbox.c routes, the
 * `aurora-server rca` command).
 *
 * Life of a job: pending → claimed (attempts + 1, a lease, the SHA-256 of
 * a fresh claim token) → done (ack with that token) | pending again after a
 * backoff (nack) | dead (nack or an expired lease once attempts reached the
 * maximum).  An expired lease makes a claimed job claimable again, so a
 * consumer that died loses nothing; delivery is at-least-once. */
#ifndef AURORA_STORE_RCA_H
#define AURORA_STORE_RCA_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define RCA_CLAIM_MAX 100       /* jobs in one claim */
#define RCA_ERROR_MAX 1024      /* bytes of a consumer's error kept */
#define RCA_STATUS_LEN 16

typedef struct {
    char id[STORE_ID_LEN];
    char org_id[STORE_ID_LEN];
    char incident_id[STORE_ID_LEN];
    char source_type[40];
    char status[RCA_STATUS_LEN];
    int attempts;
    int64_t next_attempt_at; /* when it is next claimable (claimed: = lease_until) */
    int64_t lease_until;
    int64_t created_at, claimed_at, acked_at;
    int64_t created_seq;
    int64_t list_seq; /* the list cursor (store_rca_list); 0 until numbered */
    char last_error[RCA_ERROR_MAX + 1];
    char *payload; /* JSON text, malloc'd */
} store_rca_job;

typedef struct {
    int max_attempts;    /* a job claimed this often and not acked goes dead */
    int64_t backoff_s;   /* first retry delay after a nack; doubles each attempt */
    int64_t backoff_max_s;
} store_rca_policy;

/* Claims up to n due jobs (pending with next_attempt_at <= now, or claimed
 * with an expired lease), oldest due first, giving job i the claim hash
 * claim_hashes[i] and a lease until now + lease_s.  An expired job already
 * at max_attempts goes dead instead (not returned).  PostgreSQL: SELECT …
 * FOR UPDATE SKIP LOCKED in a transaction, so concurrent claimers get
 * disjoint jobs without waiting; SQLite: the same under BEGIN IMMEDIATE.
 * *out (free with store_rca_jobs_free) may hold fewer than n. */
int store_rca_claim(store_t *s, int64_t now, int64_t lease_s, const store_rca_policy *pol,
                    const char (*claim_hashes)[65], size_t n, store_rca_job **out,
                    size_t *nout);
/* Marks a claimed job done.  Idempotent for the holder: acking a done job
 * with the token that completed it is OK.  NOT_FOUND: no such job;
 * CONFLICT: another token (a lease that expired and was claimed again, or
 * a guess) or a job that is not claimed. */
int store_rca_ack(store_t *s, const char *id, const char *claim_hash, int64_t now);
/* Gives a claimed job back: pending again after backoff_s * 2^(attempts-1)
 * (at most backoff_max_s), or dead once attempts reached max_attempts.
 * status/next_attempt_at (may be NULL) get the outcome.  Same errors as ack. */
int store_rca_nack(store_t *s, const char *id, const char *claim_hash, const char *error,
                   int64_t now, const store_rca_policy *pol, char status[RCA_STATUS_LEN],
                   int64_t *next_attempt_at);
/* One job (payload included). */
int store_rca_get(store_t *s, const char *id, store_rca_job *out);
/* Jobs listed after the cursor after_seq (a job's list_seq; 0: from the
 * start), in list order (commit order), with status (NULL: any), at most
 * limit (1..1000).  Reads only: a job is numbered by the transaction that
 * writes it (store_rca_number_job), so it never appears below a cursor
 * already handed out; a job not numbered yet is not listed. */
int store_rca_list(store_t *s, const char *status, int64_t after_seq, int limit,
                   store_rca_job **out, size_t *n);
/* Inside the transaction that inserted job id (of created_seq), as its last
 * statement before COMMIT: gives it its list number, above every number
 * given and at least created_seq.  The numberer stays held until that
 * transaction ends (PostgreSQL: an advisory lock; SQLite: the one writer),
 * so numbers become visible in increasing order. */
int store_rca_number_job(store_t *s, const char *id, int64_t created_seq);
/* Numbers up to RCA_NUMBER_BATCH jobs that have no list number (written
 * by an older build, which numbered them when listing: rows from before an
 * upgrade, or of an older replica during one), oldest first, as
 * store_rca_number_job would have; *numbered (may be NULL): how many.
 * Writes nothing when there are none.  The periodic task rca-number runs it. */
#define RCA_NUMBER_BATCH 1000
int store_rca_number_unlisted(store_t *s, size_t *numbered);
/* Jobs per status: pending, claimed, done, dead. */
int store_rca_counts(store_t *s, int64_t counts[4]);
void store_rca_job_free(store_rca_job *j);
void store_rca_jobs_free(store_rca_job *j, size_t n);

#endif
