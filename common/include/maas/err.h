/*
 * err.h - error codes shared by every maas module.
 *
 * Fallible functions return a maas_err and, when given one, fill a caller's
 * errstr buffer with a lowercase message that says what failed. Constructors
 * return NULL and fill errstr. Codes are stable: they reach job records and
 * clients as the upper-case names returned by maas_err_code().
 */
#ifndef MAAS_ERR_H
#define MAAS_ERR_H

#include <stddef.h>

typedef enum maas_err {
    MAAS_OK = 0,
    MAAS_ERR_ARG,         /* an argument or setting is invalid */
    MAAS_ERR_UNKNOWN,     /* an unknown name: activation, loss, optimizer, layer */
    MAAS_ERR_SHAPE,       /* shapes do not fit together */
    MAAS_ERR_NONFINITE,   /* NaN or Inf in data, labels or weights */
    MAAS_ERR_EMPTY,       /* zero rows where some are needed */
    MAAS_ERR_LABEL,       /* a label outside its allowed range */
    MAAS_ERR_LIMIT,       /* a size beyond the documented limits */
    MAAS_ERR_NOMEM,       /* allocation failed */
    MAAS_ERR_IO,          /* reading or writing a file failed */
    MAAS_ERR_FORMAT,      /* a malformed file or message */
    MAAS_ERR_CANCELLED,   /* the caller asked to stop */
    MAAS_ERR_DIVERGED,    /* training produced a non-finite loss */
    MAAS_ERR_UNAVAILABLE, /* Kafka or Redis cannot be reached: retry later */
    MAAS_ERR_TIMEOUT,     /* a deadline passed */
    MAAS_ERR_CONFLICT,    /* the state changed under us (e.g. an alias moved); retry */
    MAAS_ERR_UNSUPPORTED, /* a valid request this build cannot carry out yet */
    MAAS_ERR_SERVER,      /* a store answered with an error of its own (a key of the wrong type,
                             out of memory, a script error): permanent for this request */
    MAAS_ERR__COUNT
} maas_err;

/*
 * Retriable errors mean "back off and try again without giving up the job"
 * (UNAVAILABLE, TIMEOUT, CONFLICT, NOMEM); every other code is permanent for
 * the input that caused it.
 */
int maas_err_retriable(maas_err err);

/* Recommended size of an errstr buffer. */
#define MAAS_ERRSTR_SIZE 256

/* Stable upper-case name of a code, e.g. "SHAPE". Never NULL. */
const char *maas_err_code(maas_err err);

/*
 * Formats a message into errstr (if errstr is non-NULL and size > 0) and
 * returns err, so callers can write `return maas_errf(...)`.
 */
maas_err maas_errf(char *errstr, size_t size, maas_err err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
