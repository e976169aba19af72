/*
 * `maas submit`, `maas job`, `maas cancel`, `maas jobs`, `maas workers`: jobs on
 * the cluster (cluster.h for the shared options and the submit protocol).
 */
#include "maas/base.h"
#include "maas/broker.h"
#include "maas/client.h"
#include "maas/clock.h"
#include "maas/explain.h"
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

static const char submit_help[] =
    "usage: maas submit train --name MODEL (--data FILE --label COLUMN | --dataset NAME)\n"
    "                         --layers SPEC [--loss NAME] [--optimizer NAME] [--lr RATE]\n"
    "                         [--epochs N] [--batch-size N] [--validation-split F]\n"
    "                         [--standardize] [--seed N] [--from MODEL:V|MODEL@ALIAS] [--wait]\n"
    "       maas submit infer --model MODEL[:V|@ALIAS] --data FILE [--drop C]... [--classes]\n"
    "                         [--format csv|json] [--wait]\n"
    "                         [--explain gradient_x_input|integrated_gradients [--steps N]\n"
    "                          [--baseline zeros|mean]]   (attributions; as maas predict)\n"
    "       maas submit evaluate --model REF (--data FILE --label COLUMN | --dataset NAME) "
    "[--wait]\n"
    "       maas submit optimize --model REF [--quantize int8|bf16] [--prune SPARSITY]\n"
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
    if (cli_wants_help(argc, argv))
        return fputs(submit_help, stdout), fputs(cli_conn_help, stdout), 0;
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
        O_FINETUNE,
        O_EXPLAIN,
        O_STEPS,
        O_BASELINE
    };
    static const struct option opts[] = {CLI_CONN_LONGOPTS,
                                         CLI_DATA_LONGOPTS,
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
                                         {"explain", required_argument, 0, O_EXPLAIN},
                                         {"steps", required_argument, 0, O_STEPS},
                                         {"baseline", required_argument, 0, O_BASELINE},
                                         {0, 0, 0, 0}};
    CLI_CONN(c);
    cli_conn_defaults(&c);
    maas_job j;
    maas_job_init(&j, type);
    const char *model = NULL, *layers = NULL, *loss = NULL, *opt = NULL, *from = NULL, *id = NULL;
    cli_data_args da = {0};
    const char *baseline = NULL;
    int wait = 0, json = 0, o, rc = 0, steps_given = 0, mean_baseline = 0;
    long lv;
    double dv;
    char e[MAAS_ERRSTR_SIZE];
    optind = 2;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "X:", opts, NULL)) != -1 && !rc) {
        if (cli_conn_opt(&c, o, optarg) || cli_data_opt(cmd, &da, o, optarg, &rc)) continue;
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
        case O_EXPLAIN: {
            maas_explain_method meth;
            if (maas_explain_parse(optarg, &meth, e, sizeof(e)))
                rc = maas_cli_usage_error(cmd, "--explain: %s", e);
            j.explain = 1 + (int)meth;
            break;
        }
        case O_STEPS:
            if (!(rc = cli_parse_int(cmd, "--steps", optarg, 1, MAAS_EXPLAIN_MAX_STEPS, &lv)))
                j.explain_steps = (int)lv;
            steps_given = 1;
            break;
        case O_BASELINE:
            baseline = optarg;
            rc = cli_parse_baseline(cmd, optarg, &mean_baseline);
            break;
        case O_FORMAT:
            rc = cli_parse_format(cmd, optarg, &json);
            break;
        case O_QUANT:
            if (!strcmp(optarg, "int8"))
                j.optimize.quantize = MAAS_QUANT_INT8;
            else if (!strcmp(optarg, "bf16"))
                j.optimize.quantize = MAAS_QUANT_BF16;
            else
                rc = maas_cli_usage_error(cmd, "--quantize takes int8 or bf16, got '%s'", optarg);
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
        maas_name_random(j.id);
    }
    j.created_ms = maas_wall_ms();
    cli_data d = {0};
    if (type == MAAS_JOBTYPE_INFER) {
        if (!da.data) {
            rc = maas_cli_usage_error(cmd, "--data is required");
            goto done;
        }
        if ((steps_given || baseline) && j.explain != 1 + MAAS_EXPLAIN_INTEGRATED_GRADIENTS) {
            rc = maas_cli_usage_error(cmd, "--steps and --baseline go with --explain "
                                           "integrated_gradients");
            goto done;
        }
        if (j.explain && j.want_classes) {
            rc = maas_cli_usage_error(cmd, "--explain and --classes: one of them");
            goto done;
        }
        if ((rc = cli_data_load(cmd, &da, NULL, &d))) goto done;
        if (mean_baseline) { /* the data's column means */
            float *b = cli_column_means(&d);
            if (!b) {
                rc = maas_cli_fail(cmd, "out of memory");
                goto done;
            }
            j.baseline = cli_as_matrix(b, 1, d.n_features);
        }
        j.inputs = cli_as_matrix(d.x, d.rows, d.n_features);
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
            if ((rc = cli_data_load(cmd, &da, da.label, &d))) goto done;
            j.data.x = cli_as_matrix(d.x, d.rows, d.n_features);
            j.data.y = cli_as_matrix(d.y, d.rows, d.y_cols);
            d.x = d.y = NULL;
        }
    }
    if (type == MAAS_JOBTYPE_OPTIMIZE) {
        if (!j.optimize.quantize && j.optimize.prune == 0.0f) {
            rc = maas_cli_usage_error(cmd, "give --quantize int8|bf16, --prune SPARSITY, or both");
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
        if ((rc = cli_train_compile(cmd, &j.train, loss, opt))) goto done;
        if (from) {
            if (maas_model_ref_parse(from, &j.train.from, e, sizeof(e))) {
                rc = maas_cli_usage_error(cmd, "--from: %s", e);
                goto done;
            }
            j.train.has_from = 1;
        }
    }
    if ((rc = cli_conn_open(cmd, &c))) goto done;
    /* Data too large for a Kafka message goes to Redis as a dataset the job names. */
    if (j.data.x.data) {
        unsigned char *probe;
        size_t len;
        if (maas_job_encode(&j, &probe, &len, e, sizeof(e)) == MAAS_OK)
            free(probe);
        else
            len = (size_t)-1;
        if (len > CLI_INLINE_LIMIT) {
            char name[MAAS_NAME_MAX + 1];
            snprintf(name, sizeof(name), "job-%.124s", j.id);
            cli_data up = {.rows = j.data.x.rows,
                           .n_features = (int)j.data.x.cols,
                           .x = j.data.x.data,
                           .y_cols = (int)j.data.y.cols,
                           .y = j.data.y.data};
            if ((rc = cli_put_dataset(cmd, &c, name, &up))) goto done;
            maas_matrix_release(&j.data.x);
            maas_matrix_release(&j.data.y);
            snprintf(j.data.dataset, sizeof(j.data.dataset), "%s", name);
        }
    }
    rc = cli_submit_job(cmd, &c, &j, wait, json);
done:
    cli_data_release(&d);
    maas_job_release(&j);
    cli_conn_close(&c);
    return rc;
}

/* ------------------------------------------------------------ jobs */

int maas_cli_job(int argc, char **argv) {
    const char *cmd = "job";
    static const char help[] = "usage: maas job ID [--wait]\n"
                               "Prints a job's record: state, attempts, worker, times, progress, "
                               "the error or the result.\n";
    if (cli_wants_help(argc, argv)) return fputs(help, stdout), fputs(cli_conn_help, stdout), 0;
    if (argc < 2) return maas_cli_usage_error(cmd, "expected a job id");
    CLI_CONN(c);
    cli_conn_defaults(&c);
    static const struct option opts[] = {
        CLI_CONN_LONGOPTS, {"wait", no_argument, 0, 'w'}, {0, 0, 0, 0}};
    int o, wait = 0;
    optind = 2;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "X:", opts, NULL)) != -1)
        if (!cli_conn_opt(&c, o, optarg)) {
            if (o == 'w')
                wait = 1;
            else
                return maas_cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        }
    int rc = cli_conn_open(cmd, &c);
    if (rc) return rc;
    if (wait) {
        rc = cli_follow(cmd, &c, argv[1], 0, 0);
        cli_conn_close(&c);
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
        if (r.has_cost) {
            const maas_job_cost *k = &r.cost;
            printf("cost:      cpu %.4g s, compute %.4g s, queued %.4g s; %.4g FLOPs", k->cpu_s,
                   k->compute_s, k->queue_s, k->flops);
            if (k->flops > 0 && k->compute_s > 0)
                printf(" (%.3g GFLOP/s)", k->flops / k->compute_s * 1e-9);
            printf("; peak %.4g MiB; energy %.4g J", k->peak_bytes / 1048576.0, k->energy_j);
            if (k->method[0]) printf(" (%s: %.4g W per busy core)", k->method, k->watts);
            printf("\n");
        }
        if (r.state == MAAS_JOB_SUCCEEDED) {
            printf("result:    ");
            fflush(stdout);
            cli_print_result(&c, &r, 0, 0);
        }
    }
    maas_job_record_release(&r);
    cli_conn_close(&c);
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
    CLI_CONN(c);
    cli_conn_defaults(&c);
    int rc = cli_conn_open(cmd, &c);
    if (rc) return rc;
    char e[MAAS_ERRSTR_SIZE];
    if (maas_kv_job_cancel(c.kv, argv[1], e, sizeof(e)))
        rc = maas_cli_fail(cmd, "%s", e);
    else
        printf("cancel requested for %s\n", argv[1]);
    cli_conn_close(&c);
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
    if (cli_wants_help(argc, argv)) return fputs(help, stdout), fputs(cli_conn_help, stdout), 0;
    CLI_CONN(c);
    cli_conn_defaults(&c);
    static const struct option opts[] = {CLI_CONN_LONGOPTS,
                                         {"state", required_argument, 0, 's'},
                                         {"limit", required_argument, 0, 'n'},
                                         {0, 0, 0, 0}};
    int o, rc = 0;
    long limit = 20;
    maas_job_state state = MAAS_JOB_UNKNOWN;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "X:", opts, NULL)) != -1 && !rc) {
        if (cli_conn_opt(&c, o, optarg)) continue;
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
    if ((rc = cli_conn_open(cmd, &c))) return rc;
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
    cli_conn_close(&c);
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
    if (cli_wants_help(argc, argv)) return fputs(help, stdout), fputs(cli_conn_help, stdout), 0;
    CLI_CONN(c);
    cli_conn_defaults(&c);
    static const struct option opts[] = {CLI_CONN_LONGOPTS, {0, 0, 0, 0}};
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "X:", opts, NULL)) != -1)
        if (!cli_conn_opt(&c, o, optarg))
            return maas_cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
    if (optind < argc) return maas_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    int rc = cli_conn_open(cmd, &c), n = 0;
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
    cli_conn_close(&c);
    return rc;
}
