/* test_agent_tunnel.c — the tunnel's message handling (agent/tunnel.c)
 * without a server or a socket: messages go in through
 * agent_tunnel_handle_message as if received on a connection, and what the
 * tunnel answers is read from its outgoing queue.  Covered: the register
 * sent on `connected` (content, once), dispatch of exec / credit / cancel /
 * kubectl_command to a real runner (a fake kubectl script), the policy and
 * cloud_exec refusals, busy, malformed and unknown messages, a reconnect's
 * new generation, two tunnels side by side, reading paused while the
 * outgoing queue is backlogged, and a message over the control limit ending
 * what the connection may still do (fragments through agent_tunnel_receive).  The connection itself
 * (lws, TLS, reconnects, shutdown) is covered by tests/integration against
 * the real server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent_config.h"
#include "stderr_capture.h"
#include "log.h"
#include "metrics.h"
#include "outq.h"
#include "policy.h"
#include "proto.h"
#include "runner.h"
/* by path: -Iserver comes first and the server has a tunnel.h too */
#include "../../agent/tunnel.h"

#define WAIT_MS 20000
#define TOKEN "aurora_kubectl_" \
              "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

static char g_dir[256];
static char g_kubectl[300];

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One message the tunnel queued, decoded. */
typedef struct {
    char *json;           /* the text */
    proto_msg m;
} sent;

typedef struct {
    agent_config cfg;
    agent_outq *q;
    agent_runner *r;
    agent_tunnel *t;
    uint64_t gen;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int events;
    sent msgs[64];
    int nmsgs;
    char data[4][4096];   /* stdout per request id 1..3 */
    size_t datalen[4];
} fixture;

static void on_event(void *arg)
{
    fixture *fx = arg;
    pthread_mutex_lock(&fx->mu);
    fx->events++;
    pthread_cond_broadcast(&fx->cv);
    pthread_mutex_unlock(&fx->mu);
}

static void on_room(void *arg)
{
    fixture *fx = arg;
    if (fx->r)
        agent_runner_wake_room(fx->r);
}

/* env: extra NAME=value settings for the agent's configuration; the
 * outgoing queue's data and control caps (outq.h). */
static fixture *fixture_new_q(const char *const *env, size_t cap, size_t ctl_cap)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    pthread_mutex_init(&fx->mu, NULL);
    pthread_cond_init(&fx->cv, NULL);
    setenv("NEXT_PUBLIC_WEBSOCKET_URL", "wss://127.0.0.1:9/kubectl-agent", 1);
    setenv("AURORA_AGENT_TOKEN", TOKEN, 1);
    setenv("AURORA_KUBECTL_PATH", g_kubectl, 1);
    setenv("AURORA_MAX_CONCURRENT", "1", 1);
    setenv("AURORA_CLOUD_EXEC", "disabled", 1);
    setenv("AURORA_HEALTH_PORT", "0", 1);
    unsetenv("AURORA_POLICY_MODE");
    unsetenv("AURORA_AGENT_CONFIG");
    for (int i = 0; env && env[i]; i++) {
        char name[128];
        const char *eq = strchr(env[i], '=');
        assert_non_null(eq);
        snprintf(name, sizeof(name), "%.*s", (int)(eq - env[i]), env[i]);
        setenv(name, eq + 1, 1);
    }
    char err[512];
    if (agent_config_load(&fx->cfg, err, sizeof(err)) != 0)
        fail_msg("config: %s", err);
    unsetenv("AURORA_AGENT_TOKEN");

    agent_outq_opts qo = {.cap = cap,
                          .ctl_cap = ctl_cap,
                          .on_push = on_event,
                          .on_push_arg = fx,
                          .on_room = on_room,
                          .on_room_arg = fx};
    fx->q = agent_outq_new(&qo);
    assert_non_null(fx->q);
    agent_runner_opts ro = {.kubectl_path = fx->cfg.kubectl_path,
                            .max_concurrent = fx->cfg.max_concurrent,
                            .timeout_max = fx->cfg.command_timeout_max,
                            .max_output = fx->cfg.max_output,
                            .outq = fx->q,
                            .notify = on_event,
                            .notify_arg = fx};
    fx->r = agent_runner_new(&ro);
    assert_non_null(fx->r);
    fx->t = agent_tunnel_new(&fx->cfg, fx->r, fx->q);
    assert_non_null(fx->t);
    fx->gen = agent_tunnel_begin_session(fx->t);
    assert_true(fx->gen > 0);
    return fx;
}

static fixture *fixture_new(const char *const *env)
{
    return fixture_new_q(env, 1 << 20, 0);
}

static void forget_messages(fixture *fx)
{
    for (int i = 0; i < fx->nmsgs; i++) {
        proto_msg_free(&fx->msgs[i].m);
        free(fx->msgs[i].json);
    }
    fx->nmsgs = 0;
}

static void fixture_free(fixture *fx)
{
    agent_runner_stop(fx->r);
    agent_tunnel_free(fx->t);
    agent_runner_free(fx->r);
    fx->r = NULL;
    agent_outq_free(fx->q);
    forget_messages(fx);
    agent_config_free(&fx->cfg);
    pthread_cond_destroy(&fx->cv);
    pthread_mutex_destroy(&fx->mu);
    free(fx);
}

static void say(fixture *fx, const char *json)
{
    agent_tunnel_handle_message(fx->t, json, strlen(json));
}

/* Moves whatever is queued into fx->msgs / fx->data. */
static void drain(fixture *fx)
{
    agent_frame *f;
    while ((f = agent_outq_pop(fx->q))) {
        unsigned char *d = agent_frame_data(f);
        if (f->binary) {
            int ch;
            uint32_t id;
            const unsigned char *p;
            size_t n;
            assert_int_equal(proto_data_parse(d, f->len, &ch, &id, &p, &n), 0);
            assert_true(id >= 1 && id <= 3);
            assert_true(fx->datalen[id] + n < sizeof(fx->data[id]));
            memcpy(fx->data[id] + fx->datalen[id], p, n);
            fx->datalen[id] += n;
            fx->data[id][fx->datalen[id]] = '\0';
        } else {
            assert_true(fx->nmsgs < 64);
            sent *s = &fx->msgs[fx->nmsgs++];
            memset(s, 0, sizeof(*s));
            s->json = strndup((const char *)d, f->len);
            assert_non_null(s->json);
            char err[256];
            assert_int_equal(proto_decode(s->json, f->len, &s->m, err, sizeof(err)), 0);
        }
        agent_frame_free(f);
    }
    agent_runner_reap(fx->r);
}

/* The queued exec_end for id, or NULL. */
static const proto_msg *find_end(fixture *fx, uint32_t id)
{
    for (int i = 0; i < fx->nmsgs; i++)
        if (fx->msgs[i].m.type == MSG_EXEC_END && fx->msgs[i].m.id == id)
            return &fx->msgs[i].m;
    return NULL;
}

static const proto_msg *find_type(fixture *fx, proto_type type)
{
    for (int i = 0; i < fx->nmsgs; i++)
        if (fx->msgs[i].m.type == type)
            return &fx->msgs[i].m;
    return NULL;
}

static int count_type(fixture *fx, proto_type type)
{
    int n = 0;
    for (int i = 0; i < fx->nmsgs; i++)
        n += fx->msgs[i].m.type == type;
    return n;
}

/* Drains until pred holds, waiting on the queue's and the runner's events. */
static void pump_until(fixture *fx, int (*pred)(fixture *, uint32_t), uint32_t arg)
{
    int64_t deadline = now_ms() + WAIT_MS;
    for (;;) {
        pthread_mutex_lock(&fx->mu);
        int seen = fx->events;
        pthread_mutex_unlock(&fx->mu);
        drain(fx);
        if (pred(fx, arg))
            return;
        int64_t left = deadline - now_ms();
        if (left <= 0)
            fail_msg("timed out waiting on the tunnel's answers");
        pthread_mutex_lock(&fx->mu);
        if (fx->events == seen) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t w = left < 200 ? left : 200;
            ts.tv_nsec += w * 1000000;
            ts.tv_sec += ts.tv_nsec / 1000000000;
            ts.tv_nsec %= 1000000000;
            pthread_cond_timedwait(&fx->cv, &fx->mu, &ts);
        }
        pthread_mutex_unlock(&fx->mu);
    }
}

static int has_end(fixture *fx, uint32_t id)
{
    return find_end(fx, id) != NULL;
}

static int has_response(fixture *fx, uint32_t n)
{
    return count_type(fx, MSG_COMMAND_RESPONSE) >= (int)n;
}

static int has_stdout(fixture *fx, uint32_t id_and_len)
{
    return fx->datalen[id_and_len & 3] >= (id_and_len >> 2);
}

static int idle(fixture *fx, uint32_t unused)
{
    return agent_runner_active(fx->r) == 0;
}

static const proto_msg *wait_end(fixture *fx, uint32_t id)
{
    pump_until(fx, has_end, id);
    return find_end(fx, id);
}

/* ---- tests ------------------------------------------------------------------ */

static void connected_sends_register_once(void **state)
{
    fixture *fx = fixture_new(NULL);
    say(fx, "{\"type\":\"connected\",\"cluster_id\":\"whatever\",\"protocol\":2,"
            "\"window\":65536}");
    drain(fx);
    assert_int_equal(fx->nmsgs, 1);
    const proto_msg *m = &fx->msgs[0].m;
    assert_int_equal(m->type, MSG_REGISTER);
    assert_string_equal(m->cluster_id, fx->cfg.cluster_id);
    assert_memory_equal(m->cluster_id, "cluster-", 8);
    assert_string_equal(m->agent_version, fx->cfg.version);
    assert_int_equal(m->protocol, 2);
    assert_int_equal(m->max_concurrent, 1);
    /* the process's random id and its first connection (a server closes an
     * older, dead connection of the same process when it sees a newer one) */
    assert_non_null(m->instance);
    assert_int_equal(strlen(m->instance), 32);
    assert_int_equal(m->connection, 1);
    /* the policy and cloud_exec settings, for the server to show */
    cJSON *o = cJSON_Parse(fx->msgs[0].json);
    assert_non_null(o);
    const cJSON *pol = cJSON_GetObjectItemCaseSensitive(o, "policy");
    assert_true(cJSON_IsObject(pol));
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(pol, "mode")->valuestring, "readonly");
    const cJSON *cloud = cJSON_GetObjectItemCaseSensitive(o, "cloud_exec");
    assert_true(cJSON_IsObject(cloud));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(cloud, "enabled")));
    /* never the token */
    assert_null(strstr(fx->msgs[0].json, TOKEN));
    assert_null(strstr(fx->msgs[0].json, "aurora_kubectl_"));
    cJSON_Delete(o);

    /* a repeated connected changes nothing */
    say(fx, "{\"type\":\"connected\",\"protocol\":2}");
    drain(fx);
    assert_int_equal(fx->nmsgs, 1);
    fixture_free(fx);
}

/* Without protocol 2 (and no v2 handshake) the agent registers as legacy. */
static void legacy_connected_registers_like_the_python_agent(void **state)
{
    const char *env[] = {"AURORA_POLICY_MODE=readwrite", NULL};
    fixture *fx = fixture_new(env);
    say(fx, "{\"type\":\"connected\"}");
    drain(fx);
    const proto_msg *m = find_type(fx, MSG_REGISTER);
    assert_non_null(m);
    /* what the Python agent sends: no protocol, no max_concurrent */
    assert_int_equal(m->protocol, 0);
    assert_int_equal(m->max_concurrent, 0);
    assert_null(strstr(fx->msgs[0].json, "\"protocol\""));
    assert_non_null(strstr(fx->msgs[0].json, "\"mode\":\"readwrite\""));
    fixture_free(fx);
}

/* exec → the runner (the fake kubectl echoes its arguments), window from
 * `connected`, credit messages reach the runner. */
static void exec_runs_with_the_connected_window_and_credit(void **state)
{
    fixture *fx = fixture_new(NULL);
    say(fx, "{\"type\":\"connected\",\"protocol\":2,\"window\":4}");
    drain(fx);
    say(fx, "{\"type\":\"exec\",\"id\":1,\"argv\":[\"get\",\"pods\",\"-A\"],\"timeout\":10}");
    pump_until(fx, has_stdout, 1 | (4 << 2));
    assert_int_equal(fx->datalen[1], 4); /* the window */
    assert_null(find_end(fx, 1));
    say(fx, "{\"type\":\"credit\",\"id\":1,\"bytes\":1000}");
    const proto_msg *m = wait_end(fx, 1);
    assert_int_equal(m->return_code, 0);
    assert_null(m->error_code);
    assert_string_equal(fx->data[1], "get pods -A\n");
    /* credit / cancel for ids not running are ignored, nothing is sent */
    pump_until(fx, idle, 0);
    int before = fx->nmsgs;
    say(fx, "{\"type\":\"credit\",\"id\":1,\"bytes\":10}");
    say(fx, "{\"type\":\"cancel\",\"id\":77}");
    say(fx, "{\"type\":\"heartbeat_ack\"}");
    drain(fx);
    assert_int_equal(fx->nmsgs, before);
    fixture_free(fx);
}

static void policy_and_kind_refusals(void **state)
{
    fixture *fx = fixture_new(NULL);
    say(fx, "{\"type\":\"connected\",\"protocol\":2}");
    say(fx, "{\"type\":\"exec\",\"id\":1,\"argv\":[\"delete\",\"pod\",\"x\"]}");
    say(fx, "{\"type\":\"exec\",\"id\":2,\"kind\":\"helm\",\"argv\":[\"list\"]}");
    say(fx, "{\"type\":\"exec\",\"id\":3,\"kind\":\"cloud_exec\",\"program\":\"aws\","
            "\"argv\":[\"sts\",\"get-caller-identity\"],\"env\":{\"AWS_ACCESS_KEY_ID\":\"AKIA\"}}");
    drain(fx);
    const proto_msg *m = find_end(fx, 1);
    assert_non_null(m);
    assert_int_equal(m->return_code, POLICY_DENIED_RC);
    assert_string_equal(m->error_code, EC_POLICY_DENIED);
    assert_non_null(strstr(m->error, "delete"));
    m = find_end(fx, 2);
    assert_non_null(m);
    assert_string_equal(m->error_code, EC_BAD_REQUEST);
    assert_non_null(strstr(m->error, "helm"));
    m = find_end(fx, 3);
    assert_non_null(m);
    assert_string_equal(m->error_code, EC_POLICY_DENIED);
    assert_non_null(strstr(m->error, "disabled"));
    /* nothing ran, and the credentials were not echoed back */
    assert_int_equal(agent_runner_active(fx->r), 0);
    for (int i = 0; i < fx->nmsgs; i++)
        assert_null(strstr(fx->msgs[i].json, "AKIA"));
    fixture_free(fx);
}

/* Malformed input: an exec that names a usable id gets BAD_REQUEST, anything
 * else is dropped; the tunnel keeps serving afterwards. */
static void malformed_messages(void **state)
{
    fixture *fx = fixture_new(NULL);
    say(fx, "{\"type\":\"connected\",\"protocol\":2}");
    drain(fx);
    forget_messages(fx);
    static const char *const dropped[] = {
        "not json",
        "",
        "[1,2,3]",
        "{\"type\":42}",
        "{\"id\":1}",
        "{\"type\":\"exec\"}",                                 /* no id */
        "{\"type\":\"exec\",\"id\":0,\"argv\":[]}",           /* id 0 */
        "{\"type\":\"exec\",\"id\":-3,\"argv\":[\"get\"]}",   /* negative */
        "{\"type\":\"exec\",\"id\":1.5,\"argv\":[\"get\"]}",  /* not an integer */
        "{\"type\":\"exec\",\"id\":4294967296,\"argv\":[]}",  /* beyond uint32 */
        "{\"type\":\"kubectl_command\",\"command\":\"get pods\"}", /* no command_id */
        "{\"type\":\"no_such_type\",\"id\":1}",
        "{\"type\":\"exec\",\"id\":1,\"argv\":[\"get\"]",     /* truncated */
    };
    for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++) {
        say(fx, dropped[i]);
        drain(fx);
        if (fx->nmsgs)
            fail_msg("%s got an answer: %s", dropped[i], fx->msgs[0].json);
    }
    assert_int_equal(agent_runner_active(fx->r), 0);

    say(fx, "{\"type\":\"exec\",\"id\":2,\"argv\":\"get pods\"}");
    say(fx, "{\"type\":\"exec\",\"id\":3,\"argv\":[\"get\",7]}");
    say(fx, "{\"type\":\"exec\",\"id\":1,\"argv\":[\"get\"],\"env\":{\"bad-name\":\"x\"}}");
    drain(fx);
    assert_int_equal(fx->nmsgs, 3);
    for (uint32_t id = 1; id <= 3; id++) {
        const proto_msg *m = find_end(fx, id);
        assert_non_null(m);
        assert_string_equal(m->error_code, EC_BAD_REQUEST);
        assert_int_equal(m->return_code, 1);
    }
    assert_int_equal(agent_runner_active(fx->r), 0);

    /* still serving */
    say(fx, "{\"type\":\"exec\",\"id\":1,\"argv\":[\"version\"]}");
    forget_messages(fx);
    const proto_msg *m = wait_end(fx, 1);
    assert_int_equal(m->return_code, 0);
    assert_string_equal(fx->data[1], "version\n");
    fixture_free(fx);
}

/* One slot (AURORA_MAX_CONCURRENT=1): the second exec is refused busy, a
 * cancel message ends the first, and the slot is free again. */
static void busy_and_cancel(void **state)
{
    fixture *fx = fixture_new(NULL);
    say(fx, "{\"type\":\"connected\",\"protocol\":2}");
    say(fx, "{\"type\":\"exec\",\"id\":1,\"argv\":[\"get\",\"slow\"],\"timeout\":30}");
    say(fx, "{\"type\":\"exec\",\"id\":2,\"argv\":[\"get\",\"pods\"]}");
    drain(fx);
    const proto_msg *m = find_end(fx, 2);
    assert_non_null(m);
    assert_string_equal(m->error_code, EC_BUSY);
    assert_non_null(strstr(m->error, "1 commands already running"));
    assert_null(find_end(fx, 1));
    assert_int_equal(agent_runner_active(fx->r), 1);
    say(fx, "{\"type\":\"cancel\",\"id\":1}");
    m = wait_end(fx, 1);
    assert_int_equal(m->return_code, 130);
    assert_string_equal(m->error_code, EC_CANCELLED);
    assert_int_equal(count_type(fx, MSG_EXEC_END), 2); /* one each */
    say(fx, "{\"type\":\"exec\",\"id\":3,\"argv\":[\"get\",\"ns\"]}");
    m = wait_end(fx, 3);
    assert_int_equal(m->return_code, 0);
    assert_string_equal(fx->data[3], "get ns\n");
    fixture_free(fx);
}

/* An exec reusing the id of a running command is refused at once
 * (BAD_REQUEST), not left for the server to wait on until its deadline; the
 * running command goes on and still ends with its own exec_end. */
static void duplicate_exec_refused_running_command_untouched(void **state)
{
    fixture *fx = fixture_new(NULL);
    say(fx, "{\"type\":\"connected\",\"protocol\":2}");
    say(fx, "{\"type\":\"exec\",\"id\":7,\"argv\":[\"get\",\"slow\"],\"timeout\":30}");
    say(fx, "{\"type\":\"exec\",\"id\":7,\"argv\":[\"get\",\"pods\"]}");
    const proto_msg *m = wait_end(fx, 7);
    assert_int_equal(m->return_code, 1);
    assert_string_equal(m->error_code, EC_BAD_REQUEST);
    assert_non_null(strstr(m->error, "id 7 is already running"));
    assert_int_equal(agent_runner_active(fx->r), 1); /* the first still runs */
    forget_messages(fx);
    say(fx, "{\"type\":\"cancel\",\"id\":7}");
    m = wait_end(fx, 7);
    assert_int_equal(m->return_code, 130);
    assert_string_equal(m->error_code, EC_CANCELLED);
    assert_int_equal(count_type(fx, MSG_EXEC_END), 1);
    fixture_free(fx);
}

/* Fragments as the connection's RECEIVE callback gets them; text is wiped
 * once read, so each goes from its own copy. */
static void receive(fixture *fx, const char *data, size_t len, int first, int final, int binary)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, data, len);
    agent_tunnel_receive(fx->t, copy, len, first, final, binary);
    free(copy);
}

static void receive_text(fixture *fx, const char *json)
{
    receive(fx, json, strlen(json), 1, 1, 0);
}

/* A message over the control limit means the server misbehaves or the
 * stream lost its framing: the agent closes with 1009, and nothing read on
 * that connection from then on (here in the same pass, as when the requests
 * follow in the same TCP segment) is acted on: no command starts, nothing is
 * answered, the command already running is stopped without an answer.  The
 * next connection starts clean. */
static void oversized_message_ends_the_connection(void **state)
{
    const char *env[] = {"AURORA_MAX_CONCURRENT=4", NULL};
    fixture *fx = fixture_new(env);
    say(fx, "{\"type\":\"connected\",\"protocol\":2}");
    say(fx, "{\"type\":\"exec\",\"id\":1,\"argv\":[\"get\",\"slow\"],\"timeout\":30}");
    drain(fx);
    assert_int_equal(agent_runner_active(fx->r), 1);
    forget_messages(fx);

    /* 1 MiB + 64 KiB in 64 KiB fragments (lws's receive buffer) */
    enum { CHUNK = 65536 };
    char *big = malloc(CHUNK);
    assert_non_null(big);
    memset(big, 'x', CHUNK);
    for (size_t got = 0; got <= PROTO_MAX_CONTROL; got += CHUNK)
        receive(fx, big, CHUNK, got == 0, got + CHUNK > PROTO_MAX_CONTROL, 0);
    free(big);
    receive_text(fx, "{\"type\":\"exec\",\"id\":2,\"argv\":[\"get\",\"pods\"]}");
    receive_text(fx, "{\"type\":\"kubectl_command\",\"command_id\":\"c1\","
                     "\"command\":\"kubectl get ns\"}");
    receive_text(fx, "{\"type\":\"exec\",\"id\":3,\"argv\":[\"delete\",\"pod\",\"x\"]}");
    receive_text(fx, "{\"type\":\"connected\",\"protocol\":2}");
    receive(fx, "\x01\x00\x00\x00\x02" "data", 9, 1, 1, 1);
    drain(fx);
    assert_int_equal(fx->nmsgs, 0); /* a refusal (id 3) would be queued by now */

    pump_until(fx, idle, 0); /* the running command stopped */
    drain(fx);
    assert_int_equal(fx->nmsgs, 0);        /* no exec_end, no refusal, no register */
    for (int id = 1; id <= 3; id++)
        assert_int_equal(fx->datalen[id], 0);
    assert_int_equal(agent_runner_active(fx->r), 0);

    /* the next connection is read and served again */
    fx->gen = agent_tunnel_begin_session(fx->t);
    receive_text(fx, "{\"type\":\"connected\",\"protocol\":2}");
    receive_text(fx, "{\"type\":\"exec\",\"id\":2,\"argv\":[\"get\",\"pods\"]}");
    const proto_msg *m = wait_end(fx, 2);
    assert_int_equal(m->return_code, 0);
    assert_string_equal(fx->data[2], "get pods\n");
    assert_non_null(find_type(fx, MSG_REGISTER));
    fixture_free(fx);
}

static void legacy_kubectl_command(void **state)
{
    fixture *fx = fixture_new(NULL);
    say(fx, "{\"type\":\"connected\"}");
    say(fx, "{\"type\":\"kubectl_command\",\"command_id\":\"c-1\","
            "\"command\":\"kubectl get pods -n 'my ns'\",\"timeout\":10}");
    pump_until(fx, has_response, 1);
    const proto_msg *m = find_type(fx, MSG_COMMAND_RESPONSE);
    assert_string_equal(m->command_id, "c-1");
    assert_int_equal(m->success, 1);
    assert_int_equal(m->return_code, 0);
    assert_string_equal(m->output, "get pods -n my ns\n"); /* leading kubectl dropped */

    forget_messages(fx);
    say(fx, "{\"type\":\"kubectl_command\",\"command_id\":\"c-2\",\"command\":\"get 'open\"}");
    say(fx, "{\"type\":\"kubectl_command\",\"command_id\":\"c-3\",\"command\":\"delete ns x\"}");
    drain(fx);
    assert_int_equal(count_type(fx, MSG_COMMAND_RESPONSE), 2);
    for (int i = 0; i < fx->nmsgs; i++) {
        m = &fx->msgs[i].m;
        assert_int_equal(m->success, 0);
        if (!strcmp(m->command_id, "c-2")) {
            assert_int_equal(m->return_code, 1);
        } else {
            assert_string_equal(m->command_id, "c-3");
            assert_int_equal(m->return_code, POLICY_DENIED_RC);
            assert_non_null(strstr(m->error, EC_POLICY_DENIED));
        }
    }
    fixture_free(fx);
}

/* A server sending requests to refuse faster than it reads the answers: the
 * tunnel stops reading once the control lane reaches its cap (no refusal is
 * dropped: every exec gets its exec_end, in order), stays paused while the
 * queue holds more than half of it, and reads again once a write pass finds
 * it drained.  A new connection starts reading. */
static void refusals_past_the_control_cap_pause_reading(void **state)
{
    fixture *fx = fixture_new_q(NULL, 1 << 20, 2048);
    say(fx, "{\"type\":\"connected\",\"protocol\":2}");
    drain(fx); /* the register */
    agent_tunnel_after_write(fx->t);
    assert_false(agent_tunnel_rx_paused(fx->t));
    forget_messages(fx);

    int n = 0;
    char msg[128];
    while (!agent_tunnel_rx_paused(fx->t)) {
        assert_true(n < 40); /* ~230-byte refusals: 2 KiB is about 9 */
        snprintf(msg, sizeof(msg), "{\"type\":\"exec\",\"id\":%d,\"argv\":[\"delete\",\"pod\",\"x\"]}",
                 ++n);
        say(fx, msg);
    }
    assert_true(n >= 5);
    /* nothing written yet: a write pass that took nothing changes nothing */
    agent_tunnel_after_write(fx->t);
    assert_true(agent_tunnel_rx_paused(fx->t));
    /* one frame taken: still above half the cap */
    agent_frame_free(agent_outq_pop(fx->q));
    agent_tunnel_after_write(fx->t);
    assert_true(agent_tunnel_rx_paused(fx->t));
    drain(fx);
    agent_tunnel_after_write(fx->t);
    assert_false(agent_tunnel_rx_paused(fx->t));
    /* the first was popped above; every other one is there, in order */
    assert_int_equal(fx->nmsgs, n - 1);
    for (int i = 0; i < fx->nmsgs; i++) {
        const proto_msg *m = &fx->msgs[i].m;
        assert_int_equal(m->type, MSG_EXEC_END);
        assert_int_equal(m->id, (uint32_t)(i + 2));
        assert_string_equal(m->error_code, EC_POLICY_DENIED);
    }
    forget_messages(fx);

    /* paused again (and /metrics says so), then the connection goes: the
     * next one reads */
    while (!agent_tunnel_rx_paused(fx->t)) {
        snprintf(msg, sizeof(msg), "{\"type\":\"exec\",\"id\":%d,\"argv\":[\"delete\",\"pod\",\"x\"]}",
                 ++n);
        say(fx, msg);
    }
    char *text = metrics_render(NULL);
    assert_non_null(strstr(text, "\naurora_agent_reading_paused 1\n"));
    free(text);
    fx->gen = agent_tunnel_begin_session(fx->t);
    assert_false(agent_tunnel_rx_paused(fx->t));
    text = metrics_render(NULL);
    assert_non_null(strstr(text, "\naurora_agent_reading_paused 0\n"));
    free(text);
    assert_true(agent_outq_empty(fx->q));
    fixture_free(fx);
}

/* The legacy dialect answers refusals on the data lane (with the responses):
 * past its cap plus the control cap, reading pauses too, and resumes once the
 * lane is back below its cap. */
static void legacy_refusals_past_the_data_cap_pause_reading(void **state)
{
    fixture *fx = fixture_new_q(NULL, 1024, 512);
    say(fx, "{\"type\":\"connected\"}");
    drain(fx);
    agent_tunnel_after_write(fx->t);
    forget_messages(fx);
    int n = 0;
    char msg[160];
    while (!agent_tunnel_rx_paused(fx->t)) {
        assert_true(n < 40);
        snprintf(msg, sizeof(msg), "{\"type\":\"kubectl_command\",\"command_id\":\"c-%d\","
                                   "\"command\":\"delete ns x\"}", ++n);
        say(fx, msg);
    }
    assert_true(n >= 4);
    drain(fx);
    agent_tunnel_after_write(fx->t);
    assert_false(agent_tunnel_rx_paused(fx->t));
    assert_int_equal(count_type(fx, MSG_COMMAND_RESPONSE), n);
    for (int i = 0; i < fx->nmsgs; i++) {
        char want[32];
        snprintf(want, sizeof(want), "c-%d", i + 1);
        assert_string_equal(fx->msgs[i].m.command_id, want);
        assert_int_equal(fx->msgs[i].m.return_code, POLICY_DENIED_RC);
    }
    fixture_free(fx);
}

/* A new connection generation: what was queued for the old one is gone and
 * the tunnel starts over (register again on the next connected). */
static void new_session_starts_clean(void **state)
{
    fixture *fx = fixture_new(NULL);
    say(fx, "{\"type\":\"connected\",\"protocol\":2}");
    say(fx, "{\"type\":\"exec\",\"id\":1,\"argv\":[\"delete\",\"x\"]}");
    uint64_t g2 = agent_tunnel_begin_session(fx->t);
    assert_true(g2 > fx->gen);
    drain(fx);
    assert_int_equal(fx->nmsgs, 0); /* the register and the refusal were for the old one */
    say(fx, "{\"type\":\"connected\",\"protocol\":2}");
    drain(fx);
    assert_int_equal(count_type(fx, MSG_REGISTER), 1);
    /* the same process: its second connection */
    const proto_msg *m = find_type(fx, MSG_REGISTER);
    assert_non_null(m->instance);
    assert_int_equal(m->connection, 2);
    fixture_free(fx);
}

/* Two tunnels with their own runner and queue do not see each other. */
static void two_tunnels_coexist(void **state)
{
    fixture *a = fixture_new(NULL);
    const char *env[] = {"AURORA_MAX_CONCURRENT=2", NULL};
    fixture *b = fixture_new(env);
    say(a, "{\"type\":\"connected\",\"protocol\":2}");
    say(b, "{\"type\":\"connected\",\"protocol\":2}");
    say(a, "{\"type\":\"exec\",\"id\":1,\"argv\":[\"get\",\"a\"]}");
    say(b, "{\"type\":\"exec\",\"id\":1,\"argv\":[\"get\",\"b\"]}");
    wait_end(a, 1);
    wait_end(b, 1);
    assert_string_equal(a->data[1], "get a\n");
    assert_string_equal(b->data[1], "get b\n");
    assert_int_equal(find_type(a, MSG_REGISTER)->protocol, 2);
    assert_int_equal(find_type(a, MSG_REGISTER)->max_concurrent, 1);
    assert_int_equal(find_type(b, MSG_REGISTER)->protocol, 2);
    assert_int_equal(find_type(b, MSG_REGISTER)->max_concurrent, 2);
    assert_int_equal(count_type(a, MSG_EXEC_END), 1);
    assert_int_equal(count_type(b, MSG_EXEC_END), 1);
    fixture_free(a);
    fixture_free(b);
}


/* Text a server chose (a legacy command id, the cluster's id and name in
 * `connected`, an exec's kind, an unknown message type) reaches the
 * agent's log lines: a compromised or buggy server must not put terminal
 * escape sequences (ESC, BEL, the C1 CSI U+009B) or invalid UTF-8 into the
 * text log an operator reads with `kubectl logs` in a terminal.  The legacy
 * responses still echo the command ids' control characters as sent. */
#define HOSTILE "x\\u001b]0;owned\\u0007\\u009b2J\\u001b[31m\xff"
/* what the ids come back with: the control characters as sent (the 0xff is
 * repaired to U+FFFD in a response that the command's output fills) */
#define HOSTILE_CTL "x\x1b]0;owned\x07\xc2\x9b" "2J\x1b[31m"

static int responses_2(fixture *fx, uint32_t unused)
{
    (void)unused;
    return count_type(fx, MSG_COMMAND_RESPONSE) >= 2 && agent_runner_active(fx->r) == 0;
}

static void say_hostile_things(void *arg)
{
    fixture *fx = arg;
    say(fx, "{\"type\":\"connected\",\"protocol\":2,\"cluster_id\":\"" HOSTILE
            "\",\"cluster_name\":\"" HOSTILE "\"}");
    say(fx, "{\"type\":\"kubectl_command\",\"command_id\":\"" HOSTILE
            "\",\"command\":\"get pods\",\"timeout\":10}");
    say(fx, "{\"type\":\"kubectl_command\",\"command_id\":\"" HOSTILE "-2"
            "\",\"command\":\"delete ns x\"}");
    say(fx, "{\"type\":\"exec\",\"id\":7,\"kind\":\"" HOSTILE "\",\"argv\":[\"get\"]}");
    say(fx, "{\"type\":\"" HOSTILE "\"}");
    pump_until(fx, responses_2, 0);
}

static void server_text_is_escaped_in_logs(void **state)
{
    (void)state;
    fixture *fx = fixture_new(NULL);
    log_setup("agent", "debug", "text");
    FILE *f = stderr_capture(say_hostile_things, fx);
    log_setup("agent", "error", "text");
    char line[8192];
    int lines = 0, connected = 0, started = 0, refused = 0, kind = 0, type = 0;
    while (fgets(line, sizeof(line), f)) {
        lines++;
        connected += strstr(line, "connected as") != NULL;
        started += strstr(line, "started pid=") != NULL;
        refused += strstr(line, "refused by the") != NULL;
        kind += strstr(line, "unsupported kind") != NULL;
        type += strstr(line, "ignoring message of type") != NULL;
        if (strchr(line, '\x1b') || strchr(line, '\x07') || strstr(line, "\xc2\x9b"))
            fail_msg("a log line holds the server's control characters: %s", line);
        for (const unsigned char *c = (const unsigned char *)line; *c; c++)
            if (*c >= 0x80)
                fail_msg("a log line holds a byte outside ASCII: %s", line);
    }
    fclose(f);
    assert_true(lines > 0);
    assert_true(connected >= 1 && started >= 1 && refused >= 1 && kind >= 1 && type >= 1);
    /* the answers name the server's ids exactly */
    int exact = 0;
    for (int i = 0; i < fx->nmsgs; i++)
        if (fx->msgs[i].m.type == MSG_COMMAND_RESPONSE &&
            !strncmp(fx->msgs[i].m.command_id, HOSTILE_CTL, strlen(HOSTILE_CTL)))
            exact++;
    assert_int_equal(exact, 2);
    assert_non_null(find_end(fx, 7));
    fixture_free(fx);
}

/* A legacy command and a v2 exec, both running when their connections go. */
static void drop_running_commands(void *arg)
{
    fixture *fx = arg;
    say(fx, "{\"type\":\"connected\"}");
    say(fx, "{\"type\":\"kubectl_command\",\"command_id\":\"c-gone\","
            "\"command\":\"kubectl get slow\",\"timeout\":30}");
    drain(fx);
    assert_int_equal(agent_runner_active(fx->r), 1);
    agent_runner_drop(fx->r, fx->gen);
    pump_until(fx, idle, 0);
    fx->gen = agent_tunnel_begin_session(fx->t);
    say(fx, "{\"type\":\"connected\",\"protocol\":2}");
    say(fx, "{\"type\":\"exec\",\"id\":5,\"argv\":[\"get\",\"slow\"],\"timeout\":30}");
    drain(fx);
    assert_int_equal(agent_runner_active(fx->r), 1);
    agent_runner_drop(fx->r, fx->gen);
    pump_until(fx, idle, 0);
}

static void run_legacy_without_kubectl(void *arg)
{
    fixture *fx = arg;
    say(fx, "{\"type\":\"connected\"}");
    say(fx, "{\"type\":\"kubectl_command\",\"command_id\":\"c-nobin\","
            "\"command\":\"kubectl get pods\",\"timeout\":30}");
    pump_until(fx, has_response, 1);
}

/* The operator finds a dropped command by the id its dialect gives it: a
 * legacy command has no numeric id (it was logged as `exec id=0`), only
 * the server's command_id, as on its `started` line. */
static void dropped_commands_are_logged_by_their_ids(void **state)
{
    (void)state;
    fixture *fx = fixture_new(NULL);
    log_setup("agent", "info", "text");
    FILE *f = stderr_capture(drop_running_commands, fx);
    log_setup("agent", "error", "text");
    char line[8192];
    int legacy = 0, v2 = 0, nameless = 0;
    while (fgets(line, sizeof(line), f)) {
        if (!strstr(line, "dropped with its connection"))
            continue;
        legacy += strstr(line, "command c-gone dropped with its connection") != NULL;
        v2 += strstr(line, "exec id=5 dropped with its connection") != NULL;
        nameless += strstr(line, "id=0 ") != NULL;
    }
    fclose(f);
    assert_int_equal(nameless, 0);
    assert_int_equal(legacy, 1);
    assert_int_equal(v2, 1);
    fixture_free(fx);

    /* and one whose kubectl cannot start */
    const char *env[] = {"AURORA_KUBECTL_PATH=/nonexistent/kubectl", NULL};
    fx = fixture_new(env);
    log_setup("agent", "info", "text");
    f = stderr_capture(run_legacy_without_kubectl, fx);
    log_setup("agent", "error", "text");
    legacy = nameless = 0;
    while (fgets(line, sizeof(line), f)) {
        legacy += strstr(line, "command c-nobin: ") != NULL;
        nameless += strstr(line, " 0: ") != NULL || strstr(line, "id=0") != NULL;
    }
    fclose(f);
    assert_int_equal(nameless, 0);
    assert_int_equal(legacy, 1);
    fixture_free(fx);
}

static int setup(void **state)
{
    log_setup("agent", "error", "text");
    snprintf(g_dir, sizeof(g_dir), "/tmp/test_agent_tunnel.XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    /* a fake kubectl: echoes its arguments; "get slow" runs until killed */
    snprintf(g_kubectl, sizeof(g_kubectl), "%s/kubectl", g_dir);
    FILE *f = fopen(g_kubectl, "w");
    if (!f)
        return -1;
    fputs("#!/bin/sh\n"
          "if [ \"$2\" = slow ]; then exec sleep 60; fi\n"
          "echo \"$@\"\n",
          f);
    fclose(f);
    return chmod(g_kubectl, 0755);
}

static int teardown(void **state)
{
    unlink(g_kubectl);
    rmdir(g_dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(connected_sends_register_once),
        cmocka_unit_test(legacy_connected_registers_like_the_python_agent),
        cmocka_unit_test(exec_runs_with_the_connected_window_and_credit),
        cmocka_unit_test(policy_and_kind_refusals),
        cmocka_unit_test(malformed_messages),
        cmocka_unit_test(busy_and_cancel),
        cmocka_unit_test(duplicate_exec_refused_running_command_untouched),
        cmocka_unit_test(legacy_kubectl_command),
        cmocka_unit_test(oversized_message_ends_the_connection),
        cmocka_unit_test(new_session_starts_clean),
        cmocka_unit_test(two_tunnels_coexist),
        cmocka_unit_test(refusals_past_the_control_cap_pause_reading),
        cmocka_unit_test(legacy_refusals_past_the_data_cap_pause_reading),
        cmocka_unit_test(server_text_is_escaped_in_logs),
        cmocka_unit_test(dropped_commands_are_logged_by_their_ids),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
