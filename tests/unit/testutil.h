/* Shared helpers for the cmocka unit tests. */
#ifndef MAAS_TESTUTIL_H
#define MAAS_TESTUTIL_H

#include "maas/base.h"

#include <setjmp.h>
#include <cmocka.h>

#include "maas/cpu.h"
#include "maas/gemm.h"
#include "maas/model.h"
#include "maas/train.h"

/* Asserts a call returned `code`, printing errstr when it did not. */
#define assert_err(code, call, errbuf)                                                             \
    do {                                                                                           \
        (errbuf)[0] = '\0';                                                                        \
        maas_err _e = (call);                                                                      \
        if (_e != (code))                                                                          \
            fail_msg("%s returned %s, expected %s (%s)", #call, maas_err_code(_e),                 \
                     maas_err_code(code), (errbuf));                                               \
    } while (0)

#define assert_ok(call, errbuf) assert_err(MAAS_OK, call, errbuf)

/* Asserts errbuf mentions `needle` (error messages must name the problem). */
#define assert_mentions(errbuf, needle)                                                            \
    do {                                                                                           \
        if (!strstr((errbuf), (needle)))                                                           \
            fail_msg("message '%s' does not mention '%s'", (errbuf), (needle));                    \
    } while (0)

/* A model of random weights (seeded) with small non-zero biases, so the bias path is exercised.
 * Fails the test when it cannot be made. */
static inline maas_model *maas_test_random_model(int n_in, const maas_layer_spec *l, int n,
                                                 uint64_t seed) {
    char err[MAAS_ERRSTR_SIZE];
    maas_rng rng;
    maas_rng_init(&rng, seed);
    maas_model *m = maas_model_new(n_in, l, n, &rng, err, sizeof(err));
    if (!m) fail_msg("%s", err);
    for (int i = 0; i < m->n_layers; i++) {
        float *b = maas_model_bias(m, i);
        for (int j = 0; b && j < m->layers[i].n_out; j++)
            b[j] = (float)(maas_rng_uniform(&rng) - 0.5) * 0.2f;
    }
    return m;
}

/* A model from the --layers grammar over n_in features with seeded weights, every parameter
 * moved off its initial value (biases, gamma and beta included; moving variances positive).
 * Fails the test when it cannot be made. */
static inline maas_model *maas_test_layers_model(const char *layers, int n_in, uint64_t seed) {
    char err[MAAS_ERRSTR_SIZE];
    maas_layer_spec specs[MAAS_MAX_LAYERS];
    int n;
    if (maas_layers_parse(layers, specs, MAAS_MAX_LAYERS, &n, err, sizeof(err)))
        fail_msg("%s: %s", layers, err);
    maas_rng rng;
    maas_rng_init(&rng, seed);
    maas_model *m = maas_model_new(n_in, specs, n, &rng, err, sizeof(err));
    if (!m) fail_msg("%s: %s", layers, err);
    for (size_t i = 0; i < m->n_params; i++)
        m->params[i] += (float)(0.3 * maas_rng_uniform(&rng) - 0.15);
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        for (int k = 0; k < l->n_weights; k++)
            if (!strcmp(l->weights[k].name, "moving_variance"))
                for (size_t j = 0; j < l->weights[k].n; j++)
                    m->params[l->weights[k].off + j] = 0.5f + (float)j * 0.25f;
    }
    return m;
}

/* n uniform floats in [lo, hi) from seed; the caller frees them. */
static inline float *maas_test_random_inputs(size_t n, uint64_t seed, float lo, float hi) {
    maas_rng rng;
    maas_rng_init(&rng, seed);
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)maas_rng_uniform(&rng);
    return x;
}

/*
 * The ISA matrix (tests/CMakeLists.txt) runs each compute test again with
 * MAAS_CPU_LEVEL capped at every lower level (maas/cpu.h). A level this CPU
 * does not have is skipped (exit 77, ctest's SKIP_RETURN_CODE) rather than
 * silently run at a lower one; a bad value fails.
 */
__attribute__((constructor)) static void maas_test_cpu_gate(void) {
    char e[MAAS_ERRSTR_SIZE];
    const char *want = getenv("MAAS_CPU_LEVEL");
    maas_cpu_level cap;
    if (!want || !*want) return;
    if (maas_cpu_level_parse(want, &cap, e, sizeof(e)) != MAAS_OK) {
        fprintf(stderr, "%s\n", e);
        exit(2);
    }
    if (cap != MAAS_CPU_NATIVE && cap > maas_cpu_detected()) {
        printf("skipped: this CPU has no %s (it has %s)\n", want,
               maas_cpu_level_name(maas_cpu_detected()));
        exit(77);
    }
    printf("kernels at level %s\n", maas_cpu_level_name(maas_cpu_current()));
}

/* Source directory, passed by CMake, for data files. */
#ifndef MAAS_SOURCE_DIR
#define MAAS_SOURCE_DIR "."
#endif

/* The loss of a trainer's model at its current weights (a test's choice of pass). */
typedef double (*maas_test_loss_fn)(maas_trainer *tr, const float *x, const float *y);

/* Central difference of loss with respect to parameter i, step h; the weight is restored. */
static inline double maas_test_central(maas_test_loss_fn loss, maas_trainer *tr, maas_model *m,
                                       size_t i, float h, const float *x, const float *y) {
    float w = m->params[i];
    m->params[i] = w + h;
    double lp = loss(tr, x, y);
    m->params[i] = w - h;
    double lm = loss(tr, x, y);
    m->params[i] = w;
    return (lp - lm) / (2.0 * (double)h);
}

#endif
