/* metrics.c - AUC (exact, ties counted half) and log loss, in double precision. */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "rank.h"

static int by_score(const void *a, const void *b, void *ctx)
{
    const float *s = ctx;
    float x = s[*(const size_t *)a], y = s[*(const size_t *)b];
    return x < y ? -1 : x > y;
}

double fn_metric_auc(const float *scores, const float *labels, size_t n)
{
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx) return NAN;
    for (size_t i = 0; i < n; i++) idx[i] = i;
    qsort_r(idx, n, sizeof *idx, by_score, (void *)scores);
    /* Mann-Whitney: the sum of the positives' ranks, tied scores sharing their mean rank. */
    double rank_sum = 0, pos = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && scores[idx[j]] == scores[idx[i]]) j++;
        double mean_rank = (double)(i + 1 + j) / 2.0; /* ranks i+1 .. j */
        for (size_t t = i; t < j; t++)
            if (labels[idx[t]] > 0.5f) {
                rank_sum += mean_rank;
                pos++;
            }
        i = j;
    }
    free(idx);
    double neg = (double)n - pos;
    if (pos == 0 || neg == 0) return NAN;
    return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg);
}

double fn_metric_logloss(const float *probs, const float *labels, size_t n)
{
    if (n == 0) return NAN;
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        double p = probs[i];
        if (p < DBL_EPSILON) p = DBL_EPSILON;
        if (p > 1 - DBL_EPSILON) p = 1 - DBL_EPSILON;
        double y = labels[i];
        if (y >= 1) {
            sum -= log(p);
        } else if (y <= 0) {
            sum -= log(1 - p);
        } else {
            sum -= y * log(p) + (1 - y) * log(1 - p);
        }
    }
    return sum / (double)n;
}
