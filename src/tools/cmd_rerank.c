/*
 * cmd_rerank.c - `funnel rerank train` and `funnel rerank eval`: the
 * listwise reranker on svmrank/LETOR text (groups from qid: tokens or a
 * FILE.query) or on TFRecord lists, and the ranking metrics (NDCG@1/3/5/10,
 * MAP) of a model's scores or of any scores given one per line.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/file.h"
#include "recall/recall.h"
#include "rerank/rerank.h"
#include "rerank_page.h"

static const char usage[] =
    "usage: funnel rerank train --data FILE [--valid FILE | --holdout X] --out MODEL [options]\n"
    "       funnel rerank eval (--model MODEL | --scores FILE) --data FILE [--json]\n"
    "                          [--predictions OUT] [--page N [page options]]\n"
    "       funnel rerank lists --config FILE --labels FILE --out FILE (see its --help)\n"
    "\n"
    "Trains the list-aware reranker (self-attention over each list's items, after PRM)\n"
    "on lists and writes it as safetensors, or evaluates a model (or scores computed\n"
    "elsewhere, one per line in input order) with NDCG@1/3/5/10 and MAP: gain 2^label-1,\n"
    "log2 discount, equal scores in input order, a list with no relevant item counts 1.\n"
    "\n"
    "input:\n"
    "  --data FILE        svmrank/LETOR text, `label [qid:Q] idx:value ... [# comment]`;\n"
    "                     the lists come from --query, else FILE.query when it exists\n"
    "                     (LightGBM's group file), else from the qid: tokens\n"
    "  --query FILE       the group file of --data (one list length per line)\n"
    "  --format F         svmrank (default) or tfrecord: tf.Example per item with `qid`,\n"
    "                     --label KEY (default label) and --features KEY (default features)\n"
    "\n"
    "train (defaults in brackets):\n"
    "  --valid FILE       validation lists: NDCG@k every epoch, early stopping, best kept\n"
    "  --holdout X        without --valid: validate on the last X of the training lists\n"
    "  --loss L           lambdarank or listnet [lambdarank]\n"
    "  --layers N         self-attention layers, 0 for a per-item network [1]\n"
    "  --d-model N        width of the item vectors [64]\n"
    "  --heads N          attention heads [4]\n"
    "  --ff N             feed-forward width [128]\n"
    "  --positions        add a learned embedding of each item's input position\n"
    "                     (when the input order is the rank stage's)\n"
    "  --max-items N      longest list looked at [200]\n"
    "  --ndcg-k N         the validation metric: NDCG@N [10]\n"
    "  --lambda-k N       LambdaRank weighs pairs by their change of NDCG@N [the list]\n"
    "  --lr X  --l2 X     Adam's learning rate [0.001] and L2 [1e-5]\n"
    "  --dropout X        [0.1]\n"
    "  --epochs N         [100]   --patience N  [10]   --batch N lists [16]\n"
    "  --seed N  --threads N  --device cpu|cuda\n"
    "  --json             print the report (or the metrics) as one JSON object; train's\n"
    "                     lists every epoch's loss and validation NDCG under \"epochs\"\n"
    "\n"
    "eval, the page (diversity and rules after the scores; see fn_rerank_page):\n"
    "  --page N           make each list's page of N items and measure it: the metrics\n"
    "                     rank the page first, in its order, then the rest by score, and\n"
    "                     `diversity` is the mean intra-list diversity of the pages\n"
    "  --categories FILE  each item's categories, one line per item of --data:\n"
    "                     names separated by | or , (an empty line for none)\n"
    "  --embeddings FILE  each item's vector, one .fvecs row per item of --data (made\n"
    "                     unit length); the similarity is then their cosine\n"
    "  --diversity D      none (default), mmr or dpp, over the embeddings when given,\n"
    "                     else the categories (Jaccard)\n"
    "  --lambda X         MMR's weight of relevance [0.7]; relevance is each list's\n"
    "                     scores scaled to [0, 1]\n"
    "  --dpp-alpha X      DPP's weight of relevance [1]\n"
    "  --max-per-category N  at most N items of one category in a page\n";

enum {
    OPT_DATA = 1,
    OPT_QUERY,
    OPT_FORMAT,
    OPT_LABEL,
    OPT_FEATURES,
    OPT_VALID,
    OPT_HOLDOUT,
    OPT_OUT,
    OPT_MODEL,
    OPT_SCORES,
    OPT_PREDICTIONS,
    OPT_LOSS,
    OPT_LAYERS,
    OPT_DMODEL,
    OPT_HEADS,
    OPT_FF,
    OPT_POSITIONS,
    OPT_MAXITEMS,
    OPT_NDCGK,
    OPT_LAMBDAK,
    OPT_LR,
    OPT_L2,
    OPT_DROPOUT,
    OPT_EPOCHS,
    OPT_PATIENCE,
    OPT_BATCH,
    OPT_SEED,
    OPT_THREADS,
    OPT_DEVICE,
    OPT_JSON,
    OPT_PAGE,
    OPT_CATEGORIES,
    OPT_EMBEDDINGS,
    OPT_DIVERSITY,
    OPT_LAMBDA,
    OPT_DPP_ALPHA,
    OPT_MAX_PER_CAT,
    OPT_HELP,
};

static const struct option long_opts[] = {
    {"data", required_argument, NULL, OPT_DATA},
    {"query", required_argument, NULL, OPT_QUERY},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"label", required_argument, NULL, OPT_LABEL},
    {"features", required_argument, NULL, OPT_FEATURES},
    {"valid", required_argument, NULL, OPT_VALID},
    {"holdout", required_argument, NULL, OPT_HOLDOUT},
    {"out", required_argument, NULL, OPT_OUT},
    {"model", required_argument, NULL, OPT_MODEL},
    {"scores", required_argument, NULL, OPT_SCORES},
    {"predictions", required_argument, NULL, OPT_PREDICTIONS},
    {"loss", required_argument, NULL, OPT_LOSS},
    {"layers", required_argument, NULL, OPT_LAYERS},
    {"d-model", required_argument, NULL, OPT_DMODEL},
    {"heads", required_argument, NULL, OPT_HEADS},
    {"ff", required_argument, NULL, OPT_FF},
    {"positions", no_argument, NULL, OPT_POSITIONS},
    {"max-items", required_argument, NULL, OPT_MAXITEMS},
    {"ndcg-k", required_argument, NULL, OPT_NDCGK},
    {"lambda-k", required_argument, NULL, OPT_LAMBDAK},
    {"lr", required_argument, NULL, OPT_LR},
    {"l2", required_argument, NULL, OPT_L2},
    {"dropout", required_argument, NULL, OPT_DROPOUT},
    {"epochs", required_argument, NULL, OPT_EPOCHS},
    {"patience", required_argument, NULL, OPT_PATIENCE},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"seed", required_argument, NULL, OPT_SEED},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"device", required_argument, NULL, OPT_DEVICE},
    {"json", no_argument, NULL, OPT_JSON},
    {"page", required_argument, NULL, OPT_PAGE},
    {"categories", required_argument, NULL, OPT_CATEGORIES},
    {"embeddings", required_argument, NULL, OPT_EMBEDDINGS},
    {"diversity", required_argument, NULL, OPT_DIVERSITY},
    {"lambda", required_argument, NULL, OPT_LAMBDA},
    {"dpp-alpha", required_argument, NULL, OPT_DPP_ALPHA},
    {"max-per-category", required_argument, NULL, OPT_MAX_PER_CAT},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

typedef struct args {
    const char *data, *query, *format, *label, *features, *valid, *out, *model, *scores,
        *predictions;
    double holdout;
    int json;
    fn_rerank_options o;
    /* the page */
    const char *categories, *embeddings;
    int page;
    fn_page_options po;
} args;

/* fn_cli_double into a float option. */
static int parse_float(const char *cmd, const char *opt, const char *s, double lo, double hi,
                       float *out)
{
    double v;
    if (!fn_cli_double(cmd, opt, s, lo, hi, &v)) return 0;
    *out = (float)v;
    return 1;
}

/* Returns -1 to go on, or an exit code. */
static int parse(const char *cmd, int argc, char **argv, args *a)
{
    memset(a, 0, sizeof *a);
    a->o = fn_rerank_options_default();
    a->format = "svmrank";
    a->label = "label";
    a->features = "features";
    a->po.lambda = 0.7f;
    a->po.dpp_alpha = 1.0f;
    optind = 1;
    int c;
    uint64_t seed;
    float holdout;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        int ok = 1;
        switch (c) {
        case OPT_DATA:
            a->data = optarg;
            break;
        case OPT_QUERY:
            a->query = optarg;
            break;
        case OPT_FORMAT:
            a->format = optarg;
            break;
        case OPT_LABEL:
            a->label = optarg;
            break;
        case OPT_FEATURES:
            a->features = optarg;
            break;
        case OPT_VALID:
            a->valid = optarg;
            break;
        case OPT_OUT:
            a->out = optarg;
            break;
        case OPT_MODEL:
            a->model = optarg;
            break;
        case OPT_SCORES:
            a->scores = optarg;
            break;
        case OPT_PREDICTIONS:
            a->predictions = optarg;
            break;
        case OPT_JSON:
            a->json = 1;
            break;
        case OPT_POSITIONS:
            a->o.positions = 1;
            break;
        case OPT_CATEGORIES:
            a->categories = optarg;
            break;
        case OPT_EMBEDDINGS:
            a->embeddings = optarg;
            break;
        case OPT_PAGE:
            ok = fn_cli_int(cmd, "--page", optarg, 1, 100000, &a->page);
            break;
        case OPT_LAMBDA:
            ok = parse_float(cmd, "--lambda", optarg, 0, 1, &a->po.lambda);
            break;
        case OPT_DPP_ALPHA:
            ok = parse_float(cmd, "--dpp-alpha", optarg, 0, 1000, &a->po.dpp_alpha);
            break;
        case OPT_MAX_PER_CAT:
            ok = fn_cli_int(cmd, "--max-per-category", optarg, 1, 100000, &a->po.max_per_category);
            break;
        case OPT_DIVERSITY:
            if (!strcmp(optarg, "none"))
                a->po.diversity = FN_DIVERSITY_NONE;
            else if (!strcmp(optarg, "mmr"))
                a->po.diversity = FN_DIVERSITY_MMR;
            else if (!strcmp(optarg, "dpp"))
                a->po.diversity = FN_DIVERSITY_DPP;
            else
                return fn_cli_usage_error(cmd, "--diversity is none, mmr or dpp, not '%s'", optarg);
            break;
        case OPT_DEVICE:
            a->o.device = optarg;
            break;
        case OPT_HOLDOUT:
            ok = parse_float(cmd, "--holdout", optarg, 0.01, 0.9, &holdout);
            a->holdout = holdout;
            break;
        case OPT_LOSS:
            if (fn_rerank_loss_parse(optarg, &a->o.loss, NULL) != FN_OK)
                return fn_cli_usage_error(cmd, "--loss is lambdarank or listnet, not '%s'", optarg);
            break;
        case OPT_LAYERS:
            ok = fn_cli_int(cmd, "--layers", optarg, 0, 8, &a->o.n_layers);
            break;
        case OPT_DMODEL:
            ok = fn_cli_int(cmd, "--d-model", optarg, 1, 4096, &a->o.d_model);
            break;
        case OPT_HEADS:
            ok = fn_cli_int(cmd, "--heads", optarg, 1, 4096, &a->o.n_heads);
            break;
        case OPT_FF:
            ok = fn_cli_int(cmd, "--ff", optarg, 1, 65536, &a->o.d_ff);
            break;
        case OPT_MAXITEMS:
            ok = fn_cli_int(cmd, "--max-items", optarg, 1, 4096, &a->o.max_items);
            break;
        case OPT_LAMBDAK:
            ok = fn_cli_int(cmd, "--lambda-k", optarg, 1, 1 << 20, &a->o.lambda_k);
            break;
        case OPT_NDCGK:
            ok = fn_cli_int(cmd, "--ndcg-k", optarg, 1, 1 << 20, &a->o.ndcg_k);
            break;
        case OPT_EPOCHS:
            ok = fn_cli_int(cmd, "--epochs", optarg, 1, 100000, &a->o.epochs);
            break;
        case OPT_PATIENCE:
            ok = fn_cli_int(cmd, "--patience", optarg, 1, 100000, &a->o.patience);
            break;
        case OPT_BATCH:
            ok = fn_cli_int(cmd, "--batch", optarg, 1, 4096, &a->o.batch);
            break;
        case OPT_THREADS:
            ok = fn_cli_int(cmd, "--threads", optarg, 1, 4096, &a->o.threads);
            break;
        case OPT_LR:
            ok = parse_float(cmd, "--lr", optarg, 1e-9, 10, &a->o.lr);
            break;
        case OPT_L2:
            ok = parse_float(cmd, "--l2", optarg, 0, 10, &a->o.l2);
            break;
        case OPT_DROPOUT:
            ok = parse_float(cmd, "--dropout", optarg, 0, 0.95, &a->o.dropout);
            break;
        case OPT_SEED:
            ok = fn_cli_u64(cmd, "--seed", optarg, &seed);
            a->o.seed = seed;
            break;
        case 'h':
        case OPT_HELP:
            fputs(usage, stdout);
            return FN_EXIT_OK;
        default:
            return fn_cli_usage_error(cmd, "unknown option");
        }
        if (!ok) return FN_EXIT_USAGE;
    }
    if (optind < argc) return fn_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (strcmp(a->format, "svmrank") && strcmp(a->format, "tfrecord"))
        return fn_cli_usage_error(cmd, "--format is svmrank or tfrecord, not '%s'", a->format);
    if (!a->data) return fn_cli_usage_error(cmd, "--data FILE is required");
    if (a->o.d_model % a->o.n_heads)
        return fn_cli_usage_error(cmd, "--heads (%d) must divide --d-model (%d)", a->o.n_heads,
                                  a->o.d_model);
    return -1;
}

static fn_status read_lists(const args *a, const char *path, const char *query, uint32_t width,
                            fn_listset **out, fn_error *err)
{
    if (!strcmp(a->format, "tfrecord"))
        return fn_listset_read_tfrecord(path, a->label, a->features, width, out, err);
    return fn_listset_read_svmrank(path, query, width, out, err);
}

/* The last `fraction` of d's lists as a view (sharing d's rows), and d cut before them. */
static fn_status split_tail(fn_listset *d, double fraction, fn_listset *tail, fn_error *err)
{
    size_t k = (size_t)((double)d->n_lists * fraction + 0.5);
    if (k < 1) k = 1;
    if (k >= d->n_lists)
        return fn_error_set(err, FN_ERR_INVALID,
                            "--holdout %.2f leaves no training lists out of %zu", fraction,
                            d->n_lists);
    const size_t first = d->n_lists - k;
    const uint64_t base = d->offsets[first];
    *tail = (fn_listset){.n_lists = k,
                         .n_items = d->n_items - base,
                         .labels = d->labels + base,
                         .features = d->features + base * d->n_features,
                         .n_features = d->n_features};
    if (!(tail->offsets = malloc((k + 1) * sizeof *tail->offsets)))
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i <= k; i++) tail->offsets[i] = d->offsets[first + i] - base;
    d->n_lists = first;
    d->n_items = base;
    return FN_OK;
}

/* The --json report's "epochs" list, an epoch at a time. */
typedef struct epochs_json {
    fn_buf b;
    int ndcg_k;
} epochs_json;

static void epoch_json(int epoch, double train_loss, double valid_ndcg, void *ctx)
{
    epochs_json *e = ctx;
    fn_buf_printf(&e->b, "%s{\"epoch\": %d, \"train_loss\": ", e->b.len ? ", " : "", epoch);
    fn_buf_json_metric(&e->b, train_loss);
    fn_buf_printf(&e->b, ", \"valid_ndcg@%d\": ", e->ndcg_k);
    fn_buf_json_metric(&e->b, valid_ndcg);
    fn_buf_putc(&e->b, '}');
}

static int run_train(args *a)
{
    if (!a->out) return fn_cli_usage_error("rerank train", "--out MODEL is required");
    if (a->valid && a->holdout > 0)
        return fn_cli_usage_error("rerank train", "give --valid or --holdout, not both");
    fn_error err = {0};
    fn_listset *train = NULL, *valid = NULL, tail = {0};
    fn_reranker *r = NULL;
    fn_rerank_report rep;
    int rc = FN_EXIT_FAIL;
    a->o.progress = 1;
    epochs_json epochs = {.b = FN_BUF_INIT, .ndcg_k = a->o.ndcg_k};
    if (a->json) a->o.on_epoch = epoch_json, a->o.on_epoch_ctx = &epochs;
    if (read_lists(a, a->data, a->query, 0, &train, &err) != FN_OK) goto done;
    if (a->valid && read_lists(a, a->valid, NULL, train->n_features, &valid, &err) != FN_OK)
        goto done;
    if (a->holdout > 0 && split_tail(train, a->holdout, &tail, &err) != FN_OK) goto done;
    const fn_listset *v = valid ? valid : tail.offsets ? &tail : NULL;
    if (fn_reranker_train(&a->o, train, v, &r, &rep, &err) != FN_OK) goto done;
    if (epochs.b.oom) {
        fn_error_set(&err, FN_ERR_NOMEM, "out of memory keeping the epochs' figures");
        goto done;
    }
    if (fn_reranker_save(r, a->out, &err) != FN_OK) goto done;
    if (a->json) {
        fn_buf b = FN_BUF_INIT;
        fn_buf_printf(&b,
                      "{\"loss\": \"%s\", \"train_lists\": %zu, \"valid_lists\": %zu, "
                      "\"epochs_run\": %d, \"best_epoch\": %d, \"train_loss\": ",
                      fn_rerank_loss_name(a->o.loss), train->n_lists, v ? v->n_lists : 0,
                      rep.epochs_run, rep.best_epoch);
        fn_buf_json_double(&b, rep.train_loss);
        fn_buf_printf(&b, ", \"valid_ndcg@%d\": ", a->o.ndcg_k);
        fn_buf_json_metric(&b, rep.best_valid_ndcg);
        fn_buf_printf(&b, ", \"lists_per_s\": %.1f, \"out\": ", rep.lists_per_s);
        fn_buf_json_string(&b, a->out, strlen(a->out));
        fn_buf_puts(&b, ", \"epochs\": [");
        fn_buf_append(&b, epochs.b.data, epochs.b.len);
        fn_buf_puts(&b, "]}\n");
        fn_cli_write_stdout(&b, NULL);
        fn_buf_free(&b);
    } else {
        printf("trained the reranker (%s) on %zu lists: %d epochs, best epoch %d",
               fn_rerank_loss_name(a->o.loss), train->n_lists, rep.epochs_run, rep.best_epoch);
        if (!isnan(rep.best_valid_ndcg))
            printf(" (validation NDCG@%d %.4f)", a->o.ndcg_k, rep.best_valid_ndcg);
        printf(", %.0f lists/s\nwrote %s\n", rep.lists_per_s, a->out);
    }
    rc = FN_EXIT_OK;
done:
    if (rc != FN_EXIT_OK) fn_cli_fail("rerank train", &err);
    fn_buf_free(&epochs.b);
    fn_reranker_free(r);
    free(tail.offsets);
    fn_listset_free(train);
    fn_listset_free(valid);
    return rc;
}

/* One score per line, exactly n of them. */
static fn_status read_scores(const char *path, size_t n, float *out, fn_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f) return fn_error_set(err, FN_ERR_IO, "%s: cannot open", path);
    char line[256];
    size_t i = 0, lineno = 0;
    fn_status st = FN_OK;
    while (st == FN_OK && fgets(line, sizeof line, f)) {
        lineno++;
        char *end;
        double v = strtod(line, &end);
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n') end++;
        if (end == line || *end || !isfinite(v))
            st = fn_error_set(err, FN_ERR_INVALID, "%s:%zu: not a finite number", path, lineno);
        else if (i++ < n)
            out[i - 1] = (float)v;
    }
    if (st == FN_OK && ferror(f)) st = fn_error_set(err, FN_ERR_IO, "%s: read error", path);
    if (st == FN_OK && i != n)
        st = fn_error_set(err, FN_ERR_INVALID, "%s: %zu scores for the %zu items of the data", path,
                          i, n);
    fclose(f);
    return st;
}

/* One .fvecs row per item, made unit length (a zero row stays zero). */
static fn_status read_embeddings(const char *path, size_t n_items, float **out, int *dim,
                                 fn_error *err)
{
    size_t n, d;
    fn_status st = fn_vecs_read_fvecs(path, &n, &d, out, err);
    if (st != FN_OK) return st;
    if (n != n_items || d < 1 || d > 65536) {
        free(*out);
        *out = NULL;
        return fn_error_set(err, FN_ERR_INVALID,
                            "%s: %zu vectors of %zu floats for the %zu items of the data", path, n,
                            d, n_items);
    }
    for (size_t i = 0; i < n; i++) {
        float *v = *out + i * d;
        double ss = 0;
        for (size_t j = 0; j < d; j++) ss += (double)v[j] * v[j];
        if (!isfinite(ss)) {
            free(*out);
            *out = NULL;
            return fn_error_set(err, FN_ERR_INVALID, "%s: vector %zu is not finite", path, i + 1);
        }
        if (ss > 0)
            for (size_t j = 0; j < d; j++) v[j] = (float)(v[j] / sqrt(ss));
    }
    *dim = (int)d;
    return FN_OK;
}

static int run_eval(args *a)
{
    if (!a->model == !a->scores)
        return fn_cli_usage_error("rerank eval", "give --model MODEL or --scores FILE");
    fn_error err = {0};
    fn_listset *d = NULL;
    fn_reranker *r = NULL;
    fn_item_cats cats = {0};
    float *emb = NULL;
    int dim = 0;
    float *s = NULL;
    int rc = FN_EXIT_FAIL;
    if (a->model && fn_reranker_load(a->model, a->o.device, a->o.threads, &r, &err) != FN_OK)
        goto done;
    if (read_lists(a, a->data, a->query, r ? fn_reranker_features(r) : 0, &d, &err) != FN_OK)
        goto done;
    if (!(s = malloc((d->n_items ? d->n_items : 1) * sizeof *s))) {
        fn_error_set(&err, FN_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (r ? fn_reranker_predict(r, d, s, &err) != FN_OK
          : read_scores(a->scores, d->n_items, s, &err) != FN_OK)
        goto done;
    if (a->predictions && fn_cli_write_floats(a->predictions, s, d->n_items, &err) != FN_OK)
        goto done;
    double diversity = NAN;
    if (a->page) {
        a->po.page_size = (size_t)a->page;
        if (a->categories && fn_item_cats_read(a->categories, d->n_items, &cats, &err) != FN_OK)
            goto done;
        if (a->embeddings && read_embeddings(a->embeddings, d->n_items, &emb, &dim, &err) != FN_OK)
            goto done;
        if (fn_pages_apply(d, a->categories ? &cats : NULL, emb, dim, &a->po, s, &diversity,
                           &err) != FN_OK)
            goto done;
    }
    fn_rank_metrics m;
    fn_listset_metrics(d, s, &m);
    if (a->json) {
        fn_buf b = FN_BUF_INIT;
        const double v[] = {m.ndcg1, m.ndcg3, m.ndcg5, m.ndcg10, m.map};
        const char *k[] = {"ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10", "map"};
        fn_buf_putc(&b, '{');
        for (int i = 0; i < 5; i++) {
            fn_buf_printf(&b, "\"%s\": ", k[i]);
            fn_buf_json_double(&b, v[i]);
            fn_buf_puts(&b, ", ");
        }
        if (a->page) {
            fn_buf_printf(&b, "\"page\": %d, \"diversity\": ", a->page);
            fn_buf_json_metric(&b, diversity);
            fn_buf_puts(&b, ", ");
        }
        fn_buf_printf(&b, "\"lists\": %zu, \"items\": %zu}\n", d->n_lists, d->n_items);
        fn_cli_write_stdout(&b, NULL);
        fn_buf_free(&b);
    } else {
        printf("NDCG@1 %.4f  NDCG@3 %.4f  NDCG@5 %.4f  NDCG@10 %.4f  MAP %.4f  (%zu lists, %zu "
               "items)\n",
               m.ndcg1, m.ndcg3, m.ndcg5, m.ndcg10, m.map, d->n_lists, d->n_items);
        if (a->page && !isnan(diversity))
            printf("page of %d: intra-list diversity %.4f\n", a->page, diversity);
    }
    rc = FN_EXIT_OK;
done:
    if (rc != FN_EXIT_OK) fn_cli_fail("rerank eval", &err);
    fn_item_cats_free(&cats);
    free(emb);
    free(s);
    fn_reranker_free(r);
    fn_listset_free(d);
    return rc;
}

int fn_cmd_rerank(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? FN_EXIT_USAGE : FN_EXIT_OK;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "lists")) return fn_cmd_rerank_lists(argc - 1, argv + 1);
    int train = !strcmp(sub, "train"), eval = !strcmp(sub, "eval");
    if (!train && !eval)
        return fn_cli_usage_error("rerank", "unknown subcommand '%s' (train, eval or lists)", sub);
    args a;
    int rc = parse(train ? "rerank train" : "rerank eval", argc - 1, argv + 1, &a);
    if (rc >= 0) return rc;
    return train ? run_train(&a) : run_eval(&a);
}
