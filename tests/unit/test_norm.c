/*
 * BatchNormalization's kernels (maas/norm.h) against a double-precision implementation written
 * here from Keras 3's definition: inference by the moving statistics, training by the batch's
 * (biased variance) with the moving statistics' update, and the training-mode gradients
 * (dx, dgamma, dbeta) against central finite differences of that double forward pass.
 */
#include "testutil.h"

#include "maas/norm.h"

enum { ROWS = 5, S = 3, C = 4 };
#define N ((size_t)ROWS * S * C)

/* Channel k's mean and biased variance over the batch, in double. */
static void stats(const double *x, int k, double *mean, double *var) {
    double m = 0, v = 0;
    for (size_t i = 0; i < (size_t)ROWS * S; i++) m += x[i * C + k];
    m /= ROWS * S;
    for (size_t i = 0; i < (size_t)ROWS * S; i++) v += (x[i * C + k] - m) * (x[i * C + k] - m);
    *mean = m;
    *var = v / (ROWS * S);
}

/* L = sum_j w_j y_j of the training-mode normalization of x, in double. */
static double loss(const double *x, const double *gamma, const double *beta, const double *w,
                   double eps) {
    double l = 0;
    for (int k = 0; k < C; k++) {
        double mean, var;
        stats(x, k, &mean, &var);
        for (size_t i = 0; i < (size_t)ROWS * S; i++)
            l += w[i * C + k] * (gamma[k] * (x[i * C + k] - mean) / sqrt(var + eps) + beta[k]);
    }
    return l;
}

static void test_inference(void **state) {
    (void)state;
    float *x = maas_test_random_inputs(N, 1, -3, 3),
          *gamma = maas_test_random_inputs(C, 2, 0.5f, 2);
    float *beta = maas_test_random_inputs(C, 3, -1, 1),
          *mean = maas_test_random_inputs(C, 4, -1, 1);
    float *var = maas_test_random_inputs(C, 5, 0.1f, 3), y[N];
    maas_bn_params p = {.c = C, .epsilon = 0.001f, .momentum = 0.99f, .gamma = gamma, .beta = beta};
    maas_bn_infer(&p, x, ROWS, S, mean, var, y);
    for (size_t j = 0; j < N; j++) {
        int k = (int)(j % C);
        double exact =
            gamma[k] * ((double)x[j] - mean[k]) / sqrt((double)var[k] + (double)0.001f) + beta[k];
        assert_true(fabs(y[j] - exact) <= 1e-5 * (1 + fabs(exact)));
    }
    /* no scale, no center: gamma 1 and beta 0 */
    p.gamma = p.beta = NULL;
    maas_bn_infer(&p, x, ROWS, S, mean, var, y);
    for (size_t j = 0; j < N; j++) {
        int k = (int)(j % C);
        double exact = ((double)x[j] - mean[k]) / sqrt((double)var[k] + (double)0.001f);
        assert_true(fabs(y[j] - exact) <= 1e-5 * (1 + fabs(exact)));
    }
    free(x);
    free(gamma);
    free(beta);
    free(mean);
    free(var);
}

static void test_training_and_gradients(void **state) {
    (void)state;
    float *x = maas_test_random_inputs(N, 11, -2, 4),
          *gamma = maas_test_random_inputs(C, 12, 0.5f, 2);
    float *beta = maas_test_random_inputs(C, 13, -1, 1), *w = maas_test_random_inputs(N, 14, -1, 1);
    float y[N], xhat[N], inv_std[C], mm[C], mv[C], dx[N], dg[C], db[C];
    for (int k = 0; k < C; k++) mm[k] = 0.25f * k, mv[k] = 1.0f + k;
    const float eps = 0.001f, mom = 0.99f;
    maas_bn_params p = {.c = C, .epsilon = eps, .momentum = mom, .gamma = gamma, .beta = beta};
    maas_bn_train(&p, x, ROWS, S, y, xhat, inv_std, mm, mv);
    double xd[N], g[C], b[C], wd[N];
    for (size_t j = 0; j < N; j++) xd[j] = x[j], wd[j] = w[j];
    for (int k = 0; k < C; k++) g[k] = gamma[k], b[k] = beta[k];
    for (int k = 0; k < C; k++) {
        double mean, var;
        stats(xd, k, &mean, &var);
        /* Keras 3: the moving statistics move by the batch's mean and biased variance */
        assert_true(fabs(mm[k] - (0.25 * k * mom + mean * (1 - mom))) <= 1e-6 * (1 + fabs(mean)));
        assert_true(fabs(mv[k] - ((1.0 + k) * mom + var * (1 - mom))) <= 1e-6 * (1 + var));
        for (size_t i = 0; i < (size_t)ROWS * S; i++) {
            double exact = g[k] * (xd[i * C + k] - mean) / sqrt(var + eps) + b[k];
            assert_true(fabs(y[i * C + k] - exact) <= 1e-5 * (1 + fabs(exact)));
        }
    }
    /* dL/dy = w; the gradients against central differences of the double forward pass */
    maas_bn_backward(&p, w, ROWS, S, xhat, inv_std, dg, db, dx);
    const double h = 1e-6;
    for (size_t j = 0; j < N; j++) {
        double keep = xd[j];
        xd[j] = keep + h;
        double up = loss(xd, g, b, wd, eps);
        xd[j] = keep - h;
        double down = loss(xd, g, b, wd, eps);
        xd[j] = keep;
        double fd = (up - down) / (2 * h);
        assert_true(fabs(dx[j] - fd) <= 1e-4 * (1 + fabs(fd)));
    }
    for (int k = 0; k < C; k++) {
        double keep = g[k];
        g[k] = keep + h;
        double up = loss(xd, g, b, wd, eps);
        g[k] = keep - h;
        double down = loss(xd, g, b, wd, eps);
        g[k] = keep;
        assert_true(fabs(dg[k] - (up - down) / (2 * h)) <= 1e-4 * (1 + fabs(dg[k])));
        keep = b[k];
        b[k] = keep + h;
        up = loss(xd, g, b, wd, eps);
        b[k] = keep - h;
        down = loss(xd, g, b, wd, eps);
        b[k] = keep;
        assert_true(fabs(db[k] - (up - down) / (2 * h)) <= 1e-4 * (1 + fabs(db[k])));
    }
    /* without moving statistics or scale: the same normalization, nothing else touched */
    float y2[N];
    p.gamma = p.beta = NULL;
    maas_bn_train(&p, x, ROWS, S, y2, xhat, inv_std, NULL, NULL);
    for (size_t j = 0; j < N; j++) assert_true(y2[j] == xhat[j]);
    maas_bn_backward(&p, w, ROWS, S, xhat, inv_std, NULL, NULL, dx);
    free(x);
    free(gamma);
    free(beta);
    free(w);
}

/* Channels are independent: 300 channels at once (more than one block of the kernels) give,
 * bit for bit, what each channel alone gives - the same sums in the same order. */
static void test_channel_blocks(void **state) {
    (void)state;
    enum { R = 3, SP = 2, CC = 300 };
    size_t n = (size_t)R * SP * CC, n1 = (size_t)R * SP;
    float *x = maas_test_random_inputs(n, 7, -2, 2), *dy = maas_test_random_inputs(n, 8, -1, 1);
    float *gamma = maas_test_random_inputs(CC, 9, 0.5f, 2),
          *beta = maas_test_random_inputs(CC, 10, -1, 1);
    float *y = malloc(n * sizeof(float)), *xh = malloc(n * sizeof(float)), inv[CC], mm[CC], mv[CC];
    float dg[CC], db[CC], *dx = malloc(n * sizeof(float)), *yi = malloc(n * sizeof(float));
    assert_true(y && xh && dx && yi);
    for (int k = 0; k < CC; k++) mm[k] = 0.1f * (float)k, mv[k] = 1.0f + 0.01f * (float)k;
    maas_bn_params p = {.c = CC, .epsilon = 0.001f, .momentum = 0.9f, .gamma = gamma, .beta = beta};
    maas_bn_infer(&p, x, R, SP, mm, mv, yi);
    maas_bn_train(&p, x, R, SP, y, xh, inv, mm, mv);
    maas_bn_backward(&p, dy, R, SP, xh, inv, dg, db, dx);
    for (int k = 0; k < CC; k++) {
        float x1[R * SP], dy1[R * SP], y1[R * SP], xh1[R * SP], dx1[R * SP], yi1[R * SP];
        float inv1, mm1 = 0.1f * (float)k, mv1 = 1.0f + 0.01f * (float)k, dg1, db1;
        for (size_t i = 0; i < n1; i++) x1[i] = x[i * CC + k], dy1[i] = dy[i * CC + k];
        maas_bn_params p1 = {
            .c = 1, .epsilon = 0.001f, .momentum = 0.9f, .gamma = gamma + k, .beta = beta + k};
        maas_bn_infer(&p1, x1, R, SP, &mm1, &mv1, yi1);
        maas_bn_train(&p1, x1, R, SP, y1, xh1, &inv1, &mm1, &mv1);
        maas_bn_backward(&p1, dy1, R, SP, xh1, &inv1, &dg1, &db1, dx1);
        assert_true(inv1 == inv[k] && mm1 == mm[k] && mv1 == mv[k] && dg1 == dg[k] && db1 == db[k]);
        for (size_t i = 0; i < n1; i++)
            assert_true(y1[i] == y[i * CC + k] && xh1[i] == xh[i * CC + k] &&
                        dx1[i] == dx[i * CC + k] && yi1[i] == yi[i * CC + k]);
    }
    free(x);
    free(dy);
    free(gamma);
    free(beta);
    free(y);
    free(xh);
    free(dx);
    free(yi);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inference),
        cmocka_unit_test(test_training_and_gradients),
        cmocka_unit_test(test_channel_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
