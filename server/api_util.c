/* api_util.c — helpers shared by the API handlers. */
#include "api_util.h"

#include <ctype.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "log.h"
#include "server_config.h"
#include "store.h"
#include "timefmt.h"
#include "utf8.h"

const char *api_json_str(const cJSON *o, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

static int check_text(const char *s, const char *field, size_t min, size_t max, int chars,
                      char *err, size_t errlen)
{
    if (!s) {
        snprintf(err, errlen, "%s is required", field);
        return -1;
    }
    size_t n = strlen(s);
    if (!utf8_valid(s, n)) {
        snprintf(err, errlen, "%s must be valid UTF-8", field);
        return -1;
    }
    size_t len = n;
    if (chars) { /* valid UTF-8: every byte but continuation bytes starts a character */
        len = 0;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
            len += (*p & 0xC0) != 0x80;
    }
    if (len < min || len > max) {
        snprintf(err, errlen, "%s must be %zu to %zu %s", field, min, max,
                 chars ? "characters" : "bytes");
        return -1;
    }
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f) {
            snprintf(err, errlen, "%s must not contain control characters", field);
            return -1;
        }
    return 0;
}

int api_check_text(const char *s, const char *field, size_t min, size_t max, char *err,
                   size_t errlen)
{
    return check_text(s, field, min, max, 0, err, errlen);
}

int api_check_chars(const char *s, const char *field, size_t min, size_t max, char *err,
                    size_t errlen)
{
    return check_text(s, field, min, max, 1, err, errlen);
}

void api_store_error(worker_ctx *w, http_response *resp)
{
    log_error("store error: %s", store_errmsg(w->store));
    http_resp_error(resp, 503, "STORE_UNAVAILABLE", "state store unavailable, retry later");
}

void api_add_time(cJSON *o, const char *key, int64_t t) { time_json_add(o, key, t); }

int api_json_int64(const cJSON *it, int64_t *out)
{
    if (!cJSON_IsNumber(it))
        return 0;
    double v = it->valuedouble;
    /* 2^63 is exactly representable; anything at or past it is out of range. */
    if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0) || v != (double)(int64_t)v)
        return 0;
    *out = (int64_t)v;
    return 1;
}

int api_cluster_known(worker_ctx *w, const char *org_id, const char *cluster_id, char *name,
                      size_t namecap)
{
    if (!cluster_id || strncmp(cluster_id, "cluster-", 8) || strlen(cluster_id) >= STORE_CLUSTER_ID_LEN)
        return 0;
    store_connection c;
    int rc = store_connection_get(w->store, org_id, cluster_id, &c);
    if (rc == STORE_OK) {
        if (name)
            snprintf(name, namecap, "%s", c.cluster_name);
        return 1;
    }
    if (rc == STORE_ERR)
        return -1;
    store_agent_token *list = NULL;
    size_t n = 0;
    if (store_agent_token_list(w->store, org_id, &list, &n) != STORE_OK)
        return -1;
    int found = 0;
    for (size_t i = 0; i < n && !found; i++)
        if (!strcmp(list[i].cluster_id, cluster_id)) {
            found = 1;
            if (name)
                snprintf(name, namecap, "%s", list[i].cluster_name);
        }
    free(list);
    return found;
}

int api_parse_command(const cJSON *body, const char *program, const char *command_key,
                      argv_t *argv, char **command, http_response *resp)
{
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(body, "args");
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(body, command_key);
    char err[160] = "";
    if (args && cmd) {
        http_resp_error(resp, 400, "BAD_REQUEST", "give either args or %s, not both", command_key);
        return -1;
    }
    if (args) {
        int n = cJSON_IsArray(args) ? cJSON_GetArraySize(args) : -1;
        if (n <= 0 || n > ARGV_MAX_ARGS) {
            http_resp_error(resp, 400, "BAD_REQUEST",
                            "args must be a non-empty array of at most %d strings", ARGV_MAX_ARGS);
            return -1;
        }
        const char **strs = calloc((size_t)n, sizeof(char *));
        if (!strs) {
            http_resp_error(resp, 500, "INTERNAL", "out of memory");
            return -1;
        }
        int i = 0;
        const cJSON *el;
        cJSON_ArrayForEach(el, args) strs[i++] = cJSON_IsString(el) ? el->valuestring : NULL;
        int rc = argv_from_strings(strs, n, argv, err, sizeof(err));
        free(strs);
        if (rc < 0) {
            http_resp_error(resp, 400, "BAD_REQUEST", "args: %s", err);
            return -1;
        }
    } else if (cJSON_IsString(cmd)) {
        if (argv_tokenize(cmd->valuestring, argv, err, sizeof(err)) < 0) {
            http_resp_error(resp, 400, "BAD_REQUEST", "%s: %s", command_key, err);
            return -1;
        }
        if (command) {
            const char *c = cmd->valuestring;
            size_t pl = strlen(program);
            while (*c == ' ' || *c == '\t')
                c++;
            int plain = !strncmp(c, program, pl) && (c[pl] == ' ' || c[pl] == '\t' || !c[pl]);
            if (plain) {
                for (c += pl; *c == ' ' || *c == '\t'; c++)
                    ;
                *command = strdup(c);
            } else if (argv->c > 0 && !strcmp(argv->v[0], program)) {
                /* The program word was quoted ('kubectl' get pods): the text cannot be cut
                 * at a plain prefix, so legacy agents get the words that are audited. */
                argv_t rest = { .v = argv->v + 1, .c = argv->c - 1 };
                *command = argv_display(&rest);
            } else {
                *command = strdup(c);
            }
            if (!*command) {
                argv_free(argv);
                http_resp_error(resp, 500, "INTERNAL", "out of memory");
                return -1;
            }
        }
    } else {
        http_resp_error(resp, 400, "BAD_REQUEST", "args (array) or %s (string) is required",
                        command_key);
        return -1;
    }
    argv_strip_leading(argv, program);
    if (argv->c == 0) {
        http_resp_error(resp, 400, "BAD_REQUEST", "no %s arguments given", program);
        return -1;
    }
    if (!*argv->v[0]) {
        http_resp_error(resp, 400, "BAD_REQUEST", "the first argument must not be empty");
        return -1;
    }
    return 0;
}

int api_public_base(const worker_ctx *w, const http_request *req, char *out, size_t cap)
{
    const char *u = server_setting(w->cfg, "AURORA_PUBLIC_URL");
    if (u && (!strncmp(u, "https://", 8) || !strncmp(u, "http://", 7)) && strlen(u) < cap) {
        snprintf(out, cap, "%s", u);
        size_t n = strlen(out);
        while (n > 0 && out[n - 1] == '/')
            out[--n] = '\0';
        return 0;
    }
    const char *host = req ? http_header_get(req, "host") : NULL;
    size_t n = host ? strlen(host) : 0;
    if (n == 0 || n > 255 || n + 9 > cap)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)host[i]) && !strchr(".-:[]", host[i]))
            return -1;
    int https = !w->cfg->plain_http || w->cfg->tls_terminated_by_proxy;
    snprintf(out, cap, "%s://%s", https ? "https" : "http", host);
    return 0;
}

int api_rate_take(worker_ctx *w, const char *key, int64_t limit, int64_t window_s,
                  const char *what, int64_t *window_start, http_response *resp)
{
    int64_t now = (int64_t)time(NULL), start = now - now % window_s;
    int allowed = 0;
    if (store_rate_take(w->store, key, start, limit, start - window_s, &allowed) != STORE_OK) {
        api_store_error(w, resp);
        return -1;
    }
    if (window_start)
        *window_start = start;
    if (allowed)
        return 0;
    char retry[24], per[32];
    snprintf(retry, sizeof(retry), "%lld", (long long)(start + window_s - now));
    if (window_s == 60)
        snprintf(per, sizeof(per), "minute");
    else
        snprintf(per, sizeof(per), "%lld s", (long long)window_s);
    http_resp_error(resp, 429, "RATE_LIMITED", "too many %s (limit %lld per %s); retry in %s s",
                    what, (long long)limit, per, retry);
    http_resp_add_header(resp, "retry-after", retry);
    return -1;
}

int api_query_arg(http_request *req, const char *name, char *out, size_t cap,
                  http_response *resp)
{
    char tmp[256];
    if (!http_query_get(req, name, tmp, sizeof(tmp)))
        return 0;
    if (strlen(tmp) >= cap || strlen(tmp) >= sizeof(tmp) - 1) {
        http_resp_error(resp, 400, "BAD_REQUEST", "%s is too long", name);
        return -1;
    }
    memcpy(out, tmp, strlen(tmp) + 1);
    return 1;
}

int api_parse_count(const char *s, int64_t *out)
{
    if (!*s || strlen(s) > 19)
        return -1;
    int64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        if (v > (INT64_MAX - (*p - '0')) / 10)
            return -1;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return 0;
}
