/* test_kit_tenant.c — which organization a per-user webhook URL belongs to
 * (server/connectors/kit_tenant.c), against a real SQLite store: the rules
 * of kit_tenant.h one by one, and the answers a hostile URL gets. */
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

#include "http.h"
#include "kit_tenant.h"
#include "server_config.h"
#include "store.h"

typedef struct {
    char dir[64];
    char path[96];
    store_t *st;
    server_config cfg;
    worker_ctx w;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/aurora-tenant-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/store.db", f->dir);
    char err[256];
    if (store_open(f->path, &f->st, err, sizeof(err)) != STORE_OK)
        fail_msg("store_open: %s", err);
    f->w.store = f->st;
    f->w.cfg = &f->cfg;
    /* alice: member of acme only; bob: member of acme and globex. */
    assert_int_equal(store_identity_provision(f->st, "acme", "alice", "backend", NULL), STORE_OK);
    assert_int_equal(store_identity_provision(f->st, "acme", "bob", "backend", NULL), STORE_OK);
    assert_int_equal(store_identity_provision(f->st, "globex", "bob", "backend", NULL), STORE_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    store_close(f->st);
    char p[128];
    const char *files[] = { "store.db", "store.db-wal", "store.db-shm" };
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s/%s", f->dir, files[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static void add_row(fx *f, const char *org, const char *user, const char *status)
{
    store_connector c;
    memset(&c, 0, sizeof(c));
    snprintf(c.org_id, sizeof(c.org_id), "%s", org);
    snprintf(c.user_id, sizeof(c.user_id), "%s", user);
    snprintf(c.connector, sizeof(c.connector), "grafana");
    snprintf(c.status, sizeof(c.status), "%s", status);
    c.metadata_json = "{}";
    assert_int_equal(store_connector_upsert(f->st, &c), STORE_OK);
}

/* Resolves user (query: "org_id=…" or NULL); returns the status code (0 on
 * success) and the error_code in code. */
static int resolve(fx *f, const char *user, const char *query, kit_tenant_need need,
                   kit_tenant *out, char *code, size_t codecap)
{
    http_request req;
    http_response resp;
    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    char args[512];
    if (query) {
        snprintf(args, sizeof(args), "%s", query);
        req.query = args;
        req.query_len = strlen(args) + 1;
    }
    int rc = kit_tenant_resolve(&f->w, "grafana", &req, user, need, NULL, out, &resp);
    int status = 0;
    code[0] = 0;
    if (rc < 0) {
        status = resp.status;
        cJSON *j = cJSON_ParseWithLength(buf_head(&resp.body), buf_pending(&resp.body));
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "error_code");
        snprintf(code, codecap, "%s", cJSON_IsString(c) ? c->valuestring : "");
        cJSON_Delete(j);
    }
    buf_free(&resp.body);
    return status;
}

static void member_without_row_connects_on_first_delivery(void **state)
{
    fx *f = *state;
    kit_tenant t;
    char code[64];
    assert_int_equal(resolve(f, "alice", NULL, KIT_TENANT_MEMBER, &t, code, sizeof(code)), 0);
    assert_string_equal(t.org_id, "acme");
    assert_string_equal(t.user_id, "alice");
    assert_int_equal(t.has_row, 0);
    assert_int_equal(t.connected, 0);
    /* The same user without a row is not connected: a connected-only
     * connector answers 404. */
    assert_int_equal(resolve(f, "alice", NULL, KIT_TENANT_CONNECTED, &t, code, sizeof(code)),
                     404);
    assert_string_equal(code, "USER_NOT_FOUND");
}

static void active_row_picks_its_org(void **state)
{
    fx *f = *state;
    add_row(f, "globex", "bob", "active");
    kit_tenant t;
    char code[64];
    /* bob is in two orgs, but connected in one: that one. */
    assert_int_equal(resolve(f, "bob", NULL, KIT_TENANT_CONNECTED, &t, code, sizeof(code)), 0);
    assert_string_equal(t.org_id, "globex");
    assert_int_equal(t.connected, 1);
    assert_int_equal(resolve(f, "bob", NULL, KIT_TENANT_MEMBER, &t, code, sizeof(code)), 0);
    assert_string_equal(t.org_id, "globex");
}

static void several_orgs_need_the_query(void **state)
{
    fx *f = *state;
    kit_tenant t;
    char code[64];
    assert_int_equal(resolve(f, "bob", NULL, KIT_TENANT_MEMBER, &t, code, sizeof(code)), 409);
    assert_string_equal(code, "AMBIGUOUS_TENANT");
    assert_int_equal(resolve(f, "bob", "org_id=globex", KIT_TENANT_MEMBER, &t, code, sizeof(code)),
                     0);
    assert_string_equal(t.org_id, "globex");
    /* Connected in both: still ambiguous without the query. */
    add_row(f, "acme", "bob", "active");
    add_row(f, "globex", "bob", "active");
    assert_int_equal(resolve(f, "bob", NULL, KIT_TENANT_CONNECTED, &t, code, sizeof(code)), 409);
    assert_int_equal(resolve(f, "bob", "org_id=acme", KIT_TENANT_CONNECTED, &t, code, sizeof(code)),
                     0);
    assert_string_equal(t.org_id, "acme");
}

static void disabled_row_pins_the_org(void **state)
{
    fx *f = *state;
    /* bob disconnected Grafana in globex: a delivery must not connect him in
     * acme instead; the connector sees the row and refuses. */
    add_row(f, "globex", "bob", "disabled");
    kit_tenant t;
    char code[64];
    assert_int_equal(resolve(f, "bob", NULL, KIT_TENANT_MEMBER, &t, code, sizeof(code)), 0);
    assert_string_equal(t.org_id, "globex");
    assert_int_equal(t.has_row, 1);
    assert_int_equal(t.connected, 0);
    assert_int_equal(resolve(f, "bob", NULL, KIT_TENANT_CONNECTED, &t, code, sizeof(code)), 404);
}

static void hostile_ids_are_refused(void **state)
{
    fx *f = *state;
    kit_tenant t;
    char code[64];
    assert_int_equal(resolve(f, "nobody", NULL, KIT_TENANT_MEMBER, &t, code, sizeof(code)), 404);
    assert_int_equal(resolve(f, "a/b", NULL, KIT_TENANT_MEMBER, &t, code, sizeof(code)), 400);
    assert_string_equal(code, "INVALID_USER_ID");
    assert_int_equal(resolve(f, "", NULL, KIT_TENANT_MEMBER, &t, code, sizeof(code)), 400);
    char longid[80];
    memset(longid, 'a', 65);
    longid[65] = 0;
    assert_int_equal(resolve(f, longid, NULL, KIT_TENANT_MEMBER, &t, code, sizeof(code)), 400);
    /* An org the user is not a member of: the same 404 as an unknown user. */
    assert_int_equal(resolve(f, "alice", "org_id=globex", KIT_TENANT_MEMBER, &t, code,
                             sizeof(code)),
                     404);
    assert_int_equal(resolve(f, "alice", "org_id=ac%me", KIT_TENANT_MEMBER, &t, code, sizeof(code)),
                     400);
    assert_string_equal(code, "INVALID_ORG_ID");
    /* A value longer than an id is refused, never cut to a valid prefix. */
    char q[300] = "org_id=";
    memset(q + 7, 'a', 250);
    q[257] = 0;
    assert_int_equal(resolve(f, "alice", q, KIT_TENANT_MEMBER, &t, code, sizeof(code)), 400);
}

static void store_user_orgs_bounds(void **state)
{
    fx *f = *state;
    char orgs[1][STORE_ID_LEN];
    size_t n = 9;
    assert_int_equal(store_user_orgs(f->st, "bob", NULL, 0, orgs, 1, &n), STORE_OK);
    assert_int_equal(n, 1);
    assert_string_equal(orgs[0], "acme");
    assert_int_equal(store_user_orgs(f->st, "bob", NULL, 0, orgs, 0, &n), STORE_ERR);
    assert_int_equal(store_user_orgs(f->st, "", NULL, 0, orgs, 1, &n), STORE_ERR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(member_without_row_connects_on_first_delivery, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(active_row_picks_its_org, setup, teardown),
        cmocka_unit_test_setup_teardown(several_orgs_need_the_query, setup, teardown),
        cmocka_unit_test_setup_teardown(disabled_row_pins_the_org, setup, teardown),
        cmocka_unit_test_setup_teardown(hostile_ids_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(store_user_orgs_bounds, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
