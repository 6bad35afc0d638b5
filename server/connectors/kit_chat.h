/* kit_chat.h — the connector kit's chat notifications: incident messages and
 * threaded replies delivered to chat connectors (Slack, Google Chat, …) from
 * an outbox in the state store, at least once.
 *
 *   incident opened   → one "opened" message per chat connector connected in
 *                       the incident's organization, written in the
 *                       incident's own store transaction (no incident
 *                       without its notification, as with rca_jobs);
 *   incident resolved → a "resolved" reply in that incident's thread;
 *   a reply           → POST /internal/chat/messages (the investigation
 *                       service's RCA summary, an answer to an @mention):
 *                       a reply in the incident's thread, or in a thread
 *                       named by (connector, channel, thread).
 *
 * Delivery: a periodic drain (every AURORA_CHAT_POLL_S, 2 s) claims due rows
 * with a lease, calls the connector's send() in the outbound pool, records
 * the thread the first message started (chat_threads) so every later
 * message of the incident is a reply in it, and retries a failed send with
 * backoff — the provider's Retry-After when it gave one — up to a maximum,
 * after which the row is `dead` (kept for operators).  Messages of one
 * thread go out in order: a reply waits until its thread's first message
 * was sent.  docs/connectors-kit.md, "Chat notifications".
 */
#ifndef AURORA_KIT_CHAT_H
#define AURORA_KIT_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "worker.h"

#define KIT_CHAT_TEXT_MAX 3000  /* bytes of a message's text (cut at a UTF-8 boundary) */
#define KIT_CHAT_REF_MAX 256    /* a channel or thread reference, printable ASCII */
#define KIT_CHAT_MAX_CONNECTORS 8

typedef enum {
    KIT_CHAT_OPENED = 0, /* a new incident: starts its thread */
    KIT_CHAT_RESOLVED,   /* the incident was resolved: reply in its thread */
    KIT_CHAT_REPLY,      /* free text: reply in the incident's (or the named) thread */
} kit_chat_kind;

/* One message handed to a connector's send(); every string is non-NULL
 * ("" when absent) and lives until send() returns. */
typedef struct {
    const char *id;          /* outbox row id ("chm_…"): stable across retries, usable
                                as an idempotency key where the provider takes one */
    const char *org_id;
    const char *incident_id; /* "" for a reply to a thread that is not an incident's */
    kit_chat_kind kind;
    const char *title;       /* the incident's title */
    const char *severity;    /* normalized: critical, high, medium, low, info, unknown */
    const char *service;
    const char *status;      /* the incident's status when the message was queued */
    const char *text;        /* REPLY: the text; OPENED: the incident's summary;
                                RESOLVED: one line saying what resolved it */
    const char *link;        /* FRONTEND_URL + "/incidents/" + incident id ("" without) */
    const char *channel;     /* the thread's channel/space; "" for a first message (the
                                connector's configured channel) */
    const char *thread;      /* the thread's reference; "" for a first message */
    int attempt;             /* 1 on the first try */
} kit_chat_message;

typedef enum {
    KIT_CHAT_SENT = 0, /* delivered: out->channel / out->thread name the thread */
    KIT_CHAT_RETRY,    /* try again later (429, 5xx, timeout); out->retry_after_s when known */
    KIT_CHAT_DROP,     /* never deliverable (not connected any more, channel gone,
                          permission refused): the row ends `dropped` with out->err */
} kit_chat_send_result;

typedef struct {
    char channel[KIT_CHAT_REF_MAX]; /* where the message went (SENT) */
    char thread[KIT_CHAT_REF_MAX];  /* the thread it started or joined (SENT) */
    long retry_after_s;             /* RETRY: the provider's wait, -1 when none */
    char err[256];                  /* RETRY/DROP: one line, no secret */
} kit_chat_outcome;

typedef struct kit_chat_spec {
    const char *connector; /* connector id ("slack", "google_chat") */
    /* Outbound pool.  Finds the organization's connection itself (m->org_id),
     * sends m, and fills out.  A first message (m->thread "") must set
     * out->thread to what later replies pass back (Slack: the message ts;
     * Google Chat: the thread name). */
    kit_chat_send_result (*send)(worker_ctx *w, const kit_chat_message *m,
                                 kit_chat_outcome *out);
} kit_chat_spec;

/* Declares a chat connector (static storage; from its register_routes).  -1
 * when the table is full or the connector is already declared. */
int kit_chat_register(const kit_chat_spec *spec);

/* The connector ids declared so far (for the incident transaction: which
 * of them the organization has connected). */
size_t kit_chat_connectors(const char *ids[KIT_CHAT_MAX_CONNECTORS]);

/* Queues a reply (store pool or outbound pool).  Either incident_id (a reply
 * on every chat connector the incident was announced on; *queued may be 0)
 * or connector + channel + thread (one thread of the org's own chat, e.g.
 * the one an @mention came from).  Text longer than KIT_CHAT_TEXT_MAX is
 * cut at a character boundary with "…".  Returns AUR_OK (*queued rows),
 * AUR_E_INVALID (bad text, connector or reference), AUR_NOT_FOUND (no such
 * incident in the org, or the connector is not connected there),
 * AUR_CONFLICT (AURORA_CHAT_MAX_PENDING_PER_ORG messages already waiting)
 * or STORE_ERR; one line in err. */
int kit_chat_reply(worker_ctx *w, const char *org_id, const char *incident_id,
                   const char *connector, const char *channel, const char *thread,
                   const char *text, int *queued, char *err, size_t errlen);

/* The incident a thread belongs to (an @mention inside an incident's thread):
 * STORE_OK with incident_id filled, STORE_NOT_FOUND, or < 0. */
int kit_chat_thread_incident(worker_ctx *w, const char *org_id, const char *connector,
                             const char *channel, const char *thread,
                             char incident_id[STORE_ID_LEN]);

/* One run of the drain (the periodic task; tests call it): claims and sends
 * up to 20 due messages.  Seconds until the next run. */
long kit_chat_drain(worker_ctx *w);

/* Registers POST /internal/chat/messages, GET /internal/chat/messages and
 * the periodic drain (modules.c). */
void kit_chat_register_routes(void);

#endif
