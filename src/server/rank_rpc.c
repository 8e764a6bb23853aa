/*
 * rank_rpc.c - the Rank call as both transports serve it: the request
 * decoded from protobuf or proto3 JSON, run through the current pipeline
 * (a reference held for the whole call, so a reload cannot pull it away),
 * the response encoded the same way the request came.
 */
#include <stdio.h>
#include <string.h>

#include "common/arena.h"
#include "common/clock.h"
#include "common/log.h"
#include "funnel/v1/funnel.pb-c.h"
#include "pipeline.h"
#include "proto/pbjson.h"
#include "server_impl.h"

fn_status fn_server_rank(fn_server *s, const uint8_t *body, size_t n, int json, int64_t deadline_ns,
                         fn_buf *out, fn_error *err)
{
    fn_pipeline *p = fn_server_pipeline_acquire(s);
    if (!p)
        return fn_error_set(err, FN_ERR_UNSUPPORTED,
                            "no ranking pipeline: funneld was started without --config");
    Funnel__V1__RankRequest *req = NULL;
    fn_status st = FN_OK;
    if (json) {
        ProtobufCMessage *m = NULL;
        st = fn_pbjson_parse(&funnel__v1__rank_request__descriptor, (const char *)body, n, 0, &m,
                             err);
        req = (Funnel__V1__RankRequest *)m;
    } else {
        req = funnel__v1__rank_request__unpack(NULL, n, body);
        if (!req)
            st = fn_error_set(err, FN_ERR_INVALID,
                              "the body is not a funnel.v1.RankRequest in protobuf encoding");
    }
    fn_arena *arena = st == FN_OK ? fn_arena_new(1 << 16) : NULL;
    if (st == FN_OK && !arena) st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    Funnel__V1__RankResponse resp;
    if (st == FN_OK) st = fn_pipeline_rank(p, req, deadline_ns, arena, &resp, err);
    /* Stage timings and candidate counts feed /metrics while resp still exists. */
    if (st == FN_OK) fn_metrics_rank_response(s->metrics, &resp);
    if (st == FN_OK) {
        if (json) {
            fn_pbjson_encode(&resp.base, out);
            fn_buf_putc(out, '\n');
        } else {
            size_t len = funnel__v1__rank_response__get_packed_size(&resp);
            if (fn_buf_reserve(out, len) == FN_OK) {
                funnel__v1__rank_response__pack(&resp, (uint8_t *)out->data + out->len);
                out->len += len;
            } else {
                out->oom = 1;
            }
        }
        if (out->oom) st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    if (req) protobuf_c_message_free_unpacked(&req->base, NULL);
    fn_arena_free(arena);
    fn_pipeline_unref(p);
    return st;
}

fn_pipeline *fn_server_pipeline_acquire(fn_server *s)
{
    pthread_mutex_lock(&s->pipeline_lock);
    fn_pipeline *p = s->pipeline ? fn_pipeline_ref(s->pipeline) : NULL;
    pthread_mutex_unlock(&s->pipeline_lock);
    return p;
}

fn_status fn_server_load_pipeline(fn_server *s, fn_error *err)
{
    if (!s->cfg.config_path) return FN_OK;
    fn_pipeline *p;
    const uint64_t t0 = fn_now_ns();
    fn_status st = fn_pipeline_load(s->cfg.config_path, &p, err);
    if (st != FN_OK) return st;
    fn_log_info("funneld: pipeline %s loaded in %.2f s: %s", s->cfg.config_path,
                (double)(fn_now_ns() - t0) * 1e-9, fn_pipeline_summary(p));
    /* Swap under the lock; requests on the old pipeline hold references and finish on it. */
    pthread_mutex_lock(&s->pipeline_lock);
    fn_pipeline *old = s->pipeline;
    s->pipeline = p;
    pthread_mutex_unlock(&s->pipeline_lock);
    fn_pipeline_unref(old);
    return FN_OK;
}
