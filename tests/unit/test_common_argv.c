/* test_common_argv.c — the command tokenizer (common/argv.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "argv.h"
#include "free_watch.h"
#include "secret.h"

/* Tokenizes s and checks the result equals the NULL-terminated list want. */
static void expect_tokens(const char *s, const char *const *want)
{
    argv_t a = { 0 };
    char err[128] = "";
    int rc = argv_tokenize(s, &a, err, sizeof(err));
    if (rc != 0)
        fail_msg("tokenize(%s) failed: %s", s, err);
    int n = 0;
    while (want[n])
        n++;
    assert_int_equal(a.c, n);
    assert_non_null(a.v);
    for (int i = 0; i < n; i++)
        assert_string_equal(a.v[i], want[i]);
    assert_null(a.v[n]);
    argv_free(&a);
    assert_null(a.v);
    assert_int_equal(a.c, 0);
}

/* Tokenizing s must fail with an error message containing needle. */
static void expect_error(const char *s, const char *needle)
{
    argv_t a = { 0 };
    char err[128];
    memset(err, 0, sizeof(err));
    assert_int_equal(argv_tokenize(s, &a, err, sizeof(err)), -1);
    assert_true(strlen(err) > 0);
    if (needle && !strstr(err, needle))
        fail_msg("error for [%s] is '%s', expected it to mention '%s'", s ? s : "(null)", err,
                 needle);
    assert_null(a.v);
    assert_int_equal(a.c, 0);
}

#define TOK(s, ...)                                                                           \
    do {                                                                                       \
        const char *const want_[] = { __VA_ARGS__, NULL };                                   \
        expect_tokens(s, want_);                                                               \
    } while (0)

static void test_plain_words(void **state)
{
    TOK("get pods", "get", "pods");
    TOK("get pods -n prod -o wide", "get", "pods", "-n", "prod", "-o", "wide");
    TOK("version", "version");
    TOK("--namespace=kube-system", "--namespace=kube-system");
}

static void test_whitespace(void **state)
{
    TOK("  get   pods  ", "get", "pods");
    TOK("get\tpods\t\t-n\tprod", "get", "pods", "-n", "prod");
    TOK("get\npods\n", "get", "pods");
    TOK("\r\n get \r\n pods \t", "get", "pods");
}

static void test_single_quotes(void **state)
{
    TOK("echo 'hello world'", "echo", "hello world");
    /* Nothing is special inside single quotes: backslashes, $, ", `, newlines. */
    TOK("x 'a\\b $HOME \"q\" `c` \\'", "x", "a\\b $HOME \"q\" `c` \\");
    TOK("x 'line1\nline2'", "x", "line1\nline2");
    TOK("'-l' 'app=web'", "-l", "app=web");
}

static void test_double_quotes(void **state)
{
    TOK("echo \"hello world\"", "echo", "hello world");
    /* \\ \" \$ \` are escapes inside double quotes. */
    TOK("x \"a\\\\b\"", "x", "a\\b");
    TOK("x \"say \\\"hi\\\"\"", "x", "say \"hi\"");
    TOK("x \"\\$HOME\"", "x", "$HOME");
    TOK("x \"\\`id\\`\"", "x", "`id`");
    /* Other backslashes stay literally. */
    TOK("x \"a\\nb\\tc\\d\"", "x", "a\\nb\\tc\\d");
    TOK("x \"\\'\"", "x", "\\'");
    /* $ and ` are not expanded. */
    TOK("x \"$HOME $(id) `id`\"", "x", "$HOME $(id) `id`");
    /* Single quotes inside double quotes are literal. */
    TOK("x \"it's\"", "x", "it's");
    /* Backslash-newline inside double quotes is a line continuation. */
    TOK("x \"ab\\\ncd\"", "x", "abcd");
    /* Whitespace is kept. */
    TOK("x \"  a\tb\n \"", "x", "  a\tb\n ");
}

static void test_backslash_outside_quotes(void **state)
{
    TOK("a\\ b", "a b");
    TOK("\\'x\\'", "'x'");
    TOK("\\\"x\\\"", "\"x\"");
    TOK("a\\\\b", "a\\b");
    TOK("\\$HOME", "$HOME");
    TOK("\\;", ";");
    TOK("a\\nb", "anb");
    /* Backslash-newline joins. */
    TOK("ab\\\ncd", "abcd");
    TOK("get \\\npods", "get", "pods");
}

static void test_backslash_newline_between_words(void **state)
{
    /* A line continuation between two blanks is no word at all, as in sh. */
    TOK("get \\\n pods", "get", "pods");
    TOK("get \\\n", "get");
    TOK("\\\nget", "get");
}

static void test_empty_quoted_args(void **state)
{
    TOK("x ''", "x", "");
    TOK("x \"\"", "x", "");
    TOK("'' \"\" ''", "", "", "");
    TOK("x '' y", "x", "", "y");
    TOK("''", "");
}

static void test_adjacent_pieces(void **state)
{
    TOK("a'b'\"c\"", "abc");
    TOK("--from-literal=key='a b'\"c d\"e", "--from-literal=key=a bc de");
    TOK("'a'\\ 'b'", "a b");
    TOK("\"\"''x", "x");
    TOK("pre''post", "prepost");
}

static void test_metacharacters_literal(void **state)
{
    TOK("get pods; rm -rf /", "get", "pods;", "rm", "-rf", "/");
    TOK("a|b", "a|b");
    TOK("a | b", "a", "|", "b");
    TOK("a & b && c || d", "a", "&", "b", "&&", "c", "||", "d");
    TOK("a > /etc/passwd < in 2>&1", "a", ">", "/etc/passwd", "<", "in", "2>&1");
    TOK("$(rm -rf /)", "$(rm", "-rf", "/)");
    TOK("`id`", "`id`");
    TOK("get * ~ ~root", "get", "*", "~", "~root");
    TOK("get pods # comment", "get", "pods", "#", "comment");
    TOK("$HOME ${PATH} $1", "$HOME", "${PATH}", "$1");
    TOK("a{b,c} [x] !x", "a{b,c}", "[x]", "!x");
    TOK("(x) a=b", "(x)", "a=b");
}

static void test_unicode(void **state)
{
    TOK("get pods -l app=caf\xc3\xa9", "get", "pods", "-l", "app=caf\xc3\xa9");
    TOK("'\xf0\x9f\x98\x80 x'", "\xf0\x9f\x98\x80 x");
}

static void test_errors(void **state)
{
    expect_error("echo 'abc", "single quote");
    expect_error("'", "single quote");
    expect_error("echo \"abc", "double quote");
    expect_error("\"", "double quote");
    expect_error("echo \"abc\\\"", "double quote");
    expect_error("abc\\", "backslash");
    expect_error("\\", "backslash");
    expect_error("", "empty");
    expect_error("   ", "empty");
    expect_error(" \t\r\n ", "empty");
    expect_error(NULL, "empty");
    expect_error("\\\n", "empty");
    /* err may be NULL or zero-sized. */
    argv_t a = { 0 };
    assert_int_equal(argv_tokenize("'", &a, NULL, 0), -1);
    char one[1] = { 'X' };
    assert_int_equal(argv_tokenize("'", &a, one, 0), -1);
    assert_int_equal(one[0], 'X');
}

static char *repeat_words(int n, const char *word)
{
    size_t wl = strlen(word);
    char *s = malloc((size_t)n * (wl + 1) + 1);
    assert_non_null(s);
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        memcpy(s + o, word, wl);
        o += wl;
        s[o++] = ' ';
    }
    s[o] = '\0';
    return s;
}

static void test_limits_args(void **state)
{
    char err[128] = "";
    argv_t a = { 0 };
    char *s = repeat_words(ARGV_MAX_ARGS, "a");
    assert_int_equal(argv_tokenize(s, &a, err, sizeof(err)), 0);
    assert_int_equal(a.c, ARGV_MAX_ARGS);
    assert_null(a.v[ARGV_MAX_ARGS]);
    argv_free(&a);
    free(s);

    s = repeat_words(ARGV_MAX_ARGS + 1, "a");
    expect_error(s, "too many");
    free(s);
    /* Empty quoted args count too. */
    s = repeat_words(ARGV_MAX_ARGS + 1, "''");
    expect_error(s, "too many");
    free(s);
}

static void test_limits_total(void **state)
{
    argv_t a = { 0 };
    char err[128] = "";
    /* One word of 65535 bytes plus its NUL fits exactly. */
    char *s = malloc(ARGV_MAX_TOTAL + 2);
    assert_non_null(s);
    memset(s, 'x', ARGV_MAX_TOTAL - 1);
    s[ARGV_MAX_TOTAL - 1] = '\0';
    assert_int_equal(argv_tokenize(s, &a, err, sizeof(err)), 0);
    assert_int_equal(a.c, 1);
    assert_int_equal(strlen(a.v[0]), ARGV_MAX_TOTAL - 1);
    argv_free(&a);

    /* 64 KiB in one word: too long. */
    memset(s, 'x', ARGV_MAX_TOTAL);
    s[ARGV_MAX_TOTAL] = '\0';
    expect_error(s, "too long");
    /* 64 KiB + 1 of input: rejected before splitting. */
    memset(s, 'x', ARGV_MAX_TOTAL + 1);
    s[ARGV_MAX_TOTAL + 1] = '\0';
    expect_error(s, "too long");
    free(s);

    /* Many words: 200 words of 400 bytes = 80 KiB. */
    char word[401];
    memset(word, 'y', 400);
    word[400] = '\0';
    s = repeat_words(200, word);
    expect_error(s, "too long");
    free(s);
}

static void test_from_strings(void **state)
{
    argv_t a = { 0 };
    char err[128] = "";
    const char *in[] = { "get", "pods", "", "a b'c\"" };
    assert_int_equal(argv_from_strings(in, 4, &a, err, sizeof(err)), 0);
    assert_int_equal(a.c, 4);
    for (int i = 0; i < 4; i++) {
        assert_string_equal(a.v[i], in[i]);
        assert_ptr_not_equal(a.v[i], in[i]); /* copies */
    }
    assert_null(a.v[4]);
    argv_free(&a);

    const char *withnull[] = { "get", NULL, "pods" };
    memset(err, 0, sizeof(err));
    assert_int_equal(argv_from_strings(withnull, 3, &a, err, sizeof(err)), -1);
    assert_true(strlen(err) > 0);
    assert_null(a.v);

    /* A garbage-filled error buffer still receives a message. */
    memset(err, 'Z', sizeof(err) - 1);
    err[sizeof(err) - 1] = '\0';
    assert_int_equal(argv_from_strings(withnull, 3, &a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "string"));

    memset(err, 0, sizeof(err));
    assert_int_equal(argv_from_strings(in, 0, &a, err, sizeof(err)), -1);
    assert_true(strlen(err) > 0);

    /* Limits are the tokenizer's. */
    const char **many = calloc(ARGV_MAX_ARGS + 1, sizeof(char *));
    assert_non_null(many);
    for (int i = 0; i <= ARGV_MAX_ARGS; i++)
        many[i] = "x";
    assert_int_equal(argv_from_strings(many, ARGV_MAX_ARGS, &a, err, sizeof(err)), 0);
    assert_int_equal(a.c, ARGV_MAX_ARGS);
    argv_free(&a);
    memset(err, 0, sizeof(err));
    assert_int_equal(argv_from_strings(many, ARGV_MAX_ARGS + 1, &a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too many"));
    assert_null(a.v);
    free(many);

    char *big = malloc(ARGV_MAX_TOTAL / 2 + 1);
    assert_non_null(big);
    memset(big, 'b', ARGV_MAX_TOTAL / 2);
    big[ARGV_MAX_TOTAL / 2] = '\0';
    const char *two[] = { big, big };
    memset(err, 0, sizeof(err));
    assert_int_equal(argv_from_strings(two, 2, &a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too long"));
    free(big);
}

static void test_prepend(void **state)
{
    argv_t a = { 0 };
    char err[128];
    assert_int_equal(argv_tokenize("get pods", &a, err, sizeof(err)), 0);
    assert_int_equal(argv_prepend(&a, "kubectl"), 0);
    assert_int_equal(a.c, 3);
    assert_string_equal(a.v[0], "kubectl");
    assert_string_equal(a.v[1], "get");
    assert_string_equal(a.v[2], "pods");
    assert_null(a.v[3]);
    argv_free(&a);

    /* Onto an empty argv (an exec with argv [] decodes to this). */
    argv_t e = { 0 };
    assert_int_equal(argv_prepend(&e, "kubectl"), 0);
    assert_int_equal(e.c, 1);
    assert_string_equal(e.v[0], "kubectl");
    assert_null(e.v[1]);
    assert_int_equal(argv_prepend(&e, "env"), 0);
    assert_int_equal(e.c, 2);
    assert_string_equal(e.v[0], "env");
    assert_string_equal(e.v[1], "kubectl");
    assert_null(e.v[2]);
    argv_free(&e);
}

static void test_strip_leading(void **state)
{
    argv_t a = { 0 };
    char err[128];
    assert_int_equal(argv_tokenize("kubectl get kubectl", &a, err, sizeof(err)), 0);
    argv_strip_leading(&a, "kubectl");
    assert_int_equal(a.c, 2);
    assert_string_equal(a.v[0], "get");
    assert_string_equal(a.v[1], "kubectl");
    assert_null(a.v[2]);
    /* Only the first, only when equal. */
    argv_strip_leading(&a, "kubectl");
    assert_int_equal(a.c, 2);
    argv_strip_leading(&a, "ge");
    assert_int_equal(a.c, 2);
    argv_free(&a);

    assert_int_equal(argv_tokenize("kubectl", &a, err, sizeof(err)), 0);
    argv_strip_leading(&a, "kubectl");
    assert_int_equal(a.c, 0);
    assert_null(a.v[0]);
    argv_strip_leading(&a, "kubectl"); /* empty: no-op */
    assert_int_equal(a.c, 0);
    argv_free(&a);

    argv_t e = { 0 };
    argv_strip_leading(&e, "kubectl");
    assert_int_equal(e.c, 0);
}

/* argv_display(argv) must tokenize back to the same argv. */
static void roundtrip(const char *const *in, int n)
{
    argv_t a = { 0 }, b = { 0 };
    char err[128] = "";
    assert_int_equal(argv_from_strings(in, n, &a, err, sizeof(err)), 0);
    char *d = argv_display(&a);
    assert_non_null(d);
    if (argv_tokenize(d, &b, err, sizeof(err)) != 0)
        fail_msg("display '%s' does not tokenize: %s", d, err);
    assert_int_equal(b.c, n);
    for (int i = 0; i < n; i++)
        if (strcmp(b.v[i], in[i]))
            fail_msg("arg %d: '%s' came back as '%s' via '%s'", i, in[i], b.v[i], d);
    free(d);
    argv_free(&a);
    argv_free(&b);
}

static void test_display(void **state)
{
    argv_t a = { 0 };
    char err[128];
    assert_int_equal(argv_tokenize("get pods -n prod --selector=app=web,tier=1", &a, err,
                                   sizeof(err)),
                     0);
    char *d = argv_display(&a);
    assert_string_equal(d, "get pods -n prod --selector=app=web,tier=1");
    free(d);
    argv_free(&a);

    const char *in[] = { "a b", "", "it's", "x" };
    assert_int_equal(argv_from_strings(in, 4, &a, err, sizeof(err)), 0);
    d = argv_display(&a);
    assert_string_equal(d, "'a b' '' 'it'\\''s' x");
    free(d);
    argv_free(&a);

    argv_t e = { 0 };
    d = argv_display(&e);
    assert_non_null(d);
    assert_string_equal(d, "");
    free(d);
}

static void test_display_roundtrip(void **state)
{
    const char *nasty[] = {
        "",
        " ",
        "a b",
        "'",
        "''",
        "\"",
        "\\",
        "\\\\'\"",
        "it's \"quoted\"",
        "$(rm -rf /)",
        "`id`",
        "a;b|c&d>e<f",
        "*",
        "~",
        "#x",
        "tab\there",
        "new\nline",
        "trailing\\",
        "caf\xc3\xa9",
        "\xf0\x9f\x98\x80 emoji",
        "\xe6\x97\xa5\xe6\x9c\xac",
        "--from-literal=pw=a'b\"c d",
        "'''",
        "\\'",
    };
    int n = (int)(sizeof(nasty) / sizeof(nasty[0]));
    roundtrip(nasty, n);
    for (int i = 0; i < n; i++)
        roundtrip(&nasty[i], 1);
}

/* A credential typed into a command (--token=…) leaves no copy in freed
 * memory: not the words' outgrown buffers while they are split, not the
 * display string's, not the words themselves when the argv is freed. */
static void test_credentials_leave_no_copies(void **state)
{
    (void)state;
    static const char marker[] = "Zq7-leftover-credential";
    char cmd[1200];
    int n = snprintf(cmd, sizeof(cmd), "kubectl get pods '--token=%s", marker);
    memset(cmd + n, 'a', 600);
    snprintf(cmd + n + 600, sizeof(cmd) - (size_t)n - 600, "' -o \"json\" --password %s",
             marker);
    const char *strs[] = { "get", "pods", cmd };
    argv_t a = { 0 }, b = { 0 };
    char err[128];

    free_watch_arm(marker);
    assert_int_equal(argv_tokenize(cmd, &a, err, sizeof(err)), 0);
    assert_int_equal(argv_from_strings(strs, 3, &b, err, sizeof(err)), 0);
    char *shown = argv_display(&a);
    assert_non_null(shown);
    assert_int_equal(a.c, 8);
    assert_non_null(strstr(a.v[3], marker));
    assert_non_null(strstr(shown, marker));
    assert_string_equal(b.v[2], cmd);
    secret_free(shown);
    argv_free(&a);
    argv_free(&b);
    /* a refused command's words too */
    assert_int_equal(argv_tokenize("get --token=Zq7-leftover-credential 'open", &a, err,
                                   sizeof(err)), -1);
    assert_int_equal(free_watch_disarm(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_words),
        cmocka_unit_test(test_credentials_leave_no_copies),
        cmocka_unit_test(test_whitespace),
        cmocka_unit_test(test_single_quotes),
        cmocka_unit_test(test_double_quotes),
        cmocka_unit_test(test_backslash_outside_quotes),
        cmocka_unit_test(test_backslash_newline_between_words),
        cmocka_unit_test(test_empty_quoted_args),
        cmocka_unit_test(test_adjacent_pieces),
        cmocka_unit_test(test_metacharacters_literal),
        cmocka_unit_test(test_unicode),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_limits_args),
        cmocka_unit_test(test_limits_total),
        cmocka_unit_test(test_from_strings),
        cmocka_unit_test(test_prepend),
        cmocka_unit_test(test_strip_leading),
        cmocka_unit_test(test_display),
        cmocka_unit_test(test_display_roundtrip),
    };
    return cmocka_run_group_tests_name("common_argv", tests, NULL, NULL);
}
