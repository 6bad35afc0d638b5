/* peer_text.h — a printable copy of text the server chose, for log lines.
 *
 * The agent logs some of what the server sends (a legacy command id, the
 * cluster's id and name in `connected`, an exec's kind, a message type it
 * does not know).  The text log replaces only line breaks, so a compromised
 * or buggy server could otherwise put terminal escape sequences (ESC, BEL,
 * the C1 controls) or bytes that are not UTF-8 into the lines an operator
 * reads with `kubectl logs` in a terminal (docs/security.md). */
#ifndef AURORA_AGENT_PEER_TEXT_H
#define AURORA_AGENT_PEER_TEXT_H

#include <stddef.h>

/* Copies src (NULL: "") into dst[cap] as valid UTF-8 without control
 * characters: each control character (C0, DEL, C1) and each byte that
 * starts no well-formed character becomes '?'; the copy is cut at a
 * character boundary to fit, then ends with "..." when cut.  Returns dst. */
const char *agent_peer_text(char *dst, size_t cap, const char *src);

#endif
