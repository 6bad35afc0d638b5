/* json_members.h — member names a JSON object repeats.
 *
 * RFC 8259 leaves an object with a repeated name to each reader: cJSON keeps
 * every member and its lookups find the first, while Python, Go and most
 * proxies keep the last.  A body {"command":"get pods","command":"delete
 * ns prod"} would then be one command to a policy proxy or log pipeline in
 * front of the server and another to the server.  Request bodies that a
 * decision depends on are refused instead (docs/security.md). */
#ifndef AURORA_JSON_MEMBERS_H
#define AURORA_JSON_MEMBERS_H

#include <stddef.h>

struct cJSON;

/* 1 if some object in the tree under item (item included) names a member
 * twice (byte for byte, as JSON compares), its name copied into
 * name[cap] (cut to fit); 0 if none; -1 out of memory. */
int json_repeated_member(const struct cJSON *item, char *name, size_t cap);

#endif
