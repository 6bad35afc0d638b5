/* test_common_token.c — agent tokens, cluster ids, API keys, ids (common/token.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "token.h"

/* Known vectors, computed independently with `printf %s TOKEN | sha256sum`. */
#define TOK_A "aurora_kubectl_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcdefghijklmnopqrstuvwxyz"
#define TOK_A_SHA "cfbbce676c7ddfd32a991ba65786c1870ed323738e265da2feb7348a201d154e"
#define TOK_B "aurora_kubectl_0000000000000000000000000000000000000000000000000000000000000000"
#define TOK_B_SHA "cddd306aa9af1b966ac79ef59e2066650bb80e4b0d8b54781bca3bd88a6fcde4"

static int in_b64url(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
}

static void test_new_agent_shape(void **state)
{
    for (int k = 0; k < 200; k++) {
        char t[AGENT_TOKEN_LEN + 1];
        memset(t, 'Q', sizeof(t));
        assert_int_equal(token_new_agent(t), 0);
        assert_int_equal(strlen(t), 79);
        assert_int_equal(AGENT_TOKEN_LEN, 79);
        assert_memory_equal(t, "aurora_kubectl_", 15);
        for (int i = 15; i < 79; i++)
            assert_true(in_b64url(t[i]));
        assert_true(token_agent_well_formed(t));
    }
}

static void test_new_agent_unique(void **state)
{
    char a[AGENT_TOKEN_LEN + 1], b[AGENT_TOKEN_LEN + 1];
    assert_int_equal(token_new_agent(a), 0);
    assert_int_equal(token_new_agent(b), 0);
    assert_string_not_equal(a, b);
    assert_memory_not_equal(a + 15, b + 15, 64);
}

static void test_well_formed(void **state)
{
    assert_true(token_agent_well_formed(TOK_A));
    assert_true(token_agent_well_formed(TOK_B));
    assert_false(token_agent_well_formed(NULL));
    assert_false(token_agent_well_formed(""));
    assert_false(token_agent_well_formed("aurora_kubectl_"));
    /* Wrong prefix (same length). */
    char t[AGENT_TOKEN_LEN + 2];
    strcpy(t, TOK_A);
    t[0] = 'A';
    assert_false(token_agent_well_formed(t));
    strcpy(t, TOK_A);
    t[14] = '-';
    assert_false(token_agent_well_formed(t));
    assert_false(token_agent_well_formed(
        "aurora_kubectI_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcdefghijklmnopqrstuvwxyz"));
    /* Wrong length. */
    strcpy(t, TOK_A);
    t[78] = '\0';
    assert_false(token_agent_well_formed(t));
    strcpy(t, TOK_A);
    strcat(t, "a");
    assert_false(token_agent_well_formed(t));
    /* Wrong alphabet: standard base64 chars, padding, space, high bytes. */
    const char bad[] = { '+', '/', '=', ' ', '.', '\n', '~', (char)0xc3 };
    for (size_t i = 0; i < sizeof(bad); i++) {
        strcpy(t, TOK_A);
        t[40] = bad[i];
        assert_false(token_agent_well_formed(t));
        strcpy(t, TOK_A);
        t[78] = bad[i];
        assert_false(token_agent_well_formed(t));
    }
    /* An API key is not an agent token. */
    char k[API_KEY_LEN + 1];
    assert_int_equal(token_new_api_key(k), 0);
    assert_false(token_agent_well_formed(k));
}

static void test_cluster_id(void **state)
{
    char id[CLUSTER_ID_LEN + 1];
    memset(id, 'Q', sizeof(id));
    token_cluster_id(TOK_A, id);
    assert_string_equal(id, "cluster-" "cfbbce676c7ddfd3");
    assert_int_equal(strlen(id), CLUSTER_ID_LEN);
    token_cluster_id(TOK_B, id);
    assert_string_equal(id, "cluster-cddd306aa9af1b96");

    /* Same prefix of the hash as token_hash. */
    char h[65];
    char t[AGENT_TOKEN_LEN + 1];
    assert_int_equal(token_new_agent(t), 0);
    token_hash(t, h);
    token_cluster_id(t, id);
    assert_memory_equal(id, "cluster-", 8);
    assert_memory_equal(id + 8, h, 16);
    assert_int_equal(id[24], '\0');
}

static void test_hash(void **state)
{
    char h[65];
    memset(h, 'Q', sizeof(h));
    token_hash(TOK_A, h);
    assert_string_equal(h, TOK_A_SHA);
    token_hash(TOK_B, h);
    assert_string_equal(h, TOK_B_SHA);
    token_hash("", h);
    assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    token_hash("abc", h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

/* The preview must be prefix + first 4 + "..." + last 4, and contain no run of
 * 5+ characters from the secret part except those two ends. */
static void check_preview(const char *tok, const char *prefix)
{
    char p[TOKEN_PREVIEW_LEN];
    memset(p, 'Q', sizeof(p));
    token_preview(tok, p);
    size_t pl = strlen(prefix), n = strlen(tok);
    char want[128];
    snprintf(want, sizeof(want), "%s%.4s...%s", prefix, tok + pl, tok + n - 4);
    if (strcmp(p, want))
        fail_msg("preview of %s is '%s', want '%s'", tok, p, want);
    assert_true(strlen(p) < TOKEN_PREVIEW_LEN);
    /* Nothing of the middle (chars pl+4 .. n-5) appears. */
    const char *secret = tok + pl;
    size_t sl = n - pl;
    for (size_t i = 4; i + 4 <= sl - 4; i++) {
        char frag[5];
        memcpy(frag, secret + i, 4);
        frag[4] = '\0';
        /* The fragment may appear only as the known head or tail. */
        const char *hit = strstr(p + pl, frag);
        if (hit && strncmp(hit, tok + n - 4, 4) && strncmp(hit, secret, 4))
            fail_msg("preview '%s' leaks middle fragment '%s'", p, frag);
    }
}

static void test_preview(void **state)
{
    char p[TOKEN_PREVIEW_LEN];
    token_preview(TOK_A, p);
    assert_string_equal(p, "aurora_kubectl_AbCd...wxyz");
    check_preview(TOK_A, "aurora_kubectl_");
    check_preview(TOK_B, "aurora_kubectl_");

    /* Random part containing '_' (base64url!) must not shift the prefix. */
    check_preview("aurora_kubectl_abcdefghijklmnopqrstuvwxyz_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
                  "aurora_kubectl_");
    check_preview("aurora_kubectl_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01234567_9-x",
                  "aurora_kubectl_");
    check_preview("aurora_kubectl_abc_efghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-x",
                  "aurora_kubectl_");
    check_preview("aurora_kubectl__bcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-x",
                  "aurora_kubectl_");

    /* Generated tokens, many of which contain '_' in the random part. */
    for (int k = 0; k < 500; k++) {
        char t[AGENT_TOKEN_LEN + 1];
        assert_int_equal(token_new_agent(t), 0);
        check_preview(t, "aurora_kubectl_");
    }
    for (int k = 0; k < 500; k++) {
        char t[API_KEY_LEN + 1];
        assert_int_equal(token_new_api_key(t), 0);
        check_preview(t, "aurora_key_");
    }

    /* Too short to show anything of the secret safely. */
    token_preview("aurora_kubectl_abc", p);
    assert_null(strstr(p, "abc"));
    token_preview("short", p);
    assert_null(strstr(p, "short"));
    assert_null(strstr(p, "hort"));
    token_preview("", p);
    assert_true(strlen(p) < TOKEN_PREVIEW_LEN);
    /* A very long token still fits. */
    char longtok[300];
    memset(longtok, 'z', sizeof(longtok) - 1);
    longtok[sizeof(longtok) - 1] = '\0';
    token_preview(longtok, p);
    assert_true(strlen(p) < TOKEN_PREVIEW_LEN);
    assert_non_null(strstr(p, "..."));
}

static void test_api_key(void **state)
{
    char a[API_KEY_LEN + 1], b[API_KEY_LEN + 1];
    memset(a, 'Q', sizeof(a));
    assert_int_equal(token_new_api_key(a), 0);
    assert_int_equal(token_new_api_key(b), 0);
    assert_int_equal(strlen(a), API_KEY_LEN);
    assert_int_equal(API_KEY_LEN, 54);
    assert_memory_equal(a, "aurora_key_", 11);
    for (int i = 11; i < API_KEY_LEN; i++)
        assert_true(in_b64url(a[i]));
    assert_string_not_equal(a, b);
}

static void test_id_generate(void **state)
{
    char out[64];
    memset(out, 'Q', sizeof(out));
    assert_int_equal(id_generate("org_", out, sizeof(out)), 0);
    assert_int_equal(strlen(out), 4 + 24);
    assert_memory_equal(out, "org_", 4);
    for (int i = 4; i < 28; i++)
        assert_non_null(strchr("0123456789abcdef", out[i]));
    char other[64];
    assert_int_equal(id_generate("org_", other, sizeof(other)), 0);
    assert_string_not_equal(out, other);

    /* Exactly enough room. */
    char exact[4 + 25];
    assert_int_equal(id_generate("org_", exact, sizeof(exact)), 0);
    assert_int_equal(strlen(exact), 28);
    /* One short: refused, buffer untouched. */
    char small[4 + 24];
    memset(small, 'Q', sizeof(small));
    assert_int_equal(id_generate("org_", small, sizeof(small)), -1);
    for (size_t i = 0; i < sizeof(small); i++)
        assert_int_equal(small[i], 'Q');
    assert_int_equal(id_generate("org_", small, 0), -1);

    /* Empty prefix. */
    char bare[25];
    assert_int_equal(id_generate("", bare, sizeof(bare)), 0);
    assert_int_equal(strlen(bare), 24);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_agent_shape),
        cmocka_unit_test(test_new_agent_unique),
        cmocka_unit_test(test_well_formed),
        cmocka_unit_test(test_cluster_id),
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_preview),
        cmocka_unit_test(test_api_key),
        cmocka_unit_test(test_id_generate),
    };
    return cmocka_run_group_tests_name("common_token", tests, NULL, NULL);
}
