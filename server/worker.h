/* worker.h — the thread pools that keep blocking work off the event loop.
 *
 * Three pools: WORKER_POOL_STORE for work bounded by the state store,
 * WORKER_POOL_OUTBOUND for calls to providers (OAuth, token exchange,
 * project listing), which can take seconds: a provider that never answers
 * then ties up only outbound workers, never token or exec requests; and
 * WORKER_POOL_PROBE, one thread for the readiness check (/ready), so that
 * store workers that are all waiting on a stalled database (each until its
 * deadline) cannot delay the readiness answer beyond the check's own.
 *
 * The event loop submits jobs; a worker thread runs job->run() with its own
 * store handle; then job->done() runs back on the event-loop thread (woken
 * with lws_cancel_service), where it may touch lws objects.  The queue is
 * bounded: submit fails when it is full and the caller answers "busy". */
#ifndef AURORA_WORKER_H
#define AURORA_WORKER_H

#include <stddef.h>

#include "secrets.h"
#include "server_config.h"
#include "store.h"

struct lws_context;

typedef enum {
    WORKER_POOL_STORE = 0,
    WORKER_POOL_OUTBOUND = 1,
    WORKER_POOL_PROBE = 2,
    WORKER_POOLS
} worker_pool;

/* Threads of WORKER_POOL_PROBE (one: its checks need no parallelism). */
#define WORKER_PROBE_THREADS 1

typedef struct {
    store_t *store;
    secrets_t *secrets; /* shared by all workers; NULL when the backend failed to open */
    const server_config *cfg;
    int index;
    worker_pool pool;
} worker_ctx;

typedef void (*job_run_fn)(worker_ctx *w, void *arg);
typedef void (*job_done_fn)(void *arg);

#define WORKER_QUEUE_MAX 20000

int workers_start(const server_config *cfg, secrets_t *secrets, struct lws_context *ctx,
                  char *err, size_t errlen);
/* Loop thread only.  0 on success, -1 when the queue is full or stopping. */
int workers_submit(job_run_fn run, job_done_fn done, void *arg);
int workers_submit_pool(worker_pool pool, job_run_fn run, job_done_fn done, void *arg);
/* Loop thread: run the done() of every finished job. */
void workers_drain_completions(void);
/* Finishes queued jobs, joins the threads, runs remaining done() callbacks. */
void workers_stop(void);
/* Jobs queued or running (diagnostics). */
size_t workers_backlog(void);

#endif
