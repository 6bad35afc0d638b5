/* exec_bench.c — what it costs a new program to start on another CPU than
 * the thread that started it.
 *
 * The scheduler may place a freshly forked child on an idle CPU, or move it
 * there in execve (exec balancing).  Its first instructions then run where
 * nothing of its parent's just-written state (task, page tables, the pages
 * execve reads) is in the caches.  A perf sched recording of bench/run.sh
 * showed the tunnel's commands starting away from their job thread's CPU far
 * more often than the direct arm's (sched_summary.py, "the command itself"),
 * so this program measures what such a move costs on this machine: with the
 * parent pinned to one CPU, it starts PROG (default /bin/echo) N times, a
 * 2 ms pause before each (as at concurrency 1), and the child either stays on
 * the parent's CPU or is pinned to the other one before its execve.  The
 * child's CPU time comes from wait4's rusage: the program's own start-up
 * (ld.so, libc, locale) and the kernel's work in execve and exit, not the
 * parent's.  The four ways run interleaved in rounds, so a host neighbour's
 * load falls on all of them.
 *
 * A fifth way keeps the child on CPU 1 while a thread of this program spins
 * on CPU 0: on a VM whose two virtual CPUs share a physical core (or its
 * caches), a busy neighbour slows every program on the other one, which is
 * what the tunnel's own threads do to the commands at concurrency 16.
 *
 * Usage: exec_bench [ROUNDS] [PER_ROUND] [PROG]   (defaults 10, 40, /bin/echo)
 * Needs two CPUs.  Starts only PROG, with its output to /dev/null. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sorted_stats.h"

extern char **environ;

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0) {
        perror("exec_bench: sched_setaffinity");
        exit(1);
    }
}

/* The busy neighbour: spins on CPU 0 until told to stop. */
static atomic_int spinner_stop;
static volatile unsigned long spinner_sink;

static void *spinner_main(void *arg)
{
    (void)arg;
    pin(0);
    while (!atomic_load(&spinner_stop))
        for (unsigned long i = 0; i < 4096; i++)
            spinner_sink += i * i;
    return NULL;
}

/* One start of prog: the parent on parent_cpu, the child on child_cpu from
 * before its execve.  Returns the child's CPU time in microseconds. */
static double one_exec(const char *prog, int devnull, int parent_cpu, int child_cpu)
{
    pin(parent_cpu);
    struct timespec pause = { 0, 2000000 };
    nanosleep(&pause, NULL);
    char *const argv[] = { (char *)prog, "bench", NULL };
    pid_t pid = vfork();
    if (pid == 0) {
        /* system calls only: the child shares the parent's memory */
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(child_cpu, &set);
        if (sched_setaffinity(0, sizeof(set), &set) != 0)
            _exit(125);
        if (dup2(devnull, 1) != 1)
            _exit(126);
        execve(prog, argv, environ);
        _exit(127);
    }
    if (pid < 0) {
        perror("exec_bench: vfork");
        exit(1);
    }
    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0)
        if (errno != EINTR) {
            perror("exec_bench: wait4");
            exit(1);
        }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "exec_bench: %s did not exit 0 (status %d; 125: cannot pin, "
                "127: cannot run)\n", prog, status);
        exit(1);
    }
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 10;
    int per = argc > 2 ? atoi(argv[2]) : 40;
    const char *prog = argc > 3 ? argv[3] : "/bin/echo";
    if (rounds < 1 || per < 1 || rounds > 1000 || per > 10000) {
        fprintf(stderr, "usage: exec_bench [ROUNDS 1..1000] [PER_ROUND 1..10000] [PROG]\n");
        return 2;
    }
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2) {
        fprintf(stderr, "exec_bench: needs two CPUs\n");
        return 2;
    }
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull < 0) {
        perror("exec_bench: /dev/null");
        return 1;
    }
    static const struct {
        const char *name;
        int parent, child, busy; /* busy: a thread spins on CPU 0 meanwhile */
    } ways[] = {
        { "parent CPU 0, child stays", 0, 0, 0 },
        { "parent CPU 1, child moved to 0", 1, 0, 0 },
        { "parent CPU 1, child stays", 1, 1, 0 },
        { "parent CPU 0, child moved to 1", 0, 1, 0 },
        { "CPU 1, stays, CPU 0 busy", 1, 1, 1 },
    };
    enum { NWAYS = 5 };
    int n = rounds * per;
    double *cpu[NWAYS];
    for (int w = 0; w < NWAYS; w++)
        if (!(cpu[w] = calloc((size_t)n, sizeof(double))))
            return 1;
    for (int r = 0; r < rounds; r++)
        for (int w = 0; w < NWAYS; w++) {
            pthread_t spinner;
            if (ways[w].busy) {
                atomic_store(&spinner_stop, 0);
                if (pthread_create(&spinner, NULL, spinner_main, NULL) != 0) {
                    fprintf(stderr, "exec_bench: cannot start the spinning thread\n");
                    return 1;
                }
            }
            for (int i = 0; i < per; i++)
                cpu[w][r * per + i] = one_exec(prog, devnull, ways[w].parent, ways[w].child);
            if (ways[w].busy) {
                atomic_store(&spinner_stop, 1);
                pthread_join(spinner, NULL);
            }
        }
    printf("== %s started %d times each way (%d rounds of %d, interleaved), "
           "2 ms apart: the child's CPU\n", prog, n, rounds, per);
    printf("%-32s %9s %9s %9s %10s\n", "way", "p25 us", "p50 us", "p75 us", "p50 x stay");
    printf("--------------------------------------------------------------------------\n");
    double stay_p50[2] = { 1e-9, 1e-9 }; /* per destination CPU, idle neighbour */
    for (int w = 0; w < NWAYS; w++) {
        sort_samples(cpu[w], n);
        double p50 = pct(cpu[w], n, 0.50);
        if (ways[w].parent == ways[w].child && !ways[w].busy && p50 > 0)
            stay_p50[ways[w].child] = p50;
        printf("%-32s %9.0f %9.0f %9.0f %10.2f\n", ways[w].name, pct(cpu[w], n, 0.25), p50,
               pct(cpu[w], n, 0.75), p50 / stay_p50[ways[w].child]);
    }
    printf("p50 x stay = p50 over that of a child that stayed on the same CPU with the other "
           "one idle: what the move (or the busy neighbour) costs, the CPUs' own speeds "
           "aside\n");
    for (int w = 0; w < NWAYS; w++)
        free(cpu[w]);
    close(devnull);
    return 0;
}
