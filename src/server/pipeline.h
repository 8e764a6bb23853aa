/*
 * pipeline.h - the ranking pipeline funneld serves: everything one
 * configuration loads (feature store, feature spec, CTR model, recall
 * tables and indexes, page settings) and the path of one Rank request
 * through it: recall, features, CTR scoring, the page.
 *
 * A pipeline is immutable once loaded and shared by reference: a request
 * takes a reference for its whole life (fn_pipeline_ref / _unref), so a
 * reload can swap in a new pipeline while requests on the old one finish.
 *
 * The configuration is JSON (configs/demo.json is the demo's); relative
 * paths in it are relative to the file's folder:
 *
 *   {"store": DIR, "interactions": FILE.tfrecord, "spec": SPEC.json,
 *    "ctr_model": MODEL.safetensors,
 *    "keys": {"user": "user_id", "item": "item_id", "time": "timestamp",
 *             "label": "label", "category": "genres"},
 *    "recall": {"cap": 300,
 *               "popularity": {"quota": 100, "half_life_days": 14},
 *               "cooc": {"table": FILE, "quota": 200, "recent": 10}},
 *    "rerank": {"model": RERANKER.safetensors, "top": 50, "device": "cpu",
 *               "threads": 1, "searches": false},
 *    "page": {"default_size": 10, "max_size": 100, "diversity": "mmr",
 *             "lambda": 0.8, "max_per_category": 0}}
 */
#ifndef FN_SERVER_PIPELINE_H
#define FN_SERVER_PIPELINE_H

#include <stdint.h>

#include "common/arena.h"
#include "common/status.h"
#include "funnel/v1/funnel.pb-c.h"

typedef struct fn_pipeline fn_pipeline;

/* Loads every part the configuration names; a missing or bad part is an error naming it. */
fn_status fn_pipeline_load(const char *config_path, fn_pipeline **out, fn_error *err);

/*
 * Parts to load instead of the configuration's, for offline runs of the pipeline (making the
 * reranker's training lists from an earlier stretch of the log): NULL / 0 keeps the file's.
 */
typedef struct fn_pipeline_overrides {
    const char *interactions; /* instead of "interactions" */
    const char *cooc_table;   /* instead of "recall.cooc.table" */
    int no_rerank;            /* leave the "rerank" section's model out */
} fn_pipeline_overrides;
fn_status fn_pipeline_load_with(const char *config_path, const fn_pipeline_overrides *o,
                                fn_pipeline **out, fn_error *err);
fn_pipeline *fn_pipeline_ref(fn_pipeline *p);
/* Drops a reference; the last one frees the pipeline. */
void fn_pipeline_unref(fn_pipeline *p);

/* One line about what was loaded (items, users, channels), for the log. */
const char *fn_pipeline_summary(const fn_pipeline *p);

/* Names and versions of the loaded models (the response's model_versions). */
size_t fn_pipeline_versions(const fn_pipeline *p, const char *const **names,
                            const char *const **versions);

/*
 * Ranks one request into resp (its strings and arrays live in arena, which
 * must outlive resp's use). deadline_ns (CLOCK_MONOTONIC, 0: none): when it
 * is near, later stages are skipped and named in resp->degraded. Bad input
 * (page_size above the maximum, a query that is not UTF-8 or too long) is
 * FN_ERR_INVALID with a message naming the field. A user the store does not
 * know is served as a new user.
 */
fn_status fn_pipeline_rank(fn_pipeline *p, const Funnel__V1__RankRequest *req, int64_t deadline_ns,
                           fn_arena *arena, Funnel__V1__RankResponse *resp, fn_error *err);

/*
 * Encodes the request's texts (1 to FN_PIPELINE_MAX_TEXTS, each valid UTF-8 of at most
 * FN_PIPELINE_MAX_TEXT_BYTES) with the pipeline's encoder into resp (in arena).
 * FN_ERR_UNSUPPORTED when the configuration has no encoder.
 */
#define FN_PIPELINE_MAX_TEXTS      256
#define FN_PIPELINE_MAX_TEXT_BYTES 65536
fn_status fn_pipeline_encode(fn_pipeline *p, const Funnel__V1__EncodeRequest *req, fn_arena *arena,
                             Funnel__V1__EncodeResponse *resp, fn_error *err);

/*
 * The rerank stage's input: one row of FN_PIPELINE_RERANK_FEATURES floats per
 * candidate at the top of the ranked list (best first by the rank stage's
 * relevance), the same rows at serving and in the training lists, so a
 * reranker sees at serving what it was trained on. Columns:
 *
 *    0 the CTR as a logit            8 in the user-vector channel (0/1)
 *    1 position / (top - 1)          9 cosine of item and user vector
 *    2 CTR / the list's best CTR    10 in the query channel (0/1)
 *    3 relevance / the best         11 cosine of item and query vector
 *    4 in the popularity channel    12 the request has a query (0/1)
 *    5 log(1 + popularity score)    13 log(1 + the user's history length)
 *    6 in the co-occurrence channel 14 the highest cosine to an item above
 *    7 log(1 + co-occurrence score) 15 the mean cosine to the list's others
 *
 * Cosines are 0 where a vector is missing (an item without one, a request
 * without a query, a user without liked items).
 */
#define FN_PIPELINE_RERANK_FEATURES 16

/* One request's rerank input (in the arena): ids[n], features[n x FN_PIPELINE_RERANK_FEATURES]. */
typedef struct fn_pipeline_list {
    size_t n;
    const char **ids;
    float *features;
} fn_pipeline_list;

/*
 * Runs q through recall and rank (no deadline) and gives the top `top` candidates' rerank rows
 * (0: the configuration's rerank.top), for writing training lists. Bad input as for Rank.
 */
fn_status fn_pipeline_rerank_input(fn_pipeline *p, const Funnel__V1__RankRequest *q, size_t top,
                                   fn_arena *arena, fn_pipeline_list *out, fn_error *err);

#endif
