/* test_connectors.c — what connectors share: server/http_client.c (URL
 * rules, form encoding, bounded requests), server/jwt.c (RS256 signatures
 * checked with OpenSSL's verifier, service account key validation),
 * server/connectors/oauth.c (state values: single use, expiry, provider and user
 * binding, and the browser binding of a flow a console session starts) and
 * cloud_creds (connectors.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "connector.h"
#include "console_cookie.h"
#include "crypto.h"
#include "http_client.h"
#include "jwt.h"
#include "oauth.h"
#include "server_config.h"
#include "store.h"
#include "store_console.h"

/* ---- http_client ------------------------------------------------------------------ */

static void test_url_rules(void **state)
{
    assert_true(http_client_url_ok("https://oauth2.googleapis.com/token", 1));
    assert_true(http_client_url_ok("http://127.0.0.1:8080/x", 0));
    assert_false(http_client_url_ok("http://127.0.0.1:8080/x", 1));
    assert_false(http_client_url_ok("file:///etc/passwd", 0));
    assert_false(http_client_url_ok("gopher://x/", 0));
    assert_false(http_client_url_ok("https://", 0));
    assert_false(http_client_url_ok("https:///path", 0));
    assert_false(http_client_url_ok("https://a b/", 0));
    assert_false(http_client_url_ok(NULL, 0));
    char host[64];
    assert_int_equal(http_client_url_host("https://OAuth2.GoogleAPIs.com:443/token", host, sizeof(host)), 0);
    assert_string_equal(host, "oauth2.googleapis.com");
    /* userinfo is refused (test_http_client_url.c has the tricky URLs) */
    assert_int_equal(http_client_url_host("https://user@evil.example@oauth2.googleapis.com/x", host,
                                          sizeof(host)),
                     -1);
    assert_int_equal(http_client_url_host("http://[::1]:5080/", host, sizeof(host)), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(http_client_url_host("https://oauth2.googleapis.com.evil.example/", host,
                                          sizeof(host)),
                     0);
    assert_string_equal(host, "oauth2.googleapis.com.evil.example");
    assert_int_equal(http_client_url_host("ftp://x/", host, sizeof(host)), -1);
}

static void test_form_and_escape(void **state)
{
    char *e = http_client_escape("a b&c=d/é~");
    assert_string_equal(e, "a%20b%26c%3Dd%2F%C3%A9~");
    free(e);
    const char *pairs[] = { "grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer",
                            "skipped", NULL, "assertion", "x.y+z", NULL };
    char *f = http_client_form(pairs);
    assert_string_equal(f, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
                           "&assertion=x.y%2Bz");
    secret_free(f);
    const char *none[] = { NULL };
    f = http_client_form(none);
    assert_string_equal(f, "");
    free(f);
}

static void test_request_failures(void **state)
{
    /* A refused connection and a refused scheme are transport errors. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &al);
    /* Bound, never listening: the port refuses, and stays ours (closed, it
     * could go to a server of a test binary running beside this one). */
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", ntohs(a.sin_port));
    /* a refusal answers at once; the timeout only bounds a broken build,
     * and a loaded machine must not turn the refusal into a timeout */
    http_client_req rq = { .url = url, .timeout_ms = 20000 };
    http_client_resp rp;
    assert_int_equal(http_client_do(&rq, &rp), AUR_E_UNAVAILABLE);
    assert_int_equal(rp.status, 0);
    assert_true(rp.err[0] != '\0');
    assert_null(rp.body);
    rq.https_only = 1;
    assert_int_equal(http_client_do(&rq, &rp), AUR_E_INVALID);
    assert_non_null(strstr(rp.err, "https"));
    rq.url = "file:///etc/passwd";
    rq.https_only = 0;
    assert_int_equal(http_client_do(&rq, &rp), AUR_E_INVALID);
    close(fd);

    /* A server that accepts and never answers: the timeout holds. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_port = 0;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 4), 0);
    al = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &al);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", ntohs(a.sin_port));
    rq.url = url;
    rq.timeout_ms = 300;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(http_client_do(&rq, &rp), AUR_E_TIMEOUT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_int_equal(rp.code, AUR_E_TIMEOUT);
    assert_true(dt < 10.0); /* the peer never answers */
    close(fd);
}

/* ---- jwt ----------------------------------------------------------------------------- */

static char *make_rsa_pem(EVP_PKEY **pub_out)
{
    EVP_PKEY *k = EVP_RSA_gen(2048);
    assert_non_null(k);
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *pem = malloc((size_t)n + 1);
    memcpy(pem, data, (size_t)n);
    pem[n] = '\0';
    BIO_free(b);
    *pub_out = k;
    return pem;
}

static unsigned char *b64url_dec(const char *s, size_t n, size_t *outlen)
{
    return crypto_base64_decode(s, n, outlen);
}

static void test_jwt_rs256(void **state)
{
    EVP_PKEY *key;
    char *pem = make_rsa_pem(&key);
    cJSON *claims = cJSON_CreateObject();
    cJSON_AddStringToObject(claims, "iss", "sa@p.iam.gserviceaccount.com");
    cJSON_AddStringToObject(claims, "aud", "https://oauth2.googleapis.com/token");
    cJSON_AddNumberToObject(claims, "iat", 1700000000);
    char err[128];
    char *jwt = jwt_sign_rs256(claims, pem, "kid-1", err, sizeof(err));
    assert_non_null(jwt);
    const char *d1 = strchr(jwt, '.'), *d2 = strrchr(jwt, '.');
    assert_true(d1 && d2 && d1 != d2);
    assert_null(strchr(jwt, '=')); /* no padding */
    /* header */
    size_t hl;
    unsigned char *h = b64url_dec(jwt, (size_t)(d1 - jwt), &hl);
    cJSON *hj = cJSON_ParseWithLength((char *)h, hl);
    assert_string_equal(cJSON_GetObjectItem(hj, "alg")->valuestring, "RS256");
    assert_string_equal(cJSON_GetObjectItem(hj, "kid")->valuestring, "kid-1");
    cJSON_Delete(hj);
    free(h);
    /* the signature verifies with OpenSSL's verifier over "header.claims" */
    size_t sl;
    unsigned char *sig = b64url_dec(d2 + 1, strlen(d2 + 1), &sl);
    assert_int_equal(sl, 256);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key), 1);
    assert_int_equal(EVP_DigestVerify(md, sig, sl, (const unsigned char *)jwt, (size_t)(d2 - jwt)), 1);
    /* a changed claim does not */
    jwt[(d1 - jwt) + 3] ^= 1;
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key), 1);
    assert_int_not_equal(EVP_DigestVerify(md, sig, sl, (const unsigned char *)jwt, (size_t)(d2 - jwt)), 1);
    EVP_MD_CTX_free(md);
    free(sig);
    free(jwt);
    /* not a key */
    assert_null(jwt_sign_rs256(claims, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                               NULL, err, sizeof(err)));
    assert_false(jwt_pem_rsa_ok("garbage"));
    assert_true(jwt_pem_rsa_ok(pem));
    /* an EC key is not RS256 material */
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, ec, NULL, NULL, 0, NULL, NULL);
    char *ecd;
    long en = BIO_get_mem_data(b, &ecd);
    char *ecpem = strndup(ecd, (size_t)en);
    assert_false(jwt_pem_rsa_ok(ecpem));
    free(ecpem);
    BIO_free(b);
    EVP_PKEY_free(ec);
    cJSON_Delete(claims);
    EVP_PKEY_free(key);
    free(pem);
}

static void test_sa_key_parse(void **state)
{
    EVP_PKEY *key;
    char *pem = make_rsa_pem(&key);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "service_account");
    cJSON_AddStringToObject(o, "project_id", "proj-1");
    cJSON_AddStringToObject(o, "private_key_id", "abc");
    cJSON_AddStringToObject(o, "private_key", pem);
    cJSON_AddStringToObject(o, "client_email", "sa@proj-1.iam.gserviceaccount.com");
    cJSON_AddStringToObject(o, "token_uri", "https://oauth2.googleapis.com/token");
    char *good = cJSON_PrintUnformatted(o);
    jwt_sa_key k;
    char err[160];
    assert_int_equal(jwt_sa_key_parse(good, strlen(good), &k, err, sizeof(err)), 0);
    assert_string_equal(k.client_email, "sa@proj-1.iam.gserviceaccount.com");
    assert_string_equal(k.project_id, "proj-1");
    assert_string_equal(k.private_key_id, "abc");
    assert_string_equal(k.token_uri, "https://oauth2.googleapis.com/token");
    jwt_sa_key_free(&k);
    /* truncated, trailing garbage, wrong type, missing fields, bad PEM */
    assert_int_equal(jwt_sa_key_parse(good, strlen(good) / 2, &k, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "complete"));
    char *trail = malloc(strlen(good) + 4);
    sprintf(trail, "%s}x", good);
    assert_int_equal(jwt_sa_key_parse(trail, strlen(trail), &k, err, sizeof(err)), -1);
    free(trail);
    static const char *const drop[] = { "type", "client_email", "private_key" };
    for (size_t i = 0; i < 3; i++) {
        cJSON *c = cJSON_Duplicate(o, 1);
        cJSON_DeleteItemFromObject(c, drop[i]);
        char *s = cJSON_PrintUnformatted(c);
        assert_int_equal(jwt_sa_key_parse(s, strlen(s), &k, err, sizeof(err)), -1);
        assert_non_null(strstr(err, drop[i]));
        assert_null(strstr(err, "BEGIN")); /* never quotes the key */
        free(s);
        cJSON_Delete(c);
    }
    cJSON_ReplaceItemInObject(o, "private_key", cJSON_CreateString("-----BEGIN PRIVATE KEY-----\nnope\n"));
    char *bad = cJSON_PrintUnformatted(o);
    assert_int_equal(jwt_sa_key_parse(bad, strlen(bad), &k, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "PEM"));
    free(bad);
    free(good);
    cJSON_Delete(o);
    EVP_PKEY_free(key);
    free(pem);
}

/* ---- oauth state -------------------------------------------------------------------- */

typedef struct {
    store_t *st;
    worker_ctx w;
    store_org org;
    store_user u1, u2;
} oauth_fx;

static int oauth_setup(void **state)
{
    oauth_fx *f = calloc(1, sizeof(*f));
    char err[256];
    assert_int_equal(store_open(":memory:", &f->st, err, sizeof(err)), STORE_OK);
    f->w.store = f->st;
    assert_int_equal(store_org_create(f->st, "o", &f->org), STORE_OK);
    assert_int_equal(store_user_create(f->st, f->org.id, "a@x", "admin", &f->u1), STORE_OK);
    assert_int_equal(store_user_create(f->st, f->org.id, "b@x", "member", &f->u2), STORE_OK);
    *state = f;
    return 0;
}

static int oauth_teardown(void **state)
{
    oauth_fx *f = *state;
    store_close(f->st);
    free(f);
    return 0;
}

/* The user as the trusted frontend presents them (X-Internal-Secret): the
 * documented way flows start. */
static auth_ctx who_of(const oauth_fx *f, const store_user *u)
{
    auth_ctx a = { .authenticated = 1, .internal = 1 };
    snprintf(a.org_id, sizeof(a.org_id), "%s", f->org.id);
    snprintf(a.user_id, sizeof(a.user_id), "%s", u->id);
    return a;
}

/* Frees what a handler left in a response: its body and extra headers. */
static void resp_free(http_response *r)
{
    buf_free(&r->body);
    for (int i = 0; i < r->nextra; i++) {
        free(r->extra[i].name);
        free(r->extra[i].value);
    }
    memset(r, 0, sizeof(*r));
}

/* A callback request "?state=<s>" (optionally authenticated as who). */
static int take(oauth_fx *f, const char *query, const auth_ctx *who, const char *provider,
                oauth_state_info *info, char *msg, size_t cap)
{
    http_request req;
    memset(&req, 0, sizeof(req));
    /* The form http.c hands handlers: each decoded argument NUL-terminated. */
    char args[512];
    size_t n = strlen(query);
    assert_true(n < sizeof(args));
    memcpy(args, query, n + 1);
    for (size_t i = 0; i < n; i++)
        if (args[i] == '&')
            args[i] = '\0';
    req.query = args;
    req.query_len = n + 1;
    if (who)
        req.auth = *who;
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    int rc = oauth_state_take(&f->w, &req, provider, info, &resp);
    snprintf(msg, cap, "%.*s", (int)buf_pending(&resp.body), buf_head(&resp.body));
    if (rc < 0)
        assert_int_equal(resp.status, 400);
    resp_free(&resp);
    return rc;
}

static void new_state(oauth_fx *f, const store_user *u, const char *provider, char out[64])
{
    auth_ctx a = who_of(f, u);
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    assert_int_equal(oauth_state_new(&f->w, &a, provider, "http://localhost:5080/callback", "eu", out,
                                     &resp),
                     0);
    buf_free(&resp.body);
    assert_int_equal(strlen(out), 43);
}

static void test_oauth_state(void **state)
{
    oauth_fx *f = *state;
    char s1[64], q[128], msg[512];
    oauth_state_info info;
    /* the expiry is bounded by clocks read around its making, not by a
     * margin a stalled test could use up */
    int64_t before = (int64_t)time(NULL);
    new_state(f, &f->u1, "gcp", s1);
    int64_t after = (int64_t)time(NULL);
    /* only the hash is stored */
    char h[65];
    crypto_sha256_hex(s1, strlen(s1), h);
    int64_t used, exp;
    assert_int_equal(store_oauth_state_status(f->st, h, &used, &exp), STORE_OK);
    assert_true(exp >= before + OAUTH_STATE_TTL && exp <= after + OAUTH_STATE_TTL);

    snprintf(q, sizeof(q), "code=x&state=%s", s1);
    assert_int_equal(take(f, q, NULL, "gcp", &info, msg, sizeof(msg)), 0);
    assert_string_equal(info.user_id, f->u1.id);
    assert_string_equal(info.provider, "gcp");
    assert_string_equal(info.redirect_uri, "http://localhost:5080/callback");
    assert_string_equal(info.extra, "eu");
    assert_int_equal(take(f, q, NULL, "gcp", &info, msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, "already used"));

    assert_int_equal(take(f, "code=x", NULL, "gcp", &info, msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, "missing"));
    assert_int_equal(take(f, "state=abc", NULL, "gcp", &info, msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, "malformed"));
    assert_int_equal(take(f, "state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL, "gcp", &info,
                          msg, sizeof(msg)),
                     -1);
    assert_non_null(strstr(msg, "unknown"));

    /* another provider's callback */
    new_state(f, &f->u1, "azure", s1);
    snprintf(q, sizeof(q), "state=%s", s1);
    assert_int_equal(take(f, q, NULL, "gcp", &info, msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, "another provider"));

    /* another user's authenticated callback */
    new_state(f, &f->u1, "gcp", s1);
    snprintf(q, sizeof(q), "state=%s", s1);
    auth_ctx b = who_of(f, &f->u2);
    assert_int_equal(take(f, q, &b, "gcp", &info, msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, "another user"));

    /* expired */
    new_state(f, &f->u1, "gcp", s1);
    crypto_sha256_hex(s1, strlen(s1), h);
    assert_int_equal(store_oauth_state_set_expiry(f->st, h, time(NULL) - 1), STORE_OK);
    snprintf(q, sizeof(q), "state=%s", s1);
    assert_int_equal(take(f, q, NULL, "gcp", &info, msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, "expired"));
    /* the state value itself is never in a message */
    assert_null(strstr(msg, s1));

    /* no user: refused before anything is stored */
    auth_ctx none = { .authenticated = 1 };
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    assert_int_equal(oauth_state_new(&f->w, &none, "gcp", "", NULL, s1, &resp), -1);
    assert_int_equal(resp.status, 400);
    buf_free(&resp.body);
}

/* A user who opens more login tabs than the per-user cap is never locked
 * out: the newest flows finish, the oldest is told to start again; and the
 * periodic task deletes states a day past their expiry without waiting for
 * someone to make a new one. */
static void test_oauth_states_capped_and_pruned(void **state)
{
    oauth_fx *f = *state;
    enum { N = STORE_OAUTH_STATES_PER_USER + 1 };
    static char s[N][64];
    char q[128], msg[512], h[65];
    oauth_state_info info;
    for (int i = 0; i < N; i++) {
        new_state(f, &f->u1, i % 2 ? "gcp" : "azure", s[i]);
        /* the first is the oldest even when every one was made in the
         * same second (the store orders by creation, then expiry) */
        if (i == 0) {
            crypto_sha256_hex(s[0], strlen(s[0]), h);
            assert_int_equal(store_oauth_state_set_expiry(f->st, h, (int64_t)time(NULL) + 60),
                             STORE_OK);
        }
    }
    snprintf(q, sizeof(q), "state=%s", s[N - 1]);
    assert_int_equal(take(f, q, NULL, (N - 1) % 2 ? "gcp" : "azure", &info, msg, sizeof(msg)), 0);
    snprintf(q, sizeof(q), "state=%s", s[0]);
    assert_int_equal(take(f, q, NULL, "azure", &info, msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, "start the connection again"));

    crypto_sha256_hex(s[1], strlen(s[1]), h);
    assert_int_equal(store_oauth_state_set_expiry(f->st, h, (int64_t)time(NULL) - 86400 - 60),
                     STORE_OK);
    long next = oauth_state_prune_task(&f->w);
    assert_true(next > 0 && next <= 3600);
    int64_t used, exp;
    assert_int_equal(store_oauth_state_status(f->st, h, &used, &exp), STORE_NOT_FOUND);
    crypto_sha256_hex(s[2], strlen(s[2]), h);
    assert_int_equal(store_oauth_state_status(f->st, h, &used, &exp), STORE_OK);
}

/* A flow a console session starts is tied to that browser: the login
 * answer sets a cookie named after the state, holding a nonce whose hash
 * the state row keeps; the callback without that cookie (the victim's
 * browser in a login CSRF), or with another flow's, is refused and the
 * state is spent; with it, the flow goes on and the cookie is cleared. */
static const char *resp_header(const http_response *r, const char *name)
{
    for (int i = 0; i < r->nextra; i++)
        if (!strcmp(r->extra[i].name, name))
            return r->extra[i].value;
    return NULL;
}

/* A state started from the console session whose id hashes to session
 * ("": none recorded); cookie gets "name=nonce". */
static void new_session_state(oauth_fx *f, const store_user *u, const char *session, char out[64],
                              char cookie[128])
{
    auth_ctx a = who_of(f, u);
    a.session = 1;
    snprintf(a.session_hash, sizeof(a.session_hash), "%s", session);
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    assert_int_equal(oauth_state_new(&f->w, &a, "gcp", "http://localhost:5080/callback", NULL, out,
                                     &resp),
                     0);
    const char *sc = resp_header(&resp, "set-cookie");
    assert_non_null(sc);
    assert_non_null(strstr(sc, "; HttpOnly; SameSite=Lax; Secure"));
    size_t n = strcspn(sc, ";");
    assert_true(n < 128);
    memcpy(cookie, sc, n);
    cookie[n] = '\0';
    assert_memory_equal(cookie, "__Host-aurora_oauth_", 20);
    /* the name is the state's hash's, the nonce is neither the state nor its hash */
    char h[65];
    crypto_sha256_hex(out, strlen(out), h);
    assert_memory_equal(cookie + 20, h, 16);
    assert_null(strstr(cookie, out));
    resp_free(&resp);
}

static void new_bound_state(oauth_fx *f, const store_user *u, char out[64], char cookie[128])
{
    new_session_state(f, u, "", out, cookie);
}

static int take_with_cookie(oauth_fx *f, const char *s, const char *cookie, char *msg, size_t cap,
                            char *set_cookie, size_t sc_cap)
{
    char args[128];
    int n = snprintf(args, sizeof(args), "state=%s", s);
    http_header h = { .name = "cookie", .value = (char *)cookie };
    http_request req;
    memset(&req, 0, sizeof(req));
    req.query = args;
    req.query_len = (size_t)n + 1;
    req.headers = cookie ? &h : NULL;
    req.nheaders = cookie ? 1 : 0;
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    oauth_state_info info;
    int rc = oauth_state_take(&f->w, &req, "gcp", &info, &resp);
    snprintf(msg, cap, "%.*s", (int)buf_pending(&resp.body), buf_head(&resp.body));
    const char *sc = resp_header(&resp, "set-cookie");
    snprintf(set_cookie, sc_cap, "%s", sc ? sc : "");
    if (rc < 0)
        assert_int_equal(resp.status, 400);
    else
        assert_string_equal(info.user_id, f->u1.id);
    resp_free(&resp);
    return rc;
}

static void test_oauth_state_browser_binding(void **state)
{
    oauth_fx *f = *state;
    char s1[64], s2[64], c1[128], c2[128], msg[512], sc[256];

    /* the victim's browser: no cookie of this flow */
    new_bound_state(f, &f->u1, s1, c1);
    assert_int_equal(take_with_cookie(f, s1, NULL, msg, sizeof(msg), sc, sizeof(sc)), -1);
    assert_non_null(strstr(msg, "another browser"));
    assert_non_null(strstr(sc, "Max-Age=0"));
    /* spent: the attacker cannot finish it in their own browser afterwards */
    assert_int_equal(take_with_cookie(f, s1, c1, msg, sizeof(msg), sc, sizeof(sc)), -1);
    assert_non_null(strstr(msg, "already used"));

    /* another flow's cookie, as is and with its value under this flow's name */
    new_bound_state(f, &f->u1, s1, c1);
    new_bound_state(f, &f->u1, s2, c2);
    assert_int_equal(take_with_cookie(f, s1, c2, msg, sizeof(msg), sc, sizeof(sc)), -1);
    assert_non_null(strstr(msg, "another browser"));
    char forged[256];
    assert_int_equal(take_with_cookie(f, s2, c2, msg, sizeof(msg), sc, sizeof(sc)), 0);
    new_bound_state(f, &f->u1, s1, c1);
    snprintf(forged, sizeof(forged), "%.36s%s", c1, strchr(c2, '='));
    assert_int_equal(take_with_cookie(f, s1, forged, msg, sizeof(msg), sc, sizeof(sc)), -1);
    assert_non_null(strstr(msg, "another browser"));

    /* the browser that started it, beside other cookies: accepted, cookie cleared */
    new_bound_state(f, &f->u1, s1, c1);
    char jar[512];
    snprintf(jar, sizeof(jar), "theme=dark; %s; other=1", c1);
    assert_int_equal(take_with_cookie(f, s1, jar, msg, sizeof(msg), sc, sizeof(sc)), 0);
    assert_memory_equal(sc, c1, 36);
    assert_non_null(strstr(sc, "=; Path=/; Max-Age=0;"));

    /* a flow the frontend started server-side sets no cookie and needs none
     * (AURORA_OAUTH_REQUIRE_BOUND_CALLBACK is off by default;
     * test_gcp.py: oauth_unbound_callbacks_refused_when_required turns it on) */
    new_state(f, &f->u1, "gcp", s1);
    assert_int_equal(take_with_cookie(f, s1, NULL, msg, sizeof(msg), sc, sizeof(sc)), 0);
    assert_string_equal(sc, "");

    /* a flow started with an API key is tied to no browser: its callback
     * must carry that user's credentials */
    auth_ctx k = who_of(f, &f->u1);
    k.internal = 0;
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    assert_int_equal(oauth_state_new(&f->w, &k, "gcp", "http://localhost:5080/callback", NULL, s1,
                                     &resp),
                     0);
    assert_null(resp_header(&resp, "set-cookie"));
    resp_free(&resp);
    assert_int_equal(take_with_cookie(f, s1, NULL, msg, sizeof(msg), sc, sizeof(sc)), -1);
    assert_non_null(strstr(msg, "started with an API key"));
    assert_int_equal(oauth_state_new(&f->w, &k, "gcp", "http://localhost:5080/callback", NULL, s1,
                                     &resp),
                     0);
    resp_free(&resp);
    char q[128];
    oauth_state_info info;
    snprintf(q, sizeof(q), "state=%s", s1);
    assert_int_equal(take(f, q, &k, "gcp", &info, msg, sizeof(msg)), 0);

    /* a console flow whose callback carries the same user's credentials (the
     * frontend forwarding it): the credentials are as good as the cookie */
    new_bound_state(f, &f->u1, s1, c1);
    snprintf(q, sizeof(q), "state=%s", s1);
    assert_int_equal(take(f, q, &k, "gcp", &info, msg, sizeof(msg)), 0);
}

/* A callback that ends two providers' flows (GitHub's /github/callback) takes
 * either one's state and says whose; a follow-on flow (the GitHub App's
 * installer check) is started for the same user, the same way, and so is
 * held to the same binding. */
static void test_oauth_state_take_any_and_follow_on(void **state)
{
    oauth_fx *f = *state;
    const char *both[] = { "github", "github-app-user", NULL };
    char s1[64], c1[128], q[128], msg[512];
    oauth_state_info info;
    http_request req;
    http_response resp;

    new_state(f, &f->u1, "github-app-user", s1);
    snprintf(q, sizeof(q), "state=%s", s1);
    memset(&req, 0, sizeof(req));
    req.query = q;
    req.query_len = strlen(q) + 1;
    memset(&resp, 0, sizeof(resp));
    assert_int_equal(oauth_state_take_any(&f->w, &req, both, &info, &resp), 0);
    assert_string_equal(info.provider, "github-app-user");
    assert_string_equal(info.started_via, "internal");
    resp_free(&resp);
    new_state(f, &f->u1, "gcp", s1);
    snprintf(q, sizeof(q), "state=%s", s1);
    req.query_len = strlen(q) + 1;
    assert_int_equal(oauth_state_take_any(&f->w, &req, both, &info, &resp), -1);
    assert_int_equal(resp.status, 400);
    assert_non_null(strstr(buf_head(&resp.body), "another provider"));
    resp_free(&resp);

    /* from the console: the follow-on flow gets a cookie of its own */
    new_bound_state(f, &f->u1, s1, c1);
    snprintf(q, sizeof(q), "state=%s", s1);
    auth_ctx k = who_of(f, &f->u1);
    assert_int_equal(take(f, q, &k, "gcp", &info, msg, sizeof(msg)), 0);
    assert_string_equal(info.started_via, "session");
    auth_ctx next;
    oauth_state_who(&info, &next);
    assert_true(next.session && !next.internal && !next.authenticated);
    assert_string_equal(next.user_id, f->u1.id);
    for (int with_cookie = 1; with_cookie >= 0; with_cookie--) {
        assert_int_equal(oauth_state_new(&f->w, &next, "gcp", "http://localhost:5080/callback", NULL,
                                         s1, &resp),
                         0);
        const char *sc = resp_header(&resp, "set-cookie");
        assert_non_null(sc);
        snprintf(c1, sizeof(c1), "%.*s", (int)strcspn(sc, ";"), sc);
        resp_free(&resp);
        /* the browser that finished the first flow carries the new cookie */
        int rc = take_with_cookie(f, s1, with_cookie ? c1 : NULL, msg, sizeof(msg), q, sizeof(q));
        if (with_cookie) {
            assert_int_equal(rc, 0);
        } else {
            assert_int_equal(rc, -1);
            assert_non_null(strstr(msg, "another browser"));
        }
    }

    /* with an API key: the follow-on flow needs the key at its callback too */
    k.internal = 0;
    assert_int_equal(oauth_state_new(&f->w, &k, "gcp", "http://localhost:5080/callback", NULL, s1,
                                     &resp),
                     0);
    resp_free(&resp);
    snprintf(q, sizeof(q), "state=%s", s1);
    assert_int_equal(take(f, q, &k, "gcp", &info, msg, sizeof(msg)), 0);
    assert_string_equal(info.started_via, "api_key");
    oauth_state_who(&info, &next);
    assert_true(!next.session && !next.internal);
    assert_int_equal(oauth_state_new(&f->w, &next, "gcp", "http://localhost:5080/callback", NULL, s1,
                                     &resp),
                     0);
    assert_null(resp_header(&resp, "set-cookie"));
    resp_free(&resp);
    assert_int_equal(take_with_cookie(f, s1, NULL, msg, sizeof(msg), c1, sizeof(c1)), -1);
    assert_non_null(strstr(msg, "started with an API key"));
}

/* A backend console session of u (no key: the membership backs it) last
 * used at `seen`; hash gets the SHA-256 hex of its id. */
static void console_session_of(oauth_fx *f, const store_user *u, int64_t seen, char hash[65])
{
    char id[CONSOLE_SESSION_ID_LEN + 1];
    assert_int_equal(console_random_token(id), 0);
    crypto_sha256_hex(id, strlen(id), hash);
    store_console_session c;
    memset(&c, 0, sizeof(c));
    snprintf(c.org_id, sizeof(c.org_id), "%s", f->org.id);
    snprintf(c.user_id, sizeof(c.user_id), "%s", u->id);
    snprintf(c.csrf_token, sizeof(c.csrf_token), "t");
    c.created_at = c.last_seen_at = seen;
    c.expires_at = seen + 3600;
    assert_int_equal(store_console_session_create(f->st, hash, &c), STORE_OK);
}

/* A flow started from a console session finishes only while that session
 * lives: the provider's redirect carries no credentials, and a flow begun
 * before sign-out, the idle timeout, the key's revocation or the user's
 * removal still stored the connector (found in review).  The session is
 * recorded by its hash; a follow-on flow ends with the same session; a
 * callback with the user's credentials does not revive an ended one. */
static void test_oauth_state_ends_with_its_console_session(void **state)
{
    oauth_fx *f = *state;
    setenv("AURORA_CONSOLE_SESSION_IDLE", "60", 1);
    server_config cfg;
    char err[256];
    assert_int_equal(server_config_load(&cfg, err, sizeof(err)), 0);
    unsetenv("AURORA_CONSOLE_SESSION_IDLE");
    f->w.cfg = &cfg;
    int64_t now = (int64_t)time(NULL);
    char sid[65], s1[64], c1[128], msg[512], sc[256], q[128];

    /* live: the flow goes on; the state names the session, never its id */
    console_session_of(f, &f->u1, now, sid);
    new_session_state(f, &f->u1, sid, s1, c1);
    char h[65];
    crypto_sha256_hex(s1, strlen(s1), h);
    oauth_state_info info;
    auth_ctx k = who_of(f, &f->u1);
    k.internal = 0;
    snprintf(q, sizeof(q), "state=%s", s1);
    assert_int_equal(take(f, q, &k, "gcp", &info, msg, sizeof(msg)), 0);
    assert_string_equal(info.console_session, sid);
    assert_string_equal(info.started_via, "session");

    /* signed out: the unfinished flow went with the session */
    new_session_state(f, &f->u1, sid, s1, c1);
    assert_int_equal(store_console_session_delete(f->st, sid), STORE_OK);
    assert_int_equal(take_with_cookie(f, s1, c1, msg, sizeof(msg), sc, sizeof(sc)), -1);
    assert_non_null(strstr(msg, "unknown"));
    assert_non_null(strstr(msg, "console session"));

    /* idle past AURORA_CONSOLE_SESSION_IDLE: refused in its own browser,
     * and with the user's credentials; the state is spent */
    console_session_of(f, &f->u1, now - 61, sid);
    new_session_state(f, &f->u1, sid, s1, c1);
    assert_int_equal(take_with_cookie(f, s1, c1, msg, sizeof(msg), sc, sizeof(sc)), -1);
    assert_non_null(strstr(msg, "started from a console session that has ended"));
    assert_non_null(strstr(sc, "Max-Age=0")); /* the flow's cookie is cleared */
    assert_int_equal(take_with_cookie(f, s1, c1, msg, sizeof(msg), sc, sizeof(sc)), -1);
    assert_non_null(strstr(msg, "already used"));
    new_session_state(f, &f->u1, sid, s1, c1);
    snprintf(q, sizeof(q), "state=%s", s1);
    assert_int_equal(take(f, q, &k, "gcp", &info, msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, "has ended"));

    /* a session of another user of the org does not stand for this one */
    char other[65];
    console_session_of(f, &f->u2, now, other);
    new_session_state(f, &f->u1, other, s1, c1);
    assert_int_equal(take_with_cookie(f, s1, c1, msg, sizeof(msg), sc, sizeof(sc)), -1);
    assert_non_null(strstr(msg, "has ended"));

    /* the follow-on flow (GitHub's installer check) carries the session on,
     * and ends with it: here the per-key cap ended it, which deletes no
     * state, so the callback's own check is what refuses */
    console_session_of(f, &f->u1, now, sid);
    new_session_state(f, &f->u1, sid, s1, c1);
    assert_int_equal(take_with_cookie(f, s1, c1, msg, sizeof(msg), sc, sizeof(sc)), 0);
    new_session_state(f, &f->u1, sid, s1, c1);
    snprintf(q, sizeof(q), "state=%s", s1);
    assert_int_equal(take(f, q, &k, "gcp", &info, msg, sizeof(msg)), 0);
    auth_ctx next;
    oauth_state_who(&info, &next);
    assert_true(next.session);
    assert_string_equal(next.session_hash, sid);
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    assert_int_equal(oauth_state_new(&f->w, &next, "gcp", "http://localhost:5080/callback", NULL, s1,
                                     &resp),
                     0);
    const char *set = resp_header(&resp, "set-cookie");
    assert_non_null(set);
    snprintf(c1, sizeof(c1), "%.*s", (int)strcspn(set, ";"), set);
    resp_free(&resp);
    for (int i = 0; i < STORE_CONSOLE_SESSIONS_MAX; i++) {
        char newer[65];
        console_session_of(f, &f->u1, now + 1, newer);
    }
    store_console_session gone;
    assert_int_equal(store_console_session_peek(f->st, sid, now + 1, 60, &gone), STORE_NOT_FOUND);
    assert_int_equal(take_with_cookie(f, s1, c1, msg, sizeof(msg), sc, sizeof(sc)), -1);
    assert_non_null(strstr(msg, "has ended"));

    /* a state of an older build names no session: as before */
    new_bound_state(f, &f->u1, s1, c1);
    assert_int_equal(take_with_cookie(f, s1, c1, msg, sizeof(msg), sc, sizeof(sc)), 0);
    f->w.cfg = NULL;
    server_config_free(&cfg);
}

/* ---- cloud_creds ---------------------------------------------------------------------- */

static void test_cloud_creds(void **state)
{
    cloud_creds c = { 0 };
    assert_int_equal(cloud_creds_add(&c, "CLOUDSDK_AUTH_ACCESS_TOKEN", "ya29.x"), 0);
    assert_int_equal(cloud_creds_add(&c, "CLOUDSDK_AUTH_ACCESS_TOKEN", "again"), -1);
    assert_int_equal(cloud_creds_add(&c, "lower", "x"), -1);
    assert_int_equal(cloud_creds_add(&c, "1ABC", "x"), -1);
    assert_int_equal(cloud_creds_add(&c, "", "x"), -1);
    char *big = malloc(CLOUD_MAX_ENV_VALUE + 2);
    memset(big, 'a', CLOUD_MAX_ENV_VALUE + 1);
    big[CLOUD_MAX_ENV_VALUE + 1] = '\0';
    assert_int_equal(cloud_creds_add(&c, "BIG", big), -1);
    big[CLOUD_MAX_ENV_VALUE] = '\0';
    assert_int_equal(cloud_creds_add(&c, "BIG", big), 0);
    free(big);
    assert_string_equal(c.env[0], "CLOUDSDK_AUTH_ACCESS_TOKEN=ya29.x");
    for (int i = c.nenv; i < CLOUD_MAX_ENV; i++) {
        char n[16];
        snprintf(n, sizeof(n), "V%d", i);
        assert_int_equal(cloud_creds_add(&c, n, "v"), 0);
    }
    assert_int_equal(cloud_creds_add(&c, "ONE_TOO_MANY", "v"), -1);
    snprintf(c.target, sizeof(c.target), "proj");
    cloud_creds_clear(&c);
    assert_int_equal(c.nenv, 0);
    assert_null(c.env[0]);
    assert_string_equal(c.target, "");
    /* the table names each connector once */
    assert_true(connector_count() >= 1);
    assert_non_null(connector_find("gcp"));
    assert_null(connector_find("nope"));
    assert_null(connector_find(NULL));
    for (size_t i = 0; i < connector_count(); i++)
        for (size_t j = i + 1; j < connector_count(); j++)
            assert_string_not_equal(connector_at(i)->id, connector_at(j)->id);
    assert_string_equal(connector_find("gcp")->cloud->program, "gcloud");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_rules),
        cmocka_unit_test(test_form_and_escape),
        cmocka_unit_test(test_request_failures),
        cmocka_unit_test(test_jwt_rs256),
        cmocka_unit_test(test_sa_key_parse),
        cmocka_unit_test_setup_teardown(test_oauth_state, oauth_setup, oauth_teardown),
        cmocka_unit_test_setup_teardown(test_oauth_states_capped_and_pruned, oauth_setup,
                                        oauth_teardown),
        cmocka_unit_test_setup_teardown(test_oauth_state_browser_binding, oauth_setup, oauth_teardown),
        cmocka_unit_test_setup_teardown(test_oauth_state_take_any_and_follow_on, oauth_setup,
                                        oauth_teardown),
        cmocka_unit_test_setup_teardown(test_oauth_state_ends_with_its_console_session, oauth_setup,
                                        oauth_teardown),
        cmocka_unit_test(test_cloud_creds),
    };
    return cmocka_run_group_tests_name("connectors", tests, NULL, NULL);
}
