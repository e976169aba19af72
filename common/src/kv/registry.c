/*
 * The model registry in Redis: models, versions (a version is its model.h5's bytes and what
 * was measured), aliases, retention (cache.c caches version resolution).
 */
#include "maas/base.h"
#include "maas/clock.h"
#include "maas/digest.h"
#include "maas/kv.h"
#include "internal.h"

void maas_version_meta_release(maas_version_meta *m) {
    if (!m) return;
    free(m->metrics);
    free(m->config);
    m->metrics = m->config = NULL;
}

maas_err maas_kv_version_create(maas_kv *kv, const char *model, const char *job, int parent,
                                const void *h5, size_t len, const char *metrics_json,
                                const char *config_json, int *version, int *created, char *errstr,
                                size_t errstr_size) {
    maas_err err = maas_name_check("model name", model, errstr, errstr_size);
    if (!err) err = maas_name_check("job id", job, errstr, errstr_size);
    if (err) return err;
    char km[256], kver[256], kjobs[256], kal[256], sha[65];
    KEY(km, kv, "model:{%s}", model);
    KEY(kver, kv, "model:{%s}:versions", model);
    KEY(kjobs, kv, "model:{%s}:jobs", model);
    KEY(kal, kv, "model:{%s}:aliases", model);
    maas_sha256_hex(h5, len, sha);
    int64_t t = maas_wall_ms();
    argv_buf a = {0};
    arg_script(&a, &kv_lua_version_create, 4);
    arg_s(&a, km);
    arg_s(&a, kver);
    arg_s(&a, kjobs);
    arg_s(&a, kal);
    arg_s(&a, job);
    arg_i(&a, t);
    arg_s(&a, "h5"), arg(&a, h5, len);
    arg_s(&a, "sha256"), arg_s(&a, sha);
    arg_s(&a, "size"), arg_i(&a, (long long)len);
    arg_s(&a, "parent"), arg_i(&a, parent);
    arg_s(&a, "job"), arg_s(&a, job);
    arg_s(&a, "created_ms"), arg_i(&a, t);
    if (metrics_json) arg_s(&a, "metrics"), arg_s(&a, metrics_json);
    if (config_json) arg_s(&a, "config"), arg_s(&a, config_json);
    redisReply *rep = kv_cmd(kv, a.n, a.v, a.len, errstr, errstr_size);
    if (!rep) return kv->last_err;
    *version = rep->elements == 2 ? (int)rep->element[0]->integer : 0;
    if (created) *created = rep->elements == 2 ? (int)rep->element[1]->integer : 0;
    freeReplyObject(rep);
    /* The model list lives in another hash slot: added after, idempotently. */
    char kmodels[128];
    snprintf(kmodels, sizeof(kmodels), "%smodels", kv->prefix);
    const char *sadd[] = {"SADD", kmodels, model};
    rep = kv_cmd(kv, 3, sadd, NULL, errstr, errstr_size);
    if (!rep) return kv->last_err;
    freeReplyObject(rep);
    return *version > 0 ? MAAS_OK
                        : maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE,
                                    "redis returned no version number");
}

maas_err maas_kv_version_get(maas_kv *kv, const char *model, int version, unsigned char **h5,
                             size_t *len, maas_version_meta *meta, char *errstr,
                             size_t errstr_size) {
    *h5 = NULL;
    *len = 0;
    if (meta) memset(meta, 0, sizeof(*meta));
    maas_err err = maas_name_check("model name", model, errstr, errstr_size);
    if (err) return err;
    char key[256];
    KEY(key, kv, "model:{%s}:versions", model);
    static const char *const fields[] = {"h5",  "sha256",     "size",    "parent",
                                         "job", "created_ms", "metrics", "config"};
    char names[8][32];
    argv_buf a = {0};
    arg_s(&a, "HMGET");
    arg_s(&a, key);
    for (int i = 0; i < 8; i++) {
        snprintf(names[i], sizeof(names[i]), "%d.%s", version, fields[i]);
        arg_s(&a, names[i]);
    }
    redisReply *rep = kv_cmd(kv, a.n, a.v, a.len, errstr, errstr_size);
    if (!rep) return kv->last_err;
    if (rep->elements != 8 || rep->element[0]->type != REDIS_REPLY_STRING) {
        freeReplyObject(rep);
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME, "model '%s' has no version %d",
                         model, version);
    }
    redisReply **e = rep->element;
    *h5 = malloc(e[0]->len ? e[0]->len : 1);
    if (!*h5) {
        freeReplyObject(rep);
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    }
    memcpy(*h5, e[0]->str, e[0]->len);
    *len = e[0]->len;
    if (meta) {
        meta->version = version;
        if (e[1]->type == REDIS_REPLY_STRING)
            kv_copy_field(meta->sha256, sizeof(meta->sha256), e[1]);
        if (e[2]->type == REDIS_REPLY_STRING) meta->size = (size_t)kv_field_i64(e[2]);
        if (e[3]->type == REDIS_REPLY_STRING) meta->parent = (int)kv_field_i64(e[3]);
        if (e[4]->type == REDIS_REPLY_STRING) kv_copy_field(meta->job, sizeof(meta->job), e[4]);
        if (e[5]->type == REDIS_REPLY_STRING) meta->created_ms = kv_field_i64(e[5]);
        for (int k = 6; k < 8; k++) {
            if (e[k]->type != REDIS_REPLY_STRING) continue;
            char *s = malloc(e[k]->len + 1);
            if (!s) continue;
            memcpy(s, e[k]->str, e[k]->len);
            s[e[k]->len] = '\0';
            if (k == 6)
                meta->metrics = s;
            else
                meta->config = s;
        }
    }
    freeReplyObject(rep);
    return MAAS_OK;
}

maas_err maas_kv_alias_set(maas_kv *kv, const char *model, const char *alias, int version,
                           int expect, char *errstr, size_t errstr_size) {
    maas_err err = maas_name_check("model name", model, errstr, errstr_size);
    if (!err) err = maas_name_check("alias", alias, errstr, errstr_size);
    if (err) return err;
    if (alias[0] >= '0' && alias[0] <= '9')
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "alias '%s' must not start with a digit (that reads as a version)", alias);
    char kal[256], kver[256];
    KEY(kal, kv, "model:{%s}:aliases", model);
    KEY(kver, kv, "model:{%s}:versions", model);
    argv_buf a = {0};
    arg_script(&a, &kv_lua_alias_set, 2);
    arg_s(&a, kal);
    arg_s(&a, kver);
    arg_s(&a, alias);
    arg_i(&a, version);
    arg_i(&a, expect < 0 ? -1 : expect);
    redisReply *rep = kv_cmd(kv, a.n, a.v, a.len, errstr, errstr_size);
    if (!rep) return kv->last_err;
    long long r = rep->integer;
    freeReplyObject(rep);
    if (r == -1)
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME, "model '%s' has no version %d",
                         model, version);
    if (r == -2)
        return maas_errf(errstr, errstr_size, MAAS_ERR_CONFLICT,
                         "alias '%s' of model '%s' no longer points at version %d", alias, model,
                         expect);
    return MAAS_OK;
}

maas_err maas_kv_models(maas_kv *kv, char ***names, int *n, char *errstr, size_t errstr_size) {
    return kv_smembers(kv, "models", names, n, errstr, errstr_size);
}

maas_err maas_kv_version_meta(maas_kv *kv, const char *model, int version, maas_version_meta *meta,
                              char *errstr, size_t errstr_size) {
    memset(meta, 0, sizeof(*meta));
    maas_err err = maas_name_check("model name", model, errstr, errstr_size);
    if (err) return err;
    char key[256];
    KEY(key, kv, "model:{%s}:versions", model);
    static const char *const fields[] = {"sha256",     "size",    "parent", "job",
                                         "created_ms", "metrics", "config"};
    char names[7][32];
    argv_buf a = {0};
    arg_s(&a, "HMGET");
    arg_s(&a, key);
    for (int i = 0; i < 7; i++) {
        snprintf(names[i], sizeof(names[i]), "%d.%s", version, fields[i]);
        arg_s(&a, names[i]);
    }
    redisReply *rep = kv_cmd(kv, a.n, a.v, a.len, errstr, errstr_size);
    if (!rep) return kv->last_err;
    redisReply **e = rep->element;
    if (rep->elements != 7 || e[1]->type != REDIS_REPLY_STRING) {
        freeReplyObject(rep);
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME, "model '%s' has no version %d",
                         model, version);
    }
    meta->version = version;
    if (e[0]->type == REDIS_REPLY_STRING) kv_copy_field(meta->sha256, sizeof(meta->sha256), e[0]);
    meta->size = (size_t)kv_field_i64(e[1]);
    if (e[2]->type == REDIS_REPLY_STRING) meta->parent = (int)kv_field_i64(e[2]);
    if (e[3]->type == REDIS_REPLY_STRING) kv_copy_field(meta->job, sizeof(meta->job), e[3]);
    if (e[4]->type == REDIS_REPLY_STRING) meta->created_ms = kv_field_i64(e[4]);
    for (int k = 5; k < 7; k++) {
        if (e[k]->type != REDIS_REPLY_STRING) continue;
        char *t = malloc(e[k]->len + 1);
        if (!t) continue;
        memcpy(t, e[k]->str, e[k]->len);
        t[e[k]->len] = '\0';
        if (k == 5)
            meta->metrics = t;
        else
            meta->config = t;
    }
    freeReplyObject(rep);
    return MAAS_OK;
}

maas_err maas_kv_version_count(maas_kv *kv, const char *model, int *n, char *errstr,
                               size_t errstr_size) {
    *n = 0;
    maas_err err = maas_name_check("model name", model, errstr, errstr_size);
    if (err) return err;
    char key[256];
    KEY(key, kv, "model:{%s}", model);
    const char *argv[] = {"HGET", key, "next_version"};
    redisReply *rep = kv_cmd(kv, 3, argv, NULL, errstr, errstr_size);
    if (!rep) return kv->last_err;
    if (rep->type == REDIS_REPLY_STRING) *n = (int)kv_field_i64(rep);
    freeReplyObject(rep);
    return MAAS_OK;
}

maas_err maas_kv_aliases(maas_kv *kv, const char *model, char ***aliases, int **versions, int *n,
                         char *errstr, size_t errstr_size) {
    *aliases = NULL;
    *versions = NULL;
    *n = 0;
    maas_err err = maas_name_check("model name", model, errstr, errstr_size);
    if (err) return err;
    char key[256];
    KEY(key, kv, "model:{%s}:aliases", model);
    const char *argv[] = {"HGETALL", key};
    redisReply *rep = kv_cmd(kv, 2, argv, NULL, errstr, errstr_size);
    if (!rep) return kv->last_err;
    size_t pairs = rep->elements / 2;
    *aliases = calloc(pairs + 1, sizeof(char *));
    *versions = calloc(pairs + 1, sizeof(int));
    if (!*aliases || !*versions) {
        freeReplyObject(rep);
        free(*aliases);
        free(*versions);
        *aliases = NULL;
        *versions = NULL;
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (size_t i = 0; i < pairs; i++) {
        char *a = malloc(rep->element[2 * i]->len + 1);
        if (!a) break;
        kv_copy_field(a, rep->element[2 * i]->len + 1, rep->element[2 * i]);
        (*aliases)[*n] = a;
        (*versions)[*n] = (int)kv_field_i64(rep->element[2 * i + 1]);
        (*n)++;
    }
    freeReplyObject(rep);
    return MAAS_OK;
}

maas_err maas_kv_version_delete(maas_kv *kv, const char *model, int version, char *errstr,
                                size_t errstr_size) {
    maas_err err = maas_name_check("model name", model, errstr, errstr_size);
    if (err) return err;
    char kver[256], kal[256], v[16];
    KEY(kver, kv, "model:{%s}:versions", model);
    KEY(kal, kv, "model:{%s}:aliases", model);
    snprintf(v, sizeof(v), "%d", version);
    const char *argv[] = {"EVALSHA", kv_lua_version_delete.sha, "2", kver, kal, v};
    redisReply *rep = kv_cmd(kv, 6, argv, NULL, errstr, errstr_size);
    if (!rep) return kv->last_err;
    long long r = rep->integer;
    freeReplyObject(rep);
    if (r < 0)
        return maas_errf(errstr, errstr_size, MAAS_ERR_CONFLICT,
                         "%s version %d has an alias; move the alias first", model, version);
    if (r == 0)
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME, "%s has no version %d", model,
                         version);
    return MAAS_OK;
}
