/* rca_outbox.h — the RCA outbox as the investigation service and operators
 * see it: claim tokens, the retry policy from the settings, the JSON of a
 * job (docs/rca-outbox.md).  Shared by the routes (rca_outbox.c) and the
 * `aurora-server rca` command (rca_cli.c). */
#ifndef AURORA_RCA_OUTBOX_H
#define AURORA_RCA_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "server_config.h"
#include "store_rca.h"

struct cJSON;

#define RCA_LEASE_DEFAULT_S 300
#define RCA_LEASE_MAX_S 3600
#define RCA_CLAIM_DEFAULT 10
/* "rcl_" + 64 hex (256 random bits). */
#define RCA_CLAIM_TOKEN_LEN (4 + 64)

/* AURORA_RCA_MAX_ATTEMPTS, AURORA_RCA_BACKOFF_S, AURORA_RCA_BACKOFF_MAX_S
 * (defaults when cfg is NULL). */
store_rca_policy rca_policy(const server_config *cfg);

/* A job as JSON: id, incident_id, org_id, source_type, status, attempts,
 * times (RFC 3339), last_error, payload (the parsed JSON object) and, when
 * claim_token is set, claim_token. */
struct cJSON *rca_job_json(const store_rca_job *j, const char *claim_token);

/* Claims up to max jobs with a lease of lease_s seconds and returns them as
 * a JSON array (each with its own claim token, which exists nowhere else:
 * the store keeps its hash).  STORE_OK, or the store's code with err. */
int rca_claim_json(store_t *s, const server_config *cfg, int max, int64_t lease_s, int64_t now,
                   struct cJSON **jobs, char *err, size_t errlen);

/* The routes (called by incidents_register_routes). */
void rca_outbox_register_routes(void);

/* The SHA-256 hex of a claim token that looks like one; -1 otherwise. */
int rca_claim_hash(const char *token, char out[65]);

#endif
