/* test_kit_secrets.c — the connector kit's credential storage
 * (kit_secrets.c) over the real local secrets backend and an in-memory
 * store: org-scoped paths (one user id in two organizations keeps two sets
 * of secrets), references only in the database, one credential at a time,
 * rows written before the paths became org-scoped still readable and
 * deleted, nothing outside the connection's folder deleted, a reconnect that
 * the backend fails half way leaves the previous connection whole (or marks
 * it needs_reconnect, never a silent mix of old and new fields). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "connector.h"
#include "kit_secrets.h"
#include "secrets.h"
#include "store.h"

typedef struct {
    char dir[64];
    store_t *st;
    secrets_t *sec;
    worker_ctx w;
    store_org a, b;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    char err[512];
    snprintf(f->dir, sizeof(f->dir), "/tmp/aurora-kit-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    secrets_config cfg = { .backend = "local", .data_dir = f->dir };
    assert_int_equal(secrets_open(&cfg, &f->sec, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(store_open(":memory:", &f->st, err, sizeof(err)), STORE_OK);
    assert_int_equal(store_org_create(f->st, "org a", &f->a), STORE_OK);
    assert_int_equal(store_org_create(f->st, "org b", &f->b), STORE_OK);
    f->w.store = f->st;
    f->w.secrets = f->sec;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    store_close(f->st);
    secrets_close(f->sec);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static auth_ctx who(const char *org, const char *user)
{
    auth_ctx a = { .authenticated = 1 };
    snprintf(a.org_id, sizeof(a.org_id), "%s", org);
    snprintf(a.user_id, sizeof(a.user_id), "%s", user);
    return a;
}

static void expect_secret(fx *f, const char *path, const char *want)
{
    unsigned char *v = NULL;
    size_t n = 0;
    char err[512];
    int rc = secrets_get(f->sec, path, &v, &n, err, sizeof(err));
    if (!want) {
        assert_int_equal(rc, SECRETS_NOT_FOUND);
        return;
    }
    assert_int_equal(rc, SECRETS_OK);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(v, want, n);
    secrets_free(v, n);
}

static void connect(fx *f, const char *org, const char *user, const char *field, const char *val)
{
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    cJSON *md = cJSON_CreateObject();
    cJSON_AddStringToObject(md, "auth", field);
    kit_field fl = { field, val };
    int rc = kit_connect_store(&f->w, org, user, "demo", "acct", &fl, 1, md, &resp);
    if (rc != 0)
        fail_msg("kit_connect_store: %.*s", (int)buf_pending(&resp.body), buf_head(&resp.body));
    buf_free(&resp.body);
    cJSON_Delete(md);
}

static void test_paths_are_org_scoped(void **state)
{
    (void)state;
    char p[SECRETS_MAX_PATH + 1], q[SECRETS_MAX_PATH + 1];
    assert_int_equal(secrets_user_path(p, sizeof(p), "org_a", "usr_1", "github", "token"), 0);
    assert_string_equal(p, "aurora/orgs/org_a/users/usr_1/github/token");
    assert_int_equal(secrets_user_path(q, sizeof(q), "org_b", "usr_1", "github", "token"), 0);
    assert_string_not_equal(p, q);
    assert_int_equal(secrets_user_prefix(p, sizeof(p), "org_a", "usr_1", "github"), 0);
    assert_string_equal(p, "aurora/orgs/org_a/users/usr_1/github/");
    /* each part one segment, none empty or climbing */
    assert_int_equal(secrets_user_path(p, sizeof(p), "org_a/../org_b", "usr_1", "g", "t"), -1);
    assert_int_equal(secrets_user_path(p, sizeof(p), "org_a", "..", "g", "t"), -1);
    assert_int_equal(secrets_user_path(p, sizeof(p), "", "usr_1", "g", "t"), -1);
    assert_int_equal(secrets_user_path(p, sizeof(p), "org_a", "usr_1", "g", ""), -1);
    assert_int_equal(secrets_user_path(p, sizeof(p), "org a", "usr_1", "g", "t"), -1);
    assert_int_equal(secrets_user_path(p, 20, "org_a", "usr_1", "g", "t"), -1);
    assert_int_equal(secrets_user_prefix(p, sizeof(p), "org_a", "usr/1", "g"), -1);
}

/* The same user id in two organizations: two connections, two secrets;
 * disconnecting in one leaves the other. */
static void test_same_user_in_two_orgs(void **state)
{
    fx *f = *state;
    connect(f, f->a.id, "usr_shared", "api-key", "key-in-a");
    connect(f, f->b.id, "usr_shared", "api-key", "key-in-b");
    char pa[SECRETS_MAX_PATH + 1], pb[SECRETS_MAX_PATH + 1];
    secrets_user_path(pa, sizeof(pa), f->a.id, "usr_shared", "demo", "api-key");
    secrets_user_path(pb, sizeof(pb), f->b.id, "usr_shared", "demo", "api-key");
    expect_secret(f, pa, "key-in-a");
    expect_secret(f, pb, "key-in-b");
    /* the rows hold references only */
    store_connector ra, rb;
    assert_int_equal(store_connector_get(f->st, f->a.id, "usr_shared", "demo", &ra), STORE_OK);
    assert_int_equal(store_connector_get(f->st, f->b.id, "usr_shared", "demo", &rb), STORE_OK);
    char want[600];
    snprintf(want, sizeof(want), "local:%s", pa);
    assert_string_equal(ra.secret_ref, want);
    assert_null(strstr(ra.metadata_json, "key-in-a"));
    assert_non_null(strstr(ra.metadata_json, "\"secret_refs\""));
    assert_string_not_equal(ra.secret_ref, rb.secret_ref);
    /* read back through the reference */
    unsigned char *v;
    size_t n;
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    assert_int_equal(kit_secret_get(&f->w, rb.secret_ref, &v, &n, 404, "X", "gone", &resp), 0);
    assert_memory_equal(v, "key-in-b", n);
    secrets_free(v, n);
    /* disconnect in org a */
    auth_ctx wa = who(f->a.id, "usr_shared");
    assert_int_equal(kit_secrets_delete_connection(&f->w, &wa, "demo", &ra, &resp), 0);
    expect_secret(f, pa, NULL);
    expect_secret(f, pb, "key-in-b");
    assert_int_equal(kit_secret_get(&f->w, ra.secret_ref, &v, &n, 404, "GONE", "connect again",
                                    &resp),
                     -1);
    assert_int_equal(resp.status, 404);
    buf_free(&resp.body);
    store_connector_free(&ra);
    store_connector_free(&rb);
}

/* A client secret replaces a refresh token and the reverse. */
static void test_one_credential_at_a_time(void **state)
{
    fx *f = *state;
    connect(f, f->a.id, "usr_2", "client-secret", "cs");
    connect(f, f->a.id, "usr_2", "refresh-token", "rt");
    char prefix[SECRETS_MAX_PATH + 1], err[256];
    secrets_user_prefix(prefix, sizeof(prefix), f->a.id, "usr_2", "demo");
    char **paths;
    size_t n;
    assert_int_equal(secrets_list(f->sec, prefix, &paths, &n, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(n, 1);
    assert_non_null(strstr(paths[0], "/refresh-token"));
    secrets_list_free(paths, n);
}

/* Rows written before issue 10 name aurora/users/<user>/<connector>/…: still
 * read through their reference, replaced and deleted with the connection;
 * a reference outside the user's folder is never deleted. */
static void test_legacy_rows(void **state)
{
    fx *f = *state;
    char err[256];
    const char *old = "aurora/users/usr_3/demo/api-key";
    const char *foreign = "aurora/users/usr_9/demo/api-key";
    assert_int_equal(secrets_put(f->sec, old, "old-key", 7, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(secrets_put(f->sec, foreign, "not-mine", 8, err, sizeof(err)), SECRETS_OK);
    store_connector row = { 0 };
    snprintf(row.org_id, sizeof(row.org_id), "%s", f->a.id);
    snprintf(row.user_id, sizeof(row.user_id), "usr_3");
    snprintf(row.connector, sizeof(row.connector), "demo");
    snprintf(row.secret_ref, sizeof(row.secret_ref), "local:%s", old);
    row.metadata_json = strdup("{\"secret_refs\":{\"x\":\"local:aurora/users/usr_9/demo/api-key\"}}");
    assert_int_equal(store_connector_upsert(f->st, &row), STORE_OK);
    unsigned char *v;
    size_t n;
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    assert_int_equal(kit_secret_get(&f->w, row.secret_ref, &v, &n, 404, "X", "gone", &resp), 0);
    assert_memory_equal(v, "old-key", 7);
    secrets_free(v, n);
    auth_ctx w3 = who(f->a.id, "usr_3");
    assert_int_equal(kit_secrets_delete_connection(&f->w, &w3, "demo", &row, &resp), 0);
    expect_secret(f, old, NULL);
    expect_secret(f, foreign, "not-mine");
    /* reconnecting replaces a legacy secret too */
    assert_int_equal(secrets_put(f->sec, old, "old-key", 7, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(store_connector_upsert(f->st, &row), STORE_OK);
    connect(f, f->a.id, "usr_3", "api-key", "new-key");
    expect_secret(f, old, NULL);
    expect_secret(f, foreign, "not-mine");
    buf_free(&resp.body);
    store_connector_free(&row);
}

/* A rotated value goes where the reference points. */
static void test_replace_and_rows(void **state)
{
    fx *f = *state;
    connect(f, f->b.id, "usr_4", "refresh-token", "rt-1");
    auth_ctx w4 = who(f->b.id, "usr_4");
    store_connector row;
    cJSON *md;
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    assert_int_equal(kit_row_load(&f->w, &w4, "demo", &row, &md, "not connected", &resp), 0);
    char err[256];
    assert_int_equal(kit_secret_replace(&f->w, row.secret_ref, "rt-2", err, sizeof(err)), SECRETS_OK);
    char p[SECRETS_MAX_PATH + 1];
    secrets_user_path(p, sizeof(p), f->b.id, "usr_4", "demo", "refresh-token");
    expect_secret(f, p, "rt-2");
    /* status: the common fields, never a secret */
    cJSON *out = cJSON_CreateObject();
    store_connector r2;
    cJSON *md2;
    static const char *const keys[] = { "auth", NULL };
    assert_int_equal(kit_status(&f->w, &w4, "demo", keys, out, &r2, &md2), 1);
    char *text = cJSON_PrintUnformatted(out);
    assert_non_null(strstr(text, "\"connected\":true"));
    assert_non_null(strstr(text, "\"auth\":\"refresh-token\""));
    assert_null(strstr(text, "rt-2"));
    free(text);
    cJSON_Delete(out);
    cJSON_Delete(md2);
    store_connector_free(&r2);
    /* nothing connected: 404 MISSING_CONNECTOR */
    auth_ctx nobody = who(f->b.id, "usr_none");
    cJSON *md3;
    store_connector r3;
    assert_int_equal(kit_row_load(&f->w, &nobody, "demo", &r3, &md3, "demo is not connected", &resp),
                     -1);
    assert_int_equal(resp.status, 404);
    assert_non_null(strstr(buf_head(&resp.body), "MISSING_CONNECTOR"));
    buf_free(&resp.body);
    /* metadata saved onto the loaded row (a refresh's expiry) */
    cJSON_AddNumberToObject(md, "access_token_expires_at", 1234);
    memset(&resp, 0, sizeof(resp));
    assert_int_equal(kit_row_save_meta(&f->w, &row, md, &resp), 0);
    store_connector r4;
    assert_int_equal(store_connector_get(f->w.store, f->b.id, "usr_4", "demo", &r4), STORE_OK);
    assert_non_null(strstr(r4.metadata_json, "\"access_token_expires_at\":1234"));
    assert_string_equal(r4.secret_ref, row.secret_ref);
    store_connector_free(&r4);
    /* disconnected meanwhile: the save does not bring the row back */
    assert_int_equal(store_connector_delete(f->w.store, f->b.id, "usr_4", "demo"), STORE_OK);
    assert_int_equal(kit_row_save_meta(&f->w, &row, md, &resp), -1);
    assert_int_equal(resp.status, 404);
    buf_free(&resp.body);
    assert_int_equal(store_connector_get(f->w.store, f->b.id, "usr_4", "demo", &r4), STORE_NOT_FOUND);
    cJSON_Delete(md);
    store_connector_free(&row);
}

/* ---- a backend that fails some writes ------------------------------------------- */

/* Runs sql on the local backend's own SQLite file, beside the handle the
 * kit uses: triggers that refuse chosen writes are how a test makes "the
 * second put fails" happen (RAISE gives the kit a backend error, 503). */
static void backend_sql(fx *f, const char *sql)
{
    char db[128];
    sqlite3 *h = NULL;
    snprintf(db, sizeof(db), "%s/secrets.db", f->dir);
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(h, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : "?");
    sqlite3_close(h);
}

/* A two-field connect (Datadog's api-key + app-key); returns the status
 * (200 on success). */
static int connect2(fx *f, const char *user, const char *account, const char *f1, const char *v1,
                    const char *f2, const char *v2)
{
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    cJSON *md = cJSON_CreateObject();
    cJSON_AddStringToObject(md, "site", account);
    kit_field fl[2] = { { f1, v1 }, { f2, v2 } };
    int rc = kit_connect_store(&f->w, f->a.id, user, "demo", account, fl, 2, md, &resp);
    int status = rc == 0 ? 200 : resp.status;
    assert_true(rc == 0 || status >= 400);
    buf_free(&resp.body);
    cJSON_Delete(md);
    return status;
}

/* The value the row's metadata secret_refs names for field. */
static void expect_field(fx *f, const store_connector *row, const char *field, const char *want)
{
    cJSON *md = cJSON_Parse(row->metadata_json);
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(md, "secret_refs"), field);
    assert_true(cJSON_IsString(ref));
    char be[32];
    const char *path = NULL;
    assert_int_equal(secrets_ref_parse(ref->valuestring, be, sizeof(be), &path), 0);
    expect_secret(f, path, want);
    cJSON_Delete(md);
}

/* The reconnect of the tests below: new keys, new account. */
static int reconnect_new(fx *f, const char *user)
{
    return connect2(f, user, "new.site", "api-key", "new-api-key-2", "app-key", "new-app-key-2");
}

/* user's row is that new connection, whole and active. */
static void expect_new(fx *f, const char *user)
{
    store_connector row;
    assert_int_equal(store_connector_get(f->st, f->a.id, user, "demo", &row), STORE_OK);
    assert_string_equal(row.status, "active");
    assert_string_equal(row.account, "new.site");
    expect_field(f, &row, "api-key", "new-api-key-2");
    expect_field(f, &row, "app-key", "new-app-key-2");
    store_connector_free(&row);
}

/* The backend refuses every write over the app-key (not the first one). */
#define REFUSE_APP_UPDATE                                                                       \
    "CREATE TRIGGER refuse_app BEFORE UPDATE ON secrets WHEN OLD.path LIKE '%/demo/app-key'"  \
    " BEGIN SELECT RAISE(ABORT, 'injected: backend gone'); END;"

/* Re-connecting with new keys while the backend refuses the second write
 * (a Vault that goes away mid-request): 503, and the previous connection
 * is exactly as it was — its row and both its keys — not the new api-key
 * beside the old app-key. */
static void test_reconnect_second_put_fails_keeps_old(void **state)
{
    fx *f = *state;
    assert_int_equal(connect2(f, "usr_5", "old.site", "api-key", "old-api", "app-key", "old-app"),
                     200);
    backend_sql(f, REFUSE_APP_UPDATE);
    assert_int_equal(reconnect_new(f, "usr_5"), 503);
    store_connector row;
    assert_int_equal(store_connector_get(f->st, f->a.id, "usr_5", "demo", &row), STORE_OK);
    assert_string_equal(row.status, "active");
    assert_string_equal(row.account, "old.site");
    expect_field(f, &row, "api-key", "old-api");
    expect_field(f, &row, "app-key", "old-app");
    store_connector_free(&row);
    /* the backend back: the reconnect goes through whole */
    backend_sql(f, "DROP TRIGGER refuse_app;");
    assert_int_equal(reconnect_new(f, "usr_5"), 200);
    expect_new(f, "usr_5");
}

/* The same, and putting the first key back fails too: the connection can
 * no longer be what it was, so it says so (status needs_reconnect, not
 * connected) instead of pairing the new api-key with the old app-key. */
static void test_reconnect_unrestorable_marks_row(void **state)
{
    fx *f = *state;
    assert_int_equal(connect2(f, "usr_6", "old.site", "api-key", "old-api", "app-key", "old-app"),
                     200);
    /* the app-key write fails; so does writing "old-api" (7 bytes, 16 of
     * GCM tag) back over the new api-key */
    backend_sql(f, REFUSE_APP_UPDATE
                   "CREATE TRIGGER refuse_restore BEFORE UPDATE ON secrets"
                   " WHEN OLD.path LIKE '%/demo/api-key' AND length(NEW.ciphertext) = 7 + 16"
                   " BEGIN SELECT RAISE(ABORT, 'injected: backend gone'); END;");
    assert_int_equal(reconnect_new(f, "usr_6"), 503);
    store_connector row;
    assert_int_equal(store_connector_get(f->st, f->a.id, "usr_6", "demo", &row), STORE_OK);
    assert_string_equal(row.status, "needs_reconnect");
    store_connector_free(&row);
    auth_ctx w6 = who(f->a.id, "usr_6");
    cJSON *md;
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    assert_int_equal(kit_row_load(&f->w, &w6, "demo", &row, &md, "demo is not connected", &resp),
                     -1);
    assert_int_equal(resp.status, 404);
    buf_free(&resp.body);
    cJSON *out = cJSON_CreateObject();
    assert_int_equal(kit_status(&f->w, &w6, "demo", NULL, out, &row, &md), 1);
    char *text = cJSON_PrintUnformatted(out);
    assert_non_null(strstr(text, "\"connected\":false"));
    assert_non_null(strstr(text, "\"status\":\"needs_reconnect\""));
    free(text);
    cJSON_Delete(out);
    cJSON_Delete(md);
    store_connector_free(&row);
    /* connecting again mends it */
    backend_sql(f, "DROP TRIGGER refuse_app; DROP TRIGGER refuse_restore;");
    assert_int_equal(reconnect_new(f, "usr_6"), 200);
    expect_new(f, "usr_6");
}

/* A first connect that fails half way leaves no row and no secret. */
static void test_first_connect_fails_leaves_nothing(void **state)
{
    fx *f = *state;
    backend_sql(f, "CREATE TRIGGER refuse_app BEFORE INSERT ON secrets"
                   " WHEN NEW.path LIKE '%/demo/app-key'"
                   " BEGIN SELECT RAISE(ABORT, 'injected: backend gone'); END;");
    assert_int_equal(connect2(f, "usr_7", "a.site", "api-key", "api", "app-key", "app"), 503);
    store_connector row;
    assert_int_equal(store_connector_get(f->st, f->a.id, "usr_7", "demo", &row), STORE_NOT_FOUND);
    char prefix[SECRETS_MAX_PATH + 1], err[256];
    secrets_user_prefix(prefix, sizeof(prefix), f->a.id, "usr_7", "demo");
    char **paths;
    size_t n;
    assert_int_equal(secrets_list(f->sec, prefix, &paths, &n, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(n, 0);
    secrets_list_free(paths, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_are_org_scoped),
        cmocka_unit_test_setup_teardown(test_same_user_in_two_orgs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_credential_at_a_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_and_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_second_put_fails_keeps_old, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_unrestorable_marks_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_connect_fails_leaves_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
