/*
 * Tenants and API keys without a server (maas/auth.h, maas/names.h, maas/protocol.h):
 * tenant names that cannot be each other's prefix; the tenant of a topic, from the broker's
 * topic name only; the workers' subscription pattern (matched here with POSIX regex, as
 * librdkafka does); keys made from the kernel's randomness, stored as a hash, checked in
 * constant time, and malformed tokens refused before any lookup.
 */
#include "testutil.h"

#include <regex.h>

#include "maas/auth.h"
#include "maas/digest.h"
#include "maas/names.h"
#include "maas/protocol.h"

static char err[MAAS_ERRSTR_SIZE];

static void test_tenant_names(void **state) {
    (void)state;
    const char *good[] = {"acme", "a", "team-7", "x_y", "0abc", "abcdefghijklmnopqrstuvwxyz012345"};
    const char *bad[] = {"",
                         "Acme",
                         "a.b",
                         "a:b",
                         "a{b}",
                         "-a",
                         "_a",
                         "a b",
                         "a*",
                         "é",
                         "abcdefghijklmnopqrstuvwxyz0123456"};
    for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
        assert_ok(maas_tenant_check(good[i], err, sizeof(err)), err);
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        assert_int_equal(maas_tenant_check(bad[i], err, sizeof(err)), MAAS_ERR_INVALID_ARGUMENT);
    assert_int_equal(maas_tenant_check(NULL, err, sizeof(err)), MAAS_ERR_INVALID_ARGUMENT);
}

static void test_topics(void **state) {
    (void)state;
    char p[128], t[256], tenant[MAAS_TENANT_MAX + 1];
    assert_ok(maas_tenant_topic_prefix("maas.", "acme", p, sizeof(p), err, sizeof(err)), err);
    assert_string_equal(p, "maas.t.acme.");
    assert_ok(maas_tenant_topic_prefix("maas.", "", p, sizeof(p), err, sizeof(err)), err);
    assert_string_equal(p, "maas.");
    assert_int_equal(maas_tenant_topic_prefix("maas.", "a.b", p, sizeof(p), err, sizeof(err)),
                     MAAS_ERR_INVALID_ARGUMENT);
    assert_ok(maas_topic_tenant("maas.", "maas.t.acme.jobs.infer", tenant, err, sizeof(err)), err);
    assert_string_equal(tenant, "acme");
    assert_ok(maas_topic_tenant("maas.", "maas.jobs.work", tenant, err, sizeof(err)), err);
    assert_string_equal(tenant, "");
    const char *bad[] = {"other.jobs.infer",
                         "maas.t.",
                         "maas.t.acme",
                         "maas.t..jobs.infer",
                         "maas.t.Acme.jobs.infer",
                         "maas.t.abcdefghijklmnopqrstuvwxyz0123456.jobs.infer"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        assert_int_equal(maas_topic_tenant("maas.", bad[i], tenant, err, sizeof(err)),
                         MAAS_ERR_INVALID_ARGUMENT);
        assert_string_equal(tenant, "");
    }
    /* the subscription pattern: every tenant's inference topic, nothing else */
    assert_ok(maas_tenant_topic_pattern("maas.", MAAS_TOPIC_INFER, t, sizeof(t), err, sizeof(err)),
              err);
    assert_string_equal(t, "^maas\\.t\\.[a-z0-9][a-z0-9_-]*\\.jobs\\.infer$");
    regex_t re;
    assert_int_equal(regcomp(&re, t + 0, REG_EXTENDED | REG_NOSUB), 0);
    assert_int_equal(regexec(&re, "maas.t.acme.jobs.infer", 0, NULL, 0), 0);
    assert_int_equal(regexec(&re, "maas.t.a-1_b.jobs.infer", 0, NULL, 0), 0);
    const char *no[] = {"maas.jobs.infer",         "maas.t.acme.jobs.work",
                        "maas.t.acme.jobs.inferx", "maasxt.acme.jobs.infer",
                        "maas.t.a.b.jobs.infer",   "maas.t.Acme.jobs.infer",
                        "x.maas.t.acme.jobs.infer"};
    for (size_t i = 0; i < sizeof(no) / sizeof(*no); i++)
        assert_int_not_equal(regexec(&re, no[i], 0, NULL, 0), 0);
    regfree(&re);
}

static void test_keys(void **state) {
    (void)state;
    maas_api_key k, k2;
    char token[MAAS_API_TOKEN_MAX], token2[MAAS_API_TOKEN_MAX], id[MAAS_API_KEY_ID_LEN + 1],
        secret[65];
    assert_ok(
        maas_api_key_new("acme", MAAS_SCOPE_READ | MAAS_SCOPE_SUBMIT, &k, token, err, sizeof(err)),
        err);
    assert_ok(maas_api_key_new("acme", MAAS_SCOPE_READ, &k2, token2, err, sizeof(err)), err);
    assert_int_equal(strlen(token), 5 + 16 + 1 + 64);
    assert_string_not_equal(token, token2); /* fresh randomness each time */
    assert_string_not_equal(k.id, k2.id);
    assert_ok(maas_api_token_split(token, id, secret, err, sizeof(err)), err);
    assert_string_equal(id, k.id);
    assert_null(strstr(k.hash, secret)); /* only the hash is kept */
    char h[65];
    maas_sha256_hex(secret, 64, h);
    assert_string_equal(h, k.hash);
    assert_true(maas_api_key_matches(&k, secret));
    secret[63] = secret[63] == '0' ? '1' : '0';
    assert_false(maas_api_key_matches(&k, secret));
    assert_false(maas_api_key_matches(&k, ""));
    const char *malformed[] = {"", "maas_", "maas_123_456", "Bearer x", "MAAS_" /* case */};
    for (size_t i = 0; i < sizeof(malformed) / sizeof(*malformed); i++)
        assert_int_equal(maas_api_token_split(malformed[i], id, secret, err, sizeof(err)),
                         MAAS_ERR_UNAUTHENTICATED);
    char upper[MAAS_API_TOKEN_MAX];
    snprintf(upper, sizeof(upper), "%s", token);
    upper[30] = 'G'; /* not hex */
    assert_int_equal(maas_api_token_split(upper, id, secret, err, sizeof(err)),
                     MAAS_ERR_UNAUTHENTICATED);
    assert_int_equal(maas_api_key_new("Bad", MAAS_SCOPE_READ, &k, token, err, sizeof(err)),
                     MAAS_ERR_INVALID_ARGUMENT);
    assert_int_equal(maas_api_key_new("acme", 0, &k, token, err, sizeof(err)),
                     MAAS_ERR_INVALID_ARGUMENT);
    assert_int_equal(maas_api_key_new("acme", 8, &k, token, err, sizeof(err)),
                     MAAS_ERR_INVALID_ARGUMENT);
}

static void test_scopes(void **state) {
    (void)state;
    unsigned s;
    char out[32];
    assert_ok(maas_scopes_parse("read,submit", &s, err, sizeof(err)), err);
    assert_int_equal(s, MAAS_SCOPE_READ | MAAS_SCOPE_SUBMIT);
    maas_scopes_format(MAAS_SCOPE_ADMIN | MAAS_SCOPE_READ, out, sizeof(out));
    assert_string_equal(out, "read,admin");
    const char *bad[] = {"", "write", "read,", ",read", "read,,submit", "READ"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        assert_int_equal(maas_scopes_parse(bad[i], &s, err, sizeof(err)),
                         MAAS_ERR_INVALID_ARGUMENT);
    assert_true(maas_digest_equal("abc", "abc", 3));
    assert_false(maas_digest_equal("abc", "abd", 3));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tenant_names),
        cmocka_unit_test(test_topics),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_scopes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
