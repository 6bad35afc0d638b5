/* json_members.c — member names a JSON object repeats (see json_members.h). */
#include "json_members.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Up to this many members, comparing each pair costs less than sorting. */
#define PAIRWISE_MAX 16

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first name o repeats, NULL if none; *oom set when the sort's array
 * could not be had. */
static const char *repeated_in(const cJSON *o, int *oom)
{
    size_t n = 0;
    for (const cJSON *c = o->child; c; c = c->next)
        n++;
    if (n < 2)
        return NULL;
    if (n <= PAIRWISE_MAX) {
        for (const cJSON *a = o->child; a; a = a->next)
            for (const cJSON *b = a->next; b; b = b->next)
                if (a->string && b->string && !strcmp(a->string, b->string))
                    return a->string;
        return NULL;
    }
    /* a body may hold an object of many thousand members: n log n */
    const char **names = malloc(n * sizeof(*names));
    if (!names) {
        *oom = 1;
        return NULL;
    }
    size_t k = 0;
    for (const cJSON *c = o->child; c; c = c->next)
        if (c->string)
            names[k++] = c->string;
    qsort(names, k, sizeof(*names), by_name);
    const char *dup = NULL;
    for (size_t i = 1; i < k && !dup; i++)
        if (!strcmp(names[i - 1], names[i]))
            dup = names[i];
    free(names);
    return dup;
}

/* Depth is bounded by cJSON's own nesting limit, which the parse that made
 * the tree recursed through on this same stack. */
static int walk(const cJSON *item, char *name, size_t cap)
{
    if (!item)
        return 0;
    if (cJSON_IsObject(item)) {
        int oom = 0;
        const char *dup = repeated_in(item, &oom);
        if (oom)
            return -1;
        if (dup) {
            if (cap)
                snprintf(name, cap, "%s", dup);
            return 1;
        }
    }
    if (cJSON_IsObject(item) || cJSON_IsArray(item))
        for (const cJSON *c = item->child; c; c = c->next) {
            int r = walk(c, name, cap);
            if (r)
                return r;
        }
    return 0;
}

int json_repeated_member(const cJSON *item, char *name, size_t cap)
{
    if (cap)
        name[0] = '\0';
    return walk(item, name, cap);
}
