/*
 * BatchNormalization's kernels (maas/norm.h): per-channel statistics in double over a batch's
 * rows x positions, the normalization in float.
 */
#include "maas/norm.h"

#include <math.h>

void maas_bn_infer(const maas_bn_params *p, const float *x, size_t rows, size_t s,
                   const float *mean, const float *var, float *y) {
    size_t n = rows * s;
    int c = p->c;
    for (int k = 0; k < c; k++) { /* the channel's scale and shift once, then its values */
        float a = (p->gamma ? p->gamma[k] : 1.0f) / sqrtf(var[k] + p->epsilon);
        float b = p->beta ? p->beta[k] : 0.0f;
        for (size_t i = 0; i < n; i++) {
            size_t j = i * (size_t)c + k;
            y[j] = (x[j] - mean[k]) * a + b;
        }
    }
}

void maas_bn_train(const maas_bn_params *p, const float *x, size_t rows, size_t s, float *y,
                   float *xhat, float *inv_std, float *moving_mean, float *moving_var) {
    size_t n = rows * s;
    int c = p->c;
    for (int k = 0; k < c; k++) { /* one channel at a time: nothing to allocate */
        double mean = 0, sq = 0;
        for (size_t i = 0; i < n; i++) mean += x[i * (size_t)c + k];
        mean /= (double)n;
        for (size_t i = 0; i < n; i++) {
            double d = x[i * (size_t)c + k] - mean;
            sq += d * d;
        }
        double var = sq / (double)n, is = 1.0 / sqrt(var + p->epsilon);
        inv_std[k] = (float)is;
        if (moving_mean)
            moving_mean[k] = moving_mean[k] * p->momentum + (float)mean * (1.0f - p->momentum);
        if (moving_var)
            moving_var[k] = moving_var[k] * p->momentum + (float)var * (1.0f - p->momentum);
        float g = p->gamma ? p->gamma[k] : 1.0f, b = p->beta ? p->beta[k] : 0.0f;
        for (size_t i = 0; i < n; i++) {
            size_t j = i * (size_t)c + k;
            xhat[j] = (float)((x[j] - mean) * is);
            y[j] = xhat[j] * g + b;
        }
    }
}

void maas_bn_backward(const maas_bn_params *p, const float *dy, size_t rows, size_t s,
                      const float *xhat, const float *inv_std, float *dgamma, float *dbeta,
                      float *dx) {
    size_t n = rows * s;
    int c = p->c;
    for (int k = 0; k < c; k++) {
        /* one channel at a time: no buffer of c doubles needed */
        double sb = 0, sg = 0;
        for (size_t i = 0; i < n; i++) {
            size_t j = i * (size_t)c + k;
            sb += dy[j];
            sg += (double)dy[j] * xhat[j];
        }
        if (dgamma) dgamma[k] = (float)sg;
        if (dbeta) dbeta[k] = (float)sb;
        /* dx = gamma inv_std / n (n dy - sum dy - xhat sum dy xhat) */
        double a = (p->gamma ? p->gamma[k] : 1.0) * inv_std[k] / (double)n;
        for (size_t i = 0; i < n; i++) {
            size_t j = i * (size_t)c + k;
            dx[j] = (float)(a * ((double)n * dy[j] - sb - xhat[j] * sg));
        }
    }
}
