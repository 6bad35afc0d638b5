/* secrets_aws_sts.h — temporary AWS credentials for the AWS Secrets Manager
 * backend (secrets_aws.c) from a web identity: STS AssumeRoleWithWebIdentity,
 * the AWS SDKs' credential source for EKS IRSA (AWS_ROLE_ARN +
 * AWS_WEB_IDENTITY_TOKEN_FILE).  No caching here: the backend caches. */
#ifndef AURORA_SECRETS_AWS_STS_H
#define AURORA_SECRETS_AWS_STS_H

#include <stddef.h>
#include <time.h>

/* One set of credentials, as a Secrets Manager call signs with them. */
typedef struct {
    char userpwd[512]; /* "<access key id>:<secret access key>" (libcurl's USERPWD) */
    char session_token[2048];
} aws_creds;

typedef struct {
    const char *role_arn;
    const char *token_file;   /* read at every call: the kubelet rotates it */
    const char *session_name; /* RoleSessionName */
    const char *sts_url;      /* https://sts.<region>.amazonaws.com or AWS_SM_STS_ENDPOINT */
    long timeout_ms;          /* one HTTP attempt */
} aws_web_identity;

/* Credentials asked for (DurationSeconds=3600): SECRETS_OK with *out and
 * *expiry (the answer's Expiration) filled; the caller wipes *out.  Else
 * SECRETS_E_DENIED (token file unreadable or empty, STS refused: AccessDenied,
 * InvalidIdentityToken, ...), SECRETS_E_UNAVAILABLE (STS unreachable, 5xx or
 * throttling after retries) or SECRETS_E_OTHER (unexpected answer), with err
 * naming the role or the token file and STS's error code, never the token
 * or a credential. */
int aws_sts_assume_web_identity(const aws_web_identity *w, aws_creds *out, time_t *expiry, char *err,
                                size_t errlen);

#endif
