/* outq.c — bounded two-lane queue of outgoing tunnel frames. */
#include "outq.h"

#include <libwebsockets.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    agent_frame *head, *tail;
} lane;

static struct {
    pthread_mutex_t mu;
    lane ctl, data;
    size_t data_bytes;
    size_t cap;
    uint64_t gen;
    void (*on_push)(void);
    void (*on_room)(void);
} Q = {.mu = PTHREAD_MUTEX_INITIALIZER};

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

static void lane_free(lane *l)
{
    agent_frame *f = l->head;
    while (f) {
        agent_frame *n = f->next;
        free(f);
        f = n;
    }
    l->head = l->tail = NULL;
}

void agent_outq_init(size_t cap, void (*on_push)(void), void (*on_room)(void))
{
    pthread_mutex_lock(&Q.mu);
    Q.cap = cap;
    Q.on_push = on_push;
    Q.on_room = on_room;
    pthread_mutex_unlock(&Q.mu);
}

void agent_outq_destroy(void)
{
    pthread_mutex_lock(&Q.mu);
    lane_free(&Q.ctl);
    lane_free(&Q.data);
    Q.data_bytes = 0;
    Q.gen = 0;
    Q.on_push = NULL;
    Q.on_room = NULL;
    pthread_mutex_unlock(&Q.mu);
}

int agent_outq_push(agent_frame *f, uint64_t gen, int control)
{
    if (!f)
        return -1;
    f->next = NULL;
    pthread_mutex_lock(&Q.mu);
    if (gen == 0 || gen != Q.gen) {
        pthread_mutex_unlock(&Q.mu);
        free(f);
        return -1;
    }
    lane *l = control ? &Q.ctl : &Q.data;
    if (l->tail)
        l->tail->next = f;
    else
        l->head = f;
    l->tail = f;
    if (!control)
        Q.data_bytes += f->len;
    void (*cb)(void) = Q.on_push;
    pthread_mutex_unlock(&Q.mu);
    if (cb)
        cb();
    return 0;
}

int agent_outq_push_text(const char *json, uint64_t gen, int control)
{
    if (!json)
        return -1;
    return agent_outq_push(agent_frame_text(json), gen, control);
}

agent_frame *agent_outq_pop(void)
{
    void (*room)(void) = NULL;
    pthread_mutex_lock(&Q.mu);
    agent_frame *f = Q.ctl.head;
    lane *l = &Q.ctl;
    if (!f) {
        f = Q.data.head;
        l = &Q.data;
    }
    if (f) {
        l->head = f->next;
        if (!l->head)
            l->tail = NULL;
        f->next = NULL;
        if (l == &Q.data) {
            int was_full = Q.data_bytes >= Q.cap;
            Q.data_bytes -= f->len;
            if (was_full && Q.data_bytes < Q.cap)
                room = Q.on_room;
        }
    }
    pthread_mutex_unlock(&Q.mu);
    if (room)
        room();
    return f;
}

int agent_outq_empty(void)
{
    pthread_mutex_lock(&Q.mu);
    int e = !Q.ctl.head && !Q.data.head;
    pthread_mutex_unlock(&Q.mu);
    return e;
}

int agent_outq_has_room(void)
{
    pthread_mutex_lock(&Q.mu);
    int r = Q.data_bytes < Q.cap;
    pthread_mutex_unlock(&Q.mu);
    return r;
}

void agent_outq_reset(uint64_t gen)
{
    void (*room)(void);
    pthread_mutex_lock(&Q.mu);
    lane_free(&Q.ctl);
    lane_free(&Q.data);
    Q.data_bytes = 0;
    Q.gen = gen;
    room = Q.on_room;
    pthread_mutex_unlock(&Q.mu);
    if (room)
        room();
}
