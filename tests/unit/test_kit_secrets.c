/* test_kit_secrets.c — the connector kit's credential storage
 * (kit_secrets.c) over the real local secrets backend and an in-memory
 * store: org-scoped paths (one user id in two organizations keeps two sets
 * of secrets), references only in the database, one credential at a time,
 * rows written before the paths became org-scoped still readable and
 * deleted, nothing outside the connection's folder deleted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_are_org_scoped),
        cmocka_unit_test_setup_teardown(test_same_user_in_two_orgs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_credential_at_a_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_and_rows, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
