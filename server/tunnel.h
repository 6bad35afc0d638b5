/* tunnel.h — agent sessions on /kubectl-agent and the requests multiplexed
 * over them.  Knows nothing of HTTP or connectors: callers hand it an argv and
 * a sink, and get output and exactly one end callback back, on the loop. */
#ifndef AURORA_TUNNEL_H
#define AURORA_TUNNEL_H

#include <stddef.h>
#include <stdint.h>

#include "argv.h"
#include "server_config.h"

struct lws;
struct lws_context;

typedef struct tunnel_req tunnel_req;

typedef struct {
    int failed;             /* 1: no result from the agent (see error_code) */
    int http_status;        /* suggested status when failed */
    int return_code;
    int truncated;
    int64_t duration_ms;
    int64_t bytes;
    const char *error;      /* agent's or server's message ("" if none) */
    const char *error_code; /* NULL, agent codes (proto.h) or AGENT_DISCONNECTED / TIMEOUT */
} tunnel_result;

typedef struct {
    void (*on_data)(void *ctx, int channel, const unsigned char *p, size_t n);
    /* Exactly once; the tunnel_req is gone when this returns. */
    void (*on_end)(void *ctx, const tunnel_result *r);
} tunnel_sink;

typedef struct {
    const char *org_id;
    const char *cluster_id;
    const char *kind; /* "kubectl" or "cloud_exec" (v2 agents only) */
    const argv_t *argv;
    const char *legacy_command; /* sent verbatim to legacy agents when not NULL */
    double timeout;   /* seconds the command may run */
    int64_t max_output;
    const char *program;      /* cloud_exec: the executable ("gcloud"); NULL for kubectl */
    const char *const *env;   /* cloud_exec: nenv "NAME=value" strings; the encoded
                                 frame is wiped once written (the caller wipes its own) */
    int nenv;
} tunnel_exec_params;

enum { TUNNEL_NOT_CONNECTED = -1, TUNNEL_UNSUPPORTED = 0, TUNNEL_SUPPORTED = 1 };
/* Whether a ready session of org/cluster can run `kind`: legacy agents run
 * kubectl only.  TUNNEL_UNSUPPORTED when only such sessions are connected. */
int tunnel_cluster_supports(const char *org_id, const char *cluster_id, const char *kind);

#define EC_AGENT_NOT_CONNECTED "AGENT_NOT_CONNECTED"
#define EC_AGENT_DISCONNECTED "AGENT_DISCONNECTED"

/* Sends the command to a ready session of that cluster (the least loaded if
 * several).  NULL when none is connected (err filled). */
tunnel_req *tunnel_exec(const tunnel_exec_params *p, const tunnel_sink *sink, void *ctx,
                        char *err, size_t errlen);
/* The sink consumed n output bytes: return flow-control credit. */
void tunnel_req_consumed(tunnel_req *r, size_t n);
/* The caller is gone: cancel at the agent; no further callbacks. */
void tunnel_req_abandon(tunnel_req *r);

/* Closes (1008, reason) every session of org/cluster, or only those
 * authenticated with token_id when it is not NULL.  Returns how many. */
int tunnel_close_sessions(const char *org_id, const char *cluster_id, const char *token_id,
                          const char *reason);
/* Any session authenticating right now re-checks its token (revocation race). */
void tunnel_note_revocation(void);
size_t tunnel_session_count(void);
/* Appends one object per live session of that cluster (agent version,
 * protocol, connected_at, inflight, queued, policy) to the JSON array. */
struct cJSON;
void tunnel_describe_sessions(const char *org_id, const char *cluster_id, struct cJSON *arr);

/* ---- lws glue ----------------------------------------------------------- */
struct tunnel_conn {
    struct tunnel_session *s;
};
void tunnel_module_init(const server_config *cfg, struct lws_context *ctx);
int tunnel_on_established(struct lws *wsi, struct tunnel_conn *c, int v2);
int tunnel_on_receive(struct lws *wsi, struct tunnel_conn *c, const void *in, size_t len);
int tunnel_on_writeable(struct lws *wsi, struct tunnel_conn *c);
void tunnel_on_closed(struct lws *wsi, struct tunnel_conn *c);
/* Server shutdown: fail all requests, close every session. */
void tunnel_shutdown(void);

#endif
