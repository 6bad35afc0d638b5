/* kit_webhook.c — inbound webhooks for connectors; see kit_webhook.h.
 *
 * The order of the checks is the contract: nothing is parsed beyond the
 * headers before the signature holds, nothing is stored before every check
 * passed, and nothing answers 2xx before the store committed the row. */
#include "kit_webhook.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api_util.h"
#include "server_config.h"
#include "crypto.h"
#include "log.h"
#include "secret.h"
#include "server_metrics.h"
#include "utf8.h"

#define MAC_LEN 32 /* HMAC-SHA256 */
#define DELIVERY_ID_MAX 128
#define EVENT_MAX 127
#define TIMESTAMP_DIGITS_MAX 12
#define KIT_WH_EXACT_INT 9007199254740992LL /* 2^53: integers a double holds exactly */
#define LIST_DEFAULT 20
#define LIST_MAX 100
#define DEFAULT_NOT_CONFIGURED "Webhook signing secret not configured"

/* ---- small helpers ----------------------------------------------------------- */

int kit_wh_keys_add(kit_wh_keys *k, const void *secret, size_t len)
{
    if (!k || !secret || len == 0 || len > KIT_WH_SECRET_MAX || k->nsecrets < 0 ||
        k->nsecrets >= KIT_WH_MAX_SECRETS)
        return -1;
    memcpy(k->secret[k->nsecrets], secret, len);
    k->secret_len[k->nsecrets] = len;
    k->nsecrets++;
    return 0;
}

/* Printable ASCII without space (ids) or with it (event names), 1..max bytes. */
static int printable(const char *s, size_t n, size_t max, int space_ok)
{
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c > 0x7e || c < 0x20 || (c == ' ' && !space_ok))
            return 0;
    }
    return 1;
}

static int header_name_ok(const char *h)
{
    if (!h)
        return 1;
    size_t n = strlen(h);
    if (n == 0 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)h[i]) || isdigit((unsigned char)h[i]) || h[i] == '-'))
            return 0;
    return 1;
}

static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* 0 when the spec is usable; else -1 with why. */
static int spec_check(const kit_webhook_spec *s, const char **why)
{
    *why = NULL;
    if (!s->connector || !*s->connector || strlen(s->connector) >= STORE_WEBHOOK_CONNECTOR_LEN)
        *why = "connector id missing or too long";
    else if (!header_name_ok(s->signature_header) || !header_name_ok(s->signature_header_alt) ||
             !header_name_ok(s->timestamp_header) ||
             !header_name_ok(s->delivery_id_header) || !header_name_ok(s->event_header))
        *why = "header names must be lowercase [a-z0-9-]";
    else if (s->policy != KIT_WH_UNSIGNED && (!s->signature_header || !s->keys))
        *why = "a signed webhook needs signature_header and keys";
    else if (s->signed_template &&
             (count_of(s->signed_template, "{body}") != 1 ||
              count_of(s->signed_template, "{ts}") > 1 || count_of(s->signed_template, "{id}") > 1))
        *why = "signed_template needs {body} once, {ts} and {id} at most once";
    else if (s->signed_template && strstr(s->signed_template, "{ts}") && !s->timestamp_header &&
             !s->timestamp_item)
        *why = "signed_template uses {ts} but no timestamp is declared";
    else if (s->signed_template && strstr(s->signed_template, "{id}") && !s->delivery_id_header)
        *why = "signed_template uses {id} but no delivery_id_header is declared";
    else if (s->timestamp_optional &&
             (!s->timestamp_header || !s->signed_template || !strstr(s->signed_template, "{ts}")))
        *why = "timestamp_optional needs timestamp_header and {ts} in signed_template";
    else if (s->replay_window_s < 0)
        *why = "replay_window_s is negative";
    else if (s->process_pool != WORKER_POOL_STORE && s->process_pool != WORKER_POOL_OUTBOUND)
        *why = "process_pool must be the store or the outbound pool";
    else if (s->resolve_org && !s->adopt_key)
        /* without a key, finding a tenant's waiting deliveries means reading
         * everyone's */
        *why = "resolve_org needs adopt_key";
    return *why ? -1 : 0;
}

/* Every spec registered in this process, so that a pass over what they
 * stored (admin redact-webhooks) finds them without a list of its own.
 * Filled at start-up, before any thread reads it; one entry per connector
 * (a spec registered again replaces its entry). */
#define KIT_WH_MAX_SPECS 64
static struct {
    const kit_webhook_spec *spec;
    char connector[STORE_WEBHOOK_CONNECTOR_LEN]; /* a copy: matching never reads an old spec */
} g_specs[KIT_WH_MAX_SPECS];
static size_t g_nspecs;

static int remember_spec(const kit_webhook_spec *spec)
{
    size_t i = 0;
    while (i < g_nspecs && strcmp(g_specs[i].connector, spec->connector))
        i++;
    if (i == KIT_WH_MAX_SPECS)
        return -1;
    if (i == g_nspecs)
        g_nspecs++;
    g_specs[i].spec = spec;
    snprintf(g_specs[i].connector, sizeof(g_specs[i].connector), "%s", spec->connector);
    return 0;
}

void kit_webhook_foreach(void (*fn)(const kit_webhook_spec *spec, void *arg), void *arg)
{
    for (size_t i = 0; i < g_nspecs; i++)
        fn(g_specs[i].spec, arg);
}

int kit_webhook_register(const kit_webhook_spec *spec)
{
    const char *why;
    if (!spec || spec_check(spec, &why) < 0) {
        log_error("webhook kit: bad spec for %s: %s", spec && spec->connector ? spec->connector : "?",
                  spec ? why : "no spec");
        return -1;
    }
    if (remember_spec(spec) < 0) {
        log_error("webhook kit: %s: more than %d webhook specs", spec->connector, KIT_WH_MAX_SPECS);
        return -1;
    }
    const char *headers[] = { spec->signature_header, spec->signature_header_alt,
                              spec->timestamp_header, spec->delivery_id_header,
                              spec->event_header };
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++)
        if (headers[i] && http_capture_header(headers[i]) < 0) {
            log_error("webhook kit: %s: cannot capture header %s (table full)", spec->connector,
                      headers[i]);
            return -1;
        }
    return 0;
}

/* ---- signature ----------------------------------------------------------------- */

typedef struct {
    unsigned char mac[KIT_WH_MAX_SIGNATURES][MAC_LEN];
    int n;
    const char *ts; /* into the header value, ts_len bytes (timestamp_item) */
    size_t ts_len;
} sig_header;

/* Decodes one candidate; 0 when it is a 32-byte MAC in the declared encoding. */
static int decode_mac(kit_wh_encoding enc, const char *p, size_t n, unsigned char out[MAC_LEN])
{
    if (enc == KIT_WH_HEX) {
        if (n != 2 * MAC_LEN)
            return -1;
        for (size_t i = 0; i < MAC_LEN; i++) {
            int v = 0;
            for (int k = 0; k < 2; k++) {
                int c = (unsigned char)p[2 * i + k], d;
                if (c >= '0' && c <= '9')
                    d = c - '0';
                else if (c >= 'a' && c <= 'f')
                    d = c - 'a' + 10;
                else if (c >= 'A' && c <= 'F')
                    d = c - 'A' + 10;
                else
                    return -1;
                v = v * 16 + d;
            }
            out[i] = (unsigned char)v;
        }
        return 0;
    }
    if (n == 0 || n > 64)
        return -1;
    size_t len = 0;
    unsigned char *raw = crypto_base64_decode(p, n, &len);
    int ok = raw && len == MAC_LEN;
    if (ok)
        memcpy(out, raw, MAC_LEN);
    free(raw);
    return ok ? 0 : -1;
}

/* Splits the header into candidates (and the timestamp item). */
static void parse_sig_header(const kit_webhook_spec *s, const char *v, sig_header *out)
{
    memset(out, 0, sizeof(*out));
    const char *prefix = s->signature_prefix ? s->signature_prefix : "";
    size_t plen = strlen(prefix);
    const char *tsi = s->timestamp_item;
    const char *p = v;
    while (*p) {
        const char *end = s->signature_separator ? strchr(p, s->signature_separator) : NULL;
        if (!end)
            end = p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        size_t n = (size_t)(b - a);
        if (tsi && n > strlen(tsi) && strncmp(a, tsi, strlen(tsi)) == 0 && !out->ts) {
            out->ts = a + strlen(tsi);
            out->ts_len = n - strlen(tsi);
        } else if (n > plen && strncmp(a, prefix, plen) == 0 && out->n < KIT_WH_MAX_SIGNATURES &&
                   decode_mac(s->encoding, a + plen, n - plen, out->mac[out->n]) == 0) {
            out->n++;
        }
        p = *end ? end + 1 : end;
    }
}

/* The signed string: the body itself (tmpl NULL), or the template filled in. */
static int signed_string(const char *tmpl, const char *body, size_t len, const char *ts,
                         size_t ts_len, const char *id, buf_t *out, const char **data,
                         size_t *n)
{
    if (!tmpl) {
        *data = body;
        *n = len;
        return 0;
    }
    for (const char *p = tmpl; *p;) {
        int rc = 0;
        if (strncmp(p, "{body}", 6) == 0) {
            rc = buf_append(out, body, len);
            p += 6;
        } else if (strncmp(p, "{ts}", 4) == 0) {
            rc = buf_append(out, ts ? ts : "", ts ? ts_len : 0);
            p += 4;
        } else if (strncmp(p, "{id}", 4) == 0) {
            rc = buf_append(out, id ? id : "", id ? strlen(id) : 0);
            p += 4;
        } else {
            rc = buf_append(out, p, 1);
            p++;
        }
        if (rc < 0)
            return -1;
    }
    *data = buf_head(out);
    *n = buf_pending(out);
    return 0;
}

/* 1 if any candidate equals the HMAC of data under any secret.  Every
 * comparison is constant-time (crypto_ct_equal); which secret matched is not
 * secret, so the loop may stop at the first match. */
static int any_mac_matches(const kit_wh_keys *k, const sig_header *sh, const char *data, size_t n)
{
    int match = 0;
    for (int i = 0; i < k->nsecrets && !match; i++) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int mlen = 0;
        if (!HMAC(EVP_sha256(), k->secret[i], (int)k->secret_len[i], (const unsigned char *)data,
                  n, mac, &mlen) ||
            mlen != MAC_LEN)
            continue;
        for (int j = 0; j < sh->n && !match; j++)
            match = crypto_ct_equal(mac, MAC_LEN, sh->mac[j], MAC_LEN);
        secret_wipe(mac, sizeof(mac));
    }
    return match;
}

/* Unix seconds from digits only; -1 otherwise. */
static int64_t parse_ts(const char *p, size_t n)
{
    if (!p || n == 0 || n > TIMESTAMP_DIGITS_MAX)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

/* "application/json; charset=utf-8" is "application/json": the media type
 * before any parameter, case-insensitively. */
static int content_type_is(const char *got, const char *want)
{
    if (!got)
        return 0;
    while (*got == ' ')
        got++;
    size_t n = strcspn(got, ";");
    while (n && (got[n - 1] == ' ' || got[n - 1] == '\t'))
        n--;
    return n == strlen(want) && strncasecmp(got, want, n) == 0;
}

static void refuse(http_response *resp, int status, const char *code, const char *msg,
                   const kit_webhook_spec *s, const http_request *req)
{
    /* A refused delivery is worth a line (a misconfigured secret shows up
     * as a stream of these); never the signature or the body. */
    log_warn("webhook %s from %s refused: %s", s->connector, http_client(req), code);
    http_resp_error(resp, status, code, "%s", msg);
}

/* Verifies the request against the spec; 0, or -1 with resp filled. */
static int verify(const kit_webhook_spec *s, const kit_wh_keys *k, const http_request *req,
                  int64_t now, http_response *resp, int *verified)
{
    *verified = 0;
    if (s->policy == KIT_WH_UNSIGNED || (s->policy == KIT_WH_SIGNED_IF_CONFIGURED && k->nsecrets == 0))
        return 0;
    if (k->nsecrets == 0) {
        refuse(resp, 401, "WEBHOOK_SECRET_NOT_CONFIGURED",
               s->msg_not_configured ? s->msg_not_configured : DEFAULT_NOT_CONFIGURED, s, req);
        return -1;
    }
    const char *hv = http_header_get(req, s->signature_header);
    if ((!hv || !*hv) && s->signature_header_alt)
        hv = http_header_get(req, s->signature_header_alt);
    if (!hv || !*hv) {
        refuse(resp, 401, "MISSING_SIGNATURE", "Missing webhook signature header", s, req);
        return -1;
    }
    sig_header sh;
    parse_sig_header(s, hv, &sh);

    const char *ts = NULL;
    size_t ts_len = 0;
    if (s->timestamp_header) {
        ts = http_header_get(req, s->timestamp_header);
        ts_len = ts ? strlen(ts) : 0;
    } else if (s->timestamp_item) {
        ts = sh.ts;
        ts_len = sh.ts_len;
    }
    const char *tmpl = s->signed_template;
    int timed = s->timestamp_header || s->timestamp_item;
    if (s->timestamp_optional && !ts && !k->require_timestamp) {
        /* Not sent (an empty header is sent, and malformed): the sender
         * signs the body alone. */
        timed = 0;
        tmpl = NULL;
    }
    if (timed) {
        int64_t t = parse_ts(ts, ts_len);
        int64_t window = s->replay_window_s > 0 ? s->replay_window_s : KIT_WH_DEFAULT_WINDOW_S;
        if (t < 0) {
            refuse(resp, 401, "MISSING_TIMESTAMP", "Missing or malformed webhook timestamp", s,
                   req);
            return -1;
        }
        if (t < now - window || t > now + window) {
            refuse(resp, 401, "STALE_TIMESTAMP", "Webhook timestamp outside the replay window", s,
                   req);
            return -1;
        }
    }
    if (sh.n == 0) {
        refuse(resp, 401, "INVALID_SIGNATURE", "Invalid webhook signature", s, req);
        return -1;
    }
    const char *id = s->delivery_id_header ? http_header_get(req, s->delivery_id_header) : NULL;
    buf_t tmp = BUF_INIT;
    const char *data;
    size_t n;
    if (signed_string(tmpl, buf_head(&req->body), buf_pending(&req->body), ts, ts_len, id, &tmp,
                      &data, &n) < 0) {
        buf_free(&tmp);
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return -1;
    }
    int ok = any_mac_matches(k, &sh, data, n);
    buf_free(&tmp);
    if (!ok) {
        refuse(resp, 401, "INVALID_SIGNATURE", "Invalid webhook signature", s, req);
        return -1;
    }
    *verified = 1;
    return 0;
}

/* ---- identification ------------------------------------------------------------ */

/* The item at a dotted path ("event.id") of a JSON object, or NULL. */
static const cJSON *json_path(const cJSON *root, const char *path)
{
    char part[64];
    const cJSON *cur = root;
    for (const char *p = path; cur && *p;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n == 0 || n >= sizeof(part) || !cJSON_IsObject(cur))
            return NULL;
        memcpy(part, p, n);
        part[n] = '\0';
        cur = cJSON_GetObjectItemCaseSensitive(cur, part);
        p += n + (dot ? 1 : 0);
    }
    return cur;
}

/* A string or integer at path into out (cap bytes); 1 found, 0 absent. */
static int json_scalar(const cJSON *root, const char *path, char *out, size_t cap)
{
    const cJSON *it = root && path ? json_path(root, path) : NULL;
    if (cJSON_IsString(it) && it->valuestring) {
        snprintf(out, cap, "%s", it->valuestring);
        /* a value that did not fit is reported as too long by the caller */
        return strlen(it->valuestring) < cap ? 1 : -1;
    }
    /* A number only while a double holds it exactly (|v| < 2^53): past
     * that, cJSON's double is the nearest one, so distinct ids (Datadog's
     * 19-digit $ID left unquoted: 1024 apart) read as one and a new
     * delivery was answered as a duplicate of another.  Such an id is
     * absent: the body's digest stands in. */
    int64_t v;
    if (api_json_int64(it, &v) && v > -KIT_WH_EXACT_INT && v < KIT_WH_EXACT_INT) {
        snprintf(out, cap, "%" PRId64, v);
        return 1;
    }
    return 0;
}

/* Fills d's delivery_id, event and action; -1 with a 400 in resp. */
static int identify(const kit_webhook_spec *s, const http_request *req, const cJSON *json,
                    store_webhook_delivery *d, http_response *resp)
{
    const char *body = buf_head(&req->body);
    size_t len = buf_pending(&req->body);
    const char *h = s->delivery_id_header ? http_header_get(req, s->delivery_id_header) : NULL;
    int found = 0;
    if (h && *h) { /* an empty header is no id */
        if (!printable(h, strlen(h), DELIVERY_ID_MAX, 0)) {
            refuse(resp, 400, "BAD_DELIVERY_ID", "Webhook delivery id is malformed", s, req);
            return -1;
        }
        snprintf(d->delivery_id, sizeof(d->delivery_id), "%s", h);
        found = 1;
    } else if (s->delivery_id_json) {
        found = json_scalar(json, s->delivery_id_json, d->delivery_id, sizeof(d->delivery_id));
        if (found < 0 || (found && !printable(d->delivery_id, strlen(d->delivery_id),
                                              DELIVERY_ID_MAX, 0))) {
            refuse(resp, 400, "BAD_DELIVERY_ID", "Webhook delivery id is malformed", s, req);
            return -1;
        }
    }
    if (!found) {
        /* No id from the provider: the body's digest is the id, so a retry
         * of the same body is recognized (identical bodies are one delivery). */
        char hex[65];
        crypto_sha256_hex(len ? body : "", len, hex);
        snprintf(d->delivery_id, sizeof(d->delivery_id), "sha256:%s", hex);
    }
    struct {
        const char *header, *path;
        char *out;
    } fields[] = {
        { s->event_header, s->event_json, d->event },
        { NULL, s->action_json, d->action },
    };
    for (size_t i = 0; i < 2; i++) {
        const char *v = fields[i].header ? http_header_get(req, fields[i].header) : NULL;
        int got = 0;
        if (v) {
            got = strlen(v) <= EVENT_MAX ? 1 : -1;
            if (got > 0)
                snprintf(fields[i].out, STORE_WEBHOOK_EVENT_LEN, "%s", v);
        } else if (fields[i].path) {
            got = json_scalar(json, fields[i].path, fields[i].out, STORE_WEBHOOK_EVENT_LEN);
        }
        if (got < 0 || (got && !printable(fields[i].out, strlen(fields[i].out), EVENT_MAX, 1))) {
            refuse(resp, 400, "BAD_EVENT", "Webhook event or action name is malformed", s, req);
            return -1;
        }
        if (!got)
            fields[i].out[0] = '\0';
    }
    return 0;
}

/* ---- after the commit ------------------------------------------------------------- */

typedef struct {
    const kit_webhook_spec *spec;
    char id[STORE_ID_LEN];
} process_job;

static void process_job_run(worker_ctx *w, void *arg)
{
    process_job *j = arg;
    (void)kit_webhook_process(w, j->spec, j->id, time(NULL));
}

static void process_job_done(void *arg) { free(arg); }

/* Loop thread, before the 2xx is written: the row is committed, so the
 * processing can be queued.  If the queue is full the row simply stays
 * "received" for kit_webhook_process_open: nothing is lost. */
static void schedule_on_loop(http_response *resp, void *arg)
{
    (void)resp;
    process_job *j = arg;
    if (workers_submit_pool(j->spec->process_pool, process_job_run, process_job_done, j) < 0) {
        log_warn("webhook %s: delivery %s stored, processing deferred (queue unavailable)",
                 j->spec->connector, j->id);
        free(j);
    }
}

static void default_ack(const store_webhook_delivery *d, int duplicate, http_response *resp)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "ok", 1);
    cJSON_AddStringToObject(o, "id", d->id);
    cJSON_AddBoolToObject(o, "duplicate", duplicate);
    http_resp_json(resp, 200, o);
}

static int has_json_needs(const kit_webhook_spec *s)
{
    return s->delivery_id_json || s->event_json || s->action_json || s->require_json_object ||
           s->check || s->resolve_org || s->secret_fields;
}

/* Removes every member at a dotted path (a JSON object may repeat a key),
 * wiping a string value first.  The number removed. */
static int remove_path(cJSON *root, const char *path)
{
    const char *dot = strrchr(path, '.');
    cJSON *parent = root;
    if (dot) {
        char head[128];
        size_t n = (size_t)(dot - path);
        if (n >= sizeof(head))
            return 0;
        memcpy(head, path, n);
        head[n] = '\0';
        parent = (cJSON *)json_path(root, head);
    }
    const char *key = dot ? dot + 1 : path;
    int removed = 0;
    cJSON *it;
    while (cJSON_IsObject(parent) && (it = cJSON_DetachItemFromObjectCaseSensitive(parent, key))) {
        if (cJSON_IsString(it) && it->valuestring)
            OPENSSL_cleanse(it->valuestring, strlen(it->valuestring));
        cJSON_Delete(it);
        removed++;
    }
    return removed;
}

/* The body to store without spec->secret_fields: NULL when it has none of
 * them (store the bytes received), else malloc'd JSON (secret_free), or
 * NULL with *oom set. */
static char *without_secrets(const kit_webhook_spec *spec, cJSON *json, int *oom)
{
    *oom = 0;
    int removed = 0;
    for (const char *const *f = spec->secret_fields; f && *f && json; f++)
        removed += remove_path(json, *f);
    if (!removed)
        return NULL;
    char *out = cJSON_PrintUnformatted(json);
    *oom = !out;
    return out;
}

/* store_webhook_rewrite_bodies' fix: the stored body without the spec's
 * secret_fields, exactly as the intake stores a new one (NULL: keep it). */
static char *stored_without_secrets(const char *body, size_t len, void *arg, int *err)
{
    const kit_webhook_spec *spec = arg;
    cJSON *json = cJSON_ParseWithLength(body, len);
    if (!json)
        return NULL; /* not JSON: the intake would have stored it as it came */
    char *out = without_secrets(spec, json, err);
    secret_json_free(json);
    return out;
}

int kit_webhook_redact_stored(store_t *st, const kit_webhook_spec *spec, int64_t *seen,
                              int64_t *changed)
{
    *seen = *changed = 0;
    if (!spec || !spec->secret_fields || !spec->secret_fields[0])
        return STORE_OK;
    return store_webhook_rewrite_bodies(st, spec->connector, stored_without_secrets, (void *)spec,
                                        500, seen, changed);
}

/* "org:" + the SHA-256 (hex, 64) of "<org>\n<delivery id>": printable, fits
 * a delivery id, and the same for every redelivery to that org. */
static void scope_delivery_id(const char *org_id, store_webhook_delivery *d)
{
    char in[STORE_ID_LEN + 1 + STORE_WEBHOOK_KEY_LEN];
    int n = snprintf(in, sizeof(in), "%s\n%s", org_id, d->delivery_id);
    char hex[65];
    crypto_sha256_hex(in, (size_t)n, hex);
    snprintf(d->delivery_id, sizeof(d->delivery_id), "org:%s", hex);
}

/* 1 when the insert of d would find its delivery already stored for d's
 * tenant (CONFLICT: acknowledged as a duplicate), 0 when not, -1 on a store
 * failure.  The same rule as handle_at's insert: a row of the same user id
 * in another organization does not count, that organization's copy is
 * stored under the org-scoped id.  (A unique_body spec's same bytes under a
 * fresh id are found by the insert only: admit's cost is given back then.) */
static int already_stored(worker_ctx *w, const store_webhook_delivery *d)
{
    store_webhook_delivery prev;
    int rc = store_webhook_find(w->store, d->connector, d->tenant_key, d->delivery_id, &prev);
    if (rc == STORE_NOT_FOUND)
        return 0;
    if (rc != STORE_OK)
        return -1;
    if (!d->tenant_key[0] || !d->org_id[0] || !strcmp(prev.org_id, d->org_id))
        return 1;
    store_webhook_delivery scoped;
    memcpy(scoped.delivery_id, d->delivery_id, sizeof(scoped.delivery_id));
    scope_delivery_id(d->org_id, &scoped);
    rc = store_webhook_find(w->store, d->connector, d->tenant_key, scoped.delivery_id, &prev);
    return rc == STORE_OK ? 1 : rc == STORE_NOT_FOUND ? 0 : -1;
}

/* What admit took for a delivery the commit did not store goes back. */
static void give_back(worker_ctx *w, const kit_webhook_spec *spec, const kit_wh_cost *cost)
{
    if (cost->n > 0 && cost->key[0] &&
        store_rate_give_back_n(w->store, cost->key, cost->window_start, cost->n) != STORE_OK)
        log_warn("webhook %s: giving back what a delivery not stored took: %s", spec->connector,
                 store_errmsg(w->store));
}

/* The spec's adopt_key for a body, "" unless it is a usable key. */
static void adopt_key_of(const kit_webhook_spec *spec, const store_webhook_delivery *d,
                         const cJSON *json, char key[STORE_WEBHOOK_KEY_LEN])
{
    memset(key, 0, STORE_WEBHOOK_KEY_LEN);
    if (!json)
        return;
    spec->adopt_key(d, json, key);
    size_t n = strnlen(key, STORE_WEBHOOK_KEY_LEN);
    if (n == STORE_WEBHOOK_KEY_LEN || (n && !printable(key, n, STORE_WEBHOOK_KEY_LEN - 1, 0)))
        memset(key, 0, STORE_WEBHOOK_KEY_LEN);
}

static void handle_at(worker_ctx *w, const kit_webhook_spec *spec, http_request *req,
                      http_response *resp, int64_t now, int *duplicate_out)
{
    const char *why;
    if (!spec || spec_check(spec, &why) < 0) {
        http_resp_error(resp, 500, "INTERNAL", "webhook endpoint misconfigured");
        return;
    }
    size_t len = buf_pending(&req->body);
    size_t cap = spec->max_body;
    if (w && w->cfg && w->cfg->max_body > 0 && (cap == 0 || (int64_t)cap > w->cfg->max_body))
        cap = (size_t)w->cfg->max_body;
    if (cap && len > cap) {
        refuse(resp, 413, "BODY_TOO_LARGE", "Webhook body exceeds the size limit", spec, req);
        return;
    }

    if (spec->content_type && !content_type_is(http_header_get(req, "content-type"),
                                                spec->content_type)) {
        refuse(resp, 415, "UNSUPPORTED_MEDIA_TYPE", "Webhook content type not supported", spec,
               req);
        return;
    }

    kit_wh_keys *k = calloc(1, sizeof(*k));
    if (!k) {
        http_resp_error(resp, 500, "INTERNAL", "out of memory");
        return;
    }
    int verified = 0;
    if (spec->keys && spec->keys(w, req, k, resp) < 0) {
        if (resp->status < 400) /* a callback that forgot to say why */
            http_resp_error(resp, 503, "WEBHOOK_UNAVAILABLE", "webhook endpoint unavailable");
        secret_free_n(k, sizeof(*k));
        return;
    }
    int rc = verify(spec, k, req, now, resp, &verified);
    store_webhook_delivery d;
    memset(&d, 0, sizeof(d));
    snprintf(d.org_id, sizeof(d.org_id), "%s", k->org_id);
    snprintf(d.tenant_key, sizeof(d.tenant_key), "%s", k->tenant_key);
    secret_free_n(k, sizeof(*k)); /* the secrets are not needed past this point */
    if (rc < 0)
        return;

    /* Verified (or accepted unsigned by policy): the body may be read now. */
    const char *body = buf_head(&req->body);
    cJSON *json = NULL;
    if (has_json_needs(spec) && len > 0)
        json = cJSON_ParseWithLength(body, len);
    if (spec->require_json_object && !cJSON_IsObject(json)) {
        cJSON_Delete(json);
        refuse(resp, 400, "BAD_PAYLOAD", "Webhook body is not a JSON object", spec, req);
        return;
    }
    snprintf(d.connector, sizeof(d.connector), "%s", spec->connector);
    d.verified = verified;
    d.unique_body = spec->unique_body;
    if (identify(spec, req, json, &d, resp) < 0 ||
        (spec->check && spec->check(w, req, json, resp) < 0)) {
        if (resp->status < 400)
            http_resp_error(resp, 400, "BAD_PAYLOAD", "Webhook body refused");
        cJSON_Delete(json);
        return;
    }
    /* The tenant the body names, stored with the row: what adoption finds
     * it by if the tenant is not known yet. */
    if (spec->adopt_key)
        adopt_key_of(spec, &d, json, d.adopt_key);
    /* Only a verified body may name its tenant: under an unsigned policy a
     * forged one would otherwise land in (and be processed for) any org.
     * The exception is a KIT_WH_UNSIGNED spec that declares resolve_org:
     * its rows are authenticated another way (Google Chat: the bearer check
     * in keys), which adoption already relies on; without the lookups here,
     * above all the one after the commit, a binding that raced this intake
     * left the row unassigned until a restart's adoption pass. */
    int resolvable = !d.org_id[0] && spec->resolve_org &&
                     (d.verified || spec->policy == KIT_WH_UNSIGNED);
    if (resolvable) {
        char org[STORE_ID_LEN] = "";
        int r = spec->resolve_org(w, &d, json, org);
        if (r == STORE_OK && org[0])
            snprintf(d.org_id, sizeof(d.org_id), "%s", org);
        else if (r < 0)
            log_warn("webhook %s: tenant lookup failed, delivery kept without an organization",
                     spec->connector);
    }

    /* Credentials a provider puts in its bodies are not kept. */
    int oom = 0;
    char *scrubbed = without_secrets(spec, json, &oom);
    if (oom) {
        cJSON_Delete(json);
        http_resp_error(resp, 503, "WEBHOOK_UNAVAILABLE", "out of memory");
        return;
    }
    if (scrubbed) {
        body = scrubbed;
        len = strlen(scrubbed);
    }

    /* The connector's budgets, told whether this is a redelivery: a retry
     * of a stored delivery is acknowledged below without costing what a
     * new one does. */
    kit_wh_cost cost;
    memset(&cost, 0, sizeof(cost));
    if (spec->admit) {
        int again = already_stored(w, &d);
        if (again < 0 || spec->admit(w, req, json, &d, again, &cost, resp) < 0) {
            if (again < 0)
                api_store_error(w, resp);
            else if (resp->status < 400)
                http_resp_error(resp, 503, "WEBHOOK_UNAVAILABLE", "webhook endpoint unavailable");
            cJSON_Delete(json);
            secret_free(scrubbed);
            return;
        }
    }

    /* The commit that makes the 2xx true: store_webhook_insert is one
     * autocommit INSERT, and it returns only once the engine reported the
     * COMMIT done (SQLite: sqlite3_step finished the WAL commit, fsynced
     * with the default synchronous=FULL; PostgreSQL: the server's
     * acknowledgement of the implicit transaction, synchronous_commit on).
     * Nothing is queued in memory: a kill -9 right after the 2xx finds the
     * row. */
    char want_org[STORE_ID_LEN];
    memcpy(want_org, d.org_id, sizeof(want_org));
    rc = store_webhook_insert(w->store, &d, body, len, !spec->process_unassigned);
    if (rc == STORE_CONFLICT && d.tenant_key[0] && want_org[0] && strcmp(d.org_id, want_org)) {
        /* The row holding this delivery id belongs to another organization:
         * the same user id acting in two orgs (per-user URLs), with a
         * provider id or a body digest that collides.  It is not a
         * redelivery for this org: stored under an org-scoped id instead,
         * which this org's own redeliveries then meet. */
        scope_delivery_id(want_org, &d);
        memcpy(d.org_id, want_org, sizeof(d.org_id));
        d.id[0] = 0;
        rc = store_webhook_insert(w->store, &d, body, len, !spec->process_unassigned);
        if (rc == STORE_CONFLICT && strcmp(d.org_id, want_org)) {
            give_back(w, spec, &cost);
            cJSON_Delete(json);
            secret_free(scrubbed);
            api_store_error(w, resp);
            return;
        }
    }
    secret_free(scrubbed);
    if (rc != STORE_OK) /* nothing stored: a duplicate, an unknown tenant, a store failure */
        give_back(w, spec, &cost);
    if (rc == STORE_NOT_FOUND) {
        /* keys/resolve_org named an organization that does not exist */
        cJSON_Delete(json);
        refuse(resp, 404, "UNKNOWN_TENANT", "Unknown webhook tenant", spec, req);
        return;
    }
    if (rc != STORE_OK && rc != STORE_CONFLICT) {
        /* No commit, no 2xx: the provider retries. */
        cJSON_Delete(json);
        api_store_error(w, resp);
        return;
    }
    if (rc == STORE_OK && resolvable && !d.org_id[0]) {
        /* The tenant may have become known between the lookup above and the
         * commit, and the adoption that binding ran may have read the
         * unassigned rows before this one was committed.  Asked again now
         * that the row is committed: either that adoption saw the row or
         * this lookup sees the binding.  store_webhook_set_org changes only
         * a row still without an organization, so both assigning it is
         * harmless. */
        char org[STORE_ID_LEN] = "";
        if (spec->resolve_org(w, &d, json, org) == STORE_OK && org[0] &&
            store_webhook_set_org(w->store, d.id, org) == STORE_OK) {
            memcpy(d.org_id, org, sizeof(d.org_id));
            snprintf(d.status, sizeof(d.status), "received");
        }
    }
    cJSON_Delete(json);
    int duplicate = rc == STORE_CONFLICT;
    *duplicate_out = duplicate;
    if (spec->ack)
        spec->ack(&d, duplicate, req, resp);
    if (resp->status < 200 || resp->status > 299)
        default_ack(&d, duplicate, resp);
    if (!duplicate && spec->process && (d.org_id[0] || spec->process_unassigned)) {
        process_job *j = calloc(1, sizeof(*j));
        if (j) {
            j->spec = spec;
            memcpy(j->id, d.id, sizeof(j->id));
            resp->on_loop = schedule_on_loop;
            resp->on_loop_arg = j;
        }
    }
}

void kit_webhook_handle_at(worker_ctx *w, const kit_webhook_spec *spec, http_request *req,
                           http_response *resp, int64_t now)
{
    int duplicate = 0;
    handle_at(w, spec, req, resp, now, &duplicate);
    /* One count per delivery (/metrics): stored, a provider's retry of one
     * already stored, refused by a check (4xx: signature, size, body,
     * tenant), or not stored for want of the store (5xx: retried). */
    const char *outcome = resp->status >= 500 ? "error"
                        : resp->status >= 400 ? "refused"
                        : duplicate           ? "duplicate"
                                              : "stored";
    sm_webhook(spec && spec->connector ? spec->connector : "unknown", outcome);
}

void kit_webhook_handle(worker_ctx *w, const kit_webhook_spec *spec, http_request *req,
                        http_response *resp)
{
    kit_webhook_handle_at(w, spec, req, resp, (int64_t)time(NULL));
}

/* ---- processing and recovery -------------------------------------------------------- */

static int attempts_of(const kit_webhook_spec *s)
{
    return s->max_attempts > 0 ? s->max_attempts : KIT_WH_DEFAULT_ATTEMPTS;
}

/* AURORA_WEBHOOK_CLAIM_LEASE_S when the configuration has it (a worker
 * without one, e.g. a unit test's, gets the default). */
static int64_t claim_lease_s(const worker_ctx *w)
{
    int64_t v = w->cfg ? server_setting_int(w->cfg, "AURORA_WEBHOOK_CLAIM_LEASE_S") : 0;
    return v > 0 ? v : KIT_WH_CLAIM_LEASE_S;
}

/* Why these numbers: a failure is most often the provider's API or our
 * database down for a while, and the sweep runs every 20-30 s.  Retrying at
 * each sweep spent 5 attempts in ~2 minutes, so an outage of a few minutes
 * lost deliveries that had been answered 2xx.  30 s x 4^n (30 s, 2 min,
 * 8 min, 32 min, then 2 h, 2 h, 2 h with 8 attempts) rides out a short
 * blip at once and an outage of up to ~6 h 40 min without losing anything,
 * for 8 attempts per delivery in all (a poison delivery costs little).  The
 * jitter (0-25 %, never less than the schedule) spreads the deliveries of
 * one outage over several sweeps. */
int64_t kit_webhook_retry_delay(int attempt)
{
    int64_t d = KIT_WH_RETRY_BASE_S;
    for (int i = 1; i < attempt && d < KIT_WH_RETRY_MAX_S; i++)
        d *= 4;
    if (d > KIT_WH_RETRY_MAX_S)
        d = KIT_WH_RETRY_MAX_S;
    uint32_t r = 0;
    if (crypto_random_public(&r, sizeof(r)) != 0)
        r = (uint32_t)time(NULL); /* jitter only: any value will do */
    return d + (int64_t)(r % (uint32_t)(d / 4 + 1));
}

int64_t kit_webhook_occurred_at(const store_webhook_delivery *d, int64_t t)
{
    return t > 0 ? t : d->received_at;
}

int kit_webhook_process(worker_ctx *w, const kit_webhook_spec *spec, const char *id, int64_t now)
{
    if (!spec->process)
        return KIT_WH_NOT_OPEN;
    if (now <= 0)
        now = (int64_t)time(NULL); /* the claim's claimed_at, which finish names */
    store_webhook_delivery d;
    int rc = store_webhook_get(w->store, NULL, spec->connector, id, &d);
    if (rc == STORE_NOT_FOUND)
        return KIT_WH_NOT_OPEN;
    if (rc != STORE_OK) {
        log_error("webhook %s: reading %s: %s", spec->connector, id, store_errmsg(w->store));
        return STORE_ERR;
    }
    /* Without an organization it waits for kit_webhook_adopt (checked
     * before the claim, so such a row is never left claimed). */
    if (!d.org_id[0] && !spec->process_unassigned) {
        store_webhook_free(&d);
        return KIT_WH_NOT_OPEN;
    }
    /* The claim is what makes processing run once: of two workers (or a
     * worker and the recovery sweep) only one changes the row. */
    int attempt = 0; /* this claim's: d.attempts + 1 unless another claim came in between */
    rc = store_webhook_claim_attempt(w->store, id, attempts_of(spec), now - claim_lease_s(w), now,
                                     &attempt);
    if (rc != STORE_OK) {
        store_webhook_free(&d);
        if (rc == STORE_CONFLICT)
            return KIT_WH_NOT_OPEN;
        log_error("webhook %s: claiming %s: %s", spec->connector, id, store_errmsg(w->store));
        return STORE_ERR;
    }
    char err[STORE_WEBHOOK_ERROR_LEN] = "";
    int out = spec->process(w, &d, err, sizeof(err));
    store_webhook_free(&d);
    const char *status = out == KIT_WH_PROCESSED ? "processed"
                         : out == KIT_WH_IGNORED ? "ignored"
                                                 : "failed";
    if (out != KIT_WH_PROCESSED && out != KIT_WH_IGNORED) {
        out = KIT_WH_FAILED;
        log_warn("webhook %s: processing %s failed: %s", spec->connector, id,
                 err[0] ? err : "(no reason given)");
    }
    /* The last attempt schedules none: given up (store_webhook_finish). */
    int64_t retry_at = out != KIT_WH_FAILED       ? 0
                       : attempt >= attempts_of(spec) ? -1
                                                      : now + kit_webhook_retry_delay(attempt);
    /* Named by this claim's time: a worker slower than the lease still
     * records its outcome unless another worker took the delivery over. */
    rc = store_webhook_finish(w->store, id, now, status, out == KIT_WH_FAILED ? err : NULL, now,
                              retry_at);
    if (rc == STORE_NOT_FOUND)
        log_warn("webhook %s: %s is no longer this worker's (its lease ran out and it was "
                 "claimed again or put back); outcome %s not recorded",
                 spec->connector, id, status);
    else if (rc != STORE_OK)
        log_error("webhook %s: recording the outcome of %s: %s", spec->connector, id,
                  store_errmsg(w->store));
    return out;
}

int kit_webhook_process_open(worker_ctx *w, const kit_webhook_spec *spec, int max, int64_t now)
{
    if (!spec->process || max <= 0)
        return 0;
    /* One pass: a delivery that fails again waits for its retry time
     * (kit_webhook_retry_delay) until its attempts run out, never retried
     * in a loop here. */
    if (max > LIST_MAX)
        max = LIST_MAX;
    /* A claim that expired on its last attempt (the delivery killed or hung
     * its worker every time) is not handed out again: failed, with why. */
    int64_t expired = 0;
    if (store_webhook_expire_claims(w->store, spec->connector, attempts_of(spec),
                                    now - claim_lease_s(w), &expired) != STORE_OK)
        return -1;
    if (expired > 0)
        log_warn("webhook %s: %" PRId64 " deliveries failed for good: their worker died or hung "
                 "on each of %d attempts",
                 spec->connector, expired, attempts_of(spec));
    char(*ids)[STORE_ID_LEN] = calloc((size_t)max, STORE_ID_LEN);
    size_t n = 0;
    if (!ids || store_webhook_list_open(w->store, spec->connector, attempts_of(spec),
                                        now - claim_lease_s(w), now, max, ids, &n) != STORE_OK) {
        free(ids);
        return -1;
    }
    int done = 0;
    for (size_t i = 0; i < n; i++) {
        int r = kit_webhook_process(w, spec, ids[i], now);
        if (r == KIT_WH_PROCESSED || r == KIT_WH_IGNORED)
            done++;
    }
    free(ids);
    return done;
}

/* ---- adoption -------------------------------------------------------------------------- */

/* Per connector: whether kit_webhook_adopt is due (the first maintenance
 * pass of the process: a binding whose adoption a crash cut off; an
 * adoption that failed or stopped at its batch).  A few connectors adopt;
 * the table is never emptied. */
#define ADOPT_CONNECTORS 16
static struct {
    char connector[STORE_WEBHOOK_CONNECTOR_LEN];
    atomic_int checked; /* 0: a pass over every waiting key is due */
} g_adopt[ADOPT_CONNECTORS];
static pthread_mutex_t g_adopt_mu = PTHREAD_MUTEX_INITIALIZER;

static atomic_int *adopt_checked(const char *connector)
{
    atomic_int *out = NULL;
    pthread_mutex_lock(&g_adopt_mu);
    for (size_t i = 0; i < ADOPT_CONNECTORS && !out; i++) {
        if (!g_adopt[i].connector[0])
            snprintf(g_adopt[i].connector, sizeof(g_adopt[i].connector), "%s", connector);
        if (!strcmp(g_adopt[i].connector, connector))
            out = &g_adopt[i].checked;
    }
    pthread_mutex_unlock(&g_adopt_mu);
    return out;
}

static void adopt_again(const kit_webhook_spec *spec)
{
    atomic_int *c = adopt_checked(spec->connector);
    if (c)
        atomic_store(c, 0);
}

/* resolve_org for a stored delivery; with key, also its adopt_key.  The
 * resolver's answer, or STORE_ERR when the row cannot be read. */
static int resolve_stored(worker_ctx *w, const kit_webhook_spec *spec, const char *id,
                          char org[STORE_ID_LEN], char *key)
{
    store_webhook_delivery d;
    int rc = store_webhook_get(w->store, NULL, spec->connector, id, &d);
    if (rc != STORE_OK)
        return rc == STORE_NOT_FOUND ? STORE_NOT_FOUND : STORE_ERR;
    cJSON *json = d.body_len ? cJSON_ParseWithLength(d.body, d.body_len) : NULL;
    if (key)
        adopt_key_of(spec, &d, json, key);
    org[0] = '\0';
    rc = spec->resolve_org(w, &d, json, org);
    cJSON_Delete(json);
    store_webhook_free(&d);
    return rc == STORE_OK && !org[0] ? STORE_NOT_FOUND : rc;
}

/* Pages over the unassigned deliveries with adopt_key key, oldest first
 * (key NULL: those stored without one, before migration 14, which get
 * theirs here), at most max rows read: each one resolve_org now assigns is
 * assigned and processed.  Returns how many were assigned, -1 when the
 * store failed before any was; *more when max rows were read. */
static int adopt_rows(worker_ctx *w, const kit_webhook_spec *spec, const char *key, int max,
                      int *more)
{
    char(*ids)[STORE_ID_LEN] = calloc(LIST_MAX, STORE_ID_LEN);
    int64_t *seqs = calloc(LIST_MAX, sizeof(*seqs));
    *more = 0;
    if (!ids || !seqs) {
        free(ids);
        free(seqs);
        return -1;
    }
    int assigned = 0, read = 0, failed = 0;
    int64_t after_seq = 0;
    char after_id[STORE_ID_LEN] = "";
    while (read < max) {
        int page = max - read < LIST_MAX ? max - read : LIST_MAX;
        size_t n = 0;
        if (store_webhook_list_unassigned(w->store, spec->connector, key, after_seq, after_id,
                                          page, ids, seqs, &n) != STORE_OK) {
            failed = 1;
            break;
        }
        for (size_t i = 0; i < n; i++) {
            char org[STORE_ID_LEN], found[STORE_WEBHOOK_KEY_LEN];
            int r = resolve_stored(w, spec, ids[i], org, key ? NULL : found);
            if (r == STORE_OK)
                r = store_webhook_set_org(w->store, ids[i], org);
            if (r == STORE_OK) {
                assigned++;
                if (spec->process)
                    (void)kit_webhook_process(w, spec, ids[i], (int64_t)time(NULL));
            } else if (r != STORE_NOT_FOUND) {
                failed = 1; /* the store or the resolver could not tell: asked again later */
            } else if (!key && store_webhook_set_adopt_key(w->store, ids[i], found) == STORE_ERR) {
                failed = 1; /* no tenant yet (or the row is gone): it waits with its key */
            }
        }
        read += (int)n;
        if (n < (size_t)page)
            break;
        after_seq = seqs[n - 1];
        memcpy(after_id, ids[n - 1], STORE_ID_LEN);
    }
    free(ids);
    free(seqs);
    if (read >= max)
        *more = 1;
    if (failed)
        *more = 1;
    return failed && assigned == 0 ? -1 : assigned;
}

int kit_webhook_adopt_key(worker_ctx *w, const kit_webhook_spec *spec, const char *key)
{
    if (!spec->resolve_org || !spec->adopt_key || !key || !*key)
        return 0;
    int more = 0;
    int n = adopt_rows(w, spec, key, KIT_WH_ADOPT_BATCH, &more);
    if (n < 0 || more)
        adopt_again(spec); /* the rest (or a retry) at the next kit_webhook_maintain */
    return n;
}

int kit_webhook_adopt(worker_ctx *w, const kit_webhook_spec *spec, int max, int *more)
{
    if (more)
        *more = 0;
    if (!spec->resolve_org || !spec->adopt_key || max <= 0)
        return 0;
    /* One seek per distinct key (its oldest delivery decides whether the
     * key resolves now), then that key's deliveries only: the cost follows
     * the tenants waiting and the deliveries adopted, not the rows stored. */
    int assigned = 0, failed = 0, cut = 0;
    char after[STORE_WEBHOOK_KEY_LEN] = "";
    for (;;) {
        char key[STORE_WEBHOOK_KEY_LEN], id[STORE_ID_LEN], org[STORE_ID_LEN];
        int rc = store_webhook_unassigned_key_next(w->store, spec->connector, after, key, id);
        if (rc == STORE_NOT_FOUND)
            break;
        if (rc != STORE_OK) {
            failed = 1;
            break;
        }
        memcpy(after, key, sizeof(after));
        rc = resolve_stored(w, spec, id, org, NULL);
        if (rc == STORE_NOT_FOUND)
            continue;
        if (rc != STORE_OK) {
            failed = 1;
            continue;
        }
        if (assigned >= max) {
            cut = 1;
            break;
        }
        int key_more = 0;
        int n = adopt_rows(w, spec, key, max - assigned, &key_more);
        if (n < 0)
            failed = 1;
        else
            assigned += n;
        if (key_more) {
            cut = 1;
            if (assigned >= max)
                break;
        }
    }
    if (more)
        *more = cut || failed;
    return failed && assigned == 0 ? -1 : assigned;
}

int64_t kit_webhook_prune_unassigned(worker_ctx *w, const kit_webhook_spec *spec, int64_t before)
{
    int64_t deleted = 0;
    if (store_webhook_prune_unassigned(w->store, spec->connector, before, KIT_WH_PRUNE_BATCH,
                                       &deleted) != STORE_OK)
        return -1;
    return deleted;
}

int kit_webhook_maintain(worker_ctx *w, const kit_webhook_spec *spec, int64_t now)
{
    if (!spec->resolve_org || !spec->adopt_key)
        return 0;
    int failed = 0, assigned = 0;
    int64_t days = w->cfg ? server_setting_int(w->cfg, "AURORA_WEBHOOK_UNASSIGNED_RETENTION_DAYS")
                          : 0;
    if (days > 0) {
        int64_t gone = kit_webhook_prune_unassigned(w, spec, now - days * 86400);
        if (gone < 0)
            failed = 1;
        else if (gone > 0)
            log_info("webhook %s: %" PRId64 " deliveries still without an organization after %"
                     PRId64 " days deleted (AURORA_WEBHOOK_UNASSIGNED_RETENTION_DAYS)",
                     spec->connector, gone, days);
    }
    int more = 0;
    int n = adopt_rows(w, spec, NULL, KIT_WH_BACKFILL_BATCH, &more);
    if (n < 0)
        failed = 1;
    else
        assigned += n;
    atomic_int *checked = adopt_checked(spec->connector);
    if (checked && !atomic_exchange(checked, 1)) {
        n = kit_webhook_adopt(w, spec, KIT_WH_ADOPT_BATCH, &more);
        if (n < 0 || more)
            atomic_store(checked, 0);
        if (n < 0)
            failed = 1;
        else
            assigned += n;
    }
    if (assigned > 0)
        log_info("webhook %s: %d deliveries received before their tenant was known are now "
                 "assigned", spec->connector, assigned);
    return failed && assigned == 0 ? -1 : assigned;
}

/* ---- read API ------------------------------------------------------------------------- */

static cJSON *delivery_json(const store_webhook_delivery *d, kit_wh_annotate annotate)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", d->id);
    cJSON_AddStringToObject(o, "delivery_id", d->delivery_id);
    cJSON_AddStringToObject(o, "event", d->event);
    cJSON_AddStringToObject(o, "action", d->action);
    cJSON_AddStringToObject(o, "status", d->status);
    cJSON_AddBoolToObject(o, "verified", d->verified);
    cJSON_AddNumberToObject(o, "attempts", d->attempts);
    api_add_time(o, "received_at", d->received_at);
    api_add_time(o, "processed_at", d->processed_at > 0 ? d->processed_at : 0);
    if (annotate)
        annotate(d, o);
    return o;
}

/* Cursor "<received_seq>.<id>" of the last row of a page; 0 or -1. */
static int parse_cursor(const char *c, int64_t *seq, char id[STORE_ID_LEN])
{
    const char *dot = strchr(c, '.');
    if (!dot || dot == c || dot - c > 19)
        return -1;
    int64_t v = 0;
    for (const char *p = c; p < dot; p++) {
        if (*p < '0' || *p > '9' || v > (INT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (*p - '0');
    }
    const char *rest = dot + 1;
    size_t n = strlen(rest);
    if (v <= 0 || n == 0 || n >= STORE_ID_LEN || !printable(rest, n, STORE_ID_LEN - 1, 0))
        return -1;
    *seq = v;
    memcpy(id, rest, n + 1);
    return 0;
}

void kit_webhook_list_events(worker_ctx *w, const char *connector, http_request *req,
                             http_response *resp)
{
    kit_webhook_list_events_ex(w, connector, NULL, req, resp);
}

void kit_webhook_list_events_ex(worker_ctx *w, const char *connector, kit_wh_annotate annotate,
                                http_request *req, http_response *resp)
{
    if (!req->auth.org_id[0]) {
        http_resp_error(resp, 400, "ORG_REQUIRED", "an organization is required");
        return;
    }
    char arg[96];
    int limit = LIST_DEFAULT;
    if (http_query_get(req, "limit", arg, sizeof(arg))) {
        char *end;
        errno = 0;
        long v = strtol(arg, &end, 10);
        if (errno || end == arg || *end || v < 1 || v > LIST_MAX) {
            http_resp_error(resp, 400, "BAD_REQUEST", "limit must be an integer from 1 to %d",
                            LIST_MAX);
            return;
        }
        limit = (int)v;
    }
    int64_t seq = 0;
    char before[STORE_ID_LEN] = "";
    if (http_query_get(req, "cursor", arg, sizeof(arg)) && parse_cursor(arg, &seq, before) < 0) {
        http_resp_error(resp, 400, "BAD_REQUEST", "cursor is malformed");
        return;
    }
    char event[STORE_WEBHOOK_EVENT_LEN + 2] = ""; /* room to see one that is too long */
    if (http_query_get(req, "event", event, sizeof(event)) && event[0] &&
        (strlen(event) >= STORE_WEBHOOK_EVENT_LEN || !printable(event, strlen(event), EVENT_MAX, 1))) {
        http_resp_error(resp, 400, "BAD_REQUEST", "event is malformed");
        return;
    }
    store_webhook_delivery *list = NULL;
    size_t n = 0;
    /* One more than asked tells whether a next page exists. */
    if (store_webhook_list(w->store, req->auth.org_id, connector, event, seq, before, limit + 1,
                           &list, &n) != STORE_OK) {
        api_store_error(w, resp);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "events");
    size_t shown = n > (size_t)limit ? (size_t)limit : n;
    for (size_t i = 0; i < shown; i++)
        cJSON_AddItemToArray(arr, delivery_json(&list[i], annotate));
    if (n > shown) {
        char cur[96];
        snprintf(cur, sizeof(cur), "%" PRId64 ".%s", list[shown - 1].received_seq,
                 list[shown - 1].id);
        cJSON_AddStringToObject(o, "next_cursor", cur);
    } else {
        cJSON_AddNullToObject(o, "next_cursor");
    }
    store_webhook_list_free(list, n);
    http_resp_json(resp, 200, o);
}

void kit_webhook_get_event(worker_ctx *w, const char *connector, const char *event_id,
                           http_request *req, http_response *resp)
{
    kit_webhook_get_event_ex(w, connector, NULL, event_id, req, resp);
}

void kit_webhook_get_event_ex(worker_ctx *w, const char *connector, kit_wh_annotate annotate,
                              const char *event_id, http_request *req, http_response *resp)
{
    if (!req->auth.org_id[0]) {
        http_resp_error(resp, 400, "ORG_REQUIRED", "an organization is required");
        return;
    }
    store_webhook_delivery d;
    int rc = event_id && printable(event_id, strlen(event_id), STORE_ID_LEN - 1, 0)
                 ? store_webhook_get(w->store, req->auth.org_id, connector, event_id, &d)
                 : STORE_NOT_FOUND;
    if (rc == STORE_NOT_FOUND) {
        http_resp_error(resp, 404, "EVENT_NOT_FOUND", "event not found");
        return;
    }
    if (rc != STORE_OK) {
        api_store_error(w, resp);
        return;
    }
    cJSON *o = delivery_json(&d, annotate);
    /* cJSON takes bytes that are not UTF-8 inside strings and prints them
     * back raw: such a body goes out as base64, or the answer is not JSON. */
    int text = utf8_valid(d.body, d.body_len);
    cJSON *payload = text ? cJSON_ParseWithLength(d.body, d.body_len) : NULL;
    if (payload) {
        cJSON_AddItemToObject(o, "payload", payload);
    } else if (text) {
        cJSON_AddStringToObject(o, "payload_text", d.body);
    } else {
        char *b64 = crypto_base64(d.body, d.body_len);
        cJSON_AddStringToObject(o, "payload_base64", b64 ? b64 : "");
        free(b64);
    }
    store_webhook_free(&d);
    http_resp_json(resp, 200, o);
}
