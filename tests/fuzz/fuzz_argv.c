/* fuzz_argv.c — the argv tokenizer (common/argv.c), which turns an API
 * caller's command string into the argv the agent runs.
 *
 * Invariants checked on every input:
 *  - argv_tokenize never crashes; on success it keeps to its limits
 *    (1..ARGV_MAX_ARGS words, ARGV_MAX_TOTAL bytes in all);
 *  - quote -> tokenize round trip: argv_display's shell quoting splits back
 *    into exactly the same words (it is what the audit log shows, so it must
 *    mean the command that ran), both for tokenized input and for arbitrary
 *    words (the input split at NUL bytes, through argv_from_strings);
 *  - argv_prepend / argv_strip_leading undo each other. */
#include <stdlib.h>
#include <string.h>

#include "argv.h"
#include "utf8.h"
#include "fuzz_util.h"

static void check_limits(const argv_t *a, const char *what)
{
    FUZZ_CHECK(a->c >= 1 && a->c <= ARGV_MAX_ARGS, "%s: %d words", what, a->c);
    FUZZ_CHECK(a->v && a->v[a->c] == NULL, "%s: argv not NULL-terminated", what);
    size_t total = 0;
    for (int i = 0; i < a->c; i++) {
        FUZZ_CHECK(a->v[i] != NULL, "%s: word %d is NULL", what, i);
        total += strlen(a->v[i]) + 1;
    }
    FUZZ_CHECK(total <= ARGV_MAX_TOTAL, "%s: %zu bytes in all", what, total);
}

static void check_same(const argv_t *a, const argv_t *b, const char *what)
{
    FUZZ_CHECK(a->c == b->c, "%s: %d words became %d", what, a->c, b->c);
    for (int i = 0; i < a->c; i++)
        FUZZ_CHECK(!strcmp(a->v[i], b->v[i]), "%s: word %d \"%s\" became \"%s\"", what, i,
                   a->v[i], b->v[i]);
}

/* argv_display(a) must tokenize back into a (when it fits the limits). */
static void check_display_round_trip(const argv_t *a)
{
    char *shown = argv_display(a);
    FUZZ_CHECK(shown != NULL, "argv_display returned NULL");
    if (strlen(shown) <= ARGV_MAX_TOTAL) {
        argv_t back = { 0 };
        char err[128] = "";
        FUZZ_CHECK(argv_tokenize(shown, &back, err, sizeof(err)) == 0,
                   "argv_display output \"%s\" does not tokenize: %s", shown, err);
        check_limits(&back, "display round trip");
        check_same(a, &back, "display round trip");
        argv_free(&back);
    }
    free(shown);
}

static void check_prepend_strip(argv_t *a)
{
    int c = a->c;
    char *first = strdup(a->v[0]);
    FUZZ_CHECK(first != NULL, "out of memory");
    FUZZ_CHECK(argv_prepend(a, "kubectl") == 0, "argv_prepend failed");
    FUZZ_CHECK(a->c == c + 1 && !strcmp(a->v[0], "kubectl") && !strcmp(a->v[1], first) &&
                   a->v[a->c] == NULL,
               "argv_prepend did not put one word in front");
    argv_strip_leading(a, "kubectl");
    FUZZ_CHECK(a->c == c && !strcmp(a->v[0], first) && a->v[a->c] == NULL,
               "argv_strip_leading did not undo argv_prepend");
    free(first);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* 1. the input as one command string (up to its first NUL, like a C API) */
    char *s = fuzz_strndup(data, size);
    argv_t a = { 0 };
    char err[128] = "";
    if (argv_tokenize(s, &a, err, sizeof(err)) == 0) {
        check_limits(&a, "argv_tokenize");
        check_display_round_trip(&a);
        check_prepend_strip(&a);
        argv_free(&a);
    } else {
        FUZZ_CHECK(err[0] != '\0', "argv_tokenize failed without a message");
        FUZZ_CHECK(a.v == NULL && a.c == 0, "argv_tokenize failed but filled its output");
    }
    free(s);

    /* 2. the input as a list of words (NUL-separated), like a JSON `args` array */
    char *words[ARGV_MAX_ARGS + 2];
    char *owned = NULL;
    int n = fuzz_split(data, size, words, ARGV_MAX_ARGS + 2, &owned);
    argv_t b = { 0 };
    int all_utf8 = 1; /* arguments must be UTF-8 (they travel in JSON text frames) */
    for (int i = 0; i < n; i++)
        all_utf8 &= utf8_valid(words[i], strlen(words[i]));
    if (argv_from_strings((const char *const *)words, n, &b, err, sizeof(err)) == 0) {
        FUZZ_CHECK(all_utf8, "argv_from_strings took a word that is not valid UTF-8");
        check_limits(&b, "argv_from_strings");
        FUZZ_CHECK(b.c == n, "argv_from_strings kept %d of %d words", b.c, n);
        for (int i = 0; i < n; i++)
            FUZZ_CHECK(!strcmp(b.v[i], words[i]), "argv_from_strings changed word %d", i);
        check_display_round_trip(&b);
        argv_free(&b);
    } else {
        FUZZ_CHECK(n > ARGV_MAX_ARGS || size + 1 > ARGV_MAX_TOTAL || !all_utf8,
                   "argv_from_strings refused %d words of %zu bytes: %s", n, size, err);
    }
    free(owned);
    return 0;
}
