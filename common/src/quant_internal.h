/* Private to the compute core: the int8 forward step that model.c's inference calls. */
#ifndef MAAS_QUANT_INTERNAL_H
#define MAAS_QUANT_INTERNAL_H

#include "maas/quant.h"

/* Scratch for quantized Dense layers, owned by an inference context. */
typedef struct maas_qscratch {
    uint8_t *xq;  /* rows x ldx quantized inputs */
    int ldx;      /* >= 4 * max kg */
    float *rs;    /* per-row input scales */
    uint8_t *sh;  /* per-row: 1 when the input was int8 shifted by 128 */
    int32_t *acc; /* rows x ldc */
    int ldc;      /* >= 16 * max nb */
    maas_qkernel kernel;
} maas_qscratch;

/* The widest padded input (4 kg) and output (16 nb) over a model's quantized layers. */
void maas__quant_widths(const maas_model *m, int *ldx, int *ldc);

/*
 * out (rows x n_out) = act-free Dense output of layer l for float inputs in
 * (rows x n_in): per-row input quantization, int8 GEMM, rescale, + bias
 * (bias may be NULL). The caller applies the activation.
 */
void maas__qdense_forward(const maas_qlayer *l, const float *in, int rows, const float *bias,
                          float *out, const maas_qscratch *s);

#endif
