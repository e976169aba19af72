/* The optimization pipeline shared by `maas optimize` and optimize jobs. See optimize.h. */
#include "maas/base.h"
#include "maas/clock.h"
#include "maas/model_io.h"
#include "maas/optimize.h"

#include <time.h>

void maas_optimize_opts_init(maas_optimize_opts *o) {
    memset(o, 0, sizeof(*o));
    o->batch_size = 32;
    o->holdout = 0.2;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/*
 * Median single-row predict time over 9 runs of 50 calls, on row (or zeros);
 * fewer runs when a big model makes that take over a second.
 */
static maas_err latency_us(const maas_model *m, const float *row, double *us, size_t *calls,
                           char *errstr, size_t errstr_size) {
    maas_infer *inf = maas_infer_new(m, 1, errstr, errstr_size);
    float *zeros = row ? NULL : calloc((size_t)m->n_inputs, sizeof(float));
    float *out = malloc((size_t)m->n_outputs * sizeof(float));
    maas_err err = inf && (row || zeros) && out ? MAAS_OK : MAAS_ERR_OUT_OF_MEMORY;
    const float *x = row ? row : zeros;
    double t[9], start = maas_mono_s();
    int runs = 0;
    if (!err) err = maas_infer_run(inf, x, 1, out, errstr, errstr_size); /* warm */
    while (!err && runs < 9 && (runs == 0 || maas_mono_s() - start < 1.0)) {
        double t0 = maas_mono_s();
        for (int i = 0; !err && i < 50; i++)
            err = maas_infer_run(inf, x, 1, out, errstr, errstr_size);
        t[runs++] = (maas_mono_s() - t0) / 50 * 1e6;
    }
    *calls += 1 + 50 * (size_t)runs;
    if (!err) {
        qsort(t, (size_t)runs, sizeof(double), cmp_double);
        *us = t[runs / 2];
    } else if (err == MAAS_ERR_OUT_OF_MEMORY) {
        maas_errf(errstr, errstr_size, err, "out of memory");
    }
    maas_infer_free(inf);
    free(zeros);
    free(out);
    return err;
}

static maas_err measure(const maas_model *m, const maas_optimize_opts *o, const float *ex,
                        const float *ey, size_t erows, size_t *bytes, double *loss, double *acc,
                        double *us, size_t *calls, char *errstr, size_t errstr_size) {
    unsigned char *buf;
    size_t len;
    maas_err err = maas_model_save_image(m, o->compile, &buf, &len, errstr, errstr_size);
    if (err) return err;
    free(buf);
    *bytes = len;
    *loss = *acc = NAN;
    if (erows > 0 &&
        (err = maas_evaluate(m, o->compile, ex, ey, erows, loss, acc, errstr, errstr_size)))
        return err;
    return latency_us(m, erows > 0 ? ex : NULL, us, calls, errstr, errstr_size);
}

maas_err maas_optimize(maas_model *m, const maas_optimize_opts *o, maas_optimize_report *r,
                       char *errstr, size_t errstr_size) {
    memset(r, 0, sizeof(*r)); /* before any return: the caller releases r->history */
    r->loss_before = r->loss_after = r->acc_before = r->acc_after = NAN;
    r->kernel = o->quantize == MAAS_QUANT_BF16 ? maas_bf16_kernel_name()
                                               : maas_qkernel_name(MAAS_QKERNEL_AUTO);
    if (o->quantize != MAAS_QUANT_NONE && o->quantize != MAAS_QUANT_INT8 &&
        o->quantize != MAAS_QUANT_BF16)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "quantize: unknown kind %d", (int)o->quantize);
    if (o->quantize == MAAS_QUANT_BF16) { /* refused before anything is measured */
        maas_err err = maas_model_check_mlp(m, "bf16 quantization", errstr, errstr_size);
        if (err) return err;
    }
    if (!(o->prune >= 0.0 && o->prune <= 0.99))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "prune: target sparsity must be in [0, 0.99], got %g", o->prune);
    if (!o->quantize && o->prune == 0.0)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "nothing to do: ask for int8 or bf16 quantization, pruning, or both");
    if (o->finetune_epochs < 0 || o->finetune_epochs > 10000)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "finetune_epochs must be in 0..10000, got %d", o->finetune_epochs);
    if (o->finetune_epochs > 0 && o->prune == 0.0)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "fine-tuning holds a pruning mask: it needs prune > 0");
    if (o->finetune_epochs > 0 && (!o->x || !o->y || o->rows == 0 || !o->compile || !o->rng))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "fine-tuning needs labelled data and the model's loss and optimizer");
    if (o->quantize && maas_model_is_quantized(m) && o->prune == 0.0)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "the model is already %s-quantized",
                         maas_quant_kind_name(maas_model_quant_kind(m)));
    if (o->finetune_epochs > 0 && !(o->holdout > 0.0 && o->holdout < 1.0))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "holdout must be in (0, 1) with fine-tuning, got %g", o->holdout);

    /* Which rows fine-tune and which measure (the last ones, as Keras splits). */
    size_t n_train = 0, n_eval = o->x && o->y && o->compile ? o->rows : 0;
    if (o->finetune_epochs > 0) {
        n_train = (size_t)ceil((double)o->rows * (1.0 - o->holdout));
        n_eval = o->rows - n_train;
        if (n_train == 0 || n_eval == 0)
            return maas_errf(errstr, errstr_size, MAAS_ERR_EMPTY,
                             "%zu rows cannot be split into fine-tuning and held-out rows",
                             o->rows);
    }
    int ycols = o->compile ? maas_label_cols(m, o->compile->loss) : 0;
    const float *ex = o->x ? o->x + n_train * (size_t)m->n_inputs : NULL;
    const float *ey = o->y ? o->y + n_train * (size_t)ycols : NULL;
    r->eval_rows = n_eval;
    maas_err err = measure(m, o, ex, ey, n_eval, &r->bytes_before, &r->loss_before, &r->acc_before,
                           &r->us_before, &r->latency_rows, errstr, errstr_size);
    if (err) return err;

    if (o->prune > 0.0) {
        maas_model_dequantize(m); /* pruning works on float weights */
        float *mask = malloc(m->n_params * sizeof(float));
        if (!mask) return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
        err = maas_prune(m, o->prune, o->prune_per_layer, mask, &r->prune, errstr, errstr_size);
        if (!err && o->finetune_epochs > 0) {
            maas_fit_opts fo;
            maas_fit_opts_init(&fo);
            fo.epochs = o->finetune_epochs;
            fo.batch_size = o->batch_size > 0 ? o->batch_size : 32;
            fo.rng = o->rng;
            fo.param_mask = mask;
            fo.on_epoch = o->on_epoch;
            fo.on_batch = o->on_batch;
            fo.ud = o->ud;
            err =
                maas_fit(m, o->compile, o->x, o->y, n_train, &fo, &r->history, errstr, errstr_size);
            r->finetune_epochs = r->history.n_epochs;
            if (!err) maas_sparsity(m, &r->prune);
        }
        free(mask);
        if (err) return err;
        r->pruned = 1;
    }
    if (o->quantize) {
        err = o->quantize == MAAS_QUANT_BF16 ? maas_quantize_bf16(m, errstr, errstr_size)
                                             : maas_quantize(m, errstr, errstr_size);
        if (err) return err;
        r->quantized = 1;
    }
    return measure(m, o, ex, ey, n_eval, &r->bytes_after, &r->loss_after, &r->acc_after,
                   &r->us_after, &r->latency_rows, errstr, errstr_size);
}
