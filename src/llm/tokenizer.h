/*
 * tokenizer.h - the BERT WordPiece tokenizer of the LLM text encoder
 * (all-MiniLM-L6-v2): query and item text in, token ids out.
 *
 * It gives the same ids as Hugging Face `tokenizers` loading the model's
 * tokenizer.json (BertTokenizer, uncased), step by step:
 *   1. the special tokens [PAD] [UNK] [CLS] [SEP] [MASK], written exactly so
 *      in the text, are taken as those tokens (unless split_special_tokens);
 *   2. BertNormalizer on the text between them: clean_text drops NUL, U+FFFD,
 *      control and format characters and turns whitespace into ' ';
 *      handle_chinese_chars puts spaces around CJK ideographs; strip_accents
 *      decomposes (NFD) and drops nonspacing marks; lowercase;
 *   3. BertPreTokenizer: split on whitespace, each punctuation character a
 *      word of its own;
 *   4. WordPiece: greedy longest match from the start of each word, later
 *      pieces with the "##" prefix; a word longer than
 *      max_input_chars_per_word characters, or one that cannot be covered by
 *      vocabulary pieces, becomes [UNK];
 *   5. [CLS] ids [SEP], the ids cut so that the whole fits the maximum length.
 * The character tables come from scripts/gen-unicode-tables.py.
 *
 * Text is UTF-8. Invalid UTF-8 (which Hugging Face's API cannot receive) is
 * read as Python's bytes.decode("utf-8", "replace") reads it: each maximal
 * invalid subsequence becomes U+FFFD, which clean_text then removes. So the
 * ids are those Hugging Face gives for the decoded string.
 *
 * A loaded tokenizer is immutable: any number of threads may encode with it
 * at once. Encoding allocates nothing; its scratch space (a few KiB) is on
 * the stack.
 */
#ifndef FN_TOKENIZER_H
#define FN_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct fn_tokenizer fn_tokenizer;

/* all-MiniLM-L6-v2's tokenizer.json truncates to 128 tokens. */
#define FN_TOKENIZER_MAX_LEN_DEFAULT 128
/* The largest max_input_chars_per_word accepted (the words are kept on the stack). */
#define FN_TOKENIZER_MAX_WORD_CHARS 256

typedef struct fn_tokenizer_options {
    size_t max_len;                  /* ids per encode, [CLS] and [SEP] included; >= 2 */
    size_t max_input_chars_per_word; /* longer words become [UNK]; 1..256 */
    int lowercase;                   /* BertNormalizer.lowercase */
    int strip_accents;               /* 1, 0, or -1: as lowercase (Hugging Face's null) */
    int clean_text;                  /* BertNormalizer.clean_text */
    int handle_chinese_chars;        /* BertNormalizer.handle_chinese_chars */
    int split_special_tokens;        /* 1: "[SEP]" in the text is plain text */
} fn_tokenizer_options;

/*
 * The options of all-MiniLM-L6-v2 (and bert-base-uncased): max_len 128,
 * 100 characters per word, lowercase, accents stripped, clean_text,
 * handle_chinese_chars, special tokens recognised in the text.
 */
fn_tokenizer_options fn_tokenizer_options_default(void);

/*
 * Loads a WordPiece vocabulary (vocab.txt: one token per line, the id is the
 * line number from 0; trailing whitespace is trimmed; a token listed twice
 * keeps its last line, as Hugging Face does). opts NULL means the defaults.
 * The vocabulary must hold [UNK], [CLS] and [SEP]. Errors name the file:
 * FN_ERR_NOT_FOUND / FN_ERR_IO when it cannot be read, FN_ERR_CORRUPT when a
 * line is not valid UTF-8 or holds a NUL, the file is empty or a special
 * token is missing, FN_ERR_INVALID for bad options.
 */
fn_status fn_tokenizer_load(const char *vocab_txt_path, const fn_tokenizer_options *opts,
                            fn_tokenizer **out, fn_error *err);

/* Safe on NULL. */
void fn_tokenizer_free(fn_tokenizer *tok);

/*
 * Encodes len bytes of UTF-8 text into ids: [CLS], the word pieces, [SEP],
 * at most min(max_ids, the max_len option) ids in all (the pieces are cut
 * at the end, as Hugging Face's truncation does). *n_ids gets the count.
 * FN_ERR_INVALID when max_ids < 2 or an argument is NULL (text may be NULL
 * when len is 0). Thread-safe; no allocation.
 */
fn_status fn_tokenizer_encode(const fn_tokenizer *tok, const char *text, size_t len, int32_t *ids,
                              size_t max_ids, size_t *n_ids, fn_error *err);

/* The id of a token (len bytes, exact, "##" included for continuations), or -1. */
int32_t fn_tokenizer_token_to_id(const fn_tokenizer *tok, const char *token, size_t len);

/* The token of an id (NUL-terminated, owned by tok), or NULL when out of range. */
const char *fn_tokenizer_id_to_token(const fn_tokenizer *tok, int32_t id);

/* Number of ids (lines of vocab.txt). */
size_t fn_tokenizer_vocab_size(const fn_tokenizer *tok);

/* The max_len option: the most ids fn_tokenizer_encode returns. */
size_t fn_tokenizer_max_len(const fn_tokenizer *tok);

typedef enum fn_tokenizer_special {
    FN_TOKENIZER_PAD = 0,
    FN_TOKENIZER_UNK,
    FN_TOKENIZER_CLS,
    FN_TOKENIZER_SEP,
    FN_TOKENIZER_MASK,
    FN_TOKENIZER_SPECIAL_COUNT,
} fn_tokenizer_special;

/* The id of [PAD], [UNK], [CLS], [SEP] or [MASK]; -1 when the vocabulary lacks it. */
int32_t fn_tokenizer_special_id(const fn_tokenizer *tok, fn_tokenizer_special which);

#endif
