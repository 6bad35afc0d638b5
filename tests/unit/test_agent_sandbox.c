/* test_agent_sandbox.c — the cloud_exec sandbox (agent/sandbox.c), its
 * Landlock rules (agent/landlock.c), the cloud policy (agent/cloud.c) and the
 * CLI plug-ins (agent/cloud_*.c), with real child processes.
 *
 * Runs as root (as CI does): every command gets its own uid from a test
 * range, so uid separation, RLIMIT_NPROC per uid and the cleanup of a uid's
 * processes are exercised for real.  The kernel must offer Landlock (this
 * machine's offers ABI 7): the Landlock tests fail, not skip, without it.
 * The helpers are the system's own programs (/usr/bin/env, cat, id, sh,
 * python3 with ctypes for the raw system calls the seccomp filter must
 * refuse and for TCP connects). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/random.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cloud.h"
#include "cloud_cli.h"
#include "free_watch.h"
#include "landlock.h"
#include "log.h"
#include "metrics.h"
#include "sandbox.h"

/* 20 uids of this run, drawn at random at setup: uids are machine-wide and the
 * cleanup kills every process of a uid, so two runs at once must not share them */
#define UID_COUNT 20
static char g_uid_range[64];
#define PY "/usr/bin/python3"

static char g_base[256];
static int g_root;
/* a directory standing in for the pod's file system: pub/ readable, sa/ (the
 * ServiceAccount token's stand-in) never reachable */
static char g_pod[256];
static int g_listen_ok = -1, g_listen_no = -1; /* TCP listeners on loopback */
static int g_port_ok, g_port_no;               /* allowed / not allowed */

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

/* Starts argv in sb (with profile); outfd and errfd get the read ends. */
static pid_t start_p(sandbox *sb, const sandbox_profile *pf, const char *const argv[],
                     char *const env[], int nenv, int *outfd, int *errfd)
{
    int o[2], e[2];
    assert_int_equal(pipe2(o, O_CLOEXEC), 0);
    assert_int_equal(pipe2(e, O_CLOEXEC), 0);
    char err[300] = "";
    pid_t pid = sandbox_spawn(sb, pf, argv[0], (char *const *)argv, env, nenv, o[1], e[1], err,
                              sizeof(err));
    close(o[1]);
    close(e[1]);
    if (pid < 0)
        fail_msg("sandbox_spawn %s: %s", argv[0], err);
    *outfd = o[0];
    *errfd = e[0];
    return pid;
}

static pid_t start(sandbox *sb, const char *const argv[], char *const env[], int nenv, int *outfd,
                   int *errfd)
{
    return start_p(sb, NULL, argv, env, nenv, outfd, errfd);
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

static void run_p(sandbox *sb, const sandbox_profile *pf, const char *const argv[],
                  char *const env[], int nenv, result *r, int timeout_ms)
{
    int o, e;
    pid_t pid = start_p(sb, pf, argv, env, nenv, &o, &e);
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

static int put_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    ssize_t w = write(fd, text, strlen(text));
    close(fd);
    return w == (ssize_t)strlen(text) && chmod(path, mode) == 0 ? 0 : -1;
}

/* A listening TCP socket on 127.0.0.1, its port in *port. */
static int listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0)
        return -1;
    *port = ntohs(a.sin_port);
    return fd;
}

/* The sandbox of these tests: the defaults, plus g_pod readable but its sa/
 * never, plus g_port_ok connectable. */
static int init_sandbox(const char *landlock, const char *uid_range)
{
    char ro[600], deny[600], ports[64];
    snprintf(ro, sizeof(ro), "%s,%s", SANDBOX_DEFAULT_READONLY_PATHS, g_pod);
    snprintf(deny, sizeof(deny), "%s,%s/sa", SANDBOX_DEFAULT_DENY_PATHS, g_pod);
    snprintf(ports, sizeof(ports), "443,%d", g_port_ok);
    sandbox_config c = {.dir = g_base, .path = NULL, .uid_range = uid_range, .passthrough = NULL,
                        .cpu_seconds = 7, .memory_mb = 512, .nofile = 64, .nproc = 32,
                        .fsize_mb = 1, .landlock = landlock, .readonly_paths = ro,
                        .deny_paths = deny, .allowed_ports = ports};
    char err[400];
    if (sandbox_init(&c, err, sizeof(err)) != 0) {
        fprintf(stderr, "sandbox_init: %s\n", err);
        return -1;
    }
    return 0;
}

static int setup(void **state)
{
    (void)state;
    log_setup("test", "warn", "text");
    g_root = geteuid() == 0;
    snprintf(g_base, sizeof(g_base), "/tmp/aurora-sbxtest-XXXXXX");
    if (!mkdtemp(g_base) || chmod(g_base, 0711) != 0)
        return -1;
    /* world-readable on purpose: only Landlock keeps sa/token from a command */
    char p[400];
    snprintf(g_pod, sizeof(g_pod), "/tmp/aurora-sbxpod-XXXXXX");
    if (!mkdtemp(g_pod) || chmod(g_pod, 0755) != 0)
        return -1;
    snprintf(p, sizeof(p), "%s/pub", g_pod);
    if (mkdir(p, 0755) != 0)
        return -1;
    snprintf(p, sizeof(p), "%s/pub/readme", g_pod);
    if (put_file(p, "public\n", 0644) != 0)
        return -1;
    snprintf(p, sizeof(p), "%s/sa", g_pod);
    if (mkdir(p, 0755) != 0)
        return -1;
    snprintf(p, sizeof(p), "%s/sa/token", g_pod);
    if (put_file(p, "eyJhbGciOi.sa-token-stand-in\n", 0644) != 0)
        return -1;
    char target[400];
    snprintf(target, sizeof(target), "%s/sa", g_pod);
    snprintf(p, sizeof(p), "%s/pub/sa-link", g_pod); /* a symlink into the denied directory */
    if (symlink(target, p) != 0)
        return -1;
    g_listen_ok = listener(&g_port_ok);
    g_listen_no = listener(&g_port_no);
    if (g_listen_ok < 0 || g_listen_no < 0)
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
    snprintf(g_uid_range, sizeof(g_uid_range), "%u-%u", lo, lo + UID_COUNT - 1);
    return init_sandbox("required", g_uid_range);
}

static int teardown(void **state)
{
    (void)state;
    sandbox_shutdown();
    char cmd[800];
    snprintf(cmd, sizeof(cmd), "rm -rf %s %s", g_base, g_pod);
    int rc = system(cmd);
    (void)rc;
    close(g_listen_ok);
    close(g_listen_no);
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
    /* a bare program: no CLI's config locations */
    static const char *const want[] = {
        "HOME", "TMPDIR", "PATH", "USER", "LOGNAME", "LANG", "LC_ALL", "SSL_CERT_FILE",
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
    assert_null(strstr(r->out, "CLOUDSDK_CONFIG="));
    assert_true(has_line(r->out, "PATH=" SANDBOX_DEFAULT_PATH));
    assert_true(has_line(r->out, "LC_ALL=C.UTF-8"));
    assert_true(has_line(r->out, "AWS_ACCESS_KEY_ID=AKIATESTINJECTED0001"));
    assert_null(strstr(r->out, "AURORA_AGENT_TOKEN"));
    assert_null(strstr(r->out, "this-must-not-leak"));
    assert_null(strstr(r->out, "KUBECONFIG"));
    assert_null(strstr(r->out, "LD_PRELOAD"));

    /* the CLI's plug-in adds its config locations inside HOME (and only its own) */
    sandbox_profile gcloud = {.cli = &cloud_cli_gcloud};
    run_p(sb, &gcloud, argv, env, 2, r, 10000);
    snprintf(line, sizeof(line), "CLOUDSDK_CONFIG=%s/.config/gcloud", sandbox_home(sb));
    assert_true(has_line(r->out, line));
    assert_null(strstr(r->out, "AWS_CONFIG_FILE="));
    sandbox_profile aws = {.cli = &cloud_cli_aws};
    run_p(sb, &aws, argv, env, 2, r, 10000);
    snprintf(line, sizeof(line), "AWS_SHARED_CREDENTIALS_FILE=%s/.aws/credentials",
             sandbox_home(sb));
    assert_true(has_line(r->out, line));
    assert_null(strstr(r->out, "CLOUDSDK_CONFIG="));
    assert_null(strstr(r->out, "AZURE_CONFIG_DIR="));
    free(r);
    sandbox_destroy(sb);
}

/* Item 8 of issue 8: what the server may set, per CLI, exactly named.  Every
 * variable the server's connectors send today is in (server/connector_*.c);
 * what moves endpoints, proxies, the trust store, loads code or names a
 * file is out. */
static const struct {
    const char *cli, *name;
    int allowed;
} SERVER_ENV[] = {
    /* gcloud: what connector_gcp.c sends */
    {"gcloud", "CLOUDSDK_AUTH_ACCESS_TOKEN", 1},
    {"gcloud", "CLOUDSDK_CORE_PROJECT", 1},
    {"gcloud", "CLOUDSDK_CORE_DISABLE_PROMPTS", 1},
    {"gcloud", "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING", 1},
    {"gcloud", "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK", 1},
    {"gcloud", "CLOUDSDK_SURVEY_DISABLE_PROMPTS", 1},
    {"gcloud", "CLOUDSDK_COMPUTE_REGION", 1},
    {"gcloud", "CLOUDSDK_COMPUTE_ZONE", 1},
    /* gcloud: the operator's, never the server's */
    {"gcloud", "CLOUDSDK_PROXY_TYPE", 0},
    {"gcloud", "CLOUDSDK_PROXY_ADDRESS", 0},
    {"gcloud", "CLOUDSDK_PROXY_PORT", 0},
    {"gcloud", "CLOUDSDK_PROXY_USERNAME", 0},
    {"gcloud", "CLOUDSDK_PROXY_PASSWORD", 0},
    {"gcloud", "CLOUDSDK_PROXY_RDNS", 0},
    {"gcloud", "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE", 0},
    {"gcloud", "CLOUDSDK_AUTH_DISABLE_SSL_VALIDATION", 0},
    {"gcloud", "CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDRESOURCEMANAGER", 0},
    {"gcloud", "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE", 0},
    {"gcloud", "CLOUDSDK_CORE_ACCOUNT", 0},
    {"gcloud", "CLOUDSDK_BILLING_QUOTA_PROJECT", 0},
    {"gcloud", "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE", 0},
    {"gcloud", "GOOGLE_APPLICATION_CREDENTIALS", 0},
    {"gcloud", "CLOUDSDK_PYTHON", 0},
    {"gcloud", "CLOUDSDK_CONFIG", 0},
    {"gcloud", "AWS_ACCESS_KEY_ID", 0}, /* another CLI's */
    {"gcloud", "AZURE_ACCESS_TOKEN", 0},
    /* aws: what connector_aws.c sends */
    {"aws", "AWS_ACCESS_KEY_ID", 1},
    {"aws", "AWS_SECRET_ACCESS_KEY", 1},
    {"aws", "AWS_SESSION_TOKEN", 1},
    {"aws", "AWS_DEFAULT_REGION", 1},
    {"aws", "AWS_REGION", 1},
    {"aws", "AWS_EC2_METADATA_DISABLED", 1},
    {"aws", "AWS_PAGER", 1},
    {"aws", "AWS_DEFAULT_OUTPUT", 1},
    /* aws: never the server's */
    {"aws", "AWS_ENDPOINT_URL", 0},
    {"aws", "AWS_ENDPOINT_URL_STS", 0},
    {"aws", "AWS_ENDPOINT_URL_S3", 0},
    {"aws", "AWS_CA_BUNDLE", 0},
    {"aws", "AWS_PROFILE", 0},
    {"aws", "AWS_CONFIG_FILE", 0},
    {"aws", "AWS_SHARED_CREDENTIALS_FILE", 0},
    {"aws", "AWS_CONTAINER_CREDENTIALS_FULL_URI", 0},
    {"aws", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", 0},
    {"aws", "AWS_CONTAINER_AUTHORIZATION_TOKEN", 0},
    {"aws", "AWS_WEB_IDENTITY_TOKEN_FILE", 0},
    {"aws", "AWS_ROLE_ARN", 0},
    {"aws", "AWS_USE_FIPS_ENDPOINT", 0},
    {"aws", "HTTPS_PROXY", 0},
    {"aws", "CLOUDSDK_AUTH_ACCESS_TOKEN", 0},
    /* az: what connector_azure.c sends */
    {"az", "AZURE_ACCESS_TOKEN", 1},
    {"az", "AZURE_ACCESS_TOKEN_EXPIRES_ON", 1},
    {"az", "AZURE_SUBSCRIPTION_ID", 1},
    {"az", "AZURE_TENANT_ID", 1},
    {"az", "AZURE_CORE_COLLECT_TELEMETRY", 1},
    {"az", "AZURE_CORE_NO_COLOR", 1},
    {"az", "AZURE_CORE_OUTPUT", 1},
    {"az", "AZURE_CORE_ONLY_SHOW_ERRORS", 1},
    {"az", "AZURE_DEFAULTS_LOCATION", 1},
    /* az: never the server's (AZURE_ARM_ENDPOINT_OVERRIDE only as the operator set it) */
    {"az", "AZURE_ARM_ENDPOINT_OVERRIDE", 0},
    {"az", "AZURE_CLI_DISABLE_CONNECTION_VERIFICATION", 0},
    {"az", "AZURE_EXTENSION_DIR", 0},
    {"az", "AZURE_CONFIG_DIR", 0},
    {"az", "AZURE_CLIENT_SECRET", 0},
    {"az", "AZURE_CLOUD_NAME", 0},
    {"az", "REQUESTS_CA_BUNDLE", 0},
    {"az", "ADAL_PYTHON_SSL_NO_VERIFY", 0},
    /* every CLI: the loader, the sandbox's own, the agent's */
    {"gcloud", "LD_PRELOAD", 0},
    {"aws", "LD_LIBRARY_PATH", 0},
    {"az", "PYTHONPATH", 0},
    {"az", "PYTHONSTARTUP", 0},
    {"gcloud", "HOME", 0},
    {"aws", "PATH", 0},
    {"az", "TMPDIR", 0},
    {"gcloud", "SSL_CERT_FILE", 0},
    {"aws", "NODE_OPTIONS", 0},
    {"gcloud", "BASH_ENV", 0},
    {"aws", "GLIBC_TUNABLES", 0},
    {"az", "AURORA_AGENT_TOKEN", 0},
    {"gcloud", "KUBECONFIG", 0},
    {"aws", "OPENSSL_CONF", 0},
    {"gcloud", "LC_ALL", 0},
};

/* The three CLIs, each "installed" as /bin/true. */
static void three_clis(agent_cloud *c)
{
    char err[300];
    assert_int_equal(agent_cloud_init(c, NULL, "gcloud=/bin/true,aws=/bin/true,az=/bin/true",
                                      NULL, NULL, err, sizeof(err)),
                     0);
}

static void server_env_is_an_allowlist_per_cli(void **state)
{
    (void)state;
    agent_cloud c;
    char err[300];
    three_clis(&c);
    agent_policy_decision d;
    const char *argv[] = {"projects", "list"};
    for (size_t i = 0; i < sizeof(SERVER_ENV) / sizeof(SERVER_ENV[0]); i++) {
        char kv[200];
        snprintf(kv, sizeof(kv), "%s=secret-value-%zu", SERVER_ENV[i].name, i);
        char *env[] = {kv};
        int got = agent_cloud_check(&c, SERVER_ENV[i].cli, 2, argv, env, 1, &d);
        if (got != SERVER_ENV[i].allowed)
            fail_msg("%s %s: the agent %s it (%s)", SERVER_ENV[i].cli, SERVER_ENV[i].name,
                     got ? "allows" : "refuses", d.reason);
        if (!got) {
            /* the reason names the variable, never its value */
            assert_non_null(strstr(d.reason, SERVER_ENV[i].name));
            assert_null(strstr(d.reason, "secret-value"));
        }
    }
    /* the allowlists hold nothing the sandbox protects */
    for (const cloud_cli *const *p = cloud_cli_all(); *p; p++)
        for (int i = 0; (*p)->server_env[i]; i++)
            if (sandbox_env_name_protected((*p)->server_env[i], strlen((*p)->server_env[i])))
                fail_msg("%s allowlists the protected %s", (*p)->name, (*p)->server_env[i]);
    /* one bad variable refuses the whole command; a name set twice too */
    char *env_bad[] = {"CLOUDSDK_AUTH_ACCESS_TOKEN=ya29.secret-value", "LD_PRELOAD=/tmp/x.so"};
    assert_int_equal(agent_cloud_check(&c, "gcloud", 2, argv, env_bad, 2, &d), 0);
    assert_non_null(strstr(d.reason, "LD_PRELOAD"));
    assert_null(strstr(d.reason, "/tmp/x.so"));
    char *env_twice[] = {"CLOUDSDK_CORE_PROJECT=a", "CLOUDSDK_CORE_PROJECT=b"};
    assert_int_equal(agent_cloud_check(&c, "gcloud", 2, argv, env_twice, 2, &d), 0);
    assert_non_null(strstr(d.reason, "set twice"));
    char *env_ok[] = {"CLOUDSDK_AUTH_ACCESS_TOKEN=ya29.x", "CLOUDSDK_CORE_PROJECT=p"};
    assert_int_equal(agent_cloud_check(&c, "gcloud", 2, argv, env_ok, 2, &d), 1);
    /* the sandbox itself refuses what only it sets, whoever asks */
    sandbox *sb = mk();
    int o[2];
    assert_int_equal(pipe2(o, O_CLOEXEC), 0);
    char *env_home[] = {"HOME=/root"};
    const char *av[] = {"/bin/true", NULL};
    assert_int_equal(sandbox_spawn(sb, NULL, av[0], (char *const *)av, env_home, 1, o[1], o[1],
                                   err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "HOME"));
    close(o[0]);
    close(o[1]);
    sandbox_destroy(sb);
    agent_cloud_free(&c);
}

/* Endpoints and proxies come from the operator (AURORA_CLOUD_ENV): they
 * reach that CLI's commands; the server may repeat a value, not change it. */
/* Arguments naming the command's own process files: its environment holds
 * the injected credentials, and the CLIs quote or upload what such an
 * argument names (cloud_paths.h).  1: refused. */
static const struct {
    const char *cli, *arg;
    int refused;
} PROCESS_FILES[] = {
    {"aws", "file:///proc/self/environ", 1},
    {"aws", "fileb:///proc/self/environ", 1},
    {"aws", "FILE:///proc/self/environ", 1},
    {"aws", "--cli-input-json=file:///proc/self/environ", 1},
    {"aws", "file:///proc/../proc/self/environ", 1},
    {"aws", "file:///usr/../proc/thread-self/environ", 1},
    {"aws", "file:////proc//self//environ", 1},
    {"aws", "file:///./proc/1/environ", 1},
    {"aws", "file://../../../../../../proc/self/environ", 1},
    {"aws", "file://~/../../../../proc/self/environ", 1},
    {"aws", "file://~root/../proc/self/environ", 1},
    {"aws", "file:///dev/stdin", 1},
    {"aws", "file:///dev/fd/0", 1},
    {"aws", "file:///x$AWS_SECRET_ACCESS_KEY", 1},
    {"aws", "fileb:///x${AWS_SESSION_TOKEN}", 1},
    {"aws", "file://$HOME/x.json", 1},
    {"aws", "Name=a,Values@=file:///proc/self/environ", 1},
    {"aws", "/proc/self/environ", 1}, /* s3 cp <local> s3://… */
    {"aws", "../../../../proc/self/environ", 1},
    {"aws", "/proc", 1},
    {"gcloud", "--metadata-from-file=startup-script=/proc/self/environ", 1},
    {"gcloud", "a=/etc/hosts,b=/proc/self/environ", 1},
    {"az", "@/proc/self/environ", 1},
    {"az", "/dev/fd/3", 1},
    {"aws", "file:///dev/shm/../fd/0", 1},
    {"aws", "file:///dev/shm/../../proc/self/environ", 1},
    {"aws", "file:///dev/./stdin", 1},
    {"aws", "file://../../dev/fd/0", 1},
    /* what a command names legitimately, "proc" and "dev" elsewhere in it */
    {"aws", "file:///etc/aurora/input.json", 0},
    {"aws", "file://input.json", 0},
    {"aws", "fileb:///usr/share/doc/x.zip", 0},
    {"aws", "s3://proc/self/environ", 0},
    {"aws", "s3://bucket/proc/self/environ", 0},
    {"aws", "/usr/proc/x", 0},
    {"aws", "/procfs", 0},
    {"aws", "/device", 0},
    /* a tmpfs of plain files, where the agent's TMPDIR (the command's own
     * directory) may be */
    {"aws", "file:///dev/shm/aurora-test.x/cloud-1/input.json", 0},
    {"aws", "/dev/shm/aurora-agent/cloud-7/out.txt", 0},
    {"aws", "proc/self/environ", 0}, /* below HOME */
    {"aws", "Reservations[?Name=='$x']", 0},
    {"gcloud", "projects/p/locations/l/devices/dev", 0},
    {"az", "/subscriptions/s/resourceGroups/dev", 0},
};

static void arguments_naming_process_files_are_refused(void **state)
{
    (void)state;
    agent_cloud c;
    three_clis(&c);
    agent_policy_decision d;
    for (size_t i = 0; i < sizeof(PROCESS_FILES) / sizeof(PROCESS_FILES[0]); i++) {
        const char *argv[] = {"sts", "get-caller-identity", "--cli-input-json",
                              PROCESS_FILES[i].arg};
        int got = agent_cloud_check(&c, PROCESS_FILES[i].cli, 4, argv, NULL, 0, &d);
        if (got == PROCESS_FILES[i].refused)
            fail_msg("%s %s: the agent %s it (%s)", PROCESS_FILES[i].cli, PROCESS_FILES[i].arg,
                     got ? "allows" : "refuses", d.reason);
        if (!got) {
            /* the reason says which argument, never quotes it */
            assert_non_null(strstr(d.reason, "argument 4"));
            if (strlen(PROCESS_FILES[i].arg) > 5) /* "/proc" is in every reason */
                assert_null(strstr(d.reason, PROCESS_FILES[i].arg));
        }
    }
    agent_cloud_free(&c);
}

static void operator_env_per_cli(void **state)
{
    (void)state;
    agent_cloud c;
    char err[300];
    assert_int_equal(
        agent_cloud_init(&c, NULL, "gcloud=/usr/bin/env,az=/usr/bin/env",
                         " gcloud:CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE=http://127.0.0.1:9/c/v1/,"
                         "gcloud:CLOUDSDK_PROXY_PORT=3128, az:AZURE_ARM_ENDPOINT_OVERRIDE=https://arm.test/",
                         NULL, err, sizeof(err)),
        0);
    agent_policy_decision d;
    const char *argv[] = {"projects", "list"};
    char *same[] = {"CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE=http://127.0.0.1:9/c/v1/"};
    assert_int_equal(agent_cloud_check(&c, "gcloud", 2, argv, same, 1, &d), 1);
    char *other[] = {"CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE=http://evil.test/"};
    assert_int_equal(agent_cloud_check(&c, "gcloud", 2, argv, other, 1, &d), 0);
    assert_non_null(strstr(d.reason, "operator"));
    assert_null(strstr(d.reason, "evil.test"));
    char *arm_same[] = {"AZURE_ARM_ENDPOINT_OVERRIDE=https://arm.test/"};
    assert_int_equal(agent_cloud_check(&c, "az", 2, argv, arm_same, 1, &d), 1);
    char *arm_other[] = {"AZURE_ARM_ENDPOINT_OVERRIDE=https://10.0.0.1:6443/"};
    assert_int_equal(agent_cloud_check(&c, "az", 2, argv, arm_other, 1, &d), 0);
    /* gcloud's setting is not az's */
    assert_int_equal(agent_cloud_check(&c, "az", 2, argv, same, 1, &d), 0);

    /* the command sees the operator's value once, the server's copy left out */
    const sandbox_profile *pf = agent_cloud_profile(&c, "gcloud");
    assert_non_null(pf);
    sandbox *sb = mk();
    result *r = new_result();
    const char *av[] = {"/usr/bin/env", NULL};
    char *server[] = {"CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE=http://127.0.0.1:9/c/v1/",
                      "CLOUDSDK_CORE_PROJECT=proj-x"};
    run_p(sb, pf, av, server, 2, r, 10000);
    assert_true(has_line(r->out, "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE=http://127.0.0.1:9/c/v1/"));
    assert_true(has_line(r->out, "CLOUDSDK_PROXY_PORT=3128"));
    assert_true(has_line(r->out, "CLOUDSDK_CORE_PROJECT=proj-x"));
    assert_null(strstr(strstr(r->out, "OVERRIDES_COMPUTE=") + 1, "OVERRIDES_COMPUTE="));
    assert_null(strstr(r->out, "AZURE_ARM_ENDPOINT_OVERRIDE"));
    free(r);
    sandbox_destroy(sb);
    agent_cloud_free(&c);

    /* bad settings: a clear error naming the entry, never a value */
    static const struct {
        const char *v, *want;
    } bad[] = {
        {"nosuch:A=b", "nosuch"},
        {"gcloud:LD_PRELOAD=/x.so", "LD_PRELOAD"},
        {"gcloud:HOME=/root", "HOME"},
        {"aws:AURORA_AGENT_TOKEN=x", "AURORA_AGENT_TOKEN"},
        {"gcloud:NOVALUE", "cli:NAME=value"},
        {"CLOUDSDK_CORE_PROJECT=p", "cli:NAME=value"},
        {"gcloud:A=1,gcloud:A=2", "twice"},
        {"gcloud:1BAD=x", "1BAD"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (agent_cloud_init(&c, NULL, "gcloud=/bin/true,aws=/bin/true", bad[i].v, NULL, err,
                             sizeof(err)) == 0)
            fail_msg("AURORA_CLOUD_ENV=%s accepted", bad[i].v);
        if (!strstr(err, bad[i].want))
            fail_msg("AURORA_CLOUD_ENV=%s: error [%s] does not name %s", bad[i].v, err,
                     bad[i].want);
    }
}

static void cloud_policy_programs_and_printers(void **state)
{
    (void)state;
    agent_cloud c;
    char err[300];
    assert_int_equal(agent_cloud_init(&c, "enabled", "gcloud=/bin/true, aws", NULL,
                                      "/nonexistent-dir", err, sizeof(err)),
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
    /* tokens made from the credentials, and other roles' keys */
    const char *aws_printers[][3] = { {"eks", "get-token", "--cluster-name=prod"},
                                      {"ecr", "get-login-password", "--region=eu-west-1"},
                                      {"sts", "assume-role", "--role-arn=arn:aws:iam::1:role/x"},
                                      {"rds", "generate-db-auth-token", "--hostname=db"} };
    for (size_t i = 0; i < sizeof(aws_printers) / sizeof(aws_printers[0]); i++) {
        assert_int_equal(agent_cloud_check(&c, "aws", 3, aws_printers[i], NULL, 0, &d), 0);
        assert_non_null(strstr(d.reason, "print the command's credentials"));
    }
    /* aws takes a global option between service and operation, and padding
     * with options hides nothing (found in review) */
    const char *rv1[] = {"eks", "--region", "us-east-1", "get-token", "--cluster-name=prod"};
    assert_int_equal(agent_cloud_check(&c, "aws", 5, rv1, NULL, 0, &d), 0);
    const char *rv3[140];
    for (int i = 0; i < 138; i += 2) {
        rv3[i] = "--output";
        rv3[i + 1] = "json";
    }
    rv3[138] = "eks";
    rv3[139] = "get-token";
    assert_int_equal(agent_cloud_check(&c, "aws", 140, rv3, NULL, 0, &d), 0);
    const char *rv2[] = {"ecr", "get-authorization-token"};
    assert_int_equal(agent_cloud_check(&c, "aws", 2, rv2, NULL, 0, &d), 0);
    /* URLs and database tokens signed with the command's credentials (a
     * presigned S3 URL carries the session token), and AWS CLI v1's docker
     * login line (found in review) */
    const char *aws_signers[][3] = { {"s3", "presign", "s3://bucket/key"},
                                     {"s3", "--region=us-east-1", "presign"},
                                     {"ecr", "get-login", "--no-include-email"},
                                     {"dsql", "generate-db-connect-auth-token", "--hostname=h"},
                                     {"dsql", "generate-db-connect-admin-auth-token",
                                      "--hostname=h"} };
    for (size_t i = 0; i < sizeof(aws_signers) / sizeof(aws_signers[0]); i++) {
        assert_int_equal(agent_cloud_check(&c, "aws", 3, aws_signers[i], NULL, 0, &d), 0);
        assert_non_null(strstr(d.reason, "print the command's credentials"));
    }
    const char *a8[] = {"s3", "ls", "s3://bucket"};
    assert_int_equal(agent_cloud_check(&c, "aws", 3, a8, NULL, 0, &d), 1);
    const char *gc_signers[][4] = { {"storage", "sign-url", "gs://bucket/obj", "--duration=7d"},
                                    {"sql", "generate-login-token", "--format=json", "x"} };
    for (size_t i = 0; i < sizeof(gc_signers) / sizeof(gc_signers[0]); i++) {
        assert_int_equal(agent_cloud_check(&c, "gcloud", 4, gc_signers[i], NULL, 0, &d), 0);
        assert_non_null(strstr(d.reason, "print the command's credentials"));
    }
    const char *a9[] = {"storage", "ls", "gs://bucket"};
    assert_int_equal(agent_cloud_check(&c, "gcloud", 3, a9, NULL, 0, &d), 1);
    const char *a7[] = {"eks", "describe-cluster", "--name=prod"};
    assert_int_equal(agent_cloud_check(&c, "aws", 3, a7, NULL, 0, &d), 1);
    agent_cloud_free(&c);
    assert_int_equal(
        agent_cloud_init(&c, "enabled", "az=/bin/true", NULL, "/nonexistent-dir", err, sizeof(err)),
        0);
    const char *az1[] = {"acr", "login", "--name=reg", "--expose-token"};
    assert_int_equal(agent_cloud_check(&c, "az", 4, az1, NULL, 0, &d), 0);
    assert_non_null(strstr(d.reason, "print the command's credentials"));
    /* a SAS is signed with an account key or a user delegation key, both
     * fetched with the command's token (found in review) */
    const char *az_sas[][4] = { {"storage", "account", "generate-sas", "--services=b"},
                                {"storage", "blob", "generate-sas", "--as-user"},
                                {"storage", "container", "generate-sas", "--name=c"},
                                {"storage", "share", "generate-sas", "--name=s"} };
    for (size_t i = 0; i < sizeof(az_sas) / sizeof(az_sas[0]); i++) {
        assert_int_equal(agent_cloud_check(&c, "az", 4, az_sas[i], NULL, 0, &d), 0);
        assert_non_null(strstr(d.reason, "print the command's credentials"));
    }
    /* az reads its command words case-insensitively, with Python's
     * str.lower(), which makes the KELVIN SIGN (U+212A) a 'k' (knack's
     * _rudimentary_get_command; az 2.45 ran each of these, found in review) */
    const char *az_case[][3] = { {"account", "GET-ACCESS-TOKEN", "--output=json"},
                                 {"ACCOUNT", "Get-Access-Token", "--output=json"},
                                 {"account", "get-access-to\xe2\x84\xaa" "en", "-o=json"},
                                 {"ACR", "Login", "--expose-token"},
                                 {"storage", "blob", "Generate-SAS"} };
    for (size_t i = 0; i < sizeof(az_case) / sizeof(az_case[0]); i++) {
        assert_int_equal(agent_cloud_check(&c, "az", 3, az_case[i], NULL, 0, &d), 0);
        assert_non_null(strstr(d.reason, "print the command's credentials"));
    }
    /* another non-ASCII letter is not folded (an 'e' with an accent names
     * no az command) */
    const char *az4[] = {"account", "get-acc\xc3\xa9ss-token"};
    assert_int_equal(agent_cloud_check(&c, "az", 2, az4, NULL, 0, &d), 1);
    const char *az3[] = {"storage", "blob", "list", "--container-name=c"};
    assert_int_equal(agent_cloud_check(&c, "az", 4, az3, NULL, 0, &d), 1);
    const char *az2[] = {"acr", "list"};
    assert_int_equal(agent_cloud_check(&c, "az", 2, az2, NULL, 0, &d), 1);
    agent_cloud_free(&c);

    assert_int_equal(agent_cloud_init(&c, "disabled", NULL, NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(agent_cloud_check(&c, "gcloud", 2, a1, NULL, 0, &d), 0);
    assert_non_null(strstr(d.reason, "disabled"));
    agent_cloud_free(&c);
    assert_int_equal(agent_cloud_init(&c, "maybe", NULL, NULL, NULL, err, sizeof(err)), -1);
    assert_int_equal(
        agent_cloud_init(&c, NULL, "gcloud=relative/path", NULL, NULL, err, sizeof(err)), -1);
    assert_int_equal(agent_cloud_init(&c, NULL, "../gcloud", NULL, NULL, err, sizeof(err)), -1);
    /* a program without a plug-in: no allowlist to check its environment against */
    assert_int_equal(
        agent_cloud_init(&c, NULL, "python3=/usr/bin/python3", NULL, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "plug-in"));
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

/* The scan for orphans (zombies reparented to the agent that do not lead
 * their process group) spares the pids the runner names: a command that
 * moved into another group and exited looks like an orphan, and reaping it
 * under its job left the job waiting for an exit already collected. */
static void orphan_scan_spares_the_runners_children(void **state)
{
    int gate[2], said[2];
    assert_int_equal(pipe(gate), 0);
    assert_int_equal(pipe(said), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        pid_t g = fork();
        if (g == 0) { /* a group of its own; waits for the test */
            char c;
            ssize_t r = read(gate[0], &c, 1);
            _exit(r == 1 ? 0 : 1);
        }
        if (g < 0 || setpgid(g, g) != 0 || setpgid(0, g) != 0)
            _exit(2);
        ssize_t w = write(said[1], &g, sizeof(g));
        _exit(w == (ssize_t)sizeof(g) ? 0 : 3);
    }
    pid_t g = 0;
    assert_int_equal(read(said[0], &g, sizeof(g)), (ssize_t)sizeof(g));
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    assert_int_equal(waitid(P_PID, (id_t)child, &si, WEXITED | WNOWAIT), 0); /* a zombie now */
    assert_int_equal(si.si_status, 0);
    assert_int_equal(getpgid(child), g); /* not the leader of its group */

    sandbox_reap_orphans(&child, 1);
    memset(&si, 0, sizeof(si));
    assert_int_equal(waitid(P_PID, (id_t)child, &si, WEXITED | WNOHANG | WNOWAIT), 0);
    assert_int_equal(si.si_pid, child); /* spared: still ours to reap */

    sandbox_reap_orphans(NULL, 0);
    if (g_root) { /* uid separation: the scan runs, and takes it */
        errno = 0;
        assert_int_equal(waitpid(child, NULL, WNOHANG), -1);
        assert_int_equal(errno, ECHILD);
    } else { /* no separation: the scan is a no-op */
        assert_int_equal(waitpid(child, NULL, 0), child);
    }
    assert_int_equal(write(gate[1], "x", 1), 1);
    close(gate[0]);
    close(gate[1]);
    close(said[0]);
    close(said[1]);
    /* the grandchild was reparented to us (the subreaper) or to init */
    while (waitpid(g, NULL, 0) < 0 && errno == EINTR)
        ;
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

/* An agent killed with SIGKILL (OOM killer, node pressure, kill -9) never
 * runs sandbox_destroy: its commands' directories stay in the base, az's
 * token cache among them.  The next start removes them, and leaves alone
 * those of commands still running (this process's, another agent's). */
static void stale_dirs_of_a_killed_agent_are_removed_at_start(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        char err[300] = "", path[600];
        sandbox *sb = sandbox_create(err, sizeof(err));
        if (!sb)
            _exit(1);
        snprintf(path, sizeof(path), "%s/.azure", sandbox_home(sb));
        if (mkdir(path, 0700) != 0)
            _exit(1);
        snprintf(path, sizeof(path), "%s/.azure/msal_token_cache.json", sandbox_home(sb));
        if (put_file(path, "{\"secret\":\"eyJ0eXAi.stale-access-token\"}", 0600) != 0)
            _exit(1);
        if (write(p[1], path, strlen(path) + 1) <= 0)
            _exit(1);
        raise(SIGKILL); /* no sandbox_destroy */
        _exit(1);
    }
    close(p[1]);
    char stale[600] = "";
    assert_true(read(p[0], stale, sizeof(stale) - 1) > 0);
    close(p[0]);
    int st;
    assert_int_equal(waitpid(child, &st, 0), child);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_true(exists(stale));

    sandbox *live = mk(); /* a command of this agent, running */
    char live_dir[512], other[512];
    snprintf(live_dir, sizeof(live_dir), "%s", sandbox_dir(live));
    /* a name mkdtemp would not make: someone else's (the base may be /tmp) */
    snprintf(other, sizeof(other), "%s/aurora-sbx-it-kept", g_base);
    assert_int_equal(mkdir(other, 0700), 0);

    assert_int_equal(init_sandbox("required", g_uid_range), 0); /* the next start */
    assert_false(exists(stale));
    char *slash = strstr(stale, "/home/");
    assert_non_null(slash);
    *slash = '\0';
    assert_false(exists(stale)); /* the whole directory */
    assert_true(exists(live_dir));
    assert_true(exists(other));
    sandbox_destroy(live);
    assert_false(exists(live_dir));
    assert_int_equal(rmdir(other), 0);
}

/* Another agent sharing the base starts between this one's mkdtemp and
 * its open of the new directory: its sweep finds the directory unlocked and
 * removes it.  sandbox_create must make another, as it does when the sweep
 * comes between the open and the lock, not fail the command (found in
 * review: "cannot lock …: No such file or directory").  mkdtemp is this
 * binary's own (below): the next N directories it makes are removed at
 * once, as that sweep would. */
static int g_sweep_next_mkdtemp;

char *mkdtemp(char *tmpl)
{
    static char *(*real)(char *);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "mkdtemp");
    char *r = real ? real(tmpl) : NULL;
    if (r && g_sweep_next_mkdtemp > 0) {
        g_sweep_next_mkdtemp--;
        if (rmdir(r) != 0)
            return NULL;
    }
    return r;
}

static void dir_swept_before_it_is_opened_is_made_again(void **state)
{
    (void)state;
    g_sweep_next_mkdtemp = 1;
    char err[300] = "";
    sandbox *sb = sandbox_create(err, sizeof(err));
    int left = g_sweep_next_mkdtemp;
    g_sweep_next_mkdtemp = 0;
    assert_int_equal(left, 0); /* the first directory was swept */
    if (!sb)
        fail_msg("sandbox_create after a sweep: %s", err);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", sandbox_dir(sb));
    assert_true(exists(dir));
    assert_true(exists(sandbox_home(sb)));
    sandbox_destroy(sb);
    assert_false(exists(dir));
    /* swept every time: a bounded number of tries, then an error */
    g_sweep_next_mkdtemp = 100;
    sb = sandbox_create(err, sizeof(err));
    left = g_sweep_next_mkdtemp;
    g_sweep_next_mkdtemp = 0;
    assert_null(sb);
    assert_true(left >= 90);
}

/* az's token cache is printed into memory before it is written: the agent
 * frees no block still holding the access token (cJSON's printer grows its
 * buffer by realloc, leaving copies behind). */
static void az_token_cache_leaves_no_copy_in_freed_memory(void **state)
{
    (void)state;
    static const char token[] = "eyJ0eXAiOiJKV1Qi.az-Fr33d-Acc3ss-T0ken.sig";
    char *env[] = {"AZURE_ACCESS_TOKEN=eyJ0eXAiOiJKV1Qi.az-Fr33d-Acc3ss-T0ken.sig",
                   "AZURE_SUBSCRIPTION_ID=00000000-0000-0000-0000-000000000001",
                   "AZURE_TENANT_ID=00000000-0000-0000-0000-000000000002"};
    sandbox_profile pf = {.cli = &cloud_cli_az};
    const char *argv[] = {"/bin/sh", "-c",
                          "cat \"$AZURE_CONFIG_DIR/msal_token_cache.json\"; echo; "
                          "echo \"env:${AZURE_ACCESS_TOKEN:-none}\"",
                          NULL};
    sandbox *sb = mk();
    int o, e;
    assert_true(free_watch_arm(token));
    pid_t pid = start_p(sb, &pf, argv, env, 3, &o, &e);
    int kept = free_watch_disarm();
    result r;
    finish(pid, o, e, &r, 10000);
    sandbox_destroy(sb);
    assert_true(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0);
    assert_non_null(strstr(r.out, token)); /* the cache was written */
    assert_non_null(strstr(r.out, "env:none"));
    assert_int_equal(kept, 0);
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

/* A cloud command starts with every signal at its default and unblocked,
 * whatever the agent ignores or blocks: SIGUSR2 ignored and SIGTERM blocked
 * here, and libc's reserved 32 and 33 ignored (libc's sigaction cannot set or
 * reset them; a parent that used glibc's posix_spawn leaves them so). */
static void signals_reach_the_cloud_command_at_their_defaults(void **state)
{
    (void)state;
    unsigned long ign_k[4] = {(unsigned long)SIG_IGN, 0, 0, 0}, old_32[4], old_33[4];
    assert_int_equal(syscall(SYS_rt_sigaction, 32, ign_k, old_32, (size_t)8), 0);
    assert_int_equal(syscall(SYS_rt_sigaction, 33, ign_k, old_33, (size_t)8), 0);
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_usr2;
    sigemptyset(&ign.sa_mask);
    assert_int_equal(sigaction(SIGUSR2, &ign, &old_usr2), 0);
    sigset_t term, old_mask;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, &term, &old_mask), 0);

    sandbox *sb = mk();
    result *r = new_result();
    const char *argv[] = {"/bin/cat", "/proc/self/status", NULL};
    run(sb, argv, NULL, 0, r, 10000);

    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    sigaction(SIGUSR2, &old_usr2, NULL);
    syscall(SYS_rt_sigaction, 32, old_32, NULL, (size_t)8);
    syscall(SYS_rt_sigaction, 33, old_33, NULL, (size_t)8);
    assert_true(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0);
    assert_non_null(strstr(r->out, "SigBlk:\t0000000000000000\n"));
    assert_non_null(strstr(r->out, "SigIgn:\t0000000000000000\n"));
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
    /* Landlock: not even the world-writable /tmp outside its own TMPDIR */
    assert_string_equal(r->out, "wrote-home\n");
    assert_false(exists("/etc/aurora-sbx-probe"));
    kill(-pa, SIGKILL);
    result *ra = new_result();
    finish(pa, o, e, ra, 5000);
    /* without Landlock a uid can leave files in /tmp: what it left is swept */
    char left[200];
    snprintf(left, sizeof(left), "/tmp/aurora-sbx-left-%u", (unsigned)sandbox_uid(b));
    assert_false(exists(left));
    assert_int_equal(put_file(left, "x", 0600), 0);
    assert_int_equal(chown(left, sandbox_uid(b), sandbox_uid(b)), 0);
    sandbox_destroy(b); /* sweeps what its uid left in /tmp */
    assert_false(exists(left));
    sandbox_destroy(a);
    free(r);
    free(ra);
}

/* ---- Landlock -------------------------------------------------------------------- */

static int in_list(const char *list, const char *item)
{
    char l[1024], it[300];
    snprintf(l, sizeof(l), ",%s,", list);
    snprintf(it, sizeof(it), ",%s,", item);
    return strstr(l, it) != NULL;
}

/* The real ServiceAccount token path is never reachable with the defaults,
 * whatever the read-only list says. */
static void landlock_defaults_keep_the_service_account_token_out(void **state)
{
    (void)state;
    assert_string_equal(SANDBOX_SA_TOKEN_DIR, "/var/run/secrets/kubernetes.io/serviceaccount");
    assert_true(in_list(SANDBOX_DEFAULT_DENY_PATHS, "/var/run/secrets"));
    assert_true(in_list(SANDBOX_DEFAULT_DENY_PATHS, "/run/secrets"));
    assert_true(in_list(SANDBOX_DEFAULT_ALLOWED_PORTS, "443"));
    assert_false(in_list(SANDBOX_DEFAULT_ALLOWED_PORTS, "80"));
    /* nothing of the agent's own in the default read-only list */
    static const char *const never[] = {"/var", "/run", "/tmp", "/root", "/home", "/", NULL};
    for (int i = 0; never[i]; i++)
        if (in_list(SANDBOX_DEFAULT_READONLY_PATHS, never[i]))
            fail_msg("%s in the default read-only paths", never[i]);
    static const char *const tokens[] = {
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "/run/secrets/kubernetes.io/serviceaccount/token",
        "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
        "/var/run/secrets/azure/tokens/azure-identity-token", NULL};
    const char *extra[] = {SANDBOX_SA_TOKEN_DIR, NULL};
    const char *lists[] = {SANDBOX_DEFAULT_READONLY_PATHS, "/", "/var,/run,/usr", NULL};
    for (int l = 0; lists[l]; l++) {
        ll_settings st = {.abi = 1, .readonly = lists[l], .deny = SANDBOX_DEFAULT_DENY_PATHS,
                          .ports = SANDBOX_DEFAULT_ALLOWED_PORTS};
        char err[300];
        ll_plan *p = ll_plan_build(&st, extra, err, sizeof(err));
        if (!p)
            fail_msg("plan with read-only %s: %s", lists[l], err);
        for (int i = 0; tokens[i]; i++) {
            assert_true(ll_plan_denied(p, tokens[i]));
            if (ll_plan_readable(p, tokens[i]))
                fail_msg("%s readable with read-only paths %s", tokens[i], lists[l]);
        }
        assert_true(ll_plan_readable(p, "/usr/bin/env"));
        ll_plan_free(p);
    }
    /* even with no deny list configured, the token's directory stays out */
    ll_settings st = {.abi = 1, .readonly = "/", .deny = "", .ports = "443"};
    char err[300];
    ll_plan *p = ll_plan_build(&st, extra, err, sizeof(err));
    assert_non_null(p);
    assert_false(ll_plan_readable(p, tokens[0]));
    assert_true(ll_plan_readable(p, "/etc/passwd"));
    ll_plan_free(p);
    /* settings that make no sense are refused */
    assert_int_equal(ll_check_paths("/usr,relative", "X", err, sizeof(err)), -1);
    assert_int_equal(ll_check_paths("/usr/../var", "X", err, sizeof(err)), -1);
    assert_int_equal(ll_check_paths("/usr, /opt/google-cloud-sdk/ ,/etc", "X", err, sizeof(err)),
                     0);
    uint16_t ports[LL_MAX_PORTS];
    int all;
    assert_int_equal(ll_parse_ports("443, 8443,443", ports, &all, err, sizeof(err)), 2);
    assert_int_equal(ll_parse_ports("all", ports, &all, err, sizeof(err)), 0);
    assert_true(all);
    assert_int_equal(ll_parse_ports("0", ports, &all, err, sizeof(err)), -1);
    assert_int_equal(ll_parse_ports("65536", ports, &all, err, sizeof(err)), -1);
    assert_int_equal(ll_parse_ports("443x", ports, &all, err, sizeof(err)), -1);
    assert_int_equal(ll_parse_ports("", ports, &all, err, sizeof(err)), 0);
}

static void landlock_files_read_only_view_home_tmp_writable(void **state)
{
    (void)state;
    if (ll_abi(NULL) < 1)
        fail_msg("this test needs a kernel with Landlock (this machine offers ABI 7)");
    sandbox *sb = mk();
    char script[3000];
    snprintf(script, sizeof(script),
             "cat %s/pub/readme; "
             "cat %s/sa/token 2>/dev/null && echo LEAK-TOKEN; "
             "cat %s/pub/sa-link/token 2>/dev/null && echo LEAK-VIA-SYMLINK; "
             "ls %s/pub >/dev/null && echo listed-pub; "
             "ls %s >/dev/null 2>&1 && echo LISTED-POD; "
             "ls %s >/dev/null 2>&1 && echo LISTED-BASE; "
             "cat /etc/passwd >/dev/null && echo read-etc; "
             "cat /proc/self/status >/dev/null && echo read-proc; "
             "echo x > \"$TMPDIR/t\" && echo wrote-tmpdir; "
             "mkdir \"$HOME/d\" && mv \"$TMPDIR/t\" \"$HOME/d/t\" && echo moved; "
             "echo x > /tmp/aurora-ll-probe-$$ 2>/dev/null && echo WROTE-TMP; "
             "echo x > /dev/null && echo wrote-devnull; "
             "head -c 4 /dev/urandom | wc -c; "
             "cp /bin/true \"$HOME/t\" && \"$HOME/t\" 2>/dev/null && echo EXEC-HOME; "
             "/bin/true && echo exec-usr",
             g_pod, g_pod, g_pod, g_pod, g_pod, g_base);
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    result *r = new_result();
    run(sb, argv, NULL, 0, r, 20000);
    assert_string_equal(r->out, "public\nlisted-pub\nread-etc\nread-proc\nwrote-tmpdir\nmoved\n"
                                "wrote-devnull\n4\nexec-usr\n");
    free(r);
    sandbox_destroy(sb);
}

static const char TCP_PY[] =
    "import errno, socket, sys\n"
    "def name(e):\n"
    "    return errno.errorcode.get(e.errno, str(e.errno))\n"
    "for p in sys.argv[1:]:\n"
    "    s = socket.socket()\n"
    "    s.settimeout(5)\n"
    "    try:\n"
    "        s.connect(('127.0.0.1', int(p)))\n"
    "        print('connect', p, 'ok')\n"
    "    except OSError as e:\n"
    "        print('connect', p, name(e))\n"
    "    s.close()\n"
    "s = socket.socket()\n"
    "try:\n"
    "    s.bind(('127.0.0.1', 0))\n"
    "    print('bind ok')\n"
    "except OSError as e:\n"
    "    print('bind', name(e))\n"
    "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "u.sendto(b'x', ('127.0.0.1', int(sys.argv[1])))\n"
    "print('udp ok')\n";

static void landlock_tcp_connect_only_to_allowed_ports(void **state)
{
    (void)state;
    if (ll_abi(NULL) < 4)
        fail_msg("this test needs Landlock ABI 4 (this machine offers ABI 7)");
    sandbox *sb = mk();
    char ok[16], no[16];
    snprintf(ok, sizeof(ok), "%d", g_port_ok);
    snprintf(no, sizeof(no), "%d", g_port_no);
    const char *argv[] = {PY, "-c", TCP_PY, ok, no, NULL};
    result *r = new_result();
    run(sb, argv, NULL, 0, r, 20000);
    char want[300];
    snprintf(want, sizeof(want), "connect %d ok\nconnect %d EACCES\nbind EACCES\nudp ok\n",
             g_port_ok, g_port_no);
    if (strcmp(r->out, want))
        fail_msg("got [%s] [%s], want [%s]", r->out, r->err, want);
    /* an egress proxy the operator configured: its port is reachable */
    char proxy[80];
    snprintf(proxy, sizeof(proxy), "HTTPS_PROXY=http://user:pw@127.0.0.1:%d", g_port_no);
    char *op_env[] = {proxy};
    sandbox_profile pf = {.cli = &cloud_cli_aws, .env = op_env, .nenv = 1};
    run_p(sb, &pf, argv, NULL, 0, r, 20000);
    snprintf(want, sizeof(want), "connect %d ok\nconnect %d ok\n", g_port_ok, g_port_no);
    if (strncmp(r->out, want, strlen(want)))
        fail_msg("with a proxy: got [%s], want [%s…]", r->out, want);
    free(r);
    sandbox_destroy(sb);
}

static void landlock_isolation_reported(void **state)
{
    (void)state;
    int abi = ll_abi(NULL);
    if (abi < 6)
        fail_msg("this test needs Landlock ABI 6 (this machine offers ABI 7)");
    sandbox_isolation is;
    sandbox_get_isolation(&is);
    assert_int_equal(is.landlock_abi, abi);
    assert_true(is.filesystem && is.network && is.scoped);
    assert_int_equal(is.uid_separation, g_root);
    assert_string_equal(is.landlock_mode, "required");
    assert_string_equal(is.degraded, "");
    cJSON *j = sandbox_isolation_json();
    assert_non_null(j);
    assert_int_equal(cJSON_GetObjectItem(j, "landlock_abi")->valueint, abi);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "filesystem")));
    cJSON *ports = cJSON_GetObjectItem(j, "allowed_ports");
    assert_int_equal(cJSON_GetArraySize(ports), 2);
    assert_int_equal(cJSON_GetArrayItem(ports, 0)->valueint, 443);
    assert_int_equal(cJSON_GetArrayItem(ports, 1)->valueint, g_port_ok);
    assert_null(cJSON_GetObjectItem(j, "degraded"));
    cJSON_Delete(j);
    size_t n;
    char *m = metrics_render(&n);
    char line[100];
    snprintf(line, sizeof(line), "\naurora_agent_sandbox_landlock_abi %d\n", abi);
    assert_non_null(strstr(m, line));
    assert_non_null(strstr(m, "\naurora_agent_sandbox_isolation{layer=\"filesystem\"} 1\n"));
    assert_non_null(strstr(m, "\naurora_agent_sandbox_isolation{layer=\"network\"} 1\n"));
    assert_non_null(strstr(m, "\naurora_agent_sandbox_isolation{layer=\"scoped\"} 1\n"));
    free(m);
    char desc[400];
    sandbox_describe(desc, sizeof(desc));
    snprintf(line, sizeof(line), "landlock ABI %d (files, tcp ports, scoped)", abi);
    assert_non_null(strstr(desc, line));
}

/* The agent's own config file is never readable, even below a read-only path. */
static void landlock_agent_config_file_is_never_readable(void **state)
{
    (void)state;
    if (ll_abi(NULL) < 1)
        fail_msg("this test needs a kernel with Landlock (this machine offers ABI 7)");
    char cfg[400], other[400];
    snprintf(cfg, sizeof(cfg), "%s/pub/agent.yaml", g_pod);
    snprintf(other, sizeof(other), "%s/pub/readme", g_pod);
    assert_int_equal(put_file(cfg, "agent:\n  token: aurora_kubectl_from-the-config-file\n", 0644),
                     0);
    sandbox_shutdown();
    char ro[600], range[64];
    snprintf(ro, sizeof(ro), "%s,%s", SANDBOX_DEFAULT_READONLY_PATHS, g_pod);
    snprintf(range, sizeof(range), "%s", g_uid_range);
    sandbox_config c = {.dir = g_base, .uid_range = range, .nofile = 64, .nproc = -1,
                        .landlock = "required", .readonly_paths = ro, .config_file = cfg};
    char err[400];
    if (sandbox_init(&c, err, sizeof(err)) != 0)
        fail_msg("sandbox_init: %s", err);
    assert_false(sandbox_path_readable(cfg));
    assert_true(sandbox_path_readable(other));
    sandbox *sb = mk();
    result *r = new_result();
    const char *argv[] = {"/bin/cat", cfg, other, NULL};
    run(sb, argv, NULL, 0, r, 10000);
    assert_string_equal(r->out, "public\n");
    assert_null(strstr(r->out, "from-the-config-file"));
    assert_non_null(strstr(r->err, "Permission denied"));
    free(r);
    sandbox_destroy(sb);
    sandbox_shutdown();
    unlink(cfg);
    assert_int_equal(init_sandbox("required", g_uid_range), 0); /* back to the suite's */
}

/* ---- the CLI plug-ins' version probes ---------------------------------------------- */

static void mkdirs(const char *path)
{
    char p[600];
    snprintf(p, sizeof(p), "%s", path);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            mkdir(p, 0755);
            *s = '/';
        }
    mkdir(p, 0755);
}

static void cli_version_probes(void **state)
{
    (void)state;
    char t[] = "/tmp/aurora-probe-XXXXXX";
    assert_non_null(mkdtemp(t));
    char p[600], q[600];
    cloud_cli_version v;
    /* gcloud: the SDK's VERSION file */
    snprintf(p, sizeof(p), "%s/google-cloud-sdk/bin", t);
    mkdirs(p);
    snprintf(p, sizeof(p), "%s/google-cloud-sdk/bin/gcloud", t);
    assert_int_equal(put_file(p, "#!/bin/sh\n", 0755), 0);
    snprintf(q, sizeof(q), "%s/google-cloud-sdk/VERSION", t);
    assert_int_equal(put_file(q, "999.1.0\n", 0644), 0);
    memset(&v, 0, sizeof(v));
    cloud_cli_gcloud.probe(p, &v);
    assert_string_equal(v.version, "999.1.0");
    assert_string_equal(v.note, "");
    /* az: azure-cli and msal beside its Python (a venv-like prefix) */
    snprintf(p, sizeof(p), "%s/py/bin", t);
    mkdirs(p);
    snprintf(p, sizeof(p), "%s/py/bin/python3", t);
    assert_int_equal(put_file(p, "", 0755), 0);
    snprintf(p, sizeof(p), "%s/py/lib/python3.11/site-packages/azure_cli-2.45.0.dist-info", t);
    mkdirs(p);
    snprintf(q, sizeof(q), "%s/py/lib/python3.11/site-packages/msal-1.21.0.dist-info", t);
    mkdirs(q);
    char az[600], body[800];
    snprintf(az, sizeof(az), "%s/az", t);
    snprintf(body, sizeof(body), "#!%s/py/bin/python3\nimport runpy\n", t);
    assert_int_equal(put_file(az, body, 0755), 0);
    memset(&v, 0, sizeof(v));
    cloud_cli_az.probe(az, &v);
    assert_string_equal(v.version, "2.45.0");
    assert_string_equal(v.detail, "msal 1.21.0");
    assert_string_equal(v.note, ""); /* the tested pair: nothing to say */
    /* another MSAL: said clearly */
    char q2[600];
    snprintf(q2, sizeof(q2), "%s/py/lib/python3.11/site-packages/msal-1.31.1.dist-info", t);
    assert_int_equal(rename(q, q2), 0);
    memset(&v, 0, sizeof(v));
    cloud_cli_az.probe(az, &v);
    assert_string_equal(v.detail, "msal 1.31.1");
    assert_non_null(strstr(v.note, "az 2.45.0 with MSAL 1.31.1 is not the tested"));
    assert_non_null(strstr(v.note, "az login"));
    /* no MSAL to be found: said too */
    assert_int_equal(rmdir(q2), 0);
    memset(&v, 0, sizeof(v));
    cloud_cli_az.probe(az, &v);
    assert_non_null(strstr(v.note, "cannot tell which MSAL"));
    /* a shell wrapper naming its Python (Microsoft's package) */
    snprintf(body, sizeof(body), "#!/usr/bin/env bash\n%s/py/bin/python3 -Im azure.cli \"$@\"\n",
             t);
    assert_int_equal(put_file(az, body, 0755), 0);
    memset(&v, 0, sizeof(v));
    cloud_cli_az.probe(az, &v);
    assert_string_equal(v.version, "2.45.0");
    /* aws: v2's installer layout, and Debian's egg-info */
    snprintf(p, sizeof(p), "%s/aws-cli/v2/2.15.1/dist", t);
    mkdirs(p);
    snprintf(p, sizeof(p), "%s/aws-cli/v2/2.15.1/dist/aws", t);
    assert_int_equal(put_file(p, "\x7f" "ELF", 0755), 0);
    memset(&v, 0, sizeof(v));
    cloud_cli_aws.probe(p, &v);
    assert_string_equal(v.version, "2.15.1");
    snprintf(p, sizeof(p), "%s/py/lib/python3/dist-packages/awscli-2.9.19.egg-info", t);
    mkdirs(p);
    snprintf(p, sizeof(p), "%s/aws", t);
    snprintf(body, sizeof(body), "#!%s/py/bin/python3\n", t);
    assert_int_equal(put_file(p, body, 0755), 0);
    memset(&v, 0, sizeof(v));
    cloud_cli_aws.probe(p, &v);
    assert_string_equal(v.version, "2.9.19");
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", t);
    assert_int_equal(system(cmd), 0);

    /* the real CLIs of this machine (Debian's az, Google's gcloud), in register */
    if (access("/usr/bin/gcloud", X_OK) || access("/usr/bin/az", X_OK))
        fail_msg("the real gcloud and az are needed (/usr/bin)");
    agent_cloud c;
    char err[300];
    assert_int_equal(agent_cloud_init(&c, NULL, "gcloud=/usr/bin/gcloud,az=/usr/bin/az", NULL,
                                      NULL, err, sizeof(err)),
                     0);
    agent_cloud_probe(&c);
    cJSON *j = agent_cloud_json(&c);
    cJSON *vs = cJSON_GetObjectItem(j, "versions");
    char want[64] = "";
    char *sdk = realpath("/usr/bin/gcloud", NULL);
    assert_non_null(sdk);
    *strrchr(sdk, '/') = '\0';
    *strrchr(sdk, '/') = '\0';
    snprintf(p, sizeof(p), "%s/VERSION", sdk);
    free(sdk);
    assert_int_equal(cloud_cli_first_line(p, want, sizeof(want)), 0);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(vs, "gcloud"), "version")->valuestring,
                        want);
    cJSON *azv = cJSON_GetObjectItem(vs, "az");
    assert_string_not_equal(cJSON_GetObjectItem(azv, "version")->valuestring, "unknown");
    assert_int_equal(strncmp(cJSON_GetObjectItem(azv, "detail")->valuestring, "msal ", 5), 0);
    cJSON *sbx = cJSON_GetObjectItem(j, "sandbox");
    assert_non_null(sbx);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(sbx, "filesystem")));
    cJSON_Delete(j);
    agent_cloud_free(&c);
}

static void spawn_failures_are_reported(void **state)
{
    (void)state;
    sandbox *sb = mk();
    char err[300] = "";
    int o[2];
    assert_int_equal(pipe2(o, O_CLOEXEC), 0);
    const char *argv[] = {"/nonexistent/gcloud", NULL};
    pid_t pid = sandbox_spawn(sb, NULL, argv[0], (char *const *)argv, NULL, 0, o[1], o[1], err,
                              sizeof(err));
    assert_int_equal(pid, -1);
    assert_non_null(strstr(err, "executing failed: No such file or directory"));
    const char *rel[] = {"gcloud", NULL};
    assert_int_equal(sandbox_spawn(sb, NULL, rel[0], (char *const *)rel, NULL, 0, o[1], o[1], err,
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

/* In a child running as uid/gid 65534 (as the chart's non-root agent
 * runs: no uid separation): a sandbox with Landlock mode `landlock`, command
 * A holding a secret in its HOME and environment, command B trying to read
 * them and to signal A.  B's output goes to out; returns the child's exit
 * status (0 when it ran). */
static int peek_as_nobody(const char *landlock, char *out, size_t outlen)
{
    char base[] = "/tmp/aurora-sbxnobody-XXXXXX";
    assert_non_null(mkdtemp(base));
    assert_int_equal(chown(base, 65534, 65534), 0);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* no cmocka in here: plain system calls and exit codes */
        close(p[0]);
        if (syscall(SYS_setgroups, 0, NULL) || setresgid(65534, 65534, 65534) ||
            setresuid(65534, 65534, 65534))
            _exit(10);
        sandbox_shutdown();
        sandbox_config c = {.dir = base, .uid_range = "off", .nofile = 64, .nproc = -1,
                            .landlock = landlock};
        char err[400];
        if (sandbox_init(&c, err, sizeof(err)) != 0) {
            ssize_t w = write(p[1], err, strlen(err));
            (void)w;
            _exit(11);
        }
        sandbox *a = sandbox_create(err, sizeof(err)), *b = sandbox_create(err, sizeof(err));
        int ao[2];
        if (!a || !b || pipe2(ao, O_CLOEXEC))
            _exit(12);
        char *env_a[] = {"AWS_SECRET_ACCESS_KEY=secret-of-command-a"};
        const char *argv_a[] = {"/bin/sh", "-c",
                                "echo top-secret > $HOME/secret; echo ready; exec sleep 30", NULL};
        pid_t pa = sandbox_spawn(a, NULL, argv_a[0], (char *const *)argv_a, env_a, 1, ao[1],
                                 ao[1], err, sizeof(err));
        close(ao[1]);
        char buf[16];
        if (pa < 0 || read(ao[0], buf, sizeof(buf)) <= 0)
            _exit(13);
        char script[1200];
        snprintf(script, sizeof(script),
                 "cat %s/secret 2>/dev/null && echo READ-HOME; "
                 "tr '\\0' '\\n' 2>/dev/null < /proc/%d/environ | grep -q secret-of-command-a && "
                 "echo READ-ENVIRON; "
                 "kill -0 %d 2>/dev/null && echo SIGNALLED; echo done",
                 sandbox_home(a), (int)pa, (int)pa);
        const char *argv_b[] = {"/bin/sh", "-c", script, NULL};
        pid_t pb = sandbox_spawn(b, NULL, argv_b[0], (char *const *)argv_b, NULL, 0, p[1], p[1],
                                 err, sizeof(err));
        if (pb < 0)
            _exit(14);
        close(p[1]);
        int st;
        waitpid(pb, &st, 0);
        kill(-pa, SIGKILL);
        waitpid(pa, &st, 0);
        sandbox_destroy(b);
        sandbox_destroy(a);
        sandbox_shutdown();
        _exit(0);
    }
    close(p[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < outlen && (r = read(p[0], out + n, outlen - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(p[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
    int rc = system(cmd);
    (void)rc;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

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

    /* one uid for both commands, not root (the chart's agent runs as uid
     * 1000): Landlock keeps them apart; without it nothing does */
    if (ll_abi(NULL) < 6)
        fail_msg("this test needs Landlock ABI 6 (this machine offers ABI 7)");
    char out[4096];
    int pst = peek_as_nobody("required", out, sizeof(out));
    if (pst != 0 || strcmp(out, "done\n"))
        fail_msg("landlock on: status %d, B saw [%s]", pst, out);
    pst = peek_as_nobody("off", out, sizeof(out));
    if (pst != 0 || !strstr(out, "top-secret\nREAD-HOME\nREAD-ENVIRON\nSIGNALLED\ndone\n"))
        fail_msg("landlock off: status %d, B saw [%s]", pst, out);
    /* and the agent says so */
    sandbox_shutdown();
    c.landlock = "off";
    if (sandbox_init(&c, err, sizeof(err)) != 0)
        fail_msg("sandbox_init(landlock off): %s", err);
    sandbox_isolation is;
    sandbox_get_isolation(&is);
    assert_false(is.filesystem || is.network || is.scoped);
    assert_non_null(strstr(is.degraded, "AURORA_SANDBOX_LANDLOCK=off"));
    cJSON *j = sandbox_isolation_json();
    assert_non_null(strstr(cJSON_GetObjectItem(j, "degraded")->valuestring, "turned off"));
    cJSON_Delete(j);
    char *m = metrics_render(NULL);
    assert_non_null(strstr(m, "\naurora_agent_sandbox_isolation{layer=\"filesystem\"} 0\n"));
    free(m);
    sandbox_describe(out, sizeof(out));
    assert_non_null(strstr(out, "no landlock"));
    sandbox_shutdown();
    c.landlock = NULL;
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
    bad = c;
    bad.landlock = "sometimes";
    assert_int_equal(sandbox_init(&bad, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "AURORA_SANDBOX_LANDLOCK"));
    bad = c;
    bad.allowed_ports = "443,http";
    assert_int_equal(sandbox_init(&bad, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "AURORA_SANDBOX_ALLOWED_PORTS"));
    bad = c;
    bad.readonly_paths = "/usr,lib";
    assert_int_equal(sandbox_init(&bad, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "AURORA_SANDBOX_READONLY_PATHS"));
    /* not initialised: a clear error instead of a command */
    sandbox_set_unavailable("test: broken on purpose");
    assert_null(sandbox_create(err, sizeof(err)));
    assert_non_null(strstr(err, "broken on purpose"));
    sandbox_set_unavailable("");
}

/* Cleanup as the owner of a tree, not root (shared-uid mode): a directory
 * a command made unreadable (mode 000) is given its permissions back through
 * a descriptor of the directory itself (O_PATH, never a name a symlink could
 * be swapped into) and removed; a symlink beside it to a file outside is
 * removed, its target's mode untouched. */
static void unreadable_dirs_removed_without_root(void **state)
{
    (void)state;
    char base[] = "/tmp/aurora-test-rm-XXXXXX";
    assert_non_null(mkdtemp(base));
    assert_int_equal(chmod(base, 0755), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* the child becomes nobody and builds and removes its own tree */
        if (chown(base, 65534, 65534) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
            _exit(10);
        char p[256];
        snprintf(p, sizeof(p), "%s/victim", base);
        int v = open(p, O_CREAT | O_WRONLY | O_EXCL, 0600);
        if (v < 0)
            _exit(11);
        close(v);
        snprintf(p, sizeof(p), "%s/t", base);
        if (mkdir(p, 0700) != 0)
            _exit(12);
        snprintf(p, sizeof(p), "%s/t/a", base);
        if (mkdir(p, 0700) != 0)
            _exit(13);
        snprintf(p, sizeof(p), "%s/t/a/f", base);
        v = open(p, O_CREAT | O_WRONLY | O_EXCL, 0600);
        if (v < 0)
            _exit(14);
        close(v);
        char target[256];
        snprintf(target, sizeof(target), "%s/victim", base);
        snprintf(p, sizeof(p), "%s/t/link", base);
        if (symlink(target, p) != 0)
            _exit(15);
        snprintf(p, sizeof(p), "%s/t/a", base);
        if (chmod(p, 0) != 0)
            _exit(16);
        int bfd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (bfd < 0 || sandbox_rmtree_at(bfd, "t") != 0)
            _exit(17);
        struct stat st;
        if (fstatat(bfd, "t", &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT)
            _exit(18);
        if (fstatat(bfd, "victim", &st, 0) != 0 || (st.st_mode & 07777) != 0600)
            _exit(19);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    char victim[256];
    snprintf(victim, sizeof(victim), "%s/victim", base);
    assert_int_equal(unlink(victim), 0);
    assert_int_equal(rmdir(base), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(env_is_allowlist_plus_injected),
        cmocka_unit_test(server_env_is_an_allowlist_per_cli),
        cmocka_unit_test(arguments_naming_process_files_are_refused),
        cmocka_unit_test(operator_env_per_cli),
        cmocka_unit_test(cloud_policy_programs_and_printers),
        cmocka_unit_test(dir_is_private_and_removed),
        cmocka_unit_test(dir_removed_after_kill_and_escapees_killed),
        cmocka_unit_test(stale_dirs_of_a_killed_agent_are_removed_at_start),
        cmocka_unit_test(dir_swept_before_it_is_opened_is_made_again),
        cmocka_unit_test(az_token_cache_leaves_no_copy_in_freed_memory),
        cmocka_unit_test(orphan_scan_spares_the_runners_children),
        cmocka_unit_test(symlinks_are_not_followed_on_cleanup),
        cmocka_unit_test(unreadable_dirs_removed_without_root),
        cmocka_unit_test(rlimits_uid_nnp_seccomp_applied),
        cmocka_unit_test(signals_reach_the_cloud_command_at_their_defaults),
        cmocka_unit_test(seccomp_refuses_dangerous_syscalls),
        cmocka_unit_test(fork_bomb_memory_hog_and_big_file_are_contained),
        cmocka_unit_test(no_writes_outside_and_no_peeking_at_other_commands),
        cmocka_unit_test(spawn_failures_are_reported),
        cmocka_unit_test(landlock_defaults_keep_the_service_account_token_out),
        cmocka_unit_test(landlock_files_read_only_view_home_tmp_writable),
        cmocka_unit_test(landlock_tcp_connect_only_to_allowed_ports),
        cmocka_unit_test(landlock_isolation_reported),
        cmocka_unit_test(landlock_agent_config_file_is_never_readable),
        cmocka_unit_test(cli_version_probes),
#if defined(__x86_64__) /* x32 is an x86_64 ABI */
        cmocka_unit_test(foreign_abi_system_calls_kill_the_process),
#endif
        cmocka_unit_test(shared_uid_mode), /* last: re-initialises the sandbox */
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
