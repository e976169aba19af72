/* Name rules (see names.h). */
#include "maas/base.h"
#include "maas/names.h"

#include <sys/random.h>
#include <unistd.h>

#include "maas/clock.h"

maas_err maas_name_check(const char *what, const char *name, char *errstr, size_t errstr_size) {
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > MAAS_NAME_MAX)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "%s must be 1..%d characters", what, MAAS_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "%s '%s' may use only letters, digits, '.', '_' and '-'", what, name);
    }
    return MAAS_OK;
}

maas_err maas_tenant_check(const char *tenant, char *errstr, size_t errstr_size) {
    size_t n = tenant ? strlen(tenant) : 0;
    int ok = n >= 1 && n <= MAAS_TENANT_MAX && tenant[0] != '-' && tenant[0] != '_';
    for (size_t i = 0; ok && i < n; i++) {
        char c = tenant[i];
        ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    }
    if (!ok)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "tenant '%.40s': 1..%d of a-z 0-9 _ -, starting with a letter or digit",
                         tenant ? tenant : "", MAAS_TENANT_MAX);
    return MAAS_OK;
}

void maas_name_random(char out[33]) {
    unsigned char b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) { /* no entropy source: time and pid */
        uint64_t t = (uint64_t)maas_wall_ms() ^ ((uint64_t)getpid() << 40);
        for (int i = 0; i < 16; i++) b[i] = (unsigned char)(t >> (8 * (i % 8))) ^ (unsigned char)i;
    }
    for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
}
