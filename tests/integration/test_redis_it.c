/*
 * The Redis adapter against a real redis-server (started by the services
 * fixture): job records and their state machine, waiting without polling,
 * cancel, the model registry's atomic numbering, idempotency by job, and the
 * atomic alias move; pipelined transitions sent and read in two halves, and the
 * :done list only for jobs that ask (checked on the raw keys, with hiredis, as a
 * client in another language would see them); resolves cached until Redis says
 * the alias moved (client-side caching), whoever moved it; a tenant's read-only user;
 * on a cluster, a batch whose job's slot moved away (that job alone retried), and the
 * adapter's slot of a key as the cluster's CLUSTER KEYSLOT says.
 */
#include "../unit/testutil.h"

#include <pthread.h>
#include <stdarg.h>
#include <time.h>
#include <unistd.h>

#include "maas/clock.h"
#include "maas/config.h"
#include "maas/kv.h"

#include <hiredis/hiredis.h>

#include "kv/internal.h" /* kv_keyslot */

static char err[MAAS_ERRSTR_SIZE];
static char prefix[64];

/* The fixture's login (MAAS_CONFIG: redis.user and redis.password when Redis runs ACLs). */
static maas_config login;

static maas_kv *connect_kv(void) {
    const char *url = getenv("MAAS_REDIS_URL");
    maas_setting s[1 + MAAS_CONFIG_MAX_SETTINGS] = {{"redis.prefix", prefix}};
    int n = 1;
    for (int i = 0; i < login.n_settings; i++)
        if (!strncmp(login.settings[i].key, "redis.", 6)) s[n++] = login.settings[i];
    maas_kv *kv = maas_kv_connect(url, s, n, err, sizeof(err));
    if (!kv) fail_msg("connect %s: %s", url ? url : "(default)", err);
    return kv;
}

static int setup(void **state) {
    (void)state;
    /* under maas: (the services' Redis user may touch maas:* only) */
    snprintf(prefix, sizeof(prefix), "maas:it%ld.%ld:", (long)getpid(), (long)time(NULL));
    return maas_config_init(&login, "test_redis_it", NULL, 0, err, sizeof(err)) ? -1 : 0;
}

static maas_job_record job(const char *id) {
    maas_job_record r;
    memset(&r, 0, sizeof(r));
    snprintf(r.id, sizeof(r.id), "%s", id);
    snprintf(r.type, sizeof(r.type), "infer");
    snprintf(r.model, sizeof(r.model), "pima:latest");
    return r;
}

#define FROM(s) (1u << (s))

static void test_job_lifecycle(void **state) {
    (void)state;
    maas_kv *kv = connect_kv();
    assert_ok(maas_kv_ping(kv, err, sizeof(err)), err);
    maas_job_record r = job("job-1"), got;
    assert_ok(maas_kv_job_create(kv, &r, 3600, err, sizeof(err)), err);
    assert_err(MAAS_ERR_CONFLICT, maas_kv_job_create(kv, &r, 3600, err, sizeof(err)), err);
    assert_ok(maas_kv_job_get(kv, "job-1", &got, err, sizeof(err)), err);
    assert_int_equal(got.state, MAAS_JOB_QUEUED);
    assert_string_equal(got.model, "pima:latest");
    assert_true(got.created_ms > 0);
    maas_job_record_release(&got);

    int attempts = 0;
    maas_job_update run = {.to = MAAS_JOB_RUNNING,
                           .from_mask = FROM(MAAS_JOB_QUEUED),
                           .worker = "w1",
                           .attempts = &attempts};
    assert_ok(maas_kv_job_transition(kv, "job-1", &run, err, sizeof(err)), err);
    assert_int_equal(attempts, 1); /* what the move counted, answered by it */
    attempts = -1;
    assert_err(MAAS_ERR_CONFLICT, maas_kv_job_transition(kv, "job-1", &run, err, sizeof(err)), err);
    assert_int_equal(attempts, -1); /* not moved: left alone */
    assert_mentions(err, "is running");
    assert_ok(maas_kv_job_heartbeat(kv, "job-1", "w1", "{\"epoch\": 3}", err, sizeof(err)), err);
    assert_err(MAAS_ERR_CONFLICT, maas_kv_job_heartbeat(kv, "job-1", "w2", NULL, err, sizeof(err)),
               err);
    assert_ok(maas_kv_job_get(kv, "job-1", &got, err, sizeof(err)), err);
    assert_int_equal(got.attempts, 1);
    assert_string_equal(got.worker, "w1");
    assert_string_equal(got.progress, "{\"epoch\":3}"); /* the record's JSON, compact */
    maas_job_record_release(&got);

    const unsigned char result[] = {0x81, 0xa1, 'p', 0xcb, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0};
    maas_job_update done = {.to = MAAS_JOB_SUCCEEDED,
                            .from_mask = FROM(MAAS_JOB_RUNNING),
                            .result = result,
                            .result_len = sizeof(result)};
    assert_ok(maas_kv_job_transition(kv, "job-1", &done, err, sizeof(err)), err);
    assert_ok(maas_kv_job_get(kv, "job-1", &got, err, sizeof(err)), err);
    assert_int_equal(got.state, MAAS_JOB_SUCCEEDED);
    assert_int_equal(got.result_len, sizeof(result)); /* binary-safe, with a NUL inside */
    assert_memory_equal(got.result, result, sizeof(result));
    assert_true(got.finished_ms >= got.started_ms);
    maas_job_record_release(&got);
    /* a redelivered job finds the record final and does nothing */
    assert_err(MAAS_ERR_CONFLICT, maas_kv_job_transition(kv, "job-1", &run, err, sizeof(err)), err);
    maas_job_state st;
    assert_ok(maas_kv_job_wait(kv, "job-1", 1000, &st, err, sizeof(err)), err);
    assert_int_equal(st, MAAS_JOB_SUCCEEDED);

    /* unknown ids are told apart from pending and finished ones */
    assert_ok(maas_kv_job_get(kv, "no-such-job", &got, err, sizeof(err)), err);
    assert_int_equal(got.state, MAAS_JOB_UNKNOWN);
    assert_err(MAAS_ERR_UNKNOWN_NAME,
               maas_kv_job_transition(kv, "no-such-job", &run, err, sizeof(err)), err);
    assert_err(MAAS_ERR_INVALID_ARGUMENT, maas_kv_job_get(kv, "bad{id}", &got, err, sizeof(err)),
               err);
    maas_kv_free(kv);
}

typedef struct {
    const char *id;
    int delay_ms;
} finisher_arg;

static void *finisher(void *p) {
    finisher_arg *a = p;
    char e[MAAS_ERRSTR_SIZE];
    maas_kv *kv = connect_kv();
    usleep((useconds_t)a->delay_ms * 1000);
    maas_job_update f = {.to = MAAS_JOB_FAILED,
                         .from_mask = FROM(MAAS_JOB_RUNNING),
                         .error_code = "SHAPE_MISMATCH",
                         .error_message = "field inputs.shape[1]: expected 8, got 9"};
    if (maas_kv_job_transition(kv, a->id, &f, e, sizeof(e))) fprintf(stderr, "finisher: %s\n", e);
    maas_kv_free(kv);
    return NULL;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_wait_without_polling(void **state) {
    (void)state;
    maas_kv *kv = connect_kv();
    maas_job_record r = job("job-wait");
    assert_ok(maas_kv_job_create(kv, &r, 0, err, sizeof(err)), err);
    maas_job_update run = {
        .to = MAAS_JOB_RUNNING, .from_mask = FROM(MAAS_JOB_QUEUED), .worker = "w"};
    assert_ok(maas_kv_job_transition(kv, "job-wait", &run, err, sizeof(err)), err);
    maas_job_state st;
    double t0 = now_s();
    assert_ok(maas_kv_job_wait(kv, "job-wait", 300, &st, err, sizeof(err)), err);
    assert_int_equal(st, MAAS_JOB_RUNNING); /* timed out, still running */
    assert_true(now_s() - t0 >= 0.25);
    pthread_t th;
    finisher_arg a = {"job-wait", 300};
    pthread_create(&th, NULL, finisher, &a);
    t0 = now_s();
    assert_ok(maas_kv_job_wait(kv, "job-wait", 10000, &st, err, sizeof(err)), err);
    double waited = now_s() - t0;
    pthread_join(th, NULL);
    assert_int_equal(st, MAAS_JOB_FAILED);
    assert_true(waited < 5.0); /* woken by the transition, not by the timeout */
    /* every waiter wakes: the notification is not consumed */
    assert_ok(maas_kv_job_wait(kv, "job-wait", 10000, &st, err, sizeof(err)), err);
    assert_int_equal(st, MAAS_JOB_FAILED);
    maas_job_record got;
    assert_ok(maas_kv_job_get(kv, "job-wait", &got, err, sizeof(err)), err);
    assert_string_equal(got.error_code, "SHAPE_MISMATCH");
    assert_mentions(got.error_message, "expected 8, got 9");
    maas_job_record_release(&got);
    maas_kv_free(kv);
}

/* A plain connection to the test Redis, for looking at raw keys. */
/* A raw connection to host:port as the fixture's admin (INFO and SCRIPT FLUSH are beyond the
 * services' user): its password is beside the login file. */
static redisContext *raw_connect_to(const char *host, int port) {
    redisContext *c = redisConnect(host, port);
    if (!c || c->err) fail_msg("raw connect %s:%d", host, port);
    const char *conf = getenv("MAAS_CONFIG");
    char path[4096], pass[256] = "";
    if (conf && strrchr(conf, '/')) {
        snprintf(path, sizeof(path), "%.*s/redis-admin.pass", (int)(strrchr(conf, '/') - conf),
                 conf);
        FILE *f = fopen(path, "r");
        if (f && fgets(pass, sizeof(pass), f)) pass[strcspn(pass, "\r\n")] = '\0';
        if (f) fclose(f);
    }
    if (pass[0]) {
        redisReply *r = redisCommand(c, "AUTH admin %s", pass);
        if (!r || r->type == REDIS_REPLY_ERROR) fail_msg("raw AUTH admin failed");
        freeReplyObject(r);
    }
    return c;
}

/* MAAS_REDIS_URL's (first) server: redis://host:port or redis+cluster://host:port,... */
static redisContext *raw_connect(void) {
    const char *url = getenv("MAAS_REDIS_URL");
    char host[128] = "127.0.0.1";
    int port = 26379;
    if (url && !strncmp(url, "redis://", 8)) sscanf(url + 8, "%127[^:]:%d", host, &port);
    if (url && !strncmp(url, "redis+cluster://", 16)) sscanf(url + 16, "%127[^:]:%d", host, &port);
    return raw_connect_to(host, port);
}

/* A raw command as a cluster-aware client runs it: on MOVED, *c moves to the node named and
 * the command runs again there (one Redis: redisCommand). INFO then reads that node's. */
static redisReply *rawcmd(redisContext **c, const char *fmt, ...) {
    for (int hop = 0; hop < 4; hop++) {
        va_list ap;
        va_start(ap, fmt);
        redisReply *r = redisvCommand(*c, fmt, ap);
        va_end(ap);
        char host[128];
        int slot, port;
        if (!r || r->type != REDIS_REPLY_ERROR ||
            sscanf(r->str, "MOVED %d %127[^:]:%d", &slot, host, &port) != 3)
            return r;
        freeReplyObject(r);
        redisFree(*c);
        *c = raw_connect_to(host, port);
    }
    fail_msg("raw command: too many redirects");
    return NULL;
}

/* A key-less command on every master of a cluster (one Redis: on it). */
static void raw_all_masters(int argc, const char **argv) {
    redisContext *c = raw_connect();
    redisReply *nodes = redisCommand(c, "CLUSTER NODES");
    if (!nodes || nodes->type != REDIS_REPLY_STRING) { /* not a cluster */
        if (nodes) freeReplyObject(nodes);
        freeReplyObject(redisCommandArgv(c, argc, argv, NULL));
        redisFree(c);
        return;
    }
    /* "<id> <ip>:<port>@<bus> <flags> ..." per line: the masters not failed */
    for (char *line = nodes->str; line && *line;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = '\0';
        char id[64], addr[128], flags[128];
        if (sscanf(line, "%63s %127s %127s", id, addr, flags) == 3 && strstr(flags, "master") &&
            !strstr(flags, "fail") && strchr(addr, ':')) {
            *strchr(addr, '@') = '\0';
            char *colon = strrchr(addr, ':');
            *colon = '\0';
            redisContext *m = raw_connect_to(addr, (int)strtol(colon + 1, NULL, 10));
            freeReplyObject(redisCommandArgv(m, argc, argv, NULL));
            redisFree(m);
        }
        line = next;
    }
    freeReplyObject(nodes);
    redisFree(c);
}

/* A worker's results for two jobs produced straight to Kafka (no record yet): a and b. */
static void worker_results(maas_job_update u[2], maas_job_record *a, maas_job_record *b) {
    static const unsigned char res[] = {0x80};
    for (int i = 0; i < 2; i++)
        u[i] = (maas_job_update){.to = MAAS_JOB_SUCCEEDED,
                                 .from_mask = FROM(MAAS_JOB_QUEUED) | FROM(MAAS_JOB_RUNNING),
                                 .worker = "w1",
                                 .result = res,
                                 .result_len = sizeof(res),
                                 .ttl_s = 600,
                                 .create = i ? b : a};
}

static void test_pipelined_halves_and_notify(void **state) {
    (void)state;
    maas_kv *kv = connect_kv();
    /* two jobs produced straight to Kafka (no record yet); the second asks for :done */
    maas_job_record a = job("job-p0"), b = job("job-p1");
    const char *ids[] = {"job-p0", "job-p1"};
    maas_job_update u[2];
    worker_results(u, &a, &b);
    u[1].notify = 1;
    assert_ok(maas_kv_job_transition_send(kv, 2, ids, u, err, sizeof(err)), err);
    assert_int_equal(maas_kv_job_transition_in_flight(kv), 2);
    assert_err(MAAS_ERR_INVALID_ARGUMENT,
               maas_kv_job_transition_send(kv, 2, ids, u, err, sizeof(err)), err);
    assert_mentions(err, "in flight");
    /* another call meanwhile reads the batch's replies first, then runs */
    maas_job_record got;
    assert_ok(maas_kv_job_get(kv, "job-p1", &got, err, sizeof(err)), err);
    assert_int_equal(got.state, MAAS_JOB_SUCCEEDED);
    assert_int_equal(got.attempts, 1);
    assert_string_equal(got.worker, "w1");
    maas_job_record_release(&got);
    maas_err results[2] = {MAAS_ERR_INVALID_ARGUMENT, MAAS_ERR_INVALID_ARGUMENT};
    assert_ok(maas_kv_job_transition_recv(kv, results, err, sizeof(err)), err);
    assert_int_equal(results[0], MAAS_OK);
    assert_int_equal(results[1], MAAS_OK);
    assert_int_equal(maas_kv_job_transition_in_flight(kv), 0);
    /* delivered again: each one is a CONFLICT (final already), the batch is no error */
    assert_ok(maas_kv_job_transition_batch(kv, 2, ids, u, results, err, sizeof(err)), err);
    assert_int_equal(results[0], MAAS_ERR_CONFLICT);
    assert_int_equal(results[1], MAAS_ERR_CONFLICT);
    /* the :done list exists only for the job that asked, with the record's TTL */
    redisContext *c = raw_connect();
    char key[256];
    snprintf(key, sizeof(key), "%sjob:{job-p0}:done", prefix);
    redisReply *r = rawcmd(&c, "EXISTS %s", key);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    snprintf(key, sizeof(key), "%sjob:{job-p1}:done", prefix);
    r = rawcmd(&c, "LRANGE %s 0 -1", key);
    assert_int_equal(r->elements, 1);
    assert_string_equal(r->element[0]->str, "succeeded");
    freeReplyObject(r);
    r = rawcmd(&c, "TTL %s", key);
    assert_true(r->integer > 500 && r->integer <= 600);
    freeReplyObject(r);
    snprintf(key, sizeof(key), "%sjob:{job-p0}", prefix);
    r = rawcmd(&c, "TTL %s", key);
    assert_true(r->integer > 500 && r->integer <= 600);
    freeReplyObject(r);
    redisFree(c);
    /* a final record: wait returns at once, with or without a :done list */
    maas_job_state st;
    double t0 = now_s();
    assert_ok(maas_kv_job_wait(kv, "job-p0", 5000, &st, err, sizeof(err)), err);
    assert_int_equal(st, MAAS_JOB_SUCCEEDED);
    assert_true(now_s() - t0 < 2.5); /* not the 5 s timeout (loose: a loaded machine) */
    maas_kv_free(kv);
}

/* How many times the node c is connected to ran command name (lower case), scripts' calls
 * included (INFO commandstats). */
static long long cmd_calls(redisContext *c, const char *name) {
    char field[64];
    int len = snprintf(field, sizeof(field), "cmdstat_%s:calls=", name);
    redisReply *r = rawcmd(&c, "INFO commandstats");
    const char *p = r && r->str ? strstr(r->str, field) : NULL;
    long long n = p ? strtoll(p + len, NULL, 10) : 0;
    if (r) freeReplyObject(r);
    return n;
}

/*
 * After a move by another client, the handle's next resolves see it: Redis pushes the
 * invalidation in the same event-loop turn as the mover's reply, a few microseconds on
 * loopback, where a job produced after a move spends milliseconds in Kafka. On a loaded
 * machine Redis can be descheduled between the two writes, so this waits for the expected
 * answer (polling every millisecond, at most 5 s) instead of sleeping a guessed time, and
 * fails if it never comes. Expects version `want`, or MAAS_ERR_UNKNOWN_NAME when want is 0.
 */
static void resolves_to(maas_kv *kv, const char *ref, int want) {
    int v = 0;
    maas_err rc = MAAS_OK;
    for (int i = 0; i < 5000; i++) {
        rc = maas_kv_version_resolve(kv, "cached", ref, &v, err, sizeof(err));
        if (want ? rc == MAAS_OK && v == want : rc == MAAS_ERR_UNKNOWN_NAME) return;
        usleep(1000);
    }
    fail_msg("'%s' still resolves to %d (%s) 5 s after it moved; expected %d", ref, v,
             maas_err_code(rc), want);
}

static void test_version_cache(void **state) {
    (void)state;
    maas_kv *kv = connect_kv();
    assert_ok(maas_kv_cache_versions(kv, err, sizeof(err)), err);
    redisContext *c = raw_connect(); /* another client: moves aliases behind the handle's back */
    char aliases[256], versions[256];
    snprintf(aliases, sizeof(aliases), "%smodel:{cached}:aliases", prefix);
    snprintf(versions, sizeof(versions), "%smodel:{cached}:versions", prefix);
    freeReplyObject(rawcmd(&c, "HSET %s production 1", aliases));
    freeReplyObject(rawcmd(&c, "HSET %s 1.size 10 2.size 10", versions));
    int v = 0;
    assert_ok(maas_kv_version_resolve(kv, "cached", "production", &v, err, sizeof(err)), err);
    assert_int_equal(v, 1);
    /* asked again while nothing moved: answered from the cache, no HGET reaches Redis */
    long long before = cmd_calls(c, "hget");
    assert_true(before > 0); /* the first resolve's HGET is counted: the stat is read */
    for (int i = 0; i < 5; i++) {
        assert_ok(maas_kv_version_resolve(kv, "cached", "production", &v, err, sizeof(err)), err);
        assert_int_equal(v, 1);
    }
    assert_int_equal(cmd_calls(c, "hget"), before);
    /* moved by another client: resolves see it (resolves_to) */
    freeReplyObject(rawcmd(&c, "HSET %s production 2", aliases));
    resolves_to(kv, "production", 2);
    /* with the adapter's own alias move too */
    assert_ok(maas_kv_alias_set(kv, "cached", "production", 1, -1, err, sizeof(err)), err);
    resolves_to(kv, "production", 1);
    /* a numbered version, cached as existing, then deleted */
    assert_ok(maas_kv_version_resolve(kv, "cached", "2", &v, err, sizeof(err)), err);
    assert_int_equal(v, 2);
    freeReplyObject(rawcmd(&c, "HDEL %s 2.size", versions));
    resolves_to(kv, "2", 0);
    /* the alias deleted: unknown */
    freeReplyObject(rawcmd(&c, "HDEL %s production", aliases));
    resolves_to(kv, "production", 0);
    redisFree(c);
    maas_kv_free(kv);
}

/*
 * A key of the wrong type (or any error of Redis's own) is SERVER_ERROR, permanent for
 * that request, so a worker fails the job instead of retrying it forever; the same handle
 * goes on serving other keys, and a pipelined batch keeps the refusal to its one job.
 */
static void test_server_errors_are_permanent(void **state) {
    (void)state;
    maas_kv *kv = connect_kv();
    redisContext *c = raw_connect();
    char key[128];
    snprintf(key, sizeof(key), "%sjob:{job-broken}", prefix);
    /* a hash where a record (a string) should be - one written before records were JSON */
    freeReplyObject(rawcmd(&c, "HSET %s state queued", key));
    maas_job_record r;
    assert_err(MAAS_ERR_SERVER_ERROR, maas_kv_job_get(kv, "job-broken", &r, err, sizeof(err)), err);
    assert_mentions(err, "WRONGTYPE");
    assert_false(maas_err_retriable(MAAS_ERR_SERVER_ERROR));
    assert_string_equal(maas_err_code(MAAS_ERR_SERVER_ERROR), "SERVER_ERROR");
    maas_job_update u = {.to = MAAS_JOB_FAILED, .from_mask = FROM(MAAS_JOB_QUEUED)};
    assert_err(MAAS_ERR_SERVER_ERROR,
               maas_kv_job_transition(kv, "job-broken", &u, err, sizeof(err)), err);
    /* the handle still works */
    maas_job_record ok = job("job-fine");
    assert_ok(maas_kv_job_create(kv, &ok, 60, err, sizeof(err)), err);
    /* in a pipelined batch, only the broken job's result says so */
    const char *ids[] = {"job-fine", "job-broken"};
    maas_job_update ups[2] = {
        {.to = MAAS_JOB_RUNNING, .from_mask = FROM(MAAS_JOB_QUEUED), .worker = "w"},
        {.to = MAAS_JOB_RUNNING, .from_mask = FROM(MAAS_JOB_QUEUED), .worker = "w"}};
    maas_err res[2];
    assert_ok(maas_kv_job_transition_send(kv, 2, ids, ups, err, sizeof(err)), err);
    assert_ok(maas_kv_job_transition_recv(kv, res, err, sizeof(err)), err);
    assert_int_equal(res[0], MAAS_OK);
    assert_int_equal(res[1], MAAS_ERR_SERVER_ERROR);
    /* a string that is not a record: BAD_FORMAT, saying so */
    freeReplyObject(rawcmd(&c, "DEL %s", key));
    freeReplyObject(rawcmd(&c, "SET %s not-json", key));
    assert_err(MAAS_ERR_BAD_FORMAT, maas_kv_job_get(kv, "job-broken", &r, err, sizeof(err)), err);
    assert_mentions(err, "not a JSON object");
    freeReplyObject(rawcmd(&c, "SET %s {\"state\":\"succeeded\",\"result\":\"!!\"}", key));
    assert_err(MAAS_ERR_BAD_FORMAT, maas_kv_job_get(kv, "job-broken", &r, err, sizeof(err)), err);
    assert_mentions(err, "not base64");
    redisFree(c);
    maas_kv_free(kv);
}

/* A master of the cluster (from CLUSTER NODES): the one serving slot (want_slot >= 0), or
 * any other than not_id. 0 when there is none. */
typedef struct cluster_node {
    char id[64], host[128];
    int port;
} cluster_node;

static int find_master(int want_slot, const char *not_id, cluster_node *out) {
    redisContext *c = raw_connect();
    redisReply *nodes = redisCommand(c, "CLUSTER NODES");
    int found = 0;
    if (!nodes || nodes->type != REDIS_REPLY_STRING) fail_msg("CLUSTER NODES");
    char *save = NULL;
    for (char *line = strtok_r(nodes->str, "\n", &save); line && !found;
         line = strtok_r(NULL, "\n", &save)) {
        char id[64], addr[128], flags[128];
        int at = 0;
        if (sscanf(line, "%63s %127s %127s %*s %*s %*s %*s %*s%n", id, addr, flags, &at) != 3 ||
            !strstr(flags, "master") || strstr(flags, "fail") || !strchr(addr, '@'))
            continue;
        int serves = want_slot < 0;
        for (char *p = line + at; want_slot >= 0 && *p;) {
            char *end;
            long lo = strtol(p, &end, 10), hi = lo;
            if (end == p) break;
            if (*end == '-') hi = strtol(end + 1, &end, 10);
            if (want_slot >= lo && want_slot <= hi) serves = 1;
            p = end + strspn(end, " ");
        }
        if (!serves || (not_id && !strcmp(id, not_id))) continue;
        *strchr(addr, '@') = '\0';
        snprintf(out->id, sizeof(out->id), "%s", id);
        snprintf(out->host, sizeof(out->host), "%.*s", (int)(strrchr(addr, ':') - addr), addr);
        out->port = (int)strtol(strrchr(addr, ':') + 1, NULL, 10);
        found = 1;
    }
    freeReplyObject(nodes);
    redisFree(c);
    return found;
}

/* Moves an empty slot from one master to another, as redis-cli --cluster reshard does. */
static void move_slot(int slot, const cluster_node *from, const cluster_node *to) {
    redisContext *f = raw_connect_to(from->host, from->port);
    redisContext *t = raw_connect_to(to->host, to->port);
    const char *steps[][2] = {{"t", "IMPORTING"}, {"f", "MIGRATING"}, {"t", "NODE"}, {"f", "NODE"}};
    for (size_t i = 0; i < MAAS_ARRAY_LEN(steps); i++) {
        redisContext *c = steps[i][0][0] == 't' ? t : f;
        const char *arg = !strcmp(steps[i][1], "IMPORTING") ? from->id : to->id;
        redisReply *r = redisCommand(c, "CLUSTER SETSLOT %d %s %s", slot, steps[i][1], arg);
        if (!r || r->type == REDIS_REPLY_ERROR)
            fail_msg("CLUSTER SETSLOT %d %s: %s", slot, steps[i][1], r ? r->str : "no reply");
        freeReplyObject(r);
    }
    redisFree(f);
    redisFree(t);
    /* every master agrees before the test goes on (gossip, within the node timeout) */
    cluster_node now;
    for (int i = 0; i < 200; i++) {
        if (find_master(slot, NULL, &now) && !strcmp(now.id, to->id)) return;
        usleep(50 * 1000);
    }
    fail_msg("slot %d did not move to %s", slot, to->id);
}

/* A cluster batch goes to each node with its keys undeclared (their slots differ): a job whose
 * slot moved away since the handle read the slot map fails alone, retriable, and the batch
 * sent again after that lands it on its new node. One Redis: nothing to move (skipped). */
static void test_batch_slot_moved(void **state) {
    (void)state;
    const char *url = getenv("MAAS_REDIS_URL");
    if (!url || strncmp(url, "redis+cluster://", 16)) skip();
    maas_kv *kv = connect_kv();
    redisContext *c = raw_connect();
    /* two jobs served by the same master, in different slots */
    char ids[2][64], key[2][256];
    int slot[2] = {-1, -1};
    cluster_node owner, other;
    for (int n = 0, i = 0; i < 2 && n < 10000; n++) {
        snprintf(ids[i], sizeof(ids[i]), "job-mv%d", n);
        snprintf(key[i], sizeof(key[i]), "%sjob:{%s}", prefix, ids[i]);
        redisReply *r = redisCommand(c, "CLUSTER KEYSLOT %s", key[i]);
        assert_true(r && r->type == REDIS_REPLY_INTEGER);
        slot[i] = (int)r->integer;
        freeReplyObject(r);
        cluster_node m;
        assert_true(find_master(slot[i], NULL, &m));
        if (i == 0) owner = m;
        if (i == 0 || (!strcmp(m.id, owner.id) && slot[1] != slot[0])) i++;
    }
    assert_true(slot[1] >= 0 && slot[1] != slot[0]);
    assert_true(find_master(-1, owner.id, &other));
    maas_job_record a = job(ids[0]), b = job(ids[1]);
    const char *pids[] = {ids[0], ids[1]};
    maas_job_update u[2];
    worker_results(u, &a, &b);
    maas_job_record got;
    /* the handle reads the slot map now, then the first job's slot moves away */
    assert_ok(maas_kv_job_get(kv, ids[0], &got, err, sizeof(err)), err);
    assert_int_equal(got.state, MAAS_JOB_UNKNOWN);
    maas_job_record_release(&got);
    move_slot(slot[0], &owner, &other);
    maas_err results[2];
    assert_err(MAAS_ERR_UNAVAILABLE,
               maas_kv_job_transition_batch(kv, 2, pids, u, results, err, sizeof(err)), err);
    assert_mentions(err, "non local key");
    assert_int_equal(results[0], MAAS_ERR_UNAVAILABLE);
    assert_int_equal(results[1], MAAS_OK);
    redisReply *r = rawcmd(&c, "EXISTS %s", key[0]);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    /* sent again (as the worker retries): the stored one is final already, the other lands
     * on the slot's new master */
    assert_ok(maas_kv_job_transition_batch(kv, 2, pids, u, results, err, sizeof(err)), err);
    assert_int_equal(results[0], MAAS_OK);
    assert_int_equal(results[1], MAAS_ERR_CONFLICT);
    for (int i = 0; i < 2; i++) {
        assert_ok(maas_kv_job_get(kv, ids[i], &got, err, sizeof(err)), err);
        assert_int_equal(got.state, MAAS_JOB_SUCCEEDED);
        maas_job_record_release(&got);
    }
    /* the slot goes home (emptied first: a slot moves with its keys, or empty) */
    redisContext *n = raw_connect_to(other.host, other.port);
    freeReplyObject(redisCommand(n, "DEL %s %s:events %s:done", key[0], key[0], key[0]));
    redisFree(n);
    move_slot(slot[0], &other, &owner);
    redisFree(c);
    maas_kv_free(kv);
}

/* SCRIPT FLUSH (or a restart the handle did not see): every script runs by EVALSHA, so a
 * command finds NOSCRIPT, loads them all again and runs; a pipelined batch sent into it
 * reads as retriable and the next batch goes through. */
/* The adapter routes by its own slot of each key: Redis's own answer for random keys (printable
 * bytes, braces frequent: tags empty, unclosed, nested), and for the keys maas makes. */
static void test_keyslot_matches_cluster(void **state) {
    (void)state;
    const char *url = getenv("MAAS_REDIS_URL");
    if (!url || strncmp(url, "redis+cluster://", 16)) skip();
    redisContext *c = raw_connect();
    srand(11);
    for (int i = 0; i < 3000; i++) {
        char k[40];
        int n = i < 2 ? 0 : 1 + rand() % (int)sizeof(k);
        for (int j = 0; j < n; j++) {
            int r = rand() % 6;
            k[j] = r == 0 ? '{' : r == 1 ? '}' : (char)(33 + rand() % 94);
        }
        if (i == 1) n = snprintf(k, sizeof(k), "%sjob:{j-%d}:done", "maas:t:acme:", i);
        redisReply *r = redisCommand(c, "CLUSTER KEYSLOT %b", k, (size_t)n);
        if (!r || r->type != REDIS_REPLY_INTEGER) fail_msg("CLUSTER KEYSLOT: no integer reply");
        if ((long long)kv_keyslot(k, (size_t)n) != r->integer)
            fail_msg("key '%.*s': slot %u, Redis says %lld", n, k, kv_keyslot(k, (size_t)n),
                     r->integer);
        freeReplyObject(r);
    }
    redisFree(c);
}

static void test_scripts_flushed(void **state) {
    (void)state;
    const char *flush[] = {"SCRIPT", "FLUSH"};
    maas_kv *kv = connect_kv();
    raw_all_masters(2, flush);
    maas_job_record a = job("job-flush-a"), b = job("job-flush-b");
    assert_ok(maas_kv_job_create(kv, &a, 60, err, sizeof(err)), err);
    assert_ok(maas_kv_job_create(kv, &b, 60, err, sizeof(err)), err);
    raw_all_masters(2, flush);
    const char *ids[] = {"job-flush-a", "job-flush-b"};
    maas_job_update ups[2] = {
        {.to = MAAS_JOB_RUNNING, .from_mask = FROM(MAAS_JOB_QUEUED), .worker = "w"},
        {.to = MAAS_JOB_RUNNING, .from_mask = FROM(MAAS_JOB_QUEUED), .worker = "w"}};
    maas_err res[2];
    assert_ok(maas_kv_job_transition_send(kv, 2, ids, ups, err, sizeof(err)), err);
    assert_err(MAAS_ERR_UNAVAILABLE, maas_kv_job_transition_recv(kv, res, err, sizeof(err)), err);
    assert_mentions(err, "NOSCRIPT");
    assert_int_equal(res[0], MAAS_ERR_UNAVAILABLE);
    assert_int_equal(res[1], MAAS_ERR_UNAVAILABLE);
    assert_ok(maas_kv_job_transition_batch(kv, 2, ids, ups, res, err, sizeof(err)), err);
    assert_int_equal(res[0], MAAS_OK);
    assert_int_equal(res[1], MAAS_OK);
    maas_job_record r;
    assert_ok(maas_kv_job_get(kv, "job-flush-b", &r, err, sizeof(err)), err);
    assert_int_equal(r.state, MAAS_JOB_RUNNING);
    assert_int_equal(r.attempts, 1);
    maas_job_record_release(&r);
    maas_kv_free(kv);
}

static void test_cancel(void **state) {
    (void)state;
    maas_kv *kv = connect_kv();
    maas_job_record q = job("job-cq"), r = job("job-cr"), got;
    assert_ok(maas_kv_job_create(kv, &q, 0, err, sizeof(err)), err);
    assert_ok(maas_kv_job_cancel(kv, "job-cq", err, sizeof(err)), err);
    assert_ok(maas_kv_job_get(kv, "job-cq", &got, err, sizeof(err)), err);
    assert_int_equal(got.state, MAAS_JOB_CANCELLED); /* queued: cancelled at once */
    maas_job_record_release(&got);
    assert_ok(maas_kv_job_create(kv, &r, 0, err, sizeof(err)), err);
    maas_job_update run = {
        .to = MAAS_JOB_RUNNING, .from_mask = FROM(MAAS_JOB_QUEUED), .worker = "w"};
    assert_ok(maas_kv_job_transition(kv, "job-cr", &run, err, sizeof(err)), err);
    assert_ok(maas_kv_job_cancel(kv, "job-cr", err, sizeof(err)), err);
    /* running: the worker learns it at its next heartbeat */
    assert_err(MAAS_ERR_CANCELLED, maas_kv_job_heartbeat(kv, "job-cr", "w", NULL, err, sizeof(err)),
               err);
    assert_err(MAAS_ERR_UNKNOWN_NAME, maas_kv_job_cancel(kv, "job-none", err, sizeof(err)), err);
    maas_kv_free(kv);
}

static void test_registry(void **state) {
    (void)state;
    maas_kv *kv = connect_kv();
    unsigned char h5a[1000], h5b[2000];
    for (size_t i = 0; i < sizeof(h5a); i++) h5a[i] = (unsigned char)(i * 7);
    for (size_t i = 0; i < sizeof(h5b); i++) h5b[i] = (unsigned char)(i * 13);
    int v, created;
    assert_ok(maas_kv_version_create(kv, "pima", "train-1", 0, h5a, sizeof(h5a), "{\"acc\":0.74}",
                                     NULL, &v, &created, err, sizeof(err)),
              err);
    assert_int_equal(v, 1);
    assert_true(created);
    /* the same job again (a redelivery): no second version */
    assert_ok(maas_kv_version_create(kv, "pima", "train-1", 0, h5a, sizeof(h5a), NULL, NULL, &v,
                                     &created, err, sizeof(err)),
              err);
    assert_int_equal(v, 1);
    assert_false(created);
    assert_ok(maas_kv_version_create(kv, "pima", "train-2", 1, h5b, sizeof(h5b), NULL, "{}", &v,
                                     &created, err, sizeof(err)),
              err);
    assert_int_equal(v, 2);
    int r;
    assert_ok(maas_kv_version_resolve(kv, "pima", "latest", &r, err, sizeof(err)), err);
    assert_int_equal(r, 2);
    assert_ok(maas_kv_version_resolve(kv, "pima", "1", &r, err, sizeof(err)), err);
    assert_int_equal(r, 1);
    assert_err(MAAS_ERR_UNKNOWN_NAME,
               maas_kv_version_resolve(kv, "pima", "9", &r, err, sizeof(err)), err);
    assert_mentions(err, "no version 9");
    assert_err(MAAS_ERR_UNKNOWN_NAME,
               maas_kv_version_resolve(kv, "pima", "production", &r, err, sizeof(err)), err);
    assert_err(MAAS_ERR_UNKNOWN_NAME,
               maas_kv_version_resolve(kv, "nope", "latest", &r, err, sizeof(err)), err);

    unsigned char *bytes;
    size_t len;
    maas_version_meta meta;
    assert_ok(maas_kv_version_get(kv, "pima", 1, &bytes, &len, &meta, err, sizeof(err)), err);
    assert_int_equal(len, sizeof(h5a));
    assert_memory_equal(bytes, h5a, len);
    assert_int_equal(meta.parent, 0);
    assert_string_equal(meta.job, "train-1");
    assert_string_equal(meta.metrics, "{\"acc\":0.74}");
    assert_int_equal(strlen(meta.sha256), 64);
    free(bytes);
    maas_version_meta_release(&meta);
    assert_ok(maas_kv_version_get(kv, "pima", 2, &bytes, &len, &meta, err, sizeof(err)), err);
    assert_int_equal(meta.parent, 1);
    free(bytes);
    maas_version_meta_release(&meta);

    /* aliases: set, compare-and-set, refuse a missing version */
    assert_ok(maas_kv_alias_set(kv, "pima", "production", 1, 0, err, sizeof(err)), err);
    assert_ok(maas_kv_version_resolve(kv, "pima", "production", &r, err, sizeof(err)), err);
    assert_int_equal(r, 1);
    assert_err(MAAS_ERR_CONFLICT,
               maas_kv_alias_set(kv, "pima", "production", 2, 0, err, sizeof(err)), err);
    assert_ok(maas_kv_alias_set(kv, "pima", "production", 2, 1, err, sizeof(err)), err);
    assert_err(MAAS_ERR_UNKNOWN_NAME,
               maas_kv_alias_set(kv, "pima", "production", 7, -1, err, sizeof(err)), err);
    assert_err(MAAS_ERR_INVALID_ARGUMENT,
               maas_kv_alias_set(kv, "pima", "3rd", 1, -1, err, sizeof(err)), err);

    char **names;
    int n;
    assert_ok(maas_kv_models(kv, &names, &n, err, sizeof(err)), err);
    assert_int_equal(n, 1);
    assert_string_equal(names[0], "pima");
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    maas_kv_free(kv);
}

typedef struct {
    int thread;
    int versions[20];
    int moves_won;
} racer;

static void *race_versions(void *p) {
    racer *rc = p;
    char e[MAAS_ERRSTR_SIZE], jobid[64];
    maas_kv *kv = connect_kv();
    unsigned char blob[16] = {1, 2, 3};
    for (int i = 0; i < 20; i++) {
        snprintf(jobid, sizeof(jobid), "race-%d-%d", rc->thread, i);
        if (maas_kv_version_create(kv, "race", jobid, 0, blob, sizeof(blob), NULL, NULL,
                                   &rc->versions[i], NULL, e, sizeof(e)))
            rc->versions[i] = -1;
    }
    /* both threads try to move "production" from 1 to their own version at once */
    for (int i = 0; i < 20; i++)
        if (maas_kv_alias_set(kv, "race", "canary", rc->versions[i],
                              i == 0 ? 0 : rc->versions[i - 1], e, sizeof(e)) == MAAS_OK)
            rc->moves_won++;
    maas_kv_free(kv);
    return NULL;
}

static void test_atomic_under_concurrency(void **state) {
    (void)state;
    racer r[2] = {{.thread = 0}, {.thread = 1}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, race_versions, &r[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    int seen[41] = {0};
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < 20; i++) {
            int v = r[t].versions[i];
            assert_true(v >= 1 && v <= 40);
            assert_int_equal(seen[v], 0); /* no number handed out twice */
            seen[v] = 1;
        }
    /* compare-and-set: a chain of moves where each expects its own previous value.
     * The first move of exactly one thread wins (expect 0); the other's chain fails
     * from the start, so the winners' count is 20 and the loser's 0. */
    assert_int_equal(r[0].moves_won + r[1].moves_won, 20);
    assert_true(r[0].moves_won == 0 || r[1].moves_won == 0);
}

/* A record is bound to its message: only a message of its type, model and digest moves it. */
static void test_record_bound_to_message(void **state) {
    (void)state;
    maas_kv *kv = connect_kv();
    maas_job_record r = job("bound-1");
    snprintf(r.type, sizeof(r.type), "train");
    snprintf(r.model, sizeof(r.model), "m");
    memset(r.digest, 'a', 64);
    assert_ok(maas_kv_job_create(kv, &r, 60, err, sizeof(err)), err);
    maas_job_record msg = r; /* what a worker derives from the message it holds */
    maas_job_update run = {.to = MAAS_JOB_RUNNING,
                           .from_mask = MAAS_JOB_FROM(MAAS_JOB_QUEUED),
                           .worker = "w",
                           .create = &msg};
    msg.digest[0] = 'b'; /* other bytes under the same id */
    assert_err(MAAS_ERR_MISMATCH, maas_kv_job_transition(kv, "bound-1", &run, err, sizeof(err)),
               err);
    assert_non_null(strstr(err, "does not match"));
    msg = r;
    snprintf(msg.type, sizeof(msg.type), "infer"); /* another type */
    assert_err(MAAS_ERR_MISMATCH, maas_kv_job_transition(kv, "bound-1", &run, err, sizeof(err)),
               err);
    maas_job_record now;
    assert_ok(maas_kv_job_get(kv, "bound-1", &now, err, sizeof(err)), err);
    assert_int_equal(now.state, MAAS_JOB_QUEUED);
    assert_int_equal(now.attempts, 0);
    assert_memory_equal(now.digest, r.digest, 64);
    maas_job_record_release(&now);
    msg = r; /* the message the record was made for */
    assert_ok(maas_kv_job_transition(kv, "bound-1", &run, err, sizeof(err)), err);
    /* a record written without a digest (a client of its own): type and model decide */
    maas_job_record plain = job("bound-2");
    snprintf(plain.type, sizeof(plain.type), "infer");
    snprintf(plain.model, sizeof(plain.model), "m");
    assert_ok(maas_kv_job_create(kv, &plain, 60, err, sizeof(err)), err);
    msg = plain;
    memset(msg.digest, 'c', 64);
    snprintf(msg.model, sizeof(msg.model), "other");
    run.create = &msg;
    assert_err(MAAS_ERR_MISMATCH, maas_kv_job_transition(kv, "bound-2", &run, err, sizeof(err)),
               err);
    snprintf(msg.model, sizeof(msg.model), "m");
    assert_ok(maas_kv_job_transition(kv, "bound-2", &run, err, sizeof(err)), err);
    maas_kv_free(kv);
}

/*
 * The hot path (a worker's result for an inference job produced straight to Kafka: the record
 * made whole, only if absent, in one SET NX EX): the record stored is the worker's, JSON with
 * its result and cost; a redelivery of the same result finds it final (CONFLICT) and leaves
 * it; a record that exists already (submitted: queued) is moved by the checked path with the
 * whole record's fields (attempts counted, bound to the message: another digest is MISMATCH).
 */
static void test_hot_path(void **state) {
    (void)state;
    maas_kv *kv = connect_kv();
    const unsigned char result[] = {0x81, 0xa1, 'p', 0xcb, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0, 0xff};
    maas_job_cost cost = {.cpu_s = 1.5e-5, .queue_s = 0.002, .flops = 180, .peak_bytes = 40};
    snprintf(cost.method, sizeof(cost.method), "model");
    maas_job_record msg = job("hot-0");
    snprintf(msg.type, sizeof(msg.type), "infer");
    snprintf(msg.model, sizeof(msg.model), "m \"quoted\"\n");
    msg.created_ms = 1000;
    memset(msg.digest, 'd', 64);
    int64_t started = maas_wall_ms() - 5;
    maas_job_update u = {.to = MAAS_JOB_SUCCEEDED,
                         .from_mask =
                             MAAS_JOB_FROM(MAAS_JOB_QUEUED) | MAAS_JOB_FROM(MAAS_JOB_RUNNING),
                         .worker = "w-hot",
                         .result = result,
                         .result_len = sizeof(result),
                         .ttl_s = 60,
                         .create = &msg,
                         .started_ms = started,
                         .cost = &cost};
    const char *ids[] = {"hot-1", "hot-2"};
    maas_job_update us[] = {u, u};
    maas_err results[2];
    redisContext *c = raw_connect();
    char key[128];
    snprintf(key, sizeof(key), "%sjob:{hot-2}", prefix);
    freeReplyObject(rawcmd(&c, "EXISTS %s", key)); /* c: on the node serving hot-2 */
    long long gets = cmd_calls(c, "get");
    assert_ok(maas_kv_job_transition_batch(kv, 2, ids, us, results, err, sizeof(err)), err);
    assert_int_equal(results[0], MAAS_OK);
    assert_int_equal(results[1], MAAS_OK);
    /* the hot form ran: its SET NX decided, nothing was read (the checked path GETs) */
    assert_int_equal(cmd_calls(c, "get"), gets);
    maas_job_record got;
    assert_ok(maas_kv_job_get(kv, "hot-2", &got, err, sizeof(err)), err);
    assert_int_equal(got.state, MAAS_JOB_SUCCEEDED);
    assert_int_equal(got.attempts, 1);
    assert_string_equal(got.worker, "w-hot");
    assert_string_equal(got.model, msg.model); /* escaped and read back */
    assert_int_equal(got.created_ms, 1000);
    assert_int_equal(got.started_ms, started);
    assert_true(got.finished_ms >= started);
    assert_memory_equal(got.digest, msg.digest, 64);
    assert_int_equal(got.result_len, sizeof(result));
    assert_memory_equal(got.result, result, sizeof(result));
    assert_true(got.has_cost);
    assert_int_equal((long)got.cost.flops, 180);
    assert_string_equal(got.cost.method, "model");
    maas_job_record_release(&got);
    redisReply *r = rawcmd(&c, "TTL %s", key);
    assert_true(r->integer > 0 && r->integer <= 60);
    freeReplyObject(r);
    /* a redelivery: final already, left as it was */
    us[1].worker = "w-other";
    gets = cmd_calls(c, "get");
    assert_ok(maas_kv_job_transition_batch(kv, 2, ids, us, results, err, sizeof(err)), err);
    assert_int_equal(results[0], MAAS_ERR_CONFLICT);
    assert_int_equal(results[1], MAAS_ERR_CONFLICT);
    assert_true(cmd_calls(c, "get") > gets); /* the existing record read by the checked path */
    assert_ok(maas_kv_job_get(kv, "hot-2", &got, err, sizeof(err)), err);
    assert_string_equal(got.worker, "w-hot");
    maas_job_record_release(&got);
    /* a submitted job (queued): bound to its message, then moved with the result */
    maas_job_record sub = msg;
    snprintf(sub.id, sizeof(sub.id), "hot-3");
    assert_ok(maas_kv_job_create(kv, &sub, 60, err, sizeof(err)), err);
    maas_job_record other = msg;
    other.digest[0] = 'e';
    maas_job_update bad = u;
    bad.create = &other;
    assert_err(MAAS_ERR_MISMATCH, maas_kv_job_transition(kv, "hot-3", &bad, err, sizeof(err)), err);
    assert_ok(maas_kv_job_transition(kv, "hot-3", &u, err, sizeof(err)), err);
    assert_ok(maas_kv_job_get(kv, "hot-3", &got, err, sizeof(err)), err);
    assert_int_equal(got.state, MAAS_JOB_SUCCEEDED);
    assert_int_equal(got.attempts, 1);
    assert_int_equal(got.started_ms, started);
    assert_int_equal(got.result_len, sizeof(result));
    assert_memory_equal(got.result, result, sizeof(result));
    assert_true(got.has_cost);
    maas_job_record_release(&got);
    redisFree(c);
    maas_kv_free(kv);
}

/* A connection as a tenant's Redis user to whichever node serves key (following MOVED, as a
 * cluster client does), with the reply of `GET key` there. */
static redisReply *tenant_get(const char *user, const char *pass, const char *key) {
    const char *url = getenv("MAAS_REDIS_URL");
    char host[128] = "127.0.0.1";
    int port = 26379;
    if (url && !strncmp(url, "redis://", 8)) sscanf(url + 8, "%127[^:]:%d", host, &port);
    if (url && !strncmp(url, "redis+cluster://", 16)) sscanf(url + 16, "%127[^:]:%d", host, &port);
    for (int hop = 0; hop < 4; hop++) {
        redisContext *c = redisConnect(host, port);
        if (!c || c->err) fail_msg("connect %s:%d", host, port);
        redisReply *r = redisCommand(c, "AUTH %s %s", user, pass);
        if (!r || r->type == REDIS_REPLY_ERROR) fail_msg("AUTH as %s failed", user);
        freeReplyObject(r);
        if (url && !strncmp(url, "redis+cluster://", 16)) {
            /* what a cluster client asks first: the slot map */
            r = redisCommand(c, "CLUSTER SLOTS");
            if (!r || r->type != REDIS_REPLY_ARRAY)
                fail_msg("a tenant's CLUSTER SLOTS: %s", r && r->str ? r->str : "no reply");
            freeReplyObject(r);
        }
        r = redisCommand(c, "GET %s", key);
        int slot;
        if (r && r->type == REDIS_REPLY_ERROR &&
            sscanf(r->str, "MOVED %d %127[^:]:%d", &slot, host, &port) == 3) {
            freeReplyObject(r);
            redisFree(c);
            continue;
        }
        redisFree(c);
        return r;
    }
    fail_msg("too many redirects for %s", key);
    return NULL;
}

/* A tenant's read-only Redis user (maas tenant create makes it): on every node of a cluster,
 * with what a cluster client needs (CLUSTER SLOTS) besides reads of its own namespace;
 * another namespace is refused. */
static void test_tenant_reader(void **state) {
    (void)state;
    maas_kv *kv = connect_kv();
    char tenant[32], user[64], key[256], other[256];
    const char *pass = "it-tenant-password-0123456789abcdef";
    snprintf(tenant, sizeof(tenant), "it%ld", (long)getpid());
    int saved = 0;
    assert_ok(maas_kv_tenant_reader(kv, tenant, pass, user, sizeof(user), &saved, err, sizeof(err)),
              err);
    maas_job_record mine = job("tenant-mine"), theirs = job("tenant-theirs");
    assert_ok(maas_kv_job_create(kv, &theirs, 60, err, sizeof(err)), err); /* no tenant's */
    assert_ok(maas_kv_scope(kv, tenant, err, sizeof(err)), err);
    assert_ok(maas_kv_job_create(kv, &mine, 60, err, sizeof(err)), err);
    snprintf(key, sizeof(key), "%st:%s:job:{tenant-mine}", prefix, tenant);
    snprintf(other, sizeof(other), "%sjob:{tenant-theirs}", prefix);
    redisReply *r = tenant_get(user, pass, key);
    assert_non_null(r);
    if (r->type != REDIS_REPLY_STRING || !strstr(r->str, "\"state\":\"queued\""))
        fail_msg("the tenant reads its record: %s", r->str ? r->str : "(not a string)");
    freeReplyObject(r);
    r = tenant_get(user, pass, other);
    assert_non_null(r);
    if (r->type != REDIS_REPLY_ERROR || !strstr(r->str, "NOPERM"))
        fail_msg("another namespace is refused: %s", r->str ? r->str : "(no error)");
    freeReplyObject(r);
    assert_ok(maas_kv_tenant_reader_delete(kv, tenant, err, sizeof(err)), err);
    maas_kv_free(kv);
}

/* Settings the adapter refuses before connecting, naming them. */
static void test_bad_settings(void **state) {
    (void)state;
    const char *url = getenv("MAAS_REDIS_URL");
    static const char *const bad[][2] = {{"redis.prefix", "a{b}:"},
                                         {"redis.prefix", "has space"},
                                         {"redis.timeout_ms", "soon"},
                                         {"redis.timeout_ms", "5"}};
    for (size_t i = 0; i < MAAS_ARRAY_LEN(bad); i++) {
        maas_setting s[] = {{bad[i][0], bad[i][1]}};
        err[0] = '\0';
        assert_null(maas_kv_connect(url, s, 1, err, sizeof(err)));
        if (!strstr(err, bad[i][0])) fail_msg("'%s' does not name %s", err, bad[i][0]);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_job_lifecycle),
        cmocka_unit_test(test_wait_without_polling),
        cmocka_unit_test(test_pipelined_halves_and_notify),
        cmocka_unit_test(test_version_cache),
        cmocka_unit_test(test_server_errors_are_permanent),
        cmocka_unit_test(test_scripts_flushed),
        cmocka_unit_test(test_batch_slot_moved),
        cmocka_unit_test(test_keyslot_matches_cluster),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_atomic_under_concurrency),
        cmocka_unit_test(test_record_bound_to_message),
        cmocka_unit_test(test_hot_path),
        cmocka_unit_test(test_tenant_reader),
        cmocka_unit_test(test_bad_settings),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
