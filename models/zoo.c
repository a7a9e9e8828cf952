/* The model zoo by name. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/zoo.h"

typedef struct zoo_entry {
    const char *name, *description;
    int classes, height, width, channels;
    bool imagenet_normalization;
} zoo_entry;

static const zoo_entry zoo[] = {
    {"resnet18", "ResNet-18 (torchvision v1.5 definition and parameter names), 224x224 RGB", 1000, 224, 224, 3, true},
    {"resnet34", "ResNet-34 (torchvision v1.5 definition and parameter names), 224x224 RGB", 1000, 224, 224, 3, true},
    {"resnet50", "ResNet-50 (torchvision v1.5: stride in the 3x3 bottleneck conv), 224x224 RGB", 1000, 224, 224, 3,
     true},
    {"mobilenet_v2", "MobileNetV2 (torchvision definition and parameter names), 224x224 RGB", 1000, 224, 224, 3,
     true},
    {"small_resnet", "small ResNet for 28-64 pixel images: 3x3 stem, 3 stages of basic blocks (32/64/128 channels, each halving the resolution)",
     10, 28, 28, 1, false},
};

#define ZOO_SIZE (sizeof zoo / sizeof zoo[0])

const char *const *kelp_model_zoo_names(void)
{
    static const char *const names[] = {"resnet18", "resnet34", "resnet50", "mobilenet_v2", "small_resnet", NULL};
    return names;
}

static const zoo_entry *find(const char *name)
{
    for (size_t i = 0; i < ZOO_SIZE; i++)
        if (strcmp(zoo[i].name, name) == 0)
            return &zoo[i];
    return NULL;
}

const char *kelp_model_zoo_description(const char *name)
{
    const zoo_entry *e = find(name);
    return e ? e->description : NULL;
}

kelp_status kelp_zoo_node(kelp_model_builder *b, const char *name, const char *type, const char *input,
                          const char *fields_fmt, ...)
{
    char fields[512];
    if (fields_fmt) {
        va_list ap;
        va_start(ap, fields_fmt);
        vsnprintf(fields, sizeof fields, fields_fmt, ap);
        va_end(ap);
    }
    return kelp_builder_node(b, name, type, (const char *const[]){input, NULL}, fields_fmt ? fields : NULL);
}

static kelp_status build_network(kelp_model_builder *b, const char *name, int classes)
{
    if (strcmp(name, "small_resnet") == 0)
        return kelp_zoo_small_resnet(b, classes);
    if (strcmp(name, "mobilenet_v2") == 0)
        return kelp_zoo_mobilenet_v2(b, classes);
    return kelp_zoo_resnet(b, atoi(name + strlen("resnet")), classes);
}

kelp_status kelp_model_zoo_json(const char *name, const kelp_zoo_options *options, char **json_out)
{
    *json_out = NULL;
    const zoo_entry *e = find(name);
    if (!e) {
        char known[256] = "";
        for (size_t i = 0; i < ZOO_SIZE; i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", zoo[i].name);
        return kelp_set_error(KELP_ERR_NOT_FOUND, "unknown zoo model '%s'; the zoo has: %s", name, known);
    }
    kelp_zoo_options o = options ? *options : (kelp_zoo_options){0};
    int classes = o.num_classes > 0 ? o.num_classes : e->classes;
    int h = o.height > 0 ? o.height : e->height, w = o.width > 0 ? o.width : e->width;
    int c = o.channels > 0 ? o.channels : e->channels;
    if (classes > 1 << 20)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "zoo model '%s': %d classes, at most %d", name, classes, 1 << 20);
    if (h > 1 << 14 || w > 1 << 14)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "zoo model '%s': input %dx%d, at most %d per side", name, h, w,
                              1 << 14);
    if (c > 64)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "zoo model '%s': %d input channels, at most 64", name, c);

    static const double imagenet_mean[3] = {0.485, 0.456, 0.406}, imagenet_std[3] = {0.229, 0.224, 0.225};
    double mean[64], std[64];
    for (int i = 0; i < c; i++) {
        bool imagenet = e->imagenet_normalization && c == 3;
        mean[i] = imagenet ? imagenet_mean[i] : 0.5;
        std[i] = imagenet ? imagenet_std[i] : 0.5;
    }
    kelp_model_builder *b;
    KELP_TRY(kelp_builder_create(name, "classify", &b));
    kelp_status s = kelp_builder_input(b, "image", h, w, c, mean, std);
    if (s == KELP_OK)
        s = build_network(b, name, classes);
    if (s == KELP_OK)
        s = kelp_builder_loss(b, "{\"type\": \"softmax_cross_entropy\"}");
    if (s == KELP_OK)
        s = kelp_builder_finish(b, json_out);
    kelp_builder_destroy(b);
    return s;
}
