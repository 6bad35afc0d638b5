/* netdata_webhook.c — Netdata Cloud notifications into incidents; see
 * netdata_webhook.h.
 *
 * Payloads (learn.netdata.cloud, Centralized Cloud Notifications > Webhook):
 *   alert:        {message, alert (older: alarm), info, chart, context, space,
 *                  Rooms, family, class, severity: warning|critical|clear, date,
 *                  duration, additional_active_critical_alerts,
 *                  additional_active_warning_alerts, alert_url (older: alarm_url)}
 *   reachability: {message, url, host, severity, status: {reachable, text}}
 *   test:         {message, title, token}
 * An alert fires on warning/critical and resolves on clear; a node fires
 * when unreachable and resolves when reachable again.  The fingerprint ties
 * a clear to its alert: space, host (when sent), chart and alert name. */
#include "netdata_webhook.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api_util.h"
#include "connector.h"
#include "crypto.h"
#include "kit_secrets.h"
#include "kit_tenant.h"
#include "kit_webhook.h"
#include "log.h"
#include "periodic.h"
#include "router.h"
#include "secrets.h"
#include "timefmt.h"

#define NETDATA_ID "netdata"
#define NETDATA_WH_MAX_BODY (256 * 1024)
#define SWEEP_INTERVAL_S 20
#define SWEEP_BATCH 50
#define MSG_NOT_FOUND "Unknown webhook user or Netdata not connected"

/* ---- payloads ---------------------------------------------------------------------------- */

static const char *str_or(const cJSON *o, const char *a, const char *b)
{
    const char *v = api_json_str(o, a);
    return v && *v ? v : (b ? api_json_str(o, b) : NULL);
}

netdata_payload_kind netdata_payload_kind_of(const cJSON *body)
{
    if (!cJSON_IsObject(body))
        return NETDATA_PAYLOAD_UNKNOWN;
    const char *name = str_or(body, "alert", "alarm"), *sev = api_json_str(body, "severity");
    if (name && *name && sev &&
        (!strcasecmp(sev, "warning") || !strcasecmp(sev, "critical") || !strcasecmp(sev, "clear")))
        return NETDATA_PAYLOAD_ALERT;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(body, "status");
    const char *host = api_json_str(body, "host");
    if (host && *host && cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(st, "reachable")))
        return NETDATA_PAYLOAD_REACHABILITY;
    if (api_json_str(body, "token") && api_json_str(body, "title"))
        return NETDATA_PAYLOAD_TEST;
    return NETDATA_PAYLOAD_UNKNOWN;
}

/* s cut to fit (the store bounds text too; this keeps our buffers safe). */
static void put(char *out, size_t cap, const char *s)
{
    snprintf(out, cap, "%s", s ? s : "");
}

static int64_t date_of(const cJSON *body)
{
    int64_t t = 0;
    const char *d = api_json_str(body, "date");
    if (d && time_parse_rfc3339(d, &t) == 0)
        return t;
    return 0; /* the core reads 0 as "now" */
}

int netdata_alert_from(const cJSON *body, const char *delivery_id, netdata_alert *out)
{
    memset(out, 0, sizeof(*out));
    incident_alert *a = &out->alert;
    a->source = NETDATA_ID;
    a->delivery_id = delivery_id;
    a->raw = body;
    a->occurred_at = date_of(body);
    const char *space = api_json_str(body, "space");
    switch (netdata_payload_kind_of(body)) {
    case NETDATA_PAYLOAD_ALERT: {
        const char *name = str_or(body, "alert", "alarm");
        const char *sev = api_json_str(body, "severity");
        const char *host = str_or(body, "host", "node");
        const char *chart = api_json_str(body, "chart");
        const char *msg = api_json_str(body, "message");
        snprintf(out->fingerprint, sizeof(out->fingerprint), "netdata:%s|%s|%s|%s",
                 space ? space : "", host ? host : "", chart ? chart : "", name);
        put(out->title, sizeof(out->title), msg && *msg ? msg : name);
        a->state = strcasecmp(sev, "clear") ? ALERT_FIRING : ALERT_RESOLVED;
        a->severity = incident_severity_normalize(sev);
        a->service = host && *host ? host : (chart ? chart : "");
        a->message = api_json_str(body, "info");
        a->url = str_or(body, "alert_url", "alarm_url");
        a->source_alert_id = name;
        break;
    }
    case NETDATA_PAYLOAD_REACHABILITY: {
        const char *host = api_json_str(body, "host");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(body, "status");
        int reachable = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(st, "reachable"));
        const char *msg = api_json_str(body, "message");
        snprintf(out->fingerprint, sizeof(out->fingerprint), "netdata:%s|%s|reachability",
                 space ? space : "", host);
        if (msg && *msg)
            put(out->title, sizeof(out->title), msg);
        else
            snprintf(out->title, sizeof(out->title), "%s is %s", host,
                     reachable ? "reachable" : "unreachable");
        a->state = reachable ? ALERT_RESOLVED : ALERT_FIRING;
        a->severity = incident_severity_normalize(reachable ? "info" : "critical");
        a->service = host;
        a->message = api_json_str(st, "text");
        a->url = api_json_str(body, "url");
        a->source_alert_id = host;
        break;
    }
    default:
        return -1;
    }
    a->fingerprint = out->fingerprint;
    a->title = out->title;
    return 0;
}

int netdata_crc_response(const void *secret, size_t secret_len, const char *crc_token,
                         char out[NETDATA_RESPONSE_TOKEN_LEN])
{
    unsigned char mac[32];
    unsigned int mac_len = 0;
    out[0] = '\0';
    if (!secret || !secret_len || !crc_token ||
        !HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)crc_token,
              strlen(crc_token), mac, &mac_len) ||
        mac_len != sizeof(mac))
        return -1;
    char *b64 = crypto_base64(mac, sizeof(mac));
    if (!b64)
        return -1;
    snprintf(out, NETDATA_RESPONSE_TOKEN_LEN, "sha256=%s", b64);
    free(b64);
    return 0;
}

/* ---- the tenant and its secret -------------------------------------------------------------- */

/* The webhook secret of (org, user)'s connection: 1 with *val (secrets_free
 * it), 0 when none was configured, -1 with resp filled. */
static int webhook_secret(worker_ctx *w, const char *org, const char *user, unsigned char **val,
                          size_t *len, http_response *resp)
{
    store_connector row;
    int rc = store_connector_get(w->store, org, user, NETDATA_ID, &row);
    if (rc == STORE_NOT_FOUND) {
        http_resp_error(resp, 404, "USER_NOT_FOUND", MSG_NOT_FOUND);
        return -1;
    }
    if (rc != STORE_OK) {
        api_store_error(w, resp);
        return -1;
    }
    cJSON *md = cJSON_Parse(row.metadata_json ? row.metadata_json : "{}");
    const cJSON *refs = cJSON_GetObjectItemCaseSensitive(md, "secret_refs");
    const char *ref = api_json_str(refs, "webhook-secret");
    int out = 0;
    if (ref) {
        if (!w->secrets) {
            http_resp_error(resp, 503, "SECRETS_UNAVAILABLE", "the secrets backend is unavailable");
            out = -1;
        } else {
            out = kit_secret_get(w, ref, val, len, 404, "USER_NOT_FOUND", MSG_NOT_FOUND, resp) == 0
                      ? 1
                      : -1;
        }
    }
    cJSON_Delete(md);
    store_connector_free(&row);
    return out;
}

/* The per-user rate limit (NETDATA_WEBHOOK_RATE_LIMIT_MINUTE), the same on
 * every replica (store_rate_take); 0, or -1 with a 429 (or 503) in resp. */
static int rate_limited(worker_ctx *w, const kit_tenant *t, http_response *resp)
{
    int64_t limit = server_setting_int(w->cfg, "NETDATA_WEBHOOK_RATE_LIMIT_MINUTE");
    char key[2 * STORE_ID_LEN + 32];
    snprintf(key, sizeof(key), "wh:netdata:%s:%s", t->org_id, t->user_id);
    return api_rate_take(w, key, limit > 0 ? limit : 1, 60,
                         "Netdata notifications for this user", NULL, resp);
}

/* The kit's keys callback: the URL's tenant, Netdata's Bearer token when
 * the user configured a webhook secret, then the user's rate limit (after
 * authentication: forged requests must not use up a user's quota). */
static int wh_keys(worker_ctx *w, const http_request *req, kit_wh_keys *out, http_response *resp)
{
    kit_tenant t;
    if (kit_tenant_resolve(w, NETDATA_ID, req, http_param(req, "user_id"), KIT_TENANT_CONNECTED,
                           MSG_NOT_FOUND, &t, resp) < 0)
        return -1;
    unsigned char *sec = NULL;
    size_t len = 0;
    int rc = webhook_secret(w, t.org_id, t.user_id, &sec, &len, resp);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        const char *authz = http_header_get(req, "authorization");
        const char *tok = authz && !strncasecmp(authz, "Bearer ", 7) ? authz + 7 : NULL;
        int ok = tok && crypto_secret_equal(tok, strlen(tok), sec, len);
        secrets_free(sec, len);
        if (!ok) {
            http_resp_error(resp, 401, tok ? "INVALID_WEBHOOK_TOKEN" : "MISSING_WEBHOOK_TOKEN",
                            "%s", tok ? "Invalid webhook bearer token"
                                      : "Webhook bearer token required: set Authentication "
                                        "Mechanism to Bearer with the webhook secret in Netdata");
            return -1;
        }
    }
    if (rate_limited(w, &t, resp) < 0)
        return -1;
    snprintf(out->org_id, sizeof(out->org_id), "%s", t.org_id);
    snprintf(out->tenant_key, sizeof(out->tenant_key), "%s", t.user_id);
    return 0;
}

static int wh_check(worker_ctx *w, const http_request *req, const cJSON *json, http_response *resp)
{
    (void)w;
    (void)req;
    if (netdata_payload_kind_of(json) == NETDATA_PAYLOAD_UNKNOWN) {
        http_resp_error(resp, 400, "BAD_PAYLOAD",
                        "not a Netdata Cloud notification (an alert with alert and severity "
                        "warning|critical|clear, a reachability notification, or a test)");
        return -1;
    }
    return 0;
}

static int wh_process(worker_ctx *w, const store_webhook_delivery *d, char *err, size_t errlen)
{
    cJSON *j = cJSON_ParseWithLength(d->body, d->body_len);
    netdata_alert na;
    if (!j || netdata_alert_from(j, d->id, &na) < 0) {
        cJSON_Delete(j);
        return KIT_WH_IGNORED; /* a test notification: stored, nothing to correlate */
    }
    na.alert.occurred_at = kit_webhook_occurred_at(d, na.alert.occurred_at); /* no date */
    incident_outcome o;
    int rc = incident_ingest(w, d->org_id, d->tenant_key, &na.alert, (int64_t)time(NULL), &o, err,
                             errlen);
    cJSON_Delete(j);
    return rc < 0 ? KIT_WH_FAILED : KIT_WH_PROCESSED;
}

static const kit_webhook_spec netdata_webhook = {
    .connector = NETDATA_ID,
    .max_body = NETDATA_WH_MAX_BODY,
    .policy = KIT_WH_UNSIGNED, /* the Bearer token is checked in wh_keys */
    .event_json = "severity",
    .require_json_object = 1,
    .content_type = "application/json",
    .keys = wh_keys,
    .check = wh_check,
    .process = wh_process,
};

/* ---- routes ---------------------------------------------------------------------------------- */

static void webhook_post(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_webhook_handle(w, &netdata_webhook, req, resp);
}

/* Netdata's challenge when the integration is created or updated. */
static void webhook_challenge(worker_ctx *w, http_request *req, http_response *resp)
{
    char crc[NETDATA_CRC_TOKEN_MAX + 2] = "";
    if (!http_query_get(req, "crc_token", crc, sizeof(crc)) || !crc[0] ||
        strlen(crc) > NETDATA_CRC_TOKEN_MAX) {
        http_resp_error(resp, 400, "BAD_REQUEST", "crc_token (1-%d characters) is required",
                        NETDATA_CRC_TOKEN_MAX);
        return;
    }
    kit_tenant t;
    if (kit_tenant_resolve(w, NETDATA_ID, req, http_param(req, "user_id"), KIT_TENANT_CONNECTED,
                           MSG_NOT_FOUND, &t, resp) < 0)
        return;
    unsigned char *sec = NULL;
    size_t len = 0;
    int rc = webhook_secret(w, t.org_id, t.user_id, &sec, &len, resp);
    if (rc < 0)
        return;
    if (rc == 0) {
        http_resp_error(resp, 409, "WEBHOOK_SECRET_NOT_CONFIGURED",
                        "Webhook signing secret not configured: connect Netdata again with a "
                        "webhook_secret (the challenge secret and Bearer token set in Netdata)");
        return;
    }
    char token[NETDATA_RESPONSE_TOKEN_LEN];
    int ok = netdata_crc_response(sec, len, crc, token) == 0;
    secrets_free(sec, len);
    if (!ok) {
        http_resp_error(resp, 500, "INTERNAL", "cannot compute the challenge response");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "response_token", token);
    http_resp_json(resp, 200, o);
}

static long sweep_task(worker_ctx *w)
{
    int done = kit_webhook_process_open(w, &netdata_webhook, SWEEP_BATCH, (int64_t)time(NULL));
    if (done > 0)
        log_info("netdata: recovery sweep processed %d webhook deliveries", done);
    else if (done < 0)
        log_error("netdata: webhook recovery sweep: %s", store_errmsg(w->store));
    return SWEEP_INTERVAL_S;
}

void netdata_webhook_register(void)
{
    if (kit_webhook_register(&netdata_webhook) < 0)
        return; /* logged; the route is not mounted rather than half-working */
    /* Outbound pool: the webhook secret may come from a remote secrets backend. */
    router_add_outbound(HTTP_POST, "/netdata/webhook/{user_id}", ROUTE_PUBLIC, webhook_post);
    router_add_outbound(HTTP_GET, "/netdata/webhook/{user_id}", ROUTE_PUBLIC, webhook_challenge);
    if (periodic_add("netdata-webhook-sweep", WORKER_POOL_STORE, 0, sweep_task) < 0)
        log_error("netdata: cannot register the webhook recovery sweep (periodic table full)");
}
