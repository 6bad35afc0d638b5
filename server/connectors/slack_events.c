/* slack_events.c — Slack's Events API endpoint (api.slack.com "Using the
 * Slack Events API", "Verifying requests from Slack"), on the connector kit:
 *
 *   POST /slack/events   public: the signature is the credential.  X-Slack-Signature
 *                        = "v0=" + hex HMAC-SHA256(SLACK_SIGNING_SECRET,
 *                        "v0:" + X-Slack-Request-Timestamp + ":" + raw body), the
 *                        timestamp within 5 minutes; then the body (a JSON object) is
 *                        committed before the 200, so Slack's 3-second deadline is
 *                        met by one insert.  A retry (X-Slack-Retry-Num) carries the
 *                        same event_id: 200 again, nothing stored twice.
 *                        url_verification is answered with its challenge.
 *   GET /api/slack/events[/{event_id}]   the organization's stored events
 *
 * The tenant is the event's team_id: the organization whose Slack connection
 * is that workspace.  An event of a workspace not (yet) connected is stored
 * without an organization, keyed by its team_id, and assigned when that
 * workspace connects (slack_events_adopt); url_verification and the events
 * of workspaces never connected are deleted after
 * AURORA_WEBHOOK_UNASSIGNED_RETENTION_DAYS.  Processing
 * records what came: app_mention and message events are kept for the
 * investigation service (which answers through POST /internal/chat/messages);
 * bot messages, edits and other subtypes are ignored, so the bot never
 * answers itself. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api_util.h"
#include "kit_chat.h"
#include "kit_webhook.h"
#include "log.h"
#include "periodic.h"
#include "router.h"
#include "slack.h"

#define SWEEP_INTERVAL_S 30
#define SWEEP_BATCH 50

static int events_keys(worker_ctx *w, const http_request *req, kit_wh_keys *out,
                       http_response *resp)
{
    (void)req;
    (void)resp;
    const char *s = server_setting(w->cfg, "SLACK_SIGNING_SECRET");
    if (s && *s && kit_wh_keys_add(out, s, strlen(s)) < 0) {
        http_resp_error(resp, 500, "SLACK_MISCONFIGURED", "SLACK_SIGNING_SECRET is unusable");
        return -1;
    }
    return 0; /* none: the kit answers 401 with msg_not_configured */
}

/* The shape of Slack's envelopes: a type, and for event_callback a team and
 * an event object (the rest is Slack's to extend). */
static int events_check(worker_ctx *w, const http_request *req, const cJSON *json,
                        http_response *resp)
{
    (void)w;
    (void)req;
    const char *type = api_json_str(json, "type");
    if (!type) {
        http_resp_error(resp, 400, "BAD_PAYLOAD", "not a Slack Events API request: no type");
        return -1;
    }
    if (!strcmp(type, "url_verification")) {
        const char *c = api_json_str(json, "challenge");
        char err[64];
        if (!c || api_check_chars(c, "challenge", 1, 256, err, sizeof(err)) < 0) {
            http_resp_error(resp, 400, "BAD_PAYLOAD", "url_verification without a usable challenge");
            return -1;
        }
        return 0;
    }
    if (!strcmp(type, "event_callback")) {
        if (!slack_id_ok(api_json_str(json, "team_id")) ||
            !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(json, "event")) ||
            !api_json_str(json, "event_id")) {
            http_resp_error(resp, 400, "BAD_PAYLOAD",
                            "event_callback needs team_id, event_id and an event object");
            return -1;
        }
    }
    return 0;
}

static int events_org(worker_ctx *w, const store_webhook_delivery *d, const cJSON *json,
                      char org_id[STORE_ID_LEN])
{
    (void)d;
    return slack_team_org(w, api_json_str(json, "team_id"), org_id);
}

/* What events_org resolves: the workspace (url_verification names none). */
static void events_adopt_key(const store_webhook_delivery *d, const cJSON *json,
                             char key[STORE_WEBHOOK_KEY_LEN])
{
    (void)d;
    const char *team = api_json_str(json, "team_id");
    if (slack_id_ok(team))
        snprintf(key, STORE_WEBHOOK_KEY_LEN, "%s", team);
}

static int events_process(worker_ctx *w, const store_webhook_delivery *d, char *err,
                          size_t errlen)
{
    cJSON *json = cJSON_ParseWithLength(d->body, d->body_len);
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(json, "event");
    const char *type = api_json_str(ev, "type");
    int out = KIT_WH_IGNORED;
    if (!json) {
        snprintf(err, errlen, "stored body is not JSON");
        return KIT_WH_FAILED;
    }
    if (type && (!strcmp(type, "app_mention") || !strcmp(type, "message")) &&
        !api_json_str(ev, "bot_id") && !api_json_str(ev, "subtype")) {
        const char *channel = api_json_str(ev, "channel");
        const char *thread = api_json_str(ev, "thread_ts");
        char inc[STORE_ID_LEN] = "";
        if (slack_id_ok(channel) && thread &&
            kit_chat_thread_incident(w, d->org_id, SLACK_ID, channel, thread, inc) == STORE_ERR) {
            snprintf(err, errlen, "state store unavailable");
            cJSON_Delete(json);
            return KIT_WH_FAILED;
        }
        log_info("slack: %s in %s%s%s recorded (event %s)", type, slack_id_ok(channel) ? channel : "?",
                 inc[0] ? " about incident " : "", inc, d->id);
        out = KIT_WH_PROCESSED;
    }
    cJSON_Delete(json);
    return out;
}

/* url_verification: Slack expects the challenge back (JSON or plain text). */
static void events_ack(const store_webhook_delivery *d, int duplicate, const http_request *req,
                       http_response *resp)
{
    cJSON *json = cJSON_ParseWithLength(buf_head(&req->body), buf_pending(&req->body));
    const char *type = api_json_str(json, "type");
    cJSON *o = cJSON_CreateObject();
    if (type && !strcmp(type, "url_verification"))
        cJSON_AddStringToObject(o, "challenge", api_json_str(json, "challenge"));
    else {
        cJSON_AddBoolToObject(o, "ok", 1);
        cJSON_AddStringToObject(o, "id", d->id);
        cJSON_AddBoolToObject(o, "duplicate", duplicate);
    }
    cJSON_Delete(json);
    http_resp_json(resp, 200, o);
}

static const kit_webhook_spec slack_events = {
    .connector = SLACK_ID,
    .max_body = 1024 * 1024,
    .policy = KIT_WH_SIGNED,
    .signature_header = "x-slack-signature",
    .signature_prefix = "v0=",
    .encoding = KIT_WH_HEX,
    .signed_template = "v0:{ts}:{body}",
    .timestamp_header = "x-slack-request-timestamp",
    .replay_window_s = 300,
    .delivery_id_json = "event_id",
    .event_json = "event.type",
    .action_json = "type",
    .require_json_object = 1,
    .content_type = "application/json",
    /* Slack's legacy verification token rides in every Events API body:
     * the signing secret is what is checked, the token is not stored */
    .secret_fields = (const char *const[]){ "token", NULL },
    .keys = events_keys,
    .check = events_check,
    .resolve_org = events_org,
    .adopt_key = events_adopt_key,
    .process = events_process,
    .ack = events_ack,
    .msg_not_configured = "Slack signing secret not configured: set SLACK_SIGNING_SECRET (Basic "
                          "Information > Signing Secret) and restart Aurora",
};

void slack_events_adopt(worker_ctx *w, const char *team_id)
{
    int n = kit_webhook_adopt_key(w, &slack_events, team_id);
    if (n < 0)
        log_warn("slack: assigning the events received before workspace %s was connected "
                 "failed; the events sweep retries", team_id);
    if (n > 0)
        log_info("slack: %d events received before their workspace was connected are now assigned",
                 n);
}

/* Recovery: an event committed right before a crash, or whose processing
 * failed, is processed here; unassigned events are pruned and, after a
 * restart or a failed adoption, adopted (kit_webhook_maintain). */
static long sweep_task(worker_ctx *w)
{
    int64_t now = (int64_t)time(NULL);
    int done = kit_webhook_process_open(w, &slack_events, SWEEP_BATCH, now);
    if (done < 0 || kit_webhook_maintain(w, &slack_events, now) < 0)
        log_error("slack: events recovery sweep: %s", store_errmsg(w->store));
    return SWEEP_INTERVAL_S;
}

static void events_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_webhook_handle(w, &slack_events, req, resp);
}

static void list_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_webhook_list_events(w, SLACK_ID, req, resp);
}

static void get_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_webhook_get_event(w, SLACK_ID, http_param(req, "event_id"), req, resp);
}

void slack_events_register(void)
{
    if (kit_webhook_register(&slack_events) < 0)
        return; /* logged; not mounted rather than half-working */
    router_add(HTTP_POST, "/slack/events", ROUTE_PUBLIC, events_route);
    router_add(HTTP_GET, "/api/slack/events", ROUTE_AUTH_API, list_route);
    router_add(HTTP_GET, "/api/slack/events/{event_id}", ROUTE_AUTH_API, get_route);
    if (periodic_add("slack-events-sweep", WORKER_POOL_STORE, 5, sweep_task) < 0)
        log_error("slack: cannot register the events recovery sweep (periodic table full)");
}
