/*
 * optimize.h - one optimization run, as `maas optimize` and the worker's
 * optimize jobs both do it: prune (optionally fine-tuning with the mask
 * held), then quantize to int8 or bf16, measuring size, accuracy and
 * single-row latency before and after.
 */
#ifndef MAAS_OPTIMIZE_H
#define MAAS_OPTIMIZE_H

#include <stddef.h>

#include "maas/err.h"
#include "maas/model.h"
#include "maas/quant.h"
#include "maas/train.h"

typedef struct maas_optimize_opts {
    maas_quant_kind quantize; /* int8 or bf16; MAAS_QUANT_NONE: none */
    double prune;             /* target sparsity in [0, 0.99]; 0: no pruning */
    int prune_per_layer;      /* 0: one global magnitude threshold (default) */
    int finetune_epochs;      /* after pruning, with data and compile; 0: none */
    int batch_size;           /* fine-tuning batch, default 32 */
    /* loss and optimizer for fine-tuning and for measuring; NULL: size and speed only */
    const maas_compile *compile;
    /* labelled data (raw inputs, rows x n_inputs; labels as maas_label_cols), or NULL */
    const float *x, *y;
    size_t rows;
    /* With fine-tuning, the last fraction of the rows is held out for the before/after
     * figures (default 0.2, as Keras's validation_split); without, every row measures. */
    double holdout;
    maas_rng *rng; /* shuffling during fine-tuning; required with finetune_epochs */
    maas_epoch_fn on_epoch;
    maas_batch_fn on_batch;
    void *ud;
} maas_optimize_opts;

void maas_optimize_opts_init(maas_optimize_opts *o);

typedef struct maas_optimize_report {
    size_t bytes_before, bytes_after; /* model.h5 sizes */
    size_t eval_rows;                 /* rows the figures below come from; 0: not measured */
    double loss_before, loss_after;
    double acc_before, acc_after; /* NaN when accuracy is not tracked */
    double us_before, us_after;   /* single-row predict latency, median microseconds */
    size_t latency_rows;          /* single-row predictions run to measure both */
    int pruned, quantized, finetune_epochs;
    maas_prune_report prune; /* achieved sparsity, when pruned */
    const char *kernel;   /* the kernel this CPU runs the result on: int8 "avx512-vnni" / "portable"
                           * (oneDNN's prefixed), bf16 "avx512-bf16" / "float32" */
    maas_history history; /* fine-tuning epochs; owned: maas_history_release(&r->history) */
} maas_optimize_report;

/*
 * Optimizes m in place. A quantized model that is pruned is pruned on its
 * dequantized weights (add quantize to quantize the result again);
 * quantizing a quantized model again is refused. Bad settings are ARG; data
 * problems carry maas_fit's codes; cancellation is CANCELLED (m is then
 * partly changed: the caller works on a copy).
 */
maas_err maas_optimize(maas_model *m, const maas_optimize_opts *o, maas_optimize_report *r,
                       char *errstr, size_t errstr_size);

#endif
