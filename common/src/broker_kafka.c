/* The Kafka adapter (the only file that includes rdkafka.h). */
#define _GNU_SOURCE /* pthread_timedjoin_np */
#include "maas/base.h"
#include "maas/broker.h"
#include "maas/clock.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <time.h>

/* Applies defaults, then "kafka.*" settings (prefix removed) on top. */
static rd_kafka_conf_t *make_conf(const char *brokers, const char *const *defaults,
                                  const maas_setting *settings, int n_settings, char *errstr,
                                  size_t errstr_size) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[512];
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)) != RD_KAFKA_CONF_OK)
        goto bad;
    for (int i = 0; defaults && defaults[i]; i += 2)
        if (rd_kafka_conf_set(conf, defaults[i], defaults[i + 1], err, sizeof(err)) !=
            RD_KAFKA_CONF_OK)
            goto bad;
    for (int i = 0; i < n_settings; i++) {
        if (strncmp(settings[i].key, "kafka.", 6) != 0) continue;
        if (rd_kafka_conf_set(conf, settings[i].key + 6, settings[i].value, err, sizeof(err)) !=
            RD_KAFKA_CONF_OK)
            goto bad;
    }
    return conf;
bad:
    rd_kafka_conf_destroy(conf);
    maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT, "kafka setting: %s", err);
    return NULL;
}

maas_err maas_kafka_check_settings(const char *brokers, const maas_setting *settings,
                                   int n_settings, char *errstr, size_t errstr_size) {
    rd_kafka_conf_t *conf = make_conf(brokers, NULL, settings, n_settings, errstr, errstr_size);
    if (!conf) return MAAS_ERR_INVALID_ARGUMENT;
    rd_kafka_conf_destroy(conf);
    return MAAS_OK;
}

static rd_kafka_t *make_client(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *errstr,
                               size_t errstr_size) {
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT, "kafka client: %s", err);
    }
    return rk; /* rd_kafka_new owns conf on success */
}

static maas_err map_err(rd_kafka_resp_err_t e) {
    switch (e) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return MAAS_OK;
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
        return MAAS_ERR_TIMEOUT;
    case RD_KAFKA_RESP_ERR__STATE:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID:
    case RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION:
        return MAAS_ERR_CONFLICT;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
        return MAAS_ERR_LIMIT_EXCEEDED;
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return MAAS_ERR_INVALID_ARGUMENT;
    default:
        return MAAS_ERR_UNAVAILABLE;
    }
}

/* A short-lived producer handle for admin and metadata requests. */
static rd_kafka_t *admin_client(const char *brokers, const maas_setting *s, int n, char *errstr,
                                size_t errstr_size) {
    static const char *const defaults[] = {"log_level", "3", NULL};
    rd_kafka_conf_t *conf = make_conf(brokers, defaults, s, n, errstr, errstr_size);
    return conf ? make_client(RD_KAFKA_PRODUCER, conf, errstr, errstr_size) : NULL;
}

maas_err maas_kafka_wait_ready(const char *brokers, const maas_setting *settings, int n_settings,
                               int timeout_ms, char *errstr, size_t errstr_size) {
    rd_kafka_t *rk = admin_client(brokers, settings, n_settings, errstr, errstr_size);
    if (!rk) return MAAS_ERR_INVALID_ARGUMENT;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
    maas_err err = MAAS_OK;
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        err = maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE,
                        "kafka at %s did not answer a metadata request: %s", brokers,
                        rd_kafka_err2str(e));
    else if (md->broker_cnt < 1)
        err = maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE, "kafka at %s lists no brokers",
                        brokers);
    if (md) rd_kafka_metadata_destroy(md);
    rd_kafka_destroy(rk);
    return err;
}

maas_err maas_kafka_topic_partitions(const char *brokers, const maas_setting *settings,
                                     int n_settings, const char *topic, int *partitions,
                                     int timeout_ms, char *errstr, size_t errstr_size) {
    rd_kafka_t *rk = admin_client(brokers, settings, n_settings, errstr, errstr_size);
    if (!rk) return MAAS_ERR_INVALID_ARGUMENT;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    maas_err err = MAAS_OK;
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 || md->topics[0].err)
        err = maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE, "topic '%s': %s", topic,
                        rd_kafka_err2str(e ? e : md->topics[0].err));
    else
        *partitions = md->topics[0].partition_cnt;
    if (md) rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return err;
}

/*
 * The outcome of a topic admin request (CreateTopics, DeleteTopics) from its result event
 * (NULL: none came): the first topic's error other than `fine` (already exists, unknown).
 */
static maas_err topics_outcome(rd_kafka_event_t *ev, const rd_kafka_topic_result_t **tr, size_t cnt,
                               rd_kafka_resp_err_t fine, const char *what, const char *brokers,
                               char *errstr, size_t errstr_size) {
    if (!ev || !tr)
        return maas_errf(errstr, errstr_size, MAAS_ERR_TIMEOUT, "kafka at %s did not answer %s",
                         brokers, what);
    if (rd_kafka_event_error(ev))
        return maas_errf(errstr, errstr_size, map_err(rd_kafka_event_error(ev)), "%s: %s", what,
                         rd_kafka_event_error_string(ev));
    for (size_t i = 0; i < cnt; i++) {
        rd_kafka_resp_err_t te = rd_kafka_topic_result_error(tr[i]);
        if (te && te != fine)
            return maas_errf(errstr, errstr_size, map_err(te), "topic '%s': %s",
                             rd_kafka_topic_result_name(tr[i]),
                             rd_kafka_topic_result_error_string(tr[i]));
    }
    return MAAS_OK;
}

maas_err maas_kafka_add_partitions(const char *brokers, const maas_setting *settings,
                                   int n_settings, const char *topic, int total, int timeout_ms,
                                   char *errstr, size_t errstr_size) {
    rd_kafka_t *rk = admin_client(brokers, settings, n_settings, errstr, errstr_size);
    if (!rk) return MAAS_ERR_INVALID_ARGUMENT;
    char e[512];
    maas_err err = MAAS_OK;
    rd_kafka_NewPartitions_t *np = rd_kafka_NewPartitions_new(topic, (size_t)total, e, sizeof(e));
    if (!np) {
        rd_kafka_destroy(rk);
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT, "topic '%s': %s", topic,
                         e);
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opt =
        rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATEPARTITIONS);
    rd_kafka_AdminOptions_set_operation_timeout(opt, timeout_ms, e, sizeof(e));
    rd_kafka_CreatePartitions(rk, &np, 1, opt, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 2000);
    const rd_kafka_CreatePartitions_result_t *res =
        ev ? rd_kafka_event_CreatePartitions_result(ev) : NULL;
    size_t cnt = 0;
    const rd_kafka_topic_result_t **tr =
        res ? rd_kafka_CreatePartitions_result_topics(res, &cnt) : NULL;
    err = topics_outcome(ev, tr, cnt, RD_KAFKA_RESP_ERR_NO_ERROR, "CreatePartitions", brokers,
                         errstr, errstr_size);
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewPartitions_destroy(np);
    rd_kafka_destroy(rk);
    return err;
}

maas_err maas_kafka_delete_topics(const char *brokers, const maas_setting *settings, int n_settings,
                                  const char *const *topics, int n_topics, int timeout_ms,
                                  char *errstr, size_t errstr_size) {
    if (n_topics < 1 || n_topics > 64)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT, "1..64 topics, got %d",
                         n_topics);
    rd_kafka_t *rk = admin_client(brokers, settings, n_settings, errstr, errstr_size);
    if (!rk) return MAAS_ERR_INVALID_ARGUMENT;
    rd_kafka_DeleteTopic_t *dt[64];
    for (int i = 0; i < n_topics; i++) dt[i] = rd_kafka_DeleteTopic_new(topics[i]);
    char e[512];
    maas_err err = MAAS_OK;
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DELETETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(opt, timeout_ms, e, sizeof(e));
    rd_kafka_DeleteTopics(rk, dt, (size_t)n_topics, opt, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 2000);
    const rd_kafka_DeleteTopics_result_t *res = ev ? rd_kafka_event_DeleteTopics_result(ev) : NULL;
    size_t cnt = 0;
    const rd_kafka_topic_result_t **tr =
        res ? rd_kafka_DeleteTopics_result_topics(res, &cnt) : NULL;
    err = topics_outcome(ev, tr, cnt, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, "DeleteTopics",
                         brokers, errstr, errstr_size);
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_queue_destroy(q);
    for (int i = 0; i < n_topics; i++) rd_kafka_DeleteTopic_destroy(dt[i]);
    rd_kafka_destroy(rk);
    return err;
}

maas_err maas_kafka_grant_prefix(const char *brokers, const maas_setting *settings, int n_settings,
                                 const char *principal, const char *topic_prefix,
                                 const char *group_prefix, int timeout_ms, char *errstr,
                                 size_t errstr_size) {
    rd_kafka_t *rk = admin_client(brokers, settings, n_settings, errstr, errstr_size);
    if (!rk) return MAAS_ERR_INVALID_ARGUMENT;
    /* its topics: produce (WRITE, DESCRIBE) and read back (READ: its dead letters); its
     * consumer groups: READ */
    static const rd_kafka_AclOperation_t topic_ops[] = {
        RD_KAFKA_ACL_OPERATION_WRITE, RD_KAFKA_ACL_OPERATION_DESCRIBE, RD_KAFKA_ACL_OPERATION_READ};
    rd_kafka_AclBinding_t *acl[4];
    int n = 0;
    char e[512];
    maas_err err = MAAS_OK;
    for (size_t i = 0; i < MAAS_ARRAY_LEN(topic_ops) + 1 && !err; i++) {
        int group = i == MAAS_ARRAY_LEN(topic_ops);
        acl[n] = rd_kafka_AclBinding_new(group ? RD_KAFKA_RESOURCE_GROUP : RD_KAFKA_RESOURCE_TOPIC,
                                         group ? group_prefix : topic_prefix,
                                         RD_KAFKA_RESOURCE_PATTERN_PREFIXED, principal, "*",
                                         group ? RD_KAFKA_ACL_OPERATION_READ : topic_ops[i],
                                         RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW, e, sizeof(e));
        if (!acl[n])
            err = maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT, "ACL for %s: %s",
                            principal, e);
        else
            n++;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATEACLS);
    rd_kafka_AdminOptions_set_request_timeout(opt, timeout_ms, e, sizeof(e));
    if (!err) {
        rd_kafka_CreateAcls(rk, acl, (size_t)n, opt, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 2000);
        const rd_kafka_CreateAcls_result_t *res = ev ? rd_kafka_event_CreateAcls_result(ev) : NULL;
        if (!ev || !res) {
            err = maas_errf(errstr, errstr_size, MAAS_ERR_TIMEOUT,
                            "kafka at %s did not answer CreateAcls", brokers);
        } else if (rd_kafka_event_error(ev)) {
            rd_kafka_resp_err_t code = rd_kafka_event_error(ev);
            err = maas_errf(errstr, errstr_size,
                            code == RD_KAFKA_RESP_ERR_SECURITY_DISABLED ? MAAS_ERR_UNSUPPORTED
                                                                        : map_err(code),
                            "CreateAcls: %s", rd_kafka_event_error_string(ev));
        } else {
            size_t cnt;
            const rd_kafka_acl_result_t **ar = rd_kafka_CreateAcls_result_acls(res, &cnt);
            for (size_t i = 0; i < cnt && !err; i++) {
                const rd_kafka_error_t *ae = rd_kafka_acl_result_error(ar[i]);
                if (!ae) continue;
                rd_kafka_resp_err_t code = rd_kafka_error_code(ae);
                err = maas_errf(errstr, errstr_size,
                                code == RD_KAFKA_RESP_ERR_SECURITY_DISABLED ? MAAS_ERR_UNSUPPORTED
                                                                            : map_err(code),
                                "CreateAcls for %s: %s: %.120s", principal, rd_kafka_err2name(code),
                                rd_kafka_error_string(ae));
            }
        }
        if (ev) rd_kafka_event_destroy(ev);
    }
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_queue_destroy(q);
    for (int i = 0; i < n; i++) rd_kafka_AclBinding_destroy(acl[i]);
    rd_kafka_destroy(rk);
    return err;
}

maas_err maas_kafka_revoke(const char *brokers, const maas_setting *settings, int n_settings,
                           const char *principal, int timeout_ms, char *errstr,
                           size_t errstr_size) {
    rd_kafka_t *rk = admin_client(brokers, settings, n_settings, errstr, errstr_size);
    if (!rk) return MAAS_ERR_INVALID_ARGUMENT;
    char e[512];
    rd_kafka_AclBindingFilter_t *f = rd_kafka_AclBindingFilter_new(
        RD_KAFKA_RESOURCE_ANY, NULL, RD_KAFKA_RESOURCE_PATTERN_ANY, principal, NULL,
        RD_KAFKA_ACL_OPERATION_ANY, RD_KAFKA_ACL_PERMISSION_TYPE_ANY, e, sizeof(e));
    maas_err err =
        f ? MAAS_OK
          : maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT, "ACL filter: %s", e);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DELETEACLS);
    rd_kafka_AdminOptions_set_request_timeout(opt, timeout_ms, e, sizeof(e));
    if (!err) {
        rd_kafka_DeleteAcls(rk, &f, 1, opt, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 2000);
        const rd_kafka_DeleteAcls_result_t *res = ev ? rd_kafka_event_DeleteAcls_result(ev) : NULL;
        size_t cnt = 0;
        const rd_kafka_DeleteAcls_result_response_t **rr =
            res ? rd_kafka_DeleteAcls_result_responses(res, &cnt) : NULL;
        const rd_kafka_error_t *re = cnt ? rd_kafka_DeleteAcls_result_response_error(rr[0]) : NULL;
        rd_kafka_resp_err_t code = !ev || !res                ? RD_KAFKA_RESP_ERR__TIMED_OUT
                                   : rd_kafka_event_error(ev) ? rd_kafka_event_error(ev)
                                   : re                       ? rd_kafka_error_code(re)
                                                              : RD_KAFKA_RESP_ERR_NO_ERROR;
        if (code == RD_KAFKA_RESP_ERR_SECURITY_DISABLED)
            err = maas_errf(errstr, errstr_size, MAAS_ERR_UNSUPPORTED, "the broker has no ACLs");
        else if (code)
            err = maas_errf(errstr, errstr_size, map_err(code), "DeleteAcls for %s: %s", principal,
                            rd_kafka_err2str(code));
        if (ev) rd_kafka_event_destroy(ev);
    }
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_queue_destroy(q);
    if (f) rd_kafka_AclBinding_destroy(f);
    rd_kafka_destroy(rk);
    return err;
}

maas_err maas_kafka_create_topics(const char *brokers, const maas_setting *settings, int n_settings,
                                  const maas_topic_spec *topics, int n_topics, int replication,
                                  int timeout_ms, char *errstr, size_t errstr_size) {
    if (n_topics < 1 || n_topics > 64)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT, "1..64 topics, got %d",
                         n_topics);
    rd_kafka_t *rk = admin_client(brokers, settings, n_settings, errstr, errstr_size);
    if (!rk) return MAAS_ERR_INVALID_ARGUMENT;
    rd_kafka_NewTopic_t *nt[64];
    maas_err err = MAAS_OK;
    char e[512];
    int made = 0;
    for (; made < n_topics; made++) {
        nt[made] = rd_kafka_NewTopic_new(topics[made].name, topics[made].partitions,
                                         replication < 1 ? 1 : replication, e, sizeof(e));
        if (!nt[made]) {
            err = maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT, "topic '%s': %s",
                            topics[made].name, e);
            break;
        }
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(opt, timeout_ms, e, sizeof(e));
    if (!err) {
        rd_kafka_CreateTopics(rk, nt, (size_t)n_topics, opt, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 2000);
        const rd_kafka_CreateTopics_result_t *res =
            ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
        size_t cnt = 0;
        const rd_kafka_topic_result_t **tr =
            res ? rd_kafka_CreateTopics_result_topics(res, &cnt) : NULL;
        err = topics_outcome(ev, tr, cnt, RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS, "CreateTopics",
                             brokers, errstr, errstr_size);
        if (ev) rd_kafka_event_destroy(ev);
    }
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_queue_destroy(q);
    for (int i = 0; i < made; i++) rd_kafka_NewTopic_destroy(nt[i]);
    rd_kafka_destroy(rk);
    /* CreateTopics answers once the controller has the topics; a broker's metadata may
     * still say "unknown topic" for a moment after (seen on a fresh KRaft broker). Wait
     * until every topic is visible with its partitions, within the same timeout, so that
     * the next produce, subscribe or metadata request finds it. */
    int64_t until = maas_mono_ms() + timeout_ms;
    for (int i = 0; !err && i < n_topics; i++) {
        int parts = 0;
        maas_err te;
        while ((te = maas_kafka_topic_partitions(brokers, settings, n_settings, topics[i].name,
                                                 &parts, 2000, errstr, errstr_size)) != MAAS_OK &&
               maas_mono_ms() < until) {
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (te) err = te;
    }
    return err;
}

/* ---- producer ---- */

/* The report maas_producer_send_wait waits for. */
typedef struct sync_report {
    int done;
    rd_kafka_resp_err_t err;
} sync_report;

/* Topics a producer looks up itself, before its first message to each (topic_warm). */
#define PRODUCER_TOPICS 256

struct maas_producer {
    rd_kafka_t *rk;
    maas_delivery_fn on_delivery;
    void *ud;
    sync_report *waiting; /* the message send_wait waits for (its opaque), or NULL */
    pthread_mutex_t lock; /* topics: producers are shared by the coordinator's threads */
    int n_topics;
    char *topics[PRODUCER_TOPICS];
};

/*
 * librdkafka 2.0 looks up a topic a producer has not used yet once a second, so the first
 * message to each topic after the first waited up to 1 s (measured ~980 ms: a coordinator's
 * first inference job after a training job, a worker's first dead letter, a client's first
 * job to a second topic). One metadata request for the topic instead, once: ~1 ms. Past
 * PRODUCER_TOPICS topics, new ones are left to librdkafka's own lookup.
 */
static void topic_warm(maas_producer *p, const char *topic) {
    pthread_mutex_lock(&p->lock);
    int known = 0;
    for (int i = 0; i < p->n_topics && !known; i++) known = !strcmp(p->topics[i], topic);
    int add = !known && p->n_topics < PRODUCER_TOPICS && (p->topics[p->n_topics] = strdup(topic));
    if (add) p->n_topics++;
    pthread_mutex_unlock(&p->lock);
    if (!add) return;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(p->rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    if (rkt && rd_kafka_metadata(p->rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR && md)
        rd_kafka_metadata_destroy(md);
    if (rkt) rd_kafka_topic_destroy(rkt);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    maas_producer *p = opaque;
    if (p->waiting && m->_private == p->waiting) {
        p->waiting->done = 1;
        p->waiting->err = m->err;
        return;
    }
    if (!p->on_delivery) return;
    char err[256] = "";
    if (m->err) snprintf(err, sizeof(err), "delivery failed: %s", rd_kafka_err2str(m->err));
    p->on_delivery(p->ud, m->_private, map_err(m->err), err, m->partition, m->offset);
}

maas_producer *maas_producer_new(const char *brokers, const maas_setting *settings, int n_settings,
                                 maas_delivery_fn on_delivery, void *ud, char *errstr,
                                 size_t errstr_size) {
    static const char *const defaults[] = {
        "enable.idempotence", "true", "acks", "all", "linger.ms", "1", "log_level", "4", NULL};
    maas_producer *p = calloc(1, sizeof(*p));
    if (!p) {
        maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    rd_kafka_conf_t *conf = make_conf(brokers, defaults, settings, n_settings, errstr, errstr_size);
    if (!conf) {
        free(p);
        return NULL;
    }
    p->on_delivery = on_delivery;
    p->ud = ud;
    pthread_mutex_init(&p->lock, NULL);
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    p->rk = make_client(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (!p->rk) {
        pthread_mutex_destroy(&p->lock);
        free(p);
        return NULL;
    }
    return p;
}

maas_err maas_producer_send(maas_producer *p, const char *topic, const void *key, size_t key_len,
                            const void *value, size_t value_len, void *msg_opaque, char *errstr,
                            size_t errstr_size) {
    topic_warm(p, topic);
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY((void *)key, key_len),
        RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(p->rk, 100); /* make room by serving reports, then try once more */
        e = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY((void *)key, key_len),
                              RD_KAFKA_V_VALUE((void *)value, value_len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
    }
    if (e)
        return maas_errf(errstr, errstr_size, map_err(e), "produce to '%s': %s", topic,
                         rd_kafka_err2str(e));
    return MAAS_OK;
}

maas_err maas_producer_send_wait(maas_producer *p, const char *topic, const void *key,
                                 size_t key_len, const void *value, size_t value_len,
                                 const maas_setting *headers, int n_headers, int timeout_ms,
                                 char *errstr, size_t errstr_size) {
    rd_kafka_headers_t *h = rd_kafka_headers_new((size_t)n_headers);
    for (int i = 0; i < n_headers; i++)
        rd_kafka_header_add(h, headers[i].key, -1, headers[i].value, -1);
    sync_report rep = {0, RD_KAFKA_RESP_ERR_NO_ERROR};
    topic_warm(p, topic);
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY((void *)key, key_len),
        RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(&rep), RD_KAFKA_V_END);
    if (e) {
        rd_kafka_headers_destroy(h); /* only freed by us when producev failed */
        return maas_errf(errstr, errstr_size, map_err(e), "produce to '%s': %s", topic,
                         rd_kafka_err2str(e));
    }
    p->waiting = &rep;
    /* Wait for this report: on a timeout, purge what is queued, so that the report (now
     * "purged") still comes before rep goes out of scope. */
    for (int waited = 0; !rep.done && waited < timeout_ms; waited += 50) rd_kafka_poll(p->rk, 50);
    if (!rep.done) {
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        while (!rep.done) rd_kafka_poll(p->rk, 50);
    }
    p->waiting = NULL;
    if (rep.err)
        return maas_errf(errstr, errstr_size,
                         rep.err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
                                 rep.err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT
                             ? MAAS_ERR_TIMEOUT
                             : map_err(rep.err),
                         "deliver to '%s': %s", topic, rd_kafka_err2str(rep.err));
    return MAAS_OK;
}

int maas_producer_poll(maas_producer *p, int timeout_ms) {
    return rd_kafka_poll(p->rk, timeout_ms);
}

maas_err maas_producer_flush(maas_producer *p, int timeout_ms, char *errstr, size_t errstr_size) {
    rd_kafka_resp_err_t e = rd_kafka_flush(p->rk, timeout_ms);
    if (e)
        return maas_errf(errstr, errstr_size, MAAS_ERR_TIMEOUT,
                         "%d messages still undelivered after %d ms", rd_kafka_outq_len(p->rk),
                         timeout_ms);
    return MAAS_OK;
}

void maas_producer_free(maas_producer *p) {
    if (!p) return;
    rd_kafka_flush(p->rk, 10000);
    rd_kafka_destroy(p->rk);
    for (int i = 0; i < p->n_topics; i++) free(p->topics[i]);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* ---- consumer ---- */

struct maas_consumer {
    rd_kafka_t *rk;
    long rebalances;
    double last_rebalance; /* maas_mono_s() of the last assignment or revocation; 0: none */
    rd_kafka_topic_partition_list_t *fresh; /* assigned, no message delivered since */
    int incremental;                        /* a cooperative assignor: incremental (un)assign */
};

/*
 * Assignments, counted; the partitions assigned are remembered for
 * maas_consumer_fresh_range until their first message. Runs on the polling thread. Incremental
 * (cooperative-sticky, the default): a rebalance moves only the partitions that change owner, so
 * the others keep flowing — a new tenant's topics, found by the pattern subscription, do not stall
 * every worker's inference. Eager (a group configured so): everything is revoked, then assigned.
 */
static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    maas_consumer *c = opaque;
    c->rebalances++;
    c->last_rebalance = maas_mono_s();
    /* the protocol as configured, not rd_kafka_rebalance_protocol(): that asks the group
     * thread and can wait forever when the consumer closes while its topics are deleted
     * (librdkafka #4041) - the worker's stop right after a tenant's deletion */
    int incremental = c->incremental;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (incremental) {
            rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, parts);
            if (e) rd_kafka_error_destroy(e); /* fatal for the consumer: its poll says so */
        } else {
            rd_kafka_assign(rk, parts);
        }
        if (!c->fresh) c->fresh = rd_kafka_topic_partition_list_new(parts->cnt);
        for (int i = 0; c->fresh && i < parts->cnt; i++)
            if (!rd_kafka_topic_partition_list_find(c->fresh, parts->elems[i].topic,
                                                    parts->elems[i].partition))
                rd_kafka_topic_partition_list_add(c->fresh, parts->elems[i].topic,
                                                  parts->elems[i].partition);
    } else if (incremental) {
        /* revoked: their stored offsets are committed first (auto commit) */
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
        if (e) rd_kafka_error_destroy(e);
        for (int i = 0; c->fresh && i < parts->cnt; i++)
            rd_kafka_topic_partition_list_del(c->fresh, parts->elems[i].topic,
                                              parts->elems[i].partition);
    } else {
        rd_kafka_assign(rk, NULL); /* revoked: commits stored offsets first (auto commit) */
        if (c->fresh) {
            rd_kafka_topic_partition_list_destroy(c->fresh);
            c->fresh = NULL;
        }
    }
}

int maas_consumer_fresh_range(maas_consumer *c, const maas_message *m, maas_offset_range *out) {
    if (!c->fresh || !c->fresh->cnt) return 0;
    if (!rd_kafka_topic_partition_list_del(c->fresh, m->topic, m->partition)) return 0;
    /* the end the fetch that brought m reported: at or after the end at the assignment, so
     * the range holds every message another member may have been given (a later end only
     * counts a few more); no request, so the first job after a rebalance waits for nothing */
    int64_t lo = 0, hi = -1;
    if (rd_kafka_get_watermark_offsets(c->rk, m->topic, m->partition, &lo, &hi) || hi <= m->offset)
        hi = rd_kafka_query_watermark_offsets(c->rk, m->topic, m->partition, &lo, &hi, 5000)
                 ? INT64_MAX /* unknown: every message counted, none missed */
                 : hi;
    snprintf(out->topic, sizeof(out->topic), "%s", m->topic);
    out->partition = m->partition;
    out->from = m->offset; /* the first message since the assignment: where the group was */
    out->to = hi > m->offset ? hi : m->offset + 1;
    return 1;
}

maas_consumer *maas_consumer_new(const char *brokers, const char *group_id,
                                 const char *const *topics, int n_topics,
                                 const maas_setting *settings, int n_settings, char *errstr,
                                 size_t errstr_size) {
    /* failover: a member that stops heartbeating (kill -9, a lost host) is out of the group
     * after 6 s, not librdkafka's 45 s; heartbeats come from librdkafka's own thread, so a
     * busy worker keeps its partitions; a network stall over 6 s costs a rebalance. 6 s is
     * also the broker's default minimum (group.min.session.timeout.ms). */
    const char *defaults[] = {
        "group.id", group_id, "enable.auto.commit", "true", "enable.auto.offset.store", "false",
        "auto.offset.reset", "earliest", "auto.commit.interval.ms", "1000", "session.timeout.ms",
        "6000", "heartbeat.interval.ms", "1000",
        /* a pattern subscription (every tenant's topics) sees a new
         * tenant's topics within 5 s, not librdkafka's 5 minutes */
        "topic.metadata.refresh.interval.ms", "5000", "partition.assignment.strategy",
        "cooperative-sticky", "enable.partition.eof", "false", "log_level", "4", NULL};
    maas_consumer *c = calloc(1, sizeof(*c));
    if (!c) {
        maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    rd_kafka_conf_t *conf = make_conf(brokers, defaults, settings, n_settings, errstr, errstr_size);
    if (conf) {
        rd_kafka_conf_set_opaque(conf, c);
        rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
        /* librdkafka wants every assignor of the list to speak one protocol */
        char strategy[256] = "";
        size_t n = sizeof(strategy);
        if (rd_kafka_conf_get(conf, "partition.assignment.strategy", strategy, &n) ==
            RD_KAFKA_CONF_OK)
            c->incremental = strstr(strategy, "cooperative") != NULL;
    }
    if (!conf || !(c->rk = make_client(RD_KAFKA_CONSUMER, conf, errstr, errstr_size))) {
        free(c);
        return NULL;
    }
    rd_kafka_poll_set_consumer(c->rk);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(n_topics);
    for (int i = 0; i < n_topics; i++)
        rd_kafka_topic_partition_list_add(sub, topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (e) {
        maas_errf(errstr, errstr_size, map_err(e), "subscribe: %s", rd_kafka_err2str(e));
        rd_kafka_destroy(c->rk);
        free(c);
        return NULL;
    }
    return c;
}

maas_err maas_consumer_poll(maas_consumer *c, int timeout_ms, maas_message *msg, char *errstr,
                            size_t errstr_size) {
    memset(msg, 0, sizeof(*msg));
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, timeout_ms);
    if (!m) return MAAS_OK;
    if (m->err) {
        maas_err err = maas_errf(errstr, errstr_size, map_err(m->err), "consume: %s",
                                 rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
        return err;
    }
    msg->topic = rd_kafka_topic_name(m->rkt);
    msg->partition = m->partition;
    msg->offset = m->offset;
    msg->key = m->key;
    msg->key_len = m->key_len;
    msg->value = m->payload;
    msg->value_len = m->len;
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    msg->timestamp_ms = ts > 0 ? ts : 0;
    msg->handle_ = m;
    return MAAS_OK;
}

int maas_message_header(const maas_message *msg, const char *name, char *out, size_t size) {
    if (size) out[0] = '\0';
    rd_kafka_headers_t *h = NULL;
    if (!msg->handle_ || rd_kafka_message_headers(msg->handle_, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    const void *v = NULL;
    size_t len = 0;
    if (rd_kafka_header_get_last(h, name, &v, &len) != RD_KAFKA_RESP_ERR_NO_ERROR) return 0;
    if (size) {
        size_t n = len < size - 1 ? len : size - 1;
        if (v) memcpy(out, v, n);
        out[n] = '\0';
    }
    return 1;
}

void maas_message_release(maas_message *msg) {
    if (msg && msg->handle_) rd_kafka_message_destroy(msg->handle_);
    if (msg) memset(msg, 0, sizeof(*msg));
}

maas_err maas_consumer_store(maas_consumer *c, const char *topic, int32_t partition,
                             int64_t next_offset, char *errstr, size_t errstr_size) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = next_offset;
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(c->rk, l);
    if (!e) e = l->elems[0].err;
    rd_kafka_topic_partition_list_destroy(l);
    if (e)
        return maas_errf(errstr, errstr_size, map_err(e), "store offset %s[%d]@%lld: %s", topic,
                         (int)partition, (long long)next_offset, rd_kafka_err2str(e));
    return MAAS_OK;
}

/*
 * Per (topic, partition) of msgs, the highest (want_max) or lowest offset, in a
 * partition list (the list is searched per message: a batch spans few partitions).
 */
static rd_kafka_topic_partition_list_t *offsets_of(const maas_message *const *msgs, int n,
                                                   int want_max) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n > 0 ? n : 1);
    for (int i = 0; i < n; i++) {
        const maas_message *m = msgs[i];
        rd_kafka_topic_partition_t *p =
            rd_kafka_topic_partition_list_find(l, m->topic, m->partition);
        if (!p) {
            rd_kafka_topic_partition_list_add(l, m->topic, m->partition)->offset = m->offset;
        } else if (want_max ? m->offset > p->offset : m->offset < p->offset) {
            p->offset = m->offset;
        }
    }
    return l;
}

maas_err maas_consumer_store_batch(maas_consumer *c, const maas_message *const *msgs, int n,
                                   char *errstr, size_t errstr_size) {
    if (n <= 0) return MAAS_OK;
    rd_kafka_topic_partition_list_t *l = offsets_of(msgs, n, 1);
    for (int i = 0; i < l->cnt; i++) l->elems[i].offset++; /* the next one to read */
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(c->rk, l);
    maas_err err = MAAS_OK;
    for (int i = 0; i < l->cnt && !err; i++) {
        rd_kafka_resp_err_t pe = e ? e : l->elems[i].err;
        if (pe)
            err = maas_errf(errstr, errstr_size, map_err(pe), "store offset %s[%d]@%lld: %s",
                            l->elems[i].topic, (int)l->elems[i].partition,
                            (long long)l->elems[i].offset, rd_kafka_err2str(pe));
    }
    rd_kafka_topic_partition_list_destroy(l);
    return err;
}

maas_err maas_consumer_rewind(maas_consumer *c, const maas_message *const *msgs, int n,
                              char *errstr, size_t errstr_size) {
    if (n <= 0) return MAAS_OK;
    rd_kafka_topic_partition_list_t *l = offsets_of(msgs, n, 0);
    maas_err err = MAAS_OK;
    for (int i = 0; i < l->cnt; i++) {
        maas_err e = maas_consumer_seek(c, l->elems[i].topic, l->elems[i].partition,
                                        l->elems[i].offset, errstr, errstr_size);
        if (e && !err) err = e; /* every partition is tried; the first error is reported */
    }
    rd_kafka_topic_partition_list_destroy(l);
    return err;
}

maas_err maas_consumer_commit(maas_consumer *c, char *errstr, size_t errstr_size) {
    rd_kafka_resp_err_t e = rd_kafka_commit(c->rk, NULL, 0);
    if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
        return maas_errf(errstr, errstr_size, map_err(e), "commit: %s", rd_kafka_err2str(e));
    return MAAS_OK;
}

maas_err maas_consumer_seek(maas_consumer *c, const char *topic, int32_t partition, int64_t offset,
                            char *errstr, size_t errstr_size) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
    rd_kafka_error_t *e = rd_kafka_seek_partitions(c->rk, l, 5000);
    rd_kafka_resp_err_t pe = l->elems[0].err;
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        maas_err err = maas_errf(errstr, errstr_size, MAAS_ERR_CONFLICT, "seek %s[%d]: %s", topic,
                                 (int)partition, rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return err;
    }
    if (pe)
        return maas_errf(errstr, errstr_size, map_err(pe), "seek %s[%d]: %s", topic, (int)partition,
                         rd_kafka_err2str(pe));
    return MAAS_OK;
}

maas_err maas_consumer_pause(maas_consumer *c, int pause, char *errstr, size_t errstr_size) {
    rd_kafka_topic_partition_list_t *l = NULL;
    rd_kafka_resp_err_t e = rd_kafka_assignment(c->rk, &l);
    if (!e) e = pause ? rd_kafka_pause_partitions(c->rk, l) : rd_kafka_resume_partitions(c->rk, l);
    if (l) rd_kafka_topic_partition_list_destroy(l);
    if (e)
        return maas_errf(errstr, errstr_size, map_err(e), "%s: %s", pause ? "pause" : "resume",
                         rd_kafka_err2str(e));
    return MAAS_OK;
}

long long maas_consumer_lag(maas_consumer *c) {
    rd_kafka_topic_partition_list_t *l = NULL;
    long long lag = 0;
    if (rd_kafka_assignment(c->rk, &l) || !l) return 0;
    rd_kafka_position(c->rk, l);
    for (int i = 0; i < l->cnt; i++) {
        int64_t lo, hi;
        if (rd_kafka_get_watermark_offsets(c->rk, l->elems[i].topic, l->elems[i].partition, &lo,
                                           &hi) ||
            hi < 0)
            continue;
        int64_t pos = l->elems[i].offset;
        if (pos >= 0 && hi > pos) lag += hi - pos;
    }
    rd_kafka_topic_partition_list_destroy(l);
    return lag;
}

long maas_consumer_rebalances(const maas_consumer *c) {
    return c->rebalances;
}

maas_err maas_consumer_ping(maas_consumer *c, int timeout_ms, char *errstr, size_t errstr_size) {
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(c->rk, 0, NULL, &md, timeout_ms);
    if (md) rd_kafka_metadata_destroy(md);
    if (e)
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE, "kafka: %s",
                         rd_kafka_err2str(e));
    return MAAS_OK;
}

double maas_consumer_settled_s(const maas_consumer *c) {
    return c->last_rebalance > 0 ? maas_mono_s() - c->last_rebalance : -1.0;
}

int maas_consumer_assigned(maas_consumer *c) {
    rd_kafka_topic_partition_list_t *l = NULL;
    int n = 0;
    if (rd_kafka_assignment(c->rk, &l) == RD_KAFKA_RESP_ERR_NO_ERROR && l) n = l->cnt;
    if (l) rd_kafka_topic_partition_list_destroy(l);
    return n;
}

/* How long leaving the group may take before the consumer is let go regardless. */
#define CONSUMER_CLOSE_MS 10000
/* ... and how long its threads may take to stop after that. */
#define CONSUMER_DESTROY_MS 5000

typedef struct destroy_call {
    rd_kafka_t *rk;
    int flags;
} destroy_call;

static void *destroy_main(void *p) {
    destroy_call *d = p;
    rd_kafka_destroy_flags(d->rk, d->flags);
    free(d);
    return NULL;
}

int maas_consumer_free(maas_consumer *c) {
    if (!c) return 0;
    /* Commits stored offsets and leaves the group, within CONSUMER_CLOSE_MS: a rebalance in
     * progress when the worker stops (a tenant's topics just deleted, under a pattern
     * subscription) held rd_kafka_consumer_close for over 30 s. Let go, the group finds out
     * by the session timeout, and uncommitted offsets mean redeliveries, which are harmless. */
    rd_kafka_queue_t *q = rd_kafka_queue_new(c->rk);
    rd_kafka_error_t *err = rd_kafka_consumer_close_queue(c->rk, q);
    int64_t until = maas_mono_ms() + CONSUMER_CLOSE_MS;
    if (err) {
        rd_kafka_error_destroy(err);
    } else {
        while (!rd_kafka_consumer_closed(c->rk) && maas_mono_ms() < until) {
            rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 100);
            if (ev && rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE)
                rebalance_cb(c->rk, rd_kafka_event_error(ev),
                             rd_kafka_event_topic_partition_list(ev), c);
            if (ev) rd_kafka_event_destroy(ev);
        }
    }
    int closed = rd_kafka_consumer_closed(c->rk);
    rd_kafka_queue_destroy(q);
    if (c->fresh) rd_kafka_topic_partition_list_destroy(c->fresh);
    /* rd_kafka_destroy joins librdkafka's threads, and a broker thread can stay up for good
     * after a group consumer's topics were deleted (seen: the worker's stop right after a
     * tenant's deletion, its main thread in pthread_join; librdkafka #4674 is alike): bounded
     * too, on a thread of its own, then let go (the process is on its way out). */
    int let_go = 0;
    destroy_call *d = malloc(sizeof(*d));
    pthread_t t;
    int flags = closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE;
    if (d && (d->rk = c->rk, d->flags = flags, pthread_create(&t, NULL, destroy_main, d) == 0)) {
        struct timespec until_ts;
        clock_gettime(CLOCK_REALTIME, &until_ts);
        until_ts.tv_sec += CONSUMER_DESTROY_MS / 1000;
        if (pthread_timedjoin_np(t, NULL, &until_ts) != 0) {
            pthread_detach(t);
            let_go = 1;
        }
    } else {
        free(d);
        rd_kafka_destroy_flags(c->rk, flags);
    }
    free(c);
    return let_go || !closed;
}
