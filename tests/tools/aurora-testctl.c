/* aurora-testctl.c — test-only commands on a server's state store, kept out
 * of the operator's `aurora-server admin`: they bend the state in ways only a
 * test wants (e.g. make an OAuth state expire without waiting ten minutes).
 * Built by `make test` (and `make build/asan/aurora-testctl`) only; same
 * settings as the server (environment, AURORA_CONFIG), same command-line
 * conventions (server/cli.h), JSON on stdout.
 *
 *   aurora-testctl expire-oauth-state --state STATE
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "crypto.h"
#include "store.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: aurora-testctl COMMAND [OPTIONS]   (test-only; not for operators)\n\n"
               "  expire-oauth-state --state STATE   make a pending OAuth state expire now\n");
}

static int expire_oauth_state(int argc, char **argv)
{
    static const char cmd[] = "aurora-testctl expire-oauth-state";
    static const cli_option opts[] = { { "state", 1, 1 } };
    const char *v[1];
    char *pos[1];
    size_t npos = 0;
    int p = cli_parse(cmd, argc, argv, opts, 1, v, pos, 0, &npos);
    if (p == CLI_HELP) {
        printf("Usage: %s --state STATE\n\nMakes a pending OAuth state (the value of the "
               "state parameter) expire now.\n",
               cmd);
        return CLI_EXIT_OK;
    }
    if (p == CLI_BAD)
        return CLI_EXIT_USAGE;
    server_config cfg;
    int rc = cli_load_config(&cfg);
    if (rc)
        return rc;
    store_t *st = NULL;
    char err[512];
    if (store_open(cfg.database_url, &st, err, sizeof(err)) != STORE_OK) {
        fprintf(stderr, "%s: cannot open the state store: %s\n", cmd, err);
        server_config_free(&cfg);
        return CLI_EXIT_FAILED;
    }
    /* Only the state's hash is stored (store.h). */
    char hash[65];
    crypto_sha256_hex(v[0], strlen(v[0]), hash);
    int r = store_oauth_state_set_expiry(st, hash, (int64_t)time(NULL) - 1);
    if (r == STORE_NOT_FOUND) {
        fprintf(stderr, "%s: no such OAuth state\n", cmd);
        rc = CLI_EXIT_FAILED;
    } else if (r != STORE_OK) {
        fprintf(stderr, "%s: %s\n", cmd, store_errmsg(st));
        rc = CLI_EXIT_FAILED;
    } else {
        printf("{\"expired\":true}\n");
    }
    store_close(st);
    server_config_free(&cfg);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("aurora-testctl", "missing command");
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (!strcmp(cmd, "expire-oauth-state"))
        return expire_oauth_state(argc - 1, argv + 1);
    return cli_usage_error("aurora-testctl", "unknown command '%s'", cmd);
}
