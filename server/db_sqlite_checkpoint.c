/* db_sqlite_checkpoint.c — a thread per SQLite file that checkpoints its WAL
 * off the request path (db_sqlite_checkpoint.h). */
#include "db_sqlite_checkpoint.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "db_sqlite_gate.h"
#include "log.h"

struct db_checkpointer {
    sqlite3 *h; /* the thread's own connection */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    int pending;  /* a hook asked for a checkpoint since the last one began */
    int stopping;
    int woken_at; /* WAL pages when a hook last woke the thread */
    int background_pages, inline_pages;
    db_gate *gate; /* told when a restart let go of the write lock */
    _Atomic uint64_t runs, inline_runs, restarts;
};

static _Atomic int g_background_pages = CHECKPOINT_PAGES;
static _Atomic int g_inline_pages = CHECKPOINT_INLINE_PAGES;

void db_checkpointer_set_pages(int background, int inline_pages)
{
    g_background_pages = background > 0 ? background : CHECKPOINT_PAGES;
    g_inline_pages = inline_pages > 0 ? inline_pages : CHECKPOINT_INLINE_PAGES;
}

/* sqlite3_exec callback of "PRAGMA journal_mode". */
static int on_journal_mode(void *arg, int n, char **values, char **names)
{
    if (n == 1 && names[0] && !strcmp(names[0], "journal_mode") && values[0] &&
        !strcmp(values[0], "wal"))
        *(int *)arg = 1;
    return 0;
}

/* How long a restart may wait for the write lock and for readers to leave
 * the WAL; holding the write lock meanwhile, it stalls commits that long. */
#define RESTART_WAIT_MS 5
/* How long the thread's connection waits for a lock otherwise (its first
 * read of the schema while another process recovers the WAL). */
#define CHECKPOINTER_BUSY_MS 2000

/* Under a steady stream of commits a PASSIVE checkpoint never catches up:
 * frames are appended while it copies, so the WAL never has all its frames
 * in the database file at the moment a writer begins, and SQLite starts it
 * over only then.  The WAL grew without bound: 15 MB over one bench run,
 * 412 MB in 30 s of test_server_db_checkpoint's loop.  Appending also costs
 * each commit's sync more than overwriting (ext4 journals the new size):
 * 0.25 against 0.125 ms per commit under synchronous=FULL in a standalone
 * loop on this disk.  Right after the PASSIVE copy, a RESTART copies the few
 * frames written meanwhile holding the write lock, syncs the file and waits
 * for readers to leave the WAL; the next writer then starts at the WAL's
 * beginning.  The lock is held for a few pages' copy and one sync, once per
 * CHECKPOINT_PAGES of WAL; waits are capped (RESTART_WAIT_MS), and what
 * cannot be done now is tried at the next run. */
static void restart_wal(db_checkpointer *c)
{
    sqlite3_busy_timeout(c->h, RESTART_WAIT_MS);
    int rc = sqlite3_wal_checkpoint_v2(c->h, NULL, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
    sqlite3_busy_timeout(c->h, CHECKPOINTER_BUSY_MS);
    /* commits that found the file locked wait on the gate, not a timer */
    if (c->gate)
        db_gate_ended_one(c->gate);
    if (rc == SQLITE_OK)
        atomic_fetch_add(&c->restarts, 1);
    else if (rc != SQLITE_BUSY)
        log_warn("sqlite: restarting the WAL failed: %s", sqlite3_errstr(rc));
}

static void *checkpointer_main(void *arg)
{
    db_checkpointer *c = arg;
    /* A connection learns that the file is in WAL mode (and opens the WAL)
     * only when it reads the file; until then a checkpoint on it does
     * nothing.  The thread starts with the first store connection, before
     * that one has switched the file to WAL, so it asks at its first run. */
    int wal = 0;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->pending && !c->stopping)
            pthread_cond_wait(&c->wake, &c->mu);
        if (c->stopping)
            break;
        c->pending = 0;
        pthread_mutex_unlock(&c->mu);
        if (!wal) /* a read of the schema opens the WAL, then the mode says so */
            sqlite3_exec(c->h, "SELECT count(*) FROM sqlite_master; PRAGMA journal_mode",
                         on_journal_mode, &wal, NULL);
        int wal_pages = 0, copied = 0;
        int rc = sqlite3_wal_checkpoint_v2(c->h, NULL, SQLITE_CHECKPOINT_PASSIVE, &wal_pages,
                                           &copied);
        /* BUSY: another checkpoint (another process's) holds the file's
         * checkpoint lock; the next commit past the threshold asks again. */
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            log_warn("sqlite: background checkpoint failed: %s", sqlite3_errstr(rc));
        if (rc == SQLITE_OK && wal)
            restart_wal(c);
        atomic_fetch_add(&c->runs, 1);
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

db_checkpointer *db_checkpointer_start(const char *path, db_gate *gate)
{
    db_checkpointer *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->gate = gate;
    c->background_pages = g_background_pages;
    c->inline_pages = g_inline_pages;
    /* NOMUTEX: only the thread uses this connection.  Its synchronous level
     * decides what a checkpoint syncs: both FULL and NORMAL sync the WAL
     * before copying and the database file after, as the store's own
     * connections would. */
    int have_mu = 0, have_cv = 0;
    /* The PRAGMA reads the schema: a file briefly locked (another process's
     * WAL recovery, the previous gate's last close) is waited for, not taken
     * as a reason to run without a checkpointer.  PASSIVE checkpoints never
     * call the busy handler, so the thread's own work does not wait on it. */
    if (sqlite3_open_v2(path, &c->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_busy_timeout(c->h, CHECKPOINTER_BUSY_MS) != SQLITE_OK ||
        sqlite3_exec(c->h,
                     db_get_sync() == DB_SYNC_NORMAL ? "PRAGMA synchronous = NORMAL"
                                                     : "PRAGMA synchronous = FULL",
                     NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    if (pthread_mutex_init(&c->mu, NULL) != 0)
        goto fail;
    have_mu = 1;
    if (pthread_cond_init(&c->wake, NULL) != 0)
        goto fail;
    have_cv = 1;
    if (pthread_create(&c->thread, NULL, checkpointer_main, c) != 0)
        goto fail;
    return c;
fail:
    if (have_cv)
        pthread_cond_destroy(&c->wake);
    if (have_mu)
        pthread_mutex_destroy(&c->mu);
    sqlite3_close(c->h); /* a handle is returned even when open fails */
    free(c);
    return NULL;
}

void db_checkpointer_stop(db_checkpointer *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stopping = 1;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    /* The last connection to the file: SQLite checkpoints and removes the
     * WAL as it closes, as it did when a store connection was the last. */
    sqlite3_close(c->h);
    pthread_cond_destroy(&c->wake);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* sqlite3_wal_hook: runs in the committing thread after each commit, with
 * the pages now in the WAL. */
static int on_commit(void *arg, sqlite3 *h, const char *schema, int wal_pages)
{
    db_checkpointer *c = arg;
    if (wal_pages >= c->inline_pages) {
        /* RESTART, not PASSIVE: under commits that never pause a PASSIVE
         * one never lets the WAL start over (restart_wal) */
        sqlite3_wal_checkpoint_v2(h, schema, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
        atomic_fetch_add(&c->inline_runs, 1);
    } else if (wal_pages >= c->background_pages) {
        /* Until a writer restarts the WAL from its start (it does once a
         * checkpoint has copied every frame), it stays past the threshold:
         * waking at every commit would sync both files per commit for a
         * few new frames each.  Wake again once it has grown by a quarter
         * of the threshold, or after a restart. */
        pthread_mutex_lock(&c->mu);
        int wake = !c->pending && (wal_pages < c->woken_at ||
                                   wal_pages - c->woken_at >= c->background_pages / 4);
        if (wake) {
            c->pending = 1;
            c->woken_at = wal_pages;
        }
        pthread_mutex_unlock(&c->mu);
        if (wake)
            pthread_cond_signal(&c->wake);
    }
    return SQLITE_OK;
}

void db_checkpointer_attach(db_checkpointer *c, sqlite3 *h)
{
    /* Replaces SQLite's automatic checkpoint, which is itself a WAL hook. */
    if (c)
        sqlite3_wal_hook(h, on_commit, c);
}

uint64_t db_checkpointer_runs(db_checkpointer *c)
{
    return c ? atomic_load(&c->runs) : 0;
}

uint64_t db_checkpointer_inline_runs(db_checkpointer *c)
{
    return c ? atomic_load(&c->inline_runs) : 0;
}

uint64_t db_checkpointer_restarts(db_checkpointer *c)
{
    return c ? atomic_load(&c->restarts) : 0;
}
