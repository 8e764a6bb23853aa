/*
 * server_impl.h - the server context's fields, shared by server.c (lifecycle,
 * signals), http.c and http_conn.c (the HTTP/1.1 listener and its connections),
 * grpc.c and the rest. Nothing outside src/server includes it.
 */
#ifndef FN_SERVER_IMPL_H
#define FN_SERVER_IMPL_H

#include <pthread.h>

#include <event2/event.h>
#include <event2/http.h>

#include "common/buf.h"
#include "server.h"

struct fn_server {
    fn_server_config cfg;
    struct event_base *base;
    struct event *sigint, *sigterm;
    /* HTTP/1.1 */
    struct evhttp *http;
    struct fn_http_conns *http_conns; /* its connections: count, deadlines (http_conn.c) */
    char http_address[80];            /* "host:port" as bound */
    uint16_t http_port;
    struct evhttp_bound_socket *http_sock; /* the listening socket, closed at a drain */
    /* Set once startup is complete; cleared when shutdown begins. */
    int ready;
    /* SIGTERM/SIGINT: no new calls, the ones under way answered, then the loop stops (at
     * drain_deadline_ns at the latest; a second signal stops at once). */
    int draining;
    struct event *drain_timer;
    uint64_t drain_deadline_ns;
    /* The ranking pipeline (--config), NULL without one; requests take a reference with
     * fn_server_pipeline_acquire, a reload swaps it under pipeline_lock. */
    struct fn_pipeline *pipeline;
    pthread_mutex_t pipeline_lock;
    struct event *sighup;
    /* gRPC over HTTP/2 cleartext (grpc.c) */
    struct fn_grpc *grpc;
    char grpc_address[80]; /* "host:port" as bound */
    uint16_t grpc_port;
    /* The threads RPCs run on (workers.c) and the counters /metrics shows (metrics.c). */
    struct fn_workers *workers;
    struct fn_metrics *metrics;
};

/* "host:port" ("[v6]:port") of a listening socket into address, its port into *port. */
fn_status fn_server_bound_address(evutil_socket_t fd, char *address, size_t cap, uint16_t *port,
                                  fn_error *err);

/* Starts the HTTP/1.1 listener (http.c). */
fn_status fn_http_start(fn_server *s, fn_error *err);
/* Closes the listener and every open connection. Safe when not started. */
void fn_http_stop(fn_server *s);
/* Closes the listening socket only: open connections go on (a drain). Safe when not started. */
void fn_http_stop_accepting(fn_server *s);

/* ---- HTTP/1.1 connections (http_conn.c) ------------------------------------ */

/*
 * Wraps every connection s->http accepts: at most cfg.max_connections open (a
 * further one is answered 503 and closed), a request must arrive whole within
 * cfg.read_timeout_s of its first byte (else 408 and close), an idle keep-alive
 * connection is closed silently after cfg.idle_timeout_s. Call after evhttp_new,
 * before binding. An old libevent that cannot wrap them keeps evhttp's own idle
 * timeout (logged); that is not an error.
 */
fn_status fn_http_conn_start(fn_server *s, fn_error *err);
/* A request arrived whole (on_request, before answering): its read deadline ends. */
void fn_http_conn_request(fn_server *s, struct evhttp_request *req);
/* Forgets the connections; call after evhttp_free. Safe when not started. */
void fn_http_conn_stop(fn_server *s);

typedef struct fn_http_conn_stats {
    int open;          /* connections open now (refused ones not counted) */
    uint64_t refused;  /* connections answered 503 for --max-connections */
    uint64_t timeouts; /* requests answered 408 for --read-timeout-s */
} fn_http_conn_stats;
/* The numbers /metrics shows (loop thread). Zeros when not started. */
void fn_http_conn_read_stats(const fn_server *s, fn_http_conn_stats *out);

/* Starts the gRPC listener (grpc.c) on cfg->host:cfg->grpc_port. */
fn_status fn_grpc_start(fn_server *s, fn_error *err);
/* Closes the gRPC listener and every open HTTP/2 connection. Safe when not started. */
void fn_grpc_stop(fn_server *s);
/* Stops accepting gRPC connections; open ones go on (a drain). Safe when not started. */
void fn_grpc_stop_accepting(fn_server *s);
/* gRPC connections open now and refused so far for --max-connections (loop thread; zeros
 * when not started), for /metrics. */
void fn_grpc_conn_stats(const fn_server *s, int *open, uint64_t *refused);

/* gRPC status codes, as on the wire in grpc-status (grpc's doc/statuscodes.md). */
typedef enum fn_grpc_code {
    FN_GRPC_OK = 0,
    FN_GRPC_CANCELLED = 1,
    FN_GRPC_UNKNOWN = 2,
    FN_GRPC_INVALID_ARGUMENT = 3,
    FN_GRPC_DEADLINE_EXCEEDED = 4,
    FN_GRPC_NOT_FOUND = 5,
    FN_GRPC_ALREADY_EXISTS = 6,
    FN_GRPC_PERMISSION_DENIED = 7,
    FN_GRPC_RESOURCE_EXHAUSTED = 8,
    FN_GRPC_FAILED_PRECONDITION = 9,
    FN_GRPC_ABORTED = 10,
    FN_GRPC_OUT_OF_RANGE = 11,
    FN_GRPC_UNIMPLEMENTED = 12,
    FN_GRPC_INTERNAL = 13,
    FN_GRPC_UNAVAILABLE = 14,
    FN_GRPC_DATA_LOSS = 15,
    FN_GRPC_UNAUTHENTICATED = 16,
} fn_grpc_code;

/*
 * One RPC's answer, filled by fn_server_dispatch: the serialized response
 * message in body (only read when status is FN_GRPC_OK) and otherwise a
 * human message. The caller initialises body with FN_BUF_INIT and frees it.
 */
typedef struct fn_rpc_reply {
    fn_buf body;
    int status; /* an fn_grpc_code */
    char message[512];
} fn_rpc_reply;

/*
 * Runs the RPC named by path ("/package.Service/Method") on the serialized
 * request req[0..n) and fills reply. Transport-neutral: the gRPC listener
 * calls it in the event-loop thread, and so can the HTTP/1.1 RPC endpoints.
 * deadline_ns is an absolute CLOCK_MONOTONIC time (fn_now_ns), 0 for none.
 */
void fn_server_dispatch(fn_server *s, const char *path, const uint8_t *req, size_t n,
                        int64_t deadline_ns, fn_rpc_reply *reply);

/* A reference to the current pipeline (NULL without one); fn_pipeline_unref it. */
struct fn_pipeline *fn_server_pipeline_acquire(fn_server *s);

/*
 * Rank (rank_rpc.c): body is a RankRequest in protobuf or (json) proto3 JSON; the
 * response is appended to out in the same encoding. FN_ERR_INVALID: bad input (400 /
 * INVALID_ARGUMENT); FN_ERR_UNSUPPORTED: no pipeline configured.
 */
fn_status fn_server_rank(fn_server *s, const uint8_t *body, size_t n, int json, int64_t deadline_ns,
                         fn_buf *out, fn_error *err);
/* Encode, the same way: texts to their embeddings with the pipeline's encoder. */
fn_status fn_server_encode(fn_server *s, const uint8_t *body, size_t n, int json,
                           int64_t deadline_ns, fn_buf *out, fn_error *err);

/* ---- worker pool (workers.c) ---------------------------------------------- */

/*
 * One call handed from the event-loop thread to a worker: run() on a worker
 * thread, then done() on the loop thread, which alone may touch transport
 * objects (requests, streams, connections). At shutdown a job not started
 * yet gets done() without run(), with cancelled set. A transport embeds it
 * as the first member of its own job, which owns copies of what run() reads.
 */
typedef struct fn_job fn_job;
struct fn_job {
    fn_job *next;
    void (*run)(fn_server *s, fn_job *job);
    void (*done)(fn_server *s, fn_job *job);
    int cancelled;
};

typedef struct fn_workers fn_workers;

/* Starts cfg.workers threads (0: one per online CPU) behind a queue of cfg.queue jobs. */
fn_status fn_workers_start(fn_server *s, fn_error *err);
/*
 * Queues job (loop thread only). -1 when the queue is full or the pool is not
 * running: the job was not taken and the caller answers "server busy";
 * FN_WORKERS_DRAINING when the server is draining for shutdown: the caller
 * answers "server shutting down".
 */
#define FN_WORKERS_DRAINING (-2)
int fn_workers_submit(fn_server *s, fn_job *job);
/* No call queued, running or waiting to be answered (loop thread). */
int fn_workers_idle(fn_server *s);
/* Jobs waiting for a worker, and the number of worker threads (0 without a pool). */
size_t fn_workers_queued(fn_server *s);
int fn_workers_threads(const fn_server *s);
/*
 * Cancels queued jobs, waits for running ones, joins the threads and runs
 * every pending done() on the caller (the loop thread, with the loop
 * stopped). Call before the transports close. Safe when not started.
 */
void fn_workers_stop(fn_server *s);

/* ---- metrics (metrics.c) -------------------------------------------------- */

typedef enum fn_transport { FN_TRANSPORT_HTTP, FN_TRANSPORT_GRPC, FN_N_TRANSPORTS } fn_transport;
typedef enum fn_method {
    FN_METHOD_RANK,
    FN_METHOD_SUGGEST,
    FN_METHOD_ENCODE,
    FN_METHOD_CHECK,
    FN_METHOD_UNKNOWN,
    FN_N_METHODS
} fn_method;

typedef struct fn_metrics fn_metrics;
struct Funnel__V1__RankResponse;

fn_metrics *fn_metrics_new(void);
void fn_metrics_free(fn_metrics *m);
/* The method a path ("/funnel.v1.Ranking/Rank") names; FN_METHOD_UNKNOWN for others. */
fn_method fn_method_of(const char *path);
/*
 * One answered request (any thread; m may be NULL): code is the HTTP status
 * (200 is success) or the gRPC status (0 is success); nanos from its arrival.
 */
void fn_metrics_request(fn_metrics *m, fn_transport t, fn_method method, int code, uint64_t nanos);
/* The per-stage timings and candidate counts of one Rank response (any thread). */
void fn_metrics_rank_response(fn_metrics *m, const struct Funnel__V1__RankResponse *resp);
/* Appends the Prometheus text exposition (format 0.0.4) of s's metrics to out. */
void fn_metrics_render(fn_server *s, fn_buf *out);

#endif
