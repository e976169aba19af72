/* Private to the compute core: the int8 layers and forward step (qkernel.c) that model.c's
 * inference and quant.c's transforms call. */
#ifndef MAAS_QUANT_INTERNAL_H
#define MAAS_QUANT_INTERNAL_H

#include "maas/qkernel.h"

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

/*
 * oneDNN for batches of >= 32 rows (gemm_dnnl.c). new() makes no oneDNN call
 * (safe in the model loader's forked child); run() computes the first rows it
 * can in bucket-sized chunks and returns how many (0: none, e.g. < 32 rows, or
 * a build without oneDNN); the caller's kernel does the rest.
 */
maas_qdnnl *maas__qdnnl_new(void);
void maas__qdnnl_free(maas_qdnnl *d);
int maas__qdnnl_run(maas_qdnnl *d, const maas_qlayer *l, const uint8_t *xq, int ldx, int rows,
                    int32_t *acc, int ldc);
int maas__qdnnl_available(void);

/* Allocates a layer's buffers for n_in x n_out (1 on success; release with the quant). */
int maas__qlayer_alloc(maas_qlayer *l, int n_in, int n_out);
/* Frees a layer's buffers and zeroes it. */
void maas__qlayer_release(maas_qlayer *l);
/* Builds the VNNI layout and the column sums from l->wq. */
void maas__qlayer_pack(maas_qlayer *l);

/*
 * out (rows x n_out) = Dense output of layer l for float inputs in (rows x n_in): per-row
 * input quantization, int8 GEMM, rescale, + bias (bias may be NULL), then relu when relu is
 * set (fused: the same values as act.c's); the caller applies any other activation.
 */
void maas__qdense_forward(const maas_qlayer *l, const float *in, int rows, const float *bias,
                          int relu, float *out, const maas_qscratch *s);

#endif
