/*
 * cpu.h - which of the project's own x86-64 kernels may run: the one switch.
 *
 * The compute core carries kernels for several instruction-set levels and
 * picks one at run time: optimizer updates (train.c: baseline, AVX2,
 * AVX-512F), the int8 kernels (quant.c: portable C or AVX-512 VNNI), the bf16
 * kernel (bkernel.c: AVX512_BF16, else bf16 layers run as float32) and
 * oneDNN's JIT for large int8 batches (gemm_dnnl.c). The level used is the
 * highest the CPU supports, capped by the environment variable
 *
 *   MAAS_CPU_LEVEL = portable | avx2 | avx512 | avx512-vnni | avx512-bf16 | native
 *
 * (unset or "native": no cap). "portable" runs plain C only (and no oneDNN);
 * "avx2" and "avx512" cap oneDNN's ISA the same way. The test suite runs the
 * unit and accuracy tests at each level the CPU supports, so an AVX2-only or
 * a non-VNNI machine is covered on an AVX-512 one. OpenBLAS's own dispatch is
 * not affected (that is OPENBLAS_CORETYPE, which the project never sets).
 *
 * The cap is read once per process (the first call) and never changes after:
 * it is process-wide, read-only state, like the CPU's feature bits.
 */
#ifndef MAAS_CPU_H
#define MAAS_CPU_H

#include <stddef.h>

#include "maas/err.h"

typedef enum maas_cpu_level {
    MAAS_CPU_PORTABLE = 0, /* plain C (the x86-64 baseline, SSE2) */
    MAAS_CPU_AVX2,         /* + AVX2 */
    MAAS_CPU_AVX512,       /* + AVX-512F */
    MAAS_CPU_AVX512_VNNI,  /* + AVX-512 BW, VL and VNNI */
    MAAS_CPU_AVX512_BF16,  /* + AVX512_BF16 (bf16 models' kernel, maas/bkernel.h) */
    MAAS_CPU_NATIVE        /* as a cap: no cap (oneDNN may use AMX and beyond) */
} maas_cpu_level;

/* The highest level this CPU supports (never MAAS_CPU_NATIVE). */
maas_cpu_level maas_cpu_detected(void);

/* The cap from MAAS_CPU_LEVEL (MAAS_CPU_NATIVE when unset or invalid). */
maas_cpu_level maas_cpu_cap(void);

/* The level kernels use: min(detected, cap). */
maas_cpu_level maas_cpu_current(void);

/*
 * Checks MAAS_CPU_LEVEL and MAAS_FLOAT_GEMM: MAAS_ERR_INVALID_ARGUMENT with a message naming the
 * valid values when it is set to something else. Programs call it at start-up and refuse to run on
 * a bad value (the kernels alone would ignore it).
 */
maas_err maas_cpu_check_env(char *errstr, size_t errstr_size);

/*
 * Where float matrix products of 32 rows and more run in inference (a Dense layer's batch):
 *
 *   MAAS_FLOAT_GEMM = auto | openblas | onednn
 *
 * auto (unset): oneDNN's f32 matmul, JIT-compiled for the CPU it runs on, at levels from
 * AVX2 up; OpenBLAS at the portable level (which never uses oneDNN, whatever the setting).
 * oneDNN is loaded on first use; where it is missing, OpenBLAS does everything. Training
 * and smaller batches use OpenBLAS, single rows maas_rowvec (gemm.h). Read once per
 * process, like MAAS_CPU_LEVEL; maas_cpu_check_env refuses a bad value.
 */
typedef enum maas_float_gemm { MAAS_FLOAT_GEMM_BLAS = 0, MAAS_FLOAT_GEMM_ONEDNN } maas_float_gemm;
maas_float_gemm maas_cpu_float_gemm(void);
const char *maas_float_gemm_name(maas_float_gemm g); /* "openblas", "onednn" */

/* Parses a level name (as above). */
maas_err maas_cpu_level_parse(const char *name, maas_cpu_level *out, char *errstr,
                              size_t errstr_size);

/* "portable", "avx2", "avx512", "avx512-vnni", "avx512-bf16" or "native". Never NULL. */
const char *maas_cpu_level_name(maas_cpu_level level);

#endif
