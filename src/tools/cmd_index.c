/*
 * cmd_index.c - `funnel index build|search`: builds an ANN index (src/recall,
 * FAISS through its C API) from an .fvecs file, and measures one: recall@k
 * against ground truth and queries per second, one query at a time on one
 * thread, as ANN benchmarks count them.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/file.h"
#include "common/progress.h"
#include "features/store.h"
#include "index_store.h"
#include "recall/recall.h"

static const char usage_text[] =
    "usage: funnel index build (--vectors FILE.fvecs | --store DIR) --factory STR --out FILE\n"
    "                          [--vector-key KEY] [--text-key KEY [--model DIR]]\n"
    "                          [--ef N] [--nprobe N] [--threads N] [--json]\n"
    "       funnel index search --index FILE --queries FILE.fvecs -k K [--ef N] [--nprobe N]\n"
    "                          [--ground-truth FILE.ivecs | --exact [--vectors FILE.fvecs]]\n"
    "                          [--ids OUT.ivecs] [--results OUT.jsonl [--store DIR]] [--json]\n"
    "       funnel index add|delete|rebuild --index FILE ... (see funnel index add --help)\n"
    "\n"
    "build   build a FAISS index over the vectors of FILE.fvecs, item ids being their row\n"
    "        numbers (0, 1, ...), and write it to FILE (FAISS's index file with funnel's\n"
    "        trailer: tombstones, defaults, checksum). Vectors are L2-normalised and\n"
    "        compared by inner product (cosine). Indexes that need training (IVF, PQ) are\n"
    "        trained on all the vectors first.\n"
    "        With --store, the vectors are those of the items of the feature store in DIR\n"
    "        (opened read-only): each item's stored vector (or its float_list feature\n"
    "        --vector-key), else its bytes feature --text-key run through the encoder.\n"
    "        Each item goes in under the store's number for it (`funnel store get`\n"
    "        shows it), a stable int64 the store keeps, so ids stay the same across\n"
    "        builds and `funnel index add` can add later items. An item with neither a\n"
    "        vector nor the text is an error, or left out with --skip-missing.\n"
    "search  run the queries of FILE.fvecs one at a time on one thread and print the\n"
    "        queries per second and, when the true neighbours are known, recall@k: the\n"
    "        share of the k true nearest neighbours among the k results, averaged.\n"
    "\n"
    "options:\n"
    "  --factory STR        FAISS index factory string: \"HNSW32,Flat\", \"IVF1024,Flat\",\n"
    "                       \"IVF256,PQ48\", \"Flat\" (exact), ...\n"
    "  --vectors FILE       build: the vectors to index (.fvecs); search --exact: the\n"
    "                       indexed vectors to compute the truth from (default: the vectors\n"
    "                       read back from the index, exact for Flat storage, decoded for\n"
    "                       PQ/SQ codes)\n"
    "  --out FILE           build: where to write the index\n"
    "  --store DIR          build: index the items of this feature store; search\n"
    "                       --results: print the store's item ids for the results\n"
    "  --vector-key KEY     build --store: take the vectors from this float_list feature\n"
    "                       instead of the items' stored vectors\n"
    "  --text-key KEY       build --store: encode this bytes feature (UTF-8 text) for items\n"
    "                       without a vector\n"
    "  --skip-missing       build --store: leave out items with neither a vector nor the\n"
    "                       --text-key feature (counted as \"skipped\") instead of failing\n"
    "  --model DIR          build --text-key: the encoder model folder (default\n"
    "                       models/all-MiniLM-L6-v2)\n"
    "  --ef N               HNSW efSearch (build: the default saved with the index)\n"
    "  --nprobe N           IVF lists probed (build: the default saved with the index)\n"
    "  --threads N          build: threads for training, adding and encoding (default: all\n"
    "                       CPUs; search always runs its queries on one thread)\n"
    "  --index FILE         search: the index from 'funnel index build'\n"
    "  --queries FILE       search: query vectors (.fvecs)\n"
    "  -k K                 search: results per query\n"
    "  --ground-truth FILE  search: true neighbour ids per query (.ivecs, at least k each,\n"
    "                       best first)\n"
    "  --exact              search: compute the true neighbours by brute force\n"
    "  --ids OUT            search: write the k result ids per query as .ivecs (-1 where\n"
    "                       fewer than k were found)\n"
    "  --results OUT        search: write one JSON line per query, {\"ids\": [...],\n"
    "                       \"scores\": [...]}, best first; the ids are item ids with\n"
    "                       --store, else the int64 index ids\n"
    "  --json               print the figures as one JSON object: build {\"factory\",\n"
    "                       \"vectors\", \"dim\", \"train_s\", \"add_s\", \"out\"}; search "
    "{\"k\",\n"
    "                       \"queries\", \"qps\", \"recall@k\" (when the truth is known), ...}\n";

enum {
    OPT_VECTORS = 1,
    OPT_STORE,
    OPT_FACTORY,
    OPT_OUT,
    OPT_EF,
    OPT_NPROBE,
    OPT_INDEX,
    OPT_QUERIES,
    OPT_GT,
    OPT_EXACT,
    OPT_IDS,
    OPT_JSON,
    OPT_THREADS,
    OPT_VECTOR_KEY,
    OPT_TEXT_KEY,
    OPT_MODEL,
    OPT_RESULTS,
    OPT_SKIP_MISSING,
    OPT_HELP
};

static const struct option long_opts[] = {
    {"vectors", required_argument, NULL, OPT_VECTORS},
    {"store", required_argument, NULL, OPT_STORE},
    {"factory", required_argument, NULL, OPT_FACTORY},
    {"out", required_argument, NULL, OPT_OUT},
    {"ef", required_argument, NULL, OPT_EF},
    {"nprobe", required_argument, NULL, OPT_NPROBE},
    {"index", required_argument, NULL, OPT_INDEX},
    {"queries", required_argument, NULL, OPT_QUERIES},
    {"k", required_argument, NULL, 'k'},
    {"ground-truth", required_argument, NULL, OPT_GT},
    {"exact", no_argument, NULL, OPT_EXACT},
    {"ids", required_argument, NULL, OPT_IDS},
    {"json", no_argument, NULL, OPT_JSON},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"vector-key", required_argument, NULL, OPT_VECTOR_KEY},
    {"text-key", required_argument, NULL, OPT_TEXT_KEY},
    {"model", required_argument, NULL, OPT_MODEL},
    {"results", required_argument, NULL, OPT_RESULTS},
    {"skip-missing", no_argument, NULL, OPT_SKIP_MISSING},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

typedef struct options {
    const char *vectors, *store, *factory, *out, *index, *queries, *gt, *ids, *results;
    const char *vector_key, *text_key, *model;
    uint64_t k, threads;
    int has_k, exact, json, has_threads, skip_missing;
    fn_ann_params params;
} options;

/* Vectors added per call while building: the progress bar moves between them. */
#define BUILD_CHUNK 4096
static int cmd_build(const options *o)
{
    fn_error err = {0};
    float *vecs = NULL;
    int64_t *ids = NULL;
    fn_ann *ann = NULL;
    size_t n = 0, dim = 0;
    int rc = FN_EXIT_FAIL;
    store_items si = {0};
    if (fn_ann_set_threads((int)o->threads, &err) != FN_OK) goto done;
    if (o->store) {
        index_source src = {.store = o->store,
                            .vector_key = o->vector_key,
                            .text_key = o->text_key,
                            .model = o->model,
                            .threads = o->threads,
                            .skip_missing = o->skip_missing};
        if (index_read_store(&src, &si, &err) != FN_OK) goto done;
        if (si.n == 0) {
            if (si.n_skipped)
                fn_error_set(&err, FN_ERR_INVALID,
                             "store %s has no items to index: all %zu lack a vector and a text",
                             o->store, si.n_skipped);
            else
                fn_error_set(&err, FN_ERR_INVALID, "store %s has no items to index", o->store);
            goto done;
        }
        n = si.n, dim = si.dim, vecs = si.vecs, ids = si.numbers;
        si.vecs = NULL, si.numbers = NULL;
    } else if (fn_vecs_read_fvecs(o->vectors, &n, &dim, &vecs, &err) != FN_OK) {
        goto done;
    }
    if (fn_ann_new(o->factory, dim, &ann, &err) != FN_OK) goto done;
    if ((o->params.ef_search || o->params.nprobe) &&
        fn_ann_set_defaults(ann, &o->params, &err) != FN_OK)
        goto done;
    uint64_t t0 = fn_now_ns();
    if (fn_ann_train(ann, n, vecs, &err) != FN_OK) goto done;
    uint64_t t1 = fn_now_ns();
    if (!ids) {
        /* rows of --vectors: their row numbers */
        if (!(ids = malloc(n * sizeof *ids))) {
            fn_error_set(&err, FN_ERR_NOMEM, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < n; i++) ids[i] = (int64_t)i;
    }
    fn_progress *bar = fn_progress_new("vectors", n);
    for (size_t i = 0; i < n; i += BUILD_CHUNK) {
        size_t m = n - i < BUILD_CHUNK ? n - i : BUILD_CHUNK;
        if (fn_ann_add(ann, m, vecs + i * dim, ids + i, &err) != FN_OK) {
            fn_progress_finish(bar);
            goto done;
        }
        fn_progress_update(bar, i + m, NULL);
    }
    fn_progress_finish(bar);
    uint64_t t2 = fn_now_ns();
    if (fn_ann_save(ann, o->out, &err) != FN_OK) goto done;
    double train_s = (double)(t1 - t0) / 1e9, add_s = (double)(t2 - t1) / 1e9;
    fn_buf b = FN_BUF_INIT;
    if (o->json) {
        fn_buf_puts(&b, "{\"factory\": ");
        fn_buf_json_string(&b, o->factory, strlen(o->factory));
        fn_buf_printf(&b, ", \"vectors\": %zu, \"dim\": %zu, \"train_s\": %.3f, \"add_s\": %.3f", n,
                      dim, train_s, add_s);
        fn_ann_params d = fn_ann_defaults(ann);
        if (d.ef_search) fn_buf_printf(&b, ", \"ef_search\": %d", d.ef_search);
        if (d.nprobe) fn_buf_printf(&b, ", \"nprobe\": %d", d.nprobe);
        fn_buf_puts(&b, ", \"out\": ");
        fn_buf_json_string(&b, o->out, strlen(o->out));
        if (o->store)
            fn_buf_printf(&b, ", \"encoded\": %zu, \"skipped\": %zu", si.n_encoded, si.n_skipped);
        fn_buf_puts(&b, "}\n");
    } else {
        fn_buf_printf(&b,
                      "built %s over %zu vectors of dimension %zu: train %.2f s, add %.2f s\n"
                      "wrote %s\n",
                      o->factory, n, dim, train_s, add_s, o->out);
        if (o->store)
            fn_buf_printf(&b,
                          "%zu items under their store numbers; %zu encoded from text, %zu "
                          "without a vector or text skipped\n",
                          n, si.n_encoded, si.n_skipped);
    }
    fn_status st = fn_cli_write_stdout(&b, &err);
    fn_buf_free(&b);
    if (st == FN_OK) rc = FN_EXIT_OK;
done:
    if (rc != FN_EXIT_OK) fn_cli_fail("index", &err);
    free(vecs);
    free(ids);
    fn_ann_free(ann);
    store_items_free(&si);
    return rc;
}

/*
 * The true k nearest neighbours of the queries by brute force (an exact Flat
 * index) over the index's live vectors: those of --vectors when given (rows
 * the index no longer holds are left out), else the ones read back from it.
 */
static fn_status exact_truth(const options *o, fn_ann *ann, size_t nq, const float *q, size_t k,
                             int64_t *truth, fn_error *err)
{
    size_t n = 0, dim = 0;
    float *vecs = NULL;
    int64_t *ids = NULL;
    fn_ann *flat = NULL;
    fn_status st;
    if (o->vectors) {
        if ((st = fn_vecs_read_fvecs(o->vectors, &n, &dim, &vecs, err)) != FN_OK) goto done;
        if (dim != fn_ann_dim(ann)) {
            st = fn_error_set(err, FN_ERR_INVALID, "%s: dimension %zu, the index has %zu",
                              o->vectors, dim, fn_ann_dim(ann));
            goto done;
        }
        if (!(ids = malloc((n ? n : 1) * sizeof *ids))) {
            st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
            goto done;
        }
        size_t live = 0;
        for (size_t i = 0; i < n; i++) {
            if (!fn_ann_contains(ann, (int64_t)i)) continue;
            memmove(vecs + live * dim, vecs + i * dim, dim * sizeof *vecs);
            ids[live++] = (int64_t)i;
        }
        n = live;
    } else {
        dim = fn_ann_dim(ann);
        if ((st = fn_ann_vectors(ann, &n, &ids, &vecs, err)) != FN_OK) goto done;
    }
    if ((st = fn_ann_new("Flat", dim, &flat, err)) != FN_OK) goto done;
    if ((st = fn_ann_add(flat, n, vecs, ids, err)) != FN_OK) goto done;
    st = fn_ann_search(flat, nq, q, k, NULL, truth, NULL, err);
done:
    if (st != FN_OK) fn_error_prefix(err, "computing the exact neighbours");
    free(vecs);
    free(ids);
    fn_ann_free(flat);
    return st;
}

/* The store's number -> item id table, for --results with --store. */
static fn_status load_names(const char *store, fn_store_item_names **out, fn_error *err)
{
    fn_store_options so = {.read_only = 1, .cache_disabled = 1};
    fn_store *s = NULL;
    fn_status st = fn_store_open(store, &so, &s, err);
    if (st == FN_OK) st = fn_store_item_names_load(s, out, err);
    fn_store_close(s);
    return st;
}

/* One JSON line per query: the result ids (item ids when names is set) and scores. */
static fn_status write_results(const char *path, const fn_store_item_names *names, size_t nq,
                               size_t k, const int64_t *res, const float *scores, fn_error *err)
{
    fn_buf b = FN_BUF_INIT;
    for (size_t i = 0; i < nq; i++) {
        size_t got = 0;
        while (got < k && res[i * k + got] >= 0) got++;
        fn_buf_puts(&b, "{\"ids\": [");
        for (size_t j = 0; j < got; j++) {
            if (j) fn_buf_puts(&b, ", ");
            size_t len;
            if (!names) {
                fn_buf_printf(&b, "%lld", (long long)res[i * k + j]);
                continue;
            }
            const char *name = fn_store_item_names_get(names, res[i * k + j], &len);
            if (!name) {
                fn_buf_free(&b);
                return fn_error_set(err, FN_ERR_INVALID,
                                    "the index returned id %lld but no item of the store has "
                                    "that number: the index was built from another store",
                                    (long long)res[i * k + j]);
            }
            fn_buf_json_string(&b, name, len);
        }
        fn_buf_puts(&b, "], \"scores\": [");
        for (size_t j = 0; j < got; j++) {
            if (j) fn_buf_puts(&b, ", ");
            fn_buf_json_float(&b, scores[i * k + j]);
        }
        fn_buf_puts(&b, "]}\n");
    }
    fn_status st = b.oom ? fn_error_set(err, FN_ERR_NOMEM, "out of memory")
                         : fn_file_write_atomic(path, b.data ? b.data : "", b.len, err);
    fn_buf_free(&b);
    return st;
}

static int cmd_search(const options *o)
{
    fn_error err = {0};
    fn_ann *ann = NULL;
    float *q = NULL;
    int32_t *gt = NULL, *out_ids = NULL;
    int64_t *res = NULL, *truth = NULL;
    float *scores = NULL;
    fn_store_item_names *names = NULL;
    size_t nq = 0, qdim = 0, gn = 0, gdim = 0, k = (size_t)o->k;
    int rc = FN_EXIT_FAIL;
    if (fn_ann_load(o->index, 0, &ann, &err) != FN_OK) goto done;
    if (o->results && o->store && load_names(o->store, &names, &err) != FN_OK) goto done;
    if (fn_vecs_read_fvecs(o->queries, &nq, &qdim, &q, &err) != FN_OK) goto done;
    if (qdim != fn_ann_dim(ann)) {
        fn_error_set(&err, FN_ERR_INVALID, "%s: queries of dimension %zu, the index has %zu",
                     o->queries, qdim, fn_ann_dim(ann));
        goto done;
    }
    fn_ann_params p = o->params;
    if (p.ef_search && !fn_ann_has_ef_search(ann)) {
        fn_error_set(&err, FN_ERR_INVALID, "--ef applies to HNSW indexes, not '%s'",
                     fn_ann_factory(ann));
        goto done;
    }
    if (p.nprobe && !fn_ann_has_nprobe(ann)) {
        fn_error_set(&err, FN_ERR_INVALID, "--nprobe applies to IVF indexes, not '%s'",
                     fn_ann_factory(ann));
        goto done;
    }
    res = malloc(nq * k * sizeof *res);
    truth = malloc(nq * k * sizeof *truth);
    out_ids = malloc(nq * k * sizeof *out_ids);
    scores = malloc(nq * k * sizeof *scores);
    if (!res || !truth || !out_ids || !scores) {
        fn_error_set(&err, FN_ERR_NOMEM, "out of memory for %zu x %zu results", nq, k);
        goto done;
    }
    int have_truth = 0;
    if (o->gt) {
        if (fn_vecs_read_ivecs(o->gt, &gn, &gdim, &gt, &err) != FN_OK) goto done;
        if (gn < nq || gdim < k) {
            fn_error_set(&err, FN_ERR_INVALID,
                         "%s: %zu rows of %zu neighbours; %zu queries at -k %zu need %zu of at "
                         "least %zu",
                         o->gt, gn, gdim, nq, k, nq, k);
            goto done;
        }
        for (size_t i = 0; i < nq; i++)
            for (size_t j = 0; j < k; j++) truth[i * k + j] = gt[i * gdim + j];
        have_truth = 1;
    } else if (o->exact) {
        if (exact_truth(o, ann, nq, q, k, truth, &err) != FN_OK) goto done;
        have_truth = 1;
    }

    /* One query at a time on one thread: the latency-bound serving case. */
    if (fn_ann_set_threads(1, &err) != FN_OK) goto done;
    fn_progress *bar = fn_progress_new("queries", nq);
    uint64_t t0 = fn_now_ns();
    for (size_t i = 0; i < nq; i++) {
        if (fn_ann_search(ann, 1, q + i * qdim, k, &p, res + i * k, scores + i * k, &err) !=
            FN_OK) {
            fn_progress_finish(bar);
            fn_error_prefix(&err, "query %zu", i);
            goto done;
        }
        if ((i & 255) == 255) fn_progress_update(bar, i + 1, NULL);
    }
    double secs = (double)(fn_now_ns() - t0) / 1e9;
    fn_progress_finish(bar);
    double qps = secs > 0 ? (double)nq / secs : 0;

    double recall = 0;
    if (have_truth) {
        size_t hits = 0;
        for (size_t i = 0; i < nq; i++)
            for (size_t j = 0; j < k; j++) {
                int64_t t = truth[i * k + j];
                for (size_t r = 0; r < k && t >= 0; r++)
                    if (res[i * k + r] == t) {
                        hits++;
                        break;
                    }
            }
        recall = nq ? (double)hits / (double)(nq * k) : 0;
    }
    if (o->ids) {
        for (size_t i = 0; i < nq * k; i++) {
            if (res[i] > INT32_MAX) {
                fn_error_set(&err, FN_ERR_INVALID, "id %lld does not fit an .ivecs int32",
                             (long long)res[i]);
                goto done;
            }
            out_ids[i] = (int32_t)res[i];
        }
        if (nq && fn_vecs_write_ivecs(o->ids, nq, k, out_ids, &err) != FN_OK) goto done;
    }

    if (o->results && write_results(o->results, names, nq, k, res, scores, &err) != FN_OK)
        goto done;

    fn_ann_params d = fn_ann_defaults(ann);
    int ef = p.ef_search ? p.ef_search : d.ef_search, np = p.nprobe ? p.nprobe : d.nprobe;
    fn_buf b = FN_BUF_INIT;
    if (o->json) {
        fn_buf_printf(&b, "{\"k\": %zu, \"queries\": %zu, \"qps\": %.1f", k, nq, qps);
        if (have_truth) {
            fn_buf_puts(&b, ", \"recall@k\": ");
            fn_buf_json_double(&b, recall);
        }
        fn_buf_puts(&b, ", \"factory\": ");
        fn_buf_json_string(&b, fn_ann_factory(ann), strlen(fn_ann_factory(ann)));
        if (ef) fn_buf_printf(&b, ", \"ef_search\": %d", ef);
        if (np) fn_buf_printf(&b, ", \"nprobe\": %d", np);
        fn_buf_printf(&b, ", \"vectors\": %zu}\n", fn_ann_count(ann));
    } else {
        fn_buf_printf(&b, "%s", fn_ann_factory(ann));
        if (ef) fn_buf_printf(&b, " efSearch %d", ef);
        if (np) fn_buf_printf(&b, " nprobe %d", np);
        fn_buf_printf(&b, ": %zu queries, k %zu, %.1f queries/s", nq, k, qps);
        if (have_truth) fn_buf_printf(&b, ", recall@%zu %.4f", k, recall);
        fn_buf_putc(&b, '\n');
    }
    fn_status st = fn_cli_write_stdout(&b, &err);
    fn_buf_free(&b);
    if (st == FN_OK) rc = FN_EXIT_OK;
done:
    if (rc != FN_EXIT_OK) fn_cli_fail("index", &err);
    fn_ann_free(ann);
    free(q), free(gt), free(out_ids), free(res), free(truth), free(scores);
    fn_store_item_names_free(names);
    return rc;
}

int fn_cmd_index(int argc, char **argv)
{
    if (argc >= 2 &&
        (!strcmp(argv[1], "add") || !strcmp(argv[1], "delete") || !strcmp(argv[1], "rebuild")))
        return fn_cmd_index_edit(argc - 1, argv + 1);
    options o = {0};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "hk:", long_opts, NULL)) != -1) {
        switch (c) {
        case OPT_VECTORS:
            o.vectors = optarg;
            break;
        case OPT_STORE:
            o.store = optarg;
            break;
        case OPT_FACTORY:
            o.factory = optarg;
            break;
        case OPT_OUT:
            o.out = optarg;
            break;
        case OPT_EF:
            if (!fn_cli_int("index", "--ef", optarg, 1, 1000000, &o.params.ef_search))
                return FN_EXIT_USAGE;
            break;
        case OPT_NPROBE:
            if (!fn_cli_int("index", "--nprobe", optarg, 1, 1000000, &o.params.nprobe))
                return FN_EXIT_USAGE;
            break;
        case OPT_INDEX:
            o.index = optarg;
            break;
        case OPT_QUERIES:
            o.queries = optarg;
            break;
        case 'k':
            if (!fn_cli_u64_in("index", "-k", optarg, 1, 100000, &o.k)) return FN_EXIT_USAGE;
            o.has_k = 1;
            break;
        case OPT_GT:
            o.gt = optarg;
            break;
        case OPT_EXACT:
            o.exact = 1;
            break;
        case OPT_IDS:
            o.ids = optarg;
            break;
        case OPT_JSON:
            o.json = 1;
            break;
        case OPT_THREADS:
            if (!fn_cli_u64_in("index", "--threads", optarg, 0, 4096, &o.threads))
                return FN_EXIT_USAGE;
            o.has_threads = 1;
            break;
        case OPT_VECTOR_KEY:
            o.vector_key = optarg;
            break;
        case OPT_TEXT_KEY:
            o.text_key = optarg;
            break;
        case OPT_MODEL:
            o.model = optarg;
            break;
        case OPT_RESULTS:
            o.results = optarg;
            break;
        case OPT_SKIP_MISSING:
            o.skip_missing = 1;
            break;
        case 'h':
        case OPT_HELP:
            fputs(usage_text, stdout);
            return FN_EXIT_OK;
        default:
            return fn_cli_usage_error("index", "unknown option");
        }
    }
    if (optind >= argc)
        return fn_cli_usage_error("index",
                                  "give a subcommand: build, search, add, delete or rebuild");
    const char *sub = argv[optind];
    if (optind + 1 < argc)
        return fn_cli_usage_error("index", "unexpected argument '%s'", argv[optind + 1]);
    if (strcmp(sub, "build") == 0) {
        if (o.index || o.queries || o.has_k || o.gt || o.exact || o.ids || o.results)
            return fn_cli_usage_error("index", "--index, --queries, -k, --ground-truth, --exact, "
                                               "--ids and --results apply to search only");
        if (!o.vectors == !o.store)
            return fn_cli_usage_error("index", "build takes --vectors FILE.fvecs or --store DIR");
        if (!o.factory || !o.out)
            return fn_cli_usage_error("index", "build needs --factory and --out");
        if (!o.store && (o.vector_key || o.text_key || o.model || o.skip_missing))
            return fn_cli_usage_error(
                "index", "--vector-key, --text-key, --model and --skip-missing go with --store");
        if (o.model && !o.text_key)
            return fn_cli_usage_error("index", "--model goes with --text-key");
        return cmd_build(&o);
    }
    if (strcmp(sub, "search") == 0) {
        if (o.factory || o.out || o.has_threads || o.vector_key || o.text_key || o.model)
            return fn_cli_usage_error("index", "--factory, --out, --vector-key, --text-key, "
                                               "--model and --threads apply to build only");
        if (o.store && !o.results)
            return fn_cli_usage_error("index", "search takes --store with --results only");
        if (!o.index || !o.queries || !o.has_k)
            return fn_cli_usage_error("index", "search needs --index, --queries and -k");
        if (o.gt && o.exact)
            return fn_cli_usage_error("index", "give --ground-truth or --exact, not both");
        if (o.vectors && !o.exact)
            return fn_cli_usage_error("index", "--vectors goes with build, or with search --exact");
        return cmd_search(&o);
    }
    return fn_cli_usage_error(
        "index", "unknown subcommand '%s' (build, search, add, delete or rebuild)", sub);
}
