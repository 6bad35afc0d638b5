/* clock.h — deadlines for timed waits.
 *
 * pthread_cond_timedwait on a condition variable created with
 * pthread_condattr_setclock(CLOCK_MONOTONIC) takes an absolute time on that
 * clock; a wall-clock jump (NTP, an operator) then neither shortens nor
 * stretches the wait. */
#ifndef AURORA_CLOCK_H
#define AURORA_CLOCK_H

#include <time.h>

/* The clock's now plus ms (ms >= 0), normalized.  CLOCK_MONOTONIC unless
 * the wait's API takes another (pthread_timedjoin_np: CLOCK_REALTIME). */
static inline struct timespec clock_after_ms(clockid_t clock, long ms)
{
    struct timespec t;
    clock_gettime(clock, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

#endif
