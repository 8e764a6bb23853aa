/*
 * bench_ann_overhead.c - funnel's per-query overhead over raw FAISS: the same
 * index file searched one query at a time on one thread, through FAISS's C
 * API directly (faiss_read_index_fname + faiss_Index_search on
 * pre-normalised queries, the parameter set once) and through funnel's
 * fn_ann_load + fn_ann_search (which copies and normalises the query, applies
 * the per-request parameter, takes the index lock, checks tombstones), both
 * linked against the same AVX2 libfaiss in this one process.
 *
 *   bench_ann_overhead --index FILE --queries Q.fvecs [--ground-truth GT.ivecs]
 *                      [-k 10] [--ef N | --nprobe N] [--rounds 3] [--aa]
 *
 * The queries go in blocks of 50, each block searched by one side then the
 * other (alternating which first), --rounds times; per query and side the
 * fastest round counts (other load on the machine only adds time). --aa
 * replaces funnel's side by a second raw FAISS copy of the file: the noise
 * floor of the comparison. Prints one JSON object:
 * {"faiss_qps", "funnel_qps", "faiss_us", "funnel_us", "overhead_pct" (from
 * the per-query minima), "mean_faiss_us", "mean_funnel_us",
 * "mean_overhead_pct" (all rounds),
 *  "faiss_recall", "funnel_recall", "same_results"} (the recalls when
 * --ground-truth is given; same_results: share of queries with identical ids).
 * bench/ann.py runs it (--overhead-bench).
 */
#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/index_io_c.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "recall/recall.h"

static void die(const char *what)
{
    fprintf(stderr, "bench_ann_overhead: %s\n", what);
    exit(1);
}

static void check(fn_status st, const fn_error *err)
{
    if (st != FN_OK) die(err->msg);
}

static double recall_of(const int64_t *res, const int32_t *gt, size_t gdim, size_t nq, size_t k)
{
    size_t hits = 0;
    for (size_t i = 0; i < nq; i++)
        for (size_t j = 0; j < k; j++)
            for (size_t r = 0; r < k; r++)
                if (res[i * k + r] == gt[i * gdim + j]) {
                    hits++;
                    break;
                }
    return (double)hits / (double)(nq * k);
}

int main(int argc, char **argv)
{
    const char *index = NULL, *queries = NULL, *gtpath = NULL;
    int k = 10, ef = 0, nprobe = 0, rounds = 3, aa = 0;
    static const struct option opts[] = {{"index", required_argument, NULL, 'i'},
                                         {"queries", required_argument, NULL, 'q'},
                                         {"ground-truth", required_argument, NULL, 'g'},
                                         {"ef", required_argument, NULL, 'e'},
                                         {"nprobe", required_argument, NULL, 'n'},
                                         {"rounds", required_argument, NULL, 'r'},
                                         {"aa", no_argument, NULL, 'a'},
                                         {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "k:", opts, NULL)) != -1) {
        switch (c) {
        case 'i':
            index = optarg;
            break;
        case 'q':
            queries = optarg;
            break;
        case 'g':
            gtpath = optarg;
            break;
        case 'e':
            ef = atoi(optarg);
            break;
        case 'n':
            nprobe = atoi(optarg);
            break;
        case 'r':
            rounds = atoi(optarg);
            break;
        case 'k':
            k = atoi(optarg);
            break;
        case 'a':
            aa = 1;
            break;
        default:
            die("usage: bench_ann_overhead --index FILE --queries Q.fvecs "
                "[--ground-truth GT.ivecs] [-k K] [--ef N | --nprobe N] [--rounds R] [--aa]");
        }
    }
    if (!index || !queries || k < 1 || rounds < 1) die("--index and --queries are required");

    fn_error err = {0};
    fn_ann *ann = NULL;
    check(fn_ann_load(index, 0, &ann, &err), &err);
    size_t nq, dim;
    float *q;
    check(fn_vecs_read_fvecs(queries, &nq, &dim, &q, &err), &err);
    if (dim != fn_ann_dim(ann)) die("query dimension differs from the index's");
    int32_t *gt = NULL;
    size_t gn = 0, gdim = 0;
    if (gtpath) {
        check(fn_vecs_read_ivecs(gtpath, &gn, &gdim, &gt, &err), &err);
        if (gn < nq || gdim < (size_t)k) die("ground truth too small");
    }
    fn_ann_params p = {ef, nprobe};

    /* Raw FAISS: the same file (FAISS stops before funnel's trailer), queries normalised once. */
    FaissIndex *raw = NULL;
    if (faiss_read_index_fname(index, 0, &raw)) die(faiss_get_last_error());
    FaissParameterSpace *ps = NULL;
    if (faiss_ParameterSpace_new(&ps)) die(faiss_get_last_error());
    if (ef && faiss_ParameterSpace_set_index_parameter(ps, raw, "efSearch", ef))
        die(faiss_get_last_error());
    if (nprobe && faiss_ParameterSpace_set_index_parameter(ps, raw, "nprobe", nprobe))
        die(faiss_get_last_error());
    /* --aa: the "funnel" side is a second raw copy of the file (an A/A run: the noise floor,
     * and what two copies of an index in one process cost each other). */
    FaissIndex *raw2 = NULL;
    if (aa) {
        if (faiss_read_index_fname(index, 0, &raw2)) die(faiss_get_last_error());
        if (ef && faiss_ParameterSpace_set_index_parameter(ps, raw2, "efSearch", ef))
            die(faiss_get_last_error());
        if (nprobe && faiss_ParameterSpace_set_index_parameter(ps, raw2, "nprobe", nprobe))
            die(faiss_get_last_error());
    }
    float *qn = malloc(nq * dim * sizeof *qn);
    float *dist = malloc((size_t)k * sizeof *dist);
    int64_t *res_raw = malloc(nq * (size_t)k * sizeof *res_raw);
    int64_t *res_fn = malloc(nq * (size_t)k * sizeof *res_fn);
    if (!qn || !dist || !res_raw || !res_fn) die("out of memory");
    for (size_t i = 0; i < nq; i++) {
        double s = 0;
        for (size_t j = 0; j < dim; j++) s += (double)q[i * dim + j] * q[i * dim + j];
        float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0.f;
        for (size_t j = 0; j < dim; j++) qn[i * dim + j] = q[i * dim + j] * inv;
    }

    check(fn_ann_set_threads(1, &err), &err); /* FAISS's OpenMP: one thread, both sides */
    size_t warm = nq < 50 ? nq : 50;
    for (size_t i = 0; i < warm; i++) {
        if (faiss_Index_search(raw, 1, qn + i * dim, k, dist, (idx_t *)res_raw))
            die(faiss_get_last_error());
        check(fn_ann_search(ann, 1, q + i * dim, (size_t)k, &p, res_fn, NULL, &err), &err);
    }
    /* Blocks of BLOCK queries, each searched by one side and then by the other, the order
     * alternating with the block and the round (so that drifting load elsewhere on the machine
     * falls on both sides alike, while each side's own copy of the index stays in cache
     * through a block), --rounds times; per query and side the fastest round counts (other
     * load only ever adds time). */
    enum { BLOCK = 50 };
    uint64_t *min_raw = malloc(nq * sizeof *min_raw), *min_fn = malloc(nq * sizeof *min_fn);
    if (!min_raw || !min_fn) die("out of memory");
    for (size_t i = 0; i < nq; i++) min_raw[i] = min_fn[i] = UINT64_MAX;
    uint64_t t_raw = 0, t_fn = 0;
    for (int r = 0; r < rounds; r++) {
        for (size_t b0 = 0; b0 < nq; b0 += BLOCK) {
            size_t b1 = b0 + BLOCK < nq ? b0 + BLOCK : nq;
            for (int side = 0; side < 2; side++) {
                int fn_side = side ^ (int)((b0 / BLOCK) & 1) ^ (r & 1);
                for (size_t i = b0; i < b1; i++) {
                    uint64_t t0 = fn_now_ns(), dt;
                    if (fn_side && !aa) {
                        check(fn_ann_search(ann, 1, q + i * dim, (size_t)k, &p, res_fn + i * k,
                                            NULL, &err),
                              &err);
                    } else if (fn_side) {
                        if (faiss_Index_search(raw2, 1, qn + i * dim, k, dist,
                                               (idx_t *)res_fn + i * k))
                            die(faiss_get_last_error());
                    } else {
                        if (faiss_Index_search(raw, 1, qn + i * dim, k, dist,
                                               (idx_t *)res_raw + i * k))
                            die(faiss_get_last_error());
                    }
                    dt = fn_now_ns() - t0;
                    if (fn_side) {
                        t_fn += dt;
                        if (dt < min_fn[i]) min_fn[i] = dt;
                    } else {
                        t_raw += dt;
                        if (dt < min_raw[i]) min_raw[i] = dt;
                    }
                }
            }
        }
    }
    uint64_t s_raw = 0, s_fn = 0;
    for (size_t i = 0; i < nq; i++) s_raw += min_raw[i], s_fn += min_fn[i];
    free(min_raw), free(min_fn);
    double best_raw = (double)s_raw / 1e9, best_fn = (double)s_fn / 1e9;
    double mean_raw = (double)t_raw / 1e9 / rounds, mean_fn = (double)t_fn / 1e9 / rounds;
    size_t same = 0;
    for (size_t i = 0; i < nq; i++)
        same += memcmp(res_raw + i * k, res_fn + i * k, (size_t)k * sizeof *res_fn) == 0;
    printf("{\"queries\": %zu, \"k\": %d, \"faiss_qps\": %.1f, \"funnel_qps\": %.1f, "
           "\"faiss_us\": %.2f, \"funnel_us\": %.2f, \"overhead_pct\": %.2f",
           nq, k, (double)nq / best_raw, (double)nq / best_fn, best_raw / (double)nq * 1e6,
           best_fn / (double)nq * 1e6, (best_fn / best_raw - 1) * 100);
    printf(", \"mean_faiss_us\": %.2f, \"mean_funnel_us\": %.2f, \"mean_overhead_pct\": %.2f",
           mean_raw / (double)nq * 1e6, mean_fn / (double)nq * 1e6, (mean_fn / mean_raw - 1) * 100);
    if (gt)
        printf(", \"faiss_recall\": %.4f, \"funnel_recall\": %.4f",
               recall_of(res_raw, gt, gdim, nq, (size_t)k),
               recall_of(res_fn, gt, gdim, nq, (size_t)k));
    printf(", \"same_results\": %.4f}\n", (double)same / (double)nq);
    faiss_ParameterSpace_free(ps);
    faiss_Index_free(raw);
    if (raw2) faiss_Index_free(raw2);
    fn_ann_free(ann);
    free(q), free(qn), free(dist), free(res_raw), free(res_fn), free(gt);
    return 0;
}
