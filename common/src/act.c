/* Activations, forward and backward, matching Keras's definitions. */
#include "maas/base.h"
#include "maas/model.h"

static const char *const act_names[MAAS_ACT__COUNT] = {
    [MAAS_ACT_LINEAR] = "linear",   [MAAS_ACT_RELU] = "relu",
    [MAAS_ACT_SIGMOID] = "sigmoid", [MAAS_ACT_TANH] = "tanh",
    [MAAS_ACT_SOFTMAX] = "softmax", [MAAS_ACT_LEAKY_RELU] = "leaky_relu",
    [MAAS_ACT_ELU] = "elu",         [MAAS_ACT_GELU] = "gelu",
};

const char *maas_act_name(maas_act act) {
    if ((int)act < 0 || act >= MAAS_ACT__COUNT) return "?";
    return act_names[act];
}

maas_err maas_act_from_name(const char *name, maas_act *out, char *errstr, size_t errstr_size) {
    if (!name || !*name || !strcmp(name, "None")) { /* Keras: activation=None is linear */
        *out = MAAS_ACT_LINEAR;
        return MAAS_OK;
    }
    for (int i = 0; i < MAAS_ACT__COUNT; i++) {
        if (!strcmp(name, act_names[i])) {
            *out = (maas_act)i;
            return MAAS_OK;
        }
    }
    return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                     "unknown activation '%s' (known: linear, relu, sigmoid, tanh, softmax, "
                     "leaky_relu, elu, gelu)",
                     name);
}

float maas_act_alpha(const maas_layer_spec *spec) {
    if (spec->act_alpha != 0.0f) return spec->act_alpha;
    if (spec->act == MAAS_ACT_LEAKY_RELU) return 0.2f;
    if (spec->act == MAAS_ACT_ELU) return 1.0f;
    return 0.0f;
}

static inline float sigmoidf(float x) {
    /* Two branches keep exp() from overflowing for large |x|. */
    if (x >= 0) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

void maas_act_forward(maas_act act, float alpha, float *z, size_t rows, int n) {
    size_t total = rows * (size_t)n;
    switch (act) {
    case MAAS_ACT_LINEAR:
        break;
    case MAAS_ACT_RELU:
        for (size_t i = 0; i < total; i++) z[i] = z[i] > 0.0f ? z[i] : 0.0f;
        break;
    case MAAS_ACT_SIGMOID:
        for (size_t i = 0; i < total; i++) z[i] = sigmoidf(z[i]);
        break;
    case MAAS_ACT_TANH:
        for (size_t i = 0; i < total; i++) z[i] = tanhf(z[i]);
        break;
    case MAAS_ACT_LEAKY_RELU:
        for (size_t i = 0; i < total; i++) z[i] = z[i] > 0.0f ? z[i] : alpha * z[i];
        break;
    case MAAS_ACT_ELU:
        for (size_t i = 0; i < total; i++) z[i] = z[i] > 0.0f ? z[i] : alpha * expm1f(z[i]);
        break;
    case MAAS_ACT_GELU:
        for (size_t i = 0; i < total; i++)
            z[i] = 0.5f * z[i] * (1.0f + erff(z[i] * (float)M_SQRT1_2));
        break;
    case MAAS_ACT_SOFTMAX:
        for (size_t r = 0; r < rows; r++) {
            float *row = z + r * (size_t)n;
            float mx = row[0];
            for (int j = 1; j < n; j++) mx = row[j] > mx ? row[j] : mx;
            float sum = 0.0f;
            for (int j = 0; j < n; j++) {
                row[j] = expf(row[j] - mx);
                sum += row[j];
            }
            float inv = 1.0f / sum;
            for (int j = 0; j < n; j++) row[j] *= inv;
        }
        break;
    case MAAS_ACT__COUNT:
        break;
    }
}

void maas_act_backward(maas_act act, float alpha, const float *z, const float *y, float *g,
                       size_t rows, int n) {
    size_t total = rows * (size_t)n;
    switch (act) {
    case MAAS_ACT_LINEAR:
        break;
    case MAAS_ACT_RELU:
        for (size_t i = 0; i < total; i++) g[i] = z[i] > 0.0f ? g[i] : 0.0f;
        break;
    case MAAS_ACT_SIGMOID:
        for (size_t i = 0; i < total; i++) g[i] *= y[i] * (1.0f - y[i]);
        break;
    case MAAS_ACT_TANH:
        for (size_t i = 0; i < total; i++) g[i] *= 1.0f - y[i] * y[i];
        break;
    case MAAS_ACT_LEAKY_RELU:
        for (size_t i = 0; i < total; i++) g[i] = z[i] > 0.0f ? g[i] : alpha * g[i];
        break;
    case MAAS_ACT_ELU:
        for (size_t i = 0; i < total; i++) g[i] = z[i] > 0.0f ? g[i] : g[i] * (y[i] + alpha);
        break;
    case MAAS_ACT_GELU: {
        const float inv_sqrt_2pi = 0.3989422804014327f;
        for (size_t i = 0; i < total; i++) {
            float x = z[i];
            float cdf = 0.5f * (1.0f + erff(x * (float)M_SQRT1_2));
            g[i] *= cdf + x * inv_sqrt_2pi * expf(-0.5f * x * x);
        }
        break;
    }
    case MAAS_ACT_SOFTMAX:
        /* Jacobian-vector product: dz_i = y_i * (g_i - sum_j g_j y_j). */
        for (size_t r = 0; r < rows; r++) {
            const float *yr = y + r * (size_t)n;
            float *gr = g + r * (size_t)n;
            float dot = 0.0f;
            for (int j = 0; j < n; j++) dot += gr[j] * yr[j];
            for (int j = 0; j < n; j++) gr[j] = yr[j] * (gr[j] - dot);
        }
        break;
    case MAAS_ACT__COUNT:
        break;
    }
}

size_t maas_find_nonfinite(const float *v, size_t n) {
    /* Scan blocks with a branch-free OR of "exponent all ones" flags, and only
     * look for the exact index inside a block that has one. */
    const size_t block = 256;
    for (size_t b = 0; b < n; b += block) {
        size_t end = b + block < n ? b + block : n;
        uint32_t bad = 0;
        for (size_t i = b; i < end; i++) {
            uint32_t bits;
            memcpy(&bits, &v[i], sizeof(bits));
            bad |= (uint32_t)((bits & 0x7f800000u) == 0x7f800000u);
        }
        if (bad)
            for (size_t i = b; i < end; i++)
                if (!isfinite(v[i])) return i;
    }
    return n;
}
