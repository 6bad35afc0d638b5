/* secrets_cli.c — `aurora-server secrets migrate | rotate-key | put | list |
 * delete`.  Uses the same settings as the server (environment, AURORA_CONFIG);
 * `migrate` opens two backends from them, overriding SECRETS_BACKEND. */
#include "secrets_cli.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "secrets_config.h"
#include "secrets_local.h"

/* One command of the table at the end. */
typedef struct secrets_cmd {
    const char *name;
    const char *synopsis;
    const char *summary;
    const char *details; /* NULL or more for <name> --help */
    size_t max_pos;      /* positional arguments it takes */
    /* Checks the values before anything is loaded: 0, or the exit status. */
    int (*check)(const struct secrets_cmd *c, const char *const *v, char **pos, size_t npos);
    int (*run)(const struct secrets_cmd *c, const server_config *cfg, const char *const *v,
               char **pos, size_t npos);
    cli_option opts[4]; /* ends at the first without a name */
} secrets_cmd;

/* The value of option name (declared in c's table row). */
static const char *val(const secrets_cmd *c, const char *const *v, const char *name)
{
    for (size_t i = 0; i < 4 && c->opts[i].name; i++)
        if (!strcmp(c->opts[i].name, name))
            return v[i];
    return NULL;
}

static int print_json(cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s)
        return 1;
    printf("%s\n", s);
    free(s);
    return 0;
}

static int usage_error(const secrets_cmd *c, const char *msg)
{
    char name[64];
    snprintf(name, sizeof(name), "aurora-server secrets %s", c->name);
    return cli_usage_error(name, "%s", msg);
}

/* Opens the backend named `backend` (NULL: SECRETS_BACKEND) from cfg. */
static secrets_t *open_backend(const server_config *cfg, const char *backend)
{
    secrets_config sc;
    secrets_config_from_server(cfg, &sc);
    if (backend)
        sc.backend = backend;
    /* list and migrate walk the whole store: the bound of whole-store
     * listings, not the server's per-connection one. */
    sc.list_max_paths = SECRETS_LIST_MAX_PATHS;
    secrets_t *s = NULL;
    char err[512];
    if (secrets_open(&sc, &s, err, sizeof(err)) != SECRETS_OK) {
        fprintf(stderr, "aurora-server secrets: %s\n", err);
        return NULL;
    }
    return s;
}

/* ---- migrate ------------------------------------------------------------------------------- */

int secrets_migrate(secrets_t *from, secrets_t *to, const char *prefix,
                    void (*on_path)(void *ud, const char *path, int rc, const char *msg),
                    void *ud, size_t *copied, size_t *failed, char *err, size_t errlen)
{
    size_t ok = 0, bad = 0;
    if (copied)
        *copied = 0;
    if (failed)
        *failed = 0;
    char **paths = NULL;
    size_t n = 0;
    if (secrets_list(from, prefix ? prefix : "", &paths, &n, err, errlen) != SECRETS_OK)
        return -1;
    int first_error = 1;
    for (size_t i = 0; i < n; i++) {
        char msg[512] = "";
        unsigned char *v = NULL, *back = NULL;
        size_t len = 0, blen = 0;
        int rc = secrets_get(from, paths[i], &v, &len, msg, sizeof(msg));
        if (rc == SECRETS_OK)
            rc = secrets_put(to, paths[i], v, len, msg, sizeof(msg));
        /* Read back from the destination: "copied" means verified there. */
        if (rc == SECRETS_OK)
            rc = secrets_get(to, paths[i], &back, &blen, msg, sizeof(msg));
        if (rc == SECRETS_OK && (blen != len || CRYPTO_memcmp(back, v, len) != 0)) {
            snprintf(msg, sizeof(msg), "secrets backend %s: %s: read-back differs from the source",
                     secrets_backend_name(to), paths[i]);
            rc = SECRETS_E_INTEGRITY;
        }
        secrets_free(v, len);
        secrets_free(back, blen);
        if (rc == SECRETS_OK) {
            ok++;
        } else {
            bad++;
            if (first_error) {
                snprintf(err, errlen, "%s", msg);
                first_error = 0;
            }
        }
        if (on_path)
            on_path(ud, paths[i], rc, msg);
    }
    secrets_list_free(paths, n);
    if (copied)
        *copied = ok;
    if (failed)
        *failed = bad;
    return bad ? -1 : 0;
}

static void add_result(void *ud, const char *path, int rc, const char *msg)
{
    cJSON *arr = ud;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return;
    cJSON_AddStringToObject(o, "path", path);
    cJSON_AddStringToObject(o, "status", rc == SECRETS_OK ? "copied" : "failed");
    if (rc != SECRETS_OK)
        cJSON_AddStringToObject(o, "error", msg);
    cJSON_AddItemToArray(arr, o);
}

static int check_migrate(const secrets_cmd *c, const char *const *v, char **pos, size_t npos)
{
    if (!strcmp(val(c, v, "from"), val(c, v, "to")))
        return usage_error(c, "--from and --to name the same backend");
    return 0;
}

static int cmd_migrate(const secrets_cmd *c, const server_config *cfg, const char *const *v,
                       char **pos, size_t npos)
{
    const char *from_name = val(c, v, "from"), *to_name = val(c, v, "to");
    const char *prefix = val(c, v, "prefix");
    secrets_t *from = open_backend(cfg, from_name);
    if (!from)
        return 1;
    secrets_t *to = open_backend(cfg, to_name);
    if (!to) {
        secrets_close(from);
        return 1;
    }
    cJSON *o = cJSON_CreateObject(), *results = cJSON_CreateArray();
    size_t copied = 0, failed = 0;
    char err[512] = "";
    int rc = secrets_migrate(from, to, prefix, add_result, results, &copied, &failed, err,
                             sizeof(err));
    cJSON_AddStringToObject(o, "from", from_name);
    cJSON_AddStringToObject(o, "to", to_name);
    cJSON_AddNumberToObject(o, "copied", (double)copied);
    cJSON_AddNumberToObject(o, "failed", (double)failed);
    cJSON_AddItemToObject(o, "secrets", results);
    if (rc != 0)
        fprintf(stderr, "aurora-server secrets migrate: %s\n", err);
    secrets_close(from);
    secrets_close(to);
    return print_json(o) || rc != 0 ? 1 : 0;
}

/* ---- rotate-key ---------------------------------------------------------------------------- */

/* Reads a key given as a file or an environment variable (hex or base64). */
static int new_key_from(const char *file, const char *env, unsigned char key[SECRETS_MASTER_KEY_LEN])
{
    char buf[256] = "";
    if (file) {
        FILE *f = fopen(file, "rb");
        if (!f) {
            fprintf(stderr, "aurora-server secrets rotate-key: cannot read %s: %s\n", file, strerror(errno));
            return -1;
        }
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
    } else {
        const char *v = getenv(env);
        if (!v || !*v) {
            fprintf(stderr, "aurora-server secrets rotate-key: %s is not set\n", env);
            return -1;
        }
        snprintf(buf, sizeof(buf), "%s", v);
    }
    int rc = secrets_local_parse_key(buf, key);
    OPENSSL_cleanse(buf, sizeof(buf));
    if (rc < 0)
        fprintf(stderr, "aurora-server secrets rotate-key: the new key must be 32 bytes as 64 hex characters or "
                        "base64\n");
    return rc;
}

static int check_rotate(const secrets_cmd *c, const char *const *v, char **pos, size_t npos)
{
    if (val(c, v, "new-key-file") && val(c, v, "new-key-env"))
        return usage_error(c, "give --new-key-file or --new-key-env, not both");
    return 0;
}

static int cmd_rotate(const secrets_cmd *c, const server_config *cfg, const char *const *v,
                      char **pos, size_t npos)
{
    const char *file = val(c, v, "new-key-file"), *env = val(c, v, "new-key-env");
    unsigned char key[SECRETS_MASTER_KEY_LEN];
    int have_key = 0;
    if (file || env) {
        if (new_key_from(file, env, key) < 0)
            return 1;
        have_key = 1;
    }
    secrets_t *s = open_backend(cfg, "local");
    if (!s) {
        OPENSSL_cleanse(key, sizeof(key));
        return 1;
    }
    size_t count = 0;
    char id[17] = "", err[512];
    int rc = secrets_local_rotate_key(s, have_key ? key : NULL, &count, id, err, sizeof(err));
    OPENSSL_cleanse(key, sizeof(key));
    secrets_close(s);
    if (rc != SECRETS_OK) {
        fprintf(stderr, "aurora-server secrets rotate-key: %s\n", err);
        return 1;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "backend", "local");
    cJSON_AddNumberToObject(o, "reencrypted", (double)count);
    cJSON_AddStringToObject(o, "key_id", id);
    if (cfg->master_key && *cfg->master_key)
        cJSON_AddStringToObject(o, "next_step",
                                "set AURORA_MASTER_KEY to the new key before the next start");
    return print_json(o);
}

/* ---- put / list / delete ------------------------------------------------------------------- */

/* Whole file or stdin, verbatim (a PEM keeps every newline).  One byte more
 * than the limit is read so an oversized input is refused, not cut. */
/* The whole input, or NULL with *ioerr set (0: out of memory): a read
 * error partway is not the end of the value, and a cut value must not be
 * stored. */
static unsigned char *read_input(FILE *f, size_t *len, int *ioerr)
{
    size_t cap = SECRETS_MAX_VALUE + 1, n = 0;
    unsigned char *buf = malloc(cap);
    *ioerr = 0;
    if (!buf)
        return NULL;
    size_t got;
    errno = 0;
    while (n < cap && (got = fread(buf + n, 1, cap - n, f)) > 0)
        n += got;
    if (ferror(f)) {
        *ioerr = errno ? errno : EIO;
        secrets_free(buf, cap);
        return NULL;
    }
    *len = n;
    return buf;
}

static int check_put(const secrets_cmd *c, const char *const *v, char **pos, size_t npos)
{
    if (npos < 1)
        return usage_error(c, "missing PATH");
    if (!val(c, v, "file") == !val(c, v, "stdin"))
        return usage_error(c, "give --file F or --stdin (values never go on the command line)");
    return 0;
}

static int cmd_put(const secrets_cmd *c, const server_config *cfg, const char *const *v,
                   char **pos, size_t npos)
{
    const char *path = pos[0], *file = val(c, v, "file");
    FILE *f = file ? fopen(file, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "aurora-server secrets put: cannot read %s: %s\n", file, strerror(errno));
        return 1;
    }
    size_t len = 0;
    int ioerr = 0;
    unsigned char *value = read_input(f, &len, &ioerr);
    if (file)
        fclose(f);
    if (!value) {
        if (ioerr)
            fprintf(stderr, "aurora-server secrets put: cannot read %s: %s (nothing stored)\n",
                    file ? file : "stdin", strerror(ioerr));
        else
            fprintf(stderr, "aurora-server secrets put: out of memory\n");
        return 1;
    }
    secrets_t *s = open_backend(cfg, NULL);
    int rc = 1;
    if (s) {
        char err[512], ref[SECRETS_MAX_PATH + 64];
        if (secrets_put(s, path, value, len, err, sizeof(err)) != SECRETS_OK) {
            fprintf(stderr, "aurora-server secrets put: %s\n", err);
        } else {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "backend", secrets_backend_name(s));
            cJSON_AddStringToObject(o, "path", path);
            if (secrets_ref(s, path, ref, sizeof(ref)) == 0)
                cJSON_AddStringToObject(o, "ref", ref);
            cJSON_AddNumberToObject(o, "bytes", (double)len);
            rc = print_json(o);
        }
        secrets_close(s);
    }
    secrets_free(value, SECRETS_MAX_VALUE + 1);
    return rc;
}

static int cmd_list(const secrets_cmd *c, const server_config *cfg, const char *const *v,
                    char **pos, size_t npos)
{
    const char *prefix = npos > 0 ? pos[0] : "";
    secrets_t *s = open_backend(cfg, NULL);
    if (!s)
        return 1;
    char **paths = NULL, err[512];
    size_t n = 0;
    int rc = secrets_list(s, prefix, &paths, &n, err, sizeof(err));
    if (rc != SECRETS_OK) {
        fprintf(stderr, "aurora-server secrets list: %s\n", err);
        secrets_close(s);
        return 1;
    }
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "paths");
    cJSON_AddStringToObject(o, "backend", secrets_backend_name(s));
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(paths[i]));
    secrets_list_free(paths, n);
    secrets_close(s);
    return print_json(o);
}

static int check_delete(const secrets_cmd *c, const char *const *v, char **pos, size_t npos)
{
    return npos < 1 ? usage_error(c, "missing PATH") : 0;
}

static int cmd_delete(const secrets_cmd *c, const server_config *cfg, const char *const *v,
                      char **pos, size_t npos)
{
    const char *path = pos[0];
    secrets_t *s = open_backend(cfg, NULL);
    if (!s)
        return 1;
    char err[512];
    int rc = secrets_delete(s, path, err, sizeof(err));
    if (rc != SECRETS_OK)
        fprintf(stderr, "aurora-server secrets delete: %s\n", err);
    cJSON *o = NULL;
    if (rc == SECRETS_OK) {
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "backend", secrets_backend_name(s));
        cJSON_AddStringToObject(o, "deleted", path);
    }
    secrets_close(s);
    return rc == SECRETS_OK ? print_json(o) : 1;
}

/* ---- the table ----------------------------------------------------------------------------- */

static const secrets_cmd commands[] = {
    { "migrate", "--from B --to B [--prefix P]",
      "copy every secret between backends and verify each copy",
      "Backends: local, vault, aws_secrets_manager (each configured by the same\n"
      "settings as the server).  The source is not changed; running it again is\n"
      "harmless.\n",
      0, check_migrate, cmd_migrate, { { "from", 1, 1 }, { "to", 1, 1 }, { "prefix", 1, 0 } } },
    { "rotate-key", "[--new-key-file F | --new-key-env VAR]",
      "local backend: re-encrypt everything under a new master key",
      "The new key is 32 bytes as 64 hex characters or base64; without one, a key\n"
      "is generated.\n",
      0, check_rotate, cmd_rotate, { { "new-key-file", 1, 0 }, { "new-key-env", 1, 0 } } },
    { "put", "PATH (--file F | --stdin)", "store a file's bytes verbatim",
      "e.g. aurora/system/github-app/private-key.  Values never go on the command\n"
      "line (where ps and shell history would see them).\n",
      1, check_put, cmd_put, { { "file", 1, 0 }, { "stdin", 0, 0 } } },
    { "list", "[PREFIX]", "paths only, never values", NULL, 1, NULL, cmd_list, { { NULL, 0, 0 } } },
    { "delete", "PATH", "delete one secret", NULL, 1, check_delete, cmd_delete,
      { { NULL, 0, 0 } } },
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

void secrets_cli_usage(FILE *f)
{
    fprintf(f, "Secrets commands (same environment as the server; each prints JSON):\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  secrets %s %s\n      %s\n", commands[i].name, commands[i].synopsis,
                commands[i].summary);
}

static void command_usage(FILE *f, const secrets_cmd *c)
{
    fprintf(f, "Usage: aurora-server secrets %s %s\n\n%c%s.\n", c->name, c->synopsis,
            toupper((unsigned char)c->summary[0]), c->summary + 1);
    if (c->details)
        fprintf(f, "\n%s", c->details);
    fprintf(f, "\nUses the server's settings (environment, AURORA_CONFIG).\n");
}

int secrets_cli_main(const server_config *given, int argc, char **argv)
{
    static const char self[] = "aurora-server secrets";
    int head = cli_group_head(self, argc, argv, secrets_cli_usage);
    if (head != CLI_GO_ON)
        return head;
    const char *name = argv[0];
    const secrets_cmd *c = NULL;
    for (size_t i = 0; i < N_COMMANDS && !c; i++)
        if (!strcmp(commands[i].name, name))
            c = &commands[i];
    if (!c)
        return cli_unknown_command(self, name);
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "%s %s", self, c->name);
    size_t nopts = 0;
    while (nopts < 4 && c->opts[nopts].name)
        nopts++;
    const char *v[4] = { NULL };
    char *pos[1] = { NULL };
    size_t npos = 0;
    int p = cli_parse(cmd, argc, argv, c->opts, nopts, v, pos, c->max_pos, &npos);
    if (p == CLI_HELP) {
        command_usage(stdout, c);
        return CLI_EXIT_OK;
    }
    if (p == CLI_BAD)
        return CLI_EXIT_USAGE;
    int rc = c->check ? c->check(c, v, pos, npos) : 0;
    if (rc)
        return rc;
    server_config own;
    const server_config *cfg = NULL;
    if ((rc = cli_config_begin(given, &own, &cfg)) != 0)
        return rc;
    rc = c->run(c, cfg, v, pos, npos);
    cli_config_done(given, &own);
    return rc;
}
