/* argv.c — POSIX-shell-like word splitting without a shell; see argv.h. */
#include "argv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "secret.h"
#include "utf8.h"

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

void argv_free(argv_t *a)
{
    if (a->v) {
        /* A command line may carry a credential (--token=…, --password …). */
        for (int i = 0; i < a->c; i++)
            secret_free(a->v[i]);
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
    /* A copy of its size; the word's buffer is wiped for the next one (the
     * caller wipes and frees it). */
    char *s = malloc(word->len + 1);
    if (!s) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    memcpy(s, buf_head(word), word->len + 1);
    secret_wipe(word->data, word->len);
    buf_reset(word);
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
    size_t slen = strlen(s);
    if (slen > ARGV_MAX_TOTAL) {
        set_err(err, errlen, "command too long");
        return -1;
    }
    /* One buffer for every word, with room for the longest a word can be:
     * it never grows, so no outgrown copy of a credential typed into the
     * command is freed unwiped. */
    if (buf_reserve(&w, slen) < 0)
        goto oom;
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
    secret_free_n(w.data, w.cap);
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
    secret_free_n(w.data, w.cap);
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
        int rc = push(&a, &w, &total, err, errlen); /* push sets err */
        secret_free_n(w.data, w.cap);
        if (rc < 0)
            goto fail;
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
    /* Room for the worst case up front (every byte a quote, 4 bytes, plus
     * the quotes and a space), as the arguments may hold a credential: the
     * buffer never grows, so no outgrown copy is freed unwiped. */
    size_t need = 0;
    for (int i = 0; i < a->c; i++)
        need += 4 * strlen(a->v[i]) + 3;
    if (buf_reserve(&b, need) < 0)
        return NULL;
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
