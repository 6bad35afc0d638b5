/* cloud.c — the cloud_exec program list and policy (see cloud.h). */
#include "cloud.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "proto.h"
#include "sandbox.h"

#define DEFAULT_PROGRAMS "gcloud,aws,az"

/* Commands that print the injected credentials: consecutive positional words. */
static const struct {
    const char *program;
    const char *words[4];
} printers[] = {
    {"gcloud", {"auth", "print-access-token", NULL}},
    {"gcloud", {"auth", "print-identity-token", NULL}},
    {"gcloud", {"auth", "application-default", "print-access-token", NULL}},
    {"gcloud", {"config", "config-helper", NULL}},
    {"aws", {"configure", "export-credentials", NULL}},
    {"az", {"account", "get-access-token", NULL}},
};

static void prog_free(agent_cloud_prog *p)
{
    free(p->name);
    free(p->path);
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

int agent_cloud_init(agent_cloud *c, const char *mode, const char *programs,
                     const char *search_path, char *err, size_t errlen)
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

static int printer_match(const char *program, int argc, const char *const *argv)
{
    const char *pos[64];
    int np = 0;
    for (int i = 0; i < argc && np < 64; i++)
        if (argv[i][0] != '-')
            pos[np++] = argv[i];
    for (size_t k = 0; k < sizeof(printers) / sizeof(printers[0]); k++) {
        if (strcmp(printers[k].program, program))
            continue;
        int nw = 0;
        while (printers[k].words[nw])
            nw++;
        for (int s = 0; s + nw <= np; s++) {
            int ok = 1;
            for (int w = 0; ok && w < nw; w++)
                ok = !strcmp(pos[s + w], printers[k].words[w]);
            if (ok)
                return (int)k;
        }
    }
    return -1;
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
    if (!program || !proto_program_ok(program) || !find(c, program)) {
        snprintf(d->reason, sizeof(d->reason),
                 "%s is not a cloud program this agent runs (AURORA_CLOUD_PROGRAMS)", d->verb);
        return 0;
    }
    for (int i = 0; i < nenv; i++) {
        const char *eq = env[i] ? strchr(env[i], '=') : NULL;
        size_t nl = eq ? (size_t)(eq - env[i]) : 0;
        if (!eq || !proto_env_name_ok(env[i], nl) || !sandbox_env_name_allowed(env[i], nl)) {
            snprintf(d->reason, sizeof(d->reason),
                     "the environment variable %.*s may not be set by the server (the agent's "
                     "sandbox owns it)",
                     (int)(nl > 128 ? 128 : nl), env[i] ? env[i] : "");
            return 0;
        }
    }
    int k = printer_match(program, argc, argv);
    if (k >= 0) {
        char words[160] = "";
        for (int w = 0; printers[k].words[w]; w++) {
            size_t l = strlen(words);
            snprintf(words + l, sizeof(words) - l, "%s%s", w ? " " : "", printers[k].words[w]);
        }
        snprintf(d->reason, sizeof(d->reason),
                 "%s %s is not allowed by the agent: it would print the command's credentials",
                 program, words);
        return 0;
    }
    d->allowed = 1;
    return 1;
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
    return o;
}
