/* cloud_aws.c — the AWS CLI as a cloud_exec plug-in (cloud_cli.h).
 *
 * The server hands aws the assumed role's temporary credentials and the
 * region; its config and credentials files live in the command's HOME.
 * Endpoint overrides (AWS_ENDPOINT_URL*), the CA bundle (AWS_CA_BUNDLE),
 * profiles and credential providers that fetch or read credentials
 * elsewhere (AWS_PROFILE, AWS_CONTAINER_CREDENTIALS_*, AWS_WEB_IDENTITY_TOKEN_FILE,
 * AWS_ROLE_ARN) are never the server's to set. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloud_cli.h"

static const char *const server_env[] = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_DEFAULT_OUTPUT",
    "AWS_PAGER",
    "AWS_EC2_METADATA_DISABLED",
    NULL};

/* Commands whose purpose is to print the credentials the command runs
 * with, or a token made from them (an EKS bearer token, a registry or
 * database password, a presigned URL — which carries the session token —,
 * another role's keys). */
static const char *const printers[] = {"configure export-credentials",
                                       "eks get-token",
                                       "ecr get-login-password",
                                       "ecr-public get-login-password",
                                       "ecr get-login",
                                       "s3 presign",
                                       "dsql generate-db-connect-auth-token",
                                       "dsql generate-db-connect-admin-auth-token",
                                       "codeartifact get-authorization-token",
                                       "rds generate-db-auth-token",
                                       "sts get-session-token",
                                       "sts get-federation-token",
                                       "sts assume-role",
                                       "sts assume-role-with-web-identity",
                                       "sts assume-role-with-saml",
                                       "sts assume-root",
                                       "ecr get-authorization-token",
                                       "ecr-public get-authorization-token",
                                       "sso get-role-credentials",
                                       "redshift get-cluster-credentials",
                                       "redshift get-cluster-credentials-with-iam",
                                       "redshift-serverless get-credentials",
                                       "cognito-identity get-credentials-for-identity",
                                       NULL};

static const char *const home_env[] = {"AWS_CONFIG_FILE=.aws/config",
                                       "AWS_SHARED_CREDENTIALS_FILE=.aws/credentials", NULL};

/* AWS CLI v2's installer: …/aws-cli/v2/<version>/dist/aws; v1 and Debian's
 * awscli: the Python distribution awscli. */
static void probe(const char *program, cloud_cli_version *out)
{
    char *r = realpath(program, NULL);
    if (r) {
        char *v2 = strstr(r, "/v2/");
        char *dist = v2 ? strstr(v2 + 4, "/dist/") : NULL;
        size_t n = dist ? (size_t)(dist - (v2 + 4)) : 0;
        if (n && n < sizeof(out->version) && !memchr(v2 + 4, '/', n)) {
            memcpy(out->version, v2 + 4, n);
            out->version[n] = '\0';
        }
        free(r);
        if (out->version[0])
            return;
    }
    cloud_cli_python_dist_version(program, "awscli", out->version, sizeof(out->version));
}

const cloud_cli cloud_cli_aws = {
    .name = "aws",
    .server_env = server_env,
    .printers = printers,
    .home_env = home_env,
    .prepare_home = NULL,
    .probe = probe,
};
