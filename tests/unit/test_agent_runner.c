/* test_agent_runner.c — the agent's command runner (agent/runner.c) on its
 * own, with real short commands (/bin/echo, /bin/sh) standing in for
 * kubectl and a test sink draining its outgoing queue (agent/outq.c) the way
 * the tunnel's WRITEABLE callback does: output frames, exec_end and legacy
 * command_response are decoded and checked.  Covered: exit codes, stdout vs
 * stderr, the per-request credit window, the output cap, the timeout (rc 124,
 * the whole process group killed), cancel, the concurrency slots, duplicate
 * ids, dropped connections, shutdown, spawn failures, the child's
 * environment, two runners side by side, teardown with jobs running, and
 * output held back until exec_end ("hold_output"), seen through a sink that
 * drains the queue inside each push, so that what one push queued is one
 * batch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "argv.h"
#include "log.h"
#include "metrics.h"
#include "outq.h"
#include "proto.h"
#include "runner.h"

#define WAIT_MS 20000 /* generous: the machine may be loaded */
#define MAX_IDS 16
#define MAX_SEEN 64

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What the sink saw for one request id. */
typedef struct {
    char out[8192], err[8192];
    size_t outlen, errlen;
    int64_t window;       /* credit left as the sink accounts it; never below 0 */
    int ended;
    int rc, truncated;
    int64_t bytes_out;
    char code[64], error[256];
    int first_data_batch, end_batch; /* drain-on-push sinks: which push brought them */
    int data_frames;
    /* bulk: stdout is counted and checked to be all 'x', not kept (it may be
     * larger than out) */
    int bulk;
    int64_t bulk_bytes;
    size_t max_payload;
    int last_batch, batch_frames, max_batch_frames; /* data frames per push */
} req;

typedef struct {
    agent_frame *f;
    int batch;
} seen_frame;

/* A runner with its queue and the sink that drains it. */
typedef struct {
    agent_outq *q;
    agent_runner *r;
    uint64_t gen;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int events;           /* pushes + job ends, to wait on */
    req reqs[MAX_IDS];    /* by id (1..MAX_IDS-1) */
    int legacy_done;      /* legacy command_response */
    int legacy_success, legacy_rc;
    char legacy_id[64], legacy_out[8192], legacy_err[1024];
    int foreign;          /* frames for an id nobody asked about */
    /* drain-on-push sinks: frames taken inside the push that queued them */
    seen_frame seen[MAX_SEEN];
    int nseen, batches, seen_overflow;
    int cur_batch;        /* batch of the frame being absorbed; 0: popped later */
    int drain_on_push;    /* frames are taken by on_push_drain only */
} fixture;

static void on_event(void *arg)
{
    fixture *fx = arg;
    pthread_mutex_lock(&fx->mu);
    fx->events++;
    pthread_cond_broadcast(&fx->cv);
    pthread_mutex_unlock(&fx->mu);
}

/* on_push of a drain-on-push sink: runs in the pushing thread, so the frames
 * it takes are exactly those of one push (or of pushes into a queue that was
 * not empty, which then join the same batch). */
static void on_push_drain(void *arg)
{
    fixture *fx = arg;
    pthread_mutex_lock(&fx->mu);
    int b = ++fx->batches;
    agent_frame *f;
    while ((f = agent_outq_pop(fx->q))) {
        if (fx->nseen < MAX_SEEN) {
            fx->seen[fx->nseen].f = f;
            fx->seen[fx->nseen].batch = b;
            fx->nseen++;
        } else {
            fx->seen_overflow = 1;
            agent_frame_free(f);
        }
    }
    fx->events++;
    pthread_cond_broadcast(&fx->cv);
    pthread_mutex_unlock(&fx->mu);
}

static void on_room(void *arg)
{
    fixture *fx = arg;
    if (fx->r)
        agent_runner_wake_room(fx->r);
}

static fixture *fixture_new_sink(const char *program, int max_concurrent, int64_t max_output,
                                 size_t outq_cap, int pool_idle_ms, int drain_on_push)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    pthread_mutex_init(&fx->mu, NULL);
    pthread_cond_init(&fx->cv, NULL);
    agent_outq_opts qo = {.cap = outq_cap,
                          .on_push = drain_on_push ? on_push_drain : on_event,
                          .on_push_arg = fx,
                          .on_room = on_room,
                          .on_room_arg = fx};
    fx->q = agent_outq_new(&qo);
    assert_non_null(fx->q);
    fx->drain_on_push = drain_on_push;
    agent_runner_opts ro = {.kubectl_path = program,
                            .max_concurrent = max_concurrent,
                            .timeout_max = 30,
                            .max_output = max_output,
                            .outq = fx->q,
                            .notify = on_event,
                            .notify_arg = fx,
                            .pool_idle_ms = pool_idle_ms};
    fx->r = agent_runner_new(&ro);
    assert_non_null(fx->r);
    fx->gen = 1;
    agent_outq_reset(fx->q, fx->gen);
    return fx;
}

static fixture *fixture_new_idle(const char *program, int max_concurrent, int64_t max_output,
                                 size_t outq_cap, int pool_idle_ms)
{
    return fixture_new_sink(program, max_concurrent, max_output, outq_cap, pool_idle_ms, 0);
}

static fixture *fixture_new(const char *program, int max_concurrent, int64_t max_output,
                            size_t outq_cap)
{
    return fixture_new_idle(program, max_concurrent, max_output, outq_cap, 0);
}

static void fixture_free(fixture *fx)
{
    agent_runner_free(fx->r);
    fx->r = NULL;
    for (int i = 0; i < fx->nseen; i++)
        agent_frame_free(fx->seen[i].f);
    assert_false(fx->seen_overflow);
    agent_outq_free(fx->q);
    pthread_cond_destroy(&fx->cv);
    pthread_mutex_destroy(&fx->mu);
    free(fx);
}

/* Decodes one popped frame into the fixture's records. */
static void absorb(fixture *fx, agent_frame *f)
{
    unsigned char *d = agent_frame_data(f);
    if (f->binary) {
        int ch;
        uint32_t id;
        const unsigned char *p;
        size_t n;
        assert_int_equal(proto_data_parse(d, f->len, &ch, &id, &p, &n), 0);
        if (id == 0 || id >= MAX_IDS) {
            fx->foreign++;
            return;
        }
        req *rq = &fx->reqs[id];
        assert_false(rq->ended); /* nothing after exec_end */
        if (!rq->first_data_batch)
            rq->first_data_batch = fx->cur_batch;
        rq->data_frames++;
        rq->window -= (int64_t)n;
        assert_true(rq->window >= 0); /* never beyond the credit given */
        if (n > rq->max_payload)
            rq->max_payload = n;
        if (fx->cur_batch && fx->cur_batch == rq->last_batch) {
            rq->batch_frames++;
        } else {
            rq->batch_frames = 1;
            rq->last_batch = fx->cur_batch;
        }
        if (rq->batch_frames > rq->max_batch_frames)
            rq->max_batch_frames = rq->batch_frames;
        if (rq->bulk && ch == PROTO_CHAN_STDOUT) {
            for (size_t k = 0; k < n; k++)
                assert_int_equal(p[k], 'x');
            rq->bulk_bytes += (int64_t)n;
            return;
        }
        char *buf = ch == PROTO_CHAN_STDOUT ? rq->out : rq->err;
        size_t *len = ch == PROTO_CHAN_STDOUT ? &rq->outlen : &rq->errlen;
        assert_true(ch == PROTO_CHAN_STDOUT || ch == PROTO_CHAN_STDERR);
        assert_true(*len + n < sizeof(rq->out));
        memcpy(buf + *len, p, n);
        *len += n;
        buf[*len] = '\0';
        return;
    }
    proto_msg m;
    char err[256];
    memset(&m, 0, sizeof(m));
    assert_int_equal(proto_decode((const char *)d, f->len, &m, err, sizeof(err)), 0);
    if (m.type == MSG_EXEC_END) {
        if (m.id == 0 || m.id >= MAX_IDS) {
            fx->foreign++;
        } else {
            req *rq = &fx->reqs[m.id];
            assert_false(rq->ended); /* exactly one exec_end */
            rq->ended = 1;
            rq->end_batch = fx->cur_batch;
            rq->rc = m.return_code;
            rq->truncated = m.truncated;
            rq->bytes_out = m.bytes;
            snprintf(rq->code, sizeof(rq->code), "%s", m.error_code ? m.error_code : "");
            snprintf(rq->error, sizeof(rq->error), "%s", m.error ? m.error : "");
        }
    } else if (m.type == MSG_COMMAND_RESPONSE) {
        assert_false(fx->legacy_done);
        fx->legacy_done = 1;
        fx->legacy_success = m.success;
        fx->legacy_rc = m.return_code;
        snprintf(fx->legacy_id, sizeof(fx->legacy_id), "%s", m.command_id ? m.command_id : "");
        snprintf(fx->legacy_out, sizeof(fx->legacy_out), "%.*s", (int)m.output_len,
                 m.output ? m.output : "");
        snprintf(fx->legacy_err, sizeof(fx->legacy_err), "%s", m.error ? m.error : "");
    } else {
        fail_msg("unexpected message type %d on the queue", (int)m.type);
    }
    proto_msg_free(&m);
}

/* Drains the queue until done(fx, arg) holds; fails after WAIT_MS. */
static void pump_until(fixture *fx, int (*done)(fixture *, const void *), const void *arg)
{
    int64_t deadline = now_ms() + WAIT_MS;
    for (;;) {
        pthread_mutex_lock(&fx->mu);
        int seen = fx->events;
        seen_frame got[MAX_SEEN];
        int ngot = fx->nseen;
        memcpy(got, fx->seen, (size_t)ngot * sizeof(got[0]));
        fx->nseen = 0;
        pthread_mutex_unlock(&fx->mu);
        for (int i = 0; i < ngot; i++) {
            fx->cur_batch = got[i].batch;
            absorb(fx, got[i].f);
            agent_frame_free(got[i].f);
        }
        fx->cur_batch = 0;
        /* With a drain-on-push sink the push's own callback takes every
         * frame: a pop here could take one between the push letting go of
         * the queue and its callback running, and count it in no batch. */
        agent_frame *f;
        while (!fx->drain_on_push && (f = agent_outq_pop(fx->q))) {
            absorb(fx, f);
            agent_frame_free(f);
        }
        agent_runner_reap(fx->r);
        if (done(fx, arg))
            return;
        int64_t left = deadline - now_ms();
        if (left <= 0)
            fail_msg("timed out waiting on the runner");
        pthread_mutex_lock(&fx->mu);
        if (fx->events == seen) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t w = left < 200 ? left : 200; /* bounded: also re-checks done() */
            ts.tv_sec += w / 1000;
            ts.tv_nsec += (w % 1000) * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&fx->cv, &fx->mu, &ts);
        }
        pthread_mutex_unlock(&fx->mu);
    }
}

static int ended(fixture *fx, const void *arg)
{
    return fx->reqs[*(const uint32_t *)arg].ended;
}

static int stdout_at_least(fixture *fx, const void *arg)
{
    const size_t *want = arg;
    return fx->reqs[want[0]].outlen >= want[1];
}

/* A whole line on stdout (a program may print one in several writes). */
static int stdout_has_line(fixture *fx, const void *arg)
{
    const req *r = &fx->reqs[*(const uint32_t *)arg];
    return memchr(r->out, '\n', r->outlen < sizeof(r->out) ? r->outlen : sizeof(r->out)) != NULL;
}

static int legacy_done(fixture *fx, const void *arg)
{
    return fx->legacy_done;
}

static int all_idle(fixture *fx, const void *arg)
{
    return agent_runner_active(fx->r) == 0;
}

static req *wait_end(fixture *fx, uint32_t id)
{
    pump_until(fx, ended, &id);
    return &fx->reqs[id];
}

static void wait_stdout(fixture *fx, uint32_t id, size_t n)
{
    size_t want[2] = {id, n};
    pump_until(fx, stdout_at_least, want);
}

/* argv from words (NULL-terminated). */
static argv_t words(const char *w0, ...)
{
    const char *w[16];
    int n = 0;
    va_list ap;
    va_start(ap, w0);
    for (const char *x = w0; x && n < 16; x = va_arg(ap, const char *))
        w[n++] = x;
    va_end(ap);
    argv_t a;
    char err[128];
    memset(&a, 0, sizeof(a));
    assert_int_equal(argv_from_strings(w, n, &a, err, sizeof(err)), 0);
    return a;
}

static agent_run_result exec_held(fixture *fx, uint32_t id, double timeout, int64_t max_output,
                                  int64_t window, int64_t hold, argv_t a)
{
    fx->reqs[id].window = window;
    agent_run_result rr =
        agent_runner_exec(fx->r, fx->gen, id, &a, timeout, max_output, window, hold);
    if (rr == RUN_STARTED)
        assert_int_equal(a.c, 0); /* taken over */
    argv_free(&a);
    return rr;
}

static agent_run_result exec_words(fixture *fx, uint32_t id, double timeout, int64_t max_output,
                                   int64_t window, argv_t a)
{
    return exec_held(fx, id, timeout, max_output, window, 0, a);
}

/* /proc/<pid>/stat state, or 0 if the process is gone. */
static char proc_state(pid_t pid)
{
    char p[64], buf[512];
    snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(p, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' ? rp[2] : 0;
}

/* Waits until pid is gone or a zombie (killed, not yet reaped by its parent). */
static int wait_dead(pid_t pid)
{
    int64_t deadline = now_ms() + WAIT_MS;
    while (now_ms() < deadline) {
        int st;
        /* we are the subreaper: an orphan from the test's commands is ours */
        if (waitpid(pid, &st, WNOHANG) == pid)
            return 1;
        char s = proc_state(pid);
        if (s == 0 || s == 'Z' || s == 'X')
            return 1;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* ---- tests ------------------------------------------------------------------ */

static void echo_output_and_exec_end(void **state)
{
    fixture *fx = fixture_new("/bin/echo", 4, 1 << 20, 1 << 20);
    assert_int_equal(exec_words(fx, 1, 10, 0, PROTO_DEFAULT_WINDOW, words("hello", "world", NULL)),
                     RUN_STARTED);
    req *rq = wait_end(fx, 1);
    assert_string_equal(rq->out, "hello world\n");
    assert_int_equal(rq->errlen, 0);
    assert_int_equal(rq->rc, 0);
    assert_string_equal(rq->code, "");
    assert_int_equal(rq->truncated, 0);
    assert_int_equal(rq->bytes_out, 12);
    pump_until(fx, all_idle, NULL);
    assert_int_equal(fx->foreign, 0);
    fixture_free(fx);
}

static void exit_code_and_stderr_channel(void **state)
{
    fixture *fx = fixture_new("/bin/sh", 4, 1 << 20, 1 << 20);
    assert_int_equal(exec_words(fx, 2, 10, 0, PROTO_DEFAULT_WINDOW,
                                words("-c", "echo out; echo err >&2; exit 3", NULL)),
                     RUN_STARTED);
    assert_int_equal(exec_words(fx, 3, 10, 0, PROTO_DEFAULT_WINDOW,
                                words("-c", "kill -KILL $$", NULL)),
                     RUN_STARTED);
    req *rq = wait_end(fx, 2);
    assert_string_equal(rq->out, "out\n");
    assert_string_equal(rq->err, "err\n");
    assert_int_equal(rq->rc, 3);
    assert_string_equal(rq->code, ""); /* a failing command is not an agent error */
    assert_int_equal(rq->bytes_out, 8);
    rq = wait_end(fx, 3);
    assert_int_equal(rq->rc, 128 + SIGKILL); /* killed by a signal: 128+n */
    fixture_free(fx);
}

/* The child's environment is the agent's minus its secret settings: its
 * token, and AURORA_CLOUD_ENV (the operator's proxy credentials for the
 * cloud CLIs, which kubectl never needs). */
static void child_never_sees_the_agent_token(void **state)
{
    setenv("AURORA_AGENT_TOKEN", "aurora_kubectl_secret", 1);
    setenv("AURORA_CLOUD_ENV", "az:HTTPS_PROXY=http://ops:pr0xy-pass@proxy:3128", 1);
    setenv("RUNNER_TEST_VISIBLE", "yes", 1);
    fixture *fx = fixture_new("/bin/sh", 4, 1 << 20, 1 << 20);
    unsetenv("AURORA_AGENT_TOKEN");
    unsetenv("AURORA_CLOUD_ENV");
    assert_int_equal(exec_words(fx, 1, 10, 0, PROTO_DEFAULT_WINDOW,
                                words("-c",
                                      "echo \"${AURORA_AGENT_TOKEN-unset} "
                                      "${AURORA_CLOUD_ENV-unset} $RUNNER_TEST_VISIBLE\"; "
                                      "ls /proc/self/fd | wc -l",
                                      NULL)),
                     RUN_STARTED);
    req *rq = wait_end(fx, 1);
    /* stdin, stdout, stderr and ls's own directory fd: nothing else inherited */
    assert_string_equal(rq->out, "unset unset yes\n4\n");
    fixture_free(fx);
}

/* Output goes out only within the credit the server gave (the sink asserts
 * its window never goes negative), and resumes on each credit. */
static void credit_window_bounds_output(void **state)
{
    fixture *fx = fixture_new("/bin/sh", 4, 1 << 20, 1 << 20);
    /* 3000 bytes in one write, well within the pipe buffer; then the command
     * waits on a FIFO, so that it is still running when the test gives its
     * last credits (a command that had ended would refuse them). */
    char dir[] = "/tmp/runner-credit-XXXXXX", fifo[64], script[160];
    assert_non_null(mkdtemp(dir));
    snprintf(fifo, sizeof(fifo), "%s/go", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    snprintf(script, sizeof(script), "head -c 3000 /dev/zero | tr '\\0' x; read go < %s", fifo);
    assert_int_equal(exec_words(fx, 4, 20, 0, 100, words("-c", script, NULL)), RUN_STARTED);
    wait_stdout(fx, 4, 100);
    assert_int_equal(fx->reqs[4].outlen, 100);
    assert_false(fx->reqs[4].ended); /* cannot end with output still held back */
    assert_int_equal(agent_runner_credit(fx->r, fx->gen, 4, 900), 0);
    fx->reqs[4].window += 900;
    wait_stdout(fx, 4, 1000);
    assert_int_equal(fx->reqs[4].outlen, 1000);
    assert_false(fx->reqs[4].ended);
    /* zero and negative credit change nothing */
    assert_int_equal(agent_runner_credit(fx->r, fx->gen, 4, 0), 0);
    assert_int_equal(agent_runner_credit(fx->r, fx->gen, 4, -5), 0);
    /* a huge credit saturates instead of overflowing */
    assert_int_equal(agent_runner_credit(fx->r, fx->gen, 4, INT64_MAX), 0);
    assert_int_equal(agent_runner_credit(fx->r, fx->gen, 4, INT64_MAX), 0);
    fx->reqs[4].window = INT64_MAX;
    /* Let the command end, once it reads the FIFO (ENXIO until then). */
    int w = -1;
    for (int i = 0; i < 20000 && w < 0; i++) {
        w = open(fifo, O_WRONLY | O_NONBLOCK);
        if (w < 0) {
            assert_int_equal(errno, ENXIO);
            usleep(1000);
        }
    }
    assert_true(w >= 0);
    assert_int_equal(write(w, "\n", 1), 1);
    close(w);
    req *rq = wait_end(fx, 4);
    assert_int_equal(rq->outlen, 3000);
    assert_int_equal(rq->bytes_out, 3000);
    assert_int_equal(rq->rc, 0);
    /* credit for what is not running (any more, or another connection's) */
    pump_until(fx, all_idle, NULL);
    assert_int_equal(agent_runner_credit(fx->r, fx->gen, 4, 10), -1);
    assert_int_equal(agent_runner_credit(fx->r, fx->gen, 9, 10), -1);
    assert_int_equal(agent_runner_credit(fx->r, fx->gen + 1, 4, 10), -1);
    fixture_free(fx);
    assert_int_equal(unlink(fifo), 0);
    assert_int_equal(rmdir(dir), 0);
}

/* A window of 0: nothing at all until the first credit. */
static void zero_window_waits_for_credit(void **state)
{
    fixture *fx = fixture_new("/bin/echo", 4, 1 << 20, 1 << 20);
    assert_int_equal(exec_words(fx, 5, 20, 0, 0, words("abc", NULL)), RUN_STARTED);
    /* (any byte before the credit would take the sink's window below 0) */
    fx->reqs[5].window = 2;
    assert_int_equal(agent_runner_credit(fx->r, fx->gen, 5, 2), 0);
    wait_stdout(fx, 5, 2);
    assert_string_equal(fx->reqs[5].out, "ab");
    fx->reqs[5].window += 10;
    assert_int_equal(agent_runner_credit(fx->r, fx->gen, 5, 10), 0);
    req *rq = wait_end(fx, 5);
    assert_string_equal(rq->out, "abc\n");
    fixture_free(fx);
}

/* The request's max_output and the agent's cap, whichever is smaller. */
static void output_cap_truncates(void **state)
{
    fixture *fx = fixture_new("/bin/sh", 4, 50, 1 << 20);
    const char *cmd = "head -c 5000 /dev/zero | tr '\\0' y; echo tail >&2";
    assert_int_equal(exec_words(fx, 1, 20, 10, PROTO_DEFAULT_WINDOW, words("-c", cmd, NULL)),
                     RUN_STARTED);
    assert_int_equal(exec_words(fx, 2, 20, 0, PROTO_DEFAULT_WINDOW, words("-c", cmd, NULL)),
                     RUN_STARTED);
    assert_int_equal(exec_words(fx, 3, 20, 1000, PROTO_DEFAULT_WINDOW, words("-c", cmd, NULL)),
                     RUN_STARTED);
    req *rq = wait_end(fx, 1);
    assert_int_equal(rq->outlen + rq->errlen, 10);
    assert_int_equal(rq->bytes_out, 10);
    assert_int_equal(rq->truncated, 1);
    assert_string_equal(rq->code, EC_OUTPUT_LIMIT);
    assert_non_null(strstr(rq->error, "10 bytes"));
    assert_int_equal(rq->rc, 0); /* the command itself succeeded */
    for (uint32_t id = 2; id <= 3; id++) { /* agent cap 50 applies to both */
        rq = wait_end(fx, id);
        assert_int_equal(rq->outlen + rq->errlen, 50);
        assert_int_equal(rq->bytes_out, 50);
        assert_int_equal(rq->truncated, 1);
        assert_string_equal(rq->code, EC_OUTPUT_LIMIT);
    }
    fixture_free(fx);
}

/* The timeouts below must leave the shell time to start and print its pids
 * first, also on a loaded machine (0.2 s left it little).  A shell that
 * still had not printed them by then (no CPU for seconds) is run again with
 * twice the timeout, up to SHELL_TIMEOUT_MAX_S. */
#define SHELL_TIMEOUT_S 3
#define SHELL_TIMEOUT_MAX_S 12

/* Timeout: rc 124 / TIMEOUT, and every process of the group is gone — the
 * shell and the background sleep it started. */
static void timeout_kills_the_process_group(void **state)
{
    fixture *fx = fixture_new("/bin/sh", 4, 1 << 20, 1 << 20);
    long sleeper = 0, shell = 0;
    for (int t = SHELL_TIMEOUT_S, id = 6;; t *= 2, id++) {
        int64_t t0 = now_ms();
        assert_int_equal(exec_words(fx, (uint32_t)id, t, 0, PROTO_DEFAULT_WINDOW,
                                    words("-c", "sleep 60 & echo $!; echo $$; wait", NULL)),
                         RUN_STARTED);
        req *rq = wait_end(fx, (uint32_t)id);
        int64_t took = now_ms() - t0;
        assert_int_equal(rq->rc, 124);
        assert_string_equal(rq->code, EC_TIMEOUT);
        assert_non_null(strstr(rq->error, "timed out"));
        assert_true(took >= t * 1000);
        assert_true(took < 30000); /* not the 60 s of the sleep */
        if (sscanf(rq->out, "%ld\n%ld", &sleeper, &shell) == 2 || t >= SHELL_TIMEOUT_MAX_S)
            break;
    }
    assert_true(sleeper > 1 && shell > 1);
    assert_true(wait_dead((pid_t)shell));
    assert_true(wait_dead((pid_t)sleeper));
    fixture_free(fx);
}

/* A command ignoring SIGTERM is SIGKILLed after the grace. */
static void timeout_escalates_to_sigkill(void **state)
{
    fixture *fx = fixture_new("/bin/sh", 4, 1 << 20, 1 << 20);
    long shell = 0;
    for (int t = SHELL_TIMEOUT_S, id = 7;; t *= 2, id++) {
        assert_int_equal(exec_words(fx, (uint32_t)id, t, 0, PROTO_DEFAULT_WINDOW,
                                    words("-c", "trap '' TERM; echo $$; while :; do sleep 1; done",
                                          NULL)),
                         RUN_STARTED);
        req *rq = wait_end(fx, (uint32_t)id);
        assert_int_equal(rq->rc, 124);
        if (sscanf(rq->out, "%ld", &shell) == 1 || t >= SHELL_TIMEOUT_MAX_S)
            break;
    }
    assert_true(shell > 1);
    assert_true(wait_dead((pid_t)shell));
    fixture_free(fx);
}

static void cancel_ends_with_130(void **state)
{
    fixture *fx = fixture_new("/bin/sh", 4, 1 << 20, 1 << 20);
    assert_int_equal(exec_words(fx, 8, 30, 0, PROTO_DEFAULT_WINDOW,
                                words("-c", "echo $$; exec sleep 60", NULL)),
                     RUN_STARTED);
    wait_stdout(fx, 8, 2);
    assert_int_equal(agent_runner_cancel(fx->r, fx->gen, 8), 0);
    /* Repeated: still one end (absorb fails on a second).  The first may
     * already have ended the job on another CPU, and then there is nothing
     * left to cancel. */
    int again = agent_runner_cancel(fx->r, fx->gen, 8);
    assert_true(again == 0 || again == -1);
    req *rq = wait_end(fx, 8);
    assert_int_equal(rq->rc, 130);
    assert_string_equal(rq->code, EC_CANCELLED);
    assert_string_equal(rq->error, "command cancelled");
    long pid = 0;
    assert_int_equal(sscanf(rq->out, "%ld", &pid), 1);
    assert_true(wait_dead((pid_t)pid));
    pump_until(fx, all_idle, NULL);
    /* nothing to cancel: unknown id, finished id, other connection */
    assert_int_equal(agent_runner_cancel(fx->r, fx->gen, 8), -1);
    assert_int_equal(agent_runner_cancel(fx->r, fx->gen, 12), -1);
    assert_int_equal(agent_runner_cancel(fx->r, fx->gen + 1, 8), -1);
    fixture_free(fx);
}

/* A command whose leader moves itself into another process group (setpgid
 * is open to any command; here the group its own child just made) and
 * ignores SIGTERM: the group's signals no longer reach it, so the leader is
 * signalled by its pid too and a cancel still ends the job (130), where it
 * used to run forever and hold its slot. */
static const char LEAVE_GROUP_PY[] =
    "import os, signal, time\n"
    "r, w = os.pipe()\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.setpgid(0, 0)\n"
    "    os.close(1)\n"
    "    os.close(2)\n"
    "    os.write(w, b'x')\n"
    "    time.sleep(60)\n"
    "    os._exit(0)\n"
    "os.read(r, 1)\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "os.setpgid(0, pid)\n"
    "print(os.getpid(), pid, flush=True)\n"
    "time.sleep(60)\n";

static void leader_that_leaves_its_group_is_still_stopped(void **state)
{
    fixture *fx = fixture_new("/usr/bin/python3", 4, 1 << 20, 1 << 20);
    assert_int_equal(exec_words(fx, 9, 60, 0, PROTO_DEFAULT_WINDOW,
                                words("-c", LEAVE_GROUP_PY, NULL)),
                     RUN_STARTED);
    uint32_t id = 9;
    pump_until(fx, stdout_has_line, &id); /* printed after it moved */
    long leader = 0, other = 0;
    if (sscanf(fx->reqs[9].out, "%ld %ld", &leader, &other) != 2)
        fail_msg("output: [%.*s]", (int)fx->reqs[9].outlen, fx->reqs[9].out);
    assert_int_equal(getpgid((pid_t)leader), (pid_t)other);
    assert_int_equal(agent_runner_cancel(fx->r, fx->gen, 9), 0);
    req *rq = wait_end(fx, 9);
    assert_int_equal(rq->rc, 130);
    assert_string_equal(rq->code, EC_CANCELLED);
    assert_true(wait_dead((pid_t)leader));
    pump_until(fx, all_idle, NULL);
    /* the group it joined is the command's child's own: not the runner's to
     * know of without a uid of its own (cloud_exec's sandbox kills it) */
    kill((pid_t)other, SIGKILL);
    assert_true(wait_dead((pid_t)other));
    fixture_free(fx);
}

/* The command exits, but a process it started in a session of its own
 * (setsid) keeps its stdout open: the group kill at the leader's exit cannot
 * reach it.  The job reports the command's own exit status once the pipes
 * have been silent for a grace period, not a timeout at the deadline. */
static const char SETSID_HOLDER_PY[] =
    "import os, sys, time\n"
    "r, w = os.pipe()\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.setsid()\n"
    "    os.write(w, b'x')\n"
    "    time.sleep(60)\n"
    "    os._exit(0)\n"
    "os.read(r, 1)\n"
    "print(pid, flush=True)\n"
    "sys.exit(3)\n";

static void exit_reported_when_an_escaped_process_holds_the_output(void **state)
{
    fixture *fx = fixture_new("/usr/bin/python3", 4, 1 << 20, 1 << 20);
    assert_int_equal(exec_words(fx, 10, 60, 0, PROTO_DEFAULT_WINDOW,
                                words("-c", SETSID_HOLDER_PY, NULL)),
                     RUN_STARTED);
    req *rq = wait_end(fx, 10); /* within WAIT_MS, far below the 60 s deadline */
    assert_int_equal(rq->rc, 3);
    assert_string_equal(rq->code, "");
    long holder = 0;
    assert_int_equal(sscanf(rq->out, "%ld", &holder), 1);
    assert_true(holder > 1);
    assert_int_equal(proc_state((pid_t)holder) != 0, 1); /* still there: out of reach */
    kill((pid_t)holder, SIGKILL);
    assert_true(wait_dead((pid_t)holder));
    pump_until(fx, all_idle, NULL);
    fixture_free(fx);
}

/* max_concurrent slots per connection: BUSY when full (argv stays the
 * caller's), a slot is free again by the time exec_end is queued, duplicate
 * ids refused, another connection's jobs not counted. */
static void concurrency_slots(void **state)
{
    fixture *fx = fixture_new("/bin/sleep", 2, 1 << 20, 1 << 20);
    assert_int_equal(exec_words(fx, 1, 30, 0, PROTO_DEFAULT_WINDOW, words("60", NULL)), RUN_STARTED);
    assert_int_equal(exec_words(fx, 2, 30, 0, PROTO_DEFAULT_WINDOW, words("60", NULL)), RUN_STARTED);
    assert_int_equal(agent_runner_active(fx->r), 2);

    argv_t a = words("60", NULL);
    assert_int_equal(agent_runner_exec(fx->r, fx->gen, 3, &a, 30, 0, 100, 0), RUN_BUSY);
    assert_int_equal(a.c, 1); /* not taken: still the caller's */
    assert_string_equal(a.v[0], "60");
    assert_int_equal(agent_runner_exec(fx->r, fx->gen, 1, &a, 30, 0, 100, 0), RUN_DUPLICATE);
    assert_int_equal(a.c, 1);
    assert_int_equal(agent_runner_legacy(fx->r, fx->gen, "cmd-busy", &a, 30), RUN_BUSY);
    assert_int_equal(a.c, 1);
    argv_free(&a);

    /* the slot is free when exec_end arrives (the server sends the next
     * command right then) */
    assert_int_equal(agent_runner_cancel(fx->r, fx->gen, 1), 0);
    wait_end(fx, 1);
    assert_int_equal(exec_words(fx, 3, 30, 0, PROTO_DEFAULT_WINDOW, words("0", NULL)), RUN_STARTED);
    wait_end(fx, 3);
    assert_int_equal(fx->reqs[3].rc, 0);

    /* the connection drops: its jobs are killed, deliver nothing, and the
     * next connection has all its slots at once */
    uint64_t old = fx->gen;
    fx->gen = old + 1;
    agent_outq_reset(fx->q, fx->gen);
    agent_runner_drop(fx->r, old);
    assert_int_equal(exec_words(fx, 4, 30, 0, PROTO_DEFAULT_WINDOW, words("60", NULL)), RUN_STARTED);
    assert_int_equal(exec_words(fx, 5, 30, 0, PROTO_DEFAULT_WINDOW, words("60", NULL)), RUN_STARTED);
    /* the id of a job of the old connection: busy, not a duplicate (a
     * duplicate is reported before the slots are counted) */
    assert_int_equal(exec_words(fx, 2, 30, 0, PROTO_DEFAULT_WINDOW, words("0", NULL)), RUN_BUSY);
    assert_int_equal(agent_runner_cancel(fx->r, fx->gen, 4), 0);
    assert_int_equal(agent_runner_cancel(fx->r, fx->gen, 5), 0);
    wait_end(fx, 4);
    wait_end(fx, 5);
    pump_until(fx, all_idle, NULL); /* the dropped sleep 60 too */
    assert_false(fx->reqs[2].ended); /* the dropped job said nothing */
    assert_int_equal(fx->foreign, 0);
    assert_int_equal(exec_words(fx, 2, 30, 0, PROTO_DEFAULT_WINDOW, words("0", NULL)), RUN_STARTED);
    wait_end(fx, 2);
    assert_int_equal(fx->reqs[2].rc, 0);
    fixture_free(fx);
}

/* Shutdown: new commands refused; cancel_all ends the running ones, each
 * still with its exec_end. */
static void shutdown_refuses_and_cancels(void **state)
{
    fixture *fx = fixture_new("/bin/sleep", 4, 1 << 20, 1 << 20);
    assert_int_equal(exec_words(fx, 1, 30, 0, PROTO_DEFAULT_WINDOW, words("60", NULL)), RUN_STARTED);
    agent_runner_set_shutting_down(fx->r);
    assert_int_equal(exec_words(fx, 2, 30, 0, PROTO_DEFAULT_WINDOW, words("0", NULL)),
                     RUN_SHUTTING_DOWN);
    argv_t a = words("0", NULL);
    assert_int_equal(agent_runner_legacy(fx->r, fx->gen, "c", &a, 5), RUN_SHUTTING_DOWN);
    argv_free(&a);
    agent_runner_cancel_all(fx->r);
    req *rq = wait_end(fx, 1);
    assert_int_equal(rq->rc, 130);
    assert_string_equal(rq->code, EC_CANCELLED);
    assert_non_null(strstr(rq->error, "shutting down"));
    fixture_free(fx);
}

static void spawn_failure_is_reported(void **state)
{
    fixture *fx = fixture_new("/nonexistent/kubectl", 4, 1 << 20, 1 << 20);
    assert_int_equal(exec_words(fx, 1, 5, 0, PROTO_DEFAULT_WINDOW, words("get", "pods", NULL)),
                     RUN_STARTED);
    req *rq = wait_end(fx, 1);
    assert_int_equal(rq->rc, 127);
    assert_string_equal(rq->code, EC_SPAWN_FAILED);
    assert_non_null(strstr(rq->error, "/nonexistent/kubectl"));
    /* a cloud program must be an absolute path */
    argv_t a = words("sts", NULL);
    assert_int_equal(
        agent_runner_exec_cloud(fx->r, fx->gen, 2, "aws", NULL, &a, NULL, 0, 5, 0, 100, 0),
        RUN_FAILED);
    assert_int_equal(
        agent_runner_exec_cloud(fx->r, fx->gen, 2, NULL, NULL, &a, NULL, 0, 5, 0, 100, 0),
        RUN_FAILED);
    assert_int_equal(agent_runner_exec_cloud(fx->r, fx->gen, 2, "/bin/true", NULL, &a, NULL, 1,
                                             5, 0, 100, 0),
                     RUN_FAILED); /* nenv without env */
    assert_int_equal(a.c, 1);
    argv_free(&a);
    fixture_free(fx);
}

static void legacy_command_response(void **state)
{
    fixture *fx = fixture_new("/bin/sh", 4, 1 << 20, 1 << 20);
    argv_t a = words("-c", "echo legacy-out; echo legacy-err >&2", NULL);
    assert_int_equal(agent_runner_legacy(fx->r, fx->gen, "cmd-1", &a, 10), RUN_STARTED);
    argv_free(&a);
    pump_until(fx, legacy_done, NULL);
    assert_string_equal(fx->legacy_id, "cmd-1");
    assert_int_equal(fx->legacy_success, 1);
    assert_int_equal(fx->legacy_rc, 0);
    assert_string_equal(fx->legacy_out, "legacy-out\n");
    assert_string_equal(fx->legacy_err, "legacy-err\n");

    fx->legacy_done = 0;
    a = words("-c", "exit 3", NULL);
    assert_int_equal(agent_runner_legacy(fx->r, fx->gen, "cmd-2", &a, 10), RUN_STARTED);
    argv_free(&a);
    pump_until(fx, legacy_done, NULL);
    assert_string_equal(fx->legacy_id, "cmd-2");
    assert_int_equal(fx->legacy_success, 0);
    assert_int_equal(fx->legacy_rc, 3);

    /* legacy ids live apart from v2 ids: a legacy command does not make
     * v2 id 0 a duplicate or cancellable */
    fx->legacy_done = 0;
    a = words("-c", "sleep 0.2; echo late", NULL);
    assert_int_equal(agent_runner_legacy(fx->r, fx->gen, "cmd-3", &a, 10), RUN_STARTED);
    argv_free(&a);
    assert_int_equal(agent_runner_cancel(fx->r, fx->gen, 0), -1);
    pump_until(fx, legacy_done, NULL);
    assert_string_equal(fx->legacy_out, "late\n");
    fixture_free(fx);
}

/* A small outgoing queue: a job stops reading when the queue is full and is
 * woken when the writer makes room; all output arrives, in order. */
static void full_queue_pauses_and_resumes(void **state)
{
    fixture *fx = fixture_new("/bin/sh", 4, 1 << 20, 64);
    assert_int_equal(exec_words(fx, 1, 20, 0, PROTO_DEFAULT_WINDOW,
                                words("-c", "i=0; while [ $i -lt 300 ]; do echo line$i; "
                                            "i=$((i+1)); done",
                                      NULL)),
                     RUN_STARTED);
    req *rq = wait_end(fx, 1);
    assert_int_equal(rq->rc, 0);
    /* ordered and complete */
    char want[8192];
    size_t n = 0;
    for (int i = 0; i < 300; i++)
        n += (size_t)snprintf(want + n, sizeof(want) - n, "line%d\n", i);
    assert_int_equal(rq->outlen, n);
    assert_string_equal(rq->out, want);
    fixture_free(fx);
}

/* Pops what is queued; the command_id of each legacy response into ids
 * (comma-separated, in order). */
static void take_responses(fixture *fx, char *ids, size_t cap)
{
    agent_frame *f;
    while ((f = agent_outq_pop(fx->q))) {
        proto_msg m;
        char err[256];
        memset(&m, 0, sizeof(m));
        assert_false(f->binary);
        assert_int_equal(proto_decode((const char *)agent_frame_data(f), f->len, &m, err,
                                      sizeof(err)),
                         0);
        assert_int_equal(m.type, MSG_COMMAND_RESPONSE);
        assert_int_equal(m.return_code, 0);
        size_t n = strlen(ids);
        snprintf(ids + n, cap - n, "%s%s", n ? "," : "", m.command_id);
        proto_msg_free(&m);
        agent_frame_free(f);
    }
}

static int count_ids(const char *ids)
{
    int n = *ids != '\0';
    for (const char *c = ids; *c; c++)
        n += *c == ',';
    return n;
}

/* Pops responses (take_responses) until ids holds n of them. */
static void wait_responses(fixture *fx, char *ids, size_t cap, int n)
{
    int64_t deadline = now_ms() + WAIT_MS;
    for (;;) {
        pthread_mutex_lock(&fx->mu);
        int seen = fx->events;
        pthread_mutex_unlock(&fx->mu);
        take_responses(fx, ids, cap);
        if (count_ids(ids) >= n)
            return;
        if (now_ms() > deadline)
            fail_msg("responses so far: %s", ids);
        pthread_mutex_lock(&fx->mu);
        if (fx->events == seen) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50 * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&fx->cv, &fx->mu, &ts);
        }
        pthread_mutex_unlock(&fx->mu);
    }
}

/* Watches the queue for up to ms (a push into a queue that is not empty
 * wakes no one): 1 as soon as it holds more than bytes. */
static int grows_within(fixture *fx, size_t bytes, int64_t ms)
{
    int64_t deadline = now_ms() + ms;
    while (agent_outq_bytes(fx->q) <= bytes) {
        if (now_ms() >= deadline)
            return 0;
        struct timespec ts = {0, 5 * 1000000};
        nanosleep(&ts, NULL);
    }
    return 1;
}

/* Legacy responses respect the queue's room as v2 output does: with the
 * data lane full, a command that has printed and exited neither reads its
 * output nor queues its response, and it keeps its concurrency slot
 * meanwhile (so a server that reads nothing has at most max_concurrent
 * responses waiting in the agent, and is refused busy beyond).  Once the
 * writer makes room the response arrives, and the slot is free again; two
 * commands ending together queue their responses one at a time. */
static void legacy_responses_wait_for_room_holding_their_slots(void **state)
{
    /* a 16-byte lane, full before the command starts */
    fixture *fx = fixture_new("/bin/sh", 1, 1 << 20, 16);
    assert_int_equal(agent_outq_push(fx->q, agent_frame_new(1, 16), fx->gen, 0), 0);
    char dir[] = "/tmp/runner-room-XXXXXX", fifo[64], script[160];
    assert_non_null(mkdtemp(dir));
    snprintf(fifo, sizeof(fifo), "%s/printed", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    /* prints, then says so through the FIFO, then exits */
    snprintf(script, sizeof(script), "echo a-out; echo printed > %s", fifo);
    argv_t a = words("-c", script, NULL);
    assert_int_equal(agent_runner_legacy(fx->r, fx->gen, "cmd-a", &a, 20), RUN_STARTED);
    argv_free(&a);
    char buf[16] = "";
    int fd = open(fifo, O_RDONLY);
    assert_true(fd >= 0);
    assert_true(read(fd, buf, sizeof(buf) - 1) > 0);
    close(fd);
    unlink(fifo);
    rmdir(dir);
    /* the command has printed and ended: no response comes while the lane
     * is full (a second long enough for one that would: milliseconds) */
    assert_false(grows_within(fx, 16, 1000));
    assert_int_equal(agent_outq_bytes(fx->q), 16);
    a = words("-c", "echo b-out", NULL);
    assert_int_equal(agent_runner_legacy(fx->r, fx->gen, "cmd-b", &a, 20), RUN_BUSY);
    argv_free(&a);

    /* the writer takes the frame: the response follows, the slot is free */
    agent_frame_free(agent_outq_pop(fx->q));
    char ids[256] = "";
    wait_responses(fx, ids, sizeof(ids), 1);
    assert_string_equal(ids, "cmd-a");
    pump_until(fx, all_idle, NULL);
    a = words("-c", "echo b-out", NULL);
    assert_int_equal(agent_runner_legacy(fx->r, fx->gen, "cmd-b", &a, 20), RUN_STARTED);
    argv_free(&a);
    ids[0] = '\0';
    wait_responses(fx, ids, sizeof(ids), 1);
    assert_string_equal(ids, "cmd-b");
    pump_until(fx, all_idle, NULL);
    fixture_free(fx);

    /* two slots, two commands ending together: the lane takes one response
     * at a time (try_push), every one arrives once */
    fx = fixture_new("/bin/sh", 2, 1 << 20, 16);
    a = words("-c", "echo c-out", NULL);
    assert_int_equal(agent_runner_legacy(fx->r, fx->gen, "cmd-c", &a, 20), RUN_STARTED);
    argv_free(&a);
    a = words("-c", "echo d-out", NULL);
    assert_int_equal(agent_runner_legacy(fx->r, fx->gen, "cmd-d", &a, 20), RUN_STARTED);
    argv_free(&a);
    ids[0] = '\0';
    wait_responses(fx, ids, sizeof(ids), 2);
    assert_non_null(strstr(ids, "cmd-c"));
    assert_non_null(strstr(ids, "cmd-d"));
    pump_until(fx, all_idle, NULL);
    fixture_free(fx);
}

/* A legacy response waiting for room goes with its connection: the job ends
 * (nothing delivered, nothing leaked) instead of waiting for ever. */
static void legacy_response_waiting_for_room_dropped_with_its_connection(void **state)
{
    fixture *fx = fixture_new("/bin/sh", 2, 1 << 20, 16);
    /* the lane is full before the command starts */
    assert_int_equal(agent_outq_push(fx->q, agent_frame_new(1, 16), fx->gen, 0), 0);
    argv_t a = words("-c", "echo out", NULL);
    assert_int_equal(agent_runner_legacy(fx->r, fx->gen, "cmd-1", &a, 20), RUN_STARTED);
    argv_free(&a);
    assert_int_equal(agent_runner_active(fx->r), 1);
    /* the connection drops as on_disconnect does it */
    agent_runner_drop(fx->r, fx->gen);
    agent_outq_reset(fx->q, 0);
    pump_until(fx, all_idle, NULL);
    assert_false(fx->legacy_done);
    fixture_free(fx);
}

/* Two runners, each with its own queue, side by side. */
static void two_runners_coexist(void **state)
{
    fixture *a = fixture_new("/bin/echo", 1, 1 << 20, 1 << 20);
    fixture *b = fixture_new("/bin/sh", 1, 1 << 20, 1 << 20);
    assert_int_equal(exec_words(a, 1, 10, 0, PROTO_DEFAULT_WINDOW, words("from-a", NULL)),
                     RUN_STARTED);
    /* a's slot is taken; b's limit is its own */
    assert_int_equal(exec_words(b, 1, 10, 0, PROTO_DEFAULT_WINDOW,
                                words("-c", "echo from-b; exit 5", NULL)),
                     RUN_STARTED);
    req *ra = wait_end(a, 1), *rb = wait_end(b, 1);
    assert_string_equal(ra->out, "from-a\n");
    assert_int_equal(ra->rc, 0);
    assert_string_equal(rb->out, "from-b\n");
    assert_int_equal(rb->rc, 5);
    agent_runner_set_shutting_down(a->r);
    assert_int_equal(exec_words(b, 2, 10, 0, PROTO_DEFAULT_WINDOW, words("-c", "exit 0", NULL)),
                     RUN_STARTED); /* a's shutdown is not b's */
    wait_end(b, 2);
    fixture_free(a);
    fixture_free(b);
}

/* Freeing the runner with a job running kills and reaps it. */
static void free_with_running_job(void **state)
{
    fixture *fx = fixture_new("/bin/sh", 4, 1 << 20, 1 << 20);
    assert_int_equal(exec_words(fx, 1, 30, 0, PROTO_DEFAULT_WINDOW,
                                words("-c", "echo $$; exec sleep 60", NULL)),
                     RUN_STARTED);
    wait_stdout(fx, 1, 2);
    long pid = 0;
    assert_int_equal(sscanf(fx->reqs[1].out, "%ld", &pid), 1);
    int64_t t0 = now_ms();
    agent_runner_stop(fx->r);
    assert_true(now_ms() - t0 < 15000);
    assert_int_equal(kill((pid_t)pid, 0), -1); /* reaped by the job thread */
    assert_int_equal(errno, ESRCH);
    assert_int_equal(agent_runner_active(fx->r), 0);
    /* stopped: nothing new starts, and the calls find nothing */
    assert_int_equal(exec_words(fx, 2, 5, 0, 100, words("-c", "exit 0", NULL)), RUN_SHUTTING_DOWN);
    assert_int_equal(agent_runner_cancel(fx->r, fx->gen, 1), -1);
    agent_runner_cancel_all(fx->r);
    agent_runner_drop(fx->r, fx->gen);
    agent_runner_wake_room(fx->r);
    agent_runner_reap(fx->r);
    fixture_free(fx); /* stop again, then free */
}

/* Waits (WAIT_MS at most) until the pool holds `threads` threads, all idle. */
static void wait_pool(fixture *fx, int threads)
{
    int64_t deadline = now_ms() + WAIT_MS;
    int n, idle;
    for (;;) {
        agent_runner_pool(fx->r, &n, &idle);
        if (n == threads && idle == threads)
            return;
        if (now_ms() >= deadline)
            fail_msg("pool: %d threads (%d idle), expected %d idle", n, idle, threads);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

/* What the pool tests keep threads for between their steps: far longer than
 * any step takes on a loaded machine (a short idle time let the thread leave
 * between two jobs when the test waited for a CPU).  They shorten it, with
 * agent_runner_set_pool_idle_ms, when they want the threads to leave. */
#define KEEP_THREADS_MS 600000

/* Job threads are kept between commands (a thread per command cost a
 * clone3 on the event loop and an exit), grow with the commands running at
 * once, and leave after pool_idle_ms without work. */
static void job_threads_are_kept_then_leave(void **state)
{
    fixture *fx = fixture_new_idle("/bin/echo", 4, 1 << 20, 1 << 20, KEEP_THREADS_MS);
    for (uint32_t id = 1; id <= 5; id++) {
        assert_int_equal(exec_words(fx, id, 30, 0, PROTO_DEFAULT_WINDOW, words("one", NULL)),
                         RUN_STARTED);
        wait_end(fx, id);
        assert_int_equal(fx->reqs[id].rc, 0);
        assert_memory_equal(fx->reqs[id].out, "one\n", 4);
        pump_until(fx, all_idle, NULL);
        wait_pool(fx, 1); /* the same thread ran all five, one after the other */
    }
    /* three at once: three threads */
    fixture *sl = fixture_new_idle("/bin/sleep", 4, 1 << 20, 1 << 20, KEEP_THREADS_MS);
    for (uint32_t id = 1; id <= 3; id++)
        assert_int_equal(exec_words(sl, id, 30, 0, PROTO_DEFAULT_WINDOW, words("60", NULL)),
                         RUN_STARTED);
    int n, idle;
    agent_runner_pool(sl->r, &n, &idle);
    assert_int_equal(n, 3);
    for (uint32_t id = 1; id <= 3; id++) {
        assert_int_equal(agent_runner_cancel(sl->r, sl->gen, id), 0);
        wait_end(sl, id);
        assert_int_equal(sl->reqs[id].rc, 130);
    }
    pump_until(sl, all_idle, NULL);
    wait_pool(sl, 3);
    wait_pool(fx, 1);
    /* with a short idle time, every thread of both runners leaves */
    agent_runner_set_pool_idle_ms(sl->r, 50);
    agent_runner_set_pool_idle_ms(fx->r, 50);
    wait_pool(sl, 0);
    wait_pool(fx, 0);
    /* and a command after that starts a thread again */
    assert_int_equal(exec_words(sl, 4, 30, 0, PROTO_DEFAULT_WINDOW, words("0", NULL)), RUN_STARTED);
    wait_end(sl, 4);
    assert_int_equal(sl->reqs[4].rc, 0);
    fixture_free(sl);
    fixture_free(fx);
}

/* Open descriptors of this process. */
static int open_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 4096; fd++)
        n += fcntl(fd, F_GETFD) >= 0;
    return n;
}

/* A kept thread lends its one eventfd to each job it runs: a credit and a
 * cancel reach the thread's second and third jobs, blocked in poll with
 * `sleep 60` running, as they reached its first; the eventfd is the only
 * descriptor the idle thread keeps, and it is closed when the thread leaves. */
static void a_kept_thread_wakes_each_job_it_runs(void **state)
{
    fixture *fx = fixture_new_idle("/bin/sh", 4, 1 << 20, 1 << 20, KEEP_THREADS_MS);
    for (uint32_t id = 1; id <= 3; id++) {
        /* window 0: the output waits for a credit, which must wake the job */
        assert_int_equal(exec_words(fx, id, 30, 0, 0, words("-c", "echo $$; exec sleep 60", NULL)),
                         RUN_STARTED);
        fx->reqs[id].window = PROTO_DEFAULT_WINDOW; /* what the sink may receive */
        assert_int_equal(agent_runner_credit(fx->r, fx->gen, id, PROTO_DEFAULT_WINDOW), 0);
        wait_stdout(fx, id, 2);
        assert_int_equal(agent_runner_cancel(fx->r, fx->gen, id), 0);
        req *rq = wait_end(fx, id);
        assert_int_equal(rq->rc, 130);
        long pid = 0;
        assert_int_equal(sscanf(rq->out, "%ld", &pid), 1);
        assert_true(wait_dead((pid_t)pid));
        pump_until(fx, all_idle, NULL);
        wait_pool(fx, 1); /* one thread ran them all */
    }
    int with_thread = open_fds();
    agent_runner_set_pool_idle_ms(fx->r, 50);
    wait_pool(fx, 0);
    assert_int_equal(open_fds(), with_thread - 1); /* the thread's eventfd */
    fixture_free(fx);
}

/* ---- output held back until exec_end ("hold_output") ------------------------ */

/* A short output and its exec_end are queued by one push (one wake-up of
 * the event loop, one trip through the tunnel); without hold the output goes
 * ahead on its own, which the same sink tells apart. */
static void held_output_crosses_with_exec_end(void **state)
{
    fixture *fx = fixture_new_sink("/bin/echo", 4, 1 << 20, 1 << 20, 0, 1);
    assert_int_equal(exec_held(fx, 1, 10, 0, PROTO_DEFAULT_WINDOW, 64 * 1024,
                               words("hello", "held", NULL)),
                     RUN_STARTED);
    req *rq = wait_end(fx, 1);
    assert_string_equal(rq->out, "hello held\n");
    assert_int_equal(rq->rc, 0);
    assert_int_equal(rq->bytes_out, 11);
    assert_true(rq->first_data_batch > 0);
    assert_int_equal(rq->first_data_batch, rq->end_batch);

    assert_int_equal(exec_held(fx, 2, 10, 0, PROTO_DEFAULT_WINDOW, 0, words("streamed", NULL)),
                     RUN_STARTED);
    rq = wait_end(fx, 2);
    assert_string_equal(rq->out, "streamed\n");
    assert_true(rq->first_data_batch > 0);
    assert_true(rq->first_data_batch < rq->end_batch);
    fixture_free(fx);
}

/* Output past the hold goes out before the command ends, whole and in order. */
static void hold_sends_what_passes_its_size(void **state)
{
    fixture *fx = fixture_new_sink("/bin/sh", 4, 1 << 20, 1 << 20, 0, 1);
    assert_int_equal(exec_held(fx, 1, 10, 0, PROTO_DEFAULT_WINDOW, 1000,
                               words("-c", "printf '%03000d' 7; printf E >&2", NULL)),
                     RUN_STARTED);
    req *rq = wait_end(fx, 1);
    assert_int_equal(rq->outlen, 3000);
    assert_int_equal(rq->out[0], '0');
    assert_int_equal(rq->out[2999], '7');
    assert_string_equal(rq->err, "E");
    assert_int_equal(rq->bytes_out, 3001);
    assert_true(rq->first_data_batch < rq->end_batch);
    fixture_free(fx);
}

/* A command that writes a byte at a time: its held reads fill one frame,
 * not a chunk-sized frame per read (held memory follows the bytes held). */
static void held_trickle_fills_one_frame(void **state)
{
    fixture *fx = fixture_new_sink("/bin/sh", 4, 1 << 20, 1 << 20, 0, 1);
    assert_int_equal(exec_held(fx, 1, 20, 0, PROTO_DEFAULT_WINDOW, 64 * 1024,
                               words("-c", "i=0; while [ $i -lt 2000 ]; do printf x; i=$((i+1)); "
                                           "done; printf E >&2",
                                     NULL)),
                     RUN_STARTED);
    req *rq = wait_end(fx, 1);
    assert_int_equal(rq->outlen, 2000);
    assert_int_equal(strspn(rq->out, "x"), 2000);
    assert_string_equal(rq->err, "E");
    assert_int_equal(rq->rc, 0);
    assert_int_equal(rq->data_frames, 2); /* stdout's 2,000 bytes, then stderr's one */
    assert_int_equal(rq->first_data_batch, rq->end_batch);
    fixture_free(fx);
}

static int file_exists(fixture *fx, const void *arg)
{
    (void)fx;
    return access((const char *)arg, F_OK) == 0;
}

/* A command that writes fast: a full pipe is read in one go into several
 * frames, queued as one push; each frame's payload stays within the chunk
 * that makes the frame two whole TLS records, the window holds, and every
 * byte arrives in order. */
static void a_full_pipe_is_read_as_several_frames(void **state)
{
    char dir[] = "/tmp/runner-bulk-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char marker[64], script[256];
    snprintf(marker, sizeof(marker), "%s/wrote", dir);
    /* 64 KiB fills the pipe (the agent reads nothing without window); the
     * marker says it is all there; then more, past the pipe's size */
    snprintf(script, sizeof(script),
             "head -c 65536 /dev/zero | tr '\\0' x; touch %s; head -c 400000 /dev/zero | tr '\\0' x",
             marker);
    fixture *fx = fixture_new_sink("/bin/sh", 4, 1 << 22, 1 << 22, 0, 1);
    fx->reqs[1].bulk = 1;
    assert_int_equal(exec_held(fx, 1, 20, 0, 0, 0, words("-c", script, NULL)), RUN_STARTED);
    pump_until(fx, file_exists, marker);
    fx->reqs[1].window = 1 << 21;
    assert_int_equal(agent_runner_credit(fx->r, fx->gen, 1, 1 << 21), 0);
    req *rq = wait_end(fx, 1);
    assert_int_equal(rq->rc, 0);
    assert_int_equal(rq->bulk_bytes, 465536);
    assert_int_equal(rq->bytes_out, 465536);
    /* the full pipe's first 64 KiB: whole chunks, each frame two TLS records */
    assert_int_equal(rq->max_payload, AGENT_READ_CHUNK);
    assert_int_equal(PROTO_DATA_HDR + AGENT_READ_CHUNK + WS_FRAME_HEAD_16, 2 * 16384);
    assert_true(rq->max_batch_frames >= 2);
    fixture_free(fx);
    unlink(marker);
    rmdir(dir);
}

/* Held bytes use the window; when it runs out they go at once, or the server
 * (which credits only output it has) and the agent would wait on each other. */
static void hold_sends_when_the_window_runs_out(void **state)
{
    fixture *fx = fixture_new_sink("/bin/sh", 4, 1 << 20, 1 << 20, 0, 1);
    assert_int_equal(exec_held(fx, 1, 10, 0, 100, 64 * 1024,
                               words("-c", "printf '%0300d' 5", NULL)),
                     RUN_STARTED);
    wait_stdout(fx, 1, 100);
    assert_false(fx->reqs[1].ended);
    fx->reqs[1].window += 1000;
    assert_int_equal(agent_runner_credit(fx->r, fx->gen, 1, 1000), 0);
    req *rq = wait_end(fx, 1);
    assert_int_equal(rq->outlen, 300);
    assert_int_equal(rq->out[299], '5');
    fixture_free(fx);
}

static uint64_t stdout_bytes_metric(void)
{
    size_t len;
    char *m = metrics_render(&len);
    assert_non_null(m);
    const char *k = strstr(m, "aurora_agent_output_bytes_total{channel=\"stdout\"} ");
    assert_non_null(k);
    uint64_t v = strtoull(strchr(k, '}') + 2, NULL, 10);
    free(m);
    return v;
}

/* A connection that drops while output is held: nothing is delivered and
 * the held frames are freed (the sanitizer's leak check holds the latter). */
static void held_output_dropped_with_its_connection(void **state)
{
    fixture *fx = fixture_new_sink("/bin/sh", 4, 1 << 20, 1 << 20, 0, 1);
    uint64_t before = stdout_bytes_metric();
    assert_int_equal(exec_held(fx, 1, 30, 0, PROTO_DEFAULT_WINDOW, 64 * 1024,
                               words("-c", "printf held; exec sleep 60", NULL)),
                     RUN_STARTED);
    /* the job has read (and holds) the 4 bytes once they are counted */
    int64_t deadline = now_ms() + WAIT_MS;
    while (stdout_bytes_metric() < before + 4) {
        assert_true(now_ms() < deadline);
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    uint64_t old = fx->gen;
    fx->gen = old + 1;
    agent_outq_reset(fx->q, fx->gen);
    agent_runner_drop(fx->r, old);
    pump_until(fx, all_idle, NULL);
    assert_false(fx->reqs[1].ended);
    assert_int_equal(fx->reqs[1].outlen, 0);
    assert_int_equal(fx->foreign, 0);
    fixture_free(fx);
}

static int setup(void **state)
{
    log_setup("agent", "warn", "text");
    /* orphans of the test's commands (a shell's background sleep) come to us */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(echo_output_and_exec_end),
        cmocka_unit_test(exit_code_and_stderr_channel),
        cmocka_unit_test(child_never_sees_the_agent_token),
        cmocka_unit_test(credit_window_bounds_output),
        cmocka_unit_test(zero_window_waits_for_credit),
        cmocka_unit_test(output_cap_truncates),
        cmocka_unit_test(timeout_kills_the_process_group),
        cmocka_unit_test(timeout_escalates_to_sigkill),
        cmocka_unit_test(cancel_ends_with_130),
        cmocka_unit_test(leader_that_leaves_its_group_is_still_stopped),
        cmocka_unit_test(exit_reported_when_an_escaped_process_holds_the_output),
        cmocka_unit_test(concurrency_slots),
        cmocka_unit_test(shutdown_refuses_and_cancels),
        cmocka_unit_test(legacy_responses_wait_for_room_holding_their_slots),
        cmocka_unit_test(legacy_response_waiting_for_room_dropped_with_its_connection),
        cmocka_unit_test(spawn_failure_is_reported),
        cmocka_unit_test(legacy_command_response),
        cmocka_unit_test(full_queue_pauses_and_resumes),
        cmocka_unit_test(two_runners_coexist),
        cmocka_unit_test(free_with_running_job),
        cmocka_unit_test(job_threads_are_kept_then_leave),
        cmocka_unit_test(a_kept_thread_wakes_each_job_it_runs),
        cmocka_unit_test(held_output_crosses_with_exec_end),
        cmocka_unit_test(hold_sends_what_passes_its_size),
        cmocka_unit_test(hold_sends_when_the_window_runs_out),
        cmocka_unit_test(held_trickle_fills_one_frame),
        cmocka_unit_test(held_output_dropped_with_its_connection),
        cmocka_unit_test(a_full_pipe_is_read_as_several_frames),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
