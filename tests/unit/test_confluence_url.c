/* test_confluence_url.c — which page a pasted Confluence URL names
 * (connectors/confluence_url.c): the connector guide's URL table (Cloud full
 * URLs, viewpage.action, short links; Data Center context paths, /display/,
 * short links), URLs of other sites, malformed input, and storage-format
 * text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "confluence_url.h"

#define CLOUD "https://company.atlassian.net"
#define DC "https://confluence.example.com"
#define DC_CTX "https://intranet.example.com:8443/confluence"

typedef struct {
    const char *url, *site;
    int cloud;
    cfl_url_result want;
    cfl_url_kind kind;
    const char *value; /* page id, short code or "SPACE|Title" */
} row;

static const row table[] = {
    /* the guide's Cloud examples */
    { CLOUD "/wiki/spaces/SPACE/pages/123456/Page+Title", CLOUD, 1, CFL_URL_OK, CFL_PAGE_ID, "123456" },
    { CLOUD "/wiki/pages/viewpage.action?pageId=123456", CLOUD, 1, CFL_URL_OK, CFL_PAGE_ID, "123456" },
    { CLOUD "/wiki/x/ABC123", CLOUD, 1, CFL_URL_OK, CFL_SHORT_LINK, "ABC123" },
    /* variations */
    { CLOUD "/wiki/spaces/SPACE/pages/123456", CLOUD, 1, CFL_URL_OK, CFL_PAGE_ID, "123456" },
    { CLOUD "/wiki/spaces/SPACE/pages/123456/Title?focusedCommentId=9#comment-9", CLOUD, 1, CFL_URL_OK, CFL_PAGE_ID, "123456" },
    { CLOUD "/wiki/spaces/SPACE/pages/edit-v2/98765", CLOUD, 1, CFL_URL_OK, CFL_PAGE_ID, "98765" },
    { CLOUD "/wiki/pages/viewpage.action?spaceKey=ENG&pageId=42", CLOUD, 1, CFL_URL_OK, CFL_PAGE_ID, "42" },
    { "HTTPS://Company.Atlassian.NET:443/wiki/pages/viewpage.action?pageId=7", CLOUD, 1, CFL_URL_OK, CFL_PAGE_ID, "7" },
    { CLOUD "/wiki/pages/123", CLOUD, 1, CFL_URL_OK, CFL_PAGE_ID, "123" },
    /* Data Center */
    { DC "/pages/viewpage.action?pageId=5551212", DC, 0, CFL_URL_OK, CFL_PAGE_ID, "5551212" },
    { DC "/spaces/OPS/pages/77/Runbook", DC, 0, CFL_URL_OK, CFL_PAGE_ID, "77" },
    { DC "/display/OPS/Disk+Full+Runbook", DC, 0, CFL_URL_OK, CFL_DISPLAY, "OPS|Disk Full Runbook" },
    { DC "/display/OPS/Caf%C3%A9%20notes", DC, 0, CFL_URL_OK, CFL_DISPLAY, "OPS|Caf\xc3\xa9 notes" },
    { DC "/x/AbC-_9", DC, 0, CFL_URL_OK, CFL_SHORT_LINK, "AbC-_9" },
    { DC_CTX "/pages/viewpage.action?pageId=8", DC_CTX, 0, CFL_URL_OK, CFL_PAGE_ID, "8" },
    { DC_CTX "/x/QQ", DC_CTX "/", 0, CFL_URL_OK, CFL_SHORT_LINK, "QQ" },
    /* not the configured site */
    { "https://evil.atlassian.net/wiki/x/ABC123", CLOUD, 1, CFL_URL_FOREIGN, 0, NULL },
    { "http://company.atlassian.net/wiki/x/ABC123", CLOUD, 1, CFL_URL_FOREIGN, 0, NULL },
    { CLOUD ":8443/wiki/x/ABC123", CLOUD, 1, CFL_URL_FOREIGN, 0, NULL },
    { "https://company.atlassian.net.evil.com/wiki/x/A", CLOUD, 1, CFL_URL_FOREIGN, 0, NULL },
    { "https://user@company.atlassian.net/wiki/x/A", CLOUD, 1, CFL_URL_FOREIGN, 0, NULL },
    { "https://intranet.example.com:8443/confluencex/x/QQ", DC_CTX, 0, CFL_URL_FOREIGN, 0, NULL },
    { "https://intranet.example.com:8443/x/QQ", DC_CTX, 0, CFL_URL_FOREIGN, 0, NULL },
    { "company.atlassian.net/wiki/x/A", CLOUD, 1, CFL_URL_FOREIGN, 0, NULL },
    { "ftp://company.atlassian.net/wiki/x/A", CLOUD, 1, CFL_URL_FOREIGN, 0, NULL },
    { "", CLOUD, 1, CFL_URL_FOREIGN, 0, NULL },
    /* on the site, no page */
    { CLOUD "/wiki/spaces/SPACE/overview", CLOUD, 1, CFL_URL_UNPARSABLE, 0, NULL },
    { CLOUD "/spaces/SPACE/pages/1", CLOUD, 1, CFL_URL_UNPARSABLE, 0, NULL },
    { CLOUD "/wiki/pages/viewpage.action", CLOUD, 1, CFL_URL_UNPARSABLE, 0, NULL },
    { CLOUD "/wiki/pages/viewpage.action?pageId=12a", CLOUD, 1, CFL_URL_UNPARSABLE, 0, NULL },
    { CLOUD "/wiki/pages/viewpage.action?pageId=123456789012345678901", CLOUD, 1, CFL_URL_UNPARSABLE, 0, NULL },
    { CLOUD "/wiki/x/", CLOUD, 1, CFL_URL_UNPARSABLE, 0, NULL },
    { CLOUD "/wiki/x/AB%2FC", CLOUD, 1, CFL_URL_UNPARSABLE, 0, NULL },
    { CLOUD "/wiki/display/OPS/Title", CLOUD, 1, CFL_URL_UNPARSABLE, 0, NULL },
    { DC "/display/OPS/Bad%2", DC, 0, CFL_URL_UNPARSABLE, 0, NULL },
    { DC "/display/OPS/Nul%00", DC, 0, CFL_URL_UNPARSABLE, 0, NULL },
    { DC "/display/OPS", DC, 0, CFL_URL_UNPARSABLE, 0, NULL },
    { DC, DC, 0, CFL_URL_UNPARSABLE, 0, NULL },
};

static void test_url_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        const row *r = &table[i];
        cfl_url u;
        cfl_url_result got = confluence_url_parse(r->url, r->site, r->cloud, &u);
        if (got != r->want)
            fail_msg("%s (site %s): got %d, want %d", r->url, r->site, got, r->want);
        if (got != CFL_URL_OK)
            continue;
        if (u.kind != r->kind)
            fail_msg("%s: kind %d, want %d", r->url, u.kind, r->kind);
        char v[1024];
        if (u.kind == CFL_PAGE_ID)
            snprintf(v, sizeof(v), "%s", u.page_id);
        else if (u.kind == CFL_SHORT_LINK)
            snprintf(v, sizeof(v), "%s", u.short_code);
        else
            snprintf(v, sizeof(v), "%s|%s", u.space_key, u.title);
        if (strcmp(v, r->value))
            fail_msg("%s: got %s, want %s", r->url, v, r->value);
    }
}

static void test_null_and_ids(void **state)
{
    (void)state;
    cfl_url u;
    assert_int_equal(confluence_url_parse(NULL, CLOUD, 1, &u), CFL_URL_FOREIGN);
    assert_int_equal(confluence_url_parse(CLOUD "/wiki/x/A", NULL, 1, &u), CFL_URL_FOREIGN);
    assert_true(confluence_page_id_ok("1"));
    assert_true(confluence_page_id_ok("12345678901234567890"));
    assert_false(confluence_page_id_ok("123456789012345678901"));
    assert_false(confluence_page_id_ok(""));
    assert_false(confluence_page_id_ok("-1"));
    assert_false(confluence_page_id_ok(NULL));
}

static void test_storage_text(void **state)
{
    (void)state;
    const char *x =
        "<h1>Disk full</h1><p>Check <strong>/var</strong> &amp; rotate logs&nbsp;now.</p>"
        "<ac:structured-macro ac:name=\"code\"><ac:plain-text-body><![CDATA[du -sh /var/* <x>]]>"
        "</ac:plain-text-body></ac:structured-macro><ul><li>one</li><li>two &#x2713; &#8212;</li></ul>"
        "<p></p><p></p><p>end &bogus; &</p>";
    char *t = confluence_storage_text(x, 4096);
    assert_non_null(t);
    char keep[512];
    snprintf(keep, sizeof(keep), "%s", t);
    free(t);
    assert_string_equal(keep, "Disk full\nCheck /var & rotate logs now.\ndu -sh /var/* <x>\n"
                           "one\ntwo \xe2\x9c\x93 \xe2\x80\x94\nend &bogus; &");
    /* bounded, cut at a character boundary */
    t = confluence_storage_text("<p>\xc3\xa9\xc3\xa9\xc3\xa9</p>", 3);
    assert_string_equal(t, "\xc3\xa9");
    free(t);
    /* truncated markup and entities do not read past the end */
    t = confluence_storage_text("<p>a &am", 100);
    assert_string_equal(t, "a &am");
    free(t);
    t = confluence_storage_text("text <unclosed", 100);
    assert_string_equal(t, "text");
    free(t);
    t = confluence_storage_text("<![CDATA[open", 100);
    assert_string_equal(t, "open");
    free(t);
    t = confluence_storage_text("bad \xff byte", 100);
    assert_non_null(t);
    assert_non_null(strstr(t, "\xef\xbf\xbd"));
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_table),
        cmocka_unit_test(test_null_and_ids),
        cmocka_unit_test(test_storage_text),
    };
    return cmocka_run_group_tests_name("confluence_url", tests, NULL, NULL);
}
