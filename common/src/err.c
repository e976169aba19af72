#include "maas/base.h"
#include "maas/err.h"

static const char *const err_codes[MAAS_ERR__COUNT] = {
    [MAAS_OK] = "OK",
    [MAAS_ERR_ARG] = "INVALID_ARGUMENT",
    [MAAS_ERR_UNKNOWN] = "UNKNOWN_NAME",
    [MAAS_ERR_SHAPE] = "SHAPE_MISMATCH",
    [MAAS_ERR_NONFINITE] = "NON_FINITE",
    [MAAS_ERR_EMPTY] = "EMPTY",
    [MAAS_ERR_LABEL] = "LABEL_OUT_OF_RANGE",
    [MAAS_ERR_LIMIT] = "LIMIT_EXCEEDED",
    [MAAS_ERR_NOMEM] = "OUT_OF_MEMORY",
    [MAAS_ERR_IO] = "IO",
    [MAAS_ERR_FORMAT] = "BAD_FORMAT",
    [MAAS_ERR_CANCELLED] = "CANCELLED",
    [MAAS_ERR_DIVERGED] = "DIVERGED",
    [MAAS_ERR_UNAVAILABLE] = "UNAVAILABLE",
    [MAAS_ERR_TIMEOUT] = "TIMEOUT",
    [MAAS_ERR_CONFLICT] = "CONFLICT",
    [MAAS_ERR_UNSUPPORTED] = "UNSUPPORTED",
    [MAAS_ERR_SERVER] = "SERVER_ERROR",
};

int maas_err_retriable(maas_err err) {
    return err == MAAS_ERR_UNAVAILABLE || err == MAAS_ERR_TIMEOUT || err == MAAS_ERR_CONFLICT ||
           err == MAAS_ERR_NOMEM;
}

const char *maas_err_code(maas_err err) {
    if ((int)err < 0 || err >= MAAS_ERR__COUNT) return "UNKNOWN_ERROR";
    return err_codes[err];
}

maas_err maas_errf(char *errstr, size_t size, maas_err err, const char *fmt, ...) {
    if (errstr && size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, size, fmt, ap);
        va_end(ap);
    }
    return err;
}
