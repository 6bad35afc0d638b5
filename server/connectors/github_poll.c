/* github_poll.c — the OAuth fallback's repository poller (connector guide:
 * GitHub, Path B: "OAuth gives Aurora a user token and uses polling for repo
 * state").  Without webhooks, Aurora refreshes what each OAuth-connected
 * user can see every GITHUB_POLL_INTERVAL_S:
 *
 *   GET {api}/user/repos?per_page=100&sort=pushed   Link pagination, at most
 *                                                   GITHUB_POLL_MAX_PAGES pages; a next
 *                                                   link outside GH_API_BASE_URL is not
 *                                                   followed (the token would go with it)
 *   GET {api}/repos/{full_name}/pulls?state=open    } for the GITHUB_POLL_REPOS most
 *   GET {api}/repos/{full_name}/actions/runs        } recently pushed repositories
 *
 * Every URL is fetched conditionally (If-None-Match with the ETag of its last
 * answer): a 304 costs no rate limit at GitHub and keeps the cached items.
 * GitHub's rate-limit headers are honoured: X-RateLimit-Remaining 0 stops the
 * cycle until X-RateLimit-Reset, a 403/429 rate limit until its Retry-After
 * or reset (kit_poll_delay_s); the poller never sleeps in a worker for it.
 *
 * State: the connector row's metadata "poll" object (pages with their ETags
 * and trimmed items, per-repository pulls and runs, polled_at, next_at,
 * rate_limited_until, error): small, bounded by the settings above, and
 * gone with the row on disconnect.  Items are rebuilt from checked fields,
 * never stored as received; URLs shown are built from GH_BASE_URL.
 *
 * Runs as the periodic task "github-oauth-poll" (periodic.h) on the outbound
 * pool; POST /api/github/poll refreshes the caller's connection now.
 * Read routes (store pool): GET /api/github/repos, /api/github/pulls,
 * /api/github/workflow-runs. */
#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api_util.h"
#include "buf.h"
#include "github_app.h"
#include "github_oauth.h"
#include "kit_call.h"
#include "kit_secrets.h"
#include "log.h"
#include "periodic.h"
#include "router.h"

#define GH_ID "github"
#define POLL_TASK "github-oauth-poll"
#define PAGE_ROWS 200          /* connections read from the store at a time */
#define MAX_TICK_S 30          /* a new connection waits at most this for its first poll */
#define REPOS_PER_PAGE 100     /* per_page=100 */
#define ITEMS_PER_REPO 10      /* open PRs and workflow runs kept per repository */
#define MSG_NOT_CONNECTED "GitHub is not connected through OAuth; connect with /github/login"

/* One row's poll at a time: the periodic task and POST /api/github/poll
 * never write the same row's state concurrently.  The row polled is the
 * one read before the lock; poll_row re-reads it before writing. */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct {
    worker_ctx *w;
    char api[512], web[512];
    char authz[1100];
    const char *headers[4];
    long interval_s, timeout_ms;
    long delay_s;   /* until the next cycle (rate limits lengthen it) */
    int stop;       /* rate limited or failed: the cycle ends here */
    int denied;     /* 401: the token is no longer valid */
    int calls, not_modified;
    char err[256];
} poll_run;

static void add_str(cJSON *o, const cJSON *from, const char *key, size_t max)
{
    const char *v = api_json_str(from, key);
    if (v && strlen(v) <= max)
        cJSON_AddStringToObject(o, key, v);
}

static void add_num(cJSON *o, const cJSON *from, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(from, key);
    if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 9007199254740992.0)
        cJSON_AddNumberToObject(o, key, v->valuedouble);
}

/* ---- trimmed items ------------------------------------------------------------------------ */

static cJSON *repo_item(const poll_run *p, const cJSON *r)
{
    const char *full = api_json_str(r, "full_name");
    if (!cJSON_IsObject(r) || !github_full_name_ok(full))
        return NULL;
    char html[800];
    snprintf(html, sizeof(html), "%s/%s", p->web, full);
    cJSON *o = cJSON_CreateObject();
    add_num(o, r, "id");
    cJSON_AddStringToObject(o, "full_name", full);
    cJSON_AddBoolToObject(o, "private", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "private")));
    cJSON_AddBoolToObject(o, "archived", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "archived")));
    const char *branch = api_json_str(r, "default_branch");
    if (branch && github_name_ok(branch, 255, "-_./"))
        cJSON_AddStringToObject(o, "default_branch", branch);
    add_str(o, r, "pushed_at", 32);
    cJSON_AddStringToObject(o, "html_url", html);
    return o;
}

static cJSON *pull_item(const poll_run *p, const char *full, const cJSON *r)
{
    const cJSON *num = cJSON_GetObjectItemCaseSensitive(r, "number");
    if (!cJSON_IsObject(r) || !cJSON_IsNumber(num) || num->valuedouble < 1)
        return NULL;
    char html[900];
    snprintf(html, sizeof(html), "%s/%s/pull/%.0f", p->web, full, num->valuedouble);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "repository", full);
    cJSON_AddNumberToObject(o, "number", num->valuedouble);
    add_str(o, r, "title", 512);
    add_str(o, r, "state", 16);
    cJSON_AddBoolToObject(o, "draft", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "draft")));
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(r, "user");
    const char *login = user ? api_json_str(user, "login") : NULL;
    if (github_name_ok(login, 100, "-_.[]"))
        cJSON_AddStringToObject(o, "user", login);
    const cJSON *head = cJSON_GetObjectItemCaseSensitive(r, "head");
    const char *ref = head ? api_json_str(head, "ref") : NULL;
    if (github_name_ok(ref, 255, "-_./"))
        cJSON_AddStringToObject(o, "head_ref", ref);
    add_str(o, r, "created_at", 32);
    add_str(o, r, "updated_at", 32);
    cJSON_AddStringToObject(o, "html_url", html);
    return o;
}

static cJSON *run_item(const poll_run *p, const char *full, const cJSON *r)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(r, "id");
    if (!cJSON_IsObject(r) || !cJSON_IsNumber(id) || id->valuedouble < 1)
        return NULL;
    char html[900];
    snprintf(html, sizeof(html), "%s/%s/actions/runs/%.0f", p->web, full, id->valuedouble);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "repository", full);
    cJSON_AddNumberToObject(o, "id", id->valuedouble);
    add_num(o, r, "run_number");
    add_str(o, r, "name", 256);
    add_str(o, r, "status", 32);
    add_str(o, r, "conclusion", 32);
    add_str(o, r, "event", 64);
    const char *branch = api_json_str(r, "head_branch");
    if (github_name_ok(branch, 255, "-_./"))
        cJSON_AddStringToObject(o, "head_branch", branch);
    add_str(o, r, "created_at", 32);
    add_str(o, r, "updated_at", 32);
    cJSON_AddStringToObject(o, "html_url", html);
    return o;
}

/* ---- one conditional GET ------------------------------------------------------------------- */

/* The cached entry of url in arr ([{url, etag, …}]), or NULL. */
static const cJSON *cached(const cJSON *arr, const char *url)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, arr)
    {
        const char *u = api_json_str(e, "url");
        if (u && !strcmp(u, url))
            return e;
    }
    return NULL;
}

/* GETs url, conditionally on old's etag.  Returns 1 with *body (200), 0 when
 * GitHub answered 304 (old is current), -1 when the cycle must stop (p->stop,
 * p->err).  etag/next get the answer's ETag and rel="next" ("" when none). */
static int get(poll_run *p, const char *url, const cJSON *old, cJSON **body, char *etag,
               char *next, size_t ncap)
{
    *body = NULL;
    etag[0] = next[0] = '\0';
    const char *capture[] = { "Link", NULL };
    kit_call_req rq = { .provider = "GitHub", .base_url = p->api, .url = url,
                        .headers = p->headers, .etag = old ? api_json_str(old, "etag") : NULL,
                        .capture = capture, .attempt_timeout_ms = p->timeout_ms,
                        .max_attempts = 1, /* a rate limit ends the cycle: no sleeping here */
                        .max_response = 4 * 1024 * 1024 };
    kit_call_resp rp;
    int rc = kit_call(&rq, &rp);
    p->calls++;
    long d = kit_poll_delay_s(&rp, p->interval_s, 1);
    if (d > p->delay_s)
        p->delay_s = d;
    int limited = rp.rl_remaining == 0 || rp.retry_after_s >= 0 ||
                  (rc == AUR_E_UNAVAILABLE && rp.rl_reset_s >= 0);
    int out = -1;
    if (rc == AUR_OK && rp.not_modified && !old) {
        snprintf(p->err, sizeof(p->err), "GitHub answered 304 to an unconditional request");
    } else if (rc == AUR_OK && rp.not_modified) {
        p->not_modified++;
        snprintf(etag, KIT_ETAG_MAX, "%s", old ? api_json_str(old, "etag") : "");
        out = 0;
    } else if (rc == AUR_OK) {
        *body = kit_call_json(&rp);
        snprintf(etag, KIT_ETAG_MAX, "%s", rp.etag);
        const char *link = http_client_header(&rp.http, "Link");
        if (link && kit_link_next(link, url, next, ncap) != 1)
            next[0] = '\0';
        out = *body ? 1 : -1;
        if (!*body)
            snprintf(p->err, sizeof(p->err), "GitHub's answer to a repository call is not JSON");
    } else {
        if (rc == AUR_E_DENIED && rp.status == 401)
            p->denied = 1;
        snprintf(p->err, sizeof(p->err), "%s",
                 p->denied ? "GitHub refused the token (revoked?): connect again" : rp.err);
    }
    if (limited && out >= 0)
        p->stop = 1; /* this answer counts; the next call would be refused */
    if (out < 0)
        p->stop = 1;
    if (limited && !p->err[0])
        snprintf(p->err, sizeof(p->err), "GitHub rate limit reached; waiting for its reset");
    kit_call_resp_free(&rp);
    return out;
}

/* ---- one cycle ------------------------------------------------------------------------------ */

static int by_pushed_desc(const void *a, const void *b)
{
    const char *x = api_json_str(*(const cJSON *const *)a, "pushed_at");
    const char *y = api_json_str(*(const cJSON *const *)b, "pushed_at");
    return strcmp(y ? y : "", x ? x : "");
}

/* {url, etag, items} for one repository's list (pulls or runs), from GitHub
 * or, on 304, the old entry.  NULL when the cycle stops. */
static cJSON *repo_list(poll_run *p, const char *full, const char *path, const cJSON *old_arr,
                        const char *items_field, cJSON *(*item)(const poll_run *, const char *,
                                                               const cJSON *))
{
    char rel[600], etag[KIT_ETAG_MAX], next[16];
    snprintf(rel, sizeof(rel), "repos/%s/%s", full, path);
    char *url = kit_url(p->api, rel);
    if (!url) {
        p->stop = 1;
        return NULL;
    }
    const cJSON *old = cached(old_arr, url);
    cJSON *body = NULL;
    int rc = get(p, url, old, &body, etag, next, sizeof(next));
    cJSON *e = NULL;
    if (rc == 0) {
        e = cJSON_Duplicate(old, 1);
    } else if (rc == 1) {
        e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "url", url);
        cJSON_AddStringToObject(e, "etag", etag);
        cJSON *items = cJSON_AddArrayToObject(e, "items");
        const cJSON *src = items_field ? cJSON_GetObjectItemCaseSensitive(body, items_field) : body;
        const cJSON *it;
        int n = 0;
        cJSON_ArrayForEach(it, (cJSON_IsArray(src) ? src : NULL))
        {
            if (n >= ITEMS_PER_REPO)
                break;
            cJSON *x = item(p, full, it);
            if (x) {
                cJSON_AddItemToArray(items, x);
                n++;
            }
        }
    }
    cJSON_Delete(body);
    free(url);
    return e;
}

/* A new "poll" object from old (may be NULL), or NULL when the cycle stopped
 * before it completed (p->err, p->delay_s say why). */
static cJSON *cycle(poll_run *p, const cJSON *old, int max_pages, int nrepos)
{
    const cJSON *old_pages = old ? cJSON_GetObjectItemCaseSensitive(old, "repo_pages") : NULL;
    const cJSON *old_lists = old ? cJSON_GetObjectItemCaseSensitive(old, "repo_lists") : NULL;
    cJSON *np = cJSON_CreateObject();
    cJSON *pages = cJSON_AddArrayToObject(np, "repo_pages");
    char *url = kit_url(p->api, "user/repos?per_page=100&sort=pushed");
    int npages = 0, capped = 0, refused = 0;
    while (url && !p->stop) {
        if (npages >= max_pages) {
            capped = 1;
            break;
        }
        const cJSON *o = cached(old_pages, url);
        cJSON *body = NULL;
        char etag[KIT_ETAG_MAX], next[2048];
        int rc = get(p, url, o, &body, etag, next, sizeof(next));
        if (rc < 0)
            break;
        npages++;
        cJSON *e;
        if (rc == 0) {
            e = cJSON_Duplicate(o, 1);
            const char *n = api_json_str(o, "next");
            snprintf(next, sizeof(next), "%s", n ? n : "");
        } else {
            e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "url", url);
            cJSON_AddStringToObject(e, "etag", etag);
            cJSON_AddStringToObject(e, "next", next);
            cJSON *items = cJSON_AddArrayToObject(e, "items");
            const cJSON *it;
            int n = 0;
            cJSON_ArrayForEach(it, (cJSON_IsArray(body) ? body : NULL))
            {
                if (n >= REPOS_PER_PAGE)
                    break; /* what per_page asked for; more is not GitHub's answer */
                cJSON *x = repo_item(p, it);
                if (x) {
                    cJSON_AddItemToArray(items, x);
                    n++;
                }
            }
        }
        cJSON_Delete(body);
        cJSON_AddItemToArray(pages, e);
        free(url);
        url = NULL;
        if (next[0]) {
            if (!http_client_url_under(next, p->api)) {
                /* The token goes wherever the next page is: only under GH_API_BASE_URL. */
                log_warn("github poll: a next-page link outside GH_API_BASE_URL was not followed");
                refused = 1;
            } else {
                url = strdup(next);
            }
        }
    }
    free(url);
    if (p->stop && p->delay_s <= p->interval_s && !p->err[0])
        snprintf(p->err, sizeof(p->err), "stopped");
    if (p->stop) {
        cJSON_Delete(np);
        return NULL;
    }
    cJSON_AddBoolToObject(np, "truncated", capped);
    if (refused)
        cJSON_AddStringToObject(np, "warning",
                                "a next-page link outside GH_API_BASE_URL was not followed");
    /* The N most recently pushed repositories. */
    size_t total = 0;
    const cJSON *pg, *it;
    cJSON_ArrayForEach(pg, pages) total += (size_t)cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(pg, "items"));
    const cJSON **all = total ? calloc(total, sizeof(*all)) : NULL;
    size_t k = 0;
    cJSON_ArrayForEach(pg, pages)
    {
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(pg, "items"))
        {
            if (all && k < total)
                all[k++] = it;
        }
    }
    if (all)
        qsort(all, k, sizeof(*all), by_pushed_desc);
    cJSON *lists = cJSON_AddArrayToObject(np, "repo_lists");
    for (size_t i = 0; all && i < k && (int)i < nrepos && !p->stop; i++) {
        const char *full = api_json_str(all[i], "full_name");
        cJSON *pl = repo_list(p, full, "pulls?state=open&per_page=10", old_lists, NULL, pull_item);
        if (pl)
            cJSON_AddItemToArray(lists, pl);
        cJSON *rl = p->stop ? NULL
                            : repo_list(p, full, "actions/runs?per_page=10", old_lists,
                                        "workflow_runs", run_item);
        if (rl)
            cJSON_AddItemToArray(lists, rl);
    }
    free(all);
    if (p->stop) {
        cJSON_Delete(np);
        return NULL;
    }
    return np;
}

/* Polls one row (lock held).  force: now, whatever next_at says.  Returns
 * seconds until it is due again; *limited_s > 0 when a rate limit keeps it
 * from polling now. */
static long poll_row(worker_ctx *w, const store_connector *row, int force, long *limited_s)
{
    int64_t now = (int64_t)time(NULL);
    long interval = (long)server_setting_int(w->cfg, "GITHUB_POLL_INTERVAL_S");
    if (interval <= 0)
        interval = 300;
    *limited_s = 0;
    cJSON *md = cJSON_Parse(row->metadata_json ? row->metadata_json : "{}");
    if (!cJSON_IsObject(md)) {
        cJSON_Delete(md);
        return interval;
    }
    const cJSON *old = cJSON_GetObjectItemCaseSensitive(md, "poll");
    const cJSON *na = old ? cJSON_GetObjectItemCaseSensitive(old, "next_at") : NULL;
    const cJSON *rl = old ? cJSON_GetObjectItemCaseSensitive(old, "rate_limited_until") : NULL;
    if (cJSON_IsNumber(rl) && (int64_t)rl->valuedouble > now) {
        *limited_s = (long)((int64_t)rl->valuedouble - now);
        cJSON_Delete(md);
        return *limited_s;
    }
    if (!force && cJSON_IsNumber(na) && (int64_t)na->valuedouble > now) {
        cJSON_Delete(md);
        return (long)((int64_t)na->valuedouble - now);
    }
    poll_run p;
    memset(&p, 0, sizeof(p));
    p.w = w;
    p.interval_s = interval;
    p.delay_s = interval;
    p.timeout_ms = connector_timeout_ms(w, connector_find(GH_ID));
    github_api_base(w->cfg, p.api, sizeof(p.api));
    github_web_base(w->cfg, p.web, sizeof(p.web));
    unsigned char *tok = NULL;
    size_t len = 0;
    http_response scratch;
    memset(&scratch, 0, sizeof(scratch));
    cJSON *np = NULL;
    if (kit_secret_get(w, row->secret_ref, &tok, &len, 404, "GONE", "gone", &scratch) < 0 ||
        len > 1024) {
        snprintf(p.err, sizeof(p.err), "the GitHub token could not be read from the secrets backend");
    } else {
        snprintf(p.authz, sizeof(p.authz), "Authorization: Bearer %.*s", (int)len, (const char *)tok);
        p.headers[0] = "Accept: application/vnd.github+json";
        p.headers[1] = "X-GitHub-Api-Version: " GITHUB_API_VERSION;
        p.headers[2] = p.authz;
        int64_t pages = server_setting_int(w->cfg, "GITHUB_POLL_MAX_PAGES");
        int64_t nrepos = server_setting_int(w->cfg, "GITHUB_POLL_REPOS");
        np = cycle(&p, old, pages > 0 ? (int)pages : 5, nrepos >= 0 ? (int)nrepos : 10);
        OPENSSL_cleanse(p.authz, sizeof(p.authz));
    }
    if (tok)
        secrets_free(tok, len);
    buf_free(&scratch.body);
    now = (int64_t)time(NULL);
    if (!np) /* keep what is known; note why it is not fresh */
        np = old ? cJSON_Duplicate(old, 1) : cJSON_CreateObject();
    else
        cJSON_AddNumberToObject(np, "polled_at", (double)now);
    cJSON_DeleteItemFromObjectCaseSensitive(np, "error");
    cJSON_DeleteItemFromObjectCaseSensitive(np, "rate_limited_until");
    cJSON_DeleteItemFromObjectCaseSensitive(np, "next_at");
    cJSON_DeleteItemFromObjectCaseSensitive(np, "last_cycle");
    if (p.err[0])
        cJSON_AddStringToObject(np, "error", p.err);
    if (p.delay_s > interval) {
        cJSON_AddNumberToObject(np, "rate_limited_until", (double)(now + p.delay_s));
        log_warn("github poll: rate limited for user %s; next poll in %ld s", row->user_id,
                 p.delay_s);
    } else if (p.err[0]) {
        log_warn("github poll: user %s: %s", row->user_id, p.err);
    }
    cJSON_AddNumberToObject(np, "next_at", (double)(now + p.delay_s));
    cJSON *lc = cJSON_AddObjectToObject(np, "last_cycle");
    cJSON_AddNumberToObject(lc, "calls", p.calls);
    cJSON_AddNumberToObject(lc, "not_modified", p.not_modified);
    cJSON_AddNumberToObject(lc, "at", (double)now);
    cJSON_Delete(md);

    /* Written onto the row as it is now: a reconnect meanwhile keeps its own. */
    store_connector cur;
    memset(&cur, 0, sizeof(cur));
    if (store_connector_get(w->store, row->org_id, row->user_id, GH_ID, &cur) == STORE_OK) {
        cJSON *cmd = cJSON_Parse(cur.metadata_json ? cur.metadata_json : "{}");
        if (cJSON_IsObject(cmd) && !strcmp(cur.secret_ref, row->secret_ref)) {
            cJSON_DeleteItemFromObjectCaseSensitive(cmd, "poll");
            cJSON_AddItemToObject(cmd, "poll", np);
            np = NULL;
            http_response r2;
            memset(&r2, 0, sizeof(r2));
            if (kit_row_save_meta(w, &cur, cmd, &r2) < 0)
                log_error("github poll: saving the state of user %s failed", row->user_id);
            buf_free(&r2.body);
        }
        cJSON_Delete(cmd);
        store_connector_free(&cur);
    }
    cJSON_Delete(np);
    if (p.delay_s > interval)
        *limited_s = p.delay_s;
    return p.delay_s;
}

/* poll_row on the row as stored now (lock held): a poll that ran since the
 * caller read it has moved next_at on. */
static long poll_fresh(worker_ctx *w, const store_connector *listed, int force, long *limited_s)
{
    store_connector fresh;
    memset(&fresh, 0, sizeof(fresh));
    *limited_s = 0;
    if (store_connector_get(w->store, listed->org_id, listed->user_id, GH_ID, &fresh) != STORE_OK)
        return MAX_TICK_S; /* gone (disconnected) or the store failed: next tick */
    long d = poll_row(w, &fresh, force, limited_s);
    store_connector_free(&fresh);
    return d;
}

static int oauth_mode(const worker_ctx *w)
{
    const char *m = server_setting(w->cfg, "GITHUB_AUTH_MODE");
    return m && (!strcasecmp(m, "oauth") || !strcasecmp(m, "hybrid"));
}

static int is_oauth_row(const store_connector *row)
{
    if (strcmp(row->status, "active") || !row->secret_ref[0])
        return 0;
    cJSON *md = cJSON_Parse(row->metadata_json ? row->metadata_json : "{}");
    const char *a = md ? api_json_str(md, "auth") : NULL;
    int ok = a && !strcmp(a, "oauth");
    cJSON_Delete(md);
    return ok;
}

/* The periodic task: every due connection, then sleep until the next is due. */
static long poll_tick(worker_ctx *w)
{
    long interval = (long)server_setting_int(w->cfg, "GITHUB_POLL_INTERVAL_S");
    long next = interval > 0 && interval < MAX_TICK_S ? interval : MAX_TICK_S;
    if (!oauth_mode(w))
        return PERIODIC_MAX_DELAY_S;
    store_connector_cursor cur = { 0 };
    for (;;) {
        store_connector *rows = NULL;
        size_t n = 0;
        if (store_connector_page(w->store, GH_ID, &cur, PAGE_ROWS, &rows, &n) != STORE_OK) {
            log_error("github poll: listing connections failed: %s", store_errmsg(w->store));
            return next;
        }
        for (size_t i = 0; i < n; i++) {
            if (!is_oauth_row(&rows[i]))
                continue;
            /* Per row: POST /api/github/poll waits for one row's poll at most. */
            pthread_mutex_lock(&g_lock);
            long lim, d = poll_fresh(w, &rows[i], 0, &lim);
            pthread_mutex_unlock(&g_lock);
            if (d < next)
                next = d;
        }
        store_connector_list_free(rows, n);
        if (n < PAGE_ROWS)
            return next;
    }
}

/* ---- routes ------------------------------------------------------------------------------------ */

/* The caller's poll state (*md owns it) or -1 with resp filled. */
static int load_poll(worker_ctx *w, http_request *req, store_connector *row, cJSON **md,
                     const cJSON **poll, http_response *resp)
{
    if (connector_require_user(&req->auth, resp) < 0)
        return -1;
    if (kit_row_load(w, &req->auth, GH_ID, row, md, MSG_NOT_CONNECTED, resp) < 0)
        return -1;
    if (!is_oauth_row(row)) {
        store_connector_free(row);
        cJSON_Delete(*md);
        http_resp_error(resp, 404, "MISSING_CONNECTOR", MSG_NOT_CONNECTED);
        return -1;
    }
    *poll = cJSON_GetObjectItemCaseSensitive(*md, "poll");
    return 0;
}

static void add_meta(cJSON *o, const store_connector *row, const cJSON *poll)
{
    cJSON_AddStringToObject(o, "login", row->account);
    const char *keys[] = { "polled_at", "next_at", "rate_limited_until", NULL };
    for (int i = 0; keys[i]; i++) {
        const cJSON *v = poll ? cJSON_GetObjectItemCaseSensitive(poll, keys[i]) : NULL;
        if (cJSON_IsNumber(v))
            api_add_time(o, keys[i], (int64_t)v->valuedouble);
    }
    const char *e = poll ? api_json_str(poll, "error") : NULL;
    if (e)
        cJSON_AddStringToObject(o, "error", e);
    const cJSON *lc = poll ? cJSON_GetObjectItemCaseSensitive(poll, "last_cycle") : NULL;
    if (lc) { /* stored with Unix seconds; the API shows RFC 3339 like every time */
        cJSON *c = cJSON_Duplicate(lc, 1);
        const cJSON *at = c ? cJSON_GetObjectItemCaseSensitive(c, "at") : NULL;
        int64_t t = cJSON_IsNumber(at) ? (int64_t)at->valuedouble : 0;
        if (c) {
            cJSON_DeleteItemFromObjectCaseSensitive(c, "at");
            api_add_time(c, "at", t);
            cJSON_AddItemToObject(o, "last_cycle", c);
        }
    }
    cJSON_AddBoolToObject(o, "polled", poll && cJSON_GetObjectItemCaseSensitive(poll, "polled_at"));
}

static void repos_body(cJSON *o, const cJSON *poll)
{
    cJSON *arr = cJSON_AddArrayToObject(o, "repositories");
    const cJSON *pg, *it;
    int pages = 0;
    cJSON_ArrayForEach(pg, (poll ? cJSON_GetObjectItemCaseSensitive(poll, "repo_pages") : NULL))
    {
        pages++;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(pg, "items"))
            cJSON_AddItemToArray(arr, cJSON_Duplicate(it, 1));
    }
    cJSON_AddNumberToObject(o, "pages", pages);
    cJSON_AddBoolToObject(o, "truncated",
                          poll && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(poll, "truncated")));
    const char *warn = poll ? api_json_str(poll, "warning") : NULL;
    if (warn)
        cJSON_AddStringToObject(o, "warning", warn);
}

static void repos_route(worker_ctx *w, http_request *req, http_response *resp)
{
    store_connector row;
    cJSON *md;
    const cJSON *poll;
    if (load_poll(w, req, &row, &md, &poll, resp) < 0)
        return;
    cJSON *o = cJSON_CreateObject();
    add_meta(o, &row, poll);
    repos_body(o, poll);
    store_connector_free(&row);
    cJSON_Delete(md);
    http_resp_json(resp, 200, o);
}

/* Pull requests (runs = 0) or workflow runs of the polled repositories. */
static void lists_route(worker_ctx *w, http_request *req, http_response *resp, int runs)
{
    store_connector row;
    cJSON *md;
    const cJSON *poll;
    if (load_poll(w, req, &row, &md, &poll, resp) < 0)
        return;
    cJSON *o = cJSON_CreateObject();
    add_meta(o, &row, poll);
    cJSON *arr = cJSON_AddArrayToObject(o, runs ? "workflow_runs" : "pull_requests");
    const cJSON *l, *it;
    cJSON_ArrayForEach(l, (poll ? cJSON_GetObjectItemCaseSensitive(poll, "repo_lists") : NULL))
    {
        const char *u = api_json_str(l, "url");
        int is_runs = u && strstr(u, "/actions/runs");
        if (is_runs != runs)
            continue;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(l, "items"))
            cJSON_AddItemToArray(arr, cJSON_Duplicate(it, 1));
    }
    store_connector_free(&row);
    cJSON_Delete(md);
    http_resp_json(resp, 200, o);
}

static void pulls_route(worker_ctx *w, http_request *req, http_response *resp)
{
    lists_route(w, req, resp, 0);
}

static void runs_route(worker_ctx *w, http_request *req, http_response *resp)
{
    lists_route(w, req, resp, 1);
}

/* POST /api/github/poll: the caller's connection refreshed now (rate limits
 * still honoured: 429 with Retry-After while GitHub's limit lasts). */
static void poll_now_route(worker_ctx *w, http_request *req, http_response *resp)
{
    store_connector row;
    cJSON *md;
    const cJSON *poll;
    if (load_poll(w, req, &row, &md, &poll, resp) < 0)
        return;
    cJSON_Delete(md);
    long limited = 0;
    /* Never queue behind another poll: a poll holds the lock for all its
     * GitHub calls, and outbound workers serve every connector. */
    if (pthread_mutex_trylock(&g_lock) != 0) {
        store_connector_free(&row);
        http_resp_add_header(resp, "retry-after", "5");
        http_resp_error(resp, 429, "GITHUB_POLL_BUSY", "a GitHub poll is running; retry shortly");
        return;
    }
    poll_fresh(w, &row, 1, &limited);
    pthread_mutex_unlock(&g_lock);
    store_connector_free(&row);
    if (limited > 0) {
        char ra[32];
        snprintf(ra, sizeof(ra), "%ld", limited);
        http_resp_error(resp, 429, "GITHUB_RATE_LIMITED",
                        "GitHub rate limit reached; the next refresh is in %ld s", limited);
        http_resp_add_header(resp, "retry-after", ra);
        return;
    }
    if (load_poll(w, req, &row, &md, &poll, resp) < 0)
        return;
    cJSON *o = cJSON_CreateObject();
    add_meta(o, &row, poll);
    repos_body(o, poll);
    store_connector_free(&row);
    cJSON_Delete(md);
    http_resp_json(resp, 200, o);
}

void github_poll_register(void)
{
    router_add(HTTP_GET, "/api/github/repos", ROUTE_AUTH_API, repos_route);
    router_add(HTTP_GET, "/api/github/pulls", ROUTE_AUTH_API, pulls_route);
    router_add(HTTP_GET, "/api/github/workflow-runs", ROUTE_AUTH_API, runs_route);
    router_add_outbound(HTTP_POST, "/api/github/poll", ROUTE_AUTH_API, poll_now_route);
    if (periodic_add(POLL_TASK, WORKER_POOL_OUTBOUND, 2, poll_tick) < 0)
        log_error("github poll: no periodic task slot left; OAuth connections are not polled");
}
