/*
 * Inference: jobs from the inference topic decoded, grouped by model and run in
 * dynamic batches on the main thread; results written in pipelined flights
 * while the next batches compute; offsets stored, in order, only once a
 * flight's records are final in Redis.
 */
#include "maas/base.h"
#include "maas/strbuf.h"
#include "maas/train.h"
#include "worker.h"

#include <time.h>

/* ------------------------------------------------------------ inference */

typedef struct infer_item {
    maas_message *msg;
    maas_job job;
    int state; /* 0 pending, 1 done (record final or dead-lettered) */
} infer_item;

/* The msgpack result of one inference job (outputs, and classes if asked). */
static maas_err encode_infer_result(const infer_item *it, const cache_entry *ce, const float *out,
                                    unsigned char **buf, size_t *len, char *e, size_t es) {
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
    maas_err err = maas_result_encode(&r, buf, len, e, es);
    free(classes);
    return err;
}

/* A batch's results, written with one pipeline when the whole batch is computed. */
typedef struct outbox {
    int n;
    const char **ids;
    maas_job_update *ups;
    maas_job_record *recs;
    unsigned char **bufs;
} outbox;

static int outbox_init(outbox *o, int cap) {
    memset(o, 0, sizeof(*o));
    o->ids = calloc((size_t)cap, sizeof(*o->ids));
    o->ups = calloc((size_t)cap, sizeof(*o->ups));
    o->recs = calloc((size_t)cap, sizeof(*o->recs));
    o->bufs = calloc((size_t)cap, sizeof(*o->bufs));
    return o->ids && o->ups && o->recs && o->bufs ? 0 : -1;
}

static void outbox_free(outbox *o) {
    for (int k = 0; o->bufs && k < o->n; k++) free(o->bufs[k]);
    free(o->ids);
    free(o->ups);
    free(o->recs);
    free(o->bufs);
}

/* Adds the results of a group's jobs to the batch's outbox (items must outlive it). */
static maas_err finish_group(worker *w, infer_item *items, const int *members, int nm,
                             const cache_entry *ce, const float *y, outbox *o) {
    char e[MAAS_ERRSTR_SIZE];
    maas_err err = MAAS_OK;
    size_t at = 0;
    int outs = ce->model->n_outputs;
    for (int k = 0; k < nm && !err; k++) {
        infer_item *it = &items[members[k]];
        size_t len;
        int i = o->n;
        err = encode_infer_result(it, ce, y + at * outs, &o->bufs[i], &len, e, sizeof(e));
        if (err) {
            wlog(w, "error", it->job.id, "cannot encode the result: %s", e);
            break;
        }
        at += it->job.inputs.rows;
        maas_job_record_of(&it->job, &o->recs[i]);
        o->ids[i] = it->job.id;
        o->ups[i] = (maas_job_update){.to = MAAS_JOB_SUCCEEDED,
                                      .from_mask = JOB_FROM_ACTIVE,
                                      .worker = w->cfg.id,
                                      .result = o->bufs[i],
                                      .result_len = len,
                                      .ttl_s = job_ttl(w, &it->job),
                                      .notify = it->job.notify,
                                      .create = &o->recs[i]};
        o->n++;
        it->state = 1;
    }
    return err;
}

/* Runs the pending items that use model (name, ref) as one forward pass. */
static maas_err run_group(worker *w, infer_item *items, int n, int first, outbox *o) {
    char e[MAAS_ERRSTR_SIZE];
    const maas_model_ref *ref = &items[first].job.model;
    cache_entry *ce;
    maas_err err = cache_get(w, ref->name, ref->ref, &ce, e, sizeof(e));
    int members[1024], nm = 0;
    size_t rows = 0;
    for (int i = first; i < n && nm < (int)MAAS_ARRAY_LEN(members); i++) {
        infer_item *it = &items[i];
        if (it->state || strcmp(it->job.model.name, ref->name) ||
            strcmp(it->job.model.ref, ref->ref))
            continue;
        if (err) {
            if (maas_err_retriable(err)) return err;
            char msg[MAAS_ERRSTR_SIZE + 32];
            snprintf(msg, sizeof(msg), "%s", e);
            maas_err fe = job_fail(w, &it->job, &(job_source){JOB_SOURCE_OF(it->msg)}, err, msg);
            if (fe) return fe;
            it->state = 1;
            continue;
        }
        if ((int)it->job.inputs.cols != ce->model->n_inputs) {
            char msg[MAAS_ERRSTR_SIZE];
            snprintf(msg, sizeof(msg), "field inputs.shape[1]: expected %d, got %u (model %s:%d)",
                     ce->model->n_inputs, it->job.inputs.cols, ce->name, ce->version);
            maas_err fe = job_fail(w, &it->job, &(job_source){JOB_SOURCE_OF(it->msg)},
                                   MAAS_ERR_SHAPE_MISMATCH, msg);
            if (fe) return fe;
            it->state = 1;
            continue;
        }
        if (rows + it->job.inputs.rows > (size_t)w->cfg.max_rows) {
            if (nm == 0) {
                char msg[128];
                snprintf(msg, sizeof(msg), "field inputs: %u rows, over the worker's limit of %ld",
                         it->job.inputs.rows, w->cfg.max_rows);
                maas_err fe = job_fail(w, &it->job, &(job_source){JOB_SOURCE_OF(it->msg)},
                                       MAAS_ERR_LIMIT_EXCEEDED, msg);
                if (fe) return fe;
                it->state = 1;
            }
            continue; /* the next group pass takes it */
        }
        members[nm++] = i;
        rows += it->job.inputs.rows;
    }
    if (err || nm == 0) return MAAS_OK;
    /* One forward pass for the whole group: the batching that makes inference cheap. */
    int cols = ce->model->n_inputs, outs = ce->model->n_outputs;
    float *x = malloc(rows * (size_t)cols * sizeof(float));
    float *y = malloc(rows * (size_t)outs * sizeof(float));
    if (!x || !y) {
        free(x);
        free(y);
        return MAAS_ERR_OUT_OF_MEMORY;
    }
    size_t at = 0;
    for (int k = 0; k < nm; k++) {
        const maas_matrix *in = &items[members[k]].job.inputs;
        memcpy(x + at * cols, in->data, (size_t)in->rows * cols * sizeof(float));
        at += in->rows;
    }
    double t0 = maas_mono_s();
    err = maas_infer_run(ce->infer, x, rows, y, e, sizeof(e));
    metrics_compute_time(&w->metrics, MAAS_JOBTYPE_INFER, maas_mono_s() - t0);
    metrics_batch(&w->metrics, nm);
    free(x);
    w->batches++;
    w->batched_jobs += (unsigned long)nm;
    if (!err) err = finish_group(w, items, members, nm, ce, y, o);
    free(y);
    return err;
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
    const maas_message *one[64] = {0}, **all = n <= 64 ? one : malloc((size_t)n * sizeof(*all));
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
    int refused = 0;
    maas_err why = MAAS_OK;
    for (int k = 0; k < f->n_results; k++) {
        if (res[k] == MAAS_OK) { /* CONFLICT: final already, a redelivered job */
            w->jobs_done++;
            metrics_job(&w->metrics, MAAS_JOBTYPE_INFER, OUT_SUCCEEDED);
        } else if (res[k] != MAAS_ERR_CONFLICT) {
            refused++; /* a permanent refusal by Redis for that job alone: not retried */
            why = res[k];
        }
    }
    if (refused)
        wlog(w, "error", NULL,
             "%d of %d results were refused by Redis (%s); their jobs stay "
             "unrecorded",
             refused, f->n_results, maas_err_code(why));
    free(res);
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

int process_infer_batch(worker *w, maas_message *msgs, int n) {
    char e[MAAS_ERRSTR_SIZE];
    infer_item *items = calloc((size_t)n, sizeof(*items));
    outbox o;
    if (!items || outbox_init(&o, n)) { /* nothing stored: redelivered */
        free(items);
        outbox_free(&o);
        return 0;
    }
    maas_err err = MAAS_OK;
    int64_t now = maas_wall_ms();
    for (int i = 0; i < n && !err; i++) {
        infer_item *it = &items[i];
        it->msg = &msgs[i];
        maas_err de = maas_job_decode(msgs[i].value, msgs[i].value_len, &it->job, e, sizeof(e));
        if (!de && it->job.type != MAAS_JOBTYPE_INFER) {
            de = MAAS_ERR_BAD_FORMAT;
            snprintf(e, sizeof(e), "field type: a %s job on the inference topic",
                     maas_job_type_name(it->job.type));
        }
        if (!de && it->job.deadline_ms > 0 && now > it->job.deadline_ms) {
            err = job_expire(w, &it->job);
            it->state = 1;
            continue;
        }
        if (!de && it->job.created_ms > 0)
            metrics_queue_time(&w->metrics, 1, (double)(now - it->job.created_ms) / 1000.0);
        if (de) {
            err = job_fail(w, &it->job, &(job_source){JOB_SOURCE_OF(&msgs[i])}, de, e);
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
    int slot = (w->flight_head + w->n_flights) % INFER_FLIGHTS;
    infer_flight *f = &w->flight[slot];
    if (!err && !ferr && o.n && !(f->msgs = malloc((size_t)n * sizeof(*msgs))))
        err = MAAS_ERR_OUT_OF_MEMORY;
    if (!err && !ferr && o.n) {
        err = maas_kv_job_transition_send(w->kv_results[slot], o.n, o.ids, o.ups, e, sizeof(e));
        if (err) wlog(w, "error", NULL, "cannot write %d results: %s", o.n, e);
    }
    int kept = 0;
    if (err || ferr) {
        free(f->msgs);
        f->msgs = NULL;
        retry_later(w, msgs, n, err ? err : ferr);
    } else if (o.n) {
        memcpy(f->msgs, msgs, (size_t)n * sizeof(*msgs)); /* now the flight's */
        f->n = n;
        f->n_results = o.n;
        w->n_flights++;
        kept = 1;
    } else {
        store_offsets(w, msgs, n);
    }
    for (int i = 0; i < n; i++) maas_job_release(&items[i].job);
    outbox_free(&o);
    free(items);
    return kept;
}
