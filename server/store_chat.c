/* store_chat.c — the SQL of the chat outbox (store_chat.h). */
#include "store_chat.h"

#include <pthread.h>

#include "store_internal.h"
#include "token.h"

#define CHAT_COLS                                                                                  \
    "id, org_id, connector, COALESCE(incident_id, ''), kind, channel, thread, status, attempts,"  \
    " next_attempt_at, lease_until, created_at, created_seq, sent_at, last_error, text"

/* ---- the declared connectors ---------------------------------------------------- */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_ids[CHAT_MAX_CONNECTORS][CHAT_CONNECTOR_MAX + 1];
static size_t g_nids;

void store_chat_set_connectors(const char *const *ids, size_t n)
{
    pthread_mutex_lock(&g_mu);
    g_nids = 0;
    for (size_t i = 0; i < n && g_nids < CHAT_MAX_CONNECTORS; i++)
        if (ids[i] && ids[i][0] && strlen(ids[i]) <= CHAT_CONNECTOR_MAX)
            snprintf(g_ids[g_nids++], sizeof(g_ids[0]), "%s", ids[i]);
    pthread_mutex_unlock(&g_mu);
}

static size_t connectors_copy(char out[CHAT_MAX_CONNECTORS][CHAT_CONNECTOR_MAX + 1])
{
    pthread_mutex_lock(&g_mu);
    size_t n = g_nids;
    memcpy(out, g_ids, sizeof(g_ids));
    pthread_mutex_unlock(&g_mu);
    return n;
}

/* ---- rows ------------------------------------------------------------------------------ */

void store_chat_msgs_free(store_chat_msg *m, size_t n)
{
    if (!m)
        return;
    for (size_t i = 0; i < n; i++)
        free(m[i].text);
    free(m);
}

static int msg_row(store_t *s, const db_result *r, size_t i, void *out)
{
    store_chat_msg *m = out;
    if (cell_str(s, r, i, 0, m->id, sizeof(m->id), "chat id") ||
        cell_str(s, r, i, 1, m->org_id, sizeof(m->org_id), "chat org_id") ||
        cell_str(s, r, i, 2, m->connector, sizeof(m->connector), "chat connector") ||
        cell_str(s, r, i, 3, m->incident_id, sizeof(m->incident_id), "chat incident_id") ||
        cell_str(s, r, i, 4, m->kind, sizeof(m->kind), "chat kind") ||
        cell_str(s, r, i, 5, m->channel, sizeof(m->channel), "chat channel") ||
        cell_str(s, r, i, 6, m->thread, sizeof(m->thread), "chat thread") ||
        cell_str(s, r, i, 7, m->status, sizeof(m->status), "chat status") ||
        cell_int(s, r, i, 8, &m->attempts, "chat attempts") ||
        cell_i64(s, r, i, 9, &m->next_attempt_at, "next_attempt_at") ||
        cell_i64(s, r, i, 10, &m->lease_until, "lease_until") ||
        cell_i64(s, r, i, 11, &m->created_at, "created_at") ||
        cell_i64(s, r, i, 12, &m->created_seq, "created_seq") ||
        cell_i64(s, r, i, 13, &m->sent_at, "sent_at") ||
        cell_str(s, r, i, 14, m->last_error, sizeof(m->last_error), "last_error"))
        return STORE_ERR;
    const char *t = db_cell(r, i, 15);
    m->text = strdup(t ? t : "");
    return m->text ? STORE_OK : serr(s, "out of memory");
}

/* Decodes every row into a calloc'd array; frees r; nothing left on failure. */
static int msg_rows(store_t *s, db_result *r, store_chat_msg **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (r->nrows == 0) {
        db_result_free(r);
        return STORE_OK;
    }
    store_chat_msg *arr = calloc(r->nrows, sizeof(*arr));
    if (!arr) {
        db_result_free(r);
        return serr(s, "out of memory");
    }
    for (size_t i = 0; i < r->nrows; i++)
        if (msg_row(s, r, i, &arr[i]) != STORE_OK) {
            store_chat_msgs_free(arr, i + 1);
            db_result_free(r);
            return STORE_ERR;
        }
    *out = arr;
    *n = r->nrows;
    db_result_free(r);
    return STORE_OK;
}

static void rollback(store_t *s)
{
    char keep[sizeof(s->err)];
    memcpy(keep, s->err, sizeof(keep));
    (void)s->eng->exec(s->db, "ROLLBACK", NULL, 0, NULL);
    memcpy(s->err, keep, sizeof(keep));
}

/* A channel or thread reference: printable ASCII without spaces (it goes
 * into provider requests and log lines). */
static int ref_chars_ok(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] <= 0x20 || v[i] >= 0x7f)
            return 0;
    return 1;
}

int store_chat_ref_ok(const char *v)
{
    size_t n = v ? strlen(v) : 0;
    return n <= CHAT_REF_MAX && ref_chars_ok(v ? v : "", n);
}

static int check_ref(store_t *s, const char *field, const char *v, int required)
{
    if (!v)
        v = "";
    size_t n = strlen(v);
    if (required && n == 0)
        return serr(s, "%s is empty", field);
    if (n > CHAT_REF_MAX)
        return serr(s, "%s too long (max %d bytes)", field, CHAT_REF_MAX);
    if (!ref_chars_ok(v, n))
        return serr(s, "%s must be printable ASCII without spaces", field);
    return STORE_OK;
}

static int insert_row(store_t *s, const char *org_id, const char *connector,
                      const char *incident_id, const char *kind, const char *channel,
                      const char *thread, const char *text, int64_t now, char *id_out)
{
    char id[STORE_ID_LEN];
    if (id_generate("chm_", id, sizeof(id)) < 0)
        return serr(s, "cannot generate an id");
    db_param p[] = {
        p_text(id),      p_text(org_id),  p_text(connector),
        p_text(incident_id && incident_id[0] ? incident_id : NULL),
        p_text(kind),    p_text(channel ? channel : ""), p_text(thread ? thread : ""),
        DB_P_INT(now),   DB_P_INT(now),   DB_P_INT(next_seq()), p_text(text ? text : ""),
    };
    if (run_exec(s, "queueing chat message",
                 "INSERT INTO chat_outbox (id, org_id, connector, incident_id, kind, channel,"
                 " thread, status, attempts, next_attempt_at, created_at, created_seq, text)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)",
                 p, sizeof(p) / sizeof(p[0]), NULL) != STORE_OK)
        return STORE_ERR;
    if (id_out)
        memcpy(id_out, id, sizeof(id));
    return STORE_OK;
}

/* 1 if the org has an active row of connector, 0 if not, STORE_ERR. */
static int org_connected(store_t *s, const char *org_id, const char *connector)
{
    db_param p[] = { p_text(org_id), p_text(connector) };
    db_result r;
    if (run_query(s, "checking chat connection",
                  "SELECT 1 FROM connectors WHERE org_id = ? AND connector = ?"
                  " AND status = 'active' LIMIT 1",
                  p, 2, &r) != STORE_OK)
        return STORE_ERR;
    int yes = r.nrows > 0;
    db_result_free(&r);
    return yes;
}

/* ---- incident hooks ------------------------------------------------------------------ */

int store_chat_queue_opened(store_t *s, const char *org_id, const char *incident_id, int64_t now)
{
    char ids[CHAT_MAX_CONNECTORS][CHAT_CONNECTOR_MAX + 1];
    size_t n = connectors_copy(ids);
    for (size_t i = 0; i < n; i++) {
        int yes = org_connected(s, org_id, ids[i]);
        if (yes < 0)
            return STORE_ERR;
        if (yes && insert_row(s, org_id, ids[i], incident_id, "opened", "", "", "", now,
                              NULL) != STORE_OK)
            return STORE_ERR;
    }
    return STORE_OK;
}

/* The connectors an incident was announced on (its "opened" rows). */
static int announced_on(store_t *s, const char *org_id, const char *incident_id, db_result *r)
{
    db_param p[] = { p_text(org_id), p_text(incident_id) };
    return run_query(s, "finding the incident's chats",
                     "SELECT DISTINCT connector FROM chat_outbox WHERE org_id = ?"
                     " AND incident_id = ? AND kind = 'opened' ORDER BY connector",
                     p, 2, r);
}

int store_chat_queue_resolved(store_t *s, const char *org_id, const char *incident_id,
                              int64_t now)
{
    db_result r;
    if (announced_on(s, org_id, incident_id, &r) != STORE_OK)
        return STORE_ERR;
    int rc = STORE_OK;
    for (size_t i = 0; i < r.nrows && rc == STORE_OK; i++)
        rc = insert_row(s, org_id, db_cell(&r, i, 0), incident_id, "resolved", "", "", "", now,
                        NULL);
    db_result_free(&r);
    return rc;
}

/* ---- replies ------------------------------------------------------------------------- */

static int reply_locked(store_t *s, const char *org_id, const char *incident_id,
                        const char *connector, const char *channel, const char *thread,
                        const char *text, int64_t now, int64_t max_pending, int *queued,
                        char (*ids)[STORE_ID_LEN])
{
    db_param c[] = { p_text(org_id) };
    db_result r;
    if (run_query(s, "counting pending chat messages",
                  "SELECT COUNT(*) FROM chat_outbox WHERE org_id = ?"
                  " AND status IN ('pending', 'claimed')",
                  c, 1, &r) != STORE_OK)
        return STORE_ERR;
    int64_t pending = 0;
    int rc = cell_i64(s, &r, 0, 0, &pending, "pending count");
    db_result_free(&r);
    if (rc != STORE_OK)
        return rc;
    if (max_pending > 0 && pending >= max_pending) {
        serr(s, "the organization already has %lld chat messages waiting", (long long)pending);
        return STORE_CONFLICT;
    }
    if (incident_id && incident_id[0]) {
        db_param q[] = { p_text(org_id), p_text(incident_id) };
        if (run_query(s, "finding incident", "SELECT 1 FROM incidents WHERE org_id = ? AND id = ?",
                      q, 2, &r) != STORE_OK)
            return STORE_ERR;
        int found = r.nrows > 0;
        db_result_free(&r);
        if (!found) {
            serr(s, "no such incident");
            return STORE_NOT_FOUND;
        }
        if (announced_on(s, org_id, incident_id, &r) != STORE_OK)
            return STORE_ERR;
        for (size_t i = 0; i < r.nrows && rc == STORE_OK; i++) {
            rc = insert_row(s, org_id, db_cell(&r, i, 0), incident_id, "reply", "", "", text, now,
                            ids && i < CHAT_MAX_CONNECTORS ? ids[i] : NULL);
            if (rc == STORE_OK)
                (*queued)++;
        }
        db_result_free(&r);
        return rc;
    }
    int yes = org_connected(s, org_id, connector);
    if (yes < 0)
        return STORE_ERR;
    if (!yes) {
        serr(s, "%s is not connected in this organization", connector);
        return STORE_NOT_FOUND;
    }
    /* A named thread that is an incident's: queued as that incident's, so
     * it keeps its place in the incident's order. */
    char inc[STORE_ID_LEN] = "";
    rc = store_chat_thread_incident(s, org_id, connector, channel, thread, inc);
    if (rc != STORE_OK && rc != STORE_NOT_FOUND)
        return rc;
    if (insert_row(s, org_id, connector, inc, "reply", channel, thread, text, now,
                   ids ? ids[0] : NULL) != STORE_OK)
        return STORE_ERR;
    (*queued)++;
    return STORE_OK;
}

int store_chat_queue_reply(store_t *s, const char *org_id, const char *incident_id,
                           const char *connector, const char *channel, const char *thread,
                           const char *text, int64_t now, int64_t max_pending, int *queued,
                           char (*ids)[STORE_ID_LEN])
{
    if (!s)
        return STORE_ERR;
    if (!queued)
        return serr(s, "store_chat_queue_reply: missing argument");
    *queued = 0;
    if (check_text(s, "org_id", org_id, STORE_ID_LEN, 1) ||
        check_text(s, "text", text, CHAT_TEXT_MAX + 1, 1))
        return STORE_ERR;
    int by_incident = incident_id && incident_id[0];
    if (by_incident ? check_text(s, "incident id", incident_id, STORE_ID_LEN, 1)
                    : (check_text(s, "connector", connector, CHAT_CONNECTOR_MAX + 1, 1) ||
                       check_ref(s, "channel", channel, 1) || check_ref(s, "thread", thread, 1)))
        return STORE_ERR;
    now = now_or_clock(now);
    if (run_exec(s, "beginning chat reply", "BEGIN", NULL, 0, NULL) != STORE_OK)
        return STORE_ERR;
    int rc = reply_locked(s, org_id, incident_id, connector, channel, thread, text, now,
                          max_pending, queued, ids);
    if (rc != STORE_OK) {
        rollback(s);
        *queued = 0;
        return rc;
    }
    if (run_exec(s, "committing chat reply", "COMMIT", NULL, 0, NULL) != STORE_OK) {
        rollback(s);
        *queued = 0;
        return STORE_ERR;
    }
    return STORE_OK;
}

/* ---- delivery ------------------------------------------------------------------------ */

/* Due, and no older message of the same incident on the same connector is
 * still on its way (store_chat.h, Order). */
#define DUE_WHERE                                                                                  \
    " WHERE ((o.status = 'pending' AND o.next_attempt_at <= ?)"                                   \
    " OR (o.status = 'claimed' AND o.lease_until <= ?))"                                           \
    " AND (o.incident_id IS NULL OR NOT EXISTS (SELECT 1 FROM chat_outbox e"                      \
    " WHERE e.org_id = o.org_id AND e.connector = o.connector"                                     \
    " AND e.incident_id = o.incident_id AND e.created_seq < o.created_seq"                        \
    " AND e.status IN ('pending', 'claimed')))"                                                    \
    " ORDER BY o.next_attempt_at, o.created_seq LIMIT ?"

static int claim_locked(store_t *s, int64_t now, int64_t lease_s, int max_attempts, size_t n,
                        store_chat_msg **out, size_t *nout)
{
    int pg = strcmp(s->eng->name, "postgres") == 0;
    db_param p[] = { DB_P_INT(now), DB_P_INT(now), DB_P_INT((int64_t)n) };
    db_result r;
    /* PostgreSQL: FOR UPDATE OF o (the subquery's rows are only read). */
    if (run_query(s, "selecting due chat messages",
                  pg ? "SELECT o.id, o.org_id, o.connector, COALESCE(o.incident_id, ''), o.kind,"
                       " o.channel, o.thread, o.status, o.attempts, o.next_attempt_at,"
                       " o.lease_until, o.created_at, o.created_seq, o.sent_at, o.last_error,"
                       " o.text FROM chat_outbox o" DUE_WHERE " FOR UPDATE OF o SKIP LOCKED"
                     : "SELECT o.id, o.org_id, o.connector, COALESCE(o.incident_id, ''), o.kind,"
                       " o.channel, o.thread, o.status, o.attempts, o.next_attempt_at,"
                       " o.lease_until, o.created_at, o.created_seq, o.sent_at, o.last_error,"
                       " o.text FROM chat_outbox o" DUE_WHERE,
                  p, 3, &r) != STORE_OK)
        return STORE_ERR;
    store_chat_msg *m;
    size_t nm;
    if (msg_rows(s, &r, &m, &nm) != STORE_OK)
        return STORE_ERR;
    int rc = STORE_OK;
    size_t kept = 0, i = 0;
    for (; i < nm && rc == STORE_OK; i++) {
        store_chat_msg *x = &m[i];
        if (!strcmp(x->status, "claimed") && x->attempts >= max_attempts) {
            db_param d[] = { p_text(x->id) };
            rc = run_exec(s, "dead-lettering chat message",
                          "UPDATE chat_outbox SET status = 'dead', lease_until = 0,"
                          " last_error = 'lease expired on the last attempt' WHERE id = ?",
                          d, 1, NULL);
            free(x->text);
            continue;
        }
        int64_t until = now + lease_s;
        db_param u[] = { DB_P_INT(until), p_text(x->id) };
        rc = run_exec(s, "claiming chat message",
                      "UPDATE chat_outbox SET status = 'claimed', attempts = attempts + 1,"
                      " lease_until = ? WHERE id = ?",
                      u, 2, NULL);
        if (rc != STORE_OK) {
            free(x->text);
            continue;
        }
        x->attempts++;
        x->lease_until = until;
        memcpy(x->status, "claimed", sizeof("claimed"));
        m[kept++] = *x;
    }
    /* a failed UPDATE ended the loop: the rows after it were never claimed */
    for (; i < nm; i++)
        free(m[i].text);
    if (rc != STORE_OK || kept == 0) {
        store_chat_msgs_free(m, kept);
        m = NULL;
        kept = 0;
    }
    *out = m;
    *nout = kept;
    return rc;
}

int store_chat_claim(store_t *s, int64_t now, int64_t lease_s, int max_attempts, size_t n,
                     store_chat_msg **out, size_t *nout)
{
    if (!s)
        return STORE_ERR;
    if (!out || !nout)
        return serr(s, "store_chat_claim: missing argument");
    *out = NULL;
    *nout = 0;
    if (n == 0 || n > CHAT_CLAIM_MAX || lease_s < 1 || max_attempts < 1 || now <= 0)
        return serr(s, "chat: claim size, lease, attempts or time out of range");
    if (run_exec(s, "beginning chat claim", "BEGIN", NULL, 0, NULL) != STORE_OK)
        return STORE_ERR;
    if (claim_locked(s, now, lease_s, max_attempts, n, out, nout) != STORE_OK) {
        rollback(s);
        return STORE_ERR;
    }
    if (run_exec(s, "committing chat claim", "COMMIT", NULL, 0, NULL) != STORE_OK) {
        rollback(s);
        store_chat_msgs_free(*out, *nout);
        *out = NULL;
        *nout = 0;
        return STORE_ERR;
    }
    return STORE_OK;
}

/* The end of one claim: the UPDATE applies only while the row is still
 * this claim (status claimed, same attempt).  CONFLICT otherwise. */
static int finish(store_t *s, const char *what, const char *sql, db_param *p, size_t np)
{
    int64_t changes = 0;
    if (run_exec(s, what, sql, p, np, &changes) != STORE_OK)
        return STORE_ERR;
    if (changes == 0) {
        serr(s, "chat message is no longer this claim's");
        return STORE_CONFLICT;
    }
    return STORE_OK;
}

static int sent_locked(store_t *s, const char *id, int attempts, const char *channel,
                       const char *thread, int64_t now)
{
    db_param p[] = { p_text(channel), p_text(thread), DB_P_INT(now), p_text(id),
                     DB_P_INT(attempts) };
    int rc = finish(s, "marking chat message sent",
                    "UPDATE chat_outbox SET status = 'sent', channel = ?, thread = ?, sent_at = ?,"
                    " lease_until = 0, last_error = '' WHERE id = ? AND status = 'claimed'"
                    " AND attempts = ?",
                    p, 5);
    if (rc != STORE_OK)
        return rc;
    /* The incident's first delivered message starts its thread. */
    db_param t[] = { DB_P_INT(now), p_text(id) };
    const char *pg_or_lite =
        "INSERT INTO chat_threads (org_id, connector, incident_id, channel, thread, created_at)"
        " SELECT org_id, connector, incident_id, channel, thread, ? FROM chat_outbox"
        " WHERE id = ? AND incident_id IS NOT NULL AND thread <> ''"
        " ON CONFLICT (org_id, connector, incident_id) DO NOTHING";
    return run_exec(s, "recording chat thread", pg_or_lite, t, 2, NULL);
}

int store_chat_sent(store_t *s, const char *id, int attempts, const char *channel,
                    const char *thread, int64_t now)
{
    if (!s)
        return STORE_ERR;
    if (check_text(s, "chat id", id, STORE_ID_LEN, 1) || check_ref(s, "channel", channel, 0) ||
        check_ref(s, "thread", thread, 0))
        return STORE_ERR;
    now = now_or_clock(now);
    if (run_exec(s, "beginning chat sent", "BEGIN", NULL, 0, NULL) != STORE_OK)
        return STORE_ERR;
    int rc = sent_locked(s, id, attempts, channel ? channel : "", thread ? thread : "", now);
    if (rc != STORE_OK) {
        rollback(s);
        return rc;
    }
    if (run_exec(s, "committing chat sent", "COMMIT", NULL, 0, NULL) != STORE_OK) {
        rollback(s);
        return STORE_ERR;
    }
    return STORE_OK;
}

/* An error line as stored: at most CHAT_ERROR_MAX bytes, cut at a UTF-8
 * boundary (providers' messages are not ours to trust). */
static void error_text(const char *error, char out[CHAT_ERROR_MAX + 1])
{
    size_t n = error ? strlen(error) : 0;
    if (n > CHAT_ERROR_MAX)
        n = utf8_complete_prefix(error, CHAT_ERROR_MAX);
    if (n && !utf8_valid(error, n))
        n = 0;
    memcpy(out, error ? error : "", n);
    out[n] = '\0';
}

int store_chat_retry(store_t *s, const char *id, int attempts, int64_t delay_s, const char *error,
                     int64_t now, int max_attempts, int *dead)
{
    if (!s)
        return STORE_ERR;
    if (check_text(s, "chat id", id, STORE_ID_LEN, 1))
        return STORE_ERR;
    now = now_or_clock(now);
    char e[CHAT_ERROR_MAX + 1];
    error_text(error, e);
    int give_up = attempts >= max_attempts;
    if (dead)
        *dead = give_up;
    if (delay_s < 1)
        delay_s = 1;
    db_param p[] = { p_text(give_up ? "dead" : "pending"), DB_P_INT(now + delay_s), p_text(e),
                     p_text(id), DB_P_INT(attempts) };
    return finish(s, "rescheduling chat message",
                  "UPDATE chat_outbox SET status = ?, next_attempt_at = ?, lease_until = 0,"
                  " last_error = ? WHERE id = ? AND status = 'claimed' AND attempts = ?",
                  p, 5);
}

int store_chat_drop(store_t *s, const char *id, int attempts, const char *error, int64_t now)
{
    if (!s)
        return STORE_ERR;
    if (check_text(s, "chat id", id, STORE_ID_LEN, 1))
        return STORE_ERR;
    (void)now;
    char e[CHAT_ERROR_MAX + 1];
    error_text(error, e);
    db_param p[] = { p_text(e), p_text(id), DB_P_INT(attempts) };
    return finish(s, "dropping chat message",
                  "UPDATE chat_outbox SET status = 'dropped', lease_until = 0, last_error = ?"
                  " WHERE id = ? AND status = 'claimed' AND attempts = ?",
                  p, 3);
}

/* ---- threads and lists ----------------------------------------------------------------- */

int store_chat_thread_get(store_t *s, const char *org_id, const char *connector,
                          const char *incident_id, char *channel, char *thread)
{
    if (!s)
        return STORE_ERR;
    db_param p[] = { p_text(org_id), p_text(connector), p_text(incident_id) };
    db_result r;
    if (run_query(s, "reading chat thread",
                  "SELECT channel, thread FROM chat_threads WHERE org_id = ? AND connector = ?"
                  " AND incident_id = ?",
                  p, 3, &r) != STORE_OK)
        return STORE_ERR;
    int rc = STORE_NOT_FOUND;
    if (r.nrows > 0)
        rc = (cell_str(s, &r, 0, 0, channel, CHAT_REF_MAX + 1, "channel") ||
              cell_str(s, &r, 0, 1, thread, CHAT_REF_MAX + 1, "thread"))
                 ? STORE_ERR
                 : STORE_OK;
    db_result_free(&r);
    return rc;
}

int store_chat_thread_incident(store_t *s, const char *org_id, const char *connector,
                               const char *channel, const char *thread,
                               char incident_id[STORE_ID_LEN])
{
    if (!s)
        return STORE_ERR;
    incident_id[0] = '\0';
    db_param p[] = { p_text(org_id), p_text(connector), p_text(channel ? channel : ""),
                     p_text(thread ? thread : "") };
    db_result r;
    if (run_query(s, "finding the thread's incident",
                  "SELECT incident_id FROM chat_threads WHERE org_id = ? AND connector = ?"
                  " AND channel = ? AND thread = ? LIMIT 1",
                  p, 4, &r) != STORE_OK)
        return STORE_ERR;
    int rc = r.nrows > 0 ? cell_str(s, &r, 0, 0, incident_id, STORE_ID_LEN, "incident id")
                         : STORE_NOT_FOUND;
    db_result_free(&r);
    return rc;
}

int store_chat_list(store_t *s, const char *org_id, const char *status, const char *incident_id,
                    int limit, store_chat_msg **out, size_t *n)
{
    if (!s)
        return STORE_ERR;
    if (!out || !n || limit < 1 || limit > CHAT_LIST_MAX)
        return serr(s, "store_chat_list: bad argument");
    db_param p[] = { p_text(org_id ? org_id : ""), p_text(org_id ? org_id : ""),
                     p_text(status ? status : ""), p_text(status ? status : ""),
                     p_text(incident_id ? incident_id : ""),
                     p_text(incident_id ? incident_id : ""), DB_P_INT(limit) };
    db_result r;
    if (run_query(s, "listing chat messages",
                  "SELECT " CHAT_COLS " FROM chat_outbox WHERE (? = '' OR org_id = ?)"
                  " AND (? = '' OR status = ?) AND (? = '' OR incident_id = ?)"
                  " ORDER BY created_seq DESC LIMIT ?",
                  p, 7, &r) != STORE_OK)
        return STORE_ERR;
    return msg_rows(s, &r, out, n);
}
