/*
 * maas-kafka-admin - what the deploy scripts need from Kafka, at protocol level:
 *   maas-kafka-admin [--brokers B] [-X kafka.key=value]... wait [--timeout SECONDS]
 *   maas-kafka-admin [--brokers B] [-X ...] create-topics [--prefix P] [--partitions N]
 *                                                         [--timeout SECONDS]
 *   maas-kafka-admin [--brokers B] [-X ...] partitions TOPIC
 *   maas-kafka-admin [--brokers B] [-X ...] grant PRINCIPAL TOPIC_PREFIX GROUP_PREFIX
 * Credentials: the file MAAS_CONFIG names, as for every maas program.
 */
#include "maas/base.h"
#include "maas/broker.h"
#include "maas/config.h"
#include "maas/protocol.h"

static int usage(void) {
    fprintf(stderr, "usage: maas-kafka-admin [--brokers HOST:PORT] [-X kafka.KEY=VALUE]...\n"
                    "         wait [--timeout SECONDS] | create-topics [--prefix P] "
                    "[--partitions N] [--timeout SECONDS] | partitions TOPIC |\n"
                    "         grant PRINCIPAL TOPIC_PREFIX GROUP_PREFIX\n");
    return 2;
}

int main(int argc, char **argv) {
    /* MAAS_KAFKA_BROKERS, MAAS_TOPIC_PREFIX and the file MAAS_CONFIG (credentials), as for
     * every maas program; then the flags */
    char brokers[512] = "127.0.0.1:19092", redis[512] = "", prefix[64] = MAAS_TOPIC_PREFIX_DEFAULT;
    const maas_option opts[] = {MAAS_OPTION_CLUSTER(brokers, redis, prefix)};
    maas_config conf;
    char err[MAAS_ERRSTR_SIZE];
    if (maas_config_init(&conf, "maas-kafka-admin", opts, 3, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    int i = 1, timeout_s = 10, partitions = 0, rc = 0; /* every way out goes through `out` */
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--brokers") && i + 1 < argc) {
            snprintf(brokers, sizeof(brokers), "%s", argv[++i]);
        } else if (!strcmp(argv[i], "-X") && i + 1 < argc) {
            if (maas_config_setting(&conf, argv[++i], err, sizeof(err))) {
                fprintf(stderr, "%s\n", err);
                rc = usage();
                goto out;
            }
        } else {
            rc = usage();
            goto out;
        }
    }
    const maas_setting *settings = conf.settings;
    int n_settings = conf.n_settings;
    if (i >= argc) {
        rc = usage();
        goto out;
    }
    const char *cmd = argv[i++];
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
            timeout_s = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--prefix") && i + 1 < argc)
            snprintf(prefix, sizeof(prefix), "%s", argv[++i]);
        else if (!strcmp(argv[i], "--partitions") && i + 1 < argc) {
            char *end;
            long p = strtol(argv[++i], &end, 10);
            if (*end || p < 1 || p > 1024) {
                fprintf(stderr, "maas-kafka-admin: --partitions '%s': 1..1024\n", argv[i]);
                rc = 2;
                goto out;
            }
            partitions = (int)p;
        } else {
            break;
        }
    }
    if (!strcmp(cmd, "wait")) {
        if (maas_kafka_wait_ready(brokers, settings, n_settings, timeout_s * 1000, err,
                                  sizeof(err))) {
            fprintf(stderr, "maas-kafka-admin: %s\n", err);
            rc = 1;
        }
    } else if (!strcmp(cmd, "create-topics")) {
        int n;
        const maas_topic_def *defs = maas_topics(&n);
        maas_topic_spec specs[8];
        char names[8][256];
        for (int t = 0; t < n && !rc; t++) {
            if (maas_topic_name(prefix, defs[t].suffix, names[t], sizeof(names[t]), err,
                                sizeof(err))) {
                fprintf(stderr, "maas-kafka-admin: %s\n", err);
                rc = 2;
            }
            /* --partitions: the job topics' count (the dead-letter topic keeps 1) */
            int want = partitions && defs[t].partitions > 1 ? partitions : defs[t].partitions;
            specs[t] = (maas_topic_spec){names[t], want};
        }
        if (!rc && maas_kafka_create_topics(brokers, settings, n_settings, specs, n, 1,
                                            timeout_s * 1000, err, sizeof(err))) {
            fprintf(stderr, "maas-kafka-admin: %s\n", err);
            rc = 1;
        }
        /* topics made earlier with fewer partitions grow to the count asked (never shrink) */
        for (int t = 0; t < n && !rc; t++) {
            int have = 0;
            if (maas_kafka_topic_partitions(brokers, settings, n_settings, specs[t].name, &have,
                                            timeout_s * 1000, err, sizeof(err))) {
                fprintf(stderr, "maas-kafka-admin: %s\n", err);
                rc = 1;
            } else if (partitions && have < specs[t].partitions) {
                if (maas_kafka_add_partitions(brokers, settings, n_settings, specs[t].name,
                                              specs[t].partitions, timeout_s * 1000, err,
                                              sizeof(err))) {
                    fprintf(stderr, "maas-kafka-admin: %s\n", err);
                    rc = 1;
                } else {
                    fprintf(stderr, "maas-kafka-admin: %s grew from %d to %d partitions\n",
                            specs[t].name, have, specs[t].partitions);
                    have = specs[t].partitions;
                }
            } else if (partitions && have > specs[t].partitions) {
                fprintf(stderr,
                        "maas-kafka-admin: %s keeps its %d partitions (a topic cannot shrink)\n",
                        specs[t].name, have);
            }
            if (!rc) printf("%s %d\n", specs[t].name, have);
        }
    } else if (!strcmp(cmd, "grant") && i + 2 < argc) {
        /* grant PRINCIPAL TOPIC_PREFIX GROUP_PREFIX (maas/broker.h: maas_kafka_grant_prefix) */
        if (maas_kafka_grant_prefix(brokers, settings, n_settings, argv[i], argv[i + 1],
                                    argv[i + 2], timeout_s * 1000, err, sizeof(err))) {
            fprintf(stderr, "maas-kafka-admin: %s\n", err);
            rc = 1;
        }
    } else if (!strcmp(cmd, "partitions") && i < argc) {
        int parts;
        if (maas_kafka_topic_partitions(brokers, settings, n_settings, argv[i], &parts,
                                        timeout_s * 1000, err, sizeof(err))) {
            fprintf(stderr, "maas-kafka-admin: %s\n", err);
            rc = 1;
        } else {
            printf("%d\n", parts);
        }
    } else {
        rc = usage();
    }
out:
    maas_config_release(&conf);
    return rc;
}
