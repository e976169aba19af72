/*
 * The coordinator's housekeeping thread: stale work jobs published again (or
 * failed after max_attempts), version retention, sweeps settled, and the job
 * counts /metrics shows. Everything it knows comes from Redis, so a restart
 * loses nothing.
 */
#include "maas/base.h"
#include "maas/clock.h"
#include "maas/config.h"
#include "maas/strbuf.h"
#include "maas/broker.h"
#include "maas/client.h"
#include "maas/http.h"
#include "maas/job.h"
#include "maas/json.h"
#include "maas/kv.h"
#include "maas/model_io.h"
#include "maas/protocol.h"
#include "maas/sweep.h"
#include "coordinator.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ housekeeping */

/*
 * Work jobs still `running` whose heartbeat is older than stale_s and whose
 * worker no longer announces itself: published again from their stored
 * message (the record goes back to queued, attempts kept), or failed with
 * WORKER_LOST once they started max_attempts times. A job produced straight
 * to Kafka has no stored message: Kafka's redelivery is its way back, so it
 * is left alone. Found through the index of work jobs with a stored message
 * (maas:jobs:work), walked whole every time: no job is missed because newer
 * records outnumber it.
 */
/* One record of the work index: acted on when stale (see above). */
static void check_stale(coord *c, maas_kv *kv, const maas_job_record *r, const maas_worker_info *w,
                        int nw, int64_t now) {
    char e[MAAS_ERRSTR_SIZE];
    int alive = 0;
    for (int k = 0; k < nw; k++) alive |= !strcmp(w[k].id, r->worker);
    int64_t beat = r->heartbeat_ms ? r->heartbeat_ms : r->started_ms;
    if (r->state != MAAS_JOB_RUNNING || alive || now - beat < (int64_t)c->stale_s * 1000) return;
    unsigned char *msg = NULL;
    size_t len = 0;
    char why[400];
    if (maas_kv_job_message_get(kv, r->id, &msg, &len, e, sizeof(e)) != MAAS_OK) {
        free(msg); /* gone with its TTL: Kafka's redelivery is the only way back */
        return;
    }
    if (r->attempts < c->max_attempts) {
        maas_job_update u = {.to = MAAS_JOB_QUEUED, .from_mask = 1u << MAAS_JOB_RUNNING};
        char topic[256]; /* the work topic of the tenant whose job it is */
        maas_client_tenant_topic(c->client, maas_kv_tenant(kv), MAAS_TOPIC_WORK, topic,
                                 sizeof(topic), e, sizeof(e));
        if (maas_kv_job_transition(kv, r->id, &u, e, sizeof(e)) == MAAS_OK) {
            maas_err err =
                maas_client_publish(c->client, kv, topic, r->id, msg, len, 1, e, sizeof(e));
            fprintf(stderr,
                    "maas-coordinator: job %s: worker %s stopped %llds ago; %s (attempt %d "
                    "of %d)\n",
                    r->id, r->worker, (long long)((now - beat) / 1000),
                    err ? "could not publish it again" : "published it again", r->attempts,
                    c->max_attempts);
            pthread_mutex_lock(&c->lock);
            c->stale_requeued += !err;
            pthread_mutex_unlock(&c->lock);
        }
    } else {
        snprintf(why, sizeof(why), "its worker %.64s vanished %llds ago on attempt %d of %d",
                 r->worker, (long long)((now - beat) / 1000), r->attempts, c->max_attempts);
        maas_job_update u = {
            .to = MAAS_JOB_FAILED,
            .from_mask = 1u << MAAS_JOB_RUNNING,
            .error_code = "WORKER_LOST",
            .error_message = why,
            .notify = 1, /* what it asked for is unknown here */
            /* what its lost worker computed is unknown: the queue time */
            .cost = &(maas_job_cost){.queue_s = r->started_ms > r->created_ms
                                                    ? (double)(r->started_ms - r->created_ms) / 1e3
                                                    : 0}};
        if (maas_kv_job_transition(kv, r->id, &u, e, sizeof(e)) == MAAS_OK) {
            fprintf(stderr, "maas-coordinator: job %s failed: %s\n", r->id, why);
            pthread_mutex_lock(&c->lock);
            c->stale_failed++;
            pthread_mutex_unlock(&c->lock);
        }
    }
    free(msg);
}

static void requeue_stale(coord *c, maas_kv *kv, unsigned long counts[MAAS_JOB__COUNT]) {
    char e[MAAS_ERRSTR_SIZE];
    maas_worker_info *w = NULL;
    int nw = 0;
    if (maas_kv_workers_list(kv, &w, &nw, e, sizeof(e))) return;
    int64_t now = maas_wall_ms();
    /* every work job with a stored message, however many: the index, walked whole; a final
     * or vanished record leaves it */
    unsigned long long cursor = 0;
    do {
        char **ids;
        int n;
        if (maas_kv_work_index(kv, &cursor, &ids, &n, e, sizeof(e))) break;
        for (int i = 0; i < n; i++) {
            maas_job_record r;
            if (maas_kv_job_get(kv, ids[i], &r, e, sizeof(e)) == MAAS_OK) {
                if (r.state == MAAS_JOB_UNKNOWN || MAAS_JOB_FINAL(r.state))
                    maas_kv_work_index_remove(kv, ids[i], e, sizeof(e));
                else
                    check_stale(c, kv, &r, w, nw, now);
                maas_job_record_release(&r);
            }
            free(ids[i]);
        }
        free(ids);
    } while (cursor != 0 && !coord_stop);
    maas_worker_info_release(w, nw);
    /* /metrics: jobs by state among the newest records (labelled so) */
    enum { N = 500 };
    maas_job_record *recs = calloc(N, sizeof(*recs));
    int n = 0;
    if (recs && maas_kv_jobs_list(kv, MAAS_JOB_UNKNOWN, N, recs, &n, e, sizeof(e)) == MAAS_OK)
        for (int i = 0; i < n; i++) counts[recs[i].state]++;
    for (int i = 0; i < n; i++) maas_job_record_release(&recs[i]);
    free(recs);
}

/* Keeps each model's newest retain_versions versions and every aliased one. */
static void apply_retention(coord *c, maas_kv *kv) {
    char e[MAAS_ERRSTR_SIZE], **names;
    int n;
    if (c->retain_versions <= 0 || maas_kv_models(kv, &names, &n, e, sizeof(e))) return;
    for (int i = 0; i < n; i++) {
        int count = 0;
        if (maas_kv_version_count(kv, names[i], &count, e, sizeof(e)) == MAAS_OK)
            for (int v = count - c->retain_versions; v >= 1; v--) {
                maas_version_meta meta;
                if (maas_kv_version_meta(kv, names[i], v, &meta, e, sizeof(e))) continue;
                maas_version_meta_release(&meta);
                if (maas_kv_version_delete(kv, names[i], v, e, sizeof(e)) == MAAS_OK) {
                    fprintf(stderr, "maas-coordinator: retention: deleted %s version %d\n",
                            names[i], v);
                    pthread_mutex_lock(&c->lock);
                    c->versions_deleted++;
                    pthread_mutex_unlock(&c->lock);
                }
            }
        free(names[i]);
    }
    free(names);
}

/* What one pass over every namespace saw, for /metrics. */
typedef struct hk_sums {
    unsigned long recent[MAAS_JOB__COUNT];
    unsigned long active, points, finished, settled;
} hk_sums;

/* Sweeps whose points are all final get their promote alias and are marked done. */
static void settle_sweeps(maas_kv *kv, maas_sweep *s, hk_sums *sum) {
    char e[MAAS_ERRSTR_SIZE], **ids;
    int n;
    if (maas_kv_sweeps_active(kv, &ids, &n, e, sizeof(e))) return;
    maas_sweep_row *rows = calloc(MAAS_SWEEP_MAX_POINTS, sizeof(*rows));
    unsigned long settled = 0;
    for (int i = 0; i < n; i++) {
        int did = 0, fin = 0, best;
        if (!rows || maas_kv_sweep_load(kv, ids[i], s, e, sizeof(e)) ||
            maas_sweep_rank(kv, s, rows, &fin, &best, e, sizeof(e))) {
            free(ids[i]);
            continue;
        }
        sum->points += (unsigned long)s->n;
        sum->finished += (unsigned long)fin;
        if (maas_sweep_settle(kv, s, rows, fin, best, &did, e, sizeof(e)) == MAAS_OK && did &&
            ++settled)
            fprintf(stderr, "maas-coordinator: %s%ssweep %s done: best %s version %d%s%s\n",
                    maas_kv_tenant(kv), maas_kv_tenant(kv)[0] ? ": " : "", s->id, s->model,
                    s->best_version, s->promote[0] ? ", promoted to " : "", s->promote);
        free(ids[i]);
    }
    free(rows);
    free(ids);
    sum->active += (unsigned long)n - settled;
    sum->settled += settled;
}

/* Every 2 s, in the single-tenant namespace and each tenant's: sweeps settled; every 10 s,
 * stale jobs and retention. */
void *coord_housekeeping(void *ud) {
    coord *c = ud;
    maas_kv *kv = NULL;
    maas_sweep *s = calloc(1, sizeof(*s));
    char e[MAAS_ERRSTR_SIZE];
    for (long tick = 0; !coord_stop && s; tick++) {
        for (int i = 0; i < 20 && !coord_stop; i++) {
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (!kv &&
            !(kv = maas_kv_connect(c->redis, c->conf.settings, c->conf.n_settings, e, sizeof(e))))
            continue;
        char **tenants = NULL;
        int nt = 0;
        if (maas_kv_tenants(kv, &tenants, &nt, e, sizeof(e))) continue;
        hk_sums sum = {0};
        for (int t = -1; t < nt && !coord_stop; t++) { /* -1: the single-tenant namespace */
            if (maas_kv_scope(kv, t < 0 ? "" : tenants[t], e, sizeof(e))) continue;
            if (tick % 5 == 0) requeue_stale(c, kv, sum.recent);
            if (tick % 5 == 0) apply_retention(c, kv);
            settle_sweeps(kv, s, &sum);
        }
        for (int t = 0; t < nt; t++) free(tenants[t]);
        free(tenants);
        maas_kv_scope(kv, "", e, sizeof(e));
        pthread_mutex_lock(&c->lock);
        if (tick % 5 == 0) memcpy(c->recent, sum.recent, sizeof(sum.recent));
        c->sweeps_active = sum.active;
        c->sweep_points = sum.points;
        c->sweep_finished = sum.finished;
        c->sweeps_settled += sum.settled;
        pthread_mutex_unlock(&c->lock);
    }
    free(s);
    maas_kv_free(kv);
    return NULL;
}
