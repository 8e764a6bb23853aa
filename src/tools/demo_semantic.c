/*
 * demo_semantic.c - semantic features for the demo data (`funnel demo
 * --semantic MODEL`): each item's text (title, year, genres) embedded with
 * the transformer encoder, and for each rating the cosine between the item
 * and the mean embedding of the items the user rated 4 or more before it.
 *
 * No leakage: a user's profile only ever holds training-set ratings strictly
 * earlier than the rating it describes (a test rating sees every training
 * positive of its user, all of which are earlier or tied; ties are left out).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo_data.h"
#include "llm/encoder.h"

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
    d->rating_cosine = calloc(d->n_ratings ? d->n_ratings : 1, sizeof *d->rating_cosine);
    d->has_cosine = calloc(d->n_ratings ? d->n_ratings : 1, 1);
    size_t *order = malloc((d->n_ratings ? d->n_ratings : 1) * sizeof *order);
    double *sum = calloc(dim, sizeof *sum);
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
       its own positives join the profile. */
    size_t count = 0;
    for (size_t i = 0; i < d->n_ratings;) {
        const fn_demo_rating *first = &d->ratings[order[i]];
        size_t j = i;
        while (j < d->n_ratings && d->ratings[order[j]].user == first->user &&
               d->ratings[order[j]].timestamp == first->timestamp)
            j++;
        for (size_t t = i; t < j && count; t++) {
            const fn_demo_rating *r = &d->ratings[order[t]];
            const float *v = d->item_vecs + (size_t)r->item * dim;
            double dot = 0, nn = 0;
            for (size_t k = 0; k < dim; k++) {
                dot += sum[k] * v[k];
                nn += sum[k] * sum[k];
            }
            if (nn > 0) {
                d->rating_cosine[order[t]] = (float)(dot / sqrt(nn)); /* item vectors are unit */
                d->has_cosine[order[t]] = 1;
            }
        }
        for (size_t t = i; t < j; t++) {
            const fn_demo_rating *r = &d->ratings[order[t]];
            if (r->test || r->rating < 4) continue;
            const float *v = d->item_vecs + (size_t)r->item * dim;
            for (size_t k = 0; k < dim; k++) sum[k] += v[k];
            count++;
        }
        i = j;
        if (i == d->n_ratings || d->ratings[order[i]].user != first->user) {
            memset(sum, 0, dim * sizeof *sum); /* next user */
            count = 0;
        }
    }
done:
    for (size_t i = 0; texts && i < d->n_items; i++) free(texts[i]);
    free(texts), free(order), free(sum);
    fn_encoder_free(e);
    return st;
}
