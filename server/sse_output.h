/* sse_output.h — one chunk of a command's output as a Server-Sent Event.
 *
 *   event: output
 *   data: {"stream":"stdout","text":"<the bytes, JSON-escaped>"}
 *
 * "text" when the chunk is valid UTF-8 without NUL bytes, else
 * "base64":"<the exact bytes>" (docs/api.md): either way the caller gets the
 * bytes back exactly.  Written in one pass straight into the stream buffer:
 * at hundreds of MiB/s a printf of the chunk, a cJSON tree and its printout
 * were most of the server's CPU (bench/bigout_bench.py). */
#ifndef AURORA_SSE_OUTPUT_H
#define AURORA_SSE_OUTPUT_H

#include <stddef.h>

#include "buf.h"

/* Appends the event for p[0..n) of channel (PROTO_CHAN_STDOUT/STDERR) to b.
 * 0, or -1 when out of memory (b is left as it was). */
int sse_output_event(buf_t *b, int channel, const unsigned char *p, size_t n);

/* A command's output arrives in chunks cut anywhere, often inside a
 * multi-byte character: alone, each such chunk would not be valid UTF-8 and
 * would go as base64 (for non-ASCII logs, nearly every chunk).  The stream
 * encoder holds back the cut character (at most 3 bytes per channel) and
 * puts it in front of the channel's next chunk.  Zero-initialise. */
typedef struct {
    unsigned char tail[2][4];
    unsigned char tail_len[2];
} sse_output_stream;

/* Appends the events for the next chunk of channel.  0, or -1 when out of
 * memory (the chunk is lost; the stream stays consistent). */
int sse_output_chunk(buf_t *b, sse_output_stream *s, int channel, const unsigned char *p,
                     size_t n);
/* At the end of the output: what is still held back goes out (as base64:
 * it is not a whole character).  0, or -1 when out of memory. */
int sse_output_finish(buf_t *b, sse_output_stream *s);

#endif
