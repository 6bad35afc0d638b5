/* secrets_cli.h — `aurora-server secrets …`: operator subcommands on the
 * secrets backends (each prints one JSON object on stdout; errors go to
 * stderr and name backend and path, never a value; no subcommand prints a
 * secret). */
#ifndef AURORA_SECRETS_CLI_H
#define AURORA_SECRETS_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "secrets.h"
#include "server_config.h"

/* argv[0] is the subcommand (argv of `aurora-server secrets <sub> …` from
 * <sub> on).  cfg NULL: the settings are loaded once the command line parsed
 * (--help and usage errors touch nothing).  Returns the process exit code:
 * 0 done, 1 failed, 2 usage. */
int secrets_cli_main(const server_config *cfg, int argc, char **argv);
void secrets_cli_usage(FILE *f);

/* Copies every secret under prefix (NULL: all) from one backend to the
 * other, reading each back from the destination and comparing bytes.  The
 * source is not changed; running it again is harmless.  on_path (may be
 * NULL) hears about each path: rc SECRETS_OK or the failure and its message.
 * *copied / *failed (may be NULL) get the counts.  0 if every secret was
 * copied and verified, -1 otherwise (err: the first failure, or why the
 * source could not be listed). */
int secrets_migrate(secrets_t *from, secrets_t *to, const char *prefix,
                    void (*on_path)(void *ud, const char *path, int rc, const char *msg),
                    void *ud, size_t *copied, size_t *failed, char *err, size_t errlen);

#endif
