/*
 * Job records in Redis: creation, state transitions (one, or a pipelined batch), heartbeats,
 * cancels, waits, the listings, stored job messages and delivery counts.
 */
#include "maas/base.h"
#include "maas/clock.h"
#include "maas/cost.h"
#include "maas/kv.h"
#include "internal.h"

#include <errno.h>
#include <poll.h>

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

maas_err maas_kv_job_create(maas_kv *kv, const maas_job_record *r, int ttl_s, char *errstr,
                            size_t errstr_size) {
    maas_err err = maas_name_check("job id", r->id, errstr, errstr_size);
    if (err) return err;
    /* indexed first (ZADD NX: a retry adds nothing): the index is another key, on another
     * node of a cluster, and a failure there must not leave a record its caller cannot
     * make again */
    int64_t created_ms = r->created_ms ? r->created_ms : maas_wall_ms();
    if ((err = index_job(kv, r->id, created_ms, errstr, errstr_size))) return err;
    char key[256];
    KEY(key, kv, "job:{%s}", r->id);
    maas_strbuf b = {0};
    kv_record_new(&b, r, "queued", 0, created_ms, ttl_s);
    maas_strbuf_printf(&b, "}");
    if (b.oom) {
        free(b.p);
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    }
    /* made whole, only if absent: no TTL while it is not final */
    const char *argv[] = {"SET", key, b.p, "NX"};
    size_t len[] = {3, strlen(key), b.len, 2};
    redisReply *rep = kv_cmd(kv, 4, argv, len, errstr, errstr_size);
    free(b.p);
    if (!rep) return kv->last_err;
    int created = rep->type == REDIS_REPLY_STATUS;
    freeReplyObject(rep);
    if (!created)
        return maas_errf(errstr, errstr_size, MAAS_ERR_CONFLICT, "job '%s' already exists", r->id);
    return MAAS_OK;
}

maas_err maas_kv_job_get(maas_kv *kv, const char *id, maas_job_record *r, char *errstr,
                         size_t errstr_size) {
    memset(r, 0, sizeof(*r));
    maas_err err = maas_name_check("job id", id, errstr, errstr_size);
    if (err) return err;
    char key[256];
    KEY(key, kv, "job:{%s}", id);
    const char *argv[] = {"GET", key};
    redisReply *rep = kv_cmd(kv, 2, argv, NULL, errstr, errstr_size);
    if (!rep) return kv->last_err;
    snprintf(r->id, sizeof(r->id), "%s", id);
    if (rep->type == REDIS_REPLY_STRING)
        err = kv_record_parse(rep->str, rep->len, r, errstr, errstr_size);
    freeReplyObject(rep);
    return err;
}

/* One call of the transition script (lua/job_transition.lua) for n jobs: EVALSHA sha n, then
 * each job's record key, then per job its form ("h" or "g") and its arguments (4 or 19); or,
 * undeclared (a batch on a cluster node: its jobs' slots differ), EVALSHA sha 0, then per job
 * its form, its key and its arguments. Buffers are its own. */
typedef struct transition_call {
    int n, cap, argc, jobs, declared;
    const char **v;
    size_t *len;
    char (*key)[256]; /* each job's record key, made by the caller (transition_key) */
    size_t *key_len;
    char (*num)[6][24];
    char (*cost)[256]; /* each job's cost JSON */
    maas_strbuf *text; /* each job's whole record (the hot path) or its result's base64 */
    int n_text;        /* text[0..n_text) hold text, over the nodes of one call */
    char nkeys[24];
} transition_call;

/* Sized for cap jobs; MAAS_ERR_OUT_OF_MEMORY if that cannot be had. */
static maas_err transition_init(maas_kv *kv, transition_call *t, int cap, char *errstr,
                                size_t errstr_size) {
    memset(t, 0, sizeof(*t));
    size_t argc = 3 + 21 * (size_t)cap; /* the longest form: 1 + its key + 19 */
    t->v = malloc(argc * sizeof(*t->v));
    t->len = malloc(argc * sizeof(*t->len));
    t->key = malloc((size_t)cap * sizeof(*t->key));
    t->key_len = malloc((size_t)cap * sizeof(*t->key_len));
    t->num = malloc((size_t)cap * sizeof(*t->num));
    t->cost = malloc((size_t)cap * sizeof(*t->cost));
    t->text = calloc((size_t)cap, sizeof(*t->text));
    if (!t->v || !t->len || !t->key || !t->key_len || !t->num || !t->cost || !t->text) {
        free(t->v);
        free(t->len);
        free(t->key);
        free(t->key_len);
        free(t->num);
        free(t->cost);
        free(t->text);
        memset(t, 0, sizeof(*t));
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    }
    t->cap = cap;
    const kv_script *s = kv_script_for(kv, &kv_lua_job_transition);
    t->v[0] = "EVALSHA";
    t->len[0] = 7;
    t->v[1] = s->sha;
    t->len[1] = strlen(s->sha);
    return MAAS_OK;
}

static void transition_free(transition_call *t) {
    free(t->v);
    free(t->len);
    free(t->key);
    free(t->key_len);
    free(t->num);
    free(t->cost);
    for (int i = 0; t->text && i < t->n_text; i++) free(t->text[i].p);
    free(t->text);
    memset(t, 0, sizeof(*t));
}

/* Lays out the call for the n jobs about to be added, their keys declared or not. */
static void transition_begin(transition_call *t, int n, int declared) {
    MAAS_CHECK(n >= 1 && n <= t->cap);
    t->n = 0;
    t->jobs = n;
    t->declared = declared;
    t->argc = 3 + (declared ? n : 0); /* the arguments follow, one form per job */
    t->len[2] = kv_fmt_i64(t->nkeys, declared ? n : 0);
    t->v[2] = t->nkeys;
}

/* Makes job i's record key (t->key[i]), for routing it and then adding it. */
static void transition_key(const maas_kv *kv, transition_call *t, int i, const char *id) {
    MAAS_CHECK(i >= 0 && i < t->cap);
    t->key_len[i] = kv_job_key(t->key[i], sizeof(t->key[i]), kv, id);
}

/* Adds job id's update u as the next of the call's jobs, with its record key t->key[ki]
 * (transition_key); OUT_OF_MEMORY when its record or result could not be laid out (the call
 * must not go then). */
static maas_err transition_add(transition_call *t, const char *id, int ki, const maas_job_update *u,
                               int64_t now) {
    int j = t->n++;
    MAAS_CHECK(j < t->jobs);
    /* its :done and :events: the script appends those */
    const char *key = t->key[ki];
    /* the hot path's record whole (its result and cost in it), else the result's base64 */
    MAAS_CHECK(t->n_text < t->cap);
    maas_strbuf *text = &t->text[t->n_text++];
    int hot = kv_record_hot(text, id, u, now);
    if (!hot) {
        text->len = 0;
        if (text->p) text->p[0] = '\0';
        if (u->result) kv_b64_put(text, u->result, u->result_len);
    }
    if (text->oom) return MAAS_ERR_OUT_OF_MEMORY;
    const char *tx = text->p ? text->p : "";
    const char **v = t->v;
    size_t *len = t->len;
    /* declared: the keys in their block after the key count, the arguments from argc on;
     * else each job's keys follow its form */
    int at = t->argc;
#define S(s) (v[at] = (s) ? (s) : "", len[at] = strlen(v[at]), at++)
#define I(k, x) (v[at] = num[k], len[at] = kv_fmt_i64(num[k], (long long)(x)), at++)
    S(hot ? "h" : "g");
    int k = t->declared ? 3 + j : at++;
    v[k] = key;
    len[k] = t->key_len[ki];
    char(*num)[24] = t->num[j];
    /* lua/job_transition.lua names them, in this order */
    if (hot) {
        I(0, u->from_mask);
        I(1, u->ttl_s);
        S(u->notify ? "1" : "0");
        v[at] = tx, len[at] = text->len, at++;
    } else {
        const maas_job_record *c = u->create;
        I(0, u->from_mask);
        S(maas_job_state_name(u->to));
        I(1, now);
        S(u->worker);
        v[at] = tx, len[at] = text->len, at++;
        S(u->error_code);
        S(u->error_message);
        I(2, u->ttl_s);
        S(u->result ? "1" : "0");
        S(c ? "1" : "0");
        S(id);
        S(c ? c->type : "");
        S(c ? c->model : "");
        I(3, c && c->created_ms ? c->created_ms : now);
        I(4, c ? c->deadline_ms : 0);
        S(u->notify ? "1" : "0");
        S(c ? c->digest : "");
        I(5, u->started_ms);
        t->cost[j][0] = '\0';
        if (u->cost && maas_job_cost_json(u->cost, t->cost[j], sizeof(t->cost[j])) < 0)
            t->cost[j][0] = '\0'; /* cannot happen: the figures are bounded */
        S(t->cost[j]);
    }
#undef S
#undef I
    t->argc = at;
    return MAAS_OK;
}

/* One job's reply: 1 when moved (the attempts counted when moved to running); {0, state} when
 * the record's state did not allow it; {-1, ""} when there is none; {-2, state} when the
 * message is not the record's job. */
static maas_err transition_reply(const redisReply *rep, const char *id, const maas_job_update *u,
                                 char *errstr, size_t errstr_size) {
    if (!rep || rep->type == REDIS_REPLY_ERROR)
        return maas_errf(errstr, errstr_size, rep ? kv_server_err(rep->str) : MAAS_ERR_UNAVAILABLE,
                         "redis EVAL: %s", rep && rep->str ? rep->str : "no reply");
    long long ok = rep->type == REDIS_REPLY_INTEGER ? rep->integer
                   : rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
                           rep->element[0]->type == REDIS_REPLY_INTEGER
                       ? rep->element[0]->integer
                       : -3;
    char from[32] = "";
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 2 &&
        rep->element[1]->type == REDIS_REPLY_STRING)
        kv_copy_field(from, sizeof(from), rep->element[1]);
    if (ok == -3)
        return maas_errf(errstr, errstr_size, MAAS_ERR_SERVER_ERROR,
                         "redis EVAL: a reply the transition script does not give");
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
    /* A job produced straight to Kafka is indexed too, first: the index is another key (on
     * another node of a cluster), and a failure there after a move to running would spend an
     * attempt on every retry (a failover test saw a job dead-lettered "started 4 times") */
    if (u->create &&
        (err = index_job(kv, id, u->create->created_ms ? u->create->created_ms : maas_wall_ms(),
                         errstr, errstr_size)))
        return err;
    transition_call t;
    if ((err = transition_init(kv, &t, 1, errstr, errstr_size))) return err;
    transition_begin(&t, 1, 1);
    transition_key(kv, &t, 0, id);
    if (transition_add(&t, id, 0, u, maas_wall_ms())) {
        transition_free(&t);
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    }
    redisReply *rep = kv_cmd(kv, t.argc, t.v, t.len, errstr, errstr_size);
    transition_free(&t);
    if (!rep) return kv->last_err;
    const redisReply *one =
        rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 ? rep->element[0] : NULL;
    err = one ? transition_reply(one, id, u, errstr, errstr_size)
              : maas_errf(errstr, errstr_size, MAAS_ERR_SERVER_ERROR,
                          "redis EVAL: a reply the transition script does not give");
    /* a move to running answers the attempts it counted (lua/job_transition.lua) */
    if (!err && u->attempts && u->to == MAAS_JOB_RUNNING && one->type == REDIS_REPLY_INTEGER)
        *u->attempts = (int)one->integer;
    freeReplyObject(rep);
    return err;
}

/* Sets the results of node k's jobs in the batch in flight to err. */
static void flight_fail_node(maas_kv *kv, int k, maas_err err) {
    for (int i = 0; i < kv->flight.n; i++)
        if (kv->flight.node_of[i] == k) kv->flight.results[i] = err;
}

void kv_flight_read(maas_kv *kv) {
    /* one reply per node the batch went to (its jobs' replies, in order), then its WAIT */
    for (int k = 0; k < kv->n_nodes && kv->flight.unread > 0; k++) {
        if (!kv->flight.sent[k]) continue;
        kv->flight.sent[k] = 0;
        kv->flight.unread--;
        redisContext *c = kv->nodes[k].ctx;
        redisReply *rep = NULL;
        if (!c || redisGetReply(c, (void **)&rep) != REDIS_OK || !rep) {
            if (!kv->flight.err)
                kv->flight.err =
                    maas_errf(kv->flight.errstr, sizeof(kv->flight.errstr), MAAS_ERR_UNAVAILABLE,
                              "redis: %s", c ? c->errstr : "connection lost");
            /* a half-read pipeline leaves the connection unusable: start over next time */
            if (c) kv_node_drop(kv, k);
            kv->flight.waited[k] = 0;
            flight_fail_node(kv, k, MAAS_ERR_UNAVAILABLE);
            continue; /* the other nodes' replies are still to be read */
        }
        char sub[MAAS_ERRSTR_SIZE];
        if (rep->type == REDIS_REPLY_ERROR && rep->str && !strncmp(rep->str, "NOSCRIPT", 8))
            kv->nodes[k].scripts_loaded = 0; /* reloaded next time; this batch is retried */
        if (rep->type == REDIS_REPLY_ERROR && rep->str &&
            (!strncmp(rep->str, "MOVED ", 6) || !strncmp(rep->str, "ASK ", 4) ||
             !strncmp(rep->str, "CLUSTERDOWN", 11) || !strncmp(rep->str, "READONLY", 8)))
            kv->map_stale = 1; /* retried by the caller (UNAVAILABLE) after a fresh map */
        if (rep->type != REDIS_REPLY_ARRAY) {
            maas_err e = transition_reply(rep->type == REDIS_REPLY_ERROR ? rep : NULL, "", NULL,
                                          sub, sizeof(sub));
            if (kv->map_stale) e = MAAS_ERR_UNAVAILABLE;
            flight_fail_node(kv, k, e);
            if (e == MAAS_ERR_UNAVAILABLE && !kv->flight.err)
                kv->flight.err = maas_errf(kv->flight.errstr, sizeof(kv->flight.errstr),
                                           MAAS_ERR_UNAVAILABLE, "%s", sub);
        } else {
            size_t j = 0;
            for (int i = 0; i < kv->flight.n; i++) {
                if (kv->flight.node_of[i] != k) continue;
                const redisReply *e = j < rep->elements ? rep->element[j] : NULL;
                j++;
                if (!e) {
                    kv->flight.results[i] = MAAS_ERR_SERVER_ERROR;
                    continue;
                }
                kv->flight.results[i] = transition_reply(e, "", NULL, sub, sizeof(sub));
                /* on a cluster, a key whose slot left this node (or a cluster down): the
                 * job is routed again after a fresh map */
                if (e->type == REDIS_REPLY_ERROR && e->str &&
                    (strstr(e->str, "non local key") || strstr(e->str, "cluster is down"))) {
                    kv->map_stale = 1;
                    kv->flight.results[i] = MAAS_ERR_UNAVAILABLE;
                }
                if (kv->flight.results[i] == MAAS_ERR_UNAVAILABLE && !kv->flight.err)
                    kv->flight.err = maas_errf(kv->flight.errstr, sizeof(kv->flight.errstr),
                                               MAAS_ERR_UNAVAILABLE, "%s", sub);
            }
        }
        freeReplyObject(rep);
    }
    kv->flight.unread = 0;
    /* the WAIT after each node's transitions: when it fails, they may not outlive a
     * failover, so they are not confirmed (retried: a redelivery finds them final) */
    for (int k = 0; k < kv->n_nodes; k++) {
        if (!kv->flight.waited[k]) continue;
        kv->flight.waited[k] = 0;
        char sub[MAAS_ERRSTR_SIZE];
        if (!kv_wait_read(kv, k, sub, sizeof(sub))) continue;
        if (kv->nodes[k].ctx) kv_node_drop(kv, k);
        if (!kv->flight.err)
            kv->flight.err = maas_errf(kv->flight.errstr, sizeof(kv->flight.errstr),
                                       MAAS_ERR_UNAVAILABLE, "%s", sub);
        for (int i = 0; i < kv->flight.n; i++)
            if (kv->flight.node_of[i] == k && kv->flight.results[i] == MAAS_OK)
                kv->flight.results[i] = MAAS_ERR_UNAVAILABLE;
    }
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
    unsigned char *node_of = malloc((size_t)n);
    transition_call t;
    maas_err err = transition_init(kv, &t, n, errstr, errstr_size);
    if (!results || !node_of || err) {
        free(results);
        free(node_of);
        if (!err) transition_free(&t);
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    }
    int64_t now = maas_wall_ms();
    int count[KV_NODES_MAX] = {0};
    unsigned char touched[KV_NODES_MAX] = {0};
    /* Routed first (reading the slot map or loading scripts uses the connections), then one
     * script call per node with that node's jobs (one node, unless a cluster), each node's
     * output buffer written at once. */
    for (int i = 0; i < n && !err; i++) {
        transition_key(kv, &t, i, ids[i]);
        int k = kv_route(kv, t.key[i], t.key_len[i], errstr, errstr_size);
        if (k < 0) {
            err = kv->last_err;
            break;
        }
        if (!touched[k] && (err = kv_node_ready(kv, k, errstr, errstr_size))) break;
        touched[k] = 1;
        count[k]++;
        node_of[i] = (unsigned char)k;
    }
    for (int k = 0; k < kv->n_nodes && !err; k++) {
        if (!touched[k]) continue;
        transition_begin(&t, count[k], !kv->cluster);
        for (int i = 0; i < n && !err; i++)
            if (node_of[i] == k && transition_add(&t, ids[i], i, &updates[i], now))
                err = maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
        redisContext *c = kv->nodes[k].ctx;
        if (!err && redisAppendCommandArgv(c, t.argc, t.v, t.len) != REDIS_OK)
            err = maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE, "redis: %s", c->errstr);
    }
    transition_free(&t);
    for (int k = 0; k < kv->n_nodes && !err; k++)
        kv->flight.waited[k] = touched[k] && kv_wait_append(kv, k);
    for (int k = 0; k < kv->n_nodes && !err; k++) {
        int wdone = 0;
        redisContext *c = kv->nodes[k].ctx;
        while (touched[k] && !err && !wdone)
            if (redisBufferWrite(c, &wdone) != REDIS_OK)
                err = maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE, "redis: %s", c->errstr);
    }
    if (err) {
        free(results);
        free(node_of);
        /* some may have gone out, or sit in a buffer: start those connections over */
        for (int k = 0; k < kv->n_nodes; k++) {
            if (touched[k] && kv->nodes[k].ctx) kv_node_drop(kv, k);
            kv->flight.waited[k] = 0;
        }
        return err;
    }
    kv->flight.n = n;
    kv->flight.unread = 0;
    for (int k = 0; k < kv->n_nodes; k++) {
        kv->flight.sent[k] = touched[k];
        kv->flight.unread += touched[k];
    }
    kv->flight.results = results;
    kv->flight.node_of = node_of;
    kv->flight.err = MAAS_OK;
    return MAAS_OK;
}

maas_err maas_kv_job_transition_recv(maas_kv *kv, maas_err *results, char *errstr,
                                     size_t errstr_size) {
    if (!kv->flight.n) return MAAS_OK;
    kv_flight_read(kv);
    memcpy(results, kv->flight.results, (size_t)kv->flight.n * sizeof(*results));
    maas_err err = kv->flight.err;
    if (err) maas_errf(errstr, errstr_size, err, "%s", kv->flight.errstr);
    free(kv->flight.results);
    free(kv->flight.node_of);
    kv->flight.results = NULL;
    kv->flight.node_of = NULL;
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

maas_err maas_kv_job_heartbeat(maas_kv *kv, const char *id, const char *worker,
                               const char *progress_json, char *errstr, size_t errstr_size) {
    maas_err err = maas_name_check("job id", id, errstr, errstr_size);
    if (err) return err;
    char key[256], chan[256];
    KEY(key, kv, "job:{%s}", id);
    KEY(chan, kv, "job:{%s}:events", id);
    argv_buf a = {0};
    arg_script(&a, kv_script_for(kv, &kv_lua_job_heartbeat), 2);
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

maas_err maas_kv_job_epochs_append(maas_kv *kv, const char *id, int fresh, const char *const *lines,
                                   int n, int ttl_s, char *errstr, size_t errstr_size) {
    maas_err err = maas_name_check("job id", id, errstr, errstr_size);
    if (err || n <= 0) return err;
    char key[256];
    KEY(key, kv, "job:{%s}:epochs", id);
    redisReply *rep;
    if (fresh) {
        const char *del[] = {"DEL", key};
        if (!(rep = kv_cmd(kv, 2, del, NULL, errstr, errstr_size))) return kv->last_err;
        freeReplyObject(rep);
    }
    const char **v = malloc(((size_t)n + 2) * sizeof(*v));
    if (!v) return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    v[0] = "RPUSH";
    v[1] = key;
    for (int i = 0; i < n; i++) v[2 + i] = lines[i];
    rep = kv_cmd(kv, n + 2, v, NULL, errstr, errstr_size);
    free(v);
    if (!rep) return kv->last_err;
    freeReplyObject(rep);
    argv_buf a = {0};
    arg_s(&a, ttl_s > 0 ? "EXPIRE" : "PERSIST");
    arg_s(&a, key);
    if (ttl_s > 0) arg_i(&a, ttl_s);
    if (!(rep = kv_cmd(kv, a.n, a.v, a.len, errstr, errstr_size))) return kv->last_err;
    freeReplyObject(rep);
    return MAAS_OK;
}

maas_err maas_kv_job_epochs(maas_kv *kv, const char *id, long from, int max, char ***lines, int *n,
                            char *errstr, size_t errstr_size) {
    *lines = NULL;
    *n = 0;
    maas_err err = maas_name_check("job id", id, errstr, errstr_size);
    if (err) return err;
    if (from < 0 || max <= 0)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "epochs: from %ld and max %d must be >= 0 and > 0", from, max);
    char key[256];
    KEY(key, kv, "job:{%s}:epochs", id);
    argv_buf a = {0};
    arg_s(&a, "LRANGE");
    arg_s(&a, key);
    arg_i(&a, from);
    arg_i(&a, from + max - 1);
    redisReply *rep = kv_cmd(kv, a.n, a.v, a.len, errstr, errstr_size);
    if (!rep) return kv->last_err;
    char **out = calloc(rep->elements ? rep->elements : 1, sizeof(*out));
    for (size_t i = 0; out && i < rep->elements; i++) {
        const redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_STRING) continue;
        if (!(out[*n] = malloc(e->len + 1))) break;
        memcpy(out[*n], e->str, e->len);
        out[(*n)++][e->len] = '\0';
    }
    size_t want = rep->elements;
    freeReplyObject(rep);
    if (!out || (size_t)*n < want) {
        for (int i = 0; out && i < *n; i++) free(out[i]);
        free(out);
        *n = 0;
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    }
    *lines = out;
    return MAAS_OK;
}

maas_err maas_kv_job_cancel(maas_kv *kv, const char *id, char *errstr, size_t errstr_size) {
    maas_err err = maas_name_check("job id", id, errstr, errstr_size);
    if (err) return err;
    char key[256], done[256], chan[256];
    KEY(key, kv, "job:{%s}", id);
    KEY(done, kv, "job:{%s}:done", id);
    KEY(chan, kv, "job:{%s}:events", id);
    argv_buf a = {0};
    arg_script(&a, kv_script_for(kv, &kv_lua_job_cancel), 3);
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

/* Waits up to timeout_ms for a message on the subscribed connection c: 1 got one, 0 timed
 * out, -1 the connection failed. Other replies (subscribe confirmations) are skipped. */
static int sub_message(redisContext *c, int timeout_ms) {
    redisReply *rep;
    int got;
    while ((got = kv_sub_next(c, timeout_ms, &rep)) == 1) {
        int msg = kv_is_push(rep, "message") || kv_is_push(rep, "smessage");
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
    /* Subscribe first, then read the state: a transition between the two is not missed. On
     * a cluster the events are sharded pub/sub (SPUBLISH, kv_script_for): SSUBSCRIBE on the
     * node that serves the channel's slot - the job's - connected again when that is
     * another node than the last wait's. */
    int node = kv->sub && !kv->cluster ? 0 : kv_route(kv, chan, strlen(chan), errstr, errstr_size);
    if (node < 0) return kv->last_err;
    if (kv->sub && kv->cluster && kv->sub_node != node) {
        redisFree(kv->sub);
        kv->sub = NULL;
    }
    if (!kv->sub && (err = kv_connect_ctx(kv, &kv->nodes[node], &kv->sub, errstr, errstr_size)))
        return err;
    kv->sub_node = node;
    const char *sub = kv->cluster ? "SSUBSCRIBE" : "SUBSCRIBE";
    redisReply *rep = redisCommand(kv->sub, "%s %s", sub, chan);
    int ok = rep && rep->type == REDIS_REPLY_ARRAY;
    if (kv->cluster && rep && rep->type == REDIS_REPLY_ERROR && rep->str &&
        !strncmp(rep->str, "MOVED ", 6))
        kv->map_stale = 1; /* the slot moved: the next wait routes with a fresh map */
    if (rep) freeReplyObject(rep);
    if (!ok) {
        redisFree(kv->sub);
        kv->sub = NULL;
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE, "redis %s failed", sub);
    }
    maas_job_record r;
    err = maas_kv_job_get(kv, id, &r, errstr, errstr_size);
    maas_job_record_release(&r);
    *state = r.state;
    int got = 0;
    if (!err && !MAAS_JOB_FINAL(r.state) && r.state != MAAS_JOB_UNKNOWN)
        got = sub_message(kv->sub, timeout_ms);
    /* Unsubscribe and skip what came meanwhile, up to the confirmation. */
    if (got >= 0 &&
        redisAppendCommand(kv->sub, "%s %s", kv->cluster ? "SUNSUBSCRIBE" : "UNSUBSCRIBE", chan) ==
            REDIS_OK) {
        while ((rep = NULL, redisGetReply(kv->sub, (void **)&rep) == REDIS_OK) && rep) {
            int done = kv_is_push(rep, "unsubscribe") || kv_is_push(rep, "sunsubscribe");
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

maas_err maas_kv_delivery_counts(maas_kv *kv, const char *topic, int32_t partition,
                                 const int64_t *offsets, const int *add, int n, int *counts,
                                 int ttl_s, char *errstr, size_t errstr_size) {
    if (n <= 0) return MAAS_OK;
    if (n > 4096)
        return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED, "over 4096 offsets");
    char key[512], ttl[24];
    snprintf(key, sizeof(key), "%stries:{%s/%d}", kv->prefix, topic, (int)partition);
    snprintf(ttl, sizeof(ttl), "%d", ttl_s > 0 ? ttl_s : 86400);
    int argc = 5 + 2 * n; /* lua/delivery_counts.lua */
    const char **argv = malloc((size_t)argc * sizeof(*argv));
    char *nums = malloc((size_t)n * 24);
    if (!argv || !nums) {
        free(argv);
        free(nums);
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    }
    argv[0] = "EVALSHA", argv[1] = kv_lua_delivery_counts.sha, argv[2] = "1", argv[3] = key;
    argv[4] = ttl;
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

static void start_mark_key(const maas_kv *kv, const char *topic, int32_t partition, char *key,
                           size_t size) {
    snprintf(key, size, "%sstarted:{%s/%d}", kv->prefix, topic, (int)partition);
}

maas_err maas_kv_start_mark_get(maas_kv *kv, const char *topic, int32_t partition, int64_t *to,
                                char *errstr, size_t errstr_size) {
    char key[512];
    start_mark_key(kv, topic, partition, key, sizeof(key));
    const char *argv[] = {"GET", key};
    redisReply *rep = kv_cmd(kv, 2, argv, NULL, errstr, errstr_size);
    if (!rep) return kv->last_err;
    maas_err err = MAAS_OK;
    char *end = NULL;
    *to = 0;
    if (rep->type == REDIS_REPLY_STRING) {
        long long v = strtoll(rep->str, &end, 10);
        if (end == rep->str || *end || v < 0)
            err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "redis: %s is not an offset",
                            key);
        else
            *to = v;
    } else if (rep->type != REDIS_REPLY_NIL) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_SERVER_ERROR,
                        "redis: unexpected reply to GET %s", key);
    }
    freeReplyObject(rep);
    return err;
}

maas_err maas_kv_start_mark_raise(maas_kv *kv, const char *topic, int32_t partition, int64_t *to,
                                  int ttl_s, char *errstr, size_t errstr_size) {
    char key[512], off[24], ttl[24];
    start_mark_key(kv, topic, partition, key, sizeof(key));
    snprintf(off, sizeof(off), "%lld", (long long)*to);
    snprintf(ttl, sizeof(ttl), "%d", ttl_s > 0 ? ttl_s : 7 * 86400);
    const char *argv[] = {"EVALSHA", kv_lua_start_mark.sha, "1", key, off, ttl};
    redisReply *rep = kv_cmd(kv, 6, argv, NULL, errstr, errstr_size);
    if (!rep) return kv->last_err;
    maas_err err = MAAS_OK;
    if (rep->type == REDIS_REPLY_INTEGER)
        *to = rep->integer;
    else
        err = maas_errf(errstr, errstr_size, MAAS_ERR_SERVER_ERROR,
                        "redis: unexpected reply raising %s", key);
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
    return kv_get_blob(kv, key, missing, bytes, len, errstr, errstr_size);
}
