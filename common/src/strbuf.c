#include "maas/base.h"
#include "maas/strbuf.h"

void maas_strbuf_put(maas_strbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void maas_strbuf_printf(maas_strbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || b->oom) return;
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = (b->len + (size_t)n + 1) * 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* 10^k for 0 <= k <= 22: exact in a double. */
static double pow10_exact(int k) {
    static const double t[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                               1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                               1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    return t[k];
}

/* Writes the decimal digits of u (at least one) at p; returns how many. */
static int put_u64(char *p, uint64_t u) {
    char r[24];
    int n = 0;
    do r[n++] = (char)('0' + u % 10);
    while (u /= 10);
    for (int i = 0; i < n; i++) p[i] = r[n - 1 - i];
    return n;
}

int maas_fmt_i64(char *out, long long v) {
    int n = 0;
    if (v < 0) out[n++] = '-';
    n += put_u64(out + n, v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v);
    out[n] = '\0';
    return n;
}

int maas_fmt_g(char *out, double v, int sig) {
    char *p = out;
    if (!isfinite(v) || v == 0) {
        out[0] = '0', out[1] = '\0';
        return 1;
    }
    if (sig < 1) sig = 1;
    if (sig > 15) sig = 15;
    if (v < 0) *p++ = '-', v = -v;
    int e = (int)floor(log10(v));
    if (e < -280 || e > 280) /* far from anything measured: printf's own way */
        return (int)(p - out) + snprintf(p, MAAS_NUM_MAX - 1, "%.*g", sig, v);
    uint64_t lo = (uint64_t)pow10_exact(sig - 1), hi = (uint64_t)pow10_exact(sig), d = 0;
    for (int tries = 0; tries < 3; tries++) { /* log10 may be one off at a power of ten */
        int k = sig - 1 - e;
        double m = k >= 0 ? (k <= 22 ? v * pow10_exact(k) : v * pow(10.0, k))
                          : (-k <= 22 ? v / pow10_exact(-k) : v / pow(10.0, -k));
        d = (uint64_t)rint(m); /* ties to even, as printf */
        if (d >= hi) {
            e++;
            continue;
        }
        if (d < lo) {
            e--;
            continue;
        }
        break;
    }
    if (d >= hi) d = hi / 10, e++; /* rounded up to the next power of ten */
    char dig[24];
    int n = put_u64(dig, d), used = n;
    while (used > 1 && dig[used - 1] == '0') used--; /* the significant ones */
    if (e < -4 || e >= sig) {                        /* d.ddde+XX */
        *p++ = dig[0];
        if (used > 1) {
            *p++ = '.';
            memcpy(p, dig + 1, (size_t)used - 1);
            p += used - 1;
        }
        *p++ = 'e';
        *p++ = e < 0 ? '-' : '+';
        int x = e < 0 ? -e : e;
        if (x < 10) *p++ = '0';
        p += put_u64(p, (uint64_t)x);
    } else if (e >= 0) { /* ddd.ddd: the integer digits whatever their zeros */
        memcpy(p, dig, (size_t)e + 1);
        p += e + 1;
        if (used > e + 1) {
            *p++ = '.';
            memcpy(p, dig + e + 1, (size_t)(used - e - 1));
            p += used - e - 1;
        }
    } else { /* 0.000ddd */
        *p++ = '0';
        *p++ = '.';
        for (int z = 0; z < -e - 1; z++) *p++ = '0';
        memcpy(p, dig, (size_t)used);
        p += used;
    }
    *p = '\0';
    return (int)(p - out);
}

int maas_fmt_fixed(char *out, double v, int decimals) {
    if (decimals < 0) decimals = 0;
    if (decimals > 6) decimals = 6;
    if (!isfinite(v) || fabs(v) >= 1e15) return maas_fmt_g(out, v, 15);
    char *p = out;
    if (v < 0) *p++ = '-', v = -v;
    uint64_t scale = (uint64_t)pow10_exact(decimals), u = (uint64_t)rint(v * (double)scale);
    if (u == 0 && p != out) p--; /* no "-0" */
    p += put_u64(p, u / scale);
    uint64_t frac = u % scale;
    if (frac) {
        char f[8];
        for (int i = decimals - 1; i >= 0; i--) f[i] = (char)('0' + frac % 10), frac /= 10;
        int used = decimals;
        while (used > 0 && f[used - 1] == '0') used--;
        *p++ = '.';
        memcpy(p, f, (size_t)used);
        p += used;
    }
    *p = '\0';
    return (int)(p - out);
}
