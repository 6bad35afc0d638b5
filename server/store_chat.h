/* store_chat.h — the chat outbox (migration 11): messages for chat
 * connectors (kit_chat.h) and the thread each incident has in each chat.
 *
 *   chat_outbox   one row per message per connector.  Life: pending →
 *                 claimed (attempts + 1, a lease) → sent | pending again
 *                 after a backoff | dropped (never deliverable) | dead
 *                 (max attempts).  A claim whose lease ran out is claimable
 *                 again: a drainer that died loses nothing.
 *   chat_threads  (org, connector, incident) → (channel, thread): where the
 *                 incident's first message went, so every later one is a
 *                 reply in it.
 *
 * Order: the messages of one incident on one connector go out one at a
 * time, oldest first — a row is due only when no older row of the same
 * (org, connector, incident) is still pending or claimed.  So a resolution
 * never overtakes the announcement it replies to, and when the
 * announcement could not be delivered (dropped, dead) the next message
 * starts the thread instead.
 *
 * The incident hooks run INSIDE the caller's transaction (store_incidents.c:
 * the incident and its messages commit together); the rest open their own. */
#ifndef AURORA_STORE_CHAT_H
#define AURORA_STORE_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define CHAT_CONNECTOR_MAX 31  /* bytes of a connector id */
#define CHAT_REF_MAX 255       /* bytes of a channel or thread reference */
#define CHAT_TEXT_MAX 3000     /* bytes of a reply's text */
#define CHAT_ERROR_MAX 255
#define CHAT_STATUS_LEN 16
#define CHAT_CLAIM_MAX 50
#define CHAT_LIST_MAX 500
#define CHAT_MAX_CONNECTORS 8

typedef struct {
    char id[STORE_ID_LEN];
    char org_id[STORE_ID_LEN];
    char connector[CHAT_CONNECTOR_MAX + 1];
    char incident_id[STORE_ID_LEN]; /* "" for a reply to a named thread */
    char kind[16];                  /* "opened", "resolved", "reply" */
    char channel[CHAT_REF_MAX + 1]; /* set on a reply to a named thread, and once sent */
    char thread[CHAT_REF_MAX + 1];
    char status[CHAT_STATUS_LEN];   /* pending, claimed, sent, dropped, dead */
    int attempts;
    int64_t next_attempt_at, lease_until, created_at, created_seq, sent_at;
    char last_error[CHAT_ERROR_MAX + 1];
    char *text;                     /* malloc'd ("" for incident messages) */
} store_chat_msg;

/* The connector ids the incident hooks queue for (kit_chat_register calls
 * it at start-up, before any request; later calls replace the list). */
void store_chat_set_connectors(const char *const *ids, size_t n);

/* ---- incident hooks: inside the caller's open transaction ---------------------- */

/* A new incident: one "opened" row per declared connector the organization
 * has an active connection of (any user).  STORE_OK / STORE_ERR. */
int store_chat_queue_opened(store_t *s, const char *org_id, const char *incident_id, int64_t now);
/* The incident was resolved (or closed while open): one "resolved" row per
 * connector its "opened" row was queued for. */
int store_chat_queue_resolved(store_t *s, const char *org_id, const char *incident_id,
                              int64_t now);

/* ---- replies (own transaction) ------------------------------------------------------- */

/* incident_id set: one "reply" row per connector the incident was announced
 * on (*queued may be 0: no chat connected when it opened).  Else connector,
 * channel and thread name one thread of the organization's own chat (the
 * connector must have an active connection in the org).  Refused when the
 * org already has max_pending rows pending or claimed (CONFLICT).
 * NOT_FOUND: no such incident in the org, or the connector is not
 * connected there.  ids (may be NULL) gets up to CHAT_MAX_CONNECTORS ids. */
int store_chat_queue_reply(store_t *s, const char *org_id, const char *incident_id,
                           const char *connector, const char *channel, const char *thread,
                           const char *text, int64_t now, int64_t max_pending, int *queued,
                           char (*ids)[STORE_ID_LEN]);

/* ---- delivery ---------------------------------------------------------------------- */

/* Claims up to n due rows (see Order above; pending with next_attempt_at <=
 * now, or claimed with an expired lease), oldest due first: attempts + 1,
 * lease until now + lease_s.  A row whose lease expired on its last
 * attempt (>= max_attempts) goes dead instead.  PostgreSQL: FOR UPDATE SKIP
 * LOCKED; SQLite: under BEGIN IMMEDIATE.  Free with store_chat_msgs_free. */
int store_chat_claim(store_t *s, int64_t now, int64_t lease_s, int max_attempts, size_t n,
                     store_chat_msg **out, size_t *nout);
/* The outcome of a claim; `attempts` is the claim's (a row claimed again
 * since — its lease expired — is not touched: CONFLICT).
 * sent: channel/thread recorded; for an incident with no thread yet in
 *       chat_threads, this one becomes its thread.
 * retry: pending again after delay_s, or dead once attempts >= max_attempts
 *        (dead set to 1). */
int store_chat_sent(store_t *s, const char *id, int attempts, const char *channel,
                    const char *thread, int64_t now);
/* 1 if v ("" or NULL too) can be stored as a channel or thread reference:
 * at most CHAT_REF_MAX bytes of printable ASCII without spaces. */
int store_chat_ref_ok(const char *v);
int store_chat_retry(store_t *s, const char *id, int attempts, int64_t delay_s, const char *error,
                     int64_t now, int max_attempts, int *dead);
int store_chat_drop(store_t *s, const char *id, int attempts, const char *error, int64_t now);

/* The thread of (org, connector, incident): OK with channel and thread
 * (each CHAT_REF_MAX + 1), or NOT_FOUND. */
int store_chat_thread_get(store_t *s, const char *org_id, const char *connector,
                          const char *incident_id, char *channel, char *thread);
/* The incident whose thread (connector, channel, thread) is: OK, NOT_FOUND. */
int store_chat_thread_incident(store_t *s, const char *org_id, const char *connector,
                               const char *channel, const char *thread,
                               char incident_id[STORE_ID_LEN]);

/* Rows of an organization (NULL: every org), newest first, filtered by
 * status and incident ("" / NULL: any), at most limit (1..CHAT_LIST_MAX). */
int store_chat_list(store_t *s, const char *org_id, const char *status, const char *incident_id,
                    int limit, store_chat_msg **out, size_t *n);
void store_chat_msgs_free(store_chat_msg *m, size_t n);

#endif
