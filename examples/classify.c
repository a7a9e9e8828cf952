/* The smallest program on libkelp's inference API: label images with a module bundle or a checkpoint.
 *   cc classify.c -I kelp/include -L kelp/build -lkelp -o classify
 *   ./classify BUNDLE_DIR IMAGE... */
#include <stdio.h>

#include "kelp/predictor.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s BUNDLE_DIR|CHECKPOINT IMAGE...\n", argv[0]);
        return 2;
    }
    kelp_predictor *model;
    if (kelp_predictor_open(argv[1], NULL, &model) != KELP_OK) {
        fprintf(stderr, "%s\n", kelp_last_error());
        return 1;
    }
    int failures = 0;
    for (int i = 2; i < argc; i++) {
        kelp_prediction *r;
        if (kelp_predictor_predict_file(model, argv[i], 3, &r) != KELP_OK) {
            fprintf(stderr, "%s\n", kelp_last_error());
            failures++;
            continue;
        }
        char *json = kelp_prediction_json(r);
        printf("%s %s\n", argv[i], json ? json : "{}");
        kelp_free(json);
        kelp_prediction_free(r);
    }
    kelp_predictor_close(model);
    return failures ? 1 : 0;
}
