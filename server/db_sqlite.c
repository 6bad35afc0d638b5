/* db_sqlite.c — the SQLite engine behind db.h (the embedded default).
 *
 * One db_t wraps one sqlite3 connection.  db.h promises that a db_t is used
 * by one thread at a time (every worker opens its own store), so the handle
 * is opened with SQLITE_OPEN_NOMUTEX: SQLite's per-call mutex would only cost
 * time.  Concurrency between handles (threads or processes) goes through the
 * file locks, softened by WAL.
 *
 * Every call has a deadline (db_limits.statement_ms from its start): the
 * busy handler waits for a lock only until then, and a progress handler
 * interrupts a statement still running at the deadline, so a database that
 * another process keeps locked, or a runaway statement, costs the caller a
 * bounded wait and DB_E_BUSY / DB_E_TIMEOUT instead of a hung worker.
 *
 * Prepared statements are kept per handle (STMT_CACHE of them, least
 * recently used one replaced) and reset after each call rather than
 * finalized: the store runs the same few statements per request, and
 * parsing them again was a quarter of the SQLite time of a kubectl round
 * trip (docs/performance.md).
 */
#include "db.h"
#include "db_sqlite_checkpoint.h"
#include "db_sqlite_gate.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* The progress handler runs every this many virtual-machine instructions:
 * often enough to stop within a millisecond or so, rarely enough to cost
 * nothing measurable. */
#define PROGRESS_EVERY_OPS 1000

/* Distinct statements kept prepared per handle: the hot path uses about a
 * dozen; the rest (migrations, rare admin queries) come and go. */
#define STMT_CACHE 48

typedef struct {
    char *sql;          /* the text as prepared (after rewrite_begin) */
    sqlite3_stmt *st;
    uint64_t last_used; /* db->uses at its last call */
} cached_stmt;

struct db {
    sqlite3 *h;
    cached_stmt stmts[STMT_CACHE];
    uint64_t uses;
    int statement_ms;    /* from db_get_limits() at open */
    int64_t deadline_ms; /* of the call in progress (db_now_ms clock) */
    int timed_out;       /* the progress handler interrupted it */
    db_gate *gate;       /* this file's "a write transaction ended" signal, or NULL */
    uint64_t gate_seen;  /* its count before the latest try for the lock */
    int txn_open;        /* a transaction was open after the last statement */
    /* Copied at failure time: sqlite3_errmsg() is overwritten by the next
     * call (even sqlite3_finalize), so it cannot be read lazily. */
    char err[512];
};

static void set_err(db_t *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(db_t *db, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(db->err, sizeof(db->err), fmt, ap);
    va_end(ap);
}

/* Native result code -> db.h error kind.  Extended codes are enabled, so the
 * primary code is the low byte. */
static int map_rc(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return DB_OK;
    case SQLITE_CONSTRAINT:
        return DB_E_CONSTRAINT;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return DB_E_BUSY;
    case SQLITE_CANTOPEN:
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
    case SQLITE_IOERR:
        /* The database itself is unusable: the closest kind is "connection". */
        return DB_E_CONN;
    default:
        return DB_E_OTHER;
    }
}

static int fail_rc(db_t *db, int rc, const char *what)
{
    if ((rc & 0xff) == SQLITE_INTERRUPT && db->timed_out) {
        set_err(db, "sqlite %s: statement timed out after %d ms", what, db->statement_ms);
        return DB_E_TIMEOUT;
    }
    if ((rc & 0xff) == SQLITE_BUSY && db_now_ms() >= db->deadline_ms) {
        set_err(db, "sqlite %s: %s (%d): still locked by another connection after %d ms", what,
                sqlite3_errmsg(db->h), rc, db->statement_ms);
        return DB_E_BUSY;
    }
    set_err(db, "sqlite %s: %s (%d)", what, sqlite3_errmsg(db->h), rc);
    return map_rc(rc);
}

/* ---- deadlines ------------------------------------------------------------- */

/* Starts the clock of one exec/query call. */
static void arm_deadline(db_t *db)
{
    db->timed_out = 0;
    db->deadline_ms = db_now_ms() + db->statement_ms;
}

/* sqlite3_progress_handler: non-zero interrupts the statement (SQLITE_INTERRUPT). */
static int past_deadline(void *arg)
{
    db_t *db = arg;
    if (db_now_ms() < db->deadline_ms)
        return 0;
    db->timed_out = 1;
    return 1;
}

/* sqlite3_busy_handler: waits for another connection's lock, never past
 * the call's deadline (0 = give up: SQLITE_BUSY).  Short steps, not
 * SQLite's own back-off up to 100 ms: the store's workers hold the write
 * lock for one short transaction each, and a waiter asleep for 100 ms
 * loses its turn to every newcomer (webhook intake at concurrency 16:
 * p99 553 ms with SQLite's steps, 195 ms with these; bench/webhook_bench.py).
 * A step ends early when a connection of this process ends its write
 * transaction (db_sqlite_gate.h). */
static int wait_for_lock(void *arg, int count)
{
    static const int steps_ms[] = { 1, 1, 2, 2, 3, 5 };
    db_t *db = arg;
    int64_t left = db->deadline_ms - db_now_ms();
    if (left <= 0)
        return 0;
    int nsteps = (int)(sizeof(steps_ms) / sizeof(steps_ms[0]));
    int64_t step = count < nsteps ? steps_ms[count] : steps_ms[nsteps - 1];
    if (step > left)
        step = left;
    if (db->gate) /* a connection of this process ending its transaction wakes us */
        db->gate_seen = db_gate_wait(db->gate, db->gate_seen, (int)step);
    else
        sqlite3_sleep((int)step);
    return 1;
}

/* ---- url --------------------------------------------------------------- */

static int has_prefix(const char *s, const char *p)
{
    return strncasecmp(s, p, strlen(p)) == 0;
}

/* "sqlite:///abs" -> "/abs", "sqlite://rel" -> "rel", "sqlite:x" -> "x",
 * anything else (bare path, ":memory:") as is.  NULL if nothing is left. */
static const char *url_path(const char *url)
{
    const char *p = url;
    if (has_prefix(p, "sqlite://"))
        p += 9;
    else if (has_prefix(p, "sqlite:"))
        p += 7;
    return *p ? p : NULL;
}

static int sqlite_accepts(const char *url)
{
    if (!url || !*url)
        return 0;
    if (has_prefix(url, "sqlite:"))
        return 1;
    /* A bare path is ours; any other scheme ("postgres://", …) is not. */
    return strstr(url, "://") == NULL;
}

/* ---- statements --------------------------------------------------------- */

static int only_space(const char *s)
{
    for (; s && *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r' && *s != ';')
            return 0;
    return 1;
}

/* Every transaction the store opens writes.  A deferred BEGIN that later
 * upgrades from read to write fails at once with SQLITE_BUSY when another
 * connection got the write lock first (the busy handler cannot help, it would
 * deadlock), so a plain portable "BEGIN" is taken as BEGIN IMMEDIATE: the
 * write lock is acquired up front, where busy_timeout does apply. */
static const char *rewrite_begin(const char *sql)
{
    const char *p = sql;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (strncasecmp(p, "BEGIN", 5) == 0 && only_space(p + 5))
        return "BEGIN IMMEDIATE";
    return sql;
}

/* Back into the cache, ready for its next call (bindings dropped: they
 * point into the caller's strings). */
static void release(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* A prepared statement for sql: the cached one, or a new one put in the
 * cache in place of the least recently used.  DB_OK or an error. */
static int cached_prepare(db_t *db, const char *sql, sqlite3_stmt **out)
{
    cached_stmt *victim = &db->stmts[0];
    db->uses++;
    for (int i = 0; i < STMT_CACHE; i++) {
        cached_stmt *c = &db->stmts[i];
        if (c->sql && !strcmp(c->sql, sql)) {
            c->last_used = db->uses;
            *out = c->st;
            return DB_OK;
        }
        if (!c->sql || (victim->sql && c->last_used < victim->last_used))
            victim = c;
    }
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    int rc = sqlite3_prepare_v3(db->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, &tail);
    if (rc != SQLITE_OK)
        return fail_rc(db, rc, "prepare");
    if (!st) /* only whitespace/comments */
        return set_err(db, "sqlite: empty statement"), DB_E_OTHER;
    /* One statement per call: trailing SQL would be silently ignored. */
    if (!only_space(tail)) {
        sqlite3_finalize(st);
        return set_err(db, "sqlite: more than one statement in one call"), DB_E_OTHER;
    }
    char *copy = strdup(sql);
    if (!copy) {
        sqlite3_finalize(st);
        return set_err(db, "sqlite: out of memory"), DB_E_OTHER;
    }
    if (victim->sql) {
        sqlite3_finalize(victim->st);
        free(victim->sql);
    }
    victim->sql = copy;
    victim->st = st;
    victim->last_used = db->uses;
    *out = st;
    return DB_OK;
}

/* After each statement (reset): when it ended a transaction, or was a
 * write outside one, the write lock it may have held is free: the other
 * connections of this process waiting for it try again now. */
static void note_lock_release(db_t *db, sqlite3_stmt *st)
{
    int open = !sqlite3_get_autocommit(db->h);
    if (db->gate && !open && (db->txn_open || !sqlite3_stmt_readonly(st)))
        db_gate_ended_one(db->gate);
    db->txn_open = open;
}

static int prepare(db_t *db, const char *sql, const db_param *p, size_t np, sqlite3_stmt **out)
{
    sqlite3_stmt *st = NULL;
    *out = NULL;
    if (!sql)
        return set_err(db, "sqlite: NULL statement"), DB_E_OTHER;
    /* Preparing may already wait for a lock (the schema): the clock starts here. */
    arm_deadline(db);
    if (db->gate) /* before any try for the lock: a release after it is seen */
        db->gate_seen = db_gate_ended(db->gate);
    int rc = cached_prepare(db, rewrite_begin(sql), &st);
    if (rc != DB_OK)
        return rc;
    if ((size_t)sqlite3_bind_parameter_count(st) != np) {
        set_err(db, "sqlite: statement has %d placeholders, %zu values given",
                sqlite3_bind_parameter_count(st), np);
        release(st);
        return DB_E_OTHER;
    }
    for (size_t i = 0; i < np; i++) {
        int idx = (int)i + 1;
        switch (p[i].type) {
        case DB_NULL:
            rc = sqlite3_bind_null(st, idx);
            break;
        case DB_TEXT:
            /* The caller's strings outlive the statement (finalized before
             * we return), so SQLITE_STATIC spares a copy. */
            rc = p[i].text ? sqlite3_bind_text(st, idx, p[i].text, -1, SQLITE_STATIC)
                           : sqlite3_bind_null(st, idx);
            break;
        case DB_INT:
            rc = sqlite3_bind_int64(st, idx, (sqlite3_int64)p[i].i);
            break;
        default:
            release(st);
            set_err(db, "sqlite: bad parameter type %d at %zu", (int)p[i].type, i + 1);
            return DB_E_OTHER;
        }
        if (rc != SQLITE_OK) {
            int e = fail_rc(db, rc, "bind");
            release(st);
            return e;
        }
    }
    *out = st;
    return DB_OK;
}

/* Resets st for its next use; on a failed step the error is taken before
 * resetting (which would repeat it). */
static int finish(db_t *db, sqlite3_stmt *st, int rc, const char *what)
{
    int e = DB_OK;
    if (rc != SQLITE_DONE)
        e = fail_rc(db, rc, what);
    release(st);
    note_lock_release(db, st);
    return e;
}

static int sqlite_exec(db_t *db, const char *sql, const db_param *p, size_t np, int64_t *changes)
{
    sqlite3_stmt *st;
    if (changes)
        *changes = 0;
    int e = prepare(db, sql, p, np, &st);
    if (e != DB_OK)
        return e;
    int rc;
    /* sqlite3_changes64() keeps the count of the last INSERT/UPDATE/DELETE
     * across other statements (BEGIN, DDL, …); the total tells whether this
     * statement changed anything at all. */
    sqlite3_int64 before = sqlite3_total_changes64(db->h);
    /* Rows (e.g. from a PRAGMA) are not wanted here: step past them. */
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    e = finish(db, st, rc, "exec");
    if (e == DB_OK && changes && sqlite3_total_changes64(db->h) != before)
        *changes = (int64_t)sqlite3_changes64(db->h);
    return e;
}

static void free_cells(char **cells, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(cells[i]);
    free(cells);
}

static int sqlite_query(db_t *db, const char *sql, const db_param *p, size_t np, db_result *res)
{
    sqlite3_stmt *st;
    memset(res, 0, sizeof(*res));
    int e = prepare(db, sql, p, np, &st);
    if (e != DB_OK)
        return e;

    size_t ncols = (size_t)sqlite3_column_count(st);
    size_t nrows = 0, ncells = 0, cap = 0;
    char **cells = NULL;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (ncols == 0) {
            nrows++;
            continue;
        }
        if (ncells + ncols > cap) {
            size_t ncap = cap ? cap * 2 : ncols * 8;
            while (ncap < ncells + ncols)
                ncap *= 2;
            if (ncap > SIZE_MAX / sizeof(char *))
                goto oom;
            char **nc = realloc(cells, ncap * sizeof(char *));
            if (!nc)
                goto oom;
            cells = nc;
            cap = ncap;
        }
        for (size_t c = 0; c < ncols; c++) {
            int col = (int)c;
            if (sqlite3_column_type(st, col) == SQLITE_NULL) {
                cells[ncells++] = NULL;
                continue;
            }
            /* Integers are rendered as text by SQLite itself ("42"). */
            const unsigned char *t = sqlite3_column_text(st, col);
            int len = sqlite3_column_bytes(st, col);
            if (!t) {
                /* NULL for a non-NULL value is out of memory, or an empty
                 * BLOB (which the store never writes, but read it as ""). */
                if (sqlite3_errcode(db->h) == SQLITE_NOMEM)
                    goto oom;
                t = (const unsigned char *)"";
                len = 0;
            }
            char *cell = malloc((size_t)len + 1);
            if (!cell)
                goto oom;
            memcpy(cell, t, (size_t)len);
            cell[len] = '\0';
            cells[ncells++] = cell;
        }
        nrows++;
    }
    e = finish(db, st, rc, "query");
    if (e != DB_OK) {
        free_cells(cells, ncells);
        return e;
    }
    res->nrows = nrows;
    res->ncols = ncols;
    res->cells = cells;
    return DB_OK;

oom:
    release(st);
    note_lock_release(db, st);
    free_cells(cells, ncells);
    set_err(db, "sqlite query: out of memory");
    return DB_E_OTHER;
}

/* ---- open / close --------------------------------------------------------- */

/* Runs a PRAGMA that answers with one value and returns it in buf. */
static int pragma_value(db_t *db, const char *sql, char *buf, size_t cap)
{
    db_result r;
    int e = sqlite_query(db, sql, NULL, 0, &r);
    if (e != DB_OK)
        return e;
    if (r.nrows != 1 || r.ncols < 1 || !r.cells[0]) {
        db_result_free(&r);
        set_err(db, "sqlite: unexpected answer to \"%s\"", sql);
        return DB_E_OTHER;
    }
    snprintf(buf, cap, "%s", r.cells[0]);
    db_result_free(&r);
    return DB_OK;
}

static void sqlite_close(db_t *db);

/* Creates path 0600 if it does not exist; an existing file of ours that
 * others may read (created by an older version under the umask) loses
 * those bits.  Never through a descriptor of an existing file: closing any
 * descriptor of a file drops every POSIX lock this process holds on it,
 * and SQLite's other connections to the database hold theirs in this
 * process (their transactions would silently lose their locks). */
int db_sqlite_private_file(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno != ENOENT) {
            snprintf(err, errlen, "sqlite: unable to open %s: %s", path, strerror(errno));
            return -1;
        }
        /* new: nobody can hold a lock on it yet */
        int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 && errno != EEXIST) {
            snprintf(err, errlen, "sqlite: unable to open %s: %s", path, strerror(errno));
            return -1;
        }
        if (fd >= 0)
            close(fd);
        return 0;
    }
    if (S_ISREG(st.st_mode) && st.st_uid == geteuid() && (st.st_mode & 077)) {
        if (chmod(path, st.st_mode & 0700) != 0)
            log_warn("sqlite: %s is readable by others and cannot be made private: %s", path,
                     strerror(errno));
        else
            log_info("sqlite: %s was readable by others (mode %03o); made private (0600)", path,
                     (unsigned)(st.st_mode & 0777));
    }
    return 0;
}

static int sqlite_open(const char *url, db_t **out, char *err, size_t errlen)
{
    *out = NULL;
    const char *path = url ? url_path(url) : NULL;
    if (!path || !sqlite_accepts(url)) {
        snprintf(err, errlen, "sqlite: bad database url");
        return DB_E_CONN;
    }
    int memory = strcmp(path, ":memory:") == 0;

    db_t *db = calloc(1, sizeof(*db));
    if (!db) {
        snprintf(err, errlen, "sqlite: out of memory");
        return DB_E_OTHER;
    }
    /* The state database holds every tenant's incidents, webhook bodies,
     * audit rows and key hashes: created 0600 here, before SQLite would
     * create it under the umask (0644 with the usual 022, readable by every
     * local user when the data directory already existed with 0755).  SQLite
     * gives its -wal and -shm files the main file's mode. */
    if (!memory && db_sqlite_private_file(path, err, errlen) != 0) {
        free(db);
        return DB_E_CONN;
    }
    /* No SQLITE_OPEN_URI: the path is a file name, never "file:…?opts". */
    int rc = sqlite3_open_v2(
        path, &db->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "sqlite open %s: %s", path,
                 db->h ? sqlite3_errmsg(db->h) : sqlite3_errstr(rc));
        sqlite3_close(db->h); /* a handle is returned even on failure */
        free(db);
        return map_rc(rc) == DB_E_OTHER ? DB_E_CONN : map_rc(rc);
    }
    sqlite3_extended_result_codes(db->h, 1);
    if (!memory)
        db->gate = db_gate_get(path);

    char val[32];
    int e = DB_OK;
    /* The handlers first: the PRAGMAs below may already need a lock. */
    db->statement_ms = db_get_limits().statement_ms;
    arm_deadline(db);
    rc = sqlite3_busy_handler(db->h, wait_for_lock, db);
    if (rc != SQLITE_OK)
        e = fail_rc(db, rc, "busy_handler");
    sqlite3_progress_handler(db->h, PROGRESS_EVERY_OPS, past_deadline, db);
    if (e == DB_OK)
        e = sqlite_exec(db, "PRAGMA foreign_keys = ON", NULL, 0, NULL);
    /* A build without foreign-key support ignores the PRAGMA silently. */
    if (e == DB_OK && (e = pragma_value(db, "PRAGMA foreign_keys", val, sizeof(val))) == DB_OK &&
        strcmp(val, "1") != 0) {
        set_err(db, "sqlite: foreign keys cannot be enabled");
        e = DB_E_OTHER;
    }
    /* WAL lets readers run beside the writer; also the first real read of
     * the file, so a file that is not a database fails here. */
    if (e == DB_OK && !memory &&
        (e = pragma_value(db, "PRAGMA journal_mode = WAL", val, sizeof(val))) == DB_OK &&
        strcasecmp(val, "wal") != 0) {
        set_err(db, "sqlite: cannot enable WAL journal (got \"%s\")", val);
        e = DB_E_OTHER;
    }
    /* The WAL is checkpointed by the file's own thread, not by whichever
     * command's commit takes it past the threshold (db_sqlite_checkpoint.h). */
    if (e == DB_OK && db->gate)
        db_checkpointer_attach(db_gate_checkpointer(db->gate), db->h);
    /* A WAL that grew during a burst keeps its size after it starts over
     * unless told: the first commit after a restart cuts it back to this. */
    if (e == DB_OK && !memory)
        e = sqlite_exec(db, "PRAGMA journal_size_limit = " DB_SQLITE_WAL_KEEP_BYTES, NULL, 0, NULL);
    /* FULL: every commit is fsynced before it returns (survives a power
     * loss).  NORMAL, in WAL mode: a commit is in the OS's page cache when
     * it returns, fsynced at the next checkpoint; it survives a crash of
     * this process, never corrupts the file, but a power loss or kernel
     * crash may drop the last commits.  AURORA_DB_SYNC chooses (db.h). */
    if (e == DB_OK && !memory)
        e = sqlite_exec(db, db_get_sync() == DB_SYNC_NORMAL ? "PRAGMA synchronous = NORMAL"
                                                            : "PRAGMA synchronous = FULL",
                        NULL, 0, NULL);
    if (e != DB_OK) {
        snprintf(err, errlen, "sqlite open %s: %s", path, db->err);
        sqlite_close(db);
        return e;
    }
    *out = db;
    return DB_OK;
}

static void sqlite_close(db_t *db)
{
    if (!db)
        return;
    /* The cached statements are reset, not finalized: finalize them here, or
     * close_v2 would keep the connection as a zombie. */
    for (int i = 0; i < STMT_CACHE; i++) {
        if (db->stmts[i].sql) {
            sqlite3_finalize(db->stmts[i].st);
            free(db->stmts[i].sql);
        }
    }
    sqlite3_close_v2(db->h); /* rolls back an open transaction */
    if (db->gate && db->txn_open)
        db_gate_ended_one(db->gate);
    db_gate_put(db->gate);
    free(db);
}

static const char *sqlite_errmsg(db_t *db)
{
    return db ? db->err : "no database";
}

const db_engine db_engine_sqlite = {
    .name = "sqlite",
    .accepts = sqlite_accepts,
    .open = sqlite_open,
    .close = sqlite_close,
    .exec = sqlite_exec,
    .query = sqlite_query,
    .errmsg = sqlite_errmsg,
};
