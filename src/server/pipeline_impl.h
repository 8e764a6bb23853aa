/*
 * pipeline_impl.h - the loaded pipeline's fields, shared by pipeline.c
 * (configuration and loading) and pipeline_rank.c (one request).
 */
#ifndef FN_SERVER_PIPELINE_IMPL_H
#define FN_SERVER_PIPELINE_IMPL_H

#include <stdatomic.h>

#include "features/columns.h"
#include "llm/encoder.h"
#include "query_cache.h"
#include "features/store.h"
#include "pipeline.h"
#include "rank/rank.h"
#include "recall/recall.h"
#include "rerank/rerank.h"

/* One interaction of a user's history, in time order. */
typedef struct pl_event {
    const char *item; /* in the pipeline's string arena */
    int64_t t;
    int liked;
} pl_event;

/* A user's history: events[first .. first + n) of the pipeline's event array. */
typedef struct pl_user {
    const char *id;
    size_t first, n;
} pl_user;

enum { PL_CH_POPULARITY = 0, PL_CH_COOC, PL_CH_QUERY, PL_CH_USER, PL_N_CHANNELS };

/* Stages a deadline can skip, with a running estimate of each one's time. */
enum { PL_STAGE_RANK = 0, PL_STAGE_RERANK, PL_STAGE_PAGE, PL_N_STAGES };

struct fn_pipeline {
    atomic_int refs;
    char summary[512];
    fn_arena *strings; /* ids of the histories */
    /* parts */
    fn_store *store;
    fn_columns *spec;
    fn_model *ctr;
    fn_popularity *pop;
    fn_cooc *cooc;
    /* the ANN channels: the items' index and the store's number -> id table, the query encoder */
    fn_ann *ann;
    fn_store_item_names *item_names; /* the store's numbers: the index's ids */
    fn_ann_params ann_params;
    struct fn_encoder *encoder;
    struct fn_query_cache *qcache;
    size_t user_recent;
    /* the listwise reranker over the top rerank_top of the ranked list (NULL: none) */
    fn_reranker *reranker;
    size_t rerank_top;
    int rerank_searches; /* also rerank requests with a query */
    /* histories, users sorted by id for lookup */
    pl_event *events;
    /* the same items, each user's range sorted by id (what the user has seen, for lookup) */
    const char **seen;
    pl_user *users;
    size_t n_events, n_users;
    /* which columns read only the user and the context (computed once per request) */
    unsigned char *shared_col;
    /* settings */
    char *key_category;
    size_t cap, quota[PL_N_CHANNELS], recent;
    size_t page_default, page_max;
    fn_diversity diversity;
    float lambda, dpp_alpha;
    int max_per_category;
    /* recent duration of each skippable stage (ns; 0 before the first run): a stage starts
     * only when its estimate fits before the deadline. Updated by every request. */
    _Atomic uint64_t stage_ns[PL_N_STAGES];
    /* model versions for responses */
    const char *version_names[3];
    const char *version_values[3];
    char ctr_version[160], spec_version[80], rerank_version[160];
    size_t n_versions;
};

/* The user's history, or NULL for a user without one. */
const pl_user *pl_find_user(const fn_pipeline *p, const char *id);

/* What the rerank stage's feature rows are made of, for the top m candidates of one request. */
typedef struct pl_rerank_in {
    size_t m;                        /* rows: the top m */
    const size_t *order;             /* candidate indexes, best first (at least m) */
    const fn_recall_candidate *cand; /* per candidate: id and channel bits */
    const double *chan_scores;       /* per candidate, PL_N_CHANNELS scores (NaN: absent) */
    const float *ctr, *relevance;    /* per candidate */
    const float *const *vecs;        /* per candidate: its vector or NULL */
    size_t dim;                      /* of vecs, qvec and uvec */
    const float *qvec, *uvec;        /* the query's and the user's vector, or NULL */
    size_t history;                  /* the user's interactions */
} pl_rerank_in;

/* Fills rows[m x FN_PIPELINE_RERANK_FEATURES] (the columns listed in pipeline.h). */
fn_status pl_rerank_features(const fn_pipeline *p, const pl_rerank_in *in, float *rows,
                             fn_error *err);

#endif
