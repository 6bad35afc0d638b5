/* outq.c — bounded two-lane queue of outgoing tunnel frames. */
#include "outq.h"

#include <libwebsockets.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    agent_frame *head, *tail;
} lane;

struct agent_outq {
    pthread_mutex_t mu;
    lane ctl, data;
    size_t ctl_bytes, data_bytes;
    size_t cap, ctl_cap;
    int backlogged;      /* outq.h: set by a push, cleared by a pop or a reset */
    uint64_t gen;
    void (*on_push)(void *);
    void *on_push_arg;
    void (*on_room)(void *);
    void *on_room_arg;
};

unsigned char *agent_frame_data(agent_frame *f)
{
    return f->mem + LWS_PRE;
}

agent_frame *agent_frame_new(int binary, size_t len)
{
    agent_frame *f = malloc(sizeof(*f) + LWS_PRE + len + 1);
    if (!f)
        return NULL;
    f->next = NULL;
    f->binary = binary;
    f->len = len;
    f->mem[LWS_PRE + len] = 0;
    return f;
}

agent_frame *agent_frame_shrink(agent_frame *f)
{
    agent_frame *g = realloc(f, sizeof(*f) + LWS_PRE + f->len + 1);
    if (!g)
        g = f; /* the bigger block still holds the frame */
    g->mem[LWS_PRE + g->len] = 0;
    return g;
}

agent_frame *agent_frame_text(const char *s)
{
    size_t n = strlen(s);
    agent_frame *f = agent_frame_new(0, n);
    if (f)
        memcpy(agent_frame_data(f), s, n);
    return f;
}

void agent_frame_free(agent_frame *f)
{
    free(f);
}

static void chain_free(agent_frame *f)
{
    while (f) {
        agent_frame *n = f->next;
        free(f);
        f = n;
    }
}

static void lane_free(lane *l)
{
    chain_free(l->head);
    l->head = l->tail = NULL;
}

agent_outq *agent_outq_new(const agent_outq_opts *o)
{
    agent_outq *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    if (pthread_mutex_init(&q->mu, NULL) != 0) {
        free(q);
        return NULL;
    }
    q->cap = o->cap;
    q->ctl_cap = o->ctl_cap ? o->ctl_cap : o->cap / 16;
    if (!q->ctl_cap)
        q->ctl_cap = 1;
    q->on_push = o->on_push;
    q->on_push_arg = o->on_push_arg;
    q->on_room = o->on_room;
    q->on_room_arg = o->on_room_arg;
    return q;
}

void agent_outq_free(agent_outq *q)
{
    if (!q)
        return;
    lane_free(&q->ctl);
    lane_free(&q->data);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

/* mu held.  The hysteresis of outq.h: backlogged at a cap, drained only well
 * below it, so that the reader is not paused and resumed on every frame. */
static void backlog_after_push(agent_outq *q)
{
    if (q->ctl_bytes >= q->ctl_cap || q->data_bytes >= q->cap + q->ctl_cap)
        q->backlogged = 1;
}

static void backlog_after_pop(agent_outq *q)
{
    if (q->backlogged && q->ctl_bytes < q->ctl_cap / 2 && q->data_bytes < q->cap)
        q->backlogged = 0;
}

typedef struct {
    void (*fn)(void *);
    void *arg;
} queued_hook;

/* Appends first..last (linked) to a lane.  with_room: the data lane only
 * while below its cap, else AGENT_OUTQ_FULL and nothing is taken; then
 * with_room->fn, if set, runs once the frames are in (agent_outq_try_push). */
static int push_linked(agent_outq *q, agent_frame *first, agent_frame *last, size_t bytes,
                       uint64_t gen, int control, const queued_hook *with_room)
{
    last->next = NULL;
    pthread_mutex_lock(&q->mu);
    if (gen == 0 || gen != q->gen) {
        pthread_mutex_unlock(&q->mu);
        chain_free(first);
        return -1;
    }
    if (with_room && q->data_bytes >= q->cap) {
        pthread_mutex_unlock(&q->mu);
        return AGENT_OUTQ_FULL;
    }
    lane *l = control ? &q->ctl : &q->data;
    /* The consumer pops until the queue is empty: it only needs waking for a
     * push into an empty queue.  At hundreds of MiB/s of output this saves
     * a wakeup of the event loop per 32 KiB frame. */
    int was_empty = !q->ctl.head && !q->data.head;
    if (l->tail)
        l->tail->next = first;
    else
        l->head = first;
    l->tail = last;
    if (control)
        q->ctl_bytes += bytes;
    else
        q->data_bytes += bytes;
    backlog_after_push(q);
    if (with_room && with_room->fn)
        with_room->fn(with_room->arg);
    void (*cb)(void *) = was_empty ? q->on_push : NULL;
    void *cb_arg = q->on_push_arg;
    pthread_mutex_unlock(&q->mu);
    if (cb)
        cb(cb_arg);
    return 0;
}

int agent_outq_push(agent_outq *q, agent_frame *f, uint64_t gen, int control)
{
    if (!f)
        return -1;
    return push_linked(q, f, f, f->len, gen, control, NULL);
}

int agent_outq_try_push(agent_outq *q, agent_frame *f, uint64_t gen,
                        void (*queued)(void *), void *queued_arg)
{
    if (!f)
        return -1;
    queued_hook h = {queued, queued_arg};
    return push_linked(q, f, f, f->len, gen, 0, &h);
}

int agent_outq_push_chain(agent_outq *q, agent_frame *first, uint64_t gen)
{
    if (!first)
        return -1;
    agent_frame *last = first;
    size_t bytes = first->len;
    while (last->next) {
        last = last->next;
        bytes += last->len;
    }
    return push_linked(q, first, last, bytes, gen, 0, NULL);
}

int agent_outq_push_text(agent_outq *q, const char *json, uint64_t gen, int control)
{
    if (!json)
        return -1;
    return agent_outq_push(q, agent_frame_text(json), gen, control);
}

agent_frame *agent_outq_pop(agent_outq *q)
{
    return agent_outq_pop_upto(q, SIZE_MAX);
}

agent_frame *agent_outq_pop_upto(agent_outq *q, size_t max_len)
{
    void (*room)(void *) = NULL;
    pthread_mutex_lock(&q->mu);
    agent_frame *f = q->ctl.head;
    lane *l = &q->ctl;
    if (!f) {
        f = q->data.head;
        l = &q->data;
    }
    if (f && f->len > max_len)
        f = NULL; /* stays first in its lane */
    if (f) {
        l->head = f->next;
        if (!l->head)
            l->tail = NULL;
        f->next = NULL;
        if (l == &q->data) {
            int was_full = q->data_bytes >= q->cap;
            q->data_bytes -= f->len;
            if (was_full && q->data_bytes < q->cap)
                room = q->on_room;
        } else {
            q->ctl_bytes -= f->len;
        }
        backlog_after_pop(q);
    }
    pthread_mutex_unlock(&q->mu);
    if (room)
        room(q->on_room_arg);
    return f;
}

int agent_outq_empty(agent_outq *q)
{
    pthread_mutex_lock(&q->mu);
    int e = !q->ctl.head && !q->data.head;
    pthread_mutex_unlock(&q->mu);
    return e;
}

int agent_outq_has_room(agent_outq *q)
{
    pthread_mutex_lock(&q->mu);
    int r = q->data_bytes < q->cap;
    pthread_mutex_unlock(&q->mu);
    return r;
}

int agent_outq_backlogged(agent_outq *q)
{
    pthread_mutex_lock(&q->mu);
    int b = q->backlogged;
    pthread_mutex_unlock(&q->mu);
    return b;
}

size_t agent_outq_bytes(agent_outq *q)
{
    pthread_mutex_lock(&q->mu);
    size_t n = q->ctl_bytes + q->data_bytes;
    pthread_mutex_unlock(&q->mu);
    return n;
}

void agent_outq_reset(agent_outq *q, uint64_t gen)
{
    void (*room)(void *);
    pthread_mutex_lock(&q->mu);
    lane_free(&q->ctl);
    lane_free(&q->data);
    q->ctl_bytes = q->data_bytes = 0;
    q->backlogged = 0;
    q->gen = gen;
    room = q->on_room;
    pthread_mutex_unlock(&q->mu);
    if (room)
        room(q->on_room_arg);
}
