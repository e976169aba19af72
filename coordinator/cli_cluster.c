/*
 * The `maas` CLI's cluster mode: submit jobs through Kafka (the record is
 * written before the message, so no job is lost between the two), follow them
 * in Redis, and manage the model registry and datasets.
 */
#include "maas/base.h"
#include "maas/clock.h"
#include "maas/broker.h"
#include "maas/job.h"
#include "maas/kv.h"
#include "maas/model_io.h"
#include "maas/protocol.h"
#include "maas/sweep.h"
#include "cli.h"

#include <getopt.h>
#include <signal.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define MAX_X 32
#define INLINE_LIMIT (900 * 1024) /* larger jobs ship their data as a dataset */

/* ------------------------------------------------------------ connection */

typedef struct conn {
    char brokers[512];
    char redis[512];
    char prefix[64];
    maas_setting settings[MAX_X];
    int n_settings;
    maas_kv *kv;
} conn;

static void conn_defaults(conn *c) {
    memset(c, 0, sizeof(*c));
    const char *b = getenv("MAAS_KAFKA_BROKERS"), *r = getenv("MAAS_REDIS_URL"),
               *p = getenv("MAAS_TOPIC_PREFIX");
    snprintf(c->brokers, sizeof(c->brokers), "%s", b ? b : "127.0.0.1:19092");
    snprintf(c->redis, sizeof(c->redis), "%s", r ? r : "redis://127.0.0.1:16379");
    snprintf(c->prefix, sizeof(c->prefix), "%s", p ? p : MAAS_TOPIC_PREFIX_DEFAULT);
}

/* Handles the connection options shared by every cluster command; 1 if consumed. */
static int conn_opt(conn *c, int opt, const char *arg) {
    switch (opt) {
    case 'B':
        snprintf(c->brokers, sizeof(c->brokers), "%s", arg);
        return 1;
    case 'R':
        snprintf(c->redis, sizeof(c->redis), "%s", arg);
        return 1;
    case 'P':
        snprintf(c->prefix, sizeof(c->prefix), "%s", arg);
        return 1;
    case 'X': {
        const char *eq = strchr(arg, '=');
        if (!eq || c->n_settings == MAX_X) return 0;
        char *k = strndup(arg, (size_t)(eq - arg)), *v = strdup(eq + 1);
        c->settings[c->n_settings++] = (maas_setting){k, v};
        return 1;
    }
    default:
        return 0;
    }
}

#define CONN_LONGOPTS                                                                              \
    {"brokers", required_argument, 0, 'B'}, {"redis", required_argument, 0, 'R'}, {                \
        "topic-prefix", required_argument, 0, 'P'                                                  \
    }

/* Where a job's data comes from: --data FILE --label COLUMN [--drop COLUMN ...] or --dataset NAME.
 */
typedef struct data_args {
    const char *data, *label, *dataset;
    const char *drops[32];
    int n_drops;
} data_args;

/* Option codes of data_args (above every command's own, which start at 256). */
enum { O_DATA_FILE = 1000, O_DATA_LABEL, O_DATA_SET, O_DATA_DROP };

#define DATA_LONGOPTS                                                                              \
    {"data", required_argument, 0, O_DATA_FILE}, {"label", required_argument, 0, O_DATA_LABEL},    \
        {"dataset", required_argument, 0, O_DATA_SET}, {                                           \
        "drop", required_argument, 0, O_DATA_DROP                                                  \
    }

/* Takes a data option (a usage error in *rc when it is bad); 0 when opt is not one. */
static int data_opt(const char *cmd, data_args *d, int opt, const char *arg, int *rc) {
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

static int data_load(const char *cmd, const data_args *a, const char *label, cli_data *d) {
    return cli_load_data(cmd, a->data, label, NULL, a->drops, a->n_drops, d);
}

static const char conn_help[] =
    "Connection: --brokers HOST:PORT (MAAS_KAFKA_BROKERS, default 127.0.0.1:19092),\n"
    "            --redis URL (MAAS_REDIS_URL, default redis://127.0.0.1:16379),\n"
    "            --topic-prefix P (MAAS_TOPIC_PREFIX, default maas.), -X kafka.K=V / redis.K=V\n";

static int conn_open(const char *cmd, conn *c) {
    char e[MAAS_ERRSTR_SIZE];
    if (!(c->kv = maas_kv_connect(c->redis, c->settings, c->n_settings, e, sizeof(e))))
        return maas_cli_fail(cmd, "%s (is the stack up? deploy/local/stack.sh up)", e);
    return 0;
}

static void conn_close(conn *c) {
    maas_kv_free(c->kv);
    for (int i = 0; i < c->n_settings; i++) {
        free((char *)c->settings[i].key);
        free((char *)c->settings[i].value);
    }
}

/* 128 random bits as 32 hex digits. */
static void random_id(char out[33]) {
    unsigned char b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
        uint64_t t = (uint64_t)maas_wall_ms() ^ ((uint64_t)getpid() << 40);
        for (int i = 0; i < 16; i++) b[i] = (unsigned char)(t >> (8 * (i % 8))) ^ (unsigned char)i;
    }
    for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* ------------------------------------------------------------ datasets */

static maas_matrix as_matrix(float *data, size_t rows, int cols) {
    maas_matrix m = {(uint32_t)rows, (uint32_t)cols, data};
    return m;
}

static int put_dataset(const char *cmd, conn *c, const char *name, cli_data *d) {
    char e[MAAS_ERRSTR_SIZE];
    maas_matrix x = as_matrix(d->x, d->rows, d->n_features),
                y = as_matrix(d->y, d->rows, d->y_cols);
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

int maas_cli_dataset(int argc, char **argv) {
    const char *cmd = "dataset";
    static const char help[] =
        "usage: maas dataset put NAME --data FILE (--label COLUMN | --labels F.h5:/y) [--drop C]\n"
        "       maas dataset rm NAME\n"
        "Stores labelled data in Redis under NAME, for train and evaluate jobs (--dataset).\n";
    if (cli_wants_help(argc, argv)) return fputs(help, stdout), fputs(conn_help, stdout), 0;
    if (argc < 3) return maas_cli_usage_error(cmd, "expected put NAME ... or rm NAME");
    const char *sub = argv[1], *name = argv[2];
    conn c;
    conn_defaults(&c);
    static const struct option opts[] = {CONN_LONGOPTS,
                                         {"data", required_argument, 0, 'd'},
                                         {"label", required_argument, 0, 'l'},
                                         {"labels", required_argument, 0, 'L'},
                                         {"drop", required_argument, 0, 'D'},
                                         {0, 0, 0, 0}};
    const char *data = NULL, *label = NULL, *labels = NULL, *drops[32];
    int n_drops = 0, o;
    optind = 3;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "X:", opts, NULL)) != -1) {
        if (conn_opt(&c, o, optarg)) continue;
        if (o == 'd')
            data = optarg;
        else if (o == 'l')
            label = optarg;
        else if (o == 'L')
            labels = optarg;
        else if (o == 'D' && n_drops < 32)
            drops[n_drops++] = optarg;
        else
            return maas_cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
    }
    char e[MAAS_ERRSTR_SIZE];
    if (maas_name_check("dataset name", name, e, sizeof(e)))
        return maas_cli_usage_error(cmd, "%s", e);
    int rc = conn_open(cmd, &c);
    if (rc) return rc;
    if (!strcmp(sub, "put")) {
        cli_data d;
        if (!data || (!label == !labels))
            rc = maas_cli_usage_error(cmd, "put needs --data and one of --label, --labels");
        else if (!(rc = cli_load_data(cmd, data, label, labels, drops, n_drops, &d))) {
            rc = put_dataset(cmd, &c, name, &d);
            cli_data_release(&d);
        }
    } else if (!strcmp(sub, "rm")) {
        if (maas_kv_dataset_delete(c.kv, name, e, sizeof(e))) rc = maas_cli_fail(cmd, "%s", e);
    } else {
        rc = maas_cli_usage_error(cmd, "unknown subcommand '%s' (put, rm)", sub);
    }
    conn_close(&c);
    return rc;
}

/* ------------------------------------------------------------ following a job */

static volatile sig_atomic_t detach;
static void on_sigint(int sig) {
    (void)sig;
    detach = 1;
}

static void print_result(conn *c, const maas_job_record *r, int json, int want_classes) {
    maas_result res;
    char e[MAAS_ERRSTR_SIZE];
    if (!r->result || maas_result_decode(r->result, r->result_len, &res, e, sizeof(e))) {
        printf("%s\n", maas_job_state_name(r->state));
        return;
    }
    if (res.type == MAAS_JOBTYPE_INFER) {
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
static void print_history(const maas_job_record *r, int shown) {
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

/* Follows a job to its end: epoch lines from its live progress, then the result. */
static int follow(const char *cmd, conn *c, const char *id, int json, int want_classes) {
    char e[MAAS_ERRSTR_SIZE];
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old);
    int last_epoch = 0, rc = 0;
    int tty = isatty(2);
    maas_job_record r;
    while (1) {
        maas_job_state st;
        if (maas_kv_job_wait(c->kv, id, 500, &st, e, sizeof(e))) {
            rc = maas_cli_fail(cmd, "%s", e);
            break;
        }
        if (maas_kv_job_get(c->kv, id, &r, e, sizeof(e))) {
            rc = maas_cli_fail(cmd, "%s", e);
            break;
        }
        if (r.progress) {
            int epoch = 0, epochs = 0;
            const char *p = strstr(r.progress, "\"epoch\": ");
            if (p) epoch = (int)strtol(p + 9, NULL, 10);
            p = strstr(r.progress, "\"epochs\": ");
            if (p) epochs = (int)strtol(p + 10, NULL, 10);
            if (epoch > last_epoch) {
                /* {"epoch": 3, "epochs": 10, "loss": ..., ...} -> Epoch 3/10 - loss: ... */
                char line[512];
                int n = snprintf(line, sizeof(line), "Epoch %d/%d", epoch, epochs);
                static const char *const keys[] = {"loss", "accuracy", "val_loss", "val_accuracy"};
                for (size_t k = 0; k < MAAS_ARRAY_LEN(keys); k++) {
                    char pat[32];
                    snprintf(pat, sizeof(pat), "\"%s\": ", keys[k]);
                    const char *q = strstr(r.progress, pat);
                    if (q)
                        n += snprintf(line + n, sizeof(line) - (size_t)n, " - %s: %.4f", keys[k],
                                      strtod(q + strlen(pat), NULL));
                }
                p = strstr(r.progress, "\"eta_s\": ");
                if (p && tty)
                    snprintf(line + n, sizeof(line) - (size_t)n, " - ETA %.0fs",
                             strtod(p + 9, NULL));
                fprintf(stderr, "%s\n", line);
                last_epoch = epoch;
            }
        }
        if (r.state == MAAS_JOB_UNKNOWN) {
            rc = maas_cli_fail(cmd, "no job '%s' (never submitted, or its record expired)", id);
            maas_job_record_release(&r);
            break;
        }
        if (MAAS_JOB_FINAL(r.state)) {
            if (r.state == MAAS_JOB_SUCCEEDED) {
                print_history(&r, last_epoch);
                print_result(c, &r, json, want_classes);
            } else {
                rc = maas_cli_fail(cmd, "job %s %s: %s: %s", id, maas_job_state_name(r.state),
                                   r.error_code[0] ? r.error_code : "-", r.error_message);
            }
            maas_job_record_release(&r);
            break;
        }
        maas_job_record_release(&r);
        if (detach) {
            fprintf(stderr,
                    "maas %s: detached; job %s goes on (follow it with 'maas job %s', stop it with "
                    "'maas cancel %s')\n",
                    cmd, id, id, id);
            rc = 130;
            break;
        }
    }
    sigaction(SIGINT, &old, NULL);
    return rc;
}

/* ------------------------------------------------------------ submit */

typedef struct publish_state {
    maas_err err;
    char errstr[256];
    int done;
} publish_state;

static void on_delivery(void *ud, void *msg_opaque, maas_err err, const char *errstr,
                        int32_t partition, int64_t offset) {
    (void)msg_opaque;
    (void)partition;
    (void)offset;
    publish_state *s = ud;
    s->err = err;
    snprintf(s->errstr, sizeof(s->errstr), "%s", errstr ? errstr : "");
    s->done = 1;
}

/* Writes the queued record, then publishes; a failed publish is recorded and reported. */
/*
 * Writes the queued record, then publishes; a failed publish is recorded and
 * reported (returns 1). *existed: the id was known (an idempotency key): then
 * nothing is published, unless republish and the record is still queued (a
 * submitter that died between the record and the publish).
 */
static int publish_job(const char *cmd, conn *c, maas_job *j, int republish, int *existed,
                       char *topic, size_t topic_size) {
    char e[MAAS_ERRSTR_SIZE];
    unsigned char *buf;
    size_t len;
    *existed = 0;
    maas_topic_name(c->prefix, j->type == MAAS_JOBTYPE_INFER ? MAAS_TOPIC_INFER : MAAS_TOPIC_WORK,
                    topic, topic_size, e, sizeof(e));
    maas_err err = maas_job_encode(j, &buf, &len, e, sizeof(e));
    if (err) return maas_cli_fail(cmd, "%s", e);
    maas_job_record rec;
    maas_job_record_of(j, &rec);
    err = maas_kv_job_create(c->kv, &rec, j->ttl_s > 0 ? j->ttl_s : 7 * 86400, e, sizeof(e));
    if (err == MAAS_ERR_CONFLICT) {
        *existed = 1;
        maas_job_record now = {0};
        int queued = republish && maas_kv_job_get(c->kv, j->id, &now, e, sizeof(e)) == MAAS_OK &&
                     now.state == MAAS_JOB_QUEUED;
        if (republish) maas_job_record_release(&now);
        if (!queued) {
            free(buf);
            return 0;
        }
        err = MAAS_OK;
    }
    /* a work job's message is kept, so housekeeping can publish it again if its worker vanishes */
    if (!err && j->type != MAAS_JOBTYPE_INFER)
        err = maas_kv_job_message_put(c->kv, j->id, buf, len, j->ttl_s, e, sizeof(e));
    if (err) {
        free(buf);
        return maas_cli_fail(cmd, "%s", e);
    }
    publish_state ps = {0};
    maas_producer *p =
        maas_producer_new(c->brokers, c->settings, c->n_settings, on_delivery, &ps, e, sizeof(e));
    if (p) {
        err = maas_producer_send(p, topic, j->id, strlen(j->id), buf, len, NULL, e, sizeof(e));
        if (!err) err = maas_producer_flush(p, 15000, e, sizeof(e));
        if (!err && ps.err) {
            err = ps.err;
            snprintf(e, sizeof(e), "%s", ps.errstr);
        }
        maas_producer_free(p);
    } else {
        err = MAAS_ERR_UNAVAILABLE;
    }
    free(buf);
    if (err) {
        char e2[MAAS_ERRSTR_SIZE];
        maas_job_update u = {.to = MAAS_JOB_FAILED,
                             .from_mask = 1u << MAAS_JOB_QUEUED,
                             .error_code = "UNAVAILABLE",
                             .error_message = e,
                             .notify = j->notify};
        maas_kv_job_transition(c->kv, j->id, &u, e2, sizeof(e2));
        return maas_cli_fail(cmd, "job %s was not published (its record says failed): %s", j->id,
                             e);
    }
    return 0;
}

static int submit_job(const char *cmd, conn *c, maas_job *j, int wait, int json) {
    char topic[256];
    int existed;
    int rc = publish_job(cmd, c, j, 0, &existed, topic, sizeof(topic));
    if (rc) return rc;
    if (existed) /* an idempotency key seen before: follow the existing job, do not resubmit */
        fprintf(stderr, "maas %s: job %s already exists; not submitted again\n", cmd, j->id);
    if (!wait) {
        printf("%s\n", j->id);
        return 0;
    }
    if (!existed) fprintf(stderr, "maas %s: job %s submitted to %s\n", cmd, j->id, topic);
    return follow(cmd, c, j->id, json, j->want_classes);
}

/*
 * A train job's loss (--loss, else from the output activation, as `maas fit`
 * does), accuracy, and optimizer (--optimizer, keeping a --lr given before).
 * Returns 0 or the usage-error exit status.
 */
static int train_compile(const char *cmd, maas_train_spec *t, const char *loss, const char *opt) {
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

static const char submit_help[] =
    "usage: maas submit train --name MODEL (--data FILE --label COLUMN | --dataset NAME)\n"
    "                         --layers SPEC [--loss NAME] [--optimizer NAME] [--lr RATE]\n"
    "                         [--epochs N] [--batch-size N] [--validation-split F]\n"
    "                         [--standardize] [--seed N] [--from MODEL:V|MODEL@ALIAS] [--wait]\n"
    "       maas submit infer --model MODEL[:V|@ALIAS] --data FILE [--drop C]... [--classes]\n"
    "                         [--format csv|json] [--wait]\n"
    "       maas submit evaluate --model REF (--data FILE --label COLUMN | --dataset NAME) "
    "[--wait]\n"
    "       maas submit optimize --model REF [--quantize int8] [--prune SPARSITY]\n"
    "                         [--finetune-epochs N] [--data FILE --label COLUMN | --dataset NAME]\n"
    "                         [--wait]   (a new version, parent REF; its metrics say what "
    "changed)\n"
    "Common: --id ID (an idempotency key; default 128 random bits), --ttl-s N, --deadline-s N\n"
    "Without --wait the job id is printed. With --wait: epoch lines from the job's live progress\n"
    "on stderr, then the result on stdout (a new version; predictions as CSV or JSON; loss and\n"
    "accuracy). Ctrl-C while waiting detaches: the job goes on (maas job ID, maas cancel ID).\n"
    "Data over ~900 KB is uploaded as a dataset named after the job.\n";

int maas_cli_submit(int argc, char **argv) {
    const char *cmd = "submit";
    if (cli_wants_help(argc, argv)) return fputs(submit_help, stdout), fputs(conn_help, stdout), 0;
    if (argc < 2) return maas_cli_usage_error(cmd, "expected train, infer, evaluate or optimize");
    maas_job_type type = !strcmp(argv[1], "train")      ? MAAS_JOBTYPE_TRAIN
                         : !strcmp(argv[1], "infer")    ? MAAS_JOBTYPE_INFER
                         : !strcmp(argv[1], "evaluate") ? MAAS_JOBTYPE_EVALUATE
                         : !strcmp(argv[1], "optimize") ? MAAS_JOBTYPE_OPTIMIZE
                                                        : MAAS_JOBTYPE_NONE;
    if (!type) return maas_cli_usage_error(cmd, "unknown job type '%s'", argv[1]);
    enum {
        O_NAME = 256,
        O_MODEL,
        O_LAYERS,
        O_LOSS,
        O_OPT,
        O_LR,
        O_EPOCHS,
        O_BATCH,
        O_VSPLIT,
        O_STD,
        O_SEED,
        O_FROM,
        O_WAIT,
        O_ID,
        O_TTL,
        O_DEADLINE,
        O_CLASSES,
        O_FORMAT,
        O_QUANT,
        O_PRUNE,
        O_FINETUNE
    };
    static const struct option opts[] = {CONN_LONGOPTS,
                                         DATA_LONGOPTS,
                                         {"name", required_argument, 0, O_NAME},
                                         {"model", required_argument, 0, O_MODEL},
                                         {"layers", required_argument, 0, O_LAYERS},
                                         {"loss", required_argument, 0, O_LOSS},
                                         {"optimizer", required_argument, 0, O_OPT},
                                         {"lr", required_argument, 0, O_LR},
                                         {"epochs", required_argument, 0, O_EPOCHS},
                                         {"batch-size", required_argument, 0, O_BATCH},
                                         {"validation-split", required_argument, 0, O_VSPLIT},
                                         {"standardize", no_argument, 0, O_STD},
                                         {"seed", required_argument, 0, O_SEED},
                                         {"from", required_argument, 0, O_FROM},
                                         {"wait", no_argument, 0, O_WAIT},
                                         {"id", required_argument, 0, O_ID},
                                         {"ttl-s", required_argument, 0, O_TTL},
                                         {"deadline-s", required_argument, 0, O_DEADLINE},
                                         {"classes", no_argument, 0, O_CLASSES},
                                         {"format", required_argument, 0, O_FORMAT},
                                         {"quantize", required_argument, 0, O_QUANT},
                                         {"prune", required_argument, 0, O_PRUNE},
                                         {"finetune-epochs", required_argument, 0, O_FINETUNE},
                                         {0, 0, 0, 0}};
    conn c;
    conn_defaults(&c);
    maas_job j;
    maas_job_init(&j, type);
    const char *model = NULL, *layers = NULL, *loss = NULL, *opt = NULL, *from = NULL, *id = NULL;
    data_args da = {0};
    int wait = 0, json = 0, o, rc = 0;
    long lv;
    double dv;
    char e[MAAS_ERRSTR_SIZE];
    optind = 2;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "X:", opts, NULL)) != -1 && !rc) {
        if (conn_opt(&c, o, optarg) || data_opt(cmd, &da, o, optarg, &rc)) continue;
        switch (o) {
        case O_NAME:
        case O_MODEL:
            model = optarg;
            break;
        case O_LAYERS:
            layers = optarg;
            break;
        case O_LOSS:
            loss = optarg;
            break;
        case O_OPT:
            opt = optarg;
            break;
        case O_LR:
            if (!(rc = cli_parse_float(cmd, "--lr", optarg, 1e-12, 10, &dv)))
                j.train.compile.optim.learning_rate = (float)dv;
            break;
        case O_EPOCHS:
            if (!(rc = cli_parse_int(cmd, "--epochs", optarg, 1, 1000000, &lv)))
                j.train.epochs = (int)lv;
            break;
        case O_BATCH:
            if (!(rc = cli_parse_int(cmd, "--batch-size", optarg, 1, 1 << 20, &lv)))
                j.train.batch_size = (int)lv;
            break;
        case O_VSPLIT:
            if (!(rc = cli_parse_float(cmd, "--validation-split", optarg, 0, 0.99, &dv)))
                j.train.validation_split = (float)dv;
            break;
        case O_STD:
            j.train.standardize = 1;
            break;
        case O_SEED:
            if (!(rc = cli_parse_int(cmd, "--seed", optarg, 0, LONG_MAX, &lv))) {
                j.train.seed = (uint64_t)lv;
                j.train.has_seed = 1;
            }
            break;
        case O_FROM:
            from = optarg;
            break;
        case O_WAIT:
            wait = 1;
            break;
        case O_ID:
            id = optarg;
            break;
        case O_TTL:
            if (!(rc = cli_parse_int(cmd, "--ttl-s", optarg, 1, 365 * 86400, &lv)))
                j.ttl_s = (int)lv;
            break;
        case O_DEADLINE:
            if (!(rc = cli_parse_int(cmd, "--deadline-s", optarg, 1, 86400 * 365, &lv)))
                j.deadline_ms = maas_wall_ms() + lv * 1000;
            break;
        case O_CLASSES:
            j.want_classes = 1;
            break;
        case O_FORMAT:
            rc = cli_parse_format(cmd, optarg, &json);
            break;
        case O_QUANT:
            if (strcmp(optarg, "int8"))
                rc = maas_cli_usage_error(cmd, "--quantize takes int8, got '%s'", optarg);
            j.optimize.quantize_int8 = 1;
            break;
        case O_PRUNE:
            if (!(rc = cli_parse_float(cmd, "--prune", optarg, 0, 0.99, &dv)))
                j.optimize.prune = (float)dv;
            break;
        case O_FINETUNE:
            if (!(rc = cli_parse_int(cmd, "--finetune-epochs", optarg, 0, 10000, &lv)))
                j.optimize.finetune_epochs = (int)lv;
            break;
        default:
            rc = maas_cli_usage_error(cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (rc) goto done;
    if (!model) {
        rc = maas_cli_usage_error(cmd, type == MAAS_JOBTYPE_TRAIN ? "--name MODEL is required"
                                                                  : "--model REF is required");
        goto done;
    }
    if (maas_model_ref_parse(model, &j.model, e, sizeof(e))) {
        rc = maas_cli_usage_error(cmd, "%s", e);
        goto done;
    }
    if (id) {
        if (maas_name_check("--id", id, e, sizeof(e))) {
            rc = maas_cli_usage_error(cmd, "%s", e);
            goto done;
        }
        snprintf(j.id, sizeof(j.id), "%s", id);
    } else {
        random_id(j.id);
    }
    j.created_ms = maas_wall_ms();
    cli_data d = {0};
    if (type == MAAS_JOBTYPE_INFER) {
        if (!da.data) {
            rc = maas_cli_usage_error(cmd, "--data is required");
            goto done;
        }
        if ((rc = data_load(cmd, &da, NULL, &d))) goto done;
        j.inputs = as_matrix(d.x, d.rows, d.n_features);
        d.x = NULL;
    } else if (type == MAAS_JOBTYPE_OPTIMIZE && !da.data && !da.dataset) {
        /* no data: size and speed only */
    } else {
        if (!da.dataset == !da.data) {
            rc = maas_cli_usage_error(cmd, "give --data FILE --label COLUMN, or --dataset NAME");
            goto done;
        }
        if (da.dataset) {
            snprintf(j.data.dataset, sizeof(j.data.dataset), "%s", da.dataset);
        } else {
            if (!da.label) {
                rc = maas_cli_usage_error(cmd, "--label COLUMN is required with --data");
                goto done;
            }
            if ((rc = data_load(cmd, &da, da.label, &d))) goto done;
            j.data.x = as_matrix(d.x, d.rows, d.n_features);
            j.data.y = as_matrix(d.y, d.rows, d.y_cols);
            d.x = d.y = NULL;
        }
    }
    if (type == MAAS_JOBTYPE_OPTIMIZE) {
        if (!j.optimize.quantize_int8 && j.optimize.prune == 0.0f) {
            rc = maas_cli_usage_error(cmd, "give --quantize int8, --prune SPARSITY, or both");
            goto done;
        }
        if (j.optimize.finetune_epochs > 0 &&
            (j.optimize.prune == 0.0f || (!da.data && !da.dataset))) {
            rc = maas_cli_usage_error(cmd, "--finetune-epochs needs --prune and labelled data");
            goto done;
        }
    }
    if (type == MAAS_JOBTYPE_TRAIN) {
        if (!layers) {
            rc = maas_cli_usage_error(cmd, "--layers is required");
            goto done;
        }
        if (maas_layers_parse(layers, j.train.layers, MAAS_MAX_LAYERS, &j.train.n_layers, e,
                              sizeof(e))) {
            rc = maas_cli_usage_error(cmd, "--layers: %s", e);
            goto done;
        }
        if ((rc = train_compile(cmd, &j.train, loss, opt))) goto done;
        if (from) {
            if (maas_model_ref_parse(from, &j.train.from, e, sizeof(e))) {
                rc = maas_cli_usage_error(cmd, "--from: %s", e);
                goto done;
            }
            j.train.has_from = 1;
        }
    }
    if ((rc = conn_open(cmd, &c))) goto done;
    /* Data too large for a Kafka message goes to Redis as a dataset the job names. */
    if (j.data.x.data) {
        unsigned char *probe;
        size_t len;
        if (maas_job_encode(&j, &probe, &len, e, sizeof(e)) == MAAS_OK)
            free(probe);
        else
            len = (size_t)-1;
        if (len > INLINE_LIMIT) {
            char name[MAAS_NAME_MAX + 1];
            snprintf(name, sizeof(name), "job-%.124s", j.id);
            cli_data up = {.rows = j.data.x.rows,
                           .n_features = (int)j.data.x.cols,
                           .x = j.data.x.data,
                           .y_cols = (int)j.data.y.cols,
                           .y = j.data.y.data};
            if ((rc = put_dataset(cmd, &c, name, &up))) goto done;
            maas_matrix_release(&j.data.x);
            maas_matrix_release(&j.data.y);
            snprintf(j.data.dataset, sizeof(j.data.dataset), "%s", name);
        }
    }
    rc = submit_job(cmd, &c, &j, wait, json);
done:
    cli_data_release(&d);
    maas_job_release(&j);
    conn_close(&c);
    return rc;
}

/* ------------------------------------------------------------ jobs */

int maas_cli_job(int argc, char **argv) {
    const char *cmd = "job";
    static const char help[] = "usage: maas job ID [--wait]\n"
                               "Prints a job's record: state, attempts, worker, times, progress, "
                               "the error or the result.\n";
    if (cli_wants_help(argc, argv)) return fputs(help, stdout), fputs(conn_help, stdout), 0;
    if (argc < 2) return maas_cli_usage_error(cmd, "expected a job id");
    conn c;
    conn_defaults(&c);
    static const struct option opts[] = {
        CONN_LONGOPTS, {"wait", no_argument, 0, 'w'}, {0, 0, 0, 0}};
    int o, wait = 0;
    optind = 2;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "X:", opts, NULL)) != -1)
        if (!conn_opt(&c, o, optarg)) {
            if (o == 'w')
                wait = 1;
            else
                return maas_cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        }
    int rc = conn_open(cmd, &c);
    if (rc) return rc;
    if (wait) {
        rc = follow(cmd, &c, argv[1], 0, 0);
        conn_close(&c);
        return rc;
    }
    char e[MAAS_ERRSTR_SIZE];
    maas_job_record r;
    if (maas_kv_job_get(c.kv, argv[1], &r, e, sizeof(e))) {
        rc = maas_cli_fail(cmd, "%s", e);
    } else if (r.state == MAAS_JOB_UNKNOWN) {
        rc = maas_cli_fail(cmd, "no job '%s' (never submitted, or its record expired)", argv[1]);
    } else {
        printf("id:        %s\ntype:      %s\nmodel:     %s\nstate:     %s\nattempts:  %d\n", r.id,
               r.type, r.model, maas_job_state_name(r.state), r.attempts);
        if (r.worker[0]) printf("worker:    %s\n", r.worker);
        printf("created:   %lld ms\n", (long long)r.created_ms);
        if (r.started_ms) printf("started:   +%lld ms\n", (long long)(r.started_ms - r.created_ms));
        if (r.finished_ms)
            printf("finished:  +%lld ms\n", (long long)(r.finished_ms - r.created_ms));
        if (r.deadline_ms) printf("deadline:  %lld ms\n", (long long)r.deadline_ms);
        if (r.progress) printf("progress:  %s\n", r.progress);
        if (r.error_code[0]) printf("error:     %s: %s\n", r.error_code, r.error_message);
        if (r.cancel_requested) printf("cancel:    requested\n");
        if (r.state == MAAS_JOB_SUCCEEDED) {
            printf("result:    ");
            fflush(stdout);
            print_result(&c, &r, 0, 0);
        }
    }
    maas_job_record_release(&r);
    conn_close(&c);
    return rc;
}

int maas_cli_cancel(int argc, char **argv) {
    const char *cmd = "cancel";
    if (cli_wants_help(argc, argv))
        return fputs("usage: maas cancel ID\nA queued job is cancelled at once; a running one "
                     "stops at its next batch.\n",
                     stdout),
               0;
    if (argc != 2) return maas_cli_usage_error(cmd, "expected a job id");
    conn c;
    conn_defaults(&c);
    int rc = conn_open(cmd, &c);
    if (rc) return rc;
    char e[MAAS_ERRSTR_SIZE];
    if (maas_kv_job_cancel(c.kv, argv[1], e, sizeof(e)))
        rc = maas_cli_fail(cmd, "%s", e);
    else
        printf("cancel requested for %s\n", argv[1]);
    conn_close(&c);
    return rc;
}

static void age(int64_t ms, char *out, size_t size) {
    int64_t s = ms > 0 ? (maas_wall_ms() - ms) / 1000 : -1;
    if (s < 0)
        snprintf(out, size, "-");
    else if (s < 120)
        snprintf(out, size, "%llds ago", (long long)s);
    else if (s < 7200)
        snprintf(out, size, "%lldm ago", (long long)(s / 60));
    else
        snprintf(out, size, "%lldh ago", (long long)(s / 3600));
}

int maas_cli_jobs(int argc, char **argv) {
    const char *cmd = "jobs";
    static const char help[] =
        "usage: maas jobs [--state queued|running|succeeded|failed|expired|cancelled] [--limit N]\n"
        "Recent jobs, newest first (20 by default): id, type, model, state, attempts, worker,\n"
        "age, and the error of a failed one. Lists jobs submitted through maas (CLI, HTTP API)\n"
        "and work jobs; inference jobs produced straight to Kafka are not indexed.\n";
    if (cli_wants_help(argc, argv)) return fputs(help, stdout), fputs(conn_help, stdout), 0;
    conn c;
    conn_defaults(&c);
    static const struct option opts[] = {CONN_LONGOPTS,
                                         {"state", required_argument, 0, 's'},
                                         {"limit", required_argument, 0, 'n'},
                                         {0, 0, 0, 0}};
    int o, rc = 0;
    long limit = 20;
    maas_job_state state = MAAS_JOB_UNKNOWN;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "X:", opts, NULL)) != -1 && !rc) {
        if (conn_opt(&c, o, optarg)) continue;
        if (o == 's') {
            if ((state = maas_job_state_from_name(optarg)) == MAAS_JOB_UNKNOWN)
                rc = maas_cli_usage_error(cmd, "unknown state '%s'", optarg);
        } else if (o == 'n') {
            rc = cli_parse_int(cmd, "--limit", optarg, 1, 1000, &limit);
        } else {
            rc = maas_cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (rc) return rc;
    if (optind < argc) return maas_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if ((rc = conn_open(cmd, &c))) return rc;
    maas_job_record *recs = calloc((size_t)limit, sizeof(*recs));
    int n = 0;
    char e[MAAS_ERRSTR_SIZE];
    if (!recs) {
        rc = maas_cli_fail(cmd, "out of memory");
    } else if (maas_kv_jobs_list(c.kv, state, (int)limit, recs, &n, e, sizeof(e))) {
        rc = maas_cli_fail(cmd, "%s", e);
    } else {
        printf("%-34s %-9s %-24s %-10s %-3s %-12s %-9s %s\n", "id", "type", "model", "state", "att",
               "worker", "created", "error");
        for (int i = 0; i < n; i++) {
            char when[32];
            age(recs[i].created_ms, when, sizeof(when));
            printf("%-34.34s %-9s %-24.24s %-10s %-3d %-12.12s %-9s %s%s%s\n", recs[i].id,
                   recs[i].type, recs[i].model, maas_job_state_name(recs[i].state),
                   recs[i].attempts, recs[i].worker[0] ? recs[i].worker : "-", when,
                   recs[i].error_code, recs[i].error_code[0] ? ": " : "", recs[i].error_message);
            maas_job_record_release(&recs[i]);
        }
        if (n == 0)
            fprintf(stderr, "maas jobs: none%s%s\n", state ? " in state " : "",
                    state ? maas_job_state_name(state) : "");
    }
    free(recs);
    conn_close(&c);
    return rc;
}

static const char *field_of(const maas_worker_info *w, const char *key) {
    for (int i = 0; i < w->n_fields; i++)
        if (!strcmp(w->keys[i], key)) return w->values[i];
    return "";
}

int maas_cli_workers(int argc, char **argv) {
    const char *cmd = "workers";
    static const char help[] =
        "usage: maas workers\n"
        "The fleet: every worker that announced itself in the last 15 s, with its host, pid,\n"
        "jobs done and failed, the job it is busy with, the model versions it has loaded, and\n"
        "when it was last seen.\n";
    if (cli_wants_help(argc, argv)) return fputs(help, stdout), fputs(conn_help, stdout), 0;
    conn c;
    conn_defaults(&c);
    static const struct option opts[] = {CONN_LONGOPTS, {0, 0, 0, 0}};
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "X:", opts, NULL)) != -1)
        if (!conn_opt(&c, o, optarg))
            return maas_cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
    if (optind < argc) return maas_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    int rc = conn_open(cmd, &c), n = 0;
    if (rc) return rc;
    maas_worker_info *w;
    char e[MAAS_ERRSTR_SIZE];
    if (maas_kv_workers_list(c.kv, &w, &n, e, sizeof(e))) {
        rc = maas_cli_fail(cmd, "%s", e);
    } else {
        printf("%-16s %-16s %-8s %-6s %-6s %-34s %-10s %s\n", "id", "host", "pid", "done", "failed",
               "busy", "seen", "loaded");
        for (int i = 0; i < n; i++) {
            char when[32];
            age(strtoll(field_of(&w[i], "last_seen_ms"), NULL, 10), when, sizeof(when));
            const char *busy = field_of(&w[i], "busy");
            printf("%-16.16s %-16.16s %-8s %-6s %-6s %-34.34s %-10s %s\n", w[i].id,
                   field_of(&w[i], "host"), field_of(&w[i], "pid"), field_of(&w[i], "jobs_done"),
                   field_of(&w[i], "jobs_failed"), busy[0] ? busy : "-", when,
                   field_of(&w[i], "loaded"));
        }
        if (n == 0)
            fprintf(stderr, "maas workers: no worker has announced itself in the last 15 s\n");
        maas_worker_info_release(w, n);
    }
    conn_close(&c);
    return rc;
}

/* ------------------------------------------------------------ registry */

int maas_cli_models(int argc, char **argv) {
    const char *cmd = "models";
    if (cli_wants_help(argc, argv)) return fputs("usage: maas models\n", stdout), 0;
    (void)argv;
    if (argc != 1) return maas_cli_usage_error(cmd, "takes no arguments");
    conn c;
    conn_defaults(&c);
    int rc = conn_open(cmd, &c);
    if (rc) return rc;
    char e[MAAS_ERRSTR_SIZE], **names;
    int n;
    if (maas_kv_models(c.kv, &names, &n, e, sizeof(e))) {
        rc = maas_cli_fail(cmd, "%s", e);
    } else {
        for (int i = 0; i < n; i++) {
            int count = 0, *vers, na;
            char **al;
            maas_kv_version_count(c.kv, names[i], &count, e, sizeof(e));
            printf("%-32s %d versions", names[i], count);
            if (maas_kv_aliases(c.kv, names[i], &al, &vers, &na, e, sizeof(e)) == MAAS_OK) {
                for (int k = 0; k < na; k++) {
                    printf("%s%s=%d", k ? ", " : "  ", al[k], vers[k]);
                    free(al[k]);
                }
                free(al);
                free(vers);
            }
            printf("\n");
            free(names[i]);
        }
        free(names);
    }
    conn_close(&c);
    return rc;
}

int maas_cli_versions(int argc, char **argv) {
    const char *cmd = "versions";
    if (cli_wants_help(argc, argv)) return fputs("usage: maas versions MODEL\n", stdout), 0;
    if (argc != 2) return maas_cli_usage_error(cmd, "expected a model name");
    conn c;
    conn_defaults(&c);
    int rc = conn_open(cmd, &c), n = 0;
    if (rc) return rc;
    char e[MAAS_ERRSTR_SIZE];
    if (maas_kv_version_count(c.kv, argv[1], &n, e, sizeof(e))) {
        rc = maas_cli_fail(cmd, "%s", e);
    } else if (n == 0) {
        rc = maas_cli_fail(cmd, "no model '%s'", argv[1]);
    } else {
        printf("%-8s %-8s %-10s %-14s %-24s %s  %s\n", "version", "parent", "size", "sha256", "job",
               "metrics", "config");
        for (int v = 1; v <= n; v++) {
            maas_version_meta m;
            if (maas_kv_version_meta(c.kv, argv[1], v, &m, e, sizeof(e))) continue;
            printf("%-8d %-8d %-10zu %.12s   %-24.24s %s  %s\n", v, m.parent, m.size, m.sha256,
                   m.job, m.metrics ? m.metrics : "{}", m.config ? m.config : "{}");
            maas_version_meta_release(&m);
        }
    }
    conn_close(&c);
    return rc;
}

int maas_cli_alias(int argc, char **argv) {
    const char *cmd = "alias";
    if (cli_wants_help(argc, argv))
        return fputs("usage: maas alias MODEL ALIAS VERSION\nMoves ALIAS to VERSION atomically; "
                     "the next job that names MODEL@ALIAS uses it.\n",
                     stdout),
               0;
    if (argc != 4) return maas_cli_usage_error(cmd, "expected MODEL ALIAS VERSION");
    long v;
    int rc = cli_parse_int(cmd, "VERSION", argv[3], 1, INT32_MAX, &v);
    if (rc) return rc;
    conn c;
    conn_defaults(&c);
    if ((rc = conn_open(cmd, &c))) return rc;
    char e[MAAS_ERRSTR_SIZE];
    if (maas_kv_alias_set(c.kv, argv[1], argv[2], (int)v, -1, e, sizeof(e)))
        rc = maas_cli_fail(cmd, "%s", e);
    else
        printf("%s@%s -> version %ld\n", argv[1], argv[2], v);
    conn_close(&c);
    return rc;
}

int maas_cli_export(int argc, char **argv) {
    const char *cmd = "export";
    if (cli_wants_help(argc, argv))
        return fputs("usage: maas export MODEL[:VERSION|@ALIAS] -o FILE.h5 [--stored]\n"
                     "Writes the version's model file, which Keras loads with "
                     "keras.models.load_model.\nAn int8 version is written as the float model of "
                     "its dequantized weights; --stored\nwrites the stored bytes as they are "
                     "(maas's int8 file, which maas predict serves).\n",
                     stdout),
               0;
    int stored = argc == 5 && !strcmp(argv[4], "--stored");
    if ((argc != 4 && !stored) || strcmp(argv[2], "-o"))
        return maas_cli_usage_error(cmd, "expected MODEL[:VERSION|@ALIAS] -o FILE [--stored]");
    maas_model_ref ref;
    char e[MAAS_ERRSTR_SIZE];
    if (maas_model_ref_parse(argv[1], &ref, e, sizeof(e)))
        return maas_cli_usage_error(cmd, "%s", e);
    conn c;
    conn_defaults(&c);
    int rc = conn_open(cmd, &c), version;
    if (rc) return rc;
    unsigned char *h5 = NULL, *keras = NULL;
    size_t len = 0, klen = 0;
    int converted = 0;
    if (maas_kv_version_resolve(c.kv, ref.name, ref.ref, &version, e, sizeof(e)) ||
        maas_kv_version_get(c.kv, ref.name, version, &h5, &len, NULL, e, sizeof(e))) {
        rc = maas_cli_fail(cmd, "%s", e);
    } else if (!stored &&
               maas_model_image_for_keras(h5, len, &keras, &klen, &converted, e, sizeof(e))) {
        rc = maas_cli_fail(cmd, "%s version %d: %s", ref.name, version, e);
    } else {
        if (!stored) {
            free(h5);
            h5 = keras;
            len = klen;
            if (converted)
                fprintf(stderr,
                        "maas export: version %d is int8; writing its dequantized float "
                        "weights (--stored for the int8 file)\n",
                        version);
        }
        FILE *f = fopen(argv[3], "wb");
        if (!f || fwrite(h5, 1, len, f) != len || fclose(f) != 0)
            rc = maas_cli_fail(cmd, "cannot write '%s': %s", argv[3], strerror(errno));
        else
            fprintf(stderr, "maas export: %s version %d -> %s (%zu bytes)\n", ref.name, version,
                    argv[3], len);
    }
    free(h5);
    conn_close(&c);
    return rc;
}

int maas_cli_import(int argc, char **argv) {
    const char *cmd = "import";
    if (cli_wants_help(argc, argv))
        return fputs("usage: maas import FILE.h5 --name MODEL\nValidates a Keras model.h5 and "
                     "registers it as MODEL's next version.\n",
                     stdout),
               0;
    if (argc != 4 || strcmp(argv[2], "--name"))
        return maas_cli_usage_error(cmd, "expected FILE.h5 --name MODEL");
    char e[MAAS_ERRSTR_SIZE];
    if (maas_name_check("model name", argv[3], e, sizeof(e)))
        return maas_cli_usage_error(cmd, "%s", e);
    maas_model *m;
    maas_model_info info;
    if (maas_model_load(argv[1], &m, &info, e, sizeof(e))) return maas_cli_fail(cmd, "%s", e);
    /* Store maas's own rendering of it: the same layers and weights, our dialect. */
    unsigned char *h5;
    size_t len;
    int rc = 0;
    if (maas_model_save_image(m, info.has_compile ? &info.compile : NULL, &h5, &len, e,
                              sizeof(e))) {
        maas_model_free(m);
        return maas_cli_fail(cmd, "%s", e);
    }
    conn c;
    conn_defaults(&c);
    if (!(rc = conn_open(cmd, &c))) {
        char job[64];
        snprintf(job, sizeof(job), "import-%lld", (long long)maas_wall_ms());
        int version, created;
        if (maas_kv_version_create(c.kv, argv[3], job, 0, h5, len, NULL, NULL, &version, &created,
                                   e, sizeof(e)))
            rc = maas_cli_fail(cmd, "%s", e);
        else
            printf("%s version %d (%d inputs, %d outputs, %zu parameters, from Keras %s)\n",
                   argv[3], version, m->n_inputs, m->n_outputs, m->n_params,
                   info.keras_version[0] ? info.keras_version : "?");
        conn_close(&c);
    }
    free(h5);
    maas_model_free(m);
    return rc;
}

/* ------------------------------------------------------------ dead letters */

typedef struct dlq_entry {
    int64_t offset;
    char id[MAAS_NAME_MAX + 1], code[32], message[512], topic[256], worker[MAAS_NAME_MAX + 1];
    unsigned char *raw;
    size_t raw_len;
} dlq_entry;

static void dlq_release(dlq_entry *v, int n) {
    for (int i = 0; v && i < n; i++) free(v[i].raw);
    free(v);
}

/* Reads the whole dead-letter topic from its start (a throwaway group that commits nothing). */
static int dlq_read(const char *cmd, conn *c, dlq_entry **out, int *n) {
    char e[MAAS_ERRSTR_SIZE], topic[256], group[64], rid[33];
    *out = NULL;
    *n = 0;
    if (maas_topic_name(c->prefix, MAAS_TOPIC_DLQ, topic, sizeof(topic), e, sizeof(e)))
        return maas_cli_fail(cmd, "%s", e);
    random_id(rid);
    snprintf(group, sizeof(group), "maas-cli-dlq-%.16s", rid);
    maas_setting s[MAX_X + 2];
    int ns = 0;
    for (int i = 0; i < c->n_settings && ns < MAX_X; i++) s[ns++] = c->settings[i];
    s[ns++] = (maas_setting){"kafka.auto.offset.reset", "earliest"};
    s[ns++] = (maas_setting){"kafka.enable.auto.commit", "false"};
    const char *topics[] = {topic};
    maas_consumer *con = maas_consumer_new(c->brokers, group, topics, 1, s, ns, e, sizeof(e));
    if (!con) return maas_cli_fail(cmd, "%s", e);
    int cap = 64, rc = 0;
    dlq_entry *v = calloc((size_t)cap, sizeof(*v));
    int64_t deadline = maas_wall_ms() + 30000, idle_since = 0;
    while (v && maas_wall_ms() < deadline) {
        maas_message m;
        if (maas_consumer_poll(con, 200, &m, e, sizeof(e))) continue;
        if (!m.handle_) {
            if (maas_consumer_assigned(con) > 0 && maas_consumer_lag(con) == 0) {
                if (!idle_since) idle_since = maas_wall_ms();
                if (maas_wall_ms() - idle_since > 1500) break; /* caught up */
            }
            continue;
        }
        idle_since = 0;
        if (*n == cap) {
            dlq_entry *nv = realloc(v, (size_t)cap * 2 * sizeof(*v));
            if (!nv) {
                maas_message_release(&m);
                break;
            }
            memset(nv + cap, 0, (size_t)cap * sizeof(*v));
            v = nv;
            cap *= 2;
        }
        dlq_entry *d = &v[*n];
        d->offset = m.offset;
        maas_message_header(&m, "maas-job-id", d->id, sizeof(d->id));
        maas_message_header(&m, "maas-error-code", d->code, sizeof(d->code));
        maas_message_header(&m, "maas-error-message", d->message, sizeof(d->message));
        maas_message_header(&m, "maas-source-topic", d->topic, sizeof(d->topic));
        maas_message_header(&m, "maas-worker", d->worker, sizeof(d->worker));
        d->raw = malloc(m.value_len ? m.value_len : 1);
        if (d->raw) {
            memcpy(d->raw, m.value, m.value_len);
            d->raw_len = m.value_len;
            (*n)++;
        }
        maas_message_release(&m);
    }
    if (!v) rc = maas_cli_fail(cmd, "out of memory");
    if (maas_wall_ms() >= deadline && !rc)
        fprintf(stderr, "maas %s: stopped reading %s after 30 s\n", cmd, topic);
    maas_consumer_free(con);
    *out = v;
    return rc;
}

static int dlq_wanted(const dlq_entry *d, char **ids, int n_ids) {
    if (n_ids == 0) return 1;
    for (int i = 0; i < n_ids; i++)
        if (!strcmp(ids[i], d->id)) return 1;
    return 0;
}

int maas_cli_dlq(int argc, char **argv) {
    const char *cmd = "dlq";
    static const char help[] =
        "usage: maas dlq ls\n"
        "       maas dlq replay [ID...]\n"
        "ls lists the dead-letter topic: offset, job id, error code and message, the topic the\n"
        "job came from, the worker. replay puts dead-lettered jobs back: each one's record goes\n"
        "from failed back to queued (attempts reset; one whose record expired gets a new one)\n"
        "and its original message is produced to its topic again. Without IDs every\n"
        "dead-lettered job whose record is failed is replayed (the newest copy of each);\n"
        "messages with no readable job id cannot be replayed. Fix the cause first: a job that\n"
        "fails the same way is dead-lettered again.\n";
    if (cli_wants_help(argc, argv)) return fputs(help, stdout), fputs(conn_help, stdout), 0;
    if (argc < 2 || (strcmp(argv[1], "ls") && strcmp(argv[1], "replay")))
        return maas_cli_usage_error(cmd, "expected ls or replay");
    int replay = !strcmp(argv[1], "replay");
    conn c;
    conn_defaults(&c);
    static const struct option opts[] = {CONN_LONGOPTS, {0, 0, 0, 0}};
    int o;
    optind = 2;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "X:", opts, NULL)) != -1)
        if (!conn_opt(&c, o, optarg))
            return maas_cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
    char **ids = argv + optind;
    int n_ids = argc - optind;
    if (!replay && n_ids) return maas_cli_usage_error(cmd, "ls takes no job ids");
    int rc = conn_open(cmd, &c), n = 0;
    if (rc) return rc;
    dlq_entry *v = NULL;
    if ((rc = dlq_read(cmd, &c, &v, &n))) goto done;
    if (!replay) {
        printf("%-8s %-34s %-20s %-16s %-12s %s\n", "offset", "job", "code", "from", "worker",
               "message");
        for (int i = 0; i < n; i++)
            printf("%-8lld %-34.34s %-20s %-16.16s %-12.12s %s\n", (long long)v[i].offset,
                   v[i].id[0] ? v[i].id : "-", v[i].code, v[i].topic, v[i].worker, v[i].message);
        fprintf(stderr, "maas dlq: %d dead letter%s\n", n, n == 1 ? "" : "s");
        goto done;
    }
    char e[MAAS_ERRSTR_SIZE];
    publish_state ps = {0};
    maas_producer *p =
        maas_producer_new(c.brokers, c.settings, c.n_settings, on_delivery, &ps, e, sizeof(e));
    if (!p) {
        rc = maas_cli_fail(cmd, "%s", e);
        goto done;
    }
    int replayed = 0, skipped = 0;
    for (int i = n - 1; i >= 0; i--) { /* newest first; older copies of a job are skipped */
        dlq_entry *d = &v[i];
        if (!d->id[0] || !dlq_wanted(d, ids, n_ids)) continue;
        int seen = 0;
        for (int k = n - 1; k > i; k--) seen |= !strcmp(v[k].id, d->id);
        if (seen) continue;
        maas_job_record r;
        if (maas_kv_job_get(c.kv, d->id, &r, e, sizeof(e))) {
            rc = maas_cli_fail(cmd, "%s", e);
            break;
        }
        maas_job_state st = r.state;
        maas_job_record_release(&r);
        if (st == MAAS_JOB_UNKNOWN) {
            maas_job j;
            if (maas_job_decode(d->raw, d->raw_len, &j, e, sizeof(e))) {
                fprintf(stderr, "skip %s: the message does not decode (%s)\n", d->id, e);
                skipped++;
                continue;
            }
            maas_job_record rec;
            maas_job_record_of(&j, &rec);
            maas_err err =
                maas_kv_job_create(c.kv, &rec, j.ttl_s > 0 ? j.ttl_s : 7 * 86400, e, sizeof(e));
            maas_job_release(&j);
            if (err && err != MAAS_ERR_CONFLICT) {
                rc = maas_cli_fail(cmd, "%s", e);
                break;
            }
        } else if (st == MAAS_JOB_FAILED) {
            maas_job_update u = {.to = MAAS_JOB_QUEUED, .from_mask = 1u << MAAS_JOB_FAILED};
            if (maas_kv_job_transition(c.kv, d->id, &u, e, sizeof(e))) {
                fprintf(stderr, "skip %s: %s\n", d->id, e);
                skipped++;
                continue;
            }
        } else {
            fprintf(stderr, "skip %s: its record is %s\n", d->id, maas_job_state_name(st));
            skipped++;
            continue;
        }
        ps.err = MAAS_OK;
        maas_err perr = maas_producer_send(p, d->topic, d->id, strlen(d->id), d->raw, d->raw_len,
                                           NULL, e, sizeof(e));
        if (!perr) perr = maas_producer_flush(p, 15000, e, sizeof(e));
        if (!perr && ps.err) {
            perr = ps.err;
            snprintf(e, sizeof(e), "%s", ps.errstr);
        }
        if (perr) {
            maas_job_update u = {.to = MAAS_JOB_FAILED,
                                 .from_mask = 1u << MAAS_JOB_QUEUED,
                                 .error_code = "UNAVAILABLE",
                                 .error_message = e,
                                 .notify = 1}; /* what it asked for is unknown here */
            char e2[MAAS_ERRSTR_SIZE];
            maas_kv_job_transition(c.kv, d->id, &u, e2, sizeof(e2));
            rc = maas_cli_fail(cmd, "replaying %s: %s (its record says failed again)", d->id, e);
            break;
        }
        printf("replayed %s to %s\n", d->id, d->topic);
        replayed++;
    }
    maas_producer_free(p);
    fprintf(stderr, "maas dlq: %d replayed, %d skipped\n", replayed, skipped);
    for (int i = 0; !rc && i < n_ids; i++) {
        int found = 0;
        for (int k = 0; k < n; k++) found |= !strcmp(v[k].id, ids[i]);
        if (!found) rc = maas_cli_fail(cmd, "job %s is not on the dead-letter topic", ids[i]);
    }
done:
    dlq_release(v, n);
    conn_close(&c);
    return rc;
}

/* ------------------------------------------------------------ sweeps */

static int parse_list_f(const char *cmd, const char *opt, const char *v, float *out, int *n,
                        double lo, double hi) {
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", v);
    *n = 0;
    for (char *p = buf, *save; *p; p = save) {
        save = strchr(p, ',');
        if (save)
            *save++ = '\0';
        else
            save = p + strlen(p);
        double d;
        int rc = cli_parse_float(cmd, opt, p, lo, hi, &d);
        if (rc) return rc;
        if (*n == MAAS_SWEEP_MAX_VALUES)
            return maas_cli_usage_error(cmd, "%s: at most %d values", opt, MAAS_SWEEP_MAX_VALUES);
        out[(*n)++] = (float)d;
    }
    return 0;
}

static int parse_list_i(const char *cmd, const char *opt, const char *v, int *out, int *n, long lo,
                        long hi) {
    float f[MAAS_SWEEP_MAX_VALUES];
    int rc = parse_list_f(cmd, opt, v, f, n, (double)lo, (double)hi);
    for (int i = 0; !rc && i < *n; i++) {
        if (f[i] != floorf(f[i])) return maas_cli_usage_error(cmd, "%s takes integers", opt);
        out[i] = (int)f[i];
    }
    return rc;
}

static void print_sweep(const maas_sweep *s, const maas_sweep_row *rows, int finished) {
    printf("sweep %s: %s, %d points, %d finished; ranked by %s\n", s->id, s->model, s->n, finished,
           maas_sweep_metric_name(s->metric));
    printf("%-4s %-7s %-10s %-9s %-9s %-9s %-5s %-6s %-24s %s\n", "rank", "version", "state",
           "val_loss", "val_acc", "lr", "batch", "epochs", "layers", "job");
    for (int i = 0; i < s->n; i++) {
        const maas_sweep_row *r = &rows[i];
        const maas_sweep_point *p = &s->points[r->point];
        char rank[16] = "-", ver[16] = "-", vl[32] = "-", va[32] = "-";
        if (r->state == MAAS_JOB_SUCCEEDED) {
            snprintf(rank, sizeof(rank), "%d", i + 1);
            snprintf(ver, sizeof(ver), "%d", r->version);
            if (!isnan(r->val_loss)) snprintf(vl, sizeof(vl), "%.4f", r->val_loss);
            if (!isnan(r->val_accuracy)) snprintf(va, sizeof(va), "%.4f", r->val_accuracy);
        }
        printf("%-4s %-7s %-10s %-9s %-9s %-9.3g %-5d %-6d %-24.24s %s%s%s\n", rank, ver,
               maas_job_state_name(r->state), vl, va, (double)p->lr, p->batch_size, p->epochs,
               p->layers, p->job, r->error[0] ? "  " : "", r->error);
    }
}

/* Follows a sweep until every point is final, then settles it (promote) and prints the table. */
static int follow_sweep(const char *cmd, conn *c, maas_sweep *s) {
    char e[MAAS_ERRSTR_SIZE];
    maas_sweep_row *rows = calloc((size_t)s->n, sizeof(*rows));
    unsigned char *seen = calloc((size_t)s->n, 1);
    if (!rows || !seen) {
        free(rows);
        free(seen);
        return maas_cli_fail(cmd, "out of memory");
    }
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old);
    int rc = 0, finished = 0, best;
    while (1) {
        if (maas_sweep_rank(c->kv, s, rows, &finished, &best, e, sizeof(e))) {
            rc = maas_cli_fail(cmd, "%s", e);
            break;
        }
        for (int i = 0; i < s->n; i++) {
            const maas_sweep_row *r = &rows[i];
            if (!MAAS_JOB_FINAL(r->state) || seen[r->point]) continue;
            seen[r->point] = 1;
            const maas_sweep_point *p = &s->points[r->point];
            int k = 0;
            for (int q = 0; q < s->n; q++) k += seen[q];
            fprintf(stderr, "[%d/%d] %s %s", k, s->n, p->job, maas_job_state_name(r->state));
            if (r->state == MAAS_JOB_SUCCEEDED)
                fprintf(stderr, ": version %d, val_loss %.4f, val_accuracy %.4f", r->version,
                        r->val_loss, r->val_accuracy);
            else
                fprintf(stderr, ": %s", r->error);
            fprintf(stderr, " (lr %g, batch %d, epochs %d, layers %s)\n", (double)p->lr,
                    p->batch_size, p->epochs, p->layers);
        }
        if (finished == s->n) break;
        if (detach) {
            fprintf(stderr,
                    "maas %s: detached; sweep %s goes on ('maas sweep show %s --wait' follows "
                    "it)\n",
                    cmd, s->id, s->id);
            rc = 130;
            break;
        }
        struct timespec ts = {0, 500 * 1000000L};
        nanosleep(&ts, NULL);
    }
    sigaction(SIGINT, &old, NULL);
    if (!rc) {
        int did;
        if (maas_sweep_settle(c->kv, s, rows, finished, best, &did, e, sizeof(e))) {
            rc = maas_cli_fail(cmd, "%s", e);
        } else {
            print_sweep(s, rows, finished);
            if (s->best_version > 0)
                printf("best: %s version %d (%s)%s%s%s\n", s->model, s->best_version, s->best_job,
                       s->promote[0] ? "; " : "", s->promote, s->promote[0] ? " moved to it" : "");
            else
                rc = maas_cli_fail(cmd, "no point of sweep %s succeeded", s->id);
        }
    }
    free(rows);
    free(seen);
    return rc;
}

static const char sweep_help[] =
    "usage: maas sweep --name MODEL (--data FILE --label COLUMN | --dataset NAME)\n"
    "                  --layers SPEC [--layers SPEC]... [--lr LIST] [--batch-size LIST]\n"
    "                  [--epochs LIST] [--random N [--seed N]] [--validation-split F]\n"
    "                  [--metric val_loss|val_accuracy] [--promote ALIAS] [--standardize]\n"
    "                  [--loss NAME] [--optimizer NAME] [--id ID] [--wait]\n"
    "       maas sweep show ID [--wait]\n"
    "A grid search over learning rates, layer lists, batch sizes and epochs (LIST: 0.001,0.01),\n"
    "or --random N points of it: one training job per point across the workers. The sweep is\n"
    "stored in Redis before its jobs (ids ID-001, ID-002, ...), so running the same command\n"
    "again with the same --id submits only what is missing. --wait prints each point as it\n"
    "ends, then the ranked table by the validation metric (--validation-split, default 0.2),\n"
    "and moves --promote ALIAS to the best version. Without --wait it prints the sweep id.\n";

int maas_cli_sweep(int argc, char **argv) {
    const char *cmd = "sweep";
    if (cli_wants_help(argc, argv)) return fputs(sweep_help, stdout), fputs(conn_help, stdout), 0;
    int show = argc >= 2 && !strcmp(argv[1], "show");
    enum {
        O_NAME = 256,
        O_LAYERS,
        O_LR,
        O_BATCH,
        O_EPOCHS,
        O_RANDOM,
        O_SEED,
        O_VSPLIT,
        O_METRIC,
        O_PROMOTE,
        O_STD,
        O_LOSS,
        O_OPT,
        O_ID,
        O_WAIT
    };
    static const struct option opts[] = {CONN_LONGOPTS,
                                         DATA_LONGOPTS,
                                         {"name", required_argument, 0, O_NAME},
                                         {"layers", required_argument, 0, O_LAYERS},
                                         {"lr", required_argument, 0, O_LR},
                                         {"batch-size", required_argument, 0, O_BATCH},
                                         {"epochs", required_argument, 0, O_EPOCHS},
                                         {"random", required_argument, 0, O_RANDOM},
                                         {"seed", required_argument, 0, O_SEED},
                                         {"validation-split", required_argument, 0, O_VSPLIT},
                                         {"metric", required_argument, 0, O_METRIC},
                                         {"promote", required_argument, 0, O_PROMOTE},
                                         {"standardize", no_argument, 0, O_STD},
                                         {"loss", required_argument, 0, O_LOSS},
                                         {"optimizer", required_argument, 0, O_OPT},
                                         {"id", required_argument, 0, O_ID},
                                         {"wait", no_argument, 0, O_WAIT},
                                         {0, 0, 0, 0}};
    conn c;
    conn_defaults(&c);
    maas_sweep *s = calloc(1, sizeof(*s));
    maas_sweep_grid *g = calloc(1, sizeof(*g));
    maas_job base;
    maas_job_init(&base, MAAS_JOBTYPE_TRAIN);
    base.train.validation_split = 0.2f;
    const char *model = NULL, *id = NULL, *loss = NULL, *opt = NULL;
    data_args da = {0};
    int wait = 0, o, rc = 0;
    long lv;
    double dv;
    char e[MAAS_ERRSTR_SIZE];
    cli_data d = {0};
    if (!s || !g) {
        rc = maas_cli_fail(cmd, "out of memory");
        goto done;
    }
    optind = show ? 2 : 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "X:", opts, NULL)) != -1 && !rc) {
        if (conn_opt(&c, o, optarg) || data_opt(cmd, &da, o, optarg, &rc)) continue;
        switch (o) {
        case O_NAME:
            model = optarg;
            break;
        case O_LAYERS:
            if (g->n_layers == MAAS_SWEEP_MAX_VALUES)
                rc = maas_cli_usage_error(cmd, "at most %d --layers", MAAS_SWEEP_MAX_VALUES);
            else
                snprintf(g->layers[g->n_layers++], MAAS_SWEEP_LAYERS_MAX, "%s", optarg);
            break;
        case O_LR:
            rc = parse_list_f(cmd, "--lr", optarg, g->lr, &g->n_lr, 1e-12, 10);
            break;
        case O_BATCH:
            rc = parse_list_i(cmd, "--batch-size", optarg, g->batch, &g->n_batch, 1, 1 << 20);
            break;
        case O_EPOCHS:
            rc = parse_list_i(cmd, "--epochs", optarg, g->epochs, &g->n_epochs, 1, 1000000);
            break;
        case O_RANDOM:
            if (!(rc = cli_parse_int(cmd, "--random", optarg, 1, MAAS_SWEEP_MAX_POINTS, &lv)))
                g->random = (int)lv;
            break;
        case O_SEED:
            if (!(rc = cli_parse_int(cmd, "--seed", optarg, 0, LONG_MAX, &lv))) {
                g->seed = (uint64_t)lv;
                base.train.seed = (uint64_t)lv;
                base.train.has_seed = 1;
            }
            break;
        case O_VSPLIT:
            if (!(rc = cli_parse_float(cmd, "--validation-split", optarg, 0.01, 0.9, &dv)))
                base.train.validation_split = (float)dv;
            break;
        case O_METRIC:
            if (maas_sweep_metric_from_name(optarg, &s->metric, e, sizeof(e)))
                rc = maas_cli_usage_error(cmd, "%s", e);
            break;
        case O_PROMOTE:
            if (maas_name_check("--promote", optarg, e, sizeof(e)))
                rc = maas_cli_usage_error(cmd, "%s", e);
            snprintf(s->promote, sizeof(s->promote), "%s", optarg);
            break;
        case O_STD:
            base.train.standardize = 1;
            break;
        case O_LOSS:
            loss = optarg;
            break;
        case O_OPT:
            opt = optarg;
            break;
        case O_ID:
            id = optarg;
            break;
        case O_WAIT:
            wait = 1;
            break;
        default:
            rc = maas_cli_usage_error(cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (rc) goto done;
    if (show) {
        if (optind != argc - 1) {
            rc = maas_cli_usage_error(cmd, "expected show ID [--wait]");
            goto done;
        }
        if ((rc = conn_open(cmd, &c))) goto done;
        if (maas_kv_sweep_load(c.kv, argv[optind], s, e, sizeof(e))) {
            rc = maas_cli_fail(cmd, "%s", e);
            goto done;
        }
        if (wait) {
            rc = follow_sweep(cmd, &c, s);
        } else {
            maas_sweep_row *rows = calloc((size_t)s->n, sizeof(*rows));
            int finished, best;
            if (!rows || maas_sweep_rank(c.kv, s, rows, &finished, &best, e, sizeof(e)))
                rc = maas_cli_fail(cmd, "%s", rows ? e : "out of memory");
            else
                print_sweep(s, rows, finished);
            if (!rc && s->done)
                printf("done: best %s version %d%s%s\n", s->model, s->best_version,
                       s->promote[0] ? ", promoted to " : "", s->promote);
            free(rows);
        }
        goto done;
    }
    if (optind < argc) {
        rc = maas_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
        goto done;
    }
    if (!model || !g->n_layers || (!da.data == !da.dataset) || (da.data && !da.label)) {
        rc = maas_cli_usage_error(cmd, "--name, --layers, and --data FILE --label COLUMN or "
                                       "--dataset NAME are required");
        goto done;
    }
    if (maas_model_ref_parse(model, &base.model, e, sizeof(e))) {
        rc = maas_cli_usage_error(cmd, "%s", e);
        goto done;
    }
    snprintf(s->model, sizeof(s->model), "%s", base.model.name);
    if (maas_layers_parse(g->layers[0], base.train.layers, MAAS_MAX_LAYERS, &base.train.n_layers, e,
                          sizeof(e))) {
        rc = maas_cli_usage_error(cmd, "--layers: %s", e);
        goto done;
    }
    if ((rc = train_compile(cmd, &base.train, loss, opt))) goto done;
    if (id) {
        if (maas_name_check("--id", id, e, sizeof(e))) {
            rc = maas_cli_usage_error(cmd, "%s", e);
            goto done;
        }
        snprintf(s->id, sizeof(s->id), "%s", id);
    } else {
        char rid[33];
        random_id(rid);
        snprintf(s->id, sizeof(s->id), "sw-%.16s", rid);
    }
    if (maas_sweep_expand(s, g, &base, e, sizeof(e))) {
        rc = maas_cli_usage_error(cmd, "%s", e);
        goto done;
    }
    if ((rc = conn_open(cmd, &c))) goto done;
    if (da.data) { /* the data goes to Redis once; every point's job names it */
        if ((rc = data_load(cmd, &da, da.label, &d))) goto done;
        char name[MAAS_NAME_MAX + 1];
        snprintf(name, sizeof(name), "%.120s-data", s->id);
        if ((rc = put_dataset(cmd, &c, name, &d))) goto done;
        snprintf(base.data.dataset, sizeof(base.data.dataset), "%s", name);
    } else {
        snprintf(base.data.dataset, sizeof(base.data.dataset), "%s", da.dataset);
    }
    s->created_ms = maas_wall_ms();
    maas_err err = maas_kv_sweep_create(c.kv, s, e, sizeof(e));
    if (err == MAAS_ERR_CONFLICT) {
        maas_sweep *old = calloc(1, sizeof(*old));
        if (!old || maas_kv_sweep_load(c.kv, s->id, old, e, sizeof(e)) || old->n != s->n) {
            rc =
                maas_cli_fail(cmd, "sweep %s exists with other points; choose another --id", s->id);
            free(old);
            goto done;
        }
        free(old);
        fprintf(stderr, "maas %s: sweep %s exists; submitting what is missing\n", cmd, s->id);
    } else if (err) {
        rc = maas_cli_fail(cmd, "%s", e);
        goto done;
    }
    int submitted = 0;
    for (int k = 0; k < s->n && !rc; k++) {
        maas_job j;
        char topic[256];
        int existed;
        if (maas_sweep_job(&base, &s->points[k], &j, e, sizeof(e))) {
            rc = maas_cli_fail(cmd, "%s", e);
            break;
        }
        j.created_ms = maas_wall_ms();
        rc = publish_job(cmd, &c, &j, 1, &existed, topic, sizeof(topic));
        submitted += !existed;
    }
    if (rc) goto done;
    fprintf(stderr, "maas %s: sweep %s: %d jobs (%d submitted now) for %s\n", cmd, s->id, s->n,
            submitted, s->model);
    if (wait)
        rc = follow_sweep(cmd, &c, s);
    else
        printf("%s\n", s->id);
done:
    cli_data_release(&d);
    maas_job_release(&base);
    free(s);
    free(g);
    conn_close(&c);
    return rc;
}

/* ------------------------------------------------------------ retention */

int maas_cli_gc(int argc, char **argv) {
    const char *cmd = "gc";
    static const char help[] =
        "usage: maas gc MODEL --keep N [--dry-run]\n"
        "Deletes MODEL's versions older than its newest N, except those an alias points at\n"
        "(latest, production, ...). Numbers are not reused. maas-coordinator\n"
        "--retain-versions N does the same for every model, continuously.\n";
    if (cli_wants_help(argc, argv)) return fputs(help, stdout), fputs(conn_help, stdout), 0;
    conn c;
    conn_defaults(&c);
    static const struct option opts[] = {CONN_LONGOPTS,
                                         {"keep", required_argument, 0, 'k'},
                                         {"dry-run", no_argument, 0, 'n'},
                                         {0, 0, 0, 0}};
    int o, rc = 0, dry = 0;
    long keep = -1;
    optind = 2;
    opterr = 0;
    if (argc < 2 || argv[1][0] == '-') return maas_cli_usage_error(cmd, "expected MODEL --keep N");
    while ((o = getopt_long(argc, argv, "X:", opts, NULL)) != -1 && !rc) {
        if (conn_opt(&c, o, optarg)) continue;
        if (o == 'k')
            rc = cli_parse_int(cmd, "--keep", optarg, 1, 1000000, &keep);
        else if (o == 'n')
            dry = 1;
        else
            rc = maas_cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
    }
    if (rc) return rc;
    if (keep < 1) return maas_cli_usage_error(cmd, "--keep N is required");
    if ((rc = conn_open(cmd, &c))) return rc;
    char e[MAAS_ERRSTR_SIZE];
    int n = 0, deleted = 0, kept_alias = 0;
    if (maas_kv_version_count(c.kv, argv[1], &n, e, sizeof(e))) {
        rc = maas_cli_fail(cmd, "%s", e);
    } else if (n == 0) {
        rc = maas_cli_fail(cmd, "no model '%s'", argv[1]);
    } else {
        char **al = NULL;
        int *vers = NULL, na = 0;
        maas_kv_aliases(c.kv, argv[1], &al, &vers, &na, e, sizeof(e));
        for (int v = n - (int)keep; v >= 1; v--) {
            maas_version_meta meta;
            if (maas_kv_version_meta(c.kv, argv[1], v, &meta, e, sizeof(e))) continue;
            maas_version_meta_release(&meta);
            int aliased = 0;
            for (int k = 0; k < na; k++) aliased |= vers[k] == v;
            if (aliased) {
                kept_alias++;
                continue;
            }
            if (dry) {
                printf("would delete %s version %d\n", argv[1], v);
                deleted++;
            } else if (maas_kv_version_delete(c.kv, argv[1], v, e, sizeof(e)) == MAAS_OK) {
                printf("deleted %s version %d\n", argv[1], v);
                deleted++;
            } else {
                fprintf(stderr, "maas gc: %s\n", e);
            }
        }
        for (int k = 0; k < na; k++) free(al[k]);
        free(al);
        free(vers);
        fprintf(stderr, "maas gc: %s: %d version%s %s, %d kept for an alias\n", argv[1], deleted,
                deleted == 1 ? "" : "s", dry ? "to delete" : "deleted", kept_alias);
    }
    conn_close(&c);
    return rc;
}
