/* admission.h — who gets a TLS handshake: a cap on handshakes under way,
 * an accept rate limit, and a deadline for each pending handshake.
 *
 * A server that a fleet reconnects to all at once (after a restart) must
 * not start more handshakes than it can finish before the clients give up:
 * work on a handshake the client abandoned is wasted, and enough of it is
 * congestion collapse.  So a connection beyond the cap (or the rate) is
 * refused when it is accepted, before any TLS work: a close costs the
 * server an accept() and the client a retry with its backoff.
 *
 * Pure bookkeeping (no lws): server.c feeds it the events.  Single thread
 * (the service loop). */
#ifndef AURORA_ADMISSION_H
#define AURORA_ADMISSION_H

#include <stdint.h>

/* Token bucket: `rate` tokens a second, up to `burst` saved up. */
typedef struct {
    double rate;   /* <= 0: unlimited */
    double burst;
    double tokens;
    int64_t last_ms;
} token_bucket;

void token_bucket_init(token_bucket *b, double rate, double burst, int64_t now_ms);
/* 1 and one token spent, or 0: none left.  A clock that goes back is
 * taken as no time passed. */
int token_bucket_take(token_bucket *b, int64_t now_ms);

typedef struct {
    int max_pending;        /* handshakes under way at most (>= 1) */
    double accept_rate;     /* new connections a second; 0: unlimited */
    int handshake_timeout_s; /* a pending handshake older than this is dropped */
} admission_opts;

typedef struct {
    int64_t admitted;        /* connections let through */
    int64_t refused_pending; /* refused: max_pending handshakes under way */
    int64_t refused_rate;    /* refused: over the accept rate */
    int64_t expired;         /* pending handshakes dropped at their deadline */
    int pending;             /* under way now */
    int max_pending_seen;
} admission_stats;

typedef struct admission admission;

admission *admission_new(const admission_opts *o, int64_t now_ms);
void admission_free(admission *a);

/* A connection was accepted: 1 to go on with it, 0 to close it now. */
int admission_accept(admission *a, int64_t now_ms);
/* Its handshake starts: a ticket (> 0) to pass to admission_end, or 0 when
 * every slot is taken (the caller closes it).  conn is the caller's handle,
 * given back by admission_expire. */
int admission_begin(admission *a, void *conn, int64_t now_ms);
/* The handshake is over (done, failed, or the connection closed); a ticket
 * already ended or 0 is ignored. */
void admission_end(admission *a, int ticket);
/* Ends every handshake pending longer than the timeout, calling drop(conn,
 * arg) for each first; returns how many. */
int admission_expire(admission *a, int64_t now_ms, void (*drop)(void *conn, void *arg),
                     void *arg);
void admission_get_stats(const admission *a, admission_stats *out);

#endif
