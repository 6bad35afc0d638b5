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

/* A cached value is handed out until this many seconds before it expires,
 * or a tenth of the lifetime it was stored with if that is less (never under
 * KIT_CACHE_MIN_MARGIN): a token that lives 300 s or less is still reused. */
#define KIT_CACHE_MARGIN 300
#define KIT_CACHE_MIN_MARGIN 5

struct kit_cache_entry;

typedef struct kit_cache {
    pthread_mutex_t mu;
    struct kit_cache_entry *head; /* newest first */
    size_t n, max;
    int registered;               /* in the list wiped at exit */
    struct kit_cache *next;
} kit_cache;

#define KIT_CACHE_INIT(max_entries) { PTHREAD_MUTEX_INITIALIZER, NULL, 0, (max_entries), 0, NULL }

/* A connection's cache generation: a random id a connector stores in the
 * connection's metadata under KIT_CACHE_KEY_ID at every connect and puts in
 * its cache keys, so that a value minted for a replaced connection (by a
 * command in flight during the connect, or on another replica, whose cache
 * the connect does not forget) is never found for the new one. */
#define KIT_CACHE_KEY_ID "key_id"
struct cJSON;
/* A fresh id into md (KIT_CACHE_KEY_ID); 0, or -1 without randomness or memory. */
int kit_cache_add_key_id(struct cJSON *md);

/* "<org>\n<user>\n<rest>" into out; 0, or -1 if it does not fit. */
int kit_cache_key(char *out, size_t cap, const char *org, const char *user, const char *rest);
/* The key of what a connection (its metadata md) caches under `what`:
 * "<what>k:<key_id>", or for a row made before key_id "<what><updated_at>";
 * updated_at < 0: such a row has no key (-1).  0, or -1. */
int kit_cache_conn_key(char *out, size_t cap, const char *org, const char *user,
                       const char *what, const struct cJSON *md, int64_t updated_at);
/* The margin of a value stored at `now` that expires at expires_at, at most
 * max_margin: min(max_margin, max(lifetime / 10, KIT_CACHE_MIN_MARGIN)). */
int64_t kit_cache_margin(int64_t expires_at, int64_t now, int64_t max_margin);
/* A malloc'd copy of the value under key if it is still fresh at `now`
 * (more than its margin left, see kit_cache_margin), else NULL; *expires_at
 * (may be NULL) gets its expiry.  Wipe the copy with secret_free. */
char *kit_cache_get(kit_cache *c, const char *key, int64_t now, int64_t *expires_at);
/* Stores a copy of value under key (replacing it), dropping stale entries;
 * its margin is at most KIT_CACHE_MARGIN. */
void kit_cache_put(kit_cache *c, const char *key, const char *value, int64_t expires_at,
                   int64_t now);
/* kit_cache_put with a margin of at most max_margin seconds. */
void kit_cache_put_margin(kit_cache *c, const char *key, const char *value, int64_t expires_at,
                          int64_t max_margin, int64_t now);
/* Drops every entry of (org, user). */
void kit_cache_forget(kit_cache *c, const char *org, const char *user);
/* Drops everything. */
void kit_cache_clear(kit_cache *c);

#endif
