/* runner.h — runs the commands the server sends, one supervising thread each.
 *
 * kubectl (AURORA_KUBECTL_PATH) is started with vfork (child_spawn.h), a
 * cloud_exec program in the sandbox of sandbox.h — never a shell — in its own
 * process group, stdin from /dev/null, stdout and stderr on separate pipes,
 * every other descriptor closed.  The thread reads the
 * pipes, honours the request's flow-control window and output cap, enforces
 * the timeout (SIGTERM to the group, SIGKILL 2 s later), reaps the child and
 * queues the output frames then exactly one exec_end (or, for the legacy
 * dialect, one command_response) on the outgoing queue (outq.h).
 *
 * Every job belongs to a connection generation; when that connection drops
 * its jobs are killed and their results discarded. */
#ifndef AURORA_AGENT_RUNNER_H
#define AURORA_AGENT_RUNNER_H

#include <stddef.h>
#include <stdint.h>

#include "argv.h"
#include "outq.h"
#include "proto.h"
#include "ws_frame.h"

/* One runner per tunnel (opaque); its jobs queue their frames on opts.outq. */
typedef struct agent_runner agent_runner;

typedef struct {
    const char *kubectl_path;
    int max_concurrent;
    int timeout_max;        /* seconds */
    int64_t max_output;     /* bytes */
    agent_outq *outq;       /* where output and exec_end go (not owned; outlives the runner) */
    void (*notify)(void *arg); /* any thread: a job finished while shutting down (wake the loop) */
    void *notify_arg;
    int pool_idle_ms;       /* a job thread idle this long exits; 0: 30 s */
} agent_runner_opts;

typedef enum {
    RUN_STARTED = 0,
    RUN_BUSY,          /* AGENT_BUSY */
    RUN_SHUTTING_DOWN, /* AGENT_SHUTTING_DOWN */
    RUN_DUPLICATE,     /* id already running on this connection */
    RUN_FAILED,        /* could not start a thread */
} agent_run_result;

/* NULL on OOM. */
agent_runner *agent_runner_new(const agent_runner_opts *o);
/* Kills whatever still runs and joins every thread; from then on exec/legacy
 * answer RUN_SHUTTING_DOWN and the other calls find nothing to act on. */
void agent_runner_stop(agent_runner *runner);
/* Stops (if not done yet) and frees the runner. */
void agent_runner_free(agent_runner *runner);
/* Job threads kept now, and how many of them wait for a job. */
void agent_runner_pool(agent_runner *runner, int *threads, int *idle);
/* How long a job thread waits for work before it exits (0: 30 s), from now
 * on: threads already waiting start their wait again with the new value. */
void agent_runner_set_pool_idle_ms(agent_runner *runner, int pool_idle_ms);

/* The most output one data frame carries.  With its data header and its
 * WebSocket header the frame is then two TLS records of 16 KiB exactly:
 * PROTO_MAX_CHUNK would spill 13 bytes into a third record of its own, which
 * both ends seal or open, write or read (two system calls without read-ahead)
 * like a full one. */
#define TLS_RECORD_MAX 16384
#define AGENT_READ_CHUNK (2 * TLS_RECORD_MAX - WS_FRAME_HEAD_16 - PROTO_DATA_HDR)

/* v2 exec.  On RUN_STARTED argv has been taken over (left empty).  timeout <= 0
 * or above the maximum means the maximum; max_output <= 0 means the agent's cap.
 * hold > 0 (the exec's "hold_output"): output frames are kept back, up to
 * that many bytes (at most AGENT_HOLD_MAX), and queued together with
 * exec_end, so a short output crosses the tunnel in one trip.  They go out
 * at once when the held bytes reach hold or the window runs out (the server
 * returns credit only for output it has), never later than exec_end. */
#define AGENT_HOLD_MAX (256 * 1024)
agent_run_result agent_runner_exec(agent_runner *runner, uint64_t gen, uint32_t id, argv_t *argv,
                                   double timeout, int64_t max_output, int64_t window,
                                   int64_t hold);
/* v2 exec of kind cloud_exec: path (absolute, resolved by the agent) runs in
 * a fresh sandbox (sandbox.h) with profile (its CLI, kept by the caller for
 * as long as the runner lives; may be NULL) and env[0..nenv) ("NAME=value",
 * checked by the caller) added to its environment.  The job keeps its own copy of env and
 * wipes it once the child has started; the caller wipes its own.  Output,
 * hold, flow control, timeout, cancel and exec_end as for kubectl. */
struct sandbox_profile;
agent_run_result agent_runner_exec_cloud(agent_runner *runner, uint64_t gen, uint32_t id,
                                         const char *path, const struct sandbox_profile *profile,
                                         argv_t *argv, char *const *env, int nenv, double timeout,
                                         int64_t max_output, int64_t window, int64_t hold);
/* Legacy kubectl_command: the output is collected and sent as one command_response.
 * That message is at most AGENT_LEGACY_MAX_RESPONSE bytes whatever the
 * output (proto_command_response_into): the deployed legacy server closes
 * the whole tunnel on a larger message (10 MiB, its websockets max_size;
 * this server's AURORA_LEGACY_MAX_FRAME is 32 MiB), and JSON makes up to 6
 * bytes of one byte of output.  Output past the bound is cut and the cut
 * said in the response's error; no more than the bound is collected. */
#define AGENT_LEGACY_MAX_RESPONSE ((int64_t)10 << 20)
agent_run_result agent_runner_legacy(agent_runner *runner, uint64_t gen, const char *command_id,
                                     argv_t *argv, double timeout);
/* 0, or -1 if no such running request on this connection. */
int agent_runner_credit(agent_runner *runner, uint64_t gen, uint32_t id, int64_t bytes);
int agent_runner_cancel(agent_runner *runner, uint64_t gen, uint32_t id);
/* The connection of generation gen is gone: kill its jobs, deliver nothing. */
void agent_runner_drop(agent_runner *runner, uint64_t gen);
/* Shutdown grace over: cancel every job, each still sends its exec_end. */
void agent_runner_cancel_all(agent_runner *runner);
/* From now on exec/legacy answer RUN_SHUTTING_DOWN. */
void agent_runner_set_shutting_down(agent_runner *runner);
/* Jobs whose thread has not finished yet. */
int agent_runner_active(agent_runner *runner);
/* Joins and frees finished jobs (call from the event loop). */
void agent_runner_reap(agent_runner *runner);
/* outq callback: the outgoing queue has room again. */
void agent_runner_wake_room(agent_runner *runner);

#endif
