/* prom.c — Prometheus registry and text exposition; see prom.h. */
#include "prom.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FAMILIES 64
#define MAX_COLLECTORS 16
#define MAX_BOUNDS 16

typedef struct {
    uint64_t hash;
    char *values[PROM_MAX_LABELS];
    double value;       /* counter, gauge */
    uint64_t *buckets;  /* histogram: per-bucket counts (not cumulative) */
    uint64_t count;
    double sum;
} series;

struct prom_family_t {
    prom_type type;
    char *name;
    char *help;
    int nlabels;
    char *labels[PROM_MAX_LABELS];
    double bounds[MAX_BOUNDS];
    int nbounds;
    pthread_mutex_t mu;
    series *s;
    size_t n, cap;
};

static const double default_bounds[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                         0.5,   1,    2.5,   5,    10,  30 };

static struct {
    pthread_mutex_t mu;
    prom_family_t *fam[MAX_FAMILIES];
    int nfam;
    prom_collector col[MAX_COLLECTORS];
    void *col_arg[MAX_COLLECTORS];
    int ncol;
    uint64_t dropped; /* series refused past PROM_MAX_SERIES */
} R = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void family_free(prom_family_t *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++) {
        for (int k = 0; k < f->nlabels; k++)
            free(f->s[i].values[k]);
        free(f->s[i].buckets);
    }
    free(f->s);
    for (int k = 0; k < f->nlabels; k++)
        free(f->labels[k]);
    free(f->name);
    free(f->help);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

prom_family_t *prom_family(prom_type type, const char *name, const char *help, int nlabels,
                              const char *const *labels, const double *bounds, int nbounds)
{
    if (!name || !help || nlabels < 0 || nlabels > PROM_MAX_LABELS || nbounds > MAX_BOUNDS)
        return NULL;
    pthread_mutex_lock(&R.mu);
    for (int i = 0; i < R.nfam; i++) {
        if (!strcmp(R.fam[i]->name, name)) {
            prom_family_t *f = R.fam[i];
            pthread_mutex_unlock(&R.mu);
            return f->type == type && f->nlabels == nlabels ? f : NULL;
        }
    }
    prom_family_t *f = R.nfam < MAX_FAMILIES ? calloc(1, sizeof(*f)) : NULL;
    if (!f) {
        pthread_mutex_unlock(&R.mu);
        return NULL;
    }
    pthread_mutex_init(&f->mu, NULL);
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help);
    f->nlabels = nlabels;
    int ok = f->name && f->help;
    for (int k = 0; k < nlabels; k++)
        ok &= (f->labels[k] = strdup(labels[k])) != NULL;
    if (type == PROM_HISTOGRAM) {
        if (!bounds) {
            bounds = default_bounds;
            nbounds = (int)(sizeof(default_bounds) / sizeof(default_bounds[0]));
        }
        memcpy(f->bounds, bounds, sizeof(double) * (size_t)nbounds);
        f->nbounds = nbounds;
    }
    if (!ok) {
        pthread_mutex_unlock(&R.mu);
        family_free(f);
        return NULL;
    }
    R.fam[R.nfam++] = f;
    pthread_mutex_unlock(&R.mu);
    return f;
}

static uint64_t hash_values(const prom_family_t *f, const char *const *values)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (int k = 0; k < f->nlabels; k++) {
        for (const char *p = values[k] ? values[k] : ""; *p; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ULL;
        h = (h ^ 0xff) * 1099511628211ULL; /* separator: ("ab","c") != ("a","bc") */
    }
    return h;
}

/* The series for values, created if new; NULL when full or out of memory.
 * Caller holds f->mu. */
static series *find(prom_family_t *f, const char *const *values)
{
    uint64_t h = hash_values(f, values);
    for (size_t i = 0; i < f->n; i++) {
        series *s = &f->s[i];
        if (s->hash != h)
            continue;
        int same = 1;
        for (int k = 0; k < f->nlabels && same; k++)
            same = !strcmp(s->values[k], values[k] ? values[k] : "");
        if (same)
            return s;
    }
    if (f->n >= PROM_MAX_SERIES) {
        __atomic_add_fetch(&R.dropped, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        series *ns = realloc(f->s, cap * sizeof(*ns));
        if (!ns)
            return NULL;
        f->s = ns;
        f->cap = cap;
    }
    series *s = &f->s[f->n];
    memset(s, 0, sizeof(*s));
    s->hash = h;
    int ok = 1;
    for (int k = 0; k < f->nlabels; k++)
        ok &= (s->values[k] = strdup(values[k] ? values[k] : "")) != NULL;
    if (ok && f->type == PROM_HISTOGRAM)
        ok = (s->buckets = calloc((size_t)f->nbounds, sizeof(uint64_t))) != NULL;
    if (!ok) {
        for (int k = 0; k < f->nlabels; k++)
            free(s->values[k]);
        return NULL;
    }
    f->n++;
    return s;
}

void prom_add(prom_family_t *f, const char *const *values, double v)
{
    if (!f || f->type == PROM_HISTOGRAM || (f->type == PROM_COUNTER && !(v >= 0)))
        return;
    pthread_mutex_lock(&f->mu);
    series *s = find(f, values);
    if (s)
        s->value += v;
    pthread_mutex_unlock(&f->mu);
}

void prom_set(prom_family_t *f, const char *const *values, double v)
{
    if (!f || f->type != PROM_GAUGE)
        return;
    pthread_mutex_lock(&f->mu);
    series *s = find(f, values);
    if (s)
        s->value = v;
    pthread_mutex_unlock(&f->mu);
}

void prom_observe(prom_family_t *f, const char *const *values, double v)
{
    if (!f || f->type != PROM_HISTOGRAM || isnan(v))
        return;
    pthread_mutex_lock(&f->mu);
    series *s = find(f, values);
    if (s) {
        int b = 0;
        while (b < f->nbounds && v > f->bounds[b])
            b++;
        if (b < f->nbounds)
            s->buckets[b]++;
        s->count++;
        s->sum += v;
    }
    pthread_mutex_unlock(&f->mu);
}

int prom_add_collector(prom_collector fn, void *arg)
{
    pthread_mutex_lock(&R.mu);
    int ok = R.ncol < MAX_COLLECTORS;
    if (ok) {
        R.col[R.ncol] = fn;
        R.col_arg[R.ncol++] = arg;
    }
    pthread_mutex_unlock(&R.mu);
    return ok ? 0 : -1;
}

/* ---- exposition ------------------------------------------------------------ */

/* Label values escape \, " and newline (exposition format 0.0.4). */
static void put_label_value(buf_t *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\')
            buf_append_str(out, "\\\\");
        else if (*v == '"')
            buf_append_str(out, "\\\"");
        else if (*v == '\n')
            buf_append_str(out, "\\n");
        else
            buf_append(out, v, 1);
    }
}

/* HELP text escapes \ and newline. */
static void put_help(buf_t *out, const char *h)
{
    for (; *h; h++) {
        if (*h == '\\')
            buf_append_str(out, "\\\\");
        else if (*h == '\n')
            buf_append_str(out, "\\n");
        else
            buf_append(out, h, 1);
    }
}

static void put_number(buf_t *out, double v)
{
    char n[48];
    if (isinf(v))
        snprintf(n, sizeof(n), v > 0 ? "+Inf" : "-Inf");
    else if (isnan(v))
        snprintf(n, sizeof(n), "NaN");
    else if (v == floor(v) && fabs(v) < 1e15)
        snprintf(n, sizeof(n), "%.0f", v);
    else
        snprintf(n, sizeof(n), "%.9g", v);
    buf_append_str(out, n);
}

void prom_write_header(buf_t *out, const char *name, const char *help, const char *type)
{
    buf_append_str(out, "# HELP ");
    buf_append_str(out, name);
    buf_append_str(out, " ");
    put_help(out, help);
    buf_append_str(out, "\n# TYPE ");
    buf_append_str(out, name);
    buf_append_str(out, " ");
    buf_append_str(out, type);
    buf_append_str(out, "\n");
}

/* name{k="v",…,extra_k="extra_v"} value */
static void put_sample(buf_t *out, const char *name, const char *suffix, char *const *labels,
                       char *const *values, int n, const char *extra_k, const char *extra_v,
                       double v)
{
    buf_append_str(out, name);
    buf_append_str(out, suffix);
    if (n || extra_k) {
        buf_append_str(out, "{");
        for (int k = 0; k < n; k++) {
            if (k)
                buf_append_str(out, ",");
            buf_append_str(out, labels[k]);
            buf_append_str(out, "=\"");
            put_label_value(out, values[k]);
            buf_append_str(out, "\"");
        }
        if (extra_k) {
            if (n)
                buf_append_str(out, ",");
            buf_append_str(out, extra_k);
            buf_append_str(out, "=\"");
            buf_append_str(out, extra_v);
            buf_append_str(out, "\"");
        }
        buf_append_str(out, "}");
    }
    buf_append_str(out, " ");
    put_number(out, v);
    buf_append_str(out, "\n");
}

void prom_write_sample(buf_t *out, const char *name, double v, ...)
{
    char *labels[PROM_MAX_LABELS], *values[PROM_MAX_LABELS];
    int n = 0;
    va_list ap;
    va_start(ap, v);
    for (const char *k; n < PROM_MAX_LABELS && (k = va_arg(ap, const char *));) {
        labels[n] = (char *)k;
        values[n++] = (char *)va_arg(ap, const char *);
    }
    va_end(ap);
    put_sample(out, name, "", labels, values, n, NULL, NULL, v);
}

static const char *type_name(prom_type t)
{
    return t == PROM_COUNTER ? "counter" : t == PROM_GAUGE ? "gauge" : "histogram";
}

static void render_family(buf_t *out, prom_family_t *f)
{
    prom_write_header(out, f->name, f->help, type_name(f->type));
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->n; i++) {
        series *s = &f->s[i];
        if (f->type != PROM_HISTOGRAM) {
            put_sample(out, f->name, "", f->labels, s->values, f->nlabels, NULL, NULL, s->value);
            continue;
        }
        uint64_t cum = 0;
        for (int b = 0; b < f->nbounds; b++) {
            char le[32];
            snprintf(le, sizeof(le), "%g", f->bounds[b]);
            cum += s->buckets[b];
            put_sample(out, f->name, "_bucket", f->labels, s->values, f->nlabels, "le", le,
                       (double)cum);
        }
        put_sample(out, f->name, "_bucket", f->labels, s->values, f->nlabels, "le", "+Inf",
                   (double)s->count);
        put_sample(out, f->name, "_sum", f->labels, s->values, f->nlabels, NULL, NULL, s->sum);
        put_sample(out, f->name, "_count", f->labels, s->values, f->nlabels, NULL, NULL,
                   (double)s->count);
    }
    pthread_mutex_unlock(&f->mu);
}

int prom_render(buf_t *out)
{
    pthread_mutex_lock(&R.mu);
    int nfam = R.nfam, ncol = R.ncol;
    prom_family_t *fam[MAX_FAMILIES];
    prom_collector col[MAX_COLLECTORS];
    void *arg[MAX_COLLECTORS];
    memcpy(fam, R.fam, sizeof(fam[0]) * (size_t)nfam);
    memcpy(col, R.col, sizeof(col[0]) * (size_t)ncol);
    memcpy(arg, R.col_arg, sizeof(arg[0]) * (size_t)ncol);
    pthread_mutex_unlock(&R.mu);
    for (int i = 0; i < nfam; i++)
        render_family(out, fam[i]);
    for (int i = 0; i < ncol; i++)
        col[i](out, arg[i]);
    prom_write_header(out, "aurora_metrics_series_dropped_total",
                         "Samples not recorded because their family reached its series limit",
                         "counter");
    prom_write_sample(out, "aurora_metrics_series_dropped_total",
                         (double)__atomic_load_n(&R.dropped, __ATOMIC_RELAXED), NULL);
    return buf_pending(out) > 0 ? 0 : -1;
}

void prom_reset(void)
{
    pthread_mutex_lock(&R.mu);
    for (int i = 0; i < R.nfam; i++)
        family_free(R.fam[i]);
    R.nfam = 0;
    R.ncol = 0;
    R.dropped = 0;
    pthread_mutex_unlock(&R.mu);
}
