/*
 * Explanations (maas/explain.h): gradients against central finite differences of an
 * independent double forward pass (fpbound.h) on smooth models, against the chain rule written
 * out for the seed model's shape (relu), integrated gradients' completeness on the seed and
 * Fashion shapes, gradient x input on a linear layer, quantized models explained on their
 * dequantized weights, and the refusals.
 */
#include "testutil.h"

#include "fpbound.h"
#include "maas/cost.h"
#include "maas/explain.h"
#include "maas/quant.h"

/* f(x) in double for one raw float row, by fpbound's forward pass (independent of explain.c). */
static void exact_outputs(const maas_model *m, const float *x, double *out) {
    double bound[64];
    assert_true(m->n_outputs <= 64);
    assert_int_equal(maas_test_forward_bound(m, x, 1, out, bound), 0);
}

static void standardize(maas_model *m, uint64_t seed) {
    char err[MAAS_ERRSTR_SIZE];
    float *mean = maas_test_random_inputs((size_t)m->n_inputs, seed, -0.5f, 0.5f);
    float *std = maas_test_random_inputs((size_t)m->n_inputs, seed + 1, 0.5f, 2.0f);
    assert_ok(maas_model_set_standardization(m, mean, std, err, sizeof(err)), err);
    free(mean);
    free(std);
}

/*
 * Smooth activations: the gradient against (f(x + h) - f(x - h)) / (2h) per feature, h = 2^-12
 * (the step taken as the float inputs actually differ). Central differences are off by
 * h^2/6 |f'''| (~1e-8 here) plus rounding of order 1e-16 / h: the check allows 1e-5 of the
 * gradient's scale.
 */
static void test_gradient_vs_finite_differences(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    maas_layer_spec l[] = {maas_dense(12, MAAS_ACT_TANH), maas_dropout(0.3f),
                           maas_dense(9, MAAS_ACT_GELU), maas_dense(7, MAAS_ACT_ELU),
                           maas_dense(4, MAAS_ACT_SOFTMAX)};
    maas_model *m = maas_test_random_model(6, l, 5, 11);
    standardize(m, 12);
    float *x = maas_test_random_inputs(6 * 3, 13, -1.5f, 1.5f);
    double grad[4 * 6], xd[6], fp[4], fm[4];
    for (int r = 0; r < 3; r++) {
        for (int i = 0; i < 6; i++) xd[i] = x[r * 6 + i];
        assert_ok(maas_explain_gradient(m, xd, grad, err, sizeof(err)), err);
        double scale = 0.0;
        for (int k = 0; k < 24; k++) scale = fmax(scale, fabs(grad[k]));
        assert_true(scale > 0.0);
        for (int i = 0; i < 6; i++) {
            float xp[6], xm[6];
            memcpy(xp, x + r * 6, sizeof(xp));
            memcpy(xm, x + r * 6, sizeof(xm));
            xp[i] += 1.0f / 4096;
            xm[i] -= 1.0f / 4096;
            exact_outputs(m, xp, fp);
            exact_outputs(m, xm, fm);
            for (int j = 0; j < 4; j++) {
                double fd = (fp[j] - fm[j]) / ((double)xp[i] - (double)xm[i]);
                if (fabs(fd - grad[j * 6 + i]) > 1e-5 * scale)
                    fail_msg("row %d, output %d, feature %d: gradient %.9g, finite difference "
                             "%.9g",
                             r, j, i, grad[j * 6 + i], fd);
            }
        }
    }
    free(x);
    maas_model_free(m);
}

/* The seed model's shape (relu, then sigmoid), its gradient by the chain rule written out. */
static void test_gradient_relu_chain_rule(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    maas_layer_spec l[] = {maas_dense(10, MAAS_ACT_RELU), maas_dense(1, MAAS_ACT_SIGMOID)};
    maas_model *m = maas_test_random_model(8, l, 2, 21);
    standardize(m, 22);
    const float *W1 = m->params + m->layers[0].w_off, *b1 = m->params + m->layers[0].b_off;
    const float *W2 = m->params + m->layers[1].w_off, *b2 = m->params + m->layers[1].b_off;
    float *x = maas_test_random_inputs(8 * 20, 23, -2.0f, 2.0f);
    int active = 0;
    for (int r = 0; r < 20; r++) {
        double h[8], z1[10], z2 = b2[0], xd[8], grad[8];
        for (int i = 0; i < 8; i++) {
            xd[i] = x[r * 8 + i];
            h[i] = (xd[i] - m->feat_mean[i]) / m->feat_std[i];
        }
        for (int k = 0; k < 10; k++) {
            z1[k] = b1[k];
            for (int i = 0; i < 8; i++) z1[k] += h[i] * W1[i * 10 + k];
            z2 += (z1[k] > 0 ? z1[k] : 0.0) * W2[k];
            active += z1[k] > 0;
        }
        double s = 1.0 / (1.0 + exp(-z2));
        assert_ok(maas_explain_gradient(m, xd, grad, err, sizeof(err)), err);
        for (int i = 0; i < 8; i++) {
            double want = 0.0;
            for (int k = 0; k < 10; k++)
                if (z1[k] > 0) want += (double)W1[i * 10 + k] * W2[k];
            want *= s * (1.0 - s) / m->feat_std[i];
            if (!(fabs(grad[i] - want) <= 1e-12 * (fabs(want) + 1e-6)))
                fail_msg("row %d, feature %d: gradient %.17g, chain rule %.17g", r, i, grad[i],
                         want);
        }
    }
    assert_true(active > 0 && active < 200); /* both sides of the kink were visited */
    free(x);
    maas_model_free(m);
}

/* sum_i a_ij vs f_j(x) - f_j(b), relative to |f(x) - f(b)| (plus a floor for tiny changes). */
static double completeness_gap(const maas_model *m, const float *x, const float *base,
                               const float *attr) {
    double fx[16], fb[16], worst = 0.0;
    float zeros[1024] = {0};
    assert_true(m->n_outputs <= 16 && m->n_inputs <= 1024);
    exact_outputs(m, x, fx);
    exact_outputs(m, base ? base : zeros, fb);
    for (int j = 0; j < m->n_outputs; j++) {
        double s = 0.0;
        for (int i = 0; i < m->n_inputs; i++) s += attr[j * m->n_inputs + i];
        worst = fmax(worst, fabs(s - (fx[j] - fb[j])) / (fabs(fx[j] - fb[j]) + 1e-3));
    }
    return worst;
}

/*
 * Integrated gradients are complete up to the midpoint rule's error: within 1% of the change
 * f(x) - f(b) at 256 steps on relu networks (the seed and Fashion shapes; the rule is exact on
 * every linear piece, so the error comes from the few steps where a unit switches), and the
 * gap at 1024 steps is below the gap at 16.
 */
static void test_integrated_gradients_complete(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    maas_layer_spec seed[] = {maas_dense(10, MAAS_ACT_RELU), maas_dense(1, MAAS_ACT_SIGMOID)};
    maas_layer_spec fashion[] = {maas_dense(64, MAAS_ACT_RELU), maas_dense(32, MAAS_ACT_RELU),
                                 maas_dense(10, MAAS_ACT_SOFTMAX)};
    struct {
        int n_in;
        const maas_layer_spec *l;
        int n;
    } cases[] = {{8, seed, 2}, {196, fashion, 3}};
    for (size_t c = 0; c < MAAS_ARRAY_LEN(cases); c++) {
        maas_model *m = maas_test_random_model(cases[c].n_in, cases[c].l, cases[c].n, 31 + c);
        if (c == 0) standardize(m, 33);
        int n = m->n_inputs, no = m->n_outputs;
        float *x = maas_test_random_inputs((size_t)n * 2, 34 + c, 0.0f, 1.0f);
        float *base = maas_test_random_inputs((size_t)n, 36 + c, 0.0f, 0.2f);
        float *attr = malloc((size_t)no * n * 2 * sizeof(float));
        assert_ok(maas_explain(m, MAAS_EXPLAIN_INTEGRATED_GRADIENTS, 256, base, x, 2, attr, err,
                               sizeof(err)),
                  err);
        for (int r = 0; r < 2; r++) {
            double gap = completeness_gap(m, x + (size_t)r * n, base, attr + (size_t)r * no * n);
            print_message("case %zu row %d: completeness gap %.2e of the change\n", c, r, gap);
            assert_true(gap <= 0.01);
        }
        double g16, g1024;
        assert_ok(maas_explain(m, MAAS_EXPLAIN_INTEGRATED_GRADIENTS, 16, NULL, x, 1, attr, err,
                               sizeof(err)),
                  err);
        g16 = completeness_gap(m, x, NULL, attr);
        assert_ok(maas_explain(m, MAAS_EXPLAIN_INTEGRATED_GRADIENTS, 1024, NULL, x, 1, attr, err,
                               sizeof(err)),
                  err);
        g1024 = completeness_gap(m, x, NULL, attr);
        print_message("case %zu: gap %.2e at 16 steps, %.2e at 1024\n", c, g16, g1024);
        assert_true(g1024 <= g16 && g1024 <= 0.01);
        free(x);
        free(base);
        free(attr);
        maas_model_free(m);
    }
}

/* A linear layer: gradient x input is x_i * W[i][j], whatever the bias. */
static void test_gradient_x_input_linear(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    maas_layer_spec l[] = {maas_dense(3, MAAS_ACT_LINEAR)};
    maas_model *m = maas_test_random_model(5, l, 1, 41);
    float *x = maas_test_random_inputs(5 * 4, 42, -3.0f, 3.0f), attr[4 * 3 * 5];
    assert_ok(maas_explain(m, MAAS_EXPLAIN_GRADIENT_X_INPUT, 0, NULL, x, 4, attr, err, sizeof(err)),
              err);
    const float *W = m->params + m->layers[0].w_off;
    for (int r = 0; r < 4; r++)
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < 5; i++)
                assert_true(attr[(r * 3 + j) * 5 + i] ==
                            (float)((double)x[r * 5 + i] * W[i * 3 + j]));
    free(x);
    maas_model_free(m);
}

/* int8 and bf16 models are explained on their dequantized weights: as their float twins. */
static void test_quantized_models(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    maas_layer_spec l[] = {maas_dense(16, MAAS_ACT_RELU), maas_dense(3, MAAS_ACT_SOFTMAX)};
    for (int kind = 0; kind < 2; kind++) {
        maas_model *q = maas_test_random_model(7, l, 2, 51);
        assert_ok(kind ? maas_quantize_bf16(q, err, sizeof(err))
                       : maas_quantize(q, err, sizeof(err)),
                  err);
        maas_model *f = maas_model_clone(q, err, sizeof(err));
        assert_non_null(f);
        maas_model_dequantize(f);
        float *x = maas_test_random_inputs(7 * 2, 52, -1.0f, 1.0f), a[2 * 3 * 7], b[2 * 3 * 7];
        assert_ok(
            maas_explain(q, MAAS_EXPLAIN_INTEGRATED_GRADIENTS, 32, NULL, x, 2, a, err, sizeof(err)),
            err);
        assert_ok(
            maas_explain(f, MAAS_EXPLAIN_INTEGRATED_GRADIENTS, 32, NULL, x, 2, b, err, sizeof(err)),
            err);
        assert_memory_equal(a, b, sizeof(a));
        free(x);
        maas_model_free(f);
        maas_model_free(q);
    }
}

static void test_refusals(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    maas_layer_spec l[] = {maas_dense(2, MAAS_ACT_RELU), maas_dense(1, MAAS_ACT_SIGMOID)};
    maas_model *m = maas_test_random_model(3, l, 2, 61);
    float x[6] = {1, 2, 3, 4, 5, 6}, a[6], base[3] = {0, NAN, 0};
    maas_explain_method meth;
    assert_ok(maas_explain_parse("integrated_gradients", &meth, err, sizeof(err)), err);
    assert_int_equal(meth, MAAS_EXPLAIN_INTEGRATED_GRADIENTS);
    assert_string_equal(maas_explain_name(MAAS_EXPLAIN_GRADIENT_X_INPUT), "gradient_x_input");
    assert_err(MAAS_ERR_UNKNOWN_NAME, maas_explain_parse("shap", &meth, err, sizeof(err)), err);
    assert_mentions(err, "gradient_x_input, integrated_gradients");
    assert_err(
        MAAS_ERR_INVALID_ARGUMENT,
        maas_explain(m, MAAS_EXPLAIN_INTEGRATED_GRADIENTS, 0, NULL, x, 2, a, err, sizeof(err)),
        err);
    assert_mentions(err, "steps");
    assert_err(MAAS_ERR_INVALID_ARGUMENT,
               maas_explain(m, MAAS_EXPLAIN_INTEGRATED_GRADIENTS, MAAS_EXPLAIN_MAX_STEPS + 1, NULL,
                            x, 2, a, err, sizeof(err)),
               err);
    assert_err(
        MAAS_ERR_NON_FINITE,
        maas_explain(m, MAAS_EXPLAIN_INTEGRATED_GRADIENTS, 8, base, x, 2, a, err, sizeof(err)),
        err);
    assert_mentions(err, "baseline column 1");
    x[4] = INFINITY;
    assert_err(MAAS_ERR_NON_FINITE,
               maas_explain(m, MAAS_EXPLAIN_GRADIENT_X_INPUT, 0, NULL, x, 2, a, err, sizeof(err)),
               err);
    assert_mentions(err, "row 1, column 1");
    maas_model_free(m);
}

/*
 * CNNs: convolutions (same/strided), BatchNormalization, pooling. A model without
 * nonlinearities is linear, so central differences of its float predictions with a unit step
 * are its gradient up to float32 rounding: each entry within 1e-4 of the largest (a transposed
 * kernel, a misrouted window or a wrong BatchNormalization scale is off by far more). With
 * relu, max pooling, GlobalAveragePooling and softmax, integrated gradients stay complete
 * (within 1% of f(x) - f(b) at 256 steps, f the float model) and gradient x input is x times
 * the gradient.
 */
static void test_cnn_models(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    const char *linear = "reshape:6x6x2,conv2d:3:3x3:same,batchnorm,avgpool:2x2:s1x1:same,"
                         "conv2d:4:2x2:s2x2,maxpool:1x1,flatten,2";
    maas_model *m = maas_test_layers_model(linear, 72, 31);
    int n = m->n_inputs, no = m->n_outputs;
    float *x = maas_test_random_inputs((size_t)n, 32, -1.0f, 1.0f);
    double *xd = malloc((size_t)n * sizeof(double)), *g = malloc((size_t)no * n * sizeof(double));
    for (int i = 0; i < n; i++) xd[i] = x[i];
    assert_ok(maas_explain_gradient(m, xd, g, err, sizeof(err)), err);
    double scale = 0.0, worst = 0.0;
    for (int k = 0; k < no * n; k++) scale = fmax(scale, fabs(g[k]));
    float *xp = malloc((size_t)n * sizeof(float)), yp[2], ym[2];
    for (int i = 0; i < n; i++) {
        memcpy(xp, x, (size_t)n * sizeof(float));
        xp[i] = x[i] + 0.5f;
        assert_ok(maas_model_predict(m, xp, 1, yp, err, sizeof(err)), err);
        xp[i] = x[i] - 0.5f;
        assert_ok(maas_model_predict(m, xp, 1, ym, err, sizeof(err)), err);
        for (int j = 0; j < no; j++)
            worst = fmax(worst, fabs(((double)yp[j] - ym[j]) - g[(size_t)j * n + i]));
    }
    print_message("linear CNN: gradient within %.2e of its largest entry %.3g\n", worst / scale,
                  scale);
    assert_true(scale > 0.0 && worst <= 1e-4 * scale);
    maas_model_free(m);

    const char *relu = "reshape:6x6x2,conv2d:4:3x3:relu:same,batchnorm,maxpool:2x2,"
                       "conv2d:5:2x2:relu,gap2d,3:softmax";
    m = maas_test_layers_model(relu, 72, 33);
    no = m->n_outputs;
    float *attr = malloc((size_t)no * n * sizeof(float)), fx[3], fb[3], base[72] = {0};
    double *gr = malloc((size_t)no * n * sizeof(double));
    assert_ok(
        maas_explain(m, MAAS_EXPLAIN_INTEGRATED_GRADIENTS, 256, NULL, x, 1, attr, err, sizeof(err)),
        err);
    assert_ok(maas_model_predict(m, x, 1, fx, err, sizeof(err)), err);
    assert_ok(maas_model_predict(m, base, 1, fb, err, sizeof(err)), err);
    double gap = 0.0;
    for (int j = 0; j < no; j++) {
        double sum = 0.0;
        for (int i = 0; i < n; i++) sum += attr[j * n + i];
        gap = fmax(gap, fabs(sum - ((double)fx[j] - fb[j])) / (fabs((double)fx[j] - fb[j]) + 1e-3));
    }
    print_message("relu CNN: integrated gradients complete within %.2e of the change\n", gap);
    assert_true(gap <= 0.01);
    assert_ok(maas_explain(m, MAAS_EXPLAIN_GRADIENT_X_INPUT, 0, NULL, x, 1, attr, err, sizeof(err)),
              err);
    for (int i = 0; i < n; i++) xd[i] = x[i];
    assert_ok(maas_explain_gradient(m, xd, gr, err, sizeof(err)), err);
    for (int k = 0; k < no * n; k++) {
        float want = (float)(xd[k % n] * gr[k]) + 0.0f;
        assert_memory_equal(&attr[k], &want, sizeof(float));
    }
    assert_true(maas_explain_flops(m, MAAS_EXPLAIN_INTEGRATED_GRADIENTS, 256) ==
                256.0 * maas_flops_forward(m) * (1 + no));
    maas_model_free(m);
    free(x);
    free(xd);
    free(g);
    free(gr);
    free(xp);
    free(attr);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradient_vs_finite_differences),
        cmocka_unit_test(test_gradient_relu_chain_rule),
        cmocka_unit_test(test_integrated_gradients_complete),
        cmocka_unit_test(test_gradient_x_input_linear),
        cmocka_unit_test(test_quantized_models),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_cnn_models),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
