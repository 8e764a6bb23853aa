/*
 * rerank_page.h - `funnel rerank eval --page`: items' categories from a text
 * file, and each list's page made by fn_rerank_page and measured.
 */
#ifndef FN_TOOLS_RERANK_PAGE_H
#define FN_TOOLS_RERANK_PAGE_H

#include <stdint.h>

#include "rerank/rerank.h"

/* Items' category sets: item i's are cats[offsets[i] .. offsets[i + 1]). */
typedef struct fn_item_cats {
    uint32_t *offsets; /* n + 1 */
    uint32_t *cats;
    size_t n, n_names;
} fn_item_cats;

/*
 * Reads one line per item (exactly n lines): category names separated by '|' or ',', an
 * empty line for none. Names become small integers in order of first appearance.
 */
fn_status fn_item_cats_read(const char *path, size_t n, fn_item_cats *out, fn_error *err);
void fn_item_cats_free(fn_item_cats *c);

/*
 * Makes every list's page from scores (scaled to [0, 1] within the list as the relevance)
 * with opts (page_size set), the similarity from emb (unit rows of dim floats, one per
 * item; NULL for none) else from cats (NULL for none), and rewrites scores so that the
 * page comes first in its order and the rest follow in their old order. *diversity: the
 * mean intra-list diversity of the pages of two or more items (NaN when there are none).
 */
fn_status fn_pages_apply(const fn_listset *d, const fn_item_cats *cats, const float *emb, int dim,
                         const fn_page_options *opts, float *scores, double *diversity,
                         fn_error *err);

#endif
