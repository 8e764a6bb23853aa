/*
 * tokenizer_impl.h - the tokenizer's intermediate steps, for tests and
 * debugging: what the normalizer makes of a text, and the words the
 * pre-tokenizer cuts it into. Not for the hot path (they append to an
 * fn_buf, which allocates).
 */
#ifndef FN_TOKENIZER_IMPL_H
#define FN_TOKENIZER_IMPL_H

#include <stddef.h>

#include "common/buf.h"
#include "common/status.h"
#include "llm/tokenizer.h"

/*
 * Appends the normalized text (BertNormalizer with tok's options; special
 * tokens in the text are copied as they are) to out.
 */
fn_status fn_tokenizer_normalize(const fn_tokenizer *tok, const char *text, size_t len, fn_buf *out,
                                 fn_error *err);

/*
 * Appends the words of the pre-tokenizer, after normalization, separated by
 * one space (words never hold a space), to out. Special tokens are words.
 */
fn_status fn_tokenizer_pretokenize(const fn_tokenizer *tok, const char *text, size_t len,
                                   fn_buf *out, fn_error *err);

#endif
