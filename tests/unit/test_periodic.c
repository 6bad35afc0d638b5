/* test_periodic.c — recurring worker tasks (server/periodic.c) on a real lws
 * loop without listeners and real worker pools.  Covered: a task runs on a
 * worker of its pool, first after its first delay, then after the delay its
 * run returned (clamped to at least 1 s); one run at a time; a name
 * registered twice is one task; the table is bounded; after periodic_stop
 * nothing runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libwebsockets.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "periodic.h"
#include "worker.h"

static struct lws_context *g_ctx;
static pthread_t g_loop;
static atomic_int g_runs, g_bad, g_inside, g_overlap;
static int64_t g_times[16];

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void notify(void *arg)
{
    (void)arg;
    lws_cancel_service(g_ctx);
}

/* Returns 0 (clamped to 1 s); checks it runs on an outbound worker, alone. */
static long task(worker_ctx *w)
{
    if (pthread_equal(pthread_self(), g_loop) || w->pool != WORKER_POOL_OUTBOUND || !w->store)
        atomic_fetch_add(&g_bad, 1);
    if (atomic_fetch_add(&g_inside, 1) != 0)
        atomic_fetch_add(&g_overlap, 1);
    int n = atomic_load(&g_runs);
    if (n < 16)
        g_times[n] = now_ms();
    struct timespec d = { 0, 50 * 1000 * 1000 };
    nanosleep(&d, NULL);
    atomic_fetch_sub(&g_inside, 1);
    atomic_fetch_add(&g_runs, 1);
    return 0;
}

static long never(worker_ctx *w)
{
    (void)w;
    atomic_fetch_add(&g_bad, 1);
    return 1;
}

static void test_periodic_runs_and_stops(void **state)
{
    (void)state;
    g_loop = pthread_self();
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    lws_set_log_level(0, NULL);
    g_ctx = lws_create_context(&info);
    assert_non_null(g_ctx);
    server_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.database_url = ":memory:";
    cfg.workers = 1;
    cfg.outbound_workers = 2;
    workers_opts o = { .cfg = &cfg, .notify = notify };
    char err[256] = "";
    workers *wp = workers_new(&o, err, sizeof(err));
    assert_non_null(wp);
    assert_int_equal(workers_start(wp, NULL, NULL, err, sizeof(err)), 0);

    assert_int_equal(periodic_add("t-main", WORKER_POOL_OUTBOUND, 1, task), 0);
    assert_int_equal(periodic_add("t-main", WORKER_POOL_OUTBOUND, 1, never), 0); /* same name: one task */
    /* the table is bounded */
    static char names[PERIODIC_MAX_TASKS + 2][16];
    int full = 0;
    for (int i = 0; i < PERIODIC_MAX_TASKS + 1; i++) {
        snprintf(names[i], sizeof(names[i]), "t-%d", i);
        if (periodic_add(names[i], WORKER_POOL_OUTBOUND, PERIODIC_MAX_DELAY_S, never) < 0)
            full = 1;
    }
    assert_true(full);

    int64_t start = now_ms();
    periodic_schedule(g_ctx, wp);
    while (atomic_load(&g_runs) < 3 && now_ms() - start < 20000) {
        lws_service(g_ctx, 0);
        workers_drain_completions(wp);
    }
    assert_int_equal(atomic_load(&g_runs), 3);
    assert_true(g_times[0] - start >= 900);        /* first delay: 1 s */
    assert_true(g_times[1] - g_times[0] >= 900);   /* 0 returned: clamped to 1 s */
    assert_true(g_times[2] - g_times[1] >= 900);
    /* The wait's 20 s is the upper bound: a 15 s one here was tighter than
     * the wait itself, for three periods of 1 s plus a loaded machine's
     * delays in waking the loop and the worker. */
    periodic_stop();
    int64_t stopped = now_ms();
    int runs = atomic_load(&g_runs);
    /* An absence: watched for longer than the task's 1 s period (the loop
     * has no timer left to wake it, so the completions are drained here). */
    while (now_ms() - stopped < 1500) {
        struct timespec d = { 0, 100 * 1000 * 1000 };
        nanosleep(&d, NULL);
        workers_drain_completions(wp);
    }
    assert_true(atomic_load(&g_runs) <= runs + 1); /* at most the one already submitted */
    workers_stop(wp);
    assert_int_equal(atomic_load(&g_bad), 0);
    assert_int_equal(atomic_load(&g_overlap), 0);
    workers_free(wp);
    lws_context_destroy(g_ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_periodic_runs_and_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
