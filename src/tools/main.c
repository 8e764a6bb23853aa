/*
 * main.c - the `funnel` command: offline tools around the ranking service
 * (data conversion, feature columns, the feature store, demo data). Each
 * subcommand lives in its own cmd_*.c file.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "kernels/backend.h"

static const fn_command commands[] = {
    {"tfrecord", "read, write and check TFRecord files of tf.Example", fn_cmd_tfrecord},
    {"features", "turn tf.Examples into libffm lines with a feature-column spec", fn_cmd_features},
    {"store", "load, read and dump the RocksDB feature store", fn_cmd_store},
    {"demo", "prepare the MovieLens demo data set", fn_cmd_demo},
    {"encode", "embed texts with the transformer encoder", fn_cmd_encode},
    {"train", "train a CTR model (FM, FFM, DeepFM)", fn_cmd_train},
    {"eval", "evaluate a CTR model: AUC, log loss, predictions", fn_cmd_eval},
    {"index", "build and measure ANN indexes (FAISS): recall@k, queries/s", fn_cmd_index},
    {"cooc", "build and query the item co-occurrence recall table", fn_cmd_cooc},
    {"recall", "evaluate the recall channels and their merge: recall@K", fn_cmd_recall},
    {"rerank", "train and evaluate the listwise reranker: NDCG, MAP", fn_cmd_rerank},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: funnel <command> [options]\n\n"
                 "funnel's offline tools. Commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nRun 'funnel <command> --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
    fn_kernels_init(argv);
    if (argc < 2) {
        usage(stderr);
        return FN_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return FN_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("funnel %s\n", FUNNEL_VERSION);
        return FN_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "funnel: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return FN_EXIT_USAGE;
}
