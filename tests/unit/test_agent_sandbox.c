/* test_agent_sandbox.c — the cloud_exec sandbox (agent/sandbox.c) and the
 * cloud policy (agent/cloud.c), with real child processes.
 *
 * Runs as root (as CI does): every command gets its own uid from a test
 * range, so uid separation, RLIMIT_NPROC per uid and the cleanup of a uid's
 * processes are exercised for real.  The helpers are the system's own
 * programs (/usr/bin/env, cat, id, sh, python3 with ctypes for the raw
 * system calls the seccomp filter must refuse). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cloud.h"
#include "log.h"
#include "sandbox.h"

/* 20 uids of this run, drawn at random: uids are machine-wide and the cleanup
 * kills every process of a uid, so two runs at once must not share them */
#define UID_COUNT 20
#define PY "/usr/bin/python3"

static char g_base[256];
static int g_root;

typedef struct {
    int status;        /* waitpid status; -1 on timeout (group killed) */
    char out[65536];
    size_t outlen;
    char err[16384];
    size_t errlen;
} result;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Starts argv in sb; outfd and errfd get the read ends. */
static pid_t start(sandbox *sb, const char *const argv[], char *const env[], int nenv, int *outfd,
                   int *errfd)
{
    int o[2], e[2];
    assert_int_equal(pipe2(o, O_CLOEXEC), 0);
    assert_int_equal(pipe2(e, O_CLOEXEC), 0);
    char err[300] = "";
    pid_t pid = sandbox_spawn(sb, argv[0], (char *const *)argv, env, nenv, o[1], e[1], err,
                              sizeof(err));
    close(o[1]);
    close(e[1]);
    if (pid < 0)
        fail_msg("sandbox_spawn %s: %s", argv[0], err);
    *outfd = o[0];
    *errfd = e[0];
    return pid;
}

/* Collects output until both pipes close (or timeout), then reaps. */
static void finish(pid_t pid, int outfd, int errfd, result *r, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    int fds[2] = {outfd, errfd};
    r->outlen = r->errlen = 0;
    int timed_out = 0;
    while (fds[0] >= 0 || fds[1] >= 0) {
        struct pollfd p[2];
        int n = 0, idx[2];
        for (int i = 0; i < 2; i++)
            if (fds[i] >= 0) {
                p[n].fd = fds[i];
                p[n].events = POLLIN;
                idx[n++] = i;
            }
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        if (poll(p, (nfds_t)n, (int)left) <= 0)
            continue;
        for (int k = 0; k < n; k++) {
            if (!p[k].revents)
                continue;
            int i = idx[k];
            char *dst = i == 0 ? r->out + r->outlen : r->err + r->errlen;
            size_t room = i == 0 ? sizeof(r->out) - 1 - r->outlen : sizeof(r->err) - 1 - r->errlen;
            char scratch[4096];
            ssize_t got = read(fds[i], room ? dst : scratch, room ? room : sizeof(scratch));
            if (got <= 0) {
                close(fds[i]);
                fds[i] = -1;
            } else if (room) {
                if (i == 0)
                    r->outlen += (size_t)got;
                else
                    r->errlen += (size_t)got;
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    r->out[r->outlen] = '\0';
    r->err[r->errlen] = '\0';
    if (timed_out)
        kill(-pid, SIGKILL);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    r->status = timed_out ? -1 : st;
}

static void run(sandbox *sb, const char *const argv[], char *const env[], int nenv, result *r,
                int timeout_ms)
{
    int o, e;
    pid_t pid = start(sb, argv, env, nenv, &o, &e);
    finish(pid, o, e, r, timeout_ms);
}

static result *new_result(void)
{
    result *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    return r;
}

/* live (non-zombie) processes whose real uid is uid */
static int procs_of_uid(uid_t uid)
{
    DIR *d = opendir("/proc");
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] < '1' || de->d_name[0] > '9')
            continue;
        char p[300], line[256];
        snprintf(p, sizeof(p), "/proc/%s/status", de->d_name);
        FILE *f = fopen(p, "re");
        if (!f)
            continue;
        char state = '?';
        long ruid = -1;
        while (fgets(line, sizeof(line), f)) {
            if (!strncmp(line, "State:", 6))
                sscanf(line + 6, " %c", &state);
            else if (!strncmp(line, "Uid:", 4))
                ruid = strtol(line + 4, NULL, 10);
        }
        fclose(f);
        if (ruid == (long)uid && state != 'Z' && state != 'X')
            n++;
    }
    closedir(d);
    return n;
}

static int exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

static sandbox *mk(void)
{
    char err[300] = "";
    sandbox *sb = sandbox_create(err, sizeof(err));
    if (!sb)
        fail_msg("sandbox_create: %s", err);
    return sb;
}

/* ---- setup ---------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    log_setup("test", "warn", "text");
    g_root = geteuid() == 0;
    snprintf(g_base, sizeof(g_base), "/tmp/aurora-sbxtest-XXXXXX");
    if (!mkdtemp(g_base) || chmod(g_base, 0711) != 0)
        return -1;
    /* what the agent has and commands must not see, and one they must */
    setenv("AURORA_AGENT_TOKEN", "aurora_kubectl_this-must-not-leak", 1);
    setenv("KUBECONFIG", "/nonexistent/kubeconfig", 1);
    setenv("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt", 1);
    setenv("LD_PRELOAD", "", 1);
    unsetenv("HTTPS_PROXY");
    unsetenv("https_proxy");
    unsetenv("HTTP_PROXY");
    unsetenv("http_proxy");
    unsetenv("NO_PROXY");
    unsetenv("no_proxy");
    unsetenv("TZ");
    unsetenv("SSL_CERT_DIR");
    unsetenv("REQUESTS_CA_BUNDLE");
    unsetenv("CURL_CA_BUNDLE");
    unsetenv("AWS_CA_BUNDLE");
    uint32_t r = 0;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
        return -1;
    unsigned lo = 2000000u + UID_COUNT * (r % 1000000u);
    char range[64];
    snprintf(range, sizeof(range), "%u-%u", lo, lo + UID_COUNT - 1);
    sandbox_config c = {.dir = g_base, .path = NULL, .uid_range = range, .passthrough = NULL,
                        .cpu_seconds = 7, .memory_mb = 512, .nofile = 64, .nproc = 32,
                        .fsize_mb = 1};
    char err[400];
    if (sandbox_init(&c, err, sizeof(err)) != 0) {
        fprintf(stderr, "sandbox_init: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sandbox_shutdown();
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_base);
    int rc = system(cmd);
    (void)rc;
    return 0;
}

/* ---- environment ------------------------------------------------------------------ */

static int has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        if (l == n && !memcmp(p, line, n))
            return 1;
        p = nl ? nl + 1 : NULL;
    }
    return 0;
}

static void env_is_allowlist_plus_injected(void **state)
{
    (void)state;
    sandbox *sb = mk();
    result *r = new_result();
    char *env[] = {"AWS_ACCESS_KEY_ID=AKIATESTINJECTED0001", "CLOUDSDK_CORE_PROJECT=proj-x"};
    const char *argv[] = {"/usr/bin/env", NULL};
    run(sb, argv, env, 2, r, 10000);
    assert_true(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0);
    static const char *const want[] = {
        "HOME", "TMPDIR", "PATH", "USER", "LOGNAME", "LANG", "LC_ALL", "CLOUDSDK_CONFIG",
        "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AZURE_CONFIG_DIR", "SSL_CERT_FILE",
        "AWS_ACCESS_KEY_ID", "CLOUDSDK_CORE_PROJECT", NULL};
    int lines = 0;
    for (char *p = r->out; *p; p++)
        lines += *p == '\n';
    int nwant = 0;
    while (want[nwant])
        nwant++;
    assert_int_equal(lines, nwant);
    for (int i = 0; want[i]; i++) {
        char needle[64];
        snprintf(needle, sizeof(needle), "\n%s=", want[i]);
        char buf[65600];
        snprintf(buf, sizeof(buf), "\n%s", r->out);
        if (!strstr(buf, needle))
            fail_msg("%s missing from the command's environment:\n%s", want[i], r->out);
    }
    char line[600];
    snprintf(line, sizeof(line), "HOME=%s", sandbox_home(sb));
    assert_true(has_line(r->out, line));
    snprintf(line, sizeof(line), "TMPDIR=%s/tmp", sandbox_dir(sb));
    assert_true(has_line(r->out, line));
    snprintf(line, sizeof(line), "CLOUDSDK_CONFIG=%s/.config/gcloud", sandbox_home(sb));
    assert_true(has_line(r->out, line));
    assert_true(has_line(r->out, "PATH=" SANDBOX_DEFAULT_PATH));
    assert_true(has_line(r->out, "LC_ALL=C.UTF-8"));
    assert_true(has_line(r->out, "AWS_ACCESS_KEY_ID=AKIATESTINJECTED0001"));
    assert_null(strstr(r->out, "AURORA_AGENT_TOKEN"));
    assert_null(strstr(r->out, "this-must-not-leak"));
    assert_null(strstr(r->out, "KUBECONFIG"));
    assert_null(strstr(r->out, "LD_PRELOAD"));
    free(r);
    sandbox_destroy(sb);
}

static void server_cannot_set_owned_or_loader_variables(void **state)
{
    (void)state;
    static const char *const refused[] = {
        "HOME", "PATH", "TMPDIR", "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "PYTHONPATH",
        "PYTHONSTARTUP", "CLOUDSDK_PYTHON", "CLOUDSDK_CONFIG", "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE", "AZURE_CONFIG_DIR", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
        "HTTPS_PROXY", "NO_PROXY", "NODE_OPTIONS", "BASH_ENV", "GCONV_PATH", "GLIBC_TUNABLES",
        "AURORA_AGENT_TOKEN", "LC_ALL", "USER", NULL};
    for (int i = 0; refused[i]; i++)
        if (sandbox_env_name_allowed(refused[i], strlen(refused[i])))
            fail_msg("%s should be refused", refused[i]);
    static const char *const allowed[] = {
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
        "CLOUDSDK_AUTH_ACCESS_TOKEN", "CLOUDSDK_CORE_PROJECT",
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDRESOURCEMANAGER", "AZURE_ACCESS_TOKEN", NULL};
    for (int i = 0; allowed[i]; i++)
        if (!sandbox_env_name_allowed(allowed[i], strlen(allowed[i])))
            fail_msg("%s should be allowed", allowed[i]);

    /* the cloud policy refuses the whole command, naming the variable only */
    agent_cloud c;
    char err[300];
    assert_int_equal(agent_cloud_init(&c, NULL, "gcloud=/bin/true,aws=/bin/true", NULL, err,
                                      sizeof(err)),
                     0);
    agent_policy_decision d;
    const char *argv[] = {"projects", "list"};
    char *env_bad[] = {"CLOUDSDK_AUTH_ACCESS_TOKEN=ya29.secret-value", "LD_PRELOAD=/tmp/x.so"};
    assert_int_equal(agent_cloud_check(&c, "gcloud", 2, argv, env_bad, 2, &d), 0);
    assert_non_null(strstr(d.reason, "LD_PRELOAD"));
    assert_null(strstr(d.reason, "secret-value"));
    assert_null(strstr(d.reason, "/tmp/x.so"));
    char *env_home[] = {"HOME=/root"};
    assert_int_equal(agent_cloud_check(&c, "gcloud", 2, argv, env_home, 1, &d), 0);
    char *env_ok[] = {"CLOUDSDK_AUTH_ACCESS_TOKEN=ya29.x", "CLOUDSDK_CORE_PROJECT=p"};
    assert_int_equal(agent_cloud_check(&c, "gcloud", 2, argv, env_ok, 2, &d), 1);
    agent_cloud_free(&c);
}

static void cloud_policy_programs_and_printers(void **state)
{
    (void)state;
    agent_cloud c;
    char err[300];
    assert_int_equal(agent_cloud_init(&c, "enabled", "gcloud=/bin/true, aws", "/nonexistent-dir",
                                      err, sizeof(err)),
                     0);
    agent_policy_decision d;
    const char *a1[] = {"projects", "list"};
    assert_int_equal(agent_cloud_check(&c, "gcloud", 2, a1, NULL, 0, &d), 1);
    /* not listed (az), a path, a shell */
    assert_int_equal(agent_cloud_check(&c, "az", 2, a1, NULL, 0, &d), 0);
    assert_non_null(strstr(d.reason, "AURORA_CLOUD_PROGRAMS"));
    assert_int_equal(agent_cloud_check(&c, "/bin/sh", 2, a1, NULL, 0, &d), 0);
    assert_int_equal(agent_cloud_check(&c, "sh", 2, a1, NULL, 0, &d), 0);
    /* listed but not installed in the search path */
    char *p = agent_cloud_path(&c, "aws");
    assert_null(p);
    p = agent_cloud_path(&c, "gcloud");
    assert_non_null(p);
    assert_string_equal(p, "/bin/true");
    free(p);
    /* credential printers, also with flags and their values first */
    const char *a2[] = {"auth", "print-access-token"};
    assert_int_equal(agent_cloud_check(&c, "gcloud", 2, a2, NULL, 0, &d), 0);
    assert_non_null(strstr(d.reason, "print the command's credentials"));
    const char *a3[] = {"--project", "p", "auth", "print-access-token", "--format=json"};
    assert_int_equal(agent_cloud_check(&c, "gcloud", 5, a3, NULL, 0, &d), 0);
    const char *a4[] = {"config", "config-helper"};
    assert_int_equal(agent_cloud_check(&c, "gcloud", 2, a4, NULL, 0, &d), 0);
    const char *a5[] = {"configure", "export-credentials"};
    assert_int_equal(agent_cloud_check(&c, "aws", 2, a5, NULL, 0, &d), 0);
    const char *a6[] = {"sts", "get-caller-identity"};
    assert_int_equal(agent_cloud_check(&c, "aws", 2, a6, NULL, 0, &d), 1);
    agent_cloud_free(&c);

    assert_int_equal(agent_cloud_init(&c, "disabled", NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(agent_cloud_check(&c, "gcloud", 2, a1, NULL, 0, &d), 0);
    assert_non_null(strstr(d.reason, "disabled"));
    agent_cloud_free(&c);
    assert_int_equal(agent_cloud_init(&c, "maybe", NULL, NULL, err, sizeof(err)), -1);
    assert_int_equal(agent_cloud_init(&c, NULL, "gcloud=relative/path", NULL, err, sizeof(err)),
                     -1);
    assert_int_equal(agent_cloud_init(&c, NULL, "../gcloud", NULL, err, sizeof(err)), -1);
}

/* ---- directories ------------------------------------------------------------------- */

static void dir_is_private_and_removed(void **state)
{
    (void)state;
    sandbox *sb = mk();
    char dir[512], home[512];
    snprintf(dir, sizeof(dir), "%s", sandbox_dir(sb));
    snprintf(home, sizeof(home), "%s", sandbox_home(sb));
    assert_int_equal(strncmp(dir, g_base, strlen(g_base)), 0);
    struct stat st;
    assert_int_equal(lstat(dir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(lstat(home, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    if (g_root) {
        assert_int_equal(st.st_uid, sandbox_uid(sb));
        assert_int_not_equal(sandbox_uid(sb), 0);
    }
    result *r = new_result();
    const char *argv[] = {"/bin/sh", "-c",
                          "pwd; umask; mkdir -p a/b/c && echo deep > a/b/c/f && "
                          "chmod 000 a/b && echo ok",
                          NULL};
    run(sb, argv, NULL, 0, r, 10000);
    assert_true(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0);
    char want[600];
    snprintf(want, sizeof(want), "%s\n0077\nok\n", home);
    assert_string_equal(r->out, want);
    sandbox_destroy(sb);
    assert_false(exists(dir));
    free(r);
}

static void dir_removed_after_kill_and_escapees_killed(void **state)
{
    (void)state;
    sandbox *sb = mk();
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", sandbox_dir(sb));
    uid_t uid = sandbox_uid(sb);
    int o, e;
    /* one process stays in the group, one leaves it (setsid) and closes the pipes */
    const char *argv[] = {"/bin/sh", "-c",
                          "setsid sleep 60 </dev/null >/dev/null 2>&1 & echo $HOME > marker; "
                          "echo started; exec sleep 60",
                          NULL};
    pid_t pid = start(sb, argv, NULL, 0, &o, &e);
    char buf[64] = "";
    struct pollfd p = {.fd = o, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 10000), 1);
    assert_true(read(o, buf, sizeof(buf) - 1) > 0);
    assert_non_null(strstr(buf, "started"));
    if (g_root)
        assert_true(procs_of_uid(uid) >= 2);
    kill(-pid, SIGKILL); /* what the runner does on timeout/cancel */
    int st;
    waitpid(pid, &st, 0);
    close(o);
    close(e);
    if (g_root) {
        assert_int_equal(sandbox_kill_all(sb), 0);
        assert_int_equal(procs_of_uid(uid), 0);
    }
    sandbox_destroy(sb);
    assert_false(exists(dir));
}

static void symlinks_are_not_followed_on_cleanup(void **state)
{
    (void)state;
    char outside[300], keep[400];
    snprintf(outside, sizeof(outside), "%s-outside", g_base);
    assert_int_equal(mkdir(outside, 0755), 0);
    snprintf(keep, sizeof(keep), "%s/keep", outside);
    FILE *f = fopen(keep, "w");
    assert_non_null(f);
    fputs("precious\n", f);
    fclose(f);

    sandbox *sb = mk();
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", sandbox_dir(sb));
    char script[1200];
    snprintf(script, sizeof(script),
             "ln -s %s dirlink && ln -s %s filelink && mkdir sub && ln -s / sub/root && "
             "ln -s %s \"$TMPDIR/also\" && echo linked",
             outside, keep, outside);
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    result *r = new_result();
    run(sb, argv, NULL, 0, r, 10000);
    assert_string_equal(r->out, "linked\n");
    sandbox_destroy(sb);
    assert_false(exists(dir));
    assert_true(exists(keep));
    assert_true(exists(outside));

    /* sandbox_rmtree_at directly: a tree with links into the outside */
    char tree[400];
    snprintf(tree, sizeof(tree), "%s-tree", g_base);
    assert_int_equal(mkdir(tree, 0700), 0);
    char p2[500];
    snprintf(p2, sizeof(p2), "%s/l", tree);
    assert_int_equal(symlink(outside, p2), 0);
    int bfd = open("/tmp", O_RDONLY | O_DIRECTORY);
    assert_int_equal(sandbox_rmtree_at(bfd, strrchr(tree, '/') + 1), 0);
    close(bfd);
    assert_false(exists(tree));
    assert_true(exists(keep));
    assert_int_equal(sandbox_rmtree_at(AT_FDCWD, "../etc"), -1);
    unlink(keep);
    rmdir(outside);
    free(r);
}

/* ---- limits, identity, filter -------------------------------------------------- */

static long limit_of(const char *limits, const char *name)
{
    const char *p = strstr(limits, name);
    if (!p)
        return -2;
    p += strlen(name);
    while (*p == ' ')
        p++;
    if (!strncmp(p, "unlimited", 9))
        return -1;
    return strtol(p, NULL, 10);
}

static void rlimits_uid_nnp_seccomp_applied(void **state)
{
    (void)state;
    sandbox *sb = mk();
    result *r = new_result();
    const char *argv[] = {"/bin/cat", "/proc/self/limits", "/proc/self/status", NULL};
    run(sb, argv, NULL, 0, r, 10000);
    assert_true(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0);
    assert_int_equal(limit_of(r->out, "Max cpu time"), 7);
    assert_int_equal(limit_of(r->out, "Max address space"), 512L * 1024 * 1024);
    assert_int_equal(limit_of(r->out, "Max open files"), 64);
    assert_int_equal(limit_of(r->out, "Max processes"), 32);
    assert_int_equal(limit_of(r->out, "Max file size"), 1024L * 1024);
    assert_int_equal(limit_of(r->out, "Max core file size"), 0);
    assert_non_null(strstr(r->out, "NoNewPrivs:\t1"));
    assert_non_null(strstr(r->out, "Seccomp:\t2"));
    /* stdin is /dev/null */
    const char *argv2[] = {"/bin/sh", "-c", "readlink /proc/self/fd/0; id -u; id -G", NULL};
    run(sb, argv2, NULL, 0, r, 10000);
    char want[200];
    if (g_root)
        snprintf(want, sizeof(want), "/dev/null\n%u\n%u\n", (unsigned)sandbox_uid(sb),
                 (unsigned)sandbox_uid(sb));
    else
        snprintf(want, sizeof(want), "/dev/null\n%u\n", (unsigned)getuid());
    if (g_root)
        assert_string_equal(r->out, want);
    else
        assert_int_equal(strncmp(r->out, want, strlen(want)), 0);
    free(r);
    sandbox_destroy(sb);
}

static const char SYSCALLS_PY[] =
    "import ctypes, os\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "libc.syscall.restype = ctypes.c_long\n"
    "def call(name, nr, *a):\n"
    "    ctypes.set_errno(0)\n"
    "    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(x) for x in a])\n"
    "    print(name, r, ctypes.get_errno() if r == -1 else 0, flush=True)\n"
    "call('ptrace', 101, 0, 0, 0, 0)\n"                      /* PTRACE_TRACEME */
    "call('unshare', 272, 0x10000000)\n"                     /* CLONE_NEWUSER */
    "call('clone_newuser', 56, 0x10000000 | 17, 0, 0, 0, 0)\n"
    "call('clone3', 435, 0, 0)\n"
    "call('mount', 165, 0, 0, 0, 0, 0)\n"
    "call('personality', 135, 0x0040000)\n"                  /* ADDR_NO_RANDOMIZE */
    "call('personality_query', 135, 0xffffffff)\n"
    "call('io_uring_setup', 425, 1, 0)\n"
    "call('process_vm_readv', 310, os.getpid(), 0, 0, 0, 0, 0)\n"
    "call('keyctl', 250, 0, 0, 0, 0, 0)\n"
    "call('bpf', 321, 0, 0, 0)\n"
    "call('perf_event_open', 298, 0, 0, -1, -1, 0)\n"
    "call('setns', 308, 0, 0)\n"
    "call('getpid', 39)\n";

static void seccomp_refuses_dangerous_syscalls(void **state)
{
    (void)state;
    if (access(PY, X_OK) != 0)
        fail_msg("%s is needed to make the system calls under test", PY);
    sandbox *sb = mk();
    result *r = new_result();
    const char *argv[] = {PY, "-c", SYSCALLS_PY, NULL};
    run(sb, argv, NULL, 0, r, 20000);
    if (!(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0))
        fail_msg("python helper failed: %s %s", r->out, r->err);
    static const struct {
        const char *name;
        int err;
    } want[] = {{"ptrace", EPERM}, {"unshare", EPERM}, {"clone_newuser", EPERM},
                {"clone3", ENOSYS}, {"mount", EPERM}, {"personality", EPERM},
                {"io_uring_setup", EPERM}, {"process_vm_readv", EPERM}, {"keyctl", EPERM},
                {"bpf", EPERM}, {"perf_event_open", EPERM}, {"setns", EPERM}};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        char line[80];
        snprintf(line, sizeof(line), "\n%s -1 %d\n", want[i].name, want[i].err);
        char buf[70000];
        snprintf(buf, sizeof(buf), "\n%s", r->out);
        if (!strstr(buf, line))
            fail_msg("%s: expected errno %d, got:\n%s", want[i].name, want[i].err, r->out);
    }
    /* the query and ordinary calls still work */
    assert_null(strstr(r->out, "personality_query -1"));
    assert_null(strstr(r->out, "getpid -1"));
    /* the real strace cannot trace anything either */
    if (access("/usr/bin/strace", X_OK) == 0) {
        const char *argv2[] = {"/usr/bin/strace", "-f", "/bin/true", NULL};
        run(sb, argv2, NULL, 0, r, 10000);
        assert_false(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0);
    }
    free(r);
    sandbox_destroy(sb);
}

static void fork_bomb_memory_hog_and_big_file_are_contained(void **state)
{
    (void)state;
    if (!g_root) /* RLIMIT_NPROC would count the shared uid */
        fail_msg("this test needs root (per-command uids); CI runs as root");
    sandbox *sb = mk();
    uid_t uid = sandbox_uid(sb);
    result *r = new_result();
    /* a real fork bomb (every child forks again); RLIMIT_NPROC (32) stops it */
    const char *bomb[] = {PY, "-c",
                          "import os, time, sys\n"
                          "fails = 0\n"
                          "for i in range(200):\n"
                          "    try:\n"
                          "        os.fork()\n"
                          "    except OSError as e:\n"
                          "        fails += 1\n"
                          "        if fails == 1: print('fork refused:', e.strerror, flush=True)\n"
                          "        time.sleep(0.01)\n"
                          "time.sleep(30)\n",
                          NULL};
    int o, e;
    pid_t pid = start(sb, bomb, NULL, 0, &o, &e);
    /* the first refused fork is reported: the bomb has reached RLIMIT_NPROC */
    char first[128] = "";
    struct pollfd p = {.fd = o, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 20000), 1);
    assert_true(read(o, first, sizeof(first) - 1) > 0);
    assert_non_null(strstr(first, "fork refused: Resource temporarily unavailable"));
    int n = procs_of_uid(uid);
    assert_true(n > 0 && n <= 32);
    kill(-pid, SIGKILL); /* the timeout's group kill */
    finish(pid, o, e, r, 5000);
    assert_int_equal(sandbox_kill_all(sb), 0);
    assert_int_equal(procs_of_uid(uid), 0);

    /* memory hog: 1 GiB in a 512 MiB address space */
    const char *hog[] = {PY, "-c",
                         "try:\n    b = bytearray(1 << 30)\n    print('allocated')\n"
                         "except MemoryError:\n    print('MemoryError')\n",
                         NULL};
    run(sb, hog, NULL, 0, r, 20000);
    assert_string_equal(r->out, "MemoryError\n");

    /* a 2 MiB file in a 1 MiB RLIMIT_FSIZE: SIGXFSZ, the file stops at 1 MiB */
    const char *big[] = {"/bin/sh", "-c", "head -c 2097152 /dev/zero > big; wc -c < big", NULL};
    run(sb, big, NULL, 0, r, 20000);
    if (strcmp(r->out, "1048576\n"))
        fail_msg("big file: status %d out [%s] err [%s]", r->status, r->out, r->err);
    free(r);
    sandbox_destroy(sb);
}

static void no_writes_outside_and_no_peeking_at_other_commands(void **state)
{
    (void)state;
    if (!g_root) /* without uid separation both commands share a uid */
        fail_msg("this test needs root (per-command uids); CI runs as root");
    sandbox *a = mk(), *b = mk();
    assert_int_not_equal(sandbox_uid(a), sandbox_uid(b));
    assert_string_not_equal(sandbox_dir(a), sandbox_dir(b));
    char *env_a[] = {"AWS_SECRET_ACCESS_KEY=secret-of-command-a"};
    const char *argv_a[] = {"/bin/sh", "-c", "echo top-secret > $HOME/secret; echo ready; sleep 30",
                            NULL};
    int o, e;
    pid_t pa = start(a, argv_a, env_a, 1, &o, &e);
    char buf[64] = "";
    struct pollfd p = {.fd = o, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 10000), 1);
    assert_true(read(o, buf, sizeof(buf) - 1) > 0);

    char script[2000];
    snprintf(script, sizeof(script),
             "cat %s/secret 2>/dev/null && echo READ-HOME; "
             "ls %s 2>/dev/null && echo LISTED-DIR; "
             "cat /proc/%d/environ 2>/dev/null | tr '\\0' '\\n' | grep -q secret-of-command-a && "
             "echo READ-ENVIRON; "
             "kill -0 %d 2>/dev/null && echo SIGNALLED; "
             "echo x > /etc/aurora-sbx-probe 2>/dev/null && echo WROTE-ETC; "
             "echo x > %s/planted 2>/dev/null && echo WROTE-BASE; "
             "echo x > $HOME/mine && echo wrote-home; "
             "echo x > /tmp/aurora-sbx-left-%u && echo wrote-tmp",
             sandbox_home(a), sandbox_dir(a), (int)pa, (int)pa, g_base, (unsigned)sandbox_uid(b));
    const char *argv_b[] = {"/bin/sh", "-c", script, NULL};
    result *r = new_result();
    run(b, argv_b, NULL, 0, r, 10000);
    assert_string_equal(r->out, "wrote-home\nwrote-tmp\n");
    assert_false(exists("/etc/aurora-sbx-probe"));
    kill(-pa, SIGKILL);
    result *ra = new_result();
    finish(pa, o, e, ra, 5000);
    char left[200];
    snprintf(left, sizeof(left), "/tmp/aurora-sbx-left-%u", (unsigned)sandbox_uid(b));
    assert_true(exists(left));
    sandbox_destroy(b); /* sweeps what its uid left in /tmp */
    assert_false(exists(left));
    sandbox_destroy(a);
    free(r);
    free(ra);
}

static void spawn_failures_are_reported(void **state)
{
    (void)state;
    sandbox *sb = mk();
    char err[300] = "";
    int o[2];
    assert_int_equal(pipe2(o, O_CLOEXEC), 0);
    const char *argv[] = {"/nonexistent/gcloud", NULL};
    pid_t pid = sandbox_spawn(sb, argv[0], (char *const *)argv, NULL, 0, o[1], o[1], err,
                              sizeof(err));
    assert_int_equal(pid, -1);
    assert_non_null(strstr(err, "executing failed: No such file or directory"));
    const char *rel[] = {"gcloud", NULL};
    assert_int_equal(sandbox_spawn(sb, rel[0], (char *const *)rel, NULL, 0, o[1], o[1], err,
                                   sizeof(err)),
                     -1);
    close(o[0]);
    close(o[1]);
    sandbox_destroy(sb);
}

/* x32 system calls (nr | 0x40000000 on x86_64) and other ABIs are not
 * filtered by the native rules: the filter kills the process instead. */
#if defined(__x86_64__)
static void foreign_abi_system_calls_kill_the_process(void **state)
{
    (void)state;
    if (access(PY, X_OK) != 0)
        fail_msg("%s is needed to make the system calls under test", PY);
    sandbox *sb = mk();
    result *r = new_result();
    const char *argv[] = {PY, "-c",
                          "import ctypes\n"
                          "libc = ctypes.CDLL(None, use_errno=True)\n"
                          "print('before', flush=True)\n"
                          "libc.syscall(ctypes.c_long(0x40000000 | 39))\n"
                          "print('x32 call returned', flush=True)\n",
                          NULL};
    run(sb, argv, NULL, 0, r, 20000);
    assert_string_equal(r->out, "before\n");
    assert_true(WIFSIGNALED(r->status) && WTERMSIG(r->status) == SIGSYS);
    free(r);
    sandbox_destroy(sb);
}
#endif

/* AURORA_SANDBOX_UID_RANGE=off (and every non-root agent): the agent's own
 * uid, the same private directory, environment, limits and filter. */
static void shared_uid_mode(void **state)
{
    (void)state;
    sandbox_shutdown();
    sandbox_config c = {.dir = g_base, .uid_range = "off", .cpu_seconds = 0, .memory_mb = 0,
                        .nofile = 100, .nproc = -1, .fsize_mb = 0};
    char err[400];
    if (sandbox_init(&c, err, sizeof(err)) != 0)
        fail_msg("sandbox_init(off): %s", err);
    assert_false(sandbox_uid_separation());
    sandbox *sb = mk();
    assert_int_equal(sandbox_uid(sb), geteuid());
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", sandbox_dir(sb));
    struct stat st;
    assert_int_equal(lstat(dir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(st.st_uid, geteuid());
    result *r = new_result();
    const char *argv[] = {"/bin/cat", "/proc/self/limits", "/proc/self/status", NULL};
    run(sb, argv, NULL, 0, r, 10000);
    assert_int_equal(limit_of(r->out, "Max processes"), SANDBOX_DEFAULT_NPROC_SHARED);
    assert_int_equal(limit_of(r->out, "Max open files"), 100);
    assert_int_equal(limit_of(r->out, "Max address space"), -1);
    assert_non_null(strstr(r->out, "NoNewPrivs:\t1"));
    assert_non_null(strstr(r->out, "Seccomp:\t2"));
    assert_int_equal(sandbox_kill_all(sb), 0);
    sandbox_destroy(sb);
    assert_false(exists(dir));
    free(r);
    /* bad settings */
    sandbox_shutdown();
    sandbox_config bad = c;
    bad.uid_range = "5-1";
    assert_int_equal(sandbox_init(&bad, err, sizeof(err)), g_root ? -1 : 0);
    sandbox_shutdown();
    bad = c;
    bad.dir = "relative/dir";
    assert_int_equal(sandbox_init(&bad, err, sizeof(err)), -1);
    bad = c;
    bad.path = "/usr/bin:bin";
    assert_int_equal(sandbox_init(&bad, err, sizeof(err)), -1);
    bad = c;
    bad.passthrough = "LD_PRELOAD";
    assert_int_equal(sandbox_init(&bad, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "LD_PRELOAD"));
    /* not initialised: a clear error instead of a command */
    sandbox_set_unavailable("test: broken on purpose");
    assert_null(sandbox_create(err, sizeof(err)));
    assert_non_null(strstr(err, "broken on purpose"));
    sandbox_set_unavailable("");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(env_is_allowlist_plus_injected),
        cmocka_unit_test(server_cannot_set_owned_or_loader_variables),
        cmocka_unit_test(cloud_policy_programs_and_printers),
        cmocka_unit_test(dir_is_private_and_removed),
        cmocka_unit_test(dir_removed_after_kill_and_escapees_killed),
        cmocka_unit_test(symlinks_are_not_followed_on_cleanup),
        cmocka_unit_test(rlimits_uid_nnp_seccomp_applied),
        cmocka_unit_test(seccomp_refuses_dangerous_syscalls),
        cmocka_unit_test(fork_bomb_memory_hog_and_big_file_are_contained),
        cmocka_unit_test(no_writes_outside_and_no_peeking_at_other_commands),
        cmocka_unit_test(spawn_failures_are_reported),
#if defined(__x86_64__) /* x32 is an x86_64 ABI */
        cmocka_unit_test(foreign_abi_system_calls_kill_the_process),
#endif
        cmocka_unit_test(shared_uid_mode), /* last: re-initialises the sandbox */
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
