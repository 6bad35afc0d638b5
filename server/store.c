/* store.c — the queries behind store.h, written once in portable SQL over
 * the engine interface of db.h (SQLite today, PostgreSQL later).
 *
 * Portability rules kept here: '?' placeholders, TEXT/BIGINT values only,
 * ids and ordering keys generated in code, INSERT … ON CONFLICT … DO UPDATE
 * for upserts, LIMIT for bounded reads, no engine-specific functions.
 *
 * Validation happens before SQL: text must fit the fixed-size field it will
 * be read back into and be valid UTF-8 (PostgreSQL rejects anything else, so
 * both engines accept exactly the same inputs), hashes must look like SHA-256
 * hex (a raw token passed by mistake is refused rather than stored).  A
 * stored value that no longer fits its field on the way out is reported as an
 * error, never truncated: a cut id would silently name another row.
 */
#include "store.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto.h"
#include "db.h"
#include "secret.h"
#include "store_internal.h"
#include "store_migrations.h"
#include "token.h"
#include "utf8.h"

/* audit_list reads at most this many rows; limit <= 0 means the default. */
#define AUDIT_LIST_DEFAULT 100
#define AUDIT_LIST_MAX 1000
/* One command's argv as JSON; anything larger is not a command line. */
#define AUDIT_ARGV_JSON_MAX (1024 * 1024)
/* Attempts at a fresh audit id when one collides (another replica, same µs). */
#define AUDIT_ID_TRIES 4

/* ---- input checks ------------------------------------------------------------ */

static int check_time(store_t *s, const char *field, int64_t t)
{
    return t < 0 ? serr(s, "%s is negative", field) : STORE_OK;
}

/* ---- ordering keys ---------------------------------------------------------------- */

/* Microseconds since the epoch, strictly increasing within the process (also
 * across threads and when the wall clock steps back).  Orders rows created
 * in the same second, where created_at alone would tie. */
int64_t store_next_seq(void)
{
    static _Atomic int64_t last;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    int64_t prev = atomic_load(&last);
    for (;;) {
        int64_t next = us > prev ? us : prev + 1;
        if (atomic_compare_exchange_weak(&last, &prev, next))
            return next;
    }
}

/* Audit ids: time-ordered (so id breaks ties of `at`) with 10 random low
 * bits so replicas writing the same database in the same microsecond almost
 * never collide; a collision is retried.  Fits int64 until the year ~2250. */
static int audit_id(int64_t *id)
{
    uint16_t r;
    if (crypto_random_public(&r, sizeof(r)) != 0)
        return -1;
    int64_t seq = next_seq();
    if (seq > (INT64_MAX - 1023) / 1024) /* a clock centuries ahead */
        return -1;
    *id = seq * 1024 + (r & 1023);
    return 0;
}

/* 1 if the query returns a row, 0 if not, STORE_ERR on failure. */
static int exists(store_t *s, const char *what, const char *sql, const db_param *p, size_t np)
{
    db_result r;
    if (run_query(s, what, sql, p, np, &r) != STORE_OK)
        return STORE_ERR;
    int found = r.nrows > 0;
    db_result_free(&r);
    return found;
}

static int org_exists(store_t *s, const char *org_id)
{
    db_param p[] = { p_text(org_id) };
    return exists(s, "looking up organization", "SELECT id FROM orgs WHERE id = ?", p, 1);
}

/* A constraint failure on an insert into a tenant table is either the
 * documented CONFLICT (a unique key, described by conflict_msg) or the
 * foreign key to an organization that does not exist: NOT_FOUND. */
static int on_constraint(store_t *s, const char *org_id, const char *conflict_msg)
{
    int e = org_exists(s, org_id);
    if (e == STORE_ERR)
        return STORE_ERR;
    if (e == 0) {
        serr(s, "organization not found");
        return STORE_NOT_FOUND;
    }
    serr(s, "%s", conflict_msg);
    return STORE_CONFLICT;
}

/* ---- open / close -------------------------------------------------------------------- */

int store_open(const char *url, store_t **out, char *err, size_t errlen)
{
    char msg[512] = "";
    if (out)
        *out = NULL;
    if (!url || !*url || !out) {
        snprintf(err, errlen, "store: no database url");
        return STORE_ERR;
    }
    /* The url is never echoed: a PostgreSQL url may carry a password. */
    const db_engine *eng = db_engine_for(url);
    if (!eng) {
        snprintf(err, errlen, "store: no database engine for this url");
        return STORE_ERR;
    }
    store_t *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "store: out of memory");
        return STORE_ERR;
    }
    s->eng = eng;
    if (eng->open(url, &s->db, msg, sizeof(msg)) != DB_OK) {
        snprintf(err, errlen, "store: %s", msg);
        free(s);
        return STORE_ERR;
    }
    if (store_migrate(eng, s->db, msg, sizeof(msg)) < 0) {
        snprintf(err, errlen, "store: %s", msg);
        eng->close(s->db);
        free(s);
        return STORE_ERR;
    }
    *out = s;
    return STORE_OK;
}

void store_close(store_t *s)
{
    if (!s)
        return;
    s->eng->close(s->db);
    free(s);
}

const char *store_errmsg(store_t *s)
{
    return s ? s->err : "no store";
}

int store_schema_version(store_t *s)
{
    int64_t v;
    if (!s)
        return -1;
    if (store_migrations_version(s->eng, s->db, &v, s->err, sizeof(s->err)) < 0)
        return -1;
    return v > INT_MAX ? -1 : (int)v;
}

/* ---- organizations and users ----------------------------------------------------------- */

#define ORG_COLS "id, name, created_at, created_by"

static int org_row(store_t *s, const db_result *r, size_t i, void *out)
{
    store_org *o = out;
    if (cell_str(s, r, i, 0, o->id, sizeof(o->id), "org id") ||
        cell_str(s, r, i, 1, o->name, sizeof(o->name), "org name") ||
        cell_i64(s, r, i, 2, &o->created_at, "org created_at") ||
        cell_str(s, r, i, 3, o->created_by, sizeof(o->created_by), "org created_by"))
        return STORE_ERR;
    return STORE_OK;
}

int store_org_create(store_t *s, const char *name, store_org *out)
{
    if (!s)
        return STORE_ERR;
    store_org o = { 0 };
    if (check_text(s, "organization name", name, sizeof(o.name), 1))
        return STORE_ERR;
    if (id_generate("org_", o.id, sizeof(o.id)) < 0)
        return serr(s, "cannot generate an id");
    memcpy(o.name, name, strlen(name) + 1);
    memcpy(o.created_by, "admin", sizeof("admin"));
    o.created_at = time(NULL);
    db_param p[] = { p_text(o.id), p_text(o.name), DB_P_INT(o.created_at), DB_P_INT(next_seq()) };
    int rc = run_exec(s, "creating organization",
                      "INSERT INTO orgs (id, name, created_at, created_seq) VALUES (?, ?, ?, ?)", p,
                      4, NULL);
    if (rc != STORE_OK)
        return STORE_ERR; /* a 96-bit random id does not collide: not a CONFLICT */
    if (out)
        *out = o;
    return STORE_OK;
}

int store_org_get(store_t *s, const char *id, store_org *out)
{
    if (!s)
        return STORE_ERR;
    db_result r;
    if (!id || !out)
        return serr(s, "store_org_get: missing argument");
    db_param p[] = { p_text(id) };
    if (run_query(s, "reading organization", "SELECT " ORG_COLS " FROM orgs WHERE id = ?", p, 1,
                  &r))
        return STORE_ERR;
    return one_row(s, &r, org_row, out);
}

int store_org_first(store_t *s, store_org *out)
{
    if (!s)
        return STORE_ERR;
    db_result r;
    if (!out)
        return serr(s, "store_org_first: missing argument");
    if (run_query(s, "reading organizations",
                  "SELECT " ORG_COLS " FROM orgs ORDER BY created_at, created_seq, id LIMIT 1",
                  NULL, 0, &r))
        return STORE_ERR;
    return one_row(s, &r, org_row, out);
}

/* Insert-if-absent: a lost race with another replica is not an error.
 * *inserted (may be NULL) tells whether this call made the row. */
static int insert_member(store_t *s, const char *org_id, const char *user_id,
                         const char *created_by, int64_t at, int *inserted)
{
    int64_t changes = 0;
    db_param p[] = { p_text(org_id), p_text(user_id), p_text(created_by), DB_P_INT(at),
                     DB_P_INT(next_seq()) };
    if (run_exec(s, "recording membership",
                 "INSERT INTO org_members (org_id, user_id, created_by, created_at, created_seq)"
                 " VALUES (?, ?, ?, ?, ?) ON CONFLICT (org_id, user_id) DO NOTHING",
                 p, 5, &changes) != STORE_OK)
        return STORE_ERR;
    if (inserted)
        *inserted = changes > 0;
    return STORE_OK;
}

#define USER_COLS "id, org_id, email, role, created_at"

static int user_row(store_t *s, const db_result *r, size_t i, void *out)
{
    store_user *u = out;
    if (cell_str(s, r, i, 0, u->id, sizeof(u->id), "user id") ||
        cell_str(s, r, i, 1, u->org_id, sizeof(u->org_id), "user org_id") ||
        cell_str(s, r, i, 2, u->email, sizeof(u->email), "user email") ||
        cell_str(s, r, i, 3, u->role, sizeof(u->role), "user role") ||
        cell_i64(s, r, i, 4, &u->created_at, "user created_at"))
        return STORE_ERR;
    return STORE_OK;
}

int store_user_create(store_t *s, const char *org_id, const char *email, const char *role,
                      store_user *out)
{
    if (!s)
        return STORE_ERR;
    store_user u = { 0 };
    if (check_text(s, "org_id", org_id, sizeof(u.org_id), 1) ||
        check_text(s, "email", email, sizeof(u.email), 1) ||
        check_text(s, "role", role, sizeof(u.role), 1))
        return STORE_ERR;
    if (strcmp(role, "admin") != 0 && strcmp(role, "member") != 0)
        return serr(s, "role must be \"admin\" or \"member\"");
    if (id_generate("usr_", u.id, sizeof(u.id)) < 0)
        return serr(s, "cannot generate an id");
    memcpy(u.org_id, org_id, strlen(org_id) + 1);
    memcpy(u.email, email, strlen(email) + 1);
    memcpy(u.role, role, strlen(role) + 1);
    u.created_at = time(NULL);
    db_param p[] = { p_text(u.id), p_text(u.org_id), p_text(u.email), p_text(u.role),
                     DB_P_INT(u.created_at) };
    int rc = run_exec(s, "creating user",
                      "INSERT INTO users (" USER_COLS ") VALUES (?, ?, ?, ?, ?)", p, 5, NULL);
    if (rc == STORE_CONFLICT)
        return on_constraint(s, org_id, "a user with this email exists in the organization");
    if (rc != STORE_OK)
        return rc;
    if (insert_member(s, org_id, u.id, "admin", u.created_at, NULL) != STORE_OK)
        return STORE_ERR;
    if (out)
        *out = u;
    return STORE_OK;
}

int store_user_get(store_t *s, const char *org_id, const char *id, store_user *out)
{
    if (!s)
        return STORE_ERR;
    db_result r;
    if (!org_id || !id || !out)
        return serr(s, "store_user_get: missing argument");
    db_param p[] = { p_text(org_id), p_text(id) };
    if (run_query(s, "reading user", "SELECT " USER_COLS " FROM users WHERE org_id = ? AND id = ?",
                  p, 2, &r))
        return STORE_ERR;
    return one_row(s, &r, user_row, out);
}

/* ---- membership and provisioning ------------------------------------------------------------ */

#define MEMBER_COLS "org_id, user_id, created_by, created_at"

static int member_row(store_t *s, const db_result *r, size_t i, void *out)
{
    store_member *m = out;
    if (cell_str(s, r, i, 0, m->org_id, sizeof(m->org_id), "member org_id") ||
        cell_str(s, r, i, 1, m->user_id, sizeof(m->user_id), "member user_id") ||
        cell_str(s, r, i, 2, m->created_by, sizeof(m->created_by), "member created_by") ||
        cell_i64(s, r, i, 3, &m->created_at, "member created_at"))
        return STORE_ERR;
    return STORE_OK;
}

int store_member_get(store_t *s, const char *org_id, const char *user_id, store_member *out)
{
    if (!s)
        return STORE_ERR;
    db_result r;
    if (!org_id || !user_id || !out)
        return serr(s, "store_member_get: missing argument");
    db_param p[] = { p_text(org_id), p_text(user_id) };
    if (run_query(s, "reading membership",
                  "SELECT " MEMBER_COLS " FROM org_members WHERE org_id = ? AND user_id = ?", p, 2,
                  &r))
        return STORE_ERR;
    return one_row(s, &r, member_row, out);
}

int store_member_latest_org(store_t *s, const char *user_id, char *org_id)
{
    if (!s)
        return STORE_ERR;
    if (!user_id || !org_id)
        return serr(s, "store_member_latest_org: missing argument");
    db_result r;
    db_param p[] = { p_text(user_id) };
    if (run_query(s, "reading membership",
                  "SELECT " MEMBER_COLS " FROM org_members WHERE user_id = ?"
                  " ORDER BY created_at DESC, created_seq DESC, org_id LIMIT 1",
                  p, 1, &r))
        return STORE_ERR;
    store_member m;
    int rc = one_row(s, &r, member_row, &m);
    if (rc == STORE_OK)
        memcpy(org_id, m.org_id, strlen(m.org_id) + 1);
    return rc;
}

int store_user_orgs(store_t *s, const char *user_id, const char *connector, int active_only,
                    char (*orgs)[STORE_ID_LEN], size_t max, size_t *n)
{
    if (!s)
        return STORE_ERR;
    if (!n || !orgs || max == 0 || max > 1000)
        return serr(s, "store_user_orgs: bad argument");
    *n = 0;
    if (check_text(s, "user_id", user_id, STORE_ID_LEN, 1) ||
        (connector && check_text(s, "connector", connector, 32, 1)))
        return STORE_ERR;
    db_result r;
    int rc;
    if (!connector) {
        db_param p[] = { p_text(user_id), DB_P_INT(max) };
        rc = run_query(s, "listing memberships",
                       "SELECT org_id FROM org_members WHERE user_id = ? ORDER BY org_id LIMIT ?",
                       p, 2, &r);
    } else {
        db_param p[] = { p_text(user_id), p_text(connector), DB_P_INT(active_only ? 1 : 0),
                         DB_P_INT(max) };
        rc = run_query(s, "listing connector rows",
                       "SELECT org_id FROM connectors WHERE user_id = ? AND connector = ?"
                       " AND (? = 0 OR status = 'active') ORDER BY org_id LIMIT ?",
                       p, 4, &r);
    }
    if (rc != STORE_OK)
        return STORE_ERR;
    for (size_t i = 0; i < r.nrows && i < max; i++) {
        if (cell_str(s, &r, i, 0, orgs[i], STORE_ID_LEN, "org_id") != STORE_OK) {
            db_result_free(&r);
            return STORE_ERR;
        }
        (*n)++;
    }
    db_result_free(&r);
    return STORE_OK;
}

int store_identity_provision(store_t *s, const char *org_id, const char *user_id,
                             const char *created_by, int *created)
{
    if (!s)
        return STORE_ERR;
    if (created)
        *created = 0;
    if (check_text(s, "org_id", org_id, STORE_ID_LEN, 1) ||
        (user_id && check_text(s, "user_id", user_id, STORE_ID_LEN, 1)) ||
        check_text(s, "created_by", created_by, sizeof(((store_member *)0)->created_by), 1))
        return STORE_ERR;
    /* The common case, every request after the first: one indexed read. */
    int e;
    if (user_id) {
        db_param p[] = { p_text(org_id), p_text(user_id) };
        e = exists(s, "looking up membership",
                   "SELECT org_id FROM org_members WHERE org_id = ? AND user_id = ?", p, 2);
    } else {
        e = org_exists(s, org_id);
    }
    if (e == STORE_ERR)
        return STORE_ERR;
    if (e)
        return STORE_OK;
    int64_t now = time(NULL), changes = 0;
    db_param po[] = { p_text(org_id), p_text(org_id), DB_P_INT(now), DB_P_INT(next_seq()),
                      p_text(created_by) };
    if (run_exec(s, "provisioning organization",
                 "INSERT INTO orgs (id, name, created_at, created_seq, created_by)"
                 " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                 po, 5, &changes) != STORE_OK)
        return STORE_ERR;
    if (changes > 0 && created)
        *created |= STORE_PROVISIONED_ORG;
    if (!user_id)
        return STORE_OK;
    int inserted = 0;
    if (insert_member(s, org_id, user_id, created_by, now, &inserted) != STORE_OK)
        return STORE_ERR;
    if (inserted && created)
        *created |= STORE_PROVISIONED_MEMBER;
    return STORE_OK;
}

/* ---- API keys ------------------------------------------------------------------------------ */

/* key_hash is deliberately not among the columns read back. */
#define API_KEY_COLS "id, org_id, user_id, name, preview, created_at, revoked_at"

static int api_key_row(store_t *s, const db_result *r, size_t i, void *out)
{
    store_api_key *k = out;
    if (cell_str(s, r, i, 0, k->id, sizeof(k->id), "api key id") ||
        cell_str(s, r, i, 1, k->org_id, sizeof(k->org_id), "api key org_id") ||
        cell_str(s, r, i, 2, k->user_id, sizeof(k->user_id), "api key user_id") ||
        cell_str(s, r, i, 3, k->name, sizeof(k->name), "api key name") ||
        cell_str(s, r, i, 4, k->preview, sizeof(k->preview), "api key preview") ||
        cell_i64(s, r, i, 5, &k->created_at, "api key created_at") ||
        cell_i64(s, r, i, 6, &k->revoked_at, "api key revoked_at"))
        return STORE_ERR;
    return STORE_OK;
}

int store_api_key_create(store_t *s, const char *org_id, const char *user_id, const char *name,
                         const char *key_hash, const char *preview, store_api_key *out)
{
    if (!s)
        return STORE_ERR;
    store_api_key k = { 0 };
    if (check_text(s, "org_id", org_id, sizeof(k.org_id), 1) ||
        check_text(s, "user_id", user_id, sizeof(k.user_id), 1) ||
        check_text(s, "api key name", name, sizeof(k.name), 0) ||
        check_text(s, "api key preview", preview, sizeof(k.preview), 0) ||
        check_hash(s, "key_hash", key_hash))
        return STORE_ERR;
    /* The key acts as its user, so the user must belong to the key's org
     * (the foreign key alone would accept another org's user). */
    db_param pu[] = { p_text(org_id), p_text(user_id) };
    int e = exists(s, "looking up user", "SELECT id FROM users WHERE org_id = ? AND id = ?", pu, 2);
    if (e == STORE_ERR)
        return STORE_ERR;
    if (e == 0) {
        serr(s, "user not found in organization");
        return STORE_NOT_FOUND;
    }
    if (id_generate("key_", k.id, sizeof(k.id)) < 0)
        return serr(s, "cannot generate an id");
    memcpy(k.org_id, org_id, strlen(org_id) + 1);
    memcpy(k.user_id, user_id, strlen(user_id) + 1);
    memcpy(k.name, name, strlen(name) + 1);
    memcpy(k.preview, preview, strlen(preview) + 1);
    k.created_at = time(NULL);
    db_param p[] = { p_text(k.id),     p_text(k.org_id),  p_text(k.user_id),     p_text(k.name),
                     p_text(key_hash), p_text(k.preview), DB_P_INT(k.created_at) };
    int rc = run_exec(s, "creating api key",
                      "INSERT INTO api_keys (id, org_id, user_id, name, key_hash, preview,"
                      " created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                      p, 7, NULL);
    if (rc == STORE_CONFLICT)
        return on_constraint(s, org_id, "an api key with this hash exists");
    if (rc != STORE_OK)
        return rc;
    if (out)
        *out = k;
    return STORE_OK;
}

int store_api_key_lookup(store_t *s, const char *key_hash, store_api_key *out)
{
    if (!s)
        return STORE_ERR;
    db_result r;
    if (!key_hash || !out)
        return serr(s, "store_api_key_lookup: missing argument");
    db_param p[] = { p_text(key_hash) };
    if (run_query(s, "looking up api key",
                  "SELECT " API_KEY_COLS " FROM api_keys WHERE key_hash = ? AND revoked_at = 0", p,
                  1, &r))
        return STORE_ERR;
    return one_row(s, &r, api_key_row, out);
}

/* Shared by keys and tokens: stamps revoked_at once (a second revoke keeps
 * the first time and still succeeds); NOT_FOUND outside the org.  The CASE
 * keeps the row matched even when already revoked, so the affected-row count
 * tells "exists" apart from "missing" in a single statement. */
static int revoke_by_id(store_t *s, const char *table_sql, const char *org_id, const char *id,
                        int64_t now)
{
    int64_t changes = 0;
    if (!org_id || !id)
        return serr(s, "revoke: missing argument");
    db_param p[] = { DB_P_INT(now_or_clock(now)), p_text(org_id), p_text(id) };
    int rc = run_exec(s, "revoking", table_sql, p, 3, &changes);
    if (rc != STORE_OK)
        return STORE_ERR;
    return changes > 0 ? STORE_OK : STORE_NOT_FOUND;
}

static int abandon(store_t *s, int rc);
static int commit(store_t *s, const char *what);

int store_api_key_revoke(store_t *s, const char *org_id, const char *id, int64_t now)
{
    if (!s)
        return STORE_ERR;
    if (!org_id || !id)
        return serr(s, "revoke: missing argument");
    if (run_exec(s, "beginning key revocation", "BEGIN", NULL, 0, NULL) != STORE_OK)
        return STORE_ERR;
    int rc = revoke_by_id(s,
                          "UPDATE api_keys SET revoked_at ="
                          " CASE WHEN revoked_at = 0 THEN ? ELSE revoked_at END"
                          " WHERE org_id = ? AND id = ?",
                          org_id, id, now);
    if (rc != STORE_OK)
        return abandon(s, rc);
    /* The flows its console sessions started and did not finish go with
     * it: their callback carries no credentials to refuse (oauth.c checks
     * the session too; this leaves nothing behind to check).  The sessions
     * themselves end by the lookup, and the prune deletes them. */
    db_param p[] = { p_text(id), p_text(org_id) };
    if (run_exec(s, "deleting the key's console OAuth states",
                 "DELETE FROM oauth_states WHERE used_at = 0 AND console_session IN"
                 " (SELECT c.id_hash FROM console_sessions c JOIN api_keys k"
                 " ON k.org_id = c.org_id AND k.user_id = c.user_id AND k.id = c.key_id"
                 " WHERE k.id = ? AND k.org_id = ?)",
                 p, 2, NULL) != STORE_OK)
        return abandon(s, STORE_ERR);
    return commit(s, "committing key revocation");
}

/* ---- agent tokens ------------------------------------------------------------------------ */

/* token_hash is deliberately not among the columns read back. */
#define TOKEN_COLS                                                                                 \
    "id, org_id, created_by, cluster_id, cluster_name, notes, preview, created_at, expires_at,"    \
    " revoked_at, last_connected_at"

static int token_row(store_t *s, const db_result *r, size_t i, void *out)
{
    store_agent_token *t = out;
    if (cell_str(s, r, i, 0, t->id, sizeof(t->id), "token id") ||
        cell_str(s, r, i, 1, t->org_id, sizeof(t->org_id), "token org_id") ||
        cell_str(s, r, i, 2, t->created_by, sizeof(t->created_by), "token created_by") ||
        cell_str(s, r, i, 3, t->cluster_id, sizeof(t->cluster_id), "token cluster_id") ||
        cell_str(s, r, i, 4, t->cluster_name, sizeof(t->cluster_name), "token cluster_name") ||
        cell_str(s, r, i, 5, t->notes, sizeof(t->notes), "token notes") ||
        cell_str(s, r, i, 6, t->preview, sizeof(t->preview), "token preview") ||
        cell_i64(s, r, i, 7, &t->created_at, "token created_at") ||
        cell_i64(s, r, i, 8, &t->expires_at, "token expires_at") ||
        cell_i64(s, r, i, 9, &t->revoked_at, "token revoked_at") ||
        cell_i64(s, r, i, 10, &t->last_connected_at, "token last_connected_at"))
        return STORE_ERR;
    return STORE_OK;
}

/* The struct's fields are fixed arrays: a missing NUL is caught by bounding
 * the length check with memchr before anything reads them as strings. */
static int check_field(store_t *s, const char *field, const char *v, size_t cap, int required)
{
    if (!memchr(v, '\0', cap))
        return serr(s, "%s is not terminated", field);
    return check_text(s, field, v, cap, required);
}

int store_agent_token_create(store_t *s, store_agent_token *t, const char *token_hash)
{
    if (!s)
        return STORE_ERR;
    if (!t)
        return serr(s, "store_agent_token_create: missing argument");
    if (check_field(s, "org_id", t->org_id, sizeof(t->org_id), 1) ||
        check_field(s, "created_by", t->created_by, sizeof(t->created_by), 0) ||
        check_field(s, "cluster_id", t->cluster_id, sizeof(t->cluster_id), 1) ||
        check_field(s, "cluster_name", t->cluster_name, sizeof(t->cluster_name), 0) ||
        check_field(s, "notes", t->notes, sizeof(t->notes), 0) ||
        check_field(s, "preview", t->preview, sizeof(t->preview), 0) ||
        check_time(s, "expires_at", t->expires_at) || check_time(s, "revoked_at", t->revoked_at) ||
        check_hash(s, "token_hash", token_hash))
        return STORE_ERR;
    char id[STORE_ID_LEN];
    if (id_generate("tok_", id, sizeof(id)) < 0)
        return serr(s, "cannot generate an id");
    int64_t created_at = time(NULL);
    db_param p[] = {
        p_text(id),
        p_text(t->org_id),
        p_text(t->created_by),
        p_text(t->cluster_id),
        p_text(t->cluster_name),
        p_text(t->notes),
        p_text(t->preview),
        p_text(token_hash),
        DB_P_INT(created_at),
        DB_P_INT(next_seq()),
        DB_P_INT(t->expires_at),
        DB_P_INT(t->revoked_at),
    };
    int rc = run_exec(s, "creating agent token",
                      "INSERT INTO agent_tokens (id, org_id, created_by, cluster_id, cluster_name,"
                      " notes, preview, token_hash, created_at, created_seq, expires_at,"
                      " revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      p, 12, NULL);
    if (rc == STORE_CONFLICT)
        return on_constraint(s, t->org_id, "an agent token with this hash exists");
    if (rc != STORE_OK)
        return rc;
    memcpy(t->id, id, sizeof(id));
    t->created_at = created_at;
    return STORE_OK;
}

int store_agent_token_lookup_hash(store_t *s, const char *token_hash, store_agent_token *out)
{
    if (!s)
        return STORE_ERR;
    db_result r;
    if (!token_hash || !out)
        return serr(s, "store_agent_token_lookup_hash: missing argument");
    db_param p[] = { p_text(token_hash) };
    if (run_query(s, "looking up agent token",
                  "SELECT " TOKEN_COLS " FROM agent_tokens WHERE token_hash = ?", p, 1, &r))
        return STORE_ERR;
    return one_row(s, &r, token_row, out);
}

int store_agent_token_get(store_t *s, const char *org_id, const char *id, store_agent_token *out)
{
    if (!s)
        return STORE_ERR;
    db_result r;
    if (!org_id || !id || !out)
        return serr(s, "store_agent_token_get: missing argument");
    db_param p[] = { p_text(org_id), p_text(id) };
    if (run_query(s, "reading agent token",
                  "SELECT " TOKEN_COLS " FROM agent_tokens WHERE org_id = ? AND id = ?", p, 2, &r))
        return STORE_ERR;
    return one_row(s, &r, token_row, out);
}

int store_agent_token_latest(store_t *s, const char *org_id, const char *cluster_id,
                             store_agent_token *out)
{
    if (!s)
        return STORE_ERR;
    db_result r;
    if (!org_id || !cluster_id || !out)
        return serr(s, "store_agent_token_latest: missing argument");
    db_param p[] = { p_text(org_id), p_text(cluster_id) };
    if (run_query(s, "reading the cluster's newest agent token",
                  "SELECT " TOKEN_COLS " FROM agent_tokens WHERE org_id = ? AND cluster_id = ?"
                  " ORDER BY created_at DESC, created_seq DESC, id DESC LIMIT 1",
                  p, 2, &r))
        return STORE_ERR;
    return one_row(s, &r, token_row, out);
}

int store_agent_token_list(store_t *s, const char *org_id, store_agent_token **out, size_t *n)
{
    if (!s)
        return STORE_ERR;
    db_result r;
    if (!org_id || !out || !n)
        return serr(s, "store_agent_token_list: missing argument");
    *out = NULL;
    *n = 0;
    /* Unbounded per org on purpose: a listing that silently dropped tokens
     * would hide live credentials; creation is rate limited per user. */
    db_param p[] = { p_text(org_id) };
    if (run_query(s, "listing agent tokens",
                  "SELECT " TOKEN_COLS " FROM agent_tokens WHERE org_id = ?"
                  " ORDER BY created_at DESC, created_seq DESC, id DESC",
                  p, 1, &r))
        return STORE_ERR;
    void *arr;
    int rc = all_rows(s, &r, token_row, sizeof(**out), &arr, n);
    *out = arr;
    return rc;
}

int store_agent_token_revoke(store_t *s, const char *org_id, const char *id, int64_t now)
{
    if (!s)
        return STORE_ERR;
    return revoke_by_id(s,
                        "UPDATE agent_tokens SET revoked_at ="
                        " CASE WHEN revoked_at = 0 THEN ? ELSE revoked_at END"
                        " WHERE org_id = ? AND id = ?",
                        org_id, id, now);
}

int store_agent_token_revoke_cluster(store_t *s, const char *org_id, const char *cluster_id,
                                     int64_t now, int *n_revoked)
{
    if (!s)
        return STORE_ERR;
    int64_t changes = 0;
    if (n_revoked)
        *n_revoked = 0;
    if (!org_id || !cluster_id)
        return serr(s, "store_agent_token_revoke_cluster: missing argument");
    /* Already revoked tokens keep their first revocation time. */
    db_param p[] = { DB_P_INT(now_or_clock(now)), p_text(org_id), p_text(cluster_id) };
    if (run_exec(s, "revoking cluster tokens",
                 "UPDATE agent_tokens SET revoked_at = ?"
                 " WHERE org_id = ? AND cluster_id = ? AND revoked_at = 0",
                 p, 3, &changes))
        return STORE_ERR;
    if (n_revoked)
        *n_revoked = changes > INT_MAX ? INT_MAX : (int)changes;
    return STORE_OK;
}

/* ---- rate limits ------------------------------------------------------------------------------- */

int store_rate_take(store_t *s, const char *key, int64_t window_start, int64_t limit,
                    int64_t forget_before, int *allowed)
{
    return store_rate_take_n(s, key, window_start, limit, 1, forget_before, allowed);
}

int store_rate_give_back(store_t *s, const char *key, int64_t window_start)
{
    return store_rate_give_back_n(s, key, window_start, 1);
}

int store_rate_give_back_n(store_t *s, const char *key, int64_t window_start, int64_t n)
{
    if (!s)
        return STORE_ERR;
    if (!key || n < 1)
        return serr(s, "store_rate_give_back_n: missing argument");
    db_param p[] = { DB_P_INT(n), DB_P_INT(n), p_text(key), DB_P_INT(window_start) };
    return run_exec(s, "giving back rate-limit slots",
                    "UPDATE rate_counters SET hits = CASE WHEN hits > ? THEN hits - ? ELSE 0 END"
                    " WHERE rate_key = ? AND window_start = ? AND hits > 0",
                    p, 4, NULL);
}

int store_rate_take_n(store_t *s, const char *key, int64_t window_start, int64_t limit,
                      int64_t n, int64_t forget_before, int *allowed)
{
    if (!s)
        return STORE_ERR;
    if (!key || !allowed || limit < 1 || n < 1)
        return serr(s, "store_rate_take_n: missing argument");
    *allowed = 0;
    if (n > limit)
        return STORE_OK; /* the INSERT below would take them into an empty window */
    /* Old windows first: a failure after the slots are taken would report an
     * error for slots the caller could then never give back. */
    db_param pf[] = { p_text(key), DB_P_INT(forget_before) };
    if (run_exec(s, "forgetting old rate-limit windows",
                 "DELETE FROM rate_counters WHERE rate_key = ? AND window_start < ?", pf, 2,
                 NULL) != STORE_OK)
        return STORE_ERR;
    int64_t changes = 0;
    /* The WHERE of DO UPDATE is re-checked under the row's lock (PostgreSQL)
     * or the database's write lock (SQLite): concurrent takers never exceed
     * the limit together, and two takers of the last slot cannot both see
     * room. */
    db_param p[] = { p_text(key), DB_P_INT(window_start), DB_P_INT(n), DB_P_INT(n),
                     DB_P_INT(n), DB_P_INT(limit) };
    if (run_exec(s, "taking rate-limit slots",
                 "INSERT INTO rate_counters (rate_key, window_start, hits) VALUES (?, ?, ?)"
                 " ON CONFLICT (rate_key, window_start) DO UPDATE SET hits = rate_counters.hits + ?"
                 " WHERE rate_counters.hits + ? <= ?",
                 p, 6, &changes) != STORE_OK)
        return STORE_ERR;
    *allowed = changes > 0;
    return STORE_OK;
}

/* ---- cluster connections -------------------------------------------------------------------- */

#define CONN_COLS                                                                                  \
    "cluster_id, org_id, token_id, cluster_name, agent_version, protocol, connected_at,"           \
    " last_heartbeat, disconnected_at, connected"

static int conn_row(store_t *s, const db_result *r, size_t i, void *out)
{
    store_connection *c = out;
    if (cell_str(s, r, i, 0, c->cluster_id, sizeof(c->cluster_id), "connection cluster_id") ||
        cell_str(s, r, i, 1, c->org_id, sizeof(c->org_id), "connection org_id") ||
        cell_str(s, r, i, 2, c->token_id, sizeof(c->token_id), "connection token_id") ||
        cell_str(s, r, i, 3, c->cluster_name, sizeof(c->cluster_name), "connection cluster_name") ||
        cell_str(s, r, i, 4, c->agent_version, sizeof(c->agent_version),
                 "connection agent_version") ||
        cell_str(s, r, i, 5, c->protocol, sizeof(c->protocol), "connection protocol") ||
        cell_i64(s, r, i, 6, &c->connected_at, "connection connected_at") ||
        cell_i64(s, r, i, 7, &c->last_heartbeat, "connection last_heartbeat") ||
        cell_i64(s, r, i, 8, &c->disconnected_at, "connection disconnected_at") ||
        cell_int(s, r, i, 9, &c->connected, "connection counter"))
        return STORE_ERR;
    return STORE_OK;
}

int store_connection_connected(store_t *s, const store_connection *c)
{
    return store_connection_connected_by(s, c, "");
}

static int abandon(store_t *s, int rc);
static int commit(store_t *s, const char *what);

/* The checks of a connection row before it is written. */
static int conn_up_check(store_t *s, const store_connection *c)
{
    if (check_field(s, "cluster_id", c->cluster_id, sizeof(c->cluster_id), 1) ||
        check_field(s, "org_id", c->org_id, sizeof(c->org_id), 1) ||
        check_field(s, "token_id", c->token_id, sizeof(c->token_id), 0) ||
        check_field(s, "cluster_name", c->cluster_name, sizeof(c->cluster_name), 0) ||
        check_field(s, "agent_version", c->agent_version, sizeof(c->agent_version), 0) ||
        check_field(s, "protocol", c->protocol, sizeof(c->protocol), 0) ||
        check_time(s, "connected_at", c->connected_at))
        return STORE_ERR;
    return STORE_OK;
}

/* The writes of a checked row; STORE_CONFLICT as the engine said it (the
 * caller asks why, outside any failed transaction). */
static int conn_up_write(store_t *s, const store_connection *c, const char *instance_id)
{
    int64_t at = now_or_clock(c->connected_at);
    db_param p[] = {
        p_text(c->cluster_id),    p_text(c->org_id),   p_text(c->token_id), p_text(c->cluster_name),
        p_text(c->agent_version), p_text(c->protocol), DB_P_INT(at),        DB_P_INT(at),
        p_text(instance_id)
    };
    /* The counter only carries over within one org and one server instance:
     * a row that somehow belonged to another org (a cluster id is a 64-bit
     * hash prefix) starts over rather than inheriting foreign sessions, and
     * so does a row another replica counted (see store.h). */
    int rc = run_exec(s, "recording connection",
                      "INSERT INTO connections (" CONN_COLS ", instance_id)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 1, ?)"
                      " ON CONFLICT (cluster_id) DO UPDATE SET"
                      " connected = CASE WHEN connections.org_id = excluded.org_id"
                      " AND connections.instance_id = excluded.instance_id"
                      " THEN connections.connected + 1 ELSE 1 END,"
                      " instance_id = excluded.instance_id,"
                      " org_id = excluded.org_id,"
                      " token_id = excluded.token_id,"
                      " cluster_name = excluded.cluster_name,"
                      " agent_version = excluded.agent_version,"
                      " protocol = excluded.protocol,"
                      " connected_at = excluded.connected_at,"
                      " last_heartbeat = excluded.last_heartbeat,"
                      " disconnected_at = 0",
                      p, 9, NULL);
    if (rc != STORE_OK || !c->token_id[0])
        return rc;
    db_param pt[] = { DB_P_INT(at), p_text(c->org_id), p_text(c->token_id) };
    return run_exec(s, "recording token use",
                    "UPDATE agent_tokens SET last_connected_at = ? WHERE org_id = ? AND id = ?", pt,
                    3, NULL);
}

int store_connection_connected_by(store_t *s, const store_connection *c, const char *instance_id)
{
    if (!s)
        return STORE_ERR;
    if (!c || !instance_id)
        return serr(s, "store_connection_connected: missing argument");
    if (conn_up_check(s, c) != STORE_OK)
        return STORE_ERR;
    int rc = conn_up_write(s, c, instance_id);
    if (rc == STORE_CONFLICT)
        return on_constraint(s, c->org_id, "connection violates a constraint");
    return rc;
}

/* One write of a batch, as the single-row functions do it. */
static int conn_write_one(store_t *s, const store_conn_write *w, const char *instance_id)
{
    switch (w->what) {
    case STORE_CONN_UP: return store_connection_connected_by(s, &w->c, instance_id);
    case STORE_CONN_HEARTBEAT:
        return store_connection_heartbeat_by(s, w->c.cluster_id, instance_id, w->now);
    case STORE_CONN_DOWN:
        return store_connection_disconnected_by(s, w->c.cluster_id, instance_id, w->now);
    }
    return serr(s, "unknown connection write %d", (int)w->what);
}

int store_connection_write_many(store_t *s, store_conn_write *ws, size_t n, const char *instance_id)
{
    if (!s)
        return STORE_ERR;
    if ((!ws && n) || !instance_id)
        return serr(s, "store_connection_write_many: missing argument");
    /* Checked first: a row that cannot be written fails alone, before the
     * transaction, and the others go on. */
    size_t valid = 0;
    for (size_t i = 0; i < n; i++) {
        store_conn_write *w = &ws[i];
        if (w->what != STORE_CONN_UP && w->what != STORE_CONN_HEARTBEAT &&
            w->what != STORE_CONN_DOWN)
            w->rc = serr(s, "unknown connection write %d", (int)w->what);
        else if (w->what == STORE_CONN_UP)
            w->rc = conn_up_check(s, &w->c);
        else
            w->rc = check_field(s, "cluster_id", w->c.cluster_id, sizeof(w->c.cluster_id), 1)
                        ? STORE_ERR
                        : STORE_OK;
        valid += w->rc == STORE_OK;
    }
    if (valid < 2) { /* nothing to share a commit with */
        for (size_t i = 0; i < n; i++)
            if (ws[i].rc == STORE_OK)
                ws[i].rc = conn_write_one(s, &ws[i], instance_id);
        return STORE_OK;
    }
    int rc = run_exec(s, "beginning connection writes", "BEGIN", NULL, 0, NULL);
    for (size_t i = 0; rc == STORE_OK && i < n; i++) {
        store_conn_write *w = &ws[i];
        if (w->rc != STORE_OK)
            continue;
        int one = w->what == STORE_CONN_UP ? conn_up_write(s, &w->c, instance_id)
                                           : conn_write_one(s, w, instance_id);
        if (one == STORE_CONFLICT) {
            /* A row the schema refuses (its org was just deleted): the
             * transaction is lost on PostgreSQL, so the batch is written
             * again row by row, each failing or not on its own. */
            abandon(s, one);
            /* the rows checked fine read OK (not written yet) or what the
             * lost transaction said of them (OK, NOT_FOUND) */
            for (size_t k = 0; k < n; k++)
                if (ws[k].rc == STORE_OK || ws[k].rc == STORE_NOT_FOUND)
                    ws[k].rc = conn_write_one(s, &ws[k], instance_id);
            return STORE_OK;
        }
        if (one == STORE_ERR) /* the store, not the row: the batch fails at once */
            rc = abandon(s, STORE_ERR);
        else
            w->rc = one; /* STORE_OK, or STORE_NOT_FOUND: no row to update */
    }
    if (rc == STORE_OK)
        rc = commit(s, "committing connection writes");
    if (rc != STORE_OK)
        for (size_t i = 0; i < n; i++)
            if (ws[i].rc == STORE_OK || ws[i].rc == STORE_NOT_FOUND)
                ws[i].rc = STORE_ERR;
    return rc;
}

int store_connection_heartbeat(store_t *s, const char *cluster_id, int64_t now)
{
    if (!s)
        return STORE_ERR;
    int64_t changes = 0;
    if (!cluster_id)
        return serr(s, "store_connection_heartbeat: missing argument");
    db_param p[] = { DB_P_INT(now_or_clock(now)), p_text(cluster_id) };
    if (run_exec(s, "recording heartbeat",
                 "UPDATE connections SET last_heartbeat = ? WHERE cluster_id = ?", p, 2, &changes))
        return STORE_ERR;
    return changes > 0 ? STORE_OK : STORE_NOT_FOUND;
}

int store_connection_disconnected(store_t *s, const char *cluster_id, int64_t now)
{
    if (!s)
        return STORE_ERR;
    int64_t changes = 0;
    if (!cluster_id)
        return serr(s, "store_connection_disconnected: missing argument");
    /* Both SET expressions see the old row: disconnected_at is stamped by
     * the session that takes the counter from 1 to 0 (or repaired if the row
     * says 0 sessions but was never stamped), and kept otherwise. */
    db_param p[] = { DB_P_INT(now_or_clock(now)), p_text(cluster_id) };
    if (run_exec(s, "recording disconnect",
                 "UPDATE connections SET"
                 " disconnected_at = CASE WHEN connected = 1"
                 " OR (connected <= 0 AND disconnected_at = 0) THEN ? ELSE disconnected_at END,"
                 " connected = CASE WHEN connected > 0 THEN connected - 1 ELSE 0 END"
                 " WHERE cluster_id = ?",
                 p, 2, &changes))
        return STORE_ERR;
    return changes > 0 ? STORE_OK : STORE_NOT_FOUND;
}

int store_connection_reset_all(store_t *s, int64_t now)
{
    if (!s)
        return STORE_ERR;
    db_param p[] = { DB_P_INT(now_or_clock(now)) };
    return run_exec(s, "resetting connections",
                    "UPDATE connections SET connected = 0, disconnected_at = ?"
                    " WHERE connected <> 0 OR disconnected_at = 0",
                    p, 1, NULL) == STORE_OK
               ? STORE_OK
               : STORE_ERR;
}

int store_connection_heartbeat_by(store_t *s, const char *cluster_id, const char *instance_id,
                                  int64_t now)
{
    if (!s)
        return STORE_ERR;
    int64_t changes = 0;
    if (!cluster_id || !instance_id)
        return serr(s, "store_connection_heartbeat_by: missing argument");
    /* A live session's heartbeat takes back a row whose count fell to 0
     * (another replica's last session of the cluster ended, see store.h). */
    db_param p[] = { DB_P_INT(now_or_clock(now)), p_text(instance_id), p_text(cluster_id) };
    if (run_exec(s, "recording heartbeat",
                 "UPDATE connections SET last_heartbeat = ?,"
                 " instance_id = CASE WHEN connected <= 0 THEN ? ELSE instance_id END,"
                 " disconnected_at = CASE WHEN connected <= 0 THEN 0 ELSE disconnected_at END,"
                 " connected = CASE WHEN connected <= 0 THEN 1 ELSE connected END"
                 " WHERE cluster_id = ?",
                 p, 3, &changes))
        return STORE_ERR;
    return changes > 0 ? STORE_OK : STORE_NOT_FOUND;
}

int store_connection_disconnected_by(store_t *s, const char *cluster_id, const char *instance_id,
                                     int64_t now)
{
    if (!s)
        return STORE_ERR;
    int64_t changes = 0;
    if (!cluster_id || !instance_id)
        return serr(s, "store_connection_disconnected_by: missing argument");
    db_param p[] = { DB_P_INT(now_or_clock(now)), p_text(cluster_id), p_text(instance_id) };
    if (run_exec(s, "recording disconnect",
                 "UPDATE connections SET"
                 " disconnected_at = CASE WHEN connected = 1"
                 " OR (connected <= 0 AND disconnected_at = 0) THEN ? ELSE disconnected_at END,"
                 " connected = CASE WHEN connected > 0 THEN connected - 1 ELSE 0 END"
                 " WHERE cluster_id = ? AND instance_id = ?",
                 p, 3, &changes))
        return STORE_ERR;
    return changes > 0 ? STORE_OK : STORE_NOT_FOUND;
}

int store_connection_reset_dead(store_t *s, const char *self_id, int64_t live_since, int64_t now,
                                int64_t *reset)
{
    if (!s)
        return STORE_ERR;
    if (reset)
        *reset = 0;
    if (!self_id)
        return serr(s, "store_connection_reset_dead: missing argument");
    int64_t changes = 0;
    db_param p[] = { DB_P_INT(now_or_clock(now)), p_text(self_id), DB_P_INT(live_since) };
    if (run_exec(s, "resetting connections of dead server instances",
                 "UPDATE connections SET connected = 0,"
                 " disconnected_at = CASE WHEN disconnected_at = 0 THEN ? ELSE disconnected_at END"
                 " WHERE (connected <> 0 OR disconnected_at = 0) AND instance_id <> ?"
                 " AND NOT EXISTS (SELECT 1 FROM server_instances i"
                 " WHERE i.id = connections.instance_id AND i.heartbeat_at >= ?"
                 " AND i.heartbeat_at > 0)",
                 p, 3, &changes))
        return STORE_ERR;
    if (reset)
        *reset = changes;
    return STORE_OK;
}

int store_connection_get(store_t *s, const char *org_id, const char *cluster_id,
                         store_connection *out)
{
    if (!s)
        return STORE_ERR;
    db_result r;
    if (!org_id || !cluster_id || !out)
        return serr(s, "store_connection_get: missing argument");
    db_param p[] = { p_text(org_id), p_text(cluster_id) };
    if (run_query(s, "reading connection",
                  "SELECT " CONN_COLS " FROM connections WHERE org_id = ? AND cluster_id = ?", p, 2,
                  &r))
        return STORE_ERR;
    return one_row(s, &r, conn_row, out);
}

int store_connection_list(store_t *s, const char *org_id, store_connection **out, size_t *n)
{
    if (!s)
        return STORE_ERR;
    db_result r;
    if (!org_id || !out || !n)
        return serr(s, "store_connection_list: missing argument");
    *out = NULL;
    *n = 0;
    db_param p[] = { p_text(org_id) };
    if (run_query(s, "listing connections",
                  "SELECT " CONN_COLS " FROM connections WHERE org_id = ?"
                  " ORDER BY cluster_name, cluster_id",
                  p, 1, &r))
        return STORE_ERR;
    void *arr;
    int rc = all_rows(s, &r, conn_row, sizeof(**out), &arr, n);
    *out = arr;
    return rc;
}

int store_connection_delete(store_t *s, const char *org_id, const char *cluster_id)
{
    if (!s)
        return STORE_ERR;
    int64_t changes = 0;
    if (!org_id || !cluster_id)
        return serr(s, "store_connection_delete: missing argument");
    db_param p[] = { p_text(org_id), p_text(cluster_id) };
    if (run_exec(s, "deleting connection",
                 "DELETE FROM connections WHERE org_id = ? AND cluster_id = ?", p, 2, &changes))
        return STORE_ERR;
    return changes > 0 ? STORE_OK : STORE_NOT_FOUND;
}

/* ---- audit log ------------------------------------------------------------------------------ */

#define AUDIT_COLS                                                                                 \
    "id, org_id, user_id, cluster_id, kind, argv_json, return_code, bytes_out, duration_ms,"       \
    " outcome, at, instance_id, ended_at"

#define AUDIT_STARTED "started"
#define AUDIT_INTERRUPTED "interrupted"

static int audit_row(store_t *s, const db_result *r, size_t i, void *out)
{
    store_audit *a = out;
    if (cell_i64(s, r, i, 0, &a->id, "audit id") ||
        cell_str(s, r, i, 1, a->org_id, sizeof(a->org_id), "audit org_id") ||
        cell_str(s, r, i, 2, a->user_id, sizeof(a->user_id), "audit user_id") ||
        cell_str(s, r, i, 3, a->cluster_id, sizeof(a->cluster_id), "audit cluster_id") ||
        cell_str(s, r, i, 4, a->kind, sizeof(a->kind), "audit kind") ||
        cell_int(s, r, i, 6, &a->return_code, "audit return_code") ||
        cell_i64(s, r, i, 7, &a->bytes_out, "audit bytes_out") ||
        cell_i64(s, r, i, 8, &a->duration_ms, "audit duration_ms") ||
        cell_str(s, r, i, 9, a->outcome, sizeof(a->outcome), "audit outcome") ||
        cell_i64(s, r, i, 10, &a->at, "audit at") ||
        cell_str(s, r, i, 11, a->instance_id, sizeof(a->instance_id), "audit instance_id") ||
        cell_i64(s, r, i, 12, &a->ended_at, "audit ended_at"))
        return STORE_ERR;
    const char *argv = db_cell(r, i, 5);
    a->argv_json = strdup(argv ? argv : "[]");
    if (!a->argv_json)
        return serr(s, "out of memory");
    return STORE_OK;
}

/* The checks before any SQL; started: the row will say "started". */
static int audit_check(store_t *s, const store_audit *a, int started)
{
    if (!a)
        return serr(s, "store_audit_insert: missing argument");
    if (check_field(s, "org_id", a->org_id, sizeof(a->org_id), 1) ||
        check_field(s, "user_id", a->user_id, sizeof(a->user_id), 0) ||
        check_field(s, "cluster_id", a->cluster_id, sizeof(a->cluster_id), 0) ||
        check_field(s, "kind", a->kind, sizeof(a->kind), 1) ||
        check_field(s, "outcome", a->outcome, sizeof(a->outcome), 0) ||
        check_field(s, "instance_id", a->instance_id, sizeof(a->instance_id), 0) ||
        check_text(s, "argv_json", a->argv_json, AUDIT_ARGV_JSON_MAX, 1) ||
        check_time(s, "at", a->at))
        return STORE_ERR;
    if (!started && !strcmp(a->outcome, AUDIT_STARTED))
        return serr(s, "a final audit row cannot say \"started\" (use store_audit_start)");
    return STORE_OK;
}

/* One INSERT of a checked row under a fresh random id: STORE_OK (id in
 * *id_out), STORE_CONFLICT (the org is missing or the id collided) or
 * STORE_ERR. */
static int audit_insert_once(store_t *s, const store_audit *a, int started, int64_t *id_out)
{
    int64_t id;
    if (audit_id(&id) < 0)
        return serr(s, "cannot generate an audit id");
    db_param p[] = { DB_P_INT(id),
                     p_text(a->org_id),
                     p_text(a->user_id),
                     p_text(a->cluster_id),
                     p_text(a->kind),
                     p_text(a->argv_json),
                     DB_P_INT(started ? -1 : a->return_code),
                     DB_P_INT(started ? 0 : a->bytes_out),
                     DB_P_INT(started ? 0 : a->duration_ms),
                     p_text(started ? AUDIT_STARTED : a->outcome),
                     DB_P_INT(now_or_clock(a->at)),
                     p_text(a->instance_id),
                     DB_P_INT(started ? 0 : a->ended_at > 0 ? a->ended_at : (int64_t)time(NULL)) };
    int rc = run_exec(s, "writing audit record",
                      "INSERT INTO audit_log (" AUDIT_COLS ")"
                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      p, 13, NULL);
    if (rc == STORE_OK && id_out)
        *id_out = id;
    return rc;
}

/* Writes one row; started: outcome "started", return code -1, not ended. */
static int audit_write(store_t *s, const store_audit *a, int started, int64_t *id_out)
{
    if (audit_check(s, a, started) != STORE_OK)
        return STORE_ERR;
    for (int attempt = 0;; attempt++) {
        int rc = audit_insert_once(s, a, started, id_out);
        if (rc != STORE_CONFLICT)
            return rc;
        /* Either the org is missing (NOT_FOUND) or the id collided: retry. */
        int e = on_constraint(s, a->org_id, "audit id collision");
        if (e != STORE_CONFLICT || attempt + 1 >= AUDIT_ID_TRIES)
            return e == STORE_CONFLICT ? STORE_ERR : e;
    }
}

int store_audit_insert(store_t *s, const store_audit *a)
{
    if (!s)
        return STORE_ERR;
    return audit_write(s, a, 0, NULL);
}

int store_audit_start(store_t *s, store_audit *a)
{
    if (!s)
        return STORE_ERR;
    int64_t id = 0;
    int rc = audit_write(s, a, 1, &id);
    if (rc == STORE_OK)
        a->id = id;
    return rc;
}

int store_audit_start_check(store_t *s, const store_audit *a)
{
    return s ? audit_check(s, a, 1) : STORE_ERR;
}

int store_audit_final_check(store_t *s, const store_audit *a)
{
    return s ? audit_check(s, a, 0) : STORE_ERR;
}

int store_audit_start_many(store_t *s, store_audit *const *rows, size_t n)
{
    return store_audit_write_many(s, rows, n, NULL, 0);
}

/* What a completion must be before any SQL: an outcome that fits and is
 * not "started".  STORE_OK, or STORE_ERR with the reason. */
static int audit_end_check(store_t *s, const char *outcome)
{
    if (check_text(s, "outcome", outcome, sizeof(((store_audit *)0)->outcome), 1))
        return STORE_ERR;
    if (!strcmp(outcome, AUDIT_STARTED))
        return serr(s, "a completed audit row cannot say \"started\"");
    return STORE_OK;
}

/* The completion's UPDATE: STORE_OK, STORE_NOT_FOUND (no such row in that
 * org), or STORE_ERR when the statement itself failed. */
static int audit_end_sql(store_t *s, const char *org_id, int64_t id, const char *outcome,
                         int return_code, int64_t bytes_out, int64_t duration_ms, int64_t now)
{
    int64_t changes = 0;
    db_param p[] = { p_text(outcome),         DB_P_INT(return_code), DB_P_INT(bytes_out),
                     DB_P_INT(duration_ms),   DB_P_INT(now_or_clock(now)), DB_P_INT(id),
                     p_text(org_id) };
    if (run_exec(s, "completing audit record",
                 "UPDATE audit_log SET outcome = ?, return_code = ?, bytes_out = ?,"
                 " duration_ms = ?, ended_at = ? WHERE id = ? AND org_id = ?",
                 p, 7, &changes))
        return STORE_ERR;
    return changes > 0 ? STORE_OK : STORE_NOT_FOUND;
}

/* One completion inside the caller's transaction: e->rc is the row's answer;
 * STORE_ERR only when the statement itself failed (the transaction is lost). */
static int audit_end_update(store_t *s, store_audit_end *e)
{
    if (!e->org_id[0]) {
        e->rc = serr(s, "audit record %lld: a completion without its org", (long long)e->id);
        return STORE_OK; /* refused before SQL: the others still go in */
    }
    /* Whatever the database would refuse of this row alone is refused here:
     * a failed statement then means the store failed (audit_starts.c keeps
     * such ends to try again). */
    if (check_text(s, "org_id", e->org_id, sizeof(e->org_id), 1) != STORE_OK) {
        e->rc = STORE_ERR;
        return STORE_OK;
    }
    if (audit_end_check(s, e->outcome) != STORE_OK) {
        e->rc = STORE_ERR;
        return STORE_OK;
    }
    int rc = audit_end_sql(s, e->org_id, e->id, e->outcome, e->return_code, e->bytes_out,
                           e->duration_ms, e->ended_at);
    if (rc == STORE_ERR)
        return STORE_ERR;
    e->rc = rc;
    return STORE_OK;
}

int store_audit_write_many(store_t *s, store_audit *const *rows, size_t n,
                           store_audit_end *ends, size_t m)
{
    if (!s)
        return STORE_ERR;
    if ((!rows && n) || (!ends && m))
        return serr(s, "store_audit_write_many: missing argument");
    for (size_t i = 0; i < n; i++)
        if (audit_check(s, rows[i], 1) != STORE_OK)
            return STORE_ERR;
    if (n + m == 0)
        return STORE_OK;
    if (n == 1 && m == 0) /* no transaction of its own needed */
        return store_audit_start(s, rows[0]);
    int64_t *ids = n ? calloc(n, sizeof(*ids)) : NULL;
    if (n && !ids)
        return serr(s, "out of memory");
    /* The messages name what the transaction was for. */
    const char *begin = !m ? "beginning audit starts"
                      : !n ? "beginning audit completions" : "beginning audit writes";
    const char *done = !m ? "committing audit starts"
                     : !n ? "committing audit completions" : "committing audit writes";
    int rc = run_exec(s, begin, "BEGIN", NULL, 0, NULL);
    for (size_t i = 0; rc == STORE_OK && i < n; i++) {
        rc = audit_insert_once(s, rows[i], 1, &ids[i]);
        if (rc == STORE_CONFLICT) {
            /* Asked once the transaction is gone: PostgreSQL answers no
             * query inside a transaction where a statement failed. */
            abandon(s, rc);
            rc = on_constraint(s, rows[i]->org_id, "audit id collision");
            free(ids);
            return rc;
        }
        if (rc != STORE_OK)
            abandon(s, rc);
    }
    for (size_t i = 0; rc == STORE_OK && i < m; i++)
        if ((rc = audit_end_update(s, &ends[i])) != STORE_OK)
            abandon(s, rc);
    if (rc == STORE_OK)
        rc = commit(s, done);
    for (size_t i = 0; rc == STORE_OK && i < n; i++)
        rows[i]->id = ids[i];
    free(ids);
    return rc;
}

int store_audit_complete(store_t *s, const char *org_id, int64_t id, const char *outcome,
                         int return_code, int64_t bytes_out, int64_t duration_ms, int64_t now)
{
    if (!s)
        return STORE_ERR;
    if (!org_id || !outcome)
        return serr(s, "store_audit_complete: missing argument");
    if (audit_end_check(s, outcome) != STORE_OK)
        return STORE_ERR;
    return audit_end_sql(s, org_id, id, outcome, return_code, bytes_out, duration_ms, now);
}

int store_audit_complete_many(store_t *s, store_audit_end *ends, size_t n)
{
    if (!s)
        return STORE_ERR;
    if (!ends && n)
        return serr(s, "store_audit_complete_many: missing argument");
    if (n == 1) { /* no transaction of its own needed */
        /* As in a transaction: an invalid item is its own answer, and the
         * call fails only when the store did. */
        if (audit_end_update(s, &ends[0]) != STORE_OK) {
            ends[0].rc = STORE_ERR;
            return STORE_ERR;
        }
        return STORE_OK;
    }
    return store_audit_write_many(s, NULL, 0, ends, n);
}

int store_audit_query(store_t *s, const store_audit_filter *f, store_audit **out, size_t *n)
{
    if (!s)
        return STORE_ERR;
    db_result r;
    if (!f || !out || !n)
        return serr(s, "store_audit_query: missing argument");
    *out = NULL;
    *n = 0;
    int limit = f->limit;
    if (limit <= 0)
        limit = AUDIT_LIST_DEFAULT;
    if (limit > AUDIT_LIST_MAX)
        limit = AUDIT_LIST_MAX;
    /* Every filter is a bound parameter; only these fixed fragments are
     * joined.  Newest first; the cursor is the last row seen, (at, id). */
    char sql[640];
    db_param p[9];
    size_t np = 0;
    size_t len = (size_t)snprintf(sql, sizeof(sql), "SELECT " AUDIT_COLS " FROM audit_log WHERE 1 = 1");
#define AUDIT_AND(cond, param)                                                                     \
    do {                                                                                           \
        len += (size_t)snprintf(sql + len, sizeof(sql) - len, " AND %s", cond);                    \
        p[np++] = (param);                                                                         \
    } while (0)
    if (f->org_id)
        AUDIT_AND("org_id = ?", p_text(f->org_id));
    if (f->cluster_id)
        AUDIT_AND("cluster_id = ?", p_text(f->cluster_id));
    if (f->user_id)
        AUDIT_AND("user_id = ?", p_text(f->user_id));
    if (f->outcome)
        AUDIT_AND("outcome = ?", p_text(f->outcome));
    if (f->since)
        AUDIT_AND("at >= ?", DB_P_INT(f->since));
    if (f->until)
        AUDIT_AND("at < ?", DB_P_INT(f->until));
    if (f->before_at || f->before_id) {
        AUDIT_AND("(at < ? OR (at = ? AND id < ?))", DB_P_INT(f->before_at));
        p[np++] = DB_P_INT(f->before_at);
        p[np++] = DB_P_INT(f->before_id);
    }
#undef AUDIT_AND
    snprintf(sql + len, sizeof(sql) - len, " ORDER BY at DESC, id DESC LIMIT ?");
    p[np++] = DB_P_INT(limit);
    if (run_query(s, "listing audit records", sql, p, np, &r))
        return STORE_ERR;
    /* all_rows frees a half-decoded array without its strings: decode here
     * so every argv_json already copied is released on failure. */
    if (r.nrows == 0) {
        db_result_free(&r);
        return STORE_OK;
    }
    store_audit *arr = calloc(r.nrows, sizeof(*arr));
    if (!arr) {
        db_result_free(&r);
        return serr(s, "out of memory");
    }
    for (size_t i = 0; i < r.nrows; i++) {
        if (audit_row(s, &r, i, &arr[i]) != STORE_OK) {
            store_audit_list_free(arr, i + 1); /* row i may hold nothing: calloc'd */
            db_result_free(&r);
            return STORE_ERR;
        }
    }
    *out = arr;
    *n = r.nrows;
    db_result_free(&r);
    return STORE_OK;
}

int store_audit_list(store_t *s, const char *org_id, int limit, store_audit **out, size_t *n)
{
    if (!org_id) /* this one is always org-scoped */
        return s ? serr(s, "store_audit_list: missing argument") : STORE_ERR;
    store_audit_filter f = { .org_id = org_id, .limit = limit };
    return store_audit_query(s, &f, out, n);
}

int store_audit_prune(store_t *s, int64_t before, int batch, int64_t *deleted)
{
    if (!s)
        return STORE_ERR;
    if (deleted)
        *deleted = 0;
    if (batch <= 0)
        batch = 1000;
    /* Batches keep each statement (and its locks) short on a large table;
     * a row still "started" belongs to the sweep, not to retention. */
    for (;;) {
        db_param p[] = { DB_P_INT(before), DB_P_INT(batch) };
        int64_t changes = 0;
        int rc = run_exec(s, "pruning audit records",
                          "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log"
                          " WHERE at < ? AND outcome <> '" AUDIT_STARTED "' LIMIT ?)",
                          p, 2, &changes);
        if (rc != STORE_OK)
            return rc;
        if (deleted)
            *deleted += changes;
        if (changes < batch)
            return STORE_OK;
    }
}

int store_audit_rewrite_argv(store_t *s, char *(*fix)(const char *argv_json), int batch,
                             int64_t *seen, int64_t *changed)
{
    if (!s || !fix)
        return STORE_ERR;
    *seen = *changed = 0;
    if (batch <= 0)
        batch = 500;
    int64_t after = INT64_MIN;
    for (;;) {
        db_param p[] = { DB_P_INT(after), DB_P_INT(batch) };
        db_result r;
        if (run_query(s, "reading audit records",
                      "SELECT id, argv_json FROM audit_log WHERE id > ? ORDER BY id LIMIT ?", p, 2,
                      &r))
            return STORE_ERR;
        size_t rows = r.nrows;
        for (size_t i = 0; i < rows; i++) {
            const char *id = db_cell(&r, i, 0);
            char *end = NULL;
            long long v = id ? strtoll(id, &end, 10) : 0;
            if (!id || end == id || *end) {
                db_result_free(&r);
                return serr(s, "audit record with an unreadable id");
            }
            after = v;
            (*seen)++;
            char *now = fix(db_cell(&r, i, 1));
            if (!now)
                continue;
            db_param u[] = { p_text(now), DB_P_INT(v) };
            int rc = check_text(s, "rewritten argv_json", now, AUDIT_ARGV_JSON_MAX, 1);
            if (rc == STORE_OK)
                rc = run_exec(s, "rewriting an audit record",
                              "UPDATE audit_log SET argv_json = ? WHERE id = ?", u, 2, NULL);
            if (rc != STORE_OK) { /* the id, so the operator can find the row */
                char why[512];
                snprintf(why, sizeof(why), "%s", store_errmsg(s));
                serr(s, "audit record %lld: %s", (long long)v, why);
            }
            free(now);
            if (rc != STORE_OK) {
                db_result_free(&r);
                return rc;
            }
            (*changed)++;
        }
        db_result_free(&r);
        if (rows < (size_t)batch)
            return STORE_OK;
    }
}

static int store_is_sqlite(const store_t *s)
{
    return s && s->eng && !strcmp(s->eng->name, "sqlite");
}

int store_scrub_begin(store_t *s)
{
    if (!s)
        return STORE_ERR;
    if (!store_is_sqlite(s))
        return STORE_OK;
    return run_exec(s, "turning on secure delete", "PRAGMA secure_delete = ON", NULL, 0, NULL);
}

int store_scrub_end(store_t *s)
{
    if (!s)
        return STORE_ERR;
    if (!store_is_sqlite(s))
        return 1;
    db_result r;
    if (run_query(s, "checkpointing the WAL", "PRAGMA wal_checkpoint(TRUNCATE)", NULL, 0, &r))
        return STORE_ERR;
    /* one row: busy (1 when a reader or writer kept it from finishing), log
     * frames, frames checkpointed */
    const char *busy = r.nrows == 1 ? db_cell(&r, 0, 0) : NULL;
    int done = busy && !strcmp(busy, "0");
    db_result_free(&r);
    return done;
}

int store_keeps_dead_rows(const store_t *s)
{
    return s && !store_is_sqlite(s);
}

int store_vacuum_full(store_t *s, const char *table)
{
    if (!s)
        return STORE_ERR;
    if (!store_keeps_dead_rows(s))
        return STORE_OK;
    /* a fixed list: the name goes into the statement's text */
    if (strcmp(table, "audit_log") && strcmp(table, "webhook_deliveries"))
        return serr(s, "VACUUM FULL of %s: not a table a redact pass rewrites", table);
    char sql[64];
    snprintf(sql, sizeof(sql), "VACUUM (FULL) %s", table);
    return run_exec(s, "rewriting the table's files (VACUUM FULL)", sql, NULL, 0, NULL);
}

void store_audit_list_free(store_audit *a, size_t n)
{
    if (!a)
        return;
    for (size_t i = 0; i < n; i++)
        free(a[i].argv_json);
    free(a);
}

/* ---- server instances ------------------------------------------------------------------------- */

#define INSTANCE_COLS "id, hostname, proc_space, pid, started_at, heartbeat_at"
/* Instance rows are kept this long after their lease lapsed (who ran what). */
#define INSTANCE_KEEP_S (24 * 3600)

static int instance_row(store_t *s, const db_result *r, size_t i, void *out)
{
    store_instance *x = out;
    if (cell_str(s, r, i, 0, x->id, sizeof(x->id), "instance id") ||
        cell_str(s, r, i, 1, x->hostname, sizeof(x->hostname), "instance hostname") ||
        cell_str(s, r, i, 2, x->proc_space, sizeof(x->proc_space), "instance proc_space") ||
        cell_i64(s, r, i, 3, &x->pid, "instance pid") ||
        cell_i64(s, r, i, 4, &x->started_at, "instance started_at") ||
        cell_i64(s, r, i, 5, &x->heartbeat_at, "instance heartbeat_at"))
        return STORE_ERR;
    return STORE_OK;
}

int store_instance_register(store_t *s, const store_instance *i)
{
    if (!s)
        return STORE_ERR;
    if (!i)
        return serr(s, "store_instance_register: missing argument");
    if (check_field(s, "id", i->id, sizeof(i->id), 1) ||
        check_field(s, "hostname", i->hostname, sizeof(i->hostname), 0) ||
        check_field(s, "proc_space", i->proc_space, sizeof(i->proc_space), 0) ||
        check_time(s, "started_at", i->started_at) || check_time(s, "heartbeat_at", i->heartbeat_at))
        return STORE_ERR;
    int64_t hb = now_or_clock(i->heartbeat_at);
    db_param p[] = { p_text(i->id),          p_text(i->hostname),
                     p_text(i->proc_space),  DB_P_INT(i->pid),
                     DB_P_INT(now_or_clock(i->started_at)), DB_P_INT(hb) };
    return run_exec(s, "registering server instance",
                    "INSERT INTO server_instances (" INSTANCE_COLS ") VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                    p, 6, NULL);
}

int store_instance_heartbeat(store_t *s, const char *id, int64_t now)
{
    if (!s)
        return STORE_ERR;
    if (!id)
        return serr(s, "store_instance_heartbeat: missing argument");
    int64_t changes = 0;
    db_param p[] = { DB_P_INT(now_or_clock(now)), p_text(id) };
    if (run_exec(s, "renewing server instance lease",
                 "UPDATE server_instances SET heartbeat_at = ? WHERE id = ?", p, 2, &changes))
        return STORE_ERR;
    return changes > 0 ? STORE_OK : STORE_NOT_FOUND;
}

int store_instance_list_live(store_t *s, const char *proc_space, int64_t live_since,
                             store_instance **out, size_t *n)
{
    if (!s)
        return STORE_ERR;
    if (!proc_space || !out || !n)
        return serr(s, "store_instance_list_live: missing argument");
    *out = NULL;
    *n = 0;
    db_result r;
    db_param p[] = { p_text(proc_space), DB_P_INT(live_since) };
    if (run_query(s, "listing server instances",
                  "SELECT " INSTANCE_COLS " FROM server_instances"
                  " WHERE proc_space = ? AND heartbeat_at >= ? AND heartbeat_at > 0 ORDER BY id",
                  p, 2, &r))
        return STORE_ERR;
    void *arr;
    int rc = all_rows(s, &r, instance_row, sizeof(**out), &arr, n);
    *out = arr;
    return rc;
}

int store_instance_retire(store_t *s, const char *id)
{
    if (!s)
        return STORE_ERR;
    if (!id)
        return serr(s, "store_instance_retire: missing argument");
    int64_t changes = 0;
    db_param p[] = { p_text(id) };
    if (run_exec(s, "retiring server instance",
                 "UPDATE server_instances SET heartbeat_at = 0 WHERE id = ?", p, 1, &changes))
        return STORE_ERR;
    return changes > 0 ? STORE_OK : STORE_NOT_FOUND;
}

int store_audit_sweep(store_t *s, const char *self_id, int64_t live_since, int64_t now,
                      int64_t *closed)
{
    if (!s)
        return STORE_ERR;
    if (closed)
        *closed = 0;
    if (!self_id)
        return serr(s, "store_audit_sweep: missing argument");
    now = now_or_clock(now);
    /* A lease counts only if it is both recent and not marked gone (0). */
    int64_t changes = 0;
    /* 'started' is spelled out (not bound) so that both engines can use the
     * partial index audit_log_started_idx: only the open rows are read. */
    db_param p[] = { DB_P_INT(now), p_text(self_id), DB_P_INT(live_since) };
    if (run_exec(s, "closing interrupted audit records",
                 "UPDATE audit_log SET outcome = '" AUDIT_INTERRUPTED "', return_code = -1,"
                 " ended_at = ?"
                 " WHERE outcome = '" AUDIT_STARTED "' AND instance_id <> ?"
                 " AND NOT EXISTS (SELECT 1 FROM server_instances i"
                 " WHERE i.id = audit_log.instance_id AND i.heartbeat_at >= ?"
                 " AND i.heartbeat_at > 0)",
                 p, 3, &changes))
        return STORE_ERR;
    if (closed)
        *closed = changes;
    db_param q[] = { DB_P_INT(now - INSTANCE_KEEP_S), DB_P_INT(live_since), p_text(self_id) };
    return run_exec(s, "forgetting dead server instances",
                    "DELETE FROM server_instances WHERE heartbeat_at < ? AND heartbeat_at < ?"
                    " AND id <> ?",
                    q, 3, NULL);
}

/* ---- connectors ------------------------------------------------------------------------------ */

/* The connector's non-secret metadata (a JSON object); GCP keeps one entry
 * per accessible project, so this is generous, but bounded. */
#define CONNECTOR_METADATA_MAX (2 * 1024 * 1024)

#define CONNECTOR_COLS                                                                             \
    "org_id, user_id, connector, account, secret_ref, status, metadata_json, created_at,"          \
    " updated_at"

void store_connector_free(store_connector *c)
{
    if (!c)
        return;
    free(c->metadata_json);
    c->metadata_json = NULL;
}

void store_connector_list_free(store_connector *c, size_t n)
{
    if (!c)
        return;
    for (size_t i = 0; i < n; i++)
        free(c[i].metadata_json);
    free(c);
}

static int connector_row(store_t *s, const db_result *r, size_t i, void *out)
{
    store_connector *c = out;
    c->metadata_json = NULL;
    if (cell_str(s, r, i, 0, c->org_id, sizeof(c->org_id), "connector org_id") ||
        cell_str(s, r, i, 1, c->user_id, sizeof(c->user_id), "connector user_id") ||
        cell_str(s, r, i, 2, c->connector, sizeof(c->connector), "connector name") ||
        cell_str(s, r, i, 3, c->account, sizeof(c->account), "connector account") ||
        cell_str(s, r, i, 4, c->secret_ref, sizeof(c->secret_ref), "connector secret_ref") ||
        cell_str(s, r, i, 5, c->status, sizeof(c->status), "connector status") ||
        cell_i64(s, r, i, 7, &c->created_at, "connector created_at") ||
        cell_i64(s, r, i, 8, &c->updated_at, "connector updated_at"))
        return STORE_ERR;
    const char *m = db_cell(r, i, 6);
    c->metadata_json = strdup(m && *m ? m : "{}");
    if (!c->metadata_json)
        return serr(s, "out of memory");
    return STORE_OK;
}

int store_connector_upsert(store_t *s, const store_connector *c)
{
    if (!s)
        return STORE_ERR;
    if (!c)
        return serr(s, "store_connector_upsert: missing argument");
    const char *meta = c->metadata_json && *c->metadata_json ? c->metadata_json : "{}";
    if (check_field(s, "org_id", c->org_id, sizeof(c->org_id), 1) ||
        check_field(s, "user_id", c->user_id, sizeof(c->user_id), 1) ||
        check_field(s, "connector", c->connector, sizeof(c->connector), 1) ||
        check_field(s, "account", c->account, sizeof(c->account), 0) ||
        check_field(s, "secret_ref", c->secret_ref, sizeof(c->secret_ref), 0) ||
        check_field(s, "status", c->status, sizeof(c->status), 0) ||
        check_text(s, "metadata_json", meta, CONNECTOR_METADATA_MAX, 1))
        return STORE_ERR;
    const char *status = c->status[0] ? c->status : "active";
    int64_t now = (int64_t)time(NULL);
    db_param p[] = { p_text(c->org_id),     p_text(c->user_id), p_text(c->connector),
                     p_text(c->account),    p_text(c->secret_ref), p_text(status),
                     p_text(meta),          DB_P_INT(now),      DB_P_INT(next_seq()),
                     DB_P_INT(now) };
    int rc = run_exec(s, "saving connector",
                      "INSERT INTO connectors (org_id, user_id, connector, account, secret_ref,"
                      " status, metadata_json, created_at, created_seq, updated_at)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                      " ON CONFLICT (org_id, user_id, connector) DO UPDATE SET"
                      " account = excluded.account,"
                      " secret_ref = excluded.secret_ref,"
                      " status = excluded.status,"
                      " metadata_json = excluded.metadata_json,"
                      " updated_at = excluded.updated_at",
                      p, 10, NULL);
    if (rc == STORE_CONFLICT)
        return on_constraint(s, c->org_id, "connector violates a constraint");
    return rc;
}

int store_connector_update_meta(store_t *s, const store_connector *c)
{
    if (!s)
        return STORE_ERR;
    if (!c)
        return serr(s, "store_connector_update_meta: missing argument");
    const char *meta = c->metadata_json && *c->metadata_json ? c->metadata_json : "{}";
    if (check_field(s, "org_id", c->org_id, sizeof(c->org_id), 1) ||
        check_field(s, "user_id", c->user_id, sizeof(c->user_id), 1) ||
        check_field(s, "connector", c->connector, sizeof(c->connector), 1) ||
        check_text(s, "metadata_json", meta, CONNECTOR_METADATA_MAX, 1))
        return STORE_ERR;
    int64_t changes = 0;
    db_param p[] = { p_text(meta), DB_P_INT((int64_t)time(NULL)), p_text(c->org_id),
                     p_text(c->user_id), p_text(c->connector) };
    if (run_exec(s, "saving connector metadata",
                 "UPDATE connectors SET metadata_json = ?, updated_at = ?"
                 " WHERE org_id = ? AND user_id = ? AND connector = ?",
                 p, 5, &changes))
        return STORE_ERR;
    return changes > 0 ? STORE_OK : STORE_NOT_FOUND;
}

int store_connector_get(store_t *s, const char *org_id, const char *user_id,
                        const char *connector, store_connector *out)
{
    if (!s)
        return STORE_ERR;
    db_result r;
    if (!org_id || !user_id || !connector || !out)
        return serr(s, "store_connector_get: missing argument");
    memset(out, 0, sizeof(*out));
    db_param p[] = { p_text(org_id), p_text(user_id), p_text(connector) };
    if (run_query(s, "reading connector",
                  "SELECT " CONNECTOR_COLS " FROM connectors"
                  " WHERE org_id = ? AND user_id = ? AND connector = ?",
                  p, 3, &r))
        return STORE_ERR;
    int rc = one_row(s, &r, connector_row, out);
    if (rc != STORE_OK)
        store_connector_free(out);
    return rc;
}

int store_connector_list(store_t *s, const char *org_id, store_connector **out, size_t *n)
{
    if (!s)
        return STORE_ERR;
    db_result r;
    if (!org_id || !out || !n)
        return serr(s, "store_connector_list: missing argument");
    *out = NULL;
    *n = 0;
    db_param p[] = { p_text(org_id) };
    if (run_query(s, "listing connectors",
                  "SELECT " CONNECTOR_COLS " FROM connectors WHERE org_id = ?"
                  " ORDER BY created_at, created_seq, user_id, connector",
                  p, 1, &r))
        return STORE_ERR;
    if (r.nrows == 0) {
        db_result_free(&r);
        return STORE_OK;
    }
    store_connector *arr = calloc(r.nrows, sizeof(*arr));
    if (!arr) {
        db_result_free(&r);
        return serr(s, "out of memory");
    }
    for (size_t i = 0; i < r.nrows; i++) {
        if (connector_row(s, &r, i, &arr[i]) != STORE_OK) {
            store_connector_list_free(arr, i + 1);
            db_result_free(&r);
            return STORE_ERR;
        }
    }
    *out = arr;
    *n = r.nrows;
    db_result_free(&r);
    return STORE_OK;
}

int store_connector_page(store_t *s, const char *connector, store_connector_cursor *cur, int limit,
                         store_connector **out, size_t *n)
{
    if (!s)
        return STORE_ERR;
    if (!connector || !cur || !out || !n || limit <= 0)
        return serr(s, "store_connector_page: missing argument");
    *out = NULL;
    *n = 0;
    db_result r;
    /* created_seq (column 9) orders rows created within the same second; the
     * primary key's (org_id, user_id) settles the rest, so the order is total. */
    if (!cur->started) {
        db_param p[] = { p_text(connector), DB_P_INT(limit) };
        if (run_query(s, "listing connectors by id",
                      "SELECT " CONNECTOR_COLS ", created_seq FROM connectors WHERE connector = ?"
                      " ORDER BY created_at, created_seq, org_id, user_id LIMIT ?",
                      p, 2, &r))
            return STORE_ERR;
    } else {
        db_param p[] = { p_text(connector),       DB_P_INT(cur->created_at),
                         DB_P_INT(cur->created_seq), p_text(cur->org_id),
                         p_text(cur->user_id),    DB_P_INT(limit) };
        if (run_query(s, "listing connectors by id",
                      "SELECT " CONNECTOR_COLS ", created_seq FROM connectors WHERE connector = ?"
                      " AND (created_at, created_seq, org_id, user_id) > (?, ?, ?, ?)"
                      " ORDER BY created_at, created_seq, org_id, user_id LIMIT ?",
                      p, 6, &r))
            return STORE_ERR;
    }
    if (r.nrows == 0) {
        db_result_free(&r);
        return STORE_OK;
    }
    store_connector *arr = calloc(r.nrows, sizeof(*arr));
    if (!arr) {
        db_result_free(&r);
        return serr(s, "out of memory");
    }
    int64_t seq = 0;
    for (size_t i = 0; i < r.nrows; i++) {
        if (connector_row(s, &r, i, &arr[i]) != STORE_OK ||
            (i + 1 == r.nrows && cell_i64(s, &r, i, 9, &seq, "connector created_seq"))) {
            store_connector_list_free(arr, i + 1);
            db_result_free(&r);
            return STORE_ERR;
        }
    }
    const store_connector *last = &arr[r.nrows - 1];
    cur->started = 1;
    cur->created_at = last->created_at;
    cur->created_seq = seq;
    snprintf(cur->org_id, sizeof(cur->org_id), "%s", last->org_id);
    snprintf(cur->user_id, sizeof(cur->user_id), "%s", last->user_id);
    *out = arr;
    *n = r.nrows;
    db_result_free(&r);
    return STORE_OK;
}

int store_connector_delete(store_t *s, const char *org_id, const char *user_id,
                           const char *connector)
{
    if (!s)
        return STORE_ERR;
    int64_t changes = 0;
    if (!org_id || !user_id || !connector)
        return serr(s, "store_connector_delete: missing argument");
    db_param p[] = { p_text(org_id), p_text(user_id), p_text(connector) };
    if (run_exec(s, "deleting connector",
                 "DELETE FROM connectors WHERE org_id = ? AND user_id = ? AND connector = ?", p, 3,
                 &changes))
        return STORE_ERR;
    return changes > 0 ? STORE_OK : STORE_NOT_FOUND;
}

/* ---- OAuth state -------------------------------------------------------------------------------- */

/* Rows this long past their expiry are removed by the periodic prune. */
#define OAUTH_STATE_KEEP_EXPIRED 86400

int store_oauth_state_create(store_t *s, const char *state_hash, const store_oauth_state *st)
{
    if (!s)
        return STORE_ERR;
    if (!st)
        return serr(s, "store_oauth_state_create: missing argument");
    if (check_hash(s, "state_hash", state_hash) ||
        check_field(s, "org_id", st->org_id, sizeof(st->org_id), 1) ||
        check_field(s, "user_id", st->user_id, sizeof(st->user_id), 1) ||
        check_field(s, "provider", st->provider, sizeof(st->provider), 1) ||
        check_field(s, "redirect_uri", st->redirect_uri, sizeof(st->redirect_uri), 0) ||
        check_field(s, "extra", st->extra, sizeof(st->extra), 0) ||
        (st->browser_hash[0] && check_hash(s, "browser_hash", st->browser_hash)) ||
        check_field(s, "started_via", st->started_via, sizeof(st->started_via), 0) ||
        (st->console_session[0] && check_hash(s, "console_session", st->console_session)) ||
        check_time(s, "expires_at", st->expires_at))
        return STORE_ERR;
    int64_t now = (int64_t)time(NULL);
    /* Long-expired states are removed by the periodic task alone
     * (oauth-state-prune, every 10 minutes): pruning here too cost each login
     * route a DELETE in a transaction of its own (an fsync more under
     * AURORA_DB_SYNC=full), and the per-user cap below already bounds what
     * one user leaves between two runs. */
    /* At most STORE_OAUTH_STATES_PER_USER per user: any member with an API
     * key makes one per call of a login route, and a callback spends it
     * without deleting it, so each row stayed its TTL plus a day however
     * many there were (found in review).  The user's rows beyond the
     * newest MAX - 1 go first, those still under way kept ahead of spent
     * and expired ones, in the transaction of the INSERT: a refused INSERT
     * drops nothing, and the new state is never the one dropped.  One
     * user's range of oauth_states_user_idx (migration 22). */
    if (run_exec(s, "beginning OAuth state", "BEGIN", NULL, 0, NULL) != STORE_OK)
        return STORE_ERR;
    db_param pc[] = { p_text(st->org_id), p_text(st->user_id), p_text(st->org_id),
                      p_text(st->user_id), DB_P_INT(now),
                      DB_P_INT(STORE_OAUTH_STATES_PER_USER - 1) };
    if (run_exec(s, "dropping the user's oldest OAuth states",
                 "DELETE FROM oauth_states WHERE org_id = ? AND user_id = ?"
                 " AND state_hash NOT IN (SELECT state_hash FROM oauth_states"
                 " WHERE org_id = ? AND user_id = ?"
                 " ORDER BY CASE WHEN used_at = 0 AND expires_at > ? THEN 0 ELSE 1 END,"
                 " created_at DESC, expires_at DESC, state_hash LIMIT ?)",
                 pc, 6, NULL) != STORE_OK)
        return abandon(s, STORE_ERR);
    db_param p[] = { p_text(state_hash),      p_text(st->org_id),   p_text(st->user_id),
                     p_text(st->provider),    p_text(st->redirect_uri), p_text(st->extra),
                     DB_P_INT(now),           DB_P_INT(st->expires_at), p_text(st->browser_hash),
                     p_text(st->started_via), p_text(st->console_session) };
    int rc = run_exec(s, "creating OAuth state",
                      "INSERT INTO oauth_states (state_hash, org_id, user_id, provider,"
                      " redirect_uri, extra, created_at, expires_at, used_at, browser_hash,"
                      " started_via, console_session) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
                      p, 11, NULL);
    if (rc != STORE_OK) {
        /* asked outside the failed transaction */
        (void)abandon(s, rc);
        return rc == STORE_CONFLICT ? on_constraint(s, st->org_id, "this OAuth state exists") : rc;
    }
    return commit(s, "committing OAuth state");
}

int store_oauth_state_prune(store_t *s, int64_t now, int64_t *deleted)
{
    if (!s)
        return STORE_ERR;
    if (deleted)
        *deleted = 0;
    /* kept a day past expiry so that a late callback hears "expired" */
    db_param p[] = { DB_P_INT(now_or_clock(now) - OAUTH_STATE_KEEP_EXPIRED) };
    return run_exec(s, "removing old OAuth states", "DELETE FROM oauth_states WHERE expires_at < ?",
                    p, 1, deleted);
}

static int oauth_state_row(store_t *s, const db_result *r, size_t i, void *out)
{
    store_oauth_state *o = out;
    if (cell_str(s, r, i, 0, o->org_id, sizeof(o->org_id), "state org_id") ||
        cell_str(s, r, i, 1, o->user_id, sizeof(o->user_id), "state user_id") ||
        cell_str(s, r, i, 2, o->provider, sizeof(o->provider), "state provider") ||
        cell_str(s, r, i, 3, o->redirect_uri, sizeof(o->redirect_uri), "state redirect_uri") ||
        cell_str(s, r, i, 4, o->extra, sizeof(o->extra), "state extra") ||
        cell_i64(s, r, i, 5, &o->expires_at, "state expires_at") ||
        cell_str(s, r, i, 6, o->browser_hash, sizeof(o->browser_hash), "state browser_hash") ||
        cell_str(s, r, i, 7, o->started_via, sizeof(o->started_via), "state started_via") ||
        cell_str(s, r, i, 8, o->console_session, sizeof(o->console_session),
                 "state console_session"))
        return STORE_ERR;
    return STORE_OK;
}

int store_oauth_state_consume(store_t *s, const char *state_hash, int64_t now,
                              store_oauth_state *out)
{
    if (!s)
        return STORE_ERR;
    if (!out)
        return serr(s, "store_oauth_state_consume: missing argument");
    if (check_hash(s, "state_hash", state_hash))
        return STORE_ERR;
    now = now_or_clock(now);
    /* The claim is one conditional UPDATE: of two concurrent callers (two
     * handles, two replicas) exactly one changes the row. */
    int64_t changes = 0;
    db_param p[] = { DB_P_INT(now), p_text(state_hash), DB_P_INT(now) };
    if (run_exec(s, "consuming OAuth state",
                 "UPDATE oauth_states SET used_at = ?"
                 " WHERE state_hash = ? AND used_at = 0 AND expires_at > ?",
                 p, 3, &changes))
        return STORE_ERR;
    if (changes == 0)
        return STORE_NOT_FOUND;
    db_result r;
    db_param pq[] = { p_text(state_hash) };
    if (run_query(s, "reading OAuth state",
                  "SELECT org_id, user_id, provider, redirect_uri, extra, expires_at,"
                  " browser_hash, started_via, console_session FROM oauth_states"
                  " WHERE state_hash = ?",
                  pq, 1, &r))
        return STORE_ERR;
    return one_row(s, &r, oauth_state_row, out);
}

int store_oauth_state_status(store_t *s, const char *state_hash, int64_t *used_at,
                             int64_t *expires_at)
{
    if (!s)
        return STORE_ERR;
    if (!used_at || !expires_at)
        return serr(s, "store_oauth_state_status: missing argument");
    if (check_hash(s, "state_hash", state_hash))
        return STORE_ERR;
    db_result r;
    db_param p[] = { p_text(state_hash) };
    if (run_query(s, "reading OAuth state",
                  "SELECT used_at, expires_at FROM oauth_states WHERE state_hash = ?", p, 1, &r))
        return STORE_ERR;
    int rc = STORE_NOT_FOUND;
    if (r.nrows > 0)
        rc = cell_i64(s, &r, 0, 0, used_at, "state used_at") ||
                     cell_i64(s, &r, 0, 1, expires_at, "state expires_at")
                 ? STORE_ERR
                 : STORE_OK;
    db_result_free(&r);
    return rc;
}

int store_oauth_state_org(store_t *s, const char *state_hash, int64_t now,
                          char org_id[STORE_ID_LEN])
{
    if (!s)
        return STORE_ERR;
    if (!org_id)
        return serr(s, "store_oauth_state_org: missing argument");
    org_id[0] = '\0';
    if (check_hash(s, "state_hash", state_hash))
        return STORE_ERR;
    db_result r;
    db_param p[] = { p_text(state_hash), DB_P_INT(now_or_clock(now)) };
    if (run_query(s, "reading OAuth state",
                  "SELECT org_id FROM oauth_states WHERE state_hash = ? AND used_at = 0"
                  " AND expires_at > ?",
                  p, 2, &r))
        return STORE_ERR;
    int rc = STORE_NOT_FOUND;
    if (r.nrows > 0)
        rc = cell_str(s, &r, 0, 0, org_id, STORE_ID_LEN, "state org_id") ? STORE_ERR : STORE_OK;
    db_result_free(&r);
    return rc;
}

int store_oauth_state_set_expiry(store_t *s, const char *state_hash, int64_t expires_at)
{
    if (!s)
        return STORE_ERR;
    if (check_hash(s, "state_hash", state_hash) || check_time(s, "expires_at", expires_at))
        return STORE_ERR;
    int64_t changes = 0;
    db_param p[] = { DB_P_INT(expires_at), p_text(state_hash) };
    if (run_exec(s, "setting OAuth state expiry",
                 "UPDATE oauth_states SET expires_at = ? WHERE state_hash = ?", p, 2, &changes))
        return STORE_ERR;
    return changes > 0 ? STORE_OK : STORE_NOT_FOUND;
}

/* ---- per-organization settings ------------------------------------------------------------------ */

#define ORG_SETTING_KEY_MAX 128
#define ORG_SETTING_VALUE_MAX 4096

int store_org_setting_get(store_t *s, const char *org_id, const char *key, char *value,
                          size_t cap)
{
    if (!s)
        return STORE_ERR;
    if (!org_id || !key || !value || !cap)
        return serr(s, "store_org_setting_get: missing argument");
    db_result r;
    db_param p[] = { p_text(org_id), p_text(key) };
    if (run_query(s, "reading organization setting",
                  "SELECT setting_value FROM org_settings WHERE org_id = ? AND setting_key = ?", p,
                  2, &r))
        return STORE_ERR;
    int rc = r.nrows == 0 ? STORE_NOT_FOUND
                          : cell_str(s, &r, 0, 0, value, cap, "organization setting");
    db_result_free(&r);
    return rc;
}

int store_org_setting_create(store_t *s, const char *org_id, const char *key, const char *value)
{
    if (!s)
        return STORE_ERR;
    if (check_text(s, "org_id", org_id, STORE_ID_LEN, 1) ||
        check_text(s, "setting key", key, ORG_SETTING_KEY_MAX, 1) ||
        check_text(s, "setting value", value, ORG_SETTING_VALUE_MAX, 0))
        return STORE_ERR;
    db_param p[] = { p_text(org_id), p_text(key), p_text(value), DB_P_INT(time(NULL)) };
    int rc = run_exec(s, "creating organization setting",
                      "INSERT INTO org_settings (org_id, setting_key, setting_value, created_at)"
                      " VALUES (?, ?, ?, ?)",
                      p, 4, NULL);
    if (rc == STORE_CONFLICT)
        return on_constraint(s, org_id, "this organization setting exists");
    return rc;
}

/* ---- operator helpers ------------------------------------------------------------ */

int store_agent_token_set_expiry(store_t *s, const char *id, int64_t expires_at)
{
    if (!s)
        return STORE_ERR;
    if (!id || check_time(s, "expires_at", expires_at) != STORE_OK)
        return serr(s, "store_agent_token_set_expiry: bad argument");
    int64_t changes = 0;
    db_param p[] = { DB_P_INT(expires_at), p_text(id) };
    if (run_exec(s, "setting token expiry", "UPDATE agent_tokens SET expires_at = ? WHERE id = ?",
                 p, 2, &changes) != STORE_OK)
        return STORE_ERR;
    return changes > 0 ? STORE_OK : STORE_NOT_FOUND;
}

int store_cluster_org(store_t *s, const char *cluster_id, char *org_id)
{
    if (!s)
        return STORE_ERR;
    if (!cluster_id || !org_id)
        return serr(s, "store_cluster_org: missing argument");
    static const char *const queries[] = {
        "SELECT org_id FROM connections WHERE cluster_id = ?",
        "SELECT org_id FROM agent_tokens WHERE cluster_id = ? ORDER BY created_at DESC LIMIT 1",
    };
    for (size_t q = 0; q < sizeof(queries) / sizeof(queries[0]); q++) {
        db_result r;
        db_param p[] = { p_text(cluster_id) };
        if (run_query(s, "finding the cluster's organization", queries[q], p, 1, &r) != STORE_OK)
            return STORE_ERR;
        int found = r.nrows > 0 && db_cell(&r, 0, 0);
        int rc = found ? cell_str(s, &r, 0, 0, org_id, STORE_ID_LEN, "org_id") : STORE_OK;
        db_result_free(&r);
        if (rc != STORE_OK)
            return rc;
        if (found)
            return STORE_OK;
    }
    return STORE_NOT_FOUND;
}

/* ---- GitHub App installations ------------------------------------------------------ */

#define GITHUB_INSTALLATION_COLS                                                              \
    "installation_id, org_id, installed_by, account_login, account_type,"                    \
    " repository_selection, permissions_json, events_json, suspended_at, pending,"           \
    " created_at, updated_at"
/* What is read back: the written columns, then the webhook's state. */
#define GITHUB_INSTALLATION_READ_COLS GITHUB_INSTALLATION_COLS ", removed_at"
#define GITHUB_INSTALLATION_LIST_MAX 1000

void store_github_installation_free(store_github_installation *g)
{
    if (!g)
        return;
    free(g->permissions_json);
    free(g->events_json);
    g->permissions_json = g->events_json = NULL;
}

void store_github_installation_list_free(store_github_installation *g, size_t n)
{
    if (!g)
        return;
    for (size_t i = 0; i < n; i++)
        store_github_installation_free(&g[i]);
    free(g);
}

static int github_installation_row(store_t *s, const db_result *r, size_t i, void *out)
{
    store_github_installation *g = out;
    g->permissions_json = g->events_json = NULL;
    if (cell_i64(s, r, i, 0, &g->installation_id, "installation_id") ||
        cell_str(s, r, i, 1, g->org_id, sizeof(g->org_id), "installation org_id") ||
        cell_str(s, r, i, 2, g->installed_by, sizeof(g->installed_by), "installed_by") ||
        cell_str(s, r, i, 3, g->account_login, sizeof(g->account_login), "account_login") ||
        cell_str(s, r, i, 4, g->account_type, sizeof(g->account_type), "account_type") ||
        cell_str(s, r, i, 5, g->repository_selection, sizeof(g->repository_selection),
                 "repository_selection") ||
        cell_i64(s, r, i, 8, &g->suspended_at, "suspended_at") ||
        cell_int(s, r, i, 9, &g->pending, "pending") ||
        cell_i64(s, r, i, 10, &g->created_at, "installation created_at") ||
        cell_i64(s, r, i, 11, &g->updated_at, "installation updated_at") ||
        cell_i64(s, r, i, 12, &g->removed_at, "installation removed_at"))
        return STORE_ERR;
    const char *pj = db_cell(r, i, 6), *ej = db_cell(r, i, 7);
    g->permissions_json = strdup(pj && *pj ? pj : "{}");
    g->events_json = strdup(ej && *ej ? ej : "[]");
    if (!g->permissions_json || !g->events_json) {
        store_github_installation_free(g);
        return serr(s, "out of memory");
    }
    return STORE_OK;
}

int store_github_installation_upsert(store_t *s, const store_github_installation *g)
{
    if (!s)
        return STORE_ERR;
    if (!g)
        return serr(s, "store_github_installation_upsert: missing argument");
    const char *perms = g->permissions_json && *g->permissions_json ? g->permissions_json : "{}";
    const char *events = g->events_json && *g->events_json ? g->events_json : "[]";
    if (g->installation_id <= 0)
        return serr(s, "installation_id must be positive");
    if (check_field(s, "org_id", g->org_id, sizeof(g->org_id), 1) ||
        check_field(s, "installed_by", g->installed_by, sizeof(g->installed_by), 0) ||
        check_field(s, "account_login", g->account_login, sizeof(g->account_login), 0) ||
        check_field(s, "account_type", g->account_type, sizeof(g->account_type), 0) ||
        check_field(s, "repository_selection", g->repository_selection,
                    sizeof(g->repository_selection), 0) ||
        check_text(s, "permissions_json", perms, STORE_GITHUB_JSON_MAX, 1) ||
        check_text(s, "events_json", events, STORE_GITHUB_JSON_MAX, 1) ||
        check_time(s, "suspended_at", g->suspended_at))
        return STORE_ERR;
    int64_t now = (int64_t)time(NULL), changes = 0;
    db_param p[] = { DB_P_INT(g->installation_id), p_text(g->org_id), p_text(g->installed_by),
                     p_text(g->account_login), p_text(g->account_type),
                     p_text(g->repository_selection), p_text(perms), p_text(events),
                     DB_P_INT(g->suspended_at), DB_P_INT(g->pending ? 1 : 0), DB_P_INT(now),
                     DB_P_INT(now), DB_P_INT(next_seq()) };
    /* The WHERE on the update keeps another organization's row untouched:
     * no change at all then means the installation is claimed. */
    int rc = run_exec(s, "saving GitHub installation",
                      "INSERT INTO github_installations (" GITHUB_INSTALLATION_COLS
                      ", created_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                      " ON CONFLICT (installation_id) DO UPDATE SET"
                      " installed_by = excluded.installed_by,"
                      " account_login = excluded.account_login,"
                      " account_type = excluded.account_type,"
                      " repository_selection = excluded.repository_selection,"
                      " permissions_json = excluded.permissions_json,"
                      " events_json = excluded.events_json,"
                      " suspended_at = excluded.suspended_at,"
                      " pending = excluded.pending,"
                      " removed_at = 0,"
                      " updated_at = excluded.updated_at"
                      " WHERE github_installations.org_id = excluded.org_id",
                      p, 13, &changes);
    if (rc == STORE_CONFLICT)
        return on_constraint(s, g->org_id, "GitHub installation violates a constraint");
    if (rc != STORE_OK)
        return rc;
    if (changes == 0) {
        serr(s, "GitHub installation belongs to another organization");
        return STORE_CONFLICT;
    }
    return STORE_OK;
}

int store_github_installation_get(store_t *s, const char *org_id, int64_t installation_id,
                                  store_github_installation *out)
{
    if (!s)
        return STORE_ERR;
    if (!org_id || !out)
        return serr(s, "store_github_installation_get: missing argument");
    memset(out, 0, sizeof(*out));
    db_result r;
    db_param p[] = { p_text(org_id), DB_P_INT(installation_id) };
    if (run_query(s, "reading GitHub installation",
                  "SELECT " GITHUB_INSTALLATION_READ_COLS " FROM github_installations"
                  " WHERE org_id = ? AND installation_id = ?",
                  p, 2, &r))
        return STORE_ERR;
    return one_row(s, &r, github_installation_row, out);
}

int store_github_installation_list(store_t *s, const char *org_id,
                                   store_github_installation **out, size_t *n)
{
    if (!s)
        return STORE_ERR;
    if (!org_id || !out || !n)
        return serr(s, "store_github_installation_list: missing argument");
    *out = NULL;
    *n = 0;
    db_result r;
    db_param p[] = { p_text(org_id), DB_P_INT(GITHUB_INSTALLATION_LIST_MAX) };
    if (run_query(s, "listing GitHub installations",
                  "SELECT " GITHUB_INSTALLATION_READ_COLS " FROM github_installations"
                  " WHERE org_id = ? ORDER BY created_at, created_seq LIMIT ?",
                  p, 2, &r))
        return STORE_ERR;
    void *arr = NULL;
    int rc = all_rows(s, &r, github_installation_row, sizeof(store_github_installation), &arr, n);
    *out = arr;
    return rc;
}

/* ---- GitHub webhooks' view of installations ------------------------------------------ */

#define GITHUB_REPO_LIST_MAX 1000

int store_github_installation_org(store_t *s, int64_t installation_id, char org_id[STORE_ID_LEN])
{
    if (!s)
        return STORE_ERR;
    if (!org_id)
        return serr(s, "store_github_installation_org: missing argument");
    org_id[0] = '\0';
    db_result r;
    db_param p[] = { DB_P_INT(installation_id) };
    if (run_query(s, "reading GitHub installation's organization",
                  "SELECT org_id FROM github_installations WHERE installation_id = ?", p, 1, &r))
        return STORE_ERR;
    int rc = r.nrows == 0 ? STORE_NOT_FOUND
                          : cell_str(s, &r, 0, 0, org_id, STORE_ID_LEN, "installation org_id");
    db_result_free(&r);
    return rc;
}

/* One UPDATE of org_id's installation; NOT_FOUND when it changed no row. */
static int github_installation_update(store_t *s, const char *what, const char *sql,
                                      const db_param *p, size_t np)
{
    int64_t changes = 0;
    int rc = run_exec(s, what, sql, p, np, &changes);
    if (rc != STORE_OK)
        return rc;
    return changes == 0 ? STORE_NOT_FOUND : STORE_OK;
}

int store_github_installation_set(store_t *s, const char *org_id, int64_t installation_id,
                                  store_github_installation_field field, int64_t value)
{
    if (!s)
        return STORE_ERR;
    if (!org_id || !*org_id)
        return serr(s, "store_github_installation_set: missing argument");
    /* The column comes from this table, never from the caller's text. */
    static const char *const sql[] = {
        [STORE_GH_SUSPENDED_AT] = "UPDATE github_installations SET suspended_at = ?, updated_at = ?"
                                  " WHERE org_id = ? AND installation_id = ?",
        [STORE_GH_PENDING] = "UPDATE github_installations SET pending = ?, updated_at = ?"
                             " WHERE org_id = ? AND installation_id = ?",
        [STORE_GH_REMOVED_AT] = "UPDATE github_installations SET removed_at = ?, updated_at = ?"
                                " WHERE org_id = ? AND installation_id = ?",
    };
    if ((unsigned)field >= sizeof(sql) / sizeof(sql[0]) || check_time(s, "value", value))
        return serr(s, "store_github_installation_set: bad field or value");
    db_param p[] = { DB_P_INT(value), DB_P_INT((int64_t)time(NULL)), p_text(org_id),
                     DB_P_INT(installation_id) };
    return github_installation_update(s, "updating GitHub installation", sql[field], p, 4);
}

int store_github_installation_describe(store_t *s, const store_github_installation *g,
                                       int clear_pending)
{
    if (!s)
        return STORE_ERR;
    if (!g)
        return serr(s, "store_github_installation_describe: missing argument");
    const char *perms = g->permissions_json && *g->permissions_json ? g->permissions_json : "{}";
    const char *events = g->events_json && *g->events_json ? g->events_json : "[]";
    if (check_field(s, "org_id", g->org_id, sizeof(g->org_id), 1) ||
        check_field(s, "account_login", g->account_login, sizeof(g->account_login), 0) ||
        check_field(s, "account_type", g->account_type, sizeof(g->account_type), 0) ||
        check_field(s, "repository_selection", g->repository_selection,
                    sizeof(g->repository_selection), 0) ||
        check_text(s, "permissions_json", perms, STORE_GITHUB_JSON_MAX, 1) ||
        check_text(s, "events_json", events, STORE_GITHUB_JSON_MAX, 1))
        return STORE_ERR;
    db_param p[] = { p_text(g->account_login), p_text(g->account_type),
                     p_text(g->repository_selection), p_text(perms), p_text(events),
                     DB_P_INT(clear_pending ? 1 : 0), DB_P_INT((int64_t)time(NULL)),
                     p_text(g->org_id), DB_P_INT(g->installation_id) };
    return github_installation_update(
        s, "refreshing GitHub installation",
        "UPDATE github_installations SET account_login = ?, account_type = ?,"
        " repository_selection = ?, permissions_json = ?, events_json = ?,"
        " pending = CASE WHEN ? = 1 THEN 0 ELSE pending END, updated_at = ?"
        " WHERE org_id = ? AND installation_id = ?",
        p, 9);
}

int store_github_repository_put(store_t *s, const char *org_id, const store_github_repository *r)
{
    if (!s)
        return STORE_ERR;
    if (!r)
        return serr(s, "store_github_repository_put: missing argument");
    if (check_text(s, "org_id", org_id, STORE_ID_LEN, 1) ||
        check_field(s, "full_name", r->full_name, sizeof(r->full_name), 1))
        return STORE_ERR;
    if (r->installation_id <= 0 || r->repository_id <= 0)
        return serr(s, "installation and repository ids must be positive");
    db_param p[] = { DB_P_INT(r->installation_id), DB_P_INT(r->repository_id), p_text(org_id),
                     p_text(r->full_name), DB_P_INT(r->is_private ? 1 : 0),
                     DB_P_INT((int64_t)time(NULL)) };
    int rc = run_exec(s, "saving GitHub repository",
                      "INSERT INTO github_installation_repositories (installation_id,"
                      " repository_id, org_id, full_name, private, added_at)"
                      " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (installation_id, repository_id)"
                      " DO UPDATE SET full_name = excluded.full_name, private = excluded.private"
                      " WHERE github_installation_repositories.org_id = excluded.org_id",
                      p, 6, NULL);
    if (rc == STORE_CONFLICT)
        return on_constraint(s, org_id, "GitHub repository violates a constraint");
    return rc;
}

int store_github_repository_delete(store_t *s, const char *org_id, int64_t installation_id,
                                   int64_t repository_id)
{
    if (!s)
        return STORE_ERR;
    if (!org_id || !*org_id)
        return serr(s, "store_github_repository_delete: missing argument");
    db_param p[] = { p_text(org_id), DB_P_INT(installation_id), DB_P_INT(repository_id) };
    return run_exec(s, "removing GitHub repository",
                    "DELETE FROM github_installation_repositories"
                    " WHERE org_id = ? AND installation_id = ? AND repository_id = ?",
                    p, 3, NULL);
}

static int github_repository_row(store_t *s, const db_result *r, size_t i, void *out)
{
    store_github_repository *g = out;
    if (cell_i64(s, r, i, 0, &g->installation_id, "installation_id") ||
        cell_i64(s, r, i, 1, &g->repository_id, "repository_id") ||
        cell_str(s, r, i, 2, g->full_name, sizeof(g->full_name), "full_name") ||
        cell_int(s, r, i, 3, &g->is_private, "private") ||
        cell_i64(s, r, i, 4, &g->added_at, "added_at"))
        return STORE_ERR;
    return STORE_OK;
}

int store_github_repository_list(store_t *s, const char *org_id, int64_t installation_id,
                                 int limit, store_github_repository **out, size_t *n)
{
    if (!s)
        return STORE_ERR;
    if (!org_id || !out || !n || limit < 1 || limit > GITHUB_REPO_LIST_MAX)
        return serr(s, "store_github_repository_list: bad argument");
    *out = NULL;
    *n = 0;
    db_result r;
    db_param p[] = { p_text(org_id), DB_P_INT(installation_id), DB_P_INT(limit) };
    if (run_query(s, "listing GitHub repositories",
                  "SELECT installation_id, repository_id, full_name, private, added_at"
                  " FROM github_installation_repositories WHERE org_id = ? AND installation_id = ?"
                  " ORDER BY full_name, repository_id LIMIT ?",
                  p, 3, &r))
        return STORE_ERR;
    void *arr = NULL;
    int rc = all_rows(s, &r, github_repository_row, sizeof(store_github_repository), &arr, n);
    *out = arr;
    return rc;
}

/* ---- inbound webhook deliveries ------------------------------------------------------ */

/* A delivery body is bounded by the server's largest request (AURORA_MAX_BODY
 * is at most 1 GiB); base64 of that still fits a TEXT value. */
#define WEBHOOK_BODY_MAX ((size_t)1 << 30)
#define WEBHOOK_LIST_MAX 200
#define WEBHOOK_COLS                                                                               \
    "id, org_id, connector, tenant_key, delivery_id, event, action, verified, status, attempts,"   \
    " last_error, received_at, received_seq, claimed_at, processed_at"

static int webhook_row(store_t *s, const db_result *r, size_t i, void *out)
{
    store_webhook_delivery *d = out;
    memset(d, 0, sizeof(*d));
    if (cell_str(s, r, i, 0, d->id, sizeof(d->id), "webhook id") ||
        cell_str(s, r, i, 1, d->org_id, sizeof(d->org_id), "webhook org_id") ||
        cell_str(s, r, i, 2, d->connector, sizeof(d->connector), "webhook connector") ||
        cell_str(s, r, i, 3, d->tenant_key, sizeof(d->tenant_key), "webhook tenant_key") ||
        cell_str(s, r, i, 4, d->delivery_id, sizeof(d->delivery_id), "webhook delivery_id") ||
        cell_str(s, r, i, 5, d->event, sizeof(d->event), "webhook event") ||
        cell_str(s, r, i, 6, d->action, sizeof(d->action), "webhook action") ||
        cell_int(s, r, i, 7, &d->verified, "webhook verified") ||
        cell_str(s, r, i, 8, d->status, sizeof(d->status), "webhook status") ||
        cell_int(s, r, i, 9, &d->attempts, "webhook attempts") ||
        cell_str(s, r, i, 10, d->last_error, sizeof(d->last_error), "webhook last_error") ||
        cell_i64(s, r, i, 11, &d->received_at, "webhook received_at") ||
        cell_i64(s, r, i, 12, &d->received_seq, "webhook received_seq") ||
        cell_i64(s, r, i, 13, &d->claimed_at, "webhook claimed_at") ||
        cell_i64(s, r, i, 14, &d->processed_at, "webhook processed_at"))
        return STORE_ERR;
    return STORE_OK;
}

/* The body as stored: the bytes themselves when they are UTF-8 without NUL
 * (PostgreSQL's TEXT takes nothing else, SQLite binds up to the first NUL),
 * else base64.  *text is malloc'd. */
static int webhook_encode_body(store_t *s, const void *body, size_t len, char **text,
                               const char **encoding)
{
    if (utf8_valid(body, len)) { /* utf8_valid refuses NUL */
        char *t = malloc(len + 1);
        if (!t)
            return serr(s, "out of memory");
        if (len)
            memcpy(t, body, len);
        t[len] = '\0';
        *text = t;
        *encoding = "utf8";
        return STORE_OK;
    }
    *text = crypto_base64(body, len);
    if (!*text)
        return serr(s, "out of memory");
    *encoding = "base64";
    return STORE_OK;
}

int store_webhook_insert(store_t *s, store_webhook_delivery *d, const void *body, size_t len,
                         int unassigned_status)
{
    if (!s)
        return STORE_ERR;
    if (!d || (!body && len))
        return serr(s, "store_webhook_insert: missing argument");
    if (check_field(s, "org_id", d->org_id, sizeof(d->org_id), 0) ||
        check_field(s, "connector", d->connector, sizeof(d->connector), 1) ||
        check_field(s, "tenant_key", d->tenant_key, sizeof(d->tenant_key), 0) ||
        check_field(s, "delivery_id", d->delivery_id, sizeof(d->delivery_id), 1) ||
        check_field(s, "event", d->event, sizeof(d->event), 0) ||
        check_field(s, "action", d->action, sizeof(d->action), 0) ||
        check_field(s, "adopt_key", d->adopt_key, sizeof(d->adopt_key), 0))
        return STORE_ERR;
    if (len > WEBHOOK_BODY_MAX)
        return serr(s, "webhook body too large");
    char id[STORE_ID_LEN], digest[65];
    if (id_generate("whd_", id, sizeof(id)) < 0)
        return serr(s, "cannot generate an id");
    crypto_sha256_hex(len ? body : "", len, digest);
    /* body_key (unique per connector and tenant_key) detects the same bytes
     * under a fresh delivery id.  A per-user tenant_key is a user id, and
     * one user id may act in two organizations: the key is scoped by the
     * organization too, so one org's delivery never shadows the other's. */
    char body_key[65];
    memcpy(body_key, digest, sizeof(body_key));
    if (d->unique_body && d->tenant_key[0] && d->org_id[0]) {
        char scoped[STORE_ID_LEN + 1 + 65];
        int n = snprintf(scoped, sizeof(scoped), "%s\n%s", d->org_id, digest);
        crypto_sha256_hex(scoped, (size_t)n, body_key);
    }
    char *text = NULL;
    const char *encoding = "utf8";
    if (webhook_encode_body(s, len ? body : "", len, &text, &encoding) != STORE_OK)
        return STORE_ERR;
    int assigned = d->org_id[0] != '\0';
    const char *status = !assigned && unassigned_status ? "unassigned" : "received";
    int64_t received_at = time(NULL), seq = next_seq();
    db_param p[] = {
        p_text(id),           assigned ? p_text(d->org_id) : DB_P_TEXT(NULL),
        p_text(d->connector), p_text(d->tenant_key),
        p_text(d->delivery_id), p_text(d->event),
        p_text(d->action),    DB_P_INT(d->verified ? 1 : 0),
        p_text(text),         p_text(encoding),
        p_text(digest),       p_text(status),
        DB_P_INT(received_at), DB_P_INT(seq),
        d->unique_body ? p_text(body_key) : DB_P_TEXT(NULL), p_text(d->adopt_key),
        /* due at once; one waiting for its organization is not the sweep's */
        strcmp(status, "received") ? DB_P_TEXT(NULL) : DB_P_INT(0),
    };
    int64_t changes = 0;
    /* One autocommit statement: when the engine answers, the row is
     * committed (SQLite: sqlite3_step returned SQLITE_DONE after the WAL
     * commit; PostgreSQL: the server acknowledged the implicit transaction's
     * COMMIT).  ON CONFLICT … DO NOTHING makes a redelivery a no-op without
     * an error the engine would log; the foreign key to orgs is still
     * enforced (a constraint error, not a conflict). */
    int rc = run_exec(s, "storing webhook delivery",
                      "INSERT INTO webhook_deliveries (id, org_id, connector, tenant_key,"
                      " delivery_id, event, action, verified, body, body_encoding, body_sha256,"
                      " status, received_at, received_seq, body_key, adopt_key, next_attempt_at)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                      " ON CONFLICT DO NOTHING", /* delivery id, or body_key when set */
                      p, sizeof(p) / sizeof(p[0]), &changes);
    free(text);
    if (rc == STORE_CONFLICT) {
        serr(s, "organization not found");
        return STORE_NOT_FOUND;
    }
    if (rc != STORE_OK)
        return rc;
    if (changes > 0) {
        memcpy(d->id, id, sizeof(id));
        snprintf(d->status, sizeof(d->status), "%s", status);
        d->received_at = received_at;
        d->received_seq = seq;
        return STORE_OK;
    }
    /* A redelivery: report the row that holds it. */
    db_result r;
    db_param q[] = { p_text(d->connector), p_text(d->tenant_key), p_text(d->delivery_id),
                     d->unique_body ? p_text(body_key) : DB_P_TEXT(NULL) };
    if (run_query(s, "reading webhook delivery",
                  "SELECT " WEBHOOK_COLS " FROM webhook_deliveries"
                  " WHERE connector = ? AND tenant_key = ? AND (delivery_id = ? OR body_key = ?)"
                  " ORDER BY received_at, received_seq LIMIT 1",
                  q, 4, &r) != STORE_OK)
        return STORE_ERR;
    store_webhook_delivery prev;
    rc = one_row(s, &r, webhook_row, &prev);
    if (rc == STORE_NOT_FOUND) /* pruned in between (an expired unassigned row): retried */
        return serr(s, "webhook delivery conflict without a row");
    if (rc != STORE_OK)
        return rc;
    memcpy(d->id, prev.id, sizeof(d->id));
    memcpy(d->org_id, prev.org_id, sizeof(d->org_id));
    memcpy(d->status, prev.status, sizeof(d->status));
    d->received_at = prev.received_at;
    d->received_seq = prev.received_seq;
    return STORE_CONFLICT;
}

int store_webhook_find(store_t *s, const char *connector, const char *tenant_key,
                       const char *delivery_id, store_webhook_delivery *out)
{
    if (!s)
        return STORE_ERR;
    if (!connector || !tenant_key || !delivery_id || !out)
        return serr(s, "store_webhook_find: missing argument");
    memset(out, 0, sizeof(*out));
    db_result r;
    db_param p[] = { p_text(connector), p_text(tenant_key), p_text(delivery_id) };
    if (run_query(s, "reading webhook delivery",
                  "SELECT " WEBHOOK_COLS " FROM webhook_deliveries"
                  " WHERE connector = ? AND tenant_key = ? AND delivery_id = ?",
                  p, 3, &r) != STORE_OK)
        return STORE_ERR;
    return one_row(s, &r, webhook_row, out);
}

int store_webhook_get(store_t *s, const char *org_id, const char *connector, const char *id,
                      store_webhook_delivery *out)
{
    if (!s)
        return STORE_ERR;
    if (!connector || !id || !out || (org_id && !*org_id))
        return serr(s, "store_webhook_get: missing argument");
    memset(out, 0, sizeof(*out));
    db_result r;
    db_param p[] = { p_text(connector), p_text(id), p_text(org_id) };
    if (run_query(s, "reading webhook delivery",
                  org_id ? "SELECT " WEBHOOK_COLS ", body, body_encoding FROM webhook_deliveries"
                           " WHERE connector = ? AND id = ? AND org_id = ?"
                         : "SELECT " WEBHOOK_COLS ", body, body_encoding FROM webhook_deliveries"
                           " WHERE connector = ? AND id = ?",
                  p, org_id ? 3 : 2, &r) != STORE_OK)
        return STORE_ERR;
    if (r.nrows == 0) {
        db_result_free(&r);
        return STORE_NOT_FOUND;
    }
    int rc = webhook_row(s, &r, 0, out);
    const char *text = db_cell(&r, 0, 15), *encoding = db_cell(&r, 0, 16);
    if (rc == STORE_OK) {
        if (!text || !encoding) {
            rc = serr(s, "stored webhook body missing");
        } else if (strcmp(encoding, "base64") == 0) {
            size_t n = 0;
            unsigned char *raw = crypto_base64_decode(text, strlen(text), &n);
            char *b = raw ? malloc(n + 1) : NULL;
            if (!b) {
                rc = serr(s, "stored webhook body is not decodable");
            } else {
                memcpy(b, raw, n);
                b[n] = '\0';
                out->body = b;
                out->body_len = n;
            }
            free(raw);
        } else {
            size_t n = strlen(text);
            out->body = malloc(n + 1);
            if (!out->body)
                rc = serr(s, "out of memory");
            else {
                memcpy(out->body, text, n + 1);
                out->body_len = n;
            }
        }
    }
    db_result_free(&r);
    return rc;
}

/* One page of the rewrite: the ids of the connector's rows among the next
 * `batch` rows in id order (*seen_rows of them, *last the last id read),
 * copied out of the result so that each row's own read and update can run
 * before the next page is asked for.  Paged by the primary key alone, the
 * connector compared here: a "connector = ?" in the query makes SQLite
 * take the (connector, …) index and sort every one of the connector's rows
 * for each page, which is quadratic over a long history. */
static int webhook_id_page(store_t *s, const char *connector, const char *after, int batch,
                           char (**ids)[STORE_ID_LEN], size_t *n, size_t *seen_rows,
                           char last[STORE_ID_LEN])
{
    *ids = NULL;
    *n = *seen_rows = 0;
    db_result r;
    db_param p[] = { p_text(after), DB_P_INT(batch) };
    if (run_query(s, "reading webhook deliveries",
                  "SELECT id, connector FROM webhook_deliveries WHERE id > ? ORDER BY id LIMIT ?",
                  p, 2, &r) != STORE_OK)
        return STORE_ERR;
    if (r.nrows && !(*ids = calloc(r.nrows, sizeof(**ids)))) {
        db_result_free(&r);
        return serr(s, "out of memory");
    }
    for (size_t i = 0; i < r.nrows; i++) {
        if (cell_str(s, &r, i, 0, last, STORE_ID_LEN, "webhook id")) {
            db_result_free(&r);
            free(*ids);
            *ids = NULL;
            *n = 0;
            return STORE_ERR;
        }
        const char *c = db_cell(&r, i, 1);
        if (c && !strcmp(c, connector))
            memcpy((*ids)[(*n)++], last, STORE_ID_LEN);
    }
    *seen_rows = r.nrows;
    db_result_free(&r);
    return STORE_OK;
}

/* One row of store_webhook_rewrite_bodies: 1 rewritten, 0 left, < 0 error. */
static int webhook_rewrite_one(store_t *s, const char *connector, const char *id,
                               char *(*fix)(const char *, size_t, void *, int *), void *arg)
{
    store_webhook_delivery d;
    int rc = store_webhook_get(s, NULL, connector, id, &d);
    if (rc == STORE_NOT_FOUND) /* deleted meanwhile (pruned): nothing to rewrite */
        return 0;
    if (rc != STORE_OK)
        return rc < 0 ? rc : STORE_ERR;
    int err = 0;
    char *now = fix(d.body, d.body_len, arg, &err);
    secret_free_n(d.body, d.body_len + 1);
    d.body = NULL;
    if (err)
        return serr(s, "the body could not be rewritten (out of memory)");
    if (!now)
        return 0;
    size_t len = strlen(now);
    char digest[65], *text = NULL;
    const char *encoding = "utf8";
    crypto_sha256_hex(now, len, digest);
    rc = len > WEBHOOK_BODY_MAX ? serr(s, "rewritten webhook body too large")
                                : webhook_encode_body(s, now, len, &text, &encoding);
    secret_free(now);
    int64_t changes = 0;
    if (rc == STORE_OK) {
        db_param u[] = { p_text(text), p_text(encoding), p_text(digest), p_text(id) };
        rc = run_exec(s, "rewriting a webhook delivery",
                      "UPDATE webhook_deliveries SET body = ?, body_encoding = ?, body_sha256 = ?"
                      " WHERE id = ?",
                      u, 4, &changes);
    }
    secret_free(text);
    if (rc != STORE_OK)
        return rc < 0 ? rc : STORE_ERR;
    return changes > 0; /* 0: deleted between the read and the update */
}

int store_webhook_rewrite_bodies(store_t *s, const char *connector,
                                 char *(*fix)(const char *body, size_t len, void *arg, int *err),
                                 void *arg, int batch, int64_t *seen, int64_t *changed)
{
    if (!s)
        return STORE_ERR;
    if (!connector || !*connector || !fix || !seen || !changed)
        return serr(s, "store_webhook_rewrite_bodies: missing argument");
    *seen = *changed = 0;
    if (batch <= 0)
        batch = 500;
    char after[STORE_ID_LEN] = "";
    for (;;) {
        char(*ids)[STORE_ID_LEN];
        size_t n, rows;
        char last[STORE_ID_LEN] = "";
        if (webhook_id_page(s, connector, after, batch, &ids, &n, &rows, last) != STORE_OK)
            return STORE_ERR;
        for (size_t i = 0; i < n; i++) {
            int rc = webhook_rewrite_one(s, connector, ids[i], fix, arg);
            if (rc < 0) { /* the id, so the operator can find the row */
                char why[512];
                snprintf(why, sizeof(why), "%s", store_errmsg(s));
                serr(s, "webhook delivery %s: %s", ids[i], why);
                free(ids);
                return rc;
            }
            (*seen)++;
            *changed += rc;
        }
        free(ids);
        if (rows < (size_t)batch)
            return STORE_OK;
        memcpy(after, last, sizeof(after));
    }
}


int store_webhook_list(store_t *s, const char *org_id, const char *connector, const char *event,
                       int64_t before_seq, const char *before_id, int limit,
                       store_webhook_delivery **out, size_t *n)
{
    if (!s)
        return STORE_ERR;
    if (!org_id || !*org_id || !connector || !out || !n)
        return serr(s, "store_webhook_list: missing argument");
    *out = NULL;
    *n = 0;
    if (limit < 1 || limit > WEBHOOK_LIST_MAX)
        return serr(s, "webhook list limit out of range");
    /* Keyset pagination: (received_seq, id) strictly below the cursor. */
    if (before_seq <= 0) {
        before_seq = INT64_MAX;
        before_id = "";
    }
    if (!before_id)
        before_id = "";
    int by_event = event && *event;
    db_param p[] = { p_text(org_id),  p_text(connector), DB_P_INT(before_seq),
                     DB_P_INT(before_seq), p_text(before_id), DB_P_INT(limit),
                     p_text(event) };
    if (by_event) { /* the event goes before LIMIT */
        p[5] = p_text(event);
        p[6] = DB_P_INT(limit);
    }
    db_result r;
    if (run_query(s, "listing webhook deliveries",
                  by_event ? "SELECT " WEBHOOK_COLS " FROM webhook_deliveries"
                             " WHERE org_id = ? AND connector = ?"
                             " AND (received_seq < ? OR (received_seq = ? AND id < ?))"
                             " AND event = ? ORDER BY received_seq DESC, id DESC LIMIT ?"
                           : "SELECT " WEBHOOK_COLS " FROM webhook_deliveries"
                             " WHERE org_id = ? AND connector = ?"
                             " AND (received_seq < ? OR (received_seq = ? AND id < ?))"
                             " ORDER BY received_seq DESC, id DESC LIMIT ?",
                  p, by_event ? 7 : 6, &r) != STORE_OK)
        return STORE_ERR;
    return all_rows(s, &r, webhook_row, sizeof(store_webhook_delivery), (void **)out, n);
}

/* Copies the first column of every row into ids (limit entries). */
static int webhook_ids(store_t *s, db_result *r, char (*ids)[STORE_ID_LEN], size_t *n)
{
    int rc = STORE_OK;
    *n = 0;
    for (size_t i = 0; i < r->nrows && rc == STORE_OK; i++)
        if ((rc = cell_str(s, r, i, 0, ids[i], STORE_ID_LEN, "webhook id")) == STORE_OK)
            (*n)++;
    db_result_free(r);
    return rc;
}

int store_webhook_tenant_stats(store_t *s, const char *org_id, const char *connector,
                               const char *tenant_key, int64_t *count, int64_t *last_received_at)
{
    if (!s)
        return STORE_ERR;
    if (!org_id || !*org_id || !connector || !tenant_key || !count || !last_received_at)
        return serr(s, "store_webhook_tenant_stats: missing argument");
    *count = 0;
    *last_received_at = 0;
    db_result r;
    db_param p[] = { p_text(connector), p_text(tenant_key), p_text(org_id) };
    /* (connector, tenant_key, …) leads the idempotency index: no scan of
     * other tenants' rows. */
    if (run_query(s, "counting webhook deliveries",
                  "SELECT COUNT(*), MAX(received_at) FROM webhook_deliveries"
                  " WHERE connector = ? AND tenant_key = ? AND org_id = ?",
                  p, 3, &r) != STORE_OK)
        return STORE_ERR;
    int rc = STORE_OK;
    if (r.nrows == 1 && (cell_i64(s, &r, 0, 0, count, "delivery count") != STORE_OK ||
                         cell_i64(s, &r, 0, 1, last_received_at, "delivery received_at") != STORE_OK))
        rc = STORE_ERR;
    db_result_free(&r);
    return rc;
}

/* The open-for-processing condition shared by list_open and claim. */
/* next_attempt_at is set only on the rows the sweep may hand out (0 when
 * received, the claim time when claimed, the retry time when failed with
 * attempts left; NULL once finished or failed for good, and while waiting
 * for an organization, migration 19), so webhook_deliveries_due_idx holds
 * only those and the sweep reads the rows due, not every finished one.  A
 * failed delivery is open once its retry is due (the kit's backoff).  A
 * stale claim is open only with attempts left: a delivery that kills or
 * hangs its worker every time would otherwise be handed out for ever (see
 * store_webhook_expire_claims).  Parameters: now, max_attempts,
 * stale_before, max_attempts. */
#define WEBHOOK_OPEN_SQL                                                                           \
    "next_attempt_at <= ? AND (status = 'received' OR (status = 'failed' AND attempts < ?)"        \
    " OR (status = 'processing' AND claimed_at < ? AND attempts < ?))"

int store_webhook_list_open(store_t *s, const char *connector, int max_attempts,
                            int64_t stale_before, int64_t now, int limit,
                            char (*ids)[STORE_ID_LEN], size_t *n)
{
    if (!s)
        return STORE_ERR;
    if (!connector || !ids || !n || limit < 1 || limit > WEBHOOK_LIST_MAX)
        return serr(s, "store_webhook_list_open: bad argument");
    db_result r;
    db_param p[] = { p_text(connector), DB_P_INT(now_or_clock(now)), DB_P_INT(max_attempts),
                     DB_P_INT(stale_before), DB_P_INT(max_attempts), DB_P_INT(limit) };
    /* A range read of webhook_deliveries_due_idx: (connector, next_attempt_at
     * <= now); only the rows due are sorted. */
    if (run_query(s, "listing open webhook deliveries",
                  "SELECT id FROM webhook_deliveries WHERE connector = ? AND " WEBHOOK_OPEN_SQL
                  " ORDER BY received_seq, id LIMIT ?",
                  p, 6, &r) != STORE_OK)
        return STORE_ERR;
    return webhook_ids(s, &r, ids, n);
}

int store_webhook_retry_failed(store_t *s, const char *connector, int64_t since,
                               int64_t *count)
{
    if (!s)
        return STORE_ERR;
    if (!connector || !*connector || !count || since < 0)
        return serr(s, "store_webhook_retry_failed: bad argument");
    *count = 0;
    db_param p[] = { p_text(connector), DB_P_INT(since) };
    return run_exec(s, "putting failed webhook deliveries back",
                    "UPDATE webhook_deliveries SET attempts = 0, next_attempt_at = 0"
                    " WHERE connector = ? AND status = 'failed' AND received_at >= ?",
                    p, 2, count);
}

int store_webhook_expire_claims(store_t *s, const char *connector, int max_attempts,
                                int64_t stale_before, int64_t *expired)
{
    if (!s)
        return STORE_ERR;
    if (!connector || !expired)
        return serr(s, "store_webhook_expire_claims: missing argument");
    *expired = 0;
    /* A claim's next_attempt_at is its claimed_at: a range read of
     * webhook_deliveries_due_idx, the open rows only.  Asked first so that
     * a pass with nothing to expire writes nothing (SQLite: no write lock). */
    db_param p[] = { p_text(connector), DB_P_INT(stale_before), DB_P_INT(stale_before),
                     DB_P_INT(max_attempts) };
    db_result r;
    if (run_query(s, "finding expired webhook claims",
                  "SELECT id FROM webhook_deliveries WHERE connector = ? AND next_attempt_at < ?"
                  " AND status = 'processing' AND claimed_at < ? AND attempts >= ? LIMIT 1",
                  p, 4, &r) != STORE_OK)
        return STORE_ERR;
    size_t found = r.nrows;
    db_result_free(&r);
    if (found == 0)
        return STORE_OK;
    return run_exec(s, "expiring webhook claims",
                    "UPDATE webhook_deliveries SET status = 'failed', processed_at = 0,"
                    " next_attempt_at = NULL,"
                    " last_error = 'lease expired on the last attempt (the worker died or hung)'"
                    " WHERE connector = ? AND next_attempt_at < ? AND status = 'processing'"
                    " AND claimed_at < ? AND attempts >= ?",
                    p, 4, expired);
}

int store_webhook_list_unassigned(store_t *s, const char *connector, const char *key,
                                  int64_t after_seq, const char *after_id, int limit,
                                  char (*ids)[STORE_ID_LEN], int64_t *seqs, size_t *n)
{
    if (!s)
        return STORE_ERR;
    if (!connector || !ids || !seqs || !n || limit < 1 || limit > WEBHOOK_LIST_MAX)
        return serr(s, "store_webhook_list_unassigned: bad argument");
    *n = 0;
    const char *aid = after_id ? after_id : "";
    db_result r;
    db_param p[6];
    int np = 0;
    p[np++] = p_text(connector);
    if (key)
        p[np++] = p_text(key);
    p[np++] = DB_P_INT(after_seq);
    p[np++] = DB_P_INT(after_seq);
    p[np++] = p_text(aid);
    p[np++] = DB_P_INT(limit);
    /* Both read webhook_deliveries_adopt_idx (connector, adopt_key,
     * received_seq, id) WHERE org_id IS NULL: only the rows asked for. */
    if (run_query(s, "listing unassigned webhook deliveries",
                  key ? "SELECT id, received_seq FROM webhook_deliveries"
                        " WHERE connector = ? AND org_id IS NULL AND adopt_key = ?"
                        " AND (received_seq > ? OR (received_seq = ? AND id > ?))"
                        " ORDER BY received_seq, id LIMIT ?"
                      : "SELECT id, received_seq FROM webhook_deliveries"
                        " WHERE connector = ? AND org_id IS NULL AND adopt_key IS NULL"
                        " AND (received_seq > ? OR (received_seq = ? AND id > ?))"
                        " ORDER BY received_seq, id LIMIT ?",
                  p, np, &r) != STORE_OK)
        return STORE_ERR;
    int rc = STORE_OK;
    for (size_t i = 0; i < r.nrows && rc == STORE_OK; i++)
        if ((rc = cell_str(s, &r, i, 0, ids[i], STORE_ID_LEN, "webhook id")) == STORE_OK &&
            (rc = cell_i64(s, &r, i, 1, &seqs[i], "webhook received_seq")) == STORE_OK)
            (*n)++;
    db_result_free(&r);
    return rc;
}

int store_webhook_unassigned_key_next(store_t *s, const char *connector, const char *after,
                                      char key[STORE_WEBHOOK_KEY_LEN], char id[STORE_ID_LEN])
{
    if (!s)
        return STORE_ERR;
    if (!connector || !key || !id)
        return serr(s, "store_webhook_unassigned_key_next: missing argument");
    db_result r;
    db_param p[] = { p_text(connector), p_text(after ? after : "") };
    /* ORDER BY … LIMIT 1 on the index's own order: one seek, whatever the
     * number of rows per key ("" and NULL are below any key > ''). */
    if (run_query(s, "listing unassigned webhook tenants",
                  "SELECT adopt_key, id FROM webhook_deliveries"
                  " WHERE connector = ? AND org_id IS NULL AND adopt_key > ?"
                  " ORDER BY adopt_key, received_seq, id LIMIT 1",
                  p, 2, &r) != STORE_OK)
        return STORE_ERR;
    int rc = r.nrows == 0 ? STORE_NOT_FOUND : STORE_OK;
    if (rc == STORE_OK &&
        (cell_str(s, &r, 0, 0, key, STORE_WEBHOOK_KEY_LEN, "webhook adopt_key") != STORE_OK ||
         cell_str(s, &r, 0, 1, id, STORE_ID_LEN, "webhook id") != STORE_OK))
        rc = STORE_ERR;
    db_result_free(&r);
    return rc;
}

int store_webhook_set_adopt_key(store_t *s, const char *id, const char *key)
{
    if (!s)
        return STORE_ERR;
    if (!id || !key || check_text(s, "adopt_key", key, STORE_WEBHOOK_KEY_LEN, 0))
        return serr(s, "store_webhook_set_adopt_key: bad argument");
    int64_t changes = 0;
    db_param p[] = { p_text(key), p_text(id) };
    if (run_exec(s, "recording webhook adopt key",
                 "UPDATE webhook_deliveries SET adopt_key = ? WHERE id = ? AND org_id IS NULL", p,
                 2, &changes) != STORE_OK)
        return STORE_ERR;
    return changes > 0 ? STORE_OK : STORE_NOT_FOUND;
}

#define WEBHOOK_PRUNE_MAX 1000

int store_webhook_prune_unassigned(store_t *s, const char *connector, int64_t before, int limit,
                                   int64_t *deleted)
{
    if (!s)
        return STORE_ERR;
    if (!connector || !deleted || limit < 1 || limit > WEBHOOK_PRUNE_MAX || before < 0)
        return serr(s, "store_webhook_prune_unassigned: bad argument");
    *deleted = 0;
    /* received_seq is microseconds since the epoch (store_next_seq) and
     * indexed after (org_id, connector): a range read of the expired rows
     * only.  Asked first so that a pass with nothing to prune writes
     * nothing (SQLite: no write lock taken). */
    int64_t cut = before > INT64_MAX / 1000000 ? INT64_MAX : before * 1000000;
    db_param p[] = { p_text(connector), DB_P_INT(cut), DB_P_INT(limit) };
    db_result r;
    if (run_query(s, "finding expired unassigned webhook deliveries",
                  "SELECT id FROM webhook_deliveries WHERE org_id IS NULL AND connector = ?"
                  " AND received_seq < ? ORDER BY received_seq LIMIT 1",
                  p, 2, &r) != STORE_OK)
        return STORE_ERR;
    size_t found = r.nrows;
    db_result_free(&r);
    if (found == 0)
        return STORE_OK;
    /* One statement: autocommit, and the IN list is bounded by LIMIT
     * (portable: neither engine's DELETE … LIMIT is). */
    return run_exec(s, "pruning unassigned webhook deliveries",
                    "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM"
                    " webhook_deliveries WHERE org_id IS NULL AND connector = ?"
                    " AND received_seq < ? ORDER BY received_seq LIMIT ?)"
                    " AND org_id IS NULL",
                    p, 3, deleted);
}

int store_webhook_claim(store_t *s, const char *id, int max_attempts, int64_t stale_before,
                        int64_t now)
{
    return store_webhook_claim_attempt(s, id, max_attempts, stale_before, now, NULL);
}

int store_webhook_claim_attempt(store_t *s, const char *id, int max_attempts,
                                int64_t stale_before, int64_t now, int *attempt)
{
    if (!s)
        return STORE_ERR;
    if (!id)
        return serr(s, "store_webhook_claim: missing argument");
    int64_t changes = 0;
    /* One UPDATE is the claim: of two workers, only one sees a changed row. */
    now = now_or_clock(now);
    db_param p[] = { DB_P_INT(now), DB_P_INT(now),          p_text(id),
                     DB_P_INT(now), DB_P_INT(max_attempts), DB_P_INT(stale_before),
                     DB_P_INT(max_attempts) };
    if (run_exec(s, "claiming webhook delivery",
                 "UPDATE webhook_deliveries SET status = 'processing', attempts = attempts + 1,"
                 " claimed_at = ?, next_attempt_at = ? WHERE id = ? AND " WEBHOOK_OPEN_SQL,
                 p, 7, &changes) != STORE_OK)
        return STORE_ERR;
    if (changes == 0)
        return STORE_CONFLICT;
    if (!attempt)
        return STORE_OK;
    /* This claim's row: another claim can only take over after the lease,
     * with a later claimed_at (then this one is already lost: CONFLICT). */
    int64_t n = 0;
    db_param q[] = { p_text(id), DB_P_INT(now) };
    db_result r;
    if (run_query(s, "reading a claim's attempt",
                  "SELECT attempts FROM webhook_deliveries WHERE id = ? AND claimed_at = ?"
                  " AND status = 'processing'",
                  q, 2, &r) != STORE_OK)
        return STORE_ERR;
    int rc = r.nrows == 0 ? STORE_CONFLICT : cell_i64(s, &r, 0, 0, &n, "webhook attempts");
    db_result_free(&r);
    if (rc == STORE_OK)
        *attempt = n > INT_MAX ? INT_MAX : (int)n;
    return rc;
}

int store_webhook_finish(store_t *s, const char *id, int64_t claimed_at, const char *status,
                         const char *error, int64_t now, int64_t retry_at)
{
    if (!s)
        return STORE_ERR;
    if (!id || !status || claimed_at <= 0 ||
        (strcmp(status, "processed") && strcmp(status, "ignored") && strcmp(status, "failed")))
        return serr(s, "store_webhook_finish: bad argument");
    /* The error line is informative only: cut it to the column's size (at a
     * character boundary) rather than lose the status. */
    char line[STORE_WEBHOOK_ERROR_LEN] = "";
    if (error) {
        size_t n = strlen(error);
        if (n >= sizeof(line))
            n = utf8_complete_prefix(error, sizeof(line) - 1);
        memcpy(line, error, n);
        line[n] = '\0';
        if (!utf8_valid(line, n))
            snprintf(line, sizeof(line), "(error message not UTF-8)");
    }
    int64_t changes = 0;
    int64_t at = now_or_clock(now);
    int failed = !strcmp(status, "failed");
    db_param p[] = { p_text(status), p_text(line), DB_P_INT(failed ? 0 : at),
                     failed && retry_at >= 0 ? DB_P_INT(retry_at) : DB_P_TEXT(NULL), p_text(id),
                     DB_P_INT(claimed_at) };
    /* The claim is the caller's while claimed_at is its own: a claim taken
     * over after the lease has a later claimed_at (store_webhook_claim needs
     * the old one before now - lease).  A claim the sweep expired on its
     * last attempt is "failed" with next_attempt_at NULL and the same
     * claimed_at until someone claims it again (or the operator puts it
     * back: next_attempt_at 0). */
    if (run_exec(s, "finishing webhook delivery",
                 "UPDATE webhook_deliveries SET status = ?, last_error = ?, processed_at = ?,"
                 " next_attempt_at = ? WHERE id = ? AND claimed_at = ? AND (status = 'processing'"
                 " OR (status = 'failed' AND next_attempt_at IS NULL))",
                 p, 6, &changes) != STORE_OK)
        return STORE_ERR;
    return changes > 0 ? STORE_OK : STORE_NOT_FOUND;
}

int store_webhook_set_org(store_t *s, const char *id, const char *org_id)
{
    if (!s)
        return STORE_ERR;
    if (!id || check_text(s, "org_id", org_id, STORE_ID_LEN, 1))
        return STORE_ERR;
    int64_t changes = 0;
    db_param p[] = { p_text(org_id), p_text(id) };
    int rc = run_exec(s, "assigning webhook delivery",
                      "UPDATE webhook_deliveries SET org_id = ?, next_attempt_at ="
                      " CASE WHEN status = 'unassigned' THEN 0 ELSE next_attempt_at END, status ="
                      " CASE WHEN status = 'unassigned' THEN 'received' ELSE status END"
                      " WHERE id = ? AND org_id IS NULL",
                      p, 2, &changes);
    if (rc == STORE_CONFLICT) {
        serr(s, "organization not found");
        return STORE_NOT_FOUND;
    }
    if (rc != STORE_OK)
        return rc;
    return changes > 0 ? STORE_OK : STORE_NOT_FOUND;
}

void store_webhook_free(store_webhook_delivery *d)
{
    if (!d)
        return;
    free(d->body);
    d->body = NULL;
    d->body_len = 0;
}

void store_webhook_list_free(store_webhook_delivery *d, size_t n)
{
    for (size_t i = 0; d && i < n; i++)
        store_webhook_free(&d[i]);
    free(d);
}

/* ---- operator listings and removals (aurora-server admin) ------------------------------- */

int store_org_list(store_t *s, store_org **out, size_t *n)
{
    if (!s)
        return STORE_ERR;
    if (!out || !n)
        return serr(s, "store_org_list: missing argument");
    db_result r;
    if (run_query(s, "listing organizations",
                  "SELECT " ORG_COLS " FROM orgs ORDER BY created_at, created_seq, id", NULL, 0, &r))
        return STORE_ERR;
    void *arr;
    int rc = all_rows(s, &r, org_row, sizeof(**out), &arr, n);
    *out = arr;
    return rc;
}

int store_member_list(store_t *s, const char *org_id, store_member **out, size_t *n)
{
    if (!s)
        return STORE_ERR;
    if (!org_id || !out || !n)
        return serr(s, "store_member_list: missing argument");
    db_result r;
    db_param p[] = { p_text(org_id) };
    if (run_query(s, "listing members",
                  "SELECT " MEMBER_COLS " FROM org_members WHERE org_id = ?"
                  " ORDER BY created_at, created_seq, user_id",
                  p, 1, &r))
        return STORE_ERR;
    void *arr;
    int rc = all_rows(s, &r, member_row, sizeof(**out), &arr, n);
    *out = arr;
    return rc;
}

int store_api_key_get(store_t *s, const char *id, store_api_key *out)
{
    if (!s)
        return STORE_ERR;
    if (!id || !out)
        return serr(s, "store_api_key_get: missing argument");
    db_result r;
    db_param p[] = { p_text(id) };
    if (run_query(s, "reading api key", "SELECT " API_KEY_COLS " FROM api_keys WHERE id = ?", p, 1,
                  &r))
        return STORE_ERR;
    return one_row(s, &r, api_key_row, out);
}

int store_api_key_list(store_t *s, const char *org_id, store_api_key **out, size_t *n)
{
    if (!s)
        return STORE_ERR;
    if (!out || !n)
        return serr(s, "store_api_key_list: missing argument");
    db_result r;
    db_param p[] = { p_text(org_id ? org_id : "") };
    int rc = org_id ? run_query(s, "listing api keys",
                                "SELECT " API_KEY_COLS " FROM api_keys WHERE org_id = ?"
                                " ORDER BY created_at, id",
                                p, 1, &r)
                    : run_query(s, "listing api keys",
                                "SELECT " API_KEY_COLS " FROM api_keys ORDER BY created_at, id",
                                NULL, 0, &r);
    if (rc != STORE_OK)
        return STORE_ERR;
    void *arr;
    rc = all_rows(s, &r, api_key_row, sizeof(**out), &arr, n);
    *out = arr;
    return rc;
}

/* COUNT(*) of a query with one or two text parameters. */
static int count_rows(store_t *s, const char *what, const char *sql, const db_param *p, size_t np,
                      int64_t *count)
{
    db_result r;
    if (run_query(s, what, sql, p, np, &r) != STORE_OK)
        return STORE_ERR;
    int rc = r.nrows == 1 ? cell_i64(s, &r, 0, 0, count, what) : serr(s, "%s: no count", what);
    db_result_free(&r);
    return rc;
}

/* Ends a failed transaction; the error already in s->err is kept. */
static int abandon(store_t *s, int rc)
{
    char keep[sizeof(s->err)];
    memcpy(keep, s->err, sizeof(keep));
    (void)s->eng->exec(s->db, "ROLLBACK", NULL, 0, NULL);
    memcpy(s->err, keep, sizeof(keep));
    return rc;
}

static int commit(store_t *s, const char *what)
{
    if (run_exec(s, what, "COMMIT", NULL, 0, NULL) != STORE_OK)
        return abandon(s, STORE_ERR);
    return STORE_OK;
}

int store_user_remove(store_t *s, const char *org_id, const char *user_id, int *keys_deleted)
{
    if (!s)
        return STORE_ERR;
    if (keys_deleted)
        *keys_deleted = 0;
    if (check_text(s, "org_id", org_id, STORE_ID_LEN, 1) ||
        check_text(s, "user_id", user_id, STORE_ID_LEN, 1))
        return STORE_ERR;
    if (run_exec(s, "beginning user removal", "BEGIN", NULL, 0, NULL) != STORE_OK)
        return STORE_ERR;
    db_param p[] = { p_text(org_id), p_text(user_id) };
    int64_t connectors = 0, keys = 0, members = 0, users = 0;
    if (count_rows(s, "counting the user's connectors",
                   "SELECT COUNT(*) FROM connectors WHERE org_id = ? AND user_id = ?", p, 2,
                   &connectors) != STORE_OK)
        return abandon(s, STORE_ERR);
    if (connectors > 0) {
        serr(s, "user %s still has %lld connector(s) in organization %s: disconnect them first",
             user_id, (long long)connectors, org_id);
        return abandon(s, STORE_CONFLICT);
    }
    /* Keys first: they name the account (foreign key).  The user's OAuth
     * flows go too: a callback still to come (a console flow carries no
     * credentials to refuse) would store a connector for a removed user,
     * which no removal could delete again.  So do their console sessions:
     * a backend session asks only for the membership, which the backend
     * makes again the next time it names the user. */
    if (run_exec(s, "deleting the user's api keys",
                 "DELETE FROM api_keys WHERE org_id = ? AND user_id = ?", p, 2, &keys) ||
        run_exec(s, "deleting the user's OAuth states",
                 "DELETE FROM oauth_states WHERE org_id = ? AND user_id = ?", p, 2, NULL) ||
        run_exec(s, "deleting the user's console sessions",
                 "DELETE FROM console_sessions WHERE org_id = ? AND user_id = ?", p, 2, NULL) ||
        run_exec(s, "deleting membership", "DELETE FROM org_members WHERE org_id = ? AND user_id = ?",
                 p, 2, &members) ||
        run_exec(s, "deleting user", "DELETE FROM users WHERE org_id = ? AND id = ?", p, 2, &users))
        return abandon(s, STORE_ERR);
    if (members == 0 && users == 0) {
        serr(s, "no such user in organization");
        return abandon(s, STORE_NOT_FOUND);
    }
    if (commit(s, "committing user removal") != STORE_OK)
        return STORE_ERR;
    if (keys_deleted)
        *keys_deleted = (int)keys;
    return STORE_OK;
}

int store_org_delete(store_t *s, const char *org_id)
{
    if (!s)
        return STORE_ERR;
    if (check_text(s, "org_id", org_id, STORE_ID_LEN, 1))
        return STORE_ERR;
    if (run_exec(s, "beginning organization deletion", "BEGIN", NULL, 0, NULL) != STORE_OK)
        return STORE_ERR;
    db_param p[] = { p_text(org_id) };
    int e = org_exists(s, org_id);
    if (e == STORE_ERR)
        return abandon(s, STORE_ERR);
    if (e == 0) {
        serr(s, "organization not found");
        return abandon(s, STORE_NOT_FOUND);
    }
    int64_t tokens = 0, connections = 0;
    if (count_rows(s, "counting clusters", "SELECT COUNT(*) FROM agent_tokens WHERE org_id = ?", p,
                   1, &tokens) ||
        count_rows(s, "counting clusters", "SELECT COUNT(*) FROM connections WHERE org_id = ?", p,
                   1, &connections))
        return abandon(s, STORE_ERR);
    if (tokens > 0 || connections > 0) {
        serr(s,
             "organization %s still has clusters (%lld agent token(s), %lld connection(s)):"
             " it keeps them and their history",
             org_id, (long long)tokens, (long long)connections);
        return abandon(s, STORE_CONFLICT);
    }
    /* console_sessions has no foreign key to orgs: its rows would outlive
     * the organization, and a backend session (backed by a membership
     * alone) would come back to life when the backend provisions an
     * organization of the same id again (found in review). */
    static const char *const owned[] = {
        "DELETE FROM api_keys WHERE org_id = ?",     "DELETE FROM org_members WHERE org_id = ?",
        "DELETE FROM users WHERE org_id = ?",        "DELETE FROM org_settings WHERE org_id = ?",
        "DELETE FROM oauth_states WHERE org_id = ?", "DELETE FROM console_sessions WHERE org_id = ?",
    };
    for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++)
        if (run_exec(s, "deleting the organization's accounts", owned[i], p, 1, NULL) != STORE_OK)
            return abandon(s, STORE_ERR);
    int rc = run_exec(s, "deleting organization", "DELETE FROM orgs WHERE id = ?", p, 1, NULL);
    if (rc == STORE_CONFLICT) {
        /* A row of another table still names it (the foreign keys). */
        serr(s,
             "organization %s still holds data (connectors, incidents, webhook deliveries,"
             " audit rows or GitHub installations): only an organization without them can be"
             " deleted",
             org_id);
        return abandon(s, STORE_CONFLICT);
    }
    if (rc != STORE_OK)
        return abandon(s, STORE_ERR);
    return commit(s, "committing organization deletion");
}
