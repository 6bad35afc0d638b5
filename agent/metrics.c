/* metrics.c — counters, gauges and a histogram in Prometheus text format. */
#include "metrics.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "proto.h"

static const char *const kind_names[MK__N] = {"kubectl", "cloud_exec", "other"};
static const char *const result_names[MR__N] = {
    "success", "failure", "timeout", "cancelled", "output_limit", "spawn_failed",
    "policy_denied", "busy", "shutting_down", "bad_request", "dropped"};
static const char *const state_names[MS__N] = {"disconnected", "resolving", "connecting",
                                               "connected"};
/* upper bounds in ms; +Inf is implicit */
static const int64_t bucket_ms[] = {50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
                                    60000, 120000, 300000};
#define NBUCKETS (sizeof(bucket_ms) / sizeof(bucket_ms[0]))

static struct {
    char version[96];
    char mode[16];
    atomic_int state;
    atomic_uint_fast64_t connects, reconnects, denials, pauses;
    atomic_int reading_paused;
    atomic_uint_fast64_t commands[MK__N][MR__N];
    atomic_uint_fast64_t hist[MK__N][NBUCKETS + 1]; /* non-cumulative; last = +Inf */
    atomic_uint_fast64_t hist_count[MK__N];
    atomic_uint_fast64_t hist_sum_ms[MK__N];
    atomic_int_fast64_t in_flight;
    atomic_uint_fast64_t bytes[2];
    atomic_int sandbox_set, landlock_abi, iso_fs, iso_net, iso_scoped, iso_uid;
} M;

static void label_copy(char *dst, size_t n, const char *s)
{
    size_t k = 0;
    for (; s && *s && k + 1 < n; s++) {
        unsigned char c = (unsigned char)*s;
        /* label values: escape nothing, just keep them printable and quote-free */
        dst[k++] = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? (char)c : '_';
    }
    dst[k] = '\0';
}

void metrics_init(const char *version, const char *policy_mode)
{
    label_copy(M.version, sizeof(M.version), version ? version : "");
    label_copy(M.mode, sizeof(M.mode), policy_mode ? policy_mode : "");
}

metrics_kind metrics_kind_of(const char *kind)
{
    if (!kind || !strcmp(kind, "kubectl"))
        return MK_KUBECTL;
    if (!strcmp(kind, "cloud_exec"))
        return MK_CLOUD_EXEC;
    return MK_OTHER;
}

metrics_result metrics_result_of(const char *code, int rc)
{
    if (!code || !*code)
        return rc == 0 ? MR_SUCCESS : MR_FAILURE;
    if (!strcmp(code, EC_TIMEOUT))
        return MR_TIMEOUT;
    if (!strcmp(code, EC_CANCELLED))
        return MR_CANCELLED;
    if (!strcmp(code, EC_OUTPUT_LIMIT))
        return MR_OUTPUT_LIMIT;
    if (!strcmp(code, EC_SPAWN_FAILED))
        return MR_SPAWN_FAILED;
    if (!strcmp(code, EC_BUSY))
        return MR_BUSY;
    if (!strcmp(code, EC_SHUTTING_DOWN))
        return MR_SHUTTING_DOWN;
    if (!strcmp(code, "POLICY_DENIED"))
        return MR_POLICY_DENIED;
    return MR_BAD_REQUEST;
}

void metrics_command(metrics_kind k, metrics_result r, int64_t duration_ms)
{
    if ((unsigned)k >= MK__N || (unsigned)r >= MR__N)
        return;
    atomic_fetch_add_explicit(&M.commands[k][r], 1, memory_order_relaxed);
    if (duration_ms < 0)
        return;
    size_t b = 0;
    while (b < NBUCKETS && duration_ms > bucket_ms[b])
        b++;
    atomic_fetch_add_explicit(&M.hist[k][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&M.hist_count[k], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&M.hist_sum_ms[k], (uint_fast64_t)duration_ms,
                              memory_order_relaxed);
}

void metrics_in_flight(int delta)
{
    atomic_fetch_add_explicit(&M.in_flight, delta, memory_order_relaxed);
}

void metrics_bytes(int channel, int64_t n)
{
    if (n > 0 && (channel == 1 || channel == 2))
        atomic_fetch_add_explicit(&M.bytes[channel - 1], (uint_fast64_t)n, memory_order_relaxed);
}

void metrics_policy_denial(void)
{
    atomic_fetch_add_explicit(&M.denials, 1, memory_order_relaxed);
}

void metrics_reading_paused(int paused)
{
    if (paused && !atomic_exchange(&M.reading_paused, 1))
        atomic_fetch_add_explicit(&M.pauses, 1, memory_order_relaxed);
    else if (!paused)
        atomic_store(&M.reading_paused, 0);
}

void metrics_state_set(metrics_state s)
{
    atomic_store(&M.state, (int)s);
}

void metrics_connected(void)
{
    atomic_fetch_add_explicit(&M.connects, 1, memory_order_relaxed);
}

void metrics_reconnect(void)
{
    atomic_fetch_add_explicit(&M.reconnects, 1, memory_order_relaxed);
}

void metrics_sandbox(int landlock_abi, int filesystem, int network, int scoped, int uid_sep)
{
    atomic_store(&M.landlock_abi, landlock_abi);
    atomic_store(&M.iso_fs, filesystem != 0);
    atomic_store(&M.iso_net, network != 0);
    atomic_store(&M.iso_scoped, scoped != 0);
    atomic_store(&M.iso_uid, uid_sep != 0);
    atomic_store(&M.sandbox_set, 1);
}

/* ---- rendering ------------------------------------------------------------- */

static void out(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

static void head(buf_t *b, const char *name, const char *type, const char *help)
{
    out(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static unsigned long long ld(atomic_uint_fast64_t *v)
{
    return (unsigned long long)atomic_load_explicit(v, memory_order_relaxed);
}

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "re");
    if (!f)
        return -1;
    long size = 0, res = -1;
    if (fscanf(f, "%ld %ld", &size, &res) != 2)
        res = -1;
    fclose(f);
    return res < 0 ? -1 : res * sysconf(_SC_PAGESIZE);
}

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

char *metrics_render(size_t *len)
{
    buf_t b;
    buf_init(&b);
    head(&b, "aurora_agent_info", "gauge", "Agent version and command policy mode.");
    out(&b, "aurora_agent_info{version=\"%s\",policy_mode=\"%s\"} 1\n", M.version, M.mode);

    int st = atomic_load(&M.state);
    head(&b, "aurora_agent_connected", "gauge",
         "1 while the tunnel to the server is up and registered.");
    out(&b, "aurora_agent_connected %d\n", st == MS_CONNECTED);
    head(&b, "aurora_agent_connection_state", "gauge", "Tunnel state (1 for the current one).");
    for (int s = 0; s < MS__N; s++)
        out(&b, "aurora_agent_connection_state{state=\"%s\"} %d\n", state_names[s], st == s);
    head(&b, "aurora_agent_connects_total", "counter", "Connections established.");
    out(&b, "aurora_agent_connects_total %llu\n", ld(&M.connects));
    head(&b, "aurora_agent_reconnects_total", "counter",
         "Reconnect attempts scheduled after a lost or failed connection.");
    out(&b, "aurora_agent_reconnects_total %llu\n", ld(&M.reconnects));

    head(&b, "aurora_agent_commands_total", "counter", "Commands by kind and result.");
    for (int k = 0; k < MK__N; k++)
        for (int r = 0; r < MR__N; r++) {
            unsigned long long v = ld(&M.commands[k][r]);
            if (v || k == MK_KUBECTL)
                out(&b, "aurora_agent_commands_total{kind=\"%s\",result=\"%s\"} %llu\n",
                    kind_names[k], result_names[r], v);
        }
    head(&b, "aurora_agent_command_duration_seconds", "histogram",
         "Run time of the commands the agent executed.");
    for (int k = 0; k < MK__N; k++) {
        unsigned long long count = ld(&M.hist_count[k]);
        if (!count && k != MK_KUBECTL)
            continue;
        unsigned long long cum = 0;
        for (size_t i = 0; i <= NBUCKETS; i++) {
            cum += ld(&M.hist[k][i]);
            if (i < NBUCKETS)
                out(&b, "aurora_agent_command_duration_seconds_bucket{kind=\"%s\",le=\"%g\"} %llu\n",
                    kind_names[k], (double)bucket_ms[i] / 1000.0, cum);
            else
                out(&b, "aurora_agent_command_duration_seconds_bucket{kind=\"%s\",le=\"+Inf\"} %llu\n",
                    kind_names[k], cum);
        }
        out(&b, "aurora_agent_command_duration_seconds_sum{kind=\"%s\"} %.3f\n", kind_names[k],
            (double)ld(&M.hist_sum_ms[k]) / 1000.0);
        out(&b, "aurora_agent_command_duration_seconds_count{kind=\"%s\"} %llu\n", kind_names[k],
            count);
    }
    head(&b, "aurora_agent_commands_in_flight", "gauge", "Commands running now.");
    long long inf = (long long)atomic_load_explicit(&M.in_flight, memory_order_relaxed);
    out(&b, "aurora_agent_commands_in_flight %lld\n", inf < 0 ? 0 : inf);
    head(&b, "aurora_agent_output_bytes_total", "counter",
         "Command output bytes sent to the server, by channel.");
    out(&b, "aurora_agent_output_bytes_total{channel=\"stdout\"} %llu\n", ld(&M.bytes[0]));
    out(&b, "aurora_agent_output_bytes_total{channel=\"stderr\"} %llu\n", ld(&M.bytes[1]));
    head(&b, "aurora_agent_policy_denials_total", "counter",
         "Commands refused by the agent's command policy.");
    out(&b, "aurora_agent_policy_denials_total %llu\n", ld(&M.denials));
    head(&b, "aurora_agent_log_lines_dropped_total", "counter",
         "Log lines dropped because stderr's reader was not reading.");
    out(&b, "aurora_agent_log_lines_dropped_total %llu\n", log_lines_dropped());
    head(&b, "aurora_agent_reading_paused", "gauge",
         "1 while the server is not reading what the agent sends and the agent has stopped "
         "reading requests until it does.");
    out(&b, "aurora_agent_reading_paused %d\n", atomic_load(&M.reading_paused));
    head(&b, "aurora_agent_reading_pauses_total", "counter",
         "Times the agent stopped reading requests because the server was not reading.");
    out(&b, "aurora_agent_reading_pauses_total %llu\n", ld(&M.pauses));

    if (atomic_load(&M.sandbox_set)) {
        head(&b, "aurora_agent_sandbox_landlock_abi", "gauge",
             "Landlock ABI version the kernel offers cloud commands (0: no Landlock).");
        out(&b, "aurora_agent_sandbox_landlock_abi %d\n", atomic_load(&M.landlock_abi));
        head(&b, "aurora_agent_sandbox_isolation", "gauge",
             "1 if the layer isolates cloud commands: filesystem and network (Landlock rules), "
             "scoped (signals, abstract sockets), uid (a uid per command).");
        out(&b, "aurora_agent_sandbox_isolation{layer=\"filesystem\"} %d\n", atomic_load(&M.iso_fs));
        out(&b, "aurora_agent_sandbox_isolation{layer=\"network\"} %d\n", atomic_load(&M.iso_net));
        out(&b, "aurora_agent_sandbox_isolation{layer=\"scoped\"} %d\n",
            atomic_load(&M.iso_scoped));
        out(&b, "aurora_agent_sandbox_isolation{layer=\"uid\"} %d\n", atomic_load(&M.iso_uid));
    }

    long rss = rss_bytes();
    if (rss >= 0) {
        head(&b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        out(&b, "process_resident_memory_bytes %ld\n", rss);
    }
    int fds = open_fds();
    if (fds >= 0) {
        head(&b, "process_open_fds", "gauge", "Number of open file descriptors.");
        out(&b, "process_open_fds %d\n", fds);
    }
    size_t n = 0;
    char *s = buf_detach(&b, &n);
    if (s && len)
        *len = n;
    return s;
}
