/* policy.h — the agent's command policy: what the cluster owner lets the
 * server run.  Enforced in the agent, before anything is spawned, so a
 * compromised or buggy server cannot make it do more than allowed.
 *
 * Modes (AURORA_POLICY_MODE / policy.mode):
 *   readonly  (default) kubectl commands that only read: get, describe, logs,
 *             top, explain, api-resources, api-versions, version, cluster-info,
 *             events, wait, auth can-i|whoami, rollout status|history,
 *             apply view-last-applied, plugin list, completion, options, help.
 *   readwrite every built-in kubectl command except `config` (which edits the
 *             agent's own kubeconfig).  Plugins are not run.
 *   custom    only what AURORA_POLICY_ALLOW names: "verb" (all of it, e.g.
 *             "rollout") or "verb subcommand" ("rollout status"); "*" = every
 *             built-in command, "@readonly" = what readonly allows; a plugin
 *             only when named.
 * AURORA_POLICY_DENY (same syntax, every mode) always wins.
 *
 * Argument rules, whatever the verb:
 *   every mode:     --kubeconfig, -s/--server, --token, --username, --password,
 *                   --certificate-authority, --client-certificate, --client-key,
 *                   --tls-server-name, --insecure-skip-tls-verify, --context,
 *                   --cluster, --user, --kuberc: the agent always talks to its
 *                   own cluster with its own credentials.
 *   readonly/custom: impersonation (--as, --as-group, --as-uid) and reading or
 *                   writing the agent's local files or fetching URLs
 *                   (-f/--filename, -k/--kustomize, -o *-file formats,
 *                   --cache-dir, --profile, --profile-output,
 *                   --output-directory, --log-file, --log-dir, --template-file,
 *                   --insecure-skip-tls-verify-backend).  `logs -f` is follow.
 *                   policy.c has the table of every path-taking flag and why.
 *   Flag names are compared as kubectl's pflag sees them: '_' is '-'
 *   (`--cache_dir`, `--as_group`, `--client_key` are the same flags).
 *   An unrecognised flag before the verb is refused (the verb could not be
 *   known); so is an empty command.
 * Arguments after a `--` that ends kubectl's flags (exec/run/debug) belong to
 * the remote command and are not inspected.
 *
 * A refused command is answered with error_code POLICY_DENIED and return code
 * 126 and is never executed. */
#ifndef AURORA_AGENT_POLICY_H
#define AURORA_AGENT_POLICY_H

#include <stddef.h>

#define EC_POLICY_DENIED "POLICY_DENIED"
#define POLICY_DENIED_RC 126
#define POLICY_MAX_ENTRIES 128

struct cJSON;

typedef enum { POLICY_READONLY = 0, POLICY_READWRITE, POLICY_CUSTOM } agent_policy_mode;

typedef struct {
    agent_policy_mode mode;
    char **allow; /* normalised entries: "verb", "verb sub", "*", "@readonly" */
    int nallow;
    char **deny;
    int ndeny;
} agent_policy;

typedef struct {
    int allowed;
    char verb[80];    /* "get", "rollout status", plugin name… (printable, for logs) */
    char reason[300]; /* why refused: meant for the API caller and the log */
} agent_policy_decision;

/* mode: "readonly" (NULL/empty too), "readwrite" or "custom"; allow/deny:
 * comma-separated entries (NULL or empty: none).  0, or -1 with err. */
int agent_policy_init(agent_policy *p, const char *mode, const char *allow, const char *deny,
                      char *err, size_t errlen);
void agent_policy_free(agent_policy *p);
/* argv without the program name.  Returns d->allowed (1) or 0. */
int agent_policy_check(const agent_policy *p, int argc, const char *const *argv,
                       agent_policy_decision *d);
const char *agent_policy_mode_name(agent_policy_mode m);
/* {"mode":…,"allow":[…],"deny":[…]}; NULL on OOM. */
struct cJSON *agent_policy_json(const agent_policy *p);

#endif
