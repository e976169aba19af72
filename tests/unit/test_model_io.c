/*
 * Keras model.h5 files: round trips (file and in-memory image, bit for bit),
 * the h5py-made fixtures in every Keras layout (tests/ref/make_h5_fixtures.py),
 * every malformed-file case, and truncated/corrupted images.
 */
#include "testutil.h"

#include <time.h>

#include "maas/dataset.h"
#include "maas/model_io.h"

#include "fpbound.h"

#ifndef MAAS_BINARY_DIR
#define MAAS_BINARY_DIR "."
#endif
#define FX MAAS_BINARY_DIR "/h5fx/"

static char err[MAAS_ERRSTR_SIZE];

static maas_model *rich_model(maas_rng *rng) {
    maas_layer_spec l[] = {maas_dense(9, MAAS_ACT_GELU),       maas_dropout(0.25f),
                           maas_dense(8, MAAS_ACT_LEAKY_RELU), maas_dense(7, MAAS_ACT_ELU),
                           maas_dense(6, MAAS_ACT_TANH),       maas_dense(5, MAAS_ACT_RELU),
                           maas_dense(4, MAAS_ACT_LINEAR),     maas_dense(3, MAAS_ACT_SOFTMAX)};
    l[3].use_bias = 0;
    snprintf(l[6].name, sizeof(l[6].name), "my_linear");
    maas_model *m = maas_model_new(5, l, (int)MAAS_ARRAY_LEN(l), rng, err, sizeof(err));
    assert_non_null(m);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] += (float)(maas_rng_normal(rng) * 0.1);
    float mean[5], std[5];
    for (int i = 0; i < 5; i++) {
        mean[i] = (float)maas_rng_normal(rng) * 10.0f;
        std[i] = (float)(maas_rng_uniform(rng) * 3.0 + 0.01);
    }
    std[2] = 0.0f; /* a constant feature */
    assert_ok(maas_model_set_standardization(m, mean, std, err, sizeof(err)), err);
    return m;
}

/*
 * A loaded model predicts exactly what the saved one did: the same batch gives
 * the same bits (same weights, same kernels). A row alone may take another
 * BLAS kernel (sgemv), so it is held to the float32 bound instead (fpbound.h).
 */
static void assert_same_predictions(const maas_model *a, const maas_model *b) {
    maas_rng r;
    maas_rng_init(&r, 5);
    float x[40 * 5], pa[40 * 3], pb[40 * 3];
    double exact[40 * 3], bound[40 * 3];
    for (size_t i = 0; i < MAAS_ARRAY_LEN(x); i++) x[i] = (float)(maas_rng_normal(&r) * 8.0);
    assert_ok(maas_model_predict(a, x, 40, pa, err, sizeof(err)), err);
    assert_ok(maas_model_predict(b, x, 40, pb, err, sizeof(err)), err);
    assert_memory_equal(pa, pb, sizeof(pa)); /* bit for bit */
    assert_int_equal(maas_test_forward_bound(b, x, 40, exact, bound), 0);
    assert_true(maas_test_bound_ratio(pa, exact, bound, MAAS_ARRAY_LEN(pa)) <= 1.0);
    assert_ok(maas_model_predict(b, x, 1, pb, err, sizeof(err)), err);
    assert_true(maas_test_bound_ratio(pb, exact, bound, 3) <= 1.0);
}

/*
 * What the README promises about batching (the worker batches unrelated
 * users' rows together): for a float model, a row's outputs do not depend on
 * the values of the rows batched with it, and the same rows in the same batch
 * give the same bits, but the batch size may move its outputs in the last
 * bits (BLAS picks kernels by shape), always within the float32 bound of the
 * exact result (fpbound.h). int8 models: identical bits at every batch size
 * and kernel (test_quant).
 */
static void test_batch_invariance(void **state) {
    (void)state;
    maas_rng rng;
    maas_rng_init(&rng, 21);
    maas_model *m = rich_model(&rng);
    enum { N = 300 };
    float *x = malloc(N * 5 * sizeof(float)), *ref_out = malloc(N * 3 * sizeof(float));
    float *out = malloc(N * 3 * sizeof(float)), *other = malloc(N * 5 * sizeof(float));
    double *exact = malloc(N * 3 * sizeof(double)), *bound = malloc(N * 3 * sizeof(double));
    assert_true(x && ref_out && out && other && exact && bound);
    for (int i = 0; i < N * 5; i++) x[i] = (float)(maas_rng_normal(&rng) * 8.0);
    assert_int_equal(maas_test_forward_bound(m, x, N, exact, bound), 0);
    assert_ok(maas_model_predict(m, x, N, ref_out, err, sizeof(err)), err);
    assert_true(maas_test_bound_ratio(ref_out, exact, bound, N * 3) <= 1.0);

    /* the same batch again: the same bits */
    assert_ok(maas_model_predict(m, x, N, out, err, sizeof(err)), err);
    assert_memory_equal(out, ref_out, N * 3 * sizeof(float));

    /* other batch-mates (every other row replaced): the kept rows' bits do not move */
    memcpy(other, x, N * 5 * sizeof(float));
    for (int r = 1; r < N; r += 2)
        for (int j = 0; j < 5; j++) other[r * 5 + j] = (float)(maas_rng_normal(&rng) * 8.0);
    assert_ok(maas_model_predict(m, other, N, out, err, sizeof(err)), err);
    for (int r = 0; r < N; r += 2) assert_memory_equal(out + r * 3, ref_out + r * 3, 12);

    /* other batch sizes: each row within the bound of the exact result, wherever it lands */
    static const int chunks[] = {1, 2, 7, 31, 32, 33, 64, 129};
    double worst = 0.0;
    int moved = 0;
    for (size_t c = 0; c < MAAS_ARRAY_LEN(chunks); c++) {
        maas_infer *inf = maas_infer_new(m, chunks[c], err, sizeof(err));
        assert_non_null(inf);
        assert_ok(maas_infer_run(inf, x, N, out, err, sizeof(err)), err);
        worst = fmax(worst, maas_test_bound_ratio(out, exact, bound, N * 3));
        moved += memcmp(out, ref_out, N * 3 * sizeof(float)) != 0;
        maas_infer_free(inf);
    }
    print_message("batch sizes 1..300: at most %.3g of the float32 bound; %d of %zu sizes moved "
                  "some last bit here\n",
                  worst, moved, MAAS_ARRAY_LEN(chunks));
    assert_true(worst <= 1.0);
    free(x);
    free(ref_out);
    free(out);
    free(other);
    free(exact);
    free(bound);
    maas_model_free(m);
}

static void test_round_trip(void **state) {
    (void)state;
    maas_rng rng;
    maas_rng_init(&rng, 11);
    maas_model *m = rich_model(&rng);
    maas_compile c = {.loss = MAAS_LOSS_CATEGORICAL_CROSSENTROPY, .accuracy = 1};
    maas_optim_defaults(&c.optim, MAAS_OPT_SGD);
    c.optim.learning_rate = 0.05f;
    c.optim.momentum = 0.9f;
    c.optim.nesterov = 1;

    unsigned char *img;
    size_t len;
    assert_ok(maas_model_save_image(m, &c, &img, &len, err, sizeof(err)), err);
    const char *path = MAAS_BINARY_DIR "/test_model_io_roundtrip.h5";
    assert_ok(maas_model_save(m, &c, path, err, sizeof(err)), err);

    /* the file holds exactly the image's bytes */
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    unsigned char *disk = malloc(len + 1);
    assert_int_equal(fread(disk, 1, len + 1, f), len);
    fclose(f);
    assert_memory_equal(disk, img, len);
    free(disk);

    maas_model *from_img, *from_file;
    maas_model_info info;
    assert_ok(maas_model_load_image(img, len, &from_img, &info, err, sizeof(err)), err);
    assert_ok(maas_model_load(path, &from_file, NULL, err, sizeof(err)), err);
    assert_same_predictions(m, from_img);
    assert_same_predictions(m, from_file);
    assert_memory_equal(m->params, from_img->params, m->n_params * sizeof(float));
    assert_memory_equal(m->feat_std, from_img->feat_std, 5 * sizeof(float));
    assert_int_equal(from_img->n_layers, m->n_layers);
    for (int i = 0; i < m->n_layers; i++) {
        assert_string_equal(from_img->layers[i].spec.name, m->layers[i].spec.name);
        assert_int_equal(from_img->layers[i].spec.act, m->layers[i].spec.act);
        assert_int_equal(from_img->layers[i].spec.use_bias, m->layers[i].spec.use_bias);
        assert_int_equal(from_img->layers[i].spec.kind, m->layers[i].spec.kind);
    }
    assert_float_equal(from_img->layers[1].spec.rate, 0.25, 0);
    assert_string_equal(info.keras_version, "2.15.0");
    assert_true(info.has_compile);
    assert_int_equal(info.compile.loss, c.loss);
    assert_int_equal(info.compile.optim.kind, MAAS_OPT_SGD);
    assert_float_equal(info.compile.optim.learning_rate, 0.05, 0);
    assert_float_equal(info.compile.optim.momentum, 0.9, 0);
    assert_true(info.compile.optim.nesterov);
    assert_true(info.compile.accuracy);

    /* saving again, a second later, gives the same bytes: no timestamps in the file,
     * so a version's content hash depends on the model only */
    struct timespec pause = {1, 100000000L};
    nanosleep(&pause, NULL);
    unsigned char *img2;
    size_t len2;
    assert_ok(maas_model_save_image(from_img, &c, &img2, &len2, err, sizeof(err)), err);
    assert_int_equal(len2, len);
    assert_memory_equal(img2, img, len);
    free(img2);

    /* without a compile config: loads uncompiled */
    assert_ok(maas_model_save_image(m, NULL, &img2, &len2, err, sizeof(err)), err);
    maas_model *nc;
    assert_ok(maas_model_load_image(img2, len2, &nc, &info, err, sizeof(err)), err);
    assert_false(info.has_compile);
    maas_model_free(nc);
    free(img2);

    maas_model_free(from_img);
    maas_model_free(from_file);
    free(img);
    remove(path);
    maas_model_free(m);
}

static void test_save_errors(void **state) {
    (void)state;
    maas_rng rng;
    maas_rng_init(&rng, 3);
    maas_layer_spec l[] = {maas_dense(3, MAAS_ACT_LEAKY_RELU)};
    l[0].act_alpha = 0.3f; /* not expressible as a Keras activation name */
    maas_model *m = maas_model_new(2, l, 1, &rng, err, sizeof(err));
    unsigned char *img;
    size_t len;
    assert_err(MAAS_ERR_INVALID_ARGUMENT,
               maas_model_save_image(m, NULL, &img, &len, err, sizeof(err)), err);
    assert_mentions(err, "leaky_relu");
    maas_model_free(m);
    l[0].act_alpha = 0;
    m = maas_model_new(2, l, 1, &rng, err, sizeof(err));
    assert_err(MAAS_ERR_IO, maas_model_save(m, NULL, "/nonexistent/dir/m.h5", err, sizeof(err)),
               err);
    assert_mentions(err, "/nonexistent/dir/m.h5");
    maas_model_free(m);
}

static float *read_csv(const char *path, size_t *rows, int *cols) {
    maas_table t;
    assert_ok(maas_csv_read(path, &t, err, sizeof(err)), err);
    float *d = t.data;
    *rows = t.rows;
    *cols = t.cols;
    t.data = NULL;
    maas_table_release(&t);
    return d;
}

static void check_fixture(const char *name, maas_model_info *info) {
    char path[1024];
    snprintf(path, sizeof(path), FX "good_%s.h5", name);
    maas_model *m;
    assert_ok(maas_model_load(path, &m, info, err, sizeof(err)), err);
    size_t rows, erows;
    int cols, ecols;
    snprintf(path, sizeof(path), FX "good_%s.x.csv", name);
    float *x = read_csv(path, &rows, &cols);
    assert_int_equal(cols, m->n_inputs);
    /* expected.csv has no header: read it with a dummy one */
    snprintf(path, sizeof(path), FX "good_%s.expected.csv", name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char body[65536];
    size_t n = fread(body, 1, sizeof(body) - 1, f);
    fclose(f);
    body[n] = '\0';
    char text[70000];
    int hdr = snprintf(text, sizeof(text), "c0");
    for (int j = 1; j < m->n_outputs; j++)
        hdr += snprintf(text + hdr, sizeof(text) - hdr, ",c%d", j);
    snprintf(text + hdr, sizeof(text) - hdr, "\n%s", body);
    maas_table et;
    assert_ok(maas_csv_parse(text, strlen(text), &et, err, sizeof(err)), err);
    erows = et.rows;
    ecols = et.cols;
    assert_int_equal(erows, rows);
    assert_int_equal(ecols, m->n_outputs);
    float *got = malloc(rows * (size_t)ecols * sizeof(float));
    assert_ok(maas_model_predict(m, x, rows, got, err, sizeof(err)), err);
    for (size_t i = 0; i < rows * (size_t)ecols; i++) {
        double want = et.data[i];
        if (fabs(got[i] - want) > 1e-5 * fabs(want) + 1e-6)
            fail_msg("fixture %s: output %zu is %.9g, numpy says %.9g", name, i, (double)got[i],
                     want);
    }
    free(got);
    free(x);
    maas_table_release(&et);
    maas_model_free(m);
}

static void test_keras_layouts(void **state) {
    (void)state;
    maas_model_info info;
    check_fixture("tfkeras", &info);
    assert_true(info.has_compile);
    assert_int_equal(info.compile.optim.kind, MAAS_OPT_ADAM);
    assert_float_equal(info.compile.optim.learning_rate, 0.002, 1e-9);
    assert_true(info.compile.accuracy);
    assert_string_equal(info.backend, "tensorflow");
    check_fixture("fixed", &info);
    assert_false(info.has_compile);
    check_fixture("keras3", &info);
    assert_true(info.has_compile);
    assert_int_equal(info.compile.loss, MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY);
    assert_int_equal(info.compile.optim.kind, MAAS_OPT_SGD);
    assert_true(info.compile.optim.nesterov);
    assert_string_equal(info.keras_version, "3.10.0");
    check_fixture("noinput", &info);
    check_fixture("norm", &info);
    check_fixture("f64", &info);
}

static void test_malformed_files(void **state) {
    (void)state;
    FILE *f = fopen(FX "bad.tsv", "r");
    assert_non_null(f);
    char line[512];
    int cases = 0;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        char *name = line, *code = strchr(name, '\t');
        assert_non_null(code);
        *code++ = '\0';
        char *text = strchr(code, '\t');
        assert_non_null(text);
        *text++ = '\0';
        char path[1024];
        snprintf(path, sizeof(path), FX "bad_%s.h5", name);
        maas_model *m = (maas_model *)1;
        maas_err e = maas_model_load(path, &m, NULL, err, sizeof(err));
        assert_null(m);
        if (strcmp(maas_err_code(e), code) || !strstr(err, text))
            fail_msg("bad_%s: got %s '%s', want %s mentioning '%s'", name, maas_err_code(e), err,
                     code, text);
        cases++;
    }
    fclose(f);
    print_message("%d malformed files rejected with the expected code and message\n", cases);
    assert_true(cases >= 20);
}

/* Truncations and byte flips of a valid image: an error or a model, never a crash. */
static void test_corrupted_images(void **state) {
    (void)state;
    maas_rng rng;
    maas_rng_init(&rng, 17);
    maas_model *m = rich_model(&rng);
    unsigned char *img;
    size_t len;
    assert_ok(maas_model_save_image(m, NULL, &img, &len, err, sizeof(err)), err);
    int rejected = 0;
    for (size_t cut = 0; cut < len; cut += len / 64 + 1) {
        maas_model *out;
        if (maas_model_load_image(img, cut, &out, NULL, err, sizeof(err)) != MAAS_OK) rejected++;
        maas_model_free(out);
    }
    assert_true(rejected >= 60);
    unsigned char *copy = malloc(len);
    int loaded = 0;
    for (int trial = 0; trial < 300; trial++) {
        memcpy(copy, img, len);
        for (int k = 0; k < 4; k++)
            copy[maas_rng_below(&rng, len)] ^= (unsigned char)(1 + maas_rng_below(&rng, 255));
        maas_model *out;
        if (maas_model_load_image(copy, len, &out, NULL, err, sizeof(err)) == MAAS_OK) {
            loaded++;
            assert_ok(maas_model_check_finite(out, err, sizeof(err)), err);
        } else {
            assert_null(out);
            assert_true(strlen(err) > 0);
        }
        maas_model_free(out);
    }
    print_message("byte flips: %d of 300 corrupted images still loaded (flips in unused bytes or "
                  "weights)\n",
                  loaded);
    free(copy);
    free(img);
    maas_model_free(m);
}

int main(void) {
    maas_blas_set_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),       cmocka_unit_test(test_keras_layouts),
        cmocka_unit_test(test_batch_invariance), cmocka_unit_test(test_save_errors),
        cmocka_unit_test(test_malformed_files),  cmocka_unit_test(test_corrupted_images),
    };
    /* at a capped kernel level (the ISA matrix) only the tests that compute run: the
     * file checks are the same at every level and take most of the time */
    size_t n = getenv("MAAS_CPU_LEVEL") ? 3 : MAAS_ARRAY_LEN(tests);
    return _cmocka_run_group_tests("test_model_io", tests, n, NULL, NULL);
}
