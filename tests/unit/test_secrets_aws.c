/* test_secrets_aws.c — the AWS Secrets Manager backend (server/secrets_aws.c)
 * against a real moto_server started by this binary (moto_harness.h), with
 * request authentication on: every call is SigV4-signed by libcurl and
 * verified by moto against IAM keys and policies.
 *
 * moto cannot be told to throttle, so the throttling and server-error tests
 * go through tests/fixtures/aws_fault_proxy.py, a pass-through proxy in front
 * of the same moto_server that answers chosen requests with AWS's
 * ThrottlingException / InternalServiceError responses and forwards the rest
 * unchanged.  The guide's `aws secretsmanager create-secret --secret-string
 * file://…pem` case uses the real aws CLI against moto. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moto_harness.h"
#include "secrets.h"

static const char PEM[] = "-----BEGIN RSA PRIVATE KEY-----\n"
                          "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
                          "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
                          "LxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW/VDL5AaWTg0nLVkjRo\n"
                          "-----END RSA PRIVATE KEY-----\n";

static moto_server_t M;
static char DIR_[64];
static pid_t proxy_pid = -1;
static int proxy_port;
static char proxy_endpoint[64];

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(DIR_, sizeof(DIR_), "/tmp/aurora-aws-XXXXXX");
    if (!mkdtemp(DIR_))
        return -1;
    if (moto_start(&M, DIR_) < 0) {
        char *log = ph_slurp(M.log, NULL);
        fprintf(stderr, "moto_server did not start:\n%s\n", log ? log : "");
        free(log);
        return -1;
    }
    char script[1024], log[128];
    if (ph_fixture_path("aws_fault_proxy.py", script, sizeof(script)) < 0)
        return -1;
    snprintf(log, sizeof(log), "%s/proxy.log", DIR_);
    const char *argv[] = { ph_python(), script, "--upstream", M.endpoint, NULL };
    proxy_pid = ph_start_port_fixture(argv, log, &proxy_port);
    if (proxy_pid < 0)
        return -1;
    snprintf(proxy_endpoint, sizeof(proxy_endpoint), "http://127.0.0.1:%d", proxy_port);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (proxy_pid > 0)
        ph_stop(proxy_pid, SIGTERM, 5000);
    moto_stop(&M);
    ph_rmtree(DIR_);
    curl_global_cleanup();
    return 0;
}

static secrets_config cfg(const char *endpoint)
{
    secrets_config c = { .backend = "aws_secrets_manager",
                         .aws_region = "us-east-1",
                         .aws_endpoint = endpoint ? endpoint : M.endpoint,
                         .aws_access_key_id = M.key_id,
                         .aws_secret_access_key = M.secret,
                         .timeout_ms = 5000 };
    return c;
}

static secrets_t *open_ok(const secrets_config *c)
{
    secrets_t *s = NULL;
    char err[512] = "";
    if (secrets_open(c, &s, err, sizeof(err)) != SECRETS_OK)
        fail_msg("open: %s", err);
    return s;
}

static void put_ok(secrets_t *s, const char *path, const void *v, size_t n)
{
    char err[512];
    if (secrets_put(s, path, v, n, err, sizeof(err)) != SECRETS_OK)
        fail_msg("put %s: %s", path, err);
}

static void expect_secret(secrets_t *s, const char *path, const void *v, size_t n)
{
    unsigned char *got = NULL;
    size_t len = 0;
    char err[512];
    if (secrets_get(s, path, &got, &len, err, sizeof(err)) != SECRETS_OK)
        fail_msg("get %s: %s", path, err);
    assert_int_equal(len, n);
    assert_memory_equal(got, v, n);
    secrets_free(got, len);
}

static void expect_get_error(secrets_t *s, const char *path, int rc, const char *needle)
{
    unsigned char *got = NULL;
    size_t len = 0;
    char err[512] = "";
    int r = secrets_get(s, path, &got, &len, err, sizeof(err));
    if (r != rc)
        fail_msg("get %s: rc %d (%s), wanted %d", path, r, err, rc);
    assert_null(got);
    assert_non_null(strstr(err, "aws_secrets_manager"));
    assert_non_null(strstr(err, path));
    if (needle && !strstr(err, needle))
        fail_msg("error \"%s\" lacks \"%s\"", err, needle);
}

/* Runs the real aws CLI against moto with the allowed user's key. */
static int aws_cli(const char *const args[])
{
    const char *argv[24] = { "aws", "secretsmanager" };
    size_t n = 2;
    for (size_t i = 0; args[i] && n < 18; i++)
        argv[n++] = args[i];
    argv[n++] = "--region";
    argv[n++] = "us-east-1";
    argv[n++] = "--endpoint-url";
    argv[n++] = M.endpoint;
    argv[n] = NULL;
    char id[96], key[160], log[128];
    snprintf(id, sizeof(id), "AWS_ACCESS_KEY_ID=%s", M.key_id);
    snprintf(key, sizeof(key), "AWS_SECRET_ACCESS_KEY=%s", M.secret);
    snprintf(log, sizeof(log), "%s/aws-cli.log", DIR_);
    const char *env[] = { id, key, "AWS_PAGER=", "AWS_CONFIG_FILE=/dev/null",
                          "AWS_SHARED_CREDENTIALS_FILE=/dev/null", NULL };
    ph_opts o = { .log_path = log, .env = env };
    return ph_run(argv, &o, 60000);
}

static void proxy_fault(int status, const char *type, int count, const char *target)
{
    CURL *c = curl_easy_init();
    char url[128], body[256];
    snprintf(url, sizeof(url), "%s/_fixture/fail", proxy_endpoint);
    snprintf(body, sizeof(body), "{\"status\":%d,\"type\":\"%s\",\"count\":%d%s%s%s}", status, type,
             count, target ? ",\"target\":\"" : "", target ? target : "", target ? "\"" : "");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, moto_sink);
    moto_buf b = { 0 };
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    free(b.data);
    curl_easy_cleanup(c);
}

/* ---- tests ------------------------------------------------------------------------------------ */

static void test_roundtrip_signed(void **state)
{
    (void)state;
    secrets_config c = cfg(NULL);
    secrets_t *s = open_ok(&c);
    put_ok(s, "aurora/rt/system/github-app/private-key", PEM, strlen(PEM));
    expect_secret(s, "aurora/rt/system/github-app/private-key", PEM, strlen(PEM));
    /* Update (PutSecretValue on an existing name). */
    put_ok(s, "aurora/rt/webhook", "first", 5);
    put_ok(s, "aurora/rt/webhook", "second", 6);
    expect_secret(s, "aurora/rt/webhook", "second", 6);
    /* Binary bytes: a SecretBinary. */
    const unsigned char bin[] = { 0, 0xff, 0xfe, 0, 'x', 0x80 };
    put_ok(s, "aurora/rt/bin", bin, sizeof(bin));
    expect_secret(s, "aurora/rt/bin", bin, sizeof(bin));
    /* The largest value allowed, as text. */
    char *big = malloc(SECRETS_MAX_VALUE);
    assert_non_null(big);
    for (size_t i = 0; i < SECRETS_MAX_VALUE; i++)
        big[i] = (char)('a' + i % 26);
    put_ok(s, "aurora/rt/big", big, SECRETS_MAX_VALUE);
    expect_secret(s, "aurora/rt/big", big, SECRETS_MAX_VALUE);
    free(big);

    char **l = NULL;
    size_t n = 0;
    char err[512];
    assert_int_equal(secrets_list(s, "aurora/rt/", &l, &n, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(n, 4);
    assert_string_equal(l[0], "aurora/rt/big");
    assert_string_equal(l[3], "aurora/rt/webhook");
    secrets_list_free(l, n);
    assert_int_equal(secrets_list(s, "aurora/rt/w", &l, &n, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(n, 1);
    secrets_list_free(l, n);

    /* Deleted without a recovery window: gone at once, name reusable. */
    assert_int_equal(secrets_delete(s, "aurora/rt/webhook", err, sizeof(err)), SECRETS_OK);
    expect_get_error(s, "aurora/rt/webhook", SECRETS_NOT_FOUND, "ResourceNotFoundException");
    assert_int_equal(secrets_delete(s, "aurora/rt/webhook", err, sizeof(err)), SECRETS_OK);
    put_ok(s, "aurora/rt/webhook", "third", 5);
    expect_secret(s, "aurora/rt/webhook", "third", 5);
    secrets_close(s);
}

/* The guide: `aws secretsmanager create-secret --name … --secret-string
 * file:///abs/key.pem` — the backend reads back exactly the file's bytes;
 * and put-secret-value file:// for an update. */
static void test_guide_file_pem(void **state)
{
    (void)state;
    char pem_path[128], arg[160];
    snprintf(pem_path, sizeof(pem_path), "%s/app-private-key.pem", DIR_);
    FILE *f = fopen(pem_path, "w");
    assert_non_null(f);
    fputs(PEM, f);
    fclose(f);
    snprintf(arg, sizeof(arg), "file://%s", pem_path); /* file:///tmp/… */
    const char *create[] = { "create-secret", "--name", SECRETS_PATH_GITHUB_APP_PRIVATE_KEY,
                             "--secret-string", arg, NULL };
    assert_int_equal(aws_cli(create), 0);
    const char *hook[] = { "create-secret", "--name", SECRETS_PATH_GITHUB_APP_WEBHOOK_SECRET,
                           "--secret-string", "4c1f9a0b2d", NULL };
    assert_int_equal(aws_cli(hook), 0);

    secrets_config c = cfg(NULL);
    secrets_t *s = open_ok(&c);
    expect_secret(s, SECRETS_PATH_GITHUB_APP_PRIVATE_KEY, PEM, strlen(PEM));
    expect_secret(s, SECRETS_PATH_GITHUB_APP_WEBHOOK_SECRET, "4c1f9a0b2d", 10);

    /* Rotated with put-secret-value file://…: the new bytes, newlines kept. */
    f = fopen(pem_path, "w");
    assert_non_null(f);
    fputs("-----BEGIN RSA PRIVATE KEY-----\nNEWKEY\n-----END RSA PRIVATE KEY-----\n", f);
    fclose(f);
    const char *update[] = { "put-secret-value", "--secret-id", SECRETS_PATH_GITHUB_APP_PRIVATE_KEY,
                             "--secret-string", arg, NULL };
    assert_int_equal(aws_cli(update), 0);
    const char *pem2 = "-----BEGIN RSA PRIVATE KEY-----\nNEWKEY\n-----END RSA PRIVATE KEY-----\n";
    expect_secret(s, SECRETS_PATH_GITHUB_APP_PRIVATE_KEY, pem2, strlen(pem2));
    secrets_close(s);
}

static void test_denied(void **state)
{
    (void)state;
    /* A wrong secret key: moto recomputes the signature and refuses it. */
    secrets_config c = cfg(NULL);
    c.aws_secret_access_key = "not-the-secret-key";
    secrets_t *s = open_ok(&c);
    char err[512] = "";
    const char *value = "AWS-VALUE-NOT-IN-ERRORS";
    assert_int_equal(secrets_put(s, "aurora/denied/1", value, strlen(value), err, sizeof(err)),
                     SECRETS_E_DENIED);
    assert_non_null(strstr(err, "SignatureDoesNotMatch"));
    assert_non_null(strstr(err, "aurora/denied/1"));
    assert_null(strstr(err, value));
    secrets_close(s);
    /* A valid key without a policy: AccessDenied. */
    c = cfg(NULL);
    c.aws_access_key_id = M.nopol_key_id;
    c.aws_secret_access_key = M.nopol_secret;
    s = open_ok(&c);
    expect_get_error(s, "aurora/denied/1", SECRETS_E_DENIED, "AccessDenied");
    secrets_close(s);
}

static void test_throttling_and_server_errors(void **state)
{
    (void)state;
    secrets_config c = cfg(proxy_endpoint);
    secrets_t *s = open_ok(&c);
    put_ok(s, "aurora/thr/a", "original", 8); /* through the proxy to moto */

    /* Two throttled answers: retried with backoff, then served. */
    proxy_fault(400, "ThrottlingException", 2, "secretsmanager.GetSecretValue");
    expect_secret(s, "aurora/thr/a", "original", 8);

    /* Throttled on every attempt: a clear error, nothing written, the value
     * before is intact, and the value is not in the message. */
    proxy_fault(400, "ThrottlingException", 4, "secretsmanager.PutSecretValue");
    char err[512] = "";
    const char *value = "THROTTLED-NEW-VALUE";
    assert_int_equal(secrets_put(s, "aurora/thr/a", value, strlen(value), err, sizeof(err)),
                     SECRETS_E_UNAVAILABLE);
    assert_non_null(strstr(err, "throttled"));
    assert_non_null(strstr(err, "aurora/thr/a"));
    assert_null(strstr(err, value));
    expect_secret(s, "aurora/thr/a", "original", 8);

    /* A write retried after a 500 is applied once (same request token). */
    proxy_fault(500, "InternalServiceError", 1, "secretsmanager.PutSecretValue");
    put_ok(s, "aurora/thr/a", "updated", 7);
    expect_secret(s, "aurora/thr/a", "updated", 7);
    proxy_fault(500, "InternalServiceError", 4, "secretsmanager.ListSecrets");
    char **l = NULL;
    size_t n = 0;
    assert_int_equal(secrets_list(s, "aurora/thr/", &l, &n, err, sizeof(err)),
                     SECRETS_E_UNAVAILABLE);
    assert_non_null(strstr(err, "InternalServiceError"));
    assert_int_equal(secrets_list(s, "aurora/thr/", &l, &n, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(n, 1);
    secrets_list_free(l, n);
    secrets_close(s);
}

static void test_down_and_config(void **state)
{
    (void)state;
    char ep[64];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", ph_free_port());
    secrets_config c = cfg(ep);
    c.timeout_ms = 1000;
    secrets_t *s = open_ok(&c); /* no I/O at open */
    long long t0 = ph_now_ms();
    expect_get_error(s, "aurora/down/x", SECRETS_E_UNAVAILABLE, "unreachable");
    assert_true(ph_now_ms() - t0 < 4000);
    secrets_close(s);

    char err[512];
    c = cfg(NULL);
    c.aws_region = NULL;
    assert_int_equal(secrets_open(&c, &s, err, sizeof(err)), SECRETS_E_INVALID);
    assert_non_null(strstr(err, "AWS_SM_REGION"));
    c = cfg(NULL);
    c.aws_region = "us-east-1;rm";
    assert_int_equal(secrets_open(&c, &s, err, sizeof(err)), SECRETS_E_INVALID);
    c = cfg(NULL);
    c.aws_secret_access_key = "";
    assert_int_equal(secrets_open(&c, &s, err, sizeof(err)), SECRETS_E_INVALID);
    assert_non_null(strstr(err, "AWS_SECRET_ACCESS_KEY"));
    assert_null(strstr(err, M.key_id));
    c = cfg(NULL);
    c.aws_endpoint = "ftp://x";
    assert_int_equal(secrets_open(&c, &s, err, sizeof(err)), SECRETS_E_INVALID);

    /* Missing secrets and deleting what is not there. */
    c = cfg(NULL);
    s = open_ok(&c);
    expect_get_error(s, "aurora/never/written", SECRETS_NOT_FOUND, NULL);
    assert_int_equal(secrets_delete(s, "aurora/never/written", err, sizeof(err)), SECRETS_OK);
    secrets_close(s);
}

/* More than one page of ListSecrets (100 per page). */
static void test_list_pages(void **state)
{
    (void)state;
    secrets_config c = cfg(NULL);
    secrets_t *s = open_ok(&c);
    char p[64];
    for (int i = 0; i < 103; i++) {
        snprintf(p, sizeof(p), "aurora/page/%03d", i);
        put_ok(s, p, "v", 1);
    }
    char **l = NULL;
    size_t n = 0;
    char err[512];
    assert_int_equal(secrets_list(s, "aurora/page/", &l, &n, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(n, 103);
    assert_string_equal(l[0], "aurora/page/000");
    assert_string_equal(l[102], "aurora/page/102");
    secrets_list_free(l, n);
    secrets_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_signed),
        cmocka_unit_test(test_guide_file_pem),
        cmocka_unit_test(test_denied),
        cmocka_unit_test(test_throttling_and_server_errors),
        cmocka_unit_test(test_down_and_config),
        cmocka_unit_test(test_list_pages),
    };
    return cmocka_run_group_tests_name("secrets_aws", tests, group_setup, group_teardown);
}
