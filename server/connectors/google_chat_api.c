/* google_chat_api.c — the Google Chat connector's calls to Google:
 *
 *  - the Chat app's access token: a JWT signed with the service account key
 *    (GOOGLE_CHAT_SERVICE_ACCOUNT_KEY), exchanged at the key's token_uri by
 *    the JWT-bearer grant (RFC 7523; Google's "Using OAuth 2.0 for Server to
 *    Server Applications"), scope chat.bot, cached until shortly before it
 *    expires;
 *  - spaces.create and spaces.members.create (users/app) with the user's
 *    token at setup (developers.google.com/workspace/chat/api/reference/
 *    rest/v1/spaces/create, …/spaces.members/create);
 *  - spaces.messages.create for incident notifications (kit_chat send): an
 *    incident card (cardsV2) with a "View Investigation" openLink button, a
 *    thread per incident (thread.threadKey, then thread.name for replies,
 *    messageReplyOption REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD) and the outbox
 *    row id as requestId, so a retried create returns the message already
 *    created instead of posting it twice.
 *
 * Without the service account key, messages are sent with the user's OAuth
 * token (they appear as that person) and as text only: Chat accepts cards
 * from apps only. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_util.h"
#include "google_chat.h"
#include "jwt.h"
#include "kit_cache.h"
#include "kit_chat.h"
#include "kit_oauth.h"
#include "log.h"
#include "secret.h"
#include "utf8.h"

#define DEFAULT_TOKEN_URI "https://oauth2.googleapis.com/token"
#define SA_KEY_MAX (32 * 1024)
#define MSG_JQ "convert the downloaded key file with `cat your-key-file.json | jq -c .` and paste " \
               "the output after GOOGLE_CHAT_SERVICE_ACCOUNT_KEY="

static kit_cache g_app_token = KIT_CACHE_INIT(4);

/* ---- the service account key ---------------------------------------------------------- */

int gchat_sa_configured(const worker_ctx *w)
{
    return server_setting(w->cfg, "GOOGLE_CHAT_SERVICE_ACCOUNT_KEY") != NULL;
}

/* Checks a key value as configured: one line, a service account key file,
 * a token_uri credentials may travel to.  0, or -1 with err. */
static int sa_key_check(const char *v, jwt_sa_key *out, char *err, size_t errlen)
{
    size_t n = strlen(v);
    if (strchr(v, '\n') || strchr(v, '\r')) {
        snprintf(err, errlen, "GOOGLE_CHAT_SERVICE_ACCOUNT_KEY spans several lines; it must be "
                              "the service account JSON on a single line: " MSG_JQ);
        return -1;
    }
    char why[256];
    jwt_sa_key k;
    if (n > SA_KEY_MAX || jwt_sa_key_parse(v, n, &k, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "GOOGLE_CHAT_SERVICE_ACCOUNT_KEY is not a valid service account key "
                              "(%s); " MSG_JQ, n > SA_KEY_MAX ? "too long" : why);
        return -1;
    }
    const char *uri = k.token_uri ? k.token_uri : DEFAULT_TOKEN_URI;
    if (!kit_url_private(uri)) {
        jwt_sa_key_free(&k);
        snprintf(err, errlen, "GOOGLE_CHAT_SERVICE_ACCOUNT_KEY: token_uri must be an https URL");
        return -1;
    }
    if (out)
        *out = k;
    else
        jwt_sa_key_free(&k);
    return 0;
}

int gchat_check_settings(const config_t *cfg, char *err, size_t errlen)
{
    const char *v = config_str(cfg, "GOOGLE_CHAT_SERVICE_ACCOUNT_KEY");
    if (!v || !*v)
        return 0;
    return sa_key_check(v, NULL, err, errlen);
}

/* The app token: *token malloc'd, or -1 with err and *transient (1: worth
 * retrying later: no answer, 5xx; 0: a refusal to fix in configuration). */
static int sa_token(worker_ctx *w, int force, char **token, int *transient, char *err,
                    size_t errlen)
{
    *token = NULL;
    *transient = 0;
    const char *v = server_setting(w->cfg, "GOOGLE_CHAT_SERVICE_ACCOUNT_KEY");
    jwt_sa_key k;
    if (!v) {
        snprintf(err, errlen, "GOOGLE_CHAT_SERVICE_ACCOUNT_KEY is not set");
        return -1;
    }
    if (sa_key_check(v, &k, err, errlen) < 0)
        return -1;
    char key[512];
    int64_t now = (int64_t)time(NULL), exp = 0;
    int keyed = kit_cache_key(key, sizeof(key), "app", "app", k.client_email) == 0;
    if (keyed && !force && (*token = kit_cache_get(&g_app_token, key, now, NULL))) {
        jwt_sa_key_free(&k);
        return 0;
    }
    const char *uri = k.token_uri ? k.token_uri : DEFAULT_TOKEN_URI;
    cJSON *claims = cJSON_CreateObject();
    cJSON_AddStringToObject(claims, "iss", k.client_email);
    cJSON_AddStringToObject(claims, "scope", GCHAT_SCOPE_BOT);
    cJSON_AddStringToObject(claims, "aud", uri);
    cJSON_AddNumberToObject(claims, "iat", (double)now);
    cJSON_AddNumberToObject(claims, "exp", (double)(now + 3600));
    char why[160];
    char *jwt = jwt_sign_rs256(claims, k.private_key, k.private_key_id, why, sizeof(why));
    cJSON_Delete(claims);
    int rc = -1;
    if (!jwt) {
        snprintf(err, errlen, "signing the service account assertion failed: %s", why);
        goto out;
    }
    const char *form[] = { "grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion",
                           jwt, NULL };
    oauth_result r;
    cJSON *j = kit_oauth_token_post(uri, form, NULL, gchat_timeout_ms(w), &r);
    secret_free(jwt);
    if (!j) {
        if (!strcmp(r.error, "invalid_scope"))
            snprintf(err, errlen, "Google refused the Chat app token (invalid_scope): "
                                  MSG_GCHAT_INVALID_SCOPE);
        else if (r.status >= 400 && r.status < 500)
            snprintf(err, errlen, "Google refused the Chat app token (HTTP %ld%s%s): check "
                                  "GOOGLE_CHAT_SERVICE_ACCOUNT_KEY (a deleted or disabled key?)",
                     r.status, r.error[0] ? ", " : "", r.error);
        else
            snprintf(err, errlen, "Chat app token: %s", r.err);
        *transient = !(r.status >= 400 && r.status < 500);
        log_warn("google_chat: service account token for %s failed: %s", k.client_email, err);
        goto out;
    }
    *token = kit_oauth_access_token(j, GCHAT_TOKEN_MAX, now, &exp);
    secret_json_free(j);
    if (!*token) {
        snprintf(err, errlen, "Google answered the Chat app token request without an access token");
        *transient = 1;
        goto out;
    }
    if (keyed)
        kit_cache_put(&g_app_token, key, *token, exp, now);
    rc = 0;
out:
    jwt_sa_key_free(&k);
    return rc;
}

char *gchat_sa_token(worker_ctx *w, int force, http_response *resp)
{
    char *t = NULL, err[512];
    int transient = 0;
    if (sa_token(w, force, &t, &transient, err, sizeof(err)) < 0)
        http_resp_error(resp, transient ? 502 : 400,
                        strstr(err, "invalid_scope") ? "invalid_scope" : "GOOGLE_CHAT_APP_TOKEN_FAILED",
                        "%s", err);
    return t;
}

/* ---- setup calls (user token) ------------------------------------------------------------- */

static void call_init(worker_ctx *w, kit_call_req *q, const char *base, const char *url,
                      const char *token, const char *body, const char **headers)
{
    long t = gchat_timeout_ms(w);
    headers[0] = "Content-Type: application/json; charset=utf-8";
    headers[1] = NULL;
    *q = (kit_call_req){ .provider = "Google Chat API", .base_url = base, .url = url,
                         .method = "POST", .headers = headers, .bearer = token, .body = body,
                         .body_len = body ? strlen(body) : 0, .attempt_timeout_ms = t,
                         .deadline_ms = 2 * t };
}

/* Google's error.status ("PERMISSION_DENIED") of a failed answer, filtered. */
static void google_status(const kit_call_resp *r, char *out, size_t cap)
{
    cJSON *j = r->http.body ? cJSON_Parse(r->http.body) : NULL;
    const char *s = api_json_str(cJSON_GetObjectItemCaseSensitive(j, "error"), "status");
    kit_code_text(s ? s : "", out, cap);
    cJSON_Delete(j);
}

int gchat_create_space(worker_ctx *w, const char *user_token, const char *display_name,
                       const char *request_id, cJSON *md, http_response *resp)
{
    const char *base = gchat_api_base(w, resp);
    if (!base)
        return -1;
    char *rid = http_client_escape(request_id);
    char path[512];
    snprintf(path, sizeof(path), "/v1/spaces?requestId=%s", rid ? rid : "");
    free(rid);
    char *url = kit_url(base, path);
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "spaceType", "SPACE");
    cJSON_AddStringToObject(b, "displayName", display_name ? display_name : "Aurora Incidents");
    char *body = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    const char *headers[2];
    kit_call_req q;
    call_init(w, &q, base, url, user_token, body, headers);
    q.retry_safe = 1; /* requestId: a repeated create returns the first space */
    kit_call_resp r;
    int rc = kit_call(&q, &r);
    free(url);
    free(body);
    int ret = -1;
    if (rc == AUR_OK) {
        cJSON *j = kit_call_json(&r);
        const char *name = api_json_str(j, "name");
        if (!gchat_space_name_ok(name)) {
            http_resp_error(resp, 502, "GOOGLE_CHAT_ERROR",
                            "Google Chat answered spaces.create without a space name");
        } else {
            cJSON_AddStringToObject(md, "space_name", name);
            const char *dn = api_json_str(j, "displayName"), *uri = api_json_str(j, "spaceUri");
            char e[64];
            if (dn && api_check_text(dn, "displayName", 1, 128, e, sizeof(e)) == 0)
                cJSON_AddStringToObject(md, "space_display_name", dn);
            if (uri && kit_url_private(uri) && strlen(uri) < 512)
                cJSON_AddStringToObject(md, "space_uri", uri);
            ret = 0;
        }
        cJSON_Delete(j);
    } else {
        char st[64];
        google_status(&r, st, sizeof(st));
        if (r.status == 409)
            http_resp_error(resp, 409, "GOOGLE_CHAT_SPACE_EXISTS",
                            "Google Chat: a space named \"%s\" already exists in this Workspace "
                            "(ALREADY_EXISTS); set GOOGLE_CHAT_SPACE_DISPLAY_NAME to another name",
                            display_name ? display_name : "");
        else if (r.status == 403)
            http_resp_error(resp, 502, "GOOGLE_CHAT_DENIED",
                            "Creating the Google Chat space was refused (HTTP 403%s%s): the "
                            "sign-in must grant chat.spaces.create and the Google Chat API must be "
                            "enabled in the project", st[0] ? ", " : "", st);
        else
            kit_call_error(&gchat_api_errors, &r, "Creating the Google Chat space",
                           gchat_timeout_ms(w), NULL, resp);
    }
    kit_call_resp_free(&r);
    return ret;
}

int gchat_add_app(worker_ctx *w, const char *user_token, const char *space, char *err,
                  size_t errlen)
{
    const char *base = gchat_api_base(w, NULL);
    char path[256];
    if (!base || !gchat_space_name_ok(space)) {
        snprintf(err, errlen, "GOOGLE_CHAT_API_BASE_URL or the space name is not usable");
        return -1;
    }
    snprintf(path, sizeof(path), "/v1/%s/members", space);
    char *url = kit_url(base, path);
    static const char body[] = "{\"member\":{\"name\":\"users/app\",\"type\":\"BOT\"}}";
    const char *headers[2];
    kit_call_req q;
    call_init(w, &q, base, url, user_token, body, headers);
    kit_call_resp r;
    int rc = kit_call(&q, &r);
    free(url);
    int ret = 0;
    if (rc != AUR_OK && r.status != 409) { /* 409: the app is a member already */
        char st[64];
        google_status(&r, st, sizeof(st));
        snprintf(err, errlen, "%s%s%s", r.err, st[0] ? ", " : "", st);
        ret = -1;
    }
    kit_call_resp_free(&r);
    return ret;
}

/* ---- messages (kit_chat send) ----------------------------------------------------------------- */

/* Card text widgets read a little HTML: the incident's own text is escaped. */
static char *html_escape(const char *s)
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

static void add_text_widget(cJSON *widgets, const char *label, const char *text)
{
    if (!text || !*text)
        return;
    char *e = html_escape(text);
    cJSON *w = cJSON_CreateObject(), *dt = cJSON_AddObjectToObject(w, "decoratedText");
    if (label)
        cJSON_AddStringToObject(dt, "topLabel", label);
    cJSON_AddStringToObject(dt, "text", e ? e : "");
    if (!label) { /* a paragraph */
        cJSON_DeleteItemFromObjectCaseSensitive(w, "decoratedText");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(w, "textParagraph"), "text", e ? e : "");
    }
    cJSON_AddItemToArray(widgets, w);
    free(e);
}

static char *chat_text_escape(const char *s);

/* The incident card (cardsV2, app identity only). */
static void add_card(cJSON *msg, const kit_chat_message *m)
{
    cJSON *cards = cJSON_AddArrayToObject(msg, "cardsV2");
    cJSON *c = cJSON_CreateObject();
    char id[96];
    snprintf(id, sizeof(id), "incident-%.80s", m->incident_id[0] ? m->incident_id : m->id);
    cJSON_AddStringToObject(c, "cardId", id);
    cJSON *card = cJSON_AddObjectToObject(c, "card");
    cJSON *hdr = cJSON_AddObjectToObject(card, "header");
    /* the header is plain text (only widgets read HTML): &lt; would show as
     * such; the look-alikes of < > keep it from ever forming a tag */
    char *t = chat_text_escape(m->title[0] ? m->title : "Incident");
    cJSON_AddStringToObject(hdr, "title", t ? t : "Incident");
    free(t);
    cJSON_AddStringToObject(hdr, "subtitle", m->kind == KIT_CHAT_RESOLVED ? "Resolved" : "New incident");
    cJSON *sections = cJSON_AddArrayToObject(card, "sections");
    cJSON *sec = cJSON_CreateObject();
    cJSON *widgets = cJSON_AddArrayToObject(sec, "widgets");
    add_text_widget(widgets, "Severity", m->severity);
    add_text_widget(widgets, "Service", m->service);
    add_text_widget(widgets, NULL, m->text);
    if (m->link[0]) {
        cJSON *w = cJSON_CreateObject();
        cJSON *buttons = cJSON_AddArrayToObject(cJSON_AddObjectToObject(w, "buttonList"), "buttons");
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "text", "View Investigation");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(cJSON_AddObjectToObject(b, "onClick"),
                                                        "openLink"), "url", m->link);
        cJSON_AddItemToArray(buttons, b);
        cJSON_AddItemToArray(widgets, w);
    }
    cJSON_AddItemToArray(sections, sec);
    cJSON_AddItemToArray(cards, c);
}

/* A text message's markup all opens with '<' (<users/all>, <users/{id}>,
 * <url|label>; the message asks for Chat's syntax, so Markdown's [label](url)
 * is plain text) and Chat has no escape for it: the incident's own text gets
 * the full-width look-alikes (U+FF1C, U+FF1E) instead of < and >, so an
 * alert cannot mention the space or disguise a link.  malloc'd. */
static char *chat_text_escape(const char *s)
{
    size_t n = 0;
    for (const char *p = s; *p; p++)
        n += (*p == '<' || *p == '>') ? 3 : 1;
    char *o = malloc(n + 1), *q = o;
    if (!o)
        return NULL;
    for (const char *p = s; *p; p++) {
        if (*p == '<' || *p == '>') {
            memcpy(q, *p == '<' ? "\xef\xbc\x9c" : "\xef\xbc\x9e", 3);
            q += 3;
        } else {
            *q++ = *p;
        }
    }
    *q = '\0';
    return o;
}

/* The message body: text always (the notification's preview, and the whole
 * message when sent as the user), the card as the app. */
static char *message_body(const kit_chat_message *m, int as_app)
{
    char *title = chat_text_escape(m->title), *sev = chat_text_escape(m->severity);
    char *svc = chat_text_escape(m->service), *body = chat_text_escape(m->text);
    if (!title || !sev || !svc || !body) {
        free(title);
        free(sev);
        free(svc);
        free(body);
        return NULL;
    }
    cJSON *msg = cJSON_CreateObject();
    char text[KIT_CHAT_TEXT_MAX + 1024];
    if (m->kind == KIT_CHAT_REPLY) {
        snprintf(text, sizeof(text), "%s", body);
    } else {
        int resolved = m->kind == KIT_CHAT_RESOLVED;
        int n = snprintf(text, sizeof(text), "%s%s%s%s: %s", resolved ? "Resolved" : "Incident",
                         sev[0] && !resolved ? " [" : "", resolved ? "" : sev,
                         sev[0] && !resolved ? "]" : "", title);
        if (svc[0] && n > 0 && (size_t)n < sizeof(text))
            n += snprintf(text + n, sizeof(text) - (size_t)n, " (service %s)", svc);
        if (!as_app && body[0] && n > 0 && (size_t)n < sizeof(text))
            n += snprintf(text + n, sizeof(text) - (size_t)n, "\n%s", body);
        /* Chat's own link syntax <url|text> when there is no card to carry it */
        if (!as_app && m->link[0] && n > 0 && (size_t)n < sizeof(text))
            snprintf(text + n, sizeof(text) - (size_t)n, "\n<%s|View Investigation>", m->link);
    }
    /* the escaped text is longer: a cut must not split a character */
    text[utf8_complete_prefix(text, strlen(text))] = '\0';
    free(title);
    free(sev);
    free(svc);
    free(body);
    cJSON_AddStringToObject(msg, "text", text);
    /* Chat's own syntax, whatever the app's default: an app created today
     * reads text as Markdown, where [label](url) in an alert would be a
     * disguised link (and our <url|label> would not be one). */
    cJSON_AddStringToObject(msg, "markupSyntax", "MARKUP_SYNTAX_CHAT");
    if (as_app && m->kind != KIT_CHAT_REPLY)
        add_card(msg, m);
    cJSON *thread = cJSON_AddObjectToObject(msg, "thread");
    if (m->thread[0]) {
        cJSON_AddStringToObject(thread, "name", m->thread);
    } else {
        char key[160];
        snprintf(key, sizeof(key), "aurora-%s", m->incident_id[0] ? m->incident_id : m->id);
        cJSON_AddStringToObject(thread, "threadKey", key);
    }
    char *s = cJSON_PrintUnformatted(msg);
    cJSON_Delete(msg);
    return s;
}

static int thread_name_ok(const char *t)
{
    if (!t || strncmp(t, "spaces/", 7) != 0 || strlen(t) >= KIT_CHAT_REF_MAX)
        return 0;
    for (const char *p = t; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return 0;
    return strstr(t, "/threads/") != NULL;
}

/* One line into out->err (cut to fit) and the result r. */
static kit_chat_send_result result(kit_chat_outcome *out, kit_chat_send_result r, const char *msg)
{
    size_t n = strlen(msg);
    if (n >= sizeof(out->err))
        n = sizeof(out->err) - 1;
    memcpy(out->err, msg, n);
    out->err[n] = '\0';
    return r;
}

static kit_chat_send_result gchat_send(worker_ctx *w, const kit_chat_message *m,
                                       kit_chat_outcome *out)
{
    out->retry_after_s = -1;
    store_connector row;
    cJSON *md = NULL;
    int rc = gchat_org_connection(w, m->org_id, &row, &md);
    if (rc == STORE_NOT_FOUND)
        return result(out, KIT_CHAT_DROP,
                      "Google Chat is not connected in this organization (no incidents space)");
    if (rc != STORE_OK)
        return result(out, KIT_CHAT_RETRY, "state store unavailable");
    kit_chat_send_result res = KIT_CHAT_RETRY;
    char *token = NULL, *body = NULL, *url = NULL;
    char space[GCHAT_SPACE_MAX + 1];
    snprintf(space, sizeof(space), "%s", m->channel[0] ? m->channel : api_json_str(md, "space_name"));
    const char *base = gchat_api_base(w, NULL);
    if (!gchat_space_name_ok(space) || (m->thread[0] && !thread_name_ok(m->thread))) {
        res = result(out, KIT_CHAT_DROP, "not a Google Chat space or thread name");
        goto done;
    }
    /* The service account is a member of every organization's space: a
     * reply naming a space (or a thread) must be this organization's own. */
    const char *own = api_json_str(md, "space_name");
    size_t sl = strlen(space);
    if (!own || strcmp(space, own) ||
        (m->thread[0] && (strncmp(m->thread, space, sl) || strncmp(m->thread + sl, "/threads/", 9)))) {
        res = result(out, KIT_CHAT_DROP, "that space or thread is not this organization's incidents space");
        goto done;
    }
    if (!base) {
        res = result(out, KIT_CHAT_RETRY, "GOOGLE_CHAT_API_BASE_URL is not usable");
        goto done;
    }
    int as_app = gchat_sa_configured(w);
    char err[512];
    if (as_app) {
        int transient = 0;
        if (sa_token(w, 0, &token, &transient, err, sizeof(err)) < 0) {
            /* A refused key stays refused until the operator fixes it: the
             * row keeps retrying (with backoff) until then, up to the kit's
             * maximum. */
            res = result(out, KIT_CHAT_RETRY, err);
            goto done;
        }
    } else {
        http_response scratch;
        memset(&scratch, 0, sizeof(scratch));
        token = gchat_user_token(w, &row, md, &scratch);
        if (!token) {
            cJSON *e = buf_pending(&scratch.body) ? cJSON_ParseWithLength(buf_head(&scratch.body),
                                                                buf_pending(&scratch.body))
                                        : NULL;
            const char *msg = api_json_str(e, "error");
            snprintf(err, sizeof(err), "as the user: %s", msg ? msg : "token refresh failed");
            res = result(out, scratch.status == 400 || scratch.status == 404 ? KIT_CHAT_DROP
                                                                             : KIT_CHAT_RETRY,
                         err);
            cJSON_Delete(e);
            buf_free(&scratch.body);
            goto done;
        }
        buf_free(&scratch.body);
    }
    body = message_body(m, as_app);
    char *rid = http_client_escape(m->id);
    char path[600];
    snprintf(path, sizeof(path),
             "/v1/%s/messages?messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD&requestId=%s",
             space, rid ? rid : "");
    free(rid);
    url = kit_url(base, path);
    if (!body || !url) {
        res = result(out, KIT_CHAT_RETRY, "out of memory");
        goto done;
    }
    const char *headers[2];
    kit_call_req q;
    call_init(w, &q, base, url, token, body, headers);
    q.retry_safe = 1; /* requestId: a repeat returns the message already created */
    q.max_attempts = 2;
    kit_call_resp r;
    rc = kit_call(&q, &r);
    if (rc == AUR_OK) {
        cJSON *j = kit_call_json(&r);
        const char *thread = api_json_str(cJSON_GetObjectItemCaseSensitive(j, "thread"), "name");
        if (!thread_name_ok(thread)) {
            /* Sent, but without the thread later replies need: a reply
             * then starts its own thread (REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD). */
            log_warn("google_chat: message sent to %s without a usable thread name", space);
            thread = "";
        }
        snprintf(out->channel, sizeof(out->channel), "%s", space);
        snprintf(out->thread, sizeof(out->thread), "%s", thread);
        cJSON_Delete(j);
        res = KIT_CHAT_SENT;
    } else {
        char st[64];
        google_status(&r, st, sizeof(st));
        snprintf(err, sizeof(err), "%s%s%s", r.err, st[0] ? ", " : "", st);
        if (r.status == 401) {
            /* The cached token was refused (revoked, rotated key): the
             * next attempt mints a new one. */
            kit_cache_clear(&g_app_token);
            gchat_forget_tokens(row.org_id, row.user_id);
            res = KIT_CHAT_RETRY;
        } else if (r.status == 403 || r.status == 404 || r.status == 400) {
            if (r.status != 400 && as_app) {
                size_t n = strlen(err);
                snprintf(err + n, sizeof(err) - n, " (is the Chat app a member of %s?)", space);
            }
            res = KIT_CHAT_DROP;
        } else {
            res = KIT_CHAT_RETRY; /* 429, 5xx, timeouts, transport */
            out->retry_after_s = r.retry_after_s;
        }
        result(out, res, err);
    }
    kit_call_resp_free(&r);
done:
    secret_free(token);
    free(body);
    free(url);
    cJSON_Delete(md);
    store_connector_free(&row);
    return res;
}

static const kit_chat_spec gchat_chat_spec = {
    .connector = GCHAT_ID,
    .send = gchat_send,
};

void gchat_chat_register(void)
{
    if (kit_chat_register(&gchat_chat_spec) < 0)
        log_error("google_chat: cannot declare the chat connector (kit_chat table full?)");
}
