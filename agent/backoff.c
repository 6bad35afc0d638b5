/* backoff.c — exponential reconnect backoff with jitter. */
#include "backoff.h"

#include <time.h>
#include <unistd.h>

#include "crypto.h"

static uint64_t rng_next(agent_backoff *b)
{
    uint64_t x = b->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b->rng = x;
    return x;
}

/* uniform in [lo, hi] */
static int64_t jitter(agent_backoff *b, int64_t lo, int64_t hi)
{
    if (hi <= lo)
        return lo;
    return lo + (int64_t)(rng_next(b) % (uint64_t)(hi - lo + 1));
}

void agent_backoff_init(agent_backoff *b, int base_seconds, int cap_seconds)
{
    b->attempt = 0;
    b->base_ms = (int64_t)(base_seconds > 0 ? base_seconds : 1) * 1000;
    b->cap_ms = (int64_t)(cap_seconds > 0 ? cap_seconds : 1) * 1000;
    if (b->cap_ms < b->base_ms)
        b->cap_ms = b->base_ms;
    if (crypto_random(&b->rng, sizeof(b->rng)) != 0 || b->rng == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        b->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)getpid();
        if (b->rng == 0)
            b->rng = 0x9e3779b97f4a7c15ULL;
    }
}

int64_t agent_backoff_next_ms(agent_backoff *b)
{
    int64_t base = b->base_ms;
    for (int i = 0; i < b->attempt && base < b->cap_ms; i++)
        base *= 2;
    if (base > b->cap_ms)
        base = b->cap_ms;
    if (b->attempt < 62)
        b->attempt++;
    return jitter(b, base / 2, base);
}

int64_t agent_backoff_cap_ms(agent_backoff *b)
{
    if (b->attempt < 62)
        b->attempt++;
    return jitter(b, b->cap_ms * 3 / 4, b->cap_ms);
}

void agent_backoff_reset(agent_backoff *b)
{
    b->attempt = 0;
}
