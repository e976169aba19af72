/*
 * The compute core's contracts: reproducibility from a seed, initializer
 * statistics, activation values, optimizer update rules, fit's options
 * (validation, early stopping, callbacks, cancel), and clear errors on bad
 * input.
 */
#include "fpbound.h"
#include "testutil.h"
#include "train_internal.h"

#if defined(__x86_64__)
#include <xmmintrin.h>
static unsigned fpmode(void) {
    return _mm_getcsr() & ~0x3fu; /* the mode bits, not the sticky exception flags */
}
#else
static unsigned fpmode(void) {
    return 0;
}
#endif

static char err[MAAS_ERRSTR_SIZE];

/* ---- rng and initializers ---- */

static void test_rng_reproducible(void **state) {
    (void)state;
    maas_rng a, b;
    maas_rng_init(&a, 42);
    maas_rng_init(&b, 42);
    for (int i = 0; i < 1000; i++) assert_int_equal(maas_rng_next(&a), maas_rng_next(&b));
    maas_rng_init(&b, 43);
    assert_int_not_equal(maas_rng_next(&a), maas_rng_next(&b));
    double s = 0;
    for (int i = 0; i < 100000; i++) {
        double u = maas_rng_uniform(&a);
        assert_true(u >= 0.0 && u < 1.0);
        s += u;
    }
    assert_true(fabs(s / 100000 - 0.5) < 0.01);
    for (int i = 0; i < 1000; i++) assert_true(maas_rng_below(&a, 7) < 7);
}

static void test_initializers(void **state) {
    (void)state;
    maas_rng rng;
    maas_rng_init(&rng, 1);
    maas_layer_spec l[] = {maas_dense(300, MAAS_ACT_RELU), maas_dense(200, MAAS_ACT_LINEAR)};
    l[1].kernel_init = MAAS_INIT_HE_NORMAL;
    l[1].bias_init = MAAS_INIT_ZEROS;
    maas_model *m = maas_model_new(100, l, 2, &rng, err, sizeof(err));
    assert_non_null(m);
    /* glorot_uniform: |w| <= sqrt(6 / (100 + 300)), variance limit^2 / 3 */
    double limit = sqrt(6.0 / 400.0), s2 = 0;
    const float *k0 = maas_model_kernel(m, 0);
    for (int i = 0; i < 100 * 300; i++) {
        assert_true(fabs(k0[i]) <= limit);
        s2 += (double)k0[i] * k0[i];
    }
    assert_true(fabs(s2 / 30000 / (limit * limit / 3) - 1.0) < 0.05);
    /* he_normal: truncated at 2 stddev, overall std sqrt(2 / fan_in) */
    const float *k1 = maas_model_kernel(m, 1);
    double sd = sqrt(2.0 / 300.0) / 0.87962566103423978;
    s2 = 0;
    for (int i = 0; i < 300 * 200; i++) {
        assert_true(fabs(k1[i]) <= 2 * sd + 1e-6);
        s2 += (double)k1[i] * k1[i];
    }
    assert_true(fabs(sqrt(s2 / 60000) / sqrt(2.0 / 300.0) - 1.0) < 0.05);
    const float *b = maas_model_bias(m, 0);
    for (int i = 0; i < 300; i++) assert_true(b[i] == 0.0f);
    assert_string_equal(m->layers[0].spec.name, "dense");
    assert_string_equal(m->layers[1].spec.name, "dense_1");
    assert_int_equal(m->n_params, 100 * 300 + 300 + 300 * 200 + 200);
    /* Same seed, same weights. */
    maas_rng r2;
    maas_rng_init(&r2, 1);
    maas_model *m2 = maas_model_new(100, l, 2, &r2, err, sizeof(err));
    assert_memory_equal(m->params, m2->params, m->n_params * sizeof(float));
    maas_model_free(m2);
    maas_model_free(m);
}

/* ---- activations ---- */

static void test_activation_values(void **state) {
    (void)state;
    float z[] = {-2.0f, -0.5f, 0.0f, 0.5f, 3.0f};
    struct {
        maas_act act;
        float alpha;
        float want[5];
    } cases[] = {
        {MAAS_ACT_LINEAR, 0, {-2, -0.5f, 0, 0.5f, 3}},
        {MAAS_ACT_RELU, 0, {0, 0, 0, 0.5f, 3}},
        {MAAS_ACT_SIGMOID, 0, {0.11920292f, 0.37754067f, 0.5f, 0.62245933f, 0.95257413f}},
        {MAAS_ACT_TANH, 0, {-0.96402758f, -0.46211716f, 0, 0.46211716f, 0.99505475f}},
        {MAAS_ACT_LEAKY_RELU, 0.2f, {-0.4f, -0.1f, 0, 0.5f, 3}},
        {MAAS_ACT_ELU, 1.0f, {-0.86466472f, -0.39346934f, 0, 0.5f, 3}},
        {MAAS_ACT_GELU, 0, {-0.04550026f, -0.15426877f, 0, 0.34573123f, 2.99595031f}},
    };
    for (size_t c = 0; c < MAAS_ARRAY_LEN(cases); c++) {
        float v[5];
        memcpy(v, z, sizeof(v));
        maas_act_forward(cases[c].act, cases[c].alpha, v, 1, 5);
        for (int i = 0; i < 5; i++)
            if (fabsf(v[i] - cases[c].want[i]) > 1e-6f)
                fail_msg("%s(%g) = %.8g, want %.8g", maas_act_name(cases[c].act), (double)z[i],
                         (double)v[i], (double)cases[c].want[i]);
    }
    /* softmax: rows sum to 1, stable for large logits */
    float s[] = {1000.0f, 1001.0f, 1002.0f, -1.0f, 0.0f, 1.0f};
    maas_act_forward(MAAS_ACT_SOFTMAX, 0, s, 2, 3);
    for (int r = 0; r < 2; r++) {
        float sum = s[r * 3] + s[r * 3 + 1] + s[r * 3 + 2];
        assert_true(fabsf(sum - 1.0f) < 1e-6f);
        assert_true(fabsf(s[r * 3 + 2] - 0.66524096f) < 1e-6f);
    }
    float big[] = {-1000.0f, 1000.0f};
    maas_act_forward(MAAS_ACT_SIGMOID, 0, big, 1, 2);
    assert_true(big[0] == 0.0f && big[1] == 1.0f);
}

static void test_find_nonfinite(void **state) {
    (void)state;
    float v[1000];
    for (int i = 0; i < 1000; i++) v[i] = (float)i - 500.0f;
    v[10] = FLT_MIN / 4; /* subnormal: finite */
    v[11] = -FLT_MAX;
    assert_int_equal(maas_find_nonfinite(v, 1000), 1000);
    assert_int_equal(maas_find_nonfinite(v, 0), 0);
    const float bad[] = {NAN, INFINITY, -INFINITY, -NAN};
    const size_t at[] = {0, 255, 256, 999};
    for (size_t b = 0; b < 4; b++)
        for (size_t a = 0; a < 4; a++) {
            float keep = v[at[a]];
            v[at[a]] = bad[b];
            assert_int_equal(maas_find_nonfinite(v, 1000), at[a]);
            v[at[a]] = keep;
        }
}

static void test_names(void **state) {
    (void)state;
    maas_act a;
    assert_ok(maas_act_from_name("gelu", &a, err, sizeof(err)), err);
    assert_int_equal(a, MAAS_ACT_GELU);
    for (int i = 0; i < MAAS_ACT__COUNT; i++) {
        assert_ok(maas_act_from_name(maas_act_name((maas_act)i), &a, err, sizeof(err)), err);
        assert_int_equal(a, i);
    }
    assert_err(MAAS_ERR_UNKNOWN_NAME, maas_act_from_name("swish2", &a, err, sizeof(err)), err);
    assert_mentions(err, "swish2");
    maas_loss l;
    assert_ok(maas_loss_from_name("mean_squared_error", &l, err, sizeof(err)), err);
    assert_int_equal(l, MAAS_LOSS_MSE);
    assert_err(MAAS_ERR_UNKNOWN_NAME, maas_loss_from_name("hinge", &l, err, sizeof(err)), err);
    assert_mentions(err, "hinge");
    maas_opt o;
    assert_ok(maas_opt_from_name("Adam", &o, err, sizeof(err)), err);
    assert_int_equal(o, MAAS_OPT_ADAM);
    assert_err(MAAS_ERR_UNKNOWN_NAME, maas_opt_from_name("adagrad", &o, err, sizeof(err)), err);
    maas_init in;
    assert_err(MAAS_ERR_UNKNOWN_NAME, maas_init_from_name("orthogonal", &in, err, sizeof(err)),
               err);
    assert_string_equal(maas_err_code(MAAS_ERR_SHAPE_MISMATCH), "SHAPE_MISMATCH");
}

/* ---- optimizers: one step on w * x with MSE against hand-derived Keras updates ---- */

static float one_step(const maas_optim_spec *o, int steps) {
    maas_layer_spec l = maas_dense(1, MAAS_ACT_LINEAR);
    l.use_bias = 0;
    l.kernel_init = MAAS_INIT_ZEROS;
    maas_model *m = maas_model_new(1, &l, 1, NULL, err, sizeof(err));
    assert_non_null(m);
    m->params[0] = 0.5f;
    maas_compile c = {.loss = MAAS_LOSS_MSE, .optim = *o};
    maas_trainer *tr = maas_trainer_new(m, &c, 1, NULL, err, sizeof(err));
    assert_non_null(tr);
    float x = 1.0f, y = 0.0f;
    for (int i = 0; i < steps; i++)
        assert_ok(maas_trainer_step(tr, &x, &y, 1, NULL, NULL, err, sizeof(err)), err);
    float w = m->params[0];
    maas_trainer_free(tr);
    maas_model_free(m);
    return w;
}

static void test_optimizer_updates(void **state) {
    (void)state;
    maas_optim_spec o;
    /* gradient of (w - 0)^2 at w is 2w */
    maas_optim_defaults(&o, MAAS_OPT_SGD);
    o.learning_rate = 0.1f;
    assert_float_equal(one_step(&o, 1), 0.5 - 0.1 * 1.0, 1e-7);
    o.momentum = 0.9f; /* v1 = -0.1; w1 = 0.4; g = 0.8; v2 = -0.09 - 0.08; w2 = 0.23 */
    assert_float_equal(one_step(&o, 2), 0.23, 1e-6);
    o.nesterov = 1; /* w1 = 0.5 + 0.9 * -0.1 - 0.1 = 0.31; g = 0.62; v2 = -0.09 - 0.062 = -0.152;
                       w2 = 0.31 + 0.9 * -0.152 - 0.062 = 0.1112 */
    assert_float_equal(one_step(&o, 2), 0.1112, 1e-6);
    maas_optim_defaults(&o, MAAS_OPT_ADAM);
    /* t = 1: m = 0.1, v = 0.001, alpha = 1e-3 * sqrt(1 - .999) / (1 - .9) */
    double alpha = 1e-3 * sqrt(1 - 0.999) / 0.1;
    assert_float_equal(one_step(&o, 1), 0.5 - alpha * 0.1 / (sqrt(0.001) + 1e-7), 1e-7);
    maas_optim_defaults(&o, MAAS_OPT_RMSPROP);
    /* v = 0.1 * 1; w -= 1e-3 * 1 / sqrt(0.1 + 1e-7) */
    assert_float_equal(one_step(&o, 1), 0.5 - 1e-3 / sqrt(0.1 + 1e-7), 1e-7);
}

/* The single-row kernel (maas_rowvec, at this process's MAAS_CPU_LEVEL: the suite runs the
 * test at each level the CPU has): every output within float32's bound for a sum of k + 1
 * terms in any order, gamma_{k+1} (sum |x_i W_ij| + |b_j|), of the exact (double) result, at
 * widths that take every block and tail path; the columns outside [0, n) of a strided W and
 * of y are neither read into the result nor written; beta 0 ignores y's old contents. */
static void test_rowvec_within_bound(void **state) {
    (void)state;
    static const int ns[] = {1, 7, 8, 9, 15, 16, 17, 33, 95, 96, 97, 130, 255, 256, 257, 300, 520};
    static const int ks[] = {1, 3, 64, 785};
    maas_rng r;
    maas_rng_init(&r, 9);
    for (size_t a = 0; a < MAAS_ARRAY_LEN(ks); a++)
        for (size_t b = 0; b < MAAS_ARRAY_LEN(ns); b++)
            for (int with_bias = 0; with_bias < 2; with_bias++) {
                int k = ks[a], n = ns[b], ldw = n + 5; /* strided: columns n.. are poison */
                float *x = malloc(sizeof(float) * (size_t)k);
                float *w = malloc(sizeof(float) * (size_t)k * (size_t)ldw);
                float *y = malloc(sizeof(float) * (size_t)(n + 16));
                float *bias = malloc(sizeof(float) * (size_t)n);
                assert_true(x && w && y && bias);
                for (int i = 0; i < k; i++) x[i] = (float)maas_rng_normal(&r);
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < ldw; j++)
                        w[(size_t)i * ldw + j] = j < n ? (float)maas_rng_normal(&r) : NAN;
                for (int j = 0; j < n; j++) bias[j] = (float)maas_rng_normal(&r);
                for (int j = 0; j < n + 16; j++) y[j] = j < n && with_bias ? bias[j] : NAN;
                maas_rowvec(k, n, x, w, ldw, with_bias ? 1.0f : 0.0f, y);
                double g = (k + 1) * MAAS_TEST_U / (1 - (k + 1) * MAAS_TEST_U);
                for (int j = 0; j < n; j++) {
                    double exact = with_bias ? bias[j] : 0.0, mag = with_bias ? fabs(bias[j]) : 0.0;
                    for (int i = 0; i < k; i++) {
                        double p = (double)x[i] * w[(size_t)i * ldw + j];
                        exact += p;
                        mag += fabs(p);
                    }
                    if (!(fabs(y[j] - exact) <= g * mag))
                        fail_msg("k %d n %d bias %d: y[%d] = %.9g, exact %.9g, bound %.3g", k, n,
                                 with_bias, j, y[j], exact, g * mag);
                }
                for (int j = n; j < n + 16; j++) assert_true(isnan(y[j])); /* not written */
                free(x);
                free(w);
                free(y);
                free(bias);
            }
}

/* Every optimizer on each instruction set the CPU runs gives the same bits as
 * the baseline loop; the step leaves the caller's floating-point mode as it was
 * (denormals are flushed only inside); the profile counts what ran. */
static void test_update_isas_agree(void **state) {
    (void)state;
    const int n_in = 37, batch = 16; /* odd sizes: the vector loops' tails run too */
    float x[16 * 37], y[16];
    maas_rng r;
    maas_rng_init(&r, 5);
    for (int i = 0; i < batch * n_in; i++) x[i] = (float)maas_rng_normal(&r);
    for (int i = 0; i < batch; i++) y[i] = (float)(i % 3);
    maas_optim_spec specs[5];
    maas_optim_defaults(&specs[0], MAAS_OPT_ADAM);
    maas_optim_defaults(&specs[1], MAAS_OPT_SGD);
    maas_optim_defaults(&specs[2], MAAS_OPT_SGD);
    specs[2].momentum = 0.9f;
    specs[2].nesterov = 1;
    maas_optim_defaults(&specs[3], MAAS_OPT_RMSPROP);
    maas_optim_defaults(&specs[4], MAAS_OPT_RMSPROP);
    specs[4].momentum = 0.5f;
    for (int s = 0; s < 5; s++) {
        float *ref = NULL;
        for (int isa = 0; isa <= 2; isa++) {
            maas_rng_init(&r, 11);
            maas_layer_spec l[] = {maas_dense(21, MAAS_ACT_RELU), maas_dense(3, MAAS_ACT_SOFTMAX)};
            maas_model *m = maas_model_new(n_in, l, 2, &r, err, sizeof(err));
            assert_non_null(m);
            maas_compile c = {.loss = MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, .optim = specs[s]};
            maas_trainer *tr = maas_trainer_new(m, &c, batch, &r, err, sizeof(err));
            assert_non_null(tr);
            float *mask = malloc(m->n_params * sizeof(float));
            for (size_t i = 0; i < m->n_params; i++) mask[i] = i % 4 ? 1.0f : 0.0f;
            maas_trainer_set_mask(tr, mask);
            int used = maas__trainer_set_isa(tr, isa);
            maas_train_profile prof = {0};
            maas_trainer_set_profile(tr, &prof);
            unsigned csr_before = fpmode();
            for (int step = 0; step < 5; step++)
                assert_ok(maas_trainer_step(tr, x, y, batch, NULL, NULL, err, sizeof(err)), err);
            assert_int_equal(fpmode(), csr_before);
            assert_int_equal(prof.steps, 5);
            /* forward 2 GEMMs, backward 2 weight gradients + 1 input gradient */
            double f = 2.0 * batch * (n_in * 21.0 + 21.0 * 3);
            assert_float_equal(prof.gemm_flops, 5 * (2 * f + 2.0 * batch * 21 * 3), 1e-3);
            assert_true(prof.gemm_s > 0 && prof.gemm_s <= prof.step_s);
            assert_true(prof.update_s > 0 && prof.update_s <= prof.step_s);
            for (size_t i = 0; i < m->n_params; i += 4) assert_true(m->params[i] == 0.0f);
            if (!ref) {
                ref = malloc(m->n_params * sizeof(float));
                memcpy(ref, m->params, m->n_params * sizeof(float));
            } else if (used == isa) {
                if (memcmp(ref, m->params, m->n_params * sizeof(float)))
                    fail_msg("optimizer %d on isa %d differs from the baseline", s, isa);
            }
            free(mask);
            maas_trainer_free(tr);
            maas_model_free(m);
        }
        free(ref);
    }
}

/* ---- fit ---- */

typedef struct {
    float x[200 * 2];
    float y[200];
} toy;

/* Two Gaussian blobs: an easy binary problem. */
static void make_toy(toy *t, uint64_t seed) {
    maas_rng r;
    maas_rng_init(&r, seed);
    for (int i = 0; i < 200; i++) {
        int cls = i % 2;
        t->y[i] = (float)cls;
        t->x[2 * i] = (float)(maas_rng_normal(&r) + (cls ? 2.0 : -2.0));
        t->x[2 * i + 1] = (float)(maas_rng_normal(&r) + (cls ? 1.0 : -1.0));
    }
}

static maas_model *toy_model(maas_rng *rng) {
    maas_layer_spec l[] = {maas_dense(8, MAAS_ACT_TANH), maas_dropout(0.2f),
                           maas_dense(1, MAAS_ACT_SIGMOID)};
    maas_model *m = maas_model_new(2, l, 3, rng, err, sizeof(err));
    assert_non_null(m);
    return m;
}

static maas_compile bce(void) {
    maas_compile c = {.loss = MAAS_LOSS_BINARY_CROSSENTROPY, .accuracy = 1};
    maas_optim_defaults(&c.optim, MAAS_OPT_ADAM);
    c.optim.learning_rate = 0.01f;
    return c;
}

static void test_fit_reproducible_and_learns(void **state) {
    (void)state;
    static toy t;
    make_toy(&t, 3);
    maas_compile c = bce();
    float *w[2];
    for (int run = 0; run < 2; run++) {
        maas_rng rng;
        maas_rng_init(&rng, 99);
        maas_model *m = toy_model(&rng);
        maas_fit_opts o;
        maas_fit_opts_init(&o);
        o.epochs = 20;
        o.rng = &rng;
        o.validation_split = 0.25f;
        maas_history h;
        assert_ok(maas_fit(m, &c, t.x, t.y, 200, &o, &h, err, sizeof(err)), err);
        assert_int_equal(h.n_epochs, 20);
        assert_true(h.epochs[19].has_val && h.epochs[19].has_accuracy);
        assert_true(h.epochs[19].val_accuracy >= 0.9);
        assert_true(h.epochs[19].loss < h.epochs[0].loss);
        double loss, acc;
        assert_ok(maas_evaluate(m, &c, t.x + 150 * 2, t.y + 150, 50, &loss, &acc, err, sizeof(err)),
                  err);
        /* evaluate on the validation rows equals the last epoch's val figures */
        assert_float_equal(loss, h.epochs[19].val_loss, 1e-6);
        assert_float_equal(acc, h.epochs[19].val_accuracy, 1e-9);
        w[run] = malloc(m->n_params * sizeof(float));
        memcpy(w[run], m->params, m->n_params * sizeof(float));
        maas_history_release(&h);
        maas_model_free(m);
    }
    assert_memory_equal(w[0], w[1], (2 * 8 + 8 + 8 + 1) * sizeof(float));
    free(w[0]);
    free(w[1]);
}

typedef struct {
    maas_model *m;
    float *snapshot; /* weights after epoch 1 */
    int epochs_seen;
    int stop_at;
    int cancel_at_batch;
} probe;

static int probe_epoch(void *ud, const maas_epoch_log *e) {
    probe *p = ud;
    p->epochs_seen++;
    if (e->epoch == 1 && p->snapshot)
        memcpy(p->snapshot, p->m->params, p->m->n_params * sizeof(float));
    return p->stop_at && e->epoch >= p->stop_at;
}

static int probe_batch(void *ud, int epoch, size_t batch, size_t n_batches) {
    probe *p = ud;
    assert_true(batch < n_batches);
    return p->cancel_at_batch && epoch == 2 && (int)batch == p->cancel_at_batch;
}

static void test_early_stopping_restores_best(void **state) {
    (void)state;
    static toy t;
    make_toy(&t, 4);
    maas_compile c = bce();
    maas_rng rng;
    maas_rng_init(&rng, 5);
    maas_model *m = toy_model(&rng);
    probe p = {.m = m, .snapshot = malloc(m->n_params * sizeof(float))};
    maas_fit_opts o;
    maas_fit_opts_init(&o);
    o.epochs = 50;
    o.rng = &rng;
    o.early_stopping = 1;
    o.monitor = "loss";
    o.min_delta = 100.0f; /* nothing after epoch 1 counts as an improvement */
    o.patience = 2;
    o.restore_best = 1;
    o.on_epoch = probe_epoch;
    o.ud = &p;
    maas_history h;
    assert_ok(maas_fit(m, &c, t.x, t.y, 200, &o, &h, err, sizeof(err)), err);
    assert_int_equal(h.n_epochs, 3);
    assert_true(h.stopped_early);
    assert_int_equal(h.best_epoch, 1);
    assert_memory_equal(m->params, p.snapshot, m->n_params * sizeof(float));
    maas_history_release(&h);
    free(p.snapshot);
    maas_model_free(m);
}

static void test_callbacks_stop_and_cancel(void **state) {
    (void)state;
    static toy t;
    make_toy(&t, 6);
    maas_compile c = bce();
    maas_rng rng;
    maas_rng_init(&rng, 7);
    maas_model *m = toy_model(&rng);
    probe p = {.m = m, .stop_at = 2};
    maas_fit_opts o;
    maas_fit_opts_init(&o);
    o.epochs = 10;
    o.rng = &rng;
    o.on_epoch = probe_epoch;
    o.on_batch = probe_batch;
    o.ud = &p;
    maas_history h;
    assert_ok(maas_fit(m, &c, t.x, t.y, 200, &o, &h, err, sizeof(err)), err);
    assert_int_equal(h.n_epochs, 2);
    assert_int_equal(p.epochs_seen, 2);
    maas_history_release(&h);
    p = (probe){.m = m, .cancel_at_batch = 3};
    assert_err(MAAS_ERR_CANCELLED, maas_fit(m, &c, t.x, t.y, 200, &o, NULL, err, sizeof(err)), err);
    assert_mentions(err, "epoch 2");
    assert_int_equal(p.epochs_seen, 1);
    maas_model_free(m);
}

static void test_standardization_in_predict(void **state) {
    (void)state;
    static toy t;
    make_toy(&t, 8);
    for (int i = 0; i < 400; i++) t.x[i] = t.x[i] * 1000.0f + 5000.0f; /* badly scaled */
    maas_compile c = bce();
    maas_rng rng;
    maas_rng_init(&rng, 9);
    maas_model *m = toy_model(&rng);
    maas_fit_opts o;
    maas_fit_opts_init(&o);
    o.epochs = 10;
    o.rng = &rng;
    o.standardize = 1;
    assert_ok(maas_fit(m, &c, t.x, t.y, 200, &o, NULL, err, sizeof(err)), err);
    assert_non_null(m->feat_mean);
    assert_true(fabsf(m->feat_mean[0] - 5000.0f) < 300.0f);
    double loss, acc;
    assert_ok(maas_evaluate(m, &c, t.x, t.y, 200, &loss, &acc, err, sizeof(err)), err);
    assert_true(acc > 0.9);
    /* predict applies the same standardization: raw rows in, probabilities out */
    float p[200];
    assert_ok(maas_model_predict(m, t.x, 200, p, err, sizeof(err)), err);
    int hits = 0;
    for (int i = 0; i < 200; i++) hits += (p[i] > 0.5f) == (t.y[i] > 0.5f);
    assert_float_equal(hits / 200.0, acc, 1e-9);
    maas_model *copy = maas_model_clone(m, err, sizeof(err));
    float q[200];
    assert_ok(maas_model_predict(copy, t.x, 200, q, err, sizeof(err)), err);
    assert_memory_equal(p, q, sizeof(p));
    maas_model_free(copy);
    maas_model_free(m);
}

/* ---- bad input: an error code and a message naming the problem, never a crash ---- */

static void test_bad_model_specs(void **state) {
    (void)state;
    maas_rng rng;
    maas_rng_init(&rng, 1);
    maas_layer_spec l[2] = {maas_dense(4, MAAS_ACT_RELU), maas_dense(1, MAAS_ACT_SIGMOID)};
    assert_null(maas_model_new(0, l, 2, &rng, err, sizeof(err)));
    assert_mentions(err, "input width");
    assert_null(maas_model_new(8, l, 0, &rng, err, sizeof(err)));
    l[0].units = 0;
    assert_null(maas_model_new(8, l, 2, &rng, err, sizeof(err)));
    assert_mentions(err, "units");
    l[0].units = 60000;
    l[1].units = 60000; /* 3.6e9 parameters */
    assert_null(maas_model_new(60000, l, 2, &rng, err, sizeof(err)));
    assert_mentions(err, "parameters");
    l[0] = maas_dropout(1.0f);
    l[1] = maas_dense(1, MAAS_ACT_LINEAR);
    assert_null(maas_model_new(8, l, 2, &rng, err, sizeof(err)));
    assert_mentions(err, "dropout rate");
    l[0] = maas_dropout(0.5f);
    l[1] = maas_dropout(0.5f);
    assert_null(maas_model_new(8, l, 2, &rng, err, sizeof(err)));
    assert_mentions(err, "Dense");
    l[0] = maas_dense(3, MAAS_ACT_RELU);
    l[1] = maas_dense(3, (maas_act)99);
    assert_null(maas_model_new(8, l, 2, &rng, err, sizeof(err)));
    assert_mentions(err, "activation");
    l[1] = maas_dense(3, MAAS_ACT_RELU);
    snprintf(l[0].name, sizeof(l[0].name), "same");
    snprintf(l[1].name, sizeof(l[1].name), "same");
    assert_null(maas_model_new(8, l, 2, &rng, err, sizeof(err)));
    assert_mentions(err, "duplicate");
    snprintf(l[1].name, sizeof(l[1].name), "a/b");
    assert_null(maas_model_new(8, l, 2, &rng, err, sizeof(err)));
    assert_mentions(err, "'/'");
}

static void test_bad_training_input(void **state) {
    (void)state;
    static toy t;
    make_toy(&t, 10);
    maas_compile c = bce();
    maas_rng rng;
    maas_rng_init(&rng, 11);
    maas_model *m = toy_model(&rng);
    maas_fit_opts o;
    maas_fit_opts_init(&o);
    o.rng = &rng;

    assert_err(MAAS_ERR_EMPTY, maas_fit(m, &c, t.x, t.y, 0, &o, NULL, err, sizeof(err)), err);
    t.x[7] = NAN;
    assert_err(MAAS_ERR_NON_FINITE, maas_fit(m, &c, t.x, t.y, 200, &o, NULL, err, sizeof(err)),
               err);
    assert_mentions(err, "row 3, column 1");
    t.x[7] = 0.0f;
    t.y[5] = INFINITY;
    assert_err(MAAS_ERR_NON_FINITE, maas_fit(m, &c, t.x, t.y, 200, &o, NULL, err, sizeof(err)),
               err);
    t.y[5] = 2.0f;
    assert_err(MAAS_ERR_LABEL_OUT_OF_RANGE,
               maas_fit(m, &c, t.x, t.y, 200, &o, NULL, err, sizeof(err)), err);
    assert_mentions(err, "row 5");
    t.y[5] = 1.0f;
    o.epochs = 0;
    assert_err(MAAS_ERR_INVALID_ARGUMENT,
               maas_fit(m, &c, t.x, t.y, 200, &o, NULL, err, sizeof(err)), err);
    assert_mentions(err, "epochs");
    o.epochs = 1;
    o.validation_split = 1.5f;
    assert_err(MAAS_ERR_INVALID_ARGUMENT,
               maas_fit(m, &c, t.x, t.y, 200, &o, NULL, err, sizeof(err)), err);
    o.validation_split = 0.5f;
    assert_err(MAAS_ERR_EMPTY, maas_fit(m, &c, t.x, t.y, 1, &o, NULL, err, sizeof(err)), err);
    o.validation_split = 0.0f;
    o.early_stopping = 1; /* monitors val_loss by default, and there is no validation data */
    assert_err(MAAS_ERR_INVALID_ARGUMENT,
               maas_fit(m, &c, t.x, t.y, 200, &o, NULL, err, sizeof(err)), err);
    assert_mentions(err, "validation");
    o.monitor = "f1";
    assert_err(MAAS_ERR_INVALID_ARGUMENT,
               maas_fit(m, &c, t.x, t.y, 200, &o, NULL, err, sizeof(err)), err);
    assert_mentions(err, "f1");
    o.early_stopping = 0;
    c.optim.learning_rate = -1.0f;
    assert_err(MAAS_ERR_INVALID_ARGUMENT,
               maas_fit(m, &c, t.x, t.y, 200, &o, NULL, err, sizeof(err)), err);
    assert_mentions(err, "learning rate");
    c = bce();
    c.loss = MAAS_LOSS_CATEGORICAL_CROSSENTROPY; /* one output unit */
    assert_err(MAAS_ERR_SHAPE_MISMATCH, maas_fit(m, &c, t.x, t.y, 200, &o, NULL, err, sizeof(err)),
               err);
    o.rng = NULL;
    c = bce();
    assert_err(MAAS_ERR_INVALID_ARGUMENT,
               maas_fit(m, &c, t.x, t.y, 200, &o, NULL, err, sizeof(err)), err);

    /* sparse labels must be class indices */
    maas_layer_spec l[] = {maas_dense(3, MAAS_ACT_SOFTMAX)};
    maas_model *m3 = maas_model_new(2, l, 1, &rng, err, sizeof(err));
    maas_compile cs = {.loss = MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY};
    maas_optim_defaults(&cs.optim, MAAS_OPT_ADAM);
    float y3[4] = {0, 1, 3, 2};
    o.rng = &rng;
    assert_err(MAAS_ERR_LABEL_OUT_OF_RANGE,
               maas_fit(m3, &cs, t.x, y3, 4, &o, NULL, err, sizeof(err)), err);
    assert_mentions(err, "0..2");
    y3[2] = 1.5f;
    assert_err(MAAS_ERR_LABEL_OUT_OF_RANGE,
               maas_fit(m3, &cs, t.x, y3, 4, &o, NULL, err, sizeof(err)), err);

    /* predict */
    float in[2] = {NAN, 0}, out[3];
    assert_err(MAAS_ERR_NON_FINITE, maas_model_predict(m3, in, 1, out, err, sizeof(err)), err);
    assert_err(MAAS_ERR_EMPTY, maas_model_predict(m3, in, 0, out, err, sizeof(err)), err);

    /* a diverging run stops with an error instead of producing NaN weights */
    c = bce();
    c.optim.learning_rate = 10.0f;
    for (int i = 0; i < 400; i++) t.x[i] *= 1e30f;
    maas_layer_spec lr[] = {maas_dense(4, MAAS_ACT_LINEAR), maas_dense(1, MAAS_ACT_LINEAR)};
    maas_model *mr = maas_model_new(2, lr, 2, &rng, err, sizeof(err));
    maas_compile cm = {.loss = MAAS_LOSS_MSE};
    maas_optim_defaults(&cm.optim, MAAS_OPT_SGD);
    cm.optim.learning_rate = 10.0f;
    o.epochs = 5;
    assert_err(MAAS_ERR_DIVERGED, maas_fit(mr, &cm, t.x, t.y, 200, &o, NULL, err, sizeof(err)),
               err);
    maas_model_free(mr);
    maas_model_free(m3);
    maas_model_free(m);
}

int main(void) {
    maas_blas_set_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng_reproducible),
        cmocka_unit_test(test_initializers),
        cmocka_unit_test(test_activation_values),
        cmocka_unit_test(test_find_nonfinite),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_optimizer_updates),
        cmocka_unit_test(test_update_isas_agree),
        cmocka_unit_test(test_rowvec_within_bound),
        cmocka_unit_test(test_fit_reproducible_and_learns),
        cmocka_unit_test(test_early_stopping_restores_best),
        cmocka_unit_test(test_callbacks_stop_and_cancel),
        cmocka_unit_test(test_standardization_in_predict),
        cmocka_unit_test(test_bad_model_specs),
        cmocka_unit_test(test_bad_training_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
