#include "maas/base.h"
#include "maas/err.h"

static const char *const err_codes[MAAS_ERR__COUNT] = {[MAAS_OK] = "OK",
#define MAAS_ERR_NAME(name) [MAAS_ERR_##name] = #name,
                                                       MAAS_ERRORS(MAAS_ERR_NAME)
#undef MAAS_ERR_NAME
};

int maas_err_retriable(maas_err err) {
    return err == MAAS_ERR_UNAVAILABLE || err == MAAS_ERR_TIMEOUT || err == MAAS_ERR_CONFLICT;
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
