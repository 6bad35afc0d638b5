/* cloud_az.c — the Azure CLI as a cloud_exec plug-in (cloud_cli.h), and how a
 * bare Azure access token is handed to it.
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
 *                          (login stays login.microsoftonline.com).  Only the
 *                          operator sets it (AURORA_CLOUD_ENV
 *                          "az:AZURE_ARM_ENDPOINT_OVERRIDE=…", a sovereign cloud
 *                          or a test fixture); the server, whose
 *                          AZURE_MANAGEMENT_BASE is then not the default, sends
 *                          the same value, which the agent accepts only when it
 *                          equals the operator's (cloud.h).
 *
 * Then AZURE_ACCESS_TOKEN itself is left out of the command's environment.
 *
 * The token cache's format is MSAL Python's: the version probe reads the
 * installed azure-cli and msal versions at start and says so clearly when
 * they are not the tested ones (az 2.45 with MSAL 1.21, Debian 12's). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cloud_cli.h"

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

#define LOGIN_HOST "login.microsoftonline.com"
/* the scopes az asks for ARM (active_directory_resource_id + "/.default") and
 * the management.azure.com forms; MSAL matches a request whose scopes are a
 * subset of the entry's target */
#define ARM_TARGET                                                                         \
    "https://management.core.windows.net//.default https://management.azure.com//.default " \
    "https://management.azure.com/.default"
/* sha256(repr("")): MSAL's key for a GET without params */
#define EMPTY_PARAMS_HASH "6f49cdbd80e1b95d5e6427e1501fc217790daee87055fa5b4e71064288bddede"

/* ---- input checks ------------------------------------------------------------ */

static int id_ok(const char *s)
{
    if (!s || !*s || strlen(s) > 128)
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '-' || *p == '_'))
            return 0;
    return 1;
}

/* An http(s) URL of characters that are plain in an INI value (no '%', ';',
 * '#', spaces, newlines: az reads clouds.config with configparser). */
static int endpoint_ok(const char *s)
{
    if (!s || strlen(s) > 512)
        return 0;
    if (strncmp(s, "https://", 8) && strncmp(s, "http://", 7))
        return 0;
    if (!s[strchr(s, ':') - s + 3])
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              strchr(":/.-_[]~", *p)))
            return 0;
    return 1;
}

static int token_ok(const char *s)
{
    if (!s || !*s || strlen(s) > 16384)
        return 0;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return 0;
    return 1;
}

/* ---- the pickled HTTP cache ------------------------------------------------- */

typedef struct {
    unsigned char *p;
    size_t len, cap;
    int oom;
} buf_t;

static void put(buf_t *b, const void *d, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 512;
        while (nc < b->len + n)
            nc *= 2;
        unsigned char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void op(buf_t *b, const char *s) { put(b, s, strlen(s)); }

static void pstr(buf_t *b, const char *s) /* BINUNICODE */
{
    size_t n = strlen(s);
    unsigned char h[5] = {'X', (unsigned char)(n & 0xff), (unsigned char)((n >> 8) & 0xff),
                          (unsigned char)((n >> 16) & 0xff), (unsigned char)((n >> 24) & 0xff)};
    put(b, h, sizeof(h));
    put(b, s, n);
}

static void pint(buf_t *b, long long v) /* INT, text: any size */
{
    char s[32];
    snprintf(s, sizeof(s), "I%lld\n", v);
    op(b, s);
}

static unsigned char *azure_profile_http_cache(const char *tenant, long long now, size_t *len)
{
    char key[512], oidc[1024];
    snprintf(key, sizeof(key),
             "GET https://" LOGIN_HOST ":443/%s/v2.0/.well-known/openid-configuration hash=%s 2xx",
             tenant, EMPTY_PARAMS_HASH);
    snprintf(oidc, sizeof(oidc),
             "{\"authorization_endpoint\": \"https://" LOGIN_HOST "/%s/oauth2/v2.0/authorize\", "
             "\"token_endpoint\": \"https://" LOGIN_HOST "/%s/oauth2/v2.0/token\", "
             "\"issuer\": \"https://" LOGIN_HOST "/%s/v2.0\"}",
             tenant, tenant, tenant);
    long long created = now - 60, expires = now + 24 * 3600; /* MSAL keeps discovery a day */
    buf_t b = {0};
    op(&b, "\x80\x02}("); /* protocol 2; {  */
    /* key: SimpleNamespace(status_code=200, text=oidc, headers={}) */
    pstr(&b, key);
    op(&b, "ctypes\nSimpleNamespace\n)R}(");
    pstr(&b, "status_code");
    pint(&b, 200);
    pstr(&b, "text");
    pstr(&b, oidc);
    pstr(&b, "headers");
    op(&b, "}ub");
    /* "_index_": ([[expires, created, key]], {key: [expires, created]}) */
    pstr(&b, "_index_");
    op(&b, "(](](");
    pint(&b, expires);
    pint(&b, created);
    pstr(&b, key);
    op(&b, "ee}");
    pstr(&b, key);
    op(&b, "](");
    pint(&b, expires);
    pint(&b, created);
    op(&b, "est");
    op(&b, "u.");
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}

/* ---- JSON files ---------------------------------------------------------------- */

static char *profile_json(const azure_profile_input *in, const char *cloud)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *subs = cJSON_AddArrayToObject(root, "subscriptions");
    cJSON *s = cJSON_CreateObject();
    cJSON_AddItemToArray(subs, s);
    cJSON_AddStringToObject(s, "id", in->subscription);
    cJSON_AddStringToObject(s, "name", in->subscription);
    cJSON_AddStringToObject(s, "state", "Enabled");
    cJSON *u = cJSON_AddObjectToObject(s, "user");
    cJSON_AddStringToObject(u, "name", AZURE_PROFILE_USER);
    cJSON_AddStringToObject(u, "type", "user");
    cJSON_AddBoolToObject(s, "isDefault", 1);
    cJSON_AddStringToObject(s, "tenantId", in->tenant);
    cJSON_AddStringToObject(s, "environmentName", cloud);
    cJSON_AddStringToObject(s, "homeTenantId", in->tenant);
    cJSON_AddArrayToObject(s, "managedByTenants");
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

static char *token_cache_json(const azure_profile_input *in, long long now, long long exp)
{
    char home_id[256], at_key[1024], acct_key[512], nows[32], exps[32];
    snprintf(home_id, sizeof(home_id), "%s.%s", AZURE_PROFILE_USER, in->tenant);
    /* SerializableTokenCache keys: home_account_id-environment-credential_type-
     * client_id-realm-target (AccessToken), home_account_id-environment-realm
     * (Account), lower case */
    snprintf(at_key, sizeof(at_key), "%s-%s-accesstoken-%s-%s-%s", home_id, LOGIN_HOST,
             AZURE_CLI_CLIENT_ID, in->tenant, ARM_TARGET);
    snprintf(acct_key, sizeof(acct_key), "%s-%s-%s", home_id, LOGIN_HOST, in->tenant);
    lower(at_key);
    lower(acct_key);
    snprintf(nows, sizeof(nows), "%lld", now);
    snprintf(exps, sizeof(exps), "%lld", exp);

    cJSON *root = cJSON_CreateObject();
    cJSON *ats = cJSON_AddObjectToObject(root, "AccessToken");
    cJSON *at = cJSON_AddObjectToObject(ats, at_key);
    cJSON_AddStringToObject(at, "credential_type", "AccessToken");
    cJSON_AddStringToObject(at, "secret", in->token);
    cJSON_AddStringToObject(at, "home_account_id", home_id);
    cJSON_AddStringToObject(at, "environment", LOGIN_HOST);
    cJSON_AddStringToObject(at, "client_id", AZURE_CLI_CLIENT_ID);
    cJSON_AddStringToObject(at, "target", ARM_TARGET);
    cJSON_AddStringToObject(at, "realm", in->tenant);
    cJSON_AddStringToObject(at, "token_type", "Bearer");
    cJSON_AddStringToObject(at, "cached_at", nows);
    cJSON_AddStringToObject(at, "expires_on", exps);
    cJSON_AddStringToObject(at, "extended_expires_on", exps);
    cJSON *accts = cJSON_AddObjectToObject(root, "Account");
    cJSON *a = cJSON_AddObjectToObject(accts, acct_key);
    cJSON_AddStringToObject(a, "home_account_id", home_id);
    cJSON_AddStringToObject(a, "environment", LOGIN_HOST);
    cJSON_AddStringToObject(a, "realm", in->tenant);
    cJSON_AddStringToObject(a, "local_account_id", AZURE_PROFILE_USER);
    cJSON_AddStringToObject(a, "username", AZURE_PROFILE_USER);
    cJSON_AddStringToObject(a, "authority_type", "MSSTS");
    cJSON_AddObjectToObject(root, "RefreshToken");
    cJSON_AddObjectToObject(root, "IdToken");
    cJSON_AddObjectToObject(root, "AppMetadata");
    /* printed into one buffer that fits (cJSON_Print grows its own by
     * realloc, leaving copies of the token in freed memory): token_ok
     * allows no byte JSON escapes as more than two; the rest is < 8 KiB */
    size_t cap = 2 * strlen(in->token) + 8192;
    char *out = malloc(cap);
    if (out && !cJSON_PrintPreallocated(root, out, (int)cap, 0)) {
        explicit_bzero(out, cap);
        free(out);
        out = NULL;
    }
    /* the token's copy inside the tree */
    cJSON *sec = cJSON_GetObjectItemCaseSensitive(at, "secret");
    if (sec && sec->valuestring)
        explicit_bzero(sec->valuestring, strlen(sec->valuestring));
    cJSON_Delete(root);
    return out;
}

/* ---- writing ------------------------------------------------------------------- */

static int write_file(int dfd, const char *name, const void *data, size_t len, int chown_to,
                      uid_t uid, gid_t gid)
{
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    const unsigned char *p = data;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, p + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            errno = e ? e : EIO;
            return -1;
        }
        off += (size_t)w;
    }
    if (chown_to && fchown(fd, uid, gid) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return close(fd);
}

static int azure_profile_write(const char *config_dir, const azure_profile_input *in,
                               int chown_to, uid_t uid, gid_t gid, char *err, size_t errlen)
{
    if (!token_ok(in->token)) {
        snprintf(err, errlen, "AZURE_ACCESS_TOKEN is empty or malformed");
        return -1;
    }
    if (!id_ok(in->subscription) || !id_ok(in->tenant)) {
        snprintf(err, errlen, "AZURE_SUBSCRIPTION_ID and AZURE_TENANT_ID must be set (ids of "
                              "letters, digits, '.', '-', '_')");
        return -1;
    }
    if (in->arm_endpoint && *in->arm_endpoint && !endpoint_ok(in->arm_endpoint)) {
        snprintf(err, errlen, "AZURE_ARM_ENDPOINT_OVERRIDE must be an http(s) URL");
        return -1;
    }
    long long now = (long long)time(NULL), exp = now + 3600;
    if (in->expires_on && *in->expires_on) {
        char *end;
        errno = 0;
        long long v = strtoll(in->expires_on, &end, 10);
        if (errno || *end || v <= 0) {
            snprintf(err, errlen, "AZURE_ACCESS_TOKEN_EXPIRES_ON must be Unix seconds");
            return -1;
        }
        exp = v;
    }
    int custom = in->arm_endpoint && *in->arm_endpoint;
    const char *cloud = custom ? AZURE_CUSTOM_CLOUD : "AzureCloud";

    if (mkdir(config_dir, 0700) != 0) {
        snprintf(err, errlen, "cannot create the az config directory: %s", strerror(errno));
        return -1;
    }
    int dfd = open(config_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0 || (chown_to && fchown(dfd, uid, gid) != 0)) {
        snprintf(err, errlen, "cannot prepare the az config directory: %s", strerror(errno));
        if (dfd >= 0)
            close(dfd);
        return -1;
    }

    char config[256], clouds[1024];
    snprintf(config, sizeof(config),
             "[core]\nencrypt_token_cache = false\ncollect_telemetry = false\n"
             "first_run = false\n%s%s%s",
             custom ? "\n[cloud]\nname = " : "", custom ? AZURE_CUSTOM_CLOUD : "",
             custom ? "\n" : "");
    size_t el = custom ? strlen(in->arm_endpoint) : 0;
    snprintf(clouds, sizeof(clouds),
             "[" AZURE_CUSTOM_CLOUD "]\n"
             "endpoint_resource_manager = %s%s\n"
             "endpoint_management = https://management.core.windows.net/\n"
             "endpoint_active_directory = https://" LOGIN_HOST "\n"
             "endpoint_active_directory_resource_id = https://management.core.windows.net/\n"
             "endpoint_active_directory_graph_resource_id = https://graph.windows.net/\n"
             "endpoint_microsoft_graph_resource_id = https://graph.microsoft.com/\n",
             custom ? in->arm_endpoint : "", el && in->arm_endpoint[el - 1] != '/' ? "/" : "");

    char *profile = profile_json(in, cloud);
    char *cache = token_cache_json(in, now, exp);
    size_t hlen = 0;
    unsigned char *http = azure_profile_http_cache(in->tenant, now, &hlen);
    int rc = -1;
    const char *what = "out of memory";
    if (profile && cache && http) {
        what = "azureProfile.json";
        if (write_file(dfd, "azureProfile.json", profile, strlen(profile), chown_to, uid, gid))
            goto out;
        what = "msal_token_cache.json";
        if (write_file(dfd, "msal_token_cache.json", cache, strlen(cache), chown_to, uid, gid))
            goto out;
        what = "msal_http_cache.bin";
        if (write_file(dfd, "msal_http_cache.bin", http, hlen, chown_to, uid, gid))
            goto out;
        what = "config";
        if (write_file(dfd, "config", config, strlen(config), chown_to, uid, gid))
            goto out;
        what = "clouds.config";
        if (custom && write_file(dfd, "clouds.config", clouds, strlen(clouds), chown_to, uid, gid))
            goto out;
        rc = 0;
    }
out:
    if (rc != 0)
        snprintf(err, errlen, "cannot write the az %s: %s", what,
                 profile && cache && http ? strerror(errno) : "out of memory");
    close(dfd);
    free(profile);
    if (cache) {
        explicit_bzero(cache, strlen(cache));
        free(cache);
    }
    free(http);
    return rc;
}

/* ---- the plug-in ------------------------------------------------------------------ */

static const char *const server_env[] = {
    "AZURE_ACCESS_TOKEN",
    "AZURE_ACCESS_TOKEN_EXPIRES_ON",
    "AZURE_SUBSCRIPTION_ID",
    "AZURE_TENANT_ID",
    "AZURE_DEFAULTS_LOCATION",
    "AZURE_CORE_OUTPUT",
    "AZURE_CORE_ONLY_SHOW_ERRORS",
    "AZURE_CORE_NO_COLOR",
    "AZURE_CORE_COLLECT_TELEMETRY",
    NULL};

/* `acr login` with --expose-token prints a registry token (and without
 * it, runs a docker login the agent has no docker for).  `az storage …
 * generate-sas` (account, container, blob, share, file, queue, table, fs)
 * signs a SAS with an account key or a user delegation key, either one
 * fetched with the command's token. */
static const char *const printers[] = {"account get-access-token", "acr login",
                                       "storage generate-sas", NULL};

static const char *const home_env[] = {"AZURE_CONFIG_DIR=.azure", NULL};

/* With AZURE_ACCESS_TOKEN: az's config dir with that token (above); the
 * token then stays out of the environment. */
static int prepare_home(const cloud_cli_home *h, char *const env[], int nenv, unsigned char *drop,
                        char *err, size_t errlen)
{
    const char *tok = cloud_cli_env_value(env, nenv, "AZURE_ACCESS_TOKEN");
    if (!tok)
        return 0;
    azure_profile_input in = {
        .token = tok,
        .expires_on = cloud_cli_env_value(env, nenv, "AZURE_ACCESS_TOKEN_EXPIRES_ON"),
        .subscription = cloud_cli_env_value(env, nenv, "AZURE_SUBSCRIPTION_ID"),
        .tenant = cloud_cli_env_value(env, nenv, "AZURE_TENANT_ID"),
        .arm_endpoint = cloud_cli_env_value(env, nenv, "AZURE_ARM_ENDPOINT_OVERRIDE")};
    size_t n = strlen(h->home) + sizeof("/.azure");
    char *dir = malloc(n);
    if (!dir) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(dir, n, "%s/.azure", h->home);
    int r = azure_profile_write(dir, &in, h->chown_to, h->uid, h->gid, err, errlen);
    free(dir);
    if (r != 0)
        return -1;
    for (int i = 0; i < nenv; i++)
        if (env[i] && !strncmp(env[i], "AZURE_ACCESS_TOKEN=", 19))
            drop[i] = 1;
    return 0;
}

/* The versions the token cache above was written for and tested with. */
#define TESTED_AZ "2.45."
#define TESTED_MSAL "1.21."

static void probe(const char *program, cloud_cli_version *out)
{
    char msal[32] = "";
    if (cloud_cli_python_dist_version(program, "azure_cli", out->version, sizeof(out->version)))
        cloud_cli_python_dist_version(program, "azure_cli_core", out->version,
                                      sizeof(out->version));
    cloud_cli_python_dist_version(program, "msal", msal, sizeof(msal));
    if (msal[0])
        snprintf(out->detail, sizeof(out->detail), "msal %s", msal);
    if (!msal[0])
        snprintf(out->note, sizeof(out->note),
                 "cannot tell which MSAL version az %s uses (no msal-*.dist-info/egg-info "
                 "beside its Python): the agent writes MSAL 1.21's token cache format (tested "
                 "with az 2.45.0); if cloud_exec az asks for `az login`, the format differs",
                 out->version[0] ? out->version : "(unknown version)");
    else if (!cloud_cli_version_is(msal, TESTED_MSAL) ||
             !cloud_cli_version_is(out->version, TESTED_AZ))
        snprintf(out->note, sizeof(out->note),
                 "az %s with MSAL %s is not the tested az 2.45 with MSAL 1.21: the agent "
                 "writes MSAL 1.21's token cache format for the server's access token; if "
                 "cloud_exec az asks for `az login`, this MSAL reads another format",
                 out->version[0] ? out->version : "(unknown version)", msal);
}

const cloud_cli cloud_cli_az = {
    .name = "az",
    .server_env = server_env,
    .printers = printers,
    .home_env = home_env,
    .prepare_home = prepare_home,
    .probe = probe,
};
