/*
 * `maas sweep`: hyper-parameter sweeps (maas/sweep.h) submitted, followed and
 * shown from the CLI.
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
static int follow_sweep(const char *cmd, cli_conn *c, maas_sweep *s) {
    char e[MAAS_ERRSTR_SIZE];
    maas_sweep_row *rows = calloc((size_t)s->n, sizeof(*rows));
    unsigned char *seen = calloc((size_t)s->n, 1);
    if (!rows || !seen) {
        free(rows);
        free(seen);
        return maas_cli_fail(cmd, "out of memory");
    }
    struct sigaction sa = {0}, old;
    sa.sa_handler = cli_on_sigint;
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
        if (cli_detach) {
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
    if (cli_wants_help(argc, argv))
        return fputs(sweep_help, stdout), fputs(cli_conn_help, stdout), 0;
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
    static const struct option opts[] = {CLI_CONN_LONGOPTS,
                                         CLI_DATA_LONGOPTS,
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
    CLI_CONN(c);
    cli_conn_defaults(&c);
    maas_sweep *s = calloc(1, sizeof(*s));
    maas_sweep_grid *g = calloc(1, sizeof(*g));
    maas_job base;
    maas_job_init(&base, MAAS_JOBTYPE_TRAIN);
    base.train.validation_split = 0.2f;
    const char *model = NULL, *id = NULL, *loss = NULL, *opt = NULL;
    cli_data_args da = {0};
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
        if (cli_conn_opt(&c, o, optarg) || cli_data_opt(cmd, &da, o, optarg, &rc)) continue;
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
        if ((rc = cli_conn_open(cmd, &c))) goto done;
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
    if ((rc = cli_train_compile(cmd, &base.train, loss, opt))) goto done;
    if (id) {
        if (maas_name_check("--id", id, e, sizeof(e))) {
            rc = maas_cli_usage_error(cmd, "%s", e);
            goto done;
        }
        snprintf(s->id, sizeof(s->id), "%s", id);
    } else {
        char rid[33];
        maas_name_random(rid);
        snprintf(s->id, sizeof(s->id), "sw-%.16s", rid);
    }
    if (maas_sweep_expand(s, g, &base, e, sizeof(e))) {
        rc = maas_cli_usage_error(cmd, "%s", e);
        goto done;
    }
    if ((rc = cli_conn_open(cmd, &c))) goto done;
    if (da.data) { /* the data goes to Redis once; every point's job names it */
        if ((rc = cli_data_load(cmd, &da, da.label, &d))) goto done;
        char name[MAAS_NAME_MAX + 1];
        snprintf(name, sizeof(name), "%.120s-data", s->id);
        if ((rc = cli_put_dataset(cmd, &c, name, &d))) goto done;
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
        rc = cli_publish_job(cmd, &c, &j, 1, &existed, topic, sizeof(topic));
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
    cli_conn_close(&c);
    return rc;
}
