/* test_agent_child_spawn.c — agent/child_spawn.c: the vfork start of kubectl
 * children.  Real programs (/bin/cat, /bin/sh, /bin/ls) report what they were
 * given, read by the kernel's own accounts (/proc/self/status, /proc/self/fd,
 * /proc/self/stat): signal dispositions and mask at their defaults even when
 * the parent catches, ignores and blocks signals; the parent's own
 * dispositions and mask untouched; stdin, stdout and stderr the descriptors
 * given, no other descriptor; its own process group; posix_spawnp's PATH
 * search; every signal reset when the masks cannot be read; a missing
 * program reported as ENOENT with nothing left to reap. */
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
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child_spawn.h"

extern char **environ;

/* the runner keeps /proc/self/status open; -1 makes spawn_vfork open it */
static int status_fd = -1;
/* the child's stdin: a file holding STDIN_TEXT (the runner gives /dev/null;
 * a file of our own shows the descriptor given is the one the child gets) */
#define STDIN_TEXT "given-stdin\n"

typedef struct {
    pid_t pid;
    int status;
    char out[8192];
    char err[1024];
} ran;

static void read_all(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || len + (size_t)n >= cap - 1) {
            if (n > 0)
                len += (size_t)n;
            break;
        }
        len += (size_t)n;
    }
    buf[len] = '\0';
}

/* Runs argv with child_spawn; collects stdout, stderr and the exit status.
 * Returns spawn_vfork's result. */
static int run(const char *path, char *const *argv, ran *r)
{
    int out[2], err[2];
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    assert_int_equal(pipe2(err, O_CLOEXEC), 0);
    char in_path[] = "/tmp/aurora-spawn-stdin-XXXXXX";
    int in = mkstemp(in_path);
    assert_true(in >= 3);
    unlink(in_path);
    assert_int_equal(write(in, STDIN_TEXT, strlen(STDIN_TEXT)), (ssize_t)strlen(STDIN_TEXT));
    assert_int_equal(lseek(in, 0, SEEK_SET), 0);
    spawn_req req = {
        .path = path,
        .argv = argv,
        .envp = environ,
        .stdin_fd = in,
        .stdout_fd = out[1],
        .stderr_fd = err[1],
        .status_fd = status_fd,
    };
    memset(r, 0, sizeof(*r));
    int rc = spawn_vfork(&req, &r->pid);
    close(out[1]);
    close(err[1]);
    close(in);
    if (rc == 0) {
        read_all(out[0], r->out, sizeof(r->out));
        read_all(err[0], r->err, sizeof(r->err));
        assert_int_equal(waitpid(r->pid, &r->status, 0), r->pid);
    }
    close(out[0]);
    close(err[0]);
    return rc;
}

/* The value of "<name>:\t<hex>" in a /proc status text. */
static unsigned long long status_field(const char *text, const char *name)
{
    const char *p = strstr(text, name);
    assert_non_null(p);
    return strtoull(p + strlen(name), NULL, 16);
}

static void on_usr1(int sig) { (void)sig; }

static void signals_reach_the_program_at_their_defaults(void **state)
{
    (void)state;
    struct sigaction catch_usr1 = {.sa_handler = on_usr1}, ign = {.sa_handler = SIG_IGN},
                     old_usr1, old_usr2, old_pipe;
    sigemptyset(&catch_usr1.sa_mask);
    sigemptyset(&ign.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &catch_usr1, &old_usr1), 0);
    assert_int_equal(sigaction(SIGUSR2, &ign, &old_usr2), 0);
    assert_int_equal(sigaction(SIGPIPE, &ign, &old_pipe), 0);
    /* 32 and 33 are libc's own: its sigaction refuses them, but a parent that
     * used glibc's posix_spawn (make does) leaves them ignored; set them so
     * with the kernel's call, as such a parent would have */
    unsigned long ign_k[4] = {(unsigned long)SIG_IGN, 0, 0, 0}, old_32[4], old_33[4];
    assert_int_equal(syscall(SYS_rt_sigaction, 32, ign_k, old_32, (size_t)8), 0);
    assert_int_equal(syscall(SYS_rt_sigaction, 33, ign_k, old_33, (size_t)8), 0);
    sigset_t term, old_mask;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, &term, &old_mask), 0);

    ran r;
    char *argv[] = {"/bin/cat", "/proc/self/status", NULL};
    assert_int_equal(run(argv[0], argv, &r), 0);
    assert_true(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0);
    assert_int_equal(status_field(r.out, "SigBlk:"), 0);
    assert_int_equal(status_field(r.out, "SigIgn:"), 0);
    /* (SigCgt is not checked: execve resets caught signals by itself) */

    /* the child's resets were its own: the parent still catches, ignores and blocks */
    struct sigaction now;
    assert_int_equal(sigaction(SIGUSR1, NULL, &now), 0);
    assert_ptr_equal(now.sa_handler, on_usr1);
    assert_int_equal(sigaction(SIGUSR2, NULL, &now), 0);
    assert_ptr_equal(now.sa_handler, SIG_IGN);
    sigset_t mask;
    assert_int_equal(pthread_sigmask(SIG_SETMASK, NULL, &mask), 0);
    assert_int_equal(sigismember(&mask, SIGTERM), 1);
    assert_int_equal(sigismember(&mask, SIGUSR1), 0);

    uint64_t reset = 0;
    assert_int_equal(spawn_signals_to_reset(status_fd, &reset), 0);
    assert_true(reset >> (SIGUSR1 - 1) & 1);
    assert_true(reset >> (SIGUSR2 - 1) & 1);
    assert_true(reset >> (SIGPIPE - 1) & 1);
    assert_true(reset >> 31 & 1);
    assert_true(reset >> 32 & 1);

    assert_int_equal(syscall(SYS_rt_sigaction, 32, old_32, NULL, (size_t)8), 0);
    assert_int_equal(syscall(SYS_rt_sigaction, 33, old_33, NULL, (size_t)8), 0);
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    sigaction(SIGUSR1, &old_usr1, NULL);
    sigaction(SIGUSR2, &old_usr2, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    assert_int_equal(spawn_signals_to_reset(status_fd, &reset), 0);
    assert_false(reset >> (SIGUSR1 - 1) & 1);
    assert_false(reset >> (SIGUSR2 - 1) & 1);
}

static void only_stdio_is_inherited(void **state)
{
    (void)state;
    /* a descriptor the parent leaves inheritable must still not reach the child */
    int leak = open("/dev/null", O_RDONLY);
    assert_true(leak >= 3);
    ran r;
    char *argv[] = {"/bin/sh", "-c",
                    "ls /proc/self/fd; cat; echo to-stderr >&2; exit 3",
                    NULL};
    assert_int_equal(run(argv[0], argv, &r), 0);
    close(leak);
    assert_true(WIFEXITED(r.status));
    assert_int_equal(WEXITSTATUS(r.status), 3);
    /* ls sees 0, 1, 2 and the directory it reads (3) */
    assert_string_equal(r.out, "0\n1\n2\n3\n" STDIN_TEXT);
    assert_string_equal(r.err, "to-stderr\n");
}

/* The same with the descriptor kept open across changes, as the runner does:
 * each read sees the dispositions of that moment. */
static void a_kept_status_descriptor_is_read_afresh(void **state)
{
    (void)state;
    status_fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    assert_true(status_fd >= 3);
    signals_reach_the_program_at_their_defaults(state);
    only_stdio_is_inherited(state);
    close(status_fd);
    status_fd = -1;
}

/* When the masks cannot be read (here: a descriptor on an empty file instead
 * of /proc/self/status), every signal is reset. */
static void unreadable_masks_reset_every_signal(void **state)
{
    (void)state;
    status_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(status_fd >= 3);
    uint64_t reset = 0;
    assert_int_equal(spawn_signals_to_reset(status_fd, &reset), -1);
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigemptyset(&ign.sa_mask);
    assert_int_equal(sigaction(SIGUSR2, &ign, &old), 0);
    ran r;
    char *argv[] = {"/bin/cat", "/proc/self/status", NULL};
    assert_int_equal(run(argv[0], argv, &r), 0);
    sigaction(SIGUSR2, &old, NULL);
    close(status_fd);
    status_fd = -1;
    assert_int_equal(status_field(r.out, "SigIgn:"), 0);
}

static void the_program_leads_its_own_group(void **state)
{
    (void)state;
    ran r;
    char *argv[] = {"/bin/sh", "-c", "cut -d' ' -f5 /proc/$$/stat", NULL};
    assert_int_equal(run(argv[0], argv, &r), 0);
    assert_true(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0);
    assert_int_equal(atoi(r.out), r.pid);
    assert_int_not_equal(r.pid, getpgrp());
}

static void a_bare_name_is_searched_in_path(void **state)
{
    (void)state;
    ran r;
    char *argv[] = {"echo", "found", NULL};
    assert_int_equal(run("echo", argv, &r), 0);
    assert_string_equal(r.out, "found\n");
}

/* posix_spawnp's search, not execvpe's: a file without "#!" found in PATH
 * is ENOEXEC, not a /bin/sh script; a later PATH entry is tried after a
 * missing one and after one where the file may not run. */
static void path_search_is_posix_spawnps(void **state)
{
    (void)state;
    char dir[] = "/tmp/aurora-spawn-path-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char locked_dir[64], plain[128], locked[128], path[512];
    snprintf(locked_dir, sizeof(locked_dir), "%s/a", dir);
    assert_int_equal(mkdir(locked_dir, 0700), 0);
    snprintf(locked, sizeof(locked), "%s/aurora-try-me", locked_dir);
    snprintf(plain, sizeof(plain), "%s/aurora-plain-text", dir);
    FILE *f = fopen(locked, "w");
    assert_non_null(f);
    fputs("#!/bin/sh\necho wrong\n", f);
    fclose(f);
    assert_int_equal(chmod(locked, 0600), 0); /* found, but not executable: EACCES, go on */
    f = fopen(plain, "w");
    assert_non_null(f);
    fputs("echo from-sh\n", f);
    fclose(f);
    assert_int_equal(chmod(plain, 0700), 0);
    const char *saved = getenv("PATH");
    char *saved_copy = strdup(saved ? saved : "");
    ran r;
    char *plain_argv[] = {"aurora-plain-text", NULL};
    snprintf(path, sizeof(path), "/nonexistent:%s", dir);
    setenv("PATH", path, 1);
    int plain_rc = run("aurora-plain-text", plain_argv, &r);
    char *try_argv[] = {"aurora-try-me", NULL};
    snprintf(path, sizeof(path), "/nonexistent:%s", locked_dir);
    setenv("PATH", path, 1);
    int locked_rc = run("aurora-try-me", try_argv, &r);
    snprintf(path, sizeof(path), "/nonexistent:%s:%s", locked_dir, saved_copy);
    setenv("PATH", path, 1);
    char *echo_argv[] = {"echo", "after-the-locked-one", NULL};
    int echo_rc = run("echo", echo_argv, &r);
    setenv("PATH", saved_copy, 1);
    free(saved_copy);
    unlink(plain);
    unlink(locked);
    rmdir(locked_dir);
    rmdir(dir);
    assert_int_equal(plain_rc, ENOEXEC);
    assert_int_equal(locked_rc, EACCES);
    assert_int_equal(echo_rc, 0);
    assert_string_equal(r.out, "after-the-locked-one\n");
}

static void a_missing_program_is_enoent_and_reaped(void **state)
{
    (void)state;
    ran r;
    char *abs_argv[] = {"/nonexistent/kubectl", NULL};
    assert_int_equal(run(abs_argv[0], abs_argv, &r), ENOENT);
    char *bare_argv[] = {"aurora-no-such-program", NULL};
    assert_int_equal(run(bare_argv[0], bare_argv, &r), ENOENT);
    char *dir_argv[] = {"/tmp", NULL}; /* a directory is not a program */
    assert_int_equal(run(dir_argv[0], dir_argv, &r), EACCES);
    /* the failed children were reaped by spawn_vfork: none is left */
    errno = 0;
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

static void stdio_below_three_is_refused(void **state)
{
    (void)state;
    char *argv[] = {"/bin/true", NULL};
    pid_t pid = 0;
    spawn_req req = {"/bin/true", argv, environ, 0, 1, 2, -1};
    assert_int_equal(spawn_vfork(&req, &pid), EINVAL);
    assert_int_equal(pid, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(signals_reach_the_program_at_their_defaults),
        cmocka_unit_test(only_stdio_is_inherited),
        cmocka_unit_test(a_kept_status_descriptor_is_read_afresh),
        cmocka_unit_test(the_program_leads_its_own_group),
        cmocka_unit_test(a_bare_name_is_searched_in_path),
        cmocka_unit_test(path_search_is_posix_spawnps),
        cmocka_unit_test(unreadable_masks_reset_every_signal),
        cmocka_unit_test(a_missing_program_is_enoent_and_reaped),
        cmocka_unit_test(stdio_below_three_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
