/* store_place.h — where a store unit test keeps its database, so that one
 * test body runs on both engines: a fresh SQLite file in a mkdtemp
 * directory of its own, or a fresh schema of the program's PostgreSQL
 * database (pg_harness.h: one throwaway server per test program, a schema
 * per test costs a catalog row).
 *
 * A program defines STORE_PLACE_DB (its PostgreSQL database name) before
 * including this, passes store_place_group_setup / _teardown to
 * cmocka_run_group_tests, and gives each fixture a store_place:
 * store_place_sqlite() or store_place_pg() in its setups,
 * store_place_remove() in its teardown.  g_pg is the server, for the tests
 * that stop and start it. */
#ifndef AURORA_TEST_STORE_PLACE_H
#define AURORA_TEST_STORE_PLACE_H

#ifndef STORE_PLACE_DB
#error "define STORE_PLACE_DB (the program's PostgreSQL database) before store_place.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_harness.h"

typedef struct {
    char dir[64];  /* SQLite: the test's directory; "" on PostgreSQL */
    char db[48];   /* PostgreSQL: "database/schema"; "" on SQLite */
    char url[320]; /* what store_open takes */
} store_place;

static pg_server g_pg;
static int g_pg_schemas;

/* tag names the directory: /tmp/aurora-<tag>-XXXXXX */
static inline void store_place_sqlite(store_place *p, const char *tag)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->dir, sizeof(p->dir), "/tmp/aurora-%s-XXXXXX", tag);
    assert_non_null(mkdtemp(p->dir));
    snprintf(p->url, sizeof(p->url), "sqlite://%s/store.db", p->dir);
}

static inline void store_place_pg(store_place *p)
{
    memset(p, 0, sizeof(*p));
    assert_int_equal(pg_schema_new(&g_pg, STORE_PLACE_DB, &g_pg_schemas, p->db, sizeof(p->db),
                                   p->url, sizeof(p->url)),
                     0);
}

static inline int store_place_is_pg(const store_place *p) { return p->db[0] != '\0'; }

static inline void store_place_remove(const store_place *p)
{
    if (p->dir[0])
        assert_int_equal(sqlite_test_dir_remove(p->dir), 0);
    if (p->db[0])
        assert_int_equal(pg_schema_drop(&g_pg, STORE_PLACE_DB, p->db), 0);
}

static int store_place_group_setup(void **state)
{
    (void)state;
    if (pg_create(&g_pg) < 0)
        return -1;
    return pg_create_db(&g_pg, STORE_PLACE_DB);
}

static int store_place_group_teardown(void **state)
{
    (void)state;
    pg_destroy(&g_pg);
    return 0;
}

#endif
