/*
 * The `maas` CLI's cluster mode, the shared part: connection options, job data
 * options, following a job, and submitting through the cluster client
 * (maas/client.h: the record is written before the message, so no job is lost
 * between the two). The commands are in jobs.c, registry.c, sweeps.c, dlq.c.
 */
#include "maas/base.h"
#include "maas/broker.h"
#include "maas/client.h"
#include "maas/clock.h"
#include "maas/job.h"
#include "maas/kv.h"
#include "maas/model_io.h"
#include "maas/protocol.h"
#include "maas/strbuf.h"
#include "maas/sweep.h"
#include "cli.h"
#include "cluster.h"

#include <getopt.h>
#include <signal.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ connection */

/*
 * The local stack's credentials (deploy/local: the services' login in
 * STATE/credentials/maas.conf) when MAAS_CONFIG names none: from $MAAS_STATE_DIR, else the
 * repository's .local/state when run from its root.
 */
static void find_stack_credentials(void) {
    if (getenv("MAAS_CONFIG")) return;
    char path[4096];
    const char *state = getenv("MAAS_STATE_DIR");
    snprintf(path, sizeof(path), "%s/credentials/maas.conf", state ? state : ".local/state");
    if (access(path, R_OK) == 0) setenv("MAAS_CONFIG", path, 0);
}

void cli_conn_defaults(cli_conn *c) {
    find_stack_credentials();
    memset(c, 0, sizeof(*c));
    snprintf(c->brokers, sizeof(c->brokers), "127.0.0.1:19092");
    snprintf(c->redis, sizeof(c->redis), "redis://127.0.0.1:16379");
    snprintf(c->prefix, sizeof(c->prefix), "%s", MAAS_TOPIC_PREFIX_DEFAULT);
    const maas_option opts[] = {
        MAAS_OPTION_CLUSTER(c->brokers, c->redis, c->prefix),
        {"tenant", "MAAS_TENANT", MAAS_OPTION_STRING, c->tenant, sizeof(c->tenant), 0, 0}};
    memcpy(c->opts, opts, sizeof(opts));
    maas_config_init(&c->conf, "maas", c->opts, (int)MAAS_ARRAY_LEN(opts), c->bad, sizeof(c->bad));
}

/*
 * Handles the connection options shared by every cluster command; 1 if consumed. A bad
 * value is consumed too and kept in c->bad: cli_conn_open() reports it as a usage error.
 */
int cli_conn_opt(cli_conn *c, int opt, const char *arg) {
    static const char *const names[] = {['B'] = "brokers", ['R'] = "redis", ['P'] = "topic-prefix"};
    char e[MAAS_ERRSTR_SIZE];
    maas_err err;
    if (opt == 'X')
        err = maas_config_setting(&c->conf, arg, e, sizeof(e));
    else if (opt == O_CONN_TENANT)
        err = maas_config_set(&c->conf, "tenant", arg, e, sizeof(e));
    else if (opt > 0 && (size_t)opt < MAAS_ARRAY_LEN(names) && names[opt])
        err = maas_config_set(&c->conf, names[opt], arg, e, sizeof(e));
    else
        return 0;
    if (err && !c->bad[0]) snprintf(c->bad, sizeof(c->bad), "%s", e);
    return 1;
}

/* Takes a data option (a usage error in *rc when it is bad); 0 when opt is not one. */
int cli_data_opt(const char *cmd, cli_data_args *d, int opt, const char *arg, int *rc) {
    switch (opt) {
    case O_DATA_FILE:
        d->data = arg;
        return 1;
    case O_DATA_LABEL:
        d->label = arg;
        return 1;
    case O_DATA_SET:
        d->dataset = arg;
        return 1;
    case O_DATA_DROP:
        if (d->n_drops == (int)MAAS_ARRAY_LEN(d->drops))
            *rc = maas_cli_usage_error(cmd, "at most %d --drop", (int)MAAS_ARRAY_LEN(d->drops));
        else
            d->drops[d->n_drops++] = arg;
        return 1;
    default:
        return 0;
    }
}

int cli_data_load(const char *cmd, const cli_data_args *a, const char *label, cli_data *d) {
    return cli_load_data(cmd, a->data, label, NULL, a->drops, a->n_drops, d);
}

const char cli_conn_help[] =
    "Connection: --brokers HOST:PORT (MAAS_KAFKA_BROKERS, default 127.0.0.1:19092),\n"
    "            --redis URL (MAAS_REDIS_URL, default redis://127.0.0.1:16379),\n"
    "            --topic-prefix P (MAAS_TOPIC_PREFIX, default maas.), -X kafka.K=V / redis.K=V\n"
    "            --tenant T (MAAS_TENANT): work in tenant T's models, jobs and topics\n"
    "Credentials: the file MAAS_CONFIG names (kafka.sasl.*, redis.user, redis.password), else\n"
    "            the local stack's $MAAS_STATE_DIR (or ./.local/state)/credentials/maas.conf\n";

int cli_conn_open(const char *cmd, cli_conn *c) {
    char e[MAAS_ERRSTR_SIZE];
    if (c->bad[0]) return maas_cli_usage_error(cmd, "%s", c->bad);
    maas_client_config cc = {.brokers = c->brokers,
                             .redis_url = c->redis,
                             .topic_prefix = c->prefix,
                             .settings = c->conf.settings,
                             .n_settings = c->conf.n_settings};
    if (!(c->client = maas_client_new(&cc, e, sizeof(e))))
        return maas_cli_fail(cmd, "%s (is the stack up? deploy/local/stack.sh up)", e);
    c->kv = maas_client_kv(c->client);
    if (maas_kv_ping(c->kv, e, sizeof(e)) && (strstr(e, "NOAUTH") || strstr(e, "NOPERM"))) {
        maas_client_free(c->client);
        c->client = NULL;
        return maas_cli_fail(cmd,
                             "%s: Redis wants credentials (the local stack's: export "
                             "MAAS_CONFIG=.local/state/credentials/maas.conf)",
                             e);
    }
    if (maas_kv_scope(c->kv, c->tenant, e, sizeof(e))) {
        maas_client_free(c->client);
        c->client = NULL;
        return maas_cli_usage_error(cmd, "--tenant: %s", e);
    }
    return 0;
}

void cli_conn_close(cli_conn *c) {
    maas_client_free(c->client);
    c->client = NULL;
    c->kv = NULL;
    maas_config_release(&c->conf);
}

/* ------------------------------------------------------------ datasets */

maas_matrix cli_as_matrix(float *data, size_t rows, int cols) {
    maas_matrix m = {(uint32_t)rows, (uint32_t)cols, data};
    return m;
}

int cli_put_dataset(const char *cmd, cli_conn *c, const char *name, cli_data *d) {
    char e[MAAS_ERRSTR_SIZE];
    maas_matrix x = cli_as_matrix(d->x, d->rows, d->n_features),
                y = cli_as_matrix(d->y, d->rows, d->y_cols);
    unsigned char *buf;
    size_t len;
    if (maas_dataset_encode(&x, &y, &buf, &len, e, sizeof(e)) ||
        maas_kv_dataset_put(c->kv, name, buf, len, e, sizeof(e))) {
        return maas_cli_fail(cmd, "dataset %s: %s", name, e);
    }
    free(buf);
    fprintf(stderr, "maas %s: dataset %s: %zu rows x %d features, %zu bytes\n", cmd, name, d->rows,
            d->n_features, len);
    return 0;
}

/* ------------------------------------------------------------ following a job */

volatile sig_atomic_t cli_detach;
void cli_on_sigint(int sig) {
    (void)sig;
    cli_detach = 1;
}

void cli_print_result(cli_conn *c, const maas_job_record *r, int json, int want_classes) {
    maas_result res;
    char e[MAAS_ERRSTR_SIZE];
    if (!r->result || maas_result_decode(r->result, r->result_len, &res, e, sizeof(e))) {
        printf("%s\n", maas_job_state_name(r->state));
        return;
    }
    if (res.type == MAAS_JOBTYPE_INFER && res.attributions.rows > 0 && res.outputs.cols > 0 &&
        res.attributions.rows == res.outputs.rows &&
        res.attributions.cols % res.outputs.cols == 0) {
        cli_print_explained(res.outputs.data, res.attributions.data, res.outputs.rows,
                            res.outputs.cols, res.attributions.cols / res.outputs.cols, json);
    } else if (res.type == MAAS_JOBTYPE_INFER) {
        uint32_t k = res.outputs.cols;
        if (json) fputs("[", stdout);
        for (uint32_t i = 0; i < res.outputs.rows; i++) {
            if (json) fputs(i ? ",\n [" : "[", stdout);
            if (want_classes && res.classes) {
                printf("%d", res.classes[i]);
            } else {
                for (uint32_t j = 0; j < k; j++)
                    printf(j ? ",%.9g" : "%.9g", (double)res.outputs.data[(size_t)i * k + j]);
            }
            fputs(json ? "]" : "\n", stdout);
        }
        if (json) fputs("]\n", stdout);
    } else if (res.type == MAAS_JOBTYPE_TRAIN) {
        printf("%s version %d%s: loss %.4f", res.model, res.version,
               res.created ? "" : " (already made by an earlier run of this job)", res.loss);
        if (!isnan(res.accuracy)) printf(", accuracy %.4f", res.accuracy);
        if (res.n_history > 0) {
            const maas_history_entry *h = &res.history[res.n_history - 1];
            if (!isnan(h->val_loss)) printf(", val_loss %.4f", h->val_loss);
            if (!isnan(h->val_accuracy)) printf(", val_accuracy %.4f", h->val_accuracy);
        }
        printf("\n");
    } else if (res.type == MAAS_JOBTYPE_OPTIMIZE) {
        maas_version_meta meta;
        printf("%s version %d%s", res.model, res.version,
               res.created ? "" : " (already made by an earlier run of this job)");
        if (maas_kv_version_meta(c->kv, res.model, res.version, &meta, e, sizeof(e)) == MAAS_OK) {
            printf(", from version %d: %s\n", meta.parent, meta.metrics ? meta.metrics : "{}");
            maas_version_meta_release(&meta);
        } else {
            printf("\n");
        }
    } else {
        printf("%s version %d: %zu rows - loss: %.4f", res.model, res.version, res.rows, res.loss);
        if (!isnan(res.accuracy)) printf(" - accuracy: %.4f", res.accuracy);
        printf("\n");
    }
    maas_result_release(&res);
}

/* Epoch lines a short training job finished before its progress was seen. */
void cli_print_history(const maas_job_record *r, int shown) {
    maas_result res;
    char e[MAAS_ERRSTR_SIZE];
    if (!r->result || maas_result_decode(r->result, r->result_len, &res, e, sizeof(e))) return;
    for (int i = shown; i < res.n_history; i++) {
        const maas_history_entry *h = &res.history[i];
        fprintf(stderr, "Epoch %d/%d - loss: %.4f", h->epoch, res.n_history, h->loss);
        if (!isnan(h->accuracy)) fprintf(stderr, " - accuracy: %.4f", h->accuracy);
        if (!isnan(h->val_loss)) fprintf(stderr, " - val_loss: %.4f", h->val_loss);
        if (!isnan(h->val_accuracy)) fprintf(stderr, " - val_accuracy: %.4f", h->val_accuracy);
        fprintf(stderr, "\n");
    }
    maas_result_release(&res);
}

/* What cli_follow() shows while a job runs: one line per epoch, each epoch once, read from
 * the job's stored epochs (maas:job:{ID}:epochs), which the worker completes before the record
 * is final: a poll that falls between two epochs loses neither. */
typedef struct follow_state {
    maas_kv *kv;
    const char *id;
    int shown, tty;
} follow_state;

/* {"epoch": 3, "epochs": 10, "loss": ..., ...} -> Epoch 3/10 - loss: ... [- ETA 12s] */
static void print_epoch_line(const char *json, const char *progress) {
    maas_strbuf line = {0};
    const char *p = strstr(json, "\"epoch\": ");
    int epoch = p ? (int)strtol(p + 9, NULL, 10) : 0;
    p = strstr(json, "\"epochs\": ");
    int epochs = p ? (int)strtol(p + 10, NULL, 10) : 0;
    maas_strbuf_printf(&line, "Epoch %d/%d", epoch, epochs);
    static const char *const keys[] = {"loss", "accuracy", "val_loss", "val_accuracy"};
    for (size_t k = 0; k < MAAS_ARRAY_LEN(keys); k++) {
        char pat[32];
        snprintf(pat, sizeof(pat), "\"%s\": ", keys[k]);
        const char *q = strstr(json, pat);
        if (q) maas_strbuf_printf(&line, " - %s: %.4f", keys[k], strtod(q + strlen(pat), NULL));
    }
    p = progress ? strstr(progress, "\"eta_s\": ") : NULL;
    if (p) maas_strbuf_printf(&line, " - ETA %.0fs", strtod(p + 9, NULL));
    fprintf(stderr, "%s\n", line.p ? line.p : "");
    free(line.p);
}

static int follow_progress(void *ud, const maas_job_record *r) {
    follow_state *f = ud;
    char **lines = NULL, e[MAAS_ERRSTR_SIZE];
    int n = 0;
    /* an unreadable list is read again at the next poll; the result's history fills the rest */
    if (maas_kv_job_epochs(f->kv, f->id, f->shown, 1000, &lines, &n, e, sizeof(e)) != MAAS_OK)
        return cli_detach;
    for (int i = 0; i < n; i++) {
        /* the ETA on the newest line only, and only for a person watching */
        int newest = i == n - 1 && !MAAS_JOB_FINAL(r->state) && f->tty;
        print_epoch_line(lines[i], newest ? r->progress : NULL);
        free(lines[i]);
    }
    free(lines);
    f->shown += n;
    return cli_detach; /* Ctrl-C: stop following, the job goes on */
}

/* Follows a job to its end: its epoch lines while it runs, then the result. */
int cli_follow(const char *cmd, cli_conn *c, const char *id, int json, int want_classes) {
    char e[MAAS_ERRSTR_SIZE];
    struct sigaction sa = {0}, old;
    sa.sa_handler = cli_on_sigint;
    sigaction(SIGINT, &sa, &old);
    follow_state f = {.kv = c->kv, .id = id, .tty = isatty(2)};
    maas_job_state st;
    int rc = 0;
    if (maas_client_follow(c->client, id, 500, follow_progress, &f, &st, e, sizeof(e))) {
        rc = maas_cli_fail(cmd, "%s", e);
    } else if (st == MAAS_JOB_UNKNOWN) {
        rc = maas_cli_fail(cmd, "no job '%s' (never submitted, or its record expired)", id);
    } else if (!MAAS_JOB_FINAL(st)) {
        fprintf(stderr,
                "maas %s: detached; job %s goes on (follow it with 'maas job %s', stop it with "
                "'maas cancel %s')\n",
                cmd, id, id, id);
        rc = 130;
    } else {
        maas_job_record r;
        if (maas_kv_job_get(c->kv, id, &r, e, sizeof(e))) {
            rc = maas_cli_fail(cmd, "%s", e);
        } else if (r.state == MAAS_JOB_SUCCEEDED) {
            cli_print_history(&r, f.shown);
            cli_print_result(c, &r, json, want_classes);
        } else {
            rc = maas_cli_fail(cmd, "job %s %s: %s: %s", id, maas_job_state_name(r.state),
                               r.error_code[0] ? r.error_code : "-", r.error_message);
        }
        maas_job_record_release(&r);
    }
    sigaction(SIGINT, &old, NULL);
    return rc;
}

/* ------------------------------------------------------------ submit */

/*
 * Submits j through the cluster client (record, kept message, publish; a failed
 * publish is recorded and reported: returns 1). *existed: the id was known (an
 * idempotency key): then nothing is published, unless republish and the record
 * is still queued (a submitter that died between the record and the publish).
 */
int cli_publish_job(const char *cmd, cli_conn *c, maas_job *j, int republish, int *existed,
                    char *topic, size_t topic_size) {
    char e[MAAS_ERRSTR_SIZE];
    maas_submit_info info;
    maas_err err = maas_client_submit(c->client, NULL, j, republish ? MAAS_SUBMIT_REPUBLISH : 0,
                                      &info, e, sizeof(e));
    *existed = info.existed;
    snprintf(topic, topic_size, "%s", info.topic);
    if (err == MAAS_ERR_UNAVAILABLE || err == MAAS_ERR_TIMEOUT)
        return maas_cli_fail(cmd, "job %s was not published (its record says failed): %s", j->id,
                             e);
    if (err) return maas_cli_fail(cmd, "%s", e);
    return 0;
}

int cli_submit_job(const char *cmd, cli_conn *c, maas_job *j, int wait, int json) {
    char topic[256];
    int existed;
    int rc = cli_publish_job(cmd, c, j, 0, &existed, topic, sizeof(topic));
    if (rc) return rc;
    if (existed) /* an idempotency key seen before: follow the existing job, do not resubmit */
        fprintf(stderr, "maas %s: job %s already exists; not submitted again\n", cmd, j->id);
    if (!wait) {
        printf("%s\n", j->id);
        return 0;
    }
    if (!existed) fprintf(stderr, "maas %s: job %s submitted to %s\n", cmd, j->id, topic);
    return cli_follow(cmd, c, j->id, json, j->want_classes);
}

/*
 * A train job's loss (--loss, else from the output activation, as `maas fit`
 * does), accuracy, and optimizer (--optimizer, keeping a --lr given before).
 * Returns 0 or the usage-error exit status.
 */
int cli_train_compile(const char *cmd, maas_train_spec *t, const char *loss, const char *opt) {
    char e[MAAS_ERRSTR_SIZE];
    const maas_layer_spec *last = &t->layers[t->n_layers - 1];
    if (loss) {
        if (maas_loss_from_name(loss, &t->compile.loss, e, sizeof(e)))
            return maas_cli_usage_error(cmd, "%s", e);
    } else {
        t->compile.loss = last->act == MAAS_ACT_SIGMOID ? MAAS_LOSS_BINARY_CROSSENTROPY
                          : last->act == MAAS_ACT_SOFTMAX
                              ? MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY
                              : MAAS_LOSS_MSE;
    }
    t->compile.accuracy = t->compile.loss != MAAS_LOSS_MSE && t->compile.loss != MAAS_LOSS_MAE;
    if (opt) {
        maas_opt kind;
        float lr = t->compile.optim.learning_rate;
        if (maas_opt_from_name(opt, &kind, e, sizeof(e))) return maas_cli_usage_error(cmd, "%s", e);
        int custom_lr = lr != 0.001f;
        maas_optim_defaults(&t->compile.optim, kind);
        if (custom_lr) t->compile.optim.learning_rate = lr;
    }
    return 0;
}
