/*
 * quant.h - making a trained model cheaper to serve: post-training int8
 * quantization and magnitude pruning.
 *
 * Quantization (maas_quantize) is per output channel and symmetric: unit j of
 * a Dense kernel gets scale s_j = max_i |W[i][j]| / 127 and int8 weights
 * q[i][j] = round(W[i][j] / s_j) in [-127, 127]. The model's float kernel is
 * replaced by the dequantized q * s, so everything that reads floats (training,
 * evaluate, export to Keras) sees exactly what the int8 path computes with;
 * the int8 weights, scales and packed kernels hang off model->quant.
 *
 * Inference on a quantized model (maas_infer_run picks it up by itself)
 * quantizes each Dense layer's input per row, dynamically: a row whose values
 * are all >= 0 (a relu output) becomes uint8 with scale max/255, any other row
 * int8 with scale max|x|/127 (shifted by 128 into uint8). The dot products are
 * uint8 x int8 -> int32 (AVX-512 VNNI when the CPU has it, else portable C;
 * both give the same integers), then y = acc * s_row * s_j + bias in float,
 * and the activation in float. Per-row scales make a row's answer independent
 * of the rows batched with it. Biases stay float32.
 *
 * Pruning (maas_prune) zeroes the smallest-magnitude kernel weights, over all
 * layers together (global) or layer by layer, and returns the mask so a
 * fine-tuning fit can hold it (maas_fit_opts.param_mask).
 */
#ifndef MAAS_QUANT_H
#define MAAS_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "maas/err.h"
#include "maas/model.h"
#include "maas/qkernel.h" /* maas_quant, maas_qkernel */

/*
 * Quantizes every Dense kernel of m in place (see the top of this file). A
 * model that is already quantized is refused (ARG). On error m is unchanged.
 */
maas_err maas_quantize(maas_model *m, char *errstr, size_t errstr_size);

/*
 * Sets layer i's int8 kernel from stored form (loaders): wq (n_in x n_out) and
 * its n_out scales (finite, > 0) are copied; the float kernel becomes wq * scale.
 */
maas_err maas_quant_set_layer(maas_model *m, int i, const int8_t *wq, const float *scale,
                              char *errstr, size_t errstr_size);

/* 1 when m carries int8 kernels. */
int maas_model_is_quantized(const maas_model *m);

/* Drops the int8 side: m becomes the float model of its dequantized weights. */
void maas_model_dequantize(maas_model *m);

/*
 * Static (calibrated) input scales instead of dynamic ones, measured as the
 * largest |input| each Dense layer sees on rows x n_inputs raw sample inputs.
 * Kept for measurement (bench/): the dynamic per-row scales are the default
 * because they are as accurate and a row's result does not depend on a
 * calibration sample (README, Performance). Not stored in files.
 */
maas_err maas_quant_calibrate(maas_model *m, const float *x, size_t rows, char *errstr,
                              size_t errstr_size);

/* Bytes of the int8 weights plus float scales and biases (the stored payload). */
size_t maas_quant_payload_bytes(const maas_model *m);

/* ---- pruning ---- */

typedef struct maas_prune_report {
    int n_layers;                     /* model layers */
    double sparsity[MAAS_MAX_LAYERS]; /* achieved fraction of zero kernel weights, Dense */
    double total_sparsity;            /* over all kernels */
    size_t zero_weights, kernel_weights;
} maas_prune_report;

/*
 * Zeroes the fraction `sparsity` (in [0, 1)) of kernel weights with the
 * smallest |w|: over all Dense kernels together when per_layer is 0, else in
 * each kernel separately. Biases are kept. mask (optional, n_params floats):
 * 1 where a parameter is kept, 0 where pruned (biases 1). Ties at the
 * threshold are broken by position, so the count is exact. report (optional).
 */
maas_err maas_prune(maas_model *m, double sparsity, int per_layer, float *mask,
                    maas_prune_report *report, char *errstr, size_t errstr_size);

/* The sparsity m has now (exact zeros in each kernel). */
void maas_sparsity(const maas_model *m, maas_prune_report *report);

#endif
