/* secrets_cli.c — `aurora-server secrets migrate | rotate-key | put | list |
 * delete`.  Uses the same settings as the server (environment, AURORA_CONFIG);
 * `migrate` opens two backends from them, overriding SECRETS_BACKEND. */
#include "secrets_cli.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secrets_config.h"
#include "secrets_local.h"

void secrets_cli_usage(FILE *f)
{
    fprintf(f,
            "Secrets subcommands (same environment as the server; each prints JSON):\n"
            "  secrets migrate --from B --to B [--prefix P]   copy every secret between backends\n"
            "                                                 (local, vault, aws_secrets_manager)\n"
            "                                                 and verify each copy\n"
            "  secrets rotate-key [--new-key-file F | --new-key-env VAR]\n"
            "                                                 local backend: re-encrypt everything\n"
            "                                                 under a new master key\n"
            "  secrets put PATH (--file F | --stdin)          store a file's bytes verbatim (e.g.\n"
            "                                                 aurora/system/github-app/private-key)\n"
            "  secrets list [PREFIX]                          paths only, never values\n"
            "  secrets delete PATH\n");
}

static const char *opt(int argc, char **argv, const char *name)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return argv[i + 1];
    return NULL;
}

static int has_flag(int argc, char **argv, const char *name)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], name))
            return 1;
    return 0;
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

static int usage_error(const char *msg)
{
    fprintf(stderr, "secrets: %s\n", msg);
    secrets_cli_usage(stderr);
    return 2;
}

/* Opens the backend named `backend` (NULL: SECRETS_BACKEND) from cfg. */
static secrets_t *open_backend(const server_config *cfg, const char *backend)
{
    secrets_config sc;
    secrets_config_from_server(cfg, &sc);
    if (backend)
        sc.backend = backend;
    secrets_t *s = NULL;
    char err[512];
    if (secrets_open(&sc, &s, err, sizeof(err)) != SECRETS_OK) {
        fprintf(stderr, "secrets: %s\n", err);
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

static int cmd_migrate(const server_config *cfg, int argc, char **argv)
{
    const char *from_name = opt(argc, argv, "--from"), *to_name = opt(argc, argv, "--to");
    const char *prefix = opt(argc, argv, "--prefix");
    if (!from_name || !to_name)
        return usage_error("migrate needs --from and --to");
    if (!strcmp(from_name, to_name))
        return usage_error("--from and --to name the same backend");
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
        fprintf(stderr, "secrets migrate: %s\n", err);
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
            fprintf(stderr, "secrets rotate-key: cannot read %s: %s\n", file, strerror(errno));
            return -1;
        }
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
    } else {
        const char *v = getenv(env);
        if (!v || !*v) {
            fprintf(stderr, "secrets rotate-key: %s is not set\n", env);
            return -1;
        }
        snprintf(buf, sizeof(buf), "%s", v);
    }
    int rc = secrets_local_parse_key(buf, key);
    OPENSSL_cleanse(buf, sizeof(buf));
    if (rc < 0)
        fprintf(stderr, "secrets rotate-key: the new key must be 32 bytes as 64 hex characters or "
                        "base64\n");
    return rc;
}

static int cmd_rotate(const server_config *cfg, int argc, char **argv)
{
    const char *file = opt(argc, argv, "--new-key-file"), *env = opt(argc, argv, "--new-key-env");
    if (file && env)
        return usage_error("give --new-key-file or --new-key-env, not both");
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
        fprintf(stderr, "secrets rotate-key: %s\n", err);
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
static unsigned char *read_input(FILE *f, size_t *len)
{
    size_t cap = SECRETS_MAX_VALUE + 1, n = 0;
    unsigned char *buf = malloc(cap);
    if (!buf)
        return NULL;
    size_t got;
    while (n < cap && (got = fread(buf + n, 1, cap - n, f)) > 0)
        n += got;
    *len = n;
    return buf;
}

static int cmd_put(const server_config *cfg, int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-')
        return usage_error("put needs a PATH");
    const char *path = argv[1], *file = opt(argc, argv, "--file");
    int use_stdin = has_flag(argc, argv, "--stdin");
    if (!!file == use_stdin)
        return usage_error("put needs --file F or --stdin (values never go on the command line)");
    FILE *f = file ? fopen(file, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "secrets put: cannot read %s: %s\n", file, strerror(errno));
        return 1;
    }
    size_t len = 0;
    unsigned char *v = read_input(f, &len);
    if (file)
        fclose(f);
    if (!v) {
        fprintf(stderr, "secrets put: out of memory\n");
        return 1;
    }
    secrets_t *s = open_backend(cfg, NULL);
    int rc = 1;
    if (s) {
        char err[512], ref[SECRETS_MAX_PATH + 64];
        if (secrets_put(s, path, v, len, err, sizeof(err)) != SECRETS_OK) {
            fprintf(stderr, "secrets put: %s\n", err);
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
    secrets_free(v, SECRETS_MAX_VALUE + 1);
    return rc;
}

static int cmd_list(const server_config *cfg, int argc, char **argv)
{
    const char *prefix = argc > 1 ? argv[1] : "";
    secrets_t *s = open_backend(cfg, NULL);
    if (!s)
        return 1;
    char **paths = NULL, err[512];
    size_t n = 0;
    int rc = secrets_list(s, prefix, &paths, &n, err, sizeof(err));
    if (rc != SECRETS_OK) {
        fprintf(stderr, "secrets list: %s\n", err);
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

static int cmd_delete(const server_config *cfg, int argc, char **argv)
{
    if (argc < 2)
        return usage_error("delete needs a PATH");
    secrets_t *s = open_backend(cfg, NULL);
    if (!s)
        return 1;
    char err[512];
    int rc = secrets_delete(s, argv[1], err, sizeof(err));
    if (rc != SECRETS_OK)
        fprintf(stderr, "secrets delete: %s\n", err);
    cJSON *o = NULL;
    if (rc == SECRETS_OK) {
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "backend", secrets_backend_name(s));
        cJSON_AddStringToObject(o, "deleted", argv[1]);
    }
    secrets_close(s);
    return rc == SECRETS_OK ? print_json(o) : 1;
}

int secrets_cli_main(const server_config *cfg, int argc, char **argv)
{
    if (argc < 1) {
        secrets_cli_usage(stderr);
        return 2;
    }
    const char *cmd = argv[0];
    if (!strcmp(cmd, "migrate"))
        return cmd_migrate(cfg, argc, argv);
    if (!strcmp(cmd, "rotate-key"))
        return cmd_rotate(cfg, argc, argv);
    if (!strcmp(cmd, "put"))
        return cmd_put(cfg, argc, argv);
    if (!strcmp(cmd, "list"))
        return cmd_list(cfg, argc, argv);
    if (!strcmp(cmd, "delete"))
        return cmd_delete(cfg, argc, argv);
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        secrets_cli_usage(stdout);
        return 0;
    }
    return usage_error("unknown subcommand");
}
