/*
 * config.h - settings shared by the adapters and the programs.
 *
 * A setting is a key/value string pair, as given with -X KEY=VALUE: keys
 * starting with "kafka." go to librdkafka, "redis." to the Redis adapter.
 */
#ifndef MAAS_CONFIG_H
#define MAAS_CONFIG_H

typedef struct maas_setting {
    const char *key;
    const char *value;
} maas_setting;

#endif
