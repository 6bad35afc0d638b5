/* store_console.c — the SQL of console sessions (store_console.h). */
#include "store_console.h"

#include "store_internal.h"

#define SESSION_COLS "org_id, user_id, key_id, csrf_token, created_at, last_seen_at, expires_at"

/* What signed the session in still stands: its API key is there and not
 * revoked, or (no key: the trusted backend) its membership is there.  The
 * row's org is part of both, so a key or member of another org never keeps
 * a session alive. */
#define SESSION_BACKED                                                                             \
    "((c.key_id <> '' AND EXISTS (SELECT 1 FROM api_keys k WHERE k.id = c.key_id"                \
    " AND k.org_id = c.org_id AND k.user_id = c.user_id AND k.revoked_at = 0))"                  \
    " OR (c.key_id = '' AND EXISTS (SELECT 1 FROM org_members m WHERE m.org_id = c.org_id"       \
    " AND m.user_id = c.user_id)))"

static int session_row(store_t *s, const db_result *r, size_t i, void *out)
{
    store_console_session *c = out;
    if (cell_str(s, r, i, 0, c->org_id, sizeof(c->org_id), "session org_id") ||
        cell_str(s, r, i, 1, c->user_id, sizeof(c->user_id), "session user_id") ||
        cell_str(s, r, i, 2, c->key_id, sizeof(c->key_id), "session key_id") ||
        cell_str(s, r, i, 3, c->csrf_token, sizeof(c->csrf_token), "session csrf_token") ||
        cell_i64(s, r, i, 4, &c->created_at, "session created_at") ||
        cell_i64(s, r, i, 5, &c->last_seen_at, "session last_seen_at") ||
        cell_i64(s, r, i, 6, &c->expires_at, "session expires_at"))
        return STORE_ERR;
    return STORE_OK;
}

/* Ends a failed transaction; the error already in s->err is kept. */
static int rollback(store_t *s, int rc)
{
    char keep[sizeof(s->err)];
    memcpy(keep, s->err, sizeof(keep));
    (void)s->eng->exec(s->db, "ROLLBACK", NULL, 0, NULL);
    memcpy(s->err, keep, sizeof(keep));
    return rc;
}

/* Serializes the sign-ins of one key (or backend user and org) until the
 * transaction ends.  SQLite: the store's BEGIN is BEGIN IMMEDIATE, one
 * writer at a time already.  PostgreSQL (READ COMMITTED): without a lock two
 * sign-ins each trim to MAX - 1 rows, neither seeing the other's uncommitted
 * insert, and both insert; a transaction-scoped advisory lock on the key's
 * name orders them, and the second one's DELETE (a new snapshot, taken after
 * the lock) sees the first one's row.  An advisory lock, not a row lock: a
 * backend session has no row of its own to lock, and the key's row is
 * revocation's.  Different keys hashing alike only wait for each other. */
static int lock_session_owner(store_t *s, const store_console_session *c)
{
    if (strcmp(s->eng->name, "postgres") != 0)
        return STORE_OK;
    char owner[3 * STORE_ID_LEN + 32];
    snprintf(owner, sizeof(owner), "console_sessions/%s/%s/%s", c->org_id, c->user_id, c->key_id);
    db_param p[] = { p_text(owner) };
    db_result r;
    if (run_query(s, "locking the key's console sessions",
                  "SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", p, 1, &r))
        return STORE_ERR;
    db_result_free(&r);
    return STORE_OK;
}

int store_console_session_create(store_t *s, const char *id_hash, const store_console_session *c)
{
    if (!s)
        return STORE_ERR;
    if (!c)
        return serr(s, "store_console_session_create: missing argument");
    if (check_hash(s, "session id hash", id_hash) ||
        check_text(s, "org_id", c->org_id, STORE_ID_LEN, 1) ||
        check_text(s, "user_id", c->user_id, STORE_ID_LEN, 1) ||
        check_text(s, "key_id", c->key_id, STORE_ID_LEN, 0) ||
        check_text(s, "csrf_token", c->csrf_token, STORE_CSRF_LEN, 1))
        return STORE_ERR;
    /* At most STORE_CONSOLE_SESSIONS_MAX per key (or backend user and
     * org): the least recently used beyond the newest MAX - 1 end before
     * this one starts, so the new session is never the one dropped.  The
     * trim and the insert are one transaction under the key's lock: as two
     * statements, concurrent sign-ins each trimmed to MAX - 1 and then all
     * inserted, past the cap (found in review). */
    if (run_exec(s, "beginning console sign-in", "BEGIN", NULL, 0, NULL))
        return STORE_ERR;
    if (lock_session_owner(s, c))
        return rollback(s, STORE_ERR);
    db_param t[] = { p_text(c->org_id), p_text(c->user_id), p_text(c->key_id),
                     p_text(c->org_id), p_text(c->user_id), p_text(c->key_id),
                     DB_P_INT(STORE_CONSOLE_SESSIONS_MAX - 1) };
    if (run_exec(s, "ending the oldest console sessions of the key",
                 "DELETE FROM console_sessions WHERE org_id = ? AND user_id = ? AND key_id = ?"
                 " AND id_hash NOT IN (SELECT id_hash FROM console_sessions WHERE org_id = ?"
                 " AND user_id = ? AND key_id = ?"
                 " ORDER BY last_seen_at DESC, created_at DESC, id_hash LIMIT ?)",
                 t, 7, NULL))
        return rollback(s, STORE_ERR);
    db_param p[] = { p_text(id_hash),           p_text(c->org_id),         p_text(c->user_id),
                     p_text(c->key_id),         p_text(c->csrf_token),     DB_P_INT(c->created_at),
                     DB_P_INT(c->last_seen_at), DB_P_INT(c->expires_at) };
    int rc = run_exec(s, "creating console session",
                      "INSERT INTO console_sessions (id_hash, " SESSION_COLS
                      ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      p, 8, NULL);
    if (rc != STORE_OK)
        return rollback(s, rc);
    if (run_exec(s, "committing console sign-in", "COMMIT", NULL, 0, NULL))
        return rollback(s, STORE_ERR);
    return STORE_OK;
}

int store_console_session_peek(store_t *s, const char *id_hash, int64_t now, int64_t idle,
                               store_console_session *out)
{
    if (!s)
        return STORE_ERR;
    if (!out)
        return serr(s, "store_console_session_peek: missing argument");
    if (check_hash(s, "session id hash", id_hash))
        return STORE_ERR;
    /* Alive: now < expires_at and now < last_seen_at + idle (console_cookie.h). */
    db_param p[] = { p_text(id_hash), DB_P_INT(now), DB_P_INT(now - idle) };
    db_result r;
    if (run_query(s, "looking up console session",
                  "SELECT " SESSION_COLS " FROM console_sessions c WHERE c.id_hash = ?"
                  " AND c.expires_at > ? AND c.last_seen_at > ? AND " SESSION_BACKED,
                  p, 3, &r))
        return STORE_ERR;
    return one_row(s, &r, session_row, out);
}

int store_console_session_mark_used(store_t *s, const char *id_hash, int64_t now, int64_t idle,
                                    store_console_session *c)
{
    if (!s)
        return STORE_ERR;
    if (!c)
        return serr(s, "store_console_session_mark_used: missing argument");
    if (check_hash(s, "session id hash", id_hash))
        return STORE_ERR;
    if (c->last_seen_at >= now)
        return STORE_OK;
    /* Used now: the idle timeout counts from here.  At most one write per
     * session and second, however many requests the page makes; a row that
     * expired since it was read is not brought back. */
    db_param u[] = { DB_P_INT(now), p_text(id_hash), DB_P_INT(now), DB_P_INT(now - idle),
                     DB_P_INT(now) };
    if (run_exec(s, "marking console session used",
                 "UPDATE console_sessions SET last_seen_at = ? WHERE id_hash = ?"
                 " AND last_seen_at < ? AND last_seen_at > ? AND expires_at > ?",
                 u, 5, NULL))
        return STORE_ERR;
    c->last_seen_at = now;
    return STORE_OK;
}

int store_console_session_use(store_t *s, const char *id_hash, int64_t now, int64_t idle,
                              store_console_session *out)
{
    int rc = store_console_session_peek(s, id_hash, now, idle, out);
    if (rc != STORE_OK)
        return rc;
    return store_console_session_mark_used(s, id_hash, now, idle, out);
}

int store_console_session_delete(store_t *s, const char *id_hash)
{
    if (!s)
        return STORE_ERR;
    if (check_hash(s, "session id hash", id_hash))
        return STORE_ERR;
    int64_t changes = 0;
    db_param p[] = { p_text(id_hash) };
    /* One transaction: a callback never finds the session gone and its
     * flow still waiting (its state would finish the flow, oauth.c). */
    if (run_exec(s, "beginning sign-out", "BEGIN", NULL, 0, NULL))
        return STORE_ERR;
    if (run_exec(s, "deleting the session's OAuth states",
                 "DELETE FROM oauth_states WHERE console_session = ? AND used_at = 0", p, 1, NULL) ||
        run_exec(s, "deleting console session", "DELETE FROM console_sessions WHERE id_hash = ?", p,
                 1, &changes) ||
        run_exec(s, "committing sign-out", "COMMIT", NULL, 0, NULL))
        return rollback(s, STORE_ERR);
    return changes > 0 ? STORE_OK : STORE_NOT_FOUND;
}

int store_console_session_prune(store_t *s, int64_t now, int64_t idle, int64_t *deleted)
{
    if (!s)
        return STORE_ERR;
    if (deleted)
        *deleted = 0;
    int64_t expired = 0, orphaned = 0;
    db_param p[] = { DB_P_INT(now), DB_P_INT(now - idle) };
    if (run_exec(s, "pruning expired console sessions",
                 "DELETE FROM console_sessions WHERE expires_at <= ? OR last_seen_at <= ?", p, 2,
                 &expired) ||
        run_exec(s, "pruning console sessions of revoked keys",
                 "DELETE FROM console_sessions WHERE id_hash IN (SELECT c.id_hash FROM"
                 " console_sessions c WHERE NOT " SESSION_BACKED ")",
                 NULL, 0, &orphaned))
        return STORE_ERR;
    if (deleted)
        *deleted = expired + orphaned;
    return STORE_OK;
}

int store_console_signin_forget(store_t *s, const char *prefix, int64_t before, int64_t *deleted)
{
    if (!s)
        return STORE_ERR;
    if (check_text(s, "rate key prefix", prefix, 64, 1))
        return STORE_ERR;
    for (const char *p = prefix; *p; p++)
        if (*p == '%' || *p == '_' || *p == '\\')
            return serr(s, "rate key prefix must not hold LIKE wildcards");
    char like[80];
    snprintf(like, sizeof(like), "%s%%", prefix);
    db_param p[] = { p_text(like), DB_P_INT(before) };
    int64_t n = 0;
    if (run_exec(s, "forgetting console sign-in counters",
                 "DELETE FROM rate_counters WHERE rate_key LIKE ? AND window_start < ?", p, 2, &n))
        return STORE_ERR;
    if (deleted)
        *deleted = n;
    return STORE_OK;
}
