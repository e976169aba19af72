/* Name rules (see names.h). */
#include "maas/base.h"
#include "maas/names.h"

maas_err maas_name_check(const char *what, const char *name, char *errstr, size_t errstr_size) {
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > MAAS_NAME_MAX)
        return maas_errf(errstr, errstr_size, MAAS_ERR_ARG, "%s must be 1..%d characters", what,
                         MAAS_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return maas_errf(errstr, errstr_size, MAAS_ERR_ARG,
                             "%s '%s' may use only letters, digits, '.', '_' and '-'", what, name);
    }
    return MAAS_OK;
}
