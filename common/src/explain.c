/* Attributions of a model's outputs to its input features (explain.h): a double-precision
 * forward pass that keeps every layer's pre- and post-activation values, then one backward
 * pass per output. */
#include "maas/base.h"
#include "maas/cost.h"
#include "maas/explain.h"
#include "layers_internal.h"

static const char *const method_names[] = {
    [MAAS_EXPLAIN_GRADIENT_X_INPUT] = "gradient_x_input",
    [MAAS_EXPLAIN_INTEGRATED_GRADIENTS] = "integrated_gradients",
};

const char *maas_explain_name(maas_explain_method m) {
    return (size_t)m < MAAS_ARRAY_LEN(method_names) ? method_names[m] : "?";
}

maas_err maas_explain_parse(const char *name, maas_explain_method *out, char *errstr,
                            size_t errstr_size) {
    for (size_t i = 0; i < MAAS_ARRAY_LEN(method_names); i++)
        if (name && !strcmp(name, method_names[i])) {
            *out = (maas_explain_method)i;
            return MAAS_OK;
        }
    return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                     "unknown explanation '%s' (known: gradient_x_input, integrated_gradients)",
                     name ? name : "(null)");
}

/* y = act(z) over n values, in double, as act.c computes it in float. */
static void act_forward(maas_act act, double alpha, const double *z, double *y, int n) {
    if (act == MAAS_ACT_SOFTMAX) {
        double mx = z[0], sum = 0.0;
        for (int k = 1; k < n; k++) mx = z[k] > mx ? z[k] : mx;
        for (int k = 0; k < n; k++) sum += (y[k] = exp(z[k] - mx));
        for (int k = 0; k < n; k++) y[k] /= sum;
        return;
    }
    for (int k = 0; k < n; k++) {
        double v = z[k];
        switch (act) {
        case MAAS_ACT_RELU:
            y[k] = v > 0.0 ? v : 0.0;
            break;
        case MAAS_ACT_SIGMOID:
            y[k] = 1.0 / (1.0 + exp(-v));
            break;
        case MAAS_ACT_TANH:
            y[k] = tanh(v);
            break;
        case MAAS_ACT_LEAKY_RELU:
            y[k] = v > 0.0 ? v : alpha * v;
            break;
        case MAAS_ACT_ELU:
            y[k] = v > 0.0 ? v : alpha * expm1(v);
            break;
        case MAAS_ACT_GELU:
            y[k] = 0.5 * v * (1.0 + erf(v * M_SQRT1_2));
            break;
        default:
            y[k] = v;
        }
    }
}

/* g (dL/dy) -> dL/dz in place, for y = act(z). */
static void act_backward(maas_act act, double alpha, const double *z, const double *y, double *g,
                         int n) {
    if (act == MAAS_ACT_SOFTMAX) {
        double dot = 0.0;
        for (int k = 0; k < n; k++) dot += g[k] * y[k];
        for (int k = 0; k < n; k++) g[k] = y[k] * (g[k] - dot);
        return;
    }
    for (int k = 0; k < n; k++) {
        double v = z[k], d;
        switch (act) {
        case MAAS_ACT_RELU:
            d = v > 0.0 ? 1.0 : 0.0;
            break;
        case MAAS_ACT_SIGMOID:
            d = y[k] * (1.0 - y[k]);
            break;
        case MAAS_ACT_TANH:
            d = 1.0 - y[k] * y[k];
            break;
        case MAAS_ACT_LEAKY_RELU:
            d = v > 0.0 ? 1.0 : alpha;
            break;
        case MAAS_ACT_ELU:
            d = v > 0.0 ? 1.0 : alpha * exp(v);
            break;
        case MAAS_ACT_GELU:
            d = 0.5 * (1.0 + erf(v * M_SQRT1_2)) + v * exp(-0.5 * v * v) / sqrt(2.0 * M_PI);
            break;
        default:
            d = 1.0;
        }
        g[k] *= d;
    }
}

/* Per-call working memory: every layer's z and y, Dense kernels transposed (in double), max
 * pooling's argmax, the input, two gradient rows. */
typedef struct {
    double *h0;                    /* n_inputs: the standardized input */
    double *z[MAAS_MAX_LAYERS];    /* n_out pre-activations (Dense, convolutions) */
    double *y[MAAS_MAX_LAYERS];    /* n_out outputs; identity layers: their input */
    double *wt[MAAS_MAX_LAYERS];   /* Dense layers: n_out x n_in, the kernel transposed */
    int32_t *arg[MAAS_MAX_LAYERS]; /* max pooling: each output's input index */
    double *g[2];                  /* widest layer */
    double *block;
    int32_t *args;
} work;

/* What explanations take: every layer but Embedding (whose inputs are indices, not values a
 * gradient moves). */
static maas_err explainable(const maas_model *m, char *errstr, size_t errstr_size) {
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].spec.kind == MAAS_LAYER_EMBEDDING)
            return maas_errf(errstr, errstr_size, MAAS_ERR_UNSUPPORTED,
                             "explanations need inputs a gradient can move; layer '%s' is an "
                             "Embedding (its inputs are indices)",
                             m->layers[i].spec.name);
    return MAAS_OK;
}

static int work_init(work *w, const maas_model *m) {
    size_t cells = (size_t)m->n_inputs, widest = (size_t)m->n_inputs, args = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        size_t n = (size_t)l->n_out;
        cells += 2 * n + (l->spec.kind == MAAS_LAYER_DENSE ? (size_t)l->n_in * n : 0);
        widest = n > widest ? n : widest;
        args += l->spec.kind == MAAS_LAYER_MAXPOOL ? n : 0;
    }
    memset(w, 0, sizeof(*w));
    if (!(w->block = malloc((cells + 2 * widest) * sizeof(double)))) return 0;
    if (!(w->args = malloc((args ? args : 1) * sizeof(int32_t)))) {
        free(w->block);
        return 0;
    }
    double *p = w->block;
    int32_t *ap = w->args;
    w->h0 = p, p += m->n_inputs;
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        w->z[i] = p, p += l->n_out;
        w->y[i] = p, p += l->n_out;
        if (l->spec.kind == MAAS_LAYER_MAXPOOL) w->arg[i] = ap, ap += l->n_out;
        if (l->spec.kind != MAAS_LAYER_DENSE) continue;
        w->wt[i] = p, p += (size_t)l->n_in * l->n_out;
        const float *W = m->params + l->w_off;
        for (int a = 0; a < l->n_in; a++)
            for (int k = 0; k < l->n_out; k++)
                w->wt[i][(size_t)k * l->n_in + a] = W[(size_t)a * l->n_out + k];
    }
    w->g[0] = p, p += widest;
    w->g[1] = p;
    return 1;
}

static void work_free(work *w) {
    free(w->block);
    free(w->args);
    w->block = NULL;
    w->args = NULL;
}

/* Input index of output position (oy, ox)'s window cell (ky, kx), channel 0, or -1 over the
 * padding. */
static long window_cell(const maas_conv_geom *g, int oy, int ox, int ky, int kx) {
    int iy = oy * g->sh + ky - g->pt, ix = ox * g->sw + kx - g->pl;
    if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w) return -1;
    return ((long)iy * g->w + ix) * g->c;
}

/*
 * A convolution in double: z = conv(h) + bias when gp is NULL; else its input gradient,
 * gp (h's size) += the transpose applied to g (z's size).
 */
static void conv_pass(const maas_layer *l, const float *W, const float *b, const double *h,
                      double *z, const double *g, double *gp) {
    const maas_conv_geom *cg = &l->geom;
    int f = cg->f, c = cg->c;
    for (int oy = 0; oy < cg->oh; oy++)
        for (int ox = 0; ox < cg->ow; ox++) {
            size_t o = ((size_t)oy * cg->ow + ox) * f;
            if (!gp)
                for (int j = 0; j < f; j++) z[o + j] = b ? b[j] : 0.0;
            for (int ky = 0; ky < cg->kh; ky++)
                for (int kx = 0; kx < cg->kw; kx++) {
                    long at = window_cell(cg, oy, ox, ky, kx);
                    if (at < 0) continue;
                    const float *wk = W + ((size_t)ky * cg->kw + kx) * c * f;
                    for (int ci = 0; ci < c; ci++, wk += f) {
                        if (!gp) {
                            double hi = h[at + ci];
                            for (int j = 0; j < f; j++) z[o + j] += hi * wk[j];
                        } else {
                            double acc = 0.0;
                            for (int j = 0; j < f; j++) acc += g[o + j] * wk[j];
                            gp[at + ci] += acc;
                        }
                    }
                }
        }
}

/* Pooling in double: max (each output's first maximum, its index kept in arg) or the mean
 * of the cells inside (padding not counted; GlobalAveragePooling is the whole input). When gp
 * is set, routes g (outputs) back into gp (inputs) instead. */
static void pool_pass(const maas_layer *l, const double *h, double *y, int32_t *arg,
                      const double *g, double *gp) {
    const maas_conv_geom *cg = &l->geom;
    int c = cg->c, is_max = l->spec.kind == MAAS_LAYER_MAXPOOL;
    for (int oy = 0; oy < cg->oh; oy++)
        for (int ox = 0; ox < cg->ow; ox++) {
            size_t o = ((size_t)oy * cg->ow + ox) * c;
            int count = 0;
            for (int ky = 0; ky < cg->kh; ky++)
                for (int kx = 0; kx < cg->kw; kx++) count += window_cell(cg, oy, ox, ky, kx) >= 0;
            for (int ci = 0; ci < c; ci++) {
                if (gp && is_max) {
                    gp[arg[o + ci]] += g[o + ci];
                    continue;
                }
                double acc = 0.0;
                long best = -1;
                for (int ky = 0; ky < cg->kh; ky++)
                    for (int kx = 0; kx < cg->kw; kx++) {
                        long at = window_cell(cg, oy, ox, ky, kx);
                        if (at < 0) continue;
                        if (gp)
                            gp[at + ci] += g[o + ci] / count;
                        else if (!is_max)
                            acc += h[at + ci];
                        else if (best < 0 || h[at + ci] > h[best])
                            best = at + ci;
                    }
                if (gp) continue;
                if (is_max) {
                    y[o + ci] = h[best];
                    arg[o + ci] = (int32_t)best;
                } else {
                    y[o + ci] = acc / count;
                }
            }
        }
}

/* BatchNormalization at inference, per channel (channels last): y = (h - mean) * a + beta with
 * a = gamma / sqrt(var + epsilon), kept in scale (c) for the backward pass (g * a). */
static void bn_forward(const maas_model *m, const maas_layer *l, const double *h, double *scale,
                       double *y) {
    maas_bn_params bp = maas__layer_bn_params(l, m->params);
    const float *mean = m->params + maas__layer_weight(l, "moving_mean")->off;
    const float *var = m->params + maas__layer_weight(l, "moving_variance")->off;
    for (int k = 0; k < bp.c; k++)
        scale[k] = (bp.gamma ? bp.gamma[k] : 1.0) / sqrt((double)var[k] + (double)bp.epsilon);
    for (int i = 0; i < l->n_out; i++) {
        int k = i % bp.c;
        y[i] = (h[i] - mean[k]) * scale[k] + (bp.beta ? bp.beta[k] : 0.0);
    }
}

/* The double forward pass at raw input x, keeping every layer's values; returns the output. */
static const double *forward(const maas_model *m, const double *x, work *w) {
    for (int i = 0; i < m->n_inputs; i++)
        w->h0[i] = m->feat_mean ? (x[i] - m->feat_mean[i]) / m->feat_std[i] : x[i];
    const double *h = w->h0;
    for (int li = 0; li < m->n_layers; li++) {
        const maas_layer *l = &m->layers[li];
        const float *b = l->spec.use_bias ? m->params + l->b_off : NULL;
        switch (l->spec.kind) {
        case MAAS_LAYER_CONV:
            conv_pass(l, m->params + l->w_off, b, h, w->z[li], NULL, NULL);
            for (int p = 0; p < l->n_out; p += l->geom.f) /* per position (softmax's axis) */
                act_forward(l->spec.act, maas_act_alpha(&l->spec), w->z[li] + p, w->y[li] + p,
                            l->geom.f);
            h = w->y[li];
            continue;
        case MAAS_LAYER_MAXPOOL:
        case MAAS_LAYER_AVGPOOL:
        case MAAS_LAYER_GAP:
            pool_pass(l, h, w->y[li], w->arg[li], NULL, NULL);
            h = w->y[li];
            continue;
        case MAAS_LAYER_BATCHNORM: /* z (n_out >= c) keeps the per-channel scale */
            bn_forward(m, l, h, w->z[li], w->y[li]);
            h = w->y[li];
            continue;
        case MAAS_LAYER_DENSE:
            break;
        default: /* Dropout, Flatten, Reshape: identity in inference */
            memcpy(w->y[li], h, (size_t)l->n_out * sizeof(double));
            h = w->y[li];
            continue;
        }
        const float *W = m->params + l->w_off;
        for (int j = 0; j < l->n_out; j++) w->z[li][j] = b ? b[j] : 0.0;
        for (int i = 0; i < l->n_in; i++) {
            double hi = h[i];
            if (hi == 0.0) continue;
            const float *row = W + (size_t)i * l->n_out;
            for (int j = 0; j < l->n_out; j++) w->z[li][j] += hi * row[j];
        }
        act_forward(l->spec.act, maas_act_alpha(&l->spec), w->z[li], w->y[li], l->n_out);
        h = w->y[li];
    }
    return h;
}

/* d f_out / d x (raw features) into grad (n_inputs), after forward() at the same x. */
static void backward(const maas_model *m, int out, work *w, double *grad) {
    const maas_layer *last = &m->layers[m->n_layers - 1];
    double *g = w->g[0], *gp = w->g[1];
    for (int k = 0; k < last->n_out; k++) g[k] = k == out ? 1.0 : 0.0;
    for (int li = m->n_layers - 1; li >= 0; li--) {
        const maas_layer *l = &m->layers[li];
        double *t;
        switch (l->spec.kind) {
        case MAAS_LAYER_CONV:
            for (int p = 0; p < l->n_out; p += l->geom.f)
                act_backward(l->spec.act, maas_act_alpha(&l->spec), w->z[li] + p, w->y[li] + p,
                             g + p, l->geom.f);
            memset(gp, 0, (size_t)l->n_in * sizeof(double));
            conv_pass(l, m->params + l->w_off, NULL, NULL, NULL, g, gp);
            t = g, g = gp, gp = t;
            continue;
        case MAAS_LAYER_MAXPOOL:
        case MAAS_LAYER_AVGPOOL:
        case MAAS_LAYER_GAP:
            memset(gp, 0, (size_t)l->n_in * sizeof(double));
            pool_pass(l, NULL, NULL, w->arg[li], g, gp);
            t = g, g = gp, gp = t;
            continue;
        case MAAS_LAYER_BATCHNORM: { /* z holds the scale since the forward pass */
            int c = l->in.d[l->in.rank - 1];
            for (int i = 0; i < l->n_out; i++) g[i] *= w->z[li][i % c];
            continue;
        }
        case MAAS_LAYER_DENSE:
            break;
        default:
            continue; /* identity: g passes */
        }
        act_backward(l->spec.act, maas_act_alpha(&l->spec), w->z[li], w->y[li], g, l->n_out);
        /* gp = W g as a sum of W's columns (rows of wt), in order: contiguous, and a unit
         * that relu switched off (g[k] = 0) costs nothing */
        for (int i = 0; i < l->n_in; i++) gp[i] = 0.0;
        for (int k = 0; k < l->n_out; k++) {
            double c = g[k];
            if (c == 0.0) continue;
            const double *col = w->wt[li] + (size_t)k * l->n_in;
            for (int i = 0; i < l->n_in; i++) gp[i] += c * col[i];
        }
        t = g, g = gp, gp = t;
    }
    for (int i = 0; i < m->n_inputs; i++) grad[i] = m->feat_mean ? g[i] / m->feat_std[i] : g[i];
}

maas_err maas_explain_gradient(const maas_model *m, const double *x, double *grad, char *errstr,
                               size_t errstr_size) {
    maas_err err = explainable(m, errstr, errstr_size);
    if (err) return err;
    work w;
    if (!work_init(&w, m))
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    forward(m, x, &w);
    for (int j = 0; j < m->n_outputs; j++) backward(m, j, &w, grad + (size_t)j * m->n_inputs);
    work_free(&w);
    return MAAS_OK;
}

double maas_explain_flops(const maas_model *m, maas_explain_method method, int steps) {
    double points = method == MAAS_EXPLAIN_INTEGRATED_GRADIENTS ? steps : 1;
    /* a backward pass per output costs what the forward does: its kernels' multiply-adds */
    return points * maas_flops_forward(m) * (1.0 + m->n_outputs);
}

maas_err maas_explain(const maas_model *m, maas_explain_method method, int steps,
                      const float *baseline, const float *x, size_t rows, float *attr, char *errstr,
                      size_t errstr_size) {
    int ig = method == MAAS_EXPLAIN_INTEGRATED_GRADIENTS;
    maas_err merr = explainable(m, errstr, errstr_size);
    if (merr) return merr;
    if (method != MAAS_EXPLAIN_GRADIENT_X_INPUT && !ig)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "unknown explanation method %d", (int)method);
    if (ig && (steps < 1 || steps > MAAS_EXPLAIN_MAX_STEPS))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "integrated_gradients: steps must be in 1..%d, got %d",
                         MAAS_EXPLAIN_MAX_STEPS, steps);
    size_t n = (size_t)m->n_inputs, no = (size_t)m->n_outputs;
    size_t bad = maas_find_nonfinite(x, rows * n);
    if (bad < rows * n)
        return maas_errf(errstr, errstr_size, MAAS_ERR_NON_FINITE,
                         "input row %zu, column %zu is not finite", bad / n, bad % n);
    if (ig && baseline && (bad = maas_find_nonfinite(baseline, n)) < n)
        return maas_errf(errstr, errstr_size, MAAS_ERR_NON_FINITE,
                         "baseline column %zu is not finite", bad);
    work w;
    double *xd = malloc(n * sizeof(double)), *pt = malloc(n * sizeof(double));
    double *grad = malloc(no * n * sizeof(double)), *sum = malloc(no * n * sizeof(double));
    maas_err err = MAAS_OK;
    if (!xd || !pt || !grad || !sum || !work_init(&w, m)) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
        w.block = NULL;
        w.args = NULL;
        goto done;
    }
    for (size_t r = 0; r < rows; r++) {
        for (size_t i = 0; i < n; i++) xd[i] = x[r * n + i];
        float *a = attr + r * no * n;
        if (!ig) {
            forward(m, xd, &w);
            for (size_t j = 0; j < no; j++) backward(m, (int)j, &w, grad + j * n);
            for (size_t k = 0; k < no * n; k++) /* + 0: a zero feature's share is +0 */
                a[k] = (float)(xd[k % n] * grad[k]) + 0.0f;
            continue;
        }
        memset(sum, 0, no * n * sizeof(double));
        for (int s = 1; s <= steps; s++) {
            double t = (s - 0.5) / steps;
            for (size_t i = 0; i < n; i++) {
                double b = baseline ? baseline[i] : 0.0;
                pt[i] = b + t * (xd[i] - b);
            }
            forward(m, pt, &w);
            for (size_t j = 0; j < no; j++) {
                backward(m, (int)j, &w, grad + j * n);
                for (size_t i = 0; i < n; i++) sum[j * n + i] += grad[j * n + i];
            }
        }
        for (size_t j = 0; j < no; j++)
            for (size_t i = 0; i < n; i++) {
                double b = baseline ? baseline[i] : 0.0;
                a[j * n + i] = (float)((xd[i] - b) * sum[j * n + i] / steps) + 0.0f;
            }
    }
done:
    work_free(&w);
    free(xd);
    free(pt);
    free(grad);
    free(sum);
    return err;
}
