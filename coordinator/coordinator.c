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
    char e[MAAS_ERRSTR_SIZE], prefix[256];
    /* The id comes from the body, else the Idempotency-Key header, else it is made here;
     * "v" may be left out over HTTP (this API speaks version 1). */
    char *id_json = NULL, *v_json = NULL, *body = NULL;
    maas_err err = maas_json_get(req->body, req->body_len, "id", &id_json, e, sizeof(e));
    if (!err) err = maas_json_get(req->body, req->body_len, "v", &v_json, e, sizeof(e));
    if (err) return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    int n = 0;
    prefix[0] = '\0';
    if (!v_json)
        n += snprintf(prefix + n, sizeof(prefix) - (size_t)n, "\"v\": %d", MAAS_PROTOCOL_VERSION);
    if (!id_json) {
        const char *key = req->header(req, "Idempotency-Key");
        char id[MAAS_NAME_MAX + 1];
        if (key) {
            if (maas_name_check("Idempotency-Key", key, e, sizeof(e))) {
                free(v_json);
                return coord_reply_error(res, 400, "BAD_FORMAT", e);
            }
            snprintf(id, sizeof(id), "%s", key);
        } else {
            maas_name_random(id);
        }
        n +=
            snprintf(prefix + n, sizeof(prefix) - (size_t)n, "%s\"id\": \"%s\"", n ? ", " : "", id);
    }
    free(id_json);
    free(v_json);
    err = maas_json_rewrite(req->body, req->body_len, NULL, 0, prefix, &body, e, sizeof(e));
    if (err) return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    maas_job j;
    err = maas_job_decode_json(body, strlen(body), &j, e, sizeof(e));
    free(body);
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
    char *version = NULL, *alias = NULL, *timeout = NULL, *body = NULL;
    maas_err err = maas_json_get(req->body, req->body_len, "version", &version, e, sizeof(e));
    if (!err) err = maas_json_get(req->body, req->body_len, "alias", &alias, e, sizeof(e));
    if (!err) err = maas_json_get(req->body, req->body_len, "timeout_ms", &timeout, e, sizeof(e));
    long timeout_ms = timeout ? strtol(timeout, NULL, 10) : 5000;
    char model_text[300], prefix[600], id[33];
    if (version) {
        long v = strtol(version, NULL, 10);
        snprintf(model_text, sizeof(model_text), "%s:%ld", ref.name, v);
    } else if (alias && alias[0] == '"') {
        snprintf(model_text, sizeof(model_text), "%s@%.*s", ref.name, (int)strlen(alias) - 2,
                 alias + 1);
    } else {
        maas_model_ref_format(&ref, model_text, sizeof(model_text));
    }
    free(version);
    free(alias);
    free(timeout);
    if (err) return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    if (timeout_ms < 1 || timeout_ms > 600000)
        return coord_reply_error(res, 400, "BAD_FORMAT", "field timeout_ms: expected 1..600000");
    maas_name_random(id);
    int64_t now = maas_wall_ms();
    snprintf(
        prefix, sizeof(prefix),
        "\"v\": 1, \"id\": \"%s\", \"type\": \"infer\", \"model\": \"%s\", \"created_ms\": %lld, "
        "\"deadline_ms\": %lld, \"ttl_s\": 3600, \"priority\": 9",
        id, model_text, (long long)now, (long long)(now + timeout_ms));
    static const char *const drop[] = {"version",     "alias", "timeout_ms", "v",
                                       "id",          "type",  "model",      "created_ms",
                                       "deadline_ms", "ttl_s", "priority"};
    err = maas_json_rewrite(req->body, req->body_len, drop, (int)MAAS_ARRAY_LEN(drop), prefix,
                            &body, e, sizeof(e));
    if (err) return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    maas_job j;
    err = maas_job_decode_json(body, strlen(body), &j, e, sizeof(e));
    free(body);
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
    char e[MAAS_ERRSTR_SIZE], *v = NULL, *x = NULL;
    maas_err err = maas_json_get(req->body, req->body_len, "version", &v, e, sizeof(e));
    if (!err) err = maas_json_get(req->body, req->body_len, "expect", &x, e, sizeof(e));
    if (err) return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    char *end = NULL;
    long version = v ? strtol(v, &end, 10) : 0;
    int bad = !v || *end || version < 1 || version > INT32_MAX;
    long expect = x ? strtol(x, NULL, 10) : -1;
    free(v);
    free(x);
    if (bad)
        return coord_reply_error(res, 400, "BAD_FORMAT", "field version: expected an integer >= 1");
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

/* A JSON string value as maas_json_get returns it ("\"abc\""), unquoted; 0 if not one. */
static int json_plain_string(const char *json, char *out, size_t size) {
    size_t n = json ? strlen(json) : 0;
    if (n < 2 || json[0] != '"' || json[n - 1] != '"' || memchr(json + 1, '\\', n - 2) ||
        n - 2 >= size)
        return 0;
    memcpy(out, json + 1, n - 2);
    out[n - 2] = '\0';
    return 1;
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
    char *id_json = NULL, *job_json = NULL, *grid_json = NULL, *rand_json = NULL;
    char *seed_json = NULL, *metric_json = NULL, *promote_json = NULL, *body = NULL;
    maas_sweep *s = calloc(1, sizeof(*s));
    maas_sweep_grid *g = calloc(1, sizeof(*g));
    maas_job base;
    maas_job_init(&base, MAAS_JOBTYPE_TRAIN);
    int status = 400, submitted = 0, republished = 0, resumed = 0;
    const char *code = "BAD_FORMAT";
    maas_err err =
        s && g ? MAAS_OK : maas_errf(e, sizeof(e), MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    const char *keys[] = {"id", "job", "grid", "random", "seed", "metric", "promote"};
    char **vals[] = {&id_json,   &job_json,    &grid_json,   &rand_json,
                     &seed_json, &metric_json, &promote_json};
    for (size_t i = 0; !err && i < MAAS_ARRAY_LEN(keys); i++)
        err = maas_json_get(req->body, req->body_len, keys[i], vals[i], e, sizeof(e));
    if (!err && id_json && !json_plain_string(id_json, id, sizeof(id)))
        err = maas_errf(e, sizeof(e), MAAS_ERR_BAD_FORMAT, "field id: expected a string");
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
    if (!err && !job_json)
        err = maas_errf(e, sizeof(e), MAAS_ERR_BAD_FORMAT,
                        "field job: the base training job is required");
    if (!err) {
        char prefix[256];
        snprintf(prefix, sizeof(prefix), "\"v\": %d, \"type\": \"train\", \"id\": \"%.120s-base\"",
                 MAAS_PROTOCOL_VERSION, id);
        const char *drop[] = {"v", "type", "id"};
        err = maas_json_rewrite(job_json, strlen(job_json), drop, 3, prefix, &body, e, sizeof(e));
    }
    if (!err) err = maas_job_decode_json(body, strlen(body), &base, e, sizeof(e));
    if (!err && !base.data.dataset[0])
        err = maas_errf(e, sizeof(e), MAAS_ERR_BAD_FORMAT,
                        "field job.data: a sweep names its data by dataset (upload it first)");
    if (!err && grid_json) {
        double v[MAAS_SWEEP_MAX_VALUES];
        int n;
        size_t gl = strlen(grid_json);
        err = maas_json_list(grid_json, gl, "learning_rate", v, NULL, 0, MAAS_SWEEP_MAX_VALUES, &n,
                             e, sizeof(e));
        for (int i = 0; !err && i < n; i++) {
            if (!(v[i] > 0.0 && v[i] <= 10.0)) /* also refuses NaN; fits a float */
                err = maas_errf(e, sizeof(e), MAAS_ERR_INVALID_ARGUMENT,
                                "field grid.learning_rate[%d]: %g is not in (0, 10]", i, v[i]);
            else
                g->lr[g->n_lr++] = (float)v[i];
        }
        if (!err)
            err = maas_json_list(grid_json, gl, "batch_size", v, NULL, 0, MAAS_SWEEP_MAX_VALUES, &n,
                                 e, sizeof(e));
        for (int i = 0; !err && i < n; i++)
            err =
                grid_int("batch_size", i, v[i], 1, 1 << 20, &g->batch[g->n_batch++], e, sizeof(e));
        if (!err)
            err = maas_json_list(grid_json, gl, "epochs", v, NULL, 0, MAAS_SWEEP_MAX_VALUES, &n, e,
                                 sizeof(e));
        for (int i = 0; !err && i < n; i++)
            err = grid_int("epochs", i, v[i], 1, 1000000, &g->epochs[g->n_epochs++], e, sizeof(e));
        if (!err)
            err = maas_json_list(grid_json, gl, "layers", NULL, &g->layers[0][0],
                                 MAAS_SWEEP_LAYERS_MAX, MAAS_SWEEP_MAX_VALUES, &g->n_layers, e,
                                 sizeof(e));
    }
    if (!err && rand_json) {
        char *end;
        double r = strtod(rand_json, &end);
        err = *end ? maas_errf(e, sizeof(e), MAAS_ERR_INVALID_ARGUMENT,
                               "field random: an integer number of trials")
                   : grid_int("random", -1, r, 0, 1000000, &g->random, e, sizeof(e));
    }
    if (!err && seed_json) g->seed = (uint64_t)strtoull(seed_json, NULL, 10);
    if (!err && g->random < 0)
        err = maas_errf(e, sizeof(e), MAAS_ERR_INVALID_ARGUMENT, "field random: must be >= 0");
    char name[MAAS_NAME_MAX + 1];
    if (!err && metric_json &&
        (!json_plain_string(metric_json, name, sizeof(name)) ||
         maas_sweep_metric_from_name(name, &s->metric, e, sizeof(e))))
        err =
            maas_errf(e, sizeof(e), MAAS_ERR_BAD_FORMAT, "field metric: val_loss or val_accuracy");
    if (!err && promote_json &&
        (!json_plain_string(promote_json, s->promote, sizeof(s->promote)) ||
         maas_name_check("promote", s->promote, e, sizeof(e))))
        err = maas_errf(e, sizeof(e), MAAS_ERR_BAD_FORMAT, "field promote: an alias name");
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
    for (size_t i = 0; i < MAAS_ARRAY_LEN(vals); i++) free(*vals[i]);
    free(body);
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

static void handle(void *ud, const maas_http_request *req, maas_http_response *res) {
    coord *c = ud;
    char buf[1024], *s[8], e[MAAS_ERRSTR_SIZE];
    int n = segments(req->path, buf, sizeof(buf), s, 8);
    const char *m = req->method;
    if (!strcmp(req->path, "/metrics") && !strcmp(m, "GET")) return route_metrics(c, res);
    maas_kv *kv = maas_kv_connect(c->redis, c->conf.settings, c->conf.n_settings, e, sizeof(e));
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
    maas_kv_free(kv);
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
    "                  the rest (MAAS_RETAIN_VERSIONS; 0 = keep all)\n";

int main(int argc, char **argv) {
    static coord c;
    snprintf(c.brokers, sizeof(c.brokers), "127.0.0.1:19092");
    snprintf(c.redis, sizeof(c.redis), "redis://127.0.0.1:16379");
    snprintf(c.prefix, sizeof(c.prefix), "%s", MAAS_TOPIC_PREFIX_DEFAULT);
    snprintf(c.listen, sizeof(c.listen), "127.0.0.1:18080");
    c.stale_s = 60;
    c.max_attempts = 3;
    c.retain_versions = 0;
    const maas_option opts[] = {
        MAAS_OPTION_CLUSTER(c.brokers, c.redis, c.prefix),
        {"http", "MAAS_COORDINATOR_HTTP", MAAS_OPTION_STRING, c.listen, sizeof(c.listen), 0, 0},
        {"stale-s", "MAAS_STALE_S", MAAS_OPTION_INT, &c.stale_s, 0, 1, 86400},
        {"max-attempts", "MAAS_MAX_ATTEMPTS", MAAS_OPTION_INT, &c.max_attempts, 0, 1, 100},
        {"retain-versions", "MAAS_RETAIN_VERSIONS", MAAS_OPTION_INT, &c.retain_versions, 0, 0,
         1000000},
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
    maas_http *h =
        maas_http_start(addr, (int)strtol(colon + 1, NULL, 10), handle, &c, e, sizeof(e));
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
    maas_client_free(c.client);
    maas_config_release(&c.conf);
    return 0;
}
