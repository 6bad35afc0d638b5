/* proto.c — JSON control messages and binary data frames; see proto.h and
 * docs/protocol.md. */
#include "proto.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "json_text.h"
#include "secret.h"

static const struct {
    const char *name;
    proto_type type;
} type_names[] = {
    { "connected", MSG_CONNECTED },
    { "register", MSG_REGISTER },
    { "heartbeat", MSG_HEARTBEAT },
    { "heartbeat_ack", MSG_HEARTBEAT_ACK },
    { "kubectl_command", MSG_KUBECTL_COMMAND },
    { "command_response", MSG_COMMAND_RESPONSE },
    { "exec", MSG_EXEC },
    { "exec_end", MSG_EXEC_END },
    { "cancel", MSG_CANCEL },
    { "credit", MSG_CREDIT },
};

int proto_env_name_ok(const char *name, size_t len)
{
    if (!name || len == 0 || len > PROTO_MAX_ENV_NAME || (name[0] >= '0' && name[0] <= '9'))
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((name[i] >= 'A' && name[i] <= 'Z') || (name[i] >= '0' && name[i] <= '9') ||
              name[i] == '_'))
            return 0;
    return 1;
}

int proto_program_ok(const char *p)
{
    size_t n = p ? strlen(p) : 0;
    if (n == 0 || n > PROTO_MAX_PROGRAM || p[0] == '.' || p[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') ||
              (p[i] >= '0' && p[i] <= '9') || p[i] == '.' || p[i] == '_' || p[i] == '-'))
            return 0;
    return 1;
}

void proto_free_secret(char *json)
{
    if (!json)
        return;
    secret_free(json);
}


static void set_err(char *err, size_t errlen, const char *fmt, const char *arg)
{
    if (err && errlen)
        snprintf(err, errlen, fmt, arg);
}

/* Copies a string field; numbers are accepted and rendered (legacy ids). */
static char *dup_field(const cJSON *o, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsString(it) && it->valuestring)
        return strdup(it->valuestring);
    if (cJSON_IsNumber(it)) {
        char tmp[32];
        snprintf(tmp, sizeof(tmp), "%.0f", it->valuedouble);
        return strdup(tmp);
    }
    return NULL;
}

/* An agent instance id: 8-64 of A-Z a-z 0-9 _ - (it reaches logs and Redis). */
static int instance_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 8 || n > 64)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-'))
            return 0;
    return 1;
}

static int num_field(const cJSON *o, const char *key, double *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
        return 0;
    *out = it->valuedouble;
    return 1;
}

static int bool_field(const cJSON *o, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsBool(it))
        return cJSON_IsTrue(it) ? 1 : 0;
    return -1;
}

static int id_field(const cJSON *o, uint32_t *id)
{
    double d;
    if (!num_field(o, "id", &d) || d < 1 || d > 4294967295.0 || d != floor(d))
        return -1;
    *id = (uint32_t)d;
    return 0;
}

void proto_msg_free(proto_msg *m)
{
    free(m->type_name);
    free(m->cluster_id);
    free(m->cluster_name);
    free(m->agent_version);
    free(m->command_id);
    secret_free(m->command); /* legacy kubectl_command: may carry credentials */
    free(m->output);
    free(m->error);
    free(m->error_code);
    free(m->kind);
    free(m->policy_json);
    free(m->instance);
    free(m->program);
    for (int i = 0; m->env && i < m->nenv; i++) {
        secret_free(m->env[i]);
    }
    free(m->env);
    argv_free(&m->argv);
    memset(m, 0, sizeof(*m));
}

int proto_decode(const char *json, size_t len, proto_msg *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof(*m));
    m->success = -1;
    m->return_code = -1;
    /* A NUL would silently cut an argv element or an id (see json_text.h).
     * Only a command_response may carry one, as \u0000 in its output or
     * error: kubectl output may hold NUL bytes (`cat /proc/1/cmdline`) and
     * the Python agent's json.dumps escapes them.  Each is read as U+FFFD,
     * as the C agent sends them in that dialect; anything else is refused. */
    /* Counted before cJSON builds its tree: a node per value, 64 bytes for
     * the two of "0,", made a legacy agent's 32 MiB frame a 1.2 GB tree,
     * parsed for seconds on the server's event loop.  Every message of the
     * protocol holds a few hundred values at most (an exec's 256 arguments
     * and 32 variables, a register's policy of 2 x 128 entries). */
    if (json && json_text_values(json, len) > PROTO_MAX_VALUES) {
        set_err(err, errlen, "%s", "frame holds more values than any message of the protocol");
        return -1;
    }
    char *nul_copy = NULL;
    if (json && json_text_has_nul(json, len)) {
        nul_copy = malloc(len ? len : 1);
        if (!nul_copy) {
            set_err(err, errlen, "%s", "out of memory");
            return -1;
        }
        memcpy(nul_copy, json, len);
        if (json_text_nul_to_replacement(nul_copy, len) < 0) {
            secret_free_n(nul_copy, len);
            set_err(err, errlen, "%s", "frame holds a NUL byte or a \\u0000 escape");
            return -1;
        }
        json = nul_copy;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        secret_free_n(nul_copy, len);
        set_err(err, errlen, "%s", "frame is not valid JSON");
        return -1;
    }
    int rc = -1;
    /* One frame, one object: anything but whitespace after it is malformed. */
    for (; end && end < json + len; end++)
        if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n') {
            set_err(err, errlen, "%s", "trailing data after the JSON object");
            goto out;
        }
    if (!cJSON_IsObject(root)) {
        set_err(err, errlen, "%s", "frame is not a JSON object");
        goto out;
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "type");
    if (!cJSON_IsString(t) || !t->valuestring) {
        set_err(err, errlen, "%s", "message has no string 'type'");
        goto out;
    }
    if (nul_copy && strcmp(t->valuestring, "command_response")) {
        set_err(err, errlen, "%s", "frame holds a NUL byte or a \\u0000 escape");
        goto out;
    }
    m->type_name = strdup(t->valuestring);
    if (!m->type_name)
        goto oom;
    for (size_t i = 0; i < sizeof(type_names) / sizeof(type_names[0]); i++)
        if (!strcmp(type_names[i].name, t->valuestring))
            m->type = type_names[i].type;

    m->cluster_id = dup_field(root, "cluster_id");
    m->cluster_name = dup_field(root, "cluster_name");
    m->agent_version = dup_field(root, "agent_version");
    m->command_id = dup_field(root, "command_id");
    m->command = dup_field(root, "command");
    m->error = dup_field(root, "error");
    m->error_code = dup_field(root, "error_code");
    m->kind = dup_field(root, "kind");
    const cJSON *pol = cJSON_GetObjectItemCaseSensitive(root, "policy");
    if (cJSON_IsObject(pol)) {
        /* Printed into a bounded buffer, not whole and then measured: a
         * raw control byte of a string prints as six ("\u0001"), so a
         * legacy agent's 32 MiB register made a 192 MiB text (and cJSON's
         * doubling buffers about 600 MB) to be thrown away.  cJSON asks for
         * a few bytes more than it writes (its manual: 5). */
        char printed[PROTO_MAX_POLICY + 6];
        if (cJSON_PrintPreallocated((cJSON *)pol, printed, (int)sizeof(printed), 0) &&
            strlen(printed) <= PROTO_MAX_POLICY) {
            m->policy_json = strdup(printed);
            if (!m->policy_json)
                goto oom;
        }
    }
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(root, "output");
    if (cJSON_IsString(out) && out->valuestring) {
        m->output_len = strlen(out->valuestring);
        m->output = strdup(out->valuestring);
        if (!m->output)
            goto oom;
    }
    m->success = bool_field(root, "success");
    m->truncated = bool_field(root, "truncated") == 1;
    double d;
    if (num_field(root, "return_code", &d) && d >= -1000000 && d <= 1000000) {
        m->return_code = (int)d;
        m->has_return_code = 1;
    }
    if (num_field(root, "protocol", &d) && d >= 0 && d <= 1000)
        m->protocol = (int)d;
    if (num_field(root, "timeout", &d) && d > 0 && d < 1e7)
        m->timeout = d;
    if (num_field(root, "max_output", &d) && d > 0 && d < 9e15)
        m->max_output = (int64_t)d;
    if (num_field(root, "hold_output", &d) && d > 0 && d < 9e15)
        m->hold_output = (int64_t)d;
    if (num_field(root, "bytes", &d) && d >= 0 && d < 9e15)
        m->bytes = (int64_t)d;
    if (num_field(root, "bytes_out", &d) && d >= 0 && d < 9e15)
        m->bytes = (int64_t)d;
    if (num_field(root, "window", &d) && d > 0 && d < 9e15)
        m->window = (int64_t)d;
    if (num_field(root, "duration_ms", &d) && d >= 0 && d < 9e15)
        m->duration_ms = (int64_t)d;
    if (num_field(root, "max_concurrent", &d) && d >= 0 && d <= 100000)
        m->max_concurrent = (int)d;
    if (m->type == MSG_REGISTER) {
        const cJSON *in = cJSON_GetObjectItemCaseSensitive(root, "instance");
        if (cJSON_IsString(in) && instance_ok(in->valuestring)) {
            m->instance = strdup(in->valuestring);
            if (!m->instance)
                goto oom;
        }
        if (num_field(root, "connection", &d) && d >= 1 && d < 9e15)
            m->connection = (int64_t)d;
    }

    switch (m->type) {
    case MSG_COMMAND_RESPONSE:
        if (!m->command_id) {
            set_err(err, errlen, "%s", "command_response without command_id");
            goto out;
        }
        break;
    case MSG_KUBECTL_COMMAND:
        if (!m->command_id || !m->command) {
            set_err(err, errlen, "%s", "kubectl_command without command_id or command");
            goto out;
        }
        break;
    case MSG_EXEC: {
        if (id_field(root, &m->id) < 0) {
            set_err(err, errlen, "%s", "exec without a valid id");
            goto out;
        }
        const cJSON *av = cJSON_GetObjectItemCaseSensitive(root, "argv");
        int n = cJSON_IsArray(av) ? cJSON_GetArraySize(av) : -1;
        if (n < 0 || n > ARGV_MAX_ARGS) {
            set_err(err, errlen, "%s", "exec argv must be an array of at most 256 strings");
            goto out;
        }
        const char **strs = calloc((size_t)n + 1, sizeof(char *));
        if (!strs)
            goto oom;
        int i = 0;
        const cJSON *el;
        cJSON_ArrayForEach(el, av) strs[i++] = cJSON_IsString(el) ? el->valuestring : NULL;
        char aerr[128] = "";
        /* An empty argv is legal here (plain `kubectl`); argv_from_strings wants >0. */
        int arc = n == 0 ? 0 : argv_from_strings(strs, n, &m->argv, aerr, sizeof(aerr));
        free(strs);
        if (arc < 0) {
            set_err(err, errlen, "exec argv: %s", aerr);
            goto out;
        }
        const cJSON *prog = cJSON_GetObjectItemCaseSensitive(root, "program");
        if (prog && !cJSON_IsNull(prog)) {
            if (!cJSON_IsString(prog) || !proto_program_ok(prog->valuestring)) {
                set_err(err, errlen, "%s", "exec program must be a bare executable name");
                goto out;
            }
            m->program = strdup(prog->valuestring);
            if (!m->program)
                goto oom;
        }
        if (m->kind && !strcmp(m->kind, PROTO_KIND_CLOUD_EXEC) && !m->program) {
            set_err(err, errlen, "%s", "cloud_exec without program");
            goto out;
        }
        const cJSON *env = cJSON_GetObjectItemCaseSensitive(root, "env");
        if (env && !cJSON_IsNull(env)) {
            int ne = cJSON_IsObject(env) ? cJSON_GetArraySize(env) : -1;
            if (ne < 0 || ne > PROTO_MAX_ENV) {
                set_err(err, errlen, "%s", "exec env must be an object of at most 32 strings");
                goto out;
            }
            m->env = calloc((size_t)ne + 1, sizeof(char *));
            if (!m->env)
                goto oom;
            const cJSON *ev;
            cJSON_ArrayForEach(ev, env)
            {
                const char *name = ev->string;
                if (!name || !proto_env_name_ok(name, strlen(name))) {
                    set_err(err, errlen, "%s", "exec env names must be [A-Z0-9_]");
                    goto out;
                }
                if (!cJSON_IsString(ev) || !ev->valuestring ||
                    strlen(ev->valuestring) > PROTO_MAX_ENV_VALUE) {
                    set_err(err, errlen, "exec env %s must be a string of at most 8 KiB", name);
                    goto out;
                }
                for (int k = 0; k < m->nenv; k++)
                    if (!strncmp(m->env[k], name, strlen(name)) && m->env[k][strlen(name)] == '=') {
                        set_err(err, errlen, "exec env %s given twice", name);
                        goto out;
                    }
                size_t kvlen = strlen(name) + strlen(ev->valuestring) + 2;
                char *kv = malloc(kvlen);
                if (!kv)
                    goto oom;
                snprintf(kv, kvlen, "%s=%s", name, ev->valuestring);
                m->env[m->nenv++] = kv;
            }
        }
        break;
    }
    case MSG_EXEC_END:
    case MSG_CANCEL:
    case MSG_CREDIT:
        if (id_field(root, &m->id) < 0) {
            set_err(err, errlen, "%s message without a valid id", m->type_name);
            goto out;
        }
        break;
    default:
        break;
    }
    rc = 0;
    goto out;
oom:
    set_err(err, errlen, "%s", "out of memory");
out:
    /* env values are credentials, argv may carry some; a frame refused
     * before its type was read may be either */
    if (rc < 0 || m->type == MSG_EXEC || m->type == MSG_KUBECTL_COMMAND)
        secret_json_wipe(root);
    cJSON_Delete(root);
    secret_free_n(nul_copy, len); /* it may be any message: wiped like one */
    if (rc < 0)
        proto_msg_free(m);
    return rc;
}

/* ---- encoders ------------------------------------------------------------ */

static char *finish(cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

/* finish for a message that carries a command line or credentials: the
 * tree's strings are wiped and no outgrown print buffer is left unwiped. */
static char *finish_secret(cJSON *o)
{
    char *s = secret_json_print(o);
    secret_json_free(o);
    return s;
}

static cJSON *typed(const char *type)
{
    cJSON *o = cJSON_CreateObject();
    if (o)
        cJSON_AddStringToObject(o, "type", type);
    return o;
}

char *proto_enc_connected(const char *cluster_id, const char *cluster_name, int protocol,
                          int64_t window)
{
    cJSON *o = typed("connected");
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "cluster_id", cluster_id);
    cJSON_AddStringToObject(o, "cluster_name", cluster_name ? cluster_name : "");
    if (protocol >= 2) {
        cJSON_AddNumberToObject(o, "protocol", protocol);
        cJSON_AddNumberToObject(o, "window", (double)window);
    }
    return finish(o);
}

char *proto_enc_register(const char *cluster_id, const char *agent_version, int protocol,
                         int max_concurrent)
{
    cJSON *o = typed("register");
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "cluster_id", cluster_id);
    cJSON_AddStringToObject(o, "agent_version", agent_version ? agent_version : "");
    if (protocol >= 2) {
        cJSON_AddNumberToObject(o, "protocol", protocol);
        cJSON_AddNumberToObject(o, "max_concurrent", max_concurrent);
    }
    return finish(o);
}

char *proto_enc_heartbeat(const char *cluster_id)
{
    cJSON *o = typed("heartbeat");
    if (o)
        cJSON_AddStringToObject(o, "cluster_id", cluster_id);
    return finish(o);
}

char *proto_enc_heartbeat_ack(void) { return finish(typed("heartbeat_ack")); }

char *proto_enc_kubectl_command(const char *command_id, const char *command, double timeout)
{
    cJSON *o = typed("kubectl_command");
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "command_id", command_id);
    cJSON_AddStringToObject(o, "command", command);
    cJSON_AddNumberToObject(o, "timeout", timeout);
    return finish_secret(o);
}

char *proto_enc_command_response(const char *command_id, int success, const char *output,
                                 size_t output_len, const char *error, int return_code)
{
    cJSON *o = typed("command_response");
    if (!o)
        return NULL;
    char *clean = utf8_sanitize(output ? output : "", output ? output_len : 0, NULL);
    if (!clean) {
        cJSON_Delete(o);
        return NULL;
    }
    cJSON_AddStringToObject(o, "command_id", command_id);
    cJSON_AddBoolToObject(o, "success", success);
    cJSON_AddStringToObject(o, "output", clean);
    cJSON_AddStringToObject(o, "error", error ? error : "");
    cJSON_AddNumberToObject(o, "return_code", return_code);
    free(clean);
    return finish(o);
}

/* A JSON text being written: into p when not NULL, else only counted. */
typedef struct {
    char *p;
    size_t len;
} json_out;

static void out_put(json_out *w, const void *s, size_t n)
{
    if (w->p)
        memcpy(w->p + w->len, s, n);
    w->len += n;
}

/* The character at p (n > 0 bytes left) as it stands inside a JSON string,
 * into e: cJSON's escapes (so a response reads as the cJSON encoder's), and
 * U+FFFD for a byte that is not valid UTF-8 or is NUL (as utf8_sanitize).
 * Its length; *used: the input bytes it stands for. */
static size_t escape_char(const unsigned char *p, size_t n, char e[6], size_t *used)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char c = p[0];
    *used = 1;
    if (c == 0 || c >= 0x80) {
        size_t l = utf8_seq_len(p, n);
        if (!l) {
            memcpy(e, "\xEF\xBF\xBD", 3);
            return 3;
        }
        memcpy(e, p, l);
        *used = l;
        return l;
    }
    char short_esc = c == '"' ? '"' : c == '\\' ? '\\' : c == '\b' ? 'b' : c == '\f' ? 'f'
                   : c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : 0;
    if (short_esc) {
        e[0] = '\\';
        e[1] = short_esc;
        return 2;
    }
    if (c < 0x20) {
        memcpy(e, "\\u00", 4);
        e[4] = hex[c >> 4];
        e[5] = hex[c & 15];
        return 6;
    }
    e[0] = (char)c;
    return 1;
}

/* s[0..n) escaped, as far as budget bytes of it go, whole characters only.
 * Returns the input bytes written. */
static size_t out_escaped(json_out *w, const char *s, size_t n, size_t budget)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, left = budget;
    while (i < n) {
        /* a run that is copied as it is */
        size_t run = i;
        while (run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\')
            run++;
        size_t take = run - i < left ? run - i : left;
        out_put(w, p + i, take);
        i += take;
        left -= take;
        if (i < run || i >= n)
            break;
        char e[6];
        size_t used;
        size_t el = escape_char(p + i, n - i, e, &used);
        if (el > left)
            break;
        out_put(w, e, el);
        i += used;
        left -= el;
    }
    return i;
}

static size_t escaped_len(const char *s, size_t n)
{
    json_out w = {NULL, 0};
    out_escaped(&w, s, n, SIZE_MAX);
    return w.len;
}

size_t proto_command_response_into(char *out, size_t cap, const char *command_id, int success,
                                   const char *output, size_t output_len, const char *error,
                                   size_t error_len, const char *note, int force_note,
                                   int return_code, int *cut)
{
    static const char head[] = "{\"type\":\"command_response\",\"command_id\":\"";
    static const char err_key[] = "\",\"error\":\"";
    char mid[48], tail[48];
    int ml = snprintf(mid, sizeof(mid), "\",\"success\":%s,\"output\":\"",
                      success ? "true" : "false");
    int tl = snprintf(tail, sizeof(tail), "\",\"return_code\":%d}", return_code);
    if (cut)
        *cut = 0;
    if (!command_id || ml < 0 || tl < 0)
        return 0;
    if (!output)
        output_len = 0;
    if (!error)
        error_len = 0;
    size_t cid_len = strlen(command_id), cid_esc = escaped_len(command_id, cid_len);
    size_t fixed = sizeof(head) - 1 + cid_esc + (size_t)ml + sizeof(err_key) - 1 + (size_t)tl;
    if (fixed > cap)
        return 0;
    size_t out_esc = escaped_len(output, output_len), err_esc = escaped_len(error, error_len);
    size_t out_keep = out_esc, err_keep = err_esc, note_part = 0;
    int cutting = force_note || out_esc > cap - fixed || err_esc > cap - fixed - out_esc;
    if (cutting) {
        /* the note on a line of its own ("\n": 2 bytes escaped), if it fits */
        if (note)
            note_part = 2 + escaped_len(note, strlen(note));
        if (note_part > cap - fixed)
            note_part = 0;
        size_t avail = cap - fixed - note_part;
        /* the error's head first (it says why a command failed), then as
         * much output as fits, then the rest of the error */
        err_keep = err_esc < PROTO_LEGACY_ERROR_KEEP ? err_esc : PROTO_LEGACY_ERROR_KEEP;
        if (err_keep > avail)
            err_keep = avail;
        out_keep = out_esc < avail - err_keep ? out_esc : avail - err_keep;
        err_keep = err_esc < avail - out_keep ? err_esc : avail - out_keep;
        if (cut)
            *cut = 1;
    }
    json_out w = {out, 0};
    out_put(&w, head, sizeof(head) - 1);
    out_escaped(&w, command_id, cid_len, SIZE_MAX);
    out_put(&w, mid, (size_t)ml);
    out_escaped(&w, output, output_len, out_keep);
    out_put(&w, err_key, sizeof(err_key) - 1);
    size_t err_start = w.len;
    out_escaped(&w, error, error_len, err_keep);
    if (note_part) {
        if (w.len > err_start)
            out_put(&w, "\\n", 2);
        out_escaped(&w, note, strlen(note), SIZE_MAX);
    }
    out_put(&w, tail, (size_t)tl);
    return w.len;
}

char *proto_enc_exec(uint32_t id, const char *kind, const argv_t *argv, double timeout,
                     int64_t max_output)
{
    return proto_enc_exec_env(id, kind, NULL, argv, NULL, 0, timeout, max_output, 0);
}

char *proto_enc_exec_env(uint32_t id, const char *kind, const char *program, const argv_t *argv,
                         const char *const *env, int nenv, double timeout, int64_t max_output,
                         int64_t hold_output)
{
    if ((program && !proto_program_ok(program)) || nenv < 0 || nenv > PROTO_MAX_ENV ||
        (nenv && !env))
        return NULL;
    cJSON *o = typed("exec");
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "id", id);
    cJSON_AddStringToObject(o, "kind", kind);
    if (program)
        cJSON_AddStringToObject(o, "program", program);
    cJSON *arr = cJSON_AddArrayToObject(o, "argv");
    for (int i = 0; arr && i < argv->c; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(argv->v[i]));
    if (nenv) {
        cJSON *eo = cJSON_AddObjectToObject(o, "env");
        for (int i = 0; i < nenv; i++) {
            const char *eq = env[i] ? strchr(env[i], '=') : NULL;
            size_t nl = eq ? (size_t)(eq - env[i]) : 0;
            char name[PROTO_MAX_ENV_NAME + 1];
            if (!eo || !eq || !proto_env_name_ok(env[i], nl) ||
                strlen(eq + 1) > PROTO_MAX_ENV_VALUE) {
                secret_json_free(o);
                return NULL;
            }
            memcpy(name, env[i], nl);
            name[nl] = '\0';
            if (cJSON_GetObjectItemCaseSensitive(eo, name)) {
                secret_json_free(o);
                return NULL;
            }
            cJSON_AddStringToObject(eo, name, eq + 1);
        }
    }
    cJSON_AddNumberToObject(o, "timeout", timeout);
    cJSON_AddNumberToObject(o, "max_output", (double)max_output);
    if (hold_output > 0)
        cJSON_AddNumberToObject(o, "hold_output", (double)hold_output);
    return finish_secret(o);
}

char *proto_enc_exec_end(uint32_t id, int return_code, const char *error,
                         const char *error_code, int truncated, int64_t duration_ms,
                         int64_t bytes_out)
{
    cJSON *o = typed("exec_end");
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "id", id);
    cJSON_AddNumberToObject(o, "return_code", return_code);
    cJSON_AddStringToObject(o, "error", error ? error : "");
    if (error_code && *error_code)
        cJSON_AddStringToObject(o, "error_code", error_code);
    else
        cJSON_AddNullToObject(o, "error_code");
    cJSON_AddBoolToObject(o, "truncated", truncated);
    cJSON_AddNumberToObject(o, "duration_ms", (double)duration_ms);
    cJSON_AddNumberToObject(o, "bytes_out", (double)bytes_out);
    return finish(o);
}

char *proto_enc_cancel(uint32_t id)
{
    cJSON *o = typed("cancel");
    if (o)
        cJSON_AddNumberToObject(o, "id", id);
    return finish(o);
}

char *proto_enc_credit(uint32_t id, int64_t bytes)
{
    cJSON *o = typed("credit");
    if (o) {
        cJSON_AddNumberToObject(o, "id", id);
        cJSON_AddNumberToObject(o, "bytes", (double)bytes);
    }
    return finish(o);
}

/* ---- binary data frames -------------------------------------------------- */

void proto_data_header(unsigned char hdr[PROTO_DATA_HDR], int channel, uint32_t id)
{
    hdr[0] = (unsigned char)channel;
    hdr[1] = (unsigned char)(id >> 24);
    hdr[2] = (unsigned char)(id >> 16);
    hdr[3] = (unsigned char)(id >> 8);
    hdr[4] = (unsigned char)id;
}

int proto_data_parse(const unsigned char *frame, size_t len, int *channel, uint32_t *id,
                     const unsigned char **payload, size_t *plen)
{
    if (len < PROTO_DATA_HDR || len > PROTO_DATA_HDR + PROTO_MAX_CHUNK)
        return -1;
    if (frame[0] != PROTO_CHAN_STDOUT && frame[0] != PROTO_CHAN_STDERR)
        return -1;
    uint32_t v = (uint32_t)frame[1] << 24 | (uint32_t)frame[2] << 16 | (uint32_t)frame[3] << 8 |
                 frame[4];
    if (v == 0)
        return -1;
    *channel = frame[0];
    *id = v;
    *payload = frame + PROTO_DATA_HDR;
    *plen = len - PROTO_DATA_HDR;
    return 0;
}
