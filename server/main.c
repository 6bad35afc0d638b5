/* main.c — aurora-server entry point: serve (default), admin, --help. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "admin.h"
#include "db.h"
#include "log.h"
#include "rca_cli.h"
#include "secrets_cli.h"
#include "server.h"
#include "server_config.h"

#ifndef AURORA_VERSION
#define AURORA_VERSION "0.1.0"
#endif

static void usage(FILE *f)
{
    fprintf(f,
            "aurora-server " AURORA_VERSION " — Aurora tunnel server\n\n"
            "Usage:\n"
            "  aurora-server [serve]        run the server (HTTPS API, connectors, /kubectl-agent)\n"
            "  aurora-server admin ...      operator subcommands (below)\n"
            "  aurora-server secrets ...    secrets backend subcommands (below)\n"
            "  aurora-server rca ...        watch or drain the RCA outbox (below)\n"
            "  aurora-server --help | --version\n\n");
    admin_usage(f);
    fputc('\n', f);
    secrets_cli_usage(f);
    fputc('\n', f);
    rca_cli_usage(f);
    fputc('\n', f);
    server_config_help(f);
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "serve";
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("aurora-server %s\n", AURORA_VERSION);
        return 0;
    }
    server_config cfg;
    char err[512];
    if (server_config_load(&cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "aurora-server: configuration error: %s\n", err);
        return 2;
    }
    if (log_setup("aurora-server", cfg.log_level, cfg.log_format) < 0) {
        fprintf(stderr, "aurora-server: AURORA_LOG_LEVEL/AURORA_LOG_FORMAT invalid\n");
        server_config_free(&cfg);
        return 2;
    }
    /* Before any subcommand opens the store: every handle gets these limits. */
    db_set_limits((int)server_setting_int(&cfg, "AURORA_DB_STATEMENT_TIMEOUT_MS"),
                  (int)server_setting_int(&cfg, "AURORA_DB_CONNECT_TIMEOUT_MS"));
    /* Every subcommand may be the first to touch the data directory (the
     * SQLite file, keys and certificate live there): create it, private. */
    if (mkdir(cfg.data_dir, 0700) < 0 && errno != EEXIST) {
        fprintf(stderr, "aurora-server: cannot create data directory %s: %s\n", cfg.data_dir,
                strerror(errno));
        server_config_free(&cfg);
        return 1;
    }
    int rc;
    if (!strcmp(cmd, "admin")) {
        rc = admin_main(&cfg, argc - 2, argv + 2);
    } else if (!strcmp(cmd, "rca")) {
        rc = rca_cli_main(&cfg, argc - 2, argv + 2);
    } else if (!strcmp(cmd, "secrets")) {
        rc = secrets_cli_main(&cfg, argc - 2, argv + 2);
    } else if (!strcmp(cmd, "serve")) {
        if (server_config_check_production(&cfg, err, sizeof(err)) < 0) {
            log_error("refusing to start: %s", err);
            rc = 2;
        } else {
            rc = server_run(&cfg);
        }
    } else {
        usage(stderr);
        rc = 2;
    }
    server_config_free(&cfg);
    return rc;
}
