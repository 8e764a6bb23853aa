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

#endif
