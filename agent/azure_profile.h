/* azure_profile.h — hands a bare Azure access token to the real `az` CLI.
 *
 * `az` has no environment variable for an access token: it reads its
 * identity from AZURE_CONFIG_DIR.  For a cloud_exec that carries
 * AZURE_ACCESS_TOKEN (docs/api.md, Azure connector), the sandbox writes into
 * the command's private AZURE_CONFIG_DIR (inside its sandbox HOME, removed
 * with it) what az 2.45 (MSAL Python 1.21) needs to use that token, and
 * nothing that could mint another one (no refresh token, no client secret):
 *
 *   azureProfile.json      one subscription (AZURE_SUBSCRIPTION_ID, default),
 *                          tenant AZURE_TENANT_ID, user "aurora-cloud-exec" of
 *                          type "user", environmentName = the active cloud;
 *   msal_token_cache.json  MSAL's SerializableTokenCache (plain JSON: the token
 *                          cache is not encrypted on Linux, and `config` says
 *                          so): the Account and one AccessToken for az's public
 *                          client id 04b07795-8ddb-461a-bbee-02f9e1bf7b46, realm
 *                          = tenant, expires_on = AZURE_ACCESS_TOKEN_EXPIRES_ON,
 *                          target = the ARM scopes az asks for
 *                          (https://management.core.windows.net//.default, and
 *                          the management.azure.com forms).  MSAL answers
 *                          acquire_token_silent from it ("Cache hit an AT")
 *                          while it is valid for more than 5 minutes; the
 *                          server hands out tokens that are;
 *   msal_http_cache.bin    MSAL's HTTP cache (a pickled dict, az's BinaryCache)
 *                          holding the tenant's OpenID configuration, so that
 *                          MSAL's authority validation (tenant discovery at
 *                          https://login.microsoftonline.com:443/<tenant>/v2.0/
 *                          .well-known/openid-configuration, done even for a
 *                          cached token) makes no network call.  Built from
 *                          builtins only (dict, list, tuple, str, int and
 *                          types.SimpleNamespace for the response), so it
 *                          unpickles under any Python 3;
 *   config                 [core] encrypt_token_cache = false, no telemetry,
 *                          and [cloud] name = AuroraCustom with
 *   clouds.config          only when AZURE_ARM_ENDPOINT_OVERRIDE is set: a
 *                          cloud whose Resource Manager endpoint is that URL
 *                          (login stays login.microsoftonline.com).  Set by the
 *                          server from its AZURE_MANAGEMENT_BASE when that is
 *                          not the default, or by the operator through
 *                          AURORA_SANDBOX_ENV_PASSTHROUGH.
 *
 * Then AZURE_ACCESS_TOKEN itself is left out of the command's environment. */
#ifndef AURORA_AGENT_AZURE_PROFILE_H
#define AURORA_AGENT_AZURE_PROFILE_H

#include <stddef.h>
#include <sys/types.h>

#define AZURE_CLI_CLIENT_ID "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
#define AZURE_PROFILE_USER "aurora-cloud-exec"
#define AZURE_CUSTOM_CLOUD "AuroraCustom"

typedef struct {
    const char *token;        /* AZURE_ACCESS_TOKEN (required) */
    const char *expires_on;   /* AZURE_ACCESS_TOKEN_EXPIRES_ON, Unix seconds; NULL: 1 hour */
    const char *subscription; /* AZURE_SUBSCRIPTION_ID (required) */
    const char *tenant;       /* AZURE_TENANT_ID (required) */
    const char *arm_endpoint; /* AZURE_ARM_ENDPOINT_OVERRIDE, NULL: Azure's public cloud */
} azure_profile_input;

/* Checks the input (ids of [A-Za-z0-9._-], the endpoint an http(s) URL of
 * plain characters, the token printable ASCII), creates config_dir (0700,
 * must not exist) and writes the files (0600), owned by uid:gid when chown_to
 * is set.  0, or -1 with err (never containing the token). */
int azure_profile_write(const char *config_dir, const azure_profile_input *in, int chown_to,
                        uid_t uid, gid_t gid, char *err, size_t errlen);

/* The pickled MSAL HTTP cache for tenant at time now (malloc'd, *len bytes);
 * exposed for unit tests. */
unsigned char *azure_profile_http_cache(const char *tenant, long long now, size_t *len);

#endif
