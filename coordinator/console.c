/*
 * The web console (README, "The web console"): its files under /ui/ (embedded at build time
 * from coordinator/ui/ by cmake/embed_files.cmake; served without a key: they hold no data)
 * and the read routes it draws from, which are API routes like any other:
 *   GET /v1/jobs?state=&type=&model=&limit=   recent jobs, newest first (no results)
 *   GET /v1/jobs/{id}/epochs?from=N           a training job's epochs so far (live curves)
 *   GET /v1/workers                           the fleet (a tenant sees no job or model names)
 *   GET /v1/sweeps                            the sweeps still running
 */
#include "maas/base.h"
#include "maas/kv.h"
#include "maas/strbuf.h"
#include "console_assets.h"
#include "coordinator.h"

/* The query argument name: a string (copied into out, "" when absent); a number in min..max,
 * else dflt when absent, -1 when not such a number. */
static void query_str(const maas_http_request *req, const char *name, char *out, size_t size) {
    const char *v = req->arg(req, name);
    snprintf(out, size, "%s", v ? v : "");
}

static long query_long(const maas_http_request *req, const char *name, long dflt, long min,
                       long max) {
    const char *v = req->arg(req, name);
    if (!v) return dflt;
    char *end;
    long n = strtol(v, &end, 10);
    return end == v || *end || n < min || n > max ? -1 : n;
}

void coord_route_jobs_list(maas_kv *kv, const maas_http_request *req, maas_http_response *res) {
    char e[MAAS_ERRSTR_SIZE], state[16], type[16], model[2 * MAAS_NAME_MAX + 2];
    long limit = query_long(req, "limit", 50, 1, 500);
    if (limit < 0) return coord_reply_error(res, 400, "INVALID_ARGUMENT", "limit: 1..500");
    maas_job_state st = MAAS_JOB_UNKNOWN;
    query_str(req, "state", state, sizeof(state));
    query_str(req, "type", type, sizeof(type));
    query_str(req, "model", model, sizeof(model));
    if (state[0] && (st = maas_job_state_from_name(state)) == MAAS_JOB_UNKNOWN)
        return coord_reply_error(res, 400, "INVALID_ARGUMENT",
                                 "state: queued, running, succeeded, failed, expired or cancelled");
    /* filtered here by type and model: read more records than shown, within a bound */
    int want = type[0] || model[0] ? 1000 : (int)limit, n = 0;
    maas_job_record *recs = calloc((size_t)want, sizeof(*recs));
    if (!recs) return coord_reply_error(res, 500, "OUT_OF_MEMORY", "out of memory");
    maas_err err = maas_kv_jobs_list(kv, st, want, recs, &n, e, sizeof(e));
    if (err) {
        free(recs);
        return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    }
    maas_strbuf t = {0};
    maas_strbuf_printf(&t, "{\"jobs\": [");
    int shown = 0;
    for (int i = 0; i < n; i++) {
        const maas_job_record *r = &recs[i];
        /* a model filter matches the name with or without its version or alias */
        size_t ml = strlen(model);
        int model_ok =
            !model[0] || !strcmp(r->model, model) ||
            (!strncmp(r->model, model, ml) && (r->model[ml] == ':' || r->model[ml] == '@'));
        if (shown < limit && (!type[0] || !strcmp(r->type, type)) && model_ok) {
            maas_strbuf_printf(&t, shown ? ", " : "");
            coord_put_record_brief(&t, r);
            shown++;
        }
        maas_job_record_release(&recs[i]);
    }
    free(recs);
    maas_strbuf_printf(&t, "]}");
    coord_reply_text(res, 200, &t);
}

void coord_route_job_epochs(maas_kv *kv, const char *id, const maas_http_request *req,
                            maas_http_response *res) {
    char e[MAAS_ERRSTR_SIZE], **lines;
    long from = query_long(req, "from", 0, 0, 1L << 30);
    if (from < 0) return coord_reply_error(res, 400, "INVALID_ARGUMENT", "from: an epoch index");
    int n;
    maas_err err = maas_kv_job_epochs(kv, id, from, 1000, &lines, &n, e, sizeof(e));
    if (err) return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    maas_strbuf t = {0};
    maas_strbuf_printf(&t, "{\"id\": ");
    coord_put_str(&t, id);
    maas_strbuf_printf(&t, ", \"from\": %ld, \"next\": %ld, \"epochs\": [", from, from + n);
    for (int i = 0; i < n; i++) {
        /* the worker's own JSON objects (work.c); anything else is shown as null */
        maas_strbuf_printf(&t, "%s%s", i ? ", " : "", lines[i][0] == '{' ? lines[i] : "null");
        free(lines[i]);
    }
    free(lines);
    maas_strbuf_printf(&t, "]}");
    coord_reply_text(res, 200, &t);
}

void coord_route_workers(maas_kv *kv, maas_http_response *res) {
    char e[MAAS_ERRSTR_SIZE];
    maas_worker_info *w;
    int n;
    maas_err err = maas_kv_workers_list(kv, &w, &n, e, sizeof(e));
    if (err) return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    /* workers serve every tenant: a tenant's caller is not shown what they hold or run */
    int tenant = maas_kv_tenant(kv)[0] != '\0';
    maas_strbuf t = {0};
    maas_strbuf_printf(&t, "{\"workers\": [");
    for (int i = 0; i < n; i++) {
        maas_strbuf_printf(&t, "%s{\"id\": ", i ? ", " : "");
        coord_put_str(&t, w[i].id);
        for (int k = 0; k < w[i].n_fields; k++) {
            const char *key = w[i].keys[k];
            if (!strcmp(key, "id") || (tenant && (!strcmp(key, "loaded") || !strcmp(key, "busy"))))
                continue;
            maas_strbuf_printf(&t, ", ");
            coord_put_str(&t, key);
            maas_strbuf_printf(&t, ": ");
            coord_put_str(&t, w[i].values[k]);
        }
        maas_strbuf_printf(&t, "}");
    }
    maas_worker_info_release(w, n);
    maas_strbuf_printf(&t, "]}");
    coord_reply_text(res, 200, &t);
}

void coord_route_sweeps_active(maas_kv *kv, maas_http_response *res) {
    char e[MAAS_ERRSTR_SIZE], **ids;
    int n;
    maas_err err = maas_kv_sweeps_active(kv, &ids, &n, e, sizeof(e));
    if (err) return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    maas_strbuf t = {0};
    maas_strbuf_printf(&t, "{\"active\": [");
    for (int i = 0; i < n; i++) {
        maas_strbuf_printf(&t, i ? ", " : "");
        coord_put_str(&t, ids[i]);
        free(ids[i]);
    }
    free(ids);
    maas_strbuf_printf(&t, "]}");
    coord_reply_text(res, 200, &t);
}

/* ------------------------------------------------------------ the console's files */

static const char *content_type(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return "application/octet-stream";
    if (!strcmp(dot, ".html")) return "text/html; charset=utf-8";
    if (!strcmp(dot, ".js")) return "text/javascript; charset=utf-8";
    if (!strcmp(dot, ".css")) return "text/css; charset=utf-8";
    if (!strcmp(dot, ".svg")) return "image/svg+xml";
    return "application/octet-stream";
}

int coord_route_ui(const char *path, maas_http_response *res) {
    if (strncmp(path, "/ui", 3) || (path[3] && path[3] != '/')) return 0;
    const char *name = path[3] && path[4] ? path + 4 : "index.html";
    for (const coord_asset *a = coord_assets; a->name; a++) {
        if (strcmp(a->name, name)) continue;
        if (!(res->body = malloc(a->len ? a->len : 1))) {
            coord_reply_error(res, 500, "OUT_OF_MEMORY", "out of memory");
            return 1;
        }
        memcpy(res->body, a->bytes, a->len);
        res->body_len = a->len;
        res->status = 200;
        snprintf(res->content_type, sizeof(res->content_type), "%s", content_type(name));
        return 1;
    }
    coord_reply_error(res, 404, "NOT_FOUND", "no such file of the console (start at /ui/)");
    return 1;
}
