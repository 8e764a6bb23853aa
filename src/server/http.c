/*
 * http.c - funneld's HTTP/1.1 listener (libevent's evhttp): the health
 * endpoints and /metrics, answered in the loop thread, and Rank, whose body
 * is copied into a job for the worker pool (workers.c) and answered when the
 * job comes back, unless its connection went away meanwhile.
 *
 * Routing is one table of (path, allowed methods, handler). An unknown path
 * is 404 whatever the method; a known path with another method is 405 with
 * an Allow header. Every request ends in exactly one reply, sent by reply().
 * The connections themselves (how many, how long a request may take to
 * arrive, how long one may idle) are http_conn.c's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>

#include "common/clock.h"
#include "common/log.h"
#include "server_impl.h"

/* Health checks are tiny; anything bigger is not for us. */
#define MAX_HEADERS_BYTES (16 * 1024)
#define MAX_BODY_BYTES    (1024 * 1024)

typedef struct route {
    const char *path;
    unsigned methods;  /* EVHTTP_REQ_* bits */
    const char *allow; /* the Allow header for 405 */
    void (*handle)(fn_server *s, struct evhttp_request *req);
} route;

static void reply(struct evhttp_request *req, int code, const char *reason, const char *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
    evhttp_add_header(h, "Cache-Control", "no-store");
    struct evbuffer *buf = evbuffer_new();
    if (buf) evbuffer_add(buf, body, strlen(body));
    evhttp_send_reply(req, code, reason, buf);
    if (buf) evbuffer_free(buf);
}

/* Alive: the loop is turning. */
static void handle_healthz(fn_server *s, struct evhttp_request *req)
{
    (void)s;
    reply(req, HTTP_OK, "OK", "ok\n");
}

/* Ready: startup finished (store opened, models loaded) and not shutting down. */
static void handle_readyz(fn_server *s, struct evhttp_request *req)
{
    if (s->ready) {
        reply(req, HTTP_OK, "OK", "ready\n");
    } else {
        reply(req, HTTP_SERVUNAVAIL, "Service Unavailable", "not ready\n");
    }
}

/* A request body of at most MAX_BODY_BYTES (evhttp refuses bigger ones with 413 itself). */
static int is_type(struct evhttp_request *req, const char *type)
{
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    size_t n = strlen(type);
    return ct && !strncasecmp(ct, type, n) && (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ');
}

/*
 * A Rank call on its way through the worker pool. req is NULL once the
 * connection went away with the request still attached (libevent frees it
 * then); the answer is dropped.
 */
typedef struct http_job {
    fn_job job; /* first: the pool hands back this pointer */
    struct evhttp_request *req;
    int json;
    uint64_t t0;
    int64_t deadline_ns; /* from X-Request-Timeout-Ms; 0: none */
    /* the call (fn_server_rank or fn_server_encode) and its method for /metrics */
    fn_status (*call)(fn_server *s, const uint8_t *body, size_t n, int json, int64_t deadline_ns,
                      fn_buf *out, fn_error *err);
    int method;
    uint8_t *body; /* a copy: the request's buffer belongs to the loop thread */
    size_t n;
    fn_status st;
    fn_error err;
    fn_buf out;
} http_job;

static void send_rank_reply(fn_server *s, http_job *j)
{
    struct evhttp_request *req = j->req;
    int code = HTTP_OK;
    if (j->job.cancelled) {
        code = HTTP_SERVUNAVAIL;
        reply(req, code, "Service Unavailable", "server shutting down\n");
    } else if (j->st != FN_OK) {
        char msg[FN_ERROR_MSG_MAX + 2];
        snprintf(msg, sizeof msg, "%s\n", j->err.msg);
        code = j->st == FN_ERR_INVALID       ? HTTP_BADREQUEST
               : j->st == FN_ERR_UNSUPPORTED ? HTTP_SERVUNAVAIL
                                             : HTTP_INTERNAL;
        if (code == HTTP_INTERNAL)
            fn_log_error("funneld: %s: %s", j->method == FN_METHOD_ENCODE ? "Encode" : "Rank",
                         j->err.msg);
        reply(req, code,
              code == HTTP_BADREQUEST    ? "Bad Request"
              : code == HTTP_SERVUNAVAIL ? "Service Unavailable"
                                         : "Internal Server Error",
              msg);
    } else {
        struct evkeyvalq *h = evhttp_request_get_output_headers(req);
        evhttp_add_header(h, "Content-Type", j->json ? "application/json" : "application/protobuf");
        evhttp_add_header(h, "Cache-Control", "no-store");
        struct evbuffer *buf = evbuffer_new();
        if (buf) evbuffer_add(buf, j->out.data ? j->out.data : "", j->out.len);
        evhttp_send_reply(req, HTTP_OK, "OK", buf);
        if (buf) evbuffer_free(buf);
    }
    fn_metrics_request(s->metrics, FN_TRANSPORT_HTTP, j->method, code, fn_now_ns() - j->t0);
}

static void http_job_free(http_job *j)
{
    fn_buf_free(&j->out);
    free(j->body);
    free(j);
}

/*
 * The connection of a request still being ranked is closing. A request still
 * attached to it is freed with it, so the job forgets it; one libevent
 * detached already (the client hung up while we worked) stays ours, and
 * evhttp_send_reply frees it.
 */
static void on_rank_conn_close(struct evhttp_connection *evcon, void *arg)
{
    http_job *j = arg;
    if (j->req && evhttp_request_get_connection(j->req) == evcon) j->req = NULL;
}

static void run_rank(fn_server *s, fn_job *job)
{
    http_job *j = (http_job *)job;
    j->st = j->call(s, j->body, j->n, j->json, j->deadline_ns, &j->out, &j->err);
}

static void done_rank(fn_server *s, fn_job *job)
{
    http_job *j = (http_job *)job;
    if (j->req) {
        struct evhttp_connection *evcon = evhttp_request_get_connection(j->req);
        if (evcon) evhttp_connection_set_closecb(evcon, NULL, NULL);
        send_rank_reply(s, j);
    }
    http_job_free(j);
}

/*
 * A pipeline call over HTTP (POST /funnel.v1.Ranking/Rank or /Encode): the request
 * as proto3 JSON or protobuf, the answer alike. Run on a worker thread; the reply
 * is sent from done_rank on the loop thread.
 */
static void handle_call(fn_server *s, struct evhttp_request *req,
                        fn_status (*call)(fn_server *, const uint8_t *, size_t, int, int64_t,
                                          fn_buf *, fn_error *),
                        int method)
{
    uint64_t t0 = fn_now_ns();
    /* X-Request-Timeout-Ms: the caller's budget in milliseconds (fractions allowed), the HTTP
     * counterpart of gRPC's grpc-timeout; stages that would not fit are skipped (degraded). */
    int64_t deadline_ns = 0;
    const char *tmo =
        evhttp_find_header(evhttp_request_get_input_headers(req), "X-Request-Timeout-Ms");
    if (tmo) {
        char *end;
        double ms = strtod(tmo, &end);
        if (end == tmo || *end || !(ms > 0 && ms <= 3.6e6)) {
            reply(req, HTTP_BADREQUEST, "Bad Request",
                  "X-Request-Timeout-Ms must be a number of milliseconds above 0\n");
            fn_metrics_request(s->metrics, FN_TRANSPORT_HTTP, method, HTTP_BADREQUEST,
                               fn_now_ns() - t0);
            return;
        }
        deadline_ns = (int64_t)t0 + (int64_t)(ms * 1e6);
    }
    int json = is_type(req, "application/json");
    if (!json && !is_type(req, "application/protobuf") && !is_type(req, "application/x-protobuf")) {
        reply(req, 415, "Unsupported Media Type",
              "Content-Type must be application/json or application/protobuf\n");
        fn_metrics_request(s->metrics, FN_TRANSPORT_HTTP, method, 415, fn_now_ns() - t0);
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    http_job *j = calloc(1, sizeof *j);
    if (j) j->body = malloc(n ? n : 2);
    if (!j || !j->body) {
        if (j) free(j);
        reply(req, HTTP_SERVUNAVAIL, "Service Unavailable", "out of memory\n");
        fn_metrics_request(s->metrics, FN_TRANSPORT_HTTP, method, HTTP_SERVUNAVAIL,
                           fn_now_ns() - t0);
        return;
    }
    if (n) evbuffer_copyout(in, j->body, n);
    if (json && n == 0) memcpy(j->body, "{}", 2), n = 2;
    j->n = n;
    j->json = json;
    j->t0 = t0;
    j->deadline_ns = deadline_ns;
    j->req = req;
    j->out = (fn_buf)FN_BUF_INIT;
    j->call = call;
    j->method = method;
    j->job.run = run_rank;
    j->job.done = done_rank;
    int rc = fn_workers_submit(s, &j->job);
    if (rc != 0) {
        http_job_free(j);
        reply(req, HTTP_SERVUNAVAIL, "Service Unavailable",
              rc == FN_WORKERS_DRAINING ? "server shutting down\n" : "server busy\n");
        fn_metrics_request(s->metrics, FN_TRANSPORT_HTTP, method, HTTP_SERVUNAVAIL,
                           fn_now_ns() - t0);
        return;
    }
    /* Set after the submit: a refused job must not leave a callback behind. */
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_rank_conn_close, j);
}

/* POST /funnel.v1.Ranking/Rank: a RankRequest, the page back. */
static void handle_rank(fn_server *s, struct evhttp_request *req)
{
    handle_call(s, req, fn_server_rank, FN_METHOD_RANK);
}

/* POST /funnel.v1.Ranking/Encode: texts to embeddings (EncodeRequest / EncodeResponse). */
static void handle_encode(fn_server *s, struct evhttp_request *req)
{
    handle_call(s, req, fn_server_encode, FN_METHOD_ENCODE);
}

/* ---- POST /admin/reload: the SIGHUP reload as a call that answers how it went ---- */

static void run_reload(fn_server *s, fn_job *job)
{
    http_job *j = (http_job *)job;
    j->st = fn_server_load_pipeline(s, &j->err);
}

static void done_reload(fn_server *s, fn_job *job)
{
    (void)s;
    http_job *j = (http_job *)job;
    if (j->req) {
        struct evhttp_connection *evcon = evhttp_request_get_connection(j->req);
        if (evcon) evhttp_connection_set_closecb(evcon, NULL, NULL);
        char msg[FN_ERROR_MSG_MAX + 64];
        if (j->job.cancelled) {
            reply(j->req, HTTP_SERVUNAVAIL, "Service Unavailable", "server shutting down\n");
        } else if (j->st != FN_OK) {
            snprintf(msg, sizeof msg, "reload failed, the previous pipeline stays: %s\n",
                     j->err.msg);
            reply(j->req, HTTP_INTERNAL, "Internal Server Error", msg);
        } else {
            reply(j->req, HTTP_OK, "OK", "reloaded\n");
        }
    }
    http_job_free(j);
}

/*
 * Reloads the configuration and everything it names on a worker thread (the loop keeps
 * serving); requests under way finish on the pipeline they started with. Only for callers
 * that can reach the listening address (127.0.0.1 by default).
 */
static void handle_reload(fn_server *s, struct evhttp_request *req)
{
    if (!s->cfg.config_path) {
        reply(req, HTTP_SERVUNAVAIL, "Service Unavailable",
              "no pipeline to reload: funneld was started without --config\n");
        return;
    }
    http_job *j = calloc(1, sizeof *j);
    if (!j) {
        reply(req, HTTP_SERVUNAVAIL, "Service Unavailable", "out of memory\n");
        return;
    }
    j->req = req;
    j->out = (fn_buf)FN_BUF_INIT;
    j->job.run = run_reload;
    j->job.done = done_reload;
    int rc = fn_workers_submit(s, &j->job);
    if (rc != 0) {
        http_job_free(j);
        reply(req, HTTP_SERVUNAVAIL, "Service Unavailable",
              rc == FN_WORKERS_DRAINING ? "server shutting down\n" : "server busy\n");
        return;
    }
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_rank_conn_close, j);
}

/* GET /metrics: Prometheus' text exposition format, version 0.0.4. */
static void handle_metrics(fn_server *s, struct evhttp_request *req)
{
    fn_buf out = FN_BUF_INIT;
    fn_metrics_render(s, &out);
    if (out.oom) {
        fn_buf_free(&out);
        reply(req, HTTP_INTERNAL, "Internal Server Error", "out of memory\n");
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "text/plain; version=0.0.4");
    evhttp_add_header(h, "Cache-Control", "no-store");
    struct evbuffer *buf = evbuffer_new();
    if (buf) evbuffer_add(buf, out.data ? out.data : "", out.len);
    evhttp_send_reply(req, HTTP_OK, "OK", buf);
    if (buf) evbuffer_free(buf);
    fn_buf_free(&out);
}

static const route routes[] = {
    {"/funnel.v1.Ranking/Rank", EVHTTP_REQ_POST, "POST", handle_rank},
    {"/twirp/funnel.v1.Ranking/Rank", EVHTTP_REQ_POST, "POST", handle_rank},
    {"/funnel.v1.Ranking/Encode", EVHTTP_REQ_POST, "POST", handle_encode},
    {"/twirp/funnel.v1.Ranking/Encode", EVHTTP_REQ_POST, "POST", handle_encode},
    {"/healthz", EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "GET, HEAD", handle_healthz},
    {"/readyz", EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "GET, HEAD", handle_readyz},
    {"/metrics", EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "GET, HEAD", handle_metrics},
    {"/admin/reload", EVHTTP_REQ_POST, "POST", handle_reload},
};

static void on_request(struct evhttp_request *req, void *arg)
{
    fn_server *s = arg;
    fn_http_conn_request(s, req); /* arrived whole: no 408 for it */
    /* draining: this answer is the connection's last, so the client goes elsewhere next */
    if (s->draining)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path || !*path) path = "/";
    unsigned method = (unsigned)evhttp_request_get_command(req);
    fn_log_debug("funneld: HTTP %u %s", method, path);
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(path, routes[i].path) != 0) continue;
        if (!(routes[i].methods & method)) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", routes[i].allow);
            reply(req, HTTP_BADMETHOD, "Method Not Allowed", "method not allowed\n");
            return;
        }
        routes[i].handle(s, req);
        return;
    }
    reply(req, HTTP_NOTFOUND, "Not Found", "not found\n");
}

/* Reads back the bound address, so port 0 turns into the port the kernel picked. */
fn_status fn_http_start(fn_server *s, fn_error *err)
{
    s->http = evhttp_new(s->base);
    if (!s->http) return fn_error_set(err, FN_ERR_INTERNAL, "creating the HTTP server failed");
    /* Let every method through to on_request, which answers 405 itself (libevent says 501). */
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_max_headers_size(s->http, MAX_HEADERS_BYTES);
    evhttp_set_max_body_size(s->http, MAX_BODY_BYTES);
    fn_status st = fn_http_conn_start(s, err); /* evhttp's timeout, our deadlines and limit */
    if (st != FN_OK) return st;
    evhttp_set_gencb(s->http, on_request, s);
    struct evhttp_bound_socket *sock =
        evhttp_bind_socket_with_handle(s->http, s->cfg.host, (uint16_t)s->cfg.http_port);
    if (!sock) {
        int e = EVUTIL_SOCKET_ERROR();
        return fn_error_set(err, FN_ERR_IO, "cannot listen for HTTP on %s port %d: %s", s->cfg.host,
                            s->cfg.http_port,
                            e ? evutil_socket_error_to_string(e) : "address not usable");
    }
    s->http_sock = sock;
    return fn_server_bound_address(evhttp_bound_socket_get_fd(sock), s->http_address,
                                   sizeof s->http_address, &s->http_port, err);
}

void fn_http_stop_accepting(fn_server *s)
{
    if (s->http && s->http_sock) evhttp_del_accept_socket(s->http, s->http_sock);
    s->http_sock = NULL;
}

void fn_http_stop(fn_server *s)
{
    if (s->http) evhttp_free(s->http);
    s->http = NULL;
    fn_http_conn_stop(s);
}
