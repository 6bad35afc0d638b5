/* secrets_local.h — operations only the local backend has. */
#ifndef AURORA_SECRETS_LOCAL_H
#define AURORA_SECRETS_LOCAL_H

#include <stddef.h>

#include "secrets.h"

#define SECRETS_MASTER_KEY_LEN 32

/* Re-encrypts every stored value under a new master key, in one transaction
 * (all values move to the new key or none does).
 *
 * new_key NULL: a random key is generated; only possible when the key comes
 * from a file, which then holds the new key.  With a key from a file the new
 * key is first written next to it (<file>.new, 0600) and renamed over it after
 * the commit; an interruption in between is completed by the next open.  With
 * a key from AURORA_MASTER_KEY the caller supplies new_key and the operator
 * sets the variable to it afterwards.
 *
 * s must be a local backend.  *count (may be NULL) gets the number of values
 * re-encrypted; key_id (may be NULL, 17 bytes) the new key's id. */
int secrets_local_rotate_key(secrets_t *s, const unsigned char *new_key, size_t *count,
                             char key_id[17], char *err, size_t errlen);

/* The id of the master key in use (16 hex chars), for diagnostics. */
int secrets_local_key_id(secrets_t *s, char key_id[17]);

/* Parses a master key given as 64 hex characters or base64 of 32 bytes
 * (surrounding whitespace ignored).  0 or -1. */
int secrets_local_parse_key(const char *text, unsigned char key[SECRETS_MASTER_KEY_LEN]);

#endif
