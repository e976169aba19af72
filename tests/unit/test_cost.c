/*
 * What a job cost (maas/cost.h): operations counted from the shapes (against the parameter
 * count, and written out for the seed model), the cost record's JSON both ways, the energy
 * meter on powercap and /proc/stat files this test writes (package zones only, the counter's
 * wrap, the window, unreadable counters falling back to the model), the thread CPU clock, and
 * the printf-free number formatting the cost record is written with (against printf).
 */
#include "testutil.h"

#include <sys/stat.h>
#include <unistd.h>

#include "maas/clock.h"
#include "maas/cost.h"
#include "maas/explain.h"
#include "maas/strbuf.h"

static maas_model *seed_model(void) {
    maas_layer_spec l[] = {maas_dense(10, MAAS_ACT_RELU), maas_dense(1, MAAS_ACT_SIGMOID)};
    return maas_test_random_model(8, l, 2, 7);
}

/* The seed model, 8 -> 10 -> 1, written out: forward 2 (8*10 + 10*1) = 180 per row; training
 * adds the kernels' gradients (180) and the second layer's input gradient (20). */
static void test_seed_model_counts(void **state) {
    (void)state;
    maas_model *m = seed_model();
    assert_true(maas_flops_forward(m) == 180.0);
    assert_true(maas_flops_train_row(m) == 380.0);
    /* 10 epochs of 614 rows, no validation; with 154 validation rows each epoch */
    assert_true(maas_flops_fit(m, 10, 614, 0) == 10.0 * 614 * 380);
    assert_true(maas_flops_fit(m, 10, 491, 123) == 10.0 * (491 * 380.0 + 123 * 180.0));
    assert_true(maas_flops_fit(m, 0, 614, 0) == 0.0);
    /* explaining: a forward and one backward per output at each point */
    assert_true(maas_explain_flops(m, MAAS_EXPLAIN_GRADIENT_X_INPUT, 0) == 2 * 90.0 * 2);
    assert_true(maas_explain_flops(m, MAAS_EXPLAIN_INTEGRATED_GRADIENTS, 16) == 16 * 2 * 90.0 * 2);
    maas_model_free(m);
}

/* Any stack of Dense (with and without bias) and Dropout layers: the forward count is twice
 * the kernels' weights, which are the parameters less the biases. */
static void test_counts_follow_the_parameters(void **state) {
    (void)state;
    maas_layer_spec l[] = {maas_dense(33, MAAS_ACT_TANH), maas_dropout(0.5f),
                           maas_dense(17, MAAS_ACT_RELU), maas_dense(5, MAAS_ACT_SOFTMAX)};
    l[2].use_bias = 0;
    maas_model *m = maas_test_random_model(21, l, 4, 3);
    double biases = 33 + 5;
    double weights = (double)m->n_params - biases;
    assert_true(weights == 21.0 * 33 + 33.0 * 17 + 17.0 * 5);
    assert_true(maas_flops_forward(m) == 2 * weights);
    /* training: 3x forward for every layer but the first, whose input gradient is not needed */
    assert_true(maas_flops_train_row(m) == 3 * 2 * weights - 2 * 21.0 * 33);
    maas_model_free(m);
}

static void test_json_both_ways(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE], buf[320];
    maas_job_cost c = {.cpu_s = 0.25,
                       .queue_s = 1.5,
                       .compute_s = 0.375,
                       .flops = 123456789012.0,
                       .peak_bytes = 1048576,
                       .energy_j = 1.5,
                       .watts = 6};
    snprintf(c.method, sizeof(c.method), "model");
    int n = maas_job_cost_json(&c, buf, sizeof(buf));
    assert_true(n > 0 && (size_t)n == strlen(buf));
    maas_job_cost back;
    assert_ok(maas_job_cost_parse(buf, (size_t)n, &back, err, sizeof(err)), err);
    assert_true(back.cpu_s == c.cpu_s && back.queue_s == c.queue_s &&
                back.compute_s == c.compute_s && back.flops == c.flops &&
                back.peak_bytes == c.peak_bytes && back.energy_j == c.energy_j &&
                back.watts == c.watts);
    assert_string_equal(back.method, "model");
    /* hostile figures are written as 0; an unknown method as "" */
    maas_job_cost bad = {.cpu_s = NAN, .queue_s = -3, .flops = INFINITY, .energy_j = -0.0};
    snprintf(bad.method, sizeof(bad.method), "x\"y");
    assert_true(maas_job_cost_json(&bad, buf, sizeof(buf)) > 0);
    assert_ok(maas_job_cost_parse(buf, strlen(buf), &back, err, sizeof(err)), err);
    assert_true(back.cpu_s == 0 && back.queue_s == 0 && back.flops == 0 && back.energy_j == 0);
    assert_string_equal(back.method, "");
    /* too small a buffer: -1, never a cut object */
    assert_int_equal(maas_job_cost_json(&c, buf, 40), -1);
    /* not an object: refused; missing members: 0; negative or unknown ones: 0 / ignored */
    assert_err(MAAS_ERR_BAD_FORMAT, maas_job_cost_parse("[1]", 3, &back, err, sizeof(err)), err);
    const char *partial = "{\"cpu_s\": -1, \"flops\": 10, \"energy_method\": \"rapl\", \"x\": 1}";
    assert_ok(maas_job_cost_parse(partial, strlen(partial), &back, err, sizeof(err)), err);
    assert_true(back.cpu_s == 0 && back.flops == 10 && back.compute_s == 0);
    assert_string_equal(back.method, "rapl");
}

static void put(const char *dir, const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void put_stat(const char *path, long long busy_ticks) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    /* user nice system idle iowait irq softirq: busy = user + nice + system + irq + softirq */
    fprintf(f, "cpu  %lld 0 0 5000 7 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 0 0 0\n", busy_ticks);
    fclose(f);
}

static void test_energy_meter(void **state) {
    (void)state;
    char err[MAAS_ERRSTR_SIZE], dir[] = "/tmp/maas-cost-XXXXXX", sub[600], stat[600];
    assert_non_null(mkdtemp(dir));
    const char *zones[] = {"intel-rapl:0", "intel-rapl:0:0", "intel-rapl:1", "other"};
    for (int i = 0; i < 4; i++) {
        snprintf(sub, sizeof(sub), "%s/%s", dir, zones[i]);
        assert_int_equal(mkdir(sub, 0700), 0);
        put(sub, "energy_uj", "1000000\n");
        put(sub, "max_energy_range_uj", "262143328850\n");
    }
    snprintf(stat, sizeof(stat), "%s/stat", dir);
    long hz = sysconf(_SC_CLK_TCK);
    put_stat(stat, 0);

    maas_energy e;
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_energy_init(&e, 0, dir, stat, err, sizeof(err)),
               err);
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_energy_init(&e, NAN, dir, stat, err, sizeof(err)),
               err);
    assert_ok(maas_energy_init(&e, 6, dir, stat, err, sizeof(err)), err);
    assert_int_equal(e.n_zones, 2); /* the packages, not their subzones or other zones */
    maas_job_cost c = {.cpu_s = 0.5};
    maas_energy_charge(&e, &c);
    assert_true(c.energy_j == 3.0 && c.watts == 6.0);
    assert_string_equal(c.method, "model"); /* until the counters measured a window */

    maas_energy_sample(&e, 100.0, 1.0);
    /* 4 busy CPU seconds: package 0 used 30 J, package 1 10 J */
    snprintf(sub, sizeof(sub), "%s/intel-rapl:0", dir);
    put(sub, "energy_uj", "31000000\n");
    snprintf(sub, sizeof(sub), "%s/intel-rapl:1", dir);
    put(sub, "energy_uj", "11000000\n");
    put_stat(stat, 4 * hz);
    maas_energy_sample(&e, 100.5, 1.0); /* inside the window: not yet */
    assert_int_equal(e.rapl, 0);
    maas_energy_sample(&e, 102.0, 1.0);
    assert_int_equal(e.rapl, 1);
    assert_true(fabs(e.watts - 10.0) < 1e-9);
    maas_energy_charge(&e, &c);
    assert_true(fabs(c.energy_j - 5.0) < 1e-9);
    assert_string_equal(c.method, "rapl");

    /* package 0's counter wraps (its range is 262143328850 uJ): near the top first ... */
    snprintf(sub, sizeof(sub), "%s/intel-rapl:0", dir);
    put(sub, "energy_uj", "262143000000\n");
    put_stat(stat, 8 * hz);
    maas_energy_sample(&e, 104.0, 1.0); /* a huge window: over 1000 W, ignored */
    assert_true(fabs(e.watts - 10.0) < 1e-9);
    put(sub, "energy_uj", "1671150\n"); /* ... then past it: 328850 + 1671150 uJ = 2 J */
    put_stat(stat, 9 * hz);             /* one busy second; package 1 unchanged */
    maas_energy_sample(&e, 106.0, 1.0);
    assert_true(fabs(e.watts - 2.0) < 1e-9);

    /* an idle window (no busy time) keeps the last measurement */
    put(sub, "energy_uj", "9671150\n");
    maas_energy_sample(&e, 108.0, 1.0);
    assert_true(fabs(e.watts - 2.0) < 1e-9);

    /* no readable counters: the model alone, sampling changes nothing */
    maas_energy none;
    assert_ok(maas_energy_init(&none, 7.5, "/nonexistent/powercap", stat, err, sizeof(err)), err);
    assert_int_equal(none.n_zones, 0);
    maas_energy_sample(&none, 1.0, 0.0);
    maas_energy_sample(&none, 5.0, 0.0);
    c.cpu_s = 2;
    maas_energy_charge(&none, &c);
    assert_true(c.energy_j == 15.0 && !strcmp(c.method, "model"));

    for (int i = 0; i < 4; i++) {
        snprintf(sub, sizeof(sub), "%s/%s", dir, zones[i]);
        char f[700];
        snprintf(f, sizeof(f), "%s/energy_uj", sub);
        unlink(f);
        snprintf(f, sizeof(f), "%s/max_energy_range_uj", sub);
        unlink(f);
        rmdir(sub);
    }
    unlink(stat);
    rmdir(dir);
}

/* The thread clock moves with this thread's work and never backwards (no speed assumed: the
 * loop runs until the clock moved, with a generous wall deadline). */
static void test_thread_cpu_clock(void **state) {
    (void)state;
    double t0 = maas_thread_cpu_s(), deadline = maas_mono_s() + 60;
    volatile double sink = 0;
    while (maas_thread_cpu_s() - t0 < 0.005 && maas_mono_s() < deadline)
        for (int i = 0; i < 100000; i++) sink += i * 0.5;
    (void)sink;
    double t1 = maas_thread_cpu_s();
    assert_true(t1 - t0 >= 0.005);
    assert_true(maas_thread_cpu_s() >= t1);
}

/* maas_fmt_g against printf's %.*g and maas_fmt_fixed against %.*f: the same text for
 * ordinary figures; over random figures of every magnitude, the same number once parsed, or
 * one unit of the last significant digit away (a tie rounded the other way, or the scaling's
 * own rounding: 10^k and the product are each within half an ulp, far below a unit). */
static void test_number_text(void **state) {
    (void)state;
    char a[MAAS_NUM_MAX], b[64];
    static const double same[] = {0.25,   1.5,   0.375,  6,       3.1e-05, 0.003,
                                  123456, 1e-05, 0.0001, 100000,  1e6,     2.5e-07,
                                  0.1,    99.5,  1234.5, 7.25e12, 0.5,     31.0};
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        for (int sig = 4; sig <= 6; sig++) {
            int n = maas_fmt_g(a, same[i], sig);
            snprintf(b, sizeof(b), "%.*g", sig, same[i]);
            assert_int_equal(n, (int)strlen(a));
            assert_string_equal(a, b);
        }
    }
    static const long long ints[] = {0, 7, -5, 1234567890123LL, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        snprintf(b, sizeof(b), "%lld", ints[i]);
        assert_int_equal(maas_fmt_i64(a, ints[i]), (int)strlen(b));
        assert_string_equal(a, b);
    }
    maas_fmt_fixed(a, 123456789012.0, 0);
    assert_string_equal(a, "123456789012");
    maas_fmt_fixed(a, 1.5, 3);
    assert_string_equal(a, "1.5");
    maas_fmt_fixed(a, 0.0004, 3);
    assert_string_equal(a, "0");
    maas_fmt_fixed(a, -0.0004, 3);
    assert_string_equal(a, "0");
    maas_fmt_fixed(a, 2.0625, 3); /* a tie: either neighbour */
    assert_true(!strcmp(a, "2.062") || !strcmp(a, "2.063"));
    maas_fmt_g(a, NAN, 6);
    assert_string_equal(a, "0");
    maas_fmt_g(a, -INFINITY, 6);
    assert_string_equal(a, "0");
    maas_fmt_g(a, 0.0, 6);
    assert_string_equal(a, "0");
    maas_fmt_g(a, 1e-300, 6); /* far out: printf's own */
    assert_string_equal(a, "1e-300");
    uint64_t x = 88172645463325252ULL;
    int exact = 0, total = 0;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double mant = 1.0 + (double)(x >> 11) / 9007199254740992.0; /* [1, 2) */
        int e10 = (int)(x % 41) - 20, sig = 1 + (int)((x >> 8) % 15);
        double v = mant * pow(10.0, e10) * ((x >> 20) & 1 ? -1 : 1);
        int n = maas_fmt_g(a, v, sig);
        assert_true(n > 0 && n < MAAS_NUM_MAX && n == (int)strlen(a));
        snprintf(b, sizeof(b), "%.*g", sig, v);
        double ours = strtod(a, NULL), ref = strtod(b, NULL);
        double unit = pow(10.0, floor(log10(fabs(ref))) - sig + 1);
        total++;
        if (!strcmp(a, b)) {
            exact++;
            continue;
        }
        if (fabs(ours - ref) > unit * 1.05) /* and the parsing's own half ulps */
            fail_msg("%.17g with %d digits: %s, printf %s", v, sig, a, b);
    }
    /* ties are rare: nearly every one is printf's text exactly */
    assert_true(exact >= total - total / 100);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_model_counts),
        cmocka_unit_test(test_counts_follow_the_parameters),
        cmocka_unit_test(test_json_both_ways),
        cmocka_unit_test(test_energy_meter),
        cmocka_unit_test(test_thread_cpu_clock),
        cmocka_unit_test(test_number_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
