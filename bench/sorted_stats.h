/* sorted_stats.h — sorting samples and reading a percentile, for the C
 * benchmarks (hop_bench.c, exec_bench.c). */
#ifndef AURORA_BENCH_SORTED_STATS_H
#define AURORA_BENCH_SORTED_STATS_H

#include <stdlib.h>

static inline int sorted_stats_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sorts v[0..n) in ascending order. */
static inline void sort_samples(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), sorted_stats_cmp);
}

/* The nearest-rank p-quantile (0 < p <= 1) of sorted[0..n), n >= 1. */
static inline double pct(const double *sorted, int n, double p)
{
    int i = (int)(p * n + 0.5) - 1;
    if (i < 0)
        i = 0;
    if (i >= n)
        i = n - 1;
    return sorted[i];
}

#endif
