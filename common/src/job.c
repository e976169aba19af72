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

/* "(28, 28, 1)" */
static void dims_format(const uint32_t *d, int n, char *buf, size_t size) {
    size_t at = 0;
    buf[0] = '\0';
    for (int k = 0; k < n && at < size; k++)
        at += (size_t)snprintf(buf + at, size - at, "%s%u%s", k ? ", " : "(", d[k],
                               k == n - 1 ? (n == 1 ? ",)" : ")") : "");
}

maas_err maas_matrix_check_rows(const maas_matrix *x, const maas_model *m, const char *field,
                                const char *model, char *errstr, size_t errstr_size) {
    if ((int)x->cols != m->n_inputs)
        return maas_errf(errstr, errstr_size, MAAS_ERR_SHAPE_MISMATCH,
                         "field %s.shape[1]: expected %d, got %u (model %s)", field, m->n_inputs,
                         x->cols, model);
    if (x->sample_rank < 2) return MAAS_OK; /* flat rows of the right width */
    maas_shape s;
    maas_model_input_shape(m, &s);
    uint32_t want[MAAS_MATRIX_MAX_RANK] = {0};
    int same = s.rank == x->sample_rank;
    for (int k = 0; k < s.rank && k < MAAS_MATRIX_MAX_RANK; k++) {
        want[k] = (uint32_t)s.d[k];
        same &= k < x->sample_rank && x->sample[k] == want[k];
    }
    if (same) return MAAS_OK;
    char got[64], takes[64];
    dims_format(x->sample, x->sample_rank, got, sizeof(got));
    dims_format(want, s.rank < MAAS_MATRIX_MAX_RANK ? s.rank : MAAS_MATRIX_MAX_RANK, takes,
                sizeof(takes));
    return maas_errf(errstr, errstr_size, MAAS_ERR_SHAPE_MISMATCH,
                     "field %s.shape: rows of %s; model %s takes rows of %s", field, got, model,
                     takes);
}
