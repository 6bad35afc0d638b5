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
#include "outq.h"
#include "runner.h"

/* One tunnel (opaque): its connection state, resolver thread and timers.  It
 * uses cfg, runner and outq (not owned; they outlive it), and is the user
 * pointer of its vhost and connections, so several can share a context. */
typedef struct agent_tunnel agent_tunnel;

/* NULL on OOM.  Nothing is connected until agent_tunnel_start. */
agent_tunnel *agent_tunnel_new(const agent_config *cfg, agent_runner *runner, agent_outq *outq);
/* Creates the client vhost in ctx and schedules the first connection. */
int agent_tunnel_start(agent_tunnel *t, struct lws_context *ctx);
/* Any thread (async-signal context excluded): begin the graceful shutdown;
 * a second call skips the remaining grace. */
void agent_tunnel_request_stop(agent_tunnel *t);
/* Any thread: wake the event loop (new frames queued, a job finished). */
void agent_tunnel_wake(agent_tunnel *t);
/* 1 once the shutdown is complete and the loop may end. */
int agent_tunnel_done(agent_tunnel *t);
/* Tunnel up and the server's `connected` received (for /ready). */
int agent_tunnel_ready(agent_tunnel *t);
/* Before the context is destroyed: no more reconnects or timers. */
void agent_tunnel_teardown(agent_tunnel *t);
/* Releases what the tunnel holds and the tunnel (after the context is destroyed). */
void agent_tunnel_free(agent_tunnel *t);

/* ---- without a server (unit tests) ----
 * begin_session starts a connection generation as a connection attempt does
 * (the queue is reset to accept only it) but opens nothing; handle_message
 * then takes one complete text message as if the server had sent it on that
 * connection (dispatch to the runner, replies on the queue), and then stops
 * reading if the queue is backlogged as after a received message;
 * after_write decides again as a write pass does once it took frames off
 * the queue (reading resumes when it has drained); rx_paused says whether
 * the connection is being read (0) or not (1); receive takes one fragment
 * of a message as the connection's RECEIVE callback does (first / final:
 * its place in the message, binary: the message's opcode; data is wiped
 * once read, as received text is). */
uint64_t agent_tunnel_begin_session(agent_tunnel *t);
void agent_tunnel_handle_message(agent_tunnel *t, const char *data, size_t len);
void agent_tunnel_after_write(agent_tunnel *t);
int agent_tunnel_rx_paused(agent_tunnel *t);
void agent_tunnel_receive(agent_tunnel *t, void *data, size_t len, int first, int final,
                          int binary);

#endif
