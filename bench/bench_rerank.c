/*
 * bench_rerank.c - speed of the list-aware reranker on one request, the
 * funnel side of bench/rerank_speed.py (which times the same model in
 * PyTorch beside it).
 *
 *   bench_rerank --model MODEL [--items 100] [--runs 3000] [--device cpu|cuda] [--json]
 *
 * Loads the model (CPU: one thread), makes one list of --items random
 * feature rows and scores it --runs times with fn_reranker_score after a
 * warm-up: milliseconds per request at the median, the 99th percentile and
 * the mean.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "kernels/backend.h"
#include "rerank/rerank.h"

static int cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    fn_kernels_init(argv);
    const char *model = NULL, *device = "cpu";
    int items = 100, runs = 3000, json = 0;
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'}, {"items", required_argument, NULL, 'n'},
        {"runs", required_argument, NULL, 'r'},  {"device", required_argument, NULL, 'd'},
        {"json", no_argument, NULL, 'j'},        {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'm')
            model = optarg;
        else if (c == 'n')
            items = atoi(optarg);
        else if (c == 'r')
            runs = atoi(optarg);
        else if (c == 'd')
            device = optarg;
        else if (c == 'j')
            json = 1;
        else
            return 2;
    }
    if (!model || items < 1 || runs < 10) {
        fprintf(stderr, "usage: bench_rerank --model MODEL [--items N] [--runs N>=10] "
                        "[--device cpu|cuda] [--json]\n");
        return 2;
    }
    fn_error err = {0};
    fn_reranker *r;
    if (fn_reranker_load(model, device, 1, &r, &err) != FN_OK) {
        fprintf(stderr, "bench_rerank: %s\n", err.msg);
        return 1;
    }
    const uint32_t F = fn_reranker_features(r);
    float *x = malloc((size_t)items * F * sizeof *x), *s = malloc((size_t)items * sizeof *s);
    double *ms = malloc((size_t)runs * sizeof *ms);
    uint64_t st = 88172645463325252ull;
    for (size_t i = 0; i < (size_t)items * F; i++) {
        st ^= st << 13, st ^= st >> 7, st ^= st << 17;
        x[i] = (float)(st % 1000) / 1000.0f;
    }
    for (int i = 0; i < runs / 10 + 10; i++)
        if (fn_reranker_score(r, x, (size_t)items, s, &err) != FN_OK) {
            fprintf(stderr, "bench_rerank: %s\n", err.msg);
            return 1;
        }
    double sum = 0;
    for (int i = 0; i < runs; i++) {
        const uint64_t t0 = fn_now_ns();
        fn_reranker_score(r, x, (size_t)items, s, NULL);
        ms[i] = (double)(fn_now_ns() - t0) * 1e-6;
        sum += ms[i];
    }
    qsort(ms, (size_t)runs, sizeof *ms, cmp);
    const double p50 = ms[runs / 2], p99 = ms[(int)(runs * 0.99)], mean = sum / runs;
    const fn_rerank_options *o = fn_reranker_options(r);
    if (json)
        printf("{\"items\": %d, \"features\": %u, \"d_model\": %d, \"layers\": %d, \"device\": "
               "\"%s\", \"p50_ms\": %.5f, \"p99_ms\": %.5f, \"mean_ms\": %.5f}\n",
               items, F, o->d_model, o->n_layers, device, p50, p99, mean);
    else
        printf("%d items x %u features, d_model %d, %d layers, %s: p50 %.4f ms, p99 %.4f ms, "
               "mean %.4f ms\n",
               items, F, o->d_model, o->n_layers, device, p50, p99, mean);
    free(x);
    free(s);
    free(ms);
    fn_reranker_free(r);
    return 0;
}
