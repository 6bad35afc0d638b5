/* secret.c — wipe-and-free for strings and cJSON trees (see secret.h). */
#include "secret.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void secret_wipe(void *p, size_t n)
{
    if (p && n)
        explicit_bzero(p, n);
}

void secret_free(char *s)
{
    if (!s)
        return;
    secret_wipe(s, strlen(s));
    free(s);
}

void secret_free_n(void *p, size_t n)
{
    if (!p)
        return;
    secret_wipe(p, n);
    free(p);
}

void secret_json_wipe(cJSON *tree)
{
    if (cJSON_IsString(tree) && tree->valuestring) {
        secret_wipe(tree->valuestring, strlen(tree->valuestring));
        return;
    }
    /* Iterative over siblings, recursive over depth: cJSON's own parser
     * bounds the depth (CJSON_NESTING_LIMIT), so the recursion is bounded. */
    for (cJSON *it = tree ? tree->child : NULL; it; it = it->next) {
        if (cJSON_IsString(it) && it->valuestring)
            secret_wipe(it->valuestring, strlen(it->valuestring));
        else if (it->child)
            secret_json_wipe(it);
    }
}

void secret_json_free(cJSON *tree)
{
    secret_json_wipe(tree);
    cJSON_Delete(tree);
}

/* What cJSON writes for a string: its quotes, a 2-byte escape for " \ and
 * the named controls, \uXXXX for the other controls, other bytes as they are. */
static size_t printed_string(const char *s)
{
    size_t n = 2;
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++)
        n += (*p == '"' || *p == '\\' || *p == '\b' || *p == '\f' || *p == '\n' ||
              *p == '\r' || *p == '\t')
                 ? 2
                 : *p < 0x20 ? 6 : 1;
    return n;
}

/* An upper bound of cJSON_PrintUnformatted's length for tree. */
static size_t printed_size(const cJSON *it)
{
    if (cJSON_IsString(it))
        return printed_string(it->valuestring);
    if (cJSON_IsRaw(it))
        return it->valuestring ? strlen(it->valuestring) : 0;
    if (cJSON_IsArray(it) || cJSON_IsObject(it)) {
        size_t n = 2;
        for (const cJSON *c = it->child; c; c = c->next)
            n += (cJSON_IsObject(it) ? printed_string(c->string) + 1 : 0) + printed_size(c) + 1;
        return n;
    }
    return 32; /* a number (cJSON prints at most 26 characters), true, false, null */
}

char *secret_json_print(const cJSON *tree)
{
    if (!tree)
        return NULL;
    /* cJSON_PrintUnformatted starts with 256 bytes and reallocates as it
     * goes, freeing the copies it outgrew unwiped: print once into a buffer
     * of the size the text needs instead (a bigger one, should the bound
     * ever be short). */
    size_t cap = printed_size(tree) + 64;
    for (int tries = 0; tries < 4 && cap <= (size_t)INT32_MAX; tries++, cap *= 2) {
        char *out = malloc(cap);
        if (!out)
            return NULL;
        if (cJSON_PrintPreallocated((cJSON *)tree, out, (int)cap, 0))
            return out;
        secret_free_n(out, cap);
    }
    return NULL;
}

/* The string at keys in tree, NULL if none. */
static const char *string_at(const cJSON *tree, const char *const keys[])
{
    for (size_t i = 0; tree && keys[i]; i++)
        tree = cJSON_GetObjectItemCaseSensitive(tree, keys[i]);
    return cJSON_IsString(tree) ? tree->valuestring : NULL;
}

int secret_json_string_has_nul(const char *text, size_t len, const char *const keys[],
                               size_t *full)
{
    *full = 0;
    if (!text || !memmem(text, len, "\\u0000", 6))
        return 0; /* the usual case: no NUL anywhere, nothing parsed again */
    /* Parsed again with every "\u0000" escape read as "\u0001" (one byte
     * either way): the value holds a NUL iff it comes out longer. */
    char *copy = malloc(len + 1);
    if (!copy)
        return 1; /* cannot tell: not returned cut */
    memcpy(copy, text, len);
    copy[len] = '\0';
    for (size_t i = 0; i + 1 < len; i++) {
        if (copy[i] != '\\')
            continue;
        if (copy[i + 1] == 'u' && i + 5 < len && !memcmp(copy + i + 2, "0000", 4))
            copy[i + 5] = '1';
        i++; /* the escaped character: "\\u0000" is a backslash and text */
    }
    cJSON *as_is = cJSON_ParseWithLength(text, len), *turned = cJSON_ParseWithLength(copy, len);
    const char *a = string_at(as_is, keys), *b = string_at(turned, keys);
    int nul = a && b && strlen(a) != strlen(b);
    if (nul) {
        *full = strlen(b);
        secret_wipe((char *)a, *full); /* past its NUL too */
    }
    secret_json_free(as_is);
    secret_json_free(turned);
    secret_free_n(copy, len + 1);
    return nul;
}
