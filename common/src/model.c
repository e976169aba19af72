/* Sequential model construction, initialization and inference. */
#include "maas/base.h"
#include "maas/bkernel.h"
#include "maas/gemm.h"
#include "maas/model.h"
#include "gemm_internal.h"
#include "quant_internal.h"

static const char *const init_names[MAAS_INIT__COUNT] = {
    [MAAS_INIT_GLOROT_UNIFORM] = "glorot_uniform",
    [MAAS_INIT_HE_NORMAL] = "he_normal",
    [MAAS_INIT_ZEROS] = "zeros",
};

const char *maas_init_name(maas_init init) {
    if ((int)init < 0 || init >= MAAS_INIT__COUNT) return "?";
    return init_names[init];
}

maas_err maas_init_from_name(const char *name, maas_init *out, char *errstr, size_t errstr_size) {
    for (int i = 0; i < MAAS_INIT__COUNT; i++) {
        if (name && !strcmp(name, init_names[i])) {
            *out = (maas_init)i;
            return MAAS_OK;
        }
    }
    return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                     "unknown initializer '%s' (known: glorot_uniform, he_normal, zeros)",
                     name ? name : "(null)");
}

maas_layer_spec maas_dense(int units, maas_act act) {
    maas_layer_spec s;
    memset(&s, 0, sizeof(s));
    s.kind = MAAS_LAYER_DENSE;
    s.units = units;
    s.use_bias = 1;
    s.act = act;
    s.kernel_init = MAAS_INIT_GLOROT_UNIFORM;
    s.bias_init = MAAS_INIT_ZEROS;
    return s;
}

maas_layer_spec maas_dropout(float rate) {
    maas_layer_spec s;
    memset(&s, 0, sizeof(s));
    s.kind = MAAS_LAYER_DROPOUT;
    s.rate = rate;
    return s;
}

static void init_block(float *w, size_t n, maas_init init, int fan_in, int fan_out, maas_rng *rng) {
    switch (init) {
    case MAAS_INIT_GLOROT_UNIFORM: {
        double limit = sqrt(6.0 / (double)(fan_in + fan_out));
        for (size_t i = 0; i < n; i++) w[i] = (float)((2.0 * maas_rng_uniform(rng) - 1.0) * limit);
        break;
    }
    case MAAS_INIT_HE_NORMAL: {
        /* Keras VarianceScaling(2, fan_in, truncated_normal): the stddev is
         * corrected for the truncation at two standard deviations. */
        double stddev = sqrt(2.0 / (double)fan_in) / 0.87962566103423978;
        for (size_t i = 0; i < n; i++) w[i] = (float)(maas_rng_truncated_normal(rng) * stddev);
        break;
    }
    case MAAS_INIT_ZEROS:
    case MAAS_INIT__COUNT:
        memset(w, 0, n * sizeof(float));
        break;
    }
}

maas_err maas_model_init_weights(maas_model *m, maas_rng *rng, char *errstr, size_t errstr_size) {
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        if (l->spec.kind != MAAS_LAYER_DENSE) continue;
        int need_rng = l->spec.kernel_init != MAAS_INIT_ZEROS ||
                       (l->spec.use_bias && l->spec.bias_init != MAAS_INIT_ZEROS);
        if (need_rng && !rng)
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "layer '%s' needs a random generator for its initializer",
                             l->spec.name);
        init_block(m->params + l->w_off, (size_t)l->n_in * l->n_out, l->spec.kernel_init, l->n_in,
                   l->n_out, rng);
        if (l->spec.use_bias)
            init_block(m->params + l->b_off, (size_t)l->n_out, l->spec.bias_init, l->n_in, l->n_out,
                       rng);
    }
    maas_model_set_standardization(m, NULL, NULL, NULL, 0);
    return MAAS_OK;
}

static maas_err check_spec(int idx, const maas_layer_spec *s, char *errstr, size_t errstr_size) {
    if (s->kind == MAAS_LAYER_DENSE) {
        if (s->units < 1 || s->units > MAAS_MAX_UNITS)
            return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                             "layer %d: units must be in 1..%d, got %d", idx, MAAS_MAX_UNITS,
                             s->units);
        if ((int)s->act < 0 || s->act >= MAAS_ACT__COUNT)
            return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                             "layer %d: unknown activation %d", idx, (int)s->act);
        if ((int)s->kernel_init < 0 || s->kernel_init >= MAAS_INIT__COUNT ||
            (int)s->bias_init < 0 || s->bias_init >= MAAS_INIT__COUNT)
            return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                             "layer %d: unknown initializer", idx);
        if (!isfinite(s->act_alpha))
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "layer %d: activation alpha is not finite", idx);
        if (s->act == MAAS_ACT_SOFTMAX && s->units < 1)
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "layer %d: empty softmax", idx);
    } else if (s->kind == MAAS_LAYER_DROPOUT) {
        if (!(s->rate >= 0.0f && s->rate < 1.0f))
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "layer %d: dropout rate must be in [0, 1), got %g", idx,
                             (double)s->rate);
    } else {
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                         "layer %d: unknown layer kind %d", idx, (int)s->kind);
    }
    if (memchr(s->name, '\0', sizeof(s->name)) == NULL)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "layer %d: name not terminated", idx);
    if (strchr(s->name, '/'))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "layer %d: name '%s' must not contain '/'", idx, s->name);
    return MAAS_OK;
}

/* Keras names unnamed layers dense, dense_1, ..., dropout, dropout_1, ... */
static void default_name(maas_layer *layers, int i) {
    maas_layer_spec *s = &layers[i].spec;
    if (s->name[0]) return;
    const char *base = s->kind == MAAS_LAYER_DENSE ? "dense" : "dropout";
    int seen = 0;
    for (int j = 0; j < i; j++)
        if (layers[j].spec.kind == s->kind) seen++;
    if (seen == 0)
        snprintf(s->name, sizeof(s->name), "%s", base);
    else
        snprintf(s->name, sizeof(s->name), "%s_%d", base, seen);
}

maas_err maas_layers_size(int n_inputs, const maas_layer_spec *specs, int n_layers,
                          maas_net_size *size, char *errstr, size_t errstr_size) {
    memset(size, 0, sizeof(*size));
    if (n_inputs < 1 || n_inputs > MAAS_MAX_UNITS)
        return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                         "input width must be in 1..%d, got %d", MAAS_MAX_UNITS, n_inputs);
    if (n_layers < 1 || n_layers > MAAS_MAX_LAYERS)
        return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                         "a model needs 1..%d layers, got %d", MAAS_MAX_LAYERS, n_layers);
    maas_err code;
    size_t n_params = 0, cells = 0;
    int width = n_inputs, widest = n_inputs, n_dense = 0;
    for (int i = 0; i < n_layers; i++) {
        if ((code = check_spec(i, &specs[i], errstr, errstr_size)) != MAAS_OK) return code;
        if (specs[i].kind == MAAS_LAYER_DENSE) {
            n_params += (size_t)width * (size_t)specs[i].units;
            if (specs[i].use_bias) n_params += (size_t)specs[i].units;
            if (n_params > MAAS_MAX_PARAMS)
                return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                                 "the network exceeds %u parameters at layer %d", MAAS_MAX_PARAMS,
                                 i);
            width = specs[i].units;
            n_dense++;
        }
        widest = width > widest ? width : widest;
        cells += (size_t)width;
    }
    if (n_dense == 0)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "a model needs at least one Dense layer");
    for (int i = 0; i < n_layers; i++)
        for (int j = 0; j < i; j++)
            if (specs[i].name[0] && !strcmp(specs[i].name, specs[j].name))
                return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                                 "duplicate layer name '%s'", specs[i].name);
    size->n_params = n_params;
    size->n_outputs = width;
    size->widest = widest;
    size->cells_per_row = cells;
    return MAAS_OK;
}

/* Validates the specs and allocates a model with zeroed weights. */
static maas_model *model_build(int n_inputs, const maas_layer_spec *specs, int n_layers,
                               maas_err *code, char *errstr, size_t errstr_size) {
    /* Validate and size everything before the first allocation. */
    maas_net_size size;
    if ((*code = maas_layers_size(n_inputs, specs, n_layers, &size, errstr, errstr_size)))
        return NULL;
    size_t n_params = size.n_params;
    int width;
    maas_model *m = calloc(1, sizeof(*m));
    if (m) m->layers = calloc((size_t)n_layers, sizeof(*m->layers));
    if (m && m->layers) m->params = calloc(n_params, sizeof(float));
    if (!m || !m->layers || !m->params) {
        maas_model_free(m);
        *code = maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY,
                          "out of memory for %zu parameters", n_params);
        return NULL;
    }
    m->n_inputs = n_inputs;
    m->n_layers = n_layers;
    m->n_params = n_params;
    size_t off = 0;
    width = n_inputs;
    for (int i = 0; i < n_layers; i++) {
        maas_layer *l = &m->layers[i];
        l->spec = specs[i];
        l->n_in = width;
        if (specs[i].kind == MAAS_LAYER_DENSE) {
            l->n_out = specs[i].units;
            l->w_off = off;
            off += (size_t)l->n_in * l->n_out;
            l->b_off = off;
            if (specs[i].use_bias) off += (size_t)l->n_out;
        } else {
            l->n_out = width;
        }
        width = l->n_out;
        default_name(m->layers, i);
    }
    for (int i = 0; i < n_layers; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(m->layers[i].spec.name, m->layers[j].spec.name)) {
                *code = maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                                  "duplicate layer name '%s'", m->layers[i].spec.name);
                maas_model_free(m);
                return NULL;
            }
    m->n_outputs = width;
    return m;
}

maas_err maas_model_create(maas_model **out, int n_inputs, const maas_layer_spec *specs,
                           int n_layers, maas_rng *rng, char *errstr, size_t errstr_size) {
    maas_err err = MAAS_OK;
    maas_model *m = model_build(n_inputs, specs, n_layers, &err, errstr, errstr_size);
    if (m && (err = maas_model_init_weights(m, rng, errstr, errstr_size)) != MAAS_OK) {
        maas_model_free(m);
        m = NULL;
    }
    *out = m;
    return m ? MAAS_OK : err;
}

maas_model *maas_model_new(int n_inputs, const maas_layer_spec *specs, int n_layers, maas_rng *rng,
                           char *errstr, size_t errstr_size) {
    maas_model *m;
    maas_model_create(&m, n_inputs, specs, n_layers, rng, errstr, errstr_size);
    return m;
}

void maas_model_free(maas_model *m) {
    if (!m) return;
    free(m->layers);
    free(m->params);
    free(m->feat_mean);
    free(m->feat_std);
    maas_quant_free(m->quant);
    maas_bf16_free(m->bf16);
    free(m);
}

maas_model *maas_model_clone(const maas_model *src, char *errstr, size_t errstr_size) {
    maas_layer_spec specs[MAAS_MAX_LAYERS];
    for (int i = 0; i < src->n_layers; i++) specs[i] = src->layers[i].spec;
    maas_err code;
    maas_model *m = model_build(src->n_inputs, specs, src->n_layers, &code, errstr, errstr_size);
    if (!m) return NULL;
    memcpy(m->params, src->params, src->n_params * sizeof(float));
    if (maas_model_set_standardization(m, src->feat_mean, src->feat_std, errstr, errstr_size) !=
        MAAS_OK) {
        maas_model_free(m);
        return NULL;
    }
    if (src->quant && !(m->quant = maas_quant_clone(src->quant))) {
        maas_model_free(m);
        maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY,
                  "out of memory copying int8 weights");
        return NULL;
    }
    if (src->bf16 && !(m->bf16 = maas_bf16_clone(src->bf16))) {
        maas_model_free(m);
        maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY,
                  "out of memory copying bf16 weights");
        return NULL;
    }
    return m;
}

maas_err maas_model_set_standardization(maas_model *m, const float *mean, const float *std,
                                        char *errstr, size_t errstr_size) {
    if (!mean || !std) {
        free(m->feat_mean);
        free(m->feat_std);
        m->feat_mean = m->feat_std = NULL;
        return MAAS_OK;
    }
    for (int i = 0; i < m->n_inputs; i++)
        if (!isfinite(mean[i]) || !isfinite(std[i]) || std[i] < 0.0f)
            return maas_errf(errstr, errstr_size, MAAS_ERR_NON_FINITE,
                             "standardization of feature %d is invalid (mean %g, std %g)", i,
                             (double)mean[i], (double)std[i]);
    if (!m->feat_mean) m->feat_mean = malloc((size_t)m->n_inputs * sizeof(float));
    if (!m->feat_std) m->feat_std = malloc((size_t)m->n_inputs * sizeof(float));
    if (!m->feat_mean || !m->feat_std) {
        maas_model_set_standardization(m, NULL, NULL, NULL, 0);
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (int i = 0; i < m->n_inputs; i++) {
        m->feat_mean[i] = mean[i];
        m->feat_std[i] = std[i] < 1e-7f ? 1.0f : std[i];
    }
    return MAAS_OK;
}

float *maas_model_kernel(maas_model *m, int i) {
    if (i < 0 || i >= m->n_layers || m->layers[i].spec.kind != MAAS_LAYER_DENSE) return NULL;
    return m->params + m->layers[i].w_off;
}

float *maas_model_bias(maas_model *m, int i) {
    if (!maas_model_kernel(m, i) || !m->layers[i].spec.use_bias) return NULL;
    return m->params + m->layers[i].b_off;
}

maas_err maas_model_check_finite(const maas_model *m, char *errstr, size_t errstr_size) {
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        if (l->spec.kind != MAAS_LAYER_DENSE) continue;
        size_t n = (size_t)l->n_in * l->n_out + (l->spec.use_bias ? (size_t)l->n_out : 0);
        const float *p = m->params + l->w_off;
        for (size_t k = 0; k < n; k++)
            if (!isfinite(p[k]))
                return maas_errf(errstr, errstr_size, MAAS_ERR_NON_FINITE,
                                 "layer '%s' has a non-finite weight", l->spec.name);
    }
    return MAAS_OK;
}

/* ---- inference ---- */

/* The widest padded input (4 kg) and output (16 nb) over a model's quantized layers. */
static void quant_widths(const maas_model *m, int *ldx, int *ldc) {
    *ldx = *ldc = 0;
    if (!m->quant) return;
    for (int i = 0; i < m->quant->n_layers; i++) {
        const maas_qlayer *l = &m->quant->layers[i];
        if (!l->wq) continue;
        if (4 * l->kg > *ldx) *ldx = 4 * l->kg;
        if (16 * l->nb > *ldc) *ldc = 16 * l->nb;
    }
}

struct maas_infer {
    const maas_model *m;
    int max_batch;
    int max_width;
    float *buf[2];   /* ping-pong activations, max_batch x max_width each */
    float *xin;      /* standardized input, max_batch x n_inputs */
    maas_qscratch q; /* int8 layers (quantized models only) */
    uint32_t *xb;    /* bf16 layers: max_batch x (widest input + 1) / 2 input pairs, or NULL */
    maas_fdnnl **fd; /* per layer, oneDNN's float matmul for batches >= 32 rows (made on
                      * first use); NULL when max_batch < 32 */
};

maas_err maas_infer_create(maas_infer **out, const maas_model *m, int max_batch, char *errstr,
                           size_t errstr_size) {
    *out = NULL;
    if (max_batch < 1 || max_batch > 1 << 20)
        return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                         "batch size must be in 1..%d, got %d", 1 << 20, max_batch);
    *out = maas_infer_new(m, max_batch, errstr, errstr_size);
    return *out ? MAAS_OK : MAAS_ERR_OUT_OF_MEMORY; /* the only other way it fails */
}

maas_infer *maas_infer_new(const maas_model *m, int max_batch, char *errstr, size_t errstr_size) {
    if (max_batch < 1 || max_batch > 1 << 20) {
        maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                  "batch size must be in 1..%d, got %d", 1 << 20, max_batch);
        return NULL;
    }
    int w = m->n_inputs;
    for (int i = 0; i < m->n_layers; i++) w = m->layers[i].n_out > w ? m->layers[i].n_out : w;
    maas_infer *inf = calloc(1, sizeof(*inf));
    if (!inf) goto oom;
    inf->m = m;
    inf->max_batch = max_batch;
    inf->max_width = w;
    size_t cells = (size_t)max_batch * (size_t)w;
    inf->buf[0] = malloc(cells * sizeof(float));
    inf->buf[1] = malloc(cells * sizeof(float));
    inf->xin = malloc((size_t)max_batch * (size_t)m->n_inputs * sizeof(float));
    if (!inf->buf[0] || !inf->buf[1] || !inf->xin) goto oom;
    if (max_batch >= 32 && !(inf->fd = calloc((size_t)m->n_layers, sizeof(*inf->fd)))) goto oom;
    if (m->quant) {
        quant_widths(m, &inf->q.ldx, &inf->q.ldc);
        inf->q.xq = malloc((size_t)max_batch * (size_t)inf->q.ldx + 64);
        inf->q.rs = malloc((size_t)max_batch * sizeof(float));
        inf->q.sh = malloc((size_t)max_batch);
        inf->q.acc = malloc((size_t)max_batch * (size_t)inf->q.ldc * sizeof(int32_t) + 64);
        if (!inf->q.xq || !inf->q.rs || !inf->q.sh || !inf->q.acc) goto oom;
    }
    if (m->bf16 && maas_bf16_available() &&
        !(inf->xb = malloc((size_t)max_batch * (size_t)((w + 1) / 2) * sizeof(uint32_t))))
        goto oom;
    return inf;
oom:
    maas_infer_free(inf);
    maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY,
              "out of memory for an inference context");
    return NULL;
}

void maas_infer_free(maas_infer *inf) {
    if (!inf) return;
    free(inf->buf[0]);
    free(inf->buf[1]);
    free(inf->xin);
    free(inf->q.xq);
    free(inf->q.rs);
    free(inf->q.sh);
    free(inf->q.acc);
    free(inf->xb);
    for (int i = 0; inf->fd && i < inf->m->n_layers; i++) maas__fdnnl_free(inf->fd[i]);
    free(inf->fd);
    free(inf);
}

void maas_infer_set_qkernel(maas_infer *inf, maas_qkernel k) {
    inf->q.kernel = k;
}

/* A float Dense layer without its activation: oneDNN for batches of 32 rows and more
 * (maas/cpu.h), maas_rowvec for one row, BLAS for the rest. */
static void float_dense(maas_infer *inf, int i, const maas_layer *l, const float *in, int rows,
                        const float *w, const float *bias, float *out) {
    int done = 0; /* rows oneDNN computed (batches of 32 and more; maas/cpu.h) */
    if (rows >= 32 && inf->fd && (inf->fd[i] || (inf->fd[i] = maas__fdnnl_new())))
        done = maas__fdnnl_run(inf->fd[i], l->n_in, l->n_out, in, l->n_in, rows, w, bias, out,
                               l->n_out);
    float *o = out + (size_t)done * l->n_out;
    const float *xr = in + (size_t)done * l->n_in;
    int left = rows - done;
    for (int r = 0; bias && r < left; r++)
        memcpy(o + (size_t)r * l->n_out, bias, (size_t)l->n_out * sizeof(float));
    float beta = bias ? 1.0f : 0.0f;
    if (left == 1)
        maas_rowvec(l->n_in, l->n_out, xr, w, l->n_out, beta, o);
    else if (left > 1)
        maas_gemm(0, 0, left, l->n_out, l->n_in, 1.0f, xr, l->n_in, w, l->n_out, beta, o, l->n_out);
}

/* Forward pass of `rows` rows; returns the buffer holding the output. */
static const float *infer_chunk(maas_infer *inf, const float *x, int rows) {
    const maas_model *m = inf->m;
    const float *in = x;
    if (m->feat_mean) {
        int n = m->n_inputs;
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < n; j++)
                inf->xin[(size_t)r * n + j] =
                    (x[(size_t)r * n + j] - m->feat_mean[j]) / m->feat_std[j];
        in = inf->xin;
    }
    int which = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        if (l->spec.kind != MAAS_LAYER_DENSE) continue; /* Dropout is identity here */
        float *out = inf->buf[which];
        const float *w = m->params + l->w_off;
        const float *bias = l->spec.use_bias ? m->params + l->b_off : NULL;
        int relu = l->spec.act == MAAS_ACT_RELU; /* the int8 and bf16 kernels fuse it */
        int fused = 0;
        if (m->quant && m->quant->layers[i].wq) {
            maas__qdense_forward(&m->quant->layers[i], in, rows, bias, relu, out, &inf->q);
            fused = relu;
        } else if (inf->xb && m->bf16->layers[i].packed) { /* bf16 where the CPU has it */
            maas_bgemm(&m->bf16->layers[i], in, l->n_in, rows, bias, relu, out, l->n_out, inf->xb);
            fused = relu;
        } else {
            float_dense(inf, i, l, in, rows, w, bias, out);
        }
        if (!fused)
            maas_act_forward(l->spec.act, maas_act_alpha(&l->spec), out, (size_t)rows, l->n_out);
        in = out;
        which ^= 1;
    }
    return in;
}

maas_err maas_infer_run(maas_infer *inf, const float *x, size_t rows, float *out, char *errstr,
                        size_t errstr_size) {
    const maas_model *m = inf->m;
    if (rows == 0) return maas_errf(errstr, errstr_size, MAAS_ERR_EMPTY, "no rows to predict");
    size_t n_in = (size_t)m->n_inputs;
    size_t bad = maas_find_nonfinite(x, rows * n_in);
    if (bad < rows * n_in)
        return maas_errf(errstr, errstr_size, MAAS_ERR_NON_FINITE,
                         "input row %zu, column %zu is not finite", bad / n_in, bad % n_in);
    for (size_t r0 = 0; r0 < rows; r0 += (size_t)inf->max_batch) {
        int n = (int)(rows - r0 < (size_t)inf->max_batch ? rows - r0 : (size_t)inf->max_batch);
        const float *y = infer_chunk(inf, x + r0 * n_in, n);
        memcpy(out + r0 * (size_t)m->n_outputs, y, (size_t)n * m->n_outputs * sizeof(float));
    }
    return MAAS_OK;
}

maas_err maas_model_predict(const maas_model *m, const float *x, size_t rows, float *out,
                            char *errstr, size_t errstr_size) {
    int batch = rows > 1024 ? 1024 : (int)(rows ? rows : 1);
    maas_infer *inf;
    maas_err err = maas_infer_create(&inf, m, batch, errstr, errstr_size);
    if (err) return err;
    err = maas_infer_run(inf, x, rows, out, errstr, errstr_size);
    maas_infer_free(inf);
    return err;
}

maas_err maas_layers_parse(const char *text, maas_layer_spec *out, int max, int *n, char *errstr,
                           size_t errstr_size) {
    *n = 0;
    if (!text || !*text)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT, "the layer list is empty");
    const char *p = text;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[96];
        if (len == 0 || len >= sizeof(item))
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "layer %d of '%s' is empty or too long", *n + 1, text);
        if (*n >= max)
            return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED, "more than %d layers",
                             max);
        memcpy(item, p, len);
        item[len] = '\0';
        maas_layer_spec s;
        char *colon = strchr(item, ':');
        if (colon) *colon = '\0';
        const char *arg = colon ? colon + 1 : NULL;
        char *e;
        if (!strcmp(item, "dropout")) {
            double rate = arg ? strtod(arg, &e) : -1.0;
            if (!arg || *e || !(rate >= 0.0 && rate < 1.0))
                return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                                 "layer %d: dropout needs a rate in [0, 1), e.g. dropout:0.2",
                                 *n + 1);
            s = maas_dropout((float)rate);
        } else {
            errno = 0;
            long units = strtol(item, &e, 10);
            if (*e || e == item || units < 1 || units > MAAS_MAX_UNITS || errno)
                return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                                 "layer %d: '%s' is not UNITS[:ACTIVATION[:nobias]] or "
                                 "dropout:RATE (units in 1..%d)",
                                 *n + 1, item, MAAS_MAX_UNITS);
            maas_act act = MAAS_ACT_LINEAR;
            int bias = 1;
            if (arg) {
                char a[64];
                snprintf(a, sizeof(a), "%s", arg);
                char *opt = strchr(a, ':');
                if (opt) {
                    *opt++ = '\0';
                    if (strcmp(opt, "nobias"))
                        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                                         "layer %d: unknown option '%s' (known: nobias)", *n + 1,
                                         opt);
                    bias = 0;
                }
                char sub[MAAS_ERRSTR_SIZE];
                if (maas_act_from_name(a, &act, sub, sizeof(sub)))
                    return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME, "layer %d: %s",
                                     *n + 1, sub);
            }
            s = maas_dense((int)units, act);
            s.use_bias = bias;
        }
        out[(*n)++] = s;
        p += len;
        if (*p == ',') p++;
    }
    return MAAS_OK;
}
