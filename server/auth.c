/* auth.c — API key (Authorization: Bearer) and internal-secret authentication. */
#include "auth.h"

#include <string.h>
#include <strings.h>

#include "crypto.h"
#include "http.h"
#include "log.h"
#include "token.h"

static int copy_id(char *dst, size_t cap, const char *src)
{
    if (!src || !*src || strlen(src) >= cap)
        return -1;
    for (const char *p = src; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || *p == '.' || *p == '@'))
            return -1;
    strcpy(dst, src);
    return 0;
}

/* Compares digests, not the strings: the time taken then tells nothing about
 * the secret, not even its length. */
static int secret_matches(const char *got, const char *want)
{
    unsigned char hg[32], hw[32];
    crypto_sha256(got, strlen(got), hg);
    crypto_sha256(want, strlen(want), hw);
    return crypto_ct_equal(hg, sizeof(hg), hw, sizeof(hw));
}

/* The trusted backend names the organization; one the store does not know is
 * the caller's mistake (404), not an outage.  0 if it exists, else -1 with
 * resp filled. */
static int org_exists(worker_ctx *w, const char *org_id, http_response *resp)
{
    store_org org;
    int rc = store_org_get(w->store, org_id, &org);
    if (rc == STORE_OK)
        return 0;
    if (rc == STORE_NOT_FOUND) {
        http_resp_error(resp, 404, "ORG_NOT_FOUND", "organization %s not found (X-Org-ID)", org_id);
        return -1;
    }
    log_error("organization lookup failed: %s", store_errmsg(w->store));
    http_resp_error(resp, 503, "STORE_UNAVAILABLE", "state store unavailable, retry later");
    return -1;
}

int auth_authenticate(worker_ctx *w, http_request *req, int internal_only, http_response *resp)
{
    auth_ctx *a = &req->auth;
    memset(a, 0, sizeof(*a));
    const char *secret = http_header_get(req, "x-internal-secret");
    if (secret) {
        const char *want = w->cfg->internal_secret;
        if (!want || !*want || !secret_matches(secret, want)) {
            log_warn("rejected request with a wrong X-Internal-Secret from %s", req->peer);
            http_resp_error(resp, 401, "UNAUTHORIZED", "invalid internal secret");
            return -1;
        }
        const char *uid = http_header_get(req, "x-user-id");
        const char *oid = http_header_get(req, "x-org-id");
        if ((uid && copy_id(a->user_id, sizeof(a->user_id), uid) < 0) ||
            (oid && copy_id(a->org_id, sizeof(a->org_id), oid) < 0)) {
            http_resp_error(resp, 400, "BAD_REQUEST", "malformed X-User-ID or X-Org-ID");
            return -1;
        }
        if (!internal_only && (!uid || !oid)) {
            http_resp_error(resp, 401, "UNAUTHORIZED",
                            "X-Internal-Secret requires X-User-ID and X-Org-ID");
            return -1;
        }
        if (oid && org_exists(w, a->org_id, resp) < 0)
            return -1;
        a->internal = 1;
        a->authenticated = 1;
        return 0;
    }
    if (internal_only) {
        http_resp_error(resp, 401, "UNAUTHORIZED", "missing X-Internal-Secret");
        return -1;
    }
    const char *authz = http_header_get(req, "authorization");
    if (!authz || strncasecmp(authz, "Bearer ", 7) != 0 || !authz[7]) {
        http_resp_error(resp, 401, "UNAUTHORIZED", "missing or invalid API key");
        return -1;
    }
    const char *key = authz + 7;
    while (*key == ' ')
        key++;
    char hash[65];
    token_hash(key, hash);
    store_api_key k;
    int rc = store_api_key_lookup(w->store, hash, &k);
    if (rc == STORE_ERR) {
        log_error("api key lookup failed: %s", store_errmsg(w->store));
        http_resp_error(resp, 503, "STORE_UNAVAILABLE", "state store unavailable, retry later");
        return -1;
    }
    if (rc != STORE_OK) {
        http_resp_error(resp, 401, "UNAUTHORIZED", "missing or invalid API key");
        return -1;
    }
    snprintf(a->org_id, sizeof(a->org_id), "%s", k.org_id);
    snprintf(a->user_id, sizeof(a->user_id), "%s", k.user_id);
    snprintf(a->key_id, sizeof(a->key_id), "%s", k.id);
    a->authenticated = 1;
    return 0;
}

void auth_register(void)
{
    /* Non-standard headers must be captured explicitly (lws keeps them raw). */
    http_capture_header("x-internal-secret");
    http_capture_header("x-user-id");
    http_capture_header("x-org-id");
}
