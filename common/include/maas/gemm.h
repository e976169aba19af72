/*
 * gemm.h - the one BLAS wrapper (the only file that includes cblas.h).
 *
 * All matrices are row-major. op(X) is X or its transpose as selected by the
 * trans flags; lda/ldb/ldc are the row strides (in elements) of the stored
 * matrices, as in CBLAS row-major calls.
 */
#ifndef MAAS_GEMM_H
#define MAAS_GEMM_H

/* C[m x n] = alpha * op(A)[m x k] * op(B)[k x n] + beta * C. */
void maas_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
               const float *b, int ldb, float beta, float *c, int ldc);

/*
 * y = alpha * op(A) * x + beta * y, where A is stored m x n row-major.
 * With trans = 0, x has n elements and y has m; with trans = 1, x has m and y has n.
 */
void maas_gemv(int trans, int m, int n, float alpha, const float *a, int lda, const float *x,
               float beta, float *y);

/*
 * Sets the number of threads BLAS may use (default 1). This is process-wide
 * state of the BLAS library, so call it once at start-up, not per job.
 */
void maas_blas_set_threads(int n);

/* Short description of the BLAS build and the kernel it selected. Borrowed, static. */
const char *maas_blas_describe(void);

#endif
