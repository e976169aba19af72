/*
 * train.h - losses, optimizers, metrics and the training loop (fit, evaluate).
 *
 * Numerics follow Keras (see README "Numerics"): losses average over the last
 * axis and then over the batch; probabilities are clipped to [1e-7, 1 - 1e-7];
 * a sigmoid output with binary_crossentropy, and a softmax output with
 * (sparse_)categorical_crossentropy, are computed from the logits as Keras's
 * TensorFlow backend does; Adam adds epsilon to the uncorrected sqrt(v).
 */
#ifndef MAAS_TRAIN_H
#define MAAS_TRAIN_H

#include <stddef.h>

#include "maas/err.h"
#include "maas/model.h"
#include "maas/rng.h"

typedef enum maas_loss {
    MAAS_LOSS_BINARY_CROSSENTROPY = 0,
    MAAS_LOSS_CATEGORICAL_CROSSENTROPY,
    MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, /* labels: one column of class indices */
    MAAS_LOSS_MSE,
    MAAS_LOSS_MAE,
    MAAS_LOSS__COUNT
} maas_loss;

typedef enum maas_opt {
    MAAS_OPT_SGD = 0,
    MAAS_OPT_ADAM,
    MAAS_OPT_RMSPROP,
    MAAS_OPT__COUNT
} maas_opt;

typedef struct maas_optim_spec {
    maas_opt kind;
    float learning_rate; /* SGD 0.01, Adam 0.001, RMSprop 0.001 */
    float beta_1;        /* Adam, 0.9 */
    float beta_2;        /* Adam, 0.999 */
    float epsilon;       /* Adam and RMSprop, 1e-7 */
    float momentum;      /* SGD and RMSprop, 0 */
    int nesterov;        /* SGD, 0 */
    float rho;           /* RMSprop, 0.9 */
} maas_optim_spec;

/* Fills o with Keras's defaults for the given optimizer. */
void maas_optim_defaults(maas_optim_spec *o, maas_opt kind);

/* What Keras's compile() gets: loss, optimizer, and whether to track accuracy. */
typedef struct maas_compile {
    maas_loss loss;
    maas_optim_spec optim;
    int accuracy; /* 1: track "accuracy" (binary/categorical/sparse chosen as Keras does) */
} maas_compile;

typedef enum maas_acc_kind {
    MAAS_ACC_NONE = 0,
    MAAS_ACC_BINARY,      /* y_pred > 0.5 equals y_true, per element */
    MAAS_ACC_CATEGORICAL, /* argmax(y_pred) == argmax(y_true) */
    MAAS_ACC_SPARSE       /* argmax(y_pred) == label */
} maas_acc_kind;

const char *maas_loss_name(maas_loss loss);
maas_err maas_loss_from_name(const char *name, maas_loss *out, char *errstr, size_t errstr_size);
const char *maas_opt_name(maas_opt opt);
maas_err maas_opt_from_name(const char *name, maas_opt *out, char *errstr, size_t errstr_size);

/* Label columns a loss expects for a model: 1 for sparse CE, else n_outputs. */
int maas_label_cols(const maas_model *m, maas_loss loss);

/* The accuracy Keras would pick for this model and compile settings. */
maas_acc_kind maas_acc_resolve(const maas_model *m, const maas_compile *c);

/*
 * Checks a compile config against a model (optimizer hyper-parameters in range)
 * and labels against the loss: finite; binary CE in [0, 1]; categorical CE
 * non-negative; sparse CE integral class indices in [0, n_outputs).
 */
maas_err maas_compile_check(const maas_model *m, const maas_compile *c, char *errstr,
                            size_t errstr_size);
maas_err maas_labels_check(const maas_model *m, maas_loss loss, const float *y, size_t rows,
                           char *errstr, size_t errstr_size);

/*
 * A trainer holds everything one optimization needs (activations, gradients,
 * optimizer slots) for batches of up to batch_size rows, allocated once: a
 * step allocates nothing. It borrows the model (whose weights it updates) and
 * the rng (dropout masks); both must outlive it. Free with maas_trainer_free().
 */
typedef struct maas_trainer maas_trainer;

maas_trainer *maas_trainer_new(maas_model *m, const maas_compile *c, int batch_size, maas_rng *rng,
                               char *errstr, size_t errstr_size);
/* The same, with the error's code (LIMIT_EXCEEDED, OUT_OF_MEMORY, ...); *out NULL on error. */
maas_err maas_trainer_create(maas_trainer **out, maas_model *m, const maas_compile *c,
                             int batch_size, maas_rng *rng, char *errstr, size_t errstr_size);
void maas_trainer_free(maas_trainer *tr);

/*
 * One optimizer step on rows <= batch_size rows. x is already standardized
 * (the model's standardization is *not* applied here); y has
 * maas_label_cols() columns. Outputs (optional): mean loss of the batch and the
 * summed per-row accuracy (divide by rows for the batch accuracy).
 * The step runs with denormals flushed to zero (x86 FTZ/DAZ, as TensorFlow's
 * CPU kernels do); the caller's floating-point mode is restored on return.
 */
maas_err maas_trainer_step(maas_trainer *tr, const float *x, const float *y, int rows, double *loss,
                           double *acc_sum, char *errstr, size_t errstr_size);

/*
 * Holds a pruning mask (n_params floats of 0 or 1, borrowed, must outlive the
 * trainer): the weights are multiplied by it now and after every step, so a
 * pruned weight stays zero while the rest train. NULL removes it.
 */
void maas_trainer_set_mask(maas_trainer *tr, const float *mask);

/*
 * Where training time goes, for benchmarks and tuning: totals over
 * maas_trainer_step() calls, accumulated (never reset) into a caller-owned
 * struct. Costs two clock reads per GEMM, so it is off unless asked for.
 */
typedef struct maas_train_profile {
    long long steps;
    double step_s;     /* whole steps */
    double gemm_s;     /* inside the BLAS GEMM calls of those steps */
    double gemm_flops; /* 2 m n k summed over those calls */
    double update_s;   /* the optimizer update */
} maas_train_profile;

/* Borrowed; must outlive the trainer or be unset with NULL. */
void maas_trainer_set_profile(maas_trainer *tr, maas_train_profile *p);

/*
 * Forward + backward without updating: the mean loss and a pointer to the
 * gradient of every parameter (same layout as model->params; borrowed, valid
 * until the next call). Dropout is off. For gradient checks.
 */
maas_err maas_trainer_gradient(maas_trainer *tr, const float *x, const float *y, int rows,
                               double *loss, const float **grad, char *errstr, size_t errstr_size);

/* Forward only, dropout off: mean loss and summed accuracy over rows. */
maas_err maas_trainer_loss(maas_trainer *tr, const float *x, const float *y, int rows, double *loss,
                           double *acc_sum, char *errstr, size_t errstr_size);

/* One epoch's figures, as Keras's History records them. */
typedef struct maas_epoch_log {
    int epoch;  /* 1-based */
    int epochs; /* planned total */
    double loss, accuracy;
    double val_loss, val_accuracy;
    int has_accuracy, has_val;
    double seconds; /* wall time of the epoch */
} maas_epoch_log;

/*
 * Called after each epoch; return nonzero to stop training early (not an
 * error: fit returns MAAS_OK with what it has).
 */
typedef int (*maas_epoch_fn)(void *ud, const maas_epoch_log *log);

/*
 * Called between batches (batch is 0-based within the epoch); return nonzero
 * to cancel: fit returns MAAS_ERR_CANCELLED and leaves the weights as they are.
 */
typedef int (*maas_batch_fn)(void *ud, int epoch, size_t batch, size_t n_batches);

typedef struct maas_fit_opts {
    int epochs;             /* default 1 */
    int batch_size;         /* default 32 */
    int shuffle;            /* default 1: reshuffle the training rows every epoch */
    float validation_split; /* default 0: the *last* fraction of rows, as in Keras */
    const float *val_x;     /* explicit validation data (raw), overrides the split */
    const float *val_y;
    size_t val_rows;
    int standardize; /* learn per-feature mean/std on the training rows */
    /* Early stopping (Keras EarlyStopping). */
    int early_stopping;
    const char *monitor; /* "val_loss" (default), "loss", "accuracy", "val_accuracy" */
    int patience;        /* epochs without improvement before stopping; default 0 */
    float min_delta;     /* smallest change that counts as improvement */
    int restore_best;    /* restore the best epoch's weights when training ends */
    const float
        *param_mask; /* optional pruning mask held through training (maas_trainer_set_mask) */
    maas_train_profile *profile; /* optional, accumulated (maas_trainer_set_profile) */
    maas_epoch_fn on_epoch;
    maas_batch_fn on_batch;
    void *ud;      /* passed to both callbacks */
    maas_rng *rng; /* shuffling and dropout; required */
} maas_fit_opts;

/* Sets Keras's defaults. */
void maas_fit_opts_init(maas_fit_opts *o);

typedef struct maas_history {
    int n_epochs;           /* epochs run */
    maas_epoch_log *epochs; /* n_epochs entries, owned */
    int best_epoch;         /* 1-based epoch whose weights the model holds (early stopping) */
    int stopped_early;
} maas_history;

void maas_history_release(maas_history *h);

/*
 * What maas_fit (or maas_evaluate) on a network of that size holds in memory at
 * most, in bytes, from the shapes alone: the inputs and labels (label_cols
 * per row, after a one-hot expansion), the weights with their gradients, two
 * optimizer slots, the best weights and the saved model, the activations of a
 * batch (twice: training and validation) and the shuffle index. A caller
 * compares it with its budget before anything of the job is allocated.
 */
double maas_fit_bytes(const maas_net_size *size, int n_inputs, int label_cols, size_t rows,
                      int batch_size, int epochs);

/*
 * Keras's model.fit(): trains m on rows x n_inputs raw inputs and labels y.
 * Validates everything (shapes, NaN/Inf, label ranges, settings) first.
 * An int8-quantized model is refused: train the float model, then quantize.
 * hist (optional) is filled; release it with maas_history_release().
 */
maas_err maas_fit(maas_model *m, const maas_compile *c, const float *x, const float *y, size_t rows,
                  const maas_fit_opts *o, maas_history *hist, char *errstr, size_t errstr_size);

/* How maas_fit splits rows with validation_split (Keras: the last rows validate). */
void maas_fit_split(size_t rows, float validation_split, size_t *n_train, size_t *n_val);

/* Keras's model.evaluate(): mean loss and accuracy (NaN if not tracked) on raw inputs. */
maas_err maas_evaluate(const maas_model *m, const maas_compile *c, const float *x, const float *y,
                       size_t rows, double *loss, double *accuracy, char *errstr,
                       size_t errstr_size);

#endif
