/* hop_bench.c — what one hop between threads costs on this machine.
 *
 * Beyond what a command the caller starts itself costs, a tunnelled command
 * crosses four loopback TCP connections (client -> server -> agent -> server
 * -> client) and four hand-offs between threads of one process (server loop
 * -> store worker -> loop; agent loop -> job thread, job thread -> loop).
 * Each is a wake-up: one thread writes, another, asleep in poll, runs.  This
 * program measures that one step, from just before the write to just after
 * the sleeper's poll returns, so the tunnel's hop table (BENCH_PERF_SCHED)
 * can be read against what the machine itself charges per hop.
 *
 * Seven ways, N wake-ups each, through an eventfd (a hand-off inside a
 * process) or one loopback TCP connection with TCP_NODELAY ("TCP"):
 *   back to back   the sleeper is woken again as soon as it has answered: the
 *                  CPUs stay warm, the best case;
 *   after idle     a gap of GAP_US before each wake-up, as at concurrency 1,
 *                  where each hop comes after the CPUs have idled (a virtual
 *                  CPU that idles is halted by the hypervisor, and waking it
 *                  is the host's work); the scheduler places both threads;
 *   same CPU       after idle, both threads pinned to CPU 0: the sleeper runs
 *                  once the waker blocks, no other CPU is woken;
 *   other CPU      after idle, the threads pinned to CPUs 0 and 1.
 *
 * Usage: hop_bench [N] [GAP_US]      (defaults 2000, 2000)
 * Prints one row per way: p50, p90, p99 in microseconds, and p50 as a ratio to
 * "back to back".  Its only connection is to itself on 127.0.0.1. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sorted_stats.h"

typedef struct {
    int to_sleeper, to_waker;  /* eventfds, or the two ends of one TCP connection */
    int sleeper_in, waker_in;  /* where each side reads */
    int n;
    int sleeper_cpu;           /* -1: not pinned */
    _Atomic int64_t sent_ns;   /* the waker's clock just before its write */
    double *lat_us;            /* one per wake-up, filled by the sleeper */
} hop_run;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int pin(int cpu)
{
    if (cpu < 0)
        return 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* Eight bytes: an eventfd's count, or a message on the TCP connection
 * (small enough to arrive in one segment with TCP_NODELAY). */
static void wait_fd(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    while (poll(&p, 1, -1) < 0 && errno == EINTR)
        ;
    uint64_t v;
    if (read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v)) {
        perror("hop_bench: read");
        exit(1);
    }
}

static void post_fd(int fd)
{
    uint64_t one = 1;
    if (write(fd, &one, sizeof(one)) != (ssize_t)sizeof(one)) {
        perror("hop_bench: write");
        exit(1);
    }
}

/* A TCP connection over 127.0.0.1 (an ephemeral port): fds[0] and fds[1]
 * are its two ends. */
static void tcp_pair(int fds[2])
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof(a);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &al) != 0) {
        perror("hop_bench: listen on 127.0.0.1");
        exit(1);
    }
    fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fds[0] < 0 || connect(fds[0], (struct sockaddr *)&a, sizeof(a)) != 0 ||
        (fds[1] = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0) {
        perror("hop_bench: connect to 127.0.0.1");
        exit(1);
    }
    int one = 1;
    setsockopt(fds[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fds[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    close(l);
}

static void *sleeper_main(void *arg)
{
    hop_run *r = arg;
    if (pin(r->sleeper_cpu) != 0) {
        fprintf(stderr, "hop_bench: cannot pin to CPU %d\n", r->sleeper_cpu);
        exit(1);
    }
    for (int i = 0; i < r->n; i++) {
        wait_fd(r->sleeper_in); /* poll, as the tunnel's threads do */
        r->lat_us[i] = (double)(now_ns() - r->sent_ns) / 1000.0;
        post_fd(r->to_waker);
    }
    return NULL;
}

/* n wake-ups of a sleeper on sleeper_cpu by a waker on waker_cpu (-1: free),
 * gap_us apart, through eventfds or (tcp) one loopback TCP connection; the
 * sorted one-way latencies in out. */
static void run(int n, int gap_us, int waker_cpu, int sleeper_cpu, int tcp, double *out)
{
    hop_run r = { .n = n, .sleeper_cpu = sleeper_cpu, .lat_us = out };
    if (tcp) {
        int fds[2];
        tcp_pair(fds);
        r.to_sleeper = r.waker_in = fds[0];
        r.to_waker = r.sleeper_in = fds[1];
    } else {
        r.to_sleeper = r.sleeper_in = eventfd(0, EFD_CLOEXEC);
        r.to_waker = r.waker_in = eventfd(0, EFD_CLOEXEC);
        if (r.to_sleeper < 0 || r.to_waker < 0) {
            perror("hop_bench: eventfd");
            exit(1);
        }
    }
    cpu_set_t saved;
    pthread_getaffinity_np(pthread_self(), sizeof(saved), &saved);
    if (pin(waker_cpu) != 0) {
        fprintf(stderr, "hop_bench: cannot pin to CPU %d\n", waker_cpu);
        exit(1);
    }
    pthread_t t;
    if (pthread_create(&t, NULL, sleeper_main, &r) != 0) {
        fprintf(stderr, "hop_bench: pthread_create failed\n");
        exit(1);
    }
    struct timespec gap = { gap_us / 1000000, (long)(gap_us % 1000000) * 1000 };
    for (int i = 0; i < n; i++) {
        if (gap_us > 0)
            nanosleep(&gap, NULL); /* both threads asleep: the CPUs idle */
        r.sent_ns = now_ns();
        post_fd(r.to_sleeper);
        wait_fd(r.waker_in);
    }
    pthread_join(t, NULL);
    pthread_setaffinity_np(pthread_self(), sizeof(saved), &saved);
    close(r.to_sleeper);
    close(r.to_waker);
    sort_samples(out, n);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    int gap_us = argc > 2 ? atoi(argv[2]) : 2000;
    if (n < 10 || gap_us < 0) {
        fprintf(stderr, "usage: hop_bench [N >= 10] [GAP_US >= 0]\n");
        return 2;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    struct {
        const char *name;
        int gap, waker, sleeper, tcp;
    } ways[] = {
        { "back to back", 0, -1, -1, 0 },
        { "after idle", gap_us, -1, -1, 0 },
        { "after idle, same CPU", gap_us, 0, 0, 0 },
        { "TCP, after idle", gap_us, -1, -1, 1 },
        { "TCP, same CPU", gap_us, 0, 0, 1 },
        { "after idle, other CPU", gap_us, 0, 1, 0 },
        { "TCP, other CPU", gap_us, 0, 1, 1 },
    };
    int nways = ncpu >= 2 ? 7 : 5;
    double *lat = calloc((size_t)n, sizeof(double));
    if (!lat)
        return 1;
    printf("== one thread waking another (write -> its poll returns), %d wake-ups each, "
           "gap %d us\n", n, gap_us);
    printf("%-24s %9s %9s %9s %9s\n", "way", "p50 us", "p90 us", "p99 us", "p50 x");
    printf("-------------------------------------------------------------------\n");
    double base = 0;
    for (int w = 0; w < nways; w++) {
        run(n, ways[w].gap, ways[w].waker, ways[w].sleeper, ways[w].tcp, lat);
        double p50 = pct(lat, n, 0.50);
        if (w == 0)
            base = p50 > 0 ? p50 : 1e-9;
        printf("%-24s %9.1f %9.1f %9.1f %9.2f\n", ways[w].name, p50, pct(lat, n, 0.90),
               pct(lat, n, 0.99), p50 / base);
    }
    printf("p50 x = this way's p50 over back to back's; \"after idle, same CPU\" wakes the "
           "sleeper only when the waker sleeps, so it includes the waker's own way back into "
           "poll\n");
    free(lat);
    return 0;
}
