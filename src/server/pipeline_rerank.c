/*
 * pipeline_rerank.c - the rerank stage's feature rows (the columns are
 * listed at FN_PIPELINE_RERANK_FEATURES in pipeline.h). Serving and the
 * training lists of `funnel rerank lists` both come through here, so the
 * model is scored on exactly what it learnt from.
 *
 * Every column is a plain function of what the earlier stages left: the
 * CTR and the relevance the page would order by, the recall channels that
 * found the item, and cosines between item, user and query vectors. The
 * reranker standardises columns itself, so none is scaled here beyond
 * logs that tame long tails.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline_impl.h"

/* Eight running sums the compiler can keep in one vector register. */
static double dot(const float *a, const float *b, size_t n)
{
    float acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += a[i + l] * b[i + l];
    double s = 0;
    for (int l = 0; l < 8; l++) s += acc[l];
    for (; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* Cosine of two vectors given their norms; 0 when either is missing or zero. */
static float cosine(const float *a, double na, const float *b, double nb, size_t dim)
{
    if (!a || !b || na <= 0 || nb <= 0) return 0.0f;
    return (float)(dot(a, b, dim) / (na * nb));
}

static double norm(const float *v, size_t dim)
{
    return v ? sqrt(dot(v, v, dim)) : 0.0;
}

static float log1p_pos(double v)
{
    return isfinite(v) && v > 0 ? (float)log1p(v) : 0.0f;
}

fn_status pl_rerank_features(const fn_pipeline *p, const pl_rerank_in *in, float *rows,
                             fn_error *err)
{
    enum { F = FN_PIPELINE_RERANK_FEATURES };
    const size_t m = in->m, dim = in->dim;
    /* the items' norms, then their pairwise cosines (each pair once) */
    double *norms = malloc((m + 1) * sizeof *norms);
    float *sim = malloc((m * m + 1) * sizeof *sim);
    if (!norms || !sim) {
        free(norms), free(sim);
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    float best_ctr = 0, best_rel = 0;
    for (size_t k = 0; k < m; k++) {
        const size_t i = in->order[k];
        if (in->ctr[i] > best_ctr) best_ctr = in->ctr[i];
        if (in->relevance[i] > best_rel) best_rel = in->relevance[i];
        norms[k] = norm(in->vecs[i], dim);
    }
    for (size_t k = 0; k < m; k++)
        for (size_t j = 0; j < k; j++)
            sim[k * m + j] = sim[j * m + k] =
                cosine(in->vecs[in->order[k]], norms[k], in->vecs[in->order[j]], norms[j], dim);
    const double nq = norm(in->qvec, dim), nu = norm(in->uvec, dim);
    for (size_t k = 0; k < m; k++) {
        const size_t i = in->order[k];
        float *row = rows + k * F;
        const float *v = in->vecs[i];
        const uint32_t ch = in->cand[i].channels;
        const double c = fmin(fmax(in->ctr[i], 1e-6), 1.0 - 1e-6);
        row[0] = (float)log(c / (1.0 - c));
        row[1] = m > 1 ? (float)k / (float)(m - 1) : 0.0f;
        row[2] = best_ctr > 0 ? in->ctr[i] / best_ctr : 0.0f;
        row[3] = best_rel > 0 ? in->relevance[i] / best_rel : 0.0f;
        row[4] = (float)((ch >> PL_CH_POPULARITY) & 1u);
        row[5] = log1p_pos(fn_popularity_score(p->pop, in->cand[i].id));
        row[6] = (float)((ch >> PL_CH_COOC) & 1u);
        row[7] = log1p_pos(in->chan_scores[i * PL_N_CHANNELS + PL_CH_COOC]);
        row[8] = (float)((ch >> PL_CH_USER) & 1u);
        row[9] = cosine(v, norms[k], in->uvec, nu, dim);
        row[10] = (float)((ch >> PL_CH_QUERY) & 1u);
        row[11] = cosine(v, norms[k], in->qvec, nq, dim);
        row[12] = in->qvec != NULL;
        row[13] = (float)log1p((double)in->history);
        /* redundancy: against the items above (the highest cosine) and all others (the mean) */
        double total = 0;
        float above = 0;
        for (size_t j = 0; j < m; j++) {
            if (j == k) continue;
            const float s = sim[k * m + j];
            total += s;
            if (j < k && (j == 0 || s > above)) above = s;
        }
        row[14] = above;
        row[15] = m > 1 ? (float)(total / (double)(m - 1)) : 0.0f;
    }
    free(norms), free(sim);
    return FN_OK;
}
