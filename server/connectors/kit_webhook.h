/* kit_webhook.h — inbound webhooks for connectors (the connector kit).
 *
 * A connector declares its provider's webhook as data (a kit_webhook_spec:
 * where the signature, timestamp, delivery id and event are, how the signed
 * string is built) plus a few callbacks (the tenant's secrets, the tenant of
 * a verified delivery, the processing), mounts a public route and calls
 * kit_webhook_handle() from it.  The kit then guarantees, for every request:
 *
 *   size cap → tenant and secrets → signature (HMAC-SHA256 over the RAW body
 *   bytes as received, constant-time compare, any of several secrets during
 *   rotation) → replay window → delivery id / event → connector's shape check
 *   → connector's admission (budgets; told whether it is a redelivery)
 *   → COMMIT to the store → 2xx → processing, after the commit, off the
 *   request's worker.
 *
 *  - 4xx and nothing stored on a refused request (oversized, unsigned, bad
 *    or stale signature, unknown tenant, malformed);
 *  - a 2xx only once the row is committed: a store failure answers 503 so
 *    the provider retries;
 *  - idempotent on the provider's delivery id (or a SHA-256 of the body when
 *    the provider sends none), scoped to the tenant of the URL: a redelivery
 *    answers 2xx and stores nothing;
 *  - processing failures never lose a delivery: the row stays, marked failed
 *    (retried by kit_webhook_process_open) or processed/ignored.
 *
 * docs/connectors-kit.md shows a full declaration for GitHub, Slack, Stripe-
 * like and per-user-URL providers. */
#ifndef AURORA_KIT_WEBHOOK_H
#define AURORA_KIT_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "store.h"
#include "worker.h"

#define KIT_WH_MAX_SECRETS 4   /* valid at once (rotation: old + new, …) */
#define KIT_WH_SECRET_MAX 512  /* bytes of one secret */
#define KIT_WH_MAX_SIGNATURES 8 /* candidates read from one signature header */
#define KIT_WH_DEFAULT_WINDOW_S 300
/* Processing attempts of one delivery (the first, then the retries of
 * kit_webhook_retry_delay's schedule: ~6 h 40 min at least between the first
 * and the last; admin webhooks-retry puts a delivery back after that). */
#define KIT_WH_DEFAULT_ATTEMPTS 8
/* The backoff between attempts: 30 s after the first failure, 4 times
 * longer after each next one, at most 2 h, plus 0-25 % jitter. */
#define KIT_WH_RETRY_BASE_S 30
#define KIT_WH_RETRY_MAX_S 7200
/* A claim older than this is taken to belong to a worker that died
 * (default of AURORA_WEBHOOK_CLAIM_LEASE_S). */
#define KIT_WH_CLAIM_LEASE_S 300

typedef enum {
    KIT_WH_HEX = 0, /* lowercase or uppercase hex of the 32-byte MAC */
    KIT_WH_BASE64,  /* standard or URL-safe base64, padding optional */
} kit_wh_encoding;

typedef enum {
    KIT_WH_SIGNED = 0,         /* a secret must be configured and every delivery signed */
    KIT_WH_SIGNED_IF_CONFIGURED, /* signed when the tenant configured a secret, else accepted
                                    unsigned (stored with verified = 0) */
    KIT_WH_UNSIGNED,           /* no signature: the URL (a per-user path) is the credential */
} kit_wh_policy;

/* What the keys callback fills for one request: the secrets that may have
 * signed it and, when the URL names the tenant, its organization. */
typedef struct {
    unsigned char secret[KIT_WH_MAX_SECRETS][KIT_WH_SECRET_MAX];
    size_t secret_len[KIT_WH_MAX_SECRETS];
    int nsecrets;
    char org_id[STORE_ID_LEN];            /* "" when the URL does not tell */
    char tenant_key[STORE_WEBHOOK_KEY_LEN]; /* idempotency scope: "" for a global endpoint,
                                             else e.g. the user id of a per-user URL */
    /* A spec with timestamp_optional: this tenant's deliveries must carry the
     * timestamp (the tenant said its sender always signs one), so one signed
     * over the body alone (a capture from before, replayable forever) is a 401. */
    int require_timestamp;
} kit_wh_keys;

/* Adds a valid secret (rotation: call once per secret).  -1 when the table is
 * full, the secret is empty or longer than KIT_WH_SECRET_MAX. */
int kit_wh_keys_add(kit_wh_keys *k, const void *secret, size_t len);

/* What a spec's admit took from a store rate limit (store_rate_take_n) for
 * a new delivery: the kit gives it back (store_rate_give_back_n) when the
 * delivery is not stored after all.  n 0: nothing taken. */
typedef struct {
    char key[2 * STORE_ID_LEN + 64];
    int64_t window_start;
    int64_t n;
} kit_wh_cost;

/* Processing outcomes. */
enum { KIT_WH_PROCESSED = 0, KIT_WH_IGNORED = 1, KIT_WH_FAILED = -1 };

typedef struct kit_webhook_spec kit_webhook_spec;

/* Declare it with static storage (a `static const` in the connector's
 * file): processing jobs queued after the 2xx keep a pointer to it.  The kit
 * uses resp->on_loop of a 2xx answer to queue that job. */
struct kit_webhook_spec {
    const char *connector; /* connector id: stored with every delivery */
    /* Largest body accepted (bytes); 0: the server's AURORA_MAX_BODY.  Never
     * more than that: http.c refuses larger requests before the kit runs. */
    size_t max_body;
    kit_wh_policy policy;

    /* ---- signature --------------------------------------------------------------
     * The header (lowercase name) carries one signature, or several separated
     * by signature_separator (',' for PagerDuty's "v1=a,v1=b" and Stripe's
     * "t=…,v1=…", ' ' for space-separated lists; 0: one value).  Each item,
     * spaces trimmed, must start with signature_prefix ("sha256=", "v0=",
     * "v1=", NULL: none); items with another prefix are ignored. */
    const char *signature_header;
    /* Another header the signature may come in, read when signature_header
     * is absent (Grafana: its code's default when the contact point leaves
     * the header field empty is not the name its form shows); NULL: none. */
    const char *signature_header_alt;
    const char *signature_prefix;
    char signature_separator;
    kit_wh_encoding encoding;
    /* The signed string: NULL is the raw body; else a template over {ts},
     * {id} and {body} (each at most once, {body} exactly once), e.g. Slack's
     * "v0:{ts}:{body}", Stripe's "{ts}.{body}". */
    const char *signed_template;

    /* ---- timestamp (replay window) -------------------------------------------
     * From a header (timestamp_header, e.g. "x-slack-request-timestamp") or
     * from an item of the signature header (timestamp_item, e.g. "t=").
     * Unix seconds; when either is declared the timestamp is required and
     * must be within replay_window_s of the server's clock (0: 300 s). */
    const char *timestamp_header;
    const char *timestamp_item;
    int replay_window_s;
    /* The provider signs a timestamp only when its sender is configured to
     * (Grafana's contact point "Timestamp Header"): with timestamp_header
     * present, signed_template and the window apply; with it absent, the
     * signed string is the raw body and there is no window, unless keys set
     * require_timestamp (then a 401).  Needs timestamp_header and a
     * signed_template with {ts}.  Stripping the header from a timestamped
     * delivery does not escape the window: its signature covers the
     * timestamp, so it no longer verifies over the body alone. */
    int timestamp_optional;

    /* ---- identification ------------------------------------------------------------
     * Read after the signature is verified.  The delivery id from a header,
     * else from the JSON body (dotted path, e.g. "event.id": a string, or an
     * integer below 2^53 in magnitude, which a double holds exactly), else a
     * SHA-256 of the body ("sha256:<hex>": an identical body is the same
     * delivery).  Printable ASCII, at most 128 bytes; anything else is a 400. */
    const char *delivery_id_header;
    const char *delivery_id_json;
    const char *event_header;
    const char *event_json;
    const char *action_json;
    int require_json_object; /* the body must be a JSON object (else 400, nothing stored) */
    /* The same body bytes under another delivery id are a duplicate (2xx,
     * nothing stored): for providers whose signature covers the body only,
     * so a captured delivery cannot be replayed with a fresh id.  Only for
     * providers whose distinct events never have identical bodies. */
    int unique_body;
    /* The media type the provider sends (e.g. "application/json"; parameters
     * such as charset are ignored); another one is a 415.  NULL: any. */
    const char *content_type;
    /* Fields of a verified JSON body that carry a credential (dotted paths:
     * Slack's legacy verification "token", Sentry's installation grant
     * "data.installation.code"): removed before the body is stored, so
     * neither the database nor the event read API holds them; a body
     * without them is stored byte for byte, one with them as cJSON prints
     * the rest (no longer the bytes the provider signed; a number beyond
     * double precision rounded; text after a \u0000 in a string dropped).
     * Only for providers whose processing reads strings and small numbers.
     * NULL-terminated; NULL: none. */
    const char *const *secret_fields;

    /* ---- callbacks (worker thread) ---------------------------------------------
     * keys: before the signature check, from the request (path parameters,
     * configuration, secrets backend): the valid secrets and, when the URL
     * tells, the tenant.  Return 0, or -1 with resp filled (e.g. 404 for an
     * unknown user, 503 when the secrets backend is down).  Required unless
     * the policy is KIT_WH_UNSIGNED and the org is resolved otherwise. */
    int (*keys)(worker_ctx *w, const http_request *req, kit_wh_keys *out, http_response *resp);
    /* check (optional): the verified body is of the provider's shape; -1
     * with a 4xx in resp refuses it (nothing stored).  json is the parsed
     * body or NULL when it is not JSON. */
    int (*check)(worker_ctx *w, const http_request *req, const struct cJSON *json,
                 http_response *resp);
    /* admit (optional): the last word before the commit, once the delivery's
     * id and tenant are known (d: org_id, tenant_key, delivery_id, …).
     * redelivery is 1 when that id is already stored for the tenant: the
     * kit then answers 2xx "duplicate" and stores nothing, so what only a
     * NEW delivery costs (Grafana: its alerts, from the organization's
     * per-minute budget) must not be taken — a provider's retry would spend
     * it again, and be refused once it is spent instead of acknowledged.
     * Return 0, with what was taken for a new delivery in *cost (zeroed by
     * the kit), or -1 with a 4xx/5xx in resp (nothing stored).  When the
     * commit then stores nothing (a concurrent copy committed first, the
     * same body under a unique_body spec, a store failure), the kit gives
     * *cost back. */
    int (*admit)(worker_ctx *w, const http_request *req, const struct cJSON *json,
                 const store_webhook_delivery *d, int redelivery, kit_wh_cost *cost,
                 http_response *resp);
    /* resolve_org (optional): when keys left org_id empty, the tenant of a
     * verified delivery (e.g. GitHub: the installation id in the body →
     * org), or of any delivery of a KIT_WH_UNSIGNED spec (whose rows must
     * then be authenticated another way, in keys: adoption assigns them
     * too); json is the parsed body, NULL when it is not JSON.  Return STORE_OK with org_id filled, STORE_NOT_FOUND when not
     * known yet, < 0 on error.  Not known (or an error): the delivery is
     * stored WITHOUT an organization rather than dropped — it is the
     * provider's only copy once we answer 2xx — and kit_webhook_adopt_key()
     * assigns it once the mapping exists. */
    int (*resolve_org)(worker_ctx *w, const store_webhook_delivery *d, const struct cJSON *json,
                       char org_id[STORE_ID_LEN]);
    /* adopt_key (required with resolve_org): the value resolve_org maps to an
     * organization, as the verified body names it (GitHub: the installation
     * id; Slack: team_id; Google Chat: space.name), into key; leave it ""
     * when the body names none (a ping).  Printable ASCII, at most 128
     * bytes (anything else is stored as "").  Stored with the delivery, so
     * that when that tenant becomes known kit_webhook_adopt_key(key) reads
     * its deliveries by an index, however many others wait. */
    void (*adopt_key)(const store_webhook_delivery *d, const struct cJSON *json,
                      char key[STORE_WEBHOOK_KEY_LEN]);
    /* process (optional): runs after the commit, in process_pool, once per
     * delivery (claimed in the store; a worker that died mid-way leaves a
     * claim retried after AURORA_WEBHOOK_CLAIM_LEASE_S, so make it idempotent).
     * KIT_WH_PROCESSED, KIT_WH_IGNORED (e.g. an unsubscribed event) or
     * KIT_WH_FAILED with one line in err (no secret): kept, retried up to
     * max_attempts by kit_webhook_process_open, kit_webhook_retry_delay
     * apart. */
    int (*process)(worker_ctx *w, const store_webhook_delivery *d, char *err, size_t errlen);
    worker_pool process_pool;  /* WORKER_POOL_STORE (default) or _OUTBOUND for provider calls */
    int process_unassigned;    /* 1: process deliveries without an organization too */
    int max_attempts;          /* 0: KIT_WH_DEFAULT_ATTEMPTS */
    /* ack (optional): the 2xx answer (after the commit), e.g. Slack's
     * url_verification challenge.  Default: 200 {"ok":true,"id":…,"duplicate":…}. */
    void (*ack)(const store_webhook_delivery *d, int duplicate, const http_request *req,
                http_response *resp);
    /* The 401 message when the policy needs a secret and none is configured
     * (NULL: "Webhook signing secret not configured"). */
    const char *msg_not_configured;
};

/* Checks the spec (templates, names), registers its headers with
 * http_capture_header() and remembers it (kit_webhook_foreach: the spec must
 * live as long as the process).  Call from the connector's register_routes;
 * -1 with a log line naming what is wrong. */
int kit_webhook_register(const kit_webhook_spec *spec);
/* fn for every spec registered so far, in registration order. */
void kit_webhook_foreach(void (*fn)(const kit_webhook_spec *spec, void *arg), void *arg);
/* Deliveries stored before their spec named a field in secret_fields still
 * hold it: this rewrites every stored body of the connector as the intake
 * would store it today (the fields removed, the rest as cJSON prints it; a
 * body without them, or not JSON, is left byte for byte).  Safe to run
 * again and beside a serving server (a body is never changed otherwise).
 * *seen and *changed count rows read and rewritten; STORE_OK or the store's
 * error (its message names the delivery). */
int kit_webhook_redact_stored(store_t *st, const kit_webhook_spec *spec, int64_t *seen,
                              int64_t *changed);

/* The route handler's body (a ROUTE_PUBLIC route in the store pool). */
void kit_webhook_handle(worker_ctx *w, const kit_webhook_spec *spec, http_request *req,
                        http_response *resp);
/* Same with the clock given (tests: the replay window). */
void kit_webhook_handle_at(worker_ctx *w, const kit_webhook_spec *spec, http_request *req,
                           http_response *resp, int64_t now);

/* ---- processing and recovery (worker threads) -------------------------------- */

/* The time an alert of delivery `d` happened: `t` (the payload's own, in
 * seconds) when it has one, else when the delivery was received.  A change
 * a payload does not date happened when the provider sent it, not when it
 * is processed: a failed delivery is retried on a backoff, hours later, and
 * dated then a resolution would end an instance that started after it. */
int64_t kit_webhook_occurred_at(const store_webhook_delivery *d, int64_t t);

/* Claims and processes one delivery: KIT_WH_PROCESSED / _IGNORED / _FAILED,
 * KIT_WH_NOT_OPEN when it is not open (finished, another worker has it, no
 * organization and the spec processes only assigned ones), or STORE_ERR. */
#define KIT_WH_NOT_OPEN 2
int kit_webhook_process(worker_ctx *w, const kit_webhook_spec *spec, const char *id, int64_t now);
/* How long a delivery waits after its attempt-th attempt (1, 2, …) failed:
 * KIT_WH_RETRY_BASE_S * 4^(attempt-1), at most KIT_WH_RETRY_MAX_S, plus a
 * random 0-25 % of that (deliveries that failed together, in one outage,
 * do not all come back in the same sweep). */
int64_t kit_webhook_retry_delay(int attempt);
/* One pass over up to max (at most 100) open deliveries of the connector,
 * oldest first (received, failed with attempts left whose retry is due at now,
 * stale claims with attempts left; a claim that expired on its last attempt
 * is marked failed): call it
 * at start-up and periodically, so a crash or a full queue between commit and
 * processing is recovered.  Returns how many were processed or ignored, -1 on
 * a store error. */
int kit_webhook_process_open(worker_ctx *w, const kit_webhook_spec *spec, int max, int64_t now);
/* ---- adoption: deliveries stored before their tenant was known ------------------
 *
 * Call kit_webhook_adopt_key when a mapping appears (an installation bound, a
 * workspace connected) with the key its deliveries carry (the spec's
 * adopt_key): it re-runs resolve_org over the unassigned deliveries stored
 * with that key only, oldest first, assigns and processes them, up to
 * KIT_WH_ADOPT_BATCH (the rest, and a pass that failed, are left to the
 * next kit_webhook_maintain).  Deliveries of other tenants, however many,
 * are never read.  Returns how many were assigned, -1 on a store error. */
#define KIT_WH_ADOPT_BATCH 1000
int kit_webhook_adopt_key(worker_ctx *w, const kit_webhook_spec *spec, const char *key);
/* Every key waiting for a tenant re-checked (one index seek and one
 * resolve_org per distinct key, not per delivery) and the keys that now
 * resolve adopted, up to max deliveries: the recovery for a binding whose
 * adoption never ran (a crash in between, a store error).  Returns how many
 * were assigned, -1 on a store error; *more (may be NULL) is set when max
 * was reached with deliveries left. */
int kit_webhook_adopt(worker_ctx *w, const kit_webhook_spec *spec, int max, int *more);
/* The periodic part, for the connector's recovery sweep (a spec with
 * resolve_org), each pass bounded:
 *  - deliveries still without an organization after
 *    AURORA_WEBHOOK_UNASSIGNED_RETENTION_DAYS are deleted (up to 1000);
 *  - up to KIT_WH_BACKFILL_BATCH deliveries stored before adopt keys
 *    existed (migration 14) get theirs, or their organization when
 *    resolve_org knows it now (a one-time catch-up after an upgrade);
 *  - kit_webhook_adopt, on the first pass of the process and after an
 *    adoption that failed or was cut short.
 * Returns how many deliveries were assigned, -1 on a store error. */
#define KIT_WH_BACKFILL_BATCH 500
#define KIT_WH_PRUNE_BATCH 1000
int kit_webhook_maintain(worker_ctx *w, const kit_webhook_spec *spec, int64_t now);
/* Deletes up to KIT_WH_PRUNE_BATCH deliveries of the connector still
 * without an organization that arrived before `before` (Unix seconds);
 * returns how many, -1 on a store error. */
int64_t kit_webhook_prune_unassigned(worker_ctx *w, const kit_webhook_spec *spec, int64_t before);

/* ---- read API (ROUTE_AUTH_API routes a connector mounts) -----------------------
 * kit_webhook_list_events: GET …?limit=1..100 (default 20)&cursor=…&event=…
 *   200 {"events":[{id, delivery_id, event, action, status, verified,
 *   attempts, received_at, processed_at}], "next_cursor": "…" | null},
 *   newest first, times as RFC 3339 UTC strings ("2026-12-02T15:04:05Z").
 * kit_webhook_get_event: GET …/{event_id}: the same object plus "payload"
 *   (the body as JSON when it is JSON, else "payload_text" or
 *   "payload_base64").  Both are scoped to the caller's organization. */
void kit_webhook_list_events(worker_ctx *w, const char *connector, http_request *req,
                             http_response *resp);
void kit_webhook_get_event(worker_ctx *w, const char *connector, const char *event_id,
                           http_request *req, http_response *resp);
/* The same with connector-specific fields added to every event object from
 * its stored columns (e.g. GitHub's "change_gating" from event and action);
 * annotate may be NULL. */
typedef void (*kit_wh_annotate)(const store_webhook_delivery *d, struct cJSON *o);
void kit_webhook_list_events_ex(worker_ctx *w, const char *connector, kit_wh_annotate annotate,
                                http_request *req, http_response *resp);
void kit_webhook_get_event_ex(worker_ctx *w, const char *connector, kit_wh_annotate annotate,
                              const char *event_id, http_request *req, http_response *resp);

#endif
