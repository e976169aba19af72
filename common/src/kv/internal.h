/*
 * internal.h - what the Redis adapter's files share. The adapter is this folder, and only
 * its files include hiredis.h:
 *   conn.c      the connection: URL and settings, commands, reconnection, scripts
 *   jobs.c      job records, state transitions (one and pipelined), waits, listings,
 *               stored job messages and delivery counts
 *   record.c    a job record's JSON: written whole (submission, a worker's first write), read
 *   registry.c  models, versions, aliases
 *   cache.c     client-side caching of version resolution (CLIENT TRACKING)
 *   datasets.c  datasets
 *   fleet.c     workers' announcements
 *   sweeps.c    hyperparameter sweeps
 *   auth.c      tenants, API keys, tenants' Redis users
 *   lua/        every Lua script, embedded at build time (kv_scripts.h, by
 *               cmake/embed_lua.cmake) and run by EVALSHA with named arguments
 * Key layout: schemas/redis-keys.md.
 */
#ifndef MAAS_KV_INTERNAL_H
#define MAAS_KV_INTERNAL_H

#include "maas/base.h"
#include "maas/kv.h"
#include "maas/strbuf.h"

#include <hiredis/hiredis.h>

#include "kv_scripts.h"

/* One answer of maas_kv_version_resolve, kept while Redis does not say its key changed. */
typedef struct resolved {
    char key[200];               /* the hash it came from: aliases, or versions for a number */
    char ref[MAAS_NAME_MAX + 1]; /* the alias or version asked for */
    int version;
} resolved;

#define RESOLVED_MAX 64

/* One Redis server: the only one, or a node of a Redis Cluster. */
typedef struct kv_node {
    char host[256];
    int port;
    int master;              /* cluster: serves slots, per the last slot map */
    int replica;             /* cluster: a replica, per the last slot map */
    redisContext *ctx;       /* commands; NULL until used, and after a failure */
    int scripts_loaded;      /* every kv_scripts[] loaded on ctx */
    redisContext *inval;     /* cache.c: the invalidation connection ctx's tracking redirects to */
    int64_t track_retry_ms;  /* when to try tracking again after a failure */
    int64_t wait_skip_until; /* cluster: no replica answered WAIT; writes go on without it */
} kv_node;

#define KV_NODES_MAX 32
#define KV_SLOTS 16384
#define KV_NO_NODE 0xff

struct maas_kv {
    /* redis+cluster://: commands go to the master of their key's slot (slot_node), the map
     * read with CLUSTER SLOTS and refreshed on MOVED or a lost node; else nodes[0] only */
    int cluster;
    int n_nodes;
    int n_seeds; /* nodes[0..n_seeds): the URL's, tried first for the map */
    kv_node nodes[KV_NODES_MAX];
    unsigned char *slot_node; /* cluster: KV_SLOTS node indexes, KV_NO_NODE when unknown */
    int map_stale;            /* a MOVED or a lost node: read the map before the next route */
    redisContext *sub;        /* a second connection, opened by the first wait: SUBSCRIBE mode */
    int sub_node;             /* cluster: the node sub is connected to (SSUBSCRIBE: the slot's) */
    /* maas_kv_cache_versions: resolve answers cached, kept true by Redis's client-side
     * caching (per node: CLIENT TRACKING ... REDIRECT to the node's inval connection,
     * subscribed to __redis__:invalidate) */
    int cache_versions;
    int n_resolved;
    resolved resolved[RESOLVED_MAX];
    int db;
    char user[128];
    char password[256];
    char base[64];    /* redis.prefix: the fleet's keys (workers, tenants, API keys) */
    char prefix[100]; /* base, or base "t:" TENANT ":" in a tenant's scope (maas_kv_scope) */
    char tenant[MAAS_TENANT_MAX + 1];
    int timeout_ms;
    /* cluster: a write is answered once wait_replicas replicas have it (WAIT), or after
     * wait_ms when they do not (redis.wait_replicas, redis.wait_ms) */
    int wait_replicas;
    int wait_ms;
    maas_err last_err; /* why the last cmd() returned NULL */
    /* The transition batch sent by maas_kv_job_transition_send: its replies come first on
     * the nodes' connections, so any other command reads them (into results) before it runs. */
    struct {
        int n;                            /* transitions sent; 0: none in flight */
        int unread;                       /* nodes whose reply is still on the wire */
        unsigned char sent[KV_NODES_MAX]; /* a script call for its jobs went to that node */
        maas_err *results;
        unsigned char *node_of;             /* the node each was sent to */
        unsigned char waited[KV_NODES_MAX]; /* a WAIT follows that node's transitions */
        maas_err err;                       /* Redis itself failed while they were read */
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
/* v in decimal into b (24 bytes, NUL-terminated); returns its length. By hand
 * (maas_fmt_i64): several per job record, and snprintf showed in the worker's profile. */
static inline size_t kv_fmt_i64(char *b, long long v) {
    return (size_t)maas_fmt_i64(b, v);
}
static inline void arg_i(argv_buf *a, long long v) {
    MAAS_CHECK(a->n_num < (int)MAAS_ARRAY_LEN(a->num));
    char *b = a->num[a->n_num++];
    arg(a, b, kv_fmt_i64(b, v));
}

#define KEY(buf, kv, fmt, ...) snprintf(buf, sizeof(buf), "%s" fmt, (kv)->prefix, __VA_ARGS__)

/* A job's record key, KEY(buf, kv, "job:{%s}", id) without printf (a worker writes one per
 * job): its length; truncated as snprintf would (ids are checked names: they fit). */
static inline size_t kv_job_key(char *buf, size_t size, const maas_kv *kv, const char *id) {
    size_t at = 0;
    const char *parts[] = {kv->prefix, "job:{", id, "}"};
    for (int i = 0; i < 4; i++) {
        size_t n = strlen(parts[i]);
        if (n > size - 1 - at) n = size - 1 - at;
        memcpy(buf + at, parts[i], n);
        at += n;
    }
    buf[at] = '\0';
    return at;
}

/* The first size-1 bytes of a string reply, NUL-terminated. */
static inline void kv_copy_field(char *dst, size_t size, const redisReply *v) {
    size_t n = v->len < size - 1 ? v->len : size - 1;
    memcpy(dst, v->str, n);
    dst[n] = '\0';
}

/* The first bytes of a string reply as a number (0 when it is not one). */
static inline int64_t kv_field_i64(const redisReply *v) {
    char b[32];
    kv_copy_field(b, sizeof(b), v);
    return strtoll(b, NULL, 10);
}

/* Starts an argv that runs script s on nkeys keys (EVALSHA sha nkeys); keys and
 * arguments follow. */
static inline void arg_script(argv_buf *a, const kv_script *s, int nkeys) {
    arg_s(a, "EVALSHA");
    arg_s(a, s->sha);
    arg_i(a, nkeys);
}

/* The script as kv runs it: on a cluster, the twin that publishes with SPUBLISH (a classic
 * PUBLISH goes to every node over the cluster bus: +15 us of CPU per job on each master and
 * +10 on each replica, measured with 3 masters + 3 replicas). */
static inline const kv_script *kv_script_for(const maas_kv *kv, const kv_script *s) {
    return kv->cluster && s->sharded ? s->sharded : s;
}

/*
 * Runs a command (binary-safe argv; lens NULL: C strings), reconnecting once if
 * the connection is gone, loading the scripts again if Redis lost them (NOSCRIPT).
 * Returns the reply (free with freeReplyObject) or NULL with errstr and
 * kv->last_err set; an error reply is such a NULL.
 */
redisReply *kv_cmd(maas_kv *kv, int argc, const char **argv, const size_t *lens, char *errstr,
                   size_t errstr_size);

/* What an error reply means: UNAVAILABLE for the transient ones (a restart, a failover,
 * a busy script, NOSCRIPT...), SERVER_ERROR for the rest. */
maas_err kv_server_err(const char *msg);

/* Opens *out (closing what was there) to node n: connect, AUTH, SELECT, with kv's
 * settings. */
maas_err kv_connect_ctx(const maas_kv *kv, const kv_node *n, redisContext **out, char *errstr,
                        size_t errstr_size);

/* A key's Redis Cluster slot (0..KV_SLOTS-1): the CRC16 of its hash tag (the text between its
 * first '{' and the next '}', when not empty), else of the whole key. */
unsigned kv_keyslot(const char *key, size_t len);

/* The node that serves key (cluster: the master of its slot, the map read if need be), or
 * -1 with errstr and kv->last_err. */
int kv_route(maas_kv *kv, const char *key, size_t len, char *errstr, size_t errstr_size);

/* Makes node i's connection usable: connected, the scripts loaded, tracking set up when
 * caching. */
maas_err kv_node_ready(maas_kv *kv, int i, char *errstr, size_t errstr_size);

/* Closes node i's connection after a failure (its tracking with it); in a cluster, the
 * map is read again before the next route. */
void kv_node_drop(maas_kv *kv, int i);

/* Runs a command on node i itself (no redirects followed): for key-less commands that
 * concern one node (SCAN, CLIENT). Returns what kv_cmd returns. */
redisReply *kv_cmd_node(maas_kv *kv, int i, int argc, const char **argv, const size_t *lens,
                        char *errstr, size_t errstr_size);

/* The nodes a command for "every server" goes to: *n indexes into out (size
 * KV_NODES_MAX); masters only, or every node (replicas too: a promoted replica must have
 * what its master had, like ACL users). Single Redis: node 0. */
maas_err kv_nodes(maas_kv *kv, int masters_only, int *out, int *n, char *errstr,
                  size_t errstr_size);

/* Appends a WAIT for the writes just appended on node i when that is asked (a cluster's
 * redis.wait_replicas): returns 1 when one was appended (its reply to be read by
 * kv_wait_read), 0 when none is due. */
int kv_wait_append(maas_kv *kv, int i);

/* Reads the reply of the WAIT kv_wait_append appended: MAAS_OK, or UNAVAILABLE (with errstr)
 * when the connection failed. Too few replicas is no error: the node is let write without
 * waiting for 5 s (Redis Cluster's own asynchronous replication), and tried again after. */
maas_err kv_wait_read(maas_kv *kv, int i, char *errstr, size_t errstr_size);

/* A key-less command run on every node (kv_nodes(all)): the first error, else OK. */
maas_err kv_cmd_all(maas_kv *kv, int argc, const char **argv, char *errstr, size_t errstr_size);

/* GET key into *bytes (malloc'ed; free it); UNKNOWN_NAME with `missing` as the message
 * when absent. */
maas_err kv_get_blob(maas_kv *kv, const char *key, const char *missing, unsigned char **bytes,
                     size_t *len, char *errstr, size_t errstr_size);

/* The next reply on a subscribed connection, waiting up to timeout_ms (0: only what has
 * arrived): 1 and *out (free it), 0 none in time (or a signal), -1 the connection failed. */
int kv_sub_next(redisContext *c, int timeout_ms, redisReply **out);

/* A pub/sub push of the given kind ("message", "unsubscribe", ...). */
int kv_is_push(const redisReply *r, const char *kind);

/* jobs.c: reads the replies of the transition batch in flight (kv->flight) before any
 * other command uses the connection. */
void kv_flight_read(maas_kv *kv);

/* cache.c: sets up client-side caching on node i's connection (best effort); drops it. */
void kv_track_on(maas_kv *kv, int i);
void kv_track_off(maas_kv *kv, int i);

/* The members of set prefix+name, sorted: *out holds n malloc'ed strings (free each, then it). */
maas_err kv_smembers(maas_kv *kv, const char *name, char ***out, int *n, char *errstr,
                     size_t errstr_size);

/* strcmp for qsort over char *. */
int kv_cmp_str(const void *a, const void *b);

/* record.c - a job record is one JSON object in a string (schemas/redis-keys.md). */
/* Opens b with a new record's fields (the caller adds more and the closing brace). */
void kv_record_new(maas_strbuf *b, const maas_job_record *r, const char *state, int attempts,
                   int64_t created_ms, int ttl_s);
/* The whole record of lua/job_transition.lua's hot path for job id's update u (created,
 * succeeded, its result and cost, ttl_s > 0) into b: 1; 0 when u is not that (or out of
 * memory), b then unspecified. */
int kv_record_hot(maas_strbuf *b, const char *id, const maas_job_update *u, int64_t now);
/* Appends base64 of n bytes. */
void kv_b64_put(maas_strbuf *b, const unsigned char *p, size_t n);
/* A stored record's JSON -> r (r->id set by the caller; r->progress and r->result
 * malloc'ed). BAD_FORMAT when it is not a record. */
maas_err kv_record_parse(const char *text, size_t len, maas_job_record *r, char *errstr,
                         size_t errstr_size);

#endif
