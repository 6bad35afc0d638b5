/* sse_output.c — command output as SSE events; see sse_output.h. */
#include "sse_output.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "proto.h"
#include "utf8.h"

/* What a byte below 0x80 becomes inside a JSON string: 0 = itself, else the
 * second character of its two-character escape, or 'u' for \u00XX (the
 * escapes cJSON writes, so the text reads the same as before). */
static const char ascii_escape[128] = {
    ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't',
    ['"'] = '"',  ['\\'] = '\\',
    [0x00] = 'u', [0x01] = 'u', [0x02] = 'u', [0x03] = 'u', [0x04] = 'u', [0x05] = 'u',
    [0x06] = 'u', [0x07] = 'u', [0x0b] = 'u', [0x0e] = 'u', [0x0f] = 'u', [0x10] = 'u',
    [0x11] = 'u', [0x12] = 'u', [0x13] = 'u', [0x14] = 'u', [0x15] = 'u', [0x16] = 'u',
    [0x17] = 'u', [0x18] = 'u', [0x19] = 'u', [0x1a] = 'u', [0x1b] = 'u', [0x1c] = 'u',
    [0x1d] = 'u', [0x1e] = 'u', [0x1f] = 'u',
};

/* 16 bytes at a time, with the vector extension of GCC and clang (SSE2 on
 * x86-64, NEON on arm64, plain words elsewhere): the offset of the first byte
 * of p[0..16) that needs more than a copy (below 0x20, '"', '\\', or 0x80
 * and above), 16 when none does.  Output is mostly log lines of printable
 * ASCII, where this scan, and finding each line's '\n', is the cost. */
typedef unsigned char byte16 __attribute__((vector_size(16)));
static unsigned first_needing_care(const unsigned char *p)
{
    byte16 v;
    memcpy(&v, p, sizeof v);
    byte16 care = (byte16)((v < 0x20) | (v >= 0x80) | (v == '"') | (v == '\\'));
    uint64_t half[2]; /* 0xff in each byte that needs care */
    memcpy(half, &care, sizeof half);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (half[0])
        return (unsigned)__builtin_ctzll(half[0]) / 8;
    if (half[1])
        return 8 + (unsigned)__builtin_ctzll(half[1]) / 8;
    return 16;
#else
    unsigned i = 0;
    if (half[0] | half[1])
        while (!care[i])
            i++;
    else
        i = 16;
    return i;
#endif
}

/* Appends p[0..n) JSON-escaped to b (room reserved by the caller: 6n).
 * 0, or -1 at the first byte that is not valid UTF-8 or is NUL. */
static int escape_text(buf_t *b, const unsigned char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char *o = b->data + b->len;
    size_t i = 0;
    while (i < n) {
        /* the common case: a run of printable ASCII, copied at once */
        size_t run = i;
        while (run + 16 <= n) {
            unsigned clean = first_needing_care(p + run);
            run += clean;
            if (clean < 16)
                break;
        }
        while (run < n && p[run] < 0x80 && !ascii_escape[p[run]])
            run++;
        memcpy(o, p + i, run - i);
        o += run - i;
        i = run;
        if (i >= n)
            break;
        unsigned char c = p[i];
        if (c >= 0x80) {
            size_t l = utf8_seq_len(p + i, n - i);
            if (!l)
                return -1;
            memcpy(o, p + i, l);
            o += l;
            i += l;
            continue;
        }
        if (c == 0)
            return -1;
        *o++ = '\\';
        *o++ = ascii_escape[c];
        if (ascii_escape[c] == 'u') {
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
        i++;
    }
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
    return 0;
}

int sse_output_event(buf_t *b, int channel, const unsigned char *p, size_t n)
{
    const char *head = channel == PROTO_CHAN_STDERR
                           ? "event: output\ndata: {\"stream\":\"stderr\",\""
                           : "event: output\ndata: {\"stream\":\"stdout\",\"";
    /* at most 6 bytes per input byte (\u00XX) as text, 4/3 as base64 */
    if (n > ((size_t)-1 - 128) / 6 || buf_reserve(b, 64 + 6 * n) < 0)
        return -1;
    size_t mark = b->len; /* after the reserve: it may move what is pending */
    buf_append_str(b, head);
    buf_append_str(b, "text\":\"");
    if (escape_text(b, p, n) < 0) {
        b->len = mark + strlen(head);
        b->data[b->len] = '\0';
        char *b64 = crypto_base64(p, n);
        if (!b64) {
            b->len = mark;
            b->data[mark] = '\0';
            return -1;
        }
        buf_append_str(b, "base64\":\"");
        buf_append_str(b, b64);
        free(b64);
    }
    buf_append_str(b, "\"}\n\n");
    return 0;
}

int sse_output_chunk(buf_t *b, sse_output_stream *s, int channel, const unsigned char *p,
                     size_t n)
{
    int ch = channel == PROTO_CHAN_STDERR;
    unsigned char *joined = NULL;
    if (s->tail_len[ch]) {
        size_t held = s->tail_len[ch];
        joined = malloc(held + n);
        if (!joined)
            return -1;
        memcpy(joined, s->tail[ch], held);
        memcpy(joined + held, p, n);
        s->tail_len[ch] = 0;
        p = joined;
        n += held;
    }
    size_t whole = utf8_complete_prefix((const char *)p, n);
    int rc = 0;
    if (whole < n) { /* at most 3 bytes: utf8_complete_prefix looks back no further */
        memcpy(s->tail[ch], p + whole, n - whole);
        s->tail_len[ch] = (unsigned char)(n - whole);
    }
    if (whole)
        rc = sse_output_event(b, channel, p, whole);
    free(joined);
    return rc;
}

int sse_output_finish(buf_t *b, sse_output_stream *s)
{
    int rc = 0;
    for (int ch = 0; ch < 2; ch++) {
        if (s->tail_len[ch] && sse_output_event(b, ch ? PROTO_CHAN_STDERR : PROTO_CHAN_STDOUT,
                                                s->tail[ch], s->tail_len[ch]) < 0)
            rc = -1;
        s->tail_len[ch] = 0;
    }
    return rc;
}
