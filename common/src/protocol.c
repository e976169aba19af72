/* Topic names and counts (the codec and key layout join this module later). */
#include "maas/base.h"
#include "maas/protocol.h"

static const maas_topic_def topics[] = {
    {MAAS_TOPIC_INFER, 6},
    {MAAS_TOPIC_WORK, 6},
    {MAAS_TOPIC_DLQ, 1},
};

const maas_topic_def *maas_topics(int *n) {
    *n = (int)MAAS_ARRAY_LEN(topics);
    return topics;
}

maas_err maas_topic_name(const char *prefix, const char *suffix, char *out, size_t size,
                         char *errstr, size_t errstr_size) {
    for (const char *p = prefix; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-'))
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "topic prefix '%s' may use only letters, digits, '.', '_' and '-'",
                             prefix);
    int n = snprintf(out, size, "%s%s", prefix, suffix);
    if (n < 0 || (size_t)n >= size || n > 200)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "topic prefix '%s' is too long", prefix);
    return MAAS_OK;
}

maas_err maas_tenant_topic_prefix(const char *prefix, const char *tenant, char *out, size_t size,
                                  char *errstr, size_t errstr_size) {
    if (tenant && *tenant) {
        maas_err err = maas_tenant_check(tenant, errstr, errstr_size);
        if (err) return err;
    }
    int n = tenant && *tenant ? snprintf(out, size, "%st.%s.", prefix, tenant)
                              : snprintf(out, size, "%s", prefix);
    if (n < 0 || (size_t)n >= size)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "topic prefix '%s' is too long", prefix);
    return MAAS_OK;
}

maas_err maas_topic_tenant(const char *prefix, const char *topic, char out[MAAS_TENANT_MAX + 1],
                           char *errstr, size_t errstr_size) {
    out[0] = '\0';
    size_t pl = strlen(prefix);
    if (strncmp(topic, prefix, pl))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "topic '%.200s' is not under the prefix '%s'", topic, prefix);
    const char *rest = topic + pl;
    if (strncmp(rest, "t.", 2)) return MAAS_OK; /* the single-tenant layout */
    const char *dot = strchr(rest + 2, '.');
    size_t n = dot ? (size_t)(dot - rest - 2) : 0;
    char t[MAAS_TENANT_MAX + 2];
    if (!dot || n == 0 || n > MAAS_TENANT_MAX)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "topic '%.200s': no tenant after '%st.'", topic, prefix);
    memcpy(t, rest + 2, n);
    t[n] = '\0';
    maas_err err = maas_tenant_check(t, errstr, errstr_size);
    if (!err) memcpy(out, t, n + 1);
    return err;
}

/* Appends s with the regex metacharacters that topic names can hold ('.') escaped. */
static size_t put_escaped(char *out, size_t at, size_t size, const char *s) {
    for (; *s && at + 2 < size; s++) {
        if (*s == '.') out[at++] = '\\';
        out[at++] = *s;
    }
    out[at < size ? at : size - 1] = '\0';
    return at;
}

maas_err maas_tenant_topic_pattern(const char *prefix, const char *suffix, char *out, size_t size,
                                   char *errstr, size_t errstr_size) {
    char check[256];
    maas_err err = maas_topic_name(prefix, suffix, check, sizeof(check), errstr, errstr_size);
    if (err) return err;
    if (size < 2 * strlen(check) + 64)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "pattern buffer too small");
    size_t at = 0;
    out[at++] = '^';
    at = put_escaped(out, at, size, prefix);
    /* no {m,n}: librdkafka may use its own small regex engine; the length is checked
     * per message (maas_topic_tenant) */
    at += (size_t)snprintf(out + at, size - at, "t\\.[a-z0-9][a-z0-9_-]*\\.");
    at = put_escaped(out, at, size, suffix);
    snprintf(out + at, size - at, "$");
    return MAAS_OK;
}
