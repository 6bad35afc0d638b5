/* google_chat.h — what the Google Chat connector's files share (internal):
 * google_chat.c (settings, user OAuth, the incidents space, status),
 * google_chat_events.c (POST /google-chat/events), google_chat_api.c (the
 * Chat API: service-account token, messages, the kit_chat send). */
#ifndef AURORA_GOOGLE_CHAT_H
#define AURORA_GOOGLE_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "connector.h"
#include "http.h"
#include "kit_call.h"
#include "store.h"
#include "worker.h"

struct cJSON;

#define GCHAT_ID "google_chat"
#define GCHAT_FIELD_REFRESH "refresh-token"
#define GCHAT_TOKEN_MAX 4096
#define GCHAT_SPACE_MAX 128 /* "spaces/<id>" */
#define GCHAT_SCOPE_BOT "https://www.googleapis.com/auth/chat.bot"
#define GCHAT_EVENT_ISSUER "chat@system.gserviceaccount.com"
#define MSG_GCHAT_NOT_CONFIGURED "Google Chat OAuth credentials not configured"
#define MSG_GCHAT_INVALID_SCOPE "Ensure the service account has the chat.bot scope"
#define MSG_GCHAT_AS_USER "Messages appear as your name"
#define MSG_GCHAT_SET_SA "Set GOOGLE_CHAT_SERVICE_ACCOUNT_KEY to enable the Chat app identity"

extern const connector connector_google_chat;
extern const kit_call_errors gchat_api_errors;

long gchat_timeout_ms(const worker_ctx *w);
/* GOOGLE_CHAT_API_BASE_URL, checked; NULL with a 500 in resp (resp may be
 * NULL: then err gets the reason). */
const char *gchat_api_base(const worker_ctx *w, http_response *resp);
/* 1 for "spaces/<id>" with id [A-Za-z0-9_-]{1,100}. */
int gchat_space_name_ok(const char *s);
/* The organization whose connection holds space (the incidents space
 * created at setup): STORE_OK with org (and user when non-NULL),
 * STORE_NOT_FOUND, or < 0. */
int gchat_space_org(worker_ctx *w, const char *space, char org[STORE_ID_LEN],
                    char user[STORE_ID_LEN]);
/* The organization's active connection that has a space (*md: its
 * metadata object): STORE_OK, STORE_NOT_FOUND, or < 0. */
int gchat_org_connection(worker_ctx *w, const char *org, store_connector *row, struct cJSON **md);
/* The user's OAuth access token for a connection row just read (md: its
 * metadata; cached under the row's key_id, else a refresh grant).  Malloc'd
 * (secret_free it) or NULL with resp. */
char *gchat_user_token(worker_ctx *w, store_connector *row, const struct cJSON *md,
                       http_response *resp);

#define GCHAT_EVENTS_PATH "/google-chat/events"
#define GCHAT_AUD_MAX 1024
/* The URLs Chat may post events to, each a possible Authentication
 * Audience: GOOGLE_CHAT_AUDIENCE alone when set; else AURORA_PUBLIC_URL +
 * /google-chat/events and, when FRONTEND_URL is an https URL (the guide's
 * ngrok tunnel to the frontend, which rewrites the path to this server),
 * FRONTEND_URL + /google-chat/events.  Operator settings only, never the
 * request's Host.  How many (0-2); out[0] is the one the setup page shows. */
int gchat_event_audiences(const worker_ctx *w, char out[2][GCHAT_AUD_MAX]);

/* ---- google_chat_api.c ---------------------------------------------------------------- */

/* 1 when GOOGLE_CHAT_SERVICE_ACCOUNT_KEY is set (validated at start). */
int gchat_sa_configured(const worker_ctx *w);
/* The Chat app's access token (scope chat.bot) by the JWT-bearer grant at
 * the key's token_uri, cached until shortly before it expires.  Malloc'd
 * (secret_free it) or NULL with resp (invalid_scope worded as the guide). */
char *gchat_sa_token(worker_ctx *w, int force, http_response *resp);
/* Checks GOOGLE_CHAT_SERVICE_ACCOUNT_KEY when set (connector.check_settings). */
int gchat_check_settings(const config_t *cfg, char *err, size_t errlen);
/* spaces.create (user token): the new space's name/displayName/spaceUri
 * into md.  0, or -1 with resp. */
int gchat_create_space(worker_ctx *w, const char *user_token, const char *display_name,
                       const char *request_id, struct cJSON *md, http_response *resp);
/* spaces.members.create users/app (user token): the Chat app joins space.
 * 0 (member, or already one), or -1 with one line in err. */
int gchat_add_app(worker_ctx *w, const char *user_token, const char *space, char *err,
                  size_t errlen);
/* Declares the kit_chat spec (from register_routes). */
void gchat_chat_register(void);
/* Drops cached tokens of a connection (disconnect). */
void gchat_forget_tokens(const char *org, const char *user);

/* ---- google_chat_events.c ---------------------------------------------------------------- */

void gchat_events_register(void);
/* Assigns the stored events of space, which now has a connection. */
void gchat_events_adopt(worker_ctx *w, const char *space);

#endif
