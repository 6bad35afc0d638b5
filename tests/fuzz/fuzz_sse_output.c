/* fuzz_sse_output.c — command output, which an agent sends and a pod's logs
 * shape, turned into Server-Sent Events for the caller (server/sse_output.c:
 * a hand-written JSON encoder on the streaming path).
 *
 * Input: one byte of chunking seed, then the output bytes.  The output is
 * encoded as one event, and again as a stream cut into chunks (sizes from the
 * seed, both channels interleaved), and every event is read back by a strict
 * reader written here (RFC 8259 strings; base64 decoded by OpenSSL, not by
 * crypto.c).
 *
 * Invariants:
 *  - every event is `event: output\ndata: {"stream":"stdout"|"stderr",
 *    "text"|"base64":"…"}\n\n`; the data line holds no byte below 0x20 (a
 *    strict JSON parser refuses one inside a string, and a raw line break
 *    would end the SSE field: output could forge events);
 *  - the events of each channel give its bytes back exactly, in order;
 *  - a single event is text exactly when the bytes are valid UTF-8 without
 *    NUL (utf8_valid), and a text event's bytes are always such;
 *  - in a stream, only the finish may send base64 for bytes that are text
 *    as a whole (the held-back tail of a cut character). */
#include <ctype.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "crypto.h"
#include "fuzz_util.h"
#include "proto.h"
#include "sse_output.h"
#include "utf8.h"

#define MAX_OUT 8192
#define MAX_B64 (4 * ((MAX_OUT + 2) / 3))

/* One decoded event (EVP_DecodeBlock writes the padding's bytes too). */
typedef struct {
    int channel;
    int text;
    unsigned char bytes[MAX_OUT + 3];
    size_t n;
} event;

/* Reads a JSON string's body at *p (after its opening quote) up to its
 * closing quote, strictly, into out (at most cap bytes); fails otherwise. */
static void read_string(const char **p, const char *end, unsigned char *out, size_t cap,
                        size_t *n)
{
    const char *s = *p;
    *n = 0;
    for (;;) {
        FUZZ_CHECK(s < end, "string not closed");
        unsigned char c = (unsigned char)*s++;
        FUZZ_CHECK(c >= 0x20, "raw byte 0x%02x inside a JSON string", c);
        if (c == '"')
            break;
        if (c == '\\') {
            FUZZ_CHECK(s < end, "escape cut");
            char e = *s++;
            switch (e) {
            case '"': c = '"'; break;
            case '\\': c = '\\'; break;
            case '/': c = '/'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'u': {
                FUZZ_CHECK(end - s >= 4, "\\u escape cut");
                int v = 0;
                for (int k = 0; k < 4; k++) {
                    int h = crypto_hex_digit((unsigned char)s[k]);
                    FUZZ_CHECK(h >= 0, "\\u escape not hex");
                    v = v * 16 + h;
                }
                /* the encoder escapes only control characters this way */
                FUZZ_CHECK(v < 0x20, "\\u%04x escapes what needs no escape", v);
                c = (unsigned char)v;
                s += 4;
                break;
            }
            default:
                fuzz_fail("unknown escape \\%c", e);
            }
        }
        FUZZ_CHECK(*n < cap, "string longer than the output can make");
        out[(*n)++] = c;
    }
    *p = s;
}

static int expect(const char **p, const char *end, const char *lit)
{
    size_t l = strlen(lit);
    if ((size_t)(end - *p) < l || memcmp(*p, lit, l))
        return 0;
    *p += l;
    return 1;
}

/* Reads the next event at *p into ev. */
static void read_event(const char **p, const char *end, event *ev)
{
    const char *s = *p;
    FUZZ_CHECK(expect(&s, end, "event: output\ndata: {\"stream\":\""), "event head");
    if (expect(&s, end, "stdout\","))
        ev->channel = PROTO_CHAN_STDOUT;
    else if (expect(&s, end, "stderr\","))
        ev->channel = PROTO_CHAN_STDERR;
    else
        fuzz_fail("stream is neither stdout nor stderr");
    if (expect(&s, end, "\"text\":\"")) {
        ev->text = 1;
        read_string(&s, end, ev->bytes, MAX_OUT, &ev->n);
    } else if (expect(&s, end, "\"base64\":\"")) {
        ev->text = 0;
        static unsigned char b64[MAX_B64];
        size_t bn = 0;
        read_string(&s, end, b64, sizeof(b64), &bn);
        FUZZ_CHECK(bn > 0 && bn % 4 == 0, "base64 of %zu characters", bn);
        /* EVP_DecodeBlock would skip white space: only the alphabet, '=' at the end */
        for (size_t k = 0; k < bn; k++)
            FUZZ_CHECK(isalnum(b64[k]) || b64[k] == '+' || b64[k] == '/' ||
                           (b64[k] == '=' && k >= bn - 2 && (k == bn - 1 || b64[bn - 1] == '=')),
                       "base64 character 0x%02x at %zu of %zu", b64[k], k, bn);
        int got = EVP_DecodeBlock(ev->bytes, b64, (int)bn);
        FUZZ_CHECK(got >= 0, "base64 does not decode");
        size_t pad = (b64[bn - 1] == '=') + (b64[bn - 2] == '=');
        ev->n = (size_t)got - pad;
    } else {
        fuzz_fail("neither text nor base64");
    }
    /* the data line is literals and strings read_string checked byte by byte */
    FUZZ_CHECK(expect(&s, end, "}\n\n"), "event tail");
    if (ev->text)
        FUZZ_CHECK(utf8_valid((const char *)ev->bytes, ev->n), "a text event is not valid text");
    *p = s;
}

/* A small deterministic generator for chunk sizes and channels. */
static unsigned next_rand(unsigned *state)
{
    *state = *state * 1103515245u + 12345u;
    return *state >> 16;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size - 1 > MAX_OUT)
        return 0;
    unsigned seed = data[0];
    const unsigned char *out = data + 1;
    size_t n = size - 1;
    static event ev;

    /* one event */
    buf_t b = BUF_INIT;
    FUZZ_CHECK(sse_output_event(&b, PROTO_CHAN_STDERR, out, n) == 0, "out of memory");
    const char *p = buf_head(&b), *end = p + buf_pending(&b);
    read_event(&p, end, &ev);
    FUZZ_CHECK(p == end, "more than one event");
    FUZZ_CHECK(ev.channel == PROTO_CHAN_STDERR, "wrong channel");
    FUZZ_CHECK(ev.n == n && !memcmp(ev.bytes, out, n), "the bytes did not come back");
    FUZZ_CHECK(ev.text == utf8_valid((const char *)out, n), "text chosen wrongly");
    buf_free(&b);

    /* a stream: chunks of 1..64 bytes, each to one of the two channels; what
     * each channel was sent is compared with what its events give back */
    static unsigned char sent[2][MAX_OUT], got[2][MAX_OUT];
    size_t nsent[2] = { 0, 0 }, ngot[2] = { 0, 0 };
    sse_output_stream st;
    memset(&st, 0, sizeof(st));
    buf_init(&b);
    for (size_t off = 0; off < n;) {
        size_t k = 1 + next_rand(&seed) % 64;
        if (k > n - off)
            k = n - off;
        int ch = next_rand(&seed) % 2;
        FUZZ_CHECK(sse_output_chunk(&b, &st, ch ? PROTO_CHAN_STDERR : PROTO_CHAN_STDOUT,
                                    out + off, k) == 0, "out of memory");
        memcpy(sent[ch] + nsent[ch], out + off, k);
        nsent[ch] += k;
        off += k;
    }
    size_t before_finish = buf_pending(&b);
    FUZZ_CHECK(sse_output_finish(&b, &st) == 0, "out of memory");
    p = buf_head(&b);
    end = p + buf_pending(&b);
    while (p < end) {
        int in_finish = (size_t)(p - buf_head(&b)) >= before_finish;
        read_event(&p, end, &ev);
        int ch = ev.channel == PROTO_CHAN_STDERR;
        if (!ev.text && !in_finish)
            FUZZ_CHECK(!utf8_valid((const char *)sent[ch], nsent[ch]),
                       "base64 mid-stream for a channel whose bytes are text");
        FUZZ_CHECK(ngot[ch] + ev.n <= nsent[ch], "channel %d: more bytes than it was sent", ch);
        memcpy(got[ch] + ngot[ch], ev.bytes, ev.n);
        ngot[ch] += ev.n;
    }
    for (int ch = 0; ch < 2; ch++)
        FUZZ_CHECK(ngot[ch] == nsent[ch] && !memcmp(got[ch], sent[ch], nsent[ch]),
                   "channel %d: the stream's bytes did not come back", ch);
    buf_free(&b);
    return 0;
}
