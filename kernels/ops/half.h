/* bf16 and fp16 storage: 16-bit values that kelp widens to float for every computation and narrows back to store
 * (mixed precision keeps the arithmetic in fp32). Both conversions round to nearest, ties to even, as PyTorch's
 * and CUDA's do, so a value stored by the CPU backend and by the CUDA backend is the same bit pattern.
 *
 * kelp_lowp_load / kelp_lowp_store read and write element i of a buffer of any floating storage type; the CPU
 * backend widens whole buffers with them, the CUDA kernels use their own typed loads. */
#ifndef KELP_OPS_HALF_H
#define KELP_OPS_HALF_H

#include <stdint.h>
#include <string.h>

#include "kelp/tensor.h"
#include "kernels/ops/hd.h"

KELP_HD uint32_t kelp_float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

KELP_HD float kelp_bits_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* bf16 is the top half of a float: round the dropped 16 bits to nearest even; NaN stays a (quiet) NaN. */
KELP_HD uint16_t kelp_bf16_from_float(float f)
{
    uint32_t u = kelp_float_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

KELP_HD float kelp_bf16_to_float(uint16_t h) { return kelp_bits_float((uint32_t)h << 16); }

/* IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits; above 65504 after rounding is infinity, below
 * 2^-14 subnormal. */
KELP_HD uint16_t kelp_f16_from_float(float f)
{
    uint32_t u = kelp_float_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00u); /* NaN */
    if (a >= 0x477ff000u)                 /* rounds to 65536 or more: infinity */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) { /* below 2^-14: subnormal, a multiple of 2^-24 */
        if (a < 0x33000000u) /* below 2^-25: rounds to zero */
            return sign;
        uint32_t mant = (a & 0x007fffffu) | 0x00800000u;
        int shift = 126 - (int)(a >> 23); /* 14..24 bits more than a normal's 13 */
        uint32_t half_ulp = 1u << (shift - 1);
        uint32_t rest = mant & ((1u << shift) - 1u);
        uint32_t h = mant >> shift;
        if (rest > half_ulp || (rest == half_ulp && (h & 1u)))
            h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((a >> 13) - (112u << 10)); /* rebias the exponent: 127 - 15 = 112 */
    uint32_t rest = a & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        h++; /* a carry into the exponent is the right rounding, up to 0x7c00 = infinity */
    return (uint16_t)(sign | h);
}

KELP_HD float kelp_f16_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0x1fu)
        return kelp_bits_float(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) { /* zero or subnormal: mant * 2^-24, exact in float */
        float v = (float)mant * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return kelp_bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

/* The floating storage types an activation may have; true for F32, BF16 and F16. */
KELP_HD int kelp_dtype_is_float(kelp_dtype dt) { return dt == KELP_F32 || dt == KELP_BF16 || dt == KELP_F16; }

KELP_HD float kelp_lowp_load(kelp_dtype dt, const void *p, int64_t i)
{
    if (dt == KELP_BF16)
        return kelp_bf16_to_float(((const uint16_t *)p)[i]);
    if (dt == KELP_F16)
        return kelp_f16_to_float(((const uint16_t *)p)[i]);
    return ((const float *)p)[i];
}

KELP_HD void kelp_lowp_store(kelp_dtype dt, void *p, int64_t i, float v)
{
    if (dt == KELP_BF16)
        ((uint16_t *)p)[i] = kelp_bf16_from_float(v);
    else if (dt == KELP_F16)
        ((uint16_t *)p)[i] = kelp_f16_from_float(v);
    else
        ((float *)p)[i] = v;
}

#endif
