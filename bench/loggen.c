/* loggen.c — a `kubectl logs`-like output generator for bench/bigout_bench.py.
 *
 * Usage: loggen <verb> <bytes> <seed>   (the verb, e.g. "logs", is ignored: the
 * agent runs this as AURORA_KUBECTL_PATH with kubectl-like arguments)
 *
 * Writes exactly <bytes> bytes of text lines to stdout: timestamps, levels,
 * pod names, request ids, a sequence number per line (so that any reordered,
 * lost or duplicated chunk changes the SHA-256) and now and then a multi-byte
 * UTF-8 character, as real service logs have.  Deterministic for a given
 * seed, and fast (a 1 MiB buffer per write) so that it is never what the
 * benchmark measures: line bodies are rendered once, each line gets its
 * timestamp and sequence number digit by digit.  Built by the bench itself
 * with cc -O2. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int write_all(const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(1, p, n);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes v as exactly width decimal digits (zero-padded) at o. */
static char *digits(char *o, unsigned long long v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        o[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return o + width;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: loggen <verb> <bytes> <seed>\n");
        return 2;
    }
    unsigned long long left = strtoull(argv[2], NULL, 10);
    rng = 0x9E3779B97F4A7C15ull ^ strtoull(argv[3], NULL, 10);
    if (!rng)
        rng = 1;
    static const char *levels[] = {"INFO ", "INFO ", "INFO ", "DEBUG", "WARN ", "ERROR"};
    static const char *verbs[] = {"GET", "GET", "POST", "PUT", "DELETE"};
    static const char *paths[] = {"/api/v1/namespaces/%s/pods", "/apis/apps/v1/deployments",
                                  "/healthz", "/api/v1/nodes/%s/proxy/metrics",
                                  "/apis/batch/v1/jobs", "/api/v1/events?watch=true"};
    /* Line bodies rendered once (printf per line would make the generator,
     * not the tunnel, what is measured); each line is a timestamp and a
     * sequence number written digit by digit, then a body picked at random. */
    enum { BODIES = 4096, BODY_MAX = 256 };
    static char body[BODIES][BODY_MAX];
    static int body_len[BODIES];
    for (int b = 0; b < BODIES; b++) {
        uint64_t r = next();
        char path[96];
        snprintf(path, sizeof(path), paths[r % 6], (r >> 8) % 2 ? "kube-system" : "default");
        body_len[b] = snprintf(body[b], BODY_MAX,
                               " %s pod/api-%04x-%05u req=%016llx %s %s status=%u dur=%u%s "
                               "bytes=%u\n",
                               levels[(r >> 12) % 6], (unsigned)(r >> 16) & 0xffff,
                               (unsigned)(r >> 32) % 100000, (unsigned long long)next(),
                               verbs[(r >> 20) % 5], path, (r >> 24) % 17 ? 200u : 503u,
                               (unsigned)(r >> 40) % 900,
                               (r >> 50) % 97 ? "ms" : "\xc2\xb5s \xe2\x86\x92 retry", /* µs → */
                               (unsigned)(r >> 28) % 65536);
    }
    enum { BUF = 1 << 20 };
    char *buf = malloc(BUF + 512);
    if (!buf)
        return 1;
    size_t len = 0;
    unsigned long long seq = 0;
    while (left) {
        uint64_t r = next();
        char *o = buf + len;
        memcpy(o, "2026-12-03T", 11);
        o = digits(o + 11, (seq / 3600000) % 24, 2);
        *o++ = ':';
        o = digits(o, (seq / 60000) % 60, 2);
        *o++ = ':';
        o = digits(o, (seq / 1000) % 60, 2);
        *o++ = '.';
        o = digits(o, r % 1000000, 6);
        memcpy(o, "Z seq=", 6);
        o = digits(o + 6, seq, 10);
        const char *b = body[(r >> 20) % BODIES];
        int bl = body_len[(r >> 20) % BODIES];
        memcpy(o, b, (size_t)bl);
        o += bl;
        seq++;
        len = (size_t)(o - buf);
        if (len >= BUF || len >= left) {
            size_t out = len < left ? len : (size_t)left;
            if (write_all(buf, out) != 0)
                return 1;
            left -= out;
            len = 0;
        }
    }
    free(buf);
    return 0;
}
