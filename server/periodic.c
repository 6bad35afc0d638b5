/* periodic.c — recurring background work; see periodic.h. */
#include "periodic.h"

#include <libwebsockets.h>
#include <stdatomic.h>
#include <string.h>

#include "log.h"

typedef struct {
    lws_sorted_usec_list_t sul; /* first: the timer callback gets its address */
    const char *name;
    worker_pool pool;
    long first_delay_s;
    periodic_fn fn;
    atomic_int running;
    long next_delay_s; /* written by the run, read by its done() (loop thread) */
} periodic_task;

static periodic_task g_tasks[PERIODIC_MAX_TASKS];
static size_t g_ntasks;
static struct lws_context *g_ctx;
static workers *g_pool;
static atomic_int g_stopped;

int periodic_add(const char *name, worker_pool pool, long first_delay_s, periodic_fn fn)
{
    for (size_t i = 0; i < g_ntasks; i++)
        if (!strcmp(g_tasks[i].name, name))
            return 0;
    if (g_ntasks >= PERIODIC_MAX_TASKS)
        return -1;
    periodic_task *t = &g_tasks[g_ntasks++];
    memset(t, 0, sizeof(*t));
    t->name = name;
    t->pool = pool;
    t->first_delay_s = first_delay_s;
    t->fn = fn;
    return 0;
}

static long clamp_delay(long s)
{
    return s < 1 ? 1 : s > PERIODIC_MAX_DELAY_S ? PERIODIC_MAX_DELAY_S : s;
}

static void on_timer(lws_sorted_usec_list_t *sul);

static void arm(periodic_task *t, long delay_s)
{
    if (!atomic_load(&g_stopped) && g_ctx)
        lws_sul_schedule(g_ctx, 0, &t->sul, on_timer,
                         (lws_usec_t)clamp_delay(delay_s) * LWS_USEC_PER_SEC);
}

static void task_run(worker_ctx *w, void *arg)
{
    periodic_task *t = arg;
    t->next_delay_s = t->fn(w);
}

static void task_done(void *arg)
{
    periodic_task *t = arg;
    atomic_store(&t->running, 0);
    arm(t, t->next_delay_s);
}

static void on_timer(lws_sorted_usec_list_t *sul)
{
    periodic_task *t = (periodic_task *)sul;
    if (atomic_load(&g_stopped) || atomic_exchange(&t->running, 1))
        return;
    if (workers_submit(g_pool, t->pool, task_run, task_done, t) < 0) {
        atomic_store(&t->running, 0);
        log_warn("periodic task %s skipped (worker queue full); trying again shortly", t->name);
        arm(t, 5);
    }
}

void periodic_schedule(struct lws_context *ctx, workers *pool)
{
    g_ctx = ctx;
    g_pool = pool;
    atomic_store(&g_stopped, 0);
    for (size_t i = 0; i < g_ntasks; i++)
        arm(&g_tasks[i], g_tasks[i].first_delay_s);
}

void periodic_stop(void)
{
    atomic_store(&g_stopped, 1);
    if (!g_ctx)
        return;
    for (size_t i = 0; i < g_ntasks; i++)
        lws_sul_cancel(&g_tasks[i].sul);
    g_ctx = NULL;
}
