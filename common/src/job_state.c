/* Job state names and the record's release (see job_state.h). */
#include "maas/base.h"
#include "maas/job_state.h"

static const char *const state_names[MAAS_JOB__COUNT] = {
    "unknown", "queued", "running", "succeeded", "failed", "expired", "cancelled",
};

const char *maas_job_state_name(maas_job_state s) {
    return (int)s >= 0 && s < MAAS_JOB__COUNT ? state_names[s] : "unknown";
}

maas_job_state maas_job_state_from_name(const char *name) {
    for (int i = 1; name && i < MAAS_JOB__COUNT; i++)
        if (!strcmp(name, state_names[i])) return (maas_job_state)i;
    return MAAS_JOB_UNKNOWN;
}

void maas_job_record_release(maas_job_record *r) {
    if (!r) return;
    free(r->progress);
    free(r->result);
    r->progress = NULL;
    r->result = NULL;
    r->result_len = 0;
}
