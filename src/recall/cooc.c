/*
 * cooc.c - the item co-occurrence recall channel (item-to-item): items that
 * the same users met close together, normalised by cosine, top K kept per
 * item. Built offline from interaction logs (`funnel cooc build`), saved as
 * one checked file, loaded by the server; a request turns the user's recent
 * items into candidates by summing their neighbours' scores.
 *
 * Glossary: n items (dense indices in id byte order), m stored neighbours,
 * c(i,j) users for whom i and j co-occur, n_i users of item i, W the window.
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/crc32c.h"
#include "common/file.h"
#include "intern_impl.h"
#include "recall.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "cooc.c reads and writes its little-endian file in place"
#endif

#define COOC_MAGIC      "FNCOOC\0\0"
#define COOC_VERSION    1u
#define COOC_COSINE     1u
#define COOC_HEADER     64u
#define COOC_MAX_FILE   ((size_t)1 << 36) /* 64 GiB */
#define COOC_MAX_TOP_K  100000u
#define COOC_EMPTY_SLOT 0 /* pair keys are lo << 32 | hi with lo < hi, never 0 */

/* The fixed header, 64 bytes little-endian, as on disk. */
typedef struct cooc_header {
    char magic[8];
    uint32_t version;
    uint32_t measure;
    uint64_t n_items;
    uint64_t n_neighbours;
    uint64_t ids_bytes;
    uint32_t top_k;
    uint32_t window;
    uint64_t users;
    uint32_t body_crc;
    uint32_t header_crc; /* of the 60 bytes before it */
} cooc_header;

_Static_assert(sizeof(cooc_header) == COOC_HEADER, "the co-occurrence header is 64 bytes");

/* A table is its file image, checked, with pointers into it. */
struct fn_cooc {
    uint8_t *data;
    size_t size;
    cooc_header h;
    const uint64_t *id_off;     /* n + 1: id i is ids + id_off[i] */
    const uint64_t *nb_off;     /* n + 1: neighbours of i at nb_off[i] .. nb_off[i + 1] */
    const uint32_t *nb_idx;     /* m */
    const float *nb_score;      /* m */
    const uint32_t *item_users; /* n */
    const char *ids;
};

typedef struct interaction {
    uint32_t user, item;
    int64_t t;
} interaction;

struct fn_cooc_builder {
    fn_cooc_options o;
    fn_intern users, items;
    interaction *v;
    size_t n, cap;
};

/* ---- building ---- */

fn_status fn_cooc_builder_new(const fn_cooc_options *opts, fn_cooc_builder **out, fn_error *err)
{
    *out = NULL;
    fn_cooc_options o = opts ? *opts : (fn_cooc_options){0};
    if (!o.top_k) o.top_k = FN_COOC_DEFAULT_TOP_K;
    if (o.top_k > COOC_MAX_TOP_K)
        return fn_error_set(err, FN_ERR_INVALID, "co-occurrence: top_k %u is above %u", o.top_k,
                            COOC_MAX_TOP_K);
    fn_cooc_builder *b = calloc(1, sizeof *b);
    if (!b) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    b->o = o;
    *out = b;
    return FN_OK;
}

void fn_cooc_builder_free(fn_cooc_builder *b)
{
    if (!b) return;
    fn_intern_free(&b->users);
    fn_intern_free(&b->items);
    free(b->v);
    free(b);
}

size_t fn_cooc_builder_count(const fn_cooc_builder *b)
{
    return b->n;
}

fn_status fn_cooc_builder_add(fn_cooc_builder *b, const char *user, const char *item, int64_t t,
                              fn_error *err)
{
    if (!user || !*user) return fn_error_set(err, FN_ERR_INVALID, "co-occurrence: empty user id");
    if (!item || !*item) return fn_error_set(err, FN_ERR_INVALID, "co-occurrence: empty item id");
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        interaction *v = realloc(b->v, cap * sizeof *v);
        if (!v)
            return fn_error_set(err, FN_ERR_NOMEM,
                                "co-occurrence: out of memory at %zu "
                                "interactions",
                                b->n);
        b->v = v;
        b->cap = cap;
    }
    interaction x = {.t = t};
    if (fn_intern_put(&b->users, user, &x.user, err) != FN_OK ||
        fn_intern_put(&b->items, item, &x.item, err) != FN_OK)
        return fn_error_prefix(err, "co-occurrence");
    b->v[b->n++] = x;
    return FN_OK;
}

/* qsort has no context argument: the strings being sorted, one build at a time per thread. */
static _Thread_local char *const *sort_strs;

static int by_id(const void *a, const void *b)
{
    return strcmp(sort_strs[*(const uint32_t *)a], sort_strs[*(const uint32_t *)b]);
}

static int by_user_time_item(const void *a, const void *b)
{
    const interaction *x = a, *y = b;
    if (x->user != y->user) return x->user < y->user ? -1 : 1;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return x->item < y->item ? -1 : x->item > y->item;
}

/* Pair counts: open addressing over keys lo << 32 | hi (lo < hi). */
typedef struct pair_table {
    uint64_t *keys;
    uint32_t *counts;
    size_t nslots, used;
} pair_table;

static size_t pair_slot(uint64_t key, size_t mask)
{
    return (size_t)((key * 0x9e3779b97f4a7c15ULL) >> 17) & mask;
}

static fn_status pair_grow(pair_table *p, fn_error *err)
{
    size_t nslots = p->nslots ? p->nslots * 2 : 1 << 12;
    uint64_t *keys = calloc(nslots, sizeof *keys);
    uint32_t *counts = calloc(nslots, sizeof *counts);
    if (!keys || !counts) {
        free(keys), free(counts);
        return fn_error_set(err, FN_ERR_NOMEM, "co-occurrence: out of memory at %zu item pairs",
                            p->used);
    }
    for (size_t s = 0; s < p->nslots; s++) {
        if (p->keys[s] == COOC_EMPTY_SLOT) continue;
        size_t h = pair_slot(p->keys[s], nslots - 1);
        while (keys[h] != COOC_EMPTY_SLOT) h = (h + 1) & (nslots - 1);
        keys[h] = p->keys[s];
        counts[h] = p->counts[s];
    }
    free(p->keys), free(p->counts);
    p->keys = keys;
    p->counts = counts;
    p->nslots = nslots;
    return FN_OK;
}

static fn_status pair_add(pair_table *p, uint32_t a, uint32_t b, fn_error *err)
{
    if ((p->used + 1) * 2 > p->nslots && pair_grow(p, err) != FN_OK) return FN_ERR_NOMEM;
    uint64_t key = a < b ? (uint64_t)a << 32 | b : (uint64_t)b << 32 | a;
    size_t mask = p->nslots - 1, h = pair_slot(key, mask);
    while (p->keys[h] != COOC_EMPTY_SLOT && p->keys[h] != key) h = (h + 1) & mask;
    if (p->keys[h] == COOC_EMPTY_SLOT) {
        p->keys[h] = key;
        p->used++;
    }
    p->counts[h]++;
    return FN_OK;
}

typedef struct edge {
    uint32_t dst;
    float score;
} edge;

static int by_score_then_dst(const void *a, const void *b)
{
    const edge *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->dst < y->dst ? -1 : x->dst > y->dst;
}

static fn_status parse_image(uint8_t *data, size_t size, const char *name, fn_cooc **out,
                             fn_error *err);

/*
 * Lays out the file image: header, id offsets, neighbour offsets, indices,
 * scores, users per item, ids.
 */
static fn_status write_image(const cooc_header *h0, char *const *ids, const uint32_t *order,
                             const uint64_t *nb_off, const edge *edges, const uint64_t *edge_off,
                             const uint32_t *item_users, fn_cooc **out, fn_error *err)
{
    cooc_header h = *h0;
    size_t n = h.n_items, m = h.n_neighbours, ids_bytes = 0;
    for (size_t i = 0; i < n; i++) ids_bytes += strlen(ids[order[i]]) + 1;
    h.ids_bytes = ids_bytes;
    size_t size = COOC_HEADER + 16 * (n + 1) + 8 * m + 4 * n + ids_bytes;
    uint8_t *data = malloc(size);
    if (!data)
        return fn_error_set(err, FN_ERR_NOMEM, "co-occurrence: out of memory (%zu bytes)", size);
    uint64_t *id_off = (uint64_t *)(data + COOC_HEADER);
    uint64_t *nbo = id_off + n + 1;
    uint32_t *idx = (uint32_t *)(nbo + n + 1);
    float *score = (float *)(idx + m);
    uint32_t *users = (uint32_t *)(score + m);
    char *s = (char *)(users + n);
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(ids[order[i]]) + 1;
        id_off[i] = off;
        memcpy(s + off, ids[order[i]], len);
        off += len;
        nbo[i] = nb_off[i];
        for (uint64_t e = 0; e < nb_off[i + 1] - nb_off[i]; e++) {
            idx[nb_off[i] + e] = edges[edge_off[i] + e].dst;
            score[nb_off[i] + e] = edges[edge_off[i] + e].score;
        }
        users[i] = item_users[i];
    }
    id_off[n] = off;
    nbo[n] = m;
    h.body_crc = fn_crc32c(data + COOC_HEADER, size - COOC_HEADER);
    h.header_crc = fn_crc32c(&h, offsetof(cooc_header, header_crc));
    memcpy(data, &h, sizeof h);
    return parse_image(data, size, "the built table", out, err);
}

fn_status fn_cooc_build(fn_cooc_builder *b, fn_cooc **out, uint64_t *pairs_out, fn_error *err)
{
    *out = NULL;
    size_t n = b->items.n;
    uint32_t *order = malloc((n ? n : 1) * sizeof *order); /* new index -> old */
    uint32_t *rank = malloc((n ? n : 1) * sizeof *rank);   /* old index -> new */
    uint32_t *stamp = calloc(n ? n : 1, sizeof *stamp);
    uint32_t *item_users = calloc(n ? n : 1, sizeof *item_users);
    uint32_t *seq = malloc((b->n ? b->n : 1) * sizeof *seq);
    uint64_t *deg = calloc(n + 1, sizeof *deg), *nb_off = calloc(n + 1, sizeof *nb_off);
    interaction *v = malloc((b->n ? b->n : 1) * sizeof *v);
    pair_table pt = {0};
    edge *edges = NULL;
    fn_status st = FN_OK;
    if (!order || !rank || !stamp || !item_users || !seq || !deg || !nb_off || !v) {
        st = fn_error_set(err, FN_ERR_NOMEM, "co-occurrence: out of memory for %zu items", n);
        goto done;
    }
    /* Dense indices in id byte order, so that ties by index are ties by id. */
    for (size_t i = 0; i < n; i++) order[i] = (uint32_t)i;
    sort_strs = b->items.strs;
    qsort(order, n, sizeof *order, by_id);
    sort_strs = NULL;
    for (size_t i = 0; i < n; i++) rank[order[i]] = (uint32_t)i;
    for (size_t k = 0; k < b->n; k++) {
        v[k] = b->v[k];
        v[k].item = rank[v[k].item];
    }
    qsort(v, b->n, sizeof *v, by_user_time_item);

    uint64_t users = 0;
    uint32_t w = b->o.window;
    for (size_t a = 0; a < b->n;) {
        size_t e = a;
        while (e < b->n && v[e].user == v[a].user) e++;
        /* The user's items at their latest interaction, in time order. */
        size_t len = 0;
        uint32_t mark = v[a].user + 1;
        for (size_t k = e; k-- > a;) {
            if (stamp[v[k].item] == mark) continue;
            stamp[v[k].item] = mark;
            seq[len++] = v[k].item;
        }
        for (size_t x = 0, y = len - 1; x < y; x++, y--) {
            uint32_t t = seq[x];
            seq[x] = seq[y];
            seq[y] = t;
        }
        users++;
        for (size_t q = 0; q < len; q++) {
            item_users[seq[q]]++;
            size_t p0 = w && q > w ? q - w : 0;
            for (size_t p = p0; p < q; p++)
                if ((st = pair_add(&pt, seq[p], seq[q], err)) != FN_OK) goto done;
        }
        a = e;
    }

    /* Both directions of every pair, bucketed by source item. */
    for (size_t s = 0; s < pt.nslots; s++) {
        if (pt.keys[s] == COOC_EMPTY_SLOT) continue;
        deg[pt.keys[s] >> 32]++;
        deg[pt.keys[s] & 0xffffffffu]++;
    }
    uint64_t *edge_off = deg; /* turned into bucket starts in place */
    uint64_t total = 0;
    for (size_t i = 0; i <= n; i++) {
        uint64_t d = deg[i];
        edge_off[i] = total;
        total += d;
    }
    if (!(edges = malloc((total ? total : 1) * sizeof *edges))) {
        st = fn_error_set(err, FN_ERR_NOMEM, "co-occurrence: out of memory for %llu neighbours",
                          (unsigned long long)total);
        goto done;
    }
    for (size_t s = 0; s < pt.nslots; s++) {
        if (pt.keys[s] == COOC_EMPTY_SLOT) continue;
        uint32_t i = (uint32_t)(pt.keys[s] >> 32), j = (uint32_t)(pt.keys[s] & 0xffffffffu);
        float score = (float)((double)pt.counts[s] / sqrt((double)item_users[i] * item_users[j]));
        edges[edge_off[i]++] = (edge){j, score};
        edges[edge_off[j]++] = (edge){i, score};
    }
    /* edge_off[i] now ends bucket i; shift back to starts (bucket i starts where i-1 ended). */
    for (size_t i = n; i > 0; i--) edge_off[i] = edge_off[i - 1];
    edge_off[0] = 0;
    uint64_t m = 0;
    for (size_t i = 0; i < n; i++) {
        size_t d = edge_off[i + 1] - edge_off[i];
        qsort(edges + edge_off[i], d, sizeof *edges, by_score_then_dst);
        nb_off[i] = m;
        m += d < b->o.top_k ? d : b->o.top_k;
    }
    nb_off[n] = m;
    cooc_header h = {.version = COOC_VERSION,
                     .measure = COOC_COSINE,
                     .n_items = n,
                     .n_neighbours = m,
                     .top_k = b->o.top_k,
                     .window = b->o.window,
                     .users = users};
    memcpy(h.magic, COOC_MAGIC, 8);
    if (pairs_out) *pairs_out = pt.used;
    st = write_image(&h, b->items.strs, order, nb_off, edges, edge_off, item_users, out, err);
done:
    free(order), free(rank), free(stamp), free(item_users), free(seq), free(deg), free(nb_off);
    free(v), free(edges), free(pt.keys), free(pt.counts);
    return st;
}

/* ---- the file image ---- */

#define CORRUPT(...) fn_error_set(err, FN_ERR_CORRUPT, __VA_ARGS__)

/* Checks an image and, when sound, takes data (freed on failure too). */
static fn_status parse_image(uint8_t *data, size_t size, const char *name, fn_cooc **out,
                             fn_error *err)
{
    fn_status st;
    *out = NULL;
    cooc_header h;
    if (size < COOC_HEADER) {
        st = CORRUPT("%s: truncated: %zu bytes, shorter than the %u-byte co-occurrence header",
                     name, size, COOC_HEADER);
        goto fail;
    }
    memcpy(&h, data, sizeof h);
    if (memcmp(h.magic, COOC_MAGIC, 8) != 0) {
        st = CORRUPT("%s: not a funnel co-occurrence table (bad magic)", name);
        goto fail;
    }
    if (fn_crc32c(data, offsetof(cooc_header, header_crc)) != h.header_crc) {
        st = CORRUPT("%s: header checksum mismatch", name);
        goto fail;
    }
    if (h.version != COOC_VERSION) {
        st = fn_error_set(err, FN_ERR_UNSUPPORTED,
                          "%s: co-occurrence format version %u, this build reads %u", name,
                          h.version, COOC_VERSION);
        goto fail;
    }
    if (h.measure != COOC_COSINE) {
        st = fn_error_set(err, FN_ERR_UNSUPPORTED, "%s: unknown similarity measure %u", name,
                          h.measure);
        goto fail;
    }
    uint64_t n = h.n_items, m = h.n_neighbours;
    /* Bounds that keep the size arithmetic below from overflowing; the size check follows. */
    if (n >= UINT32_MAX || m > (uint64_t)1 << 48 || h.ids_bytes > (uint64_t)1 << 56 ||
        h.top_k == 0 || h.top_k > COOC_MAX_TOP_K) {
        st = CORRUPT("%s: impossible counts in the header (%llu items, %llu neighbours, top %u)",
                     name, (unsigned long long)n, (unsigned long long)m, h.top_k);
        goto fail;
    }
    uint64_t want = COOC_HEADER + 16 * (n + 1) + 8 * m + 4 * n + h.ids_bytes;
    if (size != want) {
        st = CORRUPT("%s: %s: %zu bytes, the header says %llu", name,
                     size < want ? "truncated" : "trailing bytes", size, (unsigned long long)want);
        goto fail;
    }
    if (fn_crc32c(data + COOC_HEADER, size - COOC_HEADER) != h.body_crc) {
        st = CORRUPT("%s: body checksum mismatch", name);
        goto fail;
    }
    fn_cooc *c = calloc(1, sizeof *c);
    if (!c) {
        st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    c->data = data;
    c->size = size;
    c->h = h;
    c->id_off = (const uint64_t *)(data + COOC_HEADER);
    c->nb_off = c->id_off + n + 1;
    c->nb_idx = (const uint32_t *)(c->nb_off + n + 1);
    c->nb_score = (const float *)(c->nb_idx + m);
    c->item_users = (const uint32_t *)(c->nb_score + m);
    c->ids = (const char *)(c->item_users + n);
    /* The checksum held, so a failure below is a writer's bug or a forged file: still refused. */
    if (c->id_off[0] != 0 || c->id_off[n] != h.ids_bytes || c->nb_off[0] != 0 ||
        c->nb_off[n] != m) {
        st = CORRUPT("%s: offsets do not span the sections", name);
        goto fail_c;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t a = c->id_off[i], b = c->id_off[i + 1];
        if (b <= a + 1 || b > h.ids_bytes || c->ids[b - 1] != '\0' ||
            strlen(c->ids + a) != b - a - 1) {
            st = CORRUPT("%s: item %llu: bad id bytes", name, (unsigned long long)i);
            goto fail_c;
        }
        if (i > 0 && strcmp(c->ids + c->id_off[i - 1], c->ids + a) >= 0) {
            st = CORRUPT("%s: item %llu: ids out of order", name, (unsigned long long)i);
            goto fail_c;
        }
        uint64_t x = c->nb_off[i], y = c->nb_off[i + 1];
        if (y < x || y > m || y - x > h.top_k) {
            st = CORRUPT("%s: item %llu: bad neighbour offsets", name, (unsigned long long)i);
            goto fail_c;
        }
        for (uint64_t e = x; e < y; e++)
            if (c->nb_idx[e] >= n || c->nb_idx[e] == i || !isfinite(c->nb_score[e]) ||
                !(c->nb_score[e] > 0)) {
                st = CORRUPT("%s: item %llu: bad neighbour %llu", name, (unsigned long long)i,
                             (unsigned long long)(e - x));
                goto fail_c;
            }
    }
    *out = c;
    return FN_OK;
fail_c:
    free(c);
fail:
    free(data);
    return st;
}

void fn_cooc_free(fn_cooc *c)
{
    if (!c) return;
    free(c->data);
    free(c);
}

fn_status fn_cooc_save(const fn_cooc *c, const char *path, fn_error *err)
{
    fn_status st = fn_file_write_atomic(path, c->data, c->size, err);
    if (st != FN_OK) fn_error_prefix(err, "saving the co-occurrence table");
    return st;
}

fn_status fn_cooc_load(const char *path, fn_cooc **out, fn_error *err)
{
    *out = NULL;
    fn_buf b = FN_BUF_INIT;
    fn_status st = fn_file_read_all(path, COOC_MAX_FILE, &b, err);
    if (st != FN_OK) {
        fn_buf_free(&b);
        return st;
    }
    /* fn_buf's memory comes from malloc: aligned for the uint64 sections, ours to keep. */
    return parse_image((uint8_t *)b.data, b.len, path, out, err);
}

/* ---- queries ---- */

size_t fn_cooc_items(const fn_cooc *c)
{
    return (size_t)c->h.n_items;
}

size_t fn_cooc_neighbour_count(const fn_cooc *c)
{
    return (size_t)c->h.n_neighbours;
}

uint32_t fn_cooc_top_k(const fn_cooc *c)
{
    return c->h.top_k;
}

uint32_t fn_cooc_window(const fn_cooc *c)
{
    return c->h.window;
}

uint64_t fn_cooc_users(const fn_cooc *c)
{
    return c->h.users;
}

/* The dense index of item (ids are sorted), or -1. */
static int64_t find_item(const fn_cooc *c, const char *item)
{
    size_t lo = 0, hi = (size_t)c->h.n_items;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strcmp(c->ids + c->id_off[mid], item);
        if (r == 0) return (int64_t)mid;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

uint32_t fn_cooc_item_users(const fn_cooc *c, const char *item)
{
    int64_t i = item ? find_item(c, item) : -1;
    return i < 0 ? 0 : c->item_users[i];
}

fn_status fn_cooc_neighbours(const fn_cooc *c, const char *item, size_t k, fn_recall_item *out,
                             size_t *got, fn_error *err)
{
    *got = 0;
    int64_t i = item ? find_item(c, item) : -1;
    if (i < 0)
        return fn_error_set(err, FN_ERR_NOT_FOUND,
                            "item '%.128s' is not in the co-occurrence table", item ? item : "");
    uint64_t a = c->nb_off[i], d = c->nb_off[i + 1] - a;
    size_t r = d < k ? (size_t)d : k;
    for (size_t e = 0; e < r; e++) {
        out[e].id = c->ids + c->id_off[c->nb_idx[a + e]];
        out[e].score = c->nb_score[a + e];
    }
    *got = r;
    return FN_OK;
}

typedef struct cand {
    uint32_t idx;
    double score;
} cand;

static int cand_by_score(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

fn_status fn_cooc_candidates(const fn_cooc *c, const char *const *recent, size_t n_recent, size_t k,
                             fn_recall_item *out, size_t *got, fn_error *err)
{
    *got = 0;
    if (!n_recent || !k) return FN_OK;
    uint32_t *seen = malloc(n_recent * sizeof *seen);
    size_t ns = 0, total = 0;
    if (!seen) return fn_error_set(err, FN_ERR_NOMEM, "co-occurrence: out of memory");
    for (size_t r = 0; r < n_recent; r++) {
        int64_t i = recent[r] ? find_item(c, recent[r]) : -1;
        if (i < 0) continue;
        seen[ns++] = (uint32_t)i;
        total += (size_t)(c->nb_off[i + 1] - c->nb_off[i]);
    }
    cand *v = malloc((total ? total : 1) * sizeof *v);
    if (!v) {
        free(seen);
        return fn_error_set(err, FN_ERR_NOMEM, "co-occurrence: out of memory for %zu candidates",
                            total);
    }
    /* Sum per item in a table at most half full (summed in the order of the recent items and
     * their neighbour lists, a fixed order), then drop the recent ones. */
    size_t nslots = 64;
    while (nslots < 2 * total + 1) nslots *= 2;
    uint32_t *slots = calloc(nslots, sizeof *slots); /* index into v + 1; 0 empty */
    if (!slots) {
        free(v), free(seen);
        return fn_error_set(err, FN_ERR_NOMEM, "co-occurrence: out of memory for %zu candidates",
                            total);
    }
    size_t nv = 0;
    for (size_t r = 0; r < ns; r++)
        for (uint64_t e = c->nb_off[seen[r]]; e < c->nb_off[seen[r] + 1]; e++) {
            const uint32_t idx = c->nb_idx[e];
            size_t h = (size_t)(idx * 0x9e3779b1u) & (nslots - 1);
            while (slots[h] && v[slots[h] - 1].idx != idx) h = (h + 1) & (nslots - 1);
            if (slots[h]) {
                v[slots[h] - 1].score += c->nb_score[e];
            } else {
                v[nv] = (cand){idx, c->nb_score[e]};
                slots[h] = (uint32_t)++nv;
            }
        }
    free(slots);
    qsort(seen, ns, sizeof *seen, u32_cmp);
    size_t nm = 0;
    for (size_t i = 0; i < nv; i++)
        if (!bsearch(&v[i].idx, seen, ns, sizeof *seen, u32_cmp)) v[nm++] = v[i];
    qsort(v, nm, sizeof *v, cand_by_score);
    size_t r = nm < k ? nm : k;
    for (size_t e = 0; e < r; e++) {
        out[e].id = c->ids + c->id_off[v[e].idx];
        out[e].score = v[e].score;
    }
    *got = r;
    free(v);
    free(seen);
    return FN_OK;
}
