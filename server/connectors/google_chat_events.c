/* google_chat_events.c — POST /google-chat/events: the interaction events
 * Google Chat posts to the Chat app's HTTP endpoint (MESSAGE, ADDED_TO_SPACE,
 * REMOVED_FROM_SPACE, CARD_CLICKED; developers.google.com/workspace/chat/
 * api/reference/rest/v1/Event), answered synchronously with a message as
 * Chat expects ("Receive and respond to interaction events").
 *
 * Authentication ("Verify requests from Google Chat"): every request carries
 * Authorization: Bearer <JWT signed by Google>.  Verified with jwt_verify.h
 * before the body is read:
 *   - a token issued by chat@system.gserviceaccount.com, checked against the
 *     certificates at GOOGLE_CHAT_CERTS_URL ({kid: X.509 PEM});
 *   - or a Google OIDC ID token (iss https://accounts.google.com) whose
 *     email is chat@system.gserviceaccount.com (email_verified), checked
 *     against GOOGLE_CHAT_OIDC_CERTS_URL (JWKS) — what Chat sends when the
 *     Authentication Audience is the HTTP endpoint URL;
 * either way aud must be this endpoint's URL (GOOGLE_CHAT_AUDIENCE, else
 * AURORA_PUBLIC_URL + /google-chat/events or, an https FRONTEND_URL being
 * set, FRONTEND_URL + /google-chat/events: the guide's tunnel to the
 * frontend, which forwards the path here), RS256 only, exp/iat checked.
 * Anything else is a 401 and nothing is stored.
 *
 * Then the kit (kit_webhook.h, policy KIT_WH_UNSIGNED: the bearer check
 * above is the credential, done in the spec's keys callback) caps the size,
 * persists the event before answering, and answers a redelivery of the same
 * body as a duplicate without storing it again.  Tenant: the event's
 * space.name → the organization whose connection created that space;
 * another space is stored unassigned (keyed by its name) and adopted when a
 * connection names it, or deleted after AURORA_WEBHOOK_UNASSIGNED_RETENTION_DAYS.
 *
 * The event row says verified=false: the kit's flag is about HMAC
 * signatures; the events API adds "authenticated": "google_jwt" instead. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_util.h"
#include "google_chat.h"
#include "jwt.h"
#include "jwt_verify.h"
#include "kit_chat.h"
#include "kit_secrets.h"
#include "kit_webhook.h"
#include "log.h"
#include "periodic.h"
#include "router.h"

#define MAX_BODY (256 * 1024)
#define OIDC_ISSUER "https://accounts.google.com"

static jwt_certs g_chat_certs = JWT_CERTS_INIT; /* chat@system's x509 certificates */
static jwt_certs g_oidc_certs = JWT_CERTS_INIT; /* Google's OIDC keys */

/* The worker running the current request, for the ack callback (which the
 * kit calls on the same thread, without a worker). */
static _Thread_local worker_ctx *tl_worker;

static const char *const g_types[] = { "MESSAGE", "ADDED_TO_SPACE", "REMOVED_FROM_SPACE",
                                       "CARD_CLICKED", NULL };

/* ---- the bearer token ------------------------------------------------------------------- */

/* The configured URL (gchat_event_audiences) the unverified token names
 * as its audience, else the first: the one the token is then verified
 * against, so a token for any other endpoint still fails on aud. */
static const char *audience_claimed(const cJSON *claims, char urls[2][GCHAT_AUD_MAX], int n)
{
    const cJSON *aud = cJSON_GetObjectItemCaseSensitive(claims, "aud");
    for (int i = 0; i < n; i++) {
        if (cJSON_IsString(aud) && !strcmp(aud->valuestring, urls[i]))
            return urls[i];
        const cJSON *e;
        if (cJSON_IsArray(aud))
            cJSON_ArrayForEach(e, aud)
            {
                if (cJSON_IsString(e) && !strcmp(e->valuestring, urls[i]))
                    return urls[i];
            }
    }
    return urls[0];
}

static void refuse(const http_request *req, http_response *resp, int status, const char *code,
                   const char *why, const char *aud)
{
    log_warn("google_chat: event from %s refused: %s", http_client(req), why);
    if (status == 401)
        http_resp_error(resp, 401, code,
                        "Event verification failed (%s): ensure the Chat app's Authentication "
                        "Audience is set to HTTP endpoint URL and the URL matches %s",
                        why, aud && *aud ? aud : "your events endpoint");
    else
        http_resp_error(resp, status, code, "%s", why);
}

/* 0 when the request carries a valid Google Chat token, else -1 with resp. */
static int verify_bearer(worker_ctx *w, const http_request *req, http_response *resp)
{
    char urls[2][GCHAT_AUD_MAX];
    int n = gchat_event_audiences(w, urls);
    if (n == 0) {
        refuse(req, resp, 503, "GOOGLE_CHAT_AUDIENCE_NOT_CONFIGURED",
               "set AURORA_PUBLIC_URL (or GOOGLE_CHAT_AUDIENCE, or FRONTEND_URL to the https URL "
               "of a frontend that forwards /google-chat/events) to the URL Google Chat posts "
               "events to", NULL);
        return -1;
    }
    const char *h = http_header_get(req, "authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0 || !h[7]) {
        refuse(req, resp, 401, "MISSING_TOKEN", "no bearer token", urls[0]);
        return -1;
    }
    const char *token = h + 7;
    /* Which of Google's two token kinds this claims to be decides the keys
     * and issuer it is checked against, and which configured URL its
     * audience; every claim is then verified. */
    cJSON *peek = jwt_unverified_claims(token);
    const char *aud = audience_claimed(peek, urls, n);
    const char *iss = api_json_str(peek, "iss");
    int oidc = iss && (!strcmp(iss, OIDC_ISSUER) || !strcmp(iss, "accounts.google.com"));
    jwt_verify_opts o = {
        .certs_url = server_setting(w->cfg, oidc ? "GOOGLE_CHAT_OIDC_CERTS_URL" : "GOOGLE_CHAT_CERTS_URL"),
        .issuer = oidc ? iss : GCHAT_EVENT_ISSUER,
        .audience = aud,
        .now = (int64_t)time(NULL),
        .refetch_min_s = (int)server_setting_int(w->cfg, "GOOGLE_CHAT_CERTS_REFETCH_S"),
        .timeout_ms = gchat_timeout_ms(w),
    };
    char issuer[64];
    snprintf(issuer, sizeof(issuer), "%s", o.issuer);
    o.issuer = issuer;
    cJSON_Delete(peek);
    cJSON *claims = NULL;
    char err[300];
    jwt_verify_result r = jwt_verify_rs256(oidc ? &g_oidc_certs : &g_chat_certs, token, &o,
                                           &claims, err, sizeof(err));
    if (r == JWT_OK && oidc) {
        const char *email = api_json_str(claims, "email");
        if (!email || strcmp(email, GCHAT_EVENT_ISSUER) ||
            !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(claims, "email_verified"))) {
            r = JWT_BAD_ISSUER;
            snprintf(err, sizeof(err), "ID token is not Google Chat's (email)");
        }
    }
    cJSON_Delete(claims);
    if (r == JWT_OK)
        return 0;
    char why[400];
    snprintf(why, sizeof(why), "%s: %s", jwt_verify_result_name(r), err);
    if (r == JWT_CERTS_UNAVAILABLE)
        refuse(req, resp, 503, "GOOGLE_CHAT_CERTS_UNAVAILABLE", why, aud);
    else
        refuse(req, resp, 401, "INVALID_TOKEN", why, aud);
    return -1;
}

/* ---- the kit's callbacks ------------------------------------------------------------------ */

static const char *space_of(const cJSON *json)
{
    return api_json_str(cJSON_GetObjectItemCaseSensitive(json, "space"), "name");
}

/* keys: the bearer check, then the tenant from the (now authenticated) body. */
static int events_keys(worker_ctx *w, const http_request *req, kit_wh_keys *out,
                       http_response *resp)
{
    if (verify_bearer(w, req, resp) < 0)
        return -1;
    cJSON *json = cJSON_ParseWithLength(buf_head(&req->body), buf_pending(&req->body));
    const char *space = space_of(json);
    char org[STORE_ID_LEN] = "";
    int rc = space ? gchat_space_org(w, space, org, NULL) : STORE_NOT_FOUND;
    if (rc == STORE_OK)
        snprintf(out->org_id, sizeof(out->org_id), "%s", org);
    else if (rc < 0)
        log_warn("google_chat: space lookup failed; event kept without an organization");
    cJSON_Delete(json);
    return 0;
}

static int events_check(worker_ctx *w, const http_request *req, const cJSON *json,
                        http_response *resp)
{
    (void)w;
    (void)req;
    const char *type = api_json_str(json, "type");
    int known = 0;
    for (size_t i = 0; type && g_types[i]; i++)
        known |= !strcmp(type, g_types[i]);
    if (!known) {
        http_resp_error(resp, 400, "BAD_EVENT_TYPE",
                        "Google Chat event type must be MESSAGE, ADDED_TO_SPACE, "
                        "REMOVED_FROM_SPACE or CARD_CLICKED");
        return -1;
    }
    if (!gchat_space_name_ok(space_of(json))) {
        http_resp_error(resp, 400, "BAD_PAYLOAD", "Google Chat event without a valid space.name");
        return -1;
    }
    return 0;
}

static int events_resolve_org(worker_ctx *w, const store_webhook_delivery *d, const cJSON *json,
                              char org[STORE_ID_LEN])
{
    (void)d;
    return gchat_space_org(w, space_of(json), org, NULL);
}

/* What events_resolve_org resolves: the space's name. */
static void events_adopt_key(const store_webhook_delivery *d, const cJSON *json,
                             char key[STORE_WEBHOOK_KEY_LEN])
{
    (void)d;
    const char *space = space_of(json);
    if (gchat_space_name_ok(space))
        snprintf(key, STORE_WEBHOOK_KEY_LEN, "%s", space);
}

/* Processing: the app's membership of the space, as Chat reports it, goes
 * into the connection (status shows it); other events are kept for the
 * investigation service (events API). */
static int events_process(worker_ctx *w, const store_webhook_delivery *d, char *err, size_t errlen)
{
    int added = !strcmp(d->event, "ADDED_TO_SPACE"), removed = !strcmp(d->event, "REMOVED_FROM_SPACE");
    if (!added && !removed)
        return KIT_WH_PROCESSED;
    cJSON *json = cJSON_ParseWithLength(d->body, d->body_len);
    store_connector row;
    cJSON *md = NULL;
    int rc = gchat_org_connection(w, d->org_id, &row, &md);
    int out = KIT_WH_IGNORED;
    if (rc == STORE_OK && space_of(json) && !strcmp(space_of(json), api_json_str(md, "space_name"))) {
        cJSON_DeleteItemFromObjectCaseSensitive(md, "app_member");
        cJSON_DeleteItemFromObjectCaseSensitive(md, "app_member_error");
        cJSON_AddBoolToObject(md, "app_member", added);
        http_response scratch;
        memset(&scratch, 0, sizeof(scratch));
        out = kit_row_save_meta(w, &row, md, &scratch) == 0 ? KIT_WH_PROCESSED : KIT_WH_FAILED;
        if (out == KIT_WH_FAILED)
            snprintf(err, errlen, "saving the connection failed");
        buf_free(&scratch.body);
    } else if (rc < 0) {
        snprintf(err, errlen, "state store unavailable");
        out = KIT_WH_FAILED;
    }
    if (rc == STORE_OK) {
        cJSON_Delete(md);
        store_connector_free(&row);
    }
    cJSON_Delete(json);
    return out;
}

/* FRONTEND_URL + /incidents/<id> ("" without FRONTEND_URL). */
static void incident_link(const worker_ctx *w, const char *incident_id, char *out, size_t cap)
{
    const char *fe = w ? server_setting(w->cfg, "FRONTEND_URL") : NULL;
    out[0] = '\0';
    if (!fe || strlen(fe) + strlen(incident_id) + 16 > cap)
        return;
    size_t n = strlen(fe);
    while (n > 0 && fe[n - 1] == '/')
        n--;
    snprintf(out, cap, "%.*s/incidents/%s", (int)n, fe, incident_id);
}

/* A card with one openLink button (Chat's synchronous message answer). */
static void add_link_card(cJSON *msg, const char *title, const char *button, const char *url)
{
    cJSON *cards = cJSON_AddArrayToObject(msg, "cardsV2");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "cardId", "aurora-link");
    cJSON *card = cJSON_AddObjectToObject(c, "card");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(card, "header"), "title", title);
    cJSON *sec = cJSON_CreateObject();
    cJSON *w = cJSON_CreateObject();
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "text", button);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(cJSON_AddObjectToObject(b, "onClick"),
                                                    "openLink"), "url", url);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(cJSON_AddObjectToObject(w, "buttonList"),
                                                "buttons"), b);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(sec, "widgets"), w);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(card, "sections"), sec);
    cJSON_AddItemToArray(cards, c);
}

/* The synchronous answer Chat shows in the space (same for a redelivery). */
static void events_ack(const store_webhook_delivery *d, int duplicate, const http_request *req,
                       http_response *resp)
{
    (void)duplicate;
    cJSON *msg = cJSON_CreateObject();
    int connected = d->org_id[0] != '\0';
    if (!strcmp(d->event, "ADDED_TO_SPACE")) {
        cJSON_AddStringToObject(msg, "text",
                                connected
                                    ? "Hi, I'm Aurora. Incident notifications for your organization "
                                      "will be posted in this space, one thread per incident."
                                    : "Hi, I'm Aurora. This space is not connected to an Aurora "
                                      "organization yet: connect Google Chat in Aurora (Connectors "
                                      "> Google Chat) to receive incidents here.");
    } else if (!strcmp(d->event, "MESSAGE")) {
        cJSON_AddStringToObject(msg, "text",
                                connected ? "Got it: Aurora recorded your message for the "
                                            "investigation."
                                          : "Aurora received your message, but this space is not "
                                            "connected to an Aurora organization.");
        /* An @mention inside an incident's thread links back to it. */
        /* the request's body: the delivery handed to ack carries none */
        cJSON *json = cJSON_ParseWithLength(buf_head(&req->body), buf_pending(&req->body));
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(json, "message");
        const char *thread = api_json_str(cJSON_GetObjectItemCaseSensitive(m, "thread"), "name");
        char incident[STORE_ID_LEN], link[1024];
        if (connected && thread && tl_worker &&
            kit_chat_thread_incident(tl_worker, d->org_id, GCHAT_ID, space_of(json), thread,
                                     incident) ==
                STORE_OK) {
            incident_link(tl_worker, incident, link, sizeof(link));
            if (link[0])
                add_link_card(msg, "Incident investigation", "View Investigation", link);
        }
        cJSON_Delete(json);
    } else if (!strcmp(d->event, "CARD_CLICKED")) {
        cJSON_AddStringToObject(cJSON_AddObjectToObject(msg, "actionResponse"), "type",
                                "NEW_MESSAGE");
        cJSON_AddStringToObject(msg, "text", "Aurora recorded your action.");
    }
    /* REMOVED_FROM_SPACE: Chat ignores the answer; an empty message. */
    http_resp_json(resp, 200, msg);
}

static void annotate(const store_webhook_delivery *d, cJSON *o)
{
    (void)d;
    cJSON_AddStringToObject(o, "authenticated", "google_jwt");
}

static const kit_webhook_spec g_events = {
    .connector = GCHAT_ID,
    .max_body = MAX_BODY,
    .policy = KIT_WH_UNSIGNED,
    .event_json = "type",
    .action_json = "common.invokedFunction",
    .require_json_object = 1,
    .content_type = "application/json",
    /* Google Chat's legacy verification token (apps set up before bearer
     * tokens): the header's bearer token is what is checked; not stored */
    .secret_fields = (const char *const[]){ "token", NULL },
    .keys = events_keys,
    .check = events_check,
    .resolve_org = events_resolve_org,
    .adopt_key = events_adopt_key,
    .process = events_process,
    .ack = events_ack,
};

/* ---- routes ---------------------------------------------------------------------------------- */

static void events_route(worker_ctx *w, http_request *req, http_response *resp)
{
    tl_worker = w;
    kit_webhook_handle(w, &g_events, req, resp);
    tl_worker = NULL;
}

static void list_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_webhook_list_events_ex(w, GCHAT_ID, annotate, req, resp);
}

static void get_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_webhook_get_event_ex(w, GCHAT_ID, annotate, http_param(req, "event_id"), req, resp);
}

void gchat_events_adopt(worker_ctx *w, const char *space)
{
    int n = kit_webhook_adopt_key(w, &g_events, space);
    if (n < 0)
        log_warn("google_chat: assigning the events received before %s was connected failed; "
                 "the events sweep retries", space);
    if (n > 0)
        log_info("google_chat: %d earlier event(s) assigned to their organization", n);
}

/* The recovery sweep: events committed right before a crash, or while the
 * processing queue was full; unassigned events pruned and, after a restart
 * or a failed adoption, adopted (kit_webhook_maintain). */
static long sweep_task(worker_ctx *w)
{
    int64_t now = (int64_t)time(NULL);
    int done = kit_webhook_process_open(w, &g_events, 100, now);
    if (done > 0)
        log_info("google_chat: recovery sweep processed %d event(s)", done);
    if (kit_webhook_maintain(w, &g_events, now) < 0)
        log_error("google_chat: events adoption sweep: %s", store_errmsg(w->store));
    return 30;
}

void gchat_events_register(void)
{
    kit_webhook_register(&g_events);
    /* Outbound pool: the first event (and a key rotation) fetches Google's
     * certificates. */
    router_add_outbound(HTTP_POST, "/google-chat/events", ROUTE_PUBLIC, events_route);
    router_add(HTTP_GET, "/api/google_chat/events", ROUTE_AUTH_API, list_route);
    router_add(HTTP_GET, "/api/google_chat/events/{event_id}", ROUTE_AUTH_API, get_route);
    periodic_add("google-chat-events-sweep", WORKER_POOL_STORE, 2, sweep_task);
}
