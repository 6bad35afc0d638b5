/* kit_cache.c — short-lived provider credentials; see kit_cache.h. */
#include "kit_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "crypto.h"
#include "secret.h"

typedef struct kit_cache_entry {
    char *key;
    char *value;
    int64_t expires_at;
    int64_t fresh_until; /* handed out while now < fresh_until */
    struct kit_cache_entry *next;
} kit_cache_entry;

/* Every cache that ever held a value, wiped at exit. */
static pthread_mutex_t g_all_mu = PTHREAD_MUTEX_INITIALIZER;
static kit_cache *g_all;

static void entry_free(kit_cache_entry *e)
{
    secret_free(e->key); /* keys name users: wiped too */
    secret_free(e->value);
    free(e);
}

void kit_cache_clear(kit_cache *c)
{
    pthread_mutex_lock(&c->mu);
    while (c->head) {
        kit_cache_entry *n = c->head->next;
        entry_free(c->head);
        c->head = n;
    }
    c->n = 0;
    pthread_mutex_unlock(&c->mu);
}

static void wipe_all(void)
{
    pthread_mutex_lock(&g_all_mu);
    for (kit_cache *c = g_all; c; c = c->next)
        kit_cache_clear(c);
    pthread_mutex_unlock(&g_all_mu);
}

static void register_cache(kit_cache *c)
{
    pthread_mutex_lock(&g_all_mu);
    if (!c->registered) {
        if (!g_all)
            atexit(wipe_all);
        c->registered = 1;
        c->next = g_all;
        g_all = c;
    }
    pthread_mutex_unlock(&g_all_mu);
}

int kit_cache_key(char *out, size_t cap, const char *org, const char *user, const char *rest)
{
    int n = snprintf(out, cap, "%s\n%s\n%s", org, user, rest ? rest : "");
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int kit_cache_conn_key(char *out, size_t cap, const char *org, const char *user,
                       const char *what, const cJSON *md, int64_t updated_at)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(md, KIT_CACHE_KEY_ID);
    char rest[128];
    if (cJSON_IsString(id) && id->valuestring[0])
        snprintf(rest, sizeof(rest), "%.48sk:%.48s", what, id->valuestring);
    else if (updated_at >= 0)
        snprintf(rest, sizeof(rest), "%.48s%lld", what, (long long)updated_at);
    else
        return -1;
    return kit_cache_key(out, cap, org, user, rest);
}

int64_t kit_cache_margin(int64_t expires_at, int64_t now, int64_t max_margin)
{
    int64_t life = expires_at > now ? expires_at - now : 0;
    int64_t m = life / 10;
    if (m < KIT_CACHE_MIN_MARGIN)
        m = KIT_CACHE_MIN_MARGIN;
    return m < max_margin ? m : max_margin;
}

char *kit_cache_get(kit_cache *c, const char *key, int64_t now, int64_t *expires_at)
{
    char *out = NULL;
    pthread_mutex_lock(&c->mu);
    for (kit_cache_entry *e = c->head; e; e = e->next)
        if (!strcmp(e->key, key)) {
            if (e->fresh_until > now) {
                out = strdup(e->value);
                if (out && expires_at)
                    *expires_at = e->expires_at;
            }
            break;
        }
    pthread_mutex_unlock(&c->mu);
    return out;
}

void kit_cache_put(kit_cache *c, const char *key, const char *value, int64_t expires_at,
                   int64_t now)
{
    kit_cache_put_margin(c, key, value, expires_at, KIT_CACHE_MARGIN, now);
}

void kit_cache_put_margin(kit_cache *c, const char *key, const char *value, int64_t expires_at,
                          int64_t max_margin, int64_t now)
{
    if (!c->registered)
        register_cache(c);
    kit_cache_entry *ne = calloc(1, sizeof(*ne));
    if (!ne)
        return;
    ne->key = strdup(key);
    ne->value = strdup(value);
    ne->expires_at = expires_at;
    ne->fresh_until = expires_at - kit_cache_margin(expires_at, now, max_margin);
    if (!ne->key || !ne->value) {
        entry_free(ne);
        return;
    }
    pthread_mutex_lock(&c->mu);
    /* The old value under this key and everything stale go. */
    for (kit_cache_entry **pp = &c->head; *pp;) {
        kit_cache_entry *e = *pp;
        if (!strcmp(e->key, key) || e->fresh_until <= now) {
            *pp = e->next;
            entry_free(e);
            c->n--;
        } else
            pp = &e->next;
    }
    /* Bounded: past the cap, the oldest (at the tail) go. */
    while (c->max && c->n >= c->max && c->head) {
        kit_cache_entry **pp = &c->head;
        while ((*pp)->next)
            pp = &(*pp)->next;
        entry_free(*pp);
        *pp = NULL;
        c->n--;
    }
    ne->next = c->head;
    c->head = ne;
    c->n++;
    pthread_mutex_unlock(&c->mu);
}

void kit_cache_forget(kit_cache *c, const char *org, const char *user)
{
    char prefix[256];
    if (kit_cache_key(prefix, sizeof(prefix), org, user, "") < 0)
        return;
    size_t pl = strlen(prefix);
    pthread_mutex_lock(&c->mu);
    for (kit_cache_entry **pp = &c->head; *pp;) {
        kit_cache_entry *e = *pp;
        if (!strncmp(e->key, prefix, pl)) {
            *pp = e->next;
            entry_free(e);
            c->n--;
        } else
            pp = &e->next;
    }
    pthread_mutex_unlock(&c->mu);
}

int kit_cache_add_key_id(struct cJSON *md)
{
    unsigned char r[16];
    char hex[sizeof(r) * 2 + 1];
    if (crypto_random(r, sizeof(r)) != 0)
        return -1;
    for (size_t i = 0; i < sizeof(r); i++)
        snprintf(hex + 2 * i, 3, "%02x", r[i]);
    return cJSON_AddStringToObject(md, KIT_CACHE_KEY_ID, hex) ? 0 : -1;
}
