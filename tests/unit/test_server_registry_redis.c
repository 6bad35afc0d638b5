/* test_server_registry_redis.c — the registry (server/registry.c) against a
 * real redis-server started here, with the test as the event loop: it
 * delivers what the registry thread heard (registry_deliver) only when it
 * chooses, so a loop held back while another replica floods aurora:close
 * is not a race to win but the test's own doing.  The tunnel hub it
 * delivers to has socketless sessions whose tokens live in a real SQLite
 * store, looked up on a real worker pool (as in test_server_tunnel.c).
 *
 * Covered: the queue from the registry thread to the loop is bounded
 * (REGISTRY_MAX_INBOUND): a flood past it is dropped, counted in
 * aurora_registry_messages_dropped_total and logged once, its memory stays
 * bounded, and a revocation dropped in the flood still closes its session
 * (the re-check the loop makes once it catches up); the clock legacy
 * connections are ranked by is Redis's, whatever this host's says; a close
 * Redis refuses to publish is kept and sent again, in its order; the reason
 * of a close heard is kept as UTF-8, cut on a character boundary; messages
 * and registrations not sealed with the replicas' secret are not acted on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <libwebsockets.h>
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

#include "buf.h"
#include "log.h"
#include "proc_harness.h"
#include "prom.h"
#include "proto.h"
#include "registry.h"
#include "server_config.h"
#include "store.h"
#include "token.h"
#include "tunnel.h" /* server/tunnel.h: -Iserver comes first */
#include "utf8.h"
#include "worker.h"

#include "hub_loop.h"
#include "stderr_capture.h"

#define WAIT_MS 30000
/* AURORA_INTERNAL_FORWARD_SECRET of every replica here */
#define SECRET "0123456789abcdef0123456789abcdef"

/* ---- fixture: redis-server, a store, a hub, its pool, its loop, the registry ----- */

typedef struct {
    char dir[64];
    char url[160];
    int redis_port, port_fd;
    pid_t redis;
    server_config cfg;
    store_t *st;
    char org_id[STORE_ID_LEN], user_id[STORE_ID_LEN];
    struct lws_context *lws;
    workers *pool;
    tunnel_hub *hub;
    int deliver; /* 0: the loop is held back, what the registry heard waits */
} fixture;

static int loop_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    if (reason == LWS_CALLBACK_EVENT_WAIT_CANCELLED) {
        fixture *fx = lws_context_user(lws_get_context(wsi));
        if (fx) {
            workers_drain_completions(fx->pool);
            if (fx->deliver) /* as server.c does */
                registry_deliver(fx->hub);
        }
        return 0;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols g_protocols[] = {
    { "test", loop_callback, 0, 0, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 },
};

static void wake_loop(void *ctx) { lws_cancel_service(ctx); }

static redisContext *redis_conn(const fixture *fx)
{
    struct timeval tv = { 15, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", fx->redis_port, tv);
    if (!c || c->err)
        fail_msg("cannot reach redis-server: %s", c ? c->errstr : "out of memory");
    redisSetTimeout(c, tv);
    return c;
}

static int redis_answers(const fixture *fx)
{
    struct timeval tv = { 1, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", fx->redis_port, tv);
    int ok = 0;
    if (c && !c->err) {
        redisReply *r = redisCommand(c, "PING");
        ok = r && r->type == REDIS_REPLY_STATUS;
        if (r)
            freeReplyObject(r);
    }
    if (c)
        redisFree(c);
    return ok;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/aurora-registry-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    /* Held (SO_REUSEADDR, never listening) until teardown: another test
     * binary running beside this one does not pick it meanwhile. */
    fx->redis_port = ph_hold_port(0, &fx->port_fd, 1);
    assert_true(fx->redis_port > 0);
    char port[16], log_path[128];
    snprintf(port, sizeof(port), "%d", fx->redis_port);
    snprintf(log_path, sizeof(log_path), "%s/redis.log", fx->dir);
    /* No output-buffer limit for subscribers: the flood is read at the
     * registry thread's pace, never cut by Redis (which would make the
     * registry reconnect, another path). */
    const char *argv[] = { "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--dir", fx->dir, "--client-output-buffer-limit",
                           "pubsub 0 0 0", NULL };
    ph_opts po = { .log_path = log_path };
    fx->redis = ph_spawn(argv, &po, NULL);
    assert_true(fx->redis > 0);
    long long end = ph_now_ms() + WAIT_MS;
    while (!redis_answers(fx) && ph_now_ms() < end)
        ph_sleep_ms(20);
    assert_true(redis_answers(fx));

    snprintf(fx->url, sizeof(fx->url), "sqlite://%s/t.db", fx->dir);
    char redis_url[64];
    snprintf(redis_url, sizeof(redis_url), "redis://127.0.0.1:%d/0", fx->redis_port);
    setenv("DATABASE_URL", fx->url, 1);
    setenv("AURORA_DATA_DIR", fx->dir, 1);
    setenv("AURORA_REDIS_URL", redis_url, 1);
    setenv("AURORA_INTERNAL_ADDR", "127.0.0.1:1", 1);
    setenv("AURORA_INTERNAL_FORWARD_SECRET", SECRET, 1);
    setenv("AURORA_WORKERS", "1", 1);
    unsetenv("AURORA_CONFIG");
    char err[256] = "";
    if (server_config_load(&fx->cfg, err, sizeof(err)) != 0)
        fail_msg("server_config_load: %s", err);
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
    tunnel_hub_opts ho = { .cfg = &fx->cfg, .lws = fx->lws, .pool = fx->pool,
                           .deadline_grace = 0.05 };
    fx->hub = tunnel_hub_new(&ho);
    assert_non_null(fx->hub);
    assert_int_equal(workers_start(fx->pool, NULL, fx->hub, err, sizeof(err)), 0);
    if (registry_start(&fx->cfg, fx->lws, err, sizeof(err)) != 0)
        fail_msg("registry_start: %s", err);
    end = ph_now_ms() + WAIT_MS;
    while (!registry_connected() && ph_now_ms() < end)
        ph_sleep_ms(10);
    assert_true(registry_connected());
    *state = fx;
    return 0;
}

/* This host's clock an hour ahead, as the registry would read it. */
#define SKEW_MS 3600000
static int setup_clock_ahead(void **state)
{
    char v[32];
    snprintf(v, sizeof(v), "%d", SKEW_MS);
    setenv("AURORA_REGISTRY_TEST_CLOCK_SKEW_MS", v, 1);
    int rc = setup(state);
    unsetenv("AURORA_REGISTRY_TEST_CLOCK_SKEW_MS");
    return rc;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    registry_stop();
    workers_stop(fx->pool);
    tunnel_hub_free(fx->hub);
    lws_context_destroy(fx->lws);
    workers_free(fx->pool);
    store_close(fx->st);
    server_config_free(&fx->cfg);
    ph_stop(fx->redis, SIGTERM, 10000);
    close(fx->port_fd);
    ph_rmtree(fx->dir);
    free(fx);
    return 0;
}

/* Runs the loop until pred holds; fails after WAIT_MS. */
static void serve_until(fixture *fx, int (*pred)(void *), void *arg, const char *what)
{
    hub_serve_until(fx->lws, pred, arg, WAIT_MS, what);
}

/* ---- tokens, sessions, metrics -------------------------------------------------------- */

static made_token new_token(fixture *fx)
{
    return hub_new_token(fx->st, fx->org_id, fx->user_id, 0);
}

static int closed(void *arg) { return tunnel_session_close_code(arg, NULL) != 0; }

/* A v2 session of m's token, ready. */
static tunnel_session *connect_v2(fixture *fx, const made_token *m)
{
    tunnel_session *s = tunnel_session_connect(fx->hub, 1, m->bearer, m->t.cluster_id);
    assert_non_null(s);
    serve_until(fx, hub_session_settled, s, "authentication");
    assert_true(tunnel_session_ready(s));
    return s;
}

/* A sample of the server's /metrics (0 when it has none yet). */
static double metric(const char *name)
{
    buf_t b;
    buf_init(&b);
    assert_int_equal(prom_render(&b), 0);
    double v = 0;
    size_t n = strlen(name);
    for (const char *p = buf_head(&b); p && *p;) {
        const char *eol = strchr(p, '\n');
        if (!strncmp(p, name, n) && p[n] == ' ')
            v = strtod(p + n + 1, NULL);
        p = eol ? eol + 1 : NULL;
    }
    buf_free(&b);
    return v;
}

/* ---- what another replica publishes: sealed -------------------------------------------- */

/* Redis's clock (TIME), ms since the epoch. */
static int64_t redis_time_ms(redisContext *c)
{
    redisReply *r = redisCommand(c, "TIME");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 2);
    int64_t ms = strtoll(r->element[0]->str, NULL, 10) * 1000 +
                 strtoll(r->element[1]->str, NULL, 10) / 1000;
    freeReplyObject(r);
    return ms;
}

/* Redis's clock now. */
static int64_t redis_now_ms(const fixture *fx)
{
    redisContext *c = redis_conn(fx);
    int64_t ms = redis_time_ms(c);
    redisFree(c);
    return ms;
}

/* The sequence numbers "other replicas" of this test process stamp: one
 * counter for all, so each sender's only go up. */
static unsigned long long g_seq = 1;

/* json (a JSON object) as a replica holding `secret` publishes it, written
 * here from the format docs/security.md gives rather than with the
 * registry's own code: `"ts"` (ms, Redis's clock) and `"seq"` added, then
 * `"sig"`, the hex HMAC-SHA256, under HMAC-SHA256(secret,
 * "aurora-registry-v1"), of every byte before `,"sig"`.  malloc'd. */
static char *sealed(const char *secret, const char *json, int64_t ts_ms, unsigned long long seq)
{
    size_t n = strlen(json);
    assert_true(n >= 2 && json[0] == '{' && json[n - 1] == '}');
    size_t cap = n + 200;
    char *out = malloc(cap);
    assert_non_null(out);
    int k = snprintf(out, cap, "%.*s%s\"ts\":%lld,\"seq\":%llu", (int)(n - 1), json,
                     n > 2 ? "," : "", (long long)ts_ms, seq);
    unsigned char key[32], mac[32];
    unsigned int kl = sizeof(key), ml = sizeof(mac);
    static const char label[] = "aurora-registry-v1";
    assert_non_null(HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)label,
                         sizeof(label) - 1, key, &kl));
    assert_non_null(HMAC(EVP_sha256(), key, sizeof(key), (const unsigned char *)out, (size_t)k,
                         mac, &ml));
    k += snprintf(out + k, cap - (size_t)k, ",\"sig\":\"");
    for (int i = 0; i < 32; i++)
        k += snprintf(out + k, cap - (size_t)k, "%02x", mac[i]);
    snprintf(out + k, cap - (size_t)k, "\"}");
    return out;
}

/* Appends a PUBLISH on aurora:close of json sealed now (ts_ms) under SECRET. */
static void append_sealed(redisContext *c, const char *json, int64_t ts_ms)
{
    char *m = sealed(SECRET, json, ts_ms, g_seq++);
    assert_int_equal(redisAppendCommand(c, "PUBLISH aurora:close %s", m), REDIS_OK);
    free(m);
}

/* Publishes m (len bytes) as it is on aurora:close. */
static void publish_raw(const fixture *fx, const char *m, size_t len)
{
    redisContext *c = redis_conn(fx);
    redisReply *r = redisCommand(c, "PUBLISH aurora:close %b", m, len);
    assert_non_null(r);
    freeReplyObject(r);
    redisFree(c);
}

/* Bytes allocated, on every thread, while `counting` (what was freed
 * meanwhile not taken off): how much a message made the registry allocate
 * at its peak is at most this.  Under ASan, malloc hooks installed in main
 * before any thread; elsewhere the high-water mark of the resident set. */
static atomic_llong g_alloc_total;
static atomic_int g_counting;
#if WITH_ASAN
static void count_malloc(const volatile void *p, size_t n)
{
    (void)p;
    if (atomic_load_explicit(&g_counting, memory_order_relaxed))
        atomic_fetch_add_explicit(&g_alloc_total, (long long)n, memory_order_relaxed);
}
static void count_free(const volatile void *p) { (void)p; }
#endif
static long long allocated_total(void)
{
#if WITH_ASAN
    return atomic_load(&g_alloc_total);
#else
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (long long)ru.ru_maxrss * 1024;
#endif
}

static size_t allocated_bytes(void)
{
#if WITH_ASAN
    return __sanitizer_get_current_allocated_bytes();
#else
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks;
#endif
}

/* ---- the flood --------------------------------------------------------------------- */

#define DROPPED "aurora_registry_messages_dropped_total"
#define RECEIVED "aurora_registry_closes_received_total"

/* What a replica publishes when a token is revoked (registry_publish_close),
 * unsealed. */
static void close_json(char *m, size_t cap, const char *org, const char *cluster,
                       const char *token_id)
{
    snprintf(m, cap,
             "{\"from\":\"replica-flood\",\"org_id\":\"%s\",\"cluster_id\":\"%s\","
             "\"token_id\":\"%s\",\"reason\":\"Token revoked\"}",
             org, cluster, token_id);
}

/* ... sealed, stamped by Redis's clock, read again a second after it last
 * was (on a connection of its own: c has replies pending). */
static void append_close(const fixture *fx, redisContext *c, const char *org,
                         const char *cluster, const char *token_id)
{
    static int64_t now_ms;
    static long long read_at;
    if (ph_now_ms() - read_at >= 1000) {
        now_ms = redis_now_ms(fx);
        read_at = ph_now_ms();
    }
    char m[512];
    close_json(m, sizeof(m), org, cluster, token_id);
    append_sealed(c, m, now_ms);
}

static void read_replies(redisContext *c, int n)
{
    for (int i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK)
            fail_msg("PUBLISH: %s", c->errstr);
        freeReplyObject(r);
    }
}

typedef struct {
    fixture *fx;
    const made_token *victim;
    double dropped0, dropped;
    size_t grew; /* bytes allocated while the flood waited for the loop */
} flood;

#define FLOOD_BEFORE (REGISTRY_MAX_INBOUND + 500) /* the victim's close comes after these */
#define FLOOD_AFTER 1000

static void publish_flood(void *arg)
{
    flood *fl = arg;
    redisContext *c = redis_conn(fl->fx);
    size_t before = allocated_bytes();
    /* Closes of clusters this replica does not hold, as a replica flooding
     * the channel (or many revocations at once) sends them. */
    for (int i = 0; i < FLOOD_BEFORE; i += 1000) {
        int n = FLOOD_BEFORE - i < 1000 ? FLOOD_BEFORE - i : 1000;
        for (int k = 0; k < n; k++) {
            char cluster[32];
            snprintf(cluster, sizeof(cluster), "flood%08d", i + k);
            append_close(fl->fx, c, "org-elsewhere", cluster, "");
        }
        read_replies(c, n);
    }
    /* The victim's token revoked on another replica: in the store first, then
     * published, as api_tokens.c does. */
    assert_int_equal(store_agent_token_revoke(fl->fx->st, fl->fx->org_id, fl->victim->t.id,
                                              time(NULL)),
                     STORE_OK);
    append_close(fl->fx, c, fl->fx->org_id, fl->victim->t.cluster_id, fl->victim->t.id);
    for (int k = 0; k < FLOOD_AFTER; k++)
        append_close(fl->fx, c, "org-elsewhere", "flood-after", "");
    read_replies(c, FLOOD_AFTER + 1);
    redisFree(c);
    /* Until the registry thread has read every message: all past the cap
     * dropped. */
    double want = fl->dropped0 + (FLOOD_BEFORE + 1 + FLOOD_AFTER - REGISTRY_MAX_INBOUND);
    long long end = ph_now_ms() + WAIT_MS;
    while (metric(DROPPED) < want && ph_now_ms() < end)
        ph_sleep_ms(20);
    fl->dropped = metric(DROPPED) - fl->dropped0; /* checked once fd 2 is back */
    size_t after = allocated_bytes();
    fl->grew = after > before ? after - before : 0;
}

/* counts[i]: the lines of fd 2 that contain needles[i] while fn(arg) runs. */
static void stderr_lines_with(const char *const needles[], int counts[], int n,
                             void (*fn)(void *), void *arg)
{
    FILE *f = stderr_capture(fn, arg);
    char line[2048];
    for (int i = 0; i < n; i++)
        counts[i] = 0;
    while (fgets(line, sizeof(line), f))
        for (int i = 0; i < n; i++)
            counts[i] += strstr(line, needles[i]) != NULL;
    fclose(f);
}

typedef struct {
    fixture *fx;
    tunnel_session *s;
} catch_up;

static void release_loop(void *arg)
{
    catch_up *cu = arg;
    cu->fx->deliver = 1;
    registry_deliver(cu->fx->hub); /* the wake-up it missed */
    serve_until(cu->fx, closed, cu->s, "the revoked session to close");
}

/* Another replica floods aurora:close while this one's loop is held back:
 * what waits for the loop stops at REGISTRY_MAX_INBOUND, the rest is
 * dropped and counted, the registry says so once, and the revocation that
 * was dropped among them still closes its session, by the re-check the
 * loop makes once it has taken what waited.  Unbounded, the queue took
 * every message (memory without limit) and nothing was counted. */
static void test_a_flood_is_bounded_and_a_revocation_in_it_honoured(void **state)
{
    fixture *fx = *state;
    made_token victim = new_token(fx), bystander = new_token(fx);
    tunnel_session *s = connect_v2(fx, &victim);
    tunnel_session *other = connect_v2(fx, &bystander);
    double received0 = metric(RECEIVED);
    flood fl = { .fx = fx, .victim = &victim, .dropped0 = metric(DROPPED) };

    log_setup("test", "info", "text"); /* the suite runs at "error" */
    static const char *const flood_lines[] = { "wait for the event loop; dropping" };
    int during[1];
    stderr_lines_with(flood_lines, during, 1, publish_flood, &fl);
    /* every message past the cap, the revocation among them */
    assert_int_equal((long long)fl.dropped, FLOOD_BEFORE + 1 + FLOOD_AFTER - REGISTRY_MAX_INBOUND);
    assert_int_equal(during[0], 1); /* once for the whole burst */
    assert_true(tunnel_session_ready(s)); /* nothing delivered yet */
    /* Bounded: what waits costs what REGISTRY_MAX_INBOUND messages cost
     * (656 bytes each, 21 MiB), not what the flood (34,269) would. */
    print_message("%zu bytes held for %d messages waiting\n", fl.grew, REGISTRY_MAX_INBOUND);
    assert_true(fl.grew < (size_t)REGISTRY_MAX_INBOUND * 1024);

    static const char *const catch_up_lines[] = { "dropped while the event loop was behind",
                                                  "no longer valid (Token revoked)" };
    int after[2];
    catch_up cu = { fx, s };
    stderr_lines_with(catch_up_lines, after, 2, release_loop, &cu);
    log_setup("test", "error", "text");
    assert_int_equal(after[0], 1);
    assert_int_equal(after[1], 1); /* the re-check closed it, the close itself was dropped */
    const char *why = NULL;
    assert_int_equal(tunnel_session_close_code(s, &why), PROTO_CLOSE_POLICY);
    assert_string_equal(why, PROTO_REASON_REVOKED);
    assert_true(tunnel_session_ready(other)); /* its token is valid */
    /* Exactly the messages kept were delivered. */
    assert_int_equal((long long)(metric(RECEIVED) - received0), REGISTRY_MAX_INBOUND);
    tunnel_session_drop(s);
    tunnel_session_drop(other);
}

/* A legacy connection's ready time, which ranks it against those of the
 * other replicas, is read from Redis's clock, the one they share: with this
 * host's clock an hour ahead it is still Redis's time (to within the round
 * trips; the hour was the ranking before).  Without Redis, the host's. */
static void test_legacy_rank_clock_is_redis_s(void **state)
{
    fixture *fx = *state;
    redisContext *c = redis_conn(fx);
    int64_t before = registry_clock_ms(), redis = redis_time_ms(c), after = registry_clock_ms();
    redisFree(c);
    print_message("registry %lld .. %lld, Redis %lld\n", (long long)before, (long long)after,
                  (long long)redis);
    /* a second either way: a loaded machine's round trips, not the hour */
    assert_true(before <= redis + 1000);
    assert_true(after >= redis - 1000);
    assert_true(after - before < 1000);
    registry_stop(); /* one replica: its own clock, the test's hour ahead gone with it */
    int64_t wall = (int64_t)time(NULL) * 1000;
    assert_true(registry_clock_ms() >= wall - 1000 && registry_clock_ms() <= wall + 2000);
}

/* This host's clock an hour ahead, and renewals every second (a 3 s lease). */
static int setup_clock_ahead_short_lease(void **state)
{
    setenv("AURORA_REGISTRY_LEASE_S", "3", 1);
    int rc = setup_clock_ahead(state);
    unsetenv("AURORA_REGISTRY_LEASE_S");
    return rc;
}

static void sealed_member(const char *secret, const char *cluster, const char *instance,
                          const char *addr, int64_t expires_ms, char *out, size_t cap);
static void zadd(redisContext *c, const char *cluster, int64_t score_ms, const char *member);

/* The members of key and their scores (ms), at most cap. */
static int zmembers(redisContext *c, const char *key, char names[][256], int64_t *scores, int cap)
{
    redisReply *r = redisCommand(c, "ZRANGE %s 0 -1 WITHSCORES", key);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    int n = 0;
    for (size_t i = 0; i + 1 < r->elements && n < cap; i += 2, n++) {
        snprintf(names[n], 256, "%s", r->element[i]->str);
        scores[n] = (int64_t)(strtod(r->element[i + 1]->str, NULL) * 1000);
    }
    freeReplyObject(r);
    return n;
}

typedef struct {
    fixture *fx;
    redisContext *c;
    char key[96];
    int64_t after_ms; /* a registration of ours scored past this */
} renewal_wait;

/* Our registration (the member that is not "other-replica …") renewed:
 * scored past w->after_ms. */
static int renewed_past(void *arg)
{
    renewal_wait *w = arg;
    char names[8][256];
    int64_t scores[8];
    int n = zmembers(w->c, w->key, names, scores, 8);
    for (int i = 0; i < n; i++)
        if (strncmp(names[i], "other-replica ", 14) && scores[i] > w->after_ms)
            return 1;
    return 0;
}

/* Registrations are scored, looked up and trimmed on Redis's clock, the
 * one every replica shares, not on this host's: with it an hour ahead, a
 * registration here lived an hour longer than its lease (a dead replica
 * kept attracting its clusters' commands), another replica's live one
 * looked lapsed (its clusters' commands found nobody, 503), and each
 * renewal here removed the other replicas' live registrations of the
 * clusters this one holds too. */
static void test_registrations_are_on_redis_s_clock(void **state)
{
    fixture *fx = *state;
    redisContext *c = redis_conn(fx);
    made_token m = new_token(fx);
    tunnel_session *s = connect_v2(fx, &m);
    (void)s;
    renewal_wait w = { .fx = fx, .c = c, .after_ms = 0 };
    snprintf(w.key, sizeof(w.key), "aurora:agents:%s", m.t.cluster_id);
    serve_until(fx, renewed_past, &w, "the cluster's registration");
    char names[8][256];
    int64_t scores[8];
    int64_t redis = redis_time_ms(c);
    int n = zmembers(c, w.key, names, scores, 8);
    assert_int_equal(n, 1);
    print_message("registered until %lld, Redis now %lld\n", (long long)scores[0],
                  (long long)redis);
    /* the 3 s lease from Redis's now (a second for the round trips), not
     * from an hour ahead */
    assert_true(scores[0] <= redis + 3000 + 1000);

    /* Another replica's registrations, live for ten minutes by Redis's
     * clock: one of a cluster held here too, one of a cluster only it holds. */
    char here[512], elsewhere[512];
    sealed_member(SECRET, m.t.cluster_id, "other-replica", "127.0.0.2:5081", redis + 600000, here,
                  sizeof(here));
    zadd(c, m.t.cluster_id, redis + 600000, here);
    sealed_member(SECRET, "cluster-elsewhere", "other-replica", "127.0.0.2:5081", redis + 600000,
                  elsewhere, sizeof(elsewhere));
    zadd(c, "cluster-elsewhere", redis + 600000, elsewhere);
    char addr[280];
    assert_int_equal(registry_lookup("cluster-elsewhere", addr, sizeof(addr)), 1);
    assert_string_equal(addr, "127.0.0.2:5081");

    /* A renewal here (every second) trims lapsed members only. */
    w.after_ms = scores[0];
    serve_until(fx, renewed_past, &w, "a renewal of the registration");
    n = zmembers(c, w.key, names, scores, 8);
    int others = 0;
    for (int i = 0; i < n; i++)
        others += !strcmp(names[i], here);
    assert_int_equal(others, 1);
    redisFree(c);
}

/* Redis's answer to a command on c, which must not be an error. */
static void redis_ok(redisContext *c, const char *cmd)
{
    redisReply *r = redisCommand(c, cmd);
    if (!r || r->type == REDIS_REPLY_ERROR)
        fail_msg("%s: %s", cmd, r ? r->str : c->errstr);
    freeReplyObject(r);
}

/* The commands Redis refused by its ACLs so far (ACL LOG). */
static int acl_denials(void *arg)
{
    redisContext *c = arg;
    redisReply *r = redisCommand(c, "ACL LOG");
    int n = r && r->type == REDIS_REPLY_ARRAY ? (int)r->elements : 0;
    if (r)
        freeReplyObject(r);
    return n;
}

/* The cluster named by the next message heard on aurora:close from this
 * replica (the registry's instance), within WAIT_MS. */
static void next_close_heard(redisContext *sub, char *cluster, size_t cap)
{
    for (;;) {
        redisReply *r = NULL;
        if (redisGetReply(sub, (void **)&r) != REDIS_OK)
            fail_msg("nothing heard on aurora:close: %s", sub->errstr);
        const char *m = r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
                                r->element[2]->type == REDIS_REPLY_STRING
                            ? r->element[2]->str
                            : "";
        const char *k = strstr(m, "\"cluster_id\":\"");
        int ours = k && strstr(m, "\"reason\":\"Token revoked\"");
        if (ours) {
            k += strlen("\"cluster_id\":\"");
            size_t n = strcspn(k, "\"");
            snprintf(cluster, cap, "%.*s", (int)(n < cap ? n : cap - 1), k);
        }
        freeReplyObject(r);
        if (ours)
            return;
    }
}

/* A close Redis answers with an error (here its ACLs refusing PUBLISH, as
 * an operator's rule, a NOAUTH after a password change or a BUSY script
 * would) reached no replica: it stays queued and goes once Redis takes
 * it, in its order.  Counted as sent, the revocation was lost: the token's
 * session stayed up on the replica holding it. */
static void test_a_refused_publish_is_kept_and_sent_again(void **state)
{
    fixture *fx = *state;
    redisContext *admin = redis_conn(fx), *sub = redis_conn(fx);
    redis_ok(sub, "SUBSCRIBE aurora:close");
    redis_ok(admin, "ACL LOG RESET");
    redis_ok(admin, "ACL SETUSER default -publish");
    registry_publish_close(fx->org_id, "refused-close", "token-a", "Token revoked");
    long long end = ph_now_ms() + WAIT_MS;
    while (acl_denials(admin) == 0 && ph_now_ms() < end)
        ph_sleep_ms(20);
    assert_true(acl_denials(admin) > 0); /* the registry's PUBLISH, refused */
    redis_ok(admin, "ACL SETUSER default +publish");
    registry_publish_close(fx->org_id, "later-close", "token-b", "Token revoked");
    char cluster[64];
    next_close_heard(sub, cluster, sizeof(cluster));
    assert_string_equal(cluster, "refused-close");
    next_close_heard(sub, cluster, sizeof(cluster));
    assert_string_equal(cluster, "later-close");
    redisFree(sub);
    redisFree(admin);
}

/* A close another replica published with reason (len bytes, raw: what a
 * replica of another version, or anyone who may publish, could send) for
 * m's token; the session it closes here, and the reason it was closed with. */
static const char *closed_with(fixture *fx, const made_token *m, const char *reason, size_t len)
{
    tunnel_session *s = connect_v2(fx, m);
    char head[512];
    snprintf(head, sizeof(head),
             "{\"from\":\"replica-other\",\"org_id\":\"%s\",\"cluster_id\":\"%s\","
             "\"token_id\":\"%s\",\"reason\":\"",
             fx->org_id, m->t.cluster_id, m->t.id);
    char msg[1024];
    size_t n = strlen(head);
    assert_true(n + len + 2 < sizeof(msg));
    memcpy(msg, head, n);
    memcpy(msg + n, reason, len);
    memcpy(msg + n + len, "\"}", 3);
    char *sm = sealed(SECRET, msg, redis_now_ms(fx), g_seq++);
    publish_raw(fx, sm, strlen(sm));
    free(sm);
    fx->deliver = 1;
    serve_until(fx, closed, s, "the session to close on the other replica's word");
    const char *why = NULL;
    assert_int_equal(tunnel_session_close_code(s, &why), PROTO_CLOSE_POLICY);
    static char kept[128];
    snprintf(kept, sizeof(kept), "%s", why);
    tunnel_session_drop(s);
    return kept;
}

/* The reason of a close heard on aurora:close goes to the agent in the
 * WebSocket close frame, whose reason must be UTF-8 (RFC 6455 7.4: an
 * agent may fail the connection on one that is not), and to the log.  Cut
 * to its 63 bytes with snprintf, a reason whose 63rd byte fell inside a
 * character kept half of it; one that was not UTF-8 at all went on as it
 * came.  Now cut before the character, and what is not UTF-8 replaced. */
static void test_a_close_reason_is_cut_on_a_character_boundary(void **state)
{
    fixture *fx = *state;
    char reason[80];
    memset(reason, 'a', 62);
    memcpy(reason + 62, "\xE2\x82\xAC", 3); /* U+20AC across the 63-byte cut */
    made_token m = new_token(fx);
    const char *why = closed_with(fx, &m, reason, 65);
    assert_true(utf8_valid(why, strlen(why)));
    assert_int_equal(strlen(why), 62);
    assert_memory_equal(why, reason, 62);

    /* short enough, but not UTF-8: a stray byte, and a lead byte cut short */
    made_token m2 = new_token(fx);
    why = closed_with(fx, &m2, "Token \xFF revoked \xE2\x82", 18);
    assert_true(utf8_valid(why, strlen(why)));
    assert_string_equal(why, "Token \xEF\xBF\xBD revoked \xEF\xBF\xBD\xEF\xBF\xBD");
}

/* Renewals an hour apart (AURORA_REGISTRY_LEASE_S 3600): none announces
 * this replica's legacy connections again while a test counts its answers. */
static int setup_long_lease(void **state)
{
    setenv("AURORA_REGISTRY_LEASE_S", "3600", 1);
    int rc = setup(state);
    unsetenv("AURORA_REGISTRY_LEASE_S");
    return rc;
}

/* What a subscriber to aurora:close heard so far: the announcements of
 * cid's legacy connection up, and whether the close naming `marker` came. */
typedef struct {
    fixture *fx;
    redisContext *sub;
    const char *cid, *marker;
    int announced, marked;
} heard;

/* Reads what sub holds without waiting (the loop is served meanwhile). */
static void hear(heard *h)
{
    struct pollfd pf = { h->sub->fd, POLLIN, 0 };
    if (poll(&pf, 1, 0) > 0 && redisBufferRead(h->sub) != REDIS_OK)
        fail_msg("aurora:close subscription: %s", h->sub->errstr);
    for (;;) {
        redisReply *r = NULL;
        if (redisGetReplyFromReader(h->sub, (void **)&r) != REDIS_OK)
            fail_msg("aurora:close subscription: %s", h->sub->errstr);
        if (!r)
            return;
        const char *m = r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
                                r->element[2]->type == REDIS_REPLY_STRING
                            ? r->element[2]->str
                            : "";
        if (strstr(m, h->cid) && strstr(m, "\"legacy_up\":true"))
            h->announced++;
        if (strstr(m, h->marker))
            h->marked = 1;
        freeReplyObject(r);
    }
}

static int heard_marker(void *arg)
{
    heard *h = arg;
    hear(h);
    return h->marked;
}

static int heard_announced(void *arg)
{
    heard *h = arg;
    hear(h);
    return h->announced > 0;
}

/* A close of this replica's own, published after what it published before
 * (one thread publishes, in order): once heard, so is everything before. */
static void mark_and_wait(fixture *fx, heard *h, const char *marker)
{
    h->marker = marker;
    h->marked = 0;
    registry_publish_close(fx->org_id, marker, "", "Token revoked");
    serve_until(fx, heard_marker, h, "this replica's marker on aurora:close");
}

/* Every legacy_resync heard made this replica announce each of its legacy
 * connections again, at once: a replica (or anyone who may publish on
 * aurora:close) sending them in a loop, each from a new name, had every
 * replica publish its whole set of legacy connections per message, and a
 * fleet of 10,000 agents turned each small message into thousands.  Now
 * answered at most once per REGISTRY_RESYNC_ANSWER_MS: the first at once,
 * those within it together at its end (each request is still answered by an
 * announcement made after it came: a replica back from a Redis outage is
 * not left without the others' connections). */
static void test_resync_requests_are_answered_together(void **state)
{
    fixture *fx = *state;
    redisContext *sub = redis_conn(fx);
    redis_ok(sub, "SUBSCRIBE aurora:close");
    made_token legacy = new_token(fx), victim = new_token(fx);
    heard h = { .fx = fx, .sub = sub, .cid = legacy.t.cluster_id, .marker = "\x01" };
    fx->deliver = 1;
    tunnel_session *l = tunnel_session_connect(fx->hub, 0, legacy.bearer, legacy.t.cluster_id);
    assert_non_null(l);
    serve_until(fx, hub_session_settled, l, "the legacy connection's authentication");
    assert_true(tunnel_session_ready(l));
    serve_until(fx, heard_announced, &h, "the legacy connection announced");
    tunnel_session *v = connect_v2(fx, &victim);

    /* 200 requests from as many names, then a close this replica acts on:
     * once its session is closed, every request before it was heard. */
    enum { ASKS = 200 };
    redisContext *c = redis_conn(fx);
    int64_t now_ms = redis_now_ms(fx);
    for (int i = 0; i < ASKS; i++) {
        char m[128];
        snprintf(m, sizeof(m), "{\"from\":\"asker-%d\",\"legacy_resync\":true}", i);
        append_sealed(c, m, now_ms);
    }
    append_close(fx, c, fx->org_id, victim.t.cluster_id, victim.t.id);
    read_replies(c, ASKS + 1);
    redisFree(c);
    int64_t asked = ph_now_ms();
    serve_until(fx, closed, v, "the close after the requests");
    h.announced = 0;
    mark_and_wait(fx, &h, "marker-after-requests");
    print_message("%d announcement(s) for %d requests\n", h.announced, ASKS);
    assert_int_equal(h.announced, 1); /* the first, at once */

    /* the rest, answered together once the period since the first is over */
    h.announced = 0;
    serve_until(fx, heard_announced, &h, "the requests' common answer");
    assert_true(ph_now_ms() - asked >= REGISTRY_RESYNC_ANSWER_MS / 2);
    mark_and_wait(fx, &h, "marker-after-answer");
    assert_int_equal(h.announced, 1);
    tunnel_session_drop(v);
    tunnel_session_drop(l);
    redisFree(sub);
}

/* A message on aurora:close far larger than any replica publishes (under
 * 1 KiB): a JSON array of 4 MiB, "[0,0,0,…]", two bytes per element.
 * Parsed, each element cost a cJSON node (64 bytes and more): hundreds of
 * MiB on every replica's registry thread for one PUBLISH that Redis's
 * default subscriber limit (32 MiB) lets through, and a few such made
 * every replica's memory run out at once.  Now ignored unparsed past
 * REGISTRY_MAX_MESSAGE: what it costs is what hiredis holds to read it. */
static void test_an_oversized_message_is_not_parsed(void **state)
{
    fixture *fx = *state;
    made_token victim = new_token(fx);
    tunnel_session *v = connect_v2(fx, &victim);
    fx->deliver = 1;
    enum { BIG = 4 * 1024 * 1024 };
    char *big = malloc(BIG);
    assert_non_null(big);
    big[0] = '[';
    for (size_t i = 1; i + 1 < BIG; i += 2) {
        big[i] = '0';
        big[i + 1] = ',';
    }
    big[BIG - 2] = '0';
    big[BIG - 1] = ']';
    redisContext *c = redis_conn(fx);
    assert_int_equal(redisAppendCommand(c, "PUBLISH aurora:close %b", big, (size_t)BIG), REDIS_OK);
    free(big);
    /* then a close this replica acts on: once done, the big one was read */
    append_close(fx, c, fx->org_id, victim.t.cluster_id, victim.t.id);
    long long before = allocated_total();
    atomic_store(&g_counting, 1);
    read_replies(c, 2);
    serve_until(fx, closed, v, "the close after the big message");
    atomic_store(&g_counting, 0);
    long long grew = allocated_total() - before;
    redisFree(c);
    print_message("%lld bytes allocated for a message of %d\n", grew, BIG);
    /* hiredis's buffer as it grows and its reply's copy: some 4 to 5 times
     * the message; parsed, 30 times and more */
    assert_true(grew < 12LL * BIG);
    tunnel_session_drop(v);
}

typedef struct {
    fixture *fx;
    tunnel_session *victim;
    const made_token *m;
} junk_run;

#define JUNK 500

static void publish_junk(void *arg)
{
    junk_run *j = arg;
    redisContext *c = redis_conn(j->fx);
    int64_t now_ms = redis_now_ms(j->fx);
    for (int i = 0; i < JUNK; i++) {
        /* sealed, malformed as a replica's message; and not even JSON */
        const char *m = i % 3 == 0   ? "{\"from\":\"x\",\"legacy_ready_ms\":\"soon\"}"
                        : i % 3 == 1 ? "{\"from\":\"x\",\"agent_instance\":\"a\"}"
                                     : "not json";
        if (m[0] == '{')
            append_sealed(c, m, now_ms);
        else
            assert_int_equal(redisAppendCommand(c, "PUBLISH aurora:close %s", m), REDIS_OK);
    }
    static char big[REGISTRY_MAX_MESSAGE + 1];
    memset(big, ' ', sizeof(big));
    assert_int_equal(redisAppendCommand(c, "PUBLISH aurora:close %b", big, sizeof(big)), REDIS_OK);
    append_close(j->fx, c, j->fx->org_id, j->m->t.cluster_id, j->m->t.id);
    read_replies(c, JUNK + 2);
    redisFree(c);
    serve_until(j->fx, closed, j->victim, "the close after the junk");
}

/* Each malformed or oversized message heard was logged, one line each: one
 * PUBLISH in a loop wrote as many lines on every replica, to the log
 * pipeline every replica shares, without limit.  Said once a minute now,
 * the next line counting those not said. */
static void test_ignored_messages_are_logged_once_a_minute(void **state)
{
    fixture *fx = *state;
    made_token victim = new_token(fx);
    tunnel_session *v = connect_v2(fx, &victim);
    fx->deliver = 1;
    junk_run j = { fx, v, &victim };
    log_setup("test", "info", "text");
    static const char *const lines[] = { "ignored" };
    int n[1];
    stderr_lines_with(lines, n, 1, publish_junk, &j);
    log_setup("test", "error", "text");
    print_message("%d line(s) for %d ignored messages\n", n[0], JUNK + 1);
    assert_int_equal(n[0], 1);
    tunnel_session_drop(v);
}

/* ---- the channel is authenticated ------------------------------------------------------ */

#define REJECTED(why) "aurora_registry_messages_rejected_total{why=\"" why "\"}"

/* m's session, and a bystander's whose close, sealed and published after
 * whatever a test published first, tells that all of it was heard. */
typedef struct {
    made_token m, marker;
    tunnel_session *s, *mark;
} forged_run;

static void forged_setup(fixture *fx, forged_run *r)
{
    r->m = new_token(fx);
    r->marker = new_token(fx);
    r->s = connect_v2(fx, &r->m);
    r->mark = connect_v2(fx, &r->marker);
    fx->deliver = 1;
}

/* Publishes the marker's close, sealed, and serves the loop until it
 * closed: what was published before it was heard and handled. */
static void forged_settle(fixture *fx, forged_run *r)
{
    char m[512];
    close_json(m, sizeof(m), fx->org_id, r->marker.t.cluster_id, r->marker.t.id);
    char *sm = sealed(SECRET, m, redis_now_ms(fx), g_seq++);
    publish_raw(fx, sm, strlen(sm));
    free(sm);
    serve_until(fx, closed, r->mark, "the marker's close");
    tunnel_session_drop(r->mark);
}

/* Anyone who may PUBLISH on the Redis the replicas share (another
 * application using it, a client holding its password but not the
 * replicas' secret) wrote a close there, as a replica does, and every
 * replica closed that cluster's tunnel: the channel was not
 * authenticated.  Now a message must be sealed with the replicas' secret;
 * one that is not is dropped and counted. */
static void test_a_forged_close_closes_nothing(void **state)
{
    fixture *fx = *state;
    forged_run r;
    forged_setup(fx, &r);
    double unsigned0 = metric(REJECTED("unsigned"));
    char m[512];
    close_json(m, sizeof(m), fx->org_id, r.m.t.cluster_id, "");
    publish_raw(fx, m, strlen(m));
    /* a supersession and a legacy connection's news, forged alike */
    snprintf(m, sizeof(m),
             "{\"from\":\"forger\",\"org_id\":\"%s\",\"cluster_id\":\"%s\","
             "\"agent_instance\":\"x\",\"agent_connection\":9}",
             fx->org_id, r.m.t.cluster_id);
    publish_raw(fx, m, strlen(m));
    forged_settle(fx, &r);
    assert_true(tunnel_session_ready(r.s));
    assert_int_equal((long long)(metric(REJECTED("unsigned")) - unsigned0), 2);
    tunnel_session_drop(r.s);
}

/* Sealed, but under another secret (a replica of another deployment
 * sharing the Redis, or a forger guessing): dropped as a forgery; and a
 * seal whose message was changed after it was made, likewise. */
static void test_a_close_sealed_under_another_secret_closes_nothing(void **state)
{
    fixture *fx = *state;
    forged_run r;
    forged_setup(fx, &r);
    double bad0 = metric(REJECTED("bad_signature"));
    char m[512];
    close_json(m, sizeof(m), fx->org_id, r.m.t.cluster_id, "");
    char *sm = sealed("another-deployment-s-secret-0123456789", m, redis_now_ms(fx), g_seq++);
    publish_raw(fx, sm, strlen(sm));
    free(sm);
    /* the right secret, another cluster's close, its cluster id changed
     * to this one's after the seal was made */
    made_token decoy = new_token(fx);
    assert_int_equal(strlen(decoy.t.cluster_id), strlen(r.m.t.cluster_id));
    close_json(m, sizeof(m), fx->org_id, decoy.t.cluster_id, "");
    sm = sealed(SECRET, m, redis_now_ms(fx), g_seq++);
    char *at = strstr(sm, decoy.t.cluster_id);
    assert_non_null(at);
    memcpy(at, r.m.t.cluster_id, strlen(r.m.t.cluster_id));
    publish_raw(fx, sm, strlen(sm));
    free(sm);
    forged_settle(fx, &r);
    assert_true(tunnel_session_ready(r.s));
    assert_int_equal((long long)(metric(REJECTED("bad_signature")) - bad0), 2);
    tunnel_session_drop(r.s);
}

/* A replica's genuine message captured on the channel (anyone who may
 * SUBSCRIBE hears them) and published again: later than the window
 * (REGISTRY_SEAL_WINDOW_MS) it is dropped as stale; within it, the very
 * same bytes a second time are dropped as replayed (each sender's sequence
 * only goes up).  A close replayed in a loop closed the cluster's new
 * sessions as fast as its agent made them; a legacy connection's news,
 * replayed, kept the cluster's live connection aside for a lease. */
static void test_a_replayed_close_closes_nothing(void **state)
{
    fixture *fx = *state;
    forged_run r;
    forged_setup(fx, &r);
    double stale0 = metric(REJECTED("stale")), replayed0 = metric(REJECTED("replayed"));
    char m[512];
    close_json(m, sizeof(m), fx->org_id, r.m.t.cluster_id, "");
    int64_t now = redis_now_ms(fx);
    /* stamped before the window, and as far after it */
    char *old = sealed(SECRET, m, now - REGISTRY_SEAL_WINDOW_MS - 5000, g_seq++);
    publish_raw(fx, old, strlen(old));
    free(old);
    char *ahead = sealed(SECRET, m, now + REGISTRY_SEAL_WINDOW_MS + 5000, g_seq++);
    publish_raw(fx, ahead, strlen(ahead));
    free(ahead);
    /* genuine and fresh: it closes the session, once */
    char *fresh = sealed(SECRET, m, now, g_seq++);
    publish_raw(fx, fresh, strlen(fresh));
    serve_until(fx, closed, r.s, "the genuine close");
    tunnel_session_drop(r.s);
    assert_int_equal((long long)(metric(REJECTED("stale")) - stale0), 2);
    /* the agent connects again; the same message, replayed */
    tunnel_session *again = connect_v2(fx, &r.m);
    publish_raw(fx, fresh, strlen(fresh));
    free(fresh);
    forged_settle(fx, &r);
    assert_true(tunnel_session_ready(again));
    assert_int_equal((long long)(metric(REJECTED("replayed")) - replayed0), 1);
    tunnel_session_drop(again);
}

/* A rolling upgrade from a version that does not seal: with
 * AURORA_REGISTRY_ACCEPT_UNSIGNED the replicas of the new version take an
 * unsealed message as before (the old ones' closes still reach them), but
 * never one whose seal does not verify. */
static int setup_accept_unsigned(void **state)
{
    setenv("AURORA_REGISTRY_ACCEPT_UNSIGNED", "true", 1);
    int rc = setup(state);
    unsetenv("AURORA_REGISTRY_ACCEPT_UNSIGNED");
    return rc;
}

static void test_unsigned_messages_are_taken_only_when_accepted(void **state)
{
    fixture *fx = *state;
    forged_run r;
    forged_setup(fx, &r);
    made_token other = new_token(fx);
    tunnel_session *o = connect_v2(fx, &other);
    char m[512];
    close_json(m, sizeof(m), fx->org_id, other.t.cluster_id, "");
    char *sm = sealed("another-deployment-s-secret-0123456789", m, redis_now_ms(fx), g_seq++);
    publish_raw(fx, sm, strlen(sm));
    free(sm);
    close_json(m, sizeof(m), fx->org_id, r.m.t.cluster_id, "");
    publish_raw(fx, m, strlen(m)); /* a replica of the previous version */
    serve_until(fx, closed, r.s, "the unsigned close, accepted");
    forged_settle(fx, &r);
    assert_true(tunnel_session_ready(o));
    tunnel_session_drop(r.s);
    tunnel_session_drop(o);
}

/* ---- the registrations are sealed ------------------------------------------------------- */

#define REG_REJECTED(why) "aurora_registry_registrations_rejected_total{why=\"" why "\"}"

/* A registration as a replica holding secret writes it (registry.h): the
 * member "<instance> <addr> <expires_ms> <sig>", sig the hex HMAC-SHA256
 * under HMAC-SHA256(secret, "aurora-registration-v1") of
 * "<cluster_id>\n<instance> <addr> <expires_ms>".  Written here from that
 * text, not from the C. */
static void sealed_member(const char *secret, const char *cluster, const char *instance,
                          const char *addr, int64_t expires_ms, char *out, size_t cap)
{
    char text[512];
    int n = snprintf(text, sizeof(text), "%s\n%s %s %lld", cluster, instance, addr,
                     (long long)expires_ms);
    assert_true(n > 0 && (size_t)n < sizeof(text));
    unsigned char key[32], mac[32];
    unsigned int kl = sizeof(key), ml = sizeof(mac);
    static const char label[] = "aurora-registration-v1";
    assert_non_null(HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)label,
                         sizeof(label) - 1, key, &kl));
    assert_non_null(HMAC(EVP_sha256(), key, sizeof(key), (const unsigned char *)text, (size_t)n,
                         mac, &ml));
    int k = snprintf(out, cap, "%s %s %lld ", instance, addr, (long long)expires_ms);
    assert_true(k > 0 && (size_t)k + 65 <= cap);
    for (int i = 0; i < 32; i++)
        k += snprintf(out + k, cap - (size_t)k, "%02x", mac[i]);
}

/* ZADD aurora:agents:<cluster> <score_ms as seconds> <member>. */
static void zadd(redisContext *c, const char *cluster, int64_t score_ms, const char *member)
{
    char key[96], score[32];
    snprintf(key, sizeof(key), "aurora:agents:%s", cluster);
    snprintf(score, sizeof(score), "%.3f", (double)score_ms / 1000.0);
    redisReply *r = redisCommand(c, "ZADD %s %s %s", key, score, member);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    freeReplyObject(r);
}

/* A registration of cid sealed under another deployment's secret, scored
 * to outrank anything registered for a minute from now. */
static void plant_other_secret(redisContext *c, const char *cid, int64_t now)
{
    char m[512];
    sealed_member("another-deployment-s-secret-0123456789", cid, "rogue2", "127.0.0.8:6666",
                  now + 500000, m, sizeof(m));
    zadd(c, cid, now + 500000, m);
}

/* Whoever can write to the Redis the replicas share, without their
 * secret, plants a registration of a cluster (an address of theirs,
 * scored to outrank the real holder's): every replica sent the cluster's
 * commands there, and they failed 503 (the trust store refused the peer)
 * instead of running on the replica that holds the agent.  Now a lookup
 * takes only registrations sealed with the replicas' secret, bound to
 * their cluster and their expiry: the unsigned one, one sealed under
 * another secret, a genuine one of another cluster copied here and a
 * genuine one whose sealed expiry passed (scored again to look live) are
 * passed over and counted; the genuine one is used; with only planted
 * ones the cluster has no holder. */
static void test_a_planted_registration_neither_diverts_nor_blocks(void **state)
{
    fixture *fx = *state;
    redisContext *c = redis_conn(fx);
    int64_t now = redis_time_ms(c);
    const char *cid = "cluster-planted";
    char m[512];
    sealed_member(SECRET, cid, "replica-genuine", "127.0.0.2:5081", now + 60000, m, sizeof(m));
    zadd(c, cid, now + 60000, m);
    double unsigned0 = metric(REG_REJECTED("unsigned")),
           bad0 = metric(REG_REJECTED("bad_signature"));
    zadd(c, cid, now + 600000, "rogue 127.0.0.9:6666");
    plant_other_secret(c, cid, now);
    sealed_member(SECRET, "cluster-other", "replica-other", "127.0.0.7:6666", now + 400000, m,
                  sizeof(m));
    zadd(c, cid, now + 400000, m);
    sealed_member(SECRET, cid, "replica-gone", "127.0.0.6:6666", now - 10000, m, sizeof(m));
    zadd(c, cid, now + 300000, m); /* lapsed by its seal, scored to look live */
    char addr[280];
    assert_int_equal(registry_lookup(cid, addr, sizeof(addr)), 1);
    assert_string_equal(addr, "127.0.0.2:5081");
    assert_int_equal((long long)(metric(REG_REJECTED("unsigned")) - unsigned0), 1);
    assert_int_equal((long long)(metric(REG_REJECTED("bad_signature")) - bad0), 2);
    /* only what was planted: nobody holds the cluster */
    sealed_member(SECRET, cid, "replica-genuine", "127.0.0.2:5081", now + 60000, m, sizeof(m));
    redisReply *r = redisCommand(c, "ZREM aurora:agents:%s %s", cid, m);
    assert_non_null(r);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    assert_int_equal(registry_lookup(cid, addr, sizeof(addr)), 0);
    redisFree(c);
}

/* This replica's own registration, as the others read it: one member,
 * sealed as documented (the test's HMAC, not the registry's), scored at
 * its sealed expiry; no unsigned member beside it. */
static void test_own_registration_is_sealed(void **state)
{
    fixture *fx = *state;
    redisContext *c = redis_conn(fx);
    made_token mt = new_token(fx);
    tunnel_session *s = connect_v2(fx, &mt);
    renewal_wait w = { .fx = fx, .c = c, .after_ms = 0 };
    snprintf(w.key, sizeof(w.key), "aurora:agents:%s", mt.t.cluster_id);
    serve_until(fx, renewed_past, &w, "the cluster's registration");
    char names[8][256];
    int64_t scores[8];
    int n = zmembers(c, w.key, names, scores, 8);
    assert_int_equal(n, 1);
    char inst[128], addr[280], want[512];
    long long exp = 0;
    const char *sp = strchr(names[0], ' '); /* the instance may be "" (none registered) */
    assert_non_null(sp);
    snprintf(inst, sizeof(inst), "%.*s", (int)(sp - names[0]), names[0]);
    assert_int_equal(sscanf(sp + 1, "%279s %lld", addr, &exp), 2);
    sealed_member(SECRET, mt.t.cluster_id, inst, addr, exp, want, sizeof(want));
    assert_string_equal(names[0], want);
    assert_true(scores[0] == exp || scores[0] == exp - 1); /* the score: seconds, 3 decimals */
    tunnel_session_drop(s);
    redisFree(c);
}

/* A rolling upgrade from a version that does not seal its registrations:
 * with AURORA_REGISTRY_ACCEPT_UNSIGNED a lookup takes an unsigned one (an
 * old replica's), never one whose seal does not verify; and this replica
 * registers the unsigned form too, ranked above its sealed one, as a
 * replica of the old version takes the first member it meets for the
 * address. */
static void test_unsigned_registrations_are_taken_only_when_accepted(void **state)
{
    fixture *fx = *state;
    redisContext *c = redis_conn(fx);
    int64_t now = redis_time_ms(c);
    const char *cid = "cluster-old";
    zadd(c, cid, now + 60000, "old-replica 127.0.0.3:5081");
    plant_other_secret(c, cid, now);
    char addr[280];
    assert_int_equal(registry_lookup(cid, addr, sizeof(addr)), 1);
    assert_string_equal(addr, "127.0.0.3:5081");

    made_token mt = new_token(fx);
    tunnel_session *s = connect_v2(fx, &mt);
    renewal_wait w = { .fx = fx, .c = c, .after_ms = 0 };
    snprintf(w.key, sizeof(w.key), "aurora:agents:%s", mt.t.cluster_id);
    serve_until(fx, renewed_past, &w, "the cluster's registration");
    redisReply *r = redisCommand(c, "ZREVRANGE %s 0 -1", w.key);
    assert_non_null(r);
    assert_int_equal(r->elements, 2);
    const char *first = r->element[0]->str, *sp = strchr(first, ' ');
    assert_non_null(sp);
    assert_null(strchr(sp + 1, ' ')); /* "<instance> <addr>", as the old version reads it */
    assert_int_equal(strncmp(r->element[1]->str, first, strlen(first)), 0);
    freeReplyObject(r);
    tunnel_session_drop(s);
    redisFree(c);
}

int main(void)
{
#if WITH_ASAN
    __sanitizer_install_malloc_and_free_hooks(count_malloc, count_free);
#endif
    log_setup("test", "error", "text");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_flood_is_bounded_and_a_revocation_in_it_honoured,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_rank_clock_is_redis_s, setup_clock_ahead,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_registrations_are_on_redis_s_clock,
                                        setup_clock_ahead_short_lease, teardown),
        cmocka_unit_test_setup_teardown(test_a_refused_publish_is_kept_and_sent_again, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_close_reason_is_cut_on_a_character_boundary,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_resync_requests_are_answered_together,
                                        setup_long_lease, teardown),
        cmocka_unit_test_setup_teardown(test_an_oversized_message_is_not_parsed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ignored_messages_are_logged_once_a_minute, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_forged_close_closes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_close_sealed_under_another_secret_closes_nothing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_replayed_close_closes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsigned_messages_are_taken_only_when_accepted,
                                        setup_accept_unsigned, teardown),
        cmocka_unit_test_setup_teardown(test_a_planted_registration_neither_diverts_nor_blocks,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_own_registration_is_sealed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsigned_registrations_are_taken_only_when_accepted,
                                        setup_accept_unsigned, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
