/*
 * Inference: jobs from the inference topic decoded, grouped by model and run in
 * dynamic batches on the main thread; results written in pipelined flights
 * while the next batches compute; offsets stored, in order, only once a
 * flight's records are final in Redis.
 */
#include "maas/base.h"
#include "maas/explain.h"
#include "maas/strbuf.h"
#include "maas/train.h"
#include "worker.h"

#include <time.h>

/* ------------------------------------------------------------ inference */

typedef struct infer_item {
    maas_message *msg;
    maas_job job;
    int64_t started_ms; /* when this worker took it (the batch's decoding) */
    int state;          /* 0 pending, 1 done (record final or dead-lettered) */
} infer_item;

/* The msgpack result of one inference job (outputs, classes and attributions if asked). */
static maas_err encode_infer_result(const infer_item *it, const cache_entry *ce, const float *out,
                                    const float *attr, unsigned char **buf, size_t *len, char *e,
                                    size_t es) {
    maas_result r;
    maas_result_init(&r, MAAS_JOBTYPE_INFER);
    snprintf(r.model, sizeof(r.model), "%s", ce->name);
    r.version = ce->version;
    r.outputs.rows = it->job.inputs.rows;
    r.outputs.cols = (uint32_t)ce->model->n_outputs;
    r.outputs.data = (float *)out; /* borrowed for the encode */
    int32_t *classes = NULL;
    if (it->job.want_classes) {
        classes = malloc(r.outputs.rows * sizeof(int32_t));
        if (!classes) return MAAS_ERR_OUT_OF_MEMORY;
        for (uint32_t i = 0; i < r.outputs.rows; i++) {
            const float *o = out + (size_t)i * r.outputs.cols;
            int best = 0;
            if (r.outputs.cols == 1)
                best = o[0] > 0.5f;
            else
                for (uint32_t k = 1; k < r.outputs.cols; k++)
                    if (o[k] > o[best]) best = (int)k;
            classes[i] = best;
        }
        r.classes = classes;
    }
    if (attr) { /* borrowed for the encode */
        r.attributions.rows = r.outputs.rows;
        r.attributions.cols = r.outputs.cols * (uint32_t)ce->model->n_inputs;
        r.attributions.data = (float *)attr;
    }
    maas_err err = maas_result_encode(&r, buf, len, e, es);
    free(classes);
    return err;
}

/* A batch's results, written with one pipeline when the whole batch is computed. */
typedef struct outbox {
    int n;
    int *item; /* result i is items[item[i]]'s */
    const char **ids;
    maas_job_update *ups;
    maas_job_record *recs;
    maas_job_cost *costs;
    unsigned char **bufs;
} outbox;

static int outbox_init(outbox *o, int cap) {
    memset(o, 0, sizeof(*o));
    o->item = calloc((size_t)cap, sizeof(*o->item));
    o->ids = calloc((size_t)cap, sizeof(*o->ids));
    o->ups = calloc((size_t)cap, sizeof(*o->ups));
    o->recs = calloc((size_t)cap, sizeof(*o->recs));
    o->costs = calloc((size_t)cap, sizeof(*o->costs));
    o->bufs = calloc((size_t)cap, sizeof(*o->bufs));
    return o->item && o->ids && o->ups && o->recs && o->costs && o->bufs ? 0 : -1;
}

static void outbox_free(outbox *o) {
    for (int k = 0; o->bufs && k < o->n; k++) free(o->bufs[k]);
    free(o->item);
    free(o->ids);
    free(o->ups);
    free(o->recs);
    free(o->costs);
    free(o->bufs);
}

/* Bytes an inference job's buffers take in a batch: its inputs and outputs in the forward
 * pass and its encoded result (with the classes and attributions, if asked), and what
 * explaining it holds while it runs. */
static double infer_job_bytes(const maas_job *j, const maas_model *m) {
    double rows = j->inputs.rows, outs = m->n_outputs;
    double attr = j->explain ? outs * j->inputs.cols : 0.0; /* attributions, twice */
    /* explaining also holds the kernels transposed in double, and a few rows of doubles */
    double explain =
        j->explain ? 8.0 * ((double)m->n_params + 4.0 * m->n_inputs * (outs + 4)) : 0.0;
    return rows * ((double)j->inputs.cols + 2.0 * outs + (j->want_classes ? 1 : 0) + 2.0 * attr) *
               4.0 +
           explain;
}

/*
 * The attributions an infer job asks for ("explain"; maas/explain.h) into *attr (malloc'd;
 * NULL when not asked). The work is checked against MAAS_EXPLAIN_MAX_WORK multiply-adds
 * before anything is allocated: past it the job fails alone (LIMIT_EXCEEDED, saying how to
 * ask for less).
 */
#define MAAS_EXPLAIN_MAX_WORK 4e9
static maas_err explain_job(const infer_item *it, const cache_entry *ce, float **attr, char *e,
                            size_t es) {
    const maas_job *j = &it->job;
    const maas_model *m = ce->model;
    *attr = NULL;
    e[0] = '\0';
    if (!j->explain) return MAAS_OK;
    maas_explain_method meth = (maas_explain_method)(j->explain - 1);
    double points = meth == MAAS_EXPLAIN_INTEGRATED_GRADIENTS ? j->explain_steps : 1;
    /* the explanation's multiply-adds (maas_explain_flops / 2: a CNN's convolutions count),
     * at least one per parameter and pass */
    double pass = fmax((double)m->n_params, maas_explain_flops(m, meth, j->explain_steps) / 2.0 /
                                                (points * (m->n_outputs + 1.0)));
    double work = (double)j->inputs.rows * points * (m->n_outputs + 1.0) * pass;
    if (work > MAAS_EXPLAIN_MAX_WORK)
        return maas_errf(e, es, MAAS_ERR_LIMIT_EXCEEDED,
                         "explaining %u rows (%s, %.0f points each) of a model with %zu "
                         "parameters (%.3g multiply-adds a pass) and %d outputs takes ~%.2g "
                         "multiply-adds, over this worker's %.2g: send fewer rows or steps per job",
                         j->inputs.rows, maas_explain_name(meth), points, m->n_params, pass,
                         m->n_outputs, work, MAAS_EXPLAIN_MAX_WORK);
    size_t cells = (size_t)j->inputs.rows * (size_t)m->n_outputs * (size_t)m->n_inputs;
    if (!(*attr = malloc((cells ? cells : 1) * sizeof(float))))
        return maas_errf(e, es, MAAS_ERR_OUT_OF_MEMORY, "out of memory for the attributions");
    maas_err err =
        maas_explain(m, meth, j->explain_steps, j->baseline.rows ? j->baseline.data : NULL,
                     j->inputs.data, j->inputs.rows, *attr, e, es);
    if (err) {
        free(*attr);
        *attr = NULL;
    }
    return err;
}

/* The group's forward pass, which its jobs share by their rows. */
typedef struct group_pass {
    size_t rows;
    double cpu_s, wall_s;
} group_pass;

/* Adds the results of a group's jobs to the batch's outbox (items must outlive it). A job
 * whose result cannot be encoded fails alone. Returns an error only when such a failure
 * could not be made durable (the caller then retries the batch). */
static maas_err finish_group(worker *w, infer_item *items, const int *members, int nm,
                             const cache_entry *ce, const float *y, const group_pass *pass,
                             outbox *o) {
    char e[MAAS_ERRSTR_SIZE];
    size_t at = 0;
    int outs = ce->model->n_outputs;
    double fwd = maas_flops_forward(ce->model);
    for (int k = 0; k < nm; k++) {
        infer_item *it = &items[members[k]];
        size_t len;
        int i = o->n;
        const float *out = y + at * outs;
        at += it->job.inputs.rows;
        float *attr = NULL;
        double cpu0 = maas_thread_cpu_s(), wall0 = maas_mono_s();
        maas_err err = explain_job(it, ce, &attr, e, sizeof(e));
        if (!err) err = encode_infer_result(it, ce, out, attr, &o->bufs[i], &len, e, sizeof(e));
        free(attr);
        if (err) {
            if (err == MAAS_ERR_OUT_OF_MEMORY && !e[0])
                snprintf(e, sizeof(e), "out of memory for the result");
            maas_err fe = job_fail(w, &it->job, &(job_source){JOB_SOURCE_OF(it->msg)}, err, e);
            if (fe) return fe;
            it->state = 1;
            continue;
        }
        /* its cost: its rows' share of the forward pass, and its own explaining and encoding */
        double share = pass->rows ? (double)it->job.inputs.rows / (double)pass->rows : 0;
        maas_job_cost *c = &o->costs[i];
        memset(c, 0, sizeof(*c));
        c->cpu_s = pass->cpu_s * share + (maas_thread_cpu_s() - cpu0);
        c->compute_s = pass->wall_s + (maas_mono_s() - wall0);
        if (it->job.created_ms > 0 && it->started_ms > it->job.created_ms)
            c->queue_s = (double)(it->started_ms - it->job.created_ms) / 1e3;
        c->flops = (double)it->job.inputs.rows * fwd;
        if (it->job.explain)
            c->flops += (double)it->job.inputs.rows *
                        maas_explain_flops(ce->model, (maas_explain_method)(it->job.explain - 1),
                                           it->job.explain_steps);
        c->peak_bytes = infer_job_bytes(&it->job, ce->model);
        maas_energy_charge(&w->energy, c);
        metrics_cost(&w->metrics, w->batch_tenant, it->job.model.name, MAAS_JOBTYPE_INFER, c);
        maas_job_record_of_message(&it->job, it->msg->value, it->msg->value_len, &o->recs[i]);
        o->item[i] = members[k];
        o->ids[i] = it->job.id;
        o->ups[i] = (maas_job_update){.to = MAAS_JOB_SUCCEEDED,
                                      .from_mask = JOB_FROM_ACTIVE,
                                      .worker = w->cfg.id,
                                      .result = o->bufs[i],
                                      .result_len = len,
                                      .ttl_s = job_ttl(w, &it->job),
                                      .notify = it->job.notify,
                                      .started_ms = it->started_ms,
                                      .create = &o->recs[i],
                                      .cost = c};
        o->n++;
        it->state = 1;
    }
    return MAAS_OK;
}

/* Fails one pending job of a group for good; an error only if that is not durable. */
static maas_err fail_item(worker *w, infer_item *it, maas_err code, const char *msg) {
    maas_err fe = job_fail(w, &it->job, &(job_source){JOB_SOURCE_OF(it->msg)}, code, msg);
    if (!fe) it->state = 1;
    return fe;
}

/* One forward pass over members (rows in all). A permanent error (out of memory for the
 * group's buffers, a compute error) is returned with its message in e: the caller fails
 * the job, or runs a group of several one by one. */
static maas_err run_members(worker *w, infer_item *items, const int *members, int nm, size_t rows,
                            const cache_entry *ce, outbox *o, char *e, size_t es) {
    int cols = ce->model->n_inputs, outs = ce->model->n_outputs;
    float *x = malloc(rows * (size_t)cols * sizeof(float));
    float *y = malloc(rows * (size_t)outs * sizeof(float));
    if (!x || !y) {
        free(x);
        free(y);
        return maas_errf(e, es, MAAS_ERR_OUT_OF_MEMORY,
                         "out of memory for %zu rows x %d outputs of model %s:%d", rows, outs,
                         ce->name, ce->version);
    }
    size_t at = 0;
    for (int k = 0; k < nm; k++) {
        const maas_matrix *in = &items[members[k]].job.inputs;
        memcpy(x + at * cols, in->data, (size_t)in->rows * cols * sizeof(float));
        at += in->rows;
    }
    if ((double)rows * (double)ce->model->n_params > 5e9) /* seconds of work: say so first */
        wlog(w, "info", nm == 1 ? items[members[0]].job.id : NULL,
             "computing %zu rows of %s:%d (%d jobs)", rows, ce->name, ce->version, nm);
    double t0 = maas_mono_s(), cpu0 = maas_thread_cpu_s();
    maas_err err = maas_infer_run(ce->infer, x, rows, y, e, es);
    group_pass pass = {rows, maas_thread_cpu_s() - cpu0, maas_mono_s() - t0};
    metrics_compute_time(&w->metrics, MAAS_JOBTYPE_INFER, pass.wall_s);
    free(x);
    if (!err) {
        metrics_batch(&w->metrics, nm);
        w->batches++;
        w->batched_jobs += (unsigned long)nm;
        /* a failure of finish_group is retriable (a job's failure not durable): no e */
        if ((err = finish_group(w, items, members, nm, ce, y, &pass, o)) &&
            !maas_err_retriable(err))
            err = MAAS_ERR_UNAVAILABLE;
    }
    free(y);
    return err;
}

/*
 * Runs the pending items that use model (name, ref) as one forward pass, within the
 * worker's row limit and inference budget (jobs that would overflow them wait for the
 * next pass; a job over them alone fails with LIMIT_EXCEEDED). Every job-made problem
 * fails its job alone; an error returned is retriable (Redis or Kafka away).
 */
static maas_err run_group(worker *w, infer_item *items, int n, int first, outbox *o) {
    char e[MAAS_ERRSTR_SIZE];
    const maas_model_ref *ref = &items[first].job.model;
    cache_entry *ce;
    maas_err err = cache_get(w, w->batch_tenant, ref->name, ref->ref, &ce, e, sizeof(e));
    if (maas_err_retriable(err)) return err;
    int members[1024], nm = 0;
    size_t rows = 0;
    double bytes = 0, budget = (double)w->cfg.infer_bytes;
    for (int i = first; i < n && nm < (int)MAAS_ARRAY_LEN(members); i++) {
        infer_item *it = &items[i];
        if (it->state || strcmp(it->job.model.name, ref->name) ||
            strcmp(it->job.model.ref, ref->ref))
            continue;
        maas_err fe = MAAS_OK;
        char bad[MAAS_ERRSTR_SIZE], label[MAAS_NAME_MAX + 16];
        double need = err ? 0 : infer_job_bytes(&it->job, ce->model);
        if (err) {
            fe = fail_item(w, it, err, e);
        } else if (maas_matrix_check_rows(&it->job.inputs, ce->model, "inputs",
                                          model_label(ce, label, sizeof(label)), bad,
                                          sizeof(bad))) {
            fe = fail_item(w, it, MAAS_ERR_SHAPE_MISMATCH, bad);
        } else if (it->job.inputs.rows > (uint64_t)w->cfg.max_rows) {
            char msg[128];
            snprintf(msg, sizeof(msg), "field inputs: %u rows, over the worker's limit of %ld",
                     it->job.inputs.rows, w->cfg.max_rows);
            fe = fail_item(w, it, MAAS_ERR_LIMIT_EXCEEDED, msg);
        } else if (need > budget) {
            char msg[MAAS_ERRSTR_SIZE + 160];
            snprintf(msg, sizeof(msg),
                     "field inputs: %u rows x %d outputs of model %s:%d need %.0f MiB of "
                     "buffers, over the worker's inference budget of %.0f MiB (--memory-mb / 4)",
                     it->job.inputs.rows, ce->model->n_outputs, ce->name, ce->version,
                     need / 1048576.0, budget / 1048576.0);
            fe = fail_item(w, it, MAAS_ERR_LIMIT_EXCEEDED, msg);
        } else if (rows + it->job.inputs.rows <= (size_t)w->cfg.max_rows &&
                   bytes + need <= budget) {
            members[nm++] = i;
            rows += it->job.inputs.rows;
            bytes += need;
        } /* else: it waits for the next group pass */
        if (fe) return fe;
    }
    if (err || nm == 0) return MAAS_OK;
    /* One forward pass for the whole group: the batching that makes inference cheap. */
    err = run_members(w, items, members, nm, rows, ce, o, e, sizeof(e));
    if (!err || maas_err_retriable(err)) return err;
    if (nm == 1) return fail_item(w, &items[members[0]], err, e);
    for (int k = 0; k < nm; k++) { /* the group could not run as one: each job alone */
        infer_item *it = &items[members[k]];
        err = run_members(w, items, &members[k], 1, it->job.inputs.rows, ce, o, e, sizeof(e));
        if (err && !maas_err_retriable(err)) err = fail_item(w, it, err, e);
        if (err) return err;
    }
    return MAAS_OK;
}

/* Message j of the batches in flight (oldest first) followed by msgs[0..n). */
/* Seeks each partition of the batches in flight and of msgs back to its first message
 * there: the earliest unconfirmed offset. */
static void rewind_all(worker *w, const maas_message *msgs, int n) {
    char e[MAAS_ERRSTR_SIZE];
    int total = n;
    for (int b = 0; b < w->n_flights; b++)
        total += w->flight[(w->flight_head + b) % INFER_FLIGHTS].n;
    const maas_message **all = malloc((size_t)(total > 0 ? total : 1) * sizeof(*all));
    if (!all) { /* no memory for the list: seek message by message, newest first, so that
                 * each partition ends at its oldest unconfirmed offset */
        for (int i = n - 1; i >= 0; i--)
            maas_consumer_seek(w->infer_c, msgs[i].topic, msgs[i].partition, msgs[i].offset, e,
                               sizeof(e));
        for (int b = w->n_flights - 1; b >= 0; b--) {
            const infer_flight *f = &w->flight[(w->flight_head + b) % INFER_FLIGHTS];
            for (int i = f->n - 1; i >= 0; i--)
                maas_consumer_seek(w->infer_c, f->msgs[i].topic, f->msgs[i].partition,
                                   f->msgs[i].offset, e, sizeof(e));
        }
        return;
    }
    int k = 0;
    for (int b = 0; b < w->n_flights; b++) {
        const infer_flight *f = &w->flight[(w->flight_head + b) % INFER_FLIGHTS];
        for (int i = 0; i < f->n; i++) all[k++] = &f->msgs[i];
    }
    for (int i = 0; i < n; i++) all[k++] = &msgs[i];
    if (maas_consumer_rewind(w->infer_c, all, total, e, sizeof(e)))
        wlog(w, "warn", NULL, "%s", e); /* a partition lost meanwhile is redelivered elsewhere */
    free(all);
}

/* Stores, per partition, the offset after the batch's last message there. */
static void store_offsets(worker *w, const maas_message *msgs, int n) {
    char e[MAAS_ERRSTR_SIZE];
    const maas_message *one[256] = {0}, **all = n <= 256 ? one : malloc((size_t)n * sizeof(*all));
    if (!all) { /* not stored now: a later batch's store or a redelivery covers them */
        wlog(w, "warn", NULL, "out of memory storing %d offsets", n);
        return;
    }
    for (int i = 0; i < n; i++) all[i] = &msgs[i];
    if (maas_consumer_store_batch(w->infer_c, all, n, e, sizeof(e)))
        wlog(w, "warn", NULL, "%s", e); /* lost the partition: redelivery is harmless */
    if (all != one) free(all);
}

/* Lets the oldest batch in flight go: its messages released, its slot free. */
static void flight_pop(worker *w) {
    infer_flight *f = &w->flight[w->flight_head];
    for (int i = 0; f->msgs && i < f->n; i++) maas_message_release(&f->msgs[i]);
    free(f->msgs);
    free(f->result_of);
    free(f->ids);
    memset(f, 0, sizeof(*f));
    w->flight_head = (w->flight_head + 1) % INFER_FLIGHTS;
    w->n_flights--;
}

/* Reads the replies of the oldest batch in flight; on success stores its offsets and lets
 * it go. On a Redis failure returns the error and keeps every flight, for the caller to
 * rewind. */
static maas_err flight_finish(worker *w) {
    if (!w->n_flights) return MAAS_OK;
    int slot = w->flight_head;
    infer_flight *f = &w->flight[slot];
    char e[MAAS_ERRSTR_SIZE];
    maas_err *res = calloc((size_t)f->n_results, sizeof(*res));
    maas_err err = res ? maas_kv_job_transition_recv(w->kv_results[slot], res, e, sizeof(e))
                       : MAAS_ERR_OUT_OF_MEMORY;
    if (err) {
        wlog(w, "error", NULL, "cannot write %d results: %s", f->n_results,
             res ? e : "out of memory");
        free(res);
        return err;
    }
    for (int k = 0; k < f->n_results && !err; k++) {
        if (res[k] == MAAS_OK) { /* CONFLICT: final already, a redelivered job */
            w->jobs_done++;
            metrics_job(&w->metrics, MAAS_JOBTYPE_INFER, OUT_SUCCEEDED);
        } else if (maas_err_retriable(res[k]) && res[k] != MAAS_ERR_CONFLICT) {
            err = res[k]; /* Redis busy or away for this one: the flights are rewound */
        } else if (res[k] != MAAS_ERR_CONFLICT) {
            /* the message does not match the record it names (MISMATCH), or Redis refused
             * this job's record for good: that job alone is dead-lettered, not retried */
            char why[MAAS_ERRSTR_SIZE];
            snprintf(why, sizeof(why), "%s",
                     res[k] == MAAS_ERR_MISMATCH
                         ? "the message does not match the record it names (type, model or "
                           "digest); the record is left as it was"
                         : "Redis refused to store the result");
            const maas_message *m = &f->msgs[f->result_of[k]];
            err = job_reject(w, f->ids[k], &(job_source){JOB_SOURCE_OF(m)}, res[k], why);
        }
    }
    free(res);
    if (err) return err; /* not all durable: the caller rewinds the flights */
    store_offsets(w, f->msgs, f->n);
    flight_pop(w);
    return MAAS_OK;
}

/* After a failure: every flight's replies are read (or the connection dropped) and all
 * are let go; the caller has rewound them. */
static void flights_drop(worker *w) {
    while (w->n_flights) {
        int slot = w->flight_head;
        maas_err *res = calloc((size_t)w->flight[slot].n_results + 1, sizeof(*res));
        char e[MAAS_ERRSTR_SIZE];
        if (res) maas_kv_job_transition_recv(w->kv_results[slot], res, e, sizeof(e));
        free(res);
        flight_pop(w);
    }
}

/* Retriable (Redis or Kafka away): every unconfirmed message - the batches in flight,
 * oldest first (their offsets are lower), then msgs[0..n) - is rewound for redelivery,
 * nothing stored; then a jittered pause. Jobs that did finish are final in Redis, so their
 * redelivery is a no-op. */
static void retry_later(worker *w, const maas_message *msgs, int n, maas_err err) {
    rewind_all(w, msgs, n);
    wlog(w, "warn", NULL,
         "retrying %d batches in flight and %d new jobs after a retriable error (%s)", w->n_flights,
         n, maas_err_code(err));
    flights_drop(w);
    struct timespec ts = {0, (200 + rand() % 300) * 1000000L};
    nanosleep(&ts, NULL);
}

maas_err infer_settle(worker *w) {
    maas_err err = MAAS_OK;
    while (w->n_flights && !(err = flight_finish(w))) {
    }
    if (err) retry_later(w, NULL, 0, err);
    return err;
}

/*
 * Runs msgs[0..n) as one batch; counts[i]: how many workers took msgs[i] and stopped
 * before it was final (0 unless it may be a redelivery). Returns 1 if it kept msgs (in
 * flight). *failed: an error that needs the caller to rewind msgs (nothing kept then).
 */
static int run_batch(worker *w, maas_message *msgs, int n, const int *counts, maas_err *failed) {
    char e[MAAS_ERRSTR_SIZE];
    *failed = MAAS_OK;
    /* not zeroed: each item is filled as its message is decoded (an item is ~11 KB of job,
     * which the decoder zeroes itself; zeroing it here too cost ~0.2 us a job) */
    infer_item *items = malloc((size_t)n * sizeof(*items));
    int decoded = 0; /* items[0..decoded) hold a decoded job (released at the end) */
    outbox o;
    if (!items || outbox_init(&o, n)) { /* nothing stored: rewound, redelivered */
        free(items);
        outbox_free(&o);
        *failed = MAAS_ERR_OUT_OF_MEMORY;
        return 0;
    }
    maas_err err = MAAS_OK;
    int64_t now = maas_wall_ms();
    for (int i = 0; i < n && !err; i++) {
        infer_item *it = &items[i];
        it->msg = &msgs[i];
        it->state = 0;
        maas_err de = maas_job_decode(msgs[i].value, msgs[i].value_len, &it->job, e, sizeof(e));
        decoded = i + 1; /* decoded or not, the job is initialized (maas/job.h) */
        /* queue time for a job sent without created_ms: from its Kafka timestamp */
        if (!it->job.created_ms) it->job.created_ms = msgs[i].timestamp_ms;
        it->started_ms = now;
        if (!de && it->job.type != MAAS_JOBTYPE_INFER) {
            de = MAAS_ERR_BAD_FORMAT;
            snprintf(e, sizeof(e), "field type: a %s job on the inference topic",
                     maas_job_type_name(it->job.type));
        }
        if (!de && it->job.deadline_ms > 0 && now > it->job.deadline_ms) {
            err = job_expire(w, &it->job, &(job_source){JOB_SOURCE_OF(&msgs[i])});
            it->state = 1;
            continue;
        }
        if (!de && it->job.created_ms > 0)
            metrics_queue_time(&w->metrics, 1, (double)(now - it->job.created_ms) / 1000.0);
        if (de) {
            err = job_fail(w, &it->job, &(job_source){JOB_SOURCE_OF(&msgs[i])}, de, e);
            it->state = 1;
        } else if (counts[i] >= w->cfg.max_attempts) {
            /* workers took it this often and stopped each time before it was final (killed
             * while computing it: out of memory?): not computed again, unless it is final */
            maas_job_record r;
            maas_err ge =
                maas_kv_job_get(worker_kv(w, w->batch_tenant), it->job.id, &r, e, sizeof(e));
            int done = !ge && MAAS_JOB_FINAL(r.state);
            if (!ge) maas_job_record_release(&r);
            if (ge) {
                err = ge;
            } else if (!done) {
                char why[160];
                snprintf(why, sizeof(why),
                         "taken by %d workers that each stopped before it was done (killed "
                         "while computing it?); dead-lettered (--max-attempts %d)",
                         counts[i], w->cfg.max_attempts);
                err = job_fail(w, &it->job, &(job_source){JOB_SOURCE_OF(&msgs[i])},
                               MAAS_ERR_LIMIT_EXCEEDED, why);
            }
            it->state = 1;
        }
    }
    for (int i = 0; i < n && !err; i++)
        if (!items[i].state) err = run_group(w, items, n, i, &o);
    /* A slot for this batch's results: the oldest batch in flight is confirmed first (its
     * offsets stored) if all are taken. A batch with no results to write (every job failed
     * or expired, already final) waits for all of them: offsets go in order. */
    maas_err ferr = MAAS_OK;
    while (!err && !ferr && w->n_flights && (w->n_flights == INFER_FLIGHTS || o.n == 0))
        ferr = flight_finish(w);
    /* the free slot: only when the loop above left one (after a failure there every slot
     * may be a batch in flight, which the caller rewinds: not this batch's to touch) */
    int slot = (w->flight_head + w->n_flights) % INFER_FLIGHTS;
    infer_flight *f = !err && !ferr && o.n ? &w->flight[slot] : NULL;
    if (f && (!(f->msgs = malloc((size_t)n * sizeof(*msgs))) ||
              !(f->result_of = malloc((size_t)o.n * sizeof(*f->result_of))) ||
              !(f->ids = malloc((size_t)o.n * sizeof(*f->ids)))))
        err = MAAS_ERR_OUT_OF_MEMORY;
    if (f && !err) {
        err = maas_kv_scope(w->kv_results[slot], w->batch_tenant, e, sizeof(e));
        if (!err)
            err = maas_kv_job_transition_send(w->kv_results[slot], o.n, o.ids, o.ups, e, sizeof(e));
        if (err) wlog(w, "error", NULL, "cannot write %d results: %s", o.n, e);
    }
    int kept = 0;
    if (err || ferr) {
        if (f) {
            free(f->msgs);
            free(f->result_of);
            free(f->ids);
            f->msgs = NULL;
            f->result_of = NULL;
            f->ids = NULL;
        }
        *failed = err ? err : ferr;
    } else if (o.n) {
        memcpy(f->msgs, msgs, (size_t)n * sizeof(*msgs)); /* now the flight's */
        for (int k = 0; k < o.n; k++) {
            f->result_of[k] = o.item[k];
            snprintf(f->ids[k], sizeof(f->ids[k]), "%s", o.ids[k]);
        }
        f->n = n;
        f->n_results = o.n;
        w->n_flights++;
        kept = 1;
    } else {
        store_offsets(w, msgs, n);
    }
    for (int i = 0; i < decoded; i++) maas_job_release(&items[i].job);
    outbox_free(&o);
    free(items);
    return kept;
}

/* A message may be a redelivery after a worker died: its partition was assigned to this
 * worker since, and it lies where the group had left it then (careful ranges). */
static careful_range *careful_find(const worker *w, const char *topic, int32_t partition) {
    for (int i = 0; i < w->n_careful; i++)
        if (w->careful[i].partition == partition && !strcmp(w->careful[i].topic, topic))
            return &w->careful[i];
    return NULL;
}

static careful_range *careful(const worker *w, const maas_message *m) {
    careful_range *c = w->n_careful ? careful_find(w, m->topic, m->partition) : NULL;
    return c && m->offset < c->to ? c : NULL;
}

/* The entry of a partition this worker was given (made when missing: not tracked when out
 * of memory). */
static careful_range *careful_entry(worker *w, const char *topic, int32_t partition) {
    careful_range *c = careful_find(w, topic, partition);
    if (c) return c;
    if (w->n_careful == w->cap_careful) {
        int cap = w->cap_careful ? 2 * w->cap_careful : 16;
        careful_range *grown = realloc(w->careful, (size_t)cap * sizeof(*grown));
        if (!grown) return NULL;
        w->careful = grown;
        w->cap_careful = cap;
    }
    c = &w->careful[w->n_careful++];
    memset(c, 0, sizeof(*c));
    snprintf(c->topic, sizeof(c->topic), "%.255s", topic);
    c->partition = partition;
    return c;
}

void infer_take_assignments(worker *w, const maas_message *batch, int n) {
    char e[MAAS_ERRSTR_SIZE], tenant[MAAS_TENANT_MAX + 1];
    for (int i = 0; i < n; i++) {
        maas_offset_range r;
        if (!maas_consumer_fresh_range(w->infer_c, &batch[i], &r)) continue;
        careful_range *c = careful_entry(w, r.topic, r.partition);
        if (!c) { /* not tracked: a job that kills workers is then not caught */
            wlog(w, "warn", NULL, "out of memory tracking %.200s[%d]", r.topic, (int)r.partition);
            continue;
        }
        /* what a previous owner may have started: below its start mark. Nobody's mark: no
         * worker ever started a message there (this fresh backlog is counted for nothing).
         * The mark unknown (Redis away): every message up to the end, as if all were. */
        int64_t mark = 0;
        worker_tenant_of(w, r.topic, tenant);
        if (maas_kv_start_mark_get(worker_kv(w, tenant), r.topic, r.partition, &mark, e,
                                   sizeof(e))) {
            wlog(w, "warn", NULL, "%.200s[%d]: no start mark (%s): counting up to its end", r.topic,
                 (int)r.partition, e);
            mark = INT64_MAX;
            c->started_to = 0; /* raised (to at least the stored mark) before a start */
        } else {
            c->started_to = mark;
        }
        c->raised_ms = 0; /* renewed by the first batch: the stored mark's TTL is unknown */
        c->to = mark < r.to ? mark : r.to;
        c->counted_to = r.from;
        if (c->to > r.from)
            wlog(w, "info", NULL, "%s[%d]: offsets %lld..%lld may be redeliveries: counting them",
                 r.topic, (int)r.partition, (long long)r.from, (long long)c->to - 1);
    }
}

/* Raises the start mark of each partition of msgs past its last message there, where it is
 * not past it yet, before any of them is started (one round trip per INFER_MARK_STEP
 * messages of a partition); and where this worker has not raised it for a day (or since it
 * was given the partition), so that the mark's TTL never runs out under a quiet partition. */
static maas_err raise_start_marks(worker *w, const maas_message *msgs, int n) {
    char e[MAAS_ERRSTR_SIZE];
    int64_t now = maas_wall_ms();
    for (int i = 0; i < n; i++) {
        careful_range *c = careful_entry(w, msgs[i].topic, msgs[i].partition);
        if (!c) return MAAS_ERR_OUT_OF_MEMORY; /* rewound, retried */
        if (msgs[i].offset < c->started_to && c->raised_ms && now - c->raised_ms < 86400000)
            continue;
        int64_t last = msgs[i].offset;
        for (int j = i + 1; j < n; j++)
            if (msgs[j].partition == msgs[i].partition && msgs[j].offset > last &&
                !strcmp(msgs[j].topic, msgs[i].topic))
                last = msgs[j].offset;
        int64_t to = last + 1 + INFER_MARK_STEP;
        maas_err err = maas_kv_start_mark_raise(worker_kv(w, w->batch_tenant), c->topic,
                                                c->partition, &to, 7 * 86400, e, sizeof(e));
        if (err) {
            wlog(w, "error", NULL, "cannot raise the start mark of %.200s[%d]: %s", c->topic,
                 (int)c->partition, e);
            return err;
        }
        c->started_to = to;
        c->raised_ms = now;
    }
    return MAAS_OK;
}

/* The start counts of the careful messages among msgs (one round trip per partition);
 * counts[i] stays 0 for the others. With count, each is counted first as started once
 * more, unless this process counted it already (a retry after a rewind, not a worker that
 * died): then it is only read. */
static maas_err delivery_counts(worker *w, const maas_message *msgs, int n, int count,
                                int *counts) {
    char e[MAAS_ERRSTR_SIZE];
    int64_t off[256];
    int add[256], cnt[256], at[256];
    char *taken = calloc((size_t)n, 1);
    if (!taken) return MAAS_ERR_OUT_OF_MEMORY;
    maas_err err = MAAS_OK;
    for (int i = 0; i < n && !err; i++) {
        careful_range *c = taken[i] ? NULL : careful(w, &msgs[i]);
        if (!c) continue;
        int32_t p = msgs[i].partition;
        int k = 0;
        for (int j = i; j < n && k < (int)MAAS_ARRAY_LEN(off); j++) /* this partition's */
            if (!taken[j] && msgs[j].partition == p && careful(w, &msgs[j]) == c) {
                off[k] = msgs[j].offset;
                add[k] = count && msgs[j].offset >= c->counted_to;
                at[k++] = j;
                taken[j] = 1;
            }
        err = maas_kv_delivery_counts(worker_kv(w, w->batch_tenant), msgs[i].topic, p, off, add, k,
                                      cnt, 86400, e, sizeof(e));
        if (err) {
            wlog(w, "error", NULL, "cannot count deliveries: %s", e);
            break;
        }
        for (int q = 0; q < k; q++) {
            counts[at[q]] = cnt[q];
            if (count && off[q] + 1 > c->counted_to) c->counted_to = off[q] + 1;
        }
    }
    free(taken);
    return err;
}

/* Finishes every batch in flight; an error leaves them for the caller to rewind. */
static maas_err finish_flights(worker *w) {
    maas_err err = MAAS_OK;
    while (w->n_flights && !(err = flight_finish(w))) {
    }
    return err;
}

int process_infer_batch(worker *w, maas_message *msgs, int n) {
    worker_tenant_of(w, msgs[0].topic, w->batch_tenant); /* one topic per batch (main.c) */
    int *counts = calloc((size_t)n, sizeof(*counts));
    maas_err err = counts ? raise_start_marks(w, msgs, n) : MAAS_ERR_OUT_OF_MEMORY;
    if (!err) err = delivery_counts(w, msgs, n, 0, counts);
    int isolate = 0;
    for (int i = 0; !err && i < n; i++) isolate |= counts[i] >= 1;
    if (!err && !isolate) { /* first time under watch (or not watched): started as a batch */
        err = delivery_counts(w, msgs, n, 1, counts);
        if (!err) {
            int kept = run_batch(w, msgs, n, counts, &err);
            free(counts);
            if (err) retry_later(w, msgs, n, err);
            return kept;
        }
    }
    if (err) {
        free(counts);
        retry_later(w, msgs, n, err);
        return 0;
    }
    /* Started before by a worker that stopped before they were final: one job at a time,
     * each counted as started just before it is computed and written before the next one
     * is, so the job that takes workers down is found alone and reaches --max-attempts,
     * while the others are not lost with it (nor counted for the times it killed them). */
    wlog(w, "warn", NULL,
         "%d jobs were being computed when a worker stopped: running them one by one", n);
    if (!(err = finish_flights(w))) {
        for (int i = 0; i < n; i++) {
            int kept = 0;
            err = delivery_counts(w, &msgs[i], 1, 1, &counts[i]);
            if (!err) kept = run_batch(w, &msgs[i], 1, &counts[i], &err);
            if (!err) err = finish_flights(w);
            if (kept) memset(&msgs[i], 0, sizeof(msgs[i])); /* the flight released it */
            if (err) {
                /* the flights (msgs[i] among them if kept) and the rest, rewound together */
                retry_later(w, &msgs[kept ? i + 1 : i], kept ? n - i - 1 : n - i, err);
                break;
            }
        }
    } else {
        retry_later(w, msgs, n, err);
    }
    free(counts);
    return 0;
}
