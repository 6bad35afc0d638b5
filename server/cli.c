/* cli.c — shared command-line parsing and settings loading (cli.h). */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"
#include "log.h"

#define CLI_MAX_OPTIONS 32
#define CLI_OPT_BASE 256 /* getopt_long's val for opts[i]: above every short option */

int cli_extra_args_error(const char *cmd, int first, int count, int takes)
{
    char taken[32] = "";
    if (takes >= 0)
        snprintf(taken, sizeof(taken), takes ? "; takes %d" : "; takes none", takes);
    return cli_usage_error(cmd, "unexpected argument at position %d (%d in all%s)", first, count,
                           taken);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry '%s --help'.\n", cmd);
    va_end(ap);
    return CLI_EXIT_USAGE;
}

/* The first problem is the one reported; later ones are often its echo. */
typedef struct {
    char msg[256];
    int set;
} first_error;

static void note(first_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(first_error *e, const char *fmt, ...)
{
    if (e->set)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    e->set = 1;
}

/* The option as typed, without "=value". */
static void typed_name(const char *arg, char *out, size_t cap)
{
    size_t n = strcspn(arg, "=");
    if (n >= cap)
        n = cap - 1;
    memcpy(out, arg, n);
    out[n] = '\0';
}

int cli_parse(const char *cmd, int argc, char **argv, const cli_option *opts, size_t nopts,
              const char **values, char **pos, size_t max_pos, size_t *npos)
{
    struct option longopts[CLI_MAX_OPTIONS + 2];
    if (nopts > CLI_MAX_OPTIONS)
        nopts = CLI_MAX_OPTIONS; /* a programming error; the table is static */
    for (size_t i = 0; i < nopts; i++) {
        longopts[i] = (struct option){ opts[i].name,
                                       opts[i].takes_value ? required_argument : no_argument, NULL,
                                       (int)(CLI_OPT_BASE + i) };
        values[i] = NULL;
    }
    longopts[nopts] = (struct option){ "help", no_argument, NULL, 'h' };
    longopts[nopts + 1] = (struct option){ NULL, 0, NULL, 0 };
    *npos = 0;

    first_error err = { "", 0 };
    /* An argument too many is named by its position, never by its text: it
     * is often a value typed where it does not belong (`secrets put PATH
     * VALUE`), and stderr goes to scrollback and CI logs. */
    int extra_first = 0, extras = 0, extra_is_err = 0;
    int help = 0;
    opterr = 0; /* our messages, not getopt's */
    optind = 0; /* glibc: start afresh (also forgets a previous parse's state) */
    for (;;) {
        int idx = -1;
        /* "-": arguments that are not options come back in place (as 1),
         * whatever POSIXLY_CORRECT says; ":": a missing value is ':'. */
        int c = getopt_long(argc, argv, "-:h", longopts, &idx);
        if (c == -1)
            break;
        if (c == 1) {
            if (*npos < max_pos) {
                pos[(*npos)++] = optarg;
            } else if (extras++ == 0) {
                extra_first = optind - 1;
                extra_is_err = !err.set;
                note(&err, "unexpected argument");
            }
            continue;
        }
        if (c == 'h') {
            help = 1;
            continue;
        }
        if (c == ':' || c == '?') {
            if (optopt >= CLI_OPT_BASE && (size_t)(optopt - CLI_OPT_BASE) < nopts) {
                const cli_option *o = &opts[optopt - CLI_OPT_BASE];
                if (c == ':')
                    note(&err, "option '--%s' requires a value", o->name);
                else
                    note(&err, "option '--%s' takes no value", o->name);
            } else if (optopt == 'h') {
                note(&err, "option '--help' takes no value");
            } else if (optopt > 0 && optopt < CLI_OPT_BASE) {
                note(&err, "unknown option '-%c'", optopt);
            } else {
                char name[128];
                typed_name(argv[optind - 1], name, sizeof(name));
                note(&err, "unknown option '%s'", name);
            }
            continue;
        }
        if (c < CLI_OPT_BASE || (size_t)(c - CLI_OPT_BASE) >= nopts)
            continue; /* not reachable: every val is ours */
        size_t i = (size_t)(c - CLI_OPT_BASE);
        /* Where the option was typed: before its value when that came as
         * the next argument.  getopt_long accepts unambiguous prefixes
         * ("--or" for "--org"); a script that relies on one breaks the day
         * another option shares it, so only whole names are taken. */
        int separate = opts[i].takes_value && optarg == argv[optind - 1];
        const char *typed = argv[optind - 1 - separate];
        char name[128];
        typed_name(typed, name, sizeof(name));
        if (strncmp(name, "--", 2) != 0 || strcmp(name + 2, opts[i].name) != 0) {
            note(&err, "unknown option '%s' (did you mean '--%s'?)", name, opts[i].name);
            continue;
        }
        if (values[i]) {
            note(&err, "option '--%s' given twice", opts[i].name);
            continue;
        }
        if (!opts[i].takes_value) {
            values[i] = "";
            continue;
        }
        /* "--org --user U": the next option is not --org's value. */
        if (separate && (!strcmp(optarg, "--help") || !strcmp(optarg, "-h")))
            help = 1;
        if (!*optarg || (separate && !strncmp(optarg, "--", 2))) {
            note(&err, "option '--%s' requires a value", opts[i].name);
            continue;
        }
        values[i] = optarg;
    }
    for (size_t i = 0; i < nopts; i++)
        if (opts[i].required && !values[i])
            note(&err, "missing option '--%s'", opts[i].name);
    /* What follows "--" is never an option. */
    for (int k = optind; k < argc; k++) {
        if (*npos < max_pos) {
            pos[(*npos)++] = argv[k];
        } else if (extras++ == 0) {
            extra_first = k;
            extra_is_err = !err.set;
            note(&err, "unexpected argument");
        }
    }
    if (help)
        return CLI_HELP;
    if (extra_is_err) {
        cli_extra_args_error(cmd, extra_first, extras, (int)max_pos);
        return CLI_BAD;
    }
    if (err.set) {
        cli_usage_error(cmd, "%s", err.msg);
        return CLI_BAD;
    }
    return CLI_PARSED;
}

int cli_load_config(server_config *cfg)
{
    char err[512];
    if (server_config_load(cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "aurora-server: configuration error: %s\n", err);
        return CLI_EXIT_USAGE;
    }
    if (log_setup("aurora-server", cfg->log_level, cfg->log_format) < 0) {
        fprintf(stderr, "aurora-server: AURORA_LOG_LEVEL/AURORA_LOG_FORMAT invalid\n");
        server_config_free(cfg);
        return CLI_EXIT_USAGE;
    }
    /* Before any command opens the store: every handle gets these limits. */
    db_set_limits((int)server_setting_int(cfg, "AURORA_DB_STATEMENT_TIMEOUT_MS"),
                  (int)server_setting_int(cfg, "AURORA_DB_CONNECT_TIMEOUT_MS"));
    const char *dbsync = server_setting(cfg, "AURORA_DB_SYNC");
    db_set_sync(dbsync && !strcmp(dbsync, "normal") ? DB_SYNC_NORMAL : DB_SYNC_FULL);
    /* Every command may be the first to touch the data directory (the
     * SQLite file, keys and certificate live there): create it, private. */
    if (mkdir(cfg->data_dir, 0700) < 0 && errno != EEXIST) {
        fprintf(stderr, "aurora-server: cannot create data directory %s: %s\n", cfg->data_dir,
                strerror(errno));
        server_config_free(cfg);
        return CLI_EXIT_FAILED;
    }
    /* One that was there already: every user who may create and rename
     * entries in it can swap the key files, the certificate or the database
     * under us (a symbolic link to a directory is judged by that
     * directory).  Ours: others lose that right, as aurora.db loses their
     * read (db_sqlite.c).  Not ours (a Kubernetes emptyDir is root's, 0777,
     * and the pod's only user is the server): said, as it cannot be fixed
     * here.  Group write is the operator's (fsGroup volumes). */
    struct stat st;
    int bad = stat(cfg->data_dir, &st) != 0 ? errno : S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
    if (bad) {
        fprintf(stderr, "aurora-server: data directory %s: %s\n", cfg->data_dir, strerror(bad));
        server_config_free(cfg);
        return CLI_EXIT_FAILED;
    }
    if (st.st_mode & S_IWOTH) {
        mode_t mode = st.st_mode & 07777;
        if (st.st_uid == geteuid() && chmod(cfg->data_dir, mode & ~(mode_t)S_IWOTH) == 0)
            log_warn("data directory %s was writable by every user (mode %04o); made %04o",
                     cfg->data_dir, (unsigned)mode, (unsigned)(mode & ~(mode_t)S_IWOTH));
        else
            log_warn("data directory %s is writable by every user (mode %04o) and not ours to "
                     "change: harmless where the server is its only user (a Kubernetes "
                     "emptyDir), but on a shared host another user can replace its keys, "
                     "certificate and database; make it 0700",
                     cfg->data_dir, (unsigned)mode);
    }
    return 0;
}

int cli_config_begin(const server_config *given, server_config *own, const server_config **cfg)
{
    if (given) {
        *cfg = given;
        return 0;
    }
    int rc = cli_load_config(own);
    *cfg = rc == 0 ? own : NULL;
    return rc;
}

void cli_config_done(const server_config *given, server_config *own)
{
    if (!given)
        server_config_free(own);
}

int cli_group_head(const char *self, int argc, char **argv, void (*usage)(FILE *))
{
    if (argc < 1)
        return cli_usage_error(self, "missing command");
    const char *name = argv[0];
    if (strcmp(name, "--help") && strcmp(name, "-h") && strcmp(name, "help"))
        return CLI_GO_ON;
    if (argc > 1)
        return cli_extra_args_error(self, 2, argc - 1, -1);
    usage(stdout);
    return CLI_EXIT_OK;
}

int cli_unknown_command(const char *self, const char *word)
{
    if (word[0] == '-')
        return cli_usage_error(self, "unknown option '%s' (a command comes first)", word);
    return cli_usage_error(self, "unknown command '%s'", word);
}
