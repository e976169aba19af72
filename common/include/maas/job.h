/*
 * job.h - the job protocol: messages clients put on Kafka and results workers
 * write to Redis, as msgpack maps (schemas/protocol.md and the JSON Schemas beside it).
 *
 * The codec (codec_msgpack.c, the only file that includes msgpack.h) does no
 * I/O: bytes in, struct out; struct in, bytes out. Decoding checks every field
 * against the limits below and fails with a message naming the field
 * ("field inputs.data: expected 3200 bytes (100 x 8 float32), got 3196").
 */
#ifndef MAAS_JOB_H
#define MAAS_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "maas/err.h"
#include "maas/job_state.h" /* maas_job_record */
#include "maas/names.h"
#include "maas/model.h"
#include "maas/train.h"

#define MAAS_PROTOCOL_VERSION 1
#define MAAS_MSG_MAX_BYTES ((size_t)64 << 20) /* one message; larger data goes in datasets */
/* A stored dataset (maas_dataset_encode): under Redis's default proto-max-bulk-len (512 MB) */
#define MAAS_DATASET_MAX_BYTES ((size_t)500 << 20)
#define MAAS_MSG_MAX_DEPTH 16
#define MAAS_MSG_MAX_OBJECTS ((size_t)4 << 20) /* msgpack objects in one message */
#define MAAS_MSG_MAX_ROWS (1u << 24)
#define MAAS_MSG_MAX_TEXT ((size_t)1 << 20) /* a keras_config */

typedef enum maas_job_type {
    MAAS_JOBTYPE_NONE = 0,
    MAAS_JOBTYPE_TRAIN,
    MAAS_JOBTYPE_INFER,
    MAAS_JOBTYPE_EVALUATE,
    MAAS_JOBTYPE_OPTIMIZE,
} maas_job_type;

const char *maas_job_type_name(maas_job_type t);

/* A dense float32 matrix, row-major. data is owned by whoever holds the matrix. */
#define MAAS_MATRIX_MAX_RANK 4 /* a shape's dimensions: rows and up to 3 per row */

typedef struct maas_matrix {
    uint32_t rows, cols;
    float *data;
    /* A shape with more than two dimensions ([rows, h, w, c]: images for a convolution) gives
     * each row's dimensions here (their product is cols, row-major, channels last); 0: rows
     * of cols values. */
    int sample_rank; /* 0, or 2..MAAS_MATRIX_MAX_RANK - 1 */
    uint32_t sample[MAAS_MATRIX_MAX_RANK - 1];
} maas_matrix;

/* "name" (latest), "name:7" (version 7) or "name@production" (an alias). */
typedef struct maas_model_ref {
    char name[MAAS_NAME_MAX + 1];
    char ref[MAAS_NAME_MAX + 1]; /* "latest", "7", "production" */
} maas_model_ref;

maas_err maas_model_ref_parse(const char *text, maas_model_ref *out, char *errstr,
                              size_t errstr_size);
/* Formats back to the canonical text ("name", "name:7", "name@alias"). */
void maas_model_ref_format(const maas_model_ref *r, char *out, size_t size);

/* Training or evaluation data: inline x and y, or a dataset stored in Redis. */
typedef struct maas_data {
    maas_matrix x, y;
    char dataset[MAAS_NAME_MAX + 1]; /* "" when inline */
} maas_data;

typedef struct maas_train_spec {
    int n_layers;
    maas_layer_spec layers[MAAS_MAX_LAYERS];
    int from_keras;         /* the layers came from a keras_config */
    char *keras_config;     /* the JSON as sent, or NULL; owned */
    maas_compile compile;   /* loss, optimizer, accuracy */
    int epochs, batch_size; /* defaults 10, 32 */
    float validation_split;
    int shuffle, standardize;
    int has_seed;
    uint64_t seed;
    int early_stopping;
    char monitor[32];
    int patience;
    float min_delta;
    int restore_best;
    int has_from; /* fine-tune: start from this version's weights */
    maas_model_ref from;
} maas_train_spec;

typedef struct maas_optimize_spec {
    maas_quant_kind quantize; /* MAAS_QUANT_NONE: no quantization */
    float prune;              /* target sparsity, 0 = none */
    int finetune_epochs;
} maas_optimize_spec;

typedef struct maas_job {
    int v;
    char id[MAAS_NAME_MAX + 1];
    maas_job_type type;
    maas_model_ref model;
    int64_t created_ms;
    int64_t deadline_ms; /* 0 = none */
    int ttl_s;           /* result TTL, 0 = the cluster's default */
    int priority;        /* 0..9, default 5 */
    int notify;          /* push the final state onto the job's :done list (BLMOVE waiters) */
    /* infer */
    maas_matrix inputs;
    int want_classes;
    int explain;          /* 0: none; else 1 + a maas_explain_method (maas/explain.h) */
    int explain_steps;    /* integrated_gradients' steps (default 64) */
    maas_matrix baseline; /* its baseline: 1 x inputs.cols raw features, or rows 0 (zeros) */
    /* train / evaluate / optimize */
    maas_data data;
    maas_train_spec train;
    maas_optimize_spec optimize;
} maas_job;

/* The fields of a job's record that the job itself fixes (id, type, model, times). */
void maas_job_record_of(const maas_job *j, maas_job_record *r);

/* The same plus the digest of its message (msg may be NULL with len 0): what binds the
 * record to that message (a message naming the record must match it to act on it). */
void maas_job_record_of_message(const maas_job *j, const void *msg, size_t len, maas_job_record *r);

/* Sets defaults (v, priority 5, epochs 10, batch 32, shuffle, adam...). */
void maas_job_init(maas_job *j, maas_job_type type);
void maas_job_release(maas_job *j);

/*
 * Decodes and validates one job message. On error, out->id holds the job id
 * if it was readable (so a failed result can still be written for it) and the
 * rest of out is released. Trailing bytes after the map are an error.
 */
maas_err maas_job_decode(const void *buf, size_t len, maas_job *out, char *errstr,
                         size_t errstr_size);

/*
 * The same from the protocol's JSON view (what the HTTP API takes): converted to
 * msgpack, then decoded and validated exactly as a Kafka message is.
 */
maas_err maas_job_decode_json(const char *json, size_t len, maas_job *out, char *errstr,
                              size_t errstr_size);
/* The same from a body parsed once (maas/json.h): nothing is parsed again. */
struct maas_json;
maas_err maas_job_decode_json_doc(const struct maas_json *doc, maas_job *out, char *errstr,
                                  size_t errstr_size);

/* Encodes a job. *buf: malloc'ed, free with free(). */
maas_err maas_job_encode(const maas_job *j, unsigned char **buf, size_t *len, char *errstr,
                         size_t errstr_size);

/* A dataset blob (stored in Redis by name): the msgpack map {"x": matrix, "y": matrix}, up to
 * MAAS_DATASET_MAX_BYTES (LIMIT_EXCEEDED past it). */
maas_err maas_dataset_encode(const maas_matrix *x, const maas_matrix *y, unsigned char **buf,
                             size_t *len, char *errstr, size_t errstr_size);
/* Fills data->x and data->y (owned by data; free with maas_job_release on the job, or each). */
maas_err maas_dataset_decode(const void *buf, size_t len, maas_data *data, char *errstr,
                             size_t errstr_size);
void maas_matrix_release(maas_matrix *m);

/*
 * Whether x's rows are what m takes: n_inputs values each and, when x was given with more
 * than two dimensions, each row shaped as the model's input (maas_model_input_shape: a
 * Keras model's input shape, or the leading Reshape of a --layers model). SHAPE_MISMATCH
 * names field ("inputs", "data.x") and both shapes. model names the model in the message.
 */
maas_err maas_matrix_check_rows(const maas_matrix *x, const maas_model *m, const char *field,
                                const char *model, char *errstr, size_t errstr_size);

/* ---- results (the job record's `result` field) ---- */

typedef struct maas_history_entry {
    int epoch;
    double loss, accuracy, val_loss, val_accuracy; /* NaN when not tracked */
} maas_history_entry;

typedef struct maas_result {
    int v;
    maas_job_type type;
    char model[MAAS_NAME_MAX + 1];
    int version;
    /* infer */
    maas_matrix outputs;
    int32_t *classes; /* outputs.rows entries or NULL; owned */
    /* explained inference: rows x (outputs x features), row r's attributions of output j to
     * feature i at column j * features + i; rows 0 when not asked */
    maas_matrix attributions;
    /* train / evaluate / optimize */
    size_t rows;
    double loss, accuracy; /* NaN when not tracked */
    int n_history;
    maas_history_entry *history; /* owned */
    int created;                 /* train: a new version was made (0 on a redelivery) */
} maas_result;

void maas_result_init(maas_result *r, maas_job_type type);
void maas_result_release(maas_result *r);
maas_err maas_result_encode(const maas_result *r, unsigned char **buf, size_t *len, char *errstr,
                            size_t errstr_size);
maas_err maas_result_decode(const void *buf, size_t len, maas_result *out, char *errstr,
                            size_t errstr_size);

#endif
