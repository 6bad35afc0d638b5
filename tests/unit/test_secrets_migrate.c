/* test_secrets_migrate.c — `aurora-server secrets migrate` across all three
 * backends, the secrets subcommands, and the rule that the state database
 * holds references to secrets, never their values.
 *
 * Peers, all on 127.0.0.1 and started by this binary: a throwaway
 * PostgreSQL (pg_harness.h), the Vault stand-in tests/fixtures/vault_fixture.py
 * (no Vault server is installable here; it follows Vault's documented KV v2
 * HTTP API, see its header) and a real moto_server with SigV4 checking on
 * (moto_harness.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "db.h"
#include "moto_harness.h"
#include "pg_harness.h"
#include "secrets.h"
#include "secrets_cli.h"
#include "secrets_config.h"
#include "server_config.h"
#include "store.h"

static pg_server PG;
static moto_server_t MOTO;
static pid_t vault_pid = -1;
static int vault_port;
static char vault_addr[64];
static char DIR_[64];
#define VAULT_TOKEN_ "migrate-test-token"

static const char PEM[] = "-----BEGIN RSA PRIVATE KEY-----\n"
                          "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
                          "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
                          "-----END RSA PRIVATE KEY-----\n";

static int start_vault(void)
{
    char script[1024], log[128];
    if (ph_fixture_path("vault_fixture.py", script, sizeof(script)) < 0)
        return -1;
    snprintf(log, sizeof(log), "%s/vault.log", DIR_);
    const char *argv[] = { ph_python(), script, "--token", VAULT_TOKEN_, NULL };
    vault_pid = ph_start_port_fixture(argv, log, &vault_port);
    snprintf(vault_addr, sizeof(vault_addr), "http://127.0.0.1:%d", vault_port);
    return vault_pid < 0 ? -1 : 0;
}

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(DIR_, sizeof(DIR_), "/tmp/aurora-mig-XXXXXX");
    if (!mkdtemp(DIR_))
        return -1;
    if (pg_create(&PG) < 0 || start_vault() < 0)
        return -1;
    if (moto_start(&MOTO, DIR_) < 0) {
        char *log = ph_slurp(MOTO.log, NULL);
        fprintf(stderr, "moto_server did not start:\n%s\n", log ? log : "");
        free(log);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (vault_pid > 0)
        ph_stop(vault_pid, SIGTERM, 5000);
    moto_stop(&MOTO);
    pg_destroy(&PG);
    ph_rmtree(DIR_);
    curl_global_cleanup();
    return 0;
}

/* One configuration naming all three backends, as an operator migrating
 * would have it; `backend` picks the one to open. */
static secrets_config all_backends(const char *backend, const char *data_dir)
{
    secrets_config c = { .backend = backend,
                         .data_dir = data_dir,
                         .vault_addr = vault_addr,
                         .vault_token = VAULT_TOKEN_,
                         .aws_region = "us-east-1",
                         .aws_endpoint = MOTO.endpoint,
                         .aws_access_key_id = MOTO.key_id,
                         .aws_secret_access_key = MOTO.secret,
                         /* a call that must succeed: as long as the tests' other
                          * waits (Vault and AWS stand-ins are Python processes on
                          * CPUs shared with everything else running) */
                         .timeout_ms = 20000 };
    return c;
}

static secrets_t *open_ok(const secrets_config *c)
{
    secrets_t *s = NULL;
    char err[512] = "";
    if (secrets_open(c, &s, err, sizeof(err)) != SECRETS_OK)
        fail_msg("open %s: %s", c->backend, err);
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
        fail_msg("get %s from %s: %s", path, secrets_backend_name(s), err);
    assert_int_equal(len, n);
    assert_memory_equal(got, v, n);
    secrets_free(got, len);
}

typedef struct {
    const char *path;
    const void *val;
    size_t len;
} item;

static const unsigned char BIN[] = { 0x00, 0x9f, 0xff, 0x00, 0x41, 0xc0 };
static const item ITEMS[] = {
    { SECRETS_PATH_GITHUB_APP_PRIVATE_KEY, PEM, sizeof(PEM) - 1 },
    { SECRETS_PATH_GITHUB_APP_WEBHOOK_SECRET, "9f86d081884c7d65", 16 },
    { "aurora/users/usr_1/github/access_token", "gho_16C7e42F292c6912E7710c838347Ae178B4a", 40 },
    { "aurora/users/usr_1/datadog/api_key", BIN, sizeof(BIN) },
    { "aurora/users/usr_2/slack/bot_token", "xoxb-123-456-abc", 16 },
};
#define NITEMS (sizeof(ITEMS) / sizeof(ITEMS[0]))

static void expect_all(secrets_t *s)
{
    for (size_t i = 0; i < NITEMS; i++)
        expect_secret(s, ITEMS[i].path, ITEMS[i].val, ITEMS[i].len);
}

typedef struct {
    size_t seen, ok;
} tally;

static void count_path(void *ud, const char *path, int rc, const char *msg)
{
    tally *t = ud;
    (void)path;
    (void)msg;
    t->seen++;
    t->ok += rc == SECRETS_OK;
}

/* local -> vault -> aws, each copy read back; the sources keep everything. */
static void test_migrate_local_vault_aws(void **state)
{
    (void)state;
    char data[128];
    snprintf(data, sizeof(data), "%s/m1", DIR_);
    secrets_config lc = all_backends("local", data), vc = all_backends("vault", data),
                   ac = all_backends("aws_secrets_manager", data);
    secrets_t *local = open_ok(&lc), *vault = open_ok(&vc), *aws = open_ok(&ac);
    for (size_t i = 0; i < NITEMS; i++)
        put_ok(local, ITEMS[i].path, ITEMS[i].val, ITEMS[i].len);

    size_t copied = 0, failed = 9;
    char err[512] = "";
    tally t = { 0 };
    if (secrets_migrate(local, vault, NULL, count_path, &t, &copied, &failed, err, sizeof(err)) != 0)
        fail_msg("local->vault: %s", err);
    assert_int_equal(copied, NITEMS);
    assert_int_equal(failed, 0);
    assert_int_equal(t.seen, NITEMS);
    assert_int_equal(t.ok, NITEMS);
    expect_all(vault);

    if (secrets_migrate(vault, aws, "aurora/", NULL, NULL, &copied, &failed, err, sizeof(err)) != 0)
        fail_msg("vault->aws: %s", err);
    assert_int_equal(copied, NITEMS);
    expect_all(aws);
    expect_all(local); /* the source is untouched */

    /* A prefix limits the copy; running again is harmless. */
    if (secrets_migrate(aws, local, "aurora/users/usr_1/", NULL, NULL, &copied, &failed, err,
                        sizeof(err)) != 0)
        fail_msg("aws->local: %s", err);
    assert_int_equal(copied, 2);
    expect_all(local);
    secrets_close(local);
    secrets_close(vault);
    secrets_close(aws);
}

/* A destination that refuses one secret: the others are copied, the failure
 * is reported with its path and without its value, nothing is lost. */
static void test_migrate_partial_failure(void **state)
{
    (void)state;
    char data[128];
    snprintf(data, sizeof(data), "%s/m2", DIR_);
    secrets_config lc = all_backends("local", data), vc = all_backends("vault", data);
    secrets_t *local = open_ok(&lc), *vault = open_ok(&vc);
    put_ok(local, "aurora/p/a", "value-a", 7);
    put_ok(local, "aurora/p/blocked", "VALUE-OF-BLOCKED", 16);
    put_ok(local, "aurora/p/c", "value-c", 7);
    /* The fixture answers 403 to writes of that one path (Vault's shape). */
    CURL *c = curl_easy_init();
    char url[128];
    snprintf(url, sizeof(url), "%s/_fixture/fail", vault_addr);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS,
                     "{\"status\":403,\"count\":1,\"match\":\"/v1/aurora/data/p/blocked\"}");
    moto_buf b = { 0 };
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, moto_sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    free(b.data);
    curl_easy_cleanup(c);

    size_t copied = 0, failed = 0;
    char err[512] = "";
    assert_int_equal(secrets_migrate(local, vault, "aurora/p/", NULL, NULL, &copied, &failed, err,
                                     sizeof(err)),
                     -1);
    assert_int_equal(copied, 2);
    assert_int_equal(failed, 1);
    assert_non_null(strstr(err, "aurora/p/blocked"));
    assert_non_null(strstr(err, "403"));
    assert_null(strstr(err, "VALUE-OF-BLOCKED"));
    expect_secret(local, "aurora/p/blocked", "VALUE-OF-BLOCKED", 16);
    /* The next run completes it. */
    assert_int_equal(secrets_migrate(local, vault, "aurora/p/", NULL, NULL, &copied, &failed, err,
                                     sizeof(err)),
                     0);
    assert_int_equal(copied, 3);
    expect_secret(vault, "aurora/p/blocked", "VALUE-OF-BLOCKED", 16);

    /* A source that cannot be listed: nothing is attempted. */
    secrets_config down = all_backends("vault", data);
    char addr[64];
    int held = -1; /* a port of ours, refusing */
    snprintf(addr, sizeof(addr), "http://127.0.0.1:%d", ph_hold_port(0, &held, 0));
    assert_true(held >= 0);
    down.vault_addr = addr;
    down.timeout_ms = 500;
    secrets_t *gone = open_ok(&down);
    assert_int_equal(secrets_migrate(gone, local, NULL, NULL, NULL, &copied, &failed, err,
                                     sizeof(err)),
                     -1);
    assert_int_equal(copied, 0);
    assert_non_null(strstr(err, "unreachable"));
    secrets_close(gone);
    close(held);
    secrets_close(local);
    secrets_close(vault);
}

/* ---- the subcommands, through secrets_cli_main with server settings ------------------------ */

/* Runs `aurora-server secrets <argv…>` in-process with stdout and stderr
 * captured (*out, *errout: malloc'd, may be NULL). */
static int run_cli2(const server_config *cfg, const char *const *argv, char **out, char **errout)
{
    char path[128], epath[128];
    snprintf(path, sizeof(path), "%s/cli-out.txt", DIR_);
    snprintf(epath, sizeof(epath), "%s/cli-err.txt", DIR_);
    fflush(stdout);
    fflush(stderr);
    int saved = dup(1), esaved = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int efd = open(epath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && esaved >= 0 && fd >= 0 && efd >= 0);
    dup2(fd, 1);
    dup2(efd, 2);
    close(fd);
    close(efd);
    int argc = 0;
    while (argv[argc])
        argc++;
    int rc = secrets_cli_main(cfg, argc, (char **)argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved, 1);
    dup2(esaved, 2);
    close(saved);
    close(esaved);
    if (out)
        *out = ph_slurp(path, NULL);
    if (errout)
        *errout = ph_slurp(epath, NULL);
    return rc;
}

static int run_cli(const server_config *cfg, const char *const *argv, char **out)
{
    return run_cli2(cfg, argv, out, NULL);
}

static void set_env(const char *data)
{
    setenv("AURORA_DATA_DIR", data, 1);
    setenv("SECRETS_BACKEND", "local", 1);
    setenv("VAULT_ADDR", vault_addr, 1);
    setenv("VAULT_TOKEN", VAULT_TOKEN_, 1);
    setenv("AWS_SM_REGION", "us-east-1", 1);
    setenv("AWS_SM_ENDPOINT", MOTO.endpoint, 1);
    setenv("AWS_ACCESS_KEY_ID", MOTO.key_id, 1);
    setenv("AWS_SECRET_ACCESS_KEY", MOTO.secret, 1);
    unsetenv("AURORA_CONFIG");
    unsetenv("AURORA_MASTER_KEY");
}

static void test_cli(void **state)
{
    (void)state;
    char data[128], pem_path[160];
    snprintf(data, sizeof(data), "%s/cli", DIR_);
    set_env(data);
    server_config cfg;
    char err[512];
    if (server_config_load(&cfg, err, sizeof(err)) < 0)
        fail_msg("config: %s", err);

    /* put: the guide's PEM, verbatim from its file. */
    snprintf(pem_path, sizeof(pem_path), "%s/key.pem", DIR_);
    FILE *f = fopen(pem_path, "w");
    assert_non_null(f);
    fputs(PEM, f);
    fclose(f);
    char *out = NULL;
    const char *put[] = { "put", SECRETS_PATH_GITHUB_APP_PRIVATE_KEY, "--file", pem_path, NULL };
    assert_int_equal(run_cli(&cfg, put, &out), 0);
    assert_non_null(strstr(out, "\"ref\":\"local:aurora/system/github-app/private-key\""));
    assert_null(strstr(out, "BEGIN RSA"));
    free(out);

    /* list shows paths only. */
    const char *list[] = { "list", "aurora/system/", NULL };
    assert_int_equal(run_cli(&cfg, list, &out), 0);
    assert_non_null(strstr(out, SECRETS_PATH_GITHUB_APP_PRIVATE_KEY));
    free(out);

    /* migrate local -> aws_secrets_manager, then check through the backend. */
    const char *mig[] = { "migrate", "--from", "local", "--to", "aws_secrets_manager",
                          "--prefix", "aurora/system/", NULL };
    assert_int_equal(run_cli(&cfg, mig, &out), 0);
    assert_non_null(strstr(out, "\"copied\":1"));
    assert_non_null(strstr(out, "\"failed\":0"));
    assert_null(strstr(out, "BEGIN RSA"));
    free(out);
    secrets_config ac = all_backends("aws_secrets_manager", data);
    secrets_t *aws = open_ok(&ac);
    expect_secret(aws, SECRETS_PATH_GITHUB_APP_PRIVATE_KEY, PEM, strlen(PEM));
    secrets_close(aws);

    /* rotate-key, then the value still reads through a fresh handle. */
    const char *rot[] = { "rotate-key", NULL };
    assert_int_equal(run_cli(&cfg, rot, &out), 0);
    assert_non_null(strstr(out, "\"reencrypted\":1"));
    free(out);
    secrets_config lc = all_backends("local", data);
    secrets_t *local = open_ok(&lc);
    expect_secret(local, SECRETS_PATH_GITHUB_APP_PRIVATE_KEY, PEM, strlen(PEM));
    secrets_close(local);

    /* delete */
    const char *del[] = { "delete", SECRETS_PATH_GITHUB_APP_PRIVATE_KEY, NULL };
    assert_int_equal(run_cli(&cfg, del, &out), 0);
    free(out);

    /* Usage errors exit 2 without touching anything. */
    const char *bad1[] = { "migrate", "--from", "local", NULL };
    const char *bad2[] = { "migrate", "--from", "vault", "--to", "vault", NULL };
    const char *bad3[] = { "put", "aurora/x", NULL };
    const char *bad4[] = { "frobnicate", NULL };
    const char *bad5[] = { "rotate-key", "--new-key-file", "a", "--new-key-env", "B", NULL };
    assert_int_equal(run_cli(&cfg, bad1, NULL), 2);
    assert_int_equal(run_cli(&cfg, bad2, NULL), 2);
    assert_int_equal(run_cli(&cfg, bad3, NULL), 2);
    assert_int_equal(run_cli(&cfg, bad4, NULL), 2);
    assert_int_equal(run_cli(&cfg, bad5, NULL), 2);
    char *errs = NULL;
    assert_int_equal(run_cli2(&cfg, bad3, NULL, &errs), 2);
    assert_non_null(strstr(errs, "never go on the command line"));
    free(errs);
    /* A backend that is not configured: exit 1 with the reason. */
    const char *bad6[] = { "migrate", "--from", "local", "--to", "gcp", NULL };
    assert_int_equal(run_cli2(&cfg, bad6, NULL, &errs), 1);
    assert_non_null(strstr(errs, "SECRETS_BACKEND must be"));
    free(errs);
    server_config_free(&cfg);
}

/* A stdin that gives some bytes, then fails (a pipe whose writer died
 * mid-way shows up as EOF, but a terminal or a device read can fail). */
static ssize_t failing_read(void *cookie, char *buf, size_t size)
{
    int *calls = cookie;
    if ((*calls)++ == 0) {
        size_t n = size < 8 ? size : 8;
        memcpy(buf, "partial-", n);
        return (ssize_t)n;
    }
    errno = EIO;
    return -1;
}

/* `secrets put --stdin` whose input fails partway: exit 1 naming the read
 * error, nothing stored (it stored the bytes read so far, as if at EOF). */
static void test_cli_put_read_error(void **state)
{
    (void)state;
    char data[128];
    snprintf(data, sizeof(data), "%s/cli-read-error", DIR_);
    set_env(data);
    server_config cfg;
    char err[512];
    if (server_config_load(&cfg, err, sizeof(err)) < 0)
        fail_msg("config: %s", err);
    int calls = 0;
    FILE *in = fopencookie(&calls, "r", (cookie_io_functions_t){ .read = failing_read });
    assert_non_null(in);
    FILE *saved = stdin;
    stdin = in;
    const char *put[] = { "put", "aurora/system/half", "--stdin", NULL };
    char *errs = NULL;
    int rc = run_cli2(&cfg, put, NULL, &errs);
    stdin = saved;
    fclose(in);
    assert_int_equal(rc, 1);
    if (!errs || !strstr(errs, "Input/output error"))
        fail_msg("stderr: %s", errs ? errs : "(none)");
    free(errs);
    secrets_config lc = all_backends("local", data);
    secrets_t *local = open_ok(&lc);
    unsigned char *got = NULL;
    size_t len = 0;
    assert_int_equal(secrets_get(local, "aurora/system/half", &got, &len, err, sizeof(err)),
                     SECRETS_NOT_FOUND);
    secrets_close(local);
    server_config_free(&cfg);
}

/* ---- the state database holds references only --------------------------------------------- */

/* True if any file whose name starts with base (the db, -wal, -shm) holds
 * needle. */
static int files_contain(const char *base, const void *needle, size_t n)
{
    static const char *const sfx[] = { "", "-wal", "-shm", "-journal" };
    for (size_t i = 0; i < 4; i++) {
        char p[256];
        snprintf(p, sizeof(p), "%s%s", base, sfx[i]);
        if (ph_file_contains(p, needle, n))
            return 1;
    }
    return 0;
}

/* Stores a credential the way the server does — the value into the
 * secrets backend, its reference (secrets_ref) into the state database —
 * then searches the database's files and a pg_dump for the value.  The
 * connector tables do not exist yet, so the reference goes into a table of
 * its own through the same engine interface (db.h) the store uses. */
static void store_credential(const char *db_url, secrets_t *sec, const char *path,
                             const void *val, size_t len, char *ref, size_t refcap)
{
    store_t *st = NULL;
    char err[512];
    if (store_open(db_url, &st, err, sizeof(err)) != STORE_OK)
        fail_msg("store_open: %s", err);
    store_org o;
    assert_int_equal(store_org_create(st, "refs-only", &o), STORE_OK);
    store_close(st);

    put_ok(sec, path, val, len);
    assert_int_equal(secrets_ref(sec, path, ref, refcap), 0);

    const db_engine *eng = db_engine_for(db_url);
    db_t *db = NULL;
    assert_int_equal(eng->open(db_url, &db, err, sizeof(err)), DB_OK);
    assert_int_equal(eng->exec(db,
                               "CREATE TABLE IF NOT EXISTS credential_refs ("
                               " org_id TEXT NOT NULL, name TEXT NOT NULL, secret_ref TEXT NOT NULL)",
                               NULL, 0, NULL),
                     DB_OK);
    db_param p[] = { DB_P_TEXT(o.id), DB_P_TEXT("github"), DB_P_TEXT(ref) };
    assert_int_equal(eng->exec(db,
                               "INSERT INTO credential_refs (org_id, name, secret_ref)"
                               " VALUES (?, ?, ?)",
                               p, 3, NULL),
                     DB_OK);
    eng->close(db);
}

/* The value, and its base64 and hex forms, must appear in none of files. */
static void assert_value_absent(const char *base, const unsigned char *val, size_t len)
{
    char *b64 = crypto_base64(val, len);
    char *hex = malloc(2 * len + 1);
    assert_non_null(b64);
    assert_non_null(hex);
    crypto_hex(val, len, hex);
    assert_false(files_contain(base, val, len));
    assert_false(files_contain(base, val, 24)); /* not even a prefix of it */
    assert_false(files_contain(base, b64, strlen(b64)));
    assert_false(files_contain(base, hex, strlen(hex)));
    free(b64);
    free(hex);
}

static void make_secret(unsigned char *val, size_t len)
{
    /* Random, so no file can contain it by accident or from another run. */
    unsigned char rnd[24];
    assert_int_equal(crypto_random(rnd, sizeof(rnd)), 0);
    char hex[49];
    crypto_hex(rnd, sizeof(rnd), hex);
    snprintf((char *)val, len, "-----BEGIN PRIVATE KEY-----\nsk_live_%s\n-----END PRIVATE KEY-----\n",
             hex);
}

static void test_state_db_holds_references_only(void **state)
{
    (void)state;
    char data[128], sqlite_path[192], sqlite_url[224], ref[400];
    snprintf(data, sizeof(data), "%s/refs", DIR_);
    secrets_config lc = all_backends("local", data);
    secrets_t *local = open_ok(&lc); /* creates data/ */
    unsigned char val[160];
    make_secret(val, sizeof(val));
    size_t len = strlen((char *)val);

    /* SQLite (the default state store, in the same data directory). */
    snprintf(sqlite_path, sizeof(sqlite_path), "%s/aurora.db", data);
    snprintf(sqlite_url, sizeof(sqlite_url), "sqlite://%s", sqlite_path);
    store_credential(sqlite_url, local, "aurora/users/usr_9/github/token", val, len, ref,
                     sizeof(ref));
    assert_string_equal(ref, "local:aurora/users/usr_9/github/token");
    assert_true(files_contain(sqlite_path, ref, strlen(ref))); /* the search works */
    assert_value_absent(sqlite_path, val, len);
    /* The local backend's own file holds it only encrypted. */
    char secrets_db[192];
    snprintf(secrets_db, sizeof(secrets_db), "%s/secrets.db", data);
    assert_value_absent(secrets_db, val, len);
    expect_secret(local, "aurora/users/usr_9/github/token", val, len);

    /* PostgreSQL, with Vault as the backend this time: pg_dump of the whole
     * database holds the reference, not the value. */
    assert_int_equal(pg_create_db(&PG, "refs"), 0);
    char pg_url_[320], dump[192];
    pg_url(&PG, "refs", pg_url_, sizeof(pg_url_));
    secrets_config vc = all_backends("vault", data);
    secrets_t *vault = open_ok(&vc);
    make_secret(val, sizeof(val));
    len = strlen((char *)val);
    store_credential(pg_url_, vault, SECRETS_PATH_GITHUB_APP_PRIVATE_KEY, val, len, ref,
                     sizeof(ref));
    snprintf(dump, sizeof(dump), "%s/refs.sql", DIR_);
    assert_int_equal(pg_dump_to(&PG, "refs", dump), 0);
    assert_true(ph_file_contains(dump, "vault:aurora/system/github-app/private-key", 42));
    assert_true(ph_file_contains(dump, "refs-only", 9));
    assert_value_absent(dump, val, len);
    expect_secret(vault, SECRETS_PATH_GITHUB_APP_PRIVATE_KEY, val, len);
    secrets_close(vault);
    secrets_close(local);
}

/* A secrets backend that is down fails only what needs it: the state store
 * goes on working beside it. */
static void test_backend_down_store_unaffected(void **state)
{
    (void)state;
    char data[128], url[320], addr[64];
    snprintf(data, sizeof(data), "%s/down", DIR_);
    int held = -1; /* a port of ours, refusing */
    snprintf(addr, sizeof(addr), "http://127.0.0.1:%d", ph_hold_port(0, &held, 0));
    assert_true(held >= 0);
    secrets_config vc = all_backends("vault", data);
    vc.vault_addr = addr;
    vc.timeout_ms = 500;
    secrets_t *vault = open_ok(&vc); /* starts without Vault */
    assert_int_equal(pg_create_db(&PG, "down"), 0);
    pg_url(&PG, "down", url, sizeof(url));
    store_t *st = NULL;
    char err[512];
    assert_int_equal(store_open(url, &st, err, sizeof(err)), STORE_OK);
    unsigned char *v = NULL;
    size_t n = 0;
    long long t0 = ph_now_ms();
    assert_int_equal(secrets_get(vault, SECRETS_PATH_GITHUB_APP_PRIVATE_KEY, &v, &n, err,
                                 sizeof(err)),
                     SECRETS_E_UNAVAILABLE);
    assert_true(ph_now_ms() - t0 < 10000); /* refused (and retried) at once: not a hang */
    assert_non_null(strstr(err, "vault"));
    assert_non_null(strstr(err, SECRETS_PATH_GITHUB_APP_PRIVATE_KEY));
    store_org o, got;
    assert_int_equal(store_org_create(st, "still serving", &o), STORE_OK);
    assert_int_equal(store_org_get(st, o.id, &got), STORE_OK);
    store_close(st);
    secrets_close(vault);
    close(held);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate_local_vault_aws),
        cmocka_unit_test(test_migrate_partial_failure),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_cli_put_read_error),
        cmocka_unit_test(test_state_db_holds_references_only),
        cmocka_unit_test(test_backend_down_store_unaffected),
    };
    return cmocka_run_group_tests_name("secrets_migrate", tests, group_setup, group_teardown);
}
