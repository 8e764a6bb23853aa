/*
 * rerank_lists.c - `funnel rerank lists`: the reranker's training lists from
 * the serving pipeline itself. Each user of a labels log (interactions that
 * came after the pipeline's history ends) is run through recall and rank as
 * a Rank request would be; the top of the ranked list becomes one list of
 * feature rows (the rerank stage's own, FN_PIPELINE_RERANK_FEATURES), each
 * item graded by what the user did with it later: 2 liked (label >= 1), 1
 * interacted, 0 not met. Lists with nothing to learn from (no graded item)
 * are left out.
 *
 * The output is svmrank text for `funnel rerank train|eval`, with the user
 * and item in each line's comment.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/arena.h"
#include "common/buf.h"
#include "common/file.h"
#include "common/progress.h"
#include "features/interactions.h"
#include "rerank/rerank.h"
#include "server/pipeline.h"

static const char usage_text[] =
    "usage: funnel rerank lists --config FILE --labels FILE.tfrecord --out FILE\n"
    "                           [--interactions FILE.tfrecord] [--cooc FILE] [--top N]\n"
    "                           [--max-users N] [--user-key KEY] [--item-key KEY]\n"
    "                           [--label-key KEY] [--all] [--json]\n"
    "\n"
    "Runs every user of the labels log through the pipeline of a funneld configuration\n"
    "(recall and rank, as a Rank request without a query) and writes the top N of each\n"
    "ranked list as one list of the rerank stage's feature rows (docs/reranker.md), in\n"
    "svmrank text for 'funnel rerank train'. An item's grade is what the user did with it\n"
    "in the labels log: 2 when its label is at least 1, 1 for any other interaction, 0 when\n"
    "it is not there. Users whose list holds no graded item are left out. The pipeline's\n"
    "history should end where the labels start (the demo: fit.tfrecord for the history,\n"
    "valid.tfrecord for the labels), so that no list sees its own answers.\n"
    "\n"
    "options:\n"
    "  --config FILE        the funneld configuration (its \"rerank\" model is not loaded)\n"
    "  --labels FILE        TFRecord (plain or gzip) of tf.Example interactions\n"
    "  --out FILE           the lists, svmrank text (written atomically)\n"
    "  --interactions FILE  the users' histories and popularity instead of the\n"
    "                       configuration's \"interactions\"\n"
    "  --cooc FILE          the co-occurrence table instead of recall.cooc.table\n"
    "  --top N              items per list (default: the configuration's rerank.top, or 50)\n"
    "  --max-users N        stop after N users (default: all), in user id order\n"
    "  --user-key KEY       the labels' user id feature (default user_id)\n"
    "  --item-key KEY       the labels' item id feature (default item_id)\n"
    "  --label-key KEY      the labels' label feature (default label; absent counts 1)\n"
    "  --all                keep the lists without a graded item too (to score what\n"
    "                       funneld would rerank for these users)\n"
    "  --json               {\"users\", \"lists\", \"items\", \"graded\", \"labels\",\n"
    "                       \"ndcg10\", \"features\", \"out\"}: graded items in the lists\n"
    "                       written, distinct labelled items of the users run, ndcg10\n"
    "                       the rank stage's order's NDCG@10 over the lists written\n";

typedef struct args {
    const char *config, *labels, *out, *interactions, *cooc;
    const char *user_key, *item_key, *label_key;
    int top, json, all;
    uint64_t max_users;
} args;

/* One labelled interaction; sorted by user, then item. */
typedef struct label {
    const char *user, *item;
    float grade;
} label;

static int cmp_label(const void *a, const void *b)
{
    const label *x = a, *y = b;
    int c = strcmp(x->user, y->user);
    return c ? c : strcmp(x->item, y->item);
}

static int parse(int argc, char **argv, args *a)
{
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                         {"labels", required_argument, 0, 'l'},
                                         {"out", required_argument, 0, 'o'},
                                         {"interactions", required_argument, 0, 'i'},
                                         {"cooc", required_argument, 0, 'C'},
                                         {"top", required_argument, 0, 't'},
                                         {"max-users", required_argument, 0, 'm'},
                                         {"user-key", required_argument, 0, 'U'},
                                         {"item-key", required_argument, 0, 'I'},
                                         {"label-key", required_argument, 0, 'L'},
                                         {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {"all", no_argument, 0, 'a'},
                                         {0, 0, 0, 0}};
    static const char *cmd = "rerank lists";
    *a = (args){.user_key = "user_id", .item_key = "item_id", .label_key = "label"};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            a->config = optarg;
            break;
        case 'l':
            a->labels = optarg;
            break;
        case 'o':
            a->out = optarg;
            break;
        case 'i':
            a->interactions = optarg;
            break;
        case 'C':
            a->cooc = optarg;
            break;
        case 't':
            if (!fn_cli_int(cmd, "--top", optarg, 1, 10000, &a->top)) return FN_EXIT_USAGE;
            break;
        case 'm':
            if (!fn_cli_u64(cmd, "--max-users", optarg, &a->max_users)) return FN_EXIT_USAGE;
            break;
        case 'U':
            a->user_key = optarg;
            break;
        case 'I':
            a->item_key = optarg;
            break;
        case 'L':
            a->label_key = optarg;
            break;
        case 'j':
            a->json = 1;
            break;
        case 'a':
            a->all = 1;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return FN_EXIT_OK;
        case ':':
            return fn_cli_usage_error(cmd, "%s needs a value", argv[optind - 1]);
        default:
            return fn_cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return fn_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!a->config) return fn_cli_usage_error(cmd, "--config FILE is required");
    if (!a->labels) return fn_cli_usage_error(cmd, "--labels FILE.tfrecord is required");
    if (!a->out) return fn_cli_usage_error(cmd, "--out FILE is required");
    return -1;
}

typedef struct label_log {
    fn_arena *ids;
    label *v;
    size_t n, cap;
} label_log;

static fn_status take_label(void *ctx, const fn_interaction *x, fn_error *err)
{
    label_log *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 4096;
        label *m = realloc(l->v, cap * sizeof *m);
        if (!m) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        l->v = m, l->cap = cap;
    }
    char *u = fn_arena_strndup(l->ids, x->user, strlen(x->user));
    char *i = fn_arena_strndup(l->ids, x->item, strlen(x->item));
    if (!u || !i) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    l->v[l->n++] = (label){u, i, x->label >= 1 ? 2.0f : 1.0f};
    return FN_OK;
}

/* The labels log, sorted; ids live in arena. */
static fn_status read_labels(const args *a, fn_arena *arena, label **out, size_t *n_out,
                             fn_error *err)
{
    const fn_interaction_keys k = {a->user_key, a->item_key, NULL, a->label_key, 1};
    label_log l = {.ids = arena};
    fn_status st = fn_interactions_read(a->labels, &k, take_label, &l, NULL, err);
    if (st == FN_OK && !l.n)
        st = fn_error_set(err, FN_ERR_INVALID, "%s: no interactions", a->labels);
    if (st != FN_OK) {
        free(l.v);
        return st;
    }
    qsort(l.v, l.n, sizeof *l.v, cmp_label);
    /* an item a user met twice counts once, with its best grade */
    size_t m = 0;
    for (size_t i = 0; i < l.n; i++) {
        if (m && !cmp_label(&l.v[m - 1], &l.v[i])) {
            if (l.v[i].grade > l.v[m - 1].grade) l.v[m - 1].grade = l.v[i].grade;
        } else {
            l.v[m++] = l.v[i];
        }
    }
    *out = l.v, *n_out = m;
    return FN_OK;
}

typedef struct totals {
    uint64_t users, lists, items, graded, labels;
    double ndcg10;
} totals;

static int cmp_item(const void *key, const void *x)
{
    return strcmp(key, ((const label *)x)->item);
}

/* The grade of item among one user's labels (sorted by item, one each); 0 when absent. */
static float grade_of(const label *l, size_t n, const char *item)
{
    const label *hit = bsearch(item, l, n, sizeof *l, cmp_item);
    return hit ? hit->grade : 0.0f;
}

/* Appends one user's list (when it has a graded item) to text. */
static fn_status one_user(fn_pipeline *p, const args *a, const label *l, size_t n, fn_arena *arena,
                          fn_buf *text, totals *t, fn_error *err)
{
    Funnel__V1__RankRequest q;
    funnel__v1__rank_request__init(&q);
    q.user_id = (char *)l[0].user;
    fn_pipeline_list list;
    fn_arena_reset(arena);
    fn_status st = fn_pipeline_rerank_input(p, &q, (size_t)a->top, arena, &list, err);
    if (st != FN_OK) return fn_error_prefix(err, "user '%s'", l[0].user);
    t->users++;
    t->labels += n;
    float *grades = fn_arena_alloc(arena, (list.n + 1) * sizeof *grades);
    float *order = fn_arena_alloc(arena, (list.n + 1) * sizeof *order);
    if (!grades || !order) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    size_t graded = 0;
    for (size_t k = 0; k < list.n; k++) {
        grades[k] = grade_of(l, n, list.ids[k]);
        order[k] = -(float)k;
        graded += grades[k] > 0;
    }
    if (!graded && !a->all) return FN_OK;
    t->lists++, t->items += list.n, t->graded += graded;
    t->ndcg10 += fn_metric_ndcg(order, grades, list.n, 10);
    for (size_t k = 0; k < list.n; k++) {
        fn_buf_printf(text, "%g qid:%" PRIu64, grades[k], t->lists);
        const float *row = list.features + k * FN_PIPELINE_RERANK_FEATURES;
        for (int c = 0; c < FN_PIPELINE_RERANK_FEATURES; c++)
            fn_buf_printf(text, " %d:%.9g", c + 1, row[c]);
        fn_buf_printf(text, " # %s %s\n", l[0].user, list.ids[k]);
    }
    return text->oom ? fn_error_set(err, FN_ERR_NOMEM, "out of memory") : FN_OK;
}

static int run(const args *a)
{
    static const char *cmd = "rerank lists";
    fn_error err = {0};
    fn_arena *ids = fn_arena_new(1 << 16), *scratch = fn_arena_new(1 << 20);
    label *l = NULL;
    size_t n = 0;
    fn_pipeline *p = NULL;
    fn_buf text = FN_BUF_INIT;
    totals t = {0};
    const fn_pipeline_overrides over = {a->interactions, a->cooc, 1};
    fn_status st = ids && scratch ? read_labels(a, ids, &l, &n, &err)
                                  : fn_error_set(&err, FN_ERR_NOMEM, "out of memory");
    if (st == FN_OK) st = fn_pipeline_load_with(a->config, &over, &p, &err);
    fn_progress *bar = st == FN_OK ? fn_progress_new("users", 0) : NULL;
    for (size_t i = 0; st == FN_OK && i < n && (!a->max_users || t.users < a->max_users);) {
        size_t j = i + 1;
        while (j < n && !strcmp(l[j].user, l[i].user)) j++;
        st = one_user(p, a, l + i, j - i, scratch, &text, &t, &err);
        fn_progress_update(bar, t.users, NULL);
        i = j;
    }
    fn_progress_finish(bar);
    if (st == FN_OK && !t.graded && !a->all)
        st = fn_error_set(&err, FN_ERR_INVALID,
                          "no list holds a labelled item: do the labels' ids match the "
                          "pipeline's items (--item-key, --user-key)?");
    if (st == FN_OK) st = fn_file_write_atomic(a->out, text.data, text.len, &err);
    fn_buf_free(&text);
    fn_pipeline_unref(p);
    free(l);
    fn_arena_free(ids);
    fn_arena_free(scratch);
    if (st != FN_OK) return fn_cli_fail(cmd, &err);
    const double ndcg = t.lists ? t.ndcg10 / (double)t.lists : 0.0;
    if (a->json)
        printf("{\"users\": %" PRIu64 ", \"lists\": %" PRIu64 ", \"items\": %" PRIu64
               ", \"graded\": %" PRIu64 ", \"labels\": %" PRIu64
               ", \"ndcg10\": %.6f, \"features\": %d, \"out\": \"%s\"}\n",
               t.users, t.lists, t.items, t.graded, t.labels, ndcg, FN_PIPELINE_RERANK_FEATURES,
               a->out);
    else
        printf("%" PRIu64 " users, %" PRIu64 " lists of %" PRIu64 " items (%" PRIu64
               " graded, of the users' %" PRIu64 " labelled items)\n"
               "NDCG@10 of the rank stage's order: %.4f\nwrote %s\n",
               t.users, t.lists, t.items, t.graded, t.labels, ndcg, a->out);
    return FN_EXIT_OK;
}

int fn_cmd_rerank_lists(int argc, char **argv)
{
    args a;
    int rc = parse(argc, argv, &a);
    return rc >= 0 ? rc : run(&a);
}
