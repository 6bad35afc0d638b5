/* config.c — environment over YAML file over defaults; see config.h. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

#include "secret.h"

#define YAML_MAX_DEPTH 16

typedef struct {
    char *key;
    char *value;
} kv;

typedef struct {
    kv *items;
    size_t n;
} kv_list;

static void kv_free(kv_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].key);
        secret_free(l->items[i].value); /* the agent's token, a database URL, … */
    }
    free(l->items);
}

static int kv_add(kv_list *l, const char *key, const char *value)
{
    kv *n = realloc(l->items, sizeof(kv) * (l->n + 1));
    if (!n)
        return -1;
    l->items = n;
    n[l->n].key = strdup(key);
    n[l->n].value = strdup(value);
    if (!n[l->n].key || !n[l->n].value) {
        free(n[l->n].key);
        secret_free(n[l->n].value);
        return -1;
    }
    l->n++;
    return 0;
}

/* Flattens nested mappings of scalars into dotted keys.  Sequences are
 * rejected: no setting takes one. */
static int load_yaml(const char *path, kv_list *out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open config file %s: %s", path, strerror(errno));
        return -1;
    }
    /* The file sets what a local user must not (where the agent sends its
     * token, which CA it trusts, its policy; the server's database and
     * secrets backend): one every user may write is refused, like ssh's
     * keys.  Group write is the operator's (umask 002, fsGroup). */
    struct stat st;
    const char *bad = NULL;
    if (fstat(fileno(f), &st) != 0)
        bad = strerror(errno);
    else if (!S_ISREG(st.st_mode))
        bad = "not a regular file";
    else if (st.st_mode & S_IWOTH)
        bad = "writable by every user; chmod o-w it";
    if (bad) {
        snprintf(err, errlen, "config file %s: %s", path, bad);
        fclose(f);
        return -1;
    }
    yaml_parser_t p;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_file(&p, f);
    char *stack[YAML_MAX_DEPTH] = { 0 };
    int depth = 0;       /* mapping nesting */
    int want_key[YAML_MAX_DEPTH + 1] = { 1 };
    int rc = -1, done = 0;
    while (!done) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            snprintf(err, errlen, "invalid YAML in %s line %lu: %s", path,
                     (unsigned long)p.problem_mark.line + 1, p.problem ? p.problem : "?");
            goto out;
        }
        switch (ev.type) {
        case YAML_MAPPING_START_EVENT:
            if (depth > 0 && want_key[depth]) {
                snprintf(err, errlen, "%s line %lu: mapping keys must be plain scalars", path,
                         (unsigned long)ev.start_mark.line + 1);
                yaml_event_delete(&ev);
                goto out;
            }
            if (depth >= YAML_MAX_DEPTH) {
                snprintf(err, errlen, "%s: nesting too deep", path);
                yaml_event_delete(&ev);
                goto out;
            }
            depth++;
            want_key[depth] = 1;
            break;
        case YAML_MAPPING_END_EVENT:
            if (depth > 0) {
                free(stack[depth - 1]);
                stack[depth - 1] = NULL;
                depth--;
                if (depth > 0) {
                    free(stack[depth - 1]);
                    stack[depth - 1] = NULL;
                    want_key[depth] = 1;
                }
            }
            break;
        case YAML_ALIAS_EVENT:
            /* Skipping it would shift every following key/value pair. */
            snprintf(err, errlen, "%s line %lu: aliases are not supported in the config file",
                     path, (unsigned long)ev.start_mark.line + 1);
            yaml_event_delete(&ev);
            goto out;
        case YAML_SEQUENCE_START_EVENT:
            snprintf(err, errlen, "%s: lists are not supported in the config file", path);
            yaml_event_delete(&ev);
            goto out;
        case YAML_SCALAR_EVENT: {
            const char *val = (const char *)ev.data.scalar.value;
            if (depth == 0)
                break; /* a bare scalar document: nothing to set */
            if (want_key[depth]) {
                free(stack[depth - 1]);
                stack[depth - 1] = strdup(val);
                want_key[depth] = 0;
            } else {
                char key[512] = "";
                for (int i = 0; i < depth; i++) {
                    if (i)
                        strncat(key, ".", sizeof(key) - strlen(key) - 1);
                    strncat(key, stack[i] ? stack[i] : "", sizeof(key) - strlen(key) - 1);
                }
                if (kv_add(out, key, val) < 0) {
                    snprintf(err, errlen, "out of memory");
                    yaml_event_delete(&ev);
                    goto out;
                }
                free(stack[depth - 1]);
                stack[depth - 1] = NULL;
                want_key[depth] = 1;
            }
            break;
        }
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        default:
            break;
        }
        /* A mapping value that was itself a mapping: the key is consumed when it ends. */
        if (ev.type == YAML_MAPPING_START_EVENT && depth > 1)
            want_key[depth - 1] = 0;
        /* libyaml's copy of a value (its scanner's and read buffers stay
         * out of reach) */
        if (ev.type == YAML_SCALAR_EVENT && ev.data.scalar.value)
            secret_wipe(ev.data.scalar.value, ev.data.scalar.length);
        yaml_event_delete(&ev);
    }
    rc = 0;
out:
    for (int i = 0; i < YAML_MAX_DEPTH; i++)
        free(stack[i]);
    yaml_parser_delete(&p);
    fclose(f);
    return rc;
}

static int valid_for_type(cfg_type t, const char *v)
{
    if (t == CFG_INT) {
        char *end;
        errno = 0;
        long long x = strtoll(v, &end, 10);
        (void)x;
        return errno == 0 && end != v && *end == '\0';
    }
    if (t == CFG_BOOL)
        return !strcasecmp(v, "true") || !strcasecmp(v, "false") || !strcmp(v, "1") ||
               !strcmp(v, "0") || !strcasecmp(v, "yes") || !strcasecmp(v, "no");
    return 1;
}

int config_load(config_t *c, const config_def *defs, size_t n, const char *yaml_path, char *err,
                size_t errlen)
{
    memset(c, 0, sizeof(*c));
    c->defs = defs;
    c->n = n;
    c->values = calloc(n, sizeof(char *));
    c->source = calloc(n, sizeof(char *));
    kv_list file = { 0 };
    if (!c->values || !c->source) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (yaml_path && *yaml_path && load_yaml(yaml_path, &file, err, errlen) < 0)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        const char *v = getenv(defs[i].env);
        if (v && !*v && defs[i].type != CFG_STRING)
            v = NULL; /* an empty number/bool (e.g. from a Helm template) means unset */
        const char *src = "env";
        if (!v && defs[i].yaml) {
            for (size_t k = 0; k < file.n; k++)
                if (!strcmp(file.items[k].key, defs[i].yaml)) {
                    v = file.items[k].value;
                    src = "file";
                }
        }
        if (!v) {
            v = defs[i].def;
            src = "default";
        }
        if (v && !valid_for_type(defs[i].type, v)) {
            snprintf(err, errlen, "%s: '%s' is not a valid %s", defs[i].env,
                     defs[i].secret ? "***" : v, defs[i].type == CFG_INT ? "integer" : "boolean");
            goto fail;
        }
        if (v && defs[i].type == CFG_INT && defs[i].min < defs[i].max) {
            long long x = strtoll(v, NULL, 10);
            if (x < defs[i].min || x > defs[i].max) {
                snprintf(err, errlen, "%s must be between %lld and %lld", defs[i].env,
                         (long long)defs[i].min, (long long)defs[i].max);
                goto fail;
            }
        }
        c->source[i] = src;
        if (v && !(c->values[i] = strdup(v))) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    kv_free(&file);
    return 0;
fail:
    kv_free(&file);
    config_free(c);
    return -1;
}

void config_free(config_t *c)
{
    if (c->values)
        for (size_t i = 0; i < c->n; i++)
            secret_free(c->values[i]); /* secret settings: kept by their owner only */
    free(c->values);
    free(c->source);
    memset(c, 0, sizeof(*c));
}

static int find(const config_t *c, const char *env)
{
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->defs[i].env, env))
            return (int)i;
    return -1;
}

const char *config_str(const config_t *c, const char *env)
{
    int i = find(c, env);
    return i < 0 ? NULL : c->values[i];
}

int64_t config_int(const config_t *c, const char *env)
{
    const char *v = config_str(c, env);
    return v ? strtoll(v, NULL, 10) : 0;
}

int config_bool(const config_t *c, const char *env)
{
    const char *v = config_str(c, env);
    return v && (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes"));
}

void config_print_help(FILE *f, const config_def *defs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "  %-32s %s\n", defs[i].env, defs[i].help);
        if (defs[i].yaml)
            fprintf(f, "  %-32s   yaml: %s", "", defs[i].yaml);
        else
            fprintf(f, "  %-32s  ", "");
        if (defs[i].def && !defs[i].secret)
            fprintf(f, "  default: %s", defs[i].def);
        fputc('\n', f);
    }
}
