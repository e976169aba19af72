/*
 * How a job ends when it is not computed to success: failed (record + dead
 * letter, from the message's job_source), expired. The same for inference
 * (infer.c) and work jobs (work.c).
 */
#include "maas/base.h"
#include "maas/digest.h"
#include "maas/protocol.h"
#include "maas/strbuf.h"
#include "maas/train.h"
#include "worker.h"

#include <time.h>

void worker_tenant_of(const worker *w, const char *topic, char out[MAAS_TENANT_MAX + 1]) {
    if (maas_topic_tenant(w->cfg.topic_prefix, topic ? topic : "", out, NULL, 0)) out[0] = '\0';
}

maas_kv *worker_kv(worker *w, const char *tenant) {
    char e[MAAS_ERRSTR_SIZE];
    if (maas_kv_scope(w->kv, tenant, e, sizeof(e))) /* never for a subscribed topic's tenant */
        wlog(w, "error", NULL, "%s", e);
    return w->kv;
}

/* The kv handle in the scope of the tenant a job's message came from. */
static maas_kv *source_kv(worker *w, const job_source *src) {
    char tenant[MAAS_TENANT_MAX + 1];
    worker_tenant_of(w, src->topic, tenant);
    return worker_kv(w, tenant);
}

int job_ttl(const worker *w, const maas_job *j) {
    return j && j->ttl_s > 0 ? j->ttl_s : w->cfg.default_ttl_s;
}

/*
 * The message to the dead-letter topic, with the reason and its origin in headers; waits
 * for the broker's acknowledgement. A dead letter is always writable: a message over
 * DLQ_MAX_VALUE (under Kafka's default limit of ~1 MB, which a compressed batch or a
 * larger topic limit lets a message exceed) is cut to it, and one the topic still refuses
 * as too large goes with no value; either way the headers say so and carry the original
 * size and SHA-256, so the message can be found at its source offset.
 */
#define DLQ_MAX_VALUE (900 * 1000)

static maas_err dead_letter(worker *w, const char *id, const job_source *src, maas_err code,
                            const char *message) {
    char e[MAAS_ERRSTR_SIZE], part[16], off[32], size[32], cut[64] = "", sha[65];
    char tenant[MAAS_TENANT_MAX + 1], prefix[128], dlq[256];
    worker_tenant_of(w, src->topic, tenant); /* a tenant's dead letters stay its own */
    if (maas_tenant_topic_prefix(w->cfg.topic_prefix, tenant, prefix, sizeof(prefix), e,
                                 sizeof(e)) ||
        maas_topic_name(prefix, MAAS_TOPIC_DLQ, dlq, sizeof(dlq), e, sizeof(e)))
        snprintf(dlq, sizeof(dlq), "%s", w->topic_dlq);
    snprintf(part, sizeof(part), "%d", (int)src->partition);
    snprintf(off, sizeof(off), "%lld", (long long)src->offset);
    snprintf(size, sizeof(size), "%zu", src->raw_len);
    maas_sha256_hex(src->raw_len ? src->raw : "", src->raw_len, sha);
    size_t keep = src->raw_len > DLQ_MAX_VALUE ? DLQ_MAX_VALUE : src->raw_len;
    maas_setting h[] = {
        {"maas-error-code", maas_err_code(code)},
        {"maas-error-message", message},
        {"maas-job-id", id},
        {"maas-source-topic", src->topic},
        {"maas-source-partition", part},
        {"maas-source-offset", off},
        {"maas-source-size", size},
        {"maas-source-sha256", sha},
        {"maas-worker", w->cfg.id},
        {"maas-truncated", cut}, /* last: only sent when the value was cut */
    };
    int n = (int)MAAS_ARRAY_LEN(h) - 1;
    maas_err err;
    for (int tries = 0;; tries++) {
        if (keep < src->raw_len) {
            snprintf(cut, sizeof(cut), "%zu of %zu bytes", keep, src->raw_len);
            n = (int)MAAS_ARRAY_LEN(h);
        }
        err = maas_producer_send_wait(w->producer, dlq, id, strlen(id), keep ? src->raw : "", keep,
                                      h, n, 10000, e, sizeof(e));
        if (err != MAAS_ERR_LIMIT_EXCEEDED || keep == 0 || tries > 0) break;
        keep = 0; /* the topic's limit is lower still: the headers alone */
    }
    if (err) wlog(w, "error", id[0] ? id : NULL, "cannot dead-letter the job: %s", e);
    return err;
}

maas_err job_reject(worker *w, const char *id, const job_source *src, maas_err code,
                    const char *why) {
    wlog(w, "warn", id, "rejected: %s: %s", maas_err_code(code), why);
    w->jobs_failed++;
    metrics_job(&w->metrics, MAAS_JOBTYPE_NONE, OUT_FAILED);
    return dead_letter(w, id, src, code, why);
}

/*
 * A permanent failure: the record says failed (when the id is known) and the
 * message goes to the dead-letter topic with the reason in its headers.
 * Returns an error when that outcome is not durable (Redis or Kafka could not
 * take it): the caller then rewinds to the job.
 */
void job_queue_cost(const maas_job *j, maas_job_cost *c) {
    memset(c, 0, sizeof(*c));
    int64_t now = maas_wall_ms();
    if (j && j->created_ms > 0 && now > j->created_ms)
        c->queue_s = (double)(now - j->created_ms) / 1e3;
}

maas_err job_fail(worker *w, const maas_job *j, const job_source *src, maas_err code,
                  const char *message) {
    return job_fail_cost(w, j, src, code, message, NULL);
}

maas_err job_fail_cost(worker *w, const maas_job *j, const job_source *src, maas_err code,
                       const char *message, const maas_job_cost *cost) {
    char e[MAAS_ERRSTR_SIZE];
    maas_job_cost queued;
    if (!cost) {
        job_queue_cost(j, &queued);
        cost = &queued;
    }
    if (j && j->id[0]) {
        char tenant[MAAS_TENANT_MAX + 1];
        worker_tenant_of(w, src->topic, tenant);
        metrics_cost(&w->metrics, tenant, j->model.name, j->type, cost);
    }
    maas_err err = MAAS_OK;
    const char *id = j && j->id[0] ? j->id : "";
    wlog(w, "warn", id[0] ? id : NULL, "job failed: %s: %s", maas_err_code(code), message);
    w->jobs_failed++;
    metrics_job(&w->metrics, j ? j->type : MAAS_JOBTYPE_NONE, OUT_FAILED);
    if (id[0]) {
        maas_job_record rec;
        maas_job_record_of_message(j, src->raw, src->raw_len, &rec);
        maas_job_update u = {.to = MAAS_JOB_FAILED,
                             .from_mask = JOB_FROM_ACTIVE,
                             .worker = w->cfg.id,
                             .error_code = maas_err_code(code),
                             .error_message = message,
                             .ttl_s = job_ttl(w, j),
                             .notify = j->notify,
                             .create = &rec,
                             .cost = cost};
        err = maas_kv_job_transition(source_kv(w, src), id, &u, e, sizeof(e));
        if (err == MAAS_ERR_CONFLICT) err = MAAS_OK; /* already final: a redelivery */
        if (err == MAAS_ERR_MISMATCH) {              /* another job's record: left alone */
            wlog(w, "warn", id, "%s", e);
            return dead_letter(w, id, src, MAAS_ERR_MISMATCH, e);
        }
        if (err) {
            wlog(w, "error", id, "cannot record the failure: %s", e);
            /* Redis down: retry it all later. Redis refusing this record for good (its key
             * broken): the dead letter is then the job's only trace, so it still goes. */
            if (maas_err_retriable(err)) return err;
        }
    }
    return dead_letter(w, id, src, code, message);
}

/*
 * The deadline passed before the job was computed: its record says expired
 * (created if the job had none), logged and counted. An already final record
 * is fine (a redelivery). Returns a retriable error when Redis could not take it.
 */
maas_err job_expire(worker *w, const maas_job *j, const job_source *src) {
    char e[MAAS_ERRSTR_SIZE];
    maas_job_cost queued;
    job_queue_cost(j, &queued);
    maas_job_record rec;
    maas_job_record_of_message(j, src->raw, src->raw_len, &rec);
    maas_job_update u = {.to = MAAS_JOB_EXPIRED,
                         .from_mask = JOB_FROM_ACTIVE,
                         .error_code = "EXPIRED",
                         .error_message = "the deadline passed before a worker took it",
                         .ttl_s = job_ttl(w, j),
                         .notify = j->notify,
                         .create = &rec,
                         .cost = &queued};
    maas_err err = maas_kv_job_transition(source_kv(w, src), j->id, &u, e, sizeof(e));
    if (err == MAAS_ERR_CONFLICT) err = MAAS_OK;
    if (err == MAAS_ERR_MISMATCH) return job_reject(w, j->id, src, MAAS_ERR_MISMATCH, e);
    if (err) {
        wlog(w, "error", j->id, "cannot record the expiry: %s", e);
        return err;
    }
    char tenant[MAAS_TENANT_MAX + 1];
    worker_tenant_of(w, src->topic, tenant);
    metrics_cost(&w->metrics, tenant, j->model.name, j->type, &queued);
    wlog(w, "info", j->id, "expired before it was computed");
    metrics_job(&w->metrics, j->type, OUT_EXPIRED);
    return MAAS_OK;
}
