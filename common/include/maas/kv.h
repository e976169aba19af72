/*
 * kv.h - the Redis adapter (hiredis; common/src/kv/ holds the only files that
 * include hiredis.h, one per concern, and its Lua scripts): job records, the
 * model registry, datasets, sweeps, the fleet, tenants and API keys.
 *
 * The key layout (schemas/redis-keys.md) puts everything that must change
 * atomically under one hash tag — a job's keys under {job-id}, a model's under
 * {model-name} — so every multi-key script runs unchanged on Redis Cluster.
 * Names (job ids, model names, aliases, datasets) are 1..128 characters of
 * [A-Za-z0-9._-], which keeps them out of the hash-tag syntax.
 *
 * A maas_kv is one connection; use one per thread. Every call reconnects once
 * when the connection dropped; a server that cannot be reached gives
 * MAAS_ERR_UNAVAILABLE (retriable).
 */
#ifndef MAAS_KV_H
#define MAAS_KV_H

#include <stddef.h>
#include <stdint.h>

#include "maas/config.h" /* maas_setting */
#include "maas/err.h"
#include "maas/job_state.h"
#include "maas/names.h"
#include "maas/sweep_record.h"

typedef struct maas_kv maas_kv;

/*
 * Connects to url, "redis://[[user]:password@]host[:port][/db]" (default
 * redis://127.0.0.1:6379), or a Redis Cluster:
 * "redis+cluster://[[user]:password@]host:port[,host:port...]" (commands routed by
 * their key's slot; MOVED, ASK and failovers followed). Settings: redis.user,
 * redis.password (override the URL's), redis.prefix (key prefix, default "maas:"),
 * redis.timeout_ms (5000), redis.wait_replicas (writes confirmed once that many
 * replicas have them: 1 on a cluster, 0 on one Redis), redis.wait_ms (200).
 * Free with maas_kv_free().
 */
maas_kv *maas_kv_connect(const char *url, const maas_setting *settings, int n_settings,
                         char *errstr, size_t errstr_size);

/* What maas_kv_connect checks before it connects (the URL, the redis.* settings), without
 * connecting: MAAS_OK, or INVALID_ARGUMENT with errstr saying what is wrong. */
maas_err maas_kv_check(const char *url, const maas_setting *settings, int n_settings, char *errstr,
                       size_t errstr_size);
void maas_kv_free(maas_kv *kv);

/*
 * Tenants: a handle works in one tenant's namespace at a time — its keys under
 * PREFIX "t:" TENANT ":" (maas:t:acme:job:{ID}), so Redis ACL key patterns can
 * confine a tenant — or, with tenant NULL or "", in the single-tenant layout
 * (PREFIX alone). Every job, record, model, alias, dataset and sweep call uses
 * the scope set last; the fleet (workers), tenants and API keys are outside any
 * scope. Cheap: call it before each job's calls. INVALID_ARGUMENT for a bad
 * tenant name (maas_tenant_check) leaves the scope as it was.
 */
maas_err maas_kv_scope(maas_kv *kv, const char *tenant, char *errstr, size_t errstr_size);
/* The current scope's tenant ("" for none); borrowed until the next maas_kv_scope. */
const char *maas_kv_tenant(const maas_kv *kv);

maas_err maas_kv_ping(maas_kv *kv, char *errstr, size_t errstr_size);

/* How many masters the keys are spread over: 1 on one Redis; on a cluster, the masters of
 * the slot map (read now). A batch of jobs is one script call per master: a worker sizes its
 * batches by it. */
maas_err maas_kv_masters(maas_kv *kv, int *n, char *errstr, size_t errstr_size);

/* ---- job records (maas/job_state.h) ---- */

/*
 * Creates the record (state queued) if no record with this id exists. Returns
 * CONFLICT when one does (the id is an idempotency key: the caller reads it).
 * ttl_s > 0 expires the record that many seconds after it becomes final.
 */
maas_err maas_kv_job_create(maas_kv *kv, const maas_job_record *r, int ttl_s, char *errstr,
                            size_t errstr_size);

/* Reads a record; a missing one gives MAAS_OK with r->state == MAAS_JOB_UNKNOWN. */
maas_err maas_kv_job_get(maas_kv *kv, const char *id, maas_job_record *r, char *errstr,
                         size_t errstr_size);

/*
 * Moves a job to `to` atomically if its state is one of `from` (a bitmask of
 * 1 << state); CONFLICT otherwise (the record keeps its state). On entering
 * running: attempts + 1, worker, started_ms. On a final state: finished_ms,
 * the result or the error, the TTL, and a message on the job's events channel
 * (see maas_kv_job_wait); with notify, the state is also pushed onto the job's
 * :done list, for clients that wait with BLMOVE.
 */
typedef struct maas_job_update {
    maas_job_state to;
    unsigned from_mask;
    const char *worker;
    const unsigned char *result;
    size_t result_len;
    const char *error_code;
    const char *error_message;
    int ttl_s;
    /* When the job has no record (a client produced it straight to Kafka), create
     * one from this first (state queued), then apply the transition. NULL: no. */
    const maas_job_record *create;
    int notify; /* the job asked for its :done list (the message's "notify") */
    /* A job that ends without passing through running (inference): when the worker took
     * it, recorded as started_ms; 0 = not recorded. */
    int64_t started_ms;
    /* A final state's cost (maas/cost.h), stored as the record's "cost" field; NULL: none. */
    const maas_job_cost *cost;
    /* Out, when not NULL (maas_kv_job_transition only): on a move to running, the attempts
     * the record counts now (this one included); else left as it was. */
    int *attempts;
} maas_job_update;

maas_err maas_kv_job_transition(maas_kv *kv, const char *id, const maas_job_update *u, char *errstr,
                                size_t errstr_size);

/*
 * Many transitions in one round trip (the worker finishing an inference batch):
 * one script call per Redis node for all of its jobs, each job's move atomic.
 * results[i] gets each job's outcome (OK, CONFLICT, UNKNOWN; UNAVAILABLE when
 * its node refused it, e.g. its slot moved);
 * the return value is an error only when Redis itself failed, in which case
 * any of them may or may not have been applied (each is idempotent).
 */
maas_err maas_kv_job_transition_batch(maas_kv *kv, int n, const char *const *ids,
                                      const maas_job_update *updates, maas_err *results,
                                      char *errstr, size_t errstr_size);

/*
 * The same in two halves, so the caller works while Redis applies the batch:
 * _send writes the pipeline and returns (ids and updates may go then); _recv
 * reads the replies into results[0..n) and returns as _transition_batch does.
 * One batch in flight per handle: _send refuses a second one until _recv. Any
 * other call on the handle first reads the batch's replies (kept for _recv),
 * so calls stay correct, only not overlapped. _in_flight: n, or 0 if none.
 */
maas_err maas_kv_job_transition_send(maas_kv *kv, int n, const char *const *ids,
                                     const maas_job_update *updates, char *errstr,
                                     size_t errstr_size);
maas_err maas_kv_job_transition_recv(maas_kv *kv, maas_err *results, char *errstr,
                                     size_t errstr_size);
int maas_kv_job_transition_in_flight(const maas_kv *kv);

/*
 * A training (or fine-tuning) job's epochs, one JSON object each, in the list
 * maas:job:{ID}:epochs: the live curves a client draws while the job runs. append adds
 * lines[0..n) at the end, replacing the list first when fresh (the run's first lines: an
 * earlier attempt's go), and keeps it ttl_s seconds from now (0: no expiry). epochs reads
 * from index `from` on, at most max lines, into *lines (malloc'd strings and array: free
 * each, then the array); an absent list is none.
 */
maas_err maas_kv_job_epochs_append(maas_kv *kv, const char *id, int fresh, const char *const *lines,
                                   int n, int ttl_s, char *errstr, size_t errstr_size);
maas_err maas_kv_job_epochs(maas_kv *kv, const char *id, long from, int max, char ***lines, int *n,
                            char *errstr, size_t errstr_size);

/* Heartbeat and live progress (JSON) of a running job held by worker; CONFLICT if not. */
maas_err maas_kv_job_heartbeat(maas_kv *kv, const char *id, const char *worker,
                               const char *progress_json, char *errstr, size_t errstr_size);

/* Asks a job to stop (the worker checks between batches). */
maas_err maas_kv_job_cancel(maas_kv *kv, const char *id, char *errstr, size_t errstr_size);

/*
 * Blocks up to timeout_ms until something happens to the job (no polling: it
 * subscribes to the job's events channel, then reads the record): returns at
 * once if the job is final or unknown, else on its next event (progress or the
 * final state) or the timeout. *state receives the state then; callers that
 * want the end loop until MAAS_JOB_FINAL. The subscription uses a second
 * connection of the handle, opened on first use.
 */
maas_err maas_kv_job_wait(maas_kv *kv, const char *id, int timeout_ms, maas_job_state *state,
                          char *errstr, size_t errstr_size);

/* ---- model registry ---- */

typedef struct maas_version_meta {
    int version;
    int parent;                  /* 0 = none */
    char job[MAAS_NAME_MAX + 1]; /* the job that produced it */
    char sha256[65];
    size_t size;
    int64_t created_ms;
    char *metrics; /* JSON or NULL; owned */
    char *config;  /* JSON or NULL; owned */
} maas_version_meta;

void maas_version_meta_release(maas_version_meta *m);

/*
 * Registers a new immutable version (numbered atomically: 1, 2, ...) holding
 * the h5 bytes, and moves the alias "latest" to it. Idempotent by job: a second
 * call with the same job returns the version the first one made
 * (*created = 0) and stores nothing.
 */
maas_err maas_kv_version_create(maas_kv *kv, const char *model, const char *job, int parent,
                                const void *h5, size_t len, const char *metrics_json,
                                const char *config_json, int *version, int *created, char *errstr,
                                size_t errstr_size);

/*
 * Resolves ref — "7", "latest", "production", ... — to a version number.
 * Unknown model, version or alias: MAAS_ERR_UNKNOWN_NAME with a message naming it.
 */
maas_err maas_kv_version_resolve(maas_kv *kv, const char *model, const char *ref, int *version,
                                 char *errstr, size_t errstr_size);

/*
 * Caches the handle's maas_kv_version_resolve answers, kept true by Redis
 * itself: client-side caching (CLIENT TRACKING, OPTIN, redirected to a third
 * connection of the handle subscribed to __redis__:invalidate). Redis tells
 * that connection when a key a cached answer came from changes, by any client
 * (an alias moved with redis-cli too), and each resolve applies those messages
 * before it answers; so a move takes effect on the next resolve, with no round
 * trip while nothing moves. For long-lived handles that resolve per job (the
 * worker). UNSUPPORTED if Redis refuses (before 6.0): resolves then ask Redis.
 */
maas_err maas_kv_cache_versions(maas_kv *kv, char *errstr, size_t errstr_size);

/* A version's h5 bytes (*h5 malloc'ed; free()) and metadata (meta may be NULL). */
maas_err maas_kv_version_get(maas_kv *kv, const char *model, int version, unsigned char **h5,
                             size_t *len, maas_version_meta *meta, char *errstr,
                             size_t errstr_size);

/* A version's metadata without its bytes; UNKNOWN if there is no such version. */
maas_err maas_kv_version_meta(maas_kv *kv, const char *model, int version, maas_version_meta *meta,
                              char *errstr, size_t errstr_size);

/* The number of versions a model has (versions are 1..n); 0 for an unknown model. */
maas_err maas_kv_version_count(maas_kv *kv, const char *model, int *n, char *errstr,
                               size_t errstr_size);

/* Aliases of a model: n pairs; *aliases[i] malloc'ed (free each, then the arrays). */
maas_err maas_kv_aliases(maas_kv *kv, const char *model, char ***aliases, int **versions, int *n,
                         char *errstr, size_t errstr_size);

/*
 * Points alias at version, atomically. With expect >= 0 only if the alias
 * currently points at expect (0 = unset): CONFLICT otherwise. The version must
 * exist (UNKNOWN otherwise).
 */
maas_err maas_kv_alias_set(maas_kv *kv, const char *model, const char *alias, int version,
                           int expect, char *errstr, size_t errstr_size);

/* ---- datasets: named blobs (msgpack {"x", "y"}, see job.h) a job can reference ---- */

maas_err maas_kv_dataset_put(maas_kv *kv, const char *name, const void *bytes, size_t len,
                             char *errstr, size_t errstr_size);
/* *bytes malloc'ed (free()); UNKNOWN when there is no such dataset. */
maas_err maas_kv_dataset_get(maas_kv *kv, const char *name, unsigned char **bytes, size_t *len,
                             char *errstr, size_t errstr_size);
maas_err maas_kv_dataset_delete(maas_kv *kv, const char *name, char *errstr, size_t errstr_size);

/* ---- the fleet ---- */

/*
 * A worker announces itself (hash maas:worker:{ID}, expiring after ttl_s) with
 * free-form fields (host, pid, loaded versions, jobs done...). Call it every
 * few seconds; a worker that stops announcing drops out of the list.
 */
maas_err maas_kv_worker_announce(maas_kv *kv, const char *id, const maas_setting *fields,
                                 int n_fields, int ttl_s, char *errstr, size_t errstr_size);

/* A worker's announcement: its id and the fields it last wrote. */
#define MAAS_WORKER_FIELDS 20
typedef struct maas_worker_info {
    char id[MAAS_NAME_MAX + 1];
    int n_fields;
    char *keys[MAAS_WORKER_FIELDS], *values[MAAS_WORKER_FIELDS]; /* owned */
} maas_worker_info;

/* The live fleet, sorted by id (*out: release with maas_worker_info_release(*out, n)). */
maas_err maas_kv_workers_list(maas_kv *kv, maas_worker_info **out, int *n, char *errstr,
                              size_t errstr_size);
void maas_worker_info_release(maas_worker_info *w, int n);

/*
 * Recent jobs, newest first: up to limit records (in state, or any state with
 * MAAS_JOB_UNKNOWN) into out[0..*n); release each. Lists the jobs submitted
 * through maas_kv_job_create and those whose record a worker created; an
 * inference job produced straight to Kafka with no record is not indexed.
 */
maas_err maas_kv_jobs_list(maas_kv *kv, maas_job_state state, int limit, maas_job_record *out,
                           int *n, char *errstr, size_t errstr_size);

/*
 * Deliveries of inference messages that may be redeliveries after a worker
 * died (maas:tries:{TOPIC/PARTITION}, a hash of offset -> count, kept ttl_s):
 * for each offsets[i] adds one when add[i], else only reads; counts[i] gets
 * the count. One round trip for up to 4096 offsets of one partition.
 */
maas_err maas_kv_delivery_counts(maas_kv *kv, const char *topic, int32_t partition,
                                 const int64_t *offsets, const int *add, int n, int *counts,
                                 int ttl_s, char *errstr, size_t errstr_size);

/*
 * How far the owners of an inference partition may have started its messages
 * (maas:started:{TOPIC/PARTITION}, the offset after the last one an owner may
 * have started, kept ttl_s): an owner raises it, durably, before it starts a
 * message at or past it, so the next owner knows which of the messages it is
 * given a worker can have died computing (those have their deliveries counted)
 * and which nobody can have started. get: *to = 0 when none is stored. raise:
 * never lowers it; *to gets the mark after the call.
 */
maas_err maas_kv_start_mark_get(maas_kv *kv, const char *topic, int32_t partition, int64_t *to,
                                char *errstr, size_t errstr_size);
maas_err maas_kv_start_mark_raise(maas_kv *kv, const char *topic, int32_t partition, int64_t *to,
                                  int ttl_s, char *errstr, size_t errstr_size);

/*
 * The message of a work job as it was published (maas:job:{ID}:message,
 * expiring after ttl_s), kept by submitters so housekeeping can publish it
 * again when the worker running it vanished. UNKNOWN when none is stored.
 */
maas_err maas_kv_job_message_put(maas_kv *kv, const char *id, const void *bytes, size_t len,
                                 int ttl_s, char *errstr, size_t errstr_size);
maas_err maas_kv_job_message_get(maas_kv *kv, const char *id, unsigned char **bytes, size_t *len,
                                 char *errstr, size_t errstr_size);

/*
 * The index of work jobs with a stored message (maas:jobs:work, a sorted set of
 * ids by the time the message was stored): every job housekeeping may have to
 * publish again, however many records there are. One step of a scan over it:
 * start with *cursor 0, call until it is 0 again (an id may come twice); *ids
 * and each id malloc'ed. Entries whose job is final or gone are for the caller
 * to remove.
 */
maas_err maas_kv_work_index(maas_kv *kv, unsigned long long *cursor, char ***ids, int *n,
                            char *errstr, size_t errstr_size);
maas_err maas_kv_work_index_remove(maas_kv *kv, const char *id, char *errstr, size_t errstr_size);

/*
 * Deletes a version's bytes and metadata (retention). Never an aliased one:
 * CONFLICT while any alias (latest included) points at it; UNKNOWN if gone.
 * Version numbers are not reused.
 */
maas_err maas_kv_version_delete(maas_kv *kv, const char *model, int version, char *errstr,
                                size_t errstr_size);

/* Model names, sorted; *names is an array of n malloc'ed strings (free each, then it). */
maas_err maas_kv_models(maas_kv *kv, char ***names, int *n, char *errstr, size_t errstr_size);

/* ---- sweeps (maas/sweep_record.h; the logic is in maas/sweep.h) ---- */

/* Stores a new sweep; CONFLICT if one with this id exists (then load it). */
maas_err maas_kv_sweep_create(maas_kv *kv, const maas_sweep *s, char *errstr, size_t errstr_size);
/* Loads a sweep; UNKNOWN if there is none. s is large: allocate it on the heap. */
maas_err maas_kv_sweep_load(maas_kv *kv, const char *id, maas_sweep *s, char *errstr,
                            size_t errstr_size);
/* Marks it done with its best version; CONFLICT if it was already done. */
maas_err maas_kv_sweep_finish(maas_kv *kv, const char *id, const char *best_job, int best_version,
                              char *errstr, size_t errstr_size);
/* Ids of sweeps not yet done (*ids: n malloc'ed strings, free each, then it). */
maas_err maas_kv_sweeps_active(maas_kv *kv, char ***ids, int *n, char *errstr, size_t errstr_size);

/* ---- tenants and API keys (kv_auth.c; maas/auth.h has the key format) ---- */

/* Registers a tenant (maas:tenants, maas:tenant:{T}); CONFLICT if it exists. */
maas_err maas_kv_tenant_create(maas_kv *kv, const char *tenant, char *errstr, size_t errstr_size);
/* 1 in *exists when the tenant is registered. */
maas_err maas_kv_tenant_exists(maas_kv *kv, const char *tenant, int *exists, char *errstr,
                               size_t errstr_size);
/* Tenant names, sorted (*names: n malloc'ed strings; free each, then it). */
maas_err maas_kv_tenants(maas_kv *kv, char ***names, int *n, char *errstr, size_t errstr_size);
/*
 * Deletes a tenant: its API keys first (they stop working at once), then every
 * key of its namespace (SCAN + UNLINK, in batches), then its registration.
 * UNKNOWN_NAME if there is no such tenant. *deleted: keys removed.
 */
maas_err maas_kv_tenant_delete(maas_kv *kv, const char *tenant, long *deleted, char *errstr,
                               size_t errstr_size);

/*
 * A Redis ACL user for a tenant's direct reader ("tenant-T" into user): read-only commands
 * (HGET, HGETALL, GET, TTL, SUBSCRIBE, ...) on T's keys and channels (maas:t:T:*) only,
 * and BLMOVE on its jobs' done-lists (a client's wait), with password. *saved: Redis wrote it to
 * its ACL file (0: it has none; the user lives until Redis restarts). Calling it again resets the
 * user.
 */
maas_err maas_kv_tenant_reader(maas_kv *kv, const char *tenant, const char *password, char *user,
                               size_t user_size, int *saved, char *errstr, size_t errstr_size);
maas_err maas_kv_tenant_reader_delete(maas_kv *kv, const char *tenant, char *errstr,
                                      size_t errstr_size);

struct maas_api_key;
/* Stores an API key's record (its hash, never the secret); ttl_ms > 0 expires it. */
maas_err maas_kv_apikey_put(maas_kv *kv, const struct maas_api_key *k, char *errstr,
                            size_t errstr_size);
/* Reads the record of key id; UNKNOWN_NAME when there is none (revoked or expired). */
maas_err maas_kv_apikey_get(maas_kv *kv, const char *id, struct maas_api_key *k, char *errstr,
                            size_t errstr_size);
/* Revokes key id now (ttl_ms 0) or expires it ttl_ms from now (rotation's overlap). */
maas_err maas_kv_apikey_expire(maas_kv *kv, const char *id, int64_t ttl_ms, char *errstr,
                               size_t errstr_size);
/* The keys of a tenant ("" = admin keys), oldest first: *keys malloc'ed array of n. */
maas_err maas_kv_apikeys(maas_kv *kv, const char *tenant, struct maas_api_key **keys, int *n,
                         char *errstr, size_t errstr_size);

#endif
