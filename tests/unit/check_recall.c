/*
 * check_recall.c - the ANN index over FAISS's C API: argument errors and the
 * empty index first, then exact Flat results against a brute force in C,
 * HNSW recall and efSearch, IVF and nprobe, ids (duplicates, negatives, all
 * or nothing), tombstone deletes with over-fetch, rebuild, files (round trip,
 * damage, truncation, wrong dimension), concurrent searches with mixed
 * parameters and with writers, and the .fvecs/.ivecs files.
 */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/index_io_c.h>

#include "common/buf.h"
#include "recall/recall.h"
#include "test_util.h"

static char *tmp;

static void setup(void)
{
    tmp = fn_test_tmpdir();
}

static void teardown(void)
{
    fn_test_rmtree(tmp);
    free(tmp);
}

/* ---- helpers ---- */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static double rng_unit(uint64_t *s)
{
    return ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
}

/* n random unit vectors of dimension dim (Gaussian, normalised). */
static float *random_unit(size_t n, size_t dim, uint64_t seed)
{
    float *v = malloc(n * dim * sizeof *v);
    ck_assert_ptr_nonnull(v);
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        double ss = 0;
        for (size_t j = 0; j < dim; j++) {
            double g = sqrt(-2 * log(rng_unit(&s))) * cos(2 * M_PI * rng_unit(&s));
            v[i * dim + j] = (float)g;
            ss += g * g;
        }
        for (size_t j = 0; j < dim; j++) v[i * dim + j] /= (float)sqrt(ss);
    }
    return v;
}

static int64_t *seq_ids(size_t n, int64_t first)
{
    int64_t *ids = malloc(n * sizeof *ids);
    ck_assert_ptr_nonnull(ids);
    for (size_t i = 0; i < n; i++) ids[i] = first + (int64_t)i;
    return ids;
}

typedef struct scored {
    double s;
    int64_t id;
} scored;

static int by_score_desc(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->s != y->s) return x->s < y->s ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

/*
 * Brute force in plain C: the k best rows of base (unit vectors, ids[i] or i)
 * by inner product with each query, skipping rows whose skip[i] is set.
 */
static void brute_force(const float *base, const int64_t *ids, const unsigned char *skip, size_t n,
                        const float *q, size_t nq, size_t dim, size_t k, int64_t *out, float *out_s)
{
    scored *all = malloc(n * sizeof *all);
    ck_assert_ptr_nonnull(all);
    for (size_t i = 0; i < nq; i++) {
        size_t m = 0;
        for (size_t r = 0; r < n; r++) {
            if (skip && skip[r]) continue;
            double s = 0;
            for (size_t j = 0; j < dim; j++) s += (double)base[r * dim + j] * q[i * dim + j];
            all[m].s = s;
            all[m++].id = ids ? ids[r] : (int64_t)r;
        }
        qsort(all, m, sizeof *all, by_score_desc);
        for (size_t j = 0; j < k; j++) {
            out[i * k + j] = j < m ? all[j].id : -1;
            if (out_s) out_s[i * k + j] = j < m ? (float)all[j].s : -INFINITY;
        }
    }
    free(all);
}

static double recall_at(const int64_t *res, const int64_t *truth, size_t nq, size_t k)
{
    size_t hits = 0;
    for (size_t i = 0; i < nq; i++)
        for (size_t j = 0; j < k; j++)
            for (size_t r = 0; r < k; r++)
                if (res[i * k + r] == truth[i * k + j] && truth[i * k + j] >= 0) {
                    hits++;
                    break;
                }
    return (double)hits / (double)(nq * k);
}

static fn_ann *new_ann(const char *factory, size_t dim)
{
    fn_error err = {0};
    fn_ann *a = NULL;
    fn_status st = fn_ann_new(factory, dim, &a, &err);
    ck_assert_msg(st == FN_OK, "%s: %s", factory, err.msg);
    return a;
}

static void add_ok(fn_ann *a, size_t n, const float *v, const int64_t *ids)
{
    fn_error err = {0};
    fn_status st = fn_ann_add(a, n, v, ids, &err);
    ck_assert_msg(st == FN_OK, "add: %s", err.msg);
}

static void search_ok(fn_ann *a, size_t nq, const float *q, size_t k, int ef, int nprobe,
                      int64_t *ids, float *scores)
{
    fn_error err = {0};
    fn_ann_params p = {ef, nprobe};
    fn_status st = fn_ann_search(a, nq, q, k, &p, ids, scores, &err);
    ck_assert_msg(st == FN_OK, "search: %s", err.msg);
}

/* ---- arguments and the empty index ---- */

START_TEST(bad_arguments_are_errors)
{
    fn_error err = {0};
    fn_ann *a = NULL;
    ck_assert_int_eq(fn_ann_new("NoSuchIndex42", 16, &a, &err), FN_ERR_INVALID);
    ck_assert_ptr_null(a);
    ck_assert_msg(strstr(err.msg, "NoSuchIndex42") != NULL, "%s", err.msg);
    ck_assert_int_eq(fn_ann_new("Flat", 0, &a, &err), FN_ERR_INVALID);
    ck_assert_int_eq(fn_ann_new("", 16, &a, &err), FN_ERR_INVALID);
    ck_assert_int_eq(fn_ann_new("IDMap2,Flat", 16, &a, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "IDMap") != NULL, "%s", err.msg);

    a = new_ann("Flat", 8);
    ck_assert(!fn_ann_has_ef_search(a) && !fn_ann_has_nprobe(a));
    float q[8] = {1, 0, 0, 0, 0, 0, 0, 0};
    int64_t ids[3];
    float sc[3];
    fn_ann_params ef = {32, 0}, np = {0, 4}, neg = {-1, 0};
    ck_assert_int_eq(fn_ann_search(a, 1, q, 3, &ef, ids, sc, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "efSearch") != NULL, "%s", err.msg);
    ck_assert_int_eq(fn_ann_search(a, 1, q, 3, &np, ids, sc, &err), FN_ERR_INVALID);
    ck_assert_int_eq(fn_ann_search(a, 1, q, 3, &neg, ids, sc, &err), FN_ERR_INVALID);
    ck_assert_int_eq(fn_ann_search(a, 1, q, 0, NULL, ids, sc, &err), FN_ERR_INVALID);
    ck_assert_int_eq(fn_ann_set_defaults(a, &ef, &err), FN_ERR_INVALID);

    /* Empty index: every slot is "none". */
    search_ok(a, 1, q, 3, 0, 0, ids, sc);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(ids[i], -1);
        ck_assert(isinf(sc[i]) && sc[i] < 0);
    }
    /* A non-finite query or vector is refused. */
    q[3] = NAN;
    ck_assert_int_eq(fn_ann_search(a, 1, q, 3, NULL, ids, sc, &err), FN_ERR_INVALID);
    int64_t id = 1;
    ck_assert_int_eq(fn_ann_add(a, 1, q, &id, &err), FN_ERR_INVALID);
    ck_assert_uint_eq(fn_ann_count(a), 0);
    fn_ann_free(a);
    fn_ann_free(NULL);
    /* FAISS's OpenMP threads for this thread: 1, all CPUs, nonsense. */
    ck_assert_int_eq(fn_ann_set_threads(1, &err), FN_OK);
    ck_assert_int_eq(fn_ann_set_threads(0, &err), FN_OK);
    ck_assert_int_eq(fn_ann_set_threads(-2, &err), FN_ERR_INVALID);
}
END_TEST

START_TEST(one_vector_and_k_beyond_the_index)
{
    fn_ann *a = new_ann("HNSW8,Flat", 4);
    float v[4] = {0, 3, 0, 4}; /* normalised on the way in: (0, .6, 0, .8) */
    int64_t id = 77;
    add_ok(a, 1, v, &id);
    ck_assert(fn_ann_contains(a, 77) && !fn_ann_contains(a, 78));
    int64_t ids[5];
    float sc[5];
    float q[4] = {0, 0, 0, 2};
    search_ok(a, 1, q, 5, 0, 0, ids, sc);
    ck_assert_int_eq(ids[0], 77);
    ck_assert_float_eq_tol(sc[0], 0.8f, 1e-6f);
    for (int i = 1; i < 5; i++) ck_assert_int_eq(ids[i], -1);
    fn_ann_free(a);
}
END_TEST

/* ---- exact and approximate search ---- */

START_TEST(flat_matches_brute_force)
{
    size_t n = 3000, nq = 40, dim = 48, k = 10;
    float *base = random_unit(n, dim, 1), *q = random_unit(nq, dim, 2);
    int64_t *ids = seq_ids(n, 1000);
    fn_ann *a = new_ann("Flat", dim);
    add_ok(a, n, base, ids);
    ck_assert_uint_eq(fn_ann_count(a), n);
    int64_t got[400], want[400];
    float gs[400], ws[400];
    search_ok(a, nq, q, k, 0, 0, got, gs);
    brute_force(base, ids, NULL, n, q, nq, dim, k, want, ws);
    for (size_t i = 0; i < nq * k; i++) {
        ck_assert_int_eq(got[i], want[i]);
        ck_assert_float_eq_tol(gs[i], ws[i], 1e-5f);
    }
    /* Vectors that are not unit length are normalised: scaling changes nothing. */
    for (size_t i = 0; i < nq * dim; i++) q[i] *= 7.5f;
    search_ok(a, nq, q, k, 0, 0, got, gs);
    for (size_t i = 0; i < nq * k; i++) ck_assert_int_eq(got[i], want[i]);
    fn_ann_free(a);
    free(base), free(q), free(ids);
}
END_TEST

START_TEST(hnsw_recall_and_ef_search)
{
    size_t n = 8000, nq = 100, dim = 32, k = 10;
    float *base = random_unit(n, dim, 3), *q = random_unit(nq, dim, 4);
    int64_t *ids = seq_ids(n, 0);
    fn_ann *a = new_ann("HNSW32,Flat", dim);
    ck_assert(fn_ann_has_ef_search(a) && !fn_ann_has_nprobe(a));
    ck_assert_int_eq(fn_ann_defaults(a).ef_search, FN_ANN_DEFAULT_EF_SEARCH);
    add_ok(a, n, base, ids);
    int64_t *got = malloc(nq * k * sizeof *got), *want = malloc(nq * k * sizeof *want);
    brute_force(base, ids, NULL, n, q, nq, dim, k, want, NULL);
    search_ok(a, nq, q, k, 0, 0, got, NULL);
    double r_default = recall_at(got, want, nq, k);
    search_ok(a, nq, q, k, 10, 0, got, NULL);
    double r_low = recall_at(got, want, nq, k);
    search_ok(a, nq, q, k, 256, 0, got, NULL);
    double r_high = recall_at(got, want, nq, k);
    fprintf(stderr, "HNSW32 recall@10: ef 10 %.3f, default %.3f, ef 256 %.3f\n", r_low, r_default,
            r_high);
    ck_assert_msg(r_default >= 0.9, "recall@10 %.3f at the default efSearch", r_default);
    ck_assert_msg(r_high >= 0.98, "recall@10 %.3f at efSearch 256", r_high);
    ck_assert_msg(r_low < r_high, "efSearch has no effect: %.3f vs %.3f", r_low, r_high);
    /* One query at a time gives the same answers as the batch. */
    int64_t one[10];
    search_ok(a, 1, q + 5 * dim, k, 256, 0, one, NULL);
    for (size_t j = 0; j < k; j++) ck_assert_int_eq(one[j], got[5 * k + j]);
    fn_ann_free(a);
    free(base), free(q), free(ids), free(got), free(want);
}
END_TEST

START_TEST(ivf_trains_and_nprobe_matters)
{
    size_t n = 6000, nq = 100, dim = 32, k = 10;
    float *base = random_unit(n, dim, 5), *q = random_unit(nq, dim, 6);
    int64_t *ids = seq_ids(n, 0);
    fn_error err = {0};
    fn_ann *a = new_ann("IVF64,Flat", dim);
    ck_assert(!fn_ann_has_ef_search(a) && fn_ann_has_nprobe(a));
    ck_assert(!fn_ann_is_trained(a));
    ck_assert_int_eq(fn_ann_add(a, n, base, ids, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "trained") != NULL, "%s", err.msg);
    /* Fewer training points than lists: FAISS's reason comes back. */
    ck_assert_int_eq(fn_ann_train(a, 10, base, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "IVF64,Flat") != NULL, "%s", err.msg);
    ck_assert_int_eq(fn_ann_train(a, n, base, &err), FN_OK);
    ck_assert(fn_ann_is_trained(a));
    add_ok(a, n, base, ids);
    int64_t *got = malloc(nq * k * sizeof *got), *want = malloc(nq * k * sizeof *want);
    brute_force(base, ids, NULL, n, q, nq, dim, k, want, NULL);
    search_ok(a, nq, q, k, 0, 1, got, NULL);
    double r1 = recall_at(got, want, nq, k);
    search_ok(a, nq, q, k, 0, 64, got, NULL);
    double r64 = recall_at(got, want, nq, k);
    fprintf(stderr, "IVF64,Flat recall@10: nprobe 1 %.3f, nprobe 64 %.3f\n", r1, r64);
    ck_assert_msg(r64 == 1.0, "all lists probed over Flat codes must be exact: %.3f", r64);
    ck_assert_msg(r1 < 0.8, "nprobe 1 recall %.3f: nprobe has no effect?", r1);
    fn_ann_params ef = {16, 0};
    ck_assert_int_eq(fn_ann_search(a, 1, q, k, &ef, got, NULL, &err), FN_ERR_INVALID);
    fn_ann_free(a);

    /* Product quantisation: lossy, but it must find most neighbours with all lists probed. */
    a = new_ann("IVF16,PQ16x4", dim);
    ck_assert_int_eq(fn_ann_train(a, n, base, &err), FN_OK);
    add_ok(a, n, base, ids);
    search_ok(a, nq, q, k, 0, 16, got, NULL);
    double rpq = recall_at(got, want, nq, k);
    fprintf(stderr, "IVF16,PQ16x4 recall@10 (nprobe 16): %.3f\n", rpq);
    ck_assert_msg(rpq > 0.3, "IVF16,PQ16x4 recall@10 %.3f", rpq);
    fn_ann_free(a);
    free(base), free(q), free(ids), free(got), free(want);
}
END_TEST

/* ---- ids, deletes, rebuild ---- */

START_TEST(ids_are_checked_all_or_nothing)
{
    size_t dim = 8;
    float *v = random_unit(4, dim, 7);
    fn_error err = {0};
    fn_ann *a = new_ann("Flat", dim);
    int64_t neg[2] = {1, -5}, twice[3] = {1, 2, 1}, ok[2] = {10, 11}, clash[2] = {12, 11};
    ck_assert_int_eq(fn_ann_add(a, 2, v, neg, &err), FN_ERR_INVALID);
    ck_assert_int_eq(fn_ann_add(a, 3, v, twice, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "id 1 is given twice") != NULL, "%s", err.msg);
    ck_assert_uint_eq(fn_ann_count(a), 0);
    add_ok(a, 2, v, ok);
    ck_assert_int_eq(fn_ann_add(a, 2, v, clash, &err), FN_ERR_EXISTS);
    ck_assert_msg(strstr(err.msg, "11") != NULL, "%s", err.msg);
    ck_assert_uint_eq(fn_ann_count(a), 2);
    ck_assert(!fn_ann_contains(a, 12));
    /* Deleted ids stay taken until a rebuild. */
    size_t d = 9;
    ck_assert_int_eq(fn_ann_delete(a, 2, (int64_t[]){11, 99}, &d, &err), FN_OK);
    ck_assert_uint_eq(d, 1);
    ck_assert_int_eq(fn_ann_add(a, 1, v, (int64_t[]){11}, &err), FN_ERR_EXISTS);
    ck_assert_msg(strstr(err.msg, "rebuild") != NULL, "%s", err.msg);
    ck_assert_int_eq(fn_ann_rebuild(a, &err), FN_OK);
    add_ok(a, 1, v + dim, (int64_t[]){11});
    ck_assert_uint_eq(fn_ann_count(a), 2);
    ck_assert_uint_eq(fn_ann_deleted(a), 0);
    fn_ann_free(a);
    free(v);
}
END_TEST

START_TEST(deletes_are_filtered_with_over_fetch)
{
    size_t n = 2000, dim = 16, k = 10;
    float *base = random_unit(n, dim, 8), *q = random_unit(1, dim, 9);
    int64_t *ids = seq_ids(n, 0);
    fn_error err = {0};
    fn_ann *a = new_ann("Flat", dim);
    add_ok(a, n, base, ids);
    /* Delete the 100 best matches: k=10 needs several doublings past them. */
    int64_t top[100];
    brute_force(base, ids, NULL, n, q, 1, dim, 100, top, NULL);
    size_t d;
    ck_assert_int_eq(fn_ann_delete(a, 100, top, &d, &err), FN_OK);
    ck_assert_uint_eq(d, 100);
    ck_assert_uint_eq(fn_ann_count(a), n - 100);
    ck_assert_uint_eq(fn_ann_deleted(a), 100);
    unsigned char *skip = calloc(n, 1);
    for (int i = 0; i < 100; i++) skip[top[i]] = 1;
    int64_t got[10], want[10];
    search_ok(a, 1, q, k, 0, 0, got, NULL);
    brute_force(base, ids, skip, n, q, 1, dim, k, want, NULL);
    for (size_t j = 0; j < k; j++) ck_assert_int_eq(got[j], want[j]);
    /* Deleting twice changes nothing. */
    ck_assert_int_eq(fn_ann_delete(a, 1, top, &d, &err), FN_OK);
    ck_assert_uint_eq(d, 0);

    /* All but 3 deleted: 3 results, then none, for every query. */
    int64_t *rest = malloc(n * sizeof *rest);
    size_t m = 0;
    for (size_t i = 3; i < n; i++) rest[m++] = (int64_t)i;
    ck_assert_int_eq(fn_ann_delete(a, m, rest, NULL, &err), FN_OK);
    ck_assert_uint_eq(fn_ann_count(a), 3);
    search_ok(a, 1, q, k, 0, 0, got, NULL);
    int seen[3] = {0};
    for (size_t j = 0; j < 3; j++) {
        ck_assert(got[j] >= 0 && got[j] < 3);
        seen[got[j]]++;
    }
    ck_assert(seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
    for (size_t j = 3; j < k; j++) ck_assert_int_eq(got[j], -1);
    /* Everything deleted. */
    ck_assert_int_eq(fn_ann_delete(a, 3, (int64_t[]){0, 1, 2}, NULL, &err), FN_OK);
    search_ok(a, 1, q, k, 0, 0, got, NULL);
    for (size_t j = 0; j < k; j++) ck_assert_int_eq(got[j], -1);
    fn_ann_free(a);
    free(base), free(q), free(ids), free(skip), free(rest);
}
END_TEST

START_TEST(rebuild_compacts_hnsw_and_ivf)
{
    size_t n = 3000, nq = 50, dim = 24, k = 10;
    float *base = random_unit(n, dim, 10), *q = random_unit(nq, dim, 11);
    int64_t *ids = seq_ids(n, 500);
    unsigned char *skip = calloc(n, 1);
    int64_t *del = malloc(n * sizeof *del);
    size_t nd = 0;
    for (size_t i = 0; i < n; i += 2) skip[i] = 1, del[nd++] = ids[i];
    int64_t *want = malloc(nq * k * sizeof *want), *got = malloc(nq * k * sizeof *got);
    brute_force(base, ids, skip, n, q, nq, dim, k, want, NULL);
    const char *factories[] = {"HNSW16,Flat", "IVF32,Flat", "Flat"};
    for (size_t f = 0; f < 3; f++) {
        fn_error err = {0};
        fn_ann *a = new_ann(factories[f], dim);
        ck_assert_int_eq(fn_ann_train(a, n, base, &err), FN_OK);
        add_ok(a, n, base, ids);
        ck_assert_int_eq(fn_ann_delete(a, nd, del, NULL, &err), FN_OK);
        int nprobe = fn_ann_has_nprobe(a) ? 32 : 0, ef = fn_ann_has_ef_search(a) ? 200 : 0;
        ck_assert_int_eq(fn_ann_rebuild(a, &err), FN_OK);
        ck_assert_uint_eq(fn_ann_deleted(a), 0);
        ck_assert_uint_eq(fn_ann_count(a), n - nd);
        ck_assert(fn_ann_is_trained(a));
        ck_assert(!fn_ann_contains(a, del[0]) && fn_ann_contains(a, ids[1]));
        /* The rebuilt index holds exactly the live vectors. */
        size_t vn;
        int64_t *vid;
        float *vv;
        ck_assert_int_eq(fn_ann_vectors(a, &vn, &vid, &vv, &err), FN_OK);
        ck_assert_uint_eq(vn, n - nd);
        for (size_t i = 0; i < vn; i++) {
            size_t row = (size_t)(vid[i] - 500);
            ck_assert(!skip[row]);
            for (size_t j = 0; j < dim; j++)
                ck_assert_float_eq_tol(vv[i * dim + j], base[row * dim + j], 1e-6f);
        }
        free(vid), free(vv);
        search_ok(a, nq, q, k, ef, nprobe, got, NULL);
        double r = recall_at(got, want, nq, k);
        ck_assert_msg(r >= (f == 0 ? 0.95 : 1.0), "%s after rebuild: recall %.3f", factories[f], r);
        /* The rebuilt index saves and loads back to the same answers (FAISS 1.7.3 cannot
         * write an HNSW index that went through its own clone). */
        char *dir = fn_test_tmpdir(), *path = fn_test_path(dir, "rebuilt.faiss");
        ck_assert_msg(fn_ann_save(a, path, &err) == FN_OK, "%s: %s", factories[f], err.msg);
        fn_ann *back = NULL;
        ck_assert_msg(fn_ann_load(path, dim, &back, &err) == FN_OK, "%s", err.msg);
        int64_t *again = malloc(nq * k * sizeof *again);
        search_ok(back, nq, q, k, ef, nprobe, again, NULL);
        ck_assert_msg(!memcmp(again, got, nq * k * sizeof *got), "%s: loaded index differs",
                      factories[f]);
        ck_assert_uint_eq(fn_ann_count(back), n - nd);
        fn_ann_free(back);
        free(again), free(path), free(dir);
        /* A rebuild with nothing deleted is a no-op. */
        ck_assert_int_eq(fn_ann_rebuild(a, &err), FN_OK);
        ck_assert_uint_eq(fn_ann_count(a), n - nd);
        fn_ann_free(a);
    }
    free(base), free(q), free(ids), free(skip), free(del), free(want), free(got);
}
END_TEST

/* ---- files ---- */

/* An HNSW index with tombstones and its own defaults, saved to dir/name. */
static fn_ann *saved_index(const char *path, size_t n, size_t dim, float **base_out)
{
    fn_error err = {0};
    float *base = random_unit(n, dim, 12);
    int64_t *ids = seq_ids(n, 0);
    fn_ann *a = new_ann("HNSW16,Flat", dim);
    add_ok(a, n, base, ids);
    ck_assert_int_eq(fn_ann_delete(a, 3, (int64_t[]){4, 8, 15}, NULL, &err), FN_OK);
    fn_ann_params d = {100, 0};
    ck_assert_int_eq(fn_ann_set_defaults(a, &d, &err), FN_OK);
    ck_assert_msg(fn_ann_save(a, path, &err) == FN_OK, "%s", err.msg);
    free(ids);
    *base_out = base;
    return a;
}

START_TEST(save_and_load_round_trip)
{
    size_t n = 1500, dim = 20, nq = 20, k = 10;
    char *path = fn_test_path(tmp, "items.faiss");
    float *base;
    fn_ann *a = saved_index(path, n, dim, &base);
    fn_error err = {0};
    fn_ann *b = NULL;
    ck_assert_msg(fn_ann_load(path, dim, &b, &err) == FN_OK, "%s", err.msg);
    ck_assert_str_eq(fn_ann_factory(b), "HNSW16,Flat");
    ck_assert_uint_eq(fn_ann_dim(b), dim);
    ck_assert_uint_eq(fn_ann_count(b), n - 3);
    ck_assert_uint_eq(fn_ann_deleted(b), 3);
    ck_assert(!fn_ann_contains(b, 8) && fn_ann_contains(b, 9));
    ck_assert_int_eq(fn_ann_defaults(b).ef_search, 100);
    float *q = random_unit(nq, dim, 13);
    int64_t ga[200], gb[200];
    float sa[200], sb[200];
    search_ok(a, nq, q, k, 0, 0, ga, sa);
    search_ok(b, nq, q, k, 0, 0, gb, sb);
    for (size_t i = 0; i < nq * k; i++) {
        ck_assert_int_eq(ga[i], gb[i]);
        ck_assert_float_eq(sa[i], sb[i]);
        ck_assert(ga[i] != 4 && ga[i] != 8 && ga[i] != 15);
    }
    /* The loaded index takes adds, and the deleted ids stay taken. */
    ck_assert_int_eq(fn_ann_add(b, 1, base, (int64_t[]){8}, &err), FN_ERR_EXISTS);
    add_ok(b, 1, base, (int64_t[]){5000});
    /* The file is FAISS's own (IDMap2 fourcc first), and no temporary file is left over. */
    fn_buf f = FN_BUF_INIT;
    fn_test_read_file(path, &f);
    ck_assert(f.len > 4 && memcmp(f.data, "IxM2", 4) == 0);
    fn_buf_free(&f);
    /* FAISS itself reads the file as it is (the trailer after its index is ignored). */
    FaissIndex *raw = NULL;
    ck_assert_int_eq(faiss_read_index_fname(path, 0, &raw), 0);
    ck_assert_int_eq(faiss_Index_ntotal(raw), (idx_t)n);
    ck_assert_int_eq(faiss_Index_d(raw), (int)dim);
    faiss_Index_free(raw);
    char *cmd = malloc(strlen(tmp) + 32);
    sprintf(cmd, "ls %s | wc -l", tmp);
    fn_buf out = FN_BUF_INIT;
    ck_assert_int_eq(fn_test_run(cmd, &out), 0);
    ck_assert_int_eq(atoi(out.data), 1);
    fn_buf_free(&out);
    free(cmd);
    /* Saving over an existing file replaces it. */
    ck_assert_int_eq(fn_ann_save(b, path, &err), FN_OK);
    fn_ann *c = NULL;
    ck_assert_int_eq(fn_ann_load(path, 0, &c, &err), FN_OK);
    ck_assert_uint_eq(fn_ann_count(c), n - 2);
    fn_ann_free(a), fn_ann_free(b), fn_ann_free(c);
    free(base), free(q), free(path);
}
END_TEST

START_TEST(ivf_pq_round_trip_keeps_nprobe)
{
    size_t n = 4000, dim = 32, k = 5;
    char *path = fn_test_path(tmp, "pq.faiss");
    float *base = random_unit(n, dim, 14);
    int64_t *ids = seq_ids(n, 0);
    fn_error err = {0};
    fn_ann *a = new_ann("IVF32,PQ8x4", dim);
    ck_assert_int_eq(fn_ann_train(a, n, base, &err), FN_OK);
    add_ok(a, n, base, ids);
    ck_assert_int_eq(fn_ann_set_defaults(a, &(fn_ann_params){0, 8}, &err), FN_OK);
    ck_assert_int_eq(fn_ann_save(a, path, &err), FN_OK);
    fn_ann *b = NULL;
    ck_assert_int_eq(fn_ann_load(path, 32, &b, &err), FN_OK);
    ck_assert_int_eq(fn_ann_defaults(b).nprobe, 8);
    int64_t ga[50], gb[50];
    search_ok(a, 10, base, k, 0, 0, ga, NULL);
    search_ok(b, 10, base, k, 0, 0, gb, NULL);
    for (int i = 0; i < 50; i++) ck_assert_int_eq(ga[i], gb[i]);
    fn_ann_free(a), fn_ann_free(b);
    free(base), free(ids), free(path);
}
END_TEST

START_TEST(damaged_files_are_refused)
{
    size_t n = 500, dim = 12;
    char *path = fn_test_path(tmp, "good.faiss"), *bad = fn_test_path(tmp, "bad.faiss");
    float *base;
    fn_ann *a = saved_index(path, n, dim, &base);
    fn_ann_free(a);
    fn_buf f = FN_BUF_INIT;
    fn_test_read_file(path, &f);
    fn_error err = {0};
    fn_ann *b = NULL;

    /* One flipped bit in the vectors: only the checksum can tell. */
    f.data[f.len / 2] ^= 0x10;
    fn_test_write_file(bad, f.data, f.len);
    ck_assert_int_eq(fn_ann_load(bad, 0, &b, &err), FN_ERR_CORRUPT);
    ck_assert_ptr_null(b);
    ck_assert_msg(strstr(err.msg, "checksum") && strstr(err.msg, "bad.faiss"), "%s", err.msg);
    f.data[f.len / 2] ^= 0x10;

    /* Truncated: the trailer is gone or no longer fits. */
    fn_test_write_file(bad, f.data, f.len - 10);
    ck_assert_int_eq(fn_ann_load(bad, 0, &b, &err), FN_ERR_CORRUPT);
    fn_test_write_file(bad, f.data, f.len / 3);
    ck_assert_int_eq(fn_ann_load(bad, 0, &b, &err), FN_ERR_CORRUPT);
    ck_assert_msg(strstr(err.msg, "not a funnel ANN index") != NULL, "%s", err.msg);
    fn_test_write_file(bad, "", 0);
    ck_assert_int_eq(fn_ann_load(bad, 0, &b, &err), FN_ERR_CORRUPT);
    /* Damage in the trailer's sizes. */
    f.data[f.len - 48 + 16] ^= 1; /* faiss_bytes */
    fn_test_write_file(bad, f.data, f.len);
    ck_assert_int_eq(fn_ann_load(bad, 0, &b, &err), FN_ERR_CORRUPT);
    f.data[f.len - 48 + 16] ^= 1;
    /* A plain FAISS file (no trailer) is refused rather than loaded without its tombstones. */
    fn_test_write_file(bad, f.data, f.len - 48 - 3 * 8 - strlen("HNSW16,Flat"));
    ck_assert_int_eq(fn_ann_load(bad, 0, &b, &err), FN_ERR_CORRUPT);

    /* Wrong dimension and a missing file. */
    ck_assert_int_eq(fn_ann_load(path, 384, &b, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "dimension 12, expected 384") != NULL, "%s", err.msg);
    char *missing = fn_test_path(tmp, "none.faiss");
    ck_assert_int_eq(fn_ann_load(missing, 0, &b, &err), FN_ERR_NOT_FOUND);
    /* The good file still loads. */
    ck_assert_int_eq(fn_ann_load(path, 12, &b, &err), FN_OK);
    fn_ann_free(b);
    /* Saving into a folder that does not exist fails cleanly. */
    a = new_ann("Flat", 4);
    char *nodir = fn_test_path(tmp, "no/such/dir.faiss");
    ck_assert_int_eq(fn_ann_save(a, nodir, &err), FN_ERR_IO);
    fn_ann_free(a);
    fn_buf_free(&f);
    free(base), free(path), free(bad), free(missing), free(nodir);
}
END_TEST

/* ---- threads ---- */

typedef struct search_job {
    fn_ann *a;
    const float *q;
    size_t nq, dim, k, rounds;
    const int64_t *ref16, *ref128; /* expected ids at efSearch 16 and 128, or NULL */
    int failures;
    size_t deleted_seen;
    int64_t del_lo, del_hi; /* ids in [lo, hi) are deleted before the threads start */
} search_job;

static void *search_thread(void *arg)
{
    search_job *j = arg;
    int64_t got[10];
    for (size_t r = 0; r < j->rounds; r++) {
        size_t i = (r * 7 + (size_t)(uintptr_t)j % 13) % j->nq;
        int ef = (r % 2) ? 128 : 16;
        fn_error err = {0};
        fn_ann_params p = {ef, 0};
        if (fn_ann_search(j->a, 1, j->q + i * j->dim, j->k, &p, got, NULL, &err) != FN_OK) {
            j->failures++;
            continue;
        }
        const int64_t *ref = ef == 16 ? j->ref16 : j->ref128;
        for (size_t c = 0; c < j->k; c++) {
            if (ref && got[c] != ref[i * j->k + c]) j->failures++;
            if (got[c] >= j->del_lo && got[c] < j->del_hi) j->deleted_seen++;
        }
    }
    return NULL;
}

START_TEST(concurrent_searches_with_mixed_parameters)
{
    size_t n = 4000, nq = 64, dim = 32, k = 10, nt = 4;
    float *base = random_unit(n, dim, 15), *q = random_unit(nq, dim, 16);
    int64_t *ids = seq_ids(n, 0);
    fn_ann *a = new_ann("HNSW16,Flat", dim);
    add_ok(a, n, base, ids);
    int64_t *r16 = malloc(nq * k * sizeof *r16), *r128 = malloc(nq * k * sizeof *r128);
    for (size_t i = 0; i < nq; i++) {
        search_ok(a, 1, q + i * dim, k, 16, 0, r16 + i * k, NULL);
        search_ok(a, 1, q + i * dim, k, 128, 0, r128 + i * k, NULL);
    }
    /* The two settings answer differently somewhere, or the test proves nothing. */
    ck_assert(memcmp(r16, r128, nq * k * sizeof *r16) != 0);
    pthread_t th[4];
    search_job jobs[4];
    for (size_t t = 0; t < nt; t++) {
        jobs[t] = (search_job){a, q, nq, dim, k, 400, r16, r128, 0, 0, -1, -1};
        ck_assert_int_eq(pthread_create(&th[t], NULL, search_thread, &jobs[t]), 0);
    }
    for (size_t t = 0; t < nt; t++) {
        pthread_join(th[t], NULL);
        ck_assert_msg(jobs[t].failures == 0, "thread %zu: %d answers differ from one thread's", t,
                      jobs[t].failures);
    }
    fn_ann_free(a);
    free(base), free(q), free(ids), free(r16), free(r128);
}
END_TEST

START_TEST(concurrent_searches_with_adds_and_deletes)
{
    size_t n = 3000, extra = 2000, nq = 32, dim = 16, k = 10, nt = 3;
    float *base = random_unit(n + extra, dim, 17), *q = random_unit(nq, dim, 18);
    int64_t *ids = seq_ids(n + extra, 0);
    fn_error err = {0};
    fn_ann *a = new_ann("HNSW16,Flat", dim);
    add_ok(a, n, base, ids);
    /* Ids 0..499 are deleted before the searchers start: none may ever come back. */
    ck_assert_int_eq(fn_ann_delete(a, 500, ids, NULL, &err), FN_OK);
    pthread_t th[3];
    search_job jobs[3];
    for (size_t t = 0; t < nt; t++) {
        jobs[t] = (search_job){a, q, nq, dim, k, 300, NULL, NULL, 0, 0, 0, 500};
        ck_assert_int_eq(pthread_create(&th[t], NULL, search_thread, &jobs[t]), 0);
    }
    for (size_t i = 0; i < extra; i += 100) {
        add_ok(a, 100, base + (n + i) * dim, ids + n + i);
        ck_assert_int_eq(fn_ann_delete(a, 10, ids + 500 + i / 10, NULL, &err), FN_OK);
    }
    ck_assert_int_eq(fn_ann_rebuild(a, &err), FN_OK);
    for (size_t t = 0; t < nt; t++) {
        pthread_join(th[t], NULL);
        ck_assert_int_eq(jobs[t].failures, 0);
        ck_assert_uint_eq(jobs[t].deleted_seen, 0);
    }
    ck_assert_uint_eq(fn_ann_count(a), n + extra - 500 - 200);
    fn_ann_free(a);
    free(base), free(q), free(ids);
}
END_TEST

/* ---- vector files ---- */

START_TEST(fvecs_and_ivecs_files)
{
    fn_error err = {0};
    char *fv = fn_test_path(tmp, "x.fvecs"), *iv = fn_test_path(tmp, "x.ivecs");
    float v[6] = {1, 2, 3, 4, 5, 6};
    ck_assert_int_eq(fn_vecs_write_fvecs(fv, 2, 3, v, &err), FN_OK);
    size_t n, dim;
    float *r;
    ck_assert_int_eq(fn_vecs_read_fvecs(fv, &n, &dim, &r, &err), FN_OK);
    ck_assert(n == 2 && dim == 3 && memcmp(r, v, sizeof v) == 0);
    free(r);
    int32_t w[4] = {7, -1, 9, 10};
    ck_assert_int_eq(fn_vecs_write_ivecs(iv, 2, 2, w, &err), FN_OK);
    int32_t *ri;
    ck_assert_int_eq(fn_vecs_read_ivecs(iv, &n, &dim, &ri, &err), FN_OK);
    ck_assert(n == 2 && dim == 2 && memcmp(ri, w, sizeof w) == 0);
    free(ri);
    /* Truncated, mixed dimensions, empty, missing. */
    fn_buf f = FN_BUF_INIT;
    fn_test_read_file(fv, &f);
    fn_test_write_file(fv, f.data, f.len - 2);
    ck_assert_int_eq(fn_vecs_read_fvecs(fv, &n, &dim, &r, &err), FN_ERR_CORRUPT);
    int32_t mixed[] = {2, 0, 0, 1, 0};
    fn_test_write_file(fv, mixed, sizeof mixed);
    ck_assert_int_eq(fn_vecs_read_fvecs(fv, &n, &dim, &r, &err), FN_ERR_CORRUPT);
    int32_t mixed2[] = {1, 0, 2, 0};
    fn_test_write_file(fv, mixed2, sizeof mixed2);
    ck_assert_int_eq(fn_vecs_read_fvecs(fv, &n, &dim, &r, &err), FN_ERR_CORRUPT);
    ck_assert_msg(strstr(err.msg, "row 1 has dimension 2") != NULL, "%s", err.msg);
    fn_test_write_file(fv, "", 0);
    ck_assert_int_eq(fn_vecs_read_fvecs(fv, &n, &dim, &r, &err), FN_ERR_CORRUPT);
    ck_assert_int_eq(fn_vecs_read_fvecs("/nonexistent/x.fvecs", &n, &dim, &r, &err),
                     FN_ERR_NOT_FOUND);
    fn_buf_free(&f);
    free(fv), free(iv);
}
END_TEST

Suite *recall_suite(void)
{
    Suite *s = suite_create("recall");
    TCase *t = tcase_create("arguments");
    tcase_add_test(t, bad_arguments_are_errors);
    tcase_add_test(t, one_vector_and_k_beyond_the_index);
    suite_add_tcase(s, t);
    t = tcase_create("search");
    tcase_add_test(t, flat_matches_brute_force);
    tcase_add_test(t, hnsw_recall_and_ef_search);
    tcase_add_test(t, ivf_trains_and_nprobe_matters);
    suite_add_tcase(s, t);
    t = tcase_create("ids");
    tcase_add_test(t, ids_are_checked_all_or_nothing);
    tcase_add_test(t, deletes_are_filtered_with_over_fetch);
    tcase_add_test(t, rebuild_compacts_hnsw_and_ivf);
    suite_add_tcase(s, t);
    t = tcase_create("files");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, save_and_load_round_trip);
    tcase_add_test(t, ivf_pq_round_trip_keeps_nprobe);
    tcase_add_test(t, damaged_files_are_refused);
    tcase_add_test(t, fvecs_and_ivecs_files);
    suite_add_tcase(s, t);
    t = tcase_create("threads");
    tcase_add_test(t, concurrent_searches_with_mixed_parameters);
    tcase_add_test(t, concurrent_searches_with_adds_and_deletes);
    suite_add_tcase(s, t);
    return s;
}
