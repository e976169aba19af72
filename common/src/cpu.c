/* The kernel level switch (MAAS_CPU_LEVEL) and CPU detection. See cpu.h. */
#include "maas/base.h"
#include "maas/cpu.h"

#include <pthread.h>

static const char *const level_names[] = {
    [MAAS_CPU_PORTABLE] = "portable",       [MAAS_CPU_AVX2] = "avx2",
    [MAAS_CPU_AVX512] = "avx512",           [MAAS_CPU_AVX512_VNNI] = "avx512-vnni",
    [MAAS_CPU_AVX512_BF16] = "avx512-bf16", [MAAS_CPU_NATIVE] = "native",
};

const char *maas_cpu_level_name(maas_cpu_level level) {
    if ((int)level < 0 || (size_t)level >= MAAS_ARRAY_LEN(level_names)) return "?";
    return level_names[level];
}

maas_err maas_cpu_level_parse(const char *name, maas_cpu_level *out, char *errstr,
                              size_t errstr_size) {
    for (size_t i = 0; i < MAAS_ARRAY_LEN(level_names); i++)
        if (name && !strcmp(name, level_names[i])) {
            *out = (maas_cpu_level)i;
            return MAAS_OK;
        }
    return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                     "MAAS_CPU_LEVEL '%s' is not one of portable, avx2, avx512, avx512-vnni, "
                     "avx512-bf16, native",
                     name ? name : "(null)");
}

maas_cpu_level maas_cpu_detected(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
        return __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bf16")
                   ? MAAS_CPU_AVX512_BF16
                   : MAAS_CPU_AVX512_VNNI;
    if (__builtin_cpu_supports("avx512f")) return MAAS_CPU_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return MAAS_CPU_AVX2;
#endif
    return MAAS_CPU_PORTABLE;
}

/* Read once: the first caller's view of the environment holds for the process. */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static maas_cpu_level cap_level = MAAS_CPU_NATIVE, used_level = MAAS_CPU_PORTABLE;
static maas_float_gemm float_gemm = MAAS_FLOAT_GEMM_BLAS;

static const char *const gemm_names[] = {
    [MAAS_FLOAT_GEMM_BLAS] = "openblas", [MAAS_FLOAT_GEMM_ONEDNN] = "onednn"};

static maas_err float_gemm_parse(const char *name, int *out, char *errstr, size_t errstr_size) {
    *out = -1; /* auto */
    if (!name || !*name || !strcmp(name, "auto")) return MAAS_OK;
    for (size_t i = 0; i < MAAS_ARRAY_LEN(gemm_names); i++)
        if (!strcmp(name, gemm_names[i])) {
            *out = (int)i;
            return MAAS_OK;
        }
    return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                     "MAAS_FLOAT_GEMM '%s' is not one of auto, openblas, onednn", name);
}

const char *maas_float_gemm_name(maas_float_gemm g) {
    return (size_t)g < MAAS_ARRAY_LEN(gemm_names) ? gemm_names[g] : "?";
}

static void resolve_once(void) {
    const char *env = getenv("MAAS_CPU_LEVEL");
    maas_cpu_level cap = MAAS_CPU_NATIVE;
    if (env && *env && maas_cpu_level_parse(env, &cap, NULL, 0) != MAAS_OK) cap = MAAS_CPU_NATIVE;
    maas_cpu_level det = maas_cpu_detected();
    cap_level = cap;
    used_level = cap < det ? cap : det;
    /* auto: oneDNN, which JIT-compiles for the CPU it runs on, from AVX2 up; plain C below
     * (the portable level uses no oneDNN) */
    int g = -1;
    float_gemm_parse(getenv("MAAS_FLOAT_GEMM"), &g, NULL, 0);
    float_gemm = used_level < MAAS_CPU_AVX2 ? MAAS_FLOAT_GEMM_BLAS
                 : g >= 0                   ? (maas_float_gemm)g
                                            : MAAS_FLOAT_GEMM_ONEDNN;
}

maas_float_gemm maas_cpu_float_gemm(void) {
    pthread_once(&once, resolve_once);
    return float_gemm;
}

maas_cpu_level maas_cpu_cap(void) {
    pthread_once(&once, resolve_once);
    return cap_level;
}

maas_cpu_level maas_cpu_current(void) {
    pthread_once(&once, resolve_once);
    return used_level;
}

maas_err maas_cpu_check_env(char *errstr, size_t errstr_size) {
    const char *env = getenv("MAAS_CPU_LEVEL");
    maas_cpu_level cap;
    int g;
    if (env && *env) {
        maas_err err = maas_cpu_level_parse(env, &cap, errstr, errstr_size);
        if (err) return err;
    }
    return float_gemm_parse(getenv("MAAS_FLOAT_GEMM"), &g, errstr, errstr_size);
}
