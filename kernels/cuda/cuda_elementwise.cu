/* Elementwise and row kernels: activations, vector arithmetic, conversion between storage types, sum of squares,
 * bias, copies and layout changes, dropout, and the per-channel column sums that bias and batch norm reduce with.
 * The per-element math is kernels/ops, shared with the CPU kernels; each kernel does what its kernels/cpu twin does,
 * backward ones adding into their outputs. Activations are in the call's storage type (cuda_dtype.h: load to float,
 * compute, store); the optimizer's vectors (scale, sum of squares) are float. */
#include "kernels/cuda/cuda_internal.h"
#include "kernels/ops/activation.h"
#include "kernels/ops/conv.h"
#include "kernels/ops/dropout.h"

/* ---- activations and vector arithmetic ---- */

template <typename T> __global__ void act_forward_kernel(kelp_act_kind kind, float alpha, int64_t n, const T *x, T *y)
{
    GRID_STRIDE(i, n) store(y, i, kelp_act_forward(kind, alpha, load(x, i)));
}

template <typename T>
__global__ void act_backward_kernel(kelp_act_kind kind, float alpha, int64_t n, const T *x, const T *y, const T *dy,
                                    T *dx)
{
    GRID_STRIDE(i, n) store(dx, i, load(dx, i) + kelp_act_grad(kind, alpha, load(x, i), load(y, i), load(dy, i)));
}

template <typename T> __global__ void add_kernel(int64_t n, const T *a, const T *b, T *y)
{
    GRID_STRIDE(i, n) store(y, i, load(a, i) + load(b, i));
}

template <typename T> __global__ void axpy_kernel(int64_t n, float alpha, const T *x, T *y)
{
    GRID_STRIDE(i, n) store(y, i, load(y, i) + alpha * load(x, i));
}

__global__ void scale_kernel(int64_t n, float alpha, float *x)
{
    GRID_STRIDE(i, n) x[i] *= alpha;
}

kelp_status cuda_activation_forward(kelp_backend *be, kelp_dtype dt, kelp_act_kind kind, float alpha, int64_t n,
                                    const void *x, void *y)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    if (n <= 0)
        return KELP_OK;
    return cuda_dispatch(dt, "activation_forward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        act_forward_kernel<<<cuda_grid(n), CUDA_THREADS, 0, c->stream>>>(kind, alpha, n, (const T *)x, (T *)y);
        KELP_CUDA_LAUNCHED(act_forward_kernel);
        return KELP_OK;
    });
}

kelp_status cuda_activation_backward(kelp_backend *be, kelp_dtype dt, kelp_act_kind kind, float alpha, int64_t n,
                                     const void *x, const void *y, const void *dy, void *dx)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    if (n <= 0)
        return KELP_OK;
    return cuda_dispatch(dt, "activation_backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        act_backward_kernel<<<cuda_grid(n), CUDA_THREADS, 0, c->stream>>>(kind, alpha, n, (const T *)x, (const T *)y,
                                                                          (const T *)dy, (T *)dx);
        KELP_CUDA_LAUNCHED(act_backward_kernel);
        return KELP_OK;
    });
}

kelp_status cuda_add(kelp_backend *be, kelp_dtype dt, int64_t n, const void *a, const void *b, void *y)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    if (n <= 0)
        return KELP_OK;
    return cuda_dispatch(dt, "add", [&](auto tag) {
        using T = typename decltype(tag)::type;
        add_kernel<<<cuda_grid(n), CUDA_THREADS, 0, c->stream>>>(n, (const T *)a, (const T *)b, (T *)y);
        KELP_CUDA_LAUNCHED(add_kernel);
        return KELP_OK;
    });
}

kelp_status cuda_axpy(kelp_backend *be, kelp_dtype dt, int64_t n, float alpha, const void *x, void *y)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    if (n <= 0)
        return KELP_OK;
    return cuda_dispatch(dt, "axpy", [&](auto tag) {
        using T = typename decltype(tag)::type;
        axpy_kernel<<<cuda_grid(n), CUDA_THREADS, 0, c->stream>>>(n, alpha, (const T *)x, (T *)y);
        KELP_CUDA_LAUNCHED(axpy_kernel);
        return KELP_OK;
    });
}

/* ---- convert: y = x or y += x between storage types, through float (widening is exact, so one rounding) ---- */

template <typename S, typename D> __global__ void convert_kernel(int64_t n, const S *x, D *y, bool accumulate)
{
    GRID_STRIDE(i, n) store(y, i, accumulate ? load(y, i) + load(x, i) : load(x, i));
}

kelp_status cuda_convert(kelp_backend *be, int64_t n, kelp_dtype src_dt, const void *x, kelp_dtype dst_dt, void *y,
                         bool accumulate)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    if (n <= 0)
        return KELP_OK;
    if (src_dt == dst_dt && !accumulate && kelp_dtype_is_float(src_dt)) {
        if (x != y)
            KELP_CUDA_TRY(cudaMemcpyAsync(y, x, (size_t)n * cuda_dtype_bytes(src_dt), cudaMemcpyDeviceToDevice,
                                          c->stream));
        return KELP_OK;
    }
    return cuda_dispatch(src_dt, "convert", [&](auto src_tag) {
        using S = typename decltype(src_tag)::type;
        return cuda_dispatch(dst_dt, "convert", [&](auto dst_tag) {
            using D = typename decltype(dst_tag)::type;
            convert_kernel<<<cuda_grid(n), CUDA_THREADS, 0, c->stream>>>(n, (const S *)x, (D *)y, accumulate);
            KELP_CUDA_LAUNCHED(convert_kernel);
            return KELP_OK;
        });
    });
}

kelp_status cuda_scale(kelp_backend *be, int64_t n, float alpha, float *x)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    if (n <= 0)
        return KELP_OK;
    scale_kernel<<<cuda_grid(n), CUDA_THREADS, 0, c->stream>>>(n, alpha, x);
    KELP_CUDA_LAUNCHED(scale_kernel);
    return KELP_OK;
}

/* ---- sum of squares: per-block double partials, then one thread adds them in block order (deterministic) ---- */

#define SUMSQ_BLOCKS 1024

__global__ void sumsq_partial_kernel(int64_t n, const float *x, double *partials)
{
    __shared__ double shared[CUDA_THREADS];
    double acc = 0.0;
    GRID_STRIDE(i, n) acc += (double)x[i] * (double)x[i];
    shared[threadIdx.x] = acc;
    __syncthreads();
    for (int half = CUDA_THREADS / 2; half > 0; half /= 2) {
        if ((int)threadIdx.x < half)
            shared[threadIdx.x] += shared[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0)
        partials[blockIdx.x] = shared[0];
}

__global__ void add_in_order_kernel(int count, const double *partials, double *acc)
{
    double total = 0.0;
    for (int i = 0; i < count; i++)
        total += partials[i];
    *acc += total;
}

kelp_status cuda_sum_squares(kelp_backend *be, int64_t n, const float *x, double *acc)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    if (n <= 0)
        return KELP_OK;
    int64_t want = (n + CUDA_THREADS - 1) / CUDA_THREADS;
    int blocks = (int)(want < SUMSQ_BLOCKS ? want : SUMSQ_BLOCKS);
    double *partials;
    KELP_TRY(cuda_scratch(c, (size_t)blocks * sizeof(double), (void **)&partials));
    sumsq_partial_kernel<<<blocks, CUDA_THREADS, 0, c->stream>>>(n, x, partials);
    KELP_CUDA_LAUNCHED(sumsq_partial_kernel);
    add_in_order_kernel<<<1, 1, 0, c->stream>>>(blocks, partials, acc);
    KELP_CUDA_LAUNCHED(add_in_order_kernel);
    return KELP_OK;
}

/* ---- per-channel column sums over (rows, C) ----
 * A block covers 32 channels (one coalesced 128-byte row segment per warp) of one chunk of rows; its 8 warps take
 * every 8th row and meet in shared memory. Chunk partials are then summed in chunk order, so the result does not
 * depend on scheduling. */
#define COL_TX 32
#define COL_TY 8
#define COL_MAX_CHUNKS 1024
#define COL_MIN_CHUNK_ROWS 256

static int64_t chunk_rows(int64_t rows)
{
    int64_t per = (rows + COL_MAX_CHUNKS - 1) / COL_MAX_CHUNKS;
    return per < COL_MIN_CHUNK_ROWS ? COL_MIN_CHUNK_ROWS : per;
}

static int chunk_count(int64_t rows)
{
    int64_t per = chunk_rows(rows), n = (rows + per - 1) / per;
    return n < 1 ? 1 : (int)n;
}

size_t cuda_column_sums_scratch(int64_t rows, int c)
{
    return cuda_align((size_t)chunk_count(rows) * 2 * (size_t)c * sizeof(double));
}

template <typename T>
__global__ void column_partials_kernel(int mode, int64_t rows, int c, int64_t per_chunk, const T *a, const T *b,
                                       const double *mean_d, const float *mean_f, double *partials)
{
    __shared__ double s0[COL_TY][COL_TX], s1[COL_TY][COL_TX];
    const int tx = threadIdx.x, ty = threadIdx.y, ch = blockIdx.x * COL_TX + tx;
    const int64_t r0 = (int64_t)blockIdx.y * per_chunk;
    const int64_t r1 = r0 + per_chunk < rows ? r0 + per_chunk : rows;
    double acc0 = 0.0, acc1 = 0.0;
    if (ch < c) {
        double mean = mode == COL_CENTRED_SQ ? mean_d[ch] : mode == COL_DY_XMU ? (double)mean_f[ch] : 0.0;
        for (int64_t r = r0 + ty; r < r1; r += COL_TY) {
            double v = load(a, r * c + ch);
            if (mode == COL_SUM) {
                acc0 += v;
            } else if (mode == COL_CENTRED_SQ) {
                double d = v - mean;
                acc0 += d * d;
            } else {
                acc0 += v;
                acc1 += v * ((double)load(b, r * c + ch) - mean);
            }
        }
    }
    s0[ty][tx] = acc0;
    s1[ty][tx] = acc1;
    __syncthreads();
    if (ty != 0 || ch >= c)
        return;
    double t0 = 0.0, t1 = 0.0;
    for (int y = 0; y < COL_TY; y++) {
        t0 += s0[y][tx];
        t1 += s1[y][tx];
    }
    partials[(int64_t)blockIdx.y * 2 * c + ch] = t0;
    partials[((int64_t)blockIdx.y * 2 + 1) * c + ch] = t1;
}

__global__ void column_finish_kernel(int chunks, int c, const double *partials, double *out)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c)
        return;
    double t0 = 0.0, t1 = 0.0;
    for (int k = 0; k < chunks; k++) {
        t0 += partials[(int64_t)k * 2 * c + ch];
        t1 += partials[((int64_t)k * 2 + 1) * c + ch];
    }
    out[ch] = t0;
    out[c + ch] = t1;
}

kelp_status cuda_column_sums(cuda_impl *ci, kelp_dtype dt, int mode, int64_t rows, int c, const void *a,
                             const void *b, const double *mean_d, const float *mean_f, double *partials, double *out)
{
    int chunks = chunk_count(rows);
    dim3 grid((unsigned)((c + COL_TX - 1) / COL_TX), (unsigned)chunks), block(COL_TX, COL_TY);
    KELP_TRY(cuda_dispatch(dt, "column sums", [&](auto tag) {
        using T = typename decltype(tag)::type;
        column_partials_kernel<<<grid, block, 0, ci->stream>>>(mode, rows, c, chunk_rows(rows), (const T *)a,
                                                               (const T *)b, mean_d, mean_f, partials);
        KELP_CUDA_LAUNCHED(column_partials_kernel);
        return KELP_OK;
    }));
    column_finish_kernel<<<(c + CUDA_THREADS - 1) / CUDA_THREADS, CUDA_THREADS, 0, ci->stream>>>(chunks, c, partials,
                                                                                               out);
    KELP_CUDA_LAUNCHED(column_finish_kernel);
    return KELP_OK;
}

/* ---- bias ---- */

template <typename T> __global__ void bias_add_kernel(int64_t n, int c, const float *bias, T *y)
{
    GRID_STRIDE(i, n) store(y, i, load(y, i) + bias[i % c]);
}

__global__ void bias_grad_kernel(int c, const double *sums, float *db)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch < c)
        db[ch] += (float)sums[ch];
}

kelp_status cuda_bias_add(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const float *bias, void *y)
{
    cuda_impl *ci;
    KELP_TRY(cuda_enter(be, &ci));
    int64_t n = rows * c;
    if (n <= 0)
        return KELP_OK;
    return cuda_dispatch(dt, "bias_add", [&](auto tag) {
        using T = typename decltype(tag)::type;
        bias_add_kernel<<<cuda_grid(n), CUDA_THREADS, 0, ci->stream>>>(n, c, bias, (T *)y);
        KELP_CUDA_LAUNCHED(bias_add_kernel);
        return KELP_OK;
    });
}

__global__ void counter_add_kernel(int64_t *counter, int64_t delta) { *counter += delta; }

kelp_status cuda_counter_add(kelp_backend *be, int64_t *counter, int64_t delta)
{
    cuda_impl *ci;
    KELP_TRY(cuda_enter(be, &ci));
    counter_add_kernel<<<1, 1, 0, ci->stream>>>(counter, delta);
    KELP_CUDA_LAUNCHED(counter_add_kernel);
    return KELP_OK;
}

/* The epilogue struct travels by value; its scale and shift point into device memory (float, whatever y holds). */
template <typename T> __global__ void conv_epilogue_kernel(int64_t n, int c, kelp_conv_epilogue ep, T *y)
{
    GRID_STRIDE(i, n) store(y, i, kelp_conv_epilogue_value(&ep, (int)(i % c), load(y, i)));
}

// y (rows, C) = epilogue(y), in place
kelp_status cuda_conv_epilogue(cuda_impl *ci, kelp_dtype dt, int64_t rows, int c, const kelp_conv_epilogue *ep,
                               void *y)
{
    int64_t n = rows * c;
    if (n <= 0 || (!ep->scale && !ep->shift && ep->clamp == KELP_CLAMP_NONE))
        return KELP_OK;
    return cuda_dispatch(dt, "conv2d epilogue", [&](auto tag) {
        using T = typename decltype(tag)::type;
        conv_epilogue_kernel<<<cuda_grid(n), CUDA_THREADS, 0, ci->stream>>>(n, c, *ep, (T *)y);
        KELP_CUDA_LAUNCHED(conv_epilogue_kernel);
        return KELP_OK;
    });
}

// dy (rows, C) -> db (C) +=, summed in double as on the CPU
kelp_status cuda_bias_backward(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *dy, float *db)
{
    cuda_impl *ci;
    KELP_TRY(cuda_enter(be, &ci));
    if (rows <= 0 || c <= 0)
        return KELP_OK;
    size_t part = cuda_column_sums_scratch(rows, c);
    char *scratch;
    KELP_TRY(cuda_scratch(ci, part + cuda_align(2 * (size_t)c * sizeof(double)), (void **)&scratch));
    double *sums = (double *)(scratch + part);
    KELP_TRY(cuda_column_sums(ci, dt, COL_SUM, rows, c, dy, NULL, NULL, NULL, (double *)scratch, sums));
    bias_grad_kernel<<<(c + CUDA_THREADS - 1) / CUDA_THREADS, CUDA_THREADS, 0, ci->stream>>>(c, sums, db);
    KELP_CUDA_LAUNCHED(bias_grad_kernel);
    return KELP_OK;
}

/* ---- copies and layout ---- */

template <typename T>
__global__ void copy_rows_accumulate_kernel(int64_t rows, int cols, const T *src, int src_stride, T *dst,
                                            int dst_stride)
{
    GRID_STRIDE(i, rows * cols)
    {
        int64_t r = i / cols, j = i % cols, d = r * dst_stride + j;
        store(dst, d, load(dst, d) + load(src, r * src_stride + j));
    }
}

kelp_status cuda_copy_rows(kelp_backend *be, kelp_dtype dt, int64_t rows, int cols, const void *src, int src_stride,
                           void *dst, int dst_stride, bool accumulate)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    if (rows <= 0 || cols <= 0)
        return KELP_OK;
    return cuda_dispatch(dt, "copy_rows", [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (!accumulate) {
            KELP_CUDA_TRY(cudaMemcpy2DAsync(dst, (size_t)dst_stride * sizeof(T), src, (size_t)src_stride * sizeof(T),
                                            (size_t)cols * sizeof(T), (size_t)rows, cudaMemcpyDeviceToDevice,
                                            c->stream));
            return KELP_OK;
        }
        copy_rows_accumulate_kernel<<<cuda_grid(rows * cols), CUDA_THREADS, 0, c->stream>>>(
            rows, cols, (const T *)src, src_stride, (T *)dst, dst_stride);
        KELP_CUDA_LAUNCHED(copy_rows_accumulate_kernel);
        return KELP_OK;
    });
}

/* One thread per output element, writes coalesced. TODO: a shared-memory tiled transpose would also coalesce the
 * reads; these run once per flatten, not in the convolution stack. */
// x (N,H,W,C) -> y (N,C,H,W)
template <typename T> __global__ void nhwc_to_nchw_kernel(int64_t total, int64_t hw, int c, const T *x, T *y)
{
    GRID_STRIDE(i, total)
    {
        int64_t p = i % hw, plane = i / hw, ch = plane % c, b = plane / c;
        y[i] = x[(b * hw + p) * c + ch];
    }
}

// x (N,C,H,W) -> y (N,H,W,C) +=
template <typename T> __global__ void nchw_to_nhwc_acc_kernel(int64_t total, int64_t hw, int c, const T *x, T *y)
{
    GRID_STRIDE(i, total)
    {
        int64_t ch = i % c, pixel = i / c, p = pixel % hw, b = pixel / hw;
        store(y, i, load(y, i) + load(x, (b * c + ch) * hw + p));
    }
}

kelp_status cuda_nhwc_to_nchw(kelp_backend *be, kelp_dtype dt, int n, int h, int w, int c, const void *x, void *y)
{
    cuda_impl *ci;
    KELP_TRY(cuda_enter(be, &ci));
    int64_t hw = (int64_t)h * w, total = (int64_t)n * hw * c;
    if (total <= 0)
        return KELP_OK;
    return cuda_dispatch(dt, "nhwc_to_nchw", [&](auto tag) {
        using T = typename decltype(tag)::type;
        nhwc_to_nchw_kernel<<<cuda_grid(total), CUDA_THREADS, 0, ci->stream>>>(total, hw, c, (const T *)x, (T *)y);
        KELP_CUDA_LAUNCHED(nhwc_to_nchw_kernel);
        return KELP_OK;
    });
}

kelp_status cuda_nchw_to_nhwc_accumulate(kelp_backend *be, kelp_dtype dt, int n, int h, int w, int c, const void *x,
                                         void *y)
{
    cuda_impl *ci;
    KELP_TRY(cuda_enter(be, &ci));
    int64_t hw = (int64_t)h * w, total = (int64_t)n * hw * c;
    if (total <= 0)
        return KELP_OK;
    return cuda_dispatch(dt, "nchw_to_nhwc_accumulate", [&](auto tag) {
        using T = typename decltype(tag)::type;
        nchw_to_nhwc_acc_kernel<<<cuda_grid(total), CUDA_THREADS, 0, ci->stream>>>(total, hw, c, (const T *)x,
                                                                                   (T *)y);
        KELP_CUDA_LAUNCHED(nchw_to_nhwc_acc_kernel);
        return KELP_OK;
    });
}

/* ---- dropout: the CPU's Philox stream, one block of 4 draws per thread ----
 * The mask comes from kernels/ops/dropout.h as on the CPU, so it is the CPU's whatever the storage type. The seed
 * is derived in the kernel, from the step counter in device memory when there is one (a replayed step). */

template <typename T>
__global__ void dropout_forward_kernel(int64_t blocks, uint64_t first, uint64_t offset, uint64_t end, float p,
                                       float scale, kelp_rng_seed rng, const T *x, T *y, uint8_t *mask)
{
    const uint64_t seed = kelp_rng_seed_value(&rng);
    GRID_STRIDE(b, blocks)
    {
        int64_t lo, hi;
        kelp_dropout_block_mask(seed, first + (uint64_t)b, offset, end, p, mask, &lo, &hi);
        for (int64_t i = lo; i < hi; i++)
            store(y, i, mask[i] ? load(x, i) * scale : 0.0f);
    }
}

template <typename T>
__global__ void dropout_backward_kernel(int64_t n, float scale, const uint8_t *mask, const T *dy, T *dx)
{
    GRID_STRIDE(i, n)
    {
        if (mask[i])
            store(dx, i, load(dx, i) + load(dy, i) * scale);
    }
}

kelp_status cuda_dropout_forward(kelp_backend *be, kelp_dtype dt, int64_t n, float p, kelp_rng_seed seed,
                                 uint64_t offset, const void *x, void *y, uint8_t *mask)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    if (n <= 0)
        return KELP_OK;
    kelp_dropout_range r = kelp_dropout_blocks(offset, n);
    return cuda_dispatch(dt, "dropout_forward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        dropout_forward_kernel<<<cuda_grid(r.count), CUDA_THREADS, 0, c->stream>>>(
            r.count, r.first, offset, r.end, p, kelp_dropout_scale(p), seed, (const T *)x, (T *)y, mask);
        KELP_CUDA_LAUNCHED(dropout_forward_kernel);
        return KELP_OK;
    });
}

kelp_status cuda_dropout_backward(kelp_backend *be, kelp_dtype dt, int64_t n, float p, const uint8_t *mask,
                                  const void *dy, void *dx)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    if (n <= 0)
        return KELP_OK;
    return cuda_dispatch(dt, "dropout_backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        dropout_backward_kernel<<<cuda_grid(n), CUDA_THREADS, 0, c->stream>>>(n, kelp_dropout_scale(p), mask,
                                                                              (const T *)dy, (T *)dx);
        KELP_CUDA_LAUNCHED(dropout_backward_kernel);
        return KELP_OK;
    });
}
