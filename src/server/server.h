/*
 * server.h - funneld, funnel's ranking server: one explicit context that owns
 * the event loop, the listeners and (later) the store, models and indexes.
 *
 * Startup reads top to bottom, each stage a call (see main.c): parse config
 * -> fn_server_new -> open store -> load models and indexes -> start
 * listeners -> fn_server_set_ready -> fn_server_run; fn_server_free shuts
 * down in reverse. Listeners: HTTP/1.1 (http.c) with /healthz and /readyz,
 * and gRPC over HTTP/2 cleartext (grpc.c), whose calls go through one
 * dispatcher (rpc.c); /metrics grows here.
 */
#ifndef FN_SERVER_H
#define FN_SERVER_H

#include <stdint.h>

#include "common/status.h"
#include "config.h"

typedef struct fn_server fn_server;

/*
 * Creates the context and its event loop, and arranges for SIGINT and
 * SIGTERM to stop the loop. cfg is copied; its strings must outlive the
 * server.
 */
fn_status fn_server_new(const fn_server_config *cfg, fn_server **out, fn_error *err);

/*
 * Opens the feature store named by --store, if any. The store module is not
 * wired in yet: a given folder is reported and left alone.
 */
fn_status fn_server_open_store(fn_server *s, fn_error *err);

/*
 * Loads the ranking pipeline --config names (nothing without one): store, spec,
 * CTR model, recall tables. An error names the part that failed.
 */
fn_status fn_server_load_pipeline(fn_server *s, fn_error *err);

/*
 * Starts the worker threads that run RPCs (cfg->workers, 0: one per online
 * CPU) and their queue (cfg->queue). Without them RPCs are refused as busy.
 */
fn_status fn_server_start_workers(fn_server *s, fn_error *err);

/* Binds the HTTP/1.1 listener to cfg->host:cfg->http_port. */
fn_status fn_server_start_http(fn_server *s, fn_error *err);

/* The bound HTTP address as "host:port" ("[::1]:8080" for IPv6), and its port. */
const char *fn_server_http_address(const fn_server *s);
uint16_t fn_server_http_port(const fn_server *s);

/*
 * Binds the gRPC listener (HTTP/2 cleartext with prior knowledge, unary
 * calls) to cfg->host:cfg->grpc_port.
 */
fn_status fn_server_start_grpc(fn_server *s, fn_error *err);

/* The bound gRPC address as "host:port", and its port. */
const char *fn_server_grpc_address(const fn_server *s);
uint16_t fn_server_grpc_port(const fn_server *s);

/* From now on /readyz answers 200: every startup stage is done. */
void fn_server_set_ready(fn_server *s);

/* Runs the event loop until a signal or fn_server_stop. */
fn_status fn_server_run(fn_server *s, fn_error *err);

/* Makes fn_server_run return after the current callback. */
void fn_server_stop(fn_server *s);

/* Closes listeners and connections, then everything else, in reverse order of startup. */
void fn_server_free(fn_server *s);

#endif
