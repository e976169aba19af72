/*
 * int8 quantization of models (per-channel weights, per-row dynamic or
 * calibrated static inputs), bf16 weights and magnitude pruning: transforms of
 * a model's weights. The kernels that run quantized layers are qkernel.c (int8)
 * and bkernel.c (bf16). See quant.h.
 */
#include "maas/base.h"
#include "maas/gemm.h"
#include "maas/quant.h"
#include "layers_internal.h"
#include "quant_internal.h"

int maas_model_is_quantized(const maas_model *m) {
    return m && (m->quant != NULL || m->bf16 != NULL);
}

maas_quant_kind maas_model_quant_kind(const maas_model *m) {
    return !m         ? MAAS_QUANT_NONE
           : m->quant ? MAAS_QUANT_INT8
           : m->bf16  ? MAAS_QUANT_BF16
                      : MAAS_QUANT_NONE;
}

const char *maas_quant_kind_name(maas_quant_kind k) {
    return k == MAAS_QUANT_INT8 ? "int8" : k == MAAS_QUANT_BF16 ? "bf16" : "float32";
}

void maas_model_dequantize(maas_model *m) {
    maas_quant_free(m->quant);
    m->quant = NULL;
    maas_bf16_free(m->bf16);
    m->bf16 = NULL;
}

/* A model that can be quantized: float32 (not int8 or bf16 already), every weight finite;
 * bf16 takes Dense networks only so far (its kernels are Dense's). */
static maas_err quantizable(const maas_model *m, maas_quant_kind kind, char *errstr,
                            size_t errstr_size) {
    if (maas_model_is_quantized(m))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "the model is already %s-quantized",
                         maas_quant_kind_name(maas_model_quant_kind(m)));
    maas_err err = kind == MAAS_QUANT_BF16
                       ? maas_model_check_mlp(m, "bf16 quantization", errstr, errstr_size)
                       : MAAS_OK;
    return err ? err : maas_model_check_finite(m, errstr, errstr_size);
}

/* Packs every Dense kernel of m (already bf16 values) into a new bf16 side; 1 on success. */
static int bf16_pack(maas_model *m) {
    maas_bf16 *b = maas_bf16_new(m->n_layers);
    for (int i = 0; b && i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        if (l->spec.kind == MAAS_LAYER_DENSE &&
            !maas_bf16_set_layer(b, i, l->n_in, l->n_out, m->params + l->w_off)) {
            maas_bf16_free(b);
            b = NULL;
        }
    }
    if (!b) return 0;
    maas_bf16_free(m->bf16);
    m->bf16 = b;
    return 1;
}

maas_err maas_quantize_bf16(maas_model *m, char *errstr, size_t errstr_size) {
    maas_err err = quantizable(m, MAAS_QUANT_BF16, errstr, errstr_size);
    if (err) return err;
    /* rounding may overflow a weight past bf16's largest finite value: refuse, unchanged */
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        if (l->spec.kind != MAAS_LAYER_DENSE) continue;
        const float *w = m->params + l->w_off;
        for (size_t k = 0; k < (size_t)l->n_in * l->n_out; k++)
            if (!isfinite(maas_bf16_to_float(maas_bf16_from_float(w[k]))))
                return maas_errf(errstr, errstr_size, MAAS_ERR_NON_FINITE,
                                 "layer '%s': weight %g does not fit bf16's range", l->spec.name,
                                 (double)w[k]);
    }
    float *saved = malloc(m->n_params * sizeof(float));
    if (!saved) return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    memcpy(saved, m->params, m->n_params * sizeof(float));
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        if (l->spec.kind != MAAS_LAYER_DENSE) continue;
        float *w = m->params + l->w_off;
        for (size_t k = 0; k < (size_t)l->n_in * l->n_out; k++)
            w[k] = maas_bf16_to_float(maas_bf16_from_float(w[k]));
    }
    if (!bf16_pack(m)) {
        memcpy(m->params, saved, m->n_params * sizeof(float));
        free(saved);
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY,
                         "out of memory for bf16 weights");
    }
    free(saved);
    return MAAS_OK;
}

maas_err maas_bf16_attach(maas_model *m, char *errstr, size_t errstr_size) {
    if (m->quant)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "the model is already int8-quantized");
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        if (l->spec.kind != MAAS_LAYER_DENSE) continue;
        const float *w = m->params + l->w_off;
        for (size_t k = 0; k < (size_t)l->n_in * l->n_out; k++) {
            uint32_t u;
            memcpy(&u, &w[k], sizeof(u));
            if (u & 0xffffu)
                return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                                 "layer '%s': kernel value %zu is not a bf16 value", l->spec.name,
                                 k);
        }
    }
    if (!bf16_pack(m))
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY,
                         "out of memory for bf16 weights");
    return MAAS_OK;
}

static maas_quant *quant_for(maas_model *m) {
    if (m->quant) return m->quant;
    maas_quant *q = calloc(1, sizeof(*q));
    if (q) q->layers = calloc((size_t)m->n_layers, sizeof(maas_qlayer));
    if (!q || !q->layers) {
        free(q);
        return NULL;
    }
    q->n_layers = m->n_layers;
    m->quant = q;
    return q;
}

/* Writes the dequantized kernel into the model's float parameters. */
static void dequantize_into(const maas_qlayer *l, float *w) {
    for (int k = 0; k < l->n_in; k++)
        for (int j = 0; j < l->n_out; j++)
            w[(size_t)k * l->n_out + j] = (float)l->wq[(size_t)k * l->n_out + j] * l->scale[j];
}

maas_err maas_quant_set_layer(maas_model *m, int i, const int8_t *wq, const float *scale,
                              char *errstr, size_t errstr_size) {
    int rows, cols;
    if (i < 0 || i >= m->n_layers || !maas__layer_kernel_matrix(&m->layers[i], &rows, &cols))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "layer %d is not a Dense or convolution layer", i);
    if (m->bf16)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "the model is already bf16-quantized");
    const maas_layer *ml = &m->layers[i];
    for (int j = 0; j < cols; j++)
        if (!isfinite(scale[j]) || !(scale[j] > 0.0f))
            return maas_errf(errstr, errstr_size, MAAS_ERR_NON_FINITE,
                             "layer '%s': quantization scale of unit %d is not a positive number",
                             ml->spec.name, j);
    for (size_t k = 0; k < (size_t)rows * cols; k++)
        if (wq[k] == INT8_MIN)
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                             "layer '%s': int8 weight -128 is outside the symmetric range",
                             ml->spec.name);
    maas_quant *q = quant_for(m);
    if (!q) return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    maas_qlayer *l = &q->layers[i];
    maas__qlayer_release(l);
    if (!maas__qlayer_alloc(l, rows, cols)) {
        maas__qlayer_release(l);
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY,
                         "out of memory for int8 weights");
    }
    memcpy(l->wq, wq, (size_t)rows * (size_t)cols);
    memcpy(l->scale, scale, (size_t)cols * sizeof(float));
    maas__qlayer_pack(l);
    dequantize_into(l, m->params + ml->w_off);
    return MAAS_OK;
}

maas_err maas_quantize(maas_model *m, char *errstr, size_t errstr_size) {
    maas_err err = quantizable(m, MAAS_QUANT_INT8, errstr, errstr_size);
    if (err) return err;
    maas_quant *q = quant_for(m);
    if (!q) return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *ml = &m->layers[i];
        int n_in, n_out; /* a convolution's kernel: kh*kw*c inputs per filter */
        if (!maas__layer_kernel_matrix(ml, &n_in, &n_out)) continue;
        maas_qlayer *l = &q->layers[i];
        if (!maas__qlayer_alloc(l, n_in, n_out)) {
            maas_model_dequantize(m);
            return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY,
                             "out of memory for int8 weights");
        }
        const float *w = m->params + ml->w_off;
        for (int j = 0; j < n_out; j++) {
            float amax = 0.0f;
            for (int k = 0; k < n_in; k++) {
                float a = fabsf(w[(size_t)k * n_out + j]);
                amax = a > amax ? a : amax;
            }
            /* An all-zero unit (pruned away) keeps a harmless scale. */
            l->scale[j] = amax > 0.0f ? amax / 127.0f : 1.0f;
        }
        for (int k = 0; k < n_in; k++)
            for (int j = 0; j < n_out; j++) {
                float v = w[(size_t)k * n_out + j] / l->scale[j];
                long r = lrintf(v);
                l->wq[(size_t)k * n_out + j] = (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
            }
        maas__qlayer_pack(l);
    }
    for (int i = 0; i < m->n_layers; i++)
        if (q->layers[i].wq) dequantize_into(&q->layers[i], m->params + m->layers[i].w_off);
    return MAAS_OK;
}

size_t maas_quant_payload_bytes(const maas_model *m) {
    size_t n = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        int rows, cols;
        if (!maas__layer_kernel_matrix(l, &rows, &cols)) { /* BatchNormalization, Embedding */
            for (int k = 0; k < l->n_weights; k++) n += l->weights[k].n * sizeof(float);
            continue;
        }
        size_t kw = (size_t)rows * cols, b = l->spec.use_bias ? (size_t)cols : 0;
        if (m->quant && m->quant->layers[i].wq)
            n += kw + ((size_t)cols + b) * sizeof(float);
        else if (m->bf16 && l->spec.kind == MAAS_LAYER_DENSE)
            n += kw * sizeof(uint16_t) + b * sizeof(float);
        else
            n += (kw + b) * sizeof(float);
    }
    return n;
}

/* ---------------------------------------------------------------- calibration */

maas_err maas_quant_calibrate(maas_model *m, const float *x, size_t rows, char *errstr,
                              size_t errstr_size) {
    if (!m->quant)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "calibration needs a quantized model");
    maas_err merr = maas_model_check_mlp(m, "calibration", errstr, errstr_size);
    if (merr) return merr;
    if (rows == 0) return maas_errf(errstr, errstr_size, MAAS_ERR_EMPTY, "no calibration rows");
    int w = m->n_inputs;
    for (int i = 0; i < m->n_layers; i++) w = m->layers[i].n_out > w ? m->layers[i].n_out : w;
    float *a = malloc(rows * (size_t)w * sizeof(float)),
          *b = malloc(rows * (size_t)w * sizeof(float));
    if (!a || !b) {
        free(a);
        free(b);
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY,
                         "out of memory for calibration");
    }
    int n = m->n_inputs;
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < n; j++) {
            float v = x[r * n + j];
            if (m->feat_mean) v = (v - m->feat_mean[j]) / m->feat_std[j];
            a[r * n + j] = v;
        }
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *ml = &m->layers[i];
        if (ml->spec.kind != MAAS_LAYER_DENSE) continue;
        maas_qlayer *l = &m->quant->layers[i];
        float mx = 0.0f, mn = 0.0f;
        for (size_t k = 0; k < rows * (size_t)ml->n_in; k++) {
            mx = a[k] > mx ? a[k] : mx;
            mn = a[k] < mn ? a[k] : mn;
        }
        l->act_unsigned = mn >= 0.0f;
        float amax = l->act_unsigned ? mx : (mx > -mn ? mx : -mn);
        l->act_scale = amax > 0.0f ? amax / (l->act_unsigned ? 255.0f : 127.0f) : 1.0f;
        /* the float forward of the dequantized layer gives the next layer's inputs */
        for (size_t r = 0; r < rows; r++) {
            if (ml->spec.use_bias)
                memcpy(b + r * ml->n_out, m->params + ml->b_off, (size_t)ml->n_out * sizeof(float));
            else
                memset(b + r * ml->n_out, 0, (size_t)ml->n_out * sizeof(float));
        }
        maas_gemm(0, 0, (int)rows, ml->n_out, ml->n_in, 1.0f, a, ml->n_in, m->params + ml->w_off,
                  ml->n_out, 1.0f, b, ml->n_out);
        maas_act_forward(ml->spec.act, maas_act_alpha(&ml->spec), b, rows, ml->n_out);
        float *t = a;
        a = b;
        b = t;
    }
    free(a);
    free(b);
    return MAAS_OK;
}

/* ---------------------------------------------------------------- pruning */

/* The kernel weights pruning works on: Dense and convolution kernels (0: none). */
static size_t kernel_weights(const maas_layer *l) {
    int rows, cols;
    return maas__layer_kernel_matrix(l, &rows, &cols) ? (size_t)rows * (size_t)cols : 0;
}

void maas_sparsity(const maas_model *m, maas_prune_report *rep) {
    memset(rep, 0, sizeof(*rep));
    rep->n_layers = m->n_layers;
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        size_t n = kernel_weights(l), z = 0;
        if (n == 0) continue;
        const float *w = m->params + l->w_off;
        for (size_t k = 0; k < n; k++) z += w[k] == 0.0f;
        rep->sparsity[i] = (double)z / (double)n;
        rep->zero_weights += z;
        rep->kernel_weights += n;
    }
    rep->total_sparsity =
        rep->kernel_weights ? (double)rep->zero_weights / (double)rep->kernel_weights : 0.0;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/*
 * Zeroes the `count` smallest |w| among the kernels of the layers selected by
 * `only` (-1: every Dense and convolution kernel). `work` holds room for every kernel weight.
 */
static void prune_set(maas_model *m, int only, size_t count, float *work, float *mask) {
    size_t n = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        size_t kn = kernel_weights(l);
        if (kn == 0 || (only >= 0 && i != only)) continue;
        for (size_t k = 0; k < kn; k++) work[n++] = fabsf(m->params[l->w_off + k]);
    }
    if (count == 0 || n == 0) return;
    if (count > n) count = n;
    qsort(work, n, sizeof(float), cmp_float);
    float t = work[count - 1];
    size_t below = 0;
    for (size_t k = 0; k < count; k++) below += work[k] < t;
    size_t at_t = count - below; /* how many weights equal to t are pruned, in order */
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        size_t kn = kernel_weights(l);
        if (kn == 0 || (only >= 0 && i != only)) continue;
        for (size_t k = 0; k < kn; k++) {
            float *w = &m->params[l->w_off + k];
            float a = fabsf(*w);
            int cut = a < t || (a == t && at_t > 0 && (at_t--, 1));
            if (cut) {
                *w = 0.0f;
                if (mask) mask[l->w_off + k] = 0.0f;
            }
        }
    }
}

maas_err maas_prune(maas_model *m, double sparsity, int per_layer, float *mask,
                    maas_prune_report *report, char *errstr, size_t errstr_size) {
    if (!(sparsity >= 0.0 && sparsity < 1.0))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "sparsity must be in [0, 1), got %g", sparsity);
    if (maas_model_is_quantized(m))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "prune the float model, then quantize (this one is %s-quantized)",
                         maas_quant_kind_name(maas_model_quant_kind(m)));
    size_t total = 0, largest = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        size_t kn = kernel_weights(l);
        total += kn;
        largest = kn > largest ? kn : largest;
    }
    float *work = malloc((per_layer ? largest : total) * sizeof(float) + 1);
    if (!work)
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory for pruning");
    if (mask)
        for (size_t k = 0; k < m->n_params; k++) mask[k] = 1.0f;
    if (per_layer) {
        for (int i = 0; i < m->n_layers; i++) {
            const maas_layer *l = &m->layers[i];
            size_t kn = kernel_weights(l);
            if (kn == 0) continue;
            prune_set(m, i, (size_t)llround(sparsity * (double)kn), work, mask);
        }
    } else {
        prune_set(m, -1, (size_t)llround(sparsity * (double)total), work, mask);
    }
    free(work);
    if (mask) /* weights that were zero already stay zero */
        for (int i = 0; i < m->n_layers; i++) {
            const maas_layer *l = &m->layers[i];
            size_t kn = kernel_weights(l);
            for (size_t k = 0; k < kn; k++)
                if (m->params[l->w_off + k] == 0.0f) mask[l->w_off + k] = 0.0f;
        }
    if (report) maas_sparsity(m, report);
    return MAAS_OK;
}
