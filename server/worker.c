/* worker.c — bounded job queues, a pool of threads per queue, one completion
 * queue back to the loop. */
#include "worker.h"

#include <libwebsockets.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

typedef struct job {
    job_run_fn run;
    job_done_fn done;
    void *arg;
    struct job *next;
} job;

typedef struct {
    job *head, *tail;
    size_t n;
} job_list;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv[WORKER_POOLS];
    job_list todo[WORKER_POOLS], finished;
    size_t running;
    int stopping;
    pthread_t *threads;
    worker_ctx *ctxs;
    int nthreads;
    struct lws_context *lws;
} W = { .mu = PTHREAD_MUTEX_INITIALIZER,
        .cv = { PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER } };

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

static void *worker_main(void *p)
{
    worker_ctx *w = p;
    pthread_mutex_lock(&W.mu);
    for (;;) {
        while (!W.todo[w->pool].head && !W.stopping)
            pthread_cond_wait(&W.cv[w->pool], &W.mu);
        job *j = list_pop(&W.todo[w->pool]);
        if (!j)
            break; /* stopping and nothing left */
        W.running++;
        pthread_mutex_unlock(&W.mu);
        j->run(w, j->arg);
        pthread_mutex_lock(&W.mu);
        W.running--;
        list_push(&W.finished, j);
        if (W.lws)
            lws_cancel_service(W.lws);
    }
    pthread_mutex_unlock(&W.mu);
    return NULL;
}

int workers_start(const server_config *cfg, secrets_t *secrets, struct lws_context *ctx,
                  char *err, size_t errlen)
{
    W.lws = ctx;
    W.nthreads = cfg->workers + cfg->outbound_workers + WORKER_PROBE_THREADS;
    W.threads = calloc((size_t)W.nthreads, sizeof(pthread_t));
    W.ctxs = calloc((size_t)W.nthreads, sizeof(worker_ctx));
    if (!W.threads || !W.ctxs) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < W.nthreads; i++) {
        W.ctxs[i].cfg = cfg;
        W.ctxs[i].secrets = secrets;
        W.ctxs[i].index = i;
        W.ctxs[i].pool = i < cfg->workers                            ? WORKER_POOL_STORE
                         : i < cfg->workers + cfg->outbound_workers ? WORKER_POOL_OUTBOUND
                                                                    : WORKER_POOL_PROBE;
        char serr[256] = "";
        if (store_open(cfg->database_url, &W.ctxs[i].store, serr, sizeof(serr)) != STORE_OK) {
            snprintf(err, errlen, "worker %d: cannot open store: %s", i, serr);
            W.nthreads = i;
            workers_stop();
            return -1;
        }
    }
    for (int i = 0; i < W.nthreads; i++) {
        if (pthread_create(&W.threads[i], NULL, worker_main, &W.ctxs[i]) != 0) {
            snprintf(err, errlen, "cannot start worker thread");
            for (int k = i; k < W.nthreads; k++)
                store_close(W.ctxs[k].store);
            W.nthreads = i;
            workers_stop();
            return -1;
        }
    }
    return 0;
}

int workers_submit(job_run_fn run, job_done_fn done, void *arg)
{
    return workers_submit_pool(WORKER_POOL_STORE, run, done, arg);
}

int workers_submit_pool(worker_pool pool, job_run_fn run, job_done_fn done, void *arg)
{
    job *j = calloc(1, sizeof(*j));
    if (!j)
        return -1;
    j->run = run;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&W.mu);
    if (W.stopping || W.todo[pool].n >= WORKER_QUEUE_MAX || W.nthreads == 0) {
        pthread_mutex_unlock(&W.mu);
        free(j);
        return -1;
    }
    list_push(&W.todo[pool], j);
    pthread_cond_signal(&W.cv[pool]);
    pthread_mutex_unlock(&W.mu);
    return 0;
}

void workers_drain_completions(void)
{
    pthread_mutex_lock(&W.mu);
    job_list done = W.finished;
    memset(&W.finished, 0, sizeof(W.finished));
    pthread_mutex_unlock(&W.mu);
    job *j;
    while ((j = list_pop(&done))) {
        if (j->done)
            j->done(j->arg);
        free(j);
    }
}

size_t workers_backlog(void)
{
    pthread_mutex_lock(&W.mu);
    size_t n = W.running;
    for (int p = 0; p < WORKER_POOLS; p++)
        n += W.todo[p].n;
    pthread_mutex_unlock(&W.mu);
    return n;
}

void workers_stop(void)
{
    pthread_mutex_lock(&W.mu);
    W.stopping = 1;
    for (int p = 0; p < WORKER_POOLS; p++)
        pthread_cond_broadcast(&W.cv[p]);
    pthread_mutex_unlock(&W.mu);
    for (int i = 0; i < W.nthreads; i++)
        pthread_join(W.threads[i], NULL);
    for (int i = 0; i < W.nthreads; i++)
        store_close(W.ctxs[i].store);
    workers_drain_completions();
    free(W.threads);
    free(W.ctxs);
    W.threads = NULL;
    W.ctxs = NULL;
    W.nthreads = 0;
}
