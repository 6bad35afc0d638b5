/* log.c — leveled one-line logging as text or JSON; see log.h. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "utf8.h"

static int g_level = LOG_INFO;
static int g_json = 0;
static char g_component[32] = "aurora";

static const char *level_names[] = { "debug", "info", "warn", "error" };

/* log_never_block: a line stderr cannot take now is dropped and counted.
 * g_write_mu orders the check and the write among our threads, so one
 * thread's free pipe slot is not taken by another's line in between. */
static int g_never_block;
static pthread_mutex_t g_write_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned long long g_dropped_unreported; /* under g_write_mu */
static _Atomic unsigned long long g_dropped_total;

int log_level_from_name(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < 4; i++)
        if (!strcasecmp(name, level_names[i]))
            return i;
    if (!strcasecmp(name, "warning"))
        return LOG_WARN;
    return -1;
}

int log_setup(const char *component, const char *level, const char *format)
{
    if (component)
        snprintf(g_component, sizeof(g_component), "%s", component);
    if (level) {
        int l = log_level_from_name(level);
        if (l < 0)
            return -1;
        g_level = l;
    }
    if (format) {
        if (!strcasecmp(format, "json"))
            g_json = 1;
        else if (!strcasecmp(format, "text"))
            g_json = 0;
        else
            return -1;
    }
    return 0;
}

int log_enabled(enum log_level lvl) { return (int)lvl >= g_level; }

/* Appends s JSON-escaped into out[*pos..cap), as valid UTF-8 whatever s
 * holds: a byte that starts no well-formed character (a stray 0xff, a
 * sequence a message's cut split) becomes \ufffd, and a character is
 * copied whole or not at all.  Log pipelines (Loki, Elasticsearch, jq)
 * drop or choke on a line that is not UTF-8. */
static void json_escape_into(char *out, size_t cap, size_t *pos, const char *s)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
    while (p < end && *pos + 7 < cap) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            out[(*pos)++] = '\\';
            out[(*pos)++] = (char)c;
            p++;
        } else if (c < 0x20) {
            *pos += (size_t)snprintf(out + *pos, cap - *pos, "\\u%04x", c);
            p++;
        } else {
            size_t len = utf8_seq_len(p, (size_t)(end - p));
            if (len == 0) {
                memcpy(out + *pos, "\\ufffd", 6);
                *pos += 6;
                p++;
            } else {
                memcpy(out + *pos, p, len); /* at most 4 of the 7 bytes left */
                *pos += len;
                p += len;
            }
        }
    }
}

/* Text form of a field value: bare when it is one plain word, otherwise
 * quoted with " and \ escaped, so a value can never forge another field. */
static void text_value_into(char *out, size_t cap, size_t *pos, const char *s)
{
    int plain = *s != 0;
    for (const char *p = s; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || (unsigned char)*p >= 0x7f)
            plain = 0;
    if (plain) {
        for (; *s && *pos + 2 < cap; s++)
            out[(*pos)++] = *s;
        return;
    }
    if (*pos + 2 < cap)
        out[(*pos)++] = '"';
    for (; *s && *pos + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            out[(*pos)++] = '\\';
        out[(*pos)++] = c < 0x20 ? ' ' : (char)c;
    }
    if (*pos + 2 < cap)
        out[(*pos)++] = '"';
}

/* Formats one line, '\n' included, into line[LOG_LINE_MAX]; returns its length. */
enum { LOG_LINE_MAX = 4096 };
static size_t format_line(char *line, enum log_level lvl, char *msg, const log_field *fields,
                          int nfields)
{
    /* A message is one line whatever it contains. */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[40];
    size_t tl = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof(ts) - tl, ".%03dZ", (int)(tv.tv_usec / 1000));

    const size_t cap = LOG_LINE_MAX;
    size_t pos = 0;
    if (g_json) {
        pos = (size_t)snprintf(line, cap,
                               "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"%s\",\"msg\":\"",
                               ts, level_names[lvl], g_component);
        json_escape_into(line, cap - 3, &pos, msg);
        line[pos++] = '"';
        for (int i = 0; i < nfields && pos + 64 < cap; i++) {
            line[pos++] = ',';
            line[pos++] = '"';
            json_escape_into(line, cap - 32, &pos, fields[i].key);
            line[pos++] = '"';
            line[pos++] = ':';
            if (fields[i].str) {
                line[pos++] = '"';
                json_escape_into(line, cap - 3, &pos, fields[i].str);
                line[pos++] = '"';
            } else {
                pos += (size_t)snprintf(line + pos, cap - pos, "%lld", fields[i].num);
            }
        }
        line[pos++] = '}';
    } else {
        pos = (size_t)snprintf(line, cap, "%s %-5s %s: %s", ts, level_names[lvl],
                               g_component, msg);
        if (pos > cap - 2)
            pos = cap - 2;
        for (int i = 0; i < nfields && pos + 64 < cap; i++) {
            pos += (size_t)snprintf(line + pos, cap - pos, " %s=", fields[i].key);
            if (fields[i].str)
                text_value_into(line, cap - 2, &pos, fields[i].str);
            else
                pos += (size_t)snprintf(line + pos, cap - pos, "%lld", fields[i].num);
        }
        if (pos > cap - 2)
            pos = cap - 2;
    }
    line[pos++] = '\n';
    return pos;
}

/* Writing without waiting.  A pipe on stderr (a container runtime, a shell
 * pipeline) is written through a descriptor of our own opened on it with
 * O_NONBLOCK (/proc/self/fd/2: a new open file description, so the flag
 * touches nobody else's): a write of at most PIPE_BUF bytes then goes whole
 * or fails with EAGAIN, even when another process sharing the pipe takes
 * its last free slot first.  Anything else (a terminal, a socket, a file)
 * is written when poll says it is writable; a regular file always is, and
 * a socket with POLLOUT has far more room than a line.
 * A reader that is only behind (a burst filled the pipe before it was
 * scheduled) gets LOG_WAIT_MS; once such a wait ran out, lines are dropped
 * without waiting until one gets through, so a reader that stopped costs
 * the caller one wait, not one per line.  g_write_mu held. */
enum { LOG_WAIT_MS = 10 };
static int g_stalled;
static int g_pipe_fd = -1; /* the non-blocking descriptor on stderr's pipe, if it is one */

static void open_pipe_fd(void)
{
    struct stat err, mine;
    if (g_pipe_fd >= 0 || fstat(STDERR_FILENO, &err) != 0 || !S_ISFIFO(err.st_mode))
        return;
    int fd = open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) /* no /proc, or no reader left (ENXIO): poll's way */
        return;
    if (fstat(fd, &mine) != 0 || mine.st_dev != err.st_dev || mine.st_ino != err.st_ino) {
        close(fd);
        return;
    }
    g_pipe_fd = fd;
}

static int stderr_writable(int timeout_ms)
{
    struct pollfd p = { .fd = STDERR_FILENO, .events = POLLOUT };
    int n;
    do
        n = poll(&p, 1, timeout_ms);
    while (n < 0 && errno == EINTR);
    /* A reader that went away (POLLERR/POLLHUP) cannot block the write
     * either: it fails, and the line is lost as it would be anyway. */
    return n > 0 && (p.revents & (POLLOUT | POLLERR | POLLHUP | POLLNVAL));
}

/* 1: written (or failed for good: not tried again); 0: it would wait. */
static int write_now(const char *line, size_t len)
{
    ssize_t w;
    if (g_pipe_fd >= 0) {
        do
            w = write(g_pipe_fd, line, len);
        while (w < 0 && errno == EINTR);
        return !(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    }
    if (!stderr_writable(0))
        return 0;
    w = write(STDERR_FILENO, line, len);
    (void)w;
    return 1;
}

static int put_line(const char *line, size_t len)
{
    if (write_now(line, len) ||
        (!g_stalled && stderr_writable(LOG_WAIT_MS) && write_now(line, len))) {
        g_stalled = 0;
        return 1;
    }
    g_stalled = 1;
    return 0;
}

static void write_line(const char *line, size_t len)
{
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

static void emit(enum log_level lvl, char *msg, const log_field *fields, int nfields)
{
    char line[LOG_LINE_MAX];
    size_t len = format_line(line, lvl, msg, fields, nfields);
    if (!g_never_block) {
        write_line(line, len);
        return;
    }
    pthread_mutex_lock(&g_write_mu);
    if (g_dropped_unreported) {
        /* Before the next line that gets through: how many did not, so a
         * reader sees the gap where it is. */
        char note[160], report[LOG_LINE_MAX];
        snprintf(note, sizeof(note), "%llu log line(s) dropped: stderr was not being read",
                 g_dropped_unreported);
        log_field f = LOG_NUM("dropped", g_dropped_unreported);
        if (put_line(report, format_line(report, LOG_WARN, note, &f, 1)))
            g_dropped_unreported = 0;
    }
    if (g_dropped_unreported || !put_line(line, len)) {
        g_dropped_unreported++;
        atomic_fetch_add_explicit(&g_dropped_total, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&g_write_mu);
}

void log_never_block(int on)
{
    pthread_mutex_lock(&g_write_mu);
    g_never_block = on;
    if (on) {
        open_pipe_fd();
    } else if (g_pipe_fd >= 0) {
        close(g_pipe_fd);
        g_pipe_fd = -1;
    }
    pthread_mutex_unlock(&g_write_mu);
}


unsigned long long log_lines_dropped(void)
{
    return atomic_load_explicit(&g_dropped_total, memory_order_relaxed);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    if (!log_enabled(lvl))
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    emit(lvl, msg, NULL, 0);
}

void log_fields(enum log_level lvl, const char *msg, const log_field *fields, int nfields)
{
    if (!log_enabled(lvl))
        return;
    char copy[2048];
    snprintf(copy, sizeof(copy), "%s", msg);
    emit(lvl, copy, fields, nfields);
}
