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

/* Numbers as JSON text, without printf: glibc formats a double with multi-precision
 * arithmetic (~0.3 us each), and a worker writes several per job. out holds at least
 * MAAS_NUM_MAX bytes; each returns the length written (NUL-terminated).
 * maas_fmt_g: v with at most sig (1..15) significant digits in the notation %g picks
 *   (exponent below -4 or at least sig: d.ddde-05), trailing zeros dropped; the last digit
 *   may differ from printf's in a tie. A non-finite v is written as 0.
 * maas_fmt_fixed: v rounded to decimals (0..6) places, trailing zeros dropped ("1.5" for
 *   %.3f's "1.500"); |v| of 1e15 and over (or non-finite) as maas_fmt_g with 15 digits. */
#define MAAS_NUM_MAX 32
int maas_fmt_g(char *out, double v, int sig);
/* v in decimal (at most 20 characters and the NUL: 24 bytes do). */
int maas_fmt_i64(char *out, long long v);
int maas_fmt_fixed(char *out, double v, int decimals);

#endif
