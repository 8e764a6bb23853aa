/*
 * check_encoder.c - the text encoder against sentence-transformers: the
 * embeddings of the committed fixture (texts and the vectors
 * sentence-transformers computed for them, tests/fixtures/embedding_parity.*,
 * made by tests/fixtures/make-embedding-fixture.py) must agree to cosine
 * >= 0.9999 on the CPU; batching and padding must not change a text's vector;
 * damaged model folders are refused with the file named.
 */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/file.h"
#include "llm/encoder.h"
#include "test_util.h"

typedef struct fixture {
    char **texts;
    float *vecs;
    size_t n, dim;
} fixture;

static void fixture_free(fixture *f)
{
    for (size_t i = 0; i < f->n; i++) free(f->texts[i]);
    free(f->texts);
    free(f->vecs);
}

/* Reads tests/fixtures/embedding_parity.jsonl and .fvecs (same order). */
static void load_fixture(fixture *f)
{
    fn_buf lines = FN_BUF_INIT, vecs = FN_BUF_INIT;
    fn_test_read_file(FUNNEL_SOURCE_DIR "/tests/fixtures/embedding_parity.jsonl", &lines);
    fn_test_read_file(FUNNEL_SOURCE_DIR "/tests/fixtures/embedding_parity.fvecs", &vecs);
    memset(f, 0, sizeof *f);
    size_t cap = 0;
    for (char *line = lines.data, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        json_error_t jerr;
        json_t *o = json_loads(line, JSON_ALLOW_NUL, &jerr);
        ck_assert_msg(o != NULL, "fixture line: %s", jerr.text);
        json_t *t = json_object_get(o, "text");
        if (json_is_string(t)) {
            if (f->n == cap) {
                cap = cap ? 2 * cap : 256;
                f->texts = realloc(f->texts, cap * sizeof *f->texts);
            }
            f->texts[f->n] = malloc(json_string_length(t) + 1);
            memcpy(f->texts[f->n], json_string_value(t), json_string_length(t) + 1);
            f->n++;
        }
        json_decref(o);
    }
    int32_t dim;
    ck_assert_uint_ge(vecs.len, 4);
    memcpy(&dim, vecs.data, 4);
    f->dim = (size_t)dim;
    ck_assert_uint_eq(vecs.len, f->n * (4 + f->dim * 4));
    f->vecs = malloc(f->n * f->dim * sizeof *f->vecs);
    for (size_t i = 0; i < f->n; i++)
        memcpy(f->vecs + i * f->dim, vecs.data + i * (4 + f->dim * 4) + 4, f->dim * 4);
    fn_buf_free(&lines);
    fn_buf_free(&vecs);
}

static double cosine(const float *a, const float *b, size_t n)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / (sqrt(aa * bb) + 1e-30);
}

static char *model_dir(void)
{
    char *cfg = fn_test_model("model.safetensors");
    if (!cfg) return NULL;
    *strrchr(cfg, '/') = '\0';
    return cfg;
}

/* Encodes the fixture on a device and asserts the lowest cosine is at least min_cos. */
static void check_parity(const char *device, const char *precision, double min_cos)
{
    char *dir = model_dir();
    if (!dir) return;
    if (access(FUNNEL_SOURCE_DIR "/tests/fixtures/embedding_parity.fvecs", R_OK) != 0) {
        fprintf(stderr, "SKIPPED: tests/fixtures/embedding_parity.fvecs is missing\n");
        free(dir);
        return;
    }
    fixture fx;
    load_fixture(&fx);
    ck_assert_uint_ge(fx.n, 200);
    fn_encoder_options o = {
        .device = device, .precision = precision, .threads = 2, .max_batch = 32};
    fn_error err = {0};
    fn_encoder *e;
    fn_status st = fn_encoder_load(dir, &o, &e, &err);
    if (st == FN_ERR_UNSUPPORTED && strcmp(device, "cuda") == 0) {
        fn_test_cuda_unavailable("encoder parity on CUDA", err.msg);
        fixture_free(&fx);
        free(dir);
        return;
    }
    if (st == FN_ERR_UNSUPPORTED) {
        fprintf(stderr, "SKIPPED (%s): %s\n", device, err.msg);
        fixture_free(&fx);
        free(dir);
        return;
    }
    ck_assert_msg(st == FN_OK, "%s", err.msg);
    ck_assert_uint_eq(fn_encoder_dim(e), fx.dim);
    float *got = malloc(fx.n * fx.dim * sizeof *got);
    ck_assert_msg(fn_encoder_encode(e, (const char *const *)fx.texts, NULL, fx.n, got, &err) ==
                      FN_OK,
                  "%s", err.msg);
    double worst = 1;
    size_t worst_i = 0;
    for (size_t i = 0; i < fx.n; i++) {
        double c = cosine(got + i * fx.dim, fx.vecs + i * fx.dim, fx.dim);
        if (c < worst) worst = c, worst_i = i;
    }
    fprintf(stderr, "encoder parity on %s: %zu texts, lowest cosine %.8f (text %zu)\n",
            fn_encoder_device_name(e), fx.n, worst, worst_i);
    ck_assert_msg(worst >= min_cos, "text %zu '%.60s': cosine %.6f", worst_i, fx.texts[worst_i],
                  worst);
    /* One at a time (no padding at all) gives the same vectors as in a padded batch. */
    for (size_t i = 0; i < fx.n; i += 37) {
        float one[1024];
        ck_assert_int_eq(
            fn_encoder_encode(e, (const char *const *)&fx.texts[i], NULL, 1, one, &err), FN_OK);
        ck_assert_msg(cosine(one, got + i * fx.dim, fx.dim) > 1 - (1 - min_cos) / 10, "text %zu",
                      i);
    }
    free(got);
    fn_encoder_free(e);
    fixture_free(&fx);
    free(dir);
}

START_TEST(parity_with_sentence_transformers_cpu)
{
    check_parity("cpu", NULL, 0.9999);
}
END_TEST

START_TEST(parity_with_sentence_transformers_cuda)
{
    check_parity("cuda", "bf16", 0.999);
    check_parity("cuda", "f16", 0.999);
    check_parity("cuda", "f32", 0.9999);
}
END_TEST

typedef struct worker_arg {
    fn_encoder *e;
    fixture *fx;
    size_t start, step;
    const float *want;
    int rounds;
    int mismatches;
} worker_arg;

static void *encode_worker(void *p)
{
    worker_arg *a = p;
    float v[1024];
    for (int round = 0; round < a->rounds; round++)
        for (size_t i = a->start; i < a->fx->n; i += a->step) {
            fn_error err = {0};
            if (fn_encoder_encode(a->e, (const char *const *)&a->fx->texts[i], NULL, 1, v, &err) !=
                    FN_OK ||
                cosine(v, a->want + i * a->fx->dim, a->fx->dim) < 0.999999)
                a->mismatches++;
        }
    return NULL;
}

START_TEST(concurrent_callers)
{
    char *dir = model_dir();
    if (!dir) return;
    if (access(FUNNEL_SOURCE_DIR "/tests/fixtures/embedding_parity.fvecs", R_OK) != 0) {
        free(dir);
        return;
    }
    fixture fx;
    load_fixture(&fx);
    /* one workspace (calls take turns) on a 2-thread pool; three side by side, one thread
     * each (a server's setting); two side by side sharing a 2-thread pool */
    const fn_encoder_options opts[] = {
        {.threads = 2}, {.threads = 1, .workspaces = 3}, {.threads = 2, .workspaces = 2}};
    for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++) {
        fn_error err = {0};
        fn_encoder *e;
        ck_assert_msg(fn_encoder_load(dir, &opts[k], &e, &err) == FN_OK, "%s", err.msg);
        worker_arg args[4];
        pthread_t th[4];
        for (int i = 0; i < 4; i++) {
            args[i] = (worker_arg){e, &fx, (size_t)i, 29, fx.vecs, k == 0 ? 3 : 1, 0};
            pthread_create(&th[i], NULL, encode_worker, &args[i]);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            ck_assert_msg(args[i].mismatches == 0, "options %zu, caller %d: %d mismatches", k, i,
                          args[i].mismatches);
        }
        fn_encoder_free(e);
    }
    fn_error err = {0};
    fn_encoder *e = NULL;
    const fn_encoder_options too_many = {.workspaces = 65};
    ck_assert_int_eq(fn_encoder_load(dir, &too_many, &e, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "workspaces"), "%s", err.msg);
    fixture_free(&fx);
    free(dir);
}
END_TEST

/* A copy of the model folder with one file replaced, for the damage tests. */
static char *copy_model(const char *src, const char *replace, const void *data, size_t n)
{
    char *dir = fn_test_tmpdir();
    static const char *files[] = {"config.json", "model.safetensors", "vocab.txt",
                                  "sentence_bert_config.json", "modules.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *to = fn_test_path(dir, files[i]);
        if (replace && strcmp(files[i], replace) == 0) {
            if (data) fn_test_write_file(to, data, n);
        } else {
            char *from = fn_test_path(src, files[i]);
            fn_buf b = FN_BUF_INIT;
            fn_test_read_file(from, &b);
            fn_test_write_file(to, b.data, b.len);
            fn_buf_free(&b);
            free(from);
        }
        free(to);
    }
    return dir;
}

static void expect_load_error(const char *dir, fn_status want, const char *fragment)
{
    fn_error err = {0};
    fn_encoder *e = NULL;
    fn_status st = fn_encoder_load(dir, NULL, &e, &err);
    ck_assert_msg(st == want, "status %d, want %d: %s", st, want, err.msg);
    ck_assert_msg(strstr(err.msg, fragment), "message '%s' lacks '%s'", err.msg, fragment);
    ck_assert_ptr_null(e);
}

START_TEST(damaged_model_folders)
{
    char *dir = model_dir();
    if (!dir) return;
    expect_load_error("/nonexistent/model", FN_ERR_NOT_FOUND,
                      "/nonexistent/model/config.json is missing");
    /* Truncated weights. */
    fn_buf w = FN_BUF_INIT;
    char *st = fn_test_path(dir, "model.safetensors");
    fn_test_read_file(st, &w);
    char *bad = copy_model(dir, "model.safetensors", w.data, w.len / 2);
    expect_load_error(bad, FN_ERR_CORRUPT, "model.safetensors: tensor");
    fn_test_rmtree(bad);
    free(bad);
    /* Missing weights file. */
    bad = copy_model(dir, "model.safetensors", NULL, 0);
    expect_load_error(bad, FN_ERR_NOT_FOUND, "model.safetensors");
    fn_test_rmtree(bad);
    free(bad);
    /* A config that does not match the weights names the tensor. */
    fn_buf cfg = FN_BUF_INIT;
    char *cp = fn_test_path(dir, "config.json");
    fn_test_read_file(cp, &cfg);
    char *p = strstr(cfg.data, "\"intermediate_size\": 1536");
    ck_assert_ptr_nonnull(p);
    memcpy(p, "\"intermediate_size\": 1024", 25);
    bad = copy_model(dir, "config.json", cfg.data, cfg.len);
    expect_load_error(bad, FN_ERR_CORRUPT, "encoder.layer.0.intermediate.dense.weight");
    fn_test_rmtree(bad);
    free(bad);
    /* Broken JSON and an empty vocabulary. */
    bad = copy_model(dir, "config.json", "{\"hidden_size\": ", 16);
    expect_load_error(bad, FN_ERR_CORRUPT, "config.json: invalid JSON");
    fn_test_rmtree(bad);
    free(bad);
    bad = copy_model(dir, "vocab.txt", "", 0);
    expect_load_error(bad, FN_ERR_CORRUPT, "vocab.txt");
    fn_test_rmtree(bad);
    free(bad);
    fn_buf_free(&w), fn_buf_free(&cfg);
    free(st), free(cp), free(dir);
}
END_TEST

START_TEST(unknown_device_and_cuda_without_gpu)
{
    char *dir = model_dir();
    if (!dir) return;
    fn_encoder_options o = {.device = "tpu"};
    fn_error err = {0};
    fn_encoder *e = NULL;
    ck_assert_int_eq(fn_encoder_load(dir, &o, &e, &err), FN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "unknown device 'tpu'"));
    o.device = "cuda";
    fn_status st = fn_encoder_load(dir, &o, &e, &err);
    if (st == FN_OK) {
        fn_encoder_free(e); /* a GPU is present: the CUDA suite covers it */
    } else {
        ck_assert_int_eq(st, FN_ERR_UNSUPPORTED);
        ck_assert_uint_gt(strlen(err.msg), 10);
    }
    free(dir);
}
END_TEST

Suite *encoder_suite(void)
{
    Suite *s = suite_create("encoder");
    TCase *t = tcase_create("parity");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, parity_with_sentence_transformers_cpu);
    tcase_add_test(t, parity_with_sentence_transformers_cuda);
    tcase_add_test(t, concurrent_callers);
    suite_add_tcase(s, t);
    t = tcase_create("errors");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, damaged_model_folders);
    tcase_add_test(t, unknown_device_and_cuda_without_gpu);
    suite_add_tcase(s, t);
    return s;
}
