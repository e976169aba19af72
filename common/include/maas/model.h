/*
 * model.h - Keras-style Sequential MLPs: layers, activations, initializers,
 * the model object and inference.
 *
 * A model is a stack of Dense and Dropout layers over a fixed input width.
 * All parameters live in one contiguous float block (model->params), layer by
 * layer: kernel (n_in x n_out, row-major, the Keras layout: element [i][j]
 * connects input i to unit j) followed by the bias. Dense computes
 * y = act(x . W + b), exactly as Keras does.
 *
 * Optional feature standardization (per-feature mean and std learnt by fit)
 * belongs to the model: predict applies it to raw inputs.
 */
#ifndef MAAS_MODEL_H
#define MAAS_MODEL_H

#include <stddef.h>

#include "maas/err.h"
#include "maas/qkernel.h" /* the int8 floor below: maas_quant, maas_qkernel */
#include "maas/rng.h"

/* Limits checked before anything is allocated. */
#define MAAS_MAX_LAYERS 64
#define MAAS_MAX_UNITS 65536
#define MAAS_MAX_PARAMS (64u * 1024u * 1024u) /* 256 MiB of float32 */
#define MAAS_LAYER_NAME_MAX 64

typedef enum maas_act {
    MAAS_ACT_LINEAR = 0,
    MAAS_ACT_RELU,
    MAAS_ACT_SIGMOID,
    MAAS_ACT_TANH,
    MAAS_ACT_SOFTMAX,
    MAAS_ACT_LEAKY_RELU, /* x if x > 0 else alpha * x; Keras 3 default alpha 0.2 */
    MAAS_ACT_ELU,        /* x if x > 0 else alpha * (exp(x) - 1); alpha 1.0 */
    MAAS_ACT_GELU,       /* exact (erf) form, Keras's approximate=False */
    MAAS_ACT__COUNT
} maas_act;

typedef enum maas_init {
    MAAS_INIT_GLOROT_UNIFORM = 0, /* U(-l, l), l = sqrt(6 / (fan_in + fan_out)) */
    MAAS_INIT_HE_NORMAL,          /* truncated normal, stddev sqrt(2 / fan_in) / .8796 */
    MAAS_INIT_ZEROS,
    MAAS_INIT__COUNT
} maas_init;

typedef enum maas_layer_kind { MAAS_LAYER_DENSE = 0, MAAS_LAYER_DROPOUT } maas_layer_kind;

/* What a layer is, before any weights exist. Plain data; copy freely. */
typedef struct maas_layer_spec {
    maas_layer_kind kind;
    char name[MAAS_LAYER_NAME_MAX]; /* optional; "" gets a Keras-style default */
    /* Dense */
    int units;
    int use_bias;    /* 1 = with bias (Keras default) */
    maas_act act;    /* activation applied after x.W + b */
    float act_alpha; /* slope for leaky_relu / elu; 0 picks the Keras default */
    maas_init kernel_init;
    maas_init bias_init;
    /* Dropout */
    float rate; /* fraction dropped at training time, in [0, 1) */
} maas_layer_spec;

/* Returns a Dense spec with Keras defaults (bias, glorot_uniform, zeros). */
maas_layer_spec maas_dense(int units, maas_act act);
/* Returns a Dropout spec. */
maas_layer_spec maas_dropout(float rate);

/*
 * Parses a compact layer list such as "10:relu,dropout:0.2,1:sigmoid": each
 * item is UNITS[:ACTIVATION[:nobias]] (a Dense layer, linear by default) or
 * dropout:RATE. Fills up to max specs and *n.
 */
maas_err maas_layers_parse(const char *text, maas_layer_spec *out, int max, int *n, char *errstr,
                           size_t errstr_size);

/* A built layer: its spec plus where its parameters sit in model->params. */
typedef struct maas_layer {
    maas_layer_spec spec;
    int n_in, n_out;
    size_t w_off; /* kernel offset (Dense only) */
    size_t b_off; /* bias offset (Dense with bias only) */
} maas_layer;

/* What a model's weights are stored and served as (maas/quant.h). */
typedef enum maas_quant_kind {
    MAAS_QUANT_NONE = 0,
    MAAS_QUANT_INT8,
    MAAS_QUANT_BF16
} maas_quant_kind;

typedef struct maas_model {
    int n_inputs;
    int n_outputs;
    int n_layers;
    maas_layer *layers; /* n_layers entries, owned */
    float *params;      /* n_params floats, owned, one block */
    size_t n_params;
    float *feat_mean; /* n_inputs floats or NULL; owned */
    float *feat_std;  /* n_inputs floats or NULL; owned; every entry > 0 */
    /* int8 kernels (maas/quant.h) or NULL for a float model; owned. When set,
     * params holds the dequantized kernels and inference runs in int8. */
    struct maas_quant *quant;
    /* bf16 kernels (maas/quant.h) or NULL; owned. When set, params holds the kernels as
     * float32 (exact bf16 values) and inference runs them in bf16 where the CPU can. */
    struct maas_bf16 *bf16;
} maas_model;

/* A network's size from its shapes alone (nothing allocated). */
typedef struct maas_net_size {
    size_t n_params;      /* weights and biases */
    int n_outputs;        /* the last layer's width */
    int widest;           /* the widest of the inputs and every layer */
    size_t cells_per_row; /* sum of every layer's width: activations per row */
} maas_net_size;

/*
 * Validates layer specs as maas_model_create does and sizes the network
 * they describe, before anything is allocated: callers check their budgets
 * (parameters, memory) against it first. LIMIT_EXCEEDED past MAAS_MAX_PARAMS.
 */
maas_err maas_layers_size(int n_inputs, const maas_layer_spec *specs, int n_layers,
                          maas_net_size *size, char *errstr, size_t errstr_size);

/*
 * Builds a model of n_layers layers over n_inputs features and initializes its
 * weights from rng (borrowed; may be NULL only if every initializer is zeros).
 * Checks every size against the limits above before allocating.
 * Returns a model to free with maas_model_free(), or NULL with errstr filled.
 */
maas_model *maas_model_new(int n_inputs, const maas_layer_spec *layers, int n_layers, maas_rng *rng,
                           char *errstr, size_t errstr_size);

/* The same, with the error's code (INVALID_ARGUMENT, UNKNOWN_NAME, LIMIT_EXCEEDED, OUT_OF_MEMORY);
 * *out NULL on error. */
maas_err maas_model_create(maas_model **out, int n_inputs, const maas_layer_spec *layers,
                           int n_layers, maas_rng *rng, char *errstr, size_t errstr_size);

/* Frees a model and everything it owns. NULL is fine. */
void maas_model_free(maas_model *m);

/* Deep copy (weights, standardization). Free with maas_model_free(). */
maas_model *maas_model_clone(const maas_model *m, char *errstr, size_t errstr_size);

/* Re-initializes every weight from its initializer and clears standardization. */
maas_err maas_model_init_weights(maas_model *m, maas_rng *rng, char *errstr, size_t errstr_size);

/*
 * Sets (copies) or, with mean == NULL, clears feature standardization. std
 * entries below 1e-7 are stored as 1 so a constant feature maps to 0.
 */
maas_err maas_model_set_standardization(maas_model *m, const float *mean, const float *std,
                                        char *errstr, size_t errstr_size);

/* Kernel / bias of Dense layer i (NULL if not Dense / no bias). Borrowed. */
float *maas_model_kernel(maas_model *m, int i);
float *maas_model_bias(maas_model *m, int i);

/* Checks that every parameter is finite; names the first bad layer. */
maas_err maas_model_check_finite(const maas_model *m, char *errstr, size_t errstr_size);

/* Activation names as Keras spells them ("relu", "leaky_relu", ...). */
const char *maas_act_name(maas_act act);
maas_err maas_act_from_name(const char *name, maas_act *out, char *errstr, size_t errstr_size);
const char *maas_init_name(maas_init init);
maas_err maas_init_from_name(const char *name, maas_init *out, char *errstr, size_t errstr_size);

/*
 * Inference context: scratch memory for forward passes of up to max_batch rows,
 * so predict allocates nothing per call. It borrows the model, which must
 * outlive it and not change shape. One context per thread.
 */
typedef struct maas_infer maas_infer;

maas_infer *maas_infer_new(const maas_model *m, int max_batch, char *errstr, size_t errstr_size);
/* The same, with the error's code (LIMIT_EXCEEDED, OUT_OF_MEMORY); *out NULL on error. */
maas_err maas_infer_create(maas_infer **out, const maas_model *m, int max_batch, char *errstr,
                           size_t errstr_size);
void maas_infer_free(maas_infer *inf);

/*
 * Predicts rows x n_inputs raw (unstandardized) inputs into out
 * (rows x n_outputs), in chunks of the context's max_batch. Rejects NaN/Inf
 * input. A single row runs through sgemv. A quantized model's Dense layers run
 * in int8 (maas/quant.h).
 */
maas_err maas_infer_run(maas_infer *inf, const float *x, size_t rows, float *out, char *errstr,
                        size_t errstr_size);

/* Selects the int8 kernel a context uses for a quantized model (tests compare them). */
void maas_infer_set_qkernel(maas_infer *inf, maas_qkernel k);

/* Convenience: a temporary context for one call. */
maas_err maas_model_predict(const maas_model *m, const float *x, size_t rows, float *out,
                            char *errstr, size_t errstr_size);

/* ---- internal to the compute core (used by train.c and tests) ---- */

/* Applies act in place to rows x n values (softmax works per row). */
void maas_act_forward(maas_act act, float alpha, float *z, size_t rows, int n);

/*
 * Given the activation input z, its output y and dL/dy in g (all rows x n),
 * overwrites g with dL/dz.
 */
void maas_act_backward(maas_act act, float alpha, const float *z, const float *y, float *g,
                       size_t rows, int n);

/*
 * Index of the first NaN or Inf among n floats, or n if all are finite.
 * Vectorizes (an integer test on the exponent bits), so checking a batch of
 * inputs costs far less than the forward pass it guards.
 */
size_t maas_find_nonfinite(const float *v, size_t n);

/* The alpha a layer really uses (its own, or the Keras default when 0). */
float maas_act_alpha(const maas_layer_spec *spec);

#endif
