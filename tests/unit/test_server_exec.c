/* test_server_exec.c — admission of commands (server/exec.c, exec_admit)
 * through an exec_ctx of its own, on a worker context built by the test and
 * a real SQLite store: the spec is tied to the context, a slot of the
 * cluster is taken and the "started" audit row written before anything is
 * sent; a full cluster is refused (429 CLUSTER_BUSY, audited as
 * cluster_busy) until a spec is freed; a store that cannot write the row
 * refuses the command (503 AUDIT_UNAVAILABLE) and keeps no slot; two
 * contexts count apart; a draining context (server shutdown) refuses new
 * commands with 503 SERVER_SHUTTING_DOWN.  Running a command (exec_start) needs an HTTP
 * transaction and an agent: tests/integration covers it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exec.h"
#include "free_watch.h"
#include "http.h"
#include "log.h"
#include "store.h"
#include "tunnel.h" /* EC_SERVER_SHUTTING_DOWN */

typedef struct {
    char dir[64];
    char path[128];
    char url[160];
    server_config cfg;
    store_t *st;
    char org_id[STORE_ID_LEN];
    exec_ctx *x;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/aurora-exec-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->path, sizeof(fx->path), "%s/e.db", fx->dir);
    snprintf(fx->url, sizeof(fx->url), "sqlite://%s", fx->path);
    char err[256] = "";
    if (store_open(fx->url, &fx->st, err, sizeof(err)) != STORE_OK)
        fail_msg("store_open: %s", err);
    store_org o;
    assert_int_equal(store_org_create(fx->st, "acme", &o), STORE_OK);
    snprintf(fx->org_id, sizeof(fx->org_id), "%s", o.id);
    fx->cfg.output_budget = 1 << 20;
    fx->cfg.org_output_budget = 1 << 19;
    fx->cfg.max_per_cluster = 2;
    fx->x = exec_ctx_new(&fx->cfg, NULL, NULL);
    assert_non_null(fx->x);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    exec_ctx_free(fx->x);
    store_close(fx->st);
    static const char *const names[] = { "e.db", "e.db-wal", "e.db-shm" };
    char p[160];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", fx->dir, names[i]);
        unlink(p);
    }
    rmdir(fx->dir);
    free(fx);
    return 0;
}

static exec_spec *spec_new(const fixture *fx, const char *cluster, const char *program)
{
    exec_spec *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    snprintf(e->org_id, sizeof(e->org_id), "%s", fx->org_id);
    snprintf(e->user_id, sizeof(e->user_id), "usr_1");
    snprintf(e->cluster_id, sizeof(e->cluster_id), "%s", cluster);
    snprintf(e->kind, sizeof(e->kind), "%s", program ? "cloud_exec" : "kubectl");
    if (program)
        snprintf(e->program, sizeof(e->program), "%s", program);
    static const char *const args[] = { "get", "pods" };
    char err[64];
    assert_int_equal(argv_from_strings(args, 2, &e->argv, err, sizeof(err)), 0);
    e->timeout = 30;
    e->max_output = 1024;
    return e;
}

static int commands_of(exec_ctx *x, const char *org_id, const char *cluster)
{
    exec_usage u;
    exec_cluster_usage cl[8];
    size_t n = 0;
    exec_limits_usage(exec_ctx_limits(x), org_id, &u, cl, 8, &n);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(cl[i].cluster_id, cluster))
            return cl[i].commands;
    return 0;
}

/* The newest audit rows of the org, newest first (free with
 * store_audit_list_free). */
static store_audit *audit_rows(fixture *fx, size_t *n)
{
    store_audit *rows = NULL;
    assert_int_equal(store_audit_list(fx->st, fx->org_id, 50, &rows, n), STORE_OK);
    return rows;
}

static void test_admit_slot_and_started_row(void **state)
{
    fixture *fx = *state;
    worker_ctx w = { .store = fx->st, .cfg = &fx->cfg, .exec = fx->x };
    http_response resp = { 0 };
    exec_spec *e1 = spec_new(fx, "cluster-a", NULL), *e2 = spec_new(fx, "cluster-a", "aws");
    assert_int_equal(exec_admit(&w, e1, &resp), 0);
    assert_int_equal(exec_admit(&w, e2, &resp), 0);
    assert_int_equal(resp.status, 0); /* nothing filled */
    assert_ptr_equal(e1->ctx, fx->x);
    assert_true(e1->slot.held && e2->slot.held);
    assert_true(e1->audit_id > 0 && e2->audit_id > e1->audit_id);
    assert_int_equal(commands_of(fx->x, fx->org_id, "cluster-a"), 2);
    size_t n = 0;
    store_audit *rows = audit_rows(fx, &n);
    assert_int_equal(n, 2);
    assert_string_equal(rows[0].outcome, "started");
    assert_string_equal(rows[0].argv_json, "[\"aws\",\"get\",\"pods\"]");
    assert_string_equal(rows[1].outcome, "started");
    assert_string_equal(rows[1].argv_json, "[\"kubectl\",\"get\",\"pods\"]");
    assert_int_equal(rows[1].id, e1->audit_id);
    store_audit_list_free(rows, n);

    /* The cluster is full: refused, audited, nothing held. */
    exec_spec *e3 = spec_new(fx, "cluster-a", NULL);
    assert_int_equal(exec_admit(&w, e3, &resp), -1);
    assert_int_equal(resp.status, 429);
    assert_non_null(strstr(buf_head(&resp.body), EC_CLUSTER_BUSY));
    assert_non_null(strstr(buf_head(&resp.body), "AURORA_EXEC_MAX_PER_CLUSTER"));
    assert_false(e3->slot.held);
    assert_int_equal(e3->audit_id, 0);
    rows = audit_rows(fx, &n);
    assert_int_equal(n, 3);
    assert_string_equal(rows[0].outcome, "cluster_busy");
    store_audit_list_free(rows, n);
    buf_free(&resp.body);
    memset(&resp, 0, sizeof(resp));
    /* Another cluster still has room. */
    exec_spec *other = spec_new(fx, "cluster-b", NULL);
    assert_int_equal(exec_admit(&w, other, &resp), 0);

    /* Freeing a spec gives its slot back. */
    exec_spec_free(e1);
    assert_int_equal(commands_of(fx->x, fx->org_id, "cluster-a"), 1);
    assert_int_equal(exec_admit(&w, e3, &resp), 0);
    assert_int_equal(commands_of(fx->x, fx->org_id, "cluster-a"), 2);
    exec_spec_free(e2);
    exec_spec_free(e3);
    exec_spec_free(other);
    exec_spec_free(NULL);
    assert_int_equal(commands_of(fx->x, fx->org_id, "cluster-a"), 0);
}

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

/* No audit row, no command: 503, and the slot taken first is given back. */
/* A credential typed into the command (--token=…) leaves no copy in freed
 * memory once the command is admitted, audited (redacted) and freed. */
static void test_credential_in_command_leaves_no_copies(void **state)
{
    fixture *fx = *state;
    worker_ctx w = { .store = fx->st, .cfg = &fx->cfg, .exec = fx->x };
    http_response resp = { 0 };
    static const char marker[] = "Zq7-leftover-credential";
    exec_spec *e = spec_new(fx, "cluster-a", NULL);
    argv_free(&e->argv);
    const char *args[] = { "get", "pods", "--token=Zq7-leftover-credential", "-o", "json" };
    char err[64];
    assert_int_equal(argv_from_strings(args, 5, &e->argv, err, sizeof(err)), 0);
    e->command = strdup("get pods --token=Zq7-leftover-credential -o json");
    assert_non_null(e->command);
    free_watch_arm(marker);
    assert_int_equal(exec_admit(&w, e, &resp), 0);
    exec_spec_free(e);
    assert_int_equal(free_watch_disarm(), 0);
    size_t n = 0;
    store_audit *rows = audit_rows(fx, &n);
    assert_int_equal(n, 1);
    assert_null(strstr(rows[0].argv_json, marker));
    store_audit_list_free(rows, n);
}

static void test_audit_unavailable(void **state)
{
    fixture *fx = *state;
    worker_ctx w = { .store = fx->st, .cfg = &fx->cfg, .exec = fx->x };
    raw_exec(fx->path, "ALTER TABLE audit_log RENAME TO audit_log_gone");
    http_response resp = { 0 };
    exec_spec *e = spec_new(fx, "cluster-a", NULL);
    assert_int_equal(exec_admit(&w, e, &resp), -1);
    assert_int_equal(resp.status, 503);
    assert_non_null(strstr(buf_head(&resp.body), EC_AUDIT_UNAVAILABLE));
    assert_false(e->slot.held);
    assert_int_equal(commands_of(fx->x, fx->org_id, "cluster-a"), 0);
    buf_free(&resp.body);
    exec_spec_free(e);
    raw_exec(fx->path, "ALTER TABLE audit_log_gone RENAME TO audit_log");
}

/* Two servers' contexts (e.g. two in one test process) count apart: a spec
 * admitted through one holds nothing in the other. */
/* Server shutdown: once draining, new commands (admitted here or forwarded
 * by another replica) are refused 503 SERVER_SHUTTING_DOWN with no slot and
 * no audit row; those admitted before keep theirs and count as busy until
 * freed. */
static void test_drain_refuses_new_commands(void **state)
{
    fixture *fx = *state;
    worker_ctx w = { .store = fx->st, .cfg = &fx->cfg, .exec = fx->x };
    http_response resp = { 0 };
    assert_int_equal(exec_ctx_busy(fx->x), 0);
    exec_spec *running = spec_new(fx, "cluster-a", NULL);
    assert_int_equal(exec_admit(&w, running, &resp), 0);
    assert_int_equal(exec_ctx_busy(fx->x), 1);

    exec_ctx_drain(fx->x);
    exec_spec *late = spec_new(fx, "cluster-b", NULL);
    assert_int_equal(exec_admit(&w, late, &resp), -1);
    assert_int_equal(resp.status, 503);
    assert_non_null(strstr(buf_head(&resp.body), EC_SERVER_SHUTTING_DOWN));
    assert_non_null(strstr(buf_head(&resp.body), "shutting down"));
    assert_false(late->slot.held);
    assert_int_equal(late->audit_id, 0);
    buf_free(&resp.body);
    memset(&resp, 0, sizeof(resp));
    exec_spec *fwd = spec_new(fx, "cluster-b", NULL);
    assert_int_equal(exec_admit_forwarded(&w, fwd, &resp), -1);
    assert_int_equal(resp.status, 503);
    assert_non_null(strstr(buf_head(&resp.body), EC_SERVER_SHUTTING_DOWN));
    assert_false(fwd->slot.held);
    buf_free(&resp.body);
    assert_int_equal(commands_of(fx->x, fx->org_id, "cluster-b"), 0);
    size_t n = 0;
    store_audit *rows = audit_rows(fx, &n);
    assert_int_equal(n, 1); /* the running command's "started" row only */
    assert_int_equal(rows[0].id, running->audit_id);
    store_audit_list_free(rows, n);

    assert_int_equal(exec_ctx_busy(fx->x), 1);
    exec_spec_free(running);
    assert_int_equal(exec_ctx_busy(fx->x), 0);
    exec_spec_free(late);
    exec_spec_free(fwd);
}

static void test_contexts_apart(void **state)
{
    fixture *fx = *state;
    server_config one = fx->cfg;
    one.max_per_cluster = 1;
    exec_ctx *x1 = exec_ctx_new(&one, NULL, NULL), *x2 = exec_ctx_new(&one, NULL, NULL);
    assert_non_null(x1);
    assert_non_null(x2);
    worker_ctx w1 = { .store = fx->st, .exec = x1 }, w2 = { .store = fx->st, .exec = x2 };
    http_response resp = { 0 };
    exec_spec *a = spec_new(fx, "cluster-a", NULL), *b = spec_new(fx, "cluster-a", NULL);
    assert_int_equal(exec_admit(&w1, a, &resp), 0);
    assert_int_equal(exec_admit(&w2, b, &resp), 0);
    assert_ptr_equal(a->ctx, x1);
    assert_ptr_equal(b->ctx, x2);
    assert_int_equal(commands_of(x1, fx->org_id, "cluster-a"), 1);
    assert_int_equal(commands_of(x2, fx->org_id, "cluster-a"), 1);
    assert_int_equal(commands_of(fx->x, fx->org_id, "cluster-a"), 0);
    exec_spec_free(a);
    assert_int_equal(commands_of(x1, fx->org_id, "cluster-a"), 0);
    assert_int_equal(commands_of(x2, fx->org_id, "cluster-a"), 1);
    exec_spec_free(b);
    exec_ctx_free(x1);
    exec_ctx_free(x2);
}

int main(void)
{
    log_setup("test", "error", "text");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_admit_slot_and_started_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_credential_in_command_leaves_no_copies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_contexts_apart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_refuses_new_commands, setup, teardown),
    };
    return cmocka_run_group_tests_name("server_exec", tests, NULL, NULL);
}
