/*
 * Parity with PyTorch: tests/ref/torch_parity.py (run by ctest as the
 * parity_reference fixture) computes, in float64, forward outputs and the
 * weights after one epoch of Keras-style Adam for three models. The bounds
 * follow from float32 arithmetic, not from one machine's output:
 *  - forward (batch and single-row paths): within the running error bound of
 *    fpbound.h (any summation order, any CPU) plus the reference's own
 *    rounding to float32;
 *  - after one epoch: each weight within its tolerance from the reference's
 *    Monte Carlo arithmetic (torch_parity.py: worst-case float32 roundings
 *    injected into every operation), the loss likewise.
 * Mutants (a missing bias, a wrong activation, a weight off by 1%, two
 * weights swapped, a wrong
 * beta_1 or learning rate) must fail the same checks: the bounds are tight.
 */
#include "testutil.h"

#include "fpbound.h"

#ifndef MAAS_BINARY_DIR
#define MAAS_BINARY_DIR "."
#endif

typedef struct {
    char name[33];
    uint32_t n;
    float *v;
} ref_array;

static ref_array refs[128];
static int n_refs;

static int load_refs(void **state) {
    (void)state;
    const char *path = MAAS_BINARY_DIR "/parity.bin";
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s: run ctest (the parity_reference fixture makes it)\n",
                path);
        return -1;
    }
    while (n_refs < (int)MAAS_ARRAY_LEN(refs)) {
        ref_array *r = &refs[n_refs];
        memset(r->name, 0, sizeof(r->name));
        if (fread(r->name, 1, 32, f) != 32 || fread(&r->n, 4, 1, f) != 1) break;
        r->v = malloc((size_t)r->n * sizeof(float));
        if (!r->v || fread(r->v, sizeof(float), r->n, f) != r->n) break;
        n_refs++;
    }
    fclose(f);
    return n_refs > 0 ? 0 : -1;
}

static int free_refs(void **state) {
    (void)state;
    for (int i = 0; i < n_refs; i++) free(refs[i].v);
    return 0;
}

static const ref_array *ref(const char *model, const char *what) {
    char name[40];
    snprintf(name, sizeof(name), "%s.%s", model, what);
    for (int i = 0; i < n_refs; i++)
        if (!strcmp(refs[i].name, name)) return &refs[i];
    fail_msg("reference array %s is missing", name);
    return NULL;
}

typedef struct {
    const char *name;
    int n_in;
    int n_layers;
    maas_layer_spec layers[3];
    maas_loss loss;
    int rows;
} parity_model;

/*
 * Forward outputs of m against torch's (float64, stored as float32): the batch
 * path and each row alone, as the largest error over its bound (<= 1 passes).
 * The bound is fpbound.h's plus half an ulp for the stored reference; the
 * bound's own double forward pass must agree with torch's to that half ulp.
 */
static double forward_ratio(const maas_model *m, const float *x, const float *ref0, int rows) {
    char err[MAAS_ERRSTR_SIZE];
    size_t n = (size_t)rows * m->n_outputs;
    double *exact = malloc(n * sizeof(double)), *bound = malloc(n * sizeof(double));
    float *out = malloc(n * sizeof(float));
    assert_true(exact && bound && out);
    assert_int_equal(maas_test_forward_bound(m, x, (size_t)rows, exact, bound), 0);
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double half_ulp = MAAS_TEST_U * fabs(ref0[i]);
        if (fabs(exact[i] - ref0[i]) > half_ulp * 1.01 + 1e-300)
            fail_msg("output %zu: the bound's exact forward pass %.9g is not torch's %.9g", i,
                     exact[i], (double)ref0[i]);
        bound[i] += half_ulp;
    }
    assert_ok(maas_model_predict(m, x, (size_t)rows, out, err, sizeof(err)), err);
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)out[i] - ref0[i]) / bound[i]);
    for (int r = 0; r < rows; r++) {
        int k = m->n_outputs;
        assert_ok(maas_model_predict(m, x + (size_t)r * m->n_inputs, 1, out, err, sizeof(err)),
                  err);
        for (int j = 0; j < k; j++) {
            size_t i = (size_t)r * k + j;
            worst = fmax(worst, fabs((double)out[j] - ref0[i]) / bound[i]);
        }
    }
    free(exact);
    free(bound);
    free(out);
    return worst;
}

/* Bugs the forward bound must catch: each mutant fails it on some output. */
static void forward_mutants(const maas_model *m, const float *x, const float *ref0, int rows) {
    char err[MAAS_ERRSTR_SIZE];
    /* the true model's reference and bound, which every mutant is held against */
    size_t n = (size_t)rows * m->n_outputs;
    float *out = malloc(n * sizeof(float));
    double *exact = malloc(n * sizeof(double)), *bound = malloc(n * sizeof(double));
    assert_true(out && exact && bound);
    assert_int_equal(maas_test_forward_bound(m, x, (size_t)rows, exact, bound), 0);
    for (size_t i = 0; i < n; i++) bound[i] += MAAS_TEST_U * fabs(ref0[i]);
    for (int k = 0; k < 4; k++) {
        maas_model *mm = maas_model_clone(m, err, sizeof(err));
        assert_non_null(mm);
        int last = mm->n_layers - 1;
        if (k == 0) maas_model_bias(mm, last)[0] = 0.0f;      /* a missed bias */
        if (k == 1) mm->layers[0].spec.act = MAAS_ACT_LINEAR; /* a wrong activation */
        if (k == 2) maas_model_kernel(mm, 0)[3] *= 1.01f;     /* a weight off by 1% */
        if (k == 3) {                                         /* two weights swapped */
            float *w = maas_model_kernel(mm, 0), t = w[0];
            w[0] = w[1];
            w[1] = t;
        }
        assert_ok(maas_model_predict(mm, x, (size_t)rows, out, err, sizeof(err)), err);
        double r = 0.0;
        for (size_t i = 0; i < n; i++) r = fmax(r, fabs((double)out[i] - ref0[i]) / bound[i]);
        if (r <= 1.0) fail_msg("forward mutant %d passed the bound (%.3g)", k, r);
        print_message("  forward mutant %d: %.3g times its bound\n", k, r);
        maas_model_free(mm);
    }
    free(out);
    free(exact);
    free(bound);
}

/*
 * Trains m one epoch and returns the largest weight error and the loss error
 * over their tolerances from the reference (<= 1 passes).
 */
static void epoch_ratios(const parity_model *pm, maas_model *m, const maas_compile *c,
                         const maas_fit_opts *o, const ref_array *x, const ref_array *y,
                         double *wratio, double *lratio) {
    char err[MAAS_ERRSTR_SIZE];
    assert_ok(maas_fit(m, c, x->v, y->v, (size_t)pm->rows, o, NULL, err, sizeof(err)), err);
    double wr = 0.0;
    for (int i = 0; i < m->n_layers; i++) {
        char w[16], b[16], wt[20], bt[20];
        snprintf(w, sizeof(w), "w%d_1", i);
        snprintf(b, sizeof(b), "b%d_1", i);
        snprintf(wt, sizeof(wt), "w%d_1_tol", i);
        snprintf(bt, sizeof(bt), "b%d_1_tol", i);
        const ref_array *rw = ref(pm->name, w), *rb = ref(pm->name, b);
        const ref_array *tw = ref(pm->name, wt), *tb = ref(pm->name, bt);
        const float *kw = maas_model_kernel(m, i), *kb = maas_model_bias(m, i);
        for (uint32_t j = 0; j < rw->n; j++)
            wr = fmax(wr, fabs((double)kw[j] - rw->v[j]) / tw->v[j]);
        for (uint32_t j = 0; j < rb->n; j++)
            wr = fmax(wr, fabs((double)kb[j] - rb->v[j]) / tb->v[j]);
    }
    double loss1;
    assert_ok(maas_evaluate(m, c, x->v, y->v, (size_t)pm->rows, &loss1, NULL, err, sizeof(err)),
              err);
    *wratio = wr;
    *lratio = fabs(loss1 - ref(pm->name, "loss1")->v[0]) / ref(pm->name, "loss1_tol")->v[0];
}

static void run_model(const parity_model *pm) {
    char err[MAAS_ERRSTR_SIZE];
    maas_rng rng;
    maas_rng_init(&rng, 1); /* initial weights are replaced by the reference's below */
    maas_model *m = maas_model_new(pm->n_in, pm->layers, pm->n_layers, &rng, err, sizeof(err));
    assert_non_null(m);
    for (int i = 0; i < m->n_layers; i++) {
        char w[16], b[16];
        snprintf(w, sizeof(w), "w%d", i);
        snprintf(b, sizeof(b), "b%d", i);
        const ref_array *rw = ref(pm->name, w), *rb = ref(pm->name, b);
        assert_int_equal(rw->n, (uint32_t)(m->layers[i].n_in * m->layers[i].n_out));
        assert_int_equal(rb->n, (uint32_t)m->layers[i].n_out);
        memcpy(maas_model_kernel(m, i), rw->v, rw->n * sizeof(float));
        memcpy(maas_model_bias(m, i), rb->v, rb->n * sizeof(float));
    }
    const ref_array *x = ref(pm->name, "x"), *y = ref(pm->name, "y");
    const ref_array *out0 = ref(pm->name, "out0");
    assert_int_equal(x->n, (uint32_t)(pm->rows * pm->n_in));
    assert_int_equal(out0->n, (uint32_t)(pm->rows * m->n_outputs));

    /* Forward: batch path, and the single-row (sgemv) path. */
    double fwd = forward_ratio(m, x->v, out0->v, pm->rows);
    print_message("model %s: forward error at most %.3g of its float32 bound\n", pm->name, fwd);
    assert_true(fwd <= 1.0);
    forward_mutants(m, x->v, out0->v, pm->rows);

    /* One epoch of Adam, batch 32, no shuffle. */
    maas_compile c = {.loss = pm->loss};
    maas_optim_defaults(&c.optim, MAAS_OPT_ADAM);
    maas_fit_opts o;
    maas_fit_opts_init(&o);
    o.rng = &rng;
    o.shuffle = 0;
    o.batch_size = 32;
    maas_model *start = maas_model_clone(m, err, sizeof(err));
    assert_non_null(start);
    double wr, lr;
    epoch_ratios(pm, m, &c, &o, x, y, &wr, &lr);
    print_message("model %s: after one Adam epoch, weights at most %.3g and the loss %.3g of "
                  "their float32 tolerance\n",
                  pm->name, wr, lr);
    assert_true(wr <= 1.0);
    assert_true(lr <= 1.0);

    /* mutants of the optimizer: a wrong beta_1, a learning rate 1% off */
    for (int k = 0; k < 2; k++) {
        maas_model *mm = maas_model_clone(start, err, sizeof(err));
        assert_non_null(mm);
        maas_compile cm = c;
        if (k == 0) cm.optim.beta_1 = 0.91f;
        if (k == 1) cm.optim.learning_rate *= 1.01f;
        epoch_ratios(pm, mm, &cm, &o, x, y, &wr, &lr);
        if (wr <= 1.0) fail_msg("model %s: optimizer mutant %d passed (%.3g)", pm->name, k, wr);
        print_message("  optimizer mutant %d: %.3g times its tolerance\n", k, wr);
        maas_model_free(mm);
    }
    maas_model_free(start);
    maas_model_free(m);
}

static void test_seed_model(void **state) {
    (void)state;
    parity_model pm = {"A",
                       8,
                       2,
                       {maas_dense(10, MAAS_ACT_RELU), maas_dense(1, MAAS_ACT_SIGMOID)},
                       MAAS_LOSS_BINARY_CROSSENTROPY,
                       96};
    run_model(&pm);
}

static void test_softmax_model(void **state) {
    (void)state;
    parity_model pm = {"B",
                       12,
                       3,
                       {maas_dense(16, MAAS_ACT_TANH), maas_dense(8, MAAS_ACT_GELU),
                        maas_dense(4, MAAS_ACT_SOFTMAX)},
                       MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY,
                       96};
    run_model(&pm);
}

static void test_regression_model(void **state) {
    (void)state;
    parity_model pm = {"C",
                       6,
                       3,
                       {maas_dense(7, MAAS_ACT_ELU), maas_dense(5, MAAS_ACT_LEAKY_RELU),
                        maas_dense(3, MAAS_ACT_LINEAR)},
                       MAAS_LOSS_MSE,
                       80};
    run_model(&pm);
}

/*
 * The convolutional models (tests/ref/torch_parity_cnn.py): the parameter block as the reference
 * lays it out, the outputs at the initial weights (inference: BatchNormalization by its moving
 * statistics; batches and single rows) and every parameter after one epoch of Adam at batch 16
 * without shuffling (moving statistics included), each within its Monte Carlo tolerance plus
 * half an ulp for the reference's rounding to float32. A mutant (a wrong momentum) must fail.
 */
static double cnn_epoch_ratio(const char *name, maas_model *m, maas_loss loss, float momentum,
                              const ref_array *x, const ref_array *y, int rows) {
    char err[MAAS_ERRSTR_SIZE];
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].spec.kind == MAAS_LAYER_BATCHNORM) m->layers[i].spec.momentum = momentum;
    maas_compile c = {.loss = loss};
    maas_optim_defaults(&c.optim, MAAS_OPT_ADAM);
    maas_fit_opts o;
    maas_fit_opts_init(&o);
    maas_rng rng;
    maas_rng_init(&rng, 1);
    o.rng = &rng;
    o.shuffle = 0;
    o.batch_size = 16;
    assert_ok(maas_fit(m, &c, x->v, y->v, (size_t)rows, &o, NULL, err, sizeof(err)), err);
    const ref_array *p1 = ref(name, "params1"), *tol = ref(name, "params1_tol");
    assert_int_equal(p1->n, (uint32_t)m->n_params);
    double worst = 0, gap = 0;
    for (size_t i = 0; i < m->n_params; i++) {
        double d = fabs((double)m->params[i] - p1->v[i]);
        gap = fmax(gap, d);
        worst = fmax(worst, d / ((double)tol->v[i] + MAAS_TEST_U * fabs(p1->v[i]) + 1e-30));
    }
    if (momentum == 0.99f)
        print_message("model %s: largest difference from PyTorch's parameters %.3g\n", name, gap);
    return worst;
}

static void run_cnn(const char *name, const char *layers, int n_in, maas_loss loss, int rows) {
    char err[MAAS_ERRSTR_SIZE];
    maas_layer_spec specs[MAAS_MAX_LAYERS];
    int n;
    assert_ok(maas_layers_parse(layers, specs, MAAS_MAX_LAYERS, &n, err, sizeof(err)), err);
    maas_rng rng;
    maas_rng_init(&rng, 1);
    maas_model *m = maas_model_new(n_in, specs, n, &rng, err, sizeof(err));
    assert_non_null(m);
    const ref_array *p0 = ref(name, "params0"), *x = ref(name, "x"), *y = ref(name, "y");
    const ref_array *out0 = ref(name, "out0"), *tol0 = ref(name, "out0_tol");
    assert_int_equal(p0->n, (uint32_t)m->n_params);
    assert_int_equal(x->n, (uint32_t)(rows * n_in));
    memcpy(m->params, p0->v, p0->n * sizeof(float));
    size_t no = (size_t)rows * m->n_outputs;
    float *out = malloc(no * sizeof(float));
    assert_non_null(out);
    assert_ok(maas_model_predict(m, x->v, (size_t)rows, out, err, sizeof(err)), err);
    double worst = 0;
    for (size_t i = 0; i < no; i++) {
        double b = tol0->v[i] + MAAS_TEST_U * fabs(out0->v[i]) + 1e-30;
        worst = fmax(worst, fabs((double)out[i] - out0->v[i]) / b);
    }
    for (int r = 0; r < rows; r++) { /* each row alone */
        assert_ok(maas_model_predict(m, x->v + (size_t)r * n_in, 1, out, err, sizeof(err)), err);
        for (int j = 0; j < m->n_outputs; j++) {
            size_t i = (size_t)r * m->n_outputs + j;
            double b = tol0->v[i] + MAAS_TEST_U * fabs(out0->v[i]) + 1e-30;
            worst = fmax(worst, fabs((double)out[j] - out0->v[i]) / b);
        }
    }
    print_message("model %s: forward error at most %.3g of its float32 tolerance\n", name, worst);
    assert_true(worst <= 1.0);
    maas_model *start = maas_model_clone(m, err, sizeof(err));
    assert_non_null(start);
    double wr = cnn_epoch_ratio(name, m, loss, 0.99f, x, y, rows);
    print_message("model %s: after one Adam epoch, parameters at most %.3g of their float32 "
                  "tolerance\n",
                  name, wr);
    assert_true(wr <= 1.0);
    double mr = cnn_epoch_ratio(name, start, loss, 0.9f, x, y, rows);
    print_message("  BatchNormalization momentum mutant: %.3g times its tolerance\n", mr);
    assert_true(mr > 1.0);
    free(out);
    maas_model_free(start);
    maas_model_free(m);
}

static void test_cnn2d_model(void **state) {
    (void)state;
    run_cnn("D",
            "reshape:6x6x2,conv2d:4:3x3:tanh:same,batchnorm,maxpool:2x2:same,"
            "avgpool:2x2:s1x1:same,conv2d:3:2x2:relu,gap2d,3:softmax",
            72, MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, 64);
}

static void test_sequence_model(void **state) {
    (void)state;
    run_cnn("E",
            "embedding:9:3,conv1d:4:3:elu:same,maxpool:2,batchnorm,avgpool:2,flatten,1:sigmoid", 8,
            MAAS_LOSS_BINARY_CROSSENTROPY, 64);
}

int main(void) {
    maas_blas_set_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_model),       cmocka_unit_test(test_softmax_model),
        cmocka_unit_test(test_regression_model), cmocka_unit_test(test_cnn2d_model),
        cmocka_unit_test(test_sequence_model),
    };
    return cmocka_run_group_tests(tests, load_refs, free_refs);
}
