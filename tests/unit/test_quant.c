/*
 * int8 quantization and pruning: the quantize -> dequantize error per channel,
 * the VNNI and portable kernels against a plain reference, int8 inference
 * against float, row independence, model files, pruning and its mask; the same for
 * convolutions (per filter, each window its own input scale) in CNNs.
 */
#include "fpbound.h"
#include "testutil.h"

#include "maas/conv.h"
#include "maas/model_io.h"
#include "maas/quant.h"

static void test_quantize_error_per_channel(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    maas_layer_spec l[] = {maas_dense(37, MAAS_ACT_RELU), maas_dense(5, MAAS_ACT_LINEAR)};
    maas_model *m = maas_test_random_model(13, l, 2, 1);
    maas_model *f = maas_model_clone(m, err, sizeof(err));
    assert_ok(maas_quantize(m, err, sizeof(err)), err);
    assert_true(maas_model_is_quantized(m));
    for (int i = 0; i < m->n_layers; i++) {
        const maas_qlayer *q = &m->quant->layers[i];
        const maas_layer *ml = &m->layers[i];
        for (int j = 0; j < ml->n_out; j++) {
            float amax = 0.0f;
            for (int k = 0; k < ml->n_in; k++)
                amax = fmaxf(amax, fabsf(f->params[ml->w_off + (size_t)k * ml->n_out + j]));
            assert_true(fabsf(q->scale[j] - amax / 127.0f) <= 1e-7f * amax);
            for (int k = 0; k < ml->n_in; k++) {
                size_t at = (size_t)k * ml->n_out + j;
                float w = f->params[ml->w_off + at], d = m->params[ml->w_off + at];
                /* the dequantized weight is what the int8 path uses, within half a step */
                assert_true(d == (float)q->wq[at] * q->scale[j]);
                assert_true(fabsf(w - d) <= 0.5f * q->scale[j] * (1.0f + 1e-5f));
            }
        }
        /* biases are kept in float, untouched */
        if (ml->spec.use_bias)
            assert_memory_equal(m->params + ml->b_off, f->params + ml->b_off,
                                (size_t)ml->n_out * sizeof(float));
    }
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_quantize(m, err, sizeof(err)), err);
    assert_mentions(err, "already");
    maas_model_free(m);
    maas_model_free(f);
}

/* acc from wq directly (not the packed layout) */
static void reference_gemm(const maas_qlayer *l, const uint8_t *x, int ldx, int rows, int32_t *acc,
                           int ldc) {
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < l->n_out; j++) {
            int32_t s = 0;
            for (int k = 0; k < l->n_in; k++)
                s += (int32_t)x[(size_t)r * ldx + k] * l->wq[(size_t)k * l->n_out + j];
            acc[(size_t)r * ldc + j] = s;
        }
}

static void test_kernels_agree_exactly(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    const int shapes[][2] = {{13, 37}, {784, 256}, {256, 128}, {128, 10}, {1, 1}, {8, 10}, {5, 70}};
    const int rows_list[] = {1, 2, 5, 6, 7, 13, 32, 64, 100, 1024 + 37};
    print_message("int8 kernel on this CPU: %s\n", maas_qkernel_name(MAAS_QKERNEL_AUTO));
    for (size_t s = 0; s < MAAS_ARRAY_LEN(shapes); s++) {
        maas_layer_spec l[] = {maas_dense(shapes[s][1], MAAS_ACT_LINEAR)};
        maas_model *m = maas_test_random_model(shapes[s][0], l, 1, 10 + s);
        assert_ok(maas_quantize(m, err, sizeof(err)), err);
        const maas_qlayer *q = &m->quant->layers[0];
        int ldx = 4 * q->kg, ldc = 16 * q->nb;
        maas_rng rng;
        maas_rng_init(&rng, 99 + s);
        for (size_t ri = 0; ri < MAAS_ARRAY_LEN(rows_list); ri++) {
            int rows = rows_list[ri];
            uint8_t *x = calloc((size_t)rows * ldx, 1);
            for (int r = 0; r < rows; r++)
                for (int k = 0; k < q->n_in; k++)
                    x[(size_t)r * ldx + k] = (uint8_t)maas_rng_below(&rng, 256);
            int32_t *a = calloc((size_t)rows * ldc, sizeof(int32_t));
            int32_t *b = calloc((size_t)rows * ldc, sizeof(int32_t));
            int32_t *c = calloc((size_t)rows * ldc, sizeof(int32_t));
            int32_t *d = calloc((size_t)rows * ldc, sizeof(int32_t));
            reference_gemm(q, x, ldx, rows, a, ldc);
            maas_qgemm(MAAS_QKERNEL_PORTABLE, q, x, ldx, rows, b, ldc);
            maas_qgemm(MAAS_QKERNEL_VNNI, q, x, ldx, rows, c, ldc);
            maas_qgemm(MAAS_QKERNEL_AUTO, q, x, ldx, rows, d, ldc); /* oneDNN for >= 32 rows */
            for (int r = 0; r < rows; r++)
                for (int j = 0; j < q->n_out; j++) {
                    size_t at = (size_t)r * ldc + j;
                    if (a[at] != b[at] || a[at] != c[at] || a[at] != d[at])
                        fail_msg("%dx%d, %d rows: row %d unit %d: reference %d, portable %d, "
                                 "vnni %d, auto %d",
                                 q->n_in, q->n_out, rows, r, j, a[at], b[at], c[at], d[at]);
                }
            free(x);
            free(a);
            free(b);
            free(c);
            free(d);
        }
        maas_model_free(m);
    }
}

/* The largest |difference| of two models' outputs (rows x cols), and on how many rows their
 * argmax agrees. */
static double compare_probs(const float *a, const float *b, size_t rows, int cols, int *agree) {
    double maxd = 0.0;
    *agree = 0;
    for (size_t r = 0; r < rows; r++) {
        int ia = 0, ib = 0;
        for (int j = 0; j < cols; j++) {
            maxd = fmax(maxd, fabs((double)a[r * cols + j] - b[r * cols + j]));
            if (a[r * cols + j] > a[r * cols + ia]) ia = j;
            if (b[r * cols + j] > b[r * cols + ib]) ib = j;
        }
        *agree += ia == ib;
    }
    return maxd;
}

/*
 * Float vs int8 on the Fashion-MNIST shape with inputs in [0, 1] (pixels):
 * the stated tolerance is 0.03 absolute on softmax probabilities and the
 * argmax agreeing on >= 97% of rows (random weights; trained models do
 * better, see bench/).
 */
static void test_int8_matches_float(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    maas_layer_spec l[] = {maas_dense(256, MAAS_ACT_RELU), maas_dense(128, MAAS_ACT_RELU),
                           maas_dense(10, MAAS_ACT_SOFTMAX)};
    maas_model *f = maas_test_random_model(784, l, 3, 7);
    maas_model *q = maas_model_clone(f, err, sizeof(err));
    assert_ok(maas_quantize(q, err, sizeof(err)), err);
    size_t rows = 300;
    float *x = maas_test_random_inputs(rows * 784, 8, 0.0f, 1.0f);
    float *yf = malloc(rows * 10 * sizeof(float)), *yq = malloc(rows * 10 * sizeof(float));
    float *yp = malloc(rows * 10 * sizeof(float));
    assert_ok(maas_model_predict(f, x, rows, yf, err, sizeof(err)), err);
    maas_infer *inf = maas_infer_new(q, 64, err, sizeof(err));
    assert_non_null(inf);
    assert_ok(maas_infer_run(inf, x, rows, yq, err, sizeof(err)), err);
    maas_infer_set_qkernel(inf, MAAS_QKERNEL_PORTABLE);
    assert_ok(maas_infer_run(inf, x, rows, yp, err, sizeof(err)), err);
    /* both kernels give the same integers, so the same floats */
    assert_memory_equal(yq, yp, rows * 10 * sizeof(float));
    int agree;
    double maxd = compare_probs(yf, yq, rows, 10, &agree);
    print_message("int8 vs float: max |dp| %.5f, argmax agrees on %d/%zu rows\n", maxd, agree,
                  rows);
    assert_true(maxd <= 0.03);
    assert_true(agree >= (int)(0.97 * rows));

    /* a row's answer does not depend on the rows batched with it */
    for (size_t r = 0; r < rows; r += 37) {
        float one[10];
        assert_ok(maas_infer_run(inf, x + r * 784, 1, one, err, sizeof(err)), err);
        assert_memory_equal(one, yp + r * 10, sizeof(one));
        maas_infer_set_qkernel(inf, MAAS_QKERNEL_AUTO);
        assert_ok(maas_infer_run(inf, x + r * 784, 1, one, err, sizeof(err)), err);
        assert_memory_equal(one, yq + r * 10, sizeof(one));
        maas_infer_set_qkernel(inf, MAAS_QKERNEL_PORTABLE);
    }
    /* negative inputs take the shifted int8 path; it must agree too */
    float *xn = maas_test_random_inputs(rows * 784, 9, -1.0f, 1.0f);
    assert_ok(maas_model_predict(f, xn, rows, yf, err, sizeof(err)), err);
    assert_ok(maas_model_predict(q, xn, rows, yq, err, sizeof(err)), err);
    maxd = 0.0;
    for (size_t i = 0; i < rows * 10; i++) maxd = fmax(maxd, fabs((double)yf[i] - yq[i]));
    print_message("signed inputs: max |dp| %.5f\n", maxd);
    assert_true(maxd <= 0.03);
    /* non-finite input is still refused */
    xn[5] = NAN;
    assert_err(MAAS_ERR_NON_FINITE, maas_model_predict(q, xn, 1, yq, err, sizeof(err)), err);
    maas_infer_free(inf);
    free(x);
    free(xn);
    free(yf);
    free(yq);
    free(yp);
    maas_model_free(f);
    maas_model_free(q);
}

static void test_quantized_file(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    maas_layer_spec l[] = {maas_dense(256, MAAS_ACT_RELU), maas_dense(128, MAAS_ACT_RELU),
                           maas_dense(10, MAAS_ACT_SOFTMAX)};
    maas_model *f = maas_test_random_model(784, l, 3, 11);
    float mean[784], std[784];
    for (int i = 0; i < 784; i++) mean[i] = 0.3f, std[i] = 0.5f;
    assert_ok(maas_model_set_standardization(f, mean, std, err, sizeof(err)), err);
    unsigned char *fb, *qb, *qb2;
    size_t fl, ql, ql2;
    assert_ok(maas_model_save_image(f, NULL, &fb, &fl, err, sizeof(err)), err);
    maas_model *q = maas_model_clone(f, err, sizeof(err));
    assert_ok(maas_quantize(q, err, sizeof(err)), err);
    assert_ok(maas_model_save_image(q, NULL, &qb, &ql, err, sizeof(err)), err);
    print_message("float file %zu bytes, int8 file %zu bytes (%.2fx smaller)\n", fl, ql,
                  (double)fl / (double)ql);
    /* uniform random weights hardly deflate; bench/ measures a trained model (>= 3.9x) */
    assert_true((double)fl / (double)ql >= 3.2);
    maas_model *back = NULL;
    assert_ok(maas_model_load_image(qb, ql, &back, NULL, err, sizeof(err)), err);
    assert_true(maas_model_is_quantized(back));
    assert_memory_equal(back->params, q->params, q->n_params * sizeof(float));
    for (int i = 0; i < 3; i++) {
        const maas_qlayer *a = &q->quant->layers[i], *b = &back->quant->layers[i];
        assert_memory_equal(a->wq, b->wq, (size_t)a->n_in * a->n_out);
        assert_memory_equal(a->scale, b->scale, (size_t)a->n_out * sizeof(float));
    }
    assert_non_null(back->feat_mean);
    /* same bytes on the next save: a version's hash is stable */
    assert_ok(maas_model_save_image(back, NULL, &qb2, &ql2, err, sizeof(err)), err);
    assert_int_equal(ql, ql2);
    assert_memory_equal(qb, qb2, ql);
    float *x = maas_test_random_inputs(20 * 784, 12, 0.0f, 1.0f), ya[200], yb[200];
    assert_ok(maas_model_predict(q, x, 20, ya, err, sizeof(err)), err);
    assert_ok(maas_model_predict(back, x, 20, yb, err, sizeof(err)), err);
    assert_memory_equal(ya, yb, sizeof(ya));
    /* dequantized, it is a plain float (Keras) file again */
    maas_model_dequantize(back);
    unsigned char *db;
    size_t dl;
    assert_ok(maas_model_save_image(back, NULL, &db, &dl, err, sizeof(err)), err);
    assert_int_equal(dl, fl);
    maas_model *plain = NULL;
    assert_ok(maas_model_load_image(db, dl, &plain, NULL, err, sizeof(err)), err);
    assert_false(maas_model_is_quantized(plain));
    assert_memory_equal(plain->params, q->params, q->n_params * sizeof(float));
    maas_model_free(plain);
    free(db);
    free(x);
    free(fb);
    free(qb);
    free(qb2);
    maas_model_free(back);
    maas_model_free(q);
    maas_model_free(f);
}

static void test_set_layer_rejects(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    maas_layer_spec l[] = {maas_dropout(0.1f), maas_dense(3, MAAS_ACT_LINEAR)};
    maas_model *m = maas_test_random_model(2, l, 2, 3);
    int8_t wq[6] = {1, 2, 3, -4, -5, 127};
    float scale[3] = {0.1f, 0.2f, 0.3f};
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_quant_set_layer(m, 0, wq, scale, err, sizeof(err)),
               err);
    scale[1] = NAN;
    assert_err(MAAS_ERR_NON_FINITE, maas_quant_set_layer(m, 1, wq, scale, err, sizeof(err)), err);
    assert_mentions(err, "unit 1");
    scale[1] = 0.0f;
    assert_err(MAAS_ERR_NON_FINITE, maas_quant_set_layer(m, 1, wq, scale, err, sizeof(err)), err);
    scale[1] = 0.2f;
    wq[2] = -128;
    assert_err(MAAS_ERR_BAD_FORMAT, maas_quant_set_layer(m, 1, wq, scale, err, sizeof(err)), err);
    wq[2] = 3;
    assert_ok(maas_quant_set_layer(m, 1, wq, scale, err, sizeof(err)), err);
    assert_true(maas_model_kernel(m, 1)[5] == 127 * 0.3f);
    /* training a quantized model is refused with a message that says what to do */
    maas_compile c = {.loss = MAAS_LOSS_MSE};
    maas_optim_defaults(&c.optim, MAAS_OPT_SGD);
    maas_fit_opts o;
    maas_fit_opts_init(&o);
    maas_rng rng;
    maas_rng_init(&rng, 1);
    o.rng = &rng;
    float x[4] = {1, 2, 3, 4}, y[6] = {0};
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_fit(m, &c, x, y, 2, &o, NULL, err, sizeof(err)),
               err);
    assert_mentions(err, "quantized");
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_prune(m, 0.5, 0, NULL, NULL, err, sizeof(err)), err);
    maas_model_free(m);
}

/* Fine-tunes m for epochs with the pruning mask held (seeded). */
static void fit_masked(maas_model *m, const maas_compile *c, const float *mask, const float *x,
                       const float *y, size_t rows, int epochs, uint64_t seed) {
    char err[MAAS_ERRSTR_SIZE];
    maas_fit_opts o;
    maas_fit_opts_init(&o);
    maas_rng rng;
    maas_rng_init(&rng, seed);
    o.rng = &rng;
    o.epochs = epochs;
    o.param_mask = mask;
    assert_ok(maas_fit(m, c, x, y, rows, &o, NULL, err, sizeof(err)), err);
}

static void test_prune_exact_and_mask_holds(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    maas_layer_spec l[] = {maas_dense(10, MAAS_ACT_RELU), maas_dense(1, MAAS_ACT_SIGMOID)};
    maas_model *m = maas_test_random_model(8, l, 2, 5);
    maas_prune_report rep;
    /* global: the exact count over both kernels (80 + 10 weights) */
    maas_model *g = maas_model_clone(m, err, sizeof(err));
    assert_ok(maas_prune(g, 0.5, 0, NULL, &rep, err, sizeof(err)), err);
    assert_int_equal(rep.kernel_weights, 90);
    assert_int_equal(rep.zero_weights, 45);
    /* the smallest were cut: every kept |w| >= every cut original |w| */
    float kept_min = INFINITY, cut_max = 0.0f;
    for (int i = 0; i < 2; i++) {
        const maas_layer *ml = &m->layers[i];
        for (size_t k = 0; k < (size_t)ml->n_in * ml->n_out; k++) {
            float w0 = fabsf(m->params[ml->w_off + k]), w1 = g->params[ml->w_off + k];
            if (w1 == 0.0f)
                cut_max = fmaxf(cut_max, w0);
            else
                kept_min = fminf(kept_min, w0);
        }
    }
    assert_true(cut_max <= kept_min);
    maas_model_free(g);
    /* per layer: 0.3 of each kernel */
    g = maas_model_clone(m, err, sizeof(err));
    assert_ok(maas_prune(g, 0.3, 1, NULL, &rep, err, sizeof(err)), err);
    assert_true(fabs(rep.sparsity[0] - 24.0 / 80.0) < 1e-12);
    assert_true(fabs(rep.sparsity[1] - 3.0 / 10.0) < 1e-12);
    maas_model_free(g);
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_prune(m, 1.0, 0, NULL, NULL, err, sizeof(err)), err);
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_prune(m, -0.1, 0, NULL, NULL, err, sizeof(err)),
               err);
    assert_mentions(err, "sparsity");

    /* fine-tuning with the mask: pruned weights stay zero, the others move */
    float *mask = malloc(m->n_params * sizeof(float));
    assert_ok(maas_prune(m, 0.6, 0, mask, &rep, err, sizeof(err)), err);
    size_t rows = 200;
    float *x = maas_test_random_inputs(rows * 8, 6, -1.0f, 1.0f), *y = malloc(rows * sizeof(float));
    for (size_t r = 0; r < rows; r++) y[r] = x[r * 8] + x[r * 8 + 1] > 0.0f ? 1.0f : 0.0f;
    float *before = malloc(m->n_params * sizeof(float));
    memcpy(before, m->params, m->n_params * sizeof(float));
    maas_compile c = {.loss = MAAS_LOSS_BINARY_CROSSENTROPY, .accuracy = 1};
    maas_optim_defaults(&c.optim, MAAS_OPT_ADAM);
    fit_masked(m, &c, mask, x, y, rows, 3, 2);
    size_t moved = 0;
    for (size_t k = 0; k < m->n_params; k++) {
        if (mask[k] == 0.0f) assert_true(m->params[k] == 0.0f);
        moved += mask[k] != 0.0f && m->params[k] != before[k];
    }
    assert_true(moved > m->n_params / 4);
    maas_prune_report after;
    maas_sparsity(m, &after);
    assert_int_equal(after.zero_weights, rep.zero_weights);
    /* then quantized, it evaluates through the int8 path, close to the float figures */
    double floss, facc, loss, acc;
    assert_ok(maas_evaluate(m, &c, x, y, rows, &floss, &facc, err, sizeof(err)), err);
    assert_ok(maas_quantize(m, err, sizeof(err)), err);
    assert_ok(maas_evaluate(m, &c, x, y, rows, &loss, &acc, err, sizeof(err)), err);
    print_message("pruned 60%%: float loss %.4f acc %.3f, int8 loss %.4f acc %.3f\n", floss, facc,
                  loss, acc);
    assert_true(isfinite(loss) && fabs(loss - floss) < 0.02 && fabs(acc - facc) <= 0.03);
    maas_sparsity(m, &after); /* zero stays zero through quantization */
    assert_true(after.zero_weights >= rep.zero_weights);
    free(mask);
    free(x);
    free(y);
    free(before);
    maas_model_free(m);
}

/* relu is fused into the int8 epilogue: exactly relu of what the linear layer outputs */
static void test_fused_relu(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    maas_layer_spec l[] = {maas_dense(37, MAAS_ACT_RELU)};
    maas_model *m = maas_test_random_model(29, l, 1, 41);
    assert_ok(maas_quantize(m, err, sizeof(err)), err);
    maas_model *lin = maas_model_clone(m, err, sizeof(err));
    assert_non_null(lin);
    lin->layers[0].spec.act = MAAS_ACT_LINEAR;
    int rows = 45; /* VNNI tiles, their remainders and (>= 32 rows) oneDNN */
    float *x = maas_test_random_inputs((size_t)rows * 29, 42, -1.0f, 1.0f);
    float *y = malloc((size_t)rows * 37 * sizeof(float)),
          *z = malloc((size_t)rows * 37 * sizeof(float));
    assert_ok(maas_model_predict(m, x, (size_t)rows, y, err, sizeof(err)), err);
    assert_ok(maas_model_predict(lin, x, (size_t)rows, z, err, sizeof(err)), err);
    int negatives = 0;
    for (int k = 0; k < rows * 37; k++) {
        negatives += z[k] < 0.0f;
        float want = z[k] > 0.0f ? z[k] : 0.0f;
        assert_memory_equal(&y[k], &want, sizeof(float));
    }
    assert_true(negatives > 0);
    free(x);
    free(y);
    free(z);
    maas_model_free(lin);
    maas_model_free(m);
}

/*
 * One int8 convolution against exact arithmetic on its dequantized kernel W': each window
 * (im2col row) p is quantized with its own scale s_p = max|x| / 127 (/ 255 when the window
 * is >= 0), so |x - s_p q| <= s_p / 2 per input and, per output,
 *   |y_int8 - y| <= (s_p / 2) sum_k |W'_kj| + gamma_{k+4} (sum_k |x_k W'_kj| + |b_j|)
 * (the integer sum is exact; the float epilogue rounds three times). A filter's scale taken
 * from another filter, a window misplaced or a stride ignored break it by far.
 */
static void check_conv_bound(const char *layers, int n_in, int rows, float lo, float hi,
                             uint64_t seed) {
    char err[MAAS_ERRSTR_SIZE];
    maas_model *m = maas_test_layers_model(layers, n_in, seed);
    assert_ok(maas_quantize(m, err, sizeof(err)), err);
    const maas_layer *cl = NULL;
    int ci = 0;
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].spec.kind == MAAS_LAYER_CONV) cl = &m->layers[ci = i];
    assert_non_null(cl);
    assert_non_null(m->quant->layers[ci].wq);
    const maas_conv_geom *g = &cl->geom;
    int k = g->kh * g->kw * g->c, f = g->f, pos = g->oh * g->ow;
    assert_int_equal(m->n_outputs, pos * f);
    float *x = maas_test_random_inputs((size_t)rows * n_in, seed + 1, lo, hi);
    float *y = malloc((size_t)rows * m->n_outputs * sizeof(float));
    float *yp = malloc((size_t)rows * m->n_outputs * sizeof(float));
    float *col = malloc(maas_conv_col_floats(g, (size_t)rows) * sizeof(float));
    maas_infer *inf = maas_infer_new(m, rows, err, sizeof(err));
    assert_non_null(inf);
    assert_ok(maas_infer_run(inf, x, (size_t)rows, y, err, sizeof(err)), err);
    maas_infer_set_qkernel(inf, MAAS_QKERNEL_PORTABLE);
    assert_ok(maas_infer_run(inf, x, (size_t)rows, yp, err, sizeof(err)), err);
    assert_memory_equal(y, yp, (size_t)rows * m->n_outputs * sizeof(float));
    maas_conv_im2col(g, x, (size_t)rows, col); /* the input is the layer's (a reshape before) */
    const float *w = m->params + cl->w_off, *b = cl->spec.use_bias ? m->params + cl->b_off : NULL;
    double worst = 0.0;
    for (size_t p = 0; p < (size_t)rows * pos; p++) {
        const float *win = col + p * k;
        double amax = 0.0;
        int nonneg = 1;
        for (int q = 0; q < k; q++) {
            amax = fmax(amax, fabs(win[q]));
            nonneg &= win[q] >= 0.0f;
        }
        double sp = amax / (nonneg ? 255.0 : 127.0);
        for (int j = 0; j < f; j++) {
            double z = b ? b[j] : 0.0, absw = 0.0, absxw = b ? fabs(b[j]) : 0.0;
            for (int q = 0; q < k; q++) {
                double wq = w[(size_t)q * f + j];
                z += win[q] * wq;
                absw += fabs(wq);
                absxw += fabs(win[q] * wq);
            }
            double bound = 0.5 * sp * absw * (1.0 + 1e-4) + maas_test_gamma(k + 4) * absxw * 1.01;
            double d = fabs(y[p * f + j] - z);
            if (d > bound)
                fail_msg("%s: window %zu filter %d: int8 %.9g, exact %.9g, |d| %.3g > %.3g", layers,
                         p, j, (double)y[p * f + j], z, d, bound);
            worst = fmax(worst, d / bound);
        }
    }
    print_message("%s: int8 within %.2f of its bound\n", layers, worst);
    /* a row's answer does not depend on the rows batched with it */
    for (int r = 0; r < rows; r += 5) {
        assert_ok(maas_infer_run(inf, x + (size_t)r * n_in, 1, yp, err, sizeof(err)), err);
        assert_memory_equal(yp, y + (size_t)r * m->n_outputs, m->n_outputs * sizeof(float));
    }
    maas_infer_free(inf);
    free(x);
    free(y);
    free(yp);
    free(col);
    maas_model_free(m);
}

static void test_conv_int8_bound(void **state) {
    (void)state;
    /* signed and non-negative windows, padding, strides, Conv1D, no bias, many filters */
    check_conv_bound("reshape:7x6x3,conv2d:5:3x3:same,flatten", 126, 11, -1.0f, 1.0f, 51);
    check_conv_bound("reshape:7x6x3,conv2d:5:3x3:same,flatten", 126, 11, 0.0f, 1.0f, 52);
    check_conv_bound("reshape:9x8x2,conv2d:33:2x3:s2x2:nobias,flatten", 144, 7, -2.0f, 3.0f, 53);
    check_conv_bound("reshape:20x4,conv1d:6:5:s2,flatten", 80, 9, -1.0f, 1.0f, 54);
    /* 37 rows x 784 windows: the int8 scratch takes the windows 4096 at a time */
    check_conv_bound("reshape:28x28x1,conv2d:8:3x3:same,flatten", 784, 37, 0.0f, 1.0f, 55);
}

/*
 * A CNN with int8 convolutions and Dense layers, float BatchNormalization and pooling: relu
 * fused exactly, close to the float model, a file that round-trips bit for bit, smaller, and
 * that dequantizes to a plain Keras file.
 */
static void test_cnn_int8(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    const char *layers = "reshape:12x12x2,conv2d:8:3x3:relu:same,batchnorm,maxpool:2x2,"
                         "conv2d:16:3x3:relu,gap2d,32:relu,10:softmax";
    maas_model *f = maas_test_layers_model(layers, 288, 61);
    maas_model *q = maas_model_clone(f, err, sizeof(err));
    assert_ok(maas_quantize(q, err, sizeof(err)), err);
    assert_int_equal(maas_model_quant_kind(q), MAAS_QUANT_INT8);
    int n_q = 0;
    for (int i = 0; i < q->n_layers; i++) n_q += q->quant->layers[i].wq != NULL;
    assert_int_equal(n_q, 4); /* two convolutions, two Dense */
    /* per filter: scale_j = max over the window of |W[.][j]| / 127, a conv kernel read flat */
    const maas_layer *c1 = &q->layers[1];
    const maas_qlayer *ql = &q->quant->layers[1];
    assert_int_equal(ql->n_in, 3 * 3 * 2);
    assert_int_equal(ql->n_out, 8);
    for (int j = 0; j < 8; j++) {
        float amax = 0.0f;
        for (int kk = 0; kk < 18; kk++)
            amax = fmaxf(amax, fabsf(f->params[c1->w_off + (size_t)kk * 8 + j]));
        assert_true(fabsf(ql->scale[j] - amax / 127.0f) <= 1e-7f * amax);
        for (int kk = 0; kk < 18; kk++)
            assert_true(q->params[c1->w_off + (size_t)kk * 8 + j] ==
                        (float)ql->wq[(size_t)kk * 8 + j] * ql->scale[j]);
    }
    size_t rows = 120;
    float *x = maas_test_random_inputs(rows * 288, 62, 0.0f, 1.0f);
    float *yf = malloc(rows * 10 * sizeof(float)), *yq = malloc(rows * 10 * sizeof(float));
    assert_ok(maas_model_predict(f, x, rows, yf, err, sizeof(err)), err);
    assert_ok(maas_model_predict(q, x, rows, yq, err, sizeof(err)), err);
    int agree;
    double maxd = compare_probs(yf, yq, rows, 10, &agree);
    print_message("CNN int8 vs float: max |dp| %.5f, argmax agrees on %d/%zu rows\n", maxd, agree,
                  rows);
    assert_true(maxd <= 0.03);
    assert_true(agree >= (int)(0.95 * rows));
    /* the file: int8 kernels of rank 4 and 2, read back bit for bit */
    unsigned char *fb, *qb, *qb2, *db;
    size_t fl, qlen, qlen2, dl;
    assert_ok(maas_model_save_image(f, NULL, &fb, &fl, err, sizeof(err)), err);
    assert_ok(maas_model_save_image(q, NULL, &qb, &qlen, err, sizeof(err)), err);
    print_message("CNN float file %zu bytes, int8 %zu bytes\n", fl, qlen);
    assert_true(qlen < fl);
    assert_true(maas_quant_payload_bytes(q) < maas_quant_payload_bytes(f));
    maas_model *back = NULL;
    assert_ok(maas_model_load_image(qb, qlen, &back, NULL, err, sizeof(err)), err);
    assert_int_equal(maas_model_quant_kind(back), MAAS_QUANT_INT8);
    assert_memory_equal(back->params, q->params, q->n_params * sizeof(float));
    for (int i = 0; i < q->n_layers; i++) {
        const maas_qlayer *a = &q->quant->layers[i], *b = &back->quant->layers[i];
        assert_true((a->wq == NULL) == (b->wq == NULL));
        if (!a->wq) continue;
        assert_memory_equal(a->wq, b->wq, (size_t)a->n_in * a->n_out);
        assert_memory_equal(a->scale, b->scale, (size_t)a->n_out * sizeof(float));
    }
    assert_ok(maas_model_save_image(back, NULL, &qb2, &qlen2, err, sizeof(err)), err);
    assert_int_equal(qlen, qlen2);
    assert_memory_equal(qb, qb2, qlen);
    float *yb = malloc(rows * 10 * sizeof(float));
    assert_ok(maas_model_predict(back, x, rows, yb, err, sizeof(err)), err);
    assert_memory_equal(yb, yq, rows * 10 * sizeof(float));
    /* dequantized: a float file of the same layout as the original */
    maas_model_dequantize(back);
    assert_ok(maas_model_save_image(back, NULL, &db, &dl, err, sizeof(err)), err);
    assert_int_equal(dl, fl);
    /* bf16 still takes Dense networks only, and says so */
    maas_model *b16 = maas_model_clone(f, err, sizeof(err));
    assert_err(MAAS_ERR_UNSUPPORTED, maas_quantize_bf16(b16, err, sizeof(err)), err);
    assert_mentions(err, "bf16 quantization");
    assert_mentions(err, "Conv2D");
    maas_model_free(b16);
    free(fb);
    free(qb);
    free(qb2);
    free(db);
    free(x);
    free(yf);
    free(yq);
    free(yb);
    maas_model_free(back);
    maas_model_free(q);
    maas_model_free(f);
}

/* Pruning takes convolution kernels with Dense ones (never biases, BatchNormalization or
 * Embedding tables); the mask holds through fine-tuning; a pruned kernel is stored deflated. */
static void test_cnn_prune(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    const char *layers = "reshape:6x6x32,conv2d:64:3x3:relu,batchnorm,flatten,1:sigmoid";
    maas_model *m = maas_test_layers_model(layers, 1152, 71);
    size_t conv_w = 3 * 3 * 32 * 64, dense_w = 4 * 4 * 64;
    maas_model *g = maas_model_clone(m, err, sizeof(err));
    maas_prune_report rep;
    assert_ok(maas_prune(g, 0.5, 0, NULL, &rep, err, sizeof(err)), err);
    assert_int_equal(rep.kernel_weights, conv_w + dense_w);
    assert_int_equal(rep.zero_weights, (conv_w + dense_w) / 2);
    assert_true(rep.sparsity[1] > 0.0 && rep.sparsity[4] > 0.0);
    assert_true(rep.sparsity[2] == 0.0); /* BatchNormalization: not a kernel */
    float kept_min = INFINITY, cut_max = 0.0f;
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        for (int k = 0; k < l->n_weights; k++) {
            const maas_weight *w = &l->weights[k];
            for (size_t e = 0; e < w->n; e++) {
                float w0 = m->params[w->off + e], w1 = g->params[w->off + e];
                if (strcmp(w->name, "kernel")) {
                    assert_true(w0 == w1); /* biases and BatchNormalization untouched */
                } else if (w1 == 0.0f) {
                    cut_max = fmaxf(cut_max, fabsf(w0));
                } else {
                    kept_min = fminf(kept_min, fabsf(w0));
                }
            }
        }
    }
    assert_true(cut_max <= kept_min);
    /* per layer: exactly 0.3 of each kernel */
    maas_model *pl = maas_model_clone(m, err, sizeof(err));
    assert_ok(maas_prune(pl, 0.3, 1, NULL, &rep, err, sizeof(err)), err);
    assert_true(fabs(rep.sparsity[1] - (double)llround(0.3 * conv_w) / conv_w) < 1e-12);
    assert_true(fabs(rep.sparsity[4] - (double)llround(0.3 * dense_w) / dense_w) < 1e-12);
    maas_model_free(pl);
    /* the deflated pruned kernel reads back exactly, in a smaller file */
    unsigned char *fb, *pb;
    size_t fl, plen;
    assert_ok(maas_model_save_image(m, NULL, &fb, &fl, err, sizeof(err)), err);
    assert_ok(maas_model_save_image(g, NULL, &pb, &plen, err, sizeof(err)), err);
    print_message("CNN file %zu bytes, pruned 50%% %zu bytes\n", fl, plen);
    assert_true(plen < fl - conv_w); /* a quarter of the float kernel saved at least */
    maas_model *back = NULL;
    assert_ok(maas_model_load_image(pb, plen, &back, NULL, err, sizeof(err)), err);
    assert_memory_equal(back->params, g->params, g->n_params * sizeof(float));
    maas_model_free(back);
    free(fb);
    free(pb);
    maas_model_free(g);

    /* fine-tuning with the mask: pruned convolution weights stay zero, the rest move */
    float *mask = malloc(m->n_params * sizeof(float));
    assert_ok(maas_prune(m, 0.6, 0, mask, &rep, err, sizeof(err)), err);
    size_t rows = 64;
    float *x = maas_test_random_inputs(rows * 1152, 72, -1.0f, 1.0f);
    float *y = malloc(rows * sizeof(float)), *before = malloc(m->n_params * sizeof(float));
    for (size_t r = 0; r < rows; r++) y[r] = x[r * 1152] > 0.0f ? 1.0f : 0.0f;
    memcpy(before, m->params, m->n_params * sizeof(float));
    maas_compile c = {.loss = MAAS_LOSS_BINARY_CROSSENTROPY, .accuracy = 1};
    maas_optim_defaults(&c.optim, MAAS_OPT_ADAM);
    fit_masked(m, &c, mask, x, y, rows, 2, 73);
    size_t moved = 0, held = 0;
    const maas_layer *cl = &m->layers[1];
    for (size_t e = 0; e < conv_w; e++) {
        size_t at = cl->w_off + e;
        if (mask[at] == 0.0f) {
            assert_true(m->params[at] == 0.0f);
            held++;
        }
        moved += mask[at] != 0.0f && m->params[at] != before[at];
    }
    assert_true(held > conv_w / 4);
    assert_true(moved > (conv_w - held) / 2);
    maas_prune_report after;
    maas_sparsity(m, &after);
    assert_int_equal(after.zero_weights, rep.zero_weights);
    free(mask);
    free(x);
    free(y);
    free(before);
    maas_model_free(m);
}

int main(void) {
    maas_blas_set_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantize_error_per_channel),
        cmocka_unit_test(test_kernels_agree_exactly),
        cmocka_unit_test(test_int8_matches_float),
        cmocka_unit_test(test_quantized_file),
        cmocka_unit_test(test_set_layer_rejects),
        cmocka_unit_test(test_prune_exact_and_mask_holds),
        cmocka_unit_test(test_fused_relu),
        cmocka_unit_test(test_conv_int8_bound),
        cmocka_unit_test(test_cnn_int8),
        cmocka_unit_test(test_cnn_prune),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
