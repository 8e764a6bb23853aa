/*
 * main.c - funneld: reads its settings, then brings the server up in a
 * visible order (context and loop, store, models, listeners, worker threads),
 * marks it ready, runs the loop until SIGINT/SIGTERM and shuts down in
 * reverse. Exit codes: 0 after a clean shutdown, 1 on a failure, 2 on bad
 * usage.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "config.h"
#include "pipeline.h"
#include "server.h"

static int fail(const char *stage, const fn_error *err)
{
    fn_log_error("funneld: %s: %s", stage, err->msg[0] ? err->msg : fn_status_name(err->code));
    return 1;
}

int main(int argc, char **argv)
{
    fn_server_config cfg;
    fn_server_action action;
    fn_error err = {0};
    if (fn_server_config_parse(argc, argv, &cfg, &action, &err) != FN_OK) {
        fprintf(stderr, "funneld: %s\nRun 'funneld --help' for usage.\n", err.msg);
        return 2;
    }
    if (action == FN_SERVER_HELP) {
        fn_server_config_usage(stdout);
        return 0;
    }
    if (action == FN_SERVER_VERSION) {
        printf("funneld %s\n", FUNNEL_VERSION);
        return 0;
    }
    if (action == FN_SERVER_CHECK) {
        fn_pipeline *p;
        if (fn_pipeline_load(cfg.config_path, &p, &err) != FN_OK) return fail("checking", &err);
        printf("funneld: %s is usable: %s\n", cfg.config_path, fn_pipeline_summary(p));
        fn_pipeline_unref(p);
        return 0;
    }

    /* A client that hangs up mid-reply must cost a write error, not the process. */
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, NULL);

    fn_server *srv;
    if (fn_server_new(&cfg, &srv, &err) != FN_OK) return fail("starting", &err);
    int rc = 0;
    if (fn_server_open_store(srv, &err) != FN_OK) {
        rc = fail("opening the feature store", &err);
        goto done;
    }
    if (fn_server_load_pipeline(srv, &err) != FN_OK) {
        rc = fail("loading the pipeline", &err);
        goto done;
    }
    if (fn_server_start_http(srv, &err) != FN_OK) {
        rc = fail("starting the HTTP listener", &err);
        goto done;
    }
    if (fn_server_start_grpc(srv, &err) != FN_OK) {
        rc = fail("starting the gRPC listener", &err);
        goto done;
    }
    if (fn_server_start_workers(srv, &err) != FN_OK) {
        rc = fail("starting the worker threads", &err);
        goto done;
    }
    fn_server_set_ready(srv);
    fn_log_info("funneld %s: HTTP/1.1 listening on %s (GET /healthz, /readyz, /metrics)",
                FUNNEL_VERSION, fn_server_http_address(srv));
    fn_log_info("funneld %s: gRPC listening on %s (h2c)", FUNNEL_VERSION,
                fn_server_grpc_address(srv));
    /* On stdout too, for scripts that started us with --http-port 0 or --grpc-port 0. */
    printf("funneld listening on http://%s\n", fn_server_http_address(srv));
    printf("funneld gRPC listening on %s\n", fn_server_grpc_address(srv));
    fflush(stdout);
    if (fn_server_run(srv, &err) != FN_OK) {
        rc = fail("running", &err);
        goto done;
    }
    fn_log_info("funneld: stopped");
done:
    fn_server_free(srv);
    return rc;
}
