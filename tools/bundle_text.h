/* The text files of a module bundle that depend on the model: ai4-metadata.yml, model/bundle.json, README.md (the
 * model card), pyproject.toml, LICENSE, VERSION. The fixed files (the Python package, the Dockerfile, the tests)
 * are templates compiled in from tools/bundle/. */
#ifndef KELP_TOOLS_BUNDLE_TEXT_H
#define KELP_TOOLS_BUNDLE_TEXT_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "kelp/kelp.h"

typedef struct bundle_info {
    /* from the command line; NULL or 0 for the defaults bundle_info_complete fills in */
    const char *name, *title, *summary, *author, *license, *version, *source_url;
    int max_pixels;
    /* bundle_info_complete */
    char module[64];  /* the DEEPaaS model name: lower case letters, digits and '-' */
    char package[64]; /* the Python package: the module name with '_' */
    char model[128];  /* the model file's "name" */
    char title_text[256], summary_text[512], url_text[512];
    /* the exporter, from the model and its measurements */
    const char *const *classes;
    int class_count, input_h, input_w, input_c, train_batch;
    double infer_mib, train_mib;              /* planned tensor memory */
    double weights_mib, storage_mib;          /* the weights file; the bundle's files (training adds checkpoints) */
    const cJSON *metrics;                     /* `kelp eval --json` output, or NULL */
    const char *metrics_source;               /* the dataset or file it came from */
} bundle_info;

void bundle_info_defaults(bundle_info *info);
/* Checks the given names and derives the others from the checkpoint's model file text. */
kelp_status bundle_info_complete(bundle_info *info, const char *model_json);
/* Writes the model-dependent text files into the bundle directory `root`. */
kelp_status bundle_write_texts(const bundle_info *info, const char *root);

#endif
