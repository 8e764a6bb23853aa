/*
 * pipeline_rank.c - one Rank request through the pipeline:
 *
 *   recall    popularity (time-decayed) and item co-occurrence from the
 *             user's most recent liked items, the user's history and the
 *             request's exclusions removed, merged with per-channel quotas;
 *   rank      the candidates' records fetched in one multi-get, their
 *             feature columns (the user and context columns once per
 *             request), scored by the CTR model;
 *   rerank    the listwise model over the top of the ranked list (its
 *             feature rows: pipeline_rerank.c), when one is configured;
 *   page      the page maker (diversity over the items' categories, a cap
 *             per category), cut to page_size.
 *
 * When the deadline is near a stage is skipped and named in `degraded`; the
 * order of the last finished stage stands. Everything the response points to
 * lives in the request's arena.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "features/example.h"
#include "pipeline_impl.h"

#define MAX_QUERY_BYTES 1024
#define MAX_ID_BYTES    1024
#define MAX_EXCLUDE_IDS 10000
/* A stage is skipped when less than its estimate, and at least this, is left. */
#define STAGE_MARGIN_NS 100000

static const char *const channel_names[PL_N_CHANNELS] = {"popularity", "cooc", "query_ann",
                                                         "user_ann"};

/* Valid UTF-8, no overlong forms or surrogates. */
static int utf8_valid(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + len > n) return 0;
        uint32_t cp = len == 1 ? c : c & (0x7f >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

static fn_status check_request(const fn_pipeline *p, const Funnel__V1__RankRequest *q, size_t *page,
                               fn_error *err)
{
    const char *query = q->query ? q->query : "";
    const size_t ql = strlen(query);
    if (ql > MAX_QUERY_BYTES)
        return fn_error_set(err, FN_ERR_INVALID, "query: %zu bytes, at most %d", ql,
                            MAX_QUERY_BYTES);
    if (!utf8_valid((const unsigned char *)query, ql))
        return fn_error_set(err, FN_ERR_INVALID, "query: not valid UTF-8");
    if (q->user_id && strlen(q->user_id) > MAX_ID_BYTES)
        return fn_error_set(err, FN_ERR_INVALID, "user_id: longer than %d bytes", MAX_ID_BYTES);
    if (q->n_exclude_ids > MAX_EXCLUDE_IDS)
        return fn_error_set(err, FN_ERR_INVALID, "exclude_ids: %zu ids, at most %d",
                            q->n_exclude_ids, MAX_EXCLUDE_IDS);
    if (q->page_size > p->page_max)
        return fn_error_set(err, FN_ERR_INVALID, "page_size: %u is above the maximum %zu",
                            q->page_size, p->page_max);
    *page = q->page_size ? q->page_size : p->page_default;
    return FN_OK;
}

/* ---- per request scratch ---- */

typedef struct request {
    const fn_pipeline *p;
    fn_arena *a;
    const Funnel__V1__RankRequest *q;
    const pl_user *user;
    /* hidden: the user's seen items (the pipeline's, sorted at load) and the request's
     * exclusions (sorted here); extra: how many a channel over-fetches to make up for them */
    const char *const *seen;
    size_t n_seen;
    const char **excluded;
    size_t n_excluded, extra;
    /* the user's most recent liked items, newest first: seeds of cooc and of the user vector */
    const char **recent;
    size_t n_recent;
    /* the query's vector when the query channel ran (the request is a search), and the
     * user's, when the ANN channels made them */
    const float *qvec, *uvec;
    /* candidates */
    fn_recall_candidate *cand;
    double *chan_scores;
    size_t n;
    float *ctr;
    /* what the page orders by (see relevance), and the candidates in that order */
    float *rel;
    size_t *order;
    /* the reranker's scores by candidate (of order[0 .. n_rr) once it ran) */
    float *rr;
    size_t n_rr;
    /* page */
    size_t *page;
    size_t n_page;
    /* timings */
    Funnel__V1__StageTiming **timings;
    size_t n_timings;
    char **degraded;
    size_t n_degraded;
} request;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int is_hidden(const request *r, const char *id)
{
    return (r->n_seen && bsearch(&id, r->seen, r->n_seen, sizeof *r->seen, cmp_str)) ||
           (r->n_excluded &&
            bsearch(&id, r->excluded, r->n_excluded, sizeof *r->excluded, cmp_str));
}

static void *alloc(request *r, size_t n, fn_status *st, fn_error *err)
{
    void *m = n ? fn_arena_alloc(r->a, n) : NULL;
    if (n && !m) *st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    return m;
}

static void timing(request *r, const char *stage, uint64_t t0, size_t candidates)
{
    Funnel__V1__StageTiming *t = fn_arena_alloc(r->a, sizeof *t);
    if (!t) return;
    funnel__v1__stage_timing__init(t);
    t->stage = (char *)stage;
    t->millis = (double)(fn_now_ns() - t0) * 1e-6;
    t->candidates = (uint32_t)candidates;
    r->timings[r->n_timings++] = t;
}

/*
 * Skips a stage whose recent duration would not fit before the deadline (recall always
 * runs: without candidates there is nothing to answer); the stage is named in degraded.
 */
static int out_of_time(request *r, int64_t deadline_ns, int stage, const char *name)
{
    if (!deadline_ns) return 0;
    fn_pipeline *p = (fn_pipeline *)r->p;
    uint64_t need = atomic_load_explicit(&p->stage_ns[stage], memory_order_relaxed);
    if (need < STAGE_MARGIN_NS) need = STAGE_MARGIN_NS;
    if ((int64_t)(fn_now_ns() + need) < deadline_ns) return 0;
    r->degraded[r->n_degraded++] = (char *)name;
    return 1;
}

/* Folds a stage's duration into its estimate (a moving average; races only blur it). */
static void learn(const fn_pipeline *cp, int stage, uint64_t t0)
{
    fn_pipeline *p = (fn_pipeline *)cp;
    const uint64_t d = fn_now_ns() - t0,
                   old = atomic_load_explicit(&p->stage_ns[stage], memory_order_relaxed);
    atomic_store_explicit(&p->stage_ns[stage], old ? (4 * old + d) / 5 : d, memory_order_relaxed);
}

/* ---- recall ---- */

/* Keeps the items of in[0..n) that are not hidden, at most k, into out. */
static size_t visible(const request *r, const fn_recall_item *in, size_t n, size_t k,
                      fn_recall_item *out)
{
    size_t m = 0;
    for (size_t i = 0; i < n && m < k; i++)
        if (!is_hidden(r, in[i].id)) out[m++] = in[i];
    return m;
}

/* ANN ids and scores to visible items (ANN ids are the store's item numbers). */
static fn_status ann_list(request *r, const int64_t *ids, const float *scores, size_t n,
                          size_t quota, fn_recall_channel *ch, fn_error *err)
{
    fn_status st = FN_OK;
    fn_recall_item *items = alloc(r, (n + 1) * sizeof *items, &st, err);
    size_t m = 0;
    for (size_t i = 0; st == FN_OK && i < n && m < quota; i++) {
        const char *id = fn_store_item_names_get(r->p->item_names, ids[i], NULL);
        if (id && !is_hidden(r, id)) items[m++] = (fn_recall_item){id, scores[i]};
    }
    ch->items = items, ch->n = m, ch->quota = quota;
    return st;
}

/*
 * The query channel (the query's vector, from the cache or the encoder, searched in the
 * items' index) and the user channel (the mean vector of the user's recent liked items,
 * from the store, searched the same way). A query the pipeline cannot encode is named in
 * degraded rather than silently dropped.
 */
static fn_status ann_channels(request *r, fn_recall_channel *ch, size_t extra, fn_error *err)
{
    const fn_pipeline *p = r->p;
    fn_status st = FN_OK;
    const char *query = r->q->query ? r->q->query : "";
    /* FAISS would open a thread team per search; requests run side by side instead */
    static _Thread_local int one_thread;
    if (p->ann && !one_thread) one_thread = fn_ann_set_threads(1, NULL) == FN_OK;
    if (*query && (!p->encoder || !p->ann)) {
        r->degraded[r->n_degraded++] = "query_ann";
    } else if (*query && p->quota[PL_CH_QUERY]) {
        /* search: the query's channel fills the candidates (see recall) */
        const size_t dim = fn_ann_dim(p->ann), k = p->cap + extra, len = strlen(query);
        float *qv = alloc(r, dim * sizeof *qv, &st, err);
        int64_t *ids = alloc(r, k * sizeof *ids, &st, err);
        float *sc = alloc(r, k * sizeof *sc, &st, err);
        if (st == FN_OK && !fn_query_cache_get(p->qcache, query, len, qv)) {
            st = fn_encoder_encode(p->encoder, &query, &len, 1, qv, err);
            if (st == FN_OK) fn_query_cache_put(p->qcache, query, len, qv);
        }
        if (st == FN_OK) st = fn_ann_search(p->ann, 1, qv, k, &p->ann_params, ids, sc, err);
        if (st == FN_OK) st = ann_list(r, ids, sc, k, p->cap, &ch[PL_CH_QUERY], err);
        if (st == FN_OK) r->qvec = qv; /* a search: relevance is CTR times query similarity */
    }
    const size_t nr = r->n_recent < p->user_recent ? r->n_recent : p->user_recent;
    if (st != FN_OK || !p->ann || !nr || !p->quota[PL_CH_USER]) return st;
    const char *const *recent = r->recent;
    fn_store_record **recs = alloc(r, nr * sizeof *recs, &st, err);
    const size_t dim = fn_ann_dim(p->ann), k = p->quota[PL_CH_USER] + extra;
    float *vecs = alloc(r, nr * dim * sizeof *vecs, &st, err);
    int64_t *ids = alloc(r, k * sizeof *ids, &st, err);
    float *sc = alloc(r, k * sizeof *sc, &st, err);
    if (st == FN_OK)
        st = fn_store_multi_get(p->store, FN_STORE_ITEMS, nr, (const char *const *)recent, NULL,
                                recs, err);
    if (st != FN_OK) return st;
    size_t nv = 0;
    for (size_t i = 0; i < nr; i++) {
        size_t n = 0;
        const float *v = recs[i] ? fn_store_record_vector(recs[i], &n) : NULL;
        if (v && n == dim) memcpy(vecs + nv++ * dim, v, dim * sizeof *v);
    }
    fn_store_records_release(recs, nr);
    if (!nv) return FN_OK; /* the items have no vectors: the channel has nothing to say */
    /* the user's vector, made once for this channel's search and the rerank stage's rows */
    float *uv = alloc(r, dim * sizeof *uv, &st, err);
    if (st == FN_OK) st = fn_recall_user_vector(nv, dim, vecs, uv, err);
    if (st == FN_OK) st = fn_ann_search(p->ann, 1, uv, k, &p->ann_params, ids, sc, err);
    if (st == FN_OK) r->uvec = uv;
    if (st == FN_OK) st = ann_list(r, ids, sc, k, p->quota[PL_CH_USER], &ch[PL_CH_USER], err);
    return st;
}

static fn_status recall(request *r, fn_error *err)
{
    const fn_pipeline *p = r->p;
    fn_status st = FN_OK;
    const size_t extra = r->extra;
    fn_recall_channel ch[PL_N_CHANNELS] = {{0}};
    /* popularity: the ranking is precomputed; over-fetch past what the user has seen */
    size_t kp = p->quota[PL_CH_POPULARITY] + extra, got = 0;
    fn_recall_item *pop = alloc(r, (kp + 1) * sizeof *pop, &st, err);
    if (st == FN_OK) st = fn_popularity_top(p->pop, kp, pop, &got, err);
    if (st == FN_OK) {
        ch[PL_CH_POPULARITY].items = pop;
        ch[PL_CH_POPULARITY].n = visible(r, pop, got, p->quota[PL_CH_POPULARITY], pop);
        ch[PL_CH_POPULARITY].quota = p->quota[PL_CH_POPULARITY];
    }
    /* co-occurrence of the user's most recent liked items */
    const size_t nr = r->n_recent < p->recent ? r->n_recent : p->recent;
    if (st == FN_OK && p->cooc && nr) {
        size_t kc = p->quota[PL_CH_COOC] + extra;
        fn_recall_item *co = alloc(r, (kc + 1) * sizeof *co, &st, err);
        if (st == FN_OK) st = fn_cooc_candidates(p->cooc, r->recent, nr, kc, co, &got, err);
        if (st == FN_OK) {
            ch[PL_CH_COOC].items = co;
            ch[PL_CH_COOC].n = visible(r, co, got, p->quota[PL_CH_COOC], co);
            ch[PL_CH_COOC].quota = p->quota[PL_CH_COOC];
        }
    }
    if (st == FN_OK) st = ann_channels(r, ch, extra, err);
    if (st != FN_OK) return st;
    /* a search takes its candidates from the query's channel; the others only mark them */
    if (r->qvec)
        for (int c = 0; c < PL_N_CHANNELS; c++) ch[c].quota = c == PL_CH_QUERY ? p->cap : 0;
    r->cand = alloc(r, p->cap * sizeof *r->cand, &st, err);
    r->chan_scores = alloc(r, p->cap * PL_N_CHANNELS * sizeof *r->chan_scores, &st, err);
    if (st == FN_OK)
        st = fn_recall_merge(ch, PL_N_CHANNELS, p->cap, r->cand, r->chan_scores, &r->n, err);
    return st;
}

/* ---- rank ---- */

/* Appends src's triples of the columns marked (or not) shared to a growing array in the arena. */
static fn_status keep_triples(request *r, const fn_column_output *o, int shared,
                              fn_feature_triple **v, size_t *n, size_t *cap, fn_error *err)
{
    for (size_t i = 0; i < o->n; i++) {
        if (!r->p->shared_col[o->triples[i].field] != !shared) continue;
        if (*n == *cap) {
            size_t nc = *cap ? 2 * *cap : 1024;
            fn_feature_triple *m = fn_arena_alloc(r->a, nc * sizeof *m);
            if (!m) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
            if (*n) memcpy(m, *v, *n * sizeof *m);
            *v = m, *cap = nc;
        }
        (*v)[(*n)++] = o->triples[i];
    }
    return FN_OK;
}

static fn_status rank(request *r, fn_store_record **items, fn_error *err)
{
    const fn_pipeline *p = r->p;
    fn_status st = FN_OK;
    const char **ids = alloc(r, (r->n + 1) * sizeof *ids, &st, err);
    for (size_t i = 0; st == FN_OK && i < r->n; i++) ids[i] = r->cand[i].id;
    if (st == FN_OK) st = fn_store_multi_get(p->store, FN_STORE_ITEMS, r->n, ids, NULL, items, err);
    fn_store_record *user = NULL;
    const char *uid = r->q->user_id ? r->q->user_id : "";
    if (st == FN_OK && *uid) {
        fn_status us = fn_store_get(p->store, FN_STORE_USERS, uid, strlen(uid), &user, err);
        if (us == FN_ERR_NOT_FOUND) us = FN_OK; /* a new user: no user features */
        st = us;
    }
    fn_column_output o = {0};
    fn_column_sources src = {{0}};
    src.src[FN_SOURCE_USER] = user ? fn_store_record_features(user) : NULL;
    src.src[FN_SOURCE_CONTEXT] = r->q->context;
    fn_feature_triple *shared = NULL, *cand = NULL;
    size_t n_shared = 0, cap_shared = 0, n_cand = 0, cap_cand = 0;
    size_t *offsets = alloc(r, (r->n + 1) * sizeof *offsets, &st, err);
    const unsigned user_ctx = (1u << FN_SOURCE_USER) | (1u << FN_SOURCE_CONTEXT);
    if (st == FN_OK) st = fn_columns_transform(p->spec, &src, user_ctx, &o, err);
    if (st == FN_OK) st = keep_triples(r, &o, 1, &shared, &n_shared, &cap_shared, err);
    for (size_t i = 0; st == FN_OK && i < r->n; i++) {
        offsets[i] = n_cand;
        src.src[FN_SOURCE_ITEM] = items[i] ? fn_store_record_features(items[i]) : NULL;
        st = fn_columns_transform(p->spec, &src, FN_SOURCES_ALL, &o, err);
        if (st == FN_OK) st = keep_triples(r, &o, 0, &cand, &n_cand, &cap_cand, err);
        if (st != FN_OK) fn_error_prefix(err, "item '%s'", r->cand[i].id);
    }
    if (st == FN_OK) offsets[r->n] = n_cand;
    fn_column_output_free(&o);
    fn_store_record_release(user);
    r->ctr = alloc(r, (r->n + 1) * sizeof *r->ctr, &st, err);
    if (st == FN_OK && r->n) {
        fn_score_request sr = {shared, n_shared, cand, offsets, r->n};
        st = fn_model_score(p->ctr, &sr, r->ctr, err);
    }
    return st;
}

/* ---- relevance and rerank ---- */

/*
 * What the page orders by: the CTR (or, when ranking was skipped, the recall order); in a
 * search, times the item's cosine to the query (0 below zero), so the page is about the query
 * and personal within it.
 */
static float relevance(const request *r, size_t i)
{
    float v = r->ctr ? r->ctr[i] : 1.0f - (float)i / (float)(r->n + 1);
    if (r->qvec) {
        const double sim = r->chan_scores[i * PL_N_CHANNELS + PL_CH_QUERY];
        v *= sim > 0 ? (float)sim : 0.0f; /* NaN (not found by the query) compares false */
    }
    return v;
}

/* Sorts candidate indexes by relevance, highest first; ties keep the lower index. */
static int cmp_by_rel(const void *a, const void *b, void *rel)
{
    const float *v = rel;
    const size_t i = *(const size_t *)a, j = *(const size_t *)b;
    if (v[i] != v[j]) return v[i] > v[j] ? -1 : 1;
    return i < j ? -1 : i > j;
}

/* r->rel from the last finished stage before rerank, and the candidates in its order. */
static fn_status order_by_relevance(request *r, fn_error *err)
{
    fn_status st = FN_OK;
    r->rel = alloc(r, (r->n + 1) * sizeof *r->rel, &st, err);
    r->order = alloc(r, (r->n + 1) * sizeof *r->order, &st, err);
    if (st != FN_OK) return st;
    for (size_t i = 0; i < r->n; i++) r->rel[i] = relevance(r, i), r->order[i] = i;
    qsort_r(r->order, r->n, sizeof *r->order, cmp_by_rel, r->rel);
    return FN_OK;
}

/* The rerank stage's feature rows for order[0 .. m) (items: the candidates' records). */
static fn_status rerank_rows(request *r, fn_store_record **items, size_t m, float **rows,
                             fn_error *err)
{
    fn_status st = FN_OK;
    const float **vecs = alloc(r, (r->n + 1) * sizeof *vecs, &st, err);
    *rows = alloc(r, (m * FN_PIPELINE_RERANK_FEATURES + 1) * sizeof **rows, &st, err);
    if (st != FN_OK) return st;
    const size_t dim = r->p->ann ? fn_ann_dim(r->p->ann) : 0;
    for (size_t k = 0; k < m; k++) {
        const size_t i = r->order[k];
        size_t len = 0;
        const float *v = items[i] ? fn_store_record_vector(items[i], &len) : NULL;
        vecs[i] = v && dim && len == dim ? v : NULL;
    }
    const pl_user *u = r->user;
    const pl_rerank_in in = {.m = m,
                             .order = r->order,
                             .cand = r->cand,
                             .chan_scores = r->chan_scores,
                             .ctr = r->ctr,
                             .relevance = r->rel,
                             .vecs = vecs,
                             .dim = dim,
                             .qvec = dim ? r->qvec : NULL,
                             .uvec = dim ? r->uvec : NULL,
                             .history = u ? u->n : 0};
    return pl_rerank_features(r->p, &in, *rows, err);
}

/*
 * The rerank stage: the reranker scores the top rerank_top of the order as one list. Their
 * relevance becomes 1 + the score scaled to [0, 1] over that list, so the page's diversity
 * trade-off sees the usual range and they all stay above the rest (relevance at most 1).
 */
static fn_status rerank(request *r, fn_store_record **items, fn_error *err)
{
    const size_t m = r->n < r->p->rerank_top ? r->n : r->p->rerank_top;
    float *rows = NULL;
    fn_status st = rerank_rows(r, items, m, &rows, err);
    float *s = alloc(r, (m + 1) * sizeof *s, &st, err);
    r->rr = alloc(r, (r->n + 1) * sizeof *r->rr, &st, err);
    if (st == FN_OK) st = fn_reranker_score(r->p->reranker, rows, m, s, err);
    if (st != FN_OK) return st;
    float lo = INFINITY, hi = -INFINITY;
    for (size_t k = 0; k < m; k++) {
        if (s[k] < lo) lo = s[k];
        if (s[k] > hi) hi = s[k];
        r->rr[r->order[k]] = s[k];
    }
    for (size_t k = 0; k < m; k++)
        r->rel[r->order[k]] = 1.0f + (hi > lo ? (s[k] - lo) / (hi - lo) : 0.5f);
    r->n_rr = m;
    /* the order follows: the reranked top first, the rest as they were */
    qsort_r(r->order, m, sizeof *r->order, cmp_by_rel, r->rel);
    return FN_OK;
}

/* ---- page ---- */

/* The item's categories (bytes values of the category key) as small ids, interned per request. */
typedef struct cat_table {
    const char **names;
    size_t n, cap;
} cat_table;

static fn_status intern_cat(request *r, cat_table *t, const char *s, size_t len, uint32_t *id,
                            fn_error *err)
{
    for (size_t i = 0; i < t->n; i++)
        if (strlen(t->names[i]) == len && !memcmp(t->names[i], s, len)) {
            *id = (uint32_t)i;
            return FN_OK;
        }
    if (t->n == t->cap) {
        size_t nc = t->cap ? 2 * t->cap : 64;
        const char **m = fn_arena_alloc(r->a, nc * sizeof *m);
        if (!m) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        if (t->n) memcpy(m, t->names, t->n * sizeof *m);
        t->names = m, t->cap = nc;
    }
    char *copy = fn_arena_strndup(r->a, s, len);
    if (!copy) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    t->names[t->n] = copy;
    *id = (uint32_t)t->n++;
    return FN_OK;
}

static fn_status page(request *r, fn_store_record **items, size_t page_size, fn_error *err)
{
    const fn_pipeline *p = r->p;
    fn_status st = FN_OK;
    const int need_cats = p->diversity != FN_DIVERSITY_NONE || p->max_per_category > 0;
    uint32_t *offs = alloc(r, (r->n + 1) * sizeof *offs, &st, err);
    uint32_t *cats = NULL;
    size_t n_cats = 0, cap_cats = 0;
    cat_table t = {0};
    for (size_t i = 0; st == FN_OK && i < r->n; i++) {
        offs[i] = (uint32_t)n_cats;
        if (!need_cats || !items || !items[i]) continue;
        const Tensorflow__Feature *f =
            fn_features_get(fn_store_record_features(items[i]), p->key_category);
        if (!f || f->kind_case != TENSORFLOW__FEATURE__KIND_BYTES_LIST) continue;
        for (size_t j = 0; st == FN_OK && j < f->bytes_list->n_value; j++) {
            if (n_cats == cap_cats) {
                size_t nc = cap_cats ? 2 * cap_cats : 256;
                uint32_t *m = alloc(r, nc * sizeof *m, &st, err);
                if (m && n_cats) memcpy(m, cats, n_cats * sizeof *m);
                cats = m, cap_cats = nc;
            }
            if (st == FN_OK)
                st = intern_cat(r, &t, (const char *)f->bytes_list->value[j].data,
                                f->bytes_list->value[j].len, &cats[n_cats++], err);
        }
    }
    if (st != FN_OK) return st;
    offs[r->n] = (uint32_t)n_cats;
    const fn_page_items it = {.n = r->n,
                              .scores = r->rel,
                              .cat_offsets = need_cats ? offs : NULL,
                              .cats = need_cats ? (cats ? cats : offs) : NULL};
    fn_page_options po = {.page_size = page_size,
                          .diversity = p->diversity,
                          .lambda = p->lambda,
                          .dpp_alpha = p->dpp_alpha,
                          .max_per_category = p->max_per_category};
    r->page = alloc(r, (page_size + 1) * sizeof *r->page, &st, err);
    if (st == FN_OK) st = fn_rerank_page(&it, &po, r->page, &r->n_page, err);
    return st;
}

/* ---- the response ---- */

static Funnel__V1__RankedItem *ranked_item(request *r, size_t i, float score, fn_status *st,
                                           fn_error *err)
{
    Funnel__V1__RankedItem *it = alloc(r, sizeof *it, st, err);
    if (!it) return NULL;
    funnel__v1__ranked_item__init(it);
    it->id = (char *)r->cand[i].id;
    it->score = score;
    it->ctr = r->ctr ? r->ctr[i] : 0.0f; /* 0: not scored (rank skipped) */
    it->channels = alloc(r, PL_N_CHANNELS * sizeof *it->channels, st, err);
    for (int c = 0; it->channels && c < PL_N_CHANNELS; c++)
        if (r->cand[i].channels & (1u << c))
            it->channels[it->n_channels++] = (char *)channel_names[c];
    return it;
}

/* Checks the request and makes its scratch: the user's history and seen items, the sorted
 * exclusions; *page_size gets the page's size. */
static fn_status begin(fn_pipeline *p, const Funnel__V1__RankRequest *q, fn_arena *arena,
                       request *r, size_t *page_size, fn_error *err)
{
    *r = (request){.p = p, .a = arena, .q = q};
    fn_status st = check_request(p, q, page_size, err);
    if (st != FN_OK) return st;
    r->timings = alloc(r, 8 * sizeof *r->timings, &st, err);
    r->degraded = alloc(r, 8 * sizeof *r->degraded, &st, err);
    const char *uid = q->user_id ? q->user_id : "";
    r->user = *uid ? pl_find_user(p, uid) : NULL;
    if (r->user) {
        r->seen = p->seen + r->user->first;
        r->n_seen = r->user->n;
        /* the most recent liked items, enough for both channels that start from them */
        const size_t want = p->recent > p->user_recent ? p->recent : p->user_recent;
        r->recent = alloc(r, (want + 1) * sizeof *r->recent, &st, err);
        for (size_t i = r->user->n; st == FN_OK && i-- > 0 && r->n_recent < want;) {
            const pl_event *e = &p->events[r->user->first + i];
            if (e->liked) r->recent[r->n_recent++] = e->item;
        }
    }
    r->excluded = alloc(r, (q->n_exclude_ids + 1) * sizeof *r->excluded, &st, err);
    for (size_t i = 0; st == FN_OK && i < q->n_exclude_ids; i++)
        if (q->exclude_ids[i]) r->excluded[r->n_excluded++] = q->exclude_ids[i];
    if (st == FN_OK) qsort(r->excluded, r->n_excluded, sizeof *r->excluded, cmp_str);
    r->extra = r->n_seen + r->n_excluded;
    return st;
}

/* Recall, then rank unless the deadline is near; items gets the candidates' records. */
static fn_status recall_and_rank(request *r, int64_t deadline_ns, fn_store_record ***items,
                                 fn_error *err)
{
    uint64_t t0 = fn_now_ns();
    fn_status st = recall(r, err);
    if (st != FN_OK) return st;
    timing(r, "recall", t0, r->n);
    if (r->n && !(*items = calloc(r->n, sizeof **items)))
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    t0 = fn_now_ns();
    if (r->n && !out_of_time(r, deadline_ns, PL_STAGE_RANK, "rank")) {
        if ((st = rank(r, *items, err)) != FN_OK) return st;
        timing(r, "rank", t0, r->n);
        learn(r->p, PL_STAGE_RANK, t0);
    }
    return order_by_relevance(r, err);
}

/* One stage's candidates in debug output: order[0 .. n) (NULL: the candidates in merge order)
 * with the given scores by candidate (NULL: relevance). */
static Funnel__V1__StageDebug *stage_debug(request *r, const char *stage, const size_t *order,
                                           size_t n, const float *scores, fn_status *st,
                                           fn_error *err)
{
    Funnel__V1__StageDebug *d = alloc(r, sizeof *d, st, err);
    if (!d) return NULL;
    funnel__v1__stage_debug__init(d);
    d->stage = (char *)stage;
    d->items = alloc(r, (n + 1) * sizeof *d->items, st, err);
    for (size_t k = 0; d->items && k < n; k++) {
        const size_t i = order ? order[k] : k;
        Funnel__V1__RankedItem *it = ranked_item(r, i, scores ? scores[i] : r->rel[i], st, err);
        if (!it) return NULL;
        d->items[d->n_items++] = it;
    }
    return *st == FN_OK ? d : NULL;
}

/*
 * debug=true: recall's candidates in merge order, each scored by the channel whose quota took
 * it; the rank stage's order with the relevance it gave (CTR, in a search times the query
 * similarity), when it ran; the reranked top with the reranker's own scores, when it ran.
 * Every item carries its CTR when scored; the page is the response itself.
 */
static fn_status debug_stages(request *r, const size_t *rank_order, const float *rank_rel,
                              Funnel__V1__RankResponse *resp, fn_error *err)
{
    fn_status st = FN_OK;
    float *by_source = alloc(r, (r->n + 1) * sizeof *by_source, &st, err);
    resp->debug = alloc(r, 3 * sizeof *resp->debug, &st, err);
    if (st != FN_OK) return st;
    for (size_t i = 0; i < r->n; i++)
        by_source[i] = (float)r->chan_scores[i * PL_N_CHANNELS + r->cand[i].source];
    Funnel__V1__StageDebug *d = stage_debug(r, "recall", NULL, r->n, by_source, &st, err);
    if (d) resp->debug[resp->n_debug++] = d;
    if (d && r->ctr) d = stage_debug(r, "rank", rank_order, r->n, rank_rel, &st, err);
    if (d && r->ctr) resp->debug[resp->n_debug++] = d;
    if (d && r->n_rr) d = stage_debug(r, "rerank", r->order, r->n_rr, r->rr, &st, err);
    if (d && r->n_rr) resp->debug[resp->n_debug++] = d;
    return st;
}

fn_status fn_pipeline_rank(fn_pipeline *p, const Funnel__V1__RankRequest *q, int64_t deadline_ns,
                           fn_arena *arena, Funnel__V1__RankResponse *resp, fn_error *err)
{
    size_t page_size = 0;
    request r;
    fn_status st = begin(p, q, arena, &r, &page_size, err);
    if (st != FN_OK) return st;
    fn_store_record **items = NULL;
    st = recall_and_rank(&r, deadline_ns, &items, err);
    /* debug: the rank stage's order and relevance, before rerank changes them */
    size_t *rank_order = NULL;
    float *rank_rel = NULL;
    if (st == FN_OK && q->debug) {
        rank_order = alloc(&r, (r.n + 1) * sizeof *rank_order, &st, err);
        rank_rel = alloc(&r, (r.n + 1) * sizeof *rank_rel, &st, err);
        if (st == FN_OK && r.n) {
            memcpy(rank_order, r.order, r.n * sizeof *rank_order);
            memcpy(rank_rel, r.rel, r.n * sizeof *rank_rel);
        }
    }
    uint64_t t0 = fn_now_ns();
    const int with_query = q->query && *q->query;
    if (st == FN_OK && p->reranker && r.n && (!with_query || p->rerank_searches)) {
        /* without CTR scores the reranker has nothing to go on: skipped with rank */
        if (!r.ctr)
            r.degraded[r.n_degraded++] = "rerank";
        else if (!out_of_time(&r, deadline_ns, PL_STAGE_RERANK, "rerank") &&
                 (st = rerank(&r, items, err)) == FN_OK) {
            timing(&r, "rerank", t0, r.n_rr);
            learn(p, PL_STAGE_RERANK, t0);
        }
    }
    t0 = fn_now_ns();
    if (st == FN_OK && !out_of_time(&r, deadline_ns, PL_STAGE_PAGE, "page")) {
        if ((st = page(&r, r.ctr ? items : NULL, page_size, err)) == FN_OK) {
            timing(&r, "page", t0, r.n_page);
            learn(p, PL_STAGE_PAGE, t0);
        }
    } else if (st == FN_OK) {
        /* no time for the page maker: the first page_size of the last stage's order */
        r.page = r.order;
        r.n_page = r.n < page_size ? r.n : page_size;
    }
    if (items) fn_store_records_release(items, r.n);
    free(items);
    if (st != FN_OK) return st;

    funnel__v1__rank_response__init(resp);
    resp->request_id = q->request_id ? q->request_id : "";
    resp->items = alloc(&r, (r.n_page + 1) * sizeof *resp->items, &st, err);
    for (size_t k = 0; st == FN_OK && k < r.n_page; k++) {
        const size_t i = r.page[k];
        if (!(resp->items[resp->n_items++] = ranked_item(&r, i, r.rel[i], &st, err))) break;
    }
    resp->timings = r.timings, resp->n_timings = r.n_timings;
    resp->degraded = r.degraded, resp->n_degraded = r.n_degraded;
    const char *const *names, *const *versions;
    size_t nv = fn_pipeline_versions(p, &names, &versions);
    resp->model_versions = alloc(&r, (nv + 1) * sizeof *resp->model_versions, &st, err);
    for (size_t i = 0; st == FN_OK && i < nv; i++) {
        Funnel__V1__RankResponse__ModelVersionsEntry *e = alloc(&r, sizeof *e, &st, err);
        if (!e) break;
        funnel__v1__rank_response__model_versions_entry__init(e);
        e->key = (char *)names[i];
        e->value = (char *)versions[i];
        resp->model_versions[resp->n_model_versions++] = e;
    }
    if (st == FN_OK && q->debug && r.n) st = debug_stages(&r, rank_order, rank_rel, resp, err);
    return st;
}

fn_status fn_pipeline_rerank_input(fn_pipeline *p, const Funnel__V1__RankRequest *q, size_t top,
                                   fn_arena *arena, fn_pipeline_list *out, fn_error *err)
{
    size_t page_size = 0;
    request r;
    *out = (fn_pipeline_list){0};
    fn_status st = begin(p, q, arena, &r, &page_size, err);
    if (st != FN_OK) return st;
    fn_store_record **items = NULL;
    st = recall_and_rank(&r, 0, &items, err);
    if (!top) top = p->rerank_top;
    const size_t m = r.n < top ? r.n : top;
    float *rows = NULL;
    if (st == FN_OK && m) st = rerank_rows(&r, items, m, &rows, err);
    const char **ids = alloc(&r, (m + 1) * sizeof *ids, &st, err);
    for (size_t k = 0; st == FN_OK && k < m; k++) ids[k] = r.cand[r.order[k]].id;
    if (items) fn_store_records_release(items, r.n);
    free(items);
    if (st == FN_OK) *out = (fn_pipeline_list){m, ids, rows};
    return st;
}

/* ---- Encode ---- */

fn_status fn_pipeline_encode(fn_pipeline *p, const Funnel__V1__EncodeRequest *req, fn_arena *arena,
                             Funnel__V1__EncodeResponse *resp, fn_error *err)
{
    if (!p->encoder)
        return fn_error_set(err, FN_ERR_UNSUPPORTED,
                            "this pipeline has no encoder (configuration "
                            "key \"encoder\")");
    const size_t n = req->n_texts;
    if (n < 1 || n > FN_PIPELINE_MAX_TEXTS)
        return fn_error_set(err, FN_ERR_INVALID, "texts: %zu of them, give 1 to %d", n,
                            FN_PIPELINE_MAX_TEXTS);
    size_t *lens = fn_arena_alloc(arena, n * sizeof *lens);
    if (!lens) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *t = req->texts[i] ? req->texts[i] : "";
        lens[i] = strlen(t);
        if (lens[i] > FN_PIPELINE_MAX_TEXT_BYTES)
            return fn_error_set(err, FN_ERR_INVALID, "texts[%zu]: %zu bytes, at most %d", i,
                                lens[i], FN_PIPELINE_MAX_TEXT_BYTES);
        if (!utf8_valid((const unsigned char *)t, lens[i]))
            return fn_error_set(err, FN_ERR_INVALID, "texts[%zu]: not valid UTF-8", i);
    }
    const size_t dim = fn_encoder_dim(p->encoder);
    float *v = fn_arena_alloc(arena, n * dim * sizeof *v);
    Funnel__V1__Embedding **rows = fn_arena_alloc(arena, n * sizeof *rows);
    if (!v || !rows) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    fn_status st = fn_encoder_encode(p->encoder, (const char *const *)req->texts, lens, n, v, err);
    if (st != FN_OK) return st;
    funnel__v1__encode_response__init(resp);
    for (size_t i = 0; i < n; i++) {
        Funnel__V1__Embedding *e = fn_arena_alloc(arena, sizeof *e);
        if (!e) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        funnel__v1__embedding__init(e);
        e->n_values = dim;
        e->values = v + i * dim;
        rows[i] = e;
    }
    resp->embeddings = rows;
    resp->n_embeddings = n;
    return FN_OK;
}
