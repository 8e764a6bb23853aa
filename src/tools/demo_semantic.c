/*
 * demo_semantic.c - semantic features for the demo data (`funnel demo
 * --semantic MODEL`): each item's text (title, year, genres) embedded with
 * the transformer encoder, and for each rating the cosines between the item
 * and three profiles of the user (demo_data.h): the items they liked, the
 * items they did not, and their taste (embeddings weighted by rating minus
 * their mean rating). Liked items alone say what a user watches; the other
 * two say what they rate low, which is what the label asks.
 *
 * No leakage: a user's profiles only ever hold training-set ratings strictly
 * earlier than the rating they describe (a test rating sees every training
 * rating of its user, all of which are earlier or tied; ties are left out).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo_data.h"
#include "llm/encoder.h"

const char *const fn_demo_profile_features[FN_DEMO_PROFILES] = {
    "user_item_cosine", "user_item_disliked_cosine", "user_item_taste_cosine"};

/* "Toy Story (1995) Animation Children's Comedy" */
static char *item_text(const fn_demo_item *it)
{
    char buf[1024];
    size_t o = (size_t)snprintf(buf, sizeof buf, "%s", it->title ? it->title : "");
    if (it->year && o < sizeof buf)
        o += (size_t)snprintf(buf + o, sizeof buf - o, " (%lld)", (long long)it->year);
    for (size_t k = 0; k < it->n_genres && o < sizeof buf; k++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, " %s", it->genres[k]);
    return strdup(buf);
}

/* Ratings of one user in time order (then item id), as indices. */
typedef struct by_time_ctx {
    const fn_demo_rating *r;
} by_time_ctx;

static int by_user_time(const void *a, const void *b, void *ctx)
{
    const fn_demo_rating *r = ((const by_time_ctx *)ctx)->r;
    const fn_demo_rating *x = &r[*(const size_t *)a], *y = &r[*(const size_t *)b];
    if (x->user != y->user) return x->user < y->user ? -1 : 1;
    if (x->timestamp != y->timestamp) return x->timestamp < y->timestamp ? -1 : 1;
    return x->item_id < y->item_id ? -1 : x->item_id > y->item_id;
}

fn_status fn_demo_semantic(fn_demo_data *d, const char *model_dir, fn_error *err)
{
    fn_encoder *e;
    fn_status st = fn_encoder_load(model_dir, NULL, &e, err);
    if (st != FN_OK) return st;
    size_t dim = fn_encoder_dim(e);
    char **texts = calloc(d->n_items ? d->n_items : 1, sizeof *texts);
    d->item_vecs = malloc((d->n_items ? d->n_items : 1) * dim * sizeof *d->item_vecs);
    const size_t np = (d->n_ratings ? d->n_ratings : 1) * FN_DEMO_PROFILES;
    d->rating_cosine = calloc(np, sizeof *d->rating_cosine);
    d->has_cosine = calloc(np, 1);
    size_t *order = malloc((d->n_ratings ? d->n_ratings : 1) * sizeof *order);
    /* per user: sums of the liked, the disliked, and the rating-weighted embeddings */
    double *sum = calloc(3 * dim, sizeof *sum);
    if (!texts || !d->item_vecs || !d->rating_cosine || !d->has_cosine || !order || !sum) {
        st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        goto done;
    }
    d->vec_dim = dim;
    for (size_t i = 0; i < d->n_items; i++)
        if (!(texts[i] = item_text(&d->items[i]))) {
            st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
            goto done;
        }
    fprintf(stderr, "funnel demo: embedding %zu item texts with %s\n", d->n_items,
            fn_encoder_device_name(e));
    st = fn_encoder_encode(e, (const char *const *)texts, NULL, d->n_items, d->item_vecs, err);
    if (st != FN_OK) goto done;

    for (size_t i = 0; i < d->n_ratings; i++) order[i] = i;
    by_time_ctx ctx = {d->ratings};
    qsort_r(order, d->n_ratings, sizeof *order, by_user_time, &ctx);
    /* Walk each user's ratings in time order; a group of equal timestamps is scored before
       its own ratings join the profiles. */
    double *liked = sum, *disliked = sum + dim, *weighted = sum + 2 * dim;
    size_t n_liked = 0, n_disliked = 0;
    double rating_sum = 0, lowest = 0, highest = 0;
    double *taste = malloc(dim * sizeof *taste);
    if (!taste) {
        st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < d->n_ratings;) {
        const fn_demo_rating *first = &d->ratings[order[i]];
        size_t j = i;
        while (j < d->n_ratings && d->ratings[order[j]].user == first->user &&
               d->ratings[order[j]].timestamp == first->timestamp)
            j++;
        /* taste = sum (r_k - mean) e_k = weighted - mean * (liked + disliked) */
        const size_t n_rated = n_liked + n_disliked;
        const double mean = n_rated ? rating_sum / (double)n_rated : 0;
        for (size_t k = 0; k < dim; k++) taste[k] = weighted[k] - mean * (liked[k] + disliked[k]);
        /* all ratings alike: no taste (the sum is rounding noise, not a direction) */
        const double *profile[FN_DEMO_PROFILES] = {
            n_liked ? liked : NULL, n_disliked ? disliked : NULL, highest > lowest ? taste : NULL};
        for (size_t t = i; t < j; t++) {
            const fn_demo_rating *r = &d->ratings[order[t]];
            const float *v = d->item_vecs + (size_t)r->item * dim;
            for (int p = 0; p < FN_DEMO_PROFILES; p++) {
                if (!profile[p]) continue;
                double dot = 0, nn = 0;
                for (size_t k = 0; k < dim; k++) {
                    dot += profile[p][k] * v[k];
                    nn += profile[p][k] * profile[p][k];
                }
                if (nn > 0) { /* item vectors are unit */
                    d->rating_cosine[order[t] * FN_DEMO_PROFILES + p] = (float)(dot / sqrt(nn));
                    d->has_cosine[order[t] * FN_DEMO_PROFILES + p] = 1;
                }
            }
        }
        for (size_t t = i; t < j; t++) {
            const fn_demo_rating *r = &d->ratings[order[t]];
            if (r->test) continue;
            const float *v = d->item_vecs + (size_t)r->item * dim;
            double *to = r->rating >= 4 ? liked : disliked;
            for (size_t k = 0; k < dim; k++) {
                to[k] += v[k];
                weighted[k] += r->rating * v[k];
            }
            if (!n_liked && !n_disliked) lowest = highest = r->rating;
            *(r->rating >= 4 ? &n_liked : &n_disliked) += 1;
            rating_sum += r->rating;
            if (r->rating < lowest) lowest = r->rating;
            if (r->rating > highest) highest = r->rating;
        }
        i = j;
        if (i == d->n_ratings || d->ratings[order[i]].user != first->user) {
            memset(sum, 0, 3 * dim * sizeof *sum); /* next user */
            n_liked = n_disliked = 0;
            rating_sum = 0;
        }
    }
    free(taste);
done:
    for (size_t i = 0; texts && i < d->n_items; i++) free(texts[i]);
    free(texts), free(order), free(sum);
    fn_encoder_free(e);
    return st;
}
