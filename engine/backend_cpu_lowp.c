/* BF16 and F16 activations on the CPU backend: float scratch around the float kernels (backend_cpu_lowp.h). */
#include "engine/backend_cpu_lowp.h"

#include <stdlib.h>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/ops/half.h"

/* Below this many elements a thread team costs more than the loop. */
#define PARALLEL_MIN 16384

static void *element(kelp_dtype dt, const void *p, int64_t i)
{
    return (char *)p + i * (int64_t)kelp_dtype_size(dt);
}

static void widen_bf16(int64_t n, const uint16_t *restrict src, float *restrict dst)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = kelp_bf16_to_float(src[i]);
}

static void widen_f16(int64_t n, const uint16_t *restrict src, float *restrict dst)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = kelp_f16_to_float(src[i]);
}

static void narrow_bf16(int64_t n, const float *restrict src, uint16_t *restrict dst)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = kelp_bf16_from_float(src[i]);
}

static void narrow_f16(int64_t n, const float *restrict src, uint16_t *restrict dst)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = kelp_f16_from_float(src[i]);
}

/* One contiguous run. Widening and narrowing, what every op on low-precision storage does, get loops of their own:
 * with the dtype a loop invariant inside kelp_lowp_load/store the compiler keeps a branch per element and does
 * not vectorize (4 ns an element instead of well under 1). */
static void convert_span(int64_t n, kelp_dtype src_dt, const void *src, kelp_dtype dst_dt, void *dst,
                         bool accumulate)
{
    if (!accumulate && src_dt == KELP_BF16 && dst_dt == KELP_F32)
        widen_bf16(n, src, dst);
    else if (!accumulate && src_dt == KELP_F16 && dst_dt == KELP_F32)
        widen_f16(n, src, dst);
    else if (!accumulate && src_dt == KELP_F32 && dst_dt == KELP_BF16)
        narrow_bf16(n, src, dst);
    else if (!accumulate && src_dt == KELP_F32 && dst_dt == KELP_F16)
        narrow_f16(n, src, dst);
    else
        for (int64_t i = 0; i < n; i++) {
            float v = kelp_lowp_load(src_dt, src, i);
            if (accumulate)
                v += kelp_lowp_load(dst_dt, dst, i);
            kelp_lowp_store(dst_dt, dst, i, v);
        }
}

/* dst (rows, dst_stride)[:, :cols] (+)= src (rows, src_stride)[:, :cols], converting between storage types. */
static void convert_rows(int threads, int64_t rows, int64_t cols, kelp_dtype src_dt, const void *src,
                         int64_t src_stride, kelp_dtype dst_dt, void *dst, int64_t dst_stride, bool accumulate)
{
    const int64_t n = rows * cols;
    if (rows == 1 || (src_stride == cols && dst_stride == cols)) {
        /* one run, split evenly between the threads even when it is a single row */
#pragma omp parallel num_threads(threads) if (n >= PARALLEL_MIN)
        {
            int64_t begin, end;
            kelp_cpu_thread_slice(n, 64, &begin, &end);
            convert_span(end - begin, src_dt, element(src_dt, src, begin), dst_dt, element(dst_dt, dst, begin),
                         accumulate);
        }
        return;
    }
#pragma omp parallel for num_threads(threads) if (n >= PARALLEL_MIN) schedule(static)
    for (int64_t r = 0; r < rows; r++)
        convert_span(cols, src_dt, element(src_dt, src, r * src_stride), dst_dt, element(dst_dt, dst, r * dst_stride),
                     accumulate);
}

void kelp_lowp_convert(int threads, int64_t n, kelp_dtype src_dt, const void *x, kelp_dtype dst_dt, void *y,
                       bool accumulate)
{
    if (n > 0)
        convert_rows(threads, 1, n, src_dt, x, n, dst_dt, y, n, accumulate);
}

kelp_status kelp_lowp_check(const char *op, kelp_dtype dt)
{
    if (kelp_dtype_is_float(dt))
        return KELP_OK;
    return kelp_set_error(KELP_ERR_UNSUPPORTED, "%s: the cpu backend stores activations as F32, BF16 or F16, not %s",
                          op, kelp_dtype_name(dt));
}

void kelp_lowp_begin(kelp_lowp_scope *s, const char *op, kelp_dtype dt, int threads)
{
    s->op = op;
    s->dt = dt;
    s->threads = threads;
    s->count = 0;
    s->status = kelp_lowp_check(op, dt);
}

static void widen(const kelp_lowp_scope *s, kelp_lowp_buffer *b)
{
    convert_rows(s->threads, b->rows, b->cols, s->dt, b->data, b->stride, KELP_F32, b->wide, b->cols, false);
    b->loaded = true;
}

/* The float copy of data (rows x cols, `stride` apart): the scope's own when the op names the same buffer twice
 * (an in-place op), so the kernel sees the aliasing the float path would. */
static float *attach(kelp_lowp_scope *s, void *data, int64_t rows, int64_t cols, int64_t stride, bool load,
                     bool written)
{
    if (s->status != KELP_OK || !data)
        return NULL;
    if (rows < 0 || cols < 0)
        rows = cols = 0;
    for (int i = 0; i < s->count; i++) {
        kelp_lowp_buffer *b = &s->buffers[i];
        if (b->data == data && b->rows == rows && b->cols == cols && b->stride == stride) {
            if (load && !b->loaded)
                widen(s, b);
            b->written |= written;
            return b->wide;
        }
    }
    if (s->count == KELP_LOWP_MAX_BUFFERS) {
        s->status = kelp_set_error(KELP_ERR_INVALID_ARG, "%s: more than %d low-precision buffers", s->op,
                                   KELP_LOWP_MAX_BUFFERS);
        return NULL;
    }
    const int64_t max_elements = (int64_t)(KELP_TENSOR_MAX_BYTES / sizeof(float));
    if (cols > 0 && rows > max_elements / cols) {
        s->status = kelp_set_error(KELP_ERR_NO_MEMORY, "%s: %lld x %lld elements of %s are too many to widen",
                                   s->op, (long long)rows, (long long)cols, kelp_dtype_name(s->dt));
        return NULL;
    }
    /* 64-byte aligned like the backend's own buffers, which the kernels' vector loops may count on */
    size_t bytes = ((size_t)(rows * cols) * sizeof(float) + 63) & ~(size_t)63;
    float *wide = aligned_alloc(64, bytes ? bytes : 64);
    if (!wide) {
        s->status = kelp_set_error(KELP_ERR_NO_MEMORY, "%s: cannot allocate %zu bytes to widen %s to float", s->op,
                                   bytes, kelp_dtype_name(s->dt));
        return NULL;
    }
    kelp_lowp_buffer *b = &s->buffers[s->count++];
    *b = (kelp_lowp_buffer){.data = data, .wide = wide, .rows = rows, .cols = cols, .stride = stride,
                            .written = written};
    if (load)
        widen(s, b);
    return wide;
}

const float *kelp_lowp_in(kelp_lowp_scope *s, const void *data, int64_t n)
{
    if (s->dt == KELP_F32)
        return data;
    /* attach only writes through the pointer of a buffer the op writes */
    return attach(s, (void *)data, 1, n, n, true, false);
}

float *kelp_lowp_out(kelp_lowp_scope *s, void *data, int64_t n, bool load)
{
    if (s->dt == KELP_F32)
        return data;
    return attach(s, data, 1, n, n, load, true);
}

const float *kelp_lowp_in_rows(kelp_lowp_scope *s, const void *data, int64_t rows, int64_t cols, int *ld)
{
    if (s->dt == KELP_F32)
        return data;
    const int stride = *ld;
    *ld = cols > 1 ? (int)cols : 1; /* BLAS wants a leading dimension of at least 1, even for empty matrices */
    return attach(s, (void *)data, rows, cols, stride, true, false);
}

float *kelp_lowp_out_rows(kelp_lowp_scope *s, void *data, int64_t rows, int64_t cols, int *ld, bool load)
{
    if (s->dt == KELP_F32)
        return data;
    const int stride = *ld;
    *ld = cols > 1 ? (int)cols : 1;
    return attach(s, data, rows, cols, stride, load, true);
}

kelp_status kelp_lowp_end(kelp_lowp_scope *s)
{
    for (int i = 0; i < s->count; i++) {
        kelp_lowp_buffer *b = &s->buffers[i];
        if (s->status == KELP_OK && b->written)
            convert_rows(s->threads, b->rows, b->cols, KELP_F32, b->wide, b->cols, s->dt, b->data, b->stride,
                         false);
        free(b->wide);
    }
    s->count = 0;
    return s->status;
}
