/* digest.h - content hashes (OpenSSL's libcrypto; digest_openssl.c is its one adapter). */
#ifndef MAAS_DIGEST_H
#define MAAS_DIGEST_H

#include <stddef.h>

/* SHA-256 of data as 64 lowercase hex digits plus NUL into hex[65]. */
void maas_sha256_hex(const void *data, size_t len, char hex[65]);

/* 1 when a[0..n) equals b[0..n), in time that does not depend on where they differ. */
int maas_digest_equal(const void *a, const void *b, size_t n);

#endif
