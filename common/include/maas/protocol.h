/*
 * protocol.h - the names of the cluster's public surface: Kafka topics (and,
 * with the codec, the job messages and Redis keys; see schemas/).
 */
#ifndef MAAS_PROTOCOL_H
#define MAAS_PROTOCOL_H

#include <stddef.h>

#include "maas/err.h"
#include "maas/names.h"

#define MAAS_TOPIC_PREFIX_DEFAULT "maas."

/*
 * The topics, under a configurable prefix:
 *   jobs.infer  inference jobs: short, latency-bound, batched by workers. Its
 *               partition count bounds how many workers serve inference.
 *   jobs.work   train / evaluate / optimize: long-running; a worker pauses its
 *               partitions while it computes, so they are kept apart from
 *               inference, which must not wait behind a training job.
 *   jobs.dlq    dead letters: jobs that failed permanently, for inspection and replay.
 * Messages are keyed by job id (even spread, and a job's redeliveries stay on
 * one partition).
 */
typedef struct maas_topic_def {
    const char *suffix;
    int partitions;
} maas_topic_def;

#define MAAS_TOPIC_INFER "jobs.infer"
#define MAAS_TOPIC_WORK "jobs.work"
#define MAAS_TOPIC_DLQ "jobs.dlq"

/* The topic list with default partition counts; *n receives the count. Static, borrowed. */
const maas_topic_def *maas_topics(int *n);

/* prefix + suffix into out (e.g. "maas.jobs.infer"). */
maas_err maas_topic_name(const char *prefix, const char *suffix, char *out, size_t size,
                         char *errstr, size_t errstr_size);

/*
 * Tenants (maas/names.h) have topics of their own under PREFIX "t." TENANT ".",
 * e.g. "maas.t.acme.jobs.infer": broker ACLs on that prefix decide who may
 * produce a tenant's jobs, and a worker takes a job's tenant from the topic
 * the broker delivered it on, never from the message. No tenant ("" or NULL):
 * the prefix itself (the single-tenant layout).
 */
maas_err maas_tenant_topic_prefix(const char *prefix, const char *tenant, char *out, size_t size,
                                  char *errstr, size_t errstr_size);

/*
 * The tenant of a topic under prefix: "acme" for "maas.t.acme.jobs.infer", ""
 * for "maas.jobs.infer". INVALID_ARGUMENT for a topic that is neither.
 */
maas_err maas_topic_tenant(const char *prefix, const char *topic, char out[MAAS_TENANT_MAX + 1],
                           char *errstr, size_t errstr_size);

/*
 * The subscription pattern of every tenant's topic with this suffix under
 * prefix (a librdkafka regex, '^'...'$'): "^maas\\.t\\.[a-z0-9][a-z0-9_-]*\\.jobs\\.infer$".
 */
maas_err maas_tenant_topic_pattern(const char *prefix, const char *suffix, char *out, size_t size,
                                   char *errstr, size_t errstr_size);

#endif
