/*
 * sweep.h - hyper-parameter sweeps: a grid (or a random sample of it) over
 * learning rate, layer sizes, batch size and epochs, fanned out as one
 * training job per point, then ranked by a validation metric.
 *
 * A sweep lives in Redis (maas:sweep:{ID}, schemas/redis-keys.md), written
 * before any of its jobs is submitted; its jobs have deterministic ids
 * (ID-001, ID-002, ...), so submitting a sweep again — after a crash of the
 * CLI or the coordinator — submits only what is missing and loses nothing.
 * Whoever follows it (the CLI's --wait, the coordinator's housekeeping) ranks
 * it from the job records and, when every job is final, moves the promote
 * alias to the best version; both arrive at the same answer.
 */
#ifndef MAAS_SWEEP_H
#define MAAS_SWEEP_H

#include <stddef.h>
#include <stdint.h>

#include "maas/err.h"
#include "maas/job.h"
#include "maas/kv.h"

#define MAAS_SWEEP_MAX_VALUES 16  /* values per dimension */
#define MAAS_SWEEP_MAX_POINTS 256 /* jobs per sweep */
#define MAAS_SWEEP_LAYERS_MAX 256 /* a layer list such as "32:relu,1:sigmoid" */

/* The search space; a dimension with no values keeps the base job's setting. */
typedef struct maas_sweep_grid {
    int n_lr, n_batch, n_epochs, n_layers;
    float lr[MAAS_SWEEP_MAX_VALUES];
    int batch[MAAS_SWEEP_MAX_VALUES];
    int epochs[MAAS_SWEEP_MAX_VALUES];
    char layers[MAAS_SWEEP_MAX_VALUES][MAAS_SWEEP_LAYERS_MAX];
    int random;    /* 0: every grid point; N: N distinct points drawn at random */
    uint64_t seed; /* for random */
} maas_sweep_grid;

typedef struct maas_sweep_point {
    char job[MAAS_NAME_MAX + 1];
    float lr;
    int batch_size, epochs;
    char layers[MAAS_SWEEP_LAYERS_MAX];
} maas_sweep_point;

typedef enum maas_sweep_metric {
    MAAS_SWEEP_VAL_LOSS = 0,
    MAAS_SWEEP_VAL_ACCURACY
} maas_sweep_metric;

typedef struct maas_sweep {
    char id[MAAS_NAME_MAX + 1];
    char model[MAAS_NAME_MAX + 1];
    maas_sweep_metric metric;
    char promote[MAAS_NAME_MAX + 1]; /* alias moved to the best version at the end, or "" */
    int64_t created_ms;
    int done;                         /* finished (and promoted, if asked) */
    char best_job[MAAS_NAME_MAX + 1]; /* when done */
    int best_version;                 /* when done; 0 if no job succeeded */
    int n;                            /* points */
    maas_sweep_point points[MAAS_SWEEP_MAX_POINTS];
} maas_sweep;

const char *maas_sweep_metric_name(maas_sweep_metric m);
maas_err maas_sweep_metric_from_name(const char *name, maas_sweep_metric *out, char *errstr,
                                     size_t errstr_size);

/*
 * Fills s->points from the grid around the base training job (its learning
 * rate, batch size, epochs and layers fill the dimensions the grid leaves
 * empty). s->id must be set (job ids are ID-001...). Every layer list is
 * parsed; more than MAAS_SWEEP_MAX_POINTS points is LIMIT_EXCEEDED.
 */
maas_err maas_sweep_expand(maas_sweep *s, const maas_sweep_grid *g, const maas_job *base,
                           char *errstr, size_t errstr_size);

/*
 * The training job of point p: the base job (which must name its data by
 * dataset, not carry it inline) with the point's settings and job id. *out
 * borrows nothing from base (release it with maas_job_release).
 */
maas_err maas_sweep_job(const maas_job *base, const maas_sweep_point *p, maas_job *out,
                        char *errstr, size_t errstr_size);

/* Stores a new sweep; CONFLICT if one with this id exists (then load it). */
maas_err maas_kv_sweep_create(maas_kv *kv, const maas_sweep *s, char *errstr, size_t errstr_size);
/* Loads a sweep; UNKNOWN if there is none. s is large: allocate it on the heap. */
maas_err maas_kv_sweep_load(maas_kv *kv, const char *id, maas_sweep *s, char *errstr,
                            size_t errstr_size);
/* Marks it done with its best version; CONFLICT if it was already done. */
maas_err maas_kv_sweep_finish(maas_kv *kv, const char *id, const char *best_job, int best_version,
                              char *errstr, size_t errstr_size);
/* Ids of sweeps not yet done (*ids: n malloc'ed strings, free each, then it). */
maas_err maas_kv_sweeps_active(maas_kv *kv, char ***ids, int *n, char *errstr, size_t errstr_size);

/* One point's outcome, from its job record. */
typedef struct maas_sweep_row {
    int point; /* index into s->points */
    maas_job_state state;
    int version;                                   /* succeeded: the version it made */
    double val_loss, val_accuracy, loss, accuracy; /* NaN when not known */
    char error[256];                               /* failed: "CODE: message" */
    double score; /* the ranking figure: val_loss, or -val_accuracy (lower is better) */
} maas_sweep_row;

/*
 * Reads every point's record into rows (s->n entries), sorted best first
 * (succeeded by the metric — NaN last —, then running/queued, then failed).
 * *finished counts the points in a final state; *best is the index into rows
 * of the best succeeded point, or -1.
 */
maas_err maas_sweep_rank(maas_kv *kv, const maas_sweep *s, maas_sweep_row *rows, int *finished,
                         int *best, char *errstr, size_t errstr_size);

/*
 * Given what maas_sweep_rank just returned: when every point is final, moves
 * the promote alias (if any) to the best version and marks the sweep done.
 * *did says whether it finished it now (0: not all final yet, or done before).
 * Safe to call from several processes.
 */
maas_err maas_sweep_settle(maas_kv *kv, maas_sweep *s, const maas_sweep_row *rows, int finished,
                           int best, int *did, char *errstr, size_t errstr_size);

#endif
