/* model.fit / model.evaluate: batching, shuffling, validation, early stopping. */
#include "maas/base.h"
#include "maas/clock.h"
#include "maas/embed.h"
#include "maas/quant.h"
#include "maas/train.h"
#include "train_internal.h"

#include <time.h>

void maas_fit_opts_init(maas_fit_opts *o) {
    memset(o, 0, sizeof(*o));
    o->epochs = 1;
    o->batch_size = 32;
    o->shuffle = 1;
    o->monitor = "val_loss";
}

void maas_history_release(maas_history *h) {
    if (!h) return;
    free(h->epochs);
    memset(h, 0, sizeof(*h));
}

static maas_err check_inputs(const maas_model *m, const float *x, size_t rows, const char *what,
                             char *errstr, size_t errstr_size) {
    if (rows == 0) return maas_errf(errstr, errstr_size, MAAS_ERR_EMPTY, "%s has no rows", what);
    if (!x) return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT, "%s is missing", what);
    size_t n = (size_t)m->n_inputs;
    size_t bad = maas_find_nonfinite(x, rows * n);
    if (bad < rows * n)
        return maas_errf(errstr, errstr_size, MAAS_ERR_NON_FINITE,
                         "%s row %zu, column %zu is not finite", what, bad / n, bad % n);
    if (maas_model_takes_indices(m)) {
        char sub[MAAS_ERRSTR_SIZE];
        maas_err err = maas_embed_check(x, rows * n, m->layers[0].spec.vocab, sub, sizeof(sub));
        if (err) return maas_errf(errstr, errstr_size, err, "%s: %s", what, sub);
    }
    return MAAS_OK;
}

/*
 * Copies rows idx[0..n) (or rows start.. when idx is NULL) of raw x and y into
 * contiguous batch buffers, standardizing x with the model's statistics.
 */
static void gather(const maas_model *m, const float *x, const float *y, int ycols,
                   const size_t *idx, size_t start, int n, float *xb, float *yb) {
    size_t nin = (size_t)m->n_inputs;
    for (int r = 0; r < n; r++) {
        size_t src = idx ? idx[start + (size_t)r] : start + (size_t)r;
        const float *xs = x + src * nin;
        float *xd = xb + (size_t)r * nin;
        if (m->feat_mean)
            for (size_t j = 0; j < nin; j++) xd[j] = (xs[j] - m->feat_mean[j]) / m->feat_std[j];
        else
            memcpy(xd, xs, nin * sizeof(float));
        memcpy(yb + (size_t)r * ycols, y + src * ycols, (size_t)ycols * sizeof(float));
    }
}

/* Mean loss and accuracy of a trainer's model over raw rows. */
static maas_err eval_rows(maas_trainer *tr, const maas_model *m, const maas_compile *c,
                          const float *x, const float *y, size_t rows, float *xb, float *yb,
                          double *loss, double *acc, char *errstr, size_t errstr_size) {
    int ycols = maas_label_cols(m, c->loss);
    int batch = maas__trainer_batch(tr);
    double lsum = 0.0, asum = 0.0;
    if (maas_model_is_quantized(m)) {
        /* An int8 or bf16 model is judged by what its inference outputs. */
        maas_infer *inf = maas_infer_new(m, batch, errstr, errstr_size);
        float *out = malloc((size_t)batch * m->n_outputs * sizeof(float));
        maas_err err = inf && out ? MAAS_OK : MAAS_ERR_OUT_OF_MEMORY;
        for (size_t r0 = 0; !err && r0 < rows; r0 += (size_t)batch) {
            int n = (int)(rows - r0 < (size_t)batch ? rows - r0 : (size_t)batch);
            err = maas_infer_run(inf, x + r0 * (size_t)m->n_inputs, (size_t)n, out, errstr,
                                 errstr_size);
            double l, a;
            if (!err) maas__trainer_loss_of_outputs(tr, out, y + r0 * (size_t)ycols, n, &l, &a);
            lsum += err ? 0.0 : l * n;
            asum += err ? 0.0 : a;
        }
        if (err == MAAS_ERR_OUT_OF_MEMORY && inf)
            maas_errf(errstr, errstr_size, err, "out of memory");
        maas_infer_free(inf);
        free(out);
        if (err) return err;
        *loss = lsum / (double)rows;
        *acc = maas_acc_resolve(m, c) == MAAS_ACC_NONE ? NAN : asum / (double)rows;
        return MAAS_OK;
    }
    for (size_t r0 = 0; r0 < rows; r0 += (size_t)batch) {
        int n = (int)(rows - r0 < (size_t)batch ? rows - r0 : (size_t)batch);
        gather(m, x, y, ycols, NULL, r0, n, xb, yb);
        double l, a;
        maas_err err = maas_trainer_loss(tr, xb, yb, n, &l, &a, errstr, errstr_size);
        if (err) return err;
        lsum += l * n;
        asum += a;
    }
    *loss = lsum / (double)rows;
    *acc = maas_acc_resolve(m, c) == MAAS_ACC_NONE ? NAN : asum / (double)rows;
    return MAAS_OK;
}

maas_err maas_evaluate(const maas_model *m, const maas_compile *c, const float *x, const float *y,
                       size_t rows, double *loss, double *accuracy, char *errstr,
                       size_t errstr_size) {
    maas_err err = check_inputs(m, x, rows, "evaluation data", errstr, errstr_size);
    if (!err) err = maas_compile_check(m, c, errstr, errstr_size);
    if (!err) err = maas_labels_check(m, c->loss, y, rows, errstr, errstr_size);
    if (err) return err;
    int batch = rows < 1024 ? (int)rows : 1024;
    int ycols = maas_label_cols(m, c->loss);
    maas_trainer *tr;
    maas_err terr = maas__trainer_create_eval(&tr, m, c, batch, errstr, errstr_size);
    float *xb = malloc((size_t)batch * m->n_inputs * sizeof(float));
    float *yb = malloc((size_t)batch * ycols * sizeof(float));
    double l = NAN, a = NAN;
    if (terr)
        err = terr;
    else if (!xb || !yb)
        err = maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    else
        err = eval_rows(tr, m, c, x, y, rows, xb, yb, &l, &a, errstr, errstr_size);
    free(xb);
    free(yb);
    maas_trainer_free(tr);
    if (loss) *loss = l;
    if (accuracy) *accuracy = a;
    return err;
}

/* Per-feature mean and population std over rows, in double. */
static void feature_stats(const float *x, size_t rows, int n, float *mean, float *std) {
    for (int j = 0; j < n; j++) {
        double s = 0.0, s2 = 0.0;
        for (size_t r = 0; r < rows; r++) s += x[r * (size_t)n + j];
        double mu = s / (double)rows;
        for (size_t r = 0; r < rows; r++) {
            double d = x[r * (size_t)n + j] - mu;
            s2 += d * d;
        }
        mean[j] = (float)mu;
        std[j] = (float)sqrt(s2 / (double)rows);
    }
}

static maas_err check_opts(const maas_model *m, const maas_compile *c, const maas_fit_opts *o,
                           int *monitor_is_max, char *errstr, size_t errstr_size) {
    if (o->epochs < 1 || o->epochs > 1000000)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "epochs must be in 1..1000000, got %d", o->epochs);
    if (o->batch_size < 1 || o->batch_size > 1 << 20)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "batch size must be in 1..1048576, got %d", o->batch_size);
    if (!(o->validation_split >= 0.0f && o->validation_split < 1.0f))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "validation split must be in [0, 1), got %g", (double)o->validation_split);
    if (!o->rng)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "fit needs a random generator");
    if (o->early_stopping) {
        const char *mon = o->monitor ? o->monitor : "val_loss";
        int val = !strncmp(mon, "val_", 4);
        const char *base = val ? mon + 4 : mon;
        if (strcmp(base, "loss") && strcmp(base, "accuracy"))
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "early stopping cannot monitor '%s' (use loss, accuracy, val_loss "
                             "or val_accuracy)",
                             mon);
        if (!strcmp(base, "accuracy") && maas_acc_resolve(m, c) == MAAS_ACC_NONE)
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "early stopping monitors '%s' but accuracy is not tracked", mon);
        if (val && o->validation_split == 0.0f && !o->val_x)
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "early stopping monitors '%s' but there is no validation data", mon);
        if (o->patience < 0)
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "patience must be >= 0");
        if (!(o->min_delta >= 0.0f))
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "min_delta must be >= 0");
        *monitor_is_max = !strcmp(base, "accuracy");
    }
    return MAAS_OK;
}

static double monitored(const maas_fit_opts *o, const maas_epoch_log *e) {
    const char *mon = o->monitor ? o->monitor : "val_loss";
    if (!strcmp(mon, "loss")) return e->loss;
    if (!strcmp(mon, "accuracy")) return e->accuracy;
    if (!strcmp(mon, "val_accuracy")) return e->val_accuracy;
    return e->val_loss;
}

double maas_fit_bytes(const maas_net_size *size, int n_inputs, int label_cols, size_t rows,
                      int batch_size, int epochs) {
    double batch = batch_size < 1 ? 1.0 : (double)batch_size;
    if ((double)rows < batch) batch = rows ? (double)rows : 1.0;
    double params = 6.0 * (double)size->n_params * sizeof(float);
    double act = 2.0 * batch * sizeof(float) *
                 (2.0 * (double)size->cells_per_row + 2.0 * size->widest + n_inputs + label_cols);
    double data = (double)rows * ((double)(n_inputs + label_cols) * sizeof(float) + sizeof(size_t));
    return params + act + data + (epochs > 0 ? (double)epochs : 0.0) * sizeof(maas_epoch_log);
}

void maas_fit_split(size_t rows, float validation_split, size_t *n_train, size_t *n_val) {
    *n_train = rows;
    if (validation_split > 0.0f)
        *n_train = (size_t)ceil((double)rows * (1.0 - (double)validation_split));
    *n_val = rows - *n_train;
}

maas_err maas_fit(maas_model *m, const maas_compile *c, const float *x, const float *y, size_t rows,
                  const maas_fit_opts *o, maas_history *hist, char *errstr, size_t errstr_size) {
    int is_max = 0;
    if (maas_model_is_quantized(m))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "the model is %s-quantized: train the float model, then quantize",
                         maas_quant_kind_name(maas_model_quant_kind(m)));
    maas_err err = check_opts(m, c, o, &is_max, errstr, errstr_size);
    if (!err) err = maas_compile_check(m, c, errstr, errstr_size);
    if (!err) err = check_inputs(m, x, rows, "training data", errstr, errstr_size);
    if (!err) err = maas_labels_check(m, c->loss, y, rows, errstr, errstr_size);
    if (err) return err;

    /* Keras takes the validation rows from the end, before any shuffling. */
    size_t n_train = rows;
    const float *vx = o->val_x, *vy = o->val_y;
    size_t n_val = o->val_x ? o->val_rows : 0;
    int ycols = maas_label_cols(m, c->loss);
    if (!o->val_x && o->validation_split > 0.0f) {
        maas_fit_split(rows, o->validation_split, &n_train, &n_val);
        if (n_train == 0 || n_val == 0)
            return maas_errf(errstr, errstr_size, MAAS_ERR_EMPTY,
                             "%zu rows cannot be split into training and validation sets with "
                             "validation split %g",
                             rows, (double)o->validation_split);
        vx = x + n_train * (size_t)m->n_inputs;
        vy = y + n_train * (size_t)ycols;
    } else if (o->val_x) {
        err = check_inputs(m, vx, n_val, "validation data", errstr, errstr_size);
        if (!err) err = maas_labels_check(m, c->loss, vy, n_val, errstr, errstr_size);
        if (err) return err;
    }

    if (o->standardize) {
        float *mean = malloc((size_t)m->n_inputs * sizeof(float));
        float *std = malloc((size_t)m->n_inputs * sizeof(float));
        if (mean && std) {
            feature_stats(x, n_train, m->n_inputs, mean, std);
            err = maas_model_set_standardization(m, mean, std, errstr, errstr_size);
        } else {
            err = maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
        }
        free(mean);
        free(std);
        if (err) return err;
    }

    int batch = (size_t)o->batch_size < n_train ? o->batch_size : (int)n_train;
    int eval_batch = batch;
    maas_trainer *tr;
    if ((err = maas_trainer_create(&tr, m, c, batch, o->rng, errstr, errstr_size))) return err;
    if (o->param_mask) maas_trainer_set_mask(tr, o->param_mask);
    if (o->profile) maas_trainer_set_profile(tr, o->profile);
    size_t *idx = malloc(n_train * sizeof(size_t));
    float *xb = malloc((size_t)eval_batch * m->n_inputs * sizeof(float));
    float *yb = malloc((size_t)eval_batch * ycols * sizeof(float));
    float *best = o->early_stopping && o->restore_best ? malloc(m->n_params * sizeof(float)) : NULL;
    maas_epoch_log *logs = calloc((size_t)o->epochs, sizeof(*logs));
    if (!idx || !xb || !yb || !logs || (o->early_stopping && o->restore_best && !best)) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory for training");
        goto done;
    }
    for (size_t i = 0; i < n_train; i++) idx[i] = i;

    size_t n_batches = (n_train + (size_t)batch - 1) / (size_t)batch;
    int acc_on = maas_acc_resolve(m, c) != MAAS_ACC_NONE;
    double best_val = is_max ? -INFINITY : INFINITY;
    int best_epoch = 0, wait = 0, n_epochs = 0, stopped = 0;
    for (int ep = 1; ep <= o->epochs; ep++) {
        double t0 = maas_mono_s();
        if (o->shuffle)
            for (size_t i = n_train - 1; i > 0; i--) {
                size_t j = (size_t)maas_rng_below(o->rng, i + 1);
                size_t t = idx[i];
                idx[i] = idx[j];
                idx[j] = t;
            }
        double lsum = 0.0, asum = 0.0;
        for (size_t b = 0; b < n_batches; b++) {
            if (o->on_batch && o->on_batch(o->ud, ep, b, n_batches)) {
                err = maas_errf(errstr, errstr_size, MAAS_ERR_CANCELLED,
                                "training cancelled in epoch %d, batch %zu", ep, b);
                goto done;
            }
            size_t start = b * (size_t)batch;
            int n = (int)(n_train - start < (size_t)batch ? n_train - start : (size_t)batch);
            gather(m, x, y, ycols, idx, start, n, xb, yb);
            double l, a;
            err = maas_trainer_step(tr, xb, yb, n, &l, &a, errstr, errstr_size);
            if (err) goto done;
            lsum += l * n;
            asum += a;
        }
        maas_epoch_log *e = &logs[n_epochs++];
        e->epoch = ep;
        e->epochs = o->epochs;
        e->loss = lsum / (double)n_train;
        e->has_accuracy = acc_on;
        e->accuracy = acc_on ? asum / (double)n_train : NAN;
        e->val_loss = e->val_accuracy = NAN;
        if (n_val > 0) {
            err = eval_rows(tr, m, c, vx, vy, n_val, xb, yb, &e->val_loss, &e->val_accuracy, errstr,
                            errstr_size);
            if (err) goto done;
            e->has_val = 1;
        }
        e->seconds = maas_mono_s() - t0;
        int stop = o->on_epoch && o->on_epoch(o->ud, e);
        if (o->early_stopping) {
            double v = monitored(o, e);
            int better = is_max ? v > best_val + o->min_delta : v < best_val - o->min_delta;
            if (better || best_epoch == 0) {
                best_val = v;
                best_epoch = ep;
                wait = 0;
                if (best) memcpy(best, m->params, m->n_params * sizeof(float));
            } else if (++wait >= o->patience && ep > 1) {
                stopped = 1;
                stop = 1;
            }
        }
        if (stop) break;
    }
    if (best && best_epoch > 0 && best_epoch != n_epochs)
        memcpy(m->params, best, m->n_params * sizeof(float));
    if (hist) {
        hist->n_epochs = n_epochs;
        hist->epochs = logs;
        hist->best_epoch = best && best_epoch ? best_epoch : n_epochs;
        hist->stopped_early = stopped;
        logs = NULL;
    }
done:
    free(logs);
    free(best);
    free(idx);
    free(xb);
    free(yb);
    maas_trainer_free(tr);
    return err;
}
