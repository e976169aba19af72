/*
 * broker.h - the Kafka adapter (librdkafka; broker_kafka.c is the only file
 * that includes rdkafka.h).
 *
 * Settings are string key/value pairs; keys starting with "kafka." go to
 * librdkafka with the prefix removed (so TLS, SASL, timeouts are a matter of
 * configuration), e.g. {"kafka.security.protocol", "SASL_SSL"}.
 */
#ifndef MAAS_BROKER_H
#define MAAS_BROKER_H

#include <stddef.h>
#include <stdint.h>

#include "maas/config.h" /* maas_setting */
#include "maas/err.h"

/* ---- admin ---- */

/* The broker list and the kafka.* settings as librdkafka takes them, without connecting:
 * MAAS_OK, or INVALID_ARGUMENT naming the setting it refuses. */
maas_err maas_kafka_check_settings(const char *brokers, const maas_setting *settings,
                                   int n_settings, char *errstr, size_t errstr_size);

/* Waits until the cluster answers a metadata request, up to timeout_ms. */
maas_err maas_kafka_wait_ready(const char *brokers, const maas_setting *settings, int n_settings,
                               int timeout_ms, char *errstr, size_t errstr_size);

typedef struct maas_topic_spec {
    const char *name;
    int partitions;
} maas_topic_spec;

/* Creates topics (replication factor 1 unless "replication" says more); ones that exist are fine.
 */
maas_err maas_kafka_create_topics(const char *brokers, const maas_setting *settings, int n_settings,
                                  const maas_topic_spec *topics, int n_topics, int replication,
                                  int timeout_ms, char *errstr, size_t errstr_size);

/*
 * Lets principal ("User:acme") produce to, describe and read the topics starting with
 * topic_prefix, and read as the consumer groups starting with group_prefix (prefixed ACLs;
 * nothing else). UNSUPPORTED when the cluster has no authorizer (then anyone may anyway).
 */
maas_err maas_kafka_grant_prefix(const char *brokers, const maas_setting *settings, int n_settings,
                                 const char *principal, const char *topic_prefix,
                                 const char *group_prefix, int timeout_ms, char *errstr,
                                 size_t errstr_size);

/* Deletes every ACL of principal (it can then do nothing); UNSUPPORTED with no authorizer. */
maas_err maas_kafka_revoke(const char *brokers, const maas_setting *settings, int n_settings,
                           const char *principal, int timeout_ms, char *errstr, size_t errstr_size);

/* Deletes topics; ones that do not exist are fine. */
maas_err maas_kafka_delete_topics(const char *brokers, const maas_setting *settings, int n_settings,
                                  const char *const *topics, int n_topics, int timeout_ms,
                                  char *errstr, size_t errstr_size);

/* Grows topic to `total` partitions (CreatePartitions): existing messages stay where they
 * are, new keys spread over all of them; a topic cannot shrink (INVALID_ARGUMENT). */
maas_err maas_kafka_add_partitions(const char *brokers, const maas_setting *settings,
                                   int n_settings, const char *topic, int total, int timeout_ms,
                                   char *errstr, size_t errstr_size);

/* Number of partitions of a topic (metadata request), or an error. */
maas_err maas_kafka_topic_partitions(const char *brokers, const maas_setting *settings,
                                     int n_settings, const char *topic, int *partitions,
                                     int timeout_ms, char *errstr, size_t errstr_size);

/* ---- producer ---- */

typedef struct maas_producer maas_producer;

/*
 * Delivery report: called from maas_producer_poll()/flush() on the calling
 * thread, once per message, with the opaque given to send. err is MAAS_OK when
 * the broker acknowledged it (acks=all), else UNAVAILABLE/TIMEOUT (LIMIT_EXCEEDED for a
 * message over a size limit) with errstr.
 */
typedef void (*maas_delivery_fn)(void *ud, void *msg_opaque, maas_err err, const char *errstr,
                                 int32_t partition, int64_t offset);

/* An idempotent producer (enable.idempotence=true, acks=all). Free with maas_producer_free(). */
maas_producer *maas_producer_new(const char *brokers, const maas_setting *settings, int n_settings,
                                 maas_delivery_fn on_delivery, void *ud, char *errstr,
                                 size_t errstr_size);

/* Queues a message (key and value are copied). Non-blocking; the report comes later. */
maas_err maas_producer_send(maas_producer *p, const char *topic, const void *key, size_t key_len,
                            const void *value, size_t value_len, void *msg_opaque, char *errstr,
                            size_t errstr_size);

/*
 * Sends one message with headers and waits up to timeout_ms for the broker's
 * verdict (the delivery report), serving other reports meanwhile: MAAS_OK only
 * once the message is stored (acks=all). A message over the producer's or the
 * topic's size limit is LIMIT_EXCEEDED; a broker away, UNAVAILABLE or TIMEOUT.
 * Not for concurrent use on one producer (the dead-letter path of a worker).
 */
maas_err maas_producer_send_wait(maas_producer *p, const char *topic, const void *key,
                                 size_t key_len, const void *value, size_t value_len,
                                 const maas_setting *headers, int n_headers, int timeout_ms,
                                 char *errstr, size_t errstr_size);

/* Serves delivery reports for up to timeout_ms; returns how many were served. */
int maas_producer_poll(maas_producer *p, int timeout_ms);

/* Waits until every queued message is reported, up to timeout_ms. */
maas_err maas_producer_flush(maas_producer *p, int timeout_ms, char *errstr, size_t errstr_size);

/* Flushes (up to 10 s) and frees. NULL is fine. */
void maas_producer_free(maas_producer *p);

/* ---- consumer ---- */

typedef struct maas_consumer maas_consumer;

/*
 * A consumer-group member subscribed to topics; a name starting with '^' is a
 * regular expression (librdkafka's), matched against the cluster's topics as
 * they come and go (checked every 5 s). Offsets are stored only by
 * maas_consumer_store() (enable.auto.offset.store=false) and committed in the
 * background (enable.auto.commit) or by maas_consumer_commit(). Free with
 * maas_consumer_free(), which leaves the group cleanly (or, after 10 s, lets go).
 */
maas_consumer *maas_consumer_new(const char *brokers, const char *group_id,
                                 const char *const *topics, int n_topics,
                                 const maas_setting *settings, int n_settings, char *errstr,
                                 size_t errstr_size);

/* A received message. Valid until maas_message_release(). */
typedef struct maas_message {
    const char *topic;
    int32_t partition;
    int64_t offset;
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
    int64_t timestamp_ms; /* the message's Kafka timestamp (the producer's create time unless
                           * the topic logs append time); 0 when it has none */
    void *handle_;        /* owned librdkafka message */
} maas_message;

/*
 * Waits up to timeout_ms for a message. Returns MAAS_OK with msg->handle_ set
 * when one arrived, MAAS_OK with msg->handle_ NULL when none did, or an error
 * (UNAVAILABLE for a broker-side problem worth logging; the consumer goes on).
 */
maas_err maas_consumer_poll(maas_consumer *c, int timeout_ms, maas_message *msg, char *errstr,
                            size_t errstr_size);
void maas_message_release(maas_message *msg);

/* Copies the last header `name` of msg into out (NUL-terminated, truncated); 0 if absent. */
int maas_message_header(const maas_message *msg, const char *name, char *out, size_t size);

/*
 * Marks everything before next_offset on (topic, partition) as done. Fails with
 * CONFLICT when the partition is no longer assigned to this member (its jobs
 * will be redelivered elsewhere).
 */
maas_err maas_consumer_store(maas_consumer *c, const char *topic, int32_t partition,
                             int64_t next_offset, char *errstr, size_t errstr_size);

/*
 * Marks a batch done: per (topic, partition) among msgs, everything up to its
 * highest offset. CONFLICT when a partition is no longer assigned (its jobs go
 * elsewhere); the others are stored anyway.
 */
maas_err maas_consumer_store_batch(maas_consumer *c, const maas_message *const *msgs, int n,
                                   char *errstr, size_t errstr_size);

/* Rewinds each (topic, partition) among msgs to its lowest offset there (retry them all). */
maas_err maas_consumer_rewind(maas_consumer *c, const maas_message *const *msgs, int n,
                              char *errstr, size_t errstr_size);

/* Commits the stored offsets now (synchronously). */
maas_err maas_consumer_commit(maas_consumer *c, char *errstr, size_t errstr_size);

/*
 * Rewinds (topic, partition) to offset so the messages from there are delivered
 * again (a job that failed for a retriable reason is retried this way).
 */
maas_err maas_consumer_seek(maas_consumer *c, const char *topic, int32_t partition, int64_t offset,
                            char *errstr, size_t errstr_size);

/* Pauses / resumes fetching on every assigned partition (keep polling meanwhile). */
maas_err maas_consumer_pause(maas_consumer *c, int pause, char *errstr, size_t errstr_size);

/*
 * Messages behind on the assigned partitions: the sum of high watermark minus
 * position, from what the consumer already knows (no request). 0 when unknown.
 */
long long maas_consumer_lag(maas_consumer *c);

/* Offsets [from, to) of a partition. */
typedef struct maas_offset_range {
    char topic[256];
    int32_t partition;
    int64_t from, to;
} maas_offset_range;

/*
 * Whether m is the first message delivered from a partition assigned to this member
 * since it last was: then *out holds the offsets another member may have been given
 * before — from m's offset (where the group had left the partition) to the partition's
 * end as the fetch that brought m reported it — and the partition stops being fresh.
 * Messages there may be redeliveries after a member died (a worker counts its attempts
 * on them). Makes no request unless the end is unknown (then one, of up to 5 s).
 */
int maas_consumer_fresh_range(maas_consumer *c, const maas_message *m, maas_offset_range *out);

/* Seconds since this member's last assignment or revocation; -1 before its first
 * assignment (it has not joined the group yet). Call from the polling thread. */
double maas_consumer_settled_s(const maas_consumer *c);

/* Rebalances (assignments and revocations) this member went through. */
long maas_consumer_rebalances(const maas_consumer *c);

/* A metadata round trip through this consumer's connection: is Kafka answering? */
/* Safe to call from another thread than the one polling (librdkafka metadata request). */
maas_err maas_consumer_ping(maas_consumer *c, int timeout_ms, char *errstr, size_t errstr_size);

/* Number of partitions currently assigned to this member. */
int maas_consumer_assigned(maas_consumer *c);

/* Leaves the group (committing stored offsets) and frees c, bounded: 10 s to leave, 5 s for
 * the client's threads to stop. Returns 0 when all went cleanly, 1 when it let go of what did
 * not finish in time (the group then finds out by the session timeout; offsets not committed
 * mean redeliveries, which are harmless). */
int maas_consumer_free(maas_consumer *c);

#endif
