/*
 * quant.h - making a trained model cheaper to serve: post-training int8
 * quantization and magnitude pruning.
 *
 * Quantization (maas_quantize) is per output channel and symmetric: unit j of
 * a Dense kernel (filter j of a convolution, its kernel read as a kh*kw*c x f
 * matrix) gets scale s_j = max_i |W[i][j]| / 127 and int8 weights
 * q[i][j] = round(W[i][j] / s_j) in [-127, 127]. Other layers stay float. The model's float kernel
 * is replaced by the dequantized q * s, so everything that reads floats (training, evaluate, export
 * to Keras) sees exactly what the int8 path computes with; the int8 weights, scales and packed
 * kernels hang off model->quant.
 *
 * Inference on a quantized model (maas_infer_run picks it up by itself)
 * quantizes each Dense layer's input per row (a convolution's per window: each
 * im2col row), dynamically: a row whose values
 * are all >= 0 (a relu output) becomes uint8 with scale max/255, any other row
 * int8 with scale max|x|/127 (shifted by 128 into uint8). The dot products are
 * uint8 x int8 -> int32 (AVX-512 VNNI when the CPU has it, else portable C;
 * both give the same integers), then y = acc * s_row * s_j + bias in float,
 * and the activation in float. Per-row scales make a row's answer independent
 * of the rows batched with it. Biases stay float32.
 *
 * bf16 (maas_quantize_bf16) rounds every Dense kernel to bfloat16 (nearest
 * even) and keeps it in params as float32 (exactly), so training, evaluate and
 * export see the weights inference uses, as with int8; the packed bf16 kernels
 * hang off model->bf16. Inference multiplies bf16 inputs (each row rounded to
 * bf16) by them with float32 accumulation where the CPU has AVX512_BF16
 * (maas/bkernel.h: the bound), and runs the same weights on the float path
 * elsewhere. Biases stay float32.
 *
 * Pruning (maas_prune) zeroes the smallest-magnitude kernel weights of Dense and
 * convolution layers, over all of them together (global) or layer by layer, and returns the mask so
 * a fine-tuning fit can hold it (maas_fit_opts.param_mask).
 */
#ifndef MAAS_QUANT_H
#define MAAS_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "maas/err.h"
#include "maas/model.h"
#include "maas/bkernel.h" /* maas_bf16 */
#include "maas/qkernel.h" /* maas_quant, maas_qkernel */

maas_quant_kind maas_model_quant_kind(const maas_model *m);
/* "float32", "int8", "bf16". Never NULL. */
const char *maas_quant_kind_name(maas_quant_kind k);

/*
 * Quantizes every Dense and convolution kernel of m in place (see the top of
 * this file). A model that is already quantized is refused (ARG). On error m is
 * unchanged.
 */
maas_err maas_quantize(maas_model *m, char *errstr, size_t errstr_size);

/*
 * Sets layer i's int8 kernel from stored form (loaders): wq (the kernel as a
 * matrix, inputs x output channels) and one scale per output channel (finite,
 * > 0) are copied; the float kernel becomes wq * scale. Layer i is a Dense or
 * convolution layer (ARG otherwise).
 */
maas_err maas_quant_set_layer(maas_model *m, int i, const int8_t *wq, const float *scale,
                              char *errstr, size_t errstr_size);

/*
 * Rounds every Dense kernel of m to bf16 in place (see the top of this file); a model
 * with layers beyond Dense, Dropout, Flatten and Reshape is UNSUPPORTED. A model
 * already quantized (int8 or bf16) is refused (ARG); a weight that rounds past bf16's
 * range is NON_FINITE. On error m is unchanged.
 */
maas_err maas_quantize_bf16(maas_model *m, char *errstr, size_t errstr_size);

/*
 * Makes m a bf16 model whose kernels are already bf16 values (loaders): BAD_FORMAT when a
 * kernel value is not one (low 16 bits set).
 */
maas_err maas_bf16_attach(maas_model *m, char *errstr, size_t errstr_size);

/* 1 when m carries int8 or bf16 kernels. */
int maas_model_is_quantized(const maas_model *m);

/* Drops the int8 or bf16 side: m becomes the float model of its dequantized weights. */
void maas_model_dequantize(maas_model *m);

/*
 * Static (calibrated) input scales instead of dynamic ones, measured as the
 * largest |input| each Dense layer sees on rows x n_inputs raw sample inputs.
 * Kept for measurement (bench/): the dynamic per-row scales are the default
 * because they are as accurate and a row's result does not depend on a
 * calibration sample (README, Performance). Not stored in files. Dense networks only
 * (UNSUPPORTED otherwise).
 */
maas_err maas_quant_calibrate(maas_model *m, const float *x, size_t rows, char *errstr,
                              size_t errstr_size);

/* Bytes of the weights as stored (int8 + float scales, bf16, or float32) plus float biases and
 * every other layer's float weights (BatchNormalization, Embedding). */
size_t maas_quant_payload_bytes(const maas_model *m);

/* ---- pruning ---- */

typedef struct maas_prune_report {
    int n_layers;                     /* model layers */
    double sparsity[MAAS_MAX_LAYERS]; /* fraction of zero kernel weights: Dense, convolution */
    double total_sparsity;            /* over all kernels */
    size_t zero_weights, kernel_weights;
} maas_prune_report;

/*
 * Zeroes the fraction `sparsity` (in [0, 1)) of kernel weights with the
 * smallest |w|: over all Dense and convolution kernels together when per_layer is 0, else in
 * each kernel separately. Biases are kept. mask (optional, n_params floats):
 * 1 where a parameter is kept, 0 where pruned (biases 1). Ties at the
 * threshold are broken by position, so the count is exact. report (optional).
 */
maas_err maas_prune(maas_model *m, double sparsity, int per_layer, float *mask,
                    maas_prune_report *report, char *errstr, size_t errstr_size);

/* The sparsity m has now (exact zeros in each kernel). */
void maas_sparsity(const maas_model *m, maas_prune_report *report);

#endif
