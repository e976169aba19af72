/*
 * maas tenant: tenants and their API keys (operator commands: they work with the
 * CLI's own Redis and Kafka access, not through the HTTP API).
 *
 *   create NAME    registers the tenant, creates its topics (maas.t.NAME.jobs.*), its
 *                  Kafka principal with ACLs on them, a read-only Redis user for its
 *                  keys, and a key with the read and submit scopes, printed once
 *   list           tenants with their keys (ids, scopes, expiry; never secrets)
 *   delete NAME    revokes its keys, deletes its namespace in Redis and its topics
 *   key-rotate NAME [--grace-s S]   a new key; the old ones expire after S (3600)
 *   key-revoke ID  a key stops working now
 *   admin-key      an operator's key (no tenant; read, submit, admin)
 * A key goes to stdout, or with --key-file F to F (created 0600; never on argv).
 */
#include "maas/base.h"
#include "maas/auth.h"
#include "maas/broker.h"
#include "maas/clock.h"
#include "maas/protocol.h"
#include "maas/strbuf.h"
#include "cli.h"
#include "cluster.h"

#include <fcntl.h>
#include <getopt.h>
#include <sys/random.h>
#include <unistd.h>

static const char help[] =
    "usage: maas tenant create NAME [--scopes read,submit] [--key-file F] [--client-conf F]\n"
    "       maas tenant list\n"
    "       maas tenant delete NAME\n"
    "       maas tenant key-rotate NAME [--grace-s S] [--key-file F]\n"
    "       maas tenant key-revoke KEY_ID\n"
    "       maas tenant admin-key [--key-file F]\n"
    "Tenants own their models, jobs, datasets and sweeps: names are per tenant, and a\n"
    "tenant's keys see only its own (Redis keys maas:t:NAME:..., topics maas.t.NAME.jobs.*).\n"
    "A key is shown once: on stdout, or written to --key-file (mode 0600). create also\n"
    "makes the tenant's Kafka principal (SCRAM, through MAAS_KAFKA_SCRAM_CMD) with ACLs on\n"
    "its topics, and a read-only Redis user for its keys; their settings and the key are\n"
    "shown once: on stdout, or written to --client-conf F (0600).\n"
    "  --scopes S    a new key's scopes: read, submit, admin (create: read,submit)\n"
    "  --grace-s S   key-rotate: the old keys keep working S seconds more (3600; 0 = now)\n";

/* Writes the token to path (0600, replaced) or stdout. */
static int put_token(const char *cmd, const char *path, const char *token) {
    if (!path) return printf("%s\n", token) < 0;
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return maas_cli_fail(cmd, "cannot write %s: %s", tmp, strerror(errno));
    size_t n = strlen(token);
    int ok = write(fd, token, n) == (ssize_t)n && write(fd, "\n", 1) == 1;
    ok &= close(fd) == 0;
    if (!ok || rename(tmp, path)) {
        unlink(tmp);
        return maas_cli_fail(cmd, "cannot write %s: %s", path, strerror(errno));
    }
    return 0;
}

/* A new API key into token (and Redis); 0 or the exit status. */
static int make_key(const char *cmd, cli_conn *c, const char *tenant, unsigned scopes,
                    char token[MAAS_API_TOKEN_MAX]) {
    char e[MAAS_ERRSTR_SIZE], sc[32];
    maas_api_key k;
    if (maas_api_key_new(tenant, scopes, &k, token, e, sizeof(e)) ||
        maas_kv_apikey_put(c->kv, &k, e, sizeof(e)))
        return maas_cli_fail(cmd, "%s", e);
    maas_scopes_format(scopes, sc, sizeof(sc));
    fprintf(stderr, "maas %s: key %s for %s%s (scopes %s)\n", cmd, k.id,
            tenant[0] ? "tenant " : "operators", tenant, sc);
    return 0;
}

static int new_key(const char *cmd, cli_conn *c, const char *tenant, unsigned scopes,
                   const char *key_file) {
    char token[MAAS_API_TOKEN_MAX];
    int rc = make_key(cmd, c, tenant, scopes, token);
    if (!rc) rc = put_token(cmd, key_file, token);
    memset(token, 0, sizeof(token));
    return rc;
}

/* A password: 24 random bytes as hex. */
static int random_secret(char out[49]) {
    unsigned char b[24];
    size_t got = 0;
    while (got < sizeof(b)) {
        ssize_t r = getrandom(b + got, sizeof(b) - got, 0);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    for (size_t i = 0; i < sizeof(b); i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
    return 0;
}

/*
 * The tenant's Kafka principal (User:T, SCRAM-SHA-512, made by the command in
 * MAAS_KAFKA_SCRAM_CMD, which reads the password on stdin: the broker's tools make SCRAM
 * users) and its prefixed ACLs, and its read-only Redis user. Appends the client settings
 * to out. What the services cannot do (no authorizer, no SCRAM command) is said, not fatal:
 * the HTTP API's keys still confine the tenant there.
 */
static int tenant_identities(const char *cmd, cli_conn *c, const char *tenant, maas_strbuf *out) {
    char e[MAAS_ERRSTR_SIZE], kpass[49], rpass[49], user[64], prefix[128];
    if (random_secret(kpass) || random_secret(rpass))
        return maas_cli_fail(cmd, "no randomness from the kernel for the passwords");
    const char *scram = getenv("MAAS_KAFKA_SCRAM_CMD");
    int kafka_user = 0;
    if (scram && *scram) {
        char line[1024];
        snprintf(line, sizeof(line), "%s %s", scram, tenant);
        FILE *p = popen(line, "w");
        int ok = p && fprintf(p, "%s\n", kpass) > 0;
        ok = p && pclose(p) == 0 && ok;
        if (!ok) return maas_cli_fail(cmd, "the SCRAM command failed for %s: %s", tenant, line);
        kafka_user = 1;
    } else {
        fprintf(stderr, "maas %s: no MAAS_KAFKA_SCRAM_CMD: no Kafka principal made for %s\n", cmd,
                tenant);
    }
    char principal[64];
    snprintf(principal, sizeof(principal), "User:%s", tenant);
    if (maas_client_tenant_topic(c->client, tenant, "", prefix, sizeof(prefix), e, sizeof(e)))
        return maas_cli_fail(cmd, "%s", e);
    maas_err err = maas_kafka_grant_prefix(c->brokers, c->conf.settings, c->conf.n_settings,
                                           principal, prefix, prefix, 15000, e, sizeof(e));
    if (err == MAAS_ERR_UNSUPPORTED)
        fprintf(stderr,
                "maas %s: the broker has no authorizer: no ACLs (any client may produce to any "
                "topic there)\n",
                cmd);
    else if (err)
        return maas_cli_fail(cmd, "Kafka ACLs for %s: %s", principal, e);
    else
        fprintf(stderr, "maas %s: Kafka ACLs: %s may produce to and read %s*\n", cmd, principal,
                prefix);
    int saved = 0;
    if (maas_kv_tenant_reader(c->kv, tenant, rpass, user, sizeof(user), &saved, e, sizeof(e)))
        return maas_cli_fail(cmd, "the Redis user of %s: %s", tenant, e);
    fprintf(stderr, "maas %s: Redis user %s: read-only, keys and channels maas:t:%s:*%s\n", cmd,
            user, tenant, saved ? "" : " (Redis has no ACL file: it lives until a restart)");
    if (kafka_user)
        maas_strbuf_printf(out,
                           "kafka.security.protocol=SASL_PLAINTEXT\nkafka.sasl.mechanisms=SCRAM-"
                           "SHA-512\nkafka.sasl.username=%s\nkafka.sasl.password=%s\n",
                           tenant, kpass);
    maas_strbuf_printf(out, "kafka.topics=%sjobs.infer,%sjobs.work\n", prefix, prefix);
    maas_strbuf_printf(out, "redis.user=%s\nredis.password=%s\nredis.prefix=maas:t:%s:\n", user,
                       rpass, tenant);
    memset(kpass, 0, sizeof(kpass));
    memset(rpass, 0, sizeof(rpass));
    return 0;
}

static int create_topics(const char *cmd, cli_conn *c, const char *tenant);

/* maas tenant create: the registration, topics, API key and identities; the key and the
 * client settings shown once (key_file / conf_file, else stdout). */
static int create(const char *cmd, cli_conn *c, const char *tenant, unsigned scopes,
                  const char *key_file, const char *conf_file) {
    char e[MAAS_ERRSTR_SIZE], token[MAAS_API_TOKEN_MAX];
    maas_err err = maas_kv_tenant_create(c->kv, tenant, e, sizeof(e));
    if (err == MAAS_ERR_CONFLICT)
        return maas_cli_fail(cmd, "%s (maas tenant key-rotate %s makes a new key)", e, tenant);
    if (err) return maas_cli_fail(cmd, "%s", e);
    maas_strbuf conf = {0};
    int rc = create_topics(cmd, c, tenant);
    if (!rc) rc = tenant_identities(cmd, c, tenant, &conf);
    if (!rc) rc = make_key(cmd, c, tenant, scopes, token);
    if (!rc) {
        maas_strbuf_printf(&conf, "api_key=%s\n", token);
        rc = put_token(cmd, key_file, token);
    }
    if (!rc && (conf_file || !key_file)) {
        char *text = conf.p ? conf.p : "";
        size_t n = strlen(text);
        if (n && text[n - 1] == '\n') text[n - 1] = '\0'; /* put_token adds it */
        rc = put_token(cmd, conf_file, text);
        if (!rc && conf_file)
            fprintf(stderr, "maas %s: client settings of %s written to %s\n", cmd, tenant,
                    conf_file);
    }
    if (conf.p) memset(conf.p, 0, strlen(conf.p));
    free(conf.p);
    memset(token, 0, sizeof(token));
    return rc;
}

/* The tenant's topics, with the single-tenant topics' partition counts. */
/* The tenant's topic names into names[0..*n) (their definitions in *defs); 0 or the status. */
static int tenant_topics(const char *cmd, cli_conn *c, const char *tenant, char names[8][256],
                         const maas_topic_def **defs, int *n) {
    char e[MAAS_ERRSTR_SIZE];
    *defs = maas_topics(n);
    if (*n > 8) *n = 8;
    for (int t = 0; t < *n; t++)
        if (maas_client_tenant_topic(c->client, tenant, (*defs)[t].suffix, names[t], 256, e,
                                     sizeof(e)))
            return maas_cli_fail(cmd, "%s", e);
    return 0;
}

static int create_topics(const char *cmd, cli_conn *c, const char *tenant) {
    char e[MAAS_ERRSTR_SIZE], names[8][256];
    maas_topic_spec specs[8];
    int n;
    const maas_topic_def *defs;
    if (tenant_topics(cmd, c, tenant, names, &defs, &n)) return 1;
    for (int t = 0; t < n; t++) specs[t] = (maas_topic_spec){names[t], defs[t].partitions};
    if (maas_kafka_create_topics(c->brokers, c->conf.settings, c->conf.n_settings, specs, n, 1,
                                 15000, e, sizeof(e)))
        return maas_cli_fail(cmd, "creating the tenant's topics: %s", e);
    for (int t = 0; t < n; t++) fprintf(stderr, "maas %s: topic %s\n", cmd, names[t]);
    return 0;
}

/* The tenant's topics go with it (jobs still in them are dropped: it is gone). */
static int delete_topics(const char *cmd, cli_conn *c, const char *tenant) {
    char e[MAAS_ERRSTR_SIZE], names[8][256];
    const char *v[8];
    int n;
    const maas_topic_def *defs;
    if (tenant_topics(cmd, c, tenant, names, &defs, &n)) return 1;
    for (int t = 0; t < n; t++) v[t] = names[t];
    if (maas_kafka_delete_topics(c->brokers, c->conf.settings, c->conf.n_settings, v, n, 15000, e,
                                 sizeof(e)))
        return maas_cli_fail(cmd, "deleting the tenant's topics: %s", e);
    for (int t = 0; t < n; t++) fprintf(stderr, "maas %s: deleted topic %s\n", cmd, names[t]);
    return 0;
}

static int list(const char *cmd, cli_conn *c) {
    char e[MAAS_ERRSTR_SIZE], **names;
    int n;
    if (maas_kv_tenants(c->kv, &names, &n, e, sizeof(e))) return maas_cli_fail(cmd, "%s", e);
    int rc = 0;
    for (int t = -1; t < n; t++) {
        const char *tenant = t < 0 ? "" : names[t];
        maas_api_key *keys;
        int nk;
        if (maas_kv_apikeys(c->kv, tenant, &keys, &nk, e, sizeof(e))) {
            rc = maas_cli_fail(cmd, "%s", e);
            break;
        }
        if (t >= 0 || nk) printf("%s\n", t < 0 ? "(operators)" : tenant);
        for (int i = 0; i < nk; i++) {
            char sc[32];
            maas_scopes_format(keys[i].scopes, sc, sizeof(sc));
            printf("  key %s  %-18s", keys[i].id, sc);
            if (keys[i].expires_ms)
                printf("  expires in %llds",
                       (long long)((keys[i].expires_ms - maas_wall_ms()) / 1000));
            printf("\n");
        }
        free(keys);
    }
    for (int t = 0; t < n; t++) free(names[t]);
    free(names);
    return rc;
}

int maas_cli_tenant(int argc, char **argv) {
    const char *cmd = "tenant";
    if (cli_wants_help(argc, argv)) return fputs(help, stdout), fputs(cli_conn_help, stdout), 0;
    if (argc < 2) return maas_cli_usage_error(cmd, "expected a subcommand");
    const char *sub = argv[1];
    int takes_name = !strcmp(sub, "create") || !strcmp(sub, "delete") ||
                     !strcmp(sub, "key-rotate") || !strcmp(sub, "key-revoke");
    if (!takes_name && strcmp(sub, "list") && strcmp(sub, "admin-key"))
        return maas_cli_usage_error(cmd, "unknown subcommand '%s'", sub);
    if (takes_name && argc < 3) return maas_cli_usage_error(cmd, "%s needs a name", sub);
    const char *name = takes_name ? argv[2] : "";
    CLI_CONN(c);
    cli_conn_defaults(&c);
    static const struct option opts[] = {CLI_CONN_LONGOPTS,
                                         {"scopes", required_argument, 0, 's'},
                                         {"key-file", required_argument, 0, 'k'},
                                         {"grace-s", required_argument, 0, 'g'},
                                         {"client-conf", required_argument, 0, 'c'},
                                         {0, 0, 0, 0}};
    const char *key_file = NULL, *scopes_text = NULL, *conf_file = NULL;
    long grace_s = 3600;
    int o;
    optind = takes_name ? 3 : 2;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "X:", opts, NULL)) != -1) {
        char *end;
        if (cli_conn_opt(&c, o, optarg)) continue;
        if (o == 's')
            scopes_text = optarg;
        else if (o == 'k')
            key_file = optarg;
        else if (o == 'c')
            conf_file = optarg;
        else if (o == 'g' && (grace_s = strtol(optarg, &end, 10)) >= 0 && !*end &&
                 grace_s <= 30L * 86400)
            continue;
        else
            return maas_cli_usage_error(cmd, "bad option '%s'", argv[optind - 1]);
    }
    if (optind < argc) return maas_cli_usage_error(cmd, "unexpected '%s'", argv[optind]);
    char e[MAAS_ERRSTR_SIZE];
    unsigned scopes = !strcmp(sub, "admin-key")
                          ? MAAS_SCOPE_READ | MAAS_SCOPE_SUBMIT | MAAS_SCOPE_ADMIN
                          : MAAS_SCOPE_READ | MAAS_SCOPE_SUBMIT;
    if (scopes_text && maas_scopes_parse(scopes_text, &scopes, e, sizeof(e)))
        return maas_cli_usage_error(cmd, "--scopes: %s", e);
    if (takes_name && strcmp(sub, "key-revoke") && maas_tenant_check(name, e, sizeof(e)))
        return maas_cli_usage_error(cmd, "%s", e);
    snprintf(c.tenant, sizeof(c.tenant), "%s", ""); /* operator commands: no tenant scope */
    int rc = cli_conn_open(cmd, &c);
    if (rc) return rc;
    if (!strcmp(sub, "create")) {
        rc = create(cmd, &c, name, scopes, key_file, conf_file);
    } else if (!strcmp(sub, "list")) {
        rc = list(cmd, &c);
    } else if (!strcmp(sub, "delete")) {
        long deleted = 0;
        if (maas_kv_tenant_delete(c.kv, name, &deleted, e, sizeof(e)))
            rc = maas_cli_fail(cmd, "%s", e);
        else
            fprintf(stderr, "maas tenant: deleted tenant %s: its keys and %ld Redis keys\n", name,
                    deleted);
        if (!rc && maas_kv_tenant_reader_delete(c.kv, name, e, sizeof(e)))
            fprintf(stderr, "maas tenant: the Redis user of %s: %s\n", name, e);
        if (!rc) rc = delete_topics(cmd, &c, name);
        char principal[64];
        snprintf(principal, sizeof(principal), "User:%s", name);
        maas_err ke = rc ? MAAS_OK
                         : maas_kafka_revoke(c.brokers, c.conf.settings, c.conf.n_settings,
                                             principal, 15000, e, sizeof(e));
        if (ke && ke != MAAS_ERR_UNSUPPORTED) rc = maas_cli_fail(cmd, "%s", e);
        if (!rc && !ke) fprintf(stderr, "maas tenant: Kafka ACLs of %s deleted\n", principal);
    } else if (!strcmp(sub, "key-rotate")) {
        int exists = 0;
        maas_api_key *old = NULL;
        int n_old = 0;
        if (maas_kv_tenant_exists(c.kv, name, &exists, e, sizeof(e)) ||
            maas_kv_apikeys(c.kv, name, &old, &n_old, e, sizeof(e)))
            rc = maas_cli_fail(cmd, "%s", e);
        else if (!exists)
            rc = maas_cli_fail(cmd, "no tenant '%s'", name);
        if (!rc) rc = new_key(cmd, &c, name, scopes, key_file);
        for (int i = 0; !rc && i < n_old; i++) {
            if (maas_kv_apikey_expire(c.kv, old[i].id, grace_s * 1000, e, sizeof(e)))
                rc = maas_cli_fail(cmd, "%s", e);
            else
                fprintf(stderr, "maas tenant: key %s %s\n", old[i].id,
                        grace_s ? "expires in the grace period" : "revoked");
        }
        free(old);
    } else if (!strcmp(sub, "key-revoke")) {
        if (maas_kv_apikey_expire(c.kv, name, 0, e, sizeof(e)))
            rc = maas_cli_fail(cmd, "%s", e);
        else
            fprintf(stderr, "maas tenant: key %s revoked\n", name);
    } else {
        rc = new_key(cmd, &c, "", scopes, key_file);
    }
    cli_conn_close(&c);
    return rc;
}
