/* token.h — agent tokens, API keys and ids.
 *
 * Agent tokens are compatible with the existing Python agent:
 *   "aurora_kubectl_" + 64 URL-safe characters (base64url of 48 random bytes).
 * The cluster id is "cluster-" + first 16 hex chars of SHA-256(token), so an
 * agent that is replaced but keeps its token keeps its identity. */
#ifndef AURORA_TOKEN_H
#define AURORA_TOKEN_H

#include <stddef.h>

#define AGENT_TOKEN_PREFIX "aurora_kubectl_"
#define AGENT_TOKEN_PREFIX_LEN 15
#define AGENT_TOKEN_LEN (AGENT_TOKEN_PREFIX_LEN + 64)
#define CLUSTER_ID_LEN (8 + 16)
#define API_KEY_PREFIX "aurora_key_"
#define API_KEY_LEN (11 + 43) /* prefix + base64url(32 bytes) */
#define TOKEN_PREVIEW_LEN 32

int token_new_agent(char out[AGENT_TOKEN_LEN + 1]);
/* 1 if tok has the agent token shape (prefix, length, alphabet). */
int token_agent_well_formed(const char *tok);
void token_cluster_id(const char *token, char out[CLUSTER_ID_LEN + 1]);
int token_new_api_key(char out[API_KEY_LEN + 1]);
/* SHA-256 hex of the whole token/key, the only form ever stored. */
void token_hash(const char *token, char out[65]);
/* "aurora_kubectl_AbCd...wxYz": safe to show, useless to an attacker. */
void token_preview(const char *token, char out[TOKEN_PREVIEW_LEN]);
/* prefix + 24 random hex chars, e.g. "org_5f0c…".  cap >= strlen(prefix)+25. */
int id_generate(const char *prefix, char *out, size_t cap);

#endif
