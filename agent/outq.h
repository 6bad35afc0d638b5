/* outq.h — the queue of frames waiting to go out on the tunnel.
 *
 * Worker threads push; the libwebsockets thread pops frames in its
 * WRITEABLE callback while the socket takes them.  Frames carry LWS_PRE bytes of headroom.  Two lanes:
 * control (register, heartbeat, immediate refusals) goes before data (output
 * frames and the exec_end that closes each request, kept in order).
 *
 * Frames are tagged with the connection generation they belong to; a push for
 * another generation than the current one is discarded, so nothing from a
 * dropped tunnel leaks onto the next connection.
 *
 * Bounds.  The data lane has a byte cap that producers check before reading
 * more (agent_outq_has_room) or that refuses their push (agent_outq_try_push).
 * Some frames cannot wait for room and are never dropped: control frames
 * (exec_end refusals, register, heartbeats), and data frames answering a
 * request at once (legacy refusals, the exec_end closing a request).  Each is
 * caused by a message the server sent, so what bounds them is the tunnel
 * reading no more messages while the queue is backlogged: the control lane
 * holds ctl_cap bytes, or the data lane cap + ctl_cap.  It reads again once
 * the queue has drained: control lane below half its cap, data lane below
 * its cap.  A server that stops reading then meets TCP's backpressure
 * instead of growing the agent's memory. */
#ifndef AURORA_AGENT_OUTQ_H
#define AURORA_AGENT_OUTQ_H

#include <stddef.h>
#include <stdint.h>

typedef struct agent_frame {
    struct agent_frame *next;
    int binary;
    size_t len;              /* payload length (after the headroom) */
    unsigned char mem[];     /* LWS_PRE headroom + payload */
} agent_frame;

unsigned char *agent_frame_data(agent_frame *f);
agent_frame *agent_frame_new(int binary, size_t len);
/* f allocated larger than f->len (filled by parts): gives back the rest.
 * Returns the frame, perhaps moved. */
agent_frame *agent_frame_shrink(agent_frame *f);
/* Text frame holding a copy of the NUL-terminated string s. */
agent_frame *agent_frame_text(const char *s);
void agent_frame_free(agent_frame *f);

/* One queue per tunnel (opaque).  on_push runs (any thread, no lock held)
 * after an accepted push into an empty queue (the consumer pops until the
 * queue is empty, so only then does it need waking); on_room runs (lws thread) after a pop left the
 * data lane below its cap.  Each gets its own arg.  The backlog state has no
 * callback: pops happen on the consumer's thread, which asks after a pass. */
typedef struct agent_outq agent_outq;

typedef struct {
    size_t cap;                    /* data lane byte cap */
    size_t ctl_cap;                /* control lane byte cap (backlog, above); 0: cap / 16 */
    void (*on_push)(void *arg);
    void *on_push_arg;
    void (*on_room)(void *arg);
    void *on_room_arg;
} agent_outq_opts;

/* NULL on OOM.  The queue starts closed (generation 0): reset it to open. */
agent_outq *agent_outq_new(const agent_outq_opts *o);
/* Frees every queued frame and the queue. */
void agent_outq_free(agent_outq *q);
/* Takes f. 0 if queued, -1 if discarded (stale generation or closed). */
int agent_outq_push(agent_outq *q, agent_frame *f, uint64_t gen, int control);
/* Queues the frames linked from first through ->next on the data lane, in
 * order, as one push (one on_push at most).  Takes them all; 0 if queued,
 * -1 if discarded as agent_outq_push would. */
int agent_outq_push_chain(agent_outq *q, agent_frame *first, uint64_t gen);
/* Data lane, only while it has room: 0 if queued, AGENT_OUTQ_FULL if the
 * lane is at its cap (f is NOT taken: the caller waits for on_room and
 * tries again), -1 if discarded as agent_outq_push would.  The check and
 * the push are one step: producers racing for the last room cannot all get
 * it, so the lane overshoots its cap by one frame at most.  queued (may be
 * NULL) runs with queued_arg once f is queued, under the queue's lock, so
 * before any consumer can pop f: it must not call into the queue. */
#define AGENT_OUTQ_FULL 1
int agent_outq_try_push(agent_outq *q, agent_frame *f, uint64_t gen,
                        void (*queued)(void *), void *queued_arg);
/* Convenience: queues a text frame with a copy of json (NULL json → -1). */
int agent_outq_push_text(agent_outq *q, const char *json, uint64_t gen, int control);
agent_frame *agent_outq_pop(agent_outq *q);
/* The next frame, as agent_outq_pop would give it, only if its payload is at
 * most max_len bytes; otherwise NULL and the frame stays first. */
agent_frame *agent_outq_pop_upto(agent_outq *q, size_t max_len);
int agent_outq_empty(agent_outq *q);
int agent_outq_has_room(agent_outq *q);
/* 1 from the moment the queue is backlogged (above) until it has drained:
 * the tunnel reads no messages meanwhile. */
int agent_outq_backlogged(agent_outq *q);
/* Payload bytes queued in both lanes (for the log). */
size_t agent_outq_bytes(agent_outq *q);
/* Drops every queued frame and starts accepting frames of gen only. */
void agent_outq_reset(agent_outq *q, uint64_t gen);

#endif
