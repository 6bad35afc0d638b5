/* policy.c — which kubectl commands the agent runs (see policy.h).
 *
 * The verb is found the way kubectl's command parser (cobra/pflag) finds it:
 * the first word that is not a flag or a flag's value.  Only kubectl's global
 * flags can stand before the verb, so those are known exactly (which take a
 * value, which do not); anything else there makes the verb unknowable and the
 * command is refused. */
#include "policy.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- kubectl's vocabulary (v1.32) ------------------------------------------ */

/* global flags that take a value (as `--f v`, `--f=v`) */
static const char *const global_value_flags[] = {
    "as", "as-group", "as-uid", "cache-dir", "certificate-authority", "client-certificate",
    "client-key", "cluster", "context", "kubeconfig", "log-flush-frequency", "namespace",
    "password", "profile", "profile-output", "request-timeout", "server", "tls-server-name",
    "token", "user", "username", "v", "vmodule", NULL};
/* global boolean flags */
static const char *const global_bool_flags[] = {
    "disable-compression", "insecure-skip-tls-verify", "match-server-version",
    "warnings-as-errors", NULL};
/* global shorthands, all taking a value: -n namespace, -s server, -v level */
#define GLOBAL_SHORT_VALUE "nsv"

/* What the policy does with each kubectl flag that names a file, a
 * directory or a URL, or that picks the cluster or the credentials.
 * kubectl runs as the agent (no private scratch directory of its own, unlike
 * cloud_exec's sandbox), so "only inside the command's scratch" is not an
 * option: a flag that reads or writes where the caller says is refused
 * unless the policy is readwrite (which already lets `cp` write local files).
 * pflag normalises '_' to '-' in flag names (`--cache_dir` is `--cache-dir`),
 * so names are compared normalised.
 *
 *   flag                          does                           readonly/custom  readwrite
 *   --kubeconfig                  reads a kubeconfig             refused          refused
 *   --certificate-authority       reads a CA file                refused          refused
 *   --client-certificate          reads a certificate            refused          refused
 *   --client-key                  reads a private key            refused          refused
 *   --token, --username,          other credentials              refused          refused
 *     --password, --user
 *   -s/--server, --cluster,       another API server             refused          refused
 *     --context, --tls-server-name,
 *     --insecure-skip-tls-verify
 *   --kuberc (kubectl >= 1.33)    reads preferences that add     refused          refused
 *                                 default flags to every command
 *   --as, --as-group, --as-uid    impersonation                  refused          allowed
 *   --cache-dir                   writes the discovery/HTTP      refused          allowed
 *                                 cache under the given path
 *   -f/--filename                 reads local files, dirs, URLs  refused          allowed
 *                                 (also on reads: get -f, wait -f)
 *   -k/--kustomize                reads a kustomization dir      refused          allowed
 *   -o/--output *file formats     reads a template file          refused          allowed
 *     (go-template-file, templatefile, jsonpath-file, custom-columns-file;
 *     --template then names the file)
 *   --template-file               not a kubectl flag (kubectl    refused          allowed
 *                                 says "unknown flag"); refused in case one appears
 *   --output-directory            cluster-info dump writes files refused          allowed
 *   --profile, --profile-output   write a pprof file             refused          allowed
 *   --log-file, --log-dir         klog's file output (not in     refused          allowed
 *     (also --log_dir)            kubectl 1.32; other builds)
 *   --insecure-skip-tls-verify-   weaker kubelet TLS (logs)      refused          allowed
 *     backend
 *   `logs -f` is --follow, not --filename. */
static const char *const connection_flags[] = {
    "kubeconfig", "server", "token", "username", "password", "certificate-authority",
    "client-certificate", "client-key", "tls-server-name", "insecure-skip-tls-verify",
    "context", "cluster", "user", "kuberc", NULL};
/* refused unless readwrite */
static const char *const impersonation_flags[] = {"as", "as-group", "as-uid", NULL};
/* refused unless readwrite: local files, URLs, weaker kubelet TLS */
static const char *const local_flags[] = {
    "filename", "kustomize", "profile", "profile-output", "output-directory", "cache-dir",
    "template-file", "log-file", "log-dir", "insecure-skip-tls-verify-backend", NULL};
/* long boolean flags after which a `--` really ends the flags */
static const char *const bool_flags_before_dashdash[] = {
    "stdin", "tty", "quiet", "all", "all-namespaces", "watch", "follow", "previous",
    "timestamps", "no-headers", "show-labels", "ignore-errors", "disable-compression",
    "match-server-version", "warnings-as-errors", NULL};

typedef struct {
    const char *name;
    int read;                         /* readonly allows it (for groups: when no subcommand) */
    const char *const *read_subs;     /* groups: subcommands readonly allows */
    const char *const *subs;          /* groups: every subcommand (NULL = not a group) */
} verb_info;

static const char *const rollout_read[] = {"status", "history", NULL};
static const char *const rollout_all[] = {"status", "history", "restart", "undo", "pause",
                                          "resume", NULL};
static const char *const auth_read[] = {"can-i", "whoami", NULL};
static const char *const auth_all[] = {"can-i", "whoami", "reconcile", NULL};
static const char *const apply_read[] = {"view-last-applied", NULL};
static const char *const apply_all[] = {"view-last-applied", "edit-last-applied",
                                        "set-last-applied", NULL};
static const char *const plugin_read[] = {"list", NULL};
static const char *const top_all[] = {"node", "nodes", "no", "pod", "pods", "po", NULL};
static const char *const cinfo_all[] = {"dump", NULL};
static const char *const cert_all[] = {"approve", "deny", NULL};
static const char *const config_all[] = {
    "current-context", "delete-cluster", "delete-context", "delete-user", "get-clusters",
    "get-contexts", "get-users", "rename-context", "set", "set-cluster", "set-context",
    "set-credentials", "unset", "use-context", "view", NULL};
static const char *const set_all[] = {"env", "image", "resources", "selector", "serviceaccount",
                                      "sa", "subject", NULL};
static const char *const create_all[] = {
    "clusterrole", "clusterrolebinding", "configmap", "cm", "cronjob", "cj", "deployment",
    "deploy", "ingress", "ing", "job", "namespace", "ns", "poddisruptionbudget", "pdb",
    "priorityclass", "pc", "quota", "resourcequota", "role", "rolebinding", "secret", "service",
    "svc", "serviceaccount", "sa", "token", NULL};
static const char *const none[] = {NULL};

/* Subcommands kubectl (cobra) also runs under another name: `create cm` is
 * `create configmap`, `set sa` is `set serviceaccount`.  Lists are matched
 * on the command's own name, so that a deny entry cannot be passed by
 * sending an alias (and an entry may be written with one). */
typedef struct {
    const char *group, *alias, *name;
} sub_alias;
static const sub_alias sub_aliases[] = {
    {"create", "cm", "configmap"},         {"create", "cj", "cronjob"},
    {"create", "deploy", "deployment"},    {"create", "ing", "ingress"},
    {"create", "ns", "namespace"},         {"create", "pdb", "poddisruptionbudget"},
    {"create", "pc", "priorityclass"},     {"create", "resourcequota", "quota"},
    {"create", "svc", "service"},          {"create", "sa", "serviceaccount"},
    {"set", "sa", "serviceaccount"},       {"top", "nodes", "node"},
    {"top", "no", "node"},                 {"top", "pods", "pod"},
    {"top", "po", "pod"},
};

/* the name of group's subcommand sub, whichever of its names sub is */
static const char *sub_name(const char *group, const char *sub)
{
    for (size_t i = 0; i < sizeof(sub_aliases) / sizeof(sub_aliases[0]); i++)
        if (!strcmp(sub_aliases[i].group, group) && !strcmp(sub_aliases[i].alias, sub))
            return sub_aliases[i].name;
    return sub;
}

static const verb_info verbs[] = {
    /* read */
    {"get", 1, NULL, NULL},
    {"describe", 1, NULL, NULL},
    {"logs", 1, NULL, NULL},
    {"top", 1, top_all, top_all},
    {"explain", 1, NULL, NULL},
    {"api-resources", 1, NULL, NULL},
    {"api-versions", 1, NULL, NULL},
    {"version", 1, NULL, NULL},
    {"cluster-info", 1, cinfo_all, cinfo_all},
    {"events", 1, NULL, NULL},
    {"wait", 1, NULL, NULL},
    {"completion", 1, NULL, NULL},
    {"options", 1, NULL, NULL},
    {"help", 1, NULL, NULL},
    /* groups with read and write subcommands; alone they print help */
    {"rollout", 1, rollout_read, rollout_all},
    {"auth", 1, auth_read, auth_all},
    {"plugin", 1, plugin_read, plugin_read},
    /* `apply` alone applies */
    {"apply", 0, apply_read, apply_all},
    /* write */
    {"certificate", 0, none, cert_all},
    {"config", 0, none, config_all},
    {"create", 0, none, create_all},
    {"set", 0, none, set_all},
    {"alpha", 0, none, none},
    {"expose", 0, NULL, NULL},
    {"run", 0, NULL, NULL},
    {"edit", 0, NULL, NULL},
    {"delete", 0, NULL, NULL},
    {"scale", 0, NULL, NULL},
    {"autoscale", 0, NULL, NULL},
    {"cordon", 0, NULL, NULL},
    {"uncordon", 0, NULL, NULL},
    {"drain", 0, NULL, NULL},
    {"taint", 0, NULL, NULL},
    {"attach", 0, NULL, NULL},
    {"exec", 0, NULL, NULL},
    {"port-forward", 0, NULL, NULL},
    {"proxy", 0, NULL, NULL},
    {"cp", 0, NULL, NULL},
    {"debug", 0, NULL, NULL},
    {"diff", 0, NULL, NULL},
    {"patch", 0, NULL, NULL},
    {"replace", 0, NULL, NULL},
    {"kustomize", 0, NULL, NULL},
    {"label", 0, NULL, NULL},
    {"annotate", 0, NULL, NULL},
};
#define NVERBS (sizeof(verbs) / sizeof(verbs[0]))

/* ---- small helpers --------------------------------------------------------- */

static int in_list(const char *const *list, const char *s, size_t n)
{
    for (int i = 0; list && list[i]; i++)
        if (strlen(list[i]) == n && !strncmp(list[i], s, n))
            return 1;
    return 0;
}

/* The name of the long flag t ("--name" or "--name=value") into out, with
 * '_' as '-' as pflag normalises it (kubectl's WordSepNormalizeFunc);
 * returns its length (names longer than out are cut, and match nothing). */
static size_t flag_name(const char *t, char *out, size_t cap)
{
    const char *name = t + 2;
    size_t n = strcspn(name, "=");
    size_t k = 0;
    for (; k < n && k + 1 < cap; k++)
        out[k] = name[k] == '_' ? '-' : name[k];
    out[k] = '\0';
    return n < cap ? n : cap; /* a cut name has a length no entry has */
}

static const verb_info *find_verb(const char *name)
{
    for (size_t i = 0; i < NVERBS; i++)
        if (!strcmp(verbs[i].name, name))
            return &verbs[i];
    return NULL;
}

/* printable, bounded copy of untrusted text for messages */
static void safe_copy(char *dst, size_t dstlen, const char *src)
{
    size_t k = 0;
    for (size_t i = 0; src && src[i] && k + 1 < dstlen; i++) {
        if (i >= 60) {
            if (k + 4 < dstlen) {
                memcpy(dst + k, "...", 3);
                k += 3;
            }
            break;
        }
        unsigned char c = (unsigned char)src[i];
        dst[k++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    dst[k] = '\0';
}

const char *agent_policy_mode_name(agent_policy_mode m)
{
    return m == POLICY_READWRITE ? "readwrite" : m == POLICY_CUSTOM ? "custom" : "readonly";
}

/* ---- configuration --------------------------------------------------------- */

static void free_list(char **l, int n)
{
    for (int i = 0; i < n; i++)
        free(l[i]);
    free(l);
}

/* "  Rollout   status " -> "rollout status"; -1 if not a valid entry */
static int normalise_entry(const char *s, size_t n, char *out, size_t outlen)
{
    size_t k = 0;
    int words = 0, in_word = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\t') {
            in_word = 0;
            continue;
        }
        if (!(isalnum(c) || c == '-' || c == '_' || c == '*' || c == '@'))
            return -1;
        if (!in_word) {
            if (++words > 2)
                return -1;
            if (k && k + 1 < outlen)
                out[k++] = ' ';
            in_word = 1;
        }
        if (k + 1 >= outlen)
            return -1;
        out[k++] = (char)tolower(c);
    }
    out[k] = '\0';
    if (k == 0)
        return 0; /* empty entry: skipped */
    if (strchr(out, '*') && strcmp(out, "*"))
        return -1;
    if (strchr(out, '@') && strcmp(out, "@readonly"))
        return -1;
    return 1;
}

static int parse_list(const char *csv, const char *what, char ***out, int *nout, char *err,
                      size_t errlen)
{
    *out = NULL;
    *nout = 0;
    if (!csv)
        return 0;
    char **l = calloc(POLICY_MAX_ENTRIES, sizeof(char *));
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int n = 0;
    const char *p = csv;
    for (;;) {
        const char *e = p;
        while (*e && *e != ',' && *e != '\n')
            e++;
        char entry[80];
        int r = normalise_entry(p, (size_t)(e - p), entry, sizeof(entry));
        if (r < 0) {
            char shown[64];
            char tmp[64];
            size_t len = (size_t)(e - p) < sizeof(tmp) - 1 ? (size_t)(e - p) : sizeof(tmp) - 1;
            memcpy(tmp, p, len);
            tmp[len] = '\0';
            safe_copy(shown, sizeof(shown), tmp);
            snprintf(err, errlen,
                     "%s: invalid entry \"%s\" (expected \"verb\" or \"verb subcommand\", "
                     "\"*\" or \"@readonly\")",
                     what, shown);
            free_list(l, n);
            return -1;
        }
        if (r > 0) {
            int dup = 0;
            for (int i = 0; i < n; i++)
                if (!strcmp(l[i], entry))
                    dup = 1;
            if (!dup) {
                if (n >= POLICY_MAX_ENTRIES) {
                    snprintf(err, errlen, "%s: more than %d entries", what, POLICY_MAX_ENTRIES);
                    free_list(l, n);
                    return -1;
                }
                if (!(l[n] = strdup(entry))) {
                    snprintf(err, errlen, "out of memory");
                    free_list(l, n);
                    return -1;
                }
                n++;
            }
        }
        if (!*e)
            break;
        p = e + 1;
    }
    *out = l;
    *nout = n;
    return 0;
}

/* "verb sub" entries must name a command group and one of its subcommands:
 * a typo would otherwise silently match nothing. */
static int check_entries(char **l, int n, const char *what, char *err, size_t errlen)
{
    for (int i = 0; i < n; i++) {
        const char *sp = strchr(l[i], ' ');
        if (!sp)
            continue;
        char verb[80];
        snprintf(verb, sizeof(verb), "%.*s", (int)(sp - l[i]), l[i]);
        const verb_info *vi = find_verb(verb);
        if (!vi || !vi->subs) {
            snprintf(err, errlen,
                     "%s: \"%s\": kubectl %s has no subcommands (the policy works on commands; "
                     "rules about resources belong in the cluster's RBAC)",
                     what, l[i], verb);
            return -1;
        }
        if (!in_list(vi->subs, sp + 1, strlen(sp + 1))) {
            snprintf(err, errlen, "%s: \"%s\": %s is not a subcommand of kubectl %s", what, l[i],
                     sp + 1, verb);
            return -1;
        }
        const char *name = sub_name(verb, sp + 1);
        if (name != sp + 1) {
            size_t need = strlen(verb) + 1 + strlen(name) + 1;
            char *e = malloc(need);
            if (!e) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            snprintf(e, need, "%s %s", verb, name);
            free(l[i]);
            l[i] = e;
        }
    }
    return 0;
}

int agent_policy_init(agent_policy *p, const char *mode, const char *allow, const char *deny,
                      char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    if (!mode || !*mode || !strcasecmp(mode, "readonly") || !strcasecmp(mode, "read-only"))
        p->mode = POLICY_READONLY;
    else if (!strcasecmp(mode, "readwrite") || !strcasecmp(mode, "read-write"))
        p->mode = POLICY_READWRITE;
    else if (!strcasecmp(mode, "custom"))
        p->mode = POLICY_CUSTOM;
    else {
        char shown[64];
        safe_copy(shown, sizeof(shown), mode);
        snprintf(err, errlen, "AURORA_POLICY_MODE must be readonly, readwrite or custom (got \"%s\")",
                 shown);
        return -1;
    }
    if (parse_list(allow, "AURORA_POLICY_ALLOW", &p->allow, &p->nallow, err, errlen) != 0)
        return -1;
    if (parse_list(deny, "AURORA_POLICY_DENY", &p->deny, &p->ndeny, err, errlen) != 0) {
        agent_policy_free(p);
        return -1;
    }
    if (check_entries(p->allow, p->nallow, "AURORA_POLICY_ALLOW", err, errlen) != 0 ||
        check_entries(p->deny, p->ndeny, "AURORA_POLICY_DENY", err, errlen) != 0) {
        agent_policy_free(p);
        return -1;
    }
    for (int i = 0; i < p->ndeny; i++) {
        if (!strcmp(p->deny[i], "@readonly")) {
            snprintf(err, errlen, "AURORA_POLICY_DENY: \"@readonly\" is only meaningful in "
                                  "AURORA_POLICY_ALLOW");
            agent_policy_free(p);
            return -1;
        }
    }
    return 0;
}

void agent_policy_free(agent_policy *p)
{
    free_list(p->allow, p->nallow);
    free_list(p->deny, p->ndeny);
    memset(p, 0, sizeof(*p));
}

cJSON *agent_policy_json(const agent_policy *p)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *a = cJSON_CreateArray();
    cJSON *d = cJSON_CreateArray();
    if (!o || !a || !d) {
        cJSON_Delete(o);
        cJSON_Delete(a);
        cJSON_Delete(d);
        return NULL;
    }
    cJSON_AddStringToObject(o, "mode", agent_policy_mode_name(p->mode));
    for (int i = 0; i < p->nallow; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(p->allow[i]));
    for (int i = 0; i < p->ndeny; i++)
        cJSON_AddItemToArray(d, cJSON_CreateString(p->deny[i]));
    cJSON_AddItemToObject(o, "allow", a);
    cJSON_AddItemToObject(o, "deny", d);
    return o;
}

/* ---- parsing argv ---------------------------------------------------------- */

enum { PARSE_OK = 0, PARSE_NONE, PARSE_BAD };

/* Finds the first positional word from index *i on, skipping kubectl's global
 * flags.  PARSE_OK (*i at the word), PARSE_NONE (only flags up to the end) or
 * PARSE_BAD (a flag that is not a global one, a `--`, a missing value): why
 * says what. */
static int next_word(int argc, const char *const *argv, int *i, const char **why)
{
    while (*i < argc) {
        const char *t = argv[*i];
        if (!t || !*t) {
            *why = "an empty argument";
            return PARSE_BAD;
        }
        if (t[0] != '-')
            return PARSE_OK;
        if (!strcmp(t, "--")) {
            *why = "a \"--\"";
            return PARSE_BAD;
        }
        if (!strcmp(t, "-")) {
            *why = "a lone \"-\"";
            return PARSE_BAD;
        }
        if (t[1] == '-') {
            char name[80];
            size_t n = flag_name(t, name, sizeof(name));
            const char *eq = strchr(t + 2, '=');
            if (in_list(global_value_flags, name, n)) {
                if (eq) {
                    (*i)++;
                } else if (*i + 1 < argc) {
                    *i += 2;
                } else {
                    *why = "a flag without its value";
                    return PARSE_BAD;
                }
            } else if (in_list(global_bool_flags, name, n)) {
                (*i)++;
            } else {
                *why = "a flag that is not one of kubectl's global flags";
                return PARSE_BAD;
            }
        } else {
            if (!strchr(GLOBAL_SHORT_VALUE, t[1])) {
                *why = "a flag that is not one of kubectl's global flags";
                return PARSE_BAD;
            }
            if (t[2]) {
                (*i)++;
            } else if (*i + 1 < argc) {
                *i += 2;
            } else {
                *why = "a flag without its value";
                return PARSE_BAD;
            }
        }
    }
    return PARSE_NONE;
}

typedef struct {
    const char *verb;       /* NULL: none */
    const verb_info *vi;    /* NULL: not a built-in (plugin) */
    const char *sub;        /* groups: the subcommand, NULL if none / unknown */
    const char *sub_name;   /* and its own name when sub is an alias (sub_name()) */
    int sub_state;          /* PARSE_OK, PARSE_NONE, PARSE_BAD (undeterminable) */
    char label[80];         /* "verb" or "verb sub", printable */
} parsed_cmd;

static int valid_word(const char *w)
{
    if (!*w || strlen(w) > 64)
        return 0;
    for (const char *c = w; *c; c++)
        if (!(isalnum((unsigned char)*c) || *c == '-' || *c == '_' || *c == '.'))
            return 0;
    return 1;
}

/* flag scanning ------------------------------------------------------------- */

typedef struct {
    int connection;     /* refuse connection_flags */
    int impersonation;  /* refuse impersonation_flags */
    int local;          /* refuse local_flags, -f/-k, -o *-file */
    const char *verb;
} scan_rules;

static int file_output_format(const char *v)
{
    if (!v)
        return 0;
    if (*v == '=')
        v++;
    const char *eq = strchr(v, '=');
    size_t n = eq ? (size_t)(eq - v) : strlen(v);
    return n >= 4 && !strncmp(v + n - 4, "file", 4);
}

/* Does `--` at index i end kubectl's flags (rather than being a flag's value)? */
static int ends_flags(int i, const char *const *argv)
{
    if (i == 0)
        return 1;
    const char *p = argv[i - 1];
    if (p[0] != '-' || !strcmp(p, "-"))
        return 1;
    if (p[1] == '-') {
        if (strchr(p, '='))
            return 1;
    {
        char name[80];
        size_t n = flag_name(p, name, sizeof(name));
        return in_list(bool_flags_before_dashdash, name, n);
    }
    }
    for (const char *c = p + 1; *c; c++)
        if (*c != 'i' && *c != 't')
            return 0;
    return 1;
}

static int deny_flag(agent_policy_decision *d, const char *flag, const char *why)
{
    char shown[72];
    safe_copy(shown, sizeof(shown), flag);
    snprintf(d->reason, sizeof(d->reason), "flag %s is not allowed: %s", shown, why);
    return 0;
}

#define WHY_CONNECTION "the agent only talks to its own cluster with its own credentials"
#define WHY_IMPERSONATION "impersonation needs the readwrite policy"
#define WHY_LOCAL "reading the agent's local files or fetching URLs needs the readwrite policy"

/* 1 if every flag is acceptable, else 0 with d->reason. */
static int scan_flags(int argc, const char *const *argv, const scan_rules *r,
                      agent_policy_decision *d)
{
    int is_logs = r->verb && !strcmp(r->verb, "logs");
    for (int i = 0; i < argc; i++) {
        const char *t = argv[i];
        if (t[0] != '-' || !t[1])
            continue;
        if (!strcmp(t, "--")) {
            if (ends_flags(i, argv))
                return 1;
            continue;
        }
        if (t[1] == '-') {
            char name[80];
            size_t n = flag_name(t, name, sizeof(name));
            const char *eq = strchr(t + 2, '=');
            char flag[72];
            snprintf(flag, sizeof(flag), "--%.*s", (int)(n < 60 ? n : 60), t + 2);
            if (r->connection && in_list(connection_flags, name, n))
                return deny_flag(d, flag, WHY_CONNECTION);
            if (r->impersonation && in_list(impersonation_flags, name, n))
                return deny_flag(d, flag, WHY_IMPERSONATION);
            if (r->local && in_list(local_flags, name, n))
                return deny_flag(d, flag, WHY_LOCAL);
            if (r->local && n == 6 && !strncmp(name, "output", 6)) {
                const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[i + 1] : NULL);
                if (file_output_format(v))
                    return deny_flag(d, "--output with a *-file format", WHY_LOCAL);
            }
            continue;
        }
        /* a cluster of shorthands: -it, -nprod, -ojson, -o=json, -lapp=x */
        for (const char *c = t + 1; *c; c++) {
            if (*c == 's') {
                if (r->connection)
                    return deny_flag(d, "-s (--server)", WHY_CONNECTION);
                break;
            }
            if (*c == 'o') {
                const char *v = c[1] ? c + 1 : (i + 1 < argc ? argv[i + 1] : NULL);
                if (r->local && file_output_format(v))
                    return deny_flag(d, "-o with a *-file format", WHY_LOCAL);
                break;
            }
            if (*c == 'f' && is_logs)
                continue; /* logs -f: --follow */
            if (*c == 'f' || *c == 'k') {
                if (r->local)
                    return deny_flag(d, *c == 'f' ? "-f (--filename)" : "-k (--kustomize)",
                                     WHY_LOCAL);
                break;
            }
            if (strchr("nvlcL", *c))
                break; /* takes a value: the rest is that value */
            if (*c == '=')
                break;
        }
    }
    return 1;
}

/* deny / allow lists ---------------------------------------------------------- */

/* entry "v" or "v s" against the command; for a deny entry an undeterminable
 * subcommand counts as a match, for an allow entry it does not. */
static int entry_matches(const char *entry, const parsed_cmd *pc, int for_deny)
{
    const char *sp = strchr(entry, ' ');
    size_t vn = sp ? (size_t)(sp - entry) : strlen(entry);
    if (strlen(pc->verb) != vn || strncmp(entry, pc->verb, vn))
        return 0;
    if (!sp)
        return 1;
    if (pc->sub_state == PARSE_BAD)
        return for_deny;
    return pc->sub_name && !strcmp(pc->sub_name, sp + 1);
}

/* readonly's verb rule (not its flag rules) */
static int readonly_verb_ok(const parsed_cmd *pc)
{
    const verb_info *vi = pc->vi;
    if (!vi)
        return 0;
    if (!vi->subs)
        return vi->read;
    if (pc->sub_state == PARSE_NONE)
        return vi->read; /* group alone: help (or, for apply, applying) */
    if (pc->sub_state == PARSE_BAD || !pc->sub)
        return 0;
    return in_list(vi->read_subs, pc->sub, strlen(pc->sub));
}

int agent_policy_check(const agent_policy *p, int argc, const char *const *argv,
                       agent_policy_decision *d)
{
    memset(d, 0, sizeof(*d));
    if (argc <= 0 || !argv) {
        snprintf(d->reason, sizeof(d->reason), "empty kubectl command");
        return 0;
    }
    for (int i = 0; i < argc; i++) {
        if (!argv[i]) {
            snprintf(d->reason, sizeof(d->reason), "malformed command");
            return 0;
        }
    }

    /* the verb */
    parsed_cmd pc;
    memset(&pc, 0, sizeof(pc));
    int i = 0;
    const char *why = "";
    int r = next_word(argc, argv, &i, &why);
    if (r != PARSE_OK) {
        if (r == PARSE_NONE)
            snprintf(d->reason, sizeof(d->reason), "no kubectl command given, only flags");
        else
            snprintf(d->reason, sizeof(d->reason),
                     "cannot tell which kubectl command this is: %s stands before the command",
                     why);
        return 0;
    }
    pc.verb = argv[i];
    safe_copy(d->verb, sizeof(d->verb), pc.verb);
    if (!valid_word(pc.verb)) {
        snprintf(d->reason, sizeof(d->reason), "\"%s\" is not a kubectl command", d->verb);
        return 0;
    }
    pc.vi = find_verb(pc.verb);
    pc.sub_state = PARSE_NONE;
    if (pc.vi && pc.vi->subs) {
        int j = i + 1;
        int s = next_word(argc, argv, &j, &why);
        pc.sub_state = s;
        if (s == PARSE_OK && valid_word(argv[j])) {
            pc.sub = argv[j];
            pc.sub_name = sub_name(pc.verb, pc.sub);
        }
        else if (s == PARSE_OK)
            pc.sub_state = PARSE_BAD;
    }
    if (pc.sub)
        snprintf(pc.label, sizeof(pc.label), "%.36s %.36s", pc.verb, pc.sub);
    else
        snprintf(pc.label, sizeof(pc.label), "%.64s", pc.verb);
    safe_copy(d->verb, sizeof(d->verb), pc.label);

    /* deny list: every mode */
    for (int k = 0; k < p->ndeny; k++) {
        if (!strcmp(p->deny[k], "*") || entry_matches(p->deny[k], &pc, 1)) {
            snprintf(d->reason, sizeof(d->reason),
                     "kubectl %s is denied by the agent's policy (deny list)", d->verb);
            return 0;
        }
    }

    /* the verb rule of the mode */
    scan_rules rules = {.connection = 1, .impersonation = 1, .local = 1, .verb = pc.verb};
    switch (p->mode) {
    case POLICY_READONLY:
        if (!pc.vi) {
            snprintf(d->reason, sizeof(d->reason),
                     "\"%s\" is not a built-in kubectl command; plugins are not run in "
                     "readonly mode", d->verb);
            return 0;
        }
        if (!readonly_verb_ok(&pc)) {
            if (pc.vi->subs && pc.sub_state == PARSE_BAD)
                snprintf(d->reason, sizeof(d->reason),
                         "kubectl %s: cannot tell which subcommand this is (%s); the readonly "
                         "policy refuses it", d->verb, why);
            else
                snprintf(d->reason, sizeof(d->reason),
                         "kubectl %s is not allowed by the agent's readonly policy "
                         "(read-only commands only)", d->verb);
            return 0;
        }
        break;
    case POLICY_READWRITE:
        if (!pc.vi) {
            snprintf(d->reason, sizeof(d->reason),
                     "\"%s\" is not a built-in kubectl command; plugins run only when a "
                     "custom policy allows them by name", d->verb);
            return 0;
        }
        if (!strcmp(pc.verb, "config")) {
            snprintf(d->reason, sizeof(d->reason),
                     "kubectl %s is not allowed: the agent's kubeconfig is not to be read or "
                     "changed (a custom policy may allow it)", d->verb);
            return 0;
        }
        rules.impersonation = 0;
        rules.local = 0;
        break;
    case POLICY_CUSTOM: {
        int ok = 0;
        for (int k = 0; k < p->nallow && !ok; k++) {
            const char *e = p->allow[k];
            if (!strcmp(e, "*"))
                ok = pc.vi != NULL;
            else if (!strcmp(e, "@readonly"))
                ok = readonly_verb_ok(&pc);
            else
                ok = entry_matches(e, &pc, 0);
        }
        if (!ok) {
            snprintf(d->reason, sizeof(d->reason),
                     "kubectl %s is not in the agent's custom allow list", d->verb);
            return 0;
        }
        break;
    }
    }

    if (!scan_flags(argc, argv, &rules, d))
        return 0;
    d->allowed = 1;
    return 1;
}
