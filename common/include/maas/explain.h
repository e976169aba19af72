/*
 * explain.h - why a model answered what it did: per-feature attributions of each output,
 * from the compute core's own backward pass (issue 22).
 *
 * For one input row x (raw features, before the model's standardization) and output j:
 *
 *   gradient_x_input      a_ij = x_i * df_j/dx_i (x)
 *   integrated_gradients  a_ij = (x_i - b_i) * mean over k = 1..steps of df_j/dx_i at
 *                         b + (k - 1/2) / steps * (x - b)   (the midpoint rule; b the baseline)
 *
 * Integrated gradients are complete up to the rule's error: sum_i a_ij = f_j(x) - f_j(b) (on
 * relu networks exactly wherever no unit changes sign between midpoints). Gradients are computed
 * in double precision through every layer (standardization, Dense, convolutions, pooling (max:
 * to each window's first maximum), BatchNormalization on its moving statistics, the
 * activations, softmax, Dropout, Flatten and Reshape as identity), on the model's float32
 * weights: an int8 or bf16 model is explained on its dequantized weights (the float32 values in
 * params), not on its integer arithmetic. A model with an Embedding (inputs that are indices)
 * is UNSUPPORTED.
 */
#ifndef MAAS_EXPLAIN_H
#define MAAS_EXPLAIN_H

#include <stddef.h>

#include "maas/err.h"
#include "maas/model.h"

typedef enum maas_explain_method {
    MAAS_EXPLAIN_GRADIENT_X_INPUT = 0,
    MAAS_EXPLAIN_INTEGRATED_GRADIENTS
} maas_explain_method;

#define MAAS_EXPLAIN_MAX_STEPS 4096

/* Parses "gradient_x_input" / "integrated_gradients" (UNKNOWN_NAME otherwise). */
maas_err maas_explain_parse(const char *name, maas_explain_method *out, char *errstr,
                            size_t errstr_size);
/* The method's name. Never NULL. */
const char *maas_explain_name(maas_explain_method m);

/*
 * Attributions of rows x n_inputs inputs into attr (rows x n_outputs x n_inputs: row r,
 * output j, feature i at (r * n_outputs + j) * n_inputs + i). baseline: n_inputs raw
 * features for integrated gradients (NULL: zeros); ignored by gradient_x_input. steps: 1 ..
 * MAAS_EXPLAIN_MAX_STEPS for integrated gradients (ARG outside). Non-finite inputs or
 * baseline: NON_FINITE naming the row and column. Allocates only O(model width).
 */
maas_err maas_explain(const maas_model *m, maas_explain_method method, int steps,
                      const float *baseline, const float *x, size_t rows, float *attr, char *errstr,
                      size_t errstr_size);

/* Operations per row (2 per multiply-add, as maas/cost.h counts): a forward pass and one
 * backward pass per output at each point (1 for gradient_x_input, steps for integrated
 * gradients). */
double maas_explain_flops(const maas_model *m, maas_explain_method method, int steps);
/* Gradient of every output by every raw input feature at one row: grad (n_outputs x n_inputs). */
maas_err maas_explain_gradient(const maas_model *m, const double *x, double *grad, char *errstr,
                               size_t errstr_size);

#endif
