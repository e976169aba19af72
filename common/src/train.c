/*
 * Losses, optimizers, metrics, and the trainer that runs forward/backward passes.
 * Size (~760 lines): the optimizer updates are compiled three times (baseline,
 * AVX2, AVX-512) from one body, and forward, backward and update share the
 * trainer's private buffers; splitting them would expose those buffers.
 */
#include "maas/base.h"
#include "maas/clock.h"
#include "maas/cpu.h"
#include "maas/embed.h"
#include "maas/gemm.h"
#include "maas/norm.h"
#include "maas/train.h"
#include "fpenv.h"
#include "layers_internal.h"
#include "train_internal.h"

#include <time.h>

#define CLIP_EPS 1e-7f /* Keras backend.epsilon() */

static const char *const loss_names[MAAS_LOSS__COUNT] = {
    [MAAS_LOSS_BINARY_CROSSENTROPY] = "binary_crossentropy",
    [MAAS_LOSS_CATEGORICAL_CROSSENTROPY] = "categorical_crossentropy",
    [MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY] = "sparse_categorical_crossentropy",
    [MAAS_LOSS_MSE] = "mse",
    [MAAS_LOSS_MAE] = "mae",
};

static const char *const opt_names[MAAS_OPT__COUNT] = {
    [MAAS_OPT_SGD] = "sgd",
    [MAAS_OPT_ADAM] = "adam",
    [MAAS_OPT_RMSPROP] = "rmsprop",
};

const char *maas_loss_name(maas_loss loss) {
    if ((int)loss < 0 || loss >= MAAS_LOSS__COUNT) return "?";
    return loss_names[loss];
}

maas_err maas_loss_from_name(const char *name, maas_loss *out, char *errstr, size_t errstr_size) {
    static const struct {
        const char *alias;
        maas_loss loss;
    } aliases[] = {
        {"mean_squared_error", MAAS_LOSS_MSE},
        {"mean_absolute_error", MAAS_LOSS_MAE},
    };
    for (int i = 0; name && i < MAAS_LOSS__COUNT; i++)
        if (!strcmp(name, loss_names[i])) return *out = (maas_loss)i, MAAS_OK;
    for (size_t i = 0; name && i < MAAS_ARRAY_LEN(aliases); i++)
        if (!strcmp(name, aliases[i].alias)) return *out = aliases[i].loss, MAAS_OK;
    return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                     "unknown loss '%s' (known: binary_crossentropy, categorical_crossentropy, "
                     "sparse_categorical_crossentropy, mse, mae)",
                     name ? name : "(null)");
}

const char *maas_opt_name(maas_opt opt) {
    if ((int)opt < 0 || opt >= MAAS_OPT__COUNT) return "?";
    return opt_names[opt];
}

maas_err maas_opt_from_name(const char *name, maas_opt *out, char *errstr, size_t errstr_size) {
    for (int i = 0; name && i < MAAS_OPT__COUNT; i++)
        if (!strcasecmp(name, opt_names[i])) return *out = (maas_opt)i, MAAS_OK;
    return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                     "unknown optimizer '%s' (known: sgd, adam, rmsprop)", name ? name : "(null)");
}

void maas_optim_defaults(maas_optim_spec *o, maas_opt kind) {
    memset(o, 0, sizeof(*o));
    o->kind = kind;
    o->learning_rate = kind == MAAS_OPT_SGD ? 0.01f : 0.001f;
    o->beta_1 = 0.9f;
    o->beta_2 = 0.999f;
    o->epsilon = 1e-7f;
    o->rho = 0.9f;
}

int maas_label_cols(const maas_model *m, maas_loss loss) {
    return loss == MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY ? 1 : m->n_outputs;
}

maas_acc_kind maas_acc_resolve(const maas_model *m, const maas_compile *c) {
    if (!c->accuracy) return MAAS_ACC_NONE;
    if (c->loss == MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY) return MAAS_ACC_SPARSE;
    if (c->loss == MAAS_LOSS_BINARY_CROSSENTROPY || m->n_outputs == 1) return MAAS_ACC_BINARY;
    return MAAS_ACC_CATEGORICAL;
}

maas_err maas_compile_check(const maas_model *m, const maas_compile *c, char *errstr,
                            size_t errstr_size) {
    const maas_optim_spec *o = &c->optim;
    if ((int)c->loss < 0 || c->loss >= MAAS_LOSS__COUNT)
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME, "unknown loss %d",
                         (int)c->loss);
    if ((int)o->kind < 0 || o->kind >= MAAS_OPT__COUNT)
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME, "unknown optimizer %d",
                         (int)o->kind);
    if (!(o->learning_rate > 0.0f && o->learning_rate <= 10.0f))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "learning rate must be in (0, 10], got %g", (double)o->learning_rate);
    if (!(o->momentum >= 0.0f && o->momentum < 1.0f))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "momentum must be in [0, 1), got %g", (double)o->momentum);
    if (o->kind == MAAS_OPT_ADAM &&
        !(o->beta_1 >= 0.0f && o->beta_1 < 1.0f && o->beta_2 >= 0.0f && o->beta_2 < 1.0f))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "adam betas must be in [0, 1)");
    if (o->kind == MAAS_OPT_RMSPROP && !(o->rho >= 0.0f && o->rho < 1.0f))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "rmsprop rho must be in [0, 1)");
    if (o->kind != MAAS_OPT_SGD && !(o->epsilon > 0.0f && o->epsilon < 1.0f))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "epsilon must be in (0, 1), got %g", (double)o->epsilon);
    if ((c->loss == MAAS_LOSS_CATEGORICAL_CROSSENTROPY ||
         c->loss == MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY) &&
        m->n_outputs < 2)
        return maas_errf(errstr, errstr_size, MAAS_ERR_SHAPE_MISMATCH,
                         "%s needs at least 2 output units, the model has %d",
                         maas_loss_name(c->loss), m->n_outputs);
    return MAAS_OK;
}

maas_err maas_labels_check(const maas_model *m, maas_loss loss, const float *y, size_t rows,
                           char *errstr, size_t errstr_size) {
    int k = maas_label_cols(m, loss);
    for (size_t r = 0; r < rows; r++) {
        for (int j = 0; j < k; j++) {
            float v = y[r * (size_t)k + j];
            if (!isfinite(v))
                return maas_errf(errstr, errstr_size, MAAS_ERR_NON_FINITE,
                                 "label row %zu, column %d is not finite", r, j);
            switch (loss) {
            case MAAS_LOSS_BINARY_CROSSENTROPY:
                if (v < 0.0f || v > 1.0f)
                    return maas_errf(errstr, errstr_size, MAAS_ERR_LABEL_OUT_OF_RANGE,
                                     "label row %zu is %g; binary_crossentropy needs labels in "
                                     "[0, 1]",
                                     r, (double)v);
                break;
            case MAAS_LOSS_CATEGORICAL_CROSSENTROPY:
                if (v < 0.0f)
                    return maas_errf(errstr, errstr_size, MAAS_ERR_LABEL_OUT_OF_RANGE,
                                     "label row %zu, column %d is negative (%g)", r, j, (double)v);
                break;
            case MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY:
                if (v != floorf(v) || v < 0.0f || v >= (float)m->n_outputs)
                    return maas_errf(errstr, errstr_size, MAAS_ERR_LABEL_OUT_OF_RANGE,
                                     "label row %zu is %g; sparse_categorical_crossentropy needs "
                                     "a class index in 0..%d",
                                     r, (double)v, m->n_outputs - 1);
                break;
            default:
                break;
            }
        }
    }
    return MAAS_OK;
}

/* ---- the trainer ---- */

struct maas_trainer {
    maas_model *m;
    maas_compile c;
    maas_acc_kind acc;
    int batch;
    maas_rng *rng;
    int fused; /* output layer's activation folded into the loss (logits path) */
    /* Per layer: pre-activation z (Dense, Conv) and output a (NULL: the identity, whose
     * output is its input); masks for Dropout; max pooling's argmax; BatchNormalization's
     * normalized values and inverse deviations. */
    float **z, **a, **mask, **xhat, **inv_std;
    int32_t **argmax;
    float *col;       /* convolutions' im2col workspace */
    int col_rows;     /* the rows it was sized for (maas__conv_chunk_rows) */
    const float **in; /* input of each layer during the last forward */
    float *d[2];      /* ping-pong deltas, batch x max width */
    float *grad;      /* n_params */
    float *slot[3];   /* optimizer state, n_params each (NULL when unused) */
    long long iterations;
    float *block;             /* one allocation for all activations */
    const float *param_mask;  /* borrowed; held after every update (pruning) */
    int isa;                  /* update_isa() */
    maas_train_profile *prof; /* borrowed; NULL: no timing */
};

static int update_isa(void);

void maas_trainer_free(maas_trainer *tr) {
    if (!tr) return;
    for (int i = 0; tr->argmax && i < tr->m->n_layers; i++) free(tr->argmax[i]);
    free(tr->argmax);
    free(tr->z);
    free(tr->a);
    free(tr->mask);
    free(tr->xhat);
    free(tr->inv_std);
    free(tr->col);
    free(tr->in);
    free(tr->grad);
    for (int i = 0; i < 3; i++) free(tr->slot[i]);
    free(tr->block);
    free(tr);
}

static int output_is_fused(const maas_model *m, maas_loss loss) {
    const maas_layer *last = &m->layers[m->n_layers - 1];
    if (last->spec.kind != MAAS_LAYER_DENSE) return 0;
    if (loss == MAAS_LOSS_BINARY_CROSSENTROPY) return last->spec.act == MAAS_ACT_SIGMOID;
    if (loss == MAAS_LOSS_CATEGORICAL_CROSSENTROPY ||
        loss == MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY)
        return last->spec.act == MAAS_ACT_SOFTMAX;
    return 0;
}

/* Floats per row a layer holds in the trainer's block (the argmax is apart). */
static size_t layer_cells(const maas_layer *l) {
    size_t n = (size_t)l->n_out;
    switch (l->spec.kind) {
    case MAAS_LAYER_DENSE:
    case MAAS_LAYER_CONV:
    case MAAS_LAYER_DROPOUT:
        return 2 * n;
    case MAAS_LAYER_BATCHNORM: /* + the inverse deviations, one per channel: counted per row */
        return 2 * n + (size_t)l->in.d[l->in.rank - 1];
    case MAAS_LAYER_MAXPOOL:
    case MAAS_LAYER_AVGPOOL:
    case MAAS_LAYER_GAP:
    case MAAS_LAYER_EMBEDDING:
        return n;
    default:
        return 0;
    }
}

static maas_trainer *trainer_new(maas_model *m, const maas_compile *c, int batch, maas_rng *rng,
                                 int for_training, maas_err *code, char *errstr,
                                 size_t errstr_size) {
    if ((*code = maas_compile_check(m, c, errstr, errstr_size)) != MAAS_OK) return NULL;
    if (batch < 1 || batch > 1 << 20) {
        *code = maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                          "batch size must be in 1..%d, got %d", 1 << 20, batch);
        return NULL;
    }
    int maxw = m->n_inputs;
    size_t cells = 0, col = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        maxw = l->n_out > maxw ? l->n_out : maxw;
        cells += (size_t)batch * layer_cells(l);
        if (l->spec.kind == MAAS_LAYER_CONV) {
            size_t n = maas_conv_col_floats(&l->geom, (size_t)maas__conv_chunk_rows(l, batch));
            col = n > col ? n : col;
        }
    }
    cells += 2 * (size_t)batch * (size_t)maxw;
    if (cells + col > ((size_t)1 << 31)) {
        *code = maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                          "batch of %d rows needs %zu activation cells, over the 2^31 limit", batch,
                          cells + col);
        return NULL;
    }
    maas_trainer *tr = calloc(1, sizeof(*tr));
    if (!tr) goto oom;
    tr->m = m;
    tr->c = *c;
    tr->acc = maas_acc_resolve(m, c);
    tr->batch = batch;
    tr->rng = rng;
    tr->fused = output_is_fused(m, c->loss);
    tr->isa = update_isa();
    size_t nl = (size_t)m->n_layers;
    tr->z = calloc(nl, sizeof(float *));
    tr->a = calloc(nl, sizeof(float *));
    tr->mask = calloc(nl, sizeof(float *));
    tr->xhat = calloc(nl, sizeof(float *));
    tr->inv_std = calloc(nl, sizeof(float *));
    tr->argmax = calloc(nl, sizeof(int32_t *));
    tr->in = calloc(nl, sizeof(float *));
    tr->block = malloc(cells * sizeof(float));
    tr->grad = calloc(m->n_params ? m->n_params : 1, sizeof(float));
    tr->col_rows = batch;
    if (col && !(tr->col = malloc(col * sizeof(float)))) goto oom;
    if (!tr->z || !tr->a || !tr->mask || !tr->xhat || !tr->inv_std || !tr->argmax || !tr->in ||
        !tr->block || !tr->grad)
        goto oom;
    float *p = tr->block;
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        size_t n = (size_t)batch * (size_t)l->n_out;
        switch (l->spec.kind) {
        case MAAS_LAYER_DENSE:
        case MAAS_LAYER_CONV:
            tr->z[i] = p, p += n;
            tr->a[i] = p, p += n;
            break;
        case MAAS_LAYER_DROPOUT:
            tr->mask[i] = p, p += n;
            tr->a[i] = p, p += n;
            break;
        case MAAS_LAYER_BATCHNORM:
            tr->xhat[i] = p, p += n;
            tr->a[i] = p, p += n;
            tr->inv_std[i] = p, p += (size_t)l->in.d[l->in.rank - 1];
            break;
        case MAAS_LAYER_MAXPOOL:
            if (!(tr->argmax[i] = malloc(n * sizeof(int32_t)))) goto oom;
            tr->a[i] = p, p += n;
            break;
        case MAAS_LAYER_AVGPOOL:
        case MAAS_LAYER_GAP:
        case MAAS_LAYER_EMBEDDING:
            tr->a[i] = p, p += n;
            break;
        default: /* Flatten, Reshape: the identity */
            break;
        }
    }
    tr->d[0] = p;
    tr->d[1] = p + (size_t)batch * (size_t)maxw;
    if (for_training) {
        int nslots = 0;
        switch (c->optim.kind) {
        case MAAS_OPT_SGD:
            nslots = c->optim.momentum > 0.0f ? 1 : 0;
            break;
        case MAAS_OPT_ADAM:
            nslots = 2;
            break;
        case MAAS_OPT_RMSPROP:
            nslots = c->optim.momentum > 0.0f ? 2 : 1;
            break;
        default:
            break;
        }
        for (int i = 0; i < nslots; i++) {
            tr->slot[i] = calloc(m->n_params, sizeof(float));
            if (!tr->slot[i]) goto oom;
        }
    }
    return tr;
oom:
    maas_trainer_free(tr);
    *code = maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY,
                      "out of memory for a trainer (batch %d)", batch);
    return NULL;
}

maas_err maas_trainer_create(maas_trainer **out, maas_model *m, const maas_compile *c,
                             int batch_size, maas_rng *rng, char *errstr, size_t errstr_size) {
    maas_err code = MAAS_OK;
    *out = trainer_new(m, c, batch_size, rng, 1, &code, errstr, errstr_size);
    return *out ? MAAS_OK : code;
}

maas_trainer *maas_trainer_new(maas_model *m, const maas_compile *c, int batch_size, maas_rng *rng,
                               char *errstr, size_t errstr_size) {
    maas_trainer *tr;
    maas_trainer_create(&tr, m, c, batch_size, rng, errstr, errstr_size);
    return tr;
}

/* maas_gemm, timed into the profile when one is set. */
static void tr_gemm(maas_trainer *tr, int ta, int tb, int m, int n, int k, const float *a, int lda,
                    const float *b, int ldb, float beta, float *c, int ldc) {
    double t0 = tr->prof ? maas_mono_s() : 0.0;
    maas_gemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
    if (tr->prof) {
        tr->prof->gemm_s += maas_mono_s() - t0;
        tr->prof->gemm_flops += 2.0 * m * (double)n * k;
    }
}

void maas_trainer_set_profile(maas_trainer *tr, maas_train_profile *p) {
    tr->prof = p;
}

/* What a forward pass is for: a training step (dropout on, BatchNormalization on the batch's
 * statistics, moving them), a gradient (no dropout, the batch's statistics, nothing moved) or
 * an evaluation (no dropout, the moving statistics). */
enum { PASS_STEP = 0, PASS_GRAD, PASS_EVAL };

/* Forward pass; returns the output buffer (rows x n_outputs). */
static const float *forward(maas_trainer *tr, const float *x, int rows, int pass) {
    maas_model *m = tr->m;
    const float *in = x;
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        tr->in[i] = in;
        size_t n = (size_t)rows * (size_t)l->n_out;
        switch (l->spec.kind) {
        case MAAS_LAYER_DENSE: {
            float *z = tr->z[i];
            const float *w = m->params + l->w_off;
            float beta = 0.0f;
            if (l->spec.use_bias) {
                const float *b = m->params + l->b_off;
                for (int r = 0; r < rows; r++)
                    memcpy(z + (size_t)r * l->n_out, b, (size_t)l->n_out * sizeof(float));
                beta = 1.0f;
            }
            tr_gemm(tr, 0, 0, rows, l->n_out, l->n_in, in, l->n_in, w, l->n_out, beta, z, l->n_out);
            memcpy(tr->a[i], z, n * sizeof(float));
            maas_act_forward(l->spec.act, maas_act_alpha(&l->spec), tr->a[i], (size_t)rows,
                             l->n_out);
            in = tr->a[i];
            break;
        }
        case MAAS_LAYER_CONV: {
            int chunk = maas__conv_chunk_rows(l, tr->col_rows);
            const float *bias = l->spec.use_bias ? m->params + l->b_off : NULL;
            double t0 = tr->prof ? maas_mono_s() : 0.0;
            for (int r = 0; r < rows; r += chunk) {
                int k = rows - r < chunk ? rows - r : chunk;
                maas_conv_forward(&l->geom, in + (size_t)r * l->n_in, (size_t)k,
                                  m->params + l->w_off, bias, tr->col,
                                  tr->z[i] + (size_t)r * l->n_out);
            }
            if (tr->prof) {
                tr->prof->gemm_s += maas_mono_s() - t0;
                tr->prof->gemm_flops +=
                    2.0 * rows * (double)l->n_out * l->geom.kh * l->geom.kw * l->geom.c;
            }
            memcpy(tr->a[i], tr->z[i], n * sizeof(float));
            maas_act_forward(l->spec.act, maas_act_alpha(&l->spec), tr->a[i],
                             (size_t)rows * (size_t)(l->n_out / l->geom.f), l->geom.f);
            in = tr->a[i];
            break;
        }
        case MAAS_LAYER_DROPOUT:
            if (pass == PASS_STEP && l->spec.rate > 0.0f) {
                /* Inverted dropout: keep with probability 1 - rate, scale by 1 / (1 - rate). */
                float keep = 1.0f - l->spec.rate, scale = 1.0f / keep;
                for (size_t k = 0; k < n; k++) {
                    tr->mask[i][k] = maas_rng_uniform(tr->rng) < (double)keep ? scale : 0.0f;
                    tr->a[i][k] = in[k] * tr->mask[i][k];
                }
                in = tr->a[i];
            } else {
                for (size_t k = 0; k < n; k++) tr->mask[i][k] = 1.0f;
                /* identity: pass the input through without a copy */
            }
            break;
        case MAAS_LAYER_MAXPOOL:
            maas_maxpool_forward(&l->geom, in, (size_t)rows, tr->a[i], tr->argmax[i]);
            in = tr->a[i];
            break;
        case MAAS_LAYER_BATCHNORM:
            if (pass != PASS_EVAL) {
                maas_bn_params bp = maas__layer_bn_params(l, m->params);
                size_t s;
                int c;
                maas__layer_bn_extent(l, &s, &c);
                float *mm = m->params + maas__layer_weight(l, "moving_mean")->off;
                float *mv = m->params + maas__layer_weight(l, "moving_variance")->off;
                maas_bn_train(&bp, in, (size_t)rows, s, tr->a[i], tr->xhat[i], tr->inv_std[i],
                              pass == PASS_STEP ? mm : NULL, pass == PASS_STEP ? mv : NULL);
            } else {
                maas__layer_forward(m, l, in, rows, NULL, 0, tr->a[i]);
            }
            in = tr->a[i];
            break;
        case MAAS_LAYER_AVGPOOL:
        case MAAS_LAYER_GAP:
        case MAAS_LAYER_EMBEDDING:
            maas__layer_forward(m, l, in, rows, NULL, 0, tr->a[i]);
            in = tr->a[i];
            break;
        default: /* Flatten, Reshape: the identity */
            break;
        }
    }
    return in;
}

static inline float clampf(float v, float lo, float hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int j = 1; j < n; j++)
        if (v[j] > v[best]) best = j;
    return best;
}

/* Summed accuracy of rows (each row counts 1 at most). */
static double accuracy_sum(const maas_trainer *tr, const float *p, const float *y, int rows) {
    int k = tr->m->n_outputs;
    double sum = 0.0;
    for (int r = 0; r < rows; r++) {
        const float *pr = p + (size_t)r * k;
        switch (tr->acc) {
        case MAAS_ACC_BINARY: {
            const float *yr = y + (size_t)r * k;
            int hits = 0;
            for (int j = 0; j < k; j++) hits += (pr[j] > 0.5f ? 1.0f : 0.0f) == yr[j];
            sum += (double)hits / k;
            break;
        }
        case MAAS_ACC_CATEGORICAL:
            sum += argmax(pr, k) == argmax(y + (size_t)r * k, k);
            break;
        case MAAS_ACC_SPARSE:
            sum += argmax(pr, k) == (int)y[r];
            break;
        case MAAS_ACC_NONE:
            break;
        }
    }
    return sum;
}

/*
 * Loss of the batch (mean over rows) and, if g is non-NULL, its gradient with
 * respect to the output layer: dL/dz when the output is fused, else dL/da.
 */
static double loss_and_grad(const maas_trainer *tr, const float *out, const float *z,
                            const float *y, int rows, float *g) {
    int k = tr->m->n_outputs;
    double total = 0.0;
    float inv_b = 1.0f / (float)rows;
    for (int r = 0; r < rows; r++) {
        const float *p = out + (size_t)r * k;
        const float *zr = z ? z + (size_t)r * k : NULL;
        const float *yr = y + (size_t)r * maas_label_cols(tr->m, tr->c.loss);
        float *gr = g ? g + (size_t)r * k : NULL;
        double row = 0.0;
        switch (tr->c.loss) {
        case MAAS_LOSS_BINARY_CROSSENTROPY:
            for (int j = 0; j < k; j++) {
                if (tr->fused) {
                    /* sigmoid_cross_entropy_with_logits */
                    float x = zr[j];
                    row += (double)fmaxf(x, 0.0f) - (double)x * yr[j] + log1p(exp(-fabs(x)));
                    if (gr) gr[j] = (p[j] - yr[j]) * inv_b / (float)k;
                } else {
                    float pc = clampf(p[j], CLIP_EPS, 1.0f - CLIP_EPS);
                    row -= yr[j] * log((double)pc) + (1.0 - yr[j]) * log(1.0 - (double)pc);
                    if (gr) {
                        int inside = p[j] > CLIP_EPS && p[j] < 1.0f - CLIP_EPS;
                        gr[j] =
                            inside ? (pc - yr[j]) / (pc * (1.0f - pc)) * inv_b / (float)k : 0.0f;
                    }
                }
            }
            row /= k;
            break;
        case MAAS_LOSS_CATEGORICAL_CROSSENTROPY:
        case MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY: {
            int sparse = tr->c.loss == MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY;
            int label = sparse ? (int)yr[0] : -1;
#define YTRUE(j) (sparse ? ((j) == label ? 1.0f : 0.0f) : yr[j])
            if (tr->fused) {
                /* softmax_cross_entropy_with_logits: sum_j y_j (lse(z) - z_j) */
                float mx = zr[0];
                for (int j = 1; j < k; j++) mx = fmaxf(mx, zr[j]);
                double se = 0.0, ysum = 0.0;
                for (int j = 0; j < k; j++) se += exp((double)zr[j] - mx);
                double lse = mx + log(se);
                for (int j = 0; j < k; j++) {
                    row += YTRUE(j) * (lse - zr[j]);
                    ysum += YTRUE(j);
                }
                if (gr)
                    for (int j = 0; j < k; j++) gr[j] = (p[j] * (float)ysum - YTRUE(j)) * inv_b;
            } else {
                /* Keras: p / sum(p), clipped, -sum y log p; chain rule through both. */
                float s = 0.0f;
                for (int j = 0; j < k; j++) s += p[j];
                float gdot = 0.0f;
                for (int j = 0; j < k; j++) {
                    float q = p[j] / s;
                    float qc = clampf(q, CLIP_EPS, 1.0f - CLIP_EPS);
                    row -= YTRUE(j) * log((double)qc);
                    if (gr) {
                        int inside = q > CLIP_EPS && q < 1.0f - CLIP_EPS;
                        gr[j] = inside ? -YTRUE(j) / qc : 0.0f; /* dL/dq */
                        gdot += gr[j] * q;
                    }
                }
                if (gr)
                    for (int j = 0; j < k; j++) gr[j] = (gr[j] - gdot) / s * inv_b;
            }
#undef YTRUE
            break;
        }
        case MAAS_LOSS_MSE:
            for (int j = 0; j < k; j++) {
                float d = p[j] - yr[j];
                row += (double)d * d;
                if (gr) gr[j] = 2.0f * d * inv_b / (float)k;
            }
            row /= k;
            break;
        case MAAS_LOSS_MAE:
            for (int j = 0; j < k; j++) {
                float d = p[j] - yr[j];
                row += fabs((double)d);
                if (gr) gr[j] = (float)((d > 0.0f) - (d < 0.0f)) * inv_b / (float)k;
            }
            row /= k;
            break;
        default:
            break;
        }
        total += row;
    }
    return total / rows;
}

/* Backward pass from the output gradient in tr->d[0]; fills tr->grad. */
static void backward(maas_trainer *tr, int rows) {
    const maas_model *m = tr->m;
    int cur = 0;
    for (int i = m->n_layers - 1; i >= 0; i--) {
        const maas_layer *l = &m->layers[i];
        float *g = tr->d[cur], *dx = tr->d[cur ^ 1];
        size_t n = (size_t)rows * (size_t)l->n_out;
        int below = 0; /* a layer with weights below this one: the input's gradient is needed */
        for (int j = 0; j < i; j++) below |= maas__layer_has_weights(&m->layers[j]);
        switch (l->spec.kind) {
        case MAAS_LAYER_DROPOUT:
            for (size_t k = 0; k < n; k++) g[k] *= tr->mask[i][k];
            continue;
        case MAAS_LAYER_DENSE:
            if (!(tr->fused && i == m->n_layers - 1))
                maas_act_backward(l->spec.act, maas_act_alpha(&l->spec), tr->z[i], tr->a[i], g,
                                  (size_t)rows, l->n_out);
            /* dW = in^T . dz ; db = column sums of dz ; dx = dz . W^T */
            tr_gemm(tr, 1, 0, l->n_in, l->n_out, rows, tr->in[i], l->n_in, g, l->n_out, 0.0f,
                    tr->grad + l->w_off, l->n_out);
            if (l->spec.use_bias) {
                float *db = tr->grad + l->b_off;
                memcpy(db, g, (size_t)l->n_out * sizeof(float));
                for (int r = 1; r < rows; r++) {
                    const float *gr = g + (size_t)r * l->n_out;
                    for (int j = 0; j < l->n_out; j++) db[j] += gr[j];
                }
            }
            if (!below) return; /* no gradient needed below the first layer with weights */
            tr_gemm(tr, 0, 1, rows, l->n_in, l->n_out, g, l->n_out, m->params + l->w_off, l->n_out,
                    0.0f, dx, l->n_in);
            break;
        case MAAS_LAYER_CONV: {
            maas_act_backward(l->spec.act, maas_act_alpha(&l->spec), tr->z[i], tr->a[i], g,
                              (size_t)rows * (size_t)(l->n_out / l->geom.f), l->geom.f);
            int chunk = maas__conv_chunk_rows(l, tr->col_rows);
            double t0 = tr->prof ? maas_mono_s() : 0.0;
            for (int r = 0; r < rows; r += chunk) {
                int k = rows - r < chunk ? rows - r : chunk;
                maas_conv_backward(&l->geom, tr->in[i] + (size_t)r * l->n_in, (size_t)k,
                                   m->params + l->w_off, g + (size_t)r * l->n_out, tr->col,
                                   tr->grad + l->w_off,
                                   l->spec.use_bias ? tr->grad + l->b_off : NULL,
                                   below ? dx + (size_t)r * l->n_in : NULL, r > 0);
            }
            if (tr->prof) {
                tr->prof->gemm_s += maas_mono_s() - t0;
                tr->prof->gemm_flops += (below ? 4.0 : 2.0) * rows * (double)l->n_out * l->geom.kh *
                                        l->geom.kw * l->geom.c;
            }
            if (!below) return;
            break;
        }
        case MAAS_LAYER_MAXPOOL:
            if (!below) return;
            maas_maxpool_backward(&l->geom, g, (size_t)rows, tr->argmax[i], dx);
            break;
        case MAAS_LAYER_AVGPOOL:
        case MAAS_LAYER_GAP:
            if (!below) return;
            maas_avgpool_backward(&l->geom, g, (size_t)rows, dx);
            break;
        case MAAS_LAYER_BATCHNORM: {
            maas_bn_params bp = maas__layer_bn_params(l, m->params);
            const maas_weight *wg = maas__layer_weight(l, "gamma"),
                              *wb = maas__layer_weight(l, "beta");
            size_t s;
            int c;
            maas__layer_bn_extent(l, &s, &c);
            maas_bn_backward(&bp, g, (size_t)rows, s, tr->xhat[i], tr->inv_std[i],
                             wg ? tr->grad + wg->off : NULL, wb ? tr->grad + wb->off : NULL, dx);
            if (!below) return;
            break;
        }
        case MAAS_LAYER_EMBEDDING:
            maas_embed_backward(tr->in[i], (size_t)rows * (size_t)l->n_in, g, l->spec.vocab,
                                l->spec.units, tr->grad + l->w_off);
            return; /* the first layer */
        default:    /* Flatten, Reshape: the gradient passes as it is */
            continue;
        }
        cur ^= 1;
    }
}

/* The update rules, one loop per optimizer over the whole parameter block;
 * restrict lets the compiler vectorize them. Each body is compiled three times
 * (SSE2 baseline, AVX2, AVX-512) and the trainer picks the widest the CPU runs;
 * with -ffp-contract=off all three give the same bits. */
#define MAAS_ALWAYS_INLINE static inline __attribute__((always_inline))

MAAS_ALWAYS_INLINE void sgd_body(float *restrict w, const float *restrict g, float *restrict v,
                                 size_t n, const maas_optim_spec *o) {
    float lr = o->learning_rate, mu = o->momentum;
    if (!v) {
        for (size_t i = 0; i < n; i++) w[i] -= lr * g[i];
        return;
    }
    if (o->nesterov) {
        for (size_t i = 0; i < n; i++) {
            v[i] = mu * v[i] - lr * g[i];
            w[i] += mu * v[i] - lr * g[i];
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        v[i] = mu * v[i] - lr * g[i];
        w[i] += v[i];
    }
}

MAAS_ALWAYS_INLINE void adam_body(float *restrict w, const float *restrict g, float *restrict mo,
                                  float *restrict ve, size_t n, float alpha,
                                  const maas_optim_spec *o) {
    /* Keras: alpha = lr * sqrt(1 - b2^t) / (1 - b1^t); w -= alpha * m / (sqrt(v) + eps). */
    float b1c = 1.0f - o->beta_1, b2c = 1.0f - o->beta_2, eps = o->epsilon;
    for (size_t i = 0; i < n; i++) {
        mo[i] += (g[i] - mo[i]) * b1c;
        ve[i] += (g[i] * g[i] - ve[i]) * b2c;
        w[i] -= alpha * mo[i] / (sqrtf(ve[i]) + eps);
    }
}

MAAS_ALWAYS_INLINE void rmsprop_body(float *restrict w, const float *restrict g, float *restrict ve,
                                     float *restrict mo, size_t n, const maas_optim_spec *o) {
    float rho = o->rho, lr = o->learning_rate, eps = o->epsilon, mu = o->momentum;
    if (mo) {
        for (size_t i = 0; i < n; i++) {
            ve[i] = rho * ve[i] + (1.0f - rho) * g[i] * g[i];
            mo[i] = mu * mo[i] + lr * g[i] / sqrtf(ve[i] + eps);
            w[i] -= mo[i];
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        ve[i] = rho * ve[i] + (1.0f - rho) * g[i] * g[i];
        w[i] -= lr * g[i] / sqrtf(ve[i] + eps);
    }
}

MAAS_ALWAYS_INLINE void mask_body(float *restrict w, const float *restrict mk, size_t n) {
    for (size_t i = 0; i < n; i++) w[i] *= mk[i];
}

/* The three optimizers plus the pruning mask, for one instruction set. */
#define MAAS_UPDATE_FNS(SFX, ATTR)                                                                 \
    ATTR static void sgd_update##SFX(float *restrict w, const float *restrict g,                   \
                                     float *restrict v, size_t n, const maas_optim_spec *o) {      \
        sgd_body(w, g, v, n, o);                                                                   \
    }                                                                                              \
    ATTR static void adam_update##SFX(float *restrict w, const float *restrict g,                  \
                                      float *restrict mo, float *restrict ve, size_t n,            \
                                      float alpha, const maas_optim_spec *o) {                     \
        adam_body(w, g, mo, ve, n, alpha, o);                                                      \
    }                                                                                              \
    ATTR static void rmsprop_update##SFX(float *restrict w, const float *restrict g,               \
                                         float *restrict ve, float *restrict mo, size_t n,         \
                                         const maas_optim_spec *o) {                               \
        rmsprop_body(w, g, ve, mo, n, o);                                                          \
    }                                                                                              \
    ATTR static void mask_update##SFX(float *restrict w, const float *restrict mk, size_t n) {     \
        mask_body(w, mk, n);                                                                       \
    }

MAAS_UPDATE_FNS(_base, )
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MAAS_WIDE_UPDATES 1
MAAS_UPDATE_FNS(_avx2, __attribute__((target("avx2"))))
MAAS_UPDATE_FNS(_avx512, __attribute__((target("avx512f"))))
#endif

/* 0: baseline, 1: AVX2, 2: AVX-512F, as the CPU and MAAS_CPU_LEVEL allow (maas/cpu.h). */
static int update_isa(void) {
#ifdef MAAS_WIDE_UPDATES
    maas_cpu_level l = maas_cpu_current();
    if (l >= MAAS_CPU_AVX512) return 2;
    if (l >= MAAS_CPU_AVX2) return 1;
#endif
    return 0;
}

static void sgd_update(int isa, float *w, const float *g, float *v, size_t n,
                       const maas_optim_spec *o) {
#ifdef MAAS_WIDE_UPDATES
    if (isa == 2) return sgd_update_avx512(w, g, v, n, o);
    if (isa == 1) return sgd_update_avx2(w, g, v, n, o);
#endif
    (void)isa;
    sgd_update_base(w, g, v, n, o);
}

static void adam_update(int isa, float *w, const float *g, float *mo, float *ve, size_t n,
                        float alpha, const maas_optim_spec *o) {
#ifdef MAAS_WIDE_UPDATES
    if (isa == 2) return adam_update_avx512(w, g, mo, ve, n, alpha, o);
    if (isa == 1) return adam_update_avx2(w, g, mo, ve, n, alpha, o);
#endif
    (void)isa;
    adam_update_base(w, g, mo, ve, n, alpha, o);
}

static void rmsprop_update(int isa, float *w, const float *g, float *ve, float *mo, size_t n,
                           const maas_optim_spec *o) {
#ifdef MAAS_WIDE_UPDATES
    if (isa == 2) return rmsprop_update_avx512(w, g, ve, mo, n, o);
    if (isa == 1) return rmsprop_update_avx2(w, g, ve, mo, n, o);
#endif
    (void)isa;
    rmsprop_update_base(w, g, ve, mo, n, o);
}

static void mask_update(int isa, float *w, const float *mk, size_t n) {
#ifdef MAAS_WIDE_UPDATES
    if (isa == 2) return mask_update_avx512(w, mk, n);
    if (isa == 1) return mask_update_avx2(w, mk, n);
#endif
    (void)isa;
    mask_update_base(w, mk, n);
}

static void apply_update(maas_trainer *tr) {
    const maas_optim_spec *o = &tr->c.optim;
    size_t n = tr->m->n_params;
    tr->iterations++;
    switch (o->kind) {
    case MAAS_OPT_SGD:
        sgd_update(tr->isa, tr->m->params, tr->grad, o->momentum > 0.0f ? tr->slot[0] : NULL, n, o);
        break;
    case MAAS_OPT_ADAM: {
        double t = (double)tr->iterations;
        float alpha =
            (float)(o->learning_rate * sqrt(1.0 - pow(o->beta_2, t)) / (1.0 - pow(o->beta_1, t)));
        adam_update(tr->isa, tr->m->params, tr->grad, tr->slot[0], tr->slot[1], n, alpha, o);
        break;
    }
    case MAAS_OPT_RMSPROP:
        rmsprop_update(tr->isa, tr->m->params, tr->grad, tr->slot[0], tr->slot[1], n, o);
        break;
    default:
        break;
    }
    if (tr->param_mask) mask_update(tr->isa, tr->m->params, tr->param_mask, n);
}

void maas_trainer_set_mask(maas_trainer *tr, const float *mask) {
    tr->param_mask = mask;
    if (mask)
        for (size_t i = 0; i < tr->m->n_params; i++) tr->m->params[i] *= mask[i];
}

static maas_err check_rows(const maas_trainer *tr, int rows, char *errstr, size_t errstr_size) {
    if (rows < 1 || rows > tr->batch)
        return maas_errf(errstr, errstr_size, MAAS_ERR_SHAPE_MISMATCH,
                         "batch has %d rows; the trainer takes 1..%d", rows, tr->batch);
    return MAAS_OK;
}

static maas_err run_grad(maas_trainer *tr, const float *x, const float *y, int rows, int training,
                         double *loss, double *acc_sum, char *errstr, size_t errstr_size) {
    maas_err err = check_rows(tr, rows, errstr, errstr_size);
    if (err) return err;
    const float *out = forward(tr, x, rows, training ? PASS_STEP : PASS_GRAD);
    int last = tr->m->n_layers - 1;
    const float *z = tr->m->layers[last].spec.kind == MAAS_LAYER_DENSE ? tr->z[last] : NULL;
    double l = loss_and_grad(tr, out, z, y, rows, tr->d[0]);
    if (!isfinite(l))
        return maas_errf(errstr, errstr_size, MAAS_ERR_DIVERGED,
                         "loss is not finite (%g); lower the learning rate or standardize inputs",
                         l);
    if (loss) *loss = l;
    if (acc_sum) *acc_sum = accuracy_sum(tr, out, y, rows);
    backward(tr, rows);
    return MAAS_OK;
}

maas_err maas_trainer_step(maas_trainer *tr, const float *x, const float *y, int rows, double *loss,
                           double *acc_sum, char *errstr, size_t errstr_size) {
    maas_fpenv fp;
    maas__fpenv_flush(&fp);
    double t0 = tr->prof ? maas_mono_s() : 0.0;
    maas_err err = run_grad(tr, x, y, rows, 1, loss, acc_sum, errstr, errstr_size);
    if (!err) {
        double t1 = tr->prof ? maas_mono_s() : 0.0;
        apply_update(tr);
        if (tr->prof) {
            double t2 = maas_mono_s();
            tr->prof->update_s += t2 - t1;
            tr->prof->step_s += t2 - t0;
            tr->prof->steps++;
        }
    }
    maas__fpenv_restore(&fp);
    return err;
}

maas_err maas_trainer_gradient(maas_trainer *tr, const float *x, const float *y, int rows,
                               double *loss, const float **grad, char *errstr, size_t errstr_size) {
    maas_err err = run_grad(tr, x, y, rows, 0, loss, NULL, errstr, errstr_size);
    if (err) return err;
    *grad = tr->grad;
    return MAAS_OK;
}

maas_err maas_trainer_loss(maas_trainer *tr, const float *x, const float *y, int rows, double *loss,
                           double *acc_sum, char *errstr, size_t errstr_size) {
    maas_err err = check_rows(tr, rows, errstr, errstr_size);
    if (err) return err;
    const float *out = forward(tr, x, rows, PASS_EVAL);
    int last = tr->m->n_layers - 1;
    const float *z = tr->m->layers[last].spec.kind == MAAS_LAYER_DENSE ? tr->z[last] : NULL;
    if (loss) *loss = loss_and_grad(tr, out, z, y, rows, NULL);
    if (acc_sum) *acc_sum = accuracy_sum(tr, out, y, rows);
    return MAAS_OK;
}

void maas__trainer_loss_of_outputs(maas_trainer *tr, const float *out, const float *y, int rows,
                                   double *loss, double *acc_sum) {
    int fused = tr->fused;
    tr->fused = 0; /* no logits here: the loss of the probabilities, clipped as Keras does */
    *loss = loss_and_grad(tr, out, NULL, y, rows, NULL);
    tr->fused = fused;
    *acc_sum = accuracy_sum(tr, out, y, rows);
}

maas_err maas__trainer_create_eval(maas_trainer **out, const maas_model *m, const maas_compile *c,
                                   int batch, char *errstr, size_t errstr_size) {
    /* The trainer never writes the model when it does not step. */
    maas_err code = MAAS_OK;
    *out = trainer_new((maas_model *)m, c, batch, NULL, 0, &code, errstr, errstr_size);
    return *out ? MAAS_OK : code;
}

int maas__trainer_set_isa(maas_trainer *tr, int isa) {
    int best = update_isa();
    tr->isa = isa < 0 ? 0 : isa > best ? best : isa;
    return tr->isa;
}

int maas__trainer_batch(const maas_trainer *tr) {
    return tr->batch;
}
