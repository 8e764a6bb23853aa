/*
 * server_impl.h - the server context's fields, shared by server.c (lifecycle,
 * signals) and http.c (the HTTP/1.1 listener). Nothing outside src/server
 * includes it.
 */
#ifndef FN_SERVER_IMPL_H
#define FN_SERVER_IMPL_H

#include <event2/event.h>
#include <event2/http.h>

#include "server.h"

struct fn_server {
    fn_server_config cfg;
    struct event_base *base;
    struct event *sigint, *sigterm;
    /* HTTP/1.1 */
    struct evhttp *http;
    char http_address[80]; /* "host:port" as bound */
    uint16_t http_port;
    /* Set once startup is complete; cleared when shutdown begins. */
    int ready;
};

/* Starts the HTTP/1.1 listener (http.c). */
fn_status fn_http_start(fn_server *s, fn_error *err);
/* Closes the listener and every open connection. Safe when not started. */
void fn_http_stop(fn_server *s);

#endif
