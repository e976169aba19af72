/*
 * keras_json.h - JSON, private to common/: Keras model_config and
 * training_config, and the protocol's JSON view. keras_json.c is the only file
 * that includes cJSON.
 */
#ifndef MAAS_KERAS_JSON_H
#define MAAS_KERAS_JSON_H

#include "maas/model.h"
#include "maas/train.h"

/* A Sequential architecture as read from model_config. */
typedef struct maas_keras_arch {
    char name[64];
    int n_inputs; /* 0 when the config does not say (then: the first kernel's rows) */
    int n_layers;
    maas_layer_spec layers[MAAS_MAX_LAYERS];
    /* A leading Normalization layer (feature standardization). */
    int norm;
    char norm_name[MAAS_LAYER_NAME_MAX];
    int n_norm;       /* entries in norm_mean/norm_var (1 = broadcast scalar) */
    float *norm_mean; /* owned; NULL when the statistics are weights in the file */
    float *norm_var;
} maas_keras_arch;

maas_err maas__keras_arch_parse(const char *json, size_t len, maas_keras_arch *a, char *errstr,
                                size_t errstr_size);
void maas__keras_arch_release(maas_keras_arch *a);

/* model_config JSON for m (tf.keras 2.x dialect) into *out (free with free()). */
maas_err maas__keras_arch_write(const maas_model *m, const char *norm_name, char **out,
                                char *errstr, size_t errstr_size);

maas_err maas__keras_training_parse(const char *json, size_t len, maas_compile *c, char *errstr,
                                    size_t errstr_size);
/* training_config JSON for c into *out (free with free()). */
maas_err maas__keras_training_write(const maas_compile *c, char **out, char *errstr,
                                    size_t errstr_size);

/*
 * The protocol's JSON view -> msgpack bytes (for the codec to validate): objects,
 * arrays, strings, numbers (integral ones as integers), booleans, null; inside a
 * matrix object (one with "shape"), a "data" string is base64 and becomes bin.
 * *out: malloc'ed. Errors: BAD_FORMAT (not JSON, bad base64), LIMIT_EXCEEDED.
 */
maas_err maas__json_to_msgpack(const char *json, size_t len, unsigned char **out, size_t *out_len,
                               char *errstr, size_t errstr_size);

/*
 * Small edits of a JSON object body (the HTTP API's requests): the top-level
 * value of key as compact JSON text (strings keep their quotes) into *value
 * (malloc'ed; NULL when absent), and the object without `keys` with `prefix`
 * members (already JSON, e.g. "\"v\": 1, \"type\": \"infer\"") put first.
 */
maas_err maas__json_get(const char *json, size_t len, const char *key, char **value, char *errstr,
                        size_t errstr_size);
maas_err maas__json_rewrite(const char *json, size_t len, const char *const *drop, int n_drop,
                            const char *prefix, char **out, char *errstr, size_t errstr_size);

/*
 * A top-level list member of a JSON object: numbers into nums, or (nums NULL)
 * strings into strs, max entries of str_size bytes each. Absent: *n = 0.
 */
maas_err maas__json_list(const char *json, size_t len, const char *key, double *nums, char *strs,
                         size_t str_size, int max, int *n, char *errstr, size_t errstr_size);

#endif
