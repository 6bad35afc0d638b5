/* server_prom.c — the server's metric families and the process and
 * worker-pool collectors; see server_metrics.h. */
#include "server_metrics.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "prom.h"
#include "worker.h"

static struct {
    prom_family_t *info, *agents, *opened, *closed, *inflight, *waiting;
    prom_family_t *commands, *command_s, *out_bytes;
    prom_family_t *http, *http_s, *webhooks;
    prom_family_t *store_s, *store_err, *store_fast, *secrets_s, *secrets_err, *secrets_fast;
    prom_family_t *accept_fail;
    prom_family_t *audit_retried, *audit_dropped;
    double start_time;
    struct workers *wp;
} M;

/* Store and secrets calls are short: finer buckets at the low end. */
static const double call_bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                      0.05,   0.1,   0.25,   0.5,   1,    5 };
/* Commands run from milliseconds to the 300 s ceiling. */
static const double command_bounds[] = { 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                         2.5,  5,     10,   30,  60,   120, 300 };

double sm_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- process figures, read from /proc at scrape time -------------------------- */

static long count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory stream's own descriptor */
}

static void process_collector(buf_t *out, void *arg)
{
    (void)arg;
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    unsigned long utime = 0, stime = 0, vsize = 0;
    long rss = 0;
    FILE *f = fopen("/proc/self/stat", "r");
    if (f) {
        char line[1024];
        if (fgets(line, sizeof(line), f)) {
            /* Fields after the command name, which may hold spaces and ')'. */
            char *p = strrchr(line, ')');
            if (p && sscanf(p + 2,
                            "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d "
                            "%*d %*d %*d %*u %lu %ld",
                            &utime, &stime, &vsize, &rss) != 4)
                utime = stime = vsize = 0, rss = 0;
        }
        fclose(f);
    }
    prom_write_header(out, "process_cpu_seconds_total", "User and system CPU time spent",
                         "counter");
    prom_write_sample(out, "process_cpu_seconds_total",
                         tick > 0 ? (double)(utime + stime) / (double)tick : 0, NULL);
    prom_write_header(out, "process_resident_memory_bytes", "Resident memory size", "gauge");
    prom_write_sample(out, "process_resident_memory_bytes", (double)rss * (double)page, NULL);
    prom_write_header(out, "process_virtual_memory_bytes", "Virtual memory size", "gauge");
    prom_write_sample(out, "process_virtual_memory_bytes", (double)vsize, NULL);
    prom_write_header(out, "process_open_fds", "Open file descriptors", "gauge");
    prom_write_sample(out, "process_open_fds", (double)count_fds(), NULL);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        prom_write_header(out, "process_max_fds", "Limit on open file descriptors", "gauge");
        prom_write_sample(out, "process_max_fds",
                             rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur, NULL);
    }
    prom_write_header(out, "process_start_time_seconds",
                         "Start time of the process since the Unix epoch", "gauge");
    prom_write_sample(out, "process_start_time_seconds", M.start_time, NULL);
}

static void workers_collector(buf_t *out, void *arg)
{
    (void)arg;
    if (!M.wp)
        return;
    static const char *names[WORKER_POOLS] = { "store", "outbound", "probe" };
    prom_write_header(out, "aurora_worker_queue_depth",
                         "Jobs waiting for a worker thread, by pool", "gauge");
    for (int p = 0; p < WORKER_POOLS; p++)
        prom_write_sample(out, "aurora_worker_queue_depth",
                             (double)workers_queued(M.wp, (worker_pool)p), "pool", names[p],
                             NULL);
    prom_write_header(out, "aurora_worker_jobs_parked",
                      "Jobs waiting, off the threads, for a place of their organization "
                      "(AURORA_OUTBOUND_PER_ORG), by pool",
                      "gauge");
    for (int p = 0; p < WORKER_POOLS; p++)
        prom_write_sample(out, "aurora_worker_jobs_parked",
                          (double)workers_parked(M.wp, (worker_pool)p), "pool", names[p], NULL);
}

static void log_collector(buf_t *out, void *arg)
{
    (void)arg;
    prom_write_header(out, "aurora_log_lines_dropped_total",
                      "Log lines dropped because stderr's reader was not reading",
                      "counter");
    prom_write_sample(out, "aurora_log_lines_dropped_total", (double)log_lines_dropped(), NULL);
}

void server_metrics_watch_workers(struct workers *wp) { M.wp = wp; }

void server_metrics_init(const char *version)
{
    if (M.info)
        return;
    static const char *const l_version[] = { "version" };
    static const char *const l_dialect[] = { "dialect" };
    static const char *const l_closed[] = { "dialect", "reason" };
    static const char *const l_cmd[] = { "kind", "outcome" };
    static const char *const l_kind[] = { "kind" };
    static const char *const l_http[] = { "method", "route", "status" };
    static const char *const l_http_s[] = { "method", "route" };
    static const char *const l_hook[] = { "source", "outcome" };
    static const char *const l_op[] = { "op" };
    static const char *const l_sec[] = { "backend", "op" };
    static const char *const l_reason[] = { "reason" };
    M.start_time = (double)time(NULL);
    M.agents = prom_family(PROM_GAUGE, "aurora_agents_connected",
                              "Agent sessions this server holds, by protocol dialect", 1,
                              l_dialect, NULL, 0);
    M.opened = prom_family(PROM_COUNTER, "aurora_agent_sessions_opened_total",
                              "Agent sessions opened (authenticated)", 1, l_dialect, NULL, 0);
    M.closed = prom_family(PROM_COUNTER, "aurora_agent_sessions_closed_total",
                              "Agent sessions closed, by reason", 2, l_closed, NULL, 0);
    M.inflight = prom_family(PROM_GAUGE, "aurora_agent_commands_inflight",
                                "Commands running at agents", 0, NULL, NULL, 0);
    M.waiting = prom_family(PROM_GAUGE, "aurora_agent_commands_waiting",
                               "Commands queued for a free slot at their agent", 0, NULL, NULL,
                               0);
    M.commands = prom_family(PROM_COUNTER, "aurora_commands_total",
                                "Commands finished, by kind and outcome", 2, l_cmd, NULL, 0);
    M.command_s = prom_family(PROM_HISTOGRAM, "aurora_command_duration_seconds",
                                 "Command duration from admission to the end of its output", 1,
                                 l_kind, command_bounds,
                                 (int)(sizeof(command_bounds) / sizeof(command_bounds[0])));
    M.out_bytes = prom_family(PROM_COUNTER, "aurora_command_output_bytes_total",
                                 "Command output bytes streamed to API clients", 1, l_kind, NULL,
                                 0);
    M.http = prom_family(PROM_COUNTER, "aurora_http_requests_total",
                            "HTTP requests answered, by method, route pattern and status", 3,
                            l_http, NULL, 0);
    M.http_s = prom_family(PROM_HISTOGRAM, "aurora_http_request_duration_seconds",
                              "HTTP request duration until the answer is complete", 2, l_http_s,
                              NULL, 0);
    M.webhooks = prom_family(PROM_COUNTER, "aurora_webhook_deliveries_total",
                                "Inbound webhook deliveries, by source and outcome", 2, l_hook,
                                NULL, 0);
    M.store_s = prom_family(PROM_HISTOGRAM, "aurora_store_call_duration_seconds",
                               "State store statement latency", 1, l_op, call_bounds,
                               (int)(sizeof(call_bounds) / sizeof(call_bounds[0])));
    M.store_err = prom_family(PROM_COUNTER, "aurora_store_errors_total",
                                 "State store statements that failed", 1, l_op, NULL, 0);
    M.store_fast = prom_family(PROM_COUNTER, "aurora_store_fast_failures_total",
                               "State store calls refused at once while the database did not "
                               "answer and another call was checking it", 0, NULL, NULL, 0);
    M.secrets_s = prom_family(PROM_HISTOGRAM, "aurora_secrets_call_duration_seconds",
                                 "Secrets backend call latency", 2, l_sec, call_bounds,
                                 (int)(sizeof(call_bounds) / sizeof(call_bounds[0])));
    M.secrets_err = prom_family(PROM_COUNTER, "aurora_secrets_errors_total",
                                   "Secrets backend calls that failed", 2, l_sec, NULL, 0);
    M.secrets_fast = prom_family(PROM_COUNTER, "aurora_secrets_fast_failures_total",
                                 "Secrets backend calls refused at once while the backend did "
                                 "not answer and another call was checking it", 0, NULL, NULL, 0);
    /* Label-less counters exist from the start at 0, so that rate() over
     * them has a series before the first refusal. */
    prom_add(M.store_fast, NULL, 0);
    prom_add(M.secrets_fast, NULL, 0);
    M.accept_fail = prom_family(PROM_COUNTER, "aurora_listener_accept_failures_total",
                                "Accepts on the shared port (AURORA_LISTEN_SHARE) that failed for "
                                "want of descriptors or memory; each pauses accepting for 100 ms",
                                1, l_reason, NULL, 0);
    M.audit_retried = prom_family(PROM_COUNTER, "aurora_audit_ends_retried_total",
                                  "Command audit completions, and rows of commands refused "
                                  "before they were admitted, the state store failed to write "
                                  "(down, locked, breaker open), kept to be written again; once "
                                  "per failed try",
                                  0, NULL, NULL, 0);
    M.audit_dropped = prom_family(PROM_COUNTER, "aurora_audit_ends_dropped_total",
                                  "Command audit completions (their rows stay 'started') and "
                                  "refused commands' rows (lost) given up while too many waited "
                                  "for the state store",
                                  0, NULL, NULL, 0);
    prom_add(M.audit_retried, NULL, 0);
    prom_add(M.audit_dropped, NULL, 0);
    prom_add_collector(process_collector, NULL);
    prom_add_collector(workers_collector, NULL);
    prom_add_collector(log_collector, NULL);
    /* Last: sm_* calls test it to know the families exist. */
    prom_family_t *info = prom_family(PROM_GAUGE, "aurora_server_info",
                                         "Build of this server", 1, l_version, NULL, 0);
    const char *v[] = { version };
    prom_set(info, v, 1);
    __atomic_store_n(&M.info, info, __ATOMIC_RELEASE);
}

static int ready(void) { return __atomic_load_n(&M.info, __ATOMIC_ACQUIRE) != NULL; }

static void status_text(int status, char out[8]) { snprintf(out, 8, "%d", status); }

void sm_http(const char *method, const char *route, int status, double seconds)
{
    if (!ready())
        return;
    char st[8];
    status_text(status, st);
    const char *v[] = { method, route, st };
    prom_add(M.http, v, 1);
    prom_observe(M.http_s, v, seconds);
}

void sm_session_opened(const char *dialect)
{
    if (!ready())
        return;
    const char *v[] = { dialect };
    prom_add(M.opened, v, 1);
    prom_add(M.agents, v, 1);
}

void sm_session_closed(const char *dialect, const char *reason)
{
    if (!ready())
        return;
    const char *v[] = { dialect, reason };
    prom_add(M.closed, v, 1);
    prom_add(M.agents, v, -1);
}

void sm_agent_commands(int inflight_delta, int waiting_delta)
{
    if (!ready())
        return;
    if (inflight_delta)
        prom_add(M.inflight, NULL, inflight_delta);
    if (waiting_delta)
        prom_add(M.waiting, NULL, waiting_delta);
}

void sm_command(const char *kind, const char *outcome, double seconds)
{
    if (!ready())
        return;
    const char *v[] = { kind, outcome };
    prom_add(M.commands, v, 1);
    prom_observe(M.command_s, v, seconds);
}

void sm_output_bytes(const char *kind, size_t n)
{
    if (!ready() || !n)
        return;
    const char *v[] = { kind };
    prom_add(M.out_bytes, v, (double)n);
}

void sm_webhook(const char *source, const char *outcome)
{
    if (!ready())
        return;
    const char *v[] = { source, outcome };
    prom_add(M.webhooks, v, 1);
}

void sm_store_call(const char *op, double seconds, int ok)
{
    if (!ready())
        return;
    const char *v[] = { op };
    prom_observe(M.store_s, v, seconds);
    if (!ok)
        prom_add(M.store_err, v, 1);
}

void sm_store_failed_fast(void)
{
    if (!ready())
        return;
    prom_add(M.store_fast, NULL, 1);
}

void sm_secrets_failed_fast(void)
{
    if (!ready())
        return;
    prom_add(M.secrets_fast, NULL, 1);
}

void sm_secrets_call(const char *backend, const char *op, double seconds, int ok)
{
    if (!ready())
        return;
    const char *v[] = { backend, op };
    prom_observe(M.secrets_s, v, seconds);
    if (!ok)
        prom_add(M.secrets_err, v, 1);
}

void sm_accept_failed(const char *reason)
{
    if (!ready())
        return;
    const char *v[] = { reason };
    prom_add(M.accept_fail, v, 1);
}

void sm_audit_ends_retried(size_t n)
{
    if (!ready())
        return;
    prom_add(M.audit_retried, NULL, (double)n);
}

void sm_audit_ends_dropped(size_t n)
{
    if (!ready())
        return;
    prom_add(M.audit_dropped, NULL, (double)n);
}
