/* Sequential model construction, initialization and inference. */
#include "maas/base.h"
#include "maas/bkernel.h"
#include "maas/gemm.h"
#include "maas/model.h"
#include "maas/embed.h"
#include "maas/norm.h"
#include "gemm_internal.h"
#include "layers_internal.h"
#include "quant_internal.h"

static const char *const init_names[MAAS_INIT__COUNT] = {
    [MAAS_INIT_GLOROT_UNIFORM] = "glorot_uniform",
    [MAAS_INIT_HE_NORMAL] = "he_normal",
    [MAAS_INIT_ZEROS] = "zeros",
    [MAAS_INIT_RANDOM_UNIFORM] = "random_uniform",
    [MAAS_INIT_ONES] = "ones",
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
    return maas_errf(
        errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
        "unknown initializer '%s' (known: glorot_uniform, he_normal, zeros, random_uniform, "
        "ones)",
        name ? name : "(null)");
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
    case MAAS_INIT_RANDOM_UNIFORM: /* Keras's RandomUniform(-0.05, 0.05) */
        for (size_t i = 0; i < n; i++) w[i] = (float)((2.0 * maas_rng_uniform(rng) - 1.0) * 0.05);
        break;
    case MAAS_INIT_ONES:
        for (size_t i = 0; i < n; i++) w[i] = 1.0f;
        break;
    case MAAS_INIT_ZEROS:
    case MAAS_INIT__COUNT:
        memset(w, 0, n * sizeof(float));
        break;
    }
}

static int needs_rng(maas_init init) {
    return init != MAAS_INIT_ZEROS && init != MAAS_INIT_ONES;
}

maas_err maas_model_init_weights(maas_model *m, maas_rng *rng, char *errstr, size_t errstr_size) {
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        const maas_layer_spec *s = &l->spec;
        for (int k = 0; k < l->n_weights; k++) {
            const maas_weight *w = &l->weights[k];
            float *p = m->params + w->off;
            maas_init init;
            if (!strcmp(w->name, "kernel") || !strcmp(w->name, "embeddings"))
                init = s->kernel_init;
            else if (!strcmp(w->name, "bias"))
                init = s->bias_init;
            else /* BatchNormalization: gamma and the moving variance 1, beta and the mean 0 */
                init = !strcmp(w->name, "gamma") || !strcmp(w->name, "moving_variance")
                           ? MAAS_INIT_ONES
                           : MAAS_INIT_ZEROS;
            if (needs_rng(init) && !rng)
                return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                                 "layer '%s' needs a random generator for its initializer",
                                 s->name);
            /* Keras's fans: a kernel's receptive field times its input and output channels */
            int fan_in = l->n_in, fan_out = l->n_out;
            if (s->kind == MAAS_LAYER_CONV) {
                fan_in = l->geom.kh * l->geom.kw * l->geom.c;
                fan_out = l->geom.kh * l->geom.kw * l->geom.f;
            }
            init_block(p, w->n, init, fan_in, fan_out, rng);
        }
    }
    maas_model_set_standardization(m, NULL, NULL, NULL, 0);
    return MAAS_OK;
}

/* Names unnamed layers as Keras does: dense, dense_1, ..., conv2d, conv2d_1, ... */
static void default_name(maas_layer *layers, int i) {
    maas_layer_spec *s = &layers[i].spec;
    if (s->name[0]) return;
    const char *stem = maas__layer_stem(s);
    int seen = 0;
    for (int j = 0; j < i; j++)
        if (!strcmp(maas__layer_stem(&layers[j].spec), stem)) seen++;
    if (seen == 0)
        snprintf(s->name, sizeof(s->name), "%s", stem);
    else
        snprintf(s->name, sizeof(s->name), "%s_%d", stem, seen);
}

maas_err maas__layers_plan(int n_inputs, const maas_layer_spec *specs, int n_layers,
                           maas_layer *layers, maas_net_size *size, char *errstr,
                           size_t errstr_size) {
    memset(size, 0, sizeof(*size));
    if (n_inputs < 1 || n_inputs > MAAS_MAX_UNITS)
        return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                         "input width must be in 1..%d, got %d", MAAS_MAX_UNITS, n_inputs);
    if (n_layers < 1 || n_layers > MAAS_MAX_LAYERS)
        return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                         "a model needs 1..%d layers, got %d", MAAS_MAX_LAYERS, n_layers);
    maas_shape shape = {.rank = 1, .d = {n_inputs}};
    size_t off = 0, cells = 0;
    int widest = n_inputs, trainable = 0;
    for (int i = 0; i < n_layers; i++) {
        maas_layer one, *l = layers ? &layers[i] : &one;
        maas_err err = maas__layer_plan(i, &specs[i], &shape, &off, l, errstr, errstr_size);
        if (err) return err;
        if (off > MAAS_MAX_PARAMS)
            return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                             "the network exceeds %u parameters at layer %d", MAAS_MAX_PARAMS, i);
        trainable |= l->spec.kind == MAAS_LAYER_DENSE || l->spec.kind == MAAS_LAYER_CONV;
        shape = l->out;
        widest = l->n_out > widest ? l->n_out : widest;
        cells += (size_t)l->n_out + maas__layer_scratch_per_row(l);
    }
    if (shape.rank != 1)
        return maas_errf(errstr, errstr_size, MAAS_ERR_SHAPE_MISMATCH,
                         "the last layer gives rows of rank %d; a model's outputs are a vector "
                         "(end with flatten, a global pooling or Dense)",
                         shape.rank);
    if (!trainable)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "a model needs at least one Dense or convolution layer");
    for (int i = 0; i < n_layers; i++)
        for (int j = 0; j < i; j++)
            if (specs[i].name[0] && !strcmp(specs[i].name, specs[j].name))
                return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                                 "duplicate layer name '%s'", specs[i].name);
    size->n_params = off;
    size->n_outputs = shape.d[0];
    size->widest = widest;
    size->cells_per_row = cells;
    return MAAS_OK;
}

maas_err maas_layers_size(int n_inputs, const maas_layer_spec *specs, int n_layers,
                          maas_net_size *size, char *errstr, size_t errstr_size) {
    return maas__layers_plan(n_inputs, specs, n_layers, NULL, size, errstr, errstr_size);
}

/* Validates the specs and allocates a model with zeroed weights. */
static maas_model *model_build(int n_inputs, const maas_layer_spec *specs, int n_layers,
                               maas_err *code, char *errstr, size_t errstr_size) {
    /* Validate and size everything before the first allocation. */
    maas_net_size size;
    if ((*code = maas_layers_size(n_inputs, specs, n_layers, &size, errstr, errstr_size)))
        return NULL;
    size_t n_params = size.n_params;
    maas_model *m = calloc(1, sizeof(*m));
    if (m) m->layers = calloc((size_t)n_layers, sizeof(*m->layers));
    if (m && m->layers) m->params = calloc(n_params ? n_params : 1, sizeof(float));
    if (!m || !m->layers || !m->params) {
        maas_model_free(m);
        *code = maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY,
                          "out of memory for %zu parameters", n_params);
        return NULL;
    }
    m->n_inputs = n_inputs;
    m->n_layers = n_layers;
    m->n_params = n_params;
    maas__layers_plan(n_inputs, specs, n_layers, m->layers, &size, NULL, 0); /* checked above */
    for (int i = 0; i < n_layers; i++) default_name(m->layers, i);
    for (int i = 0; i < n_layers; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(m->layers[i].spec.name, m->layers[j].spec.name)) {
                *code = maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                                  "duplicate layer name '%s'", m->layers[i].spec.name);
                maas_model_free(m);
                return NULL;
            }
    m->n_outputs = size.n_outputs;
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
    if (mean && std && maas_model_takes_indices(m))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "a model whose first layer is an Embedding takes indices: they are "
                         "never standardized");
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
        for (int k = 0; k < l->n_weights; k++) {
            const maas_weight *w = &l->weights[k];
            const float *p = m->params + w->off;
            int variance = !strcmp(w->name, "moving_variance");
            for (size_t j = 0; j < w->n; j++)
                if (!isfinite(p[j]) || (variance && p[j] < 0.0f))
                    return maas_errf(errstr, errstr_size, MAAS_ERR_NON_FINITE,
                                     "layer '%s' has a %s weight (%s)", l->spec.name,
                                     variance && isfinite(p[j]) ? "negative" : "non-finite",
                                     w->name);
        }
    }
    return MAAS_OK;
}

/* Dense and the layers that are the identity on rows at inference */
static int mlp_kind(maas_layer_kind k) {
    return k == MAAS_LAYER_DENSE || k == MAAS_LAYER_DROPOUT || k == MAAS_LAYER_FLATTEN ||
           k == MAAS_LAYER_RESHAPE;
}

int maas_model_is_mlp(const maas_model *m) {
    for (int i = 0; i < m->n_layers; i++)
        if (!mlp_kind(m->layers[i].spec.kind)) return 0;
    return 1;
}

maas_err maas_model_check_mlp(const maas_model *m, const char *what, char *errstr,
                              size_t errstr_size) {
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer_spec *s = &m->layers[i].spec;
        if (!mlp_kind(s->kind))
            return maas_errf(errstr, errstr_size, MAAS_ERR_UNSUPPORTED,
                             "%s supports Dense, Dropout, Flatten and Reshape layers only so "
                             "far; layer '%s' is a %s",
                             what, s->name, maas_layer_class(s));
    }
    return MAAS_OK;
}

void maas_model_input_shape(const maas_model *m, maas_shape *s) {
    if (m->n_layers > 0 && m->layers[0].spec.kind == MAAS_LAYER_RESHAPE) {
        *s = m->layers[0].out;
    } else {
        memset(s, 0, sizeof(*s));
        s->rank = 1;
        s->d[0] = m->n_inputs;
    }
}

int maas_model_takes_indices(const maas_model *m) {
    return m->n_layers > 0 && m->layers[0].spec.kind == MAAS_LAYER_EMBEDDING;
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

/* Positions of an int8 convolution quantized and multiplied at a time: its scratch rows (the
 * im2col chunk holds more). */
#define QCONV_ROWS 4096

/* Rows the int8 scratch of a context of max_batch rows holds: a batch through Dense layers,
 * up to QCONV_ROWS positions of a convolution. */
static int quant_rows(const maas_model *m, int max_batch) {
    int rows = max_batch;
    for (int i = 0; m->quant && i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        if (l->spec.kind != MAAS_LAYER_CONV || !m->quant->layers[i].wq) continue;
        size_t pos = (size_t)maas__conv_chunk_rows(l, max_batch) * l->geom.oh * l->geom.ow;
        int want = pos < QCONV_ROWS ? (int)pos : QCONV_ROWS;
        rows = want > rows ? want : rows;
    }
    return rows;
}

struct maas_infer {
    const maas_model *m;
    int max_batch;
    int step;     /* rows run through the network at a time: max_batch, or fewer for a CNN */
    unsigned gen; /* counts maas_infer_run calls: the weights may change between them */
    int max_width;
    float *buf[2];   /* ping-pong activations, max_batch x max_width each */
    float *xin;      /* standardized input, max_batch x n_inputs */
    maas_qscratch q; /* int8 layers (quantized models only), q_rows rows */
    int q_rows;
    uint32_t *xb;    /* bf16 layers: max_batch x (widest input + 1) / 2 input pairs, or NULL */
    maas_fdnnl **fd; /* per layer, oneDNN's float matmul for batches >= 32 rows (made on
                      * first use); NULL when max_batch < 32 */
    maas_cdnnl **cd; /* per layer, oneDNN's float convolution for batches >= 8 samples (made
                      * on first use); NULL without convolutions or when max_batch < 8 */
    float *col;      /* convolutions' im2col workspace (MAAS_CONV_COL_CAP floats at most) */
};

/* Floats of the im2col workspace a context of max_batch rows needs (0: no convolution). */
static size_t col_floats(const maas_model *m, int max_batch) {
    size_t most = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        if (l->spec.kind != MAAS_LAYER_CONV) continue;
        size_t n = maas_conv_col_floats(&l->geom, (size_t)maas__conv_chunk_rows(l, max_batch));
        most = n > most ? n : most;
    }
    return most;
}

size_t maas_infer_scratch_bytes(const maas_model *m, int max_batch) {
    return col_floats(m, max_batch) * sizeof(float);
}

/*
 * Rows a context of max_batch rows runs through the network at a time. A model with
 * convolutions has wide activations (the Fashion CNN's first: 86 KB a sample): taken whole,
 * a batch of 256 passes 22 MB from layer to layer through memory; in steps whose widest
 * activation stays within ~4 MB (a power of two of samples, 8 at least: oneDNN's convolution
 * buckets) it stays in cache, ~15% faster per image here. Other models run whole batches.
 */
static int cnn_step(const maas_model *m, int widest, int max_batch) {
    if (col_floats(m, max_batch) == 0) return max_batch; /* no convolution */
    int step = 8;
    while (step * 2 <= max_batch && (size_t)step * 2 * (size_t)widest <= (size_t)1 << 20) step *= 2;
    return step < max_batch ? step : max_batch;
}

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
    inf->step = cnn_step(m, w, max_batch);
    size_t cells = (size_t)max_batch * (size_t)w;
    inf->buf[0] = malloc(cells * sizeof(float));
    inf->buf[1] = malloc(cells * sizeof(float));
    inf->xin = malloc((size_t)max_batch * (size_t)m->n_inputs * sizeof(float));
    if (!inf->buf[0] || !inf->buf[1] || !inf->xin) goto oom;
    size_t col = col_floats(m, max_batch); /* a convolution's GEMM has oh*ow rows per row */
    if ((max_batch >= 32 || col) && !(inf->fd = calloc((size_t)m->n_layers, sizeof(*inf->fd))))
        goto oom;
    if (col && !(inf->col = malloc(col * sizeof(float)))) goto oom;
    if (col && max_batch >= 8 && !(inf->cd = calloc((size_t)m->n_layers, sizeof(*inf->cd))))
        goto oom;
    if (m->quant) {
        quant_widths(m, &inf->q.ldx, &inf->q.ldc);
        size_t qr = (size_t)(inf->q_rows = quant_rows(m, max_batch));
        inf->q.xq = malloc(qr * (size_t)inf->q.ldx + 64);
        inf->q.rs = malloc(qr * sizeof(float));
        inf->q.sh = malloc(qr);
        inf->q.acc = malloc(qr * (size_t)inf->q.ldc * sizeof(int32_t) + 64);
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
    free(inf->col);
    for (int i = 0; inf->fd && i < inf->m->n_layers; i++) maas__fdnnl_free(inf->fd[i]);
    free(inf->fd);
    for (int i = 0; inf->cd && i < inf->m->n_layers; i++) maas__cdnnl_free(inf->cd[i]);
    free(inf->cd);
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

/* A Dense layer of the context's model with its activation: int8 or bf16 kernels when the
 * model has them, float otherwise. */
static void dense_layer(maas_infer *inf, int i, const float *in, int rows, float *out) {
    const maas_model *m = inf->m;
    const maas_layer *l = &m->layers[i];
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
}

/* A convolution at inference: oneDNN's direct convolution (relu fused) for batches of 8
 * samples and more where it takes them; the rest as im2col in chunks, each chunk's GEMM
 * through oneDNN's matmul where it takes it (the rest through BLAS, as maas_conv_forward),
 * then the activation. An int8 convolution multiplies each window (a row of im2col) as a
 * quantized Dense layer does a row: its own input scale, the kernel's per-filter scales. */
static void conv_layer(maas_infer *inf, int i, const float *in, int rows, float *out) {
    const maas_model *m = inf->m;
    const maas_layer *l = &m->layers[i];
    const maas_conv_geom *g = &l->geom;
    const float *w = m->params + l->w_off, *bias = l->spec.use_bias ? m->params + l->b_off : NULL;
    int chunk = maas__conv_chunk_rows(l, inf->max_batch), k = g->kh * g->kw * g->c;
    const maas_qlayer *ql = m->quant && m->quant->layers[i].wq ? &m->quant->layers[i] : NULL;
    int relu = l->spec.act == MAAS_ACT_RELU, direct = 0; /* samples oneDNN convolved */
    if (!ql && inf->cd && (inf->cd[i] || (inf->cd[i] = maas__cdnnl_new())))
        direct = maas__cdnnl_run(inf->cd[i], g, in, rows, w, bias, relu, out, inf->gen);
    /* relu is fused by the int8 epilogue and by oneDNN: the activation for the other rows */
    int act_from = ql && relu ? rows : relu ? direct : 0;
    for (int r = direct; r < rows; r += chunk) {
        int n = rows - r < chunk ? rows - r : chunk, pos = n * g->oh * g->ow;
        float *y = out + (size_t)r * l->n_out;
        maas_conv_im2col(g, in + (size_t)r * l->n_in, (size_t)n, inf->col);
        for (int p = 0; ql && p < pos; p += inf->q_rows)
            maas__qdense_forward(ql, inf->col + (size_t)p * k,
                                 pos - p < inf->q_rows ? pos - p : inf->q_rows, bias, relu,
                                 y + (size_t)p * g->f, &inf->q);
        if (ql) continue;
        int done = 0;
        if (inf->fd && (inf->fd[i] || (inf->fd[i] = maas__fdnnl_new())))
            done = maas__fdnnl_run(inf->fd[i], k, g->f, inf->col, k, pos, w, bias, y, g->f);
        float *yr = y + (size_t)done * g->f;
        for (int q = 0; bias && q < pos - done; q++)
            memcpy(yr + (size_t)q * g->f, bias, (size_t)g->f * sizeof(float));
        if (pos > done)
            maas_gemm(0, 0, pos - done, g->f, k, 1.0f, inf->col + (size_t)done * k, k, w, g->f,
                      bias ? 1.0f : 0.0f, yr, g->f);
    }
    maas_act_forward(l->spec.act, maas_act_alpha(&l->spec), out + (size_t)act_from * l->n_out,
                     (size_t)(rows - act_from) * (size_t)(l->n_out / g->f), g->f);
}

int maas__layer_forward(const maas_model *m, const maas_layer *l, const float *in, int rows,
                        float *col, int col_rows, float *out) {
    const float *p = m->params;
    size_t n = (size_t)rows;
    switch (l->spec.kind) {
    case MAAS_LAYER_CONV: {
        int chunk = maas__conv_chunk_rows(l, col_rows);
        const float *bias = l->spec.use_bias ? p + l->b_off : NULL;
        for (int r = 0; r < rows; r += chunk) {
            int k = rows - r < chunk ? rows - r : chunk;
            maas_conv_forward(&l->geom, in + (size_t)r * l->n_in, (size_t)k, p + l->w_off, bias,
                              col, out + (size_t)r * l->n_out);
        }
        /* per position over the channels (softmax's axis is the last) */
        maas_act_forward(l->spec.act, maas_act_alpha(&l->spec), out,
                         n * (size_t)(l->n_out / l->geom.f), l->geom.f);
        return 1;
    }
    case MAAS_LAYER_MAXPOOL:
        maas_maxpool_forward(&l->geom, in, n, out, NULL);
        return 1;
    case MAAS_LAYER_AVGPOOL:
    case MAAS_LAYER_GAP:
        maas_avgpool_forward(&l->geom, in, n, out);
        return 1;
    case MAAS_LAYER_BATCHNORM: {
        maas_bn_params bp = maas__layer_bn_params(l, p);
        size_t s;
        int c;
        maas__layer_bn_extent(l, &s, &c);
        maas_bn_infer(&bp, in, n, s, p + maas__layer_weight(l, "moving_mean")->off,
                      p + maas__layer_weight(l, "moving_variance")->off, out);
        return 1;
    }
    case MAAS_LAYER_EMBEDDING:
        maas_embed_forward(in, n * (size_t)l->n_in, p + l->w_off, l->spec.units, out);
        return 1;
    default:
        return 0;
    }
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
        float *out = inf->buf[which];
        if (l->spec.kind == MAAS_LAYER_DENSE) {
            dense_layer(inf, i, in, rows, out);
        } else if (l->spec.kind == MAAS_LAYER_CONV) {
            conv_layer(inf, i, in, rows, out);
        } else if (!maas__layer_forward(m, l, in, rows, inf->col, inf->max_batch, out)) {
            continue; /* identity at inference: Dropout, Flatten, Reshape */
        }
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
    maas_err err;
    if (maas_model_takes_indices(m) &&
        (err = maas_embed_check(x, rows * n_in, m->layers[0].spec.vocab, errstr, errstr_size)))
        return err;
    inf->gen++;
    for (size_t r0 = 0; r0 < rows; r0 += (size_t)inf->step) {
        int n = (int)(rows - r0 < (size_t)inf->step ? rows - r0 : (size_t)inf->step);
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
