/* moto_harness.h — a real moto_server (the AWS emulator from the image's
 * Python, on PATH) for unit tests, on 127.0.0.1:<free port>.
 *
 * It is started with request authentication ON: moto then checks every
 * request's SigV4 signature against IAM access keys it knows and evaluates
 * IAM policies, so the tests exercise libcurl's signing for real.  The first
 * INITIAL_NO_AUTH_ACTION_COUNT actions are let through unsigned; they create
 *   - user "aurora" with an access key and a policy allowing secretsmanager:*
 *   - user "nopolicy" with an access key and no policy (AccessDenied).
 *   - role "aurora-irsa" with a policy allowing secretsmanager:*, and role
 *     "aurora-irsa-nopolicy" without one: the roles a web identity assumes
 *     (MOTO_ROLE_ARN, MOTO_ROLE_NOPOLICY_ARN).  moto requires every STS call
 *     to be signed while auth is on, so the test fixture that stands in for
 *     STS's unsigned AssumeRoleWithWebIdentity forwards it signed with user
 *     "aurora"'s key (its policy also allows sts:AssumeRoleWithWebIdentity).
 */
#ifndef AURORA_TEST_MOTO_HARNESS_H
#define AURORA_TEST_MOTO_HARNESS_H

#include <curl/curl.h>

#include "proc_harness.h"

#define MOTO_ROLE_ARN "arn:aws:iam::123456789012:role/aurora-irsa"
#define MOTO_ROLE_NOPOLICY_ARN "arn:aws:iam::123456789012:role/aurora-irsa-nopolicy"

typedef struct {
    pid_t pid;
    int port;
    char endpoint[64];
    char key_id[64], secret[128];             /* allowed */
    char nopol_key_id[64], nopol_secret[128]; /* denied */
    char log[160];
} moto_server_t;

typedef struct {
    char *data;
    size_t len;
} moto_buf;

static inline size_t moto_sink(char *p, size_t sz, size_t n, void *ud)
{
    moto_buf *b = ud;
    char *nd = realloc(b->data, b->len + sz * n + 1);
    if (!nd)
        return 0;
    b->data = nd;
    memcpy(b->data + b->len, p, sz * n);
    b->len += sz * n;
    b->data[b->len] = '\0';
    return sz * n;
}

/* One IAM query-protocol action; the answer's XML in a malloc'd string. */
static inline char *moto_iam(const moto_server_t *m, const char *form)
{
    CURL *c = curl_easy_init();
    if (!c)
        return NULL;
    moto_buf b = { 0 };
    curl_easy_setopt(c, CURLOPT_URL, m->endpoint);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, "aws:amz:us-east-1:iam");
    curl_easy_setopt(c, CURLOPT_USERPWD, "AKIAIOSFODNN7EXAMPLE:bootstrap");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, moto_sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L); /* moto's first IAM call loads every managed policy */
    long status = 0;
    if (curl_easy_perform(c) != CURLE_OK ||
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status != 200) {
        fprintf(stderr, "moto_harness: IAM %s: HTTP %ld %s\n", form, status, b.data ? b.data : "");
        free(b.data);
        b.data = NULL;
    }
    curl_easy_cleanup(c);
    return b.data;
}

static inline int moto_xml(const char *xml, const char *tag, char *out, size_t cap)
{
    char open[48], close[48];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    const char *a = xml ? strstr(xml, open) : NULL;
    const char *b = a ? strstr(a, close) : NULL;
    if (!a || !b)
        return -1;
    a += strlen(open);
    snprintf(out, cap, "%.*s", (int)(b - a), a);
    return 0;
}

static inline int moto_user(moto_server_t *m, const char *user, char *id, size_t idcap,
                            char *secret, size_t scap)
{
    char form[256];
    snprintf(form, sizeof(form), "Action=CreateUser&UserName=%s&Version=2010-05-08", user);
    char *x = moto_iam(m, form);
    if (!x)
        return -1;
    free(x);
    snprintf(form, sizeof(form), "Action=CreateAccessKey&UserName=%s&Version=2010-05-08", user);
    x = moto_iam(m, form);
    int rc = x && moto_xml(x, "AccessKeyId", id, idcap) == 0 &&
                     moto_xml(x, "SecretAccessKey", secret, scap) == 0
                 ? 0
                 : -1;
    free(x);
    return rc;
}

static inline int moto_start(moto_server_t *m, const char *logdir)
{
    memset(m, 0, sizeof(*m));
    m->pid = -1;
    for (int attempt = 0; attempt < 3 && m->pid < 0; attempt++) {
        /* The port stays held until moto listens on it: moto takes seconds
         * to start, and a port that was merely free could meanwhile go to
         * a server of another test binary, which the wait below would then
         * take for moto. */
        int hold = -1;
        m->port = ph_hold_port(0, &hold, 1);
        if (m->port < 0)
            return -1;
        char port[16];
        snprintf(port, sizeof(port), "%d", m->port);
        snprintf(m->log, sizeof(m->log), "%s/moto.log", logdir);
        const char *argv[] = { "moto_server", "-H", "127.0.0.1", "-p", port, NULL };
        /* Eight unsigned actions: the IAM set-up below; then every request
         * must carry a valid signature. */
        const char *env[] = { "INITIAL_NO_AUTH_ACTION_COUNT=8", NULL };
        ph_opts o = { .log_path = m->log, .env = env };
        m->pid = ph_spawn(argv, &o, NULL);
        if (m->pid < 0) {
            close(hold);
            return -1;
        }
        snprintf(m->endpoint, sizeof(m->endpoint), "http://127.0.0.1:%d", m->port);
        int status;
        /* moto_server imports for seconds of CPU: minutes when the CPUs are shared */
        long long end = ph_now_ms() + 120000;
        int up = 0;
        while (!up && ph_now_ms() < end) {
            if (waitpid(m->pid, &status, WNOHANG) == m->pid) { /* died at start: try again */
                m->pid = -1;
                break;
            }
            up = ph_wait_tcp(m->port, 100);
        }
        close(hold);
        if (m->pid > 0 && !up) {
            ph_stop(m->pid, SIGTERM, 5000);
            m->pid = -1;
            return -1;
        }
    }
    if (m->pid < 0)
        return -1;
    char form[1024];
    if (moto_user(m, "aurora", m->key_id, sizeof(m->key_id), m->secret, sizeof(m->secret)) < 0)
        return -1;
    snprintf(form, sizeof(form),
             "Action=PutUserPolicy&UserName=aurora&PolicyName=secrets&Version=2010-05-08"
             "&PolicyDocument=%s",
             "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22"
             "Allow%22%2C%22Action%22%3A%5B%22secretsmanager%3A%2A%22%2C%22"
             "sts%3AAssumeRoleWithWebIdentity%22%5D%2C%22Resource%22%3A%22%2A%22"
             "%7D%5D%7D");
    char *x = moto_iam(m, form);
    if (!x)
        return -1;
    free(x);
    /* Trust policy: the cluster's OIDC provider (moto does not check it for
     * AssumeRoleWithWebIdentity; real IAM does). */
    static const char trust[] =
        "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22"
        "Allow%22%2C%22Principal%22%3A%7B%22Federated%22%3A%22arn%3Aaws%3Aiam%3A%3A"
        "123456789012%3Aoidc-provider%2Foidc.eks.us-east-1.amazonaws.com%2Fid%2FTEST%22%7D%2C"
        "%22Action%22%3A%22sts%3AAssumeRoleWithWebIdentity%22%7D%5D%7D";
    const char *roles[] = { "aurora-irsa", "aurora-irsa-nopolicy" };
    for (int i = 0; i < 2; i++) {
        snprintf(form, sizeof(form),
                 "Action=CreateRole&RoleName=%s&Version=2010-05-08&AssumeRolePolicyDocument=%s",
                 roles[i], trust);
        if (!(x = moto_iam(m, form)))
            return -1;
        free(x);
    }
    snprintf(form, sizeof(form),
             "Action=PutRolePolicy&RoleName=aurora-irsa&PolicyName=secrets&Version=2010-05-08"
             "&PolicyDocument=%s",
             "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22"
             "Allow%22%2C%22Action%22%3A%22secretsmanager%3A%2A%22%2C%22Resource%22%3A%22%2A%22"
             "%7D%5D%7D");
    if (!(x = moto_iam(m, form)))
        return -1;
    free(x);
    return moto_user(m, "nopolicy", m->nopol_key_id, sizeof(m->nopol_key_id), m->nopol_secret,
                     sizeof(m->nopol_secret));
}

static inline void moto_stop(moto_server_t *m)
{
    if (m->pid > 0)
        ph_stop(m->pid, SIGTERM, 5000);
    m->pid = -1;
}

#endif
