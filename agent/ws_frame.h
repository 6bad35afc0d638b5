/* ws_frame.h — the agent's outgoing WebSocket frames, framed and masked here.
 *
 * RFC 6455 has a client mask every payload byte it sends with a fresh 32-bit
 * key per frame.  libwebsockets 4.1 masks one byte at a time and reloads its
 * key index through memory for each: half of the agent's CPU while it streams
 * a command's output (bench/bigout_bench.py).  These frames carry their header
 * and key in the LWS_PRE headroom before the payload, are masked eight bytes
 * at a time, and go to lws as finished bytes (LWS_WRITE_RAW), which it writes,
 * or keeps and writes later if the socket takes less, like any other write.
 * Control frames lws sends itself (pong, close) it still frames itself: they
 * are written between whole frames, never inside one. */
#ifndef AURORA_AGENT_WS_FRAME_H
#define AURORA_AGENT_WS_FRAME_H

#include <stddef.h>

struct lws;

#define WS_OPCODE_TEXT 0x1
#define WS_OPCODE_BINARY 0x2
/* FIN, opcode, MASK + 7-bit length, 64-bit extended length, key */
#define WS_FRAME_HEAD_MAX 14
/* The header of a frame of 126 to 65,535 bytes: 16-bit length, key */
#define WS_FRAME_HEAD_16 8

/* Writes the header of a final, masked frame of len payload bytes so that it
 * ends where the payload starts (payload[-1]); at most WS_FRAME_HEAD_MAX bytes
 * before payload must be writable.  Returns the header's length. */
size_t ws_frame_head(unsigned char *payload, size_t len, int opcode, const unsigned char key[4]);

/* XORs p[0..n) with key, key[0] on p[0] (masking and unmasking alike). */
void ws_frame_mask(unsigned char *p, size_t n, const unsigned char key[4]);

/* The length of the header ws_frame_head writes for a len-byte payload. */
size_t ws_frame_head_len(size_t len);

/* Writes the framed, masked copy of payload[0..len) at dst, which must hold
 * ws_frame_head_len(len) + len bytes; several go out as one write (and one
 * TLS record) when small frames are queued together.  Returns the bytes
 * written, 0 when no masking key could be drawn (nothing may be sent). */
size_t ws_frame_encode(unsigned char *dst, const unsigned char *payload, size_t len, int opcode);

/* Frames, masks (in place) and writes payload[0..len) on the client
 * connection wsi; LWS_PRE bytes before payload are the headroom.  0 when lws
 * took the whole frame, -1 otherwise (no key, or the write failed). */
int ws_frame_write(struct lws *wsi, unsigned char *payload, size_t len, int opcode);

#endif
