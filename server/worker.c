/* worker.c — bounded job queues, a pool of threads per queue, one completion
 * queue back to the loop.
 *
 * A job goes to the thread of its pool that went idle last (a stack, not a
 * shared condition variable, which wakes the one idle longest): under light
 * load one thread then does nearly all the work.  Its SQLite handle's page
 * cache is still valid, since no other handle committed since its last job
 * (with a round robin every job re-read its pages: 13 preads per command),
 * and its stack and the CPU's caches are warm.  The others sleep. */
#include "worker.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct share_row;

typedef struct job {
    job_run_fn run;
    job_done_fn done;
    void *arg;
    struct share_row *place; /* the tenant place it holds (workers_share_enter) */
    struct job *next;
} job;

typedef struct {
    job *head, *tail;
    size_t n;
} job_list;

/* One tenant's places on one pool, and its jobs parked until one frees.  A
 * freed place with a job parked is handed to that job (queued first), so a
 * row with parked jobs always holds a place; a job is parked only once its
 * run has returned, and a place freed meanwhile is kept for it (handoff).
 * A row lives while it holds a place or a job is on its way to it. */
typedef struct share_row {
    worker_pool pool;
    char key[STORE_ID_LEN];
    int held;     /* places taken, handed on or kept for a job being parked */
    int parking;  /* jobs told to park whose run has not returned yet */
    int handoff;  /* places freed for those jobs (counted in held) */
    job_list parked;
    struct share_row *next;
} share_row;

struct worker_thread;

/* The pool's idle threads, the last to go idle on top. */
typedef struct {
    struct worker_thread **t;
    int n;
} idle_stack;

struct workers {
    pthread_mutex_t mu;
    idle_stack idle[WORKER_POOLS];
    job_list todo[WORKER_POOLS], finished;
    size_t running;
    share_row *shares;            /* tenants holding places (workers_share_enter) */
    size_t parked[WORKER_POOLS];  /* jobs parked in those rows, per pool */
    int started; /* every thread runs: submit accepts jobs */
    int stopping;
    struct worker_thread *threads;
    int nthreads; /* threads[0..nthreads) exist, each with its condition variable */
    int nopen;    /* threads[0..nopen) have a store */
    int nstarted; /* threads[0..nstarted) run (joined by workers_stop) */
    void (*notify)(void *arg);
    void *notify_arg;
};

/* One thread: what its jobs see, and the pools it serves. */
typedef struct worker_thread {
    worker_ctx ctx;
    workers *wp;
    pthread_t id;
    pthread_cond_t cv; /* signalled by whoever takes it off the idle stack */
    int idle; /* on wp->idle[pool] */
    job *cur;        /* the job its run is running */
    share_row *park; /* set by workers_share_enter: park cur there once run returns */
} worker_thread;

static void list_push(job_list *l, job *j)
{
    j->next = NULL;
    if (l->tail)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
    l->n++;
}

static void list_push_front(job_list *l, job *j)
{
    j->next = l->head;
    l->head = j;
    if (!l->tail)
        l->tail = j;
    l->n++;
}

static job *list_pop(job_list *l)
{
    job *j = l->head;
    if (j) {
        l->head = j->next;
        if (!l->head)
            l->tail = NULL;
        l->n--;
    }
    return j;
}

/* With wp->mu held. */
static void idle_push(workers *wp, worker_thread *t)
{
    idle_stack *s = &wp->idle[t->ctx.pool];
    s->t[s->n++] = t; /* sized for every thread of the pool */
    t->idle = 1;
}

/* With wp->mu held: t leaves the stack wherever it is (it found a job
 * without being woken for it). */
static void idle_remove(workers *wp, worker_thread *t)
{
    idle_stack *s = &wp->idle[t->ctx.pool];
    for (int i = s->n - 1; i >= 0; i--)
        if (s->t[i] == t) {
            memmove(&s->t[i], &s->t[i + 1], (size_t)(s->n - i - 1) * sizeof(s->t[0]));
            s->n--;
            break;
        }
    t->idle = 0;
}

/* With wp->mu held: wakes the pool's most recently idle thread, if any. */
static void idle_wake_one(workers *wp, worker_pool pool)
{
    idle_stack *s = &wp->idle[pool];
    if (s->n == 0)
        return; /* all busy: the first to finish takes the job */
    worker_thread *t = s->t[--s->n];
    t->idle = 0;
    pthread_cond_signal(&t->cv);
}

/* ---- tenant shares (worker.h) ---------------------------------------------------- */

int workers_share_limit(int threads, int setting)
{
    if (setting > 0)
        return setting;
    return threads < 4 ? 0 : (threads + 1) / 2;
}

/* With wp->mu held. */
static share_row *share_find(workers *wp, worker_pool pool, const char *key)
{
    for (share_row *r = wp->shares; r; r = r->next)
        if (r->pool == pool && !strcmp(r->key, key))
            return r;
    return NULL;
}

/* With wp->mu held: j's run returned, give back its place.  A job parked
 * under the row takes it over and goes first in the queue. */
static void share_leave(workers *wp, job *j)
{
    share_row *r = j->place;
    j->place = NULL;
    job *next = list_pop(&r->parked);
    if (next) {
        wp->parked[r->pool]--;
        next->place = r;
        list_push_front(&wp->todo[r->pool], next);
        idle_wake_one(wp, r->pool);
        return;
    }
    if (r->parking > r->handoff) { /* kept for a job whose run is returning */
        r->handoff++;
        return;
    }
    if (--r->held > 0)
        return;
    for (share_row **pp = &wp->shares; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    free(r);
}

int workers_share_enter(worker_ctx *w, const char *key, int limit)
{
    worker_thread *t = w->thread;
    workers *wp = t ? t->wp : NULL;
    job *j = t ? t->cur : NULL;
    if (!j || limit <= 0 || !key || !*key || strlen(key) >= STORE_ID_LEN)
        return 1;
    int run = 1;
    pthread_mutex_lock(&wp->mu);
    if (j->place || wp->stopping) {
        /* handed a freed place while parked, or draining: run */
    } else {
        share_row *r = share_find(wp, w->pool, key);
        if (!r && (r = calloc(1, sizeof(*r)))) {
            r->pool = w->pool;
            memcpy(r->key, key, strlen(key) + 1);
            r->next = wp->shares;
            wp->shares = r;
        }
        if (!r) {
            /* out of memory: run uncounted rather than refuse */
        } else if (r->held < limit) {
            r->held++;
            j->place = r;
        } else {
            r->parking++;
            t->park = r;
            run = 0;
        }
    }
    pthread_mutex_unlock(&wp->mu);
    return run;
}

void workers_share_count(workers *wp, worker_pool pool, const char *key, int *held,
                         size_t *parked)
{
    pthread_mutex_lock(&wp->mu);
    share_row *r = share_find(wp, pool, key);
    *held = r ? r->held : 0;
    *parked = r ? r->parked.n : 0;
    pthread_mutex_unlock(&wp->mu);
}

/* With wp->mu held, stopping: every parked job goes back to its queue, to
 * run uncounted (workers_share_enter admits all while stopping). */
static void share_unpark_all(workers *wp)
{
    for (share_row *r = wp->shares; r; r = r->next) {
        job *j;
        while ((j = list_pop(&r->parked))) {
            wp->parked[r->pool]--;
            list_push(&wp->todo[r->pool], j);
        }
    }
}

static void *worker_main(void *p)
{
    worker_thread *t = p;
    workers *wp = t->wp;
    worker_ctx *w = &t->ctx;
    /* Everything waits on the store workers: a slow secrets backend must
     * never hold one (connector routes that need it run on the outbound pool). */
    if (w->pool == WORKER_POOL_STORE)
        secrets_forbid_on_this_thread("store worker");
    pthread_mutex_lock(&wp->mu);
    for (;;) {
        while (!wp->todo[w->pool].head && !wp->stopping) {
            if (!t->idle)
                idle_push(wp, t);
            pthread_cond_wait(&t->cv, &wp->mu);
        }
        if (t->idle)
            idle_remove(wp, t); /* a spurious wake-up found the job first */
        job *j = list_pop(&wp->todo[w->pool]);
        if (!j)
            break; /* stopping and nothing left */
        wp->running++;
        t->cur = j;
        pthread_mutex_unlock(&wp->mu);
        j->run(w, j->arg);
        pthread_mutex_lock(&wp->mu);
        t->cur = NULL;
        wp->running--;
        if (t->park) {
            /* its tenant is at its limit: it waits in the row, not here
             * (or takes the place freed while its run returned) */
            share_row *r = t->park;
            t->park = NULL;
            r->parking--;
            if (r->handoff > 0) {
                r->handoff--;
                j->place = r;
                list_push_front(&wp->todo[w->pool], j);
                idle_wake_one(wp, w->pool);
            } else if (wp->stopping) {
                list_push(&wp->todo[w->pool], j);
            } else {
                list_push(&r->parked, j);
                wp->parked[w->pool]++;
            }
            continue;
        }
        if (j->place)
            share_leave(wp, j);
        if (!j->done) {
            /* Nothing to run on the loop (an audit flush): waking it would
             * only cost an eventfd write and a loop pass per command. */
            free(j);
            continue;
        }
        /* The loop takes the whole list when woken: a push onto a list that
         * is not empty has its wake-up coming already. */
        int wake = !wp->finished.head;
        list_push(&wp->finished, j);
        if (wake && wp->notify) {
            /* Woken with the lock held, the loop would find it taken when it
             * comes for the list (a futex wait and wake per command). */
            pthread_mutex_unlock(&wp->mu);
            wp->notify(wp->notify_arg);
            pthread_mutex_lock(&wp->mu);
        }
    }
    pthread_mutex_unlock(&wp->mu);
    return NULL;
}

workers *workers_new(const workers_opts *o, char *err, size_t errlen)
{
    const server_config *cfg = o->cfg;
    workers *wp = calloc(1, sizeof(*wp));
    if (!wp) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&wp->mu, NULL);
    wp->notify = o->notify;
    wp->notify_arg = o->notify_arg;
    int n = cfg->workers + cfg->outbound_workers + WORKER_PROBE_THREADS;
    wp->threads = calloc((size_t)n, sizeof(worker_thread));
    for (int p = 0; p < WORKER_POOLS && wp->threads; p++) {
        wp->idle[p].t = calloc((size_t)n, sizeof(worker_thread *));
        if (!wp->idle[p].t) {
            free(wp->threads);
            wp->threads = NULL;
        }
    }
    if (!wp->threads) {
        snprintf(err, errlen, "out of memory");
        workers_free(wp);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        pthread_cond_init(&wp->threads[i].cv, NULL);
    wp->nthreads = n;
    for (int i = 0; i < n; i++) {
        worker_ctx *w = &wp->threads[i].ctx;
        wp->threads[i].wp = wp;
        w->thread = &wp->threads[i];
        w->cfg = cfg;
        w->secrets = o->secrets;
        w->index = i;
        w->pool = i < cfg->workers                            ? WORKER_POOL_STORE
                  : i < cfg->workers + cfg->outbound_workers ? WORKER_POOL_OUTBOUND
                                                             : WORKER_POOL_PROBE;
        char serr[256] = "";
        if (store_open(cfg->database_url, &w->store, serr, sizeof(serr)) != STORE_OK) {
            snprintf(err, errlen, "worker %d: cannot open store: %s", i, serr);
            workers_free(wp);
            return NULL;
        }
        wp->nopen = i + 1;
    }
    return wp;
}

int workers_start(workers *wp, struct exec_ctx *exec, struct tunnel_hub *tunnels, char *err,
                  size_t errlen)
{
    for (int i = 0; i < wp->nopen; i++) {
        wp->threads[i].ctx.exec = exec;
        wp->threads[i].ctx.tunnels = tunnels;
    }
    for (int i = 0; i < wp->nopen; i++) {
        if (pthread_create(&wp->threads[i].id, NULL, worker_main, &wp->threads[i]) != 0) {
            snprintf(err, errlen, "cannot start worker thread");
            workers_stop(wp);
            return -1;
        }
        wp->nstarted = i + 1;
    }
    pthread_mutex_lock(&wp->mu);
    wp->started = 1;
    pthread_mutex_unlock(&wp->mu);
    return 0;
}

int workers_submit(workers *wp, worker_pool pool, job_run_fn run, job_done_fn done, void *arg)
{
    if (!wp)
        return -1;
    job *j = calloc(1, sizeof(*j));
    if (!j)
        return -1;
    j->run = run;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&wp->mu);
    if (!wp->started || wp->stopping || wp->todo[pool].n + wp->parked[pool] >= WORKER_QUEUE_MAX) {
        pthread_mutex_unlock(&wp->mu);
        free(j);
        return -1;
    }
    list_push(&wp->todo[pool], j);
    idle_wake_one(wp, pool);
    pthread_mutex_unlock(&wp->mu);
    return 0;
}

void workers_drain_completions(workers *wp)
{
    if (!wp)
        return;
    pthread_mutex_lock(&wp->mu);
    job_list done = wp->finished;
    memset(&wp->finished, 0, sizeof(wp->finished));
    pthread_mutex_unlock(&wp->mu);
    job *j;
    while ((j = list_pop(&done))) {
        if (j->done)
            j->done(j->arg);
        free(j);
    }
}

size_t workers_backlog(workers *wp)
{
    pthread_mutex_lock(&wp->mu);
    size_t n = wp->running;
    for (int p = 0; p < WORKER_POOLS; p++)
        n += wp->todo[p].n + wp->parked[p];
    pthread_mutex_unlock(&wp->mu);
    return n;
}

void workers_stop(workers *wp)
{
    pthread_mutex_lock(&wp->mu);
    wp->stopping = 1;
    share_unpark_all(wp);
    for (int i = 0; i < wp->nstarted; i++)
        pthread_cond_signal(&wp->threads[i].cv);
    pthread_mutex_unlock(&wp->mu);
    for (int i = 0; i < wp->nstarted; i++)
        pthread_join(wp->threads[i].id, NULL);
    wp->nstarted = 0;
    workers_drain_completions(wp);
}

void workers_free(workers *wp)
{
    if (!wp)
        return;
    workers_stop(wp);
    for (int i = 0; i < wp->nopen; i++)
        store_close(wp->threads[i].ctx.store);
    for (int i = 0; i < wp->nthreads; i++)
        pthread_cond_destroy(&wp->threads[i].cv);
    for (int p = 0; p < WORKER_POOLS; p++)
        free(wp->idle[p].t);
    while (wp->shares) { /* none once every job ran; a pool never started */
        share_row *r = wp->shares;
        wp->shares = r->next;
        free(r);
    }
    pthread_mutex_destroy(&wp->mu);
    free(wp->threads);
    free(wp);
}

enum { COUNT_QUEUED, COUNT_IDLE, COUNT_PARKED };

/* One pool's count read under the lock: its queue, its idle stack, or its
 * parked jobs. */
static size_t pool_count(workers *wp, worker_pool pool, int what)
{
    if (!wp || pool < 0 || pool >= WORKER_POOLS)
        return 0;
    pthread_mutex_lock(&wp->mu);
    size_t n = what == COUNT_IDLE     ? (size_t)wp->idle[pool].n
               : what == COUNT_PARKED ? wp->parked[pool]
                                      : wp->todo[pool].n;
    pthread_mutex_unlock(&wp->mu);
    return n;
}

size_t workers_queued(workers *wp, worker_pool pool)
{
    return pool_count(wp, pool, COUNT_QUEUED);
}

size_t workers_parked(workers *wp, worker_pool pool)
{
    return pool_count(wp, pool, COUNT_PARKED);
}

int workers_idle(workers *wp, worker_pool pool)
{
    return (int)pool_count(wp, pool, COUNT_IDLE);
}
