/*
 * metrics.c - funneld's counters and histograms, served by GET /metrics in
 * Prometheus' text exposition format (version 0.0.4).
 *
 * Everything is a fixed array of C11 atomics indexed by small enums (the
 * transport, the method, the status code, the pipeline stage), so a worker
 * thread records a request without a lock or an allocation, and the set of
 * series is bounded whatever clients send. Histogram buckets are kept
 * non-cumulative and summed when rendered; sums are kept in integer units
 * (nanoseconds, candidates) because C11 has no atomic add for doubles.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "funnel/v1/funnel.pb-c.h"
#include "pipeline.h"
#include "server_impl.h"

/* Seconds, from a cache hit to a call that has certainly missed its deadline. */
static const double duration_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                         0.05,   0.1,   0.25,   0.5,   1.0,  2.5};
#define N_DURATION (sizeof duration_bounds / sizeof duration_bounds[0])
/* Candidates per stage: a page (10) up to a large recall (thousands). */
static const double candidate_bounds[] = {1, 5, 10, 25, 50, 100, 200, 300, 500, 1000, 2000, 5000};
#define N_CANDIDATE (sizeof candidate_bounds / sizeof candidate_bounds[0])
#define N_BUCKETS   13 /* the bounds above, plus +Inf */

static const char *const transport_names[FN_N_TRANSPORTS] = {"http", "grpc"};
static const char *const method_names[FN_N_METHODS] = {"Rank", "Suggest", "Encode", "Check",
                                                       "unknown"};
/* The stages fn_pipeline_rank reports, in order; any other name counts as "other". */
static const char *const stage_names[] = {"recall", "rank", "rerank", "page", "other"};
#define N_STAGES (sizeof stage_names / sizeof stage_names[0])

static const char *const grpc_code_names[] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};
#define N_GRPC_CODES (sizeof grpc_code_names / sizeof grpc_code_names[0])
#define N_HTTP_CODES 600

typedef struct histogram {
    atomic_uint_fast64_t buckets[N_BUCKETS];
    atomic_uint_fast64_t count;
    atomic_uint_fast64_t sum; /* in the unit's integer scale (ns, candidates) */
} histogram;

struct fn_metrics {
    atomic_uint_fast64_t requests[FN_N_TRANSPORTS][FN_N_METHODS];
    atomic_uint_fast64_t http_errors[N_HTTP_CODES];
    atomic_uint_fast64_t grpc_errors[N_GRPC_CODES];
    histogram duration[FN_N_METHODS];
    histogram stage_duration[N_STAGES];
    histogram stage_candidates[N_STAGES];
};

fn_metrics *fn_metrics_new(void)
{
    fn_metrics *m = malloc(sizeof *m);
    if (!m) return NULL;
    /* atomic_init for each counter: calloc's zeros are not guaranteed to be a valid atomic. */
    atomic_uint_fast64_t *all = (atomic_uint_fast64_t *)m;
    for (size_t i = 0; i < sizeof *m / sizeof *all; i++) atomic_init(&all[i], 0);
    return m;
}

void fn_metrics_free(fn_metrics *m)
{
    free(m);
}

fn_method fn_method_of(const char *path)
{
    const char *slash = path ? strrchr(path, '/') : NULL;
    const char *name = slash ? slash + 1 : "";
    if (path && strncmp(path, "/funnel.v1.Ranking/", 19) == 0) {
        for (int i = 0; i < FN_METHOD_CHECK; i++)
            if (strcmp(name, method_names[i]) == 0) return (fn_method)i;
    } else if (path && strcmp(path, "/grpc.health.v1.Health/Check") == 0) {
        return FN_METHOD_CHECK;
    }
    return FN_METHOD_UNKNOWN;
}

static void observe(histogram *h, const double *bounds, size_t n_bounds, double value,
                    uint64_t scaled)
{
    size_t b = 0;
    while (b < n_bounds && value > bounds[b]) b++;
    atomic_fetch_add_explicit(&h->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, scaled, memory_order_relaxed);
}

void fn_metrics_request(fn_metrics *m, fn_transport t, fn_method method, int code, uint64_t nanos)
{
    if (!m || t < 0 || t >= FN_N_TRANSPORTS || method < 0 || method >= FN_N_METHODS) return;
    atomic_fetch_add_explicit(&m->requests[t][method], 1, memory_order_relaxed);
    if (t == FN_TRANSPORT_HTTP && code != 200 && code >= 0 && code < N_HTTP_CODES)
        atomic_fetch_add_explicit(&m->http_errors[code], 1, memory_order_relaxed);
    if (t == FN_TRANSPORT_GRPC && code > 0 && (size_t)code < N_GRPC_CODES)
        atomic_fetch_add_explicit(&m->grpc_errors[code], 1, memory_order_relaxed);
    /* Divided, not multiplied by 1e-9: 1 ms must land exactly on the 0.001 bound. */
    observe(&m->duration[method], duration_bounds, N_DURATION, (double)nanos / 1e9, nanos);
}

void fn_metrics_rank_response(fn_metrics *m, const Funnel__V1__RankResponse *resp)
{
    if (!m || !resp) return;
    for (size_t i = 0; i < resp->n_timings; i++) {
        const Funnel__V1__StageTiming *t = resp->timings[i];
        size_t k = 0;
        while (k + 1 < N_STAGES && !(t->stage && strcmp(t->stage, stage_names[k]) == 0)) k++;
        double seconds = t->millis > 0 ? t->millis / 1e3 : 0;
        observe(&m->stage_duration[k], duration_bounds, N_DURATION, seconds,
                (uint64_t)(seconds * 1e9));
        observe(&m->stage_candidates[k], candidate_bounds, N_CANDIDATE, t->candidates,
                t->candidates);
    }
}

static uint64_t load(atomic_uint_fast64_t *a)
{
    return atomic_load_explicit(a, memory_order_relaxed);
}

/* One histogram's _bucket, _sum and _count lines; labels is "" or `name="value",`. */
static void render_histogram(fn_buf *out, const char *name, const char *labels, histogram *h,
                             const double *bounds, size_t n_bounds, double sum_scale)
{
    uint64_t cumulative = 0;
    for (size_t b = 0; b <= n_bounds; b++) {
        cumulative += load(&h->buckets[b]);
        if (b < n_bounds)
            fn_buf_printf(out, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels, bounds[b],
                          (unsigned long long)cumulative);
        else
            fn_buf_printf(out, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels,
                          (unsigned long long)cumulative);
    }
    /* The count is read after the buckets: a scrape racing a request may see it one ahead. */
    size_t len = strlen(labels);
    char bare[128];
    snprintf(bare, sizeof bare, "%.*s", len ? (int)len - 1 : 0, labels); /* without the comma */
    fn_buf_printf(out, "%s_sum%s%s%s %.9g\n", name, len ? "{" : "", bare, len ? "}" : "",
                  (double)load(&h->sum) * sum_scale);
    fn_buf_printf(out, "%s_count%s%s%s %llu\n", name, len ? "{" : "", bare, len ? "}" : "",
                  (unsigned long long)cumulative);
}

/* One histogram family: its HELP and TYPE lines, then a histogram per label value. */
static void render_family(fn_buf *out, const char *name, const char *help, const char *label,
                          const char *const *values, histogram *h, size_t n, const double *bounds,
                          size_t n_bounds, double sum_scale)
{
    fn_buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (size_t k = 0; k < n; k++) {
        char labels[96];
        snprintf(labels, sizeof labels, "%s=\"%s\",", label, values[k]);
        render_histogram(out, name, labels, &h[k], bounds, n_bounds, sum_scale);
    }
}

/* A label value as the exposition format quotes it: backslash, quote and newline escaped. */
static void label_value(fn_buf *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fn_buf_putc(out, '\\'), fn_buf_putc(out, *v);
        else if (*v == '\n')
            fn_buf_puts(out, "\\n");
        else
            fn_buf_putc(out, *v);
    }
}

void fn_metrics_render(fn_server *s, fn_buf *out)
{
    fn_metrics *m = s->metrics;
    if (m) {
        fn_buf_puts(out, "# HELP funnel_requests_total RPCs answered, by transport and method.\n"
                         "# TYPE funnel_requests_total counter\n");
        for (int t = 0; t < FN_N_TRANSPORTS; t++)
            for (int k = 0; k < FN_N_METHODS; k++)
                fn_buf_printf(out, "funnel_requests_total{transport=\"%s\",method=\"%s\"} %llu\n",
                              transport_names[t], method_names[k],
                              (unsigned long long)load(&m->requests[t][k]));
        fn_buf_puts(out, "# HELP funnel_request_errors_total RPCs answered with an error, by "
                         "transport and code (HTTP status or gRPC status name).\n"
                         "# TYPE funnel_request_errors_total counter\n");
        for (int c = 0; c < N_HTTP_CODES; c++) {
            uint64_t v = load(&m->http_errors[c]);
            if (v)
                fn_buf_printf(out,
                              "funnel_request_errors_total{transport=\"http\",code=\"%d\"} %llu\n",
                              c, (unsigned long long)v);
        }
        for (size_t c = 1; c < N_GRPC_CODES; c++) {
            uint64_t v = load(&m->grpc_errors[c]);
            if (v)
                fn_buf_printf(out,
                              "funnel_request_errors_total{transport=\"grpc\",code=\"%s\"} %llu\n",
                              grpc_code_names[c], (unsigned long long)v);
        }
        render_family(out, "funnel_request_duration_seconds",
                      "Time from a request's arrival to its answer, queueing included.", "method",
                      method_names, m->duration, FN_N_METHODS, duration_bounds, N_DURATION, 1e-9);
        render_family(out, "funnel_stage_duration_seconds",
                      "Time spent in each pipeline stage of Rank calls.", "stage", stage_names,
                      m->stage_duration, N_STAGES, duration_bounds, N_DURATION, 1e-9);
        render_family(out, "funnel_stage_candidates",
                      "Candidates each pipeline stage of Rank calls produced.", "stage",
                      stage_names, m->stage_candidates, N_STAGES, candidate_bounds, N_CANDIDATE,
                      1.0);
    }
    fn_buf_printf(out,
                  "# HELP funnel_queue_depth Calls waiting for a worker thread.\n"
                  "# TYPE funnel_queue_depth gauge\n"
                  "funnel_queue_depth %zu\n"
                  "# HELP funnel_workers Worker threads running calls.\n"
                  "# TYPE funnel_workers gauge\n"
                  "funnel_workers %d\n"
                  "# HELP funnel_ready 1 while the server is ready to serve (as /readyz).\n"
                  "# TYPE funnel_ready gauge\n"
                  "funnel_ready %d\n",
                  fn_workers_queued(s), fn_workers_threads(s), s->ready ? 1 : 0);
    fn_http_conn_stats hc;
    fn_http_conn_read_stats(s, &hc);
    fn_buf_printf(out,
                  "# HELP funnel_http_connections_open HTTP/1.1 connections open.\n"
                  "# TYPE funnel_http_connections_open gauge\n"
                  "funnel_http_connections_open %d\n"
                  "# HELP funnel_http_connections_refused_total HTTP/1.1 connections refused "
                  "(503) for --max-connections.\n"
                  "# TYPE funnel_http_connections_refused_total counter\n"
                  "funnel_http_connections_refused_total %llu\n"
                  "# HELP funnel_http_request_timeouts_total HTTP/1.1 requests not received "
                  "whole within --read-timeout-s (408).\n"
                  "# TYPE funnel_http_request_timeouts_total counter\n"
                  "funnel_http_request_timeouts_total %llu\n",
                  hc.open, (unsigned long long)hc.refused, (unsigned long long)hc.timeouts);
    int grpc_open = 0;
    uint64_t grpc_refused = 0;
    fn_grpc_conn_stats(s, &grpc_open, &grpc_refused);
    fn_buf_printf(out,
                  "# HELP funnel_grpc_connections_open gRPC (HTTP/2) connections open.\n"
                  "# TYPE funnel_grpc_connections_open gauge\n"
                  "funnel_grpc_connections_open %d\n"
                  "# HELP funnel_grpc_connections_refused_total gRPC connections closed at "
                  "accept for --max-connections.\n"
                  "# TYPE funnel_grpc_connections_refused_total counter\n"
                  "funnel_grpc_connections_refused_total %llu\n",
                  grpc_open, (unsigned long long)grpc_refused);
    fn_buf_puts(out, "# HELP funnel_model_info The models the serving pipeline loaded.\n"
                     "# TYPE funnel_model_info gauge\n");
    struct fn_pipeline *p = fn_server_pipeline_acquire(s);
    if (p) {
        const char *const *names, *const *versions;
        size_t n = fn_pipeline_versions(p, &names, &versions);
        for (size_t i = 0; i < n; i++) {
            fn_buf_puts(out, "funnel_model_info{name=\"");
            label_value(out, names[i] ? names[i] : "");
            fn_buf_puts(out, "\",version=\"");
            label_value(out, versions[i] ? versions[i] : "");
            fn_buf_puts(out, "\"} 1\n");
        }
        fn_pipeline_unref(p);
    }
}
