/* Job helpers that are neither encoding nor storage. */
#include "maas/base.h"
#include "maas/digest.h"
#include "maas/job.h"

void maas_job_record_of(const maas_job *j, maas_job_record *r) {
    memset(r, 0, sizeof(*r));
    snprintf(r->id, sizeof(r->id), "%s", j->id);
    snprintf(r->type, sizeof(r->type), "%s", maas_job_type_name(j->type));
    maas_model_ref_format(&j->model, r->model, sizeof(r->model));
    r->created_ms = j->created_ms;
    r->deadline_ms = j->deadline_ms;
}

void maas_job_record_of_message(const maas_job *j, const void *msg, size_t len,
                                maas_job_record *r) {
    maas_job_record_of(j, r);
    maas_sha256_hex(len ? msg : "", len, r->digest);
}
