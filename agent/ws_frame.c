/* ws_frame.c — the agent's outgoing WebSocket frames (see ws_frame.h). */
#include "ws_frame.h"

#include <libwebsockets.h>
#include <stdint.h>
#include <string.h>

#include "crypto.h"

_Static_assert(LWS_PRE >= WS_FRAME_HEAD_MAX, "the headroom holds the longest frame header");

size_t ws_frame_head_len(size_t len)
{
    /* first byte, mask bit + 7-bit length, extended length, key */
    return 2 + (len < 126 ? 0 : len <= 0xffff ? 2 : 8) + 4;
}

size_t ws_frame_head(unsigned char *payload, size_t len, int opcode, const unsigned char key[4])
{
    unsigned char h[WS_FRAME_HEAD_MAX];
    size_t n = 0;
    h[n++] = (unsigned char)(0x80 | (opcode & 0x0f)); /* FIN: never fragmented */
    if (len < 126) {
        h[n++] = (unsigned char)(0x80 | len);
    } else if (len <= 0xffff) {
        h[n++] = 0x80 | 126;
        h[n++] = (unsigned char)(len >> 8);
        h[n++] = (unsigned char)len;
    } else {
        h[n++] = 0x80 | 127;
        uint64_t l = (uint64_t)len;
        for (int shift = 56; shift >= 0; shift -= 8)
            h[n++] = (unsigned char)(l >> shift);
    }
    memcpy(h + n, key, 4);
    n += 4;
    memcpy(payload - n, h, n);
    return n;
}

void ws_frame_mask(unsigned char *p, size_t n, const unsigned char key[4])
{
    /* Eight bytes hold the key twice, in memory order whatever the byte
     * order: the two halves are the same. */
    uint32_t k32;
    memcpy(&k32, key, 4);
    uint64_t k = (uint64_t)k32 << 32 | k32;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        v ^= k;
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++) /* i is a multiple of 8 here: the key restarts at key[0] */
        p[i] ^= key[i & 3];
}

size_t ws_frame_encode(unsigned char *dst, const unsigned char *payload, size_t len, int opcode)
{
    unsigned char key[4];
    if (crypto_random_public(key, sizeof(key)) != 0)
        return 0;
    size_t head = ws_frame_head_len(len);
    memcpy(dst + head, payload, len);
    ws_frame_head(dst + head, len, opcode, key);
    ws_frame_mask(dst + head, len, key);
    return head + len;
}

int ws_frame_write(struct lws *wsi, unsigned char *payload, size_t len, int opcode)
{
    unsigned char key[4];
    if (len > (size_t)INT32_MAX - WS_FRAME_HEAD_MAX || crypto_random_public(key, sizeof(key)) != 0)
        return -1;
    size_t head = ws_frame_head(payload, len, opcode, key);
    ws_frame_mask(payload, len, key);
    size_t total = head + len;
    return lws_write(wsi, payload - head, total, LWS_WRITE_RAW) == (int)total ? 0 : -1;
}
