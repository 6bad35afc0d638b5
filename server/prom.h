/* prom.h — the server's Prometheus registry (text exposition format
 * 0.0.4), rendered on GET /metrics.
 *
 * A family is declared once at start (a counter, gauge or histogram with a
 * fixed list of label names); any thread then records into it with label
 * values.  Series are created on first use.  Label values must come from
 * bounded sets — route patterns, not paths; a connector's name, not a
 * delivery id — which is why every caller in the server passes constants or
 * router patterns.  As a last defence a family stops creating series at
 * PROM_MAX_SERIES and counts what it dropped in
 * aurora_metrics_series_dropped_total.
 *
 * Collectors add values computed at scrape time (queue depths, agents held,
 * process figures) so that nothing polls in the background. */
#ifndef AURORA_PROM_H
#define AURORA_PROM_H

#include <stddef.h>

#include "buf.h"

#define PROM_MAX_LABELS 4
#define PROM_MAX_SERIES 2000

typedef struct prom_family_t prom_family_t;

typedef enum { PROM_COUNTER, PROM_GAUGE, PROM_HISTOGRAM } prom_type;

/* Declares a family (idempotent by name: a second declaration returns the
 * first).  labels: nlabels names; bounds: the histogram's upper bounds,
 * ascending (NULL for the default latency buckets).  NULL when out of
 * memory or the arguments are wrong. */
prom_family_t *prom_family(prom_type type, const char *name, const char *help, int nlabels,
                              const char *const *labels, const double *bounds, int nbounds);

/* Counters: add v (≥ 0); gauges: add v (any sign). values: one per label. */
void prom_add(prom_family_t *f, const char *const *values, double v);
/* Gauges: set to v. */
void prom_set(prom_family_t *f, const char *const *values, double v);
/* Histograms: one observation. */
void prom_observe(prom_family_t *f, const char *const *values, double v);

/* A scrape-time collector: appends complete families (HELP, TYPE, samples)
 * to out.  Runs on the thread serving /metrics; must not block for long. */
typedef void (*prom_collector)(buf_t *out, void *arg);
int prom_add_collector(prom_collector fn, void *arg);

/* Writes every family and collector in the exposition format. */
int prom_render(buf_t *out);

/* Helpers for collectors: one "# HELP/# TYPE" header, one sample line
 * (label pairs as "k1", "v1", "k2", "v2", …, NULL-terminated). */
void prom_write_header(buf_t *out, const char *name, const char *help, const char *type);
void prom_write_sample(buf_t *out, const char *name, double v, ...);

/* Forgets every family and collector (tests). */
void prom_reset(void);

#endif
