/*
 * The coordinator's sweep routes: POST /v1/sweeps (a grid or random search as
 * training jobs, idempotent by sweep id) and GET /v1/sweeps/{id} (its points
 * ranked by the validation metric).
 */
#include "maas/base.h"
#include "maas/job.h"
#include "maas/json.h"
#include "maas/kv.h"
#include "maas/clock.h"
#include "maas/sweep.h"
#include "coordinator.h"

void coord_route_sweep_get(maas_kv *kv, const char *id, maas_http_response *res) {
    char e[MAAS_ERRSTR_SIZE];
    maas_sweep *s = calloc(1, sizeof(*s));
    if (!s) return coord_reply_error(res, 500, "OUT_OF_MEMORY", "out of memory");
    maas_err err = maas_kv_sweep_load(kv, id, s, e, sizeof(e));
    maas_sweep_row *rows = err ? NULL : calloc((size_t)s->n + 1, sizeof(*rows));
    int finished = 0, best;
    if (!err && !rows) err = maas_errf(e, sizeof(e), MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    if (!err) err = maas_sweep_rank(kv, s, rows, &finished, &best, e, sizeof(e));
    if (err) {
        coord_reply_error(res, coord_status_of(err),
                          err == MAAS_ERR_UNKNOWN_NAME ? "UNKNOWN_SWEEP" : maas_err_code(err), e);
    } else {
        maas_strbuf t = {0};
        coord_put_sweep(&t, s, rows, finished);
        coord_reply_text(res, 200, &t);
    }
    free(rows);
    free(s);
}

/* POST /v1/sweeps: {"id", "job": {train job}, "grid": {...}, "random", "seed", "metric", "promote"}
 */

/* A whole number of the sweep grid (index i of field; -1: not a list) within [lo, hi]. */
static maas_err grid_int(const char *field, int i, double v, int lo, int hi, int *out, char *e,
                         size_t es) {
    if (!(v >= lo && v <= hi) || v != floor(v)) {
        char name[64];
        if (i >= 0)
            snprintf(name, sizeof(name), "grid.%s[%d]", field, i);
        else
            snprintf(name, sizeof(name), "%s", field);
        return maas_errf(e, es, MAAS_ERR_INVALID_ARGUMENT,
                         "field %s: %g is not a whole number in %d..%d", name, v, lo, hi);
    }
    *out = (int)v;
    return MAAS_OK;
}

void coord_route_sweep_submit(coord *c, maas_kv *kv, const maas_http_request *req,
                              maas_http_response *res) {
    char e[MAAS_ERRSTR_SIZE], id[MAAS_NAME_MAX + 1] = "";
    maas_json *doc = NULL, *job_doc = NULL, *grid = NULL;
    maas_sweep *s = calloc(1, sizeof(*s));
    maas_sweep_grid *g = calloc(1, sizeof(*g));
    maas_job base;
    maas_job_init(&base, MAAS_JOBTYPE_TRAIN);
    int status = 400, submitted = 0, republished = 0, resumed = 0;
    const char *code = "BAD_FORMAT";
    maas_err err =
        s && g ? MAAS_OK : maas_errf(e, sizeof(e), MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    const char *str;
    /* the body parsed once; "job" and "grid" taken out of it as documents of their own */
    if (!err) err = maas_json_parse_object(req->body, req->body_len, &doc, e, sizeof(e));
    if (!err) err = maas_json_take_object(doc, "job", &job_doc, e, sizeof(e));
    if (!err) err = maas_json_take_object(doc, "grid", &grid, e, sizeof(e));
    if (!err && maas_json_has(doc, "id")) {
        if (maas_json_string(doc, "id", &str) && strlen(str) < sizeof(id))
            snprintf(id, sizeof(id), "%s", str);
        else
            err = maas_errf(e, sizeof(e), MAAS_ERR_BAD_FORMAT, "field id: expected a string");
    }
    if (!err && !id[0]) {
        const char *key = req->header(req, "Idempotency-Key");
        if (key) {
            snprintf(id, sizeof(id), "%s", key);
        } else {
            char rid[33];
            maas_name_random(rid);
            snprintf(id, sizeof(id), "sw-%.16s", rid);
        }
    }
    if (!err) err = maas_name_check("sweep id", id, e, sizeof(e));
    if (!err && !job_doc)
        err = maas_errf(e, sizeof(e), MAAS_ERR_BAD_FORMAT,
                        "field job: the base training job is required");
    if (!err) {
        char base_id[MAAS_NAME_MAX + 8];
        snprintf(base_id, sizeof(base_id), "%.120s-base", id);
        err = maas_json_set_number(job_doc, "v", MAAS_PROTOCOL_VERSION, e, sizeof(e));
        if (!err) err = maas_json_set_string(job_doc, "type", "train", e, sizeof(e));
        if (!err) err = maas_json_set_string(job_doc, "id", base_id, e, sizeof(e));
    }
    if (!err) {
        maas_job_release(&base);
        err = maas_job_decode_json_doc(job_doc, &base, e, sizeof(e));
    }
    if (!err && !base.data.dataset[0])
        err = maas_errf(e, sizeof(e), MAAS_ERR_BAD_FORMAT,
                        "field job.data: a sweep names its data by dataset (upload it first)");
    if (!err && grid) {
        double v[MAAS_SWEEP_MAX_VALUES];
        int n;
        err = maas_json_list(grid, "learning_rate", v, NULL, 0, MAAS_SWEEP_MAX_VALUES, &n, e,
                             sizeof(e));
        for (int i = 0; !err && i < n; i++) {
            if (!(v[i] > 0.0 && v[i] <= 10.0)) /* also refuses NaN; fits a float */
                err = maas_errf(e, sizeof(e), MAAS_ERR_INVALID_ARGUMENT,
                                "field grid.learning_rate[%d]: %g is not in (0, 10]", i, v[i]);
            else
                g->lr[g->n_lr++] = (float)v[i];
        }
        if (!err)
            err = maas_json_list(grid, "batch_size", v, NULL, 0, MAAS_SWEEP_MAX_VALUES, &n, e,
                                 sizeof(e));
        for (int i = 0; !err && i < n; i++)
            err =
                grid_int("batch_size", i, v[i], 1, 1 << 20, &g->batch[g->n_batch++], e, sizeof(e));
        if (!err)
            err =
                maas_json_list(grid, "epochs", v, NULL, 0, MAAS_SWEEP_MAX_VALUES, &n, e, sizeof(e));
        for (int i = 0; !err && i < n; i++)
            err = grid_int("epochs", i, v[i], 1, 1000000, &g->epochs[g->n_epochs++], e, sizeof(e));
        if (!err)
            err = maas_json_list(grid, "layers", NULL, &g->layers[0][0], MAAS_SWEEP_LAYERS_MAX,
                                 MAAS_SWEEP_MAX_VALUES, &g->n_layers, e, sizeof(e));
    }
    double num;
    if (!err && maas_json_has(doc, "random"))
        err = maas_json_number(doc, "random", &num)
                  ? grid_int("random", -1, num, 0, 1000000, &g->random, e, sizeof(e))
                  : maas_errf(e, sizeof(e), MAAS_ERR_INVALID_ARGUMENT,
                              "field random: an integer number of trials");
    if (!err && maas_json_has(doc, "seed")) {
        if (maas_json_number(doc, "seed", &num) && num >= 0 && num < 18446744073709551616.0 &&
            num == floor(num))
            g->seed = (uint64_t)num;
        else
            err = maas_errf(e, sizeof(e), MAAS_ERR_INVALID_ARGUMENT,
                            "field seed: a whole number >= 0");
    }
    if (!err && maas_json_has(doc, "metric") &&
        (!maas_json_string(doc, "metric", &str) ||
         maas_sweep_metric_from_name(str, &s->metric, e, sizeof(e))))
        err =
            maas_errf(e, sizeof(e), MAAS_ERR_BAD_FORMAT, "field metric: val_loss or val_accuracy");
    if (!err && maas_json_has(doc, "promote") &&
        (!maas_json_string(doc, "promote", &str) || strlen(str) >= sizeof(s->promote) ||
         maas_name_check("promote", str, e, sizeof(e))))
        err = maas_errf(e, sizeof(e), MAAS_ERR_BAD_FORMAT, "field promote: an alias name");
    if (!err && maas_json_string(doc, "promote", &str))
        snprintf(s->promote, sizeof(s->promote), "%s", str);
    if (!err) {
        snprintf(s->id, sizeof(s->id), "%s", id);
        snprintf(s->model, sizeof(s->model), "%s", base.model.name);
        s->created_ms = maas_wall_ms();
        err = maas_sweep_expand(s, g, &base, e, sizeof(e));
    }
    if (!err) {
        status = 503;
        code = NULL;
        err = maas_kv_sweep_create(kv, s, e, sizeof(e));
        if (err == MAAS_ERR_CONFLICT) { /* a retry: submit what is missing */
            maas_sweep *old = calloc(1, sizeof(*old));
            err = old ? maas_kv_sweep_load(kv, id, old, e, sizeof(e)) : MAAS_ERR_OUT_OF_MEMORY;
            if (!err && old->n != s->n)
                err = maas_errf(e, sizeof(e), MAAS_ERR_CONFLICT,
                                "sweep '%s' exists with %d points, this request has %d", id, old->n,
                                s->n);
            free(old);
            resumed = 1;
        }
    }
    for (int k = 0; !err && k < s->n; k++) {
        maas_job j;
        err = maas_sweep_job(&base, &s->points[k], &j, e, sizeof(e));
        if (!err) {
            j.created_ms = maas_wall_ms();
            int again = 0;
            err = coord_submit(c, kv, &j, 1, &again, e, sizeof(e));
            if (!err && again)
                republished++;
            else if (!err)
                submitted++;
            if (err == MAAS_ERR_CONFLICT) err = MAAS_OK; /* recorded and published before */
        }
    }
    if (err) {
        coord_reply_error(res, code ? status : coord_status_of(err),
                          code ? code : maas_err_code(err), e);
    } else {
        maas_strbuf t = {0};
        maas_strbuf_printf(&t, "{\"id\": ");
        coord_put_str(&t, id);
        maas_strbuf_printf(&t,
                           ", \"points\": %d, \"submitted\": %d, \"republished\": %d, "
                           "\"resumed\": %s, \"jobs\": [",
                           s->n, submitted, republished, resumed ? "true" : "false");
        for (int k = 0; k < s->n; k++) {
            maas_strbuf_printf(&t, k ? ", " : "");
            coord_put_str(&t, s->points[k].job);
        }
        maas_strbuf_printf(&t, "]}");
        coord_reply_text(res, 202, &t);
    }
    maas_json_free(doc);
    maas_json_free(job_doc);
    maas_json_free(grid);
    maas_job_release(&base);
    free(s);
    free(g);
}
