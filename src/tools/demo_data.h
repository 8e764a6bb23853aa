/*
 * demo_data.h - the demo data set of `funnel demo` in memory: MovieLens-style
 * users, items and ratings, whether read from MovieLens-100k
 * (demo_movielens.c) or generated (demo_synthetic.c), and written out as
 * TFRecord files of tf.Example plus a feature-column spec (demo_write.c).
 *
 * Ids are positive integers in memory (MovieLens ids are) and written as
 * their decimal text in bytes_list features, as the RPC carries them
 * (RankRequest.user_id is a string). docs/demo-data.md lists every key.
 */
#ifndef FN_DEMO_DATA_H
#define FN_DEMO_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/status.h"

/* Item genre lists are short; MovieLens has at most 6 genres per movie. */
#define FN_DEMO_MAX_GENRES 32

typedef struct fn_demo_user {
    int64_t id;
    int64_t age;
    const char *gender;     /* "M" / "F" */
    const char *occupation; /* "student", ... */
    const char *zip_code;   /* may be NULL: no feature */
    uint32_t line;          /* source line, for messages */
} fn_demo_user;

typedef struct fn_demo_item {
    int64_t id;
    const char *title; /* UTF-8, year removed; NULL when unknown (no feature) */
    int64_t year;      /* 0 when unknown (no feature) */
    const char *genres[FN_DEMO_MAX_GENRES];
    size_t n_genres;
    uint32_t line;
} fn_demo_item;

typedef struct fn_demo_rating {
    int64_t user_id;
    int64_t item_id;
    int64_t timestamp; /* Unix seconds */
    float rating;      /* 1..5 */
    uint32_t user;     /* index into users, set by fn_demo_data_index */
    uint32_t item;     /* index into items */
    uint32_t line;
    uint8_t test;  /* set by fn_demo_split */
    uint8_t valid; /* a training rating in the validation split (fn_demo_split) */
} fn_demo_rating;

typedef struct fn_demo_data {
    fn_demo_user *users;
    size_t n_users, cap_users;
    fn_demo_item *items;
    size_t n_items, cap_items;
    fn_demo_rating *ratings;
    size_t n_ratings, cap_ratings;
    fn_arena *strings; /* every string above */
    /* What the data is, for SOURCE.txt and the summary ("MovieLens-100k (RecBole ...)"). */
    char source[256];
    int synthetic;
    uint64_t seed;
    char data_dir[512]; /* the folder real data came from */
    /* Files the ratings, users and items came from, for messages. */
    char ratings_file[512];
    char users_file[512];
    char items_file[512];
    /* Semantic features (fn_demo_semantic), NULL when not asked for: item text embeddings
       (n_items x vec_dim) and, per rating, FN_DEMO_PROFILES cosines between the item and
       the user's earlier profiles (rating_cosine[i * FN_DEMO_PROFILES + p]; has_cosine the
       same, 0 when the profile was empty). */
    float *item_vecs;
    size_t vec_dim;
    float *rating_cosine;
    uint8_t *has_cosine;
} fn_demo_data;

/* Counts of what fn_demo_write wrote. */
typedef struct fn_demo_summary {
    size_t users, items, interactions, train, test, columns;
    size_t fit, valid; /* train split again: fit + valid = train */
} fn_demo_summary;

fn_status fn_demo_data_init(fn_demo_data *d, fn_error *err);
void fn_demo_data_free(fn_demo_data *d);
/* Appends a zeroed record; NULL when out of memory. */
fn_demo_user *fn_demo_add_user(fn_demo_data *d);
fn_demo_item *fn_demo_add_item(fn_demo_data *d);
fn_demo_rating *fn_demo_add_rating(fn_demo_data *d);
/* Copies n bytes into the data's arena as a NUL-terminated string; NULL when out of memory. */
const char *fn_demo_strdup(fn_demo_data *d, const char *s, size_t n);

/*
 * Reads MovieLens-100k from dir, in either layout: RecBole atomic files
 * (ml-100k.inter / .item / .user) or GroupLens's (u.data / u.item / u.user,
 * u.item in Latin-1 or UTF-8). A missing file or a malformed line is an
 * error naming the file and the line.
 */
fn_status fn_demo_load_movielens(const char *dir, fn_demo_data *d, fn_error *err);

/* Fills d with a synthetic catalog shaped like MovieLens; the same seed gives the same data. */
fn_status fn_demo_synthetic(uint64_t seed, fn_demo_data *d, fn_error *err);

/*
 * Sorts users and items by id, checks that ids are unique and that every
 * rating names a known user and item (else an error naming the file and
 * line), and links ratings to them.
 */
fn_status fn_demo_data_index(fn_demo_data *d, fn_error *err);

/*
 * Marks each user's test ratings: order the user's ratings by timestamp, then
 * item id, then source line; the last round(n / 5) of them (n / 5 rounded to
 * the nearest integer; it is never halfway) are the test set. So a user with
 * 1 or 2 ratings has none in the test set, one with 3 to 7 has one, 20 has 4.
 */
fn_status fn_demo_split(fn_demo_data *d, fn_error *err);

/*
 * The user profiles a rating's item is compared with, all from the user's
 * training ratings strictly earlier: the mean embedding of the items rated 4
 * or more (liked), of those rated below 4 (disliked), and the embeddings
 * weighted by rating minus the user's mean rating so far (taste: towards
 * what the user rates above their average, away from the rest).
 */
enum { FN_DEMO_LIKED = 0, FN_DEMO_DISLIKED, FN_DEMO_TASTE, FN_DEMO_PROFILES };
extern const char *const fn_demo_profile_features[FN_DEMO_PROFILES];

/*
 * Embeds each item's text ("title (year) genres") with the encoder in
 * model_dir and computes, for each rating, the cosine between the item and
 * each profile above. Call after fn_demo_split.
 */
fn_status fn_demo_semantic(fn_demo_data *d, const char *model_dir, fn_error *err);

/*
 * Writes users, items, interactions, train and test TFRecord files,
 * features.json and SOURCE.txt into out_dir (created if needed). SOURCE.txt
 * is removed first and written last, so a folder without it is incomplete.
 */
fn_status fn_demo_write(const fn_demo_data *d, const char *out_dir, fn_demo_summary *summary,
                        fn_error *err);

#endif
