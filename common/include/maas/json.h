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
 * A request body parsed once (the HTTP API): an object whose members are read,
 * dropped, set and handed to the codec without parsing the text again.
 * Nesting is bounded (LIMIT_EXCEEDED); not an object is BAD_FORMAT.
 */
typedef struct maas_json maas_json;

maas_err maas_json_parse_object(const char *text, size_t len, maas_json **doc, char *errstr,
                                size_t errstr_size);
/* Frees a document (and what it owns). NULL is fine. */
void maas_json_free(maas_json *doc);

/* Whether key is a member. */
int maas_json_has(const maas_json *doc, const char *key);
/* A member that is a string: 1 and *s (borrowed from doc); 0 when absent or not a string. */
int maas_json_string(const maas_json *doc, const char *key, const char **s);
/* A member that is a number: 1 and *v; 0 when absent or not a number. */
int maas_json_number(const maas_json *doc, const char *key, double *v);

/* A member (any type) as compact JSON text, malloc'ed (free() it); NULL when absent. */
char *maas_json_member_text(const maas_json *doc, const char *key);

/* Removes members (absent ones are fine). */
void maas_json_drop(maas_json *doc, const char *const *keys, int n);
/* Sets (adds or replaces) a member to a string or a number. */
maas_err maas_json_set_string(maas_json *doc, const char *key, const char *value, char *errstr,
                              size_t errstr_size);
maas_err maas_json_set_number(maas_json *doc, const char *key, double value, char *errstr,
                              size_t errstr_size);
/* Takes a member that is an object out of doc as a document of its own (*out, to free);
 * *out NULL when absent; BAD_FORMAT when it is not an object. */
maas_err maas_json_take_object(maas_json *doc, const char *key, maas_json **out, char *errstr,
                               size_t errstr_size);

/*
 * A member that is a list: numbers into nums, or (nums NULL) strings into strs,
 * max entries of str_size bytes each. Absent: *n = 0.
 */
maas_err maas_json_list(const maas_json *doc, const char *key, double *nums, char *strs,
                        size_t str_size, int max, int *n, char *errstr, size_t errstr_size);

/* The document as msgpack (the protocol's JSON view, as maas_json_to_msgpack). */
maas_err maas_json_doc_to_msgpack(const maas_json *doc, unsigned char **out, size_t *out_len,
                                  char *errstr, size_t errstr_size);

#endif
