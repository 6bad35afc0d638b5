/* err.h — the one error convention of the store, the secrets backends, the
 * outbound HTTP client and the connectors.
 *
 * A call returns an aur_err: 0 on success, a positive code for an outcome the
 * caller branches on but that is not a failure (nothing found, already
 * there), a negative code for a failure.  Where a person needs to know why,
 * the call also takes `char *err, size_t errlen` and writes one line there
 * that names no secret (a host and port at most, never a body or a token).
 * The module enums (STORE_*, SECRETS_*) are these same values under their
 * module's name, so a code can cross a layer without being translated and
 * aur_err_http_status() maps any of them to the status an API answers. */
#ifndef AURORA_ERR_H
#define AURORA_ERR_H

typedef enum {
    AUR_OK = 0,
    AUR_NOT_FOUND = 1,      /* the thing asked for does not exist */
    AUR_CONFLICT = 2,       /* it exists already, or changed under the caller */
    AUR_E_INVALID = -1,     /* the input is malformed, oversized or not allowed */
    AUR_E_UNAVAILABLE = -2, /* a dependency is down, refused or overloaded: retry later */
    AUR_E_DENIED = -3,      /* authentication or authorization was refused */
    AUR_E_INTEGRITY = -4,   /* stored data fails verification (tampered, wrong key) */
    AUR_E_INTERNAL = -5,    /* out of memory, an unexpected answer, a bug */
    AUR_E_TIMEOUT = -6,     /* a dependency did not answer in time */
} aur_err;

/* "OK", "NOT_FOUND", …, "TIMEOUT"; "UNKNOWN" for anything else. */
const char *aur_err_name(int code);
/* The HTTP status an API answers for a code: 200, 404, 409, 400, 503, 403,
 * 500 (integrity and internal), 504; 500 for an unknown code. */
int aur_err_http_status(int code);

#endif
