/* db_sqlite_checkpoint.h — the WAL of a SQLite store is checkpointed by a
 * thread of its own, not by the request that happens to commit.
 *
 * SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL
 * past 1,000 pages: that commit (a command's "started" row, say) also copies
 * every page written since the last checkpoint into the database file and
 * syncs both files.  Measured on the bench (docs/performance.md): one commit
 * in ~70 paid 3.6 ms at the median and up to 40 ms, ~110 µs per command on
 * average, all of it on some command's path.
 *
 * Here each store connection's WAL hook only looks at the WAL's size after
 * its commit: past CHECKPOINT_PAGES it wakes the file's checkpointer, a
 * thread with its own connection that runs a PASSIVE checkpoint (it never
 * waits for a reader or a writer; what it cannot copy now it copies next
 * time).  Should the WAL still reach CHECKPOINT_INLINE_PAGES (the thread
 * starved, or a long reader holding the pages), the committing connection
 * checkpoints itself, in RESTART mode (it waits for the write lock and the
 * readers through its busy handler): the WAL stays bounded whatever happens
 * to the thread.  A checkpoint syncs as SQLite's own does (the WAL
 * before copying, the database file after).  After each run the thread
 * makes the next writer start the WAL over (a RESTART checkpoint, bounded
 * in time): under steady commits the WAL otherwise never starts over and
 * grows, and appending to it doubles the cost of each commit's sync.
 *
 * One checkpointer per file per process, owned by the file's gate
 * (db_sqlite_gate.h): started with its first connection, stopped with its
 * last. */
#ifndef AURORA_DB_SQLITE_CHECKPOINT_H
#define AURORA_DB_SQLITE_CHECKPOINT_H

#include <sqlite3.h>
#include <stdint.h>

#define CHECKPOINT_PAGES 1000        /* SQLite's own default threshold */
#define CHECKPOINT_INLINE_PAGES 20000 /* ~80 MiB of WAL at 4 KiB pages */
/* What a WAL file is cut back to when it starts over (PRAGMA
 * journal_size_limit): four times what a checkpoint run finds, so steady
 * operation overwrites and never appends past it. */
#define DB_SQLITE_WAL_KEEP_BYTES "16777216"

typedef struct db_checkpointer db_checkpointer;
struct db_gate;

/* Starts the checkpointer of the database file at path (its own connection
 * and thread); gate (the file's, may be NULL) is told when a restart lets go
 * of the write lock.  NULL when it cannot: the connections then keep
 * SQLite's automatic checkpoint. */
db_checkpointer *db_checkpointer_start(const char *path, struct db_gate *gate);
/* Stops the thread (a checkpoint under way finishes first) and frees c. */
void db_checkpointer_stop(db_checkpointer *c);

/* Installs the WAL hook on a store connection to c's file. */
void db_checkpointer_attach(db_checkpointer *c, sqlite3 *h);

/* Checkpoints run by the thread, and by committing connections (the inline
 * fallback), so far. */
uint64_t db_checkpointer_runs(db_checkpointer *c);
uint64_t db_checkpointer_inline_runs(db_checkpointer *c);
/* Runs after which the next writer started the WAL over. */
uint64_t db_checkpointer_restarts(db_checkpointer *c);
/* For tests: the two thresholds, in WAL pages, for checkpointers started
 * from now on (0 keeps the default). */
void db_checkpointer_set_pages(int background, int inline_pages);

#endif
