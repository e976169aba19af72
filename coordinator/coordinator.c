/*
 * maas-coordinator - the HTTP/JSON API for clients that don't speak Kafka.
 *
 *   POST /v1/jobs                         submit a job (JSON view of the protocol); 202
 *   GET  /v1/jobs/{id}                    the job's record and result
 *   POST /v1/jobs/{id}/cancel
 *   POST /v1/models/{name}:predict        synchronous inference with a timeout
 *   GET  /v1/models                       models, version counts, aliases
 *   GET  /v1/models/{name}/versions       a model's versions
 *   PUT  /v1/models/{name}/aliases/{a}    {"version": N[, "expect": M]}: move an alias
 *   GET  /v1/models/{name}/versions/{ref}/h5   the model file (a Keras model.h5; int8
 *                                              versions dequantized)
 *   POST /v1/sweeps                       a grid/random search as training jobs; 202
 *   GET  /v1/sweeps/{id}                  its points, ranked by the validation metric
 *   GET  /healthz, /metrics
 *
 * A housekeeping thread settles finished sweeps (moves their promote alias to
 * the best version) from what Redis holds, so a restart loses nothing.
 *
 * Every submission writes the queued record before publishing (idempotent
 * producer) and reports a publish failure (503; the record says failed).
 * Exit status: 0 after SIGTERM/SIGINT, 1 if it cannot start, 2 on usage errors.
 *
 * This file: the routes and main. JSON output is json_out.c, the
 * housekeeping thread housekeeping.c (coordinator.h).
 */
#include "maas/base.h"
#include "maas/clock.h"
#include "maas/strbuf.h"
#include "maas/broker.h"
#include "maas/client.h"
#include "maas/http.h"
#include "maas/job.h"
#include "maas/json.h"
#include "maas/kv.h"
#include "maas/model_io.h"
#include "maas/protocol.h"
#include "maas/sweep.h"
#include "coordinator.h"

#include <pthread.h>
#include <signal.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

volatile sig_atomic_t coord_stop;
static void on_signal(int sig) {
    (void)sig;
    coord_stop = 1;
}

/* ------------------------------------------------------------ submitting */

/* Submits through the client (maas/client.h); CONFLICT when the id was known and left alone. */
static maas_err submit_ex(coord *c, maas_kv *kv, maas_job *j, int republish, int *again, char *e,
                          size_t es) {
    maas_submit_info info;
    maas_err err =
        maas_client_submit(c->client, kv, j, republish ? MAAS_SUBMIT_REPUBLISH : 0, &info, e, es);
    if (err) return err;
    if (again) *again = info.existed && info.published;
    if (info.existed && !info.published)
        return maas_errf(e, es, MAAS_ERR_CONFLICT, "job %s exists", j->id);
    return MAAS_OK;
}

static maas_err submit(coord *c, maas_kv *kv, maas_job *j, char *e, size_t es) {
    return submit_ex(c, kv, j, 0, NULL, e, es);
}

/* ------------------------------------------------------------ routes */

static void route_submit(coord *c, maas_kv *kv, const maas_http_request *req,
                         maas_http_response *res) {
    char e[MAAS_ERRSTR_SIZE];
    /* The body is parsed once. The id comes from it, else the Idempotency-Key header, else
     * it is made here; "v" may be left out over HTTP (this API speaks version 1). */
    maas_json *doc;
    maas_err err = maas_json_parse_object(req->body, req->body_len, &doc, e, sizeof(e));
    if (err) return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    if (!maas_json_has(doc, "v"))
        err = maas_json_set_number(doc, "v", MAAS_PROTOCOL_VERSION, e, sizeof(e));
    if (!err && !maas_json_has(doc, "id")) {
        const char *key = req->header(req, "Idempotency-Key");
        char id[MAAS_NAME_MAX + 1];
        if (key) {
            if (maas_name_check("Idempotency-Key", key, e, sizeof(e)) == MAAS_OK)
                snprintf(id, sizeof(id), "%s", key);
            else
                err = MAAS_ERR_BAD_FORMAT;
        } else {
            maas_name_random(id);
        }
        if (!err) err = maas_json_set_string(doc, "id", id, e, sizeof(e));
    }
    maas_job j;
    if (!err)
        err = maas_job_decode_json_doc(doc, &j, e, sizeof(e));
    else
        maas_job_init(&j, MAAS_JOBTYPE_NONE);
    maas_json_free(doc);
    if (err) {
        maas_job_release(&j);
        return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    }
    err = submit(c, kv, &j, e, sizeof(e));
    maas_strbuf t = {0};
    if (err == MAAS_ERR_CONFLICT) {
        maas_job_record r;
        maas_kv_job_get(kv, j.id, &r, e, sizeof(e));
        maas_strbuf_printf(&t, "{\"id\": ");
        coord_put_str(&t, j.id);
        maas_strbuf_printf(&t, ", \"state\": \"%s\", \"resubmitted\": false}",
                           maas_job_state_name(r.state));
        maas_job_record_release(&r);
        coord_reply_text(res, 200, &t);
    } else if (err) {
        coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    } else {
        maas_strbuf_printf(&t, "{\"id\": ");
        coord_put_str(&t, j.id);
        maas_strbuf_printf(&t, ", \"state\": \"queued\"}");
        coord_reply_text(res, 202, &t);
    }
    maas_job_release(&j);
}

static void route_get_job(maas_kv *kv, const char *id, maas_http_response *res) {
    char e[MAAS_ERRSTR_SIZE];
    maas_job_record r;
    maas_err err = maas_kv_job_get(kv, id, &r, e, sizeof(e));
    if (err) return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    if (r.state == MAAS_JOB_UNKNOWN) {
        char msg[300];
        snprintf(msg, sizeof(msg), "no job '%s' (never submitted, or its record expired)", id);
        return coord_reply_error(res, 404, "UNKNOWN_JOB", msg);
    }
    maas_strbuf t = {0};
    coord_put_record(&t, &r);
    maas_job_record_release(&r);
    coord_reply_text(res, 200, &t);
}

static void route_predict(coord *c, maas_kv *kv, const char *model, const maas_http_request *req,
                          maas_http_response *res) {
    char e[MAAS_ERRSTR_SIZE];
    /* The body: {"inputs": ..., "output"?, "version"? | "alias"?, "timeout_ms"?}; the last
     * three are taken out and the rest is an infer job's JSON view. */
    maas_model_ref ref;
    if (maas_model_ref_parse(model, &ref, e, sizeof(e)))
        return coord_reply_error(res, 400, "BAD_FORMAT", e);
    maas_json *doc;
    maas_err err = maas_json_parse_object(req->body, req->body_len, &doc, e, sizeof(e));
    if (err) return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    double version = 0, timeout = 5000;
    const char *alias = NULL;
    char model_text[300], id[33];
    if (maas_json_has(doc, "version") &&
        (!maas_json_number(doc, "version", &version) || version < 1 || version > INT32_MAX ||
         version != floor(version)))
        err =
            maas_errf(e, sizeof(e), MAAS_ERR_BAD_FORMAT, "field version: expected an integer >= 1");
    else if (maas_json_has(doc, "alias") && (!maas_json_string(doc, "alias", &alias) ||
                                             maas_name_check("field alias", alias, e, sizeof(e))))
        err = maas_errf(e, sizeof(e), MAAS_ERR_BAD_FORMAT, "field alias: an alias name");
    else if (maas_json_has(doc, "timeout_ms") && (!maas_json_number(doc, "timeout_ms", &timeout) ||
                                                  !(timeout >= 1 && timeout <= 600000)))
        err = maas_errf(e, sizeof(e), MAAS_ERR_BAD_FORMAT, "field timeout_ms: expected 1..600000");
    if (version > 0)
        snprintf(model_text, sizeof(model_text), "%s:%d", ref.name, (int)version);
    else if (alias)
        snprintf(model_text, sizeof(model_text), "%s@%s", ref.name, alias);
    else
        maas_model_ref_format(&ref, model_text, sizeof(model_text));
    long timeout_ms = (long)timeout;
    maas_name_random(id);
    int64_t now = maas_wall_ms();
    static const char *const drop[] = {"version",     "alias", "timeout_ms", "v",
                                       "id",          "type",  "model",      "created_ms",
                                       "deadline_ms", "ttl_s", "priority"};
    if (!err) maas_json_drop(doc, drop, (int)MAAS_ARRAY_LEN(drop));
    if (!err) err = maas_json_set_number(doc, "v", MAAS_PROTOCOL_VERSION, e, sizeof(e));
    if (!err) err = maas_json_set_string(doc, "id", id, e, sizeof(e));
    if (!err) err = maas_json_set_string(doc, "type", "infer", e, sizeof(e));
    if (!err) err = maas_json_set_string(doc, "model", model_text, e, sizeof(e));
    if (!err) err = maas_json_set_number(doc, "created_ms", (double)now, e, sizeof(e));
    if (!err)
        err = maas_json_set_number(doc, "deadline_ms", (double)(now + timeout_ms), e, sizeof(e));
    if (!err) err = maas_json_set_number(doc, "ttl_s", 3600, e, sizeof(e));
    if (!err) err = maas_json_set_number(doc, "priority", 9, e, sizeof(e));
    maas_job j;
    if (!err)
        err = maas_job_decode_json_doc(doc, &j, e, sizeof(e));
    else
        maas_job_init(&j, MAAS_JOBTYPE_NONE);
    maas_json_free(doc);
    if (err) {
        maas_job_release(&j);
        return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    }
    err = submit(c, kv, &j, e, sizeof(e));
    maas_job_release(&j);
    if (err) return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    maas_job_state st = MAAS_JOB_QUEUED;
    double until = maas_mono_s() + timeout_ms / 1000.0;
    while (!MAAS_JOB_FINAL(st) && maas_mono_s() < until) {
        int left = (int)((until - maas_mono_s()) * 1000);
        if ((err = maas_kv_job_wait(kv, id, left > 1 ? left : 1, &st, e, sizeof(e))))
            return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    }
    maas_job_record r;
    if ((err = maas_kv_job_get(kv, id, &r, e, sizeof(e))))
        return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    if (r.state == MAAS_JOB_SUCCEEDED) {
        maas_strbuf out = {0};
        coord_put_result(&out, &r);
        coord_reply_text(res, 200, &out);
    } else if (!MAAS_JOB_FINAL(r.state) || r.state == MAAS_JOB_EXPIRED) {
        char msg[200];
        snprintf(msg, sizeof(msg), "no result within %ld ms (job %s)", timeout_ms, id);
        coord_reply_error(res, 504, "TIMEOUT", msg);
    } else {
        int status = !strcmp(r.error_code, "UNKNOWN_NAME") ? 404 : 400;
        coord_reply_error(res, status, r.error_code[0] ? r.error_code : "FAILED", r.error_message);
    }
    maas_job_record_release(&r);
}

static void route_models(maas_kv *kv, maas_http_response *res) {
    char e[MAAS_ERRSTR_SIZE], **names;
    int n;
    maas_err err = maas_kv_models(kv, &names, &n, e, sizeof(e));
    if (err) return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    maas_strbuf t = {0};
    maas_strbuf_printf(&t, "{\"models\": [");
    for (int i = 0; i < n; i++) {
        int count = 0, *vers, na = 0;
        char **al;
        maas_kv_version_count(kv, names[i], &count, e, sizeof(e));
        maas_strbuf_printf(&t, "%s{\"name\": ", i ? ", " : "");
        coord_put_str(&t, names[i]);
        maas_strbuf_printf(&t, ", \"versions\": %d, \"aliases\": {", count);
        if (maas_kv_aliases(kv, names[i], &al, &vers, &na, e, sizeof(e)) == MAAS_OK) {
            for (int k = 0; k < na; k++) {
                maas_strbuf_printf(&t, k ? ", " : "");
                coord_put_str(&t, al[k]);
                maas_strbuf_printf(&t, ": %d", vers[k]);
                free(al[k]);
            }
            free(al);
            free(vers);
        }
        maas_strbuf_printf(&t, "}}");
        free(names[i]);
    }
    free(names);
    maas_strbuf_printf(&t, "]}");
    coord_reply_text(res, 200, &t);
}

static void route_versions(maas_kv *kv, const char *model, maas_http_response *res) {
    char e[MAAS_ERRSTR_SIZE];
    int n = 0;
    maas_err err = maas_kv_version_count(kv, model, &n, e, sizeof(e));
    if (err) return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    if (n == 0) {
        char msg[200];
        snprintf(msg, sizeof(msg), "no model '%s'", model);
        return coord_reply_error(res, 404, "UNKNOWN_NAME", msg);
    }
    maas_strbuf t = {0};
    maas_strbuf_printf(&t, "{\"model\": ");
    coord_put_str(&t, model);
    maas_strbuf_printf(&t, ", \"versions\": [");
    int listed = 0; /* retention may have deleted some versions */
    for (int v = 1; v <= n; v++) {
        maas_version_meta m;
        if (maas_kv_version_meta(kv, model, v, &m, e, sizeof(e))) continue;
        maas_strbuf_printf(
            &t, "%s{\"version\": %d, \"parent\": %d, \"size\": %zu, \"sha256\": \"%s\", \"job\": ",
            listed++ ? ", " : "", v, m.parent, m.size, m.sha256);
        coord_put_str(&t, m.job);
        maas_strbuf_printf(&t, ", \"created_ms\": %lld, \"metrics\": %s, \"config\": %s}",
                           (long long)m.created_ms,
                           m.metrics && m.metrics[0] == '{' ? m.metrics : "null",
                           m.config && m.config[0] == '{' ? m.config : "null");
        maas_version_meta_release(&m);
    }
    maas_strbuf_printf(&t, "]}");
    coord_reply_text(res, 200, &t);
}

static void route_alias(maas_kv *kv, const char *model, const char *alias,
                        const maas_http_request *req, maas_http_response *res) {
    char e[MAAS_ERRSTR_SIZE];
    maas_json *doc;
    maas_err err = maas_json_parse_object(req->body, req->body_len, &doc, e, sizeof(e));
    if (err) return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    double v = 0, x = -1;
    int bad = !maas_json_number(doc, "version", &v) || v < 1 || v > INT32_MAX || v != floor(v);
    int bad_expect = maas_json_has(doc, "expect") && (!maas_json_number(doc, "expect", &x) ||
                                                      x < 0 || x > INT32_MAX || x != floor(x));
    maas_json_free(doc);
    if (bad)
        return coord_reply_error(res, 400, "BAD_FORMAT", "field version: expected an integer >= 1");
    if (bad_expect)
        return coord_reply_error(res, 400, "BAD_FORMAT",
                                 "field expect: the version the alias must point at now (0: none)");
    long version = (long)v, expect = (long)x;
    err = maas_kv_alias_set(kv, model, alias, (int)version, (int)expect, e, sizeof(e));
    if (err) return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    maas_strbuf t = {0};
    maas_strbuf_printf(&t, "{\"model\": ");
    coord_put_str(&t, model);
    maas_strbuf_printf(&t, ", \"alias\": ");
    coord_put_str(&t, alias);
    maas_strbuf_printf(&t, ", \"version\": %ld}", version);
    coord_reply_text(res, 200, &t);
}

static void route_h5(maas_kv *kv, const char *model, const char *ref, maas_http_response *res) {
    char e[MAAS_ERRSTR_SIZE];
    int version;
    unsigned char *h5;
    size_t len;
    maas_err err = maas_kv_version_resolve(kv, model, ref, &version, e, sizeof(e));
    if (!err) err = maas_kv_version_get(kv, model, version, &h5, &len, NULL, e, sizeof(e));
    if (err) return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    /* always a file Keras loads: an int8 version is sent as its dequantized float model */
    unsigned char *keras;
    size_t klen;
    err = maas_model_image_for_keras(h5, len, &keras, &klen, NULL, e, sizeof(e));
    free(h5);
    if (err) return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    h5 = keras;
    len = klen;
    res->status = 200;
    snprintf(res->content_type, sizeof(res->content_type), "application/x-hdf5");
    res->body = (char *)h5;
    res->body_len = len;
}

static void route_sweep_get(maas_kv *kv, const char *id, maas_http_response *res) {
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

static void route_sweep_submit(coord *c, maas_kv *kv, const maas_http_request *req,
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
            err = submit_ex(c, kv, &j, 1, &again, e, sizeof(e));
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

static void route_metrics(coord *c, maas_http_response *res) {
    maas_strbuf t = {0};
    maas_client_stats cs;
    maas_client_stats_get(c->client, &cs);
    pthread_mutex_lock(&c->lock);
    maas_strbuf_printf(&t, "# TYPE maas_coordinator_submissions_total counter\n");
    for (int ty = 1; ty <= MAAS_JOBTYPE_OPTIMIZE; ty++)
        maas_strbuf_printf(&t, "maas_coordinator_submissions_total{type=\"%s\"} %lu\n",
                           maas_job_type_name((maas_job_type)ty), cs.submitted[ty]);
    maas_strbuf_printf(
        &t,
        "# TYPE maas_coordinator_publish_failures_total counter\n"
        "maas_coordinator_publish_failures_total %lu\n"
        "# TYPE maas_coordinator_publish_seconds summary\n"
        "maas_coordinator_publish_seconds_sum %.6f\nmaas_coordinator_publish_seconds_count %lu\n"
        "# TYPE maas_coordinator_http_responses_total counter\n",
        cs.publish_failed, cs.publish_seconds, cs.publishes);
    for (int k = 1; k <= 5; k++)
        maas_strbuf_printf(&t, "maas_coordinator_http_responses_total{class=\"%dxx\"} %lu\n", k,
                           c->requests[k]);
    maas_strbuf_printf(&t, "# HELP maas_coordinator_recent_jobs jobs by state among the 500 newest "
                           "in the index\n# TYPE maas_coordinator_recent_jobs gauge\n");
    for (int st = 1; st < MAAS_JOB__COUNT; st++)
        maas_strbuf_printf(&t, "maas_coordinator_recent_jobs{state=\"%s\"} %lu\n",
                           maas_job_state_name((maas_job_state)st), c->recent[st]);
    maas_strbuf_printf(
        &t,
        "# TYPE maas_coordinator_sweeps_active gauge\nmaas_coordinator_sweeps_active %lu\n"
        "# TYPE maas_coordinator_sweep_points gauge\n"
        "maas_coordinator_sweep_points{state=\"total\"} %lu\n"
        "maas_coordinator_sweep_points{state=\"finished\"} %lu\n"
        "# TYPE maas_coordinator_sweeps_settled_total counter\n"
        "maas_coordinator_sweeps_settled_total %lu\n"
        "# TYPE maas_coordinator_stale_jobs_total counter\n"
        "maas_coordinator_stale_jobs_total{action=\"republished\"} %lu\n"
        "maas_coordinator_stale_jobs_total{action=\"failed\"} %lu\n"
        "# TYPE maas_coordinator_versions_deleted_total counter\n"
        "maas_coordinator_versions_deleted_total %lu\n",
        c->sweeps_active, c->sweep_points, c->sweep_finished, c->sweeps_settled, c->stale_requeued,
        c->stale_failed, c->versions_deleted);
    maas_strbuf_printf(&t,
                       "# TYPE maas_coordinator_redis_pool_connections gauge\n"
                       "maas_coordinator_redis_pool_connections{state=\"open\"} %d\n"
                       "maas_coordinator_redis_pool_connections{state=\"idle\"} %d\n"
                       "# TYPE maas_coordinator_redis_pool_waits_total counter\n"
                       "maas_coordinator_redis_pool_waits_total %lu\n"
                       "# TYPE maas_coordinator_redis_pool_timeouts_total counter\n"
                       "maas_coordinator_redis_pool_timeouts_total %lu\n",
                       c->pool_open, c->pool_n_idle, c->pool_waits, c->pool_timeouts);
    pthread_mutex_unlock(&c->lock);
    res->status = 200;
    snprintf(res->content_type, sizeof(res->content_type), "text/plain; version=0.0.4");
    res->body = t.p;
    res->body_len = t.len;
}

/* Splits "/a/b/c" into up to n segments (in place in buf). */
static int segments(const char *path, char *buf, size_t size, char **seg, int n) {
    snprintf(buf, size, "%s", path);
    int k = 0;
    for (char *p = buf; *p && k < n;) {
        while (*p == '/') *p++ = '\0';
        if (!*p) break;
        seg[k++] = p;
        while (*p && *p != '/') p++;
    }
    return k;
}

/* How long a request waits for a pooled Redis connection before it gets 503. */
#define POOL_WAIT_MS 5000

/*
 * A Redis connection for one request: an idle one from the pool, a new one while fewer
 * than --redis-pool are open, else the first one given back within POOL_WAIT_MS (NULL
 * and UNAVAILABLE after that: every connection is busy, e.g. with long predicts).
 */
static maas_kv *pool_get(coord *c, char *e, size_t es) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += POOL_WAIT_MS / 1000;
    pthread_mutex_lock(&c->lock);
    int waited = 0, timed_out = 0;
    while (!c->pool_n_idle && c->pool_open >= c->redis_pool && !timed_out) {
        waited = 1;
        timed_out = pthread_cond_timedwait(&c->pool_freed, &c->lock, &until) != 0;
    }
    c->pool_waits += waited;
    maas_kv *kv = NULL;
    int make = 0;
    if (c->pool_n_idle)
        kv = c->pool_idle[--c->pool_n_idle];
    else if (c->pool_open < c->redis_pool)
        make = ++c->pool_open; /* reserved: connected outside the lock */
    else
        c->pool_timeouts++;
    pthread_mutex_unlock(&c->lock);
    if (kv) return kv;
    if (!make) {
        maas_errf(e, es, MAAS_ERR_UNAVAILABLE,
                  "all %d Redis connections are busy (--redis-pool); try again", c->redis_pool);
        return NULL;
    }
    if (!(kv = maas_kv_connect(c->redis, c->conf.settings, c->conf.n_settings, e, es))) {
        pthread_mutex_lock(&c->lock);
        c->pool_open--;
        pthread_cond_signal(&c->pool_freed);
        pthread_mutex_unlock(&c->lock);
    }
    return kv;
}

/* Gives a connection back for the next request. */
static void pool_put(coord *c, maas_kv *kv) {
    pthread_mutex_lock(&c->lock);
    c->pool_idle[c->pool_n_idle++] = kv;
    pthread_cond_signal(&c->pool_freed);
    pthread_mutex_unlock(&c->lock);
}

static void handle(void *ud, const maas_http_request *req, maas_http_response *res) {
    coord *c = ud;
    char buf[1024], *s[8], e[MAAS_ERRSTR_SIZE];
    int n = segments(req->path, buf, sizeof(buf), s, 8);
    const char *m = req->method;
    if (!strcmp(req->path, "/metrics") && !strcmp(m, "GET")) return route_metrics(c, res);
    maas_kv *kv = pool_get(c, e, sizeof(e));
    if (!kv) {
        if (!strcmp(req->path, "/healthz"))
            return maas_http_reply(res, 503, "application/json",
                                   "{\"status\": \"unhealthy\", \"redis\": false}\n");
        return coord_reply_error(res, 503, "UNAVAILABLE", e);
    }
    if (!strcmp(req->path, "/healthz")) {
        int kafka = maas_kafka_wait_ready(c->brokers, c->conf.settings, c->conf.n_settings, 2000, e,
                                          sizeof(e)) == MAAS_OK;
        maas_http_reply(res, kafka ? 200 : 503, "application/json",
                        "{\"status\": \"%s\", \"kafka\": %s, \"redis\": true}\n",
                        kafka ? "ok" : "unhealthy", kafka ? "true" : "false");
    } else if (n >= 1 && strcmp(s[0], "v1")) {
        coord_reply_error(res, 404, "NOT_FOUND", "the API lives under /v1");
    } else if (n == 2 && !strcmp(s[1], "jobs") && !strcmp(m, "POST")) {
        route_submit(c, kv, req, res);
    } else if (n == 3 && !strcmp(s[1], "jobs") && !strcmp(m, "GET")) {
        route_get_job(kv, s[2], res);
    } else if (n == 4 && !strcmp(s[1], "jobs") && !strcmp(s[3], "cancel") && !strcmp(m, "POST")) {
        maas_err err = maas_kv_job_cancel(kv, s[2], e, sizeof(e));
        if (err)
            coord_reply_error(res, coord_status_of(err),
                              err == MAAS_ERR_UNKNOWN_NAME ? "UNKNOWN_JOB" : maas_err_code(err), e);
        else
            route_get_job(kv, s[2], res);
    } else if (n == 2 && !strcmp(s[1], "sweeps") && !strcmp(m, "POST")) {
        route_sweep_submit(c, kv, req, res);
    } else if (n == 3 && !strcmp(s[1], "sweeps") && !strcmp(m, "GET")) {
        route_sweep_get(kv, s[2], res);
    } else if (n == 2 && !strcmp(s[1], "models") && !strcmp(m, "GET")) {
        route_models(kv, res);
    } else if (n == 3 && !strcmp(s[1], "models") && strstr(s[2], ":predict") &&
               !strcmp(m, "POST")) {
        *strstr(s[2], ":predict") = '\0';
        route_predict(c, kv, s[2], req, res);
    } else if (n == 4 && !strcmp(s[1], "models") && !strcmp(s[3], "versions") &&
               !strcmp(m, "GET")) {
        route_versions(kv, s[2], res);
    } else if (n == 5 && !strcmp(s[1], "models") && !strcmp(s[3], "aliases") && !strcmp(m, "PUT")) {
        route_alias(kv, s[2], s[4], req, res);
    } else if (n == 6 && !strcmp(s[1], "models") && !strcmp(s[3], "versions") &&
               !strcmp(s[5], "h5") && !strcmp(m, "GET")) {
        route_h5(kv, s[2], s[4], res);
    } else {
        coord_reply_error(res, 404, "NOT_FOUND",
                          "no such route (see the README, \"The HTTP API\")");
    }
    pool_put(c, kv);
    pthread_mutex_lock(&c->lock);
    if (res->status >= 100 && res->status < 600) c->requests[res->status / 100]++;
    pthread_mutex_unlock(&c->lock);
}

/* ------------------------------------------------------------ main */

static const char usage[] =
    "usage: maas-coordinator [--http ADDR:PORT] [--brokers B] [--redis URL] [--topic-prefix P]\n"
    "                        [-X kafka.K=V | redis.K=V]...\n"
    "  --http          where to serve the API (env MAAS_COORDINATOR_HTTP; 127.0.0.1:18080)\n"
    "  --brokers       Kafka (MAAS_KAFKA_BROKERS; 127.0.0.1:19092)\n"
    "  --redis         Redis (MAAS_REDIS_URL; redis://127.0.0.1:16379)\n"
    "  --stale-s       a running work job whose worker vanished this long ago is published\n"
    "                  again (MAAS_STALE_S; 60)\n"
    "  --max-attempts  ... unless it started this often: then it fails (MAAS_MAX_ATTEMPTS; 3)\n"
    "  --retain-versions N  keep each model's newest N versions and every aliased one; delete\n"
    "                  the rest (MAAS_RETAIN_VERSIONS; 0 = keep all)\n"
    "  --max-body-mb N     request bodies over N MiB get 413 before they are read (8)\n"
    "  --max-connections N open HTTP connections at most (64) ...\n"
    "  --max-connections-per-client N  ... and from one address (16)\n"
    "  --redis-pool N      Redis connections the requests share (16; a predict holds one\n"
    "                  while it waits; a request waits up to 5 s for one, then 503)\n"
    "  --config FILE   name=value lines (any option above, kafka.*, redis.*): secrets such\n"
    "                  as kafka.sasl.password belong there, not on the command line\n";

int main(int argc, char **argv) {
    static coord c;
    snprintf(c.brokers, sizeof(c.brokers), "127.0.0.1:19092");
    snprintf(c.redis, sizeof(c.redis), "redis://127.0.0.1:16379");
    snprintf(c.prefix, sizeof(c.prefix), "%s", MAAS_TOPIC_PREFIX_DEFAULT);
    snprintf(c.listen, sizeof(c.listen), "127.0.0.1:18080");
    c.stale_s = 60;
    c.max_attempts = 3;
    c.retain_versions = 0;
    c.max_body_mb = 8;
    c.max_connections = 64;
    c.max_per_client = 16;
    c.redis_pool = 16;
    const maas_option opts[] = {
        MAAS_OPTION_CLUSTER(c.brokers, c.redis, c.prefix),
        {"http", "MAAS_COORDINATOR_HTTP", MAAS_OPTION_STRING, c.listen, sizeof(c.listen), 0, 0},
        {"stale-s", "MAAS_STALE_S", MAAS_OPTION_INT, &c.stale_s, 0, 1, 86400},
        {"max-attempts", "MAAS_MAX_ATTEMPTS", MAAS_OPTION_INT, &c.max_attempts, 0, 1, 100},
        {"retain-versions", "MAAS_RETAIN_VERSIONS", MAAS_OPTION_INT, &c.retain_versions, 0, 0,
         1000000},
        {"max-body-mb", NULL, MAAS_OPTION_LONG, &c.max_body_mb, 0, 1, 1024},
        {"max-connections", NULL, MAAS_OPTION_INT, &c.max_connections, 0, 1, 100000},
        {"max-connections-per-client", NULL, MAAS_OPTION_INT, &c.max_per_client, 0, 1, 100000},
        {"redis-pool", NULL, MAAS_OPTION_INT, &c.redis_pool, 0, 1, 4096},
    };
    char e[MAAS_ERRSTR_SIZE];
    int help = 0;
    if (maas_config_init(&c.conf, "maas-coordinator", opts, (int)MAAS_ARRAY_LEN(opts), e,
                         sizeof(e)) ||
        maas_config_parse_args(&c.conf, argc, argv, &help, e, sizeof(e))) {
        fprintf(stderr, "%s\n%s", e, usage);
        maas_config_release(&c.conf);
        return 2;
    }
    if (help) return fputs(usage, stdout), 0;
    pthread_mutex_init(&c.lock, NULL);
    pthread_cond_init(&c.pool_freed, NULL);
    if (!(c.pool_idle = calloc((size_t)c.redis_pool, sizeof(*c.pool_idle))))
        return fputs("maas-coordinator: out of memory\n", stderr), 1;
    maas_client_config cc = {.brokers = c.brokers,
                             .redis_url = c.redis,
                             .topic_prefix = c.prefix,
                             .settings = c.conf.settings,
                             .n_settings = c.conf.n_settings};
    if (!(c.client = maas_client_new(&cc, e, sizeof(e)))) {
        fprintf(stderr, "maas-coordinator: %s\n", e);
        return 1;
    }
    char addr[64];
    snprintf(addr, sizeof(addr), "%s", c.listen);
    char *colon = strrchr(addr, ':');
    if (!colon) return fputs(usage, stderr), 2;
    *colon = '\0';
    maas_http_limits lim = {(size_t)c.max_body_mb << 20, (unsigned)c.max_connections,
                            (unsigned)c.max_per_client, 30};
    maas_http *h =
        maas_http_start(addr, (int)strtol(colon + 1, NULL, 10), handle, &c, &lim, e, sizeof(e));
    if (!h) {
        fprintf(stderr, "maas-coordinator: %s\n", e);
        return 1;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* the Redis URL may carry a password: shown masked */
    char shown[sizeof(c.redis)];
    maas_config_mask_url(c.redis, shown, sizeof(shown));
    fprintf(stderr,
            "maas-coordinator: serving http://%s:%d (kafka %s, redis %s; stale after %d s, %d "
            "attempts; retain %d versions)\n",
            addr, maas_http_port(h), c.brokers, shown, c.stale_s, c.max_attempts,
            c.retain_versions);
    pthread_t hk;
    int hk_started = pthread_create(&hk, NULL, coord_housekeeping, &c) == 0;
    /* delivery reports are served by the threads that wait for them (maas/client.h) */
    while (!coord_stop) usleep(100 * 1000);
    fprintf(stderr, "maas-coordinator: stopping\n");
    if (hk_started) pthread_join(hk, NULL);
    maas_http_stop(h);
    while (c.pool_n_idle) maas_kv_free(c.pool_idle[--c.pool_n_idle]);
    free(c.pool_idle);
    maas_client_free(c.client);
    maas_config_release(&c.conf);
    return 0;
}
