/*
 * ann.c - the ANN channel of recall: one FAISS index behind FAISS's C API.
 *
 * The FAISS index is an IndexIDMap2 over whatever the factory string builds,
 * metric inner product. Beside it we keep a hash table of every id the FAISS
 * index holds, each live or deleted: deletes are tombstones filtered out of
 * results (FAISS's remove_ids is unsupported for HNSW and, under an IDMap,
 * wrong for IVF), and a rebuild re-adds the live vectors to an emptied clone
 * of the trained index.
 *
 * efSearch and nprobe live inside the FAISS index, so per-request values
 * need care with concurrent searches: a small gate lets any number of
 * searches with the parameters now set run together, and a search that
 * wants others waits until those in flight finish, sets them, and goes.
 * Searches already waiting for a switch hold back newcomers, so neither
 * side starves.
 *
 * Glossary: a = the fn_ann; idmap = the FAISS IndexIDMap2; sub = the index it
 * wraps; ntotal = vectors in FAISS (live + tombstones); kk = how many results
 * a search asks FAISS for (k, doubled while tombstones hide too many).
 */
#include <dlfcn.h>
#include <errno.h>
#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/MetaIndexes_c.h>
#include <faiss/c_api/clone_index_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/file.h"
#include "recall.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the index trailer is written in host order, which must be little-endian"
#endif

#define ANN_MAGIC       "FNANNIDX"
#define ANN_VERSION     1u
#define ANN_FOOTER      48
#define ANN_MAX_DIM     65536
#define ANN_MAX_FACTORY 4096

/* ---- the id table: open addressing, key -1 = empty ---- */

enum { ID_LIVE = 1, ID_DELETED = 2 };

typedef struct idtable {
    int64_t *keys;
    uint8_t *state;
    size_t cap; /* a power of two, or 0 */
    size_t used;
} idtable;

static size_t id_hash(int64_t id)
{
    uint64_t x = (uint64_t)id;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

static uint8_t *idtable_find(const idtable *t, int64_t id)
{
    if (!t->cap) return NULL;
    for (size_t i = id_hash(id) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        if (t->keys[i] == id) return &t->state[i];
        if (t->keys[i] == -1) return NULL;
    }
}

/* Inserts without growing; the caller reserved room. */
static void idtable_put(idtable *t, int64_t id, uint8_t state)
{
    size_t i = id_hash(id) & (t->cap - 1);
    while (t->keys[i] != -1 && t->keys[i] != id) i = (i + 1) & (t->cap - 1);
    if (t->keys[i] == -1) t->used++;
    t->keys[i] = id;
    t->state[i] = state;
}

/* Makes room for n entries in all at a load of at most one half. */
static fn_status idtable_reserve(idtable *t, size_t n, fn_error *err)
{
    if (n * 2 <= t->cap) return FN_OK;
    size_t cap = 16;
    while (cap < n * 2) cap *= 2;
    idtable g = {malloc(cap * sizeof *g.keys), malloc(cap), cap, 0};
    if (!g.keys || !g.state) {
        free(g.keys), free(g.state);
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory for %zu index ids", n);
    }
    memset(g.keys, 0xff, cap * sizeof *g.keys); /* every key -1 */
    for (size_t i = 0; i < t->cap; i++)
        if (t->keys[i] != -1) idtable_put(&g, t->keys[i], t->state[i]);
    free(t->keys), free(t->state);
    *t = g;
    return FN_OK;
}

static void idtable_free(idtable *t)
{
    free(t->keys), free(t->state);
    memset(t, 0, sizeof *t);
}

/* ---- the index ---- */

struct fn_ann {
    FaissIndex *idmap; /* IndexIDMap2, owns sub */
    FaissParameterSpace *ps;
    size_t dim;
    char *factory;
    int has_ef, has_nprobe;
    fn_ann_params defaults;
    idtable ids;
    size_t n_live, n_deleted;
    pthread_rwlock_t lock; /* searches read; changes write */
    /* The parameter gate (see the top of the file), under gate_mu. */
    pthread_mutex_t gate_mu;
    pthread_cond_t gate_cv;
    fn_ann_params cur; /* what the FAISS index has now */
    size_t active;     /* searches running with cur */
    size_t want;       /* searches waiting to switch cur */
};

/* FAISS's last error on this thread, without its "Error in <function> at <file>:<line>: ". */
static const char *faiss_reason(void)
{
    const char *m = faiss_get_last_error();
    if (!m || !*m) return "unknown FAISS error";
    const char *e = strstr(m, "Error: ");
    return e ? e + 7 : m;
}

static fn_status faiss_fail(fn_error *err, fn_status code, const char *what)
{
    char reason[FN_ERROR_MSG_MAX];
    snprintf(reason, sizeof reason, "%s", faiss_reason());
    size_t n = strlen(reason);
    while (n && (reason[n - 1] == '\n' || reason[n - 1] == ' ')) reason[--n] = '\0';
    return fn_error_set(err, code, "%s: %s", what, reason);
}

static int params_eq(fn_ann_params a, fn_ann_params b)
{
    return a.ef_search == b.ef_search && a.nprobe == b.nprobe;
}

/* Sets the parameters that apply and differ from a->cur (caller excludes searches). */
static fn_status apply_params(fn_ann *a, fn_ann_params p, fn_error *err)
{
    if (a->has_ef && p.ef_search != a->cur.ef_search) {
        if (faiss_ParameterSpace_set_index_parameter(a->ps, a->idmap, "efSearch", p.ef_search))
            return faiss_fail(err, FN_ERR_INTERNAL, "setting efSearch");
        a->cur.ef_search = p.ef_search;
    }
    if (a->has_nprobe && p.nprobe != a->cur.nprobe) {
        if (faiss_ParameterSpace_set_index_parameter(a->ps, a->idmap, "nprobe", p.nprobe))
            return faiss_fail(err, FN_ERR_INTERNAL, "setting nprobe");
        a->cur.nprobe = p.nprobe;
    }
    return FN_OK;
}

/* Enters the gate with parameters p set in the index (holding the read lock). */
static fn_status gate_enter(fn_ann *a, fn_ann_params p, fn_error *err)
{
    pthread_mutex_lock(&a->gate_mu);
    for (;;) {
        int same = params_eq(a->cur, p);
        if (a->active == 0 || (same && a->want == 0)) break;
        if (same) { /* a switch is pending: let it go first */
            pthread_cond_wait(&a->gate_cv, &a->gate_mu);
            continue;
        }
        a->want++;
        while (a->active > 0) pthread_cond_wait(&a->gate_cv, &a->gate_mu);
        a->want--;
        pthread_cond_broadcast(&a->gate_cv);
        break;
    }
    fn_status st = apply_params(a, p, err);
    if (st == FN_OK) a->active++;
    pthread_mutex_unlock(&a->gate_mu);
    return st;
}

static void gate_leave(fn_ann *a)
{
    pthread_mutex_lock(&a->gate_mu);
    if (--a->active == 0) pthread_cond_broadcast(&a->gate_cv);
    pthread_mutex_unlock(&a->gate_mu);
}

/* Turns request parameters into the ones to set, checking they apply. */
static fn_status resolve_params(const fn_ann *a, const fn_ann_params *p, fn_ann_params *out,
                                fn_error *err)
{
    *out = a->defaults;
    if (!p) return FN_OK;
    if (p->ef_search < 0 || p->nprobe < 0)
        return fn_error_set(err, FN_ERR_INVALID, "efSearch and nprobe must not be negative");
    if (p->ef_search) {
        if (!a->has_ef)
            return fn_error_set(err, FN_ERR_INVALID, "efSearch does not apply to a '%s' index",
                                a->factory);
        out->ef_search = p->ef_search;
    }
    if (p->nprobe) {
        if (!a->has_nprobe)
            return fn_error_set(err, FN_ERR_INVALID, "nprobe does not apply to a '%s' index",
                                a->factory);
        out->nprobe = p->nprobe;
    }
    return FN_OK;
}

/* Copies n rows, L2-normalising each; a non-finite value is an error naming its row. */
static fn_status normalized_copy(const float *x, size_t n, size_t dim, const char *what,
                                 float **out, fn_error *err)
{
    float *y = malloc((n ? n : 1) * dim * sizeof *y);
    if (!y) return fn_error_set(err, FN_ERR_NOMEM, "out of memory for %zu %s", n, what);
    for (size_t i = 0; i < n; i++) {
        const float *r = x + i * dim;
        float *w = y + i * dim;
        double ss = 0;
        for (size_t j = 0; j < dim; j++) {
            if (!isfinite(r[j])) {
                free(y);
                return fn_error_set(err, FN_ERR_INVALID, "%s %zu has a non-finite value", what, i);
            }
            ss += (double)r[j] * r[j];
        }
        float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
        for (size_t j = 0; j < dim; j++) w[j] = ss > 0 ? r[j] * inv : 0.0f;
    }
    *out = y;
    return FN_OK;
}

/* A fn_ann around idmap (taken over; freed on failure) with the given defaults. */
static fn_status ann_wrap(FaissIndex *idmap, size_t dim, const char *factory,
                          fn_ann_params defaults, fn_ann **out, fn_error *err)
{
    fn_ann *a = calloc(1, sizeof *a);
    if (!a || !(a->factory = strdup(factory))) {
        free(a);
        faiss_Index_free(idmap);
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    a->idmap = idmap;
    a->dim = dim;
    pthread_rwlock_init(&a->lock, NULL);
    pthread_mutex_init(&a->gate_mu, NULL);
    pthread_cond_init(&a->gate_cv, NULL);
    if (faiss_ParameterSpace_new(&a->ps)) {
        fn_status st = faiss_fail(err, FN_ERR_INTERNAL, "creating a FAISS ParameterSpace");
        fn_ann_free(a);
        return st;
    }
    /* Which parameters apply is found by setting them: FAISS refuses those that do not. */
    a->cur.ef_search = a->cur.nprobe = -1; /* unknown: the first apply sets them */
    a->has_ef = defaults.ef_search > 0 && faiss_ParameterSpace_set_index_parameter(
                                              a->ps, idmap, "efSearch", defaults.ef_search) == 0;
    a->has_nprobe = defaults.nprobe > 0 && faiss_ParameterSpace_set_index_parameter(
                                               a->ps, idmap, "nprobe", defaults.nprobe) == 0;
    a->defaults.ef_search = a->has_ef ? defaults.ef_search : 0;
    a->defaults.nprobe = a->has_nprobe ? defaults.nprobe : 0;
    a->cur = a->defaults;
    *out = a;
    return FN_OK;
}

fn_status fn_ann_new(const char *factory, size_t dim, fn_ann **out, fn_error *err)
{
    *out = NULL;
    if (!factory || !*factory || strlen(factory) > ANN_MAX_FACTORY)
        return fn_error_set(err, FN_ERR_INVALID, "an index needs a factory string");
    if (dim == 0 || dim > ANN_MAX_DIM)
        return fn_error_set(err, FN_ERR_INVALID, "index dimension %zu is not in 1..%d", dim,
                            ANN_MAX_DIM);
    if (strstr(factory, "IDMap"))
        return fn_error_set(err, FN_ERR_INVALID,
                            "factory string '%s': leave IDMap out, every index is wrapped in "
                            "IDMap2 already",
                            factory);
    FaissIndex *sub = NULL, *idmap = NULL;
    if (faiss_index_factory(&sub, (int)dim, factory, METRIC_INNER_PRODUCT)) {
        char what[ANN_MAX_FACTORY + 32];
        snprintf(what, sizeof what, "factory string '%s'", factory);
        return faiss_fail(err, FN_ERR_INVALID, what);
    }
    if (faiss_IndexIDMap2_new(&idmap, sub)) {
        faiss_Index_free(sub);
        return faiss_fail(err, FN_ERR_INTERNAL, "wrapping the index in IDMap2");
    }
    faiss_IndexIDMap2_set_own_fields(idmap, 1);
    fn_ann_params d = {FN_ANN_DEFAULT_EF_SEARCH, FN_ANN_DEFAULT_NPROBE};
    return ann_wrap(idmap, dim, factory, d, out, err);
}

void fn_ann_free(fn_ann *a)
{
    if (!a) return;
    if (a->idmap) faiss_Index_free(a->idmap);
    if (a->ps) faiss_ParameterSpace_free(a->ps);
    idtable_free(&a->ids);
    pthread_rwlock_destroy(&a->lock);
    pthread_mutex_destroy(&a->gate_mu);
    pthread_cond_destroy(&a->gate_cv);
    free(a->factory);
    free(a);
}

size_t fn_ann_dim(const fn_ann *a)
{
    return a->dim;
}

const char *fn_ann_factory(const fn_ann *a)
{
    return a->factory;
}

size_t fn_ann_count(fn_ann *a)
{
    pthread_rwlock_rdlock(&a->lock);
    size_t n = a->n_live;
    pthread_rwlock_unlock(&a->lock);
    return n;
}

size_t fn_ann_deleted(fn_ann *a)
{
    pthread_rwlock_rdlock(&a->lock);
    size_t n = a->n_deleted;
    pthread_rwlock_unlock(&a->lock);
    return n;
}

/* ID_LIVE, ID_DELETED or 0 (not in the index). */
static int id_state(fn_ann *a, int64_t id)
{
    pthread_rwlock_rdlock(&a->lock);
    const uint8_t *s = idtable_find(&a->ids, id);
    int state = s ? *s : 0;
    pthread_rwlock_unlock(&a->lock);
    return state;
}

int fn_ann_contains(fn_ann *a, int64_t id)
{
    return id_state(a, id) == ID_LIVE;
}

int fn_ann_is_deleted(fn_ann *a, int64_t id)
{
    return id_state(a, id) == ID_DELETED;
}

int fn_ann_is_trained(fn_ann *a)
{
    pthread_rwlock_rdlock(&a->lock);
    int t = faiss_Index_is_trained(a->idmap);
    pthread_rwlock_unlock(&a->lock);
    return t;
}

int fn_ann_has_ef_search(const fn_ann *a)
{
    return a->has_ef;
}

int fn_ann_has_nprobe(const fn_ann *a)
{
    return a->has_nprobe;
}

fn_ann_params fn_ann_defaults(fn_ann *a)
{
    pthread_rwlock_rdlock(&a->lock);
    fn_ann_params d = a->defaults;
    pthread_rwlock_unlock(&a->lock);
    return d;
}

fn_status fn_ann_set_defaults(fn_ann *a, const fn_ann_params *p, fn_error *err)
{
    fn_ann_params d;
    pthread_rwlock_wrlock(&a->lock);
    fn_status st = resolve_params(a, p, &d, err);
    if (st == FN_OK) a->defaults = d; /* the next search sets them in FAISS */
    pthread_rwlock_unlock(&a->lock);
    return st;
}

fn_status fn_ann_train(fn_ann *a, size_t n, const float *vecs, fn_error *err)
{
    pthread_rwlock_wrlock(&a->lock);
    fn_status st = FN_OK;
    float *x = NULL;
    if (faiss_Index_is_trained(a->idmap)) goto done;
    if (n == 0) {
        st = fn_error_set(err, FN_ERR_INVALID, "training a '%s' index needs vectors", a->factory);
        goto done;
    }
    if ((st = normalized_copy(vecs, n, a->dim, "training vector", &x, err)) != FN_OK) goto done;
    if (faiss_Index_train(a->idmap, (idx_t)n, x)) {
        char what[ANN_MAX_FACTORY + 64];
        snprintf(what, sizeof what, "training the '%s' index on %zu vectors", a->factory, n);
        st = faiss_fail(err, FN_ERR_INVALID, what);
    }
done:
    pthread_rwlock_unlock(&a->lock);
    free(x);
    return st;
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

fn_status fn_ann_add(fn_ann *a, size_t n, const float *vecs, const int64_t *ids, fn_error *err)
{
    if (n == 0) return FN_OK;
    if (n > INT64_MAX / 2) return fn_error_set(err, FN_ERR_INVALID, "too many vectors");
    int64_t *sorted = malloc(n * sizeof *sorted);
    if (!sorted) return fn_error_set(err, FN_ERR_NOMEM, "out of memory for %zu ids", n);
    memcpy(sorted, ids, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_i64);
    fn_status st = FN_OK;
    if (sorted[0] < 0)
        st = fn_error_set(err, FN_ERR_INVALID, "index ids must not be negative (got %lld)",
                          (long long)sorted[0]);
    for (size_t i = 1; st == FN_OK && i < n; i++)
        if (sorted[i] == sorted[i - 1])
            st = fn_error_set(err, FN_ERR_INVALID, "id %lld is given twice", (long long)sorted[i]);
    free(sorted);
    if (st != FN_OK) return st;
    float *x;
    if ((st = normalized_copy(vecs, n, a->dim, "vector", &x, err)) != FN_OK) return st;

    pthread_rwlock_wrlock(&a->lock);
    if (!faiss_Index_is_trained(a->idmap)) {
        st = fn_error_set(err, FN_ERR_INVALID, "the '%s' index must be trained before adding",
                          a->factory);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *s = idtable_find(&a->ids, ids[i]);
        if (!s) continue;
        st = *s == ID_LIVE ? fn_error_set(err, FN_ERR_EXISTS, "id %lld is already in the index",
                                          (long long)ids[i])
                           : fn_error_set(err, FN_ERR_EXISTS,
                                          "id %lld was deleted; rebuild the index before adding "
                                          "it again",
                                          (long long)ids[i]);
        goto done;
    }
    if ((st = idtable_reserve(&a->ids, a->ids.used + n, err)) != FN_OK) goto done;
    if (faiss_Index_add_with_ids(a->idmap, (idx_t)n, x, ids)) {
        st = faiss_fail(err, FN_ERR_INTERNAL, "adding vectors to the index");
        goto done;
    }
    for (size_t i = 0; i < n; i++) idtable_put(&a->ids, ids[i], ID_LIVE);
    a->n_live += n;
done:
    pthread_rwlock_unlock(&a->lock);
    free(x);
    return st;
}

fn_status fn_ann_delete(fn_ann *a, size_t n, const int64_t *ids, size_t *deleted, fn_error *err)
{
    (void)err;
    size_t d = 0;
    pthread_rwlock_wrlock(&a->lock);
    for (size_t i = 0; i < n; i++) {
        uint8_t *s = idtable_find(&a->ids, ids[i]);
        if (s && *s == ID_LIVE) *s = ID_DELETED, d++;
    }
    a->n_live -= d;
    a->n_deleted += d;
    pthread_rwlock_unlock(&a->lock);
    if (deleted) *deleted = d;
    return FN_OK;
}

/*
 * One round of searching the queries listed in todo for kk results each;
 * queries that got k live results, or all FAISS had, are written to ids and
 * scores and dropped from todo.
 */
static fn_status search_round(fn_ann *a, const float *x, size_t *todo, size_t *n_todo, size_t k,
                              size_t kk, size_t ntotal, int64_t *ids, float *scores, fn_error *err)
{
    size_t m = *n_todo;
    float *q = malloc(m * a->dim * sizeof *q);
    float *dist = malloc(m * kk * sizeof *dist);
    idx_t *lab = malloc(m * kk * sizeof *lab);
    fn_status st = FN_OK;
    if (!q || !dist || !lab) {
        st = fn_error_set(err, FN_ERR_NOMEM, "out of memory for %zu x %zu results", m, kk);
        goto done;
    }
    for (size_t i = 0; i < m; i++) memcpy(q + i * a->dim, x + todo[i] * a->dim, a->dim * sizeof *q);
    if (faiss_Index_search(a->idmap, (idx_t)m, q, (idx_t)kk, dist, lab)) {
        st = faiss_fail(err, FN_ERR_INTERNAL, "searching the index");
        goto done;
    }
    size_t left = 0;
    for (size_t i = 0; i < m; i++) {
        size_t qi = todo[i], got = 0, valid = 0;
        int64_t *oid = ids + qi * k;
        float *osc = scores ? scores + qi * k : NULL;
        for (size_t j = 0; j < kk; j++) {
            idx_t l = lab[i * kk + j];
            if (l < 0) continue;
            valid++;
            if (got == k) continue;
            const uint8_t *s = a->n_deleted ? idtable_find(&a->ids, l) : NULL;
            if (s && *s != ID_LIVE) continue;
            oid[got] = l;
            if (osc) osc[got] = dist[i * kk + j];
            got++;
        }
        /* Fewer valid labels than asked for means FAISS has no more for this query. */
        if (got == k || valid < kk || kk >= ntotal) {
            for (size_t j = got; j < k; j++) {
                oid[j] = -1;
                if (osc) osc[j] = -INFINITY;
            }
        } else {
            todo[left++] = qi;
        }
    }
    *n_todo = left;
done:
    free(q), free(dist), free(lab);
    return st;
}

fn_status fn_ann_search(fn_ann *a, size_t nq, const float *queries, size_t k,
                        const fn_ann_params *p, int64_t *ids, float *scores, fn_error *err)
{
    if (nq == 0) return FN_OK;
    if (k == 0) return fn_error_set(err, FN_ERR_INVALID, "a search needs k of at least 1");
    fn_ann_params want;
    fn_status st;
    float *x;
    if ((st = normalized_copy(queries, nq, a->dim, "query", &x, err)) != FN_OK) return st;
    size_t *todo = malloc(nq * sizeof *todo);
    if (!todo) {
        free(x);
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory for %zu queries", nq);
    }
    for (size_t i = 0; i < nq; i++) todo[i] = i;
    size_t n_todo = nq;

    pthread_rwlock_rdlock(&a->lock);
    if ((st = resolve_params(a, p, &want, err)) != FN_OK) goto unlock;
    if ((st = gate_enter(a, want, err)) != FN_OK) goto unlock;
    size_t ntotal = (size_t)faiss_Index_ntotal(a->idmap);
    if (ntotal == 0 || a->n_live == 0) {
        for (size_t i = 0; i < nq * k; i++) {
            ids[i] = -1;
            if (scores) scores[i] = -INFINITY;
        }
        n_todo = 0;
    }
    /* With tombstones, ask for twice k at once: most rounds then need no second pass. */
    size_t kk = a->n_deleted ? 2 * k : k;
    if (kk > ntotal) kk = ntotal;
    while (n_todo > 0) {
        st = search_round(a, x, todo, &n_todo, k, kk, ntotal, ids, scores, err);
        if (st != FN_OK) break;
        kk = kk * 2 > ntotal ? ntotal : kk * 2;
    }
    gate_leave(a);
unlock:
    pthread_rwlock_unlock(&a->lock);
    free(todo);
    free(x);
    return st;
}

/*
 * The vectors FAISS holds, rows [0, ntotal) of the sub-index, for the ids
 * selected by keep (live only or all): reconstructed in chunks (IVF's
 * reconstruct_n scans the inverted lists, so chunks are large).
 */
static fn_status collect_vectors(fn_ann *a, int live_only, size_t *n_out, int64_t **ids_out,
                                 float **vecs_out, fn_error *err)
{
    idx_t *id_map = NULL;
    size_t ntotal = 0;
    faiss_IndexIDMap2_id_map(a->idmap, &id_map, &ntotal);
    FaissIndex *sub = faiss_IndexIDMap2_sub_index(a->idmap);
    size_t n = live_only ? a->n_live : ntotal;
    int64_t *ids = malloc((n ? n : 1) * sizeof *ids);
    float *vecs = malloc((n ? n : 1) * a->dim * sizeof *vecs);
    size_t chunk = 65536;
    float *buf = malloc((ntotal < chunk ? (ntotal ? ntotal : 1) : chunk) * a->dim * sizeof *buf);
    fn_status st = FN_OK;
    if (!ids || !vecs || !buf) {
        st = fn_error_set(err, FN_ERR_NOMEM, "out of memory for %zu vectors", ntotal);
        goto fail;
    }
    size_t out = 0;
    for (size_t i0 = 0; i0 < ntotal; i0 += chunk) {
        size_t m = ntotal - i0 < chunk ? ntotal - i0 : chunk;
        if (faiss_Index_reconstruct_n(sub, (idx_t)i0, (idx_t)m, buf)) {
            st = faiss_fail(err, FN_ERR_UNSUPPORTED, "reading vectors back from the index");
            goto fail;
        }
        for (size_t i = 0; i < m; i++) {
            int64_t id = id_map[i0 + i];
            const uint8_t *s = idtable_find(&a->ids, id);
            if (live_only && (!s || *s != ID_LIVE)) continue;
            if (out == n) break;
            ids[out] = id;
            memcpy(vecs + out * a->dim, buf + i * a->dim, a->dim * sizeof *vecs);
            out++;
        }
    }
    if (out != n) {
        st = fn_error_set(err, FN_ERR_INTERNAL, "index holds %zu live vectors, expected %zu", out,
                          n);
        goto fail;
    }
    free(buf);
    *n_out = n;
    *ids_out = ids;
    *vecs_out = vecs;
    return FN_OK;
fail:
    free(ids), free(vecs), free(buf);
    return st;
}

fn_status fn_ann_live_ids(fn_ann *a, size_t *n, int64_t **ids, fn_error *err)
{
    pthread_rwlock_rdlock(&a->lock);
    int64_t *v = malloc((a->n_live ? a->n_live : 1) * sizeof *v);
    size_t m = 0;
    for (size_t i = 0; v && i < a->ids.cap; i++)
        if (a->ids.keys[i] != -1 && a->ids.state[i] == ID_LIVE) v[m++] = a->ids.keys[i];
    pthread_rwlock_unlock(&a->lock);
    if (!v) return fn_error_set(err, FN_ERR_NOMEM, "out of memory for the index's ids");
    *n = m;
    *ids = v;
    return FN_OK;
}

fn_status fn_ann_vectors(fn_ann *a, size_t *n, int64_t **ids, float **vecs, fn_error *err)
{
    pthread_rwlock_rdlock(&a->lock);
    fn_status st = collect_vectors(a, 1, n, ids, vecs, err);
    pthread_rwlock_unlock(&a->lock);
    return st;
}

/*
 * An empty index like a's: from the factory string when that needs no training (HNSW,
 * Flat), else a clone of a's emptied by reset, which keeps the training (IVF's coarse
 * quantizer, PQ's codebooks). Not a clone for all: FAISS 1.7.3 clones an IndexHNSWFlat as
 * a plain IndexHNSW, which it then cannot write.
 */
static fn_status empty_copy(fn_ann *a, FaissIndex **out, fn_error *err)
{
    FaissIndex *sub = NULL, *idmap = NULL;
    *out = NULL;
    if (faiss_index_factory(&sub, (int)a->dim, a->factory, METRIC_INNER_PRODUCT))
        return faiss_fail(err, FN_ERR_INTERNAL, "making an empty index for a rebuild");
    if (faiss_Index_is_trained(sub)) {
        if (faiss_IndexIDMap2_new(&idmap, sub)) {
            faiss_Index_free(sub);
            return faiss_fail(err, FN_ERR_INTERNAL, "wrapping the index in IDMap2");
        }
        faiss_IndexIDMap2_set_own_fields(idmap, 1);
        *out = idmap;
        return FN_OK;
    }
    faiss_Index_free(sub);
    if (faiss_clone_index(a->idmap, out) || faiss_Index_reset(*out)) {
        if (*out) faiss_Index_free(*out);
        *out = NULL;
        return faiss_fail(err, FN_ERR_INTERNAL, "copying the index for a rebuild");
    }
    return FN_OK;
}

fn_status fn_ann_rebuild(fn_ann *a, fn_error *err)
{
    pthread_rwlock_wrlock(&a->lock);
    fn_status st = FN_OK;
    int64_t *ids = NULL;
    float *vecs = NULL;
    size_t n = 0;
    FaissIndex *fresh = NULL;
    idtable t = {0};
    if (a->n_deleted == 0) goto done;
    if ((st = collect_vectors(a, 1, &n, &ids, &vecs, err)) != FN_OK) goto done;
    if ((st = empty_copy(a, &fresh, err)) != FN_OK) goto done;
    if (n && faiss_Index_add_with_ids(fresh, (idx_t)n, vecs, ids)) {
        st = faiss_fail(err, FN_ERR_INTERNAL, "re-adding the live vectors");
        goto done;
    }
    if ((st = idtable_reserve(&t, n, err)) != FN_OK) goto done;
    for (size_t i = 0; i < n; i++) idtable_put(&t, ids[i], ID_LIVE);
    /* A clone carries the parameters set now along; a new index has FAISS's defaults, so the
     * next search sets them again. */
    a->cur.ef_search = a->cur.nprobe = -1;
    faiss_Index_free(a->idmap);
    a->idmap = fresh;
    fresh = NULL;
    idtable_free(&a->ids);
    a->ids = t;
    t = (idtable){0};
    a->n_live = n;
    a->n_deleted = 0;
done:
    pthread_rwlock_unlock(&a->lock);
    if (fresh) faiss_Index_free(fresh);
    idtable_free(&t);
    free(ids), free(vecs);
    return st;
}

/*
 * libgomp comes with libfaiss_avx2; its entry points are looked up rather
 * than linked so that funnel's C code needs no OpenMP of its own (clang
 * builds have no omp.h).
 */
fn_status fn_ann_set_threads(int n, fn_error *err)
{
    if (n < 0) return fn_error_set(err, FN_ERR_INVALID, "thread count %d is negative", n);
    void *set_sym = dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    void *procs_sym = dlsym(RTLD_DEFAULT, "omp_get_num_procs");
    if (!set_sym || !procs_sym)
        return fn_error_set(err, FN_ERR_UNSUPPORTED, "FAISS's OpenMP runtime was not found");
    void (*set_threads)(int);
    int (*num_procs)(void);
    memcpy(&set_threads, &set_sym, sizeof set_threads);
    memcpy(&num_procs, &procs_sym, sizeof num_procs);
    set_threads(n ? n : num_procs());
    return FN_OK;
}

/* ---- files ---- */

typedef struct footer {
    char magic[8];
    uint32_t version;
    uint32_t dim;
    uint64_t faiss_bytes;
    uint64_t n_tomb;
    uint32_t factory_len;
    uint32_t ef_search;
    uint32_t nprobe;
    uint32_t crc; /* CRC32C of every byte of the file before this field */
} footer;
_Static_assert(sizeof(footer) == ANN_FOOTER, "footer layout");

/* CRC32C of the first n bytes of fd. */
static fn_status crc_fd(int fd, uint64_t n, uint32_t *crc, const char *path, fn_error *err)
{
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    if (!buf) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    uint32_t c = 0;
    uint64_t off = 0;
    while (off < n) {
        size_t want = n - off < cap ? (size_t)(n - off) : cap;
        ssize_t got = pread(fd, buf, want, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            free(buf);
            return fn_error_set(err, got < 0 ? FN_ERR_IO : FN_ERR_CORRUPT, "%s: reading: %s", path,
                                got < 0 ? strerror(errno) : "unexpected end of file");
        }
        c = fn_crc32c_extend(c, buf, (size_t)got);
        off += (uint64_t)got;
    }
    free(buf);
    *crc = c;
    return FN_OK;
}

fn_status fn_ann_save(fn_ann *a, const char *path, fn_error *err)
{
    fn_atomic_file *f = NULL;
    FILE *fp = NULL;
    char *trailer = NULL;
    fn_status st;
    pthread_rwlock_rdlock(&a->lock);
    /* Write with the defaults set: FAISS saves efSearch/nprobe in the file. */
    if ((st = gate_enter(a, a->defaults, err)) != FN_OK) goto unlock;
    if ((st = fn_atomic_file_open(path, &f, err)) != FN_OK) goto leave;
    int fd = fn_atomic_file_fd(f);
    int fd2 = dup(fd);
    if (fd2 < 0 || !(fp = fdopen(fd2, "wb"))) {
        if (fd2 >= 0) close(fd2);
        st = fn_error_set(err, FN_ERR_IO, "%s: %s", path, strerror(errno));
        goto leave;
    }
    if (faiss_write_index(a->idmap, fp)) {
        char what[512];
        snprintf(what, sizeof what, "writing %s", path);
        st = faiss_fail(err, FN_ERR_IO, what);
        goto leave;
    }
    int bad = fflush(fp) != 0 || ferror(fp);
    int closed = fclose(fp);
    fp = NULL;
    if (bad || closed != 0) {
        st = fn_error_set(err, FN_ERR_IO, "writing %s: %s", path, strerror(errno));
        goto leave;
    }
    off_t end = lseek(fd, 0, SEEK_END);
    if (end < 0) {
        st = fn_error_set(err, FN_ERR_IO, "%s: %s", path, strerror(errno));
        goto leave;
    }
    uint32_t crc;
    if ((st = crc_fd(fd, (uint64_t)end, &crc, path, err)) != FN_OK) goto leave;

    size_t flen = strlen(a->factory);
    size_t tlen = a->n_deleted * sizeof(int64_t) + flen + sizeof(footer);
    if (!(trailer = malloc(tlen))) {
        st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        goto leave;
    }
    size_t off = 0;
    for (size_t i = 0; i < a->ids.cap; i++)
        if (a->ids.keys[i] != -1 && a->ids.state[i] == ID_DELETED) {
            memcpy(trailer + off, &a->ids.keys[i], sizeof(int64_t));
            off += sizeof(int64_t);
        }
    memcpy(trailer + off, a->factory, flen);
    off += flen;
    footer ft = {.version = ANN_VERSION,
                 .dim = (uint32_t)a->dim,
                 .faiss_bytes = (uint64_t)end,
                 .n_tomb = a->n_deleted,
                 .factory_len = (uint32_t)flen,
                 .ef_search = (uint32_t)a->defaults.ef_search,
                 .nprobe = (uint32_t)a->defaults.nprobe};
    memcpy(ft.magic, ANN_MAGIC, 8);
    memcpy(trailer + off, &ft, sizeof ft);
    ft.crc = fn_crc32c_extend(crc, trailer, tlen - sizeof ft.crc);
    memcpy(trailer + tlen - sizeof ft.crc, &ft.crc, sizeof ft.crc);
    if ((st = fn_atomic_file_write(f, trailer, tlen, err)) != FN_OK) goto leave;
    st = fn_atomic_file_commit(f, err);
    f = NULL;
leave:
    gate_leave(a);
unlock:
    pthread_rwlock_unlock(&a->lock);
    if (fp) fclose(fp);
    if (f) fn_atomic_file_abort(f);
    free(trailer);
    return st;
}

fn_status fn_ann_load(const char *path, size_t expected_dim, fn_ann **out, fn_error *err)
{
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return fn_error_set(err, errno == ENOENT ? FN_ERR_NOT_FOUND : FN_ERR_IO, "%s: %s", path,
                            strerror(errno));
    fn_status st = FN_OK;
    char *tail = NULL;
    FaissIndex *idx = NULL;
    fn_ann *a = NULL;
    struct stat sb;
    int fd = fileno(fp);
    if (fstat(fd, &sb) != 0) {
        st = fn_error_set(err, FN_ERR_IO, "%s: %s", path, strerror(errno));
        goto done;
    }
    uint64_t size = (uint64_t)sb.st_size;
    footer ft;
    if (size < sizeof ft || pread(fd, &ft, sizeof ft, (off_t)(size - sizeof ft)) != sizeof ft ||
        memcmp(ft.magic, ANN_MAGIC, 8) != 0) {
        st = fn_error_set(err, FN_ERR_CORRUPT,
                          "%s: not a funnel ANN index (no index trailer at its end: truncated, "
                          "damaged or written by something else)",
                          path);
        goto done;
    }
    if (ft.version != ANN_VERSION) {
        st = fn_error_set(err, FN_ERR_UNSUPPORTED, "%s: ANN index format version %u, expected %u",
                          path, ft.version, ANN_VERSION);
        goto done;
    }
    uint64_t tail_len = (uint64_t)ft.factory_len + sizeof ft;
    if (ft.n_tomb > size / 8 || ft.factory_len > ANN_MAX_FACTORY || ft.dim == 0 ||
        ft.dim > ANN_MAX_DIM || ft.faiss_bytes > size ||
        ft.faiss_bytes + ft.n_tomb * 8 + tail_len != size) {
        st = fn_error_set(err, FN_ERR_CORRUPT,
                          "%s: the sizes in the index trailer do not add up to the file's %llu "
                          "bytes (truncated or damaged)",
                          path, (unsigned long long)size);
        goto done;
    }
    uint32_t crc;
    if ((st = crc_fd(fd, size - sizeof ft.crc, &crc, path, err)) != FN_OK) goto done;
    if (crc != ft.crc) {
        st = fn_error_set(err, FN_ERR_CORRUPT, "%s: checksum mismatch (the file is damaged)", path);
        goto done;
    }
    if (expected_dim && ft.dim != expected_dim) {
        st = fn_error_set(err, FN_ERR_INVALID, "%s: index of dimension %u, expected %zu", path,
                          ft.dim, expected_dim);
        goto done;
    }
    size_t trailer_len = (size_t)(ft.n_tomb * 8 + ft.factory_len);
    if (!(tail = malloc(trailer_len + 1))) {
        st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (pread(fd, tail, trailer_len, (off_t)ft.faiss_bytes) != (ssize_t)trailer_len) {
        st = fn_error_set(err, FN_ERR_IO, "%s: reading the index trailer failed", path);
        goto done;
    }
    tail[trailer_len] = '\0';
    const char *factory = tail + ft.n_tomb * 8;
    if (strlen(factory) != ft.factory_len) {
        st = fn_error_set(err, FN_ERR_CORRUPT, "%s: bad factory string in the trailer", path);
        goto done;
    }
    if (faiss_read_index(fp, 0, &idx)) {
        char what[512];
        snprintf(what, sizeof what, "%s: reading the FAISS index", path);
        st = faiss_fail(err, FN_ERR_CORRUPT, what);
        goto done;
    }
    long pos = ftell(fp);
    if (pos < 0 || (uint64_t)pos != ft.faiss_bytes) {
        st = fn_error_set(err, FN_ERR_CORRUPT,
                          "%s: the FAISS index ends at byte %ld, the trailer says %llu", path, pos,
                          (unsigned long long)ft.faiss_bytes);
        goto done;
    }
    if (!faiss_IndexIDMap2_cast(idx) || faiss_Index_metric_type(idx) != METRIC_INNER_PRODUCT ||
        (size_t)faiss_Index_d(idx) != ft.dim) {
        st = fn_error_set(err, FN_ERR_CORRUPT,
                          "%s: the FAISS index is not an inner-product IDMap2 index of "
                          "dimension %u",
                          path, ft.dim);
        goto done;
    }
    fn_ann_params d = {(int)ft.ef_search, (int)ft.nprobe};
    st = ann_wrap(idx, ft.dim, factory, d, &a, err);
    idx = NULL;
    if (st != FN_OK) goto done;
    if ((ft.ef_search && !a->has_ef) || (ft.nprobe && !a->has_nprobe)) {
        st =
            fn_error_set(err, FN_ERR_CORRUPT, "%s: the saved search parameters do not apply", path);
        goto done;
    }
    idx_t *id_map;
    size_t ntotal;
    faiss_IndexIDMap2_id_map(a->idmap, &id_map, &ntotal);
    if ((st = idtable_reserve(&a->ids, ntotal, err)) != FN_OK) goto done;
    for (size_t i = 0; i < ntotal; i++) {
        if (id_map[i] < 0 || idtable_find(&a->ids, id_map[i])) {
            st = fn_error_set(err, FN_ERR_CORRUPT, "%s: id %lld is negative or held twice", path,
                              (long long)id_map[i]);
            goto done;
        }
        idtable_put(&a->ids, id_map[i], ID_LIVE);
    }
    a->n_live = ntotal;
    for (uint64_t i = 0; i < ft.n_tomb; i++) {
        int64_t id;
        memcpy(&id, tail + i * 8, 8);
        uint8_t *s = idtable_find(&a->ids, id);
        if (!s || *s != ID_LIVE) {
            st = fn_error_set(err, FN_ERR_CORRUPT,
                              "%s: deleted id %lld is not in the index (or listed twice)", path,
                              (long long)id);
            goto done;
        }
        *s = ID_DELETED;
        a->n_live--;
        a->n_deleted++;
    }
done:
    fclose(fp);
    free(tail);
    if (idx) faiss_Index_free(idx);
    if (st != FN_OK) {
        fn_ann_free(a);
        return st;
    }
    *out = a;
    return FN_OK;
}
