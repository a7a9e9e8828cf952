/* Input preparation on the CPU: uint8 NHWC pixels to the network's input values, through a per-channel table of
 * the 256 possible values (the same formula as the loader's, kernels/ops/prep.h). */
#include "kernels/cpu/cpu_kernels.h"

#include "kernels/ops/half.h"
#include "kernels/ops/prep.h"

/* Below this many pixels a thread team costs more than the loop. */
#define PARALLEL_MIN 16384

// pixels (d->pixels, d->c) uint8 -> out (d->pixels, d->c) in d->dtype (F32, BF16 or F16)
void kelp_cpu_prepare_images(int threads, const kelp_prep_desc *d, const uint8_t *pixels, void *out)
{
    float table[KELP_PREP_MAX_CHANNELS][256];
    for (int ch = 0; ch < d->c; ch++)
        for (int v = 0; v < 256; v++)
            table[ch][v] = kelp_normalize_pixel((uint8_t)v, d->mean[ch], d->std[ch]);
    const int c = d->c;
    if (d->dtype == KELP_F32) {
        float *y = out;
#pragma omp parallel for num_threads(threads) if (d->pixels >= PARALLEL_MIN) schedule(static)
        for (int64_t i = 0; i < d->pixels; i++)
            for (int ch = 0; ch < c; ch++)
                y[i * c + ch] = table[ch][pixels[i * c + ch]];
        return;
    }
    /* 16-bit storage: the table holds the rounded values, so the loop stays a lookup */
    uint16_t narrow[KELP_PREP_MAX_CHANNELS][256];
    for (int ch = 0; ch < c; ch++)
        for (int v = 0; v < 256; v++)
            kelp_lowp_store(d->dtype, narrow[ch], v, table[ch][v]);
    uint16_t *y = out;
#pragma omp parallel for num_threads(threads) if (d->pixels >= PARALLEL_MIN) schedule(static)
    for (int64_t i = 0; i < d->pixels; i++)
        for (int ch = 0; ch < c; ch++)
            y[i * c + ch] = narrow[ch][pixels[i * c + ch]];
}
