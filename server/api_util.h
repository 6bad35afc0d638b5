/* api_util.h — small helpers shared by the API handlers. */
#ifndef AURORA_API_UTIL_H
#define AURORA_API_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "argv.h"
#include "http.h"
#include "worker.h"

struct cJSON;

/* String member or NULL (wrong type counts as absent). */
const char *api_json_str(const struct cJSON *o, const char *key);
/* Length in [min,max] and no control characters; -1 with err. */
int api_check_text(const char *s, const char *field, size_t min, size_t max, char *err,
                   size_t errlen);
/* The same, counting characters (UTF-8 code points) instead of bytes:
 * for text people write (names, notes); the result fits 4 * max + 1 bytes. */
int api_check_chars(const char *s, const char *field, size_t min, size_t max, char *err,
                    size_t errlen);
/* 503 with a message that names the store but leaks nothing else. */
void api_store_error(worker_ctx *w, http_response *resp);
/* One slot of key's allowance (limit per window_s seconds, counted in the
 * store, so the same on every replica).  0 when taken (*window_start, when
 * not NULL, names the window: store_rate_give_back returns the slot), or -1
 * with resp filled: 503 when the store fails, else 429 RATE_LIMITED with
 * Retry-After and "too many <what> (limit N per minute); retry in S s". */
int api_rate_take(worker_ctx *w, const char *key, int64_t limit, int64_t window_s,
                  const char *what, int64_t *window_start, http_response *resp);
/* Query argument `name` into out (cap bytes): 1 found, 0 absent, -1 with a
 * 400 in resp when it is longer than cap - 1 (or 254) characters. */
int api_query_arg(http_request *req, const char *name, char *out, size_t cap,
                  http_response *resp);
/* A non-negative decimal integer of 1-19 digits and nothing else: 0, or -1. */
int api_parse_count(const char *s, int64_t *out);

/* This server's public base URL without a trailing '/': AURORA_PUBLIC_URL,
 * else http(s)://<Host> from the request when Host holds only the
 * characters of a host name, an IPv6 literal and a port (the result is
 * shown to users to paste).  0, or -1 when neither gives one. */
int api_public_base(const worker_ctx *w, const http_request *req, char *out, size_t cap);
/* 1 and *out when it is a JSON number holding an exact integer that fits
 * int64_t (a cast of a larger or non-finite double would be undefined), else 0. */
int api_json_int64(const struct cJSON *it, int64_t *out);
/* Adds key: t as an RFC 3339 UTC string ("2026-12-02T15:04:05Z", the
 * JSON API's one time format, see timefmt.h), or null when t == 0. */
void api_add_time(struct cJSON *o, const char *key, int64_t t);
/* 1 if the cluster belongs to org (a connection or a token names it), 0 if
 * not, -1 on store error.  name (may be NULL) gets the cluster name. */
int api_cluster_known(worker_ctx *w, const char *org_id, const char *cluster_id, char *name,
                      size_t namecap);

/* api_exec.c, shared with api_cloud_exec.c: the request's timeout and
 * max_output into e (defaults when absent); -1 with a 400 in resp.
 * e->stream must be set first (it selects the output cap). */
struct exec_spec;
int api_exec_parse_limits(worker_ctx *w, const struct cJSON *body, struct exec_spec *e,
                          http_response *resp);
/* 1 if the caller asked for Server-Sent Events (Accept: text/event-stream). */
int api_exec_wants_sse(const http_request *req);

/* The command of an exec request: `args` (array of strings) or `command_key`
 * (a string split like a shell splits words, without a shell: metacharacters
 * stay literal).  A leading `program` word is dropped.  When `command` is not
 * NULL and a string was given, *command gets it verbatim (minus `program`)
 * for agents that take one string.  -1 with a 400 in resp on bad input. */
int api_parse_command(const struct cJSON *body, const char *program, const char *command_key,
                      argv_t *argv, char **command, http_response *resp);

#endif
