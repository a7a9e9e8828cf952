/* MobileNetV2: torchvision's mobilenet_v2 (width 1.0) with its parameter names, so torchvision state_dicts saved as
 * safetensors load directly. */
#include <stdio.h>

#include "models/zoo.h"

/* torchvision's Conv2dNormActivation: "<prefix>.0" conv (no bias), "<prefix>.1" batch norm, "<prefix>.2" relu6.
 * `out` receives the relu6 node's name once the nodes exist, so it may be the buffer `input` points into. */
static kelp_status conv_bn_relu6(kelp_model_builder *b, const char *prefix, const char *input, int channels,
                                 int kernel, int stride, int groups, char *out, size_t out_len)
{
    char conv[96], bn[96], act[96];
    snprintf(conv, sizeof conv, "%s.0", prefix);
    snprintf(bn, sizeof bn, "%s.1", prefix);
    snprintf(act, sizeof act, "%s.2", prefix);
    KELP_TRY(kelp_zoo_node(b, conv, "conv2d", input,
                           "{\"out_channels\": %d, \"kernel_size\": %d, \"stride\": %d, \"padding\": %d, "
                           "\"groups\": %d, \"bias\": false, \"init\": \"kaiming_normal_fan_out\"}",
                           channels, kernel, stride, kernel / 2, groups));
    KELP_TRY(kelp_zoo_node(b, bn, "batch_norm", conv, NULL));
    KELP_TRY(kelp_zoo_node(b, act, "relu6", bn, NULL));
    snprintf(out, out_len, "%s", act);
    return KELP_OK;
}

/* InvertedResidual: 1x1 expansion (skipped when expand_ratio is 1), 3x3 depthwise with the stride, 1x1 linear
 * projection (no activation), and a residual add when the shape is kept. torchvision numbers the modules of
 * `<prefix>.conv` in order, so the projection's index depends on whether the expansion exists. */
static kelp_status inverted_residual(kelp_model_builder *b, const char *prefix, const char *input, int in_channels,
                                     int channels, int stride, int expand_ratio, char *out, size_t out_len)
{
    char stage[96], current[96], project[96], project_bn[96];
    int index = 0, hidden = in_channels * expand_ratio;
    snprintf(current, sizeof current, "%s", input);
    if (expand_ratio != 1) {
        snprintf(stage, sizeof stage, "%s.conv.%d", prefix, index++);
        KELP_TRY(conv_bn_relu6(b, stage, input, hidden, 1, 1, 1, current, sizeof current));
    }
    snprintf(stage, sizeof stage, "%s.conv.%d", prefix, index++);
    KELP_TRY(conv_bn_relu6(b, stage, current, hidden, 3, stride, hidden, current, sizeof current));
    snprintf(project, sizeof project, "%s.conv.%d", prefix, index++);
    snprintf(project_bn, sizeof project_bn, "%s.conv.%d", prefix, index);
    KELP_TRY(kelp_zoo_node(b, project, "conv2d", current,
                           "{\"out_channels\": %d, \"kernel_size\": 1, \"bias\": false, "
                           "\"init\": \"kaiming_normal_fan_out\"}",
                           channels));
    KELP_TRY(kelp_zoo_node(b, project_bn, "batch_norm", project, NULL));
    if (stride != 1 || in_channels != channels) {
        snprintf(out, out_len, "%s", project_bn);
        return KELP_OK;
    }
    snprintf(out, out_len, "%s.add", prefix);
    return kelp_builder_node(b, out, "add", (const char *const[]){input, project_bn, NULL}, NULL);
}

/* torchvision rounds every channel count to a multiple of 8 after scaling by the width; at width 1.0 all of the
 * counts below already are, so they are written as they come out. */
kelp_status kelp_zoo_mobilenet_v2(kelp_model_builder *b, int num_classes)
{
    /* expand ratio t, output channels c, repeats n, first stride s */
    static const int settings[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2},
                                       {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    char current[96], prefix[64];
    KELP_TRY(conv_bn_relu6(b, "features.0", "image", 32, 3, 2, 1, current, sizeof current));
    int in_channels = 32, feature = 1;
    for (int row = 0; row < 7; row++) {
        for (int i = 0; i < settings[row][2]; i++) {
            char out[96];
            snprintf(prefix, sizeof prefix, "features.%d", feature++);
            int stride = i == 0 ? settings[row][3] : 1;
            KELP_TRY(inverted_residual(b, prefix, current, in_channels, settings[row][1], stride, settings[row][0],
                                       out, sizeof out));
            in_channels = settings[row][1];
            snprintf(current, sizeof current, "%s", out);
        }
    }
    snprintf(prefix, sizeof prefix, "features.%d", feature);
    KELP_TRY(conv_bn_relu6(b, prefix, current, 1280, 1, 1, 1, current, sizeof current));
    KELP_TRY(kelp_zoo_node(b, "avgpool", "global_avg_pool", current, NULL));
    KELP_TRY(kelp_zoo_node(b, "classifier.0", "dropout", "avgpool", "{\"p\": 0.2}"));
    KELP_TRY(kelp_zoo_node(b, "classifier.1", "linear", "classifier.0", "{\"out_features\": %d}", num_classes));
    return kelp_builder_output(b, "classifier.1");
}
