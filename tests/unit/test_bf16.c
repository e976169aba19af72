/*
 * bf16 models: rounding to bf16, the AVX-512 BF16 kernel against an exact
 * reference within the float32 bound of its sums, whole models within the
 * forward bound (fpbound.h, bf16 inputs included) on every ISA level, a row's
 * answer independent of its batch, the transform's refusals, and model files.
 */
#include "testutil.h"

#include "fpbound.h"
#include "maas/model_io.h"
#include "maas/quant.h"

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

static void test_rounding(void **state) {
    (void)state;
    assert_int_equal(maas_bf16_from_float(1.0f), 0x3f80);
    assert_int_equal(maas_bf16_from_float(-2.0f), 0xc000);
    assert_int_equal(maas_bf16_from_float(0.0f), 0x0000);
    assert_int_equal(maas_bf16_from_float(-0.0f), 0x8000);
    /* ties go to the even neighbour; anything above a tie rounds up */
    assert_int_equal(maas_bf16_from_float(from_bits(0x3f808000u)), 0x3f80);
    assert_int_equal(maas_bf16_from_float(from_bits(0x3f818000u)), 0x3f82);
    assert_int_equal(maas_bf16_from_float(from_bits(0x3f808001u)), 0x3f81);
    assert_int_equal(maas_bf16_from_float(from_bits(0x3f807fffu)), 0x3f80);
    /* the largest floats round to infinity; infinities and NaN stay what they are */
    assert_int_equal(maas_bf16_from_float(FLT_MAX), 0x7f80);
    assert_int_equal(maas_bf16_from_float(INFINITY), 0x7f80);
    assert_int_equal(maas_bf16_from_float(-INFINITY), 0xff80);
    assert_true(isnan(maas_bf16_to_float(maas_bf16_from_float(NAN))));
    assert_true(isnan(maas_bf16_to_float(maas_bf16_from_float(from_bits(0x7f800001u)))));
    /* widening is exact and every bf16 survives the round trip */
    for (uint32_t b = 0; b < 0x10000u; b++) {
        float f = maas_bf16_to_float((uint16_t)b);
        assert_true(bits(f) == b << 16);
        if (!isnan(f)) assert_int_equal(maas_bf16_from_float(f), b);
    }
    /* relative error of a rounding: at most 2^-8 (half a unit in the 8th significant bit) */
    float *x = maas_test_random_inputs(10000, 3, -1000.0f, 1000.0f);
    for (int i = 0; i < 10000; i++) {
        double r = maas_bf16_to_float(maas_bf16_from_float(x[i]));
        assert_true(fabs(r - x[i]) <= ldexp(fabs((double)x[i]), -8));
    }
    free(x);
}

/*
 * The kernel alone, against sum_i bf16(x_i) w_ij + b_j in double: the products are exact, so
 * the only error left is float32 summation of n_in + 1 terms (plus flushed tiny results).
 */
static void check_kernel(int n_in, int n_out, int rows, uint64_t seed) {
    maas_bf16 *b = maas_bf16_new(1);
    assert_non_null(b);
    float *w = maas_test_random_inputs((size_t)n_in * n_out, seed, -1.0f, 1.0f);
    float *bias = maas_test_random_inputs((size_t)n_out, seed + 1, -0.5f, 0.5f);
    float *x = maas_test_random_inputs((size_t)rows * n_in, seed + 2, -3.0f, 3.0f);
    for (size_t k = 0; k < (size_t)n_in * n_out; k++)
        w[k] = maas_bf16_to_float(maas_bf16_from_float(w[k]));
    for (int k = 0; k < rows * n_in; k += 7) x[k] = 0.0f; /* some exact zeros (relu outputs) */
    assert_true(maas_bf16_set_layer(b, 0, n_in, n_out, w));
    float *y = malloc((size_t)rows * n_out * sizeof(float));
    float *yr = malloc((size_t)rows * n_out * sizeof(float));
    uint32_t *scratch = malloc((size_t)rows * ((n_in + 1) / 2) * sizeof(uint32_t));
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        maas_bgemm(&b->layers[0], x, n_in, rows, with_bias ? bias : NULL, 0, y, n_out, scratch);
        /* relu fused into the stores: exactly relu of the same sums */
        maas_bgemm(&b->layers[0], x, n_in, rows, with_bias ? bias : NULL, 1, yr, n_out, scratch);
        for (size_t k = 0; k < (size_t)rows * n_out; k++)
            if (bits(yr[k]) != bits(y[k] > 0.0f ? y[k] : 0.0f))
                fail_msg("%dx%d, %d rows: fused relu gave %g for %g", n_in, n_out, rows,
                         (double)yr[k], (double)y[k]);
        double g = maas_test_gamma(n_in + 1);
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < n_out; j++) {
                double s = with_bias ? bias[j] : 0.0, mag = fabs(s);
                for (int i = 0; i < n_in; i++) {
                    double xi = maas_bf16_to_float(maas_bf16_from_float(x[(size_t)r * n_in + i]));
                    s += xi * w[(size_t)i * n_out + j];
                    mag += fabs(xi * w[(size_t)i * n_out + j]);
                }
                double bound = g * mag + (n_in + 1) * ldexp(1.0, -126);
                double err = fabs(y[(size_t)r * n_out + j] - s);
                if (err > bound)
                    fail_msg("%dx%d, %d rows: y[%d][%d] = %.9g, exact %.9g, bound %.3g", n_in,
                             n_out, rows, r, j, (double)y[(size_t)r * n_out + j], s, bound);
            }
    }
    free(scratch);
    free(yr);
    free(y);
    free(x);
    free(bias);
    free(w);
    maas_bf16_free(b);
}

static void test_kernel_bound(void **state) {
    (void)state;
    if (!maas_bf16_available()) {
        print_message("no AVX512_BF16 at this level: bf16 layers run as float32 (tested below)\n");
        skip();
    }
    /* odd inputs (a half pair), outputs off a block and a panel, rows off the 4-row tile */
    static const int shapes[][2] = {{1, 1},    {3, 10},   {8, 10},    {33, 17},   {64, 64},
                                    {65, 129}, {128, 10}, {784, 256}, {256, 128}, {31, 130}};
    static const int rows[] = {1, 2, 3, 4, 5, 7, 8, 37};
    uint64_t seed = 10;
    for (size_t s = 0; s < MAAS_ARRAY_LEN(shapes); s++)
        for (size_t r = 0; r < MAAS_ARRAY_LEN(rows); r++)
            check_kernel(shapes[s][0], shapes[s][1], rows[r], seed += 3);
}

/* Whole models on every level: within the forward bound, bf16 inputs included (fpbound.h). */
static void test_model_within_bound(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    maas_layer_spec fashion[] = {maas_dense(256, MAAS_ACT_RELU), maas_dense(128, MAAS_ACT_RELU),
                                 maas_dense(10, MAAS_ACT_SOFTMAX)};
    maas_layer_spec pima[] = {maas_dense(10, MAAS_ACT_RELU), maas_dense(1, MAAS_ACT_SIGMOID)};
    maas_layer_spec mixed[] = {maas_dense(17, MAAS_ACT_TANH), maas_dropout(0.2f),
                               maas_dense(40, MAAS_ACT_GELU), maas_dense(3, MAAS_ACT_LINEAR)};
    struct {
        int n_in;
        const maas_layer_spec *l;
        int n;
        int standardize;
    } cases[] = {{784, fashion, 3, 0}, {8, pima, 2, 1}, {33, mixed, 4, 1}};
    for (size_t c = 0; c < MAAS_ARRAY_LEN(cases); c++) {
        maas_model *m = maas_test_random_model(cases[c].n_in, cases[c].l, cases[c].n, 20 + c);
        int n_in = cases[c].n_in, rows = 37;
        if (cases[c].standardize) {
            float *mean = maas_test_random_inputs((size_t)n_in, 30 + c, -1.0f, 1.0f);
            float *std = maas_test_random_inputs((size_t)n_in, 40 + c, 0.5f, 2.0f);
            assert_ok(maas_model_set_standardization(m, mean, std, err, sizeof(err)), err);
            free(mean);
            free(std);
        }
        assert_ok(maas_quantize_bf16(m, err, sizeof(err)), err);
        float *x = maas_test_random_inputs((size_t)rows * n_in, 50 + c, -2.0f, 2.0f);
        size_t no = (size_t)rows * m->n_outputs;
        float *y = malloc(no * sizeof(float));
        double *exact = malloc(no * sizeof(double)), *bound = malloc(no * sizeof(double));
        assert_ok(maas_model_predict(m, x, (size_t)rows, y, err, sizeof(err)), err);
        assert_int_equal(maas_test_forward_bound(m, x, (size_t)rows, exact, bound), 0);
        double ratio = maas_test_bound_ratio(y, exact, bound, no);
        print_message("case %zu (%s): worst error / bound %.3g\n", c, maas_bf16_kernel_name(),
                      ratio);
        assert_true(ratio <= 1.0);
        free(x);
        free(y);
        free(exact);
        free(bound);
        maas_model_free(m);
    }
}

/*
 * A row's answer does not depend on the rows batched with it (the bf16 kernel sums every row in
 * the same order); where the kernel is missing, a bf16 model is exactly its float32 twin.
 */
static void test_rows_independent(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    maas_layer_spec l[] = {maas_dense(256, MAAS_ACT_RELU), maas_dense(128, MAAS_ACT_RELU),
                           maas_dense(10, MAAS_ACT_SOFTMAX)};
    maas_model *m = maas_test_random_model(784, l, 3, 60);
    assert_ok(maas_quantize_bf16(m, err, sizeof(err)), err);
    int rows = 37;
    float *x = maas_test_random_inputs((size_t)rows * 784, 61, 0.0f, 1.0f);
    float *all = malloc((size_t)rows * 10 * sizeof(float)), one[10];
    assert_ok(maas_model_predict(m, x, (size_t)rows, all, err, sizeof(err)), err);
    if (maas_bf16_available()) {
        for (int r = 0; r < rows; r++) {
            assert_ok(maas_model_predict(m, x + (size_t)r * 784, 1, one, err, sizeof(err)), err);
            assert_memory_equal(one, all + (size_t)r * 10, sizeof(one));
        }
    } else {
        maas_model *f = maas_model_clone(m, err, sizeof(err));
        assert_non_null(f);
        maas_model_dequantize(f);
        float *twin = malloc((size_t)rows * 10 * sizeof(float));
        assert_ok(maas_model_predict(f, x, (size_t)rows, twin, err, sizeof(err)), err);
        assert_memory_equal(twin, all, (size_t)rows * 10 * sizeof(float));
        free(twin);
        maas_model_free(f);
    }
    free(all);
    free(x);
    maas_model_free(m);
}

static void test_quantize_and_refusals(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    maas_layer_spec l[] = {maas_dense(37, MAAS_ACT_RELU), maas_dropout(0.1f),
                           maas_dense(5, MAAS_ACT_LINEAR)};
    maas_model *m = maas_test_random_model(13, l, 3, 70);
    maas_model *f = maas_model_clone(m, err, sizeof(err));
    assert_int_equal(maas_model_quant_kind(m), MAAS_QUANT_NONE);
    size_t float_bytes = maas_quant_payload_bytes(m);
    assert_ok(maas_quantize_bf16(m, err, sizeof(err)), err);
    assert_true(maas_model_is_quantized(m));
    assert_int_equal(maas_model_quant_kind(m), MAAS_QUANT_BF16);
    assert_string_equal(maas_quant_kind_name(maas_model_quant_kind(m)), "bf16");
    /* kernels: the nearest bf16 of each weight, exactly; biases untouched */
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *ml = &m->layers[i];
        if (ml->spec.kind != MAAS_LAYER_DENSE) continue;
        for (size_t k = 0; k < (size_t)ml->n_in * ml->n_out; k++) {
            float w = f->params[ml->w_off + k], d = m->params[ml->w_off + k];
            assert_true((bits(d) & 0xffffu) == 0);
            assert_true(d == maas_bf16_to_float(maas_bf16_from_float(w)));
            assert_true(fabs((double)d - w) <= ldexp(fabs((double)w), -8));
        }
        assert_memory_equal(m->params + ml->b_off, f->params + ml->b_off,
                            (size_t)ml->n_out * sizeof(float));
    }
    /* stored kernels take half the bytes: (13*37 + 37*5) * 2 + (37 + 5) * 4 */
    assert_int_equal(maas_quant_payload_bytes(m), (13 * 37 + 37 * 5) * 2 + (37 + 5) * 4);
    assert_true(maas_quant_payload_bytes(m) < float_bytes);
    /* a copy keeps the bf16 side */
    maas_model *c = maas_model_clone(m, err, sizeof(err));
    assert_int_equal(maas_model_quant_kind(c), MAAS_QUANT_BF16);
    /* what is refused, and says why */
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_quantize_bf16(m, err, sizeof(err)), err);
    assert_mentions(err, "bf16");
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_quantize(m, err, sizeof(err)), err);
    assert_mentions(err, "bf16");
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_prune(m, 0.5, 0, NULL, NULL, err, sizeof(err)), err);
    int8_t wq[13 * 37] = {0};
    float scale[37];
    for (int j = 0; j < 37; j++) scale[j] = 1.0f;
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_quant_set_layer(m, 0, wq, scale, err, sizeof(err)),
               err);
    maas_compile comp = {.loss = MAAS_LOSS_MSE};
    maas_optim_defaults(&comp.optim, MAAS_OPT_SGD);
    maas_fit_opts o;
    maas_fit_opts_init(&o);
    maas_rng rng;
    maas_rng_init(&rng, 1);
    o.rng = &rng;
    float x[26] = {0}, y[10] = {0};
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_fit(m, &comp, x, y, 2, &o, NULL, err, sizeof(err)),
               err);
    assert_mentions(err, "bf16-quantized");
    /* an int8 model is not made bf16, nor the other way */
    maas_model *q = maas_model_clone(f, err, sizeof(err));
    assert_ok(maas_quantize(q, err, sizeof(err)), err);
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_quantize_bf16(q, err, sizeof(err)), err);
    assert_mentions(err, "int8");
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_bf16_attach(q, err, sizeof(err)), err);
    /* a weight past bf16's range is refused and the model left as it was */
    maas_model *big = maas_model_clone(f, err, sizeof(err));
    big->params[big->layers[0].w_off + 5] = FLT_MAX;
    float before = big->params[big->layers[0].w_off];
    assert_err(MAAS_ERR_NON_FINITE, maas_quantize_bf16(big, err, sizeof(err)), err);
    assert_mentions(err, "bf16");
    assert_int_equal(maas_model_quant_kind(big), MAAS_QUANT_NONE);
    assert_true(big->params[big->layers[0].w_off] == before);
    /* attach: only kernels that are bf16 values already */
    maas_model *raw = maas_model_clone(f, err, sizeof(err));
    raw->params[raw->layers[0].w_off] = 0.1f; /* not a bf16 */
    assert_err(MAAS_ERR_BAD_FORMAT, maas_bf16_attach(raw, err, sizeof(err)), err);
    assert_mentions(err, "not a bf16");
    /* dequantized: a float32 model with the same (bf16-valued) weights */
    maas_model_dequantize(c);
    assert_int_equal(maas_model_quant_kind(c), MAAS_QUANT_NONE);
    assert_memory_equal(c->params, m->params, m->n_params * sizeof(float));
    maas_model_free(raw);
    maas_model_free(big);
    maas_model_free(q);
    maas_model_free(c);
    maas_model_free(f);
    maas_model_free(m);
}

static void test_file(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    maas_layer_spec l[] = {maas_dense(256, MAAS_ACT_RELU), maas_dense(128, MAAS_ACT_RELU),
                           maas_dense(10, MAAS_ACT_SOFTMAX)};
    maas_model *f = maas_test_random_model(784, l, 3, 80);
    float mean[784], std[784];
    for (int i = 0; i < 784; i++) mean[i] = 0.3f, std[i] = 0.5f;
    assert_ok(maas_model_set_standardization(f, mean, std, err, sizeof(err)), err);
    maas_model *b = maas_model_clone(f, err, sizeof(err));
    assert_ok(maas_quantize_bf16(b, err, sizeof(err)), err);
    unsigned char *fb, *bb, *bb2;
    size_t fl, bl, bl2;
    assert_ok(maas_model_save_image(f, NULL, &fb, &fl, err, sizeof(err)), err);
    assert_ok(maas_model_save_image(b, NULL, &bb, &bl, err, sizeof(err)), err);
    print_message("float file %zu bytes, bf16 file %zu bytes (%.2fx smaller)\n", fl, bl,
                  (double)fl / (double)bl);
    /* kernels at 2 bytes a weight instead of 4; biases, statistics and metadata as before (HDF5
     * places the 19 KB model_config attribute differently with one more attribute: < 32 KiB) */
    size_t kw = 784 * 256 + 256 * 128 + 128 * 10;
    assert_true(bl + 2 * kw <= fl + 32768);
    maas_model *back = NULL;
    maas_model_info info;
    assert_ok(maas_model_load_image(bb, bl, &back, &info, err, sizeof(err)), err);
    assert_int_equal(maas_model_quant_kind(back), MAAS_QUANT_BF16);
    assert_memory_equal(back->params, b->params, b->n_params * sizeof(float));
    assert_non_null(back->feat_mean);
    /* the same bytes when saved again: a version's hash is stable */
    assert_ok(maas_model_save_image(back, NULL, &bb2, &bl2, err, sizeof(err)), err);
    assert_int_equal(bl, bl2);
    assert_memory_equal(bb, bb2, bl);
    float *x = maas_test_random_inputs(20 * 784, 81, 0.0f, 1.0f), ya[200], yb[200];
    assert_ok(maas_model_predict(b, x, 20, ya, err, sizeof(err)), err);
    assert_ok(maas_model_predict(back, x, 20, yb, err, sizeof(err)), err);
    assert_memory_equal(ya, yb, sizeof(ya));
    /* for Keras: the float32 file of the same weights */
    unsigned char *kb;
    size_t kl;
    int converted = 0;
    assert_ok(maas_model_image_for_keras(bb, bl, &kb, &kl, &converted, err, sizeof(err)), err);
    assert_true(converted);
    assert_int_equal(kl, fl);
    maas_model *plain = NULL;
    assert_ok(maas_model_load_image(kb, kl, &plain, NULL, err, sizeof(err)), err);
    assert_int_equal(maas_model_quant_kind(plain), MAAS_QUANT_NONE);
    assert_memory_equal(plain->params, b->params, b->n_params * sizeof(float));
    maas_model_free(plain);
    free(kb);
    free(x);
    free(fb);
    free(bb);
    free(bb2);
    maas_model_free(back);
    maas_model_free(b);
    maas_model_free(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rounding),
        cmocka_unit_test(test_kernel_bound),
        cmocka_unit_test(test_model_within_bound),
        cmocka_unit_test(test_rows_independent),
        cmocka_unit_test(test_quantize_and_refusals),
        cmocka_unit_test(test_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
