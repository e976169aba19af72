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

void maas_name_random(char out[33]) {
    unsigned char b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) { /* no entropy source: time and pid */
        uint64_t t = (uint64_t)maas_wall_ms() ^ ((uint64_t)getpid() << 40);
        for (int i = 0; i < 16; i++) b[i] = (unsigned char)(t >> (8 * (i % 8))) ^ (unsigned char)i;
    }
    for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
}
