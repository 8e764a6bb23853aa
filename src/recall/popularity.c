/*
 * popularity.c - the popularity recall channel: time-decayed interaction
 * counts per item, the candidates of last resort (new users, empty
 * histories) and a prior the ranker may use. Built offline or refreshed by
 * ingestion from event logs; read by the server when a request comes.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "intern_impl.h"
#include "recall.h"

struct fn_popularity {
    double half_life, now;
    fn_intern ids;
    double *scores;  /* per item index */
    size_t cap;      /* room in scores */
    uint32_t *order; /* item indices best first, after finalize */
    int finalized;
};

fn_status fn_popularity_new(double half_life_s, int64_t now, fn_popularity **out, fn_error *err)
{
    *out = NULL;
    if (!isfinite(half_life_s) || half_life_s <= 0)
        return fn_error_set(err, FN_ERR_INVALID,
                            "popularity: the half-life must be a positive number of seconds, "
                            "not %g",
                            half_life_s);
    fn_popularity *p = calloc(1, sizeof *p);
    if (!p) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    p->half_life = half_life_s;
    p->now = (double)now;
    *out = p;
    return FN_OK;
}

void fn_popularity_free(fn_popularity *p)
{
    if (!p) return;
    fn_intern_free(&p->ids);
    free(p->scores);
    free(p->order);
    free(p);
}

fn_status fn_popularity_add(fn_popularity *p, const char *item, int64_t t, double weight,
                            fn_error *err)
{
    if (p->finalized) return fn_error_set(err, FN_ERR_INVALID, "popularity: adding after finalize");
    if (!item || !*item) return fn_error_set(err, FN_ERR_INVALID, "popularity: empty item id");
    if (!isfinite(weight) || weight < 0)
        return fn_error_set(err, FN_ERR_INVALID,
                            "popularity: item '%.64s': the weight must be finite and >= 0, not %g",
                            item, weight);
    uint32_t i;
    if (fn_intern_put(&p->ids, item, &i, err) != FN_OK) return fn_error_prefix(err, "popularity");
    if (i >= p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        double *s = realloc(p->scores, cap * sizeof *s);
        if (!s) return fn_error_set(err, FN_ERR_NOMEM, "popularity: out of memory");
        memset(s + p->cap, 0, (cap - p->cap) * sizeof *s);
        p->scores = s;
        p->cap = cap;
    }
    double age = p->now - (double)t;
    if (age < 0) age = 0;
    p->scores[i] += weight * exp2(-age / p->half_life);
    return FN_OK;
}

/* qsort has no context argument: the table being sorted, one finalize at a time per thread. */
static _Thread_local const fn_popularity *sorting;

static int by_score_then_id(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    double sx = sorting->scores[x], sy = sorting->scores[y];
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(sorting->ids.strs[x], sorting->ids.strs[y]);
}

fn_status fn_popularity_finalize(fn_popularity *p, fn_error *err)
{
    if (p->finalized) return FN_OK;
    size_t n = p->ids.n;
    p->order = malloc((n ? n : 1) * sizeof *p->order);
    if (!p->order) return fn_error_set(err, FN_ERR_NOMEM, "popularity: out of memory");
    for (size_t i = 0; i < n; i++) p->order[i] = (uint32_t)i;
    sorting = p;
    qsort(p->order, n, sizeof *p->order, by_score_then_id);
    sorting = NULL;
    p->finalized = 1;
    return FN_OK;
}

size_t fn_popularity_count(const fn_popularity *p)
{
    return p->ids.n;
}

fn_status fn_popularity_top(const fn_popularity *p, size_t n, fn_recall_item *out, size_t *got,
                            fn_error *err)
{
    *got = 0;
    if (!p->finalized)
        return fn_error_set(err, FN_ERR_INVALID, "popularity: top items before finalize");
    size_t m = n < p->ids.n ? n : p->ids.n;
    for (size_t r = 0; r < m; r++) {
        uint32_t i = p->order[r];
        out[r].id = p->ids.strs[i];
        out[r].score = p->scores[i];
    }
    *got = m;
    return FN_OK;
}

double fn_popularity_score(const fn_popularity *p, const char *item)
{
    int64_t i = item ? fn_intern_find(&p->ids, item) : -1;
    return i < 0 ? 0 : p->scores[i];
}
