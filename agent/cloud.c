/* cloud.c — the cloud_exec program list and policy (see cloud.h). */
#include "cloud.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cloud_paths.h"
#include "log.h"
#include "proto.h"
#include "sandbox.h"

#define DEFAULT_PROGRAMS "gcloud,aws,az"
#define MAX_CLI_ENV 32

static void prog_free(agent_cloud_prog *p)
{
    free(p->name);
    free(p->path);
    for (int i = 0; i < p->profile.nenv; i++) {
        explicit_bzero(p->profile.env[i], strlen(p->profile.env[i])); /* a proxy password */
        free(p->profile.env[i]);
    }
    free(p->profile.env);
}

void agent_cloud_free(agent_cloud *c)
{
    for (int i = 0; c->progs && i < c->nprogs; i++)
        prog_free(&c->progs[i]);
    free(c->progs);
    free(c->search_path);
    memset(c, 0, sizeof(*c));
}

static int executable(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111) &&
           access(p, X_OK) == 0;
}

static char *lookup(const char *search_path, const char *name)
{
    char list[4096];
    snprintf(list, sizeof(list), "%s", search_path ? search_path : SANDBOX_DEFAULT_PATH);
    char *save = NULL;
    for (char *d = strtok_r(list, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        if (d[0] != '/')
            continue;
        size_t n = strlen(d) + strlen(name) + 2;
        char *p = malloc(n);
        if (!p)
            return NULL;
        snprintf(p, n, "%s/%s", d, name);
        if (executable(p))
            return p;
        free(p);
    }
    return NULL;
}

static agent_cloud_prog *find_mut(agent_cloud *c, const char *program)
{
    for (int i = 0; program && i < c->nprogs; i++)
        if (!strcmp(c->progs[i].name, program))
            return &c->progs[i];
    return NULL;
}

/* AURORA_CLOUD_ENV: "cli:NAME=value,…" */
static int parse_cli_env(agent_cloud *c, const char *list, char *err, size_t errlen)
{
    const char *p = list;
    while (p && *p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        while (n && (*p == ' ' || *p == '\t' || *p == '\n')) {
            p++;
            n--;
        }
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\n'))
            n--;
        if (n) {
            const char *colon = memchr(p, ':', n);
            const char *eq = colon ? memchr(colon, '=', n - (size_t)(colon - p)) : NULL;
            if (!colon || !eq) {
                snprintf(err, errlen, "AURORA_CLOUD_ENV entries are cli:NAME=value");
                return -1;
            }
            char cli[32];
            size_t cl = (size_t)(colon - p);
            snprintf(cli, sizeof(cli), "%.*s", (int)(cl < sizeof(cli) ? cl : 0), p);
            if (!cloud_cli_find(cli)) {
                snprintf(err, errlen, "AURORA_CLOUD_ENV: %.*s is not a cloud CLI (gcloud, aws, az)",
                         (int)(cl > 32 ? 32 : cl), p);
                return -1;
            }
            const char *name = colon + 1;
            size_t nl = (size_t)(eq - name);
            if (!sandbox_env_name_valid(name, nl) || sandbox_env_name_protected(name, nl)) {
                snprintf(err, errlen, "AURORA_CLOUD_ENV: %.*s is not a name a cloud command may "
                                      "be given (the sandbox sets or protects it)",
                         (int)(nl > 128 ? 128 : nl), name);
                return -1;
            }
            size_t vl = n - (size_t)(eq + 1 - p);
            for (size_t i = 0; i < vl; i++)
                if ((unsigned char)eq[1 + i] < 0x20 || eq[1 + i] == 0x7f) {
                    snprintf(err, errlen, "AURORA_CLOUD_ENV: the value of %.*s has control "
                                          "characters", (int)nl, name);
                    return -1;
                }
            agent_cloud_prog *pr = find_mut(c, cli);
            if (!pr) {
                log_warn("config: AURORA_CLOUD_ENV names %s, which is not in AURORA_CLOUD_PROGRAMS: "
                         "ignored", cli);
            } else {
                sandbox_profile *pf = &pr->profile;
                for (int i = 0; i < pf->nenv; i++)
                    if (!strncmp(pf->env[i], name, nl) && pf->env[i][nl] == '=') {
                        snprintf(err, errlen, "AURORA_CLOUD_ENV sets %s:%.*s twice", cli, (int)nl,
                                 name);
                        return -1;
                    }
                if (pf->nenv >= MAX_CLI_ENV) {
                    snprintf(err, errlen, "AURORA_CLOUD_ENV: at most %d variables per CLI",
                             MAX_CLI_ENV);
                    return -1;
                }
                char **ne = realloc(pf->env, sizeof(char *) * (size_t)(pf->nenv + 1));
                if (!ne) {
                    snprintf(err, errlen, "out of memory");
                    return -1;
                }
                pf->env = ne;
                size_t kvl = n - cl - 1;
                char *kv = malloc(kvl + 1);
                if (!kv) {
                    snprintf(err, errlen, "out of memory");
                    return -1;
                }
                memcpy(kv, name, kvl);
                kv[kvl] = '\0';
                pf->env[pf->nenv++] = kv;
            }
        }
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

int agent_cloud_init(agent_cloud *c, const char *mode, const char *programs,
                     const char *cli_env, const char *search_path, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    if (!mode || !*mode || !strcmp(mode, "enabled") || !strcmp(mode, "true"))
        c->enabled = 1;
    else if (!strcmp(mode, "disabled") || !strcmp(mode, "false"))
        c->enabled = 0;
    else {
        snprintf(err, errlen, "AURORA_CLOUD_EXEC must be enabled or disabled");
        return -1;
    }
    c->search_path = strdup(search_path && *search_path ? search_path : SANDBOX_DEFAULT_PATH);
    if (!c->search_path)
        goto oom;
    char list[4096];
    snprintf(list, sizeof(list), "%s", programs ? programs : DEFAULT_PROGRAMS);
    char *save = NULL;
    for (char *e = strtok_r(list, ",", &save); e; e = strtok_r(NULL, ",", &save)) {
        while (*e == ' ')
            e++;
        size_t el = strlen(e);
        while (el && e[el - 1] == ' ')
            e[--el] = '\0';
        if (!*e)
            continue;
        char *eq = strchr(e, '=');
        if (eq)
            *eq = '\0';
        if (!proto_program_ok(e)) {
            snprintf(err, errlen, "AURORA_CLOUD_PROGRAMS: %.64s is not a program name", e);
            goto fail;
        }
        const cloud_cli *cli = cloud_cli_find(e);
        if (!cli) {
            snprintf(err, errlen,
                     "AURORA_CLOUD_PROGRAMS: %.64s is not a cloud CLI the agent has a plug-in for "
                     "(gcloud, aws, az)",
                     e);
            goto fail;
        }
        if (eq && eq[1] != '/') {
            snprintf(err, errlen, "AURORA_CLOUD_PROGRAMS: the path of %s must be absolute", e);
            goto fail;
        }
        for (int i = 0; i < c->nprogs; i++)
            if (!strcmp(c->progs[i].name, e)) {
                snprintf(err, errlen, "AURORA_CLOUD_PROGRAMS names %s twice", e);
                goto fail;
            }
        agent_cloud_prog *np = realloc(c->progs, sizeof(*np) * (size_t)(c->nprogs + 1));
        if (!np)
            goto oom;
        c->progs = np;
        agent_cloud_prog *p = &c->progs[c->nprogs];
        memset(p, 0, sizeof(*p));
        p->name = strdup(e);
        if (!p->name)
            goto oom;
        p->cli = cli;
        p->profile.cli = cli;
        c->nprogs++;
        if (eq) {
            p->explicit_path = 1;
            p->path = strdup(eq + 1);
            if (!p->path)
                goto oom;
            if (!executable(p->path))
                log_warn("cloud_exec: %s=%s is not an executable file", p->name, p->path);
        } else {
            p->path = lookup(c->search_path, e);
        }
    }
    if (cli_env && parse_cli_env(c, cli_env, err, errlen) != 0)
        goto fail;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    agent_cloud_free(c);
    return -1;
}

static const agent_cloud_prog *find(const agent_cloud *c, const char *program)
{
    for (int i = 0; program && i < c->nprogs; i++)
        if (!strcmp(c->progs[i].name, program))
            return &c->progs[i];
    return NULL;
}

char *agent_cloud_path(const agent_cloud *c, const char *program)
{
    const agent_cloud_prog *p = find(c, program);
    if (!p)
        return NULL;
    if (p->explicit_path)
        return executable(p->path) ? strdup(p->path) : NULL;
    if (p->path && executable(p->path))
        return strdup(p->path);
    return lookup(c->search_path, program); /* installed since start? */
}

/* Does the argument a name the (lower-case ASCII) word w, read as the CLIs
 * read command words?  az reads them case-insensitively, with Python's
 * str.lower() (knack's _rudimentary_get_command): `az account
 * GET-ACCESS-TOKEN` runs get-access-token, and so does a KELVIN SIGN
 * (U+212A, the one character outside ASCII that str.lower() makes an ASCII
 * letter) in place of its 'k'.  gcloud and aws refuse those spellings, so
 * folding them for every CLI refuses nothing they would run. */
static int word_is(const char *a, const char *w)
{
    for (;;) {
        unsigned char c = (unsigned char)*a;
        if (c == 0xe2 && (unsigned char)a[1] == 0x84 && (unsigned char)a[2] == 0xaa) {
            c = 'k';
            a += 3;
        } else {
            if (c >= 'A' && c <= 'Z')
                c = (unsigned char)(c - 'A' + 'a');
            a++;
        }
        if (c != (unsigned char)*w)
            return 0;
        if (!c)
            return 1;
        w++;
    }
}

/* The printer of cli whose words appear, in order, among the positional
 * arguments (not necessarily adjacent: a global option's value may sit
 * between service and operation, `aws eks --region r get-token`), or NULL.
 * Every argument is looked at (up to ARGV_MAX_ARGS), none skipped. */
static const char *printer_match(const cloud_cli *cli, int argc, const char *const *argv)
{
    for (int k = 0; cli->printers && cli->printers[k]; k++) {
        char words[160];
        snprintf(words, sizeof(words), "%s", cli->printers[k]);
        const char *w[8];
        int nw = 0;
        char *save = NULL;
        for (char *t = strtok_r(words, " ", &save); t && nw < 8; t = strtok_r(NULL, " ", &save))
            w[nw++] = t;
        int j = 0;
        for (int i = 0; nw && i < argc && j < nw; i++)
            if (argv[i][0] != '-' && word_is(argv[i], w[j]))
                j++;
        if (nw && j == nw)
            return cli->printers[k];
    }
    return NULL;
}

static const char *profile_value(const sandbox_profile *pf, const char *name, size_t nl)
{
    for (int i = 0; i < pf->nenv; i++)
        if (!strncmp(pf->env[i], name, nl) && pf->env[i][nl] == '=')
            return pf->env[i] + nl + 1;
    return NULL;
}

int agent_cloud_check(const agent_cloud *c, const char *program, int argc,
                      const char *const *argv, char *const *env, int nenv,
                      agent_policy_decision *d)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->verb, sizeof(d->verb), "%s", program && proto_program_ok(program) ? program : "?");
    if (!c->enabled) {
        snprintf(d->reason, sizeof(d->reason),
                 "cloud_exec is disabled on this agent (AURORA_CLOUD_EXEC=disabled)");
        return 0;
    }
    const agent_cloud_prog *p = program && proto_program_ok(program) ? find(c, program) : NULL;
    if (!p) {
        snprintf(d->reason, sizeof(d->reason),
                 "%s is not a cloud program this agent runs (AURORA_CLOUD_PROGRAMS)", d->verb);
        return 0;
    }
    for (int i = 0; i < nenv; i++) {
        const char *eq = env[i] ? strchr(env[i], '=') : NULL;
        size_t nl = eq ? (size_t)(eq - env[i]) : 0;
        int shown = (int)(nl > 128 ? 128 : nl);
        const char *nm = env[i] ? env[i] : "";
        if (!eq || !proto_env_name_ok(env[i], nl)) {
            snprintf(d->reason, sizeof(d->reason), "a malformed environment variable");
            return 0;
        }
        for (int j = 0; j < i; j++)
            if (env[j] && !strncmp(env[j], env[i], nl) && env[j][nl] == '=') {
                snprintf(d->reason, sizeof(d->reason),
                         "the environment variable %.*s is set twice", shown, nm);
                return 0;
            }
        const char *op = profile_value(&p->profile, env[i], nl);
        if (!op)
            op = sandbox_operator_env(env[i], nl);
        if (op) {
            /* the operator's: the server may only repeat it */
            if (strcmp(op, eq + 1) != 0) {
                snprintf(d->reason, sizeof(d->reason),
                         "the environment variable %.*s is set by this agent's operator "
                         "(AURORA_CLOUD_ENV or AURORA_SANDBOX_ENV_PASSTHROUGH) to another value: "
                         "the server may not change it",
                         shown, nm);
                return 0;
            }
            continue;
        }
        if (!cloud_cli_server_env_ok(p->cli, env[i], nl)) {
            snprintf(d->reason, sizeof(d->reason),
                     "the environment variable %.*s may not be set by the server for %s (the "
                     "agent takes only the CLI's credentials, region/project and output "
                     "settings from the server; endpoints, proxies and CA settings are the "
                     "operator's: AURORA_CLOUD_ENV)",
                     shown, nm, p->name);
            return 0;
        }
    }
    const char *pr = printer_match(p->cli, argc, argv);
    if (pr) {
        snprintf(d->reason, sizeof(d->reason),
                 "%s %s is not allowed by the agent: it would print the command's credentials",
                 program, pr);
        return 0;
    }
    for (int i = 0; i < argc; i++) {
        char why[200];
        if (cloud_arg_names_process_files(argv[i], why, sizeof(why))) {
            snprintf(d->reason, sizeof(d->reason),
                     "%s: argument %d is not allowed by the agent: it %s", program, i + 1, why);
            return 0;
        }
    }
    d->allowed = 1;
    return 1;
}

const sandbox_profile *agent_cloud_profile(const agent_cloud *c, const char *program)
{
    const agent_cloud_prog *p = find(c, program);
    return p ? &p->profile : NULL;
}

/* Landlock would let the sandbox read the program and its interpreter? */
static void check_readable(const agent_cloud_prog *p)
{
    char interp[PATH_MAX];
    const char *what[2] = {p->path, NULL};
    cloud_cli_interpreter(p->path, interp, sizeof(interp));
    if (interp[0])
        what[1] = interp;
    for (int i = 0; i < 2; i++) {
        if (!what[i])
            continue;
        char *r = realpath(what[i], NULL);
        if (r && !sandbox_path_readable(r))
            log_warn("cloud_exec program %s: %s is outside AURORA_SANDBOX_READONLY_PATHS (or "
                     "inside AURORA_SANDBOX_DENY_PATHS): Landlock will not let the command run "
                     "it; add its installation directory to AURORA_SANDBOX_READONLY_PATHS",
                     p->name, r);
        free(r);
    }
}

void agent_cloud_probe(agent_cloud *c)
{
    for (int i = 0; i < c->nprogs; i++) {
        agent_cloud_prog *p = &c->progs[i];
        memset(&p->version, 0, sizeof(p->version));
        if (!p->path) {
            log_info("cloud_exec program %s: not installed (not found in %s)", p->name,
                     c->search_path ? c->search_path : "");
            continue;
        }
        if (p->cli->probe)
            p->cli->probe(p->path, &p->version);
        p->probed = 1;
        log_info("cloud_exec program %s: %s, version %s%s%s%s", p->name, p->path,
                 p->version.version[0] ? p->version.version : "unknown",
                 p->version.detail[0] ? " (" : "", p->version.detail,
                 p->version.detail[0] ? ")" : "");
        if (p->version.note[0])
            log_warn("cloud_exec program %s: %s", p->name, p->version.note);
        check_readable(p);
    }
}

cJSON *agent_cloud_json(const agent_cloud *c)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddBoolToObject(o, "enabled", c->enabled);
    cJSON *arr = cJSON_AddArrayToObject(o, "programs");
    for (int i = 0; arr && i < c->nprogs; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(c->progs[i].name));
    cJSON_AddBoolToObject(o, "uid_separation", sandbox_uid_separation());
    cJSON *v = cJSON_AddObjectToObject(o, "versions");
    for (int i = 0; v && i < c->nprogs; i++) {
        const agent_cloud_prog *p = &c->progs[i];
        if (!p->probed)
            continue;
        cJSON *e = cJSON_AddObjectToObject(v, p->name);
        if (!e)
            break;
        cJSON_AddStringToObject(e, "version", p->version.version[0] ? p->version.version
                                                                    : "unknown");
        if (p->version.detail[0])
            cJSON_AddStringToObject(e, "detail", p->version.detail);
        if (p->version.note[0])
            cJSON_AddStringToObject(e, "warning", p->version.note);
    }
    if (c->enabled) {
        cJSON *sb = sandbox_isolation_json();
        if (sb)
            cJSON_AddItemToObject(o, "sandbox", sb);
    }
    return o;
}
