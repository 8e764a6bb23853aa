/*
 * merge.c - the last step of the recall stage: several channels' ranked
 * lists (ANN on the query vector, ANN on the user vector, popularity, item
 * co-occurrence, ...) become one de-duplicated candidate list under
 * per-channel quotas and a total cap, each candidate keeping the channels
 * that found it and their scores for the feature columns. Also the user
 * vector of the user-ANN channel (mean of the user's item vectors).
 *
 * Round-robin rather than channel priority: with a cap below the sum of the
 * quotas, priority order would let the first channels fill the list and
 * starve the last ones; round-robin shares the cap among the channels in
 * proportion to their quotas' reach, and a channel's best items always come
 * before its weaker ones.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "intern_impl.h"
#include "recall.h"

fn_status fn_recall_merge(const fn_recall_channel *ch, size_t n_channels, size_t cap,
                          fn_recall_candidate *out, double *scores, size_t *got, fn_error *err)
{
    *got = 0;
    if (n_channels > FN_RECALL_MAX_CHANNELS)
        return fn_error_set(err, FN_ERR_INVALID, "merge: %zu channels, at most %d", n_channels,
                            FN_RECALL_MAX_CHANNELS);
    for (size_t c = 0; c < n_channels; c++) {
        if (ch[c].n && !ch[c].items)
            return fn_error_set(err, FN_ERR_INVALID, "merge: channel %zu has %zu items and no list",
                                c, ch[c].n);
        for (size_t i = 0; i < ch[c].n; i++)
            if (!ch[c].items[i].id || !ch[c].items[i].id[0])
                return fn_error_set(err, FN_ERR_INVALID, "merge: channel %zu, item %zu: empty id",
                                    c, i);
    }
    if (cap == 0 || n_channels == 0) return FN_OK;

    fn_intern seen = {0};
    fn_status st = FN_OK;
    size_t pos[FN_RECALL_MAX_CHANNELS] = {0};   /* next item to look at per channel */
    size_t taken[FN_RECALL_MAX_CHANNELS] = {0}; /* new items taken per channel */
    size_t n = 0;
    /* Round-robin: each round, every channel still under its quota takes its next new item. */
    for (int progress = 1; progress && n < cap;) {
        progress = 0;
        for (size_t c = 0; c < n_channels && n < cap; c++) {
            if (taken[c] >= ch[c].quota) continue;
            while (pos[c] < ch[c].n) {
                const char *id = ch[c].items[pos[c]++].id;
                if (fn_intern_find(&seen, id) >= 0) continue;
                uint32_t idx;
                if ((st = fn_intern_put(&seen, id, &idx, err)) != FN_OK) goto done;
                out[n].id = id;
                out[n].channels = 0;
                out[n].source = (uint32_t)c;
                n++;
                taken[c]++;
                progress = 1;
                break;
            }
        }
    }
    /* Every channel marks and scores every candidate anywhere in its list (first occurrence). */
    if (scores)
        for (size_t i = 0; i < n * n_channels; i++) scores[i] = NAN;
    for (size_t c = 0; c < n_channels; c++) {
        uint32_t bit = (uint32_t)1 << c;
        for (size_t i = 0; i < ch[c].n; i++) {
            int64_t k = fn_intern_find(&seen, ch[c].items[i].id);
            if (k < 0 || (out[k].channels & bit)) continue;
            out[k].channels |= bit;
            if (scores) scores[(size_t)k * n_channels + c] = ch[c].items[i].score;
        }
    }
    *got = n;
done:
    fn_intern_free(&seen);
    return st;
}

fn_status fn_recall_user_vector(size_t n, size_t dim, const float *vecs, float *out, fn_error *err)
{
    if (n == 0) return fn_error_set(err, FN_ERR_INVALID, "user vector: no item vectors");
    if (dim == 0) return fn_error_set(err, FN_ERR_INVALID, "user vector: dimension 0");
    double *sum = calloc(dim, sizeof *sum);
    if (!sum) return fn_error_set(err, FN_ERR_NOMEM, "user vector: out of memory for %zu", dim);
    fn_status st = FN_OK;
    for (size_t i = 0; i < n; i++) {
        const float *v = vecs + i * dim;
        double norm = 0;
        for (size_t d = 0; d < dim; d++) norm += (double)v[d] * v[d];
        if (!isfinite(norm) || norm == 0) {
            st = fn_error_set(err, FN_ERR_INVALID, "user vector: item vector %zu is %s", i,
                              norm == 0 ? "zero" : "not finite");
            goto done;
        }
        norm = sqrt(norm);
        for (size_t d = 0; d < dim; d++) sum[d] += v[d] / norm;
    }
    double norm = 0;
    for (size_t d = 0; d < dim; d++) norm += sum[d] * sum[d];
    if (!(norm > 1e-24)) {
        st = fn_error_set(err, FN_ERR_INVALID,
                          "user vector: the %zu item vectors cancel out (zero mean)", n);
        goto done;
    }
    norm = sqrt(norm);
    for (size_t d = 0; d < dim; d++) out[d] = (float)(sum[d] / norm);
done:
    free(sum);
    return st;
}

fn_status fn_recall_user_ann(fn_ann *a, size_t n, const float *item_vecs, size_t k,
                             const fn_ann_params *p, int64_t *ids, float *scores, fn_error *err)
{
    size_t dim = fn_ann_dim(a);
    float *u = malloc(dim * sizeof *u);
    if (!u) return fn_error_set(err, FN_ERR_NOMEM, "user vector: out of memory for %zu", dim);
    fn_status st = fn_recall_user_vector(n, dim, item_vecs, u, err);
    if (st == FN_OK) st = fn_ann_search(a, 1, u, k, p, ids, scores, err);
    free(u);
    return st;
}
