/*
 * The bf16 kernels: bf16 layers' packed weights and the bf16 x bf16 -> float32
 * product on AVX-512 BF16 (vdpbf16ps). See maas/bkernel.h. Where the CPU lacks
 * it, model.c runs bf16 layers on the float path instead (the same weights,
 * widened exactly), so there is no portable copy of this kernel.
 */
#include "maas/base.h"
#include "maas/bkernel.h"
#include "maas/cpu.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define MAAS_HAVE_BF16_KERNEL 1
#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#else
#define MAAS_HAVE_BF16_KERNEL 0
#endif

#define PANEL 4 /* blocks of 16 outputs per panel */

uint16_t maas_bf16_from_float(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) /* NaN: keep it one */
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u); /* nearest, ties to even (may round up to infinity) */
    return (uint16_t)(u >> 16);
}

float maas_bf16_to_float(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

/* ---------------------------------------------------------------- layers */

maas_bf16 *maas_bf16_new(int n_layers) {
    maas_bf16 *b = calloc(1, sizeof(*b));
    if (b && n_layers > 0) b->layers = calloc((size_t)n_layers, sizeof(maas_blayer));
    if (!b || (n_layers > 0 && !b->layers)) {
        free(b);
        return NULL;
    }
    b->n_layers = n_layers;
    return b;
}

void maas_bf16_free(maas_bf16 *b) {
    if (!b) return;
    for (int i = 0; i < b->n_layers; i++) free(b->layers[i].packed);
    free(b->layers);
    free(b);
}

static size_t packed_len(const maas_blayer *l) {
    return (size_t)l->kp * (size_t)l->nb * 32; /* uint16 entries */
}

/* Where output block jb's entry for pair p is: panels of PANEL blocks, the last narrower. */
static size_t packed_at(const maas_blayer *l, int p, int jb) {
    int panel = jb / PANEL, width = l->nb - panel * PANEL < PANEL ? l->nb - panel * PANEL : PANEL;
    return (size_t)l->kp * (size_t)panel * PANEL * 32 + (size_t)p * (size_t)width * 32 +
           (size_t)(jb % PANEL) * 32;
}

int maas_bf16_set_layer(maas_bf16 *b, int i, int n_in, int n_out, const float *w) {
    maas_blayer *l = &b->layers[i];
    free(l->packed);
    l->n_in = n_in;
    l->n_out = n_out;
    l->kp = (n_in + 1) / 2;
    l->nb = (n_out + 15) / 16;
    l->packed = calloc(packed_len(l), sizeof(uint16_t));
    if (!l->packed) return 0;
    for (int k = 0; k < n_in; k++)
        for (int j = 0; j < n_out; j++)
            l->packed[packed_at(l, k / 2, j / 16) + (size_t)(j % 16) * 2 + (size_t)(k % 2)] =
                maas_bf16_from_float(w[(size_t)k * n_out + j]);
    return 1;
}

maas_bf16 *maas_bf16_clone(const maas_bf16 *b) {
    if (!b) return NULL;
    maas_bf16 *c = maas_bf16_new(b->n_layers);
    for (int i = 0; c && i < b->n_layers; i++) {
        const maas_blayer *s = &b->layers[i];
        c->layers[i] = *s;
        if (!s->packed) continue;
        if (!(c->layers[i].packed = malloc(packed_len(s) * sizeof(uint16_t)))) {
            maas_bf16_free(c);
            return NULL;
        }
        memcpy(c->layers[i].packed, s->packed, packed_len(s) * sizeof(uint16_t));
    }
    return c;
}

int maas_bf16_available(void) {
    return MAAS_HAVE_BF16_KERNEL && maas_cpu_current() >= MAAS_CPU_AVX512_BF16;
}

const char *maas_bf16_kernel_name(void) {
    return maas_bf16_available() ? "avx512-bf16" : "float32";
}

/* ---------------------------------------------------------------- kernel */

#if MAAS_HAVE_BF16_KERNEL
/*
 * Register tiles of rows x 16-output blocks of float accumulators, written out
 * with named variables as the int8 tiles are (qkernel.c). Per pair of inputs:
 * one 64-byte load per block, one 32-bit broadcast of the row's bf16 pair,
 * rows x blocks vdpbf16ps.
 */
#define BCAST(r) ((__m512bh)_mm512_set1_epi32((int)x[(size_t)(r)*ldx + p]))
#define DP(c, xv, wv) c = _mm512_dpbf16_ps(c, xv, wv)
#define WLOAD(b) ((__m512bh)_mm512_loadu_si512((const void *)(wp + 32 * (b))))
#define DECL4(r)                                                                                   \
    __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = c##r##0, c##r##2 = c##r##0, c##r##3 = c##r##0
#define ROW4(r)                                                                                    \
    do {                                                                                           \
        __m512bh xv = BCAST(r);                                                                    \
        DP(c##r##0, xv, w0);                                                                       \
        DP(c##r##1, xv, w1);                                                                       \
        DP(c##r##2, xv, w2);                                                                       \
        DP(c##r##3, xv, w3);                                                                       \
    } while (0)

/* y block = acc + bias, then relu when asked; the last block of a layer masked to its outputs. */
BF16_TARGET static inline void put(float *y, __m512 acc, const float *bias, int relu, __mmask16 m) {
    if (bias) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(m, bias));
    if (relu) acc = _mm512_max_ps(acc, _mm512_setzero_ps()); /* v > 0 ? v : +0, as act.c */
    _mm512_mask_storeu_ps(y, m, acc);
}

/* Row r's 4 blocks (accumulators c<a>0..3) to yr, the 4th masked by m. */
#define STORE4M(yr, a, m)                                                                          \
    do {                                                                                           \
        put(yr, c##a##0, bias, relu, 0xffff);                                                      \
        put(yr + 16, c##a##1, bias ? bias + 16 : NULL, relu, 0xffff);                              \
        put(yr + 32, c##a##2, bias ? bias + 32 : NULL, relu, 0xffff);                              \
        put(yr + 48, c##a##3, bias ? bias + 48 : NULL, relu, m);                                   \
    } while (0)
#define STORE4(r) STORE4M(y + (size_t)(r)*ldy, r, last)

/* 4 rows x a full panel (4 blocks); last: the mask of the panel's 4th block. */
BF16_TARGET static void tile_4x4(const uint32_t *x, int ldx, const uint16_t *w, int kp,
                                 const float *bias, int relu, float *y, int ldy, __mmask16 last) {
    DECL4(0);
    DECL4(1);
    DECL4(2);
    DECL4(3);
    for (int p = 0; p < kp; p++) {
        const uint16_t *wp = w + (size_t)p * PANEL * 32;
        __m512bh w0 = WLOAD(0), w1 = WLOAD(1), w2 = WLOAD(2), w3 = WLOAD(3);
        ROW4(0);
        ROW4(1);
        ROW4(2);
        ROW4(3);
    }
    STORE4(0);
    STORE4(1);
    STORE4(2);
    STORE4(3);
}

/*
 * 1 row x a full panel, in the same order as tile_4x4 (one accumulator per block, pairs in
 * order): a row's result does not depend on the rows batched with it.
 */
BF16_TARGET static void tile_1x4(const uint32_t *x, int ldx, const uint16_t *w, int kp,
                                 const float *bias, int relu, float *y, int ldy, __mmask16 last) {
    DECL4(0);
    for (int p = 0; p < kp; p++) {
        const uint16_t *wp = w + (size_t)p * PANEL * 32;
        __m512bh w0 = WLOAD(0), w1 = WLOAD(1), w2 = WLOAD(2), w3 = WLOAD(3);
        ROW4(0);
    }
    STORE4(0);
}

/*
 * 1 row x two full panels side by side: twice the independent accumulators of tile_1x4 to
 * cover vdpbf16ps's latency, each output still summed in the same order.
 */
BF16_TARGET static void tile_1x8(const uint32_t *x, const uint16_t *wa, const uint16_t *wb, int kp,
                                 const float *bias, int relu, float *y, __mmask16 last) {
    int ldx = 0;
    DECL4(0);
    DECL4(1);
    for (int p = 0; p < kp; p++) {
        const uint16_t *wp = wa + (size_t)p * PANEL * 32;
        __m512bh w0 = WLOAD(0), w1 = WLOAD(1), w2 = WLOAD(2), w3 = WLOAD(3);
        wp = wb + (size_t)p * PANEL * 32;
        __m512bh v0 = WLOAD(0), v1 = WLOAD(1), v2 = WLOAD(2), v3 = WLOAD(3);
        __m512bh xv = BCAST(0);
        DP(c00, xv, w0);
        DP(c01, xv, w1);
        DP(c02, xv, w2);
        DP(c03, xv, w3);
        DP(c10, xv, v0);
        DP(c11, xv, v1);
        DP(c12, xv, v2);
        DP(c13, xv, v3);
    }
    STORE4M(y, 0, 0xffff);
    if (bias) bias += 64;
    STORE4M(y + 64, 1, last);
}

/* rows (1..4) x one block of a panel `width` blocks wide (a layer's last, narrower panel). */
BF16_TARGET static void tile_rx1(const uint32_t *x, int ldx, int rows, const uint16_t *w, int width,
                                 int kp, const float *bias, int relu, float *y, int ldy,
                                 __mmask16 m) {
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    size_t stride = (size_t)width * 32;
    for (int p = 0; p < kp; p++) {
        __m512bh wv = (__m512bh)_mm512_loadu_si512((const void *)(w + (size_t)p * stride));
        DP(c0, BCAST(0), wv);
        if (rows > 1) DP(c1, BCAST(1), wv);
        if (rows > 2) DP(c2, BCAST(2), wv);
        if (rows > 3) DP(c3, BCAST(3), wv);
    }
    put(y, c0, bias, relu, m);
    if (rows > 1) put(y + ldy, c1, bias, relu, m);
    if (rows > 2) put(y + 2 * (size_t)ldy, c2, bias, relu, m);
    if (rows > 3) put(y + 3 * (size_t)ldy, c3, bias, relu, m);
}

/* The inputs as bf16 pairs, nearest even: 32 floats per vcvtne2ps2bf16, the tail masked. */
BF16_TARGET static void to_pairs(const float *x, int ldx, int rows, int n_in, int kp,
                                 uint32_t *out) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * ldx;
        uint32_t *o = out + (size_t)r * kp;
        for (int i = 0; i < n_in; i += 32) {
            int left = n_in - i;
            __mmask16 lo = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
            __mmask16 hi = left >= 32   ? 0xffff
                           : left <= 16 ? 0
                                        : (__mmask16)((1u << (left - 16)) - 1);
            __m512 a = _mm512_maskz_loadu_ps(lo, xr + i);
            __m512 b = _mm512_maskz_loadu_ps(hi, xr + i + 16);
            __m512i v = (__m512i)_mm512_cvtne2ps_pbh(b, a);
            int pairs = kp - i / 2 < 16 ? kp - i / 2 : 16;
            _mm512_mask_storeu_epi32(o + i / 2, (__mmask16)((1u << pairs) - 1), v);
        }
    }
}

BF16_TARGET static void bgemm_avx512(const maas_blayer *l, const float *x, int ldx, int rows,
                                     const float *bias, int relu, float *y, int ldy, uint32_t *xb) {
    int kp = l->kp;
    to_pairs(x, ldx, rows, l->n_in, kp, xb);
    int tail = l->n_out % 16;
    __mmask16 end = tail ? (__mmask16)((1u << tail) - 1) : 0xffff;
    for (int jb = 0; jb < l->nb; jb += PANEL) {
        int width = l->nb - jb < PANEL ? l->nb - jb : PANEL;
        const uint16_t *w = l->packed + packed_at(l, 0, jb);
        const float *bj = bias ? bias + 16 * jb : NULL;
        if (width == PANEL) {
            __mmask16 last = jb + PANEL == l->nb ? end : 0xffff;
            int r = 0;
            /* a single row takes two panels at once where there are two */
            if (rows == 1 && jb + 2 * PANEL <= l->nb) {
                __mmask16 last2 = jb + 2 * PANEL == l->nb ? end : 0xffff;
                tile_1x8(xb, w, l->packed + packed_at(l, 0, jb + PANEL), kp, bj, relu, y + 16 * jb,
                         last2);
                jb += PANEL; /* the loop adds the other */
                continue;
            }
            for (; r + 4 <= rows; r += 4)
                tile_4x4(xb + (size_t)r * kp, kp, w, kp, bj, relu, y + (size_t)r * ldy + 16 * jb,
                         ldy, last);
            for (; r < rows; r++)
                tile_1x4(xb + (size_t)r * kp, kp, w, kp, bj, relu, y + (size_t)r * ldy + 16 * jb,
                         ldy, last);
            continue;
        }
        for (int b = 0; b < width; b++) {
            __mmask16 m = jb + b + 1 == l->nb ? end : 0xffff;
            for (int r = 0; r < rows; r += 4)
                tile_rx1(xb + (size_t)r * kp, kp, rows - r < 4 ? rows - r : 4, w + 32 * b, width,
                         kp, bj ? bj + 16 * b : NULL, relu, y + (size_t)r * ldy + 16 * (jb + b),
                         ldy, m);
        }
    }
}
#endif

void maas_bgemm(const maas_blayer *l, const float *x, int ldx, int rows, const float *bias,
                int relu, float *y, int ldy, uint32_t *scratch) {
#if MAAS_HAVE_BF16_KERNEL
    bgemm_avx512(l, x, ldx, rows, bias, relu, y, ldy, scratch);
#else
    (void)l, (void)x, (void)ldx, (void)rows, (void)bias, (void)relu, (void)y, (void)ldy,
        (void)scratch;
#endif
}
