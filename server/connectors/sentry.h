/* sentry.h — what the Sentry connector's two files share (sentry.c: connect,
 * status, webhooks; sentry_api.c: the read API) and what its unit test
 * reaches: the webhook payload mapper and the stack excerpt. */
#ifndef AURORA_SENTRY_H
#define AURORA_SENTRY_H

#include <stddef.h>

#include "connector.h"
#include "incidents.h"

struct cJSON;

#define SENTRY_ID "sentry"
#define SENTRY_SLUG_MAX 64        /* Sentry's organization slugs are at most 50 */
#define SENTRY_BASE_MAX 512
#define SENTRY_MESSAGE_MAX 2048   /* the excerpt kept as an alert's message */
#define SENTRY_EXCERPT_FRAMES 8   /* stack frames in that excerpt */

extern const connector connector_sentry;

/* 1 if s is a Sentry slug: 1–SENTRY_SLUG_MAX of [a-z0-9_-], not starting with '-'. */
int sentry_slug_ok(const char *s);
/* 1 if s is a numeric Sentry id (issue, project): 1–20 digits. */
int sentry_numeric_id_ok(const char *s);

/* The caller's connection for a read call: the API base it was validated
 * against, its organization and the auth token (secret_free it). */
typedef struct {
    char org_slug[SENTRY_SLUG_MAX + 1];
    char base[SENTRY_BASE_MAX];
    char *token;
    int custom;         /* base is the user's self-hosted base_url */
    int allow_loopback; /* SENTRY_ALLOW_LOOPBACK, for kit_addr_allow */
} sentry_conn;

/* 0, or -1 with resp filled (404 when Sentry is not connected, 503 when the
 * secrets backend fails).  Outbound pool. */
int sentry_conn_load(worker_ctx *w, const auth_ctx *who, sentry_conn *c, http_response *resp);
void sentry_conn_free(sentry_conn *c);
long sentry_timeout_ms(const worker_ctx *w);

/* sentry_api.c: GET /sentry/issues, /sentry/issues/{issue_id},
 * /sentry/discover. */
void sentry_api_register(void);

/* ---- webhook payloads → alerts -------------------------------------------------- */

/* One payload as an alert.  The pointers of `a` point into `body` (keep it
 * alive) and into the buffers below; a.source is "sentry", a.delivery_id is
 * left NULL and a.severity holds Sentry's level as sent (the caller
 * normalizes it). */
typedef struct {
    incident_alert a;
    char issue_id[24];
    char dedup_key[160];
    char service[128];
    char message[SENTRY_MESSAGE_MAX];
} sentry_alert;

/* 1 mapped (the payload drives an incident), 0 a resource or action that is
 * only stored (installation, comment, alerts, an issue action Sentry may
 * add), -1 not the documented shape (why in err).  resource is the
 * Sentry-Hook-Resource header, action the body's "action".
 *   issue.created / unresolved  firing        issue.resolved  resolved
 *   issue.assigned              acknowledged  issue.ignored / archived  info
 *   error.created               firing, fingerprint = data.error.issue_id
 * dedup_key: "<issue_id>:<action>" plus, for issues, ":<lastSeen>" when the
 * payload has one (a regression brings a new event, so a second resolution
 * after it is not a duplicate) and, for errors, ":error:<event_id>".
 * a.occurred_at: firstSeen (created), lastSeen (unresolved), the event's
 * datetime (error.created), else 0: the caller dates the change by the
 * delivery's received_at. */
int sentry_alert_from_payload(const char *resource, const char *action, const struct cJSON *body,
                              sentry_alert *out, char *err, size_t errlen);

/* The first lines of an error's stack into out (always NUL-terminated):
 * "<type>: <value>" of the last exception in exception.values, then up to
 * max_frames of its frames, innermost first, as "  at <function>
 * (<file>:<line>)".  Control characters become spaces; each line is capped.
 * Returns the length written. */
size_t sentry_stack_excerpt(const struct cJSON *exception, char *out, size_t cap, int max_frames);

#endif
