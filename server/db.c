/* db.c — engine selection and the result type shared by every engine. */
#include "db.h"

#include "server_metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

/* Registered engines, asked in order; the first whose accepts() says yes
 * wins.  A new engine is one line here.  SQLite stays last: it takes any bare
 * path, so an engine with its own url forms must be asked before it. */
static const db_engine *const engines[] = {
    &db_engine_postgres,
    &db_engine_sqlite,
};

/* What db_engine_for hands out: each engine behind a copy whose exec and
 * query record their latency and failures (/metrics), so that every store
 * statement is measured in one place.  "Failures" are the engine's: a
 * constraint violation is an answer the store expects, not an error. */
#define TIMED_ENGINE(tag, inner)                                                                 \
    static int tag##_exec(db_t *db, const char *sql, const db_param *p, size_t np,               \
                          int64_t *changes)                                                      \
    {                                                                                            \
        double t0 = sm_now();                                                                    \
        int e = (inner).exec(db, sql, p, np, changes);                                           \
        sm_store_call("exec", sm_now() - t0, e == DB_OK || e == DB_E_CONSTRAINT);                \
        return e;                                                                                \
    }                                                                                            \
    static int tag##_query(db_t *db, const char *sql, const db_param *p, size_t np,              \
                           db_result *res)                                                       \
    {                                                                                            \
        double t0 = sm_now();                                                                    \
        int e = (inner).query(db, sql, p, np, res);                                              \
        sm_store_call("query", sm_now() - t0, e == DB_OK);                                       \
        return e;                                                                                \
    }

TIMED_ENGINE(timed_postgres, db_engine_postgres)
TIMED_ENGINE(timed_sqlite, db_engine_sqlite)

static db_engine g_timed[2];
static pthread_once_t g_timed_once = PTHREAD_ONCE_INIT;

static void make_timed(void)
{
    g_timed[0] = db_engine_postgres;
    g_timed[0].exec = timed_postgres_exec;
    g_timed[0].query = timed_postgres_query;
    g_timed[1] = db_engine_sqlite;
    g_timed[1].exec = timed_sqlite_exec;
    g_timed[1].query = timed_sqlite_query;
}

const db_engine *db_engine_for(const char *url)
{
    if (!url)
        return NULL;
    pthread_once(&g_timed_once, make_timed);
    for (size_t i = 0; i < sizeof(engines) / sizeof(engines[0]); i++) {
        if (!engines[i]->accepts(url))
            continue;
        return engines[i] == &db_engine_postgres ? &g_timed[0] : &g_timed[1];
    }
    return NULL;
}

void db_result_free(db_result *r)
{
    if (!r)
        return;
    if (r->cells) {
        for (size_t i = 0; i < r->nrows * r->ncols; i++)
            free(r->cells[i]);
        free(r->cells);
    }
    r->cells = NULL;
    r->nrows = r->ncols = 0;
}

/* Read by every thread that opens a handle, written once at start-up. */
static _Atomic int g_statement_ms = DB_DEFAULT_STATEMENT_TIMEOUT_MS;
static _Atomic int g_connect_ms = DB_DEFAULT_CONNECT_TIMEOUT_MS;

void db_set_limits(int statement_ms, int connect_ms)
{
    g_statement_ms = statement_ms > 0 ? statement_ms : DB_DEFAULT_STATEMENT_TIMEOUT_MS;
    g_connect_ms = connect_ms > 0 ? connect_ms : DB_DEFAULT_CONNECT_TIMEOUT_MS;
}

db_limits db_get_limits(void)
{
    return (db_limits){ .statement_ms = g_statement_ms, .connect_ms = g_connect_ms };
}

static _Atomic int g_sync = DB_SYNC_FULL;

void db_set_sync(db_sync s) { g_sync = s == DB_SYNC_NORMAL ? DB_SYNC_NORMAL : DB_SYNC_FULL; }

db_sync db_get_sync(void) { return g_sync == DB_SYNC_NORMAL ? DB_SYNC_NORMAL : DB_SYNC_FULL; }

int64_t db_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
