/*
 * encoder.h - the transformer text encoder: a BERT-style sentence encoder
 * (all-MiniLM-L6-v2 and models of its family) loaded from a Hugging Face
 * model folder and run on the kernel layer, CPU or CUDA.
 *
 * encode: WordPiece tokens -> embeddings + LayerNorm -> N encoder layers
 * (fused QKV projection, fused attention, output projection + residual
 * LayerNorm, GELU feed-forward + residual LayerNorm) -> masked mean pooling
 * -> L2 normalisation, as sentence-transformers computes it. Texts are sorted
 * by length and run in batches padded to their own longest text.
 */
#ifndef FN_ENCODER_H
#define FN_ENCODER_H

#include <stddef.h>

#include "common/status.h"

typedef struct fn_encoder fn_encoder;

typedef struct fn_encoder_options {
    const char *device; /* "cpu" (default) or "cuda" */
    int threads;        /* CPU threads (0: all online CPUs) */
    size_t max_batch;   /* texts per forward pass (0: 32) */
    size_t max_len;     /* tokens per text, [CLS] and [SEP] included (0: the model's) */
    /* CUDA storage type: "bf16" (default), "f16" or "f32"; the CPU computes in f32. */
    const char *precision;
    /* CPU: encode calls that run at once, each in its own workspace over the shared
     * weights (0 or 1: one at a time; at most 64). A server gives one per worker thread,
     * with threads 1, so that queries arriving together are encoded side by side. CUDA: 1. */
    size_t workspaces;
} fn_encoder_options;

/*
 * Loads dir/config.json, dir/model.safetensors and dir/vocab.txt (and, when
 * present, sentence_bert_config.json for the sequence length and
 * modules.json for pooling and normalisation). A missing or damaged file is
 * an error naming the file and what is wrong.
 */
fn_status fn_encoder_load(const char *dir, const fn_encoder_options *opts, fn_encoder **out,
                          fn_error *err);
void fn_encoder_free(fn_encoder *e);

/* Embedding dimension (384 for all-MiniLM-L6-v2). */
size_t fn_encoder_dim(const fn_encoder *e);
/* Tokens per text after truncation. */
size_t fn_encoder_max_len(const fn_encoder *e);
/* "cpu-avx2 (2 threads)", ... */
const char *fn_encoder_device_name(const fn_encoder *e);

/*
 * Encodes n texts (lens[i] bytes each, UTF-8; lens may be NULL for
 * NUL-terminated texts) into out, n rows of fn_encoder_dim floats, in input
 * order. Safe to call from several threads at once: up to `workspaces` calls
 * run side by side, more wait for a workspace to come free.
 */
fn_status fn_encoder_encode(fn_encoder *e, const char *const *texts, const size_t *lens, size_t n,
                            float *out, fn_error *err);

#endif
