/* test_common_config.c — env over YAML file over defaults (common/config.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "free_watch.h"

/* Writes text to a fresh temporary .yaml file; returns its malloc'd path. */
static char *write_yaml(const char *text)
{
    char tmpl[] = "/tmp/aurora_ut_cfg_XXXXXX.yaml";
    int fd = mkstemps(tmpl, 5);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
    return strdup(tmpl);
}

static void drop_yaml(char *path)
{
    unlink(path);
    free(path);
}

static int load_text(config_t *c, const config_def *defs, size_t n, const char *yaml, char *err,
                     size_t errlen)
{
    char *p = write_yaml(yaml);
    int rc = config_load(c, defs, n, p, err, errlen);
    drop_yaml(p);
    return rc;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const config_def basic_defs[] = {
    { "AURORA_UT_CFG_PORT", "server.port", CFG_INT, "5080", "listen port", 0 },
    { "AURORA_UT_CFG_HOST", "server.host", CFG_STRING, "0.0.0.0", "listen address", 0 },
    { "AURORA_UT_CFG_TLS", "server.tls", CFG_BOOL, "true", "serve TLS", 0 },
    { "AURORA_UT_CFG_NAME", "name", CFG_STRING, NULL, "no default", 0 },
    { "AURORA_UT_CFG_ENVONLY", NULL, CFG_STRING, "e", "env only", 0 },
    { "AURORA_UT_CFG_SECRET", "auth.secret", CFG_STRING, "default-secret", "a secret", 1 },
};

static void unset_basic(void)
{
    for (size_t i = 0; i < N(basic_defs); i++)
        unsetenv(basic_defs[i].env);
}

static void test_defaults(void **state)
{
    unset_basic();
    config_t c;
    char err[256] = "";
    assert_int_equal(config_load(&c, basic_defs, N(basic_defs), NULL, err, sizeof(err)), 0);
    assert_int_equal(config_int(&c, "AURORA_UT_CFG_PORT"), 5080);
    assert_string_equal(config_str(&c, "AURORA_UT_CFG_PORT"), "5080");
    assert_string_equal(config_str(&c, "AURORA_UT_CFG_HOST"), "0.0.0.0");
    assert_true(config_bool(&c, "AURORA_UT_CFG_TLS"));
    assert_null(config_str(&c, "AURORA_UT_CFG_NAME"));
    assert_int_equal(config_int(&c, "AURORA_UT_CFG_NAME"), 0);
    assert_false(config_bool(&c, "AURORA_UT_CFG_NAME"));
    assert_string_equal(config_str(&c, "AURORA_UT_CFG_ENVONLY"), "e");
    for (size_t i = 0; i < N(basic_defs); i++)
        assert_string_equal(c.source[i], "default");
    /* Unknown names. */
    assert_null(config_str(&c, "AURORA_UT_CFG_NOPE"));
    assert_int_equal(config_int(&c, "AURORA_UT_CFG_NOPE"), 0);
    assert_false(config_bool(&c, "AURORA_UT_CFG_NOPE"));
    config_free(&c);
    assert_null(c.values);
    config_free(&c); /* twice is fine */

    /* "" path means no file. */
    assert_int_equal(config_load(&c, basic_defs, N(basic_defs), "", err, sizeof(err)), 0);
    assert_int_equal(config_int(&c, "AURORA_UT_CFG_PORT"), 5080);
    config_free(&c);
}

static void test_precedence(void **state)
{
    unset_basic();
    config_t c;
    char err[256] = "";
    const char *yaml = "server:\n"
                       "  port: 6000\n"
                       "  host: file-host\n"
                       "name: from-file\n";
    assert_int_equal(load_text(&c, basic_defs, N(basic_defs), yaml, err, sizeof(err)), 0);
    assert_int_equal(config_int(&c, "AURORA_UT_CFG_PORT"), 6000);
    assert_string_equal(c.source[0], "file");
    assert_string_equal(config_str(&c, "AURORA_UT_CFG_HOST"), "file-host");
    assert_string_equal(config_str(&c, "AURORA_UT_CFG_NAME"), "from-file");
    assert_true(config_bool(&c, "AURORA_UT_CFG_TLS"));
    assert_string_equal(c.source[2], "default");
    config_free(&c);

    setenv("AURORA_UT_CFG_PORT", "7000", 1);
    setenv("AURORA_UT_CFG_TLS", "false", 1);
    setenv("AURORA_UT_CFG_ENVONLY", "set", 1);
    setenv("AURORA_UT_CFG_NAME", "", 1); /* set but empty is still "set" */
    assert_int_equal(load_text(&c, basic_defs, N(basic_defs), yaml, err, sizeof(err)), 0);
    assert_int_equal(config_int(&c, "AURORA_UT_CFG_PORT"), 7000);
    assert_string_equal(c.source[0], "env");
    assert_string_equal(config_str(&c, "AURORA_UT_CFG_HOST"), "file-host");
    assert_string_equal(c.source[1], "file");
    assert_false(config_bool(&c, "AURORA_UT_CFG_TLS"));
    assert_string_equal(c.source[2], "env");
    assert_string_equal(config_str(&c, "AURORA_UT_CFG_ENVONLY"), "set");
    assert_string_equal(config_str(&c, "AURORA_UT_CFG_NAME"), "");
    config_free(&c);
    unset_basic();
}

static void test_env_only_ignores_file(void **state)
{
    unset_basic();
    config_t c;
    char err[256] = "";
    /* A YAML key that happens to equal the env name is not used for env-only settings. */
    assert_int_equal(load_text(&c, basic_defs, N(basic_defs), "AURORA_UT_CFG_ENVONLY: nope\n",
                               err, sizeof(err)),
                     0);
    assert_string_equal(config_str(&c, "AURORA_UT_CFG_ENVONLY"), "e");
    config_free(&c);
}

static void test_nested_flow_and_block(void **state)
{
    const config_def defs[] = {
        { "AURORA_UT_CFG_ABC", "a.b.c", CFG_INT, "0", "", 0 },
        { "AURORA_UT_CFG_AB", "a.b", CFG_STRING, "unset", "", 0 },
        { "AURORA_UT_CFG_C", "c", CFG_STRING, "unset", "", 0 },
    };
    config_t c;
    char err[256] = "";
    assert_int_equal(load_text(&c, defs, N(defs), "a: {b: {c: 1}}\n", err, sizeof(err)), 0);
    assert_int_equal(config_int(&c, "AURORA_UT_CFG_ABC"), 1);
    assert_string_equal(c.source[0], "file");
    assert_string_equal(config_str(&c, "AURORA_UT_CFG_AB"), "unset");
    assert_string_equal(config_str(&c, "AURORA_UT_CFG_C"), "unset");
    config_free(&c);

    assert_int_equal(load_text(&c, defs, N(defs), "a:\n  b:\n    c: 2\n", err, sizeof(err)), 0);
    assert_int_equal(config_int(&c, "AURORA_UT_CFG_ABC"), 2);
    assert_string_equal(config_str(&c, "AURORA_UT_CFG_C"), "unset");
    config_free(&c);

    /* Mixed: block outer, flow inner; comments; quoted scalars. */
    assert_int_equal(load_text(&c, defs, N(defs),
                               "# comment\n"
                               "a:\n"
                               "  b: {\"c\": '3'}   # trailing\n"
                               "c: \"quoted value\"\n",
                               err, sizeof(err)),
                     0);
    assert_int_equal(config_int(&c, "AURORA_UT_CFG_ABC"), 3);
    assert_string_equal(config_str(&c, "AURORA_UT_CFG_C"), "quoted value");
    config_free(&c);

    /* a.b as a scalar, not a mapping. */
    assert_int_equal(load_text(&c, defs, N(defs), "a: {b: leaf}\nc: x\n", err, sizeof(err)),
                     0);
    assert_string_equal(config_str(&c, "AURORA_UT_CFG_AB"), "leaf");
    assert_string_equal(c.source[0], "default");
    assert_string_equal(config_str(&c, "AURORA_UT_CFG_C"), "x");
    config_free(&c);
}

/* The flattening of sibling nested mappings. */
static const config_def sib_defs[] = {
    { "AURORA_UT_SIB_RECONNECT", "network.reconnect", CFG_INT, "-1", "", 0 },
    { "AURORA_UT_SIB_HEARTBEAT", "network.heartbeat", CFG_INT, "-1", "", 0 },
    { "AURORA_UT_SIB_LEVEL", "monitoring.logging.level", CFG_STRING, "unset", "", 0 },
    { "AURORA_UT_SIB_FORMAT", "monitoring.logging.format", CFG_STRING, "unset", "", 0 },
    { "AURORA_UT_SIB_MPORT", "monitoring.metrics.port", CFG_INT, "-1", "", 0 },
    { "AURORA_UT_SIB_TOP", "top", CFG_STRING, "unset", "", 0 },
    /* Keys that a wrong flattening would produce. */
    { "AURORA_UT_SIB_W1", "reconnect", CFG_STRING, "unset", "", 0 },
    { "AURORA_UT_SIB_W2", "heartbeat", CFG_STRING, "unset", "", 0 },
    { "AURORA_UT_SIB_W3", "monitoring.level", CFG_STRING, "unset", "", 0 },
    { "AURORA_UT_SIB_W4", "logging.level", CFG_STRING, "unset", "", 0 },
    { "AURORA_UT_SIB_W5", "monitoring.metrics.level", CFG_STRING, "unset", "", 0 },
    { "AURORA_UT_SIB_W6", "monitoring.logging.port", CFG_STRING, "unset", "", 0 },
    { "AURORA_UT_SIB_W7", "network.monitoring.logging.level", CFG_STRING, "unset", "", 0 },
    { "AURORA_UT_SIB_W8", "monitoring.top", CFG_STRING, "unset", "", 0 },
    { "AURORA_UT_SIB_W9", "monitoring.metrics.top", CFG_STRING, "unset", "", 0 },
    { "AURORA_UT_SIB_W10", "network.top", CFG_STRING, "unset", "", 0 },
    { "AURORA_UT_SIB_W11", "monitoring.port", CFG_STRING, "unset", "", 0 },
    { "AURORA_UT_SIB_W12", "metrics.port", CFG_STRING, "unset", "", 0 },
    { "AURORA_UT_SIB_W13", "network.logging.level", CFG_STRING, "unset", "", 0 },
    { "AURORA_UT_SIB_W14", "monitoring.logging.metrics.port", CFG_STRING, "unset", "", 0 },
    { "AURORA_UT_SIB_W15", "monitoring", CFG_STRING, "unset", "", 0 },
    { "AURORA_UT_SIB_W16", "network", CFG_STRING, "unset", "", 0 },
};

static void check_siblings(const char *yaml)
{
    config_t c;
    char err[256] = "";
    if (load_text(&c, sib_defs, N(sib_defs), yaml, err, sizeof(err)) != 0)
        fail_msg("load failed: %s\n%s", err, yaml);
    assert_int_equal(config_int(&c, "AURORA_UT_SIB_RECONNECT"), 5);
    assert_int_equal(config_int(&c, "AURORA_UT_SIB_HEARTBEAT"), 30);
    assert_string_equal(config_str(&c, "AURORA_UT_SIB_LEVEL"), "debug");
    assert_string_equal(config_str(&c, "AURORA_UT_SIB_FORMAT"), "json");
    assert_int_equal(config_int(&c, "AURORA_UT_SIB_MPORT"), 9090);
    assert_string_equal(config_str(&c, "AURORA_UT_SIB_TOP"), "x");
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(c.source[i], "file");
    for (size_t i = 6; i < N(sib_defs); i++) {
        if (strcmp(c.values[i], "unset"))
            fail_msg("bogus key %s = %s from:\n%s", sib_defs[i].yaml, c.values[i], yaml);
        assert_string_equal(c.source[i], "default");
    }
    config_free(&c);
}

static void test_sibling_nested_mappings(void **state)
{
    check_siblings("network: {reconnect: 5, heartbeat: 30}\n"
                   "monitoring: {logging: {level: debug, format: json}, metrics: {port: 9090}}\n"
                   "top: x\n");
    check_siblings("network:\n"
                   "  reconnect: 5\n"
                   "  heartbeat: 30\n"
                   "monitoring:\n"
                   "  logging:\n"
                   "    level: debug\n"
                   "    format: json\n"
                   "  metrics:\n"
                   "    port: 9090\n"
                   "top: x\n");
    /* Different order: scalar first, deepest mapping last. */
    check_siblings("top: x\n"
                   "monitoring:\n"
                   "  metrics: {port: 9090}\n"
                   "  logging: {format: json, level: debug}\n"
                   "network: {heartbeat: 30, reconnect: 5}\n");
    /* Everything in one flow mapping. */
    check_siblings("{network: {reconnect: 5, heartbeat: 30}, monitoring: {logging: {level: "
                   "debug, format: json}, metrics: {port: 9090}}, top: x}\n");
    /* Empty mappings and nulls between the real ones. */
    check_siblings("empty: {}\n"
                   "network: {reconnect: 5, nothing: {}, heartbeat: 30}\n"
                   "monitoring:\n"
                   "  logging: {level: debug, deeper: {a: {b: {}}}, format: json}\n"
                   "  nul:\n"
                   "  metrics: {port: 9090}\n"
                   "top: x\n");
    /* Scalar siblings after nested mappings at the inner level. */
    check_siblings("network: {reconnect: 5, heartbeat: 30}\n"
                   "monitoring:\n"
                   "  logging:\n"
                   "    sub: {k: v}\n"
                   "    level: debug\n"
                   "    sub2: {k: v}\n"
                   "    format: json\n"
                   "  extra: 1\n"
                   "  metrics:\n"
                   "    port: 9090\n"
                   "top: x\n");
    /* Two documents in one stream. */
    check_siblings("network: {reconnect: 5, heartbeat: 30}\n"
                   "---\n"
                   "monitoring: {logging: {level: debug, format: json}, metrics: {port: 9090}}\n"
                   "top: x\n");
}

static void test_same_key_different_levels(void **state)
{
    const config_def defs[] = {
        { "AURORA_UT_LVL_1", "port", CFG_INT, "0", "", 0 },
        { "AURORA_UT_LVL_2", "server.port", CFG_INT, "0", "", 0 },
        { "AURORA_UT_LVL_3", "metrics.server.port", CFG_INT, "0", "", 0 },
        { "AURORA_UT_LVL_4", "metrics.port", CFG_INT, "0", "", 0 },
    };
    config_t c;
    char err[256] = "";
    assert_int_equal(load_text(&c, defs, N(defs),
                               "server: {port: 2}\n"
                               "metrics: {server: {port: 3}, port: 4}\n"
                               "port: 1\n",
                               err, sizeof(err)),
                     0);
    assert_int_equal(config_int(&c, "AURORA_UT_LVL_1"), 1);
    assert_int_equal(config_int(&c, "AURORA_UT_LVL_2"), 2);
    assert_int_equal(config_int(&c, "AURORA_UT_LVL_3"), 3);
    assert_int_equal(config_int(&c, "AURORA_UT_LVL_4"), 4);
    config_free(&c);
}

static void test_deep_nesting(void **state)
{
    const config_def defs[] = {
        { "AURORA_UT_DEEP", "k1.k2.k3.k4.k5.k6.k7.k8.k9.k10.k11.k12.k13.k14.k15.k16", CFG_INT,
          "0", "", 0 },
        { "AURORA_UT_DEEP_SIB", "k1.k2.after", CFG_INT, "0", "", 0 },
    };
    char yaml[1024] = "";
    for (int i = 1; i <= 15; i++) {
        char piece[16];
        snprintf(piece, sizeof(piece), "k%d: {", i);
        strcat(yaml, piece);
    }
    strcat(yaml, "k16: 16");
    for (int i = 15; i >= 3; i--)
        strcat(yaml, "}");
    strcat(yaml, ", after: 7}}\n");
    config_t c;
    char err[256] = "";
    if (load_text(&c, defs, N(defs), yaml, err, sizeof(err)) != 0)
        fail_msg("%s\n%s", err, yaml);
    assert_int_equal(config_int(&c, "AURORA_UT_DEEP"), 16);
    assert_int_equal(config_int(&c, "AURORA_UT_DEEP_SIB"), 7);
    config_free(&c);

    /* 17 levels is too deep. */
    strcpy(yaml, "");
    for (int i = 1; i <= 17; i++)
        strcat(yaml, "k: {");
    strcat(yaml, "v: 1");
    for (int i = 1; i <= 17; i++)
        strcat(yaml, "}");
    memset(err, 0, sizeof(err));
    assert_int_equal(load_text(&c, defs, N(defs), yaml, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "deep"));
}

static void test_invalid_yaml(void **state)
{
    config_t c;
    char err[256];
    const char *bad[] = {
        "a: 1\nb: c: d\n",          /* mapping value in a plain scalar */
        "a: 1\nb: {x: 1\n",         /* unclosed flow mapping */
        "a: 1\nb: \"unterminated\n", /* unterminated quote */
        "a: 1\n\tb: 2\n",           /* tab indentation */
        "a: 1\n  b: 2\n",           /* bad indentation */
    };
    for (size_t i = 0; i < N(bad); i++) {
        char *p = write_yaml(bad[i]);
        memset(err, 0, sizeof(err));
        assert_int_equal(config_load(&c, basic_defs, N(basic_defs), p, err, sizeof(err)), -1);
        if (!strstr(err, p))
            fail_msg("error '%s' does not name the file %s", err, p);
        if (!strstr(err, "line "))
            fail_msg("error '%s' gives no line", err);
        assert_null(c.values);
        drop_yaml(p);
    }
    /* The line is the right one. */
    char *p = write_yaml("a: 1\nb: 2\nc: 3\nd: e: f\n");
    assert_int_equal(config_load(&c, basic_defs, N(basic_defs), p, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "line 4"));
    drop_yaml(p);
}

static void test_sequences_rejected(void **state)
{
    config_t c;
    char err[256];
    const char *bad[] = {
        "a: [1, 2]\n",
        "a:\n  - 1\n  - 2\n",
        "- a\n- b\n",
        "server: {port: 1, hosts: [a, b]}\n",
        "unused_key: []\n",
    };
    for (size_t i = 0; i < N(bad); i++) {
        char *p = write_yaml(bad[i]);
        memset(err, 0, sizeof(err));
        assert_int_equal(config_load(&c, basic_defs, N(basic_defs), p, err, sizeof(err)), -1);
        assert_non_null(strstr(err, p));
        assert_non_null(strstr(err, "list"));
        drop_yaml(p);
    }
}

static void test_aliases_and_complex_keys_rejected(void **state)
{
    config_t c;
    char err[256];
    const char *bad[] = {
        /* Skipping the alias used to shift every later pair (server.port = "host"). */
        "base: &b 5\nserver: {port: *b, host: h}\n",
        "srv: &s {port: 1}\nserver: *s\n",
        "? {a: 1}\n: 2\nname: x\n",
    };
    for (size_t i = 0; i < N(bad); i++) {
        char *p = write_yaml(bad[i]);
        memset(err, 0, sizeof(err));
        assert_int_equal(config_load(&c, basic_defs, N(basic_defs), p, err, sizeof(err)), -1);
        assert_non_null(strstr(err, p));
        assert_non_null(strstr(err, "line"));
        drop_yaml(p);
    }
    /* An anchor alone is harmless. */
    unset_basic();
    assert_int_equal(load_text(&c, basic_defs, N(basic_defs), "server: {port: &p 6001}\n", err,
                               sizeof(err)),
                     0);
    assert_int_equal(config_int(&c, "AURORA_UT_CFG_PORT"), 6001);
    config_free(&c);
}

static void test_bare_and_empty_documents(void **state)
{
    unset_basic();
    config_t c;
    char err[256] = "";
    assert_int_equal(load_text(&c, basic_defs, N(basic_defs), "", err, sizeof(err)), 0);
    assert_int_equal(config_int(&c, "AURORA_UT_CFG_PORT"), 5080);
    config_free(&c);
    assert_int_equal(load_text(&c, basic_defs, N(basic_defs), "# only a comment\n", err,
                               sizeof(err)),
                     0);
    config_free(&c);
    assert_int_equal(load_text(&c, basic_defs, N(basic_defs), "just a scalar\n", err,
                               sizeof(err)),
                     0);
    assert_int_equal(config_int(&c, "AURORA_UT_CFG_PORT"), 5080);
    config_free(&c);
}

static void test_int_validation(void **state)
{
    unset_basic();
    config_t c;
    char err[256];
    const char *bad[] = { "abc", "12abc", "1.5", "0x10", "99999999999999999999", "5 ", "-" };
    for (size_t i = 0; i < N(bad); i++) {
        setenv("AURORA_UT_CFG_PORT", bad[i], 1);
        memset(err, 0, sizeof(err));
        assert_int_equal(config_load(&c, basic_defs, N(basic_defs), NULL, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "AURORA_UT_CFG_PORT"));
        assert_non_null(strstr(err, "integer"));
        assert_null(c.values);
    }
    /* Set but empty (as a Helm template renders an unset value) means "use the default". */
    setenv("AURORA_UT_CFG_PORT", "", 1);
    assert_int_equal(config_load(&c, basic_defs, N(basic_defs), NULL, err, sizeof(err)), 0);
    assert_int_equal(config_int(&c, "AURORA_UT_CFG_PORT"), 5080);
    assert_string_equal(c.source[0], "default");
    config_free(&c);
    unsetenv("AURORA_UT_CFG_PORT");
    /* From the file too. */
    memset(err, 0, sizeof(err));
    assert_int_equal(load_text(&c, basic_defs, N(basic_defs), "server: {port: eighty}\n", err,
                               sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "AURORA_UT_CFG_PORT"));
    assert_non_null(strstr(err, "eighty"));
    /* A bad default is caught as well. */
    const config_def baddef[] = { { "AURORA_UT_CFG_BADDEF", NULL, CFG_INT, "ten", "", 0 } };
    unsetenv("AURORA_UT_CFG_BADDEF");
    assert_int_equal(config_load(&c, baddef, 1, NULL, err, sizeof(err)), -1);

    const char *good[] = { "0", "-5", "+7", "9223372036854775807", "-9223372036854775808" };
    const int64_t want[] = { 0, -5, 7, INT64_MAX, INT64_MIN };
    for (size_t i = 0; i < N(good); i++) {
        setenv("AURORA_UT_CFG_PORT", good[i], 1);
        assert_int_equal(config_load(&c, basic_defs, N(basic_defs), NULL, err, sizeof(err)), 0);
        assert_true(config_int(&c, "AURORA_UT_CFG_PORT") == want[i]);
        config_free(&c);
    }
    unsetenv("AURORA_UT_CFG_PORT");
}

static void test_bool_parsing(void **state)
{
    unset_basic();
    config_t c;
    char err[256];
    const char *truthy[] = { "true", "TRUE", "True", "1", "yes", "YES", "Yes" };
    const char *falsy[] = { "false", "FALSE", "False", "0", "no", "NO", "No" };
    for (size_t i = 0; i < N(truthy); i++) {
        setenv("AURORA_UT_CFG_TLS", truthy[i], 1);
        assert_int_equal(config_load(&c, basic_defs, N(basic_defs), NULL, err, sizeof(err)), 0);
        assert_int_equal(config_bool(&c, "AURORA_UT_CFG_TLS"), 1);
        config_free(&c);
    }
    for (size_t i = 0; i < N(falsy); i++) {
        setenv("AURORA_UT_CFG_TLS", falsy[i], 1);
        assert_int_equal(config_load(&c, basic_defs, N(basic_defs), NULL, err, sizeof(err)), 0);
        assert_int_equal(config_bool(&c, "AURORA_UT_CFG_TLS"), 0);
        config_free(&c);
    }
    const char *bad[] = { "maybe", "2", "tru", "yes please", "-1" };
    for (size_t i = 0; i < N(bad); i++) {
        setenv("AURORA_UT_CFG_TLS", bad[i], 1);
        memset(err, 0, sizeof(err));
        assert_int_equal(config_load(&c, basic_defs, N(basic_defs), NULL, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "AURORA_UT_CFG_TLS"));
        assert_non_null(strstr(err, "boolean"));
    }
    setenv("AURORA_UT_CFG_TLS", "", 1);
    assert_int_equal(config_load(&c, basic_defs, N(basic_defs), NULL, err, sizeof(err)), 0);
    config_free(&c);
    unsetenv("AURORA_UT_CFG_TLS");
    /* YAML booleans in the file. */
    assert_int_equal(load_text(&c, basic_defs, N(basic_defs), "server: {tls: false}\n", err,
                               sizeof(err)),
                     0);
    assert_int_equal(config_bool(&c, "AURORA_UT_CFG_TLS"), 0);
    config_free(&c);
    assert_int_equal(load_text(&c, basic_defs, N(basic_defs), "server:\n  tls: yes\n", err,
                               sizeof(err)),
                     0);
    assert_int_equal(config_bool(&c, "AURORA_UT_CFG_TLS"), 1);
    config_free(&c);
}

static void test_missing_file(void **state)
{
    config_t c;
    char err[256] = "";
    const char *p = "/tmp/aurora_ut_cfg_does_not_exist_8c1f.yaml";
    unlink(p);
    assert_int_equal(config_load(&c, basic_defs, N(basic_defs), p, err, sizeof(err)), -1);
    assert_non_null(strstr(err, p));
    assert_null(c.values);
    /* A directory is not a config file either. */
    memset(err, 0, sizeof(err));
    assert_int_equal(config_load(&c, basic_defs, N(basic_defs), "/tmp", err, sizeof(err)), -1);
    assert_true(strlen(err) > 0);
}

/* A file every local user may change would let any of them set the
 * settings (the agent's server URL, CA and policy; the server's database and
 * secrets backend): refused, naming the file and the fix.  Group write is the
 * operator's (a umask of 002 gives 0664). */
static void test_world_writable_file_refused(void **state)
{
    unset_basic();
    char *p = write_yaml("server:\n  port: 7000\n");
    config_t c;
    char err[256] = "";
    assert_int_equal(chmod(p, 0666), 0);
    assert_int_equal(config_load(&c, basic_defs, N(basic_defs), p, err, sizeof(err)), -1);
    assert_non_null(strstr(err, p));
    assert_non_null(strstr(err, "writable by every user"));
    assert_null(c.values);
    assert_int_equal(chmod(p, 0664), 0);
    memset(err, 0, sizeof(err));
    assert_int_equal(config_load(&c, basic_defs, N(basic_defs), p, err, sizeof(err)), 0);
    assert_string_equal(config_str(&c, "AURORA_UT_CFG_PORT"), "7000");
    config_free(&c);
    drop_yaml(p);
}

static void test_secrets_not_in_errors(void **state)
{
    const config_def defs[] = {
        { "AURORA_UT_SEC_INT", "auth.pin", CFG_INT, NULL, "", 1 },
        { "AURORA_UT_SEC_BOOL", "auth.flag", CFG_BOOL, NULL, "", 1 },
        { "AURORA_UT_SEC_STR", "auth.token", CFG_STRING, NULL, "", 1 },
    };
    const char *secret = "aurora_kubectl_S3cr3tS3cr3tS3cr3t";
    config_t c;
    char err[512];
    for (int k = 0; k < 2; k++) {
        const char *env = k ? "AURORA_UT_SEC_BOOL" : "AURORA_UT_SEC_INT";
        setenv(env, secret, 1);
        memset(err, 0, sizeof(err));
        assert_int_equal(config_load(&c, defs, N(defs), NULL, err, sizeof(err)), -1);
        assert_non_null(strstr(err, env));
        assert_null(strstr(err, "S3cr3t"));
        unsetenv(env);
    }
    /* From the file. */
    char yaml[256];
    snprintf(yaml, sizeof(yaml), "auth:\n  pin: %s\n", secret);
    memset(err, 0, sizeof(err));
    assert_int_equal(load_text(&c, defs, N(defs), yaml, err, sizeof(err)), -1);
    assert_null(strstr(err, "S3cr3t"));
    /* A YAML syntax error on the secret's line. */
    const char *broken[] = { "auth:\n  token: \"%s\n", "auth:\n  token: %s: x\n",
                             "auth:\n  token: [%s\n", "auth:\n  token: %s\n   bad: 1\n" };
    for (size_t i = 0; i < N(broken); i++) {
        snprintf(yaml, sizeof(yaml), broken[i], secret);
        memset(err, 0, sizeof(err));
        assert_int_equal(load_text(&c, defs, N(defs), yaml, err, sizeof(err)), -1);
        assert_true(strlen(err) > 0);
        if (strstr(err, "S3cr3t"))
            fail_msg("secret leaked in '%s'", err);
    }
    /* A secret that is valid is of course loaded. */
    snprintf(yaml, sizeof(yaml), "auth:\n  token: %s\n", secret);
    assert_int_equal(load_text(&c, defs, N(defs), yaml, err, sizeof(err)), 0);
    assert_string_equal(config_str(&c, "AURORA_UT_SEC_STR"), secret);
    config_free(&c);

    /* A non-secret value is shown (so the check above means something). */
    setenv("AURORA_UT_CFG_PORT", "not-a-port", 1);
    assert_int_equal(config_load(&c, basic_defs, N(basic_defs), NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not-a-port"));
    unsetenv("AURORA_UT_CFG_PORT");
}

/* A secret setting (the agent's token) is kept once, by its owner: the
 * config's own copies are wiped before they are freed. */
static void test_secret_values_wiped_when_freed(void **state)
{
    (void)state;
    const config_def defs[] = {
        { "AURORA_UT_SEC_STR", "auth.token", CFG_STRING, NULL, "", 1 },
    };
    static const char secret[] = "aurora_kubectl_Fr33dTok3nFr33dTok3n";
    config_t c;
    char err[512] = "";
    setenv("AURORA_UT_SEC_STR", secret, 1);
    assert_true(free_watch_arm(secret));
    assert_int_equal(config_load(&c, defs, N(defs), NULL, err, sizeof(err)), 0);
    assert_string_equal(config_str(&c, "AURORA_UT_SEC_STR"), secret);
    config_free(&c);
    assert_int_equal(free_watch_disarm(), 0);
    unsetenv("AURORA_UT_SEC_STR");

    /* from the file (libyaml's own buffers are out of reach: the config's
     * copy is checked) */
    char yaml[256];
    snprintf(yaml, sizeof(yaml), "auth:\n  token: %s\n", secret);
    assert_int_equal(load_text(&c, defs, N(defs), yaml, err, sizeof(err)), 0);
    assert_true(free_watch_arm(secret));
    config_free(&c);
    assert_int_equal(free_watch_disarm(), 0);
}

static void test_print_help(void **state)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    config_print_help(f, basic_defs, N(basic_defs));
    fclose(f);
    assert_non_null(strstr(text, "AURORA_UT_CFG_PORT"));
    assert_non_null(strstr(text, "listen port"));
    assert_non_null(strstr(text, "server.port"));
    assert_non_null(strstr(text, "5080"));
    assert_non_null(strstr(text, "AURORA_UT_CFG_SECRET"));
    assert_null(strstr(text, "default-secret"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_secret_values_wiped_when_freed),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_env_only_ignores_file),
        cmocka_unit_test(test_nested_flow_and_block),
        cmocka_unit_test(test_sibling_nested_mappings),
        cmocka_unit_test(test_same_key_different_levels),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_invalid_yaml),
        cmocka_unit_test(test_sequences_rejected),
        cmocka_unit_test(test_aliases_and_complex_keys_rejected),
        cmocka_unit_test(test_bare_and_empty_documents),
        cmocka_unit_test(test_int_validation),
        cmocka_unit_test(test_bool_parsing),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_world_writable_file_refused),
        cmocka_unit_test(test_secrets_not_in_errors),
        cmocka_unit_test(test_print_help),
    };
    return cmocka_run_group_tests_name("common_config", tests, NULL, NULL);
}
