/*
 * maas-worker - consumes jobs from Kafka, runs the compute core, writes results
 * and model versions to Redis, and stores offsets only after that write.
 * Stateless: start as many as there are partitions to share.
 *
 * Exit status: 0 after a clean shutdown (SIGTERM/SIGINT), 1 when it cannot
 * start (bad settings, Kafka or Redis unreachable at start), 2 on usage errors.
 */
#include "maas/base.h"
#include "maas/client.h"
#include "maas/clock.h"
#include "maas/cpu.h"
#include "maas/gemm.h"
#include "maas/protocol.h"
#include "maas/strbuf.h"
#include "worker.h"

#include <signal.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

void wlog(const worker *w, const char *level, const char *job, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    for (char *p = msg; *p; p++)
        if (*p == '"' || *p == '\n') *p = '\'';
    fprintf(stderr, "ts=%s.%03ldZ level=%s worker=%s%s%s msg=\"%s\"\n", when, ts.tv_nsec / 1000000,
            level, w ? w->cfg.id : "-", job ? " job=" : "", job ? job : "", msg);
}

static const char usage[] =
    "usage: maas-worker [options]\n"
    "  --brokers HOST:PORT     Kafka (env MAAS_KAFKA_BROKERS; default 127.0.0.1:19092)\n"
    "  --redis URL             Redis (env MAAS_REDIS_URL; default redis://127.0.0.1:16379)\n"
    "  --id ID                 worker id (env MAAS_WORKER_ID; default host-pid)\n"
    "  --topic-prefix P        (env MAAS_TOPIC_PREFIX; default maas.)\n"
    "  --config FILE           key=value lines: any option below as name=value, kafka.*, redis.*\n"
    "  --check-config          check the settings, print them (secrets masked), exit: 0 if\n"
    "                          the worker would start with them (nothing is connected)\n"
    "  -X key=value            a setting: kafka.* goes to librdkafka, redis.* to Redis\n"
    "  --batch-max N           inference: up to N jobs per batch (default 0: 256 per Redis\n"
    "                          master, 256 on one Redis, 768 on 3 masters; at most 4096)\n"
    "  --batch-wait-ms T       ... gathered for at most T ms after the first (default 2)\n"
    "  --memory-mb N           memory budget: model cache + inference buffers (a quarter) +\n"
    "                          one work job (the rest); jobs over it fail (default 4096)\n"
    "  --cache-mb N            model cache budget, at most half of --memory-mb (default 512)\n"
    "  --max-job-seconds N     a work job running longer fails with TIMEOUT (default 21600)\n"
    "  --max-attempts N        a job started N times without finishing is dead-lettered (3)\n"
    "  --max-rows N            rows per job (default 10000000)\n"
    "  --max-params N          parameters per trained network (default 50000000)\n"
    "  --max-epochs N          epochs per training job (default 10000)\n"
    "  --grace-s N             on SIGTERM, let a running job finish this long (default 30)\n"
    "  --ttl-s N               job records expire N s after they end (default 604800; 0 never)\n"
    "  --threads N             BLAS threads (default 1)\n"
    "  --core-watts W          energy model: watts per busy core where RAPL counters are\n"
    "                          unreadable (env MAAS_CORE_WATTS; default 6)\n"
    "  --powercap-dir DIR      where RAPL counters are read (default /sys/class/powercap)\n"
    "  --http ADDR:PORT        serve /metrics, /healthz, /readyz (env MAAS_WORKER_HTTP; off)\n";

static int configure(worker_config *c, int argc, char **argv) {
    memset(c, 0, sizeof(*c));
    snprintf(c->brokers, sizeof(c->brokers), "127.0.0.1:19092");
    snprintf(c->redis_url, sizeof(c->redis_url), "redis://127.0.0.1:16379");
    snprintf(c->topic_prefix, sizeof(c->topic_prefix), "%s", MAAS_TOPIC_PREFIX_DEFAULT);
    c->batch_max = 0; /* 256 per Redis master, once connected */
    c->batch_wait_ms = 2;
    c->memory_mb = 4096;
    c->cache_mb = 512;
    c->max_job_s = 6 * 3600;
    c->max_attempts = 3;
    c->max_rows = 10000000;
    c->max_params = 50000000;
    c->max_epochs = 10000;
    c->grace_s = 30;
    c->default_ttl_s = MAAS_JOB_TTL_DEFAULT_S;
    c->threads = 1;
    snprintf(c->core_watts, sizeof(c->core_watts), "6");
    const maas_option opts[] = {
        MAAS_OPTION_CLUSTER(c->brokers, c->redis_url, c->topic_prefix),
        {"id", "MAAS_WORKER_ID", MAAS_OPTION_STRING, c->id, sizeof(c->id), 0, 0},
        {"http", "MAAS_WORKER_HTTP", MAAS_OPTION_STRING, c->http, sizeof(c->http), 0, 0},
        {"batch-max", NULL, MAAS_OPTION_INT, &c->batch_max, 0, 0, 4096},
        {"batch-wait-ms", NULL, MAAS_OPTION_INT, &c->batch_wait_ms, 0, 0, 1000},
        {"memory-mb", "MAAS_WORKER_MEMORY_MB", MAAS_OPTION_LONG, &c->memory_mb, 0, 128, 1 << 24},
        {"cache-mb", NULL, MAAS_OPTION_LONG, &c->cache_mb, 0, 16, 1 << 23},
        {"max-job-seconds", NULL, MAAS_OPTION_INT, &c->max_job_s, 0, 1, 365 * 86400},
        {"max-attempts", NULL, MAAS_OPTION_INT, &c->max_attempts, 0, 1, 100},
        {"max-rows", NULL, MAAS_OPTION_LONG, &c->max_rows, 0, 1, 1L << 32},
        {"max-params", NULL, MAAS_OPTION_LONG, &c->max_params, 0, 1, MAAS_MAX_PARAMS},
        {"max-epochs", NULL, MAAS_OPTION_INT, &c->max_epochs, 0, 1, 1000000},
        {"grace-s", NULL, MAAS_OPTION_INT, &c->grace_s, 0, 0, 3600},
        {"ttl-s", NULL, MAAS_OPTION_INT, &c->default_ttl_s, 0, 0, 365 * 86400},
        {"threads", NULL, MAAS_OPTION_INT, &c->threads, 0, 1, 256},
        {"core-watts", "MAAS_CORE_WATTS", MAAS_OPTION_STRING, c->core_watts, sizeof(c->core_watts),
         0, 0},
        {"powercap-dir", "MAAS_POWERCAP_DIR", MAAS_OPTION_STRING, c->powercap, sizeof(c->powercap),
         0, 0},
    };
    _Static_assert(MAAS_ARRAY_LEN(opts) <= MAAS_ARRAY_LEN(c->opts), "worker_config.opts");
    memcpy(c->opts, opts, sizeof(opts));
    char e[MAAS_ERRSTR_SIZE];
    int help = 0;
    maas_err ce =
        maas_config_init(&c->conf, "maas-worker", c->opts, (int)MAAS_ARRAY_LEN(opts), e, sizeof(e));
    c->conf.checkable = 1;
    if (ce || maas_config_parse_args(&c->conf, argc, argv, &help, e, sizeof(e))) {
        fprintf(stderr, "%s\n%s", e, usage);
        return 2;
    }
    if (help) {
        fputs(usage, stdout);
        return -1;
    }
    char *end;
    double watts = strtod(c->core_watts, &end);
    if (end == c->core_watts || *end || !(watts > 0 && watts <= 1000)) {
        fprintf(stderr, "maas-worker: --core-watts '%s': expected watts in (0, 1000]\n",
                c->core_watts);
        return 2;
    }
    if (c->cache_mb > c->memory_mb / 2) {
        fprintf(stderr, "maas-worker: --cache-mb %ld is over half of --memory-mb %ld\n",
                c->cache_mb, c->memory_mb);
        return 2;
    }
    c->infer_bytes = (size_t)(c->memory_mb / 4) << 20;
    c->work_bytes = ((size_t)c->memory_mb << 20) - ((size_t)c->cache_mb << 20) - c->infer_bytes;
    if (!c->id[0]) {
        char host[64] = "worker";
        gethostname(host, sizeof(host) - 1);
        for (char *p = host; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
                *p = '-';
        snprintf(c->id, sizeof(c->id), "%s-%ld", host, (long)getpid());
    }
    if (maas_name_check("worker id", c->id, e, sizeof(e))) {
        fprintf(stderr, "maas-worker: %s\n", e);
        return 2;
    }
    snprintf(c->group_infer, sizeof(c->group_infer), "%sworkers.infer", c->topic_prefix);
    snprintf(c->group_work, sizeof(c->group_work), "%sworkers.work", c->topic_prefix);
    return 0;
}

static void log_config(const worker *w) {
    maas_strbuf t = {0};
    maas_config_describe(&w->cfg.conf, &t);
    wlog(w, "info", NULL, "config: %s", t.p ? t.p : "");
    free(t.p);
    wlog(w, "info", NULL,
         "kernels: level=%s (cpu %s, cap %s) blas=%s float-batches=%s single-rows=maas_rowvec",
         maas_cpu_level_name(maas_cpu_current()), maas_cpu_level_name(maas_cpu_detected()),
         maas_cpu_level_name(maas_cpu_cap()), maas_blas_describe(),
         maas_float_gemm_name(maas_cpu_float_gemm()));
    if (w->energy.n_zones)
        wlog(w, "info", NULL, "energy: RAPL counters of %d CPU package(s), measured every 10 s",
             w->energy.n_zones);
    else
        wlog(w, "info", NULL,
             "energy: no readable RAPL counter; the model's %.4g W per busy core (--core-watts)",
             w->energy.watts);
}

static void announce(worker *w) {
    char e[MAAS_ERRSTR_SIZE], host[64] = "?", pid[16], done[24], failed[24], since[24], loaded[512];
    gethostname(host, sizeof(host) - 1);
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    snprintf(done, sizeof(done), "%lu", w->jobs_done);
    snprintf(failed, sizeof(failed), "%lu", w->jobs_failed);
    snprintf(since, sizeof(since), "%lld", (long long)maas_wall_ms());
    int n = 0;
    loaded[0] = '\0';
    for (int i = 0; i < w->cache.n && n < (int)sizeof(loaded) - 140; i++)
        n += snprintf(loaded + n, sizeof(loaded) - (size_t)n, "%s%s:%d", i ? "," : "",
                      w->cache.e[i].name, w->cache.e[i].version);
    char lag_i[24], lag_w[24];
    pthread_mutex_lock(&w->metrics.lock);
    snprintf(lag_i, sizeof(lag_i), "%lld", w->metrics.lag[1]);
    snprintf(lag_w, sizeof(lag_w), "%lld", w->metrics.lag[0]);
    pthread_mutex_unlock(&w->metrics.lock);
    maas_setting f[] = {{"id", w->cfg.id},
                        {"host", host},
                        {"pid", pid},
                        {"jobs_done", done},
                        {"jobs_failed", failed},
                        {"last_seen_ms", since},
                        {"loaded", loaded},
                        {"busy", w->task ? w->task->job.id : ""},
                        {"lag_infer", lag_i}, /* messages behind on its partitions */
                        {"lag_work", lag_w}};
    if (maas_kv_worker_announce(w->kv, w->cfg.id, f, (int)MAAS_ARRAY_LEN(f), 15, e, sizeof(e)))
        wlog(w, "warn", NULL, "announce: %s", e);
}

/* maas_consumer_free on a thread of its own (the worker closes its two consumers at once). */
static void *consumer_free_main(void *c) {
    return maas_consumer_free(c) ? (void *)1 : NULL; /* non-NULL: let go unfinished */
}

int main(int argc, char **argv) {
    static worker w;
    int rc = configure(&w.cfg, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    w.started = maas_mono_s();
    char e[MAAS_ERRSTR_SIZE];
    if (maas_cpu_check_env(e, sizeof(e))) {
        fprintf(stderr, "maas-worker: %s\n", e);
        return 2;
    }
    srand((unsigned)(getpid() ^ (unsigned)maas_wall_ms()));
    maas_blas_set_threads(w.cfg.threads);
    if (maas_energy_init(&w.energy, strtod(w.cfg.core_watts, NULL),
                         w.cfg.powercap[0] ? w.cfg.powercap : NULL, NULL, e, sizeof(e))) {
        fprintf(stderr, "maas-worker: %s\n", e);
        return 2;
    }
    maas_energy_sample(&w.energy, maas_mono_s(), 1.0);
    if (!w.cfg.conf.check) log_config(&w);
    if (maas_topic_name(w.cfg.topic_prefix, MAAS_TOPIC_INFER, w.topic_infer, sizeof(w.topic_infer),
                        e, sizeof(e)) ||
        maas_topic_name(w.cfg.topic_prefix, MAAS_TOPIC_WORK, w.topic_work, sizeof(w.topic_work), e,
                        sizeof(e)) ||
        maas_topic_name(w.cfg.topic_prefix, MAAS_TOPIC_DLQ, w.topic_dlq, sizeof(w.topic_dlq), e,
                        sizeof(e)) ||
        maas_tenant_topic_pattern(w.cfg.topic_prefix, MAAS_TOPIC_INFER, w.pattern_infer,
                                  sizeof(w.pattern_infer), e, sizeof(e)) ||
        maas_tenant_topic_pattern(w.cfg.topic_prefix, MAAS_TOPIC_WORK, w.pattern_work,
                                  sizeof(w.pattern_work), e, sizeof(e))) {
        wlog(&w, "error", NULL, "%s", e);
        return 2;
    }
    if (w.cfg.conf.check) { /* --check-config: what connecting would refuse, said now */
        maas_strbuf t = {0};
        maas_client_config cc = {.brokers = w.cfg.brokers,
                                 .redis_url = w.cfg.redis_url,
                                 .topic_prefix = w.cfg.topic_prefix,
                                 .settings = w.cfg.conf.settings,
                                 .n_settings = w.cfg.conf.n_settings};
        rc = maas_client_check(&cc, e, sizeof(e)) ? 2 : 0;
        maas_config_describe(&w.cfg.conf, &t);
        if (rc)
            fprintf(stderr, "maas-worker: %s\n", e);
        else
            printf("%s\nmaas-worker: the configuration is valid\n", t.p ? t.p : "");
        free(t.p);
        maas_config_release(&w.cfg.conf);
        return rc;
    }
    cache_init(&w.cache, (size_t)w.cfg.cache_mb << 20);
    int connected = (w.kv = maas_kv_connect(w.cfg.redis_url, w.cfg.conf.settings,
                                            w.cfg.conf.n_settings, e, sizeof(e))) != NULL;
    for (int i = 0; i < INFER_FLIGHTS && connected; i++)
        connected =
            (w.kv_results[i] = maas_kv_connect(w.cfg.redis_url, w.cfg.conf.settings,
                                               w.cfg.conf.n_settings, e, sizeof(e))) != NULL;
    if (!connected) {
        wlog(&w, "error", NULL, "%s", e);
        return 1;
    }
    if (!w.cfg.batch_max) {
        /* A batch's results are one script call per Redis master, and a call's own cost
         * (Redis: ~100 us) is shared by its jobs: 256 per master keeps a cluster's calls as
         * big as one Redis's (README, "Redis per job, and its floor") */
        int masters = 1;
        if (maas_kv_masters(w.kv, &masters, e, sizeof(e)))
            wlog(&w, "warn", NULL, "%s (inference batches sized for one master)", e);
        w.cfg.batch_max = masters > 16 ? 4096 : 256 * masters;
        wlog(&w, "info", NULL,
             "inference batches of up to %d jobs (%d Redis master%s: 256 each, at most 4096; "
             "--batch-max)",
             w.cfg.batch_max, masters, masters == 1 ? "" : "s");
    }
    /* aliases resolved per job without a round trip each: Redis says when one moves */
    if (maas_kv_cache_versions(w.kv, e, sizeof(e))) wlog(&w, "warn", NULL, "%s", e);
    if (!(w.producer = maas_producer_new(w.cfg.brokers, w.cfg.conf.settings, w.cfg.conf.n_settings,
                                         NULL, NULL, e, sizeof(e)))) {
        wlog(&w, "error", NULL, "%s", e);
        return 1;
    }
    /* the single-tenant topics and every tenant's (maas.t.TENANT.jobs.*) */
    const char *ti[] = {w.topic_infer, w.pattern_infer}, *tw[] = {w.topic_work, w.pattern_work};
    /* The work consumer prefetches little: a paused partition's prefetch is thrown away. */
    maas_setting ws[MAAS_CONFIG_MAX_SETTINGS + 2];
    int nws = 0;
    ws[nws++] = (maas_setting){"kafka.queued.min.messages", "1"};
    ws[nws++] = (maas_setting){"kafka.queued.max.messages.kbytes", "1024"};
    for (int i = 0; i < w.cfg.conf.n_settings; i++) ws[nws++] = w.cfg.conf.settings[i];
    w.infer_c = maas_consumer_new(w.cfg.brokers, w.cfg.group_infer, ti, 2, w.cfg.conf.settings,
                                  w.cfg.conf.n_settings, e, sizeof(e));
    if (w.infer_c)
        w.work_c = maas_consumer_new(w.cfg.brokers, w.cfg.group_work, tw, 2, ws, nws, e, sizeof(e));
    if (!w.infer_c || !w.work_c) {
        wlog(&w, "error", NULL, "%s", e);
        return 1;
    }
    metrics_init(&w.metrics);
    if (w.cfg.http[0]) {
        char addr[64];
        snprintf(addr, sizeof(addr), "%s", w.cfg.http);
        char *colon = strrchr(addr, ':');
        int port = colon ? (int)strtol(colon + 1, NULL, 10) : 0;
        if (colon) *colon = '\0';
        if (!colon || port < 0 || port > 65535 ||
            !(w.http = maas_http_start(addr, port, metrics_http, &w,
                                       &(maas_http_limits){64 << 10, 16, 8, 10}, e, sizeof(e)))) {
            wlog(&w, "error", NULL, "--http %s: %s", w.cfg.http, colon ? e : "expected ADDR:PORT");
            return 1;
        }
        wlog(&w, "info", NULL, "serving /metrics, /healthz, /readyz on %s:%d", addr,
             maas_http_port(w.http));
    }
    metrics_probe_start(&w);
    metrics_refresh(&w);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    wlog(&w, "info", NULL, "ready in %.0f ms: consuming %s and %s, and every tenant's (%s, %s)",
         (maas_mono_s() - w.started) * 1e3, w.topic_infer, w.topic_work, w.pattern_infer,
         w.pattern_work);
    announce(&w);

    maas_message *batch = calloc((size_t)w.cfg.batch_max, sizeof(maas_message));
    double last_announce = maas_mono_s(), last_refresh = maas_mono_s(), stop_at = 0;
    while (1) {
        if (stop_requested && stop_at == 0) {
            stop_at = maas_mono_s() + w.cfg.grace_s;
            w.stopping = 1;
            wlog(&w, "info", NULL, "stopping: no new jobs%s",
                 w.task ? "; finishing the current one" : "");
        }
        if (stop_at && !w.task) break;
        if (stop_at && w.task && maas_mono_s() > stop_at && !atomic_load(&w.task->stop)) {
            wlog(&w, "warn", w.task->job.id, "grace period over: abandoning it for redelivery");
            atomic_store(&w.task->stop, 1);
        }
        poll_work_task(&w);
        maas_message m;
        /* the work consumer: polled always (it is paused while a job runs) */
        if (maas_consumer_poll(w.work_c, 0, &m, e, sizeof(e)) == MAAS_OK && m.handle_) {
            if (!w.task && !stop_at) {
                start_work_job(&w, &m);
            } else {
                /* fetched before the pause took effect, or from a partition assigned since
                 * (an assignment comes unpaused): hand it back, and pause them all again */
                maas_consumer_seek(w.work_c, m.topic, m.partition, m.offset, e, sizeof(e));
                if (w.task) maas_consumer_pause(w.work_c, 1, e, sizeof(e));
            }
            maas_message_release(&m);
        }
        if (stop_at) {
            infer_settle(&w);
            struct timespec ts = {0, 20000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        /* inference: gather up to batch_max jobs, for at most batch_wait_ms after the first */
        int n = 0;
        /* with results in flight, only a look: if nothing is waiting, confirm them first */
        int wait_ms = w.n_flights ? 0 : 10; /* short: the work consumer is polled between */
        if (w.carry.handle_) { /* the first of this batch came with the last one's polls */
            batch[0] = w.carry;
            memset(&w.carry, 0, sizeof(w.carry));
        } else if (maas_consumer_poll(w.infer_c, wait_ms, &batch[0], e, sizeof(e)) != MAAS_OK) {
            batch[0].handle_ = NULL;
        }
        if (batch[0].handle_) {
            n = 1;
            double until = maas_mono_s() + w.cfg.batch_wait_ms / 1000.0;
            while (n < w.cfg.batch_max) {
                int left = (int)((until - maas_mono_s()) * 1000);
                if (maas_consumer_poll(w.infer_c, left > 0 ? left : 0, &batch[n], e, sizeof(e)) !=
                        MAAS_OK ||
                    !batch[n].handle_)
                    break;
                if (strcmp(batch[n].topic, batch[0].topic)) {
                    /* a batch is one tenant's (one topic's): this one starts the next */
                    w.carry = batch[n];
                    break;
                }
                n++;
            }
            infer_take_assignments(&w, batch, n); /* first messages of partitions assigned since */
            if (!process_infer_batch(&w, batch, n))
                for (int i = 0; i < n; i++) maas_message_release(&batch[i]);
        } else if (w.n_flights) {
            infer_settle(&w);
        }
        if (maas_mono_s() - last_refresh > 1.0) {
            maas_energy_sample(&w.energy, maas_mono_s(), 10.0);
            metrics_refresh(&w);
            last_refresh = maas_mono_s();
        }
        if (maas_mono_s() - last_announce > 5.0) {
            announce(&w);
            last_announce = maas_mono_s();
        }
    }
    if (w.carry.handle_) { /* not started: redelivered to whoever has its partition */
        maas_consumer_seek(w.infer_c, w.carry.topic, w.carry.partition, w.carry.offset, e,
                           sizeof(e));
        maas_message_release(&w.carry);
    }
    infer_settle(&w);
    free(batch);
    maas_http_stop(w.http);
    wlog(&w, "info", NULL,
         "leaving the groups: %lu jobs done, %lu failed; %lu inference batches of %.1f jobs on "
         "average",
         w.jobs_done, w.jobs_failed, w.batches,
         w.batches ? (double)w.batched_jobs / (double)w.batches : 0.0);
    metrics_probe_stop(&w); /* before the consumer it probes goes */
    /* both consumers commit their stored offsets and leave their groups at once: each close
     * is bounded (10 s, broker.h) and a stop during a rebalance can take that long for both
     * (a tenant's topics just deleted), so one after the other was 20 s of a 30 s budget */
    double t_leave = maas_mono_s();
    pthread_t closer;
    int threaded = pthread_create(&closer, NULL, consumer_free_main, w.work_c) == 0;
    void *work_let_go = NULL;
    int let_go = maas_consumer_free(w.infer_c);
    if (threaded)
        pthread_join(closer, &work_let_go);
    else
        work_let_go = maas_consumer_free(w.work_c) ? (void *)1 : NULL;
    wlog(&w, "info", NULL, "left the groups in %.1f s%s", maas_mono_s() - t_leave,
         let_go || work_let_go ? " (not cleanly: what did not finish in time was let go; "
                                 "offsets not committed mean redeliveries)"
                               : "");
    maas_producer_free(w.producer); /* flushes: up to 10 s for undelivered dead letters */
    wlog(&w, "info", NULL, "stopped in %.1f s", maas_mono_s() - t_leave);
    cache_release(&w.cache);
    free(w.careful);
    maas_kv_free(w.kv);
    for (int i = 0; i < INFER_FLIGHTS; i++) maas_kv_free(w.kv_results[i]);
    maas_config_release(&w.cfg.conf);
    return 0;
}
