/* fuzz_confluence.c — what a user pastes into a Confluence page lookup and
 * what Confluence answers as a page body (server/connectors/confluence_url.c).
 *
 * Input: byte 0 picks Cloud (odd) or Data Center (even) and one of four
 * sites; the rest is the URL (up to a NUL), then storage-format text.
 *
 * Invariants:
 *  - a URL that parses OK is on the site: it starts with the site's scheme
 *    and host (case-insensitively) — a page id is 1..20 digits, a short code
 *    [A-Za-z0-9_-] only, a /display/ space and title valid UTF-8 without
 *    control characters;
 *  - the same URL parses the same way twice (no hidden state);
 *  - confluence_storage_text returns valid UTF-8 of at most `max` bytes with
 *    no line break at either end, for any input and any max (a small one
 *    too; invalid input bytes are repaired before the cut). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "confluence_url.h"
#include "fuzz_util.h"
#include "utf8.h"

static const char *const sites[4] = {
    "https://acme.atlassian.net", "https://confluence.example.com",
    "https://intranet.example.com:8443/confluence", "http://127.0.0.1:8090/wiki-ctx/",
};

static int clean(const char *s)
{
    size_t n = strlen(s);
    if (!utf8_valid(s, n))
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int cloud = data[0] & 1;
    const char *site = sites[(data[0] >> 1) & 3];
    char *rest = fuzz_strndup(data + 1, size - 1);
    size_t ulen = strlen(rest);
    const char *body = ulen + 1 < size - 1 + 1 && ulen < size - 1 ? rest + ulen + 1 : "";

    cfl_url u, v;
    cfl_url_result r = confluence_url_parse(rest, site, cloud, &u);
    cfl_url_result r2 = confluence_url_parse(rest, site, cloud, &v);
    FUZZ_CHECK(r == r2 && (r != CFL_URL_OK || !memcmp(&u, &v, sizeof(u))), "not deterministic");
    if (r == CFL_URL_OK) {
        const char *host = strstr(site, "://") + 3;
        size_t hl = strcspn(host, ":/");
        const char *uh = strstr(rest, "://");
        FUZZ_CHECK(uh && !strncasecmp(rest, site, (size_t)(host - site)), "scheme differs: %s", rest);
        FUZZ_CHECK(!strncasecmp(uh + 3, host, hl), "host differs: %s", rest);
        if (u.kind == CFL_PAGE_ID)
            FUZZ_CHECK(confluence_page_id_ok(u.page_id), "bad page id %s", u.page_id);
        else if (u.kind == CFL_SHORT_LINK) {
            FUZZ_CHECK(u.short_code[0], "empty short code");
            for (const char *p = u.short_code; *p; p++)
                FUZZ_CHECK(isalnum((unsigned char)*p) || *p == '-' || *p == '_', "short code %s", u.short_code);
        } else {
            FUZZ_CHECK(!cloud, "/display/ on Cloud");
            FUZZ_CHECK(u.space_key[0] && u.title[0] && clean(u.space_key) && clean(u.title),
                       "display space/title");
        }
    }
    size_t max = data[0] < 0x20 ? data[0] : 4096;
    char *t = confluence_storage_text(body, max);
    FUZZ_CHECK(t, "out of memory");
    size_t tl = strlen(t);
    FUZZ_CHECK(utf8_valid(t, tl), "text not UTF-8");
    FUZZ_CHECK(tl <= max, "text over max: %zu > %zu", tl, max);
    FUZZ_CHECK(tl == 0 || (t[0] != '\n' && t[tl - 1] != '\n'), "newline at an end");
    free(t);
    free(rest);
    return 0;
}
