/* test_server_db_checkpoint.c — the SQLite store's WAL is checkpointed by the
 * file's own thread (server/db_sqlite_checkpoint.c), on real database files.
 * In WAL mode pages reach the database file only through a checkpoint, so
 * the file's size says whether one ran.  Covered: commits past the threshold
 * wake the thread, which copies the WAL into the file while no commit ran a
 * checkpoint itself; a WAL past the inline limit is checkpointed by the
 * committing connection (the bound that holds if the thread falls behind);
 * below the threshold nothing is checkpointed; under commits that never
 * pause the WAL starts over instead of growing; the thread stops and the WAL
 * is folded in when the last connection closes (ASan checks nothing leaks). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "db_sqlite_checkpoint.h"
#include "db_sqlite_gate.h"

#define WAIT_MS 30000
#define ROW_BYTES 4000 /* about one page per row */

typedef struct {
    char dir[64];
    char path[128];
    db_t *db;
    db_gate *gate;
} fixture;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static off_t size_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

static void exec_ok(db_t *db, const char *sql, const db_param *p, size_t np)
{
    if (db_engine_sqlite.exec(db, sql, p, np, NULL) != DB_OK)
        fail_msg("%s: %s", sql, db_engine_sqlite.errmsg(db));
}

/* A new database file whose checkpointer has these thresholds. */
static fixture *open_file(int background_pages, int inline_pages)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/aurora-ckpt-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/store.db", f->dir);
    db_checkpointer_set_pages(background_pages, inline_pages);
    char err[256] = "";
    if (db_engine_sqlite.open(f->path, &f->db, err, sizeof(err)) != DB_OK)
        fail_msg("open %s: %s", f->path, err);
    db_checkpointer_set_pages(0, 0);
    f->gate = db_gate_get(f->path); /* the handle's gate: its checkpointer */
    assert_non_null(f->gate);
    assert_non_null(db_gate_checkpointer(f->gate));
    exec_ok(f->db, "CREATE TABLE rows (id INTEGER PRIMARY KEY, pad TEXT NOT NULL)", NULL, 0);
    return f;
}

/* n commits of about one page each. */
static void write_rows(fixture *f, int n)
{
    char *pad = malloc(ROW_BYTES + 1);
    assert_non_null(pad);
    memset(pad, 'p', ROW_BYTES);
    pad[ROW_BYTES] = '\0';
    for (int i = 0; i < n; i++) {
        db_param p[] = { DB_P_TEXT(pad) };
        exec_ok(f->db, "INSERT INTO rows (pad) VALUES (?)", p, 1);
    }
    free(pad);
}

static void close_file(fixture *f)
{
    db_gate_put(f->gate);
    db_engine_sqlite.close(f->db); /* the last connection: the thread stops */
    /* ... and SQLite folded the WAL into the file as it closed */
    assert_true(size_of(f->path) >= 100 * ROW_BYTES);
    char p[192];
    snprintf(p, sizeof(p), "%s-wal", f->path);
    assert_int_equal(size_of(p), -1);
    unlink(f->path);
    snprintf(p, sizeof(p), "%s-shm", f->path);
    unlink(p);
    assert_int_equal(rmdir(f->dir), 0);
    free(f);
}

static void commits_past_the_threshold_wake_the_thread(void **state)
{
    fixture *f = open_file(50, 100000);
    db_checkpointer *c = db_gate_checkpointer(f->gate);
    off_t before = size_of(f->path);
    write_rows(f, 150);
    int64_t until = now_ms() + WAIT_MS;
    /* Both: the file grows while a run is still under way (its count goes
     * up when the checkpoint returns). */
    while (size_of(f->path) < before + 40 * ROW_BYTES || db_checkpointer_runs(c) < 1) {
        if (now_ms() > until)
            fail_msg("the WAL never reached the database file (%llu background runs)",
                     (unsigned long long)db_checkpointer_runs(c));
        usleep(2000);
    }
    assert_int_equal(db_checkpointer_inline_runs(c), 0); /* no commit paid for it */
    close_file(f);
}

static void a_wal_past_the_inline_limit_is_checkpointed_by_its_commit(void **state)
{
    fixture *f = open_file(100000, 60);
    db_checkpointer *c = db_gate_checkpointer(f->gate);
    off_t before = size_of(f->path);
    write_rows(f, 100);
    /* synchronous: done when the commit past the limit returned */
    assert_true(db_checkpointer_inline_runs(c) >= 1);
    assert_true(size_of(f->path) >= before + 50 * ROW_BYTES);
    assert_int_equal(db_checkpointer_runs(c), 0);
    close_file(f);
}

static void below_the_threshold_nothing_is_copied(void **state)
{
    fixture *f = open_file(1000, 100000);
    db_checkpointer *c = db_gate_checkpointer(f->gate);
    off_t before = size_of(f->path);
    write_rows(f, 100);
    assert_int_equal(size_of(f->path), before);
    assert_int_equal(db_checkpointer_runs(c) + db_checkpointer_inline_runs(c), 0);
    close_file(f);
}

/* Under commits that never pause, a PASSIVE checkpoint never catches up and
 * SQLite never starts the WAL over: it grew with every commit (412 MB in
 * 30 s of this loop without the restart).  The thread now restarts it after
 * each run, and the first commit after a restart cuts the file back to
 * DB_SQLITE_WAL_KEEP_BYTES.  Written until both hold (or WAIT_MS passes): a
 * restart, and a WAL file under half of the bytes committed.  The loop
 * needs about 8,400 commits, each with its fsync (AURORA_DB_SYNC=full, where
 * the WAL grew): its budget is four times WAIT_MS, room for a disk that
 * takes 14 ms per fsync, and a passing run ends as soon as both hold.
 * (Without the fsyncs the WAL stays small even without restarts, so the
 * size check would not tell.) */
static void steady_commits_start_the_wal_over(void **state)
{
    fixture *f = open_file(50, 100000);
    db_checkpointer *c = db_gate_checkpointer(f->gate);
    char wal[192];
    snprintf(wal, sizeof(wal), "%s-wal", f->path);
    int64_t until = now_ms() + 4 * WAIT_MS;
    long long written = 0, keep = atoll(DB_SQLITE_WAL_KEEP_BYTES);
    for (;;) {
        write_rows(f, 100);
        written += 100;
        off_t size = size_of(wal);
        if (written * ROW_BYTES > 2 * keep && db_checkpointer_restarts(c) >= 1 &&
            size < written * ROW_BYTES / 2)
            break;
        if (now_ms() > until)
            fail_msg("after %lld commits: %llu restarts, a WAL of %lld bytes", written,
                     (unsigned long long)db_checkpointer_restarts(c), (long long)size);
    }
    assert_int_equal(db_checkpointer_inline_runs(c), 0);
    close_file(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(commits_past_the_threshold_wake_the_thread),
        cmocka_unit_test(a_wal_past_the_inline_limit_is_checkpointed_by_its_commit),
        cmocka_unit_test(below_the_threshold_nothing_is_copied),
        cmocka_unit_test(steady_commits_start_the_wal_over),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
