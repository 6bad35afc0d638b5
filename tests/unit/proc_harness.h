/* proc_harness.h — helpers for unit tests that run real peers as child
 * processes (PostgreSQL, moto_server, the Python fixtures): spawn without a
 * shell, stop with escalation, free loopback ports, readiness polling and
 * temporary-directory removal.
 *
 * Header-only (static functions) because every tests/unit/test_*.c is its
 * own binary and only those files are compiled.  Children get
 * PR_SET_PDEATHSIG so a test binary that crashes (a sanitizer abort, a
 * failed assertion in a fork-less path) does not leave servers behind. */
#ifndef AURORA_TEST_PROC_HARNESS_H
#define AURORA_TEST_PROC_HARNESS_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static inline long long ph_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void ph_sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

typedef struct {
    const char *log_path; /* stdout+stderr appended here (NULL: /dev/null) */
    int stdout_pipe;      /* 1: stdout goes to a pipe, read end in *out_fd */
    uid_t uid;            /* run as this user when as_user (we are root) */
    gid_t gid;
    int as_user;
    const char *const *env; /* extra NAME=value entries, NULL-terminated */
} ph_opts;

extern char **environ;

/* The child's environment: ours plus o->env, without LD_PRELOAD (the peers
 * are not ours to instrument).  Built before fork: after fork in a threaded
 * process only async-signal-safe calls are allowed. */
static inline char **ph_build_env(const ph_opts *o)
{
    size_t n = 0, extra = 0;
    while (environ && environ[n])
        n++;
    while (o->env && o->env[extra])
        extra++;
    char **envp = calloc(n + extra + 1, sizeof(char *));
    if (!envp)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < extra; i++)
        envp[k++] = (char *)o->env[i];
    for (size_t i = 0; i < n; i++) {
        if (!strncmp(environ[i], "LD_PRELOAD=", 11))
            continue;
        /* An extra entry overrides the inherited one of the same name. */
        const char *eq = strchr(environ[i], '=');
        size_t nl = eq ? (size_t)(eq - environ[i]) + 1 : strlen(environ[i]);
        int dup = 0;
        for (size_t j = 0; j < extra; j++)
            dup |= !strncmp(o->env[j], environ[i], nl);
        if (!dup)
            envp[k++] = environ[i];
    }
    return envp;
}

/* Starts argv[0] (searched in PATH) with argv.  Returns the pid or -1. */
static inline pid_t ph_spawn(const char *const argv[], const ph_opts *o, int *out_fd)
{
    int pfd[2] = { -1, -1 };
    char **envp = ph_build_env(o);
    if (!envp)
        return -1;
    int logfd = open(o->log_path ? o->log_path : "/dev/null",
                     O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (logfd < 0 || devnull < 0 || (o->stdout_pipe && pipe2(pfd, O_CLOEXEC) < 0)) {
        if (logfd >= 0)
            close(logfd);
        if (devnull >= 0)
            close(devnull);
        free(envp);
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* dup2 clears O_CLOEXEC on the copies: 0, 1, 2 survive exec. */
        dup2(devnull, 0);
        dup2(o->stdout_pipe ? pfd[1] : logfd, 1);
        dup2(logfd, 2);
        if (o->as_user) {
            if (setgroups(0, NULL) < 0 || setgid(o->gid) < 0 || setuid(o->uid) < 0)
                _exit(126);
        }
        /* After the uid change: changing credentials clears the setting. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(126);
        execvpe(argv[0], (char *const *)argv, envp);
        _exit(127);
    }
    close(logfd);
    close(devnull);
    free(envp);
    if (pid < 0) {
        if (pfd[0] >= 0) {
            close(pfd[0]);
            close(pfd[1]);
        }
        return -1;
    }
    if (o->stdout_pipe) {
        close(pfd[1]);
        *out_fd = pfd[0];
    }
    return pid;
}

/* Waits for pid up to timeout_ms; 1 if it exited (status in *status). */
static inline int ph_wait(pid_t pid, long timeout_ms, int *status)
{
    long long end = ph_now_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 1;
        if (r < 0 && errno != EINTR)
            return 1; /* not our child any more */
        if (ph_now_ms() >= end)
            return 0;
        ph_sleep_ms(10);
    }
}

/* Sends sig, then SIGKILL after timeout_ms.  Returns the exit status. */
static inline int ph_stop(pid_t pid, int sig, long timeout_ms)
{
    int status = 0;
    if (pid <= 0)
        return -1;
    kill(pid, sig);
    if (!ph_wait(pid, timeout_ms, &status)) {
        kill(pid, SIGKILL);
        ph_wait(pid, 5000, &status);
    }
    return status;
}

/* Runs argv to completion (at most timeout_ms).  Exit code, or -1. */
static inline int ph_run(const char *const argv[], const ph_opts *o, long timeout_ms)
{
    pid_t pid = ph_spawn(argv, o, NULL);
    if (pid < 0)
        return -1;
    int status = 0;
    if (!ph_wait(pid, timeout_ms, &status)) {
        kill(pid, SIGKILL);
        ph_wait(pid, 5000, &status);
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it). */
static inline int ph_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = 0 };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* A TCP port on 127.0.0.1 that stays this process's until it closes *fd
 * (bound, never listening).  A port that is merely free a moment ago (as
 * ph_free_port's) may be taken meanwhile by another test binary: they run
 * in parallel (tests/run-unit.sh), and bind(0) hands out the same ports.
 *   shared 0: nobody else can bind it, and connecting to it is refused at
 *             once (a backend that is down);
 *   shared 1: SO_REUSEADDR, so that a server the test starts on it that
 *             sets SO_REUSEADDR too (Python's http.server, werkzeug, so
 *             moto_server) may bind and listen there, while bind(0) of
 *             other processes still never picks it.
 * port: that one (a server's port kept while it is down), 0: any.
 * Returns the port, or -1. */
static inline int ph_hold_port(int port, int *fd, int shared)
{
    *fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (*fd < 0)
        return -1;
    int one = 1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if ((shared && setsockopt(*fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) ||
        bind(*fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(*fd, (struct sockaddr *)&a, &len) != 0) {
        close(*fd);
        *fd = -1;
        return -1;
    }
    return ntohs(a.sin_port);
}

/* 1 once something accepts TCP connections on 127.0.0.1:port. */
static inline int ph_wait_tcp(int port, long timeout_ms)
{
    long long end = ph_now_ms() + timeout_ms;
    do {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return 0;
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(fd);
        if (ok)
            return 1;
        ph_sleep_ms(50);
    } while (ph_now_ms() < end);
    return 0;
}

/* Reads one line (without the newline) from fd within timeout_ms. */
static inline int ph_read_line(int fd, char *buf, size_t cap, long timeout_ms)
{
    size_t n = 0;
    long long end = ph_now_ms() + timeout_ms;
    while (n + 1 < cap) {
        long left = (long)(end - ph_now_ms());
        if (left <= 0)
            return -1;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        char c;
        ssize_t got = read(fd, &c, 1);
        if (got <= 0)
            return -1;
        if (c == '\n') {
            buf[n] = '\0';
            return 0;
        }
        buf[n++] = c;
    }
    return -1;
}

static inline int ph_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

/* rm -rf dir (depth first, symlinks not followed). */
static inline int ph_rmtree(const char *dir)
{
    if (!dir || !*dir)
        return -1;
    return nftw(dir, ph_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Whole file into a malloc'd NUL-terminated buffer; NULL on error. */
static inline char *ph_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    while (b) {
        size_t got = fread(b + n, 1, cap - n - 1, f);
        n += got;
        if (n + 1 < cap)
            break;
        char *nb = realloc(b, cap * 2);
        if (!nb) {
            free(b);
            b = NULL;
            break;
        }
        b = nb;
        cap *= 2;
    }
    fclose(f);
    if (b) {
        b[n] = '\0';
        if (len)
            *len = n;
    }
    return b;
}

/* 1 if needle[0..nlen) occurs anywhere in the file. */
static inline int ph_file_contains(const char *path, const void *needle, size_t nlen)
{
    size_t len = 0;
    char *b = ph_slurp(path, &len);
    if (!b)
        return 0;
    int found = memmem(b, len, needle, nlen) != NULL;
    free(b);
    return found;
}

/* Absolute path of tests/fixtures/<name>: found from the test binary's own
 * location (<repo>/build/<variant>/tests/<bin>) so the tests run from any
 * working directory; falls back to the repository-relative path. */
static inline int ph_fixture_path(const char *name, char *out, size_t cap)
{
    char exe[1024];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        for (int up = 0; up < 4; up++) {
            char *slash = strrchr(exe, '/');
            if (!slash)
                break;
            *slash = '\0';
            int w = snprintf(out, cap, "%.900s/tests/fixtures/%.100s", exe, name);
            if (w > 0 && (size_t)w < cap && access(out, R_OK) == 0)
                return 0;
        }
    }
    snprintf(out, cap, "tests/fixtures/%s", name);
    return access(out, R_OK) == 0 ? 0 : -1;
}

/* The Python for the stdlib-only fixtures: Debian's python3 (starts in
 * milliseconds) when installed, else whatever python3 is on PATH. */
static inline const char *ph_python(void)
{
    return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

/* Starts a fixture that prints "PORT <n>" on its first stdout line.
 * Returns the pid (port in *port) or -1. */
static inline pid_t ph_start_port_fixture(const char *const argv[], const char *log, int *port)
{
    ph_opts o = { .log_path = log, .stdout_pipe = 1 };
    int fd = -1;
    pid_t pid = ph_spawn(argv, &o, &fd);
    if (pid < 0)
        return -1;
    char line[64];
    int ok = ph_read_line(fd, line, sizeof(line), 15000) == 0 && sscanf(line, "PORT %d", port) == 1;
    close(fd);
    if (!ok) {
        ph_stop(pid, SIGTERM, 2000);
        return -1;
    }
    return pid;
}

#endif
