/* argv.c — POSIX-shell-like word splitting without a shell; see argv.h. */
#include "argv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "utf8.h"

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

void argv_free(argv_t *a)
{
    if (a->v) {
        for (int i = 0; i < a->c; i++)
            free(a->v[i]);
        free(a->v);
    }
    a->v = NULL;
    a->c = 0;
}

static int push(argv_t *a, buf_t *word, size_t *total, char *err, size_t errlen)
{
    if (a->c >= ARGV_MAX_ARGS) {
        set_err(err, errlen, "too many arguments");
        return -1;
    }
    /* Arguments travel in JSON text frames, which must be UTF-8 (RFC 8259,
     * RFC 6455): a byte sequence that is not would reach the agent in a frame
     * its WebSocket layer may refuse, closing the tunnel of the whole
     * cluster.  (JSON escapes decode to valid UTF-8; raw bytes in a body
     * need not.) */
    if (!utf8_valid(buf_head(word), buf_pending(word))) {
        set_err(err, errlen, "argument is not valid UTF-8");
        return -1;
    }
    *total += word->len + 1;
    if (*total > ARGV_MAX_TOTAL) {
        set_err(err, errlen, "command too long");
        return -1;
    }
    char **nv = realloc(a->v, sizeof(char *) * (size_t)(a->c + 2));
    if (!nv) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    a->v = nv;
    size_t len;
    char *s = buf_detach(word, &len);
    if (!s) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    a->v[a->c++] = s;
    a->v[a->c] = NULL;
    return 0;
}

int argv_tokenize(const char *s, argv_t *out, char *err, size_t errlen)
{
    argv_t a = { 0 };
    buf_t w = BUF_INIT;
    size_t total = 0;
    int in_word = 0;
    if (!s) {
        set_err(err, errlen, "empty command");
        return -1;
    }
    if (strlen(s) > ARGV_MAX_TOTAL) {
        set_err(err, errlen, "command too long");
        return -1;
    }
    for (const char *p = s;; p++) {
        char c = *p;
        if (c == '\0' || c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            if (in_word && push(&a, &w, &total, err, errlen) < 0)
                goto fail;
            in_word = 0;
            if (c == '\0')
                break;
            continue;
        }
        int was_in_word = in_word;
        in_word = 1;
        if (c == '\'') {
            const char *end = strchr(p + 1, '\'');
            if (!end) {
                set_err(err, errlen, "unterminated single quote");
                goto fail;
            }
            if (buf_append(&w, p + 1, (size_t)(end - p - 1)) < 0)
                goto oom;
            p = end;
        } else if (c == '"') {
            for (p++;; p++) {
                if (*p == '\0') {
                    set_err(err, errlen, "unterminated double quote");
                    goto fail;
                }
                if (*p == '"')
                    break;
                if (*p == '\\' && p[1] && strchr("\\\"$`\n", p[1])) {
                    p++;
                    if (*p == '\n')
                        continue; /* line continuation */
                }
                if (buf_append(&w, p, 1) < 0)
                    goto oom;
            }
        } else if (c == '\\') {
            if (p[1] == '\0') {
                set_err(err, errlen, "trailing backslash");
                goto fail;
            }
            p++;
            if (*p == '\n') { /* line continuation: removed, starts no word */
                in_word = was_in_word;
                continue;
            }
            if (buf_append(&w, p, 1) < 0)
                goto oom;
        } else {
            if (buf_append(&w, p, 1) < 0)
                goto oom;
        }
    }
    buf_free(&w);
    if (a.c == 0) {
        set_err(err, errlen, "empty command");
        argv_free(&a);
        return -1;
    }
    *out = a;
    return 0;
oom:
    set_err(err, errlen, "out of memory");
fail:
    buf_free(&w);
    argv_free(&a);
    return -1;
}

int argv_from_strings(const char *const *strs, int n, argv_t *out, char *err, size_t errlen)
{
    argv_t a = { 0 };
    size_t total = 0;
    if (n <= 0) {
        set_err(err, errlen, "empty command");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        buf_t w = BUF_INIT;
        if (!strs[i]) {
            set_err(err, errlen, "argument is not a string");
            goto fail;
        }
        if (buf_append_str(&w, strs[i]) < 0) {
            set_err(err, errlen, "out of memory");
            goto fail;
        }
        if (push(&a, &w, &total, err, errlen) < 0) { /* push set err */
            buf_free(&w);
            goto fail;
        }
    }
    *out = a;
    return 0;
fail:
    argv_free(&a);
    return -1;
}

int argv_prepend(argv_t *a, const char *first)
{
    char *s = strdup(first);
    char **nv = realloc(a->v, sizeof(char *) * (size_t)(a->c + 2));
    if (!s || !nv) {
        free(s);
        if (nv)
            a->v = nv;
        return -1;
    }
    a->v = nv;
    if (a->c == 0)
        a->v[0] = NULL; /* an empty argv_t may have no array (and so no terminator) yet */
    memmove(a->v + 1, a->v, sizeof(char *) * (size_t)(a->c + 1));
    a->v[0] = s;
    a->c++;
    return 0;
}

void argv_strip_leading(argv_t *a, const char *word)
{
    if (a->c > 0 && strcmp(a->v[0], word) == 0) {
        free(a->v[0]);
        memmove(a->v, a->v + 1, sizeof(char *) * (size_t)a->c); /* includes NULL */
        a->c--;
    }
}

static int needs_quotes(const char *s)
{
    if (!*s)
        return 1;
    for (; *s; s++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,@%+",
                    *s))
            return 1;
    return 0;
}

char *argv_display(const argv_t *a)
{
    buf_t b = BUF_INIT;
    for (int i = 0; i < a->c; i++) {
        if (i)
            buf_append(&b, " ", 1);
        if (!needs_quotes(a->v[i])) {
            buf_append_str(&b, a->v[i]);
            continue;
        }
        buf_append(&b, "'", 1);
        for (const char *p = a->v[i]; *p; p++) {
            if (*p == '\'')
                buf_append_str(&b, "'\\''");
            else
                buf_append(&b, p, 1);
        }
        buf_append(&b, "'", 1);
    }
    return buf_detach(&b, NULL);
}
