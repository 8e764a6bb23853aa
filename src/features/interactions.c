/* interactions.c - one reader of interaction logs for every module that needs one. */
#include "interactions.h"

#include <math.h>

#include "common/arena.h"
#include "example.h"
#include "tfrecord.h"

/* The number under key; a missing one is bad input unless optional (then dflt). */
static fn_status number(const Tensorflow__Features *f, const char *key, int optional, double dflt,
                        double *out, fn_error *err)
{
    fn_status st = fn_features_first_number(f, key, out, err);
    if (st != FN_ERR_NOT_FOUND) return st;
    if (optional) {
        *out = dflt;
        return FN_OK;
    }
    return fn_error_set(err, FN_ERR_INVALID, "feature '%s' is missing", key);
}

static fn_status one(const uint8_t *data, size_t len, const fn_interaction_keys *k, fn_arena *a,
                     fn_interaction_fn fn, void *ctx, fn_error *err)
{
    char user[FN_INTERACTION_ID_MAX + 1], item[FN_INTERACTION_ID_MAX + 1];
    double t = 0, label = 1;
    Tensorflow__Example *ex = NULL;
    fn_status st = fn_example_decode_arena(data, len, a, &ex, err);
    const Tensorflow__Features *f = st == FN_OK ? fn_example_features(ex) : NULL;
    if (st == FN_OK) st = fn_features_id(f, k->user, user, sizeof user, err);
    if (st == FN_OK) st = fn_features_id(f, k->item, item, sizeof item, err);
    if (st == FN_OK && k->time) st = number(f, k->time, 0, 0, &t, err);
    if (st == FN_OK && k->time && !(fabs(t) < 9.2e18))
        st = fn_error_set(err, FN_ERR_INVALID, "feature '%s': time %g out of range", k->time, t);
    if (st == FN_OK && k->label) st = number(f, k->label, k->label_optional, 1, &label, err);
    if (st != FN_OK) return st;
    const fn_interaction x = {user, item, (int64_t)t, label};
    return fn(ctx, &x, err);
}

fn_status fn_interactions_read(const char *path, const fn_interaction_keys *keys,
                               fn_interaction_fn fn, void *ctx, uint64_t *records, fn_error *err)
{
    if (records) *records = 0;
    fn_tfrecord_reader *r = NULL;
    fn_arena *a = fn_arena_new(1 << 16);
    fn_status st = a ? fn_tfrecord_reader_open(path, NULL, &r, err)
                     : fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    uint64_t n = 0;
    while (st == FN_OK) {
        const uint8_t *data;
        size_t len;
        if ((st = fn_tfrecord_read(r, &data, &len, err)) == FN_END) {
            st = FN_OK;
            break;
        }
        if (st != FN_OK) break; /* the reader's message names the file and the damage */
        n++;
        fn_arena_reset(a);
        if ((st = one(data, len, keys, a, fn, ctx, err)) != FN_OK)
            fn_error_prefix(err, "%s: record %llu at byte offset %llu", path, (unsigned long long)n,
                            (unsigned long long)fn_tfrecord_reader_record_offset(r));
    }
    fn_tfrecord_reader_close(r);
    fn_arena_free(a);
    if (records) *records = n;
    return st;
}
