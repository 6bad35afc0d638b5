/* admission.c — handshake admission: token bucket, pending table, deadlines
 * (see admission.h). */
#include "admission.h"

#include <stdlib.h>

void token_bucket_init(token_bucket *b, double rate, double burst, int64_t now_ms)
{
    b->rate = rate;
    b->burst = burst < 1 ? 1 : burst;
    b->tokens = b->burst;
    b->last_ms = now_ms;
}

int token_bucket_take(token_bucket *b, int64_t now_ms)
{
    if (b->rate <= 0)
        return 1;
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * b->rate / 1000.0;
        if (b->tokens > b->burst)
            b->tokens = b->burst;
    }
    b->last_ms = now_ms > b->last_ms ? now_ms : b->last_ms;
    if (b->tokens < 1)
        return 0;
    b->tokens -= 1;
    return 1;
}

/* One slot per handshake under way: the table is sized once, so the state
 * kept for pending handshakes is bounded whatever the clients do. */
typedef struct {
    void *conn;       /* NULL: free */
    int64_t since_ms;
} slot;

struct admission {
    admission_opts o;
    token_bucket bucket;
    slot *slots;
    int *free_idx; /* stack of free slot indexes */
    int nfree;
    admission_stats st;
};

admission *admission_new(const admission_opts *o, int64_t now_ms)
{
    admission *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->o = *o;
    if (a->o.max_pending < 1)
        a->o.max_pending = 1;
    a->slots = calloc((size_t)a->o.max_pending, sizeof(*a->slots));
    a->free_idx = calloc((size_t)a->o.max_pending, sizeof(*a->free_idx));
    if (!a->slots || !a->free_idx) {
        admission_free(a);
        return NULL;
    }
    for (int i = a->o.max_pending - 1; i >= 0; i--)
        a->free_idx[a->nfree++] = i;
    /* a second's worth of burst: a quiet server takes a short wave at once */
    token_bucket_init(&a->bucket, o->accept_rate, o->accept_rate, now_ms);
    return a;
}

void admission_free(admission *a)
{
    if (!a)
        return;
    free(a->slots);
    free(a->free_idx);
    free(a);
}

int admission_accept(admission *a, int64_t now_ms)
{
    if (a->nfree == 0) {
        a->st.refused_pending++;
        return 0;
    }
    if (!token_bucket_take(&a->bucket, now_ms)) {
        a->st.refused_rate++;
        return 0;
    }
    a->st.admitted++;
    return 1;
}

int admission_begin(admission *a, void *conn, int64_t now_ms)
{
    if (a->nfree == 0 || !conn)
        return 0;
    int i = a->free_idx[--a->nfree];
    a->slots[i].conn = conn;
    a->slots[i].since_ms = now_ms;
    a->st.pending++;
    if (a->st.pending > a->st.max_pending_seen)
        a->st.max_pending_seen = a->st.pending;
    return i + 1;
}

void admission_end(admission *a, int ticket)
{
    int i = ticket - 1;
    if (i < 0 || i >= a->o.max_pending || !a->slots[i].conn)
        return;
    a->slots[i].conn = NULL;
    a->free_idx[a->nfree++] = i;
    a->st.pending--;
}

int admission_expire(admission *a, int64_t now_ms, void (*drop)(void *conn, void *arg), void *arg)
{
    int n = 0;
    int64_t limit = (int64_t)a->o.handshake_timeout_s * 1000;
    for (int i = 0; i < a->o.max_pending; i++) {
        slot *s = &a->slots[i];
        if (!s->conn || now_ms - s->since_ms < limit)
            continue;
        void *conn = s->conn;
        admission_end(a, i + 1);
        a->st.expired++;
        n++;
        if (drop)
            drop(conn, arg);
    }
    return n;
}

void admission_get_stats(const admission *a, admission_stats *out) { *out = a->st; }
