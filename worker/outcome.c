/*
 * How a job ends when it is not computed to success: failed (record + dead
 * letter, from the message's job_source), expired. The same for inference
 * (infer.c) and work jobs (work.c).
 */
#include "maas/base.h"
#include "maas/strbuf.h"
#include "maas/train.h"
#include "worker.h"

#include <time.h>

int job_ttl(const worker *w, const maas_job *j) {
    return j && j->ttl_s > 0 ? j->ttl_s : w->cfg.default_ttl_s;
}

/*
 * A permanent failure: the record says failed (when the id is known) and the
 * message goes to the dead-letter topic with the reason in its headers.
 * Returns a retriable error only when Redis or Kafka could not take it.
 */
maas_err job_fail(worker *w, const maas_job *j, const job_source *src, maas_err code,
                  const char *message) {
    char e[MAAS_ERRSTR_SIZE];
    maas_err err = MAAS_OK;
    const char *id = j && j->id[0] ? j->id : "";
    wlog(w, "warn", id[0] ? id : NULL, "job failed: %s: %s", maas_err_code(code), message);
    w->jobs_failed++;
    metrics_job(&w->metrics, j ? j->type : MAAS_JOBTYPE_NONE, OUT_FAILED);
    if (id[0]) {
        maas_job_record rec;
        maas_job_record_of(j, &rec);
        maas_job_update u = {.to = MAAS_JOB_FAILED,
                             .from_mask = JOB_FROM_ACTIVE,
                             .worker = w->cfg.id,
                             .error_code = maas_err_code(code),
                             .error_message = message,
                             .ttl_s = job_ttl(w, j),
                             .notify = j->notify,
                             .create = &rec};
        err = maas_kv_job_transition(w->kv, id, &u, e, sizeof(e));
        if (err == MAAS_ERR_CONFLICT) err = MAAS_OK; /* already final: a redelivery */
        if (err) {
            wlog(w, "error", id, "cannot record the failure: %s", e);
            /* Redis down: retry it all later. Redis refusing this record for good (its key
             * broken): the dead letter is then the job's only trace, so it still goes. */
            if (maas_err_retriable(err)) return err;
        }
    }
    char part[16], off[32];
    snprintf(part, sizeof(part), "%d", (int)src->partition);
    snprintf(off, sizeof(off), "%lld", (long long)src->offset);
    maas_setting h[] = {
        {"maas-error-code", maas_err_code(code)},
        {"maas-error-message", message},
        {"maas-job-id", id},
        {"maas-source-topic", src->topic},
        {"maas-source-partition", part},
        {"maas-source-offset", off},
        {"maas-worker", w->cfg.id},
    };
    err = maas_producer_send_headers(w->producer, w->topic_dlq, id, strlen(id), src->raw,
                                     src->raw_len, h, (int)MAAS_ARRAY_LEN(h), NULL, e, sizeof(e));
    if (!err) err = maas_producer_flush(w->producer, 10000, e, sizeof(e));
    if (err) wlog(w, "error", id[0] ? id : NULL, "cannot dead-letter the job: %s", e);
    return err;
}

/*
 * The deadline passed before the job was computed: its record says expired
 * (created if the job had none), logged and counted. An already final record
 * is fine (a redelivery). Returns a retriable error when Redis could not take it.
 */
maas_err job_expire(worker *w, const maas_job *j) {
    char e[MAAS_ERRSTR_SIZE];
    maas_job_record rec;
    maas_job_record_of(j, &rec);
    maas_job_update u = {.to = MAAS_JOB_EXPIRED,
                         .from_mask = JOB_FROM_ACTIVE,
                         .error_code = "EXPIRED",
                         .error_message = "the deadline passed before a worker took it",
                         .ttl_s = job_ttl(w, j),
                         .notify = j->notify,
                         .create = &rec};
    maas_err err = maas_kv_job_transition(w->kv, j->id, &u, e, sizeof(e));
    if (err == MAAS_ERR_CONFLICT) err = MAAS_OK;
    if (err) {
        wlog(w, "error", j->id, "cannot record the expiry: %s", e);
        return err;
    }
    wlog(w, "info", j->id, "expired before it was computed");
    metrics_job(&w->metrics, j->type, OUT_EXPIRED);
    return MAAS_OK;
}
