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

/*
 * The codes, in one list: the enum (MAAS_ERR_<NAME>) and the wire names
 * maas_err_code() returns ("<NAME>") both come from it, so they cannot
 * differ. Append only: the numbers are stable within a build (the h5
 * loader's child reports them over a pipe).
 */
#define MAAS_ERRORS(X)                                                                             \
    X(INVALID_ARGUMENT)   /* an argument or setting is invalid */                                  \
    X(UNKNOWN_NAME)       /* an unknown name: activation, loss, optimizer, layer, model */         \
    X(SHAPE_MISMATCH)     /* shapes do not fit together */                                         \
    X(NON_FINITE)         /* NaN or Inf in data, labels or weights */                              \
    X(EMPTY)              /* zero rows where some are needed */                                    \
    X(LABEL_OUT_OF_RANGE) /* a label outside its allowed range */                                  \
    X(LIMIT_EXCEEDED)     /* a size beyond the documented limits */                                \
    X(OUT_OF_MEMORY)      /* allocation failed */                                                  \
    X(IO)                 /* reading or writing a file failed */                                   \
    X(BAD_FORMAT)         /* a malformed file or message */                                        \
    X(CANCELLED)          /* the caller asked to stop */                                           \
    X(DIVERGED)           /* training produced a non-finite loss */                                \
    X(UNAVAILABLE)        /* Kafka or Redis cannot be reached: retry later */                      \
    X(TIMEOUT)            /* a deadline passed */                                                  \
    X(CONFLICT)           /* the state changed under us (e.g. an alias moved); retry */            \
    X(UNSUPPORTED)        /* a valid request this build cannot carry out yet */                    \
    X(SERVER_ERROR)       /* a store's own error (a key of the wrong type, out of memory, a        \
                             script error): permanent for this request */                          \
    X(MISMATCH)           /* a message that does not match the job record it names */              \
    X(UNAUTHENTICATED)    /* no credential, or one that is wrong, malformed or revoked */          \
    X(FORBIDDEN)          /* a valid credential without the scope the request needs */

typedef enum maas_err {
    MAAS_OK = 0,
#define MAAS_ERR_ENUM(name) MAAS_ERR_##name,
    MAAS_ERRORS(MAAS_ERR_ENUM)
#undef MAAS_ERR_ENUM
        MAAS_ERR__COUNT
} maas_err;

/*
 * Retriable errors mean "back off and try again without giving up the job"
 * (UNAVAILABLE, TIMEOUT, CONFLICT); every other code is permanent for the input
 * that caused it. OUT_OF_MEMORY is permanent: an allocation sized by a job that
 * fails would fail again on every retry (a job that cannot be afforded fails
 * alone; it must never stall the jobs behind it).
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
