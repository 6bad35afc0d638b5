/* test_server_http_headers.c — the request headers server/http.c keeps
 * (http_request_add_header) are wiped when the request is released
 * (http_request_release): they carry API keys in Authorization, agent
 * tokens, the forward secret and the internal secret. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "free_watch.h"
#include "http.h"

static void added_headers_are_found_by_lowercase_name(void **state)
{
    (void)state;
    http_request r;
    memset(&r, 0, sizeof(r));
    assert_int_equal(http_request_add_header(&r, "Authorization", "Bearer k"), 0);
    assert_int_equal(http_request_add_header(&r, "x-empty", ""), 0);
    assert_string_equal(http_header_get(&r, "authorization"), "Bearer k");
    assert_string_equal(http_header_get(&r, "x-empty"), "");
    assert_null(http_header_get(&r, "host"));
    http_request_release(&r);
    assert_null(r.headers);
    assert_int_equal((int)r.nheaders, 0);
}

static void header_values_are_wiped_before_release(void **state)
{
    (void)state;
    static const char key[] = "aur_live_HEADERKEY0123456789abcdef";
    static const char fwd[] = "forward-secret-4f1c9e0b7a2d";
    static const char internal[] = "internal-secret-9a8b7c6d5e4f";
    char authz[96];
    memcpy(authz, "Bearer ", 7);
    memcpy(authz + 7, key, sizeof(key));
    http_request r;
    memset(&r, 0, sizeof(r));
    assert_int_equal(http_request_add_header(&r, "Authorization", authz), 0);
    assert_int_equal(http_request_add_header(&r, "x-aurora-forward-secret", fwd), 0);
    assert_int_equal(http_request_add_header(&r, "X-Internal-Secret", internal), 0);
    /* the header array grows by realloc: only pointers, no value, move */
    for (int i = 0; i < 8; i++)
        assert_int_equal(http_request_add_header(&r, "x-other", "v"), 0);
    const char *marks[] = { key, fwd, internal };
    for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++) {
        http_request c;
        memset(&c, 0, sizeof(c));
        assert_int_equal(http_request_add_header(&c, "authorization", authz), 0);
        assert_int_equal(http_request_add_header(&c, "x-aurora-forward-secret", fwd), 0);
        assert_int_equal(http_request_add_header(&c, "x-internal-secret", internal), 0);
        assert_true(free_watch_arm(marks[i]));
        http_request_release(&c);
        assert_int_equal(free_watch_disarm(), 0);
    }
    assert_true(free_watch_arm(key));
    http_request_release(&r);
    assert_int_equal(free_watch_disarm(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(added_headers_are_found_by_lowercase_name),
        cmocka_unit_test(header_values_are_wiped_before_release),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
