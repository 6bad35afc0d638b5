/* test_store.c — the storage layer (server/store.c over server/db_sqlite.c
 * and server/db_postgres.c).
 *
 * The functional tests run three times: against ":memory:", against a fresh
 * SQLite file in a temporary directory (WAL, real locking), and against a
 * fresh database on a throwaway PostgreSQL server that this binary starts
 * (pg_harness.h: initdb + postgres on a unix socket in a mkdtemp directory,
 * removed at the end).  Backing-specific tests cover migrations across
 * reopen, url forms, corrupt files, a schema from a newer server, over-long
 * stored values and concurrent handles; those inspect the database directly
 * (sqlite3 / libpq) so they check what is really stored, not just what the
 * store reports.  PostgreSQL-only tests restart the server between calls,
 * inside a transaction, under a running statement and under load. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "clock.h"
#include "db.h"
#include "breaker.h"
#include "db_sqlite_gate.h"
#include "pg_harness.h"
#include "argv_redact.h"
#include "store.h"
#include "store_console.h"
#include "token.h"

/* The PostgreSQL server shared by every postgres/… test (group setup), and
 * its database; each test gets a fresh schema in it (pg_harness.h). */
#define STORE_PLACE_DB "aurora_test"
#include "store_place.h" /* g_pg and the group setup; this file places its own fixtures */
/* The newest migration (server/store_migrations.c). */
#define SCHEMA_LATEST 22

/* ---- fixtures ---------------------------------------------------------------- */

typedef struct {
    store_t *s;
    char dir[64];   /* "" for :memory: and postgres */
    char path[128]; /* database file inside dir */
    int pg;         /* backed by PostgreSQL */
    char db[48];    /* postgres: "database/schema" (pg_harness.h) */
    char url[320];  /* what store_open takes for this backing */
} fixture;

static int make_tmpdir(char *dir, size_t cap)
{
    snprintf(dir, cap, "/tmp/aurora-store-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

/* Removes the database file, its WAL companions and the directory. */
static void remove_tmpdir(const char *dir)
{
    static const char *const names[] = { "store.db", "store.db-wal", "store.db-shm",
                                         "rel.db",   "rel.db-wal",   "rel.db-shm",
                                         "junk.db",  "junk.db-wal",  "junk.db-shm" };
    char p[256];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        unlink(p);
    }
    assert_int_equal(rmdir(dir), 0); /* fails if a file was left behind */
}

static store_t *open_ok(const char *url)
{
    store_t *s = NULL;
    char err[256] = "";
    int rc = store_open(url, &s, err, sizeof(err));
    if (rc != STORE_OK)
        fail_msg("store_open(%s): %s", url, err);
    assert_non_null(s);
    return s;
}

static int setup_memory(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->s = open_ok(":memory:");
    *state = f;
    return 0;
}

static int setup_file(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(make_tmpdir(f->dir, sizeof(f->dir)), 0);
    snprintf(f->path, sizeof(f->path), "%s/store.db", f->dir);
    char url[160];
    snprintf(url, sizeof(url), "sqlite://%s", f->path); /* "sqlite:///tmp/…" */
    snprintf(f->url, sizeof(f->url), "%s", f->path);     /* a bare path works too */
    f->s = open_ok(url);
    *state = f;
    return 0;
}

static int g_pg_frozen;
static void pg_signal_all(int sig);

/* A fresh schema on the shared server; the store migrates it on open. */
static int setup_pg(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->pg = 1;
    assert_int_equal(pg_schema_new(&g_pg, STORE_PLACE_DB, &g_pg_schemas, f->db, sizeof(f->db), f->url,
                                   sizeof(f->url)),
                     0);
    f->s = open_ok(f->url);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    /* A test that stopped the server or changed the time limits (and failed
     * before undoing it) leaves that to be undone here. */
    if (g_pg_frozen)
        pg_signal_all(SIGCONT);
    db_set_limits(0, 0);
    store_close(f->s);
    if (f->dir[0])
        remove_tmpdir(f->dir);
    if (f->pg) {
        /* A test that stopped the server leaves it to be started here. */
        if (g_pg.pid <= 0)
            assert_int_equal(pg_start(&g_pg), 0);
        assert_int_equal(pg_schema_drop(&g_pg, STORE_PLACE_DB, f->db), 0);
    }
    free(f);
    return 0;
}

/* ---- helpers ------------------------------------------------------------------ */

static store_org new_org(store_t *s, const char *name)
{
    store_org o;
    memset(&o, 0xAA, sizeof(o));
    int rc = store_org_create(s, name, &o);
    if (rc != STORE_OK)
        fail_msg("org_create: %s", store_errmsg(s));
    assert_int_equal(strncmp(o.id, "org_", 4), 0);
    assert_int_equal(strlen(o.id), 4 + 24);
    return o;
}

static store_user new_user(store_t *s, const char *org_id, const char *email)
{
    store_user u;
    int rc = store_user_create(s, org_id, email, "admin", &u);
    if (rc != STORE_OK)
        fail_msg("user_create: %s", store_errmsg(s));
    return u;
}

/* A real agent token, its hash and derived cluster id, as the API makes them. */
typedef struct {
    char token[AGENT_TOKEN_LEN + 1];
    char hash[65];
    store_agent_token t;
} made_token;

static made_token new_token(store_t *s, const char *org_id, const char *user_id,
                            const char *cluster_id, const char *name)
{
    made_token m;
    memset(&m, 0, sizeof(m));
    assert_int_equal(token_new_agent(m.token), 0);
    token_hash(m.token, m.hash);
    snprintf(m.t.org_id, sizeof(m.t.org_id), "%s", org_id);
    snprintf(m.t.created_by, sizeof(m.t.created_by), "%s", user_id);
    if (cluster_id)
        snprintf(m.t.cluster_id, sizeof(m.t.cluster_id), "%s", cluster_id);
    else
        token_cluster_id(m.token, m.t.cluster_id);
    snprintf(m.t.cluster_name, sizeof(m.t.cluster_name), "%s", name);
    snprintf(m.t.notes, sizeof(m.t.notes), "notes for %s", name);
    token_preview(m.token, m.t.preview);
    int rc = store_agent_token_create(s, &m.t, m.hash);
    if (rc != STORE_OK)
        fail_msg("agent_token_create: %s", store_errmsg(s));
    assert_int_equal(strncmp(m.t.id, "tok_", 4), 0);
    return m;
}

static store_connection conn_for(const char *org_id, const char *cluster_id, int64_t at)
{
    store_connection c;
    memset(&c, 0, sizeof(c));
    snprintf(c.cluster_id, sizeof(c.cluster_id), "%s", cluster_id);
    snprintf(c.org_id, sizeof(c.org_id), "%s", org_id);
    snprintf(c.token_id, sizeof(c.token_id), "tok_0123456789abcdef01234567");
    snprintf(c.cluster_name, sizeof(c.cluster_name), "name-%s", cluster_id);
    snprintf(c.agent_version, sizeof(c.agent_version), "1.2.3");
    snprintf(c.protocol, sizeof(c.protocol), "aurora-tunnel.v2");
    c.connected_at = at;
    return c;
}

static store_audit audit_for(const char *org_id, const char *argv_json, int64_t at)
{
    store_audit a;
    memset(&a, 0, sizeof(a));
    snprintf(a.org_id, sizeof(a.org_id), "%s", org_id);
    snprintf(a.user_id, sizeof(a.user_id), "usr_x");
    snprintf(a.cluster_id, sizeof(a.cluster_id), "cluster-0011223344556677");
    snprintf(a.kind, sizeof(a.kind), "kubectl");
    a.argv_json = (char *)argv_json;
    a.return_code = 0;
    a.bytes_out = 1234;
    a.duration_ms = 56;
    snprintf(a.outcome, sizeof(a.outcome), "ok");
    a.at = at;
    return a;
}

/* ---- schema ------------------------------------------------------------------- */

static void test_schema_version(void **state)
{
    fixture *f = *state;
    assert_int_equal(store_schema_version(f->s), SCHEMA_LATEST);
}

/* ---- organizations and users ------------------------------------------------------ */

static void test_org_create_get_first(void **state)
{
    store_t *s = ((fixture *)*state)->s;
    store_org none;
    assert_int_equal(store_org_first(s, &none), STORE_NOT_FOUND);

    int64_t before = time(NULL);
    store_org a = new_org(s, "Acme Ünïcode 株式会社");
    store_org b = new_org(s, "Beta");
    assert_string_not_equal(a.id, b.id);
    assert_true(a.created_at >= before && a.created_at <= time(NULL));

    store_org got;
    assert_int_equal(store_org_get(s, a.id, &got), STORE_OK);
    assert_string_equal(got.id, a.id);
    assert_string_equal(got.name, "Acme Ünïcode 株式会社");
    assert_int_equal(got.created_at, a.created_at);

    /* Same second: creation order still decides which is first. */
    assert_int_equal(store_org_first(s, &got), STORE_OK);
    assert_string_equal(got.id, a.id);

    assert_int_equal(store_org_get(s, "org_000000000000000000000000", &got), STORE_NOT_FOUND);

    /* Names must fit the struct they are read back into. */
    char longname[STORE_NAME_LEN + 1];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(store_org_create(s, longname, &got), STORE_ERR);
    assert_non_null(strstr(store_errmsg(s), "too long"));
    longname[STORE_NAME_LEN - 1] = '\0'; /* exactly the maximum */
    assert_int_equal(store_org_create(s, longname, &got), STORE_OK);
    assert_int_equal(strlen(got.name), STORE_NAME_LEN - 1);
    assert_int_equal(store_org_create(s, "", &got), STORE_ERR);
    assert_int_equal(store_org_create(s, "bad \xff utf8", &got), STORE_ERR);
    assert_non_null(strstr(store_errmsg(s), "UTF-8"));
}

static void test_users(void **state)
{
    store_t *s = ((fixture *)*state)->s;
    store_org a = new_org(s, "A");
    store_org b = new_org(s, "B");

    store_user u;
    assert_int_equal(store_user_create(s, a.id, "alice@example.com", "member", &u), STORE_OK);
    assert_int_equal(strncmp(u.id, "usr_", 4), 0);
    assert_string_equal(u.org_id, a.id);

    store_user got;
    assert_int_equal(store_user_get(s, a.id, u.id, &got), STORE_OK);
    assert_string_equal(got.id, u.id);
    assert_string_equal(got.org_id, a.id);
    assert_string_equal(got.email, "alice@example.com");
    assert_string_equal(got.role, "member");
    assert_int_equal(got.created_at, u.created_at);

    /* Another org cannot see the user. */
    assert_int_equal(store_user_get(s, b.id, u.id, &got), STORE_NOT_FOUND);

    /* Duplicate email within the org: CONFLICT; in another org: fine. */
    store_user dup;
    assert_int_equal(store_user_create(s, a.id, "alice@example.com", "admin", &dup),
                     STORE_CONFLICT);
    assert_non_null(strstr(store_errmsg(s), "email"));
    assert_int_equal(store_user_create(s, b.id, "alice@example.com", "admin", &dup), STORE_OK);
    assert_string_not_equal(dup.id, u.id);

    /* Bad role, unknown org. */
    assert_int_equal(store_user_create(s, a.id, "bob@example.com", "root", &dup), STORE_ERR);
    assert_non_null(strstr(store_errmsg(s), "role"));
    assert_int_equal(
        store_user_create(s, "org_ffffffffffffffffffffffff", "bob@example.com", "admin", &dup),
        STORE_NOT_FOUND);
    /* The failed attempts left nothing behind. */
    assert_int_equal(store_user_create(s, a.id, "bob@example.com", "admin", &dup), STORE_OK);
}

/* ---- identities named by the trusted backend ------------------------------------------------ */

static void test_backend_identities(void **state)
{
    store_t *s = ((fixture *)*state)->s;
    /* An admin-made account is a member of its org, created_by "admin". */
    store_org a = new_org(s, "A");
    assert_string_equal(a.created_by, "admin");
    store_user u;
    assert_int_equal(store_user_create(s, a.id, "alice@example.com", "member", &u), STORE_OK);
    store_member m;
    assert_int_equal(store_member_get(s, a.id, u.id, &m), STORE_OK);
    assert_string_equal(m.created_by, "admin");

    /* A UUID org and user never seen: both provisioned, once. */
    const char *org = "3f2b8c1e-9d4a-4f6e-8b7c-2a1d0e9f8c7b";
    const char *usr = "8e1f0c2d-3b4a-4c5d-9e8f-7a6b5c4d3e2f";
    int created = -1;
    assert_int_equal(store_identity_provision(s, org, usr, "backend", &created), STORE_OK);
    assert_int_equal(created, STORE_PROVISIONED_ORG | STORE_PROVISIONED_MEMBER);
    store_org got;
    assert_int_equal(store_org_get(s, org, &got), STORE_OK);
    assert_string_equal(got.created_by, "backend");
    assert_string_equal(got.name, org);
    assert_int_equal(store_member_get(s, org, usr, &m), STORE_OK);
    assert_string_equal(m.created_by, "backend");
    assert_int_equal(store_identity_provision(s, org, usr, "backend", &created), STORE_OK);
    assert_int_equal(created, 0);

    /* The same user named in a second org: a second membership; the org it
     * joined last is the one an org-less request resolves. */
    char latest[STORE_ID_LEN];
    assert_int_equal(store_member_latest_org(s, usr, latest), STORE_OK);
    assert_string_equal(latest, org);
    assert_int_equal(store_identity_provision(s, a.id, usr, "backend", &created), STORE_OK);
    assert_int_equal(created, STORE_PROVISIONED_MEMBER); /* the org existed */
    assert_int_equal(store_member_latest_org(s, usr, latest), STORE_OK);
    assert_string_equal(latest, a.id);
    assert_int_equal(store_member_latest_org(s, "nobody", latest), STORE_NOT_FOUND);

    /* An existing account named by the backend stays what it was. */
    assert_int_equal(store_identity_provision(s, a.id, u.id, "backend", &created), STORE_OK);
    assert_int_equal(created, 0);
    assert_int_equal(store_member_get(s, a.id, u.id, &m), STORE_OK);
    assert_string_equal(m.created_by, "admin");

    /* Org only (the backend's org-scoped calls without a user). */
    assert_int_equal(store_identity_provision(s, "org-only", NULL, "backend", &created), STORE_OK);
    assert_int_equal(created, STORE_PROVISIONED_ORG);

    /* Over-long ids are refused, nothing written. */
    char longid[STORE_ID_LEN + 2];
    memset(longid, 'x', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    assert_int_equal(store_identity_provision(s, longid, NULL, "backend", &created), STORE_ERR);
    assert_int_equal(store_org_get(s, longid, &got), STORE_NOT_FOUND);
}

static void test_rate_counters(void **state)
{
    store_t *s = ((fixture *)*state)->s;
    int ok = -1;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(store_rate_take(s, "k", 600, 3, 540, &ok), STORE_OK);
        assert_int_equal(ok, 1);
    }
    assert_int_equal(store_rate_take(s, "k", 600, 3, 540, &ok), STORE_OK);
    assert_int_equal(ok, 0); /* full: nothing taken */
    assert_int_equal(store_rate_take(s, "other", 600, 3, 540, &ok), STORE_OK);
    assert_int_equal(ok, 1); /* keys are independent */
    assert_int_equal(store_rate_give_back(s, "k", 600), STORE_OK);
    assert_int_equal(store_rate_take(s, "k", 600, 3, 540, &ok), STORE_OK);
    assert_int_equal(ok, 1);
    assert_int_equal(store_rate_take(s, "k", 600, 3, 540, &ok), STORE_OK);
    assert_int_equal(ok, 0);
    /* The next window starts empty and forgets the one before the last. */
    assert_int_equal(store_rate_take(s, "k", 660, 3, 600, &ok), STORE_OK);
    assert_int_equal(ok, 1);
    assert_int_equal(store_rate_take(s, "k", 720, 1, 660, &ok), STORE_OK);
    assert_int_equal(ok, 1);
    assert_int_equal(store_rate_take(s, "k", 600, 3, 0, &ok), STORE_OK);
    assert_int_equal(ok, 1); /* window 600 was deleted: a new row */
    assert_int_equal(store_rate_take(s, "k", 600, 0, 0, &ok), STORE_ERR); /* limit < 1 */

    /* n slots taken and given back at once (a delivery's alerts); never below 0 */
    assert_int_equal(store_rate_take_n(s, "n", 600, 10, 7, 540, &ok), STORE_OK);
    assert_int_equal(ok, 1);
    assert_int_equal(store_rate_take_n(s, "n", 600, 10, 7, 540, &ok), STORE_OK);
    assert_int_equal(ok, 0);
    assert_int_equal(store_rate_give_back_n(s, "n", 600, 7), STORE_OK);
    assert_int_equal(store_rate_take_n(s, "n", 600, 10, 10, 540, &ok), STORE_OK);
    assert_int_equal(ok, 1); /* all 10 free again */
    assert_int_equal(store_rate_give_back_n(s, "n", 600, 25), STORE_OK);
    assert_int_equal(store_rate_take_n(s, "n", 600, 10, 11, 540, &ok), STORE_OK);
    assert_int_equal(ok, 0); /* not 15 free: the count stopped at 0 */
    assert_int_equal(store_rate_take_n(s, "n", 600, 10, 10, 540, &ok), STORE_OK);
    assert_int_equal(ok, 1);
    assert_int_equal(store_rate_give_back_n(s, "n", 600, 0), STORE_ERR); /* n < 1 */
}

/* ---- API keys ------------------------------------------------------------------------ */

static void test_api_keys(void **state)
{
    store_t *s = ((fixture *)*state)->s;
    store_org a = new_org(s, "A");
    store_org b = new_org(s, "B");
    store_user ua = new_user(s, a.id, "a@example.com");
    store_user ub = new_user(s, b.id, "b@example.com");

    char key[API_KEY_LEN + 1], hash[65], preview[TOKEN_PREVIEW_LEN];
    assert_int_equal(token_new_api_key(key), 0);
    token_hash(key, hash);
    token_preview(key, preview);

    store_api_key k;
    assert_int_equal(store_api_key_create(s, a.id, ua.id, "ci key", hash, preview, &k), STORE_OK);
    assert_int_equal(strncmp(k.id, "key_", 4), 0);

    store_api_key got;
    assert_int_equal(store_api_key_lookup(s, hash, &got), STORE_OK);
    assert_string_equal(got.id, k.id);
    assert_string_equal(got.org_id, a.id);
    assert_string_equal(got.user_id, ua.id);
    assert_string_equal(got.name, "ci key");
    assert_string_equal(got.preview, preview);
    assert_int_equal(got.created_at, k.created_at);
    assert_int_equal(got.revoked_at, 0);

    /* The raw key is not a lookup key, and is refused as a hash. */
    assert_int_equal(store_api_key_lookup(s, key, &got), STORE_NOT_FOUND);
    assert_int_equal(store_api_key_create(s, a.id, ua.id, "raw", key, preview, &got), STORE_ERR);
    assert_non_null(strstr(store_errmsg(s), "SHA-256"));

    /* Same hash twice: CONFLICT.  Another org's user: NOT_FOUND. */
    assert_int_equal(store_api_key_create(s, a.id, ua.id, "again", hash, preview, &got),
                     STORE_CONFLICT);
    char hash2[65];
    token_hash("another key", hash2);
    assert_int_equal(store_api_key_create(s, a.id, ub.id, "x", hash2, "p", &got), STORE_NOT_FOUND);

    /* Revoking from another org does nothing. */
    assert_int_equal(store_api_key_revoke(s, b.id, k.id, 1000), STORE_NOT_FOUND);
    assert_int_equal(store_api_key_lookup(s, hash, &got), STORE_OK);

    /* Revoked keys are not found; revoking again is fine. */
    assert_int_equal(store_api_key_revoke(s, a.id, k.id, 1000), STORE_OK);
    assert_int_equal(store_api_key_lookup(s, hash, &got), STORE_NOT_FOUND);
    assert_int_equal(store_api_key_revoke(s, a.id, k.id, 2000), STORE_OK);
    assert_int_equal(store_api_key_revoke(s, a.id, "key_nope", 2000), STORE_NOT_FOUND);
}

/* ---- agent tokens ---------------------------------------------------------------------- */

static void test_agent_tokens(void **state)
{
    store_t *s = ((fixture *)*state)->s;
    store_org a = new_org(s, "A");
    store_user u = new_user(s, a.id, "a@example.com");

    int64_t before = time(NULL);
    made_token t1 = new_token(s, a.id, u.id, NULL, "prod");
    made_token t2 = new_token(s, a.id, u.id, NULL, "staging");
    made_token t3 = new_token(s, a.id, u.id, NULL, "dev");
    assert_true(t1.t.created_at >= before && t3.t.created_at <= time(NULL));

    /* lookup_hash returns every field but the hash. */
    store_agent_token got;
    assert_int_equal(store_agent_token_lookup_hash(s, t2.hash, &got), STORE_OK);
    assert_string_equal(got.id, t2.t.id);
    assert_string_equal(got.org_id, a.id);
    assert_string_equal(got.created_by, u.id);
    assert_string_equal(got.cluster_id, t2.t.cluster_id);
    assert_int_equal(strncmp(got.cluster_id, "cluster-", 8), 0);
    assert_string_equal(got.cluster_name, "staging");
    assert_string_equal(got.notes, "notes for staging");
    assert_string_equal(got.preview, t2.t.preview);
    assert_int_equal(got.created_at, t2.t.created_at);
    assert_int_equal(got.expires_at, 0);
    assert_int_equal(got.revoked_at, 0);
    assert_int_equal(store_agent_token_lookup_hash(s, t2.token, &got), STORE_NOT_FOUND);

    /* Newest first, even within one second. */
    store_agent_token *list = NULL;
    size_t n = 99;
    assert_int_equal(store_agent_token_list(s, a.id, &list, &n), STORE_OK);
    assert_int_equal(n, 3);
    assert_string_equal(list[0].id, t3.t.id);
    assert_string_equal(list[1].id, t2.t.id);
    assert_string_equal(list[2].id, t1.t.id);
    assert_string_equal(list[0].cluster_name, "dev");
    free(list);

    assert_int_equal(store_agent_token_get(s, a.id, t1.t.id, &got), STORE_OK);
    assert_string_equal(got.cluster_name, "prod");
    assert_int_equal(store_agent_token_get(s, a.id, "tok_missing", &got), STORE_NOT_FOUND);

    /* Revoke sets revoked_at once; a second revoke keeps the first time. */
    assert_int_equal(store_agent_token_revoke(s, a.id, t1.t.id, 5000), STORE_OK);
    assert_int_equal(store_agent_token_get(s, a.id, t1.t.id, &got), STORE_OK);
    assert_int_equal(got.revoked_at, 5000);
    assert_int_equal(store_agent_token_revoke(s, a.id, t1.t.id, 6000), STORE_OK);
    assert_int_equal(store_agent_token_get(s, a.id, t1.t.id, &got), STORE_OK);
    assert_int_equal(got.revoked_at, 5000);
    /* lookup_hash still finds it: the caller reports "Token revoked". */
    assert_int_equal(store_agent_token_lookup_hash(s, t1.hash, &got), STORE_OK);
    assert_int_equal(got.revoked_at, 5000);
    assert_int_equal(store_agent_token_revoke(s, a.id, "tok_missing", 6000), STORE_NOT_FOUND);

    /* Duplicate hash: CONFLICT, and the caller's struct keeps its id. */
    store_agent_token dup = t2.t;
    assert_int_equal(store_agent_token_create(s, &dup, t2.hash), STORE_CONFLICT);
    /* A raw token instead of its hash is refused. */
    dup = t2.t;
    assert_int_equal(store_agent_token_create(s, &dup, t2.token), STORE_ERR);
    /* Unknown org. */
    dup = t2.t;
    snprintf(dup.org_id, sizeof(dup.org_id), "org_ffffffffffffffffffffffff");
    char h[65];
    token_hash("unique", h);
    assert_int_equal(store_agent_token_create(s, &dup, h), STORE_NOT_FOUND);
}

static void test_agent_token_fields(void **state)
{
    store_t *s = ((fixture *)*state)->s;
    store_org a = new_org(s, "A");

    /* Expiry, an empty creator and long non-ASCII notes round-trip. */
    store_agent_token t;
    memset(&t, 0, sizeof(t));
    snprintf(t.org_id, sizeof(t.org_id), "%s", a.id);
    snprintf(t.cluster_id, sizeof(t.cluster_id), "cluster-aaaaaaaaaaaaaaaa");
    snprintf(t.cluster_name, sizeof(t.cluster_name), "クラスター");
    memset(t.notes, 'x', sizeof(t.notes) - 1);
    memcpy(t.notes, "é", 2);
    snprintf(t.preview, sizeof(t.preview), "aurora_kubectl_abcd...wxyz");
    t.expires_at = 1900000000;
    char h[65];
    token_hash("some token", h);
    assert_int_equal(store_agent_token_create(s, &t, h), STORE_OK);

    store_agent_token got;
    assert_int_equal(store_agent_token_get(s, a.id, t.id, &got), STORE_OK);
    assert_string_equal(got.created_by, "");
    assert_string_equal(got.cluster_name, "クラスター");
    assert_int_equal(strlen(got.notes), sizeof(t.notes) - 1);
    assert_memory_equal(got.notes, "é", 2);
    assert_int_equal(got.expires_at, 1900000000);

    /* An unterminated field is refused, not overread. */
    store_agent_token bad = t;
    memset(bad.cluster_name, 'y', sizeof(bad.cluster_name));
    token_hash("another", h);
    assert_int_equal(store_agent_token_create(s, &bad, h), STORE_ERR);
    /* A missing cluster id is refused. */
    bad = t;
    bad.cluster_id[0] = '\0';
    assert_int_equal(store_agent_token_create(s, &bad, h), STORE_ERR);
}

static void test_revoke_cluster(void **state)
{
    store_t *s = ((fixture *)*state)->s;
    store_org a = new_org(s, "A");
    store_org b = new_org(s, "B");
    made_token t1 = new_token(s, a.id, "usr_1", "cluster-1111111111111111", "c1");
    made_token t2 = new_token(s, a.id, "usr_1", "cluster-1111111111111111", "c1");
    made_token t3 = new_token(s, a.id, "usr_1", "cluster-2222222222222222", "c2");
    /* B happens to hold a token for the same cluster id: untouched. */
    made_token tb = new_token(s, b.id, "usr_2", "cluster-1111111111111111", "b1");

    assert_int_equal(store_agent_token_revoke(s, a.id, t1.t.id, 100), STORE_OK);
    int n = -1;
    assert_int_equal(store_agent_token_revoke_cluster(s, a.id, "cluster-1111111111111111", 200, &n),
                     STORE_OK);
    assert_int_equal(n, 1); /* t1 was already revoked */

    store_agent_token got;
    assert_int_equal(store_agent_token_get(s, a.id, t1.t.id, &got), STORE_OK);
    assert_int_equal(got.revoked_at, 100);
    assert_int_equal(store_agent_token_get(s, a.id, t2.t.id, &got), STORE_OK);
    assert_int_equal(got.revoked_at, 200);
    assert_int_equal(store_agent_token_get(s, a.id, t3.t.id, &got), STORE_OK);
    assert_int_equal(got.revoked_at, 0);
    assert_int_equal(store_agent_token_get(s, b.id, tb.t.id, &got), STORE_OK);
    assert_int_equal(got.revoked_at, 0);

    /* Again: nothing left to revoke; NULL count allowed. */
    assert_int_equal(store_agent_token_revoke_cluster(s, a.id, "cluster-1111111111111111", 300, &n),
                     STORE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(
        store_agent_token_revoke_cluster(s, a.id, "cluster-2222222222222222", 300, NULL), STORE_OK);
    assert_int_equal(store_agent_token_get(s, a.id, t3.t.id, &got), STORE_OK);
    assert_int_equal(got.revoked_at, 300);
}

/* ---- tenant scoping ---------------------------------------------------------------------- */

static void test_tenant_scoping(void **state)
{
    store_t *s = ((fixture *)*state)->s;
    store_org a = new_org(s, "A");
    store_org b = new_org(s, "B");
    made_token ta = new_token(s, a.id, "usr_a", NULL, "a-cluster");
    store_connection ca = conn_for(a.id, ta.t.cluster_id, 1000);
    assert_int_equal(store_connection_connected(s, &ca), STORE_OK);
    store_audit au = audit_for(a.id, "[\"get\",\"pods\"]", 1000);
    assert_int_equal(store_audit_insert(s, &au), STORE_OK);

    /* B sees none of it ... */
    store_agent_token t;
    assert_int_equal(store_agent_token_get(s, b.id, ta.t.id, &t), STORE_NOT_FOUND);
    store_agent_token *tl = NULL;
    size_t n = 99;
    assert_int_equal(store_agent_token_list(s, b.id, &tl, &n), STORE_OK);
    assert_int_equal(n, 0);
    assert_null(tl);
    store_connection c;
    assert_int_equal(store_connection_get(s, b.id, ta.t.cluster_id, &c), STORE_NOT_FOUND);
    store_connection *cl = NULL;
    n = 99;
    assert_int_equal(store_connection_list(s, b.id, &cl, &n), STORE_OK);
    assert_int_equal(n, 0);
    assert_null(cl);
    store_audit *al = NULL;
    n = 99;
    assert_int_equal(store_audit_list(s, b.id, 10, &al, &n), STORE_OK);
    assert_int_equal(n, 0);
    assert_null(al);

    /* ... and can change none of it. */
    assert_int_equal(store_agent_token_revoke(s, b.id, ta.t.id, 50), STORE_NOT_FOUND);
    int nrev = -1;
    assert_int_equal(store_agent_token_revoke_cluster(s, b.id, ta.t.cluster_id, 50, &nrev),
                     STORE_OK);
    assert_int_equal(nrev, 0);
    assert_int_equal(store_connection_delete(s, b.id, ta.t.cluster_id), STORE_NOT_FOUND);

    /* A still has everything, unrevoked. */
    assert_int_equal(store_agent_token_get(s, a.id, ta.t.id, &t), STORE_OK);
    assert_int_equal(t.revoked_at, 0);
    assert_int_equal(store_connection_get(s, a.id, ta.t.cluster_id, &c), STORE_OK);
    assert_int_equal(c.connected, 1);
    assert_int_equal(store_audit_list(s, a.id, 10, &al, &n), STORE_OK);
    assert_int_equal(n, 1);
    assert_string_equal(al[0].argv_json, "[\"get\",\"pods\"]");
    store_audit_list_free(al, n);
}

/* ---- connections --------------------------------------------------------------------------- */

static void test_connection_counter(void **state)
{
    store_t *s = ((fixture *)*state)->s;
    store_org a = new_org(s, "A");
    const char *cid = "cluster-00112233aabbccdd";

    /* Unknown cluster. */
    assert_int_equal(store_connection_heartbeat(s, cid, 5), STORE_NOT_FOUND);
    assert_int_equal(store_connection_disconnected(s, cid, 5), STORE_NOT_FOUND);

    store_connection c1 = conn_for(a.id, cid, 1000);
    assert_int_equal(store_connection_connected(s, &c1), STORE_OK);
    store_connection got;
    assert_int_equal(store_connection_get(s, a.id, cid, &got), STORE_OK);
    assert_string_equal(got.cluster_id, cid);
    assert_string_equal(got.org_id, a.id);
    assert_string_equal(got.token_id, c1.token_id);
    assert_string_equal(got.cluster_name, c1.cluster_name);
    assert_string_equal(got.agent_version, "1.2.3");
    assert_string_equal(got.protocol, "aurora-tunnel.v2");
    assert_int_equal(got.connected_at, 1000);
    assert_int_equal(got.last_heartbeat, 1000);
    assert_int_equal(got.disconnected_at, 0);
    assert_int_equal(got.connected, 1);

    assert_int_equal(store_connection_heartbeat(s, cid, 1060), STORE_OK);
    assert_int_equal(store_connection_get(s, a.id, cid, &got), STORE_OK);
    assert_int_equal(got.last_heartbeat, 1060);
    assert_int_equal(got.connected_at, 1000);

    /* A second session (replacement agent, legacy protocol) overlaps. */
    store_connection c2 = conn_for(a.id, cid, 1100);
    snprintf(c2.protocol, sizeof(c2.protocol), "legacy");
    snprintf(c2.agent_version, sizeof(c2.agent_version), "0.9");
    assert_int_equal(store_connection_connected(s, &c2), STORE_OK);
    assert_int_equal(store_connection_get(s, a.id, cid, &got), STORE_OK);
    assert_int_equal(got.connected, 2);
    assert_int_equal(got.connected_at, 1100);
    assert_int_equal(got.last_heartbeat, 1100);
    assert_string_equal(got.protocol, "legacy");
    assert_string_equal(got.agent_version, "0.9");

    /* The old session leaves: still connected. */
    assert_int_equal(store_connection_disconnected(s, cid, 1200), STORE_OK);
    assert_int_equal(store_connection_get(s, a.id, cid, &got), STORE_OK);
    assert_int_equal(got.connected, 1);
    assert_int_equal(got.disconnected_at, 0);

    /* The last one leaves: disconnected at that time. */
    assert_int_equal(store_connection_disconnected(s, cid, 1300), STORE_OK);
    assert_int_equal(store_connection_get(s, a.id, cid, &got), STORE_OK);
    assert_int_equal(got.connected, 0);
    assert_int_equal(got.disconnected_at, 1300);

    /* A stray extra disconnect neither goes negative nor moves the time. */
    assert_int_equal(store_connection_disconnected(s, cid, 1400), STORE_OK);
    assert_int_equal(store_connection_get(s, a.id, cid, &got), STORE_OK);
    assert_int_equal(got.connected, 0);
    assert_int_equal(got.disconnected_at, 1300);

    /* Reconnecting clears disconnected_at. */
    store_connection c3 = conn_for(a.id, cid, 1500);
    assert_int_equal(store_connection_connected(s, &c3), STORE_OK);
    assert_int_equal(store_connection_get(s, a.id, cid, &got), STORE_OK);
    assert_int_equal(got.connected, 1);
    assert_int_equal(got.disconnected_at, 0);
    assert_int_equal(got.connected_at, 1500);

    /* A connection for an org that does not exist. */
    store_connection bad = conn_for("org_ffffffffffffffffffffffff", "cluster-ffff", 1);
    assert_int_equal(store_connection_connected(s, &bad), STORE_NOT_FOUND);
}

static void test_connection_reset_list_delete(void **state)
{
    store_t *s = ((fixture *)*state)->s;
    store_org a = new_org(s, "A");
    store_connection c1 = conn_for(a.id, "cluster-bbbb000000000000", 100);
    store_connection c2 = conn_for(a.id, "cluster-aaaa000000000000", 100);
    assert_int_equal(store_connection_connected(s, &c1), STORE_OK);
    assert_int_equal(store_connection_connected(s, &c1), STORE_OK);
    assert_int_equal(store_connection_connected(s, &c2), STORE_OK);
    /* c3 disconnected earlier: reset keeps its time. */
    store_connection c3 = conn_for(a.id, "cluster-cccc000000000000", 100);
    assert_int_equal(store_connection_connected(s, &c3), STORE_OK);
    assert_int_equal(store_connection_disconnected(s, c3.cluster_id, 150), STORE_OK);

    assert_int_equal(store_connection_reset_all(s, 900), STORE_OK);

    store_connection *list = NULL;
    size_t n = 0;
    assert_int_equal(store_connection_list(s, a.id, &list, &n), STORE_OK);
    assert_int_equal(n, 3);
    /* Ordered by name ("name-cluster-aaaa…" first). */
    assert_string_equal(list[0].cluster_id, "cluster-aaaa000000000000");
    assert_string_equal(list[1].cluster_id, "cluster-bbbb000000000000");
    assert_string_equal(list[2].cluster_id, "cluster-cccc000000000000");
    for (size_t i = 0; i < n; i++)
        assert_int_equal(list[i].connected, 0);
    assert_int_equal(list[0].disconnected_at, 900);
    assert_int_equal(list[1].disconnected_at, 900);
    assert_int_equal(list[2].disconnected_at, 150);
    free(list);

    assert_int_equal(store_connection_delete(s, a.id, "cluster-aaaa000000000000"), STORE_OK);
    store_connection got;
    assert_int_equal(store_connection_get(s, a.id, "cluster-aaaa000000000000", &got),
                     STORE_NOT_FOUND);
    assert_int_equal(store_connection_delete(s, a.id, "cluster-aaaa000000000000"), STORE_NOT_FOUND);
    assert_int_equal(store_connection_list(s, a.id, &list, &n), STORE_OK);
    assert_int_equal(n, 2);
    free(list);
}

/* ---- audit log ----------------------------------------------------------------------------- */

static void test_audit(void **state)
{
    store_t *s = ((fixture *)*state)->s;
    store_org a = new_org(s, "A");

    const char *argv1 = "[\"get\",\"pods\",\"-n\",\"prod\"]";
    /* Quotes, backslashes, non-ASCII and an apostrophe (SQL quoting). */
    const char *argv2 = "[\"annotate\",\"pod\",\"x\",\"note=\\\"it's ünïcødé — 日本語 🚀\\\"\"]";
    store_audit a1 = audit_for(a.id, argv1, 2000);
    store_audit a2 = audit_for(a.id, argv2, 2000); /* same second: id orders */
    store_audit a3 = audit_for(a.id, "[\"version\"]", 1000);
    a2.return_code = -1;
    snprintf(a2.outcome, sizeof(a2.outcome), "agent_disconnected");
    a2.bytes_out = 0;
    a2.duration_ms = 30000;
    assert_int_equal(store_audit_insert(s, &a1), STORE_OK);
    assert_int_equal(store_audit_insert(s, &a2), STORE_OK);
    assert_int_equal(store_audit_insert(s, &a3), STORE_OK);

    store_audit *list = NULL;
    size_t n = 0;
    assert_int_equal(store_audit_list(s, a.id, 10, &list, &n), STORE_OK);
    assert_int_equal(n, 3);
    assert_string_equal(list[0].argv_json, argv2);
    assert_string_equal(list[1].argv_json, argv1);
    assert_string_equal(list[2].argv_json, "[\"version\"]");
    assert_true(list[0].id > list[1].id);
    assert_true(list[0].id != list[2].id && list[1].id != list[2].id);
    assert_string_equal(list[0].org_id, a.id);
    assert_string_equal(list[0].user_id, "usr_x");
    assert_string_equal(list[0].cluster_id, "cluster-0011223344556677");
    assert_string_equal(list[0].kind, "kubectl");
    assert_int_equal(list[0].return_code, -1);
    assert_string_equal(list[0].outcome, "agent_disconnected");
    assert_int_equal(list[0].bytes_out, 0);
    assert_int_equal(list[0].duration_ms, 30000);
    assert_int_equal(list[0].at, 2000);
    assert_int_equal(list[1].bytes_out, 1234);
    assert_int_equal(list[1].duration_ms, 56);
    assert_int_equal(list[1].return_code, 0);
    assert_string_equal(list[1].outcome, "ok");
    assert_int_equal(list[2].at, 1000);
    store_audit_list_free(list, n);

    /* limit */
    assert_int_equal(store_audit_list(s, a.id, 2, &list, &n), STORE_OK);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].argv_json, argv2);
    assert_string_equal(list[1].argv_json, argv1);
    store_audit_list_free(list, n);
    store_audit_list_free(NULL, 0);

    /* at = 0: stamped with the current time. */
    int64_t before = time(NULL);
    store_audit a4 = audit_for(a.id, "[]", 0);
    assert_int_equal(store_audit_insert(s, &a4), STORE_OK);
    assert_int_equal(store_audit_list(s, a.id, 1, &list, &n), STORE_OK);
    assert_int_equal(n, 1);
    assert_true(list[0].at >= before && list[0].at <= time(NULL));
    assert_string_equal(list[0].argv_json, "[]");
    store_audit_list_free(list, n);

    /* Refused: invalid UTF-8, no argv, unknown org. */
    store_audit bad = audit_for(a.id, "[\"\xc3\x28\"]", 1);
    assert_int_equal(store_audit_insert(s, &bad), STORE_ERR);
    bad = audit_for(a.id, NULL, 1);
    assert_int_equal(store_audit_insert(s, &bad), STORE_ERR);
    bad = audit_for("org_ffffffffffffffffffffffff", "[]", 1);
    assert_int_equal(store_audit_insert(s, &bad), STORE_NOT_FOUND);
    assert_int_equal(store_audit_list(s, a.id, 100, &list, &n), STORE_OK);
    assert_int_equal(n, 4);
    store_audit_list_free(list, n);
}

/* ---- operator helpers ---------------------------------------------------------------------- */

static void test_operator_helpers(void **state)
{
    store_t *s = ((fixture *)*state)->s;
    store_org a = new_org(s, "A");
    store_org b = new_org(s, "B");
    made_token t = new_token(s, a.id, "usr_a", "cluster-5555000000000000", "c5");

    /* set_expiry reaches a token of any org; refuses a negative time. */
    assert_int_equal(store_agent_token_set_expiry(s, t.t.id, 1234), STORE_OK);
    store_agent_token got;
    assert_int_equal(store_agent_token_get(s, a.id, t.t.id, &got), STORE_OK);
    assert_int_equal(got.expires_at, 1234);
    assert_int_equal(store_agent_token_set_expiry(s, "tok_missing", 1), STORE_NOT_FOUND);
    assert_int_equal(store_agent_token_set_expiry(s, t.t.id, -1), STORE_ERR);

    /* cluster_org: from the newest token while there is no connection row,
     * then from the connection row. */
    char org[STORE_ID_LEN];
    assert_int_equal(store_cluster_org(s, "cluster-5555000000000000", org), STORE_OK);
    assert_string_equal(org, a.id);
    store_connection c = conn_for(b.id, "cluster-5555000000000000", 10);
    assert_int_equal(store_connection_connected(s, &c), STORE_OK);
    assert_int_equal(store_cluster_org(s, "cluster-5555000000000000", org), STORE_OK);
    assert_string_equal(org, b.id);
    assert_int_equal(store_cluster_org(s, "cluster-nothing", org), STORE_NOT_FOUND);
}

/* ---- file-only tests ------------------------------------------------------------------------- */

/* Runs a one-value query directly against the file. */
static int64_t sql_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void sql_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : "?");
    sqlite3_close(db);
}

/* The same for either backing of a fixture. */
static int64_t raw_int(const fixture *f, const char *sql)
{
    if (!f->pg)
        return sql_int(f->path, sql);
    long long v = -1;
    assert_int_equal(pg_sql(&g_pg, f->db, sql, &v), 0);
    return v;
}

static void raw_exec(const fixture *f, const char *sql)
{
    if (!f->pg)
        sql_exec(f->path, sql);
    else if (pg_sql(&g_pg, f->db, sql, NULL) != 0)
        fail_msg("%s failed", sql);
}

static void test_migrations_reopen(void **state)
{
    (void)state;
    char dir[64], path[128], url[160];
    assert_int_equal(make_tmpdir(dir, sizeof(dir)), 0);
    snprintf(path, sizeof(path), "%s/store.db", dir);
    snprintf(url, sizeof(url), "sqlite://%s", path);

    store_t *s = open_ok(url);
    assert_int_equal(store_schema_version(s), SCHEMA_LATEST);
    store_org o = new_org(s, "Persisted");
    store_user u = new_user(s, o.id, "p@example.com");
    /* WAL mode: the -wal file exists while a writer has the database open. */
    char wal[160];
    snprintf(wal, sizeof(wal), "%s-wal", path);
    assert_int_equal(access(wal, F_OK), 0);
    store_close(s);

    assert_int_equal(sql_int(path, "SELECT COUNT(*) FROM schema_migrations"), SCHEMA_LATEST);
    int64_t applied_at = sql_int(path, "SELECT applied_at FROM schema_migrations WHERE version = 1");
    assert_true(applied_at > 0);

    /* Reopen twice (bare path this time): nothing re-applied, data kept. */
    for (int i = 0; i < 2; i++) {
        s = open_ok(path);
        assert_int_equal(store_schema_version(s), SCHEMA_LATEST);
        store_org got;
        assert_int_equal(store_org_get(s, o.id, &got), STORE_OK);
        assert_string_equal(got.name, "Persisted");
        store_user ug;
        assert_int_equal(store_user_get(s, o.id, u.id, &ug), STORE_OK);
        assert_string_equal(ug.email, "p@example.com");
        store_close(s);
    }
    assert_int_equal(sql_int(path, "SELECT COUNT(*) FROM schema_migrations"), SCHEMA_LATEST);
    assert_int_equal(sql_int(path, "SELECT applied_at FROM schema_migrations WHERE version = 1"), applied_at);
    assert_int_equal(sql_int(path, "SELECT COUNT(*) FROM orgs"), 1);
    /* journal_mode=WAL is persistent in the file. */
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);

    /* The stored hash is the hash: the raw token is nowhere in the file. */
    s = open_ok(path);
    made_token t = new_token(s, o.id, u.id, NULL, "c");
    store_close(s);
    char q[256];
    snprintf(q, sizeof(q), "SELECT COUNT(*) FROM agent_tokens WHERE token_hash = '%s'", t.hash);
    assert_int_equal(sql_int(path, q), 1);
    snprintf(q, sizeof(q), "SELECT COUNT(*) FROM agent_tokens WHERE token_hash = '%s'", t.token);
    assert_int_equal(sql_int(path, q), 0);

    remove_tmpdir(dir);
}

static void test_relative_url(void **state)
{
    (void)state;
    char dir[64], cwd[4096];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(make_tmpdir(dir, sizeof(dir)), 0);
    assert_int_equal(chdir(dir), 0);
    store_t *s = open_ok("sqlite://rel.db");
    store_org o = new_org(s, "rel");
    store_close(s);
    assert_int_equal(chdir(cwd), 0);

    char path[128];
    snprintf(path, sizeof(path), "%s/rel.db", dir);
    struct stat stt;
    assert_int_equal(stat(path, &stt), 0);
    s = open_ok(path);
    store_org got;
    assert_int_equal(store_org_get(s, o.id, &got), STORE_OK);
    assert_string_equal(got.name, "rel");
    store_close(s);
    remove_tmpdir(dir);
}

static void expect_open_error(const char *url, const char *needle)
{
    store_t *s = (store_t *)(uintptr_t)1; /* must be reset to NULL */
    char err[256] = "";
    assert_int_equal(store_open(url, &s, err, sizeof(err)), STORE_ERR);
    assert_null(s);
    assert_true(err[0] != '\0');
    if (needle && !strstr(err, needle))
        fail_msg("store_open(%s) error \"%s\" lacks \"%s\"", url ? url : "NULL", err, needle);
}

static void test_open_errors(void **state)
{
    (void)state;
    char dir[64], path[128];
    assert_int_equal(make_tmpdir(dir, sizeof(dir)), 0);
    snprintf(path, sizeof(path), "%s/junk.db", dir);

    /* Garbage bytes where a database should be. */
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    for (int i = 0; i < 512; i++)
        fputs("this is not an SQLite database\n", fp);
    assert_int_equal(fclose(fp), 0);
    expect_open_error(path, "not a database");

    /* A truncated header that starts like a real one. */
    fp = fopen(path, "wb");
    assert_non_null(fp);
    fputs("SQLite format 3", fp);
    fputc('\0', fp);
    for (int i = 0; i < 200; i++)
        fputc((i * 37) & 0xff, fp);
    assert_int_equal(fclose(fp), 0);
    expect_open_error(path, NULL);

    /* A directory that does not exist, a url no engine takes, no url. */
    char missing[160];
    snprintf(missing, sizeof(missing), "%s/no/such/dir/x.db", dir);
    expect_open_error(missing, "unable to open");
    expect_open_error("nosuchengine://host/db", "no database engine");
    expect_open_error("", NULL);
    expect_open_error(NULL, NULL);
    expect_open_error("sqlite://", NULL);

    remove_tmpdir(dir);
}

static void test_newer_schema_refused(void **state)
{
    fixture *f = *state;
    store_close(f->s);
    f->s = NULL;
    raw_exec(f, "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 1)");
    expect_open_error(f->url, "newer");
    /* Once the foreign version is gone the database opens again. */
    raw_exec(f, "DELETE FROM schema_migrations WHERE version = 999");
    f->s = open_ok(f->url);
    assert_int_equal(store_schema_version(f->s), SCHEMA_LATEST);
}

static void test_overlong_stored_value(void **state)
{
    fixture *f = *state;
    store_org o = new_org(f->s, "short");
    /* Another writer (a newer server, a manual edit) stored a name longer
     * than the struct holds: reported as an error, never overflowed. */
    char q[512];
    snprintf(q, sizeof(q), "UPDATE orgs SET name = '%0300d' WHERE id = '%s'", 7, o.id);
    raw_exec(f, q);
    store_org got;
    memset(&got, 0, sizeof(got));
    assert_int_equal(store_org_get(f->s, o.id, &got), STORE_ERR);
    assert_non_null(strstr(store_errmsg(f->s), "too long"));
    /* A non-integer where a time belongs is an error as well (SQLite's
     * column types are advisory; PostgreSQL cannot hold one at all). */
    if (f->pg)
        return;
    snprintf(q, sizeof(q), "UPDATE orgs SET name = 'ok', created_at = 'soon' WHERE id = '%s'",
             o.id);
    sql_exec(f->path, q);
    assert_int_equal(store_org_get(f->s, o.id, &got), STORE_ERR);
    assert_non_null(strstr(store_errmsg(f->s), "integer"));
}

/* Each thread opens its own handle on one file, as worker threads do. */
typedef struct {
    const char *url;
    const char *org_id;
    int ok;
} worker_arg;

#define WORKERS 4
#define WORKER_INSERTS 40

static void *worker(void *p)
{
    worker_arg *w = p;
    store_t *s = NULL;
    char err[256];
    if (store_open(w->url, &s, err, sizeof(err)) != STORE_OK)
        return NULL;
    for (int i = 0; i < WORKER_INSERTS; i++) {
        store_audit a = audit_for(w->org_id, "[\"get\",\"ns\"]", 0);
        if (store_audit_insert(s, &a) == STORE_OK)
            w->ok++;
    }
    store_close(s);
    return NULL;
}

static void test_concurrent_handles(void **state)
{
    fixture *f = *state;
    store_org o = new_org(f->s, "busy");
    pthread_t th[WORKERS];
    worker_arg args[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        args[i] = (worker_arg){ .url = f->url, .org_id = o.id, .ok = 0 };
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    for (int i = 0; i < WORKERS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].ok, WORKER_INSERTS);
    }
    /* The fixture's own handle sees every row the others wrote. */
    store_audit *list = NULL;
    size_t n = 0;
    assert_int_equal(store_audit_list(f->s, o.id, 1000, &list, &n), STORE_OK);
    assert_int_equal(n, WORKERS * WORKER_INSERTS);
    for (size_t i = 1; i < n; i++)
        assert_true(list[i - 1].id != list[i].id);
    store_audit_list_free(list, n);
}

/* ---- audit rows across crashes ---------------------------------------------------------------- */

/* A command's row: "started" when dispatched, completed at its end. */
/* Filters, the (at, id) cursor across rows of the same second, other
 * orgs never visible, and retention keeping what is recent or started. */
static void test_audit_query_and_prune(void **state)
{
    store_t *s = ((fixture *)*state)->s;
    store_org a = new_org(s, "A"), b = new_org(s, "B");
    for (int i = 0; i < 6; i++) {
        store_audit x = audit_for(a.id, "[\"get\"]", 1000 + (i / 2) * 10); /* pairs share `at` */
        if (i == 5)
            snprintf(x.cluster_id, sizeof(x.cluster_id), "cluster-ffffffffffffffff");
        if (i == 4)
            snprintf(x.outcome, sizeof(x.outcome), "failed");
        assert_int_equal(store_audit_insert(s, &x), STORE_OK);
    }
    store_audit other = audit_for(b.id, "[\"get\"]", 1010);
    assert_int_equal(store_audit_insert(s, &other), STORE_OK);

    store_audit *rows = NULL;
    size_t n = 0;
    /* Pages of two cover the org's six rows once each, newest first. */
    int64_t seen[8];
    size_t nseen = 0;
    store_audit_filter f = { .org_id = a.id, .limit = 2 };
    for (int page = 0; page < 5; page++) {
        assert_int_equal(store_audit_query(s, &f, &rows, &n), STORE_OK);
        for (size_t k = 0; k < n; k++) {
            assert_string_equal(rows[k].org_id, a.id);
            seen[nseen++] = rows[k].id;
        }
        if (n < 2) {
            store_audit_list_free(rows, n);
            break;
        }
        f.before_at = rows[n - 1].at;
        f.before_id = rows[n - 1].id;
        store_audit_list_free(rows, n);
    }
    assert_int_equal(nseen, 6);
    for (size_t k = 1; k < nseen; k++)
        for (size_t j = 0; j < k; j++)
            assert_true(seen[j] != seen[k]);

    store_audit_filter g = { .org_id = a.id, .cluster_id = "cluster-ffffffffffffffff" };
    assert_int_equal(store_audit_query(s, &g, &rows, &n), STORE_OK);
    assert_int_equal(n, 1);
    store_audit_list_free(rows, n);
    store_audit_filter h = { .org_id = a.id, .outcome = "failed", .since = 1020, .until = 1021 };
    assert_int_equal(store_audit_query(s, &h, &rows, &n), STORE_OK);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].at, 1020);
    store_audit_list_free(rows, n);
    /* Filters are bound values, never SQL. */
    store_audit_filter q = { .org_id = a.id, .user_id = "x' OR '1'='1" };
    assert_int_equal(store_audit_query(s, &q, &rows, &n), STORE_OK);
    assert_int_equal(n, 0);

    /* A started row older than the cutoff stays (the sweep owns it). */
    store_audit st = audit_for(a.id, "[]", 500);
    assert_int_equal(store_audit_start(s, &st), STORE_OK);
    int64_t deleted = -1;
    assert_int_equal(store_audit_prune(s, 1015, 2, &deleted), STORE_OK);
    assert_int_equal(deleted, 5); /* A: 1000, 1000, 1010, 1010; B: 1010 */
    store_audit_filter all = { .org_id = NULL, .limit = 100 };
    assert_int_equal(store_audit_query(s, &all, &rows, &n), STORE_OK);
    assert_int_equal(n, 3); /* 1020, 1020 and the started row */
    store_audit_list_free(rows, n);
}

/* A pass over history rewrites only the rows its fix changes, in batches,
 * reading every row once (admin redact-audit). */
static char *fix_secret(const char *argv_json)
{
    const char *at = strstr(argv_json, "s3cret");
    if (!at)
        return NULL;
    char *out = strdup(argv_json);
    assert_non_null(out);
    memcpy(out + (at - argv_json), "XXXXXX", 6);
    return out;
}

static void test_audit_rewrite_argv(void **state)
{
    store_t *s = ((fixture *)*state)->s;
    store_org a = new_org(s, "A"), b = new_org(s, "B");
    for (int i = 0; i < 7; i++) {
        store_audit x = audit_for(i % 2 ? a.id : b.id,
                                  i % 3 ? "[\"kubectl\",\"get\"]" : "[\"kubectl\",\"--token=s3cret\"]",
                                  2000 + i);
        assert_int_equal(store_audit_insert(s, &x), STORE_OK);
    }
    int64_t seen = 0, changed = 0;
    assert_int_equal(store_audit_rewrite_argv(s, fix_secret, 2, &seen, &changed), STORE_OK);
    assert_int_equal(seen, 7);
    assert_int_equal(changed, 3); /* i = 0, 3, 6 */
    store_audit *rows = NULL;
    size_t n = 0;
    store_audit_filter all = { .limit = 100 };
    assert_int_equal(store_audit_query(s, &all, &rows, &n), STORE_OK);
    assert_int_equal(n, 7);
    for (size_t k = 0; k < n; k++)
        assert_null(strstr(rows[k].argv_json, "s3cret"));
    store_audit_list_free(rows, n);
    assert_int_equal(store_audit_rewrite_argv(s, fix_secret, 0, &seen, &changed), STORE_OK);
    assert_int_equal(seen, 7);
    assert_int_equal(changed, 0);
    /* admin redact-* --vacuum-full: PostgreSQL rewrites the two tables' files
     * (test_secret_leaks.py looks in them); SQLite's scrub zeroed already */
    assert_int_equal(store_vacuum_full(s, "audit_log"), STORE_OK);
    assert_int_equal(store_vacuum_full(s, "webhook_deliveries"), STORE_OK);
    if (store_keeps_dead_rows(s)) {
        assert_int_equal(store_vacuum_full(s, "users; DROP TABLE users"), STORE_ERR);
        assert_non_null(strstr(store_errmsg(s), "not a table a redact pass rewrites"));
    }
    assert_int_equal(store_audit_query(s, &all, &rows, &n), STORE_OK);
    assert_int_equal(n, 7);
    store_audit_list_free(rows, n);
}

/* A row the rule once rewrote into invalid UTF-8 (a flag name cut at 64
 * bytes mid-character) stopped the pass on PostgreSQL, and every row after
 * it kept its credential, run after run (found in review). */
static void test_audit_rewrite_passes_every_row(void **state)
{
    store_t *s = ((fixture *)*state)->s;
    store_org a = new_org(s, "A");
    char bad[256], name[80];
    memset(name, 'a', 63);
    name[63] = 0;
    snprintf(bad, sizeof(bad), "[\"kubectl\",\"--%s\xc3\xa9-password=hunter2\"]", name);
    store_audit x = audit_for(a.id, bad, 3000);
    assert_int_equal(store_audit_insert(s, &x), STORE_OK);
    store_audit y = audit_for(a.id, "[\"kubectl\",\"--token=s3cret\"]", 3001);
    assert_int_equal(store_audit_insert(s, &y), STORE_OK);
    int64_t seen = 0, changed = 0;
    int rc = store_audit_rewrite_argv(s, argv_redact_stored, 500, &seen, &changed);
    if (rc != STORE_OK)
        fail_msg("the pass stopped after %lld rows: %s", (long long)seen, store_errmsg(s));
    store_audit *rows = NULL;
    size_t n = 0;
    store_audit_filter all = { .limit = 100 };
    assert_int_equal(store_audit_query(s, &all, &rows, &n), STORE_OK);
    int leaks = 0;
    for (size_t k = 0; k < n; k++)
        leaks += strstr(rows[k].argv_json, "s3cret") || strstr(rows[k].argv_json, "hunter2");
    store_audit_list_free(rows, n);
    assert_int_equal(rc, STORE_OK);
    assert_int_equal(leaks, 0);
}

/* Completions written together: each row gets its own end, a wrong org or
 * unknown id is reported per item and does not stop the others, and an
 * invalid item is skipped. */
static void test_audit_complete_many(void **state)
{
    store_t *s = ((fixture *)*state)->s;
    store_org a = new_org(s, "A"), b = new_org(s, "B");
    int64_t ids[3];
    for (int i = 0; i < 3; i++) {
        store_audit st = audit_for(a.id, "[\"kubectl\",\"get\"]", 0);
        assert_int_equal(store_audit_start(s, &st), STORE_OK);
        ids[i] = st.id;
    }
    store_audit_end ends[5];
    memset(ends, 0, sizeof(ends));
    for (int i = 0; i < 5; i++) {
        snprintf(ends[i].org_id, sizeof(ends[i].org_id), "%s", a.id);
        snprintf(ends[i].outcome, sizeof(ends[i].outcome), "ok");
        ends[i].id = ids[i < 3 ? i : 0];
        ends[i].return_code = i;
        ends[i].bytes_out = 100 + i;
        ends[i].duration_ms = 10 + i;
        ends[i].ended_at = 7000 + i;
    }
    snprintf(ends[1].outcome, sizeof(ends[1].outcome), "failed");
    snprintf(ends[3].org_id, sizeof(ends[3].org_id), "%s", b.id); /* another org's row */
    snprintf(ends[4].outcome, sizeof(ends[4].outcome), "started"); /* not an end */
    assert_int_equal(store_audit_complete_many(s, ends, 5), STORE_OK);
    assert_int_equal(ends[0].rc, STORE_OK);
    assert_int_equal(ends[1].rc, STORE_OK);
    assert_int_equal(ends[2].rc, STORE_OK);
    assert_int_equal(ends[3].rc, STORE_NOT_FOUND);
    assert_int_equal(ends[4].rc, STORE_ERR);

    store_audit *list = NULL;
    size_t n = 0;
    assert_int_equal(store_audit_list(s, a.id, 10, &list, &n), STORE_OK);
    assert_int_equal(n, 3);
    for (size_t k = 0; k < n; k++) {
        int i = list[k].id == ids[0] ? 0 : list[k].id == ids[1] ? 1 : 2;
        assert_int_equal(list[k].id, ids[i]);
        assert_string_equal(list[k].outcome, i == 1 ? "failed" : "ok");
        assert_int_equal(list[k].return_code, i);
        assert_int_equal(list[k].bytes_out, 100 + i);
        assert_int_equal(list[k].duration_ms, 10 + i);
        assert_int_equal(list[k].ended_at, 7000 + i);
    }
    store_audit_list_free(list, n);
    /* One item, and none. */
    assert_int_equal(store_audit_complete_many(s, ends + 3, 1), STORE_OK);
    assert_int_equal(ends[3].rc, STORE_NOT_FOUND);
    assert_int_equal(store_audit_complete_many(s, NULL, 0), STORE_OK);
    /* An item refused on its own merits is its answer, alone as in a batch:
     * the call fails only when the store does (audit_starts.c keeps those
     * ends to try again, and lets these go).  An org id the database would
     * refuse (not UTF-8, PostgreSQL) is refused before any SQL. */
    assert_int_equal(store_audit_complete_many(s, ends + 4, 1), STORE_OK);
    assert_int_equal(ends[4].rc, STORE_ERR);
    snprintf(ends[3].org_id, sizeof(ends[3].org_id), "org-\xff");
    assert_int_equal(store_audit_complete_many(s, ends + 3, 1), STORE_OK);
    assert_int_equal(ends[3].rc, STORE_ERR);
    assert_int_equal(store_audit_complete_many(s, ends, 4), STORE_OK);
    assert_int_equal(ends[3].rc, STORE_ERR);
    assert_int_equal(ends[0].rc, STORE_OK);
}

static void test_audit_lifecycle(void **state)
{
    store_t *s = ((fixture *)*state)->s;
    store_org a = new_org(s, "A"), b = new_org(s, "B");
    store_audit st = audit_for(a.id, "[\"kubectl\",\"get\",\"pods\"]", 0);
    snprintf(st.instance_id, sizeof(st.instance_id), "ins_000000000000000000000001");
    /* Whatever the caller left in the result fields, a started row has none. */
    snprintf(st.outcome, sizeof(st.outcome), "ok");
    st.return_code = 0;
    st.id = 0;
    int64_t before = time(NULL);
    assert_int_equal(store_audit_start(s, &st), STORE_OK);
    assert_true(st.id > 0);

    store_audit *list = NULL;
    size_t n = 0;
    assert_int_equal(store_audit_list(s, a.id, 10, &list, &n), STORE_OK);
    assert_int_equal(n, 1);
    assert_int_equal(list[0].id, st.id);
    assert_string_equal(list[0].outcome, "started");
    assert_int_equal(list[0].return_code, -1);
    assert_int_equal(list[0].bytes_out, 0);
    assert_int_equal(list[0].ended_at, 0);
    assert_true(list[0].at >= before);
    assert_string_equal(list[0].instance_id, "ins_000000000000000000000001");
    assert_string_equal(list[0].argv_json, "[\"kubectl\",\"get\",\"pods\"]");
    store_audit_list_free(list, n);

    /* Another org cannot complete it; "started" is not an end; unknown id. */
    assert_int_equal(store_audit_complete(s, b.id, st.id, "ok", 0, 1, 1, 0), STORE_NOT_FOUND);
    assert_int_equal(store_audit_complete(s, a.id, st.id, "started", 0, 1, 1, 0), STORE_ERR);
    assert_int_equal(store_audit_complete(s, a.id, st.id, "", 0, 1, 1, 0), STORE_ERR);
    assert_int_equal(store_audit_complete(s, a.id, st.id + 1, "ok", 0, 1, 1, 0), STORE_NOT_FOUND);
    assert_int_equal(store_audit_complete(s, a.id, st.id, "failed", 3, 4096, 250, 5000), STORE_OK);

    assert_int_equal(store_audit_list(s, a.id, 10, &list, &n), STORE_OK);
    assert_int_equal(n, 1); /* completed in place, not a second row */
    assert_string_equal(list[0].outcome, "failed");
    assert_int_equal(list[0].return_code, 3);
    assert_int_equal(list[0].bytes_out, 4096);
    assert_int_equal(list[0].duration_ms, 250);
    assert_int_equal(list[0].ended_at, 5000);
    store_audit_list_free(list, n);
    assert_int_equal(store_audit_list(s, b.id, 10, &list, &n), STORE_OK);
    assert_int_equal(n, 0);

    /* A final row cannot claim to be running; one-shot rows are ended. */
    store_audit bad = audit_for(a.id, "[]", 0);
    snprintf(bad.outcome, sizeof(bad.outcome), "started");
    assert_int_equal(store_audit_insert(s, &bad), STORE_ERR);
    store_audit once = audit_for(a.id, "[\"x\"]", 0);
    snprintf(once.outcome, sizeof(once.outcome), "cluster_busy");
    assert_int_equal(store_audit_insert(s, &once), STORE_OK);
    assert_int_equal(store_audit_list(s, a.id, 1, &list, &n), STORE_OK);
    assert_string_equal(list[0].outcome, "cluster_busy");
    assert_true(list[0].ended_at >= before);
    assert_string_equal(list[0].instance_id, "");
    store_audit_list_free(list, n);
    /* A start for an org that does not exist. */
    store_audit ghost = audit_for("org_ffffffffffffffffffffffff", "[]", 0);
    assert_int_equal(store_audit_start(s, &ghost), STORE_NOT_FOUND);
}

static store_instance instance_for(const char *id, const char *space, int64_t pid, int64_t hb)
{
    store_instance x;
    memset(&x, 0, sizeof(x));
    snprintf(x.id, sizeof(x.id), "%s", id);
    snprintf(x.hostname, sizeof(x.hostname), "host-%s", id + 4);
    snprintf(x.proc_space, sizeof(x.proc_space), "%s", space);
    x.pid = pid;
    x.started_at = hb > 0 ? hb : 1;
    x.heartbeat_at = hb;
    return x;
}

static int64_t started_row(store_t *s, const char *org_id, const char *instance)
{
    store_audit a = audit_for(org_id, "[\"kubectl\",\"get\",\"--raw\",\"/slow\"]", 0);
    snprintf(a.instance_id, sizeof(a.instance_id), "%s", instance);
    assert_int_equal(store_audit_start(s, &a), STORE_OK);
    return a.id;
}

static const char *outcome_of_row(store_t *s, const char *org_id, int64_t id, char *out,
                                  size_t cap)
{
    store_audit *list = NULL;
    size_t n = 0;
    out[0] = '\0';
    assert_int_equal(store_audit_list(s, org_id, 1000, &list, &n), STORE_OK);
    for (size_t i = 0; i < n; i++)
        if (list[i].id == id)
            snprintf(out, cap, "%s", list[i].outcome);
    store_audit_list_free(list, n);
    return out;
}

/* Many replicas share the store: a connection row is counted by the replica
 * that holds the cluster's agent, and only the rows of replicas that are
 * gone are reset (not every row, as one server's start-up did). */
static void test_connection_owner(void **state)
{
    store_t *s = ((fixture *)*state)->s;
    store_org o = new_org(s, "O");
    const int64_t now = 1700000000, lease = 60, live_since = now - lease;
    store_instance a = instance_for("ins_a0a0a0a0a0a0a0a0a0a0a0a0", "hostA", 10, now);
    store_instance b = instance_for("ins_b0b0b0b0b0b0b0b0b0b0b0b0", "hostB", 11, now);
    store_instance dead = instance_for("ins_d0d0d0d0d0d0d0d0d0d0d0d0", "hostD", 12,
                                       live_since - 1);
    assert_int_equal(store_instance_register(s, &a), STORE_OK);
    assert_int_equal(store_instance_register(s, &b), STORE_OK);
    assert_int_equal(store_instance_register(s, &dead), STORE_OK);
    store_connection ca = conn_for(o.id, "cluster-a000000000000000", now);
    store_connection cd = conn_for(o.id, "cluster-d000000000000000", now);
    store_connection got;

    /* Two sessions on a; a session on b starts the count over (b owns it). */
    assert_int_equal(store_connection_connected_by(s, &ca, a.id), STORE_OK);
    assert_int_equal(store_connection_connected_by(s, &ca, a.id), STORE_OK);
    assert_int_equal(store_connection_get(s, o.id, ca.cluster_id, &got), STORE_OK);
    assert_int_equal(got.connected, 2);
    assert_int_equal(store_connection_connected_by(s, &ca, b.id), STORE_OK);
    assert_int_equal(store_connection_get(s, o.id, ca.cluster_id, &got), STORE_OK);
    assert_int_equal(got.connected, 1);
    /* a's disconnects no longer touch it. */
    assert_int_equal(store_connection_disconnected_by(s, ca.cluster_id, a.id, now + 1),
                     STORE_NOT_FOUND);
    assert_int_equal(store_connection_get(s, o.id, ca.cluster_id, &got), STORE_OK);
    assert_int_equal(got.connected, 1);
    /* b's last session ends; a live session of a takes the row back on heartbeat. */
    assert_int_equal(store_connection_disconnected_by(s, ca.cluster_id, b.id, now + 2), STORE_OK);
    assert_int_equal(store_connection_get(s, o.id, ca.cluster_id, &got), STORE_OK);
    assert_int_equal(got.connected, 0);
    assert_int_equal(got.disconnected_at, now + 2);
    assert_int_equal(store_connection_heartbeat_by(s, ca.cluster_id, a.id, now + 3), STORE_OK);
    assert_int_equal(store_connection_get(s, o.id, ca.cluster_id, &got), STORE_OK);
    assert_int_equal(got.connected, 1);
    assert_int_equal(got.disconnected_at, 0);
    assert_int_equal(got.last_heartbeat, now + 3);

    /* A dead replica's row is reset by whoever sweeps; live ones' are kept. */
    assert_int_equal(store_connection_connected_by(s, &cd, dead.id), STORE_OK);
    int64_t reset = -1;
    assert_int_equal(store_connection_reset_dead(s, b.id, live_since, now + 4, &reset), STORE_OK);
    assert_int_equal(reset, 1);
    assert_int_equal(store_connection_get(s, o.id, cd.cluster_id, &got), STORE_OK);
    assert_int_equal(got.connected, 0);
    assert_int_equal(got.disconnected_at, now + 4);
    assert_int_equal(store_connection_get(s, o.id, ca.cluster_id, &got), STORE_OK);
    assert_int_equal(got.connected, 1);
    /* A retired (cleanly stopped) instance counts as gone at once. */
    assert_int_equal(store_instance_retire(s, a.id), STORE_OK);
    assert_int_equal(store_connection_reset_dead(s, b.id, live_since, now + 5, &reset), STORE_OK);
    assert_int_equal(reset, 1);
    assert_int_equal(store_connection_get(s, o.id, ca.cluster_id, &got), STORE_OK);
    assert_int_equal(got.connected, 0);
    /* Nothing left to reset: idempotent. */
    assert_int_equal(store_connection_reset_dead(s, b.id, live_since, now + 6, &reset), STORE_OK);
    assert_int_equal(reset, 0);
    assert_int_equal(store_connection_connected_by(s, &ca, NULL), STORE_ERR);
}

/* Rows left "started" are closed only when their instance is gone: a lease
 * that lapsed, an instance marked gone, or one the store never heard of;
 * never a live replica's, never the sweeper's own. */
static void test_audit_sweep(void **state)
{
    fixture *f = *state;
    store_t *s = f->s;
    store_org o = new_org(s, "O");
    const int64_t now = 1700000000, lease = 60, live_since = now - lease;
    store_instance self = instance_for("ins_aaaaaaaaaaaaaaaaaaaaaaaa", "boot/pid:[1]", 10, now);
    store_instance live = instance_for("ins_bbbbbbbbbbbbbbbbbbbbbbbb", "otherhost", 10, now - 5);
    store_instance edge = instance_for("ins_cccccccccccccccccccccccc", "otherhost", 11, live_since);
    store_instance lapsed = instance_for("ins_dddddddddddddddddddddddd", "otherhost", 12,
                                         live_since - 1);
    store_instance gone = instance_for("ins_eeeeeeeeeeeeeeeeeeeeeeee", "boot/pid:[1]", 13, now);
    store_instance ancient = instance_for("ins_ffffffffffffffffffffffff", "x", 14, now - 3 * 86400);
    const store_instance *all[] = { &self, &live, &edge, &lapsed, &gone, &ancient };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        assert_int_equal(store_instance_register(s, all[i]), STORE_OK);
    /* Registering again renews, it does not duplicate. */
    assert_int_equal(store_instance_register(s, &live), STORE_OK);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM server_instances"), 6);

    int64_t r_self = started_row(s, o.id, self.id), r_live = started_row(s, o.id, live.id),
            r_edge = started_row(s, o.id, edge.id), r_lapsed = started_row(s, o.id, lapsed.id),
            r_gone = started_row(s, o.id, gone.id),
            r_unknown = started_row(s, o.id, "ins_999999999999999999999999"),
            r_blank = started_row(s, o.id, "");
    /* A finished row of a dead instance keeps its outcome. */
    int64_t r_done = started_row(s, o.id, lapsed.id);
    assert_int_equal(store_audit_complete(s, o.id, r_done, "ok", 0, 10, 10, now - 100), STORE_OK);

    /* Marking an instance gone; the live list of a process space. */
    assert_int_equal(store_instance_retire(s, gone.id), STORE_OK);
    assert_int_equal(store_instance_retire(s, "ins_nope"), STORE_NOT_FOUND);
    store_instance *xs = NULL;
    size_t n = 0;
    assert_int_equal(store_instance_list_live(s, "boot/pid:[1]", live_since, &xs, &n), STORE_OK);
    assert_int_equal(n, 1); /* self; `gone` is retired */
    assert_string_equal(xs[0].id, self.id);
    assert_string_equal(xs[0].hostname, "host-aaaaaaaaaaaaaaaaaaaaaaaa");
    assert_int_equal(xs[0].pid, 10);
    free(xs);
    assert_int_equal(store_instance_list_live(s, "otherhost", live_since, &xs, &n), STORE_OK);
    assert_int_equal(n, 2); /* live and edge (exactly at the boundary); not lapsed */
    free(xs);

    int64_t closed = -1;
    assert_int_equal(store_audit_sweep(s, self.id, live_since, now, &closed), STORE_OK);
    assert_int_equal(closed, 4);
    char out[32];
    assert_string_equal(outcome_of_row(s, o.id, r_self, out, sizeof(out)), "started");
    assert_string_equal(outcome_of_row(s, o.id, r_live, out, sizeof(out)), "started");
    assert_string_equal(outcome_of_row(s, o.id, r_edge, out, sizeof(out)), "started");
    assert_string_equal(outcome_of_row(s, o.id, r_lapsed, out, sizeof(out)), "interrupted");
    assert_string_equal(outcome_of_row(s, o.id, r_gone, out, sizeof(out)), "interrupted");
    assert_string_equal(outcome_of_row(s, o.id, r_unknown, out, sizeof(out)), "interrupted");
    assert_string_equal(outcome_of_row(s, o.id, r_blank, out, sizeof(out)), "interrupted");
    assert_string_equal(outcome_of_row(s, o.id, r_done, out, sizeof(out)), "ok");
    char q[256];
    snprintf(q, sizeof(q), "SELECT ended_at FROM audit_log WHERE id = %lld", (long long)r_gone);
    assert_int_equal(raw_int(f, q), now);
    snprintf(q, sizeof(q), "SELECT return_code FROM audit_log WHERE id = %lld", (long long)r_gone);
    assert_int_equal(raw_int(f, q), -1);
    /* Instances retired or dead for a day are forgotten; a lapsed one is kept
     * a while (who ran what), the others stay. */
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM server_instances"), 4);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM server_instances WHERE id IN"
                                " ('ins_eeeeeeeeeeeeeeeeeeeeeeee', 'ins_ffffffffffffffffffffffff')"),
                     0);

    /* A second sweep finds nothing; once the edge lease lapses its row goes. */
    assert_int_equal(store_audit_sweep(s, self.id, live_since, now, &closed), STORE_OK);
    assert_int_equal(closed, 0);
    assert_int_equal(store_audit_sweep(s, self.id, live_since + 1, now + 1, &closed), STORE_OK);
    assert_int_equal(closed, 1);
    assert_string_equal(outcome_of_row(s, o.id, r_edge, out, sizeof(out)), "interrupted");

    /* A renewed lease keeps the rows; a late completion of a row presumed
     * interrupted wins (the process was only paused). */
    assert_int_equal(store_instance_heartbeat(s, live.id, now + 100), STORE_OK);
    assert_int_equal(store_instance_heartbeat(s, "ins_nope", now), STORE_NOT_FOUND);
    assert_int_equal(store_audit_sweep(s, self.id, now + 100 - lease, now + 100, &closed),
                     STORE_OK);
    assert_int_equal(closed, 0);
    assert_string_equal(outcome_of_row(s, o.id, r_live, out, sizeof(out)), "started");
    assert_int_equal(store_audit_complete(s, o.id, r_lapsed, "ok", 0, 7, 9, now + 101), STORE_OK);
    assert_string_equal(outcome_of_row(s, o.id, r_lapsed, out, sizeof(out)), "ok");

    /* Bad input. */
    assert_int_equal(store_audit_sweep(s, NULL, live_since, now, NULL), STORE_ERR);
    store_instance bad = instance_for("ins_x", "s", 1, now);
    bad.id[0] = '\0';
    assert_int_equal(store_instance_register(s, &bad), STORE_ERR);
    bad = instance_for("ins_x", "\xc3\x28", 1, now);
    assert_int_equal(store_instance_register(s, &bad), STORE_ERR);
    assert_int_equal(store_instance_list_live(s, NULL, 0, &xs, &n), STORE_ERR);
}

/* A database written by the previous schema: its audit rows get no
 * instance and keep their outcome; no sweep touches them. */
static void test_audit_upgrade_from_v2(void **state)
{
    fixture *f = *state;
    store_org o = new_org(f->s, "old");
    store_close(f->s);
    f->s = NULL;
    /* Back to version 2 by hand, with a row written the old way. */
    raw_exec(f, "DROP INDEX audit_log_started_idx");
    raw_exec(f, "ALTER TABLE audit_log DROP COLUMN instance_id");
    raw_exec(f, "ALTER TABLE audit_log DROP COLUMN ended_at");
    raw_exec(f, "DROP TABLE server_instances");
    raw_exec(f, "DELETE FROM schema_migrations WHERE version = 3");
    char q[512];
    snprintf(q, sizeof(q),
             "INSERT INTO audit_log (id, org_id, user_id, cluster_id, kind, argv_json, return_code,"
             " bytes_out, duration_ms, outcome, at) VALUES (42, '%s', 'usr_x', 'cluster-1',"
             " 'kubectl', '[\"kubectl\",\"version\"]', 0, 12, 3, 'ok', 1000)",
             o.id);
    raw_exec(f, q);
    f->s = open_ok(f->url);
    assert_int_equal(store_schema_version(f->s), SCHEMA_LATEST);
    store_audit *list = NULL;
    size_t n = 0;
    assert_int_equal(store_audit_list(f->s, o.id, 10, &list, &n), STORE_OK);
    assert_int_equal(n, 1);
    assert_int_equal(list[0].id, 42);
    assert_string_equal(list[0].outcome, "ok");
    assert_string_equal(list[0].instance_id, "");
    assert_int_equal(list[0].ended_at, 0);
    store_audit_list_free(list, n);
    int64_t closed = -1;
    assert_int_equal(store_audit_sweep(f->s, "ins_new", 0, 0, &closed), STORE_OK);
    assert_int_equal(closed, 0);
}

/* A store written by version 3 (before backend identities): its users become
 * members of their orgs, its orgs were made by an admin. */
static void test_identity_upgrade_from_v3(void **state)
{
    fixture *f = *state;
    store_org o = new_org(f->s, "old");
    store_close(f->s);
    f->s = NULL;
    raw_exec(f, "DROP TABLE org_members");
    raw_exec(f, "DROP TABLE rate_counters");
    raw_exec(f, "ALTER TABLE orgs DROP COLUMN created_by");
    raw_exec(f, "ALTER TABLE agent_tokens DROP COLUMN last_connected_at");
    raw_exec(f, "DELETE FROM schema_migrations WHERE version = 4");
    char q[512];
    snprintf(q, sizeof(q),
             "INSERT INTO users (id, org_id, email, role, created_at)"
             " VALUES ('usr_old', '%s', 'old@example.com', 'admin', 1000)",
             o.id);
    raw_exec(f, q);
    f->s = open_ok(f->url);
    assert_int_equal(store_schema_version(f->s), SCHEMA_LATEST);
    store_member m;
    assert_int_equal(store_member_get(f->s, o.id, "usr_old", &m), STORE_OK);
    assert_string_equal(m.created_by, "admin");
    assert_int_equal(m.created_at, 1000);
    store_org got;
    assert_int_equal(store_org_get(f->s, o.id, &got), STORE_OK);
    assert_string_equal(got.created_by, "admin");
}

/* ---- connectors, OAuth state, org settings ------------------------------------------------------ */

static store_connector connector_for(const char *org_id, const char *user_id, const char *name,
                                     const char *account, char *meta)
{
    store_connector c;
    memset(&c, 0, sizeof(c));
    snprintf(c.org_id, sizeof(c.org_id), "%s", org_id);
    snprintf(c.user_id, sizeof(c.user_id), "%s", user_id);
    snprintf(c.connector, sizeof(c.connector), "%s", name);
    snprintf(c.account, sizeof(c.account), "%s", account);
    snprintf(c.secret_ref, sizeof(c.secret_ref), "local:aurora/users/%s/%s/key", user_id, name);
    snprintf(c.status, sizeof(c.status), "active");
    c.metadata_json = meta;
    return c;
}

/* GitHub App installations: bound to one org, refreshed by that org only. */
static void test_github_installations(void **state)
{
    fixture *f = *state;
    store_org a = new_org(f->s, "A"), b = new_org(f->s, "B");
    store_user ua = new_user(f->s, a.id, "a@x");
    store_github_installation g, got;
    memset(&g, 0, sizeof(g));
    g.installation_id = 9007199254740991LL; /* GitHub's largest JSON-safe id */
    snprintf(g.org_id, sizeof(g.org_id), "%s", a.id);
    snprintf(g.installed_by, sizeof(g.installed_by), "%s", ua.id);
    snprintf(g.account_login, sizeof(g.account_login), "octo-org");
    snprintf(g.account_type, sizeof(g.account_type), "Organization");
    snprintf(g.repository_selection, sizeof(g.repository_selection), "selected");
    g.permissions_json = "{\"contents\":\"write\"}";
    g.events_json = "[\"pull_request\"]";
    assert_int_equal(store_github_installation_get(f->s, a.id, g.installation_id, &got), STORE_NOT_FOUND);
    assert_int_equal(store_github_installation_upsert(f->s, &g), STORE_OK);
    assert_int_equal(store_github_installation_get(f->s, a.id, g.installation_id, &got), STORE_OK);
    assert_int_equal(got.installation_id, 9007199254740991LL);
    assert_string_equal(got.account_login, "octo-org");
    assert_string_equal(got.installed_by, ua.id);
    assert_string_equal(got.permissions_json, "{\"contents\":\"write\"}");
    assert_string_equal(got.events_json, "[\"pull_request\"]");
    assert_int_equal(got.suspended_at, 0);
    assert_int_equal(got.pending, 0);
    int64_t created = got.created_at;
    store_github_installation_free(&got);

    /* the same org refreshes it (created_at kept) */
    g.suspended_at = 1700000000;
    g.pending = 1;
    g.permissions_json = NULL; /* reads "{}" */
    assert_int_equal(store_github_installation_upsert(f->s, &g), STORE_OK);
    assert_int_equal(store_github_installation_get(f->s, a.id, g.installation_id, &got), STORE_OK);
    assert_int_equal(got.suspended_at, 1700000000);
    assert_int_equal(got.pending, 1);
    assert_string_equal(got.permissions_json, "{}");
    assert_int_equal(got.created_at, created);
    store_github_installation_free(&got);

    /* another org cannot claim it, nor see it */
    snprintf(g.org_id, sizeof(g.org_id), "%s", b.id);
    snprintf(g.account_login, sizeof(g.account_login), "evil");
    assert_int_equal(store_github_installation_upsert(f->s, &g), STORE_CONFLICT);
    assert_int_equal(store_github_installation_get(f->s, b.id, g.installation_id, &got), STORE_NOT_FOUND);
    assert_int_equal(store_github_installation_get(f->s, a.id, g.installation_id, &got), STORE_OK);
    assert_string_equal(got.account_login, "octo-org");
    store_github_installation_free(&got);

    /* a second installation of org A; lists are per org, oldest first */
    g.installation_id = 7;
    snprintf(g.org_id, sizeof(g.org_id), "%s", a.id);
    assert_int_equal(store_github_installation_upsert(f->s, &g), STORE_OK);
    store_github_installation *list = NULL;
    size_t n = 0;
    assert_int_equal(store_github_installation_list(f->s, a.id, &list, &n), STORE_OK);
    assert_int_equal(n, 2);
    assert_int_equal(list[0].installation_id, 9007199254740991LL);
    assert_int_equal(list[1].installation_id, 7);
    store_github_installation_list_free(list, n);
    assert_int_equal(store_github_installation_list(f->s, b.id, &list, &n), STORE_OK);
    assert_int_equal(n, 0);
    store_github_installation_list_free(list, n);

    /* bad input: unknown org, bad id, oversized or non-UTF-8 text */
    g.installation_id = 8;
    snprintf(g.org_id, sizeof(g.org_id), "org_nope");
    assert_int_equal(store_github_installation_upsert(f->s, &g), STORE_NOT_FOUND);
    snprintf(g.org_id, sizeof(g.org_id), "%s", a.id);
    g.installation_id = 0;
    assert_int_equal(store_github_installation_upsert(f->s, &g), STORE_ERR);
    g.installation_id = 8;
    snprintf(g.account_login, sizeof(g.account_login), "bad\xff");
    assert_int_equal(store_github_installation_upsert(f->s, &g), STORE_ERR);
    snprintf(g.account_login, sizeof(g.account_login), "ok");
    char *big = malloc(STORE_GITHUB_JSON_MAX + 2);
    memset(big, 'a', STORE_GITHUB_JSON_MAX + 1);
    big[STORE_GITHUB_JSON_MAX + 1] = '\0';
    g.events_json = big;
    assert_int_equal(store_github_installation_upsert(f->s, &g), STORE_ERR);
    free(big);
    assert_int_equal(store_github_installation_get(f->s, a.id, 8, &got), STORE_NOT_FOUND);
}

/* Per-tenant delivery counts (the Grafana connector's status): only the
 * tenant's own rows of that connector in that organization. */
static void test_webhook_tenant_stats(void **state)
{
    fixture *f = *state;
    store_org a = new_org(f->s, "A"), b = new_org(f->s, "B");
    int64_t n = -1, last = -1;
    assert_int_equal(store_webhook_tenant_stats(f->s, a.id, "grafana", "u1", &n, &last), STORE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(last, 0);
    struct { const char *org, *connector, *tenant, *id; } rows[] = {
        { a.id, "grafana", "u1", "d1" }, { a.id, "grafana", "u1", "d2" },
        { a.id, "grafana", "u2", "d3" }, { b.id, "grafana", "u1", "d4" },
        { a.id, "datadog", "u1", "d5" },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        store_webhook_delivery d;
        memset(&d, 0, sizeof(d));
        snprintf(d.org_id, sizeof(d.org_id), "%s", rows[i].org);
        snprintf(d.connector, sizeof(d.connector), "%s", rows[i].connector);
        snprintf(d.tenant_key, sizeof(d.tenant_key), "%s", rows[i].tenant);
        snprintf(d.delivery_id, sizeof(d.delivery_id), "%s", rows[i].id);
        assert_int_equal(store_webhook_insert(f->s, &d, "{}", 2, 0), STORE_OK);
    }
    assert_int_equal(store_webhook_tenant_stats(f->s, a.id, "grafana", "u1", &n, &last), STORE_OK);
    assert_int_equal(n, 2);
    assert_true(last > 0);
    assert_int_equal(store_webhook_tenant_stats(f->s, b.id, "grafana", "u2", &n, &last), STORE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(store_webhook_tenant_stats(f->s, "", "grafana", "u1", &n, &last), STORE_ERR);

    /* store_webhook_find: the row a redelivery would conflict with, by its
     * (connector, tenant_key, delivery_id) only */
    store_webhook_delivery got;
    assert_int_equal(store_webhook_find(f->s, "grafana", "u1", "d4", &got), STORE_OK);
    assert_string_equal(got.org_id, b.id);
    assert_string_equal(got.status, "received");
    assert_null(got.body);
    assert_int_equal(store_webhook_find(f->s, "grafana", "u2", "d1", &got), STORE_NOT_FOUND);
    assert_int_equal(store_webhook_find(f->s, "datadog", "u1", "d1", &got), STORE_NOT_FOUND);
    assert_int_equal(store_webhook_find(f->s, "grafana", "u1", NULL, &got), STORE_ERR);
}

/* One delivery of org_id stored through the store; its id in id. */
static void sweep_row(store_t *s, const char *org_id, const char *delivery,
                      char id[STORE_ID_LEN])
{
    store_webhook_delivery d;
    memset(&d, 0, sizeof(d));
    snprintf(d.org_id, sizeof(d.org_id), "%s", org_id);
    snprintf(d.connector, sizeof(d.connector), "github");
    snprintf(d.delivery_id, sizeof(d.delivery_id), "%s", delivery);
    assert_int_equal(store_webhook_insert(s, &d, "{}", 2, 0), STORE_OK);
    memcpy(id, d.id, STORE_ID_LEN);
}

/* The recovery sweep (store_webhook_list_open, every 20 s per connector)
 * reads the deliveries it may hand out, not the finished ones: processed,
 * ignored, and failed with no attempts left pile up for ever, and a sweep
 * that read them all would cost more every day. */
#define SWEEP_DEAD 200
static void test_webhook_sweep_reads_open_rows_only(void **state)
{
    fixture *f = *state;
    store_org a = new_org(f->s, "sweep");
    char id[STORE_ID_LEN], received[STORE_ID_LEN], retry[STORE_ID_LEN], claimed[STORE_ID_LEN];
    for (int i = 0; i < SWEEP_DEAD; i++) {
        char name[32];
        snprintf(name, sizeof(name), "dead-%d", i);
        sweep_row(f->s, a.id, name, id);
        assert_int_equal(store_webhook_claim(f->s, id, 8, 0, 100), STORE_OK);
        if (i % 3 == 0)
            assert_int_equal(store_webhook_finish(f->s, id, 100, "processed", NULL, 101, 0),
                             STORE_OK);
        else if (i % 3 == 1)
            assert_int_equal(store_webhook_finish(f->s, id, 100, "ignored", NULL, 101, 0),
                             STORE_OK);
        else /* its last attempt */
            assert_int_equal(store_webhook_finish(f->s, id, 100, "failed", "x", 101, -1), STORE_OK);
    }
    sweep_row(f->s, a.id, "open-received", received);
    sweep_row(f->s, a.id, "open-retry", retry);
    assert_int_equal(store_webhook_claim(f->s, retry, 8, 0, 100), STORE_OK);
    assert_int_equal(store_webhook_finish(f->s, retry, 100, "failed", "x", 101, 500), STORE_OK);
    sweep_row(f->s, a.id, "open-claimed", claimed);
    assert_int_equal(store_webhook_claim(f->s, claimed, 8, 0, 200), STORE_OK);
    /* what each sweep hands out, by time */
    char ids[8][STORE_ID_LEN];
    size_t n = 0;
    assert_int_equal(store_webhook_list_open(f->s, "github", 8, 0, 300, 8, ids, &n), STORE_OK);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], received);
    assert_int_equal(store_webhook_list_open(f->s, "github", 8, 201, 500, 8, ids, &n), STORE_OK);
    assert_int_equal(n, 3); /* the retry is due, the claim is stale */
    assert_string_equal(ids[0], received);
    assert_string_equal(ids[1], retry);
    assert_string_equal(ids[2], claimed);
    assert_int_equal(store_webhook_list_open(f->s, "github", 1, 201, 500, 8, ids, &n), STORE_OK);
    assert_int_equal(n, 1); /* a limit of 1: only the one never tried */
    /* the operator's way back reaches the dead failed rows too */
    int64_t back = 0;
    assert_int_equal(store_webhook_retry_failed(f->s, "github", 0, &back), STORE_OK);
    assert_int_equal(back, SWEEP_DEAD / 3 + 1);
    assert_int_equal(store_webhook_list_open(f->s, "github", 8, 0, 300, 8, ids, &n), STORE_OK);
    assert_int_equal(n, 8);
    if (f->pg)
        return; /* PostgreSQL's planner may prefer a scan of a table this small */
    /* SQLite: the sweep's statement is a range read of the index of the rows
     * it may hand out, and its cost (VM steps) does not follow the dead rows */
    raw_exec(f, "UPDATE webhook_deliveries SET attempts = 8, next_attempt_at = NULL"
                " WHERE status = 'failed'");
    sqlite3 *h;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open_v2(f->path, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    static const char open_sql[] =
        "SELECT id FROM webhook_deliveries WHERE connector = 'github' AND next_attempt_at <= 500"
        " AND (status = 'received' OR (status = 'failed' AND attempts < 8)"
        " OR (status = 'processing' AND claimed_at < 201 AND attempts < 8))"
        " ORDER BY received_seq, id LIMIT 100";
    char plan[512];
    snprintf(plan, sizeof(plan), "EXPLAIN QUERY PLAN %s", open_sql);
    assert_int_equal(sqlite3_prepare_v2(h, plan, -1, &st, NULL), SQLITE_OK);
    int indexed = 0, scan = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *detail = (const char *)sqlite3_column_text(st, 3);
        print_message("sweep plan: %s\n", detail ? detail : "");
        indexed |= detail && strstr(detail, "webhook_deliveries_due_idx") != NULL;
        scan |= detail && !strncmp(detail, "SCAN", 4);
    }
    sqlite3_finalize(st);
    assert_true(indexed);
    assert_false(scan);
    assert_int_equal(sqlite3_prepare_v2(h, open_sql, -1, &st, NULL), SQLITE_OK);
    int rows = 0;
    while (sqlite3_step(st) == SQLITE_ROW)
        rows++;
    int steps = sqlite3_stmt_status(st, SQLITE_STMTSTATUS_VM_STEP, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    print_message("sweep: %d rows, %d VM steps beside %d dead rows\n", rows, steps, SWEEP_DEAD);
    assert_int_equal(rows, 2);
    assert_true(steps < SWEEP_DEAD);
}

/* Deliveries stored by a build before migrations 18 and 19: what was open
 * stays open (a failed one below the old limit of 5 attempts, at once), a
 * failed one that reached it stays given up, finished ones leave the
 * sweep's index. */
static void test_webhook_upgrade_from_v17(void **state)
{
    fixture *f = *state;
    store_org o = new_org(f->s, "old-hooks");
    store_close(f->s);
    f->s = NULL;
    raw_exec(f, "DROP INDEX webhook_deliveries_due_idx");
    raw_exec(f, "ALTER TABLE webhook_deliveries DROP COLUMN next_attempt_at");
    raw_exec(f, "CREATE INDEX webhook_deliveries_open_idx ON webhook_deliveries (connector, status)"
                " WHERE status IN ('received', 'processing', 'failed', 'unassigned')");
    raw_exec(f, "DELETE FROM schema_migrations WHERE version IN (18, 19)");
    static const struct {
        const char *id, *status;
        int attempts;
        int64_t claimed_at;
    } rows[] = {
        { "whd_old_received", "received", 0, 0 },   { "whd_old_claimed", "processing", 1, 100 },
        { "whd_old_failed3", "failed", 3, 100 },    { "whd_old_failed5", "failed", 5, 100 },
        { "whd_old_processed", "processed", 1, 100 }, { "whd_old_unassigned", "unassigned", 0, 0 },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char q[640];
        int unassigned = !strcmp(rows[i].status, "unassigned");
        snprintf(q, sizeof(q),
                 "INSERT INTO webhook_deliveries (id, org_id, connector, delivery_id, body,"
                 " body_encoding, body_sha256, status, attempts, received_at, received_seq,"
                 " claimed_at) VALUES ('%s', %s%s%s, 'github', '%s', '{}', 'utf8', '', '%s', %d,"
                 " 1000, %d, %lld)",
                 rows[i].id, unassigned ? "" : "'", unassigned ? "NULL" : o.id,
                 unassigned ? "" : "'", rows[i].id, rows[i].status, rows[i].attempts,
                 (int)(1000 + i), (long long)rows[i].claimed_at);
        raw_exec(f, q);
    }
    f->s = open_ok(f->url);
    assert_int_equal(store_schema_version(f->s), SCHEMA_LATEST);
    char ids[8][STORE_ID_LEN];
    size_t n = 0;
    assert_int_equal(store_webhook_list_open(f->s, "github", 8, 101, 2000, 8, ids, &n), STORE_OK);
    assert_int_equal(n, 3);
    assert_string_equal(ids[0], "whd_old_received");
    assert_string_equal(ids[1], "whd_old_claimed");
    assert_string_equal(ids[2], "whd_old_failed3");
    /* the claim is still within its lease at 100 + lease: not handed out */
    assert_int_equal(store_webhook_list_open(f->s, "github", 8, 100, 2000, 8, ids, &n), STORE_OK);
    assert_int_equal(n, 2);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM webhook_deliveries WHERE next_attempt_at IS NULL"
                                " AND id IN ('whd_old_failed5', 'whd_old_processed',"
                                " 'whd_old_unassigned')"),
                     3);
    /* adopted: the sweep's again */
    assert_int_equal(store_webhook_set_org(f->s, "whd_old_unassigned", o.id), STORE_OK);
    assert_int_equal(store_webhook_list_open(f->s, "github", 8, 101, 2000, 8, ids, &n), STORE_OK);
    assert_int_equal(n, 4);
    /* a row an older build inserts after the upgrade (a replica not yet
     * upgraded), naming no next_attempt_at, is the sweep's too */
    char q[512];
    snprintf(q, sizeof(q),
             "INSERT INTO webhook_deliveries (id, org_id, connector, delivery_id, body, body_encoding,"
             " body_sha256, status, attempts, received_at, received_seq, claimed_at) VALUES"
             " ('whd_old_build', '%s', 'github', 'whd_old_build', '{}', 'utf8', '', 'received', 0,"
             " 1000, 1100, 0)",
             o.id);
    raw_exec(f, q);
    assert_int_equal(store_webhook_list_open(f->s, "github", 8, 101, 2000, 8, ids, &n), STORE_OK);
    assert_int_equal(n, 5);
    assert_string_equal(ids[4], "whd_old_build");
}

/* Adoption keys (migration 14): a tenant's unassigned deliveries are read by
 * the partial index, whatever else waits; rows from before the migration
 * have NULL; the retention prune deletes only unassigned rows past the cut. */
static void test_webhook_adopt_keys(void **state)
{
    fixture *f = *state;
    store_org a = new_org(f->s, "A");
    struct { const char *org, *key, *id; } rows[] = {
        { NULL, "204", "k1" }, { NULL, "999999", "k2" }, { NULL, "", "ping" },
        { NULL, "204", "k3" }, { a.id, "204", "assigned" }, { NULL, "999999", "k4" },
    };
    char ids[6][STORE_ID_LEN];
    for (size_t i = 0; i < 6; i++) {
        store_webhook_delivery d;
        memset(&d, 0, sizeof(d));
        if (rows[i].org)
            snprintf(d.org_id, sizeof(d.org_id), "%s", rows[i].org);
        snprintf(d.connector, sizeof(d.connector), "github");
        snprintf(d.delivery_id, sizeof(d.delivery_id), "%s", rows[i].id);
        snprintf(d.adopt_key, sizeof(d.adopt_key), "%s", rows[i].key);
        assert_int_equal(store_webhook_insert(f->s, &d, rows[i].id, strlen(rows[i].id), 1),
                         STORE_OK);
        memcpy(ids[i], d.id, STORE_ID_LEN);
    }
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM webhook_deliveries WHERE adopt_key = '204'"),
                     3);
    /* one key's unassigned rows, oldest first, paged */
    char got[2][STORE_ID_LEN];
    int64_t seqs[2];
    size_t n = 0;
    assert_int_equal(store_webhook_list_unassigned(f->s, "github", "204", 0, NULL, 1, got, seqs, &n),
                     STORE_OK);
    assert_int_equal(n, 1);
    assert_string_equal(got[0], ids[0]);
    assert_int_equal(store_webhook_list_unassigned(f->s, "github", "204", seqs[0], got[0], 2, got,
                                                   seqs, &n),
                     STORE_OK);
    assert_int_equal(n, 1);
    assert_string_equal(got[0], ids[3]);
    /* a row stored before the migration: NULL until the sweep fills it in */
    char q[256];
    snprintf(q, sizeof(q), "UPDATE webhook_deliveries SET adopt_key = NULL WHERE id = '%s'", ids[5]);
    raw_exec(f, q);
    assert_int_equal(store_webhook_list_unassigned(f->s, "github", NULL, 0, NULL, 2, got, seqs, &n),
                     STORE_OK);
    assert_int_equal(n, 1);
    assert_string_equal(got[0], ids[5]);
    assert_int_equal(store_webhook_set_adopt_key(f->s, ids[5], "999999"), STORE_OK);
    assert_int_equal(store_webhook_list_unassigned(f->s, "github", NULL, 0, NULL, 2, got, seqs, &n),
                     STORE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(store_webhook_set_adopt_key(f->s, ids[4], "1"), STORE_NOT_FOUND);
    char long_key[STORE_WEBHOOK_KEY_LEN + 1];
    memset(long_key, 'k', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';
    assert_int_equal(store_webhook_set_adopt_key(f->s, ids[5], long_key), STORE_ERR);
    /* the distinct waiting keys */
    char key[STORE_WEBHOOK_KEY_LEN], first[STORE_ID_LEN];
    assert_int_equal(store_webhook_unassigned_key_next(f->s, "github", NULL, key, first), STORE_OK);
    assert_string_equal(key, "204");
    assert_string_equal(first, ids[0]);
    assert_int_equal(store_webhook_unassigned_key_next(f->s, "github", key, key, first), STORE_OK);
    assert_string_equal(key, "999999");
    assert_string_equal(first, ids[1]);
    assert_int_equal(store_webhook_unassigned_key_next(f->s, "github", key, key, first),
                     STORE_NOT_FOUND);
    if (!f->pg) {
        /* SQLite reads the partial index (PostgreSQL's planner may prefer a
         * scan of a table this small, so only its answers are checked). */
        sqlite3 *h;
        sqlite3_stmt *st;
        assert_int_equal(sqlite3_open_v2(f->path, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        const char *plans[] = {
            "EXPLAIN QUERY PLAN SELECT id, received_seq FROM webhook_deliveries WHERE connector = 'x'"
            " AND org_id IS NULL AND adopt_key = 'k' AND (received_seq > 0 OR (received_seq = 0"
            " AND id > '')) ORDER BY received_seq, id LIMIT 100",
            "EXPLAIN QUERY PLAN SELECT adopt_key, id FROM webhook_deliveries WHERE connector = 'x'"
            " AND org_id IS NULL AND adopt_key > '' ORDER BY adopt_key, received_seq, id LIMIT 1",
        };
        for (size_t i = 0; i < 2; i++) {
            assert_int_equal(sqlite3_prepare_v2(h, plans[i], -1, &st, NULL), SQLITE_OK);
            int indexed = 0;
            while (sqlite3_step(st) == SQLITE_ROW) {
                const char *detail = (const char *)sqlite3_column_text(st, 3);
                indexed |= detail && strstr(detail, "webhook_deliveries_adopt_idx") &&
                           !strstr(detail, "TEMP B-TREE");
            }
            sqlite3_finalize(st);
            assert_true(indexed);
        }
        sqlite3_close(h);
    }
    /* retention: rows still unassigned, received before the cut, oldest first */
    snprintf(q, sizeof(q),
             "UPDATE webhook_deliveries SET received_at = 1000, received_seq = 1000000000 + "
             "received_seq %% 1000 WHERE id IN ('%s', '%s', '%s')",
             ids[1], ids[2], ids[4]);
    raw_exec(f, q);
    int64_t gone = -1;
    assert_int_equal(store_webhook_prune_unassigned(f->s, "github", 999, 10, &gone), STORE_OK);
    assert_int_equal(gone, 0);
    assert_int_equal(store_webhook_prune_unassigned(f->s, "slack", 2000, 10, &gone), STORE_OK);
    assert_int_equal(gone, 0);
    assert_int_equal(store_webhook_prune_unassigned(f->s, "github", 2000, 10, &gone), STORE_OK);
    assert_int_equal(gone, 2); /* the assigned one stays */
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM webhook_deliveries"), 4);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM webhook_deliveries WHERE org_id IS NULL"),
                     3);
}

/* What the GitHub webhooks change: state columns, description, repositories;
 * always scoped to the installation's own organization. */
static void test_github_webhook_state(void **state)
{
    fixture *f = *state;
    store_org a = new_org(f->s, "A"), b = new_org(f->s, "B");
    store_github_installation g, got;
    memset(&g, 0, sizeof(g));
    g.installation_id = 4242;
    snprintf(g.org_id, sizeof(g.org_id), "%s", a.id);
    snprintf(g.installed_by, sizeof(g.installed_by), "usr_x");
    snprintf(g.account_login, sizeof(g.account_login), "octo-org");
    snprintf(g.account_type, sizeof(g.account_type), "Organization");
    assert_int_equal(store_github_installation_upsert(f->s, &g), STORE_OK);

    char org[STORE_ID_LEN];
    assert_int_equal(store_github_installation_org(f->s, 4242, org), STORE_OK);
    assert_string_equal(org, a.id);
    assert_int_equal(store_github_installation_org(f->s, 4243, org), STORE_NOT_FOUND);

    /* state columns; another org changes nothing */
    assert_int_equal(store_github_installation_set(f->s, a.id, 4242, STORE_GH_SUSPENDED_AT, 1700000000),
                     STORE_OK);
    assert_int_equal(store_github_installation_set(f->s, a.id, 4242, STORE_GH_PENDING, 1), STORE_OK);
    assert_int_equal(store_github_installation_set(f->s, a.id, 4242, STORE_GH_REMOVED_AT, 1700000001),
                     STORE_OK);
    assert_int_equal(store_github_installation_set(f->s, b.id, 4242, STORE_GH_PENDING, 0),
                     STORE_NOT_FOUND);
    assert_int_equal(store_github_installation_set(f->s, a.id, 4242, (store_github_installation_field)9, 1),
                     STORE_ERR);
    assert_int_equal(store_github_installation_set(f->s, a.id, 4242, STORE_GH_SUSPENDED_AT, -1),
                     STORE_ERR);
    assert_int_equal(store_github_installation_get(f->s, a.id, 4242, &got), STORE_OK);
    assert_int_equal(got.suspended_at, 1700000000);
    assert_int_equal(got.pending, 1);
    assert_int_equal(got.removed_at, 1700000001);
    store_github_installation_free(&got);

    /* description: installer, suspension and removal kept; pending cleared on request */
    snprintf(g.account_login, sizeof(g.account_login), "renamed-org");
    g.permissions_json = "{\"checks\":\"write\"}";
    g.events_json = "[\"check_run\"]";
    assert_int_equal(store_github_installation_describe(f->s, &g, 0), STORE_OK);
    assert_int_equal(store_github_installation_get(f->s, a.id, 4242, &got), STORE_OK);
    assert_string_equal(got.account_login, "renamed-org");
    assert_string_equal(got.permissions_json, "{\"checks\":\"write\"}");
    assert_string_equal(got.installed_by, "usr_x");
    assert_int_equal(got.pending, 1);
    assert_int_equal(got.suspended_at, 1700000000);
    store_github_installation_free(&got);
    assert_int_equal(store_github_installation_describe(f->s, &g, 1), STORE_OK);
    assert_int_equal(store_github_installation_get(f->s, a.id, 4242, &got), STORE_OK);
    assert_int_equal(got.pending, 0);
    store_github_installation_free(&got);
    snprintf(g.org_id, sizeof(g.org_id), "%s", b.id);
    assert_int_equal(store_github_installation_describe(f->s, &g, 1), STORE_NOT_FOUND);
    /* the install callback binding it again clears the removal */
    snprintf(g.org_id, sizeof(g.org_id), "%s", a.id);
    assert_int_equal(store_github_installation_upsert(f->s, &g), STORE_OK);
    assert_int_equal(store_github_installation_get(f->s, a.id, 4242, &got), STORE_OK);
    assert_int_equal(got.removed_at, 0);
    store_github_installation_free(&got);

    /* repositories: put (idempotent, renames), delete (also when absent), list by name */
    store_github_repository r = { .installation_id = 4242, .repository_id = 2, .is_private = 1 };
    snprintf(r.full_name, sizeof(r.full_name), "octo-org/zeta");
    assert_int_equal(store_github_repository_put(f->s, a.id, &r), STORE_OK);
    assert_int_equal(store_github_repository_put(f->s, a.id, &r), STORE_OK);
    r.repository_id = 1;
    r.is_private = 0;
    snprintf(r.full_name, sizeof(r.full_name), "octo-org/alpha");
    assert_int_equal(store_github_repository_put(f->s, a.id, &r), STORE_OK);
    snprintf(r.full_name, sizeof(r.full_name), "octo-org/beta");
    assert_int_equal(store_github_repository_put(f->s, a.id, &r), STORE_OK);
    /* another org cannot rename a repository of A's installation */
    snprintf(r.full_name, sizeof(r.full_name), "evil/beta");
    assert_int_equal(store_github_repository_put(f->s, b.id, &r), STORE_OK);
    store_github_repository *list = NULL;
    size_t n = 0;
    assert_int_equal(store_github_repository_list(f->s, a.id, 4242, 10, &list, &n), STORE_OK);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].full_name, "octo-org/beta");
    assert_int_equal(list[0].is_private, 0);
    assert_string_equal(list[1].full_name, "octo-org/zeta");
    assert_int_equal(list[1].is_private, 1);
    assert_true(list[1].added_at > 0);
    free(list);
    assert_int_equal(store_github_repository_list(f->s, b.id, 4242, 10, &list, &n), STORE_OK);
    assert_int_equal(n, 0);
    free(list);
    assert_int_equal(store_github_repository_delete(f->s, b.id, 4242, 2), STORE_OK); /* not B's */
    assert_int_equal(store_github_repository_delete(f->s, a.id, 4242, 2), STORE_OK);
    assert_int_equal(store_github_repository_delete(f->s, a.id, 4242, 2), STORE_OK); /* again */
    assert_int_equal(store_github_repository_list(f->s, a.id, 4242, 1000, &list, &n), STORE_OK);
    assert_int_equal(n, 1);
    free(list);
    /* bad input */
    assert_int_equal(store_github_repository_list(f->s, a.id, 4242, 0, &list, &n), STORE_ERR);
    assert_int_equal(store_github_repository_list(f->s, a.id, 4242, 1001, &list, &n), STORE_ERR);
    r.repository_id = 0;
    assert_int_equal(store_github_repository_put(f->s, a.id, &r), STORE_ERR);
    r.repository_id = 3;
    r.installation_id = 999; /* no such installation */
    assert_int_not_equal(store_github_repository_put(f->s, a.id, &r), STORE_OK);
    r.installation_id = 4242;
    r.full_name[0] = '\0';
    assert_int_equal(store_github_repository_put(f->s, a.id, &r), STORE_ERR);
}

static void test_connectors(void **state)
{
    fixture *f = *state;
    store_org a = new_org(f->s, "A"), b = new_org(f->s, "B");
    store_user ua = new_user(f->s, a.id, "a@x"), ub = new_user(f->s, b.id, "b@x");

    store_connector got;
    assert_int_equal(store_connector_get(f->s, a.id, ua.id, "gcp", &got), STORE_NOT_FOUND);
    assert_null(got.metadata_json);

    store_connector c = connector_for(a.id, ua.id, "gcp", "sa@p.iam.gserviceaccount.com",
                                      "{\"projects\":[{\"id\":\"p1\"}]}");
    assert_int_equal(store_connector_upsert(f->s, &c), STORE_OK);
    assert_int_equal(store_connector_get(f->s, a.id, ua.id, "gcp", &got), STORE_OK);
    assert_string_equal(got.account, "sa@p.iam.gserviceaccount.com");
    assert_string_equal(got.status, "active");
    assert_string_equal(got.metadata_json, "{\"projects\":[{\"id\":\"p1\"}]}");
    assert_true(strstr(got.secret_ref, "/gcp/key") != NULL);
    assert_true(got.created_at > 0 && got.updated_at >= got.created_at);
    int64_t created = got.created_at;
    store_connector_free(&got);
    assert_null(got.metadata_json);

    /* Upsert replaces the data, keeps created_at; NULL metadata reads "{}". */
    c = connector_for(a.id, ua.id, "gcp", "other@p", NULL);
    snprintf(c.status, sizeof(c.status), "disabled");
    assert_int_equal(store_connector_upsert(f->s, &c), STORE_OK);
    assert_int_equal(store_connector_get(f->s, a.id, ua.id, "gcp", &got), STORE_OK);
    assert_string_equal(got.account, "other@p");
    assert_string_equal(got.status, "disabled");
    assert_string_equal(got.metadata_json, "{}");
    assert_int_equal(got.created_at, created);
    store_connector_free(&got);

    /* A second connector of the same user, one of another user of the org. */
    store_user ua2 = new_user(f->s, a.id, "a2@x");
    c = connector_for(a.id, ua.id, "aws", "arn:aws:iam::1:role/AuroraRole", "{}");
    assert_int_equal(store_connector_upsert(f->s, &c), STORE_OK);
    c = connector_for(a.id, ua2.id, "gcp", "sa2@p", "{}");
    assert_int_equal(store_connector_upsert(f->s, &c), STORE_OK);
    /* Another org's row with the same user id string and connector. */
    c = connector_for(b.id, ua.id, "gcp", "foreign@p", "{}");
    assert_int_equal(store_connector_upsert(f->s, &c), STORE_OK);
    c = connector_for(b.id, ub.id, "gcp", "b@p", "{}");
    assert_int_equal(store_connector_upsert(f->s, &c), STORE_OK);

    store_connector *list = NULL;
    size_t n = 0;
    assert_int_equal(store_connector_list(f->s, a.id, &list, &n), STORE_OK);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(list[i].org_id, a.id);
        assert_non_null(list[i].metadata_json);
        assert_true(strcmp(list[i].account, "foreign@p") != 0);
    }
    /* oldest first */
    assert_string_equal(list[0].connector, "gcp");
    assert_string_equal(list[0].user_id, ua.id);
    store_connector_list_free(list, n);

    /* One connector across every organization (pollers), oldest first, a
     * page at a time: the rows here share their second, so created_seq and
     * the key order them, and a page of one walks the same order. */
    store_connector_cursor cur = { 0 };
    assert_int_equal(store_connector_page(f->s, "gcp", &cur, 100, &list, &n), STORE_OK);
    assert_int_equal(n, 4);
    char seen[4][2 * STORE_ID_LEN + 2];
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(list[i].connector, "gcp");
        snprintf(seen[i], sizeof(seen[i]), "%s/%s", list[i].org_id, list[i].user_id);
    }
    assert_string_equal(list[0].org_id, a.id);
    assert_string_equal(list[3].account, "b@p");
    store_connector_list_free(list, n);
    assert_int_equal(store_connector_page(f->s, "gcp", &cur, 100, &list, &n), STORE_OK);
    assert_int_equal(n, 0); /* past the newest */
    memset(&cur, 0, sizeof(cur));
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(store_connector_page(f->s, "gcp", &cur, 1, &list, &n), STORE_OK);
        assert_int_equal(n, 1);
        char k[2 * STORE_ID_LEN + 2];
        snprintf(k, sizeof(k), "%s/%s", list[0].org_id, list[0].user_id);
        assert_string_equal(k, seen[i]);
        store_connector_list_free(list, n);
    }
    /* a row made after the walk began is met at its end */
    store_user ub2 = new_user(f->s, b.id, "b2@x");
    c = connector_for(b.id, ub2.id, "gcp", "b2@p", "{}");
    assert_int_equal(store_connector_upsert(f->s, &c), STORE_OK);
    assert_int_equal(store_connector_page(f->s, "gcp", &cur, 10, &list, &n), STORE_OK);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].account, "b2@p");
    store_connector_list_free(list, n);
    assert_int_equal(store_connector_delete(f->s, b.id, ub2.id, "gcp"), STORE_OK);
    memset(&cur, 0, sizeof(cur));
    assert_int_equal(store_connector_page(f->s, "aws", &cur, 100, &list, &n), STORE_OK);
    assert_int_equal(n, 1);
    store_connector_list_free(list, n);
    memset(&cur, 0, sizeof(cur));
    assert_int_equal(store_connector_page(f->s, "nope", &cur, 100, &list, &n), STORE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(cur.started, 0);
    assert_int_equal(store_connector_page(f->s, "gcp", &cur, 0, &list, &n), STORE_ERR);
    assert_int_equal(store_connector_page(f->s, NULL, &cur, 10, &list, &n), STORE_ERR);
    assert_int_equal(store_connector_page(f->s, "gcp", NULL, 10, &list, &n), STORE_ERR);
    if (!f->pg && f->path[0]) {
        /* A page is a range read of an index, not a scan and sort of the
         * table: a walk of N rows costs N, not N * pages (PostgreSQL's
         * planner may prefer a scan of a table this small). */
        sqlite3 *h;
        sqlite3_stmt *st;
        assert_int_equal(sqlite3_open_v2(f->path, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        const char *plans[] = {
            "EXPLAIN QUERY PLAN SELECT org_id FROM connectors WHERE connector = 'x'"
            " ORDER BY created_at, created_seq, org_id, user_id LIMIT 200",
            "EXPLAIN QUERY PLAN SELECT org_id FROM connectors WHERE connector = 'x'"
            " AND (created_at, created_seq, org_id, user_id) > (1, 2, 'o', 'u')"
            " ORDER BY created_at, created_seq, org_id, user_id LIMIT 200",
        };
        for (size_t i = 0; i < 2; i++) {
            assert_int_equal(sqlite3_prepare_v2(h, plans[i], -1, &st, NULL), SQLITE_OK);
            int indexed = 0, scan = 0;
            while (sqlite3_step(st) == SQLITE_ROW) {
                const char *detail = (const char *)sqlite3_column_text(st, 3);
                print_message("plan %zu: %s\n", i, detail ? detail : "");
                indexed |= detail && strstr(detail, "connectors_kind_created_idx") != NULL;
                scan |= detail && (strstr(detail, "TEMP B-TREE") || !strncmp(detail, "SCAN", 4));
            }
            sqlite3_finalize(st);
            assert_true(indexed);
            assert_false(scan);
        }
        sqlite3_close(h);
    }

    /* Tenant scoping: org B's view of the same (user, connector) is its own row. */
    assert_int_equal(store_connector_get(f->s, b.id, ua.id, "gcp", &got), STORE_OK);
    assert_string_equal(got.account, "foreign@p");
    store_connector_free(&got);
    assert_int_equal(store_connector_get(f->s, b.id, ua.id, "aws", &got), STORE_NOT_FOUND);

    /* Delete: only the named row, only in its org. */
    assert_int_equal(store_connector_delete(f->s, b.id, ua.id, "aws"), STORE_NOT_FOUND);
    assert_int_equal(store_connector_delete(f->s, a.id, ua.id, "gcp"), STORE_OK);
    assert_int_equal(store_connector_delete(f->s, a.id, ua.id, "gcp"), STORE_NOT_FOUND);
    assert_int_equal(store_connector_get(f->s, a.id, ua.id, "gcp", &got), STORE_NOT_FOUND);
    assert_int_equal(store_connector_get(f->s, b.id, ua.id, "gcp", &got), STORE_OK);
    store_connector_free(&got);
    assert_int_equal(store_connector_list(f->s, a.id, &list, &n), STORE_OK);
    assert_int_equal(n, 2);
    store_connector_list_free(list, n);

    /* Metadata onto an existing row only: a deleted row stays deleted. */
    c = connector_for(a.id, ua.id, "gcp", "gone@p", "{\"late\":1}");
    assert_int_equal(store_connector_update_meta(f->s, &c), STORE_NOT_FOUND);
    assert_int_equal(store_connector_get(f->s, a.id, ua.id, "gcp", &got), STORE_NOT_FOUND);
    c = connector_for(b.id, ua.id, "gcp", "ignored@p", "{\"late\":2}");
    assert_int_equal(store_connector_update_meta(f->s, &c), STORE_OK);
    assert_int_equal(store_connector_get(f->s, b.id, ua.id, "gcp", &got), STORE_OK);
    assert_string_equal(got.account, "foreign@p"); /* only the metadata */
    assert_non_null(strstr(got.metadata_json, "\"late\""));
    store_connector_free(&got);

    /* Bad input and a missing org. */
    c = connector_for("org_nope", ua.id, "gcp", "x", "{}");
    assert_int_equal(store_connector_upsert(f->s, &c), STORE_NOT_FOUND);
    c = connector_for(a.id, ua.id, "", "x", "{}");
    assert_int_equal(store_connector_upsert(f->s, &c), STORE_ERR);
    c = connector_for(a.id, ua.id, "gcp", "x", "\xff\xfe");
    assert_int_equal(store_connector_upsert(f->s, &c), STORE_ERR);
    assert_int_equal(store_connector_list(f->s, "org_nope", &list, &n), STORE_OK);
    assert_int_equal(n, 0);
    assert_null(list);
}

static void state_hash_of(const char *state, char out[65])
{
    crypto_sha256_hex(state, strlen(state), out);
}

static store_oauth_state state_for(const char *org_id, const char *user_id, const char *provider,
                                   int64_t expires_at)
{
    store_oauth_state st;
    memset(&st, 0, sizeof(st));
    snprintf(st.org_id, sizeof(st.org_id), "%s", org_id);
    snprintf(st.user_id, sizeof(st.user_id), "%s", user_id);
    snprintf(st.provider, sizeof(st.provider), "%s", provider);
    snprintf(st.redirect_uri, sizeof(st.redirect_uri), "http://localhost:5080/callback");
    snprintf(st.extra, sizeof(st.extra), "region=eu");
    st.expires_at = expires_at;
    return st;
}

static void test_oauth_states(void **state)
{
    fixture *f = *state;
    store_org o = new_org(f->s, "oauth");
    store_user u = new_user(f->s, o.id, "o@x");
    int64_t now = (int64_t)time(NULL);
    char h[65], h2[65], h3[65];
    state_hash_of("state-one", h);
    state_hash_of("state-two", h2);
    state_hash_of("state-unknown", h3);

    store_oauth_state st = state_for(o.id, u.id, "gcp", now + 600);
    assert_int_equal(store_oauth_state_create(f->s, h, &st), STORE_OK);
    /* The same hash twice is a conflict, not a second state. */
    assert_int_equal(store_oauth_state_create(f->s, h, &st), STORE_CONFLICT);

    store_oauth_state got;
    memset(&got, 0, sizeof(got));
    int64_t used = -1, exp = -1;
    assert_int_equal(store_oauth_state_status(f->s, h, &used, &exp), STORE_OK);
    assert_int_equal(used, 0);
    assert_int_equal(exp, now + 600);
    /* its organization, read without taking it (a callback's share of the
     * outbound pool, entered before the state is taken): twice, then taken */
    char org[STORE_ID_LEN];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(store_oauth_state_org(f->s, h, now, org), STORE_OK);
        assert_string_equal(org, o.id);
    }
    assert_int_equal(store_oauth_state_org(f->s, h, now + 600, org), STORE_NOT_FOUND);

    assert_int_equal(store_oauth_state_consume(f->s, h, now, &got), STORE_OK);
    assert_string_equal(got.org_id, o.id);
    assert_string_equal(got.user_id, u.id);
    assert_string_equal(got.provider, "gcp");
    assert_string_equal(got.redirect_uri, "http://localhost:5080/callback");
    assert_string_equal(got.extra, "region=eu");
    assert_int_equal(got.expires_at, now + 600);
    /* single use */
    assert_int_equal(store_oauth_state_consume(f->s, h, now, &got), STORE_NOT_FOUND);
    assert_int_equal(store_oauth_state_org(f->s, h, now, org), STORE_NOT_FOUND); /* used */
    assert_int_equal(store_oauth_state_status(f->s, h, &used, &exp), STORE_OK);
    assert_int_equal(used, now);

    /* expired: at expires_at it is already too late */
    st = state_for(o.id, u.id, "gcp", now + 5);
    assert_int_equal(store_oauth_state_create(f->s, h2, &st), STORE_OK);
    assert_int_equal(store_oauth_state_consume(f->s, h2, now + 5, &got), STORE_NOT_FOUND);
    assert_int_equal(store_oauth_state_status(f->s, h2, &used, &exp), STORE_OK);
    assert_int_equal(used, 0);
    assert_int_equal(exp, now + 5);
    /* an operator may move the expiry (tests) */
    assert_int_equal(store_oauth_state_set_expiry(f->s, h2, now + 100), STORE_OK);
    assert_int_equal(store_oauth_state_consume(f->s, h2, now + 5, &got), STORE_OK);
    assert_int_equal(store_oauth_state_set_expiry(f->s, h3, now), STORE_NOT_FOUND);

    /* unknown */
    assert_int_equal(store_oauth_state_consume(f->s, h3, now, &got), STORE_NOT_FOUND);
    assert_int_equal(store_oauth_state_status(f->s, h3, &used, &exp), STORE_NOT_FOUND);
    assert_int_equal(store_oauth_state_org(f->s, h3, now, org), STORE_NOT_FOUND);
    assert_string_equal(org, "");

    /* only hashes are accepted: a raw state is refused before any SQL */
    assert_int_equal(store_oauth_state_create(f->s, "state-one", &st), STORE_ERR);
    assert_int_equal(store_oauth_state_consume(f->s, "state-one", now, &got), STORE_ERR);
    assert_int_equal(store_oauth_state_org(f->s, "state-one", now, org), STORE_ERR);
    /* a missing org */
    char h4[65];
    state_hash_of("state-four", h4);
    st = state_for("org_nope", u.id, "gcp", now + 600);
    assert_int_equal(store_oauth_state_create(f->s, h4, &st), STORE_NOT_FOUND);
    st = state_for(o.id, u.id, "", now + 600);
    assert_int_equal(store_oauth_state_create(f->s, h4, &st), STORE_ERR);
}

/* Any member with an API key makes a state per call of a login route
 * (/gcp/login, /github/login…), and a callback marks it used without
 * deleting it: each row stayed its TTL plus a day, however many were made
 * (found in review).  A user keeps at most STORE_OAUTH_STATES_PER_USER;
 * a new one drops the user's oldest spent or expired ones first, then the
 * oldest unfinished, never another user's, never the new one. */
static void test_oauth_states_per_user_are_capped(void **state)
{
    fixture *f = *state;
    enum { CAP = STORE_OAUTH_STATES_PER_USER, EXTRA = 5, N = CAP + EXTRA };
    store_org o = new_org(f->s, "oauth-cap");
    store_user u = new_user(f->s, o.id, "cap@x"), v = new_user(f->s, o.id, "other@x");
    int64_t now = (int64_t)time(NULL);
    static char h[N][65];
    char hv[65], raw[32];
    state_hash_of("cap-other-user", hv);
    store_oauth_state st = state_for(o.id, v.id, "slack", now + 600);
    assert_int_equal(store_oauth_state_create(f->s, hv, &st), STORE_OK);
    for (int i = 0; i < N; i++) {
        snprintf(raw, sizeof(raw), "cap-%d", i);
        state_hash_of(raw, h[i]);
        st = state_for(o.id, u.id, i % 2 ? "gcp" : "github", now + 600 + i);
        assert_int_equal(store_oauth_state_create(f->s, h[i], &st), STORE_OK);
    }
    char q[256];
    snprintf(q, sizeof(q), "SELECT COUNT(*) FROM oauth_states WHERE org_id = '%s' AND user_id = '%s'",
             o.id, u.id);
    assert_int_equal(raw_int(f, q), CAP);
    int64_t used = -1, exp = -1;
    for (int i = 0; i < EXTRA; i++)
        assert_int_equal(store_oauth_state_status(f->s, h[i], &used, &exp), STORE_NOT_FOUND);
    store_oauth_state got;
    for (int i = EXTRA; i < N; i++)
        assert_int_equal(store_oauth_state_status(f->s, h[i], &used, &exp), STORE_OK);
    /* the other user's state is not the first user's to drop */
    assert_int_equal(store_oauth_state_consume(f->s, hv, now, &got), STORE_OK);

    /* spent rows go before unfinished ones: a user who makes and spends
     * states in a loop cannot push out a flow still under way either */
    assert_int_equal(store_oauth_state_consume(f->s, h[N - 1], now, &got), STORE_OK);
    char fresh[65];
    state_hash_of("cap-fresh", fresh);
    st = state_for(o.id, u.id, "gcp", now + 700);
    assert_int_equal(store_oauth_state_create(f->s, fresh, &st), STORE_OK);
    assert_int_equal(raw_int(f, q), CAP);
    assert_int_equal(store_oauth_state_status(f->s, h[N - 1], &used, &exp), STORE_NOT_FOUND);
    assert_int_equal(store_oauth_state_status(f->s, h[EXTRA], &used, &exp), STORE_OK);
    for (int i = 0; i < 3 * CAP; i++) {
        snprintf(raw, sizeof(raw), "cap-loop-%d", i);
        char hl[65];
        state_hash_of(raw, hl);
        st = state_for(o.id, u.id, "gcp", now + 800);
        assert_int_equal(store_oauth_state_create(f->s, hl, &st), STORE_OK);
        assert_int_equal(store_oauth_state_consume(f->s, hl, now, &got), STORE_OK);
    }
    assert_int_equal(raw_int(f, q), CAP);
    assert_int_equal(store_oauth_state_consume(f->s, fresh, now, &got), STORE_OK);
    assert_int_equal(store_oauth_state_consume(f->s, h[EXTRA + 1], now, &got), STORE_OK);
    /* at the cap with every state unfinished, the oldest went */
    assert_int_equal(store_oauth_state_status(f->s, h[EXTRA], &used, &exp), STORE_NOT_FOUND);
    /* a refused create drops nothing: one transaction */
    st = state_for(o.id, u.id, "gcp", now + 900);
    assert_int_equal(store_oauth_state_create(f->s, h[EXTRA + 2], &st), STORE_CONFLICT);
    assert_int_equal(raw_int(f, q), CAP);
    assert_int_equal(store_oauth_state_consume(f->s, h[EXTRA + 2], now, &got), STORE_OK);
}

/* Expired states are deleted by the periodic prune a day after their
 * expiry, not only when someone makes a new state. */
static void test_oauth_state_prune(void **state)
{
    fixture *f = *state;
    store_org o = new_org(f->s, "oauth-prune");
    store_user u = new_user(f->s, o.id, "p@x");
    int64_t now = (int64_t)time(NULL);
    char old[65], recent[65], live[65];
    state_hash_of("prune-old", old);
    state_hash_of("prune-recent", recent);
    state_hash_of("prune-live", live);
    store_oauth_state st = state_for(o.id, u.id, "gcp", now + 600);
    assert_int_equal(store_oauth_state_create(f->s, old, &st), STORE_OK);
    assert_int_equal(store_oauth_state_create(f->s, recent, &st), STORE_OK);
    assert_int_equal(store_oauth_state_create(f->s, live, &st), STORE_OK);
    assert_int_equal(store_oauth_state_set_expiry(f->s, old, now - 86400 - 1), STORE_OK);
    assert_int_equal(store_oauth_state_set_expiry(f->s, recent, now - 60), STORE_OK);
    int64_t n = -1;
    assert_int_equal(store_oauth_state_prune(f->s, now, &n), STORE_OK);
    assert_int_equal(n, 1);
    int64_t used = -1, exp = -1;
    assert_int_equal(store_oauth_state_status(f->s, old, &used, &exp), STORE_NOT_FOUND);
    /* kept a day past its expiry: its callback still says "expired" */
    assert_int_equal(store_oauth_state_status(f->s, recent, &used, &exp), STORE_OK);
    assert_int_equal(store_oauth_state_status(f->s, live, &used, &exp), STORE_OK);
    assert_int_equal(store_oauth_state_prune(f->s, now, &n), STORE_OK);
    assert_int_equal(n, 0);
}

static void test_org_settings(void **state)
{
    fixture *f = *state;
    store_org a = new_org(f->s, "A"), b = new_org(f->s, "B");
    char v[64];
    assert_int_equal(store_org_setting_get(f->s, a.id, "aws.external_id", v, sizeof(v)),
                     STORE_NOT_FOUND);
    assert_int_equal(store_org_setting_create(f->s, a.id, "aws.external_id", "ext-1"), STORE_OK);
    /* create-once: the second value loses and the first stays */
    assert_int_equal(store_org_setting_create(f->s, a.id, "aws.external_id", "ext-2"),
                     STORE_CONFLICT);
    assert_int_equal(store_org_setting_get(f->s, a.id, "aws.external_id", v, sizeof(v)), STORE_OK);
    assert_string_equal(v, "ext-1");
    /* per org */
    assert_int_equal(store_org_setting_get(f->s, b.id, "aws.external_id", v, sizeof(v)),
                     STORE_NOT_FOUND);
    assert_int_equal(store_org_setting_create(f->s, b.id, "aws.external_id", "ext-b"), STORE_OK);
    assert_int_equal(store_org_setting_get(f->s, b.id, "aws.external_id", v, sizeof(v)), STORE_OK);
    assert_string_equal(v, "ext-b");
    /* a value that does not fit is an error, never cut */
    char small[4];
    assert_int_equal(store_org_setting_get(f->s, a.id, "aws.external_id", small, sizeof(small)),
                     STORE_ERR);
    assert_int_equal(store_org_setting_create(f->s, "org_nope", "k", "v"), STORE_NOT_FOUND);
    assert_int_equal(store_org_setting_create(f->s, a.id, "", "v"), STORE_ERR);
}

/* Two handles race to consume the same states: exactly one wins each. */
#define RACE_STATES 40

typedef struct {
    const char *url;
    char (*hashes)[65];
    _Atomic int *go;
    int won[RACE_STATES];
    int errors;
} race_arg;

static void *racer(void *p)
{
    race_arg *a = p;
    store_t *s = NULL;
    char err[256];
    if (store_open(a->url, &s, err, sizeof(err)) != STORE_OK) {
        a->errors++;
        return NULL;
    }
    while (!*a->go)
        ;
    for (int i = 0; i < RACE_STATES; i++) {
        store_oauth_state got;
        int rc = store_oauth_state_consume(s, a->hashes[i], 0, &got);
        if (rc == STORE_OK)
            a->won[i] = 1;
        else if (rc != STORE_NOT_FOUND)
            a->errors++;
    }
    store_close(s);
    return NULL;
}

/* A database of a build before migration 20: its OAuth states name no
 * console session (the callback treats them as before), and the backend
 * sessions whose membership an older build removed are deleted, so the
 * backend naming that organization and user again brings none back. */
static void test_console_upgrade_from_v19(void **state)
{
    fixture *f = *state;
    store_org o = new_org(f->s, "console-upgrade");
    store_user u = new_user(f->s, o.id, "u@example.com");
    int64_t now = (int64_t)time(NULL);
    char live[65], orphan[65], st_hash[65];
    state_hash_of("session-live", live);
    state_hash_of("session-orphan", orphan);
    state_hash_of("flow-before-20", st_hash);
    store_console_session c;
    memset(&c, 0, sizeof(c));
    snprintf(c.org_id, sizeof(c.org_id), "%s", o.id);
    snprintf(c.user_id, sizeof(c.user_id), "%s", u.id);
    snprintf(c.csrf_token, sizeof(c.csrf_token), "t");
    c.created_at = c.last_seen_at = now;
    c.expires_at = now + 3600;
    assert_int_equal(store_console_session_create(f->s, live, &c), STORE_OK);
    /* an organization an older build deleted, sessions left behind */
    snprintf(c.org_id, sizeof(c.org_id), "org-deleted-before");
    assert_int_equal(store_console_session_create(f->s, orphan, &c), STORE_OK);
    store_oauth_state st = state_for(o.id, u.id, "gcp", now + 600);
    snprintf(st.started_via, sizeof(st.started_via), "session");
    assert_int_equal(store_oauth_state_create(f->s, st_hash, &st), STORE_OK);
    store_close(f->s);
    f->s = NULL;
    raw_exec(f, "DROP INDEX console_sessions_key_idx");
    raw_exec(f, "DROP INDEX oauth_states_session_idx");
    raw_exec(f, "ALTER TABLE oauth_states DROP COLUMN console_session");
    raw_exec(f, "DELETE FROM schema_migrations WHERE version = 20");
    f->s = open_ok(f->url);
    assert_int_equal(store_schema_version(f->s), SCHEMA_LATEST);
    assert_int_equal(store_identity_provision(f->s, "org-deleted-before", u.id, "backend", NULL),
                     STORE_OK);
    assert_int_equal(store_console_session_peek(f->s, orphan, now + 1, 1800, &c), STORE_NOT_FOUND);
    assert_int_equal(store_console_session_peek(f->s, live, now + 1, 1800, &c), STORE_OK);
    store_oauth_state got;
    assert_int_equal(store_oauth_state_consume(f->s, st_hash, now, &got), STORE_OK);
    assert_string_equal(got.console_session, "");
    assert_string_equal(got.started_via, "session");
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM oauth_states WHERE console_session = ''"), 1);
}

static void test_oauth_state_race(void **state)
{
    fixture *f = *state;
    store_org o = new_org(f->s, "race");
    /* two users: one may hold only STORE_OAUTH_STATES_PER_USER states */
    store_user u[2] = { new_user(f->s, o.id, "r@x"), new_user(f->s, o.id, "s@x") };
    char hashes[RACE_STATES][65];
    for (int i = 0; i < RACE_STATES; i++) {
        char raw[32];
        snprintf(raw, sizeof(raw), "race-%d", i);
        state_hash_of(raw, hashes[i]);
        store_oauth_state st = state_for(o.id, u[i % 2].id, "gcp", (int64_t)time(NULL) + 600);
        assert_int_equal(store_oauth_state_create(f->s, hashes[i], &st), STORE_OK);
    }
    _Atomic int go = 0;
    race_arg args[2];
    pthread_t th[2];
    for (int k = 0; k < 2; k++) {
        memset(&args[k], 0, sizeof(args[k]));
        args[k].url = f->url;
        args[k].hashes = hashes;
        args[k].go = &go;
        assert_int_equal(pthread_create(&th[k], NULL, racer, &args[k]), 0);
    }
    go = 1;
    for (int k = 0; k < 2; k++)
        assert_int_equal(pthread_join(th[k], NULL), 0);
    for (int k = 0; k < 2; k++)
        assert_int_equal(args[k].errors, 0);
    for (int i = 0; i < RACE_STATES; i++)
        assert_int_equal(args[0].won[i] + args[1].won[i], 1);
}

/* ---- PostgreSQL only ---------------------------------------------------------------------------- */

static void test_pg_migrations_reopen(void **state)
{
    fixture *f = *state;
    assert_int_equal(store_schema_version(f->s), SCHEMA_LATEST);
    store_org o = new_org(f->s, "Persisted");
    store_user u = new_user(f->s, o.id, "p@example.com");
    made_token t = new_token(f->s, o.id, u.id, NULL, "c");
    store_close(f->s);
    f->s = NULL;
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM schema_migrations"), SCHEMA_LATEST);
    int64_t applied_at = raw_int(f, "SELECT applied_at FROM schema_migrations WHERE version = 1");
    assert_true(applied_at > 0);

    /* Reopen twice: nothing re-applied, data kept. */
    for (int i = 0; i < 2; i++) {
        f->s = open_ok(f->url);
        assert_int_equal(store_schema_version(f->s), SCHEMA_LATEST);
        store_user ug;
        assert_int_equal(store_user_get(f->s, o.id, u.id, &ug), STORE_OK);
        assert_string_equal(ug.email, "p@example.com");
        store_close(f->s);
        f->s = NULL;
    }
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM schema_migrations"), SCHEMA_LATEST);
    assert_int_equal(raw_int(f, "SELECT applied_at FROM schema_migrations WHERE version = 1"), applied_at);
    /* The stored hash is the hash: the raw token is nowhere in the table. */
    char q[256];
    snprintf(q, sizeof(q), "SELECT COUNT(*) FROM agent_tokens WHERE token_hash = '%s'", t.hash);
    assert_int_equal(raw_int(f, q), 1);
    snprintf(q, sizeof(q), "SELECT COUNT(*) FROM agent_tokens WHERE token_hash = '%s'", t.token);
    assert_int_equal(raw_int(f, q), 0);
    f->s = open_ok(f->url);
}

static void test_pg_open_errors(void **state)
{
    (void)state;
    char url[320];
    /* A database that does not exist on a running server. */
    pg_url(&g_pg, "no_such_db", url, sizeof(url));
    expect_open_error(url, "does not exist");
    /* No server at all behind the socket directory: a clear, quick error
     * that never echoes the url's password. */
    long long t0 = ph_now_ms();
    store_t *s = NULL;
    char err[256] = "";
    assert_int_equal(store_open("postgres://aurora:hunter2-pw@/x?host=%2Fnonexistent-dir", &s, err,
                                sizeof(err)),
                     STORE_ERR);
    assert_null(s);
    assert_non_null(strstr(err, "cannot connect"));
    assert_null(strstr(err, "hunter2"));
    assert_true(ph_now_ms() - t0 < 5000);
    /* A malformed url is refused by libpq, not crashed on. */
    expect_open_error("postgresql://[::1", NULL);
    expect_open_error("postgres://aurora@/x?nosuchoption=1", NULL);
}

/* Several handles migrate a fresh database at once, as replicas starting
 * together do: every open succeeds and the schema is applied once. */
typedef struct {
    const char *url;
    int ok;
    char err[256];
} opener_arg;

static void *opener(void *p)
{
    opener_arg *a = p;
    store_t *s = NULL;
    a->ok = store_open(a->url, &s, a->err, sizeof(a->err)) == STORE_OK;
    store_close(s);
    return NULL;
}

static void test_pg_concurrent_first_open(void **state)
{
    (void)state;
    char url[320];
    assert_int_equal(pg_create_db(&g_pg, "fresh_concurrent"), 0);
    pg_url(&g_pg, "fresh_concurrent", url, sizeof(url));
    pthread_t th[6];
    opener_arg args[6];
    for (int i = 0; i < 6; i++) {
        args[i] = (opener_arg){ .url = url };
        assert_int_equal(pthread_create(&th[i], NULL, opener, &args[i]), 0);
    }
    /* Every thread is joined before any check: a failed check leaves the
     * test, and a thread still running would write into a dead frame. */
    int joined = 0;
    for (int i = 0; i < 6; i++)
        joined += pthread_join(th[i], NULL) == 0;
    assert_int_equal(joined, 6);
    for (int i = 0; i < 6; i++) {
        if (!args[i].ok)
            fail_msg("concurrent open %d: %s", i, args[i].err);
    }
    long long n = -1;
    assert_int_equal(pg_sql(&g_pg, "fresh_concurrent", "SELECT COUNT(*) FROM schema_migrations",
                            &n),
                     0);
    assert_int_equal(n, SCHEMA_LATEST);
    assert_int_equal(pg_drop_db(&g_pg, "fresh_concurrent"), 0);
}

/* The server restarts while the store's connection sits idle: the next
 * call notices before sending anything and succeeds on a new connection. */
static void test_pg_restart_between_calls(void **state)
{
    fixture *f = *state;
    store_org o = new_org(f->s, "before restart");
    assert_int_equal(pg_restart(&g_pg), 0);
    store_org got;
    if (store_org_get(f->s, o.id, &got) != STORE_OK)
        fail_msg("after restart: %s", store_errmsg(f->s));
    assert_string_equal(got.name, "before restart");
    store_org o2 = new_org(f->s, "after restart");
    assert_int_equal(store_org_get(f->s, o2.id, &got), STORE_OK);

    /* Server down: a clear error, quickly; the handle recovers once it is back. */
    pg_stop(&g_pg);
    long long t0 = ph_now_ms();
    assert_int_equal(store_org_get(f->s, o.id, &got), STORE_ERR);
    assert_non_null(strstr(store_errmsg(f->s), "connect"));
    assert_int_equal(store_org_create(f->s, "while down", &got), STORE_ERR);
    assert_true(ph_now_ms() - t0 < 5000);
    /* Opening a store while the server is down fails the same way. */
    expect_open_error(f->url, "cannot connect");
    assert_int_equal(pg_start(&g_pg), 0);
    assert_int_equal(store_org_get(f->s, o.id, &got), STORE_OK);
    assert_string_equal(got.name, "before restart");
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM orgs WHERE name = 'while down'"), 0);
}

/* The connection is lost between two statements of one transaction: the
 * rest of the transaction fails, COMMIT reports it, and nothing of it is in
 * the database; the handle works again after ROLLBACK. */
static void test_pg_restart_mid_transaction(void **state)
{
    fixture *f = *state;
    const db_engine *eng = db_engine_for(f->url);
    assert_non_null(eng);
    assert_string_equal(eng->name, "postgres");
    db_t *db = NULL;
    char err[256];
    assert_int_equal(eng->open(f->url, &db, err, sizeof(err)), DB_OK);
    assert_int_equal(eng->exec(db, "CREATE TABLE tx_probe (k TEXT PRIMARY KEY, v BIGINT)", NULL, 0,
                               NULL),
                     DB_OK);

    /* 1: lost between statements. */
    assert_int_equal(eng->exec(db, "BEGIN", NULL, 0, NULL), DB_OK);
    db_param p1[] = { DB_P_TEXT("a"), DB_P_INT(1) };
    assert_int_equal(eng->exec(db, "INSERT INTO tx_probe (k, v) VALUES (?, ?)", p1, 2, NULL), DB_OK);
    assert_int_equal(pg_restart(&g_pg), 0);
    db_param p2[] = { DB_P_TEXT("b"), DB_P_INT(2) };
    assert_int_equal(eng->exec(db, "INSERT INTO tx_probe (k, v) VALUES (?, ?)", p2, 2, NULL),
                     DB_E_CONN);
    assert_non_null(strstr(eng->errmsg(db), "transaction"));
    /* Still inside the lost transaction: not run in autocommit behind the
     * caller's back. */
    db_param p3[] = { DB_P_TEXT("c"), DB_P_INT(3) };
    assert_int_equal(eng->exec(db, "INSERT INTO tx_probe (k, v) VALUES (?, ?)", p3, 2, NULL),
                     DB_E_CONN);
    assert_int_equal(eng->exec(db, "COMMIT", NULL, 0, NULL), DB_E_CONN);
    assert_non_null(strstr(eng->errmsg(db), "rolled back"));
    assert_int_equal(eng->exec(db, "ROLLBACK", NULL, 0, NULL), DB_OK);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM tx_probe"), 0);

    /* 2: lost right before COMMIT. */
    assert_int_equal(eng->exec(db, "BEGIN", NULL, 0, NULL), DB_OK);
    assert_int_equal(eng->exec(db, "INSERT INTO tx_probe (k, v) VALUES (?, ?)", p1, 2, NULL), DB_OK);
    assert_int_equal(eng->exec(db, "INSERT INTO tx_probe (k, v) VALUES (?, ?)", p2, 2, NULL), DB_OK);
    assert_int_equal(pg_restart(&g_pg), 0);
    assert_int_equal(eng->exec(db, "COMMIT", NULL, 0, NULL), DB_E_CONN);
    assert_int_equal(eng->exec(db, "ROLLBACK", NULL, 0, NULL), DB_OK);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM tx_probe"), 0);

    /* 3: a transaction that failed on its own is not reported committed. */
    assert_int_equal(eng->exec(db, "BEGIN", NULL, 0, NULL), DB_OK);
    assert_int_equal(eng->exec(db, "INSERT INTO tx_probe (k, v) VALUES (?, ?)", p1, 2, NULL), DB_OK);
    assert_int_equal(eng->exec(db, "INSERT INTO tx_probe (k, v) VALUES (?, ?)", p1, 2, NULL),
                     DB_E_CONSTRAINT);
    assert_int_equal(eng->exec(db, "COMMIT", NULL, 0, NULL), DB_E_OTHER);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM tx_probe"), 0);

    /* The handle works: a complete transaction commits. */
    assert_int_equal(eng->exec(db, "BEGIN", NULL, 0, NULL), DB_OK);
    assert_int_equal(eng->exec(db, "INSERT INTO tx_probe (k, v) VALUES (?, ?)", p1, 2, NULL), DB_OK);
    assert_int_equal(eng->exec(db, "INSERT INTO tx_probe (k, v) VALUES (?, ?)", p2, 2, NULL), DB_OK);
    assert_int_equal(eng->exec(db, "COMMIT", NULL, 0, NULL), DB_OK);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM tx_probe"), 2);
    eng->close(db);
}

/* The server goes away while a statement runs: that statement gets a clear
 * DB_E_CONN, the next one succeeds. */
typedef struct {
    const db_engine *eng;
    db_t *db;
    int rc;
    char msg[256];
} sleeper_arg;

static void *sleeper(void *p)
{
    sleeper_arg *a = p;
    db_result r;
    a->rc = a->eng->query(a->db, "SELECT pg_sleep(120)", NULL, 0, &r);
    if (a->rc == DB_OK)
        db_result_free(&r);
    snprintf(a->msg, sizeof(a->msg), "%s", a->eng->errmsg(a->db));
    return NULL;
}

static void test_pg_inflight_statement(void **state)
{
    fixture *f = *state;
    sleeper_arg a = { .eng = db_engine_for(f->url) };
    char err[256];
    /* The statement must still run when the restart ends it: its deadline
     * is longer than the wait for it to start plus the restart, however
     * loaded the machine (the default 5 s might not be; teardown resets). */
    db_set_limits(90000, 0);
    assert_int_equal(a.eng->open(f->url, &a.db, err, sizeof(err)), DB_OK);
    pthread_t th;
    long long t0 = ph_now_ms();
    assert_int_equal(pthread_create(&th, NULL, sleeper, &a), 0);
    /* Restart only once the statement runs on the server: waited for (a
     * thread of a loaded machine may take seconds to get there, which 500
     * polls did not always cover), and the thread is joined before any
     * failure is reported (the restart ends its statement): a thread still
     * running would write into this frame after the test left it. */
    long long running = 0, end = ph_now_ms() + 30000;
    int polled = 0;
    while (running < 1 && ph_now_ms() < end) {
        ph_sleep_ms(10);
        polled = pg_sql(&g_pg, STORE_PLACE_DB,
                        "SELECT COUNT(*) FROM pg_stat_activity"
                        " WHERE query = 'SELECT pg_sleep(120)' AND state = 'active'",
                        &running);
        if (polled != 0)
            break;
    }
    int restarted = pg_restart(&g_pg);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(polled, 0);
    assert_int_equal(running, 1);
    assert_int_equal(restarted, 0);
    assert_int_equal(a.rc, DB_E_CONN);
    assert_non_null(strstr(a.msg, "connection lost"));
    assert_true(ph_now_ms() - t0 < 60000); /* not the whole pg_sleep */
    db_result r;
    assert_int_equal(a.eng->query(a.db, "SELECT 1 + ?", (db_param[]){ DB_P_INT(41) }, 1, &r),
                     DB_OK);
    assert_int_equal(r.nrows, 1);
    assert_string_equal(db_cell(&r, 0, 0), "42");
    db_result_free(&r);
    a.eng->close(a.db);
}

/* Writers keep going while the server restarts twice.  Every call either
 * succeeds or fails with a connection error; after the restarts every
 * writer succeeds again; the table holds every acknowledged row (and at
 * most the rows whose acknowledgement the connection loss swallowed). */
#define LOAD_WRITERS 3

typedef struct {
    const char *url;
    const char *org_id;
    _Atomic int *stop;
    /* Bumped by the test once a restart has returned (the new server
     * answers): an insert that read the bumped value before it started ran
     * against the new server, not the old one. */
    _Atomic int *epoch;
    _Atomic int ok; /* read by the test while the writer runs */
    _Atomic int ok_epoch; /* the epoch the last successful insert started in */
    int failed, bad_error, ok_after;
} load_arg;

static void *load_writer(void *p)
{
    load_arg *a = p;
    store_t *s = NULL;
    char err[256];
    if (store_open(a->url, &s, err, sizeof(err)) != STORE_OK) {
        a->bad_error++;
        return NULL;
    }
    while (!*a->stop) {
        store_audit au = audit_for(a->org_id, "[\"get\",\"pods\"]", 0);
        int started_in = *a->epoch;
        if (store_audit_insert(s, &au) == STORE_OK) {
            a->ok++;
            a->ok_epoch = started_in;
        } else {
            a->failed++;
            if (!strstr(store_errmsg(s), "connect"))
                a->bad_error++;
            ph_sleep_ms(5);
        }
    }
    /* The server is back: every writer succeeds. */
    for (int i = 0; i < 5; i++) {
        store_audit au = audit_for(a->org_id, "[\"after\"]", 0);
        if (store_audit_insert(s, &au) == STORE_OK) {
            a->ok++;
            a->ok_after++;
        }
    }
    store_close(s);
    return NULL;
}

/* Waits until every writer has stored a row with an insert that started in
 * `epoch`, i.e. after the last restart returned.  A count taken before the
 * restart is not enough: a writer may store rows between the count and the
 * restart, and then still be failing (or failing fast while another writer
 * probes the new server) when the test moves on.  Once every writer has
 * stored in this epoch, every call that began against the old server has
 * ended (each writer runs one call at a time), so nothing can reopen the
 * store's circuit breaker. */
static void wait_every_writer_stores(load_arg *args, int epoch)
{
    long long end = ph_now_ms() + 30000;
    for (int i = 0; i < LOAD_WRITERS; i++) {
        while (args[i].ok_epoch < epoch) {
            if (ph_now_ms() > end)
                fail_msg("writer %d stored no row in epoch %d within 30 s", i, epoch);
            ph_sleep_ms(5);
        }
    }
}

static void test_pg_restart_under_load(void **state)
{
    fixture *f = *state;
    store_org o = new_org(f->s, "load");
    _Atomic int stop = 0, epoch = 1;
    pthread_t th[LOAD_WRITERS];
    load_arg args[LOAD_WRITERS];
    for (int i = 0; i < LOAD_WRITERS; i++) {
        args[i] = (load_arg){ .url = f->url, .org_id = o.id, .stop = &stop, .epoch = &epoch };
        assert_int_equal(pthread_create(&th[i], NULL, load_writer, &args[i]), 0);
    }
    /* every writer stores rows before, between and after the restarts */
    wait_every_writer_stores(args, epoch);
    assert_int_equal(pg_restart(&g_pg), 0);
    wait_every_writer_stores(args, ++epoch);
    assert_int_equal(pg_restart(&g_pg), 0);
    wait_every_writer_stores(args, ++epoch);
    stop = 1;
    int ok = 0, failed = 0;
    for (int i = 0; i < LOAD_WRITERS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].bad_error, 0);
        assert_int_equal(args[i].ok_after, 5);
        ok += args[i].ok;
        failed += args[i].failed;
    }
    char q[160];
    snprintf(q, sizeof(q), "SELECT COUNT(*) FROM audit_log WHERE org_id = '%s'", o.id);
    int64_t rows = raw_int(f, q);
    assert_true(ok > 0);
    assert_true(rows >= ok);
    assert_true(rows <= ok + failed);
}

/* ---- deadlines: a stalled database costs a bounded wait ----------------------------------- */

/* SIGSTOP / SIGCONT to the postmaster and every backend: a server that stops
 * answering without closing anything (its sockets stay open, the kernel
 * still accepts connections for it). */

static void pg_signal_all(int sig)
{
    if (g_pg.pid <= 0)
        return;
    if (sig == SIGSTOP) /* first: no new backend is forked meanwhile */
        kill(g_pg.pid, sig);
    DIR *d = opendir("/proc");
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char path[300], buf[512];
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        FILE *fp = fopen(path, "r");
        if (!fp)
            continue;
        size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
        buf[n] = '\0';
        /* "pid (comm) state ppid …": comm may hold spaces, so after the last ')' */
        const char *rp = strrchr(buf, ')');
        char state;
        int ppid;
        if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == g_pg.pid)
            kill((pid_t)atoi(e->d_name), sig);
    }
    closedir(d);
    if (sig == SIGCONT)
        kill(g_pg.pid, sig);
    g_pg_frozen = sig == SIGSTOP;
}

/* One call, timed, in its own thread (see call_within). */
typedef struct {
    const db_engine *eng;
    db_t *db;         /* an engine call … */
    const char *sql;
    store_t *s;       /* … or, when set, store_org_create on this store */
    int rc;
    long long ms;     /* how long the call took */
    char msg[512];
} timed_call;

static void *timed_call_main(void *p)
{
    timed_call *c = p;
    long long t0 = ph_now_ms();
    if (c->s) {
        store_org o;
        c->rc = store_org_create(c->s, "during-a-stall", &o);
        snprintf(c->msg, sizeof(c->msg), "%s", store_errmsg(c->s));
    } else {
        db_result r;
        c->rc = c->eng->query(c->db, c->sql, NULL, 0, &r);
        if (c->rc == DB_OK)
            db_result_free(&r);
        snprintf(c->msg, sizeof(c->msg), "%s", c->eng->errmsg(c->db));
    }
    c->ms = ph_now_ms() - t0;
    return NULL;
}

/* Runs the call and waits for it at most limit_ms: a call that a stalled
 * server holds (what the deadlines are for) fails the test instead of
 * hanging it; the server is woken up so that the thread can end. */
static void call_within(timed_call *c, long limit_ms)
{
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, timed_call_main, c), 0);
    struct timespec ts = clock_after_ms(CLOCK_REALTIME, limit_ms);
    if (pthread_timedjoin_np(th, NULL, &ts) != 0) {
        pg_signal_all(SIGCONT);
        assert_int_equal(pthread_join(th, NULL), 0);
        fail_msg("\"%s\" was still waiting after %ld ms (returned %d after %lld ms once the "
                 "server was woken up)", c->s ? "store_org_create" : c->sql, limit_ms, c->rc,
                 c->ms);
    }
}

static timed_call query_call(const db_engine *eng, db_t *db, const char *sql)
{
    return (timed_call){ .eng = eng, .db = db, .sql = sql };
}

static db_t *engine_open(const char *url)
{
    db_t *db = NULL;
    char err[256] = "";
    if (db_engine_for(url)->open(url, &db, err, sizeof(err)) != DB_OK)
        fail_msg("open %s: %s", url, err);
    return db;
}

/* A runaway statement is interrupted at the deadline; the handle stays usable. */
static void test_sqlite_statement_deadline(void **state)
{
    fixture *f = *state;
    const char *url = f->url[0] ? f->url : ":memory:";
    db_set_limits(300, 0);
    db_t *db = engine_open(url);
    const db_engine *eng = db_engine_for(url);
    /* Seconds of work at least (finite, so that code without a deadline
     * fails this test instead of hanging it). */
    timed_call c = query_call(eng, db, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
                                       "SELECT x + 1 FROM c WHERE x < 200000000) "
                                       "SELECT COUNT(*) FROM c");
    call_within(&c, 300000);
    assert_int_equal(c.rc, DB_E_TIMEOUT);
    assert_non_null(strstr(c.msg, "timed out after 300 ms"));
    assert_true(c.ms >= 290 && c.ms < 15000); /* the whole count: ~30 s */
    c = query_call(eng, db, "SELECT 1");
    call_within(&c, 20000);
    assert_int_equal(c.rc, DB_OK);
    eng->close(db);
}

/* Another process holds the write lock: a write waits for it until the
 * deadline, not for SQLite's fixed 5 s, then reports the lock; once the lock
 * is released, writes go through again. */
static void test_sqlite_lock_deadline(void **state)
{
    fixture *f = *state;
    db_set_limits(300, 0);
    store_t *s = open_ok(f->url);
    sqlite3 *other = NULL;
    assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    timed_call c = { .s = s };
    call_within(&c, 20000);
    assert_int_equal(c.rc, STORE_ERR);
    assert_non_null(strstr(c.msg, "locked"));
    assert_true(c.ms >= 290 && c.ms < 4500); /* SQLite's own wait is 5 s */
    assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    new_org(s, "after-the-lock");
    store_close(s);
}

static void exec_ok(const db_engine *eng, db_t *db, const char *sql)
{
    if (eng->exec(db, sql, NULL, 0, NULL) != DB_OK)
        fail_msg("%s: %s", sql, eng->errmsg(db));
}

/* Connections of this process to one file: a writer that finds the file
 * locked waits in the busy handler on the file's gate
 * (server/db_sqlite_gate.h) and is woken when the transaction ends; readers
 * never wait (WAL); a write still locked out at its deadline fails with
 * DB_E_BUSY and says so; every way a write can end moves the gate's count
 * (COMMIT, ROLLBACK, an autocommit write, a failed one, closing the handle
 * with a transaction open) and a read or a statement inside a transaction
 * does not. */
static void test_sqlite_writers_take_turns(void **state)
{
    fixture *f = *state;
    const db_engine *eng = &db_engine_sqlite;
    db_set_limits(300, 0);
    db_t *a = engine_open(f->url), *b = engine_open(f->url);
    db_set_limits(60000, 0);
    db_t *patient = engine_open(f->url);
    db_gate *gate = db_gate_get(f->path); /* the same gate as the handles' */
    assert_non_null(gate);
    exec_ok(eng, a, "CREATE TABLE turns (x INTEGER PRIMARY KEY)");

    exec_ok(eng, a, "BEGIN");
    exec_ok(eng, a, "INSERT INTO turns VALUES (1)");
    /* A reader is not held up by the writer. */
    timed_call c = query_call(eng, b, "SELECT COUNT(*) FROM turns");
    call_within(&c, 20000);
    assert_int_equal(c.rc, DB_OK);
    /* A writer waits until its deadline, then says why. */
    c = query_call(eng, b, "INSERT INTO turns VALUES (2)");
    call_within(&c, 20000);
    assert_int_equal(c.rc, DB_E_BUSY);
    assert_non_null(strstr(c.msg, "locked by another connection after 300 ms"));
    assert_true(c.ms >= 290);
    /* A writer with time to spare waits on the gate and goes in when the
     * transaction commits. */
    c = query_call(eng, patient, "INSERT INTO turns VALUES (3)");
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, timed_call_main, &c), 0);
    int64_t until = ph_now_ms() + 60000;
    while (db_gate_waiters(gate) != 1) {
        if (ph_now_ms() > until)
            fail_msg("the second writer never waited in the gate");
        usleep(1000);
    }
    exec_ok(eng, a, "COMMIT");
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(c.rc, DB_OK);

    /* Each way a write can end moves the gate's count (what wakes the
     * waiters); a read and a statement inside a transaction do not. */
    uint64_t n = db_gate_ended(gate);
    exec_ok(eng, b, "SELECT COUNT(*) FROM turns");
    assert_true(db_gate_ended(gate) == n);
    exec_ok(eng, a, "BEGIN");
    exec_ok(eng, a, "INSERT INTO turns VALUES (4)");
    assert_true(db_gate_ended(gate) == n);
    exec_ok(eng, a, "ROLLBACK");
    assert_true(db_gate_ended(gate) == ++n);
    exec_ok(eng, b, "INSERT INTO turns VALUES (5)"); /* an autocommit write */
    assert_true(db_gate_ended(gate) == ++n);
    assert_int_equal(eng->exec(b, "INSERT INTO turns VALUES (5)", NULL, 0, NULL),
                     DB_E_CONSTRAINT); /* a failed one (the key exists) */
    assert_true(db_gate_ended(gate) == ++n);
    exec_ok(eng, a, "INSERT INTO turns VALUES (6)");
    assert_true(db_gate_ended(gate) == ++n);
    exec_ok(eng, b, "BEGIN"); /* a handle closed in the middle of a transaction */
    exec_ok(eng, b, "INSERT INTO turns VALUES (7)");
    eng->close(b);
    assert_true(db_gate_ended(gate) == ++n);
    exec_ok(eng, a, "INSERT INTO turns VALUES (8)");

    db_result r;
    assert_int_equal(eng->query(a, "SELECT group_concat(x) FROM (SELECT x FROM turns ORDER BY x)",
                                NULL, 0, &r), DB_OK);
    assert_string_equal(db_cell(&r, 0, 0), "1,3,5,6,8");
    db_result_free(&r);
    db_gate_put(gate);
    eng->close(patient);
    eng->close(a);
}

typedef struct {
    db_gate *g;
    uint64_t seen, got;
} gate_waiter;

static void *gate_wait_main(void *p)
{
    gate_waiter *w = p;
    w->got = db_gate_wait(w->g, w->seen, 600000);
    return NULL;
}

/* A waiter is woken by an ended transaction, not by its timeout (10 min
 * here: the test's own 60 s limit fails it first); a count that moved
 * before the wait began returns at once; connections to the same file
 * share one gate, another file has its own. */
static void test_sqlite_gate_wakes_waiters(void **state)
{
    fixture *f = *state;
    db_gate *g = db_gate_get(f->path), *same = db_gate_get(f->path);
    assert_non_null(g);
    assert_ptr_equal(g, same);
    char other[sizeof(f->dir) + 16];
    snprintf(other, sizeof(other), "%s/junk.db", f->dir); /* teardown removes it */
    FILE *fp = fopen(other, "w");
    assert_non_null(fp);
    fclose(fp);
    db_gate *g2 = db_gate_get(other);
    assert_non_null(g2);
    assert_true(g2 != g);

    gate_waiter w = { .g = g, .seen = db_gate_ended(g) };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, gate_wait_main, &w), 0);
    int64_t until = ph_now_ms() + 60000;
    while (db_gate_waiters(g) != 1) {
        if (ph_now_ms() > until)
            fail_msg("the waiter never waited");
        usleep(1000);
    }
    db_gate_ended_one(g2); /* another file: not this waiter's count */
    assert_true(db_gate_ended(g) == w.seen);
    assert_true(db_gate_ended(g2) != 0);
    db_gate_ended_one(g);
    struct timespec limit = clock_after_ms(CLOCK_REALTIME, 60000);
    if (pthread_timedjoin_np(th, NULL, &limit) != 0)
        fail_msg("an ended transaction did not wake the waiter");
    assert_true(w.got == w.seen + 1);
    assert_true(db_gate_wait(g, w.seen, 600000) == w.seen + 1); /* moved already */
    db_gate_put(g2);
    db_gate_put(same);
    db_gate_put(g);
}

/* The server's statement_timeout cancels a slow statement and the
 * connection stays (same backend before and after). */
static void test_pg_statement_timeout(void **state)
{
    fixture *f = *state;
    db_set_limits(500, 0);
    db_t *db = engine_open(f->url);
    const db_engine *eng = &db_engine_postgres;
    db_result r;
    assert_int_equal(eng->query(db, "SELECT pg_backend_pid()", NULL, 0, &r), DB_OK);
    char pid[32];
    snprintf(pid, sizeof(pid), "%s", db_cell(&r, 0, 0));
    db_result_free(&r);
    timed_call c = query_call(eng, db, "SELECT pg_sleep(60)");
    call_within(&c, 90000);
    assert_int_equal(c.rc, DB_E_TIMEOUT);
    assert_non_null(strstr(c.msg, "statement timeout"));
    assert_non_null(strstr(c.msg, "57014"));
    assert_true(c.ms >= 490 && c.ms < 20000);
    assert_int_equal(eng->query(db, "SELECT pg_backend_pid()", NULL, 0, &r), DB_OK);
    assert_string_equal(db_cell(&r, 0, 0), pid);
    db_result_free(&r);
    eng->close(db);
}

/* A handle of a stalled server, once the server runs again: it answers
 * (reconnecting if it must) within 30 s.  Tried again while it times out or
 * fails fast: its own limits may be short for a just-resumed server on a
 * loaded machine, and while one call probes the server the breaker fails
 * the others at once. */
static void answers_again(const db_engine *eng, db_t *db)
{
    long long end = ph_now_ms() + 30000;
    for (;;) {
        db_result r;
        int rc = eng->query(db, "SELECT 1", NULL, 0, &r);
        if (rc == DB_OK) {
            db_result_free(&r);
            return;
        }
        if ((rc != DB_E_TIMEOUT && rc != DB_E_CONN) || ph_now_ms() > end)
            fail_msg("the handle does not answer again: %d %s", rc, eng->errmsg(db));
        ph_sleep_ms(50);
    }
}

static void store_answers_again(store_t *s)
{
    long long end = ph_now_ms() + 30000;
    for (;;) {
        store_org o;
        int rc = store_org_first(s, &o);
        if (rc == STORE_OK || rc == STORE_NOT_FOUND)
            return;
        if (ph_now_ms() > end)
            fail_msg("the store does not answer again: %d %s", rc, store_errmsg(s));
        ph_sleep_ms(50);
    }
}

/* The whole server is stopped (SIGSTOP): an idle statement, a reconnect, a
 * statement inside a transaction and a store call each fail within the
 * deadline (plus the client's grace) instead of waiting for ever; once the
 * server runs again the transaction is reported lost, nothing of it was
 * written, and everything works. */
static void test_pg_stopped_server(void **state)
{
    fixture *f = *state;
    const int limit = 1000; /* generous: the machine may be loaded */
    db_set_limits(limit, limit);
    const db_engine *eng = &db_engine_postgres;
    db_t *idle = engine_open(f->url), *tx = engine_open(f->url);
    store_t *s = open_ok(f->url);
    assert_int_equal(
        eng->exec(idle, "CREATE TABLE stall_probe (k TEXT PRIMARY KEY)", NULL, 0, NULL), DB_OK);
    db_param pa[] = { DB_P_TEXT("a") }, pb[] = { DB_P_TEXT("b") };
    assert_int_equal(eng->exec(tx, "BEGIN", NULL, 0, NULL), DB_OK);
    assert_int_equal(eng->exec(tx, "INSERT INTO stall_probe (k) VALUES (?)", pa, 1, NULL), DB_OK);

    pg_signal_all(SIGSTOP);
    timed_call c = query_call(eng, idle, "SELECT 1");
    call_within(&c, 30000);
    assert_int_equal(c.rc, DB_E_TIMEOUT);
    assert_non_null(strstr(c.msg, "no answer within 1000 ms"));
    assert_true(c.ms >= limit - 10 && c.ms < limit + 10000);
    /* The connection was dropped: the next call reconnects, within connect_ms. */
    c = query_call(eng, idle, "SELECT 1");
    call_within(&c, 30000);
    assert_int_equal(c.rc, DB_E_TIMEOUT);
    assert_non_null(strstr(c.msg, "cannot connect within 1000 ms"));
    assert_true(c.ms >= limit - 10 && c.ms < limit + 10000);
    /* Inside the transaction. */
    timed_call ct = { .eng = eng, .db = tx, .sql = "INSERT INTO stall_probe (k) VALUES ('b')" };
    call_within(&ct, 30000);
    assert_int_equal(ct.rc, DB_E_TIMEOUT);
    assert_non_null(strstr(ct.msg, "inside a transaction"));
    assert_true(ct.ms < limit + 10000);
    /* Through the store: STORE_ERR, promptly. */
    timed_call cs = { .s = s };
    call_within(&cs, 30000);
    assert_int_equal(cs.rc, STORE_ERR);
    assert_true(cs.ms < limit + 10000);
    pg_signal_all(SIGCONT);

    /* The rest of the lost transaction fails (nothing is sent for it); it
     * ends with ROLLBACK/COMMIT. */
    assert_int_equal(eng->exec(tx, "INSERT INTO stall_probe (k) VALUES (?)", pb, 1, NULL),
                     DB_E_CONN);
    assert_int_equal(eng->exec(tx, "COMMIT", NULL, 0, NULL), DB_E_CONN);
    assert_non_null(strstr(eng->errmsg(tx), "rolled back"));

    /* The deadlines were the point above.  From here on the server runs
     * again, and what is checked is that the handles work again and what
     * the lost transaction left, not how fast a just-resumed server takes a
     * new connection on a loaded machine (a reconnect once took over 1000
     * ms there).  A handle keeps the limits it was opened with: those of
     * the stall are tried until they answer, and the checks of the data
     * use handles opened now, with 30 s. */
    answers_again(eng, idle);
    answers_again(eng, tx);
    store_answers_again(s);
    store_close(s);
    eng->close(idle);
    eng->close(tx);
    db_set_limits(30000, 30000);
    idle = engine_open(f->url);
    tx = engine_open(f->url);
    s = open_ok(f->url);
    c = query_call(eng, idle, "SELECT COUNT(*) FROM stall_probe");
    call_within(&c, 60000);
    assert_int_equal(c.rc, DB_OK);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM stall_probe"), 0);
    assert_int_equal(eng->exec(tx, "INSERT INTO stall_probe (k) VALUES (?)", pb, 1, NULL), DB_OK);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM stall_probe"), 1);
    new_org(s, "after-the-stall");
    store_close(s);
    eng->close(idle);
    eng->close(tx);
}

/* Ends db's backend (pg_terminate_backend) and waits until the process has
 * exited: its socket is closed then, and db's next call reconnects. */
static void end_backend(const fixture *f, const db_engine *eng, db_t *db)
{
    db_result r;
    assert_int_equal(eng->query(db, "SELECT pg_backend_pid()", NULL, 0, &r), DB_OK);
    long pid = atol(db_cell(&r, 0, 0));
    db_result_free(&r);
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT COUNT(pg_terminate_backend(%ld))", pid);
    assert_int_equal(raw_int(f, sql), 1);
    long long end = ph_now_ms() + 30000;
    for (;;) {
        /* gone, or a zombie the postmaster has yet to reap (its files closed) */
        char path[64], buf[512];
        snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
        FILE *fp = fopen(path, "r");
        if (!fp)
            return;
        size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
        buf[n] = '\0';
        const char *rp = strrchr(buf, ')');
        char state;
        if (rp && sscanf(rp + 1, " %c", &state) == 1 && state == 'Z')
            return;
        if (ph_now_ms() > end)
            fail_msg("backend %ld did not exit within 30 s of pg_terminate_backend", pid);
        usleep(1000);
    }
}

/* Once a call could not reach the stopped server, the breaker shared by
 * every handle on that database lets one call at a time try it (here a
 * reconnect, bounded by connect_ms) and fails the others at once instead of
 * each waiting out a deadline; a statement inside a transaction that began
 * before the stall is not refused (its caller must learn how it ended);
 * once the server runs, an answer closes the breaker and every handle works
 * again. */
static void test_pg_breaker_fails_fast(void **state)
{
    fixture *f = *state;
    /* A long connect deadline keeps the probe's turn open while the test
     * makes the other calls, however loaded the machine (the tests' usual
     * 20 s: 8 s was a guess at "however loaded"). */
    const int statement_ms = 1000, connect_ms = 20000;
    db_set_limits(statement_ms, connect_ms);
    const db_engine *eng = &db_engine_postgres;
    db_t *a = engine_open(f->url), *b = engine_open(f->url), *tx = engine_open(f->url);
    store_t *s = open_ok(f->url);
    /* The probe's handle: once the server runs again, its SELECT 1 must
     * answer within the handle's statement limit, and 1000 ms was a bet on a
     * just-resumed server getting a CPU on a loaded machine.  30 s, and its
     * connection ended before the stall: its next call is a reconnect, as
     * a's would be after its timeout. */
    db_set_limits(30000, connect_ms);
    db_t *p = engine_open(f->url);
    end_backend(f, eng, p);
    breaker *br = breaker_get(BREAKER_STORE, f->url, "the database", 0); /* the handles' own breaker */
    assert_non_null(br);
    assert_false(breaker_is_open(br));
    assert_int_equal(
        eng->exec(a, "CREATE TABLE breaker_probe (k TEXT PRIMARY KEY)", NULL, 0, NULL), DB_OK);
    assert_int_equal(eng->exec(tx, "BEGIN", NULL, 0, NULL), DB_OK);
    assert_int_equal(eng->exec(tx, "INSERT INTO breaker_probe (k) VALUES ('a')", NULL, 0, NULL),
                     DB_OK);
    uint64_t fast0 = breaker_fast_failures(br);

    pg_signal_all(SIGSTOP);
    /* The first call waits out its deadline and opens the breaker. */
    timed_call c = query_call(eng, a, "SELECT 1");
    call_within(&c, 30000);
    assert_int_equal(c.rc, DB_E_TIMEOUT);
    assert_true(breaker_is_open(br));
    /* p's next call is the probe: a reconnect to the stopped server. */
    timed_call probe = query_call(eng, p, "SELECT 1");
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, timed_call_main, &probe), 0);
    long long t0 = ph_now_ms();
    while (!breaker_probing(br) && ph_now_ms() - t0 < 30000)
        usleep(1000);
    assert_true(breaker_probing(br));

    /* Meanwhile another handle and the store fail at once, not after a deadline. */
    c = query_call(eng, b, "SELECT 1");
    call_within(&c, 30000);
    assert_int_equal(c.rc, DB_E_CONN);
    assert_non_null(strstr(c.msg, "failing fast"));
    /* "failing fast" says the breaker refused it; the time only shows it
     * waited for no deadline (bounded by the longest, so that a test thread
     * waiting for a CPU cannot fail it). */
    assert_true(c.ms < connect_ms);
    timed_call cs = { .s = s };
    call_within(&cs, 30000);
    assert_int_equal(cs.rc, STORE_ERR);
    assert_non_null(strstr(cs.msg, "failing fast"));
    assert_true(cs.ms < connect_ms);
    assert_true(breaker_fast_failures(br) >= fast0 + 2);
    /* The transaction's statement is not refused: it waits its deadline. */
    timed_call ct = query_call(eng, tx, "INSERT INTO breaker_probe (k) VALUES ('b')");
    call_within(&ct, 30000);
    assert_int_equal(ct.rc, DB_E_TIMEOUT);
    assert_non_null(strstr(ct.msg, "inside a transaction"));
    assert_true(ct.ms >= statement_ms - 10);
    int probe_still_waiting = breaker_probing(br);

    pg_signal_all(SIGCONT);
    assert_int_equal(pthread_join(th, NULL), 0);
    /* Woken before its deadline, the probe connects and closes the breaker. */
    if (probe_still_waiting) {
        assert_int_equal(probe.rc, DB_OK);
        assert_false(breaker_is_open(br));
    }
    /* Either way the next call goes to the database and works (tried until
     * it does: the handles' 1000 ms may be short for a just-resumed server
     * on a loaded machine, and speed is not the point here). */
    answers_again(eng, b);
    assert_false(breaker_is_open(br));
    assert_int_equal(eng->exec(tx, "COMMIT", NULL, 0, NULL), DB_E_CONN);
    assert_non_null(strstr(eng->errmsg(tx), "rolled back"));
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM breaker_probe"), 0);
    store_answers_again(s);
    db_set_limits(30000, 30000);
    store_t *s2 = open_ok(f->url); /* 30 s: for the write, after the checks of the deadlines */
    new_org(s2, "after-the-breaker");
    store_close(s2);
    breaker_put(br);
    store_close(s);
    eng->close(a);
    eng->close(b);
    eng->close(tx);
    eng->close(p);
}

/* ---- operator listings and removals (aurora-server admin) -------------------------------- */

static void make_key(store_t *s, const char *org_id, const char *user_id, const char *name,
                     char hash[65], store_api_key *k)
{
    char key[API_KEY_LEN + 1], preview[TOKEN_PREVIEW_LEN];
    assert_int_equal(token_new_api_key(key), 0);
    token_hash(key, hash);
    token_preview(key, preview);
    if (store_api_key_create(s, org_id, user_id, name, hash, preview, k) != STORE_OK)
        fail_msg("api_key_create: %s", store_errmsg(s));
}

static void test_operator_lists(void **state)
{
    store_t *s = ((fixture *)*state)->s;
    store_org *orgs = NULL;
    size_t n = 99;
    assert_int_equal(store_org_list(s, &orgs, &n), STORE_OK);
    assert_int_equal(n, 0);
    assert_null(orgs);

    store_org a = new_org(s, "A"), b = new_org(s, "B");
    store_user ua = new_user(s, a.id, "a@example.com"), ub = new_user(s, b.id, "b@example.com");
    assert_int_equal(store_identity_provision(s, a.id, "backend-user-1", "backend", NULL), STORE_OK);
    assert_int_equal(store_identity_provision(s, "org-from-backend", NULL, "backend", NULL),
                     STORE_OK);

    /* Every org, oldest first, the provisioned one included. */
    assert_int_equal(store_org_list(s, &orgs, &n), STORE_OK);
    assert_int_equal(n, 3);
    assert_string_equal(orgs[0].id, a.id);
    assert_string_equal(orgs[0].name, "A");
    assert_string_equal(orgs[1].id, b.id);
    assert_string_equal(orgs[2].id, "org-from-backend");
    assert_string_equal(orgs[2].created_by, "backend");
    free(orgs);

    /* Members of one org only: the account and the backend's id. */
    store_member *m = NULL;
    assert_int_equal(store_member_list(s, a.id, &m, &n), STORE_OK);
    assert_int_equal(n, 2);
    assert_string_equal(m[0].user_id, ua.id);
    assert_string_equal(m[0].created_by, "admin");
    assert_string_equal(m[1].user_id, "backend-user-1");
    assert_string_equal(m[1].created_by, "backend");
    free(m);
    assert_int_equal(store_member_list(s, "org_nope", &m, &n), STORE_OK);
    assert_int_equal(n, 0);

    /* Keys: per org or all, revoked ones included, never the hash. */
    char h1[65], h2[65], h3[65];
    store_api_key k1, k2, k3, got;
    make_key(s, a.id, ua.id, "one", h1, &k1);
    make_key(s, a.id, ua.id, "two", h2, &k2);
    make_key(s, b.id, ub.id, "three", h3, &k3);
    assert_int_equal(store_api_key_revoke(s, a.id, k2.id, 1234), STORE_OK);
    store_api_key *keys = NULL;
    assert_int_equal(store_api_key_list(s, a.id, &keys, &n), STORE_OK);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(keys[i].org_id, a.id);
        assert_int_equal(keys[i].revoked_at, strcmp(keys[i].id, k2.id) == 0 ? 1234 : 0);
    }
    free(keys);
    assert_int_equal(store_api_key_list(s, NULL, &keys, &n), STORE_OK);
    assert_int_equal(n, 3);
    free(keys);

    /* get: any org, revoked or not. */
    assert_int_equal(store_api_key_get(s, k3.id, &got), STORE_OK);
    assert_string_equal(got.org_id, b.id);
    assert_string_equal(got.name, "three");
    assert_int_equal(store_api_key_get(s, k2.id, &got), STORE_OK);
    assert_int_equal(got.revoked_at, 1234);
    assert_int_equal(store_api_key_get(s, "key_nope", &got), STORE_NOT_FOUND);
}

static void test_user_remove(void **state)
{
    store_t *s = ((fixture *)*state)->s;
    store_org a = new_org(s, "A"), b = new_org(s, "B");
    store_user ua = new_user(s, a.id, "a@example.com");
    store_user keep = new_user(s, a.id, "keep@example.com");
    store_user ub = new_user(s, b.id, "b@example.com");
    char h1[65], h2[65], h3[65], h4[65];
    store_api_key k1, k2, k3, k4, got;
    make_key(s, a.id, ua.id, "one", h1, &k1);
    make_key(s, a.id, ua.id, "two", h2, &k2);
    make_key(s, a.id, keep.id, "kept", h3, &k3);
    make_key(s, b.id, ub.id, "other org", h4, &k4);

    /* Another org's user, and an unknown one: NOT_FOUND, nothing changes. */
    int keys = -1;
    assert_int_equal(store_user_remove(s, b.id, ua.id, &keys), STORE_NOT_FOUND);
    assert_int_equal(keys, 0);
    assert_int_equal(store_user_remove(s, a.id, "usr_nope", NULL), STORE_NOT_FOUND);
    assert_int_equal(store_api_key_lookup(s, h1, &got), STORE_OK);

    /* A user with a connector is refused, and keeps everything. */
    store_connector c = connector_for(a.id, ua.id, "gcp", "sa@p", NULL);
    assert_int_equal(store_connector_upsert(s, &c), STORE_OK);
    assert_int_equal(store_user_remove(s, a.id, ua.id, &keys), STORE_CONFLICT);
    assert_non_null(strstr(store_errmsg(s), "connector"));
    assert_int_equal(store_api_key_lookup(s, h1, &got), STORE_OK);
    store_user u;
    assert_int_equal(store_user_get(s, a.id, ua.id, &u), STORE_OK);
    assert_int_equal(store_connector_delete(s, a.id, ua.id, "gcp"), STORE_OK);

    /* An OAuth flow the user started (a console session, a key) and has not
     * finished: its callback must not store a connector for a removed user
     * (it would outlive them, and no removal could delete it again). */
    char sh[65], sk[65];
    state_hash_of("flow-of-removed-user", sh);
    state_hash_of("flow-of-kept-user", sk);
    store_oauth_state fl = state_for(a.id, ua.id, "gcp", (int64_t)time(NULL) + 600);
    assert_int_equal(store_oauth_state_create(s, sh, &fl), STORE_OK);
    fl = state_for(a.id, keep.id, "gcp", (int64_t)time(NULL) + 600);
    assert_int_equal(store_oauth_state_create(s, sk, &fl), STORE_OK);

    /* Removed: keys gone (lookups refuse them), account and membership gone. */
    assert_int_equal(store_user_remove(s, a.id, ua.id, &keys), STORE_OK);
    store_oauth_state taken;
    assert_int_equal(store_oauth_state_consume(s, sh, (int64_t)time(NULL), &taken), STORE_NOT_FOUND);
    assert_int_equal(store_oauth_state_consume(s, sk, (int64_t)time(NULL), &taken), STORE_OK);
    assert_int_equal(keys, 2);
    assert_int_equal(store_api_key_lookup(s, h1, &got), STORE_NOT_FOUND);
    assert_int_equal(store_api_key_lookup(s, h2, &got), STORE_NOT_FOUND);
    assert_int_equal(store_api_key_get(s, k1.id, &got), STORE_NOT_FOUND);
    assert_int_equal(store_user_get(s, a.id, ua.id, &u), STORE_NOT_FOUND);
    store_member m;
    assert_int_equal(store_member_get(s, a.id, ua.id, &m), STORE_NOT_FOUND);
    assert_int_equal(store_user_remove(s, a.id, ua.id, NULL), STORE_NOT_FOUND);
    /* Everyone else keeps theirs; the email can be used again. */
    assert_int_equal(store_api_key_lookup(s, h3, &got), STORE_OK);
    assert_int_equal(store_api_key_lookup(s, h4, &got), STORE_OK);
    new_user(s, a.id, "a@example.com");

    /* A member the trusted backend named (no account) is removed too. */
    assert_int_equal(store_identity_provision(s, a.id, "backend-user", "backend", NULL), STORE_OK);
    assert_int_equal(store_user_remove(s, a.id, "backend-user", &keys), STORE_OK);
    assert_int_equal(keys, 0);
    assert_int_equal(store_member_get(s, a.id, "backend-user", &m), STORE_NOT_FOUND);
}

static void test_org_delete(void **state)
{
    store_t *s = ((fixture *)*state)->s;
    store_org a = new_org(s, "A"), b = new_org(s, "B"), c = new_org(s, "C"), d = new_org(s, "D");
    store_user ua = new_user(s, a.id, "a@example.com");
    char h[65];
    store_api_key k, got;
    make_key(s, a.id, ua.id, "one", h, &k);
    assert_int_equal(store_identity_provision(s, a.id, "backend-user", "backend", NULL), STORE_OK);
    assert_int_equal(store_org_setting_create(s, a.id, "aws_external_id", "x"), STORE_OK);
    /* the backend user's console session (the membership alone backs it) */
    char sh[65];
    state_hash_of("console-session-of-a", sh);
    store_console_session cs;
    memset(&cs, 0, sizeof(cs));
    snprintf(cs.org_id, sizeof(cs.org_id), "%s", a.id);
    snprintf(cs.user_id, sizeof(cs.user_id), "backend-user");
    snprintf(cs.csrf_token, sizeof(cs.csrf_token), "t");
    int64_t now = (int64_t)time(NULL);
    cs.created_at = cs.last_seen_at = now;
    cs.expires_at = now + 3600;
    assert_int_equal(store_console_session_create(s, sh, &cs), STORE_OK);

    assert_int_equal(store_org_delete(s, "org_nope"), STORE_NOT_FOUND);

    /* An org with accounts only goes, with them. */
    assert_int_equal(store_org_delete(s, a.id), STORE_OK);
    store_org o;
    assert_int_equal(store_org_get(s, a.id, &o), STORE_NOT_FOUND);
    assert_int_equal(store_api_key_lookup(s, h, &got), STORE_NOT_FOUND);
    store_user u;
    assert_int_equal(store_user_get(s, a.id, ua.id, &u), STORE_NOT_FOUND);
    store_member m;
    assert_int_equal(store_member_get(s, a.id, "backend-user", &m), STORE_NOT_FOUND);
    char v[16];
    assert_int_equal(store_org_setting_get(s, a.id, "aws_external_id", v, sizeof(v)),
                     STORE_NOT_FOUND);
    /* its console sessions too: the backend naming the organization and
     * user again (a new membership) brought the old session back */
    assert_int_equal(store_identity_provision(s, a.id, "backend-user", "backend", NULL), STORE_OK);
    assert_int_equal(store_console_session_peek(s, sh, now + 1, 1800, &cs), STORE_NOT_FOUND);
    assert_int_equal(store_console_session_delete(s, sh), STORE_NOT_FOUND);
    assert_int_equal(store_org_delete(s, a.id), STORE_OK);

    /* A cluster (even a revoked token) keeps the org, and says so. */
    store_user ub = new_user(s, b.id, "b@example.com");
    made_token t = new_token(s, b.id, ub.id, NULL, "prod");
    assert_int_equal(store_agent_token_revoke(s, b.id, t.t.id, 0), STORE_OK);
    assert_int_equal(store_org_delete(s, b.id), STORE_CONFLICT);
    assert_non_null(strstr(store_errmsg(s), "clusters"));
    assert_int_equal(store_user_get(s, b.id, ub.id, &u), STORE_OK);

    /* Other data (an audit row here) keeps it too: nothing is deleted. */
    store_user uc = new_user(s, c.id, "c@example.com");
    store_audit row = audit_for(c.id, "[\"version\"]", 1000);
    assert_int_equal(store_audit_insert(s, &row), STORE_OK);
    assert_int_equal(store_org_delete(s, c.id), STORE_CONFLICT);
    assert_non_null(strstr(store_errmsg(s), "still holds data"));
    assert_int_equal(store_user_get(s, c.id, uc.id, &u), STORE_OK);
    assert_int_equal(store_org_get(s, c.id, &o), STORE_OK);

    /* The store still works after the refusals (no transaction left open). */
    assert_int_equal(store_org_delete(s, d.id), STORE_OK);
    new_org(s, "E");
}

/* ---- main -------------------------------------------------------------------------------------
 */

/* Each functional test once per backing: "memory/…", "file/…", "postgres/…". */
#define BOTH(t)                                                                                    \
    { "memory/" #t, t, setup_memory, teardown, NULL },                                             \
    { "file/" #t, t, setup_file, teardown, NULL },                                                 \
    {                                                                                              \
        "postgres/" #t, t, setup_pg, teardown, NULL                                                \
    }
/* Tests of a real database (not :memory:): "file/…" and "postgres/…". */
#define DURABLE(t)                                                                                 \
    { "file/" #t, t, setup_file, teardown, NULL },                                                 \
    {                                                                                              \
        "postgres/" #t, t, setup_pg, teardown, NULL                                                \
    }
#define PG(t)                                                                                      \
    {                                                                                              \
        "postgres/" #t, t, setup_pg, teardown, NULL                                                \
    }

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_schema_version),
        BOTH(test_org_create_get_first),
        BOTH(test_users),
        BOTH(test_backend_identities),
        BOTH(test_rate_counters),
        BOTH(test_api_keys),
        BOTH(test_agent_tokens),
        BOTH(test_agent_token_fields),
        BOTH(test_revoke_cluster),
        BOTH(test_tenant_scoping),
        BOTH(test_connection_counter),
        BOTH(test_connection_reset_list_delete),
        BOTH(test_connection_owner),
        BOTH(test_audit),
        BOTH(test_audit_query_and_prune),
        BOTH(test_audit_rewrite_argv),
        BOTH(test_audit_rewrite_passes_every_row),
        BOTH(test_audit_lifecycle),
        BOTH(test_audit_complete_many),
        DURABLE(test_audit_sweep),
        DURABLE(test_audit_upgrade_from_v2),
        DURABLE(test_identity_upgrade_from_v3),
        BOTH(test_operator_helpers),
        BOTH(test_connectors),
        BOTH(test_github_installations),
        BOTH(test_github_webhook_state),
        BOTH(test_webhook_tenant_stats),
        DURABLE(test_webhook_adopt_keys),
        DURABLE(test_webhook_sweep_reads_open_rows_only),
        DURABLE(test_webhook_upgrade_from_v17),
        BOTH(test_oauth_states),
        DURABLE(test_oauth_states_per_user_are_capped),
        BOTH(test_oauth_state_prune),
        BOTH(test_org_settings),
        DURABLE(test_oauth_state_race),
        DURABLE(test_console_upgrade_from_v19),
        cmocka_unit_test(test_migrations_reopen),
        cmocka_unit_test(test_relative_url),
        cmocka_unit_test(test_open_errors),
        DURABLE(test_newer_schema_refused),
        DURABLE(test_overlong_stored_value),
        DURABLE(test_concurrent_handles),
        PG(test_pg_migrations_reopen),
        cmocka_unit_test(test_pg_open_errors),
        cmocka_unit_test(test_pg_concurrent_first_open),
        PG(test_pg_restart_between_calls),
        PG(test_pg_restart_mid_transaction),
        PG(test_pg_inflight_statement),
        PG(test_pg_restart_under_load),
        { "memory/test_sqlite_statement_deadline", test_sqlite_statement_deadline, setup_memory,
          teardown, NULL },
        { "file/test_sqlite_statement_deadline", test_sqlite_statement_deadline, setup_file,
          teardown, NULL },
        { "file/test_sqlite_lock_deadline", test_sqlite_lock_deadline, setup_file, teardown,
          NULL },
        { "file/test_sqlite_writers_take_turns", test_sqlite_writers_take_turns, setup_file,
          teardown, NULL },
        { "file/test_sqlite_gate_wakes_waiters", test_sqlite_gate_wakes_waiters, setup_file,
          teardown, NULL },
        PG(test_pg_statement_timeout),
        PG(test_pg_stopped_server),
        PG(test_pg_breaker_fails_fast),
        BOTH(test_operator_lists),
        BOTH(test_user_remove),
        BOTH(test_org_delete),
    };
    return cmocka_run_group_tests_name("store", tests, store_place_group_setup,
                                       store_place_group_teardown);
}
