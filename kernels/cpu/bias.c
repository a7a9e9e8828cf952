/* Per-channel bias over the rows of an NHWC tensor (or of a linear layer's output) and its gradient, and the
 * per-channel epilogue of a convolution whose kernel did not apply it in registers. */
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/simd.h"
#include "kernels/ops/conv.h"

/* Columns per gradient task: one cache line of floats, so threads never share a line of dy or db. */
#define BIAS_COLUMN_BLOCK 16

// y (rows, C) += bias (C)
void kelp_cpu_bias_add(int threads, int64_t rows, int c, const float *bias, float *y)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < rows; i++) {
        float *row = y + i * c;
        for (int j = 0; j < c; j++)
            row[j] += bias[j];
    }
}

KELP_VECTOR_CLONES
static void epilogue_rows(int64_t rows, int c, const kelp_conv_epilogue *ep, float *y)
{
    for (int64_t i = 0; i < rows; i++)
        for (int j = 0; j < c; j++)
            y[i * c + j] = kelp_conv_epilogue_value(ep, j, y[i * c + j]);
}

void kelp_cpu_conv_epilogue(int threads, int64_t rows, int c, const kelp_conv_epilogue *ep, float *y)
{
    if (!ep->scale && !ep->shift && ep->clamp == KELP_CLAMP_NONE)
        return;
#pragma omp parallel num_threads(threads)
    {
        int64_t begin, end;
        kelp_cpu_thread_slice(rows, 1, &begin, &end);
        epilogue_rows(end - begin, c, ep, y + begin * c);
    }
}

/* Parallel over column blocks rather than rows: each sum has one owner and runs in row order, so the result does
 * not depend on the thread count, and it is added to db once (backward twice gives exactly twice the gradient). */
// dy (rows, C) -> db (C) +=
void kelp_cpu_bias_backward(int threads, int64_t rows, int c, const float *dy, float *db)
{
    const int blocks = (c + BIAS_COLUMN_BLOCK - 1) / BIAS_COLUMN_BLOCK;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int b = 0; b < blocks; b++) {
        const int c0 = b * BIAS_COLUMN_BLOCK;
        const int len = c - c0 < BIAS_COLUMN_BLOCK ? c - c0 : BIAS_COLUMN_BLOCK;
        double acc[BIAS_COLUMN_BLOCK] = {0};
        for (int64_t i = 0; i < rows; i++) {
            const float *row = dy + i * c + c0;
            for (int j = 0; j < len; j++)
                acc[j] += row[j];
        }
        for (int j = 0; j < len; j++)
            db[c0 + j] += (float)acc[j];
    }
}
