/* exec_limits.c — the counters behind exec_limits.h: one hash table of
 * per-organization byte counts (cluster "") and per-cluster command counts,
 * whose entries exist only while something is held. */
#include "exec_limits.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define BUCKETS 1024

typedef struct entry {
    struct entry *next;
    char org_id[STORE_ID_LEN];
    char cluster_id[STORE_CLUSTER_ID_LEN]; /* "": the organization's byte count */
    int64_t value;
} entry;

struct exec_limits {
    pthread_mutex_t mu;
    entry *buckets[BUCKETS];
    int64_t server_budget, org_budget;
    int max_per_cluster;
    int64_t server_bytes;
    int64_t server_commands;
};

exec_limits *exec_limits_new(int64_t server_budget, int64_t org_budget, int max_per_cluster)
{
    exec_limits *L = calloc(1, sizeof(*L));
    if (!L)
        return NULL;
    pthread_mutex_init(&L->mu, NULL);
    L->server_budget = server_budget;
    L->org_budget = org_budget;
    L->max_per_cluster = max_per_cluster;
    return L;
}

void exec_limits_free(exec_limits *L)
{
    if (!L)
        return;
    if (L->server_bytes || L->server_commands)
        log_error("exec limits: freed while %lld bytes and %lld commands are still held",
                  (long long)L->server_bytes, (long long)L->server_commands);
    for (size_t b = 0; b < BUCKETS; b++)
        while (L->buckets[b]) {
            entry *e = L->buckets[b];
            L->buckets[b] = e->next;
            free(e);
        }
    pthread_mutex_destroy(&L->mu);
    free(L);
}

static size_t bucket_of(const char *org_id, const char *cluster_id)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = org_id; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    h = (h ^ '/') * 16777619u;
    for (const char *p = cluster_id; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h % BUCKETS;
}

/* Under L->mu.  create: add a zero entry when missing (NULL if out of memory). */
static entry *find(exec_limits *L, const char *org_id, const char *cluster_id, int create)
{
    size_t b = bucket_of(org_id, cluster_id);
    for (entry *e = L->buckets[b]; e; e = e->next)
        if (!strcmp(e->org_id, org_id) && !strcmp(e->cluster_id, cluster_id))
            return e;
    if (!create)
        return NULL;
    entry *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    snprintf(e->org_id, sizeof(e->org_id), "%s", org_id);
    snprintf(e->cluster_id, sizeof(e->cluster_id), "%s", cluster_id);
    e->next = L->buckets[b];
    L->buckets[b] = e;
    return e;
}

/* Under L->mu: drops e once it holds nothing. */
static void drop_if_zero(exec_limits *L, entry *e)
{
    if (e->value > 0)
        return;
    entry **pp = &L->buckets[bucket_of(e->org_id, e->cluster_id)];
    for (; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            free(e);
            return;
        }
}

int exec_limits_slot_acquire(exec_limits *L, exec_slot *s, const char *org_id,
                             const char *cluster_id, int *count)
{
    memset(s, 0, sizeof(*s));
    s->limits = L;
    snprintf(s->org_id, sizeof(s->org_id), "%s", org_id);
    snprintf(s->cluster_id, sizeof(s->cluster_id), "%s", cluster_id);
    if (!s->cluster_id[0]) /* never the key of an organization's byte count */
        snprintf(s->cluster_id, sizeof(s->cluster_id), "-");
    pthread_mutex_lock(&L->mu);
    entry *e = find(L, s->org_id, s->cluster_id, 1);
    int n = e ? (int)e->value : 0;
    if (count)
        *count = n;
    if (!e || n >= L->max_per_cluster) {
        if (e)
            drop_if_zero(L, e);
        pthread_mutex_unlock(&L->mu);
        return -1;
    }
    e->value++;
    L->server_commands++;
    s->held = 1;
    pthread_mutex_unlock(&L->mu);
    return 0;
}

void exec_limits_slot_release(exec_slot *s)
{
    if (!s || !s->held)
        return;
    exec_limits *L = s->limits;
    pthread_mutex_lock(&L->mu);
    entry *e = find(L, s->org_id, s->cluster_id, 0);
    if (e) {
        e->value--;
        drop_if_zero(L, e);
    } else {
        log_error("exec limits: released a slot of %s that was not counted", s->cluster_id);
    }
    L->server_commands--;
    s->held = 0;
    pthread_mutex_unlock(&L->mu);
}

/* Under L->mu: charges n to b (and its organization's entry e) when force or
 * when it fits; returns which budget is (or would be) over. */
static int charge_locked(exec_limits *L, exec_budget *b, entry *e, int64_t n, int force)
{
    int rc = EXEC_BUDGET_OK;
    if (!e)
        return EXEC_BUDGET_SERVER; /* no memory even for the counter */
    if (e->value + n > L->org_budget)
        rc = EXEC_BUDGET_ORG;
    else if (L->server_bytes + n > L->server_budget)
        rc = EXEC_BUDGET_SERVER;
    if (rc == EXEC_BUDGET_OK || force) {
        e->value += n;
        L->server_bytes += n;
        b->bytes += n;
    } else {
        drop_if_zero(L, e);
    }
    return rc;
}

static int charge(exec_limits *L, exec_budget *b, const char *org_id, int64_t n, int force)
{
    if (n <= 0)
        return EXEC_BUDGET_OK;
    /* A budget charged to two objects could not be released exactly. */
    assert(!b->limits || b->limits == L);
    b->limits = L;
    if (!b->org_id[0])
        snprintf(b->org_id, sizeof(b->org_id), "%s", org_id);
    pthread_mutex_lock(&L->mu);
    entry *e = find(L, b->org_id, "", 1);
    int rc = charge_locked(L, b, e, n, force);
    if (!e && force) /* not counted: say so rather than under-count silently */
        log_error("exec limits: %lld bytes of %s not counted (out of memory)", (long long)n,
                  b->org_id);
    pthread_mutex_unlock(&L->mu);
    return rc;
}

int exec_limits_reserve(exec_limits *L, exec_budget *b, const char *org_id, int64_t n)
{
    return charge(L, b, org_id, n, 0);
}

int exec_limits_charge(exec_limits *L, exec_budget *b, const char *org_id, int64_t n)
{
    return charge(L, b, org_id, n, 1);
}

void exec_limits_unreserve(exec_budget *b, int64_t n)
{
    if (!b || n <= 0 || b->bytes <= 0)
        return;
    if (n > b->bytes)
        n = b->bytes;
    exec_limits *L = b->limits;
    pthread_mutex_lock(&L->mu);
    entry *e = find(L, b->org_id, "", 0);
    if (e) {
        e->value -= n;
        drop_if_zero(L, e);
    } else {
        log_error("exec limits: released output budget of %s that was not counted", b->org_id);
    }
    L->server_bytes -= n;
    b->bytes -= n;
    pthread_mutex_unlock(&L->mu);
}

void exec_limits_release(exec_budget *b)
{
    if (b)
        exec_limits_unreserve(b, b->bytes);
}

void exec_limits_usage(exec_limits *L, const char *org_id, exec_usage *u,
                       exec_cluster_usage *cl, size_t cap, size_t *ncl)
{
    size_t n = 0;
    memset(u, 0, sizeof(*u));
    pthread_mutex_lock(&L->mu);
    u->org_budget = L->org_budget;
    u->server_budget = L->server_budget;
    u->server_bytes = L->server_bytes;
    u->server_commands = L->server_commands;
    u->max_per_cluster = L->max_per_cluster;
    for (size_t b = 0; b < BUCKETS; b++)
        for (entry *e = L->buckets[b]; e; e = e->next) {
            if (strcmp(e->org_id, org_id) != 0)
                continue;
            if (!e->cluster_id[0]) {
                u->org_bytes = e->value;
            } else if (n < cap) {
                snprintf(cl[n].cluster_id, sizeof(cl[n].cluster_id), "%s", e->cluster_id);
                cl[n].commands = (int)e->value;
                n++;
            }
        }
    pthread_mutex_unlock(&L->mu);
    if (ncl)
        *ncl = n;
}
