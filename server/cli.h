/* cli.h — the command-line conventions every `aurora-server` command shares
 * (main.c, admin.c, secrets_cli.c, rca_cli.c):
 *
 *  - options are long (`--org ORG` or `--org=ORG`), parsed with getopt_long;
 *    `-h`/`--help` anywhere prints the command's usage on stdout, exit 0;
 *  - an unknown command or option, a missing value, an option given twice or
 *    an argument too many is a usage error: one line on stderr naming what was
 *    wrong, a pointer to `--help`, exit 2;
 *  - the settings are loaded (and the data directory created) only once the
 *    command line is known to be good, so `--help` and usage errors touch
 *    nothing.
 */
#ifndef AURORA_CLI_H
#define AURORA_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "server_config.h"

/* Exit statuses. */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAILED 1 /* the command ran and failed (not found, store down, …) */
#define CLI_EXIT_USAGE 2  /* bad command line or bad settings */

typedef struct {
    const char *name; /* "org" for --org */
    int takes_value;  /* 1: --org ORG / --org=ORG; 0: a flag */
    int required;     /* 1: absent is a usage error */
} cli_option;

/* cli_parse results. */
enum { CLI_PARSED = 0, CLI_HELP = 1, CLI_BAD = 2 };

/* Parses argv[1..argc-1] (argv[0] is the command's own word, e.g.
 * "create-key").  cmd names the command in messages ("aurora-server admin
 * create-key").  values[i] gets opts[i]'s value ("" for a flag given), NULL
 * when absent.  The arguments that are not options go to pos (in order, at
 * most max_pos; *npos their count).  CLI_HELP when -h/--help was given (the
 * caller prints its usage on stdout), CLI_BAD after printing the first
 * problem on stderr (the caller exits CLI_EXIT_USAGE). */
int cli_parse(const char *cmd, int argc, char **argv, const cli_option *opts, size_t nopts,
              const char **values, char **pos, size_t max_pos, size_t *npos);

/* The first word of a command group (`admin`, `secrets`, `rca`): a missing
 * command is a usage error, `--help`/`-h`/`help` prints the group's usage on
 * stdout.  CLI_GO_ON when argv[0] is a command word to look up, else the
 * exit status to return. */
#define CLI_GO_ON (-1)
int cli_group_head(const char *self, int argc, char **argv, void (*usage)(FILE *));
/* The usage error for a word that names no command of the group. */
int cli_unknown_command(const char *self, const char *word);

/* Prints "<cmd>: <message>" and "Try '<cmd> --help'." on stderr; returns
 * CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The usage error for arguments too many: count of them, the first at
 * position first (1: the word after cmd); takes: how many the command
 * accepts, -1 not said.  Never their text, which may be a secret typed in
 * the wrong place. */
int cli_extra_args_error(const char *cmd, int first, int count, int takes);

/* Loads the settings (environment, AURORA_CONFIG), sets up logging and the
 * database limits, and creates the data directory (private).  0, or the
 * exit status after printing why on stderr.  server_config_free(cfg) after 0. */
int cli_load_config(server_config *cfg);

/* A command that may be handed its settings (tests) or loads them itself:
 * *cfg = given, or loaded into *own (cli_config_done frees it). */
int cli_config_begin(const server_config *given, server_config *own, const server_config **cfg);
void cli_config_done(const server_config *given, server_config *own);

#endif
