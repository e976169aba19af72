/*
 * json.h - the JSON helpers the programs use (implemented with cJSON in
 * keras_json.c, the one file that includes it): the protocol's JSON view to
 * msgpack, for the codec to validate, and small reads and edits of a JSON
 * object body (the HTTP API's requests).
 */
#ifndef MAAS_JSON_H
#define MAAS_JSON_H

#include <stddef.h>

#include "maas/err.h"

/*
 * The protocol's JSON view -> msgpack bytes (for the codec to validate): objects,
 * arrays, strings, numbers (integral ones as integers), booleans, null; inside a
 * matrix object (one with "shape"), a "data" string is base64 and becomes bin.
 * *out: malloc'ed. Errors: BAD_FORMAT (not JSON, bad base64), LIMIT_EXCEEDED.
 */
maas_err maas_json_to_msgpack(const char *json, size_t len, unsigned char **out, size_t *out_len,
                              char *errstr, size_t errstr_size);

/*
 * Small edits of a JSON object body (the HTTP API's requests): the top-level
 * value of key as compact JSON text (strings keep their quotes) into *value
 * (malloc'ed; NULL when absent), and the object without `keys` with `prefix`
 * members (already JSON, e.g. "\"v\": 1, \"type\": \"infer\"") put first.
 */
maas_err maas_json_get(const char *json, size_t len, const char *key, char **value, char *errstr,
                       size_t errstr_size);
maas_err maas_json_rewrite(const char *json, size_t len, const char *const *drop, int n_drop,
                           const char *prefix, char **out, char *errstr, size_t errstr_size);

/*
 * A top-level list member of a JSON object: numbers into nums, or (nums NULL)
 * strings into strs, max entries of str_size bytes each. Absent: *n = 0.
 */
maas_err maas_json_list(const char *json, size_t len, const char *key, double *nums, char *strs,
                        size_t str_size, int max, int *n, char *errstr, size_t errstr_size);

#endif
