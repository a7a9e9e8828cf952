/* kelp: one binary, subcommands. */
#include <stdio.h>
#include <string.h>

#include "tools/cli.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"data", cmd_data, "import image folders and IDX files; describe and check datasets"},
    {"model", cmd_model, "list the zoo, print a model file, summarize a model, export it as ONNX"},
    {"train", cmd_train, "train a classifier on an HDF5 dataset"},
    {"eval", cmd_eval, "accuracy, per-class precision/recall, confusion matrix on a dataset split"},
    {"predict", cmd_predict, "label PNG/JPEG images with a trained checkpoint or a module bundle"},
    {"export", cmd_export, "write a module bundle for the AI4OS / iMagine platform (DEEPaaS, ai4-metadata, ONNX)"},
    {"report", cmd_report, "an HTML report of a training run: curves, confusion matrix, mistakes"},
    {"bench", cmd_bench, "training/inference throughput, latency, memory, per-layer profile on random data"},
    {"info", cmd_info, "version, devices, libraries, layer types"},
};

static void help(void)
{
    puts("kelp " KELP_VERSION_STRING " - CNN training and inference engine\n\nUsage: kelp COMMAND [ARGS]\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        printf("  %-8s %s\n", commands[i].name, commands[i].summary);
    puts("\nRun 'kelp COMMAND --help' for a command's options.");
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        help();
        return argc < 2 ? CLI_EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        puts("kelp " KELP_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "kelp: unknown command '%s'\n", argv[1]);
    help();
    return CLI_EXIT_USAGE;
}
