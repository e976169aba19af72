/*
 * kv_internal.h - what the Redis adapter's files share (kv_redis.c: the
 * connection, job records, the registry, the fleet; kv_auth.c: tenants and API
 * keys). Only these files include hiredis.h.
 */
#ifndef MAAS_KV_INTERNAL_H
#define MAAS_KV_INTERNAL_H

#include "maas/base.h"
#include "maas/kv.h"

#include <hiredis/hiredis.h>

/* One answer of maas_kv_version_resolve, kept while Redis does not say its key changed. */
typedef struct resolved {
    char key[200];               /* the hash it came from: aliases, or versions for a number */
    char ref[MAAS_NAME_MAX + 1]; /* the alias or version asked for */
    int version;
} resolved;

#define RESOLVED_MAX 64

struct maas_kv {
    redisContext *ctx;
    redisContext *sub; /* a second connection, opened by the first wait: SUBSCRIBE mode */
    /* maas_kv_cache_versions: resolve answers cached, kept true by Redis's client-side
     * caching (CLIENT TRACKING ... REDIRECT to inval, subscribed to __redis__:invalidate) */
    int cache_versions;
    int64_t track_retry_ms; /* when to try setting it up again after a failure */
    redisContext *inval;
    int n_resolved;
    resolved resolved[RESOLVED_MAX];
    char host[256];
    int port;
    int db;
    char user[128];
    char password[256];
    char base[64];    /* redis.prefix: the fleet's keys (workers, tenants, API keys) */
    char prefix[100]; /* base, or base "t:" TENANT ":" in a tenant's scope (maas_kv_scope) */
    char tenant[MAAS_TENANT_MAX + 1];
    int timeout_ms;
    char transition_sha[41]; /* SCRIPT LOAD of job_transition_lua on this connection */
    maas_err last_err;       /* why the last cmd() returned NULL */
    int last_noscript;       /* ... and it was NOSCRIPT (the script cache was flushed) */
    /* The transition batch sent by maas_kv_job_transition_send: its replies come first on ctx,
     * so any other command reads them (into results) before it runs. */
    struct {
        int n;      /* transitions sent; 0: none in flight */
        int unread; /* replies still on the wire */
        maas_err *results;
        maas_err err; /* Redis itself failed while they were read */
        char errstr[MAAS_ERRSTR_SIZE];
    } flight;
};

/* A small argv builder for EVAL and HSET calls. */
typedef struct argv_buf {
    int n;
    const char *v[48];
    size_t len[48];
    char num[16][24];
    int n_num;
} argv_buf;

static inline void arg(argv_buf *a, const void *p, size_t len) {
    MAAS_CHECK(a->n < (int)MAAS_ARRAY_LEN(a->v)); /* sized for every call: a miss is a bug */
    a->v[a->n] = p;
    a->len[a->n++] = len;
}
static inline void arg_s(argv_buf *a, const char *s) {
    arg(a, s ? s : "", s ? strlen(s) : 0);
}
static inline void arg_i(argv_buf *a, long long v) {
    MAAS_CHECK(a->n_num < (int)MAAS_ARRAY_LEN(a->num));
    /* decimal by hand: several per job record, and snprintf showed in the worker's profile */
    char tmp[24], *b = a->num[a->n_num++];
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    int n = 0;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t len = 0;
    if (v < 0) b[len++] = '-';
    while (n) b[len++] = tmp[--n];
    arg(a, b, len);
}

#define KEY(buf, kv, fmt, ...) snprintf(buf, sizeof(buf), "%s" fmt, (kv)->prefix, __VA_ARGS__)

/* The first size-1 bytes of a string reply, NUL-terminated. */
static inline void kv_copy_field(char *dst, size_t size, const redisReply *v) {
    size_t n = v->len < size - 1 ? v->len : size - 1;
    memcpy(dst, v->str, n);
    dst[n] = '\0';
}

/*
 * Runs a command (binary-safe argv; lens NULL: C strings), reconnecting once if
 * the connection is gone. Returns the reply (free with freeReplyObject) or NULL
 * with errstr and kv->last_err set; an error reply is such a NULL.
 */
redisReply *kv_cmd(maas_kv *kv, int argc, const char **argv, const size_t *lens, char *errstr,
                   size_t errstr_size);

/* The members of set prefix+name, sorted: *out holds n malloc'ed strings (free each, then it). */
maas_err kv_smembers(maas_kv *kv, const char *name, char ***out, int *n, char *errstr,
                     size_t errstr_size);

/* strcmp for qsort over char *. */
int kv_cmp_str(const void *a, const void *b);

#endif
