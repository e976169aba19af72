/*
 * The Redis adapter: the connection, job records, the registry, datasets, sweeps, workers and
 * the client-side cache (kv_auth.c: tenants and API keys; kv_internal.h: what both share).
 * Key layout: schemas/redis-keys.md. Every Redis key and Lua script of the project lives in
 * these files by design (no key string outside the adapter); the Cluster work (issue 19)
 * will split the connection layer from the key layout further.
 */
#include "maas/base.h"
#include "maas/clock.h"
#include "maas/digest.h"
#include "maas/kv.h"
#include "kv_internal.h"

#include <errno.h>
#include <poll.h>

#include <sys/time.h>
#include <time.h>

/* ---- connection ---- */

static maas_err parse_url(maas_kv *kv, const char *url, char *errstr, size_t errstr_size) {
    snprintf(kv->host, sizeof(kv->host), "127.0.0.1");
    kv->port = 6379;
    if (!url || !*url) return MAAS_OK;
    const char *p = url;
    if (!strncmp(p, "redis://", 8))
        p += 8;
    else if (strstr(p, "://"))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "redis URL '%s': only redis:// is supported (hiredis 0.14 has no TLS)",
                         url);
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            snprintf(kv->user, sizeof(kv->user), "%.*s", (int)(colon - p), p);
            snprintf(kv->password, sizeof(kv->password), "%.*s", (int)(at - colon - 1), colon + 1);
        } else {
            snprintf(kv->password, sizeof(kv->password), "%.*s", (int)(at - p), p);
        }
        p = at + 1;
    }
    const char *slash = strchr(p, '/');
    const char *colon = strchr(p, ':');
    size_t hlen = colon && (!slash || colon < slash) ? (size_t)(colon - p)
                                                     : (slash ? (size_t)(slash - p) : strlen(p));
    if (hlen >= sizeof(kv->host))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "redis URL '%s': host too long", url);
    if (hlen) snprintf(kv->host, sizeof(kv->host), "%.*s", (int)hlen, p);
    char *end;
    if (colon && (!slash || colon < slash)) {
        long port = strtol(colon + 1, &end, 10);
        if (end == colon + 1 || port < 1 || port > 65535 || (*end && *end != '/'))
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "redis URL '%s': bad port", url);
        kv->port = (int)port;
    }
    if (slash && slash[1]) {
        long db = strtol(slash + 1, &end, 10);
        if (*end || db < 0 || db > 1000)
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "redis URL '%s': bad db", url);
        kv->db = (int)db;
    }
    return MAAS_OK;
}

/*
 * What an error reply means. The ones a restart, a failover, a busy script or a full
 * disk give are worth retrying (UNAVAILABLE), and so is NOSCRIPT (the caller loads the
 * script again); any other (WRONGTYPE, OOM, a script's own error, a bad argument) is
 * SERVER: permanent for the request, so a worker fails that job instead of retrying it
 * forever.
 */
static maas_err server_err(const char *msg) {
    static const char *const transient[] = {"LOADING",  "BUSY",        "MASTERDOWN", "READONLY",
                                            "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS", "MISCONF",
                                            "NOSCRIPT", "MOVED",       "ASK"};
    if (!msg) return MAAS_ERR_UNAVAILABLE;
    for (size_t i = 0; i < MAAS_ARRAY_LEN(transient); i++) {
        size_t n = strlen(transient[i]);
        if (!strncmp(msg, transient[i], n) && (msg[n] == ' ' || msg[n] == '\0'))
            return MAAS_ERR_UNAVAILABLE;
    }
    return MAAS_ERR_SERVER_ERROR;
}

static maas_err reply_err(redisReply *r, const char *what, char *errstr, size_t errstr_size) {
    maas_err e =
        maas_errf(errstr, errstr_size,
                  r && r->type == REDIS_REPLY_ERROR ? server_err(r->str) : MAAS_ERR_UNAVAILABLE,
                  "redis %s: %s", what, r && r->str ? r->str : "error");
    if (r) freeReplyObject(r);
    return e;
}

/* Opens *out (closing what was there): connect, AUTH, SELECT, with kv's settings. */
static maas_err connect_ctx(const maas_kv *kv, redisContext **out, char *errstr,
                            size_t errstr_size) {
    if (*out) redisFree(*out);
    struct timeval tv = {kv->timeout_ms / 1000, (kv->timeout_ms % 1000) * 1000};
    redisContext *c = *out = redisConnectWithTimeout(kv->host, kv->port, tv);
    if (!c || c->err) {
        maas_err e = maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE,
                               "cannot connect to redis at %s:%d: %s", kv->host, kv->port,
                               c ? c->errstr : "out of memory");
        if (c) redisFree(c);
        *out = NULL;
        return e;
    }
    redisSetTimeout(c, tv);
    redisReply *r = NULL;
    if (kv->password[0]) {
        if (kv->user[0])
            r = redisCommand(c, "AUTH %s %s", kv->user, kv->password);
        else
            r = redisCommand(c, "AUTH %s", kv->password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            maas_err e = maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                                   "redis AUTH failed: %s", r && r->str ? r->str : c->errstr);
            if (r) freeReplyObject(r);
            redisFree(c);
            *out = NULL;
            return e;
        }
        freeReplyObject(r);
    }
    if (kv->db) {
        r = redisCommand(c, "SELECT %d", kv->db);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            maas_err e = reply_err(r, "SELECT", errstr, errstr_size);
            redisFree(c);
            *out = NULL;
            return e;
        }
        freeReplyObject(r);
    }
    return MAAS_OK;
}

static void track_on(maas_kv *kv);
static void flight_read(maas_kv *kv);

static maas_err kv_open(maas_kv *kv, char *errstr, size_t errstr_size) {
    if (kv->ctx) redisFree(kv->ctx);
    kv->ctx = NULL;
    flight_read(kv);              /* with no connection: a batch in flight reads as failed */
    kv->transition_sha[0] = '\0'; /* the server may have lost its script cache */
    maas_err err = connect_ctx(kv, &kv->ctx, errstr, errstr_size);
    if (!err && kv->cache_versions) track_on(kv); /* tracking belongs to the connection */
    return err;
}

maas_kv *maas_kv_connect(const char *url, const maas_setting *settings, int n_settings,
                         char *errstr, size_t errstr_size) {
    maas_kv *kv = calloc(1, sizeof(*kv));
    if (!kv) {
        maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    kv->timeout_ms = 5000;
    snprintf(kv->base, sizeof(kv->base), "maas:");
    if (parse_url(kv, url, errstr, errstr_size)) goto fail;
    for (int i = 0; i < n_settings; i++) {
        const char *k = settings[i].key, *v = settings[i].value;
        if (!strcmp(k, "redis.user"))
            snprintf(kv->user, sizeof(kv->user), "%s", v);
        else if (!strcmp(k, "redis.password"))
            snprintf(kv->password, sizeof(kv->password), "%s", v);
        else if (!strcmp(k, "redis.prefix")) {
            /* letters, digits and . _ : - only: a '{' would make a hash tag of the prefix and
             * pin every key to one Redis Cluster slot */
            size_t n = strlen(v);
            if (n == 0 || n >= sizeof(kv->base) ||
                strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-") !=
                    n) {
                maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                          "redis.prefix '%.80s': 1..%zu of letters, digits and . _ : - (no braces "
                          "or spaces)",
                          v, sizeof(kv->base) - 1);
                goto fail;
            }
            snprintf(kv->base, sizeof(kv->base), "%s", v);
        } else if (!strcmp(k, "redis.timeout_ms")) {
            char *end;
            long t = strtol(v, &end, 10);
            if (*end || end == v || t < 10 || t > 600000) {
                maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                          "redis.timeout_ms '%.40s': milliseconds in 10..600000", v);
                goto fail;
            }
            kv->timeout_ms = (int)t;
        } else if (!strncmp(k, "redis.", 6)) {
            maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                      "unknown setting '%s' (known: redis.user, redis.password, redis.prefix, "
                      "redis.timeout_ms)",
                      k);
            goto fail;
        }
    }
    snprintf(kv->prefix, sizeof(kv->prefix), "%s", kv->base);
    if (kv_open(kv, errstr, errstr_size)) goto fail;
    return kv;
fail:
    free(kv);
    return NULL;
}

void maas_kv_free(maas_kv *kv) {
    if (!kv) return;
    if (kv->ctx) redisFree(kv->ctx);
    if (kv->sub) redisFree(kv->sub);
    if (kv->inval) redisFree(kv->inval);
    free(kv);
}

/*
 * Runs a command (binary-safe argv), reconnecting once if the connection is
 * gone. Returns the reply (free with freeReplyObject) or NULL with errstr.
 */
redisReply *kv_cmd(maas_kv *kv, int argc, const char **argv, const size_t *lens, char *errstr,
                   size_t errstr_size) {
    flight_read(kv);
    for (int attempt = 0; attempt < 2; attempt++) {
        kv->last_noscript = 0;
        if (!kv->ctx && (kv->last_err = kv_open(kv, errstr, errstr_size))) return NULL;
        redisReply *r = redisCommandArgv(kv->ctx, argc, argv, lens);
        if (r) {
            if (r->type == REDIS_REPLY_ERROR) {
                kv->last_err = maas_errf(errstr, errstr_size, server_err(r->str), "redis %s: %s",
                                         argv[0], r->str);
                kv->last_noscript = r->str && !strncmp(r->str, "NOSCRIPT", 8);
                freeReplyObject(r);
                return NULL;
            }
            return r;
        }
        kv->last_err = maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE, "redis %s: %s", argv[0],
                                 kv->ctx->errstr);
        redisFree(kv->ctx); /* the context is unusable after an I/O error */
        kv->ctx = NULL;
    }
    return NULL;
}

maas_err maas_kv_scope(maas_kv *kv, const char *tenant, char *errstr, size_t errstr_size) {
    if (tenant && *tenant) {
        maas_err err = maas_tenant_check(tenant, errstr, errstr_size);
        if (err) return err;
        snprintf(kv->tenant, sizeof(kv->tenant), "%s", tenant);
        snprintf(kv->prefix, sizeof(kv->prefix), "%st:%s:", kv->base, tenant);
    } else {
        kv->tenant[0] = '\0';
        snprintf(kv->prefix, sizeof(kv->prefix), "%s", kv->base);
    }
    return MAAS_OK;
}

const char *maas_kv_tenant(const maas_kv *kv) {
    return kv->tenant;
}

maas_err maas_kv_ping(maas_kv *kv, char *errstr, size_t errstr_size) {
    const char *argv[] = {"PING"};
    redisReply *r = kv_cmd(kv, 1, argv, NULL, errstr, errstr_size);
    if (!r) return kv->last_err;
    freeReplyObject(r);
    return MAAS_OK;
}

/* ---- job records ---- */

/*
 * The recent-jobs index (sorted set maas:jobs, score = created_ms): for
 * `maas jobs`. It is an index, not the truth: entries whose record expired are
 * dropped when listed, and entries older than 30 days on every submission.
 */
static maas_err index_job(maas_kv *kv, const char *id, int64_t created_ms, char *errstr,
                          size_t errstr_size) {
    char key[128], score[24], cutoff[32];
    snprintf(key, sizeof(key), "%sjobs", kv->prefix);
    snprintf(score, sizeof(score), "%lld", (long long)created_ms);
    snprintf(cutoff, sizeof(cutoff), "(%lld", (long long)(maas_wall_ms() - 30LL * 86400 * 1000));
    const char *add[] = {"ZADD", key, "NX", score, id};
    redisReply *rep = kv_cmd(kv, 5, add, NULL, errstr, errstr_size);
    if (!rep) return kv->last_err;
    freeReplyObject(rep);
    const char *trim[] = {"ZREMRANGEBYSCORE", key, "-inf", cutoff};
    if (!(rep = kv_cmd(kv, 4, trim, NULL, errstr, errstr_size))) return kv->last_err;
    freeReplyObject(rep);
    return MAAS_OK;
}

static const char job_create_lua[] = "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
                                     "redis.call('HSET', KEYS[1], unpack(ARGV))\n"
                                     "return 1\n";

maas_err maas_kv_job_create(maas_kv *kv, const maas_job_record *r, int ttl_s, char *errstr,
                            size_t errstr_size) {
    maas_err err = maas_name_check("job id", r->id, errstr, errstr_size);
    if (err) return err;
    char key[256];
    KEY(key, kv, "job:{%s}", r->id);
    argv_buf a = {0};
    arg_s(&a, "EVAL");
    arg_s(&a, job_create_lua);
    arg_s(&a, "1");
    arg_s(&a, key);
    arg_s(&a, "id"), arg_s(&a, r->id);
    arg_s(&a, "type"), arg_s(&a, r->type);
    arg_s(&a, "model"), arg_s(&a, r->model);
    arg_s(&a, "state"), arg_s(&a, "queued");
    arg_s(&a, "attempts"), arg_i(&a, 0);
    arg_s(&a, "created_ms"), arg_i(&a, r->created_ms ? r->created_ms : maas_wall_ms());
    arg_s(&a, "deadline_ms"), arg_i(&a, r->deadline_ms);
    arg_s(&a, "ttl_s"), arg_i(&a, ttl_s);
    if (r->digest[0]) arg_s(&a, "digest"), arg_s(&a, r->digest);
    redisReply *rep = kv_cmd(kv, a.n, a.v, a.len, errstr, errstr_size);
    if (!rep) return kv->last_err;
    long long created = rep->integer;
    freeReplyObject(rep);
    if (!created)
        return maas_errf(errstr, errstr_size, MAAS_ERR_CONFLICT, "job '%s' already exists", r->id);
    return index_job(kv, r->id, r->created_ms ? r->created_ms : maas_wall_ms(), errstr,
                     errstr_size);
}

static int64_t field_i64(const redisReply *v) {
    char b[32];
    kv_copy_field(b, sizeof(b), v);
    return strtoll(b, NULL, 10);
}

maas_err maas_kv_job_get(maas_kv *kv, const char *id, maas_job_record *r, char *errstr,
                         size_t errstr_size) {
    memset(r, 0, sizeof(*r));
    maas_err err = maas_name_check("job id", id, errstr, errstr_size);
    if (err) return err;
    char key[256];
    KEY(key, kv, "job:{%s}", id);
    const char *argv[] = {"HGETALL", key};
    redisReply *rep = kv_cmd(kv, 2, argv, NULL, errstr, errstr_size);
    if (!rep) return kv->last_err;
    snprintf(r->id, sizeof(r->id), "%s", id);
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        const char *f = rep->element[i]->str;
        const redisReply *v = rep->element[i + 1];
        if (!strcmp(f, "state")) {
            char s[32];
            kv_copy_field(s, sizeof(s), v);
            r->state = maas_job_state_from_name(s);
        } else if (!strcmp(f, "type"))
            kv_copy_field(r->type, sizeof(r->type), v);
        else if (!strcmp(f, "model"))
            kv_copy_field(r->model, sizeof(r->model), v);
        else if (!strcmp(f, "worker"))
            kv_copy_field(r->worker, sizeof(r->worker), v);
        else if (!strcmp(f, "error_code"))
            kv_copy_field(r->error_code, sizeof(r->error_code), v);
        else if (!strcmp(f, "error_message"))
            kv_copy_field(r->error_message, sizeof(r->error_message), v);
        else if (!strcmp(f, "attempts"))
            r->attempts = (int)field_i64(v);
        else if (!strcmp(f, "created_ms"))
            r->created_ms = field_i64(v);
        else if (!strcmp(f, "started_ms"))
            r->started_ms = field_i64(v);
        else if (!strcmp(f, "finished_ms"))
            r->finished_ms = field_i64(v);
        else if (!strcmp(f, "heartbeat_ms"))
            r->heartbeat_ms = field_i64(v);
        else if (!strcmp(f, "deadline_ms"))
            r->deadline_ms = field_i64(v);
        else if (!strcmp(f, "cancel_requested"))
            r->cancel_requested = field_i64(v) != 0;
        else if (!strcmp(f, "digest"))
            kv_copy_field(r->digest, sizeof(r->digest), v);
        else if (!strcmp(f, "progress") && !r->progress && (r->progress = malloc(v->len + 1))) {
            memcpy(r->progress, v->str, v->len);
            r->progress[v->len] = '\0';
        } else if (!strcmp(f, "result") && !r->result &&
                   (r->result = malloc(v->len ? v->len : 1))) {
            memcpy(r->result, v->str, v->len);
            r->result_len = v->len;
        }
    }
    freeReplyObject(rep);
    return MAAS_OK;
}

/* One job state transition, atomically (ARGV as build_transition() sends them). Written to do
 * no per-call table or closure building beyond the HSET field list: it runs once per job. */
static const char job_transition_lua[] =
    "local key = KEYS[1]\n"
    "local st = redis.call('HGET', key, 'state')\n"
    /* The hot path spelled out: a worker's result for a job with no record yet (produced
     * straight to Kafka). The fields, in the order, the general path below writes for it,
     * without building the field table or testing the mask bit by bit (a fifth of the
     * script's cost, measured). */
    "if not st and ARGV[10] == '1' and ARGV[2] == 'succeeded' and ARGV[9] == '1' and\n"
    "   ARGV[4] ~= '' and ARGV[6] == '' and ARGV[1] % 4 >= 2 and ARGV[19] ~= '0' then\n"
    "  redis.call('HSET', key, 'id', ARGV[11], 'type', ARGV[12], 'model', ARGV[13],\n"
    "             'created_ms', ARGV[14], 'deadline_ms', ARGV[15], 'ttl_s', ARGV[16],\n"
    "             'state', 'succeeded', 'attempts', 1, 'worker', ARGV[4], 'started_ms', ARGV[19],\n"
    "             'finished_ms', ARGV[3], 'result', ARGV[5], 'digest', ARGV[18])\n"
    "  local ttl = tonumber(ARGV[8])\n"
    "  if ttl > 0 then redis.call('EXPIRE', key, ttl) end\n"
    "  if ARGV[17] == '1' then\n"
    "    redis.call('RPUSH', KEYS[2], 'succeeded')\n"
    "    if ttl > 0 then redis.call('EXPIRE', KEYS[2], ttl) end\n"
    "  end\n"
    "  redis.call('PUBLISH', KEYS[3], 'succeeded')\n"
    "  return 1\n"
    "end\n"
    "local new = false\n"
    "local attempts\n"
    "local f\n"
    "if not st then\n"
    "  if ARGV[10] ~= '1' then return {-1, ''} end\n"
    "  f = {'id', ARGV[11], 'type', ARGV[12], 'model', ARGV[13], 'created_ms', ARGV[14],\n"
    "       'deadline_ms', ARGV[15], 'ttl_s', ARGV[16], 'digest', ARGV[18]}\n"
    "  st, attempts, new = 'queued', 0, true\n"
    "else\n"
    /* A message acting on a record must be the job the record was made for: its type,
     * model and (when both are known) the SHA-256 of its bytes. */
    "  if ARGV[10] == '1' then\n"
    "    local r = redis.call('HMGET', key, 'type', 'model', 'digest')\n"
    "    if r[1] ~= ARGV[12] or r[2] ~= ARGV[13] or\n"
    "       (r[3] and r[3] ~= '' and ARGV[18] ~= '' and r[3] ~= ARGV[18]) then\n"
    "      return {-2, st}\n"
    "    end\n"
    "  end\n"
    "  f = {}\n"
    "end\n"
    "local i\n"
    "if st == 'queued' then i = 1 elseif st == 'running' then i = 2 elseif st == 'succeeded' then "
    "i = 3\n"
    "elseif st == 'failed' then i = 4 elseif st == 'expired' then i = 5 elseif st == 'cancelled' "
    "then i = 6\n"
    "else i = 0 end\n"
    "if math.floor(tonumber(ARGV[1]) / (2 ^ i)) % 2 ~= 1 then return {0, st} end\n"
    "local to, now, worker = ARGV[2], ARGV[3], ARGV[4]\n"
    "local final = to == 'succeeded' or to == 'failed' or to == 'expired' or to == 'cancelled'\n"
    "local n = #f\n"
    "f[n + 1] = 'state'; f[n + 2] = to; n = n + 2\n"
    "if to == 'running' or (final and st == 'queued' and worker ~= '') then\n"
    "  if not attempts then attempts = tonumber(redis.call('HGET', key, 'attempts') or '0') end\n"
    "  attempts = attempts + 1\n"
    "end\n"
    "if to == 'queued' and st == 'failed' then attempts = 0 end\n"
    "if attempts then f[n + 1] = 'attempts'; f[n + 2] = attempts; n = n + 2 end\n"
    "if to == 'running' then\n"
    "  f[n + 1] = 'worker'; f[n + 2] = worker; f[n + 3] = 'started_ms'; f[n + 4] = now\n"
    "  f[n + 5] = 'heartbeat_ms'; f[n + 6] = now; n = n + 6\n"
    "end\n"
    "if final then\n"
    "  if worker ~= '' then f[n + 1] = 'worker'; f[n + 2] = worker; n = n + 2 end\n"
    "  if ARGV[19] ~= '0' and st == 'queued' then\n"
    "    f[n + 1] = 'started_ms'; f[n + 2] = ARGV[19]; n = n + 2\n"
    "  end\n"
    "  f[n + 1] = 'finished_ms'; f[n + 2] = now; n = n + 2\n"
    "  if ARGV[9] == '1' then f[n + 1] = 'result'; f[n + 2] = ARGV[5]; n = n + 2 end\n"
    "  if ARGV[6] ~= '' then\n"
    "    f[n + 1] = 'error_code'; f[n + 2] = ARGV[6]; f[n + 3] = 'error_message'; f[n + 4] = "
    "ARGV[7]\n"
    "    n = n + 4\n"
    "  end\n"
    "end\n"
    "redis.call('HSET', key, unpack(f))\n"
    "if to == 'queued' and not new then\n"
    "  redis.call('HDEL', key, 'worker', 'error_code', 'error_message', 'finished_ms',\n"
    "             'result', 'progress', 'cancel_requested')\n"
    "  redis.call('PERSIST', key)\n"
    "  redis.call('DEL', KEYS[2])\n"
    "end\n"
    "if final then\n"
    "  local notify = ARGV[17] == '1'\n"
    "  if notify then redis.call('RPUSH', KEYS[2], to) end\n"
    "  local ttl = tonumber(ARGV[8])\n"
    "  if ttl <= 0 and not new then ttl = tonumber(redis.call('HGET', key, 'ttl_s') or '0') end\n"
    "  if ttl > 0 then\n"
    "    redis.call('EXPIRE', key, ttl)\n"
    "    if notify then redis.call('EXPIRE', KEYS[2], ttl) end\n"
    "  end\n"
    "  redis.call('PUBLISH', KEYS[3], to)\n"
    "end\n"
    "return 1\n";

/* The arguments of one transition script call; the key buffers live in it. */
typedef struct transition_call {
    argv_buf a;
    char key[256], done[256], chan[256];
} transition_call;

/* Loads the transition script once per connection; EVALSHA then saves Redis the
 * hashing of 2 KB of script text per job. */
static maas_err load_transition(maas_kv *kv, char *errstr, size_t errstr_size) {
    if (kv->transition_sha[0]) return MAAS_OK;
    const char *argv[] = {"SCRIPT", "LOAD", job_transition_lua};
    redisReply *rep = kv_cmd(kv, 3, argv, NULL, errstr, errstr_size);
    if (!rep) return kv->last_err;
    if (rep->type == REDIS_REPLY_STRING && rep->len == 40)
        kv_copy_field(kv->transition_sha, sizeof(kv->transition_sha), rep);
    freeReplyObject(rep);
    return kv->transition_sha[0] ? MAAS_OK
                                 : maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE,
                                             "redis SCRIPT LOAD returned no hash");
}

static void build_transition(maas_kv *kv, transition_call *t, const char *id,
                             const maas_job_update *u, int64_t now) {
    memset(&t->a, 0, sizeof(t->a));
    KEY(t->key, kv, "job:{%s}", id);
    KEY(t->done, kv, "job:{%s}:done", id);
    KEY(t->chan, kv, "job:{%s}:events", id);
    argv_buf *a = &t->a;
    arg_s(a, "EVALSHA");
    arg_s(a, kv->transition_sha);
    arg_s(a, "3");
    arg_s(a, t->key);
    arg_s(a, t->done);
    arg_s(a, t->chan);
    arg_i(a, (long long)u->from_mask);
    arg_s(a, maas_job_state_name(u->to));
    arg_i(a, now);
    arg_s(a, u->worker);
    arg(a, u->result ? (const void *)u->result : "", u->result ? u->result_len : 0);
    arg_s(a, u->error_code);
    arg_s(a, u->error_message);
    arg_i(a, u->ttl_s);
    arg_s(a, u->result ? "1" : "0");
    const maas_job_record *c = u->create;
    arg_s(a, c ? "1" : "0");
    arg_s(a, id);
    arg_s(a, c ? c->type : "");
    arg_s(a, c ? c->model : "");
    arg_i(a, c && c->created_ms ? c->created_ms : now);
    arg_i(a, c ? c->deadline_ms : 0);
    arg_i(a, u->ttl_s);
    arg_s(a, u->notify ? "1" : "0");
    arg_s(a, c ? c->digest : "");
    arg_i(a, u->started_ms);
}

static maas_err transition_reply(const redisReply *rep, const char *id, const maas_job_update *u,
                                 char *errstr, size_t errstr_size) {
    if (!rep || rep->type == REDIS_REPLY_ERROR)
        return maas_errf(errstr, errstr_size, rep ? server_err(rep->str) : MAAS_ERR_UNAVAILABLE,
                         "redis EVAL: %s", rep && rep->str ? rep->str : "no reply");
    /* 1 when moved (a plain integer: a table reply costs Redis ~10% of the script, measured);
     * {0, state} when the record's state did not allow it; {-1, ""} when there is none */
    long long ok = rep->type == REDIS_REPLY_INTEGER ? rep->integer
                   : rep->elements >= 1             ? rep->element[0]->integer
                                                    : -1;
    char from[32] = "";
    if (rep->elements >= 2 && rep->element[1]->type == REDIS_REPLY_STRING)
        kv_copy_field(from, sizeof(from), rep->element[1]);
    if (ok == -2)
        return maas_errf(errstr, errstr_size, MAAS_ERR_MISMATCH,
                         "job '%s': the message does not match its record (type, model or "
                         "digest); the record is left as it was (%s)",
                         id, from);
    if (ok < 0)
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME, "job '%s' has no record", id);
    if (ok == 0)
        return maas_errf(errstr, errstr_size, MAAS_ERR_CONFLICT, "job '%s' is %s, not moved to %s",
                         id, from, u ? maas_job_state_name(u->to) : "its next state");
    return MAAS_OK;
}

maas_err maas_kv_job_transition(maas_kv *kv, const char *id, const maas_job_update *u, char *errstr,
                                size_t errstr_size) {
    maas_err err = maas_name_check("job id", id, errstr, errstr_size);
    if (err) return err;
    transition_call t;
    for (int attempt = 0; attempt < 2; attempt++) {
        if ((err = load_transition(kv, errstr, errstr_size))) return err;
        build_transition(kv, &t, id, u, maas_wall_ms());
        redisReply *rep = kv_cmd(kv, t.a.n, t.a.v, t.a.len, errstr, errstr_size);
        if (!rep) {
            if (kv->last_noscript) { /* SCRIPT FLUSH or a restart: load it again */
                kv->transition_sha[0] = '\0';
                continue;
            }
            return kv->last_err;
        }
        err = transition_reply(rep, id, u, errstr, errstr_size);
        freeReplyObject(rep);
        if (!err && u->create) /* a job produced straight to Kafka: index it too */
            err = index_job(kv, id, u->create->created_ms ? u->create->created_ms : maas_wall_ms(),
                            errstr, errstr_size);
        return err;
    }
    return MAAS_ERR_UNAVAILABLE;
}

/* Reads the replies of the batch in flight into kv->flight (results, err). */
static void flight_read(maas_kv *kv) {
    while (kv->flight.unread > 0) {
        int i = kv->flight.n - kv->flight.unread;
        redisReply *rep = NULL;
        if (!kv->ctx || redisGetReply(kv->ctx, (void **)&rep) != REDIS_OK || !rep) {
            if (!kv->flight.err)
                kv->flight.err =
                    maas_errf(kv->flight.errstr, sizeof(kv->flight.errstr), MAAS_ERR_UNAVAILABLE,
                              "redis: %s", kv->ctx ? kv->ctx->errstr : "connection lost");
            /* a half-read pipeline leaves the connection unusable: start over next time */
            if (kv->ctx) redisFree(kv->ctx);
            kv->ctx = NULL;
            kv->transition_sha[0] = '\0';
            break;
        }
        kv->flight.unread--;
        char sub[MAAS_ERRSTR_SIZE];
        if (rep->type == REDIS_REPLY_ERROR && rep->str && !strncmp(rep->str, "NOSCRIPT", 8))
            kv->transition_sha[0] = '\0'; /* reloaded next time; this batch is retried */
        kv->flight.results[i] = transition_reply(rep, "", NULL, sub, sizeof(sub));
        if (kv->flight.results[i] == MAAS_ERR_UNAVAILABLE && !kv->flight.err)
            kv->flight.err = maas_errf(kv->flight.errstr, sizeof(kv->flight.errstr),
                                       MAAS_ERR_UNAVAILABLE, "%s", sub);
        freeReplyObject(rep);
    }
    for (int i = kv->flight.n - kv->flight.unread; i < kv->flight.n; i++)
        kv->flight.results[i] = MAAS_ERR_UNAVAILABLE;
    kv->flight.unread = 0;
}

maas_err maas_kv_job_transition_send(maas_kv *kv, int n, const char *const *ids,
                                     const maas_job_update *updates, char *errstr,
                                     size_t errstr_size) {
    if (kv->flight.n)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "a transition batch is in flight already: recv it first");
    if (n <= 0) return MAAS_OK;
    for (int i = 0; i < n; i++) {
        maas_err err = maas_name_check("job id", ids[i], errstr, errstr_size);
        if (err) return err;
    }
    maas_err *results = calloc((size_t)n, sizeof(*results));
    transition_call *t = malloc(sizeof(*t));
    if (!results || !t) {
        free(results);
        free(t);
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    }
    int64_t now = maas_wall_ms();
    maas_err err = kv->ctx ? MAAS_OK : kv_open(kv, errstr, errstr_size);
    if (!err) err = load_transition(kv, errstr, errstr_size);
    /* Pipelined: every script is appended to the output buffer, then written at once. */
    for (int i = 0; i < n && !err; i++) {
        build_transition(kv, t, ids[i], &updates[i], now);
        if (redisAppendCommandArgv(kv->ctx, t->a.n, t->a.v, t->a.len) != REDIS_OK)
            err =
                maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE, "redis: %s", kv->ctx->errstr);
    }
    int wdone = 0;
    while (!err && !wdone)
        if (redisBufferWrite(kv->ctx, &wdone) != REDIS_OK)
            err =
                maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE, "redis: %s", kv->ctx->errstr);
    free(t);
    if (err) {
        free(results);
        if (kv->ctx && err == MAAS_ERR_UNAVAILABLE) { /* some may have gone out: start over */
            redisFree(kv->ctx);
            kv->ctx = NULL;
        }
        return err;
    }
    kv->flight.n = kv->flight.unread = n;
    kv->flight.results = results;
    kv->flight.err = MAAS_OK;
    return MAAS_OK;
}

maas_err maas_kv_job_transition_recv(maas_kv *kv, maas_err *results, char *errstr,
                                     size_t errstr_size) {
    if (!kv->flight.n) return MAAS_OK;
    flight_read(kv);
    memcpy(results, kv->flight.results, (size_t)kv->flight.n * sizeof(*results));
    maas_err err = kv->flight.err;
    if (err) maas_errf(errstr, errstr_size, err, "%s", kv->flight.errstr);
    free(kv->flight.results);
    kv->flight.results = NULL;
    kv->flight.n = 0;
    kv->flight.err = MAAS_OK;
    return err;
}

int maas_kv_job_transition_in_flight(const maas_kv *kv) {
    return kv->flight.n;
}

maas_err maas_kv_job_transition_batch(maas_kv *kv, int n, const char *const *ids,
                                      const maas_job_update *updates, maas_err *results,
                                      char *errstr, size_t errstr_size) {
    maas_err err = maas_kv_job_transition_send(kv, n, ids, updates, errstr, errstr_size);
    if (err) return err;
    return maas_kv_job_transition_recv(kv, results, errstr, errstr_size);
}

static const char job_heartbeat_lua[] =
    "if redis.call('HGET', KEYS[1], 'state') ~= 'running' or\n"
    "   redis.call('HGET', KEYS[1], 'worker') ~= ARGV[1] then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'heartbeat_ms', ARGV[2])\n"
    "if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'progress', ARGV[3]) end\n"
    /* the event carries the progress (a subscriber need not read the record) */
    "redis.call('PUBLISH', KEYS[2], ARGV[3] ~= '' and ('progress ' .. ARGV[3]) or 'progress')\n"
    "return tonumber(redis.call('HGET', KEYS[1], 'cancel_requested') or '0') + 1\n";

maas_err maas_kv_job_heartbeat(maas_kv *kv, const char *id, const char *worker,
                               const char *progress_json, char *errstr, size_t errstr_size) {
    maas_err err = maas_name_check("job id", id, errstr, errstr_size);
    if (err) return err;
    char key[256], chan[256];
    KEY(key, kv, "job:{%s}", id);
    KEY(chan, kv, "job:{%s}:events", id);
    argv_buf a = {0};
    arg_s(&a, "EVAL");
    arg_s(&a, job_heartbeat_lua);
    arg_s(&a, "2");
    arg_s(&a, key);
    arg_s(&a, chan);
    arg_s(&a, worker);
    arg_i(&a, maas_wall_ms());
    arg_s(&a, progress_json);
    redisReply *rep = kv_cmd(kv, a.n, a.v, a.len, errstr, errstr_size);
    if (!rep) return kv->last_err;
    long long v = rep->integer;
    freeReplyObject(rep);
    if (v == 0)
        return maas_errf(errstr, errstr_size, MAAS_ERR_CONFLICT,
                         "job '%s' is not running on worker '%s'", id, worker);
    if (v > 1)
        return maas_errf(errstr, errstr_size, MAAS_ERR_CANCELLED, "job '%s' was cancelled", id);
    return MAAS_OK;
}

static const char job_cancel_lua[] =
    "local st = redis.call('HGET', KEYS[1], 'state')\n"
    "if not st then return 'unknown' end\n"
    "if st == 'queued' then\n"
    "  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_ms', ARGV[1],\n"
    "             'cancel_requested', 1)\n"
    "  redis.call('DEL', KEYS[2])\n"
    "  redis.call('RPUSH', KEYS[2], 'cancelled')\n"
    "  local ttl = tonumber(redis.call('HGET', KEYS[1], 'ttl_s') or '0')\n"
    "  if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) redis.call('EXPIRE', KEYS[2], ttl) end\n"
    "  redis.call('PUBLISH', KEYS[3], 'cancelled')\n"
    "  return 'cancelled'\n"
    "end\n"
    "if st == 'running' then redis.call('HSET', KEYS[1], 'cancel_requested', 1) end\n"
    "return st\n";

maas_err maas_kv_job_cancel(maas_kv *kv, const char *id, char *errstr, size_t errstr_size) {
    maas_err err = maas_name_check("job id", id, errstr, errstr_size);
    if (err) return err;
    char key[256], done[256], chan[256];
    KEY(key, kv, "job:{%s}", id);
    KEY(done, kv, "job:{%s}:done", id);
    KEY(chan, kv, "job:{%s}:events", id);
    argv_buf a = {0};
    arg_s(&a, "EVAL");
    arg_s(&a, job_cancel_lua);
    arg_s(&a, "3");
    arg_s(&a, key);
    arg_s(&a, done);
    arg_s(&a, chan);
    arg_i(&a, maas_wall_ms());
    redisReply *rep = kv_cmd(kv, a.n, a.v, a.len, errstr, errstr_size);
    if (!rep) return kv->last_err;
    int unknown = rep->str && !strcmp(rep->str, "unknown");
    freeReplyObject(rep);
    if (unknown) return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME, "no job '%s'", id);
    return MAAS_OK;
}

/* The next reply on a subscribed connection, waiting up to timeout_ms (0: only what has
 * arrived): 1 and *out (free it), 0 none in time (or a signal), -1 the connection failed. */
static int sub_next(redisContext *c, int timeout_ms, redisReply **out) {
    int64_t t0 = maas_mono_ms();
    while (1) {
        *out = NULL;
        if (redisGetReplyFromReader(c, (void **)out) != REDIS_OK) return -1;
        if (*out) return 1;
        long left = (long)(timeout_ms - (maas_mono_ms() - t0));
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int r = poll(&pfd, 1, left > 0 ? (int)left : 0);
        if (r < 0 && errno == EINTR) return 0; /* a signal: let the caller look at it */
        if (r < 0) return -1;
        if (r == 0) return 0;
        if (redisBufferRead(c) != REDIS_OK) return -1;
    }
}

/* A pub/sub push of the given kind ("message", "unsubscribe", ...). */
static int is_push(const redisReply *r, const char *kind) {
    return r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
           r->element[0]->type == REDIS_REPLY_STRING && !strcmp(r->element[0]->str, kind);
}

/* Waits up to timeout_ms for a message on the subscribed connection c: 1 got one, 0 timed
 * out, -1 the connection failed. Other replies (subscribe confirmations) are skipped. */
static int sub_message(redisContext *c, int timeout_ms) {
    redisReply *rep;
    int got;
    while ((got = sub_next(c, timeout_ms, &rep)) == 1) {
        int msg = is_push(rep, "message");
        freeReplyObject(rep);
        if (msg) return 1;
    }
    return got;
}

maas_err maas_kv_job_wait(maas_kv *kv, const char *id, int timeout_ms, maas_job_state *state,
                          char *errstr, size_t errstr_size) {
    maas_err err = maas_name_check("job id", id, errstr, errstr_size);
    if (err) return err;
    char chan[256];
    KEY(chan, kv, "job:{%s}:events", id);
    /* Subscribe first, then read the state: a transition between the two is not missed. */
    if (!kv->sub && (err = connect_ctx(kv, &kv->sub, errstr, errstr_size))) return err;
    redisReply *rep = redisCommand(kv->sub, "SUBSCRIBE %s", chan);
    int ok = rep && rep->type == REDIS_REPLY_ARRAY;
    if (rep) freeReplyObject(rep);
    if (!ok) {
        redisFree(kv->sub);
        kv->sub = NULL;
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE, "redis SUBSCRIBE failed");
    }
    maas_job_record r;
    err = maas_kv_job_get(kv, id, &r, errstr, errstr_size);
    maas_job_record_release(&r);
    *state = r.state;
    int got = 0;
    if (!err && !MAAS_JOB_FINAL(r.state) && r.state != MAAS_JOB_UNKNOWN)
        got = sub_message(kv->sub, timeout_ms);
    /* Unsubscribe and skip what came meanwhile, up to the confirmation. */
    if (got >= 0 && redisAppendCommand(kv->sub, "UNSUBSCRIBE %s", chan) == REDIS_OK) {
        while ((rep = NULL, redisGetReply(kv->sub, (void **)&rep) == REDIS_OK) && rep) {
            int done = is_push(rep, "unsubscribe");
            freeReplyObject(rep);
            if (done) break;
        }
        if (!rep) got = -1;
    }
    if (got < 0) { /* a broken subscription: a fresh connection next time */
        redisFree(kv->sub);
        kv->sub = NULL;
    }
    if (got == 1 && !err) {
        err = maas_kv_job_get(kv, id, &r, errstr, errstr_size);
        maas_job_record_release(&r);
        *state = r.state;
    }
    return err;
}

/* ---- model registry ---- */

void maas_version_meta_release(maas_version_meta *m) {
    if (!m) return;
    free(m->metrics);
    free(m->config);
    m->metrics = m->config = NULL;
}

static const char version_create_lua[] =
    "local v = redis.call('HGET', KEYS[3], ARGV[1])\n"
    "if v then return {tonumber(v), 0} end\n"
    "local n = redis.call('HINCRBY', KEYS[1], 'next_version', 1)\n"
    "redis.call('HSETNX', KEYS[1], 'created_ms', ARGV[2])\n"
    "for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[2], n .. '.' .. ARGV[i], ARGV[i + 1]) end\n"
    "redis.call('HSET', KEYS[3], ARGV[1], n)\n"
    "redis.call('HSET', KEYS[4], 'latest', n)\n"
    "return {n, 1}\n";

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
    arg_s(&a, "EVAL");
    arg_s(&a, version_create_lua);
    arg_s(&a, "4");
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

/* ---- client-side caching of version resolution ---- */

static void track_off(maas_kv *kv) {
    if (kv->inval) redisFree(kv->inval);
    kv->inval = NULL;
    kv->n_resolved = 0;
}

/* Best effort: on any failure the cache stays off and every resolve asks Redis. */
static void track_on(maas_kv *kv) {
    track_off(kv);
    if (!kv->ctx || connect_ctx(kv, &kv->inval, NULL, 0)) return;
    long long id = -1;
    redisReply *r = redisCommand(kv->inval, "CLIENT ID");
    if (r && r->type == REDIS_REPLY_INTEGER) id = r->integer;
    if (r) freeReplyObject(r);
    r = id < 0 ? NULL : redisCommand(kv->inval, "SUBSCRIBE __redis__:invalidate");
    int ok = r && r->type == REDIS_REPLY_ARRAY;
    if (r) freeReplyObject(r);
    /* OPTIN: only the reads preceded by CLIENT CACHING yes are tracked (resolves, not the
     * job records and model files the handle also reads). Off first: a redirect to an
     * earlier, broken invalidation connection may still be set. */
    if (ok && (r = redisCommand(kv->ctx, "CLIENT TRACKING off"))) freeReplyObject(r);
    r = ok ? redisCommand(kv->ctx, "CLIENT TRACKING on REDIRECT %lld OPTIN", id) : NULL;
    ok = r && r->type == REDIS_REPLY_STATUS;
    if (r) freeReplyObject(r);
    if (!ok) {
        track_off(kv);
        kv->track_retry_ms = maas_wall_ms() + 5000;
    }
}

/* Applies the invalidations Redis sent since the last look (never blocks). */
static void track_drain(maas_kv *kv) {
    redisReply *rep;
    int got;
    while (kv->inval && (got = sub_next(kv->inval, 0, &rep)) != 0) {
        if (got < 0) {
            track_off(kv);
            break;
        }
        /* ["message", "__redis__:invalidate", [key, ...] or nil (everything)] */
        if (is_push(rep, "message")) {
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

static const resolved *resolved_find(const maas_kv *kv, const char *key, const char *ref) {
    for (int i = 0; i < kv->n_resolved; i++)
        if (!strcmp(kv->resolved[i].ref, ref) && !strcmp(kv->resolved[i].key, key))
            return &kv->resolved[i];
    return NULL;
}

static void resolved_put(maas_kv *kv, const char *key, const char *ref, int version) {
    if (!kv->inval || strlen(key) >= sizeof(kv->resolved[0].key)) return;
    if (kv->n_resolved == RESOLVED_MAX) kv->n_resolved = 0; /* full: start over */
    resolved *r = &kv->resolved[kv->n_resolved++];
    snprintf(r->key, sizeof(r->key), "%s", key);
    snprintf(r->ref, sizeof(r->ref), "%s", ref);
    r->version = version;
}

/* A read that Redis tracks for the cache (CLIENT CACHING yes right before it), or a plain
 * one when the cache is off. */
static redisReply *tracked_cmd(maas_kv *kv, int argc, const char **argv, char *errstr,
                               size_t errstr_size) {
    flight_read(kv);
    if (!kv->ctx && (kv->last_err = kv_open(kv, errstr, errstr_size))) return NULL;
    if (!kv->inval) return kv_cmd(kv, argc, argv, NULL, errstr, errstr_size);
    redisReply *opt = NULL, *rep = NULL;
    if (redisAppendCommand(kv->ctx, "CLIENT CACHING yes") != REDIS_OK ||
        redisAppendCommandArgv(kv->ctx, argc, argv, NULL) != REDIS_OK ||
        redisGetReply(kv->ctx, (void **)&opt) != REDIS_OK ||
        redisGetReply(kv->ctx, (void **)&rep) != REDIS_OK) {
        kv->last_err = maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE, "redis %s: %s", argv[0],
                                 kv->ctx->errstr);
        if (opt) freeReplyObject(opt);
        redisFree(kv->ctx); /* the context is unusable after an I/O error */
        kv->ctx = NULL;
        track_off(kv);
        return NULL;
    }
    int opt_ok = opt && opt->type == REDIS_REPLY_STATUS;
    freeReplyObject(opt);
    if (!opt_ok) track_off(kv); /* not tracked after all: no caching from now on */
    if (rep && rep->type == REDIS_REPLY_ERROR) {
        kv->last_err =
            maas_errf(errstr, errstr_size, server_err(rep->str), "redis %s: %s", argv[0], rep->str);
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

maas_err maas_kv_cache_versions(maas_kv *kv, char *errstr, size_t errstr_size) {
    kv->cache_versions = 1;
    if (!kv->ctx && kv_open(kv, errstr, errstr_size)) return MAAS_ERR_UNAVAILABLE;
    if (!kv->inval) track_on(kv);
    return kv->inval ? MAAS_OK
                     : maas_errf(errstr, errstr_size, MAAS_ERR_UNSUPPORTED,
                                 "redis refused client-side caching (CLIENT TRACKING, Redis 6+): "
                                 "every resolve asks Redis");
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
    if (kv->cache_versions && !kv->inval && kv->ctx && maas_wall_ms() >= kv->track_retry_ms)
        track_on(kv); /* it broke earlier (Redis went away): set it up again */
    track_drain(kv);
    const resolved *hit = kv->inval ? resolved_find(kv, key, ref) : NULL;
    if (hit) {
        *version = hit->version;
        return MAAS_OK;
    }
    redisReply *rep;
    if (numeric) {
        snprintf(field, sizeof(field), "%ld.size", v);
        const char *argv[] = {"HEXISTS", key, field};
        if (!(rep = tracked_cmd(kv, 3, argv, errstr, errstr_size))) return kv->last_err;
        int exists = rep->integer == 1;
        freeReplyObject(rep);
        if (!exists)
            return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                             "model '%s' has no version %ld", model, v);
        *version = (int)v;
    } else {
        const char *argv[] = {"HGET", key, ref};
        if (!(rep = tracked_cmd(kv, 3, argv, errstr, errstr_size))) return kv->last_err;
        long got = rep->type == REDIS_REPLY_STRING ? strtol(rep->str, NULL, 10) : 0;
        freeReplyObject(rep);
        if (got <= 0)
            return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                             "model '%s' has no alias '%s'", model, ref);
        *version = (int)got;
    }
    resolved_put(kv, key, ref, *version);
    return MAAS_OK;
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
        if (e[2]->type == REDIS_REPLY_STRING) meta->size = (size_t)field_i64(e[2]);
        if (e[3]->type == REDIS_REPLY_STRING) meta->parent = (int)field_i64(e[3]);
        if (e[4]->type == REDIS_REPLY_STRING) kv_copy_field(meta->job, sizeof(meta->job), e[4]);
        if (e[5]->type == REDIS_REPLY_STRING) meta->created_ms = field_i64(e[5]);
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

static const char alias_set_lua[] =
    "if redis.call('HEXISTS', KEYS[2], ARGV[2] .. '.size') == 0 then return -1 end\n"
    "if ARGV[3] ~= '-1' then\n"
    "  local cur = redis.call('HGET', KEYS[1], ARGV[1]) or '0'\n"
    "  if cur ~= ARGV[3] then return -2 end\n"
    "end\n"
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
    "return 1\n";

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
    arg_s(&a, "EVAL");
    arg_s(&a, alias_set_lua);
    arg_s(&a, "2");
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

int kv_cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_worker(const void *a, const void *b) {
    return strcmp(((const maas_worker_info *)a)->id, ((const maas_worker_info *)b)->id);
}

/* The members of set prefix+name, sorted: *out holds n malloc'ed strings (free each, then it). */
maas_err kv_smembers(maas_kv *kv, const char *name, char ***out, int *n, char *errstr,
                     size_t errstr_size) {
    *out = NULL;
    *n = 0;
    char key[128];
    snprintf(key, sizeof(key), "%s%s", kv->prefix, name);
    const char *argv[] = {"SMEMBERS", key};
    redisReply *rep = kv_cmd(kv, 2, argv, NULL, errstr, errstr_size);
    if (!rep) return kv->last_err;
    char **v = calloc(rep->elements + 1, sizeof(char *));
    if (!v) {
        freeReplyObject(rep);
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (size_t i = 0; i < rep->elements; i++) {
        if (!(v[i] = malloc(rep->element[i]->len + 1))) break;
        kv_copy_field(v[i], rep->element[i]->len + 1, rep->element[i]);
        (*n)++;
    }
    freeReplyObject(rep);
    qsort(v, (size_t)*n, sizeof(char *), kv_cmp_str);
    *out = v;
    return MAAS_OK;
}

maas_err maas_kv_models(maas_kv *kv, char ***names, int *n, char *errstr, size_t errstr_size) {
    return kv_smembers(kv, "models", names, n, errstr, errstr_size);
}

/* ---- datasets ---- */

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

/* GET key into a malloc'ed copy; UNKNOWN with `missing` as the message when absent. */
static maas_err get_blob(maas_kv *kv, const char *key, const char *missing, unsigned char **bytes,
                         size_t *len, char *errstr, size_t errstr_size) {
    const char *argv[] = {"GET", key};
    redisReply *rep = kv_cmd(kv, 2, argv, NULL, errstr, errstr_size);
    if (!rep) return kv->last_err;
    if (rep->type != REDIS_REPLY_STRING) {
        freeReplyObject(rep);
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME, "%s", missing);
    }
    *bytes = malloc(rep->len ? rep->len : 1);
    if (*bytes) {
        memcpy(*bytes, rep->str, rep->len);
        *len = rep->len;
    }
    freeReplyObject(rep);
    return *bytes ? MAAS_OK
                  : maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
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
    return get_blob(kv, key, missing, bytes, len, errstr, errstr_size);
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

/* ---- the fleet ---- */

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
    meta->size = (size_t)field_i64(e[1]);
    if (e[2]->type == REDIS_REPLY_STRING) meta->parent = (int)field_i64(e[2]);
    if (e[3]->type == REDIS_REPLY_STRING) kv_copy_field(meta->job, sizeof(meta->job), e[3]);
    if (e[4]->type == REDIS_REPLY_STRING) meta->created_ms = field_i64(e[4]);
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
    if (rep->type == REDIS_REPLY_STRING) *n = (int)field_i64(rep);
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
        (*versions)[*n] = (int)field_i64(rep->element[2 * i + 1]);
        (*n)++;
    }
    freeReplyObject(rep);
    return MAAS_OK;
}

/* ---- listings ---- */

maas_err maas_kv_jobs_list(maas_kv *kv, maas_job_state state, int limit, maas_job_record *out,
                           int *n, char *errstr, size_t errstr_size) {
    *n = 0;
    if (limit < 1) return MAAS_OK;
    char key[128];
    snprintf(key, sizeof(key), "%sjobs", kv->prefix);
    /* newest first, in pages, until `limit` records match */
    for (long start = 0; *n < limit && start < 100000; start += 200) {
        char a0[24], a1[24];
        snprintf(a0, sizeof(a0), "%ld", start);
        snprintf(a1, sizeof(a1), "%ld", start + 199);
        const char *argv[] = {"ZREVRANGE", key, a0, a1};
        redisReply *rep = kv_cmd(kv, 4, argv, NULL, errstr, errstr_size);
        if (!rep) return kv->last_err;
        size_t got = rep->elements, gone = 0;
        for (size_t i = 0; i < got && *n < limit; i++) {
            char id[MAAS_NAME_MAX + 1];
            kv_copy_field(id, sizeof(id), rep->element[i]);
            maas_job_record r;
            maas_err err = maas_kv_job_get(kv, id, &r, errstr, errstr_size);
            if (err) {
                freeReplyObject(rep);
                return err;
            }
            if (r.state == MAAS_JOB_UNKNOWN) { /* expired: drop it from the index */
                const char *rem[] = {"ZREM", key, id};
                redisReply *x = kv_cmd(kv, 3, rem, NULL, errstr, errstr_size);
                if (x) freeReplyObject(x);
                gone++;
                continue;
            }
            if (state != MAAS_JOB_UNKNOWN && r.state != state) {
                maas_job_record_release(&r);
                continue;
            }
            out[(*n)++] = r;
        }
        freeReplyObject(rep);
        if (got < 200) break;
        start -= (long)gone; /* removed entries shift the ranks */
    }
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

/* ---- sweeps ---- */

/*
 * maas:sweep:{ID} holds id, model, metric, promote, created_ms, n, state
 * (running | done), best_job, best_version, and per point K (1-based) a field
 * "p.K" = "job|lr|batch_size|epochs|layers".
 */
static const char sweep_create_lua[] = "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
                                       "redis.call('HSET', KEYS[1], unpack(ARGV))\n"
                                       "return 1\n";

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
    argv[a++] = "EVAL";
    argv[a++] = sweep_create_lua;
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

static const char sweep_finish_lua[] =
    "local st = redis.call('HGET', KEYS[1], 'state')\n"
    "if not st then return -1 end\n"
    "if st == 'done' then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'state', 'done', 'best_job', ARGV[1], 'best_version', ARGV[2],\n"
    "           'finished_ms', ARGV[3])\n"
    "return 1\n";

maas_err maas_kv_sweep_finish(maas_kv *kv, const char *id, const char *best_job, int best_version,
                              char *errstr, size_t errstr_size) {
    maas_err err = maas_name_check("sweep id", id, errstr, errstr_size);
    if (err) return err;
    char key[256], ver[16], now[24], kset[128];
    KEY(key, kv, "sweep:{%s}", id);
    snprintf(ver, sizeof(ver), "%d", best_version);
    snprintf(now, sizeof(now), "%lld", (long long)maas_wall_ms());
    snprintf(kset, sizeof(kset), "%ssweeps:active", kv->prefix);
    const char *argv[] = {"EVAL", sweep_finish_lua, "1", key, best_job, ver, now};
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

/* ---- housekeeping: stored job messages, version retention ---- */

static const char delivery_counts_lua[] =
    "local out = {}\n"
    "for i = 2, #ARGV, 2 do\n"
    "  if ARGV[i + 1] == '1' then out[#out + 1] = redis.call('HINCRBY', KEYS[1], ARGV[i], 1)\n"
    "  else out[#out + 1] = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0') end\n"
    "end\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[1])\n"
    "return out\n";

maas_err maas_kv_delivery_counts(maas_kv *kv, const char *topic, int32_t partition,
                                 const int64_t *offsets, const int *add, int n, int *counts,
                                 int ttl_s, char *errstr, size_t errstr_size) {
    if (n <= 0) return MAAS_OK;
    if (n > 4096)
        return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED, "over 4096 offsets");
    char key[512], ttl[24];
    snprintf(key, sizeof(key), "%stries:{%s/%d}", kv->prefix, topic, (int)partition);
    snprintf(ttl, sizeof(ttl), "%d", ttl_s > 0 ? ttl_s : 86400);
    int argc = 5 + 2 * n;
    const char **argv = malloc((size_t)argc * sizeof(*argv));
    char *nums = malloc((size_t)n * 24);
    if (!argv || !nums) {
        free(argv);
        free(nums);
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    }
    argv[0] = "EVAL", argv[1] = delivery_counts_lua, argv[2] = "1", argv[3] = key, argv[4] = ttl;
    for (int i = 0; i < n; i++) {
        snprintf(nums + (size_t)i * 24, 24, "%lld", (long long)offsets[i]);
        argv[5 + 2 * i] = nums + (size_t)i * 24;
        argv[6 + 2 * i] = add[i] ? "1" : "0";
    }
    redisReply *rep = kv_cmd(kv, argc, argv, NULL, errstr, errstr_size);
    free(argv);
    free(nums);
    if (!rep) return kv->last_err;
    maas_err err = MAAS_OK;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != (size_t)n)
        err = maas_errf(errstr, errstr_size, MAAS_ERR_SERVER_ERROR,
                        "redis: unexpected reply to the delivery counts");
    for (int i = 0; !err && i < n; i++)
        counts[i] =
            rep->element[i]->type == REDIS_REPLY_INTEGER ? (int)rep->element[i]->integer : 0;
    freeReplyObject(rep);
    return err;
}

maas_err maas_kv_job_message_put(maas_kv *kv, const char *id, const void *bytes, size_t len,
                                 int ttl_s, char *errstr, size_t errstr_size) {
    maas_err err = maas_name_check("job id", id, errstr, errstr_size);
    if (err) return err;
    char key[256], ttl[24];
    KEY(key, kv, "job:{%s}:message", id);
    snprintf(ttl, sizeof(ttl), "%d", ttl_s > 0 ? ttl_s : MAAS_JOB_TTL_DEFAULT_S);
    const char *argv[] = {"SET", key, bytes, "EX", ttl};
    size_t lens[] = {3, strlen(key), len, 2, strlen(ttl)};
    redisReply *rep = kv_cmd(kv, 5, argv, lens, errstr, errstr_size);
    if (!rep) return kv->last_err;
    freeReplyObject(rep);
    /* the index housekeeping walks (all of it, not the newest N records) */
    char index[128], score[24];
    snprintf(index, sizeof(index), "%sjobs:work", kv->prefix);
    snprintf(score, sizeof(score), "%lld", (long long)maas_wall_ms());
    const char *add[] = {"ZADD", index, "NX", score, id};
    if (!(rep = kv_cmd(kv, 5, add, NULL, errstr, errstr_size))) return kv->last_err;
    freeReplyObject(rep);
    return MAAS_OK;
}

maas_err maas_kv_work_index(maas_kv *kv, unsigned long long *cursor, char ***ids, int *n,
                            char *errstr, size_t errstr_size) {
    *ids = NULL;
    *n = 0;
    char index[128], cur[24];
    snprintf(index, sizeof(index), "%sjobs:work", kv->prefix);
    snprintf(cur, sizeof(cur), "%llu", *cursor);
    const char *argv[] = {"ZSCAN", index, cur, "COUNT", "500"};
    redisReply *rep = kv_cmd(kv, 5, argv, NULL, errstr, errstr_size);
    if (!rep) return kv->last_err;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[1]->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(rep);
        return maas_errf(errstr, errstr_size, MAAS_ERR_SERVER_ERROR, "redis: bad ZSCAN reply");
    }
    *cursor = strtoull(rep->element[0]->str ? rep->element[0]->str : "0", NULL, 10);
    const redisReply *l = rep->element[1];
    int m = (int)l->elements / 2; /* member, score, ... */
    char **v = calloc((size_t)(m ? m : 1), sizeof(*v));
    maas_err err =
        v ? MAAS_OK : maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; !err && i < m; i++) {
        const redisReply *id = l->element[2 * i];
        if (!(v[i] = strndup(id->str ? id->str : "", id->len)))
            err = maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
        else
            *n = i + 1;
    }
    freeReplyObject(rep);
    if (err) {
        for (int i = 0; i < *n; i++) free(v[i]);
        free(v);
        *n = 0;
        return err;
    }
    *ids = v;
    return MAAS_OK;
}

maas_err maas_kv_work_index_remove(maas_kv *kv, const char *id, char *errstr, size_t errstr_size) {
    char index[128];
    snprintf(index, sizeof(index), "%sjobs:work", kv->prefix);
    const char *argv[] = {"ZREM", index, id};
    redisReply *rep = kv_cmd(kv, 3, argv, NULL, errstr, errstr_size);
    if (!rep) return kv->last_err;
    freeReplyObject(rep);
    return MAAS_OK;
}

maas_err maas_kv_job_message_get(maas_kv *kv, const char *id, unsigned char **bytes, size_t *len,
                                 char *errstr, size_t errstr_size) {
    *bytes = NULL;
    *len = 0;
    maas_err err = maas_name_check("job id", id, errstr, errstr_size);
    if (err) return err;
    char key[256], missing[200];
    KEY(key, kv, "job:{%s}:message", id);
    snprintf(missing, sizeof(missing), "job '%s' has no stored message", id);
    return get_blob(kv, key, missing, bytes, len, errstr, errstr_size);
}

static const char version_delete_lua[] =
    "for _, v in ipairs(redis.call('HVALS', KEYS[2])) do\n"
    "  if v == ARGV[1] then return -1 end\n"
    "end\n"
    "if redis.call('HEXISTS', KEYS[1], ARGV[1] .. '.h5') == 0 then return 0 end\n"
    "local f = {}\n"
    "for _, k in ipairs({'h5', 'sha256', 'size', 'parent', 'job', 'created_ms', 'metrics', "
    "'config'}) do\n"
    "  f[#f + 1] = ARGV[1] .. '.' .. k\n"
    "end\n"
    "redis.call('HDEL', KEYS[1], unpack(f))\n"
    "return 1\n";

maas_err maas_kv_version_delete(maas_kv *kv, const char *model, int version, char *errstr,
                                size_t errstr_size) {
    maas_err err = maas_name_check("model name", model, errstr, errstr_size);
    if (err) return err;
    char kver[256], kal[256], v[16];
    KEY(kver, kv, "model:{%s}:versions", model);
    KEY(kal, kv, "model:{%s}:aliases", model);
    snprintf(v, sizeof(v), "%d", version);
    const char *argv[] = {"EVAL", version_delete_lua, "2", kver, kal, v};
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
