/* tunnel.c — agent sessions: authentication off the loop, both protocol
 * dialects, request multiplexing, flow control, deadlines; see tunnel.h and
 * docs/protocol.md. */
#include "tunnel.h"

#include <cjson/cJSON.h>
#include <libwebsockets.h>
#include <math.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "buf.h"
#include "instance.h"
#include "log.h"
#include "proto.h"
#include "registry.h"
#include "server_metrics.h"
#include "secret.h"
#include "store.h"
#include "timefmt.h"
#include "token.h"
#include "utf8.h"
#include "worker.h"

#define MAX_PENDING_BEFORE_AUTH 16
/* What a connection may have the server hold before its token is known:
 * an agent sends at most a register and a heartbeat that early (a few KiB),
 * and without this bound an unauthenticated legacy connection could park
 * MAX_PENDING_BEFORE_AUTH messages of AURORA_LEGACY_MAX_FRAME (512 MiB)
 * while its lookup waits on a busy store. */
#define EARLY_MAX_BYTES (256 * 1024)
/* A message that grows past this needs one of the hub's assembly slots
 * (AURORA_AGENT_ASSEMBLY_BUDGET / AURORA_LEGACY_MAX_FRAME of them): a legacy
 * agent sends a command's whole output as one message of up to
 * AURORA_LEGACY_MAX_FRAME, and without a shared bound N such agents answering
 * at once would hold N times that.  A connection that finds no slot free is
 * not read any more (lws rx flow control) until one is handed to it (see
 * big_grant: the organizations share them); a slot holder is never paused,
 * so every message in assembly finishes and gives its slot on.  v2 messages
 * stay below it. */
#define BIG_MESSAGE PROTO_MAX_CONTROL
/* A slot holder must finish its message within this: one that trickles
 * bytes would otherwise hold every other big message up. */
#define BIG_HOLD_MAX_S 60
#define MAX_SESSIONS_PER_CLUSTER 16
#define HEARTBEAT_DB_EVERY_S 20
#define OUTQ_MAX_BYTES (8 * 1024 * 1024)
#define MAX_WAITING_PER_SESSION 4096
/* After start_close, how long the peer has to complete the close handshake
 * before its socket is dropped (see start_close). */
#define CLOSE_GRACE_S 2
/* Sessions indexed by cluster id: routing a command and counting a
 * cluster's sessions look at one bucket, not at every agent (10,000 per
 * replica make a full scan per handshake quadratic). */
#define CLUSTER_BUCKETS 8192

enum sess_state { SESS_AUTHENTICATING, SESS_READY, SESS_CLOSING };

typedef struct out_frame {
    struct out_frame *next;
    int binary;
    int secret; /* carries credentials (cloud_exec env): wiped when released */
    size_t len;
    unsigned char data[]; /* LWS_PRE + payload */
} out_frame;

struct tunnel_session {
    tunnel_hub *hub;
    struct lws *wsi; /* NULL once closed, or for a session without a socket */
    int open;        /* the connection is up (cleared when it closes) */
    int v2;
    enum sess_state state;
    int pending_jobs;
    unsigned auth_epoch;
    char token_hash[65];
    char header_cluster_id[64];
    char cluster_id[STORE_CLUSTER_ID_LEN];
    char org_id[STORE_ID_LEN];
    char token_id[STORE_ID_LEN];
    char cluster_name[STORE_CLUSTER_NAME_LEN];
    char agent_version[64];
    char *policy_json; /* as reported in register; NULL for agents that report none */
    char instance[65]; /* register's "instance": the agent process ("" if it named none) */
    int64_t instance_conn; /* register's "connection" (0: unknown) */
    int64_t connected_at;
    uint64_t picks;    /* commands routed here: breaks ties between replicas */
    uint64_t ready_seq; /* order in which sessions became ready (hub-wide, from 1) */
    /* A legacy session: when it became ready (tunnel_hub_opts.wall_ms; after the
     * one before it here, even with the clock stepped back), and the newer
     * legacy connection of its cluster on another replica it steps aside for
     * while that one is up (outranked_ms 0: none; tunnel_legacy_elsewhere). */
    int64_t ready_ms;
    int64_t outranked_ms;
    char outranked_by[STORE_ID_LEN];
    char outranked_addr[256]; /* that replica's internal address ("": it named none) */
    /* this replica's registry renewals since that one was last announced: it
     * takes commands again at outranked_renewals (tunnel_legacy_renew), set by
     * the last announcement from the announcer's renewal period: counted in
     * ours, a replica renewing less often than this one was given up while
     * it still announced, and two connections of the cluster took commands */
    int outranked_missed;
    int outranked_renewals;
    int registered_db; /* counted in the connections table */
    int registered_fleet; /* counted in the replicas' registry (registry.h) */
    time_t last_hb_db;
    /* frame assembly */
    buf_t rx;
    int rx_binary;
    int rx_too_big;
    /* frames that arrived before authentication finished */
    char *early[MAX_PENDING_BEFORE_AUTH];
    size_t early_len[MAX_PENDING_BEFORE_AUTH];
    int nearly;
    size_t early_bytes; /* held in early[] and being assembled before authentication */
    int big_slot;       /* holds an assembly slot for the message it is sending */
    time_t big_since;   /* ... since (mono_s) */
    int big_waiting;    /* in the hub's queue for one, not read meanwhile */
    struct tunnel_session *big_next;
    struct big_org *big_org; /* its organization's share, while holding or waiting */
    /* outgoing */
    out_frame *oq_head, *oq_tail;
    size_t oq_bytes; /* allocated for the queued frames (FRAME_COST) */
    int close_code;
    int close_handed; /* the close frame is lws's: it sends it and awaits the ack */
    char close_reason[64];
    int counted; /* opened in the metrics: closing it is counted once */
    int idle_dropped; /* the sweep dropped it for silence (no close frame: close_code 0) */
    lws_sorted_usec_list_t close_sul;  /* drops the socket CLOSE_GRACE_S after start_close */
    int64_t token_expires_at; /* 0 = never; checked by the hub's sweep */
    time_t last_rx;           /* monotonic seconds of the last frame (idle sweep) */
    int indexed;              /* in the cluster index (ready) */
    struct tunnel_session *bucket_next;
    /* requests */
    struct tunnel_req *reqs; /* started and waiting */
    int inflight;            /* started at the agent */
    int waiting;             /* queued here until the agent has a free slot */
    int max_concurrent;      /* from register (v2; 1 until then), 1 for a legacy agent; 0 = no
                              * limit known */
    uint32_t next_id;
    unsigned stray_frames; /* output frames for no running request: logged sparingly */
    unsigned bad_frames;   /* frames that do not decode: logged as sparingly */
    unsigned registers;    /* register messages: logged as sparingly after the first */
    struct tunnel_session *prev, *next;
};

struct tunnel_req {
    tunnel_session *s;
    uint32_t id;
    char legacy_id[24];
    const tunnel_sink *sink;
    void *ctx;
    int64_t window, consumed, credited;
    int64_t received;
    int over_window_logged;
    lws_sorted_usec_list_t sul; /* deadline */
    double timeout;
    int started;
    int kubectl;      /* a kubectl command (a legacy agent can run it) */
    uint64_t seq;     /* FIFO order among waiting requests (hub-wide: kept when moved) */
    char *pending;    /* encoded exec, sent when a slot frees up */
    char *legacy_cmd; /* waiting kubectl: its command string, should it move to a legacy agent */
    char *v2_exec;    /* waiting for a legacy agent: its v2 exec (id v2_exec_id), should it
                       * move to a v2 agent */
    uint32_t v2_exec_id;
    double asked_at;  /* mono_now() when its caller asked: a legacy command sent later gets
                       * the time it has left (legacy_send_msg) */
    char user_id[STORE_ID_LEN]; /* waiting: who asked, should it be forwarded (req_forward) */
    int full_queue;   /* requeue_waiting: the session it could move to holds this many waiting */
    struct tunnel_req *next;
    /* A request another replica runs (s NULL): its credit and cancel go there. */
    const tunnel_remote_ops *rops;
    void *rctx;
};

/* An organization's share of the assembly slots, while any of its
 * connections holds or waits for one (big_grant). */
typedef struct big_org {
    char org_id[STORE_ID_LEN];
    int held; /* slots its connections hold */
    int refs; /* its connections holding or waiting */
    struct big_org *prev, *next;
} big_org;

struct tunnel_hub {
    const server_config *cfg;
    struct lws_context *ctx;
    workers *pool;
    double deadline_grace;
    tunnel_forward_fn forward;
    int64_t (*wall_ms)(void);
    int64_t last_ready_ms; /* the latest legacy session's ready_ms (auth_done) */
    tunnel_session *sessions;
    size_t nsessions;
    tunnel_session *buckets[CLUSTER_BUCKETS]; /* ready sessions by cluster id */
    /* One timer for all sessions' idle timeouts and token expiries: a
     * per-connection lws timeout re-armed on every frame is an insertion
     * into lws's sorted timer list, O(sessions) each time. */
    lws_sorted_usec_list_t sweep_sul;
    int sweeping;
    /* connection bookkeeping waiting for a writer (conn_pump) */
    struct conn_job *conn_head, *conn_tail;
    struct conn_batch *conn_running; /* on a worker now (one at a time) */
    int conn_queued, conn_dropped;
    unsigned revocation_epoch;
    uint64_t legacy_seq;
    uint64_t ready_seq;
    uint64_t req_seq; /* waiting requests' order, across the sessions they may move between */
    /* assembly slots of big messages (BIG_MESSAGE) and who waits for one */
    int big_free;
    tunnel_session *big_wait_head, *big_wait_tail;
    big_org *big_orgs; /* the organizations holding or waiting */
    int write_now; /* tunnel_hub_write_now */
};

tunnel_hub *tunnel_hub_new(const tunnel_hub_opts *o)
{
    tunnel_hub *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->cfg = o->cfg;
    h->ctx = o->lws;
    h->pool = o->pool;
    h->deadline_grace = o->deadline_grace;
    h->forward = o->forward;
    h->wall_ms = o->wall_ms;
    int64_t frame = o->cfg && o->cfg->legacy_max_frame > 0 ? o->cfg->legacy_max_frame : 1;
    int64_t slots = o->cfg ? o->cfg->assembly_budget / frame : 1;
    h->big_free = slots < 1 ? 1 : slots > 1000000 ? 1000000 : (int)slots;
    return h;
}

size_t tunnel_session_count(tunnel_hub *h) { return h->nsessions; }

struct lws_context *tunnel_hub_lws(tunnel_hub *h) { return h->ctx; }

static time_t mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned cluster_bucket(const char *cluster_id)
{
    unsigned hash = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)cluster_id; *p; p++)
        hash = (hash ^ *p) * 16777619u;
    return hash % CLUSTER_BUCKETS;
}

static void index_add(tunnel_session *s)
{
    tunnel_session **head = &s->hub->buckets[cluster_bucket(s->cluster_id)];
    s->bucket_next = *head;
    *head = s;
    s->indexed = 1;
}

static void index_remove(tunnel_session *s)
{
    if (!s->indexed)
        return;
    tunnel_session **pp = &s->hub->buckets[cluster_bucket(s->cluster_id)];
    while (*pp && *pp != s)
        pp = &(*pp)->bucket_next;
    if (*pp)
        *pp = s->bucket_next;
    s->bucket_next = NULL;
    s->indexed = 0;
}

/* The first ready session of a cluster's bucket; walk on with bucket_next
 * (other clusters share buckets: compare the id). */
static tunnel_session *bucket_of(tunnel_hub *h, const char *cluster_id)
{
    return h->buckets[cluster_bucket(cluster_id)];
}

/* ---- outgoing frames ------------------------------------------------------ */

static void start_close(tunnel_session *s, int code, const char *reason);
static void drop_queue(tunnel_session *s);

/* What a queued frame of n payload bytes holds (OUTQ_MAX_BYTES counts this). */
#define FRAME_COST(n) (sizeof(out_frame) + LWS_PRE + (n))

static void frame_free(out_frame *f)
{
    if (f->secret)
        OPENSSL_cleanse(f->data + LWS_PRE, f->len);
    free(f);
}

static out_frame *pop_frame(tunnel_session *s);

/* Writes f on wsi and frees it: lws_write's result. */
static int write_frame(struct lws *wsi, out_frame *f)
{
    int rc = lws_write(wsi, f->data + LWS_PRE, f->len, f->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
    frame_free(f);
    return rc;
}

/* lws writes the queue when the socket can take it (a session without a
 * socket is read with tunnel_session_pop).  With write_now on, a frame that
 * is alone in the queue, with nothing of the connection left in lws's
 * buffer, is written at once: asking for WRITEABLE first costs a loop pass
 * and two epoll_ctl calls on the path of every command sent.  What the
 * socket does not take lws keeps and writes itself. */
static void want_write(tunnel_session *s)
{
    if (!s->wsi)
        return;
    if (!s->hub->write_now || s->close_code || !s->oq_head || s->oq_head != s->oq_tail ||
        lws_partial_buffered(s->wsi)) {
        lws_callback_on_writable(s->wsi);
        return;
    }
    if (write_frame(s->wsi, pop_frame(s)) < 0) {
        /* as a failed write in WRITEABLE would: the connection goes, and
         * with it (session_closed) the requests waiting on it */
        log_warn("agent %s: write failed, dropping the connection", s->cluster_id);
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    }
}

void tunnel_hub_write_now(tunnel_hub *h, int on)
{
    h->write_now = on;
}

static int enqueue_ex(tunnel_session *s, const void *p, size_t n, int binary, int secret)
{
    if (!s->open || s->state == SESS_CLOSING)
        return -1;
    /* Counted as allocated: a frame's header and LWS_PRE are most of a
     * small one (a heartbeat_ack is 24 bytes of 64), and an agent that
     * sends heartbeats and never reads would otherwise have the server
     * hold about three times the cap. */
    size_t cost = FRAME_COST(n);
    if (s->oq_bytes + cost > OUTQ_MAX_BYTES) {
        /* An agent that sends but never reads: stop queueing for it. */
        log_warn("agent %s: outgoing queue full (agent not reading), closing", s->cluster_id);
        drop_queue(s);
        start_close(s, PROTO_CLOSE_POLICY, "Send queue overflow");
        return -1;
    }
    out_frame *f = malloc(sizeof(*f) + LWS_PRE + n);
    if (!f)
        return -1;
    f->next = NULL;
    f->binary = binary;
    f->secret = secret;
    f->len = n;
    memcpy(f->data + LWS_PRE, p, n);
    if (s->oq_tail)
        s->oq_tail->next = f;
    else
        s->oq_head = f;
    s->oq_tail = f;
    s->oq_bytes += cost;
    want_write(s);
    return 0;
}

static int enqueue(tunnel_session *s, const void *p, size_t n, int binary)
{
    return enqueue_ex(s, p, n, binary, 0);
}

static int send_json(tunnel_session *s, char *json)
{
    if (!json)
        return -1;
    int rc = enqueue(s, json, strlen(json), 0);
    free(json);
    return rc;
}

/* A message that carries credentials: every copy is wiped when released. */
static int send_json_secret(tunnel_session *s, char *json)
{
    if (!json)
        return -1;
    int rc = enqueue_ex(s, json, strlen(json), 0, 1);
    proto_free_secret(json);
    return rc;
}

static void drop_queue(tunnel_session *s)
{
    out_frame *f = s->oq_head;
    while (f) {
        out_frame *n = f->next;
        frame_free(f);
        f = n;
    }
    s->oq_head = s->oq_tail = NULL;
    s->oq_bytes = 0;
}

/* The close grace is over and the socket is still open: the peer never read
 * the close frame, or read it and neither answered nor closed its end.  lws
 * would wait for it on its own timeouts (5 s for the close answer, then up
 * to its 30 s TLS shutdown wait), keeping a revoked or expired token's
 * session counted as connected; drop the connection now instead.  Checked
 * again a second later in case lws re-armed a timeout of its own meanwhile. */
static void close_grace_over(lws_sorted_usec_list_t *sul)
{
    tunnel_session *s = lws_container_of(sul, tunnel_session, close_sul);
    if (!s->open || !s->wsi) /* without a socket, the test that drives it drops it */
        return;
    log_warn("agent %s: no close handshake %d s after closing (%d %s); dropping the connection",
             s->cluster_id[0] ? s->cluster_id : "?", CLOSE_GRACE_S, s->close_code, s->close_reason);
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    lws_sul_schedule(s->hub->ctx, 0, &s->close_sul, close_grace_over, LWS_USEC_PER_SEC);
}

static void start_close(tunnel_session *s, int code, const char *reason)
{
    if (!s->open || s->close_code)
        return;
    s->close_code = code;
    snprintf(s->close_reason, sizeof(s->close_reason), "%s", reason);
    s->state = SESS_CLOSING;
    /* Whatever stands in the way of the close frame (a peer that does not
     * read) or follows it (a peer that ignores it), the session ends within
     * the grace. */
    lws_sul_schedule(s->hub->ctx, 0, &s->close_sul, close_grace_over,
                     (lws_usec_t)CLOSE_GRACE_S * LWS_USEC_PER_SEC);
    want_write(s);
}

/* ---- requests -------------------------------------------------------------- */

static void req_unlink(tunnel_req *r)
{
    tunnel_session *s = r->s;
    for (tunnel_req **pp = &s->reqs; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    if (r->started)
        s->inflight--;
    else
        s->waiting--;
    sm_agent_commands(r->started ? -1 : 0, r->started ? 0 : -1);
    proto_free_secret(r->pending);
    r->pending = NULL;
    /* The command line may carry a credential (--token=…), as the encoded
     * message does: wiped the same way. */
    secret_free(r->legacy_cmd);
    r->legacy_cmd = NULL;
    proto_free_secret(r->v2_exec);
    r->v2_exec = NULL;
    lws_sul_cancel(&r->sul);
}

static int send_json(tunnel_session *s, char *json);

/* A legacy agent runs its commands one at a time, each with the timeout its
 * message gives from when it starts it, and cannot be told to stop one: a
 * command that waited here is sent with the time its caller has left (whole
 * seconds, at least 1), so the agent gives up on it (124) by the server's
 * deadline instead of running on, busy, after its caller got a 504.  msg
 * (the message with the full timeout) is kept when nothing is gained or
 * memory is short. */
static char *legacy_send_msg(tunnel_req *r, char *msg)
{
    double left = r->timeout - (mono_now() - r->asked_at);
    if (!r->legacy_cmd || left > r->timeout - 1)
        return msg;
    double t = ceil(left);
    if (t > r->timeout)
        t = r->timeout;
    if (t < 1)
        t = 1;
    char *again = proto_enc_kubectl_command(r->legacy_id, r->legacy_cmd, t);
    if (!again)
        return msg;
    proto_free_secret(msg);
    return again;
}

/* Starts waiting requests, oldest first, while the agent has free slots. */
static void pump(tunnel_session *s)
{
    while (s->waiting && s->open && s->state == SESS_READY &&
           (!s->max_concurrent || s->inflight < s->max_concurrent)) {
        tunnel_req *oldest = NULL;
        for (tunnel_req *r = s->reqs; r; r = r->next)
            if (!r->started && (!oldest || r->seq < oldest->seq))
                oldest = r;
        if (!oldest)
            break;
        char *msg = oldest->pending;
        if (!s->v2)
            msg = legacy_send_msg(oldest, msg);
        oldest->pending = msg;
        /* Queued, or it stays waiting, never sent: an agent that does not
         * read (its queue overflowed, the session closes) never got it, so
         * it moves to another session of the cluster or fails as never run
         * (requeue_waiting), not as "disconnected mid-command" (it may have
         * run: check before retrying). */
        if (!msg || enqueue_ex(s, msg, strlen(msg), 0, 1) < 0)
            break;
        proto_free_secret(msg);
        oldest->pending = NULL;
        secret_free(oldest->legacy_cmd);
        oldest->legacy_cmd = NULL;
        proto_free_secret(oldest->v2_exec);
        oldest->v2_exec = NULL;
        oldest->started = 1;
        s->waiting--;
        s->inflight++;
        sm_agent_commands(1, -1);
    }
}

static void req_finish(tunnel_req *r, const tunnel_result *res)
{
    tunnel_session *s = r->s;
    req_unlink(r);
    const tunnel_sink *sink = r->sink;
    void *ctx = r->ctx;
    free(r);
    if (sink)
        sink->on_end(ctx, res);
    pump(s);
}

static void req_fail(tunnel_req *r, int status, const char *code, const char *msg)
{
    tunnel_result res = { .failed = 1, .http_status = status, .return_code = -1,
                          .error = msg, .error_code = code, .bytes = r->received };
    req_finish(r, &res);
}

/* The agent broke the protocol for r: the caller gets 502 AGENT_PROTOCOL_ERROR
 * now; the request stays, muted, until the agent's exec_end (it still holds
 * one of the agent's slots), and the agent is asked to stop the command. */
static void req_protocol_error(tunnel_req *r, const char *msg)
{
    const tunnel_sink *sink = r->sink;
    void *ctx = r->ctx;
    r->sink = NULL;
    r->ctx = NULL;
    if (r->s->v2 && r->started)
        send_json(r->s, proto_enc_cancel(r->id));
    tunnel_result res = { .failed = 1, .http_status = 502, .return_code = -1, .error = msg,
                          .error_code = EC_AGENT_PROTOCOL, .bytes = r->received };
    if (sink)
        sink->on_end(ctx, &res);
}

static void req_deadline(lws_sorted_usec_list_t *sul)
{
    tunnel_req *r = lws_container_of(sul, tunnel_req, sul);
    char msg[128];
    snprintf(msg, sizeof(msg), "agent did not answer within %.0f s",
             r->timeout + r->s->hub->deadline_grace);
    log_warn("agent %s: request %u timed out at the server", r->s->cluster_id, r->id);
    if (r->s->v2 && r->started)
        send_json(r->s, proto_enc_cancel(r->id));
    req_fail(r, 504, EC_TIMEOUT, msg);
}

static tunnel_req *find_req_v2(tunnel_session *s, uint32_t id)
{
    for (tunnel_req *r = s->reqs; r; r = r->next)
        if (r->id == id)
            return r;
    return NULL;
}

/* What the agent may answer: a request it was sent.  One still waiting for
 * a slot has an id (v2) but never reached the agent, so a frame naming it
 * is forged: it must neither feed it output nor end it (ending or failing
 * a waiting request frees it, which its caller's callbacks do not expect
 * while a frame is being handled). */
static tunnel_req *find_started_v2(tunnel_session *s, uint32_t id)
{
    tunnel_req *r = find_req_v2(s, id);
    return r && r->started ? r : NULL;
}

static tunnel_req *find_req_legacy(tunnel_session *s, const char *cid)
{
    if (!cid || !*cid)
        return NULL;
    for (tunnel_req *r = s->reqs; r; r = r->next)
        if (r->started && r->legacy_id[0] && !strcmp(r->legacy_id, cid))
            return r;
    return NULL;
}

/* argv as one string for a legacy agent.  Deployed agents split on
 * whitespace (some honour quotes), so only arguments that need it are quoted:
 * a plain path with '?' or '&' must reach kubectl unchanged. */
static char *legacy_join(const argv_t *a)
{
    buf_t b = BUF_INIT;
    /* Room for the worst case up front (every byte a quote, 4 bytes, plus
     * the quotes and a space): the buffer never grows, so no copy of a
     * credential in the arguments is left behind in a block realloc freed. */
    size_t need = 0;
    for (int i = 0; i < a->c; i++)
        need += 4 * strlen(a->v[i]) + 3;
    if (buf_reserve(&b, need) < 0)
        return NULL;
    for (int i = 0; i < a->c; i++) {
        const char *v = a->v[i];
        if (i)
            buf_append(&b, " ", 1);
        if (*v && !strpbrk(v, " \t\n\r'\"\\")) {
            buf_append_str(&b, v);
            continue;
        }
        buf_append(&b, "'", 1);
        for (; *v; v++)
            if (*v == '\'')
                buf_append_str(&b, "'\\''");
            else
                buf_append(&b, v, 1);
        buf_append(&b, "'", 1);
    }
    return buf_detach(&b, NULL);
}

static int session_of(const tunnel_session *s, const char *org_id, const char *cluster_id)
{
    return s->state == SESS_READY && s->open && !strcmp(s->cluster_id, cluster_id) &&
           !strcmp(s->org_id, org_id);
}

/* The ready session of org/cluster that runs a command of that kind next:
 * the least loaded, then the one picked least often.  Of the legacy
 * sessions only the newest takes commands, as the existing server kept one
 * connection per cluster, the newest: a Python agent (which names no
 * instance, so is never superseded) that dialled again after its connection
 * died without a word leaves that one ready until the idle timeout, and a
 * command sent there would wait for its deadline.  NULL: none. */
static tunnel_session *pick_session(tunnel_hub *h, const char *org_id, const char *cluster_id,
                                    int kubectl)
{
    tunnel_session *best = NULL, *newest_legacy = NULL;
    for (tunnel_session *s = bucket_of(h, cluster_id); s; s = s->bucket_next)
        if (!s->v2 && !s->outranked_ms && session_of(s, org_id, cluster_id) &&
            (!newest_legacy || s->ready_seq > newest_legacy->ready_seq))
            newest_legacy = s;
    for (tunnel_session *s = bucket_of(h, cluster_id); s; s = s->bucket_next)
        if (session_of(s, org_id, cluster_id) && (s->v2 || (kubectl && s == newest_legacy)) &&
            (!best || s->inflight + s->waiting < best->inflight + best->waiting ||
             (s->inflight + s->waiting == best->inflight + best->waiting && s->picks < best->picks)))
            best = s;
    return best;
}

/* r (zeroed but for its sink and ctx) becomes p's request on best, the
 * session pick_session gave: sent, or held until the agent has a free slot.
 * 0; -1 with err, r holding nothing (the caller's to free or give back). */
static int req_place(tunnel_hub *h, tunnel_session *best, tunnel_req *r,
                     const tunnel_exec_params *p, int kubectl, char *err, size_t errlen)
{
    r->s = best;
    best->picks++;
    r->timeout = p->timeout;
    r->asked_at = mono_now();
    r->kubectl = kubectl;
    r->window = h->cfg->stream_window;
    char *msg;
    char *cmd = NULL; /* a legacy agent's command string */
    if (best->v2) {
        do {
            r->id = ++best->next_id;
        } while (r->id == 0 || find_req_v2(best, r->id));
        int64_t hold = p->hold_output < r->window / 2 ? p->hold_output : r->window / 2;
        msg = proto_enc_exec_env(r->id, p->kind, p->program, p->argv, p->env, p->nenv,
                                 p->timeout, p->max_output, hold > 0 ? hold : 0);
    } else {
        /* The legacy agent splits `command` itself: quote so it splits back
         * into exactly this argv. */
        snprintf(r->legacy_id, sizeof(r->legacy_id), "cmd-%llu",
                 (unsigned long long)++h->legacy_seq);
        cmd = p->legacy_command ? strdup(p->legacy_command) : legacy_join(p->argv);
        msg = cmd ? proto_enc_kubectl_command(r->legacy_id, cmd, p->timeout) : NULL;
    }
    if (!msg) {
        secret_free(cmd);
        snprintf(err, errlen, "cannot encode the command (out of memory or invalid environment)");
        return -1;
    }
    if (best->max_concurrent && best->inflight >= best->max_concurrent) {
        /* The agent refuses work beyond its limit (a legacy one runs one
         * command at a time): hold it here instead. */
        if (best->waiting >= MAX_WAITING_PER_SESSION) {
            proto_free_secret(msg);
            secret_free(cmd);
            snprintf(err, errlen, "the agent for cluster %s has %d commands queued; retry later",
                     p->cluster_id, best->waiting);
            return -1;
        }
        /* Never sent, it may move to another agent of the cluster if this
         * one goes (requeue_waiting), a legacy one too if it is kubectl. */
        if (cmd) {
            r->legacy_cmd = cmd; /* re-encoded when sent (legacy_send_msg) */
            cmd = NULL;
            /* and its v2 form, should its agent go while a v2 one of the
             * cluster is up (a Python agent replaced by the C one) */
            int64_t hold = p->hold_output < r->window / 2 ? p->hold_output : r->window / 2;
            /* (its id, 1, is replaced when it is sent: a valid one, as
             * req_forward decodes it) */
            r->v2_exec = proto_enc_exec_env(1, p->kind, p->program, p->argv, p->env, p->nenv,
                                            p->timeout, p->max_output, hold > 0 ? hold : 0);
            r->v2_exec_id = 1;
        } else if (kubectl) {
            r->legacy_cmd = p->legacy_command ? strdup(p->legacy_command) : legacy_join(p->argv);
            if (!r->legacy_cmd) {
                proto_free_secret(msg);
                snprintf(err, errlen, "out of memory");
                return -1;
            }
        }
        r->pending = msg;
        snprintf(r->user_id, sizeof(r->user_id), "%s", p->user_id ? p->user_id : "");
        r->seq = ++h->req_seq;
        best->waiting++;
        sm_agent_commands(0, 1);
    } else {
        secret_free(cmd); /* a --token=… in it: wiped like the message */
        if (send_json_secret(best, msg) < 0) {
            snprintf(err, errlen, "the agent for cluster %s is not accepting commands",
                     p->cluster_id);
            return -1;
        }
        r->started = 1;
        best->inflight++;
        sm_agent_commands(1, 0);
    }
    r->next = best->reqs;
    best->reqs = r;
    lws_sul_schedule(h->ctx, 0, &r->sul, req_deadline,
                     (lws_usec_t)((p->timeout + h->deadline_grace) * LWS_USEC_PER_SEC));
    return 0;
}

tunnel_req *tunnel_exec(tunnel_hub *h, const tunnel_exec_params *p, const tunnel_sink *sink,
                        void *ctx, char *err, size_t errlen)
{
    int kubectl = !p->kind || !strcmp(p->kind, PROTO_KIND_KUBECTL);
    tunnel_session *best = pick_session(h, p->org_id, p->cluster_id, kubectl);
    if (!best) {
        snprintf(err, errlen, "the agent for cluster %s is not connected", p->cluster_id);
        return NULL;
    }
    tunnel_req *r = calloc(1, sizeof(*r));
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->sink = sink;
    r->ctx = ctx;
    if (req_place(h, best, r, p, kubectl, err, errlen) < 0) {
        free(r);
        return NULL;
    }
    return r;
}

int tunnel_req_run_here(tunnel_hub *h, tunnel_req *r, const tunnel_exec_params *p, char *err,
                        size_t errlen)
{
    int kubectl = !p->kind || !strcmp(p->kind, PROTO_KIND_KUBECTL);
    tunnel_session *best = pick_session(h, p->org_id, p->cluster_id, kubectl);
    if (!best) {
        snprintf(err, errlen, "no session of cluster %s here takes it", p->cluster_id);
        return -1;
    }
    /* A remote request nothing was sent for (it did not run): its caller's
     * sink and context are all it holds. */
    tunnel_req saved = *r;
    memset(r, 0, sizeof(*r));
    r->sink = saved.sink;
    r->ctx = saved.ctx;
    if (req_place(h, best, r, p, kubectl, err, errlen) < 0) {
        *r = saved;
        return -2;
    }
    return 0;
}

tunnel_req *tunnel_req_remote(const tunnel_sink *sink, void *ctx, const tunnel_remote_ops *ops,
                              void *rctx)
{
    tunnel_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->sink = sink;
    r->ctx = ctx;
    r->rops = ops;
    r->rctx = rctx;
    return r;
}

void tunnel_req_set_remote(tunnel_req *r, const tunnel_remote_ops *ops, void *rctx)
{
    r->rops = ops;
    r->rctx = ops ? rctx : NULL;
}

void tunnel_req_remote_data(tunnel_req *r, int channel, const unsigned char *p, size_t n)
{
    r->received += (int64_t)n;
    if (r->sink && n)
        r->sink->on_data(r->ctx, channel, p, n);
}

void tunnel_req_remote_end(tunnel_req *r, const tunnel_result *res)
{
    const tunnel_sink *sink = r->sink;
    void *ctx = r->ctx;
    free(r);
    if (sink)
        sink->on_end(ctx, res);
}

void tunnel_req_consumed(tunnel_req *r, size_t n)
{
    if (r->rops) {
        r->rops->consumed(r->rctx, n);
        return;
    }
    r->consumed += (int64_t)n;
    int64_t owed = r->consumed - r->credited;
    if (r->s->v2 && owed >= r->window / 2) {
        if (send_json(r->s, proto_enc_credit(r->id, owed)) == 0)
            r->credited = r->consumed;
    }
}

void tunnel_req_abandon(tunnel_req *r)
{
    if (r->rops) {
        const tunnel_remote_ops *ops = r->rops;
        void *rctx = r->rctx;
        free(r);
        ops->abandon(rctx);
        return;
    }
    tunnel_session *s = r->s;
    if (!r->started) {
        req_unlink(r);
        free(r);
        return;
    }
    /* A started command holds an agent slot until its exec_end (or deadline)
     * arrives: keep it, mute it, and ask the agent to stop it. */
    r->sink = NULL;
    r->ctx = NULL;
    if (s->v2)
        send_json(s, proto_enc_cancel(r->id));
}

/* ---- requests that never reached an agent whose session ends ----------------- */

/* r's message, re-encoded for session `to` (a fresh id there, or the legacy
 * dialect's command): 0, or -1 (out of memory, nothing to build it from). */
static int req_reencode(tunnel_req *r, tunnel_session *to)
{
    char *msg = NULL;
    uint32_t id = 0;
    char legacy_id[sizeof(r->legacy_id)] = "";
    if (to->v2) {
        /* Only an exec message of the v2 dialect is moved (one held for a
         * legacy session keeps its own in v2_exec: without it, out of
         * memory, it can move to another legacy session only).  It is ours,
         * encoded by proto_enc_exec_env, whose first fields are the type and
         * the id: the id is replaced, the rest (credentials included) copied. */
        char head[64];
        const char *src = r->s->v2 ? r->pending : r->v2_exec;
        int n = snprintf(head, sizeof(head), "{\"type\":\"exec\",\"id\":%u,",
                         r->s->v2 ? r->id : r->v2_exec_id);
        if (!src || strncmp(src, head, (size_t)n))
            return -1;
        do {
            id = ++to->next_id;
        } while (id == 0 || find_req_v2(to, id));
        size_t rest = strlen(src + n);
        msg = malloc(sizeof(head) + rest + 1);
        if (!msg)
            return -1;
        int m = snprintf(msg, sizeof(head), "{\"type\":\"exec\",\"id\":%u,", id);
        memcpy(msg + m, src + n, rest + 1);
        proto_free_secret(r->v2_exec);
        r->v2_exec = NULL;
    } else {
        if (!r->kubectl || !r->legacy_cmd)
            return -1;
        snprintf(legacy_id, sizeof(legacy_id), "cmd-%llu",
                 (unsigned long long)(to->hub->legacy_seq + 1));
        msg = proto_enc_kubectl_command(legacy_id, r->legacy_cmd, r->timeout);
        if (!msg)
            return -1;
        to->hub->legacy_seq++;
        if (r->s->v2 && !r->v2_exec) { /* kept, should it move on to a v2 agent again */
            r->v2_exec = r->pending;
            r->v2_exec_id = r->id;
            r->pending = NULL;
        }
    }
    proto_free_secret(r->pending);
    r->pending = msg;
    r->id = id;
    snprintf(r->legacy_id, sizeof(r->legacy_id), "%s", legacy_id);
    return 0;
}

static int req_older(const void *a, const void *b)
{
    uint64_t x = (*(tunnel_req *const *)a)->seq, y = (*(tunnel_req *const *)b)->seq;
    return x < y ? -1 : x > y;
}

/* r, held unsent by the legacy session s, which stepped aside for a newer
 * legacy connection of its cluster on the replica at s->outranked_addr
 * (tunnel_legacy_elsewhere): forwarded there (tunnel_hub_opts.forward), as
 * exec_start forwards a command whose agent another replica holds, with
 * the time its caller has left as its timeout.  It never reached an agent,
 * so it runs there or nowhere; its caller gets its end from there, once.
 * 0: r is a remote request now, out of s; -1: it stays in s (it fails as
 * never run).  Runs no caller's callback. */
static int req_forward(tunnel_req *r, tunnel_session *s)
{
    tunnel_hub *h = s->hub;
    /* Whole seconds, as legacy_send_msg gives a legacy agent the time left
     * (the replica there may hand it to one: the Python agent's timeout is
     * an integer); less than one left, it is not worth a forward. */
    double left = r->timeout - (mono_now() - r->asked_at);
    if (!h->forward || s->v2 || !s->outranked_ms || !s->outranked_addr[0] || !r->kubectl ||
        !r->v2_exec || left < 1)
        return -1;
    left = ceil(left) < r->timeout ? ceil(left) : r->timeout;
    proto_msg m;
    char err[160];
    if (proto_decode(r->v2_exec, strlen(r->v2_exec), &m, err, sizeof(err)) < 0)
        return -1;
    int rc = -1;
    if (m.type == MSG_EXEC) {
        tunnel_exec_params p = { .org_id = s->org_id, .cluster_id = s->cluster_id,
                                 .user_id = r->user_id[0] ? r->user_id : NULL,
                                 .kind = PROTO_KIND_KUBECTL, .argv = &m.argv,
                                 /* the caller's command string, or argv joined as the
                                  * replica there would join it for its legacy agent */
                                 .legacy_command = r->legacy_cmd, .timeout = left,
                                 .max_output = m.max_output };
        rc = h->forward(s->outranked_addr, &p, r);
    }
    proto_msg_free(&m);
    if (rc < 0)
        return -1;
    req_unlink(r); /* out of s: its messages wiped, its deadline now the forward's */
    r->s = NULL;
    r->next = NULL;
    log_info("agent %s: a command held for a connection that stepped aside forwarded to the "
             "replica at %s", s->cluster_id, s->outranked_addr);
    return 0;
}

/* s is gone: the requests it held waiting for a slot never reached its
 * agent, so nothing of them ran.  Each moves, oldest first, to the ready
 * session of the cluster that would take it now (an agent may hold several,
 * as during a rollout of its Deployment), with its place in the order of
 * arrival (the hub-wide seq: older than that session's own waiting ones
 * goes first) and its deadline (its timer is left as it is); with none, it
 * gets what a command gets when no agent is connected (or, when that
 * session's queue is full, what a new command gets then), and its caller
 * knows it did not run.  Runs no caller's callback while it moves them. */
static void requeue_waiting(tunnel_session *s)
{
    tunnel_hub *h = s->hub;
    tunnel_req **w = s->waiting > 0 ? malloc((size_t)s->waiting * sizeof(*w)) : NULL;
    if (w) {
        int n = 0;
        for (tunnel_req *r = s->reqs; r && n < s->waiting; r = r->next)
            if (!r->started)
                w[n++] = r;
        qsort(w, (size_t)n, sizeof(*w), req_older);
        for (int i = 0; i < n; i++) {
            tunnel_req *r = w[i];
            tunnel_session *to = pick_session(h, s->org_id, s->cluster_id, r->kubectl);
            if (to && to->waiting >= MAX_WAITING_PER_SESSION) {
                r->full_queue = to->waiting; /* it fails below, as a new command would */
                continue;
            }
            if (!to && req_forward(r, s) == 0)
                continue; /* another replica's now */
            if (!to || req_reencode(r, to) < 0)
                continue; /* it fails below */
            for (tunnel_req **pp = &s->reqs; *pp; pp = &(*pp)->next)
                if (*pp == r) {
                    *pp = r->next;
                    break;
                }
            s->waiting--;
            r->s = to;
            r->next = to->reqs;
            to->reqs = r;
            to->waiting++;
            to->picks++;
            pump(to);
        }
        free(w);
    }
    char msg[192];
    for (;;) {
        tunnel_req *r = s->reqs;
        while (r && r->started)
            r = r->next;
        if (!r)
            break;
        /* An agent is connected but its queue is full: what tunnel_exec
         * answers a new command then (same status and code, exec.c). */
        if (r->full_queue)
            snprintf(msg, sizeof(msg),
                     "the agent for cluster %s has %d commands queued; retry later (the "
                     "command was never sent to an agent: it did not run)",
                     s->cluster_id, r->full_queue);
        else if (s->state == SESS_READY) /* stepped aside (tunnel_legacy_elsewhere) */
            snprintf(msg, sizeof(msg),
                     "the agent for cluster %s connected again through another replica before "
                     "the command was sent to it: the command did not run; retry", s->cluster_id);
        else
            snprintf(msg, sizeof(msg),
                     "the agent for cluster %s is not connected (its connection ended before "
                     "the command was sent to it: the command did not run)", s->cluster_id);
        req_fail(r, 503, EC_AGENT_NOT_CONNECTED, msg);
    }
}

/* ---- sessions: registry and auth ------------------------------------------ */

static void session_link(tunnel_session *s)
{
    tunnel_hub *h = s->hub;
    s->next = h->sessions;
    if (h->sessions)
        h->sessions->prev = s;
    h->sessions = s;
    h->nsessions++;
}

static void session_unlink(tunnel_session *s)
{
    tunnel_hub *h = s->hub;
    if (s->prev)
        s->prev->next = s->next;
    else if (h->sessions == s)
        h->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    h->nsessions--;
}

static void session_free(tunnel_session *s)
{
    free(s->policy_json);
    buf_free(&s->rx);
    for (int i = 0; i < s->nearly; i++)
        free(s->early[i]);
    drop_queue(s);
    free(s);
}

static void session_maybe_free(tunnel_session *s)
{
    if (!s->open && !s->pending_jobs)
        session_free(s);
}

/* Fire-and-forget connection bookkeeping, in order, in batches: at most
 * one batch on the store pool at a time, holding what queued meanwhile (up
 * to CONN_BATCH_MAX writes), written in one transaction
 * (store_connection_write_many).  A reconnecting fleet's row writes would
 * otherwise take every store worker, each its own transaction (an fsync on
 * SQLite), and the token lookups that decide whether an agent is connected
 * would wait behind them (seen: TLS resumed, `connected` seconds later, in
 * bursts).  One batch at a time also keeps a cluster's up and down in the
 * order they happened. */
typedef struct conn_job {
    int what; /* STORE_CONN_UP, _HEARTBEAT, _DOWN */
    store_connection c;
    struct conn_job *next;
} conn_job;

#define CONN_BATCH_MAX 64

typedef struct conn_batch {
    tunnel_hub *hub; /* NULL once the hub is gone (the batch still on a worker) */
    size_t n;
    store_conn_write ws[CONN_BATCH_MAX];
} conn_batch;

static void conn_batch_run(worker_ctx *w, void *arg)
{
    conn_batch *b = arg;
    int64_t now = (int64_t)time(NULL);
    for (size_t i = 0; i < b->n; i++)
        b->ws[i].now = now;
    /* The rows name this replica (instance.h): other replicas leave them alone. */
    if (store_connection_write_many(w->store, b->ws, b->n, instance_id()) == STORE_ERR) {
        log_error("connection bookkeeping for %zu agent(s) failed: %s", b->n,
                  store_errmsg(w->store));
        return;
    }
    for (size_t i = 0; i < b->n; i++)
        if (b->ws[i].rc == STORE_ERR || b->ws[i].rc == STORE_CONFLICT)
            log_error("connection bookkeeping for %s failed (status %d)", b->ws[i].c.cluster_id,
                      b->ws[i].rc);
}

/* Past this many writes waiting (the store stalled), new ones are dropped
 * as the worker queue would drop them: the rows are rewritten at the next
 * heartbeat or reconnection. */
#define CONN_QUEUE_MAX 65536

static void conn_batch_done(void *arg);

static void conn_pump(tunnel_hub *h)
{
    while (!h->conn_running && h->conn_head) {
        conn_batch *b = calloc(1, sizeof(*b));
        if (!b)
            return; /* the next write or done() tries again */
        while (b->n < CONN_BATCH_MAX && h->conn_head) {
            conn_job *j = h->conn_head;
            h->conn_head = j->next;
            if (!h->conn_head)
                h->conn_tail = NULL;
            h->conn_queued--;
            b->ws[b->n].what = (store_conn_event)j->what;
            b->ws[b->n].c = j->c;
            b->n++;
            free(j);
        }
        b->hub = h;
        if (workers_submit(h->pool, WORKER_POOL_STORE, conn_batch_run, conn_batch_done, b) < 0) {
            /* the queue is full, or the pool stopping (shutdown closes
             * every session at once): one line per thousand, not one each */
            if (h->conn_dropped / 1000 != (h->conn_dropped + (int)b->n) / 1000 ||
                !h->conn_dropped)
                log_warn("connection bookkeeping for %zu agent(s) dropped: worker queue full or "
                         "stopping (%d dropped so far)", b->n, h->conn_dropped + (int)b->n);
            h->conn_dropped += (int)b->n;
            free(b);
            continue;
        }
        h->conn_running = b; /* the worker owns b until done() */
    }
}

static void conn_batch_done(void *arg)
{
    conn_batch *b = arg;
    tunnel_hub *h = b->hub;
    free(b);
    if (h) {
        h->conn_running = NULL;
        conn_pump(h);
    }
}

static void submit_conn(tunnel_session *s, int what)
{
    conn_job *j = calloc(1, sizeof(*j));
    if (!j)
        return;
    j->what = what;
    snprintf(j->c.cluster_id, sizeof(j->c.cluster_id), "%s", s->cluster_id);
    snprintf(j->c.org_id, sizeof(j->c.org_id), "%s", s->org_id);
    snprintf(j->c.token_id, sizeof(j->c.token_id), "%s", s->token_id);
    snprintf(j->c.cluster_name, sizeof(j->c.cluster_name), "%s", s->cluster_name);
    snprintf(j->c.agent_version, sizeof(j->c.agent_version), "%s", s->agent_version);
    snprintf(j->c.protocol, sizeof(j->c.protocol), "%s", s->v2 ? PROTO_SUBPROTOCOL_V2 : "legacy");
    j->c.connected_at = j->c.last_heartbeat = (int64_t)time(NULL);
    tunnel_hub *h = s->hub;
    if (h->conn_queued >= CONN_QUEUE_MAX) {
        log_warn("connection bookkeeping for %s dropped: %d writes waiting", s->cluster_id,
                 h->conn_queued);
        free(j);
        return;
    }
    if (h->conn_tail)
        h->conn_tail->next = j;
    else
        h->conn_head = j;
    h->conn_tail = j;
    h->conn_queued++;
    conn_pump(h);
}

typedef struct {
    tunnel_session *s;
    unsigned epoch;
    int rc;
    store_agent_token tok;
} auth_job;

static void process_message(tunnel_session *s, const char *p, size_t n);
static void submit_auth(tunnel_session *s);

static void auth_run(worker_ctx *w, void *arg)
{
    auth_job *j = arg;
    j->rc = store_agent_token_lookup_hash(w->store, j->s->token_hash, &j->tok);
    if (j->rc == STORE_ERR)
        log_error("token lookup failed: %s", store_errmsg(w->store));
}

static void auth_done(void *arg)
{
    auth_job *j = arg;
    tunnel_session *s = j->s;
    s->pending_jobs--;
    if (!s->open || s->state != SESS_AUTHENTICATING) {
        free(j);
        session_maybe_free(s);
        return;
    }
    if (j->epoch != s->hub->revocation_epoch) { /* a token was revoked meanwhile: look again */
        free(j);
        submit_auth(s);
        return;
    }
    const char *reject = NULL;
    if (j->rc == STORE_ERR) {
        /* Not the agent's fault: 1011 lets it retry with backoff. */
        free(j);
        start_close(s, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "Server unavailable");
        return;
    }
    if (j->rc != STORE_OK)
        reject = PROTO_REASON_INVALID;
    else if (j->tok.revoked_at)
        reject = PROTO_REASON_REVOKED;
    else if (j->tok.expires_at && j->tok.expires_at <= (int64_t)time(NULL))
        reject = PROTO_REASON_EXPIRED;
    if (!reject) {
        int same = 0;
        for (tunnel_session *o = bucket_of(s->hub, j->tok.cluster_id); o; o = o->bucket_next)
            if (o != s && o->state == SESS_READY && !strcmp(o->cluster_id, j->tok.cluster_id))
                same++;
        if (same >= MAX_SESSIONS_PER_CLUSTER)
            reject = "Too many connections";
    }
    if (reject) {
        log_warn("agent connection rejected: %s (cluster header %s)", reject,
                 s->header_cluster_id[0] ? s->header_cluster_id : "-");
        free(j);
        start_close(s, PROTO_CLOSE_POLICY, reject);
        return;
    }
    snprintf(s->cluster_id, sizeof(s->cluster_id), "%s", j->tok.cluster_id);
    snprintf(s->org_id, sizeof(s->org_id), "%s", j->tok.org_id);
    snprintf(s->token_id, sizeof(s->token_id), "%s", j->tok.id);
    snprintf(s->cluster_name, sizeof(s->cluster_name), "%s", j->tok.cluster_name);
    s->token_expires_at = j->tok.expires_at;
    free(j);
    s->state = SESS_READY;
    s->ready_seq = ++s->hub->ready_seq;
    index_add(s);
    s->connected_at = (int64_t)time(NULL);
    registry_session_up(s->cluster_id); /* other replicas forward its commands here */
    s->registered_fleet = 1;
    if (!s->v2) { /* the newest legacy connection of the cluster, over every replica */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t now = s->hub->wall_ms ? s->hub->wall_ms()
                                      : (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        /* Later than every one before it here, whatever the wall clock
         * did (NTP or an operator stepping it back): the replicas rank by
         * this time what this one ranks by ready_seq, and a connection
         * elsewhere made between two of ours by its time outranked the
         * newer one here but not the older, which took the commands. */
        s->ready_ms = now > s->hub->last_ready_ms ? now : s->hub->last_ready_ms + 1;
        s->hub->last_ready_ms = s->ready_ms;
        registry_publish_legacy(s->org_id, s->cluster_id, s->ready_ms, 1);
    }
    log_field lf[] = { LOG_STR("cluster", s->cluster_id), LOG_STR("cluster_name", s->cluster_name),
                       LOG_STR("org", s->org_id), LOG_STR("dialect", s->v2 ? "v2" : "legacy") };
    log_fields(LOG_INFO, "agent connected", lf, (int)(sizeof(lf) / sizeof(lf[0])));
    sm_session_opened(s->v2 ? "v2" : "legacy");
    s->counted = 1;
    send_json(s, proto_enc_connected(s->cluster_id, s->cluster_name, s->v2 ? 2 : 1,
                                     s->hub->cfg->stream_window));
    for (int i = 0; i < s->nearly; i++) {
        if (s->state == SESS_READY)
            process_message(s, s->early[i], s->early_len[i]);
        free(s->early[i]);
    }
    s->nearly = 0;
    s->early_bytes = 0;
    /* The older legacy connections of the cluster take no more commands
     * (pick_session): what they hold unsent moves here, not left to wait
     * behind a connection that may be dead. */
    if (!s->v2 && s->state == SESS_READY)
        for (tunnel_session *o = bucket_of(s->hub, s->cluster_id); o; o = o->bucket_next)
            if (o != s && !o->v2 && o->waiting && session_of(o, s->org_id, s->cluster_id))
                requeue_waiting(o);
}

static void submit_auth(tunnel_session *s)
{
    auth_job *j = calloc(1, sizeof(*j));
    if (j) {
        j->s = s;
        j->epoch = s->hub->revocation_epoch;
    }
    if (!j || workers_submit(s->hub->pool, WORKER_POOL_STORE, auth_run, auth_done, j) < 0) {
        free(j);
        start_close(s, (enum lws_close_status)1013, "Server busy");
        return;
    }
    s->pending_jobs++;
}

void tunnel_note_revocation(tunnel_hub *h) { h->revocation_epoch++; }

/* ---- token re-check (revocations this replica may have missed) ------------------ */

typedef struct {
    tunnel_session *s;
    int rc;
    store_agent_token tok;
} recheck_job;

static void recheck_run(worker_ctx *w, void *arg)
{
    recheck_job *j = arg;
    j->rc = store_agent_token_lookup_hash(w->store, j->s->token_hash, &j->tok);
}

static void recheck_done(void *arg)
{
    recheck_job *j = arg;
    tunnel_session *s = j->s;
    s->pending_jobs--;
    const char *reason = j->rc == STORE_NOT_FOUND ? PROTO_REASON_INVALID
                       : j->rc != STORE_OK        ? NULL /* store trouble: keep it */
                       : j->tok.revoked_at        ? PROTO_REASON_REVOKED
                                                  : NULL;
    if (reason && s->open && s->state == SESS_READY) {
        log_info("agent %s: token %s no longer valid (%s), closing the session", s->cluster_id,
                 s->token_id, reason);
        start_close(s, PROTO_CLOSE_POLICY, reason);
    }
    free(j);
    session_maybe_free(s);
}

void tunnel_recheck_tokens(tunnel_hub *h)
{
    for (tunnel_session *s = h->sessions; s; s = s->next) {
        if (s->state != SESS_READY || !s->open)
            continue;
        recheck_job *j = calloc(1, sizeof(*j));
        if (!j)
            return;
        j->s = s;
        if (workers_submit(h->pool, WORKER_POOL_STORE, recheck_run, recheck_done, j) < 0) {
            free(j);
            log_warn("token re-check skipped for %s: worker queue full", s->cluster_id);
            continue;
        }
        s->pending_jobs++;
    }
}

/* ---- idle timeouts and token expiry ------------------------------------------- */

#define SWEEP_EVERY_S 1

/* Once a second over every session: an agent silent for
 * AURORA_AGENT_IDLE_TIMEOUT is dropped (as lws's own timeout did), and a
 * token's lifetime bounds the sessions it opened, not only its handshakes:
 * a ready session ends when its token expires, as on revocation (wall-clock
 * time, checked each round).  O(sessions) per second instead of a timer
 * insertion per frame. */
static void sweep(lws_sorted_usec_list_t *sul)
{
    tunnel_hub *h = lws_container_of(sul, tunnel_hub, sweep_sul);
    time_t now = mono_s();
    int64_t wall = (int64_t)time(NULL);
    for (tunnel_session *s = h->sessions; s; s = s->next) {
        if (!s->open || s->state == SESS_CLOSING)
            continue;
        if (s->big_slot && now - s->big_since >= BIG_HOLD_MAX_S) {
            log_warn("agent %s: a message of %zu bytes so far took %d s, closing the connection",
                     s->cluster_id[0] ? s->cluster_id : "?", buf_pending(&s->rx), BIG_HOLD_MAX_S);
            start_close(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "Message too slow");
        } else if (s->wsi && !s->big_waiting && now - s->last_rx >= h->cfg->agent_idle_timeout) {
            /* (a connection waiting for an assembly slot is not read: its
             * silence is ours) */
            log_info("agent %s: nothing received for %d s, dropping the connection",
                     s->cluster_id[0] ? s->cluster_id : "?", h->cfg->agent_idle_timeout);
            s->state = SESS_CLOSING;
            s->idle_dropped = 1;
            lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        } else if (s->state == SESS_READY && s->token_expires_at &&
                   wall >= s->token_expires_at) {
            log_info("agent %s: token %s expired, closing the session", s->cluster_id,
                     s->token_id);
            start_close(s, PROTO_CLOSE_POLICY, PROTO_REASON_EXPIRED);
        }
    }
    h->sweeping = h->nsessions > 0;
    if (h->sweeping)
        lws_sul_schedule(h->ctx, 0, &h->sweep_sul, sweep,
                         (lws_usec_t)SWEEP_EVERY_S * LWS_USEC_PER_SEC);
}

int tunnel_cluster_supports(tunnel_hub *h, const char *org_id, const char *cluster_id,
                            const char *kind)
{
    int kubectl = !kind || !strcmp(kind, PROTO_KIND_KUBECTL);
    int any = 0;
    for (tunnel_session *s = bucket_of(h, cluster_id); s; s = s->bucket_next) {
        if (s->state != SESS_READY || !s->open || strcmp(s->cluster_id, cluster_id) ||
            strcmp(s->org_id, org_id))
            continue;
        if (kubectl || s->v2)
            return TUNNEL_SUPPORTED;
        any = 1;
    }
    return any ? TUNNEL_UNSUPPORTED : TUNNEL_NOT_CONNECTED;
}

int tunnel_close_sessions(tunnel_hub *h, const char *org_id, const char *cluster_id,
                          const char *token_id, const char *reason)
{
    int n = 0;
    for (tunnel_session *s = bucket_of(h, cluster_id); s; s = s->bucket_next) {
        if (s->state != SESS_READY || strcmp(s->org_id, org_id) || strcmp(s->cluster_id, cluster_id))
            continue;
        if (token_id && strcmp(s->token_id, token_id))
            continue;
        start_close(s, PROTO_CLOSE_POLICY, reason);
        n++;
    }
    return n;
}

int tunnel_close_superseded(tunnel_hub *h, const char *org_id, const char *cluster_id,
                            const char *instance, int64_t conn)
{
    int n = 0;
    tunnel_session *s = bucket_of(h, cluster_id);
    while (s) {
        tunnel_session *next = s->bucket_next;
        if (s->state == SESS_READY && !strcmp(s->org_id, org_id) &&
            !strcmp(s->cluster_id, cluster_id) && s->instance[0] && !strcmp(s->instance, instance) &&
            (!conn || !s->instance_conn || s->instance_conn < conn)) {
            start_close(s, LWS_CLOSE_STATUS_GOINGAWAY, TUNNEL_REASON_SUPERSEDED);
            requeue_waiting(s); /* now, not when its dead socket is given up */
            n++;
        }
        s = next;
    }
    return n;
}

/* s takes commands again: what it stepped aside for is gone. */
static void legacy_take_over(tunnel_session *s)
{
    s->outranked_ms = 0;
    s->outranked_by[0] = '\0';
    s->outranked_addr[0] = '\0';
    s->outranked_missed = 0;
    s->outranked_renewals = 0;
    if (!s->registered_fleet)
        registry_session_up(s->cluster_id);
    s->registered_fleet = 1;
}

/* Whether the legacy connection that became ready at ms on replica `from`
 * is newer than s (its wall-clock time, then the replicas' ids: every
 * replica ranks two of them the same way). */
static int legacy_newer(int64_t ms, const char *from, int64_t than_ms, const char *than_from)
{
    return ms > than_ms || (ms == than_ms && strcmp(from, than_from) > 0);
}

void tunnel_legacy_elsewhere(tunnel_hub *h, const char *org_id, const char *cluster_id,
                             const char *from, const char *addr, int64_t ready_ms, int up,
                             int renewals)
{
    if (renewals < 1)
        renewals = TUNNEL_LEGACY_ASIDE_RENEWALS;
    tunnel_session *newest = NULL; /* the one here that takes the commands */
    for (tunnel_session *s = bucket_of(h, cluster_id); s; s = s->bucket_next)
        if (!s->v2 && s->ready_ms && !s->outranked_ms && session_of(s, org_id, cluster_id) &&
            (!newest || s->ready_seq > newest->ready_seq))
            newest = s;
    /* An older one says it is up (it took over when a newer one ended, or
     * its replica asked again): ours outranks it, it learns so. */
    if (up && newest && legacy_newer(newest->ready_ms, instance_id(), ready_ms, from))
        registry_publish_legacy(newest->org_id, newest->cluster_id, newest->ready_ms, 1);
    for (tunnel_session *s = bucket_of(h, cluster_id); s; s = s->bucket_next) {
        if (s->v2 || !s->ready_ms || !session_of(s, org_id, cluster_id))
            continue;
        if (up) {
            if (s->outranked_ms == ready_ms && !strcmp(s->outranked_by, from)) {
                s->outranked_missed = 0; /* announced again: still up there */
                s->outranked_renewals = renewals;
                continue;
            }
            if (!legacy_newer(ready_ms, from, s->ready_ms, instance_id()) ||
                (s->outranked_ms && !legacy_newer(ready_ms, from, s->outranked_ms,
                                                  s->outranked_by)))
                continue;
            int was = s->outranked_ms != 0;
            s->outranked_ms = ready_ms;
            snprintf(s->outranked_by, sizeof(s->outranked_by), "%s", from);
            snprintf(s->outranked_addr, sizeof(s->outranked_addr), "%s", addr ? addr : "");
            s->outranked_missed = 0;
            s->outranked_renewals = renewals;
            if (was)
                continue;
            log_info("agent %s: a newer legacy connection of the cluster is up on another "
                     "replica; this one takes no more commands", s->cluster_id);
            if (s->registered_fleet)
                registry_session_down(s->cluster_id);
            s->registered_fleet = 0;
        } else if (s->outranked_ms == ready_ms && !strcmp(s->outranked_by, from)) {
            /* The connection it stepped aside for ended: it takes commands
             * again, and says so (any replica's newer one outranks it anew). */
            log_info("agent %s: the newer legacy connection on another replica ended; this "
                     "one takes commands again", s->cluster_id);
            legacy_take_over(s);
            registry_publish_legacy(s->org_id, s->cluster_id, s->ready_ms, 1);
        }
    }
    /* What those that stepped aside hold unsent moves on, once every one
     * that steps aside has: moved while an older one here was still to
     * step aside, it went to that one (the newest left taking commands),
     * a connection its agent may have left without a word. */
    if (up)
        for (tunnel_session *s = bucket_of(h, cluster_id); s; s = s->bucket_next)
            if (!s->v2 && s->outranked_ms && s->waiting && session_of(s, org_id, cluster_id))
                requeue_waiting(s);
}

/* The legacy connection of each cluster that takes its commands here,
 * announced (again): the older ones elsewhere stay aside while they hear it. */
static void legacy_announce_takers(tunnel_hub *h)
{
    for (tunnel_session *s = h->sessions; s; s = s->next) {
        if (s->v2 || !s->ready_ms || s->outranked_ms || !session_of(s, s->org_id, s->cluster_id))
            continue;
        int newest = 1;
        for (tunnel_session *o = bucket_of(h, s->cluster_id); o && newest; o = o->bucket_next)
            if (o != s && !o->v2 && o->ready_ms && !o->outranked_ms &&
                session_of(o, s->org_id, s->cluster_id) && o->ready_seq > s->ready_seq)
                newest = 0;
        if (newest)
            registry_publish_legacy(s->org_id, s->cluster_id, s->ready_ms, 1);
    }
}

void tunnel_legacy_renew(tunnel_hub *h, int redis_away)
{
    for (tunnel_session *s = h->sessions; s; s = s->next) {
        if (s->v2 || !s->ready_ms || s->state != SESS_READY || !s->open || !s->outranked_ms ||
            ++s->outranked_missed < s->outranked_renewals)
            continue;
        if (redis_away)
            log_info("agent %s: no word of the newer legacy connection on another replica for "
                     "%d registry renewals, Redis away; this one takes commands again (each "
                     "replica serves the agents it holds until Redis is back)",
                     s->cluster_id, s->outranked_missed);
        else
            log_info("agent %s: the newer legacy connection on another replica was not "
                     "announced again for %d registry renewals (its replica died, or stopped "
                     "without a word); this one takes commands again", s->cluster_id,
                     s->outranked_missed);
        legacy_take_over(s); /* announced below, when it is the cluster's newest here */
    }
    /* Redis away: nothing announced (queued, it would reach the others long
     * stale); once it is back every replica announces again (resync). */
    if (!redis_away)
        legacy_announce_takers(h);
}

void tunnel_legacy_forget(tunnel_hub *h, const char *from)
{
    for (tunnel_session *s = h->sessions; s; s = s->next)
        if (!s->v2 && s->ready_ms && s->state == SESS_READY && s->open && s->outranked_ms &&
            (!from || !strcmp(s->outranked_by, from)))
            legacy_take_over(s);
}

void tunnel_legacy_resync(tunnel_hub *h, int forget, const char *from)
{
    if (forget)
        tunnel_legacy_forget(h, from);
    /* The answer is what a renewal announces: announced too, a connection
     * that still steps aside, or an older one beside the newest here, made
     * the asking replica's older ones step aside for it, forwarding what
     * they held here, where no session takes it. */
    legacy_announce_takers(h);
}

/* ---- lws callbacks -------------------------------------------------------- */

static tunnel_session *session_new(tunnel_hub *h, struct lws *wsi, int v2)
{
    tunnel_session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->hub = h;
    s->wsi = wsi;
    s->open = 1;
    s->v2 = v2;
    /* The Python agent reads its next message only once the command it runs
     * has answered (agent.py message_loop): one at a time, the rest wait
     * here, where their deadlines, moves and callers' giving up apply.  A v2
     * agent names its limit in register, sent once it has our `connected`:
     * until then one at a time too, as a burst sent meanwhile (a session is
     * picked as soon as it is ready, the least loaded of its cluster) ended
     * past its limit as AGENT_BUSY instead of waiting here. */
    s->max_concurrent = 1;
    s->state = SESS_AUTHENTICATING;
    s->last_rx = mono_s();
    session_link(s);
    if (!h->sweeping && h->ctx) {
        h->sweeping = 1;
        lws_sul_schedule(h->ctx, 0, &h->sweep_sul, sweep,
                         (lws_usec_t)SWEEP_EVERY_S * LWS_USEC_PER_SEC);
    }
    return s;
}

/* The upgrade's headers: X-Cluster-ID (clen bytes, -1: absent; copied into
 * s->header_cluster_id when cluster_ok) and Authorization (authz, "" when
 * absent or too long; arepeat: sent more than once; the caller wipes it).
 * The token is looked up off the loop. */
static void session_authenticate(tunnel_session *s, const char *authz, int arepeat, int clen,
                                 int cluster_ok);

int tunnel_on_established(tunnel_hub *h, struct lws *wsi, struct tunnel_conn *c, int v2)
{
    tunnel_session *s = session_new(h, wsi, v2);
    if (!s)
        return -1;
    c->s = s;

    char authz[512] = "";
    int alen = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    /* A repeated Authorization is a fragment more (lws_hdr_copy would join
     * the copies with a comma): refused, never merged or half-read. */
    int arepeat = lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, 1) > 0;
    if (!arepeat && alen > 0 && alen < (int)sizeof(authz))
        lws_hdr_copy(wsi, authz, sizeof(authz), WSI_TOKEN_HTTP_AUTHORIZATION);
    /* X-Cluster-ID must name the token's cluster (auth_done compares them):
     * missing, empty or too long is refused, never skipped. */
    int clen = lws_hdr_custom_length(wsi, "x-cluster-id:", 13);
    int cluster_ok = clen > 0 && clen < (int)sizeof(s->header_cluster_id) &&
                     lws_hdr_custom_copy(wsi, s->header_cluster_id, sizeof(s->header_cluster_id),
                                         "x-cluster-id:", 13) == clen;
    session_authenticate(s, authz, arepeat, clen, cluster_ok);
    secret_wipe(authz, sizeof(authz));
    return 0;
}

static void session_authenticate(tunnel_session *s, const char *authz, int arepeat, int clen,
                                 int cluster_ok)
{
    if (!cluster_ok) {
        log_warn("agent connection rejected: %s X-Cluster-ID",
                 clen < 0 ? "no" : clen == 0 ? "an empty" : "a malformed or too long");
        s->header_cluster_id[0] = '\0';
        start_close(s, PROTO_CLOSE_POLICY, PROTO_REASON_INVALID);
        return;
    }
    const char *tok = NULL;
    if (!strncasecmp(authz, "Bearer ", 7)) {
        tok = authz + 7;
        while (*tok == ' ')
            tok++;
    }
    if (arepeat || !tok || !token_agent_well_formed(tok)) {
        log_warn("agent connection rejected: %s",
                 arepeat ? "repeated Authorization" : tok ? "malformed token" : "no bearer token");
        start_close(s, PROTO_CLOSE_POLICY, PROTO_REASON_INVALID);
        return;
    }
    /* The agent names its cluster by its token (docs/protocol.md); a header
     * that does not match the token is a confused or forged client.  The
     * session's cluster is then the one the token row names: a rotated
     * token keeps its cluster's first id. */
    char derived[CLUSTER_ID_LEN + 1];
    token_cluster_id(tok, derived);
    if (strcmp(s->header_cluster_id, derived)) {
        log_warn("agent connection rejected: X-Cluster-ID does not match the token");
        start_close(s, PROTO_CLOSE_POLICY, PROTO_REASON_INVALID);
        return;
    }
    token_hash(tok, s->token_hash);
    submit_auth(s);
}

/* Whether the count-th frame of a kind an agent should never send is worth a
 * log line: the first few, then every 1000th, so a misbehaving agent cannot
 * turn a few bytes per frame into a line each (it would fill the disk). */
static int log_sparingly(unsigned *count)
{
    ++*count;
    return *count <= 5 || *count % 1000 == 0;
}

/* What an agent says of itself (its version) as text fit for a log line,
 * an API answer and the connections row, which refuses what is not UTF-8
 * (the row would then stay unwritten, and the session's disconnect would
 * take the count of another, live session of the cluster): control
 * characters and invalid bytes become '?', and the copy is cut at a
 * character boundary to fit cap. */
static void agent_text(char *dst, size_t cap, const char *src)
{
    const unsigned char *p = (const unsigned char *)src;
    size_t n = strlen(src), o = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq_len(p + i, n - i);
        int c1 = l == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0; /* U+0080..U+009F */
        if (l <= 1 || c1) {
            unsigned char c = l == 1 && p[i] >= 0x20 && p[i] != 0x7f ? p[i] : '?';
            if (o + 1 >= cap)
                break;
            dst[o++] = (char)c;
            i += l ? l : 1;
            continue;
        }
        if (o + l >= cap)
            break;
        memcpy(dst + o, p + i, l);
        o += l;
        i += l;
    }
    dst[o] = '\0';
}

/* An agent's error_code is one of its codes (POLICY_DENIED, AGENT_BUSY, …):
 * it reaches the caller's answer as it is (the JSON answer, SSE events,
 * the audit outcome), so anything else an agent puts there (invalid
 * UTF-8, control characters, megabytes) is no code at all. */
static int error_code_ok(const char *c)
{
    if (!c || !*c)
        return 0;
    size_t n = 0;
    for (; c[n]; n++)
        if (n >= 64 || !((c[n] >= 'A' && c[n] <= 'Z') || (c[n] >= '0' && c[n] <= '9') ||
                         c[n] == '_'))
            return 0;
    return 1;
}

static void handle_data_frame(tunnel_session *s, const unsigned char *p, size_t n)
{
    int chan;
    uint32_t id;
    const unsigned char *payload;
    size_t plen;
    if (!s->v2 || proto_data_parse(p, n, &chan, &id, &payload, &plen) < 0) {
        if (log_sparingly(&s->bad_frames))
            log_warn("agent %s: malformed binary frame (%zu bytes) dropped (%u bad frames)",
                     s->cluster_id, n, s->bad_frames);
        return;
    }
    tunnel_req *r = find_started_v2(s, id);
    if (!r) {
        /* An agent bug (or a late frame racing a cancel): drop it, keep the
         * session. */
        if (log_sparingly(&s->stray_frames))
            log_warn("agent %s: output for request %u dropped: %s (%u such frames)",
                     s->cluster_id, id,
                     find_req_v2(s, id)           ? "that request was not sent to this agent yet"
                     : id && id <= s->next_id ? "that request already ended"
                                              : "no such request was sent to this agent",
                     s->stray_frames);
        return;
    }
    if (r->over_window_logged)
        return; /* already failed for breaking its window: the rest is dropped */
    if (r->received + (int64_t)plen > r->window + r->credited) {
        /* Flow control is what bounds memory: an agent that ignores it is
         * broken, and silently dropping bytes would hand the caller a
         * "successful" output with a hole in it.  Fail the request, stop
         * the command. */
        log_warn("agent %s: request %u sent %lld bytes beyond its flow-control window; "
                 "failing it and cancelling the command", s->cluster_id, id,
                 (long long)(r->received + (int64_t)plen - r->window - r->credited));
        r->over_window_logged = 1;
        req_protocol_error(r, "the agent sent more output than its flow-control window allowed "
                              "(agent protocol error); the command was cancelled");
        return;
    }
    r->received += (int64_t)plen;
    if (r->sink && plen)
        r->sink->on_data(r->ctx, chan, payload, plen);
}

static void process_message(tunnel_session *s, const char *p, size_t n)
{
    proto_msg m;
    char err[160];
    if (proto_decode(p, n, &m, err, sizeof(err)) < 0) {
        if (log_sparingly(&s->bad_frames))
            log_warn("agent %s: bad frame dropped: %s (%u bad frames)",
                     s->cluster_id[0] ? s->cluster_id : "?", err, s->bad_frames);
        return;
    }
    switch (m.type) {
    case MSG_REGISTER:
        agent_text(s->agent_version, sizeof(s->agent_version),
                   m.agent_version ? m.agent_version : "unknown");
        free(s->policy_json);
        s->policy_json = NULL;
        /* cJSON passes invalid UTF-8 through: not for an API answer */
        if (m.policy_json && utf8_valid(m.policy_json, strlen(m.policy_json))) {
            s->policy_json = m.policy_json;
            m.policy_json = NULL;
        }
        /* the first register names the limit (0: none), a later one may
         * only change it; what waited for it is sent */
        if (s->v2 && (m.max_concurrent > 0 || !s->registers))
            s->max_concurrent = m.max_concurrent;
        pump(s);
        /* once per connection from an agent; one that repeats it is
         * logged as sparingly as bad frames (each would be a line) */
        if (log_sparingly(&s->registers)) {
            if (s->registers == 1)
                log_info("agent %s registered, version %s", s->cluster_id, s->agent_version);
            else
                log_info("agent %s registered again, version %s (%u registers)", s->cluster_id,
                         s->agent_version, s->registers);
        }
        if (!s->registered_db) {
            s->registered_db = 1;
            s->last_hb_db = time(NULL);
            submit_conn(s, STORE_CONN_UP);
        }
        /* The same agent process on a new connection: the one it had is
         * dead (a silent one stays ready until the idle timeout, taking
         * commands that end in 504), here and on every other replica. */
        if (m.instance && !s->instance[0] && s->state == SESS_READY) {
            /* named after the walk: it is not one of its own elders */
            int old = tunnel_close_superseded(s->hub, s->org_id, s->cluster_id, m.instance,
                                              m.connection);
            snprintf(s->instance, sizeof(s->instance), "%s", m.instance);
            s->instance_conn = m.connection;
            if (old)
                log_info("agent %s: closed %d older connection(s) of the same agent process",
                         s->cluster_id, old);
            registry_publish_supersede(s->org_id, s->cluster_id, s->instance, s->instance_conn);
        }
        break;
    case MSG_HEARTBEAT:
        /* Not to a legacy agent running a command: the Python agent reads
         * nothing meanwhile (and drops acks unread), and its websockets
         * client stops reading the socket past 16 unread frames, so its own
         * keepalive pings lose their pongs and it drops the connection
         * (1011) 10 s later: a command over 16 heartbeats long was lost. */
        if (s->v2 || !s->inflight)
            send_json(s, proto_enc_heartbeat_ack());
        if (s->registered_db && time(NULL) - s->last_hb_db >= HEARTBEAT_DB_EVERY_S) {
            s->last_hb_db = time(NULL);
            submit_conn(s, STORE_CONN_HEARTBEAT);
        }
        break;
    case MSG_COMMAND_RESPONSE: {
        /* The legacy dialect's answer; a v2 agent ends commands with exec_end. */
        tunnel_req *r = s->v2 ? NULL : find_req_legacy(s, m.command_id);
        if (!r) {
            if (log_enabled(LOG_DEBUG)) { /* the agent's text: no control characters */
                char cid[64];
                agent_text(cid, sizeof(cid), m.command_id ? m.command_id : "");
                log_debug("agent %s: response for unknown command %s dropped", s->cluster_id,
                          cid);
            }
            break;
        }
        if (m.output_len && r->sink) {
            char cid[sizeof(r->legacy_id)];
            snprintf(cid, sizeof(cid), "%s", r->legacy_id);
            r->sink->on_data(r->ctx, PROTO_CHAN_STDOUT, (const unsigned char *)m.output,
                             m.output_len);
            /* on_data may have given the request up (its output over a
             * budget): look it up again rather than trust the pointer. */
            r = find_req_legacy(s, cid);
            if (!r)
                break;
        }
        /* The Python agent's return_code is subprocess's: -N for a kubectl
         * killed by signal N, which the caller gets as a v2 agent reports
         * it, 128 + N (not as a plain failure). */
        int rc = m.return_code;
        if (m.has_return_code && rc < 0 && rc >= -64)
            rc = 128 - rc;
        else if (rc < 0)
            rc = m.success == 1 ? 0 : 1;
        tunnel_result res = { .return_code = rc, .bytes = (int64_t)m.output_len,
                              .error = m.error ? m.error : "",
                              .error_code = rc == 124 ? EC_TIMEOUT : NULL };
        req_finish(r, &res);
        break;
    }
    case MSG_EXEC_END: {
        tunnel_req *r = s->v2 ? find_started_v2(s, m.id) : NULL;
        if (!r) {
            log_debug("agent %s: exec_end for unknown request %u dropped", s->cluster_id, m.id);
            break;
        }
        /* The agent times the process, but its word reaches the audit row
         * and the server-wide duration histogram: it cannot have run the
         * command longer than the server has waited since it was asked. */
        int64_t waited_ms = (int64_t)ceil((mono_now() - r->asked_at) * 1000.0);
        int64_t duration_ms = m.duration_ms < waited_ms ? m.duration_ms : waited_ms;
        tunnel_result res = { .return_code = m.return_code, .truncated = m.truncated,
                              .duration_ms = duration_ms, .bytes = r->received,
                              .error = m.error ? m.error : "",
                              .error_code = error_code_ok(m.error_code) ? m.error_code : NULL };
        req_finish(r, &res);
        break;
    }
    default:
        if (log_enabled(LOG_DEBUG)) { /* the agent's text: no control characters */
            char type[64];
            agent_text(type, sizeof(type), m.type_name ? m.type_name : "");
            log_debug("agent %s: ignoring message type '%s'", s->cluster_id, type);
        }
        break;
    }
    proto_msg_free(&m);
}

/* s's organization's share, found or made (NULL: out of memory).  O(orgs
 * holding or waiting), as taking s out of the queue is O(waiting). */
static big_org *big_org_join(tunnel_hub *h, tunnel_session *s)
{
    big_org *o = h->big_orgs;
    while (o && strcmp(o->org_id, s->org_id))
        o = o->next;
    if (!o) {
        o = calloc(1, sizeof(*o));
        if (!o)
            return NULL;
        snprintf(o->org_id, sizeof(o->org_id), "%s", s->org_id);
        o->next = h->big_orgs;
        if (o->next)
            o->next->prev = o;
        h->big_orgs = o;
    }
    o->refs++;
    s->big_org = o;
    return o;
}

static void big_org_leave(tunnel_hub *h, tunnel_session *s)
{
    big_org *o = s->big_org;
    if (!o)
        return;
    s->big_org = NULL;
    if (--o->refs > 0)
        return;
    if (o->prev)
        o->prev->next = o->next;
    else
        h->big_orgs = o->next;
    if (o->next)
        o->next->prev = o->prev;
    free(o);
}

/* Takes w (after prev, NULL for the head) out of the queue. */
static void big_unqueue(tunnel_hub *h, tunnel_session *w, tunnel_session *prev)
{
    if (prev)
        prev->big_next = w->big_next;
    else
        h->big_wait_head = w->big_next;
    if (h->big_wait_tail == w)
        h->big_wait_tail = prev;
    w->big_next = NULL;
    w->big_waiting = 0;
}

/* A free slot goes to the waiting connection whose organization holds the
 * fewest slots, the earliest of those: a tenant with many agents queued (or
 * trickling its messages for BIG_HOLD_MAX_S each, then reconnecting) cannot
 * make another's message wait for all of its own turns, only for the next
 * slot that frees; and a lone tenant still gets every slot (a slot is only
 * free while nobody waits).  O(waiting): it stops at the first waiter whose
 * organization holds none.  Each is read again. */
static void big_grant(tunnel_hub *h)
{
    while (h->big_free > 0 && h->big_wait_head) {
        tunnel_session *w = NULL, *wprev = NULL;
        for (tunnel_session *p = NULL, *c = h->big_wait_head; c; p = c, c = c->big_next) {
            if (!w || c->big_org->held < w->big_org->held) {
                w = c;
                wprev = p;
                if (!w->big_org->held)
                    break;
            }
        }
        big_unqueue(h, w, wprev);
        w->big_slot = 1;
        w->big_org->held++;
        w->big_since = mono_s();
        w->last_rx = w->big_since; /* not read while it waited: not idle */
        h->big_free--;
        if (w->wsi)
            lws_rx_flow_control(w->wsi, 1);
    }
}

/* The message in assembly ended (or the connection did): its slot, or its
 * place in the queue, goes. */
static void big_release(tunnel_session *s)
{
    tunnel_hub *h = s->hub;
    if (s->big_waiting) {
        tunnel_session *prev = NULL, *c = h->big_wait_head;
        while (c && c != s) {
            prev = c;
            c = c->big_next;
        }
        if (c)
            big_unqueue(h, s, prev);
        s->big_next = NULL;
        s->big_waiting = 0;
        if (s->wsi)
            lws_rx_flow_control(s->wsi, 1);
    }
    int freed = s->big_slot;
    if (freed) {
        s->big_slot = 0;
        s->big_org->held--;
        h->big_free++;
    }
    big_org_leave(h, s);
    if (freed)
        big_grant(h);
}

/* The message grows past BIG_MESSAGE: it takes a slot, or its connection
 * waits for one (what already arrived is kept: at most what lws had read).
 * -1: out of memory. */
static int big_admit(tunnel_session *s)
{
    tunnel_hub *h = s->hub;
    if (s->big_slot || s->big_waiting)
        return 0;
    big_org *o = big_org_join(h, s);
    if (!o)
        return -1;
    if (h->big_free > 0) { /* then nobody waits (big_grant) */
        h->big_free--;
        o->held++;
        s->big_slot = 1;
        s->big_since = mono_s();
        return 0;
    }
    s->big_waiting = 1;
    if (h->big_wait_tail)
        h->big_wait_tail->big_next = s;
    else
        h->big_wait_head = s;
    h->big_wait_tail = s;
    if (s->wsi)
        lws_rx_flow_control(s->wsi, 0);
    return 0;
}

/* The message in assembly is done with (processed, dropped or refused). */
static void rx_done(tunnel_session *s)
{
    buf_reset(&s->rx);
    big_release(s);
}

/* One fragment of a message: first and last say where it stands in it. */
static int receive_fragment(tunnel_session *s, const void *in, size_t len, int first, int last,
                            int binary)
{
    if (first && !s->rx_too_big) {
        buf_reset(&s->rx);
        s->rx_binary = binary;
    }
    size_t limit = !s->v2 ? (size_t)s->hub->cfg->legacy_max_frame
                  : s->rx_binary ? PROTO_DATA_HDR + PROTO_MAX_CHUNK : PROTO_MAX_CONTROL;
    if (s->state == SESS_AUTHENTICATING) {
        size_t room = EARLY_MAX_BYTES > s->early_bytes ? EARLY_MAX_BYTES - s->early_bytes : 0;
        if (room < limit)
            limit = room;
    }
    if (buf_pending(&s->rx) + len > limit) {
        if (!s->rx_too_big)
            log_warn("agent %s: message larger than %zu bytes, closing",
                     s->cluster_id[0] ? s->cluster_id : "?", limit);
        s->rx_too_big = 1;
        buf_free(&s->rx);
        big_release(s);
        start_close(s, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "Message too big");
        return 0;
    }
    if (!last && buf_pending(&s->rx) + len > BIG_MESSAGE && big_admit(s) < 0)
        return -1;
    if (buf_append(&s->rx, in, len) < 0)
        return -1;
    if (!last)
        return 0;
    if (s->state == SESS_CLOSING) {
        rx_done(s);
        return 0;
    }
    if (s->state == SESS_AUTHENTICATING) {
        if (s->nearly < MAX_PENDING_BEFORE_AUTH && !s->rx_binary) {
            size_t n;
            s->early[s->nearly] = buf_detach(&s->rx, &n);
            s->early_len[s->nearly++] = n;
            s->early_bytes += n;
        }
        rx_done(s);
        return 0;
    }
    if (s->rx_binary)
        handle_data_frame(s, (const unsigned char *)buf_head(&s->rx), buf_pending(&s->rx));
    else
        process_message(s, buf_head(&s->rx), buf_pending(&s->rx));
    rx_done(s);
    return 0;
}

int tunnel_on_receive(struct lws *wsi, struct tunnel_conn *c, const void *in, size_t len)
{
    tunnel_session *s = c->s;
    if (!s)
        return -1;
    s->last_rx = mono_s(); /* the idle sweep's clock */
    return receive_fragment(s, in, len, lws_is_first_fragment(wsi),
                            lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi),
                            lws_frame_is_binary(wsi));
}

static out_frame *pop_frame(tunnel_session *s)
{
    out_frame *f = s->oq_head;
    if (f) {
        s->oq_head = f->next;
        if (!s->oq_head)
            s->oq_tail = NULL;
        s->oq_bytes -= FRAME_COST(f->len);
    }
    return f;
}

int tunnel_on_writeable(struct lws *wsi, struct tunnel_conn *c)
{
    tunnel_session *s = c->s;
    if (!s)
        return -1;
    out_frame *f = pop_frame(s);
    if (f) {
        if (write_frame(wsi, f) < 0)
            return -1;
        if (s->oq_head || s->close_code)
            lws_callback_on_writable(wsi);
        return 0;
    }
    if (s->close_code) {
        /* -1 hands the close to lws, which sends the close frame and waits
         * for the agent's (up to 5 s); a -1 on a later WRITEABLE would drop
         * the socket at once, while an agent may still be sending: the reset
         * then loses the close frame (seen as 1006 instead of 1009) */
        if (s->close_handed)
            return 0;
        s->close_handed = 1;
        lws_close_reason(wsi, (enum lws_close_status)s->close_code,
                         (unsigned char *)s->close_reason, strlen(s->close_reason));
        return -1;
    }
    return 0;
}

/* Why a session ended, from a small fixed set (a metrics label and a log
 * field): the close this server started, or the agent's side. */
static const char *close_kind(const tunnel_session *s)
{
    if (s->idle_dropped)
        return "idle_timeout"; /* dropped without a close frame: no close code */
    if (!s->close_code)
        return "agent_closed";
    if (!strcmp(s->close_reason, PROTO_REASON_REVOKED))
        return "token_revoked";
    if (!strcmp(s->close_reason, PROTO_REASON_EXPIRED))
        return "token_expired";
    if (!strcmp(s->close_reason, TUNNEL_REASON_SUPERSEDED))
        return "superseded"; /* 1001 too, but no shutdown */
    switch (s->close_code) {
    case LWS_CLOSE_STATUS_GOINGAWAY:
        return "server_shutdown";
    case LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE:
        return "message_too_big";
    case LWS_CLOSE_STATUS_UNEXPECTED_CONDITION:
        return "server_unavailable";
    case 1013:
        return "server_busy";
    default:
        return "policy"; /* send queue overflow, connection deleted, protocol errors */
    }
}

/* The connection is gone: its requests fail, the session goes once no job
 * refers to it. */
static void session_closed(tunnel_session *s)
{
    s->wsi = NULL;
    big_release(s); /* a message cut off gives its slot on */
    s->open = 0;
    lws_sul_cancel(&s->close_sul);
    index_remove(s);
    if (s->counted) {
        const char *why = close_kind(s);
        log_field lf[] = { LOG_STR("cluster", s->cluster_id), LOG_STR("org", s->org_id),
                           LOG_STR("dialect", s->v2 ? "v2" : "legacy"), LOG_STR("reason", why) };
        log_fields(LOG_INFO, "agent disconnected", lf, (int)(sizeof(lf) / sizeof(lf[0])));
        sm_session_closed(s->v2 ? "v2" : "legacy", why);
        s->counted = 0;
    }
    s->state = SESS_CLOSING;
    if (s->registered_fleet)
        registry_session_down(s->cluster_id);
    s->registered_fleet = 0;
    if (s->ready_ms) /* the replicas' older legacy connections it outranked take over */
        registry_publish_legacy(s->org_id, s->cluster_id, s->ready_ms, 0);
    requeue_waiting(s); /* what it never sent moves on, or fails as not connected */
    while (s->reqs)
        req_fail(s->reqs, 502, EC_AGENT_DISCONNECTED, "agent disconnected mid-command");
    if (s->registered_db)
        submit_conn(s, STORE_CONN_DOWN);
    session_unlink(s);
    session_maybe_free(s);
}

void tunnel_on_closed(struct lws *wsi, struct tunnel_conn *c)
{
    tunnel_session *s = c->s;
    if (!s)
        return;
    c->s = NULL;
    session_closed(s);
}

void tunnel_shutdown(tunnel_hub *h)
{
    /* the timer lives in the lws context, destroyed before the hub */
    lws_sul_cancel(&h->sweep_sul);
    h->sweeping = 0;
    for (tunnel_session *s = h->sessions; s; s = s->next) {
        /* Closing first: a request that ends frees its slot, and pump would
         * send the next queued one to the agent, which must stay unsent. */
        start_close(s, LWS_CLOSE_STATUS_GOINGAWAY, "Server shutting down");
        while (s->reqs) {
            /* Whether the command may have run is what its caller needs to
             * know: a retry of one the agent had could run it twice. */
            if (s->reqs->started)
                req_fail(s->reqs, 502, EC_COMMAND_INTERRUPTED,
                         "the server shut down while the agent ran the command (it waits for "
                         "running commands up to AURORA_SHUTDOWN_DRAIN_S, or until a second "
                         "signal): the command may have run; check before retrying it");
            else
                req_fail(s->reqs, 503, EC_SERVER_SHUTTING_DOWN,
                         "the server is shutting down: the command was still queued for a free "
                         "slot of its agent and was not run; retry it (another replica, or this "
                         "one once restarted, takes it)");
        }
        /* A legacy connection's end, said now (session_closed says it once
         * the connection is gone): one whose agent does not answer the close
         * frame is gone after the registry has stopped (registry_stop), too
         * late to reach the replicas whose older connections stepped aside
         * for it, which then waited out the lapse (tunnel_legacy_renew). */
        if (s->ready_ms) {
            registry_publish_legacy(s->org_id, s->cluster_id, s->ready_ms, 0);
            s->ready_ms = 0;
        }
    }
}

void tunnel_describe_sessions(tunnel_hub *h, const char *org_id, const char *cluster_id,
                              cJSON *arr)
{
    for (tunnel_session *s = bucket_of(h, cluster_id); s; s = s->bucket_next) {
        if (s->state != SESS_READY || strcmp(s->org_id, org_id) || strcmp(s->cluster_id, cluster_id))
            continue;
        cJSON *o = cJSON_CreateObject();
        if (!o)
            return;
        cJSON_AddStringToObject(o, "agent_version", s->agent_version);
        cJSON_AddStringToObject(o, "protocol", s->v2 ? PROTO_SUBPROTOCOL_V2 : "legacy");
        time_json_add(o, "connected_at", s->connected_at);
        cJSON_AddNumberToObject(o, "inflight", s->inflight);
        cJSON_AddNumberToObject(o, "queued", s->waiting);
        cJSON *pol = s->policy_json ? cJSON_Parse(s->policy_json) : NULL;
        if (pol)
            cJSON_AddItemToObject(o, "policy", pol);
        else
            cJSON_AddNullToObject(o, "policy");
        cJSON_AddItemToArray(arr, o);
    }
}

void tunnel_hub_free(tunnel_hub *h)
{
    if (!h)
        return;
    /* Sessions without a socket (tests) are still linked; the pool is
     * stopped, so no job refers to any of them any more. */
    while (h->sessions) {
        tunnel_session *s = h->sessions;
        int pending = s->pending_jobs; /* session_closed frees s when 0 */
        session_closed(s);
        if (pending) {
            log_error("agent session freed with %d job(s) pending", pending);
            session_free(s);
        }
    }
    while (h->conn_head) { /* never written */
        conn_job *j = h->conn_head;
        h->conn_head = j->next;
        free(j);
    }
    if (h->conn_running)
        h->conn_running->hub = NULL; /* a pool still running finishes it without us */
    free(h);
}

/* ---- without a socket (unit tests) ------------------------------------------ */

tunnel_session *tunnel_session_connect(tunnel_hub *h, int v2, const char *authorization,
                                       const char *cluster_id)
{
    tunnel_session *s = session_new(h, NULL, v2);
    if (!s)
        return NULL;
    char authz[512] = "";
    if (authorization && strlen(authorization) < sizeof(authz))
        snprintf(authz, sizeof(authz), "%s", authorization);
    int clen = cluster_id ? (int)strlen(cluster_id) : -1;
    int cluster_ok = clen > 0 && clen < (int)sizeof(s->header_cluster_id);
    if (cluster_ok)
        snprintf(s->header_cluster_id, sizeof(s->header_cluster_id), "%s", cluster_id);
    session_authenticate(s, authz, 0, clen, cluster_ok);
    secret_wipe(authz, sizeof(authz));
    return s;
}

void tunnel_session_receive(tunnel_session *s, const void *p, size_t n, int binary)
{
    receive_fragment(s, p, n, 1, 1, binary);
}

void tunnel_session_receive_part(tunnel_session *s, const void *p, size_t n, int first, int last,
                                 int binary)
{
    receive_fragment(s, p, n, first, last, binary);
}

int tunnel_session_assembly_waiting(const tunnel_session *s) { return s->big_waiting; }

int tunnel_hub_assembly_free(const tunnel_hub *h) { return h->big_free; }

char *tunnel_session_pop(tunnel_session *s, size_t *len, int *binary)
{
    out_frame *f = pop_frame(s);
    if (!f)
        return NULL;
    char *copy = malloc(f->len + 1);
    if (copy) {
        memcpy(copy, f->data + LWS_PRE, f->len);
        copy[f->len] = '\0';
        *len = f->len;
        *binary = f->binary;
    }
    frame_free(f);
    return copy;
}

void tunnel_session_drop(tunnel_session *s) { session_closed(s); }

int tunnel_session_ready(const tunnel_session *s) { return s->open && s->state == SESS_READY; }

int tunnel_session_close_code(const tunnel_session *s, const char **reason)
{
    if (reason)
        *reason = s->close_reason;
    return s->close_code;
}
