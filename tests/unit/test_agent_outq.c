/* test_agent_outq.c — the agent's outgoing frame queue (agent/outq.c) on its
 * own: generations (closed until reset, stale pushes refused), the two lanes
 * and their order, the data lane's byte cap and the room callback, the
 * callbacks run without the lock, independent instances, a chain of frames
 * queued as one push, the push that waits for room (try_push), the backlog
 * that stops the tunnel reading (both lanes counted, with hysteresis), and
 * frames freed on every path (ASan's leak check fails the run otherwise). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libwebsockets.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "outq.h"

#define WAIT_MS 20000 /* the machine may be loaded */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct {
    agent_outq *q; /* for callbacks that call back into the queue */
    int pushes;
    int rooms;
    int had_room;  /* agent_outq_has_room() seen from inside on_room */
} counters;

static void count_push(void *arg)
{
    counters *c = arg;
    /* the queue's lock is not held here: taking it again must not deadlock */
    (void)agent_outq_empty(c->q);
    __atomic_add_fetch(&c->pushes, 1, __ATOMIC_RELAXED);
}

static void count_room(void *arg)
{
    counters *c = arg;
    c->had_room = agent_outq_has_room(c->q);
    c->rooms++;
}

static agent_outq *new_queue_ctl(size_t cap, size_t ctl_cap, counters *c)
{
    agent_outq_opts o = {
        .cap = cap,
        .ctl_cap = ctl_cap,
        .on_push = c ? count_push : NULL,
        .on_push_arg = c,
        .on_room = c ? count_room : NULL,
        .on_room_arg = c,
    };
    agent_outq *q = agent_outq_new(&o);
    assert_non_null(q);
    if (c)
        c->q = q;
    return q;
}

static agent_outq *new_queue(size_t cap, counters *c)
{
    return new_queue_ctl(cap, 0, c);
}

/* A data frame of exactly len payload bytes, all of them tag. */
static agent_frame *data_frame(size_t len, unsigned char tag)
{
    agent_frame *f = agent_frame_new(1, len);
    assert_non_null(f);
    memset(agent_frame_data(f), tag, len);
    return f;
}

/* Pops one frame, checks it is a text frame holding want, frees it. */
static void pop_text(agent_outq *q, const char *want)
{
    agent_frame *f = agent_outq_pop(q);
    assert_non_null(f);
    assert_int_equal(f->binary, 0);
    assert_int_equal(f->len, strlen(want));
    assert_memory_equal(agent_frame_data(f), want, f->len);
    assert_null(f->next);
    agent_frame_free(f);
}

static void frames_have_headroom_and_a_terminator(void **state)
{
    agent_frame *f = agent_frame_text("{\"type\":\"heartbeat\"}");
    assert_non_null(f);
    assert_int_equal(f->binary, 0);
    assert_int_equal(f->len, 20);
    /* lws_write needs LWS_PRE writable bytes before the payload */
    assert_ptr_equal(agent_frame_data(f), f->mem + LWS_PRE);
    assert_string_equal((char *)agent_frame_data(f), "{\"type\":\"heartbeat\"}");
    agent_frame_free(f);

    f = agent_frame_new(1, 0);
    assert_non_null(f);
    assert_int_equal(f->len, 0);
    assert_int_equal(agent_frame_data(f)[0], 0);
    agent_frame_free(f);
    agent_frame_free(NULL);
}

static void closed_until_reset_and_stale_generations_refused(void **state)
{
    counters c = {0};
    agent_outq *q = new_queue(1024, &c);

    /* a new queue belongs to no connection: everything is refused (and freed) */
    assert_int_equal(agent_outq_push(q, data_frame(10, 'a'), 1, 0), -1);
    assert_int_equal(agent_outq_push_text(q, "{}", 1, 1), -1);
    assert_int_equal(agent_outq_push(q, data_frame(10, 'a'), 0, 0), -1);
    assert_int_equal(c.pushes, 0);
    assert_true(agent_outq_empty(q));

    agent_outq_reset(q, 7);
    assert_int_equal(agent_outq_push(q, data_frame(10, 'a'), 6, 0), -1); /* older */
    assert_int_equal(agent_outq_push(q, data_frame(10, 'a'), 8, 0), -1); /* newer */
    assert_int_equal(agent_outq_push(q, data_frame(10, 'a'), 0, 0), -1); /* none */
    assert_int_equal(c.pushes, 0);
    assert_int_equal(agent_outq_push(q, data_frame(10, 'a'), 7, 0), 0);
    assert_int_equal(agent_outq_push_text(q, "{\"n\":1}", 7, 1), 0);
    assert_int_equal(c.pushes, 1); /* only the push into the empty queue wakes */
    assert_false(agent_outq_empty(q));

    /* the connection drops: what it queued is freed, nothing is accepted */
    agent_outq_reset(q, 0);
    assert_true(agent_outq_empty(q));
    assert_null(agent_outq_pop(q));
    assert_int_equal(agent_outq_push_text(q, "{}", 7, 1), -1);
    assert_int_equal(agent_outq_push_text(q, "{}", 0, 1), -1);

    /* the next connection starts empty, with the whole cap */
    agent_outq_reset(q, 8);
    assert_true(agent_outq_has_room(q));
    assert_int_equal(agent_outq_push_text(q, "{}", 8, 0), 0);
    agent_outq_free(q); /* frees what is still queued */
}

static void bad_arguments_are_refused(void **state)
{
    agent_outq *q = new_queue(1024, NULL);
    agent_outq_reset(q, 1);
    assert_int_equal(agent_outq_push(q, NULL, 1, 0), -1);
    assert_int_equal(agent_outq_push_text(q, NULL, 1, 0), -1);
    assert_true(agent_outq_empty(q));
    /* no callbacks set: pushes and pops still work */
    assert_int_equal(agent_outq_push_text(q, "x", 1, 0), 0);
    pop_text(q, "x");
    agent_outq_free(q);
    agent_outq_free(NULL);
}

static void control_lane_goes_first_each_lane_in_order(void **state)
{
    agent_outq *q = new_queue(1 << 20, NULL);
    agent_outq_reset(q, 3);
    assert_int_equal(agent_outq_push_text(q, "d1", 3, 0), 0);
    assert_int_equal(agent_outq_push_text(q, "d2", 3, 0), 0);
    assert_int_equal(agent_outq_push_text(q, "c1", 3, 1), 0);
    assert_int_equal(agent_outq_push_text(q, "d3", 3, 0), 0);
    assert_int_equal(agent_outq_push_text(q, "c2", 3, 1), 0);
    pop_text(q, "c1");
    pop_text(q, "c2");
    pop_text(q, "d1");
    /* a control frame queued later still overtakes the remaining data */
    assert_int_equal(agent_outq_push_text(q, "c3", 3, 1), 0);
    pop_text(q, "c3");
    pop_text(q, "d2");
    pop_text(q, "d3");
    assert_null(agent_outq_pop(q));
    assert_true(agent_outq_empty(q));
    /* a lane emptied and filled again keeps its order (tail reset) */
    assert_int_equal(agent_outq_push_text(q, "d4", 3, 0), 0);
    assert_int_equal(agent_outq_push_text(q, "d5", 3, 0), 0);
    pop_text(q, "d4");
    pop_text(q, "d5");
    agent_outq_free(q);
}

/* pop_upto hands out the frame pop would, only when it is small enough; a
 * larger one stays first (the writer batches small frames behind it). */
static void pop_upto_takes_only_a_small_enough_next_frame(void **state)
{
    (void)state;
    counters c = {0};
    agent_outq *q = new_queue(100, &c);
    agent_outq_reset(q, 1);
    c.rooms = 0;
    assert_int_equal(agent_outq_push(q, data_frame(60, 'a'), 1, 0), 0);
    assert_int_equal(agent_outq_push(q, data_frame(50, 'b'), 1, 0), 0);
    assert_int_equal(agent_outq_push_text(q, "ctl", 1, 1), 0);
    assert_null(agent_outq_pop_upto(q, 2)); /* the control frame is first */
    agent_frame *f = agent_outq_pop_upto(q, 3);
    assert_non_null(f);
    assert_int_equal(f->binary, 0);
    agent_frame_free(f);
    assert_null(agent_outq_pop_upto(q, 59)); /* 'a' is 60 bytes: it stays */
    assert_false(agent_outq_has_room(q)); /* and is still accounted: 110 */
    assert_int_equal(c.rooms, 0);
    f = agent_outq_pop_upto(q, 60);
    assert_non_null(f);
    assert_int_equal(agent_frame_data(f)[0], 'a'); /* order kept */
    agent_frame_free(f);
    assert_int_equal(c.rooms, 1); /* 110 → 50: room, said as pop says it */
    f = agent_outq_pop_upto(q, 1000);
    assert_non_null(f);
    assert_int_equal(agent_frame_data(f)[0], 'b');
    agent_frame_free(f);
    assert_null(agent_outq_pop_upto(q, 1000));
    assert_true(agent_outq_empty(q));
    agent_outq_free(q);
}

/* The cap is the producers' to check (has_room); the queue accounts for
 * payload bytes of the data lane only and calls on_room once when a pop
 * takes a full lane back under the cap. */
static void data_cap_accounting_and_room_callback(void **state)
{
    counters c = {0};
    agent_outq *q = new_queue(100, &c);
    agent_outq_reset(q, 1);
    assert_int_equal(c.rooms, 1); /* a reset wakes producers waiting for room */
    c.rooms = 0;

    assert_true(agent_outq_has_room(q));
    assert_int_equal(agent_outq_push(q, data_frame(40, 'a'), 1, 0), 0);
    assert_int_equal(agent_outq_push(q, data_frame(40, 'b'), 1, 0), 0);
    assert_true(agent_outq_has_room(q)); /* 80 < 100 */
    /* control frames do not count against the data cap */
    for (int i = 0; i < 10; i++) {
        agent_frame *f = agent_frame_new(0, 50);
        assert_non_null(f);
        memset(agent_frame_data(f), 'c', 50);
        assert_int_equal(agent_outq_push(q, f, 1, 1), 0);
    }
    assert_true(agent_outq_has_room(q));
    /* exactly at the cap is full; over it is accepted and accounted */
    assert_int_equal(agent_outq_push(q, data_frame(20, 'c'), 1, 0), 0);
    assert_false(agent_outq_has_room(q)); /* 100 */
    assert_int_equal(agent_outq_push(q, data_frame(40, 'd'), 1, 0), 0);
    assert_false(agent_outq_has_room(q)); /* 140 */
    assert_int_equal(c.pushes, 1); /* the first push found the queue empty */

    /* the control frames leave first and change nothing */
    for (int i = 0; i < 10; i++) {
        agent_frame *f = agent_outq_pop(q);
        assert_non_null(f);
        assert_int_equal(f->binary, 0);
        agent_frame_free(f);
    }
    assert_int_equal(c.rooms, 0);
    agent_frame *f = agent_outq_pop(q); /* 'a' 40 → 100: still full */
    assert_non_null(f);
    assert_int_equal(agent_frame_data(f)[0], 'a');
    agent_frame_free(f);
    assert_false(agent_outq_has_room(q));
    assert_int_equal(c.rooms, 0);
    f = agent_outq_pop(q); /* 'b' 40 → 60: room again, said once */
    assert_int_equal(agent_frame_data(f)[0], 'b');
    agent_frame_free(f);
    assert_true(agent_outq_has_room(q));
    assert_int_equal(c.rooms, 1);
    assert_int_equal(c.had_room, 1); /* called after the accounting, lock released */
    f = agent_outq_pop(q); /* 60 → 40: was not full, no call */
    agent_frame_free(f);
    assert_int_equal(c.rooms, 1);
    f = agent_outq_pop(q); /* 40 → 0 */
    assert_non_null(f);
    assert_int_equal(f->len, 40);
    assert_int_equal(agent_frame_data(f)[39], 'd');
    agent_frame_free(f);
    assert_null(agent_outq_pop(q));
    assert_int_equal(c.rooms, 1);

    /* a reset of a full lane frees it and gives the whole cap back */
    assert_int_equal(agent_outq_push(q, data_frame(150, 'e'), 1, 0), 0);
    assert_false(agent_outq_has_room(q));
    agent_outq_reset(q, 2);
    assert_true(agent_outq_has_room(q));
    assert_int_equal(c.rooms, 2);
    agent_outq_free(q);
}

/* The consumer pops until the queue is empty, so a push needs to wake it only
 * when it finds the queue empty (either lane): never more, never less. */
static void wakes_only_on_push_into_empty(void **state)
{
    (void)state;
    counters c = {0};
    agent_outq *q = new_queue(1 << 20, &c);
    agent_outq_reset(q, 3);
    assert_int_equal(agent_outq_push(q, data_frame(10, 'a'), 3, 0), 0);
    assert_int_equal(c.pushes, 1);
    assert_int_equal(agent_outq_push(q, data_frame(10, 'b'), 3, 0), 0);
    assert_int_equal(agent_outq_push_text(q, "{}", 3, 1), 0); /* other lane, not empty */
    assert_int_equal(c.pushes, 1);
    for (int i = 0; i < 3; i++)
        agent_frame_free(agent_outq_pop(q));
    assert_true(agent_outq_empty(q));
    assert_int_equal(agent_outq_push_text(q, "{}", 3, 1), 0); /* empty again: wakes */
    assert_int_equal(c.pushes, 2);
    agent_frame_free(agent_outq_pop(q));
    assert_int_equal(agent_outq_push(q, data_frame(10, 'c'), 3, 0), 0);
    assert_int_equal(c.pushes, 3);
    assert_int_equal(agent_outq_push(q, data_frame(10, 'c'), 4, 0), -1); /* refused: no wake */
    assert_int_equal(c.pushes, 3);
    agent_outq_free(q);
}

static void two_queues_are_independent(void **state)
{
    counters c1 = {0}, c2 = {0};
    agent_outq *q1 = new_queue(10, &c1), *q2 = new_queue(1000, &c2);
    agent_outq_reset(q1, 1);
    agent_outq_reset(q2, 5);
    assert_int_equal(agent_outq_push_text(q1, "one", 1, 0), 0);
    assert_int_equal(agent_outq_push_text(q1, "two", 5, 0), -1); /* q2's generation */
    assert_int_equal(agent_outq_push_text(q2, "two", 5, 0), 0);
    assert_int_equal(agent_outq_push(q1, data_frame(20, 'x'), 1, 0), 0);
    assert_false(agent_outq_has_room(q1));
    assert_true(agent_outq_has_room(q2));
    assert_int_equal(c1.pushes, 1);
    assert_int_equal(c2.pushes, 1);
    pop_text(q2, "two");
    assert_null(agent_outq_pop(q2));
    pop_text(q1, "one");
    agent_outq_reset(q2, 0);
    assert_false(agent_outq_empty(q1)); /* q2's reset left q1 alone */
    agent_outq_free(q2);
    agent_frame *f = agent_outq_pop(q1);
    assert_non_null(f);
    agent_frame_free(f);
    assert_true(agent_outq_has_room(q1));
    agent_outq_free(q1);
}

/* ---- many producers, one consumer (as job threads and the lws thread) ---- */

#define PRODUCERS 4
#define PER_PRODUCER 2000

typedef struct {
    agent_outq *q;
    int idx;
    uint64_t gen;
} producer_arg;

static void *producer_main(void *arg)
{
    producer_arg *p = arg;
    for (int i = 0; i < PER_PRODUCER; i++) {
        agent_frame *f = agent_frame_new(1, 8);
        if (!f)
            return (void *)1;
        unsigned char *d = agent_frame_data(f);
        d[0] = (unsigned char)p->idx;
        memcpy(d + 4, &i, sizeof(i));
        /* every 10th frame on the control lane, like exec refusals */
        if (agent_outq_push(p->q, f, p->gen, i % 10 == 0) != 0)
            return (void *)1;
    }
    return NULL;
}

static void concurrent_producers_keep_per_producer_order(void **state)
{
    counters c = {0};
    agent_outq *q = new_queue(1 << 30, &c);
    agent_outq_reset(q, 9);
    pthread_t thr[PRODUCERS];
    producer_arg args[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        args[i] = (producer_arg){q, i, 9};
        assert_int_equal(pthread_create(&thr[i], NULL, producer_main, &args[i]), 0);
    }
    /* next expected sequence number per producer and lane */
    int next[PRODUCERS][2];
    memset(next, 0, sizeof(next));
    /* What went wrong is noted, and checked once every producer is joined:
     * a check that left the test with producers running would leave them
     * reading their arguments from its dead frame. */
    int got = 0, bad_idx = -1, bad_seq = -1;
    int64_t end = now_ms() + WAIT_MS;
    while (got < PRODUCERS * PER_PRODUCER && now_ms() < end) {
        agent_frame *f = agent_outq_pop(q);
        if (!f) {
            sched_yield();
            continue;
        }
        unsigned char *d = agent_frame_data(f);
        int idx = d[0], seq;
        memcpy(&seq, d + 4, sizeof(seq));
        int lane = seq % 10 == 0;
        if (idx >= PRODUCERS || seq < next[idx][lane]) {
            if (bad_idx < 0) {
                bad_idx = idx;
                bad_seq = seq;
            }
        } else {
            /* the next one of this lane from this producer */
            next[idx][lane] = seq + 1;
        }
        agent_frame_free(f);
        got++;
    }
    int failed = 0;
    for (int i = 0; i < PRODUCERS; i++) {
        void *rv = NULL;
        pthread_join(thr[i], &rv);
        failed += rv != NULL;
    }
    if (bad_idx >= 0)
        fail_msg("frame %d of producer %d out of order", bad_seq, bad_idx);
    assert_int_equal(failed, 0);
    if (got < PRODUCERS * PER_PRODUCER)
        fail_msg("%d of %d frames within %d ms", got, PRODUCERS * PER_PRODUCER, WAIT_MS);
    int wakes = __atomic_load_n(&c.pushes, __ATOMIC_RELAXED);
    assert_true(wakes >= 1 && wakes <= PRODUCERS * PER_PRODUCER);
    assert_true(agent_outq_empty(q));
    assert_true(agent_outq_has_room(q));
    agent_outq_free(q);
}

/* A reset racing producers: every frame is either popped or freed by the
 * reset (ASan's leak check counts them), and none of a stale generation is
 * ever popped. */
static void reset_racing_producers_loses_nothing(void **state)
{
    agent_outq *q = new_queue(1 << 30, NULL);
    agent_outq_reset(q, 1);
    pthread_t thr[PRODUCERS];
    producer_arg args[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        args[i] = (producer_arg){q, i, 1};
        assert_int_equal(pthread_create(&thr[i], NULL, producer_main, &args[i]), 0);
    }
    int popped = 0;
    int64_t end = now_ms() + WAIT_MS;
    while (popped < 100 && now_ms() < end) {
        agent_frame *f = agent_outq_pop(q);
        if (f) {
            popped++;
            agent_frame_free(f);
        } else {
            sched_yield();
        }
    }
    agent_outq_reset(q, 2);
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(thr[i], NULL); /* pushes after the reset fail: producers may stop early */
    assert_int_equal(popped, 100);
    agent_frame *f;
    while ((f = agent_outq_pop(q)))
        fail_msg("a frame of the old generation survived the reset");
    agent_outq_free(q);
}

/* A command's held output and its exec_end go in as one push: in order, on
 * the data lane, counted against the cap, one wake-up; a stale chain is
 * freed whole. */
static void a_chain_is_one_push_in_order(void **state)
{
    counters c = {0};
    agent_outq *q = new_queue(1 << 20, &c);
    agent_outq_reset(q, 3);
    agent_frame *a = data_frame(100, 'a'), *b = data_frame(200, 'b');
    agent_frame *end = agent_frame_text("{\"type\":\"exec_end\"}");
    assert_non_null(end);
    a->next = b;
    b->next = end;
    assert_int_equal(agent_outq_push_chain(q, a, 3), 0);
    assert_int_equal(c.pushes, 1);
    /* the control lane still goes first */
    assert_int_equal(agent_outq_push_text(q, "{\"type\":\"heartbeat\"}", 3, 1), 0);
    assert_int_equal(c.pushes, 1); /* not empty: no second wake-up */
    pop_text(q, "{\"type\":\"heartbeat\"}");
    agent_frame *f = agent_outq_pop(q);
    assert_non_null(f);
    assert_int_equal(f->len, 100);
    assert_int_equal(agent_frame_data(f)[0], 'a');
    assert_null(f->next);
    agent_frame_free(f);
    f = agent_outq_pop(q);
    assert_non_null(f);
    assert_int_equal(f->len, 200);
    agent_frame_free(f);
    pop_text(q, "{\"type\":\"exec_end\"}");
    assert_null(agent_outq_pop(q));
    assert_true(agent_outq_empty(q));

    /* counted against the data cap like single pushes */
    agent_outq *small = new_queue(150, NULL);
    agent_outq_reset(small, 1);
    a = data_frame(100, 'a');
    a->next = data_frame(200, 'b');
    assert_int_equal(agent_outq_push_chain(small, a, 1), 0);
    assert_false(agent_outq_has_room(small));
    agent_frame_free(agent_outq_pop(small));
    assert_false(agent_outq_has_room(small)); /* 200 of 150 */
    agent_frame_free(agent_outq_pop(small));
    assert_true(agent_outq_has_room(small));
    agent_outq_free(small);

    /* a chain of another generation is refused and freed (ASan checks) */
    a = data_frame(10, 'x');
    a->next = data_frame(10, 'y');
    assert_int_equal(agent_outq_push_chain(q, a, 2), -1);
    assert_true(agent_outq_empty(q));
    assert_int_equal(agent_outq_push_chain(q, NULL, 3), -1);
    agent_outq_free(q);
}


/* ---- the bounds of outq.h: try_push and the backlog ------------------------ */

typedef struct {
    agent_outq *q;
    int calls;
} queued_probe;

static void on_queued(void *arg)
{
    queued_probe *p = arg;
    p->calls++;
}

/* try_push takes the frame only while the data lane is below its cap; a
 * full lane gives it back (the caller still owns it: ASan would see a double
 * free or a leak otherwise) and runs no hook; a stale generation frees it. */
static void try_push_only_with_room(void **state)
{
    counters c = {0};
    agent_outq *q = new_queue(100, &c);
    agent_outq_reset(q, 1);
    c.rooms = 0; /* the reset's */
    queued_probe p = {q, 0};

    agent_frame *a = data_frame(60, 'a');
    assert_int_equal(agent_outq_try_push(q, a, 1, on_queued, &p), 0);
    assert_int_equal(p.calls, 1);
    assert_int_equal(c.pushes, 1);
    /* 60 < 100: room, and the frame may take the lane past its cap */
    assert_int_equal(agent_outq_try_push(q, data_frame(70, 'b'), 1, on_queued, &p), 0);
    assert_int_equal(p.calls, 2);
    assert_false(agent_outq_has_room(q)); /* 130 */

    agent_frame *d = data_frame(10, 'd');
    assert_int_equal(agent_outq_try_push(q, d, 1, on_queued, &p), AGENT_OUTQ_FULL);
    assert_int_equal(p.calls, 2); /* not queued: no hook */
    assert_int_equal(agent_frame_data(d)[0], 'd'); /* still ours, untouched */
    /* control frames and plain pushes still go in (they never wait) */
    assert_int_equal(agent_outq_push_text(q, "ctl", 1, 1), 0);
    assert_int_equal(agent_outq_push(q, data_frame(5, 'e'), 1, 0), 0);

    pop_text(q, "ctl");
    agent_frame_free(agent_outq_pop(q)); /* 'a': 135 → 75, room */
    assert_int_equal(c.rooms, 1);
    assert_int_equal(agent_outq_try_push(q, d, 1, NULL, NULL), 0); /* no hook: fine */
    agent_frame *f = agent_outq_pop(q);
    assert_int_equal(agent_frame_data(f)[0], 'b');
    agent_frame_free(f);
    f = agent_outq_pop(q);
    assert_int_equal(agent_frame_data(f)[0], 'e');
    agent_frame_free(f);
    f = agent_outq_pop(q);
    assert_int_equal(agent_frame_data(f)[0], 'd'); /* order kept */
    agent_frame_free(f);

    /* another generation: refused and freed, no hook */
    assert_int_equal(agent_outq_try_push(q, data_frame(10, 'x'), 2, on_queued, &p), -1);
    assert_int_equal(agent_outq_try_push(q, NULL, 1, on_queued, &p), -1);
    assert_int_equal(p.calls, 2);
    agent_outq_reset(q, 0);
    assert_int_equal(agent_outq_try_push(q, data_frame(10, 'x'), 1, on_queued, &p), -1);
    assert_int_equal(p.calls, 2);
    agent_outq_free(q);
}

#define RACERS 4

typedef struct {
    agent_outq *q;
    int queued;
    pthread_barrier_t *go;
} racer_arg;

static void *racer_main(void *arg)
{
    racer_arg *r = arg;
    pthread_barrier_wait(r->go);
    for (;;) {
        agent_frame *f = agent_frame_new(1, 50);
        if (!f)
            return (void *)1;
        int rc = agent_outq_try_push(r->q, f, 1, NULL, NULL);
        if (rc == AGENT_OUTQ_FULL) {
            agent_frame_free(f);
            return NULL;
        }
        if (rc != 0)
            return (void *)1;
        r->queued++;
    }
}

/* Producers racing for the last room: the check and the push are one step,
 * so the lane ends at most one frame past its cap, whoever wins. */
static void racing_try_pushes_overshoot_by_one_frame_at_most(void **state)
{
    for (int round = 0; round < 20; round++) {
        agent_outq *q = new_queue(1000, NULL);
        agent_outq_reset(q, 1);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, RACERS);
        pthread_t thr[RACERS];
        racer_arg args[RACERS];
        for (int i = 0; i < RACERS; i++) {
            args[i] = (racer_arg){q, 0, &go};
            assert_int_equal(pthread_create(&thr[i], NULL, racer_main, &args[i]), 0);
        }
        int queued = 0;
        for (int i = 0; i < RACERS; i++) {
            void *rv;
            pthread_join(thr[i], &rv);
            assert_null(rv);
            queued += args[i].queued;
        }
        pthread_barrier_destroy(&go);
        /* 20 frames of 50 reach the cap of 1000 exactly: never a 21st */
        assert_int_equal(queued, 20);
        assert_int_equal(agent_outq_bytes(q), 1000);
        assert_false(agent_outq_has_room(q));
        agent_outq_free(q);
    }
}

/* Control frames count: at ctl_cap bytes the queue is backlogged, and stays
 * so until the control lane is below half of it (hysteresis); a reset
 * clears it.  The data lane needs cap + ctl_cap (frames pushed whatever the
 * room), and must be back below cap. */
static void backlog_counts_both_lanes_with_hysteresis(void **state)
{
    agent_outq *q = new_queue_ctl(1000, 100, NULL);
    agent_outq_reset(q, 1);
    assert_false(agent_outq_backlogged(q));
    for (int i = 0; i < 4; i++)
        assert_int_equal(agent_outq_push(q, data_frame(25, 'c'), 1, 1), 0);
    assert_true(agent_outq_backlogged(q)); /* 100 of 100 */
    assert_int_equal(agent_outq_bytes(q), 100);
    assert_true(agent_outq_has_room(q)); /* the data lane's room is another matter */
    agent_frame_free(agent_outq_pop(q)); /* 75 */
    assert_true(agent_outq_backlogged(q));
    agent_frame_free(agent_outq_pop(q)); /* 50: not below half */
    assert_true(agent_outq_backlogged(q));
    agent_frame_free(agent_outq_pop(q)); /* 25 */
    assert_false(agent_outq_backlogged(q));
    /* below the cap again: pushes do not set it */
    assert_int_equal(agent_outq_push(q, data_frame(50, 'c'), 1, 1), 0); /* 75 */
    assert_false(agent_outq_backlogged(q));
    agent_frame_free(agent_outq_pop(q));
    agent_frame_free(agent_outq_pop(q));
    assert_int_equal(agent_outq_bytes(q), 0);

    /* the data lane: its cap is the producers' (room), the backlog comes at
     * cap + ctl_cap */
    assert_int_equal(agent_outq_push(q, data_frame(1000, 'd'), 1, 0), 0);
    assert_false(agent_outq_has_room(q));
    assert_false(agent_outq_backlogged(q));
    assert_int_equal(agent_outq_push(q, data_frame(99, 'e'), 1, 0), 0); /* 1099 */
    assert_false(agent_outq_backlogged(q));
    assert_int_equal(agent_outq_push(q, data_frame(1, 'f'), 1, 0), 0); /* 1100 */
    assert_true(agent_outq_backlogged(q));
    assert_int_equal(agent_outq_bytes(q), 1100);
    /* a control frame popped first leaves the data lane as it is */
    assert_int_equal(agent_outq_push_text(q, "x", 1, 1), 0);
    pop_text(q, "x");
    assert_true(agent_outq_backlogged(q));
    agent_frame_free(agent_outq_pop(q)); /* 100: below the cap */
    assert_false(agent_outq_backlogged(q));
    assert_true(agent_outq_has_room(q));

    /* both lanes must have drained: control above half keeps it */
    assert_int_equal(agent_outq_push(q, data_frame(1100, 'g'), 1, 0), 0);
    assert_int_equal(agent_outq_push(q, data_frame(60, 'h'), 1, 1), 0);
    assert_true(agent_outq_backlogged(q));
    agent_frame *f = agent_outq_pop(q); /* the control frame: 0 */
    assert_int_equal(agent_frame_data(f)[0], 'h');
    agent_frame_free(f);
    assert_true(agent_outq_backlogged(q)); /* data still at 1200 */
    agent_outq_reset(q, 2); /* a new connection starts unbacklogged */
    assert_false(agent_outq_backlogged(q));
    assert_int_equal(agent_outq_bytes(q), 0);

    /* a refused push counts nothing */
    assert_int_equal(agent_outq_push(q, data_frame(500, 'z'), 1, 1), -1);
    assert_int_equal(agent_outq_bytes(q), 0);
    assert_false(agent_outq_backlogged(q));
    agent_outq_free(q);

    /* ctl_cap 0: a sixteenth of the data cap */
    q = new_queue(1600, NULL);
    agent_outq_reset(q, 1);
    assert_int_equal(agent_outq_push(q, data_frame(99, 'c'), 1, 1), 0);
    assert_false(agent_outq_backlogged(q));
    assert_int_equal(agent_outq_push(q, data_frame(1, 'c'), 1, 1), 0);
    assert_true(agent_outq_backlogged(q));
    agent_outq_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frames_have_headroom_and_a_terminator),
        cmocka_unit_test(closed_until_reset_and_stale_generations_refused),
        cmocka_unit_test(bad_arguments_are_refused),
        cmocka_unit_test(control_lane_goes_first_each_lane_in_order),
        cmocka_unit_test(data_cap_accounting_and_room_callback),
        cmocka_unit_test(pop_upto_takes_only_a_small_enough_next_frame),
        cmocka_unit_test(wakes_only_on_push_into_empty),
        cmocka_unit_test(two_queues_are_independent),
        cmocka_unit_test(concurrent_producers_keep_per_producer_order),
        cmocka_unit_test(reset_racing_producers_loses_nothing),
        cmocka_unit_test(a_chain_is_one_push_in_order),
        cmocka_unit_test(try_push_only_with_room),
        cmocka_unit_test(racing_try_pushes_overshoot_by_one_frame_at_most),
        cmocka_unit_test(backlog_counts_both_lanes_with_hysteresis),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
