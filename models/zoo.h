/* Zoo builders: each writes a model file through the model builder. */
#ifndef KELP_MODELS_ZOO_H
#define KELP_MODELS_ZOO_H

#include "kelp/kelp.h"
#include "kelp/model_builder.h"

/* torchvision ResNet v1.5 (stride in the 3x3 convolution of a bottleneck), torchvision parameter names. */
kelp_status kelp_zoo_resnet(kelp_model_builder *b, int depth, int num_classes);
/* A ResNet for 28-64 pixel inputs: 3x3 stem, three stages of basic blocks at widths 16/32/64. */
kelp_status kelp_zoo_small_resnet(kelp_model_builder *b, int num_classes);

/* torchvision's MobileNetV2 (width 1.0): inverted residuals with relu6, dropout 0.2 before the classifier,
 * torchvision parameter names. The classifier keeps kelp's default linear init, not torchvision's N(0, 0.01). */
kelp_status kelp_zoo_mobilenet_v2(kelp_model_builder *b, int num_classes);

/* Adds "name" as `type` reading `input` with printf-formatted fields. */
kelp_status kelp_zoo_node(kelp_model_builder *b, const char *name, const char *type, const char *input,
                          const char *fields_fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

#endif
