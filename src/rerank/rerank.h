/*
 * rerank.h - the rerank stage: a list-aware model over the top of the ranked
 * list (PRM-style self-attention on the kernel layer), its training on lists,
 * the ranking metrics, and the diversity and rules that cut the final page.
 *
 * Lists come from svmrank/LETOR text ("label qid:Q idx:value ...", or groups
 * from a LightGBM-style FILE.query) or from TFRecord files of tf.Example (one
 * example per item, consecutive items of one qid form a list). The page is
 * made in a fixed order, documented at fn_rerank_page.
 */
#ifndef FN_RERANK_H
#define FN_RERANK_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* ---- lists ---- */

/*
 * The most columns a list's rows may have. The rows are dense, so an svmrank
 * index sets the width of every row: one line with a huge index would
 * otherwise ask for gigabytes (LETOR sets have 46 to 700 features).
 */
#define FN_LISTSET_MAX_FEATURES 65536u

/* Items in dense rows; list i owns rows [offsets[i], offsets[i + 1]). */
typedef struct fn_listset {
    size_t n_lists;
    size_t n_items;
    uint64_t *offsets;   /* n_lists + 1 */
    float *labels;       /* n_items: graded relevance, >= 0 */
    float *features;     /* n_items x n_features, row-major; absent features are 0 */
    uint32_t n_features; /* columns: the largest index seen (1-based in the text), or more */
} fn_listset;

/*
 * Reads svmrank/LETOR text: "label [qid:Q] idx:value ... [# comment]", idx
 * 1-based (column idx - 1). Groups: from query_path when given, else from
 * FILE.query when it exists (one count per line, LightGBM's group file; the
 * counts must add up to the rows), else from runs of equal qid. A file with
 * neither is FN_ERR_INVALID saying so; so is a malformed line (file, line,
 * token), a negative or non-finite label, an index of 0 or above
 * FN_LISTSET_MAX_FEATURES, or a qid that comes back after another one.
 * min_features widens the rows (a model's width) so files whose largest index
 * is smaller still line up; 0 for none.
 *
 * Details: Q is a decimal integer and, when present, comes right after the
 * label; with a group file qid tokens are checked but not used. Indexes
 * increase along a line (svmlight's rule) and values are finite. Blank and
 * comment-only lines hold no item. Group counts are positive integers. A
 * file with no items at all is FN_ERR_INVALID rather than an empty set: no
 * caller can train or evaluate on it, and it is most often a wrong path or a
 * failed export. A missing data file (or a given query_path) is
 * FN_ERR_NOT_FOUND.
 */
fn_status fn_listset_read_svmrank(const char *path, const char *query_path, uint32_t min_features,
                                  fn_listset **out, fn_error *err);
/*
 * Reads a TFRecord file of tf.Example, one per item: `qid` (int64 or bytes),
 * the label under label_key (float or int64, first value) and the dense
 * features under features_key (float list, the same length in every example,
 * or shorter and padded with 0 up to min_features). Consecutive examples with
 * one qid form a list; a qid that comes back after another is an error.
 *
 * Precisely: lists no longer than min_features (when > 0) are padded; every
 * longer list has one length L, and n_features = max(L, min_features). The
 * qid has one kind in the whole file. Errors name the file, the record and
 * its byte offset; a file with no examples is FN_ERR_INVALID, as above.
 */
fn_status fn_listset_read_tfrecord(const char *path, const char *label_key,
                                   const char *features_key, uint32_t min_features,
                                   fn_listset **out, fn_error *err);
void fn_listset_free(fn_listset *d);

/* ---- metrics ---- */

/*
 * Items are ordered by score, highest first; equal scores keep their input
 * order. Gains are 2^label - 1 with a log2(position + 1) discount; NDCG@k
 * divides by the ideal ordering's DCG@k, and a list with no relevant item
 * (every label 0) counts 1. Average precision counts label > 0 as relevant
 * (1 when none is).
 *
 * Positions are 1-based; k larger than the list (or k <= 0) means the whole
 * list. A NaN score ranks below every number. An empty list counts 1. The
 * result is NaN only when memory for ordering a long list runs out.
 */
double fn_metric_ndcg(const float *scores, const float *labels, size_t n, int k);
double fn_metric_average_precision(const float *scores, const float *labels, size_t n);

typedef struct fn_rank_metrics {
    double ndcg1, ndcg3, ndcg5, ndcg10; /* means over the lists */
    double map;
    size_t n_lists;
} fn_rank_metrics;

/* The means over d's lists of the metrics above for scores[d->n_items]; NaN for no lists. */
void fn_listset_metrics(const fn_listset *d, const float *scores, fn_rank_metrics *out);

/* ---- the list-aware model ---- */

typedef enum fn_rerank_loss {
    FN_RERANK_LISTNET = 0, /* softmax cross-entropy against softmax(labels) */
    FN_RERANK_LAMBDARANK,  /* pairwise logistic, each pair weighted by its |delta NDCG| */
} fn_rerank_loss;

typedef struct fn_rerank_options {
    int d_model;   /* width of the item vectors inside the model */
    int n_heads;   /* attention heads; d_model % n_heads == 0 */
    int n_layers;  /* self-attention encoder layers (0: a per-item MLP) */
    int d_ff;      /* the feed-forward layer's width */
    int positions; /* 1: add a learned embedding of each item's input position */
    int max_items; /* longest list scored (longer lists keep their first max_items) */
    fn_rerank_loss loss;
    int ndcg_k;   /* the validation metric: NDCG@ndcg_k */
    int lambda_k; /* LambdaRank's truncation: pairs matter by their NDCG@lambda_k (0: the list) */
    float lr, l2, dropout;
    int epochs, patience;
    int batch; /* lists per mini-batch */
    uint64_t seed;
    int threads;        /* 0: all online CPUs */
    const char *device; /* "cpu" or "cuda" */
    int progress;       /* draw a progress bar on a terminal */
    /* Called after every epoch (NULL: not at all) with its mean training loss and validation
       NDCG@ndcg_k (NaN without validation): the learning curve. */
    void (*on_epoch)(int epoch, double train_loss, double valid_ndcg, void *ctx);
    void *on_epoch_ctx;
} fn_rerank_options;

fn_rerank_options fn_rerank_options_default(void);
const char *fn_rerank_loss_name(fn_rerank_loss loss);
fn_status fn_rerank_loss_parse(const char *name, fn_rerank_loss *out, fn_error *err);

typedef struct fn_reranker fn_reranker;

typedef struct fn_rerank_report {
    int epochs_run;
    int best_epoch;         /* 1-based; the weights kept are this epoch's */
    double best_valid_ndcg; /* NDCG@ndcg_k on valid; NaN without it */
    double train_loss;      /* of the last epoch */
    double lists_per_s;
} fn_rerank_report;

/*
 * Trains on train's lists (each cut to max_items). With valid, every epoch
 * ends with its NDCG@ndcg_k; training stops after `patience` epochs without a
 * better one and keeps the best epoch's weights.
 */
fn_status fn_reranker_train(const fn_rerank_options *opts, const fn_listset *train,
                            const fn_listset *valid, fn_reranker **out, fn_rerank_report *report,
                            fn_error *err);
void fn_reranker_free(fn_reranker *r);
uint32_t fn_reranker_features(const fn_reranker *r);
const fn_rerank_options *fn_reranker_options(const fn_reranker *r);

/* Safetensors with funnel.model = "reranker" and the options in __metadata__ (temp file, fsync,
 * rename). Loading names the file and what is wrong: truncated, wrong shape, NaN weights. */
fn_status fn_reranker_save(const fn_reranker *r, const char *path, fn_error *err);
/* device: "cpu" or "cuda" (NULL: cpu); threads as in the options. */
fn_status fn_reranker_load(const char *path, const char *device, int threads, fn_reranker **out,
                           fn_error *err);

/*
 * Scores one list: features [n x fn_reranker_features(r)] in input (rank
 * stage) order; scores[n]. Items past max_items are not looked at: they get
 * scores below every scored item's that keep their input order. Safe to call
 * from several threads on one model; deterministic.
 */
fn_status fn_reranker_score(const fn_reranker *r, const float *features, size_t n, float *scores,
                            fn_error *err);
/* Scores for every item of d (list by list); out[d->n_items]. */
fn_status fn_reranker_predict(const fn_reranker *r, const fn_listset *d, float *out, fn_error *err);

/* ---- diversity and rules ---- */

/*
 * The items of one list as the page maker sees them: relevance (the model's
 * scores), and optionally unit-length embeddings and/or category sets used as
 * the similarity between two items: the cosine of their embeddings (the dot
 * product of the rows) when given, else the Jaccard index of their category
 * sets (a category listed twice for one item counts once; two empty sets: 0).
 * Categories also feed the cap, whichever similarity is used.
 */
typedef struct fn_page_items {
    size_t n;
    const float *scores;     /* n */
    const float *embeddings; /* n x dim, rows of unit length; NULL for none */
    int dim;
    const uint32_t *cat_offsets; /* n + 1: item i's categories are cats[cat_offsets[i]..]; NULL */
    const uint32_t *cats;
} fn_page_items;

/*
 * Ties go to the lower item index in every method. MMR and DPP need a
 * similarity (embeddings or categories); NONE does not.
 *  - MMR (Carbonell & Goldstein) takes the argmax of lambda rel_i - (1 - lambda)
 *    max_{j picked} sim(i, j), the max over no picks being 0.
 *  - DPP is the greedy MAP of Chen, Zhang & Zhou (NeurIPS 2018) with kernel
 *    L_ij = q_i S_ij q_j, q_i = exp(alpha rel_i), S the similarity with 1 + 1e-6
 *    on the diagonal. Once the best marginal gain det(L_{Y+i}) / det(L_Y) falls
 *    below 1e-10 (measured with q = 1 for the best-scored candidate), the
 *    kernel no longer tells the rest apart and the page goes on by score.
 */
typedef enum fn_diversity {
    FN_DIVERSITY_NONE = 0, /* by score, highest first */
    FN_DIVERSITY_MMR,      /* maximal marginal relevance: lambda rel - (1 - lambda) max sim */
    FN_DIVERSITY_DPP,      /* greedy MAP of a DPP with kernel q_i S_ij q_j, q = exp(alpha rel) */
} fn_diversity;

typedef struct fn_page_options {
    size_t page_size;
    fn_diversity diversity;
    float lambda;            /* MMR: in [0, 1]; 1 is pure relevance */
    float dpp_alpha;         /* DPP: >= 0, relevance's weight against diversity */
    int max_per_category;    /* 0: no cap; an item counts against each of its categories */
    const uint8_t *excluded; /* n flags or NULL: never shown */
    const size_t *pinned;    /* item indexes placed at pinned_at positions (0-based) */
    const size_t *pinned_at;
    size_t n_pinned;
} fn_page_options;

/*
 * Makes the page, in this order: (1) excluded items are removed; (2) pinned
 * items are set aside; (3) the rest are picked one by one by the diversity
 * method, skipping an item that would put one of its categories over the cap
 * (pinned items count against the cap first); (4) pinned items are placed
 * at their positions (a position past the end appends), the picked ones fill
 * the other places in order. page[] gets item indexes; *n_page <= page_size
 * (fewer when the cap or the exclusions leave too few).
 *
 * Details: page[] has room for page_size indexes (NULL when page_size is 0).
 * Pins take page places, so step 3 picks at most page_size - n_pinned items.
 * Pins are not subject to the cap themselves, and they do not enter the
 * similarity terms of MMR or DPP (those diversify the picks among
 * themselves). The page has no holes: pins keep their position order, and a
 * pin whose position lies beyond the picks follows them; with more pins than
 * page_size, those at the lowest positions are shown.
 *
 * FN_ERR_INVALID, with a message naming the item and the problem: a missing
 * argument, a non-finite score (excluded items' scores are not read) or
 * embedding component, a pinned item that is also excluded, pinned twice or
 * out of range, two pins at one position, lambda outside [0, 1], a negative or
 * non-finite dpp_alpha, MMR or DPP without a similarity, a cap without
 * categories, decreasing cat_offsets. FN_ERR_NOMEM when scratch memory runs
 * out (O(n), plus n x picks doubles for DPP). *n_page is 0 on any error.
 */
fn_status fn_rerank_page(const fn_page_items *items, const fn_page_options *opts, size_t *page,
                         size_t *n_page, fn_error *err);

/* Intra-list diversity of a page: the mean of 1 - sim over its pairs (0 for fewer than 2);
 * NaN without a similarity or with an index out of range. */
double fn_page_diversity(const fn_page_items *items, const size_t *page, size_t n_page);

#endif
