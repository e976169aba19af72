/* The fleet in Redis: workers announce themselves (a hash with a TTL) for `maas workers`. */
#include "maas/base.h"
#include "maas/kv.h"
#include "internal.h"

static int cmp_worker(const void *a, const void *b) {
    return strcmp(((const maas_worker_info *)a)->id, ((const maas_worker_info *)b)->id);
}

maas_err maas_kv_worker_announce(maas_kv *kv, const char *id, const maas_setting *fields,
                                 int n_fields, int ttl_s, char *errstr, size_t errstr_size) {
    maas_err err = maas_name_check("worker id", id, errstr, errstr_size);
    if (err) return err;
    if (n_fields < 1 || n_fields > 20)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT, "1..20 worker fields");
    char key[256], kset[128];
    snprintf(key, sizeof(key), "%sworker:{%s}", kv->base, id); /* the fleet: no tenant */
    snprintf(kset, sizeof(kset), "%sworkers", kv->base);
    argv_buf a = {0};
    arg_s(&a, "HSET");
    arg_s(&a, key);
    for (int i = 0; i < n_fields; i++) {
        arg_s(&a, fields[i].key);
        arg_s(&a, fields[i].value);
    }
    redisReply *rep = kv_cmd(kv, a.n, a.v, a.len, errstr, errstr_size);
    if (!rep) return kv->last_err;
    freeReplyObject(rep);
    char ttl[16];
    snprintf(ttl, sizeof(ttl), "%d", ttl_s > 0 ? ttl_s : 30);
    const char *ex[] = {"EXPIRE", key, ttl};
    if (!(rep = kv_cmd(kv, 3, ex, NULL, errstr, errstr_size))) return kv->last_err;
    freeReplyObject(rep);
    const char *sadd[] = {"SADD", kset, id};
    if (!(rep = kv_cmd(kv, 3, sadd, NULL, errstr, errstr_size))) return kv->last_err;
    freeReplyObject(rep);
    return MAAS_OK;
}

void maas_worker_info_release(maas_worker_info *w, int n) {
    for (int i = 0; w && i < n; i++) {
        for (int k = 0; k < w[i].n_fields; k++) {
            free(w[i].keys[k]);
            free(w[i].values[k]);
        }
    }
    free(w);
}

maas_err maas_kv_workers_list(maas_kv *kv, maas_worker_info **out, int *n, char *errstr,
                              size_t errstr_size) {
    *out = NULL;
    *n = 0;
    char kset[128];
    snprintf(kset, sizeof(kset), "%sworkers", kv->base);
    const char *argv[] = {"SMEMBERS", kset};
    redisReply *ids = kv_cmd(kv, 2, argv, NULL, errstr, errstr_size);
    if (!ids) return kv->last_err;
    maas_worker_info *w = calloc(ids->elements + 1, sizeof(*w));
    if (!w) {
        freeReplyObject(ids);
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    }
    maas_err err = MAAS_OK;
    for (size_t i = 0; i < ids->elements && !err; i++) {
        maas_worker_info *wi = &w[*n];
        kv_copy_field(wi->id, sizeof(wi->id), ids->element[i]);
        char key[256];
        snprintf(key, sizeof(key), "%sworker:{%s}", kv->base, wi->id);
        const char *hg[] = {"HGETALL", key};
        redisReply *h = kv_cmd(kv, 2, hg, NULL, errstr, errstr_size);
        if (!h) {
            err = kv->last_err;
            break;
        }
        if (h->elements == 0) { /* stopped announcing: its key expired */
            const char *rem[] = {"SREM", kset, wi->id};
            redisReply *x = kv_cmd(kv, 3, rem, NULL, errstr, errstr_size);
            if (x) freeReplyObject(x);
        } else {
            for (size_t k = 0; k + 1 < h->elements && wi->n_fields < MAAS_WORKER_FIELDS; k += 2) {
                char *kk = malloc(h->element[k]->len + 1), *vv = malloc(h->element[k + 1]->len + 1);
                if (!kk || !vv) {
                    free(kk);
                    free(vv);
                    err = maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
                    break;
                }
                kv_copy_field(kk, h->element[k]->len + 1, h->element[k]);
                kv_copy_field(vv, h->element[k + 1]->len + 1, h->element[k + 1]);
                wi->keys[wi->n_fields] = kk;
                wi->values[wi->n_fields++] = vv;
            }
            (*n)++;
        }
        freeReplyObject(h);
    }
    freeReplyObject(ids);
    if (err) {
        maas_worker_info_release(w, *n + 1);
        *n = 0;
        return err;
    }
    qsort(w, (size_t)*n, sizeof(*w), cmp_worker);
    *out = w;
    return MAAS_OK;
}
