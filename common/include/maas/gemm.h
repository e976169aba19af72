/*
 * gemm.h - float matrix products: the one BLAS wrapper (gemm.c, the only file that
 * includes cblas.h) and the project's own single-row kernel (rowvec.c).
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
 * y[n] = x[k] · W + beta * y, W stored k x n row-major (row stride ldw): one row through a
 * Dense layer. The project's own kernel (rowvec.c: AVX-512, AVX2 or plain C, at
 * maas_cpu_current()), not BLAS: it reads W once. beta 0 ignores y's contents.
 */
void maas_rowvec(int k, int n, const float *x, const float *w, int ldw, float beta, float *y);

/*
 * Sets the number of threads BLAS may use (default 1). This is process-wide
 * state of the BLAS library, so call it once at start-up, not per job.
 */
void maas_blas_set_threads(int n);

/* Short description of the BLAS build and the kernel it selected. Borrowed, static. */
const char *maas_blas_describe(void);

#endif
