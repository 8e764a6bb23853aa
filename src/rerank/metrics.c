/*
 * metrics.c - NDCG@k and average precision of scored lists, and their means
 * over a listset: the figures that training's validation, `funnel rerank
 * eval` and the quality benchmark report.
 *
 * A list is ordered once (a stable sort by score, so that equal scores keep
 * their input order, as the definition in rerank.h asks) and every metric is
 * read off that order with double accumulators.
 */
#include <math.h>
#include <stdlib.h>

#include "rerank.h"

/* Lists up to this long are ordered in stack memory. */
#define SMALL_LIST 64

typedef struct scored {
    float score;
    size_t i;
} scored;

/* Highest score first; NaN below every number; equal scores by input position. */
static int by_score(const void *pa, const void *pb)
{
    const scored *a = pa, *b = pb;
    int na = isnan(a->score), nb = isnan(b->score);
    if (na != nb) return na - nb;
    if (!na && a->score != b->score) return a->score > b->score ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

static int by_value_desc(const void *pa, const void *pb)
{
    float a = *(const float *)pa, b = *(const float *)pb;
    return (a < b) - (a > b);
}

static double gain(float label)
{
    return exp2((double)label) - 1.0;
}

static double discount(size_t pos0)
{
    return 1.0 / log2((double)pos0 + 2.0); /* pos0 is 0-based: log2(position + 1) */
}

/* What one list's metrics need: the labels in score order and in ideal order. */
typedef struct ranked {
    float *by_score, *ideal;
    size_t n;
    void *heap;
    float small[2 * SMALL_LIST];
} ranked;

static int rank_list(const float *scores, const float *labels, size_t n, ranked *r)
{
    r->n = n;
    r->heap = NULL;
    scored small[SMALL_LIST], *s = small;
    if (n > SMALL_LIST) {
        if (n > SIZE_MAX / (sizeof *s + 2 * sizeof(float))) return -1;
        r->heap = malloc(n * (sizeof *s + 2 * sizeof(float)));
        if (!r->heap) return -1;
        s = r->heap;
        r->by_score = (float *)(s + n);
    } else {
        r->by_score = r->small;
    }
    r->ideal = r->by_score + n;
    for (size_t i = 0; i < n; i++) s[i] = (scored){scores[i], i};
    qsort(s, n, sizeof *s, by_score);
    for (size_t i = 0; i < n; i++) {
        r->by_score[i] = labels[s[i].i];
        r->ideal[i] = labels[i];
    }
    qsort(r->ideal, n, sizeof *r->ideal, by_value_desc);
    return 0;
}

static void ranked_free(ranked *r)
{
    free(r->heap);
}

static double ndcg_at(const ranked *r, int k)
{
    size_t m = k <= 0 || (size_t)k > r->n ? r->n : (size_t)k;
    double dcg = 0, ideal = 0;
    for (size_t p = 0; p < m; p++) {
        double d = discount(p);
        dcg += gain(r->by_score[p]) * d;
        ideal += gain(r->ideal[p]) * d;
    }
    return ideal > 0 ? dcg / ideal : 1.0;
}

static double average_precision(const ranked *r)
{
    double sum = 0;
    size_t hits = 0;
    for (size_t p = 0; p < r->n; p++)
        if (r->by_score[p] > 0) sum += (double)++hits / (double)(p + 1);
    return hits ? sum / (double)hits : 1.0;
}

double fn_metric_ndcg(const float *scores, const float *labels, size_t n, int k)
{
    ranked r;
    if (rank_list(scores, labels, n, &r) != 0) return NAN;
    double v = ndcg_at(&r, k);
    ranked_free(&r);
    return v;
}

double fn_metric_average_precision(const float *scores, const float *labels, size_t n)
{
    ranked r;
    if (rank_list(scores, labels, n, &r) != 0) return NAN;
    double v = average_precision(&r);
    ranked_free(&r);
    return v;
}

void fn_listset_metrics(const fn_listset *d, const float *scores, fn_rank_metrics *out)
{
    double sum[5] = {0};
    int failed = 0;
    for (size_t l = 0; l < d->n_lists; l++) {
        size_t s = (size_t)d->offsets[l], n = (size_t)(d->offsets[l + 1] - d->offsets[l]);
        ranked r;
        if (rank_list(scores + s, d->labels + s, n, &r) != 0) {
            failed = 1;
            break;
        }
        sum[0] += ndcg_at(&r, 1);
        sum[1] += ndcg_at(&r, 3);
        sum[2] += ndcg_at(&r, 5);
        sum[3] += ndcg_at(&r, 10);
        sum[4] += average_precision(&r);
        ranked_free(&r);
    }
    double n = failed || d->n_lists == 0 ? NAN : (double)d->n_lists;
    out->ndcg1 = sum[0] / n;
    out->ndcg3 = sum[1] / n;
    out->ndcg5 = sum[2] / n;
    out->ndcg10 = sum[3] / n;
    out->map = sum[4] / n;
    out->n_lists = d->n_lists;
}
