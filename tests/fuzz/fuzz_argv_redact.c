/* fuzz_argv_redact.c — the rule that keeps credentials out of audit rows
 * (server/argv_redact.c), over an argv of arbitrary words: the first input
 * byte picks the program (kubectl, gcloud, aws, az), the rest is split at
 * NUL bytes into its arguments.
 *
 * Invariants checked on every input:
 *  - the array keeps its length and every item stays a string;
 *  - an argument that was valid UTF-8 still is (PostgreSQL refuses a row
 *    that is not);
 *  - a second pass changes nothing (admin redact-audit may run any number
 *    of times over rows written by this rule);
 *  - nothing embedded is left: argv_redact_embedded finds nothing in any
 *    argument of the result (an assignment or a URL password that one pass
 *    missed would still be in the row);
 *  - argv_redact_stored over the array's JSON agrees with the in-place pass. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "argv_redact.h"
#include "utf8.h"
#include "fuzz_util.h"

#define MAX_WORDS 24

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const programs[] = { "kubectl", "gcloud", "aws", "az" };
    if (size < 1 || size > 4096)
        return 0;
    const char *program = programs[data[0] % 4];
    char *words[MAX_WORDS], *owned;
    int n = fuzz_split(data + 1, size - 1, words, MAX_WORDS, &owned);
    cJSON *a = cJSON_CreateArray();
    FUZZ_CHECK(a != NULL, "out of memory");
    cJSON_AddItemToArray(a, cJSON_CreateString(program));
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(words[i]));
    char *before = cJSON_PrintUnformatted(a);
    FUZZ_CHECK(before != NULL, "out of memory");

    int replaced = argv_redact_array(a);
    FUZZ_CHECK(cJSON_GetArraySize(a) == n + 1, "%d items became %d", n + 1, cJSON_GetArraySize(a));
    for (int i = 0; i <= n; i++) {
        const cJSON *it = cJSON_GetArrayItem(a, i);
        FUZZ_CHECK(cJSON_IsString(it) && it->valuestring, "item %d is no longer a string", i);
        const char *was = i ? words[i - 1] : program;
        if (utf8_valid(was, strlen(was)))
            FUZZ_CHECK(utf8_valid(it->valuestring, strlen(it->valuestring)),
                       "item %d was UTF-8, \"%s\" is not", i, it->valuestring);
        char *left = argv_redact_embedded(it->valuestring);
        FUZZ_CHECK(left == NULL, "item %d \"%s\" still holds a credential (\"%s\")", i,
                   it->valuestring, left);
    }
    FUZZ_CHECK(argv_redact_array(a) == 0, "a second pass changed the argv again");

    char *after = cJSON_PrintUnformatted(a);
    FUZZ_CHECK(after != NULL, "out of memory");
    char *stored = argv_redact_stored(before);
    if (replaced)
        FUZZ_CHECK(stored && !strcmp(stored, after), "stored rule \"%s\" vs in place \"%s\"",
                   stored ? stored : "(unchanged)", after);
    else
        FUZZ_CHECK(stored == NULL, "the stored rule changed a row the in-place pass kept");
    free(stored);
    free(after);
    free(before);
    cJSON_Delete(a);
    free(owned);
    return 0;
}
