/*
 * sweep_record.h - a sweep as it is stored: its points and, once done, its
 * best version. Plain data, a leaf: the Redis adapter stores it (kv.h), the
 * sweep logic (sweep.h) fills and ranks it, and neither includes the other.
 */
#ifndef MAAS_SWEEP_RECORD_H
#define MAAS_SWEEP_RECORD_H

#include <stdint.h>
#include <string.h>

#include "maas/err.h"
#include "maas/names.h"

#define MAAS_SWEEP_MAX_VALUES 16  /* values per dimension */
#define MAAS_SWEEP_MAX_POINTS 256 /* jobs per sweep */
#define MAAS_SWEEP_LAYERS_MAX 256 /* a layer list such as "32:relu,1:sigmoid" */

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

static inline const char *maas_sweep_metric_name(maas_sweep_metric m) {
    return m == MAAS_SWEEP_VAL_ACCURACY ? "val_accuracy" : "val_loss";
}

static inline maas_err maas_sweep_metric_from_name(const char *name, maas_sweep_metric *out,
                                                   char *errstr, size_t errstr_size) {
    if (name && !strcmp(name, "val_loss")) return *out = MAAS_SWEEP_VAL_LOSS, MAAS_OK;
    if (name && !strcmp(name, "val_accuracy")) return *out = MAAS_SWEEP_VAL_ACCURACY, MAAS_OK;
    return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                     "unknown sweep metric '%s' (known: val_loss, val_accuracy)",
                     name ? name : "(null)");
}

#endif
