/*
 * Client-side caching of version resolution: maas_kv_cache_versions keeps resolve answers
 * while Redis does not say their key changed (CLIENT TRACKING ... REDIRECT to an
 * invalidation connection subscribed to __redis__:invalidate, OPTIN).
 */
#include "maas/base.h"
#include "maas/clock.h"
#include "maas/kv.h"
#include "internal.h"

void kv_track_off(maas_kv *kv, int i) {
    kv_node *n = &kv->nodes[i];
    if (n->inval) {
        redisFree(n->inval);
        n->inval = NULL;
        kv->n_resolved = 0; /* what that node would have invalidated is not known: forget all */
    }
}

/* Best effort: on any failure the cache stays off for that node's keys (their resolves ask
 * Redis) and is tried again in 5 s. Invalidations are per node: each has its own. */
void kv_track_on(maas_kv *kv, int i) {
    kv_node *n = &kv->nodes[i];
    kv_track_off(kv, i);
    if (!n->ctx || kv_connect_ctx(kv, n, &n->inval, NULL, 0)) {
        n->track_retry_ms = maas_wall_ms() + 5000;
        return;
    }
    long long id = -1;
    redisReply *r = redisCommand(n->inval, "CLIENT ID");
    if (r && r->type == REDIS_REPLY_INTEGER) id = r->integer;
    if (r) freeReplyObject(r);
    r = id < 0 ? NULL : redisCommand(n->inval, "SUBSCRIBE __redis__:invalidate");
    int ok = r && r->type == REDIS_REPLY_ARRAY;
    if (r) freeReplyObject(r);
    /* OPTIN: only the reads preceded by CLIENT CACHING yes are tracked (resolves, not the
     * job records and model files the handle also reads). Off first: a redirect to an
     * earlier, broken invalidation connection may still be set. */
    if (ok && (r = redisCommand(n->ctx, "CLIENT TRACKING off"))) freeReplyObject(r);
    r = ok ? redisCommand(n->ctx, "CLIENT TRACKING on REDIRECT %lld OPTIN", id) : NULL;
    ok = r && r->type == REDIS_REPLY_STATUS;
    if (r) freeReplyObject(r);
    if (!ok) {
        kv_track_off(kv, i);
        n->track_retry_ms = maas_wall_ms() + 5000;
    }
}

/* Applies the invalidations Redis sent since the last look (never blocks). */
static void track_drain(maas_kv *kv) {
    for (int n = 0; n < kv->n_nodes; n++) {
        redisReply *rep;
        int got;
        while (kv->nodes[n].inval && (got = kv_sub_next(kv->nodes[n].inval, 0, &rep)) != 0) {
            if (got < 0) {
                kv_track_off(kv, n);
                break;
            }
            /* ["message", "__redis__:invalidate", [key, ...] or nil (everything)] */
            if (kv_is_push(rep, "message")) {
                const redisReply *keys = rep->element[2];
                if (keys->type != REDIS_REPLY_ARRAY) {
                    kv->n_resolved = 0;
                } else {
                    for (size_t k = 0; k < keys->elements; k++)
                        for (int i = kv->n_resolved - 1; i >= 0; i--)
                            if (keys->element[k]->type == REDIS_REPLY_STRING &&
                                !strcmp(kv->resolved[i].key, keys->element[k]->str))
                                kv->resolved[i] = kv->resolved[--kv->n_resolved];
                }
            }
            freeReplyObject(rep);
        }
    }
}

static const resolved *resolved_find(const maas_kv *kv, const char *key, const char *ref) {
    for (int i = 0; i < kv->n_resolved; i++)
        if (!strcmp(kv->resolved[i].ref, ref) && !strcmp(kv->resolved[i].key, key))
            return &kv->resolved[i];
    return NULL;
}

static void resolved_put(maas_kv *kv, const char *key, const char *ref, int version) {
    if (strlen(key) >= sizeof(kv->resolved[0].key)) return;
    if (kv->n_resolved == RESOLVED_MAX) kv->n_resolved = 0; /* full: start over */
    resolved *r = &kv->resolved[kv->n_resolved++];
    snprintf(r->key, sizeof(r->key), "%s", key);
    snprintf(r->ref, sizeof(r->ref), "%s", ref);
    r->version = version;
}

/* A read that Redis tracks for the cache (CLIENT CACHING yes right before it, on the node
 * of its key), or a plain one when that node's tracking is off; *tracked says which. */
static redisReply *tracked_cmd(maas_kv *kv, int argc, const char **argv, int *tracked, char *errstr,
                               size_t errstr_size) {
    *tracked = 0;
    kv_flight_read(kv);
    int i = kv_route(kv, argv[1], strlen(argv[1]), errstr, errstr_size);
    if (i < 0) return NULL;
    if ((kv->last_err = kv_node_ready(kv, i, errstr, errstr_size))) {
        kv_node_drop(kv, i);
        return kv_cmd(kv, argc, argv, NULL, errstr, errstr_size); /* may find the new master */
    }
    kv_node *n = &kv->nodes[i];
    if (!n->inval) return kv_cmd(kv, argc, argv, NULL, errstr, errstr_size);
    redisReply *opt = NULL, *rep = NULL;
    if (redisAppendCommand(n->ctx, "CLIENT CACHING yes") != REDIS_OK ||
        redisAppendCommandArgv(n->ctx, argc, argv, NULL) != REDIS_OK ||
        redisGetReply(n->ctx, (void **)&opt) != REDIS_OK ||
        redisGetReply(n->ctx, (void **)&rep) != REDIS_OK) {
        if (opt) freeReplyObject(opt);
        kv_node_drop(kv, i); /* the context is unusable after an I/O error */
        return kv_cmd(kv, argc, argv, NULL, errstr, errstr_size);
    }
    int opt_ok = opt && opt->type == REDIS_REPLY_STATUS;
    freeReplyObject(opt);
    if (!opt_ok) kv_track_off(kv, i); /* not tracked after all: no caching from now on */
    if (rep && rep->type == REDIS_REPLY_ERROR) {
        /* MOVED, ASK (a cluster's slot moved), or a real error: the plain path says which */
        freeReplyObject(rep);
        return kv_cmd(kv, argc, argv, NULL, errstr, errstr_size);
    }
    *tracked = opt_ok && n->inval;
    return rep;
}

maas_err maas_kv_cache_versions(maas_kv *kv, char *errstr, size_t errstr_size) {
    kv->cache_versions = 1;
    int idx[KV_NODES_MAX], n;
    maas_err err = kv_nodes(kv, 1, idx, &n, errstr, errstr_size);
    for (int k = 0; k < n && !err; k++) {
        if ((err = kv_node_ready(kv, idx[k], errstr, errstr_size))) break;
        if (!kv->nodes[idx[k]].inval)
            err = maas_errf(errstr, errstr_size, MAAS_ERR_UNSUPPORTED,
                            "redis at %s:%d refused client-side caching (CLIENT TRACKING, Redis "
                            "6+): every resolve asks Redis",
                            kv->nodes[idx[k]].host, kv->nodes[idx[k]].port);
    }
    return err;
}

maas_err maas_kv_version_resolve(maas_kv *kv, const char *model, const char *ref, int *version,
                                 char *errstr, size_t errstr_size) {
    maas_err err = maas_name_check("model name", model, errstr, errstr_size);
    if (!err) err = maas_name_check("version or alias", ref, errstr, errstr_size);
    if (err) return err;
    char *end;
    long v = strtol(ref, &end, 10);
    int numeric = *end == '\0' && v > 0 && v < INT_MAX;
    char key[256], field[64];
    if (numeric)
        KEY(key, kv, "model:{%s}:versions", model);
    else
        KEY(key, kv, "model:{%s}:aliases", model);
    track_drain(kv);
    const resolved *hit = resolved_find(kv, key, ref); /* only tracked answers are kept */
    if (hit) {
        *version = hit->version;
        return MAAS_OK;
    }
    redisReply *rep;
    int tracked = 0;
    if (numeric) {
        snprintf(field, sizeof(field), "%ld.size", v);
        const char *argv[] = {"HEXISTS", key, field};
        if (!(rep = tracked_cmd(kv, 3, argv, &tracked, errstr, errstr_size))) return kv->last_err;
        int exists = rep->integer == 1;
        freeReplyObject(rep);
        if (!exists)
            return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                             "model '%s' has no version %ld", model, v);
        *version = (int)v;
    } else {
        const char *argv[] = {"HGET", key, ref};
        if (!(rep = tracked_cmd(kv, 3, argv, &tracked, errstr, errstr_size))) return kv->last_err;
        long got = rep->type == REDIS_REPLY_STRING ? strtol(rep->str, NULL, 10) : 0;
        freeReplyObject(rep);
        if (got <= 0)
            return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                             "model '%s' has no alias '%s'", model, ref);
        *version = (int)got;
    }
    if (tracked) resolved_put(kv, key, ref, *version);
    return MAAS_OK;
}
