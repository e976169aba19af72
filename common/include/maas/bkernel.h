/*
 * bkernel.h - the bf16 kernels, a floor below the model like the int8 ones
 * (qkernel.h): bf16 layers' packed weights and the bf16 x bf16 -> float32
 * product (AVX-512 BF16's vdpbf16ps). Inference (model.c) runs bf16 layers
 * through it where the CPU (and MAAS_CPU_LEVEL) has AVX512_BF16; elsewhere it
 * runs the same weights, widened to float32 (exactly), on the float path. The
 * transform that makes bf16 models (maas/quant.h) sits above. Includes nothing
 * of the model.
 *
 * Numerics of the bf16 path, per output y_j = b_j + sum_i x_i w_ij: the weights
 * w_ij are bf16 values (8 significant bits), the inputs x_i are rounded to bf16
 * (nearest even; inputs below 2^-126 in magnitude become 0), each product is
 * exact in float32 and the sum is accumulated in float32 (nearest even; a
 * result below 2^-126 flushes to 0). So |y - exact| <= 2^-8 sum|x_i w_ij| for
 * the input rounding plus the float32 summation error of n_in + 1 terms.
 */
#ifndef MAAS_BKERNEL_H
#define MAAS_BKERNEL_H

#include <stddef.h>
#include <stdint.h>

/*
 * One bf16 Dense layer: the kernel packed for vdpbf16ps. Inputs go in pairs
 * (kp = ceil(n_in / 2)), outputs in panels of up to 64 (4 blocks of 16): panel
 * P holds, for each pair p, its width's outputs as {w[2p][j], w[2p+1][j]};
 * zero-padded to whole pairs and blocks. Owned by the maas_bf16.
 */
typedef struct maas_blayer {
    int n_in, n_out;
    int kp;           /* pairs of inputs: ceil(n_in / 2) */
    int nb;           /* blocks of 16 outputs: ceil(n_out / 16) */
    uint16_t *packed; /* kp x 16 nb x 2, in panels; NULL: a layer without weights */
} maas_blayer;

/* The bf16 side of a model: one entry per model layer (Dropout: packed NULL). */
typedef struct maas_bf16 {
    int n_layers;
    maas_blayer *layers;
} maas_bf16;

/* bf16 of f, rounded to nearest even (NaN stays a NaN, infinities stay infinite). */
uint16_t maas_bf16_from_float(float f);
/* The float32 a bf16 stands for (exact). */
float maas_bf16_to_float(uint16_t b);

/* An empty maas_bf16 of n_layers layers (NULL when out of memory). */
maas_bf16 *maas_bf16_new(int n_layers);
/* Packs layer i from w (n_in x n_out row-major; each value is taken as its bf16). 1 on success. */
int maas_bf16_set_layer(maas_bf16 *b, int i, int n_in, int n_out, const float *w);
/* Deep copy (NULL for NULL); NULL on allocation failure. */
maas_bf16 *maas_bf16_clone(const maas_bf16 *b);
void maas_bf16_free(maas_bf16 *b);

/* 1 where the bf16 kernel runs here: the CPU has AVX512_BF16 and MAAS_CPU_LEVEL allows it. */
int maas_bf16_available(void);
/* What a bf16 layer runs on here: "avx512-bf16", or "float32" (the weights widened). */
const char *maas_bf16_kernel_name(void);

/*
 * y[r][j] = bias[j] (0 when bias is NULL) + sum_i x[r][i] * w[i][j] for rows rows, the bf16
 * path described above, then relu(y) = (y > 0 ? y : 0) when relu is set; x has row stride ldx
 * (n_in used), y row stride ldy (n_out written). scratch holds rows x kp uint32 (the inputs as
 * bf16 pairs). Only where maas_bf16_available().
 */
void maas_bgemm(const maas_blayer *l, const float *x, int ldx, int rows, const float *bias,
                int relu, float *y, int ldy, uint32_t *scratch);

#endif
