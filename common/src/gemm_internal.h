/*
 * gemm_internal.h - oneDNN's float32 matmul for one Dense layer's batches in inference
 * (gemm_dnnl.c; maas/cpu.h, MAAS_FLOAT_GEMM). Not part of the library's API.
 */
#ifndef MAAS_GEMM_INTERNAL_H
#define MAAS_GEMM_INTERNAL_H

/* One layer's primitives (per batch bucket, 32 .. 1024 rows), made on first use. new()
 * makes no oneDNN call; one caller at a time (it is part of a maas_infer). */
typedef struct maas_fdnnl maas_fdnnl;
maas_fdnnl *maas__fdnnl_new(void);
void maas__fdnnl_free(maas_fdnnl *d);

/*
 * y[r x n] = x[r x k] · W[k x n] (+ bias, when not NULL) for the first rows it can, in
 * bucket-sized chunks; returns how many (0: none — under 32 rows, MAAS_FLOAT_GEMM says
 * openblas, oneDNN missing or refusing, or shapes other than the first call's); the caller
 * computes the rest. W row-major with stride n; x and y with row strides ldx and ldy.
 */
int maas__fdnnl_run(maas_fdnnl *d, int k, int n, const float *x, int ldx, int rows, const float *w,
                    const float *bias, float *y, int ldy);

#endif
