/* token.c — agent tokens, API keys and ids; see token.h. */
#include "token.h"

#include <stdio.h>
#include <string.h>

#include "crypto.h"

int token_new_agent(char out[AGENT_TOKEN_LEN + 1])
{
    unsigned char raw[48];
    if (crypto_random(raw, sizeof(raw)) < 0)
        return -1;
    memcpy(out, AGENT_TOKEN_PREFIX, AGENT_TOKEN_PREFIX_LEN);
    if (crypto_base64url(raw, sizeof(raw), out + AGENT_TOKEN_PREFIX_LEN, 65) != 64)
        return -1;
    return 0;
}

int token_agent_well_formed(const char *tok)
{
    if (!tok || strlen(tok) != AGENT_TOKEN_LEN ||
        strncmp(tok, AGENT_TOKEN_PREFIX, AGENT_TOKEN_PREFIX_LEN) != 0)
        return 0;
    for (const char *p = tok + AGENT_TOKEN_PREFIX_LEN; *p; p++) {
        char c = *p;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

void token_hash(const char *token, char out[65]) { crypto_sha256_hex(token, strlen(token), out); }

void token_cluster_id(const char *token, char out[CLUSTER_ID_LEN + 1])
{
    char hex[65];
    token_hash(token, hex);
    snprintf(out, CLUSTER_ID_LEN + 1, "cluster-%.16s", hex);
}

int token_new_api_key(char out[API_KEY_LEN + 1])
{
    unsigned char raw[32];
    if (crypto_random(raw, sizeof(raw)) < 0)
        return -1;
    memcpy(out, API_KEY_PREFIX, 11);
    if (crypto_base64url(raw, sizeof(raw), out + 11, 45) != 43)
        return -1;
    return 0;
}

void token_preview(const char *token, char out[TOKEN_PREVIEW_LEN])
{
    size_t n = strlen(token);
    /* Only a known, fixed prefix is shown whole: the random part is base64url
     * and may itself contain '_', so "up to the last '_'" would leak it. */
    size_t prefix = 0;
    if (!strncmp(token, AGENT_TOKEN_PREFIX, AGENT_TOKEN_PREFIX_LEN))
        prefix = AGENT_TOKEN_PREFIX_LEN;
    else if (!strncmp(token, API_KEY_PREFIX, strlen(API_KEY_PREFIX)))
        prefix = strlen(API_KEY_PREFIX);
    if (n < prefix + 12) { /* too short to show anything safely */
        snprintf(out, TOKEN_PREVIEW_LEN, "%.*s...", (int)(prefix < 20 ? prefix : 20), token);
        return;
    }
    snprintf(out, TOKEN_PREVIEW_LEN, "%.*s%.4s...%.4s", (int)(prefix < 18 ? prefix : 18), token,
             token + prefix, token + n - 4);
}

int id_generate(const char *prefix, char *out, size_t cap)
{
    unsigned char raw[12];
    size_t pl = strlen(prefix);
    if (cap < pl + 25 || crypto_random(raw, sizeof(raw)) < 0)
        return -1;
    memcpy(out, prefix, pl);
    crypto_hex(raw, sizeof(raw), out + pl);
    return 0;
}
