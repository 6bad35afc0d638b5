/* audit_starts.h — group commit of commands' "started" audit rows.
 *
 * A command's audit row must be committed before the command is sent
 * (exec_admit).  With AURORA_DB_SYNC=full each commit is an fsync, and
 * SQLite has one writer at a time, so a burst of commands used to wait for
 * one fsync after the other.  Here the store workers that are starting
 * commands at the same moment share one transaction: the first becomes the
 * leader and writes every row queued so far (at most AUDIT_STARTS_BATCH_MAX)
 * on its own store handle; the others wait for its commit, and one of them
 * leads the next batch.  A lone command is written as before (no BEGIN, one
 * statement).  A row the store refuses before any SQL fails alone; if a
 * batch fails because of one row (its org is gone), the leader writes the
 * rows one by one, so only that command fails; if the store itself fails
 * (down, locked past its deadline), every command of the batch gets that
 * error at once instead of waiting for the store once per row.
 *
 * Ends ride along.  A finished command's outcome (audit_starts_add_end) waits
 * here for the next batch of starts and goes into its transaction: one
 * command after another (concurrency 1) commits once per command instead of
 * twice, and the next start no longer waits for the previous end's fsync.
 * The caller also arranges audit_starts_flush_ends a little later (exec.c:
 * AUDIT_END_DELAY_MS), so an end is never left waiting for a start that
 * does not come.  If the batch fails because of a start, its ends are
 * written on their own.
 *
 * An end the store fails to write for a reason of its own (down, locked past
 * its deadline, PostgreSQL's breaker open) is not lost: it goes back to the
 * front of the queue and is tried again with the next batch, flush, the
 * periodic retry (exec.c) and once more at shutdown; only an end refused on
 * its own merits (no such row, an invalid outcome) is logged and let go.  At
 * most AUDIT_ENDS_MAX ends wait: past that the oldest is dropped (logged;
 * its row stays "started").  Counted in aurora_audit_ends_retried_total and
 * aurora_audit_ends_dropped_total.
 *
 * The one row of a command refused before it was admitted (cluster_busy, a
 * cloud_exec refused: no "started" row to complete) rides the same queue
 * when the store fails it (audit_starts_write_final): kept, bounded (also
 * by AUDIT_KEPT_BYTES_MAX of argv), retried by the flush and counted alike. */
#ifndef AURORA_AUDIT_STARTS_H
#define AURORA_AUDIT_STARTS_H

#include <stddef.h>

#include "store.h"

#define AUDIT_STARTS_BATCH_MAX 64
/* Ends waiting for the store at most (about 150 bytes each). */
#define AUDIT_ENDS_MAX 10000
/* Of which the final rows of refused commands hold at most this much (their
 * argv: up to 1 MiB each), past which the oldest waiting are dropped too. */
#define AUDIT_KEPT_BYTES_MAX (16u * 1024 * 1024)

typedef struct audit_starts audit_starts;

audit_starts *audit_starts_new(void);
/* Only once no thread is inside audit_starts_write. */
void audit_starts_free(audit_starts *g);

/* Worker thread: writes a as a "started" row (store_audit_start semantics:
 * sets a->id) on st or, while another worker leads a batch, on that
 * worker's handle.  Returns the store code; on failure err holds the
 * store's message. */
int audit_starts_write(audit_starts *g, store_t *st, store_audit *a, char *err, size_t errlen);

/* Any thread: queues a command's end for the next transaction (past
 * AUDIT_ENDS_MAX waiting, the oldest is dropped).  0, or -1 when out of
 * memory (nothing queued). */
int audit_starts_add_end(audit_starts *g, const store_audit_end *row);
/* Worker thread: writes every queued end on st (AUDIT_STARTS_BATCH_MAX per
 * transaction), those the store failed before first.  An end refused on its
 * own merits is logged; if the store fails, the ends it was given go back
 * to the queue and the flush stops there (the next one tries again). */
void audit_starts_flush_ends(audit_starts *g, store_t *st);

/* Worker thread: the one row of a command refused before it was admitted
 * (outcome cluster_busy, refused: it has no "started" row), written at once
 * on st.  If the store fails (down, locked past its deadline, breaker open)
 * a copy is kept in the ends' queue and written by the flushes and retries
 * that write them, with their bound and counters (its ended_at stays the
 * refusal's time, a->at unless set); a row refused on its own merits
 * (invalid, no such org) is logged and let go.  0 when written or kept, -1
 * when not (logged). */
int audit_starts_write_final(audit_starts *g, store_t *st, const store_audit *a);
/* Any thread, no store call: queues a copy of such a row for the next
 * flush.  0, or -1 when out of memory (nothing queued). */
int audit_starts_add_final(audit_starts *g, const store_audit *a);

/* For tests: rows queued for the next leader, rows of the batch being
 * written, the batches and rows written since audit_starts_new; ends
 * queued (those the store failed among them, and kept final rows), written
 * (tried; ends only), and of those, written with a batch of starts; ends
 * and final rows put back in the queue after the store failed them (once
 * per failure), and those dropped past AUDIT_ENDS_MAX or
 * AUDIT_KEPT_BYTES_MAX. */
typedef struct {
    size_t waiting, writing;
    unsigned long batches, rows;
    size_t ends_waiting;
    unsigned long ends_written, ends_with_starts;
    unsigned long ends_retried, ends_dropped;
} audit_starts_stats;
audit_starts_stats audit_starts_stats_now(audit_starts *g);

#endif
