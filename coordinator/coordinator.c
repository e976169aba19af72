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
 * Size (~1070 lines): the routes, their JSON output and the housekeeping
 * thread; the JSON output and housekeeping are the next to move out.
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

#include <pthread.h>
#include <signal.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

typedef struct coord {
    char brokers[512], redis[512], prefix[64], listen[64];
    maas_config conf;          /* conf.settings: kafka.* and redis.* (maas/config.h) */
    maas_client *client;       /* the producer and the submit protocol (maas/client.h) */
    pthread_mutex_t lock;      /* metrics */
    unsigned long requests[6]; /* requests by status class */
    /* housekeeping settings and what it last saw (under lock) */
    int stale_s, max_attempts, retain_versions;
    unsigned long recent[MAAS_JOB__COUNT], sweeps_active, sweep_points, sweep_finished;
    unsigned long stale_requeued, stale_failed, versions_deleted, sweeps_settled;
} coord;

static volatile sig_atomic_t stop;
static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

/* ------------------------------------------------------------ JSON out */

static void put_str(maas_strbuf *t, const char *s) {
    maas_strbuf_printf(t, "\"");
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            maas_strbuf_printf(t, "\\%c", c);
        else if (c < 0x20)
            maas_strbuf_printf(t, "\\u%04x", c);
        else
            maas_strbuf_printf(t, "%c", c);
    }
    maas_strbuf_printf(t, "\"");
}

static void put_num(maas_strbuf *t, double v) {
    if (isnan(v) || isinf(v))
        maas_strbuf_printf(t, "null");
    else
        maas_strbuf_printf(t, "%.9g", v);
}

static void reply_text(maas_http_response *res, int status, maas_strbuf *t) {
    res->status = status;
    snprintf(res->content_type, sizeof(res->content_type), "application/json");
    maas_strbuf_printf(t, "\n");
    res->body = t->p;
    res->body_len = t->len;
}

static void reply_error(maas_http_response *res, int status, const char *code, const char *msg) {
    maas_strbuf t = {0};
    maas_strbuf_printf(&t, "{\"error\": {\"code\": ");
    put_str(&t, code);
    maas_strbuf_printf(&t, ", \"message\": ");
    put_str(&t, msg);
    maas_strbuf_printf(&t, "}}");
    reply_text(res, status, &t);
}

/* The HTTP status that fits a maas error. */
static int status_of(maas_err e) {
    switch (e) {
    case MAAS_ERR_UNKNOWN:
        return 404;
    case MAAS_ERR_CONFLICT:
        return 409;
    case MAAS_ERR_UNAVAILABLE:
    case MAAS_ERR_TIMEOUT:
        return 503;
    case MAAS_ERR_NOMEM:
        return 500;
    case MAAS_ERR_LIMIT:
        return 413;
    default:
        return 400;
    }
}

static void put_result(maas_strbuf *t, const maas_job_record *r) {
    maas_result res;
    char e[MAAS_ERRSTR_SIZE];
    if (!r->result || maas_result_decode(r->result, r->result_len, &res, e, sizeof(e))) {
        maas_strbuf_printf(t, "null");
        return;
    }
    maas_strbuf_printf(t, "{\"type\": \"%s\", \"model\": ", maas_job_type_name(res.type));
    put_str(t, res.model);
    maas_strbuf_printf(t, ", \"version\": %d", res.version);
    if (res.type == MAAS_JOBTYPE_INFER) {
        maas_strbuf_printf(t, ", \"outputs\": [");
        for (uint32_t i = 0; i < res.outputs.rows; i++) {
            maas_strbuf_printf(t, i ? ", [" : "[");
            for (uint32_t j = 0; j < res.outputs.cols; j++) {
                if (j) maas_strbuf_printf(t, ", ");
                put_num(t, res.outputs.data[(size_t)i * res.outputs.cols + j]);
            }
            maas_strbuf_printf(t, "]");
        }
        maas_strbuf_printf(t, "]");
        if (res.classes) {
            maas_strbuf_printf(t, ", \"classes\": [");
            for (uint32_t i = 0; i < res.outputs.rows; i++)
                maas_strbuf_printf(t, i ? ", %d" : "%d", res.classes[i]);
            maas_strbuf_printf(t, "]");
        }
    } else {
        maas_strbuf_printf(t, ", \"rows\": %zu, \"loss\": ", res.rows);
        put_num(t, res.loss);
        maas_strbuf_printf(t, ", \"accuracy\": ");
        put_num(t, res.accuracy);
        if (res.type == MAAS_JOBTYPE_TRAIN) {
            maas_strbuf_printf(t, ", \"created\": %s, \"history\": [",
                               res.created ? "true" : "false");
            for (int i = 0; i < res.n_history; i++) {
                const maas_history_entry *h = &res.history[i];
                maas_strbuf_printf(t, "%s{\"epoch\": %d, \"loss\": ", i ? ", " : "", h->epoch);
                put_num(t, h->loss);
                maas_strbuf_printf(t, ", \"accuracy\": ");
                put_num(t, h->accuracy);
                maas_strbuf_printf(t, ", \"val_loss\": ");
                put_num(t, h->val_loss);
                maas_strbuf_printf(t, ", \"val_accuracy\": ");
                put_num(t, h->val_accuracy);
                maas_strbuf_printf(t, "}");
            }
            maas_strbuf_printf(t, "]");
        }
    }
    maas_strbuf_printf(t, "}");
    maas_result_release(&res);
}

static void put_record(maas_strbuf *t, const maas_job_record *r) {
    maas_strbuf_printf(t, "{\"id\": ");
    put_str(t, r->id);
    maas_strbuf_printf(t, ", \"type\": ");
    put_str(t, r->type);
    maas_strbuf_printf(t, ", \"model\": ");
    put_str(t, r->model);
    maas_strbuf_printf(t, ", \"state\": \"%s\", \"attempts\": %d, \"worker\": ",
                       maas_job_state_name(r->state), r->attempts);
    put_str(t, r->worker);
    maas_strbuf_printf(t, ", \"created_ms\": %lld, \"started_ms\": %lld, \"finished_ms\": %lld",
                       (long long)r->created_ms, (long long)r->started_ms,
                       (long long)r->finished_ms);
    maas_strbuf_printf(t, ", \"progress\": %s",
                       r->progress && r->progress[0] == '{' ? r->progress : "null");
    if (r->error_code[0]) {
        maas_strbuf_printf(t, ", \"error\": {\"code\": ");
        put_str(t, r->error_code);
        maas_strbuf_printf(t, ", \"message\": ");
        put_str(t, r->error_message);
        maas_strbuf_printf(t, "}");
    }
    maas_strbuf_printf(t, ", \"result\": ");
    put_result(t, r);
    maas_strbuf_printf(t, "}");
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

static void random_id(char out[33]) {
    unsigned char b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
        for (int i = 0; i < 16; i++) b[i] = (unsigned char)(maas_wall_ms() >> (i % 8));
    for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
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
    if (err) return reply_error(res, status_of(err), maas_err_code(err), e);
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
                return reply_error(res, 400, "BAD_FORMAT", e);
            }
            snprintf(id, sizeof(id), "%s", key);
        } else {
            random_id(id);
        }
        n +=
            snprintf(prefix + n, sizeof(prefix) - (size_t)n, "%s\"id\": \"%s\"", n ? ", " : "", id);
    }
    free(id_json);
    free(v_json);
    err = maas_json_rewrite(req->body, req->body_len, NULL, 0, prefix, &body, e, sizeof(e));
    if (err) return reply_error(res, status_of(err), maas_err_code(err), e);
    maas_job j;
    err = maas_job_decode_json(body, strlen(body), &j, e, sizeof(e));
    free(body);
    if (err) {
        maas_job_release(&j);
        return reply_error(res, status_of(err), maas_err_code(err), e);
    }
    err = submit(c, kv, &j, e, sizeof(e));
    maas_strbuf t = {0};
    if (err == MAAS_ERR_CONFLICT) {
        maas_job_record r;
        maas_kv_job_get(kv, j.id, &r, e, sizeof(e));
        maas_strbuf_printf(&t, "{\"id\": ");
        put_str(&t, j.id);
        maas_strbuf_printf(&t, ", \"state\": \"%s\", \"resubmitted\": false}",
                           maas_job_state_name(r.state));
        maas_job_record_release(&r);
        reply_text(res, 200, &t);
    } else if (err) {
        reply_error(res, status_of(err), maas_err_code(err), e);
    } else {
        maas_strbuf_printf(&t, "{\"id\": ");
        put_str(&t, j.id);
        maas_strbuf_printf(&t, ", \"state\": \"queued\"}");
        reply_text(res, 202, &t);
    }
    maas_job_release(&j);
}

static void route_get_job(maas_kv *kv, const char *id, maas_http_response *res) {
    char e[MAAS_ERRSTR_SIZE];
    maas_job_record r;
    maas_err err = maas_kv_job_get(kv, id, &r, e, sizeof(e));
    if (err) return reply_error(res, status_of(err), maas_err_code(err), e);
    if (r.state == MAAS_JOB_UNKNOWN) {
        char msg[300];
        snprintf(msg, sizeof(msg), "no job '%s' (never submitted, or its record expired)", id);
        return reply_error(res, 404, "UNKNOWN_JOB", msg);
    }
    maas_strbuf t = {0};
    put_record(&t, &r);
    maas_job_record_release(&r);
    reply_text(res, 200, &t);
}

static void route_predict(coord *c, maas_kv *kv, const char *model, const maas_http_request *req,
                          maas_http_response *res) {
    char e[MAAS_ERRSTR_SIZE];
    /* The body: {"inputs": ..., "output"?, "version"? | "alias"?, "timeout_ms"?}; the last
     * three are taken out and the rest is an infer job's JSON view. */
    maas_model_ref ref;
    if (maas_model_ref_parse(model, &ref, e, sizeof(e)))
        return reply_error(res, 400, "BAD_FORMAT", e);
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
    if (err) return reply_error(res, status_of(err), maas_err_code(err), e);
    if (timeout_ms < 1 || timeout_ms > 600000)
        return reply_error(res, 400, "BAD_FORMAT", "field timeout_ms: expected 1..600000");
    random_id(id);
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
    if (err) return reply_error(res, status_of(err), maas_err_code(err), e);
    maas_job j;
    err = maas_job_decode_json(body, strlen(body), &j, e, sizeof(e));
    free(body);
    if (err) {
        maas_job_release(&j);
        return reply_error(res, status_of(err), maas_err_code(err), e);
    }
    err = submit(c, kv, &j, e, sizeof(e));
    maas_job_release(&j);
    if (err) return reply_error(res, status_of(err), maas_err_code(err), e);
    maas_job_state st = MAAS_JOB_QUEUED;
    double until = maas_mono_s() + timeout_ms / 1000.0;
    while (!MAAS_JOB_FINAL(st) && maas_mono_s() < until) {
        int left = (int)((until - maas_mono_s()) * 1000);
        if ((err = maas_kv_job_wait(kv, id, left > 1 ? left : 1, &st, e, sizeof(e))))
            return reply_error(res, status_of(err), maas_err_code(err), e);
    }
    maas_job_record r;
    if ((err = maas_kv_job_get(kv, id, &r, e, sizeof(e))))
        return reply_error(res, status_of(err), maas_err_code(err), e);
    if (r.state == MAAS_JOB_SUCCEEDED) {
        maas_strbuf out = {0};
        put_result(&out, &r);
        reply_text(res, 200, &out);
    } else if (!MAAS_JOB_FINAL(r.state) || r.state == MAAS_JOB_EXPIRED) {
        char msg[200];
        snprintf(msg, sizeof(msg), "no result within %ld ms (job %s)", timeout_ms, id);
        reply_error(res, 504, "TIMEOUT", msg);
    } else {
        int status = !strcmp(r.error_code, "UNKNOWN_NAME") ? 404 : 400;
        reply_error(res, status, r.error_code[0] ? r.error_code : "FAILED", r.error_message);
    }
    maas_job_record_release(&r);
}

static void route_models(maas_kv *kv, maas_http_response *res) {
    char e[MAAS_ERRSTR_SIZE], **names;
    int n;
    maas_err err = maas_kv_models(kv, &names, &n, e, sizeof(e));
    if (err) return reply_error(res, status_of(err), maas_err_code(err), e);
    maas_strbuf t = {0};
    maas_strbuf_printf(&t, "{\"models\": [");
    for (int i = 0; i < n; i++) {
        int count = 0, *vers, na = 0;
        char **al;
        maas_kv_version_count(kv, names[i], &count, e, sizeof(e));
        maas_strbuf_printf(&t, "%s{\"name\": ", i ? ", " : "");
        put_str(&t, names[i]);
        maas_strbuf_printf(&t, ", \"versions\": %d, \"aliases\": {", count);
        if (maas_kv_aliases(kv, names[i], &al, &vers, &na, e, sizeof(e)) == MAAS_OK) {
            for (int k = 0; k < na; k++) {
                maas_strbuf_printf(&t, k ? ", " : "");
                put_str(&t, al[k]);
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
    reply_text(res, 200, &t);
}

static void route_versions(maas_kv *kv, const char *model, maas_http_response *res) {
    char e[MAAS_ERRSTR_SIZE];
    int n = 0;
    maas_err err = maas_kv_version_count(kv, model, &n, e, sizeof(e));
    if (err) return reply_error(res, status_of(err), maas_err_code(err), e);
    if (n == 0) {
        char msg[200];
        snprintf(msg, sizeof(msg), "no model '%s'", model);
        return reply_error(res, 404, "UNKNOWN_NAME", msg);
    }
    maas_strbuf t = {0};
    maas_strbuf_printf(&t, "{\"model\": ");
    put_str(&t, model);
    maas_strbuf_printf(&t, ", \"versions\": [");
    int listed = 0; /* retention may have deleted some versions */
    for (int v = 1; v <= n; v++) {
        maas_version_meta m;
        if (maas_kv_version_meta(kv, model, v, &m, e, sizeof(e))) continue;
        maas_strbuf_printf(
            &t, "%s{\"version\": %d, \"parent\": %d, \"size\": %zu, \"sha256\": \"%s\", \"job\": ",
            listed++ ? ", " : "", v, m.parent, m.size, m.sha256);
        put_str(&t, m.job);
        maas_strbuf_printf(&t, ", \"created_ms\": %lld, \"metrics\": %s, \"config\": %s}",
                           (long long)m.created_ms,
                           m.metrics && m.metrics[0] == '{' ? m.metrics : "null",
                           m.config && m.config[0] == '{' ? m.config : "null");
        maas_version_meta_release(&m);
    }
    maas_strbuf_printf(&t, "]}");
    reply_text(res, 200, &t);
}

static void route_alias(maas_kv *kv, const char *model, const char *alias,
                        const maas_http_request *req, maas_http_response *res) {
    char e[MAAS_ERRSTR_SIZE], *v = NULL, *x = NULL;
    maas_err err = maas_json_get(req->body, req->body_len, "version", &v, e, sizeof(e));
    if (!err) err = maas_json_get(req->body, req->body_len, "expect", &x, e, sizeof(e));
    if (err) return reply_error(res, status_of(err), maas_err_code(err), e);
    char *end = NULL;
    long version = v ? strtol(v, &end, 10) : 0;
    int bad = !v || *end || version < 1 || version > INT32_MAX;
    long expect = x ? strtol(x, NULL, 10) : -1;
    free(v);
    free(x);
    if (bad) return reply_error(res, 400, "BAD_FORMAT", "field version: expected an integer >= 1");
    err = maas_kv_alias_set(kv, model, alias, (int)version, (int)expect, e, sizeof(e));
    if (err) return reply_error(res, status_of(err), maas_err_code(err), e);
    maas_strbuf t = {0};
    maas_strbuf_printf(&t, "{\"model\": ");
    put_str(&t, model);
    maas_strbuf_printf(&t, ", \"alias\": ");
    put_str(&t, alias);
    maas_strbuf_printf(&t, ", \"version\": %ld}", version);
    reply_text(res, 200, &t);
}

static void route_h5(maas_kv *kv, const char *model, const char *ref, maas_http_response *res) {
    char e[MAAS_ERRSTR_SIZE];
    int version;
    unsigned char *h5;
    size_t len;
    maas_err err = maas_kv_version_resolve(kv, model, ref, &version, e, sizeof(e));
    if (!err) err = maas_kv_version_get(kv, model, version, &h5, &len, NULL, e, sizeof(e));
    if (err) return reply_error(res, status_of(err), maas_err_code(err), e);
    /* always a file Keras loads: an int8 version is sent as its dequantized float model */
    unsigned char *keras;
    size_t klen;
    err = maas_model_image_for_keras(h5, len, &keras, &klen, NULL, e, sizeof(e));
    free(h5);
    if (err) return reply_error(res, status_of(err), maas_err_code(err), e);
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

static void put_sweep(maas_strbuf *t, const maas_sweep *s, const maas_sweep_row *rows,
                      int finished) {
    maas_strbuf_printf(t, "{\"id\": ");
    put_str(t, s->id);
    maas_strbuf_printf(t, ", \"model\": ");
    put_str(t, s->model);
    maas_strbuf_printf(t, ", \"metric\": \"%s\", \"promote\": ", maas_sweep_metric_name(s->metric));
    put_str(t, s->promote);
    maas_strbuf_printf(t, ", \"points\": %d, \"finished\": %d, \"done\": %s", s->n, finished,
                       s->done ? "true" : "false");
    if (s->done) {
        maas_strbuf_printf(t, ", \"best_version\": %d, \"best_job\": ", s->best_version);
        put_str(t, s->best_job);
    }
    maas_strbuf_printf(t, ", \"ranking\": [");
    for (int i = 0; rows && i < s->n; i++) {
        const maas_sweep_row *r = &rows[i];
        const maas_sweep_point *p = &s->points[r->point];
        maas_strbuf_printf(t, "%s{\"job\": ", i ? ", " : "");
        put_str(t, p->job);
        maas_strbuf_printf(t, ", \"state\": \"%s\"", maas_job_state_name(r->state));
        if (r->state == MAAS_JOB_SUCCEEDED) {
            maas_strbuf_printf(t, ", \"rank\": %d, \"version\": %d, \"val_loss\": ", i + 1,
                               r->version);
            put_num(t, r->val_loss);
            maas_strbuf_printf(t, ", \"val_accuracy\": ");
            put_num(t, r->val_accuracy);
        }
        maas_strbuf_printf(t,
                           ", \"learning_rate\": %.9g, \"batch_size\": %d, \"epochs\": %d, "
                           "\"layers\": ",
                           (double)p->lr, p->batch_size, p->epochs);
        put_str(t, p->layers);
        if (r->error[0]) {
            maas_strbuf_printf(t, ", \"error\": ");
            put_str(t, r->error);
        }
        maas_strbuf_printf(t, "}");
    }
    maas_strbuf_printf(t, "]}");
}

static void route_sweep_get(maas_kv *kv, const char *id, maas_http_response *res) {
    char e[MAAS_ERRSTR_SIZE];
    maas_sweep *s = calloc(1, sizeof(*s));
    if (!s) return reply_error(res, 500, "OUT_OF_MEMORY", "out of memory");
    maas_err err = maas_kv_sweep_load(kv, id, s, e, sizeof(e));
    maas_sweep_row *rows = err ? NULL : calloc((size_t)s->n + 1, sizeof(*rows));
    int finished = 0, best;
    if (!err && !rows) err = maas_errf(e, sizeof(e), MAAS_ERR_NOMEM, "out of memory");
    if (!err) err = maas_sweep_rank(kv, s, rows, &finished, &best, e, sizeof(e));
    if (err) {
        reply_error(res, status_of(err),
                    err == MAAS_ERR_UNKNOWN ? "UNKNOWN_SWEEP" : maas_err_code(err), e);
    } else {
        maas_strbuf t = {0};
        put_sweep(&t, s, rows, finished);
        reply_text(res, 200, &t);
    }
    free(rows);
    free(s);
}

/* POST /v1/sweeps: {"id", "job": {train job}, "grid": {...}, "random", "seed", "metric", "promote"}
 */
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
    maas_err err = s && g ? MAAS_OK : maas_errf(e, sizeof(e), MAAS_ERR_NOMEM, "out of memory");
    const char *keys[] = {"id", "job", "grid", "random", "seed", "metric", "promote"};
    char **vals[] = {&id_json,   &job_json,    &grid_json,   &rand_json,
                     &seed_json, &metric_json, &promote_json};
    for (size_t i = 0; !err && i < MAAS_ARRAY_LEN(keys); i++)
        err = maas_json_get(req->body, req->body_len, keys[i], vals[i], e, sizeof(e));
    if (!err && id_json && !json_plain_string(id_json, id, sizeof(id)))
        err = maas_errf(e, sizeof(e), MAAS_ERR_FORMAT, "field id: expected a string");
    if (!err && !id[0]) {
        const char *key = req->header(req, "Idempotency-Key");
        if (key) {
            snprintf(id, sizeof(id), "%s", key);
        } else {
            char rid[33];
            random_id(rid);
            snprintf(id, sizeof(id), "sw-%.16s", rid);
        }
    }
    if (!err) err = maas_name_check("sweep id", id, e, sizeof(e));
    if (!err && !job_json)
        err = maas_errf(e, sizeof(e), MAAS_ERR_FORMAT,
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
        err = maas_errf(e, sizeof(e), MAAS_ERR_FORMAT,
                        "field job.data: a sweep names its data by dataset (upload it first)");
    if (!err && grid_json) {
        double v[MAAS_SWEEP_MAX_VALUES];
        int n;
        size_t gl = strlen(grid_json);
        err = maas_json_list(grid_json, gl, "learning_rate", v, NULL, 0, MAAS_SWEEP_MAX_VALUES, &n,
                             e, sizeof(e));
        for (int i = 0; !err && i < n; i++) g->lr[g->n_lr++] = (float)v[i];
        if (!err)
            err = maas_json_list(grid_json, gl, "batch_size", v, NULL, 0, MAAS_SWEEP_MAX_VALUES, &n,
                                 e, sizeof(e));
        for (int i = 0; !err && i < n; i++) g->batch[g->n_batch++] = (int)v[i];
        if (!err)
            err = maas_json_list(grid_json, gl, "epochs", v, NULL, 0, MAAS_SWEEP_MAX_VALUES, &n, e,
                                 sizeof(e));
        for (int i = 0; !err && i < n; i++) g->epochs[g->n_epochs++] = (int)v[i];
        if (!err)
            err = maas_json_list(grid_json, gl, "layers", NULL, &g->layers[0][0],
                                 MAAS_SWEEP_LAYERS_MAX, MAAS_SWEEP_MAX_VALUES, &g->n_layers, e,
                                 sizeof(e));
    }
    if (!err && rand_json) g->random = (int)strtol(rand_json, NULL, 10);
    if (!err && seed_json) g->seed = (uint64_t)strtoull(seed_json, NULL, 10);
    if (!err && g->random < 0)
        err = maas_errf(e, sizeof(e), MAAS_ERR_ARG, "field random: must be >= 0");
    char name[MAAS_NAME_MAX + 1];
    if (!err && metric_json &&
        (!json_plain_string(metric_json, name, sizeof(name)) ||
         maas_sweep_metric_from_name(name, &s->metric, e, sizeof(e))))
        err = maas_errf(e, sizeof(e), MAAS_ERR_FORMAT, "field metric: val_loss or val_accuracy");
    if (!err && promote_json &&
        (!json_plain_string(promote_json, s->promote, sizeof(s->promote)) ||
         maas_name_check("promote", s->promote, e, sizeof(e))))
        err = maas_errf(e, sizeof(e), MAAS_ERR_FORMAT, "field promote: an alias name");
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
            err = old ? maas_kv_sweep_load(kv, id, old, e, sizeof(e)) : MAAS_ERR_NOMEM;
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
        reply_error(res, code ? status : status_of(err), code ? code : maas_err_code(err), e);
    } else {
        maas_strbuf t = {0};
        maas_strbuf_printf(&t, "{\"id\": ");
        put_str(&t, id);
        maas_strbuf_printf(&t,
                           ", \"points\": %d, \"submitted\": %d, \"republished\": %d, "
                           "\"resumed\": %s, \"jobs\": [",
                           s->n, submitted, republished, resumed ? "true" : "false");
        for (int k = 0; k < s->n; k++) {
            maas_strbuf_printf(&t, k ? ", " : "");
            put_str(&t, s->points[k].job);
        }
        maas_strbuf_printf(&t, "]}");
        reply_text(res, 202, &t);
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
        return reply_error(res, 503, "UNAVAILABLE", e);
    }
    if (!strcmp(req->path, "/healthz")) {
        int kafka = maas_kafka_wait_ready(c->brokers, c->conf.settings, c->conf.n_settings, 2000, e,
                                          sizeof(e)) == MAAS_OK;
        maas_http_reply(res, kafka ? 200 : 503, "application/json",
                        "{\"status\": \"%s\", \"kafka\": %s, \"redis\": true}\n",
                        kafka ? "ok" : "unhealthy", kafka ? "true" : "false");
    } else if (n >= 1 && strcmp(s[0], "v1")) {
        reply_error(res, 404, "NOT_FOUND", "the API lives under /v1");
    } else if (n == 2 && !strcmp(s[1], "jobs") && !strcmp(m, "POST")) {
        route_submit(c, kv, req, res);
    } else if (n == 3 && !strcmp(s[1], "jobs") && !strcmp(m, "GET")) {
        route_get_job(kv, s[2], res);
    } else if (n == 4 && !strcmp(s[1], "jobs") && !strcmp(s[3], "cancel") && !strcmp(m, "POST")) {
        maas_err err = maas_kv_job_cancel(kv, s[2], e, sizeof(e));
        if (err)
            reply_error(res, status_of(err),
                        err == MAAS_ERR_UNKNOWN ? "UNKNOWN_JOB" : maas_err_code(err), e);
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
        reply_error(res, 404, "NOT_FOUND", "no such route (see the README, \"The HTTP API\")");
    }
    maas_kv_free(kv);
    pthread_mutex_lock(&c->lock);
    if (res->status >= 100 && res->status < 600) c->requests[res->status / 100]++;
    pthread_mutex_unlock(&c->lock);
}

/* ------------------------------------------------------------ housekeeping */

/*
 * Work jobs still `running` whose heartbeat is older than stale_s and whose
 * worker no longer announces itself: published again from their stored
 * message (the record goes back to queued, attempts kept), or failed with
 * WORKER_LOST once they started max_attempts times. A job produced straight
 * to Kafka has no stored message: Kafka's redelivery is its way back, so it
 * is left alone.
 */
static void requeue_stale(coord *c, maas_kv *kv) {
    enum { N = 500 };
    char e[MAAS_ERRSTR_SIZE];
    maas_job_record *recs = calloc(N, sizeof(*recs));
    maas_worker_info *w = NULL;
    int n = 0, nw = 0;
    if (!recs || maas_kv_jobs_list(kv, MAAS_JOB_UNKNOWN, N, recs, &n, e, sizeof(e)) ||
        maas_kv_workers_list(kv, &w, &nw, e, sizeof(e))) {
        for (int i = 0; i < n; i++) maas_job_record_release(&recs[i]);
        free(recs);
        return;
    }
    unsigned long counts[MAAS_JOB__COUNT] = {0};
    int64_t now = maas_wall_ms();
    for (int i = 0; i < n; i++) {
        maas_job_record *r = &recs[i];
        counts[r->state]++;
        int alive = 0;
        for (int k = 0; k < nw; k++) alive |= !strcmp(w[k].id, r->worker);
        int64_t beat = r->heartbeat_ms ? r->heartbeat_ms : r->started_ms;
        if (r->state != MAAS_JOB_RUNNING || !strcmp(r->type, "infer") || alive ||
            now - beat < (int64_t)c->stale_s * 1000)
            continue;
        unsigned char *msg = NULL;
        size_t len = 0;
        char why[400];
        int have = maas_kv_job_message_get(kv, r->id, &msg, &len, e, sizeof(e)) == MAAS_OK;
        if (!have) { /* produced straight to Kafka: its redelivery is the only way back */
            free(msg);
            continue;
        }
        if (r->attempts < c->max_attempts) {
            maas_job_update u = {.to = MAAS_JOB_QUEUED, .from_mask = 1u << MAAS_JOB_RUNNING};
            char topic[256];
            maas_topic_name(c->prefix, MAAS_TOPIC_WORK, topic, sizeof(topic), e, sizeof(e));
            if (maas_kv_job_transition(kv, r->id, &u, e, sizeof(e)) == MAAS_OK) {
                maas_err err =
                    maas_client_publish(c->client, kv, topic, r->id, msg, len, 1, e, sizeof(e));
                fprintf(stderr,
                        "maas-coordinator: job %s: worker %s stopped %llds ago; %s (attempt %d "
                        "of %d)\n",
                        r->id, r->worker, (long long)((now - beat) / 1000),
                        err ? "could not publish it again" : "published it again", r->attempts,
                        c->max_attempts);
                pthread_mutex_lock(&c->lock);
                c->stale_requeued += !err;
                pthread_mutex_unlock(&c->lock);
            }
        } else {
            snprintf(why, sizeof(why), "its worker %.64s vanished %llds ago on attempt %d of %d",
                     r->worker, (long long)((now - beat) / 1000), r->attempts, c->max_attempts);
            maas_job_update u = {.to = MAAS_JOB_FAILED,
                                 .from_mask = 1u << MAAS_JOB_RUNNING,
                                 .error_code = "WORKER_LOST",
                                 .error_message = why,
                                 .notify = 1}; /* what it asked for is unknown here */
            if (maas_kv_job_transition(kv, r->id, &u, e, sizeof(e)) == MAAS_OK) {
                fprintf(stderr, "maas-coordinator: job %s failed: %s\n", r->id, why);
                pthread_mutex_lock(&c->lock);
                c->stale_failed++;
                pthread_mutex_unlock(&c->lock);
            }
        }
        free(msg);
    }
    pthread_mutex_lock(&c->lock);
    memcpy(c->recent, counts, sizeof(counts));
    pthread_mutex_unlock(&c->lock);
    for (int i = 0; i < n; i++) maas_job_record_release(&recs[i]);
    free(recs);
    maas_worker_info_release(w, nw);
}

/* Keeps each model's newest retain_versions versions and every aliased one. */
static void apply_retention(coord *c, maas_kv *kv) {
    char e[MAAS_ERRSTR_SIZE], **names;
    int n;
    if (c->retain_versions <= 0 || maas_kv_models(kv, &names, &n, e, sizeof(e))) return;
    for (int i = 0; i < n; i++) {
        int count = 0;
        if (maas_kv_version_count(kv, names[i], &count, e, sizeof(e)) == MAAS_OK)
            for (int v = count - c->retain_versions; v >= 1; v--) {
                maas_version_meta meta;
                if (maas_kv_version_meta(kv, names[i], v, &meta, e, sizeof(e))) continue;
                maas_version_meta_release(&meta);
                if (maas_kv_version_delete(kv, names[i], v, e, sizeof(e)) == MAAS_OK) {
                    fprintf(stderr, "maas-coordinator: retention: deleted %s version %d\n",
                            names[i], v);
                    pthread_mutex_lock(&c->lock);
                    c->versions_deleted++;
                    pthread_mutex_unlock(&c->lock);
                }
            }
        free(names[i]);
    }
    free(names);
}

/* Every 2 s: sweeps whose points are all final get their promote alias and are marked done. */
static void *housekeeping(void *ud) {
    coord *c = ud;
    maas_kv *kv = NULL;
    maas_sweep *s = calloc(1, sizeof(*s));
    char e[MAAS_ERRSTR_SIZE];
    for (long tick = 0; !stop && s; tick++) {
        for (int i = 0; i < 20 && !stop; i++) {
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (!kv &&
            !(kv = maas_kv_connect(c->redis, c->conf.settings, c->conf.n_settings, e, sizeof(e))))
            continue;
        if (tick % 5 == 0) requeue_stale(c, kv);
        if (tick % 5 == 0) apply_retention(c, kv);
        char **ids;
        int n;
        if (maas_kv_sweeps_active(kv, &ids, &n, e, sizeof(e))) continue;
        unsigned long points = 0, finished = 0, settled = 0;
        maas_sweep_row *rows = calloc(MAAS_SWEEP_MAX_POINTS, sizeof(*rows));
        for (int i = 0; i < n; i++) {
            int did = 0, fin = 0, best;
            if (!rows || maas_kv_sweep_load(kv, ids[i], s, e, sizeof(e)) ||
                maas_sweep_rank(kv, s, rows, &fin, &best, e, sizeof(e))) {
                free(ids[i]);
                continue;
            }
            points += (unsigned long)s->n;
            finished += (unsigned long)fin;
            if (maas_sweep_settle(kv, s, rows, fin, best, &did, e, sizeof(e)) == MAAS_OK && did &&
                ++settled)
                fprintf(stderr, "maas-coordinator: sweep %s done: best %s version %d%s%s\n", s->id,
                        s->model, s->best_version, s->promote[0] ? ", promoted to " : "",
                        s->promote);
            free(ids[i]);
        }
        free(rows);
        free(ids);
        pthread_mutex_lock(&c->lock);
        c->sweeps_active = (unsigned long)n - settled;
        c->sweep_points = points;
        c->sweep_finished = finished;
        c->sweeps_settled += settled;
        pthread_mutex_unlock(&c->lock);
    }
    free(s);
    maas_kv_free(kv);
    return NULL;
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
    int hk_started = pthread_create(&hk, NULL, housekeeping, &c) == 0;
    /* delivery reports are served by the threads that wait for them (maas/client.h) */
    while (!stop) usleep(100 * 1000);
    fprintf(stderr, "maas-coordinator: stopping\n");
    if (hk_started) pthread_join(hk, NULL);
    maas_http_stop(h);
    maas_client_free(c.client);
    maas_config_release(&c.conf);
    return 0;
}
