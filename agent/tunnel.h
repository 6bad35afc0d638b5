/* tunnel.h — the agent's outbound WebSocket to the server (libwebsockets
 * client, subprotocol aurora-tunnel.v2, legacy messages understood too):
 * connect with Authorization/X-Cluster-ID, register after `connected`,
 * heartbeats and a silence watchdog, reconnect with backoff, dispatch of
 * exec/cancel/credit/kubectl_command to the runner, and the frame writer
 * draining the outgoing queue.  Everything here runs on the event loop thread
 * except agent_tunnel_request_stop() and agent_tunnel_wake(). */
#ifndef AURORA_AGENT_TUNNEL_H
#define AURORA_AGENT_TUNNEL_H

#include <libwebsockets.h>

#include "agent_config.h"

/* Creates the client vhost in ctx and schedules the first connection. */
int agent_tunnel_start(struct lws_context *ctx, const agent_config *cfg);
/* Any thread (async-signal context excluded): begin the graceful shutdown;
 * a second call skips the remaining grace. */
void agent_tunnel_request_stop(void);
/* Any thread: wake the event loop (new frames queued, a job finished). */
void agent_tunnel_wake(void);
/* 1 once the shutdown is complete and the loop may end. */
int agent_tunnel_done(void);
/* Tunnel up and the server's `connected` received (for /ready). */
int agent_tunnel_ready(void);
/* Before the context is destroyed: no more reconnects or timers. */
void agent_tunnel_teardown(void);
/* Releases what the tunnel holds (after the context is destroyed). */
void agent_tunnel_free(void);

#endif
