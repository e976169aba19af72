/*
 * norm.h - BatchNormalization's kernels (issue 23), on channels_last rows: a row holds s
 * positions of c channels (s = 1 after a Dense layer, H*W after a 2-D convolution); each
 * channel is normalized over the rows x s values of a batch. As Keras 3 computes it:
 *
 *   training   mean, var = the batch's mean and (biased) variance per channel;
 *              y = gamma (x - mean) / sqrt(var + epsilon) + beta;
 *              moving_mean = moving_mean momentum + mean (1 - momentum), moving_var likewise
 *   inference  y = gamma (x - moving_mean) / sqrt(moving_var + epsilon) + beta
 *
 * (Keras's defaults: momentum 0.99, epsilon 0.001, gamma ones, beta zeros, moving mean zeros,
 * moving variance ones.) Sums run in double: a channel's batch has tens of thousands of values.
 */
#ifndef MAAS_NORM_H
#define MAAS_NORM_H

#include <stddef.h>

typedef struct maas_bn_params {
    int c;                     /* channels */
    float epsilon;             /* Keras: 0.001 */
    float momentum;            /* Keras: 0.99 */
    const float *gamma, *beta; /* c each; NULL: 1 and 0 (scale=False, center=False) */
} maas_bn_params;

/* Inference: y = the normalization by the moving statistics (mean, var: c each). */
void maas_bn_infer(const maas_bn_params *p, const float *x, size_t rows, size_t s,
                   const float *mean, const float *var, float *y);

/*
 * Training: normalizes by the batch's statistics into y, keeps what the backward pass needs
 * (xhat: rows*s*c, the normalized values; inv_std: c), and moves the moving statistics
 * (moving_mean, moving_var: c each, updated in place; NULL: left alone).
 */
void maas_bn_train(const maas_bn_params *p, const float *x, size_t rows, size_t s, float *y,
                   float *xhat, float *inv_std, float *moving_mean, float *moving_var);

/* Gradients of a training-mode normalization: dgamma, dbeta (c each, overwritten; NULL when the
 * layer has none) and dx (rows*s*c). */
void maas_bn_backward(const maas_bn_params *p, const float *dy, size_t rows, size_t s,
                      const float *xhat, const float *inv_std, float *dgamma, float *dbeta,
                      float *dx);

#endif
