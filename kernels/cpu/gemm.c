/* GEMM on OpenBLAS, threaded by kelp's OpenMP pool rather than OpenBLAS's own.
 *
 * Debian's default OpenBLAS runs its own pthread pool. Beside kelp's OpenMP threads, whose workers spin for a
 * while after each parallel loop, the two pools fight for the cores: on 2 cores a ResNet-18 training step ran
 * ~1.5x slower than with passive OpenMP waiting. So BLAS runs single-threaded and kelp splits the output matrix
 * into one block per thread (by rows when there are more rows than columns, else by columns): one pool, no
 * oversubscription, and the same behaviour whichever OpenBLAS variant a machine has. */
#include <cblas.h>

#include "kernels/cpu/cpu_kernels.h"

void kelp_cpu_gemm_init(void) { openblas_set_num_threads(1); }

/* Below this many multiply-adds a split costs more than it saves. */
#define GEMM_SPLIT_MIN_WORK (1 << 18)

static void sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *c, int ldc)
{
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k,
                alpha, a, lda, b, ldb, beta, c, ldc);
}

void kelp_cpu_gemm(int threads, bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
                   int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0)
        return;
    double work = (double)m * n * k;
    if (threads <= 1 || work < GEMM_SPLIT_MIN_WORK) {
        sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    bool by_rows = m >= n;
    int extent = by_rows ? m : n;
    int parts = threads < extent ? threads : extent;
#pragma omp parallel for num_threads(parts) schedule(static, 1)
    for (int p = 0; p < parts; p++) {
        int begin = (int)((int64_t)extent * p / parts), end = (int)((int64_t)extent * (p + 1) / parts);
        if (by_rows) {
            /* rows [begin, end) of op(A) and C; op(A) row i is stored row i, or column i when transposed */
            const float *a_part = trans_a ? a + begin : a + (int64_t)begin * lda;
            sgemm(trans_a, trans_b, end - begin, n, k, alpha, a_part, lda, b, ldb, beta, c + (int64_t)begin * ldc,
                  ldc);
        } else {
            const float *b_part = trans_b ? b + (int64_t)begin * ldb : b + begin;
            sgemm(trans_a, trans_b, m, end - begin, k, alpha, a, lda, b_part, ldb, beta, c + begin, ldc);
        }
    }
}
