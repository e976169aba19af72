/*
 * Embedding's kernels (maas/embed.h): rows gathered by index, gradients summed per index
 * (a repeated index gets each of its rows' gradients), and bad indices refused by position.
 */
#include "testutil.h"

#include "maas/embed.h"

static void test_gather_and_scatter(void **state) {
    (void)state;
    enum { VOCAB = 7, DIM = 3, N = 6 };
    float *table = maas_test_random_inputs(VOCAB * DIM, 1, -1, 1);
    float *dy = maas_test_random_inputs(N * DIM, 2, -1, 1);
    const float idx[N] = {3, 0, 6, 3, 3, 1};
    float y[N * DIM], dt[VOCAB * DIM];
    char err[MAAS_ERRSTR_SIZE];
    assert_ok(maas_embed_check(idx, N, VOCAB, err, sizeof(err)), err);
    maas_embed_forward(idx, N, table, DIM, y);
    for (int i = 0; i < N; i++)
        assert_memory_equal(y + i * DIM, table + (int)idx[i] * DIM, DIM * sizeof(float));
    maas_embed_backward(idx, N, dy, VOCAB, DIM, dt);
    for (int v = 0; v < VOCAB; v++)
        for (int k = 0; k < DIM; k++) {
            double s = 0;
            for (int i = 0; i < N; i++)
                if ((int)idx[i] == v) s += dy[i * DIM + k];
            /* index 3 sums three rows: float32 rounding of two additions */
            assert_true(fabs(dt[v * DIM + k] - s) <= 4 * 0x1p-24 * (1 + fabs(s)));
        }
    free(table);
    free(dy);
}

static void test_bad_indices(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE];
    const float neg[] = {1, -1}, big[] = {0, 1, 7}, frac[] = {2.5f}, nan[] = {NAN};
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_embed_check(neg, 2, 7, err, sizeof(err)), err);
    assert_mentions(err, "input 1: -1 is not an index in 0..6");
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_embed_check(big, 3, 7, err, sizeof(err)), err);
    assert_mentions(err, "input 2: 7");
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_embed_check(frac, 1, 7, err, sizeof(err)), err);
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_embed_check(nan, 1, 7, err, sizeof(err)), err);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gather_and_scatter),
        cmocka_unit_test(test_bad_indices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
