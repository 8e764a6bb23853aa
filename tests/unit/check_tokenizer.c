/*
 * check_tokenizer.c - the WordPiece tokenizer: vocabulary loading and its
 * errors, each step (normalization, pre-tokenization, WordPiece,
 * truncation) on a small hand-made vocabulary, concurrent use, and exact
 * parity with Hugging Face tokenizers on tests/fixtures/tokenizer_parity.jsonl
 * with the real all-MiniLM-L6-v2 vocabulary (skipped when
 * scripts/fetch-model has not been run).
 */
#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "llm/tokenizer.h"
#include "llm/tokenizer_impl.h"
#include "test_util.h"

/* ---- a small vocabulary ---- */

static const char small_vocab[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n" /* 0..4 */
                                  "un\n##aff\n##able\nplay\n##ing\n"     /* 5..9 */
                                  "hello\nworld\n,\n!\na\n"              /* 10..14 */
                                  "##a\naa\n##aa\ncafe\n中\n"            /* 15..19 */
                                  "x\n##y\n##yz\nxy\n'\n";               /* 20..24 */
enum { PAD = 0, UNK, CLS, SEP, MASK, UN, AFF, ABLE, PLAY, ING, HELLO, WORLD, COMMA, BANG, A };
enum { CONT_A = 15, AA, CONT_AA, CAFE, ZHONG, X, CONT_Y, CONT_YZ, XY, APOS };

static char *tmp;

static void setup(void)
{
    tmp = fn_test_tmpdir();
}

static void teardown(void)
{
    fn_test_rmtree(tmp);
    free(tmp);
    tmp = NULL;
}

static char *write_vocab(const char *name, const char *text, size_t n)
{
    char *p = fn_test_path(tmp, name);
    fn_test_write_file(p, text, n);
    return p;
}

static fn_tokenizer *load_small(const fn_tokenizer_options *o)
{
    char *p = write_vocab("vocab.txt", small_vocab, strlen(small_vocab));
    fn_error err = {0};
    fn_tokenizer *t = NULL;
    ck_assert_msg(fn_tokenizer_load(p, o, &t, &err) == FN_OK, "%s", err.msg);
    free(p);
    return t;
}

/* Encodes s and compares with the ids that follow, terminated by -1. */
static void check_ids_n(const fn_tokenizer *t, const char *s, size_t len, size_t max_ids, ...)
{
    int32_t got[600];
    size_t n = 0;
    fn_error err = {0};
    ck_assert_msg(fn_tokenizer_encode(t, s, len, got, max_ids, &n, &err) == FN_OK, "%s", err.msg);
    va_list ap;
    va_start(ap, max_ids);
    size_t i = 0;
    for (int want; (want = va_arg(ap, int)) != -1; i++) {
        ck_assert_msg(i < n, "'%s': only %zu ids, expected more", s, n);
        ck_assert_msg(got[i] == want, "'%s': id #%zu is %d (%s), expected %d", s, i, got[i],
                      fn_tokenizer_id_to_token(t, got[i]), want);
    }
    va_end(ap);
    ck_assert_msg(i == n, "'%s': %zu ids, expected %zu", s, n, i);
}

#define check_ids(t, s, ...) check_ids_n(t, s, strlen(s), 512, __VA_ARGS__, -1)

static void check_norm(const fn_tokenizer *t, const char *s, size_t len, const char *want)
{
    fn_buf b = FN_BUF_INIT;
    fn_error err = {0};
    ck_assert_int_eq(fn_tokenizer_normalize(t, s, len, &b, &err), FN_OK);
    fn_buf_putc(&b, '\0');
    ck_assert_msg(strcmp(b.data, want) == 0, "normalize '%s': got '%s', expected '%s'", s, b.data,
                  want);
    fn_buf_free(&b);
}

static void check_words(const fn_tokenizer *t, const char *s, const char *want)
{
    fn_buf b = FN_BUF_INIT;
    fn_error err = {0};
    ck_assert_int_eq(fn_tokenizer_pretokenize(t, s, strlen(s), &b, &err), FN_OK);
    fn_buf_putc(&b, '\0');
    ck_assert_msg(strcmp(b.data, want) == 0, "pretokenize '%s': got '%s', expected '%s'", s, b.data,
                  want);
    fn_buf_free(&b);
}

static void load_fails(const char *path, const fn_tokenizer_options *o, fn_status code,
                       const char *fragment)
{
    fn_error err = {0};
    fn_tokenizer *t = (fn_tokenizer *)1;
    fn_status st = fn_tokenizer_load(path, o, &t, &err);
    ck_assert_msg(st == code, "load %s: status %d, expected %d (%s)", path, st, code, err.msg);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(err.msg, fragment), "message '%s' lacks '%s'", err.msg, fragment);
}

/* ---- vocabulary files ---- */

START_TEST(missing_and_malformed_vocab_name_the_file)
{
    char *missing = fn_test_path(tmp, "nope.txt");
    load_fails(missing, NULL, FN_ERR_NOT_FOUND, missing);
    load_fails(tmp, NULL, FN_ERR_IO, tmp); /* a folder */

    char *p = write_vocab("empty.txt", "", 0);
    load_fails(p, NULL, FN_ERR_CORRUPT, "empty.txt is empty");
    free(p);
    const char bad_utf8[] = "[UNK]\n[CLS]\nab\xff\n[SEP]\n";
    p = write_vocab("bad.txt", bad_utf8, sizeof bad_utf8 - 1);
    load_fails(p, NULL, FN_ERR_CORRUPT, "bad.txt line 3");
    free(p);
    const char nul[] = "[UNK]\n[CLS]\n[SEP]\na\0b\n";
    p = write_vocab("nul.txt", nul, sizeof nul - 1);
    load_fails(p, NULL, FN_ERR_CORRUPT, "nul.txt line 4");
    free(p);
    p = write_vocab("nounk.txt", "[CLS]\n[SEP]\nhello\n", 18);
    load_fails(p, NULL, FN_ERR_CORRUPT, "nounk.txt has no [UNK] token");
    free(p);
    p = write_vocab("nosep.txt", "[UNK]\n[CLS]\nhello\n", 18);
    load_fails(p, NULL, FN_ERR_CORRUPT, "nosep.txt has no [SEP] token");
    free(p);
    free(missing);
}
END_TEST

START_TEST(bad_options)
{
    char *p = write_vocab("vocab.txt", small_vocab, strlen(small_vocab));
    fn_tokenizer_options o = fn_tokenizer_options_default();
    o.max_len = 1;
    load_fails(p, &o, FN_ERR_INVALID, "max_len 1");
    o = fn_tokenizer_options_default();
    o.max_input_chars_per_word = 0;
    load_fails(p, &o, FN_ERR_INVALID, "max_input_chars_per_word 0");
    o.max_input_chars_per_word = FN_TOKENIZER_MAX_WORD_CHARS + 1;
    load_fails(p, &o, FN_ERR_INVALID, "max_input_chars_per_word 257");
    o = fn_tokenizer_options_default();
    o.strip_accents = 2;
    load_fails(p, &o, FN_ERR_INVALID, "strip_accents 2");
    free(p);
}
END_TEST

START_TEST(lookups_and_line_rules)
{
    /* CRLF and trailing spaces trimmed, a token listed twice keeps its last id,
     * no newline after the last line, no [PAD] or [MASK]. */
    const char v[] = "[UNK]\r\n[CLS]  \n[SEP]\t\ndup\nlast\ndup\n\nend";
    char *p = write_vocab("v.txt", v, sizeof v - 1);
    fn_error err = {0};
    fn_tokenizer *t;
    ck_assert_msg(fn_tokenizer_load(p, NULL, &t, &err) == FN_OK, "%s", err.msg);
    ck_assert_uint_eq(fn_tokenizer_vocab_size(t), 8);
    ck_assert_int_eq(fn_tokenizer_special_id(t, FN_TOKENIZER_UNK), 0);
    ck_assert_int_eq(fn_tokenizer_special_id(t, FN_TOKENIZER_CLS), 1);
    ck_assert_int_eq(fn_tokenizer_special_id(t, FN_TOKENIZER_SEP), 2);
    ck_assert_int_eq(fn_tokenizer_special_id(t, FN_TOKENIZER_PAD), -1);
    ck_assert_int_eq(fn_tokenizer_special_id(t, FN_TOKENIZER_MASK), -1);
    ck_assert_int_eq(fn_tokenizer_token_to_id(t, "dup", 3), 5);
    ck_assert_int_eq(fn_tokenizer_token_to_id(t, "end", 3), 7);
    ck_assert_int_eq(fn_tokenizer_token_to_id(t, "en", 2), -1);
    ck_assert_str_eq(fn_tokenizer_id_to_token(t, 1), "[CLS]");
    ck_assert_str_eq(fn_tokenizer_id_to_token(t, 3), "dup");
    ck_assert_str_eq(fn_tokenizer_id_to_token(t, 6), "");
    ck_assert_ptr_null(fn_tokenizer_id_to_token(t, 8));
    ck_assert_ptr_null(fn_tokenizer_id_to_token(t, -1));
    ck_assert_uint_eq(fn_tokenizer_max_len(t), 128);
    check_ids(t, "dup end", 1, 5, 7, 2);
    fn_tokenizer_free(t);
    fn_tokenizer_free(NULL);
    free(p);
}
END_TEST

/* ---- normalization ---- */

START_TEST(normalizes_accents_case_and_cjk)
{
    fn_tokenizer *t = load_small(NULL);
    check_norm(t, "", 0, "");
    check_norm(t, "Café NAÏVE Ñandú Ångström", strlen("Café NAÏVE Ñandú Ångström"),
               "cafe naive nandu angstrom");
    check_norm(t, "Straße", strlen("Straße"), "straße"); /* ß has no decomposition */
    check_norm(t, "İstanbul", strlen("İstanbul"), "istanbul");
    check_norm(t, "ΣΊΣΥΦΟΣ", strlen("ΣΊΣΥΦΟΣ"), "σισυφοσ"); /* no final-sigma rule */
    check_norm(t, "ab中文cd", strlen("ab中文cd"), "ab 中  文 cd");
    check_norm(t, "が", strlen("が"), "か");                   /* kana voicing mark stripped */
    check_norm(t, "한", strlen("한"), "\u1112\u1161\u11ab");   /* Hangul to jamo */
    check_norm(t, "ｆｕｌｌ", strlen("ｆｕｌｌ"), "ｆｕｌｌ"); /* NFD, not NFKD */
    /* Kept combining characters are put in canonical order before marks go. */
    check_norm(t, "a\U0001D16D\u0301\U0001D165", strlen("a\U0001D16D\u0301\U0001D165"),
               "a\U0001D165\U0001D16D");
    fn_tokenizer_free(t);

    fn_tokenizer_options o = fn_tokenizer_options_default();
    o.strip_accents = 0;
    t = load_small(&o);
    check_norm(t, "Café İ", strlen("Café İ"), "café i\u0307"); /* İ lowercases to two */
    fn_tokenizer_free(t);
    o = fn_tokenizer_options_default();
    o.lowercase = 0; /* strip_accents -1 follows lowercase */
    t = load_small(&o);
    check_norm(t, "Café", strlen("Café"), "Café");
    fn_tokenizer_free(t);
    o = fn_tokenizer_options_default();
    o.handle_chinese_chars = 0;
    t = load_small(&o);
    check_norm(t, "ab中文cd", strlen("ab中文cd"), "ab中文cd");
    fn_tokenizer_free(t);
}
END_TEST

START_TEST(cleans_controls_and_whitespace)
{
    fn_tokenizer *t = load_small(NULL);
    const char s[] = "a\x01"
                     "b\tc\u200b"
                     "d\ufffd"
                     "e\0f\r\ng\u00a0h\u3000i\x7f";
    check_norm(t, s, sizeof s - 1, "ab cdef  g h i");
    check_norm(t, "\xe2\x80\xa8x\xc2\x85y", 7, " xy"); /* U+2028 a space, U+0085 a control */
    /* Invalid UTF-8 becomes U+FFFD, which clean_text drops. */
    check_norm(t,
               "a\xff"
               "b\xc3",
               4, "ab");
    fn_tokenizer_free(t);

    fn_tokenizer_options o = fn_tokenizer_options_default();
    o.clean_text = 0;
    t = load_small(&o);
    check_norm(t,
               "a\xff"
               "b\xe2\x82"
               "c\xed\xa0\x80",
               9,
               "a\ufffd"
               "b\ufffd"
               "c\ufffd\ufffd\ufffd"); /* maximal subparts */
    check_norm(t,
               "a\x01"
               "b",
               3,
               "a\x01"
               "b");
    fn_tokenizer_free(t);
}
END_TEST

/* ---- pre-tokenization ---- */

START_TEST(splits_on_whitespace_and_punctuation)
{
    fn_tokenizer *t = load_small(NULL);
    check_words(t, "", "");
    check_words(t, "   \t\n ", "");
    check_words(t, "Hello, world!!", "hello , world ! !");
    check_words(t, "  leading   and\ttrailing  ", "leading and trailing");
    check_words(t, "don't a--b $100 ¿Qué?", "don ' t a - - b $ 100 ¿ que ?");
    check_words(t, "x+y=z^2 `q` ~",
                "x + y = z ^ 2 ` q ` ~"); /* ASCII symbols count as punctuation */
    check_words(t, "a«b»c—d…e", "a « b » c — d … e");
    check_words(t, "emoji😀inside ©", "emoji😀inside ©"); /* symbols are not punctuation */
    check_words(t, "x[SEP]y[MASK]", "x [SEP] y [MASK]");
    check_words(t, "[sep] [ SEP]", "[ sep ] [ sep ]");
    fn_tokenizer_free(t);

    fn_tokenizer_options o = fn_tokenizer_options_default();
    o.split_special_tokens = 1;
    t = load_small(&o);
    check_words(t, "x[SEP]y", "x [ sep ] y");
    check_ids(t, "[CLS]", CLS, 1, 1, 1, SEP); /* "[", "cls", "]" are all unknown here */
    fn_tokenizer_free(t);
}
END_TEST

/* ---- WordPiece ---- */

START_TEST(greedy_longest_match)
{
    fn_tokenizer *t = load_small(NULL);
    check_ids(t, "", CLS, SEP);
    check_ids(t, "unaffable", CLS, UN, AFF, ABLE, SEP);
    check_ids(t, "Playing, hello world!", CLS, PLAY, ING, COMMA, HELLO, WORLD, BANG, SEP);
    check_ids(t, "aaa", CLS, AA, CONT_A, SEP); /* longest first piece, then ## */
    check_ids(t, "aaaaa", CLS, AA, CONT_AA, CONT_A, SEP);
    /* No backtracking: "xy" is taken first and "##z" does not exist, so "xyz" is
     * [UNK] although x ##yz would cover it (as Hugging Face does). */
    check_ids(t, "xyz xy xyy", CLS, UNK, XY, XY, CONT_Y, SEP);
    check_ids(t, "xyq", CLS, UNK, SEP); /* one piece missing: the whole word */
    check_ids(t, "hello qqq world", CLS, HELLO, UNK, WORLD, SEP);
    check_ids(t, "Café 中中", CLS, CAFE, ZHONG, ZHONG, SEP);
    check_ids(t, "don't", CLS, UNK, APOS, UNK, SEP);
    check_ids(t, "hello [MASK] [PAD][UNK]", CLS, HELLO, MASK, PAD, UNK, SEP);
    fn_tokenizer_free(t);
}
END_TEST

START_TEST(overlong_words_are_unk)
{
    fn_tokenizer *t = load_small(NULL);
    char w[300];
    memset(w, 'a', sizeof w);
    /* 100 characters: aa + 49 ##aa; 101: [UNK] */
    int32_t ids[128];
    size_t n;
    fn_error err = {0};
    ck_assert_int_eq(fn_tokenizer_encode(t, w, 100, ids, 128, &n, &err), FN_OK);
    ck_assert_uint_eq(n, 52);
    ck_assert_int_eq(ids[1], AA);
    ck_assert_int_eq(ids[50], CONT_AA);
    check_ids_n(t, w, 101, 128, CLS, UNK, SEP, -1);
    check_ids_n(t, w, 300, 128, CLS, UNK, SEP, -1);
    /* Characters count after normalization: 100 'a' and 200 dropped controls fit. */
    char acc[1024];
    size_t k = 0;
    for (int i = 0; i < 100; i++) acc[k++] = 'a';
    for (int i = 0; i < 200; i++) acc[k++] = '\x01';
    ck_assert_int_eq(fn_tokenizer_encode(t, acc, k, ids, 128, &n, &err), FN_OK);
    ck_assert_uint_eq(n, 52);
    fn_tokenizer_free(t);

    fn_tokenizer_options o = fn_tokenizer_options_default();
    o.max_input_chars_per_word = 4;
    t = load_small(&o);
    check_ids(t, "aaaa aaaaa", CLS, AA, CONT_AA, UNK, SEP);
    fn_tokenizer_free(t);
}
END_TEST

/* ---- truncation ---- */

START_TEST(truncates_to_the_maximum_length)
{
    fn_tokenizer *t = load_small(NULL);
    const char *s = "hello world unaffable";
    check_ids_n(t, s, strlen(s), 2, CLS, SEP, -1);
    check_ids_n(t, s, strlen(s), 3, CLS, HELLO, SEP, -1);
    check_ids_n(t, s, strlen(s), 4, CLS, HELLO, WORLD, SEP, -1);
    check_ids_n(t, s, strlen(s), 5, CLS, HELLO, WORLD, UN, SEP, -1); /* cut inside a word */
    check_ids_n(t, s, strlen(s), 7, CLS, HELLO, WORLD, UN, AFF, ABLE, SEP, -1);
    check_ids_n(t, s, strlen(s), 100, CLS, HELLO, WORLD, UN, AFF, ABLE, SEP, -1);
    check_ids_n(t, NULL, 0, 2, CLS, SEP, -1);

    int32_t ids[8];
    size_t n = 99;
    fn_error err = {0};
    ck_assert_int_eq(fn_tokenizer_encode(t, s, strlen(s), ids, 1, &n, &err), FN_ERR_INVALID);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "room for 1 ids"));
    ck_assert_int_eq(fn_tokenizer_encode(t, NULL, 3, ids, 8, &n, &err), FN_ERR_INVALID);
    ck_assert_int_eq(fn_tokenizer_encode(NULL, s, 3, ids, 8, &n, &err), FN_ERR_INVALID);
    fn_tokenizer_free(t);

    /* The max_len option caps what a larger buffer would take. */
    fn_tokenizer_options o = fn_tokenizer_options_default();
    o.max_len = 4;
    t = load_small(&o);
    check_ids_n(t, s, strlen(s), 100, CLS, HELLO, WORLD, SEP, -1);
    ck_assert_uint_eq(fn_tokenizer_max_len(t), 4);
    fn_tokenizer_free(t);
}
END_TEST

/* ---- threads ---- */

static const char *thread_texts[] = {"unaffable playing", "Hello, world!", "aaaaaaa xyz",
                                     "Café 中 [MASK]",    "don't stop",    ""};
#define N_THREAD_TEXTS (sizeof thread_texts / sizeof thread_texts[0])

typedef struct thread_arg {
    const fn_tokenizer *t;
    int32_t want[N_THREAD_TEXTS][32];
    size_t want_n[N_THREAD_TEXTS];
    int mismatches;
} thread_arg;

static void *encode_many(void *p)
{
    thread_arg *a = p;
    for (int round = 0; round < 2000; round++) {
        size_t k = (size_t)round % N_THREAD_TEXTS;
        int32_t ids[32];
        size_t n;
        fn_error err;
        if (fn_tokenizer_encode(a->t, thread_texts[k], strlen(thread_texts[k]), ids, 32, &n,
                                &err) != FN_OK ||
            n != a->want_n[k] || memcmp(ids, a->want[k], n * sizeof ids[0]) != 0)
            __atomic_add_fetch(&a->mismatches, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

START_TEST(concurrent_encodes_agree)
{
    thread_arg a = {.t = load_small(NULL)};
    fn_error err = {0};
    for (size_t k = 0; k < N_THREAD_TEXTS; k++)
        ck_assert_int_eq(fn_tokenizer_encode(a.t, thread_texts[k], strlen(thread_texts[k]),
                                             a.want[k], 32, &a.want_n[k], &err),
                         FN_OK);
    pthread_t th[4];
    for (int i = 0; i < 4; i++) ck_assert_int_eq(pthread_create(&th[i], NULL, encode_many, &a), 0);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    ck_assert_int_eq(a.mismatches, 0);
    fn_tokenizer_free((fn_tokenizer *)a.t);
}
END_TEST

/* ---- parity with Hugging Face on the real vocabulary ---- */

START_TEST(real_vocabulary_basics)
{
    char *vocab = fn_test_model("vocab.txt");
    if (!vocab) return;
    fn_error err = {0};
    fn_tokenizer *t;
    ck_assert_msg(fn_tokenizer_load(vocab, NULL, &t, &err) == FN_OK, "%s", err.msg);
    ck_assert_uint_eq(fn_tokenizer_vocab_size(t), 30522);
    ck_assert_int_eq(fn_tokenizer_special_id(t, FN_TOKENIZER_PAD), 0);
    ck_assert_int_eq(fn_tokenizer_special_id(t, FN_TOKENIZER_UNK), 100);
    ck_assert_int_eq(fn_tokenizer_special_id(t, FN_TOKENIZER_CLS), 101);
    ck_assert_int_eq(fn_tokenizer_special_id(t, FN_TOKENIZER_SEP), 102);
    ck_assert_int_eq(fn_tokenizer_special_id(t, FN_TOKENIZER_MASK), 103);
    check_ids(t, "Hello, world!", 101, 7592, 1010, 2088, 999, 102);
    ck_assert_int_eq(fn_tokenizer_token_to_id(t, "##ing", 5), 2075);
    fn_tokenizer_free(t);
    free(vocab);
}
END_TEST

static void hex_decode(const char *hex, fn_buf *out)
{
    size_t n = strlen(hex);
    ck_assert_uint_eq(n % 2, 0);
    for (size_t i = 0; i < n; i += 2) {
        unsigned v;
        ck_assert_int_eq(sscanf(hex + i, "%2x", &v), 1);
        fn_buf_putc(out, (char)v);
    }
}

START_TEST(parity_with_hugging_face)
{
    char *vocab = fn_test_model("vocab.txt");
    if (!vocab) return;
    fn_error err = {0};
    fn_tokenizer *t;
    ck_assert_msg(fn_tokenizer_load(vocab, NULL, &t, &err) == FN_OK, "%s", err.msg);
    fn_buf file = FN_BUF_INIT;
    fn_test_read_file(FUNNEL_SOURCE_DIR "/tests/fixtures/tokenizer_parity.jsonl", &file);
    size_t checked = 0, line_no = 0;
    const char *p = file.data, *end = file.data + file.len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        line_no++;
        json_error_t jerr;
        json_t *o = json_loadb(p, n, JSON_ALLOW_NUL, &jerr);
        ck_assert_msg(o != NULL, "fixture line %zu: %s", line_no, jerr.text);
        p += n + 1;
        json_t *ids = json_object_get(o, "ids");
        if (!ids) { /* the meta line */
            json_decref(o);
            continue;
        }
        fn_buf text = FN_BUF_INIT;
        json_t *s = json_object_get(o, "text");
        if (s)
            fn_buf_append(&text, json_string_value(s), json_string_length(s));
        else
            hex_decode(json_string_value(json_object_get(o, "hex")), &text);
        int32_t got[128];
        size_t n_got;
        ck_assert_int_eq(fn_tokenizer_encode(t, text.data, text.len, got, 128, &n_got, &err),
                         FN_OK);
        size_t n_want = json_array_size(ids);
        int same = n_got == n_want;
        for (size_t i = 0; same && i < n_want; i++)
            same = got[i] == json_integer_value(json_array_get(ids, i));
        if (!same) {
            fn_buf msg = FN_BUF_INIT;
            fn_buf_json_string(&msg, text.data, text.len);
            fn_buf_puts(&msg, "\n  expected");
            for (size_t i = 0; i < n_want; i++)
                fn_buf_printf(&msg, " %lld", (long long)json_integer_value(json_array_get(ids, i)));
            fn_buf_puts(&msg, "\n  got     ");
            for (size_t i = 0; i < n_got; i++) fn_buf_printf(&msg, " %d", got[i]);
            ck_abort_msg("fixture line %zu: %s", line_no, msg.data);
        }
        checked++;
        fn_buf_free(&text);
        json_decref(o);
    }
    ck_assert_uint_ge(checked, 1000);
    fprintf(stderr, "check_tokenizer: %zu fixture texts give Hugging Face's ids\n", checked);
    fn_buf_free(&file);
    fn_tokenizer_free(t);
    free(vocab);
}
END_TEST

Suite *tokenizer_suite(void)
{
    Suite *s = suite_create("tokenizer");
    TCase *t = tcase_create("vocabulary");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, missing_and_malformed_vocab_name_the_file);
    tcase_add_test(t, bad_options);
    tcase_add_test(t, lookups_and_line_rules);
    suite_add_tcase(s, t);
    t = tcase_create("normalization");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, normalizes_accents_case_and_cjk);
    tcase_add_test(t, cleans_controls_and_whitespace);
    suite_add_tcase(s, t);
    t = tcase_create("pre-tokenization");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, splits_on_whitespace_and_punctuation);
    suite_add_tcase(s, t);
    t = tcase_create("wordpiece");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, greedy_longest_match);
    tcase_add_test(t, overlong_words_are_unk);
    tcase_add_test(t, truncates_to_the_maximum_length);
    tcase_add_test(t, concurrent_encodes_agree);
    suite_add_tcase(s, t);
    t = tcase_create("hugging face parity");
    tcase_add_test(t, real_vocabulary_basics);
    tcase_add_test(t, parity_with_hugging_face);
    suite_add_tcase(s, t);
    return s;
}
