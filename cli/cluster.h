/*
 * cluster.h - what the `maas` CLI's cluster commands share (cluster.c): the
 * connection options every command takes, the job data options, following a
 * job, and submitting through the cluster client (maas/client.h).
 */
#ifndef MAAS_CLI_CLUSTER_H
#define MAAS_CLI_CLUSTER_H

#include <signal.h>
#include <stddef.h>

#include "maas/client.h"
#include "maas/config.h"
#include "maas/job.h"
#include "maas/kv.h"
#include "maas/train.h"
#include "cli.h"

#define CLI_INLINE_LIMIT (900 * 1024) /* larger jobs ship their data as a dataset */

typedef struct cli_conn {
    char brokers[512];
    char redis[512];
    char prefix[64];
    char tenant[MAAS_TENANT_MAX + 1]; /* whose namespace and topics ("": the single-tenant) */
    maas_option opts[4];              /* brokers, redis, topic-prefix, tenant (maas/config.h) */
    maas_config conf;                 /* conf.settings: -X kafka.* / redis.* */
    char bad[MAAS_ERRSTR_SIZE];       /* the first bad option value, reported by cli_conn_open */
    maas_client *client; /* one producer (made on the first publish) and Redis handle */
    maas_kv *kv;         /* the client's */
} cli_conn;

#define CLI_CONN_LONGOPTS                                                                          \
    {"brokers", required_argument, 0, 'B'}, {"redis", required_argument, 0, 'R'},                  \
        {"topic-prefix", required_argument, 0, 'P'}, {                                             \
        "tenant", required_argument, 0, O_CONN_TENANT                                              \
    }

/* Where a job's data comes from: --data FILE --label COLUMN [--drop COLUMN ...] or --dataset NAME.
 */
typedef struct cli_data_args {
    const char *data, *label, *dataset;
    const char *drops[32];
    int n_drops;
} cli_data_args;

/* Option codes of cli_data_args (above every command's own, which start at 256). */
enum { O_DATA_FILE = 1000, O_DATA_LABEL, O_DATA_SET, O_DATA_DROP, O_CONN_TENANT };

#define CLI_DATA_LONGOPTS                                                                          \
    {"data", required_argument, 0, O_DATA_FILE}, {"label", required_argument, 0, O_DATA_LABEL},    \
        {"dataset", required_argument, 0, O_DATA_SET}, {                                           \
        "drop", required_argument, 0, O_DATA_DROP                                                  \
    }

/*
 * A command's connection, closed when it goes out of scope whatever path the command takes
 * (an early usage error included: the settings MAAS_CONFIG loaded are freed); starts zeroed,
 * and cli_conn_close may also be called before (it is idempotent).
 */
#define CLI_CONN(name) cli_conn name __attribute__((cleanup(cli_conn_close))) = {0}

/* The environment's defaults (MAAS_KAFKA_BROKERS, MAAS_REDIS_URL, MAAS_TOPIC_PREFIX). */
void cli_conn_defaults(cli_conn *c);
/* Handles the connection options shared by every cluster command; 1 if consumed. */
int cli_conn_opt(cli_conn *c, int opt, const char *arg);
/* The connection options' help text, printed after each command's own. */
extern const char cli_conn_help[];
/* Connects (Redis now, Kafka on the first publish); 0, or the exit status after a message. */
int cli_conn_open(const char *cmd, cli_conn *c);
/* Closes and frees the settings. */
void cli_conn_close(cli_conn *c);

/* Takes a data option (a usage error in *rc when it is bad); 0 when opt is not one. */
int cli_data_opt(const char *cmd, cli_data_args *d, int opt, const char *arg, int *rc);
/* Loads the --data file (features, and labels from `label`). */
int cli_data_load(const char *cmd, const cli_data_args *a, const char *label, cli_data *d);
/* Stores d as dataset `name`; 0, or the exit status after a message. */
int cli_put_dataset(const char *cmd, cli_conn *c, const char *name, cli_data *d);
/* A matrix view of rows x cols floats (borrowed). */
maas_matrix cli_as_matrix(float *data, size_t rows, int cols);

/* Set by Ctrl-C while following (cli_on_sigint): stop following, the job goes on. */
extern volatile sig_atomic_t cli_detach;
void cli_on_sigint(int sig);

/* A succeeded job's result, as text or JSON, on stdout. */
void cli_print_result(cli_conn *c, const maas_job_record *r, int json, int want_classes);
/* The training history's epochs after `shown`, on stderr. */
void cli_print_history(const maas_job_record *r, int shown);
/* Follows a job to its end with epoch lines; prints its result; returns the exit status. */
int cli_follow(const char *cmd, cli_conn *c, const char *id, int json, int want_classes);

/*
 * Submits j through the cluster client; 1 (after a message) when it failed —
 * a failed publish is recorded. *existed: the id was known (then nothing is
 * published, unless republish and the record is still queued).
 */
int cli_publish_job(const char *cmd, cli_conn *c, maas_job *j, int republish, int *existed,
                    char *topic, size_t topic_size);
/* cli_publish_job, then the job's id on stdout, or (wait) cli_follow. */
int cli_submit_job(const char *cmd, cli_conn *c, maas_job *j, int wait, int json);
/* Fills a training job's compile settings from --loss / --optimizer names. */
int cli_train_compile(const char *cmd, maas_train_spec *t, const char *loss, const char *opt);

#endif
