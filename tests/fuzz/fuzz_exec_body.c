/* fuzz_exec_body.c — the JSON body of a command request, from the bytes a
 * caller POSTs to what the agent receives: http_json_body (server/http.c),
 * then the one command parser of the API, api_parse_command (`args` array or
 * `command` string, server/api_util.c), the limits (api_exec_parse_limits,
 * server/api_exec.c) and the text check of the cloud target fields
 * (api_check_text), then the v2 exec frame the tunnel would send
 * (common/proto.c) decoded as the agent decodes it.
 *
 * Input: the request body.
 *
 * Invariants:
 *  - a body that is not a JSON object gets a 400 with a JSON error; in an
 *    accepted body every string (key or value) is whole: none was cut at a
 *    NUL (checked against an independent reading of the text);
 *  - a parsed command has 1..ARGV_MAX_ARGS words within ARGV_MAX_TOTAL, a
 *    non-empty first word; `command` comes back verbatim but for a leading
 *    program word; on refusal: a 400/500 with a JSON error, nothing leaked;
 *  - limits: 0 < timeout <= max_timeout, 1 <= max_output <= the cap of the
 *    response mode (JSON or event stream);
 *  - api_check_text accepts only valid UTF-8 without control characters of
 *    the allowed length;
 *  - end to end: the argv the API accepted reaches the agent word for word
 *    (proto_enc_exec_env -> proto_decode), for kubectl and cloud_exec. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api_util.h"
#include "exec.h"
#include "fuzz_util.h"
#include "http.h"
#include "proto.h"
#include "server_config.h"
#include "utf8.h"
#include "worker.h"

static server_config g_cfg;
static worker_ctx g_w;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    /* the documented defaults (server_config.c) */
    g_cfg.default_timeout = 60;
    g_cfg.max_timeout = 3600;
    g_cfg.default_max_output = 10485760;
    g_cfg.max_output_json = 67108864;
    g_cfg.max_output_stream = 1073741824;
    g_w.cfg = &g_cfg;
    return 0;
}

static void check_error(http_response *resp, const char *what)
{
    FUZZ_CHECK(resp->status == 400 || resp->status == 500, "%s refused with %d", what,
               resp->status);
    cJSON *j = cJSON_ParseWithLength(buf_head(&resp->body), buf_pending(&resp->body));
    FUZZ_CHECK(j && cJSON_IsString(cJSON_GetObjectItem(j, "error_code")) &&
                   cJSON_IsString(cJSON_GetObjectItem(j, "error")),
               "%s: no JSON error body", what);
    cJSON_Delete(j);
    buf_free(&resp->body);
    memset(resp, 0, sizeof(*resp));
}

/* The exec frame the server would send for argv, decoded as the agent does. */
static void check_frame(const argv_t *argv, const char *kind, const char *program,
                        const exec_spec *e)
{
    static const char *const env[] = {"CLOUDSDK_AUTH_ACCESS_TOKEN=ya29.fuzz"};
    int nenv = program ? 1 : 0;
    char *f = proto_enc_exec_env(7, kind, program, argv, program ? env : NULL, nenv, e->timeout,
                                 e->max_output, 0);
    FUZZ_CHECK(f != NULL, "an accepted command does not encode as an exec frame");
    proto_msg m;
    char err[256] = "";
    FUZZ_CHECK(proto_decode(f, strlen(f), &m, err, sizeof(err)) == 0,
               "the agent refuses the exec frame of an accepted command: %s", err);
    FUZZ_CHECK(m.type == MSG_EXEC && m.id == 7, "exec frame type/id");
    FUZZ_CHECK(m.argv.c == argv->c, "%d words sent, %d received", argv->c, m.argv.c);
    for (int i = 0; i < argv->c; i++)
        FUZZ_CHECK(!strcmp(m.argv.v[i], argv->v[i]), "word %d changed on the wire", i);
    FUZZ_CHECK(m.timeout == e->timeout && m.max_output == e->max_output,
               "limits changed on the wire");
    proto_msg_free(&m);
    proto_free_secret(f);
}

static void check_limits(const cJSON *body, const argv_t *argv, const char *kind,
                         const char *program)
{
    for (int stream = 0; stream <= 1; stream++) {
        exec_spec e;
        memset(&e, 0, sizeof(e));
        e.stream = stream;
        http_response resp;
        memset(&resp, 0, sizeof(resp));
        if (api_exec_parse_limits(&g_w, body, &e, &resp) < 0) {
            check_error(&resp, "api_exec_parse_limits");
            continue;
        }
        int64_t cap = stream ? g_cfg.max_output_stream : g_cfg.max_output_json;
        FUZZ_CHECK(isfinite(e.timeout) && e.timeout > 0 && e.timeout <= g_cfg.max_timeout,
                   "timeout %.17g accepted", e.timeout);
        FUZZ_CHECK(e.max_output >= 1 && e.max_output <= cap, "max_output %lld accepted",
                   (long long)e.max_output);
        FUZZ_CHECK(resp.status == 0 && buf_pending(&resp.body) == 0,
                   "accepted limits but wrote a response");
        check_frame(argv, kind, program, &e);
    }
}

static void check_command(const cJSON *body, const char *program, int want_command)
{
    argv_t argv = {0};
    char *command = NULL;
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    int rc = api_parse_command(body, program, "command", &argv, want_command ? &command : NULL,
                               &resp);
    if (rc < 0) {
        check_error(&resp, "api_parse_command");
        argv_free(&argv); /* the callers free what a refusal leaves (exec_spec_free) */
        free(command);
        return;
    }
    FUZZ_CHECK(resp.status == 0, "accepted command but wrote a response");
    FUZZ_CHECK(argv.c >= 1 && argv.c <= ARGV_MAX_ARGS && argv.v[argv.c] == NULL,
               "%d words accepted", argv.c);
    FUZZ_CHECK(argv.v[0][0] != '\0', "empty first word accepted");
    size_t total = 0;
    for (int i = 0; i < argv.c; i++)
        total += strlen(argv.v[i]) + 1;
    FUZZ_CHECK(total <= ARGV_MAX_TOTAL, "%zu bytes of words accepted", total);

    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(body, "command");
    if (want_command && cJSON_IsString(cmd)) {
        FUZZ_CHECK(command != NULL, "command string given but not kept");
        /* Verbatim: a suffix of what the caller sent.  Unless the program
         * word was written quoted or escaped ('kubectl' get, \kubectl get):
         * the text cannot be cut there, and the command is then the words
         * that are run and audited, displayed (argv_display). */
        size_t cl = strlen(cmd->valuestring), kl = strlen(command);
        int suffix = kl <= cl && !strcmp(cmd->valuestring + cl - kl, command);
        char *shown = suffix ? NULL : argv_display(&argv);
        FUZZ_CHECK(suffix || (shown && !strcmp(shown, command)),
                   "command \"%s\" is neither the caller's text nor the words run", command);
        free(shown);
    } else {
        FUZZ_CHECK(command == NULL, "command kept without a command string");
    }

    int cloud = strcmp(program, "kubectl") != 0;
    check_limits(body, &argv, cloud ? PROTO_KIND_CLOUD_EXEC : PROTO_KIND_KUBECTL,
                 cloud ? program : NULL);
    argv_free(&argv);
    free(command);
}

static void check_text_fields(const cJSON *body)
{
    static const char *const keys[] = {"project", "account", "subscription", "cluster_id",
                                       "provider", "name"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *s = api_json_str(body, keys[i]);
        char err[160] = "";
        if (!s) {
            FUZZ_CHECK(api_check_text(NULL, keys[i], 1, 255, err, sizeof(err)) < 0 && err[0],
                       "api_check_text accepted NULL");
            continue;
        }
        if (api_check_text(s, keys[i], 1, 255, err, sizeof(err)) < 0) {
            FUZZ_CHECK(err[0], "api_check_text refused without a message");
            continue;
        }
        size_t n = strlen(s);
        FUZZ_CHECK(n >= 1 && n <= 255 && utf8_valid(s, n), "%s accepted: bad length or UTF-8",
                   keys[i]);
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
            FUZZ_CHECK(*p >= 0x20 && *p != 0x7f, "%s accepted with a control character",
                       keys[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    http_request req;
    memset(&req, 0, sizeof(req));
    if (buf_append(&req.body, data, size) < 0)
        return 0;
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    cJSON *body = http_json_body(&req, &resp);
    buf_free(&req.body);
    if (!body) {
        FUZZ_CHECK(resp.status == 400, "a bad body answered %d", resp.status);
        check_error(&resp, "http_json_body");
        return 0;
    }
    FUZZ_CHECK(cJSON_IsObject(body) && resp.status == 0, "http_json_body: not an object");
    fuzz_json_check_strings(body, (const char *)data, size, "http_json_body");

    check_command(body, "kubectl", 1); /* POST /api/clusters/{id}/kubectl */
    check_command(body, "gcloud", 0);  /* POST /api/cloud_exec */
    check_text_fields(body);
    cJSON_Delete(body);
    return 0;
}
