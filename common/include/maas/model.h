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

#include "maas/conv.h" /* maas_conv_geom */
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
    MAAS_INIT_RANDOM_UNIFORM, /* U(-0.05, 0.05): Keras's "uniform", Embedding's default */
    MAAS_INIT_ONES,
    MAAS_INIT__COUNT
} maas_init;

typedef enum maas_layer_kind {
    MAAS_LAYER_DENSE = 0,
    MAAS_LAYER_DROPOUT,
    MAAS_LAYER_CONV,      /* Conv1D / Conv2D (dims), units = filters */
    MAAS_LAYER_MAXPOOL,   /* MaxPooling1D / 2D */
    MAAS_LAYER_AVGPOOL,   /* AveragePooling1D / 2D */
    MAAS_LAYER_GAP,       /* GlobalAveragePooling1D / 2D */
    MAAS_LAYER_FLATTEN,   /* identity on rows (channels_last order is Keras's Flatten order) */
    MAAS_LAYER_RESHAPE,   /* identity on rows; gives them a shape (target) */
    MAAS_LAYER_BATCHNORM, /* BatchNormalization over the last axis */
    MAAS_LAYER_EMBEDDING, /* integer inputs -> vocab x units table rows */
    MAAS_LAYER__COUNT
} maas_layer_kind;

/*
 * A sample's shape, channels last: (n) for a feature vector, (steps, channels) for 1-D
 * layers, (height, width, channels) for 2-D ones. Rows are always flat (the product of the
 * dimensions, row-major): a model's input is a flat row, and a leading Reshape gives it the
 * shape its first convolution needs (a Keras model whose input has rank > 1 is read that way).
 */
#define MAAS_MAX_RANK 3
typedef struct maas_shape {
    int rank; /* 1..MAAS_MAX_RANK */
    int d[MAAS_MAX_RANK];
} maas_shape;

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
    /* Conv (units = filters, act, use_bias, kernel_init, bias_init), pooling, GAP */
    int dims;   /* 1 or 2: Conv1D / Conv2D, pooling 1D / 2D, GlobalAveragePooling1D / 2D */
    int kh, kw; /* kernel or pool window; 1-D: kh = 1 */
    int sh, sw; /* strides; 1-D: sh = 1 (pooling: Keras's default strides = the window) */
    int same;   /* padding "same" (1) or "valid" (0) */
    /* Reshape */
    maas_shape target;
    /* BatchNormalization */
    float epsilon, momentum; /* Keras: 0.001, 0.99 */
    int center, scale;       /* beta and gamma (Keras: both) */
    /* Embedding (units = output_dim) */
    int vocab; /* input_dim */
} maas_layer_spec;

/* Returns a Dense spec with Keras defaults (bias, glorot_uniform, zeros). */
maas_layer_spec maas_dense(int units, maas_act act);
/* Returns a Dropout spec. */
maas_layer_spec maas_dropout(float rate);
/* Conv2D (dims 2) or Conv1D (dims 1: kh = sh = 1) with Keras defaults (stride 1, "valid",
 * bias, glorot_uniform). */
maas_layer_spec maas_conv(int dims, int filters, int kh, int kw, maas_act act);
/* Max or average pooling (kind), strides = the window, "valid"; GlobalAveragePooling. */
maas_layer_spec maas_pool(maas_layer_kind kind, int dims, int kh, int kw);
maas_layer_spec maas_global_avgpool(int dims);
maas_layer_spec maas_flatten(void);
maas_layer_spec maas_reshape(const maas_shape *target);
/* BatchNormalization with Keras's defaults (momentum 0.99, epsilon 0.001, center, scale). */
maas_layer_spec maas_batchnorm(void);
/* Embedding of vocab indices into dim floats (Keras's default init: uniform +-0.05). */
maas_layer_spec maas_embedding(int vocab, int dim);

/* Keras's class name of a spec ("Conv2D", "MaxPooling1D", ...). */
const char *maas_layer_class(const maas_layer_spec *s);
/* The spec as one item of the maas_layers_parse grammar (no name); the length written, or
 * -1 if it did not fit. */
int maas_layer_format(const maas_layer_spec *s, char *buf, size_t size);
/* "(None, 26, 26, 32)" */
void maas_shape_format(const maas_shape *s, char *buf, size_t size);

/*
 * Parses a compact layer list such as "10:relu,dropout:0.2,1:sigmoid" or
 * "reshape:28x28x1,conv2d:32:3x3:relu,maxpool:2x2,flatten,128:relu,10:softmax". Items:
 *   UNITS[:ACTIVATION[:nobias]]            Dense (linear by default)
 *   dropout:RATE
 *   conv2d:FILTERS:KHxKW[:ACT][:sSHxSW][:same][:nobias]   conv1d:FILTERS:K[:ACT][:sS][:same]...
 *   maxpool:KHxKW[:sSHxSW][:same]  avgpool:...  (a window KH or "K" alone: 1-D)
 *   gap2d, gap1d (GlobalAveragePooling), flatten, reshape:AxBxC, batchnorm, embedding:VOCAB:DIM
 * Fills up to max specs and *n.
 */
maas_err maas_layers_parse(const char *text, maas_layer_spec *out, int max, int *n, char *errstr,
                           size_t errstr_size);

/* One weight array of a layer, as Keras stores it: its name ("kernel", "bias", "gamma",
 * "beta", "moving_mean", "moving_variance", "embeddings"), shape and place in params. */
#define MAAS_LAYER_MAX_WEIGHTS 4
typedef struct maas_weight {
    const char *name; /* static string */
    int rank;         /* 1..4 */
    int dims[4];
    size_t off, n; /* in model->params; n = the product of dims */
    int trainable; /* 0: moving statistics (updated by training's forward pass) */
} maas_weight;

/* A built layer: its spec plus its shapes and where its parameters sit in model->params. */
typedef struct maas_layer {
    maas_layer_spec spec;
    int n_in, n_out;     /* flat widths of a sample in and out */
    maas_shape in, out;  /* their shapes */
    size_t w_off;        /* kernel (Dense, Conv), gamma/first weight (BatchNormalization),
                          * table (Embedding) */
    size_t b_off;        /* bias (Dense, Conv with bias) */
    maas_conv_geom geom; /* Conv, pooling, GAP: the 2-D geometry (1-D: h = 1) */
    int n_weights;       /* Keras's order */
    maas_weight weights[MAAS_LAYER_MAX_WEIGHTS];
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
    size_t cells_per_row; /* activations per row (every layer's width, with the scratch of
                           * convolutions, max pooling and normalization) */
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

/* 1 when every layer is Dense, Dropout, Flatten or Reshape (the last three: the identity on
 * rows at inference): what int8/bf16 quantization, pruning and explanations take today (they
 * refuse other models, naming the first other layer). */
int maas_model_is_mlp(const maas_model *m);
maas_err maas_model_check_mlp(const maas_model *m, const char *what, char *errstr,
                              size_t errstr_size);

/* The shape of one input row: the first layer's output when it is a Reshape (a Keras model's
 * input shape, or --layers reshape:HxWxC), else (n_inputs). */
void maas_model_input_shape(const maas_model *m, maas_shape *s);

/* 1 when the first layer is an Embedding (its inputs are indices, never standardized). */
int maas_model_takes_indices(const maas_model *m);

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

/* Bytes of scratch a context of max_batch rows holds besides its activations (the
 * convolutions' im2col workspace, at most 16 MiB). */
size_t maas_infer_scratch_bytes(const maas_model *m, int max_batch);

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
