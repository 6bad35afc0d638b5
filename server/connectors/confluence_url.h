/* confluence_url.h — which Confluence page a URL a user pasted names
 * (connector guide: Atlassian > URL Limitations), without any I/O:
 *
 *   Cloud  https://acme.atlassian.net/wiki/spaces/ENG/pages/123456/Page+Title
 *          https://acme.atlassian.net/wiki/spaces/ENG/pages/edit-v2/123456
 *          https://acme.atlassian.net/wiki/pages/viewpage.action?pageId=123456
 *          https://acme.atlassian.net/wiki/x/ABC123            (short link)
 *   Data Center (any context path, e.g. https://host/confluence)
 *          …/pages/viewpage.action?pageId=123456
 *          …/spaces/ENG/pages/123456/Title                     (newer versions)
 *          …/display/ENG/Page+Title                            (space + title)
 *          …/x/ABC123                                          (short link)
 *
 * The URL must be on the connection's site: same scheme, host and port
 * (default ports normalized, host case-insensitive) and under its path. */
#ifndef AURORA_CONFLUENCE_URL_H
#define AURORA_CONFLUENCE_URL_H

#include <stddef.h>

#define CFL_PAGE_ID_MAX 20
#define CFL_SHORT_MAX 64
#define CFL_SPACE_MAX 255
#define CFL_TITLE_MAX 511

typedef enum {
    CFL_URL_OK = 0,
    CFL_URL_FOREIGN = -1,    /* not on the configured site */
    CFL_URL_UNPARSABLE = -2, /* on the site, but no page in it */
} cfl_url_result;

typedef enum {
    CFL_PAGE_ID = 0,  /* page_id */
    CFL_SHORT_LINK,   /* short_code: /x/<code> */
    CFL_DISPLAY,      /* space_key + title (Data Center's /display/…) */
} cfl_url_kind;

typedef struct {
    cfl_url_kind kind;
    char page_id[CFL_PAGE_ID_MAX + 1];
    char short_code[CFL_SHORT_MAX + 1];
    char space_key[CFL_SPACE_MAX + 1];
    char title[CFL_TITLE_MAX + 1];
} cfl_url;

/* cloud: page paths are under /wiki (Atlassian Cloud). */
cfl_url_result confluence_url_parse(const char *url, const char *site_url, int cloud,
                                    cfl_url *out);
/* 1 if s is a page id: 1..CFL_PAGE_ID_MAX digits. */
int confluence_page_id_ok(const char *s);

/* Confluence storage format (XHTML) as plain text: tags dropped, block
 * elements and <br> as line breaks, entities decoded, CDATA (code macros)
 * kept, one line break per block boundary; at most max bytes (cut at a
 * character boundary).  malloc'd; NULL when out of memory. */
char *confluence_storage_text(const char *xhtml, size_t max);

#endif
