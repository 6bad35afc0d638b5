/* fuzz_kit_webhook.c — the webhook kit's request path
 * (server/connectors/kit_webhook.c): signature header parsing (lists,
 * prefixes, timestamp items), timestamps, templates, delivery ids, JSON
 * identification, persistence in an in-memory store.
 *
 * Input: one mode byte, then "signature\ntimestamp\ndelivery id\n" and the
 * body (the rest, any bytes).  Mode bit 0 picks the declaration (Slack-like:
 * timestamp header and "v0:{ts}:{body}"; or Stripe-like: "t=" item in a
 * ','-separated header and "{ts}.{body}"); bit 1 replaces the signature with
 * the right one, computed here with OpenSSL's HMAC over a signed string built
 * independently of the kit.
 *
 * Invariants on every input:
 *  - the handler never crashes and answers 200, 400, 401, 413 or 415;
 *  - 200 only for a correctly signed request (the oracle's MAC was sent)
 *    with a timestamp inside the window;
 *  - a correctly signed request inside the window with a well-formed
 *    delivery id is accepted, and the stored body is the input body, byte
 *    for byte. */
#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "fuzz_util.h"
#include "http.h"
#include "kit_webhook.h"
#include "log.h"
#include "server_config.h"
#include "store.h"

#define SECRET "fuzz-secret"
#define NOW 1700000000

static int keys(worker_ctx *w, const http_request *req, kit_wh_keys *out, http_response *resp)
{
    return kit_wh_keys_add(out, SECRET, strlen(SECRET));
}

static const kit_webhook_spec slack_like = {
    .connector = "fz-slack",
    .signature_header = "x-sig",
    .signature_prefix = "v0=",
    .signed_template = "v0:{ts}:{body}",
    .timestamp_header = "x-ts",
    .delivery_id_header = "x-id",
    .keys = keys,
};

static const kit_webhook_spec stripe_like = {
    .connector = "fz-stripe",
    .signature_header = "x-sig",
    .signature_prefix = "v1=",
    .signature_separator = ',',
    .timestamp_item = "t=",
    .signed_template = "{ts}.{body}",
    .delivery_id_json = "id",
    .event_json = "type",
    .action_json = "a.b",
    .keys = keys,
};

/* The next '\n'-terminated field of [*p, end). */
static char *field(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    size_t n = nl ? (size_t)(nl - *p) : (size_t)(end - *p);
    char *s = fuzz_strndup(*p, n);
    *p += n + (nl ? 1 : 0);
    return s;
}

static int all_digits(const char *s)
{
    if (!*s || strlen(s) > 12)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

static int id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static store_t *st;
    static server_config cfg = { .max_body = 1 << 16 };
    if (!st) {
        char err[256];
        log_setup("fuzz", "error", "text");
        if (store_open(":memory:", &st, err, sizeof(err)) != STORE_OK)
            fuzz_fail("store_open: %s", err);
    }
    if (size < 1)
        return 0;
    const uint8_t *p = data + 1, *end = data + size;
    int stripe = data[0] & 1, sign = data[0] & 2;
    const kit_webhook_spec *spec = stripe ? &stripe_like : &slack_like;
    char *sig = field(&p, end), *ts = field(&p, end), *id = field(&p, end);
    size_t blen = (size_t)(end - p);
    const uint8_t *body = p;

    /* The oracle: the signed string and its MAC, built here. */
    char *oracle_sig = NULL;
    if (sign) {
        size_t tl = strlen(ts), n = tl + blen + 4;
        unsigned char *msg = malloc(n);
        size_t m = 0;
        if (!stripe) {
            memcpy(msg, "v0:", 3);
            m = 3;
        }
        memcpy(msg + m, ts, tl);
        m += tl;
        msg[m++] = stripe ? '.' : ':';
        memcpy(msg + m, body, blen);
        m += blen;
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int ml = 0;
        HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), msg, m, mac, &ml);
        free(msg);
        char hex[65];
        crypto_hex(mac, ml, hex);
        oracle_sig = malloc(strlen(ts) + 80);
        if (stripe)
            sprintf(oracle_sig, "t=%s,v1=%s", ts, hex);
        else
            sprintf(oracle_sig, "v0=%s", hex);
    }

    http_request req;
    http_response resp;
    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    http_header h[3];
    int nh = 0;
    h[nh++] = (http_header){ .name = "x-sig", .value = oracle_sig ? oracle_sig : sig };
    if (!stripe) {
        h[nh++] = (http_header){ .name = "x-ts", .value = ts };
        h[nh++] = (http_header){ .name = "x-id", .value = id };
    }
    req.headers = h;
    req.nheaders = (size_t)nh;
    if (blen && buf_append(&req.body, body, blen) < 0)
        fuzz_fail("out of memory");
    worker_ctx w = { .store = st, .cfg = &cfg };
    kit_webhook_handle_at(&w, spec, &req, &resp, NOW);
    int s = resp.status;
    FUZZ_CHECK(s == 200 || s == 400 || s == 401 || s == 413 || s == 415, "status %d", s);
    int in_window = all_digits(ts) && llabs(atoll(ts) - NOW) <= KIT_WH_DEFAULT_WINDOW_S;
    if (s == 200)
        FUZZ_CHECK(sign && in_window, "accepted without a valid signature in the window");
    /* Slack-like: the id is the header; an empty one falls back to the digest. */
    int well_formed = stripe || !*id || id_ok(id);
    if (sign && in_window && well_formed && blen <= (size_t)cfg.max_body && !stripe) {
        FUZZ_CHECK(s == 200, "a correctly signed request was refused (%d)", s);
        cJSON *o = cJSON_ParseWithLength(buf_head(&resp.body), buf_pending(&resp.body));
        const cJSON *rid = cJSON_GetObjectItemCaseSensitive(o, "id");
        FUZZ_CHECK(cJSON_IsString(rid), "no id in the answer");
        store_webhook_delivery d;
        FUZZ_CHECK(store_webhook_get(st, NULL, spec->connector, rid->valuestring, &d) == STORE_OK,
                   "accepted delivery not stored");
        /* a duplicate id may hold an earlier body: compare only new rows */
        if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(o, "duplicate")))
            FUZZ_CHECK(d.body_len == blen && (blen == 0 || !memcmp(d.body, body, blen)),
                       "stored body differs from the received one");
        store_webhook_free(&d);
        cJSON_Delete(o);
    }
    if (resp.on_loop) /* no processing declared: never set */
        fuzz_fail("processing scheduled without a process callback");
    buf_free(&req.body);
    buf_free(&resp.body);
    free(sig);
    free(ts);
    free(id);
    free(oracle_sig);
    return 0;
}
