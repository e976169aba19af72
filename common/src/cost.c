/*
 * What a job cost (maas/cost.h): operations counted from the layer shapes, the cost record's
 * JSON, and the energy meter (Linux powercap counters, else a per-core power model).
 */
#include "maas/cost.h"
#include "maas/strbuf.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "maas/json.h"

/* ------------------------------------------------------------ operations */

/* A layer's multiply-adds per row: Dense and convolution kernels, BatchNormalization's scale
 * and shift; the rest (pooling, gathers, reshapes, dropout) none. */
static double layer_macs(const maas_layer *l) {
    switch (l->spec.kind) {
    case MAAS_LAYER_DENSE:
        return (double)l->n_in * l->n_out;
    case MAAS_LAYER_CONV:
        return (double)l->n_out * l->geom.kh * l->geom.kw * l->geom.c;
    case MAAS_LAYER_BATCHNORM:
        return (double)l->n_out;
    default:
        return 0;
    }
}

double maas_flops_forward(const maas_model *m) {
    double f = 0;
    for (int i = 0; i < m->n_layers; i++) f += 2.0 * layer_macs(&m->layers[i]);
    return f;
}

double maas_flops_train_row(const maas_model *m) {
    double f = 0;
    int first = 1;
    for (int i = 0; i < m->n_layers; i++) {
        double mac = 2.0 * layer_macs(&m->layers[i]);
        if (mac == 0) continue;
        f += (first ? 2.0 : 3.0) * mac; /* forward, kernel gradient, input gradient */
        first = 0;
    }
    return f;
}

double maas_flops_fit(const maas_model *m, int epochs, size_t train_rows, size_t val_rows) {
    if (epochs <= 0) return 0;
    return (double)epochs * ((double)train_rows * maas_flops_train_row(m) +
                             (double)val_rows * maas_flops_forward(m));
}

/* ------------------------------------------------------------ the record's JSON */

static double finite0(double v) {
    return isfinite(v) && v > 0 ? v : 0.0;
}

int maas_job_cost_json(const maas_job_cost *c, char *buf, size_t size) {
    const char *method = !strcmp(c->method, "rapl") || !strcmp(c->method, "model") ? c->method : "";
    /* no printf: a worker writes this for every job, and glibc's float formatting was a
     * sixth of its CPU per one-row inference job (measured with perf) */
    char num[7][MAAS_NUM_MAX];
    maas_fmt_g(num[0], finite0(c->cpu_s), 6);
    maas_fmt_fixed(num[1], finite0(c->queue_s), 3);
    maas_fmt_g(num[2], finite0(c->compute_s), 6);
    maas_fmt_fixed(num[3], finite0(c->flops), 0);
    maas_fmt_fixed(num[4], finite0(c->peak_bytes), 0);
    maas_fmt_g(num[5], finite0(c->energy_j), 6);
    maas_fmt_g(num[6], finite0(c->watts), 4);
    static const char *const key[] = {
        "{\"cpu_s\": ",       ", \"queue_s\": ",  ", \"compute_s\": ",     ", \"flops\": ",
        ", \"peak_bytes\": ", ", \"energy_j\": ", ", \"watts_per_core\": "};
    size_t n = 0;
#define COST_PUT(s_, len_)                                                                         \
    do {                                                                                           \
        size_t l_ = (len_);                                                                        \
        if (n + l_ >= size) return -1;                                                             \
        memcpy(buf + n, (s_), l_);                                                                 \
        n += l_;                                                                                   \
    } while (0)
    for (int i = 0; i < 7; i++) {
        COST_PUT(key[i], strlen(key[i]));
        COST_PUT(num[i], strlen(num[i]));
    }
    COST_PUT(", \"energy_method\": \"", strlen(", \"energy_method\": \""));
    COST_PUT(method, strlen(method));
    COST_PUT("\"}", 2);
#undef COST_PUT
    buf[n] = '\0';
    return (int)n;
}

maas_err maas_job_cost_parse(const char *text, size_t len, maas_job_cost *c, char *errstr,
                             size_t errstr_size) {
    memset(c, 0, sizeof(*c));
    maas_json *doc;
    maas_err err = maas_json_parse_object(text, len, &doc, errstr, errstr_size);
    if (err) return err;
    static const char *const keys[] = {"cpu_s",      "queue_s",  "compute_s",     "flops",
                                       "peak_bytes", "energy_j", "watts_per_core"};
    double *dst[] = {&c->cpu_s,      &c->queue_s,  &c->compute_s, &c->flops,
                     &c->peak_bytes, &c->energy_j, &c->watts};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        double v;
        if (maas_json_number(doc, keys[i], &v)) *dst[i] = finite0(v);
    }
    const char *s;
    if (maas_json_string(doc, "energy_method", &s) && (!strcmp(s, "rapl") || !strcmp(s, "model")))
        snprintf(c->method, sizeof(c->method), "%s", s);
    maas_json_free(doc);
    return MAAS_OK;
}

/* ------------------------------------------------------------ energy */

double maas_thread_cpu_s(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)) return 0.0;
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The first number in file path; -1 when unreadable. */
static double read_number(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    double v = -1;
    if (fscanf(f, "%lf", &v) != 1 || !(v >= 0)) v = -1;
    fclose(f);
    return v;
}

/* Busy CPU seconds of the whole machine (user, nice, system, irq, softirq); -1 if unknown. */
static double busy_seconds(const char *stat_path) {
    FILE *f = fopen(stat_path, "r");
    if (!f) return -1;
    unsigned long long v[7] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6]);
    fclose(f);
    long hz = sysconf(_SC_CLK_TCK);
    if (n != 7 || hz <= 0) return -1;
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6]) / (double)hz;
}

maas_err maas_energy_init(maas_energy *e, double core_watts, const char *powercap_dir,
                          const char *stat_path, char *errstr, size_t errstr_size) {
    memset(e, 0, sizeof(*e));
    if (!(core_watts > 0 && core_watts <= 1000))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "core watts: %g is not in (0, 1000]", core_watts);
    e->watts = core_watts;
    e->last_at = -1;
    snprintf(e->stat_path, sizeof(e->stat_path), "%s", stat_path ? stat_path : "/proc/stat");
    const char *dir = powercap_dir ? powercap_dir : "/sys/class/powercap";
    DIR *d = opendir(dir);
    if (!d) return MAAS_OK;
    struct dirent *de;
    while ((de = readdir(d)) && e->n_zones < MAAS_ENERGY_MAX_ZONES) {
        /* package zones only: "intel-rapl:0", not their subzones "intel-rapl:0:0" */
        const char *n = de->d_name;
        if (strncmp(n, "intel-rapl:", 11) || strchr(n + 11, ':') || !n[11]) continue;
        int k = e->n_zones;
        char range[400];
        snprintf(e->zone[k], sizeof(e->zone[k]), "%s/%s/energy_uj", dir, n);
        snprintf(range, sizeof(range), "%s/%s/max_energy_range_uj", dir, n);
        double uj = read_number(e->zone[k]), r = read_number(range);
        if (uj < 0 || r <= 0) continue; /* not readable by this process */
        e->range_uj[k] = r;
        e->n_zones++;
    }
    closedir(d);
    return MAAS_OK;
}

void maas_energy_sample(maas_energy *e, double now_s, double min_window_s) {
    if (e->n_zones == 0) return;
    if (e->last_at >= 0 && now_s - e->last_at < min_window_s) return;
    double uj[MAAS_ENERGY_MAX_ZONES], busy = busy_seconds(e->stat_path);
    for (int k = 0; k < e->n_zones; k++)
        if ((uj[k] = read_number(e->zone[k])) < 0) return; /* unreadable now: keep the last */
    if (busy < 0) return;
    if (e->last_at >= 0 && busy > e->last_busy_s) {
        double joules = 0;
        for (int k = 0; k < e->n_zones; k++) {
            double d = uj[k] - e->last_uj[k];
            if (d < 0) d += e->range_uj[k]; /* the counter wrapped */
            joules += d * 1e-6;
        }
        double w = joules / (busy - e->last_busy_s);
        if (w > 0 && w <= 1000) {
            e->watts = w;
            e->rapl = 1;
        }
    }
    memcpy(e->last_uj, uj, sizeof(uj[0]) * (size_t)e->n_zones);
    e->last_busy_s = busy;
    e->last_at = now_s;
}

void maas_energy_charge(const maas_energy *e, maas_job_cost *c) {
    c->watts = e->watts;
    c->energy_j = finite0(c->cpu_s) * e->watts;
    snprintf(c->method, sizeof(c->method), "%s", e->rapl ? "rapl" : "model");
}
