/* GEMM on OpenBLAS. OpenBLAS keeps its own thread pool; kelp sets its size from the context so that the engine
 * and BLAS do not oversubscribe the cores. */
#include <cblas.h>

#include "kernels/cpu/cpu_kernels.h"

void kelp_cpu_gemm(int threads, bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
                   int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0)
        return;
    if (openblas_get_num_threads() != threads)
        openblas_set_num_threads(threads);
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k,
                alpha, a, lda, b, ldb, beta, c, ldc);
}
