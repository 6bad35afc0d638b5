/* db.c — engine selection and the result type shared by every engine. */
#include "db.h"

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

const db_engine *db_engine_for(const char *url)
{
    if (!url)
        return NULL;
    for (size_t i = 0; i < sizeof(engines) / sizeof(engines[0]); i++)
        if (engines[i]->accepts(url))
            return engines[i];
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

int64_t db_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
