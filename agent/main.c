/* main.c — aurora-agent: configuration, signals, the event loop, teardown. */
#include <errno.h>
#include <fcntl.h>
#include <libwebsockets.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "agent_config.h"
#include "footprint.h"
#include "health.h"
#include "log.h"
#include "metrics.h"
#include "outq.h"
#include "runner.h"
#include "sandbox.h"
#include "tunnel.h"

#define OUTQ_CAP (4u * 1024 * 1024)
/* Control frames (refusals, heartbeats) waiting for the server: at this
 * much the tunnel stops reading its requests until they drain (outq.h).
 * About a thousand exec_end refusals; a server that reads lets it never fill. */
#define OUTQ_CTL_CAP (256u * 1024)
/* fds libwebsockets serves: the tunnel, the health and metrics listeners and
 * their clients, its cancel pipe.  Without a limit it sizes its fd tables by
 * RLIMIT_NOFILE (1M in many containers: 16 MiB of tables); with one it uses a
 * small table and a sparse lookup, so fd numbers above it are fine. */
#define LWS_FD_LIMIT 256u

static struct lws_context *g_ctx;

/* The agent's parts, created here and wired together through these
 * callbacks: the queue wakes the event loop and the runner, the runner wakes
 * the event loop.  Set before any thread that could call back is started. */
typedef struct {
    agent_outq *outq;
    agent_runner *runner;
    agent_tunnel *tunnel;
} agent_parts;

/* for /ready (health.h asks without an argument) */
static agent_tunnel *g_tunnel;

/* ---- signals: a dedicated thread sigwait()s, so no handler runs at all ---- */

static pthread_t sig_thread;
static int sig_thread_started;

static sigset_t handled_signals;

static void *signal_main(void *arg)
{
    agent_tunnel *tunnel = arg;
    for (;;) {
        int sig = 0;
        if (sigwait(&handled_signals, &sig) != 0)
            continue;
        if (sig == SIGUSR2) /* our own "stop listening" */
            break;
        if (sig == SIGHUP) {
            log_info("SIGHUP ignored (restart the agent to reload settings)");
            continue;
        }
        log_info("received %s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        agent_tunnel_request_stop(tunnel);
    }
    return NULL;
}

static void signals_block(void)
{
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&handled_signals);
    sigaddset(&handled_signals, SIGTERM);
    sigaddset(&handled_signals, SIGINT);
    sigaddset(&handled_signals, SIGHUP);
    sigaddset(&handled_signals, SIGUSR2);
    /* blocked in every thread created from here on; children get a clean mask */
    pthread_sigmask(SIG_BLOCK, &handled_signals, NULL);
}

static int signals_start(agent_tunnel *tunnel)
{
    if (pthread_create(&sig_thread, NULL, signal_main, tunnel) != 0)
        return -1;
    sig_thread_started = 1;
    return 0;
}

static void signals_stop(void)
{
    if (!sig_thread_started)
        return;
    pthread_kill(sig_thread, SIGUSR2);
    pthread_join(sig_thread, NULL);
    sig_thread_started = 0;
}

/* ---- glue ------------------------------------------------------------------ */

static void wake_loop(void *arg)
{
    agent_parts *parts = arg;
    if (parts->tunnel)
        agent_tunnel_wake(parts->tunnel);
}

static void room_for_runner(void *arg)
{
    agent_parts *parts = arg;
    if (parts->runner)
        agent_runner_wake_room(parts->runner);
}

static int tunnel_ready(void)
{
    return g_tunnel && agent_tunnel_ready(g_tunnel);
}

static void lws_log_to_ours(int level, const char *line)
{
    char buf[512];
    size_t n = strlen(line);
    if (n >= sizeof(buf))
        n = sizeof(buf) - 1;
    memcpy(buf, line, n);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    if (level & LLL_ERR)
        log_warn("lws: %s", buf);
    else if (level & LLL_WARN)
        log_info("lws: %s", buf);
    else
        log_debug("lws: %s", buf);
}

/* 0, 1 and 2 must be open so that no pipe or socket ends up as a child's stdio. */
static void ensure_std_fds(void)
{
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
            int n = open("/dev/null", O_RDWR);
            if (n >= 0 && n != fd) {
                dup2(n, fd);
                close(n);
            }
        }
    }
}

int main(int argc, char **argv)
{
    footprint_at_start();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            agent_config_help(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--version")) {
            const char *v = getenv("AGENT_VERSION");
            printf("%s\n", v && *v ? v : AGENT_DEFAULT_VERSION);
            return 0;
        }
        fprintf(stderr, "aurora-agent: unknown argument %s (try --help)\n", argv[i]);
        return 2;
    }
    ensure_std_fds();

    const char *lvl = getenv("AURORA_LOG_LEVEL"), *fmt = getenv("AURORA_LOG_FORMAT");
    if (log_setup("agent", lvl && *lvl ? lvl : "info", fmt && *fmt ? fmt : "text") != 0)
        log_setup("agent", "info", "text");

    agent_config cfg;
    char err[512];
    if (agent_config_load(&cfg, err, sizeof(err)) != 0) {
        log_error("config: %s", err);
        return 2;
    }
    if (log_setup("agent", cfg.log_level, cfg.log_format) != 0) {
        log_error("config: AURORA_LOG_LEVEL must be debug|info|warn|error and "
                  "AURORA_LOG_FORMAT text|json");
        agent_config_free(&cfg);
        return 2;
    }
    /* The tunnel's loop never waits for whoever reads stderr (log.h). */
    log_never_block(1);
    log_info("%s starting, cluster %s, max_concurrent %d, timeout_max %ds, "
             "max_output %lld, policy %s",
             cfg.version, cfg.cluster_id, cfg.max_concurrent, cfg.command_timeout_max,
             (long long)cfg.max_output, agent_policy_mode_name(cfg.policy.mode));
    if (cfg.policy.mode == POLICY_CUSTOM && cfg.policy.nallow == 0)
        log_warn("config: custom policy with an empty AURORA_POLICY_ALLOW: every command will "
                 "be refused");
    metrics_init(cfg.version, agent_policy_mode_name(cfg.policy.mode));

    /* Children of the same uid (kubectl; cloud commands without uid
     * separation) must not read the token from /proc/<agent>/environ or
     * /proc/<agent>/mem: a non-dumpable process's /proc files belong to root. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        log_warn("cannot mark the agent non-dumpable: %s", strerror(errno));
    if (cfg.cloud.enabled) {
        char serr[512], desc[400];
        if (sandbox_init(&cfg.sandbox, serr, sizeof(serr)) != 0) {
            log_error("cloud_exec sandbox: %s; cloud_exec commands will fail with SPAWN_FAILED "
                      "until this is fixed (kubectl is not affected)", serr);
            sandbox_set_unavailable(serr);
        } else {
            sandbox_describe(desc, sizeof(desc));
            log_info("cloud_exec enabled: %d program%s, sandbox %s", cfg.cloud.nprogs,
                     cfg.cloud.nprogs == 1 ? "" : "s", desc);
            agent_cloud_probe(&cfg.cloud); /* each CLI's path and version, logged */
            if (sandbox_uid_separation() && sandbox_uid_count() < cfg.max_concurrent)
                log_warn("cloud_exec: AURORA_SANDBOX_UID_RANGE has %ld uids, fewer than "
                         "AURORA_MAX_CONCURRENT (%d): cloud commands beyond it fail",
                         sandbox_uid_count(), cfg.max_concurrent);
            if (!sandbox_uid_separation())
                log_warn("cloud_exec: commands run as the agent's own uid %u (uid separation "
                         "needs the agent to run as root): concurrent cloud commands are not "
                         "isolated from each other (see agent/sandbox.h)",
                         (unsigned)geteuid());
        }
    } else {
        log_info("cloud_exec disabled (AURORA_CLOUD_EXEC=disabled)");
    }

    signals_block();
    int level = LLL_ERR | LLL_WARN;
    if (log_enabled(LOG_DEBUG))
        level |= LLL_NOTICE;
    lws_set_log_level(level, lws_log_to_ours);

    int rc = 1;
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.gid = -1;
    info.uid = -1;
    info.fd_limit_per_thread = LWS_FD_LIMIT;
    g_ctx = lws_create_context(&info);
    if (!g_ctx) {
        log_error("cannot create the libwebsockets context");
        agent_config_free(&cfg);
        return 1;
    }

    agent_parts parts = {NULL, NULL, NULL};
    agent_outq_opts qo = {
        .cap = OUTQ_CAP,
        .ctl_cap = OUTQ_CTL_CAP,
        .on_push = wake_loop,
        .on_push_arg = &parts,
        .on_room = room_for_runner,
        .on_room_arg = &parts,
    };
    parts.outq = agent_outq_new(&qo);
    agent_runner_opts ro = {
        .kubectl_path = cfg.kubectl_path,
        .max_concurrent = cfg.max_concurrent,
        .timeout_max = cfg.command_timeout_max,
        .max_output = cfg.max_output,
        .outq = parts.outq,
        .notify = wake_loop,
        .notify_arg = &parts,
    };
    if (parts.outq)
        parts.runner = agent_runner_new(&ro);
    if (parts.runner)
        parts.tunnel = agent_tunnel_new(&cfg, parts.runner, parts.outq);
    if (!parts.tunnel) {
        log_error("out of memory");
        goto out;
    }
    g_tunnel = parts.tunnel;
    if (cfg.health_port > 0 &&
        agent_health_start(g_ctx, cfg.health_bind, cfg.health_port,
                           HEALTH_SERVE_PROBES |
                               (cfg.metrics_port == cfg.health_port ? HEALTH_SERVE_METRICS : 0),
                           tunnel_ready) != 0)
        goto out;
    if (cfg.metrics_port > 0 && cfg.metrics_port != cfg.health_port &&
        agent_health_start(g_ctx, cfg.health_bind, cfg.metrics_port, HEALTH_SERVE_METRICS,
                           tunnel_ready) != 0)
        goto out;
    if (agent_tunnel_start(parts.tunnel, g_ctx) != 0)
        goto out;
    if (signals_start(parts.tunnel) != 0) {
        log_error("cannot start the signal thread");
        goto out;
    }

    int started_up = 0;
    while (!agent_tunnel_done(parts.tunnel)) {
        if (lws_service(g_ctx, 0) < 0) {
            log_error("event loop failed");
            goto out;
        }
        if (!started_up && agent_tunnel_ready(parts.tunnel)) {
            started_up = 1;
            footprint_after_startup();
        }
    }
    rc = 0;
out:
    agent_runner_stop(parts.runner); /* kills anything left, joins every job thread */
    signals_stop();
    agent_tunnel_teardown(parts.tunnel);
    lws_context_destroy(g_ctx);
    g_ctx = NULL;
    /* the context's last callbacks (CLIENT_CLOSED) still used all three */
    g_tunnel = NULL;
    agent_tunnel_free(parts.tunnel);
    agent_runner_free(parts.runner);
    agent_outq_free(parts.outq);
    sandbox_shutdown();
    log_info("stopped");
    agent_config_free(&cfg);
    return rc;
}
