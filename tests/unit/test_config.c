/*
 * The option module (maas/config.h) every program parses its settings with:
 * precedence (default < environment < file < flags, in order), range and
 * type checks with messages naming the option, -X settings, --config files,
 * --check-config for the programs that take it, and secrets masked when the
 * configuration is printed.
 */
#include "testutil.h"

#include <unistd.h>

#include "maas/config.h"
#include "maas/strbuf.h"

static char err[MAAS_ERRSTR_SIZE];

typedef struct prog {
    char brokers[64], redis[128], prefix[16];
    int n;
    long big;
    maas_option opts[5];
    maas_config conf;
} prog;

static void prog_init(prog *p) {
    memset(p, 0, sizeof(*p));
    snprintf(p->brokers, sizeof(p->brokers), "default:1");
    snprintf(p->redis, sizeof(p->redis), "redis://127.0.0.1:1");
    p->n = 7;
    const maas_option o[] = {
        MAAS_OPTION_CLUSTER(p->brokers, p->redis, p->prefix),
        {"n", "MAAS_TEST_N", MAAS_OPTION_INT, &p->n, 0, 1, 100},
        {"big", NULL, MAAS_OPTION_LONG, &p->big, 0, 0, 1L << 40},
    };
    memcpy(p->opts, o, sizeof(o));
}

static void test_precedence(void **state) {
    (void)state;
    prog p;
    prog_init(&p);
    setenv("MAAS_KAFKA_BROKERS", "env:2", 1);
    setenv("MAAS_TEST_N", "9", 1);
    assert_ok(maas_config_init(&p.conf, "prog", p.opts, 5, err, sizeof(err)), err);
    assert_string_equal(p.brokers, "env:2");
    assert_int_equal(p.n, 9);
    assert_string_equal(p.redis, "redis://127.0.0.1:1"); /* the default stands */
    char path[] = "/tmp/maas-test-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char text[] = "# a comment\n\n  n = 11\nbig=1099511627776\nredis.password = s3cret\n";
    assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
    close(fd);
    char *argv[] = {"prog",      "--n",    "12", "--config",      path,
                    "--brokers", "flag:3", "-X", "kafka.acks=all"};
    int help = 0;
    assert_ok(maas_config_parse_args(&p.conf, 9, argv, &help, err, sizeof(err)), err);
    assert_int_equal(help, 0);
    assert_int_equal(p.n, 11); /* the file came after --n 12 */
    assert_int_equal(p.big, 1L << 40);
    assert_string_equal(p.brokers, "flag:3");
    assert_int_equal(p.conf.n_settings, 2);
    assert_string_equal(p.conf.settings[0].key, "redis.password");
    assert_string_equal(p.conf.settings[0].value, "s3cret");
    assert_string_equal(p.conf.settings[1].key, "kafka.acks");
    assert_string_equal(p.conf.settings[1].value, "all");
    unlink(path);
    char *help_argv[] = {"prog", "--n", "5", "--help", "--bogus"};
    assert_ok(maas_config_parse_args(&p.conf, 5, help_argv, &help, err, sizeof(err)), err);
    assert_int_equal(help, 1);
    maas_config_release(&p.conf);
    unsetenv("MAAS_KAFKA_BROKERS");
    unsetenv("MAAS_TEST_N");
}

/* --check-config only for programs that take it (checkable), and the rest still parsed. */
static void test_check_config(void **state) {
    (void)state;
    prog p;
    prog_init(&p);
    int help = 0;
    char *argv[] = {"prog", "--check-config", "--n", "13"};
    assert_ok(maas_config_init(&p.conf, "prog", p.opts, 5, err, sizeof(err)), err);
    assert_err(MAAS_ERR_INVALID_ARGUMENT,
               maas_config_parse_args(&p.conf, 4, argv, &help, err, sizeof(err)), err);
    assert_false(p.conf.check);
    assert_ok(maas_config_init(&p.conf, "prog", p.opts, 5, err, sizeof(err)), err);
    p.conf.checkable = 1;
    assert_ok(maas_config_parse_args(&p.conf, 4, argv, &help, err, sizeof(err)), err);
    assert_true(p.conf.check);
    assert_int_equal(help, 0);
    assert_int_equal(p.n, 13);
    maas_config_release(&p.conf);
}

static void test_bad_values(void **state) {
    (void)state;
    prog p;
    prog_init(&p);
    setenv("MAAS_TEST_N", "x", 1);
    assert_err(MAAS_ERR_INVALID_ARGUMENT,
               maas_config_init(&p.conf, "prog", p.opts, 5, err, sizeof(err)), err);
    assert_mentions(err, "MAAS_TEST_N");
    unsetenv("MAAS_TEST_N");
    assert_ok(maas_config_init(&p.conf, "prog", p.opts, 5, err, sizeof(err)), err);
    static const struct {
        const char *name, *value, *mention;
    } bad[] = {
        {"n", "0", "1..100"},       {"n", "101", "1..100"},     {"n", "5x", "'5x'"},
        {"n", "", "--n"},           {"big", "-1", "--big"},     {"nope", "1", "unknown setting"},
        {"kafka.", "1", "unknown"}, {"prefix", "x", "unknown"},
    };
    for (size_t i = 0; i < MAAS_ARRAY_LEN(bad); i++) {
        assert_err(MAAS_ERR_INVALID_ARGUMENT,
                   maas_config_set(&p.conf, bad[i].name, bad[i].value, err, sizeof(err)), err);
        assert_mentions(err, bad[i].mention);
    }
    assert_int_equal(p.n, 7); /* nothing bad was stored */
    char long_value[200];
    memset(long_value, 'a', sizeof(long_value) - 1);
    long_value[sizeof(long_value) - 1] = '\0';
    assert_err(MAAS_ERR_INVALID_ARGUMENT,
               maas_config_set(&p.conf, "topic-prefix", long_value, err, sizeof(err)), err);
    assert_mentions(err, "longer than 15");
    assert_err(MAAS_ERR_INVALID_ARGUMENT,
               maas_config_setting(&p.conf, "acks=all", err, sizeof(err)), err);
    assert_mentions(err, "kafka.KEY=VALUE");
    assert_err(MAAS_ERR_INVALID_ARGUMENT,
               maas_config_setting(&p.conf, "kafka.acks", err, sizeof(err)), err);
    char *argv[] = {"prog", "--n"};
    int help;
    assert_err(MAAS_ERR_INVALID_ARGUMENT,
               maas_config_parse_args(&p.conf, 2, argv, &help, err, sizeof(err)), err);
    assert_mentions(err, "takes a value");
    char *argv2[] = {"prog", "--config", "/nonexistent/maas.conf"};
    assert_err(MAAS_ERR_IO, maas_config_parse_args(&p.conf, 3, argv2, &help, err, sizeof(err)),
               err);
    assert_mentions(err, "/nonexistent/maas.conf");
    maas_config_release(&p.conf);
}

static void test_masking(void **state) {
    (void)state;
    char out[256];
    maas_config_mask_url("redis://user:pw@host:6379/0", out, sizeof(out));
    assert_string_equal(out, "redis://user:***@host:6379/0");
    maas_config_mask_url("redis://:pw@host", out, sizeof(out));
    assert_string_equal(out, "redis://:***@host");
    maas_config_mask_url("redis://pw@host", out, sizeof(out));
    assert_string_equal(out, "redis://***@host");
    maas_config_mask_url("redis://host:6379", out, sizeof(out));
    assert_string_equal(out, "redis://host:6379");
    assert_true(maas_config_secret("kafka.sasl.password"));
    assert_true(maas_config_secret("redis.password"));
    assert_true(maas_config_secret("kafka.ssl.key.pem"));
    assert_true(maas_config_secret("kafka.ssl.key.password"));
    assert_false(maas_config_secret("kafka.acks"));

    prog p;
    prog_init(&p);
    snprintf(p.redis, sizeof(p.redis), "redis://u:hunter2@h:1");
    assert_ok(maas_config_init(&p.conf, "prog", p.opts, 5, err, sizeof(err)), err);
    assert_ok(maas_config_setting(&p.conf, "kafka.sasl.password=hunter2", err, sizeof(err)), err);
    assert_ok(maas_config_setting(&p.conf, "kafka.acks=all", err, sizeof(err)), err);
    maas_strbuf t = {0};
    maas_config_describe(&p.conf, &t);
    assert_non_null(t.p);
    assert_null(strstr(t.p, "hunter2"));
    assert_non_null(strstr(t.p, "redis=redis://u:***@h:1"));
    assert_non_null(strstr(t.p, "kafka.sasl.password=***"));
    assert_non_null(strstr(t.p, "kafka.acks=all"));
    assert_non_null(strstr(t.p, "n=7"));
    free(t.p);
    maas_config_release(&p.conf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_check_config),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_masking),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
