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

#endif
