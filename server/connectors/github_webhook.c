/* github_webhook.c — the GitHub App's webhooks (connector guide: GitHub,
 * Path A, "Webhook URL: <API_URL>/github/webhook"), on the connector kit's
 * inbound webhooks (kit_webhook.h).
 *
 *   POST /github/webhook            GitHub's deliveries: X-Hub-Signature-256
 *                                   (sha256=<hex HMAC of the raw body>) under the
 *                                   App's webhook secret, X-GitHub-Delivery (the
 *                                   idempotency key), X-GitHub-Event
 *   GET  /api/github/events         the caller organization's deliveries
 *   GET  /api/github/events/{event_id}
 *
 * The organization of a delivery is the one its installation (installation.id
 * in the body) is bound to.  An installation not bound yet — installation.created
 * usually arrives before the Setup URL callback — leaves the delivery stored
 * without an organization, keyed by its installation id; the callback binds
 * the installation and calls github_webhook_adopt(id), which assigns and
 * processes that installation's deliveries (an index read: never behind the
 * pings and unbound installations' deliveries that wait forever, which the
 * kit deletes after AURORA_WEBHOOK_UNASSIGNED_RETENTION_DAYS).
 *
 * Processing (after the commit, store pool, at least once: every step is an
 * idempotent write):
 *   installation              created: description and repositories refreshed;
 *                             deleted: marked removed; suspend: logs "Suspended
 *                             installation"; unsuspend; new_permissions_requested:
 *                             pending; new_permissions_accepted: permissions and
 *                             events from the payload, pending cleared
 *   installation_repositories added / removed: the installation's repositories
 *   check_run, check_suite, deployment, deployment_status, issues, pull_request,
 *   workflow_run              kept as events ("processed"); pull_request opened,
 *                             synchronize, reopened and ready_for_review are
 *                             change-gating triggers ("change_gating": true)
 *   anything else (ping, star, …)  accepted and kept, status "ignored"
 *
 * Secrets: GITHUB_APP_WEBHOOK_SECRET and the secrets backend's
 * aurora/system/github-app/webhook-secret (github_app.c, re-read on change),
 * either when both are set (hook_secrets; GET /github/status names those
 * that verify: github_webhook_secret_sources);
 * GITHUB_APP_WEBHOOK_SECRET_PREVIOUS, when set, is also accepted (the old
 * secret while a rotation is under way). */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_util.h"
#include "github_app.h"
#include "kit_webhook.h"
#include "log.h"
#include "periodic.h"
#include "router.h"
#include "secret.h"

#define GH_CONNECTOR "github"
#define SWEEP_BATCH 100      /* deliveries per recovery pass */
#define MAX_REPOS_PER_EVENT 5000 /* GitHub sends far fewer; a bound on hostile bodies */
#define MSG_NOT_CONFIGURED                                                                         \
    "GitHub App webhook secret not configured (GITHUB_APP_WEBHOOK_SECRET or "                      \
    "aurora/system/github-app/webhook-secret)"

/* ---- intake callbacks ------------------------------------------------------------------- */

/* 1 the first time both secrets are set and differ (then 0 until they agree). */
static int differ_first(int differ)
{
    static atomic_int said;
    return differ ? !atomic_exchange(&said, 1) : (atomic_store(&said, 0), 0);
}

/* The secrets a delivery may be signed with, into out: GITHUB_APP_WEBHOOK_SECRET
 * and the backend's aurora/system/github-app/webhook-secret, both when both are
 * set.  The guide has operators set both (Steps 3 and 4), and its
 * troubleshooting fixes failing deliveries by rewriting the backend's: with
 * the setting alone verifying, that fix changed nothing.  Then
 * GITHUB_APP_WEBHOOK_SECRET_PREVIOUS when set.  *srcs gets the GITHUB_HOOK_SRC_*
 * that verify, *differ whether the setting and the backend's are both set and
 * differ; log: say what is ignored (deliveries, not the status).  Returns the
 * backend's state. */
static github_cred_state hook_secrets(worker_ctx *w, kit_wh_keys *out, unsigned *srcs,
                                      int *differ, int log)
{
    *srcs = 0;
    *differ = 0;
    const char *env = server_setting(w->cfg, "GITHUB_APP_WEBHOOK_SECRET");
    size_t elen = env ? strlen(env) : 0;
    if (env && kit_wh_keys_add(out, env, elen) == 0)
        *srcs |= GITHUB_HOOK_SRC_SETTING;
    else if (env && log)
        log_warn("github webhook: GITHUB_APP_WEBHOOK_SECRET is longer than %d bytes; ignored",
                 KIT_WH_SECRET_MAX);
    unsigned char *secret = NULL;
    size_t len = 0;
    github_cred_state st = github_app_webhook_secret_stored(w, &secret, &len);
    if (st == GITHUB_CRED_OK) {
        int same = env && elen == len && CRYPTO_memcmp(env, secret, len) == 0;
        /* The same value verifies as the setting does. */
        if (same ? (*srcs & GITHUB_HOOK_SRC_SETTING) != 0 : kit_wh_keys_add(out, secret, len) == 0)
            *srcs |= GITHUB_HOOK_SRC_BACKEND;
        else if (!same && log)
            log_warn("github webhook: the webhook secret is empty or longer than %d bytes; ignored",
                     KIT_WH_SECRET_MAX);
        *differ = env && !same;
        if (log && env && differ_first(!same))
            log_warn("github webhook: GITHUB_APP_WEBHOOK_SECRET and "
                     SECRETS_PATH_GITHUB_APP_WEBHOOK_SECRET " differ: deliveries signed with "
                     "either are accepted; remove or fix the one that is not the App's");
    }
    if (secret)
        secret_free_n(secret, len);
    const char *prev = server_setting(w->cfg, "GITHUB_APP_WEBHOOK_SECRET_PREVIOUS");
    if (prev && *prev && kit_wh_keys_add(out, prev, strlen(prev)) == 0)
        *srcs |= GITHUB_HOOK_SRC_PREVIOUS;
    else if (prev && *prev && log)
        log_warn("github webhook: GITHUB_APP_WEBHOOK_SECRET_PREVIOUS is longer than %d bytes; "
                 "ignored", KIT_WH_SECRET_MAX);
    return st;
}

unsigned github_webhook_secret_sources(worker_ctx *w, int *differ)
{
    kit_wh_keys k;
    memset(&k, 0, sizeof(k));
    unsigned srcs;
    hook_secrets(w, &k, &srcs, differ, 0);
    OPENSSL_cleanse(&k, sizeof(k));
    return srcs;
}

static int webhook_keys(worker_ctx *w, const http_request *req, kit_wh_keys *out,
                        http_response *resp)
{
    (void)req;
    unsigned srcs;
    int differ;
    github_cred_state st = hook_secrets(w, out, &srcs, &differ, 1);
    if (!server_setting(w->cfg, "GITHUB_APP_WEBHOOK_SECRET") && st == GITHUB_CRED_UNAVAILABLE) {
        /* Not the sender's fault: a 503 makes GitHub's redelivery worth it.
         * Also when the previous secret is set: trying it alone would answer
         * deliveries signed with the current one 401, which GitHub drops.
         * (With the setting, a backend that does not answer leaves it.) */
        http_resp_error(resp, 503, "WEBHOOK_SECRET_UNAVAILABLE",
                        "the secrets backend holding the GitHub App webhook secret is unavailable");
        return -1;
    }
    return 0; /* none at all: the kit answers 401 with MSG_NOT_CONFIGURED */
}

/* installation.id of a GitHub payload; 0 when absent or not an id. */
static int64_t installation_id_of(const cJSON *json)
{
    const cJSON *inst = cJSON_GetObjectItemCaseSensitive(json, "installation");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(inst, "id");
    if (!cJSON_IsNumber(id) || id->valuedouble < 1 ||
        id->valuedouble > (double)GITHUB_MAX_INSTALLATION_ID ||
        id->valuedouble != (double)(int64_t)id->valuedouble)
        return 0;
    return (int64_t)id->valuedouble;
}

static int webhook_org(worker_ctx *w, const store_webhook_delivery *d, const cJSON *json,
                       char org_id[STORE_ID_LEN])
{
    (void)d;
    int64_t id = installation_id_of(json);
    if (id == 0)
        return STORE_NOT_FOUND; /* e.g. the App's ping: no installation, no tenant */
    return store_github_installation_org(w->store, id, org_id);
}

/* What webhook_org resolves: the installation id, in decimal. */
static void webhook_adopt_key(const store_webhook_delivery *d, const cJSON *json,
                              char key[STORE_WEBHOOK_KEY_LEN])
{
    (void)d;
    int64_t id = installation_id_of(json);
    if (id > 0)
        snprintf(key, STORE_WEBHOOK_KEY_LEN, "%" PRId64, id);
}

/* ---- processing ---------------------------------------------------------------------------- */

static int is_subscribed(const char *event)
{
    static const char *const events[] = { "check_run",  "check_suite",       "deployment",
                                          "deployment_status", "issues",     "pull_request",
                                          "workflow_run", "installation",
                                          "installation_repositories" };
    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++)
        if (!strcmp(event, events[i]))
            return 1;
    return 0;
}

/* A pull request that needs a change-gating review: new, or new code. */
static int is_change_gating(const char *event, const char *action)
{
    return !strcmp(event, "pull_request") &&
           (!strcmp(action, "opened") || !strcmp(action, "synchronize") ||
            !strcmp(action, "reopened") || !strcmp(action, "ready_for_review"));
}

/* One repository of a webhook payload ({"id", "full_name", "private"}); 0 or -1. */
static int repo_from_json(const cJSON *r, int64_t installation_id, store_github_repository *out)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(r, "id");
    const char *full = api_json_str(r, "full_name");
    if (!cJSON_IsNumber(id) || id->valuedouble < 1 ||
        id->valuedouble > (double)GITHUB_MAX_INSTALLATION_ID || !github_full_name_ok(full))
        return -1;
    memset(out, 0, sizeof(*out));
    out->installation_id = installation_id;
    out->repository_id = (int64_t)id->valuedouble;
    snprintf(out->full_name, sizeof(out->full_name), "%s", full);
    out->is_private = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "private"));
    return 0;
}

/* Adds (or removes) every repository of the array at key; -1 with err. */
static int apply_repos(worker_ctx *w, const char *org, int64_t inst, const cJSON *json,
                       const char *key, int add, char *err, size_t errlen)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(json, key);
    if (!arr)
        return 0;
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) > MAX_REPOS_PER_EVENT) {
        snprintf(err, errlen, "%s is not an array of repositories", key);
        return -1;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        store_github_repository r;
        if (repo_from_json(it, inst, &r) < 0) {
            snprintf(err, errlen, "a repository in %s has no valid id or full_name", key);
            return -1;
        }
        int rc = add ? store_github_repository_put(w->store, org, &r)
                     : store_github_repository_delete(w->store, org, inst, r.repository_id);
        if (rc != STORE_OK) {
            snprintf(err, errlen, "saving repositories: %s", store_errmsg(w->store));
            return -1;
        }
    }
    return 0;
}

/* installation.created / new_permissions_accepted: GitHub's description of
 * the installation, from the payload. */
static int describe(worker_ctx *w, const store_webhook_delivery *d, const cJSON *json,
                    int64_t inst, int clear_pending, char *err, size_t errlen)
{
    store_github_installation g;
    memset(&g, 0, sizeof(g));
    char why[128] = "";
    if (github_installation_from_json(cJSON_GetObjectItemCaseSensitive(json, "installation"), inst,
                                      &g, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "the payload's installation is unusable: %s", why);
        return -1;
    }
    g.installation_id = inst;
    snprintf(g.org_id, sizeof(g.org_id), "%s", d->org_id);
    int rc = store_github_installation_describe(w->store, &g, clear_pending);
    store_github_installation_free(&g);
    if (rc != STORE_OK && rc != STORE_NOT_FOUND) {
        snprintf(err, errlen, "saving the installation: %s", store_errmsg(w->store));
        return -1;
    }
    return 0;
}

static int set_state(worker_ctx *w, const store_webhook_delivery *d, int64_t inst,
                     store_github_installation_field f, int64_t v, char *err, size_t errlen)
{
    int rc = store_github_installation_set(w->store, d->org_id, inst, f, v);
    /* NOT_FOUND: no longer this org's installation; nothing to change. */
    if (rc != STORE_OK && rc != STORE_NOT_FOUND) {
        snprintf(err, errlen, "saving the installation: %s", store_errmsg(w->store));
        return -1;
    }
    return 0;
}

static int on_installation(worker_ctx *w, const store_webhook_delivery *d, const cJSON *json,
                           int64_t inst, char *err, size_t errlen)
{
    const char *a = d->action;
    int64_t now = (int64_t)time(NULL);
    if (!strcmp(a, "created")) {
        if (describe(w, d, json, inst, 0, err, errlen) < 0 ||
            set_state(w, d, inst, STORE_GH_REMOVED_AT, 0, err, errlen) < 0 ||
            apply_repos(w, d->org_id, inst, json, "repositories", 1, err, errlen) < 0)
            return KIT_WH_FAILED;
        log_info("github: installation %" PRId64 " created (org %s)", inst, d->org_id);
    } else if (!strcmp(a, "deleted")) {
        github_app_token_forget(inst);
        if (set_state(w, d, inst, STORE_GH_REMOVED_AT, now, err, errlen) < 0)
            return KIT_WH_FAILED;
        log_warn("github: installation %" PRId64 " was deleted on GitHub (org %s)", inst,
                 d->org_id);
    } else if (!strcmp(a, "suspend")) {
        github_app_token_forget(inst);
        const char *at = api_json_str(cJSON_GetObjectItemCaseSensitive(json, "installation"),
                                      "suspended_at");
        int64_t t = at ? github_parse_time(at) : -1;
        if (set_state(w, d, inst, STORE_GH_SUSPENDED_AT, t > 0 ? t : now, err, errlen) < 0)
            return KIT_WH_FAILED;
        /* The guide's Troubleshooting line, word for word. */
        log_warn("Suspended installation %" PRId64 " (org %s): an org owner suspended the GitHub "
                 "App; unsuspend it via GitHub org settings -> GitHub Apps",
                 inst, d->org_id);
    } else if (!strcmp(a, "unsuspend")) {
        if (set_state(w, d, inst, STORE_GH_SUSPENDED_AT, 0, err, errlen) < 0)
            return KIT_WH_FAILED;
        log_info("github: installation %" PRId64 " unsuspended (org %s)", inst, d->org_id);
    } else if (!strcmp(a, "new_permissions_requested")) {
        if (set_state(w, d, inst, STORE_GH_PENDING, 1, err, errlen) < 0)
            return KIT_WH_FAILED;
        log_info("github: installation %" PRId64 ": new permissions requested, pending an owner's "
                 "acceptance", inst);
    } else if (!strcmp(a, "new_permissions_accepted")) {
        if (describe(w, d, json, inst, 1, err, errlen) < 0)
            return KIT_WH_FAILED;
        github_app_token_forget(inst); /* a token minted before carries the old permissions */
        log_info("github: installation %" PRId64 ": new permissions accepted", inst);
    } else {
        return KIT_WH_IGNORED;
    }
    return KIT_WH_PROCESSED;
}

static int webhook_process(worker_ctx *w, const store_webhook_delivery *d, char *err,
                           size_t errlen)
{
    if (!is_subscribed(d->event))
        return KIT_WH_IGNORED; /* kept (the events API lists it), nothing to do */
    cJSON *json = cJSON_ParseWithLength(d->body, d->body_len);
    int64_t inst = installation_id_of(json);
    int out = KIT_WH_PROCESSED;
    if (!strcmp(d->event, "installation")) {
        out = on_installation(w, d, json, inst, err, errlen);
    } else if (!strcmp(d->event, "installation_repositories")) {
        if (!strcmp(d->action, "added") || !strcmp(d->action, "removed")) {
            int add = !strcmp(d->action, "added");
            if (apply_repos(w, d->org_id, inst, json,
                            add ? "repositories_added" : "repositories_removed", add, err,
                            errlen) < 0)
                out = KIT_WH_FAILED;
        } else {
            out = KIT_WH_IGNORED;
        }
    } else if (is_change_gating(d->event, d->action)) {
        const cJSON *repo = cJSON_GetObjectItemCaseSensitive(json, "repository");
        int64_t number = 0;
        (void)api_json_int64(cJSON_GetObjectItemCaseSensitive(json, "number"), &number);
        const char *full = api_json_str(repo, "full_name");
        store_github_repository r;
        log_info("github: change-gating trigger: pull_request %s on %s#%" PRId64 " (event %s)",
                 d->action, full && repo_from_json(repo, inst, &r) == 0 ? r.full_name : "?",
                 number, d->id);
    }
    cJSON_Delete(json);
    return out;
}

/* ---- the spec -------------------------------------------------------------------------------- */

static const kit_webhook_spec github_webhook = {
    .connector = GH_CONNECTOR,
    .policy = KIT_WH_SIGNED,
    .signature_header = "x-hub-signature-256",
    .signature_prefix = "sha256=",
    .encoding = KIT_WH_HEX,
    .delivery_id_header = "x-github-delivery",
    .event_header = "x-github-event",
    .action_json = "action",
    /* GitHub's default; an App set to application/x-www-form-urlencoded is
     * refused with 415 (the guide's setup uses JSON). */
    .content_type = "application/json",
    .require_json_object = 1,
    /* GitHub signs the body, not X-GitHub-Delivery; every delivery's body
     * differs (ids, timestamps), a replay's does not. */
    .unique_body = 1,
    .keys = webhook_keys,
    .resolve_org = webhook_org,
    .adopt_key = webhook_adopt_key,
    .process = webhook_process,
    .msg_not_configured = MSG_NOT_CONFIGURED,
};

int github_webhook_adopt(worker_ctx *w, int64_t installation_id)
{
    char key[32];
    snprintf(key, sizeof(key), "%" PRId64, installation_id);
    /* A failure (or more than a batch) is left to the kit: the next
     * sweep's kit_webhook_maintain adopts what is left. */
    int n = kit_webhook_adopt_key(w, &github_webhook, key);
    if (n > 0)
        log_info("github: %d webhook deliveries received before their installation was bound are "
                 "now assigned", n);
    return n;
}

/* The recovery sweep (periodic task): a delivery committed right before a
 * crash, or whose processing job found the queue full, is processed here. */
/* Seconds between two recovery sweeps: a delivery committed just before a
 * crash, or whose processing failed, waits at most this long (plus the kit's
 * claim lease for one a dead process had claimed). */
#define SWEEP_INTERVAL_S 20

static void webhook_sweep(worker_ctx *w, int64_t now)
{
    int done = kit_webhook_process_open(w, &github_webhook, SWEEP_BATCH, now);
    if (done > 0)
        log_info("github: recovery sweep processed %d webhook deliveries", done);
    else if (done < 0)
        log_error("github: webhook recovery sweep: %s", store_errmsg(w->store));
    /* Unassigned deliveries: expired ones deleted; at start-up (an install
     * callback that died between binding and adopting) and after an
     * adoption that failed, the installations bound meanwhile adopted. */
    if (kit_webhook_maintain(w, &github_webhook, now) < 0)
        log_error("github: webhook adoption sweep: %s", store_errmsg(w->store));
}

/* A periodic task (periodic.h): first as soon as the workers run (start-up:
 * what a crash left behind is picked up at once), then every
 * SWEEP_INTERVAL_S, one run at a time. */
static long webhook_sweep_task(worker_ctx *w)
{
    webhook_sweep(w, (int64_t)time(NULL));
    return SWEEP_INTERVAL_S;
}

/* ---- routes ---------------------------------------------------------------------------------- */

static void webhook_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_webhook_handle(w, &github_webhook, req, resp);
}

static void annotate(const store_webhook_delivery *d, cJSON *o)
{
    cJSON_AddBoolToObject(o, "change_gating", is_change_gating(d->event, d->action));
}

static void events_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_webhook_list_events_ex(w, GH_CONNECTOR, annotate, req, resp);
}

static void event_route(worker_ctx *w, http_request *req, http_response *resp)
{
    kit_webhook_get_event_ex(w, GH_CONNECTOR, annotate, http_param(req, "event_id"), req, resp);
}

void github_webhook_register(void)
{
    if (kit_webhook_register(&github_webhook) < 0)
        return; /* logged; the route is not mounted rather than half-working */
    /* Outbound pool: the secret may come from the secrets backend. */
    router_add_outbound(HTTP_POST, "/github/webhook", ROUTE_PUBLIC, webhook_route);
    router_add(HTTP_GET, "/api/github/events", ROUTE_AUTH_API, events_route);
    router_add(HTTP_GET, "/api/github/events/{event_id}", ROUTE_AUTH_API, event_route);
    if (periodic_add("github-webhook-sweep", WORKER_POOL_STORE, 0, webhook_sweep_task) < 0)
        log_error("github: cannot register the webhook recovery sweep (periodic table full)");
}
