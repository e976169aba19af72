/*
 * client.h - the cluster client: what every program that submits jobs shares
 * (the coordinator, the maas CLI, DLQ replay, housekeeping).
 *
 * It holds one Redis handle and one long-lived idempotent Kafka producer
 * (made on the first publish, so commands that only read Redis never touch
 * Kafka), and writes the submit protocol once:
 *
 *   1. create the job's record, state queued (the id is an idempotency key:
 *      a known id is not submitted again);
 *   2. keep a work job's message in Redis, so housekeeping can publish it
 *      again if its worker vanishes;
 *   3. publish it and wait for the broker's acknowledgement (acks=all);
 *   4. if publishing fails, move the record from queued to failed
 *      (UNAVAILABLE) and say so — a record never claims a job Kafka lacks.
 *
 * Thread safety: maas_client_submit/publish may be called from several
 * threads at once, each with its own maas_kv (the client's own handle,
 * maas_client_kv(), is for one thread at a time). Delivery reports are
 * served by whichever thread is waiting; a wait that times out leaves its
 * report to be collected later, never to a dangling pointer.
 */
#ifndef MAAS_CLIENT_H
#define MAAS_CLIENT_H

#include <stddef.h>

#include "maas/config.h"
#include "maas/err.h"
#include "maas/job.h"
#include "maas/kv.h"

/* How long a publish waits for the broker's acknowledgement. */
#define MAAS_CLIENT_PUBLISH_TIMEOUT_MS 15000

typedef struct maas_client_config {
    const char *brokers;          /* Kafka bootstrap servers */
    const char *redis_url;        /* see maas_kv_connect() */
    const char *topic_prefix;     /* NULL: MAAS_TOPIC_PREFIX_DEFAULT */
    const maas_setting *settings; /* kafka.* and redis.* settings (borrowed) */
    int n_settings;
} maas_client_config;

typedef struct maas_client maas_client;

/*
 * Connects to Redis (Kafka is reached on the first publish). The config's
 * strings are copied; settings are borrowed and must outlive the client.
 * Returns NULL with errstr filled (Redis unreachable: UNAVAILABLE's message).
 */
maas_client *maas_client_new(const maas_client_config *cfg, char *errstr, size_t errstr_size);

/* What maas_client_new and the first publish would refuse in cfg, found without connecting:
 * the topic prefix, the Redis URL and redis.* settings, the broker list and the kafka.*
 * settings as librdkafka takes them (a program's --check-config). INVALID_ARGUMENT with
 * errstr naming the first bad one. */
maas_err maas_client_check(const maas_client_config *cfg, char *errstr, size_t errstr_size);

/* Flushes what is still queued (up to 10 s) and frees everything. NULL is fine. */
void maas_client_free(maas_client *c);

/* The client's Redis handle (borrowed; one thread at a time). */
maas_kv *maas_client_kv(maas_client *c);

/* The topic of a job type in the scope of the client's handle ("maas.jobs.infer" for
 * inference, "maas.jobs.work" else; "maas.t.TENANT.jobs.*" in a tenant's scope). */
maas_err maas_client_topic(const maas_client *c, maas_job_type type, char *out, size_t size,
                           char *errstr, size_t errstr_size);
/* A tenant's topic with suffix (MAAS_TOPIC_*; tenant "" or NULL: the single-tenant one). */
maas_err maas_client_tenant_topic(const maas_client *c, const char *tenant, const char *suffix,
                                  char *out, size_t size, char *errstr, size_t errstr_size);

/* maas_client_submit flags */
#define MAAS_SUBMIT_REPUBLISH                                                                      \
    1u /* a known id whose record is still queued is published again                               \
          (a submitter that died between the record and the publish) */

typedef struct maas_submit_info {
    int existed;     /* the id was known (its record was there before) */
    int published;   /* the message went to Kafka now */
    char topic[256]; /* where it went (or would go) */
} maas_submit_info;

/*
 * Submits j through steps 1-4 above, using kv (NULL: the client's) and the
 * topics of kv's tenant (maas_kv_scope: the job is that tenant's). Sets
 * j->created_ms when 0. Returns MAAS_OK when the job is recorded and
 * published, or was known (info->existed; published again only with
 * MAAS_SUBMIT_REPUBLISH while queued); UNAVAILABLE when publishing failed
 * (the record then says failed); or the codec's / Redis's error.
 */
maas_err maas_client_submit(maas_client *c, maas_kv *kv, maas_job *j, unsigned flags,
                            maas_submit_info *info, char *errstr, size_t errstr_size);

/*
 * Step 3-4 alone, for a message whose record is already queued (a stale job
 * put back by housekeeping, a dead letter replayed): publishes msg under key
 * id to topic, waits for the acknowledgement, and on failure moves the
 * record from queued to failed (notify: push the final state onto the job's
 * :done list too). Returns MAAS_OK or UNAVAILABLE/TIMEOUT with errstr.
 */
maas_err maas_client_publish(maas_client *c, maas_kv *kv, const char *topic, const char *id,
                             const void *msg, size_t len, int notify, char *errstr,
                             size_t errstr_size);

/* Counters for /metrics (taken under the client's lock). */
typedef struct maas_client_stats {
    unsigned long publishes, publish_failed;
    double publish_seconds;     /* total time waiting for acknowledgements */
    unsigned long submitted[5]; /* new jobs published, by maas_job_type */
} maas_client_stats;

void maas_client_stats_get(maas_client *c, maas_client_stats *out);

/*
 * Follows a job until its record is final: calls on_record(ud, record) each
 * time the record may have changed (a progress heartbeat or a transition;
 * at least every poll_ms), and stops when it returns nonzero or the record
 * is final or gone (MAAS_JOB_UNKNOWN). The record passed is borrowed for the
 * call. Returns the last state in *state.
 */
typedef int (*maas_follow_fn)(void *ud, const maas_job_record *r);
maas_err maas_client_follow(maas_client *c, const char *id, int poll_ms, maas_follow_fn on_record,
                            void *ud, maas_job_state *state, char *errstr, size_t errstr_size);

#endif
