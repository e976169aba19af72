/* strbuf.h - a growing text buffer for building responses (JSON, Prometheus text). */
#ifndef MAAS_STRBUF_H
#define MAAS_STRBUF_H

#include <stddef.h>

/* Start from {0}; p is malloc'ed and NUL-terminated once anything was added (free() it).
 * On allocation failure the text stops growing and oom is set. */
typedef struct maas_strbuf {
    char *p;
    size_t len, cap;
    int oom;
} maas_strbuf;

/* Appends n bytes of s (no formatting: the fast path for built-up text). */
void maas_strbuf_put(maas_strbuf *b, const char *s, size_t n);

/* Appends printf-style text. */
void maas_strbuf_printf(maas_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
