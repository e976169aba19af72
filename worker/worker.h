/* maas-worker internals shared by its files. */
#ifndef MAAS_WORKER_H
#define MAAS_WORKER_H

#include <pthread.h>
#include <stdatomic.h>

#include "maas/broker.h"
#include "maas/clock.h"
#include "maas/config.h"
#include "maas/cost.h"
#include "maas/http.h"
#include "maas/job.h"
#include "maas/kv.h"
#include "maas/model.h"
#include "maas/optimize.h"
#include "maas/model_io.h"

typedef struct worker_config {
    char brokers[512];
    char redis_url[512];
    char topic_prefix[64];
    char id[MAAS_NAME_MAX + 1];
    char group_infer[128], group_work[128];
    int batch_max;      /* inference batch: up to this many jobs ... */
    int batch_wait_ms;  /* ... or this long after the first */
    long memory_mb;     /* the worker's memory budget: cache + inference buffers + a work job */
    long cache_mb;      /* model cache budget (within memory_mb) */
    size_t infer_bytes; /* one inference batch's buffers: memory_mb / 4 */
    size_t work_bytes;  /* one work job: memory_mb - cache_mb - infer_bytes */
    int max_job_s;      /* a work job running longer fails with TIMEOUT */
    int max_attempts;   /* a job started this often without finishing is dead-lettered */
    long max_rows;      /* per job */
    long max_params;
    int max_epochs;
    int grace_s;          /* shutdown: finish the current training job for up to this long */
    int default_ttl_s;    /* job records live this long after they end (0 = forever) */
    int threads;          /* BLAS threads */
    char http[64];        /* "ADDR:PORT" of /metrics, /healthz, /readyz; "" = off */
    char core_watts[32];  /* the energy model's watts per busy core (maas/cost.h) */
    char powercap[256];   /* where RAPL counters are looked for ("" = /sys/class/powercap) */
    maas_option opts[20]; /* the option table (maas/config.h), pointing into this struct */
    maas_config conf;     /* conf.settings: kafka.* and redis.* pass-through */
} worker_config;

/* A cached model version: immutable, shared by every job that uses it. */
typedef struct cache_entry {
    char tenant[MAAS_TENANT_MAX + 1];
    char name[MAAS_NAME_MAX + 1];
    int version;
    maas_model *model;
    maas_model_info info;
    maas_infer *infer;
    size_t bytes;
    unsigned long long last_used;
} cache_entry;

/* "name:version" of a cached model, into buf (for messages); returns buf. */
const char *model_label(const cache_entry *ce, char *buf, size_t size);

typedef struct model_cache {
    cache_entry e[64];
    int n;
    size_t bytes, budget;
    unsigned long long tick;
    unsigned long hits, misses, evictions;
} model_cache;

/* The long-running job a compute thread works on while the main thread polls. */
typedef struct work_task {
    maas_job job;
    char tenant[MAAS_TENANT_MAX + 1]; /* from the topic the job came on */
    char topic[256];
    int32_t partition;
    int64_t offset;
    unsigned char *raw; /* the message, for the DLQ */
    size_t raw_len;
    maas_model *model; /* owned (train: the new model; evaluate: a clone) */
    maas_compile compile;
    int has_compile; /* optimize: the parent version carried a training config */
    maas_rng rng;    /* seeded once: initialization, then shuffling, as `maas fit` does */
    int parent_version;
    pthread_t thread;
    atomic_int done, cancel, stop;
    atomic_int
        lost; /* the record moved on (another worker owns it, or it went back to the queue) */
    int joined;
    int timed_out; /* ran over --max-job-seconds: cancelled, to fail with TIMEOUT */
    maas_err err;
    char errstr[MAAS_ERRSTR_SIZE];
    maas_history history;
    double loss, accuracy;
    size_t rows;
    pthread_mutex_t lock; /* guards progress and epochs */
    maas_epoch_log progress;
    maas_epoch_log *epochs; /* every epoch so far (the live curves), appended by the thread */
    int n_epochs, cap_epochs;
    int epochs_pushed; /* how many of them are in Redis (main thread) */
    double started, last_heartbeat;
    int64_t started_ms;       /* wall time it was taken (its queue time ends) */
    maas_optimize_report opt; /* optimize jobs: the measured effects */
    double peak_bytes;        /* the job's buffers at most (the budget's count) */
    double cpu_s, compute_s;  /* the compute thread's CPU and wall time */
} work_task;

#define N_TIME_BUCKETS 16
#define N_SIZE_BUCKETS 10
typedef enum { OUT_SUCCEEDED, OUT_FAILED, OUT_EXPIRED, OUT_CANCELLED, N_OUTCOMES } job_outcome;

typedef struct histogram {
    unsigned long buckets[N_TIME_BUCKETS > N_SIZE_BUCKETS ? N_TIME_BUCKETS : N_SIZE_BUCKETS];
    unsigned long count;
    double sum;
} histogram;

/* What jobs of one (tenant, model, type) cost here, summed (/metrics). */
#define N_COST_KEYS 64
typedef struct cost_total {
    char tenant[MAAS_TENANT_MAX + 1];
    char model[MAAS_NAME_MAX + 1]; /* "" : the models past the table's first N_COST_KEYS - 1 */
    int type;
    unsigned long jobs;
    double cpu_s, queue_s, compute_s, flops, energy_j;
} cost_total;

/* What /metrics, /healthz and /readyz report; written by the main thread under lock. */
typedef struct metrics {
    pthread_mutex_t lock;
    unsigned long jobs[MAAS_JOBTYPE_OPTIMIZE + 1][N_OUTCOMES];
    histogram queue[2]; /* work, infer */
    histogram compute[MAAS_JOBTYPE_OPTIMIZE + 1];
    histogram batch;
    cost_total costs[N_COST_KEYS];
    int n_costs;
    unsigned long cache_hits, cache_misses, cache_evictions;
    size_t cache_bytes;
    int cache_models;
    long long lag[2];
    long rebalances[2];
    int assigned[2];
    double rebalanced_at[2]; /* maas_mono_s() of each consumer's last rebalance; -1: none */
    int busy, stopping, redis_ok, kafka_ok;
    double checked_at;
} metrics;

/* An inference batch whose results are written but not yet confirmed: Redis applies the
 * pipeline while the worker computes the next batches; the offsets are stored when the
 * replies say the records are final, oldest batch first. */
typedef struct infer_flight {
    maas_message *msgs; /* the batch's messages, held until then */
    int n;
    int n_results;                  /* results in the pipeline */
    int *result_of;                 /* result k is the outcome of msgs[result_of[k]] ... */
    char (*ids)[MAAS_NAME_MAX + 1]; /* ... for job ids[k] */
} infer_flight;

/* An inference partition this worker was given, and which of its messages may be
 * redeliveries after a worker died: those a previous owner may have started (below its start
 * mark, maas_kv_start_mark_get) and not confirmed. */
typedef struct careful_range {
    char topic[256];
    int32_t partition;
    int64_t to;         /* offsets below it may be redeliveries: their starts are counted */
    int64_t counted_to; /* offsets below it were counted by this process already */
    int64_t started_to; /* the partition's start mark as raised by this worker: a message at
                         * or past it is not started before the mark is raised past it */
    int64_t raised_ms;  /* when this worker last raised it (0: not since it was given the
                         * partition): raised again after a day, which renews its TTL */
} careful_range;

/* How far past a batch's last message a start mark is raised: one Redis round trip per
 * this many messages of a partition; after a worker dies, at most this many messages it
 * never started are counted as possible redeliveries beside those it left unconfirmed. */
#define INFER_MARK_STEP 4096

/* Batches in flight at most, each on a Redis connection of its own (measured on 2 cores:
 * with one, Redis idled ~30% of a drain waiting for the worker's next batch). */
#define INFER_FLIGHTS 2

typedef struct worker {
    worker_config cfg;
    maas_kv *kv;
    maas_kv *kv_results[INFER_FLIGHTS]; /* the results' own connections, one per flight */
    infer_flight flight[INFER_FLIGHTS]; /* a ring: slot (flight_head + k) % INFER_FLIGHTS */
    int flight_head, n_flights;
    maas_producer *producer;
    maas_consumer *infer_c, *work_c;
    /* the inference partitions this worker was given: offsets below careful[i].to have
     * their deliveries counted (a job that keeps killing workers is dead-lettered); offsets
     * below careful[i].counted_to were counted by this process; careful[i].started_to is
     * the start mark this worker raised */
    careful_range *careful;
    int n_careful, cap_careful;
    char topic_infer[256], topic_work[256], topic_dlq[256];
    /* every tenant's inference and work topics: regex subscriptions */
    char pattern_infer[600], pattern_work[600];
    char batch_tenant[MAAS_TENANT_MAX + 1]; /* the inference batch's (its topic's) */
    maas_message carry; /* polled for the next inference batch (another tenant's topic) */
    model_cache cache;
    work_task *task; /* NULL when no long job runs */
    unsigned long jobs_done, jobs_failed, batches, batched_jobs;
    double started;
    int stopping;
    metrics metrics;
    maas_http *http;
    maas_energy energy; /* joules per CPU second (sampled by the main loop) */
    /* Kafka health probe: a metadata round trip every 5 s on its own thread (on the main
     * loop it stalled inference for 3-50 ms under load) */
    pthread_t probe;
    int probe_running;
    atomic_int probe_stop;
} worker;

/* Which states a job may leave for a final one: it was queued or running. */
#define JOB_FROM_ACTIVE (MAAS_JOB_FROM(MAAS_JOB_QUEUED) | MAAS_JOB_FROM(MAAS_JOB_RUNNING))

/* Where a job's message came from: what its dead letter carries (all borrowed). */
typedef struct job_source {
    const void *raw;
    size_t raw_len;
    const char *topic;
    int32_t partition;
    int64_t offset;
} job_source;

/* The initializer of a job_source for a received message: (job_source){JOB_SOURCE_OF(m)}. */
#define JOB_SOURCE_OF(m) (m)->value, (m)->value_len, (m)->topic, (m)->partition, (m)->offset

/* outcome.c: how a job ends when it is not computed to success */
/* The record's TTL after the job ends: the job's own, or the worker's default. */
int job_ttl(const worker *w, const maas_job *j);
/*
 * A permanent failure: the record says failed (created when the job had none)
 * and the message goes to the dead-letter topic with the reason in its
 * headers (cut to fit the topic if it must be, the origin and digest in the
 * headers). Returns an error when that outcome is not durable (Redis or Kafka
 * could not take it): the caller must then rewind to the job, never store past it.
 */
maas_err job_fail(worker *w, const maas_job *j, const job_source *src, maas_err code,
                  const char *message);
/* The same for a job that computed (part of) its work first: its record carries cost (NULL:
 * the time it queued, nothing computed). */
maas_err job_fail_cost(worker *w, const maas_job *j, const job_source *src, maas_err code,
                       const char *message, const maas_job_cost *cost);
/* A job's cost when nothing was computed: the time it queued until now. */
void job_queue_cost(const maas_job *j, maas_job_cost *c);
/* The deadline passed first: the record says expired; logged and counted. */
maas_err job_expire(worker *w, const maas_job *j, const job_source *src);
/*
 * A message whose record must not or cannot be written: one that does not match the
 * record it names (MISMATCH: another job's id, a forgery; the record is left alone),
 * or whose result Redis refused for good (SERVER_ERROR). It goes to the dead-letter
 * topic with code and why. Returns an error when the dead letter could not be written.
 */
maas_err job_reject(worker *w, const char *id, const job_source *src, maas_err code,
                    const char *why);

/*
 * The worker's Redis handle in tenant's scope (from the topic a job came on, never
 * from the message); every job's Redis calls go through it. A topic that names no
 * valid tenant cannot be subscribed to (the pattern excludes it), so this cannot fail
 * for a delivered job's tenant.
 */
maas_kv *worker_kv(worker *w, const char *tenant);
/* The tenant of a delivered message's topic into out ("" for the single-tenant topics). */
void worker_tenant_of(const worker *w, const char *topic, char out[MAAS_TENANT_MAX + 1]);

/* log.c-style structured lines on stderr: ts, level, worker, job, msg. */
void wlog(const worker *w, const char *level, const char *job, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* cache.c */
void cache_init(model_cache *c, size_t budget_bytes);
void cache_release(model_cache *c);
/* Resolves tenant's (name, ref), loads the version if needed; *entry borrowed until the
 * next cache call. Entries are per tenant: one tenant's "pima" is not another's. */
maas_err cache_get(worker *w, const char *tenant, const char *name, const char *ref,
                   cache_entry **entry, char *errstr, size_t errstr_size);

/* metrics.c */
void metrics_init(metrics *m);
void metrics_job(metrics *m, maas_job_type type, job_outcome outcome);
void metrics_queue_time(metrics *m, int infer, double seconds);
void metrics_compute_time(metrics *m, maas_job_type type, double seconds);
void metrics_batch(metrics *m, int jobs);
/* Adds a final job's cost to its (tenant, model, type) totals. */
void metrics_cost(metrics *m, const char *tenant, const char *model, maas_job_type type,
                  const maas_job_cost *c);
void metrics_refresh(worker *w);
/* Probes Kafka once now, then every 5 s on a thread, into metrics.kafka_ok; stop joins it. */
void metrics_probe_start(worker *w);
void metrics_probe_stop(worker *w);
void metrics_http(void *ud, const maas_http_request *req, maas_http_response *res);

/* infer.c */
/* Runs a batch of inference messages. Returns 1 if it kept msgs (their results are in
 * flight; infer_settle releases them), 0 if the caller releases them now. */
int process_infer_batch(worker *w, maas_message *msgs, int n);
/* Takes note of inference partitions newly assigned, at their first message in the batch:
 * where messages may be redeliveries (no broker request). */
void infer_take_assignments(worker *w, const maas_message *batch, int n);
/* Reads the replies of the batches in flight, if any: stores their offsets, or rewinds
 * their partitions after a Redis failure (then returns the error); releases the messages. */
maas_err infer_settle(worker *w);

/* work.c */
void start_work_job(worker *w, maas_message *msg);
void poll_work_task(worker *w);

#endif
