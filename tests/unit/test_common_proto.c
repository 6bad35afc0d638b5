/* test_common_proto.c — wire protocol codec (common/proto.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "argv.h"
#include "free_watch.h"
#include "proto.h"
#include "utf8.h"

/* Decodes s from an exactly-sized heap copy (no NUL after it) so that ASan
 * catches any read past the frame. */
static int decode_exact(const char *s, size_t len, proto_msg *m, char *err, size_t errlen)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, s, len);
    int rc = proto_decode(copy, len, m, err, errlen);
    free(copy);
    return rc;
}

static void decode_ok(const char *s, proto_msg *m)
{
    char err[256] = "";
    int rc = decode_exact(s, strlen(s), m, err, sizeof(err));
    if (rc != 0)
        fail_msg("decode of %s failed: %s", s, err);
}

static void decode_fails(const char *s, const char *needle)
{
    proto_msg m;
    char err[256];
    memset(err, 0, sizeof(err));
    int rc = decode_exact(s, strlen(s), &m, err, sizeof(err));
    if (rc != -1)
        fail_msg("decode of %s succeeded, expected failure", s);
    assert_true(strlen(err) > 0);
    if (needle && !strstr(err, needle))
        fail_msg("decode of %s: error '%s' does not mention '%s'", s, err, needle);
    /* The message is left empty (safe to free again). */
    assert_null(m.type_name);
    assert_null(m.argv.v);
    proto_msg_free(&m);
}

/* Checks the text is a JSON object whose "type" is type, and returns it parsed. */
static cJSON *parse_obj(const char *s, const char *type)
{
    assert_non_null(s);
    cJSON *o = cJSON_Parse(s);
    assert_non_null(o);
    assert_true(cJSON_IsObject(o));
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    assert_true(cJSON_IsString(t));
    assert_string_equal(t->valuestring, type);
    return o;
}

static void test_connected_v1(void **state)
{
    char *s = proto_enc_connected("cluster-0123456789abcdef", "prod-eu", 1, 65536);
    cJSON *o = parse_obj(s, "connected");
    assert_null(cJSON_GetObjectItem(o, "protocol"));
    assert_null(cJSON_GetObjectItem(o, "window"));
    assert_int_equal(cJSON_GetArraySize(o), 3);
    cJSON_Delete(o);

    proto_msg m;
    decode_ok(s, &m);
    assert_int_equal(m.type, MSG_CONNECTED);
    assert_string_equal(m.type_name, "connected");
    assert_string_equal(m.cluster_id, "cluster-0123456789abcdef");
    assert_string_equal(m.cluster_name, "prod-eu");
    assert_int_equal(m.protocol, 0);
    assert_int_equal(m.window, 0);
    proto_msg_free(&m);
    free(s);

    /* NULL cluster name is sent as "". */
    s = proto_enc_connected("cluster-x", NULL, 0, 0);
    decode_ok(s, &m);
    assert_string_equal(m.cluster_name, "");
    proto_msg_free(&m);
    free(s);
}

static void test_connected_v2(void **state)
{
    char *s = proto_enc_connected("cluster-0123456789abcdef", "prod \"eu\"", 2,
                                  PROTO_DEFAULT_WINDOW);
    cJSON *o = parse_obj(s, "connected");
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(o, "protocol")));
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(o, "window")));
    cJSON_Delete(o);
    proto_msg m;
    decode_ok(s, &m);
    assert_int_equal(m.type, MSG_CONNECTED);
    assert_string_equal(m.cluster_id, "cluster-0123456789abcdef");
    assert_string_equal(m.cluster_name, "prod \"eu\"");
    assert_int_equal(m.protocol, 2);
    assert_int_equal(m.window, PROTO_DEFAULT_WINDOW);
    proto_msg_free(&m);
    free(s);
}

static void test_register(void **state)
{
    proto_msg m;
    char *s = proto_enc_register("cluster-abc", "1.2.3", 1, 10);
    cJSON *o = parse_obj(s, "register");
    assert_null(cJSON_GetObjectItem(o, "protocol"));
    assert_null(cJSON_GetObjectItem(o, "max_concurrent"));
    cJSON_Delete(o);
    decode_ok(s, &m);
    assert_int_equal(m.type, MSG_REGISTER);
    assert_string_equal(m.cluster_id, "cluster-abc");
    assert_string_equal(m.agent_version, "1.2.3");
    assert_int_equal(m.protocol, 0);
    assert_int_equal(m.max_concurrent, 0);
    proto_msg_free(&m);
    free(s);

    s = proto_enc_register("cluster-abc", "2.0.0", 2, 32);
    decode_ok(s, &m);
    assert_int_equal(m.type, MSG_REGISTER);
    assert_string_equal(m.agent_version, "2.0.0");
    assert_int_equal(m.protocol, 2);
    assert_int_equal(m.max_concurrent, 32);
    proto_msg_free(&m);
    free(s);

    /* What the Python agent sends. */
    decode_ok("{\"type\": \"register\", \"cluster_id\": \"cluster-1\", \"agent_version\": "
              "\"1.0.0\"}",
              &m);
    assert_int_equal(m.type, MSG_REGISTER);
    assert_int_equal(m.protocol, 0);
    assert_string_equal(m.agent_version, "1.0.0");
    assert_null(m.instance);
    assert_int_equal(m.connection, 0);
    proto_msg_free(&m);

    /* The C agent names its process and counts its connections; an id a
     * log or Redis should not carry is ignored, not an error. */
    decode_ok("{\"type\":\"register\",\"cluster_id\":\"c\",\"instance\":\"0123abcdEF_-\","
              "\"connection\":3}",
              &m);
    assert_string_equal(m.instance, "0123abcdEF_-");
    assert_int_equal(m.connection, 3);
    proto_msg_free(&m);
    decode_ok("{\"type\":\"register\",\"cluster_id\":\"c\",\"instance\":\"ab cd\\nefgh\","
              "\"connection\":-1}",
              &m);
    assert_null(m.instance);
    assert_int_equal(m.connection, 0);
    proto_msg_free(&m);
    decode_ok("{\"type\":\"register\",\"cluster_id\":\"c\",\"instance\":\"short\"}", &m);
    assert_null(m.instance);
    proto_msg_free(&m);
}

static void test_heartbeat(void **state)
{
    proto_msg m;
    char *s = proto_enc_heartbeat("cluster-abc");
    cJSON_Delete(parse_obj(s, "heartbeat"));
    decode_ok(s, &m);
    assert_int_equal(m.type, MSG_HEARTBEAT);
    assert_string_equal(m.cluster_id, "cluster-abc");
    proto_msg_free(&m);
    free(s);

    s = proto_enc_heartbeat_ack();
    assert_string_equal(s, "{\"type\":\"heartbeat_ack\"}");
    decode_ok(s, &m);
    assert_int_equal(m.type, MSG_HEARTBEAT_ACK);
    assert_null(m.cluster_id);
    assert_int_equal(m.success, -1);
    assert_int_equal(m.return_code, -1);
    assert_int_equal(m.id, 0);
    proto_msg_free(&m);
    free(s);
}

static void test_kubectl_command(void **state)
{
    proto_msg m;
    const char *cmd = "get pods -n prod -l 'app=caf\xc3\xa9' -o \"json\"";
    char *s = proto_enc_kubectl_command("cmd-42", cmd, 30);
    cJSON_Delete(parse_obj(s, "kubectl_command"));
    decode_ok(s, &m);
    assert_int_equal(m.type, MSG_KUBECTL_COMMAND);
    assert_string_equal(m.command_id, "cmd-42");
    assert_string_equal(m.command, cmd);
    assert_true(m.timeout == 30.0);
    proto_msg_free(&m);
    free(s);

    s = proto_enc_kubectl_command("c", "version", 2.5);
    decode_ok(s, &m);
    assert_true(m.timeout == 2.5);
    proto_msg_free(&m);
    free(s);

    decode_fails("{\"type\":\"kubectl_command\",\"command_id\":\"x\"}", "kubectl_command");
    decode_fails("{\"type\":\"kubectl_command\",\"command\":\"get pods\"}", "kubectl_command");
}

static void test_command_response(void **state)
{
    proto_msg m;
    const char out[] = "NAME   READY\nweb-1  1/1\n\ttab \"q\" \\ caf\xc3\xa9";
    char *s = proto_enc_command_response("cmd-1", 1, out, sizeof(out) - 1, NULL, 0);
    cJSON *o = parse_obj(s, "command_response");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "success")));
    assert_string_equal(cJSON_GetObjectItem(o, "error")->valuestring, "");
    cJSON_Delete(o);
    decode_ok(s, &m);
    assert_int_equal(m.type, MSG_COMMAND_RESPONSE);
    assert_string_equal(m.command_id, "cmd-1");
    assert_int_equal(m.success, 1);
    assert_string_equal(m.output, out);
    assert_int_equal(m.output_len, sizeof(out) - 1);
    assert_string_equal(m.error, "");
    assert_int_equal(m.return_code, 0);
    proto_msg_free(&m);
    free(s);

    s = proto_enc_command_response("cmd-2", 0, NULL, 0, "timed out", 124);
    decode_ok(s, &m);
    assert_int_equal(m.success, 0);
    assert_string_equal(m.output, "");
    assert_int_equal(m.output_len, 0);
    assert_string_equal(m.error, "timed out");
    assert_int_equal(m.return_code, 124);
    proto_msg_free(&m);
    free(s);
}

static void test_command_response_binary_output(void **state)
{
    /* Invalid UTF-8, a NUL byte, a lone continuation byte, a cut sequence. */
    const char raw[] = { 'o', 'k', '\0', 'x', (char)0xff, 'y', (char)0x80, 'z', (char)0xe2,
                         (char)0x82 };
    char *s = proto_enc_command_response("cmd-3", 1, raw, sizeof(raw), "", 1);
    assert_non_null(s);
    /* The frame is valid UTF-8 text and valid JSON. */
    assert_true(utf8_valid(s, strlen(s)));
    cJSON_Delete(parse_obj(s, "command_response"));
    proto_msg m;
    decode_ok(s, &m);
    assert_int_equal(m.return_code, 1);
    assert_non_null(m.output);
    assert_true(utf8_valid(m.output, m.output_len));
    assert_int_equal(m.output_len, strlen(m.output));
    const char *want = "ok\xef\xbf\xbdx\xef\xbf\xbdy\xef\xbf\xbdz\xef\xbf\xbd\xef\xbf\xbd";
    assert_string_equal(m.output, want);
    proto_msg_free(&m);
    free(s);

    /* Binary-only output, 4 KiB of every byte value. */
    char big[4096];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)(i & 0xff);
    s = proto_enc_command_response("cmd-4", 1, big, sizeof(big), NULL, 0);
    assert_non_null(s);
    assert_true(utf8_valid(s, strlen(s)));
    decode_ok(s, &m);
    assert_true(utf8_valid(m.output, m.output_len));
    assert_true(m.output_len >= sizeof(big) / 2);
    proto_msg_free(&m);
    free(s);
}

/* proto_command_response_into, measured then written as the agent does. */
static char *bounded_response(size_t cap, const char *out, size_t out_len, const char *err,
                              size_t err_len, const char *note, int force, int rc, size_t *len,
                              int *cut)
{
    size_t n = proto_command_response_into(NULL, cap, "cmd-b", 1, out, out_len, err, err_len, note,
                                           force, rc, cut);
    char *s = malloc(n + 1);
    assert_non_null(s);
    size_t n2 = proto_command_response_into(s, cap, "cmd-b", 1, out, out_len, err, err_len, note,
                                            force, rc, NULL);
    assert_int_equal(n2, n);
    s[n] = '\0';
    *len = n;
    return s;
}

/* A response that fits is the cJSON encoder's text, byte for byte. */
static void test_command_response_into_fits(void **state)
{
    char raw[600];
    for (size_t i = 0; i < sizeof(raw); i++)
        raw[i] = (char)((i * 7) & 0xff);
    const char text[] = "caf\xc3\xa9 \xf0\x9f\x98\x80 \"q\" \\ \t\x7f\x01";
    const char *outs[] = {raw, text, ""};
    size_t out_lens[] = {sizeof(raw), sizeof(text) - 1, 0};
    for (int i = 0; i < 3; i++) {
        char *want = proto_enc_command_response("cmd-b", 1, outs[i], out_lens[i],
                                                "err \x02\n", 7);
        size_t len;
        int cut = -1;
        char *got = bounded_response(1 << 20, outs[i], out_lens[i], "err \x02\n", 6, "NOTE", 0, 7,
                                     &len, &cut);
        assert_int_equal(cut, 0);
        assert_int_equal(len, strlen(want));
        assert_string_equal(got, want);
        /* exactly its own length is room enough */
        free(got);
        got = bounded_response(strlen(want), outs[i], out_lens[i], "err \x02\n", 6, "NOTE", 0, 7,
                               &len, &cut);
        assert_int_equal(cut, 0);
        assert_string_equal(got, want);
        free(got);
        free(want);
    }
}

/* Binary and control bytes (6 bytes of JSON each as \u00XX, 3 as U+FFFD):
 * never more than cap, cut only between characters, the note in the error,
 * for every cap from the smallest answer up. */
static void test_command_response_into_bounded(void **state)
{
    size_t raw_len = 1 << 20;
    char *raw = malloc(raw_len);
    assert_non_null(raw);
    for (size_t i = 0; i < raw_len; i++) {
        static const unsigned char pat[] = {0x01, 0x1f, 0x00, 0xff, 'a', 0xc3, 0xa9, '"',
                                            0xe2, 0x82, 0xac, 0x80, '\n', 0xf0, 0x9f, 0x98};
        raw[i] = (char)pat[i % sizeof(pat)];
    }
    const char *note = "output truncated: a legacy response is at most N bytes";
    char *full = proto_enc_command_response("cmd-b", 1, raw, raw_len, "stderr", 3);
    cJSON *fo = parse_obj(full, "command_response");
    const char *full_out = cJSON_GetObjectItem(fo, "output")->valuestring;
    size_t full_out_len = strlen(full_out);
    assert_true(strlen(full) > 2 * raw_len); /* what the cJSON encoder made of it */

    size_t smallest = proto_command_response_into(NULL, 1 << 20, "cmd-b", 1, NULL, 0, "", 0, NULL,
                                                  0, 3, NULL);
    assert_int_equal(proto_command_response_into(NULL, smallest - 1, "cmd-b", 1, raw, raw_len,
                                                 "stderr", 6, note, 0, 3, NULL), 0);
    size_t caps[] = {smallest, smallest + 1, smallest + 5, smallest + 64, smallest + 70,
                     smallest + 71, 4096, 65536 + 1, 65536 + 2, 65536 + 3, 65536 + 4, 65536 + 5,
                     (size_t)1 << 20};
    for (size_t k = 0; k < sizeof(caps) / sizeof(caps[0]); k++) {
        size_t len;
        int cut = 0;
        char *s = bounded_response(caps[k], raw, raw_len, "stderr", 6, note, 0, 3, &len, &cut);
        assert_true(len <= caps[k]);
        assert_int_equal(cut, 1);
        assert_true(utf8_valid(s, len));
        cJSON *o = parse_obj(s, "command_response");
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "success")));
        assert_int_equal(cJSON_GetObjectItem(o, "return_code")->valueint, 3);
        const char *got = cJSON_GetObjectItem(o, "output")->valuestring;
        size_t got_len = strlen(got);
        /* what was kept is the start of the whole, cut between characters */
        assert_true(got_len < full_out_len);
        assert_memory_equal(got, full_out, got_len);
        const char *err = cJSON_GetObjectItem(o, "error")->valuestring;
        if (caps[k] >= smallest + 71) { /* room for the note and the error */
            char want[128];
            snprintf(want, sizeof(want), "stderr\n%s", note);
            assert_string_equal(err, want);
        }
        if (caps[k] == (size_t)1 << 20) /* most of it output: nothing wasted */
            assert_true(len + 6 > caps[k]);
        proto_msg m;
        decode_ok(s, &m);
        assert_int_equal(m.output_len, got_len);
        proto_msg_free(&m);
        cJSON_Delete(o);
        free(s);
    }

    /* A long error keeps its head beside the output; the rest goes first. */
    size_t elen = 4 * PROTO_LEGACY_ERROR_KEEP;
    char *e = malloc(elen);
    assert_non_null(e);
    memset(e, 'e', elen);
    size_t len;
    int cut;
    char *s = bounded_response((size_t)1 << 20, raw, raw_len, e, elen, note, 0, 1, &len, &cut);
    assert_true(len <= (size_t)1 << 20);
    cJSON *o = parse_obj(s, "command_response");
    const char *err = cJSON_GetObjectItem(o, "error")->valuestring;
    assert_int_equal(strlen(err), PROTO_LEGACY_ERROR_KEEP + 1 + strlen(note));
    assert_true(strlen(cJSON_GetObjectItem(o, "output")->valuestring) > 100000);
    cJSON_Delete(o);
    free(s);
    free(e);

    /* force_note: nothing cut, the note still said */
    s = bounded_response((size_t)1 << 20, "ok\n", 3, "", 0, note, 1, 0, &len, &cut);
    assert_int_equal(cut, 1);
    o = parse_obj(s, "command_response");
    assert_string_equal(cJSON_GetObjectItem(o, "output")->valuestring, "ok\n");
    assert_string_equal(cJSON_GetObjectItem(o, "error")->valuestring, note);
    cJSON_Delete(o);
    free(s);

    cJSON_Delete(fo);
    free(full);
    free(raw);
}

static void test_command_id_numeric(void **state)
{
    proto_msg m;
    decode_ok("{\"type\":\"command_response\",\"command_id\":12345,\"success\":true,"
              "\"output\":\"x\",\"error\":\"\",\"return_code\":0}",
              &m);
    assert_int_equal(m.type, MSG_COMMAND_RESPONSE);
    assert_string_equal(m.command_id, "12345");
    proto_msg_free(&m);

    decode_ok("{\"type\":\"kubectl_command\",\"command_id\":7,\"command\":\"get ns\","
              "\"timeout\":60}",
              &m);
    assert_string_equal(m.command_id, "7");
    assert_true(m.timeout == 60.0);
    proto_msg_free(&m);
}

/* ---- what freed memory keeps --------------------------------------------- */

#define FREED_MARKER "s3cr3t-Marker-9f1c"

/* A kubectl argv carries credentials (`create secret --from-literal=`,
 * `--token=` refused by policy but decoded first, `exec … -- env K=V`), and so
 * does a cloud_exec's (`az keyvault secret set --value`): the decoded frame,
 * the argv the runner keeps and the legacy command string are wiped before
 * their memory goes back. */
static void test_credentials_in_argv_are_wiped_when_freed(void **state)
{
    (void)state;
    static const char *const frames[] = {
        "{\"type\":\"exec\",\"id\":7,\"argv\":[\"create\",\"secret\",\"generic\",\"db\","
        "\"--from-literal=password=" FREED_MARKER "\"],\"timeout\":30}",
        "{\"type\":\"exec\",\"id\":8,\"kind\":\"cloud_exec\",\"program\":\"az\",\"argv\":"
        "[\"keyvault\",\"secret\",\"set\",\"--value\",\"" FREED_MARKER "\"],"
        "\"env\":{\"AZURE_ACCESS_TOKEN\":\"" FREED_MARKER "\"}}",
        "{\"type\":\"kubectl_command\",\"command_id\":\"c1\",\"command\":\"kubectl create "
        "secret generic db --from-literal=password=" FREED_MARKER
        "-and-a-value-longer-than-the-first-buffer-of-a-word-0123456789\",\"timeout\":30}",
        /* malformed after the argv was copied: the error path frees it too */
        "{\"type\":\"exec\",\"id\":9,\"argv\":[\"--token=" FREED_MARKER "\"],\"program\":\"/bin/sh\"}",
        /* refused before its type is read: trailing data, not an object */
        "{\"type\":\"exec\",\"id\":10,\"argv\":[\"get\"],\"env\":{\"AWS_SECRET_ACCESS_KEY\":\""
        FREED_MARKER "\"}} x",
        "[{\"type\":\"exec\",\"id\":11,\"env\":{\"AWS_SESSION_TOKEN\":\"" FREED_MARKER "\"}}]",
    };
    for (size_t i = 0; i < sizeof(frames) / sizeof(frames[0]); i++) {
        char *frame = strdup(frames[i]);
        assert_non_null(frame);
        proto_msg m;
        char err[200] = "";
        assert_true(free_watch_arm(FREED_MARKER));
        int rc = proto_decode(frame, strlen(frame), &m, err, sizeof(err));
        if (rc == 0 && m.type == MSG_KUBECTL_COMMAND) {
            argv_t a;
            memset(&a, 0, sizeof(a));
            assert_int_equal(argv_tokenize(m.command, &a, err, sizeof(err)), 0);
            assert_non_null(strstr(a.v[a.c - 1], FREED_MARKER));
            argv_free(&a);
        }
        if (rc == 0)
            proto_msg_free(&m);
        int kept = free_watch_disarm();
        assert_int_equal(rc, i >= 3 ? -1 : 0);
        if (kept)
            fail_msg("frame %zu: %d freed blocks still hold the credential", i, kept);
        free(frame);
    }
}

static void test_exec(void **state)
{
    const char *args[] = { "get", "pods", "-l", "a='b' \"c\"", "caf\xc3\xa9 \xf0\x9f\x98\x80",
                           "", "$(id)", "back\\slash", "tab\tnl\n" };
    int n = (int)(sizeof(args) / sizeof(args[0]));
    argv_t av = { 0 };
    char err[128];
    assert_int_equal(argv_from_strings(args, n, &av, err, sizeof(err)), 0);
    char *s = proto_enc_exec(0xFFFFFFFFu, "kubectl", &av, 45, 10 * 1024 * 1024);
    cJSON_Delete(parse_obj(s, "exec"));
    proto_msg m;
    decode_ok(s, &m);
    assert_int_equal(m.type, MSG_EXEC);
    assert_int_equal(m.id, 0xFFFFFFFFu);
    assert_string_equal(m.kind, "kubectl");
    assert_int_equal(m.argv.c, n);
    for (int i = 0; i < n; i++)
        assert_string_equal(m.argv.v[i], args[i]);
    assert_null(m.argv.v[n]);
    assert_true(m.timeout == 45.0);
    assert_int_equal(m.max_output, 10 * 1024 * 1024);
    assert_int_equal(m.hold_output, 0); /* absent: stream output as it comes */
    assert_null(strstr(s, "hold_output"));
    proto_msg_free(&m);
    free(s);

    /* A caller that takes the result whole lets the agent hold output back. */
    s = proto_enc_exec_env(9, "kubectl", NULL, &av, NULL, 0, 45, 4096, 65536);
    decode_ok(s, &m);
    assert_int_equal(m.hold_output, 65536);
    proto_msg_free(&m);
    free(s);
    /* Out-of-range values from a peer read as absent. */
    const char *bad_hold[] = {
        "{\"type\":\"exec\",\"id\":1,\"argv\":[],\"hold_output\":-5}",
        "{\"type\":\"exec\",\"id\":1,\"argv\":[],\"hold_output\":1e300}",
        "{\"type\":\"exec\",\"id\":1,\"argv\":[],\"hold_output\":\"65536\"}",
    };
    for (size_t i = 0; i < sizeof(bad_hold) / sizeof(bad_hold[0]); i++) {
        decode_ok(bad_hold[i], &m);
        assert_int_equal(m.hold_output, 0);
        proto_msg_free(&m);
    }
    argv_free(&av);

    /* Empty argv (plain `kubectl`) is legal. */
    argv_t empty = { 0 };
    s = proto_enc_exec(1, "kubectl", &empty, 1, 1);
    decode_ok(s, &m);
    assert_int_equal(m.type, MSG_EXEC);
    assert_int_equal(m.id, 1);
    assert_int_equal(m.argv.c, 0);
    /* ... and the agent can put the program name in front of it. */
    assert_int_equal(argv_prepend(&m.argv, "kubectl"), 0);
    assert_int_equal(m.argv.c, 1);
    assert_string_equal(m.argv.v[0], "kubectl");
    assert_null(m.argv.v[1]);
    proto_msg_free(&m);
    free(s);

    /* 256 args is the limit, and is accepted. */
    const char **many = calloc(ARGV_MAX_ARGS, sizeof(char *));
    assert_non_null(many);
    for (int i = 0; i < ARGV_MAX_ARGS; i++)
        many[i] = "x";
    assert_int_equal(argv_from_strings(many, ARGV_MAX_ARGS, &av, err, sizeof(err)), 0);
    s = proto_enc_exec(7, "kubectl", &av, 1, 1);
    decode_ok(s, &m);
    assert_int_equal(m.argv.c, ARGV_MAX_ARGS);
    proto_msg_free(&m);
    free(s);
    argv_free(&av);
    free(many);
}

static void test_exec_cloud(void **state)
{
    const char *args[] = { "compute", "instances", "list", "--filter=name~'a;b|c'", "$(id)" };
    argv_t av = { 0 };
    char err[128];
    assert_int_equal(argv_from_strings(args, 5, &av, err, sizeof(err)), 0);
    char big[PROTO_MAX_ENV_VALUE + 16];
    memset(big, 'v', sizeof(big));
    snprintf(big, sizeof(big), "TOKEN_VALUE=");
    big[strlen("TOKEN_VALUE=")] = 'v';
    big[strlen("TOKEN_VALUE=") + PROTO_MAX_ENV_VALUE] = '\0'; /* value exactly 8 KiB */
    const char *env[] = { "CLOUDSDK_AUTH_ACCESS_TOKEN=ya29.secret=with=equals",
                          "CLOUDSDK_CORE_PROJECT=proj-1", "EMPTY=", big };
    char *s = proto_enc_exec_env(42, PROTO_KIND_CLOUD_EXEC, "gcloud", &av, env, 4, 30, 1024, 0);
    cJSON *o = parse_obj(s, "exec");
    assert_string_equal(cJSON_GetObjectItem(o, "program")->valuestring, "gcloud");
    assert_string_equal(cJSON_GetObjectItem(o, "kind")->valuestring, "cloud_exec");
    const cJSON *eo = cJSON_GetObjectItem(o, "env");
    assert_true(cJSON_IsObject(eo));
    assert_string_equal(cJSON_GetObjectItem(eo, "CLOUDSDK_AUTH_ACCESS_TOKEN")->valuestring,
                        "ya29.secret=with=equals");
    cJSON_Delete(o);

    proto_msg m;
    decode_ok(s, &m);
    assert_int_equal(m.type, MSG_EXEC);
    assert_int_equal(m.id, 42);
    assert_string_equal(m.kind, "cloud_exec");
    assert_string_equal(m.program, "gcloud");
    assert_int_equal(m.argv.c, 5);
    for (int i = 0; i < 5; i++)
        assert_string_equal(m.argv.v[i], args[i]);
    assert_int_equal(m.nenv, 4);
    assert_non_null(m.env);
    assert_null(m.env[4]);
    assert_string_equal(m.env[0], "CLOUDSDK_AUTH_ACCESS_TOKEN=ya29.secret=with=equals");
    assert_string_equal(m.env[1], "CLOUDSDK_CORE_PROJECT=proj-1");
    assert_string_equal(m.env[2], "EMPTY=");
    assert_string_equal(m.env[3], big);
    proto_msg_free(&m);
    assert_null(m.env);
    assert_null(m.program);
    proto_free_secret(s);

    /* A kubectl exec has neither (old encoder unchanged). */
    s = proto_enc_exec(1, "kubectl", &av, 1, 1);
    assert_null(strstr(s, "program"));
    assert_null(strstr(s, "env"));
    decode_ok(s, &m);
    assert_null(m.program);
    assert_null(m.env);
    assert_int_equal(m.nenv, 0);
    proto_msg_free(&m);
    free(s);

    /* 32 variables is the limit. */
    char names[PROTO_MAX_ENV + 1][32];
    const char *many[PROTO_MAX_ENV + 1];
    for (int i = 0; i <= PROTO_MAX_ENV; i++) {
        snprintf(names[i], sizeof(names[i]), "V_%d=x", i);
        many[i] = names[i];
    }
    s = proto_enc_exec_env(2, "cloud_exec", "aws", &av, many, PROTO_MAX_ENV, 1, 1, 0);
    decode_ok(s, &m);
    assert_int_equal(m.nenv, PROTO_MAX_ENV);
    proto_msg_free(&m);
    proto_free_secret(s);

    /* The encoder refuses what the decoder would refuse. */
    assert_null(proto_enc_exec_env(2, "cloud_exec", "aws", &av, many, PROTO_MAX_ENV + 1, 1, 1, 0));
    const char *bad_name[] = { "lower=x" };
    assert_null(proto_enc_exec_env(2, "cloud_exec", "aws", &av, bad_name, 1, 1, 1, 0));
    const char *no_eq[] = { "NOEQUALS" };
    assert_null(proto_enc_exec_env(2, "cloud_exec", "aws", &av, no_eq, 1, 1, 1, 0));
    const char *dup[] = { "A=1", "A=2" };
    assert_null(proto_enc_exec_env(2, "cloud_exec", "aws", &av, dup, 2, 1, 1, 0));
    big[strlen(big)] = 'v'; /* now one byte over */
    big[strlen("TOKEN_VALUE=") + PROTO_MAX_ENV_VALUE + 1] = '\0';
    const char *too_big[] = { big };
    assert_null(proto_enc_exec_env(2, "cloud_exec", "aws", &av, too_big, 1, 1, 1, 0));
    assert_null(proto_enc_exec_env(2, "cloud_exec", "/usr/bin/aws", &av, NULL, 0, 1, 1, 0));
    assert_null(proto_enc_exec_env(2, "cloud_exec", "../aws", &av, NULL, 0, 1, 1, 0));
    argv_free(&av);
}

static void test_decode_exec_env_errors(void **state)
{
    /* cloud_exec needs a program */
    decode_fails("{\"type\":\"exec\",\"id\":1,\"kind\":\"cloud_exec\",\"argv\":[\"x\"]}", "program");
    decode_fails("{\"type\":\"exec\",\"id\":1,\"kind\":\"cloud_exec\",\"program\":\"\",\"argv\":[]}",
                 "program");
    decode_fails("{\"type\":\"exec\",\"id\":1,\"kind\":\"cloud_exec\",\"program\":\"/bin/sh\","
                 "\"argv\":[]}",
                 "program");
    decode_fails("{\"type\":\"exec\",\"id\":1,\"kind\":\"cloud_exec\",\"program\":7,\"argv\":[]}",
                 "program");
    /* env must be an object of strings with [A-Z0-9_] names */
    decode_fails("{\"type\":\"exec\",\"id\":1,\"program\":\"gcloud\",\"argv\":[],\"env\":[\"A=1\"]}",
                 "env");
    decode_fails("{\"type\":\"exec\",\"id\":1,\"program\":\"gcloud\",\"argv\":[],\"env\":\"A=1\"}",
                 "env");
    decode_fails("{\"type\":\"exec\",\"id\":1,\"program\":\"gcloud\",\"argv\":[],"
                 "\"env\":{\"lower\":\"x\"}}",
                 "env");
    decode_fails("{\"type\":\"exec\",\"id\":1,\"program\":\"gcloud\",\"argv\":[],"
                 "\"env\":{\"A-B\":\"x\"}}",
                 "env");
    decode_fails("{\"type\":\"exec\",\"id\":1,\"program\":\"gcloud\",\"argv\":[],"
                 "\"env\":{\"\":\"x\"}}",
                 "env");
    decode_fails("{\"type\":\"exec\",\"id\":1,\"program\":\"gcloud\",\"argv\":[],"
                 "\"env\":{\"1A\":\"x\"}}",
                 "env");
    decode_fails("{\"type\":\"exec\",\"id\":1,\"program\":\"gcloud\",\"argv\":[],"
                 "\"env\":{\"A\":1}}",
                 "env");
    decode_fails("{\"type\":\"exec\",\"id\":1,\"program\":\"gcloud\",\"argv\":[],"
                 "\"env\":{\"A\":null}}",
                 "env");
    decode_fails("{\"type\":\"exec\",\"id\":1,\"program\":\"gcloud\",\"argv\":[],"
                 "\"env\":{\"A\":\"1\",\"A\":\"2\"}}",
                 "twice");
    /* 33 variables */
    char s[4096];
    int k = snprintf(s, sizeof(s), "{\"type\":\"exec\",\"id\":1,\"program\":\"gcloud\",\"argv\":[],\"env\":{");
    for (int i = 0; i <= PROTO_MAX_ENV; i++)
        k += snprintf(s + k, sizeof(s) - (size_t)k, "%s\"V%d\":\"x\"", i ? "," : "", i);
    snprintf(s + k, sizeof(s) - (size_t)k, "}}");
    decode_fails(s, "32");
    /* a value over 8 KiB */
    size_t cap = PROTO_MAX_ENV_VALUE + 200;
    char *big = malloc(cap);
    assert_non_null(big);
    k = snprintf(big, cap, "{\"type\":\"exec\",\"id\":1,\"program\":\"gcloud\",\"argv\":[],\"env\":{\"T\":\"");
    memset(big + k, 'a', PROTO_MAX_ENV_VALUE + 1);
    snprintf(big + k + PROTO_MAX_ENV_VALUE + 1, cap - (size_t)k - PROTO_MAX_ENV_VALUE - 1, "\"}}");
    decode_fails(big, "8 KiB");
    free(big);
    /* null program/env count as absent for kubectl */
    proto_msg m;
    decode_ok("{\"type\":\"exec\",\"id\":1,\"kind\":\"kubectl\",\"program\":null,\"env\":null,"
              "\"argv\":[\"get\"]}",
              &m);
    assert_null(m.program);
    assert_null(m.env);
    proto_msg_free(&m);
}

/* The messages that carry a command line (a --token=… typed into it) or a
 * cloud_exec's credentials leave no copy in freed memory: the tree's
 * strings are wiped, and printing grows no buffer that is freed unwiped
 * (cJSON's print starts at 256 bytes and reallocates as it goes). */
static void test_secret_messages_leave_no_copies(void **state)
{
    (void)state;
    static const char marker[] = "Zq7-leftover-credential";
    char tok[600], envv[700];
    snprintf(tok, sizeof(tok), "--token=%s", marker);
    memset(tok + strlen(tok), 'a', 400);
    tok[strlen("--token=") + strlen(marker) + 400] = '\0';
    snprintf(envv, sizeof(envv), "AWS_SESSION_TOKEN=%s", marker);
    memset(envv + strlen(envv), 'b', 500);
    envv[strlen("AWS_SESSION_TOKEN=") + strlen(marker) + 500] = '\0';
    const char *args[] = { "get", "pods", tok, "-o", "json" };
    argv_t av = { 0 };
    char err[128];
    assert_int_equal(argv_from_strings(args, 5, &av, err, sizeof(err)), 0);
    const char *env[] = { "AWS_REGION=eu-west-1", envv };
    char cmd[800];
    snprintf(cmd, sizeof(cmd), "get pods %s -o json", tok);

    free_watch_arm(marker);
    char *cloud = proto_enc_exec_env(7, PROTO_KIND_CLOUD_EXEC, "aws", &av, env, 2, 30, 1024, 0);
    char *kube = proto_enc_exec(8, PROTO_KIND_KUBECTL, &av, 30, 1024);
    char *legacy = proto_enc_kubectl_command("cmd-1", cmd, 30);
    int hits = free_watch_disarm();
    assert_non_null(cloud);
    assert_non_null(kube);
    assert_non_null(legacy);
    assert_non_null(strstr(cloud, envv + strlen("AWS_SESSION_TOKEN=")));
    assert_non_null(strstr(kube, tok));
    assert_non_null(strstr(legacy, tok));
    assert_int_equal(hits, 0);
    free_watch_arm(marker);
    proto_free_secret(cloud);
    proto_free_secret(kube);
    proto_free_secret(legacy);
    assert_int_equal(free_watch_disarm(), 0);
    argv_free(&av);
}

static void test_exec_end(void **state)
{
    proto_msg m;
    char *s = proto_enc_exec_end(9, 0, NULL, NULL, 0, 1234, 5678);
    cJSON *o = parse_obj(s, "exec_end");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "error_code")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(o, "truncated")));
    cJSON_Delete(o);
    decode_ok(s, &m);
    assert_int_equal(m.type, MSG_EXEC_END);
    assert_int_equal(m.id, 9);
    assert_int_equal(m.return_code, 0);
    assert_string_equal(m.error, "");
    assert_null(m.error_code);
    assert_int_equal(m.truncated, 0);
    assert_int_equal(m.duration_ms, 1234);
    assert_int_equal(m.bytes, 5678);
    proto_msg_free(&m);
    free(s);

    /* "" error_code is also sent as null. */
    s = proto_enc_exec_end(9, 0, "", "", 0, 0, 0);
    o = parse_obj(s, "exec_end");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "error_code")));
    cJSON_Delete(o);
    free(s);

    s = proto_enc_exec_end(0x01020304u, 124, "command timed out after 30s", EC_TIMEOUT, 1,
                           30001, (int64_t)5 << 30);
    decode_ok(s, &m);
    assert_int_equal(m.id, 0x01020304u);
    assert_int_equal(m.return_code, 124);
    assert_string_equal(m.error, "command timed out after 30s");
    assert_string_equal(m.error_code, "TIMEOUT");
    assert_int_equal(m.truncated, 1);
    assert_int_equal(m.duration_ms, 30001);
    assert_int_equal(m.bytes, (int64_t)5 << 30);
    proto_msg_free(&m);
    free(s);

    s = proto_enc_exec_end(3, 130, "cancelled", EC_CANCELLED, 0, 1, 0);
    decode_ok(s, &m);
    assert_int_equal(m.return_code, 130);
    assert_string_equal(m.error_code, "CANCELLED");
    proto_msg_free(&m);
    free(s);
}

static void test_cancel_credit(void **state)
{
    proto_msg m;
    char *s = proto_enc_cancel(77);
    assert_string_equal(s, "{\"type\":\"cancel\",\"id\":77}");
    decode_ok(s, &m);
    assert_int_equal(m.type, MSG_CANCEL);
    assert_int_equal(m.id, 77);
    proto_msg_free(&m);
    free(s);

    s = proto_enc_credit(0xFFFFFFFFu, 32768);
    decode_ok(s, &m);
    assert_int_equal(m.type, MSG_CREDIT);
    assert_int_equal(m.id, 0xFFFFFFFFu);
    assert_int_equal(m.bytes, 32768);
    proto_msg_free(&m);
    free(s);

    s = proto_enc_credit(1, 0);
    decode_ok(s, &m);
    assert_int_equal(m.bytes, 0);
    proto_msg_free(&m);
    free(s);
}

static void test_decode_errors(void **state)
{
    decode_fails("", "JSON");
    decode_fails("not json", "JSON");
    decode_fails("{\"type\":\"heartbeat\"", "JSON");     /* truncated */
    decode_fails("{\"type\":\"heartb", "JSON");          /* truncated in a string */
    decode_fails("{\"type\":\"exec\",\"id\":1,\"argv\":[\"a\"", "JSON");
    decode_fails("[]", "object");
    decode_fails("[{\"type\":\"heartbeat\"}]", "object");
    decode_fails("\"heartbeat\"", "object");
    decode_fails("42", "object");
    decode_fails("null", "object");
    decode_fails("{}", "type");
    decode_fails("{\"cluster_id\":\"x\"}", "type");
    decode_fails("{\"type\":1}", "type");
    decode_fails("{\"type\":null}", "type");
    decode_fails("{\"type\":[\"exec\"]}", "type");
    decode_fails("{\"type\":{}}", "type");
}

/* A NUL would cut an argv element (escaped) or is skipped by cJSON as white
 * space between tokens (raw): both are refused, an escaped backslash is not. */
static void test_decode_nul_refused(void **state)
{
    (void)state;
    decode_fails("{\"type\":\"exec\",\"id\":9,\"argv\":[\"get\\u0000\",\"pods\"]}", "NUL");
    decode_fails("{\"type\":\"heartbeat\\u0000x\"}", "NUL");
    proto_msg m;
    char err[256];
    static const char raw[] = "{\"type\":\"exec\",\"id\":9\0,\"argv\":[\"get\"]}";
    assert_int_equal(proto_decode(raw, sizeof(raw) - 1, &m, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "NUL"));
    proto_msg_free(&m);
    static const char ok[] = "{\"type\":\"exec\",\"id\":9,\"argv\":[\"a\\\\u0000\"]}";
    assert_int_equal(proto_decode(ok, sizeof(ok) - 1, &m, err, sizeof(err)), 0);
    assert_string_equal(m.argv.v[0], "a\\u0000");
    proto_msg_free(&m);
}

/* The Python agent's json.dumps sends a NUL byte of kubectl's output as
 * \u0000: a command_response keeps it, as U+FFFD (what the C agent sends
 * there), in its output and error; any other message is still refused. */
static void test_decode_nul_in_legacy_response(void **state)
{
    (void)state;
    proto_msg m;
    decode_ok("{\"type\":\"command_response\",\"command_id\":\"cmd-1\",\"success\":true,"
              "\"output\":\"a\\u0000b\\u0000\",\"error\":\"\\u0000e\",\"return_code\":0}",
              &m);
    assert_int_equal(m.type, MSG_COMMAND_RESPONSE);
    assert_string_equal(m.command_id, "cmd-1");
    assert_string_equal(m.output, "a\xef\xbf\xbd" "b\xef\xbf\xbd");
    assert_int_equal(m.output_len, 8);
    assert_string_equal(m.error, "\xef\xbf\xbd" "e");
    assert_int_equal(m.success, 1);
    assert_int_equal(m.return_code, 0);
    proto_msg_free(&m);
    /* an escaped backslash before u0000 is text, next to a real escape */
    decode_ok("{\"type\":\"command_response\",\"command_id\":\"c\","
              "\"output\":\"\\\\u0000\\u0000\"}", &m);
    assert_string_equal(m.output, "\\u0000\xef\xbf\xbd");
    proto_msg_free(&m);
    decode_fails("{\"type\":\"heartbeat\",\"cluster_id\":\"c\\u0000\"}", "NUL");
    decode_fails("{\"type\":\"register\",\"cluster_id\":\"c\",\"agent_version\":\"\\u0000\"}",
                 "NUL");
    decode_fails("{\"type\":\"command_response\\u0000\",\"command_id\":\"c\"}", "NUL");
    decode_fails("{\"type\":\"kubectl_command\",\"command_id\":\"c\",\"command\":\"get\\u0000\"}",
                 "NUL");
    decode_fails("{\"type\":\"command_response\",\"command_id\":\"c\",\"output\":\"\\u0000\"", "JSON");
    char err[256];
    static const char raw[] = "{\"type\":\"command_response\",\"command_id\":\"c\",\"output\":\"\\u0000\"\0}";
    assert_int_equal(proto_decode(raw, sizeof(raw) - 1, &m, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "NUL"));
    proto_msg_free(&m);
}

static void test_decode_exec_errors(void **state)
{
    decode_fails("{\"type\":\"exec\",\"kind\":\"kubectl\",\"argv\":[]}", "id");
    decode_fails("{\"type\":\"exec\",\"id\":0,\"argv\":[]}", "id");
    decode_fails("{\"type\":\"exec\",\"id\":-1,\"argv\":[]}", "id");
    decode_fails("{\"type\":\"exec\",\"id\":4294967296,\"argv\":[]}", "id");
    decode_fails("{\"type\":\"exec\",\"id\":1e300,\"argv\":[]}", "id");
    decode_fails("{\"type\":\"exec\",\"id\":1.5,\"argv\":[]}", "id");
    decode_fails("{\"type\":\"exec\",\"id\":\"1\",\"argv\":[]}", "id");
    decode_fails("{\"type\":\"exec\",\"id\":null,\"argv\":[]}", "id");
    decode_fails("{\"type\":\"exec\",\"id\":1}", "argv");
    decode_fails("{\"type\":\"exec\",\"id\":1,\"argv\":\"get pods\"}", "argv");
    decode_fails("{\"type\":\"exec\",\"id\":1,\"argv\":{\"0\":\"get\"}}", "argv");
    decode_fails("{\"type\":\"exec\",\"id\":1,\"argv\":[\"get\",1]}", "argv");
    decode_fails("{\"type\":\"exec\",\"id\":1,\"argv\":[\"get\",null]}", "argv");
    decode_fails("{\"type\":\"exec\",\"id\":1,\"argv\":[\"get\",[\"x\"]]}", "argv");

    /* 257 args. */
    char *s = malloc(16 + 32 + 4 * (ARGV_MAX_ARGS + 1));
    assert_non_null(s);
    strcpy(s, "{\"type\":\"exec\",\"id\":1,\"argv\":[");
    for (int i = 0; i <= ARGV_MAX_ARGS; i++)
        strcat(s, i ? ",\"a\"" : "\"a\"");
    strcat(s, "]}");
    decode_fails(s, "argv");
    free(s);

    /* A huge argv element goes over the total limit. */
    size_t big = ARGV_MAX_TOTAL + 10;
    s = malloc(big + 64);
    assert_non_null(s);
    strcpy(s, "{\"type\":\"exec\",\"id\":1,\"argv\":[\"");
    size_t o = strlen(s);
    memset(s + o, 'a', big);
    strcpy(s + o + big, "\"]}");
    decode_fails(s, "argv");
    free(s);
}

static void test_decode_other_errors(void **state)
{
    decode_fails("{\"type\":\"command_response\",\"success\":true,\"output\":\"x\"}",
                 "command_id");
    decode_fails("{\"type\":\"command_response\",\"command_id\":null}", "command_id");
    decode_fails("{\"type\":\"credit\",\"bytes\":100}", "id");
    decode_fails("{\"type\":\"credit\",\"id\":0,\"bytes\":100}", "id");
    decode_fails("{\"type\":\"cancel\"}", "id");
    decode_fails("{\"type\":\"exec_end\",\"return_code\":0}", "id");
}

static void test_unknown_type(void **state)
{
    proto_msg m;
    decode_ok("{\"type\":\"future_thing\",\"x\":[1,2,{\"y\":null}],\"id\":\"weird\"}", &m);
    assert_int_equal(m.type, MSG_UNKNOWN);
    assert_string_equal(m.type_name, "future_thing");
    assert_int_equal(m.id, 0);
    proto_msg_free(&m);

    decode_ok("{\"type\":\"\"}", &m);
    assert_int_equal(m.type, MSG_UNKNOWN);
    assert_string_equal(m.type_name, "");
    proto_msg_free(&m);

    /* Type names are case-sensitive. */
    decode_ok("{\"type\":\"EXEC\"}", &m);
    assert_int_equal(m.type, MSG_UNKNOWN);
    proto_msg_free(&m);
}

static void test_decode_ill_typed_optional_fields(void **state)
{
    proto_msg m;
    /* Optional fields of the wrong type read as absent instead of failing. */
    decode_ok("{\"type\":\"exec_end\",\"id\":5,\"return_code\":\"0\",\"truncated\":1,"
              "\"error\":7,\"error_code\":null,\"duration_ms\":-5,\"bytes_out\":\"9\"}",
              &m);
    assert_int_equal(m.id, 5);
    assert_int_equal(m.return_code, -1);
    assert_int_equal(m.truncated, 0);
    assert_string_equal(m.error, "7"); /* numbers render as strings */
    assert_null(m.error_code);
    assert_int_equal(m.duration_ms, 0);
    assert_int_equal(m.bytes, 0);
    proto_msg_free(&m);

    decode_ok("{\"type\":\"connected\",\"cluster_id\":\"c\",\"protocol\":1e9,"
              "\"window\":-1}",
              &m);
    assert_int_equal(m.protocol, 0);
    assert_int_equal(m.window, 0);
    proto_msg_free(&m);

    /* Freeing twice is harmless (the struct is zeroed). */
    proto_msg_free(&m);
}

static void test_decode_length_bounded(void **state)
{
    /* Only len bytes are read; what follows is not part of the frame. */
    const char *s = "{\"type\":\"cancel\",\"id\":12}GARBAGE";
    proto_msg m;
    char err[128];
    assert_int_equal(decode_exact(s, strlen("{\"type\":\"cancel\",\"id\":12}"), &m, err,
                                  sizeof(err)),
                     0);
    assert_int_equal(m.type, MSG_CANCEL);
    assert_int_equal(m.id, 12);
    proto_msg_free(&m);
    /* A frame cut short is an error. */
    assert_int_equal(decode_exact(s, 10, &m, err, sizeof(err)), -1);
}

/* cJSON's allocations while a frame is decoded: the bytes it holds at its
 * peak (ASan's malloc_usable_size tells each block's size). */
static size_t cj_now, cj_peak;
static void *cj_malloc(size_t n)
{
    void *p = malloc(n);
    if (p && (cj_now += malloc_usable_size(p)) > cj_peak)
        cj_peak = cj_now;
    return p;
}
static void cj_free(void *p)
{
    if (p)
        cj_now -= malloc_usable_size(p);
    free(p);
}

/* A frame of len bytes: a message of type with a member "x" that is an
 * array of zeros ("0,0,0,…"), the cheapest text per parsed value. */
static char *frame_of_zeros(const char *type, size_t len, size_t *out_len)
{
    char *s = malloc(len + 64);
    assert_non_null(s);
    size_t o = (size_t)snprintf(s, 64, "{\"type\":\"%s\",\"command_id\":\"c\",\"x\":[0", type);
    while (o + 3 <= len) {
        s[o++] = ',';
        s[o++] = '0';
    }
    s[o++] = ']';
    s[o++] = '}';
    *out_len = o;
    return s;
}

/* An authenticated agent (or a rogue one) sends a message of many tiny
 * values: cJSON spends a 64-byte node on each, 36 times the text, so a
 * legacy agent's 32 MiB frame (AURORA_LEGACY_MAX_FRAME) made the server
 * allocate 1.2 GB and parse for seconds on its event loop.  Such a frame is
 * refused before it is parsed; the messages of the protocol are far below
 * the bound, and a big output in a string costs its own size only. */
static void test_decode_values_bounded(void **state)
{
    (void)state;
    cJSON_Hooks hooks = { cj_malloc, cj_free };
    cJSON_InitHooks(&hooks);
    proto_msg m;
    char err[160] = "";
    size_t len;
    char *s = frame_of_zeros("command_response", 4 * 1024 * 1024, &len);
    cj_now = cj_peak = 0;
    int rc = proto_decode(s, len, &m, err, sizeof(err));
    size_t peak = cj_peak;
    if (rc == 0)
        proto_msg_free(&m);
    free(s);
    if (peak > len)
        fail_msg("decoding a %zu-byte frame of zeros held %zu bytes of cJSON nodes", len, peak);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, "values"));
    /* the same on a v2 session's control message, at its 1 MiB limit */
    s = frame_of_zeros("exec_end", PROTO_MAX_CONTROL, &len);
    assert_int_equal(decode_exact(s, len, &m, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "values"));
    free(s);
    /* up to the bound it decodes; commas, brackets and braces inside
     * strings are text, not values */
    s = frame_of_zeros("heartbeat", 2 * (PROTO_MAX_VALUES - 8), &len);
    decode_ok(s, &m);
    proto_msg_free(&m);
    free(s);
    /* an escaped quote does not end the string: what follows is text */
    s = malloc(2 * PROTO_MAX_VALUES + 64);
    assert_non_null(s);
    len = (size_t)snprintf(s, 64, "{\"type\":\"heartbeat\",\"x\":\"\\\"");
    memset(s + len, ',', 2 * PROTO_MAX_VALUES);
    len += 2 * PROTO_MAX_VALUES;
    len += (size_t)snprintf(s + len, 64, "\"}");
    assert_int_equal(decode_exact(s, len, &m, err, sizeof(err)), 0);
    proto_msg_free(&m);
    free(s);
    size_t big = 4 * 1024 * 1024;
    s = malloc(big + 128);
    assert_non_null(s);
    len = (size_t)snprintf(s, 128, "{\"type\":\"command_response\",\"command_id\":\"c\",\"output\":\"");
    for (size_t i = 0; i < big; i++)
        s[len++] = ",[{"[i % 3];
    len += (size_t)snprintf(s + len, 128, "\",\"return_code\":0}");
    cj_now = cj_peak = 0;
    assert_int_equal(decode_exact(s, len, &m, err, sizeof(err)), 0);
    assert_int_equal(m.output_len, big);
    assert_true(cj_peak < 2 * big); /* the string itself, not a node per byte */
    proto_msg_free(&m);
    free(s);
    cJSON_InitHooks(NULL);
}

/* A register's policy is kept as printed JSON of at most 4 KiB; it was
 * printed whole before its size was checked, and printing turns each raw
 * control byte of a string into six ("\u0001"): a legacy agent's 32 MiB
 * register with such a policy made the server hold 637 MB and spend 2.7 s
 * on its event loop.  It is printed into a 4 KiB buffer instead, and
 * dropped when it does not fit. */
static void test_register_policy_printed_within_its_bound(void **state)
{
    (void)state;
    cJSON_Hooks hooks = { cj_malloc, cj_free };
    cJSON_InitHooks(&hooks);
    size_t big = 4 * 1024 * 1024;
    char *s = malloc(big + 128);
    assert_non_null(s);
    size_t len = (size_t)snprintf(s, 128, "{\"type\":\"register\",\"policy\":{\"mode\":\"");
    memset(s + len, 0x01, big);
    len += big;
    len += (size_t)snprintf(s + len, 128, "\"}}");
    proto_msg m;
    char err[160] = "";
    cj_now = cj_peak = 0;
    assert_int_equal(decode_exact(s, len, &m, err, sizeof(err)), 0);
    size_t peak = cj_peak;
    assert_int_equal(m.type, MSG_REGISTER);
    assert_null(m.policy_json);
    proto_msg_free(&m);
    free(s);
    cJSON_InitHooks(NULL);
    if (peak > 2 * big) /* the tree's copy of the string, not six of it */
        fail_msg("decoding a %zu-byte register held %zu bytes in cJSON", len, peak);
    /* a policy of exactly 4096 bytes printed is kept, one byte more is not */
    for (int extra = 0; extra <= 1; extra++) {
        char frame[8192];
        char mode[4096];
        size_t mlen = 4096 - strlen("{\"mode\":\"\"}") + (size_t)extra;
        memset(mode, 'r', mlen);
        mode[mlen] = '\0';
        snprintf(frame, sizeof(frame), "{\"type\":\"register\",\"policy\":{\"mode\":\"%s\"}}",
                 mode);
        decode_ok(frame, &m);
        if (extra) {
            assert_null(m.policy_json);
        } else {
            assert_non_null(m.policy_json);
            assert_int_equal(strlen(m.policy_json), 4096);
        }
        proto_msg_free(&m);
    }
}

static void test_data_frames(void **state)
{
    const uint32_t ids[] = { 1, 0x01020304u, 0xFFFFFFFFu, 256, 0x80000000u };
    for (size_t k = 0; k < sizeof(ids) / sizeof(ids[0]); k++) {
        for (int ch = PROTO_CHAN_STDOUT; ch <= PROTO_CHAN_STDERR; ch++) {
            unsigned char frame[PROTO_DATA_HDR + 3];
            proto_data_header(frame, ch, ids[k]);
            memcpy(frame + PROTO_DATA_HDR, "a\0b", 3);
            int gch = 0;
            uint32_t gid = 0;
            const unsigned char *pl = NULL;
            size_t plen = 0;
            assert_int_equal(proto_data_parse(frame, sizeof(frame), &gch, &gid, &pl, &plen), 0);
            assert_int_equal(gch, ch);
            assert_int_equal(gid, ids[k]);
            assert_ptr_equal(pl, frame + PROTO_DATA_HDR);
            assert_int_equal(plen, 3);
            assert_memory_equal(pl, "a\0b", 3);
        }
    }
    /* Big-endian on the wire. */
    unsigned char hdr[PROTO_DATA_HDR];
    proto_data_header(hdr, PROTO_CHAN_STDERR, 0x01020304u);
    const unsigned char want[] = { 2, 1, 2, 3, 4 };
    assert_memory_equal(hdr, want, 5);
    proto_data_header(hdr, PROTO_CHAN_STDOUT, 0xFFFFFFFFu);
    const unsigned char want2[] = { 1, 0xff, 0xff, 0xff, 0xff };
    assert_memory_equal(hdr, want2, 5);
}

static void test_data_frame_errors(void **state)
{
    int ch;
    uint32_t id;
    const unsigned char *pl;
    size_t plen;
    unsigned char *f = calloc(1, PROTO_DATA_HDR + PROTO_MAX_CHUNK + 1);
    assert_non_null(f);
    proto_data_header(f, PROTO_CHAN_STDOUT, 5);
    for (size_t len = 0; len < PROTO_DATA_HDR; len++)
        assert_int_equal(proto_data_parse(f, len, &ch, &id, &pl, &plen), -1);
    /* Zero-length payload is fine. */
    assert_int_equal(proto_data_parse(f, PROTO_DATA_HDR, &ch, &id, &pl, &plen), 0);
    assert_int_equal(plen, 0);
    assert_int_equal(id, 5);
    /* Largest chunk is fine, one more byte is not. */
    assert_int_equal(proto_data_parse(f, PROTO_DATA_HDR + PROTO_MAX_CHUNK, &ch, &id, &pl, &plen),
                     0);
    assert_int_equal(plen, PROTO_MAX_CHUNK);
    assert_int_equal(
        proto_data_parse(f, PROTO_DATA_HDR + PROTO_MAX_CHUNK + 1, &ch, &id, &pl, &plen), -1);
    /* id 0. */
    proto_data_header(f, PROTO_CHAN_STDOUT, 0);
    assert_int_equal(proto_data_parse(f, PROTO_DATA_HDR + 1, &ch, &id, &pl, &plen), -1);
    /* Bad channels. */
    const int bad[] = { 0, 3, 255, 'x' };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        proto_data_header(f, bad[i], 9);
        assert_int_equal(proto_data_parse(f, PROTO_DATA_HDR + 1, &ch, &id, &pl, &plen), -1);
    }
    free(f);
}

static void test_encoders_escape(void **state)
{
    /* Strings with JSON metacharacters survive intact. */
    const char *nasty = "a\"b\\c\n\r\t\x01/</script>";
    char *s = proto_enc_heartbeat(nasty);
    proto_msg m;
    decode_ok(s, &m);
    assert_string_equal(m.cluster_id, nasty);
    proto_msg_free(&m);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_nul_refused),
        cmocka_unit_test(test_decode_nul_in_legacy_response),
        cmocka_unit_test(test_connected_v1),
        cmocka_unit_test(test_connected_v2),
        cmocka_unit_test(test_register),
        cmocka_unit_test(test_heartbeat),
        cmocka_unit_test(test_kubectl_command),
        cmocka_unit_test(test_command_response),
        cmocka_unit_test(test_command_response_binary_output),
        cmocka_unit_test(test_command_response_into_fits),
        cmocka_unit_test(test_command_response_into_bounded),
        cmocka_unit_test(test_command_id_numeric),
        cmocka_unit_test(test_exec),
        cmocka_unit_test(test_exec_end),
        cmocka_unit_test(test_secret_messages_leave_no_copies),
        cmocka_unit_test(test_exec_cloud),
        cmocka_unit_test(test_decode_exec_env_errors),
        cmocka_unit_test(test_cancel_credit),
        cmocka_unit_test(test_decode_errors),
        cmocka_unit_test(test_decode_exec_errors),
        cmocka_unit_test(test_decode_other_errors),
        cmocka_unit_test(test_unknown_type),
        cmocka_unit_test(test_decode_ill_typed_optional_fields),
        cmocka_unit_test(test_decode_length_bounded),
        cmocka_unit_test(test_decode_values_bounded),
        cmocka_unit_test(test_register_policy_printed_within_its_bound),
        cmocka_unit_test(test_data_frames),
        cmocka_unit_test(test_data_frame_errors),
        cmocka_unit_test(test_encoders_escape),
        cmocka_unit_test(test_credentials_in_argv_are_wiped_when_freed),
    };
    return cmocka_run_group_tests_name("common_proto", tests, NULL, NULL);
}
