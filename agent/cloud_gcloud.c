/* cloud_gcloud.c — the Google Cloud CLI as a cloud_exec plug-in (cloud_cli.h).
 *
 * The server hands gcloud an access token (CLOUDSDK_AUTH_ACCESS_TOKEN, used
 * as is: nothing to refresh) and the project; its configuration lives in the
 * command's HOME (CLOUDSDK_CONFIG).  API endpoint overrides, proxy and CA
 * settings (CLOUDSDK_API_ENDPOINT_OVERRIDES_*, CLOUDSDK_PROXY_*,
 * CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE, CLOUDSDK_AUTH_DISABLE_SSL_VALIDATION)
 * are the operator's (AURORA_CLOUD_ENV), never the server's. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloud_cli.h"

static const char *const server_env[] = {
    "CLOUDSDK_AUTH_ACCESS_TOKEN",
    "CLOUDSDK_CORE_PROJECT",
    "CLOUDSDK_COMPUTE_REGION",
    "CLOUDSDK_COMPUTE_ZONE",
    "CLOUDSDK_CORE_DISABLE_PROMPTS",
    "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING",
    "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK",
    "CLOUDSDK_SURVEY_DISABLE_PROMPTS",
    NULL};

static const char *const printers[] = {
    "auth print-access-token",
    "auth print-identity-token",
    "auth application-default print-access-token",
    "config config-helper",
    "sql generate-login-token",
    "storage sign-url", /* a URL signed for the command's account */
    NULL};

static const char *const home_env[] = {"CLOUDSDK_CONFIG=.config/gcloud", NULL};

/* The SDK root (…/google-cloud-sdk, two levels above bin/gcloud) holds a
 * VERSION file, in Google's apt package as in its archives. */
static void probe(const char *program, cloud_cli_version *out)
{
    char *r = realpath(program, NULL);
    if (!r)
        return;
    for (int i = 0; i < 2; i++) {
        char *s = strrchr(r, '/');
        if (s && s != r)
            *s = '\0';
    }
    char vf[PATH_MAX + 16];
    snprintf(vf, sizeof(vf), "%s/VERSION", r);
    free(r);
    cloud_cli_first_line(vf, out->version, sizeof(out->version));
}

const cloud_cli cloud_cli_gcloud = {
    .name = "gcloud",
    .server_env = server_env,
    .printers = printers,
    .home_env = home_env,
    .prepare_home = NULL,
    .probe = probe,
};
