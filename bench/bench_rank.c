/*
 * bench_rank.c - speed of funnel's CTR models, the funnel side of
 * bench/ctr_speed.py (which times the same DeepFM in PyTorch beside it).
 *
 *   bench_rank [--fields 24] [--shared 8] [--features 100000] [--runs N] [--json]
 *
 * Synthetic libffm-like data: every example has one triple per field, the
 * first --shared fields standing for the user and context (the same for all
 * candidates of a request), the rest for the item. For each model kind:
 *   - training: examples/s over one epoch of 50,000 examples with 1 and 2 threads;
 *   - inference: one request scored with fn_model_score for 1, 100, 1,000 and
 *     10,000 candidates on one thread: milliseconds per request (median) and
 *     candidates per second.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "kernels/backend.h"
#include "rank/rank.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* n examples, one triple per field, indices spread over each field's share of the space. */
static fn_dataset *synthetic(size_t n, uint32_t fields, uint64_t features)
{
    fn_dataset *d = calloc(1, sizeof *d);
    d->n = n;
    d->n_fields = fields;
    d->n_features = features;
    d->labels = malloc(n * sizeof *d->labels);
    d->offsets = malloc((n + 1) * sizeof *d->offsets);
    d->triples = malloc(n * fields * sizeof *d->triples);
    uint64_t per = features / fields;
    for (size_t i = 0; i < n; i++) {
        d->offsets[i] = i * fields;
        uint64_t sig = 0;
        for (uint32_t f = 0; f < fields; f++) {
            uint32_t idx = (uint32_t)(f * per + next() % (per / 8 + 1));
            d->triples[i * fields + f] = (fn_feature_triple){f, idx, 1.0f};
            sig += idx % 7;
        }
        d->labels[i] = (float)(sig % 3 == 0);
    }
    d->offsets[n] = n * fields;
    return d;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    fn_kernels_init(argv);
    int fields = 24, shared = 8, runs = 0, json = 0, c;
    uint64_t features = 100000;
    static const struct option opts[] = {
        {"fields", required_argument, NULL, 'f'},   {"shared", required_argument, NULL, 's'},
        {"features", required_argument, NULL, 'n'}, {"runs", required_argument, NULL, 'r'},
        {"json", no_argument, NULL, 'j'},           {NULL, 0, NULL, 0}};
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            fields = atoi(optarg);
            break;
        case 's':
            shared = atoi(optarg);
            break;
        case 'n':
            features = strtoull(optarg, NULL, 10);
            break;
        case 'r':
            runs = atoi(optarg);
            break;
        case 'j':
            json = 1;
            break;
        default:
            fprintf(stderr, "usage: see the comment at the top of bench_rank.c\n");
            return 2;
        }
    }
    if (fields < 2 || shared < 0 || shared >= fields || features < (uint64_t)fields * 16) {
        fprintf(stderr, "bench_rank: need 0 <= shared < fields and enough features\n");
        return 2;
    }
    fn_dataset *train = synthetic(50000, (uint32_t)fields, features);
    static const size_t sizes[] = {1, 100, 1000, 10000};
    fn_feature_triple *cand = malloc(10000 * (size_t)(fields - shared) * sizeof *cand);
    size_t *off = malloc(10001 * sizeof *off);
    float *out = malloc(10000 * sizeof *out);
    fn_dataset *pool = synthetic(10000, (uint32_t)fields, features);
    for (size_t i = 0; i < 10000; i++) {
        off[i] = i * (size_t)(fields - shared);
        memcpy(cand + off[i], pool->triples + i * (size_t)fields + shared,
               (size_t)(fields - shared) * sizeof *cand);
    }
    off[10000] = 10000 * (size_t)(fields - shared);
    if (json) printf("{\"fields\": %d, \"shared\": %d, \"models\": [", fields, shared);
    for (int kind = FN_MODEL_FM; kind <= FN_MODEL_DEEPFM; kind++) {
        double eps[2] = {0, 0};
        fn_model *m = NULL;
        for (int t = 1; t <= 2; t++) {
            fn_train_options o = fn_train_options_default((fn_model_kind)kind);
            o.epochs = 1;
            o.threads = t;
            /* The peer is PyTorch's DeepFM with SparseAdam and Adam: the same steps. */
            o.sparse_opt = FN_SPARSE_ADAM;
            fn_error err = {0};
            fn_train_report rep;
            fn_model *mm;
            if (fn_model_train(&o, train, NULL, NULL, &mm, &rep, &err) != FN_OK) {
                fprintf(stderr, "bench_rank: %s: %s\n", fn_model_kind_name(kind), err.msg);
                return 1;
            }
            eps[t - 1] = rep.examples_per_s;
            if (t == 1) {
                m = mm;
            } else {
                fn_model_free(mm);
            }
        }
        if (json)
            printf("%s{\"model\": \"%s\", \"train_examples_per_s\": [%.0f, %.0f], \"score\": [",
                   kind ? ", " : "", fn_model_kind_name(kind), eps[0], eps[1]);
        else
            printf("%s: training %.0f examples/s (1 thread), %.0f (2 threads)\n",
                   fn_model_kind_name(kind), eps[0], eps[1]);
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            size_t n = sizes[s];
            fn_score_request req = {pool->triples, (size_t)shared, cand, off, n};
            int r = runs ? runs : n >= 10000 ? 50 : n >= 1000 ? 300 : 2000;
            double *ms = malloc((size_t)r * sizeof *ms);
            fn_error err = {0};
            for (int w = 0; w < 5; w++) fn_model_score(m, &req, out, &err);
            for (int i = 0; i < r; i++) {
                uint64_t t0 = fn_now_ns();
                if (fn_model_score(m, &req, out, &err) != FN_OK) {
                    fprintf(stderr, "bench_rank: score: %s\n", err.msg);
                    return 1;
                }
                ms[i] = (double)(fn_now_ns() - t0) / 1e6;
            }
            qsort(ms, (size_t)r, sizeof *ms, cmp);
            double p50 = ms[r / 2];
            if (json)
                printf("%s{\"candidates\": %zu, \"p50_ms\": %.4f, \"candidates_per_s\": %.0f}",
                       s ? ", " : "", n, p50, (double)n / (p50 / 1e3));
            else
                printf("  %5zu candidates: %.4f ms per request, %.0f candidates/s\n", n, p50,
                       (double)n / (p50 / 1e3));
            free(ms);
        }
        if (json) printf("]}");
        fn_model_free(m);
    }
    if (json) printf("]}\n");
    fn_dataset_free(train);
    fn_dataset_free(pool);
    free(cand), free(off), free(out);
    return 0;
}
