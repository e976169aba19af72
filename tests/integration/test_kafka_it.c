/*
 * The Kafka adapter against a real broker (started by the services fixture):
 * idempotent producer delivery reports, a consumer group of two members
 * sharing partitions, offsets stored only when told, and a store for a
 * partition this member no longer owns refused.
 */
#include "../unit/testutil.h"

#include <time.h>
#include <unistd.h>

#include "maas/broker.h"

#define N_MSG 60
#define N_PART 4

static char err[MAAS_ERRSTR_SIZE];
static const char *brokers;
static char topic[128];
/* The fixture's login (MAAS_CONFIG: SASL settings when the broker runs with them), and the
 * consumers' settings: quick failover, then the login. */
static maas_config login;
static maas_setting fast[3 + MAAS_CONFIG_MAX_SETTINGS] = {
    {"kafka.session.timeout.ms", "6000"},
    {"kafka.heartbeat.interval.ms", "500"},
    {"kafka.topic.metadata.refresh.interval.ms", "1000"},
};
static int n_fast = 3;
#define LOGIN login.settings, login.n_settings

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    int delivered, failed;
    int64_t offsets[N_MSG];
    int32_t partitions[N_MSG];
} reports;

static void on_delivery(void *ud, void *msg_opaque, maas_err e, const char *es, int32_t partition,
                        int64_t offset) {
    reports *r = ud;
    int i = (int)(intptr_t)msg_opaque;
    if (e) {
        r->failed++;
        fprintf(stderr, "delivery %d: %s\n", i, es);
        return;
    }
    r->delivered++;
    r->offsets[i] = offset;
    r->partitions[i] = partition;
}

static int setup(void **state) {
    (void)state;
    brokers = getenv("MAAS_KAFKA_BROKERS");
    if (!brokers) brokers = "127.0.0.1:29092";
    if (maas_config_init(&login, "test_kafka_it", NULL, 0, err, sizeof(err))) {
        fprintf(stderr, "MAAS_CONFIG: %s\n", err);
        return -1;
    }
    for (int i = 0; i < login.n_settings; i++) fast[n_fast++] = login.settings[i];
    snprintf(topic, sizeof(topic), "it.%ld.%ld", (long)getpid(), (long)time(NULL));
    maas_topic_spec t = {topic, N_PART};
    if (maas_kafka_create_topics(brokers, LOGIN, &t, 1, 1, 30000, err, sizeof(err))) {
        fprintf(stderr, "create topic: %s\n", err);
        return -1;
    }
    /* creating it again is fine */
    return maas_kafka_create_topics(brokers, LOGIN, &t, 1, 1, 30000, err, sizeof(err)) ? -1 : 0;
}

static void test_idempotent_produce(void **state) {
    (void)state;
    int parts = 0;
    assert_ok(maas_kafka_topic_partitions(brokers, LOGIN, topic, &parts, 10000, err, sizeof(err)),
              err);
    assert_int_equal(parts, N_PART);
    reports r = {0};
    maas_producer *p = maas_producer_new(brokers, LOGIN, on_delivery, &r, err, sizeof(err));
    assert_non_null(p);
    for (int i = 0; i < N_MSG; i++) {
        char key[32], val[64];
        snprintf(key, sizeof(key), "job-%d", i);
        snprintf(val, sizeof(val), "payload %d", i);
        assert_ok(maas_producer_send(p, topic, key, strlen(key), val, strlen(val),
                                     (void *)(intptr_t)i, err, sizeof(err)),
                  err);
    }
    assert_ok(maas_producer_flush(p, 30000, err, sizeof(err)), err);
    assert_int_equal(r.delivered, N_MSG);
    assert_int_equal(r.failed, 0);
    for (int i = 0; i < N_MSG; i++) {
        assert_true(r.offsets[i] >= 0);
        assert_true(r.partitions[i] >= 0 && r.partitions[i] < N_PART);
    }
    /* the same key always lands on the same partition */
    reports r2 = {0};
    maas_producer *p2 = maas_producer_new(brokers, LOGIN, on_delivery, &r2, err, sizeof(err));
    assert_ok(maas_producer_send(p2, topic, "job-0", 5, "again", 5, (void *)(intptr_t)0, err,
                                 sizeof(err)),
              err);
    assert_ok(maas_producer_flush(p2, 30000, err, sizeof(err)), err);
    assert_int_equal(r2.partitions[0], r.partitions[0]);
    maas_producer_free(p2);
    /* an unknown setting is refused up front */
    maas_setting bad = {"kafka.no.such.setting", "1"};
    assert_null(maas_producer_new(brokers, &bad, 1, NULL, NULL, err, sizeof(err)));
    assert_mentions(err, "no.such.setting");
    maas_producer_free(p);
}

static void test_group_shares_partitions(void **state) {
    (void)state;
    const char *topics[] = {topic};
    maas_consumer *c[2];
    c[0] = maas_consumer_new(brokers, "it-share", topics, 1, fast, n_fast, err, sizeof(err));
    assert_non_null(c[0]);
    /* wait until the first member holds every partition, then add the second */
    double end = now_s() + 30;
    while (maas_consumer_assigned(c[0]) < N_PART && now_s() < end) {
        maas_message m;
        maas_consumer_poll(c[0], 100, &m, err, sizeof(err));
        maas_message_release(&m); /* nothing is stored: these come again below */
    }
    assert_int_equal(maas_consumer_assigned(c[0]), N_PART);
    c[1] = maas_consumer_new(brokers, "it-share", topics, 1, fast, n_fast, err, sizeof(err));
    assert_non_null(c[1]);
    end = now_s() + 30;
    while ((maas_consumer_assigned(c[0]) + maas_consumer_assigned(c[1]) != N_PART ||
            maas_consumer_assigned(c[1]) == 0) &&
           now_s() < end) {
        for (int k = 0; k < 2; k++) {
            maas_message m;
            maas_consumer_poll(c[k], 100, &m, err, sizeof(err));
            maas_message_release(&m);
        }
    }
    int a0 = maas_consumer_assigned(c[0]), a1 = maas_consumer_assigned(c[1]);
    print_message("group of two: %d + %d partitions\n", a0, a1);
    assert_int_equal(a0 + a1, N_PART);
    assert_true(a0 > 0 && a1 > 0);
    maas_consumer_free(c[0]);
    maas_consumer_free(c[1]);
}

static void test_offsets_stored_only_when_told(void **state) {
    (void)state;
    const char *topics[] = {topic};
    /* member A reads everything but stores offsets only for partition 0 */
    maas_consumer *a =
        maas_consumer_new(brokers, "it-store", topics, 1, fast, n_fast, err, sizeof(err));
    assert_non_null(a);
    int per_part[N_PART] = {0}, got = 0;
    int64_t last_p0 = -1;
    double end = now_s() + 60;
    while (got < N_MSG + 1 && now_s() < end) { /* 60 + the "again" message */
        maas_message m;
        if (maas_consumer_poll(a, 100, &m, err, sizeof(err)) || !m.handle_) continue;
        per_part[m.partition]++;
        got++;
        if (m.partition == 0) last_p0 = m.offset;
        maas_message_release(&m);
    }
    assert_int_equal(got, N_MSG + 1);
    if (last_p0 >= 0)
        assert_ok(maas_consumer_store(a, topic, 0, last_p0 + 1, err, sizeof(err)), err);
    /* storing for a partition we do not own is refused */
    assert_err(MAAS_ERR_CONFLICT, maas_consumer_store(a, "no-such-topic", 0, 5, err, sizeof(err)),
               err);
    assert_ok(maas_consumer_commit(a, err, sizeof(err)), err);
    maas_consumer_free(a);

    /* member B of the same group gets exactly what A did not store */
    maas_consumer *b =
        maas_consumer_new(brokers, "it-store", topics, 1, fast, n_fast, err, sizeof(err));
    assert_non_null(b);
    int want = N_MSG + 1 - per_part[0], again = 0, from_p0 = 0;
    end = now_s() + 60;
    while (again < want && now_s() < end) {
        maas_message m;
        if (maas_consumer_poll(b, 100, &m, err, sizeof(err)) || !m.handle_) continue;
        again++;
        from_p0 += m.partition == 0;
        maas_message_release(&m);
    }
    /* and nothing more arrives */
    end = now_s() + 2;
    while (now_s() < end) {
        maas_message m;
        if (maas_consumer_poll(b, 100, &m, err, sizeof(err)) == MAAS_OK && m.handle_) {
            again++;
            from_p0 += m.partition == 0;
            maas_message_release(&m);
        }
    }
    print_message("partition 0 stored (%d messages); %d redelivered to the next member\n",
                  per_part[0], again);
    assert_int_equal(again, want);
    assert_int_equal(from_p0, 0);
    maas_consumer_free(b);
}

/* The batch forms the worker uses: rewind partitions to a batch's first offsets, store a
 * batch's last offsets per partition in one call. */
static void test_store_batch_and_rewind(void **state) {
    (void)state;
    const char *topics[] = {topic};
    maas_consumer *c =
        maas_consumer_new(brokers, "it-batch", topics, 1, fast, n_fast, err, sizeof(err));
    assert_non_null(c);
    enum { MAX = N_MSG + 1 };
    maas_message msgs[MAX];
    const maas_message *ptrs[MAX];
    int got = 0, per_part[N_PART] = {0};
    double end = now_s() + 60;
    while (got < MAX && now_s() < end) {
        if (maas_consumer_poll(c, 100, &msgs[got], err, sizeof(err)) || !msgs[got].handle_)
            continue;
        per_part[msgs[got].partition]++;
        ptrs[got] = &msgs[got];
        got++;
    }
    assert_int_equal(got, MAX);
    /* the keys are fixed (job-0..59), so the partitions are too: both checked below hold some */
    assert_true(per_part[1] > 0 && per_part[2] > 0);
    /* rewind partition 1 (its messages, in any order): all of them come again */
    const maas_message *p1[MAX];
    int n1 = 0;
    for (int i = got - 1; i >= 0; i--)
        if (msgs[i].partition == 1) p1[n1++] = &msgs[i];
    assert_ok(maas_consumer_rewind(c, p1, n1, err, sizeof(err)), err);
    int again = 0;
    end = now_s() + 30;
    while (again < per_part[1] && now_s() < end) {
        maas_message m;
        if (maas_consumer_poll(c, 100, &m, err, sizeof(err)) || !m.handle_) continue;
        assert_int_equal(m.partition, 1);
        again++;
        maas_message_release(&m);
    }
    assert_int_equal(again, per_part[1]);
    /* store everything but partition 2's, in one call: the next member gets exactly those */
    int k = 0;
    for (int i = 0; i < got; i++)
        if (msgs[i].partition != 2) ptrs[k++] = &msgs[i];
    assert_ok(maas_consumer_store_batch(c, ptrs, k, err, sizeof(err)), err);
    assert_ok(maas_consumer_commit(c, err, sizeof(err)), err);
    for (int i = 0; i < got; i++) maas_message_release(&msgs[i]);
    maas_consumer_free(c);
    maas_consumer *d =
        maas_consumer_new(brokers, "it-batch", topics, 1, fast, n_fast, err, sizeof(err));
    assert_non_null(d);
    int later = 0, other = 0;
    end = now_s() + 30;
    while (later < per_part[2] && now_s() < end) {
        maas_message m;
        if (maas_consumer_poll(d, 100, &m, err, sizeof(err)) || !m.handle_) continue;
        later += m.partition == 2;
        other += m.partition != 2;
        maas_message_release(&m);
    }
    end = now_s() + 2;
    while (now_s() < end) {
        maas_message m;
        if (maas_consumer_poll(d, 100, &m, err, sizeof(err)) == MAAS_OK && m.handle_) {
            later += m.partition == 2;
            other += m.partition != 2;
            maas_message_release(&m);
        }
    }
    print_message("batch store: %d of partition 2 redelivered, %d others\n", later, other);
    assert_int_equal(later, per_part[2]);
    assert_int_equal(other, 0);
    maas_consumer_free(d);
}

static void test_unreachable_broker(void **state) {
    (void)state;
    double t0 = now_s();
    assert_err(MAAS_ERR_UNAVAILABLE,
               maas_kafka_wait_ready("127.0.0.1:1", NULL, 0, 1000, err, sizeof(err)), err);
    assert_mentions(err, "127.0.0.1:1");
    assert_true(now_s() - t0 < 10);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idempotent_produce),
        cmocka_unit_test(test_group_shares_partitions),
        cmocka_unit_test(test_offsets_stored_only_when_told),
        cmocka_unit_test(test_store_batch_and_rewind),
        cmocka_unit_test(test_unreachable_broker),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
