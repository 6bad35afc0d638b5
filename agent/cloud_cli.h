/* cloud_cli.h — what the agent knows about one cloud CLI, as a plug-in.
 *
 * Each CLI the server may run as cloud_exec is one file (cloud_gcloud.c,
 * cloud_aws.c, cloud_az.c) defining a `cloud_cli`:
 *
 *   server_env   the variables the server may set for it, exactly named: only
 *                what the CLI needs for credentials, region/project and output.
 *                Nothing that moves its endpoints, proxies or trust store,
 *                loads code or names files: those belong to the operator
 *                (AURORA_CLOUD_ENV, AURORA_SANDBOX_ENV_PASSTHROUGH);
 *   printers     subcommands whose whole purpose is to print the injected
 *                credentials (positional words), refused before anything runs;
 *   home_env     where the CLI keeps its configuration, inside the command's
 *                private HOME (NAME=path relative to HOME);
 *   prepare_home optional: writes what the CLI needs into that HOME from the
 *                command's environment (az: its profile and token cache) and
 *                marks the variables that must then stay out of the
 *                environment;
 *   probe        optional: the installed version, read from the installation
 *                at start (no process is run: `az version` costs ~3 s of CPU,
 *                `gcloud version` ~1 s, on every agent start) and reported in
 *                register; a version other than the tested one is logged.
 *
 * sandbox.c and cloud.c use only this interface: neither names a provider. */
#ifndef AURORA_AGENT_CLOUD_CLI_H
#define AURORA_AGENT_CLOUD_CLI_H

#include <stddef.h>
#include <sys/types.h>

typedef struct {
    char version[64];  /* "" when it cannot be determined */
    char detail[96];   /* more that matters, e.g. "msal 1.21.0" */
    int tested;        /* 1: the version this agent's sandbox was tested with */
    char note[320];    /* logged at start when not tested: what may break and why */
} cloud_cli_version;

typedef struct {
    const char *home;  /* the command's HOME: exists, 0700 */
    int chown_to;      /* uid separation: what is written belongs to uid:gid */
    uid_t uid;
    gid_t gid;
} cloud_cli_home;

typedef struct cloud_cli {
    const char *name;
    const char *const *server_env; /* NULL-terminated */
    const char *const *printers;   /* NULL-terminated, "word word" */
    const char *const *home_env;   /* NULL-terminated, "NAME=relative/path" */
    /* 0, or -1 with err (never a value from env).  drop[0..nenv) starts 0. */
    int (*prepare_home)(const cloud_cli_home *h, char *const env[], int nenv,
                        unsigned char *drop, char *err, size_t errlen);
    /* program: absolute path of the configured executable */
    void (*probe)(const char *program, cloud_cli_version *out);
} cloud_cli;

extern const cloud_cli cloud_cli_gcloud;
extern const cloud_cli cloud_cli_aws;
extern const cloud_cli cloud_cli_az;

/* Every plug-in, NULL-terminated. */
const cloud_cli *const *cloud_cli_all(void);
/* The plug-in named name, NULL if none. */
const cloud_cli *cloud_cli_find(const char *name);
/* 1 if the server may set variable name (len bytes) for this CLI. */
int cloud_cli_server_env_ok(const cloud_cli *cli, const char *name, size_t len);
/* The value of name among env[0..nenv) ("NAME=value"), NULL if absent. */
const char *cloud_cli_env_value(char *const env[], int nenv, const char *name);

/* ---- helpers for probes -------------------------------------------------------- */

/* The first line of a small text file, trimmed.  0, or -1. */
int cloud_cli_first_line(const char *path, char *out, size_t outlen);
/* The version of Python distribution `dist` ("azure_cli_core", "msal") in
 * the environment of the Python interpreter that runs `program` (a Python
 * script: its #! line; an ELF or shell wrapper: `python` below its prefix):
 * the <dist>-<version>.dist-info / .egg-info directory in that prefix's
 * lib/python3.N/site-packages or dist-packages (and /usr/lib/python3/dist-packages
 * for Debian's /usr).  0, or -1 when not found. */
int cloud_cli_python_dist_version(const char *program, const char *dist, char *out,
                                  size_t outlen);
/* The Python interpreter that runs program (its #! line, or the first
 * absolute …/bin/python* a shell wrapper names), "" if none. */
void cloud_cli_interpreter(const char *program, char *out, size_t outlen);
/* 1 if version starts with the dotted prefix (e.g. "2.45." or "2.45.0"). */
int cloud_cli_version_is(const char *version, const char *prefix);

#endif
