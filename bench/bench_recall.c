/*
 * bench_recall.c - latency of the whole recall stage for one request: every
 * channel and the merge, on one thread, over a synthetic 100k-item catalog.
 *
 *   bench_recall [--items 100000] [--dim 384] [--centres 1000] [--groups 50]
 *                [--factory HNSW32,Flat] [--ef 256] [-k 400] [--ann-k K]
 *                [--cap 1000] [--requests 2000] [--warmup 200] [--users 20000]
 *                [--history 30] [--recent 10] [--window 0] [--recall-queries 100]
 *                [--build-threads 0] [--cache DIR] [--json]
 *
 * Catalog: --items L2-normalised vectors of --dim floats, each a random one of
 * --centres centres plus Gaussian noise (norm 0.7: an item's cosine to its
 * centre is ~0.8), the centres themselves spread the same way around --groups
 * random unit vectors (centre i in group i % groups), so that the neighbours
 * past an item's own cluster (~100 items) lie in its group's sibling clusters
 * rather than being near-ties at cosine ~0; string ids "item000042". ANN: an
 * fn_ann index of --factory (trained on the catalog if it needs it), searched
 * with efSearch --ef. FAISS's HNSW returns fewer than k results when efSearch
 * is well below k (efSearch 64, k 400: ~240 on this catalog), hence 256.
 * Interactions: item ranks drawn from a Zipf law (exponent 1) over a random
 * permutation of the items, so popular items lie in every cluster.
 * Popularity: 1,000,000 such interactions over 30 days, half-life 7 days.
 * Co-occurrence: --users users with --history items each (Zipf, in time
 * order), top 100 neighbours per item, pairs within --window (0: all).
 *
 * One request, for a random user and a query vector (a random centre plus
 * noise), timed as a whole and per part, on one thread (fn_ann_set_threads(1)):
 *   ann_query  fn_ann_search of the query vector, --ann-k (default k) best,
 *              ids mapped to the string ids;
 *   ann_user   the user's last --recent item vectors gathered, fn_recall_user_ann
 *              (--ann-k best), the user's history dropped, ids mapped to strings;
 *   popularity fn_popularity_top(k): the table is ranked once, at finalize (build
 *              time), so a request copies the first k (id, score) pairs of it;
 *   cooc       fn_cooc_candidates of the user's last --recent items, k best;
 *   merge      fn_recall_merge of the four lists, quota = list size each, to
 *              --cap candidates with the channel bitmask and per-channel scores.
 * Index and table building is timed apart (build_s). ANN quality: recall@ann-k
 * and recall@10 of the first --recall-queries query vectors against exact search.
 * --cache DIR keeps the built index there (keyed by the catalog parameters and
 * factory) and loads it on later runs.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/clock.h"
#include "recall/recall.h"

enum { PART_QANN, PART_UANN, PART_POP, PART_COOC, PART_MERGE, PART_TOTAL, N_PARTS };
static const char *const part_names[N_PARTS] = {"ann_query", "ann_user", "popularity",
                                                "cooc",      "merge",    "total"};

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Uniform in (0, 1). */
static double unif(void)
{
    return ((double)(next() >> 11) + 0.5) / 9007199254740992.0;
}

static double gauss(void)
{
    return sqrt(-2 * log(unif())) * cos(6.283185307179586 * unif());
}

static void die(const char *what)
{
    fprintf(stderr, "bench_recall: %s\n", what);
    exit(1);
}

static void check(fn_status st, const fn_error *err)
{
    if (st != FN_OK) die(err->msg);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory");
    return p;
}

static void normalise(float *v, size_t dim)
{
    double s = 0;
    for (size_t j = 0; j < dim; j++) s += (double)v[j] * v[j];
    float inv = (float)(1.0 / sqrt(s));
    for (size_t j = 0; j < dim; j++) v[j] *= inv;
}

/* A centre plus Gaussian noise of expected norm `noise`, normalised. */
static void near_centre(const float *centre, size_t dim, double noise, float *out)
{
    double sd = noise / sqrt((double)dim);
    for (size_t j = 0; j < dim; j++) out[j] = centre[j] + (float)(sd * gauss());
    normalise(out, dim);
}

/* Zipf sampler: the CDF over ranks, then an item through a random permutation. */
typedef struct zipf {
    double *cdf;
    uint32_t *item_of_rank;
    size_t n;
} zipf;

static void zipf_init(zipf *z, size_t n, double s)
{
    z->n = n;
    z->cdf = xmalloc(n * sizeof *z->cdf);
    z->item_of_rank = xmalloc(n * sizeof *z->item_of_rank);
    double sum = 0;
    for (size_t r = 0; r < n; r++) z->cdf[r] = sum += pow((double)(r + 1), -s);
    for (size_t r = 0; r < n; r++) z->cdf[r] /= sum;
    for (size_t r = 0; r < n; r++) z->item_of_rank[r] = (uint32_t)r;
    for (size_t r = n - 1; r > 0; r--) {
        size_t j = next() % (r + 1);
        uint32_t t = z->item_of_rank[r];
        z->item_of_rank[r] = z->item_of_rank[j];
        z->item_of_rank[j] = t;
    }
}

static uint32_t zipf_draw(const zipf *z)
{
    double u = unif();
    size_t lo = 0, hi = z->n - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (z->cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return z->item_of_rank[lo];
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Exact top k by inner product (min-heap of k), ids into out (any order). */
static void exact_top(const float *vecs, size_t n, size_t dim, const float *q, size_t k,
                      int64_t *out, float *heap)
{
    size_t h = 0;
    for (size_t i = 0; i < n; i++) {
        const float *v = vecs + i * dim;
        float s = 0;
        for (size_t j = 0; j < dim; j++) s += v[j] * q[j];
        if (h < k) {
            size_t c = h++;
            while (c && heap[(c - 1) / 2] > s) {
                heap[c] = heap[(c - 1) / 2], out[c] = out[(c - 1) / 2];
                c = (c - 1) / 2;
            }
            heap[c] = s, out[c] = (int64_t)i;
        } else if (s > heap[0]) {
            size_t c = 0;
            for (;;) {
                size_t l = 2 * c + 1, m = l + 1, b = c;
                float bv = s;
                if (l < k && heap[l] < bv) b = l, bv = heap[l];
                if (m < k && heap[m] < bv) b = m;
                if (b == c) break;
                heap[c] = heap[b], out[c] = out[b];
                c = b;
            }
            heap[c] = s, out[c] = (int64_t)i;
        }
    }
}

static size_t overlap(const int64_t *a, size_t na, const int64_t *b, size_t nb)
{
    size_t hits = 0;
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++)
            if (a[i] == b[j]) {
                hits++;
                break;
            }
    return hits;
}

int main(int argc, char **argv)
{
    long items = 100000, dim_l = 384, centres = 1000, groups = 50, ef = 256, k_l = 400,
         cap_l = 1000;
    long requests = 2000, warmup = 200, users = 20000, history = 30, recent_l = 10, window = 0;
    long recall_queries = 100, build_threads = 0, ann_k_l = 0;
    const char *cache = NULL, *factory = "HNSW32,Flat";
    int json = 0, c;
    static const struct option opts[] = {{"items", required_argument, NULL, 'n'},
                                         {"dim", required_argument, NULL, 'd'},
                                         {"centres", required_argument, NULL, 'C'},
                                         {"groups", required_argument, NULL, 'G'},
                                         {"ef", required_argument, NULL, 'e'},
                                         {"cap", required_argument, NULL, 'c'},
                                         {"ann-k", required_argument, NULL, 'A'},
                                         {"factory", required_argument, NULL, 'F'},
                                         {"requests", required_argument, NULL, 'r'},
                                         {"warmup", required_argument, NULL, 'w'},
                                         {"users", required_argument, NULL, 'u'},
                                         {"history", required_argument, NULL, 'H'},
                                         {"recent", required_argument, NULL, 'R'},
                                         {"window", required_argument, NULL, 'W'},
                                         {"recall-queries", required_argument, NULL, 'Q'},
                                         {"build-threads", required_argument, NULL, 't'},
                                         {"cache", required_argument, NULL, 'D'},
                                         {"json", no_argument, NULL, 'j'},
                                         {NULL, 0, NULL, 0}};
    while ((c = getopt_long(argc, argv, "k:", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            items = atol(optarg);
            break;
        case 'd':
            dim_l = atol(optarg);
            break;
        case 'C':
            centres = atol(optarg);
            break;
        case 'G':
            groups = atol(optarg);
            break;
        case 'e':
            ef = atol(optarg);
            break;
        case 'k':
            k_l = atol(optarg);
            break;
        case 'A':
            ann_k_l = atol(optarg);
            break;
        case 'F':
            factory = optarg;
            break;
        case 'c':
            cap_l = atol(optarg);
            break;
        case 'r':
            requests = atol(optarg);
            break;
        case 'w':
            warmup = atol(optarg);
            break;
        case 'u':
            users = atol(optarg);
            break;
        case 'H':
            history = atol(optarg);
            break;
        case 'R':
            recent_l = atol(optarg);
            break;
        case 'W':
            window = atol(optarg);
            break;
        case 'Q':
            recall_queries = atol(optarg);
            break;
        case 't':
            build_threads = atol(optarg);
            break;
        case 'D':
            cache = optarg;
            break;
        case 'j':
            json = 1;
            break;
        default:
            die("usage: see the comment at the top of bench_recall.c");
        }
    }
    if (items < 1000 || dim_l < 2 || centres < 1 || groups < 1 || groups > centres || ef < 1 ||
        k_l < 10 || k_l > items || (ann_k_l && (ann_k_l < 10 || ann_k_l > items)) || cap_l < 1 ||
        requests < 1 || warmup < 0 || users < 1 || history < 2 || recent_l < 1 ||
        recent_l > history || window < 0 || recall_queries < 0 || build_threads < 0)
        die("bad arguments (see the comment at the top of bench_recall.c)");
    size_t n = (size_t)items, dim = (size_t)dim_l, k = (size_t)k_l, cap = (size_t)cap_l;
    size_t ak = ann_k_l ? (size_t)ann_k_l : k, kmax = ak > k ? ak : k;
    size_t hist = (size_t)history, recent = (size_t)recent_l;
    fn_error err = {0};
    double build_s[4];

    /* Catalog: clustered unit vectors and string ids. */
    uint64_t t0 = fn_now_ns();
    float *grp = xmalloc((size_t)groups * dim * sizeof *grp);
    for (size_t i = 0; i < (size_t)groups * dim; i++) grp[i] = (float)gauss();
    for (long i = 0; i < groups; i++) normalise(grp + (size_t)i * dim, dim);
    float *cent = xmalloc((size_t)centres * dim * sizeof *cent);
    for (long i = 0; i < centres; i++)
        near_centre(grp + (size_t)(i % groups) * dim, dim, 0.7, cent + (size_t)i * dim);
    float *vecs = xmalloc(n * dim * sizeof *vecs);
    for (size_t i = 0; i < n; i++)
        near_centre(cent + (next() % (uint64_t)centres) * dim, dim, 0.7, vecs + i * dim);
    char *id_buf = xmalloc(n * 32);
    const char **idstr = xmalloc(n * sizeof *idstr);
    int64_t *ann_ids = xmalloc(n * sizeof *ann_ids);
    for (size_t i = 0; i < n; i++) {
        snprintf(id_buf + i * 32, 32, "item%06zu", i);
        idstr[i] = id_buf + i * 32;
        ann_ids[i] = (int64_t)i;
    }
    build_s[0] = (double)(fn_now_ns() - t0) / 1e9;

    /* ANN index: --factory, trained on the catalog if it needs it; built (or loaded from --cache)
     * with --build-threads. */
    t0 = fn_now_ns();
    check(fn_ann_set_threads((int)build_threads, &err), &err);
    fn_ann *ann = NULL;
    char path[4096] = "";
    int loaded = 0;
    if (cache) {
        mkdir(cache, 0777);
        char fac[64];
        snprintf(fac, sizeof fac, "%s", factory);
        for (char *f = fac; *f; f++)
            if (*f == ',' || *f == '/') *f = '_';
        snprintf(path, sizeof path, "%s/bench_recall-%zu-%zu-%ld-%ld-%s.faiss", cache, n, dim,
                 centres, groups, fac);
        fn_status st = fn_ann_load(path, dim, &ann, &err);
        if (st == FN_OK && fn_ann_count(ann) == n)
            loaded = 1;
        else if (st != FN_ERR_NOT_FOUND && st != FN_OK)
            fprintf(stderr, "bench_recall: %s; rebuilding\n", err.msg);
        if (!loaded) fn_ann_free(ann), ann = NULL;
    }
    if (!loaded) {
        check(fn_ann_new(factory, dim, &ann, &err), &err);
        if (!fn_ann_is_trained(ann)) check(fn_ann_train(ann, n, vecs, &err), &err);
        check(fn_ann_add(ann, n, vecs, ann_ids, &err), &err);
        if (cache) check(fn_ann_save(ann, path, &err), &err);
    }
    fn_ann_params params = {fn_ann_has_ef_search(ann) ? (int)ef : 0, 0};
    build_s[1] = (double)(fn_now_ns() - t0) / 1e9;

    zipf z;
    zipf_init(&z, n, 1.0);

    /* Popularity: 1,000,000 Zipf interactions over 30 days, half-life 7 days, ranked once. */
    t0 = fn_now_ns();
    const int64_t day = 86400, now = 30 * day;
    fn_popularity *pop = NULL;
    check(fn_popularity_new(7.0 * (double)day, now, &pop, &err), &err);
    for (int i = 0; i < 1000000; i++)
        check(fn_popularity_add(pop, idstr[zipf_draw(&z)], (int64_t)(next() % (uint64_t)now), 1.0,
                                &err),
              &err);
    check(fn_popularity_finalize(pop, &err), &err);
    build_s[2] = (double)(fn_now_ns() - t0) / 1e9;

    /* Co-occurrence: --users histories of --history Zipf items in time order. */
    t0 = fn_now_ns();
    uint32_t *hists = xmalloc((size_t)users * hist * sizeof *hists);
    fn_cooc_options co = {.top_k = 100, .window = (uint32_t)window};
    fn_cooc_builder *cb = NULL;
    check(fn_cooc_builder_new(&co, &cb, &err), &err);
    for (long u = 0; u < users; u++) {
        char uid[32];
        snprintf(uid, sizeof uid, "user%ld", u);
        for (size_t j = 0; j < hist; j++) {
            uint32_t it = zipf_draw(&z);
            hists[(size_t)u * hist + j] = it;
            check(fn_cooc_builder_add(cb, uid, idstr[it], now - (int64_t)(hist - j) * 3600, &err),
                  &err);
        }
    }
    fn_cooc *cooc = NULL;
    uint64_t pairs = 0;
    check(fn_cooc_build(cb, &cooc, &pairs, &err), &err);
    fn_cooc_builder_free(cb);
    build_s[3] = (double)(fn_now_ns() - t0) / 1e9;

    /* Requests: a user and a query vector each, made before timing. */
    size_t total_req = (size_t)(warmup + requests);
    uint32_t *req_user = xmalloc(total_req * sizeof *req_user);
    float *req_q = xmalloc(total_req * dim * sizeof *req_q);
    for (size_t r = 0; r < total_req; r++) {
        req_user[r] = (uint32_t)(next() % (uint64_t)users);
        near_centre(cent + (next() % (uint64_t)centres) * dim, dim, 0.7, req_q + r * dim);
    }

    /* ANN quality at this efSearch: recall against exact search on the first query vectors. */
    double rec_k = 0, rec_10 = 0;
    size_t nrq = (size_t)recall_queries < total_req ? (size_t)recall_queries : total_req;
    if (nrq) {
        int64_t *exact = xmalloc(ak * sizeof *exact), *got_ids = xmalloc(ak * sizeof *got_ids);
        int64_t *exact10 = xmalloc(10 * sizeof *exact10);
        float *heap = xmalloc(ak * sizeof *heap);
        size_t hk = 0, h10 = 0;
        for (size_t r = 0; r < nrq; r++) {
            exact_top(vecs, n, dim, req_q + r * dim, ak, exact, heap);
            for (size_t a = 0; a < 10; a++) { /* the 10 best of the k, by selection */
                size_t b = a;
                for (size_t j = a + 1; j < ak; j++)
                    if (heap[j] > heap[b]) b = j;
                float ts = heap[a];
                int64_t ti = exact[a];
                heap[a] = heap[b], exact[a] = exact[b];
                heap[b] = ts, exact[b] = ti;
                exact10[a] = exact[a];
            }
            check(fn_ann_search(ann, 1, req_q + r * dim, ak, &params, got_ids, NULL, &err), &err);
            hk += overlap(exact, ak, got_ids, ak);
            h10 += overlap(exact10, 10, got_ids, 10);
        }
        rec_k = (double)hk / (double)(nrq * ak);
        rec_10 = (double)h10 / (double)(nrq * 10);
        free(exact), free(got_ids), free(exact10), free(heap);
    }

    /* The timed loop: one thread, one request at a time. */
    check(fn_ann_set_threads(1, &err), &err);
    int64_t *ids = xmalloc(ak * sizeof *ids);
    float *sc = xmalloc(ak * sizeof *sc);
    fn_recall_item *lists[4];
    size_t got[4];
    for (int i = 0; i < 4; i++) lists[i] = xmalloc(kmax * sizeof *lists[i]);
    float *uvecs = xmalloc(recent * dim * sizeof *uvecs);
    const char **recent_ids = xmalloc(recent * sizeof *recent_ids);
    fn_recall_candidate *cand = xmalloc(cap * sizeof *cand);
    double *cscores = xmalloc(cap * 4 * sizeof *cscores);
    double *ms[N_PARTS];
    for (int p = 0; p < N_PARTS; p++) ms[p] = xmalloc((size_t)requests * sizeof *ms[p]);
    double sum_cand = 0, sum_src[4] = {0, 0, 0, 0}, sum_got[4] = {0, 0, 0, 0};
    size_t min_cand = cap;
    for (size_t r = 0; r < total_req; r++) {
        const uint32_t *h = hists + (size_t)req_user[r] * hist;
        const uint32_t *last = h + hist - recent;
        uint64_t t[N_PARTS + 1];
        t[0] = fn_now_ns();

        check(fn_ann_search(ann, 1, req_q + r * dim, ak, &params, ids, sc, &err), &err);
        got[0] = 0;
        for (size_t j = 0; j < ak && ids[j] >= 0; j++)
            lists[0][got[0]++] = (fn_recall_item){idstr[ids[j]], sc[j]};
        t[1] = fn_now_ns();

        for (size_t j = 0; j < recent; j++)
            memcpy(uvecs + j * dim, vecs + (size_t)last[j] * dim, dim * sizeof *uvecs);
        check(fn_recall_user_ann(ann, recent, uvecs, ak, &params, ids, sc, &err), &err);
        got[1] = 0;
        for (size_t j = 0; j < ak && ids[j] >= 0; j++) {
            size_t s = 0;
            while (s < hist && h[s] != (uint32_t)ids[j]) s++;
            if (s == hist) lists[1][got[1]++] = (fn_recall_item){idstr[ids[j]], sc[j]};
        }
        t[2] = fn_now_ns();

        check(fn_popularity_top(pop, k, lists[2], &got[2], &err), &err);
        t[3] = fn_now_ns();

        for (size_t j = 0; j < recent; j++) recent_ids[j] = idstr[last[j]];
        check(fn_cooc_candidates(cooc, recent_ids, recent, k, lists[3], &got[3], &err), &err);
        t[4] = fn_now_ns();

        fn_recall_channel ch[4];
        for (int i = 0; i < 4; i++) ch[i] = (fn_recall_channel){lists[i], got[i], i < 2 ? ak : k};
        size_t ncand = 0;
        check(fn_recall_merge(ch, 4, cap, cand, cscores, &ncand, &err), &err);
        t[5] = fn_now_ns();

        if (r < (size_t)warmup) continue;
        size_t m = r - (size_t)warmup;
        for (int p = 0; p < PART_TOTAL; p++) ms[p][m] = (double)(t[p + 1] - t[p]) / 1e6;
        ms[PART_TOTAL][m] = (double)(t[5] - t[0]) / 1e6;
        sum_cand += (double)ncand;
        if (ncand < min_cand) min_cand = ncand;
        for (int i = 0; i < 4; i++) sum_got[i] += (double)got[i];
        for (size_t i = 0; i < ncand; i++) sum_src[cand[i].source] += 1;
    }

    double p50[N_PARTS], p99[N_PARTS], mean[N_PARTS];
    for (int p = 0; p < N_PARTS; p++) {
        double s = 0;
        for (long i = 0; i < requests; i++) s += ms[p][i];
        mean[p] = s / (double)requests;
        qsort(ms[p], (size_t)requests, sizeof *ms[p], cmp_double);
        p50[p] = ms[p][(size_t)requests / 2];
        size_t i99 = (size_t)ceil(0.99 * (double)requests);
        p99[p] = ms[p][(i99 ? i99 : 1) - 1];
    }
    double nr = (double)requests;
    if (json) {
        printf("{\"items\": %zu, \"dim\": %zu, \"centres\": %ld, \"groups\": %ld, \"factory\": "
               "\"%s\", \"ef_search\": %ld, \"k\": %zu, \"ann_k\": %zu, \"cap\": %zu, "
               "\"requests\": %ld, \"warmup\": %ld, "
               "\"users\": %ld, \"history\": %zu, \"recent\": %zu, \"cooc_window\": %ld, "
               "\"cooc_pairs\": %llu, \"build_threads\": %ld, \"index_loaded\": %s, "
               "\"build_s\": {\"vectors\": %.2f, \"ann\": %.2f, \"popularity\": %.2f, "
               "\"cooc\": %.2f}, \"ann_recall_at_k\": %.4f, \"ann_recall_at_10\": %.4f, "
               "\"recall_queries\": %zu, \"channel_items_mean\": [%.1f, %.1f, %.1f, %.1f], "
               "\"candidates_mean\": %.1f, \"candidates_min\": %zu, "
               "\"taken_mean\": [%.1f, %.1f, %.1f, %.1f], \"parts\": {",
               n, dim, centres, groups, factory, (long)params.ef_search, k, ak, cap, requests,
               warmup, users, hist, recent, window, (unsigned long long)pairs, build_threads,
               loaded ? "true" : "false", build_s[0], build_s[1], build_s[2], build_s[3], rec_k,
               rec_10, nrq, sum_got[0] / nr, sum_got[1] / nr, sum_got[2] / nr, sum_got[3] / nr,
               sum_cand / nr, min_cand, sum_src[0] / nr, sum_src[1] / nr, sum_src[2] / nr,
               sum_src[3] / nr);
        for (int p = 0; p < N_PARTS; p++)
            printf("%s\"%s\": {\"p50_ms\": %.4f, \"p99_ms\": %.4f, \"mean_ms\": %.4f}",
                   p ? ", " : "", part_names[p], p50[p], p99[p], mean[p]);
        printf("}}\n");
    } else {
        printf("catalog: %zu items x %zu dims, %ld centres in %ld groups; %s efSearch %ld, k %zu "
               "(ANN %zu), cap %zu\n",
               n, dim, centres, groups, factory, (long)params.ef_search, k, ak, cap);
        char how[64] = " (loaded from cache)";
        if (!loaded)
            snprintf(how, sizeof how, " (built, --build-threads %ld; 0: all CPUs)", build_threads);
        printf("build: vectors %.2f s, ann %.2f s%s, popularity %.2f s, cooc %.2f s (%llu pairs)\n",
               build_s[0], build_s[1], how, build_s[2], build_s[3], (unsigned long long)pairs);
        if (nrq)
            printf("ann recall@%zu %.4f, recall@10 %.4f over %zu queries\n", ak, rec_k, rec_10,
                   nrq);
        printf("lists (mean items): ann_query %.1f, ann_user %.1f, popularity %.1f, cooc %.1f\n",
               sum_got[0] / nr, sum_got[1] / nr, sum_got[2] / nr, sum_got[3] / nr);
        printf("merged: %.1f candidates (min %zu), taken per channel %.1f / %.1f / %.1f / %.1f\n",
               sum_cand / nr, min_cand, sum_src[0] / nr, sum_src[1] / nr, sum_src[2] / nr,
               sum_src[3] / nr);
        printf("%ld requests on one thread after %ld warm-up:\n", requests, warmup);
        for (int p = 0; p < N_PARTS; p++)
            printf("  %-10s p50 %7.4f ms  p99 %7.4f ms  mean %7.4f ms\n", part_names[p], p50[p],
                   p99[p], mean[p]);
    }

    for (int p = 0; p < N_PARTS; p++) free(ms[p]);
    for (int i = 0; i < 4; i++) free(lists[i]);
    free(ids), free(sc), free(uvecs), free(recent_ids), free(cand), free(cscores);
    free(req_user), free(req_q), free(hists), free(z.cdf), free(z.item_of_rank);
    free(grp), free(cent), free(vecs), free(id_buf), free(idstr), free(ann_ids);
    fn_cooc_free(cooc);
    fn_popularity_free(pop);
    fn_ann_free(ann);
    return 0;
}
