/* runner.c — process execution for the agent: spawn, supervise, stream. */
#include "runner.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "outq.h"
#include "peer_text.h"
#include "proto.h"
#include "sandbox.h"
#include "secret.h"
#include "child_spawn.h"
#include "ws_frame.h"

extern char **environ;

#define KILL_GRACE_MS 2000   /* SIGTERM → SIGKILL */
#define ESCAPE_GRACE_MS 3000 /* after SIGKILL: stop waiting for pipes held outside the group */
#define NOPIDFD_POLL_MS 50

enum { REQ_NONE = 0, REQ_CANCEL, REQ_SHUTDOWN, REQ_DROP };
enum { END_NONE = 0, END_TIMEOUT, END_CANCEL, END_SHUTDOWN, END_DROP };

typedef struct job {
    struct job *next;
    agent_runner *runner; /* the runner the job belongs to */
    uint64_t gen;
    uint32_t id;          /* v2; 0 for legacy */
    char *command_id;     /* legacy; NULL for v2 */
    char shown_id[80];    /* legacy: command_id for log lines (the server's text: peer_text.h) */
    int kind;             /* MK_KUBECTL or MK_CLOUD_EXEC (metrics.h) */
    argv_t argv;          /* argv[0] = program (cloud_exec: its absolute path) */
    char **env;           /* cloud_exec: the server's NAME=value (credentials), wiped once
                             the child is started */
    int nenv;
    const sandbox_profile *profile; /* cloud_exec: its CLI (sandbox.h) */
    int64_t timeout_ms;
    int timeout_s;
    int64_t limit;        /* output cap for this job */
    int64_t hold;         /* output bytes that may be kept back until exec_end (runner.h) */
    /* guarded by runner->mu */
    int64_t window;
    int request;          /* REQ_* */
    int waiting_room;
    int done;
    int slot_free; /* child reaped: no longer counts against max_concurrent */
    pid_t child;   /* its process until the job ends (the orphan reaper spares it) */
    int efd;              /* its thread's eventfd while one runs it, else -1 */
    struct job *qnext;    /* in runner->queue until a pool thread takes it */
} job;

struct agent_runner {
    pthread_mutex_t mu;
    job *jobs;
    int shutting_down;
    /* Job threads are kept between commands: a thread created per command
     * cost a clone3 on the event loop (~56 us of CPU per command on a PVM
     * guest, docs/performance.md) and its exit ~100 us more.  A thread idle
     * for pool_idle_ms exits, so a burst's threads do not stay. */
    pthread_cond_t pool_cv;   /* a job was queued, the idle time changed, or the pool stops */
    pthread_cond_t changed;   /* a job ended, or a pool thread exited */
    job *queue, *queue_tail;  /* started jobs no thread has taken yet */
    int queued;
    int pool_threads, pool_idle;
    int pool_stopping;
    agent_runner_opts o;
    char *kubectl_path;
    char **env;           /* environment for children (agent secrets removed) */
    int devnull;          /* children's stdin, opened once */
    int proc_status;      /* /proc/self/status, read before each spawn (child_spawn.h) */
    int64_t next_orphan_scan; /* event loop only */
};

/* Stack of one job's thread (see agent_runner_exec). */
#define JOB_STACK_BYTES (512 * 1024)
/* A pool thread with no job for this long exits (agent_runner_opts). */
#define POOL_IDLE_MS_DEFAULT 30000

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* runner->mu held.  A job not yet taken by a thread (or already done) has
 * no eventfd: its thread reads the state under the lock before it first
 * polls, so nothing is missed. */
static void wake(job *j)
{
    if (j->efd < 0)
        return;
    uint64_t one = 1;
    ssize_t r = write(j->efd, &one, sizeof(one));
    (void)r;
}

/* ---- child environment ----------------------------------------------------- */

/* The agent's secret settings (agent_config.c): its token, and the
 * operator's variables for the cloud CLIs (proxy credentials), which
 * kubectl never needs: a shared-uid cloud command without Landlock could
 * read them from kubectl's /proc/<pid>/environ. */
static int env_secret(const char *kv)
{
    static const char *const hidden[] = {"AURORA_AGENT_TOKEN=", "AURORA_CLOUD_ENV=", NULL};
    for (int i = 0; hidden[i]; i++)
        if (!strncmp(kv, hidden[i], strlen(hidden[i])))
            return 1;
    return 0;
}

static char **env_build(void)
{
    size_t n = 0;
    for (char **e = environ; e && *e; e++)
        n++;
    char **env = calloc(n + 1, sizeof(char *));
    if (!env)
        return NULL;
    size_t k = 0;
    for (char **e = environ; e && *e; e++) {
        if (env_secret(*e))
            continue;
        env[k] = strdup(*e);
        if (!env[k]) {
            for (size_t i = 0; i < k; i++)
                free(env[i]);
            free(env);
            return NULL;
        }
        k++;
    }
    env[k] = NULL;
    return env;
}

static void env_free(char **env)
{
    if (!env)
        return;
    for (char **e = env; *e; e++)
        free(*e);
    free(env);
}

/* ---- lifecycle ----------------------------------------------------------- */

agent_runner *agent_runner_new(const agent_runner_opts *o)
{
    agent_runner *runner = calloc(1, sizeof(*runner));
    if (!runner)
        return NULL;
    runner->devnull = -1;
    runner->proc_status = -1;
    if (pthread_mutex_init(&runner->mu, NULL) != 0) {
        free(runner);
        return NULL;
    }
    /* idle threads time out on the monotonic clock: a wall clock set back
     * would keep them, one set forward would end them at once */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&runner->pool_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&runner->changed, NULL);
    runner->o = *o;
    runner->kubectl_path = strdup(o->kubectl_path ? o->kubectl_path : "kubectl");
    runner->o.kubectl_path = runner->kubectl_path;
    runner->env = env_build();
    runner->devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    runner->proc_status = open("/proc/self/status", O_RDONLY | O_CLOEXEC); /* -1: per spawn */
    if (!runner->kubectl_path || !runner->env || runner->devnull < 0) {
        agent_runner_free(runner);
        return NULL;
    }
    return runner;
}

static void env_wipe(job *j)
{
    for (int i = 0; j->env && i < j->nenv; i++) {
        secret_free(j->env[i]);
    }
    free(j->env);
    j->env = NULL;
    j->nenv = 0;
}

static void job_free(job *j)
{
    env_wipe(j);
    argv_free(&j->argv);
    free(j->command_id);
    free(j);
}

void agent_runner_stop(agent_runner *runner)
{
    if (!runner)
        return;
    pthread_mutex_lock(&runner->mu);
    runner->shutting_down = 1;
    for (job *j = runner->jobs; j; j = j->next) {
        j->request = REQ_DROP;
        wake(j);
    }
    /* every job ends (a queued one is still taken, and drops at once), then
     * the pool's threads leave */
    for (;;) {
        int running = 0;
        for (job *j = runner->jobs; j; j = j->next)
            running += !j->done;
        if (!running)
            break;
        pthread_cond_wait(&runner->changed, &runner->mu);
    }
    runner->pool_stopping = 1;
    pthread_cond_broadcast(&runner->pool_cv);
    while (runner->pool_threads > 0)
        pthread_cond_wait(&runner->changed, &runner->mu);
    job *list = runner->jobs;
    runner->jobs = NULL;
    pthread_mutex_unlock(&runner->mu);
    while (list) {
        job *n = list->next;
        job_free(list);
        list = n;
    }
}

void agent_runner_free(agent_runner *runner)
{
    if (!runner)
        return;
    agent_runner_stop(runner);
    env_free(runner->env);
    free(runner->kubectl_path);
    if (runner->devnull >= 0)
        close(runner->devnull);
    if (runner->proc_status >= 0)
        close(runner->proc_status);
    pthread_cond_destroy(&runner->pool_cv);
    pthread_cond_destroy(&runner->changed);
    pthread_mutex_destroy(&runner->mu);
    free(runner);
}

void agent_runner_pool(agent_runner *runner, int *threads, int *idle)
{
    pthread_mutex_lock(&runner->mu);
    *threads = runner->pool_threads;
    *idle = runner->pool_idle;
    pthread_mutex_unlock(&runner->mu);
}

void agent_runner_set_pool_idle_ms(agent_runner *runner, int pool_idle_ms)
{
    pthread_mutex_lock(&runner->mu);
    runner->o.pool_idle_ms = pool_idle_ms;
    pthread_cond_broadcast(&runner->pool_cv); /* waiting threads re-read it */
    pthread_mutex_unlock(&runner->mu);
}

void agent_runner_reap(agent_runner *runner)
{
    int64_t now = now_ms();
    if (now >= runner->next_orphan_scan) {
        runner->next_orphan_scan = now + 5000;
        /* The jobs' own processes are theirs to reap: one that left its
         * process group looks like an orphan to the scan. */
        size_t n = 0, cap = 0;
        pid_t *keep = NULL;
        pthread_mutex_lock(&runner->mu);
        for (job *j = runner->jobs; j; j = j->next)
            cap += j->child > 0;
        keep = cap ? malloc(cap * sizeof(*keep)) : NULL;
        for (job *j = runner->jobs; keep && j; j = j->next)
            if (j->child > 0 && n < cap)
                keep[n++] = j->child;
        pthread_mutex_unlock(&runner->mu);
        if (!cap || keep) /* out of memory: no scan this time rather than a wrong one */
            sandbox_reap_orphans(keep, n);
        free(keep);
    }
    job *finished = NULL;
    pthread_mutex_lock(&runner->mu);
    job **pp = &runner->jobs;
    while (*pp) {
        job *j = *pp;
        if (j->done) {
            *pp = j->next;
            j->next = finished;
            finished = j;
        } else {
            pp = &j->next;
        }
    }
    pthread_mutex_unlock(&runner->mu);
    while (finished) {
        job *n = finished->next;
        job_free(finished); /* its thread let go of it when it set done */
        finished = n;
    }
}

int agent_runner_active(agent_runner *runner)
{
    int n = 0;
    pthread_mutex_lock(&runner->mu);
    for (job *j = runner->jobs; j; j = j->next)
        if (!j->done)
            n++;
    pthread_mutex_unlock(&runner->mu);
    return n;
}

void agent_runner_set_shutting_down(agent_runner *runner)
{
    pthread_mutex_lock(&runner->mu);
    runner->shutting_down = 1;
    pthread_mutex_unlock(&runner->mu);
}

static job *find_locked(agent_runner *runner, uint64_t gen, uint32_t id)
{
    for (job *j = runner->jobs; j; j = j->next)
        if (!j->done && j->gen == gen && j->id == id && !j->command_id)
            return j;
    return NULL;
}

int agent_runner_credit(agent_runner *runner, uint64_t gen, uint32_t id, int64_t bytes)
{
    int rc = -1;
    pthread_mutex_lock(&runner->mu);
    job *j = find_locked(runner, gen, id);
    if (j) {
        rc = 0;
        if (bytes > 0) {
            int was_empty = j->window <= 0;
            if (j->window > INT64_MAX / 2 || bytes > INT64_MAX / 2)
                j->window = INT64_MAX / 2;
            else
                j->window += bytes;
            if (was_empty && j->window > 0)
                wake(j);
        }
    }
    pthread_mutex_unlock(&runner->mu);
    return rc;
}

int agent_runner_cancel(agent_runner *runner, uint64_t gen, uint32_t id)
{
    int rc = -1;
    pthread_mutex_lock(&runner->mu);
    job *j = find_locked(runner, gen, id);
    if (j) {
        rc = 0;
        if (j->request == REQ_NONE)
            j->request = REQ_CANCEL;
        wake(j);
    }
    pthread_mutex_unlock(&runner->mu);
    return rc;
}

void agent_runner_drop(agent_runner *runner, uint64_t gen)
{
    pthread_mutex_lock(&runner->mu);
    for (job *j = runner->jobs; j; j = j->next) {
        if (j->gen == gen && !j->done) {
            j->request = REQ_DROP;
            wake(j);
        }
    }
    pthread_mutex_unlock(&runner->mu);
}

void agent_runner_cancel_all(agent_runner *runner)
{
    pthread_mutex_lock(&runner->mu);
    for (job *j = runner->jobs; j; j = j->next) {
        if (!j->done && j->request == REQ_NONE) {
            j->request = REQ_SHUTDOWN;
            wake(j);
        }
    }
    pthread_mutex_unlock(&runner->mu);
}

void agent_runner_wake_room(agent_runner *runner)
{
    pthread_mutex_lock(&runner->mu);
    for (job *j = runner->jobs; j; j = j->next) {
        if (j->waiting_room) {
            j->waiting_room = 0;
            wake(j);
        }
    }
    pthread_mutex_unlock(&runner->mu);
}

/* ---- the job thread -------------------------------------------------------- */

typedef struct {
    job *j;
    pid_t pid;
    int pidfd;
    int fd[2];            /* stdout, stderr read ends; -1 when closed */
    int pipe_grown[2];    /* F_SETPIPE_SZ done (read_pipe) */
    int exited, reaped;
    int status;
    int status_lost;      /* reaped by someone else: its exit status is unknown */
    int64_t reaped_at;    /* now_ms() when reaped */
    int64_t sent;         /* payload bytes forwarded / kept */
    int truncated;
    buf_t cap[2];         /* legacy: collected stdout, stderr */
    agent_frame *held, *held_tail; /* v2 with hold: output frames kept back, in order */
    agent_frame **held_tail_link;  /* the pointer to held_tail (to shrink it in place) */
    int held_tail_chan;            /* its channel; reads of the same channel fill it up */
    int64_t held_bytes;            /* payload held, plus HELD_FRAME_COST per frame */
    sandbox *sb;          /* cloud_exec */
    unsigned char scratch[PROTO_MAX_CHUNK];
} run_state;

static void pipes_ready(run_state *st, int out_rd, int err_rd)
{
    st->fd[0] = out_rd;
    st->fd[1] = err_rd;
    /* Fresh pipe read ends have no status flag F_SETFL could change but this
     * one (the child's ends stay blocking): no F_GETFL first. */
    fcntl(st->fd[0], F_SETFL, O_NONBLOCK);
    fcntl(st->fd[1], F_SETFL, O_NONBLOCK);
#ifdef SYS_pidfd_open
    st->pidfd = (int)syscall(SYS_pidfd_open, st->pid, 0);
#else
    st->pidfd = -1;
#endif
}

/* cloud_exec: a fresh sandbox (sandbox.h); the credentials are wiped from
 * the job as soon as the child has them (or could not start). */
static int spawn_cloud(run_state *st, char *err, size_t errlen)
{
    job *j = st->j;
    int outp[2] = {-1, -1}, errp[2] = {-1, -1};
    if (pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "cannot create pipes: %s", strerror(errno));
        env_wipe(j);
        for (int i = 0; i < 2; i++) {
            if (outp[i] >= 0)
                close(outp[i]);
            if (errp[i] >= 0)
                close(errp[i]);
        }
        return -1;
    }
    st->sb = sandbox_create(err, errlen);
    pid_t pid = -1;
    if (st->sb)
        pid = sandbox_spawn(st->sb, j->profile, j->argv.v[0], j->argv.v, j->env, j->nenv,
                            outp[1], errp[1], err, errlen);
    env_wipe(j);
    close(outp[1]);
    close(errp[1]);
    if (pid < 0) {
        close(outp[0]);
        close(errp[0]);
        sandbox_destroy(st->sb);
        st->sb = NULL;
        return -1;
    }
    st->pid = pid;
    pipes_ready(st, outp[0], errp[0]);
    return 0;
}

static int spawn_child(run_state *st, char *err, size_t errlen)
{
    job *j = st->j;
    agent_runner *runner = j->runner;
    if (j->kind == MK_CLOUD_EXEC)
        return spawn_cloud(st, err, errlen);
    int outp[2] = {-1, -1}, errp[2] = {-1, -1};
    int rc;

    if (pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0) {
        rc = errno;
        snprintf(err, errlen, "cannot create pipes: %s", strerror(rc));
        goto fail_pipes;
    }
    /* stdin /dev/null, its own process group, every signal at its default
     * and unblocked, nothing else inherited (child_spawn.h) */
    spawn_req req = {
        .path = runner->o.kubectl_path,
        .argv = j->argv.v,
        .envp = runner->env,
        .stdin_fd = runner->devnull,
        .stdout_fd = outp[1],
        .stderr_fd = errp[1],
        .status_fd = runner->proc_status,
    };
    rc = spawn_vfork(&req, &st->pid);
    close(outp[1]);
    close(errp[1]);
    if (rc != 0) {
        snprintf(err, errlen, "cannot run %s: %s", runner->o.kubectl_path, strerror(rc));
        close(outp[0]);
        close(errp[0]);
        return -1;
    }
    pipes_ready(st, outp[0], errp[0]);
    return 0;

fail_pipes:
    for (int i = 0; i < 2; i++) {
        if (outp[i] >= 0)
            close(outp[i]);
        if (errp[i] >= 0)
            close(errp[i]);
    }
    return -1;
}

/* Signals the child's process group, only while the leader is not reaped (so
 * its pid, and with it the group id, cannot have been reused). */
static void signal_group(run_state *st, int sig)
{
    if (st->reaped)
        return;
    if (kill(-st->pid, sig) != 0 && errno != ESRCH)
        log_warn("exec: kill process group %d: %s", (int)st->pid, strerror(errno));
    /* The leader itself too: it may have moved to another process group
     * (setpgid is a plain system call, open to any command), where the
     * group's signal no longer reaches it and a timeout, a cancel or a
     * shutdown would wait for it forever.  Until it is reaped its pid is
     * ours (a zombie keeps it), so signalling it cannot hit another
     * process; the pidfd says so outright. */
    int rc = -1;
#ifdef SYS_pidfd_send_signal
    if (st->pidfd >= 0)
        rc = (int)syscall(SYS_pidfd_send_signal, st->pidfd, sig, NULL, 0);
#endif
    if (rc != 0)
        rc = kill(st->pid, sig);
    if (rc != 0 && errno != ESRCH)
        log_warn("exec: kill %d: %s", (int)st->pid, strerror(errno));
}

/* The leader has exited (still a zombie): kill anything left in its group,
 * then reap it. */
static void check_exit(run_state *st)
{
    if (st->exited)
        return;
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    if (waitid(P_PID, (id_t)st->pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0) {
        if (errno != ECHILD)
            return;
        /* Reaped by someone else (sandbox_reap_orphans leaves the runner's
         * children alone, but a pid it saw before the job recorded it is
         * not): gone, status unknown.  Never signal its pid or group again
         * (they may be another process's by now), and stop waiting for an
         * exit that was already collected. */
        log_warn("exec: process %d was reaped outside its job; its exit status is lost",
                 (int)st->pid);
        st->exited = st->reaped = st->status_lost = 1;
        st->reaped_at = now_ms();
        if (st->sb)
            sandbox_kill_all(st->sb);
        return;
    }
    if (si.si_pid == 0)
        return;
    st->exited = 1;
    signal_group(st, SIGKILL);
    int status = 0;
    while (waitpid(st->pid, &status, 0) < 0 && errno == EINTR)
        ;
    st->status = status;
    st->reaped = 1;
    st->reaped_at = now_ms();
    /* processes that left the group still hold the sandbox uid */
    if (st->sb)
        sandbox_kill_all(st->sb);
}

static void close_fd(run_state *st, int i)
{
    if (st->fd[i] >= 0) {
        close(st->fd[i]);
        st->fd[i] = -1;
    }
}

/* ---- output kept back until exec_end (hold) ---------------------------------- */

/* What a held frame costs beyond its payload (header, headroom, malloc's
 * own), counted against the hold, so that many tiny reads (a command writing
 * a byte at a time, alternating stdout and stderr) cannot keep more memory
 * than the hold says. */
#define HELD_FRAME_COST 64
_Static_assert(AGENT_READ_CHUNK <= PROTO_MAX_CHUNK, "a frame the server accepts");
/* Frames filled by one read of a pipe, at most */
#define READ_FRAMES 4
/* A pipe's size once its command has filled a whole read (the kernel's
 * default is 64 KiB; an unprivileged process may go to pipe-max-size, 1 MiB
 * by default).  Charged to the agent's memory only while bytes sit in it. */
#define PIPE_GROWN_SIZE (256 * 1024)
#define PIPE_DEFAULT_SIZE (64 * 1024)

/* Gives back the unused room of the tail frame: it was allocated for a
 * whole chunk, and no more reads will go into it. */
static void held_seal_tail(run_state *st)
{
    agent_frame *t = st->held_tail;
    if (!t)
        return;
    st->held_tail = *st->held_tail_link = agent_frame_shrink(t);
}

static void held_add(run_state *st, agent_frame *f, ssize_t payload)
{
    held_seal_tail(st);
    f->next = NULL;
    st->held_tail_link = st->held_tail ? &st->held_tail->next : &st->held;
    *st->held_tail_link = f;
    st->held_tail = f;
    st->held_tail_chan = -1;
    st->held_bytes += payload + HELD_FRAME_COST;
}

/* Queues the held frames, then last (exec_end) if given, as one push: the
 * event loop is woken once and finds them all. */
static int held_send(run_state *st, agent_frame *last)
{
    job *j = st->j;
    if (last)
        held_add(st, last, 0);
    held_seal_tail(st);
    agent_frame *chain = st->held;
    st->held = st->held_tail = NULL;
    st->held_tail_link = NULL;
    st->held_bytes = 0;
    return chain ? agent_outq_push_chain(j->runner->o.outq, chain, j->gen) : 0;
}

static void held_free(run_state *st)
{
    while (st->held) {
        agent_frame *n = st->held->next;
        agent_frame_free(st->held);
        st->held = n;
    }
    st->held_tail = NULL;
    st->held_tail_link = NULL;
    st->held_bytes = 0;
}

/* One read of pipe i (at most n bytes) into the held output: into the room
 * left in the tail frame when it is of the same channel, else into a new
 * chunk-sized frame.  Returns the bytes read, or read's result. */
static ssize_t read_held(run_state *st, int i, int64_t n)
{
    int chan = i == 0 ? PROTO_CHAN_STDOUT : PROTO_CHAN_STDERR;
    agent_frame *t = st->held_tail;
    if (t && st->held_tail_chan == chan && t->len < PROTO_DATA_HDR + AGENT_READ_CHUNK) {
        size_t spare = PROTO_DATA_HDR + AGENT_READ_CHUNK - t->len;
        if ((int64_t)spare < n)
            n = (int64_t)spare;
        ssize_t r = read(st->fd[i], agent_frame_data(t) + t->len, (size_t)n);
        if (r > 0) {
            t->len += (size_t)r;
            st->held_bytes += r;
        }
        return r;
    }
    agent_frame *f = agent_frame_new(1, PROTO_DATA_HDR + AGENT_READ_CHUNK);
    if (!f) {
        log_error("exec id=%u: out of memory", st->j->id);
        errno = EAGAIN; /* try again on the next pass */
        return -1;
    }
    unsigned char *d = agent_frame_data(f);
    ssize_t r = read(st->fd[i], d + PROTO_DATA_HDR, (size_t)n);
    if (r <= 0) {
        int e = errno;
        agent_frame_free(f);
        errno = e;
        return r;
    }
    proto_data_header(d, chan, st->j->id);
    f->len = PROTO_DATA_HDR + (size_t)r;
    held_add(st, f, r);
    st->held_tail_chan = chan;
    return r;
}

/* What one read of a pipe may take: cap, and never more than the window
 * or what is left below the output limit. */
static int64_t read_budget(int64_t cap, int64_t window, int64_t room_limit)
{
    int64_t n = cap < window ? cap : window;
    return n < room_limit ? n : room_limit;
}

/* One read from pipe i.  forward: within window/limit, else the bytes are dropped. */
static void read_pipe(run_state *st, int i, int forward, int64_t window)
{
    job *j = st->j;
    agent_runner *runner = j->runner;
    int64_t room_limit = j->limit - st->sent;
    if (forward && room_limit <= 0)
        forward = 0;
    if (!forward) {
        ssize_t r = read(st->fd[i], st->scratch, sizeof(st->scratch));
        if (r > 0) {
            st->truncated = 1;
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
            close_fd(st, i);
        }
        return;
    }
    if (j->command_id) { /* legacy: collect */
        size_t n = sizeof(st->scratch);
        if ((int64_t)n > room_limit)
            n = (size_t)room_limit;
        ssize_t r = read(st->fd[i], st->scratch, n);
        if (r > 0) {
            if (buf_append(&st->cap[i], st->scratch, (size_t)r) != 0) {
                st->truncated = 1;
            } else {
                st->sent += r;
                metrics_bytes(i + 1, r);
            }
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
            close_fd(st, i);
        }
        return;
    }
    if (j->hold > 0) {
        ssize_t r = read_held(st, i, read_budget(AGENT_READ_CHUNK, window, room_limit));
        if (r <= 0) {
            if (r == 0 || (errno != EAGAIN && errno != EINTR))
                close_fd(st, i);
            return;
        }
        pthread_mutex_lock(&runner->mu);
        j->window -= r;
        int64_t window_left = j->window;
        pthread_mutex_unlock(&runner->mu);
        st->sent += r;
        metrics_bytes(i + 1, r);
        /* Past the hold, or out of window (credit only comes back for output
         * the server has): send what is held now. */
        if (st->held_bytes >= j->hold || window_left <= 0)
            held_send(st, NULL);
        return;
    }
    /* Up to READ_FRAMES frames' worth in one readv, queued with one push: a
     * command writing fast costs a fraction of the reads, polls and
     * event-loop wake-ups.  Never more than the window and the limit allow. */
    agent_frame *fr[READ_FRAMES] = { NULL };
    struct iovec iov[READ_FRAMES];
    int nf = 0;
    int64_t total = read_budget((int64_t)READ_FRAMES * AGENT_READ_CHUNK, window, room_limit);
    int64_t want = 0;
    while (nf < READ_FRAMES && want < total) {
        size_t len = total - want < AGENT_READ_CHUNK ? (size_t)(total - want) : AGENT_READ_CHUNK;
        agent_frame *f = agent_frame_new(1, PROTO_DATA_HDR + len);
        if (!f)
            break;
        fr[nf] = f;
        iov[nf].iov_base = agent_frame_data(f) + PROTO_DATA_HDR;
        iov[nf].iov_len = len;
        want += (int64_t)len;
        nf++;
    }
    if (!nf) {
        log_error("exec id=%u: out of memory", j->id);
        return;
    }
    ssize_t r = readv(st->fd[i], iov, nf);
    if (r <= 0) {
        for (int k = 0; k < nf; k++)
            agent_frame_free(fr[k]);
        if (r == 0 || (errno != EAGAIN && errno != EINTR))
            close_fd(st, i);
        return;
    }
    if (r >= PIPE_DEFAULT_SIZE && !st->pipe_grown[i]) {
        /* The pipe was full: the command writes faster than a pass takes.  A
         * bigger pipe lets it run ahead instead of waiting on every 64 KiB. */
        st->pipe_grown[i] = 1;
        (void)fcntl(st->fd[i], F_SETPIPE_SZ, PIPE_GROWN_SIZE);
    }
    int chan = i == 0 ? PROTO_CHAN_STDOUT : PROTO_CHAN_STDERR;
    size_t left = (size_t)r;
    agent_frame *first = NULL, **link = &first;
    for (int k = 0; k < nf; k++) {
        if (!left) {
            agent_frame_free(fr[k]);
            continue;
        }
        size_t got = left < iov[k].iov_len ? left : iov[k].iov_len;
        left -= got;
        proto_data_header(agent_frame_data(fr[k]), chan, j->id);
        fr[k]->len = PROTO_DATA_HDR + got;
        *link = fr[k];
        link = &fr[k]->next;
    }
    pthread_mutex_lock(&runner->mu);
    j->window -= r;
    pthread_mutex_unlock(&runner->mu);
    st->sent += r;
    metrics_bytes(i + 1, r);
    agent_outq_push_chain(runner->o.outq, first, j->gen);
}

/* For the log: the first argument when it is a plain word (flags and their
 * values stay out of the log: they could carry credentials). */
static const char *verb_of(const job *j)
{
    const char *v = j->argv.c > 1 ? j->argv.v[1] : "";
    if (*v == '-')
        return "(flags first)";
    for (const char *c = v; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
            return "(unusual)";
    return strlen(v) > 40 ? "(long)" : v;
}

/* try_push's hook, under the queue's lock: the job's slot goes with its
 * response (push_when_room). */
static void free_slot(void *arg)
{
    job *j = arg;
    pthread_mutex_lock(&j->runner->mu);
    j->slot_free = 1;
    pthread_mutex_unlock(&j->runner->mu);
}

/* Legacy: the whole response goes onto the data lane only while the lane
 * has room (agent_outq_try_push: one response past the cap at most), as a
 * v2 command's output does.  Its job keeps its concurrency slot until then,
 * so a server that does not read its answers has at most max_concurrent of
 * them waiting here; the requests beyond are refused busy, and those
 * refusals backlog the queue, which stops the tunnel reading more (outq.h).
 * The slot is freed as the response is queued (before the writer can take
 * it): the server's next command, sent on this response, never finds it
 * still taken.  Waits for room or for the connection to go (REQ_DROP: the
 * frame is discarded); a cancel or the timeout no longer applies, the
 * command has ended.  Takes f; 0 if queued, -1 if not. */
static int push_when_room(job *j, agent_frame *f)
{
    agent_runner *runner = j->runner;
    for (;;) {
        int r = agent_outq_try_push(runner->o.outq, f, j->gen, free_slot, j);
        if (r != AGENT_OUTQ_FULL)
            return r;
        pthread_mutex_lock(&runner->mu);
        int dropped = j->request == REQ_DROP;
        j->waiting_room = !dropped;
        pthread_mutex_unlock(&runner->mu);
        if (dropped) {
            agent_frame_free(f);
            return -1;
        }
        /* room that came before the flag was set woke nobody: look again */
        if (agent_outq_has_room(runner->o.outq)) {
            pthread_mutex_lock(&runner->mu);
            j->waiting_room = 0;
            pthread_mutex_unlock(&runner->mu);
            continue;
        }
        struct pollfd p = {.fd = j->efd, .events = POLLIN};
        if (poll(&p, 1, -1) > 0) {
            uint64_t v;
            ssize_t n = read(j->efd, &v, sizeof(v));
            (void)n;
        }
    }
}

static void deliver(run_state *st, int end, int spawn_failed, const char *spawn_err,
                    int64_t duration)
{
    job *j = st->j;
    agent_runner *runner = j->runner;
    int rc;
    const char *code = NULL;
    char msg[512];
    msg[0] = '\0';

    /* The child is gone: free the concurrency slot before exec_end goes out,
     * or the server's next command (sent on exec_end) could find us busy.
     * A legacy response may have to wait for room: push_when_room frees its
     * slot as it is queued. */
    if (!j->command_id) {
        pthread_mutex_lock(&runner->mu);
        j->slot_free = 1;
        pthread_mutex_unlock(&runner->mu);
    }

    if (spawn_failed) {
        rc = 127;
        code = EC_SPAWN_FAILED;
        snprintf(msg, sizeof(msg), "%s", spawn_err);
    } else if (end == END_TIMEOUT) {
        rc = 124;
        code = EC_TIMEOUT;
        snprintf(msg, sizeof(msg), "command timed out after %ds", j->timeout_s);
    } else if (end == END_CANCEL) {
        rc = 130;
        code = EC_CANCELLED;
        snprintf(msg, sizeof(msg), "command cancelled");
    } else if (end == END_SHUTDOWN) {
        rc = 130;
        code = EC_CANCELLED;
        snprintf(msg, sizeof(msg), "command cancelled: agent shutting down");
    } else {
        if (st->status_lost) {
            rc = 1;
            snprintf(msg, sizeof(msg), "the command's exit status was lost (its process was "
                                       "reaped outside the agent's job)");
        } else if (WIFEXITED(st->status))
            rc = WEXITSTATUS(st->status);
        else if (WIFSIGNALED(st->status))
            rc = 128 + WTERMSIG(st->status);
        else
            rc = 1;
        if (st->truncated) {
            code = EC_OUTPUT_LIMIT;
            snprintf(msg, sizeof(msg), "output exceeded %lld bytes and was truncated",
                     (long long)j->limit);
        }
    }

    metrics_command((metrics_kind)j->kind,
                    end == END_DROP ? MR_DROPPED : metrics_result_of(code, rc),
                    spawn_failed ? -1 : duration);
    if (end == END_DROP) {
        /* a legacy command has no numeric id (j->id is 0): it goes by the
         * server's command_id, as on its `started` line */
        if (j->command_id)
            log_info("command %s dropped with its connection (return_code=%d)", j->shown_id, rc);
        else
            log_info("exec id=%u dropped with its connection (return_code=%d)", j->id, rc);
        return;
    }
    if (j->command_id) {
        /* legacy: one command_response with the output, encoded straight
         * into its frame and never over AGENT_LEGACY_MAX_RESPONSE */
        const char *errtext = msg;
        size_t errlen = strlen(msg);
        if (!code || !strcmp(code, EC_OUTPUT_LIMIT)) {
            errtext = buf_head(&st->cap[1]);
            errlen = buf_pending(&st->cap[1]);
        } else if (end == END_TIMEOUT) {
            snprintf(msg, sizeof(msg), "Command timed out after %d seconds", j->timeout_s);
            errlen = strlen(msg);
        }
        /* truncated output alone does not make a legacy command fail */
        int success = (!code || !strcmp(code, EC_OUTPUT_LIMIT)) && rc == 0;
        const char *out = buf_head(&st->cap[0]);
        size_t outlen = buf_pending(&st->cap[0]);
        /* The cut is said in the error: the response's own bound, or else
         * the output limit (force: the output is whole, yet not all). */
        char note[160];
        snprintf(note, sizeof(note),
                 "output truncated: a response to a legacy server holds at most %lld bytes",
                 (long long)AGENT_LEGACY_MAX_RESPONSE);
        int cut = 0, force = 0;
        size_t cap = (size_t)AGENT_LEGACY_MAX_RESPONSE;
        size_t len = proto_command_response_into(NULL, cap, j->command_id, success, out, outlen,
                                                  errtext, errlen, note, 0, rc, &cut);
        if (!cut && st->truncated) {
            snprintf(note, sizeof(note), "output exceeded %lld bytes and was truncated",
                     (long long)j->limit);
            force = 1;
            len = proto_command_response_into(NULL, cap, j->command_id, success, out, outlen,
                                              errtext, errlen, note, force, rc, NULL);
        }
        agent_frame *f = len ? agent_frame_new(0, len) : NULL;
        if (f)
            proto_command_response_into((char *)agent_frame_data(f), cap, j->command_id, success,
                                        out, outlen, errtext, errlen, note, force, rc, NULL);
        if (cut)
            log_warn("command %s: output cut to fit one %lld-byte legacy response", j->shown_id,
                     (long long)AGENT_LEGACY_MAX_RESPONSE);
        /* the response is all that is kept while it waits for room */
        buf_free(&st->cap[0]);
        buf_free(&st->cap[1]);
        if (!f || push_when_room(j, f) != 0)
            log_warn("command %s: response not delivered (connection gone)", j->shown_id);
        log_info("command %s ended return_code=%d%s%s bytes=%lld duration_ms=%lld",
                 j->shown_id, rc, code ? " error_code=" : "", code ? code : "",
                 (long long)st->sent, (long long)duration);
        return;
    }
    char *json = proto_enc_exec_end(j->id, rc, msg[0] ? msg : NULL, code, st->truncated,
                                    duration, st->sent);
    agent_frame *endf = json ? agent_frame_text(json) : NULL;
    if (!endf) /* the held output still goes, and the server learns of the loss */
        held_send(st, NULL);
    if (!endf || held_send(st, endf) != 0)
        log_warn("exec id=%u: exec_end not delivered (connection gone)", j->id);
    free(json);
    log_info("exec id=%u ended return_code=%d%s%s truncated=%d bytes_out=%lld duration_ms=%lld",
             j->id, rc, code ? " error_code=" : "", code ? code : "", st->truncated,
             (long long)st->sent, (long long)duration);
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static void job_main(job *j)
{
    agent_runner *runner = j->runner;
    run_state *st = calloc(1, sizeof(*st));
    int64_t t0 = now_ms();
    char err[300];
    int end = END_NONE;

    if (!st) {
        log_error("exec: out of memory");
        goto finish_nostate;
    }
    st->j = j;
    st->fd[0] = st->fd[1] = st->pidfd = -1;
    buf_init(&st->cap[0]);
    buf_init(&st->cap[1]);

    if (spawn_child(st, err, sizeof(err)) != 0) {
        if (j->command_id)
            log_warn("command %s: %s", j->shown_id, err);
        else
            log_warn("exec id=%u: %s", j->id, err);
        pthread_mutex_lock(&runner->mu);
        if (j->request == REQ_DROP)
            end = END_DROP;
        pthread_mutex_unlock(&runner->mu);
        deliver(st, end, 1, err, now_ms() - t0);
        goto finish;
    }
    pthread_mutex_lock(&runner->mu);
    j->child = st->pid;
    pthread_mutex_unlock(&runner->mu);
    if (j->command_id)
        log_info("command %s started pid=%d verb=%s timeout=%ds", j->shown_id, (int)st->pid,
                 verb_of(j), j->timeout_s);
    else if (st->sb)
        log_info("exec id=%u started cloud_exec program=%s pid=%d uid=%u verb=%s argc=%d "
                 "timeout=%ds limit=%lld",
                 j->id, strrchr(j->argv.v[0], '/') ? strrchr(j->argv.v[0], '/') + 1 : j->argv.v[0],
                 (int)st->pid, (unsigned)sandbox_uid(st->sb), verb_of(j), j->argv.c - 1,
                 j->timeout_s, (long long)j->limit);
    else
        log_info("exec id=%u started pid=%d verb=%s argc=%d timeout=%ds limit=%lld", j->id,
                 (int)st->pid, verb_of(j), j->argv.c - 1, j->timeout_s, (long long)j->limit);

    char label[160];
    if (j->command_id)
        snprintf(label, sizeof(label), "command %s", j->shown_id);
    else
        snprintf(label, sizeof(label), "exec id=%u", j->id);
    int64_t deadline = t0 + j->timeout_ms;
    int64_t term_at = 0;
    int killed = 0;
    /* Since when the pipes, while watched, have been silent (see the escape
     * grace below). */
    int64_t quiet_since = t0;
    for (;;) {
        int64_t now = now_ms();
        pthread_mutex_lock(&runner->mu);
        int req = j->request;
        int64_t window = j->window;
        pthread_mutex_unlock(&runner->mu);

        if (end == END_NONE && req != REQ_NONE)
            end = req == REQ_CANCEL ? END_CANCEL : req == REQ_SHUTDOWN ? END_SHUTDOWN : END_DROP;
        else if (end != END_DROP && req == REQ_DROP)
            end = END_DROP; /* connection gone: deliver nothing, whatever came first */
        if (end == END_NONE && now >= deadline)
            end = END_TIMEOUT;
        if (end != END_NONE && !term_at) {
            term_at = now;
            if (!st->reaped)
                log_info("%s: %s, terminating process group %d", label,
                         end == END_TIMEOUT  ? "timed out"
                         : end == END_DROP ? "connection lost"
                                           : "cancelled",
                         (int)st->pid);
            signal_group(st, SIGTERM);
        }
        if (term_at && !killed && now >= term_at + KILL_GRACE_MS) {
            signal_group(st, SIGKILL);
            /* with a uid of its own, whatever left the group dies too */
            if (st->sb)
                sandbox_kill_all(st->sb);
            killed = 1;
        }
        /* With a pidfd the exit is learnt from poll below; without one,
         * waitid is asked every pass (the poll is then bounded). */
        if (!st->reaped && st->pidfd < 0)
            check_exit(st);
        if (st->reaped && st->fd[0] < 0 && st->fd[1] < 0)
            break;
        if (st->reaped && term_at && now >= term_at + KILL_GRACE_MS + ESCAPE_GRACE_MS)
            break; /* a process outside the group holds the pipes */
        if (st->reaped && !term_at && now >= st->reaped_at + ESCAPE_GRACE_MS &&
            now >= quiet_since + ESCAPE_GRACE_MS) {
            /* The command has exited (its group was killed with it), yet its
             * pipes stay open and silent: a process that left the group
             * (setsid) holds them.  Its output is the command's no longer;
             * report the command's own exit rather than wait for the
             * deadline and call it a timeout. */
            log_warn("%s: exited, but a process outside its group keeps its output open; "
                     "no longer reading it",
                     label);
            break;
        }

        /* May we read the pipes, and will the bytes be forwarded? */
        int legacy = j->command_id != NULL;
        int over = st->sent >= j->limit;
        int forward = 0, readable = 0;
        if (end == END_DROP || over) {
            readable = 1; /* drain and drop */
        } else if (legacy || window > 0) {
            /* legacy too: its response waits for room (push_when_room),
             * so while there is none the child waits on its pipe rather
             * than its output in here */
            int room = agent_outq_has_room(runner->o.outq);
            if (!room) {
                pthread_mutex_lock(&runner->mu);
                j->waiting_room = 1;
                pthread_mutex_unlock(&runner->mu);
                room = agent_outq_has_room(runner->o.outq);
                if (room) {
                    pthread_mutex_lock(&runner->mu);
                    j->waiting_room = 0;
                    pthread_mutex_unlock(&runner->mu);
                }
            }
            readable = forward = room;
        }
        if (!readable && end != END_NONE && (killed || st->reaped))
            readable = 1; /* ending and no window: drop the rest rather than wait */

        struct pollfd pfd[4];
        int np = 0, ip_efd, ip_pid = -1, ip_fd[2] = {-1, -1};
        pfd[np].fd = j->efd;
        pfd[np].events = POLLIN;
        ip_efd = np++;
        if (!st->exited && st->pidfd >= 0) {
            pfd[np].fd = st->pidfd;
            pfd[np].events = POLLIN;
            ip_pid = np++;
        }
        if (readable) {
            for (int i = 0; i < 2; i++) {
                if (st->fd[i] >= 0) {
                    pfd[np].fd = st->fd[i];
                    pfd[np].events = POLLIN;
                    ip_fd[i] = np++;
                }
            }
        }
        int64_t wait = -1;
        if (end == END_NONE)
            wait = deadline - now;
        if (term_at && !killed)
            wait = wait < 0 ? term_at + KILL_GRACE_MS - now
                            : min64(wait, term_at + KILL_GRACE_MS - now);
        if (term_at && st->reaped) {
            int64_t w = term_at + KILL_GRACE_MS + ESCAPE_GRACE_MS - now;
            wait = wait < 0 ? w : min64(wait, w);
        }
        if (!term_at && st->reaped && readable) {
            int64_t from = st->reaped_at > quiet_since ? st->reaped_at : quiet_since;
            int64_t w = from + ESCAPE_GRACE_MS - now;
            wait = wait < 0 ? w : min64(wait, w);
        }
        if (!st->exited && st->pidfd < 0)
            wait = wait < 0 ? NOPIDFD_POLL_MS : min64(wait, NOPIDFD_POLL_MS);
        if (wait < 0 && wait != -1)
            wait = 0;
        if (wait > 60000)
            wait = 60000;
        int pr = poll(pfd, (nfds_t)np, (int)wait);
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            log_error("exec: poll: %s", strerror(errno));
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (pfd[ip_efd].revents) {
            uint64_t v;
            ssize_t r = read(j->efd, &v, sizeof(v));
            (void)r;
        }
        if (ip_pid >= 0 && pfd[ip_pid].revents)
            check_exit(st);
        /* Silent only while watched: a pass that did not poll the pipes
         * (no window, no room) waits on the server, not on the command. */
        if (!readable || (ip_fd[0] >= 0 && pfd[ip_fd[0]].revents) ||
            (ip_fd[1] >= 0 && pfd[ip_fd[1]].revents))
            quiet_since = now_ms();
        for (int i = 0; i < 2; i++) {
            if (ip_fd[i] >= 0 && st->fd[i] >= 0 && pfd[ip_fd[i]].revents) {
                int64_t w = window;
                if (forward && !legacy) {
                    pthread_mutex_lock(&runner->mu);
                    w = j->window;
                    pthread_mutex_unlock(&runner->mu);
                    if (w <= 0)
                        continue;
                }
                read_pipe(st, i, forward && end != END_DROP, w);
            }
        }
    }
    if (!st->reaped) {
        /* only reachable if the loop broke early: make sure nothing is left */
        signal_group(st, SIGKILL);
        while (waitpid(st->pid, &st->status, 0) < 0 && errno == EINTR)
            ;
        st->reaped = 1;
    }
    if (st->sb) {
        /* before exec_end: when the caller has the result, nothing of the
         * command is left (processes, HOME, TMPDIR, its uid) */
        sandbox_destroy(st->sb);
        st->sb = NULL;
    }
    pthread_mutex_lock(&runner->mu);
    if (j->request == REQ_DROP)
        end = END_DROP;
    pthread_mutex_unlock(&runner->mu);
    deliver(st, end, 0, NULL, now_ms() - t0);

finish:
    held_free(st); /* dropped with the connection, or never sent */
    close_fd(st, 0);
    close_fd(st, 1);
    if (st->pidfd >= 0)
        close(st->pidfd);
    buf_free(&st->cap[0]);
    buf_free(&st->cap[1]);
    free(st);
finish_nostate:
    metrics_in_flight(-1);
    pthread_mutex_lock(&runner->mu);
    j->child = 0; /* reaped (or never started): an orphan like any other from here */
    j->done = 1;  /* from here on j is the event loop's to free */
    j->efd = -1; /* the thread's: no wake-up may reach it for j any more */
    /* The loop frees finished jobs whenever it passes (agent_runner_reap):
     * on the wake-up of the next frames, or its tick.  Waking it just for
     * that cost an eventfd write and a loop pass per command; only a
     * shutdown, which waits for the last command to end, is told at once. */
    int wake = runner->shutting_down;
    pthread_cond_broadcast(&runner->changed);
    pthread_mutex_unlock(&runner->mu);
    if (wake && runner->o.notify)
        runner->o.notify(runner->o.notify_arg);
}

/* What a new pool thread starts with: its runner and its eventfd. */
typedef struct {
    agent_runner *runner;
    int efd;
} pool_thread_arg;

/* A pool thread: runs queued jobs one after the other; exits when the pool
 * stops, or after pool_idle_ms without work. */
static void *pool_main(void *arg)
{
    pool_thread_arg *pa = arg;
    agent_runner *runner = pa->runner;
    /* One eventfd per thread, lent to each job it runs: not one created and
     * closed on the event loop per command.  A wake-up left over from the
     * thread's previous job costs the next one an extra pass, nothing more. */
    int efd = pa->efd;
    free(pa);
    pthread_mutex_lock(&runner->mu);
    for (;;) {
        job *j = runner->queue;
        if (j) {
            runner->queue = j->qnext;
            if (!runner->queue)
                runner->queue_tail = NULL;
            runner->queued--;
            j->efd = efd;
            pthread_mutex_unlock(&runner->mu);
            job_main(j);
            pthread_mutex_lock(&runner->mu);
            continue;
        }
        if (runner->pool_stopping)
            break;
        int idle_ms = runner->o.pool_idle_ms > 0 ? runner->o.pool_idle_ms : POOL_IDLE_MS_DEFAULT;
        struct timespec until = clock_after_ms(CLOCK_MONOTONIC, idle_ms);
        runner->pool_idle++;
        int rc = pthread_cond_timedwait(&runner->pool_cv, &runner->mu, &until);
        runner->pool_idle--;
        if (rc == ETIMEDOUT && !runner->queue)
            break;
    }
    /* Closed before the count drops: whoever waits for the pool to shrink
     * (a test counting open descriptors) sees the thread's fd gone too.  No
     * job refers to it any more (j->efd is reset when a job ends). */
    close(efd);
    runner->pool_threads--;
    pthread_cond_broadcast(&runner->changed);
    pthread_mutex_unlock(&runner->mu);
    return NULL;
}

/* Hands j to an idle pool thread, or to a new one.  runner->mu held. */
static int pool_submit_locked(agent_runner *runner, job *j)
{
    if (runner->queued + 1 > runner->pool_idle) {
        /* A small stack: glibc keeps finished threads' stacks for reuse up
         * to 40 MiB in all, so 8 MiB default stacks were unmapped and
         * mapped again per command once a few ran at once.  The job
         * thread's deepest path (sandbox set-up, logging) needs a few tens
         * of KiB. */
        pthread_attr_t ta;
        pthread_t id;
        pool_thread_arg *pa = malloc(sizeof(*pa));
        if (!pa)
            return -1;
        pa->runner = runner;
        pa->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (pa->efd < 0 || pthread_attr_init(&ta) != 0) {
            if (pa->efd >= 0)
                close(pa->efd);
            free(pa);
            return -1;
        }
        pthread_attr_setstacksize(&ta, JOB_STACK_BYTES);
        pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&id, &ta, pool_main, pa);
        pthread_attr_destroy(&ta);
        if (rc != 0) {
            close(pa->efd);
            free(pa);
            return -1; /* the busy threads may run for an hour: fail it now */
        }
        runner->pool_threads++;
    } else {
        pthread_cond_signal(&runner->pool_cv);
    }
    j->qnext = NULL;
    if (runner->queue_tail)
        runner->queue_tail->qnext = j;
    else
        runner->queue = j;
    runner->queue_tail = j;
    runner->queued++;
    return 0;
}

/* ---- starting jobs --------------------------------------------------------- */

static agent_run_result start_job(agent_runner *runner, uint64_t gen, uint32_t id,
                                  const char *command_id, int kind, const char *program,
                                  const sandbox_profile *profile,
                                  argv_t *argv, char *const *env, int nenv, double timeout,
                                  int64_t max_output, int64_t window, int64_t hold)
{
    pthread_mutex_lock(&runner->mu);
    if (runner->shutting_down) {
        pthread_mutex_unlock(&runner->mu);
        return RUN_SHUTTING_DOWN;
    }
    int running = 0;
    for (job *j = runner->jobs; j; j = j->next) {
        if (j->done || j->gen != gen)
            continue;
        if (!j->slot_free)
            running++;
        if (!command_id && !j->command_id && j->id == id) {
            pthread_mutex_unlock(&runner->mu);
            return RUN_DUPLICATE;
        }
    }
    if (running >= runner->o.max_concurrent) {
        pthread_mutex_unlock(&runner->mu);
        return RUN_BUSY;
    }
    job *j = calloc(1, sizeof(*j));
    if (!j)
        goto fail;
    j->runner = runner;
    j->efd = -1; /* until a pool thread takes it */
    if (command_id && !(j->command_id = strdup(command_id)))
        goto fail;
    if (command_id)
        agent_peer_text(j->shown_id, sizeof(j->shown_id), command_id);
    j->kind = kind;
    j->profile = profile;
    if (nenv > 0) {
        j->env = calloc((size_t)nenv + 1, sizeof(char *));
        if (!j->env)
            goto fail;
        for (int i = 0; i < nenv; i++) {
            if (!(j->env[i] = strdup(env[i])))
                goto fail;
            j->nenv = i + 1;
        }
    }
    if (argv_prepend(argv, program) != 0)
        goto fail;
    j->argv = *argv;
    memset(argv, 0, sizeof(*argv));
    j->gen = gen;
    j->id = id;
    int tmax = runner->o.timeout_max;
    if (!(timeout > 0) || timeout > tmax)
        timeout = tmax;
    j->timeout_ms = (int64_t)(timeout * 1000.0);
    if (j->timeout_ms < 1)
        j->timeout_ms = 1;
    j->timeout_s = (int)(timeout + 0.5);
    if (j->timeout_s < 1)
        j->timeout_s = 1;
    j->limit = runner->o.max_output;
    if (max_output > 0 && max_output < j->limit)
        j->limit = max_output;
    if (command_id && j->limit > AGENT_LEGACY_MAX_RESPONSE)
        j->limit = AGENT_LEGACY_MAX_RESPONSE; /* more could never be sent */
    j->window = window;
    j->hold = hold > AGENT_HOLD_MAX ? AGENT_HOLD_MAX : hold;
    if (pool_submit_locked(runner, j) != 0) {
        /* give argv back so the caller still owns it */
        *argv = j->argv;
        memset(&j->argv, 0, sizeof(j->argv));
        argv_strip_leading(argv, program);
        goto fail;
    }
    j->next = runner->jobs;
    runner->jobs = j;
    metrics_in_flight(1);
    pthread_mutex_unlock(&runner->mu);
    return RUN_STARTED;
fail:
    pthread_mutex_unlock(&runner->mu);
    if (j)
        job_free(j);
    log_error("exec: cannot start job: %s", strerror(errno ? errno : ENOMEM));
    return RUN_FAILED;
}

agent_run_result agent_runner_exec(agent_runner *runner, uint64_t gen, uint32_t id, argv_t *argv,
                                   double timeout, int64_t max_output, int64_t window,
                                   int64_t hold)
{
    return start_job(runner, gen, id, NULL, MK_KUBECTL, runner->o.kubectl_path, NULL, argv, NULL,
                     0, timeout, max_output, window, hold);
}

agent_run_result agent_runner_exec_cloud(agent_runner *runner, uint64_t gen, uint32_t id,
                                         const char *path, const sandbox_profile *profile,
                                         argv_t *argv, char *const *env, int nenv, double timeout,
                                         int64_t max_output, int64_t window, int64_t hold)
{
    if (!path || path[0] != '/' || nenv < 0 || (nenv && !env))
        return RUN_FAILED;
    return start_job(runner, gen, id, NULL, MK_CLOUD_EXEC, path, profile, argv, env, nenv, timeout,
                     max_output, window, hold);
}

agent_run_result agent_runner_legacy(agent_runner *runner, uint64_t gen,
                                     const char *command_id, argv_t *argv, double timeout)
{
    return start_job(runner, gen, 0, command_id, MK_KUBECTL, runner->o.kubectl_path, NULL, argv,
                     NULL, 0, timeout, 0, 0, 0);
}
