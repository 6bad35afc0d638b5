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
 * error at once instead of waiting for the store once per row. */
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

/* For tests: rows queued for the next leader, rows of the batch being
 * written, and the batches and rows written since audit_starts_new. */
typedef struct {
    size_t waiting, writing;
    unsigned long batches, rows;
} audit_starts_stats;
audit_starts_stats audit_starts_stats_now(audit_starts *g);

#endif
