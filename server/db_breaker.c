/* db_breaker.c — fail fast while a database does not answer, one probe at a
 * time (db_breaker.h). */
#include "db_breaker.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "server_metrics.h"

struct db_breaker {
    uint64_t key;            /* FNV-1a of the url */
    int refs;
    int lease_ms;
    int open;
    int probing;
    int64_t opened_ms;       /* when it opened (monotonic) */
    int64_t probe_since_ms;  /* when the current probe took its turn */
    uint64_t failed_fast;    /* since created */
    uint64_t failed_fast_at_open; /* failed_fast when it last opened */
    db_breaker *next;
};

/* One mutex for the list and every breaker's state: a few instructions per
 * call, far below the statement it guards. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static db_breaker *g_breakers;

static uint64_t url_key(const char *url)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)url; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    return h;
}

db_breaker *db_breaker_get(const char *url, int lease_ms)
{
    if (!url)
        return NULL;
    uint64_t key = url_key(url);
    pthread_mutex_lock(&g_mu);
    db_breaker *b = g_breakers;
    while (b && b->key != key)
        b = b->next;
    if (!b && (b = calloc(1, sizeof(*b))) != NULL) {
        b->key = key;
        b->next = g_breakers;
        g_breakers = b;
    }
    if (b) {
        b->refs++;
        /* Handles opened later may have longer deadlines: the longest wins. */
        if (lease_ms > b->lease_ms)
            b->lease_ms = lease_ms;
    }
    pthread_mutex_unlock(&g_mu);
    return b;
}

void db_breaker_put(db_breaker *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&g_mu);
    if (--b->refs == 0) {
        for (db_breaker **p = &g_breakers; *p; p = &(*p)->next) {
            if (*p == b) {
                *p = b->next;
                break;
            }
        }
        free(b);
    }
    pthread_mutex_unlock(&g_mu);
}

int db_breaker_admit(db_breaker *b, int *probe, char *why, size_t cap)
{
    *probe = 0;
    if (!b)
        return 1;
    pthread_mutex_lock(&g_mu);
    int64_t now = db_now_ms();
    if (!b->open) {
        pthread_mutex_unlock(&g_mu);
        return 1;
    }
    if (!b->probing || now - b->probe_since_ms > b->lease_ms) {
        b->probing = 1;
        b->probe_since_ms = now;
        *probe = 1;
        pthread_mutex_unlock(&g_mu);
        return 1;
    }
    b->failed_fast++;
    int64_t down = now - b->opened_ms;
    pthread_mutex_unlock(&g_mu);
    snprintf(why, cap, "not connected: the database has not answered for %lld ms (failing fast "
                       "while another call checks whether it is back)",
             (long long)down);
    sm_store_failed_fast();
    return 0;
}

void db_breaker_report(db_breaker *b, int probe, db_outcome outcome, const char *reason)
{
    if (!b)
        return;
    pthread_mutex_lock(&g_mu);
    int64_t now = db_now_ms();
    if (probe)
        b->probing = 0;
    if (outcome == DB_UNREACHABLE && !b->open) {
        b->open = 1;
        b->opened_ms = now;
        b->failed_fast_at_open = b->failed_fast;
        pthread_mutex_unlock(&g_mu);
        log_warn("state store: the database does not answer (%s); until it does, one call at a "
                 "time tries it and the others fail at once",
                 reason && *reason ? reason : "no reason given");
        return;
    }
    if (outcome == DB_REACHED && b->open) {
        b->open = 0;
        b->probing = 0;
        long long down = (long long)(now - b->opened_ms);
        unsigned long long fast = (unsigned long long)(b->failed_fast - b->failed_fast_at_open);
        pthread_mutex_unlock(&g_mu);
        log_info("state store: the database answers again after %lld ms; %llu calls failed fast "
                 "meanwhile", down, fast);
        return;
    }
    pthread_mutex_unlock(&g_mu);
}

int db_breaker_is_open(db_breaker *b)
{
    if (!b)
        return 0;
    pthread_mutex_lock(&g_mu);
    int v = b->open;
    pthread_mutex_unlock(&g_mu);
    return v;
}

int db_breaker_probing(db_breaker *b)
{
    if (!b)
        return 0;
    pthread_mutex_lock(&g_mu);
    int v = b->open && b->probing;
    pthread_mutex_unlock(&g_mu);
    return v;
}

uint64_t db_breaker_fast_failures(db_breaker *b)
{
    if (!b)
        return 0;
    pthread_mutex_lock(&g_mu);
    uint64_t v = b->failed_fast;
    pthread_mutex_unlock(&g_mu);
    return v;
}
