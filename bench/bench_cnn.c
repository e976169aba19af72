/*
 * maas-bench-cnn: inference throughput of a model file on HDF5 rows, batches of a given size,
 * one thread - the C side of bench/bench_cnn.py (issue 23's CNN against ONNX Runtime and
 * PyTorch). Prints `key value` lines.
 *
 *   maas-bench-cnn MODEL.h5 DATA.h5:/x [--batch N] [--repeats N]
 */
#include "maas/base.h"
#include "maas/clock.h"
#include "maas/cost.h"
#include "maas/dataset.h"
#include "maas/gemm.h"
#include "maas/model_io.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: maas-bench-cnn MODEL.h5 DATA.h5:/x [--batch N] [--repeats N]\n");
        return 2;
    }
    int batch = 256, repeats = 5;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--batch")) batch = (int)strtol(argv[i + 1], NULL, 10);
        if (!strcmp(argv[i], "--repeats")) repeats = (int)strtol(argv[i + 1], NULL, 10);
    }
    if (batch < 1 || batch > 65536 || repeats < 1 || repeats > 100) {
        fprintf(stderr, "maas-bench-cnn: --batch 1..65536, --repeats 1..100\n");
        return 2;
    }
    maas_blas_set_threads(1);
    char err[MAAS_ERRSTR_SIZE], path[1024];
    snprintf(path, sizeof(path), "%s", argv[2]);
    char *colon = strrchr(path, ':');
    if (!colon) {
        fprintf(stderr, "maas-bench-cnn: data is FILE.h5:/dataset\n");
        return 2;
    }
    *colon = '\0';
    maas_model *m;
    maas_table t;
    if (maas_model_load(argv[1], &m, NULL, err, sizeof(err)) ||
        maas_h5_read_matrix(path, colon + 1, &t, err, sizeof(err))) {
        fprintf(stderr, "maas-bench-cnn: %s\n", err);
        return 1;
    }
    if (t.cols != m->n_inputs || t.rows < (size_t)batch) {
        fprintf(stderr, "maas-bench-cnn: the data has %zu rows of %d values; the model takes %d\n",
                t.rows, t.cols, m->n_inputs);
        return 1;
    }
    maas_infer *inf;
    float *out = malloc((size_t)batch * (size_t)m->n_outputs * sizeof(float));
    if (!out || maas_infer_create(&inf, m, batch, err, sizeof(err))) {
        fprintf(stderr, "maas-bench-cnn: %s\n", out ? err : "out of memory");
        return 1;
    }
    size_t batches = t.rows / (size_t)batch;
    double *rates = malloc((size_t)repeats * sizeof(double));
    maas_infer_run(inf, t.data, (size_t)batch, out, err, sizeof(err)); /* warm up */
    for (int r = 0; r < repeats; r++) {
        size_t n = batches < 40 ? batches : 40;
        double t0 = maas_mono_s();
        for (size_t b = 0; b < n; b++)
            if (maas_infer_run(inf, t.data + b * (size_t)batch * (size_t)t.cols, (size_t)batch, out,
                               err, sizeof(err))) {
                fprintf(stderr, "maas-bench-cnn: %s\n", err);
                return 1;
            }
        rates[r] = (double)n * batch / (maas_mono_s() - t0);
    }
    qsort(rates, (size_t)repeats, sizeof(double), cmp_double);
    printf("maas_predict%d_sps %.0f\n", batch, rates[repeats / 2]);
    printf("maas_forward_flops_per_row %.0f\n", maas_flops_forward(m));
    free(rates);
    free(out);
    maas_infer_free(inf);
    maas_table_release(&t);
    maas_model_free(m);
    return 0;
}
