/*
 * The worker's HTTP endpoint: /metrics (Prometheus text format), /healthz and
 * /readyz. The main thread records into `metrics` under its lock; the HTTP
 * thread only reads a consistent copy.
 */
#include "maas/base.h"
#include "maas/strbuf.h"
#include "worker.h"

#include <stddef.h>

/* /readyz: seconds without an assignment or revocation before a worker says it is ready */
#define READY_SETTLE_S 3.0

static const double time_buckets[N_TIME_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
static const double size_buckets[N_SIZE_BUCKETS] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 1024};

static const char *const type_label[] = {"unknown", "train", "infer", "evaluate", "optimize"};
static const char *const outcome_label[] = {"succeeded", "failed", "expired", "cancelled"};

static void probe_once(worker *w) {
    char e[MAAS_ERRSTR_SIZE];
    int ok = maas_consumer_ping(w->infer_c, 1000, e, sizeof(e)) == MAAS_OK;
    pthread_mutex_lock(&w->metrics.lock);
    w->metrics.kafka_ok = ok;
    pthread_mutex_unlock(&w->metrics.lock);
}

static void *probe_main(void *arg) {
    worker *w = arg;
    while (!atomic_load(&w->probe_stop)) {
        for (int i = 0; i < 50 && !atomic_load(&w->probe_stop); i++) {
            struct timespec ts = {0, 100000000L};
            nanosleep(&ts, NULL);
        }
        if (!atomic_load(&w->probe_stop)) probe_once(w);
    }
    return NULL;
}

void metrics_probe_start(worker *w) {
    probe_once(w);
    atomic_store(&w->probe_stop, 0);
    w->probe_running = pthread_create(&w->probe, NULL, probe_main, w) == 0;
}

void metrics_probe_stop(worker *w) {
    if (!w->probe_running) return;
    atomic_store(&w->probe_stop, 1);
    pthread_join(w->probe, NULL);
    w->probe_running = 0;
}

void metrics_init(metrics *m) {
    memset(m, 0, sizeof(*m));
    m->rebalanced_at[0] = m->rebalanced_at[1] = -1.0; /* not in the groups yet */
    pthread_mutex_init(&m->lock, NULL);
}

static void observe(histogram *h, const double *bounds, int nb, double v) {
    for (int i = 0; i < nb; i++)
        if (v <= bounds[i]) h->buckets[i]++;
    h->count++;
    h->sum += v;
}

void metrics_job(metrics *m, maas_job_type type, job_outcome outcome) {
    pthread_mutex_lock(&m->lock);
    m->jobs[type <= MAAS_JOBTYPE_OPTIMIZE ? type : 0][outcome]++;
    pthread_mutex_unlock(&m->lock);
}

void metrics_queue_time(metrics *m, int infer, double seconds) {
    pthread_mutex_lock(&m->lock);
    observe(&m->queue[infer ? 1 : 0], time_buckets, N_TIME_BUCKETS, seconds);
    pthread_mutex_unlock(&m->lock);
}

void metrics_compute_time(metrics *m, maas_job_type type, double seconds) {
    pthread_mutex_lock(&m->lock);
    observe(&m->compute[type <= MAAS_JOBTYPE_OPTIMIZE ? type : 0], time_buckets, N_TIME_BUCKETS,
            seconds);
    pthread_mutex_unlock(&m->lock);
}

void metrics_batch(metrics *m, int jobs) {
    pthread_mutex_lock(&m->lock);
    observe(&m->batch, size_buckets, N_SIZE_BUCKETS, jobs);
    pthread_mutex_unlock(&m->lock);
}

void metrics_refresh(worker *w) {
    metrics *m = &w->metrics;
    char e[MAAS_ERRSTR_SIZE];
    double now = maas_mono_s();
    int check = now - m->checked_at > 5.0;
    int redis_ok = m->redis_ok;
    /* Redis answers a PING in well under a millisecond: checked here, on the connection the
     * jobs use. Kafka's health comes from the probe thread. */
    if (check) redis_ok = maas_kv_ping(w->kv, e, sizeof(e)) == MAAS_OK;
    pthread_mutex_lock(&m->lock);
    if (check) {
        m->redis_ok = redis_ok;
        m->checked_at = now;
    }
    m->cache_hits = w->cache.hits;
    m->cache_misses = w->cache.misses;
    m->cache_evictions = w->cache.evictions;
    m->cache_bytes = w->cache.bytes;
    m->cache_models = w->cache.n;
    m->lag[0] = maas_consumer_lag(w->work_c);
    m->lag[1] = maas_consumer_lag(w->infer_c);
    m->rebalances[0] = maas_consumer_rebalances(w->work_c);
    m->rebalances[1] = maas_consumer_rebalances(w->infer_c);
    m->assigned[0] = maas_consumer_assigned(w->work_c);
    m->assigned[1] = maas_consumer_assigned(w->infer_c);
    for (int i = 0; i < 2; i++) {
        double s = maas_consumer_settled_s(i ? w->infer_c : w->work_c);
        m->rebalanced_at[i] = s < 0 ? -1.0 : maas_mono_s() - s;
    }
    m->busy = w->task != NULL;
    m->stopping = w->stopping;
    pthread_mutex_unlock(&m->lock);
}

void metrics_cost(metrics *m, const char *tenant, const char *model, maas_job_type type,
                  const maas_job_cost *c) {
    int ty = type <= MAAS_JOBTYPE_OPTIMIZE ? (int)type : 0;
    pthread_mutex_lock(&m->lock);
    cost_total *t = NULL;
    for (int i = 0; i < m->n_costs && !t; i++)
        if (m->costs[i].type == ty && !strcmp(m->costs[i].tenant, tenant) &&
            !strcmp(m->costs[i].model, model))
            t = &m->costs[i];
    if (!t && m->n_costs < N_COST_KEYS - 1) { /* a new key, while there is room */
        t = &m->costs[m->n_costs++];
        snprintf(t->tenant, sizeof(t->tenant), "%s", tenant);
        snprintf(t->model, sizeof(t->model), "%s", model);
        t->type = ty;
    }
    if (!t) { /* the rest, together: bounded label sets */
        t = &m->costs[N_COST_KEYS - 1];
        t->model[0] = t->tenant[0] = '\0';
        t->type = 0;
    }
    t->jobs++;
    t->cpu_s += c->cpu_s;
    t->queue_s += c->queue_s;
    t->compute_s += c->compute_s;
    t->flops += c->flops;
    t->energy_j += c->energy_j;
    pthread_mutex_unlock(&m->lock);
}

/* The per (tenant, model, type) cost totals. */
static void put_costs(maas_strbuf *t, const metrics *m) {
    static const struct {
        const char *name, *help;
        size_t at;
    } series[] = {
        {"maas_worker_job_cost_jobs_total", "Final jobs whose cost is summed below.", 0},
        {"maas_worker_job_cpu_seconds_total", "CPU seconds of the jobs' computation.",
         offsetof(cost_total, cpu_s)},
        {"maas_worker_job_queue_seconds_total",
         "Seconds the jobs waited before a worker took them.", offsetof(cost_total, queue_s)},
        {"maas_worker_job_compute_seconds_total", "Wall seconds of the jobs' computation.",
         offsetof(cost_total, compute_s)},
        {"maas_worker_job_flops_total",
         "Operations the jobs' layers performed (2 per multiply-add).",
         offsetof(cost_total, flops)},
        {"maas_worker_job_energy_joules_total", "Energy of the jobs' CPU time (RAPL or the model).",
         offsetof(cost_total, energy_j)},
    };
    for (size_t s = 0; s < MAAS_ARRAY_LEN(series); s++) {
        maas_strbuf_printf(t, "# HELP %s %s\n# TYPE %s counter\n", series[s].name, series[s].help,
                           series[s].name);
        for (int i = 0; i < N_COST_KEYS; i++) {
            const cost_total *c = &m->costs[i];
            if (!c->jobs) continue;
            double v = s == 0 ? (double)c->jobs : *(const double *)((const char *)c + series[s].at);
            maas_strbuf_printf(t, "%s{tenant=\"%s\",model=\"%s\",type=\"%s\"} %.9g\n",
                               series[s].name, c->tenant, c->model[0] ? c->model : "_other",
                               type_label[c->type], v);
        }
    }
}

static void put_hist(maas_strbuf *t, const char *name, const char *labels, const histogram *h,
                     const double *bounds, int nb) {
    for (int i = 0; i < nb; i++)
        maas_strbuf_printf(t, "%s_bucket{%s%sle=\"%g\"} %lu\n", name, labels, *labels ? "," : "",
                           bounds[i], h->buckets[i]);
    maas_strbuf_printf(t, "%s_bucket{%s%sle=\"+Inf\"} %lu\n", name, labels, *labels ? "," : "",
                       h->count);
    maas_strbuf_printf(t, "%s_sum{%s} %.6f\n%s_count{%s} %lu\n", name, labels, h->sum, name, labels,
                       h->count);
}

void metrics_http(void *ud, const maas_http_request *req, maas_http_response *res) {
    worker *w = ud;
    metrics copy;
    pthread_mutex_lock(&w->metrics.lock);
    memcpy(&copy, &w->metrics, sizeof(copy));
    pthread_mutex_unlock(&w->metrics.lock);
    int healthy = copy.redis_ok && copy.kafka_ok;
    if (strcmp(req->method, "GET")) {
        maas_http_reply(res, 405, "text/plain", "only GET\n");
    } else if (!strcmp(req->path, "/healthz")) {
        maas_http_reply(res, healthy ? 200 : 503, "application/json",
                        "{\"status\": \"%s\", \"worker\": \"%s\", \"kafka\": %s, \"redis\": %s}\n",
                        healthy ? "ok" : "unhealthy", w->cfg.id, copy.kafka_ok ? "true" : "false",
                        copy.redis_ok ? "true" : "false");
    } else if (!strcmp(req->path, "/readyz")) {
        /* ready: healthy, not stopping, partitions assigned, and both groups settled — no
         * assignment or revocation for READY_SETTLE_S (a cooperative rebalance is two rounds
         * about a second apart), so a job produced now is not moved by a rebalance of the
         * fleet's start; a rebalance is seen at the next refresh, at most 1 s later */
        double settled = -1.0;
        if (copy.rebalanced_at[0] >= 0 && copy.rebalanced_at[1] >= 0)
            settled = maas_mono_s() - (copy.rebalanced_at[0] > copy.rebalanced_at[1]
                                           ? copy.rebalanced_at[0]
                                           : copy.rebalanced_at[1]);
        const char *why = !healthy                                   ? "unhealthy"
                          : copy.stopping                            ? "stopping"
                          : settled < 0                              ? "joining the groups"
                          : settled < READY_SETTLE_S                 ? "rebalancing"
                          : copy.assigned[0] + copy.assigned[1] == 0 ? "no partitions assigned"
                                                                     : NULL;
        maas_http_reply(res, why ? 503 : 200, "application/json",
                        "{\"ready\": %s, \"reason\": \"%s\", \"partitions\": {\"work\": %d, "
                        "\"infer\": %d}, \"settled_s\": %.1f, \"stopping\": %s}\n",
                        why ? "false" : "true", why ? why : "", copy.assigned[0], copy.assigned[1],
                        settled, copy.stopping ? "true" : "false");
    } else if (!strcmp(req->path, "/metrics")) {
        maas_strbuf t = {0};
        maas_strbuf_printf(&t,
                           "# HELP maas_worker_jobs_total Jobs that reached a final state here.\n"
                           "# TYPE maas_worker_jobs_total counter\n");
        for (int ty = 0; ty <= MAAS_JOBTYPE_OPTIMIZE; ty++)
            for (int o = 0; o < N_OUTCOMES; o++)
                maas_strbuf_printf(&t, "maas_worker_jobs_total{type=\"%s\",outcome=\"%s\"} %lu\n",
                                   type_label[ty], outcome_label[o], copy.jobs[ty][o]);
        maas_strbuf_printf(
            &t, "# HELP maas_worker_queue_seconds From a job's created_ms to a worker taking it.\n"
                "# TYPE maas_worker_queue_seconds histogram\n");
        put_hist(&t, "maas_worker_queue_seconds", "topic=\"work\"", &copy.queue[0], time_buckets,
                 N_TIME_BUCKETS);
        put_hist(&t, "maas_worker_queue_seconds", "topic=\"infer\"", &copy.queue[1], time_buckets,
                 N_TIME_BUCKETS);
        maas_strbuf_printf(
            &t, "# HELP maas_worker_compute_seconds Compute time per job (inference: per batch).\n"
                "# TYPE maas_worker_compute_seconds histogram\n");
        for (int ty = 1; ty <= MAAS_JOBTYPE_OPTIMIZE; ty++) {
            char labels[32];
            snprintf(labels, sizeof(labels), "type=\"%s\"", type_label[ty]);
            put_hist(&t, "maas_worker_compute_seconds", labels, &copy.compute[ty], time_buckets,
                     N_TIME_BUCKETS);
        }
        maas_strbuf_printf(&t,
                           "# HELP maas_worker_infer_batch_jobs Inference jobs per forward pass.\n"
                           "# TYPE maas_worker_infer_batch_jobs histogram\n");
        put_hist(&t, "maas_worker_infer_batch_jobs", "", &copy.batch, size_buckets, N_SIZE_BUCKETS);
        put_costs(&t, &copy);
        maas_strbuf_printf(
            &t,
            "# TYPE maas_worker_model_cache_hits_total counter\nmaas_worker_model_cache_hits_total "
            "%lu\n# TYPE maas_worker_model_cache_misses_total counter\n"
            "maas_worker_model_cache_misses_total %lu\n"
            "# TYPE maas_worker_model_cache_evictions_total counter\n"
            "maas_worker_model_cache_evictions_total %lu\n"
            "# TYPE maas_worker_model_cache_bytes gauge\nmaas_worker_model_cache_bytes %zu\n"
            "# TYPE maas_worker_model_cache_models gauge\nmaas_worker_model_cache_models %d\n",
            copy.cache_hits, copy.cache_misses, copy.cache_evictions, copy.cache_bytes,
            copy.cache_models);
        maas_strbuf_printf(
            &t,
            "# HELP maas_worker_consumer_lag Messages behind on the assigned partitions.\n"
            "# TYPE maas_worker_consumer_lag gauge\nmaas_worker_consumer_lag{topic=\"work\"} %lld\n"
            "maas_worker_consumer_lag{topic=\"infer\"} %lld\n"
            "# TYPE maas_worker_rebalances_total counter\n"
            "maas_worker_rebalances_total{topic=\"work\"} %ld\n"
            "maas_worker_rebalances_total{topic=\"infer\"} %ld\n"
            "# TYPE maas_worker_assigned_partitions gauge\n"
            "maas_worker_assigned_partitions{topic=\"work\"} %d\n"
            "maas_worker_assigned_partitions{topic=\"infer\"} %d\n"
            "# TYPE maas_worker_busy gauge\nmaas_worker_busy %d\n"
            "# TYPE maas_worker_up gauge\nmaas_worker_up{kafka=\"%d\",redis=\"%d\"} 1\n",
            copy.lag[0], copy.lag[1], copy.rebalances[0], copy.rebalances[1], copy.assigned[0],
            copy.assigned[1], copy.busy, copy.kafka_ok, copy.redis_ok);
        res->status = 200;
        snprintf(res->content_type, sizeof(res->content_type), "text/plain; version=0.0.4");
        res->body = t.p;
        res->body_len = t.len;
    } else {
        maas_http_reply(res, 404, "text/plain", "not found: try /metrics, /healthz, /readyz\n");
    }
}
