/* breaker.c — fail fast while a backend does not answer, one probe at a
 * time (breaker.h). */
#include "breaker.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "server_metrics.h"

struct breaker {
    breaker_kind kind;
    uint64_t key;            /* FNV-1a of the key (a URL) */
    char label[128];         /* for the log: never a secret */
    int refs;
    int lease_ms;
    int open;
    int probing;
    int probe_seq;           /* the current probe's number: only it ends its turn */
    int64_t opened_ms;       /* when it opened (monotonic) */
    int64_t probe_since_ms;  /* when the current probe took its turn */
    uint64_t failed_fast;    /* since created */
    uint64_t failed_fast_at_open; /* failed_fast when it last opened */
    breaker *next;
};

/* One mutex for the list and every breaker's state: a few instructions per
 * call, far below the statement it guards. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static breaker *g_breakers;

static uint64_t key_hash(const char *key)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    return h;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The log's name of what the breaker guards ("state store: the database"). */
static const char *kind_name(breaker_kind k)
{
    return k == BREAKER_SECRETS ? "secrets backend" : "state store";
}

breaker *breaker_get(breaker_kind kind, const char *key, const char *label, int lease_ms)
{
    if (!key)
        return NULL;
    uint64_t h = key_hash(key);
    pthread_mutex_lock(&g_mu);
    breaker *b = g_breakers;
    while (b && (b->key != h || b->kind != kind))
        b = b->next;
    if (!b && (b = calloc(1, sizeof(*b))) != NULL) {
        b->kind = kind;
        b->key = h;
        snprintf(b->label, sizeof(b->label), "%s", label && *label ? label : "the backend");
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

void breaker_put(breaker *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&g_mu);
    if (--b->refs == 0) {
        for (breaker **p = &g_breakers; *p; p = &(*p)->next) {
            if (*p == b) {
                *p = b->next;
                break;
            }
        }
        free(b);
    }
    pthread_mutex_unlock(&g_mu);
}

int breaker_admit(breaker *b, int *probe, char *why, size_t cap)
{
    *probe = 0;
    if (!b)
        return 1;
    pthread_mutex_lock(&g_mu);
    int64_t now = now_ms();
    if (!b->open) {
        pthread_mutex_unlock(&g_mu);
        return 1;
    }
    if (!b->probing || now - b->probe_since_ms > b->lease_ms) {
        b->probing = 1;
        b->probe_since_ms = now;
        /* Numbered, so that a probe that outlived its lease and reports
         * late cannot end the turn of the one that took over. */
        b->probe_seq = b->probe_seq >= INT_MAX - 1 ? 1 : b->probe_seq + 1;
        *probe = b->probe_seq;
        pthread_mutex_unlock(&g_mu);
        return 1;
    }
    b->failed_fast++;
    int64_t down = now - b->opened_ms;
    breaker_kind kind = b->kind;
    pthread_mutex_unlock(&g_mu);
    if (kind == BREAKER_SECRETS) {
        snprintf(why, cap, "has not answered for %lld ms (failing fast while another call "
                           "checks whether it is back)",
                 (long long)down);
        sm_secrets_failed_fast();
    } else {
        snprintf(why, cap, "not connected: the database has not answered for %lld ms (failing "
                           "fast while another call checks whether it is back)",
                 (long long)down);
        sm_store_failed_fast();
    }
    return 0;
}

void breaker_report(breaker *b, int probe, breaker_outcome outcome, const char *reason)
{
    if (!b)
        return;
    pthread_mutex_lock(&g_mu);
    int64_t now = now_ms();
    if (probe && probe == b->probe_seq)
        b->probing = 0;
    if (outcome == BREAKER_UNREACHABLE && !b->open) {
        b->open = 1;
        b->opened_ms = now;
        b->failed_fast_at_open = b->failed_fast;
        char label[sizeof(b->label)];
        memcpy(label, b->label, sizeof(label));
        pthread_mutex_unlock(&g_mu);
        log_warn("%s: %s does not answer (%s); until it does, one call at a time tries it and "
                 "the others fail at once",
                 kind_name(b->kind), label, reason && *reason ? reason : "no reason given");
        return;
    }
    if (outcome == BREAKER_REACHED && b->open) {
        b->open = 0;
        b->probing = 0;
        long long down = (long long)(now - b->opened_ms);
        unsigned long long fast = (unsigned long long)(b->failed_fast - b->failed_fast_at_open);
        char label[sizeof(b->label)];
        memcpy(label, b->label, sizeof(label));
        pthread_mutex_unlock(&g_mu);
        log_info("%s: %s answers again after %lld ms; %llu calls failed fast meanwhile",
                 kind_name(b->kind), label, down, fast);
        return;
    }
    pthread_mutex_unlock(&g_mu);
}

int breaker_is_open(breaker *b)
{
    if (!b)
        return 0;
    pthread_mutex_lock(&g_mu);
    int v = b->open;
    pthread_mutex_unlock(&g_mu);
    return v;
}

int breaker_probing(breaker *b)
{
    if (!b)
        return 0;
    pthread_mutex_lock(&g_mu);
    int v = b->open && b->probing;
    pthread_mutex_unlock(&g_mu);
    return v;
}

uint64_t breaker_fast_failures(breaker *b)
{
    if (!b)
        return 0;
    pthread_mutex_lock(&g_mu);
    uint64_t v = b->failed_fast;
    pthread_mutex_unlock(&g_mu);
    return v;
}
