/* fuzz_proto.c — the wire protocol codec (common/proto.c): every frame a
 * peer can send is decoded by this code before anything else looks at it.
 *
 * Invariants checked on every input:
 *  - proto_decode never crashes or leaks, whatever the bytes; on failure it
 *    says why and leaves nothing allocated; it accepts no frame in which a
 *    string was cut at a NUL (checked against an independent reading), and
 *    a \u0000 escape only in a command_response, read as U+FFFD;
 *  - on success, a known message re-encoded with its encoder decodes to the
 *    same fields (encode -> decode round trip of what was understood), and
 *    the decoded values keep to the documented limits (ids never 0, argv
 *    within ARGV_MAX_*, env names [A-Z0-9_], program a bare name);
 *  - binary data frames: proto_data_parse accepts exactly the well-formed
 *    headers, and proto_data_header rebuilds the same header. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "json_text.h"
#include "proto.h"
#include "utf8.h"

/* NULL and "" are the same on the wire for optional strings. */
static const char *opt(const char *s) { return s ? s : ""; }

static void same_str(const char *a, const char *b, const char *field)
{
    FUZZ_CHECK((!a && !b) || (a && b && !strcmp(a, b)), "%s: \"%s\" became \"%s\"", field,
               a ? a : "(null)", b ? b : "(null)");
}

static void same_opt(const char *a, const char *b, const char *field)
{
    FUZZ_CHECK(!strcmp(opt(a), opt(b)), "%s: \"%s\" became \"%s\"", field, opt(a), opt(b));
}

static void check_limits(const proto_msg *m)
{
    switch (m->type) {
    case MSG_EXEC:
    case MSG_EXEC_END:
    case MSG_CANCEL:
    case MSG_CREDIT:
        FUZZ_CHECK(m->id != 0, "a v2 message decoded with id 0");
        break;
    default:
        break;
    }
    if (m->type == MSG_EXEC) {
        FUZZ_CHECK(m->argv.c >= 0 && m->argv.c <= ARGV_MAX_ARGS, "exec argv of %d words",
                   m->argv.c);
        size_t total = 0;
        for (int i = 0; i < m->argv.c; i++)
            total += strlen(m->argv.v[i]) + 1;
        FUZZ_CHECK(total <= ARGV_MAX_TOTAL, "exec argv of %zu bytes", total);
        FUZZ_CHECK(!m->program || proto_program_ok(m->program), "exec program \"%s\"",
                   m->program);
        FUZZ_CHECK(m->nenv >= 0 && m->nenv <= PROTO_MAX_ENV, "exec env of %d entries", m->nenv);
        for (int i = 0; i < m->nenv; i++) {
            const char *eq = strchr(m->env[i], '=');
            FUZZ_CHECK(eq && proto_env_name_ok(m->env[i], (size_t)(eq - m->env[i])) &&
                           strlen(eq + 1) <= PROTO_MAX_ENV_VALUE,
                       "exec env entry %d is not NAME=value within the limits", i);
        }
        FUZZ_CHECK(!m->env || m->env[m->nenv] == NULL, "exec env not NULL-terminated");
    }
    FUZZ_CHECK(m->timeout >= 0 && isfinite(m->timeout), "timeout %f", m->timeout);
    FUZZ_CHECK(m->max_output >= 0 && m->hold_output >= 0 && m->bytes >= 0 && m->window >= 0 &&
                   m->duration_ms >= 0,
               "a negative size decoded");
    FUZZ_CHECK(!m->policy_json || strlen(m->policy_json) <= 4096, "policy over 4 KiB kept");
}

/* Encodes what m says with the matching encoder; NULL for types without one. */
static char *reencode(const proto_msg *m, int *secret)
{
    *secret = 0;
    switch (m->type) {
    case MSG_CONNECTED:
        return proto_enc_connected(m->cluster_id, m->cluster_name, m->protocol, m->window);
    case MSG_REGISTER:
        return proto_enc_register(m->cluster_id, m->agent_version, m->protocol,
                                  m->max_concurrent);
    case MSG_HEARTBEAT:
        return proto_enc_heartbeat(m->cluster_id);
    case MSG_HEARTBEAT_ACK:
        return proto_enc_heartbeat_ack();
    case MSG_KUBECTL_COMMAND:
        return proto_enc_kubectl_command(m->command_id, m->command, m->timeout);
    case MSG_COMMAND_RESPONSE:
        if (m->success < 0 || !utf8_valid(m->output ? m->output : "", m->output_len))
            return NULL; /* absent success / lossy output: not a round trip */
        return proto_enc_command_response(m->command_id, m->success, m->output, m->output_len,
                                          m->error, m->return_code);
    case MSG_EXEC:
        *secret = 1;
        return proto_enc_exec_env(m->id, m->kind ? m->kind : PROTO_KIND_KUBECTL, m->program,
                                  &m->argv, (const char *const *)m->env, m->nenv, m->timeout,
                                  m->max_output, m->hold_output);
    case MSG_EXEC_END:
        return proto_enc_exec_end(m->id, m->return_code, m->error, m->error_code, m->truncated,
                                  m->duration_ms, m->bytes);
    case MSG_CANCEL:
        return proto_enc_cancel(m->id);
    case MSG_CREDIT:
        return proto_enc_credit(m->id, m->bytes);
    default:
        return NULL;
    }
}

static void check_round_trip(const proto_msg *m)
{
    int secret;
    char *enc = reencode(m, &secret);
    if (!enc) {
        /* Only these may fail to encode what was decoded. */
        FUZZ_CHECK(m->type == MSG_UNKNOWN || m->type == MSG_COMMAND_RESPONSE ||
                       m->type == MSG_CONNECTED || m->type == MSG_REGISTER ||
                       m->type == MSG_HEARTBEAT || m->type == MSG_KUBECTL_COMMAND,
                   "type %d decoded but does not encode", m->type);
        return;
    }
    proto_msg b;
    char err[256] = "";
    FUZZ_CHECK(proto_decode(enc, strlen(enc), &b, err, sizeof(err)) == 0,
               "re-encoded message does not decode: %s", err);
    FUZZ_CHECK(b.type == m->type, "type %d became %d", m->type, b.type);
    switch (m->type) {
    case MSG_CONNECTED:
        same_str(m->cluster_id, b.cluster_id, "cluster_id");
        same_opt(m->cluster_name, b.cluster_name, "cluster_name");
        if (m->protocol >= 2) {
            FUZZ_CHECK(b.protocol == m->protocol && b.window == m->window,
                       "connected protocol/window changed");
        }
        break;
    case MSG_REGISTER:
        same_str(m->cluster_id, b.cluster_id, "cluster_id");
        same_opt(m->agent_version, b.agent_version, "agent_version");
        if (m->protocol >= 2)
            FUZZ_CHECK(b.protocol == m->protocol && b.max_concurrent == m->max_concurrent,
                       "register protocol/max_concurrent changed");
        break;
    case MSG_HEARTBEAT:
        same_str(m->cluster_id, b.cluster_id, "cluster_id");
        break;
    case MSG_KUBECTL_COMMAND:
        same_str(m->command_id, b.command_id, "command_id");
        same_str(m->command, b.command, "command");
        FUZZ_CHECK(b.timeout == m->timeout, "timeout %.17g became %.17g", m->timeout, b.timeout);
        break;
    case MSG_COMMAND_RESPONSE:
        same_str(m->command_id, b.command_id, "command_id");
        same_opt(m->output, b.output, "output");
        same_opt(m->error, b.error, "error");
        FUZZ_CHECK(b.success == m->success && b.return_code == m->return_code,
                   "command_response success/return_code changed");
        break;
    case MSG_EXEC:
        FUZZ_CHECK(b.id == m->id, "exec id changed");
        same_str(m->kind ? m->kind : PROTO_KIND_KUBECTL, b.kind, "kind");
        same_str(m->program, b.program, "program");
        FUZZ_CHECK(b.argv.c == m->argv.c, "exec argv %d words became %d", m->argv.c, b.argv.c);
        for (int i = 0; i < m->argv.c; i++)
            same_str(m->argv.v[i], b.argv.v[i], "exec argv word");
        FUZZ_CHECK(b.nenv == m->nenv, "exec env %d entries became %d", m->nenv, b.nenv);
        for (int i = 0; i < m->nenv; i++)
            same_str(m->env[i], b.env[i], "exec env entry");
        FUZZ_CHECK(b.timeout == m->timeout && b.max_output == m->max_output &&
                       b.hold_output == m->hold_output,
                   "exec timeout/max_output/hold_output changed");
        break;
    case MSG_EXEC_END:
        FUZZ_CHECK(b.id == m->id && b.return_code == m->return_code &&
                       b.truncated == m->truncated && b.duration_ms == m->duration_ms &&
                       b.bytes == m->bytes,
                   "exec_end numbers changed");
        same_opt(m->error, b.error, "error");
        same_opt(m->error_code, b.error_code, "error_code");
        break;
    case MSG_CANCEL:
        FUZZ_CHECK(b.id == m->id, "cancel id changed");
        break;
    case MSG_CREDIT:
        FUZZ_CHECK(b.id == m->id && b.bytes == m->bytes, "credit id/bytes changed");
        break;
    default:
        break;
    }
    proto_msg_free(&b);
    if (secret)
        proto_free_secret(enc);
    else
        free(enc);
}

static void check_data_frame(const uint8_t *data, size_t size)
{
    int channel = 0;
    uint32_t id = 0;
    const unsigned char *payload = NULL;
    size_t plen = 0;
    int well_formed = size >= PROTO_DATA_HDR && size <= PROTO_DATA_HDR + PROTO_MAX_CHUNK &&
                      (data[0] == PROTO_CHAN_STDOUT || data[0] == PROTO_CHAN_STDERR) &&
                      (data[1] | data[2] | data[3] | data[4]) != 0;
    int rc = proto_data_parse(data, size, &channel, &id, &payload, &plen);
    FUZZ_CHECK((rc == 0) == well_formed, "proto_data_parse returned %d for a %s frame", rc,
               well_formed ? "well-formed" : "malformed");
    if (rc != 0)
        return;
    FUZZ_CHECK(payload == data + PROTO_DATA_HDR && plen == size - PROTO_DATA_HDR && id != 0,
               "data frame payload/id wrong");
    unsigned char hdr[PROTO_DATA_HDR];
    proto_data_header(hdr, channel, id);
    FUZZ_CHECK(!memcmp(hdr, data, PROTO_DATA_HDR), "proto_data_header does not rebuild the header");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_data_frame(data, size);

    proto_msg m;
    char err[256] = "";
    if (proto_decode((const char *)data, size, &m, err, sizeof(err)) != 0) {
        FUZZ_CHECK(err[0] != '\0', "proto_decode failed without a message");
        return 0;
    }
    /* A \u0000 escape is accepted only in a command_response, read as
     * U+FFFD: check the strings against that reading of the text. */
    char *text = malloc(size ? size : 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    if (json_text_has_nul(text, size)) {
        FUZZ_CHECK(m.type == MSG_COMMAND_RESPONSE, "a frame with \\u0000 accepted as type %d",
                   m.type);
        FUZZ_CHECK(json_text_nul_to_replacement(text, size) > 0,
                   "a frame with a raw NUL byte accepted");
    }
    cJSON *tree = cJSON_ParseWithLength(text, size);
    FUZZ_CHECK(tree != NULL, "proto_decode accepted what cJSON refuses");
    fuzz_json_check_strings(tree, text, size, "proto_decode");
    cJSON_Delete(tree);
    free(text);
    check_limits(&m);
    check_round_trip(&m);
    proto_msg_free(&m);
    return 0;
}
