/* db_sqlite_gate.h — wakes a SQLite writer the moment another connection of
 * this process ends its write transaction.
 *
 * SQLite lets one connection write at a time; a connection that finds the
 * file locked learns nothing more, and its busy handler can only sleep and
 * try again.  The store's workers each hold a connection to the same file,
 * so a command's "started" row that arrived while another worker was
 * committing (an fsync under AURORA_DB_SYNC=full) slept a whole step
 * (≥ 1 ms) after that commit was already done.  Here every connection of the
 * process to a file shares a counter of ended write transactions; the busy
 * handler waits for it to move, bounded by its step, and tries again at
 * once.  SQLite alone still decides who holds the lock (no statement is
 * classified here), and the step still bounds the wait for a lock held by
 * another process (the admin CLI, a second server on the file).
 *
 * Gates are shared by every connection to the same file (device and inode),
 * counted, and freed with the last one.  A gate also owns the file's WAL
 * checkpointer (db_sqlite_checkpoint.h), started and stopped with it. */
#ifndef AURORA_DB_SQLITE_GATE_H
#define AURORA_DB_SQLITE_GATE_H

#include <stdint.h>

typedef struct db_gate db_gate;

/* The gate of the file at path (opened already), or NULL if it has none
 * (":memory:", or the file cannot be identified: then the busy handler
 * sleeps its steps as before). */
db_gate *db_gate_get(const char *path);
void db_gate_put(db_gate *g);

/* The file's WAL checkpointer, or NULL (none could be started). */
struct db_checkpointer *db_gate_checkpointer(db_gate *g);

/* Write transactions ended on the file so far (read before trying the lock). */
uint64_t db_gate_ended(db_gate *g);
/* A connection ended a write transaction (or may have): wakes the waiters. */
void db_gate_ended_one(db_gate *g);
/* Waits until the count differs from seen, at most timeout_ms.  Returns the
 * count at return. */
uint64_t db_gate_wait(db_gate *g, uint64_t seen, int timeout_ms);
/* For tests: threads in db_gate_wait now. */
int db_gate_waiters(db_gate *g);

#endif
