/*
 * check_rerank_diversity.c - the page maker of the rerank stage against
 * brute-force references written here: MMR re-evaluating its objective from
 * scratch at every step, greedy DPP taking the log-determinant of each
 * candidate set from a fresh Cholesky factorisation, the category cap counted
 * over the page so far, and pins inserted into the picked list. Random inputs
 * of awkward sizes (1, 2, 37, 200 items; pages larger than the list) with
 * exclusions, pins and caps must give the same page. Then the properties
 * (lambda 1 is score order, lambda 0 spreads genres, the cap holds, pins land,
 * excluded items never show), every argument error, and the intra-list
 * diversity on values computed by hand.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rerank/rerank.h"
#include "test_util.h"

/* The kernel constants of diversity.c: part of the algorithm being checked. */
#define JITTER   1e-6
#define MIN_GAIN 1e-10

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static double rng_unit(void)
{
    return (double)(rng_next() >> 11) / 9007199254740992.0;
}

static size_t rng_below(size_t n)
{
    return (size_t)(rng_next() % n);
}

/* One random list with the arrays it owns. */
typedef struct instance {
    fn_page_items it;
    float *scores, *emb;
    uint32_t *off, *cats;
    uint8_t *excluded;
    size_t pinned[4], pinned_at[4];
} instance;

/* n items, unit embeddings of dim when dim > 0, categories (0 to 3 of n_genres,
 * sometimes repeated, written as sparse ids) when n_genres > 0. */
static void instance_make(instance *x, size_t n, int dim, int n_genres)
{
    memset(x, 0, sizeof *x);
    x->scores = malloc((n ? n : 1) * sizeof *x->scores);
    x->excluded = calloc(n ? n : 1, 1);
    ck_assert(x->scores && x->excluded);
    for (size_t i = 0; i < n; i++) x->scores[i] = (float)rng_unit();
    if (dim > 0) {
        x->emb = malloc(n * (size_t)dim * sizeof *x->emb + 1);
        ck_assert_ptr_nonnull(x->emb);
        for (size_t i = 0; i < n; i++) {
            double norm = 0;
            float *row = x->emb + i * (size_t)dim;
            for (int d = 0; d < dim; d++) {
                row[d] = (float)(rng_unit() * 2 - 1);
                norm += (double)row[d] * row[d];
            }
            for (int d = 0; d < dim; d++) row[d] = (float)(row[d] / sqrt(norm));
        }
    }
    if (n_genres > 0) {
        x->off = malloc((n + 1) * sizeof *x->off);
        x->cats = malloc((4 * n + 1) * sizeof *x->cats);
        ck_assert(x->off && x->cats);
        x->off[0] = 0;
        for (size_t i = 0; i < n; i++) {
            size_t k = rng_below(10) == 0 ? 0 : 1 + rng_below(3), at = x->off[i];
            for (size_t c = 0; c < k; c++)
                x->cats[at++] = 1000 + 7 * (uint32_t)rng_below((size_t)n_genres);
            if (k > 0 && rng_below(8) == 0)
                x->cats[at++] = x->cats[x->off[i]]; /* a repeat is the same set */
            x->off[i + 1] = (uint32_t)at;
        }
    }
    x->it = (fn_page_items){.n = n,
                            .scores = x->scores,
                            .embeddings = x->emb,
                            .dim = dim,
                            .cat_offsets = x->off,
                            .cats = x->cats};
}

static void instance_free(instance *x)
{
    free(x->scores);
    free(x->emb);
    free(x->off);
    free(x->cats);
    free(x->excluded);
}

/* ---- the references ---- */

static int has_cat(const fn_page_items *it, size_t i, uint32_t c)
{
    for (uint32_t x = it->cat_offsets[i]; x < it->cat_offsets[i + 1]; x++)
        if (it->cats[x] == c) return 1;
    return 0;
}

static double ref_sim(const fn_page_items *it, size_t i, size_t j)
{
    if (it->embeddings) {
        double s = 0;
        for (int d = 0; d < it->dim; d++)
            s += (double)it->embeddings[i * (size_t)it->dim + d] *
                 it->embeddings[j * (size_t)it->dim + d];
        return s;
    }
    /* Jaccard over the union, each value counted once */
    size_t both = 0, uni = 0;
    const uint32_t *o = it->cat_offsets;
    for (int side = 0; side < 2; side++) {
        size_t a = side ? j : i, b = side ? i : j;
        for (uint32_t x = o[a]; x < o[a + 1]; x++) {
            int first = 1;
            for (uint32_t y = o[a]; y < x; y++) first &= it->cats[y] != it->cats[x];
            if (!first) continue;
            if (!has_cat(it, b, it->cats[x]))
                uni++;
            else if (side == 0) {
                both++;
                uni++;
            }
        }
    }
    return uni ? (double)both / (double)uni : 0;
}

/* Would item i put one of its categories over the cap, counting chosen[0..n_chosen)? */
static int ref_blocked(const fn_page_items *it, int cap, const size_t *chosen, size_t n_chosen,
                       size_t i)
{
    if (cap <= 0) return 0;
    for (uint32_t x = it->cat_offsets[i]; x < it->cat_offsets[i + 1]; x++) {
        int count = 0;
        for (size_t p = 0; p < n_chosen; p++) count += has_cat(it, chosen[p], it->cats[x]);
        if (count >= cap) return 1;
    }
    return 0;
}

/* log det of the DPP kernel on items s[0..m) by a fresh Cholesky; -inf when not positive. */
static double ref_logdet(const fn_page_items *it, const double *q, const size_t *s, size_t m)
{
    double *a = malloc((m * m + 1) * sizeof *a), ld = 0;
    ck_assert_ptr_nonnull(a);
    for (size_t r = 0; r < m; r++)
        for (size_t c = 0; c < m; c++)
            a[r * m + c] = r == c ? q[s[r]] * q[s[r]] * (1 + JITTER)
                                  : q[s[r]] * q[s[c]] * ref_sim(it, s[r], s[c]);
    for (size_t c = 0; c < m && ld > -INFINITY; c++) {
        for (size_t k = 0; k < c; k++) a[c * m + c] -= a[c * m + k] * a[c * m + k];
        if (!(a[c * m + c] > 0)) {
            ld = -INFINITY;
            break;
        }
        double piv = sqrt(a[c * m + c]);
        ld += 2 * log(piv);
        for (size_t r = c + 1; r < m; r++) {
            for (size_t k = 0; k < c; k++) a[r * m + c] -= a[r * m + k] * a[c * m + k];
            a[r * m + c] /= piv;
        }
    }
    free(a);
    return ld;
}

/* The page by the contract, computed the slow way. */
static void ref_page(const fn_page_items *it, const fn_page_options *o, size_t *page,
                     size_t *n_page)
{
    size_t n = it->n, np = o->n_pinned;
    size_t *chosen = malloc((n + np + 1) * sizeof *chosen); /* pins, then picks */
    uint8_t *out = calloc(n + 1, 1);                        /* excluded, pinned or picked */
    ck_assert(chosen && out);
    for (size_t i = 0; i < n; i++) out[i] = o->excluded && o->excluded[i];
    for (size_t p = 0; p < np; p++) {
        chosen[p] = o->pinned[p];
        out[o->pinned[p]] = 1;
    }
    size_t k = o->page_size > np ? o->page_size - np : 0, got = 0;
    double smax = -INFINITY, *q = malloc((n + 1) * sizeof *q);
    ck_assert_ptr_nonnull(q);
    for (size_t i = 0; i < n; i++)
        if (!out[i] && it->scores[i] > smax) smax = it->scores[i];
    for (size_t i = 0; i < n; i++)
        q[i] = exp((double)o->dpp_alpha * ((double)it->scores[i] - smax));
    int by_score = o->diversity == FN_DIVERSITY_NONE;
    while (got < k) {
        size_t best = SIZE_MAX;
        double best_v = -INFINITY;
        for (size_t i = 0; i < n; i++) {
            if (out[i] || ref_blocked(it, o->max_per_category, chosen, np + got, i)) continue;
            double v;
            if (by_score)
                v = it->scores[i];
            else if (o->diversity == FN_DIVERSITY_MMR) {
                double m = got ? -INFINITY : 0;
                for (size_t p = np; p < np + got; p++)
                    if (ref_sim(it, i, chosen[p]) > m) m = ref_sim(it, i, chosen[p]);
                v = (double)o->lambda * it->scores[i] - (1 - (double)o->lambda) * m;
            } else {
                chosen[np + got] = i;
                v = ref_logdet(it, q, chosen + np, got + 1);
            }
            if (best == SIZE_MAX || v > best_v) {
                best = i;
                best_v = v;
            }
        }
        if (best == SIZE_MAX) break;
        if (o->diversity == FN_DIVERSITY_DPP && !by_score) {
            double gain = exp(best_v - ref_logdet(it, q, chosen + np, got));
            if (!(gain >= MIN_GAIN)) {
                by_score = 1; /* the kernel is spent: the rest by score */
                continue;
            }
        }
        chosen[np + got++] = best;
        out[best] = 1;
    }
    /* pins into the picked list in position order, at their place or at the end */
    size_t len = 0;
    size_t *list = malloc((np + got + 1) * sizeof *list);
    ck_assert_ptr_nonnull(list);
    for (size_t p = 0; p < got; p++) list[len++] = chosen[np + p];
    uint8_t *done = calloc(np + 1, 1);
    ck_assert_ptr_nonnull(done);
    for (size_t r = 0; r < np; r++) {
        size_t low = SIZE_MAX;
        for (size_t p = 0; p < np; p++)
            if (!done[p] && (low == SIZE_MAX || o->pinned_at[p] < o->pinned_at[low])) low = p;
        done[low] = 1;
        size_t at = o->pinned_at[low] < len ? o->pinned_at[low] : len;
        memmove(list + at + 1, list + at, (len - at) * sizeof *list);
        list[at] = o->pinned[low];
        len++;
    }
    *n_page = len < o->page_size ? len : o->page_size;
    memcpy(page, list, *n_page * sizeof *page);
    free(done);
    free(list);
    free(q);
    free(out);
    free(chosen);
}

/* Random exclusions (about one in ten), up to 3 pins at positions up to page + 2, a cap. */
static fn_page_options random_rules(instance *x, size_t page_size, fn_diversity div)
{
    fn_page_options o = {.page_size = page_size, .diversity = div, .excluded = x->excluded};
    size_t n = x->it.n;
    for (size_t i = 0; i < n; i++) x->excluded[i] = rng_below(10) == 0;
    size_t want = n ? rng_below(4) : 0;
    for (size_t p = 0; p < want; p++) {
        size_t i = rng_below(n), at = rng_below(page_size + 3);
        int clash = x->excluded[i];
        for (size_t r = 0; r < o.n_pinned; r++) clash |= x->pinned[r] == i || x->pinned_at[r] == at;
        if (clash) continue;
        x->pinned[o.n_pinned] = i;
        x->pinned_at[o.n_pinned++] = at;
    }
    o.pinned = x->pinned;
    o.pinned_at = x->pinned_at;
    if (x->off && rng_below(2)) o.max_per_category = 1 + (int)rng_below(3);
    return o;
}

static void expect_same_page(const instance *x, const fn_page_options *o, const char *what)
{
    size_t cap = o->page_size + 1, n_got = 99, n_want = 98;
    size_t *got = malloc(cap * sizeof *got), *want = malloc(cap * sizeof *want);
    ck_assert(got && want);
    fn_error err = {0};
    ck_assert_msg(fn_rerank_page(&x->it, o, got, &n_got, &err) == FN_OK, "%s: %s", what, err.msg);
    ref_page(&x->it, o, want, &n_want);
    ck_assert_msg(n_got == n_want, "%s: n %zu page %zu: %zu items, reference %zu", what, x->it.n,
                  o->page_size, n_got, n_want);
    for (size_t p = 0; p < n_got; p++)
        ck_assert_msg(got[p] == want[p], "%s: n %zu page %zu: position %zu is %zu, reference %zu",
                      what, x->it.n, o->page_size, p, got[p], want[p]);
    free(got);
    free(want);
}

static const size_t sizes[] = {1, 2, 37, 200};

/* ---- against the references ---- */

START_TEST(none_matches_reference)
{
    rng_state = 0x1234567u;
    for (size_t s = 0; s < 4; s++)
        for (int rep = 0; rep < 6; rep++) {
            size_t n = sizes[s], page = rep == 0 ? n + 3 : 1 + rng_below(12);
            instance x;
            instance_make(&x, n, 0, rep % 2 ? 5 : 0);
            if (n > 2) /* equal scores go by index */
                x.scores[1] = x.scores[n - 1] = x.scores[2];
            fn_page_options o = random_rules(&x, page, FN_DIVERSITY_NONE);
            expect_same_page(&x, &o, "none");
            instance_free(&x);
        }
}
END_TEST

START_TEST(mmr_matches_reference)
{
    rng_state = 0x9e3779b97f4a7c15u;
    const float lambdas[] = {0, 0.3f, 0.5f, 0.7f, 0.9f, 1};
    for (size_t s = 0; s < 4; s++)
        for (int rep = 0; rep < 24; rep++) {
            size_t n = sizes[s], page = rep % 4 == 0 ? n + 3 : 1 + rng_below(15);
            instance x;
            /* embeddings, categories alone, or both (embeddings for similarity, categories for
             * the cap) */
            int kind = rep % 3;
            instance_make(&x, n, kind == 1 ? 0 : 8, kind == 0 ? 0 : 6);
            fn_page_options o = random_rules(&x, page, FN_DIVERSITY_MMR);
            o.lambda = lambdas[rep % 6];
            expect_same_page(&x, &o, "mmr");
            instance_free(&x);
        }
}
END_TEST

START_TEST(dpp_matches_reference)
{
    rng_state = 0xdeadbeefcafeu;
    const float alphas[] = {0, 0.5f, 1, 3, 30};
    for (size_t s = 0; s < 4; s++)
        for (int rep = 0; rep < 20; rep++) {
            size_t n = sizes[s];
            size_t page = rep % 4 == 0 && n < 100 ? n + 3 : 1 + rng_below(n < 100 ? 15 : 24);
            int kind = rep % 3;
            float alpha = alphas[rep % 5];
            /* Exact ties in the gains are rounding noise on both sides: categories alone
             * (whose Jaccard values repeat) are compared only with scores in the kernel. */
            if (kind == 1 && alpha == 0) alpha = 1;
            instance x;
            instance_make(&x, n, kind == 1 ? 0 : 48, kind == 0 ? 0 : 8);
            fn_page_options o = random_rules(&x, page, FN_DIVERSITY_DPP);
            o.dpp_alpha = alpha;
            expect_same_page(&x, &o, "dpp");
            instance_free(&x);
        }
}
END_TEST

/* ---- properties ---- */

START_TEST(empty_lists_and_pages)
{
    fn_error err = {0};
    size_t page[4] = {7, 7, 7, 7}, n_page = 9;
    fn_page_items none = {0};
    fn_page_options o = {.page_size = 4, .diversity = FN_DIVERSITY_MMR, .lambda = 0.5f};
    /* no items: an empty page, even without a similarity or scores */
    o.diversity = FN_DIVERSITY_NONE;
    ck_assert_int_eq(fn_rerank_page(&none, &o, page, &n_page, &err), FN_OK);
    ck_assert_uint_eq(n_page, 0);
    /* page_size 0: an empty page, page may be NULL */
    const float sc[] = {0.5f, 0.25f};
    const fn_page_items two = {.n = 2, .scores = sc};
    o.page_size = 0;
    n_page = 9;
    ck_assert_int_eq(fn_rerank_page(&two, &o, NULL, &n_page, &err), FN_OK);
    ck_assert_uint_eq(n_page, 0);
    /* one item, a page larger than the list */
    const fn_page_items one = {.n = 1, .scores = sc};
    o.page_size = 4;
    ck_assert_int_eq(fn_rerank_page(&one, &o, page, &n_page, &err), FN_OK);
    ck_assert_uint_eq(n_page, 1);
    ck_assert_uint_eq(page[0], 0);
    ck_assert_uint_eq(page[1], 7); /* nothing written past the page */
    /* everything excluded */
    const uint8_t ex[] = {1, 1};
    o.excluded = ex;
    ck_assert_int_eq(fn_rerank_page(&two, &o, page, &n_page, &err), FN_OK);
    ck_assert_uint_eq(n_page, 0);
}
END_TEST

START_TEST(lambda_one_is_score_order)
{
    rng_state = 42;
    for (size_t s = 0; s < 4; s++) {
        instance x;
        instance_make(&x, sizes[s], 8, 0);
        size_t page = sizes[s] + 2, *a = malloc(page * sizeof *a), *b = malloc(page * sizeof *b);
        size_t na = 0, nb = 0;
        fn_error err = {0};
        fn_page_options o = {.page_size = page, .diversity = FN_DIVERSITY_NONE};
        ck_assert_int_eq(fn_rerank_page(&x.it, &o, a, &na, &err), FN_OK);
        o.diversity = FN_DIVERSITY_MMR;
        o.lambda = 1;
        ck_assert_int_eq(fn_rerank_page(&x.it, &o, b, &nb, &err), FN_OK);
        ck_assert_uint_eq(na, sizes[s]);
        ck_assert_uint_eq(nb, na);
        for (size_t p = 0; p < na; p++) {
            ck_assert_uint_eq(a[p], b[p]);
            if (p > 0) ck_assert(x.scores[a[p - 1]] >= x.scores[a[p]]);
        }
        free(a);
        free(b);
        instance_free(&x);
    }
}
END_TEST

START_TEST(lambda_zero_spreads_genres)
{
    /* The six best items are all genre 10; genres 20 and 30 come later. */
    const float sc[] = {0.99f, 0.98f, 0.97f, 0.96f, 0.95f, 0.94f, 0.5f, 0.4f, 0.3f, 0.2f};
    const uint32_t off[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    const uint32_t cats[] = {10, 10, 10, 10, 10, 10, 20, 30, 20, 30};
    const fn_page_items it = {.n = 10, .scores = sc, .cat_offsets = off, .cats = cats};
    size_t page[3], n_page = 0;
    fn_error err = {0};
    fn_page_options o = {.page_size = 3, .diversity = FN_DIVERSITY_MMR, .lambda = 0};
    ck_assert_int_eq(fn_rerank_page(&it, &o, page, &n_page, &err), FN_OK);
    ck_assert_uint_eq(n_page, 3);
    /* ties of the objective go to the lower index: 0, then the first 20, the first 30 */
    ck_assert_uint_eq(page[0], 0);
    ck_assert_uint_eq(page[1], 6);
    ck_assert_uint_eq(page[2], 7);
    ck_assert_double_eq_tol(fn_page_diversity(&it, page, 3), 1, 1e-12);
    /* by score alone the page is one genre */
    o.diversity = FN_DIVERSITY_NONE;
    ck_assert_int_eq(fn_rerank_page(&it, &o, page, &n_page, &err), FN_OK);
    ck_assert_double_eq_tol(fn_page_diversity(&it, page, 3), 0, 1e-12);
    /* DPP spreads them too (small alpha), and the cap does on its own */
    o.diversity = FN_DIVERSITY_DPP;
    o.dpp_alpha = 0.1f;
    ck_assert_int_eq(fn_rerank_page(&it, &o, page, &n_page, &err), FN_OK);
    ck_assert_double_eq_tol(fn_page_diversity(&it, page, 3), 1, 1e-12);
    o.diversity = FN_DIVERSITY_NONE;
    o.max_per_category = 1;
    ck_assert_int_eq(fn_rerank_page(&it, &o, page, &n_page, &err), FN_OK);
    ck_assert_uint_eq(page[0], 0);
    ck_assert_uint_eq(page[1], 6);
    ck_assert_uint_eq(page[2], 7);
}
END_TEST

START_TEST(cap_holds_and_rules_are_kept)
{
    rng_state = 777;
    const fn_diversity divs[] = {FN_DIVERSITY_NONE, FN_DIVERSITY_MMR, FN_DIVERSITY_DPP};
    for (int rep = 0; rep < 60; rep++) {
        size_t n = sizes[rep % 4], page = 1 + rng_below(n + 5);
        instance x;
        instance_make(&x, n, rep % 2 ? 16 : 0, 5);
        fn_page_options o = random_rules(&x, page, divs[rep % 3]);
        o.lambda = 0.5f;
        o.dpp_alpha = 2;
        o.max_per_category = 1 + rep % 3;
        size_t *pg = malloc(page * sizeof *pg), n_page = 0;
        fn_error err = {0};
        ck_assert_msg(fn_rerank_page(&x.it, &o, pg, &n_page, &err) == FN_OK, "%s", err.msg);
        ck_assert(n_page <= page);
        uint8_t *seen = calloc(n, 1);
        for (size_t p = 0; p < n_page; p++) {
            ck_assert_uint_lt(pg[p], n);
            ck_assert(!x.excluded[pg[p]]);
            ck_assert(!seen[pg[p]]);
            seen[pg[p]] = 1;
        }
        /* every pin is shown when the page holds them all: at its position, or right after
         * the picks when they run out first (pins keep their order, the page has no holes) */
        size_t n_picks = n_page - (o.n_pinned < n_page ? o.n_pinned : n_page);
        for (size_t r = 0; r < o.n_pinned && o.n_pinned <= page; r++) {
            size_t rank = 0;
            for (size_t u = 0; u < o.n_pinned; u++) rank += o.pinned_at[u] < o.pinned_at[r];
            size_t want = o.pinned_at[r] < n_picks + rank ? o.pinned_at[r] : n_picks + rank;
            ck_assert_uint_lt(want, n_page);
            ck_assert_uint_eq(pg[want], o.pinned[r]);
        }
        /* the cap, over the page, for each category that no pin already fills */
        for (size_t p = 0; p < n_page; p++)
            for (uint32_t c = x.off[pg[p]]; c < x.off[pg[p] + 1]; c++) {
                int count = 0, pinned_count = 0;
                for (size_t r = 0; r < n_page; r++) count += has_cat(&x.it, pg[r], x.cats[c]);
                for (size_t r = 0; r < o.n_pinned; r++)
                    pinned_count += has_cat(&x.it, o.pinned[r], x.cats[c]);
                ck_assert_int_le(count, pinned_count > o.max_per_category ? pinned_count
                                                                          : o.max_per_category);
            }
        /* a short page means nothing left would fit */
        if (n_page < page && o.n_pinned <= page)
            for (size_t i = 0; i < n; i++)
                if (!seen[i] && !x.excluded[i])
                    ck_assert(ref_blocked(&x.it, o.max_per_category, pg, n_page, i));
        free(seen);
        free(pg);
        instance_free(&x);
    }
}
END_TEST

START_TEST(pins_land_at_their_positions)
{
    const float sc[] = {0.9f, 0.8f, 0.7f, 0.6f, 0.5f, 0.4f};
    const fn_page_items it = {.n = 6, .scores = sc};
    const size_t pinned[] = {5, 4, 3}, at[] = {0, 2, 40};
    fn_page_options o = {.page_size = 5, .pinned = pinned, .pinned_at = at, .n_pinned = 3};
    size_t page[8], n_page = 0;
    fn_error err = {0};
    ck_assert_int_eq(fn_rerank_page(&it, &o, page, &n_page, &err), FN_OK);
    /* 5 at 0, 4 at 2, two picks between, and 3 (position past the end) closes the page */
    const size_t want[] = {5, 0, 4, 1, 3};
    ck_assert_uint_eq(n_page, 5);
    for (size_t p = 0; p < 5; p++) ck_assert_uint_eq(page[p], want[p]);
    /* a page of 2: no picks, the pins in position order */
    o.page_size = 2;
    ck_assert_int_eq(fn_rerank_page(&it, &o, page, &n_page, &err), FN_OK);
    ck_assert_uint_eq(n_page, 2);
    ck_assert_uint_eq(page[0], 5);
    ck_assert_uint_eq(page[1], 4);
    /* too few items to reach position 2: the pin there follows the picks */
    const uint8_t ex[] = {0, 1, 1, 0, 0, 0};
    o.page_size = 8;
    o.excluded = ex;
    ck_assert_int_eq(fn_rerank_page(&it, &o, page, &n_page, &err), FN_OK);
    const size_t want2[] = {5, 0, 4, 3};
    ck_assert_uint_eq(n_page, 4);
    for (size_t p = 0; p < 4; p++) ck_assert_uint_eq(page[p], want2[p]);
}
END_TEST

START_TEST(dpp_fills_by_score_when_the_kernel_is_spent)
{
    /* Scores far apart with a large alpha: q_i^2 vanishes below the best one and the gains
     * fall under the threshold, so the page is in score order, not in rounding order. */
    const float sc[] = {0.1f, 5, 0.3f, 2, 0.2f};
    const float emb[] = {1, 0, 0, 1, 1, 0, 0, 1, 1, 0};
    const fn_page_items it = {.n = 5, .scores = sc, .embeddings = emb, .dim = 2};
    fn_page_options o = {.page_size = 5, .diversity = FN_DIVERSITY_DPP, .dpp_alpha = 100};
    size_t page[5], n_page = 0;
    fn_error err = {0};
    ck_assert_int_eq(fn_rerank_page(&it, &o, page, &n_page, &err), FN_OK);
    const size_t want[] = {1, 3, 2, 4, 0};
    ck_assert_uint_eq(n_page, 5);
    for (size_t p = 0; p < 5; p++) ck_assert_uint_eq(page[p], want[p]);
    /* Below the threshold the score decides even where the determinant would not: item 1
     * repeats item 0 and item 2 is new, but q^2 is e^-28 and e^-30 (gains 1e-18 and 1e-13). */
    const float sc3[] = {20, 6, 5}, emb3[] = {1, 0, 1, 0, 0, 1};
    const fn_page_items it3 = {.n = 3, .scores = sc3, .embeddings = emb3, .dim = 2};
    o.dpp_alpha = 1;
    ck_assert_int_eq(fn_rerank_page(&it3, &o, page, &n_page, &err), FN_OK);
    ck_assert_uint_eq(n_page, 3);
    ck_assert_uint_eq(page[0], 0);
    ck_assert_uint_eq(page[1], 1);
    ck_assert_uint_eq(page[2], 2);
    o.dpp_alpha = 0.1f; /* gains well above it: the new direction first */
    ck_assert_int_eq(fn_rerank_page(&it3, &o, page, &n_page, &err), FN_OK);
    ck_assert_uint_eq(page[0], 0);
    ck_assert_uint_eq(page[1], 2);
    ck_assert_uint_eq(page[2], 1);
    /* alpha 0: pure diversity; after one of each direction only duplicates remain */
    o.dpp_alpha = 0;
    ck_assert_int_eq(fn_rerank_page(&it, &o, page, &n_page, &err), FN_OK);
    ck_assert_uint_eq(page[0], 0);
    ck_assert_uint_eq(page[1], 1);
}
END_TEST

/* ---- errors ---- */

static void expect_invalid(const fn_page_items *it, const fn_page_options *o, const char *needle)
{
    size_t page[16], n_page = 5;
    fn_error err = {0};
    ck_assert_int_eq(fn_rerank_page(it, o, page, &n_page, &err), FN_ERR_INVALID);
    ck_assert_uint_eq(n_page, 0);
    ck_assert_msg(strstr(err.msg, needle) != NULL, "'%s' not in '%s'", needle, err.msg);
}

START_TEST(argument_errors)
{
    float sc[] = {0.5f, 0.4f, 0.3f, 0.2f};
    const float emb[] = {1, 0, 0, 1, 1, 0, 0, 1};
    const uint32_t off[] = {0, 1, 2, 3, 4}, bad_off[] = {0, 2, 1, 3, 4};
    const uint32_t cats[] = {1, 2, 1, 2};
    const fn_page_items it = {.n = 4, .scores = sc};
    const fn_page_items with_cats = {.n = 4, .scores = sc, .cat_offsets = off, .cats = cats};
    fn_page_options o = {.page_size = 3};
    size_t page[4], n_page = 0;
    fn_error err = {0};
    ck_assert_int_eq(fn_rerank_page(NULL, &o, page, &n_page, &err), FN_ERR_INVALID);
    ck_assert_int_eq(fn_rerank_page(&it, NULL, page, &n_page, &err), FN_ERR_INVALID);
    ck_assert_int_eq(fn_rerank_page(&it, &o, NULL, &n_page, &err), FN_ERR_INVALID);
    ck_assert_int_eq(fn_rerank_page(&it, &o, page, NULL, &err), FN_ERR_INVALID);
    ck_assert_int_eq(fn_rerank_page(&it, &o, page, &n_page, NULL), FN_OK); /* err is optional */
    const fn_page_items no_scores = {.n = 4};
    expect_invalid(&no_scores, &o, "scores");
    sc[2] = NAN;
    expect_invalid(&it, &o, "item 2");
    sc[2] = INFINITY;
    expect_invalid(&it, &o, "item 2");
    uint8_t ex[] = {0, 0, 1, 0};
    o.excluded = ex; /* an excluded item's score is not looked at */
    ck_assert_int_eq(fn_rerank_page(&it, &o, page, &n_page, &err), FN_OK);
    ck_assert_uint_eq(n_page, 3);
    sc[2] = 0.3f;
    /* pins */
    size_t pinned[] = {9, 0}, at[] = {0, 1};
    o.pinned = pinned;
    o.pinned_at = at;
    o.n_pinned = 1;
    expect_invalid(&it, &o, "pinned item 9 is out of range");
    pinned[0] = 2;
    expect_invalid(&it, &o, "pinned item 2 is also excluded");
    pinned[0] = 1;
    pinned[1] = 1;
    o.n_pinned = 2;
    expect_invalid(&it, &o, "item 1 is pinned twice");
    pinned[1] = 3;
    at[1] = 0;
    expect_invalid(&it, &o, "position 0");
    o.pinned = NULL;
    expect_invalid(&it, &o, "pins");
    o = (fn_page_options){.page_size = 3};
    /* methods */
    o.diversity = FN_DIVERSITY_MMR;
    expect_invalid(&it, &o, "similarity");
    o.diversity = FN_DIVERSITY_DPP;
    expect_invalid(&it, &o, "similarity");
    o.diversity = FN_DIVERSITY_MMR;
    o.lambda = -0.1f;
    expect_invalid(&with_cats, &o, "lambda");
    o.lambda = 1.5f;
    expect_invalid(&with_cats, &o, "lambda");
    o.lambda = NAN;
    expect_invalid(&with_cats, &o, "lambda");
    o.diversity = FN_DIVERSITY_DPP;
    o.dpp_alpha = -1;
    expect_invalid(&with_cats, &o, "alpha");
    o.dpp_alpha = INFINITY;
    expect_invalid(&with_cats, &o, "alpha");
    o.diversity = (fn_diversity)7;
    expect_invalid(&with_cats, &o, "unknown diversity");
    /* the cap needs categories */
    o = (fn_page_options){.page_size = 3, .max_per_category = 1};
    expect_invalid(&it, &o, "categories");
    o.max_per_category = -1;
    expect_invalid(&with_cats, &o, "max_per_category");
    /* malformed similarity inputs */
    o = (fn_page_options){.page_size = 3, .diversity = FN_DIVERSITY_MMR, .lambda = 0.5f};
    const fn_page_items bad_cats = {.n = 4, .scores = sc, .cat_offsets = bad_off, .cats = cats};
    expect_invalid(&bad_cats, &o, "cat_offsets");
    const fn_page_items no_cats = {.n = 4, .scores = sc, .cat_offsets = off};
    expect_invalid(&no_cats, &o, "cats is NULL");
    const fn_page_items no_dim = {.n = 4, .scores = sc, .embeddings = emb};
    expect_invalid(&no_dim, &o, "dimension");
    float nan_emb[] = {1, 0, 0, 1, NAN, 0, 0, 1};
    const fn_page_items bad_emb = {.n = 4, .scores = sc, .embeddings = nan_emb, .dim = 2};
    expect_invalid(&bad_emb, &o, "item 2");
}
END_TEST

/* ---- intra-list diversity ---- */

START_TEST(page_diversity_by_hand)
{
    const float sc[] = {1, 1, 1};
    const float emb[] = {1, 0, 0, 1, 0.6f, 0.8f};
    const fn_page_items e = {.n = 3, .scores = sc, .embeddings = emb, .dim = 2};
    const size_t all[] = {0, 1, 2}, two[] = {0, 2};
    /* 1 - cos: 1 (0,1), 0.4 (0,2), 0.2 (1,2) */
    ck_assert_double_eq_tol(fn_page_diversity(&e, all, 3), 1.6 / 3, 1e-6);
    ck_assert_double_eq_tol(fn_page_diversity(&e, two, 2), 0.4, 1e-6);
    ck_assert_double_eq(fn_page_diversity(&e, all, 1), 0);
    ck_assert_double_eq(fn_page_diversity(&e, all, 0), 0);
    /* {1,2}, {2,3} share 1 of 3; {} shares nothing with anything, itself included;
     * a repeated category is the same set */
    const uint32_t off[] = {0, 3, 5, 5}, cats[] = {1, 2, 1, 3, 2};
    const fn_page_items c = {.n = 3, .scores = sc, .cat_offsets = off, .cats = cats};
    ck_assert_double_eq_tol(fn_page_diversity(&c, all, 3), (2.0 / 3 + 1 + 1) / 3, 1e-12);
    const size_t same[] = {2, 2};
    ck_assert_double_eq_tol(fn_page_diversity(&c, same, 2), 1, 1e-12);
    /* without a similarity there is no diversity to report */
    const fn_page_items plain = {.n = 3, .scores = sc};
    ck_assert(isnan(fn_page_diversity(&plain, all, 3)));
    const fn_page_items no_dim = {.n = 3, .scores = sc, .embeddings = emb};
    ck_assert(isnan(fn_page_diversity(&no_dim, all, 3)));
    const size_t far[] = {0, 3};
    ck_assert(isnan(fn_page_diversity(&e, far, 2)));
}
END_TEST

Suite *rerank_diversity_suite(void);
Suite *rerank_diversity_suite(void)
{
    Suite *s = suite_create("rerank_diversity");
    TCase *t = tcase_create("edges");
    tcase_add_test(t, empty_lists_and_pages);
    tcase_add_test(t, argument_errors);
    suite_add_tcase(s, t);
    t = tcase_create("reference");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, none_matches_reference);
    tcase_add_test(t, mmr_matches_reference);
    tcase_add_test(t, dpp_matches_reference);
    suite_add_tcase(s, t);
    t = tcase_create("properties");
    tcase_add_test(t, lambda_one_is_score_order);
    tcase_add_test(t, lambda_zero_spreads_genres);
    tcase_add_test(t, cap_holds_and_rules_are_kept);
    tcase_add_test(t, pins_land_at_their_positions);
    tcase_add_test(t, dpp_fills_by_score_when_the_kernel_is_spent);
    suite_add_tcase(s, t);
    t = tcase_create("page_diversity");
    tcase_add_test(t, page_diversity_by_hand);
    suite_add_tcase(s, t);
    return s;
}
