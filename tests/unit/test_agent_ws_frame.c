/* test_agent_ws_frame.c — the agent's own WebSocket framing (agent/ws_frame.c)
 * against RFC 6455 5.2 as this file reads it: a reference decoder and a
 * byte-at-a-time mask, written here independently of the code under test.
 * Covered: each length encoding at its boundaries (125/126, 65535/65536) in
 * its shortest form, FIN and the opcode, the MASK bit and key in place, the
 * header ending where the payload starts, the word-at-a-time mask equal to
 * the byte-at-a-time one for every length and alignment, and masking twice
 * giving the payload back.  The frames on a real connection, read by another
 * implementation, are tests/integration/test_agent_frames.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "ws_frame.h"

typedef struct {
    int fin, rsv, opcode, masked;
    uint64_t len;
    unsigned char key[4];
    size_t head_len;
    int minimal;
} decoded;

/* RFC 6455 5.2, read byte by byte from the start of the frame. */
static void decode(const unsigned char *f, decoded *d)
{
    memset(d, 0, sizeof(*d));
    d->fin = f[0] >> 7;
    d->rsv = (f[0] >> 4) & 7;
    d->opcode = f[0] & 15;
    d->masked = f[1] >> 7;
    unsigned l7 = f[1] & 127;
    size_t i = 2;
    if (l7 < 126) {
        d->len = l7;
        d->minimal = 1;
    } else if (l7 == 126) {
        d->len = (uint64_t)f[2] << 8 | f[3];
        i = 4;
        d->minimal = d->len >= 126;
    } else {
        d->len = 0;
        for (int k = 0; k < 8; k++)
            d->len = d->len << 8 | f[2 + k];
        i = 10;
        d->minimal = d->len > 0xffff && !(f[2] & 0x80);
    }
    if (d->masked) {
        memcpy(d->key, f + i, 4);
        i += 4;
    }
    d->head_len = i;
}

static void mask_bytewise(unsigned char *p, size_t n, const unsigned char key[4])
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(p[i] ^ key[i % 4]);
}

static void header_at_each_length_boundary(void **state)
{
    (void)state;
    static const size_t lens[] = { 0, 1, 125, 126, 127, 65535, 65536, 1u << 20, 40000 };
    static const size_t want_head[] = { 6, 6, 6, 8, 8, 8, 14, 14, 8 };
    const unsigned char key[4] = { 0xde, 0xad, 0xbe, 0xef };
    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        unsigned char room[WS_FRAME_HEAD_MAX + 8];
        memset(room, 0xcc, sizeof(room));
        unsigned char *payload = room + WS_FRAME_HEAD_MAX;
        int opcode = k % 2 ? WS_OPCODE_TEXT : WS_OPCODE_BINARY;
        size_t n = ws_frame_head(payload, lens[k], opcode, key);
        assert_int_equal(n, want_head[k]);
        decoded d;
        decode(payload - n, &d);
        assert_int_equal(d.head_len, n); /* the header ends where the payload starts */
        assert_int_equal(d.fin, 1);
        assert_int_equal(d.rsv, 0);
        assert_int_equal(d.opcode, opcode);
        assert_int_equal(d.masked, 1);
        assert_true(d.minimal);
        assert_int_equal(d.len, lens[k]);
        assert_memory_equal(d.key, key, 4);
        assert_int_equal(payload[0], 0xcc); /* nothing written past the header */
        for (size_t i = 0; i < WS_FRAME_HEAD_MAX - n; i++)
            assert_int_equal(room[i], 0xcc); /* nor before it */
    }
}

static void mask_matches_bytewise_at_every_length_and_alignment(void **state)
{
    (void)state;
    unsigned char src[300], a[310], b[310];
    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = (unsigned char)(i * 131 + 7);
    const unsigned char key[4] = { 0x01, 0x80, 0x7f, 0xff };
    for (size_t align = 0; align < 8; align++) {
        for (size_t n = 0; n <= 260; n++) {
            memcpy(a + align, src, n);
            memcpy(b + align, src, n);
            ws_frame_mask(a + align, n, key);
            mask_bytewise(b + align, n, key);
            if (!n)
                continue;
            assert_memory_equal(a + align, b + align, n);
            ws_frame_mask(a + align, n, key); /* masking again unmasks */
            assert_memory_equal(a + align, src, n);
        }
    }
}

static void mask_of_a_large_payload(void **state)
{
    (void)state;
    size_t n = (1u << 20) + 3;
    unsigned char *a = malloc(n), *b = malloc(n);
    assert_non_null(a);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        a[i] = b[i] = (unsigned char)(i ^ (i >> 8));
    const unsigned char key[4] = { 0x12, 0x34, 0x56, 0x78 };
    ws_frame_mask(a, n, key);
    mask_bytewise(b, n, key);
    assert_memory_equal(a, b, n);
    free(a);
    free(b);
}

/* Frames encoded back to back into one buffer (the writer's batch) read
 * back one after the other: each header as the decoder expects it and as
 * long as ws_frame_head_len says, each payload unmasked by its own key,
 * no two keys alike. */
static void encoded_frames_read_back_one_after_another(void **state)
{
    (void)state;
    static const size_t lens[] = { 0, 5, 125, 126, 300, 65535, 65536, 2, 70000 };
    enum { N = sizeof(lens) / sizeof(lens[0]) };
    size_t total = 0;
    for (size_t k = 0; k < N; k++)
        total += WS_FRAME_HEAD_MAX + lens[k];
    unsigned char *buf = malloc(total), *src = malloc(70000 + N), *got = malloc(70000);
    assert_non_null(buf);
    assert_non_null(src);
    assert_non_null(got);
    for (size_t i = 0; i < 70000 + N; i++) /* frame k's payload starts at src + k */
        src[i] = (unsigned char)(i * 7 + 3);
    size_t used = 0;
    for (size_t k = 0; k < N; k++) {
        size_t n = ws_frame_encode(buf + used, src + k, lens[k],
                                   k % 2 ? WS_OPCODE_BINARY : WS_OPCODE_TEXT);
        assert_int_equal(n, ws_frame_head_len(lens[k]) + lens[k]);
        used += n;
    }
    unsigned char keys[N][4];
    size_t at = 0;
    for (size_t k = 0; k < N; k++) {
        decoded d;
        decode(buf + at, &d);
        assert_int_equal(d.fin, 1);
        assert_int_equal(d.rsv, 0);
        assert_int_equal(d.opcode, k % 2 ? WS_OPCODE_BINARY : WS_OPCODE_TEXT);
        assert_int_equal(d.masked, 1);
        assert_true(d.minimal);
        assert_int_equal(d.len, lens[k]);
        assert_int_equal(d.head_len, ws_frame_head_len(lens[k]));
        memcpy(got, buf + at + d.head_len, lens[k]);
        mask_bytewise(got, lens[k], d.key);
        if (lens[k])
            assert_memory_equal(got, src + k, lens[k]);
        memcpy(keys[k], d.key, 4);
        for (size_t j = 0; j < k; j++)
            assert_memory_not_equal(keys[j], d.key, 4);
        at += d.head_len + lens[k];
    }
    assert_int_equal(at, used);
    free(buf);
    free(src);
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(header_at_each_length_boundary),
        cmocka_unit_test(mask_matches_bytewise_at_every_length_and_alignment),
        cmocka_unit_test(mask_of_a_large_payload),
        cmocka_unit_test(encoded_frames_read_back_one_after_another),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
