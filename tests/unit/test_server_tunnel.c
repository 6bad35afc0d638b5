/* test_server_tunnel.c — the server's agent sessions and request multiplexing
 * (server/tunnel.c) through a tunnel_hub of its own, without a listening
 * server or a socket: sessions are socketless (tunnel_session_connect /
 * receive / pop / drop), tokens are looked up in a real SQLite store on a
 * real worker pool, and the test runs an lws context with no listener as
 * the event loop (its timers fire the deadlines, its wake-ups deliver the
 * pool's completions as the server's do).
 *
 * Covered: authentication and its refusals (missing/malformed headers,
 * unknown, revoked, expired, wrong cluster, a revocation racing the lookup,
 * too many sessions of one cluster), a token expiring under a live session, the registry (lookup by org+cluster,
 * kind support, least loaded, ties by picks, describe), per-session request
 * ids and the hub-wide legacy ids, the credit window, queueing above the
 * agent's max_concurrent (FIFO, abandon, the queue cap; one at a time
 * until register), deadlines (504, cancel sent for started requests only),
 * dropping a session (only its requests fail; what it never sent moves to
 * another session of the
 * cluster, in order, or fails as not connected, or as queue full when the
 * other session's queue is, or when its own full send queue refused it), closing by token, early messages, oversized messages,
 * big messages' assembly slots (turns, shared across organizations),
 * a legacy session that steps aside forwarding what it held (tunnel_hub_opts.forward),
 * shutdown, two hubs side by side, and a rogue agent's answers to requests
 * it was never sent (forged output, ends, legacy responses), and the text
 * of its unknown messages kept out of the log as sent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <libwebsockets.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__SANITIZE_ADDRESS__)
#define WITH_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WITH_ASAN 1
#endif
#endif
#if WITH_ASAN
#include <sanitizer/allocator_interface.h>
#else
#include <malloc.h>
#endif

#include "log.h"
#include "proto.h"
#include "store.h"
#include "token.h"
#include "utf8.h"
#include "tunnel.h" /* server/tunnel.h: -Iserver comes first */
#include "worker.h"
#include "hub_loop.h"
#include "stderr_capture.h"

#define WAIT_MS 20000
#define WINDOW 1000
#define ORG_NAME "acme"

/* ---- fixture: a hub, its pool, its loop, a store -------------------------------- */

typedef struct {
    char dir[64];
    char url[128];
    server_config cfg;
    store_t *st; /* the test's own handle: tokens */
    char org_id[STORE_ID_LEN], org2_id[STORE_ID_LEN], user_id[STORE_ID_LEN];
    struct lws_context *lws;
    workers *pool;
    tunnel_hub *hub;
} fixture;

static int loop_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    if (reason == LWS_CALLBACK_EVENT_WAIT_CANCELLED) {
        fixture *fx = lws_context_user(lws_get_context(wsi));
        if (fx)
            workers_drain_completions(fx->pool);
        return 0;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols g_protocols[] = {
    { "test", loop_callback, 0, 0, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 },
};

static void wake_loop(void *ctx) { lws_cancel_service(ctx); }

static tunnel_hub *hub_new(fixture *fx, double grace)
{
    tunnel_hub_opts o = { .cfg = &fx->cfg, .lws = fx->lws, .pool = fx->pool,
                          .deadline_grace = grace };
    tunnel_hub *h = tunnel_hub_new(&o);
    assert_non_null(h);
    return h;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/aurora-tunnel-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->url, sizeof(fx->url), "sqlite://%s/t.db", fx->dir);
    fx->cfg.database_url = fx->url;
    fx->cfg.workers = 1;
    fx->cfg.stream_window = WINDOW;
    fx->cfg.agent_idle_timeout = 60;
    fx->cfg.legacy_max_frame = 64 * 1024;
    char err[256] = "";
    if (store_open(fx->url, &fx->st, err, sizeof(err)) != STORE_OK)
        fail_msg("store_open: %s", err);
    store_org o;
    assert_int_equal(store_org_create(fx->st, ORG_NAME, &o), STORE_OK);
    snprintf(fx->org_id, sizeof(fx->org_id), "%s", o.id);
    assert_int_equal(store_org_create(fx->st, "other", &o), STORE_OK);
    snprintf(fx->org2_id, sizeof(fx->org2_id), "%s", o.id);
    store_user u;
    assert_int_equal(store_user_create(fx->st, fx->org_id, "a@example.com", "admin", &u), STORE_OK);
    snprintf(fx->user_id, sizeof(fx->user_id), "%s", u.id);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = g_protocols;
    info.user = fx;
    fx->lws = lws_create_context(&info);
    assert_non_null(fx->lws);
    workers_opts wo = { .cfg = &fx->cfg, .notify = wake_loop, .notify_arg = fx->lws };
    fx->pool = workers_new(&wo, err, sizeof(err));
    if (!fx->pool)
        fail_msg("workers_new: %s", err);
    /* A short grace: deadlines fire within the test's patience. */
    fx->hub = hub_new(fx, 0.05);
    assert_int_equal(workers_start(fx->pool, NULL, fx->hub, err, sizeof(err)), 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    workers_stop(fx->pool);
    tunnel_hub_free(fx->hub); /* drops the sessions a test left */
    lws_context_destroy(fx->lws);
    workers_free(fx->pool);
    store_close(fx->st);
    char p[160];
    static const char *const names[] = { "t.db", "t.db-wal", "t.db-shm" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", fx->dir, names[i]);
        unlink(p);
    }
    rmdir(fx->dir);
    free(fx);
    return 0;
}

/* Runs the loop (timers, pool completions) until pred holds; fails after
 * WAIT_MS. */
static void serve_until(fixture *fx, int (*pred)(void *), void *arg, const char *what)
{
    hub_serve_until(fx->lws, pred, arg, WAIT_MS, what);
}

/* ---- tokens and sessions ----------------------------------------------------------- */

static made_token new_token(fixture *fx, const char *org_id, int64_t expires_at)
{
    return hub_new_token(fx->st, org_id, fx->user_id, expires_at);
}

/* The next text frame the server queued for s, decoded (1), or 0 if none. */
static int pop_msg(tunnel_session *s, proto_msg *m)
{
    size_t len = 0;
    int binary = -1;
    char *p = tunnel_session_pop(s, &len, &binary);
    if (!p)
        return 0;
    assert_int_equal(binary, 0);
    char err[160];
    if (proto_decode(p, len, m, err, sizeof(err)) != 0)
        fail_msg("the server sent an undecodable frame: %s (%s)", err, p);
    free(p);
    return 1;
}

static void expect_no_frame(tunnel_session *s)
{
    size_t len;
    int binary;
    char *p = tunnel_session_pop(s, &len, &binary);
    if (p)
        fail_msg("unexpected frame: %.*s", (int)len, p);
}

static void expect_type(tunnel_session *s, proto_type type, proto_msg *out)
{
    proto_msg m;
    if (!pop_msg(s, &m))
        fail_msg("no frame queued, expected type %d", (int)type);
    assert_int_equal(m.type, type);
    if (out)
        *out = m;
    else
        proto_msg_free(&m);
}

static void send_text(tunnel_session *s, char *json)
{
    assert_non_null(json);
    tunnel_session_receive(s, json, strlen(json), 0);
    free(json);
}

/* Connects with the token's headers and waits for the outcome: a ready
 * session (its `connected` consumed, register sent with max_concurrent) or
 * a closed one. */
static int worker_idle(void *arg) { return workers_backlog(arg) == 0; }

/* Waits until the store workers have nothing queued or running: a session's
 * token lookup has run and its completion waits for the loop. */
static void wait_workers_idle(fixture *fx)
{
    int64_t end = hub_loop_now_ms() + WAIT_MS;
    while (!worker_idle(fx->pool) && hub_loop_now_ms() < end)
        sched_yield();
    assert_true(worker_idle(fx->pool));
}

/* The rest of connect_as for a session already started with
 * tunnel_session_connect: its authentication, then register. */
static tunnel_session *finish_connect(fixture *fx, tunnel_session *s, const made_token *m,
                                      int v2, int max_concurrent)
{
    assert_non_null(s);
    serve_until(fx, hub_session_settled, s, "authentication");
    if (!tunnel_session_ready(s))
        return s;
    proto_msg c;
    expect_type(s, MSG_CONNECTED, &c);
    assert_string_equal(c.cluster_id, m->t.cluster_id);
    /* What a legacy agent is told has neither (it would not know them). */
    assert_int_equal(c.protocol, v2 ? 2 : 0);
    assert_int_equal(c.window, v2 ? WINDOW : 0);
    proto_msg_free(&c);
    send_text(s, proto_enc_register(m->t.cluster_id, "9.9.9", v2 ? 2 : 1, max_concurrent));
    return s;
}

static tunnel_session *connect_as(fixture *fx, tunnel_hub *h, const made_token *m, int v2,
                                  int max_concurrent)
{
    return finish_connect(fx, tunnel_session_connect(h, v2, m->bearer, m->t.cluster_id), m, v2,
                          max_concurrent);
}

static void expect_closed(tunnel_session *s, int code, const char *reason)
{
    const char *why = NULL;
    assert_int_equal(tunnel_session_close_code(s, &why), code);
    assert_string_equal(why, reason);
    assert_false(tunnel_session_ready(s));
}

/* ---- requests and what their sink saw -------------------------------------------------- */

typedef struct {
    int ends;
    int failed, http_status, return_code;
    int64_t duration_ms;
    char error_code[64];
    char error[256];
    char data[4096];
    size_t ndata;
    int nchunks;
} sink_rec;

static void rec_data(void *ctx, int channel, const unsigned char *p, size_t n)
{
    sink_rec *r = ctx;
    (void)channel;
    if (r->ndata + n <= sizeof(r->data)) {
        memcpy(r->data + r->ndata, p, n);
    }
    r->ndata += n;
    r->nchunks++;
}

static void rec_end(void *ctx, const tunnel_result *res)
{
    sink_rec *r = ctx;
    r->ends++;
    r->failed = res->failed;
    r->http_status = res->http_status;
    r->return_code = res->return_code;
    r->duration_ms = res->duration_ms;
    snprintf(r->error_code, sizeof(r->error_code), "%s", res->error_code ? res->error_code : "");
    snprintf(r->error, sizeof(r->error), "%s", res->error ? res->error : "");
}

static const tunnel_sink g_sink = { rec_data, rec_end };

static tunnel_req *exec_ex(tunnel_hub *h, const char *org, const char *cluster, const char *kind,
                           double timeout, sink_rec *rec, char *err, size_t errlen)
{
    static const char *const args[] = { "get", "pods" };
    argv_t a = { 0 };
    char aerr[64];
    assert_int_equal(argv_from_strings(args, 2, &a, aerr, sizeof(aerr)), 0);
    tunnel_exec_params p = { .org_id = org, .cluster_id = cluster, .kind = kind, .argv = &a,
                             .timeout = timeout, .max_output = 1 << 20,
                             .program = kind && !strcmp(kind, "cloud_exec") ? "aws" : NULL };
    tunnel_req *r = tunnel_exec(h, &p, &g_sink, rec, err, errlen);
    argv_free(&a);
    return r;
}

static tunnel_req *exec_ok(fixture *fx, const made_token *m, sink_rec *rec)
{
    char err[256] = "";
    tunnel_req *r = exec_ex(fx->hub, m->t.org_id, m->t.cluster_id, "kubectl", 30, rec, err,
                            sizeof(err));
    if (!r)
        fail_msg("tunnel_exec: %s", err);
    return r;
}

/* The exec frame a session was sent: its request id (0: none queued). */
static uint32_t sent_exec(tunnel_session *s)
{
    proto_msg m;
    if (!pop_msg(s, &m))
        return 0;
    assert_int_equal(m.type, MSG_EXEC);
    uint32_t id = m.id;
    proto_msg_free(&m);
    return id;
}

static void send_exec_end(tunnel_session *s, uint32_t id, int rc)
{
    send_text(s, proto_enc_exec_end(id, rc, "", NULL, 0, 5, 0));
}

static void send_data(tunnel_session *s, uint32_t id, int channel, size_t n, char fill)
{
    unsigned char *f = malloc(PROTO_DATA_HDR + n);
    assert_non_null(f);
    proto_data_header(f, channel, id);
    memset(f + PROTO_DATA_HDR, fill, n);
    tunnel_session_receive(s, f, PROTO_DATA_HDR + n, 1);
    free(f);
}

/* ---- tests -------------------------------------------------------------------------- */

static void test_authentication(void **state)
{
    fixture *fx = *state;
    made_token good = new_token(fx, fx->org_id, 0);
    tunnel_session *s = connect_as(fx, fx->hub, &good, 1, 0);
    assert_true(tunnel_session_ready(s));
    assert_int_equal(tunnel_session_count(fx->hub), 1);

    /* Refused before any lookup: no or an empty X-Cluster-ID, no bearer,
     * a malformed token. */
    tunnel_session *b = tunnel_session_connect(fx->hub, 1, good.bearer, NULL);
    expect_closed(b, PROTO_CLOSE_POLICY, PROTO_REASON_INVALID);
    tunnel_session_drop(b);
    b = tunnel_session_connect(fx->hub, 1, good.bearer, "");
    expect_closed(b, PROTO_CLOSE_POLICY, PROTO_REASON_INVALID);
    tunnel_session_drop(b);
    b = tunnel_session_connect(fx->hub, 1, NULL, good.t.cluster_id);
    expect_closed(b, PROTO_CLOSE_POLICY, PROTO_REASON_INVALID);
    tunnel_session_drop(b);
    b = tunnel_session_connect(fx->hub, 1, "Bearer aurora_kubectl_short", good.t.cluster_id);
    expect_closed(b, PROTO_CLOSE_POLICY, PROTO_REASON_INVALID);
    tunnel_session_drop(b);

    /* Refused after the lookup: unknown token, another cluster's header,
     * revoked, expired. */
    char unknown[AGENT_TOKEN_LEN + 1], bearer[AGENT_TOKEN_LEN + 8];
    assert_int_equal(token_new_agent(unknown), 0);
    snprintf(bearer, sizeof(bearer), "Bearer %s", unknown);
    made_token m = good;
    snprintf(m.bearer, sizeof(m.bearer), "%s", bearer);
    b = connect_as(fx, fx->hub, &m, 2, 0);
    expect_closed(b, PROTO_CLOSE_POLICY, PROTO_REASON_INVALID);
    tunnel_session_drop(b);
    b = tunnel_session_connect(fx->hub, 2, good.bearer, "cluster-0000000000000000");
    serve_until(fx, hub_session_settled, b, "authentication");
    expect_closed(b, PROTO_CLOSE_POLICY, PROTO_REASON_INVALID);
    tunnel_session_drop(b);
    made_token revoked = new_token(fx, fx->org_id, 0);
    assert_int_equal(store_agent_token_revoke(fx->st, fx->org_id, revoked.t.id, time(NULL)),
                     STORE_OK);
    b = connect_as(fx, fx->hub, &revoked, 2, 0);
    expect_closed(b, PROTO_CLOSE_POLICY, PROTO_REASON_REVOKED);
    tunnel_session_drop(b);
    made_token expired = new_token(fx, fx->org_id, (int64_t)time(NULL) - 10);
    b = connect_as(fx, fx->hub, &expired, 2, 0);
    expect_closed(b, PROTO_CLOSE_POLICY, PROTO_REASON_EXPIRED);
    tunnel_session_drop(b);

    /* Still serving the good session after every refusal. */
    assert_int_equal(tunnel_session_count(fx->hub), 1);
    send_text(s, proto_enc_heartbeat(good.t.cluster_id));
    expect_type(s, MSG_HEARTBEAT_ACK, NULL);
}

static int closed(void *arg) { return tunnel_session_close_code(arg, NULL) != 0; }

/* A token's expiry ends the session it opened, not only later handshakes. */
static void test_token_expiry_ends_session(void **state)
{
    fixture *fx = *state;
    made_token forever = new_token(fx, fx->org_id, 0);
    tunnel_session *f = connect_as(fx, fx->hub, &forever, 2, 0);
    /* 4-5 s (time() counts whole seconds) for the handshake to be accepted
     * first, also when the test waits for a CPU (1-2 s left it little).  A
     * handshake slower than that (a loaded machine: the lookup runs on a
     * worker, its answer comes back through the loop) has the token refused
     * as expired; then again with a longer life, up to 15 s, so that the
     * expiry is still within the wait below. */
    made_token m;
    tunnel_session *s;
    for (int life = 5;; life += 5) {
        m = new_token(fx, fx->org_id, (int64_t)time(NULL) + life);
        s = connect_as(fx, fx->hub, &m, 2, 0);
        if (tunnel_session_ready(s) || life >= 15)
            break;
        expect_closed(s, PROTO_CLOSE_POLICY, PROTO_REASON_EXPIRED); /* too slow; nothing else */
        tunnel_session_drop(s);
    }
    assert_true(tunnel_session_ready(s));
    serve_until(fx, closed, s, "the token's expiry");
    expect_closed(s, PROTO_CLOSE_POLICY, PROTO_REASON_EXPIRED);
    assert_true(time(NULL) >= m.t.expires_at);
    assert_true(tunnel_session_ready(f));
}

/* A token revoked while its lookup was under way: the session authenticating
 * looks again and is refused, though the lookup itself found it valid. */
static void test_revocation_during_lookup(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *s = tunnel_session_connect(fx->hub, 2, m.bearer, m.t.cluster_id);
    /* The lookup ran (valid token); its completion waits for the loop. */
    wait_workers_idle(fx);
    assert_false(tunnel_session_ready(s));
    assert_int_equal(store_agent_token_revoke(fx->st, fx->org_id, m.t.id, time(NULL)), STORE_OK);
    tunnel_note_revocation(fx->hub);
    serve_until(fx, hub_session_settled, s, "authentication");
    expect_closed(s, PROTO_CLOSE_POLICY, PROTO_REASON_REVOKED);
}

static void test_sessions_per_cluster_capped(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    enum { CAP = 16 };
    for (int i = 0; i < CAP; i++)
        assert_true(tunnel_session_ready(connect_as(fx, fx->hub, &m, 2, 0)));
    tunnel_session *s = connect_as(fx, fx->hub, &m, 2, 0);
    expect_closed(s, PROTO_CLOSE_POLICY, "Too many connections");
    /* Another cluster is not affected. */
    made_token other = new_token(fx, fx->org_id, 0);
    assert_true(tunnel_session_ready(connect_as(fx, fx->hub, &other, 2, 0)));
}

/* Messages sent before authentication finished are processed after it, in
 * order; binary frames then are dropped. */
static void test_early_messages(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *s = tunnel_session_connect(fx->hub, 2, m.bearer, m.t.cluster_id);
    send_data(s, 1, PROTO_CHAN_STDOUT, 4, 'x');
    send_text(s, proto_enc_register(m.t.cluster_id, "7.7.7", 2, 1));
    send_text(s, proto_enc_heartbeat(m.t.cluster_id));
    serve_until(fx, hub_session_settled, s, "authentication");
    assert_true(tunnel_session_ready(s));
    expect_type(s, MSG_CONNECTED, NULL);
    expect_type(s, MSG_HEARTBEAT_ACK, NULL);
    expect_no_frame(s);
    cJSON *arr = cJSON_CreateArray();
    tunnel_describe_sessions(fx->hub, m.t.org_id, m.t.cluster_id, arr);
    assert_int_equal(cJSON_GetArraySize(arr), 1);
    cJSON *o = cJSON_GetArrayItem(arr, 0);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o, "agent_version")), "7.7.7");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o, "protocol")),
                        PROTO_SUBPROTOCOL_V2);
    cJSON_Delete(arr);
    /* max_concurrent 1 from that register holds: a second exec waits. */
    sink_rec r1 = { 0 }, r2 = { 0 };
    exec_ok(fx, &m, &r1);
    exec_ok(fx, &m, &r2);
    assert_int_equal(sent_exec(s), 1);
    expect_no_frame(s);
    tunnel_session_drop(s);
    assert_int_equal(r1.ends + r2.ends, 2);
}

/* Before its token is known a connection may have the server hold 256 KiB
 * at most, whatever its dialect's frame limit: an unauthenticated legacy
 * connection used to be able to park 16 messages of 32 MiB each. */
static void test_early_bytes_bounded(void **state)
{
    fixture *fx = *state;
    const size_t early_max = 256 * 1024;
    /* the legacy limit as deployed (32 MiB), far above the early bound */
    int64_t legacy_limit = fx->cfg.legacy_max_frame;
    fx->cfg.legacy_max_frame = 32 * 1024 * 1024;
    char *big = malloc(early_max + 1);
    assert_non_null(big);
    memset(big, ' ', early_max + 1);
    for (int v2 = 0; v2 <= 2; v2 += 2) {
        /* one message over the bound, before authentication: closed */
        made_token m = new_token(fx, fx->org_id, 0);
        tunnel_session *s = tunnel_session_connect(fx->hub, v2, m.bearer, m.t.cluster_id);
        assert_false(tunnel_session_ready(s));
        tunnel_session_receive(s, big, early_max + 1, 0);
        expect_closed(s, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "Message too big");
        serve_until(fx, hub_session_settled, s, "the lookup to end");
        assert_false(tunnel_session_ready(s));
        tunnel_session_drop(s);
        /* messages adding up past it: closed at the one that crosses */
        made_token m2 = new_token(fx, fx->org_id, 0);
        s = tunnel_session_connect(fx->hub, v2, m2.bearer, m2.t.cluster_id);
        for (int i = 0; i < 3; i++)
            tunnel_session_receive(s, big, early_max / 4, 0);
        assert_int_equal(tunnel_session_close_code(s, NULL), 0);
        tunnel_session_receive(s, big, early_max / 4 + 1, 0);
        expect_closed(s, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "Message too big");
        serve_until(fx, hub_session_settled, s, "the lookup to end");
        tunnel_session_drop(s);
    }
    /* once authenticated, the dialect's own limit applies again: a
     * heartbeat padded past the early bound (JSON allows the spaces) is
     * answered */
    made_token v = new_token(fx, fx->org_id, 0);
    tunnel_session *vs = connect_as(fx, fx->hub, &v, 2, 0);
    assert_true(tunnel_session_ready(vs));
    char *hb = proto_enc_heartbeat(v.t.cluster_id);
    assert_non_null(hb);
    memcpy(big, hb, strlen(hb));
    free(hb);
    tunnel_session_receive(vs, big, early_max + 1, 0);
    assert_true(tunnel_session_ready(vs));
    expect_type(vs, MSG_HEARTBEAT_ACK, NULL);
    tunnel_session_drop(vs);
    free(big);
    fx->cfg.legacy_max_frame = legacy_limit;
}

static void test_registry_lookup(void **state)
{
    fixture *fx = *state;
    made_token v2 = new_token(fx, fx->org_id, 0), legacy = new_token(fx, fx->org_id, 0);
    tunnel_session *s = connect_as(fx, fx->hub, &v2, 2, 0);
    tunnel_session *l = connect_as(fx, fx->hub, &legacy, 0, 0);
    const char *org = fx->org_id;
    assert_int_equal(tunnel_cluster_supports(fx->hub, org, v2.t.cluster_id, "kubectl"),
                     TUNNEL_SUPPORTED);
    assert_int_equal(tunnel_cluster_supports(fx->hub, org, v2.t.cluster_id, "cloud_exec"),
                     TUNNEL_SUPPORTED);
    assert_int_equal(tunnel_cluster_supports(fx->hub, org, legacy.t.cluster_id, "kubectl"),
                     TUNNEL_SUPPORTED);
    assert_int_equal(tunnel_cluster_supports(fx->hub, org, legacy.t.cluster_id, "cloud_exec"),
                     TUNNEL_UNSUPPORTED);
    /* Another org never reaches a cluster it does not own. */
    assert_int_equal(tunnel_cluster_supports(fx->hub, fx->org2_id, v2.t.cluster_id, "kubectl"),
                     TUNNEL_NOT_CONNECTED);
    sink_rec rec = { 0 };
    char err[256] = "";
    assert_null(exec_ex(fx->hub, fx->org2_id, v2.t.cluster_id, "kubectl", 30, &rec, err,
                        sizeof(err)));
    assert_non_null(strstr(err, "is not connected"));
    assert_null(exec_ex(fx->hub, org, "cluster-ffffffffffffffff", "kubectl", 30, &rec, err,
                        sizeof(err)));
    assert_null(exec_ex(fx->hub, org, legacy.t.cluster_id, "cloud_exec", 30, &rec, err,
                        sizeof(err)));
    assert_int_equal(rec.ends, 0);
    expect_no_frame(l);
    expect_no_frame(s);
}

/* The least loaded ready session of the cluster gets the command; between
 * equally loaded ones, the one picked least often (so idle replicas take
 * turns). */
static void test_least_loaded_and_turns(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *a = connect_as(fx, fx->hub, &m, 2, 0);
    sink_rec ra[2] = { { 0 } };
    exec_ok(fx, &m, &ra[0]);
    exec_ok(fx, &m, &ra[1]);
    assert_int_equal(sent_exec(a), 1);
    assert_int_equal(sent_exec(a), 2);
    tunnel_session *b = connect_as(fx, fx->hub, &m, 2, 0);
    sink_rec rb[3] = { { 0 } };
    /* a carries 2: b takes the next two. */
    exec_ok(fx, &m, &rb[0]);
    exec_ok(fx, &m, &rb[1]);
    assert_int_equal(sent_exec(b), 1);
    assert_int_equal(sent_exec(b), 2);
    expect_no_frame(a);
    /* a finishes one: a (1) is less loaded than b (2). */
    send_exec_end(a, 1, 0);
    assert_int_equal(ra[0].ends, 1);
    exec_ok(fx, &m, &rb[2]);
    assert_int_equal(sent_exec(a), 3);
    expect_no_frame(b);
    /* Everything ends: both idle, a picked 3 times, b twice... */
    send_exec_end(a, 2, 0);
    send_exec_end(a, 3, 0);
    send_exec_end(b, 1, 0);
    send_exec_end(b, 2, 0);
    /* ...then commands that end at once go to the one picked least: b
     * first, and from then on the two never differ by more than one. */
    int picks_a = 3, picks_b = 2;
    for (int i = 0; i < 8; i++) {
        sink_rec r = { 0 };
        exec_ok(fx, &m, &r);
        tunnel_session *got = a;
        uint32_t id = sent_exec(a);
        if (!id) {
            got = b;
            id = sent_exec(b);
        }
        assert_true(id > 0);
        if (i == 0)
            assert_ptr_equal(got, b);
        assert_true(got == a ? picks_a <= picks_b : picks_b <= picks_a);
        *(got == a ? &picks_a : &picks_b) += 1;
        send_exec_end(got, id, 0);
        assert_int_equal(r.ends, 1);
    }
    assert_int_equal(picks_a + picks_b, 13);
    assert_true(abs(picks_a - picks_b) <= 1);
    /* A closing session is never picked. */
    assert_int_equal(tunnel_close_sessions(fx->hub, m.t.org_id, m.t.cluster_id, NULL, "bye"), 2);
    sink_rec late = { 0 };
    char err[256];
    assert_null(exec_ex(fx->hub, m.t.org_id, m.t.cluster_id, "kubectl", 30, &late, err,
                        sizeof(err)));
}

/* v2 ids count per session from 1 and skip none in use; legacy command ids
 * count per hub. */
static void test_request_ids(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0), l = new_token(fx, fx->org_id, 0);
    tunnel_session *s = connect_as(fx, fx->hub, &m, 2, 0);
    sink_rec r[4] = { { 0 } };
    for (int i = 0; i < 3; i++) {
        exec_ok(fx, &m, &r[i]);
        assert_int_equal(sent_exec(s), (uint32_t)i + 1);
    }
    send_exec_end(s, 2, 7);
    assert_int_equal(r[1].ends, 1);
    assert_int_equal(r[1].return_code, 7);
    assert_int_equal(r[0].ends + r[2].ends, 0);
    exec_ok(fx, &m, &r[3]);
    assert_int_equal(sent_exec(s), 4);
    /* An exec_end for an id that is not running changes nothing. */
    send_exec_end(s, 2, 0);
    send_exec_end(s, 99, 0);
    assert_int_equal(r[1].ends, 1);

    tunnel_session *leg1 = connect_as(fx, fx->hub, &l, 0, 0);
    tunnel_session *leg2 = connect_as(fx, fx->hub, &l, 0, 0);
    char ids[3][32];
    sink_rec lr[3] = { { 0 } };
    for (int i = 0; i < 3; i++)
        exec_ok(fx, &l, &lr[i]);
    /* A legacy agent gets one command at a time, the next once it answered;
     * the answer ends the right request, with its output, and only from the
     * session it was sent to. */
    const char out[] = "pod-a\n";
    for (int i = 0; i < 3; i++) {
        proto_msg c;
        tunnel_session *at = leg1, *other = leg2;
        if (!pop_msg(leg1, &c)) {
            at = leg2;
            other = leg1;
            assert_true(pop_msg(leg2, &c));
        }
        expect_no_frame(leg1);
        expect_no_frame(leg2);
        assert_int_equal(c.type, MSG_KUBECTL_COMMAND);
        assert_string_equal(c.command, "get pods");
        snprintf(ids[i], sizeof(ids[i]), "%s", c.command_id);
        send_text(other, proto_enc_command_response(ids[i], 1, out, strlen(out), "", 0));
        assert_int_equal(lr[i].ends, 0);
        send_text(at, proto_enc_command_response(ids[i], 1, out, strlen(out), "", 0));
        assert_int_equal(lr[i].ends, 1);
        assert_int_equal(lr[i].ndata, strlen(out));
        assert_memory_equal(lr[i].data, out, strlen(out));
        if (i < 2)
            assert_int_equal(lr[i + 1].ends, 0);
        proto_msg_free(&c);
    }
    assert_string_equal(ids[0], "cmd-1");
    assert_string_equal(ids[1], "cmd-2");
    assert_string_equal(ids[2], "cmd-3");
    tunnel_session_drop(s);
    tunnel_session_drop(leg1);
    tunnel_session_drop(leg2);
    assert_int_equal(r[0].ends + r[2].ends + r[3].ends + lr[0].ends + lr[2].ends, 5);
}

/* The agent may have `window` bytes outstanding per request: data beyond it
 * is dropped; consuming half the window returns credit. */
static void test_credit_window(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *s = connect_as(fx, fx->hub, &m, 2, 0);
    /* An agent that sends beyond window + credit fails that request with
     * 502 AGENT_PROTOCOL_ERROR (never a result with bytes silently missing)
     * and is told to cancel the command; its later frames are dropped. */
    sink_rec bad = { 0 };
    exec_ok(fx, &m, &bad);
    uint32_t id = sent_exec(s);
    send_data(s, id, PROTO_CHAN_STDOUT, 400, 'a');
    send_data(s, id, PROTO_CHAN_STDERR, 400, 'b');
    assert_int_equal(bad.ndata, 800);
    assert_int_equal(bad.nchunks, 2);
    send_data(s, id, PROTO_CHAN_STDOUT, 300, 'c'); /* 1100 > 1000 */
    assert_int_equal(bad.ends, 1);
    assert_int_equal(bad.failed, 1);
    assert_int_equal(bad.http_status, 502);
    assert_string_equal(bad.error_code, "AGENT_PROTOCOL_ERROR");
    assert_int_equal(bad.ndata, 800);
    proto_msg c;
    expect_type(s, MSG_CANCEL, &c);
    assert_int_equal(c.id, id);
    proto_msg_free(&c);
    send_data(s, id, PROTO_CHAN_STDOUT, 10, 'x');
    send_exec_end(s, id, 0); /* the muted request ends without a second result */
    assert_int_equal(bad.ends, 1);
    assert_int_equal(bad.ndata, 800);

    /* Within the window: credit comes back as the client consumes. */
    sink_rec rec = { 0 };
    tunnel_req *r = exec_ok(fx, &m, &rec);
    id = sent_exec(s);
    send_data(s, id, PROTO_CHAN_STDOUT, 400, 'a');
    send_data(s, id, PROTO_CHAN_STDERR, 400, 'b');
    assert_int_equal(rec.ndata, 800);
    /* Data for another request, a malformed frame: dropped, nothing else. */
    send_data(s, id + 1, PROTO_CHAN_STDOUT, 10, 'z');
    tunnel_session_receive(s, "\x01\x00", 2, 1);
    assert_int_equal(rec.ndata, 800);
    assert_int_equal(rec.ends, 0);
    tunnel_req_consumed(r, 400); /* 400 owed: below half the window */
    expect_no_frame(s);
    tunnel_req_consumed(r, 400);
    expect_type(s, MSG_CREDIT, &c);
    assert_int_equal(c.id, id);
    assert_int_equal(c.bytes, 800);
    proto_msg_free(&c);
    /* 1800 may now be outstanding in all. */
    send_data(s, id, PROTO_CHAN_STDOUT, 300, 'd');
    send_data(s, id, PROTO_CHAN_STDOUT, 700, 'e');
    assert_int_equal(rec.ndata, 1800);
    send_text(s, proto_enc_exec_end(id, 0, "", NULL, 0, 5, 1800));
    assert_int_equal(rec.ends, 1);
    assert_int_equal(rec.failed, 0);
}

/* Above the agent's max_concurrent, commands wait at the server, oldest
 * first; an abandoned waiting command is never sent; the queue is capped. */
static void test_queue_above_max_concurrent(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *s = connect_as(fx, fx->hub, &m, 2, 1);
    sink_rec r[4] = { { 0 } };
    exec_ok(fx, &m, &r[0]);
    exec_ok(fx, &m, &r[1]);
    tunnel_req *third = exec_ok(fx, &m, &r[2]);
    exec_ok(fx, &m, &r[3]);
    assert_int_equal(sent_exec(s), 1);
    expect_no_frame(s);
    cJSON *arr = cJSON_CreateArray();
    tunnel_describe_sessions(fx->hub, m.t.org_id, m.t.cluster_id, arr);
    cJSON *o = cJSON_GetArrayItem(arr, 0);
    assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(o, "inflight")), 1);
    assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(o, "queued")), 3);
    cJSON_Delete(arr);
    tunnel_req_abandon(third);
    send_exec_end(s, 1, 0);
    assert_int_equal(r[0].ends, 1);
    assert_int_equal(sent_exec(s), 2); /* the oldest waiting */
    expect_no_frame(s);
    send_exec_end(s, 2, 0);
    assert_int_equal(sent_exec(s), 4); /* the abandoned one was skipped */
    send_exec_end(s, 4, 0);
    expect_no_frame(s);
    assert_int_equal(r[1].ends + r[3].ends, 2);
    assert_int_equal(r[2].ends, 0);

    /* The cap: one running, 4096 waiting, the next refused. */
    enum { CAP = 4096 };
    sink_rec *many = calloc(CAP + 2, sizeof(*many));
    assert_non_null(many);
    for (int i = 0; i < CAP + 1; i++)
        exec_ok(fx, &m, &many[i]);
    char err[256] = "";
    assert_null(exec_ex(fx->hub, m.t.org_id, m.t.cluster_id, "kubectl", 30, &many[CAP + 1], err,
                        sizeof(err)));
    assert_non_null(strstr(err, "commands queued"));
    /* Dropping the session fails every one of them: the running one may
     * have run, the waiting ones never did. */
    tunnel_session_drop(s);
    for (int i = 0; i < CAP + 1; i++)
        if (many[i].ends != 1 ||
            strcmp(many[i].error_code, i ? EC_AGENT_NOT_CONNECTED : EC_AGENT_DISCONNECTED))
            fail_msg("request %d: %d ends, %s", i, many[i].ends, many[i].error_code);
    assert_int_equal(many[CAP + 1].ends, 0);
    free(many);
}

/* A v2 agent names its limit in register, which it sends once it has read
 * `connected`: commands picked for its session meanwhile go one at a time,
 * the rest wait for the register (not sent past the agent's limit, where it
 * ends them as AGENT_BUSY); a register without a limit lifts it. */
static void test_one_at_a_time_until_register(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    for (int round = 0; round < 2; round++) {
        tunnel_session *s = tunnel_session_connect(fx->hub, 2, m.bearer, m.t.cluster_id);
        serve_until(fx, hub_session_settled, s, "authentication");
        assert_true(tunnel_session_ready(s));
        expect_type(s, MSG_CONNECTED, NULL);
        sink_rec r[3] = { { 0 } };
        for (int i = 0; i < 3; i++)
            exec_ok(fx, &m, &r[i]);
        assert_int_equal(sent_exec(s), 1);
        expect_no_frame(s);
        /* round 0: a limit of 2, one more goes; round 1: none, both go */
        send_text(s, proto_enc_register(m.t.cluster_id, "9.9.9", 2, round ? 0 : 2));
        assert_int_equal(sent_exec(s), 2);
        if (round) {
            assert_int_equal(sent_exec(s), 3);
        } else {
            expect_no_frame(s);
            send_exec_end(s, 1, 0);
            assert_int_equal(sent_exec(s), 3);
        }
        expect_no_frame(s);
        tunnel_session_drop(s);
    }
}

/* A sink that gives its request up from inside on_data, as exec.c does when
 * output goes over the org's budget (json_fail_budget). */
static tunnel_req *g_quitter;
static sink_rec g_quitter_rec;
static void quit_data(void *ctx, int channel, const unsigned char *p, size_t n)
{
    rec_data(ctx, channel, p, n);
    if (g_quitter) {
        tunnel_req *r = g_quitter;
        g_quitter = NULL;
        tunnel_req_abandon(r);
    }
}
static const tunnel_sink g_quit_sink = { quit_data, rec_end };

static int describe_count(fixture *fx, const made_token *m, const char *field)
{
    cJSON *arr = cJSON_CreateArray();
    tunnel_describe_sessions(fx->hub, m->t.org_id, m->t.cluster_id, arr);
    int v = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), field));
    cJSON_Delete(arr);
    return v;
}

/* A rogue agent answers only what it was sent: output or an end for a
 * request still waiting for a slot (it has an id but never reached the
 * agent) is dropped, never delivered or ended; a v2 agent cannot end a
 * request with the legacy command_response (its requests' legacy ids are
 * all empty, and "" used to match the newest one); a sink that abandons its
 * request while output is delivered leaves nothing behind to be used
 * after free (run under ASan). */
static void test_forged_answers(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *s = connect_as(fx, fx->hub, &m, 2, 1);
    sink_rec r[2] = { { 0 } };
    exec_ok(fx, &m, &r[0]);
    char err[256] = "";
    memset(&g_quitter_rec, 0, sizeof(g_quitter_rec));
    static const char *const args[] = { "get", "pods" };
    argv_t a = { 0 };
    char aerr[64];
    assert_int_equal(argv_from_strings(args, 2, &a, aerr, sizeof(aerr)), 0);
    tunnel_exec_params p = { .org_id = m.t.org_id, .cluster_id = m.t.cluster_id,
                             .kind = "kubectl", .argv = &a, .timeout = 30,
                             .max_output = 1 << 20 };
    tunnel_req *waiting = tunnel_exec(fx->hub, &p, &g_quit_sink, &g_quitter_rec, err,
                                      sizeof(err));
    argv_free(&a);
    assert_non_null(waiting);
    g_quitter = waiting;
    assert_int_equal(sent_exec(s), 1);
    expect_no_frame(s); /* request 2 waits for the agent's one slot */

    /* first the legacy answer with an empty name: it used to reach the
     * newest request, the waiting one, whose sink then freed it */
    send_text(s, proto_enc_command_response("", 1, "forged", 6, "", 0));
    send_text(s, proto_enc_command_response("cmd-1", 1, "forged", 6, "", 0));
    send_data(s, 2, PROTO_CHAN_STDOUT, 100, 'x');
    send_exec_end(s, 2, 0);
    assert_int_equal(g_quitter_rec.ndata + (size_t)g_quitter_rec.ends, 0);
    assert_int_equal(r[0].ndata + (size_t)r[0].ends, 0);
    assert_ptr_equal(g_quitter, waiting); /* its sink never ran */
    assert_int_equal(describe_count(fx, &m, "inflight"), 1);
    assert_int_equal(describe_count(fx, &m, "queued"), 1);
    assert_int_equal(tunnel_session_ready(s), 1); /* dropped, not a reason to close */

    /* The real end: the waiting request goes out, and its output reaches
     * a sink that abandons it mid-delivery. */
    send_exec_end(s, 1, 0);
    assert_int_equal(r[0].ends, 1);
    assert_int_equal(sent_exec(s), 2);
    send_data(s, 2, PROTO_CHAN_STDOUT, 10, 'y');
    assert_null(g_quitter);
    assert_int_equal(g_quitter_rec.ndata, 10);
    proto_msg c;
    expect_type(s, MSG_CANCEL, &c); /* abandoned while running: stopped at the agent */
    assert_int_equal(c.id, 2);
    proto_msg_free(&c);
    send_data(s, 2, PROTO_CHAN_STDOUT, 10, 'z'); /* muted: nothing more delivered */
    send_exec_end(s, 2, 0);
    assert_int_equal(g_quitter_rec.ndata, 10);
    assert_int_equal(g_quitter_rec.ends, 0);
    assert_int_equal(describe_count(fx, &m, "inflight"), 0);
    tunnel_session_drop(s);
}

/* The legacy dialect: a response names its command; an empty name matches
 * nothing, and a sink that abandons its request while the response's output
 * is delivered does not leave the response to end a freed request. */
static void test_legacy_response_abandoned_mid_output(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *s = connect_as(fx, fx->hub, &m, 0, 0);
    static const char *const args[] = { "get", "pods" };
    argv_t a = { 0 };
    char aerr[64], err[256] = "";
    assert_int_equal(argv_from_strings(args, 2, &a, aerr, sizeof(aerr)), 0);
    tunnel_exec_params p = { .org_id = m.t.org_id, .cluster_id = m.t.cluster_id,
                             .kind = "kubectl", .argv = &a, .timeout = 30,
                             .max_output = 1 << 20 };
    memset(&g_quitter_rec, 0, sizeof(g_quitter_rec));
    tunnel_req *req = tunnel_exec(fx->hub, &p, &g_quit_sink, &g_quitter_rec, err, sizeof(err));
    argv_free(&a);
    assert_non_null(req);
    proto_msg cmd;
    expect_type(s, MSG_KUBECTL_COMMAND, &cmd);
    char cid[64];
    snprintf(cid, sizeof(cid), "%s", cmd.command_id);
    proto_msg_free(&cmd);

    send_text(s, proto_enc_command_response("", 1, "forged", 6, "", 0));
    assert_int_equal(g_quitter_rec.ndata + (size_t)g_quitter_rec.ends, 0);
    assert_int_equal(describe_count(fx, &m, "inflight"), 1);

    g_quitter = req;
    send_text(s, proto_enc_command_response(cid, 1, "real output", 11, "", 0));
    assert_null(g_quitter);
    assert_int_equal(g_quitter_rec.ndata, 11);
    assert_int_equal(g_quitter_rec.ends, 0); /* abandoned: its sink is not called */
    assert_int_equal(describe_count(fx, &m, "inflight"), 0);
    /* the same response again finds nothing */
    send_text(s, proto_enc_command_response(cid, 1, "again", 5, "", 0));
    assert_int_equal(g_quitter_rec.ndata, 11);
    tunnel_session_drop(s);
}

/* Lines of fd 2 that contain needle while fn(arg) runs. */
static int stderr_lines_with(const char *needle, void (*fn)(void *), void *arg)
{
    FILE *f = stderr_capture(fn, arg);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

static void flood_bad_text(void *arg)
{
    for (int i = 0; i < 3000; i++)
        tunnel_session_receive(arg, "{not json", 9, 0);
}

static void flood_bad_binary(void *arg)
{
    for (int i = 0; i < 3000; i++)
        tunnel_session_receive(arg, "\x01", 1, 1);
}

static void flood_stray(void *arg)
{
    for (int i = 0; i < 3000; i++)
        send_data(arg, 777, PROTO_CHAN_STDOUT, 4, 's');
}

static void flood_register(void *arg)
{
    tunnel_session *s = arg;
    char *reg = proto_enc_register("cluster-x", "1.2.3", 2, 4);
    assert_non_null(reg);
    for (int i = 0; i < 3000; i++)
        tunnel_session_receive(s, reg, strlen(reg), 0);
    free(reg);
}

/* Frames an agent should never send are dropped and logged sparingly (the
 * first five, then every 1000th): a few bytes each must not become a log
 * line each; so are repeated registers.  The session stays up. */
static void test_bad_frames_logged_sparingly(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *s = connect_as(fx, fx->hub, &m, 2, 4);
    log_setup("test", "warn", "text"); /* the suite runs at "error" */
    int text = stderr_lines_with("bad frame dropped", flood_bad_text, s);
    int binary = stderr_lines_with("malformed binary frame", flood_bad_binary, s);
    int stray = stderr_lines_with("output for request 777 dropped", flood_stray, s);
    /* a register is a log line (info) once per connection, not per frame */
    log_setup("test", "info", "text");
    int regs = stderr_lines_with("registered", flood_register, s);
    log_setup("test", "error", "text");
    assert_int_equal(regs, 4 + 3); /* connect_as sent the first */
    /* text and binary share one count: 3000 text frames, then 3000 binary */
    assert_int_equal(text, 5 + 3);
    assert_int_equal(binary, 3);
    assert_int_equal(stray, 5 + 3);
    assert_int_equal(tunnel_session_ready(s), 1);
    sink_rec r = { 0 };
    exec_ok(fx, &m, &r);
    uint32_t id = sent_exec(s);
    send_exec_end(s, id, 0);
    assert_int_equal(r.ends, 1); /* still serving */
    tunnel_session_drop(s);
}

/* What an agent names in a frame the server does not act on (a message
 * type it does not know, a legacy command_id it never sent) reaches a
 * debug line in the text format: terminal escapes and other control
 * characters (C0 and C1) never reach the log as they are. */
static tunnel_session *g_rogue;
static void send_rogue_type(void *arg)
{
    (void)arg;
    static const char f[] = "{\"type\":\"x\\u001b]0;owned\\u0007\\u001b[2J\\u009b31m\"}";
    tunnel_session_receive(g_rogue, f, strlen(f), 0);
}
static void send_rogue_command_id(void *arg)
{
    (void)arg;
    static const char f[] = "{\"type\":\"command_response\",\"command_id\":"
                            "\"cmd-\\u001b]0;owned\\u0007\\u001b[2J\\u009b31m\",\"success\":true,"
                            "\"output\":\"\",\"error\":\"\",\"return_code\":0}";
    tunnel_session_receive(g_rogue, f, strlen(f), 0);
}

static void test_peer_text_escaped_in_logs(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *v2 = connect_as(fx, fx->hub, &m, 2, 4);
    tunnel_session *v1 = connect_as(fx, fx->hub, &m, 0, 0); /* legacy */
    log_setup("test", "debug", "text");
    g_rogue = v2;
    int seen = stderr_lines_with("ignoring message type", send_rogue_type, NULL);
    int esc = stderr_lines_with("\x1b", send_rogue_type, NULL);
    int bel = stderr_lines_with("\x07", send_rogue_type, NULL);
    int csi = stderr_lines_with("\xc2\x9b", send_rogue_type, NULL);
    g_rogue = v1;
    int seen_cid = stderr_lines_with("response for unknown command", send_rogue_command_id, NULL);
    int esc_cid = stderr_lines_with("\x1b", send_rogue_command_id, NULL);
    int bel_cid = stderr_lines_with("\x07", send_rogue_command_id, NULL);
    int csi_cid = stderr_lines_with("\xc2\x9b", send_rogue_command_id, NULL);
    log_setup("test", "error", "text");
    assert_int_equal(seen, 1);
    assert_int_equal(esc + bel + csi, 0);
    assert_int_equal(seen_cid, 1);
    assert_int_equal(esc_cid + bel_cid + csi_cid, 0);
    assert_true(tunnel_session_ready(v2) && tunnel_session_ready(v1));
    tunnel_session_drop(v1);
    tunnel_session_drop(v2);
}

typedef struct {
    fixture *fx;
    const made_token *m;
    int connected; /* what the row must say */
} row_want;

/* The cluster's connections row says `connected` live sessions. */
static int row_connected(void *arg)
{
    row_want *w = arg;
    store_connection c;
    return store_connection_get(w->fx->st, w->m->t.org_id, w->m->t.cluster_id, &c) == STORE_OK &&
           c.connected == w->connected;
}

/* A register whose agent_version is not text (invalid UTF-8, control
 * characters, a multi-byte character across the field's size) and whose
 * policy holds invalid UTF-8: what the server keeps of it is valid UTF-8
 * without control characters, in the sessions' description and in the
 * connections row, and the session still counts as connected there (the
 * store refused the row; the session's disconnect then took the count of
 * another, live session of the cluster). */
static void test_hostile_register_fields(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *a = connect_as(fx, fx->hub, &m, 2, 4);
    row_want one = { fx, &m, 1 }, two = { fx, &m, 2 };
    serve_until(fx, row_connected, &one, "the first session's row");

    tunnel_session *b = tunnel_session_connect(fx->hub, 2, m.bearer, m.t.cluster_id);
    serve_until(fx, hub_session_settled, b, "authentication");
    expect_type(b, MSG_CONNECTED, NULL);
    /* 61 bytes, then a 3-byte character that the 63-byte field cuts */
    char version[128];
    snprintf(version, sizeof(version), "1.0\n\x1b[31mred\xff\x7f%s\xe2\x82\xac",
             "...............................................");
    assert_int_equal(strlen(version), 64);
    char frame[512];
    snprintf(frame, sizeof(frame),
             "{\"type\":\"register\",\"cluster_id\":\"%s\",\"agent_version\":\"%s\","
             "\"protocol\":2,\"max_concurrent\":4,\"policy\":{\"mode\":\"r\xc3\"}}",
             m.t.cluster_id, "PLACEHOLDER");
    /* the version's raw bytes go in as they are (JSON-escaped controls) */
    cJSON *jv = cJSON_CreateString(version);
    char *js = cJSON_PrintUnformatted(jv);
    cJSON_Delete(jv);
    assert_non_null(js);
    char *ph = strstr(frame, "\"PLACEHOLDER\"");
    char out[768];
    snprintf(out, sizeof(out), "%.*s%s%s", (int)(ph - frame), frame, js,
             ph + strlen("\"PLACEHOLDER\""));
    cJSON_free(js);
    tunnel_session_receive(b, out, strlen(out), 0);

    cJSON *arr = cJSON_CreateArray();
    tunnel_describe_sessions(fx->hub, m.t.org_id, m.t.cluster_id, arr);
    assert_int_equal(cJSON_GetArraySize(arr), 2);
    char *desc = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    assert_non_null(desc);
    assert_true(utf8_valid(desc, strlen(desc)));
    assert_null(strstr(desc, "\\n"));
    assert_null(strstr(desc, "\\u001b"));
    assert_null(strstr(desc, "\x7f"));
    free(desc);

    /* its row is written (2 sessions), and its end leaves the other's */
    serve_until(fx, row_connected, &two, "the second session's row");
    store_connection c;
    assert_int_equal(store_connection_get(fx->st, m.t.org_id, m.t.cluster_id, &c), STORE_OK);
    assert_true(utf8_valid(c.agent_version, strlen(c.agent_version)));
    assert_non_null(strstr(c.agent_version, "1.0?"));
    tunnel_session_drop(b);
    serve_until(fx, row_connected, &one, "the row after the second session left");
    assert_true(tunnel_session_ready(a));
    tunnel_session_drop(a);
}

/* exec_end's error_code is one of the agent's codes ([A-Z0-9_], as the
 * API documents them) or nothing: an agent's other text (invalid UTF-8,
 * control characters, megabytes) never becomes the caller's error_code,
 * which the JSON answer and the SSE events carry as they are. */
static void test_exec_end_error_code_is_a_code(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *s = connect_as(fx, fx->hub, &m, 2, 4);
    char *big = malloc(100001);
    assert_non_null(big);
    memset(big, 'A', 100000);
    big[100000] = '\0';
    struct {
        const char *sent, *seen;
    } cases[] = {
        { "POLICY_DENIED", "POLICY_DENIED" },
        { "AGENT_BUSY", "AGENT_BUSY" },
        { "bad\xff\ncode", "" },
        { "BAD CODE", "" },
        { "\x1b[2J", "" },
        { big, "" },
        { "", "" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sink_rec r = { 0 };
        exec_ok(fx, &m, &r);
        uint32_t id = sent_exec(s);
        assert_true(id > 0);
        send_text(s, proto_enc_exec_end(id, 3, "refused", cases[i].sent, 0, 5, 0));
        assert_int_equal(r.ends, 1);
        assert_int_equal(r.return_code, 3);
        assert_string_equal(r.error_code, cases[i].seen);
    }
    free(big);
    assert_true(tunnel_session_ready(s));
    tunnel_session_drop(s);
}

/* A command's duration is the agent's word (it times the process), but it
 * reaches the audit row, the caller's answer and the server-wide histogram
 * of command durations (every tenant's p99): a rogue agent claiming 9e15 ms
 * (285,000 years) for a command it answered at once skewed them all.  The
 * agent cannot have run a command longer than the server has waited for it:
 * the duration is capped by that. */
static void test_exec_end_duration_bounded_by_the_wait(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *s = connect_as(fx, fx->hub, &m, 2, 4);
    int64_t claims[] = { 8999999999999999LL, 86400000, 1000 };
    for (size_t i = 0; i < sizeof(claims) / sizeof(claims[0]); i++) {
        sink_rec r = { 0 };
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        exec_ok(fx, &m, &r);
        uint32_t id = sent_exec(s);
        assert_true(id > 0);
        send_text(s, proto_enc_exec_end(id, 0, "", NULL, 0, claims[i], 0));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        int64_t waited_ms = (int64_t)(t1.tv_sec - t0.tv_sec) * 1000 +
                            (t1.tv_nsec - t0.tv_nsec) / 1000000 + 1;
        assert_int_equal(r.ends, 1);
        if (r.duration_ms < 0 || r.duration_ms > waited_ms)
            fail_msg("claimed %lld ms, passed on %lld ms after a wait of %lld ms",
                     (long long)claims[i], (long long)r.duration_ms, (long long)waited_ms);
    }
    /* what the agent measured within the wait is passed on as it is */
    sink_rec r = { 0 };
    exec_ok(fx, &m, &r);
    uint32_t id = sent_exec(s);
    struct timespec pause = { 0, 30 * 1000000 };
    nanosleep(&pause, NULL); /* the command "runs" 30 ms at least */
    send_text(s, proto_enc_exec_end(id, 0, "", NULL, 0, 20, 0));
    assert_int_equal(r.ends, 1);
    assert_int_equal(r.duration_ms, 20);
    assert_true(tunnel_session_ready(s));
    tunnel_session_drop(s);
}

/* Bytes the process has allocated and not freed. */
static size_t heap_in_use(void)
{
#if WITH_ASAN
    return __sanitizer_get_current_allocated_bytes();
#else
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks;
#endif
}

/* An agent that sends and never reads: what the server queues for it (here
 * a heartbeat_ack per heartbeat, 24 bytes each) is bounded in memory, not
 * only in payload bytes: each queued frame is an allocation of its own, so
 * 8 MiB counted as payload held about 3 times that. */
static void test_send_queue_bounded_in_memory(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *s = connect_as(fx, fx->hub, &m, 2, 4);
    char *hb = proto_enc_heartbeat(m.t.cluster_id);
    assert_non_null(hb);
    size_t len = strlen(hb);
    size_t before = heap_in_use(), peak = before;
    int sent = 0;
    while (sent < 2000000 && !tunnel_session_close_code(s, NULL)) {
        tunnel_session_receive(s, hb, len, 0);
        if (++sent % 512 == 0) {
            size_t now = heap_in_use();
            if (now > peak)
                peak = now;
        }
    }
    free(hb);
    expect_closed(s, PROTO_CLOSE_POLICY, "Send queue overflow");
    size_t grew = peak > before ? peak - before : 0;
    if (grew > (size_t)9 * 1024 * 1024)
        fail_msg("the queue of a session that never reads held %zu bytes (%d heartbeats)", grew,
                 sent);
    tunnel_session_drop(s);
}

/* A waiting request that its agent's full send queue cannot take (the agent
 * does not read; the session closes with "Send queue overflow") was never
 * sent: it moves to another session of the cluster, never reported as
 * disconnected mid-command (which says it may have run). */
static void test_waiting_request_not_sent_to_a_full_queue(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *a = connect_as(fx, fx->hub, &m, 2, 1);
    sink_rec r0 = { 0 }, r1 = { 0 };
    exec_ok(fx, &m, &r0); /* a: running */
    exec_ok(fx, &m, &r1); /* a: waiting for its one slot */
    assert_int_equal(sent_exec(a), 1);
    /* a reads nothing: heartbeat_acks fill its queue to within less than
     * one ack of the cap (8 MiB of what each frame allocates: its header,
     * LWS_PRE, the payload), where an exec frame no longer fits */
    struct frame_like {
        void *next;
        int binary, secret;
        size_t len;
        unsigned char data[];
    };
    char *ack = proto_enc_heartbeat_ack();
    char *hb = proto_enc_heartbeat(m.t.cluster_id);
    assert_non_null(ack);
    assert_non_null(hb);
    size_t cost = sizeof(struct frame_like) + LWS_PRE + strlen(ack);
    size_t acks = (size_t)8 * 1024 * 1024 / cost;
    for (size_t i = 0; i < acks; i++)
        tunnel_session_receive(a, hb, strlen(hb), 0);
    free(ack);
    free(hb);
    assert_true(tunnel_session_ready(a)); /* full, not over */
    tunnel_session *b = connect_as(fx, fx->hub, &m, 2, 4);
    send_exec_end(a, 1, 0); /* a's slot frees: r1's frame does not fit */
    assert_int_equal(r0.ends, 1);
    expect_closed(a, PROTO_CLOSE_POLICY, "Send queue overflow");
    assert_int_equal(r1.ends, 0);
    tunnel_session_drop(a);
    if (r1.ends)
        fail_msg("the request a full queue never took ended: %d %s (%s)", r1.http_status,
                 r1.error_code, r1.error);
    uint32_t id = sent_exec(b); /* moved, and sent there */
    assert_true(id > 0);
    send_exec_end(b, id, 0);
    assert_int_equal(r1.ends, 1);
    assert_int_equal(r1.failed, 0);
    tunnel_session_drop(b);
}

static int ended(void *arg) { return ((sink_rec *)arg)->ends > 0; }

/* A request the agent does not end within timeout + grace fails with 504
 * TIMEOUT; a started v2 request is cancelled at the agent. */
static void test_deadline(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *s = connect_as(fx, fx->hub, &m, 2, 1);
    sink_rec started = { 0 }, waiting = { 0 };
    char err[256];
    assert_non_null(exec_ex(fx->hub, m.t.org_id, m.t.cluster_id, "kubectl", 0.05, &started, err,
                            sizeof(err)));
    assert_non_null(exec_ex(fx->hub, m.t.org_id, m.t.cluster_id, "kubectl", 60, &waiting, err,
                            sizeof(err)));
    uint32_t id = sent_exec(s);
    serve_until(fx, ended, &started, "the deadline");
    assert_int_equal(started.failed, 1);
    assert_int_equal(started.http_status, 504);
    assert_string_equal(started.error_code, EC_TIMEOUT);
    proto_msg c;
    expect_type(s, MSG_CANCEL, &c);
    assert_int_equal(c.id, id);
    proto_msg_free(&c);
    /* Its slot went to the waiting one; a late exec_end is ignored. */
    assert_int_equal(sent_exec(s), id + 1);
    send_exec_end(s, id, 0);
    assert_int_equal(started.ends, 1);
    assert_int_equal(waiting.ends, 0);

    /* A waiting request times out too, without a cancel: the agent never
     * saw it. */
    sink_rec w2 = { 0 };
    assert_non_null(exec_ex(fx->hub, m.t.org_id, m.t.cluster_id, "kubectl", 0.05, &w2, err,
                            sizeof(err)));
    serve_until(fx, ended, &w2, "the waiting request's deadline");
    assert_string_equal(w2.error_code, EC_TIMEOUT);
    expect_no_frame(s);
    assert_int_equal(waiting.ends, 0);
    tunnel_session_drop(s);
    assert_int_equal(waiting.ends, 1);
}

/* A dropped connection fails exactly its own requests. */
static void test_drop_fails_only_its_requests(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0), other = new_token(fx, fx->org_id, 0);
    tunnel_session *x = connect_as(fx, fx->hub, &m, 2, 0);
    sink_rec rx = { 0 }, rmuted = { 0 };
    exec_ok(fx, &m, &rx);
    tunnel_req *muted = exec_ok(fx, &m, &rmuted);
    assert_int_equal(sent_exec(x), 1);
    assert_int_equal(sent_exec(x), 2);
    tunnel_session *y = connect_as(fx, fx->hub, &m, 2, 0);
    tunnel_session *z = connect_as(fx, fx->hub, &other, 2, 0);
    sink_rec ry = { 0 }, rz = { 0 };
    exec_ok(fx, &m, &ry); /* y: the least loaded */
    exec_ok(fx, &other, &rz);
    uint32_t idy = sent_exec(y), idz = sent_exec(z);
    assert_true(idy && idz);
    tunnel_req_abandon(muted); /* started: stays until its end, silent */
    expect_type(x, MSG_CANCEL, NULL);
    assert_int_equal(tunnel_session_count(fx->hub), 3);

    tunnel_session_drop(x);
    assert_int_equal(tunnel_session_count(fx->hub), 2);
    assert_int_equal(rx.ends, 1);
    assert_int_equal(rx.failed, 1);
    assert_int_equal(rx.http_status, 502);
    assert_string_equal(rx.error_code, EC_AGENT_DISCONNECTED);
    assert_int_equal(rmuted.ends, 0);
    assert_int_equal(ry.ends + rz.ends, 0);
    send_exec_end(y, idy, 0);
    send_exec_end(z, idz, 3);
    assert_int_equal(ry.ends, 1);
    assert_int_equal(ry.failed, 0);
    assert_int_equal(rz.return_code, 3);
    /* The cluster is still served, by y. */
    sink_rec again = { 0 };
    exec_ok(fx, &m, &again);
    assert_true(sent_exec(y) > 0);
    tunnel_session_drop(y);
    tunnel_session_drop(z);
    assert_int_equal(again.ends, 1);
}

static void expect_never_ran(const sink_rec *r)
{
    assert_int_equal(r->ends, 1);
    assert_int_equal(r->failed, 1);
    assert_int_equal(r->http_status, 503);
    assert_string_equal(r->error_code, EC_AGENT_NOT_CONNECTED);
    assert_int_equal(r->ndata, 0);
}

/* A request still queued at the server for its agent's free slot never
 * reached the agent: when that session goes, it moves to another ready
 * session of the cluster (an agent Deployment's rollout: two agents),
 * keeping its place among that session's waiting requests (older ones
 * first) and its deadline; without one it gets what a request gets with no
 * agent connected (503 AGENT_NOT_CONNECTED), not 502 AGENT_DISCONNECTED,
 * which says it may have run.  What was sent keeps the 502. */
static void test_waiting_requests_move_on_drop(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *a = connect_as(fx, fx->hub, &m, 2, 1);
    /* b's token lookup runs now, before rt's short deadline starts: a
     * lookup queued behind a's connection row (an fsync) on a loaded
     * machine took longer than that deadline, which then ended rt before
     * the drop.  b is not ready until the loop takes the lookup's result. */
    tunnel_session *b = tunnel_session_connect(fx->hub, 2, m.bearer, m.t.cluster_id);
    wait_workers_idle(fx);
    assert_false(tunnel_session_ready(b));
    sink_rec r0 = { 0 }, r1 = { 0 }, r2 = { 0 }, r3 = { 0 }, r4 = { 0 }, rt = { 0 };
    char err[256] = "";
    exec_ok(fx, &m, &r0);                  /* a: running */
    exec_ok(fx, &m, &r1);                  /* a: waiting */
    exec_ok(fx, &m, &r2);                  /* a: waiting */
    /* a: waiting, a short deadline; 3 s, not 1: b's authentication below
     * serves the loop until b settles, which on a loaded machine can take
     * long enough to end rt before the drop */
    assert_non_null(exec_ex(fx->hub, m.t.org_id, m.t.cluster_id, "kubectl", 3.0, &rt, err,
                            sizeof(err)));
    assert_int_equal(sent_exec(a), 1);
    expect_no_frame(a);
    finish_connect(fx, b, &m, 2, 1);
    exec_ok(fx, &m, &r3); /* b: the least loaded, running */
    exec_ok(fx, &m, &r4); /* b: waiting, newer than a's */
    assert_int_equal(sent_exec(b), 1);
    expect_no_frame(b);

    tunnel_session_drop(a);
    assert_int_equal(r0.ends, 1); /* sent: it may have run */
    assert_int_equal(r0.http_status, 502);
    assert_string_equal(r0.error_code, EC_AGENT_DISCONNECTED);
    assert_int_equal(r1.ends + r2.ends + rt.ends + r3.ends + r4.ends, 0);
    expect_no_frame(b); /* b's one slot is taken: they wait there */
    assert_int_equal(describe_count(fx, &m, "queued"), 4);

    /* its own deadline, not a new one: it ends while waiting at b, unsent */
    serve_until(fx, ended, &rt, "the moved request's deadline");
    assert_string_equal(rt.error_code, EC_TIMEOUT);
    expect_no_frame(b);

    /* a's requests go first (they are older than b's waiting one), in order */
    send_exec_end(b, 1, 0);
    assert_int_equal(r3.ends, 1);
    uint32_t id1 = sent_exec(b);
    assert_true(id1 > 2); /* a fresh id at b: 1 and 2 are r3's and r4's */
    expect_no_frame(b);
    send_exec_end(b, id1, 0);
    assert_int_equal(r1.ends, 1);
    assert_int_equal(r1.failed, 0);
    assert_int_equal(r2.ends + r4.ends, 0);
    uint32_t id2 = sent_exec(b);
    send_exec_end(b, id2, 0);
    assert_int_equal(r2.ends, 1);
    assert_int_equal(r2.failed, 0);
    assert_int_equal(r4.ends, 0);
    assert_int_equal(sent_exec(b), 2); /* r4, last */
    send_exec_end(b, 2, 0);
    assert_int_equal(r4.ends, 1);

    /* The cluster's last session goes: its waiting requests never ran. */
    sink_rec q0 = { 0 }, q1 = { 0 }, q2 = { 0 };
    exec_ok(fx, &m, &q0);
    exec_ok(fx, &m, &q1);
    exec_ok(fx, &m, &q2);
    assert_true(sent_exec(b) > 0);
    tunnel_session_drop(b);
    assert_int_equal(q0.http_status, 502);
    assert_string_equal(q0.error_code, EC_AGENT_DISCONNECTED);
    expect_never_ran(&q1);
    expect_never_ran(&q2);
}

/* A waiting request whose session goes, while the cluster's other agent is
 * connected but holds a full queue, cannot move: it gets what a new command
 * gets then (queue full, retry later), not "not connected". */
static void test_waiting_request_meets_full_queue(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *b = connect_as(fx, fx->hub, &m, 2, 1);
    enum { CAP = 4096 };
    sink_rec *many = calloc(CAP + 1, sizeof(*many));
    assert_non_null(many);
    for (int i = 0; i < CAP + 1; i++) /* b: one running, its queue full */
        exec_ok(fx, &m, &many[i]);
    char err[256] = "";
    assert_null(exec_ex(fx->hub, m.t.org_id, m.t.cluster_id, "kubectl", 30, &(sink_rec){ 0 },
                        err, sizeof(err)));
    tunnel_session *a = connect_as(fx, fx->hub, &m, 2, 1);
    sink_rec r0 = { 0 }, r1 = { 0 };
    exec_ok(fx, &m, &r0); /* a: running */
    exec_ok(fx, &m, &r1); /* a: waiting */
    assert_true(sent_exec(a) > 0);
    expect_no_frame(a);

    tunnel_session_drop(a);
    assert_string_equal(r0.error_code, EC_AGENT_DISCONNECTED);
    expect_never_ran(&r1);
    /* the message a new command gets, not "not connected" */
    if (!strstr(r1.error, "commands queued") || strstr(r1.error, "not connected"))
        fail_msg("moved request: %s (a new one: %s)", r1.error, err);
    assert_non_null(strstr(r1.error, "did not run"));
    tunnel_session_drop(b);
    for (int i = 1; i < CAP + 1; i++)
        if (many[i].ends != 1 || strcmp(many[i].error_code, EC_AGENT_NOT_CONNECTED) ||
            !strstr(many[i].error, "not connected"))
            fail_msg("request %d: %d ends, %s: %s", i, many[i].ends, many[i].error_code,
                     many[i].error);
    free(many);
}

/* register naming the agent process (its "instance") and its connection number */
static void register_instance(tunnel_session *s, const made_token *m, int max_concurrent,
                              const char *instance, int conn)
{
    char buf[512];
    snprintf(buf, sizeof(buf),
             "{\"type\":\"register\",\"cluster_id\":\"%s\",\"agent_version\":\"9.9.9\","
             "\"protocol\":2,\"max_concurrent\":%d,\"instance\":\"%s\",\"connection\":%d}",
             m->t.cluster_id, max_concurrent, instance, conn);
    tunnel_session_receive(s, buf, strlen(buf), 0);
}

/* An agent process that connects again while its old connection is still
 * held (dead without a word: it stays ready until the idle timeout) ends
 * that one at once: commands no longer go where nothing answers them.
 * What the old session queued but never sent moves on and runs; what it
 * sent keeps its outcome (502 when its socket goes).  Another process of
 * the same cluster (a second pod), an agent that names no instance and an
 * older connection number close nothing. */
static void test_reconnection_supersedes_dead_session(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *other = connect_as(fx, fx->hub, &m, 2, 0); /* another pod, no limit */
    register_instance(other, &m, 0, "pod-b-0123456789", 1);
    tunnel_session *plain = connect_as(fx, fx->hub, &m, 2, 0); /* names no instance */
    sink_rec rb = { 0 }, rp = { 0 }, r0 = { 0 }, r1 = { 0 };
    exec_ok(fx, &m, &rb);
    exec_ok(fx, &m, &rp);
    assert_true(sent_exec(other) + sent_exec(plain) > 0); /* one each: both are loaded */
    expect_no_frame(other);
    expect_no_frame(plain);

    tunnel_session *old = connect_as(fx, fx->hub, &m, 2, 1);
    register_instance(old, &m, 1, "pod-a-0123456789", 1);
    exec_ok(fx, &m, &r0); /* old: the least loaded, running */
    assert_true(sent_exec(old) > 0);
    exec_ok(fx, &m, &r1); /* old: first in turn at equal load; waits for its one slot */
    expect_no_frame(other);
    expect_no_frame(plain);
    expect_no_frame(old);

    tunnel_session *fresh = connect_as(fx, fx->hub, &m, 2, 1);
    register_instance(fresh, &m, 1, "pod-a-0123456789", 2);
    expect_closed(old, LWS_CLOSE_STATUS_GOINGAWAY, TUNNEL_REASON_SUPERSEDED);
    assert_true(tunnel_session_ready(other));
    assert_true(tunnel_session_ready(plain));
    assert_true(tunnel_session_ready(fresh));
    /* the unsent one moved to the new connection (the least loaded) and ran */
    assert_int_equal(r1.ends, 0);
    uint32_t id = sent_exec(fresh);
    assert_true(id > 0);
    send_exec_end(fresh, id, 0);
    assert_int_equal(r1.ends, 1);
    assert_int_equal(r1.failed, 0);
    /* the sent one: its outcome comes with its connection's end */
    assert_int_equal(r0.ends, 0);
    tunnel_session_drop(old);
    assert_int_equal(r0.ends, 1);
    assert_int_equal(r0.http_status, 502);
    assert_string_equal(r0.error_code, EC_AGENT_DISCONNECTED);

    /* a connection number older than the one held replaces nothing */
    tunnel_session *stale = connect_as(fx, fx->hub, &m, 2, 1);
    register_instance(stale, &m, 1, "pod-a-0123456789", 1);
    assert_true(tunnel_session_ready(fresh));
    /* nor does a register repeated on the new connection close it */
    register_instance(fresh, &m, 1, "pod-a-0123456789", 2);
    assert_true(tunnel_session_ready(fresh));
    assert_true(tunnel_session_ready(other));
    assert_true(tunnel_session_ready(plain));
    assert_int_equal(tunnel_close_superseded(fx->hub, fx->org2_id, m.t.cluster_id,
                                             "pod-a-0123456789", 9), 0); /* another org's word */
    assert_true(tunnel_session_ready(fresh));
    send_exec_end(other, 1, 0);
    send_exec_end(plain, 1, 0);
    assert_int_equal(rb.ends + rp.ends, 2);
}

/* Moving takes the dialect and the kind into account: a queued kubectl
 * command goes to a legacy agent of the cluster (as a kubectl_command),
 * a queued cloud_exec, which a legacy agent cannot run, does not. */
static void test_waiting_requests_move_across_dialects(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *v2 = connect_as(fx, fx->hub, &m, 2, 1);
    sink_rec run = { 0 }, kube = { 0 }, cloud = { 0 };
    char err[256] = "";
    exec_ok(fx, &m, &run);
    exec_ok(fx, &m, &kube);
    assert_non_null(exec_ex(fx->hub, m.t.org_id, m.t.cluster_id, "cloud_exec", 30, &cloud, err,
                            sizeof(err)));
    assert_int_equal(sent_exec(v2), 1);
    expect_no_frame(v2);
    tunnel_session *legacy = connect_as(fx, fx->hub, &m, 0, 0);
    tunnel_session_drop(v2);
    assert_string_equal(run.error_code, EC_AGENT_DISCONNECTED);
    expect_never_ran(&cloud);
    assert_int_equal(kube.ends, 0);
    proto_msg cmd;
    expect_type(legacy, MSG_KUBECTL_COMMAND, &cmd);
    assert_string_equal(cmd.command, "get pods");
    send_text(legacy, proto_enc_command_response(cmd.command_id, 1, "pods", 4, "", 0));
    proto_msg_free(&cmd);
    assert_int_equal(kube.ends, 1);
    assert_int_equal(kube.failed, 0);
    assert_int_equal(kube.ndata, 4);
    tunnel_session_drop(legacy);
}

/* Commands held for a busy legacy agent (one at a time) are not lost when
 * its connection ends while a v2 agent of the cluster is up, as when the
 * Python agent is replaced by the C one: they move to it (they failed with
 * 503 "not connected" before, a legacy-held command having no v2 form). */
static void test_held_legacy_commands_move_to_a_v2_agent(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *legacy = connect_as(fx, fx->hub, &m, 0, 0);
    sink_rec run = { 0 }, held = { 0 };
    exec_ok(fx, &m, &run);
    exec_ok(fx, &m, &held);
    expect_type(legacy, MSG_KUBECTL_COMMAND, NULL);
    expect_no_frame(legacy);
    tunnel_session *v2 = connect_as(fx, fx->hub, &m, 2, 4);
    tunnel_session_drop(legacy);
    assert_string_equal(run.error_code, EC_AGENT_DISCONNECTED);
    assert_int_equal(held.ends, 0);
    proto_msg x;
    expect_type(v2, MSG_EXEC, &x);
    assert_string_equal(x.kind, "kubectl");
    assert_int_equal(x.argv.c, 2);
    assert_string_equal(x.argv.v[0], "get");
    assert_string_equal(x.argv.v[1], "pods");
    uint32_t id = x.id;
    proto_msg_free(&x);
    expect_no_frame(v2);
    send_text(v2, proto_enc_exec_end(id, 0, "", NULL, 0, 5, 0));
    assert_int_equal(held.ends, 1);
    assert_int_equal(held.failed, 0);
    assert_int_equal(held.return_code, 0);
    /* one held for a v2 agent, then for a legacy one, moves on to a v2 one */
    sink_rec a = { 0 }, b = { 0 }, c = { 0 };
    tunnel_session *v2b = connect_as(fx, fx->hub, &m, 2, 1);
    tunnel_session_drop(v2);
    exec_ok(fx, &m, &a);
    exec_ok(fx, &m, &b);
    assert_int_equal(sent_exec(v2b), 1);
    expect_no_frame(v2b);
    legacy = connect_as(fx, fx->hub, &m, 0, 0);
    exec_ok(fx, &m, &c);
    expect_type(legacy, MSG_KUBECTL_COMMAND, NULL);
    tunnel_session_drop(v2b);
    assert_string_equal(a.error_code, EC_AGENT_DISCONNECTED);
    expect_no_frame(legacy); /* b waits behind c there */
    tunnel_session *v2c = connect_as(fx, fx->hub, &m, 2, 4);
    tunnel_session_drop(legacy);
    assert_string_equal(c.error_code, EC_AGENT_DISCONNECTED);
    assert_int_equal(b.ends, 0);
    expect_type(v2c, MSG_EXEC, &x);
    assert_string_equal(x.kind, "kubectl");
    assert_int_equal(x.argv.c, 2);
    id = x.id;
    proto_msg_free(&x);
    send_text(v2c, proto_enc_exec_end(id, 0, "", NULL, 0, 5, 0));
    assert_int_equal(b.ends, 1);
    assert_int_equal(b.failed, 0);
    tunnel_session_drop(v2c);
}

/* Of a cluster's legacy sessions only the newest takes commands (the
 * existing server's one connection per cluster): an older one may be dead
 * without a word, as a Python agent names no instance to supersede it.
 * When the newest goes, the one before it takes them again; v2 sessions of
 * the cluster share the load as before. */
static void test_newest_legacy_session_takes_the_commands(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *old = connect_as(fx, fx->hub, &m, 0, 0);
    tunnel_session *mid = connect_as(fx, fx->hub, &m, 0, 0);
    tunnel_session *fresh = connect_as(fx, fx->hub, &m, 0, 0);
    sink_rec r[8] = { { 0 } };
    for (int i = 0; i < 4; i++)
        exec_ok(fx, &m, &r[i]);
    /* the newest only, and one at a time: the others wait at the server */
    proto_msg cmd;
    expect_type(fresh, MSG_KUBECTL_COMMAND, &cmd);
    expect_no_frame(fresh);
    expect_no_frame(old);
    expect_no_frame(mid);
    send_text(fresh, proto_enc_command_response(cmd.command_id, 1, "ok", 2, "", 0));
    proto_msg_free(&cmd);
    assert_int_equal(r[0].ends, 1);
    expect_type(fresh, MSG_KUBECTL_COMMAND, NULL);
    /* the one it runs fails with it; the two never sent move to the newest left */
    tunnel_session_drop(fresh);
    assert_int_equal(r[1].ends, 1);
    for (int i = 2; i < 4; i++) {
        assert_int_equal(r[i].ends, 0);
        expect_type(mid, MSG_KUBECTL_COMMAND, &cmd);
        expect_no_frame(mid);
        send_text(mid, proto_enc_command_response(cmd.command_id, 1, "ok", 2, "", 0));
        proto_msg_free(&cmd);
        assert_int_equal(r[i].ends, 1);
    }
    exec_ok(fx, &m, &r[4]);
    expect_type(mid, MSG_KUBECTL_COMMAND, &cmd);
    send_text(mid, proto_enc_command_response(cmd.command_id, 1, "ok", 2, "", 0));
    proto_msg_free(&cmd);
    assert_int_equal(r[4].ends, 1);
    expect_no_frame(old);
    /* a v2 session of the cluster: the least loaded of it and the newest legacy one */
    tunnel_session *v2 = connect_as(fx, fx->hub, &m, 2, 0);
    exec_ok(fx, &m, &r[5]);
    assert_int_not_equal(sent_exec(v2), 0);
    exec_ok(fx, &m, &r[6]);
    expect_type(mid, MSG_KUBECTL_COMMAND, NULL);
    expect_no_frame(old);
    tunnel_session_drop(v2);
    tunnel_session_drop(mid);
    tunnel_session_drop(old);
    assert_int_equal(r[0].ends + r[1].ends + r[2].ends + r[3].ends + r[4].ends + r[5].ends +
                         r[6].ends,
                     7);
}

/* A legacy agent gets one command at a time (the Python agent reads the next
 * only once it answered); those waiting behind it move to a newer
 * connection of the cluster, as the old one may be dead without a word. */
static void test_held_legacy_commands_move_to_a_newer_connection(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *old = connect_as(fx, fx->hub, &m, 0, 0);
    sink_rec r[3] = { { 0 } };
    for (int i = 0; i < 3; i++)
        exec_ok(fx, &m, &r[i]);
    proto_msg cmd;
    expect_type(old, MSG_KUBECTL_COMMAND, &cmd);
    proto_msg_free(&cmd);
    expect_no_frame(old);
    tunnel_session *fresh = connect_as(fx, fx->hub, &m, 0, 0);
    for (int i = 1; i < 3; i++) {
        expect_type(fresh, MSG_KUBECTL_COMMAND, &cmd);
        expect_no_frame(fresh);
        send_text(fresh, proto_enc_command_response(cmd.command_id, 1, "ok", 2, "", 0));
        proto_msg_free(&cmd);
        assert_int_equal(r[i].ends, 1);
        assert_int_equal(r[i].return_code, 0);
    }
    expect_no_frame(old);
    assert_int_equal(r[0].ends, 0); /* the old one's until it answers, ends or times out */
    tunnel_session_drop(fresh);
    tunnel_session_drop(old);
    assert_int_equal(r[0].ends, 1);
}

/* Of a cluster's legacy connections only the newest takes commands, over
 * every replica: one here steps aside while another replica says a newer
 * one is up there (older ones change nothing), what it holds unsent moves
 * on (here: nowhere, so it fails as never sent), and it takes commands
 * again once the newest it heard of ended, not when an older one did. */
static void test_legacy_steps_aside_for_a_newer_one_elsewhere(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *l = connect_as(fx, fx->hub, &m, 0, 0);
    int64_t now_ms = (int64_t)time(NULL) * 1000;
    const char *org = m.t.org_id, *cid = m.t.cluster_id;
    sink_rec r[4] = { { 0 } };
    char err[256];
    tunnel_legacy_elsewhere(fx->hub, org, cid, "replica-x", "", now_ms - 600000, 1, TUNNEL_LEGACY_ASIDE_RENEWALS);
    exec_ok(fx, &m, &r[0]); /* an older one elsewhere: still this one */
    proto_msg cmd;
    expect_type(l, MSG_KUBECTL_COMMAND, &cmd);
    exec_ok(fx, &m, &r[1]); /* held behind it */
    tunnel_legacy_elsewhere(fx->hub, org, cid, "replica-y", "", now_ms + 600000, 1, TUNNEL_LEGACY_ASIDE_RENEWALS);
    assert_int_equal(r[1].ends, 1);
    assert_int_equal(r[1].http_status, 503);
    assert_null(exec_ex(fx->hub, org, cid, "kubectl", 30, &r[2], err, sizeof(err)));
    /* what it runs is still answered */
    send_text(l, proto_enc_command_response(cmd.command_id, 1, "ok", 2, "", 0));
    proto_msg_free(&cmd);
    assert_int_equal(r[0].ends, 1);
    assert_int_equal(r[0].return_code, 0);
    /* a newer one still; the one before it ending changes nothing */
    tunnel_legacy_elsewhere(fx->hub, org, cid, "replica-z", "", now_ms + 700000, 1, TUNNEL_LEGACY_ASIDE_RENEWALS);
    tunnel_legacy_elsewhere(fx->hub, org, cid, "replica-y", "", now_ms + 600000, 0, TUNNEL_LEGACY_ASIDE_RENEWALS);
    assert_null(exec_ex(fx->hub, org, cid, "kubectl", 30, &r[2], err, sizeof(err)));
    tunnel_legacy_elsewhere(fx->hub, "org-other", cid, "replica-z", "", now_ms + 700000, 0, TUNNEL_LEGACY_ASIDE_RENEWALS);
    assert_null(exec_ex(fx->hub, org, cid, "kubectl", 30, &r[2], err, sizeof(err)));
    tunnel_legacy_elsewhere(fx->hub, org, cid, "replica-z", "", now_ms + 700000, 0, TUNNEL_LEGACY_ASIDE_RENEWALS);
    exec_ok(fx, &m, &r[3]);
    expect_type(l, MSG_KUBECTL_COMMAND, &cmd);
    send_text(l, proto_enc_command_response(cmd.command_id, 1, "ok", 2, "", 0));
    proto_msg_free(&cmd);
    assert_int_equal(r[3].ends, 1);
    /* Redis was away (its end may have been missed): forgotten on a resync
     * of this replica's own, and when the replica that announced it asks
     * again (it announces again what it still holds), not another's */
    tunnel_legacy_elsewhere(fx->hub, org, cid, "replica-w", "", now_ms + 800000, 1, TUNNEL_LEGACY_ASIDE_RENEWALS);
    tunnel_legacy_resync(fx->hub, 0, NULL);
    assert_null(exec_ex(fx->hub, org, cid, "kubectl", 30, &r[2], err, sizeof(err)));
    tunnel_legacy_resync(fx->hub, 1, "replica-v");
    assert_null(exec_ex(fx->hub, org, cid, "kubectl", 30, &r[2], err, sizeof(err)));
    tunnel_legacy_resync(fx->hub, 1, "replica-w");
    exec_ok(fx, &m, &r[2]);
    expect_type(l, MSG_KUBECTL_COMMAND, &cmd);
    send_text(l, proto_enc_command_response(cmd.command_id, 1, "ok", 2, "", 0));
    proto_msg_free(&cmd);
    assert_int_equal(r[2].ends, 1);
    tunnel_legacy_elsewhere(fx->hub, org, cid, "replica-w", "", now_ms + 800000, 1, TUNNEL_LEGACY_ASIDE_RENEWALS);
    assert_null(exec_ex(fx->hub, org, cid, "kubectl", 30, &r[2], err, sizeof(err)));
    tunnel_legacy_resync(fx->hub, 1, NULL);
    sink_rec last = { 0 };
    exec_ok(fx, &m, &last);
    expect_type(l, MSG_KUBECTL_COMMAND, NULL);
    tunnel_session_drop(l);
    assert_int_equal(last.ends, 1);
}

/* Stepping aside lapses unless renewed: a replica SIGKILLed with the newer
 * legacy connection never publishes its end, and the one here took no
 * command for as long as it lived.  Each announcement of that connection
 * again restarts the count of this replica's renewals; one that is not
 * announced again for TUNNEL_LEGACY_ASIDE_RENEWALS of them is given up.  An
 * announcement of another connection (older than the one it stepped aside
 * for) renews nothing. */
static void test_legacy_stepping_aside_lapses_unless_announced_again(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *l = connect_as(fx, fx->hub, &m, 0, 0);
    int64_t now_ms = (int64_t)time(NULL) * 1000;
    const char *org = m.t.org_id, *cid = m.t.cluster_id;
    sink_rec r = { 0 };
    char err[256];
    tunnel_legacy_elsewhere(fx->hub, org, cid, "replica-y", "", now_ms + 600000, 1, TUNNEL_LEGACY_ASIDE_RENEWALS);
    assert_null(exec_ex(fx->hub, org, cid, "kubectl", 30, &r, err, sizeof(err)));
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < TUNNEL_LEGACY_ASIDE_RENEWALS - 1; i++) {
            tunnel_legacy_renew(fx->hub, 0);
            assert_null(exec_ex(fx->hub, org, cid, "kubectl", 30, &r, err, sizeof(err)));
        }
        if (round == 0) /* announced again */
            tunnel_legacy_elsewhere(fx->hub, org, cid, "replica-y", "", now_ms + 600000, 1, TUNNEL_LEGACY_ASIDE_RENEWALS);
        else if (round == 1) /* a newer one: aside for that one, counted afresh */
            tunnel_legacy_elsewhere(fx->hub, org, cid, "replica-z", "", now_ms + 700000, 1, TUNNEL_LEGACY_ASIDE_RENEWALS);
        else /* the older one says it is up: not what it stepped aside for */
            tunnel_legacy_elsewhere(fx->hub, org, cid, "replica-y", "", now_ms + 600000, 1, TUNNEL_LEGACY_ASIDE_RENEWALS);
    }
    tunnel_legacy_renew(fx->hub, 0);
    exec_ok(fx, &m, &r);
    proto_msg cmd;
    expect_type(l, MSG_KUBECTL_COMMAND, &cmd);
    send_text(l, proto_enc_command_response(cmd.command_id, 1, "ok", 2, "", 0));
    proto_msg_free(&cmd);
    assert_int_equal(r.ends, 1);
    assert_int_equal(r.return_code, 0);
    /* taking commands, it counts nothing: renewals leave it so */
    for (int i = 0; i < 2 * TUNNEL_LEGACY_ASIDE_RENEWALS; i++)
        tunnel_legacy_renew(fx->hub, 0);
    sink_rec last = { 0 };
    exec_ok(fx, &m, &last);
    expect_type(l, MSG_KUBECTL_COMMAND, NULL);
    tunnel_session_drop(l);
    assert_int_equal(last.ends, 1);
}

/* The announcer renews less often than this replica (a longer
 * AURORA_REGISTRY_LEASE_S): the count of this replica's renewals it waits
 * is the one its announcement set (registry_aside_renewals), renewed by
 * each announcement, not TUNNEL_LEGACY_ASIDE_RENEWALS, which gave it up
 * while its announcements still came, and two connections of the cluster
 * took commands. */
static void test_legacy_stepping_aside_waits_the_announcers_renewals(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *l = connect_as(fx, fx->hub, &m, 0, 0);
    int64_t now_ms = (int64_t)time(NULL) * 1000;
    const char *org = m.t.org_id, *cid = m.t.cluster_id;
    sink_rec r = { 0 };
    char err[256];
    const int slow = 3 * TUNNEL_LEGACY_ASIDE_RENEWALS + 1;
    tunnel_legacy_elsewhere(fx->hub, org, cid, "replica-y", "", now_ms + 600000, 1, slow);
    for (int i = 0; i < slow - 1; i++) {
        tunnel_legacy_renew(fx->hub, 0);
        assert_null(exec_ex(fx->hub, org, cid, "kubectl", 30, &r, err, sizeof(err)));
    }
    /* announced again, by then renewing as often as this replica */
    tunnel_legacy_elsewhere(fx->hub, org, cid, "replica-y", "", now_ms + 600000, 1,
                            TUNNEL_LEGACY_ASIDE_RENEWALS);
    for (int i = 0; i < TUNNEL_LEGACY_ASIDE_RENEWALS - 1; i++) {
        tunnel_legacy_renew(fx->hub, 0);
        assert_null(exec_ex(fx->hub, org, cid, "kubectl", 30, &r, err, sizeof(err)));
    }
    tunnel_legacy_renew(fx->hub, 0);
    exec_ok(fx, &m, &r);
    proto_msg cmd;
    expect_type(l, MSG_KUBECTL_COMMAND, &cmd);
    send_text(l, proto_enc_command_response(cmd.command_id, 1, "ok", 2, "", 0));
    proto_msg_free(&cmd);
    assert_int_equal(r.ends, 1);
    assert_int_equal(r.return_code, 0);
    tunnel_session_drop(l);
}

/* Redis away, no replica hears another: the renewals' time still counts
 * (registry.c), and a session stepped aside takes commands again once the
 * lease ran out, as each replica serves the agents it holds (it stayed
 * aside for the whole outage); an announcement heard before Redis went
 * restarts the count as ever, and once Redis is back it steps aside again. */
static void test_legacy_stepping_aside_lapses_with_redis_away(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *l = connect_as(fx, fx->hub, &m, 0, 0);
    int64_t now_ms = (int64_t)time(NULL) * 1000;
    const char *org = m.t.org_id, *cid = m.t.cluster_id;
    sink_rec r = { 0 };
    char err[256];
    tunnel_legacy_elsewhere(fx->hub, org, cid, "replica-y", "", now_ms + 600000, 1, TUNNEL_LEGACY_ASIDE_RENEWALS);
    tunnel_legacy_renew(fx->hub, 0);
    tunnel_legacy_elsewhere(fx->hub, org, cid, "replica-y", "", now_ms + 600000, 1, TUNNEL_LEGACY_ASIDE_RENEWALS);
    for (int i = 0; i < TUNNEL_LEGACY_ASIDE_RENEWALS - 1; i++) {
        tunnel_legacy_renew(fx->hub, 1);
        assert_null(exec_ex(fx->hub, org, cid, "kubectl", 30, &r, err, sizeof(err)));
    }
    tunnel_legacy_renew(fx->hub, 1);
    exec_ok(fx, &m, &r);
    proto_msg cmd;
    expect_type(l, MSG_KUBECTL_COMMAND, &cmd);
    send_text(l, proto_enc_command_response(cmd.command_id, 1, "ok", 2, "", 0));
    proto_msg_free(&cmd);
    assert_int_equal(r.ends, 1);
    assert_int_equal(r.return_code, 0);
    tunnel_legacy_resync(fx->hub, 1, NULL);
    tunnel_legacy_elsewhere(fx->hub, org, cid, "replica-y", "", now_ms + 600000, 1, TUNNEL_LEGACY_ASIDE_RENEWALS);
    assert_null(exec_ex(fx->hub, org, cid, "kubectl", 30, &r, err, sizeof(err)));
    tunnel_session_drop(l);
}

/* A forwarder standing in for forward.c's: it records what it was asked
 * and takes the request over (or refuses it). */
typedef struct {
    int calls, refuse;
    char addr[64], user[64], command[128], argv[128];
    double timeout;
    int64_t max_output;
    tunnel_req *r[4]; /* taken over, in order */
    int nr;
    int consumed, abandoned;
} fake_fwd;
static fake_fwd g_fwd;

static void fake_consumed(void *rctx, size_t n)
{
    (void)rctx;
    g_fwd.consumed += (int)n;
}

static void fake_abandon(void *rctx)
{
    (void)rctx;
    g_fwd.abandoned++;
}

static const tunnel_remote_ops g_fake_ops = { fake_consumed, fake_abandon };

static int fake_forward(const char *addr, const tunnel_exec_params *p, tunnel_req *r)
{
    g_fwd.calls++;
    if (g_fwd.refuse)
        return -1;
    snprintf(g_fwd.addr, sizeof(g_fwd.addr), "%s", addr);
    snprintf(g_fwd.user, sizeof(g_fwd.user), "%s", p->user_id ? p->user_id : "");
    snprintf(g_fwd.command, sizeof(g_fwd.command), "%s",
             p->legacy_command ? p->legacy_command : "");
    g_fwd.argv[0] = '\0';
    for (int i = 0; i < p->argv->c; i++)
        snprintf(g_fwd.argv + strlen(g_fwd.argv), sizeof(g_fwd.argv) - strlen(g_fwd.argv),
                 "%s%s", i ? "|" : "", p->argv->v[i]);
    g_fwd.timeout = p->timeout;
    g_fwd.max_output = p->max_output;
    assert_true(g_fwd.nr < 4);
    g_fwd.r[g_fwd.nr++] = r;
    tunnel_req_set_remote(r, &g_fake_ops, &g_fwd);
    return 0;
}

/* What a legacy session that steps aside for a newer connection on another
 * replica holds unsent, with no other session here to take it, is forwarded
 * to that replica (its internal address, from the announcement) rather than
 * failed as never run: the caller's argv and command string, its user, its
 * max_output and the time it has left; its caller gets the end from there,
 * once, and its deadline here no longer applies.  Without an address, or
 * when the forward cannot start, it fails as before (503, did not run). */
static int past(void *arg) { return hub_loop_now_ms() >= *(const int64_t *)arg; }

static void test_stepping_aside_forwards_what_it_held(void **state)
{
    fixture *fx = *state;
    memset(&g_fwd, 0, sizeof(g_fwd));
    tunnel_hub_opts o = { .cfg = &fx->cfg, .lws = fx->lws, .pool = fx->pool,
                          .deadline_grace = 0.05, .forward = fake_forward };
    tunnel_hub *h = tunnel_hub_new(&o);
    assert_non_null(h);
    made_token m = new_token(fx, fx->org_id, 0);
    const char *org = m.t.org_id, *cid = m.t.cluster_id;
    static const char *const args[] = { "get", "pods", "-l", "app=a b" };
    argv_t a = { 0 };
    char aerr[64], err[256] = "";
    assert_int_equal(argv_from_strings(args, 4, &a, aerr, sizeof(aerr)), 0);
    tunnel_exec_params p = { .org_id = org, .cluster_id = cid, .user_id = "user-1",
                             .kind = "kubectl", .argv = &a,
                             .legacy_command = "get pods -l \"app=a b\"", .timeout = 30,
                             .max_output = 4321 };
    tunnel_session *l = connect_as(fx, h, &m, 0, 0);
    sink_rec r0 = { 0 }, r1 = { 0 }, r2 = { 0 };
    assert_non_null(tunnel_exec(h, &p, &g_sink, &r0, err, sizeof(err)));
    assert_non_null(tunnel_exec(h, &p, &g_sink, &r1, err, sizeof(err)));
    p.timeout = 1.5; /* forwarded, then its deadline here would fire: it must not */
    assert_non_null(tunnel_exec(h, &p, &g_sink, &r2, err, sizeof(err)));
    proto_msg cmd;
    expect_type(l, MSG_KUBECTL_COMMAND, &cmd);
    expect_no_frame(l);
    int64_t wall_ms = (int64_t)time(NULL) * 1000;
    tunnel_legacy_elsewhere(h, org, cid, "replica-y", "10.0.0.7:5080", wall_ms + 600000, 1, TUNNEL_LEGACY_ASIDE_RENEWALS);
    if (r1.ends || r2.ends)
        fail_msg("held commands failed instead of being forwarded: %d %s: %s", r1.http_status,
                 r1.error_code, r1.error);
    assert_int_equal(g_fwd.calls, 2);
    assert_int_equal(g_fwd.nr, 2);
    assert_string_equal(g_fwd.addr, "10.0.0.7:5080");
    assert_string_equal(g_fwd.user, "user-1");
    assert_string_equal(g_fwd.command, "get pods -l \"app=a b\"");
    assert_string_equal(g_fwd.argv, "get|pods|-l|app=a b");
    assert_int_equal(g_fwd.max_output, 4321);
    assert_true(g_fwd.timeout == 1 || g_fwd.timeout == 1.5); /* r2's: whole seconds left */
    expect_no_frame(l);
    /* r2's deadline here (1.5 s + grace) passes: only the forwarder ends it */
    tunnel_req *fr1 = g_fwd.r[0], *fr2 = g_fwd.r[1];
    int64_t later = hub_loop_now_ms() + 1800;
    serve_until(fx, past, &later, "r2's deadline here to pass");
    assert_int_equal(r2.ends, 0);
    tunnel_req_consumed(fr2, 7);
    assert_int_equal(g_fwd.consumed, 7);
    tunnel_req_remote_data(fr2, PROTO_CHAN_STDOUT, (const unsigned char *)"pods", 4);
    tunnel_result ok = { .return_code = 0, .error = "" };
    tunnel_req_remote_end(fr2, &ok);
    assert_int_equal(r2.ends, 1);
    assert_int_equal(r2.failed, 0);
    assert_int_equal(r2.ndata, 4);
    assert_int_equal(r1.ends, 0); /* the first forwarded: its caller leaves */
    tunnel_req_abandon(fr1);
    assert_int_equal(g_fwd.abandoned, 1);
    assert_int_equal(r1.ends, 0);
    /* what it ran is still answered here */
    send_text(l, proto_enc_command_response(cmd.command_id, 1, "ok", 2, "", 0));
    proto_msg_free(&cmd);
    assert_int_equal(r0.ends, 1);
    assert_int_equal(r0.return_code, 0);
    tunnel_legacy_elsewhere(h, org, cid, "replica-y", "10.0.0.7:5080", wall_ms + 600000, 0, TUNNEL_LEGACY_ASIDE_RENEWALS);

    /* no address named, or a forward that cannot start: 503, did not run */
    for (int refuse = 0; refuse < 2; refuse++) {
        sink_rec q0 = { 0 }, q1 = { 0 };
        p.timeout = 30;
        assert_non_null(tunnel_exec(h, &p, &g_sink, &q0, err, sizeof(err)));
        assert_non_null(tunnel_exec(h, &p, &g_sink, &q1, err, sizeof(err)));
        expect_type(l, MSG_KUBECTL_COMMAND, &cmd);
        g_fwd.refuse = refuse;
        g_fwd.calls = 0;
        tunnel_legacy_elsewhere(h, org, cid, "replica-z", refuse ? "10.0.0.8:5080" : "",
                                wall_ms + 700000, 1, TUNNEL_LEGACY_ASIDE_RENEWALS);
        assert_int_equal(g_fwd.calls, refuse);
        assert_int_equal(q1.ends, 1);
        assert_int_equal(q1.http_status, 503);
        assert_string_equal(q1.error_code, EC_AGENT_NOT_CONNECTED);
        send_text(l, proto_enc_command_response(cmd.command_id, 1, "ok", 2, "", 0));
        proto_msg_free(&cmd);
        assert_int_equal(q0.ends, 1);
        tunnel_legacy_elsewhere(h, org, cid, "replica-z", "", wall_ms + 700000, 0, TUNNEL_LEGACY_ASIDE_RENEWALS);
    }
    argv_free(&a);
    tunnel_session_drop(l);
    tunnel_hub_free(h);
}

/* A forwarded command that did not run, whose agent has a session here now
 * (forward.c's retry, again_here): the caller's remote request becomes that
 * session's, under tunnel_exec's rules.  No session, a legacy one for
 * cloud_exec, or a legacy one stepped aside for a newer one elsewhere take
 * nothing (the request stays the forwarder's: its credit still goes there);
 * a legacy one busy with a command holds it until that one is answered,
 * then sends it; a v2 one runs it at once, credentials included, and the
 * caller's credit and abandon go to that agent from then on. */
static void test_remote_request_runs_here(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    const char *org = m.t.org_id, *cid = m.t.cluster_id;
    memset(&g_fwd, 0, sizeof(g_fwd));
    static const char *const args[] = { "get", "pods" };
    static const char *const env[] = { "AWS_SECRET_ACCESS_KEY=s3cr3t" };
    argv_t a = { 0 };
    char err[256];
    assert_int_equal(argv_from_strings(args, 2, &a, err, sizeof(err)), 0);
    tunnel_exec_params kp = { .org_id = org, .cluster_id = cid, .kind = "kubectl", .argv = &a,
                              .timeout = 7, .max_output = 1 << 20 };
    tunnel_exec_params cp = kp;
    cp.kind = "cloud_exec";
    cp.program = "aws";
    cp.env = env;
    cp.nenv = 1;
    sink_rec rec = { 0 };
    tunnel_req *r = tunnel_req_remote(&g_sink, &rec, &g_fake_ops, &g_fwd);
    assert_non_null(r);
    assert_int_equal(tunnel_req_run_here(fx->hub, r, &kp, err, sizeof(err)), -1);
    tunnel_req_consumed(r, 3); /* still the forwarder's */
    assert_int_equal(g_fwd.consumed, 3);
    tunnel_session *l = connect_as(fx, fx->hub, &m, 0, 0);
    assert_int_equal(tunnel_req_run_here(fx->hub, r, &cp, err, sizeof(err)), -1);
    int64_t now = (int64_t)time(NULL) * 1000;
    tunnel_legacy_elsewhere(fx->hub, org, cid, "replica-y", "", now + 600000, 1, TUNNEL_LEGACY_ASIDE_RENEWALS);
    assert_int_equal(tunnel_req_run_here(fx->hub, r, &kp, err, sizeof(err)), -1);
    tunnel_legacy_elsewhere(fx->hub, org, cid, "replica-y", "", now + 600000, 0, TUNNEL_LEGACY_ASIDE_RENEWALS);
    expect_no_frame(l);
    /* the legacy session is busy: held, sent once it answered */
    sink_rec first = { 0 };
    exec_ok(fx, &m, &first);
    proto_msg cmd;
    expect_type(l, MSG_KUBECTL_COMMAND, &cmd);
    assert_int_equal(tunnel_req_run_here(fx->hub, r, &kp, err, sizeof(err)), 0);
    expect_no_frame(l);
    send_text(l, proto_enc_command_response(cmd.command_id, 1, "ok", 2, "", 0));
    proto_msg_free(&cmd);
    assert_int_equal(first.ends, 1);
    expect_type(l, MSG_KUBECTL_COMMAND, &cmd);
    assert_string_equal(cmd.command, "get pods");
    assert_true(cmd.timeout >= 1 && cmd.timeout <= 7);
    send_text(l, proto_enc_command_response(cmd.command_id, 1, "here", 4, "", 0));
    proto_msg_free(&cmd);
    assert_int_equal(rec.ends, 1);
    assert_int_equal(rec.return_code, 0);
    assert_int_equal(rec.ndata, 4);
    assert_memory_equal(rec.data, "here", 4);
    /* a v2 session: at once, with the credentials; credit and cancel to it */
    tunnel_session *v = connect_as(fx, fx->hub, &m, 2, 0);
    sink_rec rec2 = { 0 };
    r = tunnel_req_remote(&g_sink, &rec2, &g_fake_ops, &g_fwd);
    assert_non_null(r);
    assert_int_equal(tunnel_req_run_here(fx->hub, r, &cp, err, sizeof(err)), 0);
    proto_msg e;
    expect_type(v, MSG_EXEC, &e);
    assert_string_equal(e.kind, "cloud_exec");
    assert_string_equal(e.program, "aws");
    assert_int_equal(e.nenv, 1);
    assert_string_equal(e.env[0], env[0]);
    assert_int_equal(e.timeout, 7);
    send_data(v, e.id, PROTO_CHAN_STDOUT, 600, 'a');
    assert_int_equal(rec2.ndata, 600);
    tunnel_req_consumed(r, 600);
    expect_type(v, MSG_CREDIT, NULL);
    tunnel_req_abandon(r);
    expect_type(v, MSG_CANCEL, NULL);
    send_exec_end(v, e.id, 0);
    proto_msg_free(&e);
    assert_int_equal(rec2.ends, 0); /* abandoned: no callback */
    assert_int_equal(g_fwd.consumed, 3);
    assert_int_equal(g_fwd.abandoned, 0);
    expect_no_frame(l);
    argv_free(&a);
    tunnel_session_drop(v);
    tunnel_session_drop(l);
}

/* Two legacy connections of the cluster here, both older than one another
 * replica announces: the newer one here runs a command with one held
 * behind it, the older one (a connection its agent left without a word)
 * is idle.  Both step aside; what the newer one held goes to the replica
 * announcing the newest, never to the older connection here, which was
 * stepping aside too (the held command ran there, or waited there for its
 * deadline on a dead connection). */
static void test_stepping_aside_skips_an_older_one_here(void **state)
{
    fixture *fx = *state;
    memset(&g_fwd, 0, sizeof(g_fwd));
    tunnel_hub_opts o = { .cfg = &fx->cfg, .lws = fx->lws, .pool = fx->pool,
                          .deadline_grace = 0.05, .forward = fake_forward };
    tunnel_hub *h = tunnel_hub_new(&o);
    assert_non_null(h);
    made_token m = new_token(fx, fx->org_id, 0);
    const char *org = m.t.org_id, *cid = m.t.cluster_id;
    tunnel_session *old = connect_as(fx, h, &m, 0, 0);
    tunnel_session *fresh = connect_as(fx, h, &m, 0, 0);
    sink_rec r0 = { 0 }, r1 = { 0 };
    char err[256] = "";
    assert_non_null(exec_ex(h, org, cid, "kubectl", 30, &r0, err, sizeof(err)));
    assert_non_null(exec_ex(h, org, cid, "kubectl", 30, &r1, err, sizeof(err)));
    proto_msg cmd;
    expect_type(fresh, MSG_KUBECTL_COMMAND, &cmd);
    expect_no_frame(fresh);
    expect_no_frame(old);
    int64_t wall_ms = (int64_t)time(NULL) * 1000;
    tunnel_legacy_elsewhere(h, org, cid, "replica-y", "10.0.0.7:5080", wall_ms + 600000, 1, TUNNEL_LEGACY_ASIDE_RENEWALS);
    expect_no_frame(old);
    assert_int_equal(g_fwd.nr, 1);
    assert_string_equal(g_fwd.addr, "10.0.0.7:5080");
    assert_int_equal(r1.ends, 0);
    tunnel_result ok = { .return_code = 0, .error = "" };
    tunnel_req_remote_end(g_fwd.r[0], &ok);
    assert_int_equal(r1.ends, 1);
    assert_int_equal(r1.failed, 0);
    send_text(fresh, proto_enc_command_response(cmd.command_id, 1, "ok", 2, "", 0));
    proto_msg_free(&cmd);
    assert_int_equal(r0.ends, 1);
    tunnel_session_drop(fresh);
    tunnel_session_drop(old);
    tunnel_hub_free(h);
}

/* A wall clock the test steps (a legacy session's ready time is read from
 * the wall clock, which NTP or an operator may step back). */
static int64_t g_wall_ms;
static int64_t fake_wall_ms(void) { return g_wall_ms; }

/* The wall clock stepped back between two legacy connections of a cluster
 * here: the newer one still ranks newer, here and for the other replicas.
 * Ranked by its earlier wall-clock time, a connection another replica
 * announced as made in between outranked the newer one but not the older:
 * the newer one stepped aside and the older one, maybe dead without a
 * word, took the cluster's commands. */
static void test_legacy_rank_survives_a_clock_stepped_back(void **state)
{
    fixture *fx = *state;
    tunnel_hub_opts o = { .cfg = &fx->cfg, .lws = fx->lws, .pool = fx->pool,
                          .deadline_grace = 0.05, .wall_ms = fake_wall_ms };
    tunnel_hub *h = tunnel_hub_new(&o);
    assert_non_null(h);
    made_token m = new_token(fx, fx->org_id, 0);
    const char *org = m.t.org_id, *cid = m.t.cluster_id;
    g_wall_ms = (int64_t)time(NULL) * 1000;
    tunnel_session *old = connect_as(fx, h, &m, 0, 0);
    g_wall_ms -= 60000; /* stepped back a minute */
    tunnel_session *fresh = connect_as(fx, h, &m, 0, 0);
    /* another replica's, made between the two by its own clock */
    tunnel_legacy_elsewhere(h, org, cid, "replica-y", "", g_wall_ms + 30000, 1, TUNNEL_LEGACY_ASIDE_RENEWALS);
    sink_rec r = { 0 };
    char err[256] = "";
    assert_non_null(exec_ex(h, org, cid, "kubectl", 30, &r, err, sizeof(err)));
    expect_no_frame(old);
    proto_msg cmd;
    expect_type(fresh, MSG_KUBECTL_COMMAND, &cmd);
    send_text(fresh, proto_enc_command_response(cmd.command_id, 1, "ok", 2, "", 0));
    proto_msg_free(&cmd);
    assert_int_equal(r.ends, 1);
    assert_int_equal(r.return_code, 0);
    tunnel_session_drop(fresh);
    tunnel_session_drop(old);
    tunnel_hub_free(h);
}

/* The deployed Python agent's command_response, as its json.dumps writes
 * it: subprocess's return code is -N for a kubectl killed by signal N (the
 * OOM killer, a pod shutdown), which the caller gets as the exit status a
 * v2 agent reports for it, 128 + N, not as a plain failure (1); a timeout
 * has no output and 124; error null on success; no return_code at all
 * falls back to success. */
static void test_legacy_return_codes(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *legacy = connect_as(fx, fx->hub, &m, 0, 0);
    static const struct {
        const char *tail; /* after "command_id": ... */
        int rc;
        const char *error_code;
    } cases[] = {
        { "\"success\": false, \"output\": \"\", \"error\": \"\", \"return_code\": -9}", 137, "" },
        { "\"success\": false, \"output\": \"\", \"error\": \"\", \"return_code\": -15}", 143, "" },
        { "\"success\": false, \"output\": \"\", \"error\": \"\", \"return_code\": -1}", 129, "" },
        { "\"success\": false, \"error\": \"Command timed out after 5 seconds\", "
          "\"return_code\": 124}", 124, EC_TIMEOUT },
        { "\"success\": true, \"output\": \"ok\", \"error\": null, \"return_code\": 0}", 0, "" },
        { "\"success\": false, \"output\": \"\", \"error\": \"x\", \"return_code\": 2}", 2, "" },
        { "\"success\": false, \"error\": \"boom\"}", 1, "" },
        { "\"success\": true, \"output\": \"ok\"}", 0, "" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sink_rec r = { 0 };
        exec_ok(fx, &m, &r);
        proto_msg cmd;
        expect_type(legacy, MSG_KUBECTL_COMMAND, &cmd);
        char f[512];
        snprintf(f, sizeof(f), "{\"type\": \"command_response\", \"command_id\": \"%s\", %s",
                 cmd.command_id, cases[i].tail);
        proto_msg_free(&cmd);
        tunnel_session_receive(legacy, f, strlen(f), 0);
        assert_int_equal(r.ends, 1);
        if (r.return_code != cases[i].rc)
            fail_msg("case %zu: return code %d, want %d", i, r.return_code, cases[i].rc);
        assert_string_equal(r.error_code, cases[i].error_code);
    }
    tunnel_session_drop(legacy);
}

/* Closing by token ends only that token's sessions. */
static void test_close_by_token(void **state)
{
    fixture *fx = *state;
    made_token a = new_token(fx, fx->org_id, 0), b = new_token(fx, fx->org_id, 0);
    tunnel_session *sa = connect_as(fx, fx->hub, &a, 2, 0);
    tunnel_session *sb = connect_as(fx, fx->hub, &b, 2, 0);
    assert_int_equal(tunnel_close_sessions(fx->hub, fx->org_id, a.t.cluster_id, b.t.id, "x"), 0);
    assert_int_equal(tunnel_close_sessions(fx->hub, fx->org2_id, a.t.cluster_id, NULL, "x"), 0);
    assert_int_equal(
        tunnel_close_sessions(fx->hub, fx->org_id, a.t.cluster_id, a.t.id, "Token revoked"), 1);
    expect_closed(sa, PROTO_CLOSE_POLICY, "Token revoked");
    assert_true(tunnel_session_ready(sb));
    /* A closing session sends nothing more (a heartbeat gets no answer). */
    send_text(sa, proto_enc_heartbeat(a.t.cluster_id));
    expect_no_frame(sa);
    tunnel_session_drop(sa);
    assert_int_equal(tunnel_session_count(fx->hub), 1);
}

/* A message over the limit closes the session with 1009. */
static void test_oversized_message(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *s = connect_as(fx, fx->hub, &m, 2, 0);
    size_t n = PROTO_MAX_CONTROL + 1;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, ' ', n);
    tunnel_session_receive(s, big, n, 0);
    free(big);
    expect_closed(s, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "Message too big");
    /* Legacy sessions have their own (configured) limit. */
    made_token l = new_token(fx, fx->org_id, 0);
    tunnel_session *ls = connect_as(fx, fx->hub, &l, 0, 0);
    char *mid = malloc(fx->cfg.legacy_max_frame + 1);
    assert_non_null(mid);
    memset(mid, ' ', fx->cfg.legacy_max_frame + 1);
    tunnel_session_receive(ls, mid, fx->cfg.legacy_max_frame, 0); /* at the limit: fine */
    assert_true(tunnel_session_ready(ls));
    tunnel_session_receive(ls, mid, fx->cfg.legacy_max_frame + 1, 0);
    free(mid);
    expect_closed(ls, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "Message too big");
}

/* The server's shutdown tells a command its agent had from one it never
 * got: 502 COMMAND_INTERRUPTED (it may have run: a caller that retries it
 * may run it twice) against 503 SERVER_SHUTTING_DOWN (still queued here for
 * a free slot: it did not run, and is not sent when the slot frees). */
static void test_shutdown(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *s = connect_as(fx, fx->hub, &m, 2, 1);
    sink_rec r1 = { 0 }, r2 = { 0 };
    exec_ok(fx, &m, &r1);
    assert_int_not_equal(sent_exec(s), 0);
    exec_ok(fx, &m, &r2); /* the agent's one slot is taken: held here */
    expect_no_frame(s);
    tunnel_shutdown(fx->hub);
    assert_int_equal(r1.ends, 1);
    assert_int_equal(r1.http_status, 502);
    assert_string_equal(r1.error_code, "COMMAND_INTERRUPTED");
    assert_non_null(strstr(r1.error, "may have run"));
    assert_int_equal(r2.ends, 1);
    assert_int_equal(r2.http_status, 503);
    assert_string_equal(r2.error_code, "SERVER_SHUTTING_DOWN");
    assert_non_null(strstr(r2.error, "was not run"));
    expect_no_frame(s);
    expect_closed(s, LWS_CLOSE_STATUS_GOINGAWAY, "Server shutting down");
}

/* Two hubs share nothing: sessions, legacy ids, revocations. */
static void test_two_hubs(void **state)
{
    fixture *fx = *state;
    tunnel_hub *h2 = hub_new(fx, 0.05);
    made_token m = new_token(fx, fx->org_id, 0);
    tunnel_session *s1 = connect_as(fx, fx->hub, &m, 0, 0);
    tunnel_session *s2 = connect_as(fx, h2, &m, 0, 0);
    assert_int_equal(tunnel_session_count(fx->hub), 1);
    assert_int_equal(tunnel_session_count(h2), 1);
    sink_rec r1 = { 0 }, r2 = { 0 };
    char err[256];
    assert_non_null(exec_ex(fx->hub, m.t.org_id, m.t.cluster_id, "kubectl", 30, &r1, err,
                            sizeof(err)));
    assert_non_null(exec_ex(h2, m.t.org_id, m.t.cluster_id, "kubectl", 30, &r2, err,
                            sizeof(err)));
    proto_msg c1, c2;
    assert_true(pop_msg(s1, &c1));
    assert_true(pop_msg(s2, &c2));
    assert_string_equal(c1.command_id, "cmd-1");
    assert_string_equal(c2.command_id, "cmd-1");
    proto_msg_free(&c1);
    proto_msg_free(&c2);
    assert_int_equal(tunnel_close_sessions(h2, m.t.org_id, m.t.cluster_id, NULL, "bye"), 1);
    assert_true(tunnel_session_ready(s1));
    assert_int_equal(r1.ends, 0);
    tunnel_session_drop(s2);
    assert_int_equal(r2.ends, 1);
    assert_int_equal(r1.ends, 0);
    tunnel_hub_free(h2);
    assert_int_equal(tunnel_session_count(fx->hub), 1);
    tunnel_session_drop(s1);
    assert_int_equal(r1.ends, 1);
}

/* Big agent messages (a legacy agent's whole output is one) are assembled
 * AURORA_AGENT_ASSEMBLY_BUDGET / AURORA_LEGACY_MAX_FRAME at a time: here 4 MiB
 * / 4 MiB, one.  A second connection whose message grows past 1 MiB waits
 * (is not read) until the first message ends, then gets the slot; small
 * messages are never held up; a waiting connection that goes leaves the
 * queue; a holder that goes gives its slot on. */
static void test_big_messages_take_turns(void **state)
{
    fixture *fx = *state;
    int64_t frame = fx->cfg.legacy_max_frame, budget = fx->cfg.assembly_budget;
    fx->cfg.legacy_max_frame = 4 << 20;
    fx->cfg.assembly_budget = 4 << 20;
    tunnel_hub *h = hub_new(fx, 0.05);
    assert_int_equal(tunnel_hub_assembly_free(h), 1);
    made_token ma = new_token(fx, fx->org_id, 0), mb = new_token(fx, fx->org_id, 0),
               mc = new_token(fx, fx->org_id, 0);
    tunnel_session *a = connect_as(fx, h, &ma, 0, 0);
    tunnel_session *b = connect_as(fx, h, &mb, 0, 0);
    tunnel_session *c = connect_as(fx, h, &mc, 0, 0);
    /* each big message: a heartbeat padded with spaces past 1 MiB, in 2 parts */
    size_t part = (1 << 20) + 1;
    char *pad = malloc(part);
    assert_non_null(pad);
    memset(pad, ' ', part);
    char *hb_a = proto_enc_heartbeat(ma.t.cluster_id), *hb_b = proto_enc_heartbeat(mb.t.cluster_id);
    char *first_a = malloc(part), *first_b = malloc(part);
    assert_true(hb_a && hb_b && first_a && first_b);
    memcpy(first_a, pad, part);
    memcpy(first_a, hb_a, strlen(hb_a));
    memcpy(first_b, pad, part);
    memcpy(first_b, hb_b, strlen(hb_b));

    tunnel_session_receive_part(a, first_a, part, 1, 0, 0); /* a holds the slot */
    assert_int_equal(tunnel_hub_assembly_free(h), 0);
    assert_false(tunnel_session_assembly_waiting(a));
    tunnel_session_receive_part(b, first_b, part, 1, 0, 0); /* b waits */
    assert_true(tunnel_session_assembly_waiting(b));
    send_text(c, proto_enc_heartbeat(mc.t.cluster_id)); /* small: not held up */
    expect_type(c, MSG_HEARTBEAT_ACK, NULL);
    tunnel_session_receive_part(a, pad, 100, 0, 1, 0); /* a's message ends ... */
    expect_type(a, MSG_HEARTBEAT_ACK, NULL);
    assert_false(tunnel_session_assembly_waiting(b)); /* ... and b gets the slot */
    assert_int_equal(tunnel_hub_assembly_free(h), 0);
    tunnel_session_receive_part(b, pad, part, 0, 1, 0);
    expect_type(b, MSG_HEARTBEAT_ACK, NULL);
    assert_int_equal(tunnel_hub_assembly_free(h), 1);

    /* a waiting connection that goes leaves the queue; a holder that goes
     * gives its slot on */
    tunnel_session_receive_part(a, first_a, part, 1, 0, 0);
    tunnel_session_receive_part(b, first_b, part, 1, 0, 0);
    tunnel_session_receive_part(c, first_b, part, 1, 0, 0);
    assert_true(tunnel_session_assembly_waiting(b) && tunnel_session_assembly_waiting(c));
    tunnel_session_drop(b);
    tunnel_session_drop(a);
    assert_false(tunnel_session_assembly_waiting(c));
    assert_int_equal(tunnel_hub_assembly_free(h), 0);
    tunnel_session_drop(c);
    assert_int_equal(tunnel_hub_assembly_free(h), 1);

    free(hb_a);
    free(hb_b);
    free(first_a);
    free(first_b);
    free(pad);
    tunnel_hub_free(h);
    fx->cfg.legacy_max_frame = frame;
    fx->cfg.assembly_budget = budget;
}

/* The first part of a big message: a heartbeat padded with spaces to n bytes. */
static char *big_heartbeat(const char *cluster_id, size_t n)
{
    char *hb = proto_enc_heartbeat(cluster_id), *m = malloc(n);
    assert_true(hb && m && strlen(hb) < n);
    memset(m, ' ', n);
    memcpy(m, hb, strlen(hb));
    free(hb);
    return m;
}

/* The slots are shared fairly across organizations: a freed slot goes to
 * the waiting connection whose organization holds the fewest (the earliest
 * of those).  Org A's agents hold both slots and queue for more (as a tenant
 * trickling its big messages for 60 s each, reconnecting and queueing again
 * would); org B's big message gets the next slot that frees, however many of
 * A's connections queued first, and A still uses every slot when it is alone. */
static void test_big_message_slots_shared_across_orgs(void **state)
{
    fixture *fx = *state;
    int64_t frame = fx->cfg.legacy_max_frame, budget = fx->cfg.assembly_budget;
    fx->cfg.legacy_max_frame = 4 << 20;
    fx->cfg.assembly_budget = 8 << 20;
    tunnel_hub *h = hub_new(fx, 0.05);
    assert_int_equal(tunnel_hub_assembly_free(h), 2);
    enum { NA = 5 };
    made_token ma[NA], mb = new_token(fx, fx->org2_id, 0);
    tunnel_session *a[NA];
    for (int i = 0; i < NA; i++) {
        ma[i] = new_token(fx, fx->org_id, 0);
        a[i] = connect_as(fx, h, &ma[i], 0, 0);
    }
    tunnel_session *b = connect_as(fx, h, &mb, 0, 0);
    size_t part = (1 << 20) + 1;
    char *first_a[NA], *first_b = big_heartbeat(mb.t.cluster_id, part);
    for (int i = 0; i < NA; i++)
        first_a[i] = big_heartbeat(ma[i].t.cluster_id, part);

    /* alone, A takes every slot; then its others queue, and B behind them */
    for (int i = 0; i < NA; i++)
        tunnel_session_receive_part(a[i], first_a[i], part, 1, 0, 0);
    assert_int_equal(tunnel_hub_assembly_free(h), 0);
    assert_false(tunnel_session_assembly_waiting(a[0]) || tunnel_session_assembly_waiting(a[1]));
    for (int i = 2; i < NA; i++)
        assert_true(tunnel_session_assembly_waiting(a[i]));
    tunnel_session_receive_part(b, first_b, part, 1, 0, 0);
    assert_true(tunnel_session_assembly_waiting(b));

    /* a[0] is closed (as the 60 s cap closes a trickler): its slot goes to
     * B, not to A's queue */
    tunnel_session_drop(a[0]);
    assert_false(tunnel_session_assembly_waiting(b));
    for (int i = 2; i < NA; i++)
        assert_true(tunnel_session_assembly_waiting(a[i]));
    /* each org holds one: the next slot goes to A's earliest waiter */
    tunnel_session_receive_part(b, first_b + part - 100, 100, 0, 1, 0);
    expect_type(b, MSG_HEARTBEAT_ACK, NULL);
    assert_false(tunnel_session_assembly_waiting(a[2]));
    assert_true(tunnel_session_assembly_waiting(a[3]) && tunnel_session_assembly_waiting(a[4]));
    /* B queues again behind A's two: a slot A frees is B's once more */
    tunnel_session_receive_part(b, first_b, part, 1, 0, 0);
    assert_true(tunnel_session_assembly_waiting(b));
    tunnel_session_receive_part(a[1], first_b + part - 100, 100, 0, 1, 0);
    expect_type(a[1], MSG_HEARTBEAT_ACK, NULL);
    assert_false(tunnel_session_assembly_waiting(b));
    assert_true(tunnel_session_assembly_waiting(a[3]) && tunnel_session_assembly_waiting(a[4]));

    for (int i = 1; i < NA; i++)
        tunnel_session_drop(a[i]);
    tunnel_session_drop(b);
    assert_int_equal(tunnel_hub_assembly_free(h), 2);
    for (int i = 0; i < NA; i++)
        free(first_a[i]);
    free(first_b);
    tunnel_hub_free(h);
    fx->cfg.legacy_max_frame = frame;
    fx->cfg.assembly_budget = budget;
}

int main(void)
{
    log_setup("test", "error", "text");
    lws_set_log_level(LLL_ERR, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_authentication, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revocation_during_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_expiry_ends_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sessions_per_cluster_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_early_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_early_bytes_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_messages_take_turns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_message_slots_shared_across_orgs, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_registry_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_least_loaded_and_turns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_credit_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_above_max_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forged_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_response_abandoned_mid_output, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_frames_logged_sparingly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_register_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_text_escaped_in_logs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_end_duration_bounded_by_the_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_end_error_code_is_a_code, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_queue_bounded_in_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_at_a_time_until_register, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waiting_request_not_sent_to_a_full_queue, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_fails_only_its_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waiting_requests_move_on_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waiting_request_meets_full_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_return_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_legacy_commands_move_to_a_v2_agent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_held_legacy_commands_move_to_a_newer_connection,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_stepping_aside_forwards_what_it_held, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_remote_request_runs_here, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stepping_aside_skips_an_older_one_here, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_legacy_rank_survives_a_clock_stepped_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_legacy_steps_aside_for_a_newer_one_elsewhere,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_stepping_aside_lapses_unless_announced_again,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_stepping_aside_waits_the_announcers_renewals,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_stepping_aside_lapses_with_redis_away, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_newest_legacy_session_takes_the_commands, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_waiting_requests_move_across_dialects, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reconnection_supersedes_dead_session, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_close_by_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_hubs, setup, teardown),
    };
    return cmocka_run_group_tests_name("server_tunnel", tests, NULL, NULL);
}
