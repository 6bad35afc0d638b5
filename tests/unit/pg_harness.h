/* pg_harness.h — a throwaway PostgreSQL server for unit tests.
 *
 * Debian's server binaries (/usr/lib/postgresql/<v>/bin, or
 * $AURORA_PG_BINDIR) are run from a fresh mkdtemp directory: initdb, then
 * the postmaster listening only on a unix socket inside that directory (no
 * TCP at all), trust authentication for the role "aurora".  PostgreSQL
 * refuses to run as root, so when the tests run as root (CI) the directory is
 * handed to the "postgres" user (else "nobody") and both programs run as that
 * user.  pg_stop()/pg_start() restart the same cluster (the reconnect tests);
 * pg_destroy() stops it and removes the directory.
 *
 * Durability settings are off (fsync, synchronous_commit): these databases
 * live for seconds, and a restart here is always a clean shutdown. */
#ifndef AURORA_TEST_PG_HARNESS_H
#define AURORA_TEST_PG_HARNESS_H

#include <glob.h>
#include <libpq-fe.h>
#include <pwd.h>

#include "proc_harness.h"

typedef struct {
    char dir[64];      /* socket directory, also holds data/ and logs */
    char bindir[256];
    char log[128];
    pid_t pid;
    ph_opts opts;      /* user switching for initdb/postgres */
} pg_server;

#define PG_ROLE "aurora"

static inline int pg_find_bindir(char *out, size_t cap)
{
    const char *env = getenv("AURORA_PG_BINDIR");
    if (env && *env) {
        snprintf(out, cap, "%s", env);
        return 0;
    }
    glob_t g;
    if (glob("/usr/lib/postgresql/*/bin/postgres", 0, NULL, &g) != 0)
        return -1;
    /* Highest version: compare the numeric directory names. */
    long best = -1;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        long v = strtol(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"), NULL, 10);
        if (v > best) {
            best = v;
            snprintf(out, cap, "%.*s", (int)(strlen(g.gl_pathv[i]) - strlen("/postgres")),
                     g.gl_pathv[i]);
        }
    }
    globfree(&g);
    return best < 0 ? -1 : 0;
}

/* A database may be named "db" or "db/schema": the schema is then put
 * first on the search_path, so each test can get a fresh, empty namespace
 * (CREATE SCHEMA) for the price of a catalog row instead of copying a
 * template database. */
static inline void pg_split(const char *spec, char *db, size_t dbcap, const char **schema)
{
    const char *slash = strchr(spec, '/');
    size_t n = slash ? (size_t)(slash - spec) : strlen(spec);
    snprintf(db, dbcap, "%.*s", (int)n, spec);
    *schema = slash ? slash + 1 : NULL;
}

/* libpq keyword/value connection string for a database of this server.
 * connect_timeout: the tests' usual 20 s (the server forks a backend per
 * connection, which on a loaded machine has taken over a second; the
 * helpers below connect for every statement). */
static inline void pg_conninfo(const pg_server *s, const char *spec, char *out, size_t cap)
{
    char db[64];
    const char *schema;
    pg_split(spec, db, sizeof(db), &schema);
    snprintf(out, cap, "host=%s port=5432 user=" PG_ROLE " dbname=%s connect_timeout=20%s%s%s",
             s->dir, db, schema ? " options='-c search_path=" : "", schema ? schema : "",
             schema ? "'" : "");
}

/* The DATABASE_URL form the server takes: postgres://aurora@/db?host=%2Ftmp%2F…
 * (plus options=-c search_path=<schema> for "db/schema"). */
static inline void pg_url(const pg_server *s, const char *spec, char *out, size_t cap)
{
    char db[64];
    const char *schema;
    pg_split(spec, db, sizeof(db), &schema);
    char enc[192];
    size_t o = 0;
    for (const char *p = s->dir; *p && o + 4 < sizeof(enc); p++) {
        if (*p == '/') {
            memcpy(enc + o, "%2F", 3);
            o += 3;
        } else {
            enc[o++] = *p;
        }
    }
    enc[o] = '\0';
    snprintf(out, cap, "postgres://" PG_ROLE "@/%s?host=%s&port=5432%s%s", db, enc,
             schema ? "&options=-c%20search_path%3D" : "", schema ? schema : "");
}

static inline int pg_start(pg_server *s)
{
    char postgres[300], data[128];
    snprintf(postgres, sizeof(postgres), "%s/postgres", s->bindir);
    snprintf(data, sizeof(data), "%s/data", s->dir);
    const char *argv[] = { postgres, "-D", data, "-k", s->dir, "-p", "5432",
                           "-c", "listen_addresses=", "-c", "fsync=off",
                           "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                           "-c", "max_connections=60", "-c", "shared_buffers=16MB",
                           NULL };
    ph_opts o = s->opts;
    o.log_path = s->log;
    s->pid = ph_spawn(argv, &o, NULL);
    if (s->pid < 0)
        return -1;
    char ci[256];
    pg_conninfo(s, "postgres", ci, sizeof(ci));
    long long end = ph_now_ms() + 20000;
    while (ph_now_ms() < end) {
        if (PQping(ci) == PQPING_OK)
            return 0;
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) { /* died at start */
            s->pid = -1;
            return -1;
        }
        ph_sleep_ms(20);
    }
    return -1;
}

/* Fast shutdown: sessions are terminated, open transactions rolled back. */
static inline void pg_stop(pg_server *s)
{
    if (s->pid > 0)
        ph_stop(s->pid, SIGINT, 15000);
    s->pid = -1;
}

static inline int pg_restart(pg_server *s)
{
    pg_stop(s);
    return pg_start(s);
}

static inline void pg_destroy(pg_server *s)
{
    pg_stop(s);
    if (s->dir[0])
        ph_rmtree(s->dir);
    s->dir[0] = '\0';
}

/* Creates the cluster and starts it.  0, or -1 (details in s->log). */
static inline int pg_create(pg_server *s)
{
    memset(s, 0, sizeof(*s));
    s->pid = -1;
    if (pg_find_bindir(s->bindir, sizeof(s->bindir)) < 0) {
        fprintf(stderr, "pg_harness: no PostgreSQL server binaries (postgresql package)\n");
        return -1;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(s->dir, sizeof(s->dir), "%s/aurora-pg-XXXXXX", tmp && tmp[0] == '/' && strlen(tmp) < 40 ? tmp : "/tmp");
    if (!mkdtemp(s->dir)) {
        s->dir[0] = '\0';
        return -1;
    }
    snprintf(s->log, sizeof(s->log), "%s/server.log", s->dir);
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw)
            pw = getpwnam("nobody");
        if (!pw || chown(s->dir, pw->pw_uid, pw->pw_gid) < 0) {
            pg_destroy(s);
            return -1;
        }
        s->opts.as_user = 1;
        s->opts.uid = pw->pw_uid;
        s->opts.gid = pw->pw_gid;
        /* The log is created by the parent (root) before the switch. */
        int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0 || fchown(fd, pw->pw_uid, pw->pw_gid) < 0) {
            if (fd >= 0)
                close(fd);
            pg_destroy(s);
            return -1;
        }
        close(fd);
    }
    char initdb[300], data[128];
    snprintf(initdb, sizeof(initdb), "%s/initdb", s->bindir);
    snprintf(data, sizeof(data), "%s/data", s->dir);
    const char *argv[] = { initdb, "-D", data, "-U", PG_ROLE, "-A", "trust", "-E", "UTF8",
                           "--no-locale", "--no-sync", NULL };
    ph_opts o = s->opts;
    o.log_path = s->log;
    if (ph_run(argv, &o, 60000) != 0) {
        fprintf(stderr, "pg_harness: initdb failed (see %s)\n", s->log);
        char *log = ph_slurp(s->log, NULL);
        if (log)
            fprintf(stderr, "%s\n", log);
        free(log);
        pg_destroy(s);
        return -1;
    }
    if (pg_start(s) < 0) {
        char *log = ph_slurp(s->log, NULL);
        fprintf(stderr, "pg_harness: postgres did not start:\n%s\n", log ? log : "");
        free(log);
        pg_destroy(s);
        return -1;
    }
    return 0;
}

static inline void pg_quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* Runs one utility statement on the "postgres" database.  0 or -1. */
static inline int pg_admin(const pg_server *s, const char *sql)
{
    char ci[256];
    pg_conninfo(s, "postgres", ci, sizeof(ci));
    PGconn *c = PQconnectdb(ci);
    int rc = -1;
    PQsetNoticeProcessor(c, pg_quiet, NULL);
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, sql);
        rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
        if (rc)
            fprintf(stderr, "pg_harness: %s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
    } else {
        fprintf(stderr, "pg_harness: %s", PQerrorMessage(c));
    }
    PQfinish(c);
    return rc;
}

static inline int pg_create_db(const pg_server *s, const char *name)
{
    char sql[128];
    /* FILE_COPY copies template1's files where the default (WAL_LOG) writes
     * every page through the WAL: about 20% less per test database here. */
    snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\" STRATEGY FILE_COPY", name);
    return pg_admin(s, sql);
}

static inline int pg_drop_db(const pg_server *s, const char *name)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", name);
    return pg_admin(s, sql);
}

/* Runs sql on database db ("db" or "db/schema"); for a one-value SELECT
 * *out gets the value. */
static inline int pg_sql(const pg_server *s, const char *db, const char *sql, long long *out)
{
    char ci[256];
    pg_conninfo(s, db, ci, sizeof(ci));
    PGconn *c = PQconnectdb(ci);
    int rc = -1;
    PQsetNoticeProcessor(c, pg_quiet, NULL);
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, sql);
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COMMAND_OK) {
            rc = 0;
        } else if (st == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) >= 1) {
            if (out)
                *out = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            rc = 0;
        } else {
            fprintf(stderr, "pg_harness: %s: %s", sql, PQresultErrorMessage(r));
        }
        PQclear(r);
    }
    PQfinish(c);
    return rc;
}

/* A fresh schema "t<n>" of database db for one test (*counter numbers
 * them): spec gets "db/t<n>", url the store URL that migrates it on open. */
static inline int pg_schema_new(const pg_server *s, const char *db, int *counter, char *spec,
                                size_t speccap, char *url, size_t urlcap)
{
    char sql[64];
    int n = ++*counter;
    snprintf(spec, speccap, "%s/t%d", db, n);
    snprintf(sql, sizeof(sql), "CREATE SCHEMA t%d", n);
    if (pg_sql(s, db, sql, NULL) < 0)
        return -1;
    pg_url(s, spec, url, urlcap);
    return 0;
}

/* Drops the schema of spec ("db/t<n>").  Every other session of db ends
 * first: a test that failed with a transaction open (holding locks) must
 * not hold the DROP up for ever. */
static inline int pg_schema_drop(const pg_server *s, const char *db, const char *spec)
{
    char sql[200];
    snprintf(sql, sizeof(sql),
             "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity"
             " WHERE datname = '%s' AND pid <> pg_backend_pid()", db);
    if (pg_sql(s, db, sql, NULL) < 0)
        return -1;
    const char *schema = strchr(spec, '/');
    snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", schema ? schema + 1 : spec);
    return pg_sql(s, db, sql, NULL);
}

/* A SQLite test store's directory gone: store.db, its -wal and -shm, then
 * the directory itself (which must then be empty). */
static inline int sqlite_test_dir_remove(const char *dir)
{
    static const char *const names[] = { "store.db", "store.db-wal", "store.db-shm" };
    char p[300];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        unlink(p);
    }
    return rmdir(dir);
}

/* pg_dump of one database (data and schema, plain SQL) into path. */
static inline int pg_dump_to(const pg_server *s, const char *db, const char *path)
{
    char pgdump[300], port[8] = "5432";
    snprintf(pgdump, sizeof(pgdump), "%s/pg_dump", s->bindir);
    if (access(pgdump, X_OK) != 0)
        snprintf(pgdump, sizeof(pgdump), "pg_dump");
    const char *argv[] = { pgdump, "-h", s->dir, "-p", port, "-U", PG_ROLE, "-f", path, db, NULL };
    ph_opts o = { 0 };
    return ph_run(argv, &o, 60000);
}

#endif
