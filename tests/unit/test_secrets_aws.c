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
 * file://…pem` case uses the real aws CLI against moto.
 *
 * Web identity (EKS IRSA): the same proxy stands in for STS's unsigned
 * AssumeRoleWithWebIdentity (moto refuses unsigned calls while its auth is
 * on, and never checks the token): it records each call's token, refuses
 * tokens it was not told to accept with InvalidIdentityToken, and has moto
 * mint the temporary credentials that moto then verifies on every Secrets
 * Manager call (see the fixture's header). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "free_watch.h"
#include "moto_harness.h"
#include "secrets.h"
#include "secrets_config.h"
#include "server_config.h"
#include "stalled_secrets.h"

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

/* How long a call that must succeed may take: as long as the tests' other
 * waits.  moto and the proxy are Python processes that share the CPUs with
 * everything else running, and a call that timed out would also open the
 * endpoint's breaker for the calls after it.  (The tests of timeouts and
 * of endpoints that are down set their own.) */
#define ANSWER_MS 20000

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
                         .timeout_ms = ANSWER_MS };
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

static void proxy_fault_says(int status, const char *type, int count, const char *target,
                             const char *message)
{
    CURL *c = curl_easy_init();
    char url[128], body[4096];
    snprintf(url, sizeof(url), "%s/_fixture/fail", proxy_endpoint);
    snprintf(body, sizeof(body), "{\"status\":%d,\"type\":\"%s\",\"count\":%d%s%s%s%s%s%s}",
             status, type, count, target ? ",\"target\":\"" : "", target ? target : "",
             target ? "\"" : "", message ? ",\"message\":\"" : "", message ? message : "",
             message ? "\"" : "");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, moto_sink);
    moto_buf b = { 0 };
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    free(b.data);
    curl_easy_cleanup(c);
}

static void proxy_fault(int status, const char *type, int count, const char *target)
{
    proxy_fault_says(status, type, count, target, NULL);
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
/* The request body holding a value written is wiped before it is freed,
 * and so is every copy of it cJSON's printer outgrew on the way (libcurl's
 * own buffers are its residual, docs/security.md). */
static void test_values_leave_no_copy_in_freed_memory(void **state)
{
    (void)state;
    secrets_config c = cfg(NULL);
    secrets_t *s = open_ok(&c);
    static const char marker[] = "aws-value-marker-5d2b";
    char val[4096];
    free_watch_value(val, sizeof(val), marker);
    assert_true(free_watch_arm_skipping(marker, "libcurl"));
    put_ok(s, "aurora/wipe/1", val, strlen(val)); /* created */
    put_ok(s, "aurora/wipe/1", val, strlen(val)); /* updated */
    int put_hits = free_watch_disarm();
    assert_true(free_watch_arm_skipping(marker, "libcurl"));
    expect_secret(s, "aurora/wipe/1", val, strlen(val));
    int get_hits = free_watch_disarm();
    secrets_close(s);
    if (put_hits || get_hits)
        fail_msg("freed unwiped: %d blocks with the value written, %d read", put_hits, get_hits);
}

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

/* A SecretString written outside Aurora with a NUL in it (the aws CLI
 * sends it as `\u0000`): refused with an error that says so, never
 * returned cut at the NUL. */
static void test_value_with_a_nul_is_not_cut(void **state)
{
    (void)state;
    char path[128], arg[160];
    snprintf(path, sizeof(path), "%s/with-nul", DIR_);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite("head\0tail", 1, 9, f), 9);
    fclose(f);
    snprintf(arg, sizeof(arg), "file://%s", path);
    const char *create[] = { "create-secret", "--name", "aurora/nul/a", "--secret-string", arg,
                             NULL };
    assert_int_equal(aws_cli(create), 0);
    secrets_config c = cfg(NULL);
    secrets_t *s = open_ok(&c);
    expect_get_error(s, "aurora/nul/a", SECRETS_E_OTHER, "NUL");
    secrets_close(s);
}

/* AWS's (and Vault's) error text reaches secrets_put with its control
 * characters turned into spaces: a value that has some in its first 16
 * bytes (a service-account key's JSON, `{\n  "type": ...`), quoted by the
 * backend, is withheld all the same. */
static void test_put_error_quoting_a_multiline_value(void **state)
{
    (void)state;
    secrets_config c = cfg(proxy_endpoint);
    secrets_t *s = open_ok(&c);
    const char *value = "{\n  \"type\": \"service_account\",\n  \"project_id\": \"p\"\n}\n";
    /* The message as AWS's JSON carries it (the proxy's control body is JSON too). */
    proxy_fault_says(400, "ValidationException", 1, "secretsmanager.PutSecretValue",
                     "Invalid SecretString: {\\n  \\\"type\\\": \\\"service_account\\\",\\n  "
                     "\\\"project_id\\\": \\\"p\\\"\\n}");
    char err[512] = "";
    assert_int_not_equal(secrets_put(s, "aurora/quote/sa", value, strlen(value), err, sizeof(err)),
                         SECRETS_OK);
    if (strstr(err, "service_account") || !strstr(err, "withheld"))
        fail_msg("the backend's message quoting the value was passed on: %s", err);
    assert_non_null(strstr(err, "aurora/quote/sa"));
    secrets_close(s);
}

/* An endpoint's error type is its text too: a line break in it would start
 * a line of its own choosing in the log the error goes to (AWS's message
 * was already made printable, its type was not). */
static void test_error_type_made_printable(void **state)
{
    (void)state;
    secrets_config c = cfg(proxy_endpoint);
    secrets_t *s = open_ok(&c);
    proxy_fault_says(400, "Bad\\n2026-01-01T00:00:00Z error aurora: forged\\u001b[2J", 1,
                     "secretsmanager.GetSecretValue", "a message\\nwith a break");
    unsigned char *v = NULL;
    size_t n = 0;
    char err[512] = "";
    assert_int_equal(secrets_get(s, "aurora/printable/x", &v, &n, err, sizeof(err)),
                     SECRETS_E_OTHER);
    assert_non_null(strstr(err, "forged"));
    for (const char *p = err; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            fail_msg("control character 0x%02x in \"%s\"", (unsigned char)*p, err);
    secrets_close(s);
}

static void test_down_and_config(void **state)
{
    (void)state;
    char ep[64];
    int held = -1; /* a port of ours, refusing: no other test binary's server can be there */
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", ph_hold_port(0, &held, 0));
    assert_true(held >= 0);
    secrets_config c = cfg(ep);
    c.timeout_ms = 1000;
    secrets_t *s = open_ok(&c); /* no I/O at open */
    expect_get_error(s, "aurora/down/x", SECRETS_E_UNAVAILABLE, "unreachable");
    /* quick: refused at once, not a wait for the timeout */
    expect_get_error(s, "aurora/down/x", SECRETS_E_UNAVAILABLE, "Couldn't connect");
    secrets_close(s);
    close(held);

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

/* A secret deleted (ForceDeleteWithoutRecovery) and written again at once,
 * as a disconnect followed by a reconnect does: AWS deletes in the
 * background and, until it has, refuses the name with InvalidRequestException
 * ("marked for deletion", "scheduled for deletion"); its documentation asks
 * callers to back off and retry.  moto deletes at once: the proxy gives
 * AWS's answers for the first attempts. */
static void test_write_after_delete_waits_for_the_deletion(void **state)
{
    (void)state;
    secrets_config c = cfg(proxy_endpoint);
    secrets_t *s = open_ok(&c);
    char err[512];
    put_ok(s, "aurora/del/a", "first", 5);
    assert_int_equal(secrets_delete(s, "aurora/del/a", err, sizeof(err)), SECRETS_OK);
    proxy_fault_says(400, "InvalidRequestException", 1, "secretsmanager.PutSecretValue",
                     "You can't perform this operation on the secret because it was marked "
                     "for deletion.");
    proxy_fault_says(400, "InvalidRequestException", 1, "secretsmanager.CreateSecret",
                     "You can't create this secret because a secret with this name is already "
                     "scheduled for deletion.");
    put_ok(s, "aurora/del/a", "second", 6);
    expect_secret(s, "aurora/del/a", "second", 6);
    /* A name being deleted (or scheduled for deletion by an operator) has
     * nothing to read. */
    proxy_fault_says(400, "InvalidRequestException", 1, "secretsmanager.GetSecretValue",
                     "You can't perform this operation on the secret because it was marked "
                     "for deletion.");
    expect_get_error(s, "aurora/del/a", SECRETS_NOT_FOUND, "marked for deletion");
    /* Any other InvalidRequestException is not waited for. */
    proxy_fault_says(400, "InvalidRequestException", 1, "secretsmanager.PutSecretValue",
                     "You can't perform this operation on a secret that is managed elsewhere.");
    assert_int_equal(secrets_put(s, "aurora/del/a", "third", 5, err, sizeof(err)),
                     SECRETS_E_OTHER);
    assert_non_null(strstr(err, "InvalidRequestException"));
    expect_secret(s, "aurora/del/a", "second", 6);
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

/* ---- web identity (EKS IRSA) ------------------------------------------------------------------ */

static char *http_text(const char *method, const char *path, const char *body)
{
    CURL *c = curl_easy_init();
    char url[160];
    snprintf(url, sizeof(url), "%s%s", proxy_endpoint, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    moto_buf b = { 0 };
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, moto_sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_cleanup(c);
    return b.data;
}

/* What the STS stand-in accepts, and the lifetime it gives credentials
 * (expires_in < 0: moto's own Expiration, DurationSeconds from now). */
static void sts_setup(const char *accept_json, int expires_in)
{
    char body[512], exp[16];
    snprintf(exp, sizeof(exp), "%d", expires_in);
    snprintf(body, sizeof(body),
             "{\"key_id\":\"%s\",\"secret\":\"%s\",\"accept\":%s,\"expires_in\":%s}", M.key_id,
             M.secret, accept_json, expires_in < 0 ? "null" : exp);
    free(http_text("POST", "/_fixture/sts", body));
}

/* The STS calls recorded so far; *last_token gets the newest one's token. */
static int sts_calls(char *last_token, size_t cap)
{
    char *t = http_text("GET", "/_fixture/sts_calls", NULL);
    cJSON *j = cJSON_Parse(t);
    free(t);
    assert_true(cJSON_IsArray(j));
    int n = cJSON_GetArraySize(j);
    if (last_token && n > 0) {
        cJSON *tok = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(j, n - 1), "token");
        snprintf(last_token, cap, "%s", cJSON_IsString(tok) ? tok->valuestring : "");
    }
    cJSON_Delete(j);
    return n;
}

/* Replaces the token file at once, as the kubelet does (it swaps a symlink):
 * a reader sees the old token or the new one, never a half-written file. */
static void write_token(const char *path, const char *tok)
{
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", tok); /* the kubelet's file ends without one; either is read */
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0);
}

static char TOKEN_FILE[128];

static secrets_config wcfg(void)
{
    snprintf(TOKEN_FILE, sizeof(TOKEN_FILE), "%s/eks-token", DIR_);
    secrets_config c = { .backend = "aws_secrets_manager",
                         .aws_region = "us-east-1",
                         .aws_endpoint = proxy_endpoint,
                         .aws_role_arn = MOTO_ROLE_ARN,
                         .aws_web_identity_token_file = TOKEN_FILE,
                         .aws_role_session_name = "aurora-test",
                         .aws_sts_endpoint = proxy_endpoint,
                         .timeout_ms = ANSWER_MS };
    return c;
}

static void test_web_identity_roundtrip(void **state)
{
    (void)state;
    secrets_config c = wcfg();
    write_token(TOKEN_FILE, "eks-token-A");
    sts_setup("[\"eks-token-A\"]", -1);
    int before = sts_calls(NULL, 0);
    secrets_t *s = open_ok(&c);
    assert_int_equal(sts_calls(NULL, 0), before); /* no I/O at open */
    put_ok(s, "aurora/wi/github-app/private-key", PEM, strlen(PEM));
    expect_secret(s, "aurora/wi/github-app/private-key", PEM, strlen(PEM));
    put_ok(s, "aurora/wi/webhook", "one", 3);
    put_ok(s, "aurora/wi/webhook", "two", 3);
    expect_secret(s, "aurora/wi/webhook", "two", 3);
    char **l = NULL;
    size_t n = 0;
    char err[512];
    assert_int_equal(secrets_list(s, "aurora/wi/", &l, &n, err, sizeof(err)), SECRETS_OK);
    assert_int_equal(n, 2);
    assert_string_equal(l[0], "aurora/wi/github-app/private-key");
    secrets_list_free(l, n);
    assert_int_equal(secrets_delete(s, "aurora/wi/webhook", err, sizeof(err)), SECRETS_OK);
    expect_get_error(s, "aurora/wi/webhook", SECRETS_NOT_FOUND, NULL);

    /* One STS call for all of that (cached for the hour), unsigned, with
     * the role, session name, duration and the file's token. */
    char *t = http_text("GET", "/_fixture/sts_calls", NULL);
    cJSON *j = cJSON_Parse(t);
    free(t);
    assert_int_equal(cJSON_GetArraySize(j), before + 1);
    cJSON *call = cJSON_GetArrayItem(j, before);
    assert_string_equal(cJSON_GetObjectItem(call, "token")->valuestring, "eks-token-A");
    assert_string_equal(cJSON_GetObjectItem(call, "role_arn")->valuestring, MOTO_ROLE_ARN);
    assert_string_equal(cJSON_GetObjectItem(call, "session_name")->valuestring, "aurora-test");
    assert_string_equal(cJSON_GetObjectItem(call, "duration")->valuestring, "3600");
    assert_string_equal(cJSON_GetObjectItem(call, "version")->valuestring, "2011-06-15");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(call, "signed")));
    cJSON_Delete(j);
    secrets_close(s);

    /* The role's credentials are what moto checks: a role without a policy
     * is refused by Secrets Manager itself. */
    c.aws_role_arn = MOTO_ROLE_NOPOLICY_ARN;
    s = open_ok(&c);
    expect_get_error(s, "aurora/wi/github-app/private-key", SECRETS_E_DENIED, "AccessDenied");
    secrets_close(s);
}

/* The token file rotates: every refresh reads it again.  Credentials near
 * their Expiration (less than 5 minutes) are refreshed before a call; fresh
 * ones are reused. */
static void test_web_identity_rotation_and_expiry(void **state)
{
    (void)state;
    secrets_config c = wcfg();
    write_token(TOKEN_FILE, "eks-token-1");
    sts_setup("[\"eks-token-1\",\"eks-token-2\"]", 120); /* 2 minutes left: always refresh */
    secrets_t *s = open_ok(&c);
    char last[64];
    int n0 = sts_calls(NULL, 0);
    /* A new name: PutSecretValue, then CreateSecret, each after a refresh. */
    int want = n0 + 2;
    put_ok(s, "aurora/rot/a", "v1", 2);
    assert_int_equal(sts_calls(last, sizeof(last)), want);
    assert_string_equal(last, "eks-token-1");
    /* The kubelet writes a new token; the next refresh sends it. */
    write_token(TOKEN_FILE, "eks-token-2");
    expect_secret(s, "aurora/rot/a", "v1", 2);
    assert_int_equal(sts_calls(last, sizeof(last)), ++want);
    assert_string_equal(last, "eks-token-2");

    /* STS failing while the cached credentials are near their end but
     * still valid: the call is served with them, and STS is tried again
     * only after a pause (not by every call). */
    proxy_fault(500, "InternalFailure", 4, "sts.AssumeRoleWithWebIdentity");
    expect_secret(s, "aurora/rot/a", "v1", 2);
    want += 4; /* four attempts */
    assert_int_equal(sts_calls(NULL, 0), want);
    expect_secret(s, "aurora/rot/a", "v1", 2);
    assert_int_equal(sts_calls(NULL, 0), want);
    /* A call refused as expired still forces a refresh at once. */
    proxy_fault(400, "ExpiredTokenException", 1, "secretsmanager.GetSecretValue");
    expect_secret(s, "aurora/rot/a", "v1", 2);
    assert_int_equal(sts_calls(NULL, 0), ++want);

    /* Now credentials for the full hour: one more refresh (the cached ones
     * were about to expire), then none. */
    sts_setup("[\"eks-token-2\"]", -1);
    expect_secret(s, "aurora/rot/a", "v1", 2);
    assert_int_equal(sts_calls(NULL, 0), ++want);
    put_ok(s, "aurora/rot/a", "v2", 2);
    expect_secret(s, "aurora/rot/a", "v2", 2);
    assert_int_equal(sts_calls(NULL, 0), want);

    /* AWS refuses the cached credentials as expired (revoked, clock skew):
     * refreshed once and the call retried... */
    proxy_fault(400, "ExpiredTokenException", 1, "secretsmanager.GetSecretValue");
    expect_secret(s, "aurora/rot/a", "v2", 2);
    assert_int_equal(sts_calls(NULL, 0), ++want);
    /* ...but only once per call: refused again, the error is passed on. */
    proxy_fault(400, "ExpiredTokenException", 2, "secretsmanager.GetSecretValue");
    expect_get_error(s, "aurora/rot/a", SECRETS_E_DENIED, "ExpiredTokenException");
    assert_int_equal(sts_calls(NULL, 0), ++want);
    expect_secret(s, "aurora/rot/a", "v2", 2);
    secrets_close(s);
}

static void test_web_identity_errors(void **state)
{
    (void)state;
    secrets_config c = wcfg();
    char err[512] = "";
    secrets_t *s = NULL;
    sts_setup("[\"eks-token-ok\"]", -1);

    /* No token file: a clear error naming the setting and the path; STS
     * is not called. */
    unlink(TOKEN_FILE);
    int n0 = sts_calls(NULL, 0);
    s = open_ok(&c);
    expect_get_error(s, "aurora/err/a", SECRETS_E_DENIED, "AWS_WEB_IDENTITY_TOKEN_FILE");
    expect_get_error(s, "aurora/err/a", SECRETS_E_DENIED, TOKEN_FILE);
    assert_int_equal(sts_calls(NULL, 0), n0);
    /* An empty one likewise. */
    write_token(TOKEN_FILE, "");
    expect_get_error(s, "aurora/err/a", SECRETS_E_DENIED, "empty");
    assert_int_equal(sts_calls(NULL, 0), n0);

    /* A token STS cannot verify: InvalidIdentityToken, DENIED, the token
     * itself in no message. */
    write_token(TOKEN_FILE, "eks-token-forged-0123456789");
    expect_get_error(s, "aurora/err/a", SECRETS_E_DENIED, "InvalidIdentityToken");
    assert_int_equal(secrets_put(s, "aurora/err/a", "x", 1, err, sizeof(err)), SECRETS_E_DENIED);
    assert_null(strstr(err, "forged"));
    assert_non_null(strstr(err, MOTO_ROLE_ARN));
    /* The role's trust policy refuses: AccessDenied, DENIED. */
    write_token(TOKEN_FILE, "eks-token-ok");
    proxy_fault(403, "AccessDenied", 1, "sts.AssumeRoleWithWebIdentity");
    expect_get_error(s, "aurora/err/a", SECRETS_E_DENIED, "AccessDenied");
    /* STS failing: retried, then UNAVAILABLE. */
    proxy_fault(500, "InternalFailure", 4, "sts.AssumeRoleWithWebIdentity");
    expect_get_error(s, "aurora/err/a", SECRETS_E_UNAVAILABLE, "InternalFailure");
    /* After all that, the same object works. */
    put_ok(s, "aurora/err/a", "fine", 4);
    expect_secret(s, "aurora/err/a", "fine", 4);
    secrets_close(s);

    /* STS down. */
    char down[64];
    int held = -1; /* a port of ours, refusing */
    snprintf(down, sizeof(down), "http://127.0.0.1:%d", ph_hold_port(0, &held, 0));
    assert_true(held >= 0);
    c.aws_sts_endpoint = down;
    c.timeout_ms = 1000;
    s = open_ok(&c);
    expect_get_error(s, "aurora/err/a", SECRETS_E_UNAVAILABLE, "STS");
    expect_get_error(s, "aurora/err/a", SECRETS_E_UNAVAILABLE, "unreachable");
    secrets_close(s);
    close(held);

    /* Configuration: neither static keys nor web identity names both;
     * half of each is refused; bad endpoint and session name. */
    c = wcfg();
    c.aws_role_arn = NULL;
    assert_int_equal(secrets_open(&c, &s, err, sizeof(err)), SECRETS_E_INVALID);
    assert_non_null(strstr(err, "AWS_ACCESS_KEY_ID"));
    assert_non_null(strstr(err, "AWS_ROLE_ARN"));
    assert_non_null(strstr(err, "AWS_WEB_IDENTITY_TOKEN_FILE"));
    c = wcfg();
    c.aws_web_identity_token_file = "";
    assert_int_equal(secrets_open(&c, &s, err, sizeof(err)), SECRETS_E_INVALID);
    assert_non_null(strstr(err, "AWS_ROLE_ARN"));
    c = wcfg();
    c.aws_access_key_id = M.key_id; /* a key id without its secret: not silently web identity */
    assert_int_equal(secrets_open(&c, &s, err, sizeof(err)), SECRETS_E_INVALID);
    assert_non_null(strstr(err, "AWS_SECRET_ACCESS_KEY"));
    c = wcfg();
    c.aws_sts_endpoint = "ftp://sts";
    assert_int_equal(secrets_open(&c, &s, err, sizeof(err)), SECRETS_E_INVALID);
    assert_non_null(strstr(err, "AWS_SM_STS_ENDPOINT"));
    c = wcfg();
    c.aws_role_session_name = "has space";
    assert_int_equal(secrets_open(&c, &s, err, sizeof(err)), SECRETS_E_INVALID);
    assert_non_null(strstr(err, "AWS_ROLE_SESSION_NAME"));
}

/* No piece of a token (16 characters or more) in text. */
static void assert_no_piece_of(const char *text, const char *tok)
{
    size_t tl = strlen(tok);
    for (size_t i = 0; i + 16 <= tl; i++)
        if (memmem(text, strlen(text), tok + i, 16))
            fail_msg("\"%s\" quotes the token's characters %zu..%zu", text, i, i + 15);
}

/* STS quoting the web-identity token it refused (a real service-account
 * JWT: hundreds of characters, its start the header and claims), whole or a
 * piece of it: no part of it reaches the error (and so the logs), however
 * long the message. */
static void test_web_identity_sts_message_quoting_the_token(void **state)
{
    (void)state;
    secrets_config c = wcfg();
    /* header.claims.signature, as the kubelet writes it (no newline). */
    char jwt[1200];
    int n = snprintf(jwt, sizeof(jwt), "eyJhbGciOiJSUzI1NiIsImtpZCI6InNlY3JldHMtdGVzdCJ9.");
    for (int i = 0; n < 900; i++)
        n += snprintf(jwt + n, sizeof(jwt) - (size_t)n, "eyJpc3MiOiJodHRwczovL29pZGMuZWtz%02d", i);
    snprintf(jwt + n, sizeof(jwt) - (size_t)n, ".c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU");
    write_token(TOKEN_FILE, jwt);
    sts_setup("[\"eks-token-ok\"]", -1);
    secrets_t *s = open_ok(&c);
    char msg[1400], err[512];
    unsigned char *got = NULL;
    size_t len = 0;
    const char *shapes[] = { "Token %s is not valid", /* the whole token */
                             "Invalid token: %.60s",   /* its start: header and claims */
                             "bad claims in %.40s" };  /* a piece from the start */
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        snprintf(msg, sizeof(msg), shapes[i], jwt);
        proxy_fault_says(400, "InvalidIdentityToken", 1, "sts.AssumeRoleWithWebIdentity", msg);
        assert_int_equal(secrets_get(s, "aurora/err/jwt", &got, &len, err, sizeof(err)),
                         SECRETS_E_DENIED);
        assert_non_null(strstr(err, "InvalidIdentityToken"));
        assert_no_piece_of(err, jwt);
    }
    /* A piece from the middle of the token, after the first 200 characters. */
    snprintf(msg, sizeof(msg), "signature check failed near %.32s", jwt + 400);
    proxy_fault_says(400, "InvalidIdentityToken", 1, "sts.AssumeRoleWithWebIdentity", msg);
    assert_int_equal(secrets_get(s, "aurora/err/jwt", &got, &len, err, sizeof(err)),
                     SECRETS_E_DENIED);
    assert_no_piece_of(err, jwt);
    /* A message that quotes nothing of it is still passed on. */
    proxy_fault_says(400, "InvalidIdentityToken", 1, "sts.AssumeRoleWithWebIdentity",
                     "Incorrect token audience");
    assert_int_equal(secrets_get(s, "aurora/err/jwt", &got, &len, err, sizeof(err)),
                     SECRETS_E_DENIED);
    assert_non_null(strstr(err, "Incorrect token audience"));
    secrets_close(s);
}

/* STS's error Code, like Secrets Manager's error type, reaches the error of
 * the call and from there the log: a line break or a terminal escape in it
 * (a hostile or broken endpoint) must not start a log line of its choosing. */
static void test_web_identity_sts_code_made_printable(void **state)
{
    (void)state;
    secrets_config c = wcfg();
    write_token(TOKEN_FILE, "eks-token-ok");
    sts_setup("[\"eks-token-ok\"]", -1);
    secrets_t *s = open_ok(&c);
    proxy_fault_says(400, "Bad\\n2026-01-01T00:00:00Z error aurora: forged\\u001b[2J\\u007f", 1,
                     "sts.AssumeRoleWithWebIdentity", "a message\\rwith a break");
    unsigned char *v = NULL;
    size_t n = 0;
    char err[512] = "";
    assert_int_equal(secrets_get(s, "aurora/err/sts-code", &v, &n, err, sizeof(err)),
                     SECRETS_E_OTHER);
    assert_null(v);
    assert_non_null(strstr(err, "forged")); /* passed on, made printable */
    assert_non_null(strstr(err, "with a break"));
    for (const char *p = err; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            fail_msg("control character 0x%02x in \"%s\"", (unsigned char)*p, err);
    secrets_close(s);
}

/* Static keys win when both are configured (the SDK chain's order). */
static void test_static_keys_first(void **state)
{
    (void)state;
    secrets_config c = wcfg();
    c.aws_endpoint = M.endpoint;
    c.aws_access_key_id = M.key_id;
    c.aws_secret_access_key = M.secret;
    unlink(TOKEN_FILE); /* would fail if used */
    int n0 = sts_calls(NULL, 0);
    secrets_t *s = open_ok(&c);
    put_ok(s, "aurora/static/a", "v", 1);
    expect_secret(s, "aurora/static/a", "v", 1);
    assert_int_equal(sts_calls(NULL, 0), n0);
    secrets_close(s);
}

/* The settings as the server reads them (environment -> server_config ->
 * secrets_config): the SDK's names, AWS_SM_STS_ENDPOINT, the default
 * session name. */
static void test_web_identity_settings(void **state)
{
    (void)state;
    char data[128];
    snprintf(data, sizeof(data), "%s/settings", DIR_);
    snprintf(TOKEN_FILE, sizeof(TOKEN_FILE), "%s/eks-token", DIR_);
    write_token(TOKEN_FILE, "eks-token-env");
    sts_setup("[\"eks-token-env\"]", -1);
    unsetenv("AURORA_CONFIG");
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
    unsetenv("AWS_ROLE_SESSION_NAME");
    setenv("AURORA_DATA_DIR", data, 1);
    setenv("SECRETS_BACKEND", "aws_secrets_manager", 1);
    setenv("AWS_SM_REGION", "us-east-1", 1);
    setenv("AWS_SM_ENDPOINT", proxy_endpoint, 1);
    setenv("AWS_SM_STS_ENDPOINT", proxy_endpoint, 1);
    setenv("AWS_ROLE_ARN", MOTO_ROLE_ARN, 1);
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", TOKEN_FILE, 1);
    server_config sc;
    char err[512];
    if (server_config_load(&sc, err, sizeof(err)) < 0)
        fail_msg("config: %s", err);
    secrets_config c;
    secrets_config_from_server(&sc, &c);
    secrets_t *s = open_ok(&c);
    put_ok(s, "aurora/env/a", "from-env", 8);
    expect_secret(s, "aurora/env/a", "from-env", 8);
    secrets_close(s);
    server_config_free(&sc);
    char *t = http_text("GET", "/_fixture/sts_calls", NULL);
    cJSON *j = cJSON_Parse(t);
    free(t);
    cJSON *last = cJSON_GetArrayItem(j, cJSON_GetArraySize(j) - 1);
    assert_string_equal(cJSON_GetObjectItem(last, "token")->valuestring, "eks-token-env");
    assert_string_equal(cJSON_GetObjectItem(last, "role_arn")->valuestring, MOTO_ROLE_ARN);
    assert_string_equal(cJSON_GetObjectItem(last, "session_name")->valuestring, "aurora-server");
    cJSON_Delete(j);

    /* Neither static keys nor web identity: the server's own error. */
    unsetenv("AWS_ROLE_ARN");
    if (server_config_load(&sc, err, sizeof(err)) < 0)
        fail_msg("config: %s", err);
    secrets_config_from_server(&sc, &c);
    assert_int_equal(secrets_open(&c, &s, err, sizeof(err)), SECRETS_E_INVALID);
    assert_non_null(strstr(err, "AWS_ROLE_ARN"));
    assert_non_null(strstr(err, "AWS_ACCESS_KEY_ID"));
    server_config_free(&sc);
    unsetenv("AWS_WEB_IDENTITY_TOKEN_FILE");
    unsetenv("AWS_SM_STS_ENDPOINT");
}

#define THREADS 6
#define ROUNDS 8

typedef struct {
    secrets_t *s;
    int id;
    int failures;
    char err[512];
} worker_arg;

static void *worker(void *p)
{
    worker_arg *w = p;
    char path[64], val[32];
    for (int i = 0; i < ROUNDS; i++) {
        snprintf(path, sizeof(path), "aurora/thr-wi/%d", w->id);
        snprintf(val, sizeof(val), "value-%d-%d", w->id, i);
        if (secrets_put(w->s, path, val, strlen(val), w->err, sizeof(w->err)) != SECRETS_OK) {
            w->failures++;
            continue;
        }
        unsigned char *got = NULL;
        size_t len = 0;
        if (secrets_get(w->s, path, &got, &len, w->err, sizeof(w->err)) != SECRETS_OK) {
            w->failures++;
            continue;
        }
        if (len != strlen(val) || memcmp(got, val, len) != 0)
            w->failures++;
        secrets_free(got, len);
    }
    return NULL;
}

/* Several worker threads on one backend object while the credentials are
 * refreshed under them (2 minutes of life: every call refreshes) and the
 * token file rotates. */
static void test_web_identity_threads(void **state)
{
    (void)state;
    secrets_config c = wcfg();
    write_token(TOKEN_FILE, "eks-token-t1");
    sts_setup("[\"eks-token-t1\",\"eks-token-t2\"]", 120);
    secrets_t *s = open_ok(&c);
    int n0 = sts_calls(NULL, 0);
    pthread_t th[THREADS];
    worker_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (worker_arg){ .s = s, .id = i };
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    write_token(TOKEN_FILE, "eks-token-t2");
    /* Every thread joined before any check: a failed check leaves the test,
     * and a thread still running would use the closed backend. */
    int joined = 0;
    for (int i = 0; i < THREADS; i++)
        joined += pthread_join(th[i], NULL) == 0;
    assert_int_equal(joined, THREADS);
    for (int i = 0; i < THREADS; i++)
        if (args[i].failures)
            fail_msg("thread %d: %d failures, last: %s", i, args[i].failures, args[i].err);
    char last[64];
    assert_true(sts_calls(last, sizeof(last)) > n0 + 1);
    assert_string_equal(last, "eks-token-t2");
    /* And with hour-long credentials, the threads share one refresh. */
    sts_setup("[\"eks-token-t2\"]", -1);
    expect_secret(s, "aurora/thr-wi/0", "value-0-7", 9); /* takes the hour-long ones */
    int n1 = sts_calls(NULL, 0);
    for (int i = 0; i < THREADS; i++) {
        args[i] = (worker_arg){ .s = s, .id = i };
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    joined = 0;
    for (int i = 0; i < THREADS; i++)
        joined += pthread_join(th[i], NULL) == 0;
    assert_int_equal(joined, THREADS);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(args[i].failures, 0);
    assert_int_equal(sts_calls(NULL, 0), n1);
    secrets_close(s);
}

/* STS accepting connections but never answering: the calls that queued
 * behind the refresh share its timeout instead of each waiting out its
 * own one after the other. */
static void test_web_identity_sts_silent(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 64), 0); /* the kernel completes connections; nobody answers */
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    char silent[64];
    snprintf(silent, sizeof(silent), "http://127.0.0.1:%d", ntohs(sa.sin_port));
    secrets_config c = wcfg();
    write_token(TOKEN_FILE, "eks-token-bh");
    c.aws_sts_endpoint = silent;
    c.timeout_ms = 1000;
    secrets_t *s = open_ok(&c);
    enum { N = 6 };
    stalled_call args[N];
    stalled_calls_together(s, args, N);
    for (int i = 0; i < N; i++) {
        if (args[i].rc != SECRETS_E_UNAVAILABLE)
            fail_msg("thread %d: rc %d (%s)", i, args[i].rc, args[i].err);
        assert_non_null(strstr(args[i].err, "STS"));
    }
    /* Counted, not timed: one refresh shared by all reached the silent STS,
     * where one after the other would have opened N connections. */
    assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    int conns = 0;
    for (int c2; (c2 = accept(fd, NULL, NULL)) >= 0; conns++)
        close(c2);
    if (conns < 1 || conns >= N)
        fail_msg("%d calls against a silent STS opened %d connections", N, conns);
    /* A later call tries STS again (and waits its own timeout). */
    expect_get_error(s, "aurora/bh/a", SECRETS_E_UNAVAILABLE, "STS");
    secrets_close(s);
    close(fd);
}

/* Answers every connection to a silent_peer with *response until stop.
 * The answer is chosen after each accept, not once per batch: a batch
 * begun before the test switches the answer may still be accepting when
 * the next callers connect (CI once saw a caller get the old answer). */
typedef struct {
    silent_peer *peer;
    const char *_Atomic response;
    atomic_int stop;
} canned_server;

static void *canned_main(void *p)
{
    canned_server *c = p;
    while (!atomic_load(&c->stop)) {
        if (!silent_peer_wait_connection(c->peer, 20))
            continue;
        for (int conn; (conn = accept(c->peer->fd, NULL, NULL)) >= 0;)
            silent_peer_answer(conn, atomic_load(&c->response));
    }
    return NULL;
}

/* Several calls hold the cached credentials when AWS refuses them as expired
 * (revoked, clock skew) while STS accepts connections and never answers:
 * the callers whose credentials a refresh failed to replace after they were
 * handed out take that refresh's failure, rather than each trying STS in
 * turn and waiting out one timeout apiece, one after the other.  Counted,
 * not timed, as in test_web_identity_sts_silent. */
static void test_web_identity_refused_while_sts_silent(void **state)
{
    (void)state;
    silent_peer sm, sts;
    assert_int_equal(silent_peer_open(&sm), 0);
    assert_int_equal(silent_peer_open(&sts), 0);
    static const char ok_body[] = "{\"Name\":\"aurora/stall/probe\",\"SecretString\":\"v\"}";
    static const char expired_body[] =
        "{\"__type\":\"ExpiredTokenException\",\"message\":\"The security token included in "
        "the request is expired\"}";
    char ok[512], expired[512], sts_ok[1024];
    snprintf(ok, sizeof(ok),
             "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n"
             "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
             strlen(ok_body), ok_body);
    snprintf(expired, sizeof(expired),
             "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\n"
             "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
             strlen(expired_body), expired_body);
    static const char sts_body[] =
        "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
        "<AccessKeyId>ASIAEXAMPLE</AccessKeyId><SecretAccessKey>example-secret</SecretAccessKey>"
        "<SessionToken>example-session</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration>"
        "</Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
    snprintf(sts_ok, sizeof(sts_ok),
             "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: %zu\r\n"
             "Connection: close\r\n\r\n%s",
             strlen(sts_body), sts_body);
    canned_server srv = { .peer = &sm };
    atomic_store(&srv.response, ok);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, canned_main, &srv), 0);

    secrets_config c = wcfg();
    write_token(TOKEN_FILE, "eks-token-refused");
    c.aws_endpoint = sm.url;
    c.aws_sts_endpoint = sts.url;
    c.timeout_ms = 1000;
    secrets_t *s = open_ok(&c);
    /* Credentials for the hour, from the one STS answer the test gives. */
    stalled_call first = { .s = s };
    pthread_t th1;
    assert_int_equal(pthread_create(&th1, NULL, stalled_call_main, &first), 0);
    assert_true(silent_peer_wait_connection(&sts, 30000));
    assert_int_equal(silent_peer_answer_all(&sts, sts_ok), 1);
    assert_int_equal(pthread_join(th1, NULL), 0);
    if (first.rc != SECRETS_OK)
        fail_msg("with fresh credentials: rc %d (%s)", first.rc, first.err);

    /* Now AWS refuses them, and STS is silent. */
    atomic_store(&srv.response, expired);
    enum { N = 6 };
    stalled_call args[N];
    stalled_calls_together(s, args, N);
    atomic_store(&srv.stop, 1);
    assert_int_equal(pthread_join(th, NULL), 0);
    for (int i = 0; i < N; i++) {
        if (args[i].rc != SECRETS_E_UNAVAILABLE)
            fail_msg("caller %d: rc %d (%s)", i, args[i].rc, args[i].err);
        assert_non_null(strstr(args[i].err, "STS"));
        assert_null(strstr(args[i].err, "example-s")); /* no credential in a message */
    }
    int conns = 0;
    for (int c2; (c2 = accept(sts.fd, NULL, NULL)) >= 0; conns++)
        close(c2);
    if (conns < 1 || conns >= N)
        fail_msg("%d callers refused as expired against a silent STS opened %d connections", N,
                 conns);
    secrets_close(s);
    silent_peer_close(&sm);
    silent_peer_close(&sts);
}

/* An endpoint that accepts connections and never answers (stalled_secrets.h);
 * AWS's answer to the probe is a 400 of its own. */
static void test_stalled_endpoint_fails_fast(void **state)
{
    (void)state;
    silent_peer peer;
    assert_int_equal(silent_peer_open(&peer), 0);
    secrets_config c = cfg(peer.url);
    c.timeout_ms = 300;
    secrets_t *quick = open_ok(&c);
    c.timeout_ms = 60000; /* the probe: waits until the test answers it */
    secrets_t *patient = open_ok(&c);
    static const char body[] = "{\"__type\":\"ResourceNotFoundException\",\"message\":\"no\"}";
    char resp[256];
    snprintf(resp, sizeof(resp),
             "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\n"
             "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
             strlen(body), body);
    stalled_secrets_fail_fast(&peer, quick, patient, resp, SECRETS_NOT_FOUND);
    secrets_close(patient);
    secrets_close(quick);
    silent_peer_close(&peer);
}

/* A count from the proxy's /_fixture/stats. */
static int proxy_stat(const char *name)
{
    char *t = http_text("GET", "/_fixture/stats", NULL);
    cJSON *j = cJSON_Parse(t);
    cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);
    assert_true(cJSON_IsNumber(v));
    int n = v->valueint;
    cJSON_Delete(j);
    free(t);
    return n;
}

/* The proxy's made-up listing (aws_fault_proxy.py: /_fixture/list). */
static void made_up_listing(int pages, double delay)
{
    char body[128];
    snprintf(body, sizeof(body), "{\"pages\":%d,\"delay\":%g,\"prefix\":\"aurora/slow/\"}",
             pages, delay);
    free(http_text("POST", "/_fixture/list", body));
}

/* An endpoint answering every ListSecrets page slowly, each well within the
 * per-request timeout: the whole listing has a deadline (3 timeouts for the
 * server's bound of 1000 paths), so it cannot hold the calling worker for
 * one timeout per page (up to 1000 of them).  Counted at the proxy, not
 * timed: each page takes at least 0.3 s, so no more pages than fit in the
 * deadline were asked for. */
static void test_listing_has_a_deadline(void **state)
{
    (void)state;
    secrets_config c = cfg(proxy_endpoint);
    c.timeout_ms = 1500;
    c.list_max_paths = SECRETS_LIST_MAX_PATHS_SERVER;
    secrets_t *s = open_ok(&c);
    made_up_listing(31, 0.3); /* 31 pages: 9.3 s of answers at 0.3 s each */
    int before = proxy_stat("list_pages");
    char **l = NULL, err[512] = "";
    size_t n = 0;
    int rc = secrets_list(s, "aurora/slow/", &l, &n, err, sizeof(err));
    int asked = proxy_stat("list_pages") - before;
    made_up_listing(0, 0); /* ListSecrets back to moto for the other tests, whatever follows */
    if (rc != SECRETS_E_UNAVAILABLE || !strstr(err, "listing stopped") ||
        !strstr(err, "not done within 4500 ms"))
        fail_msg("list: rc %d, %zu paths, %d pages asked for (%s)", rc, n, asked, err);
    assert_null(l);
    if (asked > 4500 / 300 + 1)
        fail_msg("%d pages of 0.3 s each within a 4.5 s deadline", asked);
    secrets_list_free(l, n);

    /* The endpoint answering at its usual speed again: the same handle
     * lists every page (the deadline is per listing, and the wait it cut
     * short did not open the endpoint's breaker). */
    made_up_listing(31, 0);
    rc = secrets_list(s, "aurora/slow/", &l, &n, err, sizeof(err));
    made_up_listing(0, 0);
    if (rc != SECRETS_OK)
        fail_msg("list: rc %d (%s)", rc, err);
    assert_int_equal(n, 31);
    assert_string_equal(l[30], "aurora/slow/030");
    secrets_list_free(l, n);
    secrets_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_signed),
        cmocka_unit_test(test_guide_file_pem),
        cmocka_unit_test(test_value_with_a_nul_is_not_cut),
        cmocka_unit_test(test_values_leave_no_copy_in_freed_memory),
        cmocka_unit_test(test_denied),
        cmocka_unit_test(test_throttling_and_server_errors),
        cmocka_unit_test(test_put_error_quoting_a_multiline_value),
        cmocka_unit_test(test_error_type_made_printable),
        cmocka_unit_test(test_down_and_config),
        cmocka_unit_test(test_list_pages),
        cmocka_unit_test(test_listing_has_a_deadline),
        cmocka_unit_test(test_write_after_delete_waits_for_the_deletion),
        cmocka_unit_test(test_web_identity_roundtrip),
        cmocka_unit_test(test_web_identity_rotation_and_expiry),
        cmocka_unit_test(test_web_identity_errors),
        cmocka_unit_test(test_web_identity_sts_message_quoting_the_token),
        cmocka_unit_test(test_web_identity_sts_code_made_printable),
        cmocka_unit_test(test_static_keys_first),
        cmocka_unit_test(test_web_identity_settings),
        cmocka_unit_test(test_web_identity_threads),
        cmocka_unit_test(test_web_identity_sts_silent),
        cmocka_unit_test(test_web_identity_refused_while_sts_silent),
        cmocka_unit_test(test_stalled_endpoint_fails_fast),
    };
    return cmocka_run_group_tests_name("secrets_aws", tests, group_setup, group_teardown);
}
