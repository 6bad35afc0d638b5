/* sandbox.h — the sandbox that cloud_exec commands (gcloud, aws, az) run in.
 *
 * Per command:
 *  - a fresh directory <base>/aurora-sbx-XXXXXX (mode 0700) with home/ and
 *    tmp/ (0700), removed recursively when the command ends (also after a
 *    timeout, a cancel or a lost connection), without following symlinks;
 *    the agent holds a flock() on it until then, so one an agent killed
 *    (SIGKILL) left behind is unlocked and removed at the next sandbox_init;
 *  - an environment built from scratch: PATH (AURORA_SANDBOX_PATH), HOME,
 *    TMPDIR, USER/LOGNAME, LANG/LC_ALL=C.UTF-8; the CLI's config locations
 *    inside HOME (its plug-in's home_env, cloud_cli.h: CLOUDSDK_CONFIG,
 *    AWS_CONFIG_FILE, AZURE_CONFIG_DIR, …); what the operator configured: a
 *    few variables copied from the agent when set (TZ, SSL_CERT_FILE,
 *    SSL_CERT_DIR, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, AWS_CA_BUNDLE,
 *    HTTPS_PROXY/HTTP_PROXY/NO_PROXY in both cases, plus the names in
 *    AURORA_SANDBOX_ENV_PASSTHROUGH) and the CLI's own AURORA_CLOUD_ENV
 *    entries; then the server's variables, which cloud.c has checked against
 *    the CLI's allowlist (credentials, region/project, output only).  No one
 *    sets the names sandbox_env_name_protected refuses (HOME, PATH, LD_*,
 *    interpreter hooks, …).  Nothing else of the agent's environment (its
 *    token, KUBECONFIG, …) reaches the command;
 *  - cwd = home, stdin /dev/null, umask 077, its own process group, every
 *    descriptor but stdout/stderr closed, default signal dispositions;
 *  - resource limits (soft = hard, so the command cannot raise them):
 *    RLIMIT_CPU, RLIMIT_AS, RLIMIT_NOFILE, RLIMIT_NPROC, RLIMIT_FSIZE,
 *    RLIMIT_CORE 0;
 *  - uid separation: when the agent runs as root, each command gets its own
 *    uid (and gid of the same number) from AURORA_SANDBOX_UID_RANGE, unused by
 *    any other running command, with no supplementary groups.  The directory
 *    belongs to that uid.  So a command cannot read another command's files
 *    or /proc/<pid>/environ (credentials), cannot signal it, and RLIMIT_NPROC
 *    counts only its own processes.  When the command ends every process of
 *    that uid is killed (also ones that left the process group) and entries
 *    it left at the top of /tmp, /var/tmp and /dev/shm are removed, before
 *    the uid is reused.  As non-root the command runs as the agent's uid
 *    ("shared uid"): see "Without root" below for what isolation remains;
 *  - PR_SET_PDEATHSIG (the command dies with the agent: the job thread that
 *    started it is a pool thread, which lives until the agent stops or it
 *    idles 30 s, after every command it ran is gone),
 *    PR_SET_NO_NEW_PRIVS, then a seccomp filter (libseccomp, default allow)
 *    that answers EPERM to ptrace, process_vm_*, mount & co, namespaces
 *    (unshare, setns, clone with CLONE_NEW*), module loading, kexec, bpf,
 *    perf_event_open, keyrings, userfaultfd, io_uring, clock setting, iopl,
 *    handle-based opens, non-zero personality, …; clone3 gets ENOSYS (its
 *    flags cannot be inspected; libc falls back to clone).  Syscalls of
 *    another architecture kill the process;
 *  - Landlock (landlock.h), when the kernel has it (AURORA_SANDBOX_LANDLOCK
 *    auto, the default; "required" refuses to run cloud commands without it;
 *    "off"): a read-only view of AURORA_SANDBOX_READONLY_PATHS (the system
 *    and CLI install directories), never the AURORA_SANDBOX_DENY_PATHS (the
 *    ServiceAccount token's /var/run/secrets, always), the agent's config
 *    file nor the sandbox base directory (other commands' directories); only
 *    its own HOME and TMPDIR writable; TCP connect to AURORA_SANDBOX_ALLOWED_PORTS
 *    only (default 443: no instance metadata on port 80, no local ports) and
 *    the operator's egress proxy port; no TCP bind; no signals to processes
 *    outside the command.  Without Landlock everything above still holds and
 *    the agent says so at start, in register and in /metrics.
 *
 * The filter is generated once at sandbox_init and loaded in the child with
 * prctl(), so the child between fork and exec only makes system calls
 * (no allocation in a forked copy of a threaded process).
 *
 * Why a uid per command (and not one "nobody" uid for all): two commands of
 * the same uid can read each other's /proc/<pid>/environ — the credentials —
 * and signal each other, and RLIMIT_NPROC would be shared.  The default range
 * 100000-100999 (AURORA_SANDBOX_UID_RANGE) is outside the usual account
 * ranges; it must be mapped if the agent runs in a user namespace (checked
 * at start).  Uids are handed out round robin and only reused once nothing of
 * the previous command is left; the range must be larger than
 * AURORA_MAX_CONCURRENT.  The agent becomes a child subreaper so it can reap
 * the orphans it kills (a zombie still counts against RLIMIT_NPROC).
 *
 * Writes outside HOME/TMPDIR: Landlock allows none.  Without Landlock, with
 * a uid of its own the rest of the file system is not writable by
 * permissions (a private mount namespace is not an option once the command
 * runs unprivileged under no_new_privs), except the world-writable
 * directories (/tmp, /var/tmp, /dev/shm): umask 077 keeps such files
 * private, and what the uid left at their top is removed when the command
 * ends.  In the chart the root file system is read-only and /tmp is an
 * emptyDir.
 *
 * Without root (the chart runs the agent as uid 1000 with every capability
 * dropped): no uid separation.  Commands still get a private HOME/TMPDIR
 * (0700), the scrubbed environment, the limits, no_new_privs and the seccomp
 * filter, their process group killed at the end, and the agent marks itself
 * non-dumpable so commands cannot read its token from /proc.  Each command
 * is its own Landlock domain: it cannot open another's HOME (not among its
 * rules), read its /proc/<pid>/environ (Landlock refuses ptrace-mode access
 * across domains) or, with ABI 6, signal it.  Without Landlock concurrent
 * cloud commands sharing uid 1000 could do all three while both run.  In
 * both cases a process that leaves its group
 * (setsid) is not killed, and RLIMIT_NPROC counts every task of uid 1000 in
 * the user namespace (hence the high default of 4096; the pod's pids limit
 * is the real fork-bomb bound there).  Operators who need isolation between
 * concurrent commands run the agent as root with CAP_SETUID, CAP_SETGID,
 * CAP_CHOWN, CAP_KILL, CAP_DAC_OVERRIDE and CAP_FOWNER only (the commands
 * themselves get none: they run under their own uid with no_new_privs). */
#ifndef AURORA_AGENT_SANDBOX_H
#define AURORA_AGENT_SANDBOX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SANDBOX_DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"
#define SANDBOX_DEFAULT_UID_RANGE "100000-100999"
#define SANDBOX_DEFAULT_CPU_SECONDS 120
#define SANDBOX_DEFAULT_MEMORY_MB 2048
#define SANDBOX_DEFAULT_NOFILE 256
#define SANDBOX_DEFAULT_NPROC_OWN_UID 128   /* per-command uid: its own processes/threads */
#define SANDBOX_DEFAULT_NPROC_SHARED 4096   /* shared uid: counts every task of that uid */
#define SANDBOX_DEFAULT_FSIZE_MB 64

/* Landlock's defaults: what a cloud CLI reads (system libraries, CA
 * certificates, resolv.conf/hosts/nsswitch, its install under /usr or /opt,
 * /proc for its own process); what it never reaches; where it connects. */
#define SANDBOX_DEFAULT_READONLY_PATHS "/usr,/lib,/lib64,/lib32,/libx32,/bin,/sbin,/etc,/opt,/proc"
#define SANDBOX_SA_TOKEN_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define SANDBOX_DEFAULT_DENY_PATHS "/var/run/secrets,/run/secrets"
#define SANDBOX_DEFAULT_ALLOWED_PORTS "443"
#define SANDBOX_DEFAULT_LANDLOCK "auto"

typedef struct {
    const char *dir;          /* base directory; NULL/empty: $TMPDIR, else /tmp */
    const char *path;         /* PATH of the commands; NULL: SANDBOX_DEFAULT_PATH */
    const char *uid_range;    /* "lo-hi", "off"; NULL: SANDBOX_DEFAULT_UID_RANGE */
    const char *passthrough;  /* extra agent variables copied to commands, "A,B" */
    const char *landlock;     /* "auto" | "required" | "off"; NULL: auto */
    const char *readonly_paths; /* NULL: SANDBOX_DEFAULT_READONLY_PATHS */
    const char *deny_paths;   /* NULL: SANDBOX_DEFAULT_DENY_PATHS (SANDBOX_SA_TOKEN_DIR always) */
    const char *allowed_ports; /* NULL: SANDBOX_DEFAULT_ALLOWED_PORTS; "all": no TCP rules */
    const char *config_file;  /* the agent's own config file: never reachable (NULL: none) */
    int64_t cpu_seconds;      /* 0 = unlimited */
    int64_t memory_mb;        /* RLIMIT_AS; 0 = unlimited */
    int64_t nofile;
    int64_t nproc;            /* -1 = default for the uid mode; 0 = unlimited */
    int64_t fsize_mb;         /* 0 = unlimited */
} sandbox_config;

/* Validates the settings, creates the base directory if missing, builds the
 * seccomp filter, probes the uid switch.  0, or -1 with err. */
int sandbox_init(const sandbox_config *c, char *err, size_t errlen);
void sandbox_shutdown(void);
/* Remembers why sandbox_init failed: sandbox_create reports it. */
void sandbox_set_unavailable(const char *why);
/* 1 when commands run under their own uid (agent is root, range not "off"). */
int sandbox_uid_separation(void);
/* Size of the uid range (0 without uid separation). */
long sandbox_uid_count(void);
const char *sandbox_base_dir(void);
const char *sandbox_path_env(void);
/* One-line description of the limits, for the startup log. */
void sandbox_describe(char *out, size_t outlen);

/* What isolates the commands (register, /metrics, logs). */
typedef struct {
    int landlock_abi;   /* the kernel's Landlock ABI (0: none) */
    int filesystem;     /* Landlock file rules enforced */
    int network;        /* Landlock TCP port rules enforced */
    int scoped;         /* signals and abstract unix sockets scoped */
    int uid_separation;
    const char *landlock_mode; /* auto | required | off */
    const char *degraded;      /* "" or why Landlock is not (fully) in force */
} sandbox_isolation;
void sandbox_get_isolation(sandbox_isolation *out);
/* {"landlock_abi","filesystem","network","scoped","uid_separation","allowed_ports",
 *  "degraded"?} for register; NULL on OOM. */
struct cJSON *sandbox_isolation_json(void);
/* 1 if a command may read path under the Landlock rules (always 1 without
 * file system rules): for the startup check of the CLIs' install paths. */
int sandbox_path_readable(const char *path);

/* 1 for names no one but the sandbox sets: what it owns (HOME, PATH, TMPDIR,
 * USER, the CLIs' config locations, locale) and what changes how programs
 * load code (LD_*, PYTHON*, NODE_OPTIONS, BASH_ENV, OPENSSL_*, …) or names
 * the agent (AURORA_*, KUBECONFIG).  Neither the server nor the operator's
 * passthrough may set them. */
int sandbox_env_name_protected(const char *name, size_t len);
/* 1 if name is an environment variable name an operator may set for a command:
 * [A-Za-z0-9_] (proxies are lower case too), not starting with a digit, at most 128. */
int sandbox_env_name_valid(const char *name, size_t len);
/* The value the operator hands every command for name (AURORA_SANDBOX_ENV_PASSTHROUGH
 * and its defaults), NULL if none. */
const char *sandbox_operator_env(const char *name, size_t len);

typedef struct sandbox sandbox;

struct cloud_cli;
/* What the sandbox knows about the CLI a command runs (cloud.h builds it). */
typedef struct sandbox_profile {
    const struct cloud_cli *cli;  /* NULL: a bare program, no CLI specifics */
    char **env;                   /* the operator's NAME=value for this CLI (AURORA_CLOUD_ENV) */
    int nenv;
} sandbox_profile;

/* Allocates a uid (uid separation) and creates the directory.  NULL with err
 * when no uid is free or the directory cannot be made. */
sandbox *sandbox_create(char *err, size_t errlen);
const char *sandbox_home(const sandbox *sb);
const char *sandbox_dir(const sandbox *sb);
uid_t sandbox_uid(const sandbox *sb);

/* Starts path (absolute) with argv (argv[0] included, NULL-terminated) in
 * the sandbox, with env[0..nenv) ("NAME=value", checked by cloud.c) added to
 * the environment after the operator's (a server variable the operator also
 * set is left out: cloud.c accepted it only with the operator's value).  The
 * profile's CLI plug-in (may be NULL) sets its config locations in HOME and
 * may first write files there (az: its token cache) and keep variables out
 * of the environment.  stdout/stderr go to out_fd/err_fd.  Returns the pid (a
 * process group leader), or -1 with err saying which step failed.  The
 * caller still owns env and should wipe it once this returns. */
pid_t sandbox_spawn(sandbox *sb, const sandbox_profile *profile, const char *path,
                    char *const argv[], char *const env[], int nenv, int out_fd, int err_fd,
                    char *err, size_t errlen);
/* Uid separation: SIGKILLs every process of the sandbox's uid (those that
 * left the process group too) and reaps the ones reparented to the agent.
 * Returns how many live processes remain (0 normally).  No-op (0) without
 * uid separation. */
int sandbox_kill_all(sandbox *sb);
/* Uid separation (the agent is a child subreaper): reaps zombies reparented
 * to the agent that are not process group leaders (orphans of killed command
 * trees, kubectl's included; the runner's own children lead their groups and
 * are left to it), and never one of the nkeep pids in keep (the runner's
 * children: one that moved to another group is no orphan).  No-op without
 * uid separation. */
void sandbox_reap_orphans(const pid_t *keep, size_t nkeep);
/* Kills what is left, removes the directory, releases the uid, frees. */
void sandbox_destroy(sandbox *sb);

/* Removes `name` inside directory dirfd recursively without following
 * symlinks (a symlink is unlinked, never its target).  0, or -1 with errno
 * of the first failure (it still removes what it can). */
int sandbox_rmtree_at(int dirfd, const char *name);

#endif
