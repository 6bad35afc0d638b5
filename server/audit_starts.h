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
 * does not come.  If the batch fails, its ends are written on their own. */
#ifndef AURORA_AUDIT_STARTS_H
#define AURORA_AUDIT_STARTS_H

#include <stddef.h>

#include "store.h"

#define AUDIT_STARTS_BATCH_MAX 64

typedef struct audit_starts audit_starts;

audit_starts *audit_starts_new(void);
/* Only once no thread is inside audit_starts_write. */
void audit_starts_free(audit_starts *g);

/* Worker thread: writes a as a "started" row (store_audit_start semantics:
 * sets a->id) on st or, while another worker leads a batch, on that
 * worker's handle.  Returns the store code; on failure err holds the
 * store's message. */
int audit_starts_write(audit_starts *g, store_t *st, store_audit *a, char *err, size_t errlen);

/* Any thread: queues a command's end for the next transaction.  0, or -1
 * when out of memory (nothing queued). */
int audit_starts_add_end(audit_starts *g, const store_audit_end *row);
/* Worker thread: writes every queued end on st (AUDIT_STARTS_BATCH_MAX per
 * transaction); a failure is logged (the row stays "started" and a later
 * sweep closes it as interrupted). */
void audit_starts_flush_ends(audit_starts *g, store_t *st);

/* For tests: rows queued for the next leader, rows of the batch being
 * written, the batches and rows written since audit_starts_new; ends
 * queued, written (tried), and of those, written with a batch of starts. */
typedef struct {
    size_t waiting, writing;
    unsigned long batches, rows;
    size_t ends_waiting;
    unsigned long ends_written, ends_with_starts;
} audit_starts_stats;
audit_starts_stats audit_starts_stats_now(audit_starts *g);

#endif
