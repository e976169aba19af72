/* CSV and IDX readers: good files parse; malformed ones fail with a message naming the spot. */
#include "testutil.h"

#include "maas/dataset.h"

static char err[MAAS_ERRSTR_SIZE];

static maas_err parse(const char *text, maas_table *t) {
    return maas_csv_parse(text, strlen(text), t, err, sizeof(err));
}

static void test_csv_good(void **state) {
    (void)state;
    maas_table t;
    assert_ok(parse("a,\"b c\",label\r\n1,2.5,0\n-3e2, 4 ,1\n", &t), err);
    assert_int_equal(t.rows, 2);
    assert_int_equal(t.cols, 3);
    assert_string_equal(t.names[1], "b c");
    assert_float_equal(t.data[1], 2.5, 0);
    assert_float_equal(t.data[3], -300, 0);
    assert_float_equal(t.data[4], 4, 0);
    assert_int_equal(maas_table_col(&t, "label"), 2);
    assert_int_equal(maas_table_col(&t, "0"), 0);
    assert_int_equal(maas_table_col(&t, "-1"), 2);
    assert_int_equal(maas_table_col(&t, "nope"), -1);
    float *x, *y;
    assert_ok(maas_table_split(&t, 1, &x, &y, err, sizeof(err)), err);
    assert_float_equal(y[0], 2.5, 0);
    assert_float_equal(x[2], -300, 0);
    assert_float_equal(x[3], 1, 0);
    free(x);
    free(y);
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_table_split(&t, 5, &x, &y, err, sizeof(err)), err);
    maas_table_release(&t);
}

static void test_csv_bad(void **state) {
    (void)state;
    maas_table t;
    assert_err(MAAS_ERR_BAD_FORMAT, parse("a,b\n1,2\n3\n", &t), err);
    assert_mentions(err, "row 2 has 1 columns");
    assert_err(MAAS_ERR_BAD_FORMAT, parse("a,b\n1,2,3\n", &t), err);
    assert_mentions(err, "more than");
    assert_err(MAAS_ERR_BAD_FORMAT, parse("a,b\n1,x\n", &t), err);
    assert_mentions(err, "column 'b'");
    assert_err(MAAS_ERR_BAD_FORMAT, parse("a,b\n1,\n", &t), err);
    assert_mentions(err, "empty");
    assert_err(MAAS_ERR_BAD_FORMAT, parse("a,b\n1,nan\n", &t), err);
    assert_err(MAAS_ERR_BAD_FORMAT, parse("a,b\n1,1e999\n", &t), err);
    assert_err(MAAS_ERR_BAD_FORMAT, parse("a,,b\n1,2,3\n", &t), err); /* was read, UB */
    assert_mentions(err, "column 2: empty name");
    assert_err(MAAS_ERR_EMPTY, parse("a,b\n", &t), err);
    assert_err(MAAS_ERR_EMPTY, parse("", &t), err);
    assert_err(MAAS_ERR_IO, maas_csv_read("/nonexistent/x.csv", &t, err, sizeof(err)), err);
    assert_mentions(err, "/nonexistent/x.csv");
}

static void write_file(const char *path, const unsigned char *b, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

static void test_idx(void **state) {
    (void)state;
    char path[256];
    snprintf(path, sizeof(path), "%s/test_dataset.idx", MAAS_BINARY_DIR);
    const unsigned char good[] = {0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 255};
    write_file(path, good, sizeof(good));
    maas_idx t;
    assert_ok(maas_idx_read(path, &t, err, sizeof(err)), err);
    assert_int_equal(t.ndim, 2);
    assert_int_equal(t.dims[0], 2);
    assert_int_equal(t.dims[1], 3);
    assert_int_equal(t.count, 6);
    assert_float_equal(t.data[5], 255, 0);
    maas_idx_release(&t);
    write_file(path, good, sizeof(good) - 1);
    assert_err(MAAS_ERR_BAD_FORMAT, maas_idx_read(path, &t, err, sizeof(err)), err);
    assert_mentions(err, "truncated");
    const unsigned char huge[] = {0, 0, 8, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    write_file(path, huge, sizeof(huge));
    assert_err(MAAS_ERR_LIMIT_EXCEEDED, maas_idx_read(path, &t, err, sizeof(err)), err);
    const unsigned char wrong[] = {0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0};
    write_file(path, wrong, sizeof(wrong));
    assert_err(MAAS_ERR_BAD_FORMAT, maas_idx_read(path, &t, err, sizeof(err)), err);
    remove(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_good),
        cmocka_unit_test(test_csv_bad),
        cmocka_unit_test(test_idx),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
