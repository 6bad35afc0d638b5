/* metrics.h — the server's Prometheus registry (text exposition format
 * 0.0.4), rendered on GET /metrics.
 *
 * A family is declared once at start (a counter, gauge or histogram with a
 * fixed list of label names); any thread then records into it with label
 * values.  Series are created on first use.  Label values must come from
 * bounded sets — route patterns, not paths; a connector's name, not a
 * delivery id — which is why every caller in the server passes constants or
 * router patterns.  As a last defence a family stops creating series at
 * METRICS_MAX_SERIES and counts what it dropped in
 * aurora_metrics_series_dropped_total.
 *
 * Collectors add values computed at scrape time (queue depths, agents held,
 * process figures) so that nothing polls in the background. */
#ifndef AURORA_METRICS_H
#define AURORA_METRICS_H

#include <stddef.h>

#include "buf.h"

#define METRICS_MAX_LABELS 4
#define METRICS_MAX_SERIES 2000

typedef struct metric_family metric_family;

typedef enum { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM } metric_type;

/* Declares a family (idempotent by name: a second declaration returns the
 * first).  labels: nlabels names; bounds: the histogram's upper bounds,
 * ascending (NULL for the default latency buckets).  NULL when out of
 * memory or the arguments are wrong. */
metric_family *metrics_family(metric_type type, const char *name, const char *help, int nlabels,
                              const char *const *labels, const double *bounds, int nbounds);

/* Counters: add v (≥ 0); gauges: add v (any sign). values: one per label. */
void metrics_add(metric_family *f, const char *const *values, double v);
/* Gauges: set to v. */
void metrics_set(metric_family *f, const char *const *values, double v);
/* Histograms: one observation. */
void metrics_observe(metric_family *f, const char *const *values, double v);

/* A scrape-time collector: appends complete families (HELP, TYPE, samples)
 * to out.  Runs on the thread serving /metrics; must not block for long. */
typedef void (*metrics_collector)(buf_t *out, void *arg);
int metrics_add_collector(metrics_collector fn, void *arg);

/* Writes every family and collector in the exposition format. */
int metrics_render(buf_t *out);

/* Helpers for collectors: one "# HELP/# TYPE" header, one sample line
 * (label pairs as "k1", "v1", "k2", "v2", …, NULL-terminated). */
void metrics_write_header(buf_t *out, const char *name, const char *help, const char *type);
void metrics_write_sample(buf_t *out, const char *name, double v, ...);

/* Forgets every family and collector (tests). */
void metrics_reset(void);

#endif
