/* backoff.h — reconnect delays: exponential with jitter, capped.
 * Attempt n (from 0) waits a random time in [b/2, b] where b = min(base * 2^n, cap). */
#ifndef AURORA_AGENT_BACKOFF_H
#define AURORA_AGENT_BACKOFF_H

#include <stdint.h>

typedef struct {
    int attempt;
    int64_t base_ms;
    int64_t cap_ms;
    uint64_t rng; /* xorshift state */
} agent_backoff;

void agent_backoff_init(agent_backoff *b, int base_seconds, int cap_seconds);
/* Delay before the next attempt, in ms; advances the attempt counter. */
int64_t agent_backoff_next_ms(agent_backoff *b);
/* Delay at the cap (with the same jitter); for refusals that retrying soon won't fix. */
int64_t agent_backoff_cap_ms(agent_backoff *b);
/* After a connection that stayed up: next delay starts from the beginning again. */
void agent_backoff_reset(agent_backoff *b);

#endif
