/* test_kit_oauth.c — the connector kit's OAuth 2.0 flow (kit_oauth.c).
 *
 * A loopback HTTP server thread stands in for a provider's token and
 * revocation endpoints (RFC 6749 section 4.1.3 / 6, RFC 7009): it records
 * each request and answers what the test scripts.  The PKCE challenge is
 * recomputed here with OpenSSL's EVP digest and base64 encoder, not with the
 * code under test.  State values go through the real store (in memory) and
 * refresh tokens through the real local secrets backend. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "connector.h"
#include "kit_oauth.h"
#include "kit_secrets.h"
#include "secrets.h"
#include "store.h"

/* ---- the provider stand-in ----------------------------------------------------------- */

typedef struct {
    int fd, port;
    pthread_t th;
    /* scripted answer of the next request */
    int status;
    char body[1024];
    int hang; /* accept, read, never answer (until the client gives up) */
    /* the answer after the next one (then_status 0: the same again) */
    int then_status;
    char then_body[1024];
    /* run once when the next request has arrived, before it is answered */
    void (*on_request)(void *arg);
    void *on_request_arg;
    /* what the last request carried */
    char req_head[4096];
    char req_body[4096];
    int served;
} provider;

static void *serve(void *arg)
{
    provider *p = arg;
    for (;;) {
        int c = accept(p->fd, NULL, NULL);
        if (c < 0)
            return NULL;
        char buf[8192];
        size_t n = 0;
        char *end = NULL;
        while (!end && n < sizeof(buf) - 1) {
            ssize_t r = read(c, buf + n, sizeof(buf) - 1 - n);
            if (r <= 0)
                break;
            n += (size_t)r;
            buf[n] = '\0';
            end = strstr(buf, "\r\n\r\n");
        }
        size_t want = 0;
        char *cl = end ? strcasestr(buf, "content-length:") : NULL;
        if (cl)
            want = (size_t)strtoul(cl + 15, NULL, 10);
        while (end && (size_t)(buf + n - (end + 4)) < want && n < sizeof(buf) - 1) {
            ssize_t r = read(c, buf + n, sizeof(buf) - 1 - n);
            if (r <= 0)
                break;
            n += (size_t)r;
            buf[n] = '\0';
        }
        if (end) {
            snprintf(p->req_head, sizeof(p->req_head), "%.*s", (int)(end - buf), buf);
            snprintf(p->req_body, sizeof(p->req_body), "%s", end + 4);
        }
        p->served++;
        if (p->on_request) {
            void (*fn)(void *) = p->on_request;
            p->on_request = NULL;
            fn(p->on_request_arg);
        }
        if (p->hang) {
            char tmp[16];
            while (read(c, tmp, sizeof(tmp)) > 0) {
            }
        } else {
            char out[1400];
            int m = snprintf(out, sizeof(out),
                             "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                             "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                             p->status, strlen(p->body), p->body);
            if (write(c, out, (size_t)m) < 0) {
            }
            if (p->then_status) {
                p->status = p->then_status;
                snprintf(p->body, sizeof(p->body), "%s", p->then_body);
                p->then_status = 0;
            }
        }
        close(c);
    }
}

static void provider_start(provider *p)
{
    memset(p, 0, sizeof(*p));
    p->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(bind(p->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(p->fd, 8), 0);
    socklen_t al = sizeof(a);
    getsockname(p->fd, (struct sockaddr *)&a, &al);
    p->port = ntohs(a.sin_port);
    pthread_create(&p->th, NULL, serve, p);
}

static void provider_stop(provider *p)
{
    shutdown(p->fd, SHUT_RDWR);
    close(p->fd);
    pthread_join(p->th, NULL);
}

static void script(provider *p, int status, const char *body)
{
    p->status = status;
    snprintf(p->body, sizeof(p->body), "%s", body);
    p->hang = 0;
    p->then_status = 0;
}

/* 1 if the recorded form body has name=value exactly. */
static int form_has(const provider *p, const char *pair)
{
    size_t n = strlen(pair);
    for (const char *s = p->req_body; (s = strstr(s, pair)); s++)
        if ((s == p->req_body || s[-1] == '&') && (s[n] == '&' || s[n] == '\0'))
            return 1;
    return 0;
}

/* ---- fixture ---------------------------------------------------------------------------- */

typedef struct {
    provider prov;
    char dir[64], token_url[96], revoke_url[96];
    store_t *st;
    secrets_t *sec;
    worker_ctx w;
    store_org org;
    auth_ctx who;
    kit_oauth_client c;
} fx;

static const kit_oauth_errors errs = {
    .service = "Demo",
    .timeout = "DEMO_TIMEOUT",
    .unreachable = "DEMO_UNREACHABLE",
    .grant = "DEMO_GRANT_INVALID",
    .denied = "DEMO_INVALID_CREDENTIALS",
    .failed = "DEMO_ERROR",
    .denied_hint = "check the client secret",
    .authorization_failed = "DEMO_AUTHORIZATION_FAILED",
    .redirect_mismatch = "DEMO_REDIRECT_URI_MISMATCH",
};

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    char err[512];
    provider_start(&f->prov);
    snprintf(f->token_url, sizeof(f->token_url), "http://127.0.0.1:%d/token", f->prov.port);
    snprintf(f->revoke_url, sizeof(f->revoke_url), "http://127.0.0.1:%d/revoke", f->prov.port);
    snprintf(f->dir, sizeof(f->dir), "/tmp/aurora-kit-oauth-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    secrets_config cfg = { .backend = "local", .data_dir = f->dir };
    assert_int_equal(secrets_open(&cfg, &f->sec, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(store_open(":memory:", &f->st, err, sizeof(err)), STORE_OK);
    assert_int_equal(store_org_create(f->st, "o", &f->org), STORE_OK);
    f->w.store = f->st;
    f->w.secrets = f->sec;
    f->who.authenticated = 1;
    f->who.internal = 1; /* the frontend starts the flows (an API key's would need it back) */
    snprintf(f->who.org_id, sizeof(f->who.org_id), "%s", f->org.id);
    snprintf(f->who.user_id, sizeof(f->who.user_id), "usr_1");
    f->c = (kit_oauth_client){ .provider = "demo",
                               .authorize_url = "https://id.example/authorize",
                               .token_url = f->token_url,
                               .revoke_url = f->revoke_url,
                               .client_id = "client 1",
                               .client_secret = "s3cr&t",
                               .redirect_uri = "https://aurora.example/demo/callback",
                               .scope = "read write",
                               .extra_params = "prompt=consent",
                               .pkce = 1,
                               /* the stand-in is a thread of this process, which on a
                                * loaded machine may wait seconds for a CPU (the test of
                                * the timeout sets its own) */
                               .timeout_ms = 20000,
                               .errors = &errs };
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    provider_stop(&f->prov);
    store_close(f->st);
    secrets_close(f->sec);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* The value of name in url's query (percent-decoding of %XX only). */
static void query_param(const char *url, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    const char *q = strchr(url, '?');
    size_t nl = strlen(name);
    for (const char *p = q; p && *p; p = strchr(p + 1, '&')) {
        if (strncmp(p + 1, name, nl) || p[1 + nl] != '=')
            continue;
        const char *v = p + 2 + nl;
        size_t o = 0;
        while (*v && *v != '&' && o + 1 < cap) {
            if (*v == '%' && v[1] && v[2]) {
                char hex[3] = { v[1], v[2], 0 };
                out[o++] = (char)strtol(hex, NULL, 16);
                v += 3;
            } else
                out[o++] = *v++;
        }
        out[o] = '\0';
        return;
    }
}

/* A callback request carrying query (each argument NUL-terminated, as http.c hands them). */
static int callback(fx *f, const char *query, kit_oauth_callback *cb, http_response *resp)
{
    static char args[2048];
    http_request req;
    memset(&req, 0, sizeof(req));
    size_t n = strlen(query);
    assert_true(n < sizeof(args));
    memcpy(args, query, n + 1);
    for (size_t i = 0; i < n; i++)
        if (args[i] == '&')
            args[i] = '\0';
    req.query = args;
    req.query_len = n + 1;
    memset(resp, 0, sizeof(*resp));
    return kit_oauth_callback_take(&f->w, &req, &f->c, "Demo sign-in", f->c.redirect_uri, cb, resp);
}

static char *login(fx *f, const char *extra)
{
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    char *url = kit_oauth_authorize_url(&f->w, &f->who, &f->c, extra, &resp);
    assert_non_null(url);
    buf_free(&resp.body);
    return url;
}

static const char *body_of(http_response *r)
{
    static char b[2048];
    snprintf(b, sizeof(b), "%.*s", (int)buf_pending(&r->body), buf_head(&r->body));
    return b;
}

/* ---- tests ---------------------------------------------------------------------------------- */

/* Login URL and callback: every parameter, PKCE S256 checked independently. */
static void test_login_and_callback_with_pkce(void **state)
{
    fx *f = *state;
    char *url = login(f, "eu");
    assert_true(!strncmp(url, "https://id.example/authorize?response_type=code&", 48));
    char v[256], state_v[64], challenge[64];
    query_param(url, "client_id", v, sizeof(v));
    assert_string_equal(v, "client 1");
    query_param(url, "redirect_uri", v, sizeof(v));
    assert_string_equal(v, "https://aurora.example/demo/callback");
    query_param(url, "scope", v, sizeof(v));
    assert_string_equal(v, "read write");
    query_param(url, "prompt", v, sizeof(v));
    assert_string_equal(v, "consent");
    query_param(url, "code_challenge_method", v, sizeof(v));
    assert_string_equal(v, "S256");
    query_param(url, "code_challenge", challenge, sizeof(challenge));
    query_param(url, "state", state_v, sizeof(state_v));
    assert_int_equal(strlen(state_v), 43);
    assert_null(strstr(url, "code_verifier"));
    free(url);

    char q[256];
    snprintf(q, sizeof(q), "code=abc&state=%s", state_v);
    kit_oauth_callback cb;
    http_response resp;
    assert_int_equal(callback(f, q, &cb, &resp), 0);
    assert_string_equal(cb.code, "abc");
    assert_string_equal(cb.st.extra, "eu"); /* the connector's data, verifier taken off */
    assert_string_equal(cb.st.user_id, "usr_1");
    assert_int_equal(strlen(cb.verifier), KIT_PKCE_VERIFIER_LEN);
    /* S256: BASE64URL(SHA256(verifier)) without padding (RFC 7636 4.2) */
    unsigned char md[32];
    unsigned int mdl = 0;
    assert_int_equal(EVP_Digest(cb.verifier, strlen(cb.verifier), md, &mdl, EVP_sha256(), NULL), 1);
    unsigned char b64[64];
    int bl = EVP_EncodeBlock(b64, md, (int)mdl);
    for (int i = 0; i < bl; i++)
        b64[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
    while (bl > 0 && b64[bl - 1] == '=')
        b64[--bl] = '\0';
    assert_string_equal((char *)b64, challenge);

    /* the exchange: client_secret_post with the verifier and the same redirect URI */
    script(&f->prov, 200, "{\"access_token\":\"at-1\",\"refresh_token\":\"rt-1\",\"expires_in\":120}");
    char verifier[64];
    snprintf(verifier, sizeof(verifier), "code_verifier=%s", cb.verifier);
    cJSON *tok = kit_oauth_exchange(&f->w, &f->c, &cb, "Demo sign-in failed", &resp);
    assert_non_null(tok);
    assert_true(form_has(&f->prov, "grant_type=authorization_code"));
    assert_true(form_has(&f->prov, "code=abc"));
    assert_true(form_has(&f->prov, "redirect_uri=https%3A%2F%2Faurora.example%2Fdemo%2Fcallback"));
    assert_true(form_has(&f->prov, verifier));
    assert_true(form_has(&f->prov, "client_id=client%201"));
    assert_true(form_has(&f->prov, "client_secret=s3cr%26t"));
    assert_null(strcasestr(f->prov.req_head, "authorization:"));
    assert_string_equal(cb.code, ""); /* wiped */
    int64_t exp = 0, now = (int64_t)time(NULL);
    char *at = kit_oauth_access_token(tok, 100, now, &exp);
    assert_string_equal(at, "at-1");
    assert_int_equal(exp, now + 120);
    free(at);
    secret_json_free(tok);
    buf_free(&resp.body);

    /* the state was single use */
    assert_int_equal(callback(f, q, &cb, &resp), -1);
    assert_int_equal(resp.status, 400);
    assert_non_null(strstr(body_of(&resp), "already used"));
    buf_free(&resp.body);
}

/* The provider's ?error=, a missing code, a changed redirect URI: clear
 * errors, and the state is burnt either way. */
static void test_callback_failures(void **state)
{
    fx *f = *state;
    char q[512], st[64];
    kit_oauth_callback cb;
    http_response resp;
    char *url = login(f, NULL);
    query_param(url, "state", st, sizeof(st));
    free(url);
    /* decoded, as http.c hands the query over; the error's markup is dropped */
    snprintf(q, sizeof(q), "error=access_denied<x>&error_description=AADSTS65004: User declined&state=%s", st);
    assert_int_equal(callback(f, q, &cb, &resp), -1);
    assert_int_equal(resp.status, 400);
    assert_non_null(strstr(body_of(&resp), "DEMO_AUTHORIZATION_FAILED"));
    assert_non_null(strstr(body_of(&resp), "Demo sign-in failed: access_deniedx: AADSTS65004"));
    assert_null(strstr(body_of(&resp), "<"));
    buf_free(&resp.body);
    snprintf(q, sizeof(q), "code=abc&state=%s", st);
    assert_int_equal(callback(f, q, &cb, &resp), -1);
    assert_non_null(strstr(body_of(&resp), "already used"));
    buf_free(&resp.body);

    url = login(f, NULL);
    query_param(url, "state", st, sizeof(st));
    free(url);
    snprintf(q, sizeof(q), "state=%s", st);
    assert_int_equal(callback(f, q, &cb, &resp), -1);
    assert_non_null(strstr(body_of(&resp), "No authorization code provided"));
    buf_free(&resp.body);

    url = login(f, NULL);
    query_param(url, "state", st, sizeof(st));
    free(url);
    f->c.redirect_uri = "https://other.example/cb"; /* the setting changed meanwhile */
    snprintf(q, sizeof(q), "code=abc&state=%s", st);
    assert_int_equal(callback(f, q, &cb, &resp), -1);
    assert_non_null(strstr(body_of(&resp), "DEMO_REDIRECT_URI_MISMATCH"));
    assert_string_equal(cb.code, "");
    buf_free(&resp.body);

    /* a state issued without PKCE is refused by a PKCE client */
    f->c.pkce = 0;
    url = login(f, NULL);
    query_param(url, "state", st, sizeof(st));
    assert_null(strstr(url, "code_challenge"));
    free(url);
    f->c.pkce = 1;
    snprintf(q, sizeof(q), "code=abc&state=%s", st);
    assert_int_equal(callback(f, q, &cb, &resp), -1);
    assert_non_null(strstr(body_of(&resp), "OAUTH_STATE_INVALID"));
    buf_free(&resp.body);
}

/* Token-endpoint failures as the connector's codes. */
static void test_error_mapping(void **state)
{
    fx *f = *state;
    static const struct {
        int status;
        const char *body;
        int want_status;
        const char *want_code;
    } cases[] = {
        { 400, "{\"error\":\"invalid_grant\"}", 400, "DEMO_GRANT_INVALID" },
        { 401, "{\"error\":\"invalid_client\"}", 400, "DEMO_INVALID_CREDENTIALS" },
        { 400, "{\"error\":\"redirect_uri_mismatch\"}", 400, "DEMO_REDIRECT_URI_MISMATCH" },
        { 500, "oops", 502, "DEMO_ERROR" },
        { 200, "not json", 502, "DEMO_ERROR" },
        { 400, "{\"error\":\"unauthorized_client\"}", 400, "DEMO_INVALID_CREDENTIALS" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        script(&f->prov, cases[i].status, cases[i].body);
        const char *form[] = { "grant_type", "client_credentials", NULL };
        oauth_result r;
        cJSON *j = kit_oauth_token_post(f->token_url, form, NULL, 2000, &r);
        assert_null(j);
        http_response resp;
        memset(&resp, 0, sizeof(resp));
        kit_oauth_error(&f->c, &r, "Demo login failed", &resp);
        assert_int_equal(resp.status, cases[i].want_status);
        assert_non_null(strstr(body_of(&resp), cases[i].want_code));
        assert_non_null(strstr(body_of(&resp), cases[i].status == 400 && i == 2
                                                   ? "Redirect URI mismatch"
                                                   : "Demo login failed"));
        /* the client hint for a refused client only: a revoked or expired
         * grant is the user's to reconnect, not the operator's settings */
        const char *err = cases[i].body;
        int client = strstr(err, "invalid_client") || strstr(err, "unauthorized_client");
        assert_int_equal(strstr(body_of(&resp), "check the client secret") != NULL, client);
        assert_int_equal(strstr(body_of(&resp), "reconnect via the Connectors page") != NULL,
                         strstr(err, "invalid_grant") != NULL);
        buf_free(&resp.body);
    }
    /* no answer in time: 504 */
    f->prov.hang = 1;
    const char *form[] = { "grant_type", "client_credentials", NULL };
    oauth_result r;
    assert_null(kit_oauth_token_post(f->token_url, form, NULL, 300, &r));
    assert_int_equal(r.code, AUR_E_TIMEOUT);
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    kit_oauth_error(&f->c, &r, "Demo login failed", &resp);
    assert_int_equal(resp.status, 504);
    assert_non_null(strstr(body_of(&resp), "DEMO_TIMEOUT"));
    buf_free(&resp.body);
    f->prov.hang = 0;
    /* nothing listening: 502 unreachable */
    assert_null(kit_oauth_token_post("http://127.0.0.1:1/token", form, NULL, 2000, &r));
    memset(&resp, 0, sizeof(resp));
    kit_oauth_error(&f->c, &r, "Demo login failed", &resp);
    assert_int_equal(resp.status, 502);
    assert_non_null(strstr(body_of(&resp), "DEMO_UNREACHABLE"));
    buf_free(&resp.body);
}

/* Refresh: HTTP Basic client auth, the stored token rotated when a new one
 * comes back, kept when none does. */
static void test_refresh_rotation_and_basic_auth(void **state)
{
    fx *f = *state;
    char ref[512];
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    assert_int_equal(kit_secret_put(&f->w, f->org.id, "usr_1", "demo", "refresh-token", "rt-1", ref,
                                    sizeof(ref), &resp),
                     0);
    f->c.basic_auth = 1;
    script(&f->prov, 200, "{\"access_token\":\"at-2\",\"refresh_token\":\"rt-2\",\"expires_in\":60}");
    cJSON *tok = kit_oauth_refresh(&f->w, &f->c, ref, "offline", "refresh failed", "GONE", "gone",
                                   &resp);
    assert_non_null(tok);
    secret_json_free(tok);
    assert_true(form_has(&f->prov, "grant_type=refresh_token"));
    assert_true(form_has(&f->prov, "refresh_token=rt-1"));
    assert_true(form_has(&f->prov, "scope=offline"));
    assert_false(form_has(&f->prov, "client_secret=s3cr%26t"));
    /* RFC 6749 2.3.1: Basic of the form-encoded id and secret */
    unsigned char b64[128];
    const char *pair = "client%201:s3cr%26t";
    EVP_EncodeBlock(b64, (const unsigned char *)pair, (int)strlen(pair));
    char want[200];
    snprintf(want, sizeof(want), "Authorization: Basic %s", b64);
    assert_non_null(strstr(f->prov.req_head, want));
    unsigned char *v;
    size_t n;
    assert_int_equal(kit_secret_get(&f->w, ref, &v, &n, 404, "X", "x", &resp), 0);
    assert_memory_equal(v, "rt-2", 4);
    secrets_free(v, n);
    /* no new refresh token: the stored one stays */
    script(&f->prov, 200, "{\"access_token\":\"at-3\",\"expires_in\":60}");
    tok = kit_oauth_refresh(&f->w, &f->c, ref, NULL, "refresh failed", "GONE", "gone", &resp);
    assert_non_null(tok);
    secret_json_free(tok);
    assert_true(form_has(&f->prov, "refresh_token=rt-2"));
    assert_int_equal(kit_secret_get(&f->w, ref, &v, &n, 404, "X", "x", &resp), 0);
    assert_memory_equal(v, "rt-2", 4);
    secrets_free(v, n);
    /* a refused refresh: the grant code; the stored token untouched */
    script(&f->prov, 400, "{\"error\":\"invalid_grant\"}");
    assert_null(kit_oauth_refresh(&f->w, &f->c, ref, NULL, "refresh failed", "GONE", "gone", &resp));
    assert_non_null(strstr(body_of(&resp), "DEMO_GRANT_INVALID"));
    buf_free(&resp.body);
    /* the secret is gone: the connector's message */
    char err[256];
    char be[32];
    const char *path;
    assert_int_equal(secrets_ref_parse(ref, be, sizeof(be), &path), 0);
    assert_int_equal(secrets_delete(f->sec, path, err, sizeof(err)), SECRETS_OK);
    memset(&resp, 0, sizeof(resp));
    assert_null(kit_oauth_refresh(&f->w, &f->c, ref, NULL, "refresh failed", "GONE",
                                  "connect again", &resp));
    assert_int_equal(resp.status, 400);
    assert_non_null(strstr(body_of(&resp), "connect again"));
    buf_free(&resp.body);
}

/* Another replica rotated the token while this refresh was on its way: the
 * provider refuses the retired token (invalid_grant); the stored token is
 * read again and, being another one, used, instead of reporting a grant
 * the user must reconnect although it is fine. */
typedef struct {
    fx *f;
    const char *ref;
} swap_arg;

static void other_replica_rotates(void *arg)
{
    swap_arg *a = arg;
    char err[256];
    assert_int_equal(kit_secret_replace(&a->f->w, a->ref, "rt-elsewhere", err, sizeof(err)),
                     SECRETS_OK);
}

static void test_refresh_after_rotation_elsewhere(void **state)
{
    fx *f = *state;
    char ref[512];
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    assert_int_equal(kit_secret_put(&f->w, f->org.id, "usr_1", "demo", "refresh-token", "rt-1", ref,
                                    sizeof(ref), &resp),
                     0);
    swap_arg a = { f, ref };
    script(&f->prov, 400, "{\"error\":\"invalid_grant\"}");
    f->prov.then_status = 200;
    snprintf(f->prov.then_body, sizeof(f->prov.then_body),
             "{\"access_token\":\"at-9\",\"refresh_token\":\"rt-9\",\"expires_in\":60}");
    f->prov.on_request = other_replica_rotates;
    f->prov.on_request_arg = &a;
    cJSON *tok = kit_oauth_refresh(&f->w, &f->c, ref, NULL, "refresh failed", "GONE", "gone",
                                   &resp);
    assert_non_null(tok);
    assert_string_equal(cJSON_GetObjectItem(tok, "access_token")->valuestring, "at-9");
    secret_json_free(tok);
    assert_int_equal(f->prov.served, 2);
    assert_true(form_has(&f->prov, "refresh_token=rt-elsewhere"));
    unsigned char *v;
    size_t n;
    assert_int_equal(kit_secret_get(&f->w, ref, &v, &n, 404, "X", "x", &resp), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(v, "rt-9", 4);
    secrets_free(v, n);
    /* refused, and the stored token is the one sent: refused once, no retry */
    script(&f->prov, 400, "{\"error\":\"invalid_grant\"}");
    f->prov.then_status = 200;
    snprintf(f->prov.then_body, sizeof(f->prov.then_body), "{\"access_token\":\"at-x\"}");
    assert_null(kit_oauth_refresh(&f->w, &f->c, ref, NULL, "refresh failed", "GONE", "gone",
                                  &resp));
    assert_non_null(strstr(body_of(&resp), "DEMO_GRANT_INVALID"));
    assert_int_equal(f->prov.served, 3);
    buf_free(&resp.body);
}

/* A refresh of one grant at the provider does not hold up anything of
 * another grant (here a disconnect's pause): per grant, not per bucket of
 * a hash.  The other grant's reference is picked to share the bucket of a
 * 64-way FNV-1a striping, as the first version of the refresh lock had. */
typedef struct {
    const char *ref;
    int paused;
} other_arg;

static void other_grant_disconnects(void *arg)
{
    other_arg *a = arg;
    kit_oauth_pause *p = kit_oauth_refresh_pause(NULL, a->ref, "demo");
    a->paused = p != NULL;
    kit_oauth_refresh_resume(p);
}

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void test_other_grants_do_not_wait(void **state)
{
    fx *f = *state;
    char ref[512], other[512], path[SECRETS_MAX_PATH + 1], user[32];
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    assert_int_equal(kit_secret_put(&f->w, f->org.id, "usr_1", "demo", "refresh-token", "rt-1", ref,
                                    sizeof(ref), &resp),
                     0);
    other[0] = '\0';
    for (int i = 2; i < 100000 && !other[0]; i++) {
        snprintf(user, sizeof(user), "usr_%d", i);
        assert_int_equal(secrets_user_path(path, sizeof(path), f->org.id, user, "demo",
                                           "refresh-token"),
                         0);
        snprintf(other, sizeof(other), "local:%s", path);
        if (fnv1a(other) % 64 != fnv1a(ref) % 64)
            other[0] = '\0';
    }
    assert_true(other[0] && strcmp(other, ref));
    other_arg a = { other, 0 };
    script(&f->prov, 200, "{\"access_token\":\"at-2\",\"expires_in\":60}");
    f->prov.on_request = other_grant_disconnects; /* while this grant's refresh is out */
    f->prov.on_request_arg = &a;
    /* A pause that waited for this refresh makes it time out; the passing
     * path must beat it on a loaded machine too, hence not a second or two. */
    f->c.timeout_ms = 10000;
    cJSON *tok = kit_oauth_refresh(&f->w, &f->c, ref, NULL, "refresh failed", "GONE", "gone",
                                   &resp);
    assert_non_null(tok);
    secret_json_free(tok);
    assert_int_equal(a.paused, 1);
}

/* The provider rotated the refresh token but the secrets backend did not
 * take the new one (down for a moment): the retired one is all the backend
 * holds, so the new one is kept in memory, sent at the next refresh and
 * stored then, instead of the connection being lost. */
typedef struct {
    fx *f;
    secrets_t *down;
} outage_arg;

static void backend_goes_down(void *arg)
{
    outage_arg *a = arg;
    a->f->w.secrets = a->down;
}

static void test_rotated_token_kept_when_the_store_fails(void **state)
{
    fx *f = *state;
    char ref[512], err[256];
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    assert_int_equal(kit_secret_put(&f->w, f->org.id, "usr_1", "demo", "refresh-token", "rt-1", ref,
                                    sizeof(ref), &resp),
                     0);
    /* a Vault nobody answers at: every call fails at once */
    secrets_config vc = { .backend = "vault", .vault_addr = "http://127.0.0.1:1",
                          .vault_token = "t", .timeout_ms = 2000 };
    secrets_t *down = NULL;
    assert_int_equal(secrets_open(&vc, &down, err, sizeof(err)), SECRETS_OK);
    outage_arg a = { f, down };
    secrets_t *up = f->sec;
    script(&f->prov, 200, "{\"access_token\":\"at-2\",\"refresh_token\":\"rt-2\"}");
    f->prov.on_request = backend_goes_down;
    f->prov.on_request_arg = &a;
    cJSON *tok = kit_oauth_refresh(&f->w, &f->c, ref, NULL, "refresh failed", "GONE", "gone",
                                   &resp);
    assert_non_null(tok); /* this call has its access token */
    secret_json_free(tok);
    f->w.secrets = up;
    unsigned char *v;
    size_t n;
    assert_int_equal(kit_secret_get(&f->w, ref, &v, &n, 404, "X", "x", &resp), 0);
    assert_memory_equal(v, "rt-1", 4); /* the backend missed the rotation */
    secrets_free(v, n);
    /* the backend is back: the next refresh presents rt-2 and stores rt-3 */
    script(&f->prov, 200, "{\"access_token\":\"at-3\",\"refresh_token\":\"rt-3\"}");
    tok = kit_oauth_refresh(&f->w, &f->c, ref, NULL, "refresh failed", "GONE", "gone", &resp);
    assert_non_null(tok);
    secret_json_free(tok);
    assert_true(form_has(&f->prov, "refresh_token=rt-2"));
    assert_int_equal(kit_secret_get(&f->w, ref, &v, &n, 404, "X", "x", &resp), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(v, "rt-3", 4);
    secrets_free(v, n);
    /* stored: the one after presents the stored one again */
    script(&f->prov, 200, "{\"access_token\":\"at-4\"}");
    tok = kit_oauth_refresh(&f->w, &f->c, ref, NULL, "refresh failed", "GONE", "gone", &resp);
    assert_non_null(tok);
    secret_json_free(tok);
    assert_true(form_has(&f->prov, "refresh_token=rt-3"));
    secrets_close(down);
}

/* Leaves rt-2, the rotated token of ref's grant, kept in memory only: the
 * backend is down while the refresh stores it, so it still holds rt-1. */
static void keep_rotated_token(fx *f, const char *ref)
{
    char err[256];
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    secrets_config vc = { .backend = "vault", .vault_addr = "http://127.0.0.1:1",
                          .vault_token = "t", .timeout_ms = 2000 };
    secrets_t *down = NULL;
    assert_int_equal(secrets_open(&vc, &down, err, sizeof(err)), SECRETS_OK);
    outage_arg a = { f, down };
    script(&f->prov, 200, "{\"access_token\":\"at-2\",\"refresh_token\":\"rt-2\"}");
    f->prov.on_request = backend_goes_down;
    f->prov.on_request_arg = &a;
    cJSON *tok = kit_oauth_refresh(&f->w, &f->c, ref, NULL, "refresh failed", "GONE", "gone",
                                   &resp);
    assert_non_null(tok);
    secret_json_free(tok);
    f->prov.on_request = NULL;
    f->w.secrets = f->sec;
    secrets_close(down);
    buf_free(&resp.body);
}

/* A disconnect's pause stores the kept rotated token before the
 * disconnecting hook reads the stored one to revoke it: the hook revokes
 * the live grant, not the token the provider has already retired. */
static void test_disconnect_pause_stores_the_live_token(void **state)
{
    fx *f = *state;
    char ref[512];
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    assert_int_equal(kit_secret_put(&f->w, f->org.id, "usr_1", "demo", "refresh-token", "rt-1", ref,
                                    sizeof(ref), &resp),
                     0);
    keep_rotated_token(f, ref);
    kit_oauth_pause *p = kit_oauth_refresh_pause(&f->w, ref, "demo");
    assert_non_null(p);
    unsigned char *v;
    size_t n;
    assert_int_equal(kit_secret_get(&f->w, ref, &v, &n, 404, "X", "x", &resp), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(v, "rt-2", 4); /* what the hook revokes */
    secrets_free(v, n);
    kit_oauth_refresh_resume(p);
}

/* The connection is removed elsewhere (another replica) while a rotated
 * token is kept here: the refresh that finds the secret gone drops it too,
 * and it is never sent again (here: the retired token stored anew at the
 * same path is sent as it is). */
static void test_kept_token_dropped_when_the_secret_is_gone(void **state)
{
    fx *f = *state;
    char ref[512], err[256], be[32];
    const char *path;
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    assert_int_equal(kit_secret_put(&f->w, f->org.id, "usr_1", "demo", "refresh-token", "rt-1", ref,
                                    sizeof(ref), &resp),
                     0);
    keep_rotated_token(f, ref);
    assert_int_equal(secrets_ref_parse(ref, be, sizeof(be), &path), 0);
    assert_int_equal(secrets_delete(f->sec, path, err, sizeof(err)), SECRETS_OK);
    assert_null(kit_oauth_refresh(&f->w, &f->c, ref, NULL, "refresh failed", "GONE", "gone",
                                  &resp));
    assert_int_equal(resp.status, 400);
    buf_free(&resp.body);
    assert_int_equal(secrets_put(f->sec, path, "rt-1", 4, err, sizeof(err)), SECRETS_OK);
    script(&f->prov, 200, "{\"access_token\":\"at-3\"}");
    memset(&resp, 0, sizeof(resp));
    cJSON *tok = kit_oauth_refresh(&f->w, &f->c, ref, NULL, "refresh failed", "GONE", "gone",
                                   &resp);
    assert_non_null(tok);
    secret_json_free(tok);
    assert_true(form_has(&f->prov, "refresh_token=rt-1"));
    assert_false(form_has(&f->prov, "refresh_token=rt-2"));
}

/* The user connects again (the callback stores the new grant's refresh
 * token) while a refresh of the previous grant is at the provider: that
 * refresh's rotated token must not be written over the new grant's, or the
 * connection (the new account in its row) runs on the old grant.  The
 * reconnect waits for the refresh under way to end, then stores its own. */
typedef struct {
    fx *f;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, rc, done_during_refresh;
} reconnect_arg;

static void *reconnect_thread(void *arg)
{
    reconnect_arg *a = arg;
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    kit_field fld = { "refresh-token", "rt-new" };
    int rc = kit_connect_store(&a->f->w, a->f->org.id, "usr_1", "demo", "acct-2", &fld, 1, NULL,
                               &resp);
    buf_free(&resp.body);
    pthread_mutex_lock(&a->mu);
    a->rc = rc;
    a->done = 1;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

static void user_reconnects(void *arg)
{
    reconnect_arg *a = arg;
    assert_int_equal(pthread_create(&a->th, NULL, reconnect_thread, a), 0);
    /* while this refresh is out, the reconnect does not get through: it
     * has not ended half a second later (it ends at once when it does) */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 500 * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&a->mu);
    while (!a->done && pthread_cond_timedwait(&a->cv, &a->mu, &until) == 0) {
    }
    a->done_during_refresh = a->done;
    pthread_mutex_unlock(&a->mu);
}

static void test_reconnect_during_refresh_keeps_the_new_grant(void **state)
{
    fx *f = *state;
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    kit_field fld = { "refresh-token", "rt-1" };
    assert_int_equal(
        kit_connect_store(&f->w, f->org.id, "usr_1", "demo", "acct-1", &fld, 1, NULL, &resp), 0);
    store_connector row;
    assert_int_equal(store_connector_get(f->st, f->org.id, "usr_1", "demo", &row), STORE_OK);
    char ref[sizeof(row.secret_ref)];
    snprintf(ref, sizeof(ref), "%s", row.secret_ref);
    store_connector_free(&row);
    reconnect_arg a = { .f = f };
    pthread_mutex_init(&a.mu, NULL);
    pthread_cond_init(&a.cv, NULL);
    script(&f->prov, 200, "{\"access_token\":\"at-2\",\"refresh_token\":\"rt-2\"}");
    f->prov.on_request = user_reconnects;
    f->prov.on_request_arg = &a;
    cJSON *tok = kit_oauth_refresh(&f->w, &f->c, ref, NULL, "refresh failed", "GONE", "gone",
                                   &resp);
    assert_non_null(tok);
    secret_json_free(tok);
    pthread_join(a.th, NULL);
    assert_int_equal(a.rc, 0);
    assert_int_equal(a.done_during_refresh, 0);
    /* the new grant's token is the stored one, and the row names it */
    unsigned char *v;
    size_t n;
    assert_int_equal(kit_secret_get(&f->w, ref, &v, &n, 404, "X", "x", &resp), 0);
    assert_int_equal(n, 6);
    assert_memory_equal(v, "rt-new", 6);
    secrets_free(v, n);
    assert_int_equal(store_connector_get(f->st, f->org.id, "usr_1", "demo", &row), STORE_OK);
    assert_string_equal(row.account, "acct-2");
    assert_string_equal(row.secret_ref, ref);
    store_connector_free(&row);
    pthread_cond_destroy(&a.cv);
    pthread_mutex_destroy(&a.mu);
    buf_free(&resp.body);
}

static int64_t expires_in_of(const char *doc)
{
    cJSON *j = cJSON_Parse(doc);
    assert_non_null(j);
    int64_t v = kit_oauth_expires_in(j);
    cJSON_Delete(j);
    return v;
}

/* Expiry bookkeeping: expires_in, absent or absurd, and tokens too long. */
static void test_access_token_expiry(void **state)
{
    (void)state;
    int64_t exp;
    cJSON *j = cJSON_Parse("{\"access_token\":\"a\",\"expires_in\":3599}");
    char *t = kit_oauth_access_token(j, 10, 1000, &exp);
    assert_int_equal(exp, 1000 + 3599);
    free(t);
    cJSON_Delete(j);
    j = cJSON_Parse("{\"access_token\":\"a\"}");
    t = kit_oauth_access_token(j, 10, 1000, &exp);
    assert_int_equal(exp, 1000 + 3600);
    free(t);
    cJSON_Delete(j);
    j = cJSON_Parse("{\"access_token\":\"a\",\"expires_in\":-5}");
    t = kit_oauth_access_token(j, 10, 1000, &exp);
    assert_int_equal(exp, 1000 + 3600);
    free(t);
    cJSON_Delete(j);
    /* Azure AD v1 endpoints and ADFS send it as a string: a 300 s token
     * taken for 3600 s would be handed out long after it died */
    j = cJSON_Parse("{\"access_token\":\"a\",\"expires_in\":\"300\"}");
    t = kit_oauth_access_token(j, 10, 1000, &exp);
    assert_int_equal(exp, 1000 + 300);
    free(t);
    cJSON_Delete(j);
    assert_int_equal(expires_in_of("{\"expires_in\":\"3599\"}"), 3599);
    assert_int_equal(expires_in_of("{\"expires_in\":\"604800\"}"), 604800);
    /* anything but plain digits within a week is no answer */
    const char *bad[] = { "\"\"", "\"0\"", "\"-5\"", "\"+5\"", "\" 5\"", "\"5 \"", "\"5s\"",
                          "\"3.5\"", "\"0x10\"", "\"604801\"", "\"99999999999999999999999\"",
                          "\"1e3\"", "null", "true", "[60]" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char doc[96];
        snprintf(doc, sizeof(doc), "{\"expires_in\":%s}", bad[i]);
        assert_int_equal(expires_in_of(doc), 0);
    }
    j = cJSON_Parse("{\"access_token\":\"abcdefghijk\"}");
    assert_null(kit_oauth_access_token(j, 10, 1000, &exp));
    cJSON_Delete(j);
    j = cJSON_Parse("{\"token_type\":\"bearer\"}");
    assert_null(kit_oauth_access_token(j, 10, 1000, &exp));
    cJSON_Delete(j);
}

/* A token goes into later "Authorization: Bearer" headers: a hostile or
 * broken token endpoint must not get CR/LF (a header of its choosing),
 * blanks or other bytes into them (found in review: anything up to the
 * length limit was taken, where github_app.c already refused them).  What
 * real providers issue passes. */
static void test_tokens_must_be_header_safe(void **state)
{
    fx *f = *state;
    int64_t exp;
    static const char *const good[] = {
        "ya29.a0AfB_byC-9xYz_1234567890abcdefGHIJ-kl~", /* Google */
        "1//0gLr-refresh_Token-Google",                  /* Google refresh */
        "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx", /* Slack */
        "xoxe.xoxp-1-Mi0yLTEyMzQ1Njc4OTA",                /* Slack rotating */
        "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.c2ln-bmF0_dXJl", /* JWT */
        "pdus+_0XBPWQQ_5cfd64a0-1f2b-4c3d-9e8f-0123456789ab", /* PagerDuty */
        "gho_16C7e42F292c6912E7710c838347Ae178B4a",      /* GitHub */
        "Q1w2E3r4T5y6U7i8O9p0/+aZ==",                    /* base64 with padding */
        "EU.ext-1.a1b2c3d4e5f6",                         /* OVH */
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_true(kit_oauth_token_ok(good[i], 128));
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "access_token", good[i]);
        char *t = kit_oauth_access_token(j, 128, 1000, &exp);
        assert_non_null(t);
        assert_string_equal(t, good[i]);
        free(t);
        cJSON_Delete(j);
    }
    static const char *const bad[] = {
        "a\r\nX-Injected: 1", "a\nb", "a\rb", "a b", "a\tb", " a", "a\x7f", "t\xc3\xb6ken",
        "a\x01", "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(kit_oauth_token_ok(bad[i], 128));
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "access_token", bad[i]);
        assert_null(kit_oauth_access_token(j, 128, 1000, &exp));
        cJSON_Delete(j);
    }
    assert_false(kit_oauth_token_ok(NULL, 128));
    assert_false(kit_oauth_token_ok("abcd", 3));
    /* the token endpoint's answer: every flow's access and refresh tokens
     * (also those a connector reads itself) come through here */
    static const char *const answers[] = {
        "{\"access_token\":\"a\\r\\nX-Injected: 1\",\"token_type\":\"Bearer\"}",
        "{\"access_token\":\"good\",\"refresh_token\":\"r\\nx\"}",
        "{\"access_token\":\"g\\u00f6od\"}",
        "{\"access_token\":\"good\",\"refresh_token\":\"has space\"}",
    };
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
        script(&f->prov, 200, answers[i]);
        const char *form[] = { "grant_type", "client_credentials", NULL };
        oauth_result r;
        assert_null(kit_oauth_token_post(f->token_url, form, NULL, 2000, &r));
        assert_int_equal(r.code, AUR_E_UNAVAILABLE);
        assert_non_null(strstr(r.err, "not a usable token"));
        assert_null(strstr(r.err, "good"));
        http_response resp;
        memset(&resp, 0, sizeof(resp));
        kit_oauth_error(&f->c, &r, "Demo login failed", &resp);
        assert_int_equal(resp.status, 502);
        buf_free(&resp.body);
    }
    script(&f->prov, 200, "{\"access_token\":\"ya29.ok\",\"refresh_token\":\"1//ok\"}");
    const char *form[] = { "grant_type", "client_credentials", NULL };
    oauth_result r;
    cJSON *j = kit_oauth_token_post(f->token_url, form, NULL, 2000, &r);
    assert_non_null(j);
    secret_json_free(j);
}

/* Granular consent (Google): the answer's scope is what the user left
 * ticked; no "scope" means what was asked (RFC 6749 5.1). */
static void test_scope_granted(void **state)
{
    (void)state;
    const char *cp = "https://www.googleapis.com/auth/cloud-platform";
    assert_true(kit_oauth_scope_listed("openid email https://www.googleapis.com/auth/cloud-platform",
                                       cp));
    assert_true(kit_oauth_scope_listed("  a   b ", "b"));
    assert_false(kit_oauth_scope_listed("https://www.googleapis.com/auth/cloud-platform.read-only",
                                        cp));
    assert_false(kit_oauth_scope_listed("x-https://www.googleapis.com/auth/cloud-platform", cp));
    assert_false(kit_oauth_scope_listed("", cp));
    assert_false(kit_oauth_scope_listed(NULL, cp));
    assert_false(kit_oauth_scope_listed("a", ""));
    static const struct {
        const char *doc;
        int granted;
    } cases[] = {
        { "{\"scope\":\"openid https://www.googleapis.com/auth/cloud-platform email\"}", 1 },
        { "{\"access_token\":\"a\"}", 1 },
        { "{\"scope\":\"openid email\"}", 0 },
        { "{\"scope\":\"\"}", 0 },
        { "{\"scope\":null}", 0 },
        { "{\"scope\":[\"https://www.googleapis.com/auth/cloud-platform\"]}", 0 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *j = cJSON_Parse(cases[i].doc);
        assert_non_null(j);
        assert_int_equal(kit_oauth_scope_granted(j, cp), cases[i].granted);
        cJSON_Delete(j);
    }
}

/* RFC 7009 revocation: the token and its hint; a refusal reported. */
static void test_revoke(void **state)
{
    fx *f = *state;
    script(&f->prov, 200, "");
    assert_int_equal(kit_oauth_revoke(&f->c, "rt-9", "refresh_token"), 0);
    assert_non_null(strstr(f->prov.req_head, "POST /revoke "));
    assert_true(form_has(&f->prov, "token=rt-9"));
    assert_true(form_has(&f->prov, "token_type_hint=refresh_token"));
    script(&f->prov, 503, "{\"error\":\"temporarily_unavailable\"}");
    assert_int_equal(kit_oauth_revoke(&f->c, "rt-9", "refresh_token"), -1);
    f->c.revoke_url = NULL; /* no endpoint: nothing sent */
    int served = f->prov.served;
    assert_int_equal(kit_oauth_revoke(&f->c, "rt-9", "refresh_token"), -1);
    assert_int_equal(f->prov.served, served);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_login_and_callback_with_pkce, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_mapping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refresh_rotation_and_basic_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refresh_after_rotation_elsewhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_grants_do_not_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotated_token_kept_when_the_store_fails, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_disconnect_pause_stores_the_live_token, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_kept_token_dropped_when_the_secret_is_gone, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_during_refresh_keeps_the_new_grant, setup,
                                        teardown),
        cmocka_unit_test(test_access_token_expiry),
        cmocka_unit_test_setup_teardown(test_tokens_must_be_header_safe, setup, teardown),
        cmocka_unit_test(test_scope_granted),
        cmocka_unit_test_setup_teardown(test_revoke, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
