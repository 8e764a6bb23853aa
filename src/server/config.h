/*
 * config.h - funneld's settings. Every setting is one row of a table in
 * config.c (name, type, bounds, default, help), from which the command-line
 * parser, the defaults, the validation and --help all come.
 */
#ifndef FN_SERVER_CONFIG_H
#define FN_SERVER_CONFIG_H

#include <stdio.h>

#include "common/status.h"

typedef struct fn_server_config {
    const char *host;        /* address to listen on */
    int http_port;           /* 0: the kernel picks a free port */
    const char *store_dir;   /* feature store folder, NULL when not given */
    const char *config_path; /* the pipeline's JSON configuration, NULL when not given */
    int grpc_port;           /* gRPC (HTTP/2 cleartext); 0: the kernel picks a free port */
    int max_message_bytes;   /* largest gRPC request message accepted */
    int max_connections;     /* open connections at once per listener; more are refused */
    int read_timeout_s;      /* an HTTP request's first byte to its last at most */
    int idle_timeout_s;      /* an HTTP connection without a request under way at most */
    int workers;             /* threads that run RPCs; 0: one per online CPU */
    int queue;               /* RPCs waiting for a worker at most; more are refused as busy */
    int drain_s;             /* SIGTERM: seconds to answer the calls under way; 0: stop at once */
} fn_server_config;

typedef enum fn_server_action {
    FN_SERVER_RUN = 0,
    FN_SERVER_HELP,
    FN_SERVER_VERSION,
    FN_SERVER_CHECK, /* load the configuration, report, exit */
} fn_server_action;

/*
 * Fills cfg from the defaults and argv (strings point into argv or are
 * static). A bad flag or value is FN_ERR_INVALID with a message naming it.
 */
fn_status fn_server_config_parse(int argc, char **argv, fn_server_config *cfg,
                                 fn_server_action *action, fn_error *err);

/* Prints the usage text, one line per setting of the table. */
void fn_server_config_usage(FILE *out);

#endif
