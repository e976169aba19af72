/* Datasets in Redis: maas:dataset:{NAME}, the bytes as stored (schemas/redis-keys.md). */
#include "maas/base.h"
#include "maas/kv.h"
#include "internal.h"

maas_err maas_kv_dataset_put(maas_kv *kv, const char *name, const void *bytes, size_t len,
                             char *errstr, size_t errstr_size) {
    maas_err err = maas_name_check("dataset name", name, errstr, errstr_size);
    if (err) return err;
    char key[256];
    KEY(key, kv, "dataset:{%s}", name);
    const char *argv[] = {"SET", key, bytes};
    size_t lens[] = {3, strlen(key), len};
    redisReply *rep = kv_cmd(kv, 3, argv, lens, errstr, errstr_size);
    if (!rep) return kv->last_err;
    freeReplyObject(rep);
    return MAAS_OK;
}

maas_err maas_kv_dataset_get(maas_kv *kv, const char *name, unsigned char **bytes, size_t *len,
                             char *errstr, size_t errstr_size) {
    *bytes = NULL;
    *len = 0;
    maas_err err = maas_name_check("dataset name", name, errstr, errstr_size);
    if (err) return err;
    char key[256], missing[200];
    KEY(key, kv, "dataset:{%s}", name);
    snprintf(missing, sizeof(missing), "no dataset '%s'", name);
    return kv_get_blob(kv, key, missing, bytes, len, errstr, errstr_size);
}

maas_err maas_kv_dataset_delete(maas_kv *kv, const char *name, char *errstr, size_t errstr_size) {
    maas_err err = maas_name_check("dataset name", name, errstr, errstr_size);
    if (err) return err;
    char key[256];
    KEY(key, kv, "dataset:{%s}", name);
    const char *argv[] = {"DEL", key};
    redisReply *rep = kv_cmd(kv, 2, argv, NULL, errstr, errstr_size);
    if (!rep) return kv->last_err;
    long long n = rep->integer;
    freeReplyObject(rep);
    return n ? MAAS_OK
             : maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME, "no dataset '%s'", name);
}
