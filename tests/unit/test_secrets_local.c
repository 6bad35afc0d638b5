/* test_secrets_local.c — the local secrets backend (server/secrets_local.c)
 * and the checks every backend shares (server/secrets.c).
 *
 * Each test gets a fresh data directory.  Tampering and corruption are done
 * to the real store file with sqlite3 or raw writes, so the tests check what
 * the backend does with what is really on disk. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proc_harness.h"
#include "secrets.h"
#include "secrets_local.h"

static const char PEM[] =
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
    "LxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW/VDL5AaWTg0nLVkjRo\n"
    "-----END RSA PRIVATE KEY-----\n";

typedef struct {
    char dir[64];
    char db[128];
    char keyfile[128];
    secrets_config cfg;
    secrets_t *s;
} fixture;

static secrets_t *open_ok(const secrets_config *cfg)
{
    secrets_t *s = NULL;
    char err[512] = "";
    int rc = secrets_open(cfg, &s, err, sizeof(err));
    if (rc != SECRETS_OK)
        fail_msg("secrets_open: %s", err);
    return s;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/aurora-sec-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/secrets.db", f->dir);
    snprintf(f->keyfile, sizeof(f->keyfile), "%s/master.key", f->dir);
    f->cfg.backend = "local";
    f->cfg.data_dir = f->dir;
    f->s = open_ok(&f->cfg);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    secrets_close(f->s);
    assert_int_equal(ph_rmtree(f->dir), 0);
    free(f);
    return 0;
}

static void put_ok(secrets_t *s, const char *path, const void *v, size_t n)
{
    char err[512];
    int rc = secrets_put(s, path, v, n, err, sizeof(err));
    if (rc != SECRETS_OK)
        fail_msg("put %s: %s", path, err);
}

static void expect_secret(secrets_t *s, const char *path, const void *v, size_t n)
{
    unsigned char *got = NULL;
    size_t len = 0;
    char err[512];
    int rc = secrets_get(s, path, &got, &len, err, sizeof(err));
    if (rc != SECRETS_OK)
        fail_msg("get %s: %s", path, err);
    assert_int_equal(len, n);
    assert_memory_equal(got, v, n);
    assert_int_equal(got[len], '\0');
    secrets_free(got, len);
}

/* get must fail with rc; err must contain needle and name backend and path. */
static void expect_get_error(secrets_t *s, const char *path, int rc, const char *needle)
{
    unsigned char *got = (unsigned char *)"x";
    size_t len = 7;
    char err[512] = "";
    assert_int_equal(secrets_get(s, path, &got, &len, err, sizeof(err)), rc);
    assert_null(got);
    assert_int_equal(len, 0);
    if (needle && !strstr(err, needle))
        fail_msg("error \"%s\" lacks \"%s\"", err, needle);
    assert_non_null(strstr(err, "local"));
    assert_non_null(strstr(err, path));
}

static void sql(const char *db, const char *q)
{
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    char *msg = NULL;
    if (sqlite3_exec(h, q, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", q, msg ? msg : "?");
    sqlite3_close(h);
}

static long long sql_int(const char *db, const char *q)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, q, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

/* ---- round trips ----------------------------------------------------------------- */

static void test_roundtrip(void **state)
{
    fixture *f = *state;
    put_ok(f->s, SECRETS_PATH_GITHUB_APP_PRIVATE_KEY, PEM, strlen(PEM));
    expect_secret(f->s, SECRETS_PATH_GITHUB_APP_PRIVATE_KEY, PEM, strlen(PEM));

    /* Bytes, not strings: NULs, 0xff, a lone continuation byte. */
    const unsigned char bin[] = { 0x00, 0x01, 0xff, 0x80, 0x00, 'a', '\n', 0x00, 0xc3 };
    put_ok(f->s, "aurora/users/usr_1/datadog/blob", bin, sizeof(bin));
    expect_secret(f->s, "aurora/users/usr_1/datadog/blob", bin, sizeof(bin));

    /* Replacing keeps one value, the new one. */
    put_ok(f->s, SECRETS_PATH_GITHUB_APP_WEBHOOK_SECRET, "first", 5);
    put_ok(f->s, SECRETS_PATH_GITHUB_APP_WEBHOOK_SECRET, "second-value", 12);
    expect_secret(f->s, SECRETS_PATH_GITHUB_APP_WEBHOOK_SECRET, "second-value", 12);
    assert_int_equal(sql_int(f->db, "SELECT COUNT(*) FROM secrets"), 3);

    /* One byte and exactly the maximum. */
    put_ok(f->s, "aurora/x/one", "z", 1);
    expect_secret(f->s, "aurora/x/one", "z", 1);
    unsigned char *big = malloc(SECRETS_MAX_VALUE);
    assert_non_null(big);
    for (size_t i = 0; i < SECRETS_MAX_VALUE; i++)
        big[i] = (unsigned char)(i * 7 + 3);
    put_ok(f->s, "aurora/x/big", big, SECRETS_MAX_VALUE);
    expect_secret(f->s, "aurora/x/big", big, SECRETS_MAX_VALUE);

    /* The store survives reopening. */
    secrets_close(f->s);
    f->s = open_ok(&f->cfg);
    expect_secret(f->s, SECRETS_PATH_GITHUB_APP_PRIVATE_KEY, PEM, strlen(PEM));
    expect_secret(f->s, "aurora/x/big", big, SECRETS_MAX_VALUE);
    free(big);

    /* The plaintext is nowhere in the files. */
    assert_false(ph_file_contains(f->db, "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLe", 52));
    assert_false(ph_file_contains(f->db, "second-value", 12));
}

static void test_list_and_delete(void **state)
{
    fixture *f = *state;
    const char *paths[] = { "aurora/users/u2/github/token", "aurora/users/u1/slack/token",
                            "aurora/users/u1/github/token", "aurora/users/u1/github/refresh",
                            "aurora/system/github-app/private-key" };
    for (size_t i = 0; i < 5; i++)
        put_ok(f->s, paths[i], "v", 1);

    char **l = NULL;
    size_t n = 99;
    char err[512];
    assert_int_equal(secrets_list(f->s, "aurora/users/u1/", &l, &n, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(n, 3);
    assert_string_equal(l[0], "aurora/users/u1/github/refresh"); /* sorted */
    assert_string_equal(l[1], "aurora/users/u1/github/token");
    assert_string_equal(l[2], "aurora/users/u1/slack/token");
    secrets_list_free(l, n);

    /* Prefixes are byte prefixes, not folders. */
    assert_int_equal(secrets_list(f->s, "aurora/users/u", &l, &n, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(n, 4);
    secrets_list_free(l, n);
    assert_int_equal(secrets_list(f->s, "", &l, &n, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(n, 5);
    assert_string_equal(l[0], "aurora/system/github-app/private-key");
    secrets_list_free(l, n);
    assert_int_equal(secrets_list(f->s, "aur", &l, &n, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(n, 5);
    secrets_list_free(l, n);
    assert_int_equal(secrets_list(f->s, "other/", &l, &n, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(n, 0);
    assert_null(l);
    assert_int_equal(secrets_list(f->s, "aurora/nothing/", &l, &n, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(n, 0);
    /* A prefix with characters no path may hold is refused. */
    assert_int_equal(secrets_list(f->s, "aurora/%", &l, &n, err, sizeof(err)), SECRETS_E_INVALID);

    assert_int_equal(secrets_delete(f->s, "aurora/users/u1/github/token", err, sizeof(err)),
                     SECRETS_OK);
    expect_get_error(f->s, "aurora/users/u1/github/token", SECRETS_NOT_FOUND, "not found");
    /* Deleting again is fine; the neighbours are untouched. */
    assert_int_equal(secrets_delete(f->s, "aurora/users/u1/github/token", err, sizeof(err)),
                     SECRETS_OK);
    expect_secret(f->s, "aurora/users/u1/github/refresh", "v", 1);
    assert_int_equal(secrets_list(f->s, "aurora/users/u1/", &l, &n, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(n, 2);
    secrets_list_free(l, n);
}

/* A listing holds at most list_max_paths paths, whatever the backend: over
 * it, a clear error and nothing returned (the Vault walk's own bounds are in
 * test_secrets_vault.c). */
static void test_listing_is_bounded(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < 5; i++) {
        char p[64];
        snprintf(p, sizeof(p), "aurora/many/s%d", i);
        put_ok(f->s, p, "v", 1);
    }
    secrets_config c = f->cfg;
    c.list_max_paths = 3;
    secrets_t *s = open_ok(&c);
    char **l = NULL, err[512] = "";
    size_t n = 0;
    assert_int_equal(secrets_list(s, "aurora/many/", &l, &n, err, sizeof(err)), SECRETS_E_OTHER);
    assert_null(l);
    assert_int_equal(n, 0);
    if (!strstr(err, "listing stopped: more than 3 paths") || !strstr(err, "local"))
        fail_msg("%s", err);
    assert_int_equal(secrets_list(s, "aurora/many/s1", &l, &n, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(n, 1);
    secrets_list_free(l, n);
    secrets_close(s);
}

/* ---- keys ----------------------------------------------------------------------------- */

/* A store left readable by others (created by an older version under the
 * umask, or copied in by hand) is made 0600 when it is opened, as
 * aurora.db is; a file of others' or a link is not followed into. */
static void test_existing_store_made_private(void **state)
{
    fixture *f = *state;
    put_ok(f->s, "aurora/a", "kept", 4);
    secrets_close(f->s);
    f->s = NULL;
    assert_int_equal(chmod(f->db, 0644), 0);
    f->s = open_ok(&f->cfg);
    struct stat st;
    assert_int_equal(stat(f->db, &st), 0);
    if ((st.st_mode & 0777) != 0600)
        fail_msg("secrets.db left mode %03o", (unsigned)(st.st_mode & 0777));
    expect_secret(f->s, "aurora/a", "kept", 4);
}

static void test_key_file_created_0600(void **state)
{
    fixture *f = *state;
    struct stat st;
    assert_int_equal(stat(f->keyfile, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(f->db, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char *text = ph_slurp(f->keyfile, NULL);
    assert_non_null(text);
    unsigned char key[SECRETS_MASTER_KEY_LEN];
    assert_int_equal(secrets_local_parse_key(text, key), 0);
    free(text);

    /* The same key is used again on the next run. */
    put_ok(f->s, "aurora/a", "persisted", 9);
    char id1[17], id2[17];
    assert_int_equal(secrets_local_key_id(f->s, id1), 0);
    secrets_close(f->s);
    f->s = open_ok(&f->cfg);
    assert_int_equal(secrets_local_key_id(f->s, id2), 0);
    assert_string_equal(id1, id2);
    expect_secret(f->s, "aurora/a", "persisted", 9);

    /* A key file others can read is refused, with the fix in the message. */
    secrets_close(f->s);
    f->s = NULL;
    assert_int_equal(chmod(f->keyfile, 0644), 0);
    char err[512] = "";
    secrets_t *s = NULL;
    assert_int_equal(secrets_open(&f->cfg, &s, err, sizeof(err)), SECRETS_E_INVALID);
    assert_null(s);
    assert_non_null(strstr(err, "chmod 600"));
    assert_int_equal(chmod(f->keyfile, 0600), 0);
    f->s = open_ok(&f->cfg);
}

static void test_key_from_environment(void **state)
{
    fixture *f = *state;
    secrets_close(f->s);
    f->s = NULL;
    char dir2[96];
    snprintf(dir2, sizeof(dir2), "%s/envkey", f->dir);
    secrets_config c = { .backend = "local", .data_dir = dir2 };
    /* hex */
    c.master_key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    secrets_t *s = open_ok(&c);
    put_ok(s, "aurora/e", "from env", 8);
    secrets_close(s);
    /* The same key as base64 opens the same store; no key file was made. */
    c.master_key = "ABEiM0RVZneImaq7zN3u/wARIjNEVWZ3iJmqu8zd7v8=\n";
    s = open_ok(&c);
    expect_secret(s, "aurora/e", "from env", 8);
    secrets_close(s);
    char kf[128];
    snprintf(kf, sizeof(kf), "%s/master.key", dir2);
    assert_int_equal(access(kf, F_OK), -1);

    /* Malformed keys are refused without echoing them. */
    const char *bad[] = { "short", "00112233445566778899aabbccddeeff", "zz112233445566778899aabbccdd"
                                                                       "eeff00112233445566778899aa"
                                                                       "bbccddeeff" };
    for (size_t i = 0; i < 3; i++) {
        c.master_key = bad[i];
        char err[512] = "";
        assert_int_equal(secrets_open(&c, &s, err, sizeof(err)), SECRETS_E_INVALID);
        assert_non_null(strstr(err, "AURORA_MASTER_KEY"));
        assert_null(strstr(err, bad[i]));
    }
    f->s = open_ok(&f->cfg);
}

static void test_wrong_master_key_refused(void **state)
{
    fixture *f = *state;
    put_ok(f->s, "aurora/w", "guarded", 7);
    secrets_close(f->s);
    f->s = NULL;
    secrets_config c = f->cfg;
    const char *wrong = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
    c.master_key = wrong;
    secrets_t *s = NULL;
    char err[512] = "";
    assert_int_equal(secrets_open(&c, &s, err, sizeof(err)), SECRETS_E_INTEGRITY);
    assert_null(s);
    assert_non_null(strstr(err, "wrong master key"));
    assert_null(strstr(err, wrong));
    /* A key file holding another key: refused the same way. */
    char *orig = ph_slurp(f->keyfile, NULL);
    assert_non_null(orig);
    FILE *kf = fopen(f->keyfile, "w");
    assert_non_null(kf);
    fputs("ZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=\n", kf);
    fclose(kf);
    assert_int_equal(secrets_open(&f->cfg, &s, err, sizeof(err)), SECRETS_E_INTEGRITY);
    assert_non_null(strstr(err, "wrong master key"));
    /* Nothing was lost: the right key still reads it. */
    kf = fopen(f->keyfile, "w");
    assert_non_null(kf);
    fputs(orig, kf);
    fclose(kf);
    free(orig);
    f->s = open_ok(&f->cfg);
    expect_secret(f->s, "aurora/w", "guarded", 7);
}

/* ---- tampering and corruption ----------------------------------------------------------------- */

static void test_tampered_ciphertext_refused(void **state)
{
    fixture *f = *state;
    put_ok(f->s, "aurora/t/a", "alpha-secret", 12);
    put_ok(f->s, "aurora/t/b", "bravo-secret", 12);
    put_ok(f->s, "aurora/t/c", "charlie-secret", 14);
    put_ok(f->s, "aurora/t/d", "delta-secret", 12);
    put_ok(f->s, "aurora/t/keep", "untouched", 9);

    /* A changed first ciphertext byte (a constant 00 left it as it was one time in 256). */
    sql(f->db, "UPDATE secrets SET ciphertext = CASE WHEN substr(ciphertext, 1, 1) = x'00'"
               " THEN x'01' ELSE x'00' END || substr(ciphertext, 2) WHERE path = 'aurora/t/a'");
    expect_get_error(f->s, "aurora/t/a", SECRETS_E_INTEGRITY, "tampered");
    /* Another path's (valid) ciphertext moved here. */
    sql(f->db, "UPDATE secrets SET nonce = (SELECT nonce FROM secrets WHERE path = 'aurora/t/c'),"
               " ciphertext = (SELECT ciphertext FROM secrets WHERE path = 'aurora/t/c')"
               " WHERE path = 'aurora/t/b'");
    expect_get_error(f->s, "aurora/t/b", SECRETS_E_INTEGRITY, "tampered");
    /* A changed nonce; a cut-off tag. */
    sql(f->db, "UPDATE secrets SET nonce = zeroblob(12) WHERE path = 'aurora/t/c'");
    expect_get_error(f->s, "aurora/t/c", SECRETS_E_INTEGRITY, "tampered");
    sql(f->db, "UPDATE secrets SET ciphertext = substr(ciphertext, 1, 5) WHERE path = 'aurora/t/d'");
    expect_get_error(f->s, "aurora/t/d", SECRETS_E_INTEGRITY, "tampered");
    /* A relabelled key id. */
    sql(f->db, "UPDATE secrets SET key_id = '0000000000000000' WHERE path = 'aurora/t/a'");
    expect_get_error(f->s, "aurora/t/a", SECRETS_E_INTEGRITY, "master key");
    /* The rest is intact, and a refused value can be written anew. */
    expect_secret(f->s, "aurora/t/keep", "untouched", 9);
    put_ok(f->s, "aurora/t/a", "alpha-again", 11);
    expect_secret(f->s, "aurora/t/a", "alpha-again", 11);
}

static void assert_printable(const char *err)
{
    for (const char *p = err; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            fail_msg("control character 0x%02x in \"%s\"", (unsigned char)*p, err);
}

/* The store's text that errors quote (a row's key id, the store's key id,
 * a row's path at a rotation) comes from a file another process may have
 * written: a line break in it would start a log line (or a line of the
 * CLI's output) of its choosing, an escape reach the terminal.  Quoted
 * printable. */
static void test_stored_text_made_printable(void **state)
{
    fixture *f = *state;
    put_ok(f->s, "aurora/kid/a", "alpha", 5);
    sql(f->db, "UPDATE secrets SET key_id = 'ab' || char(10) || '2026 forged' || char(27) || '[2J'"
               " WHERE path = 'aurora/kid/a'");
    char err[512] = "";
    unsigned char *v = NULL;
    size_t n = 0;
    assert_int_equal(secrets_get(f->s, "aurora/kid/a", &v, &n, err, sizeof(err)),
                     SECRETS_E_INTEGRITY);
    assert_non_null(strstr(err, "forged"));
    assert_printable(err);

    /* A rotation stops at a row it cannot read, naming its path. */
    sql(f->db, "DELETE FROM secrets");
    put_ok(f->s, "aurora/kid/b", "bravo", 5);
    sql(f->db, "UPDATE secrets SET path = 'aurora/kid/b' || char(13) || char(10) || 'forged'");
    assert_int_not_equal(secrets_local_rotate_key(f->s, NULL, NULL, NULL, err, sizeof(err)),
                         SECRETS_OK);
    assert_non_null(strstr(err, "forged"));
    assert_printable(err);

    /* The store's own key id, quoted when it is not the configured key's. */
    secrets_close(f->s);
    f->s = NULL;
    sql(f->db, "UPDATE meta SET v = 'zz' || char(10) || 'forged' WHERE k = 'key_id'");
    secrets_t *s = NULL;
    assert_int_equal(secrets_open(&f->cfg, &s, err, sizeof(err)), SECRETS_E_INTEGRITY);
    assert_null(s);
    assert_non_null(strstr(err, "forged"));
    assert_printable(err);
}

/* A row without a path (SQLite lets a TEXT PRIMARY KEY be NULL): a
 * damaged or tampered store.  The rotation stops at it with an error, as
 * at any row it cannot read, instead of crashing on it. */
static void test_rotation_stops_at_a_row_without_a_path(void **state)
{
    fixture *f = *state;
    put_ok(f->s, "aurora/np/a", "alpha", 5);
    sql(f->db, "INSERT INTO secrets (path, key_id, nonce, ciphertext, updated_at)"
               " SELECT NULL, key_id, nonce, ciphertext, updated_at FROM secrets");
    char err[512] = "";
    assert_int_equal(secrets_local_rotate_key(f->s, NULL, NULL, NULL, err, sizeof(err)),
                     SECRETS_E_INTEGRITY);
    if (!strstr(err, "without a path") || !strstr(err, "nothing was rotated"))
        fail_msg("error \"%s\"", err);
    expect_secret(f->s, "aurora/np/a", "alpha", 5);
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

static void expect_open_error(const secrets_config *c, int rc, const char *needle)
{
    secrets_t *s = (secrets_t *)(uintptr_t)1;
    char err[512] = "";
    assert_int_equal(secrets_open(c, &s, err, sizeof(err)), rc);
    assert_null(s);
    if (needle && !strstr(err, needle))
        fail_msg("open error \"%s\" lacks \"%s\"", err, needle);
}

static void test_corrupted_store_file(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < 40; i++) {
        char p[64], v[64];
        snprintf(p, sizeof(p), "aurora/c/%02d", i);
        snprintf(v, sizeof(v), "value-%02d-padding-padding-padding-padding", i);
        put_ok(f->s, p, v, strlen(v));
    }
    secrets_close(f->s);
    f->s = NULL;
    size_t len = 0;
    char *good = ph_slurp(f->db, &len);
    assert_non_null(good);
    assert_true(len >= 4096);
    /* A clean close checkpoints and removes the WAL: the file is the store. */
    char wal[160];
    snprintf(wal, sizeof(wal), "%s-wal", f->db);
    assert_int_equal(access(wal, F_OK), -1);

    /* 1: not a database at all. */
    char junk[8192];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)("garbage!"[i % 8]);
    write_file(f->db, junk, sizeof(junk));
    expect_open_error(&f->cfg, SECRETS_E_INTEGRITY, "corrupt or not a secrets store");

    /* 2: a healthy SQLite database of some other program. */
    unlink(f->db);
    {
        sqlite3 *h = NULL;
        assert_int_equal(sqlite3_open(f->db, &h), SQLITE_OK);
        assert_int_equal(sqlite3_exec(h, "CREATE TABLE t (x); INSERT INTO t VALUES (1)", NULL,
                                      NULL, NULL),
                         SQLITE_OK);
        sqlite3_close(h);
    }
    expect_open_error(&f->cfg, SECRETS_E_INTEGRITY, "not an Aurora secrets store");

    /* 3: our store with a page overwritten in the middle. */
    char *bad = malloc(len);
    assert_non_null(bad);
    memcpy(bad, good, len);
    memset(bad + len / 2, 0x5a, 512);
    write_file(f->db, bad, len);
    secrets_t *s = NULL;
    char err[512] = "";
    int rc = secrets_open(&f->cfg, &s, err, sizeof(err));
    if (rc == SECRETS_OK) {
        /* SQLite's structure survived: then every value read is either the
         * right one or refused, never different bytes. */
        for (int i = 0; i < 40; i++) {
            char p[64], v[64];
            snprintf(p, sizeof(p), "aurora/c/%02d", i);
            snprintf(v, sizeof(v), "value-%02d-padding-padding-padding-padding", i);
            unsigned char *got = NULL;
            size_t n = 0;
            int g = secrets_get(s, p, &got, &n, err, sizeof(err));
            if (g == SECRETS_OK) {
                assert_int_equal(n, strlen(v));
                assert_memory_equal(got, v, n);
                secrets_free(got, n);
            } else {
                assert_true(g == SECRETS_E_INTEGRITY || g == SECRETS_NOT_FOUND);
            }
        }
        secrets_close(s);
    } else {
        assert_int_equal(rc, SECRETS_E_INTEGRITY);
        assert_non_null(strstr(err, "corrupt"));
    }
    free(bad);

    /* 4: truncated. */
    write_file(f->db, good, 100);
    expect_open_error(&f->cfg, SECRETS_E_INTEGRITY, NULL);

    /* The intact file is as good as ever. */
    write_file(f->db, good, len);
    free(good);
    f->s = open_ok(&f->cfg);
    expect_secret(f->s, "aurora/c/07", "value-07-padding-padding-padding-padding", 40);
}

/* ---- rotation ----------------------------------------------------------------------------------- */

static void test_rotate_key(void **state)
{
    fixture *f = *state;
    const unsigned char bin[] = { 0, 1, 2, 0xfe, 0xff, 0 };
    put_ok(f->s, SECRETS_PATH_GITHUB_APP_PRIVATE_KEY, PEM, strlen(PEM));
    put_ok(f->s, "aurora/users/u1/x/bin", bin, sizeof(bin));
    put_ok(f->s, "aurora/users/u1/x/text", "plain", 5);
    char *old_key = ph_slurp(f->keyfile, NULL);
    assert_non_null(old_key);
    char old_id[17], new_id[17], id_now[17];
    assert_int_equal(secrets_local_key_id(f->s, old_id), 0);

    size_t count = 0;
    char err[512] = "";
    int rc = secrets_local_rotate_key(f->s, NULL, &count, new_id, err, sizeof(err));
    if (rc != SECRETS_OK)
        fail_msg("rotate: %s", err);
    assert_int_equal(count, 3);
    assert_string_not_equal(old_id, new_id);
    assert_int_equal(secrets_local_key_id(f->s, id_now), 0);
    assert_string_equal(id_now, new_id);

    /* Every row is under the new key; the key file holds it, still 0600. */
    char q[128];
    snprintf(q, sizeof(q), "SELECT COUNT(*) FROM secrets WHERE key_id = '%s'", new_id);
    assert_int_equal(sql_int(f->db, q), 3);
    char *new_key = ph_slurp(f->keyfile, NULL);
    assert_non_null(new_key);
    assert_string_not_equal(old_key, new_key);
    struct stat st;
    assert_int_equal(stat(f->keyfile, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char nextf[160];
    snprintf(nextf, sizeof(nextf), "%s.new", f->keyfile);
    assert_int_equal(access(nextf, F_OK), -1);

    /* Readable now and after a reopen with only the new key. */
    expect_secret(f->s, SECRETS_PATH_GITHUB_APP_PRIVATE_KEY, PEM, strlen(PEM));
    secrets_close(f->s);
    f->s = open_ok(&f->cfg);
    expect_secret(f->s, "aurora/users/u1/x/bin", bin, sizeof(bin));
    expect_secret(f->s, "aurora/users/u1/x/text", "plain", 5);

    /* The old key is no longer needed — and no longer accepted. */
    secrets_config c = f->cfg;
    c.master_key = old_key;
    secrets_t *s = NULL;
    assert_int_equal(secrets_open(&c, &s, err, sizeof(err)), SECRETS_E_INTEGRITY);
    assert_non_null(strstr(err, "wrong master key"));
    free(old_key);
    free(new_key);

    /* The same key again is refused; another backend has no rotation. */
    unsigned char k[SECRETS_MASTER_KEY_LEN];
    char *cur = ph_slurp(f->keyfile, NULL);
    assert_int_equal(secrets_local_parse_key(cur, k), 0);
    free(cur);
    assert_int_equal(secrets_local_rotate_key(f->s, k, NULL, NULL, err, sizeof(err)),
                     SECRETS_E_INVALID);
}

static void test_rotate_env_key_and_failure(void **state)
{
    fixture *f = *state;
    secrets_close(f->s);
    f->s = NULL;
    char dir2[96];
    snprintf(dir2, sizeof(dir2), "%s/env", f->dir);
    const char *k1 = "1111111111111111111111111111111111111111111111111111111111111111";
    const char *k2 = "2222222222222222222222222222222222222222222222222222222222222222";
    secrets_config c = { .backend = "local", .data_dir = dir2, .master_key = k1 };
    secrets_t *s = open_ok(&c);
    put_ok(s, "aurora/r/1", "one", 3);
    put_ok(s, "aurora/r/2", "two", 3);
    char err[512] = "";
    /* From the environment: a new key must be given. */
    assert_int_equal(secrets_local_rotate_key(s, NULL, NULL, NULL, err, sizeof(err)),
                     SECRETS_E_INVALID);
    assert_non_null(strstr(err, "AURORA_MASTER_KEY"));

    /* A value that fails authentication stops the rotation: nothing moves. */
    char db[128];
    snprintf(db, sizeof(db), "%s/secrets.db", dir2);
    sql(db, "UPDATE secrets SET ciphertext = zeroblob(20) WHERE path = 'aurora/r/2'");
    unsigned char nk[SECRETS_MASTER_KEY_LEN];
    assert_int_equal(secrets_local_parse_key(k2, nk), 0);
    assert_int_equal(secrets_local_rotate_key(s, nk, NULL, NULL, err, sizeof(err)),
                     SECRETS_E_INTEGRITY);
    assert_non_null(strstr(err, "aurora/r/2"));
    assert_non_null(strstr(err, "nothing was rotated"));
    expect_secret(s, "aurora/r/1", "one", 3);
    assert_int_equal(secrets_delete(s, "aurora/r/2", err, sizeof(err)), SECRETS_OK);

    size_t count = 0;
    assert_int_equal(secrets_local_rotate_key(s, nk, &count, NULL, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(count, 1);
    secrets_close(s);
    /* The operator now sets AURORA_MASTER_KEY to the new key. */
    assert_int_equal(secrets_open(&c, &s, err, sizeof(err)), SECRETS_E_INTEGRITY);
    c.master_key = k2;
    s = open_ok(&c);
    expect_secret(s, "aurora/r/1", "one", 3);
    secrets_close(s);
    f->s = open_ok(&f->cfg);
}

/* Rotation interrupted between its commit and the key-file rename: the next
 * open completes it.  A stray <keyfile>.new of an uncommitted rotation is
 * ignored. */
static void test_rotation_recovery(void **state)
{
    fixture *f = *state;
    put_ok(f->s, "aurora/rec/1", "survives", 8);
    char *old_key = ph_slurp(f->keyfile, NULL);
    assert_non_null(old_key);
    char err[512];
    assert_int_equal(secrets_local_rotate_key(f->s, NULL, NULL, NULL, err, sizeof(err)),
                     SECRETS_OK);
    secrets_close(f->s);
    f->s = NULL;
    /* Put the files back as they were just before the rename. */
    char nextf[160];
    snprintf(nextf, sizeof(nextf), "%s.new", f->keyfile);
    assert_int_equal(rename(f->keyfile, nextf), 0);
    int fd = open(f->keyfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, old_key, strlen(old_key)), (ssize_t)strlen(old_key));
    close(fd);
    f->s = open_ok(&f->cfg);
    expect_secret(f->s, "aurora/rec/1", "survives", 8);
    assert_int_equal(access(nextf, F_OK), -1); /* completed */
    char *now = ph_slurp(f->keyfile, NULL);
    assert_string_not_equal(now, old_key);
    free(now);
    free(old_key);

    /* A leftover of a rotation that never committed changes nothing. */
    fd = open(nextf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    const char *other = "MzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzM=\n";
    assert_int_equal(write(fd, other, strlen(other)), (ssize_t)strlen(other));
    close(fd);
    secrets_close(f->s);
    f->s = open_ok(&f->cfg);
    expect_secret(f->s, "aurora/rec/1", "survives", 8);
}

/* The CLI rotates the key while the server has the store open: the
 * server's handle follows the key file instead of failing or writing values
 * under the retired key. */
static void test_rotation_beside_running_server(void **state)
{
    fixture *f = *state;
    put_ok(f->s, "aurora/live/1", "before", 6);
    secrets_t *cli = open_ok(&f->cfg);
    char err[512], id[17];
    assert_int_equal(secrets_local_rotate_key(cli, NULL, NULL, id, err, sizeof(err)), SECRETS_OK);
    secrets_close(cli);
    expect_secret(f->s, "aurora/live/1", "before", 6);
    put_ok(f->s, "aurora/live/2", "after", 5);
    char q[128];
    snprintf(q, sizeof(q), "SELECT COUNT(*) FROM secrets WHERE key_id = '%s'", id);
    assert_int_equal(sql_int(f->db, q), 2);
}

/* ---- bad input ------------------------------------------------------------------------------------ */

static void test_bad_input(void **state)
{
    fixture *f = *state;
    char err[512];
    /* Oversized: one byte over the documented 64 KiB. */
    char *big = malloc(SECRETS_MAX_VALUE + 1);
    assert_non_null(big);
    memset(big, 'S', SECRETS_MAX_VALUE + 1);
    memcpy(big, "TOPSECRETMARKER", 15);
    assert_int_equal(secrets_put(f->s, "aurora/big", big, SECRETS_MAX_VALUE + 1, err, sizeof(err)),
                     SECRETS_E_INVALID);
    assert_non_null(strstr(err, "too large"));
    assert_non_null(strstr(err, "aurora/big"));
    assert_non_null(strstr(err, "local"));
    assert_null(strstr(err, "TOPSECRETMARKER"));
    free(big);
    assert_int_equal(secrets_put(f->s, "aurora/empty", "", 0, err, sizeof(err)), SECRETS_E_INVALID);
    assert_int_equal(secrets_put(f->s, "aurora/null", NULL, 3, err, sizeof(err)), SECRETS_E_INVALID);

    const char *bad_paths[] = { "",           "aurora/",       "aurora",        "other/x",
                                "/aurora/x",  "aurora/../x",   "aurora/a/../b", "aurora//x",
                                "aurora/x/",  "aurora/a b",    "aurora/ä",      "aurora/x\n",
                                "aurora/./x", "aurora/x?y=1",  "aurora/%2e%2e", NULL };
    for (size_t i = 0; bad_paths[i]; i++) {
        assert_int_equal(secrets_put(f->s, bad_paths[i], "v", 1, err, sizeof(err)),
                         SECRETS_E_INVALID);
        assert_non_null(strstr(err, "invalid path"));
        assert_null(strchr(err, '\n'));
        unsigned char *v = NULL;
        size_t n = 0;
        assert_int_equal(secrets_get(f->s, bad_paths[i], &v, &n, err, sizeof(err)),
                         SECRETS_E_INVALID);
        assert_int_equal(secrets_delete(f->s, bad_paths[i], err, sizeof(err)), SECRETS_E_INVALID);
    }
    assert_int_equal(secrets_put(f->s, NULL, "v", 1, err, sizeof(err)), SECRETS_E_INVALID);
    char longp[SECRETS_MAX_PATH + 2];
    memset(longp, 'a', sizeof(longp) - 1);
    memcpy(longp, "aurora/", 7);
    longp[sizeof(longp) - 1] = '\0';
    assert_int_equal(secrets_put(f->s, longp, "v", 1, err, sizeof(err)), SECRETS_E_INVALID);
    longp[SECRETS_MAX_PATH] = '\0'; /* exactly the maximum */
    put_ok(f->s, longp, "v", 1);
    /* Every character AWS allows in a name. */
    put_ok(f->s, "aurora/A-Z_a.z+0=9@x", "v", 1);

    /* Nothing of the refused writes was stored. */
    assert_int_equal(sql_int(f->db, "SELECT COUNT(*) FROM secrets"), 2);
    expect_get_error(f->s, "aurora/missing/key", SECRETS_NOT_FOUND, "not found");

    /* A NULL handle (backend failed to open) is an error, not a crash. */
    assert_int_equal(secrets_put(NULL, "aurora/x", "v", 1, err, sizeof(err)), SECRETS_E_INVALID);
    unsigned char *v = NULL;
    size_t n = 0;
    assert_int_equal(secrets_get(NULL, "aurora/x", &v, &n, err, sizeof(err)), SECRETS_E_INVALID);
}

static void test_open_errors(void **state)
{
    fixture *f = *state;
    secrets_config c = f->cfg;
    c.backend = "gcp";
    expect_open_error(&c, SECRETS_E_INVALID, "SECRETS_BACKEND must be");
    c = f->cfg;
    c.data_dir = NULL;
    expect_open_error(&c, SECRETS_E_INVALID, "AURORA_DATA_DIR");
    c.data_dir = "/nonexistent-parent/dir";
    expect_open_error(&c, SECRETS_E_OTHER, "/nonexistent-parent/dir");
    /* NULL backend means the default, local. */
    c = f->cfg;
    c.backend = NULL;
    secrets_t *s = open_ok(&c);
    assert_string_equal(secrets_backend_name(s), "local");
    secrets_close(s);
}

typedef struct {
    secrets_config cfg;
    secrets_t *s;
    int rc;
    char err[512];
} open_call;

static void *open_in_thread(void *arg)
{
    open_call *o = arg;
    o->rc = secrets_open(&o->cfg, &o->s, o->err, sizeof(o->err));
    return NULL;
}

/* A FIFO planted where the master key file is (0600, as a key file must
 * be): the open of the key file waited for a writer, and the server hung at
 * start with nothing in its log.  It is refused at once as not a regular
 * file.  The open runs on a thread waited for with a deadline; should it
 * hang, the test opens the FIFO's other end itself to free it, then fails. */
static void test_key_file_fifo_refused(void **state)
{
    fixture *f = *state;
    char fifo[160];
    snprintf(fifo, sizeof(fifo), "%s/fifo.key", f->dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    open_call o = { .cfg = f->cfg, .rc = -100 };
    o.cfg.master_key_file = fifo;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, open_in_thread, &o), 0);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    int hung = pthread_timedjoin_np(t, NULL, &until) == ETIMEDOUT;
    if (hung) {
        int w = open(fifo, O_WRONLY | O_NONBLOCK); /* the blocked reader's writer */
        if (w >= 0)
            close(w);
        pthread_join(t, NULL);
    }
    if (o.s)
        secrets_close(o.s);
    if (hung)
        fail_msg("secrets_open waited on a FIFO as the master key file (then: rc %d, %s)", o.rc,
                 o.err);
    assert_int_equal(o.rc, SECRETS_E_INVALID);
    if (!strstr(o.err, "not a regular file") || !strstr(o.err, fifo))
        fail_msg("error \"%s\"", o.err);
}

/* ---- references and paths ---------------------------------------------------------------------------- */

static void test_refs_and_user_paths(void **state)
{
    fixture *f = *state;
    char ref[300], backend[32];
    const char *path = NULL;
    assert_int_equal(secrets_ref(f->s, SECRETS_PATH_GITHUB_APP_PRIVATE_KEY, ref, sizeof(ref)), 0);
    assert_string_equal(ref, "local:aurora/system/github-app/private-key");
    assert_int_equal(secrets_ref_parse(ref, backend, sizeof(backend), &path), 0);
    assert_string_equal(backend, "local");
    assert_string_equal(path, SECRETS_PATH_GITHUB_APP_PRIVATE_KEY);
    assert_int_equal(secrets_ref_parse("nocolon", backend, sizeof(backend), &path), -1);
    assert_int_equal(secrets_ref_parse("vault:not/aurora", backend, sizeof(backend), &path), -1);
    assert_int_equal(secrets_ref_parse(":aurora/x", backend, sizeof(backend), &path), -1);
    assert_int_equal(secrets_ref(f->s, "bad path", ref, sizeof(ref)), -1);
    assert_int_equal(secrets_ref(f->s, SECRETS_PATH_GITHUB_APP_PRIVATE_KEY, ref, 10), -1);

    char p[SECRETS_MAX_PATH + 1];
    assert_int_equal(secrets_user_path(p, sizeof(p), "org_1", "usr_1", "github", "access_token"), 0);
    assert_string_equal(p, "aurora/orgs/org_1/users/usr_1/github/access_token");
    /* One segment each: no climbing into another user's or org's secrets. */
    assert_int_equal(secrets_user_path(p, sizeof(p), "org_1", "usr_1/../usr_2", "github", "t"), -1);
    assert_int_equal(secrets_user_path(p, sizeof(p), "org_1/../org_2", "usr_1", "github", "t"), -1);
    assert_int_equal(secrets_user_path(p, sizeof(p), "org_1", "..", "github", "t"), -1);
    assert_int_equal(secrets_user_path(p, sizeof(p), "org_1", "usr_1", "", "t"), -1);
    assert_int_equal(secrets_user_path(p, sizeof(p), "org_1", "usr 1", "github", "t"), -1);
    assert_int_equal(secrets_user_path(p, 12, "org_1", "usr_1", "github", "t"), -1);
    assert_string_equal(secrets_strerror(SECRETS_E_UNAVAILABLE), "backend unavailable");
}

/* ---- threads --------------------------------------------------------------------------------------------- */

typedef struct {
    secrets_t *s;
    int id;
    int ok;
} thr_arg;

static void *hammer(void *p)
{
    thr_arg *a = p;
    char path[64], val[64], err[512];
    for (int i = 0; i < 50; i++) {
        snprintf(path, sizeof(path), "aurora/thr/%d/%d", a->id, i % 5);
        snprintf(val, sizeof(val), "value %d %d", a->id, i);
        if (secrets_put(a->s, path, val, strlen(val), err, sizeof(err)) != SECRETS_OK)
            return NULL;
        unsigned char *got = NULL;
        size_t n = 0;
        if (secrets_get(a->s, path, &got, &n, err, sizeof(err)) != SECRETS_OK)
            return NULL;
        if (n == strlen(val) && !memcmp(got, val, n))
            a->ok++;
        secrets_free(got, n);
    }
    return NULL;
}

static void test_threads_share_a_handle(void **state)
{
    fixture *f = *state;
    pthread_t th[4];
    thr_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thr_arg){ .s = f->s, .id = i };
        assert_int_equal(pthread_create(&th[i], NULL, hammer, &args[i]), 0);
    }
    /* Every thread is joined before any check: a failed check leaves the
     * test, and a thread still running would write into its dead frame. */
    int joined = 0;
    for (int i = 0; i < 4; i++)
        joined += pthread_join(th[i], NULL) == 0;
    assert_int_equal(joined, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(args[i].ok, 50);
    char **l = NULL;
    size_t n = 0;
    char err[512];
    assert_int_equal(secrets_list(f->s, "aurora/thr/", &l, &n, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(n, 20);
    secrets_list_free(l, n);
}

/* A thread marked as one that must not wait on the backend (a store worker)
 * gets every operation refused at once, with the thread named; nothing is
 * written; other threads are not affected. */
typedef struct {
    secrets_t *s;
    int rc[4];
    char err[4][512];
} forbidden_arg;

static void *forbidden_thread(void *p)
{
    forbidden_arg *a = p;
    secrets_forbid_on_this_thread("store worker");
    unsigned char *got = NULL;
    size_t len = 0;
    char **l = NULL;
    size_t n = 0;
    a->rc[0] = secrets_get(a->s, "aurora/forbid/x", &got, &len, a->err[0], sizeof(a->err[0]));
    a->rc[1] = secrets_put(a->s, "aurora/forbid/y", "v", 1, a->err[1], sizeof(a->err[1]));
    a->rc[2] = secrets_delete(a->s, "aurora/forbid/x", a->err[2], sizeof(a->err[2]));
    a->rc[3] = secrets_list(a->s, "aurora/forbid/", &l, &n, a->err[3], sizeof(a->err[3]));
    secrets_list_free(l, n);
    return NULL;
}

static void test_forbidden_thread_refused(void **state)
{
    fixture *f = *state;
    put_ok(f->s, "aurora/forbid/x", "kept", 4);
    forbidden_arg a = { .s = f->s };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, forbidden_thread, &a), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(a.rc[i], SECRETS_E_INVALID);
        if (!strstr(a.err[i], "called on a store worker") || !strstr(a.err[i], "aurora/forbid/"))
            fail_msg("operation %d: \"%s\"", i, a.err[i]);
    }
    /* Nothing deleted, nothing written; this thread still works. */
    expect_secret(f->s, "aurora/forbid/x", "kept", 4);
    expect_get_error(f->s, "aurora/forbid/y", SECRETS_NOT_FOUND, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_and_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listing_is_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_file_created_0600, setup, teardown),
        cmocka_unit_test_setup_teardown(test_existing_store_made_private, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_from_environment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_master_key_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampered_ciphertext_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stored_text_made_printable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_stops_at_a_row_without_a_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupted_store_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_env_key_and_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_recovery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_beside_running_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_file_fifo_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refs_and_user_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_share_a_handle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forbidden_thread_refused, setup, teardown),
    };
    return cmocka_run_group_tests_name("secrets_local", tests, NULL, NULL);
}
