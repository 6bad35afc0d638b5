/* audit_starts.c — group commit of "started" audit rows (audit_starts.h). */
#include "audit_starts.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* One caller's row, on its own stack while it waits. */
typedef struct pending {
    store_audit *row;
    int rc;
    int done;
    char *err;
    size_t errlen;
    struct pending *next;
} pending;

struct audit_starts {
    pthread_mutex_t mu;
    pthread_cond_t written; /* a batch ended: its callers are done, or a new leader is needed */
    pending *head, *tail;
    size_t waiting;
    size_t writing; /* rows of the batch a worker is writing (0: no leader) */
    unsigned long batches, rows;
};

audit_starts *audit_starts_new(void)
{
    audit_starts *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    if (pthread_mutex_init(&g->mu, NULL) != 0) {
        free(g);
        return NULL;
    }
    if (pthread_cond_init(&g->written, NULL) != 0) {
        pthread_mutex_destroy(&g->mu);
        free(g);
        return NULL;
    }
    return g;
}

void audit_starts_free(audit_starts *g)
{
    if (!g)
        return;
    pthread_cond_destroy(&g->written);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

static void finish(pending *p, int rc, store_t *st)
{
    p->rc = rc;
    if (rc != STORE_OK && p->errlen)
        snprintf(p->err, p->errlen, "%s", store_errmsg(st));
}

/* Leader, without the lock.  A row that fails the store's checks is
 * answered alone; the others go in one transaction.  If that fails because
 * of one row (its org is gone, an id collided) each row is written alone for
 * its own answer; if the store failed (down, locked past its deadline),
 * every row gets that answer at once: writing them one by one would wait
 * for the store once per row. */
static void write_batch(store_t *st, pending **batch, size_t n)
{
    store_audit *rows[AUDIT_STARTS_BATCH_MAX];
    pending *valid[AUDIT_STARTS_BATCH_MAX];
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (store_audit_start_check(st, batch[i]->row) != STORE_OK) {
            finish(batch[i], STORE_ERR, st);
            continue;
        }
        valid[m] = batch[i];
        rows[m++] = batch[i]->row;
    }
    int rc = store_audit_start_many(st, rows, m);
    if (rc == STORE_OK || rc == STORE_ERR || m == 1) {
        for (size_t i = 0; i < m; i++)
            finish(valid[i], rc, st);
        return;
    }
    for (size_t i = 0; i < m; i++)
        finish(valid[i], store_audit_start(st, rows[i]), st);
}

int audit_starts_write(audit_starts *g, store_t *st, store_audit *a, char *err, size_t errlen)
{
    if (errlen)
        err[0] = '\0';
    pending me = { .row = a, .rc = STORE_ERR, .err = err, .errlen = errlen };
    pthread_mutex_lock(&g->mu);
    if (g->tail)
        g->tail->next = &me;
    else
        g->head = &me;
    g->tail = &me;
    g->waiting++;
    while (!me.done) {
        if (g->writing) {
            pthread_cond_wait(&g->written, &g->mu);
            continue;
        }
        /* Lead: take what is queued (this caller's row among it, since rows
         * queue in order and earlier ones were taken by earlier leaders,
         * unless more than a batch was waiting). */
        pending *batch[AUDIT_STARTS_BATCH_MAX];
        size_t n = 0;
        while (g->head && n < AUDIT_STARTS_BATCH_MAX) {
            batch[n++] = g->head;
            g->head = g->head->next;
        }
        if (!g->head)
            g->tail = NULL;
        g->waiting -= n;
        g->writing = n;
        pthread_mutex_unlock(&g->mu);
        write_batch(st, batch, n);
        pthread_mutex_lock(&g->mu);
        for (size_t i = 0; i < n; i++)
            batch[i]->done = 1; /* after this, a waiter may return and free its frame */
        g->batches++;
        g->rows += n;
        g->writing = 0;
        pthread_cond_broadcast(&g->written);
    }
    pthread_mutex_unlock(&g->mu);
    return me.rc;
}

audit_starts_stats audit_starts_stats_now(audit_starts *g)
{
    pthread_mutex_lock(&g->mu);
    audit_starts_stats st = { .waiting = g->waiting, .writing = g->writing,
                              .batches = g->batches, .rows = g->rows };
    pthread_mutex_unlock(&g->mu);
    return st;
}
