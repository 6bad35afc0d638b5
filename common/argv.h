/* argv.h — turn a command string into argv the way a POSIX shell would split
 * words, without ever running a shell: single quotes, double quotes (with \\ \"
 * \$ \` escapes) and backslash escapes are honoured; nothing is expanded.
 * Shell metacharacters (; | & > < $() ` *) are ordinary characters and end up
 * in arguments literally. */
#ifndef AURORA_ARGV_H
#define AURORA_ARGV_H

#include <stddef.h>

#define ARGV_MAX_ARGS 256
#define ARGV_MAX_TOTAL (64 * 1024) /* bytes of all arguments together */

typedef struct {
    char **v; /* NULL-terminated */
    int c;
} argv_t;

/* 0 on success; -1 with a message in err (unterminated quote, trailing
 * backslash, too many or too long arguments, NUL byte, empty command). */
int argv_tokenize(const char *s, argv_t *out, char *err, size_t errlen);
/* Copies n strings; same limits as argv_tokenize; -1 with err on violation. */
int argv_from_strings(const char *const *strs, int n, argv_t *out, char *err, size_t errlen);
/* Prepends one argument (e.g. "kubectl"). */
int argv_prepend(argv_t *a, const char *first);
/* Drops the first argument if it equals word (e.g. a leading "kubectl"). */
void argv_strip_leading(argv_t *a, const char *word);
void argv_free(argv_t *a);
/* Shell-quoted single string for display/audit, malloc'd. */
char *argv_display(const argv_t *a);

#endif
