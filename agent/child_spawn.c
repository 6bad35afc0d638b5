/* child_spawn.c — vfork + execve for kubectl children (see child_spawn.h for why). */
#include "child_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Parses the hex mask after "<name>:" in a /proc status text. */
static int status_mask(const char *text, const char *name, uint64_t *out)
{
    const char *p = strstr(text, name);
    if (!p || (p != text && p[-1] != '\n'))
        return -1;
    p += strlen(name);
    while (*p == ' ' || *p == '\t')
        p++;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 16);
    if (errno || end == p || *end != '\n')
        return -1;
    *out = (uint64_t)v;
    return 0;
}

int spawn_signals_to_reset(int status_fd, uint64_t *mask)
{
    char text[8192];
    size_t len = 0;
    uint64_t ign = 0, cgt = 0;
    int found = 0;
    int fd = status_fd >= 0 ? status_fd : open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    /* pread regenerates the text from the start (a kept descriptor costs half
     * of an open + read + close); one read returns the whole file, so stop as
     * soon as both lines are in */
    while (!found && len < sizeof(text) - 1) {
        ssize_t n = pread(fd, text + len, sizeof(text) - 1 - len, (off_t)len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        text[len] = '\0';
        found = status_mask(text, "SigIgn:", &ign) == 0 && status_mask(text, "SigCgt:", &cgt) == 0;
    }
    if (fd != status_fd)
        close(fd);
    if (!found)
        return -1;
    *mask = ign | cgt;
    return 0;
}

int child_close_all_but(int keep_a, int keep_b)
{
    int k[2] = {keep_a, keep_b};
    if (k[1] >= 0 && (k[0] < 0 || k[1] < k[0])) {
        int t = k[0];
        k[0] = k[1];
        k[1] = t;
    }
    unsigned lo = 3;
    int rc = 0;
    for (int i = 0; i < 2 && !rc; i++) {
        if (k[i] < 0)
            continue;
        if ((unsigned)k[i] > lo)
            rc = (int)syscall(SYS_close_range, lo, (unsigned)k[i] - 1, 0);
        lo = (unsigned)k[i] + 1;
    }
    if (!rc)
        rc = (int)syscall(SYS_close_range, lo, ~0U, 0);
    if (rc && errno == ENOSYS) { /* close_range: Linux 5.9 */
        for (int fd = 3; fd < 65536; fd++)
            if (fd != keep_a && fd != keep_b)
                close(fd);
        rc = 0;
    }
    return rc;
}

void child_reset_signals(uint64_t mask)
{
    /* The kernel's sigaction, not libc's: libc refuses to touch the two
     * signals it reserves (32, 33), and a parent that started the agent with
     * glibc's posix_spawn leaves them ignored, which execve would pass on.
     * The kernel's struct is the handler, then flags, a restorer on some
     * architectures, the mask: for SIG_DFL all but the handler are zero, so
     * one zeroed layout fits each of them.  The size is the kernel's sigset
     * (_NSIG / 8 = 8 bytes on Linux). */
    unsigned long dfl[4] = {(unsigned long)SIG_DFL, 0, 0, 0};
    for (int s = 1; s <= 64; s++)
        if ((mask >> (s - 1) & 1) && s != SIGKILL && s != SIGSTOP)
            syscall(SYS_rt_sigaction, s, dfl, NULL, (size_t)8);
}

/* posix_spawnp's search: each PATH entry in turn (an empty one is the
 * current directory; no PATH: /bin:/usr/bin), on to the next while the file
 * is missing there, EACCES if it was found only where it may not run; unlike
 * execvpe, a file without "#!" is not handed to /bin/sh.  The path is built
 * on the stack: no allocation between vfork and execve. */
static __attribute__((noinline)) void exec_search(const char *file, char *const *argv,
                                                  char *const *envp)
{
    const char *path = getenv("PATH");
    if (!path)
        path = "/bin:/usr/bin";
    size_t flen = strlen(file);
    char full[4096];
    int eacces = 0;
    for (const char *p = path;; p++) {
        const char *end = strchr(p, ':');
        size_t dlen = end ? (size_t)(end - p) : strlen(p);
        if (dlen + 1 + flen + 1 <= sizeof(full)) {
            memcpy(full, p, dlen);
            size_t o = dlen;
            if (dlen)
                full[o++] = '/';
            memcpy(full + o, file, flen + 1);
            execve(full, argv, envp);
            if (errno == EACCES)
                eacces = 1;
            else if (errno != ENOENT && errno != ENOTDIR && errno != ESTALE &&
                     errno != ENODEV && errno != ETIMEDOUT)
                return;
        }
        if (!end)
            break;
        p = end;
    }
    errno = eacces ? EACCES : ENOENT;
}

/* Between vfork and execve: system calls only, nothing written but *err.
 * Not inlined: its locals then live below the frame of spawn_vfork, which the
 * parent resumes in, instead of in slots the compiler could share with it. */
static __attribute__((noinline, noreturn)) void child_exec(const spawn_req *r, uint64_t reset,
                                                           volatile int *err)
{
    child_reset_signals(reset);
    if (setpgid(0, 0) != 0 || dup2(r->stdin_fd, 0) != 0 || dup2(r->stdout_fd, 1) != 1 ||
        dup2(r->stderr_fd, 2) != 2 || child_close_all_but(-1, -1) != 0)
        goto fail;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (strchr(r->path, '/'))
        execve(r->path, r->argv, r->envp);
    else
        exec_search(r->path, r->argv, r->envp);
fail:
    *err = errno ? errno : EINVAL;
    _exit(127);
}

int spawn_vfork(const spawn_req *r, pid_t *pid)
{
    /* sources above 2, so no dup2 onto 0..2 can clobber a later source */
    if (!r || !r->path || !r->argv || !r->envp || !pid || r->stdin_fd < 3 || r->stdout_fd < 3 ||
        r->stderr_fd < 3)
        return EINVAL;
    uint64_t reset;
    if (spawn_signals_to_reset(r->status_fd, &reset) != 0)
        reset = ~(uint64_t)0;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    volatile int child_err = 0;
    pid_t child = vfork();
    if (child == 0)
        child_exec(r, reset, &child_err);
    int vfork_err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (child < 0)
        return vfork_err;
    if (child_err) {
        int rc = child_err;
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
            ;
        return rc;
    }
    *pid = child;
    return 0;
}
