/* argv_redact.h — credentials typed into a command line, kept out of the
 * audit trail.  The audit row of a command keeps its argv (docs/api.md,
 * GET /api/audit: every member of the organization reads it), written when
 * the command is dispatched, before the agent's policy may refuse it; a
 * `kubectl … --token=…` or an `az login -p …` would leave the credential
 * there.  The value of a flag known to carry one is replaced by
 * ARGV_REDACTED; the flag itself stays, so the row still says what was
 * run. */
#ifndef AURORA_ARGV_REDACT_H
#define AURORA_ARGV_REDACT_H

#include <stddef.h>

#define ARGV_REDACTED "[REDACTED]"
#define ARGV_REDACT_SHOWN_MAX 96 /* "--<flag>=" ARGV_REDACTED, the flag cut at 64 */

typedef enum {
    ARGV_REDACT_NONE = 0, /* keep the argument */
    ARGV_REDACT_INLINE,   /* "--flag=value": write `shown` ("--flag=[REDACTED]") instead */
    ARGV_REDACT_NEXT,     /* "--flag" / "-p": keep it, redact the next argument */
} argv_redact;

/* What to do with argument `arg` of `program` ("kubectl", "gcloud", "aws",
 * "az"): the long flags of every CLI whose value is a credential (--token,
 * --password, --client-key, --client-secret, --auth-provider-arg,
 * --from-literal, --exec-env; '_' read as '-', as kubectl's flag parser
 * does; for az and aws, whose argparse takes them, any prefix too), every
 * flag whose last words name a credential (--admin-password,
 * --docker-password, --sas-token, --account-key, --secret-string,
 * --connection-string, …), and a CLI's own short ones (az's -p).  Over-
 * redacting costs a little: aws's --next-token, gcloud's --secret=<name>.   shown gets the
 * replacement for ARGV_REDACT_INLINE. */
argv_redact argv_redact_arg(const char *program, const char *arg, char *shown, size_t cap);

/* A credential inside an argument that no flag announces, or NULL: the
 * value of the first NAME=VALUE whose NAME says it is one (DB_PASSWORD=…,
 * GITHUB_TOKEN=…, API_KEY=…: `kubectl set env`, `kubectl exec … -- env`,
 * --env=, --set-env-vars=, --settings), to the end of the argument (the
 * pairs after it go too); the password of a URL's user info
 * (postgres://user:[REDACTED]@host); keyed values, passwords in script
 * code (mongosh's {pwd:'…'}, db.auth('u', '…')), a database statement's
 * password literal and the options of programs run inside the argument
 * (argv_redact_text.h).  malloc'd; NULL when nothing changes. */
char *argv_redact_embedded(const char *arg);

struct cJSON;
/* Applies the rule in place to an audit argv array ["<program>", arg, …]
 * (strings; anything else is left alone): argv_redact_arg for each
 * argument, a command's own credential flag (`az keyvault secret set
 * --value`, `aws ssm put-parameter --value`, `az containerapp secret set
 * --secrets`), the value of `aws configure set <credential name> <value>`,
 * then argv_redact_embedded.  The number of items replaced. */
int argv_redact_array(struct cJSON *argv);
/* The same for argv_json as an audit row stores it: malloc'd JSON when
 * something was replaced, else NULL (unchanged, or not an argv array).
 * For rows written before the rule existed (admin redact-audit). */
char *argv_redact_stored(const char *argv_json);

#endif
