/* conn_admission.c — connection admission on the server's lws context (see
 * conn_admission.h, admission.h). */
#include "conn_admission.h"

#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* Admission of connections to the main port (admission.h): refused at
 * accept beyond the pending-handshake cap or the accept rate.  A connection
 * is pending from its accept until its first HTTP request's headers are in
 * (TLS done and the request or upgrade read: the cheap part left is the
 * request itself), or until it goes; it carries its ticket as the wsi's
 * opaque user data meanwhile (nothing else sets it on server connections).
 * Not lws's LWS_CALLBACK_SSL_INFO: with the libev loop its lookup of the
 * wsi crashes (lws 4.1.6, wsi_from_fd), and headers sent slowly are part of
 * the handshake a client can stall. */
static admission *g_adm;
static struct lws_context *g_ctx;
static lws_sorted_usec_list_t g_adm_sul;
static admission_stats g_adm_logged;
static time_t g_adm_logged_at;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The handshake of this connection is over (or the connection is gone). */
void conn_admission_over(struct lws *wsi)
{
    intptr_t ticket = (intptr_t)lws_get_opaque_user_data(wsi);
    if (!ticket || !g_adm)
        return;
    lws_set_opaque_user_data(wsi, NULL);
    admission_end(g_adm, (int)ticket);
}

static void drop_pending(void *conn, void *arg)
{
    (void)arg;
    lws_set_opaque_user_data(conn, NULL);
    lws_set_timeout(conn, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* Once a second: pending handshakes past AURORA_HANDSHAKE_TIMEOUT are
 * dropped (a client that connects and sends nothing holds a slot no
 * longer), and refusals since the last line are logged (at most every 10 s). */
/* A storm: at least this many connections a second admitted or refused. */
#define STORM_CONNS_PER_S 200
/* Quiet seconds after a storm before its memory is given back. */
#define STORM_QUIET_S 5

static long rss_kib(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* After a storm (thousands of connections accepted, refused, handshaken,
 * many of them gone), glibc keeps the freed memory in its arenas: RSS stays
 * at the storm's peak.  Once it has been quiet a few seconds, give it back. */
static void trim_after_storm(const admission_stats *st)
{
    static int64_t last_seen;
    static int storm, quiet;
    int64_t seen = st->admitted + st->refused_pending + st->refused_rate;
    if (seen - last_seen >= STORM_CONNS_PER_S) {
        storm = 1;
        quiet = 0;
    } else if (storm && ++quiet >= STORM_QUIET_S && st->pending == 0) {
        long before = rss_kib();
        malloc_trim(0);
        log_info("after a connection storm: memory given back, RSS %ld -> %ld MiB", before / 1024,
                 rss_kib() / 1024);
        storm = 0;
    }
    last_seen = seen;
}

static void admission_tick(lws_sorted_usec_list_t *sul)
{
    admission_expire(g_adm, mono_ms(), drop_pending, NULL);
    admission_stats st;
    admission_get_stats(g_adm, &st);
    trim_after_storm(&st);
    time_t now = time(NULL);
    if (now - g_adm_logged_at >= 10 &&
        (st.refused_pending != g_adm_logged.refused_pending ||
         st.refused_rate != g_adm_logged.refused_rate || st.expired != g_adm_logged.expired)) {
        log_warn("connection admission: refused %lld (handshakes pending at the cap) + %lld "
                 "(over the accept rate), %lld handshakes timed out, in the last %ld s; "
                 "%d pending now",
                 (long long)(st.refused_pending - g_adm_logged.refused_pending),
                 (long long)(st.refused_rate - g_adm_logged.refused_rate),
                 (long long)(st.expired - g_adm_logged.expired),
                 (long)(g_adm_logged_at ? now - g_adm_logged_at : 0), st.pending);
        g_adm_logged = st;
        g_adm_logged_at = now;
    } else if (!g_adm_logged_at) {
        g_adm_logged_at = now;
    }
    lws_sul_schedule(g_ctx, 0, sul, admission_tick, LWS_USEC_PER_SEC);
}

int conn_admission_init(const admission_opts *o)
{
    g_adm = admission_new(o, mono_ms());
    memset(&g_adm_logged, 0, sizeof(g_adm_logged));
    g_adm_logged_at = 0;
    return g_adm ? 0 : -1;
}

void conn_admission_start(struct lws_context *ctx)
{
    g_ctx = ctx;
    lws_sul_schedule(g_ctx, 0, &g_adm_sul, admission_tick, LWS_USEC_PER_SEC);
}

void conn_admission_stop(void)
{
    if (g_ctx)
        lws_sul_cancel(&g_adm_sul);
    g_ctx = NULL;
}

void conn_admission_free(void)
{
    admission_free(g_adm);
    g_adm = NULL;
}

int conn_admission_filter(void)
{
    return !g_adm || admission_accept(g_adm, mono_ms()) ? 0 : 1;
}

void conn_admission_begin(struct lws *wsi)
{
    if (!g_adm)
        return;
    int ticket = admission_begin(g_adm, wsi, mono_ms());
    if (!ticket) /* the slot admission_accept saw is gone: cannot happen */
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    lws_set_opaque_user_data(wsi, (void *)(intptr_t)ticket);
}
