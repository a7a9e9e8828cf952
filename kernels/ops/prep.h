/* Input preparation: a uint8 pixel to the network's input value. The loader's host path (io/augment.c) and the
 * backends' prepare_images (kernels/cpu/prep.c, kernels/cuda/cuda_prep.cu) all call this, so the value a model sees
 * does not depend on where its batch was prepared. */
#ifndef KELP_OPS_PREP_H
#define KELP_OPS_PREP_H

#include <stdint.h>

#include "kernels/ops/hd.h"

/* (pixel / 255 - mean) / std, in this order and in float: torchvision's ToTensor then Normalize. */
KELP_HD float kelp_normalize_pixel(uint8_t pixel, float mean, float std)
{
    return ((float)pixel / 255.0f - mean) / std;
}

#endif
