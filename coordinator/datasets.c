/*
 * The coordinator's dataset routes: a client's way to store training and evaluation data
 * too large for a job message (or for a tenant, whose Redis user only reads), by name, in
 * its namespace (PUT/GET/DELETE /v1/datasets/{name}). The body is the dataset in the
 * protocol's JSON view ({"x": matrix, "y": matrix}) or, with Content-Type
 * application/msgpack, its msgpack bytes; either way it is checked by the codec and
 * stored in one form, the dataset blob of job.h (schemas/redis-keys.md).
 */
#include "maas/base.h"
#include "maas/job.h"
#include "maas/json.h"
#include "maas/kv.h"
#include "coordinator.h"

static void put_summary(maas_strbuf *t, const char *name, const maas_data *d, size_t bytes) {
    maas_strbuf_printf(t, "{\"name\": ");
    coord_put_str(t, name);
    maas_strbuf_printf(t, ", \"rows\": %u, \"features\": %u, \"outputs\": %u, \"bytes\": %zu}",
                       d->x.rows, d->x.cols, d->y.cols, bytes);
}

void coord_route_dataset_put(maas_kv *kv, const char *name, const maas_http_request *req,
                             maas_http_response *res) {
    char e[MAAS_ERRSTR_SIZE];
    maas_err err = maas_name_check("dataset name", name, e, sizeof(e));
    if (err) return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    const char *type = req->header(req, "Content-Type");
    int msgpack = type && !strncasecmp(type, "application/msgpack", 19);
    unsigned char *packed = NULL, *blob = NULL;
    size_t packed_len = 0, blob_len = 0;
    if (!req->body_len)
        err = maas_errf(e, sizeof(e), MAAS_ERR_BAD_FORMAT,
                        "an empty body: send {\"x\": matrix, \"y\": matrix}");
    else if (!msgpack)
        err = maas_json_to_msgpack(req->body, req->body_len, &packed, &packed_len, e, sizeof(e));
    maas_data d;
    memset(&d, 0, sizeof(d));
    if (!err)
        err = maas_dataset_decode(msgpack ? (const void *)req->body : packed,
                                  msgpack ? req->body_len : packed_len, &d, e, sizeof(e));
    free(packed);
    /* stored in one form (float32 bin matrices), whatever the client sent */
    if (!err) err = maas_dataset_encode(&d.x, &d.y, &blob, &blob_len, e, sizeof(e));
    if (!err) err = maas_kv_dataset_put(kv, name, blob, blob_len, e, sizeof(e));
    free(blob);
    if (err) {
        maas_matrix_release(&d.x);
        maas_matrix_release(&d.y);
        return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    }
    maas_strbuf t = {0};
    put_summary(&t, name, &d, blob_len);
    maas_matrix_release(&d.x);
    maas_matrix_release(&d.y);
    coord_reply_text(res, 201, &t);
}

void coord_route_dataset_get(maas_kv *kv, const char *name, maas_http_response *res) {
    char e[MAAS_ERRSTR_SIZE];
    unsigned char *blob = NULL;
    size_t len = 0;
    maas_data d;
    memset(&d, 0, sizeof(d));
    maas_err err = maas_kv_dataset_get(kv, name, &blob, &len, e, sizeof(e));
    if (!err) err = maas_dataset_decode(blob, len, &d, e, sizeof(e));
    free(blob);
    if (err == MAAS_ERR_UNKNOWN_NAME) return coord_reply_error(res, 404, "UNKNOWN_DATASET", e);
    if (err) return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    maas_strbuf t = {0};
    put_summary(&t, name, &d, len);
    maas_matrix_release(&d.x);
    maas_matrix_release(&d.y);
    coord_reply_text(res, 200, &t);
}

void coord_route_dataset_delete(maas_kv *kv, const char *name, maas_http_response *res) {
    char e[MAAS_ERRSTR_SIZE];
    maas_err err = maas_kv_dataset_delete(kv, name, e, sizeof(e));
    if (err == MAAS_ERR_UNKNOWN_NAME) return coord_reply_error(res, 404, "UNKNOWN_DATASET", e);
    if (err) return coord_reply_error(res, coord_status_of(err), maas_err_code(err), e);
    maas_strbuf t = {0};
    maas_strbuf_printf(&t, "{\"name\": ");
    coord_put_str(&t, name);
    maas_strbuf_printf(&t, ", \"deleted\": true}");
    coord_reply_text(res, 200, &t);
}
