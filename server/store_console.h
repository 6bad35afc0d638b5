/* store_console.h — web console sessions (migration 13, console_sessions).
 *
 * One row per signed-in browser.  The session id itself (the cookie) is
 * never stored: the row is found by its SHA-256 hex, so a copy of the
 * database signs nobody in.  A row names who the session speaks for (org,
 * user, and the API key it was exchanged for; key_id '' when the trusted
 * backend's headers signed it in) and the CSRF token its writes must carry.
 *
 * A session lives until expires_at (absolute) and while used at least
 * every `idle` seconds (console_cookie.h), and only while what signed it
 * in still stands: the API key not revoked nor deleted (for a backend
 * session: the user still a member of the org).  Rows past any of these
 * are never returned, and the periodic prune deletes them. */
#ifndef AURORA_STORE_CONSOLE_H
#define AURORA_STORE_CONSOLE_H

#include <stdint.h>

#include "store.h"

#define STORE_CSRF_LEN 64
/* Sessions one API key (a backend session: one user in one org) may hold;
 * a sign-in past that ends the least recently used one. */
#define STORE_CONSOLE_SESSIONS_MAX 20

typedef struct {
    char org_id[STORE_ID_LEN];
    char user_id[STORE_ID_LEN];
    char key_id[STORE_ID_LEN]; /* "" : signed in by the trusted backend */
    char csrf_token[STORE_CSRF_LEN];
    int64_t created_at;
    int64_t last_seen_at;
    int64_t expires_at;
} store_console_session;

/* Inserts the session whose id hashes to id_hash (SHA-256 hex), first
 * ending the least recently used sessions of the same key (or backend
 * user and org) beyond STORE_CONSOLE_SESSIONS_MAX - 1: signing in again
 * and again without the cookie cannot grow the table.  One transaction
 * (PostgreSQL: under a lock on the key), so concurrent sign-ins of one key
 * cannot get past the cap either. */
int store_console_session_create(store_t *s, const char *id_hash, const store_console_session *c);
/* The live session of id_hash at `now` (idle: the idle timeout, seconds),
 * marked used at now (last_seen_at, returned so).  NOT_FOUND when there is
 * none, it expired, or its key or membership is gone. */
int store_console_session_use(store_t *s, const char *id_hash, int64_t now, int64_t idle,
                              store_console_session *out);
/* The same lookup without marking the session used (a page's periodic
 * refresh: the idle timeout measures what the person does). */
int store_console_session_peek(store_t *s, const char *id_hash, int64_t now, int64_t idle,
                               store_console_session *out);
/* Marks the session c (as peek returned it) used at now, c->last_seen_at
 * too: the second half of _use, for a caller that first checks what the
 * request may do with it (a refused write is no use).  A session that
 * ended since it was read is left ended. */
int store_console_session_mark_used(store_t *s, const char *id_hash, int64_t now, int64_t idle,
                                    store_console_session *c);
/* Deletes the row (sign-out) and, in the same transaction, the unfinished
 * OAuth states the session started (store_oauth_state.console_session):
 * their callback carries no credentials to refuse.  NOT_FOUND when there
 * was no such session. */
int store_console_session_delete(store_t *s, const char *id_hash);
/* Deletes every session that can no longer be used at now: expired,
 * idle for `idle` seconds, or whose key or membership is gone.
 * *deleted (may be NULL): rows deleted. */
int store_console_session_prune(store_t *s, int64_t now, int64_t idle, int64_t *deleted);

/* Deletes the rate-limit counters (store_rate_take) whose key starts with
 * prefix and whose window started before `before`: the failed sign-in
 * counters of addresses that stopped trying.  *deleted may be NULL. */
int store_console_signin_forget(store_t *s, const char *prefix, int64_t before, int64_t *deleted);

#endif
