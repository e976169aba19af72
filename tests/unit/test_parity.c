/*
 * Parity with PyTorch: tests/ref/torch_parity.py (run by ctest as the
 * parity_reference fixture) computes, in float64, forward outputs and the
 * weights after one epoch of Keras-style Adam for three models; maas must
 * match the outputs within 1e-5 relative and the weights within 1e-4.
 */
#include "testutil.h"

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

    /* Forward: batch path, and the single-row (sgemv) path. */
    float *out = malloc(out0->n * sizeof(float));
    assert_ok(maas_model_predict(m, x->v, (size_t)pm->rows, out, err, sizeof(err)), err);
    double worst = 0.0;
    for (uint32_t i = 0; i < out0->n; i++) {
        double d = fabs((double)out[i] - out0->v[i]) / fmax(fabs(out0->v[i]), 1e-3);
        worst = fmax(worst, d);
    }
    for (int r = 0; r < pm->rows; r++) {
        int k = m->n_outputs;
        float one[8];
        assert_ok(maas_model_predict(m, x->v + (size_t)r * pm->n_in, 1, one, err, sizeof(err)),
                  err);
        for (int j = 0; j < k; j++) {
            double ref_v = out0->v[(size_t)r * k + j];
            worst = fmax(worst, fabs((double)one[j] - ref_v) / fmax(fabs(ref_v), 1e-3));
        }
    }
    print_message("model %s: forward max relative error %.3g\n", pm->name, worst);
    assert_true(worst <= 1e-5);

    /* One epoch of Adam, batch 32, no shuffle. */
    maas_compile c = {.loss = pm->loss};
    maas_optim_defaults(&c.optim, MAAS_OPT_ADAM);
    maas_fit_opts o;
    maas_fit_opts_init(&o);
    o.rng = &rng;
    o.shuffle = 0;
    o.batch_size = 32;
    assert_ok(maas_fit(m, &c, x->v, y->v, (size_t)pm->rows, &o, NULL, err, sizeof(err)), err);
    double wworst = 0.0;
    for (int i = 0; i < m->n_layers; i++) {
        char w[16], b[16];
        snprintf(w, sizeof(w), "w%d_1", i);
        snprintf(b, sizeof(b), "b%d_1", i);
        const ref_array *rw = ref(pm->name, w), *rb = ref(pm->name, b);
        const float *kw = maas_model_kernel(m, i), *kb = maas_model_bias(m, i);
        for (uint32_t j = 0; j < rw->n; j++) wworst = fmax(wworst, fabs(kw[j] - rw->v[j]));
        for (uint32_t j = 0; j < rb->n; j++) wworst = fmax(wworst, fabs(kb[j] - rb->v[j]));
    }
    double loss1;
    assert_ok(maas_evaluate(m, &c, x->v, y->v, (size_t)pm->rows, &loss1, NULL, err, sizeof(err)),
              err);
    double ref_loss = ref(pm->name, "loss1")->v[0];
    print_message("model %s: weights after one Adam epoch max abs error %.3g; loss %.6f vs "
                  "torch %.6f\n",
                  pm->name, wworst, loss1, ref_loss);
    assert_true(wworst <= 1e-4);
    assert_true(fabs(loss1 - ref_loss) <= 1e-4 * fabs(ref_loss) + 1e-6);
    free(out);
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

int main(void) {
    maas_blas_set_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_model),
        cmocka_unit_test(test_softmax_model),
        cmocka_unit_test(test_regression_model),
    };
    return cmocka_run_group_tests(tests, load_refs, free_refs);
}
