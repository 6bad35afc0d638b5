/* confluence.h — the Confluence product routes (confluence.c), mounted by
 * the confluence connector (atlassian_products.c). */
#ifndef AURORA_CONFLUENCE_H
#define AURORA_CONFLUENCE_H

void confluence_register_routes(void);

#endif
