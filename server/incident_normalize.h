/* incident_normalize.h — the small text rules of the incident core:
 * service keys for correlation and bounded, display-safe copies of
 * provider text (incidents.c, incident_summary.c). */
#ifndef AURORA_INCIDENT_NORMALIZE_H
#define AURORA_INCIDENT_NORMALIZE_H

#include <stddef.h>

/* The service similarity rule: two services are similar when their keys
 * are equal.  The key is the service's words (runs of ASCII letters and
 * digits, lower-cased; non-ASCII bytes are kept as part of a word), joined
 * by '-', without the generic words "service", "svc" and "srv" (unless
 * nothing else is left): "Checkout Service", "checkout-svc", "CHECKOUT" and
 * "checkout_service" all give "checkout"; "checkout-api" gives
 * "checkout-api".  An empty key (no service) never matches.  out gets at
 * most cap-1 bytes (cut between words); returns its length. */
size_t incident_service_key(const char *service, char *out, size_t cap);

/* Copies src into out (cap bytes): at most cap-1 bytes, cut at a UTF-8
 * character boundary, invalid sequences and NUL replaced, control
 * characters other than '\n' and '\t' replaced by a space (keep_newlines:
 * 0 turns '\n' and '\t' into spaces too), leading/trailing spaces trimmed.
 * NULL src gives "".  -1 on allocation failure, else the length. */
long incident_text_copy(const char *src, char *out, size_t cap, int keep_newlines);

#endif
