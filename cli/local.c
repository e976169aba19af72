/* `maas evaluate | predict | inspect | optimize`: local mode on model.h5 files. */
#include "maas/base.h"
#include "maas/clock.h"
#include "maas/dataset.h"
#include "maas/explain.h"
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

/* ------------------------------------------------------------- evaluate */

/*
 * The loss and metrics to judge a loaded model by: the file's training config,
 * or --loss NAME over it (Adam defaults when the file has none). Returns 0, or
 * an exit status after printing why; *have says whether there is one (when
 * it is not required).
 */
static int resolve_compile(const char *cmd, const char *model, const maas_model_info *info,
                           const char *loss_name, int required, maas_compile *comp, int *have) {
    char err[MAAS_ERRSTR_SIZE];
    *comp = info->compile;
    *have = info->has_compile;
    if (loss_name) {
        if (!*have) {
            memset(comp, 0, sizeof(*comp));
            maas_optim_defaults(&comp->optim, MAAS_OPT_ADAM);
        }
        if (maas_loss_from_name(loss_name, &comp->loss, err, sizeof(err)))
            return maas_cli_usage_error(cmd, "%s", err);
        comp->accuracy = comp->loss != MAAS_LOSS_MSE && comp->loss != MAAS_LOSS_MAE;
        *have = 1;
    }
    if (required && !*have)
        return maas_cli_fail(cmd, "%s has no usable training config%s%s; pass --loss NAME", model,
                             info->compile_note[0] ? ": " : "", info->compile_note);
    return 0;
}

static const char evaluate_help[] =
    "usage: maas evaluate -m model.h5 --data FILE (--label COLUMN | --labels FILE.h5:/y)\n"
    "                     [--loss NAME] [--drop COLUMN]... [--format text|json] [--threads N]\n"
    "\n"
    "Prints the model's loss and accuracy on labelled data. The loss and metrics come from\n"
    "the file's training config; --loss overrides it (and is required when the file has none).\n";

int maas_cli_evaluate(int argc, char **argv) {
    const char *cmd = "evaluate";
    if (cli_wants_help(argc, argv)) return fputs(evaluate_help, stdout), 0;
    enum { O_LOSS = 256, O_FORMAT, O_THREADS };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},         CLI_LOCAL_DATA_LONGOPTS,
        {"loss", required_argument, 0, O_LOSS},       {"format", required_argument, 0, O_FORMAT},
        {"threads", required_argument, 0, O_THREADS}, {0, 0, 0, 0},
    };
    const char *model = NULL, *loss_name = NULL;
    int json = 0, c, rc;
    long threads = 1;
    cli_local_data dd = {0};
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "m:", opts, NULL)) != -1) {
        rc = 0;
        if (cli_local_data_opt(cmd, &dd, c, optarg, &rc)) {
            if (rc) return rc;
            continue;
        }
        switch (c) {
        case 'm':
            model = optarg;
            break;
        case O_LOSS:
            loss_name = optarg;
            break;
        case O_FORMAT:
            rc = cli_parse_format(cmd, optarg, &json);
            break;
        case O_THREADS:
            rc = cli_parse_int(cmd, "--threads", optarg, 1, 256, &threads);
            break;
        default:
            return maas_cli_usage_error(cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
        if (rc) return rc;
    }
    if (optind < argc) return maas_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!model || !dd.data) return maas_cli_usage_error(cmd, "-m MODEL and --data are required");
    if (!dd.label == !dd.labels)
        return maas_cli_usage_error(cmd, "give exactly one of --label, --labels");
    char err[MAAS_ERRSTR_SIZE];
    maas_model_info info;
    maas_model *m;
    if (maas_model_load(model, &m, &info, err, sizeof(err))) return maas_cli_fail(cmd, "%s", err);
    maas_compile comp;
    int have_compile;
    if ((rc = resolve_compile(cmd, model, &info, loss_name, 1, &comp, &have_compile))) {
        maas_model_free(m);
        return rc;
    }
    maas_blas_set_threads((int)threads);
    cli_data d;
    if ((rc = cli_load_data(cmd, dd.data, dd.label, dd.labels, dd.drops, dd.n_drops, &d))) {
        maas_model_free(m);
        return rc;
    }
    double loss, acc;
    if (!(rc = cli_check_features(cmd, dd.data, m, &d)) &&
        !(rc = cli_shape_labels(cmd, dd.labels ? dd.labels : dd.data, m, comp.loss, &d))) {
        if (maas_evaluate(m, &comp, d.x, d.y, d.rows, &loss, &acc, err, sizeof(err))) {
            rc = maas_cli_fail(cmd, "%s: %s", dd.data, err);
        } else if (json) {
            printf("{\"rows\": %zu, \"loss\": %.9g", d.rows, loss);
            if (comp.accuracy) printf(", \"accuracy\": %.9g", acc);
            printf("}\n");
        } else {
            printf("%zu rows - loss: %.4f", d.rows, loss);
            if (comp.accuracy) printf(" - accuracy: %.4f", acc);
            printf("\n");
        }
    }
    cli_data_release(&d);
    maas_model_free(m);
    return rc;
}

/* -------------------------------------------------------------- predict */

static const char predict_help[] =
    "usage: maas predict -m model.h5 --data FILE [--drop COLUMN]... [--format csv|json]\n"
    "                    [--classes] [--threads N]\n"
    "                    [--explain gradient_x_input|integrated_gradients [--steps N]\n"
    "                     [--baseline zeros|mean]]\n"
    "\n"
    "Writes the model's outputs for every input row to stdout: one CSV line of outputs per\n"
    "row (no header), or with --format json one JSON array of rows. --classes prints the\n"
    "predicted class instead (0/1 at threshold 0.5 for one output, else the argmax).\n"
    "FILE is a CSV with a header row (its feature columns, in the model's order) or\n"
    "FILE.h5:/dataset. Nothing is printed unless every row was predicted.\n"
    "--explain adds, per row and output, one attribution per input feature (maas/explain.h):\n"
    "gradient_x_input (x_i * df/dx_i) or integrated_gradients (--steps, 64; from --baseline:\n"
    "zeros, or mean = the data's column means; they sum to f(x) - f(baseline)). CSV: a header\n"
    "row,output,prediction,x0..x(n-1), then one line per row and output; JSON: per row\n"
    "{\"prediction\": [...], \"attributions\": [[per feature] per output]}. int8 and bf16\n"
    "models are explained on their dequantized weights.\n";

int cli_parse_baseline(const char *cmd, const char *arg, int *mean) {
    *mean = !strcmp(arg, "mean");
    if (*mean || !strcmp(arg, "zeros")) return 0;
    return maas_cli_usage_error(cmd, "--baseline takes zeros or mean, got '%s'", arg);
}

float *cli_column_means(const cli_data *d) {
    size_t n = (size_t)d->n_features;
    float *b = calloc(n ? n : 1, sizeof(float));
    for (size_t r = 0; b && r < d->rows; r++)
        for (size_t i = 0; i < n; i++) b[i] += d->x[r * n + i] / (float)d->rows;
    return b;
}

void cli_print_explained(const float *out, const float *attr, size_t rows, size_t k, size_t n,
                         int json) {
    if (!json) {
        printf("row,output,prediction");
        for (size_t i = 0; i < n; i++) printf(",x%zu", i);
        printf("\n");
    } else {
        fputs("[", stdout);
    }
    for (size_t r = 0; r < rows; r++) {
        if (json) {
            printf("%s{\"prediction\": [", r ? ",\n " : "");
            for (size_t j = 0; j < k; j++) printf(j ? ", %.9g" : "%.9g", (double)out[r * k + j]);
            printf("], \"attributions\": [");
        }
        for (size_t j = 0; j < k; j++) {
            const float *a = attr + (r * k + j) * n;
            if (json) {
                printf(j ? ", [" : "[");
                for (size_t i = 0; i < n; i++) printf(i ? ", %.9g" : "%.9g", (double)a[i]);
                printf("]");
            } else {
                printf("%zu,%zu,%.9g", r, j, (double)out[r * k + j]);
                for (size_t i = 0; i < n; i++) printf(",%.9g", (double)a[i]);
                printf("\n");
            }
        }
        if (json) printf("]}");
    }
    if (json) printf("]\n");
}

/* predict --explain: attributions of every row, then everything printed (see predict_help). */
static int print_explained(const char *cmd, const char *data, const maas_model *m,
                           const cli_data *d, const float *out, maas_explain_method method,
                           int steps, int mean_baseline, int json) {
    char err[MAAS_ERRSTR_SIZE];
    size_t n = (size_t)m->n_inputs, k = (size_t)m->n_outputs;
    if (d->rows > SIZE_MAX / (k * n * sizeof(float)))
        return maas_cli_fail(cmd, "%s: too many rows to explain at once", data);
    float *attr = malloc(d->rows * k * n * sizeof(float));
    float *base = mean_baseline ? cli_column_means(d) : calloc(n, sizeof(float));
    int rc = 0;
    if (!attr || !base) {
        rc = maas_cli_fail(cmd, "out of memory for %zu rows of attributions", d->rows);
        goto done;
    }
    if (maas_explain(m, method, steps, base, d->x, d->rows, attr, err, sizeof(err))) {
        rc = maas_cli_fail(cmd, "%s: %s", data, err);
        goto done;
    }
    cli_print_explained(out, attr, d->rows, k, n, json);
    if (fflush(stdout) != 0 || ferror(stdout)) rc = maas_cli_fail(cmd, "cannot write stdout");
done:
    free(attr);
    free(base);
    return rc;
}

int maas_cli_predict(int argc, char **argv) {
    const char *cmd = "predict";
    if (cli_wants_help(argc, argv)) return fputs(predict_help, stdout), 0;
    enum { O_FORMAT = 256, O_CLASSES, O_THREADS, O_EXPLAIN, O_STEPS, O_BASELINE };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},
        {"data", required_argument, 0, O_LOCAL_DATA},
        {"drop", required_argument, 0, O_LOCAL_DROP},
        {"format", required_argument, 0, O_FORMAT},
        {"classes", no_argument, 0, O_CLASSES},
        {"threads", required_argument, 0, O_THREADS},
        {"explain", required_argument, 0, O_EXPLAIN},
        {"steps", required_argument, 0, O_STEPS},
        {"baseline", required_argument, 0, O_BASELINE},
        {0, 0, 0, 0},
    };
    const char *model = NULL, *explain = NULL, *baseline = NULL;
    int json = 0, classes = 0, mean_baseline = 0, c, rc;
    long threads = 1, steps = 0;
    maas_explain_method method = MAAS_EXPLAIN_GRADIENT_X_INPUT;
    char err[MAAS_ERRSTR_SIZE];
    cli_local_data dd = {0};
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "m:", opts, NULL)) != -1) {
        rc = 0;
        if (cli_local_data_opt(cmd, &dd, c, optarg, &rc)) {
            if (rc) return rc;
            continue;
        }
        switch (c) {
        case 'm':
            model = optarg;
            break;
        case O_FORMAT:
            rc = cli_parse_format(cmd, optarg, &json);
            break;
        case O_CLASSES:
            classes = 1;
            break;
        case O_THREADS:
            rc = cli_parse_int(cmd, "--threads", optarg, 1, 256, &threads);
            break;
        case O_EXPLAIN:
            explain = optarg;
            if (maas_explain_parse(optarg, &method, err, sizeof(err)))
                rc = maas_cli_usage_error(cmd, "--explain: %s", err);
            break;
        case O_STEPS:
            rc = cli_parse_int(cmd, "--steps", optarg, 1, MAAS_EXPLAIN_MAX_STEPS, &steps);
            break;
        case O_BASELINE:
            baseline = optarg;
            rc = cli_parse_baseline(cmd, optarg, &mean_baseline);
            break;
        default:
            return maas_cli_usage_error(cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
        if (rc) return rc;
    }
    if (optind < argc) return maas_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!model || !dd.data) return maas_cli_usage_error(cmd, "-m MODEL and --data are required");
    if (!explain && (steps || baseline))
        return maas_cli_usage_error(cmd, "--steps and --baseline go with --explain");
    if (explain && classes)
        return maas_cli_usage_error(cmd, "--explain and --classes: one of them");
    if ((steps || baseline) && method != MAAS_EXPLAIN_INTEGRATED_GRADIENTS)
        return maas_cli_usage_error(cmd,
                                    "--steps and --baseline are integrated_gradients' options");
    maas_model *m;
    if (maas_model_load(model, &m, NULL, err, sizeof(err))) return maas_cli_fail(cmd, "%s", err);
    maas_blas_set_threads((int)threads);
    cli_data d;
    if ((rc = cli_load_data(cmd, dd.data, NULL, NULL, dd.drops, dd.n_drops, &d))) {
        maas_model_free(m);
        return rc;
    }
    float *out = NULL;
    if ((rc = cli_check_features(cmd, dd.data, m, &d))) goto done;
    int k = m->n_outputs;
    out = malloc(d.rows * (size_t)k * sizeof(float));
    if (!out) {
        rc = maas_cli_fail(cmd, "out of memory");
        goto done;
    }
    if (maas_model_predict(m, d.x, d.rows, out, err, sizeof(err))) {
        rc = maas_cli_fail(cmd, "%s: %s", dd.data, err);
        goto done;
    }
    if (explain) {
        rc = print_explained(cmd, dd.data, m, &d, out, method, steps ? (int)steps : 64,
                             mean_baseline, json);
        goto done;
    }
    /* Everything is computed before the first byte is printed. */
    if (json) fputs("[", stdout);
    for (size_t r = 0; r < d.rows; r++) {
        const float *o = out + r * (size_t)k;
        if (json) fputs(r ? ",\n [" : "[", stdout);
        if (classes) {
            int cls = 0;
            if (k == 1) {
                cls = o[0] > 0.5f;
            } else {
                for (int j = 1; j < k; j++)
                    if (o[j] > o[cls]) cls = j;
            }
            printf("%d", cls);
        } else {
            for (int j = 0; j < k; j++) printf(j ? ",%.9g" : "%.9g", (double)o[j]);
        }
        fputs(json ? "]" : "\n", stdout);
    }
    if (json) fputs("]\n", stdout);
    if (fflush(stdout) != 0 || ferror(stdout)) rc = maas_cli_fail(cmd, "cannot write stdout");
done:
    free(out);
    cli_data_release(&d);
    maas_model_free(m);
    return rc;
}

/* -------------------------------------------------------------- inspect */

static const char inspect_help[] =
    "usage: maas inspect model.h5\n"
    "\n"
    "Prints the model's layers, shapes, parameter counts, standardization, training config\n"
    "and file metadata.\n";

int maas_cli_inspect(int argc, char **argv) {
    const char *cmd = "inspect";
    if (cli_wants_help(argc, argv)) return fputs(inspect_help, stdout), 0;
    if (argc != 2) return maas_cli_usage_error(cmd, "expected one model file");
    char err[MAAS_ERRSTR_SIZE];
    maas_model_info info;
    maas_model *m;
    if (maas_model_load(argv[1], &m, &info, err, sizeof(err))) return maas_cli_fail(cmd, "%s", err);
    printf("model:        %s (%s)\n", argv[1], info.name[0] ? info.name : "sequential");
    printf("written by:   keras_version %s, backend %s\n",
           info.keras_version[0] ? info.keras_version : "?", info.backend[0] ? info.backend : "?");
    printf("inputs:       %d features%s\n", m->n_inputs,
           m->feat_mean ? ", standardized (Normalization layer)" : "");
    printf("\n%-24s %-22s %-20s %-12s %10s\n", "layer", "type", "output shape", "activation",
           "params");
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer *l = &m->layers[i];
        char shape[64], note[32] = "";
        maas_shape_format(&l->out, shape, sizeof(shape));
        size_t p = 0;
        for (int k = 0; k < l->n_weights; k++) p += l->weights[k].n;
        if (l->spec.kind == MAAS_LAYER_DENSE || l->spec.kind == MAAS_LAYER_CONV)
            snprintf(note, sizeof(note), "%s", maas_act_name(l->spec.act));
        else if (l->spec.kind == MAAS_LAYER_DROPOUT)
            snprintf(note, sizeof(note), "rate %g", (double)l->spec.rate);
        int bias = l->spec.kind == MAAS_LAYER_DENSE || l->spec.kind == MAAS_LAYER_CONV;
        printf("%-24s %-22s %-20s %-12s %10zu%s\n", l->spec.name, maas_layer_class(&l->spec), shape,
               note, p, bias && !l->spec.use_bias ? "  (no bias)" : "");
    }
    printf("\ntotal params: %zu (%.1f KiB float32)\n", m->n_params, m->n_params * 4.0 / 1024.0);
    maas_prune_report sp;
    maas_sparsity(m, &sp);
    if (maas_model_quant_kind(m) == MAAS_QUANT_INT8)
        printf(
            "weights:      int8, per-output-channel scales (%.1f KiB stored); inference in int8\n",
            maas_quant_payload_bytes(m) / 1024.0);
    else if (maas_model_quant_kind(m) == MAAS_QUANT_BF16)
        printf("weights:      bf16 kernels (%.1f KiB stored); inference in bf16 (%s kernel)\n",
               maas_quant_payload_bytes(m) / 1024.0, maas_bf16_kernel_name());
    if (sp.zero_weights > 0)
        printf("sparsity:     %.1f%% of kernel weights are zero\n", sp.total_sparsity * 100.0);
    if (info.has_compile) {
        const maas_optim_spec *o = &info.compile.optim;
        printf("training:     loss %s, optimizer %s (learning_rate %g",
               maas_loss_name(info.compile.loss), maas_opt_name(o->kind), (double)o->learning_rate);
        if (o->kind == MAAS_OPT_ADAM)
            printf(", beta_1 %g, beta_2 %g, epsilon %g", (double)o->beta_1, (double)o->beta_2,
                   (double)o->epsilon);
        if (o->kind != MAAS_OPT_ADAM && o->momentum > 0)
            printf(", momentum %g", (double)o->momentum);
        printf(")%s\n", info.compile.accuracy ? ", metrics [accuracy]" : "");
    } else {
        printf("training:     none%s%s\n", info.compile_note[0] ? " — " : "", info.compile_note);
    }
    maas_model_free(m);
    return 0;
}

/* ------------------------------------------------------------- optimize */

static const char optimize_help[] =
    "usage: maas optimize -m model.h5 -o out.h5 [--quantize int8|bf16] [--prune SPARSITY]\n"
    "                     [--per-layer] [--finetune-epochs N] [--batch-size N]\n"
    "                     [--data FILE (--label COLUMN | --labels FILE.h5:/y) [--drop COLUMN]...]\n"
    "                     [--loss NAME] [--seed N] [--threads N] [-q]\n"
    "\n"
    "Makes a model cheaper to serve and reports what it cost and gained.\n"
    "  --quantize int8     per-channel int8 weights; inference runs in int8 (out.h5 is a\n"
    "                      maas int8 file: 'maas export' or 'maas optimize --dequantize'\n"
    "                      gives Keras a float file)\n"
    "  --quantize bf16     bf16 kernels (half the size); inference multiplies bf16 inputs by\n"
    "                      them with float32 sums where the CPU has AVX512_BF16, else runs\n"
    "                      them as float32 (out.h5 loads in Keras as float32). --bf16 too\n"
    "  --prune SPARSITY    zero that fraction (0..0.99) of the smallest-magnitude kernel\n"
    "                      weights, over all layers (--per-layer: in each layer)\n"
    "  --finetune-epochs N train N epochs after pruning with the pruned weights held at\n"
    "                      zero, on --data (its last 20%% of rows are held out)\n"
    "  --dequantize        write an int8 or bf16 model back as a float32 Keras file\n"
    "  --data FILE         labelled data: accuracy and loss before and after (the held-out\n"
    "                      rows when fine-tuning), and the fine-tuning rows\n"
    "Prints size, accuracy, loss and single-row latency before and after.\n";

int maas_cli_optimize(int argc, char **argv) {
    const char *cmd = "optimize";
    if (cli_wants_help(argc, argv)) return fputs(optimize_help, stdout), 0;
    enum {
        O_QUANT = 256,
        O_PRUNE,
        O_PER_LAYER,
        O_FINETUNE,
        O_BATCH,
        O_LOSS,
        O_SEED,
        O_THREADS,
        O_DEQUANT,
        O_BF16
    };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},
        {"output", required_argument, 0, 'o'},
        {"quantize", required_argument, 0, O_QUANT},
        {"prune", required_argument, 0, O_PRUNE},
        {"per-layer", no_argument, 0, O_PER_LAYER},
        {"finetune-epochs", required_argument, 0, O_FINETUNE},
        {"batch-size", required_argument, 0, O_BATCH},
        CLI_LOCAL_DATA_LONGOPTS,
        {"loss", required_argument, 0, O_LOSS},
        {"seed", required_argument, 0, O_SEED},
        {"threads", required_argument, 0, O_THREADS},
        {"dequantize", no_argument, 0, O_DEQUANT},
        {"bf16", no_argument, 0, O_BF16},
        {"quiet", no_argument, 0, 'q'},
        {0, 0, 0, 0},
    };
    const char *model = NULL, *out = NULL;
    const char *loss_name = NULL;
    int c, rc, quiet = 0, have_seed = 0, dequant = 0;
    long threads = 1, finetune = 0, batch = 32, seed = 0;
    double prune = 0.0;
    maas_optimize_opts o;
    maas_optimize_opts_init(&o);
    cli_local_data dd = {0};
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "m:o:q", opts, NULL)) != -1) {
        rc = 0;
        if (cli_local_data_opt(cmd, &dd, c, optarg, &rc)) {
            if (rc) return rc;
            continue;
        }
        switch (c) {
        case 'm':
            model = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'q':
            quiet = 1;
            break;
        case O_QUANT:
            if (!strcmp(optarg, "int8"))
                o.quantize = MAAS_QUANT_INT8;
            else if (!strcmp(optarg, "bf16"))
                o.quantize = MAAS_QUANT_BF16;
            else
                return maas_cli_usage_error(cmd, "--quantize takes int8 or bf16, got '%s'", optarg);
            break;
        case O_PRUNE:
            rc = cli_parse_float(cmd, "--prune", optarg, 0.0, 0.99, &prune);
            break;
        case O_PER_LAYER:
            o.prune_per_layer = 1;
            break;
        case O_FINETUNE:
            rc = cli_parse_int(cmd, "--finetune-epochs", optarg, 0, 10000, &finetune);
            break;
        case O_BATCH:
            rc = cli_parse_int(cmd, "--batch-size", optarg, 1, 1 << 20, &batch);
            break;
        case O_LOSS:
            loss_name = optarg;
            break;
        case O_SEED:
            rc = cli_parse_int(cmd, "--seed", optarg, 0, LONG_MAX, &seed);
            have_seed = 1;
            break;
        case O_THREADS:
            rc = cli_parse_int(cmd, "--threads", optarg, 1, 256, &threads);
            break;
        case O_DEQUANT:
            dequant = 1;
            break;
        case O_BF16:
            o.quantize = MAAS_QUANT_BF16;
            break;
        default:
            return maas_cli_usage_error(cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
        if (rc) return rc;
    }
    if (optind < argc) return maas_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!model || !out) return maas_cli_usage_error(cmd, "-m MODEL and -o OUT are required");
    if (dequant && (o.quantize || prune > 0.0))
        return maas_cli_usage_error(cmd, "--dequantize goes alone");
    if (!dequant && !o.quantize && prune == 0.0)
        return maas_cli_usage_error(cmd, "give --quantize int8|bf16, --prune SPARSITY, or both");
    if (finetune > 0 && prune == 0.0)
        return maas_cli_usage_error(cmd, "--finetune-epochs holds a pruning mask: add --prune");
    if (finetune > 0 && !dd.data)
        return maas_cli_usage_error(cmd, "--finetune-epochs needs --data and --label");
    if (dd.data && !dd.label == !dd.labels)
        return maas_cli_usage_error(cmd, "with --data, give exactly one of --label, --labels");
    char err[MAAS_ERRSTR_SIZE];
    maas_model_info info;
    maas_model *m;
    if (maas_model_load(model, &m, &info, err, sizeof(err))) return maas_cli_fail(cmd, "%s", err);
    if (dequant) {
        if (!maas_model_is_quantized(m)) {
            maas_model_free(m);
            return maas_cli_fail(cmd, "%s is not an int8 or bf16 model; nothing to dequantize",
                                 model);
        }
        maas_model_dequantize(m);
        rc = maas_model_save(m, info.has_compile ? &info.compile : NULL, out, err, sizeof(err))
                 ? maas_cli_fail(cmd, "%s", err)
                 : 0;
        if (!rc && !quiet) fprintf(stderr, "maas optimize: wrote %s (float32, Keras)\n", out);
        maas_model_free(m);
        return rc;
    }
    maas_compile comp;
    int have_compile;
    if ((rc = resolve_compile(cmd, model, &info, loss_name, dd.data != NULL, &comp,
                              &have_compile))) {
        maas_model_free(m);
        return rc;
    }
    maas_blas_set_threads((int)threads);
    cli_data d = {0};
    if (dd.data) {
        if ((rc = cli_load_data(cmd, dd.data, dd.label, dd.labels, dd.drops, dd.n_drops, &d)) ||
            (rc = cli_check_features(cmd, dd.data, m, &d)) ||
            (rc = cli_shape_labels(cmd, dd.labels ? dd.labels : dd.data, m, comp.loss, &d))) {
            cli_data_release(&d);
            maas_model_free(m);
            return rc;
        }
    }
    uint64_t s = have_seed ? (uint64_t)seed : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    maas_rng rng;
    maas_rng_init(&rng, s);
    cli_progress prog = {.tty = isatty(2), .quiet = quiet};
    o.prune = prune;
    o.finetune_epochs = (int)finetune;
    o.batch_size = (int)batch;
    o.compile = have_compile ? &comp : NULL;
    o.x = d.x;
    o.y = d.y;
    o.rows = d.rows;
    o.rng = &rng;
    o.on_epoch = cli_on_epoch;
    o.on_batch = cli_on_batch;
    o.ud = &prog;
    struct sigaction sa = {0}, old;
    sa.sa_handler = cli_local_on_sigint;
    sigaction(SIGINT, &sa, &old);
    maas_optimize_report r;
    maas_err e = maas_optimize(m, &o, &r, err, sizeof(err));
    sigaction(SIGINT, &old, NULL);
    if (prog.tty) fprintf(stderr, "\r\033[K");
    if (e == MAAS_ERR_CANCELLED) {
        maas_cli_fail(cmd, "interrupted; %s was not written", out);
        rc = 130;
    } else if (e) {
        rc = maas_cli_fail(cmd, "%s", err);
    } else if (maas_model_save(m, o.compile, out, err, sizeof(err))) {
        rc = maas_cli_fail(cmd, "%s", err);
    } else {
        printf("%s -> %s\n", model, out);
        if (r.pruned) {
            printf("pruned:    %.1f%% of kernel weights are zero (",
                   r.prune.total_sparsity * 100.0);
            int first = 1;
            for (int i = 0; i < m->n_layers; i++)
                if (m->layers[i].spec.kind == MAAS_LAYER_DENSE ||
                    m->layers[i].spec.kind == MAAS_LAYER_CONV) {
                    printf("%s%s %.1f%%", first ? "" : ", ", m->layers[i].spec.name,
                           r.prune.sparsity[i] * 100.0);
                    first = 0;
                }
            printf(")%s\n", o.prune_per_layer ? ", per layer" : ", global threshold");
        }
        if (r.finetune_epochs)
            printf("finetuned: %d epochs with the mask held, on %zu rows\n", r.finetune_epochs,
                   d.rows - r.eval_rows);
        if (r.quantized && o.quantize == MAAS_QUANT_BF16)
            printf("quantized: bf16 kernels, bf16 inputs per row, float32 sums (%s kernel)\n",
                   r.kernel);
        else if (r.quantized)
            printf("quantized: int8 weights per output channel, int8 inputs per row (%s kernel)\n",
                   r.kernel);
        printf("%-16s %12s %12s\n", "", "before", "after");
        printf("%-16s %12zu %12zu   %.2fx smaller\n", "size (bytes)", r.bytes_before, r.bytes_after,
               (double)r.bytes_before / (double)r.bytes_after);
        if (r.eval_rows > 0) {
            if (!isnan(r.acc_before))
                printf("%-16s %12.4f %12.4f   %+.2f points on %zu rows\n", "accuracy", r.acc_before,
                       r.acc_after, (r.acc_after - r.acc_before) * 100.0, r.eval_rows);
            printf("%-16s %12.4f %12.4f\n", "loss", r.loss_before, r.loss_after);
        }
        printf("%-16s %10.2fus %10.2fus   %.2fx faster\n", "predict, 1 row", r.us_before,
               r.us_after, r.us_before / r.us_after);
        if (fflush(stdout) != 0 || ferror(stdout)) rc = maas_cli_fail(cmd, "cannot write stdout");
    }
    maas_history_release(&r.history);
    cli_data_release(&d);
    maas_model_free(m);
    return rc;
}
