/* instance.c — instance registration, lease renewal and the sweep of audit
 * rows left "started" by dead instances; see instance.h. */
#include "instance.h"

#include <errno.h>
#include <libwebsockets.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "token.h"
#include "worker.h"

/* Process-wide on purpose: an instance stands for this process (its pid in
 * this process space), and the audit rows of every command it runs carry its
 * id (instance_id), whichever part of the server writes them. */
static struct {
    store_instance self;
    int lease;                  /* seconds */
    struct lws_context *ctx;
    workers *pool;              /* where renewals run */
    lws_sorted_usec_list_t sul;
    atomic_int tick_running;    /* a renewal job is queued or running */
} I;

const char *instance_id(void) { return I.self.id; }

/* Boot id + PID namespace: two processes that agree on both see the same
 * pids.  "" when either cannot be read (then only the lease counts). */
static void read_proc_space(char *out, size_t cap)
{
    char boot[64] = "", ns[64] = "";
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        if (!fgets(boot, sizeof(boot), f))
            boot[0] = '\0';
        fclose(f);
    }
    boot[strcspn(boot, "\r\n")] = '\0';
    ssize_t n = readlink("/proc/self/ns/pid", ns, sizeof(ns) - 1);
    ns[n > 0 ? n : 0] = '\0';
    out[0] = '\0';
    if (boot[0] && ns[0])
        snprintf(out, cap, "%s/%s", boot, ns);
}

/* An instance of this process space whose pid is free, or is ours (we
 * replaced it), is certainly gone. */
static int certainly_gone(const store_instance *x)
{
    if (x->pid <= 0 || x->pid > INT32_MAX)
        return 0;
    if ((pid_t)x->pid == getpid())
        return 1;
    return kill((pid_t)x->pid, 0) < 0 && errno == ESRCH;
}

int64_t instance_sweep(store_t *st, int64_t now)
{
    int64_t live_since = now - I.lease;
    if (I.self.proc_space[0]) {
        store_instance *xs = NULL;
        size_t n = 0;
        if (store_instance_list_live(st, I.self.proc_space, live_since, &xs, &n) != STORE_OK) {
            log_error("audit sweep: listing server instances failed: %s", store_errmsg(st));
        } else {
            for (size_t i = 0; i < n; i++) {
                if (!strcmp(xs[i].id, I.self.id) || !certainly_gone(&xs[i]))
                    continue;
                if (store_instance_retire(st, xs[i].id) == STORE_OK)
                    log_info("server instance %s (pid %lld on this host) is gone", xs[i].id,
                             (long long)xs[i].pid);
            }
            free(xs);
        }
    }
    int64_t closed = 0;
    if (store_audit_sweep(st, I.self.id, live_since, now, &closed) != STORE_OK) {
        log_error("audit sweep failed: %s", store_errmsg(st));
        return -1;
    }
    if (closed > 0)
        log_warn("audit: %lld command(s) left running by server instances that died are "
                 "recorded as interrupted",
                 (long long)closed);
    /* Their agent sessions died with them: the connection rows they counted
     * read disconnected (the agents connect again, to a live replica). */
    int64_t reset = 0;
    if (store_connection_reset_dead(st, I.self.id, live_since, now, &reset) != STORE_OK)
        log_error("connection sweep failed: %s", store_errmsg(st));
    else if (reset > 0)
        log_info("%lld connection(s) held by server instances that are gone reset",
                 (long long)reset);
    return closed;
}

int instance_start(store_t *st, const server_config *cfg, char *err, size_t errlen)
{
    memset(&I.self, 0, sizeof(I.self));
    I.lease = cfg->instance_lease;
    if (id_generate("ins_", I.self.id, sizeof(I.self.id)) < 0) {
        snprintf(err, errlen, "cannot generate a server instance id");
        return -1;
    }
    if (gethostname(I.self.hostname, sizeof(I.self.hostname) - 1) < 0)
        I.self.hostname[0] = '\0';
    I.self.hostname[sizeof(I.self.hostname) - 1] = '\0';
    read_proc_space(I.self.proc_space, sizeof(I.self.proc_space));
    I.self.pid = getpid();
    I.self.started_at = I.self.heartbeat_at = (int64_t)time(NULL);
    if (store_instance_register(st, &I.self) != STORE_OK) {
        snprintf(err, errlen, "cannot register this server instance in the state store: %s",
                 store_errmsg(st));
        I.self.id[0] = '\0';
        return -1;
    }
    log_info("server instance %s (lease %d s)", I.self.id, I.lease);
    instance_sweep(st, (int64_t)time(NULL));
    return 0;
}

/* ---- periodic renewal (worker) ------------------------------------------------ */

static void tick_run(worker_ctx *w, void *arg)
{
    (void)arg;
    int64_t now = (int64_t)time(NULL);
    int rc = store_instance_heartbeat(w->store, I.self.id, now);
    if (rc == STORE_NOT_FOUND) {
        /* Taken for dead (paused past the lease) and forgotten: come back. */
        log_warn("server instance %s had lost its lease; registering again", I.self.id);
        store_instance again = I.self;
        again.heartbeat_at = now;
        rc = store_instance_register(w->store, &again);
    }
    if (rc != STORE_OK)
        log_error("server instance %s: renewing the lease failed: %s", I.self.id,
                  store_errmsg(w->store));
    instance_sweep(w->store, now);
}

static void tick_done(void *arg)
{
    (void)arg;
    atomic_store(&I.tick_running, 0);
}

static lws_usec_t period_us(void)
{
    int s = I.lease / 3;
    return (lws_usec_t)(s > 0 ? s : 1) * LWS_USEC_PER_SEC;
}

static void on_tick(lws_sorted_usec_list_t *sul)
{
    (void)sul;
    /* One renewal at a time: a slow store must not pile them up. */
    if (!atomic_exchange(&I.tick_running, 1) &&
        workers_submit(I.pool, WORKER_POOL_STORE, tick_run, tick_done, NULL) < 0) {
        atomic_store(&I.tick_running, 0);
        log_warn("server instance %s: lease renewal skipped (worker queue full)", I.self.id);
    }
    lws_sul_schedule(I.ctx, 0, &I.sul, on_tick, period_us());
}

void instance_schedule(struct lws_context *ctx, workers *pool)
{
    I.ctx = ctx;
    I.pool = pool;
    lws_sul_schedule(ctx, 0, &I.sul, on_tick, period_us());
}

void instance_stop(const server_config *cfg)
{
    if (I.ctx)
        lws_sul_cancel(&I.sul);
    I.ctx = NULL;
    I.pool = NULL;
    if (!I.self.id[0])
        return;
    store_t *st = NULL;
    char err[256];
    if (store_open(cfg->database_url, &st, err, sizeof(err)) != STORE_OK) {
        log_warn("server instance %s: cannot mark it stopped (%s); its lease will lapse",
                 I.self.id, err);
        return;
    }
    if (store_instance_retire(st, I.self.id) != STORE_OK)
        log_warn("server instance %s: cannot mark it stopped: %s", I.self.id, store_errmsg(st));
    store_close(st);
}
