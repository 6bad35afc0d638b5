/* kit_call.h — the connector kit's provider calls: one outbound request to a
 * provider API with the retry, rate-limit, conditional-GET and pagination
 * rules every connector needs, over http_client (docs/connectors-kit.md,
 * "Provider calls").
 *
 * Base URL convention: each connector declares one setting per provider API
 * it calls (e.g. SLACK_API_BASE_URL, default "https://slack.com/api") and
 * passes it as kit_call_req.base_url.  Every URL the kit fetches — the
 * caller's and every "next page" a provider names — must be under that base
 * (http_client_url_under: same scheme, host, port, and a path below the
 * base's), so a test points a connector at a local fixture by setting the
 * base, and a hostile answer cannot send the connector's credentials
 * elsewhere.
 *
 * Blocking (it sleeps between attempts): worker threads only, never the
 * event loop.  Nothing here logs; messages never carry a body, a header
 * value the caller sent, or a URL path (a host at most). */
#ifndef AURORA_KIT_CALL_H
#define AURORA_KIT_CALL_H

#include <stddef.h>
#include <time.h>

#include "http_client.h"

struct cJSON;

#define KIT_CALL_DEFAULT_DEADLINE_MS 20000L /* every attempt and every wait */
#define KIT_CALL_DEFAULT_ATTEMPTS 4
#define KIT_CALL_MAX_ATTEMPTS 10
#define KIT_CALL_MAX_EXTRA_HEADERS 24 /* caller's headers per call */
#define KIT_ETAG_MAX 256              /* a longer ETag is not kept */
#define KIT_WAIT_CAP_S 86400L         /* a provider's wait hint beyond a day is read as a day */

typedef struct {
    const char *provider;       /* "Slack", "GitHub": the first word of every message */
    const char *base_url;       /* the connector's configured base URL; required */
    const char *method;         /* NULL: GET (POST when body is set) */
    const char *url;            /* absolute, under base_url (kit_url builds one) */
    const char *const *headers; /* "Name: value", NULL-terminated (credentials go here) */
    const char *bearer;         /* sent as "Authorization: Bearer <bearer>" (the header is
                                   built per call and wiped); NULL: none */
    const char *body;           /* NULL: none */
    size_t body_len;
    int retry_safe;             /* a non-idempotent call that may be sent again (an
                                   idempotency key, or the provider documents a 429/5xx
                                   as "not applied") */
    const char *etag;           /* cached ETag: sent as If-None-Match (GET/HEAD only) */
    const char *const *capture; /* extra response headers to keep (Location…), NULL-terminated */
    long attempt_timeout_ms;    /* one attempt; 0: HTTP_CLIENT_DEFAULT_TIMEOUT_MS */
    long deadline_ms;           /* whole call, waits included; 0: KIT_CALL_DEFAULT_DEADLINE_MS */
    int max_attempts;           /* 0: KIT_CALL_DEFAULT_ATTEMPTS; at most KIT_CALL_MAX_ATTEMPTS */
    size_t max_response;        /* 0: HTTP_CLIENT_MAX_RESPONSE */
    int https_only;             /* refuse http:// URLs (a production base must be https) */
    const char *cacert;         /* as http_client_req.cacert */
    const char *aws_sigv4;      /* as http_client_req: "aws:amz:<region>:<service>" signs it */
    const char *userpwd;        /* with aws_sigv4: "<access key id>:<secret key>" */
    /* A provider that says "try again" in an answer kit_call would not retry
     * (AWS Query APIs: HTTP 400 with <Code>Throttling</Code>): 1 retries it
     * like a 5xx.  NULL: none. */
    int (*retry_if)(const http_client_resp *answer);
    /* as http_client_req: the addresses a user-typed URL may connect to */
    int (*allow_address)(const struct sockaddr *sa, void *ud);
    void *allow_address_ud;
    /* The user's explicit opt-in to plain http:// to a host that is not
     * loopback (Atlassian Data Center's "HTTPS required unless explicitly
     * allowed"); ignored with https_only.  0: credentials travel over https
     * only, or in clear to loopback. */
    int allow_http;
} kit_call_req;

typedef struct {
    int code;          /* aur_err, also kit_call's return value (see kit_call) */
    long status;       /* the last answer's HTTP status; 0 when none came back */
    int attempts;      /* requests sent */
    int not_modified;  /* 304 to If-None-Match: the caller's cached value is current */
    long retry_after_s; /* rate limited: seconds the provider asked to wait (-1: none) */
    long rl_remaining; /* (X-)RateLimit-Remaining of the last answer, -1: absent */
    long rl_reset_s;   /* seconds until that limit resets, -1: absent */
    char etag[KIT_ETAG_MAX]; /* the answer's ETag ("" when none or unusable) */
    http_client_resp http;   /* last answer: body (also for 4xx, for the caller's own
                                error fields), captured headers */
    char err[256];     /* one line when code != AUR_OK */
} kit_call_resp;

/* One provider call.  Returns resp->code:
 *   AUR_OK          2xx, or 304 to a conditional GET (resp->not_modified)
 *   AUR_NOT_FOUND   404 / 410
 *   AUR_CONFLICT    409 / 412
 *   AUR_E_INVALID   a URL the kit refuses (not under base_url, bad scheme), a
 *                   bad ETag, 400 / 405 / 413-415 / 422, an unexpected 3xx
 *   AUR_E_DENIED    401, or 403 that is not a rate limit
 *   AUR_E_UNAVAILABLE 429 (or a rate-limit 403) and 5xx when attempts or the
 *                   deadline ran out ("rate limited, retry after N s" when the
 *                   provider's wait would pass the deadline: no sleep then),
 *                   transport failures
 *   AUR_E_TIMEOUT   the deadline passed during an attempt, 408 / 504
 *   AUR_E_INTERNAL  out of memory, any other status
 * Retried (jittered exponential backoff, or the provider's Retry-After /
 * rate-limit reset when it names one): 429, rate-limit 403, 5xx except 501,
 * 408 and transport failures — only for GET, HEAD, OPTIONS, PUT, DELETE
 * unless req->retry_safe.  Release with kit_call_resp_free whatever the
 * result. */
int kit_call(const kit_call_req *req, kit_call_resp *resp);
void kit_call_resp_free(kit_call_resp *resp);

/* Seconds a poller should wait before its next cycle after this answer:
 * `interval_s`, or longer when the provider asked (retry_after_s) or when the
 * rate limit has fewer than `calls_per_cycle` requests left (until its
 * reset).  Capped at KIT_WAIT_CAP_S. */
long kit_poll_delay_s(const kit_call_resp *resp, long interval_s, long calls_per_cycle);

/* The body as JSON (any type: Sentry and GitHub answer arrays), or NULL. */
struct cJSON *kit_call_json(const kit_call_resp *resp);

/* Checks a configured base URL when the connector reads its settings:
 * http(s) only, no user name or password, no query or fragment, and https
 * unless allow_http (the connector's explicit opt-in, e.g. an on-premises
 * Data Center without TLS) or the host is loopback (127.0.0.0/8, ::1,
 * localhost: a test fixture, a local proxy).  AUR_OK or AUR_E_INVALID with a
 * phrase for "<SETTING> <phrase>" in err. */
int kit_base_url_check(const char *url, int allow_http, char *err, size_t errlen);
/* 1 if credentials may travel to url: https://, or plain http:// to a
 * loopback address (tests, a local sidecar).  kit_call, the OAuth token
 * requests and the GitHub calls refuse anything else before sending. */
int kit_url_private(const char *url);

/* base + "/" + path (one slash between them, whatever either carries);
 * malloc'd, NULL when out of memory or when the result is not under base. */
char *kit_url(const char *base, const char *path);
/* base without its trailing slashes, then the formatted path ("/%s/oauth2/
 * v2.0/token"), into out: for endpoints built from a setting into a fixed
 * buffer (base NULL: "").  0, or -1 when it does not fit (out is then ""). */
int kit_url_fmt(char *out, size_t cap, const char *base, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- pagination ---------------------------------------------------------------
 *
 *   kit_pager p;
 *   kit_pager_init(&p, &cfg, &req);           // req.url is the first page
 *   while ((rc = kit_pager_next(&p, &resp)) == AUR_OK) {
 *       ... use resp (one page) ...
 *       kit_call_resp_free(&resp);
 *   }
 *   kit_call_resp_free(&resp);                // rc: AUR_NOT_FOUND = no more pages
 *   if (p.capped) ... more than max_pages existed
 *   kit_pager_free(&p);
 *
 * A next page URL the provider names (Link) or the kit builds (cursor,
 * page, offset) must be under req.base_url: otherwise kit_pager_next answers
 * AUR_E_INVALID without fetching it. */
typedef enum {
    KIT_PAGE_LINK,   /* RFC 8288 Link header, rel="next" (GitHub, Sentry, Bitbucket-style) */
    KIT_PAGE_CURSOR, /* a cursor in the JSON body, sent back as a query parameter (Slack) */
    KIT_PAGE_NUMBER, /* page=1,2,… until a short page */
    KIT_PAGE_OFFSET, /* offset=0,limit,2·limit,… until a short page */
    KIT_PAGE_BODY_URL, /* the next page's URL in the JSON body (Bitbucket's "next") */
} kit_page_style;

#define KIT_PAGE_DEFAULT_MAX 50
#define KIT_PAGE_HARD_MAX 10000

typedef struct {
    kit_page_style style;
    const char *cursor_field; /* CURSOR: dotted path to the next cursor,
                                 "response_metadata.next_cursor"; BODY_URL: to the next
                                 URL ("next"); "", null or missing ends */
    const char *cursor_param; /* CURSOR: query parameter carrying it ("cursor") */
    const char *page_param;   /* NUMBER: "page"; OFFSET: "offset" (or "startAt") */
    const char *limit_param;  /* NUMBER/OFFSET: "per_page", "limit", "maxResults"; NULL: none */
    int limit;                /* NUMBER/OFFSET: page size; a page with fewer items is the last */
    int first_page;           /* NUMBER: 0 means 1 */
    const char *items_field;  /* NUMBER/OFFSET: dotted path to the item array; NULL: the body */
    const char *more_field;   /* NUMBER/OFFSET: dotted path to a "more pages" boolean
                                 (PagerDuty's "more"); false ends even after a full page */
    int max_pages;            /* 0: KIT_PAGE_DEFAULT_MAX; at most KIT_PAGE_HARD_MAX */
    int relative_to_base;     /* LINK/BODY_URL: a "/path" reference is joined to base_url
                                 rather than resolved against the page's URL (Confluence
                                 Cloud through api.atlassian.com/ex/confluence/<cloudid>) */
} kit_pager_cfg;

typedef struct {
    kit_pager_cfg cfg;
    kit_call_req req;  /* the caller's, with url pointing at next_url */
    char *first_url;   /* the caller's first page URL (cursor/page/offset are added to it) */
    char *next_url;    /* NULL once there is no next page */
    int pages;         /* pages fetched */
    long offset;       /* OFFSET: the next offset; NUMBER: the next page number */
    int capped;        /* stopped at max_pages while the provider had more */
    int failed;        /* a next URL was refused: kit_pager_next answers AUR_E_INVALID */
    char err[256];
} kit_pager;

/* AUR_OK, or AUR_E_INVALID / AUR_E_INTERNAL with p->err (bad configuration).
 * The pager keeps first's pointers (base_url, headers, body…): they must
 * outlive it; first->url is copied. */
int kit_pager_init(kit_pager *p, const kit_pager_cfg *cfg, const kit_call_req *first);
/* AUR_OK with the next page in resp; AUR_NOT_FOUND with resp->status 0
 * when there is none (or max_pages is reached: p->capped); a kit_call result
 * otherwise (a 404 page is AUR_NOT_FOUND with status 404 and resp->err set).
 * After anything but AUR_OK the walk is over. */
int kit_pager_next(kit_pager *p, kit_call_resp *resp);
void kit_pager_free(kit_pager *p);

/* The whole walk for a connector that collects items from every page (a
 * subscription or project list): each(page, arg) is called per page and
 * returns 0 to go on, -1 when the page is not what the API documents.
 * Returns w->code: AUR_OK when every page was read (w->capped: max_pages
 * cut it), else the walk stopped and says why: w->bad_page (each refused a
 * page), w->refused (a next URL named by a page was refused, w->err), or
 * the failed call in w->last (also a first URL kit_pager_init refused).  Release with kit_walk_free whatever the result. */
typedef struct {
    int code;
    int pages, capped, bad_page, refused;
    kit_call_resp last; /* the failing page's answer (status, body, err) */
    char err[256];
} kit_walk;
int kit_pager_walk(const kit_call_req *first, const kit_pager_cfg *cfg,
                   int (*each)(const kit_call_resp *page, void *arg), void *arg, kit_walk *w);
void kit_walk_free(kit_walk *w);

/* ---- a failed call as the connector's own answer -------------------------------
 *
 * Connectors name provider failures with the codes of the connector guide;
 * the wording is the same everywhere:
 *   no answer in time   504 `timeout`     "[<what>: ]<service> did not answer within N s"
 *   no answer           502 `unreachable` "[<what>: ]<service> is unreachable (<transport detail>)"
 *   401 / 403           502 `denied`      "[<what>: ]<service> answered HTTP n<suffix>"
 *   any other status    502 `failed`      the same
 * N is timeout_ms rounded up.  The detail is http_client's (host and port at
 * most); suffix is the connector's (an error code it read, the call's
 * purpose), never a body. */
typedef struct {
    const char *service;     /* "Azure Resource Manager", "OVH API", "AWS STS" */
    const char *failed;      /* 502: any status not below; required */
    const char *timeout;     /* 504; NULL: failed */
    const char *unreachable; /* 502; NULL: failed */
    const char *denied;      /* 502 on 401/403; NULL: failed */
} kit_call_errors;

struct http_response;
void kit_call_error(const kit_call_errors *e, const kit_call_resp *r, const char *what,
                    long timeout_ms, const char *suffix, struct http_response *resp);
/* The same from parts, for answers that did not come through kit_call (the
 * OAuth token endpoint): status 0 is no answer (code AUR_E_TIMEOUT: in
 * time), detail the transport message. */
void kit_answer_error(const kit_call_errors *e, long status, int code, const char *detail,
                      const char *what, long timeout_ms, const char *suffix,
                      struct http_response *resp);

/* "Authorization: Bearer <token>" (malloc'd: secret_free it), NULL on OOM. */
char *kit_bearer_header(const char *token);

/* A provider's error code ("AccessDenied", "invalid_grant",
 * "AuthorizationFailed") safe to echo in a message: [A-Za-z0-9._-] only,
 * other characters dropped, at most cap - 1 of them.  in may be NULL. */
void kit_code_text(const char *in, char *out, size_t cap);

/* ---- parsers (exposed for their tests and for callers with their own loop) ---- */

/* Seconds to wait from a Retry-After value: delta-seconds, or an HTTP-date
 * (IMF-fixdate, RFC 850, asctime) minus `now` (the answer's Date when it has
 * one, so the provider's clock and ours need not agree).  -1 for anything
 * else; a date in the past is 0; capped at KIT_WAIT_CAP_S. */
long kit_retry_after_s(const char *value, time_t now);
/* An HTTP-date as a time, or -1. */
time_t kit_http_date(const char *value);
/* Seconds until a rate limit resets, from the headers of `r` (-1: none named):
 * X-RateLimit-Reset when X-RateLimit-Remaining is 0 (epoch seconds; a value
 * below 10^9 is read as delta seconds, as Datadog sends it), else
 * RateLimit-Reset (delta seconds) when RateLimit-Remaining is 0 or the status
 * is 429.  `now` as for kit_retry_after_s. */
long kit_ratelimit_reset_s(const http_client_resp *r, time_t now);
/* The rel="next" target of an RFC 8288 Link value into out (absolute, or
 * resolved against `context_url` when relative).  1 found, 0 none (also for
 * Sentry's rel="next"; results="false"), -1 malformed or too long. */
int kit_link_next(const char *link, const char *context_url, char *out, size_t cap);
/* The string at a dotted path ("meta.pagination.next_cursor") of a JSON
 * object, or NULL (missing, not a string). */
const char *kit_json_path_string(const struct cJSON *root, const char *path);
/* The item at a dotted path (any type), or NULL; "" or NULL: root. */
const struct cJSON *kit_json_path(const struct cJSON *root, const char *path);
/* url with "name=value" added to its query (value percent-encoded); malloc'd or NULL. */
char *kit_url_with_param(const char *url, const char *name, const char *value);

#endif
