/*
 * coordinator.h - what the coordinator's files share: its state, JSON output
 * (json_out.c) and the housekeeping thread (housekeeping.c). Routes and main
 * are coordinator.c.
 */
#ifndef MAAS_COORDINATOR_H
#define MAAS_COORDINATOR_H

#include <pthread.h>
#include <signal.h>

#include "maas/client.h"
#include "maas/config.h"
#include "maas/http.h"
#include "maas/job_state.h"
#include "maas/kv.h"
#include "maas/strbuf.h"
#include "maas/sweep.h"

typedef struct coord {
    char brokers[512], redis[512], prefix[64], listen[64];
    char auth[8];         /* "on": every route but /healthz needs an API key (maas/auth.h); "off" */
    maas_config conf;     /* conf.settings: kafka.* and redis.* (maas/config.h) */
    maas_client *client;  /* the producer and the submit protocol (maas/client.h) */
    pthread_mutex_t lock; /* metrics */
    unsigned long requests[6]; /* requests by status class */
    /* housekeeping settings and what it last saw (under lock) */
    int stale_s, max_attempts, retain_versions;
    /* the HTTP server's limits and the requests' Redis connections: a bounded pool, reused */
    long max_body_mb;
    int max_connections, max_per_client, redis_pool;
    pthread_cond_t pool_freed;
    maas_kv **pool_idle; /* redis_pool slots */
    int pool_n_idle, pool_open;
    unsigned long pool_waits, pool_timeouts;
    unsigned long recent[MAAS_JOB__COUNT], sweeps_active, sweep_points, sweep_finished;
    unsigned long stale_requeued, stale_failed, versions_deleted, sweeps_settled;
} coord;

/* Set by SIGTERM / SIGINT: the HTTP loop and housekeeping stop. */
extern volatile sig_atomic_t coord_stop;

/* json_out.c */
void coord_put_str(maas_strbuf *t, const char *s);
void coord_put_num(maas_strbuf *t, double v);
/* Replies with t's text (t's buffer becomes the response body). */
void coord_reply_text(maas_http_response *res, int status, maas_strbuf *t);
/* Replies {"error": {"code", "message"}}. */
void coord_reply_error(maas_http_response *res, int status, const char *code, const char *msg);
/* The HTTP status that fits a maas error. */
int coord_status_of(maas_err e);
/* A job's result (or null) and a whole record, as JSON. */
void coord_put_result(maas_strbuf *t, const maas_job_record *r);
void coord_put_record(maas_strbuf *t, const maas_job_record *r);
/* The same without the result (lists of jobs). */
void coord_put_record_brief(maas_strbuf *t, const maas_job_record *r);
/* A sweep and its ranked points, as JSON. */
void coord_put_sweep(maas_strbuf *t, const maas_sweep *s, const maas_sweep_row *rows, int finished);

/* coordinator.c: submits through the client (maas/client.h), republishing a known job
 * that is still queued when republish is set (*again then says so); CONFLICT when the id
 * was known and left alone. */
maas_err coord_submit(coord *c, maas_kv *kv, maas_job *j, int republish, int *again, char *e,
                      size_t es);

/* registry.c: GET /v1/models, GET .../versions, PUT .../aliases/{alias}, GET .../h5 */
void coord_route_models(maas_kv *kv, maas_http_response *res);
void coord_route_versions(maas_kv *kv, const char *model, maas_http_response *res);
void coord_route_alias(maas_kv *kv, const char *model, const char *alias,
                       const maas_http_request *req, maas_http_response *res);
void coord_route_h5(maas_kv *kv, const char *model, const char *ref, maas_http_response *res);

/* sweeps.c: POST /v1/sweeps, GET /v1/sweeps/{id} */
/* datasets.c: PUT (store, checked by the codec), GET (its shape), DELETE */
void coord_route_dataset_put(maas_kv *kv, const char *name, const maas_http_request *req,
                             maas_http_response *res);
void coord_route_dataset_get(maas_kv *kv, const char *name, maas_http_response *res);
void coord_route_dataset_delete(maas_kv *kv, const char *name, maas_http_response *res);

void coord_route_sweep_submit(coord *c, maas_kv *kv, const maas_http_request *req,
                              maas_http_response *res);
void coord_route_sweep_get(maas_kv *kv, const char *id, maas_http_response *res);

/* console.c: the web console's files (1 when path is under /ui: replied) and the lists it
 * reads: GET /v1/jobs, /v1/jobs/{id}/epochs, /v1/workers, /v1/sweeps */
int coord_route_ui(const char *path, maas_http_response *res);
void coord_route_jobs_list(maas_kv *kv, const maas_http_request *req, maas_http_response *res);
void coord_route_job_epochs(maas_kv *kv, const char *id, const maas_http_request *req,
                            maas_http_response *res);
void coord_route_workers(maas_kv *kv, maas_http_response *res);
void coord_route_sweeps_active(maas_kv *kv, maas_http_response *res);

/* housekeeping.c: the thread's body (ud: the coord) */
void *coord_housekeeping(void *ud);

#endif
