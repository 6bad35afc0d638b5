/* test_kit_settings.c — settings each connector declares itself
 * (connector.settings, merged by connector_config_defs): every name the
 * connector guide and docs/api.md use is still there with its one default,
 * no name is declared twice, the ranges hold, --help lists them, and the
 * provider timeout falls back to each connector's declared default. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connector.h"
#include "server_config.h"

/* A setting a connector must declare: its name, its one default (NULL:
 * none) and whether it is a secret (never logged, no default shown). */
typedef struct {
    const char *env, *def, *owner;
    int secret;
} wanted_setting;

static void check_declared(const wanted_setting *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const connector *c = connector_find(want[i].owner);
        assert_non_null(c);
        const config_def *d = NULL;
        for (const config_def *p = c->settings; p && p->env && !d; p++)
            if (!strcmp(p->env, want[i].env))
                d = p;
        if (!d)
            fail_msg("%s is not declared by the %s connector", want[i].env, want[i].owner);
        if (want[i].def) {
            if (!d->def || strcmp(d->def, want[i].def))
                fail_msg("%s defaults to %s, the guide says %s", want[i].env,
                         d->def ? d->def : "(nothing)", want[i].def);
        } else if (d->def) {
            fail_msg("%s has a default (%s)", want[i].env, d->def);
        }
        if (d->secret != want[i].secret)
            fail_msg("%s is%s a secret", want[i].env, d->secret ? "" : " not");
        assert_non_null(d->help);
    }
}

/* Names and defaults as the central table had them before issue 10. */
static void test_every_name_and_default_kept(void **state)
{
    (void)state;
    static const wanted_setting want[] = {
        { "CLIENT_ID", NULL, "gcp", 0 },
        { "CLIENT_SECRET", NULL, "gcp", 1 },
        { "GCP_REDIRECT_URI", "http://localhost:5080/callback", "gcp", 0 },
        { "GCP_AUTH_URL", "https://accounts.google.com/o/oauth2/v2/auth", "gcp", 0 },
        { "GCP_TOKEN_URL", "https://oauth2.googleapis.com/token", "gcp", 0 },
        { "GCP_OAUTH_SCOPES", "openid email https://www.googleapis.com/auth/cloud-platform", "gcp", 0 },
        { "GCP_CRM_URL", "https://cloudresourcemanager.googleapis.com", "gcp", 0 },
        { "GCP_MAX_PROJECT_PAGES", "100", "gcp", 0 },
        { "GCP_ALLOWED_TOKEN_HOSTS", "oauth2.googleapis.com,accounts.google.com", "gcp", 0 },
        { "GCP_REVOKE_URL", "https://oauth2.googleapis.com/revoke", "gcp", 0 },
        { "AWS_DEFAULT_REGION", "us-east-1", "aws", 0 },
        { "AWS_STS_ENDPOINT", NULL, "aws", 0 },
        { "AWS_CLI_ENDPOINT_URLS", NULL, "aws", 0 },
        { "AZURE_LOGIN_BASE", "https://login.microsoftonline.com", "azure", 0 },
        { "AZURE_MANAGEMENT_BASE", "https://management.azure.com", "azure", 0 },
        { "AZURE_REDIRECT_URI", "http://localhost:5080/azure/callback", "azure", 0 },
        { "AZURE_CLIENT_SECRET", NULL, "azure", 1 },
        { "AZURE_MAX_SUBSCRIPTION_PAGES", "20", "azure", 0 },
        { "NEXT_PUBLIC_ENABLE_OVH", "false", "ovh", 0 },
        { "OVH_EU_AUTH_BASE", "https://www.ovh.com/auth", "ovh", 0 },
        { "OVH_CA_API_BASE", "https://ca.api.ovh.com/1.0", "ovh", 0 },
        { "OVH_US_CLIENT_SECRET", NULL, "ovh", 1 },
        { "OVH_US_REDIRECT_URI", NULL, "ovh", 0 },
        /* the connector guide's GitHub and Slack settings */
        { "GITHUB_AUTH_MODE", "app", "github", 0 },
        { "GITHUB_APP_ID", NULL, "github", 0 },
        { "GITHUB_APP_CLIENT_ID", NULL, "github", 0 },
        { "NEXT_PUBLIC_GITHUB_APP_SLUG", NULL, "github", 0 },
        { "GITHUB_APP_WEBHOOK_URL", NULL, "github", 0 },
        { "GITHUB_APP_SETUP_URL", NULL, "github", 0 },
        { "GITHUB_APP_WEBHOOK_SECRET", NULL, "github", 1 },
        { "GH_OAUTH_CLIENT_ID", NULL, "github", 0 },
        { "GH_OAUTH_CLIENT_SECRET", NULL, "github", 1 },
        { "GH_OAUTH_REDIRECT_URI", "http://localhost:5080/github/callback", "github", 0 },
        { "SLACK_CLIENT_ID", NULL, "slack", 0 },
        { "SLACK_CLIENT_SECRET", NULL, "slack", 1 },
        { "SLACK_SIGNING_SECRET", NULL, "slack", 1 },
        { "SLACK_REDIRECT_URI", "http://localhost:5080/slack/callback", "slack", 0 },
    };
    check_declared(want, sizeof(want) / sizeof(want[0]));
}

/* The connector guide's second half (Google Chat through Bitbucket; Slack's
 * names are in the table above): the
 * names an operator sets, the defaults it states (the redirect URIs on port
 * 5080, the providers' endpoints) and which are secrets (never logged,
 * never a default shown by --help).  Tests set most of these, so only this
 * holds the defaults. */
static void test_guide_names_defaults_and_secrets(void **state)
{
    (void)state;
    static const wanted_setting want[] = {
        { "GOOGLE_CHAT_CLIENT_ID", NULL, "google_chat", 0 },
        { "GOOGLE_CHAT_CLIENT_SECRET", NULL, "google_chat", 1 },
        { "GOOGLE_CHAT_SERVICE_ACCOUNT_KEY", NULL, "google_chat", 1 },
        { "GOOGLE_CHAT_REDIRECT_URI", "http://localhost:5080/google-chat/callback", "google_chat", 0 },
        { "NEXT_PUBLIC_ENABLE_CONFLUENCE", "false", "atlassian", 0 },
        { "NEXT_PUBLIC_ENABLE_JIRA", "false", "atlassian", 0 },
        { "ATLASSIAN_CLIENT_ID", NULL, "atlassian", 0 },
        { "ATLASSIAN_CLIENT_SECRET", NULL, "atlassian", 1 },
        { "NEXT_PUBLIC_ENABLE_PAGERDUTY_OAUTH", "false", "pagerduty", 0 },
        { "PAGERDUTY_CLIENT_ID", NULL, "pagerduty", 0 },
        { "PAGERDUTY_CLIENT_SECRET", NULL, "pagerduty", 1 },
        { "PAGERDUTY_REDIRECT_URI", "http://localhost:5080/pagerduty/oauth/callback", "pagerduty", 0 },
        { "AURORA_NEWRELIC_US_GRAPHQL_URL", "https://api.newrelic.com/graphql", "newrelic", 0 },
        { "AURORA_NEWRELIC_EU_GRAPHQL_URL", "https://api.eu.newrelic.com/graphql", "newrelic", 0 },
        { "SENTRY_US_BASE_URL", "https://sentry.io", "sentry", 0 },
        { "SENTRY_EU_BASE_URL", "https://de.sentry.io", "sentry", 0 },
        { "BB_OAUTH_CLIENT_ID", NULL, "bitbucket", 0 },
        { "BB_OAUTH_CLIENT_SECRET", NULL, "bitbucket", 1 },
        { "NEXT_PUBLIC_BACKEND_URL", "http://localhost:5080", "bitbucket", 0 },
    };
    check_declared(want, sizeof(want) / sizeof(want[0]));
}

static void test_merged_once_no_duplicates(void **state)
{
    (void)state;
    static const config_def server[] = {
        { "AURORA_UT_ONE", NULL, CFG_STRING, "x", "one", 0 },
    };
    char err[256];
    size_t n = 0;
    const config_def *all = connector_config_defs(server, 1, &n, err, sizeof(err));
    assert_non_null(all);
    assert_string_equal(all[0].env, "AURORA_UT_ONE");
    size_t want = 1;
    for (size_t i = 0; i < connector_count(); i++)
        for (const config_def *p = connector_at(i)->settings; p && p->env; p++)
            want++;
    assert_int_equal(n, want);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (!strcmp(all[i].env, all[j].env))
                fail_msg("%s declared twice", all[i].env);
    /* a server setting a connector also declares is refused with a clear error */
    static const config_def clash[] = {
        { "GCP_CRM_URL", NULL, CFG_STRING, NULL, "clash", 0 },
    };
    assert_null(connector_config_defs(clash, 1, &n, err, sizeof(err)));
    assert_non_null(strstr(err, "GCP_CRM_URL is declared twice"));
    assert_non_null(strstr(err, "gcp"));
}

static void test_loaded_with_ranges_and_help(void **state)
{
    (void)state;
    server_config c;
    char err[256];
    setenv("GCP_MAX_PROJECT_PAGES", "0", 1);
    assert_int_equal(server_config_load(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "GCP_MAX_PROJECT_PAGES must be between 1 and 10000"));
    setenv("GCP_MAX_PROJECT_PAGES", "7", 1);
    setenv("AURORA_PROVIDER_TIMEOUT_MS", "5", 1);
    assert_int_equal(server_config_load(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "AURORA_PROVIDER_TIMEOUT_MS must be between 100 and 600000"));
    unsetenv("AURORA_PROVIDER_TIMEOUT_MS");
    assert_int_equal(server_config_load(&c, err, sizeof(err)), 0);
    assert_int_equal(server_setting_int(&c, "GCP_MAX_PROJECT_PAGES"), 7);
    assert_string_equal(server_setting(&c, "AZURE_REDIRECT_URI"),
                        "http://localhost:5080/azure/callback");
    /* unset: each connector's declared default; set: it wins for all */
    worker_ctx w = { .cfg = &c };
    for (size_t i = 0; i < connector_count(); i++) {
        const connector *k = connector_at(i);
        assert_int_equal(connector_timeout_ms(&w, k),
                         k->timeout_ms > 0 ? k->timeout_ms : CONNECTOR_TIMEOUT_MS);
    }
    assert_int_equal(connector_timeout_ms(&w, connector_find("gcp")), 15000);
    server_config_free(&c);
    setenv("AURORA_PROVIDER_TIMEOUT_MS", "2500", 1);
    assert_int_equal(server_config_load(&c, err, sizeof(err)), 0);
    w.cfg = &c;
    assert_int_equal(connector_timeout_ms(&w, connector_find("azure")), 2500);
    server_config_free(&c);
    unsetenv("AURORA_PROVIDER_TIMEOUT_MS");
    unsetenv("GCP_MAX_PROJECT_PAGES");
    /* --help lists the connectors' settings, never a secret's default */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    server_config_help(f);
    fclose(f);
    assert_non_null(strstr(text, "GCP_REDIRECT_URI"));
    assert_non_null(strstr(text, "OVH_EU_CLIENT_ID"));
    assert_non_null(strstr(text, "AWS_CLI_ENDPOINT_URLS"));
    free(text);
}

/* What a server started with none of them set uses: the guide's port 5080
 * ("the Flask server on port 5080", `ngrok http 5080`) and the redirect
 * URIs it tells users to register for local development. */
static void test_guide_defaults_when_unset(void **state)
{
    (void)state;
    static const char *const names[] = { "AURORA_PORT", "AURORA_ENV", "GITHUB_AUTH_MODE",
                                         "GCP_REDIRECT_URI", "AZURE_REDIRECT_URI",
                                         "GH_OAUTH_REDIRECT_URI", "SLACK_REDIRECT_URI",
                                         "AWS_DEFAULT_REGION", "NEXT_PUBLIC_ENABLE_OVH" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        unsetenv(names[i]);
    server_config c;
    char err[256];
    assert_int_equal(server_config_load(&c, err, sizeof(err)), 0);
    assert_int_equal(c.port, 5080);
    assert_string_equal(c.env, "development");
    assert_string_equal(server_setting(&c, "GITHUB_AUTH_MODE"), "app");
    assert_string_equal(server_setting(&c, "GCP_REDIRECT_URI"), "http://localhost:5080/callback");
    assert_string_equal(server_setting(&c, "AZURE_REDIRECT_URI"),
                        "http://localhost:5080/azure/callback");
    assert_string_equal(server_setting(&c, "GH_OAUTH_REDIRECT_URI"),
                        "http://localhost:5080/github/callback");
    assert_string_equal(server_setting(&c, "SLACK_REDIRECT_URI"),
                        "http://localhost:5080/slack/callback");
    assert_string_equal(server_setting(&c, "AWS_DEFAULT_REGION"), "us-east-1");
    assert_false(config_bool(&c.raw, "NEXT_PUBLIC_ENABLE_OVH"));
    server_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_name_and_default_kept),
        cmocka_unit_test(test_guide_names_defaults_and_secrets),
        cmocka_unit_test(test_merged_once_no_duplicates),
        cmocka_unit_test(test_loaded_with_ranges_and_help),
        cmocka_unit_test(test_guide_defaults_when_unset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
