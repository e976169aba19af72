/* digest.h - content hashes (OpenSSL's libcrypto; digest_openssl.c is its one adapter). */
#ifndef MAAS_DIGEST_H
#define MAAS_DIGEST_H

#include <stddef.h>

/* SHA-256 of data as 64 lowercase hex digits plus NUL into hex[65]. */
void maas_sha256_hex(const void *data, size_t len, char hex[65]);

#endif
