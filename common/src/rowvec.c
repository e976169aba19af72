/*
 * One row through a Dense layer, the project's own float kernel: y[n] = x[k] · W[k x n]
 * (+ y). A single-row prediction is a vector-matrix product whose cost is reading W once;
 * OpenBLAS's sgemv reaches ~40% of that bound on a 784x256 layer. Here each W row is
 * streamed once, in order, into accumulators that hold a block of y in registers (up to 256
 * outputs with AVX-512, 96 with AVX2), so W is read once per block of outputs and y never
 * round-trips through memory inside the block.
 *
 * The level is maas_cpu_current() (MAAS_CPU_LEVEL caps it, and the suite runs every level
 * the CPU has): AVX-512F, AVX2 + FMA, or plain C. Each output is summed over i in order with
 * one rounding per multiply-add (FMA) or two (plain C): inside the documented error bound,
 * which admits any order (README, "What holds across CPUs and batch sizes").
 */
#include "maas/base.h"
#include "maas/cpu.h"
#include "maas/gemm.h"

#include <immintrin.h>

#define AVX512_TARGET __attribute__((target("avx512f")))
#define AVX2_TARGET __attribute__((target("avx2,fma")))

/* y[j0 .. j0 + 16*nv) with the last vector masked to `tail` lanes (16 = whole). */
static inline __attribute__((always_inline)) AVX512_TARGET void block512(int k, const float *x,
                                                                         const float *w, size_t ldw,
                                                                         float beta, float *y,
                                                                         int nv, __mmask16 tail) {
    __m512 acc[16];
#pragma GCC unroll 16
    for (int v = 0; v < 16; v++) {
        if (v >= nv) break;
        __mmask16 m = v == nv - 1 ? tail : (__mmask16)0xffff;
        acc[v] = beta != 0.0f
                     ? _mm512_mul_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(m, y + 16 * v))
                     : _mm512_setzero_ps();
    }
    for (int i = 0; i < k; i++) {
        const __m512 xi = _mm512_set1_ps(x[i]);
        const float *r = w + (size_t)i * ldw;
#pragma GCC unroll 16
        for (int v = 0; v < 16; v++) {
            if (v >= nv) break;
            __mmask16 m = v == nv - 1 ? tail : (__mmask16)0xffff;
            acc[v] = _mm512_fmadd_ps(xi, _mm512_maskz_loadu_ps(m, r + 16 * v), acc[v]);
        }
    }
#pragma GCC unroll 16
    for (int v = 0; v < 16; v++) {
        if (v >= nv) break;
        __mmask16 m = v == nv - 1 ? tail : (__mmask16)0xffff;
        _mm512_mask_storeu_ps(y + 16 * v, m, acc[v]);
    }
}

/* Fixed block widths, so that each loop above is unrolled with acc[] in registers. */
#define BLOCK512(NV)                                                                               \
    static AVX512_TARGET void block512_##NV(int k, const float *x, const float *w, size_t ldw,     \
                                            float beta, float *y, __mmask16 tail) {                \
        block512(k, x, w, ldw, beta, y, NV, tail);                                                 \
    }
BLOCK512(16)
BLOCK512(8)
BLOCK512(4)
BLOCK512(2)
BLOCK512(1)

static AVX512_TARGET void rowvec_avx512(int k, int n, const float *x, const float *w, size_t ldw,
                                        float beta, float *y) {
    int j = 0;
    for (; n - j >= 256; j += 256) block512_16(k, x, w + j, ldw, beta, y + j, 0xffff);
    /* the rest in the fewest blocks: 8, 4, 2, 1 vectors, the last one masked */
    while (j < n) {
        int left = n - j, vecs = (left + 15) / 16;
        int nv = vecs >= 8 ? 8 : vecs >= 4 ? 4 : vecs >= 2 ? 2 : 1;
        int cols = nv * 16 < left ? nv * 16 : left;
        __mmask16 tail = (__mmask16)(cols % 16 ? (1u << (cols % 16)) - 1 : 0xffff);
        void (*f)(int, const float *, const float *, size_t, float, float *, __mmask16) =
            nv == 8   ? block512_8
            : nv == 4 ? block512_4
            : nv == 2 ? block512_2
                      : block512_1;
        f(k, x, w + j, ldw, beta, y + j, tail);
        j += cols;
    }
}

/* AVX2: 8 floats a vector, up to 12 accumulators (of 16 registers); a partial last vector
 * through maskload/maskstore. */
static inline __attribute__((always_inline)) AVX2_TARGET void block256(int k, const float *x,
                                                                       const float *w, size_t ldw,
                                                                       float beta, float *y, int nv,
                                                                       __m256i tail) {
    __m256 acc[12];
    const __m256i all = _mm256_set1_epi32(-1);
#pragma GCC unroll 12
    for (int v = 0; v < 12; v++) {
        if (v >= nv) break;
        __m256i m = v == nv - 1 ? tail : all;
        acc[v] = beta != 0.0f
                     ? _mm256_mul_ps(_mm256_set1_ps(beta), _mm256_maskload_ps(y + 8 * v, m))
                     : _mm256_setzero_ps();
    }
    for (int i = 0; i < k; i++) {
        const __m256 xi = _mm256_set1_ps(x[i]);
        const float *r = w + (size_t)i * ldw;
#pragma GCC unroll 12
        for (int v = 0; v < 12; v++) {
            if (v >= nv) break;
            __m256i m = v == nv - 1 ? tail : all;
            acc[v] = _mm256_fmadd_ps(xi, _mm256_maskload_ps(r + 8 * v, m), acc[v]);
        }
    }
#pragma GCC unroll 12
    for (int v = 0; v < 12; v++) {
        if (v >= nv) break;
        __m256i m = v == nv - 1 ? tail : all;
        _mm256_maskstore_ps(y + 8 * v, m, acc[v]);
    }
}

#define BLOCK256(NV)                                                                               \
    static AVX2_TARGET void block256_##NV(int k, const float *x, const float *w, size_t ldw,       \
                                          float beta, float *y, __m256i tail) {                    \
        block256(k, x, w, ldw, beta, y, NV, tail);                                                 \
    }
BLOCK256(12)
BLOCK256(4)
BLOCK256(1)

static AVX2_TARGET void rowvec_avx2(int k, int n, const float *x, const float *w, size_t ldw,
                                    float beta, float *y) {
    const __m256i all = _mm256_set1_epi32(-1);
    int j = 0;
    for (; n - j >= 96; j += 96) block256_12(k, x, w + j, ldw, beta, y + j, all);
    while (j < n) {
        int left = n - j, vecs = (left + 7) / 8;
        int nv = vecs >= 4 ? 4 : 1;
        int cols = nv * 8 < left ? nv * 8 : left;
        int part = cols % 8;
        __m256i tail = part ? _mm256_cmpgt_epi32(_mm256_set1_epi32(part),
                                                 _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
                            : all;
        (nv == 4 ? block256_4 : block256_1)(k, x, w + j, ldw, beta, y + j, tail);
        j += cols;
    }
}

static void rowvec_portable(int k, int n, const float *x, const float *w, size_t ldw, float beta,
                            float *y) {
    for (int j = 0; j < n; j++) y[j] = beta != 0.0f ? beta * y[j] : 0.0f;
    for (int i = 0; i < k; i++) {
        const float xi = x[i], *r = w + (size_t)i * ldw;
        for (int j = 0; j < n; j++) y[j] += xi * r[j];
    }
}

void maas_rowvec(int k, int n, const float *x, const float *w, int ldw, float beta, float *y) {
    if (n <= 0) return;
    maas_cpu_level level = maas_cpu_current();
    if (level >= MAAS_CPU_AVX512)
        rowvec_avx512(k, n, x, w, (size_t)ldw, beta, y);
    else if (level >= MAAS_CPU_AVX2)
        rowvec_avx2(k, n, x, w, (size_t)ldw, beta, y);
    else
        rowvec_portable(k, n, x, w, (size_t)ldw, beta, y);
}
