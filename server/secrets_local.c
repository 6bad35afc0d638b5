/* secrets_local.c — the embedded secrets backend: values encrypted with
 * AES-256-GCM under a master key, kept in their own SQLite file
 * <data_dir>/secrets.db (never in the state database).
 *
 * The master key comes from AURORA_MASTER_KEY, or from a key file
 * (AURORA_MASTER_KEY_FILE, default <data_dir>/master.key) that is created
 * 0600 with a random key on first run.  The store file is created 0600 too.
 *
 * Every row carries the id of the key that encrypted it (a hash of the key,
 * not the key) and a fresh 96-bit nonce; the path and key id are bound into
 * the ciphertext as associated data, so a ciphertext moved to another path
 * or relabelled with another key id fails authentication like any other
 * tampering.  The store also records which key it expects (meta "key_id"),
 * so a wrong master key is refused at open even before a value is read.
 *
 * secure_delete is on: pages freed by an update, a delete or a key rotation
 * are zeroed, so ciphertext under a retired key does not linger in the file.
 */
#include "secrets_local.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "db.h"
#include "secret.h"

#define KEY_LEN SECRETS_MASTER_KEY_LEN
#define NONCE_LEN 12
#define TAG_LEN 16
#define KEY_ID_HEX 16
/* PRAGMA application_id: "AUSC" — tells our store from any other SQLite file. */
#define APP_ID 0x41555343
#define FORMAT_VERSION 1
#define AAD_TAG "aurora-secrets:v1"

typedef struct {
    pthread_mutex_t mu; /* one sqlite3 handle, shared by threads */
    sqlite3 *db;
    char db_path[1024];
    unsigned char key[KEY_LEN];
    char key_id[KEY_ID_HEX + 1];
    char key_file[1024]; /* "" when the key comes from the environment */
} local_t;

static void say(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Text of the store (a key id, a path) as an error may quote it: at most
 * cap - 1 bytes, printable (secrets_printable).  The store is a file another
 * process may have written; its text goes into errors, and from there into
 * the log or the CLI's output, where a line break would start a line of
 * its choosing. */
static const char *stored_text(const char *in, char *out, size_t cap)
{
    snprintf(out, cap, "%s", in ? in : "(none)");
    secrets_printable(out);
    return out;
}

/* ---- master key ------------------------------------------------------------------ */

static void key_id_of(const unsigned char key[KEY_LEN], char out[KEY_ID_HEX + 1])
{
    /* Domain-separated hash: the id reveals nothing usable about the key. */
    unsigned char buf[sizeof("aurora-master-key-id:") - 1 + KEY_LEN], md[32];
    memcpy(buf, "aurora-master-key-id:", sizeof("aurora-master-key-id:") - 1);
    memcpy(buf + sizeof("aurora-master-key-id:") - 1, key, KEY_LEN);
    crypto_sha256(buf, sizeof(buf), md);
    OPENSSL_cleanse(buf, sizeof(buf));
    crypto_hex(md, KEY_ID_HEX / 2, out);
}

int secrets_local_parse_key(const char *text, unsigned char key[KEY_LEN])
{
    if (!text)
        return -1;
    while (*text == ' ' || *text == '\t' || *text == '\n' || *text == '\r')
        text++;
    size_t n = strlen(text);
    while (n && (text[n - 1] == ' ' || text[n - 1] == '\t' || text[n - 1] == '\n' ||
                 text[n - 1] == '\r'))
        n--;
    if (n == 2 * KEY_LEN) {
        int ok = 1;
        for (size_t i = 0; i < KEY_LEN && ok; i++) {
            int hi = crypto_hex_digit(text[2 * i]), lo = crypto_hex_digit(text[2 * i + 1]);
            if (hi < 0 || lo < 0)
                ok = 0;
            else
                key[i] = (unsigned char)(hi << 4 | lo);
        }
        if (ok)
            return 0;
    }
    size_t len = 0;
    unsigned char *raw = crypto_base64_decode(text, n, &len);
    if (!raw)
        return -1;
    int rc = -1;
    if (len == KEY_LEN) {
        memcpy(key, raw, KEY_LEN);
        rc = 0;
    }
    secret_free_n(raw, len);
    return rc;
}

/* fsync of the directory holding path, so a created or renamed entry
 * survives a crash. */
static void sync_dir_of(const char *path)
{
    char tmp[1024];
    snprintf(tmp, sizeof(tmp), "%s", path);
    int fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* Writes key (base64 text) to a new 0600 file at path; fails if it exists. */
static int write_key_file(const char *path, const unsigned char key[KEY_LEN], int exclusive,
                          char *err, size_t errlen)
{
    char *b64 = crypto_base64(key, KEY_LEN);
    if (!b64) {
        say(err, errlen, "out of memory");
        return SECRETS_E_OTHER;
    }
    char tmp[1100];
    unsigned char rnd[6];
    char rhex[13];
    if (crypto_random(rnd, sizeof(rnd)) != 0) {
        free(b64);
        say(err, errlen, "no randomness");
        return SECRETS_E_OTHER;
    }
    crypto_hex(rnd, sizeof(rnd), rhex);
    snprintf(tmp, sizeof(tmp), "%s.tmp-%s", path, rhex);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    int rc = SECRETS_OK;
    if (fd < 0) {
        say(err, errlen, "cannot create master key file %s: %s", path, strerror(errno));
        rc = SECRETS_E_OTHER;
    } else {
        size_t len = strlen(b64);
        ssize_t w = write(fd, b64, len);
        if (w == (ssize_t)len)
            w = write(fd, "\n", 1) == 1 ? w + 1 : -1;
        if (w != (ssize_t)(len + 1) || fsync(fd) != 0) {
            say(err, errlen, "cannot write master key file %s: %s", path,
                w < 0 ? strerror(errno) : "short write");
            rc = SECRETS_E_OTHER;
        }
        close(fd);
        /* link() never replaces: of two first runs racing, one key wins and
         * the other run reads it.  rename() replaces (rotation). */
        if (rc == SECRETS_OK && (exclusive ? link(tmp, path) : rename(tmp, path)) != 0) {
            rc = errno == EEXIST ? SECRETS_NOT_FOUND : SECRETS_E_OTHER;
            if (rc != SECRETS_NOT_FOUND)
                say(err, errlen, "cannot install master key file %s: %s", path, strerror(errno));
        }
        unlink(tmp);
        if (rc == SECRETS_OK)
            sync_dir_of(path);
    }
    secret_free(b64);
    return rc;
}

/* Reads the key file.  SECRETS_NOT_FOUND if it does not exist.
 * O_NONBLOCK: a FIFO (or a device) planted at the path would otherwise hold
 * the open until a writer comes, the server hung at start with nothing
 * logged; it is refused by the fstat below instead (a regular file reads
 * as ever).  Symbolic links are followed: an operator's
 * AURORA_MASTER_KEY_FILE on a Kubernetes Secret volume is one (the kubelet's
 * `..data` links), and the checks apply to the file they lead to. */
static int read_key_file(const char *path, unsigned char key[KEY_LEN], char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        if (errno == ENOENT)
            return SECRETS_NOT_FOUND;
        say(err, errlen, "cannot open master key file %s: %s", path, strerror(errno));
        return SECRETS_E_OTHER;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        say(err, errlen, "master key file %s is not a regular file", path);
        return SECRETS_E_INVALID;
    }
    /* Like ssh with its keys: a key others can read or replace is not a
     * secret any more.  (Group read is allowed for fsGroup-mounted volumes.) */
    if (st.st_mode & (S_IRWXO | S_IWGRP)) {
        close(fd);
        say(err, errlen, "master key file %s is accessible by other users (mode %04o); chmod 600 it",
            path, (unsigned)(st.st_mode & 07777));
        return SECRETS_E_INVALID;
    }
    char buf[256];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0) {
        say(err, errlen, "cannot read master key file %s: %s", path, strerror(errno));
        return SECRETS_E_OTHER;
    }
    buf[n] = '\0';
    int ok = secrets_local_parse_key(buf, key) == 0;
    OPENSSL_cleanse(buf, sizeof(buf));
    if (!ok) {
        say(err, errlen, "master key file %s does not hold a 32-byte key (base64 or hex)", path);
        return SECRETS_E_INVALID;
    }
    return SECRETS_OK;
}

/* The key from the environment, else from the file (created on first run). */
static int load_key(local_t *l, const secrets_config *cfg, char *err, size_t errlen)
{
    if (cfg->master_key && *cfg->master_key) {
        if (secrets_local_parse_key(cfg->master_key, l->key) != 0) {
            say(err, errlen, "AURORA_MASTER_KEY must be 32 bytes as 64 hex characters or base64");
            return SECRETS_E_INVALID;
        }
        l->key_file[0] = '\0';
        return SECRETS_OK;
    }
    if (cfg->master_key_file && *cfg->master_key_file)
        snprintf(l->key_file, sizeof(l->key_file), "%s", cfg->master_key_file);
    else
        snprintf(l->key_file, sizeof(l->key_file), "%s/master.key", cfg->data_dir);
    for (int attempt = 0; attempt < 2; attempt++) {
        int rc = read_key_file(l->key_file, l->key, err, errlen);
        if (rc != SECRETS_NOT_FOUND)
            return rc;
        unsigned char fresh[KEY_LEN];
        if (crypto_random(fresh, KEY_LEN) != 0) {
            say(err, errlen, "no randomness for a master key");
            return SECRETS_E_OTHER;
        }
        rc = write_key_file(l->key_file, fresh, 1, err, errlen);
        if (rc == SECRETS_OK)
            memcpy(l->key, fresh, KEY_LEN);
        OPENSSL_cleanse(fresh, KEY_LEN);
        if (rc == SECRETS_OK)
            return SECRETS_OK;
        if (rc != SECRETS_NOT_FOUND) /* NOT_FOUND: another process won: read its key */
            return rc;
    }
    say(err, errlen, "cannot create master key file %s", l->key_file);
    return SECRETS_E_OTHER;
}

/* ---- AES-256-GCM ------------------------------------------------------------------- */

static size_t make_aad(unsigned char *aad, size_t cap, const char *key_id, const char *path)
{
    int n = snprintf((char *)aad, cap, AAD_TAG ":%s:%s", key_id, path);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

/* out: ciphertext || tag (len + TAG_LEN bytes, malloc'd). */
static int seal(const unsigned char key[KEY_LEN], const char *key_id, const char *path,
                const unsigned char *pt, size_t len, unsigned char nonce[NONCE_LEN],
                unsigned char **out)
{
    unsigned char aad[SECRETS_MAX_PATH + 64];
    size_t aadlen = make_aad(aad, sizeof(aad), key_id, path);
    *out = NULL;
    if (!aadlen || len > SECRETS_MAX_VALUE || crypto_random(nonce, NONCE_LEN) != 0)
        return -1;
    unsigned char *ct = malloc(len + TAG_LEN);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int ok = ct && c, outl = 0, fin = 0;
    ok = ok && EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
         EVP_EncryptInit_ex(c, NULL, NULL, key, nonce) == 1 &&
         EVP_EncryptUpdate(c, NULL, &outl, aad, (int)aadlen) == 1 &&
         EVP_EncryptUpdate(c, ct, &outl, pt, (int)len) == 1 &&
         EVP_EncryptFinal_ex(c, ct + outl, &fin) == 1 &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, ct + len) == 1;
    EVP_CIPHER_CTX_free(c);
    if (!ok) {
        free(ct);
        return -1;
    }
    *out = ct;
    return 0;
}

/* 0 and *out (len bytes + NUL, malloc'd) on success; -1 if authentication
 * fails (tampered, corrupt, other key or other path). */
static int open_sealed(const unsigned char key[KEY_LEN], const char *key_id, const char *path,
                       const unsigned char *nonce, const unsigned char *ct, size_t ctlen,
                       unsigned char **out, size_t *len)
{
    unsigned char aad[SECRETS_MAX_PATH + 64];
    size_t aadlen = make_aad(aad, sizeof(aad), key_id, path);
    *out = NULL;
    if (!aadlen || ctlen < TAG_LEN || ctlen - TAG_LEN > SECRETS_MAX_VALUE)
        return -1;
    size_t ptlen = ctlen - TAG_LEN;
    unsigned char *pt = malloc(ptlen + 1);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    unsigned char tag[TAG_LEN];
    memcpy(tag, ct + ptlen, TAG_LEN);
    int ok = pt && c, outl = 0, fin = 0;
    ok = ok && EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
         EVP_DecryptInit_ex(c, NULL, NULL, key, nonce) == 1 &&
         EVP_DecryptUpdate(c, NULL, &outl, aad, (int)aadlen) == 1 &&
         EVP_DecryptUpdate(c, pt, &outl, ct, (int)ptlen) == 1 &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1 &&
         EVP_DecryptFinal_ex(c, pt + outl, &fin) == 1;
    EVP_CIPHER_CTX_free(c);
    if (!ok) {
        if (pt) {
            secret_free_n(pt, ptlen);
        }
        return -1;
    }
    pt[ptlen] = '\0';
    *out = pt;
    *len = ptlen;
    return 0;
}

/* ---- store file --------------------------------------------------------------------- */

static int db_fail(local_t *l, int rc, const char *what, char *err, size_t errlen)
{
    int prim = rc & 0xff;
    say(err, errlen, "local store %s: %s: %s", l->db_path, what, sqlite3_errmsg(l->db));
    if (prim == SQLITE_CORRUPT || prim == SQLITE_NOTADB)
        return SECRETS_E_INTEGRITY;
    if (prim == SQLITE_BUSY || prim == SQLITE_LOCKED)
        return SECRETS_E_UNAVAILABLE;
    return SECRETS_E_OTHER;
}

static int exec_sql(local_t *l, const char *sql, char *err, size_t errlen)
{
    int rc = sqlite3_exec(l->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? SECRETS_OK : db_fail(l, rc, sql, err, errlen);
}

/* One integer from a PRAGMA or SELECT. */
static int query_int(local_t *l, const char *sql, long long *v, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(l->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *v = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    }
    int e = rc == SQLITE_OK ? SECRETS_OK : db_fail(l, rc, sql, err, errlen);
    sqlite3_finalize(st);
    return e;
}

static int meta_get(local_t *l, const char *k, char *out, size_t cap, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    out[0] = '\0';
    int rc = sqlite3_prepare_v2(l->db, "SELECT v FROM meta WHERE k = ?", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_fail(l, rc, "reading meta", err, errlen);
    sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    int e = SECRETS_NOT_FOUND;
    if (rc == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        snprintf(out, cap, "%s", v ? v : "");
        e = SECRETS_OK;
    } else if (rc != SQLITE_DONE) {
        e = db_fail(l, rc, "reading meta", err, errlen);
    }
    sqlite3_finalize(st);
    return e;
}

static int meta_set(local_t *l, const char *k, const char *v, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(l->db,
                                "INSERT INTO meta (k, v) VALUES (?, ?)"
                                " ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, v, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SECRETS_OK : db_fail(l, rc, "writing meta", err, errlen);
}

/* A rotation interrupted after its commit left the new key in <file>.new
 * while the store already expects it: finish by renaming it into place.  A
 * <file>.new that does not match is left alone: it may belong to a rotation
 * running right now in another process (which holds the store's write lock
 * and has not committed yet), or to one that died before committing (the
 * next rotation replaces it). */
static int finish_interrupted_rotation(local_t *l, const char *expected_id, char *err,
                                       size_t errlen)
{
    if (!l->key_file[0])
        return SECRETS_OK;
    char next[1100];
    snprintf(next, sizeof(next), "%s.new", l->key_file);
    unsigned char k2[KEY_LEN];
    char e2[256];
    int rc = read_key_file(next, k2, e2, sizeof(e2));
    if (rc == SECRETS_NOT_FOUND)
        return SECRETS_OK;
    if (rc != SECRETS_OK) {
        say(err, errlen, "%s", e2);
        return rc;
    }
    char id2[KEY_ID_HEX + 1];
    key_id_of(k2, id2);
    if (!strcmp(id2, expected_id)) {
        if (rename(next, l->key_file) != 0 && errno != ENOENT) {
            OPENSSL_cleanse(k2, KEY_LEN);
            say(err, errlen, "cannot complete key rotation (rename %s): %s", next, strerror(errno));
            return SECRETS_E_OTHER;
        }
        sync_dir_of(l->key_file);
        memcpy(l->key, k2, KEY_LEN);
        memcpy(l->key_id, id2, sizeof(id2));
    }
    OPENSSL_cleanse(k2, KEY_LEN);
    return SECRETS_OK;
}

/* The store expects another key than ours: another process may have rotated
 * it (the CLI beside a running server).  Adopts the key file's key when it
 * is the one the store expects.  SECRETS_OK if our key is (now) right. */
static int sync_key(local_t *l, char *err, size_t errlen)
{
    char expected[64];
    int rc = meta_get(l, "key_id", expected, sizeof(expected), err, errlen);
    if (rc == SECRETS_NOT_FOUND) {
        say(err, errlen, "local store %s has no key id (damaged)", l->db_path);
        return SECRETS_E_INTEGRITY;
    }
    if (rc != SECRETS_OK || !strcmp(expected, l->key_id))
        return rc;
    if (l->key_file[0]) {
        unsigned char k[KEY_LEN];
        char id[KEY_ID_HEX + 1], e2[256];
        if (read_key_file(l->key_file, k, e2, sizeof(e2)) == SECRETS_OK) {
            key_id_of(k, id);
            if (!strcmp(id, expected)) {
                memcpy(l->key, k, KEY_LEN);
                memcpy(l->key_id, id, sizeof(id));
            }
            OPENSSL_cleanse(k, KEY_LEN);
        }
        if (strcmp(expected, l->key_id) != 0 &&
            (rc = finish_interrupted_rotation(l, expected, err, errlen)) != SECRETS_OK)
            return rc;
    }
    if (strcmp(expected, l->key_id) != 0) {
        char shown[sizeof(expected)];
        say(err, errlen,
            "wrong master key: the local store %s is encrypted with key %s, the configured key "
            "is %s (check AURORA_MASTER_KEY / AURORA_MASTER_KEY_FILE)",
            l->db_path, stored_text(expected, shown, sizeof(shown)), l->key_id);
        return SECRETS_E_INTEGRITY;
    }
    return SECRETS_OK;
}

static int open_store(local_t *l, char *err, size_t errlen)
{
    /* Created 0600 before SQLite sees it (SQLite would use 0644 under the
     * usual umask); the -wal and -shm files inherit the mode.  An existing
     * store readable by others (an older version's, one copied in) is made
     * 0600, as aurora.db is; and no descriptor of an existing file is
     * opened and closed here, which would drop the POSIX locks another
     * connection of this process holds on it. */
    char why[384];
    struct stat st;
    if (db_sqlite_private_file(l->db_path, why, sizeof(why)) != 0) {
        say(err, errlen, "cannot open local store: %s", why);
        return SECRETS_E_OTHER;
    }
    if (lstat(l->db_path, &st) == 0 && S_ISLNK(st.st_mode)) { /* as O_NOFOLLOW refused it */
        say(err, errlen, "cannot open local store %s: %s", l->db_path, strerror(ELOOP));
        return SECRETS_E_OTHER;
    }
    int rc = sqlite3_open_v2(l->db_path, &l->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX,
                             NULL);
    if (rc != SQLITE_OK)
        return db_fail(l, rc, "open", err, errlen);
    sqlite3_extended_result_codes(l->db, 1);
    sqlite3_busy_timeout(l->db, 5000);

    long long app = 0, ver = 0, check_ok = 0, tables = 0;
    /* The first read of the file: garbage fails here ("not a database"). */
    if ((rc = query_int(l, "PRAGMA application_id", &app, err, errlen)) != SECRETS_OK ||
        (rc = query_int(l, "SELECT COUNT(*) FROM sqlite_master", &tables, err, errlen)) !=
            SECRETS_OK) {
        say(err, errlen, "local store %s is corrupt or not a secrets store (%s)", l->db_path,
            sqlite3_errmsg(l->db));
        return SECRETS_E_INTEGRITY;
    }
    /* New (empty, or another first run is creating it right now: the
     * creation below is idempotent under the write lock). */
    int fresh = app == 0 && tables == 0;
    if (!fresh && app != APP_ID) {
        say(err, errlen, "local store %s is not an Aurora secrets store", l->db_path);
        return SECRETS_E_INTEGRITY;
    }
    if (!fresh) {
        /* Damage SQLite can see (broken pages, indexes); damage inside a
         * value is caught by its authentication tag on read. */
        sqlite3_stmt *q = NULL;
        rc = sqlite3_prepare_v2(l->db, "PRAGMA quick_check", -1, &q, NULL);
        if (rc == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW) {
            const char *r = (const char *)sqlite3_column_text(q, 0);
            check_ok = r && !strcmp(r, "ok");
        }
        sqlite3_finalize(q);
        if (!check_ok) {
            say(err, errlen, "local store %s is corrupt (integrity check failed)", l->db_path);
            return SECRETS_E_INTEGRITY;
        }
    }
    if ((rc = exec_sql(l, "PRAGMA secure_delete = ON", err, errlen)) != SECRETS_OK ||
        (rc = exec_sql(l, "PRAGMA journal_mode = WAL", err, errlen)) != SECRETS_OK)
        return rc;
    if (fresh) {
        char sql[96];
        snprintf(sql, sizeof(sql), "PRAGMA application_id = %d", APP_ID);
        if ((rc = exec_sql(l, "BEGIN IMMEDIATE", err, errlen)) != SECRETS_OK)
            return rc;
        if ((rc = exec_sql(l, sql, err, errlen)) != SECRETS_OK ||
            (rc = exec_sql(l, "PRAGMA user_version = 1", err, errlen)) != SECRETS_OK ||
            (rc = exec_sql(l,
                           "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)",
                           err, errlen)) != SECRETS_OK ||
            (rc = exec_sql(l,
                           "CREATE TABLE IF NOT EXISTS secrets ("
                           " path TEXT PRIMARY KEY,"
                           " key_id TEXT NOT NULL,"
                           " nonce BLOB NOT NULL,"
                           " ciphertext BLOB NOT NULL,"
                           " updated_at INTEGER NOT NULL)",
                           err, errlen)) != SECRETS_OK) {
            sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
        /* Of two processes creating the store at once the second finds the
         * key id set by the first and is checked against it below. */
        char have[64];
        rc = meta_get(l, "key_id", have, sizeof(have), err, errlen);
        if (rc == SECRETS_NOT_FOUND)
            rc = meta_set(l, "key_id", l->key_id, err, errlen);
        if (rc != SECRETS_OK || (rc = exec_sql(l, "COMMIT", err, errlen)) != SECRETS_OK) {
            sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
    }
    if ((rc = query_int(l, "PRAGMA user_version", &ver, err, errlen)) != SECRETS_OK)
        return rc;
    if (ver != FORMAT_VERSION) {
        say(err, errlen, "local store %s has format %lld, this server reads %d", l->db_path, ver,
            FORMAT_VERSION);
        return SECRETS_E_INVALID;
    }
    return sync_key(l, err, errlen);
}

static void local_close(void *impl)
{
    local_t *l = impl;
    if (!l)
        return;
    if (l->db)
        sqlite3_close_v2(l->db);
    OPENSSL_cleanse(l->key, sizeof(l->key));
    pthread_mutex_destroy(&l->mu);
    free(l);
}

static int local_open(const secrets_config *cfg, void **impl, char *err, size_t errlen)
{
    *impl = NULL;
    if (!cfg->data_dir || !*cfg->data_dir) {
        say(err, errlen, "AURORA_DATA_DIR is not set");
        return SECRETS_E_INVALID;
    }
    /* The data directory holds the key file: private to this user. */
    if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) {
        say(err, errlen, "cannot create %s: %s", cfg->data_dir, strerror(errno));
        return SECRETS_E_OTHER;
    }
    local_t *l = calloc(1, sizeof(*l));
    if (!l) {
        say(err, errlen, "out of memory");
        return SECRETS_E_OTHER;
    }
    pthread_mutex_init(&l->mu, NULL);
    int n = snprintf(l->db_path, sizeof(l->db_path), "%s/secrets.db", cfg->data_dir);
    int rc = n < 0 || (size_t)n >= sizeof(l->db_path) ? SECRETS_E_INVALID : SECRETS_OK;
    if (rc != SECRETS_OK)
        say(err, errlen, "AURORA_DATA_DIR is too long");
    if (rc == SECRETS_OK)
        rc = load_key(l, cfg, err, errlen);
    if (rc == SECRETS_OK) {
        key_id_of(l->key, l->key_id);
        rc = open_store(l, err, errlen);
    }
    if (rc != SECRETS_OK) {
        local_close(l);
        return rc;
    }
    *impl = l;
    return SECRETS_OK;
}

/* ---- operations ------------------------------------------------------------------------ */

static int local_put(void *impl, const char *path, const unsigned char *val, size_t len, char *err,
                     size_t errlen)
{
    local_t *l = impl;
    unsigned char nonce[NONCE_LEN], *ct = NULL;
    pthread_mutex_lock(&l->mu);
    /* Under the write lock, so a rotation in another process cannot slip
     * in between the key check and the write (mixing keys in one store). */
    int rc = exec_sql(l, "BEGIN IMMEDIATE", err, errlen);
    if (rc == SECRETS_OK && (rc = sync_key(l, err, errlen)) == SECRETS_OK &&
        seal(l->key, l->key_id, path, val, len, nonce, &ct) != 0) {
        say(err, errlen, "encryption failed");
        rc = SECRETS_E_OTHER;
    }
    if (rc == SECRETS_OK) {
        sqlite3_stmt *st = NULL;
        int src = sqlite3_prepare_v2(
            l->db,
            "INSERT INTO secrets (path, key_id, nonce, ciphertext, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET key_id = excluded.key_id,"
            " nonce = excluded.nonce, ciphertext = excluded.ciphertext,"
            " updated_at = excluded.updated_at",
            -1, &st, NULL);
        if (src == SQLITE_OK) {
            sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, l->key_id, -1, SQLITE_STATIC);
            sqlite3_bind_blob(st, 3, nonce, NONCE_LEN, SQLITE_STATIC);
            sqlite3_bind_blob(st, 4, ct, (int)(len + TAG_LEN), SQLITE_STATIC);
            sqlite3_bind_int64(st, 5, (sqlite3_int64)time(NULL));
            src = sqlite3_step(st);
        }
        if (src != SQLITE_DONE)
            rc = db_fail(l, src, "write", err, errlen);
        sqlite3_finalize(st);
        if (rc == SECRETS_OK)
            rc = exec_sql(l, "COMMIT", err, errlen);
    }
    if (rc != SECRETS_OK && !sqlite3_get_autocommit(l->db))
        sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
    free(ct);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

/* Reads and decrypts one row under the current key.  *other_key (may be
 * NULL) tells a row labelled with another key id from a tampered one. */
static int read_row(local_t *l, const char *path, unsigned char **val, size_t *len,
                    int *other_key, char *err, size_t errlen)
{
    if (other_key)
        *other_key = 0;
    sqlite3_stmt *st = NULL;
    int src = sqlite3_prepare_v2(l->db, "SELECT key_id, nonce, ciphertext FROM secrets WHERE path = ?",
                                 -1, &st, NULL);
    if (src != SQLITE_OK)
        return db_fail(l, src, "read", err, errlen);
    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    src = sqlite3_step(st);
    int rc;
    if (src == SQLITE_DONE) {
        rc = SECRETS_NOT_FOUND;
    } else if (src != SQLITE_ROW) {
        rc = db_fail(l, src, "read", err, errlen);
    } else {
        const char *kid = (const char *)sqlite3_column_text(st, 0);
        const unsigned char *nonce = sqlite3_column_blob(st, 1);
        int nlen = sqlite3_column_bytes(st, 1);
        const unsigned char *ct = sqlite3_column_blob(st, 2);
        int ctlen = sqlite3_column_bytes(st, 2);
        if (!kid || strcmp(kid, l->key_id) != 0) {
            char shown[KEY_ID_HEX + 1];
            say(err, errlen, "stored under master key %s, the configured key is %s",
                stored_text(kid, shown, sizeof(shown)), l->key_id);
            if (other_key)
                *other_key = 1;
            rc = SECRETS_E_INTEGRITY;
        } else if (!nonce || nlen != NONCE_LEN || !ct || ctlen < TAG_LEN ||
                   open_sealed(l->key, l->key_id, path, nonce, ct, (size_t)ctlen, val, len) != 0) {
            say(err, errlen, "stored value failed authentication (tampered or corrupted); refused");
            rc = SECRETS_E_INTEGRITY;
        } else {
            rc = SECRETS_OK;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

static int local_get(void *impl, const char *path, unsigned char **val, size_t *len, char *err,
                     size_t errlen)
{
    local_t *l = impl;
    pthread_mutex_lock(&l->mu);
    int other_key = 0;
    int rc = read_row(l, path, val, len, &other_key, err, errlen);
    /* The row names another key: perhaps rotated by another process. */
    if (rc == SECRETS_E_INTEGRITY && other_key) {
        char e2[384];
        if (sync_key(l, e2, sizeof(e2)) == SECRETS_OK)
            rc = read_row(l, path, val, len, NULL, err, errlen);
    }
    pthread_mutex_unlock(&l->mu);
    return rc;
}

static int local_del(void *impl, const char *path, char *err, size_t errlen)
{
    local_t *l = impl;
    pthread_mutex_lock(&l->mu);
    sqlite3_stmt *st = NULL;
    int src = sqlite3_prepare_v2(l->db, "DELETE FROM secrets WHERE path = ?", -1, &st, NULL);
    if (src == SQLITE_OK) {
        sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
        src = sqlite3_step(st);
    }
    int rc = src == SQLITE_DONE ? (sqlite3_changes(l->db) ? SECRETS_OK : SECRETS_NOT_FOUND)
                                : db_fail(l, src, "delete", err, errlen);
    sqlite3_finalize(st);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

static int local_list(void *impl, const char *prefix, int (*add)(void *, const char *), void *ctx,
                      char *err, size_t errlen)
{
    local_t *l = impl;
    pthread_mutex_lock(&l->mu);
    sqlite3_stmt *st = NULL;
    /* substr() compares bytes here: paths are ASCII. */
    int src = sqlite3_prepare_v2(
        l->db, "SELECT path FROM secrets WHERE substr(path, 1, ?) = ? ORDER BY path", -1, &st,
        NULL);
    int rc = SECRETS_OK;
    if (src == SQLITE_OK) {
        sqlite3_bind_int(st, 1, (int)strlen(prefix));
        sqlite3_bind_text(st, 2, prefix, -1, SQLITE_STATIC);
        while ((src = sqlite3_step(st)) == SQLITE_ROW) {
            const char *p = (const char *)sqlite3_column_text(st, 0);
            if (p && add(ctx, p) < 0) {
                say(err, errlen, "out of memory");
                rc = SECRETS_E_OTHER;
                break;
            }
        }
    }
    if (rc == SECRETS_OK && src != SQLITE_DONE)
        rc = db_fail(l, src, "list", err, errlen);
    sqlite3_finalize(st);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

/* ---- key rotation --------------------------------------------------------------------------- */

static local_t *as_local(secrets_t *s)
{
    return s && !strcmp(secrets_backend_name(s), "local") ? secrets_impl(s) : NULL;
}

int secrets_local_key_id(secrets_t *s, char key_id[17])
{
    local_t *l = as_local(s);
    if (!l)
        return -1;
    memcpy(key_id, l->key_id, KEY_ID_HEX + 1);
    return 0;
}

/* Re-encrypts every row from the current key to k2/id2 inside an open
 * transaction.  *count gets the rows done. */
static int reencrypt_all(local_t *l, const unsigned char *k2, const char *id2, size_t *count,
                         char *err, size_t errlen)
{
    sqlite3_stmt *sel = NULL, *upd = NULL;
    int rc = SECRETS_OK;
    int src = sqlite3_prepare_v2(l->db, "SELECT path FROM secrets ORDER BY path", -1, &sel, NULL);
    if (src == SQLITE_OK)
        src = sqlite3_prepare_v2(l->db,
                                 "UPDATE secrets SET key_id = ?, nonce = ?, ciphertext = ?,"
                                 " updated_at = ? WHERE path = ?",
                                 -1, &upd, NULL);
    if (src != SQLITE_OK) {
        rc = db_fail(l, src, "rotate", err, errlen);
        goto out;
    }
    /* Paths first (the loop below updates the table it would walk). */
    char **paths = NULL;
    size_t n = 0, cap = 0;
    while ((src = sqlite3_step(sel)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            char **np = realloc(paths, ncap * sizeof(char *));
            if (!np) {
                rc = SECRETS_E_OTHER;
                break;
            }
            paths = np;
            cap = ncap;
        }
        /* SQLite lets a TEXT PRIMARY KEY be NULL: such a row is damage
         * (or tampering), and stops the rotation as a row that fails to
         * read does. */
        const char *p = (const char *)sqlite3_column_text(sel, 0);
        if (!p) {
            rc = SECRETS_E_INTEGRITY;
            break;
        }
        if (!(paths[n] = strdup(p))) {
            rc = SECRETS_E_OTHER;
            break;
        }
        n++;
    }
    if (rc == SECRETS_OK && src != SQLITE_DONE)
        rc = db_fail(l, src, "rotate", err, errlen);
    else if (rc == SECRETS_E_INTEGRITY)
        say(err, errlen, "local store %s holds a row without a path (damaged); nothing was rotated",
            l->db_path);
    else if (rc != SECRETS_OK)
        say(err, errlen, "out of memory");
    for (size_t i = 0; rc == SECRETS_OK && i < n; i++) {
        unsigned char *pt = NULL, nonce[NONCE_LEN], *ct = NULL;
        size_t len = 0;
        char e[256];
        rc = read_row(l, paths[i], &pt, &len, NULL, e, sizeof(e));
        if (rc != SECRETS_OK) {
            char shown[SECRETS_MAX_PATH + 1];
            say(err, errlen, "%s: %s (nothing was rotated)",
                stored_text(paths[i], shown, sizeof(shown)), e);
            break;
        }
        if (seal(k2, id2, paths[i], pt, len, nonce, &ct) != 0) {
            say(err, errlen, "encryption failed");
            rc = SECRETS_E_OTHER;
        } else {
            sqlite3_reset(upd);
            sqlite3_bind_text(upd, 1, id2, -1, SQLITE_STATIC);
            sqlite3_bind_blob(upd, 2, nonce, NONCE_LEN, SQLITE_STATIC);
            sqlite3_bind_blob(upd, 3, ct, (int)(len + TAG_LEN), SQLITE_STATIC);
            sqlite3_bind_int64(upd, 4, (sqlite3_int64)time(NULL));
            sqlite3_bind_text(upd, 5, paths[i], -1, SQLITE_STATIC);
            if ((src = sqlite3_step(upd)) != SQLITE_DONE)
                rc = db_fail(l, src, "rotate", err, errlen);
        }
        free(ct);
        secrets_free(pt, len);
    }
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
    if (rc == SECRETS_OK)
        *count = n;
out:
    sqlite3_finalize(sel);
    sqlite3_finalize(upd);
    return rc;
}

int secrets_local_rotate_key(secrets_t *s, const unsigned char *new_key, size_t *count,
                             char key_id[17], char *err, size_t errlen)
{
    local_t *l = as_local(s);
    if (!l) {
        say(err, errlen, "rotate-key: SECRETS_BACKEND is not local");
        return SECRETS_E_INVALID;
    }
    if (!new_key && !l->key_file[0]) {
        say(err, errlen, "rotate-key: the master key comes from AURORA_MASTER_KEY; give the new "
                         "key explicitly");
        return SECRETS_E_INVALID;
    }
    unsigned char k2[KEY_LEN];
    char id2[KEY_ID_HEX + 1];
    if (new_key)
        memcpy(k2, new_key, KEY_LEN);
    else if (crypto_random(k2, KEY_LEN) != 0) {
        say(err, errlen, "rotate-key: no randomness");
        return SECRETS_E_OTHER;
    }
    key_id_of(k2, id2);
    if (!strcmp(id2, l->key_id)) {
        OPENSSL_cleanse(k2, KEY_LEN);
        say(err, errlen, "rotate-key: the new key is the current key");
        return SECRETS_E_INVALID;
    }
    pthread_mutex_lock(&l->mu);
    char next[1100] = "";
    size_t n = 0;
    /* The write lock first: no other process writes or rotates meanwhile. */
    int rc = exec_sql(l, "BEGIN IMMEDIATE", err, errlen);
    if (rc == SECRETS_OK)
        rc = sync_key(l, err, errlen);
    if (rc == SECRETS_OK && l->key_file[0]) {
        /* The new key is durable before any value depends on it. */
        snprintf(next, sizeof(next), "%s.new", l->key_file);
        rc = write_key_file(next, k2, 0, err, errlen);
        if (rc != SECRETS_OK)
            next[0] = '\0';
    }
    if (rc == SECRETS_OK)
        rc = reencrypt_all(l, k2, id2, &n, err, errlen);
    if (rc == SECRETS_OK)
        rc = meta_set(l, "key_id", id2, err, errlen);
    if (rc == SECRETS_OK)
        rc = exec_sql(l, "COMMIT", err, errlen);
    if (rc != SECRETS_OK) {
        if (!sqlite3_get_autocommit(l->db))
            sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
        if (next[0])
            unlink(next);
    } else {
        /* ENOENT: a process that opened the store in between already
         * completed the rename (finish_interrupted_rotation). */
        if (next[0] && rename(next, l->key_file) != 0 && errno != ENOENT) {
            say(err, errlen, "rotate-key: values re-encrypted but %s could not replace %s (%s); "
                             "the next start completes it", next, l->key_file, strerror(errno));
            rc = SECRETS_E_OTHER;
        } else if (next[0]) {
            sync_dir_of(l->key_file);
        }
        memcpy(l->key, k2, KEY_LEN);
        memcpy(l->key_id, id2, sizeof(id2));
        /* Old ciphertext must not survive in the WAL either. */
        sqlite3_wal_checkpoint_v2(l->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        if (count)
            *count = n;
        if (key_id)
            memcpy(key_id, id2, sizeof(id2));
    }
    pthread_mutex_unlock(&l->mu);
    OPENSSL_cleanse(k2, KEY_LEN);
    return rc;
}

const secrets_backend secrets_backend_local = {
    .name = "local",
    .open = local_open,
    .close = local_close,
    .put = local_put,
    .get = local_get,
    .del = local_del,
    .list = local_list,
};
