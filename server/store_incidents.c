/* store_incidents.c — the SQL of the incident store (store_incidents.h):
 * the correlation transaction of incident_ingest().
 *
 * Why one transaction under a per-organization lock: deciding "attach to
 * incident X or open a new one" reads the org's incidents and then writes;
 * two workers (or two replicas) doing that at once for alerts of the same
 * fingerprint would both see no incident and open two (and two RCA jobs).
 * SQLite has one writer at a time (the store's "BEGIN" is BEGIN IMMEDIATE,
 * db_sqlite.c); PostgreSQL takes the org's row FOR NO KEY UPDATE first, which
 * serializes one organization and leaves the others running in parallel.
 */
#include "store_incidents.h"

#include "store_chat.h"
#include "store_internal.h"
#include "store_rca.h"
#include "token.h"

/* The org's row, locked until the transaction ends (PostgreSQL); SQLite's
 * write lock is already the database's.  FOR NO KEY UPDATE, not FOR
 * UPDATE: it serializes ingests of the org but not the foreign-key checks
 * (FOR KEY SHARE) of every other insert that names the org — webhook
 * deliveries being persisted before their 2xx must not wait for
 * correlation.  NOT_FOUND: no such organization. */
static int lock_org(store_t *s, const char *org_id)
{
    int pg = strcmp(s->eng->name, "postgres") == 0;
    db_param p[] = { p_text(org_id) };
    db_result r;
    if (run_query(s, "locking organization",
                  pg ? "SELECT id FROM orgs WHERE id = ? FOR NO KEY UPDATE" : "SELECT id FROM orgs WHERE id = ?",
                  p, 1, &r) != STORE_OK)
        return STORE_ERR;
    int found = r.nrows > 0;
    db_result_free(&r);
    if (!found) {
        serr(s, "organization not found");
        return STORE_NOT_FOUND;
    }
    return STORE_OK;
}

static void rollback(store_t *s)
{
    /* Best effort: the error that got us here is the one reported. */
    char keep[sizeof(s->err)];
    memcpy(keep, s->err, sizeof(keep));
    (void)s->eng->exec(s->db, "ROLLBACK", NULL, 0, NULL);
    memcpy(s->err, keep, sizeof(keep));
}

static int check_alert(store_t *s, const store_alert_in *a, const store_incident_new *n)
{
    if (!a || !n)
        return serr(s, "store_incident_ingest: missing argument");
    if (check_text(s, "org_id", a->org_id, STORE_ID_LEN, 1) ||
        (a->user_id && check_text(s, "user_id", a->user_id, STORE_ID_LEN, 1)) ||
        check_text(s, "source", a->source, INC_SOURCE_MAX + 1, 1) ||
        check_text(s, "delivery_id", a->delivery_id, INC_DELIVERY_MAX + 1, 1) ||
        (a->dedup_key && check_text(s, "dedup_key", a->dedup_key, INC_KEY_MAX + 1, 1)) ||
        (a->source_alert_id &&
         check_text(s, "source_alert_id", a->source_alert_id, INC_KEY_MAX + 1, 0)) ||
        check_text(s, "fingerprint", a->fingerprint, INC_KEY_MAX + 1, 1) ||
        check_text(s, "state", a->state, INC_STATE_MAX + 1, 1) ||
        check_text(s, "title", a->title, INC_TITLE_MAX + 1, 1) ||
        (a->service && check_text(s, "service", a->service, INC_SERVICE_MAX + 1, 0)) ||
        (a->service_key && check_text(s, "service_key", a->service_key, INC_SERVICE_MAX + 1, 0)) ||
        check_text(s, "severity", a->severity, INC_SEVERITY_MAX + 1, 1) ||
        (a->message && check_text(s, "message", a->message, INC_MESSAGE_MAX + 1, 0)) ||
        (a->url && check_text(s, "url", a->url, INC_URL_MAX + 1, 0)) ||
        check_text(s, "incident id", n->incident_id, STORE_ID_LEN, 1) ||
        check_text(s, "summary", n->summary, INC_SUMMARY_MAX + 1, 0) ||
        check_text(s, "rca job id", n->rca_job_id, STORE_ID_LEN, 1) ||
        check_text(s, "rca payload", n->rca_payload, 1024 * 1024, 1))
        return STORE_ERR;
    if (a->raw_json && !utf8_valid(a->raw_json, strlen(a->raw_json)))
        return serr(s, "raw_json is not valid UTF-8");
    if (strcmp(a->state, "firing") && strcmp(a->state, "resolved") &&
        strcmp(a->state, "acknowledged") && strcmp(a->state, "info"))
        return serr(s, "state is not firing, resolved, acknowledged or info");
    if (a->idx < 0 || a->occurred_at <= 0 || a->received_at <= 0)
        return serr(s, "index or times out of range");
    return STORE_OK;
}

/* The alert's row, not yet attached.  *inserted = 0: a duplicate. */
static int insert_alert(store_t *s, const store_alert_in *a, const char *id, int *inserted)
{
    db_param p[] = {
        p_text(id),
        p_text(a->org_id),
        DB_P_TEXT(a->user_id),
        p_text(a->source),
        p_text(a->delivery_id),
        DB_P_INT(a->idx),
        DB_P_TEXT(a->dedup_key),
        p_text(a->source_alert_id ? a->source_alert_id : ""),
        p_text(a->fingerprint),
        p_text(a->state),
        p_text(a->title),
        p_text(a->service ? a->service : ""),
        p_text(a->severity),
        p_text(a->message ? a->message : ""),
        p_text(a->url ? a->url : ""),
        DB_P_INT(a->occurred_at),
        DB_P_INT(a->received_at),
        DB_P_INT(next_seq()),
        DB_P_TEXT(a->raw_json),
    };
    int64_t changes = 0;
    /* DO NOTHING without a target covers both unique keys: (org, delivery,
     * idx) and (org, source, dedup_key). */
    int rc = run_exec(s, "recording alert",
                      "INSERT INTO incident_alerts (id, org_id, user_id, source, delivery_id, idx,"
                      " dedup_key, source_alert_id, fingerprint, state, title, service, severity,"
                      " message, url, occurred_at, received_at, received_seq, raw_json) VALUES"
                      " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                      " ON CONFLICT DO NOTHING",
                      p, sizeof(p) / sizeof(p[0]), &changes);
    if (rc != STORE_OK)
        return STORE_ERR; /* the org exists (locked): a constraint here is a bug */
    *inserted = changes > 0;
    return STORE_OK;
}

/* The row that made this alert a duplicate. */
static int read_duplicate(store_t *s, const store_alert_in *a, store_ingest_out *out)
{
    db_param p[] = { p_text(a->org_id), p_text(a->delivery_id), DB_P_INT(a->idx),
                     p_text(a->source), DB_P_TEXT(a->dedup_key) };
    db_result r;
    if (run_query(s, "reading duplicate alert",
                  "SELECT id, incident_id FROM incident_alerts WHERE org_id = ?"
                  " AND ((delivery_id = ? AND idx = ?) OR (source = ? AND dedup_key = ?))"
                  " ORDER BY received_seq LIMIT 1",
                  p, 5, &r) != STORE_OK)
        return STORE_ERR;
    int rc = STORE_OK;
    if (r.nrows == 0)
        rc = serr(s, "alert conflict without a row");
    else if (cell_str(s, &r, 0, 0, out->alert_id, sizeof(out->alert_id), "alert id") != STORE_OK ||
             cell_str(s, &r, 0, 1, out->incident_id, sizeof(out->incident_id), "incident id") !=
                 STORE_OK)
        rc = STORE_ERR;
    db_result_free(&r);
    return rc;
}

/* A candidate incident of a correlation query. */
typedef struct {
    int found;
    char id[STORE_ID_LEN];
    char status[INC_STATUS_MAX + 1];
    char severity[INC_SEVERITY_MAX + 1];
    int64_t started_at, started_seq, alert_count;
} candidate;

static int candidate_row(store_t *s, const db_result *r, size_t i, void *out)
{
    candidate *c = out;
    c->found = 1;
    if (cell_str(s, r, i, 0, c->id, sizeof(c->id), "incident id") ||
        cell_str(s, r, i, 1, c->status, sizeof(c->status), "incident status") ||
        cell_str(s, r, i, 2, c->severity, sizeof(c->severity), "incident severity") ||
        cell_i64(s, r, i, 3, &c->started_at, "started_at") ||
        cell_i64(s, r, i, 4, &c->started_seq, "started_seq") ||
        cell_i64(s, r, i, 5, &c->alert_count, "alert_count"))
        return STORE_ERR;
    return STORE_OK;
}

#define CANDIDATE_COLS "id, status, severity, started_at, started_seq, alert_count"
#define CANDIDATE_COLS_I "i.id, i.status, i.severity, i.started_at, i.started_seq, i.alert_count"
/* Incidents holding alerts of one fingerprint of one source (fingerprints
 * are each provider's own ids: a PagerDuty incident id equal to a Grafana
 * fingerprint is not the same alert), driven from the alerts'
 * (org_id, fingerprint) index and then the incidents' primary key: an index
 * lookup however many incidents the org has.  CROSS JOIN keeps SQLite from
 * scanning incidents first when it has no statistics (ANALYZE never runs);
 * PostgreSQL plans it as any inner join. */
#define BY_FINGERPRINT                                                                             \
    "SELECT " CANDIDATE_COLS_I " FROM incident_alerts a CROSS JOIN incidents i"                   \
    " WHERE a.org_id = ? AND a.fingerprint = ? AND a.source = ? AND a.incident_id IS NOT NULL"   \
    " AND i.id = a.incident_id AND i.org_id = a.org_id"

static int find_one(store_t *s, const char *what, const char *sql, const db_param *p, size_t np,
                    candidate *c)
{
    memset(c, 0, sizeof(*c));
    db_result r;
    if (run_query(s, what, sql, p, np, &r) != STORE_OK)
        return STORE_ERR;
    int rc = one_row(s, &r, candidate_row, c);
    return rc == STORE_NOT_FOUND ? STORE_OK : rc;
}

/* firing: the newest open incident with an alert of this fingerprint, or
 * with the same service key that started within the window. */
static int find_for_firing(store_t *s, const store_alert_in *a, int64_t window_s, candidate *c)
{
    candidate by_fp, by_service;
    db_param p[] = { p_text(a->org_id), p_text(a->fingerprint), p_text(a->source) };
    if (find_one(s, "correlating by fingerprint",
                 BY_FINGERPRINT " AND i.status IN ('open', 'acknowledged')"
                                " ORDER BY i.started_at DESC, i.started_seq DESC LIMIT 1",
                 p, 3, &by_fp) != STORE_OK)
        return STORE_ERR;
    memset(&by_service, 0, sizeof(by_service));
    if (a->service_key && a->service_key[0]) {
        int64_t lo = a->occurred_at > window_s ? a->occurred_at - window_s : 0;
        int64_t hi = a->occurred_at > INT64_MAX - window_s ? INT64_MAX : a->occurred_at + window_s;
        db_param q[] = { p_text(a->org_id), p_text(a->service_key), DB_P_INT(lo), DB_P_INT(hi) };
        if (find_one(s, "correlating by service",
                     "SELECT " CANDIDATE_COLS " FROM incidents WHERE org_id = ? AND service_key = ?"
                     " AND status IN ('open', 'acknowledged') AND started_at >= ?"
                     " AND started_at <= ? ORDER BY started_at DESC, started_seq DESC LIMIT 1",
                     q, 4, &by_service) != STORE_OK)
            return STORE_ERR;
    }
    /* The newer of the two (started_at DESC, then creation order). */
    int take_service = by_service.found &&
                       (!by_fp.found || by_service.started_at > by_fp.started_at ||
                        (by_service.started_at == by_fp.started_at &&
                         by_service.started_seq > by_fp.started_seq));
    *c = take_service ? by_service : by_fp;
    return STORE_OK;
}

/* A firing alert a of the fingerprint not yet resolved in its incident
 * (also the condition of still_firing below): no resolution b of it came
 * after it in the incident that happened no earlier than it started.  A
 * resolution that happened before (the previous instance's, processed after
 * the next instance's firing alert joined the still open incident) ends
 * that previous instance only, as find_for_followup matches it. */
#define FP_UNRESOLVED                                                                              \
    " AND NOT EXISTS (SELECT 1 FROM incident_alerts b WHERE b.incident_id = a.incident_id"        \
    " AND b.fingerprint = a.fingerprint AND b.state = 'resolved'"                                  \
    " AND b.incident_pos > a.incident_pos AND b.occurred_at >= a.occurred_at)"

/* acknowledged / info: the newest incident (any status) that holds a firing
 * alert of this fingerprint.  resolved: the newest one in which that
 * fingerprint is still firing.  An incident whose instance of the alert is
 * already resolved is not a resolution's: a fingerprint recurs (the same
 * rule and labels firing again), and the resolution of the next instance,
 * processed before its own firing alert, would land on the old incident and
 * leave the new one open for ever.  Matching nothing, it is recorded
 * unmatched and the firing alert adopts it (adopt_followups).  Nor does a
 * resolution match an alert that started after it happened: a late copy of
 * the previous instance's resolution would resolve the incident of the
 * instance firing now. */
static int find_for_followup(store_t *s, const store_alert_in *a, candidate *c)
{
    db_param p[] = { p_text(a->org_id), p_text(a->fingerprint), p_text(a->source),
                     DB_P_INT(a->occurred_at) };
    int resolved = !strcmp(a->state, "resolved");
    return find_one(s, "correlating by fingerprint",
                    resolved ? BY_FINGERPRINT " AND a.state = 'firing'" FP_UNRESOLVED
                                              " AND a.occurred_at <= ?"
                                              " ORDER BY i.started_at DESC, i.started_seq DESC"
                                              " LIMIT 1"
                             : BY_FINGERPRINT " AND a.state = 'firing'"
                                              " ORDER BY i.started_at DESC, i.started_seq DESC"
                                              " LIMIT 1",
                    p, resolved ? 4 : 3, c);
}

static int severity_rank(const char *sev)
{
    static const char *const order[] = { "unknown", "info", "low", "medium", "high", "critical" };
    for (int i = 0; i < (int)(sizeof(order) / sizeof(order[0])); i++)
        if (strcmp(sev, order[i]) == 0)
            return i;
    return 0;
}

/* *seq: the created_seq of the incident and its job. */
static int create_incident(store_t *s, const store_alert_in *a, const store_incident_new *n,
                           const char *alert_id, int64_t *seq_out)
{
    int64_t seq = next_seq();
    *seq_out = seq;
    db_param p[] = {
        p_text(n->incident_id), p_text(a->org_id),      p_text(a->source),
        p_text(a->source_alert_id ? a->source_alert_id : ""), p_text(alert_id),
        p_text(a->fingerprint), p_text(a->title),       p_text(a->service ? a->service : ""),
        p_text(a->service_key ? a->service_key : ""),   p_text(a->severity),
        DB_P_INT(a->occurred_at), DB_P_INT(seq),        DB_P_INT(a->received_at),
        DB_P_INT(a->received_at), p_text(n->summary),
    };
    if (run_exec(s, "creating incident",
                 "INSERT INTO incidents (id, org_id, source, source_alert_id, first_alert_id,"
                 " fingerprint, title, service, service_key, severity, status, started_at,"
                 " started_seq, created_at, updated_at, alert_count, summary) VALUES"
                 " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, 0, ?)",
                 p, sizeof(p) / sizeof(p[0]), NULL) != STORE_OK)
        return STORE_ERR;
    db_param j[] = { p_text(n->rca_job_id), p_text(a->org_id),  p_text(n->incident_id),
                     p_text(a->source),     DB_P_INT(a->received_at), DB_P_INT(a->received_at),
                     DB_P_INT(seq),         p_text(n->rca_payload) };
    if (run_exec(s, "creating rca job",
                 "INSERT INTO rca_jobs (id, org_id, incident_id, source_type, status, attempts,"
                 " next_attempt_at, created_at, created_seq, payload) VALUES"
                 " (?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)",
                 j, sizeof(j) / sizeof(j[0]), NULL) != STORE_OK)
        return STORE_ERR;
    /* and its chat announcements: committed with it or not at all */
    return store_chat_queue_opened(s, a->org_id, n->incident_id, a->received_at);
}

/* Attaches the alert as the incident's next position; raises severity. */
static int attach(store_t *s, const store_alert_in *a, const candidate *c, const char *alert_id)
{
    int64_t pos = c->alert_count + 1;
    db_param p[] = { p_text(c->id), DB_P_INT(pos), p_text(alert_id) };
    if (run_exec(s, "attaching alert",
                 "UPDATE incident_alerts SET incident_id = ?, incident_pos = ? WHERE id = ?", p, 3,
                 NULL) != STORE_OK)
        return STORE_ERR;
    int raise = !strcmp(a->state, "firing") &&
                severity_rank(a->severity) > severity_rank(c->severity);
    db_param q[] = { DB_P_INT(pos), DB_P_INT(a->received_at),
                     p_text(raise ? a->severity : c->severity), p_text(c->id) };
    return run_exec(s, "updating incident",
                    "UPDATE incidents SET alert_count = ?, updated_at = ?, severity = ? WHERE id = ?",
                    q, 4, NULL);
}

/* 1 if some fingerprint of the incident is still firing: a firing alert
 * with no resolution of the same fingerprint attached after it (and
 * happened no earlier than it started: FP_UNRESOLVED). */
static int still_firing(store_t *s, const char *incident_id)
{
    db_param p[] = { p_text(incident_id) };
    db_result r;
    if (run_query(s, "checking firing alerts",
                  "SELECT a.id FROM incident_alerts a WHERE a.incident_id = ? AND a.state = 'firing'"
                  FP_UNRESOLVED " LIMIT 1",
                  p, 1, &r) != STORE_OK)
        return STORE_ERR;
    int firing = r.nrows > 0;
    db_result_free(&r);
    return firing;
}

/* After a follow-up was attached: resolve when nothing is firing any more,
 * acknowledge an open incident. Closed/resolved incidents keep their status. */
static int apply_followup(store_t *s, const store_alert_in *a, const candidate *c)
{
    if (strcmp(c->status, "open") && strcmp(c->status, "acknowledged"))
        return STORE_OK;
    if (!strcmp(a->state, "resolved")) {
        int firing = still_firing(s, c->id);
        if (firing != 0)
            return firing < 0 ? STORE_ERR : STORE_OK;
        db_param p[] = { DB_P_INT(a->occurred_at), DB_P_INT(a->received_at), p_text(c->id) };
        int64_t changes = 0;
        if (run_exec(s, "resolving incident",
                     "UPDATE incidents SET status = 'resolved', resolved_at = ?, updated_at = ?"
                     " WHERE id = ? AND status IN ('open', 'acknowledged')",
                     p, 3, &changes) != STORE_OK)
            return STORE_ERR;
        return changes > 0 ? store_chat_queue_resolved(s, a->org_id, c->id, a->received_at)
                           : STORE_OK;
    }
    if (!strcmp(a->state, "acknowledged") && !strcmp(c->status, "open")) {
        db_param p[] = { DB_P_INT(a->occurred_at), DB_P_INT(a->received_at), p_text(c->id) };
        return run_exec(s, "acknowledging incident",
                        "UPDATE incidents SET status = 'acknowledged', acknowledged_at = ?,"
                        " updated_at = ? WHERE id = ? AND status = 'open'",
                        p, 3, NULL);
    }
    return STORE_OK;
}

/* How many follow-ups one firing alert adopts (bounded work in the lock). */
#define ADOPT_MAX 16

/* A firing alert processed AFTER its own resolution or acknowledgement
 * (deliveries are processed in parallel and retried, so a Recovered can be
 * handled before its Triggered): the follow-ups of the same source and
 * fingerprint that matched nothing and happened at or after this alert
 * are attached now, in their order, as if they had arrived after it.  A
 * resolution from before this alert (an earlier instance of it, e.g. weeks
 * ago) is left alone. */
static int adopt_followups(store_t *s, const store_alert_in *a, candidate *c)
{
    db_param p[] = { p_text(a->org_id), p_text(a->source), p_text(a->fingerprint),
                     DB_P_INT(a->occurred_at) };
    db_result r;
    if (run_query(s, "finding unmatched follow-ups",
                  "SELECT id, state, occurred_at FROM incident_alerts WHERE org_id = ? AND source = ?"
                  " AND fingerprint = ? AND incident_id IS NULL"
                  " AND state IN ('resolved', 'acknowledged') AND occurred_at >= ?"
                  " ORDER BY occurred_at, received_at, id LIMIT 16", /* ADOPT_MAX */
                  p, 4, &r) != STORE_OK)
        return STORE_ERR;
    int rc = STORE_OK;
    for (size_t i = 0; i < r.nrows && rc == STORE_OK; i++) {
        char id[STORE_ID_LEN], state[INC_STATE_MAX + 1];
        int64_t at = 0;
        if (cell_str(s, &r, i, 0, id, sizeof(id), "alert id") != STORE_OK ||
            cell_str(s, &r, i, 1, state, sizeof(state), "alert state") != STORE_OK ||
            cell_i64(s, &r, i, 2, &at, "occurred_at") != STORE_OK) {
            rc = STORE_ERR;
            break;
        }
        store_alert_in b = *a;
        b.state = state;
        b.occurred_at = at;
        if (attach(s, &b, c, id) != STORE_OK || apply_followup(s, &b, c) != STORE_OK) {
            rc = STORE_ERR;
            break;
        }
        c->alert_count++;
        /* apply_followup may have moved the incident on: read it back */
        db_param q[] = { p_text(c->id) };
        db_result st;
        if (run_query(s, "reading incident status", "SELECT status FROM incidents WHERE id = ?",
                      q, 1, &st) != STORE_OK) {
            rc = STORE_ERR;
            break;
        }
        if (st.nrows == 1)
            rc = cell_str(s, &st, 0, 0, c->status, sizeof(c->status), "incident status");
        db_result_free(&st);
    }
    db_result_free(&r);
    return rc;
}

/* 1 if this firing alert is a late copy of an instance already resolved:
 * a firing alert of the same source, fingerprint and start time is in an
 * incident that holds a resolution of it after it, which happened after
 * that start.  Grafana repeats a group's still-firing alerts with their
 * startsAt; processed after the resolution, such a copy would open an
 * incident, or keep one open, that nothing resolves any more.  (An alert
 * that fires, resolves and fires again within one second of the
 * provider's clock is taken as a new instance.)  0 if not, STORE_ERR. */
static int resolved_instance(store_t *s, const store_alert_in *a, const char *alert_id)
{
    db_param p[] = { p_text(a->org_id), p_text(a->fingerprint), p_text(a->source),
                     DB_P_INT(a->occurred_at), p_text(alert_id) };
    db_result r;
    if (run_query(s, "checking for a resolved instance",
                  "SELECT a.id FROM incident_alerts a WHERE a.org_id = ? AND a.fingerprint = ?"
                  " AND a.source = ? AND a.state = 'firing' AND a.occurred_at = ? AND a.id <> ?"
                  " AND a.incident_id IS NOT NULL AND EXISTS (SELECT 1 FROM incident_alerts b"
                  " WHERE b.incident_id = a.incident_id AND b.fingerprint = a.fingerprint"
                  " AND b.state = 'resolved' AND b.incident_pos > a.incident_pos"
                  " AND b.occurred_at > a.occurred_at) LIMIT 1",
                  p, 5, &r) != STORE_OK)
        return STORE_ERR;
    int found = r.nrows > 0;
    db_result_free(&r);
    return found;
}

/* Everything between BEGIN and COMMIT but the job's list number; *job_seq:
 * the created_seq of the job of an incident it created. */
static int ingest_locked(store_t *s, const store_alert_in *a, int64_t window_s,
                         const store_incident_new *n, store_ingest_out *out, int64_t *job_seq)
{
    int rc = lock_org(s, a->org_id);
    if (rc != STORE_OK)
        return rc;
    char alert_id[STORE_ID_LEN];
    if (id_generate("alr_", alert_id, sizeof(alert_id)) < 0)
        return serr(s, "cannot generate an id");
    int inserted = 0;
    if (insert_alert(s, a, alert_id, &inserted) != STORE_OK)
        return STORE_ERR;
    if (!inserted) {
        out->result = STORE_INGEST_DUPLICATE;
        return read_duplicate(s, a, out);
    }
    memcpy(out->alert_id, alert_id, sizeof(alert_id));
    candidate c;
    int firing = !strcmp(a->state, "firing");
    if (firing) {
        int late = resolved_instance(s, a, alert_id);
        if (late < 0)
            return STORE_ERR;
        if (late) { /* recorded with no incident, like an unmatched follow-up */
            out->result = STORE_INGEST_UNMATCHED;
            return STORE_OK;
        }
    }
    if ((firing ? find_for_firing(s, a, window_s, &c) : find_for_followup(s, a, &c)) != STORE_OK)
        return STORE_ERR;
    if (!c.found) {
        if (!firing) {
            out->result = STORE_INGEST_UNMATCHED;
            return STORE_OK;
        }
        if (create_incident(s, a, n, alert_id, job_seq) != STORE_OK)
            return STORE_ERR;
        memset(&c, 0, sizeof(c));
        c.found = 1;
        snprintf(c.id, sizeof(c.id), "%s", n->incident_id);
        snprintf(c.status, sizeof(c.status), "open");
        snprintf(c.severity, sizeof(c.severity), "%s", a->severity);
        out->result = STORE_INGEST_CREATED;
    } else {
        out->result = STORE_INGEST_ATTACHED;
    }
    memcpy(out->incident_id, c.id, sizeof(c.id));
    if (attach(s, a, &c, alert_id) != STORE_OK)
        return STORE_ERR;
    if (!firing)
        return apply_followup(s, a, &c);
    c.alert_count++;
    return adopt_followups(s, a, &c);
}

int store_incident_ingest(store_t *s, const store_alert_in *a, int64_t window_s,
                          const store_incident_new *n, store_ingest_out *out)
{
    if (!s)
        return STORE_ERR;
    if (!out)
        return serr(s, "store_incident_ingest: missing argument");
    memset(out, 0, sizeof(*out));
    if (check_alert(s, a, n) != STORE_OK)
        return STORE_ERR;
    if (window_s < 0)
        window_s = 0;
    if (run_exec(s, "beginning ingest", "BEGIN", NULL, 0, NULL) != STORE_OK)
        return STORE_ERR;
    int64_t job_seq = 0;
    int rc = ingest_locked(s, a, window_s, n, out, &job_seq);
    if (rc != STORE_OK || out->result == STORE_INGEST_DUPLICATE) {
        rollback(s); /* a duplicate wrote nothing worth keeping */
        if (rc != STORE_OK)
            memset(out, 0, sizeof(*out));
        return rc;
    }
    /* The job's list number, the last statement before COMMIT: the
     * numberer is held from here until the commit, by every organization's
     * ingests (store_rca.h), so for as short a time as can be. */
    if ((out->result == STORE_INGEST_CREATED &&
         store_rca_number_job(s, n->rca_job_id, job_seq) != STORE_OK) ||
        run_exec(s, "committing ingest", "COMMIT", NULL, 0, NULL) != STORE_OK) {
        rollback(s);
        memset(out, 0, sizeof(*out));
        return STORE_ERR;
    }
    return STORE_OK;
}

/* ---- reads and status changes ------------------------------------------------------ */

#define INCIDENT_COLS                                                                              \
    "id, org_id, source, source_alert_id, fingerprint, title, service, severity, status,"         \
    " started_at, started_seq, acknowledged_at, resolved_at, closed_at, created_at, updated_at,"  \
    " alert_count, summary"

static int incident_row(store_t *s, const db_result *r, size_t i, void *out)
{
    store_incident *x = out;
    if (cell_str(s, r, i, 0, x->id, sizeof(x->id), "incident id") ||
        cell_str(s, r, i, 1, x->org_id, sizeof(x->org_id), "org_id") ||
        cell_str(s, r, i, 2, x->source, sizeof(x->source), "source") ||
        cell_str(s, r, i, 3, x->source_alert_id, sizeof(x->source_alert_id), "source_alert_id") ||
        cell_str(s, r, i, 4, x->fingerprint, sizeof(x->fingerprint), "fingerprint") ||
        cell_str(s, r, i, 5, x->title, sizeof(x->title), "title") ||
        cell_str(s, r, i, 6, x->service, sizeof(x->service), "service") ||
        cell_str(s, r, i, 7, x->severity, sizeof(x->severity), "severity") ||
        cell_str(s, r, i, 8, x->status, sizeof(x->status), "status") ||
        cell_i64(s, r, i, 9, &x->started_at, "started_at") ||
        cell_i64(s, r, i, 10, &x->started_seq, "started_seq") ||
        cell_i64(s, r, i, 11, &x->acknowledged_at, "acknowledged_at") ||
        cell_i64(s, r, i, 12, &x->resolved_at, "resolved_at") ||
        cell_i64(s, r, i, 13, &x->closed_at, "closed_at") ||
        cell_i64(s, r, i, 14, &x->created_at, "created_at") ||
        cell_i64(s, r, i, 15, &x->updated_at, "updated_at") ||
        cell_i64(s, r, i, 16, &x->alert_count, "alert_count") ||
        cell_str(s, r, i, 17, x->summary, sizeof(x->summary), "summary"))
        return STORE_ERR;
    return STORE_OK;
}

int store_incident_list(store_t *s, const char *org_id, const store_incident_filter *f, int limit,
                        store_incident **out, size_t *n)
{
    if (!s)
        return STORE_ERR;
    if (!f || !out || !n)
        return serr(s, "store_incident_list: missing argument");
    *out = NULL;
    *n = 0;
    const char *status = f->status ? f->status : "", *source = f->source ? f->source : "";
    if (check_text(s, "org_id", org_id, STORE_ID_LEN, 1) ||
        check_text(s, "status", status, INC_STATUS_MAX + 1, 0) ||
        check_text(s, "source", source, INC_SOURCE_MAX + 1, 0))
        return STORE_ERR;
    if (limit < 1 || limit > INC_LIST_MAX)
        return serr(s, "incident list limit out of range");
    int64_t until = f->has_until ? f->until : INT64_MAX;
    db_param p[] = {
        p_text(org_id),          p_text(status),          p_text(status),
        p_text(source),          p_text(source),          DB_P_INT(f->since),
        DB_P_INT(until),         DB_P_INT(f->has_cursor), DB_P_INT(f->cursor_at),
        DB_P_INT(f->cursor_at),  DB_P_INT(f->cursor_seq), DB_P_INT(limit),
    };
    db_result r;
    if (run_query(s, "listing incidents",
                  "SELECT " INCIDENT_COLS " FROM incidents WHERE org_id = ?"
                  " AND (? = '' OR status = ?) AND (? = '' OR source = ?)"
                  " AND started_at >= ? AND started_at <= ?"
                  " AND (? = 0 OR started_at < ? OR (started_at = ? AND started_seq < ?))"
                  " ORDER BY started_at DESC, started_seq DESC LIMIT ?",
                  p, sizeof(p) / sizeof(p[0]), &r) != STORE_OK)
        return STORE_ERR;
    void *arr;
    int rc = all_rows(s, &r, incident_row, sizeof(store_incident), &arr, n);
    *out = arr;
    return rc;
}

int store_incident_get(store_t *s, const char *org_id, const char *id, store_incident *out)
{
    if (!s)
        return STORE_ERR;
    if (!out || check_text(s, "org_id", org_id, STORE_ID_LEN, 1) ||
        check_text(s, "incident id", id, STORE_ID_LEN, 1))
        return STORE_ERR;
    db_param p[] = { p_text(org_id), p_text(id) };
    db_result r;
    if (run_query(s, "reading incident",
                  "SELECT " INCIDENT_COLS " FROM incidents WHERE org_id = ? AND id = ?", p, 2,
                  &r) != STORE_OK)
        return STORE_ERR;
    int rc = one_row(s, &r, incident_row, out);
    if (rc == STORE_NOT_FOUND)
        serr(s, "incident not found");
    return rc;
}

static int alert_row(store_t *s, const db_result *r, size_t i, void *out)
{
    store_incident_alert *x = out;
    if (cell_str(s, r, i, 0, x->id, sizeof(x->id), "alert id") ||
        cell_str(s, r, i, 1, x->source, sizeof(x->source), "source") ||
        cell_str(s, r, i, 2, x->dedup_key, sizeof(x->dedup_key), "dedup_key") ||
        cell_str(s, r, i, 3, x->source_alert_id, sizeof(x->source_alert_id), "source_alert_id") ||
        cell_str(s, r, i, 4, x->fingerprint, sizeof(x->fingerprint), "fingerprint") ||
        cell_str(s, r, i, 5, x->state, sizeof(x->state), "state") ||
        cell_str(s, r, i, 6, x->title, sizeof(x->title), "title") ||
        cell_str(s, r, i, 7, x->service, sizeof(x->service), "service") ||
        cell_str(s, r, i, 8, x->severity, sizeof(x->severity), "severity") ||
        cell_str(s, r, i, 9, x->message, sizeof(x->message), "message") ||
        cell_str(s, r, i, 10, x->url, sizeof(x->url), "url") ||
        cell_i64(s, r, i, 11, &x->occurred_at, "occurred_at") ||
        cell_i64(s, r, i, 12, &x->received_at, "received_at") ||
        cell_i64(s, r, i, 13, &x->position, "incident_pos"))
        return STORE_ERR;
    return STORE_OK;
}

int store_incident_alerts(store_t *s, const char *org_id, const char *incident_id, int limit,
                          store_incident_alert **out, size_t *n)
{
    if (!s)
        return STORE_ERR;
    if (!out || !n)
        return serr(s, "store_incident_alerts: missing argument");
    *out = NULL;
    *n = 0;
    if (check_text(s, "org_id", org_id, STORE_ID_LEN, 1) ||
        check_text(s, "incident id", incident_id, STORE_ID_LEN, 1))
        return STORE_ERR;
    if (limit < 1 || limit > INC_ALERTS_MAX)
        return serr(s, "alert limit out of range");
    db_param p[] = { p_text(incident_id), p_text(org_id), DB_P_INT(limit) };
    db_result r;
    if (run_query(s, "reading incident alerts",
                  "SELECT id, source, dedup_key, source_alert_id, fingerprint, state, title,"
                  " service, severity, message, url, occurred_at, received_at, incident_pos"
                  " FROM incident_alerts WHERE incident_id = ? AND org_id = ?"
                  " ORDER BY incident_pos LIMIT ?",
                  p, 3, &r) != STORE_OK)
        return STORE_ERR;
    void *arr;
    int rc = all_rows(s, &r, alert_row, sizeof(store_incident_alert), &arr, n);
    *out = arr;
    return rc;
}

int store_incident_set_status(store_t *s, const char *org_id, const char *id, const char *status,
                              int64_t now)
{
    if (!s)
        return STORE_ERR;
    if (check_text(s, "org_id", org_id, STORE_ID_LEN, 1) ||
        check_text(s, "incident id", id, STORE_ID_LEN, 1) || !status)
        return STORE_ERR;
    now = now_or_clock(now);
    int resolve = !strcmp(status, "resolved");
    if (!resolve && strcmp(status, "closed"))
        return serr(s, "status must be resolved or closed");
    /* Under the organization's lock, like ingest: otherwise (PostgreSQL) an
     * ingest that read the incident as open before this commits could
     * attach to it or move a just-closed incident back to resolved. */
    if (run_exec(s, "beginning status change", "BEGIN", NULL, 0, NULL) != STORE_OK)
        return STORE_ERR;
    int rc = lock_org(s, org_id);
    if (rc != STORE_OK) {
        rollback(s);
        return rc == STORE_NOT_FOUND ? STORE_NOT_FOUND : STORE_ERR;
    }
    /* The status before the change (closing a resolved incident tells no chat again). */
    char prev[INC_STATUS_MAX + 1] = "";
    {
        db_param k[] = { p_text(org_id), p_text(id) };
        db_result r;
        if (run_query(s, "reading incident status",
                      "SELECT status FROM incidents WHERE org_id = ? AND id = ?", k, 2,
                      &r) != STORE_OK) {
            rollback(s);
            return STORE_ERR;
        }
        if (r.nrows > 0)
            rc = cell_str(s, &r, 0, 0, prev, sizeof(prev), "incident status");
        db_result_free(&r);
        if (rc != STORE_OK) {
            rollback(s);
            return rc;
        }
    }
    db_param p[] = { DB_P_INT(now), DB_P_INT(now), p_text(org_id), p_text(id) };
    db_param q[] = { DB_P_INT(now), DB_P_INT(now), DB_P_INT(now), p_text(org_id), p_text(id) };
    int64_t changes = 0;
    rc = resolve ? run_exec(s, "resolving incident",
                                "UPDATE incidents SET status = 'resolved', resolved_at = ?,"
                                " updated_at = ? WHERE org_id = ? AND id = ?"
                                " AND status IN ('open', 'acknowledged')",
                                p, 4, &changes)
                     : run_exec(s, "closing incident",
                                "UPDATE incidents SET status = 'closed', closed_at = ?,"
                                " updated_at = ?, resolved_at = CASE WHEN resolved_at = 0"
                                " THEN ? ELSE resolved_at END WHERE org_id = ? AND id = ?"
                                " AND status <> 'closed'",
                                q, 5, &changes);
    /* A chat hears of the end once: resolved, or closed straight from open. */
    if (rc == STORE_OK && changes > 0 && (resolve || strcmp(prev, "resolved")))
        rc = store_chat_queue_resolved(s, org_id, id, now);
    if (rc != STORE_OK) {
        rollback(s);
        return rc;
    }
    if (run_exec(s, "committing status change", "COMMIT", NULL, 0, NULL) != STORE_OK) {
        rollback(s);
        return STORE_ERR;
    }
    if (changes > 0)
        return STORE_OK;
    store_incident cur;
    rc = store_incident_get(s, org_id, id, &cur);
    if (rc != STORE_OK)
        return rc;
    if (!strcmp(cur.status, status))
        return STORE_OK; /* already there: idempotent */
    serr(s, "incident is %s", cur.status);
    return STORE_CONFLICT;
}
