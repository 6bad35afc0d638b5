/* hub_loop.h — what the unit tests that drive the server's tunnel hub on a
 * listen-less lws context share: running that loop until a condition holds,
 * agent tokens made straight in the store, and "the session has settled".
 *
 * Include after cmocka.h, libwebsockets.h, store.h, token.h and tunnel.h. */
#ifndef AURORA_TEST_HUB_LOOP_H
#define AURORA_TEST_HUB_LOOP_H

#include <stdint.h>
#include <string.h>
#include <time.h>

typedef struct {
    lws_sorted_usec_list_t sul;
    struct lws_context *lws;
} hub_loop_ticker;

/* lws runs ripe timers (a deadline, a token expiry) at the start of a
 * service call, then waits for the next event: a timer every 10 ms bounds
 * that wait, so the condition is looked at again within 10 ms of what a
 * timer or another thread did. */
static inline void hub_loop_tick(lws_sorted_usec_list_t *sul)
{
    hub_loop_ticker *t = lws_container_of(sul, hub_loop_ticker, sul);
    lws_sul_schedule(t->lws, 0, &t->sul, hub_loop_tick, 10 * LWS_US_PER_MS);
}

static inline int64_t hub_loop_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs lws's loop (timers, the worker pool's completions, client
 * connections) until pred(arg) holds; fails the test after wait_ms. */
static inline void hub_serve_until(struct lws_context *lws, int (*pred)(void *), void *arg,
                                   int wait_ms, const char *what)
{
    hub_loop_ticker t;
    memset(&t, 0, sizeof(t));
    t.lws = lws;
    int64_t end = hub_loop_now_ms() + wait_ms;
    lws_sul_schedule(lws, 0, &t.sul, hub_loop_tick, 10 * LWS_US_PER_MS);
    while (!pred(arg) && hub_loop_now_ms() < end)
        lws_service(lws, 0);
    lws_sul_cancel(&t.sul);
    if (!pred(arg))
        fail_msg("waited %d ms in vain for %s", wait_ms, what);
}

typedef struct {
    char token[AGENT_TOKEN_LEN + 1];
    char bearer[AGENT_TOKEN_LEN + 8];
    store_agent_token t;
} made_token;

/* A new agent token of org_id, made by user_id, stored (expires_at 0:
 * never), with its "Bearer …" header value. */
static inline made_token hub_new_token(store_t *st, const char *org_id, const char *user_id,
                                       int64_t expires_at)
{
    made_token m;
    memset(&m, 0, sizeof(m));
    assert_int_equal(token_new_agent(m.token), 0);
    snprintf(m.bearer, sizeof(m.bearer), "Bearer %s", m.token);
    char hash[65];
    token_hash(m.token, hash);
    snprintf(m.t.org_id, sizeof(m.t.org_id), "%s", org_id);
    snprintf(m.t.created_by, sizeof(m.t.created_by), "%s", user_id);
    token_cluster_id(m.token, m.t.cluster_id);
    snprintf(m.t.cluster_name, sizeof(m.t.cluster_name), "name-%s", m.t.cluster_id);
    token_preview(m.token, m.t.preview);
    m.t.expires_at = expires_at;
    if (store_agent_token_create(st, &m.t, hash) != STORE_OK)
        fail_msg("agent_token_create: %s", store_errmsg(st));
    return m;
}

/* hub_serve_until's condition: the session is ready or has been closed. */
static inline int hub_session_settled(void *arg)
{
    tunnel_session *s = arg;
    return tunnel_session_ready(s) || tunnel_session_close_code(s, NULL);
}

#endif
