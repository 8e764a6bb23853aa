/* rerank_page.c - categories from text and the pages of `funnel rerank eval --page`. */
#include "rerank_page.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Category names to ids: open addressing over FNV-1a hashes. */
typedef struct names {
    char **name;
    uint32_t *id;
    size_t cap, n;
} names;

static uint64_t fnv1a(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

static int names_grow(names *t)
{
    size_t cap = t->cap ? 2 * t->cap : 64;
    char **name = calloc(cap, sizeof *name);
    uint32_t *id = calloc(cap, sizeof *id);
    if (!name || !id) {
        free(name);
        free(id);
        return 0;
    }
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->name[i]) continue;
        size_t j = fnv1a(t->name[i], strlen(t->name[i])) & (cap - 1);
        while (name[j]) j = (j + 1) & (cap - 1);
        name[j] = t->name[i];
        id[j] = t->id[i];
    }
    free(t->name);
    free(t->id);
    t->name = name, t->id = id, t->cap = cap;
    return 1;
}

/* The id of name[0..len), added when new; -1 when out of memory. */
static int64_t names_id(names *t, const char *s, size_t len)
{
    if (2 * (t->n + 1) > t->cap && !names_grow(t)) return -1;
    size_t j = fnv1a(s, len) & (t->cap - 1);
    for (; t->name[j]; j = (j + 1) & (t->cap - 1))
        if (strlen(t->name[j]) == len && !memcmp(t->name[j], s, len)) return t->id[j];
    if (!(t->name[j] = malloc(len + 1))) return -1;
    memcpy(t->name[j], s, len);
    t->name[j][len] = 0;
    t->id[j] = (uint32_t)t->n;
    return (int64_t)t->n++;
}

static void names_free(names *t)
{
    for (size_t i = 0; i < t->cap; i++) free(t->name[i]);
    free(t->name);
    free(t->id);
}

fn_status fn_item_cats_read(const char *path, size_t n, fn_item_cats *out, fn_error *err)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) return fn_error_set(err, FN_ERR_IO, "%s: cannot open", path);
    names t = {0};
    size_t cap = 1024, used = 0, line_no = 0, lcap = 0;
    char *line = NULL;
    ssize_t len;
    fn_status st = FN_OK;
    out->offsets = malloc((n + 1) * sizeof *out->offsets);
    out->cats = malloc(cap * sizeof *out->cats);
    if (!out->offsets || !out->cats) st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    while (st == FN_OK && (len = getline(&line, &lcap, f)) >= 0) {
        if (line_no == n) {
            st = fn_error_set(err, FN_ERR_INVALID, "%s: more lines than the %zu items of the data",
                              path, n);
            break;
        }
        out->offsets[line_no++] = (uint32_t)used;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        for (char *p = line; *p && st == FN_OK;) {
            size_t k = strcspn(p, "|,");
            if (k > 0) {
                int64_t id = names_id(&t, p, k);
                if (id >= 0 && used == cap) {
                    uint32_t *c = realloc(out->cats, 2 * cap * sizeof *c);
                    if (c)
                        out->cats = c, cap *= 2;
                    else
                        id = -1;
                }
                if (id < 0)
                    st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
                else
                    out->cats[used++] = (uint32_t)id;
            }
            p += k;
            if (*p) p++;
        }
    }
    if (st == FN_OK && ferror(f)) st = fn_error_set(err, FN_ERR_IO, "%s: read error", path);
    if (st == FN_OK && line_no != n)
        st = fn_error_set(err, FN_ERR_INVALID, "%s: %zu lines for the %zu items of the data", path,
                          line_no, n);
    if (st == FN_OK) out->offsets[n] = (uint32_t)used;
    free(line);
    fclose(f);
    out->n = n;
    out->n_names = t.n;
    names_free(&t);
    if (st != FN_OK) fn_item_cats_free(out);
    return st;
}

void fn_item_cats_free(fn_item_cats *c)
{
    free(c->offsets);
    free(c->cats);
    memset(c, 0, sizeof *c);
}

fn_status fn_pages_apply(const fn_listset *d, const fn_item_cats *cats, const float *emb, int dim,
                         const fn_page_options *opts, float *scores, double *diversity,
                         fn_error *err)
{
    size_t longest = 0;
    for (size_t l = 0; l < d->n_lists; l++)
        if (d->offsets[l + 1] - d->offsets[l] > longest)
            longest = d->offsets[l + 1] - d->offsets[l];
    float *rel = malloc((longest + 1) * sizeof *rel);
    size_t *page = malloc((opts->page_size + 1) * sizeof *page);
    if (!rel || !page) {
        free(rel);
        free(page);
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    double div_sum = 0;
    size_t div_n = 0;
    fn_status st = FN_OK;
    for (size_t l = 0; l < d->n_lists && st == FN_OK; l++) {
        const uint64_t lo = d->offsets[l], n = d->offsets[l + 1] - lo;
        if (!n) continue;
        float *s = scores + lo, smin = INFINITY, smax = -INFINITY;
        for (uint64_t i = 0; i < n; i++) smin = fminf(smin, s[i]), smax = fmaxf(smax, s[i]);
        /* relevance in [0, 1] so that MMR's lambda means the same for any score scale */
        for (uint64_t i = 0; i < n; i++) rel[i] = smax > smin ? (s[i] - smin) / (smax - smin) : 1;
        const fn_page_items items = {.n = n,
                                     .scores = rel,
                                     .embeddings = emb ? emb + lo * (uint64_t)dim : NULL,
                                     .dim = dim,
                                     .cat_offsets = cats ? cats->offsets + lo : NULL,
                                     .cats = cats ? cats->cats : NULL};
        size_t n_page = 0;
        if ((st = fn_rerank_page(&items, opts, page, &n_page, err)) != FN_OK) {
            fn_error_set(err, st, "list %zu: %s", l + 1, err ? err->msg : "page failed");
            break;
        }
        if (n_page >= 2 && (cats || emb)) {
            div_sum += fn_page_diversity(&items, page, n_page);
            div_n++;
        }
        /* the page first, in its order (above every relevance), the rest as they were */
        for (uint64_t i = 0; i < n; i++) s[i] = rel[i];
        for (size_t p = 0; p < n_page; p++) s[page[p]] = 2.0f + (float)(n_page - p);
    }
    *diversity = div_n ? div_sum / (double)div_n : NAN;
    free(rel);
    free(page);
    return st;
}
