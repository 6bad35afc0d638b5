/* api_audit.h — GET /api/audit and the page format `admin audit` shares. */
#ifndef AURORA_API_AUDIT_H
#define AURORA_API_AUDIT_H

#include <stddef.h>

#include "store.h"

struct cJSON;

/* {"entries": [...], "next_cursor": "<at>.<id>" | null}: the first `limit`
 * rows; n > limit means a next page exists. */
struct cJSON *api_audit_page(const store_audit *rows, size_t n, int limit);

#endif
