/*
 * job_state.h - the job state machine and the job record, neutral: the codec,
 * the adapters, the worker and the programs share them without depending on
 * one another (the Redis adapter stores records; it does not define them).
 *
 *   queued -> running -> succeeded | failed | expired | cancelled
 *   queued -> failed | expired | cancelled       (never started)
 *   running -> queued                            (housekeeping: its worker vanished)
 *
 * A final state never changes. Transitions are applied atomically by the
 * store (maas_kv_job_transition) from a set of allowed states, MAAS_JOB_FROM().
 */
#ifndef MAAS_JOB_STATE_H
#define MAAS_JOB_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "maas/names.h"

typedef enum maas_job_state {
    MAAS_JOB_UNKNOWN = 0, /* no record: never submitted, or its TTL ran out */
    MAAS_JOB_QUEUED,
    MAAS_JOB_RUNNING,
    MAAS_JOB_SUCCEEDED,
    MAAS_JOB_FAILED,
    MAAS_JOB_EXPIRED,
    MAAS_JOB_CANCELLED,
    MAAS_JOB__COUNT
} maas_job_state;

#define MAAS_JOB_FINAL(s)                                                                          \
    ((s) == MAAS_JOB_SUCCEEDED || (s) == MAAS_JOB_FAILED || (s) == MAAS_JOB_EXPIRED ||             \
     (s) == MAAS_JOB_CANCELLED)

/* The bit of state s in a set of allowed "from" states. */
#define MAAS_JOB_FROM(s) (1u << (s))

/* How long a record (and a work job's stored message) lives by default: 7 days. */
#define MAAS_JOB_TTL_DEFAULT_S (7 * 86400)

const char *maas_job_state_name(maas_job_state s);
maas_job_state maas_job_state_from_name(const char *name);

/* One job's cost, as a final record carries it (field "cost", JSON; maas/cost.h). */
typedef struct maas_job_cost {
    double cpu_s;      /* CPU time of the thread that computed it (its share of a batch's) */
    double queue_s;    /* wall: created -> taken by a worker */
    double compute_s;  /* wall: the computation it was part of (a batch's forward pass) */
    double flops;      /* operations its layers performed (counted as maas/cost.h says) */
    double peak_bytes; /* the job's buffers at their largest, counted from the shapes */
    double energy_j;   /* cpu_s x watts */
    double watts;      /* per busy core, measured or configured */
    char method[8];    /* "rapl" or "model"; "" when nothing was computed (energy 0) */
} maas_job_cost;

/* A job record as stored (one JSON object in Redis). Strings are "" when unset. */
typedef struct maas_job_record {
    char id[MAAS_NAME_MAX + 1];
    char type[16]; /* train, infer, evaluate, optimize */
    char model[2 * MAAS_NAME_MAX + 2];
    maas_job_state state;
    int attempts;
    char worker[MAAS_NAME_MAX + 1];
    int64_t created_ms, started_ms, finished_ms, heartbeat_ms, deadline_ms;
    char error_code[32];
    char error_message[512];
    char *progress;        /* JSON text or NULL; owned */
    unsigned char *result; /* msgpack bytes or NULL; owned */
    size_t result_len;
    int cancel_requested;
    char digest[65]; /* SHA-256 (hex) of the job's message: a message must match to act on it */
    int has_cost;    /* a final record written by a worker (or a cancel) carries one */
    maas_job_cost cost;
} maas_job_record;

/* Frees what a record owns (progress, result); the struct itself is the caller's. */
void maas_job_record_release(maas_job_record *r);

#endif
