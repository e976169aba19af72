/*
 * BatchNormalization's kernels (maas/norm.h): per-channel statistics in double over a batch's
 * rows x positions, the normalization in float.
 */
#include "maas/norm.h"

#include <math.h>

/* Channels are taken in blocks of BLOCK, each block's sums kept on the stack: the passes run
 * along rows (channels contiguous) instead of striding by c, and every channel's sum still adds
 * its values in the same order (position by position), so the figures are those of one channel
 * at a time. */
#define BLOCK 256

void maas_bn_infer(const maas_bn_params *p, const float *x, size_t rows, size_t s,
                   const float *mean, const float *var, float *y) {
    size_t n = rows * s;
    int c = p->c;
    float a[BLOCK], b[BLOCK];
    for (int k0 = 0; k0 < c; k0 += BLOCK) { /* each channel's scale and shift once */
        int m = c - k0 < BLOCK ? c - k0 : BLOCK;
        for (int k = 0; k < m; k++) {
            a[k] = (p->gamma ? p->gamma[k0 + k] : 1.0f) / sqrtf(var[k0 + k] + p->epsilon);
            b[k] = p->beta ? p->beta[k0 + k] : 0.0f;
        }
        for (size_t i = 0; i < n; i++) {
            size_t j = i * (size_t)c + k0;
            for (int k = 0; k < m; k++) y[j + k] = (x[j + k] - mean[k0 + k]) * a[k] + b[k];
        }
    }
}

void maas_bn_train(const maas_bn_params *p, const float *x, size_t rows, size_t s, float *y,
                   float *xhat, float *inv_std, float *moving_mean, float *moving_var) {
    size_t n = rows * s;
    int c = p->c;
    double mean[BLOCK], sq[BLOCK];
    float g[BLOCK], b[BLOCK];
    double is[BLOCK];
    for (int k0 = 0; k0 < c; k0 += BLOCK) {
        int m = c - k0 < BLOCK ? c - k0 : BLOCK;
        for (int k = 0; k < m; k++) mean[k] = sq[k] = 0;
        for (size_t i = 0; i < n; i++) {
            const float *xi = x + i * (size_t)c + k0;
            for (int k = 0; k < m; k++) mean[k] += xi[k];
        }
        for (int k = 0; k < m; k++) mean[k] /= (double)n;
        for (size_t i = 0; i < n; i++) {
            const float *xi = x + i * (size_t)c + k0;
            for (int k = 0; k < m; k++) {
                double d = xi[k] - mean[k];
                sq[k] += d * d;
            }
        }
        for (int k = 0; k < m; k++) {
            int ch = k0 + k;
            double var = sq[k] / (double)n;
            is[k] = 1.0 / sqrt(var + p->epsilon);
            inv_std[ch] = (float)is[k];
            if (moving_mean)
                moving_mean[ch] =
                    moving_mean[ch] * p->momentum + (float)mean[k] * (1.0f - p->momentum);
            if (moving_var)
                moving_var[ch] = moving_var[ch] * p->momentum + (float)var * (1.0f - p->momentum);
            g[k] = p->gamma ? p->gamma[ch] : 1.0f;
            b[k] = p->beta ? p->beta[ch] : 0.0f;
        }
        for (size_t i = 0; i < n; i++) {
            size_t j = i * (size_t)c + k0;
            for (int k = 0; k < m; k++) {
                xhat[j + k] = (float)((x[j + k] - mean[k]) * is[k]);
                y[j + k] = xhat[j + k] * g[k] + b[k];
            }
        }
    }
}

void maas_bn_backward(const maas_bn_params *p, const float *dy, size_t rows, size_t s,
                      const float *xhat, const float *inv_std, float *dgamma, float *dbeta,
                      float *dx) {
    size_t n = rows * s;
    int c = p->c;
    double sb[BLOCK], sg[BLOCK], a[BLOCK];
    for (int k0 = 0; k0 < c; k0 += BLOCK) {
        int m = c - k0 < BLOCK ? c - k0 : BLOCK;
        for (int k = 0; k < m; k++) sb[k] = sg[k] = 0;
        for (size_t i = 0; i < n; i++) {
            size_t j = i * (size_t)c + k0;
            for (int k = 0; k < m; k++) {
                sb[k] += dy[j + k];
                sg[k] += (double)dy[j + k] * xhat[j + k];
            }
        }
        for (int k = 0; k < m; k++) {
            int ch = k0 + k;
            if (dgamma) dgamma[ch] = (float)sg[k];
            if (dbeta) dbeta[ch] = (float)sb[k];
            /* dx = gamma inv_std / n (n dy - sum dy - xhat sum dy xhat) */
            a[k] = (p->gamma ? p->gamma[ch] : 1.0) * inv_std[ch] / (double)n;
        }
        for (size_t i = 0; i < n; i++) {
            size_t j = i * (size_t)c + k0;
            for (int k = 0; k < m; k++)
                dx[j + k] = (float)(a[k] * ((double)n * dy[j + k] - sb[k] - xhat[j + k] * sg[k]));
        }
    }
}
