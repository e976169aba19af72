/*
 * cost.h - what a job cost: its CPU and wall time, the operations its layers performed
 * (counted from the shapes, not estimated from time), the memory its buffers held, and the
 * energy that took, by one of two stated methods:
 *
 *   "rapl"   watts per busy core measured on this machine: the CPU packages' energy counters
 *            (Linux powercap, /sys/class/powercap/intel-rapl:N/energy_uj, also on AMD) over
 *            the busy CPU time of the whole machine in the same window (/proc/stat), so a
 *            job is charged its CPU seconds times the package's energy per busy CPU second
 *            (idle power included: the fully loaded cost);
 *   "model"  a configured watts per busy core (where the counters are unreadable: most VMs,
 *            and a non-root process since Linux 5.10) times the job's CPU seconds.
 *
 * Operations: a Dense layer of n_in inputs and n_out units costs 2 * n_in * n_out per row
 * forward (a multiply-add is 2, whatever the number type: float32, bf16 or int8), and in
 * training 2 * n_in * n_out more for the kernel's gradient, plus 2 * n_in * n_out for the
 * gradient of its inputs on every layer but the first. Biases, activations, losses and the
 * optimizer's updates are not counted (linear in the units, not in the weights).
 */
#ifndef MAAS_COST_H
#define MAAS_COST_H

#include <stddef.h>

#include "maas/err.h"
#include "maas/job_state.h" /* maas_job_cost */
#include "maas/model.h"

/* The JSON object of c into buf (at most size bytes with its NUL); its length, or -1 when it
 * does not fit. Non-finite or negative figures are written as 0. */
int maas_job_cost_json(const maas_job_cost *c, char *buf, size_t size);

/* Parses what maas_job_cost_json wrote (missing members are 0; unknown ones ignored).
 * BAD_FORMAT when text is not a JSON object. */
maas_err maas_job_cost_parse(const char *text, size_t len, maas_job_cost *c, char *errstr,
                             size_t errstr_size);

/* Operations of one row through m, forward: 2 per multiply-add of the Dense and convolution
 * kernels and of BatchNormalization's scale and shift (pooling, gathers and reshapes count
 * none). */
double maas_flops_forward(const maas_model *m);
/* Operations of one training row: forward, kernel gradients, input gradients (above). */
double maas_flops_train_row(const maas_model *m);
/* Operations of a fit over epochs epochs of train_rows rows, each epoch also running the
 * forward pass over val_rows validation rows. */
double maas_flops_fit(const maas_model *m, int epochs, size_t train_rows, size_t val_rows);

/* ---- energy ---- */

#define MAAS_ENERGY_MAX_ZONES 8

/* The energy meter: plain data, one per process; not thread-safe (one thread samples). */
typedef struct maas_energy {
    double watts; /* per busy core: the configured one until RAPL measured one */
    int rapl;     /* 1 once watts come from the counters */
    int n_zones;  /* readable package counters (0: the model alone) */
    char zone[MAAS_ENERGY_MAX_ZONES][320];  /* their energy_uj files */
    double range_uj[MAAS_ENERGY_MAX_ZONES]; /* where each counter wraps */
    double last_uj[MAAS_ENERGY_MAX_ZONES];
    double last_busy_s, last_at; /* busy CPU seconds and mono time of the last reading */
    char stat_path[320];
} maas_energy;

/*
 * Sets the meter up: core_watts (0 < W <= 1000) is the model's watts per busy core;
 * powercap_dir (NULL: /sys/class/powercap) is searched for package zones "intel-rapl:N"
 * whose energy_uj this process can read; stat_path (NULL: /proc/stat) gives the busy CPU
 * time. INVALID_ARGUMENT for a bad core_watts; unreadable counters are not an error (the
 * model is used).
 */
maas_err maas_energy_init(maas_energy *e, double core_watts, const char *powercap_dir,
                          const char *stat_path, char *errstr, size_t errstr_size);
/* Reads the counters at mono time now_s; once min_window_s has passed since the reading the
 * last measurement started from, and the machine was busy meanwhile, watts becomes the
 * packages' energy over the busy CPU seconds of that window. Cheap to call often. */
void maas_energy_sample(maas_energy *e, double now_s, double min_window_s);
/* Joules for cpu_s CPU seconds now, and the method into c (watts, method, energy_j). */
void maas_energy_charge(const maas_energy *e, maas_job_cost *c);

/* CPU time of the calling thread, in seconds. */
double maas_thread_cpu_s(void);

#endif
