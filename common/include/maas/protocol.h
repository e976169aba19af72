/*
 * protocol.h - the names of the cluster's public surface: Kafka topics (and,
 * with the codec, the job messages and Redis keys; see schemas/).
 */
#ifndef MAAS_PROTOCOL_H
#define MAAS_PROTOCOL_H

#include <stddef.h>

#include "maas/err.h"

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

#endif
