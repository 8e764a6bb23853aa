/*
 * bench_encoder.c - in-process timing of funnel's text encoder, the funnel
 * side of bench/encoder_cpu.py (which runs ONNX Runtime beside it).
 *
 *   bench_encoder --model DIR [--device cpu|cuda] [--precision bf16|f16|f32] [--threads N]
 *                 --batch B --tokens T
 *                 [--runs R] [--json]
 *
 * Each text is made of T - 2 single-token words, so every sequence is exactly
 * T tokens with [CLS] and [SEP]. After warm-up runs, R timed calls of B texts;
 * prints sentences/s, p50/p99 latency per call and the achieved GFLOP/s of
 * the forward pass (matrix products and attention, counted from the config).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "kernels/backend.h"
#include "llm/encoder.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    fn_kernels_init(argv);
    const char *model = NULL, *device = "cpu", *precision = NULL;
    int threads = 0, batch = 32, tokens = 32, runs = 50, json = 0, c;
    static const struct option opts[] = {{"model", required_argument, NULL, 'm'},
                                         {"device", required_argument, NULL, 'd'},
                                         {"precision", required_argument, NULL, 'p'},
                                         {"threads", required_argument, NULL, 't'},
                                         {"batch", required_argument, NULL, 'b'},
                                         {"tokens", required_argument, NULL, 'n'},
                                         {"runs", required_argument, NULL, 'r'},
                                         {"json", no_argument, NULL, 'j'},
                                         {NULL, 0, NULL, 0}};
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            model = optarg;
            break;
        case 'd':
            device = optarg;
            break;
        case 'p':
            precision = optarg;
            break;
        case 't':
            threads = atoi(optarg);
            break;
        case 'b':
            batch = atoi(optarg);
            break;
        case 'n':
            tokens = atoi(optarg);
            break;
        case 'r':
            runs = atoi(optarg);
            break;
        case 'j':
            json = 1;
            break;
        default:
            fprintf(stderr, "usage: see the comment at the top of bench_encoder.c\n");
            return 2;
        }
    }
    if (!model || batch < 1 || tokens < 3 || runs < 1) {
        fprintf(stderr, "bench_encoder: --model, --batch >= 1, --tokens >= 3 are required\n");
        return 2;
    }
    fn_encoder_options o = {
        .device = device, .precision = precision, .threads = threads, .max_batch = (size_t)batch};
    fn_error err = {0};
    fn_encoder *e;
    if (fn_encoder_load(model, &o, &e, &err) != FN_OK) {
        fprintf(stderr, "bench_encoder: %s\n", err.msg);
        return 1;
    }
    static const char *words[] = {"the", "cat", "sat",   "on",   "a",   "mat",  "and", "dog",
                                  "ran", "to",  "house", "with", "red", "door", "in",  "city"};
    char **texts = calloc((size_t)batch, sizeof *texts);
    for (int i = 0; i < batch; i++) {
        texts[i] = calloc((size_t)tokens * 8, 1);
        for (int w = 0; w < tokens - 2; w++) {
            strcat(texts[i], w ? " " : "");
            strcat(texts[i], words[(w * 7 + i) % 16]);
        }
    }
    size_t dim = fn_encoder_dim(e);
    float *out = malloc((size_t)batch * dim * sizeof *out);
    double *ms = malloc((size_t)runs * sizeof *ms);
    for (int w = 0; w < 3; w++)
        if (fn_encoder_encode(e, (const char *const *)texts, NULL, (size_t)batch, out, &err)) {
            fprintf(stderr, "bench_encoder: %s\n", err.msg);
            return 1;
        }
    uint64_t t0 = fn_now_ns();
    for (int r = 0; r < runs; r++) {
        uint64_t a = fn_now_ns();
        fn_encoder_encode(e, (const char *const *)texts, NULL, (size_t)batch, out, &err);
        ms[r] = (double)(fn_now_ns() - a) / 1e6;
    }
    double total = (double)(fn_now_ns() - t0) / 1e9;
    qsort(ms, (size_t)runs, sizeof *ms, cmp_double);
    /* all-MiniLM-L6-v2 shapes: per token 2*(4 H^2 + 2 H I) per layer, attention 4 T H. */
    double h = (double)dim, in = 4 * h, t = tokens, layers = 6;
    double flops = (double)batch * t * layers * (2 * (4 * h * h + 2 * h * in) + 4 * t * h);
    double sps = (double)batch * runs / total;
    double gflops = flops * runs / total / 1e9;
    double p50 = ms[runs / 2], p99 = ms[(runs * 99) / 100 < runs ? (runs * 99) / 100 : runs - 1];
    if (json) {
        printf("{\"device\": \"%s\", \"batch\": %d, \"tokens\": %d, \"runs\": %d, "
               "\"sentences_per_s\": %.1f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"gflops\": %.2f}\n",
               fn_encoder_device_name(e), batch, tokens, runs, sps, p50, p99, gflops);
    } else {
        printf("%s: batch %d x %d tokens: %.1f sentences/s, p50 %.3f ms, p99 %.3f ms, %.2f "
               "GFLOP/s\n",
               fn_encoder_device_name(e), batch, tokens, sps, p50, p99, gflops);
    }
    for (int i = 0; i < batch; i++) free(texts[i]);
    free(texts), free(out), free(ms);
    fn_encoder_free(e);
    return 0;
}
