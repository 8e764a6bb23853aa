/*
 * store.c - the feature store over RocksDB's C API.
 *
 * The ranking path asks for one user and hundreds of items per request, so
 * reads are built around a sharded LRU cache of decoded, immutable records:
 * a hit hands out a reference, and only misses go to RocksDB, together, in
 * one MultiGet. Writers (Kafka ingestion, `funnel store load`) are rarer and
 * pay for safety instead: each put is a read-compare-write under a striped
 * mutex, written through the WAL with fsync.
 *
 * Cache coherence without readers taking writer locks: every cache shard
 * keeps generation counters and in-flight write counts (slots by key hash).
 * A writer drops the entry and moves the generation on both before and after
 * its RocksDB write; a reader notes the generation when it misses and inserts
 * what it read only if the generation is unchanged and no write is in flight.
 * So the cache never holds anything but the stored record, and a reader that
 * raced with a put can never leave the older one behind.
 *
 * Glossary: cf = RocksDB column family; stripe = one of the put mutexes;
 * gen = generation counter; charge = bytes a cached record holds.
 */
#include "store.h"
#include "store_impl.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "common/file.h"
#include "funnel/v1/records.pb-c.h"

static const char *const cf_names[CF_OURS] = {"default",  "users", "items",
                                              "counters", "meta",  "item_numbers"};

#define MAX_SHARDS          16
#define GEN_SLOTS           64
#define DEFAULT_MAX_ENTRIES 100000
#define DEFAULT_MAX_BYTES   ((size_t)256 << 20)
/* Counter keys hash with a seed of their own: "puts" the counter and "puts" the user are unrelated.
 */
#define COUNTER_SEED 0x636f756e74657273ull

/* ---- records ---- */

/*
 * A record and the small parts of its decoded message live in one allocation
 * sized from the encoded form (decoded_size_guess), which protobuf-c fills by
 * bumping: one malloc per miss and one free per last release for typical
 * records. Large allocations (a vector, protobuf-c's scratch arrays for
 * messages of many fields, which it frees before returning) and whatever no
 * longer fits get their own malloc, so what protobuf-c frees is given back.
 * The charge is the memory held.
 */
#define REC_BIG 512

typedef struct rec_big {
    struct rec_big *next, *prev;
    size_t size;
    _Alignas(16) unsigned char data[];
} rec_big;

struct fn_store_record {
    atomic_size_t refs;
    Funnel__V1__StoredRecord *msg;
    size_t charge;
    int oom;
    rec_big *big;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
};

static void *rec_alloc(void *ctx, size_t n)
{
    fn_store_record *r = ctx;
    size_t need = (n + 15) & ~(size_t)15;
    if (need < REC_BIG && r->cap - r->used >= need) {
        void *p = r->data + r->used;
        r->used += need;
        return p;
    }
    rec_big *b = malloc(sizeof *b + n);
    if (!b) {
        r->oom = 1;
        return NULL;
    }
    b->size = sizeof *b + n;
    b->prev = NULL;
    b->next = r->big;
    if (r->big) r->big->prev = b;
    r->big = b;
    r->charge += b->size;
    return b->data;
}

static void rec_free(void *ctx, void *p)
{
    fn_store_record *r = ctx;
    unsigned char *c = p;
    if (!p || (c >= r->data && c < r->data + r->cap)) return; /* goes with the record */
    rec_big *b = (rec_big *)(void *)(c - offsetof(rec_big, data));
    if (b->prev)
        b->prev->next = b->next;
    else
        r->big = b->next;
    if (b->next) b->next->prev = b->prev;
    r->charge -= b->size;
    free(b);
}

static void record_free(fn_store_record *r)
{
    for (rec_big *b = r->big, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(r);
}

/* Reads a varint at *p (below end); 0 when it is cut off. */
static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return 1;
    }
    return 0;
}

/*
 * How much of a StoredRecord's decoded form goes in its first block: about
 * its wire size, plus per feature (map entry) the four structs and the key
 * and list allocations that its few wire bytes expand into; but not a vector
 * of REC_BIG bytes or more, which gets its own allocation. Counting the
 * entries is one pass over tags and lengths.
 */
static size_t decoded_size_guess(const uint8_t *p, size_t len)
{
    const uint8_t *end = p + len;
    size_t entries = 0, small = len;
    uint64_t tag, n;
    while (p < end && read_varint(&p, end, &tag)) {
        if ((tag & 7) == 0) {
            if (!read_varint(&p, end, &n)) break;
            continue;
        }
        if ((tag & 7) != 2 || !read_varint(&p, end, &n) || n > (uint64_t)(end - p)) break;
        if (tag >> 3 == 2) { /* features: count its map entries */
            const uint8_t *q = p, *fend = p + n;
            uint64_t t, m;
            while (q < fend && read_varint(&q, fend, &t) && (t & 7) == 2 &&
                   read_varint(&q, fend, &m) && m <= (uint64_t)(fend - q)) {
                entries++;
                q += m;
            }
        }
        if (tag >> 3 == 3 && n >= REC_BIG) small -= (size_t)n;
        p += n;
    }
    return small + 128 + entries * 192;
}

/* FN_ERR_CORRUPT when the bytes are not a StoredRecord; the caller names the id. */
static fn_status record_decode(const char *data, size_t len, fn_store_record **out)
{
    if (len > ((size_t)1 << 40)) return FN_ERR_CORRUPT;
    size_t cap = decoded_size_guess((const uint8_t *)data, len);
    fn_store_record *r = malloc(sizeof *r + cap);
    if (!r) return FN_ERR_NOMEM;
    atomic_init(&r->refs, 1);
    r->charge = sizeof *r + cap;
    r->oom = 0;
    r->big = NULL;
    r->cap = cap;
    r->used = 0;
    ProtobufCAllocator alloc = {rec_alloc, rec_free, r};
    r->msg = funnel__v1__stored_record__unpack(&alloc, len, (const uint8_t *)data);
    if (!r->msg) {
        fn_status st = r->oom ? FN_ERR_NOMEM : FN_ERR_CORRUPT;
        record_free(r);
        return st;
    }
    *out = r;
    return FN_OK;
}

uint64_t fn_store_record_version(const fn_store_record *r)
{
    return r->msg->version;
}

const Tensorflow__Features *fn_store_record_features(const fn_store_record *r)
{
    return r->msg->features;
}

const float *fn_store_record_vector(const fn_store_record *r, size_t *n)
{
    *n = r->msg->n_vector;
    return r->msg->n_vector ? r->msg->vector : NULL;
}

fn_store_record *fn_store_record_retain(fn_store_record *r)
{
    atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
    return r;
}

void fn_store_record_release(fn_store_record *r)
{
    if (r && atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1) record_free(r);
}

void fn_store_records_release(fn_store_record **records, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        fn_store_record_release(records[i]);
        records[i] = NULL;
    }
}

static fn_status record_pack(uint64_t version, const Tensorflow__Features *features,
                             const float *vector, size_t n_vector, fn_buf *out)
{
    Funnel__V1__StoredRecord m = FUNNEL__V1__STORED_RECORD__INIT;
    m.version = version;
    /* protobuf-c's struct fields are not const, but packing only reads them. */
    m.features = (Tensorflow__Features *)features;
    m.n_vector = n_vector;
    m.vector = (float *)vector;
    size_t size = funnel__v1__stored_record__get_packed_size(&m);
    if (fn_buf_reserve(out, size + 1) != FN_OK) return FN_ERR_NOMEM;
    out->len += funnel__v1__stored_record__pack(&m, (uint8_t *)out->data + out->len);
    out->data[out->len] = '\0';
    return FN_OK;
}

/* The version of a stored value, which must decode as a whole to be trusted. */
static fn_status stored_version(const char *data, size_t len, uint64_t *version)
{
    Funnel__V1__StoredRecord *m =
        funnel__v1__stored_record__unpack(NULL, len, (const uint8_t *)data);
    if (!m) return FN_ERR_CORRUPT;
    *version = m->version;
    funnel__v1__stored_record__free_unpacked(m, NULL);
    return FN_OK;
}

/* ---- the cache ---- */

typedef struct cache_entry {
    struct cache_entry *chain;         /* next in the hash bucket */
    struct cache_entry *newer, *older; /* LRU list */
    uint64_t hash;
    fn_store_record *rec;
    size_t charge;
    int family;
    size_t id_len;
    char id[];
} cache_entry;

struct cache_shard {
    pthread_mutex_t mu;
    cache_entry **buckets;
    size_t mask;
    cache_entry *newest, *oldest;
    size_t entries, bytes, max_entries, max_bytes;
    uint64_t evictions;
    uint64_t gen[GEN_SLOTS];
    uint32_t writing[GEN_SLOTS]; /* writes in flight on keys of the slot */
};

static uint64_t key_hash(int family, const char *id, size_t id_len)
{
    return XXH3_64bits_withSeed(id, id_len, (uint64_t)family + 1);
}

static cache_shard *shard_of(fn_store *s, uint64_t h)
{
    return &s->shards[(h >> 60) & (s->n_shards - 1)];
}

static size_t gen_slot(uint64_t h)
{
    return (size_t)(h >> 32) % GEN_SLOTS;
}

static pthread_mutex_t *stripe_of(fn_store *s, uint64_t h)
{
    return &s->stripes[(h >> 40) % N_STRIPES];
}

static cache_entry **bucket_find(cache_shard *c, uint64_t h, int family, const char *id,
                                 size_t id_len)
{
    cache_entry **pp = &c->buckets[h & c->mask];
    for (; *pp; pp = &(*pp)->chain) {
        cache_entry *e = *pp;
        if (e->hash == h && e->family == family && e->id_len == id_len &&
            memcmp(e->id, id, id_len) == 0)
            break;
    }
    return pp;
}

static void lru_unlink(cache_shard *c, cache_entry *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void lru_push_newest(cache_shard *c, cache_entry *e)
{
    e->newer = NULL;
    e->older = c->newest;
    if (c->newest)
        c->newest->newer = e;
    else
        c->oldest = e;
    c->newest = e;
}

/* Unlinks e from bucket and list; the caller frees it (outside the lock). */
static void entry_remove(cache_shard *c, cache_entry **pp)
{
    cache_entry *e = *pp;
    *pp = e->chain;
    lru_unlink(c, e);
    c->entries--;
    c->bytes -= e->charge;
}

static void entries_free(cache_entry *list)
{
    for (cache_entry *e = list, *next; e; e = next) {
        next = e->chain;
        fn_store_record_release(e->rec);
        free(e);
    }
}

/* A retained record for the key, or NULL with *gen set to the generation to insert under. */
static fn_store_record *cache_lookup(fn_store *s, uint64_t h, int family, const char *id,
                                     size_t id_len, uint64_t *gen)
{
    cache_shard *c = shard_of(s, h);
    fn_store_record *r = NULL;
    pthread_mutex_lock(&c->mu);
    cache_entry *e = *bucket_find(c, h, family, id, id_len);
    if (e) {
        lru_unlink(c, e);
        lru_push_newest(c, e);
        r = fn_store_record_retain(e->rec);
    } else {
        *gen = c->gen[gen_slot(h)];
    }
    pthread_mutex_unlock(&c->mu);
    return r;
}

static void cache_insert(fn_store *s, uint64_t h, int family, const char *id, size_t id_len,
                         fn_store_record *rec, uint64_t gen)
{
    cache_shard *c = shard_of(s, h);
    size_t charge = rec->charge + sizeof(cache_entry) + id_len;
    if (charge > c->max_bytes) return;
    cache_entry *e = malloc(sizeof *e + id_len);
    if (!e) return; /* the cache is an optimisation: no room, no entry */
    e->hash = h;
    e->rec = rec;
    e->charge = charge;
    e->family = family;
    e->id_len = id_len;
    memcpy(e->id, id, id_len);
    cache_entry *evicted = NULL;
    pthread_mutex_lock(&c->mu);
    cache_entry **pp = bucket_find(c, h, family, id, id_len);
    /* A write that started or ended since our lookup, or is still going, may have made what we
     * read stale; a concurrent reader of the same generation may have inserted it already. */
    if (c->gen[gen_slot(h)] != gen || c->writing[gen_slot(h)] || *pp) {
        pthread_mutex_unlock(&c->mu);
        free(e);
        return;
    }
    fn_store_record_retain(rec);
    e->chain = NULL;
    *pp = e;
    lru_push_newest(c, e);
    c->entries++;
    c->bytes += charge;
    while (c->entries > c->max_entries || c->bytes > c->max_bytes) {
        cache_entry *old = c->oldest;
        entry_remove(c, bucket_find(c, old->hash, old->family, old->id, old->id_len));
        old->chain = evicted;
        evicted = old;
        c->evictions++;
    }
    pthread_mutex_unlock(&c->mu);
    entries_free(evicted);
}

/*
 * Brackets a RocksDB write of the key (with its stripe or all of them held): step +1 before
 * it, -1 after it, whether it succeeded or not. Both drop the cached record and
 * move the generation on. While the write is in flight no reader may insert,
 * since it cannot know whether it read before or after the write; so a cached
 * record is always the stored one, and no reader sees a record and later an
 * older one.
 */
static void cache_fence(fn_store *s, uint64_t h, int family, const char *id, size_t id_len,
                        int step)
{
    if (!s->shards) return;
    cache_shard *c = shard_of(s, h);
    cache_entry *gone = NULL;
    pthread_mutex_lock(&c->mu);
    c->gen[gen_slot(h)]++;
    c->writing[gen_slot(h)] += (uint32_t)step;
    cache_entry **pp = bucket_find(c, h, family, id, id_len);
    if (*pp) {
        gone = *pp;
        entry_remove(c, pp);
        gone->chain = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    entries_free(gone);
}

static fn_status cache_init(fn_store *s, const fn_store_options *o)
{
    size_t max_entries = o->cache_max_entries ? o->cache_max_entries : DEFAULT_MAX_ENTRIES;
    size_t max_bytes = o->cache_max_bytes ? o->cache_max_bytes : DEFAULT_MAX_BYTES;
    /* Shards cut lock contention between request threads, but each must stay big enough for
     * LRU to mean something, and the shards' bounds add up to at most the ones asked for. */
    size_t n = MAX_SHARDS;
    while (n > 1 && (max_entries / n < 256 || max_bytes / n < ((size_t)1 << 20))) n >>= 1;
    s->shards = calloc(n, sizeof *s->shards);
    if (!s->shards) return FN_ERR_NOMEM;
    s->n_shards = n;
    for (size_t i = 0; i < n; i++) pthread_mutex_init(&s->shards[i].mu, NULL);
    for (size_t i = 0; i < n; i++) {
        cache_shard *c = &s->shards[i];
        c->max_entries = max_entries / n;
        c->max_bytes = max_bytes / n;
        size_t nb = 64;
        while (nb < c->max_entries && nb < ((size_t)1 << 20)) nb <<= 1;
        c->buckets = calloc(nb, sizeof *c->buckets);
        if (!c->buckets) return FN_ERR_NOMEM;
        c->mask = nb - 1;
    }
    return FN_OK;
}

static void cache_free(fn_store *s)
{
    for (size_t i = 0; s->shards && i < s->n_shards; i++) {
        cache_shard *c = &s->shards[i];
        cache_entry *all = NULL;
        for (cache_entry *e = c->newest, *next; e; e = next) {
            next = e->older;
            e->chain = all;
            all = e;
        }
        entries_free(all);
        free(c->buckets);
        pthread_mutex_destroy(&c->mu);
    }
    free(s->shards);
    s->shards = NULL;
}

void fn_store_get_stats(fn_store *s, fn_store_stats *out)
{
    memset(out, 0, sizeof *out);
    out->cache_hits = atomic_load_explicit(&s->hits, memory_order_relaxed);
    out->cache_misses = atomic_load_explicit(&s->misses, memory_order_relaxed);
    for (size_t i = 0; s->shards && i < s->n_shards; i++) {
        cache_shard *c = &s->shards[i];
        pthread_mutex_lock(&c->mu);
        out->cache_evictions += c->evictions;
        out->cache_entries += c->entries;
        out->cache_bytes += c->bytes;
        out->cache_max_entries += c->max_entries;
        out->cache_max_bytes += c->max_bytes;
        pthread_mutex_unlock(&c->mu);
    }
}

/* ---- errors ---- */

const char *fn_store_family_name(fn_store_family family)
{
    switch (family) {
    case FN_STORE_USERS:
        return "users";
    case FN_STORE_ITEMS:
        return "items";
    }
    return "?";
}

fn_status fn_store_family_parse(const char *name, fn_store_family *out)
{
    if (strcmp(name, "users") == 0) {
        *out = FN_STORE_USERS;
    } else if (strcmp(name, "items") == 0) {
        *out = FN_STORE_ITEMS;
    } else {
        return FN_ERR_INVALID;
    }
    return FN_OK;
}

/* Ids are arbitrary bytes: quote them as JSON strings, cut to a readable length. */
static void append_id(fn_buf *b, const char *id, size_t id_len)
{
    size_t n = id_len > 64 ? 64 : id_len;
    fn_buf_json_string(b, id, n);
    if (n < id_len) fn_buf_printf(b, "... (%zu bytes)", id_len);
}

/*
 * "OP: store PATH, family FAMILY, id "ID": DETAIL" - every message names the
 * operation and the object; family and id are left out when NULL.
 */
fn_status st_error(const fn_store *s, fn_error *err, fn_status code, const char *op,
                   const char *family, const char *id, size_t id_len, const char *fmt, ...)
{
    if (!err) return code;
    fn_buf b = FN_BUF_INIT;
    fn_buf_printf(&b, "%s: store %s", op, s ? s->path : "?");
    if (family) fn_buf_printf(&b, ", family %s", family);
    if (id) {
        fn_buf_puts(&b, ", id ");
        append_id(&b, id, id_len);
    }
    char detail[FN_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    fn_error_set(err, code, "%s: %s", b.data ? b.data : op, detail);
    fn_buf_free(&b);
    return code;
}

/* The status kind of a RocksDB error string ("Corruption: ...", "IO error: ..."). */
static fn_status rocksdb_code(const char *msg)
{
    if (strncmp(msg, "Corruption", 10) == 0) return FN_ERR_CORRUPT;
    if (strncmp(msg, "IO error", 8) == 0) return FN_ERR_IO;
    if (strncmp(msg, "Not implemented", 15) == 0) return FN_ERR_UNSUPPORTED;
    if (strncmp(msg, "Invalid argument", 16) == 0) return FN_ERR_INVALID;
    return FN_ERR_INTERNAL;
}

/* Turns RocksDB's errptr into a status and frees it. */
fn_status st_rocksdb_fail(const fn_store *s, fn_error *err, const char *op, const char *family,
                          const char *id, size_t id_len, char *rerr)
{
    fn_status code = rocksdb_code(rerr);
    st_error(s, err, code, op, family, id, id_len, "%s", rerr);
    rocksdb_free(rerr);
    return code;
}

static fn_status check_family(const fn_store *s, const char *op, fn_store_family family,
                              fn_error *err)
{
    if (family != FN_STORE_USERS && family != FN_STORE_ITEMS)
        return st_error(s, err, FN_ERR_INVALID, op, NULL, NULL, 0,
                        "family %d is not users or items", (int)family);
    return FN_OK;
}

fn_status st_check_id(const fn_store *s, const char *op, const char *family, const char *id,
                      size_t id_len, fn_error *err)
{
    if (!id || id_len == 0)
        return st_error(s, err, FN_ERR_INVALID, op, family, NULL, 0, "empty id");
    if (id_len > FN_STORE_ID_MAX)
        return st_error(s, err, FN_ERR_INVALID, op, family, id, id_len,
                        "id is longer than %d bytes", FN_STORE_ID_MAX);
    return FN_OK;
}

fn_status st_check_writable(const fn_store *s, const char *op, fn_error *err)
{
    if (s->read_only)
        return st_error(s, err, FN_ERR_UNSUPPORTED, op, NULL, NULL, 0, "opened read-only");
    return FN_OK;
}

static rocksdb_column_family_handle_t *family_cf(const fn_store *s, fn_store_family family)
{
    return s->cfs[family == FN_STORE_USERS ? CF_USERS : CF_ITEMS];
}

/* ---- open / close ---- */

const char *fn_store_path(const fn_store *s)
{
    return s->path;
}

static int has_current_file(const char *path)
{
    size_t n = strlen(path) + sizeof "/CURRENT";
    char *p = malloc(n);
    if (!p) return 0;
    snprintf(p, n, "%s/CURRENT", path);
    struct stat st;
    int ok = stat(p, &st) == 0 && S_ISREG(st.st_mode);
    free(p);
    return ok;
}

static int folder_is_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d) return 0;
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) empty = 0;
    closedir(d);
    return empty;
}

/*
 * Decides, before RocksDB does, whether path can be opened as asked, so that
 * a typo in --store reads "no store there" instead of a RocksDB message about
 * a CURRENT file, and a read-write open never turns some unrelated folder
 * into a database.
 */
static fn_status check_folder(fn_store *s, const fn_store_options *o, int *exists, fn_error *err)
{
    struct stat st;
    *exists = 0;
    if (stat(s->path, &st) != 0) {
        if (errno != ENOENT)
            return st_error(s, err, FN_ERR_IO, "open", NULL, NULL, 0, "%s", strerror(errno));
        if (o->read_only || !o->create_if_missing)
            return st_error(s, err, FN_ERR_NOT_FOUND, "open", NULL, NULL, 0,
                            "no store there (no such folder)");
        fn_error merr = {0};
        if (fn_mkdir_p(s->path, &merr) != FN_OK)
            return st_error(s, err, merr.code, "open", NULL, NULL, 0, "%s", merr.msg);
        return FN_OK;
    }
    if (!S_ISDIR(st.st_mode))
        return st_error(s, err, FN_ERR_INVALID, "open", NULL, NULL, 0, "not a store: not a folder");
    if (has_current_file(s->path)) {
        *exists = 1;
        return FN_OK;
    }
    if (o->read_only || !o->create_if_missing)
        return st_error(s, err, FN_ERR_NOT_FOUND, "open", NULL, NULL, 0,
                        "not a store: the folder holds no RocksDB database (no CURRENT file)");
    if (!folder_is_empty(s->path))
        return st_error(s, err, FN_ERR_INVALID, "open", NULL, NULL, 0,
                        "not a store: the folder is not empty and holds no RocksDB database; "
                        "refusing to create a store among other files");
    return FN_OK;
}

static int buf_is(const fn_buf *v, const char *text)
{
    return v->len == strlen(text) && memcmp(v->data, text, v->len) == 0;
}

/* Checks (or, in a new store, writes) the format marker, then sets up the item numbers. */
static fn_status check_format(fn_store *s, fn_error *err)
{
    fn_buf v = FN_BUF_INIT;
    fn_error merr = {0};
    fn_status st = fn_store_meta_get(s, FORMAT_KEY, &v, &merr);
    int old_format = 0;
    /* A missing marker is expected on a new store, so its message stays out of err. */
    if (st == FN_ERR_NOT_FOUND) {
        if (s->read_only) {
            st = st_error(s, err, FN_ERR_INVALID, "open", NULL, NULL, 0,
                          "not a funnel store: no %s in the meta family", FORMAT_KEY);
        } else {
            st = fn_store_meta_put(s, FORMAT_KEY, FORMAT_VERSION, strlen(FORMAT_VERSION), err);
        }
    } else if (st != FN_OK) {
        if (err) *err = merr;
    } else if (buf_is(&v, FORMAT_UNNUMBERED)) {
        old_format = 1;
    } else if (!buf_is(&v, FORMAT_VERSION)) {
        st = st_error(s, err, FN_ERR_UNSUPPORTED, "open", NULL, NULL, 0,
                      "store format '%.*s' is not one this funnel reads (%s, or %s, which it "
                      "upgrades)",
                      (int)(v.len > 32 ? 32 : v.len), v.data, FORMAT_VERSION, FORMAT_UNNUMBERED);
    }
    fn_buf_free(&v);
    if (st == FN_OK) st = st_numbers_open(s, old_format, err);
    return st;
}

static fn_status open_rocksdb(fn_store *s, int exists, fn_error *err)
{
    /* RocksDB wants every family the database has named on open: ours plus any others. */
    char **existing = NULL;
    size_t n_existing = 0;
    if (exists) {
        char *rerr = NULL;
        existing = rocksdb_list_column_families(s->opts, s->path, &n_existing, &rerr);
        if (rerr) return st_rocksdb_fail(s, err, "open", NULL, NULL, 0, rerr);
    }
    const char **names = calloc(CF_OURS + n_existing, sizeof *names);
    const rocksdb_options_t **cf_opts = calloc(CF_OURS + n_existing, sizeof *cf_opts);
    s->cfs = calloc(CF_OURS + n_existing, sizeof *s->cfs);
    fn_status st = FN_OK;
    if (!names || !cf_opts || !s->cfs) {
        st = st_error(s, err, FN_ERR_NOMEM, "open", NULL, NULL, 0, "out of memory");
        goto done;
    }
    size_t n = 0;
    for (; n < CF_OURS; n++) names[n] = cf_names[n];
    int found[CF_OURS] = {0};
    for (size_t i = 0; i < n_existing; i++) {
        int ours = 0;
        for (int k = 0; k < CF_OURS; k++)
            if (strcmp(existing[i], cf_names[k]) == 0) ours = found[k] = 1;
        if (!ours) names[n++] = existing[i];
    }
    /* Read-only, a store of format 1 has no item numbers family; it opens without one. */
    int skip_numbers = 0;
    if (s->read_only) {
        for (int k = CF_USERS; k < CF_OURS; k++)
            if (!found[k] && k != CF_NUMBERS) {
                st = st_error(s, err, FN_ERR_INVALID, "open", NULL, NULL, 0,
                              "not a funnel store: no '%s' column family", cf_names[k]);
                goto done;
            }
        skip_numbers = !found[CF_NUMBERS];
    }
    for (size_t i = 0; i < n; i++) cf_opts[i] = s->opts;
    char *rerr = NULL;
    if (skip_numbers) {
        /* names without it: the handles of the families after it move down one */
        memmove(&names[CF_NUMBERS], &names[CF_NUMBERS + 1], (n - CF_NUMBERS - 1) * sizeof *names);
        s->db = rocksdb_open_for_read_only_column_families(s->opts, s->path, (int)n - 1, names,
                                                           cf_opts, s->cfs, 0, &rerr);
        if (!rerr) {
            memmove(&s->cfs[CF_NUMBERS + 1], &s->cfs[CF_NUMBERS],
                    (n - CF_NUMBERS - 1) * sizeof *s->cfs);
            s->cfs[CF_NUMBERS] = NULL;
        }
    } else if (s->read_only) {
        s->db = rocksdb_open_for_read_only_column_families(s->opts, s->path, (int)n, names, cf_opts,
                                                           s->cfs, 0, &rerr);
    } else {
        s->db =
            rocksdb_open_column_families(s->opts, s->path, (int)n, names, cf_opts, s->cfs, &rerr);
    }
    if (rerr) {
        s->db = NULL;
        if (strstr(rerr, "lock file") || strstr(rerr, "lock hold")) {
            st = st_error(s, err, FN_ERR_IO, "open", NULL, NULL, 0,
                          "the store is locked: another process (or this one) has it open "
                          "for writing (%s)",
                          rerr);
            rocksdb_free(rerr);
        } else {
            st = st_rocksdb_fail(s, err, "open", NULL, NULL, 0, rerr);
        }
        goto done;
    }
    s->n_cfs = n;
done:
    if (existing) rocksdb_list_column_families_destroy(existing, n_existing);
    free(names);
    free(cf_opts);
    return st;
}

fn_status fn_store_open(const char *path, const fn_store_options *opts, fn_store **out,
                        fn_error *err)
{
    static const fn_store_options defaults = {0};
    const fn_store_options *o = opts ? opts : &defaults;
    *out = NULL;
    if (!path || !*path) return fn_error_set(err, FN_ERR_INVALID, "open store: empty path");
    fn_store *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        return fn_error_set(err, FN_ERR_NOMEM, "open store %s: out of memory", path);
    }
    s->read_only = o->read_only;
    for (int i = 0; i < N_STRIPES; i++) pthread_mutex_init(&s->stripes[i], NULL);
    /* Writer preference, or a steady stream of single puts would starve batch commits. */
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s->writers, &ra);
    pthread_rwlockattr_destroy(&ra);
    atomic_init(&s->hits, 0);
    atomic_init(&s->misses, 0);

    int exists;
    fn_status st = check_folder(s, o, &exists, err);
    if (st != FN_OK) goto fail;

    s->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(s->opts, !o->read_only && o->create_if_missing);
    rocksdb_options_set_create_missing_column_families(s->opts, !o->read_only);
    rocksdb_options_set_keep_log_file_num(s->opts, 4);
    /* A full Bloom filter lets MultiGet skip SST files for the ids that are not there. */
    rocksdb_block_based_table_options_t *bb = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_filter_policy(bb, rocksdb_filterpolicy_create_bloom_full(10));
    rocksdb_options_set_block_based_table_factory(s->opts, bb);
    rocksdb_block_based_options_destroy(bb);
    s->ropts = rocksdb_readoptions_create();
    s->scan_opts = rocksdb_readoptions_create();
    rocksdb_readoptions_set_fill_cache(s->scan_opts, 0); /* a dump must not evict hot blocks */
    s->wopts = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(s->wopts, 1);

    if ((st = open_rocksdb(s, exists, err)) != FN_OK) goto fail;
    if ((st = check_format(s, err)) != FN_OK) goto fail;
    if (!o->cache_disabled && cache_init(s, o) != FN_OK) {
        st = st_error(s, err, FN_ERR_NOMEM, "open", NULL, NULL, 0, "out of memory");
        goto fail;
    }
    *out = s;
    return FN_OK;
fail:
    fn_store_close(s);
    return st;
}

void fn_store_close(fn_store *s)
{
    if (!s) return;
    cache_free(s);
    for (size_t i = 0; s->cfs && i < s->n_cfs; i++)
        if (s->cfs[i]) rocksdb_column_family_handle_destroy(s->cfs[i]);
    free(s->cfs);
    if (s->db) rocksdb_close(s->db);
    if (s->wopts) rocksdb_writeoptions_destroy(s->wopts);
    if (s->ropts) rocksdb_readoptions_destroy(s->ropts);
    if (s->scan_opts) rocksdb_readoptions_destroy(s->scan_opts);
    if (s->opts) rocksdb_options_destroy(s->opts);
    for (int i = 0; i < N_STRIPES; i++) pthread_mutex_destroy(&s->stripes[i]);
    pthread_rwlock_destroy(&s->writers);
    free(s->path);
    free(s);
}

/* ---- records: put, get, delete ---- */

fn_status fn_store_put(fn_store *s, fn_store_family family, const char *id, size_t id_len,
                       uint64_t version, const Tensorflow__Features *features, const float *vector,
                       size_t n_vector, int *applied, fn_error *err)
{
    fn_status st;
    if (applied) *applied = 0;
    if ((st = check_family(s, "put", family, err)) != FN_OK) return st;
    const char *fam = fn_store_family_name(family);
    if ((st = st_check_writable(s, "put", err)) != FN_OK) return st;
    if ((st = st_check_id(s, "put", fam, id, id_len, err)) != FN_OK) return st;
    fn_buf packed = FN_BUF_INIT;
    if (record_pack(version, features, vector, n_vector, &packed) != FN_OK)
        return st_error(s, err, FN_ERR_NOMEM, "put", fam, id, id_len, "out of memory");

    rocksdb_column_family_handle_t *cf = family_cf(s, family);
    uint64_t h = key_hash(family, id, id_len);
    pthread_mutex_t *mu = stripe_of(s, h);
    pthread_rwlock_rdlock(&s->writers);
    pthread_mutex_lock(mu);
    char *rerr = NULL;
    size_t old_len = 0;
    char *old = rocksdb_get_cf(s->db, s->ropts, cf, id, id_len, &old_len, &rerr);
    if (rerr) {
        st = st_rocksdb_fail(s, err, "put", fam, id, id_len, rerr);
        goto done;
    }
    const int had_record = old != NULL;
    if (old) {
        uint64_t old_version;
        st = stored_version(old, old_len, &old_version);
        rocksdb_free(old);
        if (st != FN_OK) {
            st_error(s, err, st, "put", fam, id, id_len,
                     "the stored value (%zu bytes) is not a funnel.v1.StoredRecord; not "
                     "overwriting a record of unknown version",
                     old_len);
            goto done;
        }
        if (version < old_version) goto done; /* last writer wins; this one is older */
    }
    /* An item's first put numbers it, in the same synced write as the record. */
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_put_cf(wb, cf, id, id_len, packed.data, packed.len);
    if (family == FN_STORE_ITEMS && !had_record &&
        (st = st_number_stage(s, wb, id, id_len, err)) != FN_OK) {
        rocksdb_writebatch_destroy(wb);
        goto done;
    }
    cache_fence(s, h, family, id, id_len, +1);
    rocksdb_write(s->db, s->wopts, wb, &rerr);
    cache_fence(s, h, family, id, id_len, -1);
    rocksdb_writebatch_destroy(wb);
    if (rerr) {
        st = st_rocksdb_fail(s, err, "put", fam, id, id_len, rerr);
        goto done;
    }
    if (applied) *applied = 1;
done:
    pthread_mutex_unlock(mu);
    pthread_rwlock_unlock(&s->writers);
    fn_buf_free(&packed);
    return st;
}

fn_status fn_store_delete(fn_store *s, fn_store_family family, const char *id, size_t id_len,
                          fn_error *err)
{
    fn_status st;
    if ((st = check_family(s, "delete", family, err)) != FN_OK) return st;
    const char *fam = fn_store_family_name(family);
    if ((st = st_check_writable(s, "delete", err)) != FN_OK) return st;
    if ((st = st_check_id(s, "delete", fam, id, id_len, err)) != FN_OK) return st;
    uint64_t h = key_hash(family, id, id_len);
    pthread_mutex_t *mu = stripe_of(s, h);
    pthread_rwlock_rdlock(&s->writers);
    pthread_mutex_lock(mu);
    char *rerr = NULL;
    cache_fence(s, h, family, id, id_len, +1);
    rocksdb_delete_cf(s->db, s->wopts, family_cf(s, family), id, id_len, &rerr);
    cache_fence(s, h, family, id, id_len, -1);
    if (rerr) st = st_rocksdb_fail(s, err, "delete", fam, id, id_len, rerr);
    pthread_mutex_unlock(mu);
    pthread_rwlock_unlock(&s->writers);
    return st;
}

/* Per-call scratch of a multi-get, one allocation: the misses' keys and RocksDB's answers. */
typedef struct miss_scratch {
    size_t *index;
    uint64_t *hash, *gen;
    const char **keys;
    size_t *key_lens;
    const rocksdb_column_family_handle_t **cfs;
    char **values;
    size_t *value_lens;
    char **errs;
    void *block;
} miss_scratch;

static int scratch_alloc(miss_scratch *m, size_t n)
{
    size_t per = sizeof *m->index + sizeof *m->hash + sizeof *m->gen + sizeof *m->keys +
                 sizeof *m->key_lens + sizeof *m->cfs + sizeof *m->values + sizeof *m->value_lens +
                 sizeof *m->errs;
    char *p = calloc(n ? n : 1, per);
    if (!p) return 0;
    m->block = p;
    /* The 8-byte arrays first, so that every array stays aligned whatever the pointer size. */
    m->hash = (uint64_t *)p, p += n * sizeof *m->hash;
    m->gen = (uint64_t *)p, p += n * sizeof *m->gen;
    m->index = (size_t *)p, p += n * sizeof *m->index;
    m->key_lens = (size_t *)p, p += n * sizeof *m->key_lens;
    m->value_lens = (size_t *)p, p += n * sizeof *m->value_lens;
    m->keys = (const char **)(void *)p, p += n * sizeof *m->keys;
    m->cfs = (const rocksdb_column_family_handle_t **)(void *)p, p += n * sizeof *m->cfs;
    m->values = (char **)(void *)p, p += n * sizeof *m->values;
    m->errs = (char **)(void *)p;
    return 1;
}

fn_status fn_store_multi_get(fn_store *s, fn_store_family family, size_t n, const char *const *ids,
                             const size_t *id_lens, fn_store_record **out, fn_error *err)
{
    fn_status st;
    for (size_t i = 0; i < n; i++) out[i] = NULL;
    if ((st = check_family(s, "multi-get", family, err)) != FN_OK) return st;
    const char *fam = fn_store_family_name(family);
    if (n == 0) return FN_OK;
    miss_scratch m;
    if (!scratch_alloc(&m, n))
        return st_error(s, err, FN_ERR_NOMEM, "multi-get", fam, NULL, 0, "out of memory");
    rocksdb_column_family_handle_t *cf = family_cf(s, family);
    size_t n_miss = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = id_lens ? id_lens[i] : (ids[i] ? strlen(ids[i]) : 0);
        if ((st = st_check_id(s, "multi-get", fam, ids[i], len, err)) != FN_OK) goto fail;
        uint64_t h = key_hash(family, ids[i], len), gen = 0;
        if (s->shards && (out[i] = cache_lookup(s, h, family, ids[i], len, &gen))) continue;
        m.index[n_miss] = i;
        m.hash[n_miss] = h;
        m.gen[n_miss] = gen;
        m.keys[n_miss] = ids[i];
        m.key_lens[n_miss] = len;
        m.cfs[n_miss] = cf;
        n_miss++;
    }
    atomic_fetch_add_explicit(&s->hits, n - n_miss, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->misses, n_miss, memory_order_relaxed);
    if (n_miss) {
        rocksdb_multi_get_cf(s->db, s->ropts, m.cfs, n_miss, m.keys, m.key_lens, m.values,
                             m.value_lens, m.errs);
        for (size_t j = 0; j < n_miss; j++) {
            if (st == FN_OK && m.errs[j]) {
                st = st_rocksdb_fail(s, err, "multi-get", fam, m.keys[j], m.key_lens[j], m.errs[j]);
                m.errs[j] = NULL;
            }
            if (st == FN_OK && m.values[j]) {
                fn_store_record *r;
                st = record_decode(m.values[j], m.value_lens[j], &r);
                if (st == FN_ERR_CORRUPT) {
                    st_error(s, err, st, "multi-get", fam, m.keys[j], m.key_lens[j],
                             "the stored value (%zu bytes) is not a funnel.v1.StoredRecord",
                             m.value_lens[j]);
                } else if (st != FN_OK) {
                    st_error(s, err, st, "multi-get", fam, m.keys[j], m.key_lens[j],
                             "out of memory");
                } else {
                    out[m.index[j]] = r;
                    if (s->shards)
                        cache_insert(s, m.hash[j], family, m.keys[j], m.key_lens[j], r, m.gen[j]);
                }
            }
            if (m.errs[j]) rocksdb_free(m.errs[j]);
            if (m.values[j]) rocksdb_free(m.values[j]);
        }
        if (st != FN_OK) goto fail;
    }
    free(m.block);
    return FN_OK;
fail:
    fn_store_records_release(out, n);
    free(m.block);
    return st;
}

fn_status fn_store_get(fn_store *s, fn_store_family family, const char *id, size_t id_len,
                       fn_store_record **out, fn_error *err)
{
    fn_status st;
    *out = NULL;
    if ((st = check_family(s, "get", family, err)) != FN_OK) return st;
    const char *fam = fn_store_family_name(family);
    if ((st = st_check_id(s, "get", fam, id, id_len, err)) != FN_OK) return st;
    const char *ids[1] = {id};
    if ((st = fn_store_multi_get(s, family, 1, ids, &id_len, out, err)) != FN_OK) return st;
    if (!*out) return st_error(s, err, FN_ERR_NOT_FOUND, "get", fam, id, id_len, "no record");
    return FN_OK;
}

/* ---- batches ---- */

typedef struct batch_entry {
    fn_store_family family;
    uint64_t version, hash;
    size_t id_off, id_len, val_off, val_len;
} batch_entry;

struct fn_store_batch {
    fn_store *s;
    batch_entry *e;
    size_t n, cap;
    fn_buf data; /* ids and packed records, back to back */
};

fn_status fn_store_batch_new(fn_store *s, fn_store_batch **out, fn_error *err)
{
    fn_status st;
    *out = NULL;
    if ((st = st_check_writable(s, "batch", err)) != FN_OK) return st;
    fn_store_batch *b = calloc(1, sizeof *b);
    if (!b) return st_error(s, err, FN_ERR_NOMEM, "batch", NULL, NULL, 0, "out of memory");
    b->s = s;
    *out = b;
    return FN_OK;
}

size_t fn_store_batch_count(const fn_store_batch *b)
{
    return b->n;
}

static void batch_reset(fn_store_batch *b)
{
    b->n = 0;
    fn_buf_reset(&b->data);
}

fn_status fn_store_batch_put(fn_store_batch *b, fn_store_family family, const char *id,
                             size_t id_len, uint64_t version, const Tensorflow__Features *features,
                             const float *vector, size_t n_vector, fn_error *err)
{
    fn_store *s = b->s;
    fn_status st;
    if ((st = check_family(s, "batch put", family, err)) != FN_OK) return st;
    const char *fam = fn_store_family_name(family);
    if ((st = st_check_id(s, "batch put", fam, id, id_len, err)) != FN_OK) return st;
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        batch_entry *e = realloc(b->e, cap * sizeof *e);
        if (!e)
            return st_error(s, err, FN_ERR_NOMEM, "batch put", fam, id, id_len, "out of memory");
        b->e = e;
        b->cap = cap;
    }
    batch_entry *e = &b->e[b->n];
    e->family = family;
    e->version = version;
    e->hash = key_hash(family, id, id_len);
    e->id_off = b->data.len;
    e->id_len = id_len;
    fn_buf_append(&b->data, id, id_len);
    e->val_off = b->data.len;
    if (b->data.oom || record_pack(version, features, vector, n_vector, &b->data) != FN_OK) {
        b->data.len = e->id_off;
        b->data.oom = 0;
        return st_error(s, err, FN_ERR_NOMEM, "batch put", fam, id, id_len, "out of memory");
    }
    e->val_len = b->data.len - e->val_off;
    b->n++;
    return FN_OK;
}

/* Index of the entry that last applied to e's key in this batch, in an open-addressing table. */
static size_t *batch_slot(const fn_store_batch *b, size_t *table, size_t mask, const batch_entry *e)
{
    for (size_t k = e->hash & mask;; k = (k + 1) & mask) {
        if (table[k] == 0) return &table[k];
        const batch_entry *o = &b->e[table[k] - 1];
        if (o->hash == e->hash && o->family == e->family && o->id_len == e->id_len &&
            memcmp(b->data.data + o->id_off, b->data.data + e->id_off, e->id_len) == 0)
            return &table[k];
    }
}

fn_status fn_store_batch_commit(fn_store_batch *b, size_t *applied, size_t *ignored, fn_error *err)
{
    fn_store *s = b->s;
    size_t n_applied = 0, n_ignored = 0;
    if (applied) *applied = 0;
    if (ignored) *ignored = 0;
    if (b->n == 0) return FN_OK;
    const char *data = b->data.data;
    fn_status st = FN_OK;
    miss_scratch m;
    size_t mask = 1;
    while (mask < 2 * b->n) mask <<= 1;
    size_t *table = calloc(mask, sizeof *table);
    mask--;
    if (!table || !scratch_alloc(&m, b->n)) {
        free(table);
        batch_reset(b);
        return st_error(s, err, FN_ERR_NOMEM, "batch commit", NULL, NULL, 0, "out of memory");
    }
    /* A batch of a thousand ids spans every stripe anyway: exclude all other writers at once. */
    pthread_rwlock_wrlock(&s->writers);

    for (size_t i = 0; i < b->n; i++) {
        m.keys[i] = data + b->e[i].id_off;
        m.key_lens[i] = b->e[i].id_len;
        m.cfs[i] = family_cf(s, b->e[i].family);
    }
    rocksdb_multi_get_cf(s->db, s->ropts, m.cfs, b->n, m.keys, m.key_lens, m.values, m.value_lens,
                         m.errs);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    for (size_t i = 0; i < b->n && st == FN_OK; i++) {
        const batch_entry *e = &b->e[i];
        const char *fam = fn_store_family_name(e->family);
        if (m.errs[i]) {
            st = st_rocksdb_fail(s, err, "batch commit", fam, m.keys[i], e->id_len, m.errs[i]);
            m.errs[i] = NULL;
            break;
        }
        size_t *slot = batch_slot(b, table, mask, e);
        uint64_t current = 0;
        int have = 0;
        if (*slot) {
            /* An earlier put in this batch won over the stored record already. */
            current = b->e[*slot - 1].version;
            have = 1;
        } else if (m.values[i]) {
            if (stored_version(m.values[i], m.value_lens[i], &current) != FN_OK) {
                st = st_error(s, err, FN_ERR_CORRUPT, "batch commit", fam, m.keys[i], e->id_len,
                              "the stored value (%zu bytes) is not a funnel.v1.StoredRecord; "
                              "not overwriting a record of unknown version",
                              m.value_lens[i]);
                break;
            }
            have = 1;
        }
        if (have && e->version < current) {
            n_ignored++;
            continue;
        }
        rocksdb_writebatch_put_cf(wb, family_cf(s, e->family), m.keys[i], e->id_len,
                                  data + e->val_off, e->val_len);
        /* the first put of an item in the batch numbers it when it has no stored record */
        if (!*slot && !m.values[i] && e->family == FN_STORE_ITEMS &&
            (st = st_number_stage(s, wb, m.keys[i], e->id_len, err)) != FN_OK)
            break;
        *slot = i + 1;
        n_applied++;
    }
    if (st == FN_OK && n_applied) {
        char *rerr = NULL;
        for (int step = +1; step >= -1; step -= 2) {
            for (size_t k = 0; k <= mask; k++)
                if (table[k]) {
                    const batch_entry *e = &b->e[table[k] - 1];
                    cache_fence(s, e->hash, e->family, data + e->id_off, e->id_len, step);
                }
            if (step > 0) rocksdb_write(s->db, s->wopts, wb, &rerr);
        }
        if (rerr) st = st_rocksdb_fail(s, err, "batch commit", NULL, NULL, 0, rerr);
    }
    rocksdb_writebatch_destroy(wb);
    pthread_rwlock_unlock(&s->writers);
    for (size_t i = 0; i < b->n; i++) {
        if (m.values[i]) rocksdb_free(m.values[i]);
        if (m.errs[i]) rocksdb_free(m.errs[i]);
    }
    free(m.block);
    free(table);
    batch_reset(b);
    if (st != FN_OK) return st;
    if (applied) *applied = n_applied;
    if (ignored) *ignored = n_ignored;
    return FN_OK;
}

void fn_store_batch_free(fn_store_batch *b)
{
    if (!b) return;
    free(b->e);
    fn_buf_free(&b->data);
    free(b);
}

/* ---- iteration ---- */

struct fn_store_iter {
    fn_store *s;
    fn_store_family family;
    rocksdb_iterator_t *it;
    int started;
};

fn_status fn_store_iter_open(fn_store *s, fn_store_family family, fn_store_iter **out,
                             fn_error *err)
{
    fn_status st;
    *out = NULL;
    if ((st = check_family(s, "dump", family, err)) != FN_OK) return st;
    fn_store_iter *it = calloc(1, sizeof *it);
    if (!it)
        return st_error(s, err, FN_ERR_NOMEM, "dump", fn_store_family_name(family), NULL, 0,
                        "out of memory");
    it->s = s;
    it->family = family;
    it->it = rocksdb_create_iterator_cf(s->db, s->scan_opts, family_cf(s, family));
    *out = it;
    return FN_OK;
}

fn_status fn_store_iter_next(fn_store_iter *it, const char **id, size_t *id_len,
                             fn_store_record **rec, fn_error *err)
{
    const char *fam = fn_store_family_name(it->family);
    *rec = NULL;
    if (!it->started) {
        rocksdb_iter_seek_to_first(it->it);
        it->started = 1;
    } else {
        rocksdb_iter_next(it->it);
    }
    if (!rocksdb_iter_valid(it->it)) {
        char *rerr = NULL;
        rocksdb_iter_get_error(it->it, &rerr);
        if (rerr) return st_rocksdb_fail(it->s, err, "dump", fam, NULL, 0, rerr);
        return FN_END;
    }
    size_t klen, vlen;
    const char *k = rocksdb_iter_key(it->it, &klen);
    const char *v = rocksdb_iter_value(it->it, &vlen);
    fn_status st = record_decode(v, vlen, rec);
    if (st == FN_ERR_CORRUPT)
        return st_error(it->s, err, st, "dump", fam, k, klen,
                        "the stored value (%zu bytes) is not a funnel.v1.StoredRecord", vlen);
    if (st != FN_OK) return st_error(it->s, err, st, "dump", fam, k, klen, "out of memory");
    *id = k;
    *id_len = klen;
    return FN_OK;
}

void fn_store_iter_close(fn_store_iter *it)
{
    if (!it) return;
    rocksdb_iter_destroy(it->it);
    free(it);
}

/* ---- counters ---- */

static fn_status counter_decode(const fn_store *s, const char *op, const char *key, size_t key_len,
                                const char *v, size_t n, uint64_t *out, fn_error *err)
{
    if (n != 8)
        return st_error(s, err, FN_ERR_CORRUPT, op, "counters", key, key_len,
                        "the stored value has %zu bytes, not 8", n);
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--) x = (x << 8) | (unsigned char)v[i];
    *out = x;
    return FN_OK;
}

fn_status fn_store_counter_add(fn_store *s, const char *key, size_t key_len, uint64_t delta,
                               uint64_t *value, fn_error *err)
{
    fn_status st;
    if ((st = st_check_writable(s, "counter add", err)) != FN_OK) return st;
    if ((st = st_check_id(s, "counter add", "counters", key, key_len, err)) != FN_OK) return st;
    pthread_mutex_t *mu = stripe_of(s, XXH3_64bits_withSeed(key, key_len, COUNTER_SEED));
    rocksdb_column_family_handle_t *cf = s->cfs[CF_COUNTERS];
    pthread_mutex_lock(mu);
    char *rerr = NULL;
    size_t n = 0;
    uint64_t x = 0;
    char *old = rocksdb_get_cf(s->db, s->ropts, cf, key, key_len, &n, &rerr);
    if (rerr) {
        st = st_rocksdb_fail(s, err, "counter add", "counters", key, key_len, rerr);
        goto done;
    }
    if (old) {
        st = counter_decode(s, "counter add", key, key_len, old, n, &x, err);
        rocksdb_free(old);
        if (st != FN_OK) goto done;
    }
    x += delta;
    char enc[8];
    for (int i = 0; i < 8; i++) enc[i] = (char)(x >> (8 * i));
    rocksdb_put_cf(s->db, s->wopts, cf, key, key_len, enc, sizeof enc, &rerr);
    if (rerr) {
        st = st_rocksdb_fail(s, err, "counter add", "counters", key, key_len, rerr);
        goto done;
    }
    if (value) *value = x;
done:
    pthread_mutex_unlock(mu);
    return st;
}

fn_status fn_store_counter_get(fn_store *s, const char *key, size_t key_len, uint64_t *value,
                               fn_error *err)
{
    fn_status st;
    if ((st = st_check_id(s, "counter get", "counters", key, key_len, err)) != FN_OK) return st;
    char *rerr = NULL;
    size_t n = 0;
    char *v = rocksdb_get_cf(s->db, s->ropts, s->cfs[CF_COUNTERS], key, key_len, &n, &rerr);
    if (rerr) return st_rocksdb_fail(s, err, "counter get", "counters", key, key_len, rerr);
    *value = 0;
    if (!v) return FN_OK;
    st = counter_decode(s, "counter get", key, key_len, v, n, value, err);
    rocksdb_free(v);
    return st;
}

/* ---- metadata ---- */

fn_status fn_store_meta_put(fn_store *s, const char *key, const void *value, size_t n,
                            fn_error *err)
{
    fn_status st;
    if ((st = st_check_writable(s, "meta put", err)) != FN_OK) return st;
    if ((st = st_check_id(s, "meta put", "meta", key, key ? strlen(key) : 0, err)) != FN_OK)
        return st;
    char *rerr = NULL;
    rocksdb_put_cf(s->db, s->wopts, s->cfs[CF_META], key, strlen(key), value, n, &rerr);
    if (rerr) return st_rocksdb_fail(s, err, "meta put", "meta", key, strlen(key), rerr);
    return FN_OK;
}

fn_status fn_store_meta_get(fn_store *s, const char *key, fn_buf *out, fn_error *err)
{
    fn_status st;
    if ((st = st_check_id(s, "meta get", "meta", key, key ? strlen(key) : 0, err)) != FN_OK)
        return st;
    char *rerr = NULL;
    size_t n = 0;
    char *v = rocksdb_get_cf(s->db, s->ropts, s->cfs[CF_META], key, strlen(key), &n, &rerr);
    if (rerr) return st_rocksdb_fail(s, err, "meta get", "meta", key, strlen(key), rerr);
    if (!v)
        return st_error(s, err, FN_ERR_NOT_FOUND, "meta get", "meta", key, strlen(key), "no value");
    fn_buf_append(out, v, n);
    rocksdb_free(v);
    if (out->oom)
        return st_error(s, err, FN_ERR_NOMEM, "meta get", "meta", key, strlen(key),
                        "out of memory");
    return FN_OK;
}
