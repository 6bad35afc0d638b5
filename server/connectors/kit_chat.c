/* kit_chat.c — chat notifications (kit_chat.h): the connectors' table, the
 * reply API and the drain that hands each outbox row to its connector. */
#include "kit_chat.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_util.h"
#include "http.h"
#include "log.h"
#include "periodic.h"
#include "router.h"
#include "store_chat.h"
#include "store_incidents.h"
#include "timefmt.h"
#include "utf8.h"

#define CHAT_LEASE_S 120          /* one send is bounded by kit_call's deadline (20 s) */
#define CHAT_BATCH 20             /* messages per drain run before yielding the worker */
#define CHAT_BACKOFF_FIRST_S 5
#define CHAT_BACKOFF_MAX_S 3600
#define CHAT_LIST_DEFAULT 100

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static const kit_chat_spec *g_specs[KIT_CHAT_MAX_CONNECTORS];
static size_t g_nspecs;

int kit_chat_register(const kit_chat_spec *spec)
{
    if (!spec || !spec->connector || !spec->send)
        return -1;
    pthread_mutex_lock(&g_mu);
    int rc = 0, known = 0;
    for (size_t i = 0; i < g_nspecs; i++)
        if (!strcmp(g_specs[i]->connector, spec->connector)) {
            /* register_routes runs again in tests: the same spec is fine */
            rc = g_specs[i] == spec ? 0 : -1;
            known = 1;
        }
    if (!known && g_nspecs == KIT_CHAT_MAX_CONNECTORS)
        rc = -1;
    else if (!known)
        g_specs[g_nspecs++] = spec;
    const char *ids[KIT_CHAT_MAX_CONNECTORS];
    for (size_t i = 0; i < g_nspecs; i++)
        ids[i] = g_specs[i]->connector;
    store_chat_set_connectors(ids, g_nspecs);
    pthread_mutex_unlock(&g_mu);
    if (rc < 0)
        log_error("kit_chat: cannot declare chat connector %s", spec->connector);
    return rc;
}

size_t kit_chat_connectors(const char *ids[KIT_CHAT_MAX_CONNECTORS])
{
    pthread_mutex_lock(&g_mu);
    size_t n = g_nspecs;
    for (size_t i = 0; i < n; i++)
        ids[i] = g_specs[i]->connector;
    pthread_mutex_unlock(&g_mu);
    return n;
}

static const kit_chat_spec *spec_find(const char *connector)
{
    const kit_chat_spec *found = NULL;
    pthread_mutex_lock(&g_mu);
    for (size_t i = 0; i < g_nspecs && !found; i++)
        if (!strcmp(g_specs[i]->connector, connector))
            found = g_specs[i];
    pthread_mutex_unlock(&g_mu);
    return found;
}

static int64_t setting(const worker_ctx *w, const char *env, int64_t dflt)
{
    int64_t v = w && w->cfg ? server_setting_int(w->cfg, env) : 0;
    return v > 0 ? v : dflt;
}

/* Text as queued: at most KIT_CHAT_TEXT_MAX bytes, cut at a character
 * boundary with "…" when longer (an RCA summary is still worth posting).
 * malloc'd; NULL when it is not UTF-8. */
static char *text_fit(const char *text)
{
    size_t n = strlen(text);
    if (!utf8_valid(text, n))
        return NULL;
    static const char ell[] = "\xe2\x80\xa6";
    size_t keep = n <= KIT_CHAT_TEXT_MAX ? n
                                         : utf8_complete_prefix(text, KIT_CHAT_TEXT_MAX - 3);
    char *out = malloc(keep + sizeof(ell));
    if (!out)
        return NULL;
    memcpy(out, text, keep);
    if (keep < n)
        memcpy(out + keep, ell, sizeof(ell));
    else
        out[keep] = '\0';
    return out;
}

/* A channel or thread reference: printable ASCII without spaces, 1..KIT_CHAT_REF_MAX - 1. */
static int ref_ok(const char *v)
{
    size_t n = v ? strlen(v) : 0;
    if (n == 0 || n >= KIT_CHAT_REF_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (v[i] <= 0x20 || v[i] >= 0x7f)
            return 0;
    return 1;
}

int kit_chat_reply(worker_ctx *w, const char *org_id, const char *incident_id,
                   const char *connector, const char *channel, const char *thread,
                   const char *text, int *queued, char *err, size_t errlen)
{
    *queued = 0;
    if (!text || !*text) {
        snprintf(err, errlen, "text is required");
        return AUR_E_INVALID;
    }
    int by_incident = incident_id && *incident_id;
    if (by_incident && strlen(incident_id) > STORE_ID_MAX) {
        snprintf(err, errlen, "no such incident");
        return AUR_NOT_FOUND;
    }
    if (!by_incident && !(connector && spec_find(connector))) {
        snprintf(err, errlen, "connector is not a chat connector of this server");
        return AUR_E_INVALID;
    }
    if (!by_incident && (!ref_ok(channel) || !ref_ok(thread))) {
        snprintf(err, errlen, "channel and thread must be 1-%d printable characters without spaces",
                 KIT_CHAT_REF_MAX - 1);
        return AUR_E_INVALID;
    }
    char *fitted = text_fit(text);
    if (!fitted) {
        snprintf(err, errlen, "text must be UTF-8 without NUL characters");
        return AUR_E_INVALID;
    }
    int rc = store_chat_queue_reply(w->store, org_id, incident_id, connector, channel, thread,
                                    fitted, (int64_t)time(NULL),
                                    setting(w, "AURORA_CHAT_MAX_PENDING_PER_ORG", 1000), queued,
                                    NULL);
    free(fitted);
    if (rc != STORE_OK)
        snprintf(err, errlen, "%s", store_errmsg(w->store));
    return rc;
}

int kit_chat_thread_incident(worker_ctx *w, const char *org_id, const char *connector,
                             const char *channel, const char *thread,
                             char incident_id[STORE_ID_LEN])
{
    return store_chat_thread_incident(w->store, org_id, connector, channel, thread, incident_id);
}

/* ---- the drain ----------------------------------------------------------------------- */

static int64_t backoff_s(int attempt)
{
    int64_t d = CHAT_BACKOFF_FIRST_S;
    for (int i = 1; i < attempt && d < CHAT_BACKOFF_MAX_S; i++)
        d *= 2;
    return d < CHAT_BACKOFF_MAX_S ? d : CHAT_BACKOFF_MAX_S;
}

static kit_chat_kind kind_of(const char *kind)
{
    if (!strcmp(kind, "opened"))
        return KIT_CHAT_OPENED;
    if (!strcmp(kind, "resolved"))
        return KIT_CHAT_RESOLVED;
    return KIT_CHAT_REPLY;
}

/* Sends one claimed row and records the outcome. */
static void deliver(worker_ctx *w, store_chat_msg *row, int max_attempts)
{
    int64_t now = (int64_t)time(NULL);
    const kit_chat_spec *spec = spec_find(row->connector);
    if (!spec) {
        (void)store_chat_drop(w->store, row->id, row->attempts,
                              "this server has no such chat connector", now);
        return;
    }
    store_incident inc;
    memset(&inc, 0, sizeof(inc));
    char link[1024] = "";
    if (row->incident_id[0]) {
        int rc = store_incident_get(w->store, row->org_id, row->incident_id, &inc);
        if (rc == STORE_ERR) {
            (void)store_chat_retry(w->store, row->id, row->attempts, backoff_s(row->attempts),
                                   "state store unavailable", now, max_attempts, NULL);
            return;
        }
        const char *fe = w->cfg && w->cfg->frontend_url ? w->cfg->frontend_url : "";
        size_t fl = strlen(fe);
        while (fl > 0 && fe[fl - 1] == '/')
            fl--;
        if (fl)
            snprintf(link, sizeof(link), "%.*s/incidents/%s", (int)fl, fe, row->incident_id);
    }
    /* A message of an incident joins the incident's thread when it has one;
     * a row that named its thread keeps it. */
    if (row->incident_id[0] && !row->thread[0]) {
        char ch[CHAT_REF_MAX + 1], th[CHAT_REF_MAX + 1];
        int rc = store_chat_thread_get(w->store, row->org_id, row->connector, row->incident_id,
                                       ch, th);
        if (rc == STORE_OK) {
            memcpy(row->channel, ch, sizeof(ch));
            memcpy(row->thread, th, sizeof(th));
        } else if (rc != STORE_NOT_FOUND) {
            /* Not knowing the thread is not "no thread": sent now, the
             * message would start a new one in the channel for good. */
            (void)store_chat_retry(w->store, row->id, row->attempts, backoff_s(row->attempts),
                                   "state store unavailable", now, max_attempts, NULL);
            return;
        }
    }
    kit_chat_kind kind = kind_of(row->kind);
    char resolved_line[INC_TITLE_MAX + 32];
    const char *text = row->text;
    if (kind == KIT_CHAT_OPENED) {
        /* a summary may be longer than a chat message may be: cut at a character */
        size_t sl = strlen(inc.summary);
        if (sl > KIT_CHAT_TEXT_MAX)
            inc.summary[utf8_complete_prefix(inc.summary, KIT_CHAT_TEXT_MAX)] = '\0';
        text = inc.summary;
    }
    else if (kind == KIT_CHAT_RESOLVED) {
        snprintf(resolved_line, sizeof(resolved_line), "%s: %s",
                 !strcmp(inc.status, "closed") ? "Incident closed" : "Incident resolved",
                 inc.title[0] ? inc.title : row->incident_id);
        text = resolved_line;
    }
    kit_chat_message m = {
        .id = row->id, .org_id = row->org_id, .incident_id = row->incident_id, .kind = kind,
        .title = inc.title, .severity = inc.severity[0] ? inc.severity : "unknown",
        .service = inc.service, .status = inc.status, .text = text, .link = link,
        .channel = row->channel, .thread = row->thread, .attempt = row->attempts,
    };
    kit_chat_outcome out;
    memset(&out, 0, sizeof(out));
    out.retry_after_s = -1;
    kit_chat_send_result r = spec->send(w, &m, &out);
    now = (int64_t)time(NULL);
    int rc;
    if (r == KIT_CHAT_SENT) {
        const char *ch = out.channel[0] ? out.channel : row->channel;
        const char *th = out.thread[0] ? out.thread : row->thread;
        /* The message is in the channel: a reference the store refuses (the
         * provider's, not ours to trust) must not leave the row claimed, or
         * it is sent again at every lease's end.  Kept without it: sent, and
         * the incident's next messages start a thread of their own. */
        if (!store_chat_ref_ok(ch)) {
            log_warn("chat: %s message %s: the provider's channel reference cannot be stored;"
                     " recorded as sent without a thread", row->connector, row->id);
            ch = store_chat_ref_ok(row->channel) ? row->channel : "";
            th = ""; /* a thread is nothing without its channel */
        }
        if (th[0] && !store_chat_ref_ok(th)) {
            log_warn("chat: %s message %s: the provider's thread reference cannot be stored;"
                     " recorded as sent without a thread", row->connector, row->id);
            th = "";
        }
        rc = store_chat_sent(w->store, row->id, row->attempts, ch, th, now);
        log_info("chat: %s %s message %s sent", row->connector, row->kind, row->id);
    } else if (r == KIT_CHAT_RETRY) {
        int64_t delay = out.retry_after_s > 0 ? out.retry_after_s : backoff_s(row->attempts);
        if (delay > CHAT_BACKOFF_MAX_S)
            delay = CHAT_BACKOFF_MAX_S;
        int dead = 0;
        rc = store_chat_retry(w->store, row->id, row->attempts, delay,
                              out.err[0] ? out.err : "temporary failure", now, max_attempts,
                              &dead);
        log_warn("chat: %s message %s %s: %s", row->connector, row->id,
                 dead ? "dead after its last attempt" : "will be retried",
                 out.err[0] ? out.err : "temporary failure");
    } else {
        rc = store_chat_drop(w->store, row->id, row->attempts,
                             out.err[0] ? out.err : "not deliverable", now);
        log_warn("chat: %s message %s dropped: %s", row->connector, row->id,
                 out.err[0] ? out.err : "not deliverable");
    }
    if (rc != STORE_OK)
        /* The lease runs out and the row is sent again: at least once. */
        log_error("chat: recording the outcome of %s: %s", row->id, store_errmsg(w->store));
}

/* Periodic task (outbound pool): up to CHAT_BATCH messages, one claim at a
 * time (a claim holds one row's lease, not a batch's). */
long kit_chat_drain(worker_ctx *w)
{
    long poll = (long)setting(w, "AURORA_CHAT_POLL_S", 2);
    int max_attempts = (int)setting(w, "AURORA_CHAT_MAX_ATTEMPTS", 8);
    for (int i = 0; i < CHAT_BATCH; i++) {
        store_chat_msg *rows = NULL;
        size_t n = 0;
        if (store_chat_claim(w->store, (int64_t)time(NULL), CHAT_LEASE_S, max_attempts, 1, &rows,
                             &n) != STORE_OK) {
            log_error("chat: claiming messages: %s", store_errmsg(w->store));
            return poll;
        }
        if (n == 0)
            return poll;
        deliver(w, &rows[0], max_attempts);
        store_chat_msgs_free(rows, n);
    }
    return 1; /* more may be due: come back soon */
}

/* ---- routes (internal secret) ----------------------------------------------------------- */

/* An optional string member: NULL when absent or null; -1 with a 400 when
 * it is another type. */
static int opt_str(const cJSON *body, const char *key, const char **out, http_response *resp)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(body, key);
    *out = NULL;
    if (!it || cJSON_IsNull(it))
        return 0;
    if (!cJSON_IsString(it)) {
        http_resp_error(resp, 400, "BAD_REQUEST", "%s must be a string", key);
        return -1;
    }
    *out = it->valuestring;
    return 0;
}

static void post_route(worker_ctx *w, http_request *req, http_response *resp)
{
    if (!req->auth.org_id[0]) {
        http_resp_error(resp, 400, "ORG_REQUIRED", "Organization context required: send X-Org-ID");
        return;
    }
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    const char *incident = NULL, *connector = NULL, *channel = NULL, *thread = NULL, *text = NULL;
    if (opt_str(body, "incident_id", &incident, resp) < 0 ||
        opt_str(body, "connector", &connector, resp) < 0 ||
        opt_str(body, "channel", &channel, resp) < 0 ||
        opt_str(body, "thread", &thread, resp) < 0 || opt_str(body, "text", &text, resp) < 0)
        goto out;
    if (!text || !*text) {
        http_resp_error(resp, 400, "BAD_REQUEST", "text is required");
        goto out;
    }
    int named = connector || channel || thread;
    if ((incident && *incident) == named || (named && !(connector && channel && thread))) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "send either incident_id, or connector, channel and thread");
        goto out;
    }
    char err[256];
    int queued = 0;
    int rc = kit_chat_reply(w, req->auth.org_id, incident, connector, channel, thread, text,
                            &queued, err, sizeof(err));
    if (rc == AUR_OK) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "queued", queued);
        http_resp_json(resp, 202, o);
    } else if (rc == AUR_E_INVALID)
        http_resp_error(resp, 400, "BAD_REQUEST", "%s", err);
    else if (rc == AUR_NOT_FOUND)
        http_resp_error(resp, 404, "NOT_FOUND", "%s", err);
    else if (rc == AUR_CONFLICT) {
        http_resp_add_header(resp, "Retry-After", "60");
        http_resp_error(resp, 429, "CHAT_BACKLOG", "%s", err);
    } else
        api_store_error(w, resp);
out:
    cJSON_Delete(body);
}

static cJSON *msg_json(const store_chat_msg *m)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "id", m->id);
    cJSON_AddStringToObject(o, "org_id", m->org_id);
    cJSON_AddStringToObject(o, "connector", m->connector);
    if (m->incident_id[0])
        cJSON_AddStringToObject(o, "incident_id", m->incident_id);
    else
        cJSON_AddNullToObject(o, "incident_id");
    cJSON_AddStringToObject(o, "kind", m->kind);
    cJSON_AddStringToObject(o, "status", m->status);
    cJSON_AddNumberToObject(o, "attempts", m->attempts);
    cJSON_AddStringToObject(o, "channel", m->channel);
    cJSON_AddStringToObject(o, "thread", m->thread);
    cJSON_AddStringToObject(o, "text", m->text ? m->text : "");
    time_json_add(o, "created_at", m->created_at);
    time_json_add(o, "sent_at", m->sent_at);
    time_json_add(o, "next_attempt_at", !strcmp(m->status, "pending") ? m->next_attempt_at : 0);
    if (m->last_error[0])
        cJSON_AddStringToObject(o, "last_error", m->last_error);
    else
        cJSON_AddNullToObject(o, "last_error");
    return o;
}

static void list_route(worker_ctx *w, http_request *req, http_response *resp)
{
    char status[CHAT_STATUS_LEN + 1] = "", incident[STORE_ID_LEN + 1] = "", lim[16] = "";
    if (http_query_get(req, "status", status, sizeof(status)) < 0 ||
        http_query_get(req, "incident_id", incident, sizeof(incident)) < 0 ||
        http_query_get(req, "limit", lim, sizeof(lim)) < 0) {
        http_resp_error(resp, 400, "BAD_REQUEST", "status, incident_id or limit is too long");
        return;
    }
    static const char *const statuses[] = { "", "pending", "claimed", "sent", "dropped", "dead" };
    int ok = 0;
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
        ok |= !strcmp(status, statuses[i]);
    if (!ok) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "status must be pending, claimed, sent, dropped or dead");
        return;
    }
    long limit = CHAT_LIST_DEFAULT;
    if (lim[0]) {
        char *end;
        limit = strtol(lim, &end, 10);
        if (*end || limit < 1 || limit > CHAT_LIST_MAX) {
            http_resp_error(resp, 400, "BAD_REQUEST", "limit must be between 1 and %d",
                            CHAT_LIST_MAX);
            return;
        }
    }
    /* Scoped to X-Org-ID when the backend names one; all orgs otherwise
     * (operators, under the internal secret). */
    store_chat_msg *rows = NULL;
    size_t n = 0;
    if (store_chat_list(w->store, req->auth.org_id[0] ? req->auth.org_id : NULL, status,
                        incident, (int)limit, &rows, &n) != STORE_OK) {
        api_store_error(w, resp);
        return;
    }
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < n; i++)
        cJSON_AddItemToArray(arr, msg_json(&rows[i]));
    store_chat_msgs_free(rows, n);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "messages", arr);
    http_resp_json(resp, 200, o);
}

void kit_chat_register_routes(void)
{
    router_add(HTTP_POST, "/internal/chat/messages", ROUTE_AUTH_INTERNAL, post_route);
    router_add(HTTP_GET, "/internal/chat/messages", ROUTE_AUTH_INTERNAL, list_route);
    if (periodic_add("chat-drain", WORKER_POOL_OUTBOUND, 1, kit_chat_drain) < 0)
        log_error("kit_chat: no periodic slot for the chat drain");
}
