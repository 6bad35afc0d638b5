/* kit_cache.h — the connector kit's cache of short-lived provider
 * credentials (access tokens, assumed-role keys), so that a burst of cloud
 * commands costs one token request, not one each.
 *
 * One cache per connector (a static kit_cache), shared by the outbound
 * workers (a mutex), bounded (past `max` entries the oldest go), values
 * wiped when dropped and at exit.  Keys start with "<org>\n<user>\n" (see
 * kit_cache_key) so a disconnect drops everything of one connection. */
#ifndef AURORA_KIT_CACHE_H
#define AURORA_KIT_CACHE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* A cached value is handed out until this many seconds before it expires. */
#define KIT_CACHE_MARGIN 300

struct kit_cache_entry;

typedef struct kit_cache {
    pthread_mutex_t mu;
    struct kit_cache_entry *head; /* newest first */
    size_t n, max;
    int registered;               /* in the list wiped at exit */
    struct kit_cache *next;
} kit_cache;

#define KIT_CACHE_INIT(max_entries) { PTHREAD_MUTEX_INITIALIZER, NULL, 0, (max_entries), 0, NULL }

/* "<org>\n<user>\n<rest>" into out; 0, or -1 if it does not fit. */
int kit_cache_key(char *out, size_t cap, const char *org, const char *user, const char *rest);
/* A malloc'd copy of the value under key if it is still fresh at `now`
 * (more than KIT_CACHE_MARGIN seconds left), else NULL; *expires_at (may be
 * NULL) gets its expiry.  Wipe the copy with secret_free. */
char *kit_cache_get(kit_cache *c, const char *key, int64_t now, int64_t *expires_at);
/* Stores a copy of value under key (replacing it), dropping stale entries. */
void kit_cache_put(kit_cache *c, const char *key, const char *value, int64_t expires_at,
                   int64_t now);
/* Drops every entry of (org, user). */
void kit_cache_forget(kit_cache *c, const char *org, const char *user);
/* Drops everything. */
void kit_cache_clear(kit_cache *c);

#endif
