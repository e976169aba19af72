/* The cluster client: one producer, one Redis handle, the submit protocol. See client.h. */
#include "maas/base.h"
#include "maas/broker.h"
#include "maas/client.h"
#include "maas/clock.h"
#include "maas/protocol.h"

#include <pthread.h>

struct maas_client {
    char *brokers, *redis_url, *prefix;
    const maas_setting *settings;
    int n_settings;
    maas_kv *kv;
    pthread_mutex_t lock; /* the producer's creation, deliveries, stats */
    pthread_cond_t delivered;
    maas_producer *producer; /* NULL until the first publish */
    maas_client_stats stats;
};

/*
 * One message's delivery report. The waiter and the delivery callback share
 * it; whichever comes second frees it, so a waiter that timed out never
 * leaves the callback a dangling pointer.
 */
typedef struct delivery {
    maas_client *c;
    int done;      /* the report arrived */
    int abandoned; /* the waiter gave up */
    maas_err err;
    char errstr[256];
} delivery;

static void on_delivery(void *ud, void *msg_opaque, maas_err err, const char *errstr,
                        int32_t partition, int64_t offset) {
    (void)partition;
    (void)offset;
    maas_client *c = ud;
    delivery *d = msg_opaque;
    if (!d) return;
    pthread_mutex_lock(&c->lock);
    if (d->abandoned) {
        pthread_mutex_unlock(&c->lock);
        free(d);
        return;
    }
    d->err = err;
    snprintf(d->errstr, sizeof(d->errstr), "%s", errstr ? errstr : "");
    d->done = 1;
    pthread_cond_broadcast(&c->delivered);
    pthread_mutex_unlock(&c->lock);
}

maas_client *maas_client_new(const maas_client_config *cfg, char *errstr, size_t errstr_size) {
    maas_client *c = calloc(1, sizeof(*c));
    if (!c) {
        maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->delivered, NULL);
    c->brokers = strdup(cfg->brokers ? cfg->brokers : "");
    c->redis_url = strdup(cfg->redis_url ? cfg->redis_url : "");
    c->prefix = strdup(cfg->topic_prefix ? cfg->topic_prefix : MAAS_TOPIC_PREFIX_DEFAULT);
    c->settings = cfg->settings;
    c->n_settings = cfg->n_settings;
    if (!c->brokers || !c->redis_url || !c->prefix) {
        maas_client_free(c);
        maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    if (!(c->kv = maas_kv_connect(c->redis_url, c->settings, c->n_settings, errstr, errstr_size))) {
        maas_client_free(c);
        return NULL;
    }
    return c;
}

maas_err maas_client_check(const maas_client_config *cfg, char *errstr, size_t errstr_size) {
    char topic[256];
    maas_err err =
        maas_topic_name(cfg->topic_prefix ? cfg->topic_prefix : MAAS_TOPIC_PREFIX_DEFAULT,
                        MAAS_TOPIC_INFER, topic, sizeof(topic), errstr, errstr_size);
    if (!err)
        err = maas_kv_check(cfg->redis_url, cfg->settings, cfg->n_settings, errstr, errstr_size);
    if (!err)
        err = maas_kafka_check_settings(cfg->brokers ? cfg->brokers : "", cfg->settings,
                                        cfg->n_settings, errstr, errstr_size);
    return err;
}

void maas_client_free(maas_client *c) {
    if (!c) return;
    maas_producer_free(c->producer); /* flushes: outstanding reports free their deliveries */
    maas_kv_free(c->kv);
    free(c->brokers);
    free(c->redis_url);
    free(c->prefix);
    pthread_cond_destroy(&c->delivered);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

maas_kv *maas_client_kv(maas_client *c) {
    return c->kv;
}

maas_err maas_client_topic(const maas_client *c, maas_job_type type, char *out, size_t size,
                           char *errstr, size_t errstr_size) {
    return maas_client_tenant_topic(c, maas_kv_tenant(c->kv),
                                    type == MAAS_JOBTYPE_INFER ? MAAS_TOPIC_INFER : MAAS_TOPIC_WORK,
                                    out, size, errstr, errstr_size);
}

maas_err maas_client_tenant_topic(const maas_client *c, const char *tenant, const char *suffix,
                                  char *out, size_t size, char *errstr, size_t errstr_size) {
    char prefix[128];
    maas_err err =
        maas_tenant_topic_prefix(c->prefix, tenant, prefix, sizeof(prefix), errstr, errstr_size);
    return err ? err : maas_topic_name(prefix, suffix, out, size, errstr, errstr_size);
}

void maas_client_stats_get(maas_client *c, maas_client_stats *out) {
    pthread_mutex_lock(&c->lock);
    *out = c->stats;
    pthread_mutex_unlock(&c->lock);
}

/* The producer, made on first use. */
static maas_producer *producer(maas_client *c, char *errstr, size_t errstr_size) {
    pthread_mutex_lock(&c->lock);
    if (!c->producer)
        c->producer = maas_producer_new(c->brokers, c->settings, c->n_settings, on_delivery, c,
                                        errstr, errstr_size);
    maas_producer *p = c->producer;
    pthread_mutex_unlock(&c->lock);
    return p;
}

/* Publishes and waits for the acknowledgement; no record is touched. */
static maas_err publish_wait(maas_client *c, const char *topic, const char *key, const void *buf,
                             size_t len, char *errstr, size_t errstr_size) {
    maas_producer *p = producer(c, errstr, errstr_size);
    if (!p) return MAAS_ERR_UNAVAILABLE;
    delivery *d = calloc(1, sizeof(*d));
    if (!d) return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    d->c = c;
    double t0 = maas_mono_s();
    maas_err err = maas_producer_send(p, topic, key, strlen(key), buf, len, d, errstr, errstr_size);
    if (err) {
        free(d); /* not queued: no report will come */
    } else {
        int64_t until = maas_mono_ms() + MAAS_CLIENT_PUBLISH_TIMEOUT_MS;
        pthread_mutex_lock(&c->lock);
        while (!d->done && maas_mono_ms() < until) {
            pthread_mutex_unlock(&c->lock);
            maas_producer_poll(p, 20); /* serves every waiter's reports, not only ours */
            pthread_mutex_lock(&c->lock);
        }
        if (!d->done) {
            d->abandoned = 1; /* the callback frees it when the report comes */
            err = maas_errf(errstr, errstr_size, MAAS_ERR_TIMEOUT,
                            "kafka did not acknowledge within %d s",
                            MAAS_CLIENT_PUBLISH_TIMEOUT_MS / 1000);
        } else {
            if (d->err) err = maas_errf(errstr, errstr_size, d->err, "%s", d->errstr);
            free(d);
        }
        pthread_mutex_unlock(&c->lock);
    }
    pthread_mutex_lock(&c->lock);
    c->stats.publishes++;
    c->stats.publish_seconds += maas_mono_s() - t0;
    c->stats.publish_failed += err != MAAS_OK;
    pthread_mutex_unlock(&c->lock);
    return err;
}

maas_err maas_client_publish(maas_client *c, maas_kv *kv, const char *topic, const char *id,
                             const void *msg, size_t len, int notify, char *errstr,
                             size_t errstr_size) {
    maas_err err = publish_wait(c, topic, id, msg, len, errstr, errstr_size);
    if (!err) return MAAS_OK;
    char e2[MAAS_ERRSTR_SIZE];
    maas_job_update u = {.to = MAAS_JOB_FAILED,
                         .from_mask = MAAS_JOB_FROM(MAAS_JOB_QUEUED),
                         .error_code = "UNAVAILABLE",
                         .error_message = errstr,
                         .notify = notify};
    maas_kv_job_transition(kv ? kv : c->kv, id, &u, e2, sizeof(e2));
    return err == MAAS_ERR_TIMEOUT ? MAAS_ERR_TIMEOUT : MAAS_ERR_UNAVAILABLE;
}

maas_err maas_client_submit(maas_client *c, maas_kv *kv, maas_job *j, unsigned flags,
                            maas_submit_info *info, char *errstr, size_t errstr_size) {
    maas_submit_info local;
    if (!info) info = &local;
    memset(info, 0, sizeof(*info));
    if (!kv) kv = c->kv;
    /* the tenant of kv's scope: its namespace in Redis is its topics in Kafka */
    maas_err err = maas_client_tenant_topic(
        c, maas_kv_tenant(kv), j->type == MAAS_JOBTYPE_INFER ? MAAS_TOPIC_INFER : MAAS_TOPIC_WORK,
        info->topic, sizeof(info->topic), errstr, errstr_size);
    if (err) return err;
    if (!j->created_ms) j->created_ms = maas_wall_ms();
    unsigned char *buf;
    size_t len;
    if ((err = maas_job_encode(j, &buf, &len, errstr, errstr_size))) return err;
    /* 1. the record (the id is an idempotency key) */
    maas_job_record rec;
    maas_job_record_of_message(j, buf, len, &rec);
    err = maas_kv_job_create(kv, &rec, j->ttl_s > 0 ? j->ttl_s : MAAS_JOB_TTL_DEFAULT_S, errstr,
                             errstr_size);
    if (err == MAAS_ERR_CONFLICT) {
        info->existed = 1;
        maas_job_record now = {0};
        int queued = (flags & MAAS_SUBMIT_REPUBLISH) &&
                     maas_kv_job_get(kv, j->id, &now, errstr, errstr_size) == MAAS_OK &&
                     now.state == MAAS_JOB_QUEUED;
        maas_job_record_release(&now);
        if (!queued) {
            free(buf);
            return MAAS_OK;
        }
        err = MAAS_OK;
    }
    /* 2. a work job's message is kept, for housekeeping to publish it again */
    if (!err && j->type != MAAS_JOBTYPE_INFER)
        err = maas_kv_job_message_put(kv, j->id, buf, len, j->ttl_s, errstr, errstr_size);
    /* 3-4. publish; a failure is recorded */
    if (!err)
        err = maas_client_publish(c, kv, info->topic, j->id, buf, len, j->notify, errstr,
                                  errstr_size);
    free(buf);
    if (err) return err;
    info->published = 1;
    if ((int)j->type >= 0 && (size_t)j->type < MAAS_ARRAY_LEN(c->stats.submitted)) {
        pthread_mutex_lock(&c->lock);
        c->stats.submitted[j->type]++;
        pthread_mutex_unlock(&c->lock);
    }
    return MAAS_OK;
}

maas_err maas_client_follow(maas_client *c, const char *id, int poll_ms, maas_follow_fn on_record,
                            void *ud, maas_job_state *state, char *errstr, size_t errstr_size) {
    *state = MAAS_JOB_UNKNOWN;
    while (1) {
        maas_job_state st;
        maas_err err = maas_kv_job_wait(c->kv, id, poll_ms, &st, errstr, errstr_size);
        if (err) return err;
        maas_job_record r;
        if ((err = maas_kv_job_get(c->kv, id, &r, errstr, errstr_size))) return err;
        *state = r.state;
        int stop = on_record ? on_record(ud, &r) : 0;
        maas_job_record_release(&r);
        if (stop || *state == MAAS_JOB_UNKNOWN || MAAS_JOB_FINAL(*state)) return MAAS_OK;
    }
}
