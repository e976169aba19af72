/* Hyperparameter sweeps in Redis. */
#include "maas/base.h"
#include "maas/clock.h"
#include "maas/kv.h"
#include "maas/sweep.h"
#include "internal.h"

/*
 * maas:sweep:{ID} holds id, model, metric, promote, created_ms, n, state
 * (running | done), best_job, best_version, and per point K (1-based) a field
 * "p.K" = "job|lr|batch_size|epochs|layers".
 */
maas_err maas_kv_sweep_create(maas_kv *kv, const maas_sweep *s, char *errstr, size_t errstr_size) {
    maas_err err = maas_name_check("sweep id", s->id, errstr, errstr_size);
    if (err) return err;
    if (s->n < 1 || s->n > MAAS_SWEEP_MAX_POINTS)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "a sweep needs 1..%d points", MAAS_SWEEP_MAX_POINTS);
    int argc = 4 + 2 * (9 + s->n);
    const char **argv = calloc((size_t)argc, sizeof(char *));
    size_t *lens = calloc((size_t)argc, sizeof(size_t));
    char *text = calloc((size_t)s->n + 4, 400);
    if (!argv || !lens || !text) {
        free(argv);
        free(lens);
        free(text);
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    }
    char key[256], nbuf[16], cbuf[24];
    KEY(key, kv, "sweep:{%s}", s->id);
    snprintf(nbuf, sizeof(nbuf), "%d", s->n);
    snprintf(cbuf, sizeof(cbuf), "%lld",
             (long long)(s->created_ms ? s->created_ms : maas_wall_ms()));
    int a = 0;
    argv[a++] = "EVALSHA";
    argv[a++] = kv_lua_hset_new.sha;
    argv[a++] = "1";
    argv[a++] = key;
    const char *kvs[] = {"id",
                         s->id,
                         "model",
                         s->model,
                         "metric",
                         maas_sweep_metric_name(s->metric),
                         "promote",
                         s->promote,
                         "created_ms",
                         cbuf,
                         "n",
                         nbuf,
                         "state",
                         "running",
                         "best_job",
                         "",
                         "best_version",
                         "0"};
    for (size_t i = 0; i < MAAS_ARRAY_LEN(kvs); i++) argv[a++] = kvs[i];
    for (int k = 0; k < s->n; k++) {
        char *f = text + (size_t)k * 400, *v = f + 16;
        const maas_sweep_point *p = &s->points[k];
        snprintf(f, 16, "p.%d", k + 1);
        snprintf(v, 384, "%s|%.9g|%d|%d|%s", p->job, (double)p->lr, p->batch_size, p->epochs,
                 p->layers);
        argv[a++] = f;
        argv[a++] = v;
    }
    for (int i = 0; i < a; i++) lens[i] = strlen(argv[i]);
    redisReply *rep = kv_cmd(kv, a, argv, lens, errstr, errstr_size);
    free(argv);
    free(lens);
    free(text);
    if (!rep) return kv->last_err;
    long long created = rep->integer;
    freeReplyObject(rep);
    if (!created)
        return maas_errf(errstr, errstr_size, MAAS_ERR_CONFLICT, "sweep '%s' already exists",
                         s->id);
    char kset[128];
    snprintf(kset, sizeof(kset), "%ssweeps:active", kv->prefix);
    const char *sadd[] = {"SADD", kset, s->id};
    if (!(rep = kv_cmd(kv, 3, sadd, NULL, errstr, errstr_size))) return kv->last_err;
    freeReplyObject(rep);
    return MAAS_OK;
}

maas_err maas_kv_sweep_load(maas_kv *kv, const char *id, maas_sweep *s, char *errstr,
                            size_t errstr_size) {
    memset(s, 0, sizeof(*s));
    maas_err err = maas_name_check("sweep id", id, errstr, errstr_size);
    if (err) return err;
    char key[256];
    KEY(key, kv, "sweep:{%s}", id);
    const char *argv[] = {"HGETALL", key};
    redisReply *rep = kv_cmd(kv, 2, argv, NULL, errstr, errstr_size);
    if (!rep) return kv->last_err;
    if (rep->elements == 0) {
        freeReplyObject(rep);
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME, "no sweep '%s'", id);
    }
    snprintf(s->id, sizeof(s->id), "%s", id);
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        char f[32], v[512];
        kv_copy_field(f, sizeof(f), rep->element[i]);
        kv_copy_field(v, sizeof(v), rep->element[i + 1]);
        if (!strcmp(f, "model")) {
            snprintf(s->model, sizeof(s->model), "%.128s", v);
        } else if (!strcmp(f, "metric")) {
            maas_sweep_metric_from_name(v, &s->metric, NULL, 0);
        } else if (!strcmp(f, "promote")) {
            snprintf(s->promote, sizeof(s->promote), "%.128s", v);
        } else if (!strcmp(f, "created_ms")) {
            s->created_ms = strtoll(v, NULL, 10);
        } else if (!strcmp(f, "state")) {
            s->done = !strcmp(v, "done");
        } else if (!strcmp(f, "best_job")) {
            snprintf(s->best_job, sizeof(s->best_job), "%.128s", v);
        } else if (!strcmp(f, "best_version")) {
            s->best_version = (int)strtol(v, NULL, 10);
        } else if (!strncmp(f, "p.", 2)) {
            long k = strtol(f + 2, NULL, 10);
            if (k < 1 || k > MAAS_SWEEP_MAX_POINTS) continue;
            maas_sweep_point *p = &s->points[k - 1];
            char *save = v, *parts[5];
            int np = 0;
            for (char *q = v; np < 5; q++) {
                if (*q == '|' || *q == '\0') {
                    int end = *q == '\0';
                    *q = '\0';
                    parts[np++] = save;
                    save = q + 1;
                    if (end) break;
                }
            }
            if (np != 5) continue;
            snprintf(p->job, sizeof(p->job), "%.128s", parts[0]);
            p->lr = strtof(parts[1], NULL);
            p->batch_size = (int)strtol(parts[2], NULL, 10);
            p->epochs = (int)strtol(parts[3], NULL, 10);
            snprintf(p->layers, sizeof(p->layers), "%.255s", parts[4]);
            if (k > s->n) s->n = (int)k;
        }
    }
    freeReplyObject(rep);
    for (int k = 0; k < s->n; k++)
        if (!s->points[k].job[0])
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "sweep '%s' lacks point %d",
                             id, k + 1);
    return MAAS_OK;
}

maas_err maas_kv_sweep_finish(maas_kv *kv, const char *id, const char *best_job, int best_version,
                              char *errstr, size_t errstr_size) {
    maas_err err = maas_name_check("sweep id", id, errstr, errstr_size);
    if (err) return err;
    char key[256], ver[16], now[24], kset[128];
    KEY(key, kv, "sweep:{%s}", id);
    snprintf(ver, sizeof(ver), "%d", best_version);
    snprintf(now, sizeof(now), "%lld", (long long)maas_wall_ms());
    snprintf(kset, sizeof(kset), "%ssweeps:active", kv->prefix);
    const char *argv[] = {"EVALSHA", kv_lua_sweep_finish.sha, "1", key, best_job, ver, now};
    redisReply *rep = kv_cmd(kv, 7, argv, NULL, errstr, errstr_size);
    if (!rep) return kv->last_err;
    long long r = rep->integer;
    freeReplyObject(rep);
    const char *srem[] = {"SREM", kset, id};
    if ((rep = kv_cmd(kv, 3, srem, NULL, errstr, errstr_size))) freeReplyObject(rep);
    if (r < 0) return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME, "no sweep '%s'", id);
    if (r == 0)
        return maas_errf(errstr, errstr_size, MAAS_ERR_CONFLICT, "sweep '%s' was already done", id);
    return MAAS_OK;
}

maas_err maas_kv_sweeps_active(maas_kv *kv, char ***ids, int *n, char *errstr, size_t errstr_size) {
    return kv_smembers(kv, "sweeps:active", ids, n, errstr, errstr_size);
}
