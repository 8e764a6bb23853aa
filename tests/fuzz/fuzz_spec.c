/*
 * fuzz_spec.c - the feature-column spec parser, and the transform of a fixed
 * Example through whatever spec parses.
 */
#include <stddef.h>
#include <stdint.h>

#include "features/columns.h"
#include "features/example.h"

static Tensorflow__Features *fixed_features(void)
{
    Tensorflow__Features *f = fn_features_new();
    fn_error err;
    float age = 31, vec[4] = {0.5f, -1, 0, 2};
    int64_t ids[] = {3, 1, 0};
    fn_features_set_floats(f, "age", &age, 1, &err);
    fn_features_set_floats(f, "embedding", vec, 4, &err);
    fn_features_set_int64s(f, "gender_id", ids, 3, &err);
    fn_features_set_string(f, "occupation", "artist", &err);
    fn_features_set_string(f, "genres", "Comedy", &err);
    fn_features_set_string(f, "genres", "Drama", &err);
    fn_features_set_string(f, "item_id", "242", &err);
    return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static Tensorflow__Features *f;
    if (!f) f = fixed_features();
    fn_columns *c;
    fn_error err;
    /* No base folder: vocabulary files resolve against a path that does not exist. */
    if (fn_columns_parse((const char *)data, size, "/nonexistent", &c, &err) != FN_OK) return 0;
    fn_column_sources src = {{f, f, f, f}};
    fn_column_output out = {0};
    fn_columns_transform(c, &src, FN_SOURCES_ALL, &out, &err);
    fn_column_output_free(&out);
    fn_columns_free(c);
    return 0;
}
