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
#include "maas/sweep_record.h"

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
