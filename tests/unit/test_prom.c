/* test_prom.c — the Prometheus registry (server/prom.c): exposition
 * text of each type, label escaping, the series cap, concurrent updates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prom.h"

static int reset(void **state)
{
    (void)state;
    prom_reset();
    return 0;
}

static char *render(void)
{
    buf_t b;
    buf_init(&b);
    assert_int_equal(prom_render(&b), 0);
    buf_append(&b, "", 1);
    return buf_detach(&b, NULL);
}

static void test_counter_and_gauge(void **state)
{
    static const char *const l[] = { "kind", "outcome" };
    prom_family_t *c = prom_family(PROM_COUNTER, "t_total", "A counter", 2, l, NULL, 0);
    assert_non_null(c);
    /* Same name, same shape: the same family. */
    assert_ptr_equal(prom_family(PROM_COUNTER, "t_total", "x", 2, l, NULL, 0), c);
    /* Same name, other shape: refused. */
    assert_null(prom_family(PROM_GAUGE, "t_total", "x", 2, l, NULL, 0));
    const char *v1[] = { "kubectl", "ok" }, *v2[] = { "kubectl", "failed" };
    prom_add(c, v1, 1);
    prom_add(c, v1, 2);
    prom_add(c, v2, 1);
    prom_add(c, v2, -5); /* counters never go down */
    prom_family_t *g = prom_family(PROM_GAUGE, "t_gauge", "A gauge", 0, NULL, NULL, 0);
    prom_set(g, NULL, 7);
    prom_add(g, NULL, -2);
    char *t = render();
    assert_non_null(strstr(t, "# HELP t_total A counter\n# TYPE t_total counter\n"));
    assert_non_null(strstr(t, "t_total{kind=\"kubectl\",outcome=\"ok\"} 3\n"));
    assert_non_null(strstr(t, "t_total{kind=\"kubectl\",outcome=\"failed\"} 1\n"));
    assert_non_null(strstr(t, "# TYPE t_gauge gauge\nt_gauge 5\n"));
    free(t);
}

static void test_histogram(void **state)
{
    static const char *const l[] = { "route" };
    static const double b[] = { 0.1, 1 };
    prom_family_t *h = prom_family(PROM_HISTOGRAM, "t_seconds", "Latency", 1, l, b, 2);
    const char *v[] = { "/x" };
    prom_observe(h, v, 0.05);
    prom_observe(h, v, 0.1); /* le is inclusive */
    prom_observe(h, v, 0.5);
    prom_observe(h, v, 3);
    char *t = render();
    assert_non_null(strstr(t, "t_seconds_bucket{route=\"/x\",le=\"0.1\"} 2\n"));
    assert_non_null(strstr(t, "t_seconds_bucket{route=\"/x\",le=\"1\"} 3\n"));
    assert_non_null(strstr(t, "t_seconds_bucket{route=\"/x\",le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(t, "t_seconds_sum{route=\"/x\"} 3.65\n"));
    assert_non_null(strstr(t, "t_seconds_count{route=\"/x\"} 4\n"));
    free(t);
}

static void test_escaping(void **state)
{
    static const char *const l[] = { "v" };
    prom_family_t *c =
        prom_family(PROM_COUNTER, "t_esc_total", "Help with \\ and\nnewline", 1, l, NULL, 0);
    const char *v[] = { "a\"b\\c\nd" };
    prom_add(c, v, 1);
    char *t = render();
    assert_non_null(strstr(t, "# HELP t_esc_total Help with \\\\ and\\nnewline\n"));
    assert_non_null(strstr(t, "t_esc_total{v=\"a\\\"b\\\\c\\nd\"} 1\n"));
    free(t);
}

/* A label fed from something unbounded cannot grow memory without end. */
static void test_series_cap(void **state)
{
    static const char *const l[] = { "id" };
    prom_family_t *c = prom_family(PROM_COUNTER, "t_cap_total", "Capped", 1, l, NULL, 0);
    char id[32];
    const char *v[] = { id };
    for (int i = 0; i < PROM_MAX_SERIES + 50; i++) {
        snprintf(id, sizeof(id), "id-%d", i);
        prom_add(c, v, 1);
    }
    /* Existing series still count. */
    snprintf(id, sizeof(id), "id-0");
    prom_add(c, v, 1);
    char *t = render();
    assert_non_null(strstr(t, "t_cap_total{id=\"id-0\"} 2\n"));
    assert_null(strstr(t, "id=\"id-2000\""));
    assert_non_null(strstr(t, "aurora_metrics_series_dropped_total 50\n"));
    free(t);
}

static prom_family_t *g_conc;

static void *bump(void *arg)
{
    const char *v[] = { (const char *)arg };
    for (int i = 0; i < 10000; i++)
        prom_add(g_conc, v, 1);
    return NULL;
}

static void test_concurrent_updates(void **state)
{
    static const char *const l[] = { "t" };
    g_conc = prom_family(PROM_COUNTER, "t_conc_total", "Concurrent", 1, l, NULL, 0);
    pthread_t th[4];
    const char *names[4] = { "a", "b", "a", "b" };
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, bump, (void *)names[i]), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    char *t = render();
    assert_non_null(strstr(t, "t_conc_total{t=\"a\"} 20000\n"));
    assert_non_null(strstr(t, "t_conc_total{t=\"b\"} 20000\n"));
    free(t);
}

static void collector(buf_t *out, void *arg)
{
    prom_write_header(out, "t_collected", "From a collector", "gauge");
    prom_write_sample(out, "t_collected", *(double *)arg, "pool", "store", NULL);
}

static void test_collector(void **state)
{
    static double v = 42;
    assert_int_equal(prom_add_collector(collector, &v), 0);
    char *t = render();
    assert_non_null(strstr(t, "# TYPE t_collected gauge\nt_collected{pool=\"store\"} 42\n"));
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_counter_and_gauge, reset),
        cmocka_unit_test_setup(test_histogram, reset),
        cmocka_unit_test_setup(test_escaping, reset),
        cmocka_unit_test_setup(test_series_cap, reset),
        cmocka_unit_test_setup(test_concurrent_updates, reset),
        cmocka_unit_test_setup(test_collector, reset),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    prom_reset();
    return rc;
}
