/* test_server_forward_retry.c — the one retry of a forwarded command
 * (server/forward.c): the replica it was forwarded to answers that it did
 * not run it (503 AGENT_NOT_CONNECTED: the agent left it) while the agent
 * now has a session on this replica, so the command runs on that session
 * (again_here), from the forwarded body (the same parser as the owner's
 * route).  When that session would take it but cannot (its queue is full),
 * the caller gets that refusal, as a local command would (exec_start's 503
 * AGENT_NOT_CONNECTED with the tunnel's "commands queued" message), not the
 * first replica's answer, which names an agent that has left it.
 *
 * The first replica is a socket of the test answering that 503 over plain
 * HTTP; the session has no socket (tunnel.h); there is no Redis, so the
 * retry's lookup names no other replica.  The loop is an lws context with
 * no listener and the forward client's protocol, tokens are looked up in a
 * real SQLite store on a real worker pool (as test_server_tunnel.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "forward.h"
#include "log.h"
#include "proto.h"
#include "store.h"
#include "token.h"
#include "tunnel.h"
#include "worker.h"

#include "hub_loop.h"

#define WAIT_MS 20000
#define MAX_WAITING 4096 /* tunnel.c's MAX_WAITING_PER_SESSION */
#define OWNER_SAYS "the stand-in replica does not hold the agent of this cluster"

typedef struct {
    char dir[64];
    char url[128];
    server_config cfg;
    store_t *st;
    char org_id[STORE_ID_LEN], user_id[STORE_ID_LEN];
    struct lws_context *lws;
    workers *pool;
    tunnel_hub *hub;
} fixture;

/* forward.c's lookup of the retry runs on the pool server.c gives
 * workers_submit_pool (server.c is not linked here): this fixture's. */
static workers *g_pool;

int workers_submit_pool(worker_pool pool, job_run_fn run, job_done_fn done, void *arg)
{
    return g_pool ? workers_submit(g_pool, pool, run, done, arg) : -1;
}

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
    { FORWARD_PROTOCOL, forward_callback, 0, 0, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

static void wake_loop(void *ctx) { lws_cancel_service(ctx); }

/* What forward_start reads of the settings: the deployment's secret. */
static const config_def g_defs[] = {
    { "AURORA_INTERNAL_FORWARD_SECRET", NULL, CFG_STRING, "forward-secret-0123456789abcdef0123",
      "", 1, 0, 0 },
    { "AURORA_INTERNAL_CA_FILE", NULL, CFG_STRING, NULL, "", 0, 0, 0 },
    { "AURORA_TLS_CERT", NULL, CFG_STRING, NULL, "", 0, 0, 0 },
    { "AURORA_REDIS_URL", NULL, CFG_STRING, NULL, "", 0, 0, 0 },
};

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/aurora-fwdretry-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->url, sizeof(fx->url), "sqlite://%s/t.db", fx->dir);
    fx->cfg.database_url = fx->url;
    fx->cfg.workers = 1;
    fx->cfg.stream_window = 262144;
    fx->cfg.agent_idle_timeout = 60;
    fx->cfg.legacy_max_frame = 64 * 1024;
    fx->cfg.plain_http = 1;
    fx->cfg.deadline_grace_s = 15;
    fx->cfg.max_timeout = 3600;
    fx->cfg.max_output_stream = 1 << 30;
    char err[256] = "";
    if (config_load(&fx->cfg.raw, g_defs, sizeof(g_defs) / sizeof(g_defs[0]), NULL, err,
                    sizeof(err)) != 0)
        fail_msg("config_load: %s", err);
    if (store_open(fx->url, &fx->st, err, sizeof(err)) != STORE_OK)
        fail_msg("store_open: %s", err);
    store_org o;
    assert_int_equal(store_org_create(fx->st, "acme", &o), STORE_OK);
    snprintf(fx->org_id, sizeof(fx->org_id), "%s", o.id);
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
    g_pool = fx->pool;
    tunnel_hub_opts ho = { .cfg = &fx->cfg, .lws = fx->lws, .pool = fx->pool,
                           .deadline_grace = 15 };
    fx->hub = tunnel_hub_new(&ho);
    assert_non_null(fx->hub);
    assert_int_equal(workers_start(fx->pool, NULL, fx->hub, err, sizeof(err)), 0);
    forward_start(&fx->cfg, fx->lws, fx->hub);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    workers_stop(fx->pool);
    tunnel_hub_free(fx->hub);
    lws_context_destroy(fx->lws);
    workers_free(fx->pool);
    g_pool = NULL;
    store_close(fx->st);
    config_free(&fx->cfg.raw);
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

/* Runs the loop (timers, the pool's completions, the forward's connection)
 * until pred holds; fails after WAIT_MS. */
static void serve_until(fixture *fx, int (*pred)(void *), void *arg, const char *what)
{
    hub_serve_until(fx->lws, pred, arg, WAIT_MS, what);
}

/* ---- the cluster's session here ------------------------------------------------------ */

static made_token new_token(fixture *fx)
{
    return hub_new_token(fx->st, fx->org_id, fx->user_id, 0);
}

/* The next text frame the server queued for s, decoded (1), or 0 if none. */
static int pop_msg(tunnel_session *s, proto_msg *m)
{
    size_t len = 0;
    int binary = -1;
    char *p = tunnel_session_pop(s, &len, &binary);
    if (!p)
        return 0;
    char err[160];
    if (proto_decode(p, len, m, err, sizeof(err)) != 0)
        fail_msg("the server sent an undecodable frame: %s", err);
    free(p);
    return 1;
}

static void send_text(tunnel_session *s, char *json)
{
    assert_non_null(json);
    tunnel_session_receive(s, json, strlen(json), 0);
    free(json);
}

/* A ready v2 session of m's cluster that runs max_concurrent commands at once. */
static tunnel_session *connect_v2(fixture *fx, const made_token *m, int max_concurrent)
{
    tunnel_session *s = tunnel_session_connect(fx->hub, 1, m->bearer, m->t.cluster_id);
    assert_non_null(s);
    serve_until(fx, hub_session_settled, s, "authentication");
    assert_true(tunnel_session_ready(s));
    proto_msg c;
    assert_true(pop_msg(s, &c));
    assert_int_equal(c.type, MSG_CONNECTED);
    proto_msg_free(&c);
    send_text(s, proto_enc_register(m->t.cluster_id, "9.9.9", 2, max_concurrent));
    return s;
}

/* ---- the caller ------------------------------------------------------------------------ */

typedef struct {
    int ends;
    int failed, http_status, return_code;
    char error_code[64];
    char error[256];
} sink_rec;

static void rec_data(void *ctx, int channel, const unsigned char *p, size_t n)
{
    (void)ctx;
    (void)channel;
    (void)p;
    (void)n;
}

static void rec_end(void *ctx, const tunnel_result *res)
{
    sink_rec *r = ctx;
    r->ends++;
    r->failed = res->failed;
    r->http_status = res->http_status;
    r->return_code = res->return_code;
    snprintf(r->error_code, sizeof(r->error_code), "%s", res->error_code ? res->error_code : "");
    snprintf(r->error, sizeof(r->error), "%s", res->error ? res->error : "");
}

static const tunnel_sink g_sink = { rec_data, rec_end };

static int ended(void *arg) { return ((sink_rec *)arg)->ends > 0; }

static tunnel_exec_params params_of(const made_token *m, argv_t *a)
{
    static const char *const args[] = { "get", "pods" };
    char err[64];
    assert_int_equal(argv_from_strings(args, 2, a, err, sizeof(err)), 0);
    tunnel_exec_params p = { .org_id = m->t.org_id, .cluster_id = m->t.cluster_id,
                             .kind = "kubectl", .argv = a, .timeout = 30,
                             .max_output = 1 << 20 };
    return p;
}

/* ---- the replica the command is forwarded to ------------------------------------------------ */

typedef struct {
    int lfd;
    int port;
    pthread_t th;
    char request[8192]; /* what it received: the request line, headers and body */
} stand_in;

/* Takes one forward, whole, and answers that it does not hold the agent. */
static void *stand_in_run(void *arg)
{
    stand_in *o = arg;
    int c = accept(o->lfd, NULL, NULL);
    if (c < 0)
        return NULL;
    size_t have = 0;
    long want = -1;
    for (;;) {
        ssize_t n = recv(c, o->request + have, sizeof(o->request) - 1 - have, 0);
        if (n <= 0)
            break;
        have += (size_t)n;
        o->request[have] = '\0';
        char *end = strstr(o->request, "\r\n\r\n");
        if (end && want < 0) {
            const char *cl = strcasestr(o->request, "content-length:");
            want = (long)(end + 4 - o->request) + (cl ? strtol(cl + 15, NULL, 10) : 0);
        }
        if (want >= 0 && (long)have >= want)
            break;
    }
    char body[256], head[256];
    snprintf(body, sizeof(body), "{\"error\":\"%s\",\"error_code\":\"AGENT_NOT_CONNECTED\"}",
             OWNER_SAYS);
    snprintf(head, sizeof(head),
             "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\nConnection: close\r\n\r\n",
             strlen(body));
    (void)!send(c, head, strlen(head), MSG_NOSIGNAL);
    (void)!send(c, body, strlen(body), MSG_NOSIGNAL);
    close(c);
    return NULL;
}

static void stand_in_start(stand_in *o)
{
    memset(o, 0, sizeof(*o));
    o->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(o->lfd >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(o->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(o->lfd, 4), 0);
    assert_int_equal(getsockname(o->lfd, (struct sockaddr *)&sa, &sl), 0);
    o->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&o->th, NULL, stand_in_run, o), 0);
}

static void stand_in_stop(stand_in *o)
{
    pthread_join(o->th, NULL);
    close(o->lfd);
}

/* Forwards p to the stand-in and runs the loop until the caller's end. */
static void forward_and_wait(fixture *fx, stand_in *o, const tunnel_exec_params *p,
                             sink_rec *rec)
{
    char addr[64], err[256] = "";
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", o->port);
    if (!forward_exec(addr, p, fx->user_id, &g_sink, rec, err, sizeof(err)))
        fail_msg("forward_exec: %s", err);
    serve_until(fx, ended, rec, "the forwarded command's end");
    stand_in_stop(o);
    assert_non_null(strstr(o->request, "POST /internal/forward/exec"));
}

typedef struct {
    tunnel_session *s;
    uint32_t id;
} sent_wait;

static int exec_sent(void *arg)
{
    sent_wait *w = arg;
    proto_msg m;
    if (!w->id && pop_msg(w->s, &m)) {
        assert_int_equal(m.type, MSG_EXEC);
        w->id = m.id;
        assert_int_equal(m.argv.c, 2);
        assert_string_equal(m.argv.v[0], "get");
        proto_msg_free(&m);
    }
    return w->id != 0;
}

/* The retry runs on this replica's session, from the forwarded body: the
 * caller gets the end the agent sends there. */
static void test_retry_runs_here(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx);
    tunnel_session *s = connect_v2(fx, &m, 4);
    stand_in o;
    stand_in_start(&o);
    argv_t a = { 0 };
    tunnel_exec_params p = params_of(&m, &a);
    sink_rec rec = { 0 };
    char addr[64], err[256] = "";
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", o.port);
    if (!forward_exec(addr, &p, fx->user_id, &g_sink, &rec, err, sizeof(err)))
        fail_msg("forward_exec: %s", err);
    argv_free(&a);
    sent_wait w = { s, 0 };
    serve_until(fx, exec_sent, &w, "the retry's exec at the session here");
    stand_in_stop(&o);
    assert_int_equal(rec.ends, 0);
    send_text(s, proto_enc_exec_end(w.id, 0, "", NULL, 0, 5, 0));
    serve_until(fx, ended, &rec, "the command's end");
    assert_int_equal(rec.failed, 0);
    assert_int_equal(rec.return_code, 0);
}

static void discard_end(void *ctx, const tunnel_result *res)
{
    (void)ctx;
    (void)res;
}

static const tunnel_sink g_discard = { rec_data, discard_end };

/* The session here has the most commands queued a session holds: it
 * refuses the retry, and that refusal (what a local command gets then) is
 * the caller's answer, not the first replica's. */
static void test_a_full_queue_here_is_the_callers_answer(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx);
    connect_v2(fx, &m, 1);
    argv_t a = { 0 };
    tunnel_exec_params p = params_of(&m, &a);
    char err[256] = "";
    for (int i = 0; i <= MAX_WAITING; i++) /* one running, the rest queued */
        if (!tunnel_exec(fx->hub, &p, &g_discard, NULL, err, sizeof(err)))
            fail_msg("command %d not queued: %s", i, err);
    assert_null(tunnel_exec(fx->hub, &p, &g_discard, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "4096 commands queued")); /* what a local command gets */
    stand_in o;
    stand_in_start(&o);
    sink_rec rec = { 0 };
    forward_and_wait(fx, &o, &p, &rec);
    argv_free(&a);
    assert_int_equal(rec.failed, 1);
    assert_int_equal(rec.http_status, 503);
    assert_string_equal(rec.error_code, EC_AGENT_NOT_CONNECTED);
    if (!strstr(rec.error, "4096 commands queued"))
        fail_msg("the caller got \"%s\", not the refusal of the session here", rec.error);
}

/* No session here: the first replica's answer stands. */
static void test_no_session_here_gives_the_first_answer(void **state)
{
    fixture *fx = *state;
    made_token m = new_token(fx);
    argv_t a = { 0 };
    tunnel_exec_params p = params_of(&m, &a);
    stand_in o;
    stand_in_start(&o);
    sink_rec rec = { 0 };
    forward_and_wait(fx, &o, &p, &rec);
    argv_free(&a);
    assert_int_equal(rec.http_status, 503);
    assert_string_equal(rec.error_code, EC_AGENT_NOT_CONNECTED);
    assert_string_equal(rec.error, OWNER_SAYS);
}

int main(void)
{
    log_setup("test", "error", "text");
    lws_set_log_level(LLL_ERR, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_retry_runs_here, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_full_queue_here_is_the_callers_answer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_no_session_here_gives_the_first_answer, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("server_forward_retry", tests, NULL, NULL);
}
