/* listen_share.h — AURORA_PORT shared by several aurora-server processes on
 * one host (AURORA_LISTEN_SHARE=1), so that TLS handshakes run on more than
 * one core.
 *
 * Debian's libwebsockets (4.1) has one service thread per process, and sets
 * SO_REUSEPORT on its listener only when it runs several, so a second
 * process could not bind the port.  With the setting, this module owns the
 * main port's listening socket instead: it binds it with SO_REUSEPORT (the
 * kernel then spreads new connections over every process bound to it),
 * accepts on the libev loop, applies the same admission as lws's listener
 * (conn_admission_filter: pending-handshake cap and accept rate, before any
 * TLS work) and hands each connection to the main vhost, which lws created
 * without a listener of its own; the TLS handshake, HTTP and WebSocket are
 * then lws's as for any connection.
 *
 * Each process is a replica (registry.h: PostgreSQL and Redis), holding the
 * agents the kernel gave it; a command for an agent another process holds
 * is forwarded to that process's own listener, AURORA_INTERNAL_PORT, which
 * the kernel does not share.  The TLS ticket key file is shared too, so an
 * agent that reconnects to another process still resumes its session. */
#ifndef AURORA_LISTEN_SHARE_H
#define AURORA_LISTEN_SHARE_H

#include <stddef.h>

struct ev_loop;
struct lws_vhost;

/* Main thread, once the main vhost exists: binds bind:port with
 * SO_REUSEADDR + SO_REUSEPORT and starts accepting into vh, with the
 * keepalive settings of info (the context's).  bind_addr as AURORA_BIND:
 * NULL, "" or 0.0.0.0 is every address of both families, an IP literal
 * exactly that address.  0, or -1 with err. */
struct lws_context_creation_info;
int listen_share_start(struct ev_loop *loop, struct lws_vhost *vh,
                       const struct lws_context_creation_info *info, const char *bind_addr,
                       int port, char *err, size_t errlen);
/* Main thread, before the lws context is destroyed: closes the listener
 * (connections already handed over stay). */
void listen_share_stop(void);

#endif
