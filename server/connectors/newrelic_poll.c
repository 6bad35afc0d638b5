/* newrelic_poll.c — New Relic issues polled from NerdGraph (the guide's
 * alternative to webhooks) and turned into incidents exactly like a
 * webhook delivery of the same issue:
 *
 *   POST /newrelic/poll-issues     the caller's connection, now:
 *        {"issues": n, "created": n, "attached": n, "duplicates": n, "unmatched": n}
 *   periodic "newrelic-poll"       every AURORA_NEWRELIC_POLL_INTERVAL_S (0: off),
 *        up to AURORA_NEWRELIC_POLL_CONNECTIONS connections per tick (the
 *        next ones in turn, so every connection is reached), off the
 *        event loop (outbound pool).  A connection that fails (a revoked
 *        key, New Relic refusing it) is skipped until its own next try, the
 *        interval doubled per failure (at most an hour), and polled at the
 *        interval again once it succeeds or is reconnected; the others keep
 *        their interval.  Only a failing store backs the whole poller off.
 *
 * Each issue of the last POLL_WINDOW_S in any state → newrelic_ingest with
 * delivery id "newrelic-poll:<issueId>:<state>" and the same dedup key
 * ("<issueId>:<state>") and fingerprint (the issue id) as the webhook: a
 * repeat poll, or a webhook for the same issue and state, is a duplicate; a
 * new state (ACKNOWLEDGED, CLOSED) attaches to the issue's incident. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_util.h"
#include "connector.h"
#include "db.h"
#include "log.h"
#include "newrelic.h"
#include "periodic.h"
#include "router.h"

#define POLL_WINDOW_S (7 * 86400)
#define POLL_PAGES 5
#define BACKOFF_MAX_S 3600
#define IDLE_RECHECK_S 60 /* poller off: look at the setting again this often */
#define PAGE_ROWS 200 /* connections read from the store at a time */

typedef struct {
    int issues, created, attached, duplicates, unmatched, skipped;
} poll_counts;

/* One connection: 0, or -1 with resp filled (-2: recording in the store
 * failed, not the connection). */
static int poll_connection(worker_ctx *w, const char *org_id, const char *user_id,
                           const newrelic_creds *c, poll_counts *n, http_response *resp)
{
    int64_t now = (int64_t)time(NULL);
    cJSON *items = cJSON_CreateArray();
    char next[1100];
    int rc = newrelic_issues_fetch(w, c, 0, NULL, (now - POLL_WINDOW_S) * 1000, now * 1000, NULL,
                                   POLL_PAGES, items, next, sizeof(next), resp);
    for (const cJSON *it = rc == 0 ? items->child : NULL; it && rc == 0; it = it->next) {
        newrelic_issue is;
        char why[160], err[256], did[NEWRELIC_ISSUE_ID_MAX + 64];
        n->issues++;
        if (newrelic_issue_map(it, &is, why, sizeof(why)) < 0) {
            n->skipped++;
            log_warn("newrelic poll: an issue of user %s skipped: %s", user_id, why);
            continue;
        }
        snprintf(did, sizeof(did), "newrelic-poll:%s:%s", is.issue_id, is.state);
        ingest_result r;
        if (newrelic_ingest(w, org_id, user_id, did, &is, it, &r, err, sizeof(err)) < 0) {
            http_resp_error(resp, 503, "STORE_UNAVAILABLE", "recording issue %s failed: %s",
                            is.issue_id, err);
            rc = -2;
            break;
        }
        if (r == INGEST_CREATED)
            n->created++;
        else if (r == INGEST_ATTACHED)
            n->attached++;
        else if (r == INGEST_DUPLICATE)
            n->duplicates++;
        else
            n->unmatched++;
    }
    cJSON_Delete(items);
    return rc;
}

static void poll_route(worker_ctx *w, http_request *req, http_response *resp)
{
    newrelic_creds c;
    if (newrelic_creds_load(w, &req->auth, &c, resp) < 0)
        return;
    poll_counts n = { 0 };
    if (poll_connection(w, req->auth.org_id, req->auth.user_id, &c, &n, resp) >= 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "issues", n.issues);
        cJSON_AddNumberToObject(o, "created", n.created);
        cJSON_AddNumberToObject(o, "attached", n.attached);
        cJSON_AddNumberToObject(o, "duplicates", n.duplicates);
        cJSON_AddNumberToObject(o, "unmatched", n.unmatched);
        cJSON_AddNumberToObject(o, "skipped", n.skipped);
        http_resp_json(resp, 200, o);
    }
    newrelic_creds_clear(&c);
}

/* Polls one connection for the periodic task.  0, -1 when the connection
 * failed (its credentials, New Relic), -2 when the store did. */
static int poll_row(worker_ctx *w, const store_connector *row)
{
    newrelic_creds c;
    char err[256];
    http_response r;
    memset(&r, 0, sizeof(r));
    poll_counts n = { 0 };
    int rc = 0;
    if (newrelic_creds_from_row(w, row, &c, err, sizeof(err)) < 0) {
        log_warn("newrelic poll: user %s of %s: %s", row->user_id, row->org_id, err);
        return -1;
    }
    if ((rc = poll_connection(w, row->org_id, row->user_id, &c, &n, &r)) < 0) {
        log_warn("newrelic poll: user %s of %s: HTTP %d", row->user_id, row->org_id, r.status);
    } else if (n.created || n.attached) {
        log_info("newrelic poll: user %s of %s: %d issues, %d new incidents, %d attached",
                 row->user_id, row->org_id, n.issues, n.created, n.attached);
    }
    buf_free(&r.body);
    newrelic_creds_clear(&c);
    return rc;
}

/* Only the periodic task's thread touches them (one run at a time). */
static int g_failing_ticks; /* ticks in a row the store failed */

/* The failing connections, each skipped until its own next try: one
 * revoked key must not slow the poller for every other tenant.  A row is
 * here only while it fails (removed on success); reconnecting (a new
 * updated_at) forgets it.  Bounded: when full, the entry due soonest gives
 * way (that connection is merely tried earlier than its back-off says). */
#define FAILING_SLOTS 2048
typedef struct {
    char org_id[STORE_ID_LEN];
    char user_id[STORE_ID_LEN];
    int64_t updated_at; /* of the row when it failed */
    int64_t next_ms;    /* monotonic: not polled before */
    int failures;
} failing_conn;
static failing_conn g_failing[FAILING_SLOTS];
static size_t g_nfailing;

static failing_conn *failing_find(const store_connector *row)
{
    for (size_t i = 0; i < g_nfailing; i++)
        if (!strcmp(g_failing[i].org_id, row->org_id) &&
            !strcmp(g_failing[i].user_id, row->user_id))
            return &g_failing[i];
    return NULL;
}

static void failing_forget(failing_conn *f)
{
    *f = g_failing[--g_nfailing];
}

/* 1 when the row is to be skipped this tick (at now_ms). */
static int failing_skip(const store_connector *row, int64_t now_ms)
{
    failing_conn *f = failing_find(row);
    if (!f)
        return 0;
    if (f->updated_at != row->updated_at) { /* reconnected: a new key */
        failing_forget(f);
        return 0;
    }
    return now_ms < f->next_ms;
}

static void failing_note(const store_connector *row, int ok, long interval, int64_t now_ms)
{
    failing_conn *f = failing_find(row);
    if (ok) {
        if (f)
            failing_forget(f);
        return;
    }
    if (!f) {
        if (g_nfailing < FAILING_SLOTS) {
            f = &g_failing[g_nfailing++];
        } else {
            f = &g_failing[0];
            for (size_t i = 1; i < g_nfailing; i++)
                if (g_failing[i].next_ms < f->next_ms)
                    f = &g_failing[i];
        }
        memset(f, 0, sizeof(*f));
        snprintf(f->org_id, sizeof(f->org_id), "%s", row->org_id);
        snprintf(f->user_id, sizeof(f->user_id), "%s", row->user_id);
    }
    f->updated_at = row->updated_at;
    f->failures++;
    long delay = interval;
    for (int i = 0; i < f->failures && delay < BACKOFF_MAX_S; i++)
        delay *= 2;
    if (delay > BACKOFF_MAX_S)
        delay = BACKOFF_MAX_S;
    f->next_ms = now_ms + (int64_t)delay * 1000;
}
/* Where the next tick goes on among the connections (oldest first): each
 * tick polls the next AURORA_NEWRELIC_POLL_CONNECTIONS active ones; a tick
 * that passes the newest ends there and the next starts from the oldest
 * (one left right on the newest finds nothing after it and starts over).
 * So every connection has its turn however many there are (each once per
 * round), not only the oldest ones every time. */
static store_connector_cursor g_next;

static long poll_tick(worker_ctx *w)
{
    long interval = (long)server_setting_int(w->cfg, "AURORA_NEWRELIC_POLL_INTERVAL_S");
    if (interval <= 0)
        return IDLE_RECHECK_S;
    int limit = (int)server_setting_int(w->cfg, "AURORA_NEWRELIC_POLL_CONNECTIONS");
    if (limit <= 0)
        limit = 50;
    int failed = 0, polled = 0;
    /* the tick's start judges every row: ticks start at least an interval
     * apart, so a connection due in k intervals is polled k ticks on */
    int64_t now_ms = db_now_ms();
    /* A tick that begins after the newest row (the last one ended there on
     * a full page) finds nothing: it goes on from the oldest, once, rather
     * than idle a whole interval.  Only when it has polled nothing yet, so
     * no connection is polled twice in one tick. */
    int may_wrap = g_next.started;
    while (polled < limit) {
        /* never more rows than the tick may still poll: a page is polled
         * whole, and the cursor stays right after its last row */
        int want = limit - polled < PAGE_ROWS ? limit - polled : PAGE_ROWS;
        store_connector *rows = NULL;
        size_t nrows = 0;
        if (store_connector_page(w->store, NEWRELIC_ID, &g_next, want, &rows, &nrows) !=
            STORE_OK) {
            log_error("newrelic poll: listing connections: %s", store_errmsg(w->store));
            failed = 1;
            break;
        }
        for (size_t i = 0; i < nrows; i++) {
            if (strcmp(rows[i].status, "active") || failing_skip(&rows[i], now_ms))
                continue;
            polled++;
            int rc = poll_row(w, &rows[i]);
            if (rc == -2)
                failed = 1; /* the store, not this connection */
            else
                failing_note(&rows[i], rc == 0, interval, now_ms);
        }
        store_connector_list_free(rows, nrows);
        if (nrows < (size_t)want) {
            memset(&g_next, 0, sizeof(g_next)); /* past the newest: the oldest next time */
            if (may_wrap && polled == 0) {
                may_wrap = 0;
                continue;
            }
            break;
        }
    }
    g_failing_ticks = failed ? g_failing_ticks + 1 : 0;
    long delay = interval;
    for (int i = 0; i < g_failing_ticks && delay < BACKOFF_MAX_S; i++)
        delay *= 2;
    return delay > BACKOFF_MAX_S ? BACKOFF_MAX_S : delay;
}

void newrelic_poll_register(void)
{
    router_add_outbound(HTTP_POST, "/newrelic/poll-issues", ROUTE_AUTH_API, poll_route);
    if (periodic_add("newrelic-poll", WORKER_POOL_OUTBOUND, 5, poll_tick) < 0)
        log_error("newrelic: cannot register the issue poller (periodic table full)");
}
