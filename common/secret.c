/* secret.c — wipe-and-free for strings and cJSON trees (see secret.h). */
#include "secret.h"

#include <cjson/cJSON.h>
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
