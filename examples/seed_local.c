/*
 * maas-seed-local - the seed scenario on one machine, through the compute core:
 * Pima Indians diabetes (8 features) -> Dense(10, relu) -> Dense(1, sigmoid),
 * binary cross-entropy, Adam, 10 epochs, batch 32, standardized features, a
 * fixed 80/20 split, then evaluate and predict.
 *
 * usage: maas-seed-local [CSV] [--seed N] [--epochs N]
 */
#include "maas/base.h"
#include "maas/gemm.h"
#include "maas/dataset.h"
#include "maas/model.h"
#include "maas/train.h"

static int print_epoch(void *ud, const maas_epoch_log *e) {
    (void)ud;
    printf("Epoch %d/%d - %.3fs - loss: %.4f - accuracy: %.4f", e->epoch, e->epochs, e->seconds,
           e->loss, e->accuracy);
    if (e->has_val) printf(" - val_loss: %.4f - val_accuracy: %.4f", e->val_loss, e->val_accuracy);
    printf("\n");
    return 0;
}

int main(int argc, char **argv) {
    const char *path = "examples/data/pima-indians-diabetes.csv";
    unsigned long long seed = 7;
    int epochs = 10;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--epochs") && i + 1 < argc)
            epochs = (int)strtol(argv[++i], NULL, 10);
        else if (argv[i][0] != '-')
            path = argv[i];
        else {
            fprintf(stderr, "usage: %s [CSV] [--seed N] [--epochs N]\n", argv[0]);
            return 2;
        }
    }
    char err[MAAS_ERRSTR_SIZE];
    maas_blas_set_threads(1);
    maas_table t;
    if (maas_csv_read(path, &t, err, sizeof(err))) {
        fprintf(stderr, "maas-seed-local: %s\n", err);
        return 1;
    }
    float *x, *y;
    if (maas_table_split(&t, t.cols - 1, &x, &y, err, sizeof(err))) {
        fprintf(stderr, "maas-seed-local: %s\n", err);
        return 1;
    }
    size_t rows = t.rows;
    int nf = t.cols - 1;
    /* Fixed 80/20 split: shuffle the rows once with the seed, keep it. */
    maas_rng rng;
    maas_rng_init(&rng, seed);
    for (size_t i = rows - 1; i > 0; i--) {
        size_t j = (size_t)maas_rng_below(&rng, i + 1);
        float tmp[64];
        memcpy(tmp, x + i * nf, nf * sizeof(float));
        memcpy(x + i * nf, x + j * nf, nf * sizeof(float));
        memcpy(x + j * nf, tmp, nf * sizeof(float));
        float ty = y[i];
        y[i] = y[j];
        y[j] = ty;
    }
    size_t n_train = rows * 8 / 10, n_test = rows - n_train;
    printf("pima: %zu rows, %d features; train %zu, test %zu; seed %llu\n", rows, nf, n_train,
           n_test, seed);

    maas_layer_spec layers[] = {maas_dense(10, MAAS_ACT_RELU), maas_dense(1, MAAS_ACT_SIGMOID)};
    maas_model *m = maas_model_new(nf, layers, 2, &rng, err, sizeof(err));
    if (!m) {
        fprintf(stderr, "maas-seed-local: %s\n", err);
        return 1;
    }
    maas_compile c = {.loss = MAAS_LOSS_BINARY_CROSSENTROPY, .accuracy = 1};
    maas_optim_defaults(&c.optim, MAAS_OPT_ADAM);
    maas_fit_opts o;
    maas_fit_opts_init(&o);
    o.epochs = epochs;
    o.batch_size = 32;
    o.standardize = 1;
    o.rng = &rng;
    o.on_epoch = print_epoch;
    int rc = 0;
    double loss, acc;
    if (maas_fit(m, &c, x, y, n_train, &o, NULL, err, sizeof(err)) ||
        maas_evaluate(m, &c, x + n_train * nf, y + n_train, n_test, &loss, &acc, err,
                      sizeof(err))) {
        fprintf(stderr, "maas-seed-local: %s\n", err);
        rc = 1;
    } else {
        printf("test: loss %.4f, accuracy %.4f\n", loss, acc);
        float p[5];
        if (maas_model_predict(m, x + n_train * nf, 5, p, err, sizeof(err)) == MAAS_OK)
            for (int i = 0; i < 5; i++)
                printf("  row %zu: p(diabetes) = %.3f -> %d (label %d)\n", n_train + i, p[i],
                       p[i] > 0.5f, (int)y[n_train + i]);
    }
    maas_model_free(m);
    free(x);
    free(y);
    maas_table_release(&t);
    return rc;
}
