/* secret.h — wiping secrets before their memory is released.
 *
 * Tokens, keys, client secrets and credential environments pass through
 * malloc'd strings and cJSON trees.  Freed memory is reused by later
 * allocations (and ends up in core dumps), so every such buffer is wiped
 * first.  This is the one place that knows how: a compiler may not drop
 * explicit_bzero as a dead store. */
#ifndef AURORA_SECRET_H
#define AURORA_SECRET_H

#include <stddef.h>

struct cJSON;

/* Zeroes n bytes at p; p may be NULL. */
void secret_wipe(void *p, size_t n);
/* Wipes a NUL-terminated string up to its terminator and frees it; NULL is fine. */
void secret_free(char *s);
/* Wipes n bytes (the whole allocation, not just a string in it) and frees. */
void secret_free_n(void *p, size_t n);
/* Wipes every string value in a cJSON tree (keys are names, not secrets). */
void secret_json_wipe(struct cJSON *tree);
/* secret_json_wipe, then cJSON_Delete; NULL is fine. */
void secret_json_free(struct cJSON *tree);
/* cJSON_PrintUnformatted for a tree holding secrets: the text is printed
 * into one buffer of its size, so no outgrown copy of it is freed unwiped
 * (release it with secret_free; the tree is still the caller's to wipe).
 * NULL on OOM or a NULL tree. */
char *secret_json_print(const struct cJSON *tree);
/* Whether the string at the member path keys (NULL-ended: {"data", "value",
 * NULL}) of the JSON text text[0..len) holds a NUL.  cJSON decodes a
 * "\u0000" into one and its valuestring then ends there: a caller taking
 * strlen of it would return the value silently cut (and wipe only its
 * start).  0 when there is no such string; 1 with *full set to the string's
 * whole decoded length (what the caller's copy holds, to wipe). */
int secret_json_string_has_nul(const char *text, size_t len, const char *const keys[],
                               size_t *full);

#endif
