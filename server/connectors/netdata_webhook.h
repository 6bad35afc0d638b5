/* netdata_webhook.h — Netdata Cloud alert notifications (the "Webhook"
 * notification integration of a Space) into incidents.
 *
 *   GET  /netdata/webhook/{user_id}?crc_token=…   Netdata's ownership check when
 *        the integration is created or updated: {"response_token":
 *        "sha256=" + base64(HMAC-SHA256(challenge secret, crc_token))}
 *   POST /netdata/webhook/{user_id}               one notification (alert or
 *        reachability), persisted by the connector kit before the 2xx, then
 *        one incident_ingest() call
 *
 * Authentication (Netdata's "Bearer" mechanism): when the user gave a
 * webhook_secret at POST /netdata/connect, it is both the challenge secret
 * and the Bearer token Netdata must send (constant-time compare); without
 * one, the per-user URL is the credential (Netdata's default mechanism is
 * mutual TLS, terminated by the operator's proxy). */
#ifndef AURORA_NETDATA_WEBHOOK_H
#define AURORA_NETDATA_WEBHOOK_H

#include <stddef.h>

#include "incidents.h"

struct cJSON;

#define NETDATA_CRC_TOKEN_MAX 256
#define NETDATA_RESPONSE_TOKEN_LEN 64 /* "sha256=" + 44 base64 + NUL fits */

typedef enum {
    NETDATA_PAYLOAD_UNKNOWN = 0,
    NETDATA_PAYLOAD_ALERT,        /* alert (or alarm) + severity warning|critical|clear */
    NETDATA_PAYLOAD_REACHABILITY, /* host + status {reachable, text} */
    NETDATA_PAYLOAD_TEST,         /* message + title + token: a test notification */
} netdata_payload_kind;

netdata_payload_kind netdata_payload_kind_of(const struct cJSON *body);

/* The fields of one notification for incident_ingest (pointers into body or
 * the buffers below; valid while both live). */
typedef struct {
    incident_alert alert;
    char fingerprint[512];
    char title[512];
} netdata_alert;

/* 0 with *out filled for an alert or reachability payload, -1 otherwise. */
int netdata_alert_from(const struct cJSON *body, const char *delivery_id, netdata_alert *out);

/* "sha256=<base64 HMAC-SHA256(secret, crc_token)>" into out; 0, or -1. */
int netdata_crc_response(const void *secret, size_t secret_len, const char *crc_token,
                         char out[NETDATA_RESPONSE_TOKEN_LEN]);

/* Routes and the recovery sweep (from netdata.c's register_routes). */
void netdata_webhook_register(void);

#endif
