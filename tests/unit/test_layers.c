/*
 * The layers beyond Dense as parts of models (issue 23): the --layers grammar both ways, the
 * shapes planning gives and refuses, every parameter's gradient against central differences
 * of the library's own loss (BatchNormalization on the batch's statistics, as a training step
 * sees it), training moving BatchNormalization's statistics and inference using them,
 * Embedding's index checks, and the refusals of what supports Dense models only.
 */
#include "testutil.h"

#include "maas/cost.h"
#include "maas/explain.h"
#include "maas/quant.h"

#define ROWS 6

/* The loss of the current weights as the gradient sees it (dropout off, batch statistics). */
static double loss_of(maas_trainer *tr, const float *x, const float *y) {
    char err[MAAS_ERRSTR_SIZE];
    double l;
    const float *g;
    assert_ok(maas_trainer_gradient(tr, x, y, ROWS, &l, &g, err, sizeof(err)), err);
    return l;
}

typedef struct {
    int checked, skipped, trainable_zero;
} tally;

/* Every parameter's analytic gradient against central differences of the loss. */
static void gradcheck(const char *layers, int n_in, maas_loss loss, int indices, uint64_t seed,
                      tally *t) {
    char err[MAAS_ERRSTR_SIZE];
    maas_model *m = maas_test_layers_model(layers, n_in, seed);
    maas_rng rng;
    maas_rng_init(&rng, seed + 1);
    float *x = malloc((size_t)ROWS * n_in * sizeof(float));
    float *y = malloc((size_t)ROWS * m->n_outputs * sizeof(float));
    for (int i = 0; i < ROWS * n_in; i++)
        x[i] = indices ? (float)maas_rng_below(&rng, (uint64_t)m->layers[0].spec.vocab)
                       : (float)(2.0 * maas_rng_uniform(&rng) - 1.0);
    int k = m->n_outputs;
    for (int r = 0; r < ROWS; r++) {
        int cls = (int)maas_rng_below(&rng, (uint64_t)k);
        for (int j = 0; j < k; j++) {
            float *yy = &y[r * k + j];
            if (loss == MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY)
                y[r] = (float)cls;
            else if (loss == MAAS_LOSS_CATEGORICAL_CROSSENTROPY)
                *yy = j == cls ? 1.0f : 0.0f;
            else if (loss == MAAS_LOSS_BINARY_CROSSENTROPY)
                *yy = (float)maas_rng_below(&rng, 2);
            else
                *yy = (float)(2.0 * maas_rng_uniform(&rng) - 1.0);
        }
    }
    maas_compile c = {.loss = loss};
    maas_optim_defaults(&c.optim, MAAS_OPT_SGD);
    maas_trainer *tr = maas_trainer_new(m, &c, ROWS, &rng, err, sizeof(err));
    if (!tr) fail_msg("%s: %s", layers, err);
    double l;
    const float *g;
    assert_ok(maas_trainer_gradient(tr, x, y, ROWS, &l, &g, err, sizeof(err)), err);
    float *ana = malloc(m->n_params * sizeof(float));
    memcpy(ana, g, m->n_params * sizeof(float));
    for (int li = 0; li < m->n_layers; li++) {
        const maas_layer *ly = &m->layers[li];
        for (int wk = 0; wk < ly->n_weights; wk++) {
            const maas_weight *w = &ly->weights[wk];
            for (size_t j = 0; j < w->n; j++) {
                size_t i = w->off + j;
                if (!w->trainable) { /* moving statistics: no gradient, the loss ignores them */
                    if (ana[i] != 0.0f)
                        fail_msg("%s: %s of '%s' has gradient %g", layers, w->name, ly->spec.name,
                                 (double)ana[i]);
                    t->trainable_zero++;
                    continue;
                }
                double n1 = maas_test_central(loss_of, tr, m, i, 2e-3f, x, y);
                double n2 = maas_test_central(loss_of, tr, m, i, 1e-3f, x, y);
                /* a kink within reach (relu at 0, a max pooling's winner changing): skipped */
                if (fabs(n1 - n2) > 2e-4 + 1e-2 * fabs(n1)) {
                    t->skipped++;
                    continue;
                }
                double a = ana[i];
                if (fabs(a - n2) > 5e-4 + 2e-2 * fmax(fabs(a), fabs(n2)))
                    fail_msg("%s: %s[%zu] of '%s': analytic %.6g numeric %.6g", layers, w->name, j,
                             ly->spec.name, a, n2);
                t->checked++;
            }
        }
    }
    free(ana);
    free(x);
    free(y);
    maas_trainer_free(tr);
    maas_model_free(m);
}

static void test_gradients(void **state) {
    (void)state;
    tally t = {0};
    /* 2-D: convolutions same and valid, strided; normalization of an image; max pooling
     * "same"; average pooling "same" with stride 1 (padding not counted); flatten */
    gradcheck("reshape:3x4x3,conv2d:4:2x2:tanh:same,batchnorm,maxpool:2x2:same,"
              "avgpool:2x2:s1x1:same,conv2d:3:2x2:sigmoid,flatten,2:softmax",
              36, MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, 0, 11, &t);
    /* 1-D over an embedding: strided valid convolution, average pooling, normalization of a
     * sequence, global average pooling */
    gradcheck("embedding:7:3,conv1d:4:3:elu:s2,avgpool:2,batchnorm,gap1d,3:sigmoid", 10,
              MAAS_LOSS_BINARY_CROSSENTROPY, 1, 12, &t);
    /* a reshape into steps, max pooling 1-D, normalization of a vector, dropout, a reshape
     * back and its global pooling; a convolution without bias */
    gradcheck("reshape:6x2,conv1d:3:2:gelu:same:nobias,maxpool:3,flatten,batchnorm,dropout:0.2,"
              "reshape:2x3,gap1d,2:softmax",
              12, MAAS_LOSS_CATEGORICAL_CROSSENTROPY, 0, 13, &t);
    /* global average pooling 2-D after a strided "same" convolution; linear output, mse */
    gradcheck("reshape:4x4x2,conv2d:3:3x3:relu:s2x2:same,gap2d,2:linear", 32, MAAS_LOSS_MSE, 0, 14,
              &t);
    /* a convolution as the output: softmax over its channels */
    gradcheck("reshape:3x2,conv1d:4:2:softmax,flatten", 6, MAAS_LOSS_MSE, 0, 15, &t);
    print_message("layer gradcheck: %d parameters checked, %d skipped at kinks, %d moving "
                  "statistics without gradient\n",
                  t.checked, t.skipped, t.trainable_zero);
    assert_true(t.checked > 300);
    assert_true(t.skipped * 20 < t.checked);
    assert_true(t.trainable_zero > 0);
}

/* The grammar: items give the specs they describe, and formatting gives the item back. */
static void test_grammar(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE], buf[96];
    const char *items[] = {"conv2d:32:3x3:relu",
                           "conv2d:8:5x3:linear:s2x1:same:nobias",
                           "conv1d:16:5:tanh:s2",
                           "maxpool:2x2",
                           "maxpool:3:s1:same",
                           "avgpool:2x2:s1x1:same",
                           "gap2d",
                           "gap1d",
                           "flatten",
                           "reshape:28x28x1",
                           "reshape:10",
                           "batchnorm",
                           "batchnorm:momentum=0.9:epsilon=1e-05",
                           "embedding:1000:16",
                           "10:relu",
                           "dropout:0.25",
                           "4:softmax:nobias"};
    for (size_t i = 0; i < MAAS_ARRAY_LEN(items); i++) {
        maas_layer_spec s;
        int n;
        assert_ok(maas_layers_parse(items[i], &s, 1, &n, err, sizeof(err)), err);
        assert_int_equal(n, 1);
        assert_true(maas_layer_format(&s, buf, sizeof(buf)) > 0);
        if (strcmp(buf, items[i])) fail_msg("'%s' formats as '%s'", items[i], buf);
    }
    maas_layer_spec s;
    int n;
    assert_ok(maas_layers_parse("conv2d:32:3x3:relu", &s, 1, &n, err, sizeof(err)), err);
    assert_int_equal(s.kind, MAAS_LAYER_CONV);
    assert_int_equal(s.dims, 2);
    assert_int_equal(s.units, 32);
    assert_int_equal(s.kh * 10 + s.kw, 33);
    assert_int_equal(s.sh * 10 + s.sw, 11);
    assert_int_equal(s.act, MAAS_ACT_RELU);
    assert_ok(maas_layers_parse("maxpool:3x2", &s, 1, &n, err, sizeof(err)), err);
    assert_int_equal(s.sh * 10 + s.sw, 32); /* Keras: strides default to the window */
    struct {
        const char *text, *says;
    } bad[] = {{"conv2d:32:3:relu", "KHxKW"},
               {"conv1d:8:3x3", "conv1d:FILTERS:K"},
               {"conv2d:0:3x3", "conv2d:FILTERS"},
               {"conv2d:4:3x3:swish", "swish"},
               {"conv2d:4:3x3:s2", "strides"},
               {"maxpool", "maxpool:KHxKW"},
               {"maxpool:2x2:relu", "not an option"},
               {"reshape:", "reshape:DxDxD"},
               {"reshape:2x2x2x2", "reshape:DxDxD"},
               {"reshape:0x3", "reshape:DxDxD"},
               {"gap2d:3", "no options"},
               {"batchnorm:momentum=1", "momentum"},
               {"embedding:10", "embedding:VOCAB:DIM"},
               {"conv3d:1:1x1x1", "conv3d"},
               {"conv2d:4:99999x1", "conv2d:FILTERS"}};
    for (size_t i = 0; i < MAAS_ARRAY_LEN(bad); i++) {
        maas_layer_spec sp[2];
        maas_err e = maas_layers_parse(bad[i].text, sp, 2, &n, err, sizeof(err));
        if (e == MAAS_OK) fail_msg("'%s' was accepted", bad[i].text);
        assert_mentions(err, bad[i].says);
    }
}

/* Shapes: what planning gives, and what it refuses with a message naming the fix. */
static void test_shapes(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    maas_model *m =
        maas_test_layers_model("reshape:28x28x1,conv2d:32:3x3:relu,maxpool:2x2,conv2d:64:3x3:relu,"
                               "maxpool:2x2,flatten,128:relu,10:softmax",
                               784, 1);
    int want[][3] = {{28, 28, 1}, {26, 26, 32}, {13, 13, 32}, {11, 11, 64}, {5, 5, 64}};
    for (int i = 0; i < 5; i++)
        for (int d = 0; d < 3; d++) assert_int_equal(m->layers[i].out.d[d], want[i][d]);
    assert_int_equal(m->layers[5].n_out, 1600);
    /* Keras's count for this network: 320 + 18496 + 204928 + 1290 */
    assert_int_equal(m->n_params, 225034);
    assert_string_equal(m->layers[1].spec.name, "conv2d");
    assert_string_equal(m->layers[3].spec.name, "conv2d_1");
    assert_string_equal(m->layers[2].spec.name, "max_pooling2d");
    /* 2 per multiply-add: 26*26*32*9 + 11*11*64*288 + 1600*128 + 128*10 */
    assert_true(maas_flops_forward(m) ==
                2.0 * (26 * 26 * 32 * 9.0 + 11 * 11 * 64 * 288.0 + 1600 * 128.0 + 1280.0));
    maas_model_free(m);
    struct {
        const char *layers;
        int n_in;
        maas_err code;
        const char *says;
    } bad[] = {
        {"conv2d:4:3x3,flatten,1", 784, MAAS_ERR_SHAPE_MISMATCH, "reshape:28x28x1"},
        {"reshape:28x28x1,10:relu", 784, MAAS_ERR_SHAPE_MISMATCH, "put a flatten"},
        {"reshape:28x28,1", 784, MAAS_ERR_SHAPE_MISMATCH, "put a flatten"},
        {"reshape:27x28x1,flatten,1", 784, MAAS_ERR_SHAPE_MISMATCH, "cannot reshape"},
        {"reshape:2x2x1,conv2d:1:3x3,flatten,1", 4, MAAS_ERR_SHAPE_MISMATCH, "does not fit"},
        {"reshape:2x2x1,conv1d:1:1,flatten,1", 4, MAAS_ERR_SHAPE_MISMATCH, "(steps, channels)"},
        {"reshape:4x4x1,conv2d:2:2x2", 16, MAAS_ERR_SHAPE_MISMATCH, "end with flatten"},
        {"4:relu,embedding:5:2,flatten,1", 3, MAAS_ERR_INVALID_ARGUMENT, "first layer"},
        {"reshape:4x1,flatten", 4, MAAS_ERR_INVALID_ARGUMENT, "at least one Dense or convolution"},
        {"reshape:2048x2048x1,conv2d:2:1x1,flatten,1", 65536, MAAS_ERR_SHAPE_MISMATCH, "cannot"},
    };
    for (size_t i = 0; i < MAAS_ARRAY_LEN(bad); i++) {
        maas_layer_spec specs[MAAS_MAX_LAYERS];
        int n;
        maas_net_size ns;
        assert_ok(maas_layers_parse(bad[i].layers, specs, MAAS_MAX_LAYERS, &n, err, sizeof(err)),
                  err);
        maas_err e = maas_layers_size(bad[i].n_in, specs, n, &ns, err, sizeof(err));
        if (e != bad[i].code)
            fail_msg("%s: got %s (%s), want %s", bad[i].layers, maas_err_code(e), err,
                     maas_err_code(bad[i].code));
        assert_mentions(err, bad[i].says);
    }
}

/* Training moves the moving statistics by Keras's rule; inference uses them; evaluation too. */
static void test_batchnorm_statistics(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    maas_model *m = maas_test_layers_model("batchnorm:momentum=0.5,1:linear", 2, 21);
    const maas_layer *bn = &m->layers[0];
    float *mm = m->params + bn->weights[2].off, *mv = m->params + bn->weights[3].off;
    assert_string_equal(bn->weights[2].name, "moving_mean");
    mm[0] = mm[1] = 0.0f;
    mv[0] = mv[1] = 1.0f;
    float x[4] = {1, 10, 3, 30}, y[2] = {0, 0};
    maas_compile c = {.loss = MAAS_LOSS_MSE};
    maas_optim_defaults(&c.optim, MAAS_OPT_SGD);
    maas_rng rng;
    maas_rng_init(&rng, 1);
    maas_trainer *tr = maas_trainer_new(m, &c, 2, &rng, err, sizeof(err));
    assert_non_null(tr);
    double l;
    const float *g;
    /* a gradient moves nothing */
    assert_ok(maas_trainer_gradient(tr, x, y, 2, &l, &g, err, sizeof(err)), err);
    assert_true(mm[0] == 0.0f && mv[1] == 1.0f);
    assert_ok(maas_trainer_step(tr, x, y, 2, &l, NULL, err, sizeof(err)), err);
    /* batch mean (2, 20), biased variance (1, 100): moving = 0.5 old + 0.5 batch */
    assert_true(fabsf(mm[0] - 1.0f) < 1e-6f && fabsf(mm[1] - 10.0f) < 1e-5f);
    assert_true(fabsf(mv[0] - 1.0f) < 1e-6f && fabsf(mv[1] - 50.5f) < 1e-4f);
    /* inference: (x - moving_mean) / sqrt(moving_var + eps) * gamma + beta, then the Dense */
    float out[2], ref[2];
    assert_ok(maas_model_predict(m, x, 2, out, err, sizeof(err)), err);
    const float *gam = m->params + bn->weights[0].off, *bet = m->params + bn->weights[1].off;
    const float *k = maas_model_kernel(m, 1), *b = maas_model_bias(m, 1);
    for (int r = 0; r < 2; r++) {
        double s = b[0];
        for (int j = 0; j < 2; j++)
            s += ((x[r * 2 + j] - mm[j]) / sqrt((double)mv[j] + 0.001) * gam[j] + bet[j]) * k[j];
        ref[r] = (float)s;
        assert_true(fabs(out[r] - ref[r]) <= 1e-5 * (1 + fabs(ref[r])));
    }
    maas_trainer_free(tr);
    maas_model_free(m);
}

/* Embedding's inputs are indices: checked wherever rows come in; never standardized. */
static void test_embedding_inputs(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    maas_model *m = maas_test_layers_model("embedding:5:2,flatten,1:sigmoid", 3, 31);
    float good[3] = {0, 4, 2}, frac[3] = {0, 1.5f, 2}, high[3] = {0, 1, 5}, neg[3] = {-1, 0, 0};
    float out[1], mean[3] = {0}, sd[3] = {1, 1, 1}, y[1] = {1};
    assert_ok(maas_model_predict(m, good, 1, out, err, sizeof(err)), err);
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_model_predict(m, frac, 1, out, err, sizeof(err)),
               err);
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_model_predict(m, high, 1, out, err, sizeof(err)),
               err);
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_model_predict(m, neg, 1, out, err, sizeof(err)),
               err);
    assert_err(MAAS_ERR_INVALID_ARGUMENT,
               maas_model_set_standardization(m, mean, sd, err, sizeof(err)), err);
    assert_mentions(err, "indices");
    maas_compile c = {.loss = MAAS_LOSS_BINARY_CROSSENTROPY};
    maas_optim_defaults(&c.optim, MAAS_OPT_ADAM);
    maas_fit_opts o;
    maas_fit_opts_init(&o);
    maas_rng rng;
    maas_rng_init(&rng, 2);
    o.rng = &rng;
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_fit(m, &c, high, y, 1, &o, NULL, err, sizeof(err)),
               err);
    assert_mentions(err, "training data");
    maas_model_free(m);
}

/* What supports Dense models only says so, naming the layer (int8 quantization and pruning
 * take convolutions: test_quant; explanations too: test_explain); an Embedding model's inputs
 * are indices, which no gradient moves. */
static void test_refusals(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    maas_model *m = maas_test_layers_model("reshape:2x2x1,conv2d:2:2x2,flatten,1:sigmoid", 4, 41);
    assert_err(MAAS_ERR_UNSUPPORTED, maas_quantize_bf16(m, err, sizeof(err)), err);
    assert_mentions(err, "Conv2D");
    assert_false(maas_model_is_mlp(m));
    maas_model_free(m);
    m = maas_test_layers_model("embedding:5:2,flatten,1:sigmoid", 4, 42);
    float x[4] = {1, 2, 3, 4}, attr[4];
    assert_err(
        MAAS_ERR_UNSUPPORTED,
        maas_explain(m, MAAS_EXPLAIN_GRADIENT_X_INPUT, 0, NULL, x, 1, attr, err, sizeof(err)), err);
    assert_mentions(err, "explanations need inputs a gradient can move; layer 'embedding'");
    maas_model_free(m);
}

int main(void) {
    maas_blas_set_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradients),        cmocka_unit_test(test_grammar),
        cmocka_unit_test(test_shapes),           cmocka_unit_test(test_batchnorm_statistics),
        cmocka_unit_test(test_embedding_inputs), cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
