/* db_sqlite_gate.c — per-file "a write transaction ended" signal for SQLite
 * connections of this process (db_sqlite_gate.h). */
#include "db_sqlite_gate.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "clock.h"
#include "db_sqlite_checkpoint.h"
#include "log.h"

struct db_gate {
    dev_t dev;
    ino_t ino;
    int refs;
    int waiters;
    _Atomic uint64_t ended; /* changed under mu (the waiters' predicate), read without */
    pthread_mutex_t mu;
    pthread_cond_t moved; /* CLOCK_MONOTONIC */
    db_checkpointer *ckpt; /* the file's WAL checkpointer, or NULL */
    db_gate *next;
};

/* Every gate of the process; few entries (one per database file). */
static pthread_mutex_t g_gates_mu = PTHREAD_MUTEX_INITIALIZER;
static db_gate *g_gates;

static db_gate *gate_new(dev_t dev, ino_t ino)
{
    db_gate *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) {
        free(g);
        return NULL;
    }
    int ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
             pthread_cond_init(&g->moved, &ca) == 0;
    pthread_condattr_destroy(&ca);
    if (!ok) {
        free(g);
        return NULL;
    }
    if (pthread_mutex_init(&g->mu, NULL) != 0) {
        pthread_cond_destroy(&g->moved);
        free(g);
        return NULL;
    }
    g->dev = dev;
    g->ino = ino;
    return g;
}

db_gate *db_gate_get(const char *path)
{
    struct stat st;
    if (!path || stat(path, &st) != 0)
        return NULL;
    pthread_mutex_lock(&g_gates_mu);
    db_gate *g = g_gates;
    while (g && !(g->dev == st.st_dev && g->ino == st.st_ino))
        g = g->next;
    if (!g && (g = gate_new(st.st_dev, st.st_ino)) != NULL) {
        g->ckpt = db_checkpointer_start(path, g);
        if (!g->ckpt)
            log_warn("sqlite: no checkpoint thread for %s: commits checkpoint the WAL themselves",
                     path);
        g->next = g_gates;
        g_gates = g;
    }
    if (g)
        g->refs++;
    pthread_mutex_unlock(&g_gates_mu);
    return g;
}

void db_gate_put(db_gate *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&g_gates_mu);
    if (--g->refs > 0) {
        pthread_mutex_unlock(&g_gates_mu);
        return;
    }
    for (db_gate **p = &g_gates; *p; p = &(*p)->next) {
        if (*p == g) {
            *p = g->next;
            break;
        }
    }
    pthread_mutex_unlock(&g_gates_mu);
    db_checkpointer_stop(g->ckpt);
    pthread_cond_destroy(&g->moved);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

db_checkpointer *db_gate_checkpointer(db_gate *g)
{
    return g ? g->ckpt : NULL;
}

uint64_t db_gate_ended(db_gate *g)
{
    return g->ended; /* once per statement: no lock */
}

void db_gate_ended_one(db_gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->ended++;
    int wake = g->waiters > 0;
    pthread_mutex_unlock(&g->mu);
    if (wake)
        pthread_cond_broadcast(&g->moved);
}

uint64_t db_gate_wait(db_gate *g, uint64_t seen, int timeout_ms)
{
    struct timespec until = clock_after_ms(CLOCK_MONOTONIC, timeout_ms);
    pthread_mutex_lock(&g->mu);
    g->waiters++;
    while (g->ended == seen && pthread_cond_timedwait(&g->moved, &g->mu, &until) == 0)
        ;
    g->waiters--;
    uint64_t n = g->ended;
    pthread_mutex_unlock(&g->mu);
    return n;
}

int db_gate_waiters(db_gate *g)
{
    pthread_mutex_lock(&g->mu);
    int n = g->waiters;
    pthread_mutex_unlock(&g->mu);
    return n;
}
