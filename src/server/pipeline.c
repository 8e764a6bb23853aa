/*
 * pipeline.c - reading a pipeline configuration and loading what it names:
 * the feature store (read-only), the feature spec and the CTR model trained
 * on it, the users' histories and the popularity table from the
 * interaction log, the co-occurrence table. Unknown keys, missing files and
 * mismatched parts (a model trained on another spec) are errors naming the
 * key or the file, so `funneld --config FILE --check` catches them before a
 * server starts.
 */
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "common/log.h"
#include "features/interactions.h"
#include "pipeline_impl.h"

#define CONFIG_MAX_BYTES (1 << 20)

/* ---- the configuration ---- */

typedef struct cfg_reader {
    const char *path; /* the configuration file, for messages */
    char dir[4096];   /* its folder: relative paths start there */
    const fn_pipeline_overrides *over;
} cfg_reader;

static fn_status bad(const cfg_reader *c, fn_error *err, const char *what, const char *why)
{
    return fn_error_set(err, FN_ERR_INVALID, "%s: '%s' %s", c->path, what, why);
}

static fn_status check_keys(const cfg_reader *c, json_t *obj, const char *where,
                            const char *const *allowed, fn_error *err)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++) ok |= !strcmp(*a, k);
        if (!ok) {
            char what[160];
            snprintf(what, sizeof what, "%s%s%s", where, *where ? "." : "", k);
            return bad(c, err, what, "is not a known setting");
        }
    }
    return FN_OK;
}

/* A path setting resolved against the configuration's folder (malloc'ed into *out). */
static fn_status get_path(const cfg_reader *c, json_t *obj, const char *key, const char *what,
                          int required, char **out, fn_error *err)
{
    *out = NULL;
    json_t *v = json_object_get(obj, key);
    if (!v) return required ? bad(c, err, what, "is required") : FN_OK;
    if (!json_is_string(v) || !json_string_length(v)) return bad(c, err, what, "must be a path");
    const char *s = json_string_value(v);
    size_t n = strlen(c->dir) + strlen(s) + 2;
    if (!(*out = malloc(n))) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    if (s[0] == '/')
        snprintf(*out, n, "%s", s);
    else
        snprintf(*out, n, "%s/%s", c->dir, s);
    return FN_OK;
}

static fn_status get_count(const cfg_reader *c, json_t *obj, const char *key, const char *what,
                           size_t lo, size_t hi, size_t def, size_t *out, fn_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        *out = def;
        return FN_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)lo ||
        json_integer_value(v) > (json_int_t)hi) {
        char why[96];
        snprintf(why, sizeof why, "must be a whole number from %zu to %zu", lo, hi);
        return bad(c, err, what, why);
    }
    *out = (size_t)json_integer_value(v);
    return FN_OK;
}

static fn_status get_real(const cfg_reader *c, json_t *obj, const char *key, const char *what,
                          double lo, double hi, double def, double *out, fn_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        *out = def;
        return FN_OK;
    }
    if (!json_is_number(v) || !(json_number_value(v) >= lo && json_number_value(v) <= hi)) {
        char why[96];
        snprintf(why, sizeof why, "must be a number from %g to %g", lo, hi);
        return bad(c, err, what, why);
    }
    *out = json_number_value(v);
    return FN_OK;
}

static fn_status get_word(const cfg_reader *c, json_t *obj, const char *key, const char *what,
                          const char *def, char **out, fn_error *err)
{
    json_t *v = json_object_get(obj, key);
    const char *s = def;
    if (v) {
        if (!json_is_string(v) || !json_string_length(v))
            return bad(c, err, what, "must be a name");
        s = json_string_value(v);
    }
    if (!(*out = strdup(s))) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    return FN_OK;
}

/* An object setting; absent, the empty object (so defaults apply). */
static json_t *section(json_t *obj, const char *key, json_t *empty)
{
    json_t *v = json_object_get(obj, key);
    return v ? v : empty;
}

static fn_status check_object(const cfg_reader *c, json_t *v, const char *what, fn_error *err)
{
    return json_is_object(v) ? FN_OK : bad(c, err, what, "must be an object");
}

/* ---- histories ---- */

static int cmp_event(const pl_event *x, const pl_event *y)
{
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return strcmp(x->item, y->item);
}

typedef struct raw_event {
    const char *user;
    pl_event e;
} raw_event;

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_raw(const void *a, const void *b)
{
    const raw_event *x = a, *y = b;
    int c = strcmp(x->user, y->user);
    return c ? c : cmp_event(&x->e, &y->e);
}

/* The events read so far, their ids in the pipeline's arena. */
typedef struct event_log {
    fn_pipeline *p;
    raw_event *v;
    size_t n, cap;
    int64_t t_max;
} event_log;

static fn_status take_event(void *ctx, const fn_interaction *x, fn_error *err)
{
    event_log *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 4096;
        raw_event *v = realloc(l->v, cap * sizeof *v);
        if (!v) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        l->v = v, l->cap = cap;
    }
    const char *user = fn_arena_strndup(l->p->strings, x->user, strlen(x->user));
    const char *item = fn_arena_strndup(l->p->strings, x->item, strlen(x->item));
    if (!user || !item) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    l->v[l->n++] = (raw_event){user, {item, x->t, x->label >= 1}};
    if (x->t > l->t_max) l->t_max = x->t;
    return FN_OK;
}

/*
 * Reads the interaction log: each user's events in time order (users sorted by id) and the
 * popularity table (every interaction weighs 1, decayed to the log's last time). A record
 * without a label counts as liked.
 */
static fn_status load_histories(fn_pipeline *p, const char *path, const char *const keys[4],
                                double half_life_s, fn_error *err)
{
    const fn_interaction_keys k = {keys[0], keys[1], keys[2], keys[3], 1};
    event_log l = {.p = p};
    fn_status st = fn_interactions_read(path, &k, take_event, &l, NULL, err);
    raw_event *raw = l.v;
    const size_t n = l.n;
    const int64_t t_max = l.t_max;
    if (st == FN_OK) st = fn_popularity_new(half_life_s, t_max, &p->pop, err);
    for (size_t i = 0; st == FN_OK && i < n; i++)
        st = fn_popularity_add(p->pop, raw[i].e.item, raw[i].e.t, 1.0, err);
    if (st == FN_OK) st = fn_popularity_finalize(p->pop, err);
    if (st == FN_OK && n) {
        qsort(raw, n, sizeof *raw, cmp_raw);
        p->events = malloc(n * sizeof *p->events);
        p->users = malloc(n * sizeof *p->users);
        if (!p->events || !p->users) st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        for (size_t i = 0; st == FN_OK && i < n; i++) {
            p->events[i] = raw[i].e;
            if (!p->n_users || strcmp(p->users[p->n_users - 1].id, raw[i].user))
                p->users[p->n_users++] = (pl_user){raw[i].user, i, 0};
            p->users[p->n_users - 1].n++;
        }
        p->n_events = n;
    }
    /* each user's seen items sorted once here, so a request looks them up without sorting */
    if (st == FN_OK && n && !(p->seen = malloc(n * sizeof *p->seen)))
        st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    for (size_t u = 0; st == FN_OK && u < p->n_users; u++) {
        const pl_user *us = &p->users[u];
        for (size_t i = 0; i < us->n; i++) p->seen[us->first + i] = p->events[us->first + i].item;
        qsort(p->seen + us->first, us->n, sizeof *p->seen, cmp_cstr);
    }
    free(raw);
    return st;
}

static int cmp_user_id(const void *key, const void *u)
{
    return strcmp(key, ((const pl_user *)u)->id);
}

const pl_user *pl_find_user(const fn_pipeline *p, const char *id)
{
    return p->n_users ? bsearch(id, p->users, p->n_users, sizeof *p->users, cmp_user_id) : NULL;
}

/* ---- the ANN channels ---- */

/*
 * "recall.ann": {"index": FILE, "ef": N} (its ids are the store's item numbers),
 * "recall.query_ann": {"quota": N} with "encoder": {"model": DIR, "device": "cpu",
 * "threads": N, "cache_size": N} for the query vectors, "recall.user_ann":
 * {"quota": N, "recent": N} (the mean vector of the user's recent liked items, from
 * the store's item vectors). All optional; a channel without its parts is off.
 */
/*
 * Every live id of the index must be an item number of the store: an index
 * built from another store would otherwise answer with other items, or none.
 */
static fn_status check_ann_ids(fn_pipeline *p, const char *index, fn_error *err)
{
    size_t n = 0, unknown = 0;
    int64_t *ids = NULL, first = -1;
    fn_status st = fn_ann_live_ids(p->ann, &n, &ids, err);
    for (size_t i = 0; st == FN_OK && i < n; i++)
        if (!fn_store_item_names_get(p->item_names, ids[i], NULL) && !unknown++) first = ids[i];
    free(ids);
    if (st == FN_OK && unknown)
        st = fn_error_set(err, FN_ERR_INVALID,
                          "recall.ann.index: %s holds %zu ids (of %zu; %lld first) that are no "
                          "item number of the store: it was built from another store (funnel "
                          "index build --store)",
                          index, unknown, n, (long long)first);
    return st;
}

static fn_status load_ann(fn_pipeline *p, const cfg_reader *c, json_t *root, json_t *jr,
                          json_t *empty, fn_error *err)
{
    static const char *const ann_names[] = {"index", "ef", NULL};
    static const char *const q_names[] = {"quota", NULL};
    static const char *const u_names[] = {"quota", "recent", NULL};
    static const char *const enc_names[] = {"model",      "device",     "threads",
                                            "cache_size", "workspaces", NULL};
    json_t *ja = section(jr, "ann", empty), *jq = json_object_get(jr, "query_ann"),
           *ju = json_object_get(jr, "user_ann"), *je = json_object_get(root, "encoder");
    char *index = NULL, *model = NULL, *device = NULL;
    size_t ef = 0, threads = 1, cache = 10000, workspaces = 0;
    fn_status st = check_object(c, ja, "recall.ann", err);
    if (st == FN_OK && jq) st = check_object(c, jq, "recall.query_ann", err);
    if (st == FN_OK && ju) st = check_object(c, ju, "recall.user_ann", err);
    if (st == FN_OK && je) st = check_object(c, je, "encoder", err);
    if (st == FN_OK) st = check_keys(c, ja, "recall.ann", ann_names, err);
    if (st == FN_OK && jq) st = check_keys(c, jq, "recall.query_ann", q_names, err);
    if (st == FN_OK && ju) st = check_keys(c, ju, "recall.user_ann", u_names, err);
    if (st == FN_OK && je) st = check_keys(c, je, "encoder", enc_names, err);
    if (st == FN_OK)
        st = get_path(c, ja, "index", "recall.ann.index", (jq || ju) != 0, &index, err);
    if (st == FN_OK) st = get_count(c, ja, "ef", "recall.ann.ef", 1, 100000, 0, &ef, err);
    if (st == FN_OK && jq)
        st = get_count(c, jq, "quota", "recall.query_ann.quota", 0, 100000, 200,
                       &p->quota[PL_CH_QUERY], err);
    if (st == FN_OK && ju)
        st = get_count(c, ju, "quota", "recall.user_ann.quota", 0, 100000, 100,
                       &p->quota[PL_CH_USER], err);
    if (st == FN_OK && ju)
        st =
            get_count(c, ju, "recent", "recall.user_ann.recent", 1, 1000, 10, &p->user_recent, err);
    if (st == FN_OK && jq && !je) st = bad(c, err, "recall.query_ann", "needs an \"encoder\"");
    if (st == FN_OK && je) st = get_path(c, je, "model", "encoder.model", 1, &model, err);
    if (st == FN_OK && je) st = get_word(c, je, "device", "encoder.device", "cpu", &device, err);
    if (st == FN_OK && je)
        st = get_count(c, je, "threads", "encoder.threads", 0, 1024, 1, &threads, err);
    if (st == FN_OK && je)
        st = get_count(c, je, "cache_size", "encoder.cache_size", 0, 10000000, 10000, &cache, err);
    /* queries encoded side by side: by default one per CPU, as many as Rank workers */
    if (st == FN_OK && je)
        st = get_count(c, je, "workspaces", "encoder.workspaces", 0, 64, 0, &workspaces, err);
    if (st == FN_OK && !workspaces) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        workspaces = ncpu < 1 ? 1 : ncpu > 64 ? 64 : (size_t)ncpu;
    }
    p->ann_params.ef_search = (int)ef;
    if (st == FN_OK && index) {
        if ((st = fn_ann_load(index, 0, &p->ann, err)) != FN_OK)
            fn_error_prefix(err, "recall.ann.index");
        else if ((st = fn_store_item_names_load(p->store, &p->item_names, err)) != FN_OK)
            fn_error_prefix(err, "recall.ann.index (the store's item numbers, its ids)");
        else
            st = check_ann_ids(p, index, err);
    }
    if (st == FN_OK && model) {
        fn_encoder_options eo = {
            .device = device, .threads = (int)threads, .workspaces = workspaces};
        if ((st = fn_encoder_load(model, &eo, &p->encoder, err)) != FN_OK)
            fn_error_prefix(err, "encoder.model");
        else if (p->ann && fn_encoder_dim(p->encoder) != fn_ann_dim(p->ann))
            st = fn_error_set(err, FN_ERR_INVALID,
                              "%s: the encoder gives %zu floats, recall.ann.index holds %zu",
                              c->path, fn_encoder_dim(p->encoder), fn_ann_dim(p->ann));
        else if (!(p->qcache = fn_query_cache_new(cache, fn_encoder_dim(p->encoder))))
            st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    free(index), free(model), free(device);
    return st;
}

/* ---- loading ---- */

/* "NAME (SIZE bytes, modified T)": what a response's model_versions reports for a file. */
static void file_version(const char *path, char *out, size_t cap)
{
    struct stat sb;
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    if (stat(path, &sb) == 0)
        snprintf(out, cap, "%s@%lld.%lld", basename(copy), (long long)sb.st_size,
                 (long long)sb.st_mtime);
    else
        snprintf(out, cap, "%s", basename(copy));
}

/*
 * "rerank": {"model": FILE, "top": N, "device": "cpu", "threads": N, "searches": false}: the
 * listwise model over the top N of the ranked list. Its input width must be the pipeline's
 * feature rows'. Requests with a query skip it unless "searches" is true: a model trained on
 * lists without queries has never seen the query's columns matter.
 */
static fn_status load_reranker(fn_pipeline *p, const cfg_reader *c, json_t *root, fn_error *err)
{
    static const char *const names[] = {"model", "top", "device", "threads", "searches", NULL};
    json_t *j = json_object_get(root, "rerank");
    p->rerank_top = 50; /* the training lists' length when there is no reranker yet */
    if (!j) return FN_OK;
    char *model = NULL, *device = NULL;
    size_t threads = 1;
    fn_status st = check_object(c, j, "rerank", err);
    if (st == FN_OK) st = check_keys(c, j, "rerank", names, err);
    if (st == FN_OK) st = get_path(c, j, "model", "rerank.model", 1, &model, err);
    if (st == FN_OK) st = get_count(c, j, "top", "rerank.top", 1, 10000, 50, &p->rerank_top, err);
    if (st == FN_OK) st = get_word(c, j, "device", "rerank.device", "cpu", &device, err);
    if (st == FN_OK) st = get_count(c, j, "threads", "rerank.threads", 0, 1024, 1, &threads, err);
    json_t *js = json_object_get(j, "searches");
    if (st == FN_OK && js && !json_is_boolean(js))
        st = bad(c, err, "rerank.searches", "must be true or false");
    p->rerank_searches = js && json_is_true(js);
    if (st == FN_OK && !(c->over && c->over->no_rerank)) {
        if ((st = fn_reranker_load(model, device, (int)threads, &p->reranker, err)) != FN_OK)
            fn_error_prefix(err, "rerank.model");
        else if (fn_reranker_features(p->reranker) != FN_PIPELINE_RERANK_FEATURES)
            st =
                fn_error_set(err, FN_ERR_INVALID,
                             "rerank.model: %s reads %u features per item, the pipeline gives "
                             "%d (make its lists with `funnel rerank lists`)",
                             model, fn_reranker_features(p->reranker), FN_PIPELINE_RERANK_FEATURES);
        else if ((size_t)fn_reranker_options(p->reranker)->max_items < p->rerank_top)
            st = fn_error_set(err, FN_ERR_INVALID,
                              "rerank.top: %zu is above the %d items %s scores at most",
                              p->rerank_top, fn_reranker_options(p->reranker)->max_items, model);
        else
            file_version(model, p->rerank_version, sizeof p->rerank_version);
    }
    free(model), free(device);
    return st;
}

static fn_status load_parts(fn_pipeline *p, const cfg_reader *c, json_t *root, fn_error *err)
{
    static const char *const top[] = {"store",  "interactions", "spec",    "ctr_model", "keys",
                                      "recall", "page",         "encoder", "rerank",    NULL};
    static const char *const key_names[] = {"user", "item", "time", "label", "category", NULL};
    static const char *const recall_names[] = {"cap",       "popularity", "cooc", "ann",
                                               "query_ann", "user_ann",   NULL};
    static const char *const pop_names[] = {"quota", "half_life_days", NULL};
    static const char *const cooc_names[] = {"table", "quota", "recent", NULL};
    static const char *const page_names[] = {
        "default_size", "max_size", "diversity", "lambda", "dpp_alpha", "max_per_category", NULL};
    if (!json_is_object(root)) return bad(c, err, "(top)", "must be a JSON object");
    char *store = NULL, *inter = NULL, *spec = NULL, *model = NULL, *cooc = NULL, *div = NULL;
    char *keys[4] = {0};
    json_t *empty = json_object();
    json_t *jk = section(root, "keys", empty), *jr = section(root, "recall", empty),
           *jpage = section(root, "page", empty);
    json_t *jpop = section(jr, "popularity", empty), *jc = section(jr, "cooc", empty);
    double half_life = 14, lambda = 0.8, alpha = 1;
    size_t mpc = 0;
    fn_status st = empty ? FN_OK : fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    if (st == FN_OK) st = check_object(c, jk, "keys", err);
    if (st == FN_OK) st = check_object(c, jr, "recall", err);
    if (st == FN_OK) st = check_object(c, jpage, "page", err);
    if (st == FN_OK) st = check_object(c, jpop, "recall.popularity", err);
    if (st == FN_OK) st = check_object(c, jc, "recall.cooc", err);
    if (st == FN_OK) st = check_keys(c, root, "", top, err);
    if (st == FN_OK) st = check_keys(c, jk, "keys", key_names, err);
    if (st == FN_OK) st = check_keys(c, jr, "recall", recall_names, err);
    if (st == FN_OK) st = check_keys(c, jpop, "recall.popularity", pop_names, err);
    if (st == FN_OK) st = check_keys(c, jc, "recall.cooc", cooc_names, err);
    if (st == FN_OK) st = check_keys(c, jpage, "page", page_names, err);
    if (st == FN_OK) st = get_path(c, root, "store", "store", 1, &store, err);
    if (st == FN_OK) st = get_path(c, root, "interactions", "interactions", 1, &inter, err);
    if (st == FN_OK && c->over && c->over->interactions) {
        free(inter);
        if (!(inter = strdup(c->over->interactions)))
            st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    if (st == FN_OK) st = get_path(c, root, "spec", "spec", 1, &spec, err);
    if (st == FN_OK) st = get_path(c, root, "ctr_model", "ctr_model", 1, &model, err);
    if (st == FN_OK) st = get_path(c, jc, "table", "recall.cooc.table", 0, &cooc, err);
    if (st == FN_OK && c->over && c->over->cooc_table) {
        free(cooc);
        if (!(cooc = strdup(c->over->cooc_table)))
            st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    if (st == FN_OK) st = get_word(c, jk, "user", "keys.user", "user_id", &keys[0], err);
    if (st == FN_OK) st = get_word(c, jk, "item", "keys.item", "item_id", &keys[1], err);
    if (st == FN_OK) st = get_word(c, jk, "time", "keys.time", "timestamp", &keys[2], err);
    if (st == FN_OK) st = get_word(c, jk, "label", "keys.label", "label", &keys[3], err);
    if (st == FN_OK)
        st = get_word(c, jk, "category", "keys.category", "genres", &p->key_category, err);
    if (st == FN_OK) st = get_count(c, jr, "cap", "recall.cap", 1, 100000, 300, &p->cap, err);
    if (st == FN_OK)
        st = get_count(c, jpop, "quota", "recall.popularity.quota", 0, 100000, 100,
                       &p->quota[PL_CH_POPULARITY], err);
    if (st == FN_OK)
        st = get_real(c, jpop, "half_life_days", "recall.popularity.half_life_days", 1e-3, 1e5, 14,
                      &half_life, err);
    if (st == FN_OK)
        st = get_count(c, jc, "quota", "recall.cooc.quota", 0, 100000, 200, &p->quota[PL_CH_COOC],
                       err);
    if (st == FN_OK)
        st = get_count(c, jc, "recent", "recall.cooc.recent", 1, 1000, 10, &p->recent, err);
    if (st == FN_OK)
        st = get_count(c, jpage, "default_size", "page.default_size", 1, 1000, 10, &p->page_default,
                       err);
    if (st == FN_OK)
        st = get_count(c, jpage, "max_size", "page.max_size", 1, 1000, 100, &p->page_max, err);
    if (st == FN_OK && p->page_default > p->page_max)
        st = bad(c, err, "page.default_size", "is above page.max_size");
    if (st == FN_OK) st = get_word(c, jpage, "diversity", "page.diversity", "none", &div, err);
    if (st == FN_OK) {
        if (!strcmp(div, "none"))
            p->diversity = FN_DIVERSITY_NONE;
        else if (!strcmp(div, "mmr"))
            p->diversity = FN_DIVERSITY_MMR;
        else if (!strcmp(div, "dpp"))
            p->diversity = FN_DIVERSITY_DPP;
        else
            st = bad(c, err, "page.diversity", "must be none, mmr or dpp");
    }
    if (st == FN_OK) st = get_real(c, jpage, "lambda", "page.lambda", 0, 1, 0.8, &lambda, err);
    if (st == FN_OK)
        st = get_real(c, jpage, "dpp_alpha", "page.dpp_alpha", 0, 1000, 1, &alpha, err);
    if (st == FN_OK)
        st =
            get_count(c, jpage, "max_per_category", "page.max_per_category", 0, 1000, 0, &mpc, err);
    p->lambda = (float)lambda, p->dpp_alpha = (float)alpha, p->max_per_category = (int)mpc;

    /* the parts, in the order they depend on each other */
    fn_store_options so = {.read_only = 1};
    if (st == FN_OK && (st = fn_store_open(store, &so, &p->store, err)) != FN_OK)
        fn_error_prefix(err, "store");
    if (st == FN_OK && (st = fn_columns_load(spec, &p->spec, err)) != FN_OK)
        fn_error_prefix(err, "spec");
    if (st == FN_OK &&
        (st = fn_model_load(model, fn_columns_sha256(p->spec), &p->ctr, err)) != FN_OK)
        fn_error_prefix(err, "ctr_model");
    if (st == FN_OK && (st = load_histories(p, inter, (const char *const *)keys,
                                            half_life * 86400.0, err)) != FN_OK)
        fn_error_prefix(err, "interactions");
    if (st == FN_OK && cooc && (st = fn_cooc_load(cooc, &p->cooc, err)) != FN_OK)
        fn_error_prefix(err, "recall.cooc.table");
    if (st == FN_OK) st = load_ann(p, c, root, jr, empty, err);
    if (st == FN_OK) st = load_reranker(p, c, root, err);
    if (st == FN_OK) {
        size_t nc = fn_columns_count(p->spec);
        const unsigned shared = (1u << FN_SOURCE_USER) | (1u << FN_SOURCE_CONTEXT);
        if (!(p->shared_col = calloc(nc ? nc : 1, 1)))
            st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        for (size_t i = 0; st == FN_OK && i < nc; i++)
            p->shared_col[i] = (fn_columns_sources(p->spec, i) & ~shared) == 0;
    }
    if (st == FN_OK) {
        file_version(model, p->ctr_version, sizeof p->ctr_version);
        snprintf(p->spec_version, sizeof p->spec_version, "%.16s", fn_columns_sha256(p->spec));
        p->version_names[0] = "ctr";
        p->version_values[0] = p->ctr_version;
        p->version_names[1] = "feature_spec";
        p->version_values[1] = p->spec_version;
        p->n_versions = 2;
        if (p->reranker) {
            p->version_names[2] = "reranker";
            p->version_values[2] = p->rerank_version;
            p->n_versions = 3;
        }
        snprintf(p->summary, sizeof p->summary,
                 "%s CTR model, %zu users with histories (%zu interactions), %zu popular items, "
                 "%s",
                 fn_model_kind_name(fn_model_kind_of(p->ctr)), p->n_users, p->n_events,
                 fn_popularity_count(p->pop), p->cooc ? "co-occurrence table" : "no co-occurrence");
        if (p->ann) {
            size_t len = strlen(p->summary);
            snprintf(p->summary + len, sizeof p->summary - len, ", ANN index of %zu items%s%s",
                     fn_ann_count(p->ann), p->encoder ? ", query channel" : "",
                     p->user_recent ? ", user channel" : "");
        }
        if (p->reranker) {
            size_t len = strlen(p->summary);
            snprintf(p->summary + len, sizeof p->summary - len, ", reranker over the top %zu",
                     p->rerank_top);
        }
    }
    json_decref(empty);
    free(store), free(inter), free(spec), free(model), free(cooc), free(div);
    for (int i = 0; i < 4; i++) free(keys[i]);
    return st;
}

fn_status fn_pipeline_load(const char *config_path, fn_pipeline **out, fn_error *err)
{
    return fn_pipeline_load_with(config_path, NULL, out, err);
}

fn_status fn_pipeline_load_with(const char *config_path, const fn_pipeline_overrides *o,
                                fn_pipeline **out, fn_error *err)
{
    *out = NULL;
    cfg_reader c = {.path = config_path, .over = o};
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", config_path);
    snprintf(c.dir, sizeof c.dir, "%s", dirname(copy));
    fn_buf text = FN_BUF_INIT;
    fn_status st = fn_file_read_all(config_path, CONFIG_MAX_BYTES, &text, err);
    if (st != FN_OK) return st;
    json_error_t je;
    json_t *root = json_loadb(text.data ? text.data : "", text.len, JSON_REJECT_DUPLICATES, &je);
    fn_buf_free(&text);
    if (!root)
        return fn_error_set(err, FN_ERR_INVALID, "%s:%d:%d: %s", config_path, je.line, je.column,
                            je.text);
    fn_pipeline *p = calloc(1, sizeof *p);
    if (!p || !(p->strings = fn_arena_new(1 << 16))) {
        free(p);
        json_decref(root);
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    atomic_init(&p->refs, 1);
    for (int i = 0; i < PL_N_STAGES; i++) atomic_init(&p->stage_ns[i], 0);
    st = load_parts(p, &c, root, err);
    json_decref(root);
    if (st != FN_OK) {
        fn_pipeline_unref(p);
        return st;
    }
    *out = p;
    return FN_OK;
}

fn_pipeline *fn_pipeline_ref(fn_pipeline *p)
{
    atomic_fetch_add(&p->refs, 1);
    return p;
}

void fn_pipeline_unref(fn_pipeline *p)
{
    if (!p || atomic_fetch_sub(&p->refs, 1) != 1) return;
    fn_store_close(p->store);
    fn_columns_free(p->spec);
    fn_model_free(p->ctr);
    fn_popularity_free(p->pop);
    fn_cooc_free(p->cooc);
    fn_ann_free(p->ann);
    fn_store_item_names_free(p->item_names);
    fn_encoder_free(p->encoder);
    fn_query_cache_free(p->qcache);
    fn_reranker_free(p->reranker);
    free(p->events);
    free(p->seen);
    free(p->users);
    free(p->shared_col);
    free(p->key_category);
    fn_arena_free(p->strings);
    free(p);
}

const char *fn_pipeline_summary(const fn_pipeline *p)
{
    return p->summary;
}

size_t fn_pipeline_versions(const fn_pipeline *p, const char *const **names,
                            const char *const **versions)
{
    *names = p->version_names;
    *versions = p->version_values;
    return p->n_versions;
}
