/* buf.h — growable byte buffer with a read offset (sds-like, but explicit).
 * data[off..len) is the unread content; data is always NUL-terminated at len
 * so text can be used directly.  A failed allocation leaves the buffer intact
 * and returns -1. */
#ifndef AURORA_BUF_H
#define AURORA_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct {
    char *data;
    size_t len; /* bytes written */
    size_t off; /* bytes already consumed from the front */
    size_t cap;
} buf_t;

#define BUF_INIT { NULL, 0, 0, 0 }

void buf_init(buf_t *b);
void buf_free(buf_t *b);
void buf_reset(buf_t *b);
int buf_reserve(buf_t *b, size_t extra);
int buf_append(buf_t *b, const void *p, size_t n);
int buf_append_str(buf_t *b, const char *s);
int buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(buf_t *b, const char *fmt, va_list ap);
/* Unread bytes. */
static inline size_t buf_pending(const buf_t *b) { return b->len - b->off; }
static inline const char *buf_head(const buf_t *b) { return b->data ? b->data + b->off : ""; }
/* Marks n unread bytes as consumed; compacts when everything is read. */
void buf_consume(buf_t *b, size_t n);
/* Gives up ownership of the NUL-terminated content (never NULL). */
char *buf_detach(buf_t *b, size_t *len);

#endif
