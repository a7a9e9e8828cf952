/* Winograd F(2x2, 3x3) convolution on NHWC activations (Lavin and Gray, "Fast Algorithms for Convolutional Neural
 * Networks", 2015).
 *
 * A 3x3 convolution computes each 2x2 block of outputs from the 4x4 block of inputs under it. In the Winograd
 * domain that is 16 products instead of 36:
 *
 *   Y = A^T [ (G g G^T) .* (B^T d B) ] A      g: 3x3 weights, d: 4x4 inputs, Y: 2x2 outputs, .* per element
 *
 * and over channels, each of the 16 positions xi of the 4x4 domain is one matrix product:
 *
 *   M[xi][tile][k] = sum_c V[xi][tile][c] U[xi][c][k]   V = B^T d B per tile and channel, U = G g G^T per (c, k)
 *
 * so 2.25 times fewer multiply-adds than the direct convolution, paid for by the transforms (additions only for B
 * and A; G's halves are exact in binary) and by U, 16/9 the size of the weights, computed on every call.
 *
 * Memory, not arithmetic, decides whether this wins: V and M are 4 times the input and the output. So the tiles go
 * in blocks small enough that a block's V and M stay in the thread's cache: transform a block's inputs, run the 16
 * products on it with the direct convolution's register tile (8 tiles x 32 output channels, fed by broadcasts of
 * V), transform its outputs and store them. Only the input, the output and U cross the memory bus.
 *
 * The weight gradient is the same product turned around (the adjoint of the formula above):
 *
 *   dg = G^T [ sum over tiles (A e A^T) .* (B^T d B) ] G      e: the 2x2 block of output gradients
 *
 * that is, per position xi, dU[xi][c][k] = sum_tile V[xi][tile][c] E[xi][tile][k]: 16 products that reduce over the
 * tiles, then one 4x4 -> 3x3 transform per (c, k).
 *
 * Rounding: the transforms add at most 4 inputs (B) or 9 products (A) before the sum over channels, so results
 * differ from the direct convolution's by a few units in the last place of the largest terms. Each output element
 * is computed by one thread in a fixed order, whatever the thread count; the weight gradient adds each block's
 * float sums into double totals, as the direct kernel does. */
#include <string.h>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/simd.h"

#define TILE_ROWS 8 /* tiles per register tile of the products */
#define POSITIONS 16 /* the 4x4 Winograd domain */

/* Where the transforms pay, measured on ResNet-18 and kelp's small_resnet (2 AVX-512 cores):
 * - per tile the transforms cost O(C + K) and the products O(C K): with 32 channels the forward gained 15% but the
 *   backward lost 20% against the direct kernel, so both channel counts must be at least 64;
 * - outputs smaller than 8x8 waste up to a third of the 2x2 blocks at the edge (64 channels at 7x7: 25% slower);
 * - with fewer tiles than this the weights' transform costs more than the products save;
 * - every block of tiles streams all of U through the cache: past 256 x 256 channels (U = 4 MiB) that traffic
 *   outweighs the saved multiply-adds (ResNet-18's 512-channel layers ran 1.6x slower than im2col + OpenBLAS). */
#define MIN_CHANNELS 64
#define MIN_OUTPUT_SIDE 8
#define MIN_TILES 64
#define MAX_CHANNEL_PRODUCT (256 * 256)

static int64_t tiles_h(const kelp_conv_desc *d) { return (d->oh + 1) / 2; }
static int64_t tiles_w(const kelp_conv_desc *d) { return (d->ow + 1) / 2; }
static int64_t tile_count(const kelp_conv_desc *d) { return (int64_t)d->n * tiles_h(d) * tiles_w(d); }

bool kelp_cpu_conv_winograd_fits(const kelp_conv_desc *d)
{
    return d->groups == 1 && d->r == 3 && d->s == 3 && d->stride_h == 1 && d->stride_w == 1 && d->dil_h == 1 &&
           d->dil_w == 1 && d->c % 16 == 0 && d->k % 16 == 0 && d->pad_h <= 2 && d->pad_w <= 2 &&
           d->c >= MIN_CHANNELS && d->k >= MIN_CHANNELS && (int64_t)d->c * d->k <= MAX_CHANNEL_PRODUCT &&
           d->oh >= MIN_OUTPUT_SIDE && d->ow >= MIN_OUTPUT_SIDE && tile_count(d) >= MIN_TILES;
}

/* Tiles per block: V (16 x tiles x C) and M (16 x tiles x K) together in about 512 KiB, a multiple of the register
 * tile, at least 2 register tiles so the products reuse each U row. */
static int block_tiles(const kelp_conv_desc *d)
{
    int64_t t = ((int64_t)512 << 10) / ((int64_t)POSITIONS * (d->c + d->k) * (int64_t)sizeof(float));
    t = t / TILE_ROWS * TILE_ROWS;
    return t < 2 * TILE_ROWS ? 2 * TILE_ROWS : t > 64 ? 64 : (int)t;
}

static size_t transformed_weights_floats(const kelp_conv_desc *d) { return (size_t)POSITIONS * d->c * d->k; }

static size_t block_floats(const kelp_conv_desc *d)
{
    return (size_t)POSITIONS * block_tiles(d) * (size_t)(d->c + d->k);
}

size_t kelp_cpu_conv_winograd_workspace(int threads, const kelp_conv_desc *d)
{
    /* U, then a block's V and M per thread, then one pixel of zeros for the taps that fall in the padding */
    return (transformed_weights_floats(d) + (size_t)threads * block_floats(d) + (size_t)d->c) * sizeof(float);
}

/* U[xi][c][k] = (G g G^T)[xi] with G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1], for the weights w (K, 3, 3, C),
 * or with `flipped` for the convolution whose weights are w's mirrored in space with input and output channels
 * swapped (the input gradient of w's convolution: w is then (C, 3, 3, K) for d's C and K). */
static void transform_weights(int threads, const kelp_conv_desc *d, const float *w, bool flipped, float *u)
{
    const int64_t plane = (int64_t)d->c * d->k;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int c = 0; c < d->c; c++)
        for (int k = 0; k < d->k; k++) {
            float g[3][3], t[4][3];
            for (int r = 0; r < 3; r++)
                for (int s = 0; s < 3; s++)
                    g[r][s] = flipped ? w[(((int64_t)c * 3 + (2 - r)) * 3 + (2 - s)) * d->k + k]
                                      : w[(((int64_t)k * 3 + r) * 3 + s) * d->c + c];
            for (int s = 0; s < 3; s++) { /* t = G g */
                t[0][s] = g[0][s];
                t[1][s] = 0.5f * (g[0][s] + g[1][s] + g[2][s]);
                t[2][s] = 0.5f * (g[0][s] - g[1][s] + g[2][s]);
                t[3][s] = g[2][s];
            }
            float *dst = u + (int64_t)c * d->k + k;
            for (int i = 0; i < 4; i++) { /* (G g) G^T */
                dst[(i * 4 + 0) * plane] = t[i][0];
                dst[(i * 4 + 1) * plane] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
                dst[(i * 4 + 2) * plane] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
                dst[(i * 4 + 3) * plane] = t[i][2];
            }
        }
}

/* Tile number -> image and the top-left output pixel of its 2x2 block. */
static void tile_origin(const kelp_conv_desc *d, int64_t tile, int *n, int *oh, int *ow)
{
    const int64_t per_image = tiles_h(d) * tiles_w(d), rest = tile % per_image;
    *n = (int)(tile / per_image);
    *oh = (int)(rest / tiles_w(d)) * 2;
    *ow = (int)(rest % tiles_w(d)) * 2;
}

/* V[xi][j][c] = (B^T d B)[xi] for the block's tiles, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]; d's pixels
 * outside the input read `zeros`. */
KELP_VECTOR_CLONES
static void transform_inputs(const kelp_conv_desc *d, const float *x, const float *zeros, int64_t tile0, int count,
                             int stride, float *v)
{
    const int64_t plane = (int64_t)stride * d->c;
    for (int j = 0; j < count; j++) {
        int n, oh, ow;
        tile_origin(d, tile0 + j, &n, &oh, &ow);
        const float *px[4][4];
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++) {
                const int ih = oh - d->pad_h + a, iw = ow - d->pad_w + b;
                px[a][b] = ih < 0 || ih >= d->h || iw < 0 || iw >= d->w
                               ? zeros
                               : x + (((int64_t)n * d->h + ih) * d->w + iw) * d->c;
            }
        float *dst = v + (int64_t)j * d->c;
        for (int c = 0; c < d->c; c += 16) {
            kelp_vec16 t[4][4];
            for (int b = 0; b < 4; b++) { /* t = B^T d */
                const kelp_vec16 d0 = KELP_LOAD16(px[0][b] + c), d1 = KELP_LOAD16(px[1][b] + c), d2 = KELP_LOAD16(px[2][b] + c),
                            d3 = KELP_LOAD16(px[3][b] + c);
                t[0][b] = d0 - d2;
                t[1][b] = d1 + d2;
                t[2][b] = d2 - d1;
                t[3][b] = d1 - d3;
            }
            for (int a = 0; a < 4; a++) { /* (B^T d) B */
                KELP_STORE16(dst + (a * 4 + 0) * plane + c, t[a][0] - t[a][2]);
                KELP_STORE16(dst + (a * 4 + 1) * plane + c, t[a][1] + t[a][2]);
                KELP_STORE16(dst + (a * 4 + 2) * plane + c, t[a][2] - t[a][1]);
                KELP_STORE16(dst + (a * 4 + 3) * plane + c, t[a][1] - t[a][3]);
            }
        }
    }
}

/* M[j][k0..] = sum_c V[j][c] U[c][k0..] for 8 rows of one position (the last ones repeating the last valid row),
 * VECS*16 output channels. */
#define PRODUCT_TILE(VECS)                                                                                            \
    do {                                                                                                              \
        kelp_vec16 acc[TILE_ROWS][VECS] = {{{0}}};                                                                    \
        const float *up = ux + k0;                                                                                    \
        for (int c = 0; c < d->c; c++, up += d->k) {                                                                  \
            kelp_vec16 uv[VECS];                                                                                      \
            for (int q = 0; q < VECS; q++)                                                                            \
                uv[q] = KELP_LOAD16(up + 16 * q);                                                                     \
            for (int j = 0; j < TILE_ROWS; j++) {                                                                     \
                const float vv = rows[j][c];                                                                          \
                for (int q = 0; q < VECS; q++)                                                                        \
                    acc[j][q] += vv * uv[q];                                                                          \
            }                                                                                                         \
        }                                                                                                             \
        for (int j = 0; j < valid; j++)                                                                               \
            for (int q = 0; q < VECS; q++)                                                                            \
                KELP_STORE16(mx + (int64_t)(j0 + j) * d->k + k0 + 16 * q, acc[j][q]);                                 \
    } while (0)

/* The 16 products of a block: v (16, stride, C) x u (16, C, K) -> m (16, stride, K), for `count` tiles. */
KELP_VECTOR_CLONES
static void block_products(const kelp_conv_desc *d, const float *v, const float *u, int count, int stride, float *m)
{
    const bool wide = d->k % 32 == 0;
    const int k_step = wide ? 32 : 16;
    for (int xi = 0; xi < POSITIONS; xi++) {
        const float *vx = v + (int64_t)xi * stride * d->c, *ux = u + (int64_t)xi * d->c * d->k;
        float *mx = m + (int64_t)xi * stride * d->k;
        for (int j0 = 0; j0 < count; j0 += TILE_ROWS) {
            const int valid = count - j0 < TILE_ROWS ? count - j0 : TILE_ROWS;
            const float *rows[TILE_ROWS];
            for (int j = 0; j < TILE_ROWS; j++)
                rows[j] = vx + (int64_t)(j0 + (j < valid ? j : valid - 1)) * d->c;
            for (int k0 = 0; k0 < d->k; k0 += k_step) {
                if (wide)
                    PRODUCT_TILE(2);
                else
                    PRODUCT_TILE(1);
            }
        }
    }
}

/* Y = A^T M A with A^T = [1 1 1 0; 0 1 -1 -1], through the epilogue and stored, or added (ep NULL), where the 2x2
 * block lies inside the output. */
KELP_VECTOR_CLONES
static void transform_outputs(const kelp_conv_desc *d, const float *m, const kelp_conv_epilogue *ep, bool accumulate,
                              int64_t tile0, int count, int stride, float *y)
{
    const int64_t plane = (int64_t)stride * d->k;
    for (int j = 0; j < count; j++) {
        int n, oh, ow;
        tile_origin(d, tile0 + j, &n, &oh, &ow);
        const bool inside[2][2] = {{true, ow + 1 < d->ow}, {oh + 1 < d->oh, oh + 1 < d->oh && ow + 1 < d->ow}};
        const float *src = m + (int64_t)j * d->k;
        float *y00 = y + (((int64_t)n * d->oh + oh) * d->ow + ow) * d->k;
        for (int k = 0; k < d->k; k += 16) {
            kelp_vec16 t[2][4];
            for (int b = 0; b < 4; b++) { /* t = A^T M */
                const kelp_vec16 m0 = KELP_LOAD16(src + (0 * 4 + b) * plane + k), m1 = KELP_LOAD16(src + (1 * 4 + b) * plane + k),
                            m2 = KELP_LOAD16(src + (2 * 4 + b) * plane + k), m3 = KELP_LOAD16(src + (3 * 4 + b) * plane + k);
                t[0][b] = m0 + m1 + m2;
                t[1][b] = m1 - m2 - m3;
            }
            kelp_vec16 out[2][2];
            for (int a = 0; a < 2; a++) { /* (A^T M) A */
                out[a][0] = t[a][0] + t[a][1] + t[a][2];
                out[a][1] = t[a][1] - t[a][2] - t[a][3];
            }
            if (ep)
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 2; b++)
                        KELP_EPILOGUE16(out[a][b], ep, k);
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 2; b++) {
                    if (!inside[a][b]) /* past the output's edge: no address is formed there */
                        continue;
                    float *dst = y00 + ((int64_t)a * d->ow + b) * d->k + k;
                    KELP_STORE16(dst, accumulate ? out[a][b] + KELP_LOAD16(dst) : out[a][b]);
                }
        }
    }
}

/* E[xi][j][k] = (A e A^T)[xi] for the block's tiles, e the 2x2 output gradients (zero past the output's edge). */
KELP_VECTOR_CLONES
static void transform_output_grads(const kelp_conv_desc *d, const float *dy, const float *zeros, int64_t tile0,
                                   int count, int stride, float *e)
{
    const int64_t plane = (int64_t)stride * d->k;
    for (int j = 0; j < count; j++) {
        int n, oh, ow;
        tile_origin(d, tile0 + j, &n, &oh, &ow);
        const float *px[2][2];
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++)
                px[a][b] = oh + a < d->oh && ow + b < d->ow
                               ? dy + (((int64_t)n * d->oh + oh + a) * d->ow + ow + b) * d->k
                               : zeros;
        float *dst = e + (int64_t)j * d->k;
        for (int k = 0; k < d->k; k += 16) {
            kelp_vec16 t[4][2];
            for (int b = 0; b < 2; b++) { /* t = A e */
                const kelp_vec16 e0 = KELP_LOAD16(px[0][b] + k), e1 = KELP_LOAD16(px[1][b] + k);
                t[0][b] = e0;
                t[1][b] = e0 + e1;
                t[2][b] = e0 - e1;
                t[3][b] = -e1;
            }
            for (int a = 0; a < 4; a++) { /* (A e) A^T */
                KELP_STORE16(dst + (a * 4 + 0) * plane + k, t[a][0]);
                KELP_STORE16(dst + (a * 4 + 1) * plane + k, t[a][0] + t[a][1]);
                KELP_STORE16(dst + (a * 4 + 2) * plane + k, t[a][0] - t[a][1]);
                KELP_STORE16(dst + (a * 4 + 3) * plane + k, -t[a][1]);
            }
        }
    }
}

/* One item of the weight gradient's products: dU[xi][c0..c0+CH][k0..k0+VECS*16] += sum over the block's tiles of
 * V[xi][j][c] E[xi][j][k], summed in registers and added to the double totals. */
#define GRADIENT_TILE(CH, VECS)                                                                                       \
    do {                                                                                                              \
        kelp_vec16 acc[CH][VECS] = {{{0}}};                                                                           \
        for (int j = 0; j < count; j++) {                                                                             \
            const float *vj = vx + (int64_t)j * d->c + c0;                                                            \
            kelp_vec16 g[VECS];                                                                                       \
            for (int q = 0; q < VECS; q++)                                                                            \
                g[q] = KELP_LOAD16(ex + (int64_t)j * d->k + k0 + 16 * q);                                             \
            for (int c = 0; c < CH; c++)                                                                              \
                for (int q = 0; q < VECS; q++)                                                                        \
                    acc[c][q] += vj[c] * g[q];                                                                        \
        }                                                                                                             \
        for (int c = 0; c < CH; c++)                                                                                  \
            for (int q = 0; q < VECS; q++) {                                                                          \
                double *dst = total + (int64_t)(c0 + c) * d->k + k0 + 16 * q;                                         \
                for (int i = 0; i < 16; i++)                                                                          \
                    dst[i] += acc[c][q][i];                                                                           \
            }                                                                                                         \
    } while (0)

KELP_VECTOR_CLONES
static void gradient_item(const kelp_conv_desc *d, const float *v, const float *e, int count, int stride, int xi,
                          int c0, int k0, bool wide, double *du)
{
    const float *vx = v + (int64_t)xi * stride * d->c, *ex = e + (int64_t)xi * stride * d->k;
    double *total = du + (int64_t)xi * d->c * d->k;
    if (wide)
        GRADIENT_TILE(8, 2);
    else
        GRADIENT_TILE(16, 1);
}

/* dw[k][r][s][c] += (G^T dU G) for each (c, k), G^T = [1 1/2 1/2 0; 0 1/2 -1/2 0; 0 1/2 1/2 1]. */
static void gradient_to_weights(int threads, const kelp_conv_desc *d, const double *du, float *dw)
{
    const int64_t plane = (int64_t)d->c * d->k;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int k = 0; k < d->k; k++)
        for (int c = 0; c < d->c; c++) {
            const double *src = du + (int64_t)c * d->k + k;
            double x[4][4], t[3][4];
            for (int xi = 0; xi < POSITIONS; xi++)
                x[xi / 4][xi % 4] = src[xi * plane];
            for (int b = 0; b < 4; b++) { /* G^T X */
                t[0][b] = x[0][b] + 0.5 * (x[1][b] + x[2][b]);
                t[1][b] = 0.5 * (x[1][b] - x[2][b]);
                t[2][b] = 0.5 * (x[1][b] + x[2][b]) + x[3][b];
            }
            float *dst = dw + (int64_t)k * 9 * d->c + c;
            for (int r = 0; r < 3; r++) { /* (G^T X) G */
                dst[(r * 3 + 0) * d->c] += (float)(t[r][0] + 0.5 * (t[r][1] + t[r][2]));
                dst[(r * 3 + 1) * d->c] += (float)(0.5 * (t[r][1] - t[r][2]));
                dst[(r * 3 + 2) * d->c] += (float)(0.5 * (t[r][1] + t[r][2]) + t[r][3]);
            }
        }
}

/* The weight gradient's blocks: each item sums over the whole block in registers before adding to its double
 * totals, so blocks are long (V and E up to 4 MiB: 512 tiles at 64 channels); with blocks of 64 tiles those
 * additions cost as much as the products. No longer than the convolution's tiles. */
static int gradient_block_tiles(const kelp_conv_desc *d)
{
    int64_t t = ((int64_t)4 << 20) / ((int64_t)POSITIONS * (d->c + d->k) * (int64_t)sizeof(float));
    const int64_t all = (tile_count(d) + TILE_ROWS - 1) / TILE_ROWS * TILE_ROWS;
    t = t / TILE_ROWS * TILE_ROWS;
    t = t < 2 * TILE_ROWS ? 2 * TILE_ROWS : t;
    return (int)(t < all ? t : all);
}

static size_t gradient_totals_floats(const kelp_conv_desc *d)
{
    return transformed_weights_floats(d) * (sizeof(double) / sizeof(float));
}

size_t kelp_cpu_conv_winograd_filter_workspace(const kelp_conv_desc *d)
{
    /* the double totals dU, one block's V and E shared by the threads, one pixel of zeros */
    return (gradient_totals_floats(d) + (size_t)POSITIONS * gradient_block_tiles(d) * (size_t)(d->c + d->k) +
            (size_t)(d->c > d->k ? d->c : d->k)) * sizeof(float);
}

void kelp_cpu_conv_winograd_backward_filter(int threads, const kelp_conv_desc *d, const float *x, const float *dy,
                                            float *dw, float *workspace)
{
    double *du = (double *)workspace;
    const int stride = gradient_block_tiles(d);
    float *v = workspace + gradient_totals_floats(d), *e = v + (size_t)POSITIONS * stride * d->c;
    float *zeros = e + (size_t)POSITIONS * stride * d->k;
    memset(zeros, 0, (size_t)(d->c > d->k ? d->c : d->k) * sizeof(float));
    memset(du, 0, transformed_weights_floats(d) * sizeof(double));
    const bool wide = d->k % 32 == 0;
    const int ch = wide ? 8 : 16, k_step = wide ? 32 : 16;
    const int c_tiles = d->c / ch, k_tiles = d->k / k_step, items = POSITIONS * c_tiles * k_tiles;
    const int64_t tiles = tile_count(d);
    /* Block after block: the threads transform the block's tiles together, then each takes a fixed share of the
     * (position, channel block, output-channel block) items, so every total is summed in block order by one thread
     * whatever the thread count. */
#pragma omp parallel num_threads(threads)
    for (int64_t tile0 = 0; tile0 < tiles; tile0 += stride) {
        const int count = tiles - tile0 < stride ? (int)(tiles - tile0) : stride;
#pragma omp for schedule(static)
        for (int j = 0; j < count; j++) {
            transform_inputs(d, x, zeros, tile0 + j, 1, stride, v + (int64_t)j * d->c);
            transform_output_grads(d, dy, zeros, tile0 + j, 1, stride, e + (int64_t)j * d->k);
        }
#pragma omp for schedule(static)
        for (int item = 0; item < items; item++) {
            const int xi = item / (c_tiles * k_tiles), ct = item / k_tiles % c_tiles, kt = item % k_tiles;
            gradient_item(d, v, e, count, stride, xi, ct * ch, kt * k_step, wide, du);
        }
    }
    gradient_to_weights(threads, d, du, dw);
}

void kelp_cpu_conv_winograd(int threads, const kelp_conv_desc *d, const float *x, const float *w, bool flipped,
                            const kelp_conv_epilogue *ep, bool accumulate, float *y, float *workspace)
{
    float *u = workspace, *scratch = u + transformed_weights_floats(d);
    float *zeros = scratch + (size_t)threads * block_floats(d);
    memset(zeros, 0, (size_t)d->c * sizeof(float));
    transform_weights(threads, d, w, flipped, u);
    const int stride = block_tiles(d);
    const int64_t blocks = (tile_count(d) + stride - 1) / stride;
#pragma omp parallel num_threads(threads)
    {
        int me = 0;
#ifdef _OPENMP
        me = omp_get_thread_num();
#endif
        float *v = scratch + (size_t)me * block_floats(d), *m = v + (size_t)POSITIONS * stride * d->c;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < blocks; b++) {
            const int64_t tile0 = b * stride;
            const int count = tile_count(d) - tile0 < stride ? (int)(tile_count(d) - tile0) : stride;
            transform_inputs(d, x, zeros, tile0, count, stride, v);
            block_products(d, v, u, count, stride, m);
            transform_outputs(d, m, ep, accumulate, tile0, count, stride, y);
        }
    }
}
