/* health.h — the agent's small HTTP endpoints, vhosts of the agent's single
 * libwebsockets context:  GET /health → 200 {"status":"ok"} always;
 * GET /ready → 200 while the tunnel is up and the server said `connected`,
 * else 503; GET /metrics → Prometheus text (metrics.h).  /metrics is served
 * on the health listener when AURORA_METRICS_PORT equals the health port,
 * else on a listener of its own.  A connection has 3 s to send its request
 * headers, and one source address holds at most 8 connections (health.c). */
#ifndef AURORA_AGENT_HEALTH_H
#define AURORA_AGENT_HEALTH_H

#include <libwebsockets.h>

enum { HEALTH_SERVE_PROBES = 1, HEALTH_SERVE_METRICS = 2 };

/* Creates a listening vhost on bind:port serving what `serve` says.  ready()
 * is asked on each /ready (on the event loop thread).  0, or -1 (logged) if it
 * cannot listen. */
int agent_health_start(struct lws_context *ctx, const char *bind, int port, int serve,
                       int (*ready)(void));

#endif
