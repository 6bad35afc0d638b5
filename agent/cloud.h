/* cloud.h — what the server may run as cloud_exec on this agent.
 *
 *   AURORA_CLOUD_EXEC      enabled (default) | disabled: disabled refuses every
 *                          cloud_exec with POLICY_DENIED, whatever the program.
 *   AURORA_CLOUD_PROGRAMS  the programs the server may name, comma-separated
 *                          (default "gcloud,aws,az").  An entry is a bare name,
 *                          looked up in AURORA_SANDBOX_PATH (the commands' own
 *                          fixed PATH, never the agent's), or name=/absolute/path.
 *                          The server only ever sends a name: where the program
 *                          lives is the agent's decision.
 *
 * Refused with POLICY_DENIED (return code 126), before anything is started:
 * a program not in the list; an environment variable the sandbox does not let
 * the server set (sandbox_env_name_allowed: HOME, PATH, LD_*, …); and the
 * commands whose whole purpose is to print the injected credentials
 * (gcloud auth print-access-token / print-identity-token, gcloud auth
 * application-default print-access-token, gcloud config config-helper, aws
 * configure export-credentials, az account get-access-token).
 * A listed program that is not installed fails with SPAWN_FAILED. */
#ifndef AURORA_AGENT_CLOUD_H
#define AURORA_AGENT_CLOUD_H

#include <stddef.h>

#include "policy.h"

struct cJSON;

typedef struct {
    char *name;
    char *path;      /* absolute; NULL: not installed (looked up again per command) */
    int explicit_path;
} agent_cloud_prog;

typedef struct {
    int enabled;
    agent_cloud_prog *progs;
    int nprogs;
    char *search_path; /* AURORA_SANDBOX_PATH */
} agent_cloud;

/* mode: "enabled"/"disabled" (NULL: enabled); programs: NULL = default list.
 * 0, or -1 with err. */
int agent_cloud_init(agent_cloud *c, const char *mode, const char *programs,
                     const char *search_path, char *err, size_t errlen);
void agent_cloud_free(agent_cloud *c);
/* 1 if the command may run, else 0 with d->reason.  argv excludes the
 * program; env holds nenv "NAME=value" strings (values are never read). */
int agent_cloud_check(const agent_cloud *c, const char *program, int argc,
                      const char *const *argv, char *const *env, int nenv,
                      agent_policy_decision *d);
/* malloc'd absolute path of an allowed program, NULL if it is not installed. */
char *agent_cloud_path(const agent_cloud *c, const char *program);
/* {"enabled":…,"programs":[…]} for register; NULL on OOM. */
struct cJSON *agent_cloud_json(const agent_cloud *c);

#endif
