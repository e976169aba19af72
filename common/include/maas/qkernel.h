/*
 * qkernel.h - the int8 kernels, the floor below the model: quantized layers'
 * storage and the uint8 x int8 -> int32 GEMM (oneDNN for large batches, our
 * AVX-512 VNNI tiles, portable C; all give the same integers). Inference
 * (model.c) runs quantized layers through it; the transforms that make them
 * (maas/quant.h) sit above both. Includes nothing of the model.
 */
#ifndef MAAS_QKERNEL_H
#define MAAS_QKERNEL_H

#include <stddef.h>
#include <stdint.h>

typedef struct maas_qdnnl maas_qdnnl; /* oneDNN state of a layer, private */

/* One quantized kernel: a Dense layer's, or a convolution's as a (kh*kw*c) x filters matrix.
 * All arrays owned by the maas_quant. */
typedef struct maas_qlayer {
    int n_in, n_out;
    int kg;           /* groups of 4 inputs: ceil(n_in / 4) */
    int nb;           /* blocks of 16 outputs: ceil(n_out / 16) */
    int8_t *wq;       /* n_in x n_out, row-major: the stored form */
    float *scale;     /* n_out per-channel scales, > 0 */
    int8_t *packed;   /* kg x (16 nb) x 4: the VNNI layout, zero-padded */
    int32_t *colsum;  /* 16 nb: sum over inputs of each unit's int8 weights */
    float act_scale;  /* 0: dynamic per-row input scales; > 0: a calibrated one */
    int act_unsigned; /* with act_scale: the calibrated input is >= 0 (uint8) */
    maas_qdnnl *dnnl; /* oneDNN primitives for large batches, made on first use; owned */
} maas_qlayer;

/* The int8 side of a quantized model: one entry per model layer (Dropout: unused). */
typedef struct maas_quant {
    int n_layers;
    maas_qlayer *layers; /* n_layers entries; wq == NULL for a layer left in float */
} maas_quant;

/* Deep copy of a maas_quant (NULL for NULL); NULL on allocation failure. */
maas_quant *maas_quant_clone(const maas_quant *q);
void maas_quant_free(maas_quant *q);

typedef enum maas_qkernel {
    MAAS_QKERNEL_AUTO = 0, /* oneDNN for chunks of >= 32 rows (when built with it), else VNNI
                              when the CPU has it, else portable */
    MAAS_QKERNEL_PORTABLE, /* plain C */
    MAAS_QKERNEL_VNNI      /* our AVX-512 VNNI tiles only; falls back to portable without it */
} maas_qkernel;

/* What k resolves to here: "onednn+avx512-vnni", "avx512-vnni" or "portable". */
const char *maas_qkernel_name(maas_qkernel k);

/*
 * acc[r][j] = sum_k xq[r][k] * packed-weight[k][j] for rows rows, where xq is
 * uint8 rows of stride ldx >= 4 kg (padded with zeros to 4 kg), acc has
 * stride ldc >= 16 nb.
 */
void maas_qgemm(maas_qkernel k, const maas_qlayer *l, const uint8_t *xq, int ldx, int rows,
                int32_t *acc, int ldc);

#endif
