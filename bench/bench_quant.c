/*
 * maas-bench-quant - int8 quantization and pruning on the Fashion-MNIST
 * 784-256-128-10 model, all in one run (issue 9's benchmark):
 *
 *   - train 5 epochs (Adam, batch 128), evaluate on the 10 000 test images;
 *   - int8 (dynamic per-row inputs, the default) and int8 with calibrated
 *     static input scales: file size ratio, accuracy delta, predict speed
 *     ratio vs float32 at batch 1, 32 and 1024 (medians);
 *   - 50% magnitude pruning, then 2 fine-tuning epochs with the mask held:
 *     accuracy delta and file size; pruned + int8;
 *   - bf16 weights (issue 20): the same figures.
 *
 * Prints a table; a ratio > 1 means the optimized model is better.
 * usage: maas-bench-quant [--repeats N] [--fashion-dir DIR] [--epochs N]
 */
#include "maas/base.h"
#include "maas/dataset.h"
#include "maas/gemm.h"
#include "maas/model.h"
#include "maas/model_io.h"
#include "maas/quant.h"
#include "maas/train.h"

#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void die(const char *what, const char *err) {
    fprintf(stderr, "maas-bench-quant: %s: %s\n", what, err);
    exit(1);
}

static void load(const char *dir, const char *name, maas_idx *out, int scale) {
    char path[512], err[MAAS_ERRSTR_SIZE];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (maas_idx_read(path, out, err, sizeof(err))) die(name, err);
    if (scale)
        for (size_t i = 0; i < out->count; i++) out->data[i] /= 255.0f;
}

/* Median microseconds per call of predicting `batch` rows (the call includes everything). */
static double predict_us(const maas_model *m, const float *x, size_t avail_rows, int batch,
                         int repeats) {
    char err[MAAS_ERRSTR_SIZE];
    maas_infer *inf = maas_infer_new(m, batch, err, sizeof(err));
    if (!inf) die("infer", err);
    float *out = malloc((size_t)batch * m->n_outputs * sizeof(float));
    size_t windows = avail_rows / (size_t)batch;
    int calls = batch == 1 ? 4000 : batch <= 32 ? 400 : 20;
    double t[64];
    int runs = repeats * 5 < 64 ? repeats * 5 : 64;
    maas_infer_run(inf, x, (size_t)batch, out, err, sizeof(err)); /* warm */
    for (int r = 0; r < runs; r++) {
        double t0 = now();
        for (int i = 0; i < calls; i++)
            if (maas_infer_run(inf, x + (size_t)(i % windows) * batch * m->n_inputs, (size_t)batch,
                               out, err, sizeof(err)))
                die("predict", err);
        t[r] = (now() - t0) / calls * 1e6;
    }
    free(out);
    maas_infer_free(inf);
    return median(t, runs);
}

static size_t file_bytes(const maas_model *m) {
    char err[MAAS_ERRSTR_SIZE];
    unsigned char *buf;
    size_t len;
    if (maas_model_save_image(m, NULL, &buf, &len, err, sizeof(err))) die("save", err);
    free(buf);
    return len;
}

static double accuracy(const maas_model *m, const maas_compile *c, const maas_idx *x,
                       const maas_idx *y) {
    char err[MAAS_ERRSTR_SIZE];
    double loss, acc;
    if (maas_evaluate(m, c, x->data, y->data, y->count, &loss, &acc, err, sizeof(err)))
        die("evaluate", err);
    return acc;
}

static const int BATCHES[3] = {1, 32, 1024};

typedef struct variant {
    const char *name;
    size_t bytes;
    double acc;
    double us[3];
} variant;

static void measure(variant *v, const maas_model *m, const maas_compile *c, const maas_idx *xte,
                    const maas_idx *yte, int repeats) {
    v->bytes = file_bytes(m);
    v->acc = accuracy(m, c, xte, yte);
    for (int b = 0; b < 3; b++)
        v->us[b] = predict_us(m, xte->data, yte->count, BATCHES[b], repeats);
}

int main(int argc, char **argv) {
    int repeats = 3, epochs = 5;
    const char *fdir = "/usr/share/datasets/fashion-mnist";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--repeats") && i + 1 < argc)
            repeats = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--epochs") && i + 1 < argc)
            epochs = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--fashion-dir") && i + 1 < argc)
            fdir = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--repeats N] [--epochs N] [--fashion-dir DIR]\n", argv[0]);
            return 2;
        }
    }
    if (repeats < 1 || repeats > 12) repeats = 3;
    if (epochs < 1 || epochs > 50) epochs = 5;
    maas_blas_set_threads(1);
    char err[MAAS_ERRSTR_SIZE];
    maas_idx xtr, ytr, xte, yte;
    load(fdir, "train-images-idx3-ubyte.gz", &xtr, 1);
    load(fdir, "train-labels-idx1-ubyte.gz", &ytr, 0);
    load(fdir, "t10k-images-idx3-ubyte.gz", &xte, 1);
    load(fdir, "t10k-labels-idx1-ubyte.gz", &yte, 0);

    maas_rng rng;
    maas_rng_init(&rng, 42);
    maas_layer_spec l[] = {maas_dense(256, MAAS_ACT_RELU), maas_dense(128, MAAS_ACT_RELU),
                           maas_dense(10, MAAS_ACT_SOFTMAX)};
    maas_model *f = maas_model_new(784, l, 3, &rng, err, sizeof(err));
    if (!f) die("model", err);
    maas_compile c = {.loss = MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, .accuracy = 1};
    maas_optim_defaults(&c.optim, MAAS_OPT_ADAM);
    maas_fit_opts o;
    maas_fit_opts_init(&o);
    o.epochs = epochs;
    o.batch_size = 128;
    o.rng = &rng;
    fprintf(stderr, "training the Fashion-MNIST model, %d epochs...\n", epochs);
    if (maas_fit(f, &c, xtr.data, ytr.data, ytr.count, &o, NULL, err, sizeof(err))) die("fit", err);

    variant v[6] = {{.name = "float32"},
                    {.name = "int8 (dynamic, default)"},
                    {.name = "int8 (calibrated static)"},
                    {.name = "pruned 50% + 2 ep fine-tune"},
                    {.name = "pruned 50% + int8"},
                    {.name = "bf16"}};
    measure(&v[0], f, &c, &xte, &yte, repeats);

    maas_model *q = maas_model_clone(f, err, sizeof(err));
    if (!q || maas_quantize(q, err, sizeof(err))) die("quantize", err);
    measure(&v[1], q, &c, &xte, &yte, repeats);
    maas_model *qc = maas_model_clone(q, err, sizeof(err));
    /* calibrated on 1 000 training images */
    if (!qc || maas_quant_calibrate(qc, xtr.data, 1000, err, sizeof(err))) die("calibrate", err);
    measure(&v[2], qc, &c, &xte, &yte, repeats);

    maas_model *p = maas_model_clone(f, err, sizeof(err));
    float *mask = malloc(f->n_params * sizeof(float));
    maas_prune_report rep;
    if (!p || !mask || maas_prune(p, 0.5, 0, mask, &rep, err, sizeof(err))) die("prune", err);
    double acc_pruned_only = accuracy(p, &c, &xte, &yte);
    o.epochs = 2;
    o.param_mask = mask;
    if (maas_fit(p, &c, xtr.data, ytr.data, ytr.count, &o, NULL, err, sizeof(err)))
        die("fine-tune", err);
    measure(&v[3], p, &c, &xte, &yte, repeats);
    maas_model *pq = maas_model_clone(p, err, sizeof(err));
    if (!pq || maas_quantize(pq, err, sizeof(err))) die("quantize pruned", err);
    measure(&v[4], pq, &c, &xte, &yte, repeats);
    maas_model *bq = maas_model_clone(f, err, sizeof(err));
    if (!bq || maas_quantize_bf16(bq, err, sizeof(err))) die("bf16", err);
    measure(&v[5], bq, &c, &xte, &yte, repeats);

    printf("Fashion-MNIST 784-256-128-10, %d epochs; test accuracy on 10 000 images; int8 kernel "
           "%s; bf16 kernel %s; 1 thread; medians of %d runs\n",
           epochs, maas_qkernel_name(MAAS_QKERNEL_AUTO), maas_bf16_kernel_name(),
           repeats * 5 < 64 ? repeats * 5 : 64);
    printf("%-28s %9s %6s %8s %7s %9s %6s %9s %6s %9s %6s\n", "model", "bytes", "size", "accuracy",
           "delta", "b=1 us", "speed", "b=32 us", "speed", "b=1024 us", "speed");
    for (int i = 0; i < 6; i++) {
        printf("%-28s %9zu %5.2fx %8.4f %+6.2fpt", v[i].name, v[i].bytes,
               (double)v[0].bytes / (double)v[i].bytes, v[i].acc, (v[i].acc - v[0].acc) * 100.0);
        for (int b = 0; b < 3; b++) printf(" %9.2f %5.2fx", v[i].us[b], v[0].us[b] / v[i].us[b]);
        printf("\n");
    }
    printf("pruning: %.1f%% of kernel weights zero (layers:", rep.total_sparsity * 100.0);
    for (int i = 0; i < 3; i++) printf(" %.1f%%", rep.sparsity[i] * 100.0);
    printf("); accuracy right after pruning %.4f (%+.2fpt), after fine-tuning %.4f\n",
           acc_pruned_only, (acc_pruned_only - v[0].acc) * 100.0, v[3].acc);
    printf("targets: int8 >= 3.9x smaller, <= 1pt accuracy loss, >= 1.5x faster at batch 1; "
           "pruned 50%% <= 1pt loss after fine-tuning\n");
    printf("bf16: half the kernel bytes; accuracy within noise of float32; faster than float32 "
           "at every batch where the CPU has AVX512_BF16 (bf16 kernel above)\n");
    free(mask);
    maas_model_free(f);
    maas_model_free(q);
    maas_model_free(qc);
    maas_model_free(p);
    maas_model_free(pq);
    maas_model_free(bq);
    maas_idx_release(&xtr);
    maas_idx_release(&ytr);
    maas_idx_release(&xte);
    maas_idx_release(&yte);
    return 0;
}
