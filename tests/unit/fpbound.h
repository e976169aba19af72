/*
 * fpbound.h - what float32 arithmetic guarantees for a forward pass, for the
 * tests that compare outputs across references, kernels and batch sizes.
 *
 * maas_test_forward_bound() runs a float model's forward pass in double (the
 * exact result, up to double rounding) and, alongside it, a running error
 * analysis: for every output, a bound on |float32 result - exact| that holds
 * for ANY summation order, blocking and FMA use a BLAS kernel may choose, so
 * on any CPU. Per Dense layer with n inputs, computed inputs h^ (each within
 * e_i of the exact h_i), exact float32 weights W and bias b:
 *
 *   |z^_j - z_j| <= sum_i |W_ij| e_i + gamma_{n+1} (sum_i |h_i W_ij| + |b_j|)
 *
 * where gamma_k = k u / (1 - k u), u = 2^-24 (Higham, "Accuracy and Stability
 * of Numerical Algorithms", 2nd ed., Thm 3.1 and (3.5): a sum of k rounded
 * terms in any order; FMA only removes roundings), and the activation adds
 *
 *   |y^_j - y_j| <= L |z^_j - z_j| + c u |y_j|  (+ c u |z_j| for gelu)
 *
 * with L its Lipschitz constant (relu, linear, tanh 1; sigmoid 1/4; leaky_relu
 * and elu max(1, alpha); gelu 1.13) and c = 4 covering libm's expf, tanhf,
 * erff and expm1f (within 2 ulp in glibc) and the few float operations around
 * them. Softmax: |dy_j| <= y_j (2 max_k |dz_k| + (n + 4 + |z_j - m| + max_k
 * |z_k - m|) u), m the row maximum (the shift z - m rounds inside exp).
 * Standardization (x - mean) / std adds gamma_2 |x - mean| / std to the input.
 * A bf16 model whose layers run on the bf16 kernel (maas/bkernel.h) rounds each
 * layer's computed input to bf16 first: |bf16(h^_i) - h_i| <= e_i + 2^-8 (|h_i|
 * + e_i) + 2^-126 (inputs below 2^-126 become 0), and its float32 sums flush
 * results below 2^-126: (n + 1) 2^-126 more per output.
 * The bound uses the double values where the analysis has the computed ones;
 * the difference is second order, covered by a 1% margin.
 *
 * It is tight where it matters: a wrong activation, a transposed kernel, a
 * missing bias or a weight off in its 4th digit exceeds it by orders of
 * magnitude (test_parity checks such mutants fail).
 */
#ifndef MAAS_TEST_FPBOUND_H
#define MAAS_TEST_FPBOUND_H

#include "maas/base.h"
#include "maas/bkernel.h"
#include "maas/model.h"

#define MAAS_TEST_U (1.0 / 16777216.0) /* float32 unit roundoff, 2^-24 */

static inline double maas_test_gamma(double k) {
    return k * MAAS_TEST_U / (1.0 - k * MAAS_TEST_U);
}

static inline double maas_test_act_lipschitz(maas_act act, double alpha) {
    switch (act) {
    case MAAS_ACT_SIGMOID:
        return 0.25;
    case MAAS_ACT_LEAKY_RELU:
    case MAAS_ACT_ELU:
        return fmax(1.0, fabs(alpha));
    case MAAS_ACT_GELU:
        return 1.13; /* max of Phi(x) + x phi(x), at x = sqrt(2) */
    default:
        return 1.0;
    }
}

static inline double maas_test_act(maas_act act, double alpha, double z) {
    switch (act) {
    case MAAS_ACT_RELU:
        return z > 0 ? z : 0;
    case MAAS_ACT_SIGMOID:
        return 1.0 / (1.0 + exp(-z));
    case MAAS_ACT_TANH:
        return tanh(z);
    case MAAS_ACT_LEAKY_RELU:
        return z > 0 ? z : alpha * z;
    case MAAS_ACT_ELU:
        return z > 0 ? z : alpha * expm1(z);
    case MAAS_ACT_GELU:
        return 0.5 * z * (1.0 + erf(z * M_SQRT1_2));
    default:
        return z; /* linear; softmax is done per row by the caller */
    }
}

/*
 * Exact (double) outputs of a float model for rows x n_inputs inputs into
 * exact[rows x n_outputs], and per output the bound on a float32 result's
 * distance from it into bound[rows x n_outputs]. Returns 0, or -1 on a
 * quantized model (int8 has its own guarantees) or out of memory.
 */
static inline int maas_test_forward_bound(const maas_model *m, const float *x, size_t rows,
                                          double *exact, double *bound) {
    if (m->quant) return -1;
    /* bf16 layers on the bf16 kernel: inputs rounded to 8 significant bits, results flushed */
    int bk = m->bf16 && maas_bf16_available();
    double ru = bk ? 1.0 / 256.0 : 0.0, tiny = bk ? ldexp(1.0, -126) : 0.0;
    int w = m->n_inputs;
    for (int i = 0; i < m->n_layers; i++) w = m->layers[i].n_out > w ? m->layers[i].n_out : w;
    double *h = malloc((size_t)w * sizeof(double)), *e = malloc((size_t)w * sizeof(double));
    double *z = malloc((size_t)w * sizeof(double)), *ez = malloc((size_t)w * sizeof(double));
    if (!h || !e || !z || !ez) {
        free(h), free(e), free(z), free(ez);
        return -1;
    }
    for (size_t r = 0; r < rows; r++) {
        int n = m->n_inputs;
        for (int i = 0; i < n; i++) {
            double v = x[r * (size_t)n + i];
            if (m->feat_mean) {
                double d = v - m->feat_mean[i];
                h[i] = d / m->feat_std[i];
                e[i] = maas_test_gamma(2) * fabs(d) / m->feat_std[i];
            } else {
                h[i] = v;
                e[i] = 0.0;
            }
        }
        for (int li = 0; li < m->n_layers; li++) {
            const maas_layer *l = &m->layers[li];
            if (l->spec.kind != MAAS_LAYER_DENSE) continue;
            const float *W = m->params + l->w_off;
            const float *b = l->spec.use_bias ? m->params + l->b_off : NULL;
            double g = maas_test_gamma(l->n_in + 1);
            for (int j = 0; j < l->n_out; j++) {
                double s = b ? b[j] : 0.0, mag = b ? fabs(b[j]) : 0.0, prop = 0.0;
                for (int i = 0; i < l->n_in; i++) {
                    double wij = W[(size_t)i * l->n_out + j];
                    s += h[i] * wij;
                    mag += fabs(h[i] * wij) * (1.0 + ru);
                    prop += fabs(wij) * (e[i] + ru * (fabs(h[i]) + e[i]) + tiny);
                }
                z[j] = s;
                ez[j] = prop + g * mag + (l->n_in + 1) * tiny;
            }
            double alpha = maas_act_alpha(&l->spec), c = 4.0 * MAAS_TEST_U;
            if (l->spec.act == MAAS_ACT_SOFTMAX) {
                double mx = z[0], dz = 0.0, sum = 0.0, spread = 0.0;
                for (int j = 0; j < l->n_out; j++) mx = fmax(mx, z[j]);
                for (int j = 0; j < l->n_out; j++) {
                    dz = fmax(dz, ez[j]);
                    spread = fmax(spread, mx - z[j]);
                    sum += exp(z[j] - mx);
                }
                for (int j = 0; j < l->n_out; j++) {
                    h[j] = exp(z[j] - mx) / sum;
                    e[j] = h[j] * (2.0 * dz + (l->n_out + 4 + (mx - z[j]) + spread) * MAAS_TEST_U);
                }
            } else {
                double lip = maas_test_act_lipschitz(l->spec.act, alpha);
                for (int j = 0; j < l->n_out; j++) {
                    h[j] = maas_test_act(l->spec.act, alpha, z[j]);
                    e[j] = lip * ez[j];
                    if (l->spec.act != MAAS_ACT_LINEAR && l->spec.act != MAAS_ACT_RELU &&
                        l->spec.act != MAAS_ACT_LEAKY_RELU)
                        e[j] += c * fabs(h[j]);
                    if (l->spec.act == MAAS_ACT_GELU) e[j] += c * fabs(z[j]);
                    if (l->spec.act == MAAS_ACT_LEAKY_RELU) e[j] += MAAS_TEST_U * fabs(h[j]);
                }
            }
        }
        for (int j = 0; j < m->n_outputs; j++) {
            exact[r * (size_t)m->n_outputs + j] = h[j];
            bound[r * (size_t)m->n_outputs + j] = 1.01 * e[j] + 1e-37;
        }
    }
    free(h), free(e), free(z), free(ez);
    return 0;
}

/* The largest |got - exact| / bound over n outputs (<= 1: within the bound). */
static inline double maas_test_bound_ratio(const float *got, const double *exact,
                                           const double *bound, size_t n) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)got[i] - exact[i]) / bound[i]);
    return worst;
}

#endif
