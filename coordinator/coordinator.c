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
 *   PUT  /v1/datasets/{name}              store training/evaluation data ({"x", "y"} as
 *                                         JSON, or msgpack); GET its shape; DELETE
 *   POST /v1/sweeps                       a grid/random search as training jobs; 202
 *   GET  /v1/sweeps/{id}                  its points, ranked by the validation metric
 *   GET  /healthz, /metrics
 *
 * Authentication (--auth on, the default): every route but /healthz needs
 * "Authorization: Bearer <API key>" (maas/auth.h). A tenant's key works in its
 * tenant's namespace only (its models, jobs, sweeps and topics: another
 * tenant's names are simply not there, 404); an operator's key (no tenant)
 * works in the single-tenant namespace, or, with the admin scope, in the one
 * "X-Maas-Tenant: T" names. GET routes need the read scope, the others submit,
 * /metrics admin. --auth off (loopback only) trusts X-Maas-Tenant.
 *
 * A housekeeping thread settles finished sweeps (moves their promote alias to
 * the best version) from what Redis holds, so a restart loses nothing.
 *
 * Every submission writes the queued record before publishing (idempotent
 * producer) and reports a publish failure (503; the record says failed).
 * Exit status: 0 after SIGTERM/SIGINT, 1 if it cannot start, 2 on usage errors.
 *
 * This file: the job routes, the Redis connection pool, dispatch and main. The
 * registry routes are registry.c, the sweep routes sweeps.c, JSON output
 * json_out.c, the housekeeping thread housekeeping.c (coordinator.h).
 */
#include "maas/base.h"
#include "maas/auth.h"
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

maas_err coord_submit(coord *c, maas_kv *kv, maas_job *j, int republish, int *again, char *e,
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
    return coord_submit(c, kv, j, 0, NULL, e, es);
}

/* ------------------------------------------------------------ routes */

/* The job a request body describes, once the body (doc, freed here) is edited: 0, or 1
 * after replying with err (an earlier edit's) or the codec's error naming the field. */
static int job_of_doc(maas_json *doc, maas_err err, maas_job *j, char *e, maas_http_response *res) {
    if (!err)
        err = maas_job_decode_json_doc(doc, j, e, MAAS_ERRSTR_SIZE);
    else
        maas_job_init(j, MAAS_JOBTYPE_NONE);
    maas_json_free(doc);
    if (!err) return 0;
    maas_job_release(j);
    coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    return 1;
}

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
    if (job_of_doc(doc, err, &j, e, res)) return;
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
    if (job_of_doc(doc, err, &j, e, res)) return;
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

/* ------------------------------------------------------------ authentication */

/*
 * Who is calling: sets kv's scope to the caller's tenant and returns 0, or replies
 * 401/403/404 and returns -1. need: the scope the route requires (MAAS_SCOPE_*).
 * Unknown key ids and wrong secrets get one answer, so neither can be probed.
 */
static int authenticate(coord *c, maas_kv *kv, const maas_http_request *req, unsigned need,
                        maas_http_response *res) {
    char e[MAAS_ERRSTR_SIZE], id[MAAS_API_KEY_ID_LEN + 1], secret[65];
    const char *as = req->header(req, "X-Maas-Tenant");
    if (strcmp(c->auth, "on")) { /* development, loopback only: the header is trusted */
        if (!maas_kv_scope(kv, as, e, sizeof(e))) return 0;
        coord_reply_error(res, 400, "INVALID_ARGUMENT", e);
        return -1;
    }
    const char *h = req->header(req, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7)) {
        coord_reply_error(res, 401, "UNAUTHENTICATED",
                          "no credential: send \"Authorization: Bearer <API key>\" (maas tenant "
                          "create prints a key)");
        return -1;
    }
    maas_api_key k;
    maas_err err = maas_api_token_split(h + 7, id, secret, e, sizeof(e));
    if (!err) {
        err = maas_kv_apikey_get(kv, id, &k, e, sizeof(e));
        if (err == MAAS_ERR_UNKNOWN_NAME || (!err && !maas_api_key_matches(&k, secret)))
            err = maas_errf(e, sizeof(e), MAAS_ERR_UNAUTHENTICATED,
                            "invalid API key (unknown, revoked, expired or wrong)");
    }
    memset(secret, 0, sizeof(secret));
    if (err) {
        coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
        return -1;
    }
    if (!(k.scopes & need)) {
        char have[32];
        maas_scopes_format(k.scopes, have, sizeof(have));
        snprintf(e, sizeof(e), "key %s has the scopes '%s'; this route needs '%s'", k.id, have,
                 need == MAAS_SCOPE_READ     ? "read"
                 : need == MAAS_SCOPE_SUBMIT ? "submit"
                                             : "admin");
        coord_reply_error(res, 403, "FORBIDDEN", e);
        return -1;
    }
    const char *tenant = k.tenant;
    if (as && *as && strcmp(as, k.tenant)) {
        int exists = 0;
        if (k.tenant[0] || !(k.scopes & MAAS_SCOPE_ADMIN)) { /* only an operator's admin key */
            coord_reply_error(res, 403, "FORBIDDEN",
                              "X-Maas-Tenant: only an operator's key with the admin scope may act "
                              "for a tenant");
            return -1;
        }
        if ((err = maas_kv_tenant_exists(kv, as, &exists, e, sizeof(e))) || !exists) {
            coord_reply_error(res, err ? coord_status_of(err) : 404,
                              err ? maas_err_code(err) : "UNKNOWN_TENANT",
                              err ? e : "X-Maas-Tenant: no such tenant");
            return -1;
        }
        tenant = as;
    }
    if ((err = maas_kv_scope(kv, tenant, e, sizeof(e)))) {
        coord_reply_error(res, 500, maas_err_code(err), e);
        return -1;
    }
    return 0;
}

static void handle(void *ud, const maas_http_request *req, maas_http_response *res) {
    coord *c = ud;
    char buf[1024], *s[8], e[MAAS_ERRSTR_SIZE];
    int n = segments(req->path, buf, sizeof(buf), s, 8);
    const char *m = req->method;
    int metrics = !strcmp(req->path, "/metrics") && !strcmp(m, "GET");
    if (!strcmp(m, "GET") && coord_route_ui(req->path, res)) return; /* no data: no key */
    maas_kv *kv = pool_get(c, e, sizeof(e));
    if (!kv) {
        if (!strcmp(req->path, "/healthz"))
            return maas_http_reply(res, 503, "application/json",
                                   "{\"status\": \"unhealthy\", \"redis\": false}\n");
        return coord_reply_error(res, 503, "UNAVAILABLE", e);
    }
    unsigned need = metrics             ? MAAS_SCOPE_ADMIN
                    : !strcmp(m, "GET") ? MAAS_SCOPE_READ
                                        : MAAS_SCOPE_SUBMIT;
    if (strcmp(req->path, "/healthz") && authenticate(c, kv, req, need, res)) {
        /* replied */
    } else if (metrics) {
        route_metrics(c, res);
    } else if (!strcmp(req->path, "/healthz")) {
        int kafka = maas_kafka_wait_ready(c->brokers, c->conf.settings, c->conf.n_settings, 2000, e,
                                          sizeof(e)) == MAAS_OK;
        maas_http_reply(res, kafka ? 200 : 503, "application/json",
                        "{\"status\": \"%s\", \"kafka\": %s, \"redis\": true}\n",
                        kafka ? "ok" : "unhealthy", kafka ? "true" : "false");
    } else if (n >= 1 && strcmp(s[0], "v1")) {
        coord_reply_error(res, 404, "NOT_FOUND", "the API lives under /v1");
    } else if (n == 2 && !strcmp(s[1], "jobs") && !strcmp(m, "POST")) {
        route_submit(c, kv, req, res);
    } else if (n == 2 && !strcmp(s[1], "jobs") && !strcmp(m, "GET")) {
        coord_route_jobs_list(kv, req, res);
    } else if (n == 3 && !strcmp(s[1], "jobs") && !strcmp(m, "GET")) {
        route_get_job(kv, s[2], res);
    } else if (n == 4 && !strcmp(s[1], "jobs") && !strcmp(s[3], "epochs") && !strcmp(m, "GET")) {
        coord_route_job_epochs(kv, s[2], req, res);
    } else if (n == 2 && !strcmp(s[1], "workers") && !strcmp(m, "GET")) {
        coord_route_workers(kv, res);
    } else if (n == 2 && !strcmp(s[1], "sweeps") && !strcmp(m, "GET")) {
        coord_route_sweeps_active(kv, res);
    } else if (n == 4 && !strcmp(s[1], "jobs") && !strcmp(s[3], "cancel") && !strcmp(m, "POST")) {
        maas_err err = maas_kv_job_cancel(kv, s[2], e, sizeof(e));
        if (err)
            coord_reply_error(res, coord_status_of(err),
                              err == MAAS_ERR_UNKNOWN_NAME ? "UNKNOWN_JOB" : maas_err_code(err), e);
        else
            route_get_job(kv, s[2], res);
    } else if (n == 3 && !strcmp(s[1], "datasets") && !strcmp(m, "PUT")) {
        coord_route_dataset_put(kv, s[2], req, res);
    } else if (n == 3 && !strcmp(s[1], "datasets") && !strcmp(m, "GET")) {
        coord_route_dataset_get(kv, s[2], res);
    } else if (n == 3 && !strcmp(s[1], "datasets") && !strcmp(m, "DELETE")) {
        coord_route_dataset_delete(kv, s[2], res);
    } else if (n == 2 && !strcmp(s[1], "sweeps") && !strcmp(m, "POST")) {
        coord_route_sweep_submit(c, kv, req, res);
    } else if (n == 3 && !strcmp(s[1], "sweeps") && !strcmp(m, "GET")) {
        coord_route_sweep_get(kv, s[2], res);
    } else if (n == 2 && !strcmp(s[1], "models") && !strcmp(m, "GET")) {
        coord_route_models(kv, res);
    } else if (n == 3 && !strcmp(s[1], "models") && strstr(s[2], ":predict") &&
               !strcmp(m, "POST")) {
        *strstr(s[2], ":predict") = '\0';
        route_predict(c, kv, s[2], req, res);
    } else if (n == 4 && !strcmp(s[1], "models") && !strcmp(s[3], "versions") &&
               !strcmp(m, "GET")) {
        coord_route_versions(kv, s[2], res);
    } else if (n == 5 && !strcmp(s[1], "models") && !strcmp(s[3], "aliases") && !strcmp(m, "PUT")) {
        coord_route_alias(kv, s[2], s[4], req, res);
    } else if (n == 6 && !strcmp(s[1], "models") && !strcmp(s[3], "versions") &&
               !strcmp(s[5], "h5") && !strcmp(m, "GET")) {
        coord_route_h5(kv, s[2], s[4], res);
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
    "  --auth on|off   API keys on every route but /healthz (MAAS_AUTH; on). off: development\n"
    "                  only, refused unless --http is a loopback address\n"
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
    "                  as kafka.sasl.password belong there, not on the command line\n"
    "  --check-config  check the settings, print them (secrets masked), exit: 0 if it\n"
    "                  would start with them (nothing is connected or bound)\n";
int main(int argc, char **argv) {
    static coord c;
    snprintf(c.brokers, sizeof(c.brokers), "127.0.0.1:19092");
    snprintf(c.redis, sizeof(c.redis), "redis://127.0.0.1:16379");
    snprintf(c.prefix, sizeof(c.prefix), "%s", MAAS_TOPIC_PREFIX_DEFAULT);
    snprintf(c.listen, sizeof(c.listen), "127.0.0.1:18080");
    snprintf(c.auth, sizeof(c.auth), "on");
    c.stale_s = 60;
    c.max_attempts = 3;
    c.retain_versions = 0;
    maas_http_limits lim = maas_http_limits_default(); /* the server's defaults, settable */
    c.max_body_mb = (long)(lim.max_body >> 20);
    c.max_connections = (int)lim.max_connections;
    c.max_per_client = (int)lim.max_per_client;
    c.redis_pool = 16;
    const maas_option opts[] = {
        MAAS_OPTION_CLUSTER(c.brokers, c.redis, c.prefix),
        {"http", "MAAS_COORDINATOR_HTTP", MAAS_OPTION_STRING, c.listen, sizeof(c.listen), 0, 0},
        {"auth", "MAAS_AUTH", MAAS_OPTION_STRING, c.auth, sizeof(c.auth), 0, 0},
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
    maas_err ce = maas_config_init(&c.conf, "maas-coordinator", opts, (int)MAAS_ARRAY_LEN(opts), e,
                                   sizeof(e));
    c.conf.checkable = 1;
    if (ce || maas_config_parse_args(&c.conf, argc, argv, &help, e, sizeof(e))) {
        fprintf(stderr, "%s\n%s", e, usage);
        maas_config_release(&c.conf);
        return 2;
    }
    if (help) return fputs(usage, stdout), 0;
    char addr[64];
    snprintf(addr, sizeof(addr), "%s", c.listen);
    char *colon = strrchr(addr, ':');
    if (!colon) return fputs(usage, stderr), 2;
    *colon = '\0';
    if (strcmp(c.auth, "on") && strcmp(c.auth, "off"))
        return fprintf(stderr, "maas-coordinator: --auth '%s': on or off\n", c.auth), 2;
    /* without authentication, only this machine may reach it */
    if (!strcmp(c.auth, "off") && strncmp(addr, "127.", 4) && strcmp(addr, "localhost") &&
        strcmp(addr, "::1") && strcmp(addr, "[::1]"))
        return fprintf(stderr,
                       "maas-coordinator: --auth off is for development on loopback only; "
                       "refusing to serve %s without authentication\n",
                       addr),
               2;
    maas_client_config cc = {.brokers = c.brokers,
                             .redis_url = c.redis,
                             .topic_prefix = c.prefix,
                             .settings = c.conf.settings,
                             .n_settings = c.conf.n_settings};
    if (c.conf.check) { /* --check-config: what connecting would refuse, said now */
        maas_strbuf t = {0};
        int rc = maas_client_check(&cc, e, sizeof(e)) ? 2 : 0;
        maas_config_describe(&c.conf, &t);
        if (rc)
            fprintf(stderr, "maas-coordinator: %s\n", e);
        else
            printf("%s\nmaas-coordinator: the configuration is valid\n", t.p ? t.p : "");
        free(t.p);
        maas_config_release(&c.conf);
        return rc;
    }
    pthread_mutex_init(&c.lock, NULL);
    pthread_cond_init(&c.pool_freed, NULL);
    if (!(c.pool_idle = calloc((size_t)c.redis_pool, sizeof(*c.pool_idle))))
        return fputs("maas-coordinator: out of memory\n", stderr), 1;
    if (!(c.client = maas_client_new(&cc, e, sizeof(e)))) {
        fprintf(stderr, "maas-coordinator: %s\n", e);
        return 1;
    }
    lim.max_body = (size_t)c.max_body_mb << 20;
    lim.max_connections = (unsigned)c.max_connections;
    lim.max_per_client = (unsigned)c.max_per_client;
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
            "maas-coordinator: serving http://%s:%d (authentication %s; kafka %s, redis %s; stale "
            "after %d s, %d attempts; retain %d versions)\n",
            addr, maas_http_port(h), c.auth, c.brokers, shown, c.stale_s, c.max_attempts,
            c.retain_versions);
    pthread_t hk;
    int hk_started = pthread_create(&hk, NULL, coord_housekeeping, &c) == 0;
    /* delivery reports are served by the threads that wait for them (maas/client.h) */
    while (!coord_stop) usleep(100 * 1000);
    fprintf(stderr, "maas-coordinator: stopping\n");
    /* each step said as it ends, timed: a slow stop says where it waits */
    double t0 = maas_mono_s();
    if (hk_started) pthread_join(hk, NULL);
    fprintf(stderr, "maas-coordinator: housekeeping stopped (%.1f s)\n", maas_mono_s() - t0);
    maas_http_stop(h);
    fprintf(stderr, "maas-coordinator: HTTP stopped (%.1f s)\n", maas_mono_s() - t0);
    while (c.pool_n_idle) maas_kv_free(c.pool_idle[--c.pool_n_idle]);
    free(c.pool_idle);
    maas_client_free(c.client); /* flushes the producer: up to 10 s for what is undelivered */
    fprintf(stderr, "maas-coordinator: stopped (%.1f s)\n", maas_mono_s() - t0);
    maas_config_release(&c.conf);
    return 0;
}
