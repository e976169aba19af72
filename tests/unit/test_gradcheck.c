/*
 * Numerical gradient check of every parameter for every activation x loss
 * pair: the analytic gradient from backward() must match central differences
 * of the library's own loss.
 */
#include "testutil.h"

#define ROWS 8
#define N_IN 4
#define HIDDEN 5

typedef struct {
    int checked, skipped;
} tally;

/* Loss of the current weights. */
static double loss_of(maas_trainer *tr, const float *x, const float *y) {
    char err[MAAS_ERRSTR_SIZE];
    double l;
    assert_ok(maas_trainer_loss(tr, x, y, ROWS, &l, NULL, err, sizeof(err)), err);
    return l;
}

static void check_case(maas_act hidden, maas_act out_act, int k, maas_loss loss, int hidden_bias,
                       int with_dropout, tally *t) {
    char err[MAAS_ERRSTR_SIZE];
    maas_rng rng;
    maas_rng_init(&rng, 1000 + (uint64_t)hidden * 31 + (uint64_t)out_act * 7 + (uint64_t)loss);
    maas_layer_spec specs[3];
    int n = 0;
    specs[n] = maas_dense(HIDDEN, hidden);
    specs[n++].use_bias = hidden_bias;
    if (with_dropout) specs[n++] = maas_dropout(0.3f);
    specs[n++] = maas_dense(k, out_act);
    maas_model *m = maas_model_new(N_IN, specs, n, &rng, err, sizeof(err));
    assert_non_null(m);
    /* Non-zero biases so every code path is exercised. */
    for (int li = 0; li < m->n_layers; li++) {
        float *b = maas_model_bias(m, li);
        for (int j = 0; b && j < m->layers[li].n_out; j++)
            b[j] = (float)(maas_rng_uniform(&rng) - 0.5);
    }
    float x[ROWS * N_IN], y[ROWS * 4];
    for (int i = 0; i < ROWS * N_IN; i++) x[i] = (float)(2.0 * maas_rng_uniform(&rng) - 1.0);
    for (int r = 0; r < ROWS; r++) {
        int cls = (int)maas_rng_below(&rng, (uint64_t)k);
        for (int j = 0; j < k; j++) {
            float *yy = &y[r * k + j];
            switch (loss) {
            case MAAS_LOSS_BINARY_CROSSENTROPY:
                *yy = (float)maas_rng_below(&rng, 2);
                break;
            case MAAS_LOSS_CATEGORICAL_CROSSENTROPY:
                *yy = j == cls ? 1.0f : 0.0f;
                break;
            case MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY:
                y[r] = (float)cls;
                break;
            default:
                *yy = (float)(2.0 * maas_rng_uniform(&rng) - 1.0);
            }
        }
    }
    maas_compile c = {.loss = loss};
    maas_optim_defaults(&c.optim, MAAS_OPT_SGD);
    maas_trainer *tr = maas_trainer_new(m, &c, ROWS, &rng, err, sizeof(err));
    assert_non_null(tr);
    double l;
    const float *g;
    assert_ok(maas_trainer_gradient(tr, x, y, ROWS, &l, &g, err, sizeof(err)), err);
    float *ana = malloc(m->n_params * sizeof(float));
    memcpy(ana, g, m->n_params * sizeof(float));
    for (size_t i = 0; i < m->n_params; i++) {
        double n1 = maas_test_central(loss_of, tr, m, i, 2e-3f, x, y);
        double n2 = maas_test_central(loss_of, tr, m, i, 1e-3f, x, y);
        /* Two step sizes disagree only where the loss has a kink (relu at 0, mae at
         * 0, a clipping boundary) within reach: a finite difference means nothing
         * there, so the parameter is skipped (and counted). */
        if (fabs(n1 - n2) > 2e-4 + 1e-2 * fabs(n1)) {
            t->skipped++;
            continue;
        }
        double a = ana[i];
        if (fabs(a - n2) > 5e-4 + 2e-2 * fmax(fabs(a), fabs(n2)))
            fail_msg("hidden %s, output %s, loss %s: param %zu analytic %.6g numeric %.6g",
                     maas_act_name(hidden), maas_act_name(out_act), maas_loss_name(loss), i, a, n2);
        t->checked++;
    }
    free(ana);
    maas_trainer_free(tr);
    maas_model_free(m);
}

/* The output activations each loss is checked with: its natural (fused) one,
 * an unfused probability output, and for regression losses every activation. */
static void test_every_activation_and_loss(void **state) {
    (void)state;
    tally t = {0, 0};
    int cases = 0;
    for (int a = 0; a < MAAS_ACT__COUNT; a++) {
        int bias = a % 2 == 0, drop = a % 3 == 0;
        /* binary CE: fused sigmoid and unfused softmax outputs */
        check_case((maas_act)a, MAAS_ACT_SIGMOID, 2, MAAS_LOSS_BINARY_CROSSENTROPY, bias, drop, &t);
        check_case((maas_act)a, MAAS_ACT_SOFTMAX, 3, MAAS_LOSS_BINARY_CROSSENTROPY, bias, drop, &t);
        /* categorical CE and sparse: fused softmax and unfused sigmoid */
        for (int l = MAAS_LOSS_CATEGORICAL_CROSSENTROPY;
             l <= MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY; l++) {
            check_case((maas_act)a, MAAS_ACT_SOFTMAX, 3, (maas_loss)l, bias, drop, &t);
            check_case((maas_act)a, MAAS_ACT_SIGMOID, 3, (maas_loss)l, bias, drop, &t);
        }
        /* regression losses with this activation as the output too */
        check_case((maas_act)a, (maas_act)a, 3, MAAS_LOSS_MSE, bias, drop, &t);
        check_case((maas_act)a, (maas_act)a, 3, MAAS_LOSS_MAE, bias, drop, &t);
        cases += 8;
    }
    print_message("gradcheck: %d cases, %d parameters checked, %d skipped at kinks\n", cases,
                  t.checked, t.skipped);
    assert_true(t.checked > 1000);
    assert_true(t.skipped * 50 < t.checked); /* under 2% */
}

int main(void) {
    maas_blas_set_threads(1);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_every_activation_and_loss)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
