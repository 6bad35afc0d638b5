/* periodic.h — recurring background work on the worker pools (pollers).
 *
 * A module registers a task once at start-up (before periodic_schedule,
 * e.g. from its register_routes); the server then runs it on a worker of
 * the task's pool, first after `first_delay_s`, then after whatever delay
 * the run returned (a poller answers "my next row is due in N s", or the
 * provider's rate-limit reset).  One run of a task at a time: a slow
 * provider never piles them up.  The timer lives on the event loop
 * (lws_sul); the run never does.
 *
 * instance.c's lease renewal predates this and keeps its own timer.  The
 * GitHub OAuth repository poller (connectors/github_poll.c) is the first
 * user; other pollers register the same way. */
#ifndef AURORA_PERIODIC_H
#define AURORA_PERIODIC_H

#include "worker.h"

struct lws_context;

#define PERIODIC_MAX_TASKS 32
#define PERIODIC_MAX_DELAY_S 3600L

/* Worker thread: one run; returns seconds until the next one (clamped to
 * 1..PERIODIC_MAX_DELAY_S). */
typedef long (*periodic_fn)(worker_ctx *w);

/* Start-up only (single thread).  A name already registered is ignored
 * (register_routes may run again in tests).  0, or -1 when the table is full. */
int periodic_add(const char *name, worker_pool pool, long first_delay_s, periodic_fn fn);
/* Loop thread, once the workers run: arms every task's timer. */
void periodic_schedule(struct lws_context *ctx, workers *pool);
/* Loop thread, before workers_stop: no run is submitted from now on. */
void periodic_stop(void);

#endif
