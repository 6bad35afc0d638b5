/* audit_starts.c — group commit of audit rows: starts, and the ends that
 * ride along (audit_starts.h). */
#include "audit_starts.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server_metrics.h"

/* One caller's row, on its own stack while it waits. */
typedef struct pending {
    store_audit *row;
    int rc;
    int done;
    char *err;
    size_t errlen;
    struct pending *next;
} pending;

/* A command's end waiting for a transaction, or (final set) the one row of
 * a command refused before it was admitted, which has no "started" row to
 * complete: inserted, not updated. */
typedef struct end_node {
    store_audit_end row;
    store_audit *final; /* owned, with its argv_json; NULL: an end */
    size_t bytes;       /* what final holds (counted against AUDIT_KEPT_BYTES_MAX) */
    unsigned tries;     /* writes of it the store failed (down, locked, breaker open) */
    struct end_node *next;
} end_node;

struct audit_starts {
    pthread_mutex_t mu;
    pthread_cond_t written; /* a batch ended: its callers are done, or a new leader is needed */
    pending *head, *tail;
    size_t waiting;
    size_t writing; /* rows of the batch a worker is writing (0: no leader) */
    unsigned long batches, rows;
    end_node *ends_head, *ends_tail; /* queued ends (and final rows), oldest first */
    size_t ends_waiting; /* at most AUDIT_ENDS_MAX */
    size_t kept_bytes;   /* of the final rows among them: at most AUDIT_KEPT_BYTES_MAX */
    unsigned long ends_written, ends_with_starts, ends_retried, ends_dropped;
};

static void node_free(end_node *e)
{
    if (e->final) {
        free(e->final->argv_json);
        free(e->final);
    }
    free(e);
}

/* What the logs call a node: an end by its row's id, a final row by its
 * org and cluster (it has no id yet). */
static void node_name(const end_node *e, char *out, size_t cap)
{
    if (e->final)
        snprintf(out, cap, "of a refused command (org %s, cluster %s)", e->final->org_id,
                 e->final->cluster_id);
    else
        snprintf(out, cap, "%lld", (long long)e->row.id);
}

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
    /* The workers are stopped: ends still here were never written (the
     * store failed the last try at shutdown, exec_ctx_flush_audit); their
     * rows stay "started" and are closed as interrupted by a later sweep. */
    for (end_node *e = g->ends_head, *next; e; e = next) {
        next = e->next;
        if (e->final)
            log_error("audit record of a refused command (org %s, cluster %s, outcome %s) "
                      "lost: not written when the server stopped",
                      e->final->org_id, e->final->cluster_id, e->final->outcome);
        else
            log_error("audit record %lld left 'started' (server stopping): outcome %s",
                      (long long)e->row.id, e->row.outcome);
        node_free(e);
    }
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

/* Takes up to max queued nodes into out (oldest first); ends_only: stops
 * at the first final row (a batch of starts carries ends only; final rows
 * are written by the flush).  g->mu held. */
static size_t take_ends_locked(audit_starts *g, end_node **out, size_t max, int ends_only)
{
    size_t n = 0;
    while (g->ends_head && n < max && !(ends_only && g->ends_head->final)) {
        g->kept_bytes -= g->ends_head->bytes;
        out[n++] = g->ends_head;
        g->ends_head = g->ends_head->next;
    }
    if (!g->ends_head)
        g->ends_tail = NULL;
    g->ends_waiting -= n;
    return n;
}

/* g->mu held: past AUDIT_ENDS_MAX (or AUDIT_KEPT_BYTES_MAX of final rows)
 * the oldest queued nodes leave the queue; returned (a list) for the caller
 * to log once the lock is let go. */
static end_node *trim_ends_locked(audit_starts *g)
{
    end_node *out = NULL, **tail = &out;
    while ((g->ends_waiting > AUDIT_ENDS_MAX || g->kept_bytes > AUDIT_KEPT_BYTES_MAX) &&
           g->ends_head) {
        end_node *e = g->ends_head;
        g->ends_head = e->next;
        if (!g->ends_head)
            g->ends_tail = NULL;
        g->ends_waiting--;
        g->kept_bytes -= e->bytes;
        g->ends_dropped++;
        e->next = NULL;
        *tail = e;
        tail = &e->next;
    }
    return out;
}

/* Without the lock: logs and frees the ends trim_ends_locked gave up. */
static void ends_dropped(end_node *e)
{
    size_t n = 0;
    for (end_node *next; e; e = next, n++) {
        next = e->next;
        if (e->final)
            log_error("audit record of a refused command (org %s, cluster %s, outcome %s) "
                      "dropped: too many already waiting for the store",
                      e->final->org_id, e->final->cluster_id, e->final->outcome);
        else
            log_error("audit record %lld left 'started': its completion (%s) dropped, %d more "
                      "already waiting for the store",
                      (long long)e->row.id, e->row.outcome, AUDIT_ENDS_MAX);
        node_free(e);
    }
    if (n)
        sm_audit_ends_dropped(n);
}

/* Without the lock: the store failed to write these ends for a reason of its
 * own (down, locked past its deadline, its breaker open), not theirs.  They
 * go back to the front of the queue in their order, for the next batch,
 * flush or retry (exec.c), and past AUDIT_ENDS_MAX the oldest are dropped.
 * Each is logged the first time; later failures in one line. */
static void keep_ends(audit_starts *g, store_t *st, end_node **ends, size_t m)
{
    size_t again = 0;
    for (size_t i = 0; i < m; i++) {
        char name[160];
        node_name(ends[i], name, sizeof(name));
        if (ends[i]->tries++ == 0)
            log_error("audit record %s: %s it (%s) failed: %s; kept to be written again", name,
                      ends[i]->final ? "writing" : "completing",
                      ends[i]->final ? ends[i]->final->outcome : ends[i]->row.outcome,
                      store_errmsg(st));
        else
            again++;
    }
    pthread_mutex_lock(&g->mu);
    for (size_t i = m; i-- > 0;) {
        ends[i]->next = g->ends_head;
        g->ends_head = ends[i];
        if (!g->ends_tail)
            g->ends_tail = ends[i];
        g->kept_bytes += ends[i]->bytes;
    }
    g->ends_waiting += m;
    g->ends_retried += m;
    end_node *dropped = trim_ends_locked(g);
    size_t waiting = g->ends_waiting;
    pthread_mutex_unlock(&g->mu);
    sm_audit_ends_retried(m);
    if (again)
        log_error("audit: %zu command record(s) failed again: %s; %zu waiting for the store",
                  again, store_errmsg(st), waiting);
    ends_dropped(dropped);
}

/* Without the lock, the store took the call (rows[i].rc is each end's
 * answer): logs each end it refused (no such row, or the row's own fault:
 * trying again would not help), and frees them all. */
static void ends_done(store_t *st, end_node **ends, const store_audit_end *rows, size_t m)
{
    size_t late = 0;
    for (size_t i = 0; i < m; i++) {
        int r = rows[i].rc;
        if (r != STORE_OK)
            log_error("audit record %lld: completing it (%s) failed: %s", (long long)rows[i].id,
                      rows[i].outcome, r == STORE_NOT_FOUND ? "no such row" : store_errmsg(st));
        else if (ends[i]->tries)
            late++;
        node_free(ends[i]);
    }
    if (late)
        log_info("audit: %zu command completion(s) written once the store answered again", late);
}

/* Without the lock: ends taken from the queue, on their own (no starts):
 * written, or kept if the store failed.  0, or -1 when the store failed. */
static int write_ends(audit_starts *g, store_t *st, end_node **ends, store_audit_end *rows,
                      size_t m)
{
    int rc = store_audit_complete_many(st, rows, m);
    pthread_mutex_lock(&g->mu);
    g->ends_written += m;
    pthread_mutex_unlock(&g->mu);
    if (rc != STORE_OK) {
        keep_ends(g, st, ends, m);
        return -1;
    }
    ends_done(st, ends, rows, m);
    return 0;
}

/* Leader, without the lock.  A row that fails the store's checks is
 * answered alone; the others go in one transaction, with the ends taken
 * along.  If that fails because of one row (its org is gone, an id
 * collided) each row is written alone for its own answer; if the store
 * failed (down, locked past its deadline), every row gets that answer at
 * once: writing them one by one would wait for the store once per row.
 * Returns 1 when the ends went in with the rows, 0 when they are still to
 * be written (the caller does that once its callers have their answers),
 * -1 when the store failed (the ends are kept for later: writing them now
 * would only wait for it again). */
static int write_batch(store_t *st, pending **batch, size_t n, store_audit_end *ends, size_t m)
{
    store_audit *rows[AUDIT_STARTS_BATCH_MAX];
    pending *valid[AUDIT_STARTS_BATCH_MAX];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (store_audit_start_check(st, batch[i]->row) != STORE_OK) {
            finish(batch[i], STORE_ERR, st);
            continue;
        }
        valid[k] = batch[i];
        rows[k++] = batch[i]->row;
    }
    int rc = store_audit_write_many(st, rows, k, ends, m);
    if (rc == STORE_OK || rc == STORE_ERR || k == 1) {
        for (size_t i = 0; i < k; i++)
            finish(valid[i], rc, st);
        return rc == STORE_OK ? 1 : rc == STORE_ERR ? -1 : 0;
    }
    for (size_t i = 0; i < k; i++)
        finish(valid[i], store_audit_start(st, rows[i]), st);
    return 0;
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
        /* Ends of finished commands share the commit (no fsync of their own). */
        end_node *ends[AUDIT_STARTS_BATCH_MAX];
        store_audit_end end_rows[AUDIT_STARTS_BATCH_MAX];
        size_t m = take_ends_locked(g, ends, AUDIT_STARTS_BATCH_MAX, 1);
        pthread_mutex_unlock(&g->mu);
        for (size_t i = 0; i < m; i++)
            end_rows[i] = ends[i]->row;
        int ends_in = write_batch(st, batch, n, end_rows, m);
        pthread_mutex_lock(&g->mu);
        for (size_t i = 0; i < n; i++)
            batch[i]->done = 1; /* after this, a waiter may return and free its frame */
        g->batches++;
        g->rows += n;
        if (ends_in != 0)
            g->ends_written += m; /* tried with the rows */
        if (ends_in > 0)
            g->ends_with_starts += m;
        g->writing = 0;
        pthread_cond_broadcast(&g->written);
        if (m) {
            /* Now that the callers (me among them) have their answers. */
            pthread_mutex_unlock(&g->mu);
            if (ends_in > 0)
                ends_done(st, ends, end_rows, m);
            else if (ends_in < 0)
                keep_ends(g, st, ends, m);
            else
                write_ends(g, st, ends, end_rows, m); /* not with the rows: on their own */
            pthread_mutex_lock(&g->mu);
        }
    }
    pthread_mutex_unlock(&g->mu);
    return me.rc;
}

/* Any thread, without the lock: e joins the queue's tail; failed: the
 * store failed it once already (counted as a retry). */
static void add_node(audit_starts *g, end_node *e, int failed)
{
    pthread_mutex_lock(&g->mu);
    if (g->ends_tail)
        g->ends_tail->next = e;
    else
        g->ends_head = e;
    g->ends_tail = e;
    g->ends_waiting++;
    g->kept_bytes += e->bytes;
    if (failed)
        g->ends_retried++;
    end_node *dropped = trim_ends_locked(g);
    pthread_mutex_unlock(&g->mu);
    if (failed)
        sm_audit_ends_retried(1);
    ends_dropped(dropped);
}

int audit_starts_add_end(audit_starts *g, const store_audit_end *row)
{
    end_node *e = calloc(1, sizeof(*e));
    if (!e)
        return -1;
    e->row = *row;
    add_node(g, e, 0);
    return 0;
}

/* A node holding a copy of a (its argv_json too); NULL when out of memory. */
static end_node *final_node(const store_audit *a)
{
    end_node *e = calloc(1, sizeof(*e));
    store_audit *c = calloc(1, sizeof(*c));
    char *argv = a->argv_json ? strdup(a->argv_json) : NULL;
    if (!e || !c || (a->argv_json && !argv)) {
        free(e);
        free(c);
        free(argv);
        return NULL;
    }
    *c = *a;
    c->argv_json = argv;
    if (!c->ended_at)
        c->ended_at = c->at; /* a refusal ends when it is made, not when written */
    e->final = c;
    e->bytes = sizeof(*c) + (argv ? strlen(argv) + 1 : 0);
    return e;
}

int audit_starts_add_final(audit_starts *g, const store_audit *a)
{
    end_node *e = final_node(a);
    if (!e)
        return -1;
    add_node(g, e, 0);
    return 0;
}

int audit_starts_write_final(audit_starts *g, store_t *st, const store_audit *a)
{
    int rc = store_audit_insert(st, a);
    if (rc == STORE_OK)
        return 0;
    /* Its own fault (invalid, its org gone): writing it again would not help. */
    if (rc != STORE_ERR || store_audit_final_check(st, a) != STORE_OK) {
        log_error("audit record of a refused command (org %s, cluster %s, outcome %s) not "
                  "written: %s",
                  a->org_id, a->cluster_id, a->outcome,
                  rc == STORE_NOT_FOUND ? "no such organization" : store_errmsg(st));
        return -1;
    }
    end_node *e = final_node(a);
    if (!e) {
        log_error("audit record of a refused command (org %s, cluster %s, outcome %s) lost: %s; "
                  "out of memory to keep it",
                  a->org_id, a->cluster_id, a->outcome, store_errmsg(st));
        return -1;
    }
    e->tries = 1;
    char name[160];
    node_name(e, name, sizeof(name));
    log_error("audit record %s: writing it (%s) failed: %s; kept to be written again", name,
              a->outcome, store_errmsg(st));
    add_node(g, e, 1);
    return 0;
}

/* Without the lock: the final rows among nodes taken by the flush, written
 * one by one (each its own statement: there are few, and only after the
 * store failed).  At the first the store fails, it and every node not yet
 * written (the ends too) are kept and -1 returned; else the ends are left
 * in ends[0..*ne) for the caller.  0 when the ends are the caller's. */
static int write_finals(audit_starts *g, store_t *st, end_node **nodes, size_t m,
                        end_node **ends, size_t *ne)
{
    end_node *left[AUDIT_STARTS_BATCH_MAX];
    size_t nl = 0, late = 0;
    *ne = 0;
    for (size_t i = 0; i < m; i++) {
        end_node *e = nodes[i];
        if (!e->final) {
            ends[(*ne)++] = e;
            continue;
        }
        if (nl) { /* the store failed one already: the rest waits too */
            left[nl++] = e;
            continue;
        }
        int rc = store_audit_insert(st, e->final);
        if (rc == STORE_ERR && store_audit_final_check(st, e->final) == STORE_OK) {
            left[nl++] = e;
            continue;
        }
        if (rc != STORE_OK)
            log_error("audit record of a refused command (org %s, cluster %s, outcome %s) not "
                      "written: %s",
                      e->final->org_id, e->final->cluster_id, e->final->outcome,
                      rc == STORE_NOT_FOUND ? "no such organization" : store_errmsg(st));
        else if (e->tries)
            late++;
        node_free(e);
    }
    if (late)
        log_info("audit: %zu refused command record(s) written once the store answered again",
                 late);
    if (!nl)
        return 0;
    for (size_t i = 0; i < *ne; i++)
        left[nl++] = ends[i];
    *ne = 0;
    keep_ends(g, st, left, nl);
    return -1;
}

void audit_starts_flush_ends(audit_starts *g, store_t *st)
{
    end_node *nodes[AUDIT_STARTS_BATCH_MAX], *ends[AUDIT_STARTS_BATCH_MAX];
    store_audit_end rows[AUDIT_STARTS_BATCH_MAX];
    for (;;) {
        pthread_mutex_lock(&g->mu);
        size_t m = take_ends_locked(g, nodes, AUDIT_STARTS_BATCH_MAX, 0);
        pthread_mutex_unlock(&g->mu);
        if (!m)
            return;
        /* The store failed: the rest waits for the next try, not for the
         * store once per batch (nor for ever: they are back in the queue). */
        size_t ne = 0;
        if (write_finals(g, st, nodes, m, ends, &ne) < 0)
            return;
        if (!ne)
            continue;
        for (size_t i = 0; i < ne; i++)
            rows[i] = ends[i]->row;
        if (write_ends(g, st, ends, rows, ne) < 0)
            return;
    }
}

audit_starts_stats audit_starts_stats_now(audit_starts *g)
{
    pthread_mutex_lock(&g->mu);
    audit_starts_stats st = { .waiting = g->waiting, .writing = g->writing,
                              .batches = g->batches, .rows = g->rows,
                              .ends_waiting = g->ends_waiting, .ends_written = g->ends_written,
                              .ends_with_starts = g->ends_with_starts,
                              .ends_retried = g->ends_retried, .ends_dropped = g->ends_dropped };
    pthread_mutex_unlock(&g->mu);
    return st;
}
