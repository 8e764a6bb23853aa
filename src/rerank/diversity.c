/*
 * diversity.c - the last cut of the funnel: from one reranked list to the page
 * that is shown. Exclusions and pins are business rules; the rest of the page
 * is picked by score, by maximal marginal relevance (Carbonell & Goldstein
 * 1998) or by the greedy MAP of a determinantal point process (Chen, Zhang &
 * Zhou, "Fast greedy MAP inference for DPP", NeurIPS 2018), under an optional
 * per-category cap. The order of operations is the contract in rerank.h.
 *
 * Glossary: n items; k the most items the method may pick (page_size minus
 * the pins); `state` per item (free or taken: excluded, pinned, picked or
 * blocked by the cap, none of which ever becomes free again); categories are
 * renumbered densely (`cid`) so the cap is a plain counter array and each
 * item's set is sorted for the Jaccard merge.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rerank.h"

/* Added to the diagonal of S: near-duplicate items would otherwise make the
 * kernel singular and the Cholesky update divide by almost zero. */
#define DPP_JITTER 1e-6
/* Below this marginal gain (in the kernel scaled so the best candidate has
 * q = 1) the determinant no longer ranks the remaining items: they are
 * near-duplicates of the picked ones or so far below in score that q_i^2
 * vanishes. They follow by score instead of by rounding noise. */
#define DPP_MIN_GAIN 1e-10

enum { FREE = 0, TAKEN = 1 };

typedef struct page_ctx {
    const fn_page_items *it;
    size_t n;
    uint8_t *state;
    /* categories, NULL without them */
    uint32_t *cid;   /* per item: sorted distinct dense ids at cid[cbeg[i]..cbeg[i] + clen[i]) */
    size_t *cbeg;    /* n */
    uint32_t *clen;  /* n */
    uint32_t *count; /* per dense id: items of the page so far */
    int cap;
} page_ctx;

typedef struct scored {
    double s;
    size_t i;
} scored;

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Score descending, then index ascending: the order NONE and every tie use. */
static int cmp_scored(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

static int cmp_pin(const void *a, const void *b)
{
    const size_t *x = a, *y = b; /* {position, item} */
    return (x[0] > y[0]) - (x[0] < y[0]);
}

static double dot(const float *a, const float *b, int dim)
{
    double s = 0;
    for (int d = 0; d < dim; d++) s += (double)a[d] * b[d];
    return s;
}

/* Jaccard index of two lists taken as sets (duplicates allowed, any order);
 * two empty sets share nothing, so 0. */
static double jaccard_raw(const uint32_t *a, size_t na, const uint32_t *b, size_t nb)
{
    size_t da = 0, db = 0, both = 0;
    for (size_t x = 0; x < na; x++) {
        int dup = 0;
        for (size_t y = 0; y < x && !dup; y++) dup = a[y] == a[x];
        if (dup) continue;
        da++;
        for (size_t y = 0; y < nb; y++)
            if (b[y] == a[x]) {
                both++;
                break;
            }
    }
    for (size_t x = 0; x < nb; x++) {
        int dup = 0;
        for (size_t y = 0; y < x && !dup; y++) dup = b[y] == b[x];
        db += !dup;
    }
    size_t uni = da + db - both;
    return uni ? (double)both / (double)uni : 0;
}

/* sim(i, j) on the prepared (sorted, distinct) category sets or the embeddings. */
static double sim(const page_ctx *c, size_t i, size_t j)
{
    const fn_page_items *it = c->it;
    if (it->embeddings)
        return dot(it->embeddings + i * (size_t)it->dim, it->embeddings + j * (size_t)it->dim,
                   it->dim);
    const uint32_t *a = c->cid + c->cbeg[i], *b = c->cid + c->cbeg[j];
    uint32_t na = c->clen[i], nb = c->clen[j], x = 0, y = 0, both = 0;
    while (x < na && y < nb) {
        if (a[x] == b[y])
            both++, x++, y++;
        else if (a[x] < b[y])
            x++;
        else
            y++;
    }
    uint32_t uni = na + nb - both;
    return uni ? (double)both / uni : 0;
}

/* An item is blocked when one of its categories is already full. */
static int capped(const page_ctx *c, size_t i)
{
    if (c->cap <= 0) return 0;
    for (uint32_t x = 0; x < c->clen[i]; x++)
        if (c->count[c->cid[c->cbeg[i] + x]] >= (uint32_t)c->cap) return 1;
    return 0;
}

static void count_item(page_ctx *c, size_t i)
{
    if (c->cap <= 0) return;
    for (uint32_t x = 0; x < c->clen[i]; x++) c->count[c->cid[c->cbeg[i] + x]]++;
}

/* Renumbers the categories densely and sorts each item's set, dropping repeats. */
static fn_status prepare_categories(page_ctx *c, fn_error *err)
{
    const fn_page_items *it = c->it;
    const uint32_t *off = it->cat_offsets;
    for (size_t i = 0; i < c->n; i++)
        if (off[i + 1] < off[i])
            return fn_error_set(err, FN_ERR_INVALID,
                                "rerank page: cat_offsets decrease at item %zu (%u then %u)", i,
                                off[i], off[i + 1]);
    size_t total = off[c->n] - off[0];
    if (total && !it->cats)
        return fn_error_set(err, FN_ERR_INVALID,
                            "rerank page: cat_offsets name %zu categories but cats is NULL", total);
    uint32_t *dict = malloc((total ? total : 1) * sizeof *dict);
    c->cid = malloc((total ? total : 1) * sizeof *c->cid);
    c->cbeg = malloc(c->n * sizeof *c->cbeg);
    c->clen = malloc(c->n * sizeof *c->clen);
    if (!dict || !c->cid || !c->cbeg || !c->clen) {
        free(dict);
        return fn_error_set(err, FN_ERR_NOMEM, "rerank page: no memory for %zu categories", total);
    }
    if (total) memcpy(dict, it->cats + off[0], total * sizeof *dict);
    qsort(dict, total, sizeof *dict, cmp_u32);
    size_t m = 0;
    for (size_t x = 0; x < total; x++)
        if (m == 0 || dict[m - 1] != dict[x]) dict[m++] = dict[x];
    for (size_t i = 0; i < c->n; i++) {
        uint32_t *ids = c->cid + (off[i] - off[0]);
        size_t len = off[i + 1] - off[i];
        for (size_t x = 0; x < len; x++) {
            const uint32_t *hit = bsearch(it->cats + off[i] + x, dict, m, sizeof *dict, cmp_u32);
            ids[x] = (uint32_t)(hit - dict);
        }
        qsort(ids, len, sizeof *ids, cmp_u32);
        uint32_t u = 0;
        for (size_t x = 0; x < len; x++)
            if (u == 0 || ids[u - 1] != ids[x]) ids[u++] = ids[x];
        c->cbeg[i] = off[i] - off[0];
        c->clen[i] = u;
    }
    free(dict);
    c->count = calloc(m ? m : 1, sizeof *c->count);
    if (!c->count)
        return fn_error_set(err, FN_ERR_NOMEM, "rerank page: no memory for %zu category counts", m);
    return FN_OK;
}

/* Takes free items in score order while they fit under the cap: NONE, and the
 * tail of a DPP page once the kernel has nothing more to say. */
static size_t pick_by_score(page_ctx *c, const scored *order, size_t n_order, size_t k, size_t *out,
                            size_t got)
{
    for (size_t r = 0; r < n_order && got < k; r++) {
        size_t i = order[r].i;
        if (c->state[i] != FREE) continue;
        c->state[i] = TAKEN;
        if (capped(c, i)) continue;
        count_item(c, i);
        out[got++] = i;
    }
    return got;
}

/* Drops the candidates the last pick put over the cap, keeping index order. */
static size_t drop_capped(page_ctx *c, size_t *active, size_t na)
{
    size_t w = 0;
    for (size_t r = 0; r < na; r++) {
        if (capped(c, active[r]))
            c->state[active[r]] = TAKEN;
        else
            active[w++] = active[r];
    }
    return w;
}

/* MMR with the running max similarity to the picked set: O(n k) similarities. */
static fn_status pick_mmr(page_ctx *c, double lambda, size_t k, size_t *out, size_t *n_out,
                          fn_error *err)
{
    size_t *active = malloc(c->n * sizeof *active);
    double *maxsim = malloc(c->n * sizeof *maxsim);
    if (!active || !maxsim) {
        free(active);
        free(maxsim);
        return fn_error_set(err, FN_ERR_NOMEM, "rerank page: no memory for MMR over %zu items",
                            c->n);
    }
    size_t na = 0, got = 0;
    for (size_t i = 0; i < c->n; i++)
        if (c->state[i] == FREE) {
            active[na++] = i;
            maxsim[i] = -INFINITY; /* sims may be negative: no floor at 0 once one is picked */
        }
    na = drop_capped(c, active, na);
    while (got < k && na > 0) {
        size_t best = 0;
        double best_v = -INFINITY;
        for (size_t r = 0; r < na; r++) {
            size_t i = active[r];
            double m = got ? maxsim[i] : 0; /* the max over no picks is 0 */
            double v = lambda * c->it->scores[i] - (1 - lambda) * m;
            if (v > best_v || r == 0) {
                best_v = v;
                best = r;
            }
        }
        size_t j = active[best];
        memmove(active + best, active + best + 1, (na - best - 1) * sizeof *active);
        na--;
        c->state[j] = TAKEN;
        count_item(c, j);
        out[got++] = j;
        na = drop_capped(c, active, na);
        for (size_t r = 0; r < na; r++) {
            double s = sim(c, j, active[r]);
            if (s > maxsim[active[r]]) maxsim[active[r]] = s;
        }
    }
    free(active);
    free(maxsim);
    *n_out = got;
    return FN_OK;
}

/*
 * Greedy DPP MAP with the incremental Cholesky of Chen et al. (Algorithm 1):
 * for each candidate i, cc[i] holds its row of the Cholesky factor against the
 * picked set and d2[i] the Schur complement L_ii - |cc[i]|^2, which is
 * det(L_{Y+i}) / det(L_Y), the gain of adding i. O(n k^2) plus O(n k)
 * similarities.
 *
 * q_i = exp(alpha (s_i - s_max)) rather than exp(alpha s_i): every q is the
 * same constant e^{-alpha s_max} times the unscaled one, so L is scaled by
 * e^{-2 alpha s_max} as a whole and det(L_Y) by that to the |Y|; all the
 * candidate sets compared in one step have the same size, so the argmax is
 * the same, and exp cannot overflow (q <= 1).
 */
static fn_status pick_dpp(page_ctx *c, double alpha, const scored *order, size_t n_order, size_t k,
                          size_t *out, size_t *n_out, fn_error *err)
{
    size_t n = c->n, got = 0;
    if (k > n) k = n;
    size_t *active = malloc(n * sizeof *active);
    double *q = malloc(n * sizeof *q);
    double *d2 = malloc(n * sizeof *d2);
    double *cc = k && n <= SIZE_MAX / sizeof(double) / k ? malloc(n * k * sizeof *cc) : NULL;
    if (!active || !q || !d2 || (k && !cc)) {
        free(active);
        free(q);
        free(d2);
        free(cc);
        return fn_error_set(err, FN_ERR_NOMEM,
                            "rerank page: no memory for a DPP over %zu items, page %zu", n, k);
    }
    size_t na = 0;
    double smax = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (c->state[i] == FREE) {
            active[na++] = i;
            if (c->it->scores[i] > smax) smax = c->it->scores[i];
        }
    for (size_t r = 0; r < na; r++) {
        size_t i = active[r];
        q[i] = exp(alpha * ((double)c->it->scores[i] - smax));
        d2[i] = q[i] * q[i] * (1 + DPP_JITTER);
    }
    na = drop_capped(c, active, na);
    while (got < k && na > 0) {
        size_t best = 0;
        for (size_t r = 1; r < na; r++)
            if (d2[active[r]] > d2[active[best]]) best = r;
        size_t j = active[best];
        if (!(d2[j] >= DPP_MIN_GAIN)) break;
        memmove(active + best, active + best + 1, (na - best - 1) * sizeof *active);
        na--;
        c->state[j] = TAKEN;
        count_item(c, j);
        out[got++] = j;
        na = drop_capped(c, active, na);
        double dj = sqrt(d2[j]);
        const double *cj = cc + j * k;
        size_t t = got - 1; /* the column this pick fills */
        for (size_t r = 0; r < na; r++) {
            size_t i = active[r];
            double *ci = cc + i * k;
            double e = q[j] * q[i] * sim(c, j, i);
            for (size_t x = 0; x < t; x++) e -= cj[x] * ci[x];
            e /= dj;
            ci[t] = e;
            d2[i] -= e * e;
        }
    }
    free(active);
    free(q);
    free(d2);
    free(cc);
    *n_out = pick_by_score(c, order, n_order, k, out, got);
    return FN_OK;
}

static fn_status check_args(const fn_page_items *it, const fn_page_options *o, const size_t *page,
                            size_t *n_page, fn_error *err)
{
    if (!it || !o || !n_page || (!page && o->page_size > 0))
        return fn_error_set(err, FN_ERR_INVALID,
                            "rerank page: items, options, page and n_page "
                            "are required");
    if (it->n > 0 && !it->scores)
        return fn_error_set(err, FN_ERR_INVALID, "rerank page: scores is NULL for %zu items",
                            it->n);
    if (it->embeddings && it->dim <= 0)
        return fn_error_set(err, FN_ERR_INVALID, "rerank page: embeddings of dimension %d",
                            it->dim);
    if (o->n_pinned > 0 && (!o->pinned || !o->pinned_at))
        return fn_error_set(err, FN_ERR_INVALID,
                            "rerank page: %zu pins but pinned or pinned_at "
                            "is NULL",
                            o->n_pinned);
    if (o->max_per_category < 0)
        return fn_error_set(err, FN_ERR_INVALID, "rerank page: max_per_category %d is negative",
                            o->max_per_category);
    if (o->max_per_category > 0 && !it->cat_offsets)
        return fn_error_set(err, FN_ERR_INVALID,
                            "rerank page: max_per_category %d needs the "
                            "items' categories (cat_offsets is NULL)",
                            o->max_per_category);
    switch (o->diversity) {
    case FN_DIVERSITY_NONE:
        break;
    case FN_DIVERSITY_MMR:
        if (!(o->lambda >= 0 && o->lambda <= 1))
            return fn_error_set(err, FN_ERR_INVALID, "rerank page: MMR lambda %g is not in [0, 1]",
                                (double)o->lambda);
        break;
    case FN_DIVERSITY_DPP:
        if (!(o->dpp_alpha >= 0 && isfinite(o->dpp_alpha)))
            return fn_error_set(err, FN_ERR_INVALID,
                                "rerank page: DPP alpha %g is not a finite number >= 0",
                                (double)o->dpp_alpha);
        break;
    default:
        return fn_error_set(err, FN_ERR_INVALID, "rerank page: unknown diversity method %d",
                            (int)o->diversity);
    }
    if (o->diversity != FN_DIVERSITY_NONE && !it->embeddings && !it->cat_offsets)
        return fn_error_set(err, FN_ERR_INVALID,
                            "rerank page: %s needs a similarity: give "
                            "embeddings or categories",
                            o->diversity == FN_DIVERSITY_MMR ? "MMR" : "DPP");
    for (size_t i = 0; i < it->n; i++) {
        if ((!o->excluded || !o->excluded[i]) && !isfinite(it->scores[i]))
            return fn_error_set(err, FN_ERR_INVALID, "rerank page: item %zu has score %g", i,
                                (double)it->scores[i]);
        if (it->embeddings)
            for (int d = 0; d < it->dim; d++)
                if (!isfinite(it->embeddings[i * (size_t)it->dim + d]))
                    return fn_error_set(err, FN_ERR_INVALID,
                                        "rerank page: item %zu has a non-finite embedding "
                                        "(component %d)",
                                        i, d);
    }
    return FN_OK;
}

/* Sets the pins aside (state TAKEN, counted against the cap) and returns them
 * sorted by position as {position, item} pairs. */
static fn_status set_pins(page_ctx *c, const fn_page_options *o, size_t *pins, fn_error *err)
{
    for (size_t p = 0; p < o->n_pinned; p++) {
        size_t i = o->pinned[p];
        if (i >= c->n)
            return fn_error_set(err, FN_ERR_INVALID,
                                "rerank page: pinned item %zu is out of range (%zu items)", i,
                                c->n);
        if (o->excluded && o->excluded[i])
            return fn_error_set(err, FN_ERR_INVALID,
                                "rerank page: pinned item %zu is also excluded", i);
        if (c->state[i] != FREE)
            return fn_error_set(err, FN_ERR_INVALID, "rerank page: item %zu is pinned twice", i);
        c->state[i] = TAKEN;
        pins[2 * p] = o->pinned_at[p];
        pins[2 * p + 1] = i;
    }
    qsort(pins, o->n_pinned, 2 * sizeof *pins, cmp_pin);
    for (size_t p = 1; p < o->n_pinned; p++)
        if (pins[2 * p] == pins[2 * p - 2])
            return fn_error_set(err, FN_ERR_INVALID,
                                "rerank page: items %zu and %zu are both pinned at position %zu",
                                pins[2 * p - 1], pins[2 * p + 1], pins[2 * p]);
    size_t shown = o->n_pinned < o->page_size ? o->n_pinned : o->page_size;
    for (size_t p = 0; p < shown; p++) count_item(c, pins[2 * p + 1]);
    return FN_OK;
}

fn_status fn_rerank_page(const fn_page_items *items, const fn_page_options *opts, size_t *page,
                         size_t *n_page, fn_error *err)
{
    if (n_page) *n_page = 0;
    fn_status st = check_args(items, opts, page, n_page, err);
    if (st != FN_OK) return st;
    size_t n = items->n;
    page_ctx c = {.it = items, .n = n, .cap = opts->max_per_category};
    size_t *pins = NULL, *picked = NULL;
    scored *order = NULL;
    size_t alloc_n = n ? n : 1;
    c.state = calloc(alloc_n, 1);
    if (opts->n_pinned <= SIZE_MAX / 2 / sizeof *pins)
        pins = malloc((opts->n_pinned ? opts->n_pinned : 1) * 2 * sizeof *pins);
    picked = malloc(alloc_n * sizeof *picked);
    order = malloc(alloc_n * sizeof *order);
    if (!c.state || !pins || !picked || !order) {
        st = fn_error_set(err, FN_ERR_NOMEM, "rerank page: no memory for %zu items", n);
        goto done;
    }
    if (items->cat_offsets && n > 0 && (st = prepare_categories(&c, err)) != FN_OK) goto done;
    /* (1) exclusions, (2) pins */
    for (size_t i = 0; i < n; i++)
        if (opts->excluded && opts->excluded[i]) c.state[i] = TAKEN;
    if ((st = set_pins(&c, opts, pins, err)) != FN_OK) goto done;
    /* (3) the picks */
    size_t k = opts->page_size > opts->n_pinned ? opts->page_size - opts->n_pinned : 0, got = 0;
    if (k > n) k = n;
    size_t n_order = 0;
    for (size_t i = 0; i < n; i++)
        if (c.state[i] == FREE) order[n_order++] = (scored){items->scores[i], i};
    if (k > 0) {
        if (opts->diversity != FN_DIVERSITY_MMR) qsort(order, n_order, sizeof *order, cmp_scored);
        if (opts->diversity == FN_DIVERSITY_NONE)
            got = pick_by_score(&c, order, n_order, k, picked, 0);
        else if (opts->diversity == FN_DIVERSITY_MMR)
            st = pick_mmr(&c, opts->lambda, k, picked, &got, err);
        else
            st = pick_dpp(&c, opts->dpp_alpha, order, n_order, k, picked, &got, err);
        if (st != FN_OK) goto done;
    }
    /* (4) pins at their positions, picks in the gaps; pins past the end close the page */
    size_t total = opts->n_pinned + got;
    if (total > opts->page_size) total = opts->page_size;
    size_t np = 0, nq = 0;
    for (size_t pos = 0; pos < total; pos++) {
        if (np < opts->n_pinned && (pins[2 * np] == pos || nq == got))
            page[pos] = pins[2 * np++ + 1];
        else
            page[pos] = picked[nq++];
    }
    *n_page = total;
done:
    free(c.state);
    free(c.cid);
    free(c.cbeg);
    free(c.clen);
    free(c.count);
    free(pins);
    free(picked);
    free(order);
    return st;
}

double fn_page_diversity(const fn_page_items *items, const size_t *page, size_t n_page)
{
    if (n_page < 2) return 0;
    if (!items || !page || (!items->embeddings && !items->cat_offsets) ||
        (items->embeddings && items->dim <= 0))
        return NAN;
    if (!items->embeddings && !items->cats && items->cat_offsets[items->n] > items->cat_offsets[0])
        return NAN;
    double sum = 0;
    for (size_t a = 0; a < n_page; a++)
        for (size_t b = a + 1; b < n_page; b++) {
            size_t i = page[a], j = page[b];
            if (i >= items->n || j >= items->n) return NAN;
            double s;
            if (items->embeddings)
                s = dot(items->embeddings + i * (size_t)items->dim,
                        items->embeddings + j * (size_t)items->dim, items->dim);
            else {
                const uint32_t *o = items->cat_offsets;
                s = jaccard_raw(items->cats + o[i], o[i + 1] - o[i], items->cats + o[j],
                                o[j + 1] - o[j]);
            }
            sum += 1 - s;
        }
    return sum / ((double)n_page * (double)(n_page - 1) / 2);
}
