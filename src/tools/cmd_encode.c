/*
 * cmd_encode.c - `funnel encode`: texts on standard input, one per line, to
 * embeddings with the transformer encoder, as JSON lines or an .fvecs file.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/file.h"
#include "common/progress.h"
#include "llm/encoder.h"

static const char usage_text[] =
    "usage: funnel encode --model DIR [--device cpu|cuda] [--precision bf16|f16|f32]\n"
    "                     [--batch N] [--threads N] [--max-len N] [--fvecs OUT]\n"
    "\n"
    "Reads texts from standard input, one per line (UTF-8; a trailing CR is dropped),\n"
    "and writes one embedding per line as JSON, {\"embedding\": [...]}, in input order,\n"
    "or all of them to an .fvecs file (int32 dimension, then the floats, per vector).\n"
    "\n"
    "options:\n"
    "  --model DIR     Hugging Face model folder (config.json, model.safetensors,\n"
    "                  vocab.txt), e.g. models/all-MiniLM-L6-v2 from scripts/fetch-model\n"
    "  --device D      cpu (default) or cuda\n"
    "  --precision P   CUDA storage type: bf16 (default), f16 or f32 (the CPU uses f32)\n"
    "  --batch N       texts per forward pass (default 32)\n"
    "  --threads N     CPU threads (default: all)\n"
    "  --max-len N     tokens per text, [CLS] and [SEP] included (default: the model's)\n"
    "  --fvecs OUT     write an .fvecs file instead of JSON lines\n";

enum {
    OPT_MODEL = 1,
    OPT_DEVICE,
    OPT_PRECISION,
    OPT_BATCH,
    OPT_THREADS,
    OPT_MAXLEN,
    OPT_FVECS,
    OPT_HELP
};

static const struct option long_opts[] = {
    {"model", required_argument, NULL, OPT_MODEL},
    {"device", required_argument, NULL, OPT_DEVICE},
    {"precision", required_argument, NULL, OPT_PRECISION},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"max-len", required_argument, NULL, OPT_MAXLEN},
    {"fvecs", required_argument, NULL, OPT_FVECS},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* Texts read so far, kept until a chunk is encoded. */
typedef struct chunk {
    char **texts;
    size_t *lens;
    size_t n, cap;
} chunk;

static void chunk_clear(chunk *c)
{
    for (size_t i = 0; i < c->n; i++) free(c->texts[i]);
    c->n = 0;
}

static fn_status emit(const float *emb, size_t n, size_t dim, int as_fvecs, fn_atomic_file *f,
                      fn_buf *out, fn_error *err)
{
    for (size_t i = 0; i < n; i++) {
        const float *v = emb + i * dim;
        if (as_fvecs) {
            int32_t d = (int32_t)dim;
            fn_status s = fn_atomic_file_write(f, &d, sizeof d, err);
            if (s == FN_OK) s = fn_atomic_file_write(f, v, dim * sizeof *v, err);
            if (s != FN_OK) return s;
            continue;
        }
        fn_buf_puts(out, "{\"embedding\": [");
        for (size_t k = 0; k < dim; k++) {
            if (k) fn_buf_puts(out, ", ");
            fn_buf_float(out, v[k]);
        }
        fn_buf_puts(out, "]}\n");
    }
    if (!as_fvecs) {
        fn_status s = fn_cli_write_stdout(out, err);
        fn_buf_reset(out);
        return s;
    }
    return FN_OK;
}

int fn_cmd_encode(int argc, char **argv)
{
    const char *model = NULL, *fvecs = NULL;
    fn_encoder_options o = {0};
    uint64_t v;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (c) {
        case OPT_MODEL:
            model = optarg;
            break;
        case OPT_DEVICE:
            o.device = optarg;
            break;
        case OPT_PRECISION:
            o.precision = optarg;
            break;
        case OPT_BATCH:
            if (!fn_cli_u64("encode", "--batch", optarg, &v) || v == 0) return FN_EXIT_USAGE;
            o.max_batch = (size_t)v;
            break;
        case OPT_THREADS:
            if (!fn_cli_u64("encode", "--threads", optarg, &v)) return FN_EXIT_USAGE;
            o.threads = (int)v;
            break;
        case OPT_MAXLEN:
            if (!fn_cli_u64("encode", "--max-len", optarg, &v)) return FN_EXIT_USAGE;
            o.max_len = (size_t)v;
            break;
        case OPT_FVECS:
            fvecs = optarg;
            break;
        case 'h':
        case OPT_HELP:
            fputs(usage_text, stdout);
            return FN_EXIT_OK;
        default:
            return fn_cli_usage_error("encode", "unknown option");
        }
    }
    if (optind < argc)
        return fn_cli_usage_error("encode", "unexpected argument '%s'", argv[optind]);
    if (!model) return fn_cli_usage_error("encode", "--model is required");

    fn_error err = {0};
    fn_encoder *enc;
    if (fn_encoder_load(model, &o, &enc, &err) != FN_OK) return fn_cli_fail("encode", &err);
    size_t dim = fn_encoder_dim(enc);
    size_t per_chunk = 256; /* lines encoded together: several batches, bounded memory */
    chunk ch = {calloc(per_chunk, sizeof(char *)), calloc(per_chunk, sizeof(size_t)), 0, per_chunk};
    float *emb = malloc(per_chunk * dim * sizeof *emb);
    fn_atomic_file *f = NULL;
    fn_buf out = FN_BUF_INIT;
    int rc = FN_EXIT_OK;
    if (!ch.texts || !ch.lens || !emb) {
        fn_error_set(&err, FN_ERR_NOMEM, "out of memory");
        rc = FN_EXIT_FAIL;
    }
    if (rc == FN_EXIT_OK && fvecs && fn_atomic_file_open(fvecs, &f, &err) != FN_OK)
        rc = FN_EXIT_FAIL;
    fn_progress *bar = fn_progress_new("texts", 0);
    char *line = NULL;
    size_t cap = 0, total = 0;
    ssize_t n;
    while (rc == FN_EXIT_OK) {
        n = getline(&line, &cap, stdin);
        if (n >= 0) {
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
            ch.texts[ch.n] = malloc((size_t)n + 1);
            if (!ch.texts[ch.n]) {
                fn_error_set(&err, FN_ERR_NOMEM, "out of memory");
                rc = FN_EXIT_FAIL;
                break;
            }
            memcpy(ch.texts[ch.n], line, (size_t)n);
            ch.texts[ch.n][n] = '\0';
            ch.lens[ch.n++] = (size_t)n;
        }
        if (ch.n == ch.cap || (n < 0 && ch.n > 0)) {
            if (fn_encoder_encode(enc, (const char *const *)ch.texts, ch.lens, ch.n, emb, &err) !=
                    FN_OK ||
                emit(emb, ch.n, dim, fvecs != NULL, f, &out, &err) != FN_OK) {
                fn_error_prefix(&err, "line %zu", total + 1);
                rc = FN_EXIT_FAIL;
                break;
            }
            total += ch.n;
            fn_progress_update(bar, total, NULL);
            chunk_clear(&ch);
        }
        if (n < 0) break;
    }
    fn_progress_finish(bar);
    if (rc == FN_EXIT_OK && ferror(stdin)) {
        fn_error_set(&err, FN_ERR_IO, "reading standard input failed");
        rc = FN_EXIT_FAIL;
    }
    if (f) {
        if (rc == FN_EXIT_OK) {
            if (fn_atomic_file_commit(f, &err) != FN_OK) rc = FN_EXIT_FAIL;
        } else {
            fn_atomic_file_abort(f);
        }
    }
    if (rc == FN_EXIT_OK && fvecs)
        fprintf(stderr, "funnel encode: wrote %zu vectors of %zu to %s\n", total, dim, fvecs);
    free(line);
    chunk_clear(&ch);
    free(ch.texts), free(ch.lens), free(emb);
    fn_buf_free(&out);
    fn_encoder_free(enc);
    return rc == FN_EXIT_OK ? rc : fn_cli_fail("encode", &err);
}
