/* config.h — settings from environment variables over an optional YAML file
 * over built-in defaults.  Each program declares a table of config_def; the
 * values land in a config_t and `--help` prints the table.
 *
 * YAML keys are dotted paths into nested mappings ("network.heartbeat_interval"
 * is `network: {heartbeat_interval: 30}`); scalars only. */
#ifndef AURORA_CONFIG_H
#define AURORA_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { CFG_STRING, CFG_INT, CFG_BOOL } cfg_type;

typedef struct {
    const char *env;      /* e.g. "AURORA_PORT" */
    const char *yaml;     /* e.g. "server.port"; NULL if env-only */
    cfg_type type;
    const char *def;      /* default as text; NULL = unset */
    const char *help;
    int secret;           /* never printed */
    int64_t min, max;     /* CFG_INT with min < max: a value outside [min, max]
                             is refused when loading (an unset one is not checked) */
} config_def;

typedef struct {
    const config_def *defs;
    size_t n;
    char **values;        /* resolved text values (NULL = unset) */
    const char **source;  /* "env", "file", "default" */
} config_t;

/* Resolves every setting.  yaml_path may be NULL.  Returns 0, or -1 with err
 * (unreadable/invalid YAML, a value that is not an int/bool where needed). */
int config_load(config_t *c, const config_def *defs, size_t n, const char *yaml_path,
                char *err, size_t errlen);
void config_free(config_t *c);
const char *config_str(const config_t *c, const char *env);
int64_t config_int(const config_t *c, const char *env);
int config_bool(const config_t *c, const char *env);
void config_print_help(FILE *f, const config_def *defs, size_t n);

#endif
