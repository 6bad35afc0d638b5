/* rca_cli.c — `aurora-server rca …` (rca_cli.h, docs/rca-outbox.md).
 *
 *   rca counts                  {"pending":…,"claimed":…,"done":…,"dead":…}
 *   rca list [--status S] [--limit N]
 *                               the jobs, oldest first, one JSON object a line
 *   rca watch [--once] [--interval S]
 *                               prints every job (one JSON line each), then new
 *                               ones as they are created; --once stops after the
 *                               backlog
 *   rca watch --claim [--once] [--max N] [--lease S] [--interval S]
 *                               acts as the consumer: claims due jobs, prints
 *                               each (with its claim token) and acknowledges it
 *                               once the line is written (a failed write gives
 *                               it back with nack).  Only when no investigation
 *                               service consumes the outbox.
 *
 * Reading the store directly (not the HTTP routes) keeps the command usable
 * when the server is down, like `aurora-server admin`. */
#include "rca_cli.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "rca_outbox.h"
#include "store.h"
#include "store_rca.h"

#define WATCH_PAGE 200
#define WATCH_INTERVAL_DEFAULT 5

void rca_cli_usage(FILE *f)
{
    fprintf(f,
            "RCA outbox commands (same environment as the server; JSON lines on stdout):\n"
            "  rca counts\n"
            "      jobs per status\n"
            "  rca list [--status pending|claimed|done|dead] [--limit N]\n"
            "      the jobs, oldest first\n"
            "  rca watch [--once] [--interval S]\n"
            "      every job, then new ones as they come\n"
            "  rca watch --claim [--once] [--max N] [--lease S] [--interval S]\n"
            "      consume: claim, print, acknowledge (only when no investigation\n"
            "      service consumes the outbox)\n");
}

/* An integer option in [lo, hi]; dflt when absent.  Exit status 2 (after
 * saying why) on a bad value, else 0. */
static int int_value(const char *cmd, const char *name, const char *v, long lo, long hi,
                     long dflt, long *out)
{
    *out = dflt;
    if (!v)
        return 0;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || !*v || *end || x < lo || x > hi)
        return cli_usage_error(cmd, "--%s must be an integer between %ld and %ld, not '%s'", name,
                               lo, hi, v);
    *out = x;
    return 0;
}

/* One JSON line; -1 when stdout failed (closed pipe, full disk). */
static int print_line(cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    if (!s)
        return -1;
    int rc = printf("%s\n", s) < 0 || fflush(stdout) != 0 ? -1 : 0;
    free(s);
    return rc;
}

static int store_fail(store_t *st, const char *what)
{
    fprintf(stderr, "aurora-server rca: %s: %s\n", what, store_errmsg(st));
    return 1;
}

static int counts_cmd(store_t *st)
{
    int64_t c[4];
    if (store_rca_counts(st, c) != STORE_OK)
        return store_fail(st, "counting jobs");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "pending", (double)c[0]);
    cJSON_AddNumberToObject(o, "claimed", (double)c[1]);
    cJSON_AddNumberToObject(o, "done", (double)c[2]);
    cJSON_AddNumberToObject(o, "dead", (double)c[3]);
    int rc = print_line(o) < 0 ? 1 : 0;
    cJSON_Delete(o);
    return rc;
}

/* Prints jobs created after *after (paging), moving *after on. */
static int print_new(store_t *st, const char *status, int64_t *after, long limit)
{
    long printed = 0;
    for (;;) {
        store_rca_job *jobs = NULL;
        size_t n = 0;
        long page = limit - printed < WATCH_PAGE ? limit - printed : WATCH_PAGE;
        if (page <= 0)
            return 0;
        if (store_rca_list(st, status, *after, (int)page, &jobs, &n) != STORE_OK)
            return store_fail(st, "listing jobs");
        int rc = 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
            cJSON *o = rca_job_json(&jobs[i], NULL);
            rc = !o || print_line(o) < 0 ? 1 : 0;
            cJSON_Delete(o);
            *after = jobs[i].list_seq;
            printed++;
        }
        store_rca_jobs_free(jobs, n);
        if (rc || n < (size_t)page)
            return rc;
    }
}

/* One round of consuming: claim, print, ack (nack when the print failed). */
static int consume_round(store_t *st, const server_config *cfg, long max, long lease,
                         size_t *handled)
{
    cJSON *jobs = NULL;
    char err[256];
    if (rca_claim_json(st, cfg, (int)max, lease, (int64_t)time(NULL), &jobs, err, sizeof(err)) !=
        STORE_OK) {
        fprintf(stderr, "aurora-server rca: claiming jobs: %s\n", err);
        return 1;
    }
    *handled = 0;
    int rc = 0;
    const cJSON *j;
    cJSON_ArrayForEach(j, jobs)
    {
        const char *id = cJSON_GetObjectItemCaseSensitive(j, "id")->valuestring;
        const char *tok = cJSON_GetObjectItemCaseSensitive(j, "claim_token")->valuestring;
        char hash[65];
        if (rca_claim_hash(tok, hash) < 0) {
            rc = 1;
            break;
        }
        if (rc == 0 && print_line((cJSON *)j) == 0) {
            if (store_rca_ack(st, id, hash, (int64_t)time(NULL)) != STORE_OK)
                rc = store_fail(st, "acknowledging a job"); /* its lease will end: not lost */
            (*handled)++;
        } else {
            store_rca_policy pol = rca_policy(cfg);
            (void)store_rca_nack(st, id, hash, "operator consumer could not write the job",
                                 (int64_t)time(NULL), &pol, NULL, NULL);
            rc = 1;
        }
    }
    cJSON_Delete(jobs);
    return rc;
}

typedef struct {
    int once, claim;
    long interval, max, lease;
} watch_opts;

static int watch_cmd(store_t *st, const server_config *cfg, const watch_opts *w)
{
    int64_t after = 0;
    for (;;) {
        int rc;
        if (w->claim) {
            size_t handled = 0;
            rc = consume_round(st, cfg, w->max, w->lease, &handled);
            /* A full round may have left more due jobs: take them now. */
            if (rc == 0 && handled == (size_t)w->max)
                continue;
        } else {
            rc = print_new(st, NULL, &after, 1000000);
        }
        if (rc || w->once)
            return rc;
        sleep((unsigned)w->interval); /* an operator's poll, not a test */
    }
}

static const char *const usage_lines[] = {
    "counts", "",
    "list", "[--status pending|claimed|done|dead] [--limit N]",
    "watch", "[--once] [--interval S] [--claim [--max N] [--lease S]]",
};

static void command_usage(const char *name)
{
    for (size_t i = 0; i < sizeof(usage_lines) / sizeof(usage_lines[0]); i += 2)
        if (!strcmp(usage_lines[i], name))
            printf("Usage: aurora-server rca %s%s%s\n\n", name, *usage_lines[i + 1] ? " " : "",
                   usage_lines[i + 1]);
    if (!strcmp(name, "counts"))
        printf("Prints {\"pending\":…,\"claimed\":…,\"done\":…,\"dead\":…}.\n");
    else if (!strcmp(name, "list"))
        printf("Prints the jobs, oldest first, one JSON object a line (at most --limit,\n"
               "default 1000).\n");
    else
        printf("Prints every job (one JSON line each), then new ones as they are created,\n"
               "polling every --interval seconds (default %d); --once stops after the backlog.\n"
               "With --claim it acts as the consumer: claims due jobs (--max at a time, for\n"
               "--lease seconds), prints each with its claim token and acknowledges it once\n"
               "the line is written (a failed write gives it back).  Only when no\n"
               "investigation service consumes the outbox.\n",
               WATCH_INTERVAL_DEFAULT);
    printf("\nUses the server's settings (environment, AURORA_CONFIG) to reach the store.\n");
}

int rca_cli_main(const server_config *given, int argc, char **argv)
{
    static const char self[] = "aurora-server rca";
    int head = cli_group_head(self, argc, argv, rca_cli_usage);
    if (head != CLI_GO_ON)
        return head;
    const char *name = argv[0];
    static const cli_option none[] = { { NULL, 0, 0 } };
    static const cli_option list_opts[] = { { "status", 1, 0 }, { "limit", 1, 0 } };
    static const cli_option watch_opts_def[] = {
        { "once", 0, 0 }, { "interval", 1, 0 }, { "claim", 0, 0 }, { "max", 1, 0 }, { "lease", 1, 0 },
    };
    const cli_option *opts;
    size_t nopts;
    if (!strcmp(name, "counts")) {
        opts = none;
        nopts = 0;
    } else if (!strcmp(name, "list")) {
        opts = list_opts;
        nopts = 2;
    } else if (!strcmp(name, "watch")) {
        opts = watch_opts_def;
        nopts = 5;
    } else {
        return cli_unknown_command(self, name);
    }
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "%s %s", self, name);
    const char *v[5] = { NULL };
    char *pos[1];
    size_t npos = 0;
    int p = cli_parse(cmd, argc, argv, opts, nopts, v, pos, 0, &npos);
    if (p == CLI_HELP) {
        command_usage(name);
        return CLI_EXIT_OK;
    }
    if (p == CLI_BAD)
        return CLI_EXIT_USAGE;

    /* Every value is checked before the settings and the store are touched. */
    const char *status = NULL;
    long limit = 0;
    watch_opts w = { 0, 0, 0, 0, 0 };
    if (!strcmp(name, "list")) {
        status = v[0];
        if (status && strcmp(status, "pending") && strcmp(status, "claimed") &&
            strcmp(status, "done") && strcmp(status, "dead"))
            return cli_usage_error(cmd, "--status must be pending, claimed, done or dead, not '%s'",
                                   status);
        if (int_value(cmd, "limit", v[1], 1, 1000000, 1000, &limit))
            return CLI_EXIT_USAGE;
    } else if (!strcmp(name, "watch")) {
        w.once = v[0] != NULL;
        w.claim = v[2] != NULL;
        if (!w.claim && (v[3] || v[4]))
            return cli_usage_error(cmd, "option '--%s' needs --claim", v[3] ? "max" : "lease");
        if (int_value(cmd, "interval", v[1], 1, 3600, WATCH_INTERVAL_DEFAULT, &w.interval) ||
            int_value(cmd, "max", v[3], 1, RCA_CLAIM_MAX, RCA_CLAIM_DEFAULT, &w.max) ||
            int_value(cmd, "lease", v[4], 10, RCA_LEASE_MAX_S, RCA_LEASE_DEFAULT_S, &w.lease))
            return CLI_EXIT_USAGE;
    }

    server_config own;
    const server_config *cfg = NULL;
    int rc = cli_config_begin(given, &own, &cfg);
    if (rc)
        return rc;
    store_t *st = NULL;
    char err[512];
    if (store_open(cfg->database_url, &st, err, sizeof(err)) != STORE_OK) {
        fprintf(stderr, "%s: cannot open the state store: %s\n", cmd, err);
        cli_config_done(given, &own);
        return CLI_EXIT_FAILED;
    }
    if (!strcmp(name, "counts")) {
        rc = counts_cmd(st);
    } else if (!strcmp(name, "list")) {
        int64_t after = 0;
        rc = print_new(st, status, &after, limit);
    } else {
        rc = watch_cmd(st, cfg, &w);
    }
    store_close(st);
    cli_config_done(given, &own);
    return rc;
}
