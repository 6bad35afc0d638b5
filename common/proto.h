/* proto.h — the agent <-> server wire protocol (see docs/protocol.md).
 *
 * Two dialects over one WebSocket endpoint (/kubectl-agent):
 *  - legacy: what the deployed Python agent speaks (no subprotocol header).
 *    Text frames, one JSON object each, `type` names the message.
 *  - v2 ("aurora-tunnel.v2" subprotocol): same JSON control messages plus
 *    exec/exec_end/cancel/credit, and binary data frames carrying output:
 *        byte 0      channel (1 = stdout, 2 = stderr)
 *        bytes 1..4  request id, big-endian uint32 (never 0)
 *        bytes 5..   payload (at most PROTO_MAX_CHUNK bytes)
 *    Per-request credit-based flow control: the agent may have at most
 *    `window` payload bytes outstanding per request; the server returns
 *    credit as it consumes output.
 */
#ifndef AURORA_PROTO_H
#define AURORA_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include "argv.h"

#define PROTO_SUBPROTOCOL_V2 "aurora-tunnel.v2"
#define PROTO_PATH "/kubectl-agent"
#define PROTO_CHAN_STDOUT 1
#define PROTO_CHAN_STDERR 2
#define PROTO_DATA_HDR 5
#define PROTO_MAX_CHUNK (32 * 1024)
#define PROTO_DEFAULT_WINDOW (256 * 1024)
#define PROTO_MAX_CONTROL (1024 * 1024) /* largest v2 JSON control message */
/* most values (objects, arrays, strings, numbers, literals) one JSON message
 * may hold: see proto_decode */
#define PROTO_MAX_VALUES 4096
/* a register's "policy", printed as JSON: larger, it is not kept */
#define PROTO_MAX_POLICY 4096
/* exec "env" (cloud_exec credentials): at most PROTO_MAX_ENV variables,
 * names [A-Z0-9_] (not starting with a digit, at most PROTO_MAX_ENV_NAME
 * bytes), values strings of at most PROTO_MAX_ENV_VALUE bytes. */
#define PROTO_MAX_ENV 32
#define PROTO_MAX_ENV_NAME 128
#define PROTO_MAX_ENV_VALUE (8 * 1024)
/* exec "program": a bare executable name ([A-Za-z0-9._-], no '/'). */
#define PROTO_MAX_PROGRAM 64
#define PROTO_KIND_KUBECTL "kubectl"
#define PROTO_KIND_CLOUD_EXEC "cloud_exec"

/* WebSocket close codes/reasons the existing agents know. */
#define PROTO_CLOSE_POLICY 1008
#define PROTO_REASON_INVALID "Invalid token"
#define PROTO_REASON_REVOKED "Token revoked"
#define PROTO_REASON_EXPIRED "Token expired"

typedef enum {
    MSG_UNKNOWN = 0,
    MSG_CONNECTED,        /* S->A */
    MSG_REGISTER,         /* A->S */
    MSG_HEARTBEAT,        /* A->S */
    MSG_HEARTBEAT_ACK,    /* S->A */
    MSG_KUBECTL_COMMAND,  /* S->A legacy */
    MSG_COMMAND_RESPONSE, /* A->S legacy */
    MSG_EXEC,             /* S->A v2 */
    MSG_EXEC_END,         /* A->S v2 */
    MSG_CANCEL,           /* S->A v2 */
    MSG_CREDIT,           /* S->A v2 */
} proto_type;

/* Error codes carried in exec_end.error_code and in API results. */
#define EC_TIMEOUT "TIMEOUT"
#define EC_OUTPUT_LIMIT "OUTPUT_LIMIT"
#define EC_CANCELLED "CANCELLED"
#define EC_SPAWN_FAILED "SPAWN_FAILED"
#define EC_BUSY "AGENT_BUSY"
#define EC_SHUTTING_DOWN "AGENT_SHUTTING_DOWN"
#define EC_BAD_REQUEST "BAD_REQUEST"

/* A decoded JSON control message.  Absent fields are NULL / 0 / -1 as noted.
 * Strings are owned by the message (proto_msg_free). */
typedef struct {
    proto_type type;
    char *type_name;     /* as received, for "unknown type" errors */
    char *cluster_id;
    char *cluster_name;
    char *agent_version;
    char *command_id;    /* legacy */
    char *command;       /* legacy: kubectl args as one string */
    char *output;        /* legacy command_response */
    size_t output_len;
    char *error;
    char *error_code;
    char *kind;          /* v2 exec: "kubectl" (also when absent) or "cloud_exec" */
    char *program;       /* v2 exec: executable name; required for cloud_exec, NULL if absent */
    char **env;          /* v2 exec: "NAME=value" strings (NULL-terminated), NULL if none;
                            values are credentials: proto_msg_free wipes them */
    int nenv;
    argv_t argv;         /* v2 exec */
    int success;         /* -1 if absent */
    int return_code;     /* -1 if absent */
    int has_return_code; /* 1 if return_code was given (a legacy agent's may be -1) */
    int truncated;
    int protocol;        /* connected: 1 legacy, 2 v2; 0 if absent */
    uint32_t id;         /* v2 request id; 0 if absent */
    double timeout;      /* seconds; 0 if absent */
    int64_t max_output;  /* bytes; 0 if absent */
    int64_t hold_output; /* v2 exec: output bytes the agent may keep back and send with
                            exec_end (the caller takes the result only whole); 0 if absent */
    int64_t bytes;       /* credit bytes / exec_end bytes_out */
    int64_t window;      /* connected: initial window */
    int64_t duration_ms;
    int max_concurrent;  /* register */
    char *policy_json;   /* register: the agent's command policy object, compact JSON
                            (NULL if absent, not an object, or over 4 KiB) */
    char *instance;      /* register (optional): the agent process's random id, 8-64 of
                            A-Z a-z 0-9 _ - (NULL if absent or not so) */
    int64_t connection;  /* register (optional): that process's connection number, counted
                            from 1; 0 if absent */
} proto_msg;

/* Parses one text frame.  0 on success (type may be MSG_UNKNOWN: check it);
 * -1 with a message in err for non-JSON, non-object, missing/ill-typed fields
 * required by the known type. */
int proto_decode(const char *json, size_t len, proto_msg *m, char *err, size_t errlen);
void proto_msg_free(proto_msg *m);

/* Encoders return a malloc'd NUL-terminated JSON text, NULL on OOM. */
char *proto_enc_connected(const char *cluster_id, const char *cluster_name, int protocol,
                          int64_t window);
char *proto_enc_register(const char *cluster_id, const char *agent_version, int protocol,
                         int max_concurrent);
char *proto_enc_heartbeat(const char *cluster_id);
char *proto_enc_heartbeat_ack(void);
/* The command line may carry a credential (--token=…): release the text
 * with proto_free_secret. */
char *proto_enc_kubectl_command(const char *command_id, const char *command, double timeout);
/* output may hold any bytes: it is made valid UTF-8 (lossy) for the legacy dialect. */
char *proto_enc_command_response(const char *command_id, int success, const char *output,
                                 size_t output_len, const char *error, int return_code);
/* The legacy command_response within cap bytes: one frame, whatever the
 * output (a legacy server closes the tunnel on a message over its limit).
 * Written into out (no NUL after it) when out is not NULL, which must have
 * room for what a call with out NULL and the same arguments returns: the
 * text's length, at most cap; 0 when not even an empty answer fits.
 * output and error may hold any bytes, escaped as proto_enc_command_response
 * writes them (invalid UTF-8 and NUL become U+FFFD): a response that fits is
 * that encoder's text.  One that does not is cut at character boundaries:
 * the error keeps its first PROTO_LEGACY_ERROR_KEEP bytes (escaped), the
 * output what is left, then the error the rest; note (may be NULL) is then
 * appended to the error on a line of its own.  force_note: append the note
 * even when nothing needs cutting.  *cut (may be NULL): 1 if the note was
 * due (something cut, or force_note). */
#define PROTO_LEGACY_ERROR_KEEP 65536
size_t proto_command_response_into(char *out, size_t cap, const char *command_id, int success,
                                   const char *output, size_t output_len, const char *error,
                                   size_t error_len, const char *note, int force_note,
                                   int return_code, int *cut);
char *proto_enc_exec(uint32_t id, const char *kind, const argv_t *argv, double timeout,
                     int64_t max_output);
/* exec with a program and environment (cloud_exec).  env: nenv "NAME=value"
 * strings (may be NULL/0); program may be NULL (kubectl).  hold_output > 0
 * adds "hold_output" (docs/protocol.md).  NULL on OOM or when program/env
 * break the limits above.  The text carries credentials: release it with
 * proto_free_secret. */
char *proto_enc_exec_env(uint32_t id, const char *kind, const char *program, const argv_t *argv,
                         const char *const *env, int nenv, double timeout, int64_t max_output,
                         int64_t hold_output);
/* Wipes and frees an encoded message. */
void proto_free_secret(char *json);
/* 1 if name is a valid exec env name / program is a valid program name. */
int proto_env_name_ok(const char *name, size_t len);
int proto_program_ok(const char *program);
char *proto_enc_exec_end(uint32_t id, int return_code, const char *error,
                         const char *error_code, int truncated, int64_t duration_ms,
                         int64_t bytes_out);
char *proto_enc_cancel(uint32_t id);
char *proto_enc_credit(uint32_t id, int64_t bytes);

/* Binary data frames. */
void proto_data_header(unsigned char hdr[PROTO_DATA_HDR], int channel, uint32_t id);
/* 0 and fills the out-params if frame is a well-formed data frame, else -1. */
int proto_data_parse(const unsigned char *frame, size_t len, int *channel, uint32_t *id,
                     const unsigned char **payload, size_t *plen);

#endif
