/*
 * Fashion-MNIST (Debian's dataset-fashion-mnist): 784-256-128-10 relu/softmax,
 * sparse categorical cross-entropy, Adam, batch 128, reaches >= 0.87 test
 * accuracy after 5 epochs.
 */
#include "testutil.h"

#include "maas/dataset.h"

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist/"

static void load(const char *images, const char *labels, maas_idx *x, maas_idx *y) {
    char err[MAAS_ERRSTR_SIZE];
    assert_ok(maas_idx_read(images, x, err, sizeof(err)), err);
    assert_ok(maas_idx_read(labels, y, err, sizeof(err)), err);
    assert_int_equal(x->ndim, 3);
    assert_int_equal(x->dims[1] * x->dims[2], 784);
    assert_int_equal(y->count, x->dims[0]);
    for (size_t i = 0; i < x->count; i++) x->data[i] /= 255.0f;
}

static int on_epoch(void *ud, const maas_epoch_log *e) {
    (void)ud;
    print_message("epoch %d/%d: loss %.4f accuracy %.4f (%.1fs)\n", e->epoch, e->epochs, e->loss,
                  e->accuracy, e->seconds);
    return 0;
}

static void test_fashion_mnist(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    maas_idx xtr, ytr, xte, yte;
    load(FMNIST_DIR "train-images-idx3-ubyte.gz", FMNIST_DIR "train-labels-idx1-ubyte.gz", &xtr,
         &ytr);
    load(FMNIST_DIR "t10k-images-idx3-ubyte.gz", FMNIST_DIR "t10k-labels-idx1-ubyte.gz", &xte,
         &yte);
    assert_int_equal(ytr.count, 60000);
    assert_int_equal(yte.count, 10000);

    maas_rng rng;
    maas_rng_init(&rng, 42);
    maas_layer_spec layers[] = {maas_dense(256, MAAS_ACT_RELU), maas_dense(128, MAAS_ACT_RELU),
                                maas_dense(10, MAAS_ACT_SOFTMAX)};
    maas_model *m = maas_model_new(784, layers, 3, &rng, err, sizeof(err));
    assert_non_null(m);
    maas_compile c = {.loss = MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, .accuracy = 1};
    maas_optim_defaults(&c.optim, MAAS_OPT_ADAM);
    maas_fit_opts o;
    maas_fit_opts_init(&o);
    o.epochs = 5;
    o.batch_size = 128;
    o.rng = &rng;
    o.on_epoch = on_epoch;
    assert_ok(maas_fit(m, &c, xtr.data, ytr.data, ytr.count, &o, NULL, err, sizeof(err)), err);
    double loss, acc;
    assert_ok(maas_evaluate(m, &c, xte.data, yte.data, yte.count, &loss, &acc, err, sizeof(err)),
              err);
    print_message("fashion-mnist test: loss %.4f accuracy %.4f\n", loss, acc);
    assert_true(acc >= 0.87);
    maas_model_free(m);
    maas_idx_release(&xtr);
    maas_idx_release(&ytr);
    maas_idx_release(&xte);
    maas_idx_release(&yte);
}

int main(void) {
    maas_blas_set_threads(1);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_fashion_mnist)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
