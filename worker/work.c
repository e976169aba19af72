/*
 * Work jobs (train, evaluate, optimize): prepared on the main thread, computed
 * on a compute thread while the main thread keeps polling, finalized (the
 * version, the record, the offset) back on the main thread. Every effect is
 * idempotent by job id; the offset is stored only after the record is final.
 */
#include "maas/base.h"
#include "maas/strbuf.h"
#include "maas/train.h"
#include "worker.h"

#include <time.h>

/* Where a work task's message came from (for job_fail's dead letter). */
#define TASK_SOURCE(t)                                                                             \
    (&(job_source){(t)->raw, (t)->raw_len, (t)->topic, (t)->partition, (t)->offset})

/* ------------------------------------------------------------ long jobs */

static int task_on_epoch(void *ud, const maas_epoch_log *log) {
    work_task *t = ud;
    pthread_mutex_lock(&t->lock);
    t->progress = *log;
    if (t->n_epochs == t->cap_epochs) { /* a curve point lost to memory is not worth a failure */
        int cap = t->cap_epochs ? 2 * t->cap_epochs : 64;
        maas_epoch_log *e = realloc(t->epochs, (size_t)cap * sizeof(*e));
        if (e) {
            t->epochs = e;
            t->cap_epochs = cap;
        }
    }
    if (t->n_epochs < t->cap_epochs) t->epochs[t->n_epochs++] = *log;
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
    double cpu0 = maas_thread_cpu_s(), wall0 = maas_mono_s();
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
        o.quantize = j->optimize.quantize;
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
    t->cpu_s = maas_thread_cpu_s() - cpu0; /* read by the main thread after the join */
    t->compute_s = maas_mono_s() - wall0;
    atomic_store(&t->done, 1);
    return NULL;
}

static void task_free(work_task *t) {
    if (!t) return;
    free(t->epochs);
    maas_job_release(&t->job);
    maas_model_free(t->model);
    maas_history_release(&t->history);
    maas_history_release(&t->opt.history);
    free(t->raw);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/*
 * The one rule for a work job's offset: it is stored only once the job's outcome is
 * durable (outcome MAAS_OK: its record final, or its dead letter written). Any other
 * outcome (Redis or Kafka away, a write refused) rewinds the partition to the job, which
 * comes back after a pause: nothing is skipped because a later job's offset was stored.
 */
static void work_ack(worker *w, const char *topic, int32_t partition, int64_t offset,
                     maas_err outcome) {
    char e[MAAS_ERRSTR_SIZE];
    if (outcome == MAAS_OK) {
        if (maas_consumer_store(w->work_c, topic, partition, offset + 1, e, sizeof(e)))
            wlog(w, "warn", NULL, "%s", e); /* lost the partition: redelivery is harmless */
        return;
    }
    wlog(w, "warn", NULL, "%s[%d]@%lld: its outcome is not stored (%s); it will be redelivered",
         topic, (int)partition, (long long)offset, maas_err_code(outcome));
    if (maas_consumer_seek(w->work_c, topic, partition, offset, e, sizeof(e)))
        wlog(w, "warn", NULL, "%s", e); /* lost the partition: its new owner has it */
    struct timespec ts = {0, (300 + rand() % 500) * 1000000L};
    nanosleep(&ts, NULL);
}

#define TASK_ACK(w, t, outcome) work_ack((w), (t)->topic, (t)->partition, (t)->offset, (outcome))

/* One-hot class indices for categorical cross-entropy, when y has one column. */
static maas_err shape_labels(maas_job *j, const maas_model *m, char *e, size_t es) {
    maas_matrix *y = &j->data.y;
    int want = maas_label_cols(m, j->train.compile.loss);
    if ((int)y->cols == want) return MAAS_OK;
    if (j->train.compile.loss == MAAS_LOSS_CATEGORICAL_CROSSENTROPY && y->cols == 1) {
        float *oh = calloc((size_t)y->rows * want, sizeof(float));
        if (!oh) return MAAS_ERR_OUT_OF_MEMORY;
        for (uint32_t r = 0; r < y->rows; r++) {
            float v = y->data[r];
            if (!(v >= 0 && v < want) || v != floorf(v)) {
                free(oh);
                return maas_errf(e, es, MAAS_ERR_LABEL_OUT_OF_RANGE,
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
    return maas_errf(e, es, MAAS_ERR_SHAPE_MISMATCH,
                     "field data.y: %u columns, %s on this model needs %d", y->cols,
                     maas_loss_name(j->train.compile.loss), want);
}

/*
 * Checks a work job against the worker's budget (--memory-mb) from the shapes alone,
 * before its network or any buffer of it is allocated: LIMIT_EXCEEDED naming the need.
 */
static maas_err check_budget(const worker *w, const maas_job *j, const maas_net_size *ns, int n_in,
                             maas_loss loss, int epochs, double *need_out, char *e, size_t es) {
    if (ns->n_params > (size_t)w->cfg.max_params)
        return maas_errf(e, es, MAAS_ERR_LIMIT_EXCEEDED,
                         "field layers: the network has %zu parameters, over the limit of %ld "
                         "(--max-params)",
                         ns->n_params, w->cfg.max_params);
    int label_cols = loss == MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY ? 1 : ns->n_outputs;
    int batch = j->train.batch_size > 0 ? j->train.batch_size : 32;
    double need = maas_fit_bytes(ns, n_in, label_cols, j->data.x.rows, batch, epochs);
    *need_out = need; /* the job's cost record counts its memory so */
    if (need > (double)w->cfg.work_bytes)
        return maas_errf(e, es, MAAS_ERR_LIMIT_EXCEEDED,
                         "the job needs %.0f MiB (%zu parameters, %u rows, batch %d), over the "
                         "worker's budget of %zu MiB for a work job (--memory-mb)",
                         need / 1048576.0, ns->n_params, j->data.x.rows, batch,
                         w->cfg.work_bytes >> 20);
    return MAAS_OK;
}

/* The size of a loaded model's network. */
static void model_size(const maas_model *m, maas_net_size *ns) {
    maas_layer_spec specs[MAAS_MAX_LAYERS];
    for (int i = 0; i < m->n_layers; i++) specs[i] = m->layers[i].spec;
    if (maas_layers_size(m->n_inputs, specs, m->n_layers, ns, NULL, 0))
        memset(ns, 0, sizeof(*ns)); /* cannot happen: it was built from these */
}

/* Prepares the task; on a permanent problem returns its code with the message in e. */
static maas_err prepare(worker *w, work_task *t, char *e, size_t es) {
    maas_job *j = &t->job;
    maas_err err;
    if (j->data.dataset[0]) {
        unsigned char *bytes;
        size_t len;
        if ((err = maas_kv_dataset_get(worker_kv(w, t->tenant), j->data.dataset, &bytes, &len, e,
                                       es)))
            return err;
        err = maas_dataset_decode(bytes, len, &j->data, e, es);
        free(bytes);
        if (err) return err;
    }
    if ((long)j->data.x.rows > w->cfg.max_rows)
        return maas_errf(e, es, MAAS_ERR_LIMIT_EXCEEDED,
                         "field data.x: %u rows, over the limit of %ld", j->data.x.rows,
                         w->cfg.max_rows);
    if (j->type == MAAS_JOBTYPE_OPTIMIZE) {
        cache_entry *ce;
        if ((err = cache_get(w, t->tenant, j->model.name, j->model.ref, &ce, e, es))) return err;
        if (j->optimize.finetune_epochs > w->cfg.max_epochs)
            return maas_errf(e, es, MAAS_ERR_LIMIT_EXCEEDED,
                             "field finetune_epochs: %d, over the limit of %d",
                             j->optimize.finetune_epochs, w->cfg.max_epochs);
        int has_data = j->data.x.rows > 0;
        if ((j->optimize.finetune_epochs > 0 || has_data) && !ce->info.has_compile)
            return maas_errf(e, es, MAAS_ERR_INVALID_ARGUMENT,
                             "field data: %s:%d has no training config (loss, optimizer) to "
                             "fine-tune or measure with",
                             ce->name, ce->version);
        char label[MAAS_NAME_MAX + 16];
        if (has_data &&
            (err = maas_matrix_check_rows(&j->data.x, ce->model, "data.x",
                                          model_label(ce, label, sizeof(label)), e, es)))
            return err;
        maas_net_size ns;
        model_size(ce->model, &ns);
        if ((err = check_budget(w, j, &ns, ce->model->n_inputs, ce->info.compile.loss,
                                j->optimize.finetune_epochs, &t->peak_bytes, e, es)))
            return err;
        t->compile = ce->info.compile;
        t->has_compile = ce->info.has_compile;
        t->parent_version = ce->version;
        maas_rng_init(&t->rng, (uint64_t)maas_wall_ms());
        if (!(t->model = maas_model_clone(ce->model, e, es))) return MAAS_ERR_OUT_OF_MEMORY;
        j->train.compile = t->compile;
        return has_data ? shape_labels(j, t->model, e, es) : MAAS_OK;
    }
    if (j->type == MAAS_JOBTYPE_EVALUATE) {
        cache_entry *ce;
        if ((err = cache_get(w, t->tenant, j->model.name, j->model.ref, &ce, e, es))) return err;
        if (!ce->info.has_compile)
            return maas_errf(e, es, MAAS_ERR_INVALID_ARGUMENT,
                             "model %s:%d has no training config, so no loss to evaluate", ce->name,
                             ce->version);
        char label[MAAS_NAME_MAX + 16];
        if ((err = maas_matrix_check_rows(&j->data.x, ce->model, "data.x",
                                          model_label(ce, label, sizeof(label)), e, es)))
            return err;
        maas_net_size ns;
        model_size(ce->model, &ns);
        if ((err = check_budget(w, j, &ns, ce->model->n_inputs, ce->info.compile.loss, 0,
                                &t->peak_bytes, e, es)))
            return err;
        t->compile = ce->info.compile;
        t->parent_version = ce->version;
        if (!(t->model = maas_model_clone(ce->model, e, es))) return MAAS_ERR_OUT_OF_MEMORY;
        j->train.compile = t->compile;
        return shape_labels(j, t->model, e, es);
    }
    /* train */
    if (j->train.epochs > w->cfg.max_epochs)
        return maas_errf(e, es, MAAS_ERR_LIMIT_EXCEEDED, "field epochs: %d, over the limit of %d",
                         j->train.epochs, w->cfg.max_epochs);
    t->compile = j->train.compile;
    maas_rng_init(&t->rng, j->train.has_seed ? j->train.seed : (uint64_t)maas_wall_ms());
    int n_in = (int)j->data.x.cols;
    maas_net_size ns;
    if ((err = maas_layers_size(n_in, j->train.layers, j->train.n_layers, &ns, e, es)) ||
        (err = check_budget(w, j, &ns, n_in, j->train.compile.loss, j->train.epochs, &t->peak_bytes,
                            e, es)))
        return err;
    if (j->train.has_from) {
        cache_entry *ce;
        if ((err = cache_get(w, t->tenant, j->train.from.name, j->train.from.ref, &ce, e, es)))
            return err;
        if (ce->model->n_inputs != n_in || ce->model->n_layers != j->train.n_layers)
            return maas_errf(e, es, MAAS_ERR_SHAPE_MISMATCH,
                             "field from: %s:%d has %d inputs and %d layers; the job has %d and %d",
                             ce->name, ce->version, ce->model->n_inputs, ce->model->n_layers, n_in,
                             j->train.n_layers);
        for (int i = 0; i < j->train.n_layers; i++)
            if (ce->model->layers[i].spec.kind != j->train.layers[i].kind ||
                ce->model->layers[i].spec.units != j->train.layers[i].units)
                return maas_errf(e, es, MAAS_ERR_SHAPE_MISMATCH,
                                 "field layers[%d]: does not match layer %d of %s:%d", i, i,
                                 ce->name, ce->version);
        if (!(t->model = maas_model_clone(ce->model, e, es))) return MAAS_ERR_OUT_OF_MEMORY;
        if (!strcmp(ce->name, j->model.name)) t->parent_version = ce->version;
    } else {
        maas_err merr =
            maas_model_create(&t->model, n_in, j->train.layers, j->train.n_layers, &t->rng, e, es);
        /* a network this worker cannot allocate fails alone (LIMIT), never retried forever */
        if (merr) return merr == MAAS_ERR_OUT_OF_MEMORY ? MAAS_ERR_LIMIT_EXCEEDED : merr;
    }
    /* rows sent as images ([rows, h, w, c]) must be what the layers reshape them to */
    if ((err = maas_matrix_check_rows(&j->data.x, t->model, "data.x", j->model.name, e, es)))
        return err;
    return shape_labels(j, t->model, e, es);
}

void start_work_job(worker *w, maas_message *msg) {
    char e[MAAS_ERRSTR_SIZE];
    work_task *t = calloc(1, sizeof(*t));
    unsigned char *raw = malloc(msg->value_len ? msg->value_len : 1);
    if (!t || !raw) { /* not even the message can be kept: back to it after a pause */
        free(t);
        free(raw);
        work_ack(w, msg->topic, msg->partition, msg->offset, MAAS_ERR_OUT_OF_MEMORY);
        return;
    }
    pthread_mutex_init(&t->lock, NULL);
    snprintf(t->topic, sizeof(t->topic), "%s", msg->topic);
    worker_tenant_of(w, msg->topic, t->tenant); /* the broker's word, not the message's */
    t->partition = msg->partition;
    t->offset = msg->offset;
    t->raw = raw;
    if (msg->value_len) memcpy(t->raw, msg->value, msg->value_len);
    t->raw_len = msg->value_len;
    maas_job *j = &t->job;
    maas_err err = maas_job_decode(msg->value, msg->value_len, j, e, sizeof(e));
    if (!j->created_ms) j->created_ms = msg->timestamp_ms; /* sent without: its Kafka time */
    if (!err && j->type == MAAS_JOBTYPE_INFER) {
        err = MAAS_ERR_BAD_FORMAT;
        snprintf(e, sizeof(e), "field type: an infer job on the work topic");
    }
    if (err) {
        TASK_ACK(w, t, job_fail(w, j, TASK_SOURCE(t), err, e));
        task_free(t);
        return;
    }
    maas_job_record rec;
    maas_job_record_of_message(j, t->raw, t->raw_len, &rec);
    if (j->created_ms > 0)
        metrics_queue_time(&w->metrics, 0, (double)(maas_wall_ms() - j->created_ms) / 1000.0);
    if (j->deadline_ms > 0 && maas_wall_ms() > j->deadline_ms) {
        TASK_ACK(w, t, job_expire(w, j, TASK_SOURCE(t)));
        task_free(t);
        return;
    }
    /* Prepared (its dataset and model read) before it is marked running: a Redis that is
     * away meanwhile (a failover) then costs the job no attempt - attempts count starts,
     * and --max-attempts is for jobs that kill their workers. A final record (a
     * redelivery) is acknowledged first, so a failing preparation cannot dead-letter it. */
    maas_job_record cur;
    err = maas_kv_job_get(worker_kv(w, t->tenant), j->id, &cur, e, sizeof(e));
    /* ... when it is this message's record (type, model, digest: as the transition checks;
     * another job's record is left to the transition to refuse, MISMATCH) */
    int final = !err && MAAS_JOB_FINAL(cur.state) && !strcmp(cur.type, rec.type) &&
                !strcmp(cur.model, rec.model) &&
                (!cur.digest[0] || !rec.digest[0] || !strcmp(cur.digest, rec.digest));
    if (!err) maas_job_record_release(&cur);
    if (final) {
        wlog(w, "info", j->id, "already final; acknowledged without recomputing");
        TASK_ACK(w, t, MAAS_OK);
        task_free(t);
        return;
    }
    if (!err) err = prepare(w, t, e, sizeof(e));
    if (err) {
        if (maas_err_retriable(err)) {
            wlog(w, "warn", j->id, "cannot prepare: %s; will retry", e);
            TASK_ACK(w, t, err);
        } else {
            TASK_ACK(w, t, job_fail(w, j, TASK_SOURCE(t), err, e));
        }
        task_free(t);
        return;
    }
    int attempts = 0;
    maas_job_update run = {.to = MAAS_JOB_RUNNING,
                           .from_mask = JOB_FROM_ACTIVE,
                           .worker = w->cfg.id,
                           .ttl_s = job_ttl(w, j),
                           .notify = j->notify,
                           .create = &rec,
                           .attempts = &attempts};
    err = maas_kv_job_transition(worker_kv(w, t->tenant), j->id, &run, e, sizeof(e));
    if (err == MAAS_ERR_CONFLICT) {
        /* Final already (done by a worker that died before storing its offset,
         * or cancelled while queued): acknowledge without computing again. */
        wlog(w, "info", j->id, "already final; acknowledged without recomputing");
        TASK_ACK(w, t, MAAS_OK);
        task_free(t);
        return;
    }
    if (err == MAAS_ERR_MISMATCH) { /* another job's record: not ours to start */
        TASK_ACK(w, t, job_reject(w, j->id, TASK_SOURCE(t), MAAS_ERR_MISMATCH, e));
        task_free(t);
        return;
    }
    if (err) {
        wlog(w, "warn", j->id, "cannot start: %s; will retry", e);
        TASK_ACK(w, t, err);
        task_free(t);
        return;
    }
    if (attempts > w->cfg.max_attempts) { /* as the move to running counted them */
        char why[200];
        snprintf(why, sizeof(why),
                 "started %d times without finishing (a worker died each time?); dead-lettered",
                 attempts);
        TASK_ACK(w, t, job_fail(w, j, TASK_SOURCE(t), MAAS_ERR_LIMIT_EXCEEDED, why));
        task_free(t);
        return;
    }
    /* Long work: pause fetching on the work topic and keep polling (so the group
     * never sees this member as stuck) while a compute thread runs the job. */
    maas_consumer_pause(w->work_c, 1, e, sizeof(e));
    t->started = t->last_heartbeat = maas_mono_s();
    t->started_ms = maas_wall_ms();
    wlog(w, "info", j->id, "%s %s: %u rows, %s", maas_job_type_name(j->type), j->model.name,
         j->data.x.rows,
         j->type == MAAS_JOBTYPE_TRAIN      ? "training"
         : j->type == MAAS_JOBTYPE_OPTIMIZE ? "optimizing"
                                            : "evaluating");
    if (pthread_create(&t->thread, NULL, task_main, t) != 0) {
        maas_consumer_pause(w->work_c, 0, e, sizeof(e));
        TASK_ACK(w, t, MAAS_ERR_UNAVAILABLE);
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
static void optimize_json(const work_task *t, const maas_job_cost *cost, maas_strbuf *effects,
                          maas_strbuf *config) {
    const maas_optimize_report *r = &t->opt;
    maas_strbuf *b = effects;
    maas_strbuf_printf(b, "{\"bytes_before\": %zu, \"bytes_after\": %zu, \"size_ratio\": %.4g",
                       r->bytes_before, r->bytes_after,
                       (double)r->bytes_before / (double)r->bytes_after);
    maas_strbuf_printf(b, ", \"predict_us_before\": %.4g, \"predict_us_after\": %.4g", r->us_before,
                       r->us_after);
    /* a single-row prediction's time x the watts of the core running it */
    maas_strbuf_printf(b,
                       ", \"energy_per_1000_j_before\": %.4g, \"energy_per_1000_j_after\": %.4g, "
                       "\"energy_method\": \"%s\"",
                       r->us_before * 1e-3 * cost->watts, r->us_after * 1e-3 * cost->watts,
                       cost->method);
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
            if (t->model->layers[i].spec.kind == MAAS_LAYER_DENSE ||
                t->model->layers[i].spec.kind == MAAS_LAYER_CONV) {
                maas_strbuf_printf(b, "%s%.6g", first ? "" : ", ", r->prune.sparsity[i]);
                first = 0;
            }
        maas_strbuf_printf(b, "]");
    }
    maas_strbuf_printf(b, "}");
    const maas_optimize_spec *o = &t->job.optimize;
    maas_strbuf_printf(config,
                       "{\"method\": \"optimize\", \"quantize\": %s, \"prune\": %.6g, "
                       "\"finetune_epochs\": %d, \"parent\": %d, \"%s_kernel\": \"%s\"}",
                       o->quantize == MAAS_QUANT_BF16   ? "\"bf16\""
                       : o->quantize == MAAS_QUANT_INT8 ? "\"int8\""
                                                        : "null",
                       (double)o->prune, r->finetune_epochs, t->parent_version,
                       o->quantize == MAAS_QUANT_BF16 ? "bf16" : "int8",
                       r->kernel ? r->kernel : "");
}

/* One epoch as the live curves' JSON (maas_kv_job_epochs_append). */
static void epoch_json(const maas_epoch_log *l, maas_strbuf *b) {
    maas_strbuf_printf(b, "{\"epoch\": %d, \"epochs\": %d, \"loss\": %.9g, \"seconds\": %.6g",
                       l->epoch, l->epochs, l->loss, l->seconds);
    if (l->has_accuracy && isfinite(l->accuracy))
        maas_strbuf_printf(b, ", \"accuracy\": %.9g", l->accuracy);
    if (l->has_val && isfinite(l->val_loss))
        maas_strbuf_printf(b, ", \"val_loss\": %.9g", l->val_loss);
    if (l->has_val && l->has_accuracy && isfinite(l->val_accuracy))
        maas_strbuf_printf(b, ", \"val_accuracy\": %.9g", l->val_accuracy);
    maas_strbuf_printf(b, "}");
}

/* Stores the epochs the task finished since the last call (the live curves); a failure is
 * logged and tried again at the next heartbeat. Main thread. */
static void push_epochs(worker *w, work_task *t) {
    char e[MAAS_ERRSTR_SIZE];
    pthread_mutex_lock(&t->lock);
    int from = t->epochs_pushed, n = t->n_epochs - from;
    maas_strbuf *lines = n > 0 ? calloc((size_t)n, sizeof(*lines)) : NULL;
    for (int i = 0; lines && i < n; i++) epoch_json(&t->epochs[from + i], &lines[i]);
    pthread_mutex_unlock(&t->lock);
    if (!lines) return;
    const char **v = malloc((size_t)n * sizeof(*v));
    int ok = v != NULL;
    for (int i = 0; ok && i < n; i++) ok = lines[i].p && !lines[i].oom && (v[i] = lines[i].p);
    /* they live as long as the record may: its TTL after the longest a job may still run */
    int ttl = job_ttl(w, &t->job);
    if (ok && ttl > 0) ttl += w->cfg.max_job_s;
    if (ok && maas_kv_job_epochs_append(worker_kv(w, t->tenant), t->job.id, from == 0, v, n, ttl, e,
                                        sizeof(e)) == MAAS_OK)
        t->epochs_pushed = from + n;
    else if (ok)
        wlog(w, "warn", t->job.id, "cannot store the epochs' curves: %s; will retry", e);
    for (int i = 0; i < n; i++) free(lines[i].p);
    free(lines);
    free(v);
}

/* The operations a finished (or stopped) task performed, counted from its shapes and what it
 * ran: the epochs it completed, the rows it evaluated and the predictions it timed. */
static double task_flops(const work_task *t) {
    const maas_job *j = &t->job;
    const maas_model *m = t->model;
    if (!m) return 0;
    size_t n_train, n_val;
    if (j->type == MAAS_JOBTYPE_TRAIN) {
        int epochs = t->history.n_epochs;
        if (!epochs) { /* stopped: the epochs it finished */
            pthread_mutex_lock((pthread_mutex_t *)&t->lock);
            epochs = t->progress.epoch;
            pthread_mutex_unlock((pthread_mutex_t *)&t->lock);
        }
        maas_fit_split(j->data.x.rows, j->train.validation_split, &n_train, &n_val);
        return maas_flops_fit(m, epochs, n_train, n_val);
    }
    if (j->type == MAAS_JOBTYPE_EVALUATE)
        return t->err ? 0 : (double)j->data.x.rows * maas_flops_forward(m);
    /* optimize: the timed predictions, the held-out rows before and after, fine-tuning */
    const maas_optimize_report *r = &t->opt;
    double f = ((double)r->latency_rows + 2.0 * (double)r->eval_rows) * maas_flops_forward(m);
    if (j->optimize.finetune_epochs > 0)
        f += maas_flops_fit(m, r->history.n_epochs, j->data.x.rows - r->eval_rows, 0);
    return f;
}

/* What the task cost (maas/cost.h). */
static void task_cost(const worker *w, const work_task *t, maas_job_cost *c) {
    memset(c, 0, sizeof(*c));
    if (t->job.created_ms > 0 && t->started_ms > t->job.created_ms)
        c->queue_s = (double)(t->started_ms - t->job.created_ms) / 1e3;
    c->cpu_s = t->cpu_s;
    c->compute_s = t->compute_s;
    c->flops = task_flops(t);
    c->peak_bytes = t->peak_bytes;
    maas_energy_charge(&w->energy, c);
}

/* ", \"name\": v" - null when v is not finite (JSON has no nan). */
static void progress_num(maas_strbuf *b, const char *name, double v) {
    if (isfinite(v))
        maas_strbuf_printf(b, ", \"%s\": %.6g", name, v);
    else
        maas_strbuf_printf(b, ", \"%s\": null", name);
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
    push_epochs(w, t); /* the curves complete before the record is final */
    maas_job_cost cost;
    task_cost(w, t, &cost);
    if (t->err == MAAS_ERR_CANCELLED && t->timed_out) {
        char why[96];
        snprintf(why, sizeof(why), "ran longer than the worker's limit of %d s (--max-job-seconds)",
                 w->cfg.max_job_s);
        if ((err = job_fail_cost(w, j, TASK_SOURCE(t), MAAS_ERR_TIMEOUT, why, &cost))) return err;
        TASK_ACK(w, t, MAAS_OK);
        return MAAS_OK;
    }
    if (t->err == MAAS_ERR_CANCELLED) {
        maas_job_update u = {.to = MAAS_JOB_CANCELLED,
                             .from_mask = JOB_FROM_ACTIVE,
                             .error_code = "CANCELLED",
                             .error_message = "cancelled on request",
                             .ttl_s = job_ttl(w, j),
                             .notify = j->notify,
                             .cost = &cost};
        err = maas_kv_job_transition(worker_kv(w, t->tenant), j->id, &u, e, sizeof(e));
        if (err && err != MAAS_ERR_CONFLICT) return err;
        metrics_cost(&w->metrics, t->tenant, j->model.name, j->type, &cost);
        wlog(w, "info", j->id, "cancelled after %.1fs", maas_mono_s() - t->started);
        metrics_job(&w->metrics, j->type, OUT_CANCELLED);
        TASK_ACK(w, t, MAAS_OK);
        return MAAS_OK;
    }
    if (t->err) {
        err = job_fail_cost(w, j, TASK_SOURCE(t), t->err, t->errstr, &cost);
        if (err) return err;
        TASK_ACK(w, t, MAAS_OK);
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
            /* the failure recorded (or dead-lettered) first; else kept and tried again */
            if ((err = job_fail_cost(w, j, TASK_SOURCE(t), err, e, &cost))) return err;
            TASK_ACK(w, t, MAAS_OK);
            return MAAS_OK;
        }
        maas_strbuf metrics_text = {0}, config = {0};
        if (j->type == MAAS_JOBTYPE_OPTIMIZE) {
            optimize_json(t, &cost, &metrics_text, &config);
        } else {
            metrics_json(t, &metrics_text);
            train_config_json(t, &config);
        }
        int version, created;
        if (metrics_text.oom || config.oom)
            err = maas_errf(e, sizeof(e), MAAS_ERR_OUT_OF_MEMORY,
                            "out of memory for the version's JSON");
        else
            err = maas_kv_version_create(worker_kv(w, t->tenant), j->model.name, j->id,
                                         t->parent_version, h5, len, metrics_text.p, config.p,
                                         &version, &created, e, sizeof(e));
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
        if (n > 0 && !(hist = malloc((size_t)n * sizeof(*hist)))) return MAAS_ERR_OUT_OF_MEMORY;
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
                         .from_mask = JOB_FROM_ACTIVE,
                         .result = buf,
                         .result_len = len,
                         .ttl_s = job_ttl(w, j),
                         .notify = j->notify,
                         .cost = &cost};
    err = maas_kv_job_transition(worker_kv(w, t->tenant), j->id, &u, e, sizeof(e));
    free(buf);
    if (err && err != MAAS_ERR_CONFLICT) return err;
    w->jobs_done++;
    metrics_job(&w->metrics, j->type, OUT_SUCCEEDED);
    metrics_cost(&w->metrics, t->tenant, j->model.name, j->type, &cost);
    metrics_compute_time(&w->metrics, j->type, maas_mono_s() - t->started);
    wlog(w, "info", j->id, "%s done in %.1fs: version %d, loss %.4f", maas_job_type_name(j->type),
         maas_mono_s() - t->started, r.version, t->loss);
    TASK_ACK(w, t, MAAS_OK);
    return MAAS_OK;
}

void poll_work_task(worker *w) {
    work_task *t = w->task;
    char e[MAAS_ERRSTR_SIZE];
    if (!t) return;
    if (!atomic_load(&t->done)) {
        double now = maas_mono_s();
        if (now - t->started > w->cfg.max_job_s && !t->timed_out) {
            wlog(w, "warn", t->job.id, "over --max-job-seconds (%d s): stopping it",
                 w->cfg.max_job_s);
            t->timed_out = 1;
            atomic_store(&t->cancel, 1);
        }
        if (now - t->last_heartbeat < 1.0) return;
        t->last_heartbeat = now;
        pthread_mutex_lock(&t->lock);
        maas_epoch_log p = t->progress;
        pthread_mutex_unlock(&t->lock);
        int planned = t->job.type == MAAS_JOBTYPE_OPTIMIZE ? t->job.optimize.finetune_epochs
                                                           : t->job.train.epochs;
        maas_strbuf pb = {0};
        maas_strbuf_printf(&pb, "{\"epoch\": %d, \"epochs\": %d", p.epoch, planned);
        if (p.epoch > 0) {
            /* JSON (the record's progress is parsed): a diverged loss is null, not nan */
            double eta = (now - t->started) / p.epoch * (planned - p.epoch);
            progress_num(&pb, "loss", p.loss);
            maas_strbuf_printf(&pb, ", \"eta_s\": %.1f", eta);
            if (p.has_accuracy) progress_num(&pb, "accuracy", p.accuracy);
            if (p.has_val) progress_num(&pb, "val_loss", p.val_loss);
            if (p.has_val && p.has_accuracy) progress_num(&pb, "val_accuracy", p.val_accuracy);
        }
        maas_strbuf_printf(&pb, "}");
        push_epochs(w, t);
        const char *progress = pb.p && !pb.oom ? pb.p : "{}";
        maas_err err = maas_kv_job_heartbeat(worker_kv(w, t->tenant), t->job.id, w->cfg.id,
                                             progress, e, sizeof(e));
        free(pb.p);
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
    if (err) { /* a permanent refusal (Redis's SERVER_ERROR, an encoding error): fail it alone */
        char why[MAAS_ERRSTR_SIZE + 48];
        snprintf(why, sizeof(why), "its outcome could not be stored: %s", maas_err_code(err));
        TASK_ACK(w, t, job_fail(w, &t->job, TASK_SOURCE(t), err, why));
    }
    maas_consumer_pause(w->work_c, 0, e, sizeof(e));
    w->task = NULL;
    task_free(t);
}
