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

/*
 * The merge's set of candidate ids: open addressing over the candidates' own id pointers
 * (the channels' strings outlive the merge, so nothing is copied), sized once for every id
 * the channels hold, so a request makes one allocation and no rehash.
 */
typedef struct id_set {
    uint32_t *slots; /* candidate index + 1; 0 empty */
    size_t mask;
} id_set;

/* The slot holding id, or the empty slot where it would go. */
static uint32_t *id_slot(const id_set *t, const fn_recall_candidate *out, const char *id)
{
    for (size_t h = (size_t)fn_intern_hash(id) & t->mask;; h = (h + 1) & t->mask) {
        uint32_t *slot = &t->slots[h];
        if (!*slot || strcmp(out[*slot - 1].id, id) == 0) return slot;
    }
}

fn_status fn_recall_merge(const fn_recall_channel *ch, size_t n_channels, size_t cap,
                          fn_recall_candidate *out, double *scores, size_t *got, fn_error *err)
{
    *got = 0;
    if (n_channels > FN_RECALL_MAX_CHANNELS)
        return fn_error_set(err, FN_ERR_INVALID, "merge: %zu channels, at most %d", n_channels,
                            FN_RECALL_MAX_CHANNELS);
    size_t total = 0;
    for (size_t c = 0; c < n_channels; c++) {
        if (ch[c].n && !ch[c].items)
            return fn_error_set(err, FN_ERR_INVALID, "merge: channel %zu has %zu items and no list",
                                c, ch[c].n);
        for (size_t i = 0; i < ch[c].n; i++)
            if (!ch[c].items[i].id || !ch[c].items[i].id[0])
                return fn_error_set(err, FN_ERR_INVALID, "merge: channel %zu, item %zu: empty id",
                                    c, i);
        total += ch[c].n;
    }
    if (cap == 0 || n_channels == 0) return FN_OK;
    if (cap > UINT32_MAX - 1)
        return fn_error_set(err, FN_ERR_INVALID, "merge: cap %zu is too large", cap);
    /* at most half full: candidates are at most min(cap, total) */
    const size_t want = 2 * (total < cap ? total : cap) + 1;
    size_t nslots = 64;
    while (nslots < want) nslots *= 2;
    id_set seen = {calloc(nslots, sizeof *seen.slots), nslots - 1};
    if (!seen.slots)
        return fn_error_set(err, FN_ERR_NOMEM, "merge: out of memory for %zu candidates", total);
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
                uint32_t *slot = id_slot(&seen, out, id);
                if (*slot) continue;
                *slot = (uint32_t)(n + 1);
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
            const uint32_t v = *id_slot(&seen, out, ch[c].items[i].id);
            if (!v || (out[v - 1].channels & bit)) continue;
            out[v - 1].channels |= bit;
            if (scores) scores[(size_t)(v - 1) * n_channels + c] = ch[c].items[i].score;
        }
    }
    *got = n;
    free(seen.slots);
    return FN_OK;
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
