/*
 * cmd_train.c - `funnel train` and `funnel eval`: CTR models (FM, FFM,
 * DeepFM) trained and evaluated on TFRecord files through a feature spec, or
 * on libffm text.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/file.h"
#include "rank/rank.h"

static const char train_usage[] =
    "usage: funnel train --model fm|ffm|deepfm --train FILE [--valid FILE] --out MODEL\n"
    "                    (--spec SPEC.json [--label KEY] [--label-range LO,HI] |\n"
    "                     --format libffm) [options]\n"
    "\n"
    "Trains a click-through-rate model and writes it as safetensors. TFRecord input\n"
    "(tf.Example) goes through the feature-column spec, whose SHA-256 the model keeps;\n"
    "libffm input is `label field:index:value ...` per line. With --valid, every epoch\n"
    "is validated, training stops after --patience epochs without a better validation\n"
    "log loss (or AUC, --valid-metric auc), and the best epoch is kept.\n"
    "\n"
    "options (defaults depend on the model: FM k 8, lr 0.05, l2 1e-5; FFM k 4, lr 0.2,\n"
    "l2 2e-5 with instance normalisation, as libffm; DeepFM k 8, MLP lr 0.001 with Adam,\n"
    "sparse part AdaGrad at 0.05, l2 1e-4, hidden 200,200):\n"
    "  --k N              latent factors\n"
    "  --lr X             learning rate\n"
    "  --l2 X             L2 regularisation\n"
    "  --epochs N         most passes over the data (default 10)\n"
    "  --patience N       epochs without improvement before stopping (default 2)\n"
    "  --valid-metric M   what --valid judges epochs by: logloss (default) or auc\n"
    "  --seed N           initialisation and shuffling (default 1)\n"
    "  --threads N        training threads (default: all CPUs)\n"
    "  --norm / --no-norm FFM instance normalisation\n"
    "  --hidden N,N,...   DeepFM hidden layer sizes\n"
    "  --activation A     DeepFM hidden activation: relu (default) or gelu\n"
    "  --dropout X        DeepFM dropout on hidden layers (default 0)\n"
    "  --batch N          DeepFM mini-batch size (default 256)\n"
    "  --sparse-optimizer O  DeepFM's bias, linear weights and embeddings: adagrad\n"
    "                     (default, as FM's, on the batch's summed gradient) or adam\n"
    "                     (lazy Adam on the batch's mean gradient); the MLP always\n"
    "                     trains with Adam at --lr\n"
    "  --sparse-lr X      their learning rate (default: 0.05 with adagrad, --lr with\n"
    "                     adam)\n"
    "  --device D         DeepFM: cpu (default) or cuda\n"
    "  --label KEY        label feature of TFRecord input (default: label)\n"
    "  --label-range LO,HI  graded targets: the label's value v trains as\n"
    "                     (v - LO) / (HI - LO) clipped to [0, 1] instead of 1 when\n"
    "                     v > 0.5, else 0 (e.g. --label rating --label-range 2.5,4.5:\n"
    "                     ratings 1-2 count 0, 3 0.25, 4 0.75, 5 1); the model still\n"
    "                     predicts a probability, of the grade, and ranks by it\n"
    "  --json             print the training report as one JSON object, with every\n"
    "                     epoch's losses and validation AUC under \"epochs\"\n";

static const char eval_usage[] =
    "usage: funnel eval --model MODEL --data FILE (--spec SPEC.json [--label KEY]\n"
    "                   [--label-range LO,HI] | --format libffm) [--json]\n"
    "                   [--predictions OUT] [--threads N]\n"
    "\n"
    "Scores every example and prints the AUC (exact; tied scores count half) and the\n"
    "log loss. With --label-range (as in train), targets above 0.5 are the AUC's\n"
    "positives and the log loss is the cross-entropy against the graded targets.\n"
    "--json prints {\"auc\": ..., \"logloss\": ..., \"n\": ...}; --predictions writes\n"
    "one predicted probability per line, in input order. A TFRecord model refuses a\n"
    "spec other than the one it was trained with.\n";

enum {
    OPT_MODEL = 1,
    OPT_TRAIN,
    OPT_VALID,
    OPT_OUT,
    OPT_SPEC,
    OPT_FORMAT,
    OPT_LABEL,
    OPT_LABEL_RANGE,
    OPT_K,
    OPT_LR,
    OPT_L2,
    OPT_EPOCHS,
    OPT_PATIENCE,
    OPT_VALID_METRIC,
    OPT_SEED,
    OPT_THREADS,
    OPT_NORM,
    OPT_NO_NORM,
    OPT_HIDDEN,
    OPT_ACT,
    OPT_DROPOUT,
    OPT_BATCH,
    OPT_SPARSE_OPT,
    OPT_SPARSE_LR,
    OPT_DEVICE,
    OPT_JSON,
    OPT_DATA,
    OPT_PREDICTIONS,
    OPT_HELP,
};

static const struct option long_opts[] = {
    {"model", required_argument, NULL, OPT_MODEL},
    {"train", required_argument, NULL, OPT_TRAIN},
    {"valid", required_argument, NULL, OPT_VALID},
    {"out", required_argument, NULL, OPT_OUT},
    {"spec", required_argument, NULL, OPT_SPEC},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"label", required_argument, NULL, OPT_LABEL},
    {"label-range", required_argument, NULL, OPT_LABEL_RANGE},
    {"k", required_argument, NULL, OPT_K},
    {"lr", required_argument, NULL, OPT_LR},
    {"l2", required_argument, NULL, OPT_L2},
    {"epochs", required_argument, NULL, OPT_EPOCHS},
    {"patience", required_argument, NULL, OPT_PATIENCE},
    {"valid-metric", required_argument, NULL, OPT_VALID_METRIC},
    {"seed", required_argument, NULL, OPT_SEED},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"norm", no_argument, NULL, OPT_NORM},
    {"no-norm", no_argument, NULL, OPT_NO_NORM},
    {"hidden", required_argument, NULL, OPT_HIDDEN},
    {"activation", required_argument, NULL, OPT_ACT},
    {"dropout", required_argument, NULL, OPT_DROPOUT},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"sparse-optimizer", required_argument, NULL, OPT_SPARSE_OPT},
    {"sparse-lr", required_argument, NULL, OPT_SPARSE_LR},
    {"device", required_argument, NULL, OPT_DEVICE},
    {"json", no_argument, NULL, OPT_JSON},
    {"data", required_argument, NULL, OPT_DATA},
    {"predictions", required_argument, NULL, OPT_PREDICTIONS},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

typedef struct args {
    const char *model, *train, *valid, *out, *spec, *format, *data, *predictions;
    fn_label_rule label; /* --label, --label-range */
    const char *kind;
    int json, threads, threads_set;
    /* Hyperparameters given on the command line, applied over the kind's defaults. */
    int k, epochs, patience, batch, norm, relu, n_hidden;
    int hidden[FN_MAX_HIDDEN];
    double lr, l2, dropout, sparse_lr;
    int sparse_opt; /* -1: the default */
    uint64_t seed;
    int has_seed;
    const char *device;
    int valid_metric; /* -1: the default */
} args;

/* LO,HI: two finite numbers, LO < HI. */
static int parse_label_range(const char *cmd, const char *s, args *a)
{
    char *end, *mid;
    fn_label_rule *r = &a->label;
    r->lo = strtod(s, &mid);
    if (mid != s && *mid == ',') {
        r->hi = strtod(mid + 1, &end);
        if (end != mid + 1 && !*end && isfinite(r->lo) && isfinite(r->hi) && r->lo < r->hi) {
            r->graded = 1;
            return 1;
        }
    }
    fn_cli_usage_error(cmd, "--label-range expects LO,HI with LO < HI (e.g. 2.5,4.5), not '%s'", s);
    return 0;
}

static int parse_hidden(const char *cmd, const char *s, args *a)
{
    a->n_hidden = 0;
    for (const char *p = s; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 65536 || a->n_hidden == FN_MAX_HIDDEN ||
            (*end != ',' && *end)) {
            fn_cli_usage_error(cmd, "--hidden expects up to %d sizes like 200,200, got '%s'",
                               FN_MAX_HIDDEN, s);
            return 0;
        }
        a->hidden[a->n_hidden++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return a->n_hidden > 0 || (fn_cli_usage_error(cmd, "--hidden needs at least one size"), 0);
}

/* Whether option c is train's (train 1) or eval's (train 0): eval scores a model as trained,
   so the training options are not its; --data and --predictions are not train's. */
static int option_of(int train, int c)
{
    switch (c) {
    case OPT_DATA:
    case OPT_PREDICTIONS:
        return !train;
    case OPT_MODEL:
    case OPT_SPEC:
    case OPT_FORMAT:
    case OPT_LABEL:
    case OPT_LABEL_RANGE:
    case OPT_THREADS:
    case OPT_JSON:
    case OPT_HELP:
        return 1;
    default:
        return train;
    }
}

static const char *option_name(int c)
{
    for (const struct option *o = long_opts; o->name; o++)
        if (o->val == c) return o->name;
    return "?";
}

/* Parses the shared options; returns -1 to continue, or an exit code. */
static int parse(const char *cmd, int argc, char **argv, args *a, const char *usage)
{
    memset(a, 0, sizeof *a);
    a->k = a->epochs = a->patience = a->batch = a->norm = a->relu = -1;
    a->lr = a->l2 = a->dropout = a->sparse_lr = -1;
    a->valid_metric = a->sparse_opt = -1;
    a->label.key = "label";
    const int train = strcmp(cmd, "train") == 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        if (c >= OPT_MODEL && c <= OPT_HELP && !option_of(train, c))
            return fn_cli_usage_error(cmd, "--%s is funnel %s's option, not %s's", option_name(c),
                                      train ? "eval" : "train", cmd);
        switch (c) {
        case OPT_MODEL:
            a->model = optarg;
            break;
        case OPT_TRAIN:
            a->train = optarg;
            break;
        case OPT_VALID:
            a->valid = optarg;
            break;
        case OPT_OUT:
            a->out = optarg;
            break;
        case OPT_SPEC:
            a->spec = optarg;
            break;
        case OPT_FORMAT:
            a->format = optarg;
            break;
        case OPT_LABEL:
            a->label.key = optarg;
            break;
        case OPT_VALID_METRIC:
            if (strcmp(optarg, "logloss") && strcmp(optarg, "auc"))
                return fn_cli_usage_error(cmd, "--valid-metric is logloss or auc, not '%s'",
                                          optarg);
            a->valid_metric = strcmp(optarg, "auc") == 0 ? FN_VALID_AUC : FN_VALID_LOGLOSS;
            break;
        case OPT_LABEL_RANGE:
            if (!parse_label_range(cmd, optarg, a)) return FN_EXIT_USAGE;
            break;
        case OPT_DATA:
            a->data = optarg;
            break;
        case OPT_PREDICTIONS:
            a->predictions = optarg;
            break;
        case OPT_JSON:
            a->json = 1;
            break;
        case OPT_DEVICE:
            a->device = optarg;
            break;
        case OPT_NORM:
            a->norm = 1;
            break;
        case OPT_NO_NORM:
            a->norm = 0;
            break;
        case OPT_K:
            if (!fn_cli_int(cmd, "--k", optarg, 1, 1024, &a->k)) return FN_EXIT_USAGE;
            break;
        case OPT_EPOCHS:
            if (!fn_cli_int(cmd, "--epochs", optarg, 1, 100000, &a->epochs)) return FN_EXIT_USAGE;
            break;
        case OPT_PATIENCE:
            if (!fn_cli_int(cmd, "--patience", optarg, 1, 100000, &a->patience))
                return FN_EXIT_USAGE;
            break;
        case OPT_BATCH:
            if (!fn_cli_int(cmd, "--batch", optarg, 1, 1 << 20, &a->batch)) return FN_EXIT_USAGE;
            break;
        case OPT_THREADS:
            if (!fn_cli_int(cmd, "--threads", optarg, 1, 4096, &a->threads)) return FN_EXIT_USAGE;
            a->threads_set = 1;
            break;
        case OPT_SEED:
            if (!fn_cli_u64(cmd, "--seed", optarg, &a->seed)) return FN_EXIT_USAGE;
            a->has_seed = 1;
            break;
        case OPT_LR:
            if (!fn_cli_double(cmd, "--lr", optarg, 1e-12, 100, &a->lr)) return FN_EXIT_USAGE;
            break;
        case OPT_L2:
            if (!fn_cli_double(cmd, "--l2", optarg, 0, 100, &a->l2)) return FN_EXIT_USAGE;
            break;
        case OPT_DROPOUT:
            if (!fn_cli_double(cmd, "--dropout", optarg, 0, 0.99, &a->dropout))
                return FN_EXIT_USAGE;
            break;
        case OPT_SPARSE_OPT: {
            fn_sparse_optimizer so;
            if (fn_sparse_optimizer_parse(optarg, &so) != FN_OK)
                return fn_cli_usage_error(cmd, "--sparse-optimizer is adam or adagrad, not '%s'",
                                          optarg);
            a->sparse_opt = (int)so;
            break;
        }
        case OPT_SPARSE_LR:
            if (!fn_cli_double(cmd, "--sparse-lr", optarg, 1e-12, 100, &a->sparse_lr))
                return FN_EXIT_USAGE;
            break;
        case OPT_HIDDEN:
            if (!parse_hidden(cmd, optarg, a)) return FN_EXIT_USAGE;
            break;
        case OPT_ACT:
            if (strcmp(optarg, "relu") && strcmp(optarg, "gelu"))
                return fn_cli_usage_error(cmd, "--activation is relu or gelu, not '%s'", optarg);
            a->relu = strcmp(optarg, "relu") == 0;
            break;
        case 'h':
        case OPT_HELP:
            fputs(usage, stdout);
            return FN_EXIT_OK;
        default:
            return fn_cli_usage_error(cmd, "unknown option");
        }
    }
    if (optind < argc) return fn_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (a->format && strcmp(a->format, "libffm") != 0)
        return fn_cli_usage_error(cmd, "--format knows only libffm, not '%s'", a->format);
    if (!a->format && !a->spec)
        return fn_cli_usage_error(cmd, "give --spec SPEC.json (TFRecord input) or --format libffm");
    if (a->format && a->spec) return fn_cli_usage_error(cmd, "give --spec or --format, not both");
    if (a->format && a->label.graded)
        return fn_cli_usage_error(cmd, "--label-range goes with --spec (TFRecord input): libffm "
                                       "labels are binary");
    return -1;
}

/* Reads FILE as libffm text or as TFRecord through the spec. */
static fn_status read_data(const args *a, const fn_columns *spec, const char *path,
                           fn_dataset **out, fn_error *err)
{
    if (a->format) return fn_dataset_read_libffm(path, out, err);
    return fn_dataset_read_tfrecord(path, spec, &a->label, out, err);
}

static void apply_overrides(const args *a, fn_train_options *o)
{
    if (a->k > 0) o->k = a->k;
    if (a->epochs > 0) o->epochs = a->epochs;
    if (a->patience > 0) o->patience = a->patience;
    if (a->batch > 0) o->batch = a->batch;
    if (a->norm >= 0) o->normalize = a->norm;
    if (a->relu >= 0) o->relu = a->relu;
    if (a->lr > 0) o->lr = (float)a->lr;
    if (a->l2 >= 0) o->l2 = (float)a->l2;
    if (a->dropout >= 0) o->dropout = (float)a->dropout;
    if (a->sparse_opt >= 0) o->sparse_opt = (fn_sparse_optimizer)a->sparse_opt;
    if (a->sparse_lr > 0) o->sparse_lr = (float)a->sparse_lr;
    if (a->has_seed) o->seed = a->seed;
    if (a->threads_set) o->threads = a->threads;
    if (a->n_hidden) {
        o->n_hidden = a->n_hidden;
        memcpy(o->hidden, a->hidden, sizeof o->hidden);
    }
    if (a->device) o->device = a->device;
    if (a->valid_metric >= 0) o->valid_metric = (fn_valid_metric)a->valid_metric;
}

/* Appends one epoch's figures to the --json report's "epochs" list (a fn_buf). */
static void epoch_json(const fn_epoch_stats *s, void *ctx)
{
    fn_buf *b = ctx;
    fn_buf_printf(b, "%s{\"epoch\": %d, \"train_loss\": ", b->len ? ", " : "", s->epoch);
    fn_buf_json_metric(b, s->train_loss);
    fn_buf_puts(b, ", \"valid_logloss\": ");
    fn_buf_json_metric(b, s->valid_loss);
    fn_buf_puts(b, ", \"valid_auc\": ");
    fn_buf_json_metric(b, s->valid_auc);
    fn_buf_putc(b, '}');
}

int fn_cmd_train(int argc, char **argv)
{
    args a;
    int rc = parse("train", argc, argv, &a, train_usage);
    if (rc >= 0) return rc;
    if (!a.model) return fn_cli_usage_error("train", "--model fm|ffm|deepfm is required");
    if (!a.train || !a.out) return fn_cli_usage_error("train", "--train and --out are required");
    fn_model_kind kind;
    if (fn_model_kind_parse(a.model, &kind) != FN_OK)
        return fn_cli_usage_error("train", "--model is fm, ffm or deepfm, not '%s'", a.model);
    if (kind != FN_MODEL_DEEPFM && (a.sparse_opt >= 0 || a.sparse_lr > 0))
        return fn_cli_usage_error("train", "--sparse-optimizer and --sparse-lr are DeepFM's "
                                           "(FM and FFM train with AdaGrad at --lr)");
    fn_train_options o = fn_train_options_default(kind);
    apply_overrides(&a, &o);
    o.progress = 1;
    fn_buf epochs = FN_BUF_INIT;
    if (a.json) o.on_epoch = epoch_json, o.on_epoch_ctx = &epochs;

    fn_error err = {0};
    fn_columns *spec = NULL;
    fn_dataset *train = NULL, *valid = NULL;
    fn_model *m = NULL;
    fn_train_report rep;
    rc = FN_EXIT_FAIL;
    if (a.spec && fn_columns_load(a.spec, &spec, &err) != FN_OK) goto done;
    if (read_data(&a, spec, a.train, &train, &err) != FN_OK) goto done;
    if (a.valid && read_data(&a, spec, a.valid, &valid, &err) != FN_OK) goto done;
    if (fn_model_train(&o, train, valid, spec ? fn_columns_sha256(spec) : NULL, &m, &rep, &err) !=
        FN_OK)
        goto done;
    if (epochs.oom) {
        fn_error_set(&err, FN_ERR_NOMEM, "out of memory keeping the epochs' figures");
        goto done;
    }
    if (fn_model_save(m, a.out, &err) != FN_OK) goto done;
    if (a.json) {
        fn_buf b = FN_BUF_INIT;
        fn_buf_printf(&b,
                      "{\"model\": \"%s\", \"train_examples\": %zu, \"valid_examples\": %zu, "
                      "\"epochs_run\": %d, \"best_epoch\": %d, \"train_loss\": %.9g, "
                      "\"valid_logloss\": ",
                      fn_model_kind_name(kind), train->n, valid ? valid->n : 0, rep.epochs_run,
                      rep.best_epoch, rep.train_loss);
        fn_buf_json_metric(&b, rep.best_valid_loss);
        fn_buf_puts(&b, ", \"valid_auc\": ");
        fn_buf_json_metric(&b, rep.best_valid_auc);
        fn_buf_printf(&b, ", \"examples_per_s\": %.1f, \"out\": ", rep.examples_per_s);
        fn_buf_json_string(&b, a.out, strlen(a.out));
        fn_buf_puts(&b, ", \"epochs\": [");
        fn_buf_append(&b, epochs.data, epochs.len);
        fn_buf_puts(&b, "]}\n");
        fn_cli_write_stdout(&b, NULL);
        fn_buf_free(&b);
    } else {
        printf("trained %s on %zu examples: %d epochs, best epoch %d", fn_model_kind_name(kind),
               train->n, rep.epochs_run, rep.best_epoch);
        if (!isnan(rep.best_valid_loss))
            printf(" (validation log loss %.6f, AUC %.6f)", rep.best_valid_loss,
                   rep.best_valid_auc);
        printf(", %.0f examples/s\nwrote %s\n", rep.examples_per_s, a.out);
    }
    rc = FN_EXIT_OK;
done:
    if (rc != FN_EXIT_OK) fn_cli_fail("train", &err);
    fn_buf_free(&epochs);
    fn_model_free(m);
    fn_dataset_free(train);
    fn_dataset_free(valid);
    fn_columns_free(spec);
    return rc;
}

int fn_cmd_eval(int argc, char **argv)
{
    args a;
    int rc = parse("eval", argc, argv, &a, eval_usage);
    if (rc >= 0) return rc;
    if (!a.model || !a.data) return fn_cli_usage_error("eval", "--model and --data are required");
    fn_error err = {0};
    fn_columns *spec = NULL;
    fn_dataset *d = NULL;
    fn_model *m = NULL;
    float *p = NULL;
    rc = FN_EXIT_FAIL;
    if (a.spec && fn_columns_load(a.spec, &spec, &err) != FN_OK) goto done;
    /* A libffm model has no spec to check; a TFRecord one must see its own. */
    if (fn_model_load(a.model, spec ? fn_columns_sha256(spec) : NULL, &m, &err) != FN_OK) goto done;
    if (read_data(&a, spec, a.data, &d, &err) != FN_OK) goto done;
    if (!(p = malloc((d->n ? d->n : 1) * sizeof *p))) {
        fn_error_set(&err, FN_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (fn_model_predict(m, d, a.threads, p, &err) != FN_OK) goto done;
    if (a.predictions && fn_cli_write_floats(a.predictions, p, d->n, &err) != FN_OK) goto done;
    double auc = fn_metric_auc(p, d->labels, d->n), ll = fn_metric_logloss(p, d->labels, d->n);
    if (a.json) {
        fn_buf b = FN_BUF_INIT;
        fn_buf_puts(&b, "{\"auc\": ");
        fn_buf_json_metric(&b, auc);
        fn_buf_puts(&b, ", \"logloss\": ");
        fn_buf_json_double(&b, ll);
        fn_buf_printf(&b, ", \"n\": %zu}\n", d->n);
        fn_cli_write_stdout(&b, NULL);
        fn_buf_free(&b);
    } else {
        printf("auc %.6f  logloss %.6f  n %zu\n", auc, ll, d->n);
    }
    rc = FN_EXIT_OK;
done:
    if (rc != FN_EXIT_OK) fn_cli_fail("eval", &err);
    free(p);
    fn_model_free(m);
    fn_dataset_free(d);
    fn_columns_free(spec);
    return rc;
}
