/* The `maas` command line: subcommands share these helpers. */
#ifndef MAAS_CLI_H
#define MAAS_CLI_H

/* Local mode (no cluster): each returns the process exit status. */
int maas_cli_fit(int argc, char **argv);
int maas_cli_evaluate(int argc, char **argv);
int maas_cli_predict(int argc, char **argv);
int maas_cli_inspect(int argc, char **argv);

/* Prints "maas CMD: message" on stderr and returns 1 (runtime) — for `return cli_fail(...)`. */
int maas_cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints a usage error and returns 2. */
int maas_cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
