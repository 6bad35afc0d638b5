/* test_sse_output.c — SSE `output` events (server/sse_output.c): the bytes come
 * back exactly (text when valid UTF-8 without NUL — the rule of utf8_valid —
 * else base64), the data line never holds a raw line break, and the 16-bytes-
 * at-a-time scan agrees with the byte-by-byte rule on every alignment.  The
 * events are read back with cJSON and the base64 decoder, not with the code
 * under test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "crypto.h"
#include "proto.h"
#include "sse_output.h"
#include "utf8.h"

/* Checks one event for p[0..n) on channel; returns 1 if it went as text. */
static int check_event(int channel, const unsigned char *p, size_t n)
{
    /* Events are appended after what is pending in a stream buffer that is
     * being consumed from the front (so the reserve may move it). */
    buf_t b = BUF_INIT;
    buf_append_str(&b, "consumed x");
    buf_consume(&b, 9);
    assert_int_equal(sse_output_event(&b, channel, p, n), 0);
    assert_int_equal(buf_head(&b)[0], 'x');
    const char *ev = buf_head(&b) + 1;
    size_t len = buf_pending(&b) - 1;
    const char *prefix = "event: output\ndata: ";
    assert_true(len > strlen(prefix) + 2);
    assert_memory_equal(ev, prefix, strlen(prefix));
    assert_memory_equal(ev + len - 2, "\n\n", 2);
    const char *data = ev + strlen(prefix);
    size_t dlen = len - strlen(prefix) - 2;
    /* no raw control byte at all: cJSON would accept one inside a string,
     * a strict parser (JSON.parse) would not */
    for (size_t k = 0; k < dlen; k++)
        assert_true((unsigned char)data[k] >= 0x20);
    cJSON *o = cJSON_ParseWithLength(data, dlen);
    assert_non_null(o);
    cJSON *s = cJSON_GetObjectItem(o, "stream");
    assert_string_equal(s->valuestring, channel == PROTO_CHAN_STDERR ? "stderr" : "stdout");
    cJSON *t = cJSON_GetObjectItem(o, "text");
    cJSON *b64 = cJSON_GetObjectItem(o, "base64");
    int text = t != NULL;
    assert_int_equal(text, utf8_valid((const char *)p, n));
    if (text) {
        assert_null(b64);
        assert_int_equal(strlen(t->valuestring), n);
        assert_memory_equal(t->valuestring, p, n);
    } else {
        assert_non_null(b64);
        size_t outlen = 0;
        unsigned char *raw = crypto_base64_decode(b64->valuestring, strlen(b64->valuestring),
                                                  &outlen);
        assert_non_null(raw);
        assert_int_equal(outlen, n);
        assert_memory_equal(raw, p, n);
        free(raw);
    }
    cJSON_Delete(o);
    buf_free(&b);
    return text;
}

static void test_fixed_cases(void **state)
{
    (void)state;
    const char *texts[] = {"", "plain line\n", "tab\there \"quoted\" back\\slash\r\n",
                           "\x01\x02\x1f\x7f ctl", "caf\xc3\xa9 \xe2\x86\x92 \xf0\x9f\x98\x80",
                           "0123456789abcdef\"0123456789abcdef\\"};
    for (size_t i = 0; i < sizeof(texts) / sizeof(*texts); i++)
        assert_int_equal(check_event(PROTO_CHAN_STDOUT, (const unsigned char *)texts[i],
                                     strlen(texts[i])), 1);
    const struct { const char *p; size_t n; } bins[] = {
        {"a\0b", 3},                 /* NUL */
        {"\xff\xfe", 2},             /* not UTF-8 */
        {"abc\xc3", 4},              /* cut inside a character */
        {"\xc0\xaf", 2},             /* overlong */
        {"\xed\xa0\x80", 3},         /* surrogate */
        {"\xf4\x90\x80\x80", 4},     /* above U+10FFFF */
        {"12345678\x80", 9},         /* continuation byte alone after a word */
    };
    for (size_t i = 0; i < sizeof(bins) / sizeof(*bins); i++)
        assert_int_equal(check_event(PROTO_CHAN_STDERR, (const unsigned char *)bins[i].p,
                                     bins[i].n), 0);
}

static void test_random_agrees_with_utf8_valid(void **state)
{
    (void)state;
    unsigned char p[600];
    unsigned seed = 12345;
    int texts = 0, bins = 0;
    for (int round = 0; round < 4000; round++) {
        size_t n = (size_t)(rand_r(&seed) % sizeof(p));
        int mode = round % 4;
        for (size_t i = 0; i < n; i++) {
            unsigned r = (unsigned)rand_r(&seed);
            if (mode == 0)
                p[i] = (unsigned char)(0x20 + r % 95); /* printable */
            else if (mode == 1)
                p[i] = r % 5 ? (unsigned char)(0x20 + r % 95) : (unsigned char)"\n\t\"\\\x01"[r / 5 % 5];
            else if (mode == 2)
                p[i] = (unsigned char)(r % 128 ? 0x20 + r % 95 : r);
            else
                p[i] = (unsigned char)r;
        }
        if (mode == 1 && n > 8 && round % 8 == 1) /* multi-byte characters at every offset */
            memcpy(p + (size_t)round % (n - 4), "\xe2\x86\x92", 3);
        if (check_event(round % 2 ? PROTO_CHAN_STDOUT : PROTO_CHAN_STDERR, p, n))
            texts++;
        else
            bins++;
    }
    assert_true(texts > 1000);
    assert_true(bins > 500);
}

/* Each byte that needs care, and the printable bytes at the edges of the
 * ranges the scan tests (0x20, '!', '#', '[', ']', '~', 0x7f), at every
 * offset of a line longer than two 16-byte blocks, and at its very end:
 * the block scan must stop for the first kind and never for the second. */
static void test_every_byte_class_at_every_offset(void **state)
{
    (void)state;
    static const struct { const char *s; size_t n; int text; } marks[] = {
        {"\x01", 1, 1}, {"\x1f", 1, 1}, {"\"", 1, 1}, {"\\", 1, 1}, {"\n", 1, 1},
        {"\xc3\xa9", 2, 1}, {"\xef\xbf\xbd", 3, 1}, {"\x80", 1, 0}, {"\xff", 1, 0},
        {"", 1, 0} /* NUL */, {" ", 1, 1}, {"!", 1, 1}, {"#", 1, 1}, {"[", 1, 1},
        {"]", 1, 1}, {"~", 1, 1}, {"\x7f", 1, 1},
    };
    unsigned char line[48];
    for (size_t m = 0; m < sizeof(marks) / sizeof(*marks); m++)
        for (size_t at = 0; at + marks[m].n <= sizeof(line); at++) {
            memset(line, 'a', sizeof(line));
            memcpy(line + at, marks[m].s, marks[m].n);
            assert_int_equal(check_event(PROTO_CHAN_STDOUT, line, sizeof(line)), marks[m].text);
        }
}

/* Decodes every output event of b (one channel) into out; counts base64 events. */
static size_t decode_all(const buf_t *b, unsigned char *out, size_t cap, int *b64_events)
{
    const char *p = buf_head(b), *end = p + buf_pending(b);
    size_t o = 0;
    *b64_events = 0;
    while (p < end) {
        const char *data = strstr(p, "data: ");
        const char *stop = strstr(p, "\n\n");
        assert_non_null(data);
        assert_non_null(stop);
        data += 6;
        cJSON *j = cJSON_ParseWithLength(data, (size_t)(stop - data));
        assert_non_null(j);
        cJSON *t = cJSON_GetObjectItem(j, "text");
        if (t) {
            size_t n = strlen(t->valuestring);
            assert_true(o + n <= cap);
            memcpy(out + o, t->valuestring, n);
            o += n;
        } else {
            cJSON *b64 = cJSON_GetObjectItem(j, "base64");
            size_t n = 0;
            unsigned char *raw = crypto_base64_decode(b64->valuestring,
                                                      strlen(b64->valuestring), &n);
            assert_non_null(raw);
            assert_true(o + n <= cap);
            memcpy(out + o, raw, n);
            o += n;
            free(raw);
            (*b64_events)++;
        }
        cJSON_Delete(j);
        p = stop + 2;
    }
    return o;
}

/* Non-ASCII text cut into chunks at random places: every event is text (the
 * cut characters are held back to the next chunk), and the events give the
 * bytes back exactly; a stream that ends inside a character sends the rest
 * as base64 at the finish. */
static void chunked_stream_keeps_characters_whole(void **state)
{
    (void)state;
    static const char *pieces[] = {"a", "\xc3\xa9", "\xe2\x86\x92", "\xf0\x9f\x98\x80",
                                   "\n", "\xe6\x97\xa5\xe6\x9c\xac"};
    unsigned char in[4096], got[8192];
    unsigned seed = 7;
    for (int round = 0; round < 300; round++) {
        size_t n = 0;
        while (n < sizeof(in) - 8) {
            const char *pc = pieces[rand_r(&seed) % 6];
            memcpy(in + n, pc, strlen(pc));
            n += strlen(pc);
        }
        int cut_inside = round % 3 == 0; /* the output itself ends mid-character */
        if (cut_inside)
            in[n++] = 0xe2;
        buf_t b = BUF_INIT;
        sse_output_stream s;
        memset(&s, 0, sizeof(s));
        for (size_t off = 0; off < n;) {
            size_t k = 1 + (size_t)rand_r(&seed) % 97;
            if (k > n - off)
                k = n - off;
            assert_int_equal(sse_output_chunk(&b, &s, PROTO_CHAN_STDOUT, in + off, k), 0);
            off += k;
        }
        assert_int_equal(sse_output_finish(&b, &s), 0);
        int b64 = 0;
        size_t m = decode_all(&b, got, sizeof(got), &b64);
        assert_int_equal(m, n);
        assert_memory_equal(got, in, n);
        assert_int_equal(b64, cut_inside ? 1 : 0);
        buf_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_cases),
        cmocka_unit_test(test_random_agrees_with_utf8_valid),
        cmocka_unit_test(test_every_byte_class_at_every_offset),
        cmocka_unit_test(chunked_stream_keeps_characters_whole),
    };
    return cmocka_run_group_tests_name("sse_output", tests, NULL, NULL);
}
