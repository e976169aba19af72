/*
 * maas-bench-core - compute-core benchmarks, printed as `key value` lines for
 * bench/run.py, which runs the PyTorch reference in the same run and prints
 * the ratios.
 *
 *   fashion_epoch_sps   Fashion-MNIST 784-256-128-10, Adam, batch 128: samples/s (median epoch)
 *   pima_10ep_s         seed model, 10 epochs, batch 32 on Pima: seconds (median of runs)
 *   predict1_us         single-row predict latency on the Fashion model: microseconds (median)
 *   predict1024_sps     batch-1024 predict throughput: samples/s (median), on the float GEMM
 *                       MAAS_FLOAT_GEMM picks (printed as float_gemm)
 *   predict1_int8_us, predict1024_int8_sps   the same on the int8-quantized model
 *   int8_gemms1024_us   the int8 batch-1024's three GEMMs alone (maas_qgemm, best of 15), us
 *   predict1_bf16_us, predict1024_bf16_sps   the same on the bf16 model (bf16_kernel: where it ran)
 *   rowvec_fashion_us, sgemv_fashion_us       the single row's three vector-matrix products
 *                       (784x256, 256x128, 128x10) with maas_rowvec and with OpenBLAS's sgemv
 *                       (the single-row path before issue 20), same run: microseconds
 *   read_weights_gbps, read_weights_bf16_gbps  GB/s of re-reading the Fashion model's 0.94 MB
 *                       of float weights (0.47 MB as bf16) with plain loads: the floor of a
 *                       single row, which reads every weight once
 *   explain_gxi_us, explain_ig64_us  explaining one Fashion row, all 10 outputs (maas_explain):
 *                       gradient x input, integrated gradients at 64 steps; best of 3, us
 *   sgemm_peak_gflops   OpenBLAS sgemm 1024^3 on this machine: the best of measurements
 *                       taken before, between and after the others (a shared machine's
 *                       neighbours slow some; the best is the fair "peak" to divide by)
 *   onednn_peak_gflops  oneDNN's f32 matmul 1024^3 (float inference batches' path): best of two
 *   sgemm_train_gflops  sgemm alone on the training step's GEMM shapes
 *   train_gemm_gflops   training step's GEMM FLOPs / whole epoch time
 *   train_insitu_gflops the training GEMMs as they run inside the steps (maas_train_profile)
 *   train_step_gemm_share, train_update_share  fractions of step time in GEMM / optimizer
 *
 * usage: maas-bench-core [--repeats N] [--threads N] [--fashion-dir DIR] [--pima CSV]
 */
#include "maas/base.h"
#include "maas/cpu.h"
#include "maas/dataset.h"
#include "maas/explain.h"
#include "maas/gemm.h"
#include "maas/model.h"
#include "maas/quant.h"
#include "maas/train.h"
#include "gemm_internal.h" /* oneDNN's matmul, for the machine's best GEMM */

#include <cblas.h> /* the reference sgemv (the compute core itself calls BLAS in gemm.c only) */
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
    fprintf(stderr, "maas-bench-core: %s: %s\n", what, err);
    exit(1);
}

static maas_model *fashion_model(maas_rng *rng) {
    char err[MAAS_ERRSTR_SIZE];
    maas_layer_spec l[] = {maas_dense(256, MAAS_ACT_RELU), maas_dense(128, MAAS_ACT_RELU),
                           maas_dense(10, MAAS_ACT_SOFTMAX)};
    maas_model *m = maas_model_new(784, l, 3, rng, err, sizeof(err));
    if (!m) die("model", err);
    return m;
}

typedef struct {
    double t0, last;
    double times[64];
    int n;
} epoch_timer;

static int on_epoch(void *ud, const maas_epoch_log *e) {
    epoch_timer *t = ud;
    if (t->n < 64) t->times[t->n++] = e->seconds;
    return 0;
}

/* sgemm GFLOP/s for C[m x n] = A[m x k] B[k x n] with the given transposes. */
#include <immintrin.h>

/* XOR of n 32-byte blocks, four streams (reads at the cache's pace, no arithmetic bound). */
__attribute__((target("avx2"))) static uint64_t read_avx2(const unsigned char *p, size_t n) {
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        a = _mm256_xor_si256(a, _mm256_loadu_si256((const __m256i *)(p + 32 * i)));
        b = _mm256_xor_si256(b, _mm256_loadu_si256((const __m256i *)(p + 32 * i + 32)));
        c = _mm256_xor_si256(c, _mm256_loadu_si256((const __m256i *)(p + 32 * i + 64)));
        d = _mm256_xor_si256(d, _mm256_loadu_si256((const __m256i *)(p + 32 * i + 96)));
    }
    a = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    uint64_t r[4];
    memcpy(r, &a, sizeof(r));
    return r[0] ^ r[1] ^ r[2] ^ r[3] ^ i;
}

/*
 * GB/s of reading `bytes` bytes again and again (the single row's weights: what bounds a row
 * that reads each weight once), best of 9 runs of 200 passes; 0 without AVX2.
 */
static double read_gbps(size_t bytes) {
    if (!__builtin_cpu_supports("avx2")) return 0.0;
    unsigned char *buf = malloc(bytes);
    for (size_t i = 0; i < bytes; i++) buf[i] = (unsigned char)(i * 131u);
    volatile uint64_t sink = 0;
    double best = 0.0;
    for (int r = 0; r < 9; r++) {
        double t0 = now();
        for (int k = 0; k < 200; k++) sink ^= read_avx2(buf, bytes / 32);
        double g = 200.0 * (double)(bytes / 32 * 32) / (now() - t0) / 1e9;
        best = g > best ? g : best;
    }
    (void)sink;
    free(buf);
    return best;
}

/*
 * oneDNN's f32 matmul on 1024^3 (the path float inference batches take, gemm_dnnl.c), GFLOP/s;
 * 0 where oneDNN is missing or refuses (then OpenBLAS's is the best GEMM here).
 */
static double onednn_gflops(double min_seconds) {
    int n = 1024;
    float *a = calloc((size_t)n * n, sizeof(float)), *b = calloc((size_t)n * n, sizeof(float));
    float *c = calloc((size_t)n * n, sizeof(float));
    for (size_t i = 0; i < (size_t)n * n; i++) a[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)n * n; i++) b[i] = (float)(i % 5) * 0.1f;
    maas_fdnnl *d = maas__fdnnl_new();
    double g = 0.0;
    if (d && maas__fdnnl_run(d, n, n, a, n, n, b, NULL, c, n) == n) { /* warm up (JIT) */
        long iters = 0;
        double t0 = now(), t;
        do {
            maas__fdnnl_run(d, n, n, a, n, n, b, NULL, c, n);
            iters++;
        } while ((t = now() - t0) < min_seconds);
        g = 2.0 * n * n * (double)n * iters / t / 1e9;
    }
    maas__fdnnl_free(d);
    free(a);
    free(b);
    free(c);
    return g;
}

static double sgemm_gflops(int ta, int tb, int m, int n, int k, double min_seconds) {
    float *a = calloc((size_t)m * k, sizeof(float)), *b = calloc((size_t)k * n, sizeof(float));
    float *c = calloc((size_t)m * n, sizeof(float));
    for (size_t i = 0; i < (size_t)m * k; i++) a[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)k * n; i++) b[i] = (float)(i % 5) * 0.1f;
    int lda = ta ? m : k, ldb = tb ? k : n;
    maas_gemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, n); /* warm up */
    long iters = 0;
    double t0 = now(), t;
    do {
        maas_gemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, n);
        iters++;
    } while ((t = now() - t0) < min_seconds);
    free(a);
    free(b);
    free(c);
    return 2.0 * m * n * (double)k * iters / t / 1e9;
}

int main(int argc, char **argv) {
    int repeats = 3, threads = 1;
    const char *fdir = "/usr/share/datasets/fashion-mnist";
    const char *pima = "examples/data/pima-indians-diabetes.csv";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--repeats") && i + 1 < argc)
            repeats = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--fashion-dir") && i + 1 < argc)
            fdir = argv[++i];
        else if (!strcmp(argv[i], "--pima") && i + 1 < argc)
            pima = argv[++i];
        else {
            fprintf(stderr,
                    "usage: %s [--repeats N] [--threads N] [--fashion-dir DIR] [--pima CSV]\n",
                    argv[0]);
            return 2;
        }
    }
    if (repeats < 1 || repeats > 64) repeats = 3;
    maas_blas_set_threads(threads);
    printf("blas_core %s\nfloat_gemm %s\nthreads %d\n", maas_blas_describe(),
           maas_float_gemm_name(maas_cpu_float_gemm()), threads);
    char err[MAAS_ERRSTR_SIZE], path[512];
    double peak = sgemm_gflops(0, 0, 1024, 1024, 1024, 0.5);

    /* Fashion-MNIST: one epoch at a time, median of `repeats` epochs. */
    maas_idx xi, yi;
    snprintf(path, sizeof(path), "%s/train-images-idx3-ubyte.gz", fdir);
    if (maas_idx_read(path, &xi, err, sizeof(err))) die("fashion images", err);
    snprintf(path, sizeof(path), "%s/train-labels-idx1-ubyte.gz", fdir);
    if (maas_idx_read(path, &yi, err, sizeof(err))) die("fashion labels", err);
    for (size_t i = 0; i < xi.count; i++) xi.data[i] /= 255.0f;
    size_t rows = yi.count;
    maas_rng rng;
    maas_rng_init(&rng, 1);
    maas_model *m = fashion_model(&rng);
    maas_compile c = {.loss = MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, .accuracy = 1};
    maas_optim_defaults(&c.optim, MAAS_OPT_ADAM);
    maas_fit_opts o;
    maas_fit_opts_init(&o);
    o.epochs = repeats;
    o.batch_size = 128;
    o.rng = &rng;
    epoch_timer et = {0};
    o.on_epoch = on_epoch;
    o.ud = &et;
    maas_train_profile prof = {0};
    o.profile = &prof;
    if (maas_fit(m, &c, xi.data, yi.data, rows, &o, NULL, err, sizeof(err))) die("fit", err);
    double ep = median(et.times, et.n);
    printf("fashion_epoch_s %.4f\nfashion_epoch_sps %.0f\n", ep, rows / ep);
    printf("train_insitu_gflops %.2f\ntrain_step_gemm_share %.3f\ntrain_update_share %.3f\n",
           prof.gemm_flops / prof.gemm_s / 1e9, prof.gemm_s / prof.step_s,
           prof.update_s / prof.step_s);

    /* GEMM efficiency of the training step. */
    const int dims[4] = {784, 256, 128, 10};
    double flops_step = 0.0, t_sgemm_alone = 0.0;
    for (int l = 0; l < 3; l++) {
        int in = dims[l], out = dims[l + 1], b = 128;
        double f_fwd = 2.0 * b * in * out;
        /* forward, weight gradient, and (except the first layer) input gradient */
        flops_step += f_fwd * (l == 0 ? 2 : 3);
        t_sgemm_alone += f_fwd / (sgemm_gflops(0, 0, b, out, in, 0.2) * 1e9);
        t_sgemm_alone += f_fwd / (sgemm_gflops(1, 0, in, out, b, 0.2) * 1e9);
        if (l > 0) t_sgemm_alone += f_fwd / (sgemm_gflops(0, 1, b, in, out, 0.2) * 1e9);
    }
    double steps = (double)((rows + 127) / 128);
    double p1 = sgemm_gflops(0, 0, 1024, 1024, 1024, 0.5);
    peak = p1 > peak ? p1 : peak;
    printf("sgemm_train_gflops %.2f\n", flops_step / t_sgemm_alone / 1e9);
    printf("train_gemm_gflops %.2f\n", flops_step * steps / ep / 1e9);

    /* Predict: single-row latency and batch-1024 throughput, float32 then int8. */
    maas_model *q = maas_model_clone(m, err, sizeof(err));
    if (!q || maas_quantize(q, err, sizeof(err))) die("quantize", err);
    maas_model *bq = maas_model_clone(m, err, sizeof(err));
    if (!bq || maas_quantize_bf16(bq, err, sizeof(err))) die("bf16", err);
    printf("bf16_kernel %s\n", maas_bf16_kernel_name());
    for (int pass = 0; pass < 3; pass++) {
        const maas_model *served = pass == 2 ? bq : pass ? q : m;
        const char *sfx = pass == 2 ? "_bf16" : pass ? "_int8" : "";
        maas_infer *inf = maas_infer_new(served, 1024, err, sizeof(err));
        if (!inf) die("infer", err);
        static float out[1024 * 10];
        double lat[64];
        for (int r = 0; r < repeats * 5 && r < 64; r++) {
            int n = 2000;
            double t0 = now();
            for (int i = 0; i < n; i++)
                maas_infer_run(inf, xi.data + (size_t)(i % 1000) * 784, 1, out, err, sizeof(err));
            lat[r] = (now() - t0) / n * 1e6;
        }
        printf("predict1%s_us %.2f\n", sfx, median(lat, repeats * 5 < 64 ? repeats * 5 : 64));
        double tp[64];
        for (int r = 0; r < repeats * 5 && r < 64; r++) {
            int n = 20;
            double t0 = now();
            for (int i = 0; i < n; i++)
                maas_infer_run(inf, xi.data + (size_t)(i % 50) * 1024 * 784, 1024, out, err,
                               sizeof(err));
            tp[r] = 1024.0 * n / (now() - t0);
        }
        printf("predict1024%s_sps %.0f\n", sfx, median(tp, repeats * 5 < 64 ? repeats * 5 : 64));
        maas_infer_free(inf);
    }
    /* The int8 batch's GEMMs alone (what oneDNN takes of it), on the same layers: the rest of
     * the batch is the per-row quantization, the f32 epilogue, the input check, activations. */
    {
        double gemm_us = 0.0;
        for (int i = 0; i < q->n_layers; i++) {
            const maas_qlayer *ql = &q->quant->layers[i];
            if (!ql->wq) continue;
            int ldx = 4 * ql->kg, ldc = 16 * ql->nb;
            uint8_t *xq = calloc((size_t)1024 * ldx + 64, 1);
            int32_t *acc = malloc((size_t)1024 * ldc * sizeof(int32_t) + 64);
            for (size_t k = 0; k < (size_t)1024 * ldx; k++) xq[k] = (uint8_t)(k * 37u);
            maas_qgemm(MAAS_QKERNEL_AUTO, ql, xq, ldx, 1024, acc, ldc); /* warm up */
            double best = 1e9;
            for (int r = 0; r < 15; r++) {
                double t0 = now();
                for (int k = 0; k < 5; k++)
                    maas_qgemm(MAAS_QKERNEL_AUTO, ql, xq, ldx, 1024, acc, ldc);
                double t = (now() - t0) / 5;
                best = t < best ? t : best;
            }
            gemm_us += best * 1e6;
            free(xq);
            free(acc);
        }
        printf("int8_gemms1024_us %.1f\n", gemm_us);
    }
    maas_model_free(q);
    maas_model_free(bq);

    /* The single row's products alone: the project's kernel against OpenBLAS's sgemv. */
    {
        static const int widths[4] = {784, 256, 128, 10};
        float *h[4];
        for (int l = 0; l < 4; l++) h[l] = calloc((size_t)widths[l], sizeof(float));
        const float *w[3];
        for (int l = 0; l < 3; l++) w[l] = m->params + m->layers[l].w_off;
        memcpy(h[0], xi.data, 784 * sizeof(float));
        double own[64], blas[64];
        int runs = repeats * 5 < 64 ? repeats * 5 : 64;
        for (int r = 0; r < runs; r++) {
            for (int pass = 0; pass < 2; pass++) {
                int n = 4000;
                double t0 = now();
                for (int i = 0; i < n; i++)
                    for (int l = 0; l < 3; l++) {
                        if (pass)
                            cblas_sgemv(CblasRowMajor, CblasTrans, widths[l], widths[l + 1], 1.0f,
                                        w[l], widths[l + 1], h[l], 1, 0.0f, h[l + 1], 1);
                        else
                            maas_rowvec(widths[l], widths[l + 1], h[l], w[l], widths[l + 1], 0.0f,
                                        h[l + 1]);
                    }
                (pass ? blas : own)[r] = (now() - t0) / n * 1e6;
            }
        }
        printf("rowvec_fashion_us %.2f\nsgemv_fashion_us %.2f\n", median(own, runs),
               median(blas, runs));
        size_t wbytes = (784 * 256 + 256 * 128 + 128 * 10) * sizeof(float);
        printf("read_weights_gbps %.1f\nread_weights_bf16_gbps %.1f\n", read_gbps(wbytes),
               read_gbps(wbytes / 2));
        for (int l = 0; l < 4; l++) free(h[l]);
    }
    /* Explaining one row (all 10 outputs): gradient x input, and integrated gradients at 64 steps
     */
    {
        static float attr[10 * 784];
        double t[2] = {0, 0};
        for (int method = 0; method < 2; method++) {
            int reps = method ? 2 : 20;
            double best = 1e9;
            for (int r = 0; r < 3; r++) {
                double t0 = now();
                for (int i = 0; i < reps; i++)
                    if (maas_explain(m, (maas_explain_method)method, 64, NULL,
                                     xi.data + (size_t)i * 784, 1, attr, err, sizeof(err)))
                        die("explain", err);
                double v = (now() - t0) / reps * 1e6;
                best = v < best ? v : best;
            }
            t[method] = best;
        }
        printf("explain_gxi_us %.1f\nexplain_ig64_us %.1f\n", t[0], t[1]);
    }
    maas_model_free(m);
    maas_idx_release(&xi);
    maas_idx_release(&yi);

    /* The seed model: 10 epochs on Pima, batch 32, standardized. */
    maas_table t;
    if (maas_csv_read(pima, &t, err, sizeof(err))) die("pima", err);
    float *x, *y;
    if (maas_table_split(&t, t.cols - 1, &x, &y, err, sizeof(err))) die("pima", err);
    double pt[64];
    int pr = repeats * 5 < 64 ? repeats * 5 : 64;
    for (int r = 0; r < pr; r++) {
        maas_rng_init(&rng, (uint64_t)r);
        maas_layer_spec l[] = {maas_dense(10, MAAS_ACT_RELU), maas_dense(1, MAAS_ACT_SIGMOID)};
        maas_model *pm = maas_model_new(8, l, 2, &rng, err, sizeof(err));
        maas_compile pc = {.loss = MAAS_LOSS_BINARY_CROSSENTROPY, .accuracy = 1};
        maas_optim_defaults(&pc.optim, MAAS_OPT_ADAM);
        maas_fit_opts po;
        maas_fit_opts_init(&po);
        po.epochs = 10;
        po.batch_size = 32;
        po.standardize = 1;
        po.rng = &rng;
        double t0 = now();
        if (maas_fit(pm, &pc, x, y, t.rows * 8 / 10, &po, NULL, err, sizeof(err)))
            die("pima fit", err);
        pt[r] = now() - t0;
        maas_model_free(pm);
    }
    printf("pima_10ep_s %.6f\n", median(pt, pr));
    p1 = sgemm_gflops(0, 0, 1024, 1024, 1024, 0.5);
    printf("sgemm_peak_gflops %.2f\n", p1 > peak ? p1 : peak);
    double o1 = onednn_gflops(0.5), o2 = onednn_gflops(0.5);
    printf("onednn_peak_gflops %.2f\n", o1 > o2 ? o1 : o2);
    free(x);
    free(y);
    maas_table_release(&t);
    return 0;
}
