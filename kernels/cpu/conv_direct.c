/* Direct NHWC convolution: register-tiled loops over the taps, without a column matrix.
 *
 * im2col copies every input value R*S times into a column matrix that OpenBLAS then packs again; for the small
 * channel counts of small images (16-64) those copies, not the multiply-adds, took most of a training step. Here a
 * tile of output values lives in registers while the loops walk the taps and channels of the input in place:
 *
 *   forward          8 output pixels x 16 or 32 output channels: acc[p][k] += x[p + tap][c] * w[tap][c][k]
 *   weight gradient  one tap, 8 or 16 input channels x 32 or 16 output channels: acc[c][k] += x[p + tap][c] dy[p][k]
 *   input gradient   the forward tile on the flipped convolution (stride 1 only; see conv.c)
 *
 * The input is first copied once with its zero border (when it has padding), so no tap needs a bounds check, and
 * a tap of any output pixel is one fixed offset from that pixel's base address.
 *
 * Vectors are GCC vector extensions of 16 floats, compiled (target_clones) for AVX-512, AVX2 and the baseline, and
 * chosen at load time by the CPU; multiply-adds contract to FMA (this file is built with -ffp-contract=fast).
 * Every output element is owned by one task and summed in a fixed order, whatever the thread count. */
#include <string.h>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/simd.h"

#define PIXELS 8 /* output pixels per forward tile */

/* A forward tile streams R*S*C x 32 weights for only 8 pixels, so they must stay in L2: up to R*S*C = 1152 (a 3x3
 * kernel over 128 channels, 144 KiB) the direct kernels beat im2col + OpenBLAS on ResNet-18's 3x3 layers (1.2-1.9x
 * at 56x56x64, 28x28x128), past it OpenBLAS's blocking wins (0.4x at 7x7x512). */
#define MAX_REDUCTION 1152

/* A 1x1 convolution (strided or padded; the plain one is a GEMM on the input itself) has no taps to share: its
 * im2col is a gather of one pixel, while this kernel transposes all K x C weights on every call. That transpose
 * made ResNet-50's 1024 -> 2048 stride-2 downsample take 13.6 ms at batch 1, against 1.7 ms through im2col +
 * OpenBLAS (and 105 against 56 ms for a training step's forward and backward at batch 16). */
bool kelp_cpu_conv_direct_fits(const kelp_conv_desc *d)
{
    return d->groups == 1 && d->c % 16 == 0 && d->k % 16 == 0 && d->r * d->s > 1 &&
           d->r * d->s <= KELP_CONV_DIRECT_MAX_TAPS && d->r * d->s * d->c <= MAX_REDUCTION;
}

static int padded_h(const kelp_conv_desc *d) { return d->h + 2 * d->pad_h; }
static int padded_w(const kelp_conv_desc *d) { return d->w + 2 * d->pad_w; }
static bool has_padding(const kelp_conv_desc *d) { return d->pad_h > 0 || d->pad_w > 0; }

static size_t padded_input_floats(const kelp_conv_desc *d)
{
    return has_padding(d) ? (size_t)d->n * (size_t)padded_h(d) * (size_t)padded_w(d) * (size_t)d->c : 0;
}

size_t kelp_cpu_conv_direct_workspace(const kelp_conv_desc *d)
{
    /* the padded input, then the forward's weights as (R, S, C, K) floats or the weight gradient's double sums */
    return padded_input_floats(d) * sizeof(float) + (size_t)d->r * d->s * d->c * d->k * sizeof(double);
}

/* x (N,H,W,C) -> the same with its zero border (N,H+2ph,W+2pw,C) in ws; x itself when there is no padding. */
static const float *pad_input(int threads, const kelp_conv_desc *d, const float *x, float *ws)
{
    if (!has_padding(d))
        return x;
    const int hp = padded_h(d), wp = padded_w(d), c = d->c;
    const size_t row = (size_t)wp * c, border = (size_t)d->pad_w * c, inner = (size_t)d->w * c;
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int n = 0; n < d->n; n++)
        for (int i = 0; i < hp; i++) {
            float *dst = ws + ((size_t)n * hp + i) * row;
            int ih = i - d->pad_h;
            if (ih < 0 || ih >= d->h) {
                memset(dst, 0, row * sizeof(float));
                continue;
            }
            memset(dst, 0, border * sizeof(float));
            memcpy(dst + border, x + ((size_t)n * d->h + ih) * inner, inner * sizeof(float));
            memset(dst + border + inner, 0, border * sizeof(float));
        }
    return ws;
}

/* Offsets of the taps from an output pixel's base address in the padded input, (R, S) order. */
static void tap_offsets(const kelp_conv_desc *d, int *offsets)
{
    for (int r = 0; r < d->r; r++)
        for (int s = 0; s < d->s; s++)
            offsets[r * d->s + s] = (r * d->dil_h * padded_w(d) + s * d->dil_w) * d->c;
}

/* Where output pixel p (flat over N, OH, OW) starts reading the padded input. */
static const float *pixel_base(const kelp_conv_desc *d, const float *xp, int64_t p)
{
    int64_t per_image = (int64_t)d->oh * d->ow;
    int64_t n = p / per_image, rest = p % per_image;
    int oh = (int)(rest / d->ow), ow = (int)(rest % d->ow);
    return xp + (((int64_t)n * padded_h(d) + (int64_t)oh * d->stride_h) * padded_w(d) + (int64_t)ow * d->stride_w) *
                    d->c;
}

/* The forward tile: 8 pixels (a block of the flat output; the last block repeats its last pixel and stores only
 * the real ones) x VECS*16 output channels from k0. */
#define FORWARD_TILE(VECS)                                                                                            \
    do {                                                                                                              \
        kelp_vec16 acc[PIXELS][VECS] = {{{0}}};                                                                       \
        for (int t = 0; t < taps; t++) {                                                                              \
            const float *wp = wt + (int64_t)t * d->c * d->k + k0;                                                     \
            const int off = offsets[t];                                                                               \
            for (int c = 0; c < d->c; c++, wp += d->k) {                                                              \
                kelp_vec16 wv[VECS];                                                                                  \
                for (int v = 0; v < VECS; v++)                                                                        \
                    wv[v] = KELP_LOAD16(wp + 16 * v);                                                                 \
                for (int j = 0; j < PIXELS; j++) {                                                                    \
                    const float xv = base[j][off + c];                                                                \
                    for (int v = 0; v < VECS; v++)                                                                    \
                        acc[j][v] += xv * wv[v];                                                                      \
                }                                                                                                     \
            }                                                                                                         \
        }                                                                                                             \
        for (int j = 0; j < valid; j++) {                                                                             \
            float *yp = y + (p0 + j) * d->k + k0;                                                                     \
            for (int v = 0; v < VECS; v++) {                                                                          \
                kelp_vec16 out = acc[j][v];                                                                           \
                if (ep)                                                                                               \
                    KELP_EPILOGUE16(out, ep, k0 + 16 * v);                                                            \
                if (accumulate)                                                                                       \
                    out += KELP_LOAD16(yp + 16 * v);                                                                  \
                KELP_STORE16(yp + 16 * v, out);                                                                       \
            }                                                                                                         \
        }                                                                                                             \
    } while (0)

/* One forward tile from pixel p0 and channel k0. xp: the padded input; wt: weights (R, S, C, K); y (N*OH*OW, K) =
 * the convolution through the epilogue ep, or += the convolution (ep NULL). */
KELP_VECTOR_CLONES
static void forward_tile(const kelp_conv_desc *d, const float *xp, const float *wt, const kelp_conv_epilogue *ep,
                         bool accumulate, float *y, const int *offsets, int64_t p0, int k0, bool wide)
{
    const int taps = d->r * d->s;
    const int64_t pixels = (int64_t)d->n * d->oh * d->ow;
    const int valid = pixels - p0 < PIXELS ? (int)(pixels - p0) : PIXELS;
    const float *base[PIXELS];
    for (int j = 0; j < PIXELS; j++)
        base[j] = pixel_base(d, xp, p0 + (j < valid ? j : valid - 1));
    if (wide)
        FORWARD_TILE(2);
    else
        FORWARD_TILE(1);
}

static void forward_tiles(int threads, const kelp_conv_desc *d, const float *xp, const float *wt,
                          const kelp_conv_epilogue *ep, bool accumulate, float *y, const int *offsets)
{
    const bool wide = d->k % 32 == 0;
    const int k_step = wide ? 32 : 16, k_tiles = d->k / k_step;
    const int64_t blocks = ((int64_t)d->n * d->oh * d->ow + PIXELS - 1) / PIXELS;
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int64_t b = 0; b < blocks; b++)
        for (int kt = 0; kt < k_tiles; kt++)
            forward_tile(d, xp, wt, ep, accumulate, y, offsets, b * PIXELS, kt * k_step, wide);
}

/* w (K,R,S,C) -> wt (R,S,C,K): output channels contiguous for the tile's vector loads. */
static void weights_rsck(const kelp_conv_desc *d, const float *w, float *wt)
{
    const int taps = d->r * d->s;
    for (int k = 0; k < d->k; k++)
        for (int t = 0; t < taps; t++)
            for (int c = 0; c < d->c; c++)
                wt[((int64_t)t * d->c + c) * d->k + k] = w[((int64_t)k * taps + t) * d->c + c];
}

static void forward(int threads, const kelp_conv_desc *d, const float *x, const float *wt,
                    const kelp_conv_epilogue *ep, bool accumulate, float *y, float *ws)
{
    int offsets[KELP_CONV_DIRECT_MAX_TAPS];
    tap_offsets(d, offsets);
    const float *xp = pad_input(threads, d, x, ws);
    forward_tiles(threads, d, xp, wt, ep, accumulate, y, offsets);
}

void kelp_cpu_conv_direct_forward(int threads, const kelp_conv_desc *d, const float *x, const float *w,
                                  const kelp_conv_epilogue *ep, float *y, float *workspace)
{
    float *wt = workspace + padded_input_floats(d);
    weights_rsck(d, w, wt);
    forward(threads, d, x, wt, ep, false, y, workspace);
}

void kelp_cpu_conv_direct_backward_data(int threads, const kelp_conv_desc *flipped, const float *dy,
                                        const float *w, float *dx, float *workspace)
{
    /* flipped: the forward convolution dy -> dx (channels swapped). Its (R, S, C, K) weights are the original
     * (K, R, S, C) ones mirrored in space: wt[r][s][k][c] = w[k][R-1-r][S-1-s][c]. */
    const kelp_conv_desc *f = flipped;
    float *wt = workspace + padded_input_floats(f);
    const int taps = f->r * f->s;
    for (int r = 0; r < f->r; r++)
        for (int s = 0; s < f->s; s++) {
            const int t = r * f->s + s, mirrored = (f->r - 1 - r) * f->s + (f->s - 1 - s);
            for (int k = 0; k < f->c; k++)
                memcpy(wt + ((int64_t)t * f->c + k) * f->k, w + ((int64_t)k * taps + mirrored) * f->k,
                       (size_t)f->k * sizeof(float));
        }
    forward(threads, f, dy, wt, NULL, true, dx, workspace);
}

/* The weight gradient of tap t for CH input channels from c0 x VECS*16 output channels from k0, over output rows
 * [oh0, oh1) of image n: summed in registers, then added to that tile's double totals (row-sized float sums keep
 * their digits however large the batch). */
#define FILTER_CHUNK(CH, VECS)                                                                                        \
    do {                                                                                                              \
        kelp_vec16 acc[CH][VECS] = {{{0}}};                                                                           \
        for (int oh = oh0; oh < oh1; oh++) {                                                                          \
            const float *xrow = xp + (((int64_t)n * padded_h(d) + (int64_t)oh * d->stride_h) * padded_w(d)) *         \
                                         d->c + off + c0;                                                             \
            const float *dyp = dy + (((int64_t)n * d->oh + oh) * d->ow) * d->k + k0;                                  \
            for (int ow = 0; ow < d->ow; ow++, dyp += d->k) {                                                         \
                const float *xv = xrow + (int64_t)ow * d->stride_w * d->c;                                            \
                kelp_vec16 g[VECS];                                                                                   \
                for (int v = 0; v < VECS; v++)                                                                        \
                    g[v] = KELP_LOAD16(dyp + 16 * v);                                                                 \
                for (int c = 0; c < CH; c++)                                                                          \
                    for (int v = 0; v < VECS; v++)                                                                    \
                        acc[c][v] += xv[c] * g[v];                                                                    \
            }                                                                                                         \
        }                                                                                                             \
        for (int c = 0; c < CH; c++)                                                                                  \
            for (int v = 0; v < VECS; v++)                                                                            \
                for (int i = 0; i < 16; i++)                                                                          \
                    total[c * VECS * 16 + 16 * v + i] += acc[c][v][i];                                                \
    } while (0)

KELP_VECTOR_CLONES
static void filter_chunk(const kelp_conv_desc *d, const float *xp, const float *dy, double *total, int n, int oh0,
                         int oh1, int off, int c0, int k0, bool wide)
{
    if (wide)
        FILTER_CHUNK(8, 2);
    else
        FILTER_CHUNK(16, 1);
}

/* Tiles: (tap, channel block, output-channel block), 8 x 32 (wide: fewer loads per multiply-add) or 16 x 16. Each
 * thread owns a fixed range of tiles and walks the pixels chunk by chunk, running all its tiles on a chunk while
 * the chunk's input rows are in cache; one tile's sum has one order, whatever the thread count. */
static void filter_tiles(int threads, const kelp_conv_desc *d, const float *xp, const float *dy, float *dw,
                         double *totals, const int *offsets)
{
    const bool wide = d->k % 32 == 0;
    const int taps = d->r * d->s, ch = wide ? 8 : 16, k_step = wide ? 32 : 16, tile_len = ch * k_step;
    const int c_tiles = d->c / ch, k_tiles = d->k / k_step, tiles = taps * c_tiles * k_tiles;
    /* chunks of at least 32 pixels, so loading and storing a tile's totals stays small beside its work */
    const int rows = d->ow >= 32 ? 1 : (32 + d->ow - 1) / d->ow;
    memset(totals, 0, (size_t)tiles * tile_len * sizeof(double));
#pragma omp parallel num_threads(threads)
    {
        int64_t begin, end;
        kelp_cpu_thread_slice(tiles, 1, &begin, &end);
        for (int n = 0; n < d->n; n++)
            for (int oh0 = 0; oh0 < d->oh; oh0 += rows) {
                const int oh1 = oh0 + rows < d->oh ? oh0 + rows : d->oh;
                for (int tile = (int)begin; tile < (int)end; tile++) {
                    const int t = tile / (c_tiles * k_tiles), ct = tile / k_tiles % c_tiles, kt = tile % k_tiles;
                    filter_chunk(d, xp, dy, totals + (int64_t)tile * tile_len, n, oh0, oh1, offsets[t], ct * ch,
                                 kt * k_step, wide);
                }
            }
    }
    for (int tile = 0; tile < tiles; tile++) {
        const int t = tile / (c_tiles * k_tiles), c0 = tile / k_tiles % c_tiles * ch, k0 = tile % k_tiles * k_step;
        const double *total = totals + (int64_t)tile * tile_len;
        for (int c = 0; c < ch; c++)
            for (int k = 0; k < k_step; k++)
                dw[((int64_t)(k0 + k) * taps + t) * d->c + c0 + c] += (float)total[c * k_step + k];
    }
}

void kelp_cpu_conv_direct_backward_filter(int threads, const kelp_conv_desc *d, const float *x, const float *dy,
                                          float *dw, float *workspace)
{
    int offsets[KELP_CONV_DIRECT_MAX_TAPS];
    tap_offsets(d, offsets);
    const float *xp = pad_input(threads, d, x, workspace);
    filter_tiles(threads, d, xp, dy, dw, (double *)(workspace + padded_input_floats(d)), offsets);
}
