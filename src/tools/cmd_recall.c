/*
 * cmd_recall.c - `funnel recall eval`: measures the recall stage (src/recall)
 * offline on a temporal split such as `funnel demo` writes (train.tfrecord,
 * test.tfrecord): per channel and for the merge of the channels, recall@K of
 * each test user's held-out positive items, the channels built from the
 * training ratings only.
 *
 * Channels: popularity (time-decayed counts of the training ratings),
 * item co-occurrence (built from the training positives, seeded with the
 * user's most recent training positives) and, when item embeddings are
 * given, ANN on the user vector (the mean embedding of the same recent
 * items, searched in an exact Flat index). Items the user rated in training
 * are removed from every channel's list before it is cut at K, as the
 * serving path excludes what the user has seen.
 */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/arena.h"
#include "common/buf.h"
#include "features/example.h"
#include "features/interactions.h"
#include "features/tfrecord.h"
#include "recall/recall.h"

static const char usage_text[] =
    "usage: funnel recall eval --train FILE.tfrecord --test FILE.tfrecord\n"
    "                          [--items FILE.tfrecord [--embedding-key KEY]]\n"
    "                          [-k K[,K...]] [--recent N] [--half-life-days D]\n"
    "                          [--cooc-top K] [--weights W,W[,W]] [--json]\n"
    "\n"
    "eval  recall@K of each channel and of their merge on a temporal split (as 'funnel\n"
    "      demo' writes train.tfrecord and test.tfrecord: one tf.Example per rating with\n"
    "      user_id, item_id, timestamp and label). For each test user with at least one\n"
    "      test positive (label 1), the targets are those items; recall@K is the share of\n"
    "      them among a channel's first K items, averaged over the users. Every channel\n"
    "      is built from the training file only:\n"
    "        popularity  every training rating counts 2^(-age / half-life), age taken\n"
    "                    from the latest training time\n"
    "        cooc        item co-occurrence (cosine, every pair of a user's items, top\n"
    "                    --cooc-top neighbours) over the training positives, seeded with\n"
    "                    the user's last N training positives (all training ratings when\n"
    "                    the user has no positive)\n"
    "        ann_user    with --items: an exact (Flat) index over the item embeddings,\n"
    "                    searched with the mean embedding of the same N items\n"
    "      Items the user rated in training are removed from every list before it is cut\n"
    "      at K. The merge takes K candidates from the channels round-robin,\n"
    "      de-duplicated (fn_recall_merge): by default each channel's quota is K, so a\n"
    "      channel that runs dry leaves its share to the others; with --weights channel\n"
    "      c's quota is ceil(K w_c / sum w), and a dry channel's share stays unused.\n"
    "\n"
    "options:\n"
    "  --train FILE           training ratings (TFRecord of tf.Example, plain or gzip)\n"
    "  --test FILE            held-out ratings\n"
    "  --items FILE           items with an embedding (float list) under --embedding-key,\n"
    "                         as 'funnel demo --semantic' writes items.tfrecord\n"
    "  --embedding-key KEY    the embedding feature (default embedding)\n"
    "  -k LIST                list sizes, comma-separated (default 100,500; at most 8)\n"
    "  --recent N             seed items per user (default 20)\n"
    "  --half-life-days D     popularity half-life in days (default 30)\n"
    "  --cooc-top K           neighbours kept per item (default 100)\n"
    "  --weights LIST         merge quotas in proportion, one weight per channel in the\n"
    "                         order popularity, cooc[, ann_user] (0: the channel only\n"
    "                         marks); default: every quota K\n"
    "  --user-key, --item-key, --time-key, --label-key KEY\n"
    "                         feature names (default user_id, item_id, timestamp, label;\n"
    "                         a rating is positive when its label is at least 1)\n"
    "  --json                 {\"users\", \"train\", \"test\", \"targets\", \"k\": [...],\n"
    "                         \"weights\": [...] or null,\n"
    "                         \"channels\": {NAME: {\"recall@K\": x, ...}, ...,\n"
    "                         \"merge\": {...}}, ...}\n";

enum {
    OPT_TRAIN = 1,
    OPT_TEST,
    OPT_ITEMS,
    OPT_EMB_KEY,
    OPT_RECENT,
    OPT_HALF_LIFE,
    OPT_COOC_TOP,
    OPT_WEIGHTS,
    OPT_USER_KEY,
    OPT_ITEM_KEY,
    OPT_TIME_KEY,
    OPT_LABEL_KEY,
    OPT_JSON,
    OPT_HELP
};

static const struct option long_opts[] = {
    {"train", required_argument, NULL, OPT_TRAIN},
    {"test", required_argument, NULL, OPT_TEST},
    {"items", required_argument, NULL, OPT_ITEMS},
    {"embedding-key", required_argument, NULL, OPT_EMB_KEY},
    {"recent", required_argument, NULL, OPT_RECENT},
    {"half-life-days", required_argument, NULL, OPT_HALF_LIFE},
    {"cooc-top", required_argument, NULL, OPT_COOC_TOP},
    {"weights", required_argument, NULL, OPT_WEIGHTS},
    {"user-key", required_argument, NULL, OPT_USER_KEY},
    {"item-key", required_argument, NULL, OPT_ITEM_KEY},
    {"time-key", required_argument, NULL, OPT_TIME_KEY},
    {"label-key", required_argument, NULL, OPT_LABEL_KEY},
    {"k", required_argument, NULL, 'k'},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

#define MAX_K 8

enum { CH_POP, CH_COOC, CH_ANN, N_CH };
static const char *const ch_names[N_CH] = {"popularity", "cooc", "ann_user"};

typedef struct options {
    const char *train, *test, *items, *emb_key, *user_key, *item_key, *time_key, *label_key;
    size_t k[MAX_K], nk, kmax;
    uint64_t recent, cooc_top;
    double half_life_days;
    double weights[N_CH];
    size_t n_weights;
    int json;
} options;

/* One rating, ids as indices into the sorted tables. */
typedef struct rating {
    uint32_t user, item;
    int64_t t;
    int label;
} rating;

/* A rating as read, before the ids are indexed. */
typedef struct raw_rating {
    char *user, *item;
    int64_t t;
    int label;
} raw_rating;

typedef struct raw_set {
    raw_rating *v;
    size_t n, cap;
} raw_set;

static void raw_free(raw_set *s)
{
    for (size_t i = 0; i < s->n; i++) free(s->v[i].user), free(s->v[i].item);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static fn_status take_rating(void *ctx, const fn_interaction *x, fn_error *err)
{
    raw_set *s = ctx;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 4096;
        raw_rating *v = realloc(s->v, cap * sizeof *v);
        if (!v) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        s->v = v, s->cap = cap;
    }
    raw_rating *r = &s->v[s->n];
    r->user = strdup(x->user);
    r->item = strdup(x->item);
    r->t = x->t;
    r->label = x->label >= 1;
    if (!r->user || !r->item) {
        free(r->user), free(r->item);
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    s->n++;
    return FN_OK;
}

/* Reads every rating of path into s. */
static fn_status read_ratings(const options *o, const char *path, raw_set *s, fn_error *err)
{
    const fn_interaction_keys k = {o->user_key, o->item_key, o->time_key, o->label_key, 0};
    return fn_interactions_read(path, &k, take_rating, s, NULL, err);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted distinct ids: the table the indices refer to. */
typedef struct id_table {
    char **v; /* borrowed from the raw sets */
    size_t n;
} id_table;

static void table_build(id_table *t, char **ids, size_t n)
{
    t->v = ids;
    t->n = 0;
    if (!n) return;
    qsort(ids, n, sizeof *ids, cmp_str);
    size_t m = 1;
    for (size_t i = 1; i < n; i++)
        if (strcmp(ids[i], ids[m - 1])) ids[m++] = ids[i];
    t->n = m;
}

static int64_t table_find(const id_table *t, const char *id)
{
    char **p = t->n ? bsearch(&id, t->v, t->n, sizeof *t->v, cmp_str) : NULL;
    return p ? (int64_t)(p - t->v) : -1;
}

static int by_user_time(const void *a, const void *b)
{
    const rating *x = a, *y = b;
    if (x->user != y->user) return x->user < y->user ? -1 : 1;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return x->item < y->item ? -1 : x->item > y->item;
}

/* Item embeddings by item index (rows of dim; has[i] when item i has one). */
typedef struct embeddings {
    float *v;
    uint8_t *has;
    size_t dim, n;
} embeddings;

static fn_status read_embeddings(const options *o, const id_table *items, fn_arena *arena,
                                 embeddings *e, fn_error *err)
{
    fn_tfrecord_reader *r = NULL;
    fn_status st = fn_tfrecord_reader_open(o->items, NULL, &r, err);
    if (st != FN_OK) return st;
    size_t rec = 0;
    if (!(e->has = calloc(items->n ? items->n : 1, 1))) {
        st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (;; rec++) {
        const uint8_t *data;
        size_t len;
        if ((st = fn_tfrecord_read(r, &data, &len, err)) == FN_END) {
            st = FN_OK;
            break;
        }
        if (st != FN_OK) break;
        fn_arena_reset(arena);
        Tensorflow__Example *ex = NULL;
        char id[FN_CLI_ID_MAX + 1];
        if ((st = fn_example_decode_arena(data, len, arena, &ex, err)) != FN_OK) break;
        const Tensorflow__Features *f = fn_example_features(ex);
        if ((st = fn_cli_feature_id(f, o->item_key, id, err)) != FN_OK) break;
        int64_t idx = table_find(items, id);
        const Tensorflow__Feature *ft = fn_features_get(f, o->emb_key);
        if (idx < 0 || !ft) continue; /* an item nobody rated, or one without a vector */
        if (fn_feature_kind_of(ft) != FN_FEATURE_FLOAT || !fn_feature_size(ft)) {
            st = fn_error_set(err, FN_ERR_INVALID, "feature '%s' is not a list of floats",
                              o->emb_key);
            break;
        }
        size_t dim = ft->float_list->n_value;
        if (!e->dim) {
            e->dim = dim;
            if (!(e->v = calloc(items->n * dim, sizeof *e->v))) {
                st = fn_error_set(err, FN_ERR_NOMEM, "out of memory for the embeddings");
                break;
            }
        } else if (dim != e->dim) {
            st = fn_error_set(err, FN_ERR_INVALID, "feature '%s' has %zu values, earlier %zu",
                              o->emb_key, dim, e->dim);
            break;
        }
        memcpy(e->v + (size_t)idx * dim, ft->float_list->value, dim * sizeof(float));
        e->has[idx] = 1;
        e->n++;
    }
    if (st != FN_OK) fn_error_prefix(err, "%s: record %zu", o->items, rec);
    if (st == FN_OK && !e->n)
        st = fn_error_set(err, FN_ERR_INVALID, "%s: no rated item has a '%s' vector", o->items,
                          o->emb_key);
done:
    fn_tfrecord_reader_close(r);
    return st;
}

/* Filtered channel lists for one user: at most kmax items not rated in training. */
typedef struct list {
    fn_recall_item *v;
    size_t n;
} list;

/* Channel c's merge quota at K under --weights: ceil(K w_c / sum w). */
static size_t quota(const options *o, size_t c, size_t K)
{
    double sum = 0;
    for (size_t i = 0; i < o->n_weights; i++) sum += o->weights[i];
    return (size_t)ceil((double)K * o->weights[c] / sum - 1e-9);
}

static void put_json_num(fn_buf *b, double x)
{
    fn_buf_printf(b, "%.4f", x);
}

static int cmd_eval(const options *o)
{
    fn_error err = {0};
    int rc = FN_EXIT_FAIL;
    fn_arena *arena = fn_arena_new(1 << 16);
    raw_set tr = {0}, te = {0};
    char **uid = NULL, **iid = NULL;
    id_table users = {0}, items = {0};
    rating *train = NULL, *test = NULL;
    size_t *ustart = NULL;
    uint32_t *excl = NULL, *tgt = NULL, *ntgt = NULL;
    fn_popularity *pop = NULL;
    fn_recall_item *pop_all = NULL;
    fn_cooc_builder *cb = NULL;
    fn_cooc *cooc = NULL;
    embeddings emb = {0};
    fn_ann *ann = NULL;
    const char **seed = NULL;
    float *seed_vecs = NULL, *ann_scores = NULL;
    int64_t *ann_ids = NULL;
    fn_recall_item *buf = NULL;
    list lists[N_CH] = {{0}};
    fn_recall_candidate *merged = NULL;
    double sum[N_CH + 1][MAX_K] = {{0}};
    size_t n_eval = 0, n_targets = 0, n_ch = o->items ? N_CH : CH_ANN;

    if (!arena) {
        fn_error_set(&err, FN_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (read_ratings(o, o->train, &tr, &err) != FN_OK) goto done;
    if (read_ratings(o, o->test, &te, &err) != FN_OK) goto done;
    if (!tr.n) {
        fn_error_set(&err, FN_ERR_INVALID, "%s holds no ratings", o->train);
        goto done;
    }
    /* Index users and items over both files. */
    size_t n_all = tr.n + te.n;
    uid = malloc(n_all * sizeof *uid);
    iid = malloc(n_all * sizeof *iid);
    train = malloc(tr.n * sizeof *train);
    if (!uid || !iid || !train) {
        fn_error_set(&err, FN_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_all; i++) {
        const raw_rating *x = i < tr.n ? &tr.v[i] : &te.v[i - tr.n];
        uid[i] = x->user;
        iid[i] = x->item;
    }
    table_build(&users, uid, n_all);
    table_build(&items, iid, n_all);
    int64_t t_max = INT64_MIN;
    for (size_t i = 0; i < tr.n; i++) {
        train[i] = (rating){(uint32_t)table_find(&users, tr.v[i].user),
                            (uint32_t)table_find(&items, tr.v[i].item), tr.v[i].t, tr.v[i].label};
        if (tr.v[i].t > t_max) t_max = tr.v[i].t;
    }
    qsort(train, tr.n, sizeof *train, by_user_time);
    ustart = calloc(users.n + 1, sizeof *ustart);
    excl = calloc(items.n, sizeof *excl);
    tgt = calloc(items.n, sizeof *tgt);
    ntgt = calloc(users.n, sizeof *ntgt);
    if (!ustart || !excl || !tgt || !ntgt) {
        fn_error_set(&err, FN_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < tr.n; i++) ustart[train[i].user + 1]++;
    for (size_t u = 0; u < users.n; u++) ustart[u + 1] += ustart[u];

    /* Channels from the training ratings. */
    if (fn_popularity_new(o->half_life_days * 86400.0, t_max, &pop, &err) != FN_OK) goto done;
    fn_cooc_options co = {.top_k = (uint32_t)o->cooc_top, .window = 0};
    if (fn_cooc_builder_new(&co, &cb, &err) != FN_OK) goto done;
    for (size_t i = 0; i < tr.n; i++) {
        if (fn_popularity_add(pop, tr.v[i].item, tr.v[i].t, 1.0, &err) != FN_OK) goto done;
        if (tr.v[i].label &&
            fn_cooc_builder_add(cb, tr.v[i].user, tr.v[i].item, tr.v[i].t, &err) != FN_OK)
            goto done;
    }
    if (fn_popularity_finalize(pop, &err) != FN_OK) goto done;
    size_t n_pop = fn_popularity_count(pop), got = 0;
    if (!(pop_all = malloc(n_pop * sizeof *pop_all))) {
        fn_error_set(&err, FN_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (fn_popularity_top(pop, n_pop, pop_all, &n_pop, &err) != FN_OK) goto done;
    if (fn_cooc_build(cb, &cooc, NULL, &err) != FN_OK) goto done;
    if (o->items) {
        if (read_embeddings(o, &items, arena, &emb, &err) != FN_OK) goto done;
        if (fn_ann_set_threads(1, &err) != FN_OK) fn_error_clear(&err);
        if (fn_ann_new("Flat", emb.dim, &ann, &err) != FN_OK) goto done;
        for (size_t i = 0; i < items.n; i++) {
            int64_t id = (int64_t)i;
            if (emb.has[i] && fn_ann_add(ann, 1, emb.v + i * emb.dim, &id, &err) != FN_OK)
                goto done;
        }
    }

    /* The targets: test positives per user. */
    for (size_t i = 0; i < te.n; i++)
        if (te.v[i].label) ntgt[table_find(&users, te.v[i].user)]++;
    /* Test ratings grouped by user for the loop below. */
    if (!(test = malloc((te.n ? te.n : 1) * sizeof *test))) {
        fn_error_set(&err, FN_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < te.n; i++)
        test[i] = (rating){(uint32_t)table_find(&users, te.v[i].user),
                           (uint32_t)table_find(&items, te.v[i].item), te.v[i].t, te.v[i].label};
    qsort(test, te.n, sizeof *test, by_user_time);

    size_t kmax = o->kmax, max_train = 0;
    for (size_t u = 0; u < users.n; u++)
        if (ustart[u + 1] - ustart[u] > max_train) max_train = ustart[u + 1] - ustart[u];
    size_t fetch = kmax + max_train;
    seed = malloc((o->recent ? o->recent : 1) * sizeof *seed);
    buf = malloc(fetch * sizeof *buf);
    merged = malloc(kmax * sizeof *merged);
    ann_ids = malloc(fetch * sizeof *ann_ids);
    ann_scores = malloc(fetch * sizeof *ann_scores);
    if (emb.dim) seed_vecs = malloc(o->recent * emb.dim * sizeof *seed_vecs);
    for (size_t c = 0; c < N_CH; c++) lists[c].v = malloc(kmax * sizeof *lists[c].v);
    if (!seed || !buf || !merged || !ann_ids || !ann_scores || (emb.dim && !seed_vecs) ||
        !lists[0].v || !lists[1].v || !lists[2].v) {
        fn_error_set(&err, FN_ERR_NOMEM, "out of memory");
        goto done;
    }

    size_t ti = 0;
    for (size_t u = 0; u < users.n; u++) {
        uint32_t stamp = (uint32_t)u + 1;
        size_t t0 = ti;
        while (ti < te.n && test[ti].user == u) ti++;
        if (!ntgt[u]) continue;
        const rating *hist = train + ustart[u];
        size_t nh = ustart[u + 1] - ustart[u];
        for (size_t i = 0; i < nh; i++) excl[hist[i].item] = stamp;
        size_t nt = 0;
        for (size_t i = t0; i < ti; i++)
            if (test[i].label && tgt[test[i].item] != stamp && excl[test[i].item] != stamp) {
                tgt[test[i].item] = stamp;
                nt++;
            }
        if (!nt) continue; /* every positive was rated in training too */
        n_eval++;
        n_targets += nt;
        /* Seed: the last N training positives, newest first; all ratings without any. */
        size_t ns = 0;
        int any_pos = 0;
        for (size_t i = 0; i < nh; i++) any_pos |= hist[i].label;
        for (size_t i = nh; i-- > 0 && ns < o->recent;)
            if (hist[i].label || !any_pos) seed[ns++] = items.v[hist[i].item];

        /* popularity */
        lists[CH_POP].n = 0;
        for (size_t i = 0; i < n_pop && lists[CH_POP].n < kmax; i++)
            if (excl[table_find(&items, pop_all[i].id)] != stamp)
                lists[CH_POP].v[lists[CH_POP].n++] = pop_all[i];
        /* co-occurrence */
        lists[CH_COOC].n = 0;
        if (fn_cooc_candidates(cooc, seed, ns, fetch, buf, &got, &err) != FN_OK) goto done;
        for (size_t i = 0; i < got && lists[CH_COOC].n < kmax; i++)
            if (excl[table_find(&items, buf[i].id)] != stamp)
                lists[CH_COOC].v[lists[CH_COOC].n++] = buf[i];
        /* ANN on the user vector */
        lists[CH_ANN].n = 0;
        if (ann) {
            size_t nv = 0;
            for (size_t i = 0; i < ns; i++) {
                int64_t idx = table_find(&items, seed[i]);
                if (emb.has[idx])
                    memcpy(seed_vecs + nv++ * emb.dim, emb.v + (size_t)idx * emb.dim,
                           emb.dim * sizeof(float));
            }
            size_t k = fetch < emb.n ? fetch : emb.n;
            if (nv) {
                if (fn_recall_user_ann(ann, nv, seed_vecs, k, NULL, ann_ids, ann_scores, &err) !=
                    FN_OK)
                    goto done;
                for (size_t i = 0; i < k && lists[CH_ANN].n < kmax; i++)
                    if (ann_ids[i] >= 0 && excl[ann_ids[i]] != stamp)
                        lists[CH_ANN].v[lists[CH_ANN].n++] =
                            (fn_recall_item){items.v[ann_ids[i]], ann_scores[i]};
            }
        }
        for (size_t j = 0; j < o->nk; j++) {
            size_t K = o->k[j];
            for (size_t c = 0; c < n_ch; c++) {
                size_t hits = 0, n = lists[c].n < K ? lists[c].n : K;
                for (size_t i = 0; i < n; i++)
                    hits += tgt[table_find(&items, lists[c].v[i].id)] == stamp;
                sum[c][j] += (double)hits / (double)nt;
            }
            fn_recall_channel ch[N_CH];
            for (size_t c = 0; c < n_ch; c++)
                ch[c] = (fn_recall_channel){lists[c].v, lists[c].n < K ? lists[c].n : K,
                                            o->n_weights ? quota(o, c, K) : K};
            size_t nm = 0, hits = 0;
            if (fn_recall_merge(ch, n_ch, K, merged, NULL, &nm, &err) != FN_OK) goto done;
            for (size_t i = 0; i < nm; i++) hits += tgt[table_find(&items, merged[i].id)] == stamp;
            sum[N_CH][j] += (double)hits / (double)nt;
        }
    }
    fn_buf out = FN_BUF_INIT;
    if (o->json) {
        fn_buf_printf(&out,
                      "{\"users\": %zu, \"train\": %zu, \"test\": %zu, \"targets\": %zu, "
                      "\"items\": %zu, \"embedded_items\": %zu, \"recent\": %llu, "
                      "\"half_life_days\": %g, \"cooc_top\": %llu, \"k\": [",
                      n_eval, tr.n, te.n, n_targets, items.n, emb.n, (unsigned long long)o->recent,
                      o->half_life_days, (unsigned long long)o->cooc_top);
        for (size_t j = 0; j < o->nk; j++) fn_buf_printf(&out, "%s%zu", j ? ", " : "", o->k[j]);
        fn_buf_puts(&out, "], \"weights\": ");
        if (!o->n_weights) fn_buf_puts(&out, "null");
        for (size_t j = 0; j < o->n_weights; j++)
            fn_buf_printf(&out, "%s%g%s", j ? ", " : "[", o->weights[j],
                          j + 1 == o->n_weights ? "]" : "");
        fn_buf_puts(&out, ", \"channels\": {");
        for (size_t c = 0; c <= N_CH; c++) {
            if (c < N_CH && c >= n_ch) continue;
            fn_buf_printf(&out, "%s\"%s\": {", c ? ", " : "", c < N_CH ? ch_names[c] : "merge");
            for (size_t j = 0; j < o->nk; j++) {
                fn_buf_printf(&out, "%s\"recall@%zu\": ", j ? ", " : "", o->k[j]);
                put_json_num(&out, n_eval ? sum[c][j] / (double)n_eval : 0);
            }
            fn_buf_putc(&out, '}');
        }
        fn_buf_puts(&out, "}}\n");
    } else {
        fn_buf_printf(&out,
                      "%zu test users with held-out positives (%zu targets), %zu train "
                      "ratings, %zu items (%zu embedded)\n%-12s",
                      n_eval, n_targets, tr.n, items.n, emb.n, "channel");
        for (size_t j = 0; j < o->nk; j++) {
            char h[32];
            snprintf(h, sizeof h, "recall@%zu", o->k[j]);
            fn_buf_printf(&out, " %10s", h);
        }
        fn_buf_putc(&out, '\n');
        for (size_t c = 0; c <= N_CH; c++) {
            if (c < N_CH && c >= n_ch) continue;
            fn_buf_printf(&out, "%-12s", c < N_CH ? ch_names[c] : "merge");
            for (size_t j = 0; j < o->nk; j++)
                fn_buf_printf(&out, " %10.4f", n_eval ? sum[c][j] / (double)n_eval : 0);
            fn_buf_putc(&out, '\n');
        }
    }
    fn_status st = fn_cli_write_stdout(&out, &err);
    fn_buf_free(&out);
    if (st == FN_OK) rc = FN_EXIT_OK;
done:
    if (rc != FN_EXIT_OK) fn_cli_fail("recall", &err);
    for (size_t c = 0; c < N_CH; c++) free(lists[c].v);
    free(merged), free(buf), free(seed), free(seed_vecs), free(ann_ids), free(ann_scores);
    fn_ann_free(ann);
    free(emb.v), free(emb.has);
    fn_cooc_free(cooc);
    fn_cooc_builder_free(cb);
    free(pop_all);
    fn_popularity_free(pop);
    free(ustart), free(excl), free(tgt), free(ntgt);
    free(train), free(test), free(uid), free(iid);
    raw_free(&tr), raw_free(&te);
    fn_arena_free(arena);
    return rc;
}

static int parse_k_list(const char *s, options *o)
{
    o->nk = 0;
    o->kmax = 0;
    const char *p = s;
    while (*p) {
        char *end;
        if (o->nk == MAX_K) return fn_cli_usage_error("recall", "-k takes at most %d sizes", MAX_K);
        if (*p < '0' || *p > '9')
            return fn_cli_usage_error("recall", "-k expects sizes like 100,500, got '%s'", s);
        unsigned long long v = strtoull(p, &end, 10);
        if ((*end && *end != ',') || v < 1 || v > 100000)
            return fn_cli_usage_error("recall", "-k: sizes are from 1 to 100000, got '%s'", s);
        o->k[o->nk++] = (size_t)v;
        if (v > o->kmax) o->kmax = (size_t)v;
        p = *end ? end + 1 : end;
    }
    if (!o->nk) return fn_cli_usage_error("recall", "-k expects sizes like 100,500");
    return FN_EXIT_OK;
}

int fn_cmd_recall(int argc, char **argv)
{
    options o = {.emb_key = "embedding",
                 .user_key = "user_id",
                 .item_key = "item_id",
                 .time_key = "timestamp",
                 .label_key = "label",
                 .k = {100, 500},
                 .nk = 2,
                 .kmax = 500,
                 .recent = 20,
                 .cooc_top = 100,
                 .half_life_days = 30};
    optind = 1;
    int c, r;
    while ((c = getopt_long(argc, argv, "hk:", long_opts, NULL)) != -1) {
        switch (c) {
        case OPT_TRAIN:
            o.train = optarg;
            break;
        case OPT_TEST:
            o.test = optarg;
            break;
        case OPT_ITEMS:
            o.items = optarg;
            break;
        case OPT_EMB_KEY:
            o.emb_key = optarg;
            break;
        case OPT_USER_KEY:
            o.user_key = optarg;
            break;
        case OPT_ITEM_KEY:
            o.item_key = optarg;
            break;
        case OPT_TIME_KEY:
            o.time_key = optarg;
            break;
        case OPT_LABEL_KEY:
            o.label_key = optarg;
            break;
        case OPT_RECENT:
            if (!fn_cli_u64_in("recall", "--recent", optarg, 1, 100000, &o.recent))
                return FN_EXIT_USAGE;
            break;
        case OPT_COOC_TOP:
            if (!fn_cli_u64_in("recall", "--cooc-top", optarg, 1, 100000, &o.cooc_top))
                return FN_EXIT_USAGE;
            break;
        case OPT_HALF_LIFE: {
            char *end;
            o.half_life_days = strtod(optarg, &end);
            if (!*optarg || *end || !isfinite(o.half_life_days) || o.half_life_days <= 0)
                return fn_cli_usage_error("recall", "--half-life-days expects a positive number");
            break;
        }
        case OPT_WEIGHTS: {
            const char *p = optarg;
            o.n_weights = 0;
            while (*p) {
                char *end;
                double w = strtod(p, &end);
                if (end == p || (*end && *end != ',') || !isfinite(w) || w < 0 ||
                    o.n_weights == N_CH)
                    return fn_cli_usage_error("recall",
                                              "--weights expects 2 or 3 weights like 1,3, got "
                                              "'%s'",
                                              optarg);
                o.weights[o.n_weights++] = w;
                p = *end ? end + 1 : end;
            }
            break;
        }
        case 'k':
            if ((r = parse_k_list(optarg, &o)) != FN_EXIT_OK) return r;
            break;
        case OPT_JSON:
            o.json = 1;
            break;
        case 'h':
        case OPT_HELP:
            fputs(usage_text, stdout);
            return FN_EXIT_OK;
        default:
            return fn_cli_usage_error("recall", "unknown option");
        }
    }
    if (optind >= argc) return fn_cli_usage_error("recall", "give a subcommand: eval");
    if (strcmp(argv[optind], "eval") != 0)
        return fn_cli_usage_error("recall", "unknown subcommand '%s' (eval)", argv[optind]);
    if (optind + 1 < argc)
        return fn_cli_usage_error("recall", "unexpected argument '%s'", argv[optind + 1]);
    if (!o.train || !o.test) return fn_cli_usage_error("recall", "eval needs --train and --test");
    if (o.n_weights) {
        double sum = 0;
        for (size_t i = 0; i < o.n_weights; i++) sum += o.weights[i];
        if (o.n_weights != (o.items ? 3u : 2u) || !(sum > 0))
            return fn_cli_usage_error("recall",
                                      "--weights takes one weight per channel (%d: popularity, "
                                      "cooc%s), not all 0",
                                      o.items ? 3 : 2, o.items ? ", ann_user" : "");
    }
    return cmd_eval(&o);
}
