/* child_spawn.h — starting a kubectl child with vfork, the lean way.
 *
 * glibc's posix_spawn cannot know which signals the calling process handles,
 * so its child sets or queries the disposition of every one of the 64
 * signals before execve: 62 rt_sigaction calls per command, about 70 µs of
 * the command's path on a paravirtualised VM, where a system call costs 1 µs.
 * The kernel already knows: /proc/self/status lists the signals the
 * process catches (SigCgt) and ignores (SigIgn), read before each spawn with
 * one pread of a descriptor the runner keeps (~4 µs).  Every other signal is
 * at its default, so the child resets only those: the agent handles its
 * signals in a thread with sigwait and ignores SIGPIPE, so one call.
 *
 * The child, between vfork and execve, only makes system calls (it shares
 * the agent's memory, and the agent's other threads keep running):
 *  - signals stay blocked from before vfork until the dispositions are reset,
 *    so no handler of the agent runs in the child (all but libc's reserved
 *    two, which libc does not let a program block; nothing sends them to a
 *    process that is not one of the agent's threads);
 *  - then its own process group (setpgid 0), stdin/stdout/stderr from the
 *    given descriptors, every other descriptor closed, an empty signal mask,
 *    and execve (a path without '/' is searched in the agent's PATH as
 *    posix_spawnp does: no /bin/sh for a file without "#!");
 *  - an execve that fails is reported to the caller as its errno, and the
 *    child is reaped, so a missing kubectl is an error, not an exit code.
 * Without /proc (or when it cannot be read) every signal is reset, as glibc
 * does. */
#ifndef AURORA_AGENT_CHILD_SPAWN_H
#define AURORA_AGENT_CHILD_SPAWN_H

#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct {
    const char *path;   /* program; no '/': searched in PATH */
    char *const *argv;  /* NULL-terminated */
    char *const *envp;  /* NULL-terminated */
    int stdin_fd;       /* become the child's 0, 1, 2; each >= 3, so that */
                        /* no dup2 onto 0..2 clobbers a later one */
    int stdout_fd;
    int stderr_fd;
    int status_fd;      /* /proc/self/status kept open, or -1: opened per call */
} spawn_req;

/* Starts the program; *pid is its pid (and process group).  Returns 0 or an
 * errno value (vfork's, or the failed execve's, the child then reaped). */
int spawn_vfork(const spawn_req *r, pid_t *pid);

/* The signals this process catches or ignores, read from /proc/self/status
 * (status_fd if >= 0, else opened here); bit n-1 = signal n.  Returns 0, or
 * -1 when it cannot be read. */
int spawn_signals_to_reset(int status_fd, uint64_t *mask);

/* For a child between fork/vfork and execve (system calls only); the cloud
 * sandbox's child uses them too. */
/* Sets each signal of mask (bit n-1 = signal n) to SIG_DFL, libc's reserved
 * ones included; SIGKILL and SIGSTOP are skipped. */
void child_reset_signals(uint64_t mask);
/* Closes every descriptor from 3 up but keep_a and keep_b (>= 3, or -1).
 * Returns 0 or -1 (errno). */
int child_close_all_but(int keep_a, int keep_b);

#endif
