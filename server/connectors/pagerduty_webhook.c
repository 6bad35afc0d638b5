/* pagerduty_webhook.c — PagerDuty Generic Webhooks (v3) into incidents
 * (connector guide: Observability Tools > PagerDuty > Webhook Configuration;
 * PagerDuty developer docs "Webhooks v3 Overview" and "Verifying Signatures").
 *
 *   POST /pagerduty/webhook/{user_id}[?org_id=…]   PagerDuty's deliveries
 *   GET  /api/pagerduty/events                     the caller org's deliveries
 *   GET  /api/pagerduty/events/{event_id}
 *
 * On the connector kit (kit_webhook.h): the tenant is the URL's user, who must
 * have an active PagerDuty connection (kit_tenant.h: unknown or disconnected
 * → 404 with the same answer); a per-user rate limit; X-PagerDuty-Signature
 * ("v1=<hex HMAC-SHA256 of the raw body>", several comma-separated during a
 * secret rotation) verified when the user configured the subscription's
 * signing secret, unsigned deliveries accepted (verified = false) otherwise;
 * event.id is the idempotency key; a body that is not a v3 event is a 400 and
 * is not stored.  Stored raw before the 2xx, processed after it.
 *
 * Processing: incident.triggered → a firing alert, incident.acknowledged →
 * acknowledged, incident.resolved → resolved, each with fingerprint = the
 * PagerDuty incident id, handed to incident_ingest().  Every other event type
 * (incident.annotated, pagey.ping, service.*, …) is stored and ignored. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_util.h"
#include "connector.h"
#include "kit_secrets.h"
#include "kit_tenant.h"
#include "kit_webhook.h"
#include "log.h"
#include "pagerduty.h"
#include "periodic.h"
#include "router.h"
#include "secrets.h"
#include "timefmt.h"

/* A v3 incident event is a few KiB (assignees, teams, priority, bridge);
 * 256 KiB leaves room for large custom fields and refuses anything absurd. */
#define PD_WEBHOOK_MAX_BODY (256 * 1024)
#define RATE_WINDOW_S 60
#define SWEEP_BATCH 100
#define SWEEP_INTERVAL_S 20
#define MSG_NOT_FOUND "Unknown webhook user or PagerDuty not connected"
#define MAX_TEXT 4096 /* longest title / service / url taken from a payload */

/* ---- the payload --------------------------------------------------------------------- */

static const cJSON *obj(const cJSON *o, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsObject(it) ? it : NULL;
}

/* A string member that is non-empty and at most max bytes, or NULL. */
static const char *text(const cJSON *o, const char *key, size_t max)
{
    const char *s = api_json_str(o, key);
    return s && *s && strlen(s) <= max ? s : NULL;
}

int64_t pd_time_parse(const char *s)
{
    /* "YYYY-MM-DDTHH:MM:SS" then an optional fraction, then "Z" or "+00:00". */
    if (!s || strlen(s) < 20 || strlen(s) > 40)
        return 0;
    char base[32];
    memcpy(base, s, 19);
    base[19] = 'Z';
    base[20] = '\0';
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return 0;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (strcmp(p, "Z") != 0 && strcmp(p, "+00:00") != 0)
        return 0;
    int64_t t = 0;
    return time_parse_rfc3339(base, &t) == 0 && t > 0 ? t : 0;
}

static int is_printable_id(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e)
            return 0;
    return 1;
}

int pd_event_parse(const cJSON *root, pd_event *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    const cJSON *ev = obj(root, "event");
    const char *type = ev ? api_json_str(ev, "event_type") : NULL;
    const char *id = ev ? api_json_str(ev, "id") : NULL;
    const cJSON *data = ev ? obj(ev, "data") : NULL;
    if (!ev || !type || !id || !data) {
        snprintf(why, whylen, "not a PagerDuty v3 webhook: event.%s is missing or of the wrong type",
                 !ev ? "(object)" : !type ? "event_type" : !id ? "id" : "data");
        return PD_EVENT_BAD;
    }
    if (!is_printable_id(type, 64) || !is_printable_id(id, 128)) {
        snprintf(why, whylen, "not a PagerDuty v3 webhook: event.%s is not an identifier",
                 !is_printable_id(type, 64) ? "event_type" : "id");
        return PD_EVENT_BAD;
    }
    out->event_type = type;
    out->event_id = id;
    alert_state st;
    if (!strcmp(type, "incident.triggered"))
        st = ALERT_FIRING;
    else if (!strcmp(type, "incident.acknowledged"))
        st = ALERT_ACKNOWLEDGED;
    else if (!strcmp(type, "incident.resolved"))
        st = ALERT_RESOLVED;
    else
        return PD_EVENT_OTHER;

    /* event.data is an incident (docs: "data.type is incident"). */
    const char *inc = api_json_str(data, "id");
    const char *title = text(data, "title", MAX_TEXT);
    const char *dtype = api_json_str(data, "type");
    if (!is_printable_id(inc, 128) || !title || (dtype && strcmp(dtype, "incident") != 0)) {
        snprintf(why, whylen, "%s: event.data is not an incident with an id and a title", type);
        return PD_EVENT_BAD;
    }
    const cJSON *svc = obj(data, "service");
    const cJSON *prio = obj(data, "priority");
    incident_alert *a = &out->alert;
    a->source = PD_ID;
    a->source_alert_id = inc;
    a->fingerprint = inc;
    a->state = st;
    a->title = title;
    a->service = svc ? text(svc, "summary", MAX_TEXT) : NULL;
    a->url = text(data, "html_url", MAX_TEXT);
    /* The incident's own start for a trigger; the event's time otherwise
     * (when it was acknowledged / resolved). */
    int64_t created = pd_time_parse(api_json_str(data, "created_at"));
    int64_t occurred = pd_time_parse(api_json_str(ev, "occurred_at"));
    a->occurred_at = st == ALERT_FIRING && created ? created : occurred;
    const cJSON *body = obj(data, "body");
    a->message = body ? text(body, "details", MAX_TEXT) : NULL;
    out->priority = prio ? text(prio, "summary", 64) : NULL;
    out->urgency = text(data, "urgency", 32);
    a->severity = pd_severity_word(out);
    return PD_EVENT_ALERT;
}

const char *pd_severity_word(const pd_event *e)
{
    /* PagerDuty's standard priorities are P1 (highest) … P5; an account may
     * name its own ("SEV-1", "Urgent"): only the standard ones are read as
     * a severity, the urgency (high / low) stands in for the rest. */
    const char *p = e->priority;
    if (p && (p[0] == 'P' || p[0] == 'p') && p[1] >= '1' && p[1] <= '5' && !p[2])
        return p;
    if (e->urgency)
        return e->urgency;
    return p;
}

/* ---- intake callbacks ------------------------------------------------------------------- */

/* One slot of the user's per-minute budget; -1 with 429 (or 503) in resp. */
static int rate_take(worker_ctx *w, const kit_tenant *t, http_response *resp)
{
    int64_t limit = server_setting_int(w->cfg, "PAGERDUTY_WEBHOOK_RATE_LIMIT_PER_MINUTE");
    if (limit <= 0)
        return 0;
    char key[2 * STORE_ID_LEN + 32];
    snprintf(key, sizeof(key), "pagerduty-webhook:%s:%s", t->org_id, t->user_id);
    return api_rate_take(w, key, limit, RATE_WINDOW_S,
                         "PagerDuty webhook deliveries for this user", NULL, resp);
}

/* The signing secret the user configured, if any, into out. */
static int add_secret(worker_ctx *w, const kit_tenant *t, kit_wh_keys *out, http_response *resp)
{
    store_connector row;
    if (store_connector_get(w->store, t->org_id, t->user_id, PD_ID, &row) != STORE_OK) {
        api_store_error(w, resp);
        return -1;
    }
    cJSON *md = cJSON_Parse(row.metadata_json ? row.metadata_json : "{}");
    const char *ref = api_json_str(obj(md, "secret_refs"), PD_FIELD_WEBHOOK);
    int rc = 0;
    if (ref && *ref) {
        unsigned char *v = NULL;
        size_t len = 0;
        /* Configured but unreadable: refuse with a 503 (PagerDuty retries)
         * rather than accept unsigned deliveries the user asked to be signed. */
        if (!w->secrets) {
            http_resp_error(resp, 503, "SECRETS_UNAVAILABLE",
                            "the secrets backend holding the webhook signing secret is unavailable");
            rc = -1;
        } else if (kit_secret_get(w, ref, &v, &len, 503, "WEBHOOK_SECRET_UNAVAILABLE",
                                  "the PagerDuty webhook signing secret cannot be read; retry later",
                                  resp) < 0) {
            rc = -1;
        } else {
            /* Unusable (emptied or grown past the kit's limit outside
             * Aurora): refusing keeps it signed; skipping it would accept
             * unsigned deliveries. */
            if (kit_wh_keys_add(out, v, len) < 0) {
                log_warn("pagerduty webhook: the signing secret of user %s is empty or too long; "
                         "deliveries refused until it is set again",
                         t->user_id);
                http_resp_error(resp, 503, "WEBHOOK_SECRET_UNAVAILABLE",
                                "the stored PagerDuty webhook signing secret is unusable; set it "
                                "again (POST /pagerduty/webhook-secret)");
                rc = -1;
            }
            secrets_free(v, len);
        }
    }
    cJSON_Delete(md);
    store_connector_free(&row);
    return rc;
}

static int webhook_keys(worker_ctx *w, const http_request *req, kit_wh_keys *out,
                        http_response *resp)
{
    kit_tenant t;
    if (kit_tenant_resolve(w, PD_ID, req, http_param(req, "user_id"), KIT_TENANT_CONNECTED,
                           MSG_NOT_FOUND, &t, resp) < 0 ||
        add_secret(w, &t, out, resp) < 0)
        return -1;
    snprintf(out->org_id, sizeof(out->org_id), "%s", t.org_id);
    snprintf(out->tenant_key, sizeof(out->tenant_key), "%s", t.user_id);
    return 0;
}

/* After the signature: the per-user rate limit counts only deliveries that
 * passed it, so forged posts cannot spend a signed user's allowance. */
static int webhook_check(worker_ctx *w, const http_request *req, const cJSON *json,
                         http_response *resp)
{
    pd_event e;
    char why[160];
    if (!json || pd_event_parse(json, &e, why, sizeof(why)) == PD_EVENT_BAD) {
        http_resp_error(resp, 400, "PAGERDUTY_BAD_PAYLOAD", "%s",
                        json ? why : "not a PagerDuty v3 webhook: the body is not JSON");
        return -1;
    }
    kit_tenant t;
    if (kit_tenant_resolve(w, PD_ID, req, http_param(req, "user_id"), KIT_TENANT_CONNECTED,
                           MSG_NOT_FOUND, &t, resp) < 0)
        return -1;
    return rate_take(w, &t, resp) < 0 ? -1 : 0;
}

/* ---- processing (store pool, after the commit; at least once) ------------------------------ */

static int webhook_process(worker_ctx *w, const store_webhook_delivery *d, char *err,
                           size_t errlen)
{
    cJSON *json = cJSON_ParseWithLength(d->body, d->body_len);
    pd_event e;
    char why[160];
    int kind = json ? pd_event_parse(json, &e, why, sizeof(why)) : PD_EVENT_BAD;
    if (kind != PD_EVENT_ALERT) {
        /* Other event types are kept for the events API and the record;
         * a body the intake accepted cannot be BAD, but never retry one. */
        if (kind == PD_EVENT_BAD)
            log_warn("pagerduty: delivery %s is not an incident event any more (%s); ignored",
                     d->id, json ? why : "not JSON");
        cJSON_Delete(json);
        return KIT_WH_IGNORED;
    }
    e.alert.delivery_id = d->id;
    e.alert.index = 0;
    e.alert.raw = json;
    e.alert.occurred_at = kit_webhook_occurred_at(d, e.alert.occurred_at); /* no occurred_at */
    incident_outcome out;
    /* Idempotent on (org, delivery id, index): a second run after a crash
     * between ingest and the delivery's status update changes nothing. */
    int rc = incident_ingest(w, d->org_id, d->tenant_key[0] ? d->tenant_key : NULL, &e.alert,
                             (int64_t)time(NULL), &out, err, errlen);
    if (rc == 0) {
        static const char *const what[] = { "opened incident", "attached to incident",
                                            "matched no incident", "duplicate of" };
        log_info("pagerduty: %s %s (PagerDuty incident %s, delivery %s): %s %s", e.event_type,
                 e.event_id, e.alert.fingerprint, d->id,
                 out.result <= INGEST_DUPLICATE ? what[out.result] : "?",
                 out.incident_id[0] ? out.incident_id : "-");
    }
    cJSON_Delete(json);
    return rc == 0 ? KIT_WH_PROCESSED : KIT_WH_FAILED;
}

/* ---- the spec ---------------------------------------------------------------------------- */

static const kit_webhook_spec pd_webhook = {
    .connector = PD_ID,
    .max_body = PD_WEBHOOK_MAX_BODY,
    .policy = KIT_WH_SIGNED_IF_CONFIGURED,
    .signature_header = "x-pagerduty-signature",
    .signature_prefix = "v1=",
    .signature_separator = ',',
    .encoding = KIT_WH_HEX,
    .delivery_id_json = "event.id",
    .event_json = "event.event_type",
    .require_json_object = 1,
    .content_type = "application/json",
    .keys = webhook_keys,
    .check = webhook_check,
    .process = webhook_process,
    .msg_not_configured = "PagerDuty webhook signing secret not configured",
};

/* The recovery sweep: what a crash or a full queue left unprocessed. */
static long webhook_sweep_task(worker_ctx *w)
{
    int done = kit_webhook_process_open(w, &pd_webhook, SWEEP_BATCH, (int64_t)time(NULL));
    if (done > 0)
        log_info("pagerduty: recovery sweep processed %d webhook deliveries", done);
    else if (done < 0)
        log_error("pagerduty: webhook recovery sweep: %s", store_errmsg(w->store));
    return SWEEP_INTERVAL_S;
}

/* ---- routes ------------------------------------------------------------------------------ */

static void webhook_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_webhook_handle(w, &pd_webhook, req, resp);
}

static void events_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_webhook_list_events(w, PD_ID, req, resp);
}

static void event_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_webhook_get_event(w, PD_ID, http_param(req, "event_id"), req, resp);
}

void pagerduty_webhook_register(void)
{
    if (kit_webhook_register(&pd_webhook) < 0)
        return; /* logged; not mounted rather than half-working */
    /* Outbound pool: the signing secret is read from the secrets backend. */
    router_add_outbound(HTTP_POST, "/pagerduty/webhook/{user_id}", ROUTE_PUBLIC, webhook_route);
    router_add(HTTP_GET, "/api/pagerduty/events", ROUTE_AUTH_API, events_route);
    router_add(HTTP_GET, "/api/pagerduty/events/{event_id}", ROUTE_AUTH_API, event_route);
    if (periodic_add("pagerduty-webhook-sweep", WORKER_POOL_STORE, 0, webhook_sweep_task) < 0)
        log_error("pagerduty: cannot register the webhook recovery sweep (periodic table full)");
}
