/*
 * `maas dlq ls|replay`: the dead-letter topic, read and replayed through the
 * cluster client.
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

/* ------------------------------------------------------------ dead letters */

typedef struct dlq_entry {
    int64_t offset;
    char id[MAAS_NAME_MAX + 1], code[32], message[512], topic[256], worker[MAAS_NAME_MAX + 1];
    char truncated[64], src_partition[16], src_offset[32]; /* a cut copy: where the whole is */
    unsigned char *raw;
    size_t raw_len;
} dlq_entry;

static void dlq_release(dlq_entry *v, int n) {
    for (int i = 0; v && i < n; i++) free(v[i].raw);
    free(v);
}

/* Reads the whole dead-letter topic from its start (a throwaway group that commits nothing). */
static int dlq_read(const char *cmd, cli_conn *c, dlq_entry **out, int *n) {
    char e[MAAS_ERRSTR_SIZE], topic[256], group[64], rid[33];
    *out = NULL;
    *n = 0;
    if (maas_client_tenant_topic(c->client, c->tenant, MAAS_TOPIC_DLQ, topic, sizeof(topic), e,
                                 sizeof(e)))
        return maas_cli_fail(cmd, "%s", e);
    maas_name_random(rid);
    snprintf(group, sizeof(group), "maas-cli-dlq-%.16s", rid);
    maas_setting s[MAAS_CONFIG_MAX_SETTINGS + 2];
    int ns = 0;
    for (int i = 0; i < c->conf.n_settings; i++) s[ns++] = c->conf.settings[i];
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
        maas_message_header(&m, "maas-truncated", d->truncated, sizeof(d->truncated));
        maas_message_header(&m, "maas-source-partition", d->src_partition,
                            sizeof(d->src_partition));
        maas_message_header(&m, "maas-source-offset", d->src_offset, sizeof(d->src_offset));
        d->raw = malloc(m.value_len ? m.value_len : 1);
        if (d->raw) {
            if (m.value_len) memcpy(d->raw, m.value, m.value_len);
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
        "messages with no readable job id cannot be replayed, nor cut copies (a message over\n"
        "the topic's size limit: the headers say where the whole one is) or MISMATCH letters\n"
        "(a message naming another job's record). Fix the cause first: a job that fails the\n"
        "same way is dead-lettered again.\n";
    if (cli_wants_help(argc, argv)) return fputs(help, stdout), fputs(cli_conn_help, stdout), 0;
    if (argc < 2 || (strcmp(argv[1], "ls") && strcmp(argv[1], "replay")))
        return maas_cli_usage_error(cmd, "expected ls or replay");
    int replay = !strcmp(argv[1], "replay");
    CLI_CONN(c);
    cli_conn_defaults(&c);
    static const struct option opts[] = {CLI_CONN_LONGOPTS, {0, 0, 0, 0}};
    int o;
    optind = 2;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "X:", opts, NULL)) != -1)
        if (!cli_conn_opt(&c, o, optarg))
            return maas_cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
    char **ids = argv + optind;
    int n_ids = argc - optind;
    if (!replay && n_ids) return maas_cli_usage_error(cmd, "ls takes no job ids");
    int rc = cli_conn_open(cmd, &c), n = 0;
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
    int replayed = 0, skipped = 0;
    for (int i = n - 1; i >= 0; i--) { /* newest first; older copies of a job are skipped */
        dlq_entry *d = &v[i];
        if (!d->id[0] || !dlq_wanted(d, ids, n_ids)) continue;
        int seen = 0;
        for (int k = n - 1; k > i; k--) seen |= !strcmp(v[k].id, d->id);
        if (seen) continue;
        if (d->truncated[0]) { /* over the topic's limit: only a cut copy was kept */
            fprintf(stderr, "skip %s: the dead letter holds %s; the message is at %s[%s]@%s\n",
                    d->id, d->truncated, d->topic, d->src_partition, d->src_offset);
            skipped++;
            continue;
        }
        if (!strcmp(d->code, "MISMATCH")) { /* another job's id: replaying it changes nothing */
            fprintf(stderr, "skip %s: the message does not match that job's record\n", d->id);
            skipped++;
            continue;
        }
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
            maas_job_record_of_message(&j, d->raw, d->raw_len, &rec);
            maas_err err = maas_kv_job_create(
                c.kv, &rec, j.ttl_s > 0 ? j.ttl_s : MAAS_JOB_TTL_DEFAULT_S, e, sizeof(e));
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
        /* notify: what the job asked for is unknown here */
        if (maas_client_publish(c.client, NULL, d->topic, d->id, d->raw, d->raw_len, 1, e,
                                sizeof(e))) {
            rc = maas_cli_fail(cmd, "replaying %s: %s (its record says failed again)", d->id, e);
            break;
        }
        printf("replayed %s to %s\n", d->id, d->topic);
        replayed++;
    }
    fprintf(stderr, "maas dlq: %d replayed, %d skipped\n", replayed, skipped);
    for (int i = 0; !rc && i < n_ids; i++) {
        int found = 0;
        for (int k = 0; k < n; k++) found |= !strcmp(v[k].id, ids[i]);
        if (!found) rc = maas_cli_fail(cmd, "job %s is not on the dead-letter topic", ids[i]);
    }
done:
    dlq_release(v, n);
    cli_conn_close(&c);
    return rc;
}
