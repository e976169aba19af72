/*
 * names.h - the rules for names: job ids, model names, aliases, datasets,
 * sweep ids. A neutral leaf: the codec, the adapters and the programs check
 * names here without depending on each other.
 *
 * A name is 1..MAAS_NAME_MAX characters of [A-Za-z0-9._-], which keeps it out
 * of Redis's hash-tag syntax and of any key or topic separator.
 */
#ifndef MAAS_NAMES_H
#define MAAS_NAMES_H

#include <stddef.h>

#include "maas/err.h"

#define MAAS_NAME_MAX 128

/* Checks name against the rules; MAAS_ERR_INVALID_ARGUMENT with a message naming `what` otherwise.
 */
maas_err maas_name_check(const char *what, const char *name, char *errstr, size_t errstr_size);

/*
 * A tenant name: 1..MAAS_TENANT_MAX characters of [a-z0-9_-], starting with a
 * letter or digit. Narrower than a name because it is a component of Redis key
 * prefixes (maas:t:TENANT:), Kafka topic prefixes (maas.t.TENANT.) and ACL
 * patterns over both: no '.', ':' or upper case, so no tenant's prefix is
 * another's.
 */
#define MAAS_TENANT_MAX 32
maas_err maas_tenant_check(const char *tenant, char *errstr, size_t errstr_size);

/* A fresh name: 128 random bits as 32 hex digits (a job id nobody chose). */
void maas_name_random(char out[33]);

#endif
