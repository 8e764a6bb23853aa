/*
 * demo_write.c - writes the demo data set: TFRecord files of tf.Example for
 * users, items, interactions and the joined train/test examples, the
 * feature-column spec for them (features.json), and SOURCE.txt saying what
 * the data is. Keys and types are listed in docs/demo-data.md:
 *
 *   users         user_id (bytes), age (int64), gender, occupation, zip_code (bytes)
 *   items         item_id (bytes), title (bytes, UTF-8), year (int64), genres (bytes, one
 *                 value per genre)
 *   interactions  user_id, item_id (bytes), rating (float), timestamp (int64),
 *                 label (int64: 1 when rating >= 4, else 0)
 *   train, test   one per rating: the user's and the item's features, rating, timestamp,
 *                 label
 *
 * A feature with no value (an unknown year, the placeholder movie's title) is
 * left out rather than written empty. Interactions, train and test keep the
 * order of the ratings file. Every file goes through a temporary name.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/file.h"
#include "common/progress.h"
#include "demo_data.h"
#include "features/example.h"
#include "features/tfrecord.h"

/* Hash buckets for ids: about ten times the ids of MovieLens-100k, so few collide. */
/* Ten times the ids there are: 1682 items in 10000 buckets collide often enough to cost
   FFM about 0.002 AUC on MovieLens. */
#define ID_HASH_BUCKETS    100000
#define ZIP_HASH_BUCKETS   10000
#define CROSS_HASH_BUCKETS 10000

static fn_status oom(fn_error *err)
{
    return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
}

static fn_status put_id(Tensorflow__Features *f, const char *key, int64_t id, fn_error *err)
{
    char s[24];
    snprintf(s, sizeof s, "%lld", (long long)id);
    return fn_features_set_string(f, key, s, err);
}

static fn_status put_int(Tensorflow__Features *f, const char *key, int64_t v, fn_error *err)
{
    return fn_features_set_int64s(f, key, &v, 1, err);
}

static fn_status add_user(Tensorflow__Features *f, const fn_demo_user *u, fn_error *err)
{
    fn_status st = put_id(f, "user_id", u->id, err);
    if (st == FN_OK) st = put_int(f, "age", u->age, err);
    if (st == FN_OK) st = fn_features_set_string(f, "gender", u->gender, err);
    if (st == FN_OK) st = fn_features_set_string(f, "occupation", u->occupation, err);
    if (st == FN_OK && u->zip_code) st = fn_features_set_string(f, "zip_code", u->zip_code, err);
    return st;
}

static fn_status add_item(Tensorflow__Features *f, const fn_demo_item *it, fn_error *err)
{
    fn_status st = put_id(f, "item_id", it->id, err);
    if (st == FN_OK && it->title) st = fn_features_set_string(f, "title", it->title, err);
    if (st == FN_OK && it->year) st = put_int(f, "year", it->year, err);
    if (st != FN_OK || it->n_genres == 0) return st;
    Tensorflow__Feature *g;
    if ((st = fn_features_put(f, "genres", FN_FEATURE_BYTES, &g, err)) != FN_OK) return st;
    for (size_t k = 0; k < it->n_genres; k++)
        if (fn_feature_add_bytes(g, it->genres[k], strlen(it->genres[k])) != FN_OK) return oom(err);
    return FN_OK;
}

static fn_status add_rating(Tensorflow__Features *f, const fn_demo_rating *r, fn_error *err)
{
    fn_status st = fn_features_set_floats(f, "rating", &r->rating, 1, err);
    if (st == FN_OK) st = put_int(f, "timestamp", r->timestamp, err);
    if (st == FN_OK) st = put_int(f, "label", r->rating >= 4.0f, err);
    return st;
}

/* One output TFRecord file. */
typedef struct out_file {
    const char *name;
    char path[4096];
    fn_tfrecord_writer *w;
    size_t records;
} out_file;

static fn_status out_open(out_file *o, const char *dir, const char *name, fn_error *err)
{
    o->name = name;
    o->records = 0;
    o->w = NULL;
    if ((size_t)snprintf(o->path, sizeof o->path, "%s/%s", dir, name) >= sizeof o->path)
        return fn_error_set(err, FN_ERR_INVALID, "output path too long: %s/%s", dir, name);
    return fn_tfrecord_writer_open(o->path, FN_TFRECORD_PLAIN, &o->w, err);
}

/* Packs and writes an Example built by the caller, then frees it. */
static fn_status out_write(out_file *o, Tensorflow__Example *ex, fn_status built, fn_buf *packed,
                           fn_error *err)
{
    fn_status st = built;
    if (st == FN_OK) {
        fn_buf_reset(packed);
        st = fn_proto_pack(&ex->base, packed, err);
    }
    fn_example_free(ex);
    if (st == FN_OK) st = fn_tfrecord_write(o->w, packed->data, packed->len, err);
    if (st == FN_OK) o->records++;
    return st;
}

static fn_status out_close(out_file *o, fn_error *err)
{
    fn_tfrecord_writer *w = o->w;
    o->w = NULL;
    return w ? fn_tfrecord_writer_close(w, err) : FN_OK;
}

static void out_abort(out_file *o)
{
    fn_tfrecord_writer_abort(o->w);
    o->w = NULL;
}

/* A new Example and its Features, or NULL (out of memory). */
static Tensorflow__Example *new_example(Tensorflow__Features **f)
{
    Tensorflow__Example *ex = fn_example_new();
    if (ex && !(*f = fn_example_mutable_features(ex))) {
        fn_example_free(ex);
        return NULL;
    }
    return ex;
}

static fn_status write_users(const fn_demo_data *d, const char *dir, fn_buf *packed, size_t *count,
                             fn_error *err)
{
    out_file o;
    fn_status st = out_open(&o, dir, "users.tfrecord", err);
    for (size_t i = 0; st == FN_OK && i < d->n_users; i++) {
        Tensorflow__Features *f;
        Tensorflow__Example *ex = new_example(&f);
        st = ex ? out_write(&o, ex, add_user(f, &d->users[i], err), packed, err) : oom(err);
    }
    if (st != FN_OK) {
        out_abort(&o);
        return st;
    }
    *count = o.records;
    return out_close(&o, err);
}

static fn_status write_items(const fn_demo_data *d, const char *dir, fn_buf *packed, size_t *count,
                             fn_error *err)
{
    out_file o;
    fn_status st = out_open(&o, dir, "items.tfrecord", err);
    for (size_t i = 0; st == FN_OK && i < d->n_items; i++) {
        Tensorflow__Features *f;
        Tensorflow__Example *ex = new_example(&f);
        fn_status built = ex ? add_item(f, &d->items[i], err) : FN_OK;
        /* The text embedding goes with the item record only, not into every joined row. */
        if (ex && built == FN_OK && d->item_vecs)
            built = fn_features_set_floats(f, "embedding", d->item_vecs + i * d->vec_dim,
                                           d->vec_dim, err);
        st = ex ? out_write(&o, ex, built, packed, err) : oom(err);
    }
    if (st != FN_OK) {
        out_abort(&o);
        return st;
    }
    *count = o.records;
    return out_close(&o, err);
}

static fn_status interaction(Tensorflow__Features *f, const fn_demo_rating *r, fn_error *err)
{
    fn_status st = put_id(f, "user_id", r->user_id, err);
    if (st == FN_OK) st = put_id(f, "item_id", r->item_id, err);
    if (st == FN_OK) st = add_rating(f, r, err);
    return st;
}

static fn_status joined(Tensorflow__Features *f, const fn_demo_data *d, const fn_demo_rating *r,
                        fn_error *err)
{
    fn_status st = add_user(f, &d->users[r->user], err);
    if (st == FN_OK) st = add_item(f, &d->items[r->item], err);
    if (st == FN_OK) st = add_rating(f, r, err);
    const size_t i = (size_t)(r - d->ratings) * FN_DEMO_PROFILES;
    for (int p = 0; st == FN_OK && d->has_cosine && p < FN_DEMO_PROFILES; p++)
        if (d->has_cosine[i + p])
            st = fn_features_set_floats(f, fn_demo_profile_features[p], &d->rating_cosine[i + p], 1,
                                        err);
    return st;
}

/* interactions, train and test (and train again as fit + valid) in one pass over the ratings. */
static fn_status write_ratings(const fn_demo_data *d, const char *dir, fn_buf *packed,
                               fn_demo_summary *sum, fn_error *err)
{
    out_file inter = {0}, train = {0}, test = {0}, fit = {0}, valid = {0};
    fn_status st = out_open(&inter, dir, "interactions.tfrecord", err);
    if (st == FN_OK) st = out_open(&train, dir, "train.tfrecord", err);
    if (st == FN_OK) st = out_open(&test, dir, "test.tfrecord", err);
    if (st == FN_OK) st = out_open(&fit, dir, "fit.tfrecord", err);
    if (st == FN_OK) st = out_open(&valid, dir, "valid.tfrecord", err);
    fn_progress *bar = st == FN_OK ? fn_progress_new("ratings", d->n_ratings) : NULL;
    for (size_t i = 0; st == FN_OK && i < d->n_ratings; i++) {
        const fn_demo_rating *r = &d->ratings[i];
        Tensorflow__Features *f;
        Tensorflow__Example *ex = new_example(&f);
        st = ex ? out_write(&inter, ex, interaction(f, r, err), packed, err) : oom(err);
        if (st != FN_OK) break;
        ex = new_example(&f);
        st = ex ? out_write(r->test ? &test : &train, ex, joined(f, d, r, err), packed, err)
                : oom(err);
        if (st == FN_OK && !r->test) { /* the same bytes again, into fit or valid */
            ex = new_example(&f);
            st = ex ? out_write(r->valid ? &valid : &fit, ex, joined(f, d, r, err), packed, err)
                    : oom(err);
        }
        if ((i & 4095) == 0) fn_progress_update(bar, i, NULL);
    }
    if (st == FN_OK) fn_progress_update(bar, d->n_ratings, NULL);
    fn_progress_finish(bar);
    if (st == FN_OK) st = out_close(&inter, err);
    if (st == FN_OK) st = out_close(&train, err);
    if (st == FN_OK) st = out_close(&test, err);
    if (st == FN_OK) st = out_close(&fit, err);
    if (st == FN_OK) st = out_close(&valid, err);
    out_abort(&inter);
    out_abort(&train);
    out_abort(&test);
    out_abort(&fit);
    out_abort(&valid);
    if (st != FN_OK) return st;
    sum->interactions = inter.records;
    sum->train = train.records;
    sum->test = test.records;
    sum->fit = fit.records;
    sum->valid = valid.records;
    return FN_OK;
}

/* ---- the feature-column spec ---- */

typedef struct vocab {
    const char **v;
    size_t n, cap;
} vocab;

static int vocab_add(vocab *vc, const char *s)
{
    for (size_t i = 0; i < vc->n; i++)
        if (strcmp(vc->v[i], s) == 0) return 1;
    if (vc->n == vc->cap) {
        size_t nc = vc->cap ? vc->cap * 2 : 32;
        const char **p = realloc(vc->v, nc * sizeof *p);
        if (!p) return 0;
        vc->v = p;
        vc->cap = nc;
    }
    vc->v[vc->n++] = s;
    return 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void json_vocab(fn_buf *b, vocab *vc)
{
    qsort(vc->v, vc->n, sizeof *vc->v, cmp_str);
    fn_buf_putc(b, '[');
    for (size_t i = 0; i < vc->n; i++) {
        if (i) fn_buf_puts(b, ", ");
        fn_buf_json_string(b, vc->v[i], strlen(vc->v[i]));
    }
    fn_buf_putc(b, ']');
}

/* Opens a column's line: {"name": ..., "type": ..., "source": ..., "key": ... */
static void column(fn_buf *b, int *first, const char *name, const char *type, const char *source,
                   const char *key)
{
    fn_buf_puts(b, *first ? "\n    " : ",\n    ");
    *first = 0;
    fn_buf_printf(b, "{\"name\": \"%s\", \"type\": \"%s\"", name, type);
    if (source) fn_buf_printf(b, ", \"source\": \"%s\", \"key\": \"%s\"", source, key);
}

static fn_status spec_json(const fn_demo_data *d, int semantic, fn_buf *b, size_t *n_columns,
                           fn_error *err)
{
    vocab genders = {0}, occs = {0}, genres = {0};
    int ok = 1;
    double age_sum = 0, age_sq = 0;
    for (size_t i = 0; i < d->n_users; i++) {
        ok &= vocab_add(&genders, d->users[i].gender);
        ok &= vocab_add(&occs, d->users[i].occupation);
        age_sum += (double)d->users[i].age;
    }
    double mean = d->n_users ? age_sum / (double)d->n_users : 0;
    for (size_t i = 0; i < d->n_users; i++)
        age_sq += ((double)d->users[i].age - mean) * ((double)d->users[i].age - mean);
    double std = d->n_users ? sqrt(age_sq / (double)d->n_users) : 0;
    for (size_t i = 0; i < d->n_items; i++)
        for (size_t k = 0; k < d->items[i].n_genres; k++)
            ok &= vocab_add(&genres, d->items[i].genres[k]);
    if (!ok) {
        free(genders.v), free(occs.v), free(genres.v);
        return oom(err);
    }

    int first = 1;
    fn_buf_printf(b, "{\n  \"name\": \"%s\",\n",
                  d->synthetic ? "synthetic-movielens" : "movielens-100k");
    fn_buf_puts(b, "  \"description\": \"Feature columns for the joined examples of funnel demo "
                   "(train.tfrecord, test.tfrecord); vocabularies and the age normalizer come "
                   "from the data. See docs/demo-data.md.\",\n");
    fn_buf_puts(b, "  \"columns\": [");
    column(b, &first, "user_id", "categorical_hash", "user", "user_id");
    fn_buf_printf(b, ", \"hash_bucket_size\": %d}", ID_HASH_BUCKETS);
    column(b, &first, "age", "numeric", "user", "age");
    /* Rounded so the spec reads well and its hash does not hang on the last bit of a double. */
    if (std > 0)
        fn_buf_printf(b, ", \"normalizer\": {\"mean\": %.2f, \"std\": %.2f}, \"default\": %.2f",
                      mean, std, mean);
    fn_buf_puts(b, "}");
    column(b, &first, "age_bucket", "bucketized", "user", "age");
    fn_buf_puts(b, ", \"boundaries\": [18, 25, 35, 45, 50, 56]}");
    column(b, &first, "gender", "categorical_vocabulary", "user", "gender");
    fn_buf_puts(b, ", \"vocabulary\": ");
    json_vocab(b, &genders);
    fn_buf_puts(b, ", \"num_oov_buckets\": 1}");
    column(b, &first, "occupation", "categorical_vocabulary", "user", "occupation");
    fn_buf_puts(b, ", \"vocabulary\": ");
    json_vocab(b, &occs);
    fn_buf_puts(b, ", \"num_oov_buckets\": 1}");
    column(b, &first, "zip_code", "categorical_hash", "user", "zip_code");
    fn_buf_printf(b, ", \"hash_bucket_size\": %d}", ZIP_HASH_BUCKETS);
    column(b, &first, "item_id", "categorical_hash", "item", "item_id");
    fn_buf_printf(b, ", \"hash_bucket_size\": %d}", ID_HASH_BUCKETS);
    column(b, &first, "genres", "categorical_vocabulary", "item", "genres");
    fn_buf_puts(b, ", \"vocabulary\": ");
    json_vocab(b, &genres);
    fn_buf_puts(b, ", \"num_oov_buckets\": 1}");
    /* Most MovieLens-100k movies are from 1990-1998: finer buckets there. */
    column(b, &first, "year", "bucketized", "item", "year");
    fn_buf_puts(b, ", \"boundaries\": [1950, 1970, 1980, 1990, 1994, 1995, 1996, 1997]}");
    column(b, &first, "occupation_x_genres", "crossed", NULL, NULL);
    fn_buf_printf(b, ", \"keys\": [\"occupation\", \"genres\"], \"hash_bucket_size\": %d}",
                  CROSS_HASH_BUCKETS);
    column(b, &first, "gender_x_genres", "crossed", NULL, NULL);
    fn_buf_puts(b, ", \"keys\": [\"gender\", \"genres\"], \"hash_bucket_size\": 1000}");
    *n_columns = 11;
    for (int p = 0; semantic && p < FN_DEMO_PROFILES; p++) {
        /* Derived: the cosine between the item's text embedding and one of the user's earlier
           profiles (0 when it is empty), and its buckets. */
        const char *key = fn_demo_profile_features[p];
        char bucket[64];
        snprintf(bucket, sizeof bucket, "%s_bucket", key);
        column(b, &first, key, "numeric", "derived", key);
        fn_buf_puts(b, "}");
        column(b, &first, bucket, "bucketized", "derived", key);
        fn_buf_puts(b, p == FN_DEMO_TASTE
                           ? ", \"boundaries\": [-0.3, -0.2, -0.1, -0.05, 0, 0.05, 0.1, 0.2, 0.3]}"
                           : ", \"boundaries\": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]}");
        *n_columns += 2;
    }
    fn_buf_puts(b, "\n  ]\n}\n");
    free(genders.v), free(occs.v), free(genres.v);
    return b->oom ? oom(err) : FN_OK;
}

static fn_status source_txt(const fn_demo_data *d, const fn_demo_summary *s, fn_buf *b)
{
    if (d->synthetic) {
        fn_buf_puts(b, "SYNTHETIC DATA - NOT MOVIELENS.\n\n");
        fn_buf_printf(
            b,
            "Generated by `funnel demo --synthetic --seed %llu` (funnel %s): made-up users,\n"
            "movies and ratings with MovieLens-100k's fields and value sets, so the demo\n"
            "runs without the real data. Nothing measured on it says anything about real\n"
            "users or real movies. Put MovieLens-100k in data/ml-100k (or point\n"
            "FUNNEL_DATA at it) and run `funnel demo --data DIR` for the real thing.\n\n",
            (unsigned long long)d->seed, FUNNEL_VERSION);
    } else {
        fn_buf_printf(b, "%s, converted by funnel demo (funnel %s)\nfrom %s\n\n", d->source,
                      FUNNEL_VERSION, d->data_dir);
        fn_buf_puts(b, "MovieLens 100K is GroupLens's data set "
                       "(https://grouplens.org/datasets/movielens/100k/);\n"
                       "its usage terms apply to these files.\n\n");
    }
    fn_buf_printf(b,
                  "users.tfrecord         %zu\nitems.tfrecord         %zu\n"
                  "interactions.tfrecord  %zu\ntrain.tfrecord         %zu\n"
                  "test.tfrecord          %zu\nfit.tfrecord           %zu\n"
                  "valid.tfrecord         %zu\nfeatures.json          %zu columns\n\n",
                  s->users, s->items, s->interactions, s->train, s->test, s->fit, s->valid,
                  s->columns);
    fn_buf_puts(b, "Split: each user's ratings ordered by timestamp, then item id; the last\n"
                   "round(n/5) of a user's n ratings are in test.tfrecord, the rest in train.\n"
                   "Train again, split the same way for early stopping: the last round(m/10) of\n"
                   "the user's m training ratings in valid.tfrecord, the rest in fit.tfrecord.\n"
                   "label = 1 when rating >= 4, else 0. Keys: docs/demo-data.md.\n");
    return b->oom ? FN_ERR_NOMEM : FN_OK;
}

static fn_status write_text(const char *dir, const char *name, const fn_buf *b, fn_error *err)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
        return fn_error_set(err, FN_ERR_INVALID, "output path too long: %s/%s", dir, name);
    return fn_file_write_atomic(path, b->data, b->len, err);
}

fn_status fn_demo_write(const fn_demo_data *d, const char *out_dir, fn_demo_summary *sum,
                        fn_error *err)
{
    memset(sum, 0, sizeof *sum);
    fn_status st = fn_mkdir_p(out_dir, err);
    if (st != FN_OK) return st;
    char path[4096];
    snprintf(path, sizeof path, "%s/SOURCE.txt", out_dir);
    if (unlink(path) != 0 && errno != ENOENT)
        return fn_error_set(err, FN_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    fn_buf b = FN_BUF_INIT;
    st = write_users(d, out_dir, &b, &sum->users, err);
    if (st == FN_OK) st = write_items(d, out_dir, &b, &sum->items, err);
    if (st == FN_OK) st = write_ratings(d, out_dir, &b, sum, err);
    if (st == FN_OK) {
        fn_buf_reset(&b);
        st = spec_json(d, 0, &b, &sum->columns, err);
    }
    if (st == FN_OK) st = write_text(out_dir, "features.json", &b, err);
    if (st == FN_OK && d->has_cosine) {
        size_t n;
        fn_buf_reset(&b);
        st = spec_json(d, 1, &b, &n, err);
        if (st == FN_OK) st = write_text(out_dir, "features-semantic.json", &b, err);
    }
    if (st == FN_OK) {
        fn_buf_reset(&b);
        if (source_txt(d, sum, &b) != FN_OK) st = oom(err);
    }
    if (st == FN_OK) st = write_text(out_dir, "SOURCE.txt", &b, err);
    fn_buf_free(&b);
    return st;
}
