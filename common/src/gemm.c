/* The BLAS adapter: row-major sgemm through OpenBLAS's CBLAS. */
#include "maas/base.h"
#include "maas/gemm.h"

#include <cblas.h>

void maas_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
               const float *b, int ldb, float beta, float *c, int ldc) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void maas_blas_set_threads(int n) {
    openblas_set_num_threads(n < 1 ? 1 : n);
}

const char *maas_blas_describe(void) {
    return openblas_get_corename();
}
