/*
 * http_conn.c - the life of each HTTP/1.1 connection under evhttp (http.c): how many
 * may be open, how long a request may take to arrive, how long an idle keep-alive
 * connection stays. libevent 2.1's evhttp has none of this (its one timeout closes a
 * slow request's connection without a word), so we wrap every connection it accepts.
 *
 * evhttp_set_bevcb lets us make the bufferevent of each accepted connection. We hand
 * evhttp a filter bufferevent over a socket bufferevent (libevent 2.1.12 forwards the
 * fd calls evhttp makes to the socket underneath; fn_http_conn_start checks that and
 * leaves evhttp alone otherwise). The filter gives us what evhttp does not:
 *
 *   - its free callback (conn_free) tells us when evhttp let the connection go, so
 *     the count of open connections is exact;
 *   - its input filter (conn_input) sees the bytes arrive: the first byte of a request
 *     on an idle connection arms the read deadline (--read-timeout-s);
 *   - on_request in http.c calls fn_http_conn_request when a request arrived whole,
 *     which disarms it (the connection is found by its socket's fd, recorded at its
 *     first bytes); the reply's completion (evhttp's on-complete callback) arms the
 *     idle deadline (--idle-timeout-s) again.
 *
 * One timer per connection, by state: IDLE (no byte of a request yet; on expiry the
 * connection is closed without a word, as browsers expect of keep-alive), READING (on
 * expiry we write "408 Request Timeout" to the socket ourselves), BUSY (a request is
 * being answered; no timer of ours), REFUSED (over --max-connections; the timer fires
 * at once and writes "503 Service Unavailable"), CLOSING (we answered 408 or 503 and
 * shut our side; the client gets a moment to read it before the close, so that its
 * unread request bytes do not turn the close into a reset that loses our answer).
 * In REFUSED and CLOSING evhttp sees no more input and its output is dropped; the
 * close itself is an EOF event we raise on the filter, which evhttp handles as a
 * client that went away mid-request: it frees the connection without replying.
 *
 * Output: evhttp queues a reply while writing is disabled and then enables it, which
 * a 2.1 filter does not notice (the reply would sit there), and evhttp takes "written"
 * as leave to shut the socket, so it must mean "in the kernel". So we move output to
 * the socket bufferevent as evhttp adds it (on_output, no copy: evbuffer chains move)
 * and tell evhttp "written" when that buffer has drained to the socket (on_sent), as a
 * plain socket bufferevent would. Input moves the same way (evbuffer_add_buffer).
 *
 * evhttp's own timeout stays as a backstop above both deadlines (a reply the client
 * does not read). Everything here runs on the loop thread.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

#include "common/clock.h"
#include "common/log.h"
#include "server_impl.h"

/* How long a client may read our 408/503 before the close. */
#define LINGER_MS 2000
/* Refused connections lingering at once at most; beyond, they are closed at once. */
#define MAX_LINGERING_REFUSED 64
/* evhttp's own timeout, this far above our deadlines. */
#define BACKSTOP_S 5

typedef enum conn_state {
    CONN_IDLE,    /* waiting for the first byte of a request */
    CONN_READING, /* a request has started arriving */
    CONN_BUSY,    /* a request is being answered */
    CONN_REFUSED, /* over the limit: 503 due at once */
    CONN_CLOSING, /* answered by us (408 or 503), waiting to close */
} conn_state;

typedef struct http_conn http_conn;
struct http_conn {
    struct fn_http_conns *reg; /* NULL once the listener stopped */
    http_conn *prev, *next;
    struct bufferevent *bev;  /* the filter evhttp owns */
    struct bufferevent *sock; /* the socket bufferevent under it */
    struct evbuffer_cb_entry *out_cb, *sent_cb;
    struct event *timer;
    evutil_socket_t fd; /* -1 until its first bytes (then in reg->by_fd) */
    conn_state state;
    int refused;
};

struct fn_http_conns {
    fn_server *s;
    http_conn *conns; /* every live connection, to detach them at stop */
    int n_open;       /* connections accepted (not refused) and not freed yet */
    int n_refused_alive;
    http_conn **by_fd; /* the connection whose socket is fd, for fn_http_conn_request */
    size_t n_by_fd;
    struct timeval read_tv, idle_tv, linger_tv;
    uint64_t refused, timeouts;
    uint64_t last_refused_log_ns;
};

/* ---- per-connection state ----------------------------------------------- */

static void arm(http_conn *c, const struct timeval *tv)
{
    if (c->timer) evtimer_add(c->timer, tv);
}

static void disarm(http_conn *c)
{
    if (c->timer) evtimer_del(c->timer);
}

/* Records c under its socket's fd, known once evhttp set it (by the first bytes). */
static void register_fd(http_conn *c)
{
    struct fn_http_conns *r = c->reg;
    evutil_socket_t fd = bufferevent_getfd(c->sock);
    if (fd < 0) return;
    if ((size_t)fd >= r->n_by_fd) {
        size_t n = r->n_by_fd ? r->n_by_fd : 64;
        while (n <= (size_t)fd) n *= 2;
        http_conn **t = realloc(r->by_fd, n * sizeof *t);
        if (!t) {
            /* Without the entry on_request cannot find it: no deadlines for this one. */
            c->state = CONN_BUSY;
            disarm(c);
            return;
        }
        memset(t + r->n_by_fd, 0, (n - r->n_by_fd) * sizeof *t);
        r->by_fd = t;
        r->n_by_fd = n;
    }
    r->by_fd[fd] = c;
    c->fd = fd;
}

/*
 * Closes the connection through evhttp: an EOF on the filter is a client gone
 * mid-request (or between requests), which evhttp drops without a reply. Not
 * when evhttp let go of it already (callbacks cleared; conn_free follows).
 */
static void close_now(http_conn *c)
{
    bufferevent_event_cb eventcb = NULL;
    bufferevent_getcb(c->bev, NULL, NULL, &eventcb, NULL);
    if (eventcb) bufferevent_trigger_event(c->bev, BEV_EVENT_EOF | BEV_EVENT_READING, 0);
    /* c may be on its way out now: touch nothing. */
}

/*
 * Writes a whole short answer straight to the socket and shuts our side, then
 * lingers: nothing more reaches evhttp, and the close comes with the client's
 * EOF or after LINGER_MS. An answer that does not fit the socket buffer at once
 * is cut short; these are a few hundred bytes on a connection that sent us little.
 */
static void answer_and_close(http_conn *c, int code, const char *reason, const char *body,
                             int linger)
{
    char msg[512];
    int n = snprintf(msg, sizeof msg,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     code, reason, strlen(body), body);
    evutil_socket_t fd = bufferevent_getfd(c->sock);
    c->state = CONN_CLOSING;
    /* Something of evhttp's own still queued (a 100 Continue): ours would garble it. */
    if (fd >= 0 && evbuffer_get_length(bufferevent_get_output(c->sock)) == 0 && n > 0 &&
        (size_t)n < sizeof msg) {
        if (send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
            fn_log_debug("funneld: HTTP: writing %d to a client: %s", code, strerror(errno));
        shutdown(fd, SHUT_WR);
    }
    if (linger)
        arm(c, &c->reg->linger_tv);
    else
        close_now(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    http_conn *c = arg;
    struct fn_http_conns *r = c->reg;
    if (!r) return;
    switch (c->state) {
    case CONN_IDLE:
    case CONN_CLOSING:
        close_now(c);
        break;
    case CONN_READING: {
        char body[96];
        snprintf(body, sizeof body, "request not received completely within %d s\n",
                 r->s->cfg.read_timeout_s);
        r->timeouts++;
        fn_log_debug("funneld: HTTP: a request took over %d s to arrive: 408",
                     r->s->cfg.read_timeout_s);
        answer_and_close(c, 408, "Request Timeout", body, 1);
        break;
    }
    case CONN_REFUSED:
        answer_and_close(c, 503, "Service Unavailable", "too many connections\n",
                         r->n_refused_alive <= MAX_LINGERING_REFUSED);
        break;
    case CONN_BUSY:
        break;
    }
}

/* ---- the filter --------------------------------------------------------- */

/* Bytes from the socket on their way to evhttp: the first of a request arms the read deadline. */
static enum bufferevent_filter_result conn_input(struct evbuffer *src, struct evbuffer *dst,
                                                 ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                                 void *arg)
{
    (void)mode;
    http_conn *c = arg;
    size_t n = evbuffer_get_length(src);
    if (n == 0) return BEV_NEED_MORE;
    if (c->state == CONN_REFUSED || c->state == CONN_CLOSING) {
        evbuffer_drain(src, n); /* answered already: evhttp must not start on it */
        return BEV_NEED_MORE;
    }
    if (c->reg && c->fd < 0) register_fd(c);
    if (c->reg && c->state == CONN_IDLE) {
        c->state = CONN_READING;
        arm(c, &c->reg->read_tv);
    }
    if (limit >= 0 && (size_t)limit < n) {
        if (limit == 0) return BEV_NEED_MORE;
        evbuffer_remove_buffer(src, dst, (size_t)limit);
    } else {
        evbuffer_add_buffer(dst, src);
    }
    return BEV_OK;
}

/*
 * The filter's own output path, when it runs at all (on_output moved the data
 * first): the same move. NEED_MORE, so that "written" comes from on_sent only.
 */
static enum bufferevent_filter_result conn_output(struct evbuffer *src, struct evbuffer *dst,
                                                  ev_ssize_t limit,
                                                  enum bufferevent_flush_mode mode, void *arg)
{
    (void)limit, (void)mode;
    http_conn *c = arg;
    if (c->state == CONN_REFUSED || c->state == CONN_CLOSING)
        evbuffer_drain(src, evbuffer_get_length(src));
    else
        evbuffer_add_buffer(dst, src);
    return BEV_NEED_MORE;
}

/* "HTTP/1.x 100 " at the start of buf: evhttp's interim 100 Continue. */
static int is_continue(struct evbuffer *buf)
{
    char head[13];
    if (evbuffer_copyout(buf, head, sizeof head) != (ev_ssize_t)sizeof head) return 0;
    return memcmp(head, "HTTP/", 5) == 0 && memcmp(head + 8, " 100 ", 5) == 0;
}

/* evhttp added output: on to the socket at once (see the top of the file). */
static void on_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    http_conn *c = arg;
    size_t n = evbuffer_get_length(buf);
    if (!info->n_added || n == 0) return;
    if (c->state == CONN_REFUSED || c->state == CONN_CLOSING) {
        evbuffer_drain(buf, n);
        return;
    }
    /* Output before the request reached on_request, other than 100 Continue, is evhttp
     * refusing it itself (400, 413) before closing: our deadline stands down. */
    if ((c->state == CONN_READING || c->state == CONN_IDLE) && !is_continue(buf)) {
        c->state = CONN_BUSY;
        disarm(c);
    }
    evbuffer_add_buffer(bufferevent_get_output(c->sock), buf);
}

/* The socket took everything queued: evhttp may go on (and close, if the reply said so). */
static void on_sent(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    http_conn *c = arg;
    if (!info->n_deleted || evbuffer_get_length(buf) != 0) return;
    if (c->state == CONN_REFUSED || c->state == CONN_CLOSING) return;
    bufferevent_trigger(c->bev, EV_WRITE, BEV_TRIG_DEFER_CALLBACKS);
}

/* The filter's free callback: evhttp is done with the connection. */
static void conn_free(void *arg)
{
    http_conn *c = arg;
    if (c->sent_cb) evbuffer_remove_cb_entry(bufferevent_get_output(c->sock), c->sent_cb);
    if (c->out_cb) evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->out_cb);
    if (c->timer) event_free(c->timer);
    struct fn_http_conns *r = c->reg;
    if (r) {
        if (c->prev)
            c->prev->next = c->next;
        else
            r->conns = c->next;
        if (c->next) c->next->prev = c->prev;
        if (c->fd >= 0 && (size_t)c->fd < r->n_by_fd && r->by_fd[c->fd] == c)
            r->by_fd[c->fd] = NULL;
        if (c->refused)
            r->n_refused_alive--;
        else
            r->n_open--;
    }
    free(c);
}

/* ---- evhttp's hooks ----------------------------------------------------- */

/* evhttp accepted a connection and asks for its bufferevent. NULL: evhttp makes a plain one. */
static struct bufferevent *on_accept(struct event_base *base, void *arg)
{
    struct fn_http_conns *r = arg;
    http_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->fd = -1;
    c->timer = evtimer_new(base, on_timer, c);
    c->sock = c->timer ? bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE) : NULL;
    if (c->sock)
        c->bev = bufferevent_filter_new(c->sock, conn_input, conn_output, BEV_OPT_CLOSE_ON_FREE,
                                        conn_free, c);
    if (!c->bev) {
        if (c->sock) bufferevent_free(c->sock);
        if (c->timer) event_free(c->timer);
        free(c);
        return NULL;
    }
    /* From here on conn_free (deferred, by libevent) owns c. */
    c->out_cb = evbuffer_add_cb(bufferevent_get_output(c->bev), on_output, c);
    c->sent_cb = evbuffer_add_cb(bufferevent_get_output(c->sock), on_sent, c);
    if (!c->out_cb || !c->sent_cb) {
        bufferevent_free(c->bev);
        return NULL;
    }
    c->reg = r;
    c->next = r->conns;
    if (r->conns) r->conns->prev = c;
    r->conns = c;
    if (r->n_open >= r->s->cfg.max_connections) {
        c->refused = 1;
        c->state = CONN_REFUSED;
        r->n_refused_alive++;
        r->refused++;
        uint64_t now = fn_now_ns();
        /* One line a second at most: a client retrying in a loop must not flood the log. */
        if (r->last_refused_log_ns == 0 || now - r->last_refused_log_ns >= 1000000000ull) {
            r->last_refused_log_ns = now;
            fn_log_warn("funneld: HTTP: %d connections open (--max-connections); refused %" PRIu64
                        " so far",
                        r->n_open, r->refused);
        }
        /* At once, but after evhttp gave the socket to the bufferevent. */
        struct timeval now_tv = {0, 0};
        arm(c, &now_tv);
    } else {
        r->n_open++;
        c->state = CONN_IDLE;
        arm(c, &r->idle_tv);
    }
    return c->bev;
}

/* The reply went out whole: the connection is idle again (or has the next request started). */
static void on_reply_sent(struct evhttp_request *req, void *arg)
{
    (void)req;
    http_conn *c = arg;
    if (!c->reg || c->state != CONN_BUSY) return;
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
        c->state = CONN_READING; /* pipelined: already here, partly or whole */
        arm(c, &c->reg->read_tv);
    } else {
        c->state = CONN_IDLE;
        arm(c, &c->reg->idle_tv);
    }
}

void fn_http_conn_request(fn_server *s, struct evhttp_request *req)
{
    struct fn_http_conns *r = s->http_conns;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (!r || !evcon) return;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    struct bufferevent *sock = bev ? bufferevent_get_underlying(bev) : NULL;
    evutil_socket_t fd = sock ? bufferevent_getfd(sock) : -1;
    if (fd < 0 || (size_t)fd >= r->n_by_fd) return;
    http_conn *c = r->by_fd[fd];
    if (!c || c->bev != bev) return;
    if (c->state == CONN_IDLE || c->state == CONN_READING) {
        c->state = CONN_BUSY;
        disarm(c);
    }
    if (c->state == CONN_BUSY) evhttp_request_set_on_complete_cb(req, on_reply_sent, c);
}

/* ---- start, stop, numbers ----------------------------------------------- */

/* Whether this libevent's filter bufferevents pass bufferevent_setfd down (2.1.12 does). */
static int filter_forwards_fd(struct event_base *base)
{
    struct bufferevent *sock = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!sock) return 0;
    struct bufferevent *f =
        bufferevent_filter_new(sock, NULL, NULL, BEV_OPT_CLOSE_ON_FREE, NULL, NULL);
    if (!f) {
        bufferevent_free(sock);
        return 0;
    }
    int ok = bufferevent_setfd(f, -1) == 0;
    bufferevent_free(f);
    return ok;
}

fn_status fn_http_conn_start(fn_server *s, fn_error *err)
{
    const fn_server_config *cfg = &s->cfg;
    int longest =
        cfg->read_timeout_s > cfg->idle_timeout_s ? cfg->read_timeout_s : cfg->idle_timeout_s;
    if (!filter_forwards_fd(s->base)) {
        /* An old libevent: evhttp keeps its own idle timeout and no limit of ours. */
        fn_log_warn("funneld: HTTP: this libevent cannot wrap evhttp's connections; "
                    "no 408 for slow requests, --max-connections not applied to HTTP");
        evhttp_set_timeout(s->http, cfg->idle_timeout_s);
        return FN_OK;
    }
    struct fn_http_conns *r = calloc(1, sizeof *r);
    if (!r) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    r->s = s;
    /* libevent's common timeouts: every connection's timer with the same duration sits in
     * one queue, so arming and disarming them (twice a request) is O(1), not a heap update. */
    const struct timeval read_tv = {cfg->read_timeout_s, 0}, idle_tv = {cfg->idle_timeout_s, 0},
                         linger_tv = {LINGER_MS / 1000, (LINGER_MS % 1000) * 1000};
    const struct timeval *t;
    r->read_tv = (t = event_base_init_common_timeout(s->base, &read_tv)) ? *t : read_tv;
    r->idle_tv = (t = event_base_init_common_timeout(s->base, &idle_tv)) ? *t : idle_tv;
    r->linger_tv = (t = event_base_init_common_timeout(s->base, &linger_tv)) ? *t : linger_tv;
    s->http_conns = r;
    evhttp_set_bevcb(s->http, on_accept, r);
    /* Above both deadlines, so ours come first; it still ends a reply nobody reads. */
    evhttp_set_timeout(s->http, longest + BACKSTOP_S);
    return FN_OK;
}

void fn_http_conn_stop(fn_server *s)
{
    struct fn_http_conns *r = s->http_conns;
    if (!r) return;
    /* evhttp_free closed every connection; their free callbacks run when the event
     * base finalizes them, maybe after this: they must not find r or a timer. */
    for (http_conn *c = r->conns; c; c = c->next) {
        c->reg = NULL;
        if (c->timer) event_free(c->timer);
        c->timer = NULL;
    }
    free(r->by_fd);
    free(r);
    s->http_conns = NULL;
}

void fn_http_conn_read_stats(const fn_server *s, fn_http_conn_stats *out)
{
    const struct fn_http_conns *r = s->http_conns;
    memset(out, 0, sizeof *out);
    if (!r) return;
    out->open = r->n_open;
    out->refused = r->refused;
    out->timeouts = r->timeouts;
}
