/* forward.h — a command for a cluster whose agent another replica holds is
 * run there (registry.h says which replica).
 *
 * The replica the caller reached (the origin) authenticates, validates,
 * admits and audits the command as for a local agent; only the tunnel
 * request goes elsewhere.  It is POSTed to the owner's own listener:
 *
 *   POST /internal/forward/exec            (the same port as the API, TLS
 *   X-Aurora-Forward-Secret: <secret>       when the API has it)
 *   {org_id, user_id, cluster_id, kind, program, argv, command, env,
 *    timeout, max_output}
 *
 * The owner checks AURORA_INTERNAL_FORWARD_SECRET (SHA-256 of both sides
 * compared in constant time), runs it on its agent as a streamed command
 * (exec.h, SSE) without auditing it again, and streams the events back; the
 * origin turns them into its own sink's output and end.  Flow control holds
 * end to end: the origin stops reading the owner's stream while its caller
 * has not taken what it was given, the owner's unsent output then holds the
 * agent's credit back.  A caller that leaves closes the forward connection,
 * which cancels the command at the agent.  An owner that dies mid-command
 * fails it with 502 AGENT_DISCONNECTED, one whose shutdown cuts it with its
 * 502 COMMAND_INTERRUPTED (both may have run); one that cannot be reached before
 * the command was sent gives 503 AGENT_NOT_CONNECTED.  An answer that proves
 * the command ran nowhere (that, or the owner's own AGENT_NOT_CONNECTED: its
 * session stepped aside or ended since the origin's lookup) is followed by
 * one more lookup, and one retry within the caller's time left: on this
 * replica's own session of the cluster when one takes the command now (the
 * agent reconnected here; the lookup skips this replica's registration),
 * else at the replica the registry names now, if another (forward.c,
 * fwd_retry, again_here).
 *
 * Why the same listener rather than a separate internal one: the replicas
 * already serve TLS (or sit behind a TLS-terminating proxy) on that port,
 * the chart's Service and NetworkPolicy have one port to describe, and the
 * route is useless without the deployment secret.  The edge proxy should
 * still refuse /internal/forward/ from outside (docs/security.md). */
#ifndef AURORA_FORWARD_H
#define AURORA_FORWARD_H

#include <libwebsockets.h>
#include <stddef.h>

#include "server_config.h"
#include "tunnel.h"

/* Main thread, after registry_start: the client side's context and settings. */
void forward_start(const server_config *cfg, struct lws_context *ctx, tunnel_hub *tunnels);
/* Registers POST /internal/forward/exec (server start, beside the modules). */
void forward_register(void);

/* Loop thread: runs p on the replica at owner_addr ("host:port") on behalf
 * of user_id; output and end reach sink as from tunnel_exec.  NULL with err
 * when the forward cannot even be started. */
tunnel_req *forward_exec(const char *owner_addr, const tunnel_exec_params *p, const char *user_id,
                         const tunnel_sink *sink, void *ctx, char *err, size_t errlen);

/* Loop thread, a tunnel_forward_fn (tunnel.h): r, a request the tunnel hub
 * held and never sent to an agent, runs at the replica at owner_addr as p,
 * r's caller getting its output and end from there.  0, or -1 (r untouched). */
int forward_held(const char *owner_addr, const tunnel_exec_params *p, tunnel_req *r);

/* Loop thread, server shutdown, after tunnel_shutdown: what this replica
 * forwarded and its caller still waits for ends now, as tunnel_shutdown ends
 * a local command: 502 COMMAND_INTERRUPTED once the owner may have it (its
 * connection is closed, which cancels it there), else 503
 * SERVER_SHUTTING_DOWN (it did not run); no retry starts. */
void forward_shutdown(void);

/* The lws protocol of the forward connections (server.c's protocol table). */
#define FORWARD_PROTOCOL "aurora-forward"
int forward_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len);

/* How a forwarding replica authenticates the replica it sends a command to.
 * FORWARD_PEER_CA: against the CA bundle AURORA_INTERNAL_CA_FILE.
 * FORWARD_PEER_PINNED: the peer must present exactly the certificate this
 * replica serves (the first of AURORA_TLS_CERT, shared by the replicas) --
 * not anything its issuer signed: the file's intermediates are not anchors.
 * FORWARD_PEER_NONE: neither is set (or TLS is off); the server warns. */
typedef enum { FORWARD_PEER_NONE, FORWARD_PEER_CA, FORWARD_PEER_PINNED } forward_peer_mode;
forward_peer_mode forward_peer(const server_config *cfg, const char **file);

#endif
