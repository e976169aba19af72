/*
 * The Redis adapter's pure parts, without a server (common/src/kv/internal.h): a key's Redis
 * Cluster slot — the cluster specification's examples and the bitwise CRC16 definition over
 * random keys with random braces (test_redis_it@cluster checks it against CLUSTER KEYSLOT on
 * a real cluster) — and a job's record key made without printf, against KEY's snprintf.
 */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "kv/internal.h"

/* CRC-16/XMODEM as the Redis Cluster specification defines it: bit by bit. */
static unsigned crc16_bits(const char *b, size_t n) {
    unsigned crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (unsigned)(unsigned char)b[i] << 8;
        for (int k = 0; k < 8; k++) crc = (crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1) & 0xffff;
    }
    return crc;
}

/* The specification's rule: the hash tag (between the first '{' and the next '}') when not
 * empty, else the whole key. */
static unsigned slot_ref(const char *k, size_t n) {
    const char *open = memchr(k, '{', n);
    if (open) {
        const char *close = memchr(open + 1, '}', n - (size_t)(open + 1 - k));
        if (close && close > open + 1)
            return crc16_bits(open + 1, (size_t)(close - open - 1)) & 16383;
    }
    return crc16_bits(k, n) & 16383;
}

static unsigned slot_of(const char *k) {
    return kv_keyslot(k, strlen(k));
}

static void test_keyslot(void **state) {
    (void)state;
    /* the specification's check value and examples; redis-cli CLUSTER KEYSLOT's answers */
    assert_int_equal(crc16_bits("123456789", 9), 0x31c3);
    assert_int_equal(slot_of("123456789"), 0x31c3);
    assert_int_equal(slot_of("foo"), 12182);
    assert_int_equal(slot_of("somekey"), 11058);
    assert_int_equal(slot_of("{user1000}.following"), slot_of("{user1000}.followers"));
    assert_int_equal(slot_of("{user1000}.following"), slot_of("user1000"));
    assert_int_equal(slot_of("foo{}{bar}"), crc16_bits("foo{}{bar}", 10) & 16383);
    assert_int_equal(slot_of("foo{{bar}}zap"), slot_of("{bar"));
    assert_int_equal(slot_of("foo{bar}{zap}"), slot_of("bar"));
    assert_int_equal(slot_of("maas:job:{j-1}"), slot_of("maas:t:acme:job:{j-1}:done"));
    assert_int_equal(kv_keyslot("", 0), 0);
    /* random keys of random bytes, braces frequent, embedded NULs included (len is given) */
    srand(7);
    for (int i = 0; i < 200000; i++) {
        char k[48];
        size_t n = (size_t)(rand() % (int)sizeof(k));
        for (size_t j = 0; j < n; j++) {
            int r = rand() % 8;
            k[j] = r == 0 ? '{' : r == 1 ? '}' : (char)(rand() % 256);
        }
        unsigned want = slot_ref(k, n), got = kv_keyslot(k, n);
        if (got != want) fail_msg("key %d (%zu bytes): slot %u, expected %u", i, n, got, want);
    }
}

static void test_job_key(void **state) {
    (void)state;
    maas_kv *kv = calloc(1, sizeof(*kv));
    assert_non_null(kv);
    const char *prefixes[] = {"maas:", "maas:t:acme:", ""};
    const char *ids[] = {"j-1", "", "a-much-longer-job-id-0123456789abcdef"};
    for (size_t p = 0; p < 3; p++)
        for (size_t i = 0; i < 3; i++) {
            snprintf(kv->prefix, sizeof(kv->prefix), "%s", prefixes[p]);
            char want[256], got[256];
            KEY(want, kv, "job:{%s}", ids[i]);
            assert_int_equal(kv_job_key(got, sizeof(got), kv, ids[i]), strlen(want));
            assert_string_equal(got, want);
            /* too small a buffer: truncated as snprintf truncates */
            char small[12];
            snprintf(want, sizeof(small), "%sjob:{%s}", prefixes[p], ids[i]);
            assert_int_equal(kv_job_key(small, sizeof(small), kv, ids[i]), strlen(want));
            assert_string_equal(small, want);
        }
    free(kv);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keyslot),
        cmocka_unit_test(test_job_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
