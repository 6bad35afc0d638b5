/* secrets.c — backend selection and the checks every backend shares: path
 * and size validation, error messages that name backend and path (and never
 * the value), sorted de-duplicated listings, wiping of returned values. */
#include "secrets.h"
#include "http_client.h"
#include "server_metrics.h"
#include "log.h"
#include "secret.h"
#include "crypto.h"
#include "utf8.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct secrets {
    const secrets_backend *be;
    void *impl;
    size_t list_max; /* the most paths one listing returns */
};

/* A new backend is one line here. */
static const secrets_backend *const backends[] = {
    &secrets_backend_local,
    &secrets_backend_vault,
    &secrets_backend_aws,
};
#define NBACKENDS (sizeof(backends) / sizeof(backends[0]))

static void say(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

const char *secrets_strerror(int rc)
{
    switch (rc) {
    case SECRETS_OK:
        return "ok";
    case SECRETS_NOT_FOUND:
        return "not found";
    case SECRETS_E_INVALID:
        return "invalid request";
    case SECRETS_E_UNAVAILABLE:
        return "backend unavailable";
    case SECRETS_E_DENIED:
        return "access denied";
    case SECRETS_E_INTEGRITY:
        return "integrity check failed";
    default:
        return "error";
    }
}

/* ---- paths ------------------------------------------------------------------ */

static int path_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' ||
           c == '_' || c == '+' || c == '=' || c == '.' || c == '@' || c == '-';
}

int secrets_path_valid(const char *path)
{
    if (!path)
        return 0;
    size_t n = strlen(path);
    if (n <= strlen(SECRETS_ROOT) || n > SECRETS_MAX_PATH ||
        strncmp(path, SECRETS_ROOT, strlen(SECRETS_ROOT)) != 0 || path[n - 1] == '/')
        return 0;
    /* Segments: non-empty, not "." or ".." (a Vault URL or a file name must
     * never climb out of its place). */
    const char *seg = path;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && !path_char(path[i]))
            return 0;
        if (i == n || path[i] == '/') {
            size_t len = (size_t)(path + i - seg);
            if (len == 0 || (len == 1 && seg[0] == '.') ||
                (len == 2 && seg[0] == '.' && seg[1] == '.'))
                return 0;
            seg = path + i + 1;
        }
    }
    return 1;
}

/* A list prefix: any leading part of a valid path ("" and "aur" included). */
static int prefix_valid(const char *prefix)
{
    size_t n = strlen(prefix);
    if (n > SECRETS_MAX_PATH)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!path_char(prefix[i]))
            return 0;
    return strstr(prefix, "//") == NULL && strstr(prefix, "/../") == NULL &&
           strstr(prefix, "/./") == NULL;
}

/* One path segment: an id or name with a '/' (or nothing) would address
 * another organization's, user's or connector's secrets. */
static int one_segment(const char *s)
{
    return s && *s && !strchr(s, '/');
}

int secrets_user_prefix(char *out, size_t cap, const char *org_id, const char *user_id,
                        const char *connector)
{
    if (!out || !cap)
        return -1;
    out[0] = '\0';
    if (!one_segment(org_id) || !one_segment(user_id) || !one_segment(connector))
        return -1;
    int n = snprintf(out, cap, SECRETS_ROOT "orgs/%s/users/%s/%s/", org_id, user_id, connector);
    /* Valid as a path once a field is appended: check it with one. */
    char probe[SECRETS_MAX_PATH + 2];
    if (n < 0 || (size_t)n >= cap || (size_t)n + 1 > SECRETS_MAX_PATH ||
        snprintf(probe, sizeof(probe), "%sx", out) < 0 || !secrets_path_valid(probe)) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

int secrets_user_path(char *out, size_t cap, const char *org_id, const char *user_id,
                      const char *connector, const char *field)
{
    if (!out || !cap)
        return -1;
    char prefix[SECRETS_MAX_PATH + 1];
    if (secrets_user_prefix(prefix, sizeof(prefix), org_id, user_id, connector) < 0 ||
        !one_segment(field)) {
        out[0] = '\0';
        return -1;
    }
    int n = snprintf(out, cap, "%s%s", prefix, field);
    if (n < 0 || (size_t)n >= cap || !secrets_path_valid(out)) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

int secrets_ref(const secrets_t *s, const char *path, char *out, size_t cap)
{
    if (!s || !out || !secrets_path_valid(path))
        return -1;
    int n = snprintf(out, cap, "%s:%s", s->be->name, path);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int secrets_ref_parse(const char *ref, char *backend, size_t bcap, const char **path)
{
    const char *colon = ref ? strchr(ref, ':') : NULL;
    if (!colon || colon == ref || (size_t)(colon - ref) >= bcap || !secrets_path_valid(colon + 1))
        return -1;
    memcpy(backend, ref, (size_t)(colon - ref));
    backend[colon - ref] = '\0';
    *path = colon + 1;
    return 0;
}

/* ---- open / close ------------------------------------------------------------ */

int secrets_open(const secrets_config *cfg, secrets_t **out, char *err, size_t errlen)
{
    if (out)
        *out = NULL;
    if (!cfg || !out) {
        say(err, errlen, "secrets: missing configuration");
        return SECRETS_E_INVALID;
    }
    const char *name = cfg->backend && *cfg->backend ? cfg->backend : "local";
    const secrets_backend *be = NULL;
    for (size_t i = 0; i < NBACKENDS; i++)
        if (!strcmp(backends[i]->name, name))
            be = backends[i];
    if (!be) {
        say(err, errlen, "SECRETS_BACKEND must be local, vault or aws_secrets_manager (got \"%.40s\")",
            name);
        return SECRETS_E_INVALID;
    }
    secrets_t *s = calloc(1, sizeof(*s));
    if (!s) {
        say(err, errlen, "secrets: out of memory");
        return SECRETS_E_OTHER;
    }
    char detail[384] = "";
    s->be = be;
    s->list_max = cfg->list_max_paths ? cfg->list_max_paths : SECRETS_LIST_MAX_PATHS;
    int rc = be->open(cfg, &s->impl, detail, sizeof(detail));
    if (rc != SECRETS_OK) {
        say(err, errlen, "secrets backend %s: %s", be->name, detail);
        free(s);
        return rc;
    }
    *out = s;
    return SECRETS_OK;
}

void secrets_close(secrets_t *s)
{
    if (!s)
        return;
    s->be->close(s->impl);
    free(s);
}

const char *secrets_backend_name(const secrets_t *s)
{
    return s ? s->be->name : "none";
}

long secrets_maintain(secrets_t *s)
{
    if (!s || !s->be->maintain)
        return 0;
    return s->be->maintain(s->impl);
}

void *secrets_impl(secrets_t *s)
{
    return s ? s->impl : NULL;
}

void secrets_free(unsigned char *val, size_t len)
{
    if (!val)
        return;
    secret_free_n(val, len);
}

/* ---- operations --------------------------------------------------------------- */

/* Set on threads that must not wait on the backend (secrets.h). */
static _Thread_local const char *t_forbidden;

void secrets_forbid_on_this_thread(const char *kind)
{
    t_forbidden = kind ? kind : "forbidden thread";
}

/* SECRETS_OK, or SECRETS_E_INVALID on a thread that must not call the backend. */
static int check_thread(const secrets_t *s, const char *op, const char *path, char *err,
                        size_t errlen)
{
    if (!t_forbidden)
        return SECRETS_OK;
    say(err, errlen, "secrets backend %s: %s %s: called on a %s, which must not wait on the "
                     "secrets backend (a route or task on the wrong worker pool)",
        s->be->name, op, path ? path : "(none)", t_forbidden);
    log_error("%s", err);
    return SECRETS_E_INVALID;
}

/* "secrets backend vault: get aurora/x: <detail>" */
static int fail(const secrets_t *s, int rc, const char *op, const char *path, const char *detail,
                char *err, size_t errlen)
{
    say(err, errlen, "secrets backend %s: %s %s: %s", s->be->name, op, path ? path : "(none)",
        detail && *detail ? detail : secrets_strerror(rc));
    return rc;
}

static int check_path(const secrets_t *s, const char *op, const char *path, char *err,
                      size_t errlen)
{
    if (secrets_path_valid(path))
        return SECRETS_OK;
    /* An invalid path is still safe to name: it is only ever echoed in a
     * bounded, printable form. */
    char shown[80];
    size_t n = 0;
    for (const char *p = path ? path : ""; *p && n + 1 < sizeof(shown); p++)
        shown[n++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
    shown[n] = '\0';
    say(err, errlen,
        "secrets backend %s: %s \"%s\": invalid path (must start with " SECRETS_ROOT
        ", at most %d characters of A-Z a-z 0-9 / _ + = . @ -, no empty or dot segments)",
        s->be->name, op, shown, SECRETS_MAX_PATH);
    return SECRETS_E_INVALID;
}

/* Latency and errors per backend call (/metrics); "not found" is an
 * answer, not a failure of the backend. */
static void record_call(const secrets_t *s, const char *op, double t0, int rc)
{
    sm_secrets_call(s->be->name, op, sm_now() - t0, rc == SECRETS_OK || rc == SECRETS_NOT_FOUND);
}

/* ---- values quoted in a backend's message -------------------------------------- */

/* How much of a value a message must quote to be withheld: 16 bytes (of a
 * token, a key, a password) are worth stealing, and ordinary prose of a
 * backend's message never matches 16 bytes of a credential by chance.
 * Shorter values are looked for whole (from 4 bytes on). */
#define QUOTE_WINDOW 16
#define QUOTE_MAX_MESSAGE 512 /* the messages searched: the backends' detail, < 384 */

/* Vault's and AWS's text reaches the message with its control characters
 * turned into spaces (a JSON key's `{\n  "type"` quoted as `{   "type"`):
 * both sides are compared so. */
static unsigned char quote_norm(unsigned char b)
{
    return b < 0x20 || b == 0x7f ? ' ' : b;
}

/* Whether msg holds any QUOTE_WINDOW consecutive bytes of v (as they are, or
 * with control characters turned), wherever in v they are: the hashes of
 * msg's windows go into a small table and one rolling hash walks v, so a
 * 64 KiB value costs one pass over it, not one search of msg per offset. */
static int quotes_window(const char *msg, size_t mlen, const unsigned char *v, size_t n)
{
    if (n < 4 || mlen < (n < QUOTE_WINDOW ? n : QUOTE_WINDOW))
        return 0;
    if (mlen > QUOTE_MAX_MESSAGE)
        mlen = QUOTE_MAX_MESSAGE;
    if (n < QUOTE_WINDOW) {
        for (size_t i = 0; i + n <= mlen; i++) {
            size_t k = 0;
            while (k < n && quote_norm((unsigned char)msg[i + k]) == quote_norm(v[k]))
                k++;
            if (k == n)
                return 1;
        }
        return 0;
    }
    enum { SLOTS = 1024 }; /* a power of two, over twice the windows of a message */
    uint64_t hash[SLOTS];
    uint16_t at[SLOTS]; /* the window's offset + 1; 0: empty */
    memset(at, 0, sizeof(at));
    const uint64_t B = 1099511628211u; /* FNV's prime: odd, so B^W is too */
    uint64_t bw = 1, h = 0;
    for (size_t i = 0; i < QUOTE_WINDOW; i++)
        bw *= B;
    for (size_t i = 0; i < mlen; i++) {
        h = h * B + quote_norm((unsigned char)msg[i]);
        if (i >= QUOTE_WINDOW)
            h -= bw * quote_norm((unsigned char)msg[i - QUOTE_WINDOW]);
        if (i + 1 >= QUOTE_WINDOW) {
            size_t slot = (size_t)(h ^ (h >> 29)) & (SLOTS - 1);
            while (at[slot])
                slot = (slot + 1) & (SLOTS - 1);
            hash[slot] = h;
            at[slot] = (uint16_t)(i + 2 - QUOTE_WINDOW);
        }
    }
    int hit = 0;
    h = 0;
    for (size_t i = 0; i < n && !hit; i++) {
        h = h * B + quote_norm(v[i]);
        if (i >= QUOTE_WINDOW)
            h -= bw * quote_norm(v[i - QUOTE_WINDOW]);
        if (i + 1 < QUOTE_WINDOW)
            continue;
        const unsigned char *w = v + i + 1 - QUOTE_WINDOW;
        for (size_t slot = (size_t)(h ^ (h >> 29)) & (SLOTS - 1); at[slot] && !hit;
             slot = (slot + 1) & (SLOTS - 1)) {
            if (hash[slot] != h)
                continue;
            const char *m = msg + at[slot] - 1;
            size_t k = 0;
            while (k < QUOTE_WINDOW && quote_norm((unsigned char)m[k]) == quote_norm(w[k]))
                k++;
            hit = k == QUOTE_WINDOW;
        }
    }
    secret_wipe(&h, sizeof(h)); /* a hash of the value's last window */
    return hit;
}

/* Whether msg quotes the value: as it is (a message that decoded what it
 * quotes), or as the request carried it, which a backend quoting its raw
 * input shows: a text value JSON-escaped (`"` and `\` escaped, control
 * characters as \n or \u00XX: a value with one every few bytes has no
 * 16 bytes in common with the escaped text), other bytes base64-encoded
 * (the Vault and AWS backends send them so). */
static int quotes_value(const char *msg, const void *val, size_t len)
{
    size_t mlen = strlen(msg);
    const unsigned char *v = val;
    if (quotes_window(msg, mlen, v, len))
        return 1;
    int hit = 0;
    if (utf8_valid(val, len)) {
        int escaped = 0;
        for (size_t i = 0; i < len && !escaped; i++)
            escaped = v[i] < 0x20 || v[i] == '"' || v[i] == '\\' || v[i] == 0x7f;
        if (!escaped)
            return 0;
        /* A copy to NUL-terminate it for cJSON (utf8_valid refuses NUL). */
        char *copy = malloc(len + 1);
        cJSON *str = NULL;
        char *text = NULL;
        if (copy) {
            memcpy(copy, val, len);
            copy[len] = '\0';
            str = cJSON_CreateString(copy);
            text = secret_json_print(str); /* "…" */
        }
        /* Out of memory: withheld, as nothing tells it does not quote it. */
        hit = !text || quotes_window(msg, mlen, (const unsigned char *)text + 1,
                                     strlen(text) - 2);
        if (str && str->valuestring)
            secret_wipe(str->valuestring, strlen(str->valuestring));
        cJSON_Delete(str);
        secret_free(text);
        secret_free_n(copy, copy ? len + 1 : 0);
    } else {
        char *b64 = crypto_base64(val, len);
        hit = !b64 || quotes_window(msg, mlen, (const unsigned char *)b64, strlen(b64));
        secret_free(b64);
    }
    return hit;
}

int secrets_put(secrets_t *s, const char *path, const void *val, size_t len, char *err,
                size_t errlen)
{
    if (!s) {
        say(err, errlen, "secrets: not configured");
        return SECRETS_E_INVALID;
    }
    int rc = check_path(s, "put", path, err, errlen);
    if (rc == SECRETS_OK)
        rc = check_thread(s, "put", path, err, errlen);
    if (rc != SECRETS_OK)
        return rc;
    if (!val || len == 0)
        return fail(s, SECRETS_E_INVALID, "put", path, "empty value", err, errlen);
    if (len > SECRETS_MAX_VALUE) {
        char d[96];
        snprintf(d, sizeof(d), "value too large (%zu bytes, max %d)", len, SECRETS_MAX_VALUE);
        return fail(s, SECRETS_E_INVALID, "put", path, d, err, errlen);
    }
    char detail[384] = "";
    double t0 = sm_now();
    rc = s->be->put(s->impl, path, val, len, detail, sizeof(detail));
    record_call(s, "put", t0, rc);
    if (rc == SECRETS_OK)
        return SECRETS_OK;
    /* A backend's answer is passed on only if it does not quote the value
     * (a validation message echoing its input would leak it). */
    if (quotes_value(detail, val, len))
        snprintf(detail, sizeof(detail), "%s (the backend's message is withheld: it quoted the "
                                         "value)", secrets_strerror(rc));
    return fail(s, rc, "put", path, detail, err, errlen);
}

int secrets_get(secrets_t *s, const char *path, unsigned char **val, size_t *len, char *err,
                size_t errlen)
{
    if (val)
        *val = NULL;
    if (len)
        *len = 0;
    if (!s || !val || !len) {
        say(err, errlen, "secrets: not configured");
        return SECRETS_E_INVALID;
    }
    int rc = check_path(s, "get", path, err, errlen);
    if (rc == SECRETS_OK)
        rc = check_thread(s, "get", path, err, errlen);
    if (rc != SECRETS_OK)
        return rc;
    char detail[384] = "";
    double t0 = sm_now();
    rc = s->be->get(s->impl, path, val, len, detail, sizeof(detail));
    record_call(s, "get", t0, rc);
    if (rc == SECRETS_OK && *len > SECRETS_MAX_VALUE) {
        /* Written by someone else (the vault CLI, the AWS console): still
         * returned, but nothing larger than this process accepts to write. */
        secrets_free(*val, *len);
        *val = NULL;
        *len = 0;
        snprintf(detail, sizeof(detail), "stored value exceeds %d bytes", SECRETS_MAX_VALUE);
        rc = SECRETS_E_INVALID;
    }
    if (rc == SECRETS_OK)
        return SECRETS_OK;
    *val = NULL;
    *len = 0;
    return fail(s, rc, "get", path, detail, err, errlen);
}

int secrets_delete(secrets_t *s, const char *path, char *err, size_t errlen)
{
    if (!s) {
        say(err, errlen, "secrets: not configured");
        return SECRETS_E_INVALID;
    }
    int rc = check_path(s, "delete", path, err, errlen);
    if (rc == SECRETS_OK)
        rc = check_thread(s, "delete", path, err, errlen);
    if (rc != SECRETS_OK)
        return rc;
    char detail[384] = "";
    double t0 = sm_now();
    rc = s->be->del(s->impl, path, detail, sizeof(detail));
    record_call(s, "delete", t0, rc);
    if (rc == SECRETS_NOT_FOUND)
        rc = SECRETS_OK;
    return rc == SECRETS_OK ? rc : fail(s, rc, "delete", path, detail, err, errlen);
}

/* ---- listing ------------------------------------------------------------------- */

long long secrets_mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

long secrets_list_deadline_ms(long timeout_ms, size_t list_max)
{
    size_t timeouts = list_max / SECRETS_LIST_PATHS_PER_TIMEOUT;
    if (timeouts < SECRETS_LIST_MIN_TIMEOUTS)
        timeouts = SECRETS_LIST_MIN_TIMEOUTS;
    return (long)timeouts * timeout_ms;
}

long secrets_attempt_timeout_ms(long long deadline, long timeout_ms)
{
    if (!deadline)
        return timeout_ms;
    long long left = deadline - secrets_mono_ms();
    if (left <= 0)
        return 0;
    return left < timeout_ms ? (long)left : timeout_ms;
}

int secrets_pause_fits(long long deadline, long pause_ms)
{
    return !deadline || secrets_mono_ms() + pause_ms < deadline;
}

int secrets_next_attempt(int attempt, long long deadline, long per_request_ms, long *timeout_ms)
{
    *timeout_ms = 0;
    if (attempt > 1) {
        long pause = http_client_backoff_ms(attempt - 1);
        if (!secrets_pause_fits(deadline, pause))
            return 0;
        http_client_sleep_ms(pause);
    }
    *timeout_ms = secrets_attempt_timeout_ms(deadline, per_request_ms);
    return *timeout_ms > 0 ? 1 : -1;
}

typedef struct {
    const char *prefix;
    size_t plen;
    char **v;
    size_t n, cap;
    size_t max;   /* the most paths kept (duplicates count: removed only at the end) */
    int too_many; /* stopped at max */
} collector;

static int collect(void *ctx, const char *path)
{
    collector *c = ctx;
    /* Backends list folders; only real, valid paths under the prefix count. */
    if (strncmp(path, c->prefix, c->plen) != 0 || !secrets_path_valid(path))
        return 0;
    if (c->n >= c->max) {
        /* A backend answering without end (a huge mount, a hostile one):
         * memory stays bounded, and the backend stops at this -1. */
        c->too_many = 1;
        return -1;
    }
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 32;
        char **nv = realloc(c->v, ncap * sizeof(char *));
        if (!nv)
            return -1;
        c->v = nv;
        c->cap = ncap;
    }
    if (!(c->v[c->n] = strdup(path)))
        return -1;
    c->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void secrets_list_free(char **paths, size_t n)
{
    if (!paths)
        return;
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
}

int secrets_list(secrets_t *s, const char *prefix, char ***paths, size_t *n, char *err,
                 size_t errlen)
{
    if (paths)
        *paths = NULL;
    if (n)
        *n = 0;
    if (!s || !paths || !n) {
        say(err, errlen, "secrets: not configured");
        return SECRETS_E_INVALID;
    }
    if (!prefix)
        prefix = "";
    if (!prefix_valid(prefix))
        return fail(s, SECRETS_E_INVALID, "list", "(prefix)", "invalid prefix", err, errlen);
    /* Everything lives under aurora/: a shorter prefix lists all of it. */
    const char *be_prefix =
        strncmp(prefix, SECRETS_ROOT, strlen(SECRETS_ROOT)) == 0 ? prefix : SECRETS_ROOT;
    if (be_prefix != prefix && strncmp(SECRETS_ROOT, prefix, strlen(prefix)) != 0)
        return SECRETS_OK; /* a prefix outside aurora/ matches nothing */
    int forbidden = check_thread(s, "list", prefix, err, errlen);
    if (forbidden != SECRETS_OK)
        return forbidden;
    collector c = { .prefix = prefix, .plen = strlen(prefix), .max = s->list_max };
    char detail[384] = "";
    int rc;
    double t0 = sm_now();
    rc = s->be->list(s->impl, be_prefix, collect, &c, detail, sizeof(detail));
    record_call(s, "list", t0, rc);
    if (c.too_many) {
        /* The backend took the collector's -1 for out of memory. */
        snprintf(detail, sizeof(detail), "listing stopped: more than %zu paths (the most one "
                                         "listing returns)", c.max);
        rc = SECRETS_E_OTHER;
    }
    if (rc != SECRETS_OK) {
        secrets_list_free(c.v, c.n);
        return fail(s, rc, "list", be_prefix, detail, err, errlen);
    }
    if (c.n > 1) {
        qsort(c.v, c.n, sizeof(char *), cmp_str);
        size_t w = 1;
        for (size_t i = 1; i < c.n; i++) {
            if (strcmp(c.v[i], c.v[w - 1]) == 0)
                free(c.v[i]);
            else
                c.v[w++] = c.v[i];
        }
        c.n = w;
    }
    *paths = c.v;
    *n = c.n;
    return SECRETS_OK;
}

void secrets_printable(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = ' ';
}

char *secrets_read_token_file(const char *path, size_t max, size_t *cap, const char **why)
{
    *cap = max + 2; /* one more than max tells "too large" apart, and the NUL */
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f) {
        *why = "unreadable";
        return NULL;
    }
    char *tok = malloc(*cap);
    size_t n = tok ? fread(tok, 1, *cap - 1, f) : 0;
    int ioerr = ferror(f);
    fclose(f);
    if (!tok) {
        *why = "out of memory";
        return NULL;
    }
    while (n && (tok[n - 1] == '\n' || tok[n - 1] == '\r' || tok[n - 1] == ' '))
        n--;
    tok[n] = '\0';
    if (ioerr || n == 0 || n > max) {
        *why = ioerr ? "unreadable" : n == 0 ? "empty" : "too large";
        secret_free_n(tok, *cap);
        return NULL;
    }
    return tok;
}
