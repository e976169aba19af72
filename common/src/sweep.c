/* Sweeps: expanding a grid into training jobs, ranking their outcomes. See sweep.h. */
#include "maas/base.h"
#include "maas/rng.h"
#include "maas/strbuf.h"
#include "maas/sweep.h"

/* The base job's layers back as a spec string ("10:relu,dropout:0.2,1:sigmoid"); 0 when it
 * does not fit in size (then the caller says so: a cut list would be another network). */
static int layers_text(const maas_train_spec *t, char *out, size_t size) {
    maas_strbuf b = {0};
    for (int i = 0; i < t->n_layers; i++) {
        char item[96];
        if (maas_layer_format(&t->layers[i], item, sizeof(item)) < 0) b.oom = 1;
        maas_strbuf_printf(&b, "%s%s", i ? "," : "", item);
    }
    int fits = !b.oom && b.len < size;
    snprintf(out, size, "%s", fits && b.p ? b.p : "");
    free(b.p);
    return fits;
}

maas_err maas_sweep_expand(maas_sweep *s, const maas_sweep_grid *g, const maas_job *base,
                           char *errstr, size_t errstr_size) {
    if (base->type != MAAS_JOBTYPE_TRAIN)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "a sweep's base job must be train");
    if (g->n_lr < 0 || g->n_lr > MAAS_SWEEP_MAX_VALUES || g->n_batch < 0 ||
        g->n_batch > MAAS_SWEEP_MAX_VALUES || g->n_epochs < 0 ||
        g->n_epochs > MAAS_SWEEP_MAX_VALUES || g->n_layers < 0 ||
        g->n_layers > MAAS_SWEEP_MAX_VALUES)
        return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                         "at most %d values per dimension", MAAS_SWEEP_MAX_VALUES);
    float lr[MAAS_SWEEP_MAX_VALUES];
    int batch[MAAS_SWEEP_MAX_VALUES], epochs[MAAS_SWEEP_MAX_VALUES];
    char layers[MAAS_SWEEP_MAX_VALUES][MAAS_SWEEP_LAYERS_MAX];
    int nl = g->n_lr ? g->n_lr : 1, nb = g->n_batch ? g->n_batch : 1;
    int ne = g->n_epochs ? g->n_epochs : 1, ny = g->n_layers ? g->n_layers : 1;
    for (int i = 0; i < nl; i++) {
        lr[i] = g->n_lr ? g->lr[i] : base->train.compile.optim.learning_rate;
        if (!(lr[i] >= 1e-12f && lr[i] <= 10.0f))
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "field learning_rate[%d]: %g is outside [1e-12, 10]", i,
                             (double)lr[i]);
    }
    for (int i = 0; i < nb; i++) {
        batch[i] = g->n_batch ? g->batch[i] : base->train.batch_size;
        if (batch[i] < 1 || batch[i] > 1 << 20)
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "field batch_size[%d]: %d is outside 1..%d", i, batch[i], 1 << 20);
    }
    for (int i = 0; i < ne; i++) {
        epochs[i] = g->n_epochs ? g->epochs[i] : base->train.epochs;
        if (epochs[i] < 1 || epochs[i] > 1000000)
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "field epochs[%d]: %d is outside 1..1000000", i, epochs[i]);
    }
    for (int i = 0; i < ny; i++) {
        if (g->n_layers) {
            snprintf(layers[i], sizeof(layers[i]), "%s", g->layers[i]);
            maas_layer_spec tmp[MAAS_MAX_LAYERS];
            int n;
            char sub[MAAS_ERRSTR_SIZE];
            if (maas_layers_parse(layers[i], tmp, MAAS_MAX_LAYERS, &n, sub, sizeof(sub)))
                return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                                 "field layers[%d]: %s", i, sub);
            if (strchr(layers[i], '|'))
                return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                                 "field layers[%d]: '|' is not allowed", i);
        } else if (!layers_text(&base->train, layers[i], sizeof(layers[i]))) {
            return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                             "the job's layer list is longer than %d characters; give the "
                             "sweep's layers explicitly",
                             MAAS_SWEEP_LAYERS_MAX - 1);
        }
    }
    long total = (long)nl * nb * ne * ny;
    int want = g->random > 0 && g->random < total ? g->random : (int)total;
    if (total > 100000 || want > MAAS_SWEEP_MAX_POINTS)
        return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                         "the sweep has %ld points; at most %d jobs (use random N)", total,
                         MAAS_SWEEP_MAX_POINTS);
    /* the grid in order; a random search takes the first N of a seeded shuffle */
    long *order = malloc((size_t)total * sizeof(long));
    if (!order) return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    for (long i = 0; i < total; i++) order[i] = i;
    if (g->random > 0 && g->random < total) {
        maas_rng rng;
        maas_rng_init(&rng, g->seed);
        for (long i = total - 1; i > 0; i--) {
            long j = (long)maas_rng_below(&rng, (uint64_t)i + 1);
            long t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
    }
    s->n = want;
    for (int k = 0; k < want; k++) {
        long c = order[k];
        maas_sweep_point *p = &s->points[k];
        memset(p, 0, sizeof(*p));
        p->lr = lr[c % nl];
        c /= nl;
        p->batch_size = batch[c % nb];
        c /= nb;
        p->epochs = epochs[c % ne];
        c /= ne;
        snprintf(p->layers, sizeof(p->layers), "%s", layers[c % ny]);
        if ((size_t)snprintf(p->job, sizeof(p->job), "%s-%03d", s->id, k + 1) >= sizeof(p->job)) {
            free(order);
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "sweep id '%s' is too long", s->id);
        }
    }
    free(order);
    return maas_name_check("sweep job id", s->points[0].job, errstr, errstr_size);
}

maas_err maas_sweep_job(const maas_job *base, const maas_sweep_point *p, maas_job *out,
                        char *errstr, size_t errstr_size) {
    if (!base->data.dataset[0] || base->data.x.data || base->train.keras_config)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "a sweep's base job names its data by dataset and its layers as a list");
    *out = *base; /* plain fields; the pointers are all NULL (checked above) */
    memset(&out->inputs, 0, sizeof(out->inputs));
    snprintf(out->id, sizeof(out->id), "%s", p->job);
    out->train.compile.optim.learning_rate = p->lr;
    out->train.batch_size = p->batch_size;
    out->train.epochs = p->epochs;
    char sub[MAAS_ERRSTR_SIZE];
    if (maas_layers_parse(p->layers, out->train.layers, MAAS_MAX_LAYERS, &out->train.n_layers, sub,
                          sizeof(sub)))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT, "point %s: %s", p->job,
                         sub);
    return MAAS_OK;
}

/* Lower is better for loss, higher for accuracy; a NaN figure ranks last. */
static double score_of(const maas_sweep *s, const maas_sweep_row *r) {
    double v = s->metric == MAAS_SWEEP_VAL_ACCURACY ? -r->val_accuracy : r->val_loss;
    return isnan(v) ? INFINITY : v;
}

static int state_rank(maas_job_state st) {
    return st == MAAS_JOB_SUCCEEDED ? 0 : MAAS_JOB_FINAL(st) ? 2 : 1;
}

static int cmp_row(const void *a, const void *b) {
    const maas_sweep_row *x = a, *y = b;
    int sx = state_rank(x->state), sy = state_rank(y->state);
    if (sx != sy) return sx - sy;
    if (sx == 0 && x->score != y->score) return x->score < y->score ? -1 : 1;
    return x->point - y->point;
}

maas_err maas_sweep_rank(maas_kv *kv, const maas_sweep *s, maas_sweep_row *rows, int *finished,
                         int *best, char *errstr, size_t errstr_size) {
    *finished = 0;
    *best = -1;
    for (int i = 0; i < s->n; i++) {
        maas_sweep_row *r = &rows[i];
        memset(r, 0, sizeof(*r));
        r->point = i;
        r->val_loss = r->val_accuracy = r->loss = r->accuracy = NAN;
        maas_job_record rec;
        maas_err err = maas_kv_job_get(kv, s->points[i].job, &rec, errstr, errstr_size);
        if (err) return err;
        r->state = rec.state;
        if (MAAS_JOB_FINAL(rec.state)) (*finished)++;
        if (rec.state == MAAS_JOB_SUCCEEDED && rec.result) {
            maas_result res;
            char sub[MAAS_ERRSTR_SIZE];
            if (maas_result_decode(rec.result, rec.result_len, &res, sub, sizeof(sub)) == MAAS_OK) {
                r->version = res.version;
                r->loss = res.loss;
                r->accuracy = res.accuracy;
                if (res.n_history > 0) {
                    r->val_loss = res.history[res.n_history - 1].val_loss;
                    r->val_accuracy = res.history[res.n_history - 1].val_accuracy;
                }
                maas_result_release(&res);
            }
        } else if (rec.state != MAAS_JOB_SUCCEEDED && MAAS_JOB_FINAL(rec.state)) {
            snprintf(r->error, sizeof(r->error), "%.31s: %.200s",
                     rec.error_code[0] ? rec.error_code : maas_job_state_name(rec.state),
                     rec.error_message);
        } else if (rec.state == MAAS_JOB_UNKNOWN) {
            snprintf(r->error, sizeof(r->error), "no record (not submitted yet, or expired)");
        }
        maas_job_record_release(&rec);
    }
    for (int i = 0; i < s->n; i++) rows[i].score = score_of(s, &rows[i]);
    qsort(rows, (size_t)s->n, sizeof(*rows), cmp_row);
    if (s->n > 0 && rows[0].state == MAAS_JOB_SUCCEEDED) *best = 0;
    return MAAS_OK;
}

maas_err maas_sweep_settle(maas_kv *kv, maas_sweep *s, const maas_sweep_row *rows, int finished,
                           int best, int *did, char *errstr, size_t errstr_size) {
    *did = 0;
    if (s->done || finished < s->n) return MAAS_OK;
    maas_err err = MAAS_OK;
    int version = best >= 0 ? rows[best].version : 0;
    const char *job = best >= 0 ? s->points[rows[best].point].job : "";
    /* alias first: idempotent, and every settler computes the same best */
    if (version > 0 && s->promote[0])
        err = maas_kv_alias_set(kv, s->model, s->promote, version, -1, errstr, errstr_size);
    if (!err) err = maas_kv_sweep_finish(kv, s->id, job, version, errstr, errstr_size);
    if (!err) *did = 1;
    if (err == MAAS_ERR_CONFLICT) err = MAAS_OK; /* someone else finished it */
    if (!err) {
        s->done = 1;
        s->best_version = version;
        snprintf(s->best_job, sizeof(s->best_job), "%s", job);
    }
    return err;
}
