/* cloud.h — what the server may run as cloud_exec on this agent.
 *
 *   AURORA_CLOUD_EXEC      enabled (default) | disabled: disabled refuses every
 *                          cloud_exec with POLICY_DENIED, whatever the program.
 *   AURORA_CLOUD_PROGRAMS  the programs the server may name, comma-separated
 *                          (default "gcloud,aws,az"): each a CLI with a plug-in
 *                          (cloud_cli.h).  An entry is a bare name, looked up in
 *                          AURORA_SANDBOX_PATH (the commands' own fixed PATH,
 *                          never the agent's), or name=/absolute/path.  The
 *                          server only ever sends a name: where the program
 *                          lives is the agent's decision.
 *   AURORA_CLOUD_ENV       the operator's variables for one CLI, comma-separated
 *                          "cli:NAME=value" entries (values without commas), e.g.
 *                          "gcloud:CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE=https://…,
 *                          az:AZURE_ARM_ENDPOINT_OVERRIDE=https://…/": endpoints,
 *                          proxies, CA bundles — what the server may not set.
 *                          Names the sandbox protects (HOME, PATH, LD_*, …) are
 *                          refused.  Values are never logged.
 *
 * Refused with POLICY_DENIED (return code 126), before anything is started:
 * a program not in the list; an environment variable from the server that is
 * not in the CLI's allowlist (credentials, region/project, output, exactly
 * named: cloud_gcloud.c, cloud_aws.c, cloud_az.c), that is set twice, or that
 * the operator set (AURORA_CLOUD_ENV, AURORA_SANDBOX_ENV_PASSTHROUGH) to
 * another value — the server may repeat the operator's value, nothing more;
 * and the commands whose whole purpose is to print the injected credentials
 * (each plug-in's printers: gcloud auth print-access-token, aws configure
 * export-credentials, az account get-access-token, …), and an argument that
 * names the command's own process files, where its credentials are
 * (cloud_paths.h: /proc, /dev, `file://` paths with '$').  A listed program that
 * is not installed fails with SPAWN_FAILED. */
#ifndef AURORA_AGENT_CLOUD_H
#define AURORA_AGENT_CLOUD_H

#include <stddef.h>

#include "cloud_cli.h"
#include "policy.h"
#include "sandbox.h"

struct cJSON;

typedef struct {
    char *name;
    char *path;      /* absolute; NULL: not installed (looked up again per command) */
    int explicit_path;
    const cloud_cli *cli;      /* its plug-in */
    sandbox_profile profile;   /* the plug-in and the operator's AURORA_CLOUD_ENV entries */
    cloud_cli_version version; /* agent_cloud_probe */
    int probed;
} agent_cloud_prog;

typedef struct {
    int enabled;
    agent_cloud_prog *progs;
    int nprogs;
    char *search_path; /* AURORA_SANDBOX_PATH */
} agent_cloud;

/* mode: "enabled"/"disabled" (NULL: enabled); programs: NULL = default list;
 * cli_env: AURORA_CLOUD_ENV (NULL: none).  0, or -1 with err (never a value). */
int agent_cloud_init(agent_cloud *c, const char *mode, const char *programs,
                     const char *cli_env, const char *search_path, char *err, size_t errlen);
void agent_cloud_free(agent_cloud *c);
/* 1 if the command may run, else 0 with d->reason (which names variables,
 * never values).  argv excludes the program; env holds nenv "NAME=value". */
int agent_cloud_check(const agent_cloud *c, const char *program, int argc,
                      const char *const *argv, char *const *env, int nenv,
                      agent_policy_decision *d);
/* malloc'd absolute path of an allowed program, NULL if it is not installed. */
char *agent_cloud_path(const agent_cloud *c, const char *program);
/* What the sandbox needs to run program (its plug-in, the operator's
 * variables); NULL for a program not in the list.  Lives as long as c. */
const sandbox_profile *agent_cloud_profile(const agent_cloud *c, const char *program);
/* At start, after sandbox_init: each program's version (its plug-in's probe),
 * logged — with a warning when the plug-in has one (az: an untested MSAL) or
 * when Landlock would not let the sandbox read the program. */
void agent_cloud_probe(agent_cloud *c);
/* {"enabled","programs":[…],"uid_separation","versions":{name:{"version",
 *  "detail"?,"warning"?}},"sandbox":{…sandbox_isolation_json}} for register;
 * NULL on OOM. */
struct cJSON *agent_cloud_json(const agent_cloud *c);

#endif
