/* The `maas` command line: subcommands share these helpers. */
#ifndef MAAS_CLI_H
#define MAAS_CLI_H

/* Local mode (no cluster): each returns the process exit status. */
int maas_cli_fit(int argc, char **argv);
int maas_cli_evaluate(int argc, char **argv);
int maas_cli_predict(int argc, char **argv);
int maas_cli_inspect(int argc, char **argv);
int maas_cli_optimize(int argc, char **argv);

/* Cluster mode: jobs through Kafka, results and the registry in Redis. */
int maas_cli_dataset(int argc, char **argv);
int maas_cli_submit(int argc, char **argv);
int maas_cli_job(int argc, char **argv);
int maas_cli_cancel(int argc, char **argv);
int maas_cli_jobs(int argc, char **argv);
int maas_cli_workers(int argc, char **argv);
int maas_cli_dlq(int argc, char **argv);
int maas_cli_sweep(int argc, char **argv);
int maas_cli_gc(int argc, char **argv);
int maas_cli_tenant(int argc, char **argv);
int maas_cli_models(int argc, char **argv);
int maas_cli_versions(int argc, char **argv);
int maas_cli_alias(int argc, char **argv);
int maas_cli_export(int argc, char **argv);
int maas_cli_import(int argc, char **argv);

/* ---- shared by the subcommands (cli_local.c) ---- */

#include <stddef.h>

/* Features (and optionally labels) read from a CSV or an HDF5 dataset. */
typedef struct cli_data {
    size_t rows;
    int n_features;
    float *x; /* rows x n_features */
    int y_cols;
    float *y; /* rows x y_cols, or NULL */
} cli_data;

void cli_data_release(cli_data *d);

/*
 * Predictions with their attributions (maas predict --explain, maas submit infer --explain):
 * CSV with a header row,output,prediction,x0..x(n-1) and a line per row and output, or JSON
 * [{"prediction": [...], "attributions": [[per feature] per output]}, ...]. out: rows x k;
 * attr: rows x k x n.
 */
/* --baseline zeros|mean: 0 with *mean set, else the usage error's exit code (printed). */
int cli_parse_baseline(const char *cmd, const char *arg, int *mean);
/* The column means of d's rows: n_features floats, malloc'd (NULL when out of memory). */
float *cli_column_means(const cli_data *d);

void cli_print_explained(const float *out, const float *attr, size_t rows, size_t k, size_t n,
                         int json);

/* The local commands' data options: --data, --label, --labels, --drop (repeatable). */
#define CLI_LOCAL_MAX_DROPS 64
typedef struct cli_local_data {
    const char *data, *label, *labels;
    const char *drops[CLI_LOCAL_MAX_DROPS];
    int n_drops;
} cli_local_data;
/* Their option codes (above every command's own, which start at 256). */
enum { O_LOCAL_DATA = 900, O_LOCAL_LABEL, O_LOCAL_LABELS, O_LOCAL_DROP };
/* Their entries in a getopt_long table: --data, --label, --labels, --drop. */
#define CLI_LOCAL_DATA_LONGOPTS                                                                    \
    {"data", required_argument, 0, O_LOCAL_DATA}, {"label", required_argument, 0, O_LOCAL_LABEL},  \
        {"labels", required_argument, 0, O_LOCAL_LABELS}, {                                        \
        "drop", required_argument, 0, O_LOCAL_DROP                                                 \
    }
/* Takes a data option: 1 if opt is one (*rc then 0, or a usage error's status). */
int cli_local_data_opt(const char *cmd, cli_local_data *d, int opt, const char *arg, int *rc);
/* Features from spec (CSV or FILE.h5:/x); labels from the column `label` or `labels_spec`. */
int cli_load_data(const char *cmd, const char *spec, const char *label, const char *labels_spec,
                  const char *const *drops, int n_drops, cli_data *out);
int cli_parse_int(const char *cmd, const char *opt, const char *v, long lo, long hi, long *out);
int cli_parse_float(const char *cmd, const char *opt, const char *v, double lo, double hi,
                    double *out);
int cli_wants_help(int argc, char **argv);
int cli_parse_format(const char *cmd, const char *v, int *json);

/* Labels reshaped for the loss (class indices one-hot for categorical cross-entropy); 0 or
 * the exit status after a message naming spec. */
#include "maas/model.h"
#include "maas/train.h"
#include <signal.h>
int cli_shape_labels(const char *cmd, const char *spec, const maas_model *m, maas_loss loss,
                     cli_data *d);
/* 0 when d has the model's feature count, else the exit status after a message. */
int cli_check_features(const char *cmd, const char *spec, const maas_model *m, const cli_data *d);

/* Training progress: a bar on a terminal, one line per epoch; Ctrl-C stops at the next batch. */
typedef struct cli_progress {
    int tty;   /* draw a bar on stderr */
    int quiet; /* no epoch lines */
    double epoch_start, last_draw;
} cli_progress;
extern volatile sig_atomic_t cli_interrupted;
void cli_local_on_sigint(int sig);
int cli_on_batch(void *ud, int epoch, size_t batch, size_t n_batches);
int cli_on_epoch(void *ud, const maas_epoch_log *e);

/* Prints "maas CMD: message" on stderr and returns 1 (runtime) — for `return cli_fail(...)`. */
int maas_cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints a usage error and returns 2. */
int maas_cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
