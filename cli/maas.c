/*
 * maas - the command line. Local mode trains, evaluates, predicts with and
 * inspects Keras model.h5 files on this machine, with no cluster.
 */
#include "maas/base.h"
#include "maas/cpu.h"
#include "cli.h"

static const char usage[] =
    "usage: maas COMMAND [OPTIONS]\n"
    "\n"
    "Local mode (no cluster needed):\n"
    "  fit        train a model on a CSV or HDF5 dataset and save it as a Keras model.h5\n"
    "  evaluate   loss and accuracy of a model.h5 on labelled data\n"
    "  predict    outputs of a model.h5 for each input row (CSV or JSON on stdout)\n"
    "  inspect    layers, shapes, parameters and training config of a model.h5\n"
    "  optimize   int8 or bf16 quantization and/or magnitude pruning, with before/after figures\n"
    "\n"
    "Cluster mode (a running stack: deploy/local/stack.sh up, and maas-worker):\n"
    "  submit     train | infer | evaluate | optimize job through Kafka; --wait follows it\n"
    "  job        a job's record: state, progress, result or error\n"
    "  cancel     stop a queued or running job\n"
    "  jobs       recent jobs, newest first (--state failed, --limit N)\n"
    "  workers    the fleet: host, jobs done, busy with, loaded versions, last seen\n"
    "  dlq        ls | replay [ID...]: the dead-letter topic, and putting jobs back\n"
    "  sweep      a grid or random search as training jobs across the workers, ranked\n"
    "  gc         delete a model's old versions (never an aliased one)\n"
    "  dataset    put | rm labelled data in Redis for train and evaluate jobs\n"
    "  models     the registry's models and aliases\n"
    "  versions   a model's versions: parent, size, hash, producing job, metrics\n"
    "  alias      move an alias (production, canary, ...) to a version\n"
    "  export     write a version's model.h5 (a Keras file)\n"
    "  import     register a Keras model.h5 as a new version\n"
    "  tenant     create | list | delete | key-rotate | key-revoke | admin-key: tenants\n"
    "             and their API keys (--tenant T / MAAS_TENANT: work as tenant T)\n"
    "\n"
    "Run 'maas COMMAND --help' for a command's options.\n";

int maas_cli_fail(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "maas %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int maas_cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "maas %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(run 'maas %s --help' for usage)\n", cmd);
    va_end(ap);
    return 2;
}

int main(int argc, char **argv) {
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {
        {"fit", maas_cli_fit},
        {"evaluate", maas_cli_evaluate},
        {"predict", maas_cli_predict},
        {"inspect", maas_cli_inspect},
        {"optimize", maas_cli_optimize},
        {"dataset", maas_cli_dataset},
        {"submit", maas_cli_submit},
        {"job", maas_cli_job},
        {"cancel", maas_cli_cancel},
        {"models", maas_cli_models},
        {"versions", maas_cli_versions},
        {"alias", maas_cli_alias},
        {"export", maas_cli_export},
        {"import", maas_cli_import},
        {"jobs", maas_cli_jobs},
        {"workers", maas_cli_workers},
        {"dlq", maas_cli_dlq},
        {"sweep", maas_cli_sweep},
        {"gc", maas_cli_gc},
        {"tenant", maas_cli_tenant},
    };
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    char e[MAAS_ERRSTR_SIZE];
    if (maas_cpu_check_env(e, sizeof(e))) {
        fprintf(stderr, "maas: %s\n", e);
        return 2;
    }
    for (size_t i = 0; i < MAAS_ARRAY_LEN(cmds); i++)
        if (!strcmp(argv[1], cmds[i].name)) return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "maas: unknown command '%s'\n\n%s", argv[1], usage);
    return 2;
}
