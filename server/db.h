/* db.h — the small SQL engine interface the store is written against.
 *
 * SQL text uses '?' placeholders; an engine that numbers them ($1, $2 …)
 * rewrites them.  Results are materialized (small row sets only: the store
 * never selects unbounded data).  A db_t is used by one thread at a time.
 */
#ifndef AURORA_DB_H
#define AURORA_DB_H

#include <stddef.h>
#include <stdint.h>

typedef struct db db_t;

typedef enum { DB_NULL, DB_TEXT, DB_INT } db_type;
typedef struct {
    db_type type;
    const char *text; /* DB_TEXT */
    int64_t i;        /* DB_INT */
} db_param;

#define DB_P_TEXT(s) ((db_param){ .type = (s) ? DB_TEXT : DB_NULL, .text = (s) })
#define DB_P_INT(v)  ((db_param){ .type = DB_INT, .i = (int64_t)(v) })

typedef struct {
    size_t nrows, ncols;
    char **cells; /* nrows*ncols, row-major; NULL for SQL NULL */
} db_result;

/* Error kinds an engine maps its native codes to.  DB_E_TIMEOUT: the
 * statement (or the connection it needed) did not finish within the limits
 * below; like DB_E_CONN, whether a write was applied is unknown. */
enum {
    DB_OK = 0,
    DB_E_CONSTRAINT = -2,
    DB_E_BUSY = -3,
    DB_E_CONN = -4,
    DB_E_TIMEOUT = -5,
    DB_E_OTHER = -1
};

/* Time limits of every handle opened after db_set_limits() (process-wide,
 * set once at start-up from AURORA_DB_STATEMENT_TIMEOUT_MS and
 * AURORA_DB_CONNECT_TIMEOUT_MS).  A stalled database must cost a caller a
 * bounded wait and a clear error, never a hung worker:
 *  - statement_ms bounds one exec/query call, lock waits included;
 *  - connect_ms bounds one (re)connection, authentication included.
 * Values <= 0 keep the defaults. */
#define DB_DEFAULT_STATEMENT_TIMEOUT_MS 5000
#define DB_DEFAULT_CONNECT_TIMEOUT_MS 5000
typedef struct {
    int statement_ms;
    int connect_ms;
} db_limits;
void db_set_limits(int statement_ms, int connect_ms);
db_limits db_get_limits(void);

/* What a commit promises (AURORA_DB_SYNC, process-wide, set once at
 * start-up, read by every handle opened after):
 *  - DB_SYNC_FULL: written to stable storage before the call returns;
 *  - DB_SYNC_NORMAL: SQLite only (WAL, synchronous=NORMAL): in the OS page
 *    cache when the call returns, on disk at the next checkpoint; survives a
 *    crash of the process, a power loss may drop the last commits (the file
 *    stays consistent).  Saves two fsyncs per command (its audit row).
 * PostgreSQL follows its own server's synchronous_commit either way. */
typedef enum { DB_SYNC_FULL = 0, DB_SYNC_NORMAL = 1 } db_sync;
void db_set_sync(db_sync s);
db_sync db_get_sync(void);
/* Milliseconds on the monotonic clock (deadlines). */
int64_t db_now_ms(void);

typedef struct db_engine {
    const char *name;                 /* "sqlite", "postgres" */
    int (*accepts)(const char *url);  /* 1 if this engine handles the url */
    int (*open)(const char *url, db_t **out, char *err, size_t errlen);
    void (*close)(db_t *db);
    /* Statement without result rows; *changes (may be NULL) gets affected rows. */
    int (*exec)(db_t *db, const char *sql, const db_param *p, size_t np, int64_t *changes);
    /* Statement with result rows into *res (free with db_result_free). */
    int (*query)(db_t *db, const char *sql, const db_param *p, size_t np, db_result *res);
    const char *(*errmsg)(db_t *db);
} db_engine;

extern const db_engine db_engine_sqlite;
extern const db_engine db_engine_postgres;

/* A SQLite file (the state store, the local secrets store) made private
 * before SQLite opens it: created 0600 if it does not exist, an existing
 * file of ours loses the group and other bits (logged).  0, or -1 with err
 * set. */
int db_sqlite_private_file(const char *path, char *err, size_t errlen);

/* Picks the engine for a url (NULL if none). */
const db_engine *db_engine_for(const char *url);
void db_result_free(db_result *r);
static inline const char *db_cell(const db_result *r, size_t row, size_t col)
{
    return r->cells[row * r->ncols + col];
}

#endif
