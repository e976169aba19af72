/*
 * `maas dataset`, `maas models`, `maas versions`, `maas alias`, `maas export`,
 * `maas import`, `maas gc`: the model registry and datasets in Redis.
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

int maas_cli_dataset(int argc, char **argv) {
    const char *cmd = "dataset";
    static const char help[] =
        "usage: maas dataset put NAME --data FILE (--label COLUMN | --labels F.h5:/y) [--drop C]\n"
        "       maas dataset rm NAME\n"
        "Stores labelled data in Redis under NAME, for train and evaluate jobs (--dataset).\n";
    if (cli_wants_help(argc, argv)) return fputs(help, stdout), fputs(cli_conn_help, stdout), 0;
    if (argc < 3) return maas_cli_usage_error(cmd, "expected put NAME ... or rm NAME");
    const char *sub = argv[1], *name = argv[2];
    CLI_CONN(c);
    cli_conn_defaults(&c);
    static const struct option opts[] = {CLI_CONN_LONGOPTS,
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
        if (cli_conn_opt(&c, o, optarg)) continue;
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
    int rc = cli_conn_open(cmd, &c);
    if (rc) return rc;
    if (!strcmp(sub, "put")) {
        cli_data d;
        if (!data || (!label == !labels))
            rc = maas_cli_usage_error(cmd, "put needs --data and one of --label, --labels");
        else if (!(rc = cli_load_data(cmd, data, label, labels, drops, n_drops, &d))) {
            rc = cli_put_dataset(cmd, &c, name, &d);
            cli_data_release(&d);
        }
    } else if (!strcmp(sub, "rm")) {
        if (maas_kv_dataset_delete(c.kv, name, e, sizeof(e))) rc = maas_cli_fail(cmd, "%s", e);
    } else {
        rc = maas_cli_usage_error(cmd, "unknown subcommand '%s' (put, rm)", sub);
    }
    cli_conn_close(&c);
    return rc;
}

/* ------------------------------------------------------------ registry */

int maas_cli_models(int argc, char **argv) {
    const char *cmd = "models";
    if (cli_wants_help(argc, argv)) return fputs("usage: maas models\n", stdout), 0;
    (void)argv;
    if (argc != 1) return maas_cli_usage_error(cmd, "takes no arguments");
    CLI_CONN(c);
    cli_conn_defaults(&c);
    int rc = cli_conn_open(cmd, &c);
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
    cli_conn_close(&c);
    return rc;
}

int maas_cli_versions(int argc, char **argv) {
    const char *cmd = "versions";
    if (cli_wants_help(argc, argv)) return fputs("usage: maas versions MODEL\n", stdout), 0;
    if (argc != 2) return maas_cli_usage_error(cmd, "expected a model name");
    CLI_CONN(c);
    cli_conn_defaults(&c);
    int rc = cli_conn_open(cmd, &c), n = 0;
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
    cli_conn_close(&c);
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
    CLI_CONN(c);
    cli_conn_defaults(&c);
    if ((rc = cli_conn_open(cmd, &c))) return rc;
    char e[MAAS_ERRSTR_SIZE];
    if (maas_kv_alias_set(c.kv, argv[1], argv[2], (int)v, -1, e, sizeof(e)))
        rc = maas_cli_fail(cmd, "%s", e);
    else
        printf("%s@%s -> version %ld\n", argv[1], argv[2], v);
    cli_conn_close(&c);
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
    CLI_CONN(c);
    cli_conn_defaults(&c);
    int rc = cli_conn_open(cmd, &c), version;
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
    cli_conn_close(&c);
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
    CLI_CONN(c);
    cli_conn_defaults(&c);
    if (!(rc = cli_conn_open(cmd, &c))) {
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
        cli_conn_close(&c);
    }
    free(h5);
    maas_model_free(m);
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
    if (cli_wants_help(argc, argv)) return fputs(help, stdout), fputs(cli_conn_help, stdout), 0;
    CLI_CONN(c);
    cli_conn_defaults(&c);
    static const struct option opts[] = {CLI_CONN_LONGOPTS,
                                         {"keep", required_argument, 0, 'k'},
                                         {"dry-run", no_argument, 0, 'n'},
                                         {0, 0, 0, 0}};
    int o, rc = 0, dry = 0;
    long keep = -1;
    optind = 2;
    opterr = 0;
    if (argc < 2 || argv[1][0] == '-') return maas_cli_usage_error(cmd, "expected MODEL --keep N");
    while ((o = getopt_long(argc, argv, "X:", opts, NULL)) != -1 && !rc) {
        if (cli_conn_opt(&c, o, optarg)) continue;
        if (o == 'k')
            rc = cli_parse_int(cmd, "--keep", optarg, 1, 1000000, &keep);
        else if (o == 'n')
            dry = 1;
        else
            rc = maas_cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
    }
    if (rc) return rc;
    if (keep < 1) return maas_cli_usage_error(cmd, "--keep N is required");
    if ((rc = cli_conn_open(cmd, &c))) return rc;
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
    cli_conn_close(&c);
    return rc;
}
