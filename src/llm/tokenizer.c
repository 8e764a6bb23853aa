/*
 * tokenizer.c - the BERT WordPiece tokenizer: UTF-8 text to the token ids the
 * LLM encoder (all-MiniLM-L6-v2) reads, the same ids as Hugging Face
 * `tokenizers` gives (see tokenizer.h for the steps).
 *
 * The text streams through the steps one code point at a time, with no
 * allocation: decode UTF-8 -> clean_text -> CJK spacing -> NFD, canonical
 * reordering and mark removal -> lowercase -> pre-tokenizer -> a word buffer
 * on the stack -> WordPiece against an open-addressing hash table of the
 * vocabulary. "##" continuations are looked up by hashing the prefix and the
 * piece in sequence, so no string is built. Encoding stops as soon as the
 * output is full, which truncation would cut anyway.
 *
 * Glossary: cp a code point; info the flags and combining class of a code
 * point (fn_uc_lookup); run the combining characters held back for canonical
 * reordering; word the characters of the current pre-token; piece a
 * vocabulary entry matched inside a word.
 */
#include "llm/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/file.h"
#include "llm/tokenizer_impl.h"
#include "llm/unicode_tables.h"

#define VOCAB_MAX_BYTES ((size_t)256 << 20)
#define WORD_MAX_BYTES  (FN_TOKENIZER_MAX_WORD_CHARS * 4)
#define RUN_MAX         (FN_TOKENIZER_MAX_WORD_CHARS + 1)
#define SPACE_INFO      ((uint32_t)fn_uc_ascii[' '])

static const char *const special_names[FN_TOKENIZER_SPECIAL_COUNT] = {"[PAD]", "[UNK]", "[CLS]",
                                                                      "[SEP]", "[MASK]"};

struct fn_tokenizer {
    fn_tokenizer_options opts; /* strip_accents resolved to 0 or 1 */
    char *pool;                /* the vocabulary file, each token NUL-terminated in place */
    uint32_t *tok_off;         /* id -> offset of its token in pool */
    uint32_t *tok_len;         /* id -> length in bytes */
    size_t n_tokens;
    int32_t *slots;      /* hash table: id, or -1 when empty */
    uint32_t *slot_hash; /* high bits of the hash of the slot's token */
    size_t mask;         /* slots - 1 (a power of two minus one) */
    size_t max_word;     /* longest token without "##", in bytes */
    size_t max_cont;     /* longest "##" token, "##" not counted */
    int32_t special[FN_TOKENIZER_SPECIAL_COUNT];
    /* The special tokens recognised in text, longest first. */
    int n_match;
    int32_t match_id[FN_TOKENIZER_SPECIAL_COUNT];
    const char *match_str[FN_TOKENIZER_SPECIAL_COUNT];
    size_t match_len[FN_TOKENIZER_SPECIAL_COUNT];
};

/* ---- hashing: FNV-1a, fed in pieces ---- */

#define FNV_INIT 1469598103934665603ULL

static uint64_t fnv_add(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* Finishes the hash so that the low bits (the slot) depend on every byte. */
static uint64_t fnv_final(uint64_t h)
{
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 32;
    return h;
}

/* The id of prefix (0 or 2 bytes: "##") followed by s, or -1. */
static int32_t vocab_find(const fn_tokenizer *t, int cont, const char *s, size_t n)
{
    uint64_t h = FNV_INIT;
    size_t total = n;
    if (cont) {
        h = fnv_add(h, "##", 2);
        total += 2;
    }
    h = fnv_final(fnv_add(h, s, n));
    uint32_t tag = (uint32_t)(h >> 32);
    for (size_t i = (size_t)h & t->mask;; i = (i + 1) & t->mask) {
        int32_t id = t->slots[i];
        if (id < 0) return -1;
        if (t->slot_hash[i] != tag || t->tok_len[id] != total) continue;
        const char *p = t->pool + t->tok_off[id];
        if (cont) {
            if (p[0] != '#' || p[1] != '#') continue;
            p += 2;
        }
        if (memcmp(p, s, n) == 0) return id;
    }
}

/* ---- UTF-8 ---- */

static size_t utf8_put(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/*
 * Decodes one code point at s[*i], advancing *i. An invalid sequence gives
 * U+FFFD and advances past its maximal valid prefix (at least one byte), as
 * Python's "replace" error handler and the Unicode standard's "maximal
 * subpart" practice do.
 */
static uint32_t utf8_next(const unsigned char *s, size_t n, size_t *i)
{
    size_t k = *i;
    unsigned b = s[k];
    if (b < 0x80) {
        *i = k + 1;
        return b;
    }
    size_t need;
    uint32_t cp;
    unsigned lo = 0x80, hi = 0xBF; /* range of the second byte */
    if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
        cp = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        cp = b & 0x0F;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        cp = b & 0x07;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
    } else {
        *i = k + 1;
        return 0xFFFD;
    }
    k++;
    for (size_t j = 0; j < need; j++, k++) {
        unsigned c = k < n ? s[k] : 0x100;
        unsigned l = j == 0 ? lo : 0x80, h = j == 0 ? hi : 0xBF;
        if (c < l || c > h) {
            *i = k;
            return 0xFFFD;
        }
        cp = (cp << 6) | (c & 0x3F);
    }
    *i = k;
    return cp;
}

/* ---- the streaming encoder ---- */

typedef enum enc_mode { MODE_IDS, MODE_NORMALIZE, MODE_WORDS } enc_mode;

typedef struct enc_state {
    const fn_tokenizer *tok;
    enc_mode mode;
    /* MODE_IDS: output */
    int32_t *ids;
    size_t n_ids, cap;
    int full;
    /* MODE_NORMALIZE, MODE_WORDS: output, and where this text's words start in it */
    fn_buf *out;
    size_t out_start;
    /* the current word */
    size_t w_chars, w_bytes;
    char word[WORD_MAX_BYTES];
    /* combining characters awaiting canonical reordering */
    size_t run_n;
    uint32_t run_cp[RUN_MAX];
    uint32_t run_info[RUN_MAX];
} enc_state;

static void emit(enc_state *st, int32_t id)
{
    if (st->n_ids < st->cap) st->ids[st->n_ids++] = id;
    if (st->n_ids >= st->cap) st->full = 1;
}

/* WordPiece on the finished word: the pieces, or [UNK] for the whole word. */
static void wordpiece(enc_state *st)
{
    const fn_tokenizer *t = st->tok;
    const char *w = st->word;
    size_t n = st->w_bytes;
    int32_t pieces[FN_TOKENIZER_MAX_WORD_CHARS];
    size_t n_pieces = 0;
    size_t start = 0;
    while (start < n) {
        size_t longest = start ? t->max_cont : t->max_word;
        size_t end = n - start > longest ? start + longest : n;
        while (end < n && ((unsigned char)w[end] & 0xC0) == 0x80) end--; /* whole characters */
        int32_t id = -1;
        while (end > start) {
            id = vocab_find(t, start > 0, w + start, end - start);
            if (id >= 0) break;
            do end--;
            while (end > start && ((unsigned char)w[end] & 0xC0) == 0x80);
        }
        if (id < 0) {
            emit(st, t->special[FN_TOKENIZER_UNK]);
            return;
        }
        pieces[n_pieces++] = id;
        start = end;
    }
    for (size_t i = 0; i < n_pieces; i++) emit(st, pieces[i]);
}

static void end_word(enc_state *st)
{
    if (st->w_chars == 0) return;
    if (st->mode == MODE_IDS) {
        if (st->w_chars > st->tok->opts.max_input_chars_per_word)
            emit(st, st->tok->special[FN_TOKENIZER_UNK]);
        else
            wordpiece(st);
    }
    st->w_chars = 0;
    st->w_bytes = 0;
}

static void word_add(enc_state *st, uint32_t cp)
{
    if (st->mode == MODE_WORDS) {
        if (st->w_chars == 0 && st->out->len > st->out_start) fn_buf_putc(st->out, ' ');
        char u[4];
        fn_buf_append(st->out, u, utf8_put(u, cp));
    } else if (st->w_chars < st->tok->opts.max_input_chars_per_word) {
        st->w_bytes += utf8_put(st->word + st->w_bytes, cp);
    }
    st->w_chars++;
}

/* Step 3: BertPreTokenizer. */
static void feed_pre(enc_state *st, uint32_t cp, uint32_t info)
{
    if (st->mode == MODE_NORMALIZE) {
        char u[4];
        fn_buf_append(st->out, u, utf8_put(u, cp));
        return;
    }
    if (info & FN_UC_PRE_SPACE) {
        end_word(st);
    } else if (info & FN_UC_PRE_PUNCT) {
        end_word(st);
        word_add(st, cp);
        end_word(st);
    } else {
        word_add(st, cp);
    }
}

/* Step 2d: lowercase. */
static void feed_lower(enc_state *st, uint32_t cp, uint32_t info)
{
    if (!st->tok->opts.lowercase || !(info & FN_UC_HAS_LOWER)) {
        feed_pre(st, cp, info);
    } else if (cp < 128) {
        feed_pre(st, cp + 32, fn_uc_ascii[cp + 32]);
    } else {
        const fn_uc_map *m = fn_uc_find(fn_uc_lower, fn_uc_lower_count, cp);
        for (unsigned i = 0; m && i < m->len; i++) {
            uint32_t x = fn_uc_lower_pool[m->off + i];
            feed_pre(st, x, fn_uc_lookup(x));
        }
    }
}

/* Passes the held-back combining characters on, stably sorted by combining class. */
static void flush_run(enc_state *st)
{
    size_t n = st->run_n;
    for (size_t i = 1; i < n; i++) {
        uint32_t cp = st->run_cp[i], info = st->run_info[i];
        size_t j = i;
        for (; j > 0 && (st->run_info[j - 1] >> 8) > (info >> 8); j--) {
            st->run_cp[j] = st->run_cp[j - 1];
            st->run_info[j] = st->run_info[j - 1];
        }
        st->run_cp[j] = cp;
        st->run_info[j] = info;
    }
    st->run_n = 0;
    for (size_t i = 0; i < n; i++) feed_lower(st, st->run_cp[i], st->run_info[i]);
}

/*
 * One character of the decomposition: canonical reordering, then nonspacing
 * marks dropped. Reordering only ever moves characters of nonzero combining
 * class within a run of them, so only the kept ones need holding back; a
 * dropped mark of class 0 still ends the run. A run longer than RUN_MAX is
 * passed on in pieces: its word is then longer than any word WordPiece
 * accepts, and becomes [UNK] whatever the order.
 */
static void strip_one(enc_state *st, uint32_t cp, uint32_t info)
{
    if ((info >> 8) == 0) {
        if (st->run_n) flush_run(st);
        if (!(info & FN_UC_MN)) feed_lower(st, cp, info);
        return;
    }
    if (info & FN_UC_MN) return;
    if (st->run_n == RUN_MAX) flush_run(st);
    st->run_cp[st->run_n] = cp;
    st->run_info[st->run_n] = info;
    st->run_n++;
}

/* Step 2c: strip_accents (NFD, then nonspacing marks removed). */
static void feed_strip(enc_state *st, uint32_t cp, uint32_t info)
{
    if (!st->tok->opts.strip_accents) {
        feed_lower(st, cp, info);
    } else if (cp >= 0xAC00 && cp <= 0xD7A3) { /* Hangul syllable: L V [T] jamo */
        uint32_t s = cp - 0xAC00;
        uint32_t jamo[3] = {0x1100 + s / 588, 0x1161 + (s % 588) / 28, 0x11A7 + s % 28};
        for (int i = 0; i < (s % 28 ? 3 : 2); i++) strip_one(st, jamo[i], fn_uc_lookup(jamo[i]));
    } else if (info & FN_UC_HAS_NFD) {
        const fn_uc_map *m = fn_uc_find(fn_uc_nfd, fn_uc_nfd_count, cp);
        for (unsigned i = 0; m && i < m->len; i++) {
            uint32_t x = fn_uc_nfd_pool[m->off + i];
            strip_one(st, x, fn_uc_lookup(x));
        }
    } else {
        strip_one(st, cp, info);
    }
}

/* Steps 2a and 2b: clean_text, handle_chinese_chars. */
static void feed_char(enc_state *st, uint32_t cp)
{
    const fn_tokenizer_options *o = &st->tok->opts;
    uint32_t info = fn_uc_lookup(cp);
    if (o->clean_text) {
        if (info & FN_UC_CLEAN_DROP) return; /* includes NUL and U+FFFD */
        if (info & FN_UC_CLEAN_SPACE) {
            cp = ' ';
            info = SPACE_INFO;
        }
    }
    if (o->handle_chinese_chars && (info & FN_UC_CJK)) {
        feed_strip(st, ' ', SPACE_INFO);
        feed_strip(st, cp, info);
        feed_strip(st, ' ', SPACE_INFO);
        return;
    }
    feed_strip(st, cp, info);
}

/* The end of a stretch of text between special tokens. */
static void end_segment(enc_state *st)
{
    if (st->run_n) flush_run(st);
    end_word(st);
}

static void special_token(enc_state *st, int k)
{
    const fn_tokenizer *t = st->tok;
    end_segment(st);
    if (st->mode == MODE_IDS) {
        emit(st, t->match_id[k]);
    } else if (st->mode == MODE_NORMALIZE) {
        fn_buf_append(st->out, t->match_str[k], t->match_len[k]);
    } else {
        if (st->out->len > st->out_start) fn_buf_putc(st->out, ' ');
        fn_buf_append(st->out, t->match_str[k], t->match_len[k]);
    }
}

/* Step 1 and the loop over the text. */
static void run_text(enc_state *st, const char *text, size_t len)
{
    const fn_tokenizer *t = st->tok;
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len && !st->full) {
        if (s[i] == '[' && t->n_match > 0) {
            int k = 0;
            for (; k < t->n_match; k++) /* longest first: leftmost-longest, as Hugging Face */
                if (len - i >= t->match_len[k] &&
                    memcmp(text + i, t->match_str[k], t->match_len[k]) == 0)
                    break;
            if (k < t->n_match) {
                special_token(st, k);
                i += t->match_len[k];
                continue;
            }
        }
        feed_char(st, utf8_next(s, len, &i));
    }
    if (!st->full) end_segment(st);
}

static void state_init(enc_state *st, const fn_tokenizer *tok, enc_mode mode)
{
    st->tok = tok;
    st->mode = mode;
    st->ids = NULL;
    st->n_ids = st->cap = 0;
    st->full = 0;
    st->out = NULL;
    st->out_start = 0;
    st->w_chars = st->w_bytes = 0;
    st->run_n = 0;
}

fn_status fn_tokenizer_encode(const fn_tokenizer *tok, const char *text, size_t len, int32_t *ids,
                              size_t max_ids, size_t *n_ids, fn_error *err)
{
    if (n_ids) *n_ids = 0;
    if (!tok || !ids || !n_ids || (!text && len > 0))
        return fn_error_set(err, FN_ERR_INVALID, "tokenizer encode: NULL argument");
    if (max_ids < 2)
        return fn_error_set(err, FN_ERR_INVALID,
                            "tokenizer encode: room for %zu ids; [CLS] and [SEP] need 2", max_ids);
    size_t limit = max_ids < tok->opts.max_len ? max_ids : tok->opts.max_len;
    enc_state st;
    state_init(&st, tok, MODE_IDS);
    st.ids = ids;
    st.cap = limit - 1; /* the last place is [SEP]'s */
    ids[st.n_ids++] = tok->special[FN_TOKENIZER_CLS];
    st.full = st.n_ids >= st.cap;
    run_text(&st, text, len);
    ids[st.n_ids++] = tok->special[FN_TOKENIZER_SEP];
    *n_ids = st.n_ids;
    return FN_OK;
}

static fn_status run_to_buf(const fn_tokenizer *tok, enc_mode mode, const char *text, size_t len,
                            fn_buf *out, fn_error *err)
{
    if (!tok || !out || (!text && len > 0))
        return fn_error_set(err, FN_ERR_INVALID, "tokenizer: NULL argument");
    enc_state *st = malloc(sizeof *st); /* the debugging paths may allocate */
    if (!st) return fn_error_set(err, FN_ERR_NOMEM, "tokenizer: out of memory");
    state_init(st, tok, mode);
    st->out = out;
    st->out_start = out->len;
    run_text(st, text, len);
    free(st);
    if (out->oom) return fn_error_set(err, FN_ERR_NOMEM, "tokenizer: out of memory");
    return FN_OK;
}

fn_status fn_tokenizer_normalize(const fn_tokenizer *tok, const char *text, size_t len, fn_buf *out,
                                 fn_error *err)
{
    return run_to_buf(tok, MODE_NORMALIZE, text, len, out, err);
}

fn_status fn_tokenizer_pretokenize(const fn_tokenizer *tok, const char *text, size_t len,
                                   fn_buf *out, fn_error *err)
{
    return run_to_buf(tok, MODE_WORDS, text, len, out, err);
}

/* ---- loading ---- */

fn_tokenizer_options fn_tokenizer_options_default(void)
{
    fn_tokenizer_options o;
    memset(&o, 0, sizeof o);
    o.max_len = FN_TOKENIZER_MAX_LEN_DEFAULT;
    o.max_input_chars_per_word = 100;
    o.lowercase = 1;
    o.strip_accents = -1;
    o.clean_text = 1;
    o.handle_chinese_chars = 1;
    o.split_special_tokens = 0;
    return o;
}

/* Length of s[0..n) without trailing whitespace (Rust's trim_end, as Hugging Face reads vocab.txt).
 */
static size_t trim_end(const char *s, size_t n)
{
    while (n > 0) {
        size_t k = n - 1;
        while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
        size_t j = k;
        uint32_t cp = utf8_next((const unsigned char *)s, n, &j);
        if (j != n || !(fn_uc_lookup(cp) & FN_UC_PRE_SPACE)) break;
        n = k;
    }
    return n;
}

static fn_status build_table(fn_tokenizer *t, const char *path, fn_error *err)
{
    size_t cap = 16;
    while (cap < t->n_tokens * 2) cap *= 2;
    t->slots = malloc(cap * sizeof *t->slots);
    t->slot_hash = malloc(cap * sizeof *t->slot_hash);
    if (!t->slots || !t->slot_hash)
        return fn_error_set(err, FN_ERR_NOMEM, "loading vocabulary %s: out of memory", path);
    memset(t->slots, 0xFF, cap * sizeof *t->slots);
    t->mask = cap - 1;
    for (size_t id = 0; id < t->n_tokens; id++) {
        const char *s = t->pool + t->tok_off[id];
        size_t n = t->tok_len[id];
        uint64_t h = fnv_final(fnv_add(FNV_INIT, s, n));
        uint32_t tag = (uint32_t)(h >> 32);
        size_t i = (size_t)h & t->mask;
        for (;; i = (i + 1) & t->mask) {
            int32_t other = t->slots[i];
            if (other < 0) break;
            if (t->slot_hash[i] == tag && t->tok_len[other] == n &&
                memcmp(t->pool + t->tok_off[other], s, n) == 0)
                break; /* listed twice: the later line wins */
        }
        t->slots[i] = (int32_t)id;
        t->slot_hash[i] = tag;
        if (n >= 2 && s[0] == '#' && s[1] == '#') {
            if (n - 2 > t->max_cont) t->max_cont = n - 2;
        }
        if (n > t->max_word) t->max_word = n;
    }
    return FN_OK;
}

static fn_status check_options(const fn_tokenizer_options *o, fn_error *err)
{
    if (o->max_len < 2)
        return fn_error_set(err, FN_ERR_INVALID,
                            "tokenizer options: max_len %zu is below 2 ([CLS] and [SEP])",
                            o->max_len);
    if (o->max_input_chars_per_word < 1 ||
        o->max_input_chars_per_word > FN_TOKENIZER_MAX_WORD_CHARS)
        return fn_error_set(err, FN_ERR_INVALID,
                            "tokenizer options: max_input_chars_per_word %zu is not in 1..%d",
                            o->max_input_chars_per_word, FN_TOKENIZER_MAX_WORD_CHARS);
    if (o->strip_accents < -1 || o->strip_accents > 1)
        return fn_error_set(err, FN_ERR_INVALID,
                            "tokenizer options: strip_accents %d is not -1, 0 or 1",
                            o->strip_accents);
    return FN_OK;
}

fn_status fn_tokenizer_load(const char *vocab_txt_path, const fn_tokenizer_options *opts,
                            fn_tokenizer **out, fn_error *err)
{
    if (out) *out = NULL;
    if (!vocab_txt_path || !out)
        return fn_error_set(err, FN_ERR_INVALID, "loading vocabulary: NULL argument");
    const char *path = vocab_txt_path;
    fn_tokenizer_options o = opts ? *opts : fn_tokenizer_options_default();
    fn_status st = check_options(&o, err);
    if (st != FN_OK) return st;
    if (o.strip_accents < 0) o.strip_accents = o.lowercase != 0;

    fn_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return fn_error_set(err, FN_ERR_NOMEM, "loading vocabulary %s: out of memory", path);
    t->opts = o;
    fn_buf buf = FN_BUF_INIT;
    st = fn_file_read_all(path, VOCAB_MAX_BYTES, &buf, err);
    if (st != FN_OK) {
        fn_error_prefix(err, "loading vocabulary");
        goto fail;
    }
    if (fn_buf_reserve(&buf, 1) != FN_OK) {
        st = fn_error_set(err, FN_ERR_NOMEM, "loading vocabulary %s: out of memory", path);
        goto fail;
    }
    buf.data[buf.len] = '\0';
    t->pool = buf.data; /* owned by t from here */
    buf.data = NULL;

    size_t n_lines = 0;
    for (size_t i = 0; i < buf.len; i++) n_lines += t->pool[i] == '\n';
    if (buf.len > 0 && t->pool[buf.len - 1] != '\n') n_lines++;
    if (n_lines == 0) {
        st = fn_error_set(err, FN_ERR_CORRUPT, "vocabulary %s is empty", path);
        goto fail;
    }
    if (n_lines > INT32_MAX) {
        st = fn_error_set(err, FN_ERR_CORRUPT, "vocabulary %s has more than %d lines", path,
                          INT32_MAX);
        goto fail;
    }
    t->tok_off = malloc(n_lines * sizeof *t->tok_off);
    t->tok_len = malloc(n_lines * sizeof *t->tok_len);
    if (!t->tok_off || !t->tok_len) {
        st = fn_error_set(err, FN_ERR_NOMEM, "loading vocabulary %s: out of memory", path);
        goto fail;
    }
    size_t pos = 0;
    for (size_t line = 0; line < n_lines; line++) {
        char *s = t->pool + pos;
        char *nl = memchr(s, '\n', buf.len - pos);
        size_t n = nl ? (size_t)(nl - s) : buf.len - pos;
        pos += n + 1;
        if (memchr(s, '\0', n) || !fn_utf8_valid(s, n)) {
            st = fn_error_set(err, FN_ERR_CORRUPT,
                              "vocabulary %s line %zu: not a token (invalid UTF-8 or a NUL byte)",
                              path, line + 1);
            goto fail;
        }
        n = trim_end(s, n);
        s[n] = '\0';
        t->tok_off[line] = (uint32_t)(s - t->pool);
        t->tok_len[line] = (uint32_t)n;
    }
    t->n_tokens = n_lines;
    st = build_table(t, path, err);
    if (st != FN_OK) goto fail;

    for (int k = 0; k < FN_TOKENIZER_SPECIAL_COUNT; k++)
        t->special[k] = vocab_find(t, 0, special_names[k], strlen(special_names[k]));
    const fn_tokenizer_special required[] = {FN_TOKENIZER_UNK, FN_TOKENIZER_CLS, FN_TOKENIZER_SEP};
    for (size_t k = 0; k < sizeof required / sizeof required[0]; k++) {
        if (t->special[required[k]] < 0) {
            st = fn_error_set(err, FN_ERR_CORRUPT, "vocabulary %s has no %s token", path,
                              special_names[required[k]]);
            goto fail;
        }
    }
    if (!o.split_special_tokens) {
        for (int k = 0; k < FN_TOKENIZER_SPECIAL_COUNT; k++) {
            if (t->special[k] < 0) continue;
            int j = t->n_match++;
            size_t n = strlen(special_names[k]);
            for (; j > 0 && t->match_len[j - 1] < n; j--) { /* keep longest first */
                t->match_id[j] = t->match_id[j - 1];
                t->match_str[j] = t->match_str[j - 1];
                t->match_len[j] = t->match_len[j - 1];
            }
            t->match_id[j] = t->special[k];
            t->match_str[j] = special_names[k];
            t->match_len[j] = n;
        }
    }
    *out = t;
    return FN_OK;

fail:
    fn_buf_free(&buf);
    fn_tokenizer_free(t);
    return st;
}

void fn_tokenizer_free(fn_tokenizer *tok)
{
    if (!tok) return;
    free(tok->pool);
    free(tok->tok_off);
    free(tok->tok_len);
    free(tok->slots);
    free(tok->slot_hash);
    free(tok);
}

/* ---- lookups ---- */

int32_t fn_tokenizer_token_to_id(const fn_tokenizer *tok, const char *token, size_t len)
{
    if (!tok || (!token && len > 0)) return -1;
    return vocab_find(tok, 0, token ? token : "", len);
}

const char *fn_tokenizer_id_to_token(const fn_tokenizer *tok, int32_t id)
{
    if (!tok || id < 0 || (size_t)id >= tok->n_tokens) return NULL;
    return tok->pool + tok->tok_off[id];
}

size_t fn_tokenizer_vocab_size(const fn_tokenizer *tok)
{
    return tok ? tok->n_tokens : 0;
}

size_t fn_tokenizer_max_len(const fn_tokenizer *tok)
{
    return tok ? tok->opts.max_len : 0;
}

int32_t fn_tokenizer_special_id(const fn_tokenizer *tok, fn_tokenizer_special which)
{
    if (!tok || (int)which < 0 || which >= FN_TOKENIZER_SPECIAL_COUNT) return -1;
    return tok->special[which];
}
