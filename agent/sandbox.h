/* sandbox.h — the sandbox that cloud_exec commands (gcloud, aws, az) run in.
 *
 * Per command:
 *  - a fresh directory <base>/aurora-sbx-XXXXXX (mode 0700) with home/ and
 *    tmp/ (0700), removed recursively when the command ends (also after a
 *    timeout, a cancel or a lost connection), without following symlinks;
 *  - an environment built from scratch: PATH (AURORA_SANDBOX_PATH), HOME,
 *    TMPDIR, USER/LOGNAME, LANG/LC_ALL=C.UTF-8, the CLIs' config locations
 *    inside HOME (CLOUDSDK_CONFIG, AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE,
 *    AZURE_CONFIG_DIR), a few variables copied from the agent when set
 *    (TZ, SSL_CERT_FILE, SSL_CERT_DIR, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE,
 *    AWS_CA_BUNDLE, HTTPS_PROXY/HTTP_PROXY/NO_PROXY in both cases, plus the
 *    names in AURORA_SANDBOX_ENV_PASSTHROUGH), then the server's variables
 *    (names checked with sandbox_env_name_allowed: never HOME, PATH, LD_*,
 *    interpreter hooks, CA or proxy settings, …).  Nothing else of the
 *    agent's environment (its token, KUBECONFIG, …) reaches the command;
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
 *  - PR_SET_PDEATHSIG (the command dies with the agent's job thread),
 *    PR_SET_NO_NEW_PRIVS, then a seccomp filter (libseccomp, default allow)
 *    that answers EPERM to ptrace, process_vm_*, mount & co, namespaces
 *    (unshare, setns, clone with CLONE_NEW*), module loading, kexec, bpf,
 *    perf_event_open, keyrings, userfaultfd, io_uring, clock setting, iopl,
 *    handle-based opens, non-zero personality, …; clone3 gets ENOSYS (its
 *    flags cannot be inspected; libc falls back to clone).  Syscalls of
 *    another architecture kill the process.
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
 * Writes outside HOME/TMPDIR: with a uid of its own the rest of the file
 * system is not writable by permissions (a private mount namespace is not an
 * option once the command runs unprivileged under no_new_privs).  Still
 * writable are the world-writable directories (/tmp, /var/tmp, /dev/shm):
 * umask 077 keeps such files private, and what the uid left at their top is
 * removed when the command ends.  In the chart the root file system is
 * read-only and /tmp is an emptyDir.
 *
 * Without root (the chart runs the agent as uid 1000 with every capability
 * dropped): no uid separation.  Commands still get a private HOME/TMPDIR
 * (0700), the scrubbed environment, the limits, no_new_privs and the seccomp
 * filter, their process group killed at the end, and the agent marks itself
 * non-dumpable so commands cannot read its token from /proc.  But concurrent
 * cloud commands share uid 1000: one could read another's HOME or
 * /proc/<pid>/environ while both run, a process that leaves its group
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

typedef struct {
    const char *dir;          /* base directory; NULL/empty: $TMPDIR, else /tmp */
    const char *path;         /* PATH of the commands; NULL: SANDBOX_DEFAULT_PATH */
    const char *uid_range;    /* "lo-hi", "off"; NULL: SANDBOX_DEFAULT_UID_RANGE */
    const char *passthrough;  /* extra agent variables copied to commands, "A,B" */
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

/* 1 if the server may set environment variable `name` (len bytes) for a
 * command; 0 for names the sandbox owns or that change how programs load
 * code, trust TLS or route traffic. */
int sandbox_env_name_allowed(const char *name, size_t len);

typedef struct sandbox sandbox;

/* Allocates a uid (uid separation) and creates the directory.  NULL with err
 * when no uid is free or the directory cannot be made. */
sandbox *sandbox_create(char *err, size_t errlen);
const char *sandbox_home(const sandbox *sb);
const char *sandbox_dir(const sandbox *sb);
uid_t sandbox_uid(const sandbox *sb);

/* Starts path (absolute) with argv (argv[0] included, NULL-terminated) in
 * the sandbox, with env[0..nenv) ("NAME=value", already checked) added to
 * the environment.  When env carries AZURE_ACCESS_TOKEN, the files az needs
 * to use it (azure_profile.h) are first written into the command's
 * AZURE_CONFIG_DIR (HOME/.azure), from AZURE_ACCESS_TOKEN_EXPIRES_ON,
 * AZURE_SUBSCRIPTION_ID, AZURE_TENANT_ID and AZURE_ARM_ENDPOINT_OVERRIDE (the
 * server's, else the agent's passthrough), and the token is left out of the
 * environment.  stdout/stderr go to out_fd/err_fd.  Returns the pid (a
 * process group leader), or -1 with err saying which step failed.  The
 * caller still owns env and should wipe it once this returns. */
pid_t sandbox_spawn(sandbox *sb, const char *path, char *const argv[], char *const env[],
                    int nenv, int out_fd, int err_fd, char *err, size_t errlen);
/* Uid separation: SIGKILLs every process of the sandbox's uid (those that
 * left the process group too) and reaps the ones reparented to the agent.
 * Returns how many live processes remain (0 normally).  No-op (0) without
 * uid separation. */
int sandbox_kill_all(sandbox *sb);
/* Uid separation (the agent is a child subreaper): reaps zombies reparented
 * to the agent that are not process group leaders (orphans of killed command
 * trees, kubectl's included; the runner's own children lead their groups and
 * are left to it).  No-op without uid separation. */
void sandbox_reap_orphans(void);
/* Kills what is left, removes the directory, releases the uid, frees. */
void sandbox_destroy(sandbox *sb);

/* Removes `name` inside directory dirfd recursively without following
 * symlinks (a symlink is unlinked, never its target).  0, or -1 with errno
 * of the first failure (it still removes what it can). */
int sandbox_rmtree_at(int dirfd, const char *name);

#endif
