/* db_breaker.h — one call at a time finds out whether a database that
 * stopped answering is back; the others fail at once.
 *
 * Deadlines (db_limits) bound what a stalled database costs one call.  They
 * do not bound what it costs a queue: the store's workers each wait out a
 * deadline per call, so a request queued behind other requests and the
 * background sweeps waited one deadline for every call ahead of it, and a
 * busy server's queue grew for as long as the stall lasted.  A breaker is
 * shared by every connection of the process to one database:
 *  - closed: every call goes to the database;
 *  - a call that could not reach the database (no answer before the client
 *    deadline, no connection within connect_ms, the connection lost) opens
 *    it;
 *  - open: one call at a time goes to the database as the probe; every other
 *    call that would start a conversation with it fails at once (DB_E_CONN,
 *    "failing fast" in the message), so a stall costs the queue one deadline
 *    per probe instead of one per call;
 *  - any answer from the database (a result or an SQL error) closes it.
 * Statements inside a transaction that already began are never refused:
 * their own deadline bounds them, and the caller must see how it ended.
 *
 * A probe holds its turn for at most its lease (connect + statement
 * deadlines and a grace): a thread that never reports cannot keep the
 * database closed to everyone.  Breakers are counted and freed with the last
 * connection; they are keyed by a hash of the url, which is not kept (it may
 * carry a password). */
#ifndef AURORA_DB_BREAKER_H
#define AURORA_DB_BREAKER_H

#include <stddef.h>
#include <stdint.h>

typedef struct db_breaker db_breaker;

/* The breaker of this url's database, created on first use; NULL only when
 * out of memory (then every call goes to the database).  lease_ms: how long
 * one probe may hold its turn. */
db_breaker *db_breaker_get(const char *url, int lease_ms);
void db_breaker_put(db_breaker *b);

/* What a call learned about the database. */
typedef enum {
    DB_REACHED = 0,   /* the database answered (a result, or an SQL error) */
    DB_UNREACHABLE,   /* no answer in time, no connection, the connection lost */
    DB_NOT_ASKED      /* failed before anything was sent (bad parameters, memory) */
} db_outcome;

/* Before a call that starts a conversation with the database.  1: go (*probe
 * says whether this call is the open breaker's probe, and must be reported);
 * 0: fail fast, why holds the message.  b may be NULL (always go). */
int db_breaker_admit(db_breaker *b, int *probe, char *why, size_t cap);
/* After every call that went to the database (admitted, or inside a
 * transaction).  reason: the error, when unreachable (for the log). */
void db_breaker_report(db_breaker *b, int probe, db_outcome outcome, const char *reason);

/* Tests and /metrics: whether it is open, whether a probe holds its turn,
 * and how many calls failed fast since it was created. */
int db_breaker_is_open(db_breaker *b);
int db_breaker_probing(db_breaker *b);
uint64_t db_breaker_fast_failures(db_breaker *b);

#endif
