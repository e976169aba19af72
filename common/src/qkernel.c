/*
 * The int8 kernels: quantized layers' storage, the int8 GEMM (oneDNN for large
 * batches, AVX-512 VNNI tiles, portable C) and the quantized Dense forward step
 * that inference (model.c) calls. The transform that makes quantized models
 * (quantize, calibrate, prune) is quant.c, a floor above: it calls this file,
 * never the other way, and neither calls back into model.c.
 */
#include "maas/base.h"
#include "maas/cpu.h"
#include "maas/qkernel.h"
#include "quant_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define MAAS_HAVE_VNNI_KERNEL 1
#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#else
#define MAAS_HAVE_VNNI_KERNEL 0
#endif

/* ---------------------------------------------------------------- layers */

void maas__qlayer_release(maas_qlayer *l) {
    maas__qdnnl_free(l->dnnl);
    free(l->wq);
    free(l->scale);
    free(l->packed);
    free(l->colsum);
    memset(l, 0, sizeof(*l));
}

void maas_quant_free(maas_quant *q) {
    if (!q) return;
    for (int i = 0; i < q->n_layers; i++) maas__qlayer_release(&q->layers[i]);
    free(q->layers);
    free(q);
}

int maas__qlayer_alloc(maas_qlayer *l, int n_in, int n_out) {
    l->n_in = n_in;
    l->n_out = n_out;
    l->kg = (n_in + 3) / 4;
    l->nb = (n_out + 15) / 16;
    size_t packed = (size_t)l->kg * (size_t)l->nb * 64;
    l->wq = malloc((size_t)n_in * (size_t)n_out);
    l->scale = malloc((size_t)n_out * sizeof(float));
    l->packed = calloc(packed, 1);
    l->colsum = calloc((size_t)l->nb * 16, sizeof(int32_t));
    l->dnnl = maas__qdnnl_new(); /* NULL without oneDNN: then the other kernels do it all */
    return l->wq && l->scale && l->packed && l->colsum;
}

/* Builds the VNNI layout and the column sums from wq. */
void maas__qlayer_pack(maas_qlayer *l) {
    int n16 = l->nb * 16;
    memset(l->packed, 0, (size_t)l->kg * (size_t)n16 * 4);
    memset(l->colsum, 0, (size_t)n16 * sizeof(int32_t));
    for (int k = 0; k < l->n_in; k++) {
        const int8_t *row = l->wq + (size_t)k * l->n_out;
        int8_t *dst = l->packed + (size_t)(k / 4) * n16 * 4 + (k % 4);
        for (int j = 0; j < l->n_out; j++) {
            dst[(size_t)j * 4] = row[j];
            l->colsum[j] += row[j];
        }
    }
}

static int qlayer_copy(maas_qlayer *dst, const maas_qlayer *src) {
    memset(dst, 0, sizeof(*dst));
    if (!src->wq) return 1;
    if (!maas__qlayer_alloc(dst, src->n_in, src->n_out)) return 0;
    memcpy(dst->wq, src->wq, (size_t)src->n_in * (size_t)src->n_out);
    memcpy(dst->scale, src->scale, (size_t)src->n_out * sizeof(float));
    memcpy(dst->packed, src->packed, (size_t)src->kg * (size_t)src->nb * 64);
    memcpy(dst->colsum, src->colsum, (size_t)src->nb * 16 * sizeof(int32_t));
    dst->act_scale = src->act_scale;
    dst->act_unsigned = src->act_unsigned;
    return 1;
}

maas_quant *maas_quant_clone(const maas_quant *q) {
    if (!q) return NULL;
    maas_quant *c = calloc(1, sizeof(*c));
    if (c) c->layers = calloc((size_t)q->n_layers, sizeof(maas_qlayer));
    if (!c || !c->layers) {
        free(c);
        return NULL;
    }
    c->n_layers = q->n_layers;
    for (int i = 0; i < q->n_layers; i++)
        if (!qlayer_copy(&c->layers[i], &q->layers[i])) {
            maas_quant_free(c);
            return NULL;
        }
    return c;
}

/* ---------------------------------------------------------------- kernels */

static void qgemm_portable(const maas_qlayer *l, const uint8_t *xq, int ldx, int rows, int32_t *acc,
                           int ldc) {
    int n16 = l->nb * 16;
    for (int r = 0; r < rows; r++) {
        int32_t *a = acc + (size_t)r * ldc;
        memset(a, 0, (size_t)n16 * sizeof(int32_t));
        const uint8_t *x = xq + (size_t)r * ldx;
        for (int g = 0; g < l->kg; g++) {
            const int8_t *w = l->packed + (size_t)g * n16 * 4;
            int x0 = x[4 * g], x1 = x[4 * g + 1], x2 = x[4 * g + 2], x3 = x[4 * g + 3];
            for (int j = 0; j < n16; j++)
                a[j] += x0 * w[4 * j] + x1 * w[4 * j + 1] + x2 * w[4 * j + 2] + x3 * w[4 * j + 3];
        }
    }
}

#if MAAS_HAVE_VNNI_KERNEL
/*
 * Register tiles: rows x 16-unit blocks of int32 accumulators, written out
 * with named variables (an accumulator array makes GCC keep it in memory).
 * Per group of 4 inputs: one 64-byte load per block, one 32-bit broadcast of
 * 4 input bytes per row, rows x blocks vpdpbusd.
 */
#define BCAST(r) _mm512_set1_epi32(load4(x + (size_t)(r)*ldx + 4 * g))
#define DP(acc, xv, wv) acc = _mm512_dpbusd_epi32(acc, xv, wv)
#define ST(r, b, v) _mm512_storeu_si512((void *)(acc + (size_t)(r)*ldc + 16 * (b)), v)

static inline int32_t load4(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

#define ROW4(r)                                                                                    \
    do {                                                                                           \
        __m512i xb = BCAST(r);                                                                     \
        DP(c##r##0, xb, w0);                                                                       \
        DP(c##r##1, xb, w1);                                                                       \
        DP(c##r##2, xb, w2);                                                                       \
        DP(c##r##3, xb, w3);                                                                       \
    } while (0)
#define DECL4(r)                                                                                   \
    __m512i c##r##0 = _mm512_setzero_si512(), c##r##1 = c##r##0, c##r##2 = c##r##0,                \
            c##r##3 = c##r##0
#define STORE4(r)                                                                                  \
    do {                                                                                           \
        ST(r, 0, c##r##0);                                                                         \
        ST(r, 1, c##r##1);                                                                         \
        ST(r, 2, c##r##2);                                                                         \
        ST(r, 3, c##r##3);                                                                         \
    } while (0)

VNNI_TARGET static void tile_6x4(const uint8_t *x, int ldx, const int8_t *w, size_t gstride, int kg,
                                 int32_t *acc, int ldc) {
    DECL4(0);
    DECL4(1);
    DECL4(2);
    DECL4(3);
    DECL4(4);
    DECL4(5);
    for (int g = 0; g < kg; g++) {
        const int8_t *wg = w + (size_t)g * gstride;
        __m512i w0 = _mm512_loadu_si512((const void *)wg);
        __m512i w1 = _mm512_loadu_si512((const void *)(wg + 64));
        __m512i w2 = _mm512_loadu_si512((const void *)(wg + 128));
        __m512i w3 = _mm512_loadu_si512((const void *)(wg + 192));
        ROW4(0);
        ROW4(1);
        ROW4(2);
        ROW4(3);
        ROW4(4);
        ROW4(5);
    }
    STORE4(0);
    STORE4(1);
    STORE4(2);
    STORE4(3);
    STORE4(4);
    STORE4(5);
}

VNNI_TARGET static void tile_1x4(const uint8_t *x, int ldx, const int8_t *w, size_t gstride, int kg,
                                 int32_t *acc, int ldc) {
    DECL4(0);
    for (int g = 0; g < kg; g++) {
        const int8_t *wg = w + (size_t)g * gstride;
        __m512i w0 = _mm512_loadu_si512((const void *)wg);
        __m512i w1 = _mm512_loadu_si512((const void *)(wg + 64));
        __m512i w2 = _mm512_loadu_si512((const void *)(wg + 128));
        __m512i w3 = _mm512_loadu_si512((const void *)(wg + 192));
        ROW4(0);
    }
    STORE4(0);
}

/* One block of 16 units (the last ones of a layer whose width is not a multiple of 64). */
VNNI_TARGET static void tile_6x1(const uint8_t *x, int ldx, const int8_t *w, size_t gstride, int kg,
                                 int32_t *acc, int ldc) {
    __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
    for (int g = 0; g < kg; g++) {
        __m512i w0 = _mm512_loadu_si512((const void *)(w + (size_t)g * gstride));
        DP(c0, BCAST(0), w0);
        DP(c1, BCAST(1), w0);
        DP(c2, BCAST(2), w0);
        DP(c3, BCAST(3), w0);
        DP(c4, BCAST(4), w0);
        DP(c5, BCAST(5), w0);
    }
    ST(0, 0, c0);
    ST(1, 0, c1);
    ST(2, 0, c2);
    ST(3, 0, c3);
    ST(4, 0, c4);
    ST(5, 0, c5);
}

VNNI_TARGET static void tile_1x1(const uint8_t *x, int ldx, const int8_t *w, size_t gstride, int kg,
                                 int32_t *acc, int ldc) {
    (void)ldx;
    __m512i c0 = _mm512_setzero_si512(), c1 = c0;
    int g = 0;
    for (; g + 2 <= kg; g += 2) { /* two chains hide the instruction's latency */
        DP(c0, BCAST(0), _mm512_loadu_si512((const void *)(w + (size_t)g * gstride)));
        g++;
        DP(c1, BCAST(0), _mm512_loadu_si512((const void *)(w + (size_t)g * gstride)));
        g--;
    }
    for (; g < kg; g++)
        DP(c0, BCAST(0), _mm512_loadu_si512((const void *)(w + (size_t)g * gstride)));
    ST(0, 0, _mm512_add_epi32(c0, c1));
}

VNNI_TARGET static void qgemm_vnni(const maas_qlayer *l, const uint8_t *xq, int ldx, int rows,
                                   int32_t *acc, int ldc) {
    size_t gstride = (size_t)l->nb * 64; /* bytes of one input group across all units */
    for (int b0 = 0; b0 < l->nb;) {
        int four = l->nb - b0 >= 4;
        const int8_t *w = l->packed + (size_t)b0 * 64;
        int r = 0;
        for (; r + 6 <= rows; r += 6) {
            const uint8_t *x = xq + (size_t)r * ldx;
            int32_t *a = acc + (size_t)r * ldc + 16 * b0;
            if (four)
                tile_6x4(x, ldx, w, gstride, l->kg, a, ldc);
            else
                tile_6x1(x, ldx, w, gstride, l->kg, a, ldc);
        }
        for (; r < rows; r++) {
            const uint8_t *x = xq + (size_t)r * ldx;
            int32_t *a = acc + (size_t)r * ldc + 16 * b0;
            if (four)
                tile_1x4(x, ldx, w, gstride, l->kg, a, ldc);
            else
                tile_1x1(x, ldx, w, gstride, l->kg, a, ldc);
        }
        b0 += four ? 4 : 1;
    }
}

/*
 * The same arithmetic as quantize_row() and the epilogue below, 16 lanes at a
 * time, in the same order of operations (quant.c is compiled without FMA
 * contraction), so both paths give the same bits.
 */
VNNI_TARGET static float quantize_row_avx512(const float *x, int n, int padded, uint8_t *q,
                                             uint8_t *shifted, const maas_qlayer *l) {
    int uns;
    float s;
    if (l->act_scale > 0.0f) {
        s = l->act_scale;
        uns = l->act_unsigned;
    } else {
        __m512 vmx = _mm512_setzero_ps(), vmn = vmx;
        for (int k = 0; k < n; k += 16) {
            __mmask16 mk = n - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - k)) - 1);
            __m512 v = _mm512_maskz_loadu_ps(mk, x + k);
            vmx = _mm512_max_ps(vmx, v);
            vmn = _mm512_min_ps(vmn, v);
        }
        float mx = _mm512_reduce_max_ps(vmx), mn = _mm512_reduce_min_ps(vmn);
        uns = mn >= 0.0f;
        float amax = uns ? mx : (mx > -mn ? mx : -mn);
        s = amax > 0.0f ? amax / (uns ? 255.0f : 127.0f) : 1.0f;
    }
    float inv = 1.0f / s;
    __m512 vinv = _mm512_set1_ps(inv), zero = _mm512_setzero_ps();
    __m512 half = _mm512_set1_ps(0.5f), mhalf = _mm512_set1_ps(-0.5f);
    __m512 lo = _mm512_set1_ps(uns ? 0.0f : -127.0f), hi = _mm512_set1_ps(uns ? 255.0f : 127.0f);
    for (int k = 0; k < n; k += 16) {
        __mmask16 mk = n - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - k)) - 1);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + k), vinv);
        __m512i r;
        if (uns) {
            v = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, half), lo), hi);
            r = _mm512_cvttps_epi32(v);
        } else {
            v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
            __mmask16 pos = _mm512_cmp_ps_mask(v, zero, _CMP_GE_OQ);
            r = _mm512_cvttps_epi32(_mm512_add_ps(v, _mm512_mask_blend_ps(pos, mhalf, half)));
            r = _mm512_add_epi32(r, _mm512_set1_epi32(128));
        }
        _mm512_mask_cvtepi32_storeu_epi8(q + k, mk, r);
    }
    memset(q + n, 0, (size_t)(padded - n));
    *shifted = (uint8_t)!uns;
    return s;
}

VNNI_TARGET static void epilogue_avx512(const maas_qlayer *l, const int32_t *a, int32_t corr,
                                        float rs, const float *bias, int relu, float *y) {
    int n = l->n_out;
    __m512i vcorr = _mm512_set1_epi32(corr);
    __m512 vrs = _mm512_set1_ps(rs);
    for (int j = 0; j < n; j += 16) {
        __mmask16 mk = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
        __m512i t = _mm512_sub_epi32(
            _mm512_maskz_loadu_epi32(mk, a + j),
            _mm512_mullo_epi32(vcorr, _mm512_maskz_loadu_epi32(mk, l->colsum + j)));
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(t),
                                 _mm512_mul_ps(vrs, _mm512_maskz_loadu_ps(mk, l->scale + j)));
        if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, bias + j));
        if (relu) v = _mm512_max_ps(v, _mm512_setzero_ps()); /* v > 0 ? v : +0, as act.c */
        _mm512_mask_storeu_ps(y + j, mk, v);
    }
}

static int cpu_has_vnni(void) {
    return maas_cpu_current() >= MAAS_CPU_AVX512_VNNI;
}
#else
static int cpu_has_vnni(void) {
    return 0;
}
#endif

static maas_qkernel resolve(maas_qkernel k) {
    if (k == MAAS_QKERNEL_PORTABLE) return k;
    return cpu_has_vnni() ? MAAS_QKERNEL_VNNI : MAAS_QKERNEL_PORTABLE;
}

const char *maas_qkernel_name(maas_qkernel k) {
    int vnni = resolve(k) == MAAS_QKERNEL_VNNI;
    if (k == MAAS_QKERNEL_AUTO && maas__qdnnl_available())
        return vnni ? "onednn+avx512-vnni" : "onednn+portable";
    return vnni ? "avx512-vnni" : "portable";
}

void maas_qgemm(maas_qkernel k, const maas_qlayer *l, const uint8_t *xq, int ldx, int rows,
                int32_t *acc, int ldc) {
    if (k == MAAS_QKERNEL_AUTO) { /* large batches: oneDNN takes what it can */
        int done = maas__qdnnl_run(l->dnnl, l, xq, ldx, rows, acc, ldc);
        xq += (size_t)done * ldx;
        acc += (size_t)done * ldc;
        rows -= done;
        if (rows == 0) return;
    }
#if MAAS_HAVE_VNNI_KERNEL
    if (resolve(k) == MAAS_QKERNEL_VNNI) {
        qgemm_vnni(l, xq, ldx, rows, acc, ldc);
        return;
    }
#else
    (void)k;
#endif
    qgemm_portable(l, xq, ldx, rows, acc, ldc);
}

/* ---------------------------------------------------------------- forward */

/* Quantizes one row of n floats into uint8 (see quant.h); returns its scale. */
static float quantize_row(const float *x, int n, int padded, uint8_t *q, uint8_t *shifted,
                          const maas_qlayer *l) {
    float mx = 0.0f, mn = 0.0f;
    int uns;
    float s;
    if (l->act_scale > 0.0f) {
        s = l->act_scale;
        uns = l->act_unsigned;
    } else {
        for (int k = 0; k < n; k++) {
            mx = x[k] > mx ? x[k] : mx;
            mn = x[k] < mn ? x[k] : mn;
        }
        uns = mn >= 0.0f;
        float amax = uns ? mx : (mx > -mn ? mx : -mn);
        s = amax > 0.0f ? amax / (uns ? 255.0f : 127.0f) : 1.0f;
    }
    float inv = 1.0f / s;
    if (uns) {
        for (int k = 0; k < n; k++) {
            float v = x[k] * inv + 0.5f;
            v = v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v;
            q[k] = (uint8_t)(int)v;
        }
    } else {
        for (int k = 0; k < n; k++) {
            float v = x[k] * inv;
            v = v < -127.0f ? -127.0f : v > 127.0f ? 127.0f : v;
            /* round half away from zero, then shift into uint8 */
            int r = (int)(v + (v >= 0.0f ? 0.5f : -0.5f));
            q[k] = (uint8_t)(r + 128);
        }
    }
    /* the padded weights are zero, so what the padding holds does not matter */
    memset(q + n, 0, (size_t)(padded - n));
    *shifted = (uint8_t)!uns;
    return s;
}

void maas__qdense_forward(const maas_qlayer *l, const float *in, int rows, const float *bias,
                          int relu, float *out, const maas_qscratch *s) {
    int padded = 4 * l->kg;
#if MAAS_HAVE_VNNI_KERNEL
    if (resolve(s->kernel) == MAAS_QKERNEL_VNNI) {
        for (int r = 0; r < rows; r++)
            s->rs[r] = quantize_row_avx512(in + (size_t)r * l->n_in, l->n_in, padded,
                                           s->xq + (size_t)r * s->ldx, &s->sh[r], l);
        maas_qgemm(s->kernel, l, s->xq, s->ldx, rows, s->acc, s->ldc);
        for (int r = 0; r < rows; r++)
            epilogue_avx512(l, s->acc + (size_t)r * s->ldc, s->sh[r] ? 128 : 0, s->rs[r], bias,
                            relu, out + (size_t)r * l->n_out);
        return;
    }
#endif
    for (int r = 0; r < rows; r++)
        s->rs[r] = quantize_row(in + (size_t)r * l->n_in, l->n_in, padded,
                                s->xq + (size_t)r * s->ldx, &s->sh[r], l);
    maas_qgemm(s->kernel, l, s->xq, s->ldx, rows, s->acc, s->ldc);
    int n = l->n_out;
    for (int r = 0; r < rows; r++) {
        const int32_t *a = s->acc + (size_t)r * s->ldc;
        float *y = out + (size_t)r * n;
        int32_t corr = s->sh[r] ? 128 : 0;
        float rs = s->rs[r];
        for (int j = 0; j < n; j++) {
            float v = (float)(a[j] - corr * l->colsum[j]) * (rs * l->scale[j]);
            v = bias ? v + bias[j] : v;
            y[j] = relu && !(v > 0.0f) ? 0.0f : v;
        }
    }
}
