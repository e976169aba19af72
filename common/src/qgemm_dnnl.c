/*
 * The oneDNN adapter (the only file that includes dnnl.h): uint8 x int8 ->
 * int32 matmuls for batches of 32 rows and more, where oneDNN's kernels (AMX
 * on CPUs that have it) beat our VNNI tiles (README, "oneDNN"). oneDNN's fast
 * paths need a primitive per shape, so a layer keeps one per batch bucket
 * (32, 64, ..., 1024 rows), made on first use; a batch is cut into bucket-
 * sized chunks and the rest (< 32 rows) is left to the caller's kernel.
 * Results are the same integers as the other kernels.
 *
 * oneDNN is loaded on first use (dlopen), not linked: a process that never
 * runs a large int8 batch never maps it (with libstdc++ and libgomp it is
 * ~4.4 MB of resident pages, a third of an idle worker). Each layer's state
 * holds its own handle and function table (dlopen counts references; the
 * library stays mapped once loaded, RTLD_NODELETE, so its caches stay valid), so
 * there is no process-wide state; a missing library means the caller's
 * kernels do everything.
 */
#include "maas/base.h"
#include "maas/cpu.h"
#include "quant_internal.h"

#ifdef MAAS_HAVE_DNNL
#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>

/* Debian's oneDNN runs on GNU OpenMP; this is libgomp's (declared here: clang has no omp.h). */
extern void omp_set_num_threads(int n);

/* Every oneDNN (and libgomp) function this file calls, looked up by name. */
#define DNNL_FNS(X)                                                                                \
    X(dnnl_engine_create)                                                                          \
    X(dnnl_engine_destroy)                                                                         \
    X(dnnl_stream_create)                                                                          \
    X(dnnl_stream_destroy)                                                                         \
    X(dnnl_stream_wait)                                                                            \
    X(dnnl_memory_desc_init_by_strides)                                                            \
    X(dnnl_memory_desc_init_by_tag)                                                                \
    X(dnnl_matmul_desc_init)                                                                       \
    X(dnnl_primitive_desc_create)                                                                  \
    X(dnnl_primitive_desc_destroy)                                                                 \
    X(dnnl_primitive_create)                                                                       \
    X(dnnl_primitive_destroy)                                                                      \
    X(dnnl_primitive_execute)                                                                      \
    X(dnnl_memory_create)                                                                          \
    X(dnnl_memory_destroy)                                                                         \
    X(dnnl_set_max_cpu_isa)                                                                        \
    X(omp_set_num_threads)

typedef struct {
    void *lib; /* dlopen handle; NULL: not loaded */
#define DNNL_FIELD(name) __typeof__(&name) name;
    DNNL_FNS(DNNL_FIELD)
#undef DNNL_FIELD
} dnnl_api;

/*
 * oneDNN runs only where the CPU (and MAAS_CPU_LEVEL) has AVX-512 VNNI. Below
 * that, its u8 x s8 kernels multiply with vpmaddubsw, whose pairwise sums
 * saturate at 16 bits (oneDNN's guide, "Nuances of int8 computations"): the
 * integers would differ from the exact ones of our kernels (test_quant@avx2
 * and @avx512 catch it), so those levels use our kernels for every batch.
 */
static int level_ok(void) {
    return maas_cpu_current() >= MAAS_CPU_AVX512_VNNI;
}

/*
 * oneDNN's ISA follows MAAS_CPU_LEVEL (maas/cpu.h). dnnl_set_max_cpu_isa()
 * takes effect once per process, before the first kernel is made, and
 * refuses later calls: the cap never changes within a process, so every load
 * asks for the same thing and only the first call counts.
 */
static void cap_isa(const dnnl_api *a) {
    dnnl_cpu_isa_t isa;
    switch (maas_cpu_cap()) {
    case MAAS_CPU_AVX512_VNNI:
        isa = dnnl_cpu_isa_avx512_core_vnni;
        break;
    case MAAS_CPU_NATIVE:
    default:
        return;
    }
    (void)a->dnnl_set_max_cpu_isa(isa);
}

/* Loads libdnnl and resolves every function; 0 when any is missing. */
static int api_load(dnnl_api *a) {
    static const char *const names[] = {"libdnnl.so.2", "libdnnl.so"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && !a->lib; i++)
        a->lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!a->lib) return 0;
    int ok = 1;
#define DNNL_RESOLVE(name)                                                                         \
    a->name = (__typeof__(&name))dlsym(a->lib, #name);                                             \
    ok &= a->name != NULL;
    DNNL_FNS(DNNL_RESOLVE)
#undef DNNL_RESOLVE
    if (ok) cap_isa(a);
    return ok;
}

static void api_unload(dnnl_api *a) {
    if (a->lib) dlclose(a->lib);
    a->lib = NULL;
}

#define N_BUCKETS 6 /* 32 << 0 .. 32 << 5 = 1024 rows */

struct maas_qdnnl {
    pthread_mutex_t lock; /* primitives are made lazily; calls are serialized */
    int failed;           /* oneDNN refused something: the caller's kernel does everything */
    int ldx, ldc;         /* the strides the primitives were made for */
    dnnl_api api;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_primitive_t prim[N_BUCKETS];
    dnnl_memory_desc_t src_md[N_BUCKETS], dst_md[N_BUCKETS], w_md;
};

maas_qdnnl *maas__qdnnl_new(void) {
    maas_qdnnl *d = calloc(1, sizeof(*d));
    if (d) pthread_mutex_init(&d->lock, NULL);
    return d;
}

void maas__qdnnl_free(maas_qdnnl *d) {
    if (!d) return;
    for (int i = 0; i < N_BUCKETS; i++)
        if (d->prim[i]) d->api.dnnl_primitive_destroy(d->prim[i]);
    if (d->stream) d->api.dnnl_stream_destroy(d->stream);
    if (d->engine) d->api.dnnl_engine_destroy(d->engine);
    api_unload(&d->api);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

static int make_prim(maas_qdnnl *d, const maas_qlayer *l, int b) {
    int m = 32 << b;
    dnnl_dims_t sd = {m, l->n_in}, ss = {d->ldx, 1};
    dnnl_dims_t dd = {m, l->n_out}, ds = {d->ldc, 1};
    dnnl_matmul_desc_t md;
    dnnl_primitive_desc_t pd = NULL;
    int ok = d->api.dnnl_memory_desc_init_by_strides(&d->src_md[b], 2, sd, dnnl_u8, ss) ==
                 dnnl_success &&
             d->api.dnnl_memory_desc_init_by_strides(&d->dst_md[b], 2, dd, dnnl_s32, ds) ==
                 dnnl_success &&
             d->api.dnnl_matmul_desc_init(&md, &d->src_md[b], &d->w_md, NULL, &d->dst_md[b]) ==
                 dnnl_success &&
             d->api.dnnl_primitive_desc_create(&pd, &md, NULL, d->engine, NULL) == dnnl_success &&
             d->api.dnnl_primitive_create(&d->prim[b], pd) == dnnl_success;
    if (pd) d->api.dnnl_primitive_desc_destroy(pd);
    return ok;
}

int maas__qdnnl_run(maas_qdnnl *d, const maas_qlayer *l, const uint8_t *xq, int ldx, int rows,
                    int32_t *acc, int ldc) {
    if (!d || rows < 32 || !level_ok()) return 0;
    pthread_mutex_lock(&d->lock);
    int done = 0;
    if (!d->failed && !d->engine) {
        d->ldx = ldx;
        d->ldc = ldc;
        dnnl_dims_t wd = {l->n_in, l->n_out};
        d->failed =
            !api_load(&d->api) ||
            d->api.dnnl_engine_create(&d->engine, dnnl_cpu, 0) != dnnl_success ||
            d->api.dnnl_stream_create(&d->stream, d->engine, dnnl_stream_default_flags) !=
                dnnl_success ||
            d->api.dnnl_memory_desc_init_by_tag(&d->w_md, 2, wd, dnnl_s8, dnnl_ab) != dnnl_success;
    }
    if (d->failed || d->ldx != ldx || d->ldc != ldc) goto out;
    d->api.omp_set_num_threads(1); /* one thread, as the BLAS side (maas_blas_set_threads) */
    dnnl_memory_t w = NULL;
    if (d->api.dnnl_memory_create(&w, &d->w_md, d->engine, l->wq) != dnnl_success) w = NULL;
    for (int b = N_BUCKETS - 1; b >= 0 && w; b--) {
        int m = 32 << b;
        while (rows - done >= m) {
            if (!d->prim[b] && !make_prim(d, l, b)) {
                d->failed = 1;
                break;
            }
            dnnl_memory_t src, dst;
            if (d->api.dnnl_memory_create(&src, &d->src_md[b], d->engine,
                                          (void *)(xq + (size_t)done * ldx)) != dnnl_success)
                break;
            if (d->api.dnnl_memory_create(&dst, &d->dst_md[b], d->engine,
                                          acc + (size_t)done * ldc) != dnnl_success) {
                d->api.dnnl_memory_destroy(src);
                break;
            }
            dnnl_exec_arg_t args[3] = {
                {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, dst}};
            int ok =
                d->api.dnnl_primitive_execute(d->prim[b], d->stream, 3, args) == dnnl_success &&
                d->api.dnnl_stream_wait(d->stream) == dnnl_success;
            d->api.dnnl_memory_destroy(src);
            d->api.dnnl_memory_destroy(dst);
            if (!ok) {
                d->failed = 1;
                break;
            }
            done += m;
        }
        if (d->failed) break;
    }
    if (w) d->api.dnnl_memory_destroy(w);
out:
    pthread_mutex_unlock(&d->lock);
    return done;
}

int maas__qdnnl_available(void) {
    if (!level_ok()) return 0;
    dnnl_api a = {0};
    int ok = api_load(&a);
    api_unload(&a);
    return ok;
}

#else /* built without oneDNN */

maas_qdnnl *maas__qdnnl_new(void) {
    return NULL;
}
void maas__qdnnl_free(maas_qdnnl *d) {
    (void)d;
}
int maas__qdnnl_run(maas_qdnnl *d, const maas_qlayer *l, const uint8_t *xq, int ldx, int rows,
                    int32_t *acc, int ldc) {
    (void)d, (void)l, (void)xq, (void)ldx, (void)rows, (void)acc, (void)ldc;
    return 0;
}
int maas__qdnnl_available(void) {
    return 0;
}
#endif
