/* Attributions of a model's outputs to its input features (explain.h): a double-precision
 * forward pass that keeps every layer's pre- and post-activation values, then one backward
 * pass per output. */
#include "maas/base.h"
#include "maas/explain.h"

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

/* Per-call working memory: every Dense layer's z and y and its kernel transposed (in double),
 * the input, two gradient rows. */
typedef struct {
    double *h0;                  /* n_inputs: the standardized input */
    double *z[MAAS_MAX_LAYERS];  /* Dense layers: n_out pre-activations; else NULL */
    double *y[MAAS_MAX_LAYERS];  /* Dense layers: n_out outputs; Dropout: its input */
    double *wt[MAAS_MAX_LAYERS]; /* Dense layers: n_out x n_in, the kernel transposed */
    double *g[2];                /* widest layer */
    double *block;
} work;

static int work_init(work *w, const maas_model *m) {
    size_t cells = (size_t)m->n_inputs, widest = (size_t)m->n_inputs;
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        size_t n = (size_t)l->n_out;
        cells += 2 * n + (l->spec.kind == MAAS_LAYER_DENSE ? (size_t)l->n_in * n : 0);
        widest = n > widest ? n : widest;
    }
    memset(w, 0, sizeof(*w));
    if (!(w->block = malloc((cells + 2 * widest) * sizeof(double)))) return 0;
    double *p = w->block;
    w->h0 = p, p += m->n_inputs;
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        w->z[i] = p, p += l->n_out;
        w->y[i] = p, p += l->n_out;
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

/* The double forward pass at raw input x, keeping every layer's values; returns the output. */
static const double *forward(const maas_model *m, const double *x, work *w) {
    for (int i = 0; i < m->n_inputs; i++)
        w->h0[i] = m->feat_mean ? (x[i] - m->feat_mean[i]) / m->feat_std[i] : x[i];
    const double *h = w->h0;
    for (int li = 0; li < m->n_layers; li++) {
        const maas_layer *l = &m->layers[li];
        if (l->spec.kind != MAAS_LAYER_DENSE) { /* Dropout: identity in inference */
            memcpy(w->y[li], h, (size_t)l->n_out * sizeof(double));
            h = w->y[li];
            continue;
        }
        const float *W = m->params + l->w_off;
        const float *b = l->spec.use_bias ? m->params + l->b_off : NULL;
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
        if (l->spec.kind != MAAS_LAYER_DENSE) continue; /* identity: g passes */
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
        double *t = g;
        g = gp, gp = t;
    }
    for (int i = 0; i < m->n_inputs; i++) grad[i] = m->feat_mean ? g[i] / m->feat_std[i] : g[i];
}

maas_err maas_explain_gradient(const maas_model *m, const double *x, double *grad, char *errstr,
                               size_t errstr_size) {
    maas_err err = maas_model_check_mlp(m, "explanations", errstr, errstr_size);
    if (err) return err;
    work w;
    if (!work_init(&w, m))
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    forward(m, x, &w);
    for (int j = 0; j < m->n_outputs; j++) backward(m, j, &w, grad + (size_t)j * m->n_inputs);
    free(w.block);
    return MAAS_OK;
}

double maas_explain_flops(const maas_model *m, maas_explain_method method, int steps) {
    double weights = 0;
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].spec.kind == MAAS_LAYER_DENSE)
            weights += (double)m->layers[i].n_in * m->layers[i].n_out;
    double points = method == MAAS_EXPLAIN_INTEGRATED_GRADIENTS ? steps : 1;
    return points * 2.0 * weights * (1.0 + m->n_outputs);
}

maas_err maas_explain(const maas_model *m, maas_explain_method method, int steps,
                      const float *baseline, const float *x, size_t rows, float *attr, char *errstr,
                      size_t errstr_size) {
    int ig = method == MAAS_EXPLAIN_INTEGRATED_GRADIENTS;
    maas_err merr = maas_model_check_mlp(m, "explanations", errstr, errstr_size);
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
    free(w.block);
    free(xd);
    free(pt);
    free(grad);
    free(sum);
    return err;
}
