/*
 * The Redis adapter's connection layer: the URL and settings, connections and their
 * reconnection, commands and where they go, the scripts (internal.h says what each file of
 * the adapter holds).
 *
 * Redis Cluster (redis+cluster://): hiredis 0.14 has no cluster support, so it is here. The
 * slot map comes from CLUSTER SLOTS; a command goes to the master of its key's slot (CRC16 of
 * the key's hash tag), MOVED updates the map and is followed, ASK is followed once with
 * ASKING, TRYAGAIN waits a little, and a lost node or CLUSTERDOWN reads the map again; the
 * caller sees UNAVAILABLE (retriable) when a failover takes longer than a command may. Every
 * script touches the keys of one slot, but a batch of job transitions (one call per node,
 * its keys undeclared: jobs.c, schemas/redis-keys.md). Nothing reads from replicas.
 */
#include "maas/base.h"
#include "maas/clock.h"
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <time.h>

#include <sys/time.h>

/* host[:port] at p (n bytes) into node; port 6379 when absent. */
static maas_err parse_hostport(const char *url, const char *p, size_t n, kv_node *node,
                               char *errstr, size_t errstr_size) {
    const char *colon = memchr(p, ':', n);
    size_t hlen = colon ? (size_t)(colon - p) : n;
    if (hlen >= sizeof(node->host))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "redis URL '%s': host too long", url);
    snprintf(node->host, sizeof(node->host), "%.*s", (int)hlen, p);
    if (!hlen) snprintf(node->host, sizeof(node->host), "127.0.0.1");
    node->port = 6379;
    if (colon) {
        char buf[16], *end;
        size_t plen = n - hlen - 1;
        if (plen == 0 || plen >= sizeof(buf))
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "redis URL '%s': bad port", url);
        memcpy(buf, colon + 1, plen);
        buf[plen] = '\0';
        long port = strtol(buf, &end, 10);
        if (*end || port < 1 || port > 65535)
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "redis URL '%s': bad port", url);
        node->port = (int)port;
    }
    return MAAS_OK;
}

/*
 * redis://[[user:]password@]host[:port][/db] (one Redis), or
 * redis+cluster://[[user:]password@]host:port[,host:port...] (a Redis Cluster: any of its
 * nodes, the rest found from them; db 0 only, as Cluster has no other).
 */
static maas_err parse_url(maas_kv *kv, const char *url, char *errstr, size_t errstr_size) {
    kv->n_nodes = kv->n_seeds = 1;
    snprintf(kv->nodes[0].host, sizeof(kv->nodes[0].host), "127.0.0.1");
    kv->nodes[0].port = 6379;
    if (!url || !*url) return MAAS_OK;
    const char *p = url;
    if (!strncmp(p, "redis://", 8))
        p += 8;
    else if (!strncmp(p, "redis+cluster://", 16)) {
        p += 16;
        kv->cluster = 1;
    } else if (strstr(p, "://"))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "redis URL '%s': only redis:// and redis+cluster:// are supported "
                         "(hiredis 0.14 has no TLS)",
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
    size_t hosts = slash ? (size_t)(slash - p) : strlen(p);
    if (kv->cluster) {
        if (slash && slash[1] && strcmp(slash, "/0"))
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "redis URL '%s': a Redis Cluster has db 0 only", url);
        kv->n_nodes = 0;
        for (const char *q = p; q < p + hosts;) {
            const char *comma = memchr(q, ',', (size_t)(p + hosts - q));
            size_t n = comma ? (size_t)(comma - q) : (size_t)(p + hosts - q);
            if (kv->n_nodes == 8)
                return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                                 "redis URL '%s': at most 8 seed nodes", url);
            maas_err err = parse_hostport(url, q, n, &kv->nodes[kv->n_nodes], errstr, errstr_size);
            if (err) return err;
            kv->n_nodes++;
            q += n + (comma ? 1 : 0);
        }
        if (!kv->n_nodes)
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "redis URL '%s': no node", url);
        kv->n_seeds = kv->n_nodes;
        return MAAS_OK;
    }
    if (memchr(p, ',', hosts))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "redis URL '%s': several hosts are a Redis Cluster's: redis+cluster://",
                         url);
    if (hosts) {
        maas_err err = parse_hostport(url, p, hosts, &kv->nodes[0], errstr, errstr_size);
        if (err) return err;
    }
    if (slash && slash[1]) {
        char *end;
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
maas_err kv_server_err(const char *msg) {
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
                  r && r->type == REDIS_REPLY_ERROR ? kv_server_err(r->str) : MAAS_ERR_UNAVAILABLE,
                  "redis %s: %s", what, r && r->str ? r->str : "error");
    if (r) freeReplyObject(r);
    return e;
}

maas_err kv_connect_ctx(const maas_kv *kv, const kv_node *n, redisContext **out, char *errstr,
                        size_t errstr_size) {
    if (*out) redisFree(*out);
    struct timeval tv = {kv->timeout_ms / 1000, (kv->timeout_ms % 1000) * 1000};
    redisContext *c = *out = redisConnectWithTimeout(n->host, n->port, tv);
    if (!c || c->err) {
        maas_err e = maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE,
                               "cannot connect to redis at %s:%d: %s", n->host, n->port,
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

/*
 * Loads every script on node i (pipelined, one round trip), checking Redis hashes each as
 * the build did: EVALSHA then names them without sending their text.
 */
static maas_err load_scripts(maas_kv *kv, int i, char *errstr, size_t errstr_size) {
    redisContext *c = kv->nodes[i].ctx;
    int n = 0;
    for (; kv_scripts[n]; n++)
        if (redisAppendCommand(c, "SCRIPT LOAD %b", kv_scripts[n]->text, kv_scripts[n]->len) !=
            REDIS_OK)
            return maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE, "redis: %s", c->errstr);
    maas_err err = MAAS_OK;
    for (int k = 0; k < n; k++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r)
            return maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE, "redis SCRIPT LOAD: %s",
                             c->errstr);
        if (!err && r->type == REDIS_REPLY_ERROR)
            err = maas_errf(errstr, errstr_size, kv_server_err(r->str), "redis SCRIPT LOAD %s: %s",
                            kv_scripts[k]->name, r->str);
        else if (!err && (r->type != REDIS_REPLY_STRING || strcmp(r->str, kv_scripts[k]->sha)))
            err = maas_errf(errstr, errstr_size, MAAS_ERR_SERVER_ERROR,
                            "redis SCRIPT LOAD %s: hashed as %s, built as %s", kv_scripts[k]->name,
                            r->str ? r->str : "?", kv_scripts[k]->sha);
        freeReplyObject(r);
    }
    kv->nodes[i].scripts_loaded = !err;
    return err;
}

void kv_node_drop(maas_kv *kv, int i) {
    kv_node *n = &kv->nodes[i];
    if (n->ctx) redisFree(n->ctx);
    n->ctx = NULL;
    n->scripts_loaded = 0;
    kv_track_off(kv, i); /* tracking belonged to the connection */
    if (kv->cluster) kv->map_stale = 1;
}

maas_err kv_node_ready(maas_kv *kv, int i, char *errstr, size_t errstr_size) {
    kv_node *n = &kv->nodes[i];
    maas_err err = MAAS_OK;
    if (!n->ctx) {
        n->scripts_loaded = 0;
        if ((err = kv_connect_ctx(kv, n, &n->ctx, errstr, errstr_size))) {
            /* a node that refuses may be a dead master whose replica took over since the map
             * was read: read it again before the next route (a worker's result connections
             * kept the dead node's address for minutes: the failover test, 1 run in 8) */
            if (kv->cluster) kv->map_stale = 1;
            return err;
        }
    }
    if (!n->scripts_loaded && (err = load_scripts(kv, i, errstr, errstr_size))) {
        kv_node_drop(kv, i);
        return err;
    }
    if (kv->cache_versions && !n->inval && maas_wall_ms() >= n->track_retry_ms) kv_track_on(kv, i);
    return MAAS_OK;
}

/* ---- the cluster's slot map ---- */

/* CRC-16/XMODEM (polynomial 0x1021, initial 0), Redis Cluster's key hash, four bits at a step:
 * entry i is the CRC of the nibble i (i << 12 shifted through four steps of the polynomial),
 * so a 30-byte hash tag is 60 lookups, not 240 bit steps (a worker routes every job). */
static const uint16_t crc16_nibble[16] = {0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50a5,
                                          0x60c6, 0x70e7, 0x8108, 0x9129, 0xa14a, 0xb16b,
                                          0xc18c, 0xd1ad, 0xe1ce, 0xf1ef};

static unsigned crc16(const char *b, size_t n) {
    unsigned crc = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned c = (unsigned char)b[i];
        crc = ((crc << 4) & 0xffff) ^ crc16_nibble[(crc >> 12) ^ (c >> 4)];
        crc = ((crc << 4) & 0xffff) ^ crc16_nibble[(crc >> 12) ^ (c & 15)];
    }
    return crc;
}

unsigned kv_keyslot(const char *k, size_t n) {
    size_t s = 0, e;
    while (s < n && k[s] != '{') s++;
    if (s < n) {
        for (e = s + 1; e < n && k[e] != '}'; e++) continue;
        if (e < n && e > s + 1) return crc16(k + s + 1, e - s - 1) & (KV_SLOTS - 1);
    }
    return crc16(k, n) & (KV_SLOTS - 1);
}

/* The node at host:port, added when new; -1 when the table is full. */
static int node_at(maas_kv *kv, const char *host, size_t hlen, int port) {
    for (int i = 0; i < kv->n_nodes; i++)
        if (kv->nodes[i].port == port && strlen(kv->nodes[i].host) == hlen &&
            !memcmp(kv->nodes[i].host, host, hlen))
            return i;
    if (kv->n_nodes == KV_NODES_MAX || hlen >= sizeof(kv->nodes[0].host)) return -1;
    kv_node *n = &kv->nodes[kv->n_nodes];
    memset(n, 0, sizeof(*n));
    memcpy(n->host, host, hlen);
    n->host[hlen] = '\0';
    n->port = port;
    return kv->n_nodes++;
}

/* One node of a CLUSTER SLOTS entry ([ip, port, id, ...]); an empty ip is the asked node's. */
static int slots_node(maas_kv *kv, const redisReply *e, int asked) {
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_INTEGER)
        return -1;
    const char *host = e->element[0]->str;
    size_t hlen = e->element[0]->len;
    if (!hlen || !strcmp(host, "?")) host = kv->nodes[asked].host, hlen = strlen(host);
    return node_at(kv, host, hlen, (int)e->element[1]->integer);
}

/* Reads the slot map from the first node that answers: the URL's first, then the others. */
static maas_err map_refresh(maas_kv *kv, char *errstr, size_t errstr_size) {
    maas_err err = maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE, "no redis cluster node");
    int n0 = kv->n_nodes;
    for (int i = 0; i < n0; i++) {
        kv_node *n = &kv->nodes[i];
        if (!n->ctx && kv_connect_ctx(kv, n, &n->ctx, errstr, errstr_size)) {
            err = MAAS_ERR_UNAVAILABLE;
            continue;
        }
        redisReply *r = redisCommand(n->ctx, "CLUSTER SLOTS");
        if (!r) {
            err = maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE, "redis CLUSTER SLOTS: %s",
                            n->ctx->errstr);
            redisFree(n->ctx);
            n->ctx = NULL;
            n->scripts_loaded = 0;
            kv_track_off(kv, i);
            continue;
        }
        if (r->type != REDIS_REPLY_ARRAY || !r->elements) {
            err = maas_errf(errstr, errstr_size,
                            r->type == REDIS_REPLY_ERROR ? kv_server_err(r->str)
                                                         : MAAS_ERR_UNAVAILABLE,
                            "redis at %s:%d gave no slot map (%s): is it a Redis Cluster node?",
                            n->host, n->port, r->str ? r->str : "no slots");
            freeReplyObject(r);
            continue;
        }
        memset(kv->slot_node, KV_NO_NODE, KV_SLOTS);
        for (int k = 0; k < kv->n_nodes; k++) kv->nodes[k].master = kv->nodes[k].replica = 0;
        for (size_t k = 0; k < r->elements; k++) {
            const redisReply *e = r->element[k];
            if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
                e->element[0]->type != REDIS_REPLY_INTEGER ||
                e->element[1]->type != REDIS_REPLY_INTEGER)
                continue;
            long long lo = e->element[0]->integer, hi = e->element[1]->integer;
            int m = slots_node(kv, e->element[2], i);
            if (m < 0 || lo < 0 || hi >= KV_SLOTS || lo > hi) continue;
            kv->nodes[m].master = 1;
            memset(kv->slot_node + lo, m, (size_t)(hi - lo + 1));
            for (size_t x = 3; x < e->elements; x++) {
                int rep = slots_node(kv, e->element[x], i);
                if (rep >= 0) kv->nodes[rep].replica = 1;
            }
        }
        freeReplyObject(r);
        kv->map_stale = 0;
        return MAAS_OK;
    }
    return err;
}

int kv_route(maas_kv *kv, const char *key, size_t len, char *errstr, size_t errstr_size) {
    if (!kv->cluster) return 0;
    if (kv->map_stale && (kv->last_err = map_refresh(kv, errstr, errstr_size))) return -1;
    unsigned slot = key ? kv_keyslot(key, len) : 0;
    int i = kv->slot_node[slot];
    if (!key) /* a key-less command: any master */
        for (int k = 0; k < kv->n_nodes && (i == KV_NO_NODE || !kv->nodes[i].master); k++) i = k;
    if (i == KV_NO_NODE) {
        kv->map_stale = 1;
        kv->last_err = maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE,
                                 "redis cluster: no master serves slot %u (a failover?)", slot);
        return -1;
    }
    return i;
}

/* The key a command acts on (its slot decides the node): EVALSHA/EVAL's first key, none for
 * the key-less commands maas sends, else the first argument. */
static const char *key_of(int argc, const char **argv, const size_t *lens, size_t *len) {
    const char *c = argv[0];
    int k = 1;
    if (!strcasecmp(c, "EVALSHA") || !strcasecmp(c, "EVAL"))
        k = argc > 3 && strcmp(argv[2], "0") ? 3 : -1;
    else if (!strcasecmp(c, "PING") || !strcasecmp(c, "SCRIPT") || !strcasecmp(c, "CLIENT") ||
             !strcasecmp(c, "ACL") || !strcasecmp(c, "SCAN") || !strcasecmp(c, "INFO") ||
             !strcasecmp(c, "CLUSTER"))
        k = -1;
    if (k < 0 || k >= argc) return NULL;
    *len = lens ? lens[k] : strlen(argv[k]);
    return argv[k];
}

/* A MOVED or ASK error's target: its slot and node (added to the table when new). */
static int redirect_target(maas_kv *kv, const char *msg, unsigned *slot) {
    const char *sp = strchr(msg, ' ');
    if (!sp) return -1;
    char *end;
    unsigned long s = strtoul(sp + 1, &end, 10);
    if (*end != ' ' || s >= KV_SLOTS) return -1;
    const char *hp = end + 1, *colon = strrchr(hp, ':');
    if (!colon) return -1;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 1 || port > 65535) return -1;
    *slot = (unsigned)s;
    return node_at(kv, hp, (size_t)(colon - hp), (int)port);
}

static int starts(const char *s, const char *word) {
    size_t n = strlen(word);
    return s && !strncmp(s, word, n) && (s[n] == ' ' || s[n] == '\0');
}

/* The commands maas sends that write no key (reads, and the per-server ones): no WAIT. */
static int is_read(const char *c) {
    static const char *const reads[] = {"GET",      "HGET",      "HGETALL", "HMGET",     "HEXISTS",
                                        "SMEMBERS", "SISMEMBER", "ZSCAN",   "SCAN",      "PING",
                                        "CLUSTER",  "INFO",      "EXISTS",  "ZREVRANGE", "ACL",
                                        "CLIENT",   "SCRIPT"};
    for (size_t k = 0; k < MAAS_ARRAY_LEN(reads); k++)
        if (!strcasecmp(c, reads[k])) return 1;
    return 0;
}

int kv_wait_append(maas_kv *kv, int i) {
    kv_node *n = &kv->nodes[i];
    if (kv->wait_replicas <= 0 || !n->ctx || (kv->cluster && !n->master) ||
        maas_wall_ms() < n->wait_skip_until)
        return 0; /* one Redis asks for none by default; a replica refuses WAIT */
    return redisAppendCommand(n->ctx, "WAIT %d %d", kv->wait_replicas, kv->wait_ms) == REDIS_OK;
}

maas_err kv_wait_read(maas_kv *kv, int i, char *errstr, size_t errstr_size) {
    kv_node *n = &kv->nodes[i];
    redisReply *r = NULL;
    if (!n->ctx || redisGetReply(n->ctx, (void **)&r) != REDIS_OK || !r)
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE, "redis WAIT: %s",
                         n->ctx ? n->ctx->errstr : "connection lost");
    if (r->type == REDIS_REPLY_INTEGER && r->integer < kv->wait_replicas)
        n->wait_skip_until = maas_wall_ms() + 5000;
    freeReplyObject(r);
    return MAAS_OK;
}

/*
 * Runs argv on node i, and in a cluster follows where Redis sends it: at most 5 redirects,
 * a lost node or CLUSTERDOWN answered by reading the map again. follow 0: node i only.
 */
static redisReply *run(maas_kv *kv, int i, int follow, int argc, const char **argv,
                       const size_t *lens, char *errstr, size_t errstr_size) {
    int asking = 0, noscript = 0, lost = 0;
    for (int hop = 0; hop < 8; hop++) {
        if ((kv->last_err = kv_node_ready(kv, i, errstr, errstr_size))) {
            if (!kv->cluster || !follow || lost++) return NULL;
            kv_node_drop(kv, i); /* refused: a dead master; the map says who took over */
            size_t len = 0;
            const char *key = key_of(argc, argv, lens, &len);
            if ((i = kv_route(kv, key, len, errstr, errstr_size)) < 0) return NULL;
            continue;
        }
        redisContext *c = kv->nodes[i].ctx;
        redisReply *r = NULL;
        if (asking) {
            redisReply *ok = NULL;
            if (redisAppendCommand(c, "ASKING") == REDIS_OK &&
                redisAppendCommandArgv(c, argc, argv, lens) == REDIS_OK &&
                redisGetReply(c, (void **)&ok) == REDIS_OK)
                redisGetReply(c, (void **)&r);
            if (ok) freeReplyObject(ok);
            asking = 0;
        } else if (is_read(argv[0])) {
            r = redisCommandArgv(c, argc, argv, lens);
        } else if (redisAppendCommandArgv(c, argc, argv, lens) == REDIS_OK) {
            /* a write, then WAIT in the same round trip when asked: answered once a replica
             * has it, so a failover right after cannot lose what the caller was told */
            int waited = kv_wait_append(kv, i);
            if (redisGetReply(c, (void **)&r) != REDIS_OK) r = NULL;
            if (r && waited && kv_wait_read(kv, i, errstr, errstr_size)) {
                freeReplyObject(r);
                r = NULL;
            }
        }
        if (!r) {
            kv->last_err = maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE, "redis %s: %s",
                                     argv[0], c->errstr);
            kv_node_drop(kv, i); /* the context is unusable after an I/O error */
            if (lost++) return NULL;
            if (kv->cluster && follow) {
                size_t len = 0;
                const char *key = key_of(argc, argv, lens, &len);
                if ((i = kv_route(kv, key, len, errstr, errstr_size)) < 0) return NULL;
            }
            continue; /* once: a restarted Redis, an idle connection closed */
        }
        if (r->type != REDIS_REPLY_ERROR) return r;
        unsigned slot;
        int to;
        if (starts(r->str, "NOSCRIPT") && !noscript++) {
            /* SCRIPT FLUSH, or a restart we did not see: load them again */
            kv->nodes[i].scripts_loaded = 0;
            freeReplyObject(r);
            continue;
        }
        if (kv->cluster && follow && (starts(r->str, "MOVED") || starts(r->str, "ASK")) &&
            (to = redirect_target(kv, r->str, &slot)) >= 0) {
            asking = starts(r->str, "ASK");
            if (!asking) {
                kv->slot_node[slot] = (unsigned char)to;
                kv->map_stale = 1; /* more slots may have moved: read the map at the next route */
            }
            i = to;
            freeReplyObject(r);
            continue;
        }
        if (kv->cluster && follow && starts(r->str, "TRYAGAIN")) { /* a slot mid-migration */
            freeReplyObject(r);
            struct timespec ts = {0, 20 * 1000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        if (kv->cluster && starts(r->str, "CLUSTERDOWN")) kv->map_stale = 1;
        if (!kv->cluster && starts(r->str, "MOVED"))
            kv->last_err = maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE,
                                     "redis %s: %s (this Redis is a Redis Cluster node: use a "
                                     "redis+cluster:// URL)",
                                     argv[0], r->str);
        else
            kv->last_err = maas_errf(errstr, errstr_size, kv_server_err(r->str), "redis %s: %s",
                                     argv[0], r->str);
        freeReplyObject(r);
        return NULL;
    }
    kv->last_err = maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE,
                             "redis %s: redirected too often (the cluster is resharding)", argv[0]);
    return NULL;
}

redisReply *kv_cmd(maas_kv *kv, int argc, const char **argv, const size_t *lens, char *errstr,
                   size_t errstr_size) {
    kv_flight_read(kv);
    size_t len = 0;
    const char *key = key_of(argc, argv, lens, &len);
    int i = kv_route(kv, key, len, errstr, errstr_size);
    return i < 0 ? NULL : run(kv, i, 1, argc, argv, lens, errstr, errstr_size);
}

redisReply *kv_cmd_node(maas_kv *kv, int i, int argc, const char **argv, const size_t *lens,
                        char *errstr, size_t errstr_size) {
    kv_flight_read(kv);
    return run(kv, i, 0, argc, argv, lens, errstr, errstr_size);
}

maas_err kv_nodes(maas_kv *kv, int masters_only, int *out, int *n, char *errstr,
                  size_t errstr_size) {
    *n = 0;
    if (!kv->cluster) {
        out[(*n)++] = 0;
        return MAAS_OK;
    }
    maas_err err = map_refresh(kv, errstr, errstr_size);
    if (err) return kv->last_err = err;
    for (int i = 0; i < kv->n_nodes; i++)
        if (kv->nodes[i].master || (!masters_only && kv->nodes[i].replica)) out[(*n)++] = i;
    return MAAS_OK;
}

maas_err maas_kv_masters(maas_kv *kv, int *n, char *errstr, size_t errstr_size) {
    int idx[KV_NODES_MAX];
    maas_err err = kv_nodes(kv, 1, idx, n, errstr, errstr_size);
    if (err || *n < 1) *n = 1; /* at least one: what a caller sizes by */
    return err;
}

maas_err kv_cmd_all(maas_kv *kv, int argc, const char **argv, char *errstr, size_t errstr_size) {
    int idx[KV_NODES_MAX], n;
    maas_err err = kv_nodes(kv, 0, idx, &n, errstr, errstr_size);
    for (int k = 0; k < n && !err; k++) {
        redisReply *r = kv_cmd_node(kv, idx[k], argc, argv, NULL, errstr, errstr_size);
        if (!r)
            err = kv->last_err;
        else
            freeReplyObject(r);
    }
    return err;
}

/* A handle from the URL and settings, checked, not connected yet; NULL with errstr. */
static maas_kv *kv_configure(const char *url, const maas_setting *settings, int n_settings,
                             char *errstr, size_t errstr_size) {
    maas_kv *kv = calloc(1, sizeof(*kv));
    if (!kv) {
        maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    kv->timeout_ms = 5000;
    kv->wait_ms = 200;
    kv->wait_replicas = -1; /* the URL's default: 1 for a cluster, 0 for one Redis */
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
        } else if (!strcmp(k, "redis.wait_replicas") || !strcmp(k, "redis.wait_ms")) {
            char *end;
            int ms = !strcmp(k, "redis.wait_ms");
            long t = strtol(v, &end, 10);
            if (*end || end == v || t < (ms ? 1 : 0) || t > (ms ? 60000 : 5)) {
                maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                          ms ? "redis.wait_ms '%.40s': milliseconds in 1..60000"
                             : "redis.wait_replicas '%.40s': 0..5 replicas",
                          v);
                goto fail;
            }
            *(ms ? &kv->wait_ms : &kv->wait_replicas) = (int)t;
        } else if (!strncmp(k, "redis.", 6)) {
            maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                      "unknown setting '%s' (known: redis.user, redis.password, redis.prefix, "
                      "redis.timeout_ms, redis.wait_replicas, redis.wait_ms)",
                      k);
            goto fail;
        }
    }
    snprintf(kv->prefix, sizeof(kv->prefix), "%s", kv->base);
    if (kv->wait_replicas < 0) kv->wait_replicas = kv->cluster ? 1 : 0;
    if (kv->cluster && !(kv->slot_node = malloc(KV_SLOTS))) {
        maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
        goto fail;
    }
    if (kv->cluster) {
        memset(kv->slot_node, KV_NO_NODE, KV_SLOTS);
        kv->map_stale = 1;
    }
    return kv;
fail:
    maas_kv_free(kv);
    return NULL;
}

maas_err maas_kv_check(const char *url, const maas_setting *settings, int n_settings, char *errstr,
                       size_t errstr_size) {
    maas_kv *kv = kv_configure(url, settings, n_settings, errstr, errstr_size);
    if (!kv) return MAAS_ERR_INVALID_ARGUMENT;
    maas_kv_free(kv);
    return MAAS_OK;
}

maas_kv *maas_kv_connect(const char *url, const maas_setting *settings, int n_settings,
                         char *errstr, size_t errstr_size) {
    maas_kv *kv = kv_configure(url, settings, n_settings, errstr, errstr_size);
    if (!kv) return NULL;
    /* connected now, so a bad address or password is said at once */
    const char *ping[] = {"PING"};
    redisReply *r = kv_cmd(kv, 1, ping, NULL, errstr, errstr_size);
    if (!r) goto fail;
    freeReplyObject(r);
    return kv;
fail:
    maas_kv_free(kv);
    return NULL;
}

void maas_kv_free(maas_kv *kv) {
    if (!kv) return;
    for (int i = 0; i < kv->n_nodes; i++) {
        if (kv->nodes[i].ctx) redisFree(kv->nodes[i].ctx);
        if (kv->nodes[i].inval) redisFree(kv->nodes[i].inval);
    }
    if (kv->sub) redisFree(kv->sub);
    free(kv->slot_node);
    free(kv->flight.results);
    free(kv->flight.node_of);
    free(kv);
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

maas_err kv_get_blob(maas_kv *kv, const char *key, const char *missing, unsigned char **bytes,
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

int kv_cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

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

int kv_sub_next(redisContext *c, int timeout_ms, redisReply **out) {
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

int kv_is_push(const redisReply *r, const char *kind) {
    return r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
           r->element[0]->type == REDIS_REPLY_STRING && !strcmp(r->element[0]->str, kind);
}
