/*
 * rank_rpc.c - the Rank and Encode calls as both transports serve them:
 * the request decoded from protobuf or proto3 JSON, run through the current
 * pipeline (a reference held for the whole call, so a reload cannot pull it
 * away), the response encoded the same way the request came.
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

/* One pipeline call: decoded request in, response (in arena) out; fills the metrics hook. */
typedef fn_status (*pipeline_call)(fn_server *s, fn_pipeline *p, const ProtobufCMessage *req,
                                   int64_t deadline_ns, fn_arena *arena, ProtobufCMessage *resp,
                                   fn_error *err);

/*
 * The shape of every RPC over the pipeline: decode (protobuf or proto3 JSON), run on a
 * reference to the current pipeline, encode the response the way the request came.
 */
static fn_status serve(fn_server *s, const ProtobufCMessageDescriptor *req_desc, pipeline_call call,
                       ProtobufCMessage *resp, const uint8_t *body, size_t n, int json,
                       int64_t deadline_ns, fn_buf *out, fn_error *err)
{
    fn_pipeline *p = fn_server_pipeline_acquire(s);
    if (!p)
        return fn_error_set(err, FN_ERR_UNSUPPORTED,
                            "no ranking pipeline: funneld was started without --config");
    ProtobufCMessage *req = NULL;
    fn_status st = FN_OK;
    if (json) {
        st = fn_pbjson_parse(req_desc, (const char *)body, n, 0, &req, err);
    } else if (!(req = protobuf_c_message_unpack(req_desc, NULL, n, body))) {
        st = fn_error_set(err, FN_ERR_INVALID, "the body is not a %s in protobuf encoding",
                          req_desc->name);
    }
    fn_arena *arena = st == FN_OK ? fn_arena_new(1 << 16) : NULL;
    if (st == FN_OK && !arena) st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    if (st == FN_OK) st = call(s, p, req, deadline_ns, arena, resp, err);
    if (st == FN_OK) {
        if (json) {
            fn_pbjson_encode(resp, out);
            fn_buf_putc(out, '\n');
        } else {
            size_t len = protobuf_c_message_get_packed_size(resp);
            if (fn_buf_reserve(out, len) == FN_OK) {
                protobuf_c_message_pack(resp, (uint8_t *)out->data + out->len);
                out->len += len;
            } else {
                out->oom = 1;
            }
        }
        if (out->oom) st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    if (req) protobuf_c_message_free_unpacked(req, NULL);
    fn_arena_free(arena);
    fn_pipeline_unref(p);
    return st;
}

static fn_status call_rank(fn_server *s, fn_pipeline *p, const ProtobufCMessage *req,
                           int64_t deadline_ns, fn_arena *arena, ProtobufCMessage *resp,
                           fn_error *err)
{
    Funnel__V1__RankResponse *r = (Funnel__V1__RankResponse *)resp;
    fn_status st =
        fn_pipeline_rank(p, (const Funnel__V1__RankRequest *)req, deadline_ns, arena, r, err);
    /* Stage timings and candidate counts feed /metrics while the response still exists. */
    if (st == FN_OK) fn_metrics_rank_response(s->metrics, r);
    return st;
}

static fn_status call_encode(fn_server *s, fn_pipeline *p, const ProtobufCMessage *req,
                             int64_t deadline_ns, fn_arena *arena, ProtobufCMessage *resp,
                             fn_error *err)
{
    (void)s, (void)deadline_ns;
    return fn_pipeline_encode(p, (const Funnel__V1__EncodeRequest *)req, arena,
                              (Funnel__V1__EncodeResponse *)resp, err);
}

fn_status fn_server_rank(fn_server *s, const uint8_t *body, size_t n, int json, int64_t deadline_ns,
                         fn_buf *out, fn_error *err)
{
    Funnel__V1__RankResponse resp = FUNNEL__V1__RANK_RESPONSE__INIT;
    return serve(s, &funnel__v1__rank_request__descriptor, call_rank, &resp.base, body, n, json,
                 deadline_ns, out, err);
}

fn_status fn_server_encode(fn_server *s, const uint8_t *body, size_t n, int json,
                           int64_t deadline_ns, fn_buf *out, fn_error *err)
{
    Funnel__V1__EncodeResponse resp = FUNNEL__V1__ENCODE_RESPONSE__INIT;
    return serve(s, &funnel__v1__encode_request__descriptor, call_encode, &resp.base, body, n, json,
                 deadline_ns, out, err);
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
