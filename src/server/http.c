/*
 * http.c - funneld's HTTP/1.1 listener (libevent's evhttp): the health
 * endpoints now, the RPC-over-HTTP endpoints of DESIGN.md later.
 *
 * Routing is one table of (path, allowed methods, handler). An unknown path
 * is 404 whatever the method; a known path with another method is 405 with
 * an Allow header. Every request ends in exactly one reply, sent by reply().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>

#include "common/log.h"
#include "server_impl.h"

/* Health checks are tiny; anything bigger is not for us. */
#define MAX_HEADERS_BYTES (16 * 1024)
#define MAX_BODY_BYTES    (1024 * 1024)
#define IDLE_TIMEOUT_S    30

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

/* POST /funnel.v1.Ranking/Rank: a RankRequest as proto3 JSON or protobuf, the answer alike. */
static void handle_rank(fn_server *s, struct evhttp_request *req)
{
    int json = is_type(req, "application/json");
    if (!json && !is_type(req, "application/protobuf") && !is_type(req, "application/x-protobuf")) {
        reply(req, 415, "Unsupported Media Type",
              "Content-Type must be application/json or application/protobuf\n");
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    const uint8_t *body = n ? evbuffer_pullup(in, (ev_ssize_t)n) : (const uint8_t *)"";
    if (json && n == 0) body = (const uint8_t *)"{}", n = 2;
    fn_buf out = FN_BUF_INIT;
    fn_error err = {0};
    fn_status st = fn_server_rank(s, body, n, json, 0, &out, &err);
    if (st != FN_OK) {
        char msg[FN_ERROR_MSG_MAX + 2];
        snprintf(msg, sizeof msg, "%s\n", err.msg);
        int code = st == FN_ERR_INVALID       ? HTTP_BADREQUEST
                   : st == FN_ERR_UNSUPPORTED ? HTTP_SERVUNAVAIL
                                              : HTTP_INTERNAL;
        if (code == HTTP_INTERNAL) fn_log_error("funneld: Rank: %s", err.msg);
        reply(req, code,
              code == HTTP_BADREQUEST    ? "Bad Request"
              : code == HTTP_SERVUNAVAIL ? "Service Unavailable"
                                         : "Internal Server Error",
              msg);
        fn_buf_free(&out);
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", json ? "application/json" : "application/protobuf");
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
    {"/healthz", EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "GET, HEAD", handle_healthz},
    {"/readyz", EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "GET, HEAD", handle_readyz},
};

static void on_request(struct evhttp_request *req, void *arg)
{
    fn_server *s = arg;
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
static fn_status bound_address(fn_server *s, evutil_socket_t fd, fn_error *err)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return fn_error_set(err, FN_ERR_IO, "reading the address of the HTTP listener: %s",
                            strerror(errno));
    char host[INET6_ADDRSTRLEN] = "?";
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        s->http_port = ntohs(a->sin6_port);
        snprintf(s->http_address, sizeof s->http_address, "[%s]:%u", host, s->http_port);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        s->http_port = ntohs(a->sin_port);
        snprintf(s->http_address, sizeof s->http_address, "%s:%u", host, s->http_port);
    }
    return FN_OK;
}

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
    evhttp_set_timeout(s->http, IDLE_TIMEOUT_S);
    evhttp_set_gencb(s->http, on_request, s);
    struct evhttp_bound_socket *sock =
        evhttp_bind_socket_with_handle(s->http, s->cfg.host, (uint16_t)s->cfg.http_port);
    if (!sock) {
        int e = EVUTIL_SOCKET_ERROR();
        return fn_error_set(err, FN_ERR_IO, "cannot listen for HTTP on %s port %d: %s", s->cfg.host,
                            s->cfg.http_port,
                            e ? evutil_socket_error_to_string(e) : "address not usable");
    }
    return bound_address(s, evhttp_bound_socket_get_fd(sock), err);
}

void fn_http_stop(fn_server *s)
{
    if (s->http) evhttp_free(s->http);
    s->http = NULL;
}
