/*
 * The coordinator's registry routes: models, versions, aliases, model files
 * (GET /v1/models..., PUT .../aliases/{a}, GET .../versions/{ref}/h5).
 */
#include "maas/base.h"
#include "maas/job.h"
#include "maas/json.h"
#include "maas/kv.h"
#include "maas/model_io.h"
#include "coordinator.h"

void coord_route_models(maas_kv *kv, maas_http_response *res) {
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

void coord_route_versions(maas_kv *kv, const char *model, maas_http_response *res) {
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

void coord_route_alias(maas_kv *kv, const char *model, const char *alias,
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

void coord_route_h5(maas_kv *kv, const char *model, const char *ref, maas_http_response *res) {
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
