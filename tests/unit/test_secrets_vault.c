/* test_secrets_vault.c — the Vault KV v2 secrets backend (server/secrets_vault.c).
 *
 * No Vault server is installable on the test machines, so these tests run
 * against tests/fixtures/vault_fixture.py, a local stand-in that follows
 * Vault's documented HTTP API for exactly the calls the backend makes (KV v2
 * data/metadata read, write, delete and LIST; Kubernetes auth login; token
 * checks; Vault's status codes and JSON shapes), plus fault injection
 * (403/404/500/503, delays, token revocation).  It listens on 127.0.0.1
 * only, over plain HTTP. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc_harness.h"
#include "secrets.h"
#include "stalled_secrets.h"
#include "stderr_capture.h"
#include "free_watch.h"

#define ROOT_TOKEN "root-token-for-tests"
#define K8S_ROLE "aurora-server"
#define K8S_JWT "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YXVyb3JhIn0.c2ln"

static const char PEM[] = "-----BEGIN RSA PRIVATE KEY-----\n"
                          "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
                          "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
                          "-----END RSA PRIVATE KEY-----\n";

typedef struct {
    pid_t pid;
    int port;
    char dir[64];
    char addr[64];
    char jwt_path[128];
} fixture;

static fixture F;

/* How long a call that must succeed may take: as long as the tests' other
 * waits.  The fixture is a Python process that shares the CPUs with
 * everything else running, and a call that timed out would also open the
 * backend's breaker for the calls after it.  (The tests of the timeout
 * itself set their own.) */
#define ANSWER_MS 20000

/* Starts the fixture (on `port`, or a free one when 0). */
static int start_fixture(int port, int lease)
{
    char script[1024], portarg[16], leasearg[16], log[128];
    if (ph_fixture_path("vault_fixture.py", script, sizeof(script)) < 0)
        return -1;
    snprintf(portarg, sizeof(portarg), "%d", port);
    snprintf(leasearg, sizeof(leasearg), "%d", lease);
    snprintf(log, sizeof(log), "%s/fixture.log", F.dir);
    const char *argv[] = { ph_python(),  script,   "--port",    portarg, "--token",
                           ROOT_TOKEN,   "--k8s-role", K8S_ROLE, "--k8s-jwt", K8S_JWT,
                           "--lease",    leasearg, NULL };
    F.pid = ph_start_port_fixture(argv, log, &F.port);
    if (F.pid < 0)
        return -1;
    snprintf(F.addr, sizeof(F.addr), "http://127.0.0.1:%d", F.port);
    return 0;
}

static void stop_fixture(void)
{
    if (F.pid > 0)
        ph_stop(F.pid, SIGTERM, 5000);
    F.pid = -1;
}

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(F.dir, sizeof(F.dir), "/tmp/aurora-vault-XXXXXX");
    if (!mkdtemp(F.dir))
        return -1;
    snprintf(F.jwt_path, sizeof(F.jwt_path), "%s/token", F.dir);
    FILE *f = fopen(F.jwt_path, "w");
    if (!f)
        return -1;
    fputs(K8S_JWT "\n", f);
    fclose(f);
    return start_fixture(0, 3600);
}

static int group_teardown(void **state)
{
    (void)state;
    stop_fixture();
    ph_rmtree(F.dir);
    curl_global_cleanup();
    return 0;
}

/* A fresh fixture per test: no state leaks from one test to the next. */
static int setup(void **state)
{
    (void)state;
    stop_fixture();
    return start_fixture(0, 3600);
}

/* ---- talking to the fixture directly -------------------------------------------- */

typedef struct {
    char *data;
    size_t len;
} body_t;

static size_t grab(char *p, size_t sz, size_t n, void *ud)
{
    body_t *b = ud;
    char *nd = realloc(b->data, b->len + sz * n + 1);
    if (!nd)
        return 0;
    b->data = nd;
    memcpy(b->data + b->len, p, sz * n);
    b->len += sz * n;
    b->data[b->len] = '\0';
    return sz * n;
}

/* method + path on the fixture; returns the status, *json the parsed body. */
static long raw_call(const char *method, const char *path, const char *token, const char *body,
                     cJSON **json)
{
    CURL *c = curl_easy_init();
    assert_non_null(c);
    char url[512], hdr[128];
    snprintf(url, sizeof(url), "%s%s", F.addr, path);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (token) {
        snprintf(hdr, sizeof(hdr), "X-Vault-Token: %s", token);
        h = curl_slist_append(h, hdr);
    }
    body_t b = { 0 };
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, grab);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (json)
        *json = b.data ? cJSON_Parse(b.data) : NULL;
    free(b.data);
    return status;
}

static void inject(int status, int count, const char *match)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"status\":%d,\"count\":%d,\"match\":\"%s\"}", status, count,
             match);
    assert_int_equal(raw_call("POST", "/_fixture/fail", NULL, body, NULL), 200);
}

static int stat_of(const char *key)
{
    cJSON *j = NULL;
    assert_int_equal(raw_call("GET", "/_fixture/stats", NULL, NULL, &j), 200);
    int v = cJSON_GetObjectItem(j, key)->valueint;
    cJSON_Delete(j);
    return v;
}

/* The data stored at mount/path, as the fixture holds it. */
static cJSON *raw_data(const char *mount, const char *path)
{
    char q[512];
    snprintf(q, sizeof(q), "/_fixture/raw?mount=%s&path=%s", mount, path);
    cJSON *j = NULL;
    if (raw_call("GET", q, NULL, NULL, &j) != 200) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* ---- backend helpers ------------------------------------------------------------------ */

static secrets_config token_cfg(void)
{
    secrets_config c = { .backend = "vault", .vault_addr = F.addr, .vault_token = ROOT_TOKEN,
                         .timeout_ms = ANSWER_MS };
    return c;
}

/* The fixture's Kubernetes auth: role K8S_ROLE, the service account JWT at
 * F.jwt_path. */
static secrets_config k8s_cfg(void)
{
    secrets_config c = { .backend = "vault", .vault_addr = F.addr,
                         .vault_auth_method = "kubernetes", .vault_k8s_role = K8S_ROLE,
                         .vault_k8s_jwt_path = F.jwt_path, .timeout_ms = ANSWER_MS };
    return c;
}

static secrets_t *open_ok(const secrets_config *c)
{
    secrets_t *s = NULL;
    char err[512] = "";
    if (secrets_open(c, &s, err, sizeof(err)) != SECRETS_OK)
        fail_msg("open: %s", err);
    return s;
}

static void put_ok(secrets_t *s, const char *path, const void *v, size_t n)
{
    char err[512];
    if (secrets_put(s, path, v, n, err, sizeof(err)) != SECRETS_OK)
        fail_msg("put %s: %s", path, err);
}

static void expect_secret(secrets_t *s, const char *path, const void *v, size_t n)
{
    unsigned char *got = NULL;
    size_t len = 0;
    char err[512];
    if (secrets_get(s, path, &got, &len, err, sizeof(err)) != SECRETS_OK)
        fail_msg("get %s: %s", path, err);
    assert_int_equal(len, n);
    assert_memory_equal(got, v, n);
    secrets_free(got, len);
}

static void expect_get_error(secrets_t *s, const char *path, int rc, const char *needle)
{
    unsigned char *got = NULL;
    size_t len = 0;
    char err[512] = "";
    int got_rc = secrets_get(s, path, &got, &len, err, sizeof(err));
    if (got_rc != rc)
        fail_msg("get %s: rc %d (%s), wanted %d", path, got_rc, err, rc);
    assert_null(got);
    assert_non_null(strstr(err, "vault"));
    assert_non_null(strstr(err, path));
    if (needle && !strstr(err, needle))
        fail_msg("error \"%s\" lacks \"%s\"", err, needle);
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_token_auth_roundtrip(void **state)
{
    (void)state;
    secrets_config c = token_cfg();
    secrets_t *s = open_ok(&c);
    put_ok(s, SECRETS_PATH_GITHUB_APP_PRIVATE_KEY, PEM, strlen(PEM));
    expect_secret(s, SECRETS_PATH_GITHUB_APP_PRIVATE_KEY, PEM, strlen(PEM));
    /* Stored where `vault kv put aurora/system/github-app/private-key
     * value=@key.pem` puts it: mount "aurora", field "value", plain text. */
    cJSON *raw = raw_data("aurora", "system/github-app/private-key");
    assert_non_null(raw);
    cJSON *d = cJSON_GetObjectItem(raw, "data");
    assert_string_equal(cJSON_GetObjectItem(d, "value")->valuestring, PEM);
    assert_null(cJSON_GetObjectItem(d, "encoding"));
    cJSON_Delete(raw);

    /* Binary bytes travel base64 and are marked so. */
    const unsigned char bin[] = { 0x00, 0xff, 0x10, 0x00, 0xc3, 0x28 };
    put_ok(s, "aurora/users/usr_1/pagerduty/blob", bin, sizeof(bin));
    expect_secret(s, "aurora/users/usr_1/pagerduty/blob", bin, sizeof(bin));
    raw = raw_data("aurora", "users/usr_1/pagerduty/blob");
    d = cJSON_GetObjectItem(raw, "data");
    assert_string_equal(cJSON_GetObjectItem(d, "encoding")->valuestring, "base64");
    assert_string_equal(cJSON_GetObjectItem(d, "value")->valuestring, "AP8QAMMo");
    cJSON_Delete(raw);

    /* A new version replaces the value. */
    put_ok(s, SECRETS_PATH_GITHUB_APP_WEBHOOK_SECRET, "v1", 2);
    put_ok(s, SECRETS_PATH_GITHUB_APP_WEBHOOK_SECRET, "v2-secret", 9);
    expect_secret(s, SECRETS_PATH_GITHUB_APP_WEBHOOK_SECRET, "v2-secret", 9);

    /* List by prefix walks folders; delete removes every version. */
    put_ok(s, "aurora/users/usr_1/github/token", "t", 1);
    put_ok(s, "aurora/users/usr_2/github/token", "t", 1);
    char **l = NULL;
    size_t n = 0;
    char err[512];
    assert_int_equal(secrets_list(s, "aurora/users/", &l, &n, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(n, 3);
    assert_string_equal(l[0], "aurora/users/usr_1/github/token");
    assert_string_equal(l[1], "aurora/users/usr_1/pagerduty/blob");
    assert_string_equal(l[2], "aurora/users/usr_2/github/token");
    secrets_list_free(l, n);
    assert_int_equal(secrets_list(s, "aurora/users/usr_1/g", &l, &n, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(n, 1);
    secrets_list_free(l, n);
    assert_int_equal(secrets_list(s, "", &l, &n, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(n, 5);
    secrets_list_free(l, n);
    assert_int_equal(secrets_list(s, "aurora/none/", &l, &n, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(n, 0);

    assert_int_equal(secrets_delete(s, "aurora/users/usr_1/github/token", err, sizeof(err)),
                     SECRETS_OK);
    assert_null(raw_data("aurora", "users/usr_1/github/token"));
    expect_get_error(s, "aurora/users/usr_1/github/token", SECRETS_NOT_FOUND, "no secret");
    assert_int_equal(secrets_delete(s, "aurora/users/usr_1/github/token", err, sizeof(err)),
                     SECRETS_OK);
    secrets_close(s);
}

/* What the operator wrote with the vault CLI, as the guide tells them. */
static void test_guide_paths_written_by_cli(void **state)
{
    (void)state;
    cJSON *body = cJSON_CreateObject();
    cJSON *data = cJSON_AddObjectToObject(body, "data");
    cJSON_AddStringToObject(data, "value", PEM);
    char *text = cJSON_PrintUnformatted(body);
    /* vault kv put aurora/system/github-app/private-key value=@key.pem */
    assert_int_equal(raw_call("POST", "/v1/aurora/data/system/github-app/private-key", ROOT_TOKEN,
                              text, NULL),
                     200);
    free(text);
    cJSON_Delete(body);
    /* vault kv put aurora/system/github-app/webhook-secret value=<hex> */
    assert_int_equal(raw_call("POST", "/v1/aurora/data/system/github-app/webhook-secret",
                              ROOT_TOKEN, "{\"data\":{\"value\":\"8f2e0c1d\"}}", NULL),
                     200);
    /* A secret written with another field name. */
    assert_int_equal(raw_call("POST", "/v1/aurora/data/system/other", ROOT_TOKEN,
                              "{\"data\":{\"password\":\"x\"}}", NULL),
                     200);
    secrets_config c = token_cfg();
    secrets_t *s = open_ok(&c);
    expect_secret(s, SECRETS_PATH_GITHUB_APP_PRIVATE_KEY, PEM, strlen(PEM));
    expect_secret(s, SECRETS_PATH_GITHUB_APP_WEBHOOK_SECRET, "8f2e0c1d", 8);
    expect_get_error(s, "aurora/system/other", SECRETS_E_OTHER, "\"value\"");
    /* Soft-deleted latest version (vault kv delete): not found. */
    assert_int_equal(raw_call("DELETE", "/v1/aurora/data/system/github-app/webhook-secret",
                              ROOT_TOKEN, NULL, NULL),
                     204);
    expect_get_error(s, SECRETS_PATH_GITHUB_APP_WEBHOOK_SECRET, SECRETS_NOT_FOUND, "deleted");
    secrets_close(s);
}

/* A value written outside Aurora with a NUL in it (`\u0000` in Vault's
 * JSON): refused with an error that says so, never returned cut at the
 * NUL. */
static void test_value_with_a_nul_is_not_cut(void **state)
{
    (void)state;
    assert_int_equal(raw_call("POST", "/v1/aurora/data/system/nul", ROOT_TOKEN,
                              "{\"data\":{\"value\":\"head\\u0000tail\"}}", NULL),
                     200);
    /* A "\\u0000" is text, not a NUL; another field's NUL is not the value's. */
    assert_int_equal(raw_call("POST", "/v1/aurora/data/system/not-nul", ROOT_TOKEN,
                              "{\"data\":{\"value\":\"a\\\\u0000b\",\"note\":\"x\\u0000y\"}}",
                              NULL),
                     200);
    secrets_config c = token_cfg();
    secrets_t *s = open_ok(&c);
    expect_get_error(s, "aurora/system/nul", SECRETS_E_OTHER, "NUL");
    expect_secret(s, "aurora/system/not-nul", "a\\u0000b", 8);
    secrets_close(s);
}

static void test_mount_and_prefix(void **state)
{
    (void)state;
    secrets_config c = token_cfg();
    c.vault_kv_mount = "/secret/";
    c.vault_prefix = "teams/aurora/";
    secrets_t *s = open_ok(&c);
    put_ok(s, "aurora/users/u9/jira/token", "jt", 2);
    cJSON *raw = raw_data("secret", "teams/aurora/users/u9/jira/token");
    assert_non_null(raw);
    cJSON_Delete(raw);
    assert_null(raw_data("aurora", "users/u9/jira/token"));
    char **l = NULL;
    size_t n = 0;
    char err[512];
    assert_int_equal(secrets_list(s, "aurora/", &l, &n, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(l[0], "aurora/users/u9/jira/token");
    secrets_list_free(l, n);
    expect_secret(s, "aurora/users/u9/jira/token", "jt", 2);
    secrets_close(s);

    /* A mount that does not exist: a clear error naming it. */
    c.vault_kv_mount = "kv-missing";
    c.vault_prefix = NULL;
    s = open_ok(&c);
    assert_int_equal(secrets_put(s, "aurora/x", "v", 1, err, sizeof(err)), SECRETS_E_OTHER);
    assert_non_null(strstr(err, "kv-missing"));
    expect_get_error(s, "aurora/x", SECRETS_NOT_FOUND, NULL);
    secrets_close(s);

    /* Bad settings are refused at open. */
    secrets_config bad = token_cfg();
    bad.vault_kv_mount = "../sys";
    assert_int_equal(secrets_open(&bad, &s, err, sizeof(err)), SECRETS_E_INVALID);
    bad = token_cfg();
    bad.vault_addr = "vault:8200";
    assert_int_equal(secrets_open(&bad, &s, err, sizeof(err)), SECRETS_E_INVALID);
    bad = token_cfg();
    bad.vault_addr = NULL;
    assert_int_equal(secrets_open(&bad, &s, err, sizeof(err)), SECRETS_E_INVALID);
    assert_non_null(strstr(err, "VAULT_ADDR"));
    bad = token_cfg();
    bad.vault_token = NULL;
    assert_int_equal(secrets_open(&bad, &s, err, sizeof(err)), SECRETS_E_INVALID);
    assert_non_null(strstr(err, "VAULT_TOKEN"));
    bad = token_cfg();
    bad.vault_auth_method = "ldap";
    assert_int_equal(secrets_open(&bad, &s, err, sizeof(err)), SECRETS_E_INVALID);
}

static void test_kubernetes_auth(void **state)
{
    (void)state;
    secrets_config c = k8s_cfg();
    secrets_t *s = open_ok(&c);
    assert_int_equal(stat_of("logins"), 0); /* open does no I/O */
    put_ok(s, "aurora/users/u1/slack/token", "xoxb-1", 6);
    expect_secret(s, "aurora/users/u1/slack/token", "xoxb-1", 6);
    put_ok(s, "aurora/users/u1/slack/other", "x", 1);
    assert_int_equal(stat_of("logins"), 1); /* one login serves many calls */

    /* Vault revokes the token: the next call logs in again by itself. */
    assert_int_equal(raw_call("POST", "/_fixture/revoke", NULL, "{}", NULL), 200);
    expect_secret(s, "aurora/users/u1/slack/token", "xoxb-1", 6);
    assert_int_equal(stat_of("logins"), 2);
    secrets_close(s);

    /* A wrong role, a JWT Vault does not accept, no JWT file: DENIED. */
    char err[512];
    secrets_config bad = c;
    bad.vault_k8s_role = "intruder";
    s = open_ok(&bad);
    expect_get_error(s, "aurora/users/u1/slack/token", SECRETS_E_DENIED, "invalid role");
    secrets_close(s);
    char other_jwt[160];
    snprintf(other_jwt, sizeof(other_jwt), "%s/other-token", F.dir);
    FILE *f = fopen(other_jwt, "w");
    assert_non_null(f);
    fputs("not.the.jwt", f);
    fclose(f);
    bad = c;
    bad.vault_k8s_jwt_path = other_jwt;
    s = open_ok(&bad);
    expect_get_error(s, "aurora/users/u1/slack/token", SECRETS_E_DENIED, "Kubernetes auth");
    secrets_close(s);
    bad.vault_k8s_jwt_path = "/nonexistent/token";
    s = open_ok(&bad);
    expect_get_error(s, "aurora/users/u1/slack/token", SECRETS_E_DENIED, "/nonexistent/token");
    secrets_close(s);
    bad = c;
    bad.vault_k8s_role = NULL;
    assert_int_equal(secrets_open(&bad, &s, err, sizeof(err)), SECRETS_E_INVALID);
    assert_non_null(strstr(err, "VAULT_K8S_ROLE"));
}

/* Vault revokes the token while several calls hold it: each gets 403, and
 * they log in once between them, not once each (the first to ask logs in,
 * the others take its token).  The fixture holds the 403s until all N
 * callers wait for theirs, so every round has N holders of the revoked
 * token whatever the scheduling. */
static void test_revoked_token_one_login_for_all_holders(void **state)
{
    (void)state;
    secrets_config c = k8s_cfg();
    secrets_t *s = open_ok(&c);
    put_ok(s, "aurora/stall/probe", "v", 1);
    int before = stat_of("logins");
    for (int round = 0; round < 3; round++) {
        enum { N = 6 };
        assert_int_equal(raw_call("POST", "/_fixture/revoke", NULL, "{\"hold\": 6}", NULL), 200);
        stalled_call a[N];
        stalled_calls_together(s, a, N);
        for (int i = 0; i < N; i++)
            if (a[i].rc != SECRETS_OK)
                fail_msg("round %d, caller %d: rc %d (%s)", round, i, a[i].rc, a[i].err);
        assert_int_equal(stat_of("logins"), before + round + 1);
    }
    secrets_close(s);
}

/* A refused login (a wrong role) is not a refused token: one login attempt
 * per call, not a second one taken for a token refresh. */
static void test_refused_login_tried_once(void **state)
{
    (void)state;
    secrets_config c = k8s_cfg();
    c.vault_k8s_role = "intruder";
    secrets_t *s = open_ok(&c);
    int before = stat_of("requests"); /* control calls are not counted */
    expect_get_error(s, "aurora/users/u1/slack/token", SECRETS_E_DENIED, "invalid role");
    assert_int_equal(stat_of("requests") - before, 1);
    secrets_close(s);
}

/* A short lease (4 s): the token is used until 90 % of it (3 whole seconds
 * of time(2), which the backend counts in) and the backend logs in again
 * before using it past that. */
static void test_kubernetes_lease_expiry(void **state)
{
    (void)state;
    enum { LEASE_S = 4, RENEW_S = LEASE_S * 9 / 10 };
    stop_fixture();
    assert_int_equal(start_fixture(0, LEASE_S), 0);
    secrets_config c = k8s_cfg();
    secrets_t *s = open_ok(&c);
    time_t before = time(NULL);
    put_ok(s, "aurora/l/1", "a", 1);
    time_t after = time(NULL); /* the login was in [before, after] */
    assert_int_equal(stat_of("logins"), 1);
    /* Within the lease: the same token.  (A machine so slow that this get
     * comes 3 s after the login could log in again, rightly: only a get
     * surely before the renewal point is held to one login.) */
    expect_secret(s, "aurora/l/1", "a", 1);
    time_t now = time(NULL);
    int logins = stat_of("logins");
    if (now < before + RENEW_S)
        assert_int_equal(logins, 1);
    /* Past the renewal point of the last login: a new login before the
     * token is used. */
    while (time(NULL) < (logins == 1 ? after : now) + RENEW_S)
        ph_sleep_ms(50);
    expect_secret(s, "aurora/l/1", "a", 1);
    assert_int_equal(stat_of("logins"), logins + 1);
    secrets_close(s);
}

/* ---- a static VAULT_TOKEN's upkeep (secrets_maintain) ----------------------------- */

static void fixture_post(const char *path, const char *body)
{
    assert_int_equal(raw_call("POST", path, NULL, body, NULL), 200);
}

/* Moves the fixture's clock (its tokens' TTLs) forward: no real waiting. */
static void advance(long seconds)
{
    char body[64];
    snprintf(body, sizeof(body), "{\"advance\":%ld}", seconds);
    fixture_post("/_fixture/clock", body);
}

typedef struct {
    secrets_t *s;
    long delay;
} maintain_call;

static void run_maintain(void *arg)
{
    maintain_call *c = arg;
    c->delay = secrets_maintain(c->s);
}

/* Runs secrets_maintain(s) with stderr (the log) captured: *delay its
 * answer, the count of log lines holding each of needle1 and needle2. */
static void maintain_logged(secrets_t *s, long *delay, const char *needle1, int *n1,
                            const char *needle2, int *n2)
{
    maintain_call c = { .s = s };
    FILE *f = stderr_capture(run_maintain, &c);
    *delay = c.delay;
    char line[2048];
    *n1 = 0;
    if (n2)
        *n2 = 0;
    while (fgets(line, sizeof(line), f)) {
        fputs(line, stderr); /* still in the test's output */
        *n1 += strstr(line, needle1) != NULL;
        if (n2)
            *n2 += strstr(line, needle2) != NULL;
        assert_null(strstr(line, ROOT_TOKEN)); /* never the token */
    }
    fclose(f);
}

/* A renewable VAULT_TOKEN with a TTL is renewed once half of it is spent,
 * again and again, and keeps working long past its first TTL; nothing
 * renewed it before, and every call failed DENIED once it expired. */
static void test_static_token_renewed_before_it_expires(void **state)
{
    (void)state;
    fixture_post("/_fixture/token", "{\"ttl\":100,\"renewable\":true,\"max_ttl\":100000}");
    secrets_config c = token_cfg();
    secrets_t *s = open_ok(&c);
    put_ok(s, "aurora/r/1", "kept", 4);
    /* fresh: nothing to renew yet; the next look when half is spent */
    long d = secrets_maintain(s);
    assert_true(d >= 45 && d <= 50);
    assert_int_equal(stat_of("lookups"), 1);
    assert_int_equal(stat_of("renewals"), 0);
    for (int round = 1; round <= 4; round++) {
        advance(d + 1); /* past the half of its TTL */
        d = secrets_maintain(s);
        assert_int_equal(stat_of("renewals"), round);
        assert_true(d >= 45 && d <= 50); /* a full TTL again: half of it */
        expect_secret(s, "aurora/r/1", "kept", 4);
    }
    /* 200 s of fixture time and more: twice the TTL it started with */
    advance(d + 1);
    expect_secret(s, "aurora/r/1", "kept", 4);
    /* and unrenewed, it ends as Vault says: DENIED */
    advance(200);
    expect_get_error(s, "aurora/r/1", SECRETS_E_DENIED, "permission denied");
    int refused = 0;
    maintain_logged(s, &d, "refuses VAULT_TOKEN", &refused, NULL, NULL);
    assert_int_equal(refused, 1);
    maintain_logged(s, &d, "refuses VAULT_TOKEN", &refused, NULL, NULL);
    assert_int_equal(refused, 0); /* said once */
    secrets_close(s);
}

/* Every copy of a value written or read, and of the token, is wiped before
 * it is freed: the request body holding the value (cJSON's printer grows
 * its buffer by realloc, freeing the outgrown copies as they are) and the
 * token's lookup-self answer, which names the token (data.id). */
static void test_values_and_token_leave_no_copy_in_freed_memory(void **state)
{
    (void)state;
    fixture_post("/_fixture/token", "{\"ttl\":100,\"renewable\":true,\"max_ttl\":100000}");
    secrets_config c = token_cfg();
    secrets_t *s = open_ok(&c);
    static const char marker[] = "vault-value-marker-7c1e";
    char val[4096];
    free_watch_value(val, sizeof(val), marker);
    assert_true(free_watch_arm_skipping(marker, "libcurl"));
    put_ok(s, "aurora/w/1", val, strlen(val));
    int put_hits = free_watch_disarm();
    assert_true(free_watch_arm_skipping(marker, "libcurl"));
    expect_secret(s, "aurora/w/1", val, strlen(val));
    int get_hits = free_watch_disarm();
    assert_true(free_watch_arm_skipping(ROOT_TOKEN, "libcurl"));
    long d = secrets_maintain(s);
    int token_hits = free_watch_disarm();
    assert_true(d > 0);
    advance(d + 1);
    assert_true(free_watch_arm_skipping(ROOT_TOKEN, "libcurl"));
    d = secrets_maintain(s); /* looked up and renewed */
    int renew_hits = free_watch_disarm();
    assert_int_equal(stat_of("renewals"), 1);
    secrets_close(s);
    if (put_hits || get_hits || token_hits || renew_hits)
        fail_msg("freed unwiped: %d blocks with the value written, %d read, %d with the token "
                 "(lookup), %d (renewal)", put_hits, get_hits, token_hits, renew_hits);
}

/* What no renewal can extend is logged with the time it ends: a token that
 * is not renewable (never renew-self), one that reached its maximum TTL.
 * A token without a TTL (a root token) needs nothing; Kubernetes auth logs
 * in again by itself. */
static void test_static_token_that_will_expire_is_logged(void **state)
{
    (void)state;
    secrets_config c = token_cfg();
    secrets_t *s = open_ok(&c);
    long d = 0;
    int n1 = 0, n2 = 0;
    maintain_logged(s, &d, "does not expire", &n1, NULL, NULL);
    assert_int_equal(d, 3600);
    assert_int_equal(n1, 1);
    assert_int_equal(stat_of("renewals"), 0);

    fixture_post("/_fixture/token", "{\"ttl\":100,\"renewable\":false}");
    maintain_logged(s, &d, "is not renewable", &n1, "expires at", &n2);
    assert_int_equal(n1, 1);
    assert_int_equal(n2, 1);
    assert_true(d >= 45 && d <= 50);
    assert_int_equal(stat_of("renewals"), 0);
    advance(d);
    maintain_logged(s, &d, "is not renewable", &n1, NULL, NULL);
    assert_int_equal(n1, 0); /* the same expiry: said once */

    /* renewable up to a maximum TTL of 170 s from now */
    fixture_post("/_fixture/token", "{\"ttl\":100,\"renewable\":true,\"max_ttl\":170}");
    advance(60);
    maintain_logged(s, &d, "maximum TTL", &n1, NULL, NULL);
    assert_int_equal(stat_of("renewals"), 1);
    assert_int_equal(n1, 0); /* a full TTL: 160 s */
    advance(60);
    maintain_logged(s, &d, "maximum TTL", &n1, "expires at", &n2);
    assert_int_equal(stat_of("renewals"), 2);
    assert_int_equal(n1, 1); /* 50 s left, whatever happens */
    assert_int_equal(n2, 1);
    assert_true(d >= 20 && d <= 25);

    /* in its last second Vault says "ttl":0, as of a token without TTL:
     * the expiry time tells them apart, and this one is renewed.  The
     * fixture's clock stops first: half a second of real time was too
     * short for lookup-self and renew-self on a loaded machine. */
    fixture_post("/_fixture/clock", "{\"freeze\":true}");
    fixture_post("/_fixture/token", "{\"ttl\":100,\"renewable\":true}");
    fixture_post("/_fixture/clock", "{\"advance\":99.5}");
    d = secrets_maintain(s);
    assert_int_equal(stat_of("renewals"), 3);
    assert_true(d >= 45 && d <= 50);
    secrets_close(s);

    c = k8s_cfg();
    s = open_ok(&c);
    assert_int_equal(secrets_maintain(s), 0);
    secrets_close(s);
}

static void test_denied_and_not_found(void **state)
{
    (void)state;
    secrets_config c = token_cfg();
    c.vault_token = "wrong-token";
    secrets_t *s = open_ok(&c);
    char err[512] = "";
    const char *value = "SUPER-SECRET-VALUE-403";
    assert_int_equal(secrets_put(s, "aurora/d/1", value, strlen(value), err, sizeof(err)),
                     SECRETS_E_DENIED);
    assert_non_null(strstr(err, "HTTP 403"));
    assert_non_null(strstr(err, "permission denied"));
    assert_non_null(strstr(err, "aurora/d/1"));
    assert_null(strstr(err, value));
    expect_get_error(s, "aurora/d/1", SECRETS_E_DENIED, "403");
    char **l = NULL;
    size_t n = 0;
    assert_int_equal(secrets_list(s, "aurora/", &l, &n, err, sizeof(err)), SECRETS_E_DENIED);
    assert_int_equal(secrets_delete(s, "aurora/d/1", err, sizeof(err)), SECRETS_E_DENIED);
    secrets_close(s);

    /* A 403 injected for one path only: the others are unaffected. */
    c = token_cfg();
    s = open_ok(&c);
    put_ok(s, "aurora/d/ok", "fine", 4);
    inject(403, 1, "/v1/aurora/data/d/blocked");
    expect_get_error(s, "aurora/d/blocked", SECRETS_E_DENIED, "403");
    expect_secret(s, "aurora/d/ok", "fine", 4);
    expect_get_error(s, "aurora/d/missing", SECRETS_NOT_FOUND, "no secret");
    secrets_close(s);
}

static void test_server_errors_retried(void **state)
{
    (void)state;
    secrets_config c = token_cfg();
    secrets_t *s = open_ok(&c);
    put_ok(s, "aurora/e/kept", "kept-value", 10);

    /* One 500 is retried away. */
    inject(500, 1, "/v1/aurora/data/e/");
    put_ok(s, "aurora/e/one", "after-500", 9);
    expect_secret(s, "aurora/e/one", "after-500", 9);

    /* 500 on every attempt: a clear error, the value is not in it, and what
     * was stored before is untouched. */
    inject(500, 3, "/v1/aurora/data/e/");
    char err[512] = "";
    const char *value = "VALUE-THAT-MUST-NOT-LEAK";
    assert_int_equal(secrets_put(s, "aurora/e/kept", value, strlen(value), err, sizeof(err)),
                     SECRETS_E_UNAVAILABLE);
    assert_non_null(strstr(err, "HTTP 500"));
    assert_non_null(strstr(err, "vault"));
    assert_non_null(strstr(err, "aurora/e/kept"));
    assert_null(strstr(err, value));
    expect_secret(s, "aurora/e/kept", "kept-value", 10);

    /* Sealed (503) and rate limited (429) are "unavailable" too. */
    inject(503, 3, "/v1/aurora/data/e/");
    expect_get_error(s, "aurora/e/kept", SECRETS_E_UNAVAILABLE, "sealed");
    inject(429, 3, "/v1/aurora/data/e/");
    expect_get_error(s, "aurora/e/kept", SECRETS_E_UNAVAILABLE, "429");
    expect_secret(s, "aurora/e/kept", "kept-value", 10);
    secrets_close(s);
}

/* The fixture's next write fails 400 with message + (echo) the slice
 * [start, start+len) of the request body as sent. */
static void fail_next_write(const char *message, int start, int len)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "status", 400);
    cJSON_AddStringToObject(o, "match", "/v1/aurora/data/");
    cJSON_AddStringToObject(o, "message", message);
    if (len) {
        cJSON *e = cJSON_AddArrayToObject(o, "echo");
        cJSON_AddItemToArray(e, cJSON_CreateNumber(start));
        cJSON_AddItemToArray(e, cJSON_CreateNumber(len));
    }
    char *body = cJSON_PrintUnformatted(o);
    assert_int_equal(raw_call("POST", "/_fixture/fail", NULL, body, NULL), 200);
    free(body);
    cJSON_Delete(o);
}

/* secrets_put fails; its error names the path, and holds `shown` (the
 * backend's message passed on) or else says it was withheld. */
static void expect_put_error(secrets_t *s, const char *path, const void *v, size_t n,
                             const char *shown)
{
    char err[512] = "";
    assert_int_not_equal(secrets_put(s, path, v, n, err, sizeof(err)), SECRETS_OK);
    assert_non_null(strstr(err, path));
    if (shown ? !strstr(err, shown) || strstr(err, "withheld") : !strstr(err, "withheld"))
        fail_msg("put %s: \"%s\" (wanted %s)", path, err, shown ? shown : "withheld");
}

/* Offset of the value in the body vault_put sends: {"data":{"value":"… */
#define VALUE_AT 18

/* A message quoting any part of the value is withheld, not only one that
 * quotes its first 16 bytes: its middle as decoded text, its JSON-escaped
 * form as the request carried it, a binary value's base64. */
static void test_put_error_quoting_any_part_of_the_value(void **state)
{
    (void)state;
    secrets_config c = token_cfg();
    secrets_t *s = open_ok(&c);

    /* The middle of a PEM, quoted as Vault would after decoding it. */
    char mid[48];
    snprintf(mid, sizeof(mid), "invalid value: %.30s", PEM + 100);
    fail_next_write(mid, 0, 0);
    expect_put_error(s, "aurora/q/pem", PEM, strlen(PEM), NULL);

    /* Its last 16 bytes, newlines turned into spaces. */
    char tail[48] = "bad: ";
    strncat(tail, PEM + strlen(PEM) - 16, 16);
    for (char *p = tail; *p; p++)
        if (*p == '\n')
            *p = ' ';
    fail_next_write(tail, 0, 0);
    expect_put_error(s, "aurora/q/tail", PEM, strlen(PEM), NULL);

    /* A JSON value (a quote every few bytes), echoed as sent: escaped. */
    const char *json = "{\"a\":\"k1\",\"b\":\"k2\",\"c\":\"k3\",\"d\":\"k4\",\"e\":\"k5\"}";
    fail_next_write("cannot parse: ", VALUE_AT + 10, 40);
    expect_put_error(s, "aurora/q/json", json, strlen(json), NULL);

    /* Bytes that are not UTF-8 travel base64-encoded: echoed so. */
    unsigned char bin[64];
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (unsigned char)(0x80 + i * 7);
    fail_next_write("cannot parse: ", VALUE_AT + 8, 40);
    expect_put_error(s, "aurora/q/bin", bin, sizeof(bin), NULL);

    /* A message that quotes none of it is passed on, also when it shares
     * short runs with the value ("-----" and "KEY" of the PEM). */
    fail_next_write("-----BEGIN-KEY----- is no data provided", 0, 0);
    expect_put_error(s, "aurora/q/plain", PEM, strlen(PEM), "no data provided");
    secrets_close(s);
}

/* A made-up tree the fixture answers LISTs under aurora/<prefix> with
 * (vault_fixture.py /_fixture/tree). */
static void fake_tree(const char *prefix, int fanout, int depth, int leaves)
{
    char body[160];
    snprintf(body, sizeof(body), "{\"prefix\":\"%s\",\"fanout\":%d,\"depth\":%d,\"leaves\":%d}",
             prefix, fanout, depth, leaves);
    assert_int_equal(raw_call("POST", "/_fixture/tree", NULL, body, NULL), 200);
}

static void expect_list_stopped(secrets_t *s, const char *prefix, const char *needle)
{
    char **l = NULL, err[512] = "";
    size_t n = 0;
    int rc = secrets_list(s, prefix, &l, &n, err, sizeof(err));
    if (rc != SECRETS_E_OTHER || !strstr(err, "listing stopped") || !strstr(err, needle))
        fail_msg("list %s: rc %d, %zu paths (%s)", prefix, rc, n, err);
    assert_null(l);
    assert_non_null(strstr(err, "vault"));
    secrets_list_free(l, n);
}

/* A Vault (or a mount others write to) with a huge tree: one listing stops
 * at its bound, in requests and in names, with a clear error, instead of
 * walking all of it on the caller's worker.  Counted at the fixture. */
static void test_listing_is_bounded(void **state)
{
    (void)state;
    secrets_config c = token_cfg();
    c.list_max_paths = 100;
    secrets_t *s = open_ok(&c);

    /* Folders only, 10 per folder, 3 deep: 1111 LISTs and not one path
     * (only the bound on requests sees it). */
    fake_tree("wide/", 10, 3, 0);
    int before = stat_of("requests");
    expect_list_stopped(s, "aurora/wide/", "");
    int made = stat_of("requests") - before;
    if (made > 100)
        fail_msg("%d LIST requests for one listing bounded to 100 paths", made);

    /* One folder of 5000 names: stopped at the first answer. */
    fake_tree("flat/", 0, 0, 5000);
    before = stat_of("requests");
    expect_list_stopped(s, "aurora/flat/", "names");
    assert_int_equal(stat_of("requests") - before, 1);

    /* 10 folders of 20 secrets each: within the requests' bound, over the
     * paths' (the collector's, every backend's). */
    fake_tree("many/", 10, 1, 20);
    expect_list_stopped(s, "aurora/many/", "more than 100 paths");

    /* Within the bound: listed as before. */
    for (int i = 0; i < 3; i++) {
        char p[64];
        snprintf(p, sizeof(p), "aurora/small/s%d", i);
        put_ok(s, p, "v", 1);
    }
    char **l = NULL, err[512];
    size_t n = 0;
    assert_int_equal(secrets_list(s, "aurora/small/", &l, &n, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(n, 3);
    assert_string_equal(l[2], "aurora/small/s2");
    secrets_list_free(l, n);
    secrets_close(s);
}

/* A Vault answering every LIST slowly, each well within the per-request
 * timeout: the whole listing has a deadline (3 timeouts for the server's
 * bound of 1000 paths), so it cannot hold the calling worker for one
 * timeout per folder.  Counted at the fixture, not timed: each answer takes
 * at least 0.3 s, so no more LISTs than fit in the deadline were made. */
static void test_listing_has_a_deadline(void **state)
{
    (void)state;
    secrets_config c = token_cfg();
    c.timeout_ms = 1500;
    c.list_max_paths = SECRETS_LIST_MAX_PATHS_SERVER;
    secrets_t *s = open_ok(&c);
    fake_tree("slow/", 30, 1, 1); /* 31 folders: 9.3 s of answers at 0.3 s each */
    assert_int_equal(raw_call("POST", "/_fixture/delay", NULL, "{\"seconds\":0.3,\"count\":1000}",
                              NULL),
                     200);
    int before = stat_of("requests");
    char **l = NULL, err[512] = "";
    size_t n = 0;
    int rc = secrets_list(s, "aurora/slow/", &l, &n, err, sizeof(err));
    if (rc != SECRETS_E_UNAVAILABLE || !strstr(err, "listing stopped") ||
        !strstr(err, "not done within 4500 ms"))
        fail_msg("list: rc %d, %zu paths (%s)", rc, n, err);
    assert_null(l);
    int made = stat_of("requests") - before;
    if (made > 4500 / 300 + 1)
        fail_msg("%d LIST requests of 0.3 s each within a 4.5 s deadline", made);
    secrets_list_free(l, n);

    /* Vault answering at its usual speed again: the same handle lists the
     * whole tree (the deadline is per listing). */
    assert_int_equal(raw_call("POST", "/_fixture/delay", NULL, "{\"seconds\":0,\"count\":0}",
                              NULL),
                     200);
    rc = secrets_list(s, "aurora/slow/", &l, &n, err, sizeof(err));
    if (rc != SECRETS_OK)
        fail_msg("list: rc %d (%s)", rc, err);
    assert_int_equal(n, 31);
    secrets_list_free(l, n);
    secrets_close(s);
}

/* The request lines the fixture has seen (method and target, undecoded),
 * from the index `from` on, joined by '\n' into out. */
static int seen_since(int from, char *out, size_t cap)
{
    cJSON *j = NULL;
    assert_int_equal(raw_call("GET", "/_fixture/seen", NULL, NULL, &j), 200);
    cJSON *seen = cJSON_GetObjectItem(j, "seen");
    int n = cJSON_GetArraySize(seen);
    size_t o = 0;
    out[0] = '\0';
    for (int i = from; i < n; i++) {
        int w = snprintf(out + o, cap - o, "%s%s", o ? "\n" : "",
                         cJSON_GetArrayItem(seen, i)->valuestring);
        assert_true(w > 0 && (size_t)w < cap - o);
        o += (size_t)w;
    }
    cJSON_Delete(j);
    return n;
}

/* A hostile Vault (or someone else's data in the mount) answering a LIST
 * with names no secret path may hold: each folder name went into the next
 * LIST's URL as it came, so "x?list=true&y/" set that request's query,
 * "%2e%2e/" sent an encoded dot segment that Vault decodes into "..", "./"
 * listed the same folder again (curl drops the dot segment) down to the
 * depth bound, "f#/" cut the path at a fragment, "a/b/" skipped a level and
 * a control character went into the request line.  Such names are skipped:
 * only the folders Aurora could have written are listed, at the fixture
 * nothing but their two LISTs. */
static void test_listing_skips_hostile_names(void **state)
{
    (void)state;
    secrets_config c = token_cfg();
    secrets_t *s = open_ok(&c);
    put_ok(s, "aurora/hostile/ok", "v", 1);
    put_ok(s, "aurora/hostile/good/k", "v", 1);
    assert_int_equal(raw_call("POST", "/_fixture/names", NULL,
                              "{\"dir\":\"hostile/\",\"keys\":[\"ok\",\"good/\","
                              "\"x?list=true&y/\",\"%2e%2e/\",\"./\",\"../\",\"f#/\","
                              "\"a/b/\",\"c\\u0001d/\",\"e\\r\\nX-Injected: 1/\","
                              "\"p%2fq/\",\"leaf?list=true\",\"\",\"/\",\"//\"]}",
                              NULL),
                     200);
    char seen[8192];
    int from = seen_since(0, seen, sizeof(seen));
    char **l = NULL, err[512] = "";
    size_t n = 0;
    int rc = secrets_list(s, "aurora/hostile/", &l, &n, err, sizeof(err));
    seen_since(from, seen, sizeof(seen));
    if (rc != SECRETS_OK)
        fail_msg("list: rc %d (%s); requests:\n%s", rc, err, seen);
    if (strcmp(seen, "LIST /v1/aurora/metadata/hostile/\nLIST /v1/aurora/metadata/hostile/good/"))
        fail_msg("the listing made these requests:\n%s", seen);
    assert_int_equal(n, 2);
    assert_string_equal(l[0], "aurora/hostile/good/k");
    assert_string_equal(l[1], "aurora/hostile/ok");
    secrets_list_free(l, n);
    secrets_close(s);
}

/* Vault down: clear and quick errors; the same handle works again once it
 * is back (nothing to reconfigure, nothing lost). */
static void test_down_backend(void **state)
{
    (void)state;
    secrets_config c = token_cfg();
    secrets_t *s = open_ok(&c);
    put_ok(s, "aurora/down/1", "before", 6);
    int port = F.port;
    stop_fixture();
    /* The port stays ours while Vault is down, so that the restart below
     * finds it free (the test binaries run side by side, and bind(0) hands
     * out the same ports): bound, not listening, it refuses connections as
     * the stopped Vault's did; SO_REUSEADDR lets the fixture take it back. */
    int held = -1;
    assert_int_equal(ph_hold_port(port, &held, 1), port);
    /* Quick: the refused connection is the answer, no wait for the timeout
     * (the message says which of the two it was). */
    expect_get_error(s, "aurora/down/1", SECRETS_E_UNAVAILABLE, "unreachable");
    expect_get_error(s, "aurora/down/1", SECRETS_E_UNAVAILABLE, "Couldn't connect");
    char err[512];
    assert_int_equal(secrets_put(s, "aurora/down/2", "x", 1, err, sizeof(err)),
                     SECRETS_E_UNAVAILABLE);
    assert_non_null(strstr(err, "Couldn't connect"));
    assert_null(strstr(err, "timed out"));
    /* Back on the same address (a fresh, empty Vault here). */
    assert_int_equal(start_fixture(port, 3600), 0);
    close(held);
    put_ok(s, "aurora/down/1", "after", 5);
    expect_secret(s, "aurora/down/1", "after", 5);
    secrets_close(s);

    /* Opening needs no reachable Vault: the server starts regardless. */
    secrets_config none = token_cfg();
    char addr[64];
    snprintf(addr, sizeof(addr), "http://127.0.0.1:%d", ph_hold_port(0, &held, 0));
    assert_true(held >= 0); /* a port of ours, refusing */
    none.vault_addr = addr;
    s = open_ok(&none);
    expect_get_error(s, "aurora/down/1", SECRETS_E_UNAVAILABLE, "unreachable");
    secrets_close(s);
    close(held);
}

static void test_timeout(void **state)
{
    (void)state;
    secrets_config c = token_cfg();
    c.timeout_ms = 300;
    secrets_t *s = open_ok(&c);
    assert_int_equal(raw_call("POST", "/_fixture/delay", NULL, "{\"seconds\":1.5,\"count\":3}",
                              NULL),
                     200);
    int before = stat_of("connections");
    expect_get_error(s, "aurora/slow", SECRETS_E_UNAVAILABLE, "timed out");
    /* One timeout, not one per retry: Vault was asked once (counted, not
     * timed, so that a loaded machine cannot make it look like three).
     * Connections, counted as the fixture accepts them: every one the call
     * made was accepted before the next query's own, where a request is
     * counted by a fixture thread that may not have run yet. */
    assert_int_equal(stat_of("connections"), before + 1 + 1); /* the call's, the query's */
    secrets_close(s);
}

/* A Vault that accepts connections and never answers (stalled_secrets.h);
 * its answer to the probe is a 404 of its own. */
static void test_stalled_vault_fails_fast(void **state)
{
    (void)state;
    silent_peer peer;
    assert_int_equal(silent_peer_open(&peer), 0);
    secrets_config c = { .backend = "vault", .vault_addr = peer.url, .vault_token = ROOT_TOKEN,
                         .timeout_ms = 300 };
    secrets_t *quick = open_ok(&c);
    c.timeout_ms = 60000; /* the probe: waits until the test answers it */
    secrets_t *patient = open_ok(&c);
    stalled_secrets_fail_fast(&peer, quick, patient,
                              "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                              "Content-Length: 13\r\nConnection: close\r\n\r\n{\"errors\":[]}",
                              SECRETS_NOT_FOUND);
    secrets_close(patient);
    secrets_close(quick);
    silent_peer_close(&peer);
}

/* Kubernetes auth against a Vault that never answers: the calls that
 * queued behind one login take its failure rather than each logging in
 * (and, with the breaker open, each becoming the probe) in turn, one
 * timeout apiece.  Counted, not timed: fewer connections than callers. */
static void test_silent_vault_one_login_for_queued_callers(void **state)
{
    (void)state;
    silent_peer peer;
    assert_int_equal(silent_peer_open(&peer), 0);
    secrets_config c = k8s_cfg();
    c.vault_addr = peer.url;
    c.timeout_ms = 2000;
    secrets_t *s = open_ok(&c);
    enum { N = 4 };
    stalled_call a[N];
    stalled_calls_together(s, a, N);
    for (int i = 0; i < N; i++) {
        if (a[i].rc != SECRETS_E_UNAVAILABLE || !strstr(a[i].err, "Kubernetes auth login"))
            fail_msg("caller %d: rc %d (%s)", i, a[i].rc, a[i].err);
    }
    int conns = silent_peer_answer_all(&peer, "HTTP/1.1 503 Service Unavailable\r\n"
                                              "Content-Length: 0\r\nConnection: close\r\n\r\n");
    if (conns < 1 || conns >= N)
        fail_msg("%d callers against a silent Vault opened %d connections", N, conns);
    secrets_close(s);
    silent_peer_close(&peer);
}

/* Vault is there but its answer is refused (larger than the client takes;
 * a TLS handshake that fails on what it sent, as with a certificate the
 * client does not trust): the caller gets the real reason and the breaker
 * stays closed, so the other callers are not told Vault "has not
 * answered". */
/* One call against a peer that gives every attempt `answer`: the call must
 * fail with `why` in its error and leave the breaker closed. */
static void refused_answer_case(const char *scheme, const char *answer, const char *why)
{
    silent_peer peer;
    assert_int_equal(silent_peer_open(&peer), 0);
    char addr[80];
    snprintf(addr, sizeof(addr), "%s%s", scheme, strstr(peer.url, "://"));
    secrets_config c = { .backend = "vault", .vault_addr = addr, .vault_token = ROOT_TOKEN,
                         .timeout_ms = 60000 };
    secrets_t *s = open_ok(&c);
    breaker *br = breaker_get(BREAKER_SECRETS, addr, "", 0);
    stalled_call call = { .s = s };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stalled_call_main, &call), 0);
    /* Every attempt (the backend retries what may pass) gets the same answer,
     * until the call has ended. */
    int conns = 0;
    while (!atomic_load(&call.done) && conns < 10)
        if (silent_peer_wait_connection(&peer, 100))
            conns += silent_peer_answer_all(&peer, answer);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_true(conns >= 1);
    if (call.rc != SECRETS_E_UNAVAILABLE || !strstr(call.err, why))
        fail_msg("rc %d (%s)", call.rc, call.err);
    assert_false(breaker_is_open(br));
    breaker_put(br);
    secrets_close(s);
    silent_peer_close(&peer);
}

static void test_refused_answer_does_not_open_the_breaker(void **state)
{
    (void)state;
    /* an answer larger than the client takes */
    size_t big = 2u << 20;
    char *resp = malloc(big + 128);
    assert_non_null(resp);
    int n = snprintf(resp, 128, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", big);
    memset(resp + n, 'x', big);
    resp[n + big] = '\0';
    refused_answer_case("http", resp, "larger than");
    free(resp);
    /* plain HTTP where VAULT_ADDR says https: the TLS handshake fails on
     * what Vault said (a configuration mistake, not a silent Vault) */
    refused_answer_case("https", "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "SSL");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_token_auth_roundtrip, setup),
        cmocka_unit_test_setup(test_guide_paths_written_by_cli, setup),
        cmocka_unit_test_setup(test_value_with_a_nul_is_not_cut, setup),
        cmocka_unit_test_setup(test_mount_and_prefix, setup),
        cmocka_unit_test_setup(test_kubernetes_auth, setup),
        cmocka_unit_test_setup(test_revoked_token_one_login_for_all_holders, setup),
        cmocka_unit_test_setup(test_refused_login_tried_once, setup),
        cmocka_unit_test_setup(test_kubernetes_lease_expiry, setup),
        cmocka_unit_test_setup(test_static_token_renewed_before_it_expires, setup),
        cmocka_unit_test_setup(test_static_token_that_will_expire_is_logged, setup),
        cmocka_unit_test_setup(test_values_and_token_leave_no_copy_in_freed_memory, setup),
        cmocka_unit_test_setup(test_denied_and_not_found, setup),
        cmocka_unit_test_setup(test_server_errors_retried, setup),
        cmocka_unit_test_setup(test_listing_is_bounded, setup),
        cmocka_unit_test_setup(test_listing_has_a_deadline, setup),
        cmocka_unit_test_setup(test_listing_skips_hostile_names, setup),
        cmocka_unit_test_setup(test_put_error_quoting_any_part_of_the_value, setup),
        cmocka_unit_test_setup(test_down_backend, setup),
        cmocka_unit_test_setup(test_timeout, setup),
        cmocka_unit_test(test_stalled_vault_fails_fast),
        cmocka_unit_test(test_silent_vault_one_login_for_queued_callers),
        cmocka_unit_test(test_refused_answer_does_not_open_the_breaker),
    };
    return cmocka_run_group_tests_name("secrets_vault", tests, group_setup, group_teardown);
}
