/*
 * Job execution: inference in dynamic batches on the main thread; training and
 * evaluation on a compute thread while the main thread keeps polling. Every
 * effect is idempotent by job id; offsets are stored only after the job's
 * record is final in Redis.
 *
 * Size (~1000 lines): batching/flights, the compute thread and job outcomes
 * still share one file; splitting them (issue 15) is the next step here.
 */
#include "maas/base.h"
#include "maas/strbuf.h"
#include "maas/train.h"
#include "worker.h"

#include <time.h>

#define FROM_ACTIVE ((1u << MAAS_JOB_QUEUED) | (1u << MAAS_JOB_RUNNING))

static int ttl_of(const worker *w, const maas_job *j) {
    return j && j->ttl_s > 0 ? j->ttl_s : w->cfg.default_ttl_s;
}

/*
 * A permanent failure: the record says failed (when the id is known) and the
 * message goes to the dead-letter topic with the reason in its headers.
 * Returns a retriable error only when Redis or Kafka could not take it.
 */
static maas_err fail_job(worker *w, const maas_job *j, const void *raw, size_t raw_len,
                         const char *topic, int32_t partition, int64_t offset, maas_err code,
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
                             .from_mask = FROM_ACTIVE,
                             .worker = w->cfg.id,
                             .error_code = maas_err_code(code),
                             .error_message = message,
                             .ttl_s = ttl_of(w, j),
                             .notify = j->notify,
                             .create = &rec};
        err = maas_kv_job_transition(w->kv, id, &u, e, sizeof(e));
        if (err == MAAS_ERR_CONFLICT) err = MAAS_OK; /* already final: a redelivery */
        if (err) {
            wlog(w, "error", id, "cannot record the failure: %s", e);
            return err;
        }
    }
    char part[16], off[32];
    snprintf(part, sizeof(part), "%d", (int)partition);
    snprintf(off, sizeof(off), "%lld", (long long)offset);
    maas_setting h[] = {
        {"maas-error-code", maas_err_code(code)},
        {"maas-error-message", message},
        {"maas-job-id", id},
        {"maas-source-topic", topic},
        {"maas-source-partition", part},
        {"maas-source-offset", off},
        {"maas-worker", w->cfg.id},
    };
    err = maas_producer_send_headers(w->producer, w->topic_dlq, id, strlen(id), raw, raw_len, h,
                                     (int)MAAS_ARRAY_LEN(h), NULL, e, sizeof(e));
    if (!err) err = maas_producer_flush(w->producer, 10000, e, sizeof(e));
    if (err) wlog(w, "error", id[0] ? id : NULL, "cannot dead-letter the job: %s", e);
    return err;
}

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
        if (!classes) return MAAS_ERR_NOMEM;
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
                                      .from_mask = FROM_ACTIVE,
                                      .worker = w->cfg.id,
                                      .result = o->bufs[i],
                                      .result_len = len,
                                      .ttl_s = ttl_of(w, &it->job),
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
            maas_err fe = fail_job(w, &it->job, it->msg->value, it->msg->value_len, it->msg->topic,
                                   it->msg->partition, it->msg->offset, err, msg);
            if (fe) return fe;
            it->state = 1;
            continue;
        }
        if ((int)it->job.inputs.cols != ce->model->n_inputs) {
            char msg[MAAS_ERRSTR_SIZE];
            snprintf(msg, sizeof(msg), "field inputs.shape[1]: expected %d, got %u (model %s:%d)",
                     ce->model->n_inputs, it->job.inputs.cols, ce->name, ce->version);
            maas_err fe = fail_job(w, &it->job, it->msg->value, it->msg->value_len, it->msg->topic,
                                   it->msg->partition, it->msg->offset, MAAS_ERR_SHAPE, msg);
            if (fe) return fe;
            it->state = 1;
            continue;
        }
        if (rows + it->job.inputs.rows > (size_t)w->cfg.max_rows) {
            if (nm == 0) {
                char msg[128];
                snprintf(msg, sizeof(msg), "field inputs: %u rows, over the worker's limit of %ld",
                         it->job.inputs.rows, w->cfg.max_rows);
                maas_err fe =
                    fail_job(w, &it->job, it->msg->value, it->msg->value_len, it->msg->topic,
                             it->msg->partition, it->msg->offset, MAAS_ERR_LIMIT, msg);
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
        return MAAS_ERR_NOMEM;
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
static const maas_message *unconfirmed(const worker *w, const maas_message *msgs, int j) {
    for (int b = 0; b < w->n_flights; b++) {
        const infer_flight *f = &w->flight[(w->flight_head + b) % INFER_FLIGHTS];
        if (j < f->n) return &f->msgs[j];
        j -= f->n;
    }
    return &msgs[j];
}

/* Seeks each partition of the batches in flight and of msgs back to its first message
 * there: the earliest unconfirmed offset (the oldest batch's offsets are the lowest). */
static void rewind_all(worker *w, const maas_message *msgs, int n) {
    char e[MAAS_ERRSTR_SIZE];
    int total = n;
    for (int b = 0; b < w->n_flights; b++)
        total += w->flight[(w->flight_head + b) % INFER_FLIGHTS].n;
    for (int j = 0; j < total; j++) {
        const maas_message *m = unconfirmed(w, msgs, j);
        int first = 1;
        for (int k = 0; k < j && first; k++) {
            const maas_message *p = unconfirmed(w, msgs, k);
            if (p->partition == m->partition && !strcmp(p->topic, m->topic)) first = 0;
        }
        if (first) maas_consumer_seek(w->infer_c, m->topic, m->partition, m->offset, e, sizeof(e));
    }
}

/* Stores, per partition, the offset after the batch's last message there. */
static void store_offsets(worker *w, const maas_message *msgs, int n) {
    char e[MAAS_ERRSTR_SIZE];
    for (int i = 0; i < n; i++) {
        int64_t max = msgs[i].offset;
        int first = 1;
        for (int k = 0; k < n; k++)
            if (msgs[k].partition == msgs[i].partition && !strcmp(msgs[k].topic, msgs[i].topic)) {
                if (k < i) first = 0;
                if (msgs[k].offset > max) max = msgs[k].offset;
            }
        if (first && maas_consumer_store(w->infer_c, msgs[i].topic, msgs[i].partition, max + 1, e,
                                         sizeof(e)))
            wlog(w, "warn", NULL, "%s", e); /* lost the partition: redelivery is harmless */
    }
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
    maas_err err =
        res ? maas_kv_job_transition_recv(w->kv_results[slot], res, e, sizeof(e)) : MAAS_ERR_NOMEM;
    if (err) {
        wlog(w, "error", NULL, "cannot write %d results: %s", f->n_results,
             res ? e : "out of memory");
        free(res);
        return err;
    }
    for (int k = 0; k < f->n_results; k++)
        if (res[k] == MAAS_OK) { /* CONFLICT: final already, a redelivered job */
            w->jobs_done++;
            metrics_job(&w->metrics, MAAS_JOBTYPE_INFER, OUT_SUCCEEDED);
        }
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
            de = MAAS_ERR_FORMAT;
            snprintf(e, sizeof(e), "field type: a %s job on the inference topic",
                     maas_job_type_name(it->job.type));
        }
        if (!de && it->job.deadline_ms > 0 && now > it->job.deadline_ms) {
            maas_job_record rec;
            maas_job_record_of(&it->job, &rec);
            maas_job_update u = {.to = MAAS_JOB_EXPIRED,
                                 .from_mask = FROM_ACTIVE,
                                 .error_code = "EXPIRED",
                                 .error_message = "the deadline passed before a worker took it",
                                 .ttl_s = ttl_of(w, &it->job),
                                 .notify = it->job.notify,
                                 .create = &rec};
            err = maas_kv_job_transition(w->kv, it->job.id, &u, e, sizeof(e));
            if (err == MAAS_ERR_CONFLICT) err = MAAS_OK;
            if (!err) {
                wlog(w, "info", it->job.id, "expired before it was computed");
                metrics_job(&w->metrics, MAAS_JOBTYPE_INFER, OUT_EXPIRED);
            }
            it->state = 1;
            continue;
        }
        if (!de && it->job.created_ms > 0)
            metrics_queue_time(&w->metrics, 1, (double)(now - it->job.created_ms) / 1000.0);
        if (de) {
            err = fail_job(w, &it->job, msgs[i].value, msgs[i].value_len, msgs[i].topic,
                           msgs[i].partition, msgs[i].offset, de, e);
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
        err = MAAS_ERR_NOMEM;
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

/* ------------------------------------------------------------ long jobs */

static int task_on_epoch(void *ud, const maas_epoch_log *log) {
    work_task *t = ud;
    pthread_mutex_lock(&t->lock);
    t->progress = *log;
    pthread_mutex_unlock(&t->lock);
    return atomic_load(&t->stop);
}

static int task_on_batch(void *ud, int epoch, size_t batch, size_t n_batches) {
    (void)epoch;
    (void)batch;
    (void)n_batches;
    work_task *t = ud;
    return atomic_load(&t->cancel) || atomic_load(&t->stop);
}

static void *task_main(void *p) {
    work_task *t = p;
    maas_job *j = &t->job;
    maas_matrix *x = &j->data.x, *y = &j->data.y;
    t->rows = x->rows;
    if (j->type == MAAS_JOBTYPE_TRAIN) {
        maas_fit_opts o;
        maas_fit_opts_init(&o);
        o.epochs = j->train.epochs;
        o.batch_size = j->train.batch_size;
        o.shuffle = j->train.shuffle;
        o.validation_split = j->train.validation_split;
        o.standardize = j->train.standardize;
        o.early_stopping = j->train.early_stopping;
        o.monitor = j->train.monitor;
        o.patience = j->train.patience;
        o.min_delta = j->train.min_delta;
        o.restore_best = j->train.restore_best;
        o.rng = &t->rng;
        o.on_epoch = task_on_epoch;
        o.on_batch = task_on_batch;
        o.ud = t;
        t->err = maas_fit(t->model, &t->compile, x->data, y->data, x->rows, &o, &t->history,
                          t->errstr, sizeof(t->errstr));
        if (!t->err && t->history.n_epochs > 0) {
            const maas_epoch_log *last = &t->history.epochs[t->history.n_epochs - 1];
            t->loss = last->loss;
            t->accuracy = last->has_accuracy ? last->accuracy : NAN;
        }
    } else if (j->type == MAAS_JOBTYPE_OPTIMIZE) {
        maas_optimize_opts o;
        maas_optimize_opts_init(&o);
        o.quantize_int8 = j->optimize.quantize_int8;
        o.prune = j->optimize.prune;
        o.finetune_epochs = j->optimize.finetune_epochs;
        if (x->rows > 0) {
            o.compile = &t->compile;
            o.x = x->data;
            o.y = y->data;
            o.rows = x->rows;
        }
        o.rng = &t->rng;
        o.on_epoch = task_on_epoch;
        o.on_batch = task_on_batch;
        o.ud = t;
        t->err = maas_optimize(t->model, &o, &t->opt, t->errstr, sizeof(t->errstr));
        t->rows = t->opt.eval_rows;
        t->loss = t->opt.loss_after;
        t->accuracy = t->opt.acc_after;
    } else {
        t->err = maas_evaluate(t->model, &t->compile, x->data, y->data, x->rows, &t->loss,
                               &t->accuracy, t->errstr, sizeof(t->errstr));
    }
    atomic_store(&t->done, 1);
    return NULL;
}

static void task_free(work_task *t) {
    if (!t) return;
    maas_job_release(&t->job);
    maas_model_free(t->model);
    maas_history_release(&t->history);
    maas_history_release(&t->opt.history);
    free(t->raw);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static void store_work_offset(worker *w, const char *topic, int32_t partition, int64_t offset) {
    char e[MAAS_ERRSTR_SIZE];
    if (maas_consumer_store(w->work_c, topic, partition, offset + 1, e, sizeof(e)))
        wlog(w, "warn", NULL, "%s", e);
}

/* One-hot class indices for categorical cross-entropy, when y has one column. */
static maas_err shape_labels(maas_job *j, const maas_model *m, char *e, size_t es) {
    maas_matrix *y = &j->data.y;
    int want = maas_label_cols(m, j->train.compile.loss);
    if ((int)y->cols == want) return MAAS_OK;
    if (j->train.compile.loss == MAAS_LOSS_CATEGORICAL_CROSSENTROPY && y->cols == 1) {
        float *oh = calloc((size_t)y->rows * want, sizeof(float));
        if (!oh) return MAAS_ERR_NOMEM;
        for (uint32_t r = 0; r < y->rows; r++) {
            float v = y->data[r];
            if (!(v >= 0 && v < want) || v != floorf(v)) {
                free(oh);
                return maas_errf(e, es, MAAS_ERR_LABEL,
                                 "field data.y[%u]: class %g is not an index in 0..%d", r,
                                 (double)v, want - 1);
            }
            oh[(size_t)r * want + (size_t)v] = 1.0f;
        }
        free(y->data);
        y->data = oh;
        y->cols = (uint32_t)want;
        return MAAS_OK;
    }
    return maas_errf(e, es, MAAS_ERR_SHAPE, "field data.y: %u columns, %s on this model needs %d",
                     y->cols, maas_loss_name(j->train.compile.loss), want);
}

/* Prepares the task; on a permanent problem returns its code with the message in e. */
static maas_err prepare(worker *w, work_task *t, char *e, size_t es) {
    maas_job *j = &t->job;
    maas_err err;
    if (j->data.dataset[0]) {
        unsigned char *bytes;
        size_t len;
        if ((err = maas_kv_dataset_get(w->kv, j->data.dataset, &bytes, &len, e, es))) return err;
        err = maas_dataset_decode(bytes, len, &j->data, e, es);
        free(bytes);
        if (err) return err;
    }
    if ((long)j->data.x.rows > w->cfg.max_rows)
        return maas_errf(e, es, MAAS_ERR_LIMIT, "field data.x: %u rows, over the limit of %ld",
                         j->data.x.rows, w->cfg.max_rows);
    if (j->type == MAAS_JOBTYPE_OPTIMIZE) {
        cache_entry *ce;
        if ((err = cache_get(w, j->model.name, j->model.ref, &ce, e, es))) return err;
        if (j->optimize.finetune_epochs > w->cfg.max_epochs)
            return maas_errf(e, es, MAAS_ERR_LIMIT,
                             "field finetune_epochs: %d, over the limit of %d",
                             j->optimize.finetune_epochs, w->cfg.max_epochs);
        int has_data = j->data.x.rows > 0;
        if ((j->optimize.finetune_epochs > 0 || has_data) && !ce->info.has_compile)
            return maas_errf(e, es, MAAS_ERR_ARG,
                             "field data: %s:%d has no training config (loss, optimizer) to "
                             "fine-tune or measure with",
                             ce->name, ce->version);
        if (has_data && (int)j->data.x.cols != ce->model->n_inputs)
            return maas_errf(e, es, MAAS_ERR_SHAPE, "field data.x.shape[1]: expected %d, got %u",
                             ce->model->n_inputs, j->data.x.cols);
        t->compile = ce->info.compile;
        t->has_compile = ce->info.has_compile;
        t->parent_version = ce->version;
        maas_rng_init(&t->rng, (uint64_t)maas_wall_ms());
        if (!(t->model = maas_model_clone(ce->model, e, es))) return MAAS_ERR_NOMEM;
        j->train.compile = t->compile;
        return has_data ? shape_labels(j, t->model, e, es) : MAAS_OK;
    }
    if (j->type == MAAS_JOBTYPE_EVALUATE) {
        cache_entry *ce;
        if ((err = cache_get(w, j->model.name, j->model.ref, &ce, e, es))) return err;
        if (!ce->info.has_compile)
            return maas_errf(e, es, MAAS_ERR_ARG,
                             "model %s:%d has no training config, so no loss to evaluate", ce->name,
                             ce->version);
        if ((int)j->data.x.cols != ce->model->n_inputs)
            return maas_errf(e, es, MAAS_ERR_SHAPE, "field data.x.shape[1]: expected %d, got %u",
                             ce->model->n_inputs, j->data.x.cols);
        t->compile = ce->info.compile;
        t->parent_version = ce->version;
        if (!(t->model = maas_model_clone(ce->model, e, es))) return MAAS_ERR_NOMEM;
        j->train.compile = t->compile;
        return shape_labels(j, t->model, e, es);
    }
    /* train */
    if (j->train.epochs > w->cfg.max_epochs)
        return maas_errf(e, es, MAAS_ERR_LIMIT, "field epochs: %d, over the limit of %d",
                         j->train.epochs, w->cfg.max_epochs);
    t->compile = j->train.compile;
    maas_rng_init(&t->rng, j->train.has_seed ? j->train.seed : (uint64_t)maas_wall_ms());
    int n_in = (int)j->data.x.cols;
    if (j->train.has_from) {
        cache_entry *ce;
        if ((err = cache_get(w, j->train.from.name, j->train.from.ref, &ce, e, es))) return err;
        if (ce->model->n_inputs != n_in || ce->model->n_layers != j->train.n_layers)
            return maas_errf(e, es, MAAS_ERR_SHAPE,
                             "field from: %s:%d has %d inputs and %d layers; the job has %d and %d",
                             ce->name, ce->version, ce->model->n_inputs, ce->model->n_layers, n_in,
                             j->train.n_layers);
        for (int i = 0; i < j->train.n_layers; i++)
            if (ce->model->layers[i].spec.kind != j->train.layers[i].kind ||
                ce->model->layers[i].spec.units != j->train.layers[i].units)
                return maas_errf(e, es, MAAS_ERR_SHAPE,
                                 "field layers[%d]: does not match layer %d of %s:%d", i, i,
                                 ce->name, ce->version);
        if (!(t->model = maas_model_clone(ce->model, e, es))) return MAAS_ERR_NOMEM;
        if (!strcmp(ce->name, j->model.name)) t->parent_version = ce->version;
    } else {
        t->model = maas_model_new(n_in, j->train.layers, j->train.n_layers, &t->rng, e, es);
        if (!t->model) return MAAS_ERR_LIMIT;
    }
    if ((long)t->model->n_params > w->cfg.max_params)
        return maas_errf(e, es, MAAS_ERR_LIMIT, "the network has %zu parameters, over %ld",
                         t->model->n_params, w->cfg.max_params);
    return shape_labels(j, t->model, e, es);
}

void start_work_job(worker *w, maas_message *msg) {
    char e[MAAS_ERRSTR_SIZE];
    work_task *t = calloc(1, sizeof(*t));
    if (!t) return;
    pthread_mutex_init(&t->lock, NULL);
    snprintf(t->topic, sizeof(t->topic), "%s", msg->topic);
    t->partition = msg->partition;
    t->offset = msg->offset;
    t->raw = malloc(msg->value_len ? msg->value_len : 1);
    if (t->raw) memcpy(t->raw, msg->value, msg->value_len);
    t->raw_len = msg->value_len;
    maas_job *j = &t->job;
    maas_err err = maas_job_decode(msg->value, msg->value_len, j, e, sizeof(e));
    if (!err && j->type == MAAS_JOBTYPE_INFER) {
        err = MAAS_ERR_FORMAT;
        snprintf(e, sizeof(e), "field type: an infer job on the work topic");
    }
    if (err) {
        if (!maas_err_retriable(
                fail_job(w, j, t->raw, t->raw_len, t->topic, t->partition, t->offset, err, e)))
            store_work_offset(w, t->topic, t->partition, t->offset);
        task_free(t);
        return;
    }
    maas_job_record rec;
    maas_job_record_of(j, &rec);
    if (j->created_ms > 0)
        metrics_queue_time(&w->metrics, 0, (double)(maas_wall_ms() - j->created_ms) / 1000.0);
    if (j->deadline_ms > 0 && maas_wall_ms() > j->deadline_ms) {
        maas_job_update u = {.to = MAAS_JOB_EXPIRED,
                             .from_mask = FROM_ACTIVE,
                             .error_code = "EXPIRED",
                             .error_message = "the deadline passed before a worker took it",
                             .ttl_s = ttl_of(w, j),
                             .notify = j->notify,
                             .create = &rec};
        err = maas_kv_job_transition(w->kv, j->id, &u, e, sizeof(e));
        if (!err || err == MAAS_ERR_CONFLICT)
            store_work_offset(w, t->topic, t->partition, t->offset);
        wlog(w, "info", j->id, "expired before it was computed");
        metrics_job(&w->metrics, j->type, OUT_EXPIRED);
        task_free(t);
        return;
    }
    maas_job_update run = {.to = MAAS_JOB_RUNNING,
                           .from_mask = FROM_ACTIVE,
                           .worker = w->cfg.id,
                           .ttl_s = ttl_of(w, j),
                           .notify = j->notify,
                           .create = &rec};
    err = maas_kv_job_transition(w->kv, j->id, &run, e, sizeof(e));
    if (err == MAAS_ERR_CONFLICT) {
        /* Final already (done by a worker that died before storing its offset,
         * or cancelled while queued): acknowledge without computing again. */
        wlog(w, "info", j->id, "already final; acknowledged without recomputing");
        store_work_offset(w, t->topic, t->partition, t->offset);
        task_free(t);
        return;
    }
    if (err) {
        wlog(w, "warn", j->id, "cannot start: %s; will retry", e);
        maas_consumer_seek(w->work_c, t->topic, t->partition, t->offset, e, sizeof(e));
        task_free(t);
        struct timespec ts = {0, (300 + rand() % 500) * 1000000L};
        nanosleep(&ts, NULL);
        return;
    }
    maas_job_record now;
    if (maas_kv_job_get(w->kv, j->id, &now, e, sizeof(e)) == MAAS_OK &&
        now.attempts > w->cfg.max_attempts) {
        char why[200];
        snprintf(why, sizeof(why),
                 "started %d times without finishing (a worker died each time?); dead-lettered",
                 now.attempts);
        maas_job_record_release(&now);
        if (!fail_job(w, j, t->raw, t->raw_len, t->topic, t->partition, t->offset, MAAS_ERR_LIMIT,
                      why))
            store_work_offset(w, t->topic, t->partition, t->offset);
        task_free(t);
        return;
    }
    maas_job_record_release(&now);
    err = prepare(w, t, e, sizeof(e));
    if (err) {
        if (maas_err_retriable(err)) {
            wlog(w, "warn", j->id, "cannot prepare: %s; will retry", e);
            maas_consumer_seek(w->work_c, t->topic, t->partition, t->offset, e, sizeof(e));
        } else if (!fail_job(w, j, t->raw, t->raw_len, t->topic, t->partition, t->offset, err, e)) {
            store_work_offset(w, t->topic, t->partition, t->offset);
        }
        task_free(t);
        return;
    }
    /* Long work: pause fetching on the work topic and keep polling (so the group
     * never sees this member as stuck) while a compute thread runs the job. */
    maas_consumer_pause(w->work_c, 1, e, sizeof(e));
    t->started = t->last_heartbeat = maas_mono_s();
    wlog(w, "info", j->id, "%s %s: %u rows, %s", maas_job_type_name(j->type), j->model.name,
         j->data.x.rows,
         j->type == MAAS_JOBTYPE_TRAIN      ? "training"
         : j->type == MAAS_JOBTYPE_OPTIMIZE ? "optimizing"
                                            : "evaluating");
    if (pthread_create(&t->thread, NULL, task_main, t) != 0) {
        maas_consumer_pause(w->work_c, 0, e, sizeof(e));
        maas_consumer_seek(w->work_c, t->topic, t->partition, t->offset, e, sizeof(e));
        task_free(t);
        return;
    }
    w->task = t;
}

/* A training job's version metrics (JSON). */
static void metrics_json(const work_task *t, maas_strbuf *b) {
    maas_strbuf_printf(b, "{\"rows\": %zu, \"loss\": %.9g", t->rows, t->loss);
    if (!isnan(t->accuracy)) maas_strbuf_printf(b, ", \"accuracy\": %.9g", t->accuracy);
    if (t->history.n_epochs > 0) {
        const maas_epoch_log *l = &t->history.epochs[t->history.n_epochs - 1];
        maas_strbuf_printf(b, ", \"epochs\": %d", t->history.n_epochs);
        if (l->has_val) maas_strbuf_printf(b, ", \"val_loss\": %.9g", l->val_loss);
        if (l->has_val && l->has_accuracy)
            maas_strbuf_printf(b, ", \"val_accuracy\": %.9g", l->val_accuracy);
    }
    maas_strbuf_printf(b, "}");
}

/* A training job's version config: what was done (JSON). */
static void train_config_json(const work_task *t, maas_strbuf *b) {
    maas_strbuf_printf(b,
                       "{\"loss\": \"%s\", \"optimizer\": \"%s\", \"learning_rate\": %.9g, "
                       "\"epochs\": %d, \"batch_size\": %d}",
                       maas_loss_name(t->compile.loss), maas_opt_name(t->compile.optim.kind),
                       (double)t->compile.optim.learning_rate, t->job.train.epochs,
                       t->job.train.batch_size);
}

/* An optimize job's effects (the version's metrics) and what was done (its config). */
static void optimize_json(const work_task *t, maas_strbuf *effects, maas_strbuf *config) {
    const maas_optimize_report *r = &t->opt;
    maas_strbuf *b = effects;
    maas_strbuf_printf(b, "{\"bytes_before\": %zu, \"bytes_after\": %zu, \"size_ratio\": %.4g",
                       r->bytes_before, r->bytes_after,
                       (double)r->bytes_before / (double)r->bytes_after);
    maas_strbuf_printf(b, ", \"predict_us_before\": %.4g, \"predict_us_after\": %.4g", r->us_before,
                       r->us_after);
    if (r->eval_rows > 0) {
        maas_strbuf_printf(b, ", \"rows\": %zu, \"loss_before\": %.9g, \"loss\": %.9g",
                           r->eval_rows, r->loss_before, r->loss_after);
        if (!isnan(r->acc_before))
            maas_strbuf_printf(b, ", \"accuracy_before\": %.9g, \"accuracy\": %.9g", r->acc_before,
                               r->acc_after);
    }
    if (r->pruned) {
        maas_strbuf_printf(b, ", \"sparsity\": %.6g, \"sparsity_per_layer\": [",
                           r->prune.total_sparsity);
        int first = 1;
        for (int i = 0; i < t->model->n_layers; i++)
            if (t->model->layers[i].spec.kind == MAAS_LAYER_DENSE) {
                maas_strbuf_printf(b, "%s%.6g", first ? "" : ", ", r->prune.sparsity[i]);
                first = 0;
            }
        maas_strbuf_printf(b, "]");
    }
    maas_strbuf_printf(b, "}");
    const maas_optimize_spec *o = &t->job.optimize;
    maas_strbuf_printf(config,
                       "{\"method\": \"optimize\", \"quantize\": %s, \"prune\": %.6g, "
                       "\"finetune_epochs\": %d, \"parent\": %d, \"int8_kernel\": \"%s\"}",
                       o->quantize_int8 ? "\"int8\"" : "null", (double)o->prune, r->finetune_epochs,
                       t->parent_version, r->kernel ? r->kernel : "");
}

/* Writes what the finished task produced; a retriable error keeps the task for later. */
static maas_err finalize(worker *w, work_task *t) {
    char e[MAAS_ERRSTR_SIZE];
    maas_job *j = &t->job;
    maas_err err;
    if (t->err == MAAS_ERR_CANCELLED && atomic_load(&t->stop)) {
        /* Shutdown: leave the job to be redelivered; its record stays running. */
        wlog(w, "info", j->id, "stopped by shutdown; the job will run again elsewhere");
        return MAAS_OK;
    }
    if (atomic_load(&t->lost)) {
        /* A rebalance gave the partition (and so the job) to another worker, or the
         * record went back to the queue: the record is not ours to write, and the
         * offset is the new owner's to store. */
        wlog(w, "info", j->id, "left to its new owner after %.1fs; nothing written",
             maas_mono_s() - t->started);
        return MAAS_OK;
    }
    if (t->err == MAAS_ERR_CANCELLED) {
        maas_job_update u = {.to = MAAS_JOB_CANCELLED,
                             .from_mask = FROM_ACTIVE,
                             .error_code = "CANCELLED",
                             .error_message = "cancelled on request",
                             .ttl_s = ttl_of(w, j),
                             .notify = j->notify};
        err = maas_kv_job_transition(w->kv, j->id, &u, e, sizeof(e));
        if (err && err != MAAS_ERR_CONFLICT) return err;
        wlog(w, "info", j->id, "cancelled after %.1fs", maas_mono_s() - t->started);
        metrics_job(&w->metrics, j->type, OUT_CANCELLED);
        store_work_offset(w, t->topic, t->partition, t->offset);
        return MAAS_OK;
    }
    if (t->err) {
        err = fail_job(w, j, t->raw, t->raw_len, t->topic, t->partition, t->offset, t->err,
                       t->errstr);
        if (err) return err;
        store_work_offset(w, t->topic, t->partition, t->offset);
        return MAAS_OK;
    }
    maas_result r;
    maas_result_init(&r, j->type);
    snprintf(r.model, sizeof(r.model), "%s", j->model.name);
    r.rows = t->rows;
    r.loss = t->loss;
    r.accuracy = t->accuracy;
    r.version = t->parent_version;
    maas_history_entry *hist = NULL; /* every epoch (the result's contract), on the heap */
    if (j->type == MAAS_JOBTYPE_TRAIN || j->type == MAAS_JOBTYPE_OPTIMIZE) {
        /* a new version: the model file, what was measured, what was done */
        unsigned char *h5;
        size_t len;
        const maas_compile *c =
            j->type == MAAS_JOBTYPE_TRAIN || t->has_compile ? &t->compile : NULL;
        if ((err = maas_model_save_image(t->model, c, &h5, &len, e, sizeof(e)))) {
            fail_job(w, j, t->raw, t->raw_len, t->topic, t->partition, t->offset, err, e);
            store_work_offset(w, t->topic, t->partition, t->offset);
            return MAAS_OK;
        }
        maas_strbuf metrics_text = {0}, config = {0};
        if (j->type == MAAS_JOBTYPE_OPTIMIZE) {
            optimize_json(t, &metrics_text, &config);
        } else {
            metrics_json(t, &metrics_text);
            train_config_json(t, &config);
        }
        int version, created;
        if (metrics_text.oom || config.oom)
            err = maas_errf(e, sizeof(e), MAAS_ERR_NOMEM, "out of memory for the version's JSON");
        else
            err =
                maas_kv_version_create(w->kv, j->model.name, j->id, t->parent_version, h5, len,
                                       metrics_text.p, config.p, &version, &created, e, sizeof(e));
        free(h5);
        free(metrics_text.p);
        free(config.p);
        if (err) {
            wlog(w, "warn", j->id, "cannot store the version: %s", e);
            return err;
        }
        r.version = version;
        r.created = created;
        const maas_history *th = j->type == MAAS_JOBTYPE_OPTIMIZE ? &t->opt.history : &t->history;
        int n = th->n_epochs;
        if (n > 0 && !(hist = malloc((size_t)n * sizeof(*hist)))) return MAAS_ERR_NOMEM;
        for (int i = 0; i < n; i++) {
            const maas_epoch_log *l = &th->epochs[i];
            hist[i] = (maas_history_entry){l->epoch, l->loss, l->has_accuracy ? l->accuracy : NAN,
                                           l->has_val ? l->val_loss : NAN,
                                           l->has_val && l->has_accuracy ? l->val_accuracy : NAN};
        }
        r.history = hist;
        r.n_history = n;
    }
    unsigned char *buf;
    size_t len;
    err = maas_result_encode(&r, &buf, &len, e, sizeof(e));
    r.history = NULL; /* ours, not the result's */
    free(hist);
    if (err) return err;
    maas_job_update u = {.to = MAAS_JOB_SUCCEEDED,
                         .from_mask = FROM_ACTIVE,
                         .result = buf,
                         .result_len = len,
                         .ttl_s = ttl_of(w, j),
                         .notify = j->notify};
    err = maas_kv_job_transition(w->kv, j->id, &u, e, sizeof(e));
    free(buf);
    if (err && err != MAAS_ERR_CONFLICT) return err;
    w->jobs_done++;
    metrics_job(&w->metrics, j->type, OUT_SUCCEEDED);
    metrics_compute_time(&w->metrics, j->type, maas_mono_s() - t->started);
    wlog(w, "info", j->id, "%s done in %.1fs: version %d, loss %.4f", maas_job_type_name(j->type),
         maas_mono_s() - t->started, r.version, t->loss);
    store_work_offset(w, t->topic, t->partition, t->offset);
    return MAAS_OK;
}

void poll_work_task(worker *w) {
    work_task *t = w->task;
    char e[MAAS_ERRSTR_SIZE];
    if (!t) return;
    if (!atomic_load(&t->done)) {
        double now = maas_mono_s();
        if (now - t->last_heartbeat < 1.0) return;
        t->last_heartbeat = now;
        char progress[512];
        pthread_mutex_lock(&t->lock);
        maas_epoch_log p = t->progress;
        pthread_mutex_unlock(&t->lock);
        int planned = t->job.type == MAAS_JOBTYPE_OPTIMIZE ? t->job.optimize.finetune_epochs
                                                           : t->job.train.epochs;
        int n = snprintf(progress, sizeof(progress), "{\"epoch\": %d, \"epochs\": %d", p.epoch,
                         planned);
        if (p.epoch > 0) {
            double eta = (now - t->started) / p.epoch * (planned - p.epoch);
            n += snprintf(progress + n, sizeof(progress) - (size_t)n,
                          ", \"loss\": %.6g, \"eta_s\": %.1f", p.loss, eta);
            if (p.has_accuracy)
                n += snprintf(progress + n, sizeof(progress) - (size_t)n, ", \"accuracy\": %.6g",
                              p.accuracy);
            if (p.has_val)
                n += snprintf(progress + n, sizeof(progress) - (size_t)n, ", \"val_loss\": %.6g",
                              p.val_loss);
            if (p.has_val && p.has_accuracy)
                n += snprintf(progress + n, sizeof(progress) - (size_t)n,
                              ", \"val_accuracy\": %.6g", p.val_accuracy);
        }
        snprintf(progress + n, sizeof(progress) - (size_t)n, "}");
        maas_err err = maas_kv_job_heartbeat(w->kv, t->job.id, w->cfg.id, progress, e, sizeof(e));
        if (err == MAAS_ERR_CANCELLED || err == MAAS_ERR_CONFLICT) {
            wlog(w, "info", t->job.id, "%s: stopping the computation",
                 err == MAAS_ERR_CANCELLED ? "cancel requested"
                                           : "the record moved on (another worker owns the job)");
            if (err == MAAS_ERR_CONFLICT) atomic_store(&t->lost, 1);
            atomic_store(&t->cancel, 1);
        }
        return;
    }
    if (!t->joined) pthread_join(t->thread, NULL);
    t->joined = 1;
    maas_err err = finalize(w, t);
    if (maas_err_retriable(err)) {
        /* keep the finished task; try writing again shortly */
        struct timespec ts = {0, (200 + rand() % 300) * 1000000L};
        nanosleep(&ts, NULL);
        return;
    }
    maas_consumer_pause(w->work_c, 0, e, sizeof(e));
    w->task = NULL;
    task_free(t);
}
