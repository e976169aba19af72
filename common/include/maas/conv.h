/*
 * conv.h - the kernels of convolutional and pooling layers (issue 23), on rows in Keras's
 * channels_last layout: a sample of an H x W x C input is H*W*C floats, row-major (so Keras's
 * Flatten is the identity on them). A 1-D layer is the 2-D one with H = 1 and a 1-high kernel.
 *
 * Geometry as Keras (and TensorFlow) define it:
 *   padding "valid": out = (in - k) / s + 1 (floor), no padding;
 *   padding "same":  out = ceil(in / s); pad = max((out - 1) * s + k - in, 0), pad / 2 before
 *                    (top, left), the rest after.
 * Convolution kernels are Keras's (kh, kw, C, F) arrays, row-major: as a (kh*kw*C) x F matrix
 * they multiply the rows of an im2col matrix whose columns run (ky, kx, c) - one GEMM per
 * batch (maas/gemm.h). Pooling: max ignores padded cells; average divides by the cells that
 * are not padding (TensorFlow's rule); a gradient of max pooling goes to the first maximum in
 * row-major order.
 */
#ifndef MAAS_CONV_H
#define MAAS_CONV_H

#include <stddef.h>
#include <stdint.h>

#include "maas/err.h"

typedef struct maas_conv_geom {
    int h, w, c; /* input rows, columns, channels */
    int kh, kw;  /* window (kernel or pool) */
    int sh, sw;  /* strides */
    int same;    /* 1: padding "same"; 0: "valid" */
    int f;       /* convolution: filters (output channels); pooling: c */
    int oh, ow;  /* output rows and columns (set by maas_conv_geom_init) */
    int pt, pl;  /* padding before: top, left (set) */
} maas_conv_geom;

/* Limits checked before anything is allocated. */
#define MAAS_CONV_MAX_DIM 65536   /* h, w, c, f */
#define MAAS_CONV_MAX_WINDOW 1024 /* kh, kw, sh, sw */

/*
 * Fills g (every field but oh, ow, pt, pl given) with the output size and padding, after
 * checking every size is in range (INVALID_ARGUMENT naming it) and the output not empty
 * ("valid" with a window larger than the input: SHAPE_MISMATCH).
 */
maas_err maas_conv_geom_init(maas_conv_geom *g, char *errstr, size_t errstr_size);

/* Floats of one sample out (oh * ow * f) and of the im2col workspace for rows samples. */
size_t maas_conv_out_floats(const maas_conv_geom *g);
size_t maas_conv_col_floats(const maas_conv_geom *g, size_t rows);

/* col (rows*oh*ow x kh*kw*c, maas_conv_col_floats floats) = the windows of x, zeros where they
 * cover padding: the left operand of the convolution's GEMM. */
void maas_conv_im2col(const maas_conv_geom *g, const float *x, size_t rows, float *col);

/* y (rows x oh*ow*f) = conv(x) + bias (NULL: none); col: maas_conv_col_floats floats. */
void maas_conv_forward(const maas_conv_geom *g, const float *x, size_t rows, const float *kernel,
                       const float *bias, float *col, float *y);
/*
 * Gradients of a convolution from dy (rows x oh*ow*f) at input x: dkernel and dbias (NULL:
 * no bias) are overwritten, or added to when accumulate (a batch taken in chunks); dx (NULL:
 * not wanted) gets the input's gradient. col: a workspace of maas_conv_col_floats floats (it
 * holds im2col(x) on return).
 */
void maas_conv_backward(const maas_conv_geom *g, const float *x, size_t rows, const float *kernel,
                        const float *dy, float *col, float *dkernel, float *dbias, float *dx,
                        int accumulate);

/* Max pooling: y (rows x oh*ow*c); argmax (same count, may be NULL): each output's input
 * index within its sample, for the backward pass. */
void maas_maxpool_forward(const maas_conv_geom *g, const float *x, size_t rows, float *y,
                          int32_t *argmax);
/* dx (rows x h*w*c) = the gradient of max pooling: dy routed to each window's maximum. */
void maas_maxpool_backward(const maas_conv_geom *g, const float *dy, size_t rows,
                           const int32_t *argmax, float *dx);
/* Average pooling (padding not counted) and its gradient. GlobalAveragePooling is average
 * pooling whose window is the whole input (kh = h, kw = w, "valid"). */
void maas_avgpool_forward(const maas_conv_geom *g, const float *x, size_t rows, float *y);
void maas_avgpool_backward(const maas_conv_geom *g, const float *dy, size_t rows, float *dx);

#endif
