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
 * through workers_opts.notify), where it may touch lws objects.  The queue
 * is bounded: submit fails when it is full and the caller answers "busy".
 * Every pool, queue and lock belongs to one `workers` object. */
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

/* The server's pools (opaque): created by server.c, passed to whatever
 * submits jobs (tunnel.c, exec.c, instance.c). */
typedef struct workers workers;

struct exec_ctx;   /* exec.h */
struct tunnel_hub; /* tunnel.h */

/* What a job sees, one per thread. */
typedef struct {
    store_t *store;
    secrets_t *secrets; /* shared by all workers; NULL when the backend failed to open */
    const server_config *cfg;
    struct exec_ctx *exec;      /* commands: admission and limits (exec.h) */
    struct tunnel_hub *tunnels; /* agent sessions (tunnel.h): loop thread only, so a job
                                   hands it to the on_loop callback it schedules */
    int index;
    worker_pool pool;
    struct worker_thread *thread; /* the pool's thread it belongs to; NULL outside a pool */
} worker_ctx;

typedef void (*job_run_fn)(worker_ctx *w, void *arg);
typedef void (*job_done_fn)(void *arg);

#define WORKER_QUEUE_MAX 20000

typedef struct {
    const server_config *cfg; /* database_url; threads: workers, outbound_workers, and
                                 WORKER_PROBE_THREADS for the probe pool */
    secrets_t *secrets;       /* not owned */
    /* Any thread (a worker, with the pool's lock held): a job finished, its
     * done() waits for workers_drain_completions.  The server wakes its
     * event loop (lws_cancel_service). */
    void (*notify)(void *arg);
    void *notify_arg;
} workers_opts;

/* Opens a store per worker; no thread runs yet.  NULL with err on failure. */
workers *workers_new(const workers_opts *o, char *err, size_t errlen);
/* Starts the threads; exec and tunnels (may be NULL) are what their jobs
 * may reach through worker_ctx.  -1 with err when a thread cannot start. */
int workers_start(workers *wp, struct exec_ctx *exec, struct tunnel_hub *tunnels, char *err,
                  size_t errlen);
/* Loop thread only.  0 on success, -1 when the queue is full, the pool has
 * not started or is stopping.  done may be NULL: the job then ends on its
 * worker and the loop is not woken for it. */
int workers_submit(workers *wp, worker_pool pool, job_run_fn run, job_done_fn done, void *arg);
/* Loop thread: run the done() of every finished job. */
void workers_drain_completions(workers *wp);
/* Finishes queued jobs, joins the threads, runs remaining done() callbacks;
 * from then on submit fails.  Idempotent. */
void workers_stop(workers *wp);
/* Stops (if not done yet), closes the stores and frees the pool. */
void workers_free(workers *wp);
/* Jobs queued, parked or running (diagnostics; drain waits for none). */
size_t workers_backlog(workers *wp);
/* Jobs waiting in one pool's queue (not yet running): /metrics. */
size_t workers_queued(workers *wp, worker_pool pool);
/* Jobs of one pool parked until their tenant's place frees: /metrics. */
size_t workers_parked(workers *wp, worker_pool pool);
/* Threads of one pool waiting for a job (tests: which one a job goes to). */
int workers_idle(workers *wp, worker_pool pool);

/* ---- a tenant's share of a pool ---------------------------------------------------
 *
 * The outbound workers run every organization's provider calls, each of which
 * may wait seconds, up to its timeout: one organization's handful of slow
 * calls held every thread, and everyone else's requests queued behind them.
 * A job that learns its tenant (after authentication, or from the flow an
 * OAuth callback's state names: router.h, router_set_public_tenant) asks
 * for a place under it; a tenant at its limit has the job parked: it leaves
 * the thread, holds nothing but its queue entry, and runs again from the
 * start (authenticated or resolved again: what it did before asking must
 * be safe to do twice) as soon as one of that tenant's places frees, ahead
 * of the queue.
 * Other tenants' jobs take the freed threads meanwhile.  Nothing is refused:
 * a tenant's burst waits its turn, as in the queue it came from.
 *
 * Worker thread, inside a job's run.  1: the job holds a place under key until
 * its run returns (also when nothing is counted: limit <= 0, no key, a key of
 * STORE_ID_LEN or more, or the pool stopping).  0: the job is parked; its run
 * must return at once, answering nothing. */
int workers_share_enter(worker_ctx *w, const char *key, int limit);
/* Places key holds in pool, and its jobs parked (tests, diagnostics). */
void workers_share_count(workers *wp, worker_pool pool, const char *key, int *held,
                         size_t *parked);
/* The limit for a pool of `threads` when the setting is `setting` (0:
 * automatic, half the pool rounded up; under 4 threads, none).  0: none. */
int workers_share_limit(int threads, int setting);

/* http.c's dispatch, which names no pool set (that file is being changed on
 * another branch): submits to the running server's pools.  Defined in
 * server.c; goes once http.c takes the pools from its connection. */
int workers_submit_pool(worker_pool pool, job_run_fn run, job_done_fn done, void *arg);

#endif
