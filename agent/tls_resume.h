/* tls_resume.h — TLS session resumption for the agent's tunnel.
 *
 * libwebsockets 4.1 keeps no client TLS sessions, so every reconnection
 * would be a full handshake.  When a server restarts, its whole fleet
 * reconnects at once; a resumed handshake (the session ticket the server
 * gave before, whose keys survive its restart: server/tls_tickets.h) skips
 * the certificate work on both sides.  The agent has one connection at a
 * time on its client context: the last session the server gave is offered
 * at the next handshake. */
#ifndef AURORA_AGENT_TLS_RESUME_H
#define AURORA_AGENT_TLS_RESUME_H

#include <openssl/ssl.h>

/* Installs the callbacks on the tunnel's client SSL_CTX (lws's
 * LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS). */
void tls_resume_attach(SSL_CTX *ctx);
/* Whether the last completed handshake was a resumed one. */
int tls_resume_last_resumed(void);
/* Drops the kept session (at exit; harmless otherwise). */
void tls_resume_forget(void);

#endif
