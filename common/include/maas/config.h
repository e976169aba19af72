/*
 * config.h - settings, one way for every program (worker, coordinator, CLI).
 *
 * A program declares its options in a table (maas_option: name, environment
 * variable, type, range, where the value goes). A value comes, later ones
 * winning, from: the program's default (whatever dst holds before
 * maas_config_init), the environment (variables, then the file MAAS_CONFIG
 * names: NAME=VALUE lines, e.g. a deployment's credentials as kafka.* and
 * redis.* settings, shared by every program), a --config FILE of NAME=VALUE
 * lines, and the command line (--NAME VALUE). Every value is checked when it is set
 * (numbers against their range), so a program validates once, before it
 * starts anything. -X KEY=VALUE (or a kafka.* / redis.* line in the file)
 * collects adapter settings: keys starting with "kafka." go to librdkafka,
 * "redis." to the Redis adapter.
 *
 * maas_config_describe() prints the effective configuration with secrets
 * masked (any key naming a password, secret or OAuth token; the password in
 * a redis:// URL).
 */
#ifndef MAAS_CONFIG_H
#define MAAS_CONFIG_H

#include <stddef.h>

#include "maas/err.h"

typedef struct maas_setting {
    const char *key;
    const char *value;
} maas_setting;

typedef enum maas_option_type {
    MAAS_OPTION_STRING = 0,
    MAAS_OPTION_INT,
    MAAS_OPTION_LONG
} maas_option_type;

/* One option. dst is char[size] (STRING), int (INT) or long (LONG). */
typedef struct maas_option {
    const char *name; /* the flag without "--", and the file key */
    const char *env;  /* environment variable, or NULL */
    maas_option_type type;
    void *dst;
    size_t size; /* STRING: the buffer's size (longer values are refused) */
    long lo, hi; /* INT, LONG: the valid range */
} maas_option;

/* The three options every cluster program takes, with their environment variables. */
#define MAAS_OPTION_CLUSTER(brokers, redis, prefix)                                                \
    {"brokers", "MAAS_KAFKA_BROKERS", MAAS_OPTION_STRING, (brokers), sizeof(brokers), 0, 0},       \
        {"redis", "MAAS_REDIS_URL", MAAS_OPTION_STRING, (redis), sizeof(redis), 0, 0}, {           \
        "topic-prefix", "MAAS_TOPIC_PREFIX", MAAS_OPTION_STRING, (prefix), sizeof(prefix), 0, 0    \
    }

#define MAAS_CONFIG_MAX_SETTINGS 64

typedef struct maas_config {
    const char *program; /* for messages, e.g. "maas-worker" */
    const maas_option *opts;
    int n_opts;
    maas_setting settings[MAAS_CONFIG_MAX_SETTINGS]; /* -X settings; keys and values owned */
    int n_settings;
    /* --check-config, for programs that set checkable after maas_config_init: the program
     * validates what it would start with, prints it (maas_config_describe) and exits. */
    int checkable, check;
} maas_config;

/*
 * Starts a configuration over opts (borrowed; must outlive c) and applies the
 * environment. A bad environment value is an error (ARG, naming the variable).
 */
maas_err maas_config_init(maas_config *c, const char *program, const maas_option *opts, int n_opts,
                          char *errstr, size_t errstr_size);

/* Sets option `name` (or a kafka.* / redis.* setting) from text; ARG when bad or unknown. */
maas_err maas_config_set(maas_config *c, const char *name, const char *value, char *errstr,
                         size_t errstr_size);

/* Adds an adapter setting from "KEY=VALUE" (-X); KEY must start with kafka. or redis. */
maas_err maas_config_setting(maas_config *c, const char *key_value, char *errstr,
                             size_t errstr_size);

/* Applies a file of NAME=VALUE lines ('#' comments, blank lines); IO or ARG naming the line. */
maas_err maas_config_load_file(maas_config *c, const char *path, char *errstr, size_t errstr_size);

/*
 * Applies argv[1..argc) in order: --NAME VALUE, -X KEY=VALUE, --config FILE, and
 * --check-config (sets c->check) where c->checkable.
 * *help is set (and nothing more parsed) on --help / -h. ARG on anything else.
 */
maas_err maas_config_parse_args(maas_config *c, int argc, char **argv, int *help, char *errstr,
                                size_t errstr_size);

/* Frees the settings. */
void maas_config_release(maas_config *c);

/* 1 when a setting's value must not be printed (passwords, secrets, tokens). */
int maas_config_secret(const char *key);

/* A URL with the password of its user info masked: redis://user:***@host:port. */
void maas_config_mask_url(const char *url, char *out, size_t size);

/* Appends "name=value ..." for every option and setting, secrets masked. */
struct maas_strbuf;
void maas_config_describe(const maas_config *c, struct maas_strbuf *out);

#endif
