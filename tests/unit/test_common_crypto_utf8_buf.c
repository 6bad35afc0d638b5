/* test_common_crypto_utf8_buf.c — common/crypto.c, common/utf8.c, common/buf.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "crypto.h"
#include "utf8.h"

/* ---- crypto ------------------------------------------------------------- */

static const struct {
    const char *in, *std, *url;
} rfc4648[] = {
    { "", "", "" },
    { "f", "Zg==", "Zg" },
    { "fo", "Zm8=", "Zm8" },
    { "foo", "Zm9v", "Zm9v" },
    { "foob", "Zm9vYg==", "Zm9vYg" },
    { "fooba", "Zm9vYmE=", "Zm9vYmE" },
    { "foobar", "Zm9vYmFy", "Zm9vYmFy" },
};

static void test_base64_rfc4648(void **state)
{
    for (size_t i = 0; i < sizeof(rfc4648) / sizeof(rfc4648[0]); i++) {
        size_t n = strlen(rfc4648[i].in);
        char *s = crypto_base64(rfc4648[i].in, n);
        assert_non_null(s);
        assert_string_equal(s, rfc4648[i].std);
        free(s);
        char u[32];
        memset(u, 'Q', sizeof(u));
        size_t w = crypto_base64url(rfc4648[i].in, n, u, sizeof(u));
        assert_int_equal(w, strlen(rfc4648[i].url));
        assert_string_equal(u, rfc4648[i].url);
        /* Decoding: padded, unpadded. */
        size_t ol = 99;
        unsigned char *d = crypto_base64_decode(rfc4648[i].std, strlen(rfc4648[i].std), &ol);
        assert_non_null(d);
        assert_int_equal(ol, n);
        assert_memory_equal(d, rfc4648[i].in, n);
        free(d);
        d = crypto_base64_decode(rfc4648[i].url, strlen(rfc4648[i].url), &ol);
        assert_non_null(d);
        assert_int_equal(ol, n);
        assert_memory_equal(d, rfc4648[i].in, n);
        free(d);
    }
}

static void test_base64_alphabets(void **state)
{
    const unsigned char raw[] = { 0xfb, 0xff, 0xbf, 0xfe, 0x3e };
    char *s = crypto_base64(raw, sizeof(raw));
    assert_string_equal(s, "+/+//j4=");
    char u[16];
    assert_int_equal(crypto_base64url(raw, sizeof(raw), u, sizeof(u)), 7);
    assert_string_equal(u, "-_-__j4");
    size_t ol;
    unsigned char *d = crypto_base64_decode(s, strlen(s), &ol);
    assert_non_null(d);
    assert_int_equal(ol, sizeof(raw));
    assert_memory_equal(d, raw, sizeof(raw));
    free(d);
    d = crypto_base64_decode(u, strlen(u), &ol);
    assert_non_null(d);
    assert_int_equal(ol, sizeof(raw));
    assert_memory_equal(d, raw, sizeof(raw));
    free(d);
    free(s);

    /* Every byte value round-trips through both encoders. */
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    for (size_t n = 0; n <= sizeof(all); n += 1) {
        char *e = crypto_base64(all, n);
        assert_non_null(e);
        assert_int_equal(strlen(e), (n + 2) / 3 * 4);
        d = crypto_base64_decode(e, strlen(e), &ol);
        assert_non_null(d);
        assert_int_equal(ol, n);
        assert_memory_equal(d, all, n);
        free(d);
        free(e);
        char ue[400];
        size_t w = crypto_base64url(all, n, ue, sizeof(ue));
        assert_int_equal(w, (n * 4 + 2) / 3);
        assert_null(strpbrk(ue, "+/="));
        d = crypto_base64_decode(ue, w, &ol);
        assert_non_null(d);
        assert_int_equal(ol, n);
        assert_memory_equal(d, all, n);
        free(d);
    }
}

static void test_base64url_outcap(void **state)
{
    char out[9];
    /* "foobar" needs 4*2+1 = 9. */
    assert_int_equal(crypto_base64url("foobar", 6, out, 9), 8);
    memset(out, 'Q', sizeof(out));
    assert_int_equal(crypto_base64url("foobar", 6, out, 8), 0);
    assert_int_equal(crypto_base64url("f", 1, out, 4), 0);
    assert_int_equal(crypto_base64url("f", 1, out, 5), 2);
    assert_string_equal(out, "Zg");
    assert_int_equal(crypto_base64url("", 0, out, 1), 0);
    assert_string_equal(out, "");
    assert_int_equal(crypto_base64url("", 0, out, 0), 0);
}

static void expect_decode_fails(const char *s)
{
    size_t ol = 12345;
    /* Exactly-sized copy, so a read past the input is caught. */
    size_t n = strlen(s);
    char *c = malloc(n ? n : 1);
    assert_non_null(c);
    memcpy(c, s, n);
    unsigned char *d = crypto_base64_decode(c, n, &ol);
    free(c);
    if (d) {
        free(d);
        fail_msg("base64 decode of '%s' should fail", s);
    }
}

static void test_base64_decode_rejects(void **state)
{
    expect_decode_fails("Zm9v!");
    expect_decode_fails("Zm9v YmFy");
    expect_decode_fails("Zm9v\nYmFy");
    expect_decode_fails("Zm=v");
    expect_decode_fails("=Zm9");
    expect_decode_fails("Zm9v\x80");
    expect_decode_fails("Zm9v.");
    expect_decode_fails("Zm9v*YmFy");
    /* Impossible lengths: one leftover character carries < 8 bits. */
    expect_decode_fails("Z");
    expect_decode_fails("Z===");
    expect_decode_fails("Zm9vY");
    expect_decode_fails("Zm9vY===");
    expect_decode_fails("Zm9vYmFyZ");

    /* Length is honoured: trailing bytes beyond inlen are ignored. */
    size_t ol;
    unsigned char *d = crypto_base64_decode("Zm9v!!!!", 4, &ol);
    assert_non_null(d);
    assert_int_equal(ol, 3);
    assert_memory_equal(d, "foo", 3);
    free(d);
}

/* The secret comparison: equal values only, whatever the lengths; a prefix,
 * an extension or a value that differs after a NUL is not the secret. */
static void test_secret_equal(void **state)
{
    (void)state;
    assert_true(crypto_secret_equal("tok-123", 7, "tok-123", 7));
    assert_false(crypto_secret_equal("tok-12", 6, "tok-123", 7));
    assert_false(crypto_secret_equal("tok-1234", 8, "tok-123", 7));
    assert_false(crypto_secret_equal("tok-124", 7, "tok-123", 7));
    assert_false(crypto_secret_equal("", 0, "tok-123", 7));
    assert_true(crypto_secret_equal("", 0, "", 0));
    assert_false(crypto_secret_equal("a\0b", 3, "a\0c", 3));
    assert_false(crypto_secret_equal("a\0", 2, "a", 1));
}

static void test_ct_equal(void **state)
{
    assert_true(crypto_ct_equal("abc", 3, "abc", 3));
    assert_false(crypto_ct_equal("abc", 3, "abd", 3));
    assert_false(crypto_ct_equal("abc", 3, "xbc", 3));
    assert_false(crypto_ct_equal("abc", 3, "abcd", 4));
    assert_false(crypto_ct_equal("abcd", 4, "abc", 3));
    assert_true(crypto_ct_equal("", 0, "", 0));
    assert_true(crypto_ct_equal("a\0b", 3, "a\0b", 3));
    assert_false(crypto_ct_equal("a\0b", 3, "a\0c", 3));
    unsigned char x[64], y[64];
    memset(x, 7, sizeof(x));
    memcpy(y, x, sizeof(y));
    assert_true(crypto_ct_equal(x, 64, y, 64));
    y[63] ^= 0x80;
    assert_false(crypto_ct_equal(x, 64, y, 64));
}

static void test_sha256(void **state)
{
    char hex[65];
    memset(hex, 'Q', sizeof(hex));
    crypto_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    crypto_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    crypto_sha256_hex(two, strlen(two), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    unsigned char md[32];
    crypto_sha256("abc", 3, md);
    assert_int_equal(md[0], 0xba);
    assert_int_equal(md[31], 0xad);
}

static void test_hex_random(void **state)
{
    char out[9];
    const unsigned char in[] = { 0x00, 0x0f, 0xa5, 0xff };
    crypto_hex(in, 4, out);
    assert_string_equal(out, "000fa5ff");
    crypto_hex(in, 0, out);
    assert_string_equal(out, "");

    unsigned char a[32] = { 0 }, b[32] = { 0 }, zero[32] = { 0 };
    assert_int_equal(crypto_random(a, sizeof(a)), 0);
    assert_int_equal(crypto_random(b, sizeof(b)), 0);
    assert_memory_not_equal(a, b, 32);
    assert_memory_not_equal(a, zero, 32);
    assert_int_equal(crypto_random(a, 0), 0);
}

static int cmp16(const void *a, const void *b) { return memcmp(a, b, 16); }

/* Pooled bytes: no id repeats across refills of the pool, and a draw larger
 * than the pool's share still works. */
static void test_random_public_unique(void **state)
{
    (void)state;
    enum { N = 300 }; /* 16 bytes each: the 256-byte pool is refilled ~19 times */
    static unsigned char ids[N][16];
    unsigned char zero[16] = { 0 };
    for (int i = 0; i < N; i++) {
        assert_int_equal(crypto_random_public(ids[i], 16), 0);
        assert_memory_not_equal(ids[i], zero, 16);
    }
    qsort(ids, N, 16, cmp16);
    for (int i = 1; i < N; i++)
        assert_memory_not_equal(ids[i - 1], ids[i], 16);

    unsigned char odd[3][5]; /* draws that do not divide the pool */
    for (int i = 0; i < 3; i++)
        assert_int_equal(crypto_random_public(odd[i], 5), 0);
    assert_memory_not_equal(odd[0], odd[1], 5);
    assert_memory_not_equal(odd[1], odd[2], 5);
    unsigned char big[1000] = { 0 }, zbig[1000] = { 0 };
    assert_int_equal(crypto_random_public(big, sizeof(big)), 0);
    assert_memory_not_equal(big, zbig, sizeof(big));
    assert_int_equal(crypto_random_public(big, 0), 0);
}

/* A forked child and its parent, whose pool was filled before the fork, draw
 * different bytes next: without a refill in the child both would take the
 * same bytes of the same pool (the same request id in two processes). */
static void test_random_public_after_fork(void **state)
{
    (void)state;
    unsigned char first[16], parent[16], child[16];
    assert_int_equal(crypto_random_public(first, sizeof(first)), 0); /* the pool is full now */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        unsigned char mine[16];
        int ok = crypto_random_public(mine, sizeof(mine)) == 0 &&
                 write(fds[1], mine, sizeof(mine)) == (ssize_t)sizeof(mine);
        _exit(ok ? 0 : 1);
    }
    close(fds[1]);
    assert_int_equal(crypto_random_public(parent, sizeof(parent)), 0);
    size_t got = 0;
    while (got < sizeof(child)) {
        ssize_t r = read(fds[0], child + got, sizeof(child) - got);
        assert_true(r > 0);
        got += (size_t)r;
    }
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_memory_not_equal(parent, child, sizeof(parent));
    assert_memory_not_equal(first, child, sizeof(first));
}

/* ---- utf8 --------------------------------------------------------------- */

#define VALID(s) assert_true(utf8_valid(s, sizeof(s) - 1))
#define INVALID(s)                                                                             \
    do {                                                                                       \
        if (utf8_valid(s, sizeof(s) - 1))                                                     \
            fail_msg("utf8_valid accepted %s", #s);                                           \
    } while (0)

static void test_utf8_valid(void **state)
{
    assert_true(utf8_valid("", 0));
    VALID("hello, world\t\n\x7f");
    VALID("caf\xc3\xa9");                 /* 2-byte */
    VALID("\xc2\x80");                    /* smallest 2-byte */
    VALID("\xdf\xbf");                    /* largest 2-byte */
    VALID("\xe2\x82\xac");                /* 3-byte (euro) */
    VALID("\xe0\xa0\x80");                /* smallest 3-byte */
    VALID("\xef\xbf\xbd");                /* U+FFFD */
    VALID("\xed\x9f\xbf");                /* U+D7FF, just below surrogates */
    VALID("\xee\x80\x80");                /* U+E000, just above */
    VALID("\xf0\x9f\x98\x80");            /* 4-byte (emoji) */
    VALID("\xf0\x90\x80\x80");            /* smallest 4-byte */
    VALID("\xf4\x8f\xbf\xbf");            /* U+10FFFF */
    VALID("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z");

    /* Overlong encodings. */
    INVALID("\xc0\x80");
    INVALID("\xc0\xaf");
    INVALID("\xc1\xbf");
    INVALID("\xe0\x80\x80");
    INVALID("\xe0\x80\xaf");
    INVALID("\xe0\x9f\xbf");
    INVALID("\xf0\x80\x80\x80");
    INVALID("\xf0\x8f\xbf\xbf");
    /* Surrogates. */
    INVALID("\xed\xa0\x80");
    INVALID("\xed\xbf\xbf");
    INVALID("\xed\xa0\xbd\xed\xb8\x80"); /* CESU-8 pair */
    /* Beyond U+10FFFF and invalid leads. */
    INVALID("\xf4\x90\x80\x80");
    INVALID("\xf5\x80\x80\x80");
    INVALID("\xf7\xbf\xbf\xbf");
    INVALID("\xf8\x88\x80\x80\x80");
    INVALID("\xfc\x84\x80\x80\x80\x80");
    INVALID("\xfe");
    INVALID("\xff");
    /* Truncated sequences, at the end and in the middle. */
    INVALID("\xc3");
    INVALID("\xe2\x82");
    INVALID("\xf0\x9f\x98");
    INVALID("ab\xc3");
    INVALID("\xc3x");
    INVALID("\xe2\x82x");
    INVALID("\xf0\x9f\x98x");
    /* Lone continuation bytes. */
    INVALID("\x80");
    INVALID("a\xbf");
    INVALID("\xc3\xa9\xa9");
    /* NUL. */
    INVALID("a\0b");
    assert_false(utf8_valid("\0", 1));
    /* n limits the check. */
    assert_true(utf8_valid("ab\xff", 2));
    assert_true(utf8_valid("\xc3\xa9", 2));
    assert_false(utf8_valid("\xc3\xa9", 1));
}

#define FFFD "\xef\xbf\xbd"

static void sanitize_is(const char *in, size_t n, const char *want)
{
    size_t ol = 12345;
    char *s = utf8_sanitize(in, n, &ol);
    assert_non_null(s);
    assert_string_equal(s, want);
    assert_int_equal(ol, strlen(want));
    assert_true(utf8_valid(s, ol));
    free(s);
}

static void test_utf8_sanitize(void **state)
{
    sanitize_is("", 0, "");
    sanitize_is("plain ascii\n", 12, "plain ascii\n");
    sanitize_is("caf\xc3\xa9 \xf0\x9f\x98\x80", 10, "caf\xc3\xa9 \xf0\x9f\x98\x80");
    sanitize_is("a\xff" "b", 3, "a" FFFD "b");
    sanitize_is("a\0b", 3, "a" FFFD "b");
    sanitize_is("\0\0", 2, FFFD FFFD);
    sanitize_is("\xc0\x80", 2, FFFD FFFD);
    sanitize_is("\xed\xa0\x80", 3, FFFD FFFD FFFD);
    sanitize_is("x\xe2\x82", 3, "x" FFFD FFFD);
    sanitize_is("\xe2\x82\xac", 2, FFFD FFFD); /* cut by n */
    sanitize_is("\x80\xbf", 2, FFFD FFFD);
    /* Output never exceeds 3x the input. */
    char junk[300];
    memset(junk, 0xff, sizeof(junk));
    size_t ol;
    char *s = utf8_sanitize(junk, sizeof(junk), &ol);
    assert_non_null(s);
    assert_int_equal(ol, 3 * sizeof(junk));
    assert_true(utf8_valid(s, ol));
    free(s);
    /* outlen is optional. */
    s = utf8_sanitize("ok", 2, NULL);
    assert_string_equal(s, "ok");
    free(s);
}

static void test_utf8_complete_prefix(void **state)
{
    assert_int_equal(utf8_complete_prefix("", 0), 0);
    assert_int_equal(utf8_complete_prefix("abc", 3), 3);
    assert_int_equal(utf8_complete_prefix("ab\xc3", 3), 2);
    assert_int_equal(utf8_complete_prefix("ab\xc3\xa9", 4), 4);
    assert_int_equal(utf8_complete_prefix("\xe2", 1), 0);
    assert_int_equal(utf8_complete_prefix("\xe2\x82", 2), 0);
    assert_int_equal(utf8_complete_prefix("x\xe2\x82\xac", 4), 4);
    assert_int_equal(utf8_complete_prefix("\xf0", 1), 0);
    assert_int_equal(utf8_complete_prefix("\xf0\x9f", 2), 0);
    assert_int_equal(utf8_complete_prefix("\xf0\x9f\x98", 3), 0);
    assert_int_equal(utf8_complete_prefix("a\xf0\x9f\x98", 4), 1);
    assert_int_equal(utf8_complete_prefix("\xf0\x9f\x98\x80", 4), 4);
    assert_int_equal(utf8_complete_prefix("\xc3\xa9\xf0\x9f\x98\x80", 6), 6);
    /* Garbage is not held back (it is not a cut character). */
    assert_int_equal(utf8_complete_prefix("a\xff", 2), 2);
    assert_int_equal(utf8_complete_prefix("a\x80", 2), 2);

    /* Every cut of a mixed string lands on the last character boundary <= k. */
    const char s[] = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80" "b\xf4\x8f\xbf\xbf\xdf\xbf";
    const size_t bounds[] = { 0, 1, 3, 6, 10, 11, 15, 17 };
    size_t n = sizeof(s) - 1;
    for (size_t k = 0; k <= n; k++) {
        size_t want = 0;
        for (size_t i = 0; i < sizeof(bounds) / sizeof(bounds[0]); i++)
            if (bounds[i] <= k)
                want = bounds[i];
        size_t got = utf8_complete_prefix(s, k);
        if (got != want)
            fail_msg("complete_prefix(s, %zu) = %zu, want %zu", k, got, want);
        assert_true(utf8_valid(s, got));
    }
}

/* ---- buf ---------------------------------------------------------------- */

static void test_buf_basic(void **state)
{
    buf_t b = BUF_INIT;
    assert_int_equal(buf_pending(&b), 0);
    assert_string_equal(buf_head(&b), "");
    assert_int_equal(buf_append(&b, "hello", 5), 0);
    assert_int_equal(buf_append_str(&b, ", "), 0);
    assert_int_equal(buf_append(&b, "world!!", 5), 0);
    assert_int_equal(buf_pending(&b), 12);
    assert_string_equal(buf_head(&b), "hello, world");
    assert_int_equal(b.data[b.len], '\0');
    assert_int_equal(buf_append(&b, NULL, 0), 0);
    assert_int_equal(buf_pending(&b), 12);
    /* Binary content. */
    assert_int_equal(buf_append(&b, "\0\x01", 2), 0);
    assert_int_equal(buf_pending(&b), 14);
    assert_memory_equal(buf_head(&b) + 12, "\0\x01\0", 3);
    size_t cap = b.cap;
    buf_reset(&b);
    assert_int_equal(buf_pending(&b), 0);
    assert_string_equal(buf_head(&b), "");
    assert_int_equal(b.cap, cap);
    buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.cap, 0);
    buf_free(&b); /* twice is fine */
}

static void test_buf_printf(void **state)
{
    buf_t b;
    buf_init(&b);
    assert_int_equal(buf_printf(&b, "%s", ""), 0);
    assert_non_null(b.data);
    assert_string_equal(buf_head(&b), "");
    assert_int_equal(buf_printf(&b, "%d-%s-%05.1f", 42, "x", 3.14159), 0);
    assert_string_equal(buf_head(&b), "42-x-003.1");
    assert_int_equal(buf_printf(&b, "|%c|", 'z'), 0);
    assert_string_equal(buf_head(&b), "42-x-003.1|z|");
    /* Larger than any initial capacity. */
    char big[10000];
    memset(big, 'k', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(buf_printf(&b, "<%s>", big), 0);
    assert_int_equal(buf_pending(&b), 13 + 2 + 9999);
    assert_int_equal(b.data[b.len], '\0');
    assert_int_equal(b.data[b.len - 1], '>');
    assert_int_equal(b.data[14], 'k');
    buf_free(&b);
}

static void test_buf_consume(void **state)
{
    buf_t b = BUF_INIT;
    buf_consume(&b, 0);
    buf_consume(&b, 10);
    assert_int_equal(buf_pending(&b), 0);
    buf_append_str(&b, "abcdefghij");
    buf_consume(&b, 3);
    assert_int_equal(buf_pending(&b), 7);
    assert_string_equal(buf_head(&b), "defghij");
    buf_consume(&b, 0);
    assert_string_equal(buf_head(&b), "defghij");
    buf_append_str(&b, "XY");
    assert_string_equal(buf_head(&b), "defghijXY");
    /* Over-consume clamps and resets. */
    buf_consume(&b, 1000);
    assert_int_equal(buf_pending(&b), 0);
    assert_int_equal(b.off, 0);
    assert_int_equal(b.len, 0);
    assert_string_equal(buf_head(&b), "");
    buf_append_str(&b, "new");
    assert_string_equal(buf_head(&b), "new");
    buf_consume(&b, 3);
    assert_int_equal(b.off, 0);
    buf_free(&b);
}

static void test_buf_reserve(void **state)
{
    buf_t b = BUF_INIT;
    /* A fresh buffer after reserve is a valid empty string. */
    assert_int_equal(buf_reserve(&b, 0), 0);
    assert_non_null(b.data);
    assert_true(b.cap >= 1);
    assert_int_equal(b.data[0], '\0');
    assert_string_equal(buf_head(&b), "");
    assert_int_equal(buf_reserve(&b, 1000), 0);
    assert_true(b.cap >= b.len + 1001);
    assert_int_equal(b.data[b.len], '\0');
    char *before = b.data;
    size_t cap = b.cap;
    /* Room already there: nothing moves. */
    assert_int_equal(buf_reserve(&b, 500), 0);
    assert_ptr_equal(b.data, before);
    assert_int_equal(b.cap, cap);
    buf_append_str(&b, "keep");
    /* Impossible sizes fail and leave the buffer intact. */
    assert_int_equal(buf_reserve(&b, (size_t)-1), -1);
    assert_int_equal(buf_reserve(&b, (size_t)-1 - b.len), -1);
    assert_int_equal(buf_reserve(&b, (size_t)-1 - b.len - 1), -1);
    assert_int_equal(buf_reserve(&b, (size_t)-1 / 2 + 1), -1);
    assert_int_equal(buf_append(&b, "x", (size_t)-1), -1);
    assert_int_equal(buf_append(&b, "x", (size_t)-1 - 3), -1);
    assert_string_equal(buf_head(&b), "keep");
    assert_int_equal(buf_pending(&b), 4);
    buf_free(&b);
}

static void test_buf_detach(void **state)
{
    size_t len = 99;
    buf_t b = BUF_INIT;
    /* Never used: "" not NULL. */
    char *s = buf_detach(&b, &len);
    assert_non_null(s);
    assert_string_equal(s, "");
    assert_int_equal(len, 0);
    free(s);
    assert_null(b.data);

    buf_append_str(&b, "header:body");
    buf_consume(&b, 7);
    s = buf_detach(&b, &len);
    assert_string_equal(s, "body");
    assert_int_equal(len, 4);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.off, 0);
    assert_int_equal(b.cap, 0);
    free(s);
    /* Reusable after detach. */
    buf_append_str(&b, "again");
    s = buf_detach(&b, NULL);
    assert_string_equal(s, "again");
    free(s);

    /* Reset then detach. */
    buf_append_str(&b, "gone");
    buf_reset(&b);
    s = buf_detach(&b, &len);
    assert_string_equal(s, "");
    assert_int_equal(len, 0);
    free(s);
}

static void test_buf_growth(void **state)
{
    buf_t b = BUF_INIT;
    char chunk[1024];
    const size_t total = 6u * 1024 * 1024 + 123;
    size_t written = 0;
    unsigned seq = 0;
    while (written < total) {
        size_t n = total - written < sizeof(chunk) ? total - written : sizeof(chunk);
        for (size_t i = 0; i < n; i++)
            chunk[i] = (char)('a' + (seq++ % 26));
        assert_int_equal(buf_append(&b, chunk, n), 0);
        written += n;
    }
    assert_int_equal(buf_pending(&b), total);
    assert_true(b.cap > total);
    assert_int_equal(b.data[total], '\0');
    for (size_t i = 0; i < total; i += 4099)
        assert_int_equal(b.data[i], 'a' + (int)(i % 26));
    assert_int_equal(b.data[total - 1], 'a' + (int)((total - 1) % 26));
    /* Consume most, detach the rest. */
    buf_consume(&b, total - 10);
    size_t len;
    char *s = buf_detach(&b, &len);
    assert_int_equal(len, 10);
    for (size_t i = 0; i < 10; i++)
        assert_int_equal(s[i], 'a' + (int)((total - 10 + i) % 26));
    assert_int_equal(s[10], '\0');
    free(s);
}

static void test_buf_compaction(void **state)
{
    buf_t b = BUF_INIT;
    char data[100];
    for (int i = 0; i < 100; i++)
        data[i] = (char)('0' + i % 10);
    assert_int_equal(buf_append(&b, data, 100), 0);
    size_t cap = b.cap;
    char *ptr = b.data;
    buf_consume(&b, 60);
    assert_int_equal(b.off, 60);
    /* Does not fit after len, fits once consumed space is reclaimed. */
    size_t extra = cap - 100;
    assert_int_equal(buf_append(&b, data, extra), 0);
    assert_int_equal(b.cap, cap);
    assert_ptr_equal(b.data, ptr);
    assert_int_equal(b.off, 0);
    assert_int_equal(buf_pending(&b), 40 + extra);
    assert_memory_equal(buf_head(&b), data + 60, 40);
    assert_memory_equal(buf_head(&b) + 40, data, extra);
    assert_int_equal(buf_head(&b)[buf_pending(&b)], '\0');
    buf_free(&b);

    /* Streaming: append/consume in turn keeps memory bounded. */
    char chunk[1000];
    memset(chunk, 's', sizeof(chunk));
    for (int i = 0; i < 10000; i++) {
        chunk[0] = (char)('A' + i % 26);
        assert_int_equal(buf_append(&b, chunk, sizeof(chunk)), 0);
        assert_int_equal(buf_head(&b)[buf_pending(&b) - sizeof(chunk)], 'A' + i % 26);
        buf_consume(&b, sizeof(chunk) - 1); /* leave one byte each round */
        assert_int_equal(buf_pending(&b), (size_t)i + 1);
    }
    assert_true(b.cap < 64 * 1024);
    /* What is left is the tail of the stream: ends with the last chunk. */
    assert_int_equal(buf_pending(&b), 10000);
    chunk[0] = (char)('A' + 9999 % 26);
    assert_memory_equal(buf_head(&b) + 10000 - sizeof(chunk), chunk, sizeof(chunk));
    assert_int_equal(buf_head(&b)[10000 - sizeof(chunk) - 1000], 'A' + 9998 % 26);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64_rfc4648),
        cmocka_unit_test(test_base64_alphabets),
        cmocka_unit_test(test_base64url_outcap),
        cmocka_unit_test(test_base64_decode_rejects),
        cmocka_unit_test(test_ct_equal),
        cmocka_unit_test(test_secret_equal),
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_hex_random),
        cmocka_unit_test(test_random_public_unique),
        cmocka_unit_test(test_random_public_after_fork),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_utf8_sanitize),
        cmocka_unit_test(test_utf8_complete_prefix),
        cmocka_unit_test(test_buf_basic),
        cmocka_unit_test(test_buf_printf),
        cmocka_unit_test(test_buf_consume),
        cmocka_unit_test(test_buf_reserve),
        cmocka_unit_test(test_buf_detach),
        cmocka_unit_test(test_buf_growth),
        cmocka_unit_test(test_buf_compaction),
    };
    return cmocka_run_group_tests_name("common_crypto_utf8_buf", tests, NULL, NULL);
}
