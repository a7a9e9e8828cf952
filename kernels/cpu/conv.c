/* Convolution on NHWC activations and OHWI weights: im2col into the workspace, then one GEMM per group over the
 * whole batch.
 *
 * The column matrix is (N*OH*OW, G, R*S*Cg): row p holds, group after group, the input values output pixel p reads,
 * in the (r, s, c) order of a row of that group's weights (K/G, R, S, Cg). Group g's columns are then the strided
 * sub-matrix starting at column g*R*S*Cg with leading dimension R*S*C, so each group is one GEMM over all N*OH*OW
 * rows; output channels g*K/G.. of y (ldc = K) are its result.
 *
 * Two shapes skip im2col. A pointwise convolution (1x1, stride 1, no padding) reads exactly its own pixel: the NHWC
 * input already is the column matrix (most of ResNet-50). A depthwise convolution (G == C == K) would be C GEMMs
 * with one output column each, so it runs as a direct loop over channels instead.
 *
 * The input gradient of a stride-1 convolution is itself a convolution: dy, padded by dil*(R-1) - pad, convolved
 * with the weights flipped in space and with input and output channels swapped. It then runs like a forward pass,
 * im2col of dy and one GEMM that adds into dx, instead of a GEMM into a column matrix that col2im scatters back:
 * col2im cost twice what im2col does, and the column matrix had to be zeroed first. Strided convolutions keep
 * col2im, and so do large weights: flipping them is a transposition that costs more than col2im saves (7x7x512).
 *
 * Backward sums that land in dx/dw/db are formed locally and added once, so running backward twice without zeroing
 * gives exactly twice the gradient, and no sum's order depends on the thread count. */
#include <string.h>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/ops/conv.h"

/* Channels per local accumulator: a few cache lines, small enough to live on the stack. */
#define CHANNEL_CHUNK 64

typedef enum conv_path { CONV_GENERAL = 0, CONV_POINTWISE, CONV_DEPTHWISE } conv_path;


static conv_path path_of(const kelp_conv_desc *d)
{
    if (d->groups == d->c && d->k == d->c)
        return CONV_DEPTHWISE;
    /* oh == h: a transposed convolution's adjoint may read only a prefix of its input (output_padding) */
    if (d->r == 1 && d->s == 1 && d->stride_h == 1 && d->stride_w == 1 && d->pad_h == 0 && d->pad_w == 0 &&
        d->oh == d->h && d->ow == d->w)
        return CONV_POINTWISE;
    return CONV_GENERAL;
}

static int64_t out_pixels(const kelp_conv_desc *d) { return (int64_t)d->n * d->oh * d->ow; }

static int group_len(const kelp_conv_desc *d) { return d->r * d->s * (d->c / d->groups); }

static int row_len(const kelp_conv_desc *d) { return d->r * d->s * d->c; }

static size_t columns_bytes(const kelp_conv_desc *d) { return (size_t)out_pixels(d) * (size_t)row_len(d) * sizeof(float); }

/* The convolution whose forward pass is d's input gradient (dy -> dx), when there is one: stride 1, one group,
 * and the flipped padding dil*(R-1) - pad reproducing exactly dx's size (a transposed convolution's adjoint with
 * output padding does not). */
static bool flipped_conv(const kelp_conv_desc *d, kelp_conv_desc *flipped)
{
    if (d->stride_h != 1 || d->stride_w != 1 || d->groups != 1)
        return false;
    kelp_conv_desc f = *d;
    f.h = d->oh;
    f.w = d->ow;
    f.c = d->k;
    f.k = d->c;
    f.pad_h = d->dil_h * (d->r - 1) - d->pad_h;
    f.pad_w = d->dil_w * (d->s - 1) - d->pad_w;
    f.oh = d->h;
    f.ow = d->w;
    if (f.pad_h < 0 || f.pad_w < 0 || kelp_conv_out_size(f.h, f.r, 1, f.pad_h, f.dil_h) != d->h ||
        kelp_conv_out_size(f.w, f.s, 1, f.pad_w, f.dil_w) != d->w)
        return false;
    *flipped = f;
    return true;
}

// w (K,R,S,C) -> wf (C,R,S,K) with wf[c][r][s][k] = w[k][R-1-r][S-1-s][c]
static void flip_weights(const kelp_conv_desc *d, const float *w, float *wf)
{
    for (int k = 0; k < d->k; k++)
        for (int r = 0; r < d->r; r++)
            for (int s = 0; s < d->s; s++) {
                const float *src = w + (((int64_t)k * d->r + r) * d->s + s) * d->c;
                int fr = d->r - 1 - r, fs = d->s - 1 - s;
                for (int c = 0; c < d->c; c++)
                    wf[(((int64_t)c * d->r + fr) * d->s + fs) * d->k + k] = src[c];
            }
}

/* col2im's tables of which output each (input position, tap) reads, one per axis, after the column matrix: they
 * take the stride's division out of the innermost loops. */
static size_t tap_tables_bytes(const kelp_conv_desc *d)
{
    return ((size_t)d->h * (size_t)d->r + (size_t)d->w * (size_t)d->s) * sizeof(int);
}

static void fill_tap_table(int in_size, int taps, int stride, int pad, int dil, int out_size, int *table)
{
    for (int i = 0; i < in_size; i++)
        for (int t = 0; t < taps; t++)
            table[i * taps + t] = kelp_conv_tap_source(i, t, stride, pad, dil, out_size);
}

/* How the input gradient of a general-path convolution is formed (see the top). */
typedef enum input_grad_scheme {
    INPUT_GRAD_COL2IM = 0,
    INPUT_GRAD_FLIPPED_WINOGRAD,
    INPUT_GRAD_FLIPPED_DIRECT,
    INPUT_GRAD_FLIPPED_GEMM,
} input_grad_scheme;

/* Weights up to this many elements (256 KiB) flip while they sit in cache. */
#define FLIP_MAX_WEIGHTS (1 << 16)

static input_grad_scheme input_grad_scheme_of(const kelp_conv_desc *d, kelp_conv_desc *flipped)
{
    if (!flipped_conv(d, flipped))
        return INPUT_GRAD_COL2IM;
    if (kelp_cpu_conv_winograd_fits(flipped))
        return INPUT_GRAD_FLIPPED_WINOGRAD;
    if (kelp_cpu_conv_direct_fits(flipped))
        return INPUT_GRAD_FLIPPED_DIRECT;
    return (int64_t)d->k * row_len(d) <= FLIP_MAX_WEIGHTS ? INPUT_GRAD_FLIPPED_GEMM : INPUT_GRAD_COL2IM;
}

size_t kelp_cpu_conv2d_workspace(int threads, const kelp_conv_desc *d)
{
    switch (path_of(d)) {
    case CONV_POINTWISE:
        return 0;
    case CONV_DEPTHWISE:
        return (size_t)d->r * d->s * d->c * sizeof(float);
    case CONV_GENERAL:
        break;
    }
    /* forward and weight gradient share a scheme (Winograd, direct or im2col); the input gradient may take another
     * (see the top) */
    size_t forward = kelp_cpu_conv_direct_fits(d) ? kelp_cpu_conv_direct_workspace(d) : columns_bytes(d);
    if (kelp_cpu_conv_winograd_fits(d)) {
        size_t winograd = kelp_cpu_conv_winograd_workspace(threads, d),
               filter = kelp_cpu_conv_winograd_filter_workspace(d);
        forward = winograd > filter ? winograd : filter;
    }
    size_t input_grad = 0;
    kelp_conv_desc f;
    switch (input_grad_scheme_of(d, &f)) {
    case INPUT_GRAD_COL2IM: input_grad = columns_bytes(d) + tap_tables_bytes(d); break;
    case INPUT_GRAD_FLIPPED_WINOGRAD: input_grad = kelp_cpu_conv_winograd_workspace(threads, &f); break;
    case INPUT_GRAD_FLIPPED_DIRECT: input_grad = kelp_cpu_conv_direct_workspace(&f); break;
    case INPUT_GRAD_FLIPPED_GEMM:
        input_grad = columns_bytes(&f) + (size_t)d->k * (size_t)row_len(d) * sizeof(float);
        break;
    }
    return forward > input_grad ? forward : input_grad;
}

// x (N,H,W,C) -> cols (N*OH*OW, G, R, S, Cg); taps that fall in the padding are zeros
static void im2col(int threads, const kelp_conv_desc *d, const float *x, float *cols)
{
    const int cg = d->c / d->groups, glen = group_len(d), rlen = row_len(d);
    /* With one group and no horizontal dilation, the taps of one kernel row read S neighbouring pixels, which NHWC
     * stores back to back: one copy per kernel row instead of one per tap. */
    const bool row_copies = d->groups == 1 && d->dil_w == 1;
#pragma omp parallel for collapse(3) num_threads(threads) schedule(static)
    for (int n = 0; n < d->n; n++)
        for (int oh = 0; oh < d->oh; oh++)
            for (int ow = 0; ow < d->ow; ow++) {
                float *row = cols + (((int64_t)n * d->oh + oh) * d->ow + ow) * rlen;
                const int iw0 = ow * d->stride_w - d->pad_w;
                for (int r = 0; r < d->r; r++) {
                    int ih = oh * d->stride_h - d->pad_h + r * d->dil_h;
                    float *dst_row = row + r * d->s * cg;
                    if (ih < 0 || ih >= d->h) {
                        for (int g = 0; g < d->groups; g++)
                            memset(dst_row + g * glen, 0, (size_t)d->s * cg * sizeof(float));
                        continue;
                    }
                    const float *src_row = x + ((int64_t)n * d->h + ih) * d->w * d->c;
                    if (row_copies) {
                        int s0 = iw0 < 0 ? -iw0 : 0, s1 = d->w - iw0 < d->s ? d->w - iw0 : d->s;
                        if (s1 <= s0) {
                            memset(dst_row, 0, (size_t)d->s * cg * sizeof(float));
                            continue;
                        }
                        memset(dst_row, 0, (size_t)s0 * cg * sizeof(float));
                        memcpy(dst_row + s0 * cg, src_row + (int64_t)(iw0 + s0) * d->c,
                               (size_t)(s1 - s0) * cg * sizeof(float));
                        memset(dst_row + s1 * cg, 0, (size_t)(d->s - s1) * cg * sizeof(float));
                        continue;
                    }
                    for (int s = 0; s < d->s; s++) {
                        int iw = iw0 + s * d->dil_w;
                        float *dst = dst_row + s * cg;
                        for (int g = 0; g < d->groups; g++) {
                            if (iw < 0 || iw >= d->w)
                                memset(dst + g * glen, 0, (size_t)cg * sizeof(float));
                            else
                                memcpy(dst + g * glen, src_row + (int64_t)iw * d->c + g * cg, (size_t)cg * sizeof(float));
                        }
                    }
                }
            }
}

// cols (N*OH*OW, G, R, S, Cg) -> dx (N,H,W,C) +=; each input pixel gathers the taps that read it
static void col2im_accumulate(int threads, const kelp_conv_desc *d, const float *cols, float *dx, int *tables)
{
    const int cg = d->c / d->groups, glen = group_len(d), rlen = row_len(d);
    int *source_h = tables, *source_w = tables + (size_t)d->h * d->r;
    fill_tap_table(d->h, d->r, d->stride_h, d->pad_h, d->dil_h, d->oh, source_h);
    fill_tap_table(d->w, d->s, d->stride_w, d->pad_w, d->dil_w, d->ow, source_w);
#pragma omp parallel for collapse(3) num_threads(threads) schedule(static)
    for (int n = 0; n < d->n; n++)
        for (int ih = 0; ih < d->h; ih++)
            for (int iw = 0; iw < d->w; iw++) {
                float *dxp = dx + (((int64_t)n * d->h + ih) * d->w + iw) * d->c;
                for (int g = 0; g < d->groups; g++)
                    for (int c0 = 0; c0 < cg; c0 += CHANNEL_CHUNK) {
                        int len = cg - c0 < CHANNEL_CHUNK ? cg - c0 : CHANNEL_CHUNK;
                        float acc[CHANNEL_CHUNK];
                        for (int c = 0; c < len; c++)
                            acc[c] = 0.0f;
                        for (int r = 0; r < d->r; r++) {
                            int oh = source_h[ih * d->r + r];
                            if (oh < 0)
                                continue;
                            for (int s = 0; s < d->s; s++) {
                                int ow = source_w[iw * d->s + s];
                                if (ow < 0)
                                    continue;
                                const float *src = cols + (((int64_t)n * d->oh + oh) * d->ow + ow) * rlen +
                                                   g * glen + (r * d->s + s) * cg + c0;
                                for (int c = 0; c < len; c++)
                                    acc[c] += src[c];
                            }
                        }
                        float *dst = dxp + g * cg + c0;
                        for (int c = 0; c < len; c++)
                            dst[c] += acc[c];
                    }
            }
}

// w (C,R,S,1) -> wt (R,S,C): channels contiguous for the depthwise inner loops
static void depthwise_transpose_weights(const kelp_conv_desc *d, const float *w, float *wt)
{
    const int taps = d->r * d->s;
    for (int c = 0; c < d->c; c++)
        for (int t = 0; t < taps; t++)
            wt[(int64_t)t * d->c + c] = w[(int64_t)c * taps + t];
}

// x (N,H,W,C), w (C,R,S,1) -> y (N,OH,OW,C) through the epilogue
static void depthwise_forward(int threads, const kelp_conv_desc *d, const float *x, const float *w,
                              const kelp_conv_epilogue *ep, float *y, float *wt)
{
    const int C = d->c;
    depthwise_transpose_weights(d, w, wt);
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int n = 0; n < d->n; n++)
        for (int oh = 0; oh < d->oh; oh++)
            for (int ow = 0; ow < d->ow; ow++) {
                float *yp = y + (((int64_t)n * d->oh + oh) * d->ow + ow) * C;
                for (int c = 0; c < C; c++)
                    yp[c] = 0.0f;
                for (int r = 0; r < d->r; r++) {
                    int ih = oh * d->stride_h - d->pad_h + r * d->dil_h;
                    if (ih < 0 || ih >= d->h)
                        continue;
                    for (int s = 0; s < d->s; s++) {
                        int iw = ow * d->stride_w - d->pad_w + s * d->dil_w;
                        if (iw < 0 || iw >= d->w)
                            continue;
                        const float *xp = x + (((int64_t)n * d->h + ih) * d->w + iw) * C;
                        const float *wp = wt + (int64_t)(r * d->s + s) * C;
                        for (int c = 0; c < C; c++)
                            yp[c] += xp[c] * wp[c];
                    }
                }
                for (int c = 0; c < C; c++)
                    yp[c] = kelp_conv_epilogue_value(ep, c, yp[c]);
            }
}

// dy (N,OH,OW,C), w (C,R,S,1) -> dx (N,H,W,C) +=; gathered per input pixel like col2im
static void depthwise_backward_data(int threads, const kelp_conv_desc *d, const float *dy, const float *w,
                                    float *dx, float *wt)
{
    const int C = d->c;
    depthwise_transpose_weights(d, w, wt);
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int n = 0; n < d->n; n++)
        for (int ih = 0; ih < d->h; ih++)
            for (int iw = 0; iw < d->w; iw++) {
                float *dxp = dx + (((int64_t)n * d->h + ih) * d->w + iw) * C;
                for (int c0 = 0; c0 < C; c0 += CHANNEL_CHUNK) {
                    int len = C - c0 < CHANNEL_CHUNK ? C - c0 : CHANNEL_CHUNK;
                    float acc[CHANNEL_CHUNK] = {0};
                    for (int r = 0; r < d->r; r++) {
                        int oh = kelp_conv_tap_source(ih, r, d->stride_h, d->pad_h, d->dil_h, d->oh);
                        if (oh < 0)
                            continue;
                        for (int s = 0; s < d->s; s++) {
                            int ow = kelp_conv_tap_source(iw, s, d->stride_w, d->pad_w, d->dil_w, d->ow);
                            if (ow < 0)
                                continue;
                            const float *dyp = dy + (((int64_t)n * d->oh + oh) * d->ow + ow) * C + c0;
                            const float *wp = wt + (int64_t)(r * d->s + s) * C + c0;
                            for (int c = 0; c < len; c++)
                                acc[c] += dyp[c] * wp[c];
                        }
                    }
                    for (int c = 0; c < len; c++)
                        dxp[c0 + c] += acc[c];
                }
            }
}

/* One tap and one chunk of channels per task, so every dw element has a single owner. Each image's sum is added into
 * a double total: the float partials stay short even for large batches. */
// x (N,H,W,C), dy (N,OH,OW,C) -> dw (C,R,S,1) +=
static void depthwise_backward_filter(int threads, const kelp_conv_desc *d, const float *x, const float *dy,
                                      float *dw)
{
    const int C = d->c, taps = d->r * d->s, chunks = (C + CHANNEL_CHUNK - 1) / CHANNEL_CHUNK;
#pragma omp parallel for collapse(2) num_threads(threads) schedule(dynamic)
    for (int t = 0; t < taps; t++)
        for (int chunk = 0; chunk < chunks; chunk++) {
            const int r = t / d->s, s = t % d->s, c0 = chunk * CHANNEL_CHUNK;
            const int len = C - c0 < CHANNEL_CHUNK ? C - c0 : CHANNEL_CHUNK;
            double total[CHANNEL_CHUNK] = {0};
            for (int n = 0; n < d->n; n++) {
                float acc[CHANNEL_CHUNK] = {0};
                for (int oh = 0; oh < d->oh; oh++) {
                    int ih = oh * d->stride_h - d->pad_h + r * d->dil_h;
                    if (ih < 0 || ih >= d->h)
                        continue;
                    for (int ow = 0; ow < d->ow; ow++) {
                        int iw = ow * d->stride_w - d->pad_w + s * d->dil_w;
                        if (iw < 0 || iw >= d->w)
                            continue;
                        const float *xp = x + (((int64_t)n * d->h + ih) * d->w + iw) * C + c0;
                        const float *dyp = dy + (((int64_t)n * d->oh + oh) * d->ow + ow) * C + c0;
                        for (int c = 0; c < len; c++)
                            acc[c] += dyp[c] * xp[c];
                    }
                }
                for (int c = 0; c < len; c++)
                    total[c] += acc[c];
            }
            for (int c = 0; c < len; c++)
                dw[(int64_t)(c0 + c) * taps + t] += (float)total[c];
        }
}

/* The column matrix of x: x itself on the pointwise path, im2col into the workspace otherwise. */
static const float *columns(int threads, const kelp_conv_desc *d, conv_path path, const float *x, float *workspace)
{
    if (path != CONV_GENERAL)
        return x;
    im2col(threads, d, x, workspace);
    return workspace;
}

void kelp_cpu_conv2d_forward(int threads, const kelp_conv_desc *d, const float *x, const float *w,
                             const kelp_conv_epilogue *ep, float *y, float *workspace)
{
    const kelp_conv_epilogue none = {0};
    ep = ep ? ep : &none;
    conv_path path = path_of(d);
    if (path == CONV_DEPTHWISE) {
        depthwise_forward(threads, d, x, w, ep, y, workspace);
        return;
    }
    if (path == CONV_GENERAL && kelp_cpu_conv_winograd_fits(d)) {
        kelp_cpu_conv_winograd(threads, d, x, w, false, ep, false, y, workspace);
        return;
    }
    if (path == CONV_GENERAL && kelp_cpu_conv_direct_fits(d)) {
        kelp_cpu_conv_direct_forward(threads, d, x, w, ep, y, workspace);
        return;
    }
    const float *cols = columns(threads, d, path, x, workspace);
    // cols (N*OH*OW, G, R*S*Cg) x w_g^T (R*S*Cg, K/G) -> y (N*OH*OW, K)
    const int kg = d->k / d->groups, glen = group_len(d);
    for (int g = 0; g < d->groups; g++)
        kelp_cpu_gemm(threads, false, true, (int)out_pixels(d), kg, glen, 1.0f, cols + g * glen, row_len(d),
                      w + (int64_t)g * kg * glen, glen, 0.0f, y + g * kg, d->k);
    kelp_cpu_conv_epilogue(threads, out_pixels(d), d->k, ep, y);
}

void kelp_cpu_conv2d_backward_data(int threads, const kelp_conv_desc *d, const float *dy, const float *w,
                                   float *dx, float *workspace)
{
    conv_path path = path_of(d);
    if (path == CONV_DEPTHWISE) {
        depthwise_backward_data(threads, d, dy, w, dx, workspace);
        return;
    }
    kelp_conv_desc f;
    input_grad_scheme scheme = path == CONV_GENERAL ? input_grad_scheme_of(d, &f) : INPUT_GRAD_COL2IM;
    if (scheme == INPUT_GRAD_FLIPPED_WINOGRAD) {
        kelp_cpu_conv_winograd(threads, &f, dy, w, true, NULL, true, dx, workspace);
        return;
    }
    if (scheme == INPUT_GRAD_FLIPPED_DIRECT) {
        kelp_cpu_conv_direct_backward_data(threads, &f, dy, w, dx, workspace);
        return;
    }
    if (scheme == INPUT_GRAD_FLIPPED_GEMM) {
        // im2col(dy) (N*H*W, R*S*K) x wf^T (R*S*K, C) -> dx (N*H*W, C) +=
        float *wf = workspace + columns_bytes(&f) / sizeof(float);
        flip_weights(d, w, wf);
        const float *cols = columns(threads, &f, CONV_GENERAL, dy, workspace);
        kelp_cpu_gemm(threads, false, true, (int)out_pixels(&f), f.k, row_len(&f), 1.0f, cols, row_len(&f), wf,
                      row_len(&f), 1.0f, dx, d->c);
        return;
    }
    /* The pointwise path accumulates straight into dx (beta = 1); the general one fills dcols, then col2im adds. */
    float *dcols = path == CONV_POINTWISE ? dx : workspace;
    float beta = path == CONV_POINTWISE ? 1.0f : 0.0f;
    // dy_g (N*OH*OW, K/G) x w_g (K/G, R*S*Cg) -> dcols (N*OH*OW, G, R*S*Cg)
    const int kg = d->k / d->groups, glen = group_len(d);
    for (int g = 0; g < d->groups; g++)
        kelp_cpu_gemm(threads, false, false, (int)out_pixels(d), glen, kg, 1.0f, dy + g * kg, d->k,
                      w + (int64_t)g * kg * glen, glen, beta, dcols + g * glen, row_len(d));
    if (path == CONV_GENERAL)
        col2im_accumulate(threads, d, dcols, dx, (int *)(dcols + out_pixels(d) * row_len(d)));
}

void kelp_cpu_conv2d_backward_filter(int threads, const kelp_conv_desc *d, const float *x, const float *dy,
                                     float *dw, float *db, float *workspace)
{
    if (db)
        kelp_cpu_bias_backward(threads, out_pixels(d), d->k, dy, db);
    conv_path path = path_of(d);
    if (path == CONV_DEPTHWISE) {
        depthwise_backward_filter(threads, d, x, dy, dw);
        return;
    }
    if (path == CONV_GENERAL && kelp_cpu_conv_winograd_fits(d)) {
        kelp_cpu_conv_winograd_backward_filter(threads, d, x, dy, dw, workspace);
        return;
    }
    if (path == CONV_GENERAL && kelp_cpu_conv_direct_fits(d)) {
        kelp_cpu_conv_direct_backward_filter(threads, d, x, dy, dw, workspace);
        return;
    }
    const float *cols = columns(threads, d, path, x, workspace);
    // dy_g^T (K/G, N*OH*OW) x cols_g (N*OH*OW, R*S*Cg) -> dw_g (K/G, R*S*Cg) +=
    const int kg = d->k / d->groups, glen = group_len(d);
    for (int g = 0; g < d->groups; g++)
        kelp_cpu_gemm(threads, true, false, kg, glen, (int)out_pixels(d), 1.0f, dy + g * kg, d->k,
                      cols + g * glen, row_len(d), 1.0f, dw + (int64_t)g * kg * glen, glen);
}
