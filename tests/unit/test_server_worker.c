/* test_server_worker.c — the server's thread pools (server/worker.c) as an
 * object of their own, without an lws loop: the test plays the loop (it is
 * woken through workers_opts.notify and drains the completions).  Covered:
 * jobs run on worker threads with their own store and the services given to
 * workers_start, done() back on the draining thread, exactly once each; the
 * three pools are apart (outbound and probe jobs finish while every store
 * worker is stuck); the bounded queue; nothing accepted before start or once
 * stopping; a stop with jobs still queued runs them all and their done();
 * two pool sets side by side; a store that cannot be opened; a job goes to
 * the thread that went idle last; completions wake the loop once until it
 * drains them, with the pool's lock released; store workers are refused
 * the secrets backend, outbound workers are not; a tenant's share of a pool
 * (its jobs past the limit parked off the threads, another tenant's run
 * meanwhile, each parked job run once when a place frees, a stop runs the
 * parked ones). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proc_harness.h"
#include "secrets.h"
#include "worker.h"

#define WAIT_MS 20000

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The test's side of one pool set: its wake-ups, a gate that blocks jobs,
 * and what the jobs and their completions saw. */
typedef struct {
    server_config cfg;
    workers *wp;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int wakeups;
    int gate_open;
    int inside; /* jobs waiting at the gate */
    int ran[WORKER_POOLS];
    int done;
    int bad; /* a job or done() saw something it should not have */
    int probe_lock; /* notify checks the pool's lock is free */
    int active, active_max; /* gated share jobs past workers_share_enter, the most at once */
    pthread_t loop_thread;
} fixture;

/* What one job saw. */
typedef struct {
    fixture *fx;
    int gated;
    worker_pool pool;
    int runs, dones;
    int ran_on; /* worker_ctx.index of the thread that ran it */
    pthread_t done_on;
    const char *share_key; /* workers_share_enter first, with share_limit */
    int share_limit;
    int parks; /* times it was parked */
    int count_active; /* counted in fx->active while it runs */
} job_rec;

static void *backlog_main(void *arg)
{
    (void)workers_backlog(arg); /* takes the pool's lock */
    return NULL;
}

/* Whether another thread can take the pool's lock now (within WAIT_MS:
 * a thread of a loaded machine may wait seconds to run at all). */
static int pool_lock_free(workers *wp)
{
    pthread_t th;
    if (pthread_create(&th, NULL, backlog_main, wp) != 0)
        return 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_MS / 1000;
    if (pthread_timedjoin_np(th, NULL, &ts) != 0) {
        pthread_detach(th);
        return 0;
    }
    return 1;
}

static void notify(void *arg)
{
    fixture *fx = arg;
    /* The loop takes the pool's lock as soon as it is woken: it must be free. */
    if (fx->probe_lock && !pool_lock_free(fx->wp))
        __atomic_add_fetch(&fx->bad, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&fx->mu);
    fx->wakeups++;
    pthread_cond_broadcast(&fx->cv);
    pthread_mutex_unlock(&fx->mu);
}

static void job_run(worker_ctx *w, void *arg)
{
    job_rec *j = arg;
    fixture *fx = j->fx;
    if (j->share_key && !workers_share_enter(w, j->share_key, j->share_limit)) {
        pthread_mutex_lock(&fx->mu);
        j->parks++;
        pthread_mutex_unlock(&fx->mu);
        return;
    }
    pthread_mutex_lock(&fx->mu);
    if (j->count_active && ++fx->active > fx->active_max)
        fx->active_max = fx->active;
    if (pthread_equal(pthread_self(), fx->loop_thread) || !w->store || w->pool != j->pool ||
        w->cfg != &fx->cfg)
        fx->bad++;
    if (j->gated) {
        fx->inside++;
        pthread_cond_broadcast(&fx->cv);
        while (!fx->gate_open)
            pthread_cond_wait(&fx->cv, &fx->mu);
        fx->inside--;
    }
    j->runs++;
    j->ran_on = w->index;
    fx->ran[w->pool]++;
    if (j->count_active)
        fx->active--;
    pthread_mutex_unlock(&fx->mu);
}

static void job_done(void *arg)
{
    job_rec *j = arg;
    pthread_mutex_lock(&j->fx->mu);
    j->dones++;
    j->done_on = pthread_self();
    j->fx->done++;
    pthread_mutex_unlock(&j->fx->mu);
}

static fixture *fixture_new(int store_workers, int outbound_workers)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    pthread_mutex_init(&fx->mu, NULL);
    pthread_cond_init(&fx->cv, NULL);
    fx->loop_thread = pthread_self();
    fx->cfg.database_url = ":memory:"; /* each worker its own store */
    fx->cfg.workers = store_workers;
    fx->cfg.outbound_workers = outbound_workers;
    workers_opts o = { .cfg = &fx->cfg, .notify = notify, .notify_arg = fx };
    char err[256] = "";
    fx->wp = workers_new(&o, err, sizeof(err));
    if (!fx->wp)
        fail_msg("workers_new: %s", err);
    return fx;
}

static void fixture_start(fixture *fx, struct exec_ctx *exec, struct tunnel_hub *tunnels)
{
    char err[256] = "";
    if (workers_start(fx->wp, exec, tunnels, err, sizeof(err)) != 0)
        fail_msg("workers_start: %s", err);
}

static void fixture_free(fixture *fx)
{
    workers_free(fx->wp);
    pthread_cond_destroy(&fx->cv);
    pthread_mutex_destroy(&fx->mu);
    free(fx);
}

static void open_gate(fixture *fx)
{
    pthread_mutex_lock(&fx->mu);
    fx->gate_open = 1;
    pthread_cond_broadcast(&fx->cv);
    pthread_mutex_unlock(&fx->mu);
}

/* Until n jobs wait at the gate (a deadline, never a sleep). */
static void wait_inside(fixture *fx, int n)
{
    int64_t end = now_ms() + WAIT_MS;
    pthread_mutex_lock(&fx->mu);
    while (fx->inside < n) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&fx->cv, &fx->mu, &ts);
        if (now_ms() > end) {
            pthread_mutex_unlock(&fx->mu);
            fail_msg("only %d of %d jobs reached the gate", fx->inside, n);
        }
    }
    pthread_mutex_unlock(&fx->mu);
}

/* Plays the loop: sleeps until notified, drains, until `until` returns 1. */
static void loop_until(fixture *fx, int (*until)(fixture *, void *), void *arg)
{
    int64_t end = now_ms() + WAIT_MS;
    for (;;) {
        /* Read before draining: a job that finishes after the drain has
         * notified past `seen`, so the wait below does not miss it. */
        pthread_mutex_lock(&fx->mu);
        int seen = fx->wakeups;
        pthread_mutex_unlock(&fx->mu);
        workers_drain_completions(fx->wp);
        if (until(fx, arg))
            return;
        pthread_mutex_lock(&fx->mu);
        while (fx->wakeups == seen && now_ms() < end) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&fx->cv, &fx->mu, &ts);
        }
        pthread_mutex_unlock(&fx->mu);
        if (now_ms() > end)
            fail_msg("the loop waited %d ms in vain", WAIT_MS);
    }
}

/* Until the loop has been woken n times (a deadline, never a sleep). */
static void wait_wakeups(fixture *fx, int n)
{
    int64_t end = now_ms() + WAIT_MS;
    pthread_mutex_lock(&fx->mu);
    while (fx->wakeups < n && now_ms() < end) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&fx->cv, &fx->mu, &ts);
    }
    int got = fx->wakeups;
    pthread_mutex_unlock(&fx->mu);
    if (got < n)
        fail_msg("the loop was woken %d times, not %d, within %d ms", got, n, WAIT_MS);
}

static int done_reaches(fixture *fx, void *arg)
{
    pthread_mutex_lock(&fx->mu);
    int ok = fx->done >= *(int *)arg;
    pthread_mutex_unlock(&fx->mu);
    return ok;
}

static int rec_done(fixture *fx, void *arg)
{
    pthread_mutex_lock(&fx->mu);
    int ok = ((job_rec *)arg)->dones > 0;
    pthread_mutex_unlock(&fx->mu);
    return ok;
}

/* ---- tests ------------------------------------------------------------------- */

static void test_jobs_run_on_workers(void **state)
{
    (void)state;
    fixture *fx = fixture_new(2, 1);
    int exec_marker, tunnel_marker;
    /* Not started: nothing is accepted (nothing would run it). */
    job_rec early = { .fx = fx, .pool = WORKER_POOL_STORE };
    assert_int_equal(workers_submit(fx->wp, WORKER_POOL_STORE, job_run, job_done, &early), -1);
    fixture_start(fx, (struct exec_ctx *)&exec_marker, (struct tunnel_hub *)&tunnel_marker);

    enum { N = 60 };
    job_rec recs[N];
    for (int i = 0; i < N; i++) {
        recs[i] = (job_rec){ .fx = fx, .pool = (worker_pool)(i % WORKER_POOLS) };
        assert_int_equal(workers_submit(fx->wp, recs[i].pool, job_run, job_done, &recs[i]), 0);
    }
    int n = N;
    loop_until(fx, done_reaches, &n);
    assert_int_equal(fx->bad, 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(recs[i].runs, 1);
        assert_int_equal(recs[i].dones, 1);
        assert_true(pthread_equal(recs[i].done_on, fx->loop_thread));
    }
    for (int p = 0; p < WORKER_POOLS; p++)
        assert_int_equal(fx->ran[p], N / WORKER_POOLS);
    assert_int_equal(early.runs, 0);
    assert_int_equal(workers_backlog(fx->wp), 0);
    fixture_free(fx);
}

/* Until n threads of the store pool wait for a job.  Going idle notifies
 * nobody, so this polls, to a deadline. */
static void wait_idle(fixture *fx, int n)
{
    int64_t end = now_ms() + WAIT_MS;
    while (workers_idle(fx->wp, WORKER_POOL_STORE) != n) {
        if (now_ms() > end)
            fail_msg("%d of %d store workers idle after %d ms",
                     workers_idle(fx->wp, WORKER_POOL_STORE), n, WAIT_MS);
        sched_yield();
    }
}

/* One job at a time goes to the thread that went idle last, so under light
 * load one thread does the work (its SQLite page cache stays valid) while
 * the others sleep; a job submitted while that thread is busy goes to
 * another idle one, not behind it. */
static void test_last_idle_takes_the_job(void **state)
{
    (void)state;
    enum { THREADS = 4, ROUNDS = 12 };
    fixture *fx = fixture_new(THREADS, 0);
    fixture_start(fx, NULL, NULL);
    job_rec recs[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        wait_idle(fx, THREADS);
        recs[i] = (job_rec){ .fx = fx, .pool = WORKER_POOL_STORE, .ran_on = -1 };
        assert_int_equal(workers_submit(fx->wp, WORKER_POOL_STORE, job_run, job_done, &recs[i]),
                         0);
        loop_until(fx, rec_done, &recs[i]);
        if (i > 0)
            assert_int_equal(recs[i].ran_on, recs[0].ran_on);
    }
    /* While it is held at the gate, the next job goes to another thread. */
    wait_idle(fx, THREADS);
    job_rec held = { .fx = fx, .gated = 1, .pool = WORKER_POOL_STORE, .ran_on = -1 };
    assert_int_equal(workers_submit(fx->wp, WORKER_POOL_STORE, job_run, job_done, &held), 0);
    wait_inside(fx, 1);
    job_rec beside = { .fx = fx, .pool = WORKER_POOL_STORE, .ran_on = -1 };
    assert_int_equal(workers_submit(fx->wp, WORKER_POOL_STORE, job_run, job_done, &beside), 0);
    loop_until(fx, rec_done, &beside);
    assert_int_equal(held.ran_on, -1); /* set after the gate */
    assert_int_not_equal(beside.ran_on, recs[0].ran_on);
    open_gate(fx);
    loop_until(fx, rec_done, &held);
    assert_int_equal(held.ran_on, recs[0].ran_on);
    assert_int_equal(fx->bad, 0);
    fixture_free(fx);
}

/* What a job sees of the server: the services handed to workers_start. */
static void services_run(worker_ctx *w, void *arg)
{
    void **seen = arg;
    seen[0] = w->exec;
    seen[1] = w->tunnels;
}

static void test_services_reach_jobs(void **state)
{
    (void)state;
    fixture *fx = fixture_new(1, 0);
    int exec_marker, tunnel_marker;
    fixture_start(fx, (struct exec_ctx *)&exec_marker, (struct tunnel_hub *)&tunnel_marker);
    void *seen[2] = { NULL, NULL };
    assert_int_equal(workers_submit(fx->wp, WORKER_POOL_STORE, services_run, NULL, seen), 0);
    workers_stop(fx->wp); /* runs what is queued first */
    assert_ptr_equal(seen[0], &exec_marker);
    assert_ptr_equal(seen[1], &tunnel_marker);
    fixture_free(fx);
}

/* A job without done(): it runs once on a worker, and the loop is not woken
 * for it (an audit flush must not cost the loop a pass per command). */
static void test_job_without_done(void **state)
{
    (void)state;
    fixture *fx = fixture_new(1, 0);
    fixture_start(fx, NULL, NULL);
    enum { N = 20 };
    job_rec recs[N];
    for (int i = 0; i < N; i++) {
        recs[i] = (job_rec){ .fx = fx, .pool = WORKER_POOL_STORE };
        assert_int_equal(workers_submit(fx->wp, WORKER_POOL_STORE, job_run, NULL, &recs[i]), 0);
    }
    /* One job with done() behind them: when it is back, the single worker
     * has run every earlier one (one thread takes them in order). */
    job_rec last = { .fx = fx, .pool = WORKER_POOL_STORE };
    assert_int_equal(workers_submit(fx->wp, WORKER_POOL_STORE, job_run, job_done, &last), 0);
    loop_until(fx, rec_done, &last);
    assert_int_equal(fx->bad, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(recs[i].runs, 1);
    /* The worker wakes the loop after letting go of the pool's lock, so the
     * loop may have run done() before that wake-up was counted. */
    wait_wakeups(fx, 1);
    pthread_mutex_lock(&fx->mu);
    assert_int_equal(fx->wakeups, 1); /* only for the job with done() */
    assert_int_equal(fx->done, 1);
    pthread_mutex_unlock(&fx->mu);
    assert_int_equal(workers_backlog(fx->wp), 0);
    fixture_free(fx);
}

/* Completions waiting for the loop wake it once: a job that ends while
 * earlier ones are still undrained adds no wake-up (an eventfd write and a
 * loop pass each).  After a drain the next completion wakes it again.  The
 * wake-up comes with the pool's lock released, so the woken loop does not
 * find it taken. */
static void test_completions_wake_once_until_drained(void **state)
{
    (void)state;
    fixture *fx = fixture_new(1, 0);
    fx->probe_lock = 1;
    fixture_start(fx, NULL, NULL);
    enum { N = 5 };
    job_rec recs[N + 1];
    for (int i = 0; i < N; i++) {
        recs[i] = (job_rec){ .fx = fx, .pool = WORKER_POOL_STORE };
        assert_int_equal(workers_submit(fx->wp, WORKER_POOL_STORE, job_run, job_done, &recs[i]), 0);
    }
    /* all five finished (none running or queued), nothing drained yet */
    int64_t end = now_ms() + WAIT_MS;
    while (workers_backlog(fx->wp) > 0) {
        if (now_ms() > end)
            fail_msg("the jobs did not finish");
        sched_yield();
    }
    /* A worker wakes the loop after it has let go of the pool's lock, so
     * the wake-up may trail the job's end a little: waited for. */
    wait_wakeups(fx, 1);
    pthread_mutex_lock(&fx->mu);
    assert_int_equal(fx->wakeups, 1);
    assert_int_equal(fx->done, 0);
    pthread_mutex_unlock(&fx->mu);
    int n = N;
    loop_until(fx, done_reaches, &n);
    recs[N] = (job_rec){ .fx = fx, .pool = WORKER_POOL_STORE };
    assert_int_equal(workers_submit(fx->wp, WORKER_POOL_STORE, job_run, job_done, &recs[N]), 0);
    loop_until(fx, rec_done, &recs[N]);
    /* The drain may have run its done() before the worker's wake-up landed. */
    wait_wakeups(fx, 2);
    pthread_mutex_lock(&fx->mu);
    assert_int_equal(fx->wakeups, 2);
    assert_int_equal(fx->done, N + 1);
    assert_int_equal(fx->bad, 0);
    pthread_mutex_unlock(&fx->mu);
    fixture_free(fx);
}

/* Every store worker stuck (a stalled database): the outbound and the probe
 * pool still answer, each on its own threads. */
static void test_pools_apart(void **state)
{
    (void)state;
    fixture *fx = fixture_new(2, 1);
    fixture_start(fx, NULL, NULL);
    job_rec stuck[3];
    for (int i = 0; i < 3; i++) {
        stuck[i] = (job_rec){ .fx = fx, .gated = 1, .pool = WORKER_POOL_STORE };
        assert_int_equal(workers_submit(fx->wp, WORKER_POOL_STORE, job_run, job_done, &stuck[i]),
                         0);
    }
    wait_inside(fx, 2); /* both store threads; the third job is queued */
    assert_int_equal(workers_backlog(fx->wp), 3);

    job_rec probe = { .fx = fx, .pool = WORKER_POOL_PROBE };
    job_rec outbound = { .fx = fx, .pool = WORKER_POOL_OUTBOUND };
    assert_int_equal(workers_submit(fx->wp, WORKER_POOL_PROBE, job_run, job_done, &probe), 0);
    assert_int_equal(workers_submit(fx->wp, WORKER_POOL_OUTBOUND, job_run, job_done, &outbound),
                     0);
    loop_until(fx, rec_done, &probe);
    loop_until(fx, rec_done, &outbound);
    pthread_mutex_lock(&fx->mu);
    assert_int_equal(fx->ran[WORKER_POOL_STORE], 0);
    assert_int_equal(fx->inside, 2);
    pthread_mutex_unlock(&fx->mu);

    open_gate(fx);
    int n = 5;
    loop_until(fx, done_reaches, &n);
    assert_int_equal(fx->ran[WORKER_POOL_STORE], 3);
    assert_int_equal(fx->bad, 0);
    fixture_free(fx);
}

/* Each pool's queue holds WORKER_QUEUE_MAX jobs; one more is refused (the
 * caller answers busy), while another pool still takes jobs. */
static void test_bounded_queue(void **state)
{
    (void)state;
    fixture *fx = fixture_new(1, 1);
    fixture_start(fx, NULL, NULL);
    job_rec gate = { .fx = fx, .gated = 1, .pool = WORKER_POOL_STORE };
    assert_int_equal(workers_submit(fx->wp, WORKER_POOL_STORE, job_run, job_done, &gate), 0);
    wait_inside(fx, 1);
    job_rec *recs = calloc(WORKER_QUEUE_MAX, sizeof(*recs));
    assert_non_null(recs);
    for (int i = 0; i < WORKER_QUEUE_MAX; i++) {
        recs[i] = (job_rec){ .fx = fx, .pool = WORKER_POOL_STORE };
        if (workers_submit(fx->wp, WORKER_POOL_STORE, job_run, job_done, &recs[i]) != 0)
            fail_msg("job %d refused below the bound", i);
    }
    job_rec over = { .fx = fx, .pool = WORKER_POOL_STORE };
    assert_int_equal(workers_submit(fx->wp, WORKER_POOL_STORE, job_run, job_done, &over), -1);
    job_rec other = { .fx = fx, .pool = WORKER_POOL_OUTBOUND };
    assert_int_equal(workers_submit(fx->wp, WORKER_POOL_OUTBOUND, job_run, job_done, &other), 0);
    assert_true(workers_backlog(fx->wp) >= WORKER_QUEUE_MAX + 1);

    open_gate(fx);
    int n = WORKER_QUEUE_MAX + 2;
    loop_until(fx, done_reaches, &n);
    for (int i = 0; i < WORKER_QUEUE_MAX; i++)
        if (recs[i].runs != 1 || recs[i].dones != 1)
            fail_msg("job %d ran %d times, done %d times", i, recs[i].runs, recs[i].dones);
    assert_int_equal(over.runs + over.dones, 0);
    /* The queue drained: room again. */
    assert_int_equal(workers_submit(fx->wp, WORKER_POOL_STORE, job_run, job_done, &over), 0);
    n++;
    loop_until(fx, done_reaches, &n);
    assert_int_equal(over.runs, 1);
    free(recs);
    fixture_free(fx);
}

typedef struct {
    fixture *fx;
    pthread_t id;
    atomic_int running; /* set just before workers_stop() is called */
} stopper;

static void *stop_thread(void *arg)
{
    stopper *st = arg;
    st->id = pthread_self();
    atomic_store(&st->running, 1);
    workers_stop(st->fx->wp);
    return NULL;
}

/* A stop while jobs are queued behind a stuck one: every accepted job runs,
 * every done() runs once (on the stopping thread), and nothing is accepted
 * from the moment the stop began. */
static void test_stop_with_queued_jobs(void **state)
{
    (void)state;
    fixture *fx = fixture_new(1, 0);
    fixture_start(fx, NULL, NULL);
    /* One record for every job the queue can hold, the running one and the
     * refused one: however late the stopping thread gets a core, the loop
     * below ends on a refusal (the stop's, or a full queue's) inside the
     * array. */
    enum { MAX = WORKER_QUEUE_MAX + 3 };
    job_rec *recs = calloc(MAX, sizeof(*recs));
    assert_non_null(recs);
    recs[0] = (job_rec){ .fx = fx, .gated = 1, .pool = WORKER_POOL_STORE };
    assert_int_equal(workers_submit(fx->wp, WORKER_POOL_STORE, job_run, job_done, &recs[0]), 0);
    wait_inside(fx, 1);
    int accepted = 1;
    for (; accepted < 20; accepted++) {
        recs[accepted] = (job_rec){ .fx = fx, .pool = WORKER_POOL_STORE };
        assert_int_equal(
            workers_submit(fx->wp, WORKER_POOL_STORE, job_run, job_done, &recs[accepted]), 0);
    }
    stopper st = { .fx = fx };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stop_thread, &st), 0);
    /* Wait for the stopping thread to run (a loaded machine may not start
     * it for a while), then keep submitting: until the stop is under way
     * submits are still taken (and must run too); the first refusal shows
     * it began. */
    int64_t end = now_ms() + WAIT_MS;
    while (!atomic_load(&st.running) && now_ms() < end)
        sched_yield();
    for (;;) {
        recs[accepted] = (job_rec){ .fx = fx, .pool = WORKER_POOL_STORE };
        if (workers_submit(fx->wp, WORKER_POOL_STORE, job_run, job_done, &recs[accepted]) != 0)
            break;
        accepted++;
        if (accepted >= MAX - 1 || now_ms() > end) {
            open_gate(fx); /* let the stop end before failing */
            pthread_join(th, NULL);
            fail_msg("the stop never began (%d jobs taken)", accepted);
        }
        sched_yield();
    }
    open_gate(fx);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(fx->bad, 0);
    assert_int_equal(fx->done, accepted);
    for (int i = 0; i < accepted; i++) {
        if (recs[i].runs != 1 || recs[i].dones != 1)
            fail_msg("job %d ran %d times, done %d times", i, recs[i].runs, recs[i].dones);
        assert_true(pthread_equal(recs[i].done_on, st.id));
    }
    assert_int_equal(recs[accepted].runs, 0);
    job_rec late = { .fx = fx, .pool = WORKER_POOL_STORE };
    assert_int_equal(workers_submit(fx->wp, WORKER_POOL_STORE, job_run, job_done, &late), -1);
    workers_stop(fx->wp); /* twice: harmless */
    assert_int_equal(late.runs + late.dones, 0);
    free(recs);
    fixture_free(fx);
}

/* Two pool sets side by side: each runs and completes only its own jobs. */
static void test_two_sets_apart(void **state)
{
    (void)state;
    fixture *a = fixture_new(1, 0), *b = fixture_new(1, 0);
    fixture_start(a, NULL, NULL);
    fixture_start(b, NULL, NULL);
    job_rec ja = { .fx = a, .gated = 1, .pool = WORKER_POOL_STORE };
    job_rec jb = { .fx = b, .pool = WORKER_POOL_STORE };
    assert_int_equal(workers_submit(a->wp, WORKER_POOL_STORE, job_run, job_done, &ja), 0);
    assert_int_equal(workers_submit(b->wp, WORKER_POOL_STORE, job_run, job_done, &jb), 0);
    wait_inside(a, 1);
    loop_until(b, rec_done, &jb); /* a's only thread is stuck: b is not */
    workers_drain_completions(a->wp);
    assert_int_equal(ja.dones, 0);
    assert_int_equal(workers_backlog(a->wp), 1);
    assert_int_equal(workers_backlog(b->wp), 0);
    open_gate(a);
    loop_until(a, rec_done, &ja);
    assert_int_equal(a->done, 1);
    assert_int_equal(b->done, 1);
    fixture_free(a);
    fixture_free(b);
}

static void test_store_cannot_open(void **state)
{
    (void)state;
    server_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.database_url = "sqlite:///nonexistent-aurora-dir/x/y.db";
    cfg.workers = 2;
    workers_opts o = { .cfg = &cfg };
    char err[256] = "";
    assert_null(workers_new(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "worker 0: cannot open store"));
    /* Absent pools take nothing (a caller built without them). */
    assert_int_equal(workers_submit(NULL, WORKER_POOL_STORE, services_run, NULL, NULL), -1);
    workers_drain_completions(NULL);
    workers_free(NULL);
}

/* A store worker must never wait on the secrets backend (secrets.h): a
 * store job's secrets call is refused at once, the same call from an
 * outbound job goes through. */
typedef struct {
    int rc;
    char err[512];
} secrets_call;

static void secrets_run(worker_ctx *w, void *arg)
{
    secrets_call *c = arg;
    c->rc = secrets_put(w->secrets, "aurora/pool-check/value", "v", 1, c->err, sizeof(c->err));
}

static void test_store_workers_never_call_secrets(void **state)
{
    (void)state;
    char dir[] = "/tmp/aurora-worker-secrets-XXXXXX";
    assert_non_null(mkdtemp(dir));
    secrets_config scfg = { .backend = "local", .data_dir = dir };
    secrets_t *sec = NULL;
    char err[512] = "";
    if (secrets_open(&scfg, &sec, err, sizeof(err)) != SECRETS_OK)
        fail_msg("secrets_open: %s", err);
    server_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.database_url = ":memory:";
    cfg.workers = 1;
    cfg.outbound_workers = 1;
    workers_opts o = { .cfg = &cfg, .secrets = sec };
    workers *wp = workers_new(&o, err, sizeof(err));
    if (!wp)
        fail_msg("workers_new: %s", err);
    if (workers_start(wp, NULL, NULL, err, sizeof(err)) != 0)
        fail_msg("workers_start: %s", err);
    secrets_call on_store = { .rc = 99 }, on_outbound = { .rc = 99 };
    assert_int_equal(workers_submit(wp, WORKER_POOL_STORE, secrets_run, NULL, &on_store), 0);
    assert_int_equal(workers_submit(wp, WORKER_POOL_OUTBOUND, secrets_run, NULL, &on_outbound),
                     0);
    workers_stop(wp); /* runs what is queued first */
    assert_int_equal(on_store.rc, SECRETS_E_INVALID);
    assert_non_null(strstr(on_store.err, "called on a store worker"));
    if (on_outbound.rc != SECRETS_OK)
        fail_msg("outbound job: %s", on_outbound.err);
    workers_free(wp);
    secrets_close(sec);
    assert_int_equal(ph_rmtree(dir), 0);
}

/* Until key has `parked` jobs parked in pool (parking notifies nobody: polled,
 * to a deadline). */
static void wait_parked(fixture *fx, const char *key, size_t parked)
{
    int64_t end = now_ms() + WAIT_MS;
    for (;;) {
        int held;
        size_t n;
        workers_share_count(fx->wp, WORKER_POOL_OUTBOUND, key, &held, &n);
        if (n == parked)
            return;
        if (now_ms() > end)
            fail_msg("%zu of %zu jobs of %s parked after %d ms", n, parked, key, WAIT_MS);
        sched_yield();
    }
}

static void test_share_automatic_limit(void **state)
{
    (void)state;
    assert_int_equal(workers_share_limit(8, 0), 4);
    assert_int_equal(workers_share_limit(7, 0), 4);
    assert_int_equal(workers_share_limit(4, 0), 2);
    assert_int_equal(workers_share_limit(3, 0), 0); /* too few to divide */
    assert_int_equal(workers_share_limit(8, 6), 6); /* the setting wins */
    assert_int_equal(workers_share_limit(1, 1), 1);
}

/* One tenant's burst on four threads with a share of two: two run, the rest
 * wait parked (off the threads), another tenant's job runs meanwhile, and
 * once the gate opens every job runs exactly once, never more than two of
 * the tenant at a time, each done() once; nothing is left held. */
static void test_share_parks_the_tenant_past_its_limit(void **state)
{
    (void)state;
    fixture *fx = fixture_new(1, 4);
    fixture_start(fx, NULL, NULL);
    enum { N = 6 };
    job_rec a[N];
    for (int i = 0; i < N; i++) {
        a[i] = (job_rec){ .fx = fx, .gated = 1, .pool = WORKER_POOL_OUTBOUND,
                          .share_key = "org-a", .share_limit = 2, .count_active = 1 };
        assert_int_equal(workers_submit(fx->wp, WORKER_POOL_OUTBOUND, job_run, job_done, &a[i]),
                         0);
    }
    wait_inside(fx, 2);
    wait_parked(fx, "org-a", N - 2);
    int held;
    size_t parked;
    workers_share_count(fx->wp, WORKER_POOL_OUTBOUND, "org-a", &held, &parked);
    assert_int_equal(held, 2);
    assert_int_equal(workers_backlog(fx->wp), N); /* two running, four parked */
    /* another tenant is served while the first one's jobs are held */
    job_rec b = { .fx = fx, .pool = WORKER_POOL_OUTBOUND, .share_key = "org-b", .share_limit = 2 };
    assert_int_equal(workers_submit(fx->wp, WORKER_POOL_OUTBOUND, job_run, job_done, &b), 0);
    loop_until(fx, rec_done, &b);
    assert_int_equal(b.runs, 1);
    assert_int_equal(b.parks, 0);
    pthread_mutex_lock(&fx->mu);
    assert_int_equal(fx->inside, 2);
    pthread_mutex_unlock(&fx->mu);
    open_gate(fx);
    int n = N + 1;
    loop_until(fx, done_reaches, &n);
    int parked_jobs = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(a[i].runs, 1);
        assert_int_equal(a[i].dones, 1);
        parked_jobs += a[i].parks > 0;
    }
    assert_int_equal(parked_jobs, N - 2);
    assert_int_equal(fx->active_max, 2);
    assert_int_equal(fx->bad, 0);
    workers_share_count(fx->wp, WORKER_POOL_OUTBOUND, "org-a", &held, &parked);
    assert_int_equal(held, 0);
    assert_int_equal(parked, 0);
    assert_int_equal(workers_backlog(fx->wp), 0);
    fixture_free(fx);
}

/* Many short jobs of one tenant with a share of one on four threads, and
 * another tenant's beside them: places freed while a job is on its way to
 * park are kept for it, so no job is stranded (each runs once, within the
 * deadline) and never two of the tenant run at once. */
static void test_share_burst_of_short_jobs(void **state)
{
    (void)state;
    fixture *fx = fixture_new(1, 4);
    fixture_start(fx, NULL, NULL);
    enum { N = 400 };
    job_rec *a = calloc(N, sizeof(*a));
    assert_non_null(a);
    for (int i = 0; i < N; i++) {
        int mine = i % 4 != 3;
        a[i] = (job_rec){ .fx = fx, .pool = WORKER_POOL_OUTBOUND,
                          .share_key = mine ? "org-a" : "org-b", .share_limit = mine ? 1 : 2,
                          .count_active = mine };
        assert_int_equal(workers_submit(fx->wp, WORKER_POOL_OUTBOUND, job_run, job_done, &a[i]),
                         0);
    }
    int n = N;
    loop_until(fx, done_reaches, &n);
    for (int i = 0; i < N; i++) {
        assert_int_equal(a[i].runs, 1);
        assert_int_equal(a[i].dones, 1);
    }
    assert_int_equal(fx->active_max, 1);
    assert_int_equal(fx->bad, 0);
    int held;
    size_t parked;
    workers_share_count(fx->wp, WORKER_POOL_OUTBOUND, "org-a", &held, &parked);
    assert_int_equal(held + (int)parked, 0);
    assert_int_equal(workers_backlog(fx->wp), 0);
    free(a);
    fixture_free(fx);
}

static void *stop_main(void *arg)
{
    workers_stop(arg);
    return NULL;
}

/* A stop does not strand parked jobs: they run (uncounted) beside the job
 * that still holds the tenant's only place, and every done() comes. */
static void test_share_stop_runs_parked_jobs(void **state)
{
    (void)state;
    fixture *fx = fixture_new(1, 2);
    fixture_start(fx, NULL, NULL);
    job_rec held = { .fx = fx, .gated = 1, .pool = WORKER_POOL_OUTBOUND, .share_key = "org-a",
                     .share_limit = 1 };
    assert_int_equal(workers_submit(fx->wp, WORKER_POOL_OUTBOUND, job_run, job_done, &held), 0);
    wait_inside(fx, 1);
    enum { N = 3 };
    job_rec a[N];
    for (int i = 0; i < N; i++) {
        a[i] = (job_rec){ .fx = fx, .pool = WORKER_POOL_OUTBOUND, .share_key = "org-a",
                          .share_limit = 1 };
        assert_int_equal(workers_submit(fx->wp, WORKER_POOL_OUTBOUND, job_run, job_done, &a[i]),
                         0);
    }
    wait_parked(fx, "org-a", N);
    pthread_t stopper;
    assert_int_equal(pthread_create(&stopper, NULL, stop_main, fx->wp), 0);
    /* the parked jobs run on the other thread while the first is held */
    int64_t end = now_ms() + WAIT_MS;
    for (;;) {
        pthread_mutex_lock(&fx->mu);
        int ran = a[0].runs + a[1].runs + a[2].runs;
        pthread_mutex_unlock(&fx->mu);
        if (ran == N)
            break;
        if (now_ms() > end)
            fail_msg("%d of %d parked jobs ran after the stop began", ran, N);
        sched_yield();
    }
    open_gate(fx);
    pthread_join(stopper, NULL);
    workers_drain_completions(fx->wp);
    assert_int_equal(held.dones, 1);
    for (int i = 0; i < N; i++)
        assert_int_equal(a[i].dones, 1);
    assert_int_equal(fx->bad, 0);
    fixture_free(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jobs_run_on_workers),
        cmocka_unit_test(test_services_reach_jobs),
        cmocka_unit_test(test_last_idle_takes_the_job),
        cmocka_unit_test(test_job_without_done),
        cmocka_unit_test(test_completions_wake_once_until_drained),
        cmocka_unit_test(test_pools_apart),
        cmocka_unit_test(test_bounded_queue),
        cmocka_unit_test(test_stop_with_queued_jobs),
        cmocka_unit_test(test_two_sets_apart),
        cmocka_unit_test(test_store_cannot_open),
        cmocka_unit_test(test_store_workers_never_call_secrets),
        cmocka_unit_test(test_share_automatic_limit),
        cmocka_unit_test(test_share_parks_the_tenant_past_its_limit),
        cmocka_unit_test(test_share_burst_of_short_jobs),
        cmocka_unit_test(test_share_stop_runs_parked_jobs),
    };
    return cmocka_run_group_tests_name("server_worker", tests, NULL, NULL);
}
