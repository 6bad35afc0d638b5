/* main.c — aurora-server entry point: serve (default), admin, secrets, rca,
 * --help, --version.  Each command parses its own command line (cli.h) before
 * anything is loaded, so `--help` and usage errors have no side effect. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include "admin.h"
#include "cli.h"
#include "log.h"
#include "rca_cli.h"
#include "secrets_cli.h"
#include "server.h"
#include "server_config.h"


static void usage(FILE *f)
{
    fprintf(f,
            "aurora-server " AURORA_VERSION " — Aurora tunnel server\n\n"
            "Usage:\n"
            "  aurora-server [serve]            run the server (HTTPS API, connectors, /kubectl-agent)\n"
            "  aurora-server admin COMMAND      operator commands on the state store (below)\n"
            "  aurora-server secrets COMMAND    secrets backend commands (below)\n"
            "  aurora-server rca COMMAND        watch or drain the RCA outbox (below)\n"
            "  aurora-server --help | --version\n\n"
            "Every command takes --help; options are --name VALUE or --name=VALUE.\n"
            "Exit status: 0 done, 1 failed, 2 bad command line or settings.\n\n");
    admin_usage(f);
    fputc('\n', f);
    secrets_cli_usage(f);
    fputc('\n', f);
    rca_cli_usage(f);
    fputc('\n', f);
    server_config_help(f);
}

static void serve_usage(FILE *f)
{
    fprintf(f,
            "Usage: aurora-server [serve]\n\n"
            "Runs the server: the HTTPS API, the connectors and the agents' /kubectl-agent\n"
            "endpoint.  It takes no arguments; everything is a setting.\n\n");
    server_config_help(f);
}

static int serve_main(int argc, char **argv)
{
    static const char cmd[] = "aurora-server serve";
    char *pos[1];
    size_t npos = 0;
    int p = cli_parse(cmd, argc, argv, NULL, 0, NULL, pos, 0, &npos);
    if (p == CLI_HELP) {
        serve_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (p == CLI_BAD)
        return CLI_EXIT_USAGE;
    server_config cfg;
    int rc = cli_load_config(&cfg);
    if (rc)
        return rc;
    char err[512];
    if (server_config_check_production(&cfg, err, sizeof(err)) < 0) {
        log_error("refusing to start: %s", err);
        rc = CLI_EXIT_USAGE;
    } else {
        rc = server_run(&cfg);
    }
    server_config_free(&cfg);
    return rc;
}

int main(int argc, char **argv)
{
    /* The process holds every tenant's secrets in memory at one time or
     * another (the master key, Vault token, client secrets, decrypted
     * connector credentials): no core file, and /proc/<pid>/mem and environ
     * readable by root only, as for the agent. */
    struct rlimit no_core = { 0, 0 };
    if (setrlimit(RLIMIT_CORE, &no_core) != 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        fprintf(stderr, "aurora-server: cannot turn core dumps off: %s\n", strerror(errno));
    if (argc < 2) {
        char *self[] = { "serve", NULL };
        return serve_main(1, self);
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        if (argc > 2)
            return cli_extra_args_error("aurora-server", 2, argc - 2, -1);
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        if (argc > 2)
            return cli_extra_args_error("aurora-server", 2, argc - 2, -1);
        printf("aurora-server %s\n", AURORA_VERSION);
        return CLI_EXIT_OK;
    }
    if (!strcmp(cmd, "serve"))
        return serve_main(argc - 1, argv + 1);
    /* These three take their subcommand as argv[0] (secrets_cli_main's
     * convention, which its unit test uses); NULL: load the settings once the
     * command line is known to be good. */
    if (!strcmp(cmd, "admin"))
        return admin_main(NULL, argc - 2, argv + 2);
    if (!strcmp(cmd, "secrets"))
        return secrets_cli_main(NULL, argc - 2, argv + 2);
    if (!strcmp(cmd, "rca"))
        return rca_cli_main(NULL, argc - 2, argv + 2);
    if (cmd[0] == '-')
        return cli_usage_error("aurora-server", "unknown option '%s'", cmd);
    return cli_usage_error("aurora-server", "unknown command '%s'", cmd);
}
