/* health.h — the agent's small HTTP endpoint, a vhost of the agent's single
 * libwebsockets context:  GET /health → 200 {"status":"ok"} always;
 * GET /ready → 200 while the tunnel is up and the server said `connected`,
 * else 503. */
#ifndef AURORA_AGENT_HEALTH_H
#define AURORA_AGENT_HEALTH_H

#include <libwebsockets.h>

/* Creates the listening vhost on bind:port.  ready() is asked on each /ready
 * (on the event loop thread).  0, or -1 (logged) if it cannot listen. */
int agent_health_start(struct lws_context *ctx, const char *bind, int port, int (*ready)(void));

#endif
