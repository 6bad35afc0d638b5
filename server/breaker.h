/* breaker.h — one call at a time finds out whether a backend that stopped
 * answering (the state store's PostgreSQL, the secrets backend) is back; the
 * others fail at once.
 *
 * Deadlines bound what a stalled backend costs one call.  They do not bound
 * what it costs a queue: workers each wait out a deadline per call, so a
 * request queued behind other requests and the background sweeps waited one
 * deadline for every call ahead of it, and a busy server's queue grew for as
 * long as the stall lasted.  A breaker is shared by every connection or
 * handle of the process to one backend:
 *  - closed: every call goes to the backend;
 *  - a call that could not reach the backend (no answer before its deadline,
 *    no connection, the connection lost) opens it;
 *  - open: one call at a time goes to the backend as the probe; every other
 *    call that would start a conversation with it fails at once ("failing
 *    fast" in the message), so a stall costs the queue one deadline per
 *    probe instead of one per call;
 *  - any answer from the backend (a result, an SQL error, an HTTP status)
 *    closes it.
 * The store never refuses statements inside a transaction that already
 * began: their own deadline bounds them, and the caller must see how it
 * ended.
 *
 * A probe holds its turn for at most its lease (connect + request deadlines
 * and a grace): a thread that never reports cannot keep the backend closed
 * to everyone.  Breakers are counted and freed with the last user; they are
 * keyed by their kind and a hash of the key (a URL), which is not kept (a
 * database URL may carry a password). */
#ifndef AURORA_BREAKER_H
#define AURORA_BREAKER_H

#include <stddef.h>
#include <stdint.h>

typedef struct breaker breaker;

/* What a breaker stands before: its log lines, its refusals' message and
 * the counter of refusals (server_metrics.h) follow. */
typedef enum {
    BREAKER_STORE = 0, /* the state store's database; aurora_store_fast_failures_total */
    BREAKER_SECRETS    /* the secrets backend; aurora_secrets_fast_failures_total */
} breaker_kind;

/* The breaker of this backend, created on first use; NULL only when out of
 * memory (then every call goes to the backend).  key: what identifies the
 * backend (its URL; only a hash is kept); label: how the log names it
 * ("the database", "Vault at https://…"; never a secret; cut at 127 bytes).
 * lease_ms: how long one probe may hold its turn. */
breaker *breaker_get(breaker_kind kind, const char *key, const char *label, int lease_ms);
void breaker_put(breaker *b);

/* What a call learned about the backend. */
typedef enum {
    BREAKER_REACHED = 0,   /* the backend answered (a result, an error of its own) */
    BREAKER_UNREACHABLE,   /* no answer in time, no connection, the connection lost */
    BREAKER_NOT_ASKED      /* failed before anything was sent (bad parameters, memory) */
} breaker_outcome;

/* Before a call that starts a conversation with the backend.  1: go (*probe
 * is non-zero when this call is the open breaker's probe, and must be
 * passed back to breaker_report as it is);
 * 0: fail fast, why holds the message ("… has not answered for N ms (failing
 * fast …)").  b may be NULL (always go). */
int breaker_admit(breaker *b, int *probe, char *why, size_t cap);
/* After every call that went to the backend (admitted, or inside a
 * transaction).  reason: the error, when unreachable (for the log). */
void breaker_report(breaker *b, int probe, breaker_outcome outcome, const char *reason);

/* Tests and /metrics: whether it is open, whether a probe holds its turn,
 * and how many calls failed fast since it was created. */
int breaker_is_open(breaker *b);
int breaker_probing(breaker *b);
uint64_t breaker_fast_failures(breaker *b);

#endif
