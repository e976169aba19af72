/*
 * Tenants and API keys in Redis (kv.h; the key format is auth.h's). All outside
 * any tenant's scope, under the adapter's base prefix:
 *   maas:tenants            set of tenant names
 *   maas:tenant:{T}         hash: created_ms
 *   maas:tenant:{T}:keys    set of the tenant's key ids (admin keys: maas:apikeys:admin)
 *   maas:apikey:{ID}        hash: tenant, scopes, hash (SHA-256 of the secret), created_ms,
 *                           expires_ms; expires with the key
 */
#include "internal.h"

#include "maas/auth.h"
#include "maas/clock.h"

static void keys_set(const maas_kv *kv, const char *tenant, char *out, size_t size) {
    if (tenant && *tenant)
        snprintf(out, size, "%stenant:{%s}:keys", kv->base, tenant);
    else
        snprintf(out, size, "%sapikeys:admin", kv->base);
}

static maas_err simple(maas_kv *kv, int argc, const char **argv, long long *integer, char *errstr,
                       size_t errstr_size) {
    redisReply *r = kv_cmd(kv, argc, argv, NULL, errstr, errstr_size);
    if (!r) return kv->last_err;
    if (integer) *integer = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    return MAAS_OK;
}

maas_err maas_kv_tenant_create(maas_kv *kv, const char *tenant, char *errstr, size_t errstr_size) {
    maas_err err = maas_tenant_check(tenant, errstr, errstr_size);
    if (err) return err;
    char key[128], set[96], now[24];
    snprintf(key, sizeof(key), "%stenant:{%s}", kv->base, tenant);
    snprintf(set, sizeof(set), "%stenants", kv->base);
    snprintf(now, sizeof(now), "%lld", (long long)maas_wall_ms());
    long long created = 0;
    const char *hset[] = {"HSETNX", key, "created_ms", now};
    if ((err = simple(kv, 4, hset, &created, errstr, errstr_size))) return err;
    const char *sadd[] = {"SADD", set, tenant}; /* after the hash: a retry completes it */
    if ((err = simple(kv, 3, sadd, NULL, errstr, errstr_size))) return err;
    return created
               ? MAAS_OK
               : maas_errf(errstr, errstr_size, MAAS_ERR_CONFLICT, "tenant '%s' exists", tenant);
}

maas_err maas_kv_tenant_exists(maas_kv *kv, const char *tenant, int *exists, char *errstr,
                               size_t errstr_size) {
    *exists = 0;
    maas_err err = maas_tenant_check(tenant, errstr, errstr_size);
    if (err) return err;
    char set[96];
    snprintf(set, sizeof(set), "%stenants", kv->base);
    long long n = 0;
    const char *argv[] = {"SISMEMBER", set, tenant};
    if ((err = simple(kv, 3, argv, &n, errstr, errstr_size))) return err;
    *exists = n == 1;
    return MAAS_OK;
}

maas_err maas_kv_tenants(maas_kv *kv, char ***names, int *n, char *errstr, size_t errstr_size) {
    char saved[sizeof(kv->prefix)];
    snprintf(saved, sizeof(saved), "%s", kv->prefix);
    snprintf(kv->prefix, sizeof(kv->prefix), "%s", kv->base); /* kv_smembers reads prefix */
    maas_err err = kv_smembers(kv, "tenants", names, n, errstr, errstr_size);
    snprintf(kv->prefix, sizeof(kv->prefix), "%s", saved);
    return err;
}

maas_err maas_kv_apikey_put(maas_kv *kv, const maas_api_key *k, char *errstr, size_t errstr_size) {
    if (strlen(k->id) != MAAS_API_KEY_ID_LEN || strlen(k->hash) != 64)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT, "malformed key record");
    char key[96], set[128], scopes[32], created[24], expires[24];
    snprintf(key, sizeof(key), "%sapikey:{%s}", kv->base, k->id);
    keys_set(kv, k->tenant, set, sizeof(set));
    maas_scopes_format(k->scopes, scopes, sizeof(scopes));
    snprintf(created, sizeof(created), "%lld", (long long)k->created_ms);
    snprintf(expires, sizeof(expires), "%lld", (long long)k->expires_ms);
    const char *hset[] = {"HSET", key,     "tenant",     k->tenant, "scopes",     scopes,
                          "hash", k->hash, "created_ms", created,   "expires_ms", expires};
    maas_err err = simple(kv, (int)MAAS_ARRAY_LEN(hset), hset, NULL, errstr, errstr_size);
    if (!err && k->expires_ms > 0) {
        const char *at[] = {"PEXPIREAT", key, expires};
        err = simple(kv, 3, at, NULL, errstr, errstr_size);
    }
    const char *sadd[] = {"SADD", set, k->id};
    if (!err) err = simple(kv, 3, sadd, NULL, errstr, errstr_size);
    return err;
}

maas_err maas_kv_apikey_get(maas_kv *kv, const char *id, maas_api_key *k, char *errstr,
                            size_t errstr_size) {
    memset(k, 0, sizeof(*k));
    if (strlen(id) != MAAS_API_KEY_ID_LEN)
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME, "no such key");
    char key[96];
    snprintf(key, sizeof(key), "%sapikey:{%s}", kv->base, id);
    const char *argv[] = {"HMGET", key, "tenant", "scopes", "hash", "created_ms", "expires_ms"};
    redisReply *r = kv_cmd(kv, 7, argv, NULL, errstr, errstr_size);
    if (!r) return kv->last_err;
    maas_err err = MAAS_OK;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 5 ||
        r->element[2]->type != REDIS_REPLY_STRING) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME, "no key %s", id);
    } else {
        char buf[64];
        snprintf(k->id, sizeof(k->id), "%s", id);
        if (r->element[0]->type == REDIS_REPLY_STRING)
            kv_copy_field(k->tenant, sizeof(k->tenant), r->element[0]);
        if (r->element[1]->type == REDIS_REPLY_STRING) {
            kv_copy_field(buf, sizeof(buf), r->element[1]);
            if (maas_scopes_parse(buf, &k->scopes, NULL, 0)) k->scopes = 0;
        }
        kv_copy_field(k->hash, sizeof(k->hash), r->element[2]);
        for (int i = 3; i < 5; i++)
            if (r->element[i]->type == REDIS_REPLY_STRING) {
                kv_copy_field(buf, sizeof(buf), r->element[i]);
                *(i == 3 ? &k->created_ms : &k->expires_ms) = strtoll(buf, NULL, 10);
            }
        /* Redis drops an expired key lazily but exactly; this is belt and braces */
        if (k->expires_ms > 0 && k->expires_ms <= maas_wall_ms())
            err = maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME, "key %s expired", id);
    }
    freeReplyObject(r);
    return err;
}

maas_err maas_kv_apikey_expire(maas_kv *kv, const char *id, int64_t ttl_ms, char *errstr,
                               size_t errstr_size) {
    maas_api_key k;
    maas_err err = maas_kv_apikey_get(kv, id, &k, errstr, errstr_size);
    if (err) return err;
    char key[96], set[128], at[24];
    snprintf(key, sizeof(key), "%sapikey:{%s}", kv->base, id);
    keys_set(kv, k.tenant, set, sizeof(set));
    if (ttl_ms > 0) {
        snprintf(at, sizeof(at), "%lld", (long long)(maas_wall_ms() + ttl_ms));
        const char *hset[] = {"HSET", key, "expires_ms", at};
        const char *pexp[] = {"PEXPIREAT", key, at};
        if (!(err = simple(kv, 4, hset, NULL, errstr, errstr_size)))
            err = simple(kv, 3, pexp, NULL, errstr, errstr_size);
        return err;
    }
    const char *del[] = {"DEL", key};
    const char *srem[] = {"SREM", set, id};
    if (!(err = simple(kv, 2, del, NULL, errstr, errstr_size)))
        err = simple(kv, 3, srem, NULL, errstr, errstr_size);
    return err;
}

static int cmp_key(const void *a, const void *b) {
    const maas_api_key *x = a, *y = b;
    return x->created_ms < y->created_ms ? -1 : x->created_ms > y->created_ms;
}

maas_err maas_kv_apikeys(maas_kv *kv, const char *tenant, maas_api_key **keys, int *n, char *errstr,
                         size_t errstr_size) {
    *keys = NULL;
    *n = 0;
    char set[128];
    keys_set(kv, tenant, set, sizeof(set));
    const char *argv[] = {"SMEMBERS", set};
    redisReply *r = kv_cmd(kv, 2, argv, NULL, errstr, errstr_size);
    if (!r) return kv->last_err;
    maas_api_key *out = calloc(r->elements + 1, sizeof(*out));
    maas_err err =
        out ? MAAS_OK : maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    for (size_t i = 0; !err && i < r->elements; i++) {
        char id[MAAS_API_KEY_ID_LEN + 8];
        kv_copy_field(id, sizeof(id), r->element[i]);
        char e[MAAS_ERRSTR_SIZE];
        maas_err ge = maas_kv_apikey_get(kv, id, &out[*n], e, sizeof(e));
        if (ge == MAAS_ERR_UNKNOWN_NAME) { /* expired: drop it from the set */
            const char *srem[] = {"SREM", set, id};
            err = simple(kv, 3, srem, NULL, errstr, errstr_size);
        } else if (ge) {
            err = maas_errf(errstr, errstr_size, ge, "%s", e);
        } else {
            (*n)++;
        }
    }
    freeReplyObject(r);
    if (err) {
        free(out);
        *n = 0;
        return err;
    }
    qsort(out, (size_t)*n, sizeof(*out), cmp_key);
    *keys = out;
    return MAAS_OK;
}

maas_err maas_kv_tenant_delete(maas_kv *kv, const char *tenant, long *deleted, char *errstr,
                               size_t errstr_size) {
    *deleted = 0;
    int exists = 0;
    maas_err err = maas_kv_tenant_exists(kv, tenant, &exists, errstr, errstr_size);
    if (err) return err;
    if (!exists)
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME, "no tenant '%s'", tenant);
    maas_api_key *keys = NULL;
    int n = 0;
    if ((err = maas_kv_apikeys(kv, tenant, &keys, &n, errstr, errstr_size))) return err;
    for (int i = 0; i < n && !err; i++)
        err = maas_kv_apikey_expire(kv, keys[i].id, 0, errstr, errstr_size);
    free(keys);
    if (err) return err;
    char match[128];
    snprintf(match, sizeof(match), "%st:%s:*", kv->base, tenant);
    int masters[KV_NODES_MAX], n_masters = 0;
    if ((err = kv_nodes(kv, 1, masters, &n_masters, errstr, errstr_size))) return err;
    for (int m = 0; m < n_masters && !err; m++) { /* a cluster: each master's own keys */
        char cursor[32] = "0";
        do { /* the namespace, in batches: SCAN never blocks Redis for long */
            const char *scan[] = {"SCAN", cursor, "MATCH", match, "COUNT", "1000"};
            redisReply *r = kv_cmd_node(kv, masters[m], 6, scan, NULL, errstr, errstr_size);
            if (!r) return kv->last_err;
            if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
                freeReplyObject(r);
                return maas_errf(errstr, errstr_size, MAAS_ERR_SERVER_ERROR,
                                 "redis SCAN: bad reply");
            }
            kv_copy_field(cursor, sizeof(cursor), r->element[0]);
            const redisReply *ks = r->element[1];
            for (size_t i = 0; i < ks->elements && !err; i++) {
                const char *unlink[] = {"UNLINK", ks->element[i]->str};
                size_t lens[] = {6, ks->element[i]->len};
                redisReply *u = kv_cmd(kv, 2, unlink, lens, errstr, errstr_size);
                if (!u)
                    err = kv->last_err;
                else {
                    *deleted += u->integer;
                    freeReplyObject(u);
                }
            }
            freeReplyObject(r);
        } while (!err && strcmp(cursor, "0"));
    }
    if (err) return err;
    char key[128], set[96];
    snprintf(key, sizeof(key), "%stenant:{%s}", kv->base, tenant);
    snprintf(set, sizeof(set), "%stenants", kv->base);
    const char *del[] = {"DEL", key};
    const char *srem[] = {"SREM", set, tenant};
    if (!(err = simple(kv, 2, del, NULL, errstr, errstr_size)))
        err = simple(kv, 3, srem, NULL, errstr, errstr_size);
    return err;
}

/* ACL SAVE, when Redis keeps its users in a file; 0 when it has none (users live until a
 * restart then: said by the caller). */
static int acl_save(maas_kv *kv) {
    char e[MAAS_ERRSTR_SIZE];
    const char *argv[] = {"ACL", "SAVE"};
    return kv_cmd_all(kv, 2, argv, e, sizeof(e)) == MAAS_OK;
}

maas_err maas_kv_tenant_reader(maas_kv *kv, const char *tenant, const char *password, char *user,
                               size_t user_size, int *saved, char *errstr, size_t errstr_size) {
    maas_err err = maas_tenant_check(tenant, errstr, errstr_size);
    if (err) return err;
    char pass[200], keys[128], done[128], chans[128];
    snprintf(user, user_size, "tenant-%s", tenant);
    snprintf(pass, sizeof(pass), ">%s", password);
    snprintf(keys, sizeof(keys), "%%R~%st:%s:*", kv->base, tenant);
    /* the jobs' done-lists: BLMOVE onto itself is how a client waits without polling */
    snprintf(done, sizeof(done), "%%RW~%st:%s:job:*:done", kv->base, tenant);
    snprintf(chans, sizeof(chans), "&%st:%s:*", kv->base, tenant);
    /* read-only (but for its jobs' done-lists), its keys and channels only, and no key-less
     * command that lists keys (SCAN, KEYS, RANDOMKEY would show other tenants' key names):
     * an allowlist */
    const char *argv[] = {"ACL", "SETUSER", user, "reset", "on", pass, "resetkeys", keys, done,
                          "resetchannels", chans, "-@all", "+@connection", "-@dangerous", "+hget",
                          "+hgetall", "+hmget", "+hexists", "+hlen", "+get", "+mget", "+exists",
                          "+ttl", "+pttl", "+type", "+subscribe", "+psubscribe", "+unsubscribe",
                          "+punsubscribe", "+ssubscribe", /* a cluster's events: sharded pub/sub */
                          "+sunsubscribe", "+blmove", "+lindex",
                          /* a cluster client's own: the slot map, reads on replicas, ASK
                           * redirects (node addresses, no key names) */
                          "+cluster|slots", "+cluster|shards", "+readonly", "+asking"};
    /* users are per server: on every node of a cluster, replicas too (one may be promoted) */
    if ((err = kv_cmd_all(kv, (int)MAAS_ARRAY_LEN(argv), argv, errstr, errstr_size))) return err;
    *saved = acl_save(kv);
    return MAAS_OK;
}

maas_err maas_kv_tenant_reader_delete(maas_kv *kv, const char *tenant, char *errstr,
                                      size_t errstr_size) {
    char user[64];
    snprintf(user, sizeof(user), "tenant-%s", tenant);
    const char *argv[] = {"ACL", "DELUSER", user};
    maas_err err = kv_cmd_all(kv, 3, argv, errstr, errstr_size);
    if (!err) acl_save(kv);
    return err;
}
