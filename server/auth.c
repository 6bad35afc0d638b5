/* auth.c — API key (Authorization: Bearer), internal-secret and console
 * session cookie authentication. */
#include "auth.h"

#include <string.h>
#include <strings.h>

#include "console_session.h"
#include "crypto.h"
#include "http.h"
#include "log.h"
#include "token.h"

/* Ids named in headers: 1..STORE_ID_MAX characters from a set that needs
 * no quoting anywhere they travel (logs, secret paths, URLs): the existing
 * Aurora's UUIDs and this server's own "usr_…"/"org_…" ids fit. */
int auth_id_valid(const char *s)
{
    if (!s || !*s || strlen(s) > STORE_ID_MAX)
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || *p == '.' || *p == '@'))
            return 0;
    return 1;
}

static int copy_id(char *dst, size_t cap, const char *src)
{
    if (!auth_id_valid(src) || strlen(src) >= cap)
        return -1;
    memcpy(dst, src, strlen(src) + 1);
    return 0;
}

static int secret_matches(const char *got, const char *want)
{
    return crypto_secret_equal(got, strlen(got), want, strlen(want));
}

static void store_unavailable(worker_ctx *w, const char *what, http_response *resp)
{
    log_error("%s failed: %s", what, store_errmsg(w->store));
    http_resp_error(resp, 503, "STORE_UNAVAILABLE", "state store unavailable, retry later");
}

/* The trusted backend names users and organizations its own auth created:
 * what this server has not seen yet is provisioned (created_by "backend"),
 * so the first request of a new org works like every later one.  A user
 * named without an org acts in the org it joined last, as the existing
 * service resolves it — except on internal routes, where no org means "the
 * cluster's own" (the backend's kubectl tool sends no identity headers).
 * 0, or -1 with resp filled. */
static int backend_identity(worker_ctx *w, auth_ctx *a, int internal_only, http_response *resp)
{
    if (!a->org_id[0]) {
        if (!a->user_id[0] || internal_only)
            return 0;
        int rc = store_member_latest_org(w->store, a->user_id, a->org_id);
        if (rc == STORE_NOT_FOUND) {
            http_resp_error(resp, 400, "ORG_REQUIRED",
                            "Organization context required: send X-Org-ID");
            return -1;
        }
        if (rc != STORE_OK) {
            store_unavailable(w, "membership lookup", resp);
            return -1;
        }
        return 0;
    }
    int created = 0;
    if (store_identity_provision(w->store, a->org_id, a->user_id[0] ? a->user_id : NULL,
                                 "backend", &created) != STORE_OK) {
        store_unavailable(w, "provisioning", resp);
        return -1;
    }
    if (created & STORE_PROVISIONED_ORG)
        log_info("organization %s provisioned (named by the trusted backend)", a->org_id);
    if (created & STORE_PROVISIONED_MEMBER)
        log_info("user %s provisioned in organization %s (named by the trusted backend)",
                 a->user_id, a->org_id);
    return 0;
}

/* An API key speaks for its own user and org: headers that name another
 * are refused rather than ignored, so a caller never believes it acted
 * elsewhere.  0, or -1 with a 403 in resp. */
static int key_claims_match(const http_request *req, const auth_ctx *a, http_response *resp)
{
    const char *oid = http_header_get(req, "x-org-id");
    const char *uid = http_header_get(req, "x-user-id");
    if (oid && strcmp(oid, a->org_id) != 0) {
        http_resp_error(resp, 403, "ORG_MISMATCH",
                        "X-Org-ID names another organization than the API key's");
        return -1;
    }
    if (uid && strcmp(uid, a->user_id) != 0) {
        http_resp_error(resp, 403, "USER_MISMATCH", "X-User-ID names another user than the API key's");
        return -1;
    }
    return 0;
}

int auth_authenticate(worker_ctx *w, http_request *req, int internal_only, http_response *resp)
{
    auth_ctx *a = &req->auth;
    memset(a, 0, sizeof(*a));
    const char *secret = http_header_get(req, "x-internal-secret");
    if (secret) {
        const char *want = w->cfg->internal_secret;
        if (!want || !*want || !secret_matches(secret, want)) {
            log_warn("rejected request with a wrong X-Internal-Secret from %s",
                     http_client(req));
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
        if (!internal_only && !uid) {
            http_resp_error(resp, 401, "UNAUTHORIZED", "X-Internal-Secret requires X-User-ID");
            return -1;
        }
        if (backend_identity(w, a, internal_only, resp) < 0)
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
    if (!authz) {
        /* No Authorization header: the web console's session cookie, when
         * the request carries one (an Authorization header always wins). */
        int rc = console_session_authenticate(w, req, a, resp);
        if (rc < 0)
            return -1;
        if (rc > 0) {
            if (key_claims_match(req, a, resp) < 0)
                return -1;
            a->authenticated = 1;
            return 0;
        }
    }
    if (!authz || strncasecmp(authz, "Bearer ", 7) != 0 || !authz[7]) {
        http_resp_error(resp, 401, "UNAUTHORIZED", "missing or invalid API key");
        return -1;
    }
    const char *key = authz + 7;
    while (*key == ' ')
        key++;
    if (auth_api_key(w, key, a, resp) < 0)
        return -1;
    if (key_claims_match(req, a, resp) < 0)
        return -1;
    a->authenticated = 1;
    return 0;
}

int auth_api_key(worker_ctx *w, const char *key, auth_ctx *a, http_response *resp)
{
    char hash[65];
    token_hash(key, hash);
    store_api_key k;
    int rc = store_api_key_lookup(w->store, hash, &k);
    if (rc == STORE_ERR) {
        store_unavailable(w, "api key lookup", resp);
        return -1;
    }
    if (rc != STORE_OK) {
        http_resp_error(resp, 401, "UNAUTHORIZED", "missing or invalid API key");
        return -1;
    }
    snprintf(a->org_id, sizeof(a->org_id), "%s", k.org_id);
    snprintf(a->user_id, sizeof(a->user_id), "%s", k.user_id);
    snprintf(a->key_id, sizeof(a->key_id), "%s", k.id);
    return 0;
}

void auth_register(void)
{
    /* Non-standard headers must be captured explicitly (lws keeps them raw). */
    http_capture_header("x-internal-secret");
    http_capture_header("x-user-id");
    http_capture_header("x-org-id");
}
