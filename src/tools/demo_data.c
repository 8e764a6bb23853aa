/*
 * demo_data.c - the in-memory demo data set: growing its tables, linking
 * ratings to users and items, and the per-user train/test split.
 */
#include "demo_data.h"

#include <stdlib.h>
#include <string.h>

fn_status fn_demo_data_init(fn_demo_data *d, fn_error *err)
{
    memset(d, 0, sizeof *d);
    d->strings = fn_arena_new(0);
    if (!d->strings) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    return FN_OK;
}

void fn_demo_data_free(fn_demo_data *d)
{
    if (!d) return;
    free(d->users);
    free(d->items);
    free(d->ratings);
    free(d->item_vecs);
    free(d->rating_cosine);
    free(d->has_cosine);
    fn_arena_free(d->strings);
    memset(d, 0, sizeof *d);
}

/* Grows *arr (of elements of size sz) to hold one more; returns the new slot or NULL. */
static void *grow_one(void **arr, size_t *n, size_t *cap, size_t sz)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 1024;
        void *p = realloc(*arr, nc * sz);
        if (!p) return NULL;
        *arr = p;
        *cap = nc;
    }
    char *slot = (char *)*arr + (*n)++ * sz;
    memset(slot, 0, sz);
    return slot;
}

fn_demo_user *fn_demo_add_user(fn_demo_data *d)
{
    return grow_one((void **)&d->users, &d->n_users, &d->cap_users, sizeof *d->users);
}

fn_demo_item *fn_demo_add_item(fn_demo_data *d)
{
    return grow_one((void **)&d->items, &d->n_items, &d->cap_items, sizeof *d->items);
}

fn_demo_rating *fn_demo_add_rating(fn_demo_data *d)
{
    return grow_one((void **)&d->ratings, &d->n_ratings, &d->cap_ratings, sizeof *d->ratings);
}

const char *fn_demo_strdup(fn_demo_data *d, const char *s, size_t n)
{
    return fn_arena_strndup(d->strings, s, n);
}

static int cmp_user(const void *a, const void *b)
{
    const fn_demo_user *x = a, *y = b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line;
}

static int cmp_item(const void *a, const void *b)
{
    const fn_demo_item *x = a, *y = b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line;
}

static long find_user(const fn_demo_data *d, int64_t id)
{
    size_t lo = 0, hi = d->n_users;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (d->users[mid].id < id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < d->n_users && d->users[lo].id == id ? (long)lo : -1;
}

static long find_item(const fn_demo_data *d, int64_t id)
{
    size_t lo = 0, hi = d->n_items;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (d->items[mid].id < id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < d->n_items && d->items[lo].id == id ? (long)lo : -1;
}

fn_status fn_demo_data_index(fn_demo_data *d, fn_error *err)
{
    if (d->n_users > UINT32_MAX || d->n_items > UINT32_MAX)
        return fn_error_set(err, FN_ERR_UNSUPPORTED, "more than 2^32 users or items");
    /* Stable by line, so a duplicate is reported at its second appearance. */
    qsort(d->users, d->n_users, sizeof *d->users, cmp_user);
    qsort(d->items, d->n_items, sizeof *d->items, cmp_item);
    for (size_t i = 1; i < d->n_users; i++)
        if (d->users[i].id == d->users[i - 1].id)
            return fn_error_set(err, FN_ERR_INVALID,
                                "%s: line %u: user %lld already appeared at line %u", d->users_file,
                                d->users[i].line, (long long)d->users[i].id, d->users[i - 1].line);
    for (size_t i = 1; i < d->n_items; i++)
        if (d->items[i].id == d->items[i - 1].id)
            return fn_error_set(err, FN_ERR_INVALID,
                                "%s: line %u: item %lld already appeared at line %u", d->items_file,
                                d->items[i].line, (long long)d->items[i].id, d->items[i - 1].line);
    for (size_t i = 0; i < d->n_ratings; i++) {
        fn_demo_rating *r = &d->ratings[i];
        long u = find_user(d, r->user_id), it = find_item(d, r->item_id);
        if (u < 0)
            return fn_error_set(err, FN_ERR_INVALID, "%s: line %u: user %lld is not in %s",
                                d->ratings_file, r->line, (long long)r->user_id, d->users_file);
        if (it < 0)
            return fn_error_set(err, FN_ERR_INVALID, "%s: line %u: item %lld is not in %s",
                                d->ratings_file, r->line, (long long)r->item_id, d->items_file);
        r->user = (uint32_t)u;
        r->item = (uint32_t)it;
    }
    return FN_OK;
}

/* One rating's sort key; the line makes the order total. */
typedef struct split_key {
    int64_t user_id, timestamp, item_id;
    uint32_t line, index;
} split_key;

static int cmp_split_key(const void *a, const void *b)
{
    const split_key *x = a, *y = b;
    if (x->user_id != y->user_id) return x->user_id < y->user_id ? -1 : 1;
    if (x->timestamp != y->timestamp) return x->timestamp < y->timestamp ? -1 : 1;
    if (x->item_id != y->item_id) return x->item_id < y->item_id ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line;
}

fn_status fn_demo_split(fn_demo_data *d, fn_error *err)
{
    if (d->n_ratings > UINT32_MAX)
        return fn_error_set(err, FN_ERR_UNSUPPORTED, "more than 2^32 ratings");
    split_key *keys = malloc((d->n_ratings ? d->n_ratings : 1) * sizeof *keys);
    if (!keys)
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory sorting %zu ratings", d->n_ratings);
    for (size_t i = 0; i < d->n_ratings; i++) {
        const fn_demo_rating *r = &d->ratings[i];
        keys[i] = (split_key){r->user_id, r->timestamp, r->item_id, r->line, (uint32_t)i};
        d->ratings[i].test = d->ratings[i].valid = 0;
    }
    qsort(keys, d->n_ratings, sizeof *keys, cmp_split_key);
    for (size_t start = 0; start < d->n_ratings;) {
        size_t end = start + 1;
        while (end < d->n_ratings && keys[end].user_id == keys[start].user_id) end++;
        /* n / 5 rounded to the nearest integer; n / 5 never ends in .5, so no tie rule. */
        size_t n = end - start, n_test = (n + 2) / 5;
        for (size_t k = end - n_test; k < end; k++) d->ratings[keys[k].index].test = 1;
        /* The last tenth (rounded) of what remains validates, in time order as the test. */
        size_t m = n - n_test, n_valid = (m + 5) / 10;
        for (size_t k = end - n_test - n_valid; k < end - n_test; k++)
            d->ratings[keys[k].index].valid = 1;
        start = end;
    }
    free(keys);
    return FN_OK;
}
