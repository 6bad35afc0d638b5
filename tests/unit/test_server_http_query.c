/* test_server_http_query.c — what server/http.c accepts of a request's query
 * once lws has decoded it (http_query_check, http_query_get), and the
 * registration of custom request headers (http_capture_header).
 *
 * Queries are written as lws hands them over: the decoded arguments, each
 * NUL-terminated, back to back (lws splits on an unencoded '&' and ';' alike,
 * and leaves no trace of which it was). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "http.h"

/* sizeof of a string literal with its embedded NULs, the final one included. */
#define Q(lit) (lit), sizeof(lit)

static int check(const char *q, size_t len)
{
    char why[160] = "";
    int rc = http_query_check(q, len, why, sizeof(why));
    if (rc < 0)
        assert_true(why[0] != '\0'); /* a refusal says why */
    return rc;
}

static void accepts_plain_arguments(void **state)
{
    (void)state;
    assert_int_equal(check(Q("state=abc")), 0);
    assert_int_equal(check(Q("code=1\0state=2")), 0);
    /* an empty value is a value; '=' after the first one is data */
    assert_int_equal(check(Q("error=\0x=a=b")), 0);
    /* an encoded ';' (%3B) arrives decoded, inside its argument: data */
    assert_int_equal(check(Q("installation_id=1;2")), 0);
    /* bytes above 0x7f (UTF-8) are data */
    assert_int_equal(check(Q("name=\xc3\xa9t\xc3\xa9")), 0);
    assert_int_equal(check("", 0), 0);
}

static void refuses_argument_without_value(void **state)
{
    (void)state;
    /* "?installation_id=1;2" as lws splits it: the "2" has no '=' */
    assert_int_equal(check(Q("installation_id=1\0" "2")), -1);
    assert_int_equal(check(Q("flag")), -1);
    assert_int_equal(check(Q("=value")), -1);
}

static void bounds_the_number_of_arguments(void **state)
{
    (void)state;
    char q[64 * 8 + 16];
    size_t len = 0;
    for (int i = 0; i < 64; i++)
        len += (size_t)snprintf(q + len, sizeof(q) - len, "a%d=1", i) + 1; /* keeps the NUL */
    assert_int_equal(check(q, len), 0); /* 64: the most accepted */
    len += (size_t)snprintf(q + len, sizeof(q) - len, "a64=1") + 1;
    assert_int_equal(check(q, len), -1);
}

static void refuses_repeated_names(void **state)
{
    (void)state;
    /* "?state=a;state=b": a WHATWG reader sees one state "a;state=b" */
    assert_int_equal(check(Q("state=a\0state=b")), -1);
    assert_int_equal(check(Q("a=1\0b=2\0a=1")), -1);
    /* a name that is a prefix of another is another name */
    assert_int_equal(check(Q("a=1\0ab=2\0b=3")), 0);
}

static void refuses_control_characters(void **state)
{
    (void)state;
    assert_int_equal(check(Q("state=a\nb")), -1);
    assert_int_equal(check(Q("state=a\rb")), -1);
    assert_int_equal(check(Q("st\tate=ab")), -1);
    assert_int_equal(check(Q("state=\x7f")), -1);
    assert_int_equal(check(Q("state=\x1b[31m")), -1);
}

/* What http_query_get reads from a query the check accepted. */
static void query_get_reads_decoded_values(void **state)
{
    (void)state;
    static const char q[] = "code=a b\0installation_id=1;2\0state=%25";
    http_request r;
    memset(&r, 0, sizeof(r));
    r.query = (char *)q;
    r.query_len = sizeof(q);
    assert_int_equal(check(q, sizeof(q)), 0);
    char out[32];
    assert_int_equal(http_query_get(&r, "installation_id", out, sizeof(out)), 1);
    assert_string_equal(out, "1;2");
    /* no second decoding: a literal "%25" stays "%25" */
    assert_int_equal(http_query_get(&r, "state", out, sizeof(out)), 1);
    assert_string_equal(out, "%25");
    assert_int_equal(http_query_get(&r, "cod", out, sizeof(out)), 0);
    assert_int_equal(http_query_get(&r, "missing", out, sizeof(out)), 0);
    /* truncated to the buffer, always terminated */
    assert_int_equal(http_query_get(&r, "code", out, 2), 1);
    assert_string_equal(out, "a");
}

static void capture_header_registration(void **state)
{
    (void)state;
    /* bad names are refused whatever the room left */
    assert_int_equal(http_capture_header("x bad"), -1);
    assert_int_equal(http_capture_header(""), -1);
    assert_int_equal(http_capture_header("x-colon:"), -1);
    assert_int_equal(http_capture_header(NULL), -1);
    char longname[80];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(http_capture_header(longname), -1);
    /* 12 connectors of 4 headers and the 3 of auth fit, with room to spare */
    int n = 0;
    char name[32];
    for (;; n++) {
        snprintf(name, sizeof(name), "x-test-%d", n);
        if (http_capture_header(name) < 0)
            break;
        /* the same name twice (any case) takes no second slot */
        snprintf(name, sizeof(name), "X-TEST-%d", n);
        assert_int_equal(http_capture_header(name), 0);
    }
    assert_true(n >= 12 * 4 + 3);
    assert_true(n <= 1024); /* and the list stays bounded */
    /* once full, it stays full; a known name is still fine */
    assert_int_equal(http_capture_header("x-one-more"), -1);
    assert_int_equal(http_capture_header("x-test-0"), 0);
    http_module_cleanup();
    assert_int_equal(http_capture_header("x-one-more"), 0);
    http_module_cleanup();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepts_plain_arguments),
        cmocka_unit_test(refuses_argument_without_value),
        cmocka_unit_test(refuses_repeated_names),
        cmocka_unit_test(bounds_the_number_of_arguments),
        cmocka_unit_test(refuses_control_characters),
        cmocka_unit_test(query_get_reads_decoded_values),
        cmocka_unit_test(capture_header_registration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
