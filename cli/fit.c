/* `maas fit`: train a model on a CSV or HDF5 file and save it as a Keras model.h5. */
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

/* ------------------------------------------------------------------ fit */

static const char fit_help[] =
    "usage: maas fit --data FILE --label COLUMN --layers SPEC -o model.h5 [options]\n"
    "\n"
    "Trains a Sequential model and saves it as a Keras model.h5.\n"
    "\n"
    "Data:\n"
    "  --data FILE            CSV with a header row, or FILE.h5:/dataset (rows x features)\n"
    "  --label COLUMN         label column of the CSV (name or 0-based index; -1 = last)\n"
    "  --labels FILE.h5:/y    labels as a separate HDF5 dataset (instead of --label)\n"
    "  --drop COLUMN          leave a column out of the features (repeatable)\n"
    "Model:\n"
    "  --layers SPEC          e.g. 10:relu,1:sigmoid or 256:relu,dropout:0.2,10:softmax;\n"
    "                         an item is UNITS[:ACTIVATION[:nobias]] or dropout:RATE\n"
    "                         (activations: linear relu sigmoid tanh softmax leaky_relu elu gelu)\n"
    "                         or, for images and sequences (rows are flat, channels last):\n"
    "                         reshape:28x28x1  conv2d:32:3x3[:ACT][:s2x2][:same][:nobias]\n"
    "                         conv1d:16:5[...]  maxpool:2x2  avgpool:2x2[:s1x1][:same]\n"
    "                         maxpool:2 (1-D)  gap2d  gap1d  flatten  batchnorm\n"
    "                         embedding:VOCAB:DIM (first; its inputs are indices)\n"
    "                         e.g. reshape:28x28x1,conv2d:32:3x3:relu,maxpool:2x2,flatten,\n"
    "                         128:relu,10:softmax\n"
    "  --loss NAME            binary_crossentropy, categorical_crossentropy,\n"
    "                         sparse_categorical_crossentropy, mse, mae (default: from the\n"
    "                         output: sigmoid -> binary_crossentropy, softmax ->\n"
    "                         sparse_categorical_crossentropy, else mse)\n"
    "  --optimizer NAME       adam (default), sgd, rmsprop\n"
    "  --lr RATE              learning rate (default: Keras's, 0.001; sgd 0.01)\n"
    "  --momentum M           sgd/rmsprop momentum (default 0)\n"
    "  --nesterov             sgd Nesterov momentum\n"
    "  --no-accuracy          do not track accuracy (tracked by default for cross-entropy)\n"
    "Training:\n"
    "  --epochs N             default 10\n"
    "  --batch-size N         default 32\n"
    "  --validation-split F   hold out the last fraction F of rows for validation\n"
    "  --standardize          learn per-feature mean/std; saved in the model (Keras\n"
    "                         Normalization layer) and applied by predict\n"
    "  --early-stopping       stop when --monitor (default val_loss, or loss without\n"
    "                         validation) stops improving for --patience epochs (default 2)\n"
    "  --monitor NAME --patience N --restore-best\n"
    "  --no-shuffle           keep the row order\n"
    "  --seed N               random seed (default: from the clock, printed)\n"
    "  --threads N            BLAS threads (default 1)\n"
    "  -o, --output FILE      where to write the model.h5 (required)\n"
    "  -q, --quiet            no epoch lines\n"
    "\n"
    "Epoch lines go to stdout; a progress bar is drawn on stderr when it is a terminal.\n"
    "Ctrl-C stops between batches without writing the model.\n";

int maas_cli_fit(int argc, char **argv) {
    const char *cmd = "fit";
    if (cli_wants_help(argc, argv)) return fputs(fit_help, stdout), 0;
    enum {
        O_LAYERS = 256,
        O_LOSS,
        O_OPT,
        O_LR,
        O_MOM,
        O_NEST,
        O_NOACC,
        O_EPOCHS,
        O_BATCH,
        O_VSPLIT,
        O_STD,
        O_ES,
        O_MON,
        O_PAT,
        O_RB,
        O_NOSHUF,
        O_SEED,
        O_THREADS
    };
    static const struct option opts[] = {
        CLI_LOCAL_DATA_LONGOPTS,
        {"layers", required_argument, 0, O_LAYERS},
        {"loss", required_argument, 0, O_LOSS},
        {"optimizer", required_argument, 0, O_OPT},
        {"lr", required_argument, 0, O_LR},
        {"learning-rate", required_argument, 0, O_LR},
        {"momentum", required_argument, 0, O_MOM},
        {"nesterov", no_argument, 0, O_NEST},
        {"no-accuracy", no_argument, 0, O_NOACC},
        {"epochs", required_argument, 0, O_EPOCHS},
        {"batch-size", required_argument, 0, O_BATCH},
        {"validation-split", required_argument, 0, O_VSPLIT},
        {"standardize", no_argument, 0, O_STD},
        {"early-stopping", no_argument, 0, O_ES},
        {"monitor", required_argument, 0, O_MON},
        {"patience", required_argument, 0, O_PAT},
        {"restore-best", no_argument, 0, O_RB},
        {"no-shuffle", no_argument, 0, O_NOSHUF},
        {"seed", required_argument, 0, O_SEED},
        {"threads", required_argument, 0, O_THREADS},
        {"output", required_argument, 0, 'o'},
        {"quiet", no_argument, 0, 'q'},
        {0, 0, 0, 0},
    };
    const char *layers = NULL, *loss_name = NULL;
    const char *opt_name = "adam", *out = NULL, *monitor = NULL;
    int nesterov = 0, no_acc = 0, standardize = 0, early = 0, restore = 0;
    int shuffle = 1, quiet = 0, have_seed = 0;
    long epochs = 10, batch = 32, patience = 2, threads = 1, seed = 0;
    double lr = 0, momentum = 0, vsplit = 0;
    int c, rc;
    cli_local_data dd = {0};
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:q", opts, NULL)) != -1) {
        rc = 0;
        if (cli_local_data_opt(cmd, &dd, c, optarg, &rc)) {
            if (rc) return rc;
            continue;
        }
        switch (c) {
        case O_LAYERS:
            layers = optarg;
            break;
        case O_LOSS:
            loss_name = optarg;
            break;
        case O_OPT:
            opt_name = optarg;
            break;
        case O_LR:
            rc = cli_parse_float(cmd, "--lr", optarg, 1e-12, 10, &lr);
            break;
        case O_MOM:
            rc = cli_parse_float(cmd, "--momentum", optarg, 0, 0.999999, &momentum);
            break;
        case O_NEST:
            nesterov = 1;
            break;
        case O_NOACC:
            no_acc = 1;
            break;
        case O_EPOCHS:
            rc = cli_parse_int(cmd, "--epochs", optarg, 1, 1000000, &epochs);
            break;
        case O_BATCH:
            rc = cli_parse_int(cmd, "--batch-size", optarg, 1, 1 << 20, &batch);
            break;
        case O_VSPLIT:
            rc = cli_parse_float(cmd, "--validation-split", optarg, 0, 0.99, &vsplit);
            break;
        case O_STD:
            standardize = 1;
            break;
        case O_ES:
            early = 1;
            break;
        case O_MON:
            monitor = optarg;
            break;
        case O_PAT:
            rc = cli_parse_int(cmd, "--patience", optarg, 0, 1000000, &patience);
            break;
        case O_RB:
            restore = 1;
            break;
        case O_NOSHUF:
            shuffle = 0;
            break;
        case O_SEED:
            rc = cli_parse_int(cmd, "--seed", optarg, 0, LONG_MAX, &seed);
            have_seed = 1;
            break;
        case O_THREADS:
            rc = cli_parse_int(cmd, "--threads", optarg, 1, 256, &threads);
            break;
        case 'o':
            out = optarg;
            break;
        case 'q':
            quiet = 1;
            break;
        default:
            return maas_cli_usage_error(cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
        if (rc) return rc;
    }
    if (optind < argc) return maas_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!dd.data) return maas_cli_usage_error(cmd, "--data is required");
    if (!layers) return maas_cli_usage_error(cmd, "--layers is required");
    if (!out) return maas_cli_usage_error(cmd, "-o model.h5 is required");
    if (!dd.label == !dd.labels)
        return maas_cli_usage_error(cmd, "give exactly one of --label, --labels");

    char err[MAAS_ERRSTR_SIZE];
    maas_layer_spec specs[MAAS_MAX_LAYERS];
    int n_specs;
    if (maas_layers_parse(layers, specs, MAAS_MAX_LAYERS, &n_specs, err, sizeof(err)))
        return maas_cli_usage_error(cmd, "--layers: %s", err);
    maas_compile comp = {0};
    maas_opt okind;
    if (maas_opt_from_name(opt_name, &okind, err, sizeof(err)))
        return maas_cli_usage_error(cmd, "%s", err);
    maas_optim_defaults(&comp.optim, okind);
    if (lr > 0) comp.optim.learning_rate = (float)lr;
    comp.optim.momentum = (float)momentum;
    comp.optim.nesterov = nesterov;
    const maas_layer_spec *last = &specs[n_specs - 1];
    if (loss_name) {
        if (maas_loss_from_name(loss_name, &comp.loss, err, sizeof(err)))
            return maas_cli_usage_error(cmd, "%s", err);
    } else {
        comp.loss = last->act == MAAS_ACT_SIGMOID   ? MAAS_LOSS_BINARY_CROSSENTROPY
                    : last->act == MAAS_ACT_SOFTMAX ? MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY
                                                    : MAAS_LOSS_MSE;
    }
    comp.accuracy = !no_acc && comp.loss != MAAS_LOSS_MSE && comp.loss != MAAS_LOSS_MAE;

    cli_data d;
    double t_read = maas_mono_s();
    if ((rc = cli_load_data(cmd, dd.data, dd.label, dd.labels, dd.drops, dd.n_drops, &d)))
        return rc;
    t_read = maas_mono_s() - t_read;
    uint64_t s = have_seed ? (uint64_t)seed : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    maas_rng rng;
    maas_rng_init(&rng, s);
    maas_blas_set_threads((int)threads);
    maas_model *m = maas_model_new(d.n_features, specs, n_specs, &rng, err, sizeof(err));
    if (!m) {
        cli_data_release(&d);
        return maas_cli_fail(cmd, "%s", err);
    }
    if ((rc = cli_shape_labels(cmd, dd.labels ? dd.labels : dd.data, m, comp.loss, &d))) goto done;
    size_t n_params = m->n_params;
    if (!quiet)
        fprintf(stderr,
                "maas fit: %zu rows x %d features (read in %.2f s); %d layers, %zu parameters; "
                "loss %s, optimizer %s (lr %g); seed %llu\n",
                d.rows, d.n_features, t_read, m->n_layers, n_params, maas_loss_name(comp.loss),
                maas_opt_name(comp.optim.kind), (double)comp.optim.learning_rate,
                (unsigned long long)s);
    cli_progress prog = {.tty = isatty(2), .quiet = quiet};
    maas_fit_opts fo;
    maas_fit_opts_init(&fo);
    fo.epochs = (int)epochs;
    fo.batch_size = (int)batch;
    fo.shuffle = shuffle;
    fo.validation_split = (float)vsplit;
    fo.standardize = standardize;
    fo.early_stopping = early;
    fo.monitor = monitor ? monitor : (vsplit > 0 ? "val_loss" : "loss");
    fo.patience = (int)patience;
    fo.restore_best = restore;
    fo.rng = &rng;
    fo.on_epoch = cli_on_epoch;
    fo.on_batch = cli_on_batch;
    fo.ud = &prog;
    struct sigaction sa = {0}, old;
    sa.sa_handler = cli_local_on_sigint;
    sigaction(SIGINT, &sa, &old);
    maas_history h = {0};
    maas_err e = maas_fit(m, &comp, d.x, d.y, d.rows, &fo, &h, err, sizeof(err));
    sigaction(SIGINT, &old, NULL);
    if (prog.tty) fprintf(stderr, "\r\033[K");
    if (e == MAAS_ERR_CANCELLED) {
        rc = maas_cli_fail(cmd, "interrupted; %s was not written", out);
        rc = 130;
        goto done;
    }
    if (e) {
        rc = maas_cli_fail(cmd, "%s", err);
        goto done;
    }
    if (h.stopped_early && !quiet)
        fprintf(stderr, "maas fit: early stopping after epoch %d (best epoch %d)\n", h.n_epochs,
                h.best_epoch);
    if (maas_model_save(m, &comp, out, err, sizeof(err))) {
        rc = maas_cli_fail(cmd, "%s", err);
        goto done;
    }
    if (!quiet) fprintf(stderr, "maas fit: saved %s\n", out);
done:
    maas_history_release(&h);
    maas_model_free(m);
    cli_data_release(&d);
    return rc;
}
