/*
 * config.c - funneld's settings as one declarative table. Parsing, defaults,
 * bounds checks and --help all read the table, so a new setting is one row
 * (plus its field in fn_server_config) and cannot be half documented.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef enum setting_type {
    SETTING_STRING,
    SETTING_INT,
} setting_type;

typedef struct setting {
    const char *name; /* the flag, without "--" */
    const char *arg;  /* the value's name in --help */
    setting_type type;
    long min, max;   /* SETTING_INT bounds */
    const char *def; /* default as text; NULL: unset */
    size_t offset;   /* field in fn_server_config */
    const char *help;
} setting;

static const setting settings[] = {
    {"host", "ADDR", SETTING_STRING, 0, 0, "127.0.0.1", offsetof(fn_server_config, host),
     "address to listen on (a name or an IPv4/IPv6 address)"},
    {"http-port", "PORT", SETTING_INT, 0, 65535, "8080", offsetof(fn_server_config, http_port),
     "HTTP/1.1 port for /healthz and /readyz; 0 picks a free port (printed at startup)"},
    {"config", "FILE", SETTING_STRING, 0, 0, NULL, offsetof(fn_server_config, config_path),
     "the pipeline's JSON configuration (configs/demo.json); without it only the health "
     "endpoints answer"},
    {"store", "DIR", SETTING_STRING, 0, 0, NULL, offsetof(fn_server_config, store_dir),
     "feature store folder (accepted; the pipeline opens the one its --config names)"},
    {"grpc-port", "PORT", SETTING_INT, 0, 65535, "50051", offsetof(fn_server_config, grpc_port),
     "gRPC port (HTTP/2 cleartext, prior knowledge); 0 picks a free port (printed at startup)"},
    {"max-message-bytes", "N", SETTING_INT, 64, 1 << 30, "4194304",
     offsetof(fn_server_config, max_message_bytes),
     "largest gRPC request message; a bigger one fails with RESOURCE_EXHAUSTED"},
    {"max-connections", "N", SETTING_INT, 1, 100000, "1024",
     offsetof(fn_server_config, max_connections),
     "connections open at once on each listener (HTTP and gRPC counted apart); a further "
     "HTTP one is answered 503 \"too many connections\" and closed, a gRPC one closed"},
    {"read-timeout-s", "N", SETTING_INT, 1, 3600, "10", offsetof(fn_server_config, read_timeout_s),
     "seconds an HTTP request may take to arrive whole from its first byte; a slower one is "
     "answered 408 and its connection closed"},
    {"idle-timeout-s", "N", SETTING_INT, 1, 3600, "30", offsetof(fn_server_config, idle_timeout_s),
     "seconds an HTTP connection may wait for its next request before it is closed (no "
     "reply)"},
    {"drain-s", "N", SETTING_INT, 0, 3600, "10", offsetof(fn_server_config, drain_s),
     "at SIGTERM or SIGINT: seconds to answer the calls under way (new connections are "
     "refused, new calls answered \"server shutting down\") before stopping; a second signal "
     "stops at once; 0: stop at once"},
    {"workers", "N", SETTING_INT, 0, 1024, "0", offsetof(fn_server_config, workers),
     "threads that run Rank calls, so the event loop keeps serving meanwhile; 0: one per "
     "online CPU"},
    {"queue", "N", SETTING_INT, 1, 1 << 20, "1024", offsetof(fn_server_config, queue),
     "calls waiting for a worker at most; beyond it a call is refused at once (HTTP 503, "
     "gRPC RESOURCE_EXHAUSTED \"server busy\")"},
};
#define N_SETTINGS (sizeof settings / sizeof settings[0])

/* getopt values: settings are OPT_SETTING + their row. */
enum { OPT_SETTING = 256, OPT_HELP = 1000, OPT_VERSION, OPT_CHECK };

static fn_status set_value(const setting *s, const char *text, fn_server_config *cfg, fn_error *err)
{
    char *field = (char *)cfg + s->offset;
    if (s->type == SETTING_STRING) {
        if (text && !*text)
            return fn_error_set(err, FN_ERR_INVALID, "--%s must not be empty", s->name);
        memcpy(field, &text, sizeof text);
        return FN_OK;
    }
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (!*text || *end || errno || v < s->min || v > s->max)
        return fn_error_set(err, FN_ERR_INVALID,
                            "--%s expects a whole number from %ld to %ld, got '%s'", s->name,
                            s->min, s->max, text);
    int iv = (int)v;
    memcpy(field, &iv, sizeof iv);
    return FN_OK;
}

fn_status fn_server_config_parse(int argc, char **argv, fn_server_config *cfg,
                                 fn_server_action *action, fn_error *err)
{
    struct option opts[N_SETTINGS + 4];
    memset(cfg, 0, sizeof *cfg);
    *action = FN_SERVER_RUN;
    for (size_t i = 0; i < N_SETTINGS; i++) {
        opts[i] = (struct option){settings[i].name, required_argument, NULL, OPT_SETTING + (int)i};
        if (settings[i].def) {
            fn_status st = set_value(&settings[i], settings[i].def, cfg, err);
            if (st != FN_OK) return st;
        }
    }
    opts[N_SETTINGS] = (struct option){"help", no_argument, NULL, OPT_HELP};
    opts[N_SETTINGS + 1] = (struct option){"version", no_argument, NULL, OPT_VERSION};
    opts[N_SETTINGS + 2] = (struct option){"check", no_argument, NULL, OPT_CHECK};
    opts[N_SETTINGS + 3] = (struct option){NULL, 0, NULL, 0};

    optind = 1;
    opterr = 0; /* our own messages name the flag */
    int c;
    /* The leading ':' makes a missing value ':' rather than '?'. */
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (c >= OPT_SETTING && (size_t)(c - OPT_SETTING) < N_SETTINGS) {
            fn_status st = set_value(&settings[c - OPT_SETTING], optarg, cfg, err);
            if (st != FN_OK) return st;
        } else if (c == 'h' || c == OPT_HELP) {
            *action = FN_SERVER_HELP;
            return FN_OK;
        } else if (c == OPT_VERSION) {
            *action = FN_SERVER_VERSION;
            return FN_OK;
        } else if (c == OPT_CHECK) {
            *action = FN_SERVER_CHECK;
        } else if (c == ':') {
            return fn_error_set(err, FN_ERR_INVALID, "%s needs a value", argv[optind - 1]);
        } else {
            return fn_error_set(err, FN_ERR_INVALID, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return fn_error_set(err, FN_ERR_INVALID, "unexpected argument '%s'", argv[optind]);
    if (*action == FN_SERVER_CHECK && !cfg->config_path)
        return fn_error_set(err, FN_ERR_INVALID, "--check needs --config FILE");
    return FN_OK;
}

void fn_server_config_usage(FILE *out)
{
    fprintf(out, "usage: funneld [options]\n\n"
                 "funnel's ranking server. With --config it serves the ranking pipeline over\n"
                 "HTTP/1.1: POST /funnel.v1.Ranking/Rank (also /twirp/funnel.v1.Ranking/Rank)\n"
                 "with an application/json (proto3 JSON) or application/protobuf RankRequest\n"
                 "(X-Request-Timeout-Ms: the call's budget), and over gRPC (HTTP/2 cleartext):\n"
                 "funnel.v1.Ranking/Rank (grpc-timeout honoured), grpc.health.v1.Health/Check.\n"
                 "Always GET /healthz (200 while the process serves), GET /readyz (200 once\n"
                 "started, 503 before) and GET /metrics (Prometheus text format). SIGHUP or\n"
                 "POST /admin/reload reloads the configuration and what it names (a failed\n"
                 "reload keeps the running pipeline). SIGINT or SIGTERM stops it cleanly.\n"
                 "\noptions:\n");
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const setting *s = &settings[i];
        char flag[64];
        snprintf(flag, sizeof flag, "--%s %s", s->name, s->arg);
        fprintf(out, "  %-20s %s", flag, s->help);
        if (s->def) fprintf(out, " (default %s)", s->def);
        fputc('\n', out);
    }
    fprintf(out, "  %-20s %s\n  %-20s %s\n  %-20s %s\n", "--check",
            "load everything --config names, report it and exit (0: it would serve)", "--help",
            "print this help", "--version", "print the version");
}
