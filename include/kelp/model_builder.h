/* kelp: building a model file from C.
 *
 * A model is a JSON document (docs/model-format.md); this builder writes one node at a time and hands back the
 * text, which kelp_graph_build() then reads. The zoo (models/) is written with it, so `kelp model show NAME`
 * prints exactly what a user can copy and edit.
 *
 *   kelp_model_builder *b; kelp_builder_create("tiny", "classify", &b);
 *   kelp_builder_input(b, "image", 28, 28, 1, NULL, NULL);
 *   kelp_builder_node(b, "conv1", "conv2d", NULL, "{\"out_channels\": 8, \"kernel_size\": 3}");
 *   ...; kelp_builder_loss(b, "{\"type\": \"softmax_cross_entropy\"}");
 *   char *json; kelp_builder_finish(b, &json); ... kelp_free(json); kelp_builder_destroy(b);
 */
#ifndef KELP_MODEL_BUILDER_H
#define KELP_MODEL_BUILDER_H

#include "kelp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kelp_model_builder kelp_model_builder;

kelp_status kelp_builder_create(const char *name, const char *task, kelp_model_builder **out);
void kelp_builder_destroy(kelp_model_builder *b);

/* An image input (H, W, C) with per-channel normalization (NULL: none). */
kelp_status kelp_builder_input(kelp_model_builder *b, const char *name, int height, int width, int channels,
                               const double *mean, const double *std);
/* A node. inputs: NULL-terminated names, or NULL for "the value defined just before". fields: a JSON object text
 * with the layer's fields (not name, type or inputs), or NULL. */
kelp_status kelp_builder_node(kelp_model_builder *b, const char *name, const char *type, const char *const *inputs,
                              const char *fields);
kelp_status kelp_builder_output(kelp_model_builder *b, const char *name);
kelp_status kelp_builder_loss(kelp_model_builder *b, const char *fields);
/* The model file text, pretty-printed; free with kelp_free. */
kelp_status kelp_builder_finish(kelp_model_builder *b, char **json_out);

#ifdef __cplusplus
}
#endif
#endif
