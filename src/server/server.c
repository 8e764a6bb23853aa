/*
 * server.c - the server context's lifecycle: event loop, signal handling,
 * startup stages and shutdown in reverse order.
 *
 * SIGINT and SIGTERM go through libevent's signal events, so the handler
 * runs as an ordinary callback inside the loop (no async-signal-safety
 * concerns) and only asks the loop to exit; fn_server_free then closes the
 * listeners and connections.
 */
#include "server_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/thread.h>

#include "common/clock.h"
#include "common/log.h"
#include "pipeline.h"

/* libevent's own warnings ("getaddrinfo: ...") go through funnel's log, not raw to stderr. */
static void on_libevent_log(int severity, const char *msg)
{
    fn_log_level level = severity >= EVENT_LOG_ERR    ? FN_LOG_ERROR
                         : severity >= EVENT_LOG_WARN ? FN_LOG_WARN
                         : severity >= EVENT_LOG_MSG  ? FN_LOG_INFO
                                                      : FN_LOG_DEBUG;
    fn_log(level, "libevent: %s", msg);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    fn_server *s = arg;
    const char *name = sig == SIGINT ? "SIGINT" : "SIGTERM";
    if (s->draining) {
        fn_log_info("funneld: %s received again, stopping now", name);
        event_base_loopbreak(s->base);
        return;
    }
    fn_log_info("funneld: %s received, shutting down", name);
    fn_server_stop(s);
}

/* Time for the answers just handed to the sockets to go out before the loop ends. */
#define FLUSH_US 100000

/* While draining: stop once no call is queued, running or unanswered, or at the deadline. */
static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    fn_server *s = arg;
    const int idle = fn_workers_idle(s);
    if (!idle && fn_now_ns() < s->drain_deadline_ns) return;
    if (idle)
        fn_log_info("funneld: every call under way was answered");
    else
        fn_log_warn("funneld: --drain-s %d passed with calls still under way: stopping",
                    s->cfg.drain_s);
    event_del(s->drain_timer);
    struct timeval flush = {0, FLUSH_US};
    event_base_loopexit(s->base, &flush);
}

/*
 * SIGHUP: reload the configuration and everything it names. A configuration
 * that fails to load is logged and the running pipeline stays.
 */
static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig, (void)what;
    fn_server *s = arg;
    fn_error err = {0};
    fn_log_info("funneld: SIGHUP received, reloading %s",
                s->cfg.config_path ? s->cfg.config_path : "(no --config)");
    if (fn_server_load_pipeline(s, &err) != FN_OK)
        fn_log_error("funneld: reload failed, still serving the previous pipeline: %s", err.msg);
}

/* Worker threads wake the loop with event_active: the base needs libevent's locking. */
static int evthread_status = -1;
static void use_pthreads(void)
{
    evthread_status = evthread_use_pthreads();
}

fn_status fn_server_new(const fn_server_config *cfg, fn_server **out, fn_error *err)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, use_pthreads);
    if (evthread_status != 0)
        return fn_error_set(err, FN_ERR_INTERNAL, "enabling libevent's thread support failed");
    event_set_log_callback(on_libevent_log);
    fn_server *s = calloc(1, sizeof *s);
    if (!s) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    s->cfg = *cfg;
    pthread_mutex_init(&s->pipeline_lock, NULL);
    s->base = event_base_new();
    s->metrics = fn_metrics_new();
    if (!s->base || !s->metrics) {
        if (s->base) event_base_free(s->base);
        fn_metrics_free(s->metrics);
        free(s);
        return fn_error_set(err, FN_ERR_INTERNAL, "creating the event loop (libevent) failed");
    }
    s->sigint = evsignal_new(s->base, SIGINT, on_signal, s);
    s->sigterm = evsignal_new(s->base, SIGTERM, on_signal, s);
    s->sighup = evsignal_new(s->base, SIGHUP, on_sighup, s);
    s->drain_timer = event_new(s->base, -1, EV_PERSIST, on_drain_tick, s);
    if (!s->sigint || !s->sigterm || !s->sighup || event_add(s->sigint, NULL) != 0 ||
        event_add(s->sigterm, NULL) != 0 || event_add(s->sighup, NULL) != 0) {
        fn_server_free(s);
        return fn_error_set(err, FN_ERR_INTERNAL,
                            "installing SIGINT/SIGTERM/SIGHUP handlers failed");
    }
    *out = s;
    return FN_OK;
}

fn_status fn_server_open_store(fn_server *s, fn_error *err)
{
    (void)err;
    if (s->cfg.store_dir)
        fn_log_warn("funneld: --store %s: the feature store is not wired into funneld yet; "
                    "serving without it",
                    s->cfg.store_dir);
    return FN_OK;
}

fn_status fn_server_start_workers(fn_server *s, fn_error *err)
{
    return fn_workers_start(s, err);
}

fn_status fn_server_bound_address(evutil_socket_t fd, char *address, size_t cap, uint16_t *port,
                                  fn_error *err)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return fn_error_set(err, FN_ERR_IO, "reading a listener's address: %s", strerror(errno));
    char host[INET6_ADDRSTRLEN] = "?";
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        *port = ntohs(a->sin6_port);
        snprintf(address, cap, "[%s]:%u", host, *port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        *port = ntohs(a->sin_port);
        snprintf(address, cap, "%s:%u", host, *port);
    }
    return FN_OK;
}

fn_status fn_server_start_http(fn_server *s, fn_error *err)
{
    return fn_http_start(s, err);
}

const char *fn_server_http_address(const fn_server *s)
{
    return s->http_address;
}

uint16_t fn_server_http_port(const fn_server *s)
{
    return s->http_port;
}

void fn_server_set_ready(fn_server *s)
{
    s->ready = 1;
}

fn_status fn_server_run(fn_server *s, fn_error *err)
{
    if (event_base_dispatch(s->base) < 0)
        return fn_error_set(err, FN_ERR_INTERNAL, "the event loop failed");
    return FN_OK;
}

/*
 * A drain: /readyz says "not ready" (a load balancer stops sending), the listening sockets
 * close (new connections are refused at once and go elsewhere), calls arriving on open
 * connections are answered "server shutting down" with the connection closed after, and
 * the calls under way are answered before the loop ends, for --drain-s at most.
 */
void fn_server_stop(fn_server *s)
{
    if (s->draining) return;
    s->ready = 0;
    s->draining = 1;
    fn_http_stop_accepting(s);
    fn_grpc_stop_accepting(s);
    s->drain_deadline_ns = fn_now_ns() + (uint64_t)s->cfg.drain_s * 1000000000ull;
    struct timeval tick = {0, 5000};
    if (s->cfg.drain_s > 0 && s->drain_timer && event_add(s->drain_timer, &tick) == 0) return;
    event_base_loopexit(s->base, NULL);
}

void fn_server_free(fn_server *s)
{
    if (!s) return;
    /* Calls in flight are answered (or cancelled) while their connections still exist. */
    fn_workers_stop(s);
    fn_grpc_stop(s);
    fn_http_stop(s);
    /* The pipeline (store, models, tables) closes after the listeners. */
    fn_pipeline_unref(s->pipeline);
    if (s->sighup) event_free(s->sighup);
    if (s->sigterm) event_free(s->sigterm);
    if (s->sigint) event_free(s->sigint);
    if (s->drain_timer) event_free(s->drain_timer);
    if (s->base) event_base_free(s->base);
    pthread_mutex_destroy(&s->pipeline_lock);
    fn_metrics_free(s->metrics);
    free(s);
}
