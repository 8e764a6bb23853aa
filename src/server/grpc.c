/*
 * grpc.c - funneld's gRPC transport: HTTP/2 cleartext with prior knowledge
 * (what gRPC clients speak on insecure channels), unary calls only, with
 * nghttp2 doing the HTTP/2 framing, HPACK and flow control over libevent
 * bufferevents. This file only moves bytes: a finished request goes to
 * fn_server_dispatch (rpc.c), on a worker thread for the funnel.v1.Ranking
 * methods (workers.c; the stream is answered when the job comes back to the
 * loop thread, or the answer dropped if the stream closed meanwhile) and
 * in the event-loop thread for health checks, and its fn_rpc_reply is
 * framed back. The wire format follows grpc's
 * doc/PROTOCOL-HTTP2.md:
 *
 *   request   HEADERS (:method POST, :path /Service/Method, content-type
 *             application/grpc[+proto], grpc-timeout?) DATA* with END_STREAM,
 *             the DATA holding one message: 1 byte compressed flag, 4 bytes
 *             big-endian length, the message
 *   response  HEADERS (:status 200, content-type) DATA (the same framing)
 *             HEADERS (grpc-status, grpc-message) with END_STREAM; an error
 *             answers "trailers only": one HEADERS frame with all of them
 *
 * Limits that keep a client from costing unbounded memory: max_connections
 * open at once (more are closed on accept), 100 concurrent streams per
 * connection, a request message of at most max_message_bytes (the rest is
 * refused as soon as the prefix or the data says it is bigger), at most
 * CONN_BUFFER_FACTOR such messages buffered per connection, 16 KiB of
 * request headers per stream, and no more reading while a connection's
 * replies are not being read by its client. nghttp2 rejects malformed
 * framing and HTTP semantics itself; after a connection error it sends
 * GOAWAY and the connection closes once that is written.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <nghttp2/nghttp2.h>

#include "common/clock.h"
#include "common/log.h"
#include "server_impl.h"

#define MAX_CONCURRENT_STREAMS 100
/* Windows big enough that a 4 MiB message needs few WINDOW_UPDATE round trips. */
#define STREAM_WINDOW_BYTES (1 << 20)
#define CONN_WINDOW_BYTES   (8 << 20)
#define MAX_HEADER_BYTES    (16 * 1024)
#define MAX_PATH_BYTES      256
/* Request bytes one connection may hold, in units of the largest message (+ prefix). */
#define CONN_BUFFER_FACTOR 4
/* Replies queued for a client beyond this stop reading from it until they drain. */
#define OUTPUT_HIGH_WATER (1 << 20)
#define PREFIX_BYTES      5
#define LISTEN_BACKLOG    511
/* After accept fails for lack of descriptors, wait this long before accepting again. */
#define ACCEPT_PAUSE_MS 100

typedef struct grpc_conn grpc_conn;
typedef struct grpc_stream grpc_stream;

struct fn_grpc {
    fn_server *s;
    struct evconnlistener *listener;
    struct event *accept_resume; /* re-enables accepting after EMFILE */
    nghttp2_session_callbacks *callbacks;
    grpc_conn *conns; /* every open connection, to close them at stop */
    int n_conns;
    uint64_t refused; /* connections closed at accept for max_connections */
    uint64_t last_refused_log_ns;
};

struct grpc_conn {
    struct fn_grpc *g;
    struct bufferevent *bev;
    nghttp2_session *session;
    grpc_conn *prev, *next;
    grpc_stream *streams; /* every stream with state of ours */
    size_t buffered;      /* request bytes held by all its streams */
    int read_paused;      /* replies are backed up: input waits */
    int closing;          /* nghttp2 is done: close once the output is written */
};

struct grpc_stream {
    grpc_conn *c;
    grpc_stream *prev, *next;
    int32_t id;
    size_t header_bytes;
    int is_post;
    int has_content_type, content_type_ok;
    int path_too_long;
    int bad_timeout;
    int replied;          /* a response is submitted; anything more from the client is dropped */
    uint64_t t0;          /* when its headers began, for the request duration */
    struct grpc_job *job; /* the call running on a worker, if any */
    char path[MAX_PATH_BYTES];
    int64_t deadline_ns; /* absolute CLOCK_MONOTONIC; 0: none */
    fn_buf body;         /* the request's DATA, prefix included */
    fn_buf out;          /* the response's DATA, prefix included */
    size_t out_off;      /* how much of out nghttp2 has taken */
};

/*
 * A call on its way through the worker pool (workers.c). st is NULL once the
 * stream closed (the client cancelled, or the connection went away): the
 * answer is dropped then. Everything run() reads is the job's own copy.
 */
struct grpc_job {
    fn_job job; /* first: the pool hands back this pointer */
    grpc_stream *st;
    char path[MAX_PATH_BYTES];
    uint8_t *msg;
    size_t n;
    int64_t deadline_ns;
    fn_rpc_reply reply;
};

#define NV(name, value, valuelen)                                                                  \
    {                                                                                              \
        (uint8_t *)(name), (uint8_t *)(value), sizeof(name) - 1, (valuelen), NGHTTP2_NV_FLAG_NONE  \
    }

/* ---- request headers ---------------------------------------------------- */

/*
 * grpc-timeout is 1 to 8 ASCII digits and a unit: H M S m u n. Returns the
 * absolute deadline, or -1 when malformed. A timeout too far away to
 * represent is no deadline (0).
 */
static int64_t parse_timeout(const uint8_t *v, size_t n, uint64_t now_ns)
{
    if (n < 2 || n > 9) return -1;
    uint64_t value = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (v[i] < '0' || v[i] > '9') return -1;
        value = value * 10 + (uint64_t)(v[i] - '0');
    }
    uint64_t unit_ns;
    switch (v[n - 1]) {
    case 'H':
        unit_ns = 3600ull * 1000000000ull;
        break;
    case 'M':
        unit_ns = 60ull * 1000000000ull;
        break;
    case 'S':
        unit_ns = 1000000000ull;
        break;
    case 'm':
        unit_ns = 1000000ull;
        break;
    case 'u':
        unit_ns = 1000ull;
        break;
    case 'n':
        unit_ns = 1ull;
        break;
    default:
        return -1;
    }
    if (value > (uint64_t)INT64_MAX / unit_ns) return 0;
    uint64_t d = value * unit_ns;
    if (d > (uint64_t)INT64_MAX - now_ns) return 0;
    /* "0n" still means "already late", not "no deadline". */
    return d + now_ns > 0 ? (int64_t)(d + now_ns) : 1;
}

/* "application/grpc", optionally followed by "+proto", "+json", ... or parameters. */
static int grpc_content_type(const uint8_t *v, size_t n)
{
    static const char want[] = "application/grpc";
    size_t k = sizeof want - 1;
    if (n < k || strncasecmp((const char *)v, want, k) != 0) return 0;
    return n == k || v[k] == '+' || v[k] == ';';
}

/*
 * grpc-message is percent-encoded: bytes outside 0x20..0x7E, and '%',
 * become %XX. out holds 3 * strlen(msg) + 1 bytes.
 */
static size_t percent_encode(const char *msg, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
    return o;
}

/* ---- streams -------------------------------------------------------------- */

static void drop_body(grpc_stream *st)
{
    st->c->buffered -= st->body.len;
    fn_buf_free(&st->body);
}

static void stream_free(grpc_stream *st)
{
    grpc_conn *c = st->c;
    if (st->job) st->job->st = NULL; /* its answer has nowhere to go now */
    drop_body(st);
    fn_buf_free(&st->out);
    if (st->prev)
        st->prev->next = st->next;
    else
        c->streams = st->next;
    if (st->next) st->next->prev = st->prev;
    free(st);
}

/*
 * Answers with one HEADERS frame that ends the stream ("trailers only"):
 * http_status is 200 for a gRPC error, 405/415 for a request that is not gRPC
 * at all (so that a plain HTTP/2 client does not read it as success). A
 * client still sending is asked to stop once this is out (on_frame_send).
 */
static void reply_error(grpc_conn *c, grpc_stream *st, int http_status, int code, const char *msg)
{
    char status[8], grpc_status[12], enc[3 * sizeof((fn_rpc_reply *)0)->message + 1];
    char clipped[sizeof((fn_rpc_reply *)0)->message];
    snprintf(status, sizeof status, "%d", http_status);
    snprintf(grpc_status, sizeof grpc_status, "%d", code);
    snprintf(clipped, sizeof clipped, "%s", msg);
    size_t enc_len = percent_encode(clipped, enc);
    nghttp2_nv nv[] = {
        NV(":status", status, strlen(status)),
        NV("content-type", "application/grpc", sizeof "application/grpc" - 1),
        NV("grpc-status", grpc_status, strlen(grpc_status)),
        NV("grpc-message", enc, enc_len),
    };
    size_t n_nv = enc_len ? 4 : 3;
    st->replied = 1;
    drop_body(st);
    int rv = nghttp2_submit_response(c->session, st->id, nv, n_nv, NULL);
    if (rv != 0) {
        fn_log_warn("funneld: gRPC stream %d: cannot submit a response: %s", st->id,
                    nghttp2_strerror(rv));
        nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    }
}

/* reply_error, counted in the metrics as the stream's method answered with code. */
static void reply_error_counted(grpc_conn *c, grpc_stream *st, int http_status, int code,
                                const char *msg)
{
    fn_metrics_request(c->g->s->metrics, FN_TRANSPORT_GRPC, fn_method_of(st->path), code,
                       fn_now_ns() - st->t0);
    reply_error(c, st, http_status, code, msg);
}

/* The data provider: st->out in pieces as flow control allows, then the OK trailers. */
static ssize_t read_reply(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                          uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
    (void)user_data;
    grpc_stream *st = source->ptr;
    size_t left = st->out.len - st->out_off;
    size_t n = left < length ? left : length;
    if (n) memcpy(buf, st->out.data + st->out_off, n);
    st->out_off += n;
    if (st->out_off == st->out.len) {
        /* The stream ends with the trailers, not with this DATA frame. */
        *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_nv trailers[] = {NV("grpc-status", "0", 1)};
        int rv = nghttp2_submit_trailer(session, stream_id, trailers, 1);
        if (rv != 0) {
            fn_log_warn("funneld: gRPC stream %d: cannot submit trailers: %s", stream_id,
                        nghttp2_strerror(rv));
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
    }
    return (ssize_t)n;
}

static void reply_ok(grpc_conn *c, grpc_stream *st, const fn_buf *msg)
{
    uint32_t len = (uint32_t)msg->len;
    uint8_t prefix[PREFIX_BYTES] = {0, (uint8_t)(len >> 24), (uint8_t)(len >> 16),
                                    (uint8_t)(len >> 8), (uint8_t)len};
    st->replied = 1;
    drop_body(st);
    if (msg->len > UINT32_MAX) {
        reply_error(c, st, 200, FN_GRPC_INTERNAL, "response message too large to frame");
        return;
    }
    fn_buf_append(&st->out, prefix, sizeof prefix);
    fn_buf_append(&st->out, msg->data, msg->len);
    if (st->out.oom) {
        fn_buf_free(&st->out);
        reply_error(c, st, 200, FN_GRPC_RESOURCE_EXHAUSTED, "out of memory framing the reply");
        return;
    }
    nghttp2_nv nv[] = {
        NV(":status", "200", 3),
        NV("content-type", "application/grpc", sizeof "application/grpc" - 1),
    };
    nghttp2_data_provider prd;
    prd.source.ptr = st;
    prd.read_callback = read_reply;
    int rv = nghttp2_submit_response(c->session, st->id, nv, 2, &prd);
    if (rv != 0) {
        fn_log_warn("funneld: gRPC stream %d: cannot submit a response: %s", st->id,
                    nghttp2_strerror(rv));
        nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    }
}

/* ---- calls on the worker pool ------------------------------------------- */

#define RANKING_PREFIX "/funnel.v1.Ranking/"

/* Frames a dispatcher's answer and counts it. */
static void reply_dispatched(grpc_conn *c, grpc_stream *st, const fn_rpc_reply *r)
{
    fn_metrics_request(c->g->s->metrics, FN_TRANSPORT_GRPC, fn_method_of(st->path), r->status,
                       fn_now_ns() - st->t0);
    if (r->status == FN_GRPC_OK)
        reply_ok(c, st, &r->body);
    else
        reply_error(c, st, 200, r->status, r->message);
}

static void job_free(struct grpc_job *j)
{
    fn_buf_free(&j->reply.body);
    free(j->msg);
    free(j);
}

static void run_job(fn_server *s, fn_job *job)
{
    struct grpc_job *j = (struct grpc_job *)job;
    fn_server_dispatch(s, j->path, j->msg, j->n, j->deadline_ns, &j->reply);
}

static int conn_flush(grpc_conn *c);

/* Back on the loop thread: answer the stream if it still exists, then send. */
static void done_job(fn_server *s, fn_job *job)
{
    (void)s;
    struct grpc_job *j = (struct grpc_job *)job;
    grpc_stream *st = j->st;
    if (st) {
        grpc_conn *c = st->c;
        st->job = NULL;
        if (job->cancelled) {
            j->reply.status = FN_GRPC_UNAVAILABLE;
            snprintf(j->reply.message, sizeof j->reply.message, "server shutting down");
        }
        reply_dispatched(c, st, &j->reply);
        conn_flush(c); /* may free c: nothing of it is used after */
    }
    job_free(j);
}

static void submit_job(grpc_conn *c, grpc_stream *st, const uint8_t *msg, size_t n)
{
    fn_server *s = c->g->s;
    struct grpc_job *j = calloc(1, sizeof *j);
    if (j) j->msg = malloc(n ? n : 1);
    if (!j || !j->msg) {
        if (j) free(j);
        reply_error_counted(c, st, 200, FN_GRPC_RESOURCE_EXHAUSTED,
                            "out of memory queueing the call");
        return;
    }
    if (n) memcpy(j->msg, msg, n);
    j->n = n;
    j->st = st;
    j->deadline_ns = st->deadline_ns;
    snprintf(j->path, sizeof j->path, "%s", st->path);
    j->reply.body = (fn_buf)FN_BUF_INIT;
    j->job.run = run_job;
    j->job.done = done_job;
    int rc = fn_workers_submit(s, &j->job);
    if (rc != 0) {
        job_free(j);
        if (rc == FN_WORKERS_DRAINING)
            reply_error_counted(c, st, 200, FN_GRPC_UNAVAILABLE, "server shutting down");
        else
            reply_error_counted(c, st, 200, FN_GRPC_RESOURCE_EXHAUSTED, "server busy");
        return;
    }
    st->job = j;
}

/* The client finished its request: check it, run it, answer. */
static void handle_request(grpc_conn *c, grpc_stream *st)
{
    fn_server *s = c->g->s;
    if (!st->is_post) {
        reply_error_counted(c, st, 405, FN_GRPC_INTERNAL, "gRPC requests use POST");
        return;
    }
    if (!st->content_type_ok) {
        reply_error_counted(c, st, 415, FN_GRPC_INTERNAL,
                            st->has_content_type
                                ? "content-type is not application/grpc"
                                : "content-type missing (gRPC needs application/grpc)");
        return;
    }
    if (st->bad_timeout) {
        /* As grpc-go does: a malformed header is a protocol error, not the caller's argument. */
        reply_error_counted(c, st, 200, FN_GRPC_INTERNAL, "malformed grpc-timeout");
        return;
    }
    if (st->path_too_long) {
        reply_error_counted(c, st, 200, FN_GRPC_UNIMPLEMENTED, "unknown method (path too long)");
        return;
    }
    const uint8_t *b = (const uint8_t *)st->body.data;
    if (st->body.len < PREFIX_BYTES) {
        reply_error_counted(c, st, 200, FN_GRPC_INTERNAL,
                            st->body.len ? "truncated message prefix"
                                         : "request without a message");
        return;
    }
    if (b[0] != 0) {
        reply_error_counted(c, st, 200, FN_GRPC_UNIMPLEMENTED,
                            b[0] == 1 ? "compression not supported" : "bad message flags");
        return;
    }
    size_t len = ((size_t)b[1] << 24) | ((size_t)b[2] << 16) | ((size_t)b[3] << 8) | b[4];
    if (st->body.len != PREFIX_BYTES + len) {
        char msg[128];
        snprintf(msg, sizeof msg,
                 st->body.len < PREFIX_BYTES + len
                     ? "message truncated: prefix says %zu bytes, got %zu"
                     : "unary call with more than one message (prefix says %zu bytes, got %zu)",
                 len, st->body.len - PREFIX_BYTES);
        reply_error_counted(c, st, 200, FN_GRPC_INTERNAL, msg);
        return;
    }
    /* The Ranking methods score on a worker; health checks stay here, answered at once. */
    if (strncmp(st->path, RANKING_PREFIX, sizeof RANKING_PREFIX - 1) == 0) {
        submit_job(c, st, b + PREFIX_BYTES, len);
        return;
    }
    fn_rpc_reply r;
    memset(&r, 0, sizeof r);
    fn_server_dispatch(s, st->path, b + PREFIX_BYTES, len, st->deadline_ns, &r);
    reply_dispatched(c, st, &r);
    fn_buf_free(&r.body);
}

/* ---- nghttp2 callbacks ---------------------------------------------------- */

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    grpc_conn *c = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    grpc_stream *st = calloc(1, sizeof *st);
    if (!st) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets just this stream */
    st->c = c;
    st->id = frame->hd.stream_id;
    st->t0 = fn_now_ns();
    st->next = c->streams;
    if (c->streams) c->streams->prev = st;
    c->streams = st;
    if (nghttp2_session_set_stream_user_data(session, st->id, st) != 0) {
        stream_free(st);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
    (void)flags, (void)user_data;
    /* Client trailers carry nothing unary calls need. */
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    grpc_stream *st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!st) return 0;
    /* Counted as HTTP/2's SETTINGS_MAX_HEADER_LIST_SIZE counts: 32 bytes per field. */
    st->header_bytes += namelen + valuelen + 32;
    if (st->header_bytes > MAX_HEADER_BYTES) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
#define IS(lit) (namelen == sizeof(lit) - 1 && memcmp(name, lit, namelen) == 0)
    if (IS(":method")) {
        st->is_post = valuelen == 4 && memcmp(value, "POST", 4) == 0;
    } else if (IS(":path")) {
        if (valuelen >= sizeof st->path) {
            st->path_too_long = 1;
        } else {
            memcpy(st->path, value, valuelen);
            st->path[valuelen] = '\0';
        }
    } else if (IS("content-type")) {
        st->has_content_type = 1;
        st->content_type_ok = grpc_content_type(value, valuelen);
    } else if (IS("grpc-timeout")) {
        int64_t d = parse_timeout(value, valuelen, fn_now_ns());
        if (d < 0)
            st->bad_timeout = 1;
        else
            st->deadline_ns = d;
    }
#undef IS
    return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                              const uint8_t *data, size_t len, void *user_data)
{
    (void)flags;
    grpc_conn *c = user_data;
    grpc_stream *st = nghttp2_session_get_stream_user_data(session, stream_id);
    if (!st || st->replied) return 0;
    size_t max_msg = (size_t)c->g->s->cfg.max_message_bytes;
    size_t limit = max_msg + PREFIX_BYTES;
    char msg[160];
    if (st->body.len + len > limit) {
        snprintf(msg, sizeof msg, "request message larger than the limit of %zu bytes", max_msg);
        reply_error_counted(c, st, 200, FN_GRPC_RESOURCE_EXHAUSTED, msg);
        return 0;
    }
    if (c->buffered + len > CONN_BUFFER_FACTOR * limit) {
        reply_error_counted(c, st, 200, FN_GRPC_RESOURCE_EXHAUSTED,
                            "too many request bytes in flight on this connection");
        return 0;
    }
    size_t before = st->body.len;
    fn_buf_append(&st->body, data, len);
    if (st->body.oom) {
        st->body.len = before; /* what buffered counted */
        reply_error_counted(c, st, 200, FN_GRPC_RESOURCE_EXHAUSTED,
                            "out of memory buffering the request");
        return 0;
    }
    c->buffered += len;
    /* Refuse a too big message by its prefix, before its bytes arrive. */
    if (before < PREFIX_BYTES && st->body.len >= PREFIX_BYTES) {
        const uint8_t *b = (const uint8_t *)st->body.data;
        uint32_t declared =
            ((uint32_t)b[1] << 24) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 8) | b[4];
        if (declared > max_msg) {
            snprintf(msg, sizeof msg,
                     "request message of %" PRIu32 " bytes is larger than the limit of %zu bytes",
                     declared, max_msg);
            reply_error_counted(c, st, 200, FN_GRPC_RESOURCE_EXHAUSTED, msg);
        }
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    grpc_conn *c = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
    if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) return 0;
    grpc_stream *st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (st && !st->replied) handle_request(c, st);
    return 0;
}

/*
 * A response that ended the stream while the client was still sending (a
 * message refused as too big): RST_STREAM(NO_ERROR) asks it to stop, as
 * RFC 9113 section 8.1 allows. Not earlier: nghttp2 drops a response queued
 * behind a RST_STREAM of its stream.
 */
static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    (void)user_data;
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
    if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) return 0;
    nghttp2_stream *hs = nghttp2_session_find_stream(session, frame->hd.stream_id);
    if (!hs) return 0;
    nghttp2_stream_proto_state state = nghttp2_stream_get_state(hs);
    if (state == NGHTTP2_STREAM_STATE_OPEN || state == NGHTTP2_STREAM_STATE_HALF_CLOSED_LOCAL)
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    (void)error_code, (void)user_data;
    grpc_stream *st = nghttp2_session_get_stream_user_data(session, stream_id);
    if (st) {
        nghttp2_session_set_stream_user_data(session, stream_id, NULL);
        stream_free(st);
    }
    return 0;
}

/* ---- connections ---------------------------------------------------------- */

static void conn_free(grpc_conn *c)
{
    struct fn_grpc *g = c->g;
    if (c->prev)
        c->prev->next = c->next;
    else
        g->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    g->n_conns--;
    nghttp2_session_del(c->session);
    while (c->streams) stream_free(c->streams);
    if (c->bev) bufferevent_free(c->bev);
    free(c);
}

/*
 * Moves what nghttp2 has to send into the bufferevent, up to the high-water
 * mark. Returns -1 when the connection was closed (c is gone).
 */
static int conn_flush(grpc_conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    while (evbuffer_get_length(out) < OUTPUT_HIGH_WATER) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->session, &data);
        if (n < 0) {
            fn_log_debug("funneld: gRPC connection: send failed: %s", nghttp2_strerror((int)n));
            conn_free(c);
            return -1;
        }
        if (n == 0) break;
        if (evbuffer_add(out, data, (size_t)n) != 0) {
            fn_log_warn("funneld: gRPC connection: out of memory queueing a reply; closing it");
            conn_free(c);
            return -1;
        }
    }
    if (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session)) {
        /* GOAWAY sent (ours or the client's): close once it is on the wire. */
        if (evbuffer_get_length(out) == 0) {
            conn_free(c);
            return -1;
        }
        c->closing = 1;
        bufferevent_disable(c->bev, EV_READ);
    }
    return 0;
}

/* Feeds buffered input to nghttp2. Returns -1 when the connection was closed. */
static int conn_process_input(grpc_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    while (!c->closing && evbuffer_get_length(in) > 0) {
        if (evbuffer_get_length(out) >= OUTPUT_HIGH_WATER) {
            /* The client is not reading its replies: stop reading its requests. */
            c->read_paused = 1;
            bufferevent_disable(c->bev, EV_READ);
            return 0;
        }
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1) break;
        ssize_t n = nghttp2_session_mem_recv(c->session, v.iov_base, v.iov_len);
        if (n < 0) {
            /* Not HTTP/2 at all (no client preface), a flood, or out of memory. */
            fn_log_debug("funneld: gRPC connection: %s; closing it", nghttp2_strerror((int)n));
            conn_free(c);
            return -1;
        }
        evbuffer_drain(in, (size_t)n);
        if (conn_flush(c) != 0) return -1;
    }
    return 0;
}

static void on_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    grpc_conn *c = arg;
    conn_process_input(c);
}

/* The output drained: send more, close after GOAWAY, or resume reading. */
static void on_write(struct bufferevent *bev, void *arg)
{
    (void)bev;
    grpc_conn *c = arg;
    if (c->closing) {
        conn_free(c);
        return;
    }
    if (conn_flush(c) != 0) return;
    if (c->read_paused) {
        c->read_paused = 0;
        bufferevent_enable(c->bev, EV_READ);
        conn_process_input(c);
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    grpc_conn *c = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) conn_free(c);
}

static void on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *addr,
                      int addrlen, void *arg)
{
    (void)listener, (void)addr, (void)addrlen;
    struct fn_grpc *g = arg;
    if (g->n_conns >= g->s->cfg.max_connections) {
        evutil_closesocket(fd);
        g->refused++;
        uint64_t now = fn_now_ns();
        /* One line a second at most: a client retrying in a loop must not flood the log. */
        if (now - g->last_refused_log_ns >= 1000000000ull || g->last_refused_log_ns == 0) {
            g->last_refused_log_ns = now;
            fn_log_warn("funneld: gRPC: %d connections open (--max-connections); refused %" PRIu64
                        " so far",
                        g->n_conns, g->refused);
        }
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    grpc_conn *c = calloc(1, sizeof *c);
    if (!c) {
        evutil_closesocket(fd);
        fn_log_warn("funneld: gRPC: out of memory accepting a connection");
        return;
    }
    c->g = g;
    c->next = g->conns;
    if (g->conns) g->conns->prev = c;
    g->conns = c;
    g->n_conns++;
    c->bev = bufferevent_socket_new(g->s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        evutil_closesocket(fd);
        conn_free(c);
        fn_log_warn("funneld: gRPC: cannot set up a connection (libevent)");
        return;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, MAX_CONCURRENT_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW_BYTES},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_BYTES},
    };
    int rv = nghttp2_session_server_new(&c->session, g->callbacks, c);
    if (rv == 0) rv = nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 3);
    if (rv == 0)
        rv = nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0,
                                                   CONN_WINDOW_BYTES);
    if (rv != 0) {
        fn_log_warn("funneld: gRPC: cannot set up an HTTP/2 session: %s", nghttp2_strerror(rv));
        conn_free(c);
        return;
    }
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    if (bufferevent_enable(c->bev, EV_READ | EV_WRITE) != 0) {
        conn_free(c);
        return;
    }
    conn_flush(c); /* our SETTINGS go first, as HTTP/2 asks */
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct fn_grpc *g = arg;
    if (!g->s->draining) evconnlistener_enable(g->listener);
}

static void on_accept_error(struct evconnlistener *listener, void *arg)
{
    struct fn_grpc *g = arg;
    int e = EVUTIL_SOCKET_ERROR();
    fn_log_warn("funneld: gRPC: accept failed: %s", evutil_socket_error_to_string(e));
    if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
        /* The pending connection stays pending: pause rather than spin on it. */
        struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
        evconnlistener_disable(listener);
        event_add(g->accept_resume, &tv);
    }
}

/* ---- listener ------------------------------------------------------------- */

fn_status fn_grpc_start(fn_server *s, fn_error *err)
{
    struct fn_grpc *g = calloc(1, sizeof *g);
    if (!g) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    g->s = s;
    s->grpc = g;
    if (nghttp2_session_callbacks_new(&g->callbacks) != 0)
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory (nghttp2 callbacks)");
    nghttp2_session_callbacks_set_on_begin_headers_callback(g->callbacks, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(g->callbacks, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(g->callbacks, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_frame_recv_callback(g->callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(g->callbacks, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(g->callbacks, on_frame_send);
    g->accept_resume = evtimer_new(s->base, on_accept_resume, g);
    if (!g->accept_resume) return fn_error_set(err, FN_ERR_INTERNAL, "creating a timer failed");

    char port[8];
    snprintf(port, sizeof port, "%d", s->cfg.grpc_port);
    struct evutil_addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_ADDRCONFIG;
    int gai = evutil_getaddrinfo(s->cfg.host, port, &hints, &res);
    if (gai != 0)
        return fn_error_set(err, FN_ERR_IO, "cannot listen for gRPC on %s port %d: %s", s->cfg.host,
                            s->cfg.grpc_port, evutil_gai_strerror(gai));
    int e = 0;
    for (struct evutil_addrinfo *ai = res; ai && !g->listener; ai = ai->ai_next) {
        g->listener = evconnlistener_new_bind(s->base, on_accept, g,
                                              LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                                  LEV_OPT_CLOSE_ON_EXEC,
                                              LISTEN_BACKLOG, ai->ai_addr, (int)ai->ai_addrlen);
        if (!g->listener) e = EVUTIL_SOCKET_ERROR();
    }
    evutil_freeaddrinfo(res);
    if (!g->listener)
        return fn_error_set(err, FN_ERR_IO, "cannot listen for gRPC on %s port %d: %s", s->cfg.host,
                            s->cfg.grpc_port,
                            e ? evutil_socket_error_to_string(e) : "address not usable");
    evconnlistener_set_error_cb(g->listener, on_accept_error);
    fn_error ignored = {0}; /* the port stays 0 in the log: nothing to fail for */
    fn_server_bound_address(evconnlistener_get_fd(g->listener), s->grpc_address,
                            sizeof s->grpc_address, &s->grpc_port, &ignored);
    return FN_OK;
}

/*
 * At shutdown the loop no longer runs: queue GOAWAY(NO_ERROR) behind what is
 * pending and write what the socket takes now, so that clients learn the
 * server went away on purpose (and retry elsewhere) rather than see a reset.
 */
static void conn_goaway_now(grpc_conn *c)
{
    if (!c->session || nghttp2_session_terminate_session(c->session, NGHTTP2_NO_ERROR) != 0) return;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    const uint8_t *data;
    ssize_t n;
    while (evbuffer_get_length(out) < OUTPUT_HIGH_WATER &&
           (n = nghttp2_session_mem_send(c->session, &data)) > 0)
        if (evbuffer_add(out, data, (size_t)n) != 0) break;
    /* The bufferevent keeps its output's start frozen outside its own write callback. */
    evbuffer_unfreeze(out, 1);
    evbuffer_write(out, bufferevent_getfd(c->bev)); /* non-blocking: best effort */
}

void fn_grpc_stop_accepting(fn_server *s)
{
    struct fn_grpc *g = s->grpc;
    if (!g) return;
    if (g->accept_resume) event_del(g->accept_resume);
    /* Freed rather than disabled: the port closes, so a client's connect fails at once
     * and it goes to another server instead of waiting in our backlog. */
    if (g->listener) evconnlistener_free(g->listener);
    g->listener = NULL;
}

void fn_grpc_conn_stats(const fn_server *s, int *open, uint64_t *refused)
{
    const struct fn_grpc *g = s->grpc;
    *open = g ? g->n_conns : 0;
    *refused = g ? g->refused : 0;
}

void fn_grpc_stop(fn_server *s)
{
    struct fn_grpc *g = s->grpc;
    if (!g) return;
    if (g->listener) evconnlistener_free(g->listener);
    while (g->conns) {
        conn_goaway_now(g->conns);
        conn_free(g->conns);
    }
    if (g->accept_resume) event_free(g->accept_resume);
    nghttp2_session_callbacks_del(g->callbacks);
    free(g);
    s->grpc = NULL;
}

fn_status fn_server_start_grpc(fn_server *s, fn_error *err)
{
    return fn_grpc_start(s, err);
}

const char *fn_server_grpc_address(const fn_server *s)
{
    return s->grpc_address;
}

uint16_t fn_server_grpc_port(const fn_server *s)
{
    return s->grpc_port;
}
