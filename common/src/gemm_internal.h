/*
 * gemm_internal.h - oneDNN's float32 matmul for one Dense layer's batches in inference and
 * its direct convolution for a convolution layer's (gemm_dnnl.c; maas/cpu.h,
 * MAAS_FLOAT_GEMM). Not part of the library's API.
 */
#ifndef MAAS_GEMM_INTERNAL_H
#define MAAS_GEMM_INTERNAL_H

#include "maas/conv.h"

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

/* One convolution layer's primitives (per batch bucket, 8 .. 256 samples), made on first use;
 * new() makes no oneDNN call; one caller at a time (it is part of a maas_infer). */
typedef struct maas_cdnnl maas_cdnnl;
maas_cdnnl *maas__cdnnl_new(void);
void maas__cdnnl_free(maas_cdnnl *d);

/*
 * y (rows x oh*ow*f, channels last) = the convolution of x (rows x h*w*c) with the kernel w
 * (kh x kw x c x f, Keras's layout) + bias (NULL: none), then relu when relu is set, for the
 * first rows it can, in bucket-sized chunks (oneDNN's direct convolution); returns how many
 * (0: none — under 8 rows, MAAS_FLOAT_GEMM says openblas, oneDNN missing or refusing, or a
 * geometry other than the first call's); the caller computes the rest. The kernel is
 * reordered into oneDNN's layout when gen differs from the last call's (the caller changes
 * gen whenever the weights may have changed: each maas_infer_run).
 */
int maas__cdnnl_run(maas_cdnnl *d, const maas_conv_geom *g, const float *x, int rows,
                    const float *w, const float *bias, int relu, float *y, unsigned gen);

#endif
