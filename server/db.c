/* db.c — engine selection and the result type shared by every engine. */
#include "db.h"

#include <stdlib.h>

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
