/*
 * rpc.c - funneld's RPC dispatcher: one table from a method path
 * ("/package.Service/Method") to its handler, shared by every transport.
 * A handler gets the serialized request and fills an fn_rpc_reply (the
 * serialized response, or a gRPC status and message); the transports only
 * frame bytes, so gRPC and the HTTP/1.1 RPC endpoints answer alike.
 *
 * Served now: grpc.health.v1.Health/Check and funnel.v1.Ranking/Rank (the
 * pipeline; UNAVAILABLE without --config) and Encode (the pipeline's encoder).
 * Suggest has its row but answers UNIMPLEMENTED until its module is wired in.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

#include "common/clock.h"
#include "common/log.h"
#include "grpc/health/v1/health.pb-c.h"
#include "server_impl.h"

/* The service name health checks ask about; "" means the whole server. */
#define RANKING_SERVICE "funnel.v1.Ranking"

typedef void (*rpc_handler)(fn_server *s, const uint8_t *req, size_t n, int64_t deadline_ns,
                            fn_rpc_reply *reply);

typedef struct rpc_method {
    const char *path;
    rpc_handler handle;
} rpc_method;

static void reply_status(fn_rpc_reply *reply, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reply_status(fn_rpc_reply *reply, int status, const char *fmt, ...)
{
    reply->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reply->message, sizeof reply->message, fmt, ap);
    va_end(ap);
}

/*
 * Packs msg into reply->body. protobuf-c packs into a caller-sized buffer, so
 * the size is reserved first; a failed reservation is RESOURCE_EXHAUSTED
 * rather than a half-written reply.
 */
static void reply_message(fn_rpc_reply *reply, const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    fn_buf_reset(&reply->body);
    if (fn_buf_reserve(&reply->body, n + 1) != FN_OK) {
        reply_status(reply, FN_GRPC_RESOURCE_EXHAUSTED, "out of memory packing %s",
                     msg->descriptor->name);
        return;
    }
    reply->body.len = protobuf_c_message_pack(msg, (uint8_t *)reply->body.data);
    reply->body.data[reply->body.len] = '\0';
    reply->status = FN_GRPC_OK;
    reply->message[0] = '\0';
}

/*
 * grpc.health.v1.Health/Check: SERVING once startup is done and until
 * shutdown begins, NOT_SERVING otherwise; the server as a whole ("") and
 * funnel.v1.Ranking are known, any other name is NOT_FOUND as the health
 * checking protocol asks.
 */
static void handle_health_check(fn_server *s, const uint8_t *req, size_t n, int64_t deadline_ns,
                                fn_rpc_reply *reply)
{
    (void)deadline_ns;
    Grpc__Health__V1__HealthCheckRequest *in =
        grpc__health__v1__health_check_request__unpack(NULL, n, req);
    if (!in) {
        reply_status(reply, FN_GRPC_INVALID_ARGUMENT,
                     "grpc.health.v1.HealthCheckRequest does not parse (%zu bytes)", n);
        return;
    }
    const char *service = in->service ? in->service : "";
    if (*service && strcmp(service, RANKING_SERVICE) != 0) {
        /* The name came from the client: keep the message bounded and printable. */
        reply_status(reply, FN_GRPC_NOT_FOUND, "unknown service '%.200s'", service);
        grpc__health__v1__health_check_request__free_unpacked(in, NULL);
        return;
    }
    grpc__health__v1__health_check_request__free_unpacked(in, NULL);
    Grpc__Health__V1__HealthCheckResponse out = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    out.status = s->ready ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                          : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    reply_message(reply, &out.base);
}

/* A pipeline call's outcome as a gRPC reply; internal errors are logged. */
static void reply_call(fn_rpc_reply *reply, fn_status st, const fn_error *err, const char *method)
{
    if (st == FN_OK) {
        reply->status = FN_GRPC_OK;
        return;
    }
    int code = st == FN_ERR_INVALID       ? FN_GRPC_INVALID_ARGUMENT
               : st == FN_ERR_UNSUPPORTED ? FN_GRPC_UNAVAILABLE
               : st == FN_ERR_NOMEM       ? FN_GRPC_RESOURCE_EXHAUSTED
                                          : FN_GRPC_INTERNAL;
    if (code == FN_GRPC_INTERNAL) fn_log_error("funneld: %s: %s", method, err->msg);
    reply_status(reply, code, "%s", err->msg);
}

/* Rank through the pipeline (rank_rpc.c). */
static void handle_rank(fn_server *s, const uint8_t *req, size_t n, int64_t deadline_ns,
                        fn_rpc_reply *reply)
{
    fn_error err = {0};
    reply_call(reply, fn_server_rank(s, req, n, 0, deadline_ns, &reply->body, &err), &err, "Rank");
}

/* Encode with the pipeline's encoder. */
static void handle_encode(fn_server *s, const uint8_t *req, size_t n, int64_t deadline_ns,
                          fn_rpc_reply *reply)
{
    fn_error err = {0};
    reply_call(reply, fn_server_encode(s, req, n, 0, deadline_ns, &reply->body, &err), &err,
               "Encode");
}

/* The Ranking methods not served yet (their modules come later). */
static void handle_not_served(fn_server *s, const uint8_t *req, size_t n, int64_t deadline_ns,
                              fn_rpc_reply *reply)
{
    (void)s, (void)req, (void)n, (void)deadline_ns;
    reply_status(reply, FN_GRPC_UNIMPLEMENTED, "not served yet");
}

static const rpc_method methods[] = {
    {"/grpc.health.v1.Health/Check", handle_health_check},
    /*
     * funnel.v1.Ranking: route each method to its pipeline handler here
     * (request: funnel.v1.RankRequest / EncodeRequest / SuggestRequest).
     */
    {"/funnel.v1.Ranking/Rank", handle_rank},
    {"/funnel.v1.Ranking/Encode", handle_encode},
    {"/funnel.v1.Ranking/Suggest", handle_not_served},
};

void fn_server_dispatch(fn_server *s, const char *path, const uint8_t *req, size_t n,
                        int64_t deadline_ns, fn_rpc_reply *reply)
{
    reply->status = FN_GRPC_OK;
    reply->message[0] = '\0';
    fn_buf_reset(&reply->body);
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        if (strcmp(path, methods[i].path) != 0) continue;
        /* A call that arrives already late is not started: its caller has given up. */
        if (deadline_ns > 0 && (int64_t)fn_now_ns() >= deadline_ns) {
            reply_status(reply, FN_GRPC_DEADLINE_EXCEEDED, "deadline exceeded before %s started",
                         path);
            return;
        }
        methods[i].handle(s, req, n, deadline_ns, reply);
        if (reply->status == FN_GRPC_OK && reply->body.oom)
            reply_status(reply, FN_GRPC_RESOURCE_EXHAUSTED, "out of memory building the reply");
        fn_log_debug("funneld: rpc %s -> %d %s", path, reply->status, reply->message);
        return;
    }
    reply_status(reply, FN_GRPC_UNIMPLEMENTED, "unknown method %.400s", path);
}
