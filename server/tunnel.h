/* tunnel.h — agent sessions on /kubectl-agent and the requests multiplexed
 * over them.  Knows nothing of HTTP or connectors: callers hand it an argv and
 * a sink, and get output and exactly one end callback back, on the loop.
 *
 * Every session and request belongs to one tunnel_hub, created by server.c
 * and passed to every call that is not about one request; lws callbacks find
 * their session through the connection's user data, timers through
 * container_of.  Loop thread only. */
#ifndef AURORA_TUNNEL_H
#define AURORA_TUNNEL_H

#include <stddef.h>
#include <stdint.h>

#include "argv.h"
#include "server_config.h"
#include "worker.h"

struct lws;
struct lws_context;

typedef struct tunnel_hub tunnel_hub;
typedef struct tunnel_session tunnel_session;
typedef struct tunnel_req tunnel_req;

/* How long past its timeout a request waits for the agent before the
 * server fails it (504 TIMEOUT): the agent's own timeout answers first.
 * The default of AURORA_EXEC_DEADLINE_GRACE_S. */
#define TUNNEL_DEADLINE_GRACE_S 15

struct tunnel_exec_params;
/* How a hub has another replica run a command it held unsent (forward.c,
 * forward_held): p at the replica at owner_addr, as r, which the hub has not
 * sent to any agent: on success r is a remote request from then on
 * (tunnel_req_set_remote; its output and end come from there), 0; -1 when
 * the forward could not even start (r untouched, the hub's to fail). */
typedef int (*tunnel_forward_fn)(const char *owner_addr, const struct tunnel_exec_params *p,
                                 tunnel_req *r);

typedef struct {
    const server_config *cfg; /* stream_window, agent_idle_timeout, legacy_max_frame */
    struct lws_context *lws;  /* the loop whose timers sessions and requests use */
    workers *pool;            /* token lookups, connection bookkeeping (not owned) */
    double deadline_grace;    /* seconds: AURORA_EXEC_DEADLINE_GRACE_S */
    /* NULL: what a legacy session that steps aside holds unsent fails
     * (503, did not run) when no session here can take it. */
    tunnel_forward_fn forward;
    /* What a legacy session's ready time is read from, in ms (the server:
     * registry_clock_ms, the clock the replicas share; tests step it
     * back); NULL: CLOCK_REALTIME. */
    int64_t (*wall_ms)(void);
} tunnel_hub_opts;

/* NULL when out of memory.  No session until the first connection. */
tunnel_hub *tunnel_hub_new(const tunnel_hub_opts *o);
/* The loop whose timers the hub uses (tunnel_hub_opts.lws). */
struct lws_context *tunnel_hub_lws(tunnel_hub *h);
/* After the lws context is destroyed (every connection closed) and the pool
 * stopped: frees what is left. */
void tunnel_hub_free(tunnel_hub *h);
/* While on, a frame queued for a connection with nothing else waiting is
 * written at once rather than on the connection's next WRITEABLE.  Only for
 * loop code that runs outside every tunnel connection's own callbacks (the
 * workers' completions): lws must not be inside that connection. */
void tunnel_hub_write_now(tunnel_hub *h, int on);

typedef struct {
    int failed;             /* 1: no result from the agent (see error_code) */
    int http_status;        /* suggested status when failed */
    int return_code;
    int truncated;
    int64_t duration_ms;
    int64_t bytes;
    const char *error;      /* agent's or server's message ("" if none) */
    const char *error_code; /* NULL, agent codes (proto.h) or AGENT_DISCONNECTED / TIMEOUT /
                               AGENT_NOT_CONNECTED (queued, never sent: it did not run) /
                               COMMAND_INTERRUPTED / SERVER_SHUTTING_DOWN (tunnel_shutdown) */
} tunnel_result;

typedef struct {
    void (*on_data)(void *ctx, int channel, const unsigned char *p, size_t n);
    /* Exactly once; the tunnel_req is gone when this returns. */
    void (*on_end)(void *ctx, const tunnel_result *r);
} tunnel_sink;

typedef struct tunnel_exec_params {
    const char *org_id;
    const char *cluster_id;
    const char *user_id; /* who asked (NULL: unknown): named to a replica it is forwarded to */
    const char *kind; /* "kubectl" or "cloud_exec" (v2 agents only) */
    const argv_t *argv;
    const char *legacy_command; /* sent verbatim to legacy agents when not NULL */
    double timeout;   /* seconds the command may run */
    int64_t max_output;
    /* The caller takes the output only whole (a JSON result): v2 agents may
     * keep up to this many bytes back and send them with exec_end, so a
     * short output crosses the tunnel with the end instead of ahead of it
     * (docs/protocol.md, "hold_output").  0: output as it comes (SSE).
     * Capped at half the request's window, so held bytes never stall it. */
    int64_t hold_output;
    const char *program;      /* cloud_exec: the executable ("gcloud"); NULL for kubectl */
    const char *const *env;   /* cloud_exec: nenv "NAME=value" strings; the encoded
                                 frame is wiped once written (the caller wipes its own) */
    int nenv;
} tunnel_exec_params;

enum { TUNNEL_NOT_CONNECTED = -1, TUNNEL_UNSUPPORTED = 0, TUNNEL_SUPPORTED = 1 };
/* Whether a ready session of org/cluster can run `kind`: legacy agents run
 * kubectl only.  TUNNEL_UNSUPPORTED when only such sessions are connected. */
int tunnel_cluster_supports(tunnel_hub *h, const char *org_id, const char *cluster_id,
                            const char *kind);

#define EC_AGENT_NOT_CONNECTED "AGENT_NOT_CONNECTED"
#define EC_AGENT_DISCONNECTED "AGENT_DISCONNECTED"
#define EC_AGENT_PROTOCOL "AGENT_PROTOCOL_ERROR" /* e.g. output beyond the window */
/* 503: stopping (exec_ctx_drain); the command was not run (refused, or still
 * queued at the server when the sessions closed: tunnel_shutdown) */
#define EC_SERVER_SHUTTING_DOWN "SERVER_SHUTTING_DOWN"
/* 502: the agent had the command when the server's shutdown closed its
 * session (tunnel_shutdown): it may have run, as with AGENT_DISCONNECTED */
#define EC_COMMAND_INTERRUPTED "COMMAND_INTERRUPTED"

/* Sends the command to a ready session of that cluster (the least loaded if
 * several, then the one picked least often).  NULL when none is connected
 * (err filled). */
tunnel_req *tunnel_exec(tunnel_hub *h, const tunnel_exec_params *p, const tunnel_sink *sink,
                        void *ctx, char *err, size_t errlen);
/* The sink consumed n output bytes: return flow-control credit. */
void tunnel_req_consumed(tunnel_req *r, size_t n);
/* The caller is gone: cancel at the agent; no further callbacks. */
void tunnel_req_abandon(tunnel_req *r);

/* A request that another replica runs for this one (forward.h): the caller
 * gets the same tunnel_req and sink callbacks as for a local agent; what it
 * credits (tunnel_req_consumed) and abandons goes to ops instead of an agent.
 * The forwarder delivers output with tunnel_req_remote_data and the end,
 * exactly once, with tunnel_req_remote_end (which frees r; after an abandon
 * neither may be called).  NULL when out of memory. */
typedef struct {
    void (*consumed)(void *rctx, size_t n);
    void (*abandon)(void *rctx); /* r is freed already */
} tunnel_remote_ops;
tunnel_req *tunnel_req_remote(const tunnel_sink *sink, void *ctx, const tunnel_remote_ops *ops,
                              void *rctx);
/* The forwarder takes over r, a request handed to a tunnel_forward_fn, as
 * if tunnel_req_remote had made it (ops NULL: it gives r back untouched). */
void tunnel_req_set_remote(tunnel_req *r, const tunnel_remote_ops *ops, void *rctx);
void tunnel_req_remote_data(tunnel_req *r, int channel, const unsigned char *p, size_t n);
void tunnel_req_remote_end(tunnel_req *r, const tunnel_result *res);
/* The other way: r, a remote request whose forwarder sent it nowhere that
 * ran it (no output, no end given: forward.c's retry), becomes a local one
 * on the session of org/cluster tunnel_exec would pick for p (the same
 * rules: v2 or the newest legacy session not stepped aside, kubectl only
 * for a legacy one, held while the agent has no free slot), with its
 * caller's sink and context: its output and its one end come from there,
 * its credit and abandon go there.  0; -1 when no session here takes it,
 * -2 when the one that would cannot (its queue full, out of memory): both
 * with err, r untouched (still the forwarder's). */
int tunnel_req_run_here(tunnel_hub *h, tunnel_req *r, const tunnel_exec_params *p, char *err,
                        size_t errlen);

/* Closes (1008, reason) every session of org/cluster, or only those
 * authenticated with token_id when it is not NULL.  Returns how many. */
int tunnel_close_sessions(tunnel_hub *h, const char *org_id, const char *cluster_id,
                          const char *token_id, const char *reason);
/* An agent process (register's "instance") connected again as connection
 * number conn (0: unknown): its older ready sessions of org/cluster
 * (connection number below conn, or unknown) are closed (1001) and what
 * they queued but never sent moves to another session.  An agent whose old
 * connection died silently holds no second session waiting for the idle
 * timeout.  Returns how many. */
#define TUNNEL_REASON_SUPERSEDED "Superseded by a newer connection"
int tunnel_close_superseded(tunnel_hub *h, const char *org_id, const char *cluster_id,
                            const char *instance, int64_t conn);
/* Another replica (its instance id `from`, its internal address `addr`, ""
 * when it named none) says a legacy connection of org/cluster became ready
 * there at ready_ms (up 1) or ended (up 0).  Of a cluster's legacy
 * connections only the newest takes commands, over every replica: this
 * replica's older ones step aside while a newer one is up elsewhere (they
 * take no command, the cluster is not registered for them, what they hold
 * unsent moves to another session here, or is forwarded to `addr`
 * (tunnel_hub_opts.forward), or fails as never run) and take commands again
 * once it ended, or once it has not been announced again (up 1, the same
 * ready_ms and replica) for `renewals` of this replica's registry renewals
 * (tunnel_legacy_renew; registry_aside_renewals: the announcer's renewal
 * period may differ from ours, TUNNEL_LEGACY_ASIDE_RENEWALS when they match).
 * Each announcement again sets it anew. */
void tunnel_legacy_elsewhere(tunnel_hub *h, const char *org_id, const char *cluster_id,
                             const char *from, const char *addr, int64_t ready_ms, int up,
                             int renewals);
/* Stepping aside is a lease, as a registration is: its end may never be
 * published (its replica was SIGKILLed or OOM-killed, its publish was lost),
 * and the cluster's live agent would take no command for as long as it
 * lived.  At each of its registry renewals (a third of
 * AURORA_REGISTRY_LEASE_S, registry.h) a replica announces again the legacy
 * connection of each cluster that takes its commands here, and a session
 * stepped aside for a connection not announced again for this many of the
 * announcer's renewals (more than its lease of silence) takes commands
 * again, registered, and announces itself.  Counted in this replica's
 * renewals, scaled when the announcer's period differs (registry.h). */
#define TUNNEL_LEGACY_ASIDE_RENEWALS 4
/* redis_away: the renewal's time came while Redis was away.  It counts all
 * the same (no replica hears another then: each serves the agents it holds,
 * and a session stepped aside for good answered 503 for the whole outage);
 * nothing is announced, as every replica announces again once it is back
 * (tunnel_legacy_resync). */
void tunnel_legacy_renew(tunnel_hub *h, int redis_away);
/* The legacy session of each cluster that takes its commands here announces
 * itself again (registry_publish_legacy), as at a renewal (one that steps
 * aside, or an older one beside it, does not: the asking replica would step
 * aside for it), after forgetting what they stepped aside for when `forget`:
 * all of it with `from` NULL (this replica missed the other replicas' news
 * while Redis was away), else what replica `from` announced (it asks again,
 * as it may have missed news, and announces again what it holds: what it
 * said before, its connections' ends included, may never have reached us). */
void tunnel_legacy_resync(tunnel_hub *h, int forget, const char *from);
/* Only the forgetting of tunnel_legacy_resync: what those sessions stepped
 * aside for is forgotten (they take commands again, unannounced), the
 * announcement left to the caller (registry.c coalesces the answers to
 * other replicas' requests, which anyone who may publish can send). */
void tunnel_legacy_forget(tunnel_hub *h, const char *from);
/* Any session authenticating right now re-checks its token (revocation race). */
void tunnel_note_revocation(tunnel_hub *h);
/* Every ready session looks its token up again (on the pool) and closes if
 * it was revoked or deleted: after this replica missed the other replicas'
 * revocations (its Redis subscription was down, registry.h). */
void tunnel_recheck_tokens(tunnel_hub *h);
size_t tunnel_session_count(tunnel_hub *h);
/* Appends one object per live session of that cluster (agent version,
 * protocol, connected_at, inflight, queued, policy) to the JSON array. */
struct cJSON;
void tunnel_describe_sessions(tunnel_hub *h, const char *org_id, const char *cluster_id,
                              struct cJSON *arr);

/* ---- lws glue ----------------------------------------------------------- */
struct tunnel_conn {
    tunnel_session *s;
};
int tunnel_on_established(tunnel_hub *h, struct lws *wsi, struct tunnel_conn *c, int v2);
int tunnel_on_receive(struct lws *wsi, struct tunnel_conn *c, const void *in, size_t len);
int tunnel_on_writeable(struct lws *wsi, struct tunnel_conn *c);
void tunnel_on_closed(struct lws *wsi, struct tunnel_conn *c);
/* Server shutdown: close every session, fail its requests, and tell the
 * other replicas its legacy connections ended (before registry_stop).  A
 * request its agent was sent fails 502 COMMAND_INTERRUPTED (it may have run:
 * its caller must not simply retry it), one still queued here for a free
 * slot 503 SERVER_SHUTTING_DOWN (it did not run: a retry is safe). */
void tunnel_shutdown(tunnel_hub *h);

/* ---- without a socket (unit tests) ---------------------------------------
 * A session with no connection under it, driven as lws would drive one:
 * connect authenticates it as an upgrade with these headers does (NULL: the
 * header is absent; the token is looked up on the pool); receive takes one
 * complete message from the agent; pop takes the next frame the server
 * would write (malloc'd payload, NULL when none is queued); drop ends it as
 * a closed connection does (its requests fail, it is freed). */
tunnel_session *tunnel_session_connect(tunnel_hub *h, int v2, const char *authorization,
                                       const char *cluster_id);
void tunnel_session_receive(tunnel_session *s, const void *p, size_t n, int binary);
/* One fragment of a message, as lws delivers a large one (first, last). */
void tunnel_session_receive_part(tunnel_session *s, const void *p, size_t n, int first, int last,
                                 int binary);
/* 1 while its big message waits for an assembly slot (not read meanwhile). */
int tunnel_session_assembly_waiting(const tunnel_session *s);
/* Assembly slots free (AURORA_AGENT_ASSEMBLY_BUDGET / AURORA_LEGACY_MAX_FRAME at start). */
int tunnel_hub_assembly_free(const tunnel_hub *h);
char *tunnel_session_pop(tunnel_session *s, size_t *len, int *binary);
void tunnel_session_drop(tunnel_session *s);
/* 1 once authenticated and not closing. */
int tunnel_session_ready(const tunnel_session *s);
/* The close code the server ended it with (0: none yet), and its reason. */
int tunnel_session_close_code(const tunnel_session *s, const char **reason);

#endif
