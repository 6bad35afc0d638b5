/* stalled_secrets.h — one scenario for every remote secrets backend (Vault,
 * AWS Secrets Manager): the backend accepts connections and never answers
 * (silent_peer.h).  The first call waits out its timeout and opens the
 * backend's breaker (server/breaker.h); while one call (the probe, on a
 * handle with a long timeout) waits, the others fail at once; the backend's
 * answer to the probe (an error of its own, given by the test) closes it.
 * Counted, not timed: only the first call and the probe reach the backend.
 * Header-only, like proc_harness.h. */
#ifndef AURORA_TEST_STALLED_SECRETS_H
#define AURORA_TEST_STALLED_SECRETS_H

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "breaker.h"
#include "proc_harness.h"
#include "secrets.h"
#include "silent_peer.h"

typedef struct {
    secrets_t *s;
    int rc;
    char err[512];
    atomic_int done;
} stalled_call;

static inline void *stalled_call_main(void *p)
{
    stalled_call *a = p;
    unsigned char *got = NULL;
    size_t len = 0;
    a->rc = secrets_get(a->s, "aurora/stall/probe", &got, &len, a->err, sizeof(a->err));
    if (got)
        secrets_free(got, len);
    atomic_store(&a->done, 1);
    return NULL;
}

/* n calls on s at once, each on a thread of its own; returns once all of
 * them have ended (all joined before any check: a failed one leaves the
 * test).  a[i].rc and a[i].err say how each ended. */
#define STALLED_CALLS_MAX 16
static inline void stalled_calls_together(secrets_t *s, stalled_call *a, int n)
{
    pthread_t th[STALLED_CALLS_MAX];
    assert_true(n > 0 && n <= STALLED_CALLS_MAX);
    for (int i = 0; i < n; i++) {
        a[i] = (stalled_call){ .s = s };
        assert_int_equal(pthread_create(&th[i], NULL, stalled_call_main, &a[i]), 0);
    }
    int joined = 0;
    for (int i = 0; i < n; i++)
        joined += pthread_join(th[i], NULL) == 0;
    assert_int_equal(joined, n);
}

static inline int stalled_get(secrets_t *s, char *err, size_t cap)
{
    unsigned char *got = NULL;
    size_t len = 0;
    int rc = secrets_get(s, "aurora/stall/a", &got, &len, err, cap);
    if (got)
        secrets_free(got, len);
    return rc;
}

/* quick: a handle on peer->url with a short timeout; patient: one with a
 * timeout longer than the test.  answer: the backend's HTTP answer to the
 * probe; probe_rc: what the probe's caller then gets. */
static inline void stalled_secrets_fail_fast(silent_peer *peer, secrets_t *quick,
                                             secrets_t *patient, const char *answer, int probe_rc)
{
    breaker *br = breaker_get(BREAKER_SECRETS, peer->url, "", 0); /* the handles' own */
    assert_non_null(br);
    uint64_t fast0 = breaker_fast_failures(br);
    char err[512];
    if (stalled_get(quick, err, sizeof(err)) != SECRETS_E_UNAVAILABLE || !strstr(err, "timed out"))
        fail_msg("the first call: %s", err);
    assert_true(breaker_is_open(br));
    stalled_call probe = { .s = patient };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stalled_call_main, &probe), 0);
    long long t0 = ph_now_ms();
    while (!breaker_probing(br) && ph_now_ms() - t0 < 30000)
        usleep(1000);
    assert_true(breaker_probing(br));
    for (int i = 0; i < 3; i++)
        if (stalled_get(quick, err, sizeof(err)) != SECRETS_E_UNAVAILABLE ||
            !strstr(err, "failing fast"))
            fail_msg("call %d while the probe waits: %s", i, err);
    assert_int_equal(secrets_put(quick, "aurora/stall/b", "x", 1, err, sizeof(err)),
                     SECRETS_E_UNAVAILABLE);
    assert_non_null(strstr(err, "has not answered for"));
    assert_non_null(strstr(err, peer->url));
    assert_int_equal(breaker_fast_failures(br), fast0 + 4);

    /* The probe has its turn before it has connected: answer until its
     * connection has come too (the first call's is there already). */
    int conns = 0;
    while (conns < 2 && silent_peer_wait_connection(peer, 30000))
        conns += silent_peer_answer_all(peer, answer);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(conns, 2); /* the first call and the probe; not the four refused */
    if (probe.rc != probe_rc)
        fail_msg("probe: rc %d (%s)", probe.rc, probe.err);
    assert_false(breaker_is_open(br));
    breaker_put(br);
}

#endif
