/* slack_api.c — the Slack connector's Web API calls (api.slack.com/methods):
 *
 *   GET  /slack/channels        the workspace's public channels
 *                               (conversations.list, types=public_channel,
 *                               cursor pagination, at most SLACK_MAX_CHANNEL_PAGES)
 *   POST /slack/channel         {channel_id}: the channel incidents are posted to,
 *                               checked with conversations.info and joined
 *                               (conversations.join: the bot must be a member
 *                               to post) before it is kept in the connection
 *
 * and the chat kit's send (kit_chat.h): chat.postMessage of an incident
 * message (text + Block Kit section with severity, service and a "View
 * Investigation" button), as a reply (thread_ts) once the incident has a
 * thread.  Slack's 429 carries Retry-After: the message waits that long in
 * the outbox.  Slack answers most errors as HTTP 200 {"ok": false}: errors
 * that will not heal by waiting (channel_not_found, is_archived, revoked
 * tokens, missing scopes) drop the message with that reason. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_util.h"
#include "http_client.h"
#include "kit_chat.h"
#include "kit_secrets.h"
#include "log.h"
#include "router.h"
#include "secret.h"
#include "slack.h"
#include "utf8.h"

#define SLACK_MAX_CHANNEL_PAGES 20
#define SLACK_CHANNELS_PER_PAGE 200

/* ---- one method ----------------------------------------------------------------------- */

static int auth_error(const char *e)
{
    static const char *const words[] = { "not_authed", "invalid_auth", "account_inactive",
                                         "token_revoked", "token_expired", "no_permission",
                                         "missing_scope", "not_allowed_token_type", NULL };
    for (size_t i = 0; words[i]; i++)
        if (!strcmp(e, words[i]))
            return 1;
    return 0;
}

int slack_call(worker_ctx *w, const char *token, const char *method, const char *query,
               const char *json_body, int max_attempts, kit_call_resp *r, cJSON **out,
               char slack_error[64])
{
    memset(r, 0, sizeof(*r));
    *out = NULL;
    slack_error[0] = '\0';
    const char *base = slack_api_base(w, NULL);
    char path[1024];
    if (!base || snprintf(path, sizeof(path), "/%s%s%s", method, query ? "?" : "",
                          query ? query : "") >= (int)sizeof(path)) {
        snprintf(r->err, sizeof(r->err), "SLACK_API_BASE_URL is not usable");
        r->code = AUR_E_INVALID;
        return r->code;
    }
    char *url = kit_url(base, path);
    if (!url) {
        snprintf(r->err, sizeof(r->err), "out of memory");
        r->code = AUR_E_INTERNAL;
        return r->code;
    }
    const char *json_headers[] = { "Content-Type: application/json; charset=utf-8", NULL };
    kit_call_req q = {
        .provider = "Slack",
        .base_url = base,
        .method = json_body || !query ? "POST" : "GET",
        .url = url,
        .headers = json_body ? json_headers : NULL,
        .bearer = token,
        .body = json_body,
        .body_len = json_body ? strlen(json_body) : 0,
        .attempt_timeout_ms = slack_timeout_ms(w),
        .max_attempts = max_attempts,
        .max_response = 4 * 1024 * 1024,
    };
    int rc = kit_call(&q, r);
    free(url);
    if (rc != AUR_OK)
        return rc;
    cJSON *j = kit_call_json(r);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        snprintf(r->err, sizeof(r->err), "Slack answered something that is not a JSON object");
        r->code = AUR_E_INTERNAL;
        return r->code;
    }
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "ok"))) {
        const char *e = api_json_str(j, "error");
        char err[64];
        snprintf(slack_error, 64, "%s",
                 e && api_check_chars(e, "error", 1, 60, err, sizeof(err)) == 0 ? e : "unknown");
        cJSON_Delete(j);
        snprintf(r->err, sizeof(r->err), "Slack refused %s: %s", method, slack_error);
        r->code = auth_error(slack_error) ? AUR_E_DENIED : AUR_E_INVALID;
        return r->code;
    }
    *out = j;
    return AUR_OK;
}

/* A method's failure as the API's answer. */
static void call_failed(const kit_call_resp *r, const char *serr, const char *what,
                        http_response *resp)
{
    if (serr[0]) {
        int gone = !strcmp(serr, "channel_not_found") || !strcmp(serr, "is_archived");
        int auth = auth_error(serr);
        http_resp_error(resp, gone ? 404 : auth ? 403 : 400,
                        gone ? "SLACK_CHANNEL_NOT_FOUND" : auth ? "SLACK_DENIED" : "SLACK_REFUSED",
                        "%s: Slack answered %s%s", what, serr,
                        !strcmp(serr, "missing_scope")
                            ? " (add the guide's Bot Token Scopes and reinstall the app)"
                            : auth ? " (connect Slack again)" : "");
        return;
    }
    kit_call_error(&slack_api_errors, r, what, 0, NULL, resp);
}

/* The caller's connection and bot token; 0, or -1 with resp. */
static int caller_token(worker_ctx *w, const auth_ctx *who, store_connector *row, cJSON **md,
                        char **token, http_response *resp)
{
    *token = NULL;
    if (connector_require_user(who, resp) < 0 ||
        kit_row_load(w, who, SLACK_ID, row, md,
                     "Slack is not connected for this user: connect with Slack first",
                     resp) < 0)
        return -1;
    *token = slack_bot_token(w, row, resp);
    if (!*token) {
        cJSON_Delete(*md);
        *md = NULL;
        store_connector_free(row);
        return -1;
    }
    return 0;
}

/* ---- channels ------------------------------------------------------------------------------ */

static cJSON *channel_json(const cJSON *c)
{
    const char *id = api_json_str(c, "id"), *name = api_json_str(c, "name");
    char err[64];
    if (!slack_id_ok(id) || !name || api_check_text(name, "name", 1, 255, err, sizeof(err)) < 0)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddBoolToObject(o, "is_member", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "is_member")));
    cJSON_AddBoolToObject(o, "is_archived",
                          cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "is_archived")));
    return o;
}

static void channels_route(worker_ctx *w, http_request *req, http_response *resp)
{
    store_connector row;
    cJSON *md = NULL;
    char *token = NULL;
    if (caller_token(w, &req->auth, &row, &md, &token, resp) < 0)
        return;
    cJSON *arr = cJSON_CreateArray();
    char cursor[256] = "";
    int pages = 0, truncated = 0;
    for (;;) {
        char query[512];
        char *esc = http_client_escape(cursor);
        snprintf(query, sizeof(query), "types=public_channel&exclude_archived=true&limit=%d%s%s",
                 SLACK_CHANNELS_PER_PAGE, cursor[0] ? "&cursor=" : "", cursor[0] && esc ? esc : "");
        free(esc);
        kit_call_resp r;
        cJSON *ans = NULL;
        char serr[64];
        int rc = slack_call(w, token, "conversations.list", query, NULL, 0, &r, &ans, serr);
        if (rc != AUR_OK) {
            call_failed(&r, serr, "Listing Slack channels", resp);
            kit_call_resp_free(&r);
            cJSON_Delete(arr);
            arr = NULL;
            break;
        }
        kit_call_resp_free(&r);
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(ans, "channels"))
        {
            cJSON *o = channel_json(c);
            if (o)
                cJSON_AddItemToArray(arr, o);
        }
        const char *next = api_json_str(cJSON_GetObjectItemCaseSensitive(ans, "response_metadata"),
                                        "next_cursor");
        char err[64];
        int more = next && *next && api_check_chars(next, "cursor", 1, 200, err, sizeof(err)) == 0 &&
                   strcmp(next, cursor);
        if (more)
            snprintf(cursor, sizeof(cursor), "%s", next);
        cJSON_Delete(ans);
        if (!more)
            break;
        if (++pages >= SLACK_MAX_CHANNEL_PAGES) {
            truncated = 1;
            break;
        }
    }
    if (arr) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "count", cJSON_GetArraySize(arr));
        cJSON_AddItemToObject(o, "channels", arr);
        cJSON_AddBoolToObject(o, "truncated", truncated);
        const char *chosen = api_json_str(md, "channel_id");
        if (chosen)
            cJSON_AddStringToObject(o, "channel_id", chosen);
        else
            cJSON_AddNullToObject(o, "channel_id");
        http_resp_json(resp, 200, o);
    }
    secret_free(token);
    cJSON_Delete(md);
    store_connector_free(&row);
}

static void channel_route(worker_ctx *w, http_request *req, http_response *resp)
{
    cJSON *body = http_json_body(req, resp);
    if (!body)
        return;
    const char *ch = api_json_str(body, "channel_id");
    if (!ch)
        ch = api_json_str(body, "channel");
    if (!slack_id_ok(ch)) {
        http_resp_error(resp, 400, "BAD_REQUEST",
                        "channel_id must be a Slack channel id (C…, 2-32 letters and digits)");
        cJSON_Delete(body);
        return;
    }
    store_connector row;
    cJSON *md = NULL;
    char *token = NULL;
    if (caller_token(w, &req->auth, &row, &md, &token, resp) < 0) {
        cJSON_Delete(body);
        return;
    }
    char query[96];
    snprintf(query, sizeof(query), "channel=%s", ch);
    kit_call_resp r;
    cJSON *info = NULL, *joined = NULL;
    char serr[64];
    if (slack_call(w, token, "conversations.info", query, NULL, 0, &r, &info, serr) != AUR_OK) {
        call_failed(&r, serr, "Checking the Slack channel", resp);
        goto out;
    }
    kit_call_resp_free(&r);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(info, "channel");
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "is_archived"))) {
        http_resp_error(resp, 409, "SLACK_CHANNEL_ARCHIVED", "that Slack channel is archived");
        memset(&r, 0, sizeof(r));
        goto out;
    }
    char jbody[96];
    snprintf(jbody, sizeof(jbody), "{\"channel\":\"%s\"}", ch);
    if (slack_call(w, token, "conversations.join", NULL, jbody, 1, &r, &joined, serr) != AUR_OK) {
        call_failed(&r, serr, "Joining the Slack channel (channels:join)", resp);
        goto out;
    }
    const char *name = api_json_str(c, "name");
    char err[64];
    cJSON_DeleteItemFromObjectCaseSensitive(md, "channel_id");
    cJSON_DeleteItemFromObjectCaseSensitive(md, "channel_name");
    cJSON_AddStringToObject(md, "channel_id", ch);
    if (name && api_check_text(name, "name", 1, 255, err, sizeof(err)) == 0)
        cJSON_AddStringToObject(md, "channel_name", name);
    if (kit_row_save_meta(w, &row, md, resp) < 0)
        goto out;
    log_info("slack: org %s posts incidents to channel %s", row.org_id, ch);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "provider", SLACK_ID);
    cJSON_AddStringToObject(o, "channel_id", ch);
    if (api_json_str(md, "channel_name"))
        cJSON_AddStringToObject(o, "channel_name", api_json_str(md, "channel_name"));
    cJSON_AddBoolToObject(o, "joined", 1);
    http_resp_json(resp, 200, o);
out:
    kit_call_resp_free(&r);
    cJSON_Delete(info);
    cJSON_Delete(joined);
    secret_free(token);
    cJSON_Delete(md);
    store_connector_free(&row);
    cJSON_Delete(body);
}

/* ---- chat notifications ------------------------------------------------------------------ */

static const char *severity_emoji(const char *s)
{
    if (!strcmp(s, "critical"))
        return ":red_circle:";
    if (!strcmp(s, "high"))
        return ":large_orange_circle:";
    if (!strcmp(s, "medium"))
        return ":large_yellow_circle:";
    return ":white_circle:";
}

/* Slack's mrkdwn needs &, < and > escaped (api.slack.com "Formatting text"). */
static char *mrkdwn_escape(const char *s)
{
    size_t n = 0;
    for (const char *p = s; *p; p++)
        n += *p == '&' ? 5 : (*p == '<' || *p == '>') ? 4 : 1;
    char *o = malloc(n + 1), *q = o;
    if (!o)
        return NULL;
    for (const char *p = s; *p; p++) {
        const char *rep = *p == '&' ? "&amp;" : *p == '<' ? "&lt;" : *p == '>' ? "&gt;" : NULL;
        if (rep) {
            memcpy(q, rep, strlen(rep));
            q += strlen(rep);
        } else {
            *q++ = *p;
        }
    }
    *q = '\0';
    return o;
}

/* Slack refuses a section text over 3000 characters (invalid_blocks): cut
 * in place at a character boundary, with "…", below that. */
#define SLACK_SECTION_MAX 2900
static void fit(char *s)
{
    size_t n = strlen(s);
    if (n <= SLACK_SECTION_MAX && utf8_valid(s, n))
        return;
    size_t k = utf8_complete_prefix(s, n < SLACK_SECTION_MAX ? n : SLACK_SECTION_MAX);
    memcpy(s + k, "\xe2\x80\xa6", 4);
}

/* chat.postMessage's body for m in channel (JSON text, malloc'd). */
static char *post_body(const kit_chat_message *m, const char *channel)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "channel", channel);
    if (m->thread[0])
        cJSON_AddStringToObject(b, "thread_ts", m->thread);
    /* every field that reaches the mrkdwn: the service comes from the alert
     * as much as the title does */
    char *title = mrkdwn_escape(m->title[0] ? m->title : "Incident");
    char *text = mrkdwn_escape(m->text);
    char *sev = mrkdwn_escape(m->severity);
    char *svc = mrkdwn_escape(m->service);
    char line[4096];
    if (m->kind == KIT_CHAT_OPENED)
        snprintf(line, sizeof(line), "%s *%s* — %s%s%s", severity_emoji(m->severity),
                 title ? title : "", sev ? sev : "", svc && *svc ? " · " : "", svc ? svc : "");
    else
        snprintf(line, sizeof(line), "%s", text ? text : "");
    fit(line); /* snprintf may have cut a character in two */
    /* text: the notification's and screen readers' version; blocks: what is shown */
    cJSON_AddStringToObject(b, "text", line);
    cJSON *blocks = cJSON_AddArrayToObject(b, "blocks");
    cJSON *sec = cJSON_CreateObject();
    cJSON_AddStringToObject(sec, "type", "section");
    cJSON *t = cJSON_AddObjectToObject(sec, "text");
    cJSON_AddStringToObject(t, "type", "mrkdwn");
    /* Escaping stops Slack's markup, not its auto-parsing: without verbatim
     * a bare URL of the alert's text becomes a link (and is unfurled),
     * #channel names and some mentions are resolved.  The only link is the
     * button. */
    cJSON_AddTrueToObject(t, "verbatim");
    if (m->kind == KIT_CHAT_OPENED) {
        char full[KIT_CHAT_TEXT_MAX + 4200];
        snprintf(full, sizeof(full), "%s%s%s", line, text && *text ? "\n" : "", text ? text : "");
        fit(full);
        cJSON_AddStringToObject(t, "text", full);
    } else {
        cJSON_AddStringToObject(t, "text", line);
    }
    cJSON_AddItemToArray(blocks, sec);
    if (m->link[0] && m->kind == KIT_CHAT_OPENED) {
        cJSON *act = cJSON_CreateObject();
        cJSON_AddStringToObject(act, "type", "actions");
        cJSON *els = cJSON_AddArrayToObject(act, "elements");
        cJSON *btn = cJSON_CreateObject();
        cJSON_AddStringToObject(btn, "type", "button");
        cJSON *bt = cJSON_AddObjectToObject(btn, "text");
        cJSON_AddStringToObject(bt, "type", "plain_text");
        cJSON_AddStringToObject(bt, "text", "View Investigation");
        cJSON_AddStringToObject(btn, "url", m->link);
        cJSON_AddStringToObject(btn, "action_id", "view_investigation");
        cJSON_AddItemToArray(els, btn);
        cJSON_AddItemToArray(blocks, act);
    }
    free(title);
    free(text);
    free(sev);
    free(svc);
    char *s = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    return s;
}

static kit_chat_send_result outcome(kit_chat_outcome *out, kit_chat_send_result r,
                                    const char *fmt, const char *a, const char *b)
{
    snprintf(out->err, sizeof(out->err), fmt, a, b);
    return r;
}

/* Slack errors that waiting will not cure (api.slack.com/methods/chat.postMessage). */
static int permanent(const char *e)
{
    static const char *const words[] = { "channel_not_found", "is_archived", "not_in_channel",
                                         "msg_too_long", "no_text", "invalid_blocks",
                                         "restricted_action", "team_access_not_granted", NULL };
    for (size_t i = 0; words[i]; i++)
        if (!strcmp(e, words[i]))
            return 1;
    return auth_error(e);
}

static kit_chat_send_result slack_send(worker_ctx *w, const kit_chat_message *m,
                                       kit_chat_outcome *out)
{
    out->retry_after_s = -1;
    store_connector row;
    cJSON *md = NULL;
    int rc = slack_org_connection(w, m->org_id, &row, &md);
    if (rc == STORE_NOT_FOUND)
        return outcome(out, KIT_CHAT_DROP,
                       "Slack is not connected in this organization, or no channel is chosen "
                       "(POST /slack/channel)%s%s", "", "");
    if (rc != STORE_OK)
        return outcome(out, KIT_CHAT_RETRY, "state store unavailable%s%s", "", "");
    kit_chat_send_result res = KIT_CHAT_RETRY;
    char channel[KIT_CHAT_REF_MAX];
    snprintf(channel, sizeof(channel), "%s",
             m->channel[0] ? m->channel : api_json_str(md, "channel_id"));
    char *token = slack_bot_token(w, &row, NULL);
    char *body = NULL;
    if (!token) {
        res = outcome(out, KIT_CHAT_RETRY, "the bot token could not be read%s%s", "", "");
        goto done;
    }
    if (!slack_id_ok(channel)) {
        res = outcome(out, KIT_CHAT_DROP, "not a Slack channel id: %.64s%s", channel, "");
        goto done;
    }
    body = post_body(m, channel);
    if (!body)
        goto done;
    for (int joined = 0;; joined = 1) {
        kit_call_resp r;
        cJSON *ans = NULL;
        char serr[64];
        /* One attempt: the outbox retries, with Slack's Retry-After. */
        rc = slack_call(w, token, "chat.postMessage", NULL, body, 1, &r, &ans, serr);
        if (rc == AUR_OK) {
            const char *ts = api_json_str(ans, "ts");
            snprintf(out->channel, sizeof(out->channel), "%s", channel);
            snprintf(out->thread, sizeof(out->thread), "%s",
                     m->thread[0] ? m->thread : (ts && strlen(ts) < 64 ? ts : ""));
            res = KIT_CHAT_SENT;
        } else if (!strcmp(serr, "not_in_channel") && !joined) {
            /* The bot was removed from the channel: join it again (channels:join). */
            char jb[KIT_CHAT_REF_MAX + 32];
            kit_call_resp jr;
            cJSON *jans = NULL;
            char jerr[64];
            snprintf(jb, sizeof(jb), "{\"channel\":\"%s\"}", channel);
            int jrc = slack_call(w, token, "conversations.join", NULL, jb, 1, &jr, &jans, jerr);
            kit_call_resp_free(&jr);
            cJSON_Delete(jans);
            kit_call_resp_free(&r);
            cJSON_Delete(ans);
            if (jrc == AUR_OK)
                continue;
            res = outcome(out, KIT_CHAT_DROP, "not in channel and joining failed: %s%s",
                          jerr[0] ? jerr : "no answer", "");
            break;
        } else if (serr[0]) {
            res = permanent(serr) ? KIT_CHAT_DROP : KIT_CHAT_RETRY;
            outcome(out, res, "Slack refused chat.postMessage: %s%s", serr, "");
        } else {
            res = KIT_CHAT_RETRY; /* 429, 5xx, timeouts, transport */
            out->retry_after_s = r.retry_after_s;
            outcome(out, res, "%s%s", r.err, "");
        }
        kit_call_resp_free(&r);
        cJSON_Delete(ans);
        break;
    }
done:
    free(body);
    secret_free(token);
    cJSON_Delete(md);
    store_connector_free(&row);
    return res;
}

static const kit_chat_spec slack_chat = { .connector = SLACK_ID, .send = slack_send };

void slack_api_register(void)
{
    router_add_outbound(HTTP_GET, "/slack/channels", ROUTE_AUTH_API, channels_route);
    router_add_outbound(HTTP_POST, "/slack/channel", ROUTE_AUTH_API, channel_route);
    if (kit_chat_register(&slack_chat) < 0)
        log_error("slack: cannot declare the chat connector");
}
