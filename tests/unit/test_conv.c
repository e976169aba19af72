/*
 * Convolution and pooling kernels (maas/conv.h) against direct loops in double written here
 * from Keras's definitions: output sizes and padding ("valid", "same", strides, 1-D as 2-D
 * with H = 1), the convolution and its three gradients (kernel, bias, input) within float32
 * summation error, max pooling (the first maximum takes the gradient) and average pooling
 * (padding not counted), exactly; refused geometries; a convolution layer at inference on
 * each path a model runs it (oneDNN's direct convolution, im2col + GEMM).
 */
#include "fpbound.h"
#include "testutil.h"

#include "maas/conv.h"

/* The output's position (oy, ox) window cell (ky, kx) as an input index, or -1 for padding. */
static long in_index(const maas_conv_geom *g, int oy, int ox, int ky, int kx, int ci) {
    int iy = oy * g->sh + ky - g->pt, ix = ox * g->sw + kx - g->pl;
    if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w) return -1;
    return ((long)iy * g->w + ix) * g->c + ci;
}

/* Float32 summation of n products, each term's magnitude summed into mag: |error| <= n u mag
 * plus the rounding of the result, u = 2^-24 (Higham's gamma_n, n u < 1). */
static double bound(int n, double mag) {
    double u = 0x1p-24;
    return (n + 2) * u / (1 - (n + 2) * u) * mag + 1e-30;
}

/* TensorFlow's "same": the padding a window needs, its smaller half before. */
static void check_padding(const maas_conv_geom *g) {
    int ph = (g->oh - 1) * g->sh + g->kh - g->h, pw = (g->ow - 1) * g->sw + g->kw - g->w;
    assert_int_equal(g->pt, g->same && ph > 0 ? ph / 2 : 0);
    assert_int_equal(g->pl, g->same && pw > 0 ? pw / 2 : 0);
}

static void check_conv(int h, int w, int c, int kh, int kw, int sh, int sw, int same, int f,
                       size_t rows, uint64_t seed) {
    char err[MAAS_ERRSTR_SIZE];
    maas_conv_geom g = {
        .h = h, .w = w, .c = c, .kh = kh, .kw = kw, .sh = sh, .sw = sw, .same = same, .f = f};
    assert_ok(maas_conv_geom_init(&g, err, sizeof(err)), err);
    /* Keras's sizes, written out */
    int oh = same ? (h + sh - 1) / sh : (h - kh) / sh + 1;
    int ow = same ? (w + sw - 1) / sw : (w - kw) / sw + 1;
    assert_int_equal(g.oh, oh);
    assert_int_equal(g.ow, ow);
    check_padding(&g);
    size_t in = (size_t)h * w * c, out = maas_conv_out_floats(&g), kn = (size_t)kh * kw * c * f;
    float *x = maas_test_random_inputs(rows * in, seed, -1, 1);
    float *k = maas_test_random_inputs(kn, seed + 1, -0.5f, 0.5f);
    float *b = maas_test_random_inputs((size_t)f, seed + 2, -0.5f, 0.5f);
    float *dy = maas_test_random_inputs(rows * out, seed + 3, -1, 1);
    float *col = malloc(maas_conv_col_floats(&g, rows) * sizeof(float));
    float *y = malloc(rows * out * sizeof(float)), *dk = malloc(kn * sizeof(float));
    float *db = malloc((size_t)f * sizeof(float)), *dx = malloc(rows * in * sizeof(float));
    assert_true(col && y && dk && db && dx);
    maas_conv_forward(&g, x, rows, k, b, col, y);
    int terms = kh * kw * c + 1;
    for (size_t r = 0; r < rows; r++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                for (int fo = 0; fo < f; fo++) {
                    double s = b[fo], mag = fabs(b[fo]);
                    for (int ky = 0; ky < kh; ky++)
                        for (int kx = 0; kx < kw; kx++)
                            for (int ci = 0; ci < c; ci++) {
                                long i = in_index(&g, oy, ox, ky, kx, ci);
                                if (i < 0) continue;
                                double p = (double)x[r * in + (size_t)i] *
                                           k[(((size_t)ky * kw + kx) * c + ci) * f + fo];
                                s += p;
                                mag += fabs(p);
                            }
                    double got = y[r * out + ((size_t)oy * ow + ox) * f + fo];
                    assert_true(fabs(got - s) <= bound(terms, mag));
                }
    maas_conv_backward(&g, x, rows, k, dy, col, dk, db, dx, 0);
    /* the same batch in two chunks, the second adding to the first (a trainer's large batch) */
    float *dkc = malloc(kn * sizeof(float)), *dbc = malloc((size_t)f * sizeof(float));
    assert_true(dkc && dbc);
    size_t r1 = rows > 1 ? rows / 2 : rows;
    maas_conv_backward(&g, x, r1, k, dy, col, dkc, dbc, NULL, 0);
    if (rows > r1)
        maas_conv_backward(&g, x + r1 * in, rows - r1, k, dy + r1 * out, col, dkc, dbc, NULL, 1);
    /* dK[ky,kx,ci,fo] = sum over samples and positions of x . dy */
    int positions = (int)rows * oh * ow;
    for (int ky = 0; ky < kh; ky++)
        for (int kx = 0; kx < kw; kx++)
            for (int ci = 0; ci < c; ci++)
                for (int fo = 0; fo < f; fo++) {
                    double s = 0, mag = 0;
                    for (size_t r = 0; r < rows; r++)
                        for (int oy = 0; oy < oh; oy++)
                            for (int ox = 0; ox < ow; ox++) {
                                long i = in_index(&g, oy, ox, ky, kx, ci);
                                if (i < 0) continue;
                                double p = (double)x[r * in + (size_t)i] *
                                           dy[r * out + ((size_t)oy * ow + ox) * f + fo];
                                s += p;
                                mag += fabs(p);
                            }
                    size_t at = (((size_t)ky * kw + kx) * c + ci) * f + fo;
                    assert_true(fabs(dk[at] - s) <= bound(positions, mag));
                    assert_true(fabs(dkc[at] - s) <= bound(positions, mag));
                }
    for (int fo = 0; fo < f; fo++) {
        double s = 0, mag = 0;
        for (size_t p = 0; p < (size_t)positions; p++) {
            s += dy[p * f + fo];
            mag += fabs(dy[p * f + fo]);
        }
        assert_true(fabs(db[fo] - s) <= bound(positions, mag));
        assert_true(fabs(dbc[fo] - s) <= bound(positions, mag));
    }
    free(dkc);
    free(dbc);
    /* dx: every window cell that read x[i] sends back dy . k */
    double *ex = calloc(rows * in, sizeof(double)), *em = calloc(rows * in, sizeof(double));
    assert_true(ex && em);
    for (size_t r = 0; r < rows; r++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                for (int ky = 0; ky < kh; ky++)
                    for (int kx = 0; kx < kw; kx++)
                        for (int ci = 0; ci < c; ci++) {
                            long i = in_index(&g, oy, ox, ky, kx, ci);
                            if (i < 0) continue;
                            for (int fo = 0; fo < f; fo++) {
                                double p = (double)dy[r * out + ((size_t)oy * ow + ox) * f + fo] *
                                           k[(((size_t)ky * kw + kx) * c + ci) * f + fo];
                                ex[r * in + (size_t)i] += p;
                                em[r * in + (size_t)i] += fabs(p);
                            }
                        }
    /* each cell's sum: f products per window covering it, and the col2im additions */
    int cover = (kh / sh + 1) * (kw / sw + 1) + 1;
    for (size_t i = 0; i < rows * in; i++)
        assert_true(fabs(dx[i] - ex[i]) <= bound(f * cover + cover, em[i]));
    /* without a bias or an input gradient: the same kernel gradient */
    float *dk2 = malloc(kn * sizeof(float));
    assert_non_null(dk2);
    maas_conv_backward(&g, x, rows, k, dy, col, dk2, NULL, NULL, 0);
    assert_memory_equal(dk, dk2, kn * sizeof(float));
    free(ex);
    free(em);
    free(dk2);
    free(x);
    free(k);
    free(b);
    free(dy);
    free(col);
    free(y);
    free(dk);
    free(db);
    free(dx);
}

static void test_convolution(void **state) {
    (void)state;
    check_conv(7, 6, 3, 3, 3, 1, 1, 0, 4, 2, 1);   /* valid */
    check_conv(7, 6, 3, 3, 3, 1, 1, 1, 4, 2, 2);   /* same */
    check_conv(9, 8, 2, 3, 2, 2, 3, 1, 5, 3, 3);   /* same, strides, odd padding */
    check_conv(9, 8, 2, 4, 4, 2, 2, 0, 3, 1, 4);   /* valid, strides */
    check_conv(1, 20, 4, 1, 5, 1, 2, 1, 6, 2, 5);  /* 1-D: H = 1 */
    check_conv(28, 28, 1, 3, 3, 1, 1, 0, 8, 2, 6); /* a Fashion image's first layer */
    check_conv(5, 5, 1, 5, 5, 1, 1, 0, 2, 2, 7);   /* the window is the image */
}

static void check_pool(int h, int w, int c, int ph, int pw, int sh, int sw, int same, size_t rows,
                       uint64_t seed) {
    char err[MAAS_ERRSTR_SIZE];
    maas_conv_geom g = {
        .h = h, .w = w, .c = c, .kh = ph, .kw = pw, .sh = sh, .sw = sw, .same = same, .f = c};
    assert_ok(maas_conv_geom_init(&g, err, sizeof(err)), err);
    assert_int_equal(g.oh, same ? (h + sh - 1) / sh : (h - ph) / sh + 1);
    assert_int_equal(g.ow, same ? (w + sw - 1) / sw : (w - pw) / sw + 1);
    check_padding(&g);
    size_t in = (size_t)h * w * c, out = maas_conv_out_floats(&g);
    float *x = maas_test_random_inputs(rows * in, seed, -1, 1);
    x[0] = x[c] = 2; /* a tie for the first window's maximum: the first cell takes the gradient */
    float *dy = maas_test_random_inputs(rows * out, seed + 1, -1, 1);
    float *y = malloc(rows * out * sizeof(float)), *dx = malloc(rows * in * sizeof(float));
    int32_t *am = malloc(rows * out * sizeof(int32_t));
    double *ex = calloc(rows * in, sizeof(double));
    assert_true(y && dx && am && ex);
    maas_maxpool_forward(&g, x, rows, y, am);
    maas_maxpool_backward(&g, dy, rows, am, dx);
    for (size_t r = 0; r < rows; r++)
        for (int oy = 0; oy < g.oh; oy++)
            for (int ox = 0; ox < g.ow; ox++)
                for (int ci = 0; ci < c; ci++) {
                    long best = -1;
                    for (int ky = 0; ky < ph; ky++)
                        for (int kx = 0; kx < pw; kx++) {
                            long i = in_index(&g, oy, ox, ky, kx, ci);
                            if (i >= 0 &&
                                (best < 0 || x[r * in + (size_t)i] > x[r * in + (size_t)best]))
                                best = i;
                        }
                    size_t o = r * out + ((size_t)oy * g.ow + ox) * c + ci;
                    assert_true(best >= 0 && y[o] == x[r * in + (size_t)best]);
                    ex[r * in + (size_t)best] += dy[o];
                }
    for (size_t i = 0; i < rows * in; i++)
        assert_true(fabs(dx[i] - ex[i]) <= 1e-6 * (1 + fabs(ex[i])));
    /* average: the mean of the window's cells that are not padding, and back */
    maas_avgpool_forward(&g, x, rows, y);
    maas_avgpool_backward(&g, dy, rows, dx);
    memset(ex, 0, rows * in * sizeof(double));
    for (size_t r = 0; r < rows; r++)
        for (int oy = 0; oy < g.oh; oy++)
            for (int ox = 0; ox < g.ow; ox++)
                for (int ci = 0; ci < c; ci++) {
                    double s = 0;
                    int n = 0;
                    for (int ky = 0; ky < ph; ky++)
                        for (int kx = 0; kx < pw; kx++) {
                            long i = in_index(&g, oy, ox, ky, kx, ci);
                            if (i < 0) continue;
                            s += x[r * in + (size_t)i];
                            n++;
                        }
                    size_t o = r * out + ((size_t)oy * g.ow + ox) * c + ci;
                    assert_true(n > 0 && fabs(y[o] - s / n) <= bound(n + 1, s < 0 ? -s : s) + 1e-7);
                    for (int ky = 0; ky < ph; ky++)
                        for (int kx = 0; kx < pw; kx++) {
                            long i = in_index(&g, oy, ox, ky, kx, ci);
                            if (i >= 0) ex[r * in + (size_t)i] += dy[o] / n;
                        }
                }
    for (size_t i = 0; i < rows * in; i++)
        assert_true(fabs(dx[i] - ex[i]) <= 1e-6 * (1 + fabs(ex[i])));
    free(x);
    free(dy);
    free(y);
    free(dx);
    free(am);
    free(ex);
}

static void test_pooling(void **state) {
    (void)state;
    check_pool(8, 8, 3, 2, 2, 2, 2, 0, 2, 11); /* Keras's default: 2x2, strides 2, valid */
    check_pool(7, 7, 2, 2, 2, 2, 2, 0, 2, 12); /* the odd last row and column dropped */
    check_pool(7, 5, 2, 3, 3, 2, 2, 1, 2, 13); /* same: padded windows at the edges */
    check_pool(6, 6, 1, 3, 3, 1, 1, 1, 1, 14); /* overlapping windows */
    check_pool(1, 9, 4, 1, 2, 1, 2, 1, 3, 15); /* 1-D */
}

static void test_refusals(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    maas_conv_geom g = {.h = 4, .w = 4, .c = 1, .kh = 5, .kw = 3, .sh = 1, .sw = 1, .f = 2};
    assert_err(MAAS_ERR_SHAPE_MISMATCH, maas_conv_geom_init(&g, err, sizeof(err)), err);
    assert_mentions(err, "does not fit a 4x4 input");
    g.same = 1; /* padding makes it fit */
    assert_ok(maas_conv_geom_init(&g, err, sizeof(err)), err);
    assert_true(g.oh == 4 && g.ow == 4 && g.pt == 2 && g.pl == 1);
    g.sh = 0;
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_conv_geom_init(&g, err, sizeof(err)), err);
    assert_mentions(err, "stride height");
    g.sh = 1;
    g.f = MAAS_CONV_MAX_DIM + 1;
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_conv_geom_init(&g, err, sizeof(err)), err);
    assert_mentions(err, "filters");
}

/*
 * A convolution layer inside a model at inference, on every path it takes: a batch of 37
 * samples runs 32 through oneDNN's direct convolution (where MAAS_FLOAT_GEMM is onednn; relu
 * fused) and 5 through im2col + GEMM; one sample alone through im2col + sgemm. Each output
 * against the exact sum in double on the same float32 inputs and weights: within
 * gamma_{k+1} (sum_k |x_k w_kj| + |b_j|) for any order and blocking (relu and linear add no
 * error). Paddings TensorFlow puts unevenly (even windows, strides) included.
 */
static void test_inference_paths(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    static const struct {
        const char *layers;
        int n_in;
    } cases[] = {
        {"reshape:9x7x3,conv2d:6:2x2:relu:same,flatten", 189},
        {"reshape:9x7x3,conv2d:5:4x3:s2x2:same:nobias,flatten", 189},
        {"reshape:10x10x2,conv2d:33:3x3:s3x2,flatten", 200},
        {"reshape:16x3,conv1d:4:4:relu:same,flatten", 48},
        {"reshape:28x28x1,conv2d:32:3x3:relu,flatten", 784},
    };
    const int rows = 37;
    for (size_t c = 0; c < MAAS_ARRAY_LEN(cases); c++) {
        maas_model *m = maas_test_layers_model(cases[c].layers, cases[c].n_in, 80 + c);
        const maas_layer *l = &m->layers[1];
        const maas_conv_geom *g = &l->geom;
        int k = g->kh * g->kw * g->c, f = g->f, pos = g->oh * g->ow;
        float *x = maas_test_random_inputs((size_t)rows * m->n_inputs, 90 + c, -1.0f, 1.0f);
        float *y = malloc((size_t)rows * m->n_outputs * sizeof(float));
        float *y1 = malloc((size_t)m->n_outputs * sizeof(float));
        float *col = malloc(maas_conv_col_floats(g, (size_t)rows) * sizeof(float));
        assert_ok(maas_model_predict(m, x, (size_t)rows, y, err, sizeof(err)), err);
        maas_conv_im2col(g, x, (size_t)rows, col);
        const float *w = m->params + l->w_off, *b = l->spec.use_bias ? m->params + l->b_off : NULL;
        int relu = l->spec.act == MAAS_ACT_RELU;
        double worst = 0.0;
        for (int r = 0; r < rows; r++) {
            if (r % 12 == 0) /* alone, through the other path */
                assert_ok(
                    maas_model_predict(m, x + (size_t)r * m->n_inputs, 1, y1, err, sizeof(err)),
                    err);
            for (int p = 0; p < pos; p++)
                for (int j = 0; j < f; j++) {
                    const float *win = col + ((size_t)r * pos + p) * k;
                    double z = b ? b[j] : 0.0, mag = b ? fabs(b[j]) : 0.0;
                    for (int q = 0; q < k; q++) {
                        z += (double)win[q] * w[(size_t)q * f + j];
                        mag += fabs((double)win[q] * w[(size_t)q * f + j]);
                    }
                    if (relu) z = z > 0.0 ? z : 0.0;
                    double bound = maas_test_gamma(k + 1) * mag * 1.01 + 1e-30;
                    size_t at = (size_t)p * f + j;
                    double d = fabs(y[(size_t)r * m->n_outputs + at] - z);
                    if (r % 12 == 0) d = fmax(d, fabs(y1[at] - z));
                    if (d > bound)
                        fail_msg("%s: sample %d, position %d, filter %d: %.9g vs exact %.9g "
                                 "(bound %.3g)",
                                 cases[c].layers, r, p, j, (double)y[(size_t)r * m->n_outputs + at],
                                 z, bound);
                    worst = fmax(worst, d / bound);
                }
        }
        print_message("%s: within %.3f of the float32 bound\n", cases[c].layers, worst);
        free(x);
        free(y);
        free(y1);
        free(col);
        maas_model_free(m);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_convolution),
        cmocka_unit_test(test_pooling),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_inference_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
