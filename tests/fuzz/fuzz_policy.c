/* fuzz_policy.c — the agent's kubectl policy (agent/policy.c): the server
 * (or whoever holds it) chooses the argv, the policy decides what runs.
 *
 * Input: the argv words separated by NUL bytes.  An input starting with
 * "\x01" instead fuzzes the configuration: "\x01mode\0allow\0deny".
 *
 * Invariants checked for every argv, in every policy below:
 *  - no crash, no leak; a decision is the return value, a refusal says why,
 *    the verb label is printable;
 *  - a flag the policy refuses is never allowed, whatever surrounds it.  The
 *    oracle models kubectl's flag parser (pflag) independently of policy.c:
 *    long flags are matched after kubectl's own normalisation (`_` is read
 *    as `-`: `--client_key` IS `--client-key`), a cluster of shorthands is
 *    read from its first letter, -o/--output formats that read a template
 *    file count as local files, and only a `--` that ends the flags (not
 *    the value of the flag before it) stops the scan;
 *  - the modes agree with each other: readonly == custom "@readonly";
 *    readonly-allowed => readwrite-allowed; custom "*"-allowed and not
 *    `config` => readwrite-allowed; a deny list only ever removes;
 *  - the same argv gets the same decision twice. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fuzz_util.h"
#include "policy.h"

enum { P_RO, P_RW, P_CUSTOM_RO, P_CUSTOM_ALL, P_RO_DENY, P_RW_DENY, NPOL };
static agent_policy pol[NPOL];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[256];
    if (agent_policy_init(&pol[P_RO], "readonly", NULL, NULL, err, sizeof(err)) ||
        agent_policy_init(&pol[P_RW], "readwrite", NULL, NULL, err, sizeof(err)) ||
        agent_policy_init(&pol[P_CUSTOM_RO], "custom", "@readonly", NULL, err, sizeof(err)) ||
        agent_policy_init(&pol[P_CUSTOM_ALL], "custom", "*", NULL, err, sizeof(err)) ||
        agent_policy_init(&pol[P_RO_DENY], "readonly", NULL, "logs, rollout history, top pod",
                          err, sizeof(err)) ||
        agent_policy_init(&pol[P_RW_DENY], "readwrite", NULL, "delete, exec, rollout restart",
                          err, sizeof(err)))
        fuzz_fail("policy setup: %s", err);
    return 0;
}

/* ---- the oracle: what kubectl would read as a flag ----------------------------- */

static const char *const connection[] = {
    "kubeconfig", "server", "token", "username", "password", "certificate-authority",
    "client-certificate", "client-key", "tls-server-name", "insecure-skip-tls-verify",
    "context", "cluster", "user", "kuberc", NULL};
static const char *const impersonation[] = {"as", "as-group", "as-uid", NULL};
/* local paths and URLs: read (filename, kustomize, template-file) or written
 * (profile-output, output-directory, cache-dir, log-file, log-dir) */
static const char *const local[] = {"filename", "kustomize", "profile", "profile-output",
                                    "output-directory", "cache-dir", "template-file",
                                    "log-file", "log-dir",
                                    "insecure-skip-tls-verify-backend", NULL};

/* The flag name of a long-flag word as pflag sees it: after "--", up to '=',
 * with '_' normalised to '-' (kubectl's WordSepNormalizeFunc). */
static void long_name(const char *w, char *out, size_t cap)
{
    size_t k = 0;
    for (const char *p = w + 2; *p && *p != '=' && k + 1 < cap; p++)
        out[k++] = *p == '_' ? '-' : *p;
    out[k] = '\0';
}

static int listed(const char *const *l, const char *name)
{
    for (int i = 0; l[i]; i++)
        if (!strcmp(l[i], name))
            return 1;
    return 0;
}

/* kubectl's boolean flags (they never take the next word as their value) that
 * commands with a remote command (exec, run, debug, attach) put before `--`. */
static const char *const bools[] = {
    "stdin", "tty", "quiet", "all", "all-namespaces", "watch", "follow", "previous",
    "timestamps", "no-headers", "show-labels", "ignore-errors", "disable-compression",
    "match-server-version", "warnings-as-errors", NULL};

/* Does the `--` at argv[i] end kubectl's flags, i.e. is it not the value of
 * the flag before it?  Unknown cases count as "not": the scan goes on. */
static int ends_flags(int i, char **argv)
{
    if (i == 0)
        return 1;
    const char *p = argv[i - 1];
    if (p[0] != '-' || !p[1])
        return 1; /* a word, or a lone "-" (a positional argument) */
    if (p[1] == '-') {
        char name[128];
        long_name(p, name, sizeof(name));
        return strchr(p, '=') || listed(bools, name);
    }
    return strspn(p + 1, "it") == strlen(p + 1); /* -i, -t, -it: --stdin, --tty */
}

/* An -o/--output value that makes kubectl read a template file: the format
 * alone (the path in --template) or "format=path" (kubectl's printers). */
static int file_format(const char *v)
{
    static const char *const formats[] = {"jsonpath-file", "go-template-file", "templatefile",
                                          "custom-columns-file", NULL};
    if (v && *v == '=')
        v++;
    for (int i = 0; v && formats[i]; i++) {
        size_t n = strlen(formats[i]);
        if (!strncmp(v, formats[i], n) && (v[n] == '\0' || v[n] == '='))
            return 1;
    }
    return 0;
}

typedef struct {
    int connection, impersonation, local;
    const char *what; /* the first refused flag found, for the report */
} oracle;

static void scan(int argc, char **argv, oracle *o)
{
    memset(o, 0, sizeof(*o));
    int logs = 0;
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "logs"))
            logs = 1; /* `logs -f` is --follow: leave -f alone whenever logs appears */
    for (int i = 0; i < argc; i++) {
        const char *w = argv[i];
        if (!strcmp(w, "--")) {
            if (ends_flags(i, argv))
                return;
            continue;
        }
        if (w[0] != '-' || !w[1])
            continue;
        if (w[1] == '-') {
            char name[128];
            long_name(w, name, sizeof(name));
            if (listed(connection, name) && !o->connection)
                o->connection = 1, o->what = w;
            if (listed(impersonation, name) && !o->impersonation)
                o->impersonation = 1, o->what = w;
            if (listed(local, name) && !o->local)
                o->local = 1, o->what = w;
            const char *eq = strchr(w, '=');
            const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[i + 1] : NULL);
            if (!strcmp(name, "output") && file_format(val) && !o->local)
                o->local = 1, o->what = w;
        } else {
            /* the first letter of a shorthand cluster is always a flag */
            if (w[1] == 's' && !o->connection)
                o->connection = 1, o->what = w;
            if ((w[1] == 'k' || (w[1] == 'f' && !logs)) && !o->local)
                o->local = 1, o->what = w;
            const char *val = w[2] ? w + 2 : (i + 1 < argc ? argv[i + 1] : NULL);
            if (w[1] == 'o' && file_format(val) && !o->local)
                o->local = 1, o->what = w;
        }
    }
}

/* ---- checks -------------------------------------------------------------------- */

static int decide(int k, int argc, char **argv, agent_policy_decision *d)
{
    int allowed = agent_policy_check(&pol[k], argc, (const char *const *)argv, d);
    FUZZ_CHECK(allowed == 0 || allowed == 1, "policy %d returned %d", k, allowed);
    FUZZ_CHECK(d->allowed == allowed, "policy %d: d->allowed %d, returned %d", k, d->allowed,
               allowed);
    FUZZ_CHECK(allowed || d->reason[0], "policy %d refused without a reason", k);
    FUZZ_CHECK(memchr(d->verb, '\0', sizeof(d->verb)) && memchr(d->reason, '\0', sizeof(d->reason)),
               "policy %d: unterminated verb/reason", k);
    for (const char *c = d->verb; *c; c++)
        FUZZ_CHECK(*c >= 0x20 && *c < 0x7f, "policy %d: unprintable verb label", k);
    return allowed;
}

static void check_argv(int argc, char **argv)
{
    agent_policy_decision d[NPOL];
    int ok[NPOL];
    for (int k = 0; k < NPOL; k++)
        ok[k] = decide(k, argc, argv, &d[k]);

    oracle o;
    scan(argc, argv, &o);
    for (int k = 0; k < NPOL; k++) {
        int strict = pol[k].mode != POLICY_READWRITE;
        FUZZ_CHECK(!ok[k] || !o.connection,
                   "policy %d allowed a connection flag (%s): kubectl talks to another "
                   "cluster or with other credentials",
                   k, o.what);
        FUZZ_CHECK(!ok[k] || !strict || !o.impersonation,
                   "policy %d (%s) allowed impersonation (%s)", k,
                   agent_policy_mode_name(pol[k].mode), o.what);
        FUZZ_CHECK(!ok[k] || !strict || !o.local,
                   "policy %d (%s) allowed a local-file flag (%s)", k,
                   agent_policy_mode_name(pol[k].mode), o.what);
    }

    FUZZ_CHECK(ok[P_RO] == ok[P_CUSTOM_RO], "readonly %d but custom @readonly %d (verb %s)",
               ok[P_RO], ok[P_CUSTOM_RO], d[P_RO].verb);
    FUZZ_CHECK(!ok[P_RO] || ok[P_RW], "readonly allows what readwrite refuses: %s",
               d[P_RW].reason);
    FUZZ_CHECK(!ok[P_CUSTOM_ALL] || ok[P_RW] || !strncmp(d[P_CUSTOM_ALL].verb, "config", 6),
               "custom * allows what readwrite refuses: %s", d[P_RW].reason);
    FUZZ_CHECK(!ok[P_RO_DENY] || ok[P_RO], "a deny list allowed more (readonly)");
    FUZZ_CHECK(!ok[P_RW_DENY] || ok[P_RW], "a deny list allowed more (readwrite)");

    agent_policy_decision again;
    FUZZ_CHECK(decide(P_RO, argc, argv, &again) == ok[P_RO] &&
                   !strcmp(again.reason, d[P_RO].reason),
               "readonly decided differently the second time");
}

static void check_config(char **parts, int n)
{
    agent_policy p;
    char err[256] = "";
    const char *mode = parts[0];
    const char *allow = n > 1 ? parts[1] : NULL;
    const char *deny = n > 2 ? parts[2] : NULL;
    if (agent_policy_init(&p, mode, allow, deny, err, sizeof(err)) != 0) {
        FUZZ_CHECK(err[0], "agent_policy_init failed without a message");
        return;
    }
    FUZZ_CHECK(p.nallow >= 0 && p.nallow <= POLICY_MAX_ENTRIES && p.ndeny >= 0 &&
                   p.ndeny <= POLICY_MAX_ENTRIES,
               "policy lists out of bounds");
    cJSON *j = agent_policy_json(&p);
    FUZZ_CHECK(j != NULL, "agent_policy_json failed");
    cJSON_Delete(j);
    /* a configured policy still refuses connection flags */
    const char *probe[] = {"get", "pods", "--kubeconfig=/etc/passwd"};
    agent_policy_decision d;
    FUZZ_CHECK(!agent_policy_check(&p, 3, probe, &d), "a policy allowed --kubeconfig");
    agent_policy_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 0 && data[0] == 0x01) {
        char *parts[3];
        char *owned = NULL;
        int n = fuzz_split(data + 1, size - 1, parts, 3, &owned);
        check_config(parts, n);
        free(owned);
        return 0;
    }
    char *argv[64];
    char *owned = NULL;
    int argc = fuzz_split(data, size, argv, 64, &owned);
    check_argv(argc, argv);
    free(owned);
    return 0;
}
