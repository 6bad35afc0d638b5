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

#include "rca_outbox.h"
#include "store.h"
#include "store_rca.h"

#define WATCH_PAGE 200
#define WATCH_INTERVAL_DEFAULT 5

void rca_cli_usage(FILE *f)
{
    fprintf(f,
            "RCA outbox subcommands (same environment as the server; JSON lines on stdout):\n"
            "  rca counts                                   jobs per status\n"
            "  rca list [--status pending|claimed|done|dead] [--limit N]\n"
            "  rca watch [--once] [--interval S]            every job, then new ones as they come\n"
            "  rca watch --claim [--once] [--max N] [--lease S] [--interval S]\n"
            "                                               consume: claim, print, acknowledge\n");
}

static const char *opt(int argc, char **argv, const char *name)
{
    for (int i = 0; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return argv[i + 1];
    return NULL;
}

static int flag(int argc, char **argv, const char *name)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], name))
            return 1;
    return 0;
}

/* An integer option in [lo, hi]; dflt when absent.  -1 on a bad value. */
static int opt_int(int argc, char **argv, const char *name, long lo, long hi, long dflt, long *out)
{
    const char *v = opt(argc, argv, name);
    *out = dflt;
    if (!v) {
        if (!flag(argc, argv, name))
            return 0;
        fprintf(stderr, "rca: %s needs a value\n", name); /* the flag without its value */
        return -1;
    }
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || !*v || *end || x < lo || x > hi) {
        fprintf(stderr, "rca: %s must be an integer between %ld and %ld\n", name, lo, hi);
        return -1;
    }
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
    fprintf(stderr, "rca: %s: %s\n", what, store_errmsg(st));
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
            *after = jobs[i].created_seq;
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
        fprintf(stderr, "rca: claiming jobs: %s\n", err);
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

static int watch_cmd(store_t *st, const server_config *cfg, int argc, char **argv)
{
    long interval, max, lease;
    if (opt_int(argc, argv, "--interval", 1, 3600, WATCH_INTERVAL_DEFAULT, &interval) < 0 ||
        opt_int(argc, argv, "--max", 1, RCA_CLAIM_MAX, RCA_CLAIM_DEFAULT, &max) < 0 ||
        opt_int(argc, argv, "--lease", 10, RCA_LEASE_MAX_S, RCA_LEASE_DEFAULT_S, &lease) < 0)
        return 2;
    int once = flag(argc, argv, "--once"), claim = flag(argc, argv, "--claim");
    int64_t after = 0;
    for (;;) {
        int rc;
        if (claim) {
            size_t handled = 0;
            rc = consume_round(st, cfg, max, lease, &handled);
            /* A full round may have left more due jobs: take them now. */
            if (rc == 0 && handled == (size_t)max)
                continue;
        } else {
            rc = print_new(st, NULL, &after, 1000000);
        }
        if (rc || once)
            return rc;
        sleep((unsigned)interval); /* an operator's poll, not a test */
    }
}

int rca_cli_main(const server_config *cfg, int argc, char **argv)
{
    if (argc < 1) {
        rca_cli_usage(stderr);
        return 2;
    }
    const char *cmd = argv[0];
    if (strcmp(cmd, "counts") && strcmp(cmd, "list") && strcmp(cmd, "watch")) {
        rca_cli_usage(stderr);
        return 2;
    }
    const char *status = opt(argc, argv, "--status");
    long limit;
    if (!strcmp(cmd, "list")) {
        if (status && strcmp(status, "pending") && strcmp(status, "claimed") &&
            strcmp(status, "done") && strcmp(status, "dead")) {
            fprintf(stderr, "rca: --status must be pending, claimed, done or dead\n");
            return 2;
        }
        if (opt_int(argc, argv, "--limit", 1, 1000000, 1000, &limit) < 0)
            return 2;
    }
    store_t *st = NULL;
    char err[512];
    if (store_open(cfg->database_url, &st, err, sizeof(err)) != STORE_OK) {
        fprintf(stderr, "rca: cannot open the state store: %s\n", err);
        return 1;
    }
    int rc;
    if (!strcmp(cmd, "counts")) {
        rc = counts_cmd(st);
    } else if (!strcmp(cmd, "list")) {
        int64_t after = 0;
        rc = print_new(st, status, &after, limit);
    } else {
        rc = watch_cmd(st, cfg, argc - 1, argv + 1);
    }
    store_close(st);
    return rc;
}
