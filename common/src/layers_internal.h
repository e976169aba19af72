/* Private to the compute core: a layer's planning (shapes, geometry, weights) and the
 * scratch its kernels need, shared by model.c (build, inference) and train.c. */
#ifndef MAAS_LAYERS_INTERNAL_H
#define MAAS_LAYERS_INTERNAL_H

#include "maas/model.h"
#include "maas/norm.h"

/* The widest flat sample a layer may produce (its activations' row). */
#define MAAS_MAX_WIDTH (1 << 22)
/* The floats of one im2col workspace: a convolution runs in chunks of rows that fit. */
#define MAAS_CONV_COL_CAP ((size_t)1 << 22)

/*
 * Checks spec (layer idx of a model) against the shape it receives and fills l: the spec,
 * shapes, widths, geometry and weights, placed from *off on in the parameter block (*off
 * advances past them). Nothing is allocated. Errors name the layer by its position.
 */
maas_err maas__layer_plan(int idx, const maas_layer_spec *spec, const maas_shape *in, size_t *off,
                          maas_layer *l, char *errstr, size_t errstr_size);

/* Plans every layer of a model over n_inputs features into layers (n_layers entries; NULL:
 * one at a time, kept nowhere) and sizes the network; nothing is allocated (model.c). */
maas_err maas__layers_plan(int n_inputs, const maas_layer_spec *specs, int n_layers,
                           maas_layer *layers, maas_net_size *size, char *errstr,
                           size_t errstr_size);

/* Keras's default name stem ("conv2d", "max_pooling2d", ...). */
const char *maas__layer_stem(const maas_layer_spec *s);

/* Rows of a batch one im2col call of a convolution takes (>= 1, <= max_rows). */
int maas__conv_chunk_rows(const maas_layer *l, int max_rows);

/* Floats of scratch a training batch's row needs in layer l beyond its activations. */
size_t maas__layer_scratch_per_row(const maas_layer *l);

/* 1 when the layer has weights (a gradient to pass to the layers below it). */
int maas__layer_has_weights(const maas_layer *l);

/*
 * 1 when layer l has a kernel that is a matrix of rows inputs x cols outputs, row-major, at
 * l->w_off: Dense (n_in x units) and convolutions (kh*kw*c x filters, Keras's layout read
 * flat): what int8 quantization (per output column) and pruning work on. 0 otherwise (rows
 * and cols 0). rows/cols may be NULL.
 */
int maas__layer_kernel_matrix(const maas_layer *l, int *rows, int *cols);

/* The positions (s) and channels (c) BatchNormalization normalizes over. */
void maas__layer_bn_extent(const maas_layer *l, size_t *s, int *c);

/* Inference of one layer of m other than Dense (whose kernels depend on the model's
 * quantization): rows of in into out, col an im2col workspace for col_rows rows; 0 when the
 * layer is the identity at inference (Dropout, Flatten, Reshape: out is untouched). */
int maas__layer_forward(const maas_model *m, const maas_layer *l, const float *in, int rows,
                        float *col, int col_rows, float *out);

/* Layer l's weight of that name, or NULL. */
const maas_weight *maas__layer_weight(const maas_layer *l, const char *name);

/* A BatchNormalization layer's settings, with gamma and beta in params (NULL: none). */
maas_bn_params maas__layer_bn_params(const maas_layer *l, const float *params);

#endif
