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
