/*
 * What the local commands share (cli.h): data loading (CSV, HDF5), labels
 * shaped for the loss, option parsing, and training progress on the terminal.
 */
#include "maas/base.h"
#include "maas/clock.h"
#include "maas/dataset.h"
#include "maas/gemm.h"
#include "maas/model.h"
#include "maas/model_io.h"
#include "maas/optimize.h"
#include "maas/train.h"
#include "cli.h"

#include <getopt.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ data */

void cli_data_release(cli_data *d) {
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof(*d));
}

/* "file.h5:/x" -> path "file.h5", dataset "/x"; returns 0 for a plain path. */
static int split_h5_spec(const char *spec, char *path, size_t size, const char **dataset) {
    const char *c = strrchr(spec, ':');
    if (!c) return 0;
    size_t len = (size_t)(c - spec);
    int h5 = (len > 3 && !strncmp(c - 3, ".h5", 3)) || (len > 5 && !strncmp(c - 5, ".hdf5", 5));
    if (!h5 || len >= size) return 0;
    memcpy(path, spec, len);
    path[len] = '\0';
    *dataset = c + 1;
    return 1;
}

static maas_err read_table(const char *spec, maas_table *t, char *err, size_t errsize) {
    char path[4096];
    const char *dset;
    if (split_h5_spec(spec, path, sizeof(path), &dset))
        return maas_h5_read_matrix(path, dset, t, err, errsize);
    return maas_csv_read(spec, t, err, errsize);
}

/*
 * Loads features from `spec`; the label column `label` (CSV) or the separate
 * labels dataset `labels_spec` gives y. Columns named in drops are left out.
 */
int cli_load_data(const char *cmd, const char *spec, const char *label, const char *labels_spec,
                  const char *const *drops, int n_drops, cli_data *out) {
    memset(out, 0, sizeof(*out));
    char err[MAAS_ERRSTR_SIZE];
    maas_table t;
    if (read_table(spec, &t, err, sizeof(err))) return maas_cli_fail(cmd, "%s", err);
    int rc = 0;
    int label_col = -1;
    char *skip = calloc((size_t)t.cols, 1);
    if (!skip) {
        maas_table_release(&t);
        return maas_cli_fail(cmd, "out of memory");
    }
    if (label) {
        label_col = maas_table_col(&t, label);
        if (label_col < 0) {
            rc = maas_cli_fail(cmd, "%s has no column '%s' (columns: %s%s%s%s)", spec, label,
                               t.names[0], t.cols > 1 ? ", " : "", t.cols > 1 ? t.names[1] : "",
                               t.cols > 2 ? ", ..." : "");
            goto done;
        }
        skip[label_col] = 1;
    }
    for (int i = 0; i < n_drops; i++) {
        int c = maas_table_col(&t, drops[i]);
        if (c < 0) {
            rc = maas_cli_fail(cmd, "%s has no column '%s' to drop", spec, drops[i]);
            goto done;
        }
        skip[c] = 1;
    }
    int nf = 0;
    for (int j = 0; j < t.cols; j++) nf += !skip[j];
    if (nf == 0) {
        rc = maas_cli_fail(cmd, "%s has no feature columns left", spec);
        goto done;
    }
    out->rows = t.rows;
    out->n_features = nf;
    if (nf == t.cols) {
        /* every column is a feature (an HDF5 matrix, with --labels): the table is x, as read
         * (a copy of Fashion-MNIST's 188 MB cost as long as reading it) */
        out->x = t.data;
        t.data = NULL;
    } else if (!(out->x = malloc(t.rows * (size_t)nf * sizeof(float)))) {
        rc = maas_cli_fail(cmd, "out of memory");
        goto done;
    } else {
        for (size_t r = 0; r < t.rows; r++)
            for (int j = 0, k = 0; j < t.cols; j++)
                if (!skip[j]) out->x[r * (size_t)nf + k++] = t.data[r * (size_t)t.cols + j];
    }
    if (label_col >= 0) {
        out->y_cols = 1;
        out->y = malloc(t.rows * sizeof(float));
        if (!out->y) {
            rc = maas_cli_fail(cmd, "out of memory");
            goto done;
        }
        for (size_t r = 0; r < t.rows; r++) out->y[r] = t.data[r * (size_t)t.cols + label_col];
    } else if (labels_spec) {
        maas_table lt;
        if (read_table(labels_spec, &lt, err, sizeof(err))) {
            rc = maas_cli_fail(cmd, "%s", err);
            goto done;
        }
        if (lt.rows != t.rows) {
            rc = maas_cli_fail(cmd, "%s has %zu rows but %s has %zu", labels_spec, lt.rows, spec,
                               t.rows);
            maas_table_release(&lt);
            goto done;
        }
        out->y_cols = lt.cols;
        out->y = lt.data;
        lt.data = NULL;
        maas_table_release(&lt);
    }
done:
    free(skip);
    maas_table_release(&t);
    if (rc) cli_data_release(out);
    return rc;
}

/*
 * Shapes labels for the loss: class indices become one-hot rows for
 * categorical cross-entropy; otherwise the column count must match.
 */
int cli_shape_labels(const char *cmd, const char *spec, const maas_model *m, maas_loss loss,
                     cli_data *d) {
    int want = maas_label_cols(m, loss);
    if (d->y_cols == want) return 0;
    if (loss == MAAS_LOSS_CATEGORICAL_CROSSENTROPY && d->y_cols == 1) {
        float *oh = calloc(d->rows * (size_t)want, sizeof(float));
        if (!oh) return maas_cli_fail(cmd, "out of memory");
        for (size_t r = 0; r < d->rows; r++) {
            float v = d->y[r];
            if (!(v >= 0.0f && v < (float)want) || v != floorf(v)) {
                free(oh);
                return maas_cli_fail(cmd,
                                     "%s: label in row %zu is %g; expected a class index "
                                     "in 0..%d",
                                     spec, r + 1, (double)v, want - 1);
            }
            oh[r * (size_t)want + (size_t)v] = 1.0f;
        }
        free(d->y);
        d->y = oh;
        d->y_cols = want;
        return 0;
    }
    return maas_cli_fail(cmd, "%s: labels have %d columns; %s on this model needs %d", spec,
                         d->y_cols, maas_loss_name(loss), want);
}

int cli_check_features(const char *cmd, const char *spec, const maas_model *m, const cli_data *d) {
    if (d->n_features == m->n_inputs) return 0;
    return maas_cli_fail(cmd,
                         "%s has %d feature columns; the model takes %d (use --drop COLUMN to "
                         "leave out a label or id column)",
                         spec, d->n_features, m->n_inputs);
}

/* ------------------------------------------------------------- cli_progress */

volatile sig_atomic_t cli_interrupted;

void cli_local_on_sigint(int sig) {
    (void)sig;
    cli_interrupted = 1;
}

int cli_on_batch(void *ud, int epoch, size_t batch, size_t n_batches) {
    cli_progress *p = ud;
    if (cli_interrupted) return 1;
    double t = maas_mono_s();
    if (batch == 0) p->epoch_start = t;
    if (!p->tty || (t - p->last_draw < 0.1 && batch + 1 < n_batches)) return 0;
    p->last_draw = t;
    int width = 30, done = (int)((double)width * (double)batch / (double)n_batches);
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < done ? '=' : (i == done ? '>' : '.');
    bar[width] = '\0';
    double eta = batch ? (t - p->epoch_start) / (double)batch * (double)(n_batches - batch) : 0.0;
    fprintf(stderr, "\r\033[KEpoch %d: %zu/%zu [%s] ETA %.1fs", epoch, batch, n_batches, bar, eta);
    return 0;
}

int cli_on_epoch(void *ud, const maas_epoch_log *e) {
    cli_progress *p = ud;
    if (p->tty) fprintf(stderr, "\r\033[K");
    if (p->quiet) return 0;
    printf("Epoch %d/%d - %.2fs - loss: %.4f", e->epoch, e->epochs, e->seconds, e->loss);
    if (e->has_accuracy) printf(" - accuracy: %.4f", e->accuracy);
    if (e->has_val) {
        printf(" - val_loss: %.4f", e->val_loss);
        if (e->has_accuracy) printf(" - val_accuracy: %.4f", e->val_accuracy);
    }
    printf("\n");
    fflush(stdout);
    return 0;
}

/* ------------------------------------------------------------- options */

int cli_parse_int(const char *cmd, const char *opt, const char *v, long lo, long hi, long *out) {
    char *e;
    errno = 0;
    long n = strtol(v, &e, 10);
    if (*e || e == v || errno || n < lo || n > hi)
        return maas_cli_usage_error(cmd, "%s must be an integer in %ld..%ld, got '%s'", opt, lo, hi,
                                    v);
    *out = n;
    return 0;
}

int cli_parse_float(const char *cmd, const char *opt, const char *v, double lo, double hi,
                    double *out) {
    char *e;
    double n = strtod(v, &e);
    if (*e || e == v || !(n >= lo && n <= hi))
        return maas_cli_usage_error(cmd, "%s must be a number in [%g, %g], got '%s'", opt, lo, hi,
                                    v);
    *out = n;
    return 0;
}

int cli_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

int cli_parse_format(const char *cmd, const char *v, int *json) {
    if (!strcmp(v, "json"))
        *json = 1;
    else if (!strcmp(v, "csv") || !strcmp(v, "text"))
        *json = 0;
    else
        return maas_cli_usage_error(cmd, "--format must be csv, text or json, got '%s'", v);
    return 0;
}

int cli_local_data_opt(const char *cmd, cli_local_data *d, int opt, const char *arg, int *rc) {
    *rc = 0;
    switch (opt) {
    case O_LOCAL_DATA:
        d->data = arg;
        return 1;
    case O_LOCAL_LABEL:
        d->label = arg;
        return 1;
    case O_LOCAL_LABELS:
        d->labels = arg;
        return 1;
    case O_LOCAL_DROP:
        if (d->n_drops == CLI_LOCAL_MAX_DROPS)
            *rc = maas_cli_usage_error(cmd, "more than %d --drop", CLI_LOCAL_MAX_DROPS);
        else
            d->drops[d->n_drops++] = arg;
        return 1;
    default:
        return 0;
    }
}
