/* json_text.c — checks on JSON text before a parser sees it (see json_text.h). */
#include "json_text.h"

#include <string.h>

int json_text_has_nul(const char *text, size_t len)
{
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '\0')
            return 1;
        if (!in_string) {
            in_string = c == '"';
            continue;
        }
        if (c == '"') {
            in_string = 0;
        } else if (c == '\\') {
            if (i + 5 < len && text[i + 1] == 'u' && !memcmp(text + i + 2, "0000", 4))
                return 1;
            i++; /* the escaped character, which may be a quote or a backslash */
        }
    }
    return 0;
}

int json_text_nul_to_replacement(char *text, size_t len)
{
    if (memchr(text, '\0', len))
        return -1;
    int in_string = 0, n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (!in_string) {
            in_string = c == '"';
            continue;
        }
        if (c == '"') {
            in_string = 0;
        } else if (c == '\\') {
            if (i + 5 < len && text[i + 1] == 'u' && !memcmp(text + i + 2, "0000", 4)) {
                memcpy(text + i + 2, "fffd", 4);
                n++;
                i += 5;
                continue;
            }
            i++; /* the escaped character, which may be a quote or a backslash */
        }
    }
    return n;
}

size_t json_text_values(const char *text, size_t len)
{
    size_t n = 1;
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (!in_string) {
            in_string = c == '"';
            n += c == ',' || c == '[' || c == '{';
            continue;
        }
        if (c == '"')
            in_string = 0;
        else if (c == '\\')
            i++; /* the escaped character, which may be a quote or a backslash */
    }
    return n;
}
