/*
 * The oneDNN adapter (the only file that includes dnnl.h): matmuls for batches of
 * 32 rows and more — float32 (maas__fdnnl_*: a Dense layer's batch in inference,
 * where oneDNN's JIT for the CPU at hand beats OpenBLAS's kernel table, maas/cpu.h
 * MAAS_FLOAT_GEMM), float32 direct convolutions (maas__cdnnl_*: a convolution layer's
 * batch of 8 samples and more in inference, with relu fused, instead of im2col + GEMM)
 * and uint8 x int8 -> int32 (maas__qdnnl_*), where oneDNN's
 * kernels (AMX on CPUs that have it) beat our VNNI tiles (README, "oneDNN"). oneDNN's fast
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
#include "gemm_internal.h"
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
    X(dnnl_convolution_forward_desc_init)                                                          \
    X(dnnl_primitive_attr_create)                                                                  \
    X(dnnl_primitive_attr_destroy)                                                                 \
    X(dnnl_primitive_attr_set_post_ops)                                                            \
    X(dnnl_post_ops_create)                                                                        \
    X(dnnl_post_ops_destroy)                                                                       \
    X(dnnl_post_ops_append_eltwise)                                                                \
    X(dnnl_primitive_desc_query_md)                                                                \
    X(dnnl_reorder_primitive_desc_create)                                                          \
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
    case MAAS_CPU_AVX2:
        isa = dnnl_cpu_isa_avx2;
        break;
    case MAAS_CPU_AVX512:
        isa = dnnl_cpu_isa_avx512_core;
        break;
    case MAAS_CPU_AVX512_VNNI:
        isa = dnnl_cpu_isa_avx512_core_vnni;
        break;
    case MAAS_CPU_AVX512_BF16:
        isa = dnnl_cpu_isa_avx512_core_bf16;
        break;
    case MAAS_CPU_PORTABLE: /* never loaded there */
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
    /* one thread, as the BLAS side (maas_blas_set_threads) — before any primitive is made:
     * primitives plan their work for the thread count they see when made, and one made for
     * two threads starts an OpenMP thread when it runs */
    if (ok) a->omp_set_num_threads(1);
    return ok;
}

static void api_unload(dnnl_api *a) {
    if (a->lib) dlclose(a->lib);
    a->lib = NULL;
}

/* Loads oneDNN into a and makes a CPU engine and its stream; 0 when anything fails. */
static int open_engine(dnnl_api *a, dnnl_engine_t *engine, dnnl_stream_t *stream) {
    return api_load(a) && a->dnnl_engine_create(engine, dnnl_cpu, 0) == dnnl_success &&
           a->dnnl_stream_create(stream, *engine, dnnl_stream_default_flags) == dnnl_success;
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

/* Runs p on one chunk, with source and destination memories over the caller's buffers (bias:
 * NULL for none); 1 on success. */
static int exec_chunk(const dnnl_api *a, dnnl_engine_t engine, dnnl_stream_t stream,
                      dnnl_primitive_t p, const dnnl_memory_desc_t *smd, const void *src,
                      const dnnl_memory_desc_t *dmd, void *dst, dnnl_memory_t w,
                      dnnl_memory_t bias) {
    dnnl_memory_t sm, dm;
    if (a->dnnl_memory_create(&sm, smd, engine, (void *)src) != dnnl_success) return 0;
    if (a->dnnl_memory_create(&dm, dmd, engine, dst) != dnnl_success) {
        a->dnnl_memory_destroy(sm);
        return 0;
    }
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_SRC, sm}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, dm}, {DNNL_ARG_BIAS, bias}};
    int ok = a->dnnl_primitive_execute(p, stream, bias ? 4 : 3, args) == dnnl_success &&
             a->dnnl_stream_wait(stream) == dnnl_success;
    a->dnnl_memory_destroy(sm);
    a->dnnl_memory_destroy(dm);
    return ok;
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
            !open_engine(&d->api, &d->engine, &d->stream) ||
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
            if (!exec_chunk(&d->api, d->engine, d->stream, d->prim[b], &d->src_md[b],
                            xq + (size_t)done * ldx, &d->dst_md[b], acc + (size_t)done * ldc, w,
                            NULL)) {
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

/* ---- float32 ---- */

/* Memories over the caller's kernel and bias (NULL: none, *bm stays NULL); 1 on success, else
 * nothing is left to destroy. */
static int wrap_weights(const dnnl_api *a, dnnl_engine_t engine, const dnnl_memory_desc_t *w_md,
                        const float *w, const dnnl_memory_desc_t *b_md, const float *bias,
                        dnnl_memory_t *wm, dnnl_memory_t *bm) {
    *bm = NULL;
    if (a->dnnl_memory_create(wm, w_md, engine, (void *)w) != dnnl_success) return 0;
    if (bias && a->dnnl_memory_create(bm, b_md, engine, (void *)bias) != dnnl_success) {
        a->dnnl_memory_destroy(*wm);
        return 0;
    }
    return 1;
}

struct maas_fdnnl {
    int failed; /* oneDNN refused something: the caller's GEMM does everything */
    int k, n, ldx, ldy, bias;
    dnnl_api api;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_primitive_t prim[N_BUCKETS];
    dnnl_memory_desc_t src_md[N_BUCKETS], dst_md[N_BUCKETS], w_md, b_md;
};

maas_fdnnl *maas__fdnnl_new(void) {
    return calloc(1, sizeof(maas_fdnnl));
}

void maas__fdnnl_free(maas_fdnnl *d) {
    if (!d) return;
    for (int i = 0; i < N_BUCKETS; i++)
        if (d->prim[i]) d->api.dnnl_primitive_destroy(d->prim[i]);
    if (d->stream) d->api.dnnl_stream_destroy(d->stream);
    if (d->engine) d->api.dnnl_engine_destroy(d->engine);
    api_unload(&d->api);
    free(d);
}

static int make_fprim(maas_fdnnl *d, int b) {
    int m = 32 << b;
    dnnl_dims_t sd = {m, d->k}, ss = {d->ldx, 1}, dd = {m, d->n}, ds = {d->ldy, 1};
    dnnl_matmul_desc_t md;
    dnnl_primitive_desc_t pd = NULL;
    int ok = d->api.dnnl_memory_desc_init_by_strides(&d->src_md[b], 2, sd, dnnl_f32, ss) ==
                 dnnl_success &&
             d->api.dnnl_memory_desc_init_by_strides(&d->dst_md[b], 2, dd, dnnl_f32, ds) ==
                 dnnl_success &&
             d->api.dnnl_matmul_desc_init(&md, &d->src_md[b], &d->w_md, d->bias ? &d->b_md : NULL,
                                          &d->dst_md[b]) == dnnl_success &&
             d->api.dnnl_primitive_desc_create(&pd, &md, NULL, d->engine, NULL) == dnnl_success &&
             d->api.dnnl_primitive_create(&d->prim[b], pd) == dnnl_success;
    if (pd) d->api.dnnl_primitive_desc_destroy(pd);
    return ok;
}

int maas__fdnnl_run(maas_fdnnl *d, int k, int n, const float *x, int ldx, int rows, const float *w,
                    const float *bias, float *y, int ldy) {
    if (!d || rows < 32 || maas_cpu_float_gemm() != MAAS_FLOAT_GEMM_ONEDNN) return 0;
    if (!d->failed && !d->engine) {
        d->k = k, d->n = n, d->ldx = ldx, d->ldy = ldy, d->bias = bias != NULL;
        dnnl_dims_t wd = {k, n}, bd = {1, n};
        d->failed =
            !open_engine(&d->api, &d->engine, &d->stream) ||
            d->api.dnnl_memory_desc_init_by_tag(&d->w_md, 2, wd, dnnl_f32, dnnl_ab) !=
                dnnl_success ||
            d->api.dnnl_memory_desc_init_by_tag(&d->b_md, 2, bd, dnnl_f32, dnnl_ab) != dnnl_success;
    }
    /* made for one layer's shapes: anything else is left to the caller */
    if (d->failed || d->k != k || d->n != n || d->ldx != ldx || d->ldy != ldy ||
        d->bias != (bias != NULL))
        return 0;
    d->api.omp_set_num_threads(1); /* one thread, as the BLAS side (maas_blas_set_threads) */
    dnnl_memory_t wm = NULL, bm = NULL;
    if (!wrap_weights(&d->api, d->engine, &d->w_md, w, &d->b_md, bias, &wm, &bm)) return 0;
    int done = 0;
    for (int b = N_BUCKETS - 1; b >= 0 && !d->failed; b--) {
        int m = 32 << b;
        while (rows - done >= m) {
            if (!d->prim[b] && !make_fprim(d, b)) {
                d->failed = 1;
                break;
            }
            if (!exec_chunk(&d->api, d->engine, d->stream, d->prim[b], &d->src_md[b],
                            x + (size_t)done * ldx, &d->dst_md[b], y + (size_t)done * ldy, wm,
                            bm)) {
                d->failed = 1;
                break;
            }
            done += m;
        }
    }
    d->api.dnnl_memory_destroy(wm);
    if (bm) d->api.dnnl_memory_destroy(bm);
    return done;
}

/* ---- float32 convolutions ---- */

#define C_BUCKETS 6 /* 8 << 0 .. 8 << 5 = 256 samples */

struct maas_cdnnl {
    int failed; /* oneDNN refused something: the caller's im2col + GEMM does everything */
    maas_conv_geom g;
    int bias, relu;
    dnnl_api api;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_memory_desc_t w_md, b_md; /* the caller's kernel (hwio) and bias */
    dnnl_primitive_t prim[C_BUCKETS];
    dnnl_memory_desc_t src_md[C_BUCKETS], dst_md[C_BUCKETS];
    dnnl_primitive_t reorder[C_BUCKETS]; /* the kernel into the layout prim[b] wants */
    dnnl_memory_t wk[C_BUCKETS];         /* that kernel, oneDNN's buffer */
    unsigned gen[C_BUCKETS];             /* the caller's generation wk[b] was reordered at */
    int fresh[C_BUCKETS];                /* wk[b] was reordered (gen[b] means something) */
};

maas_cdnnl *maas__cdnnl_new(void) {
    return calloc(1, sizeof(maas_cdnnl));
}

void maas__cdnnl_free(maas_cdnnl *d) {
    if (!d) return;
    for (int i = 0; i < C_BUCKETS; i++) {
        if (d->prim[i]) d->api.dnnl_primitive_destroy(d->prim[i]);
        if (d->reorder[i]) d->api.dnnl_primitive_destroy(d->reorder[i]);
        if (d->wk[i]) d->api.dnnl_memory_destroy(d->wk[i]);
    }
    if (d->stream) d->api.dnnl_stream_destroy(d->stream);
    if (d->engine) d->api.dnnl_engine_destroy(d->engine);
    api_unload(&d->api);
    free(d);
}

static int same_geom(const maas_conv_geom *a, const maas_conv_geom *b) {
    return a->h == b->h && a->w == b->w && a->c == b->c && a->kh == b->kh && a->kw == b->kw &&
           a->sh == b->sh && a->sw == b->sw && a->same == b->same && a->f == b->f;
}

/* The bucket's primitive (weights in the layout oneDNN picks, relu as a post-op), its kernel
 * buffer and the reorder into it. */
static int make_cprim(maas_cdnnl *d, int b) {
    const dnnl_api *a = &d->api;
    const maas_conv_geom *g = &d->g;
    int n = 8 << b;
    dnnl_dims_t sd = {n, g->c, g->h, g->w}, dd = {n, g->f, g->oh, g->ow};
    dnnl_dims_t wd = {g->f, g->c, g->kh, g->kw}, st = {g->sh, g->sw}, pl = {g->pt, g->pl};
    /* TensorFlow's "same" puts the odd padding after: what is left of the last window */
    dnnl_dims_t pr = {(g->oh - 1) * g->sh + g->kh - g->h - g->pt,
                      (g->ow - 1) * g->sw + g->kw - g->w - g->pl};
    dnnl_memory_desc_t w_any;
    dnnl_convolution_desc_t cd;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL, rpd = NULL;
    int ok = a->dnnl_memory_desc_init_by_tag(&d->src_md[b], 4, sd, dnnl_f32, dnnl_nhwc) ==
                 dnnl_success &&
             a->dnnl_memory_desc_init_by_tag(&d->dst_md[b], 4, dd, dnnl_f32, dnnl_nhwc) ==
                 dnnl_success &&
             a->dnnl_memory_desc_init_by_tag(&w_any, 4, wd, dnnl_f32, dnnl_format_tag_any) ==
                 dnnl_success &&
             a->dnnl_convolution_forward_desc_init(
                 &cd, dnnl_forward_inference, dnnl_convolution_direct, &d->src_md[b], &w_any,
                 d->bias ? &d->b_md : NULL, &d->dst_md[b], st, pl, pr) == dnnl_success &&
             a->dnnl_primitive_attr_create(&attr) == dnnl_success;
    if (ok && d->relu)
        ok = a->dnnl_post_ops_create(&po) == dnnl_success &&
             a->dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f) ==
                 dnnl_success &&
             a->dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success;
    ok = ok && a->dnnl_primitive_desc_create(&pd, &cd, attr, d->engine, NULL) == dnnl_success &&
         a->dnnl_primitive_create(&d->prim[b], pd) == dnnl_success;
    const dnnl_memory_desc_t *wk =
        ok ? a->dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0) : NULL;
    ok = ok && wk &&
         a->dnnl_memory_create(&d->wk[b], wk, d->engine, DNNL_MEMORY_ALLOCATE) == dnnl_success &&
         a->dnnl_reorder_primitive_desc_create(&rpd, &d->w_md, d->engine, wk, d->engine, NULL) ==
             dnnl_success &&
         a->dnnl_primitive_create(&d->reorder[b], rpd) == dnnl_success;
    if (rpd) a->dnnl_primitive_desc_destroy(rpd);
    if (pd) a->dnnl_primitive_desc_destroy(pd);
    if (po) a->dnnl_post_ops_destroy(po);
    if (attr) a->dnnl_primitive_attr_destroy(attr);
    return ok;
}

int maas__cdnnl_run(maas_cdnnl *d, const maas_conv_geom *g, const float *x, int rows,
                    const float *w, const float *bias, int relu, float *y, unsigned gen) {
    if (!d || rows < 8 || maas_cpu_float_gemm() != MAAS_FLOAT_GEMM_ONEDNN) return 0;
    if (!d->failed && !d->engine) {
        d->g = *g, d->bias = bias != NULL, d->relu = relu;
        dnnl_dims_t wd = {g->f, g->c, g->kh, g->kw}, bd = {g->f};
        d->failed =
            !open_engine(&d->api, &d->engine, &d->stream) ||
            d->api.dnnl_memory_desc_init_by_tag(&d->w_md, 4, wd, dnnl_f32, dnnl_hwio) !=
                dnnl_success ||
            d->api.dnnl_memory_desc_init_by_tag(&d->b_md, 1, bd, dnnl_f32, dnnl_x) != dnnl_success;
    }
    /* made for one layer: anything else is left to the caller */
    if (d->failed || !same_geom(&d->g, g) || d->bias != (bias != NULL) || d->relu != relu) return 0;
    d->api.omp_set_num_threads(1); /* one thread, as the BLAS side (maas_blas_set_threads) */
    dnnl_memory_t wm = NULL, bm = NULL;
    if (!wrap_weights(&d->api, d->engine, &d->w_md, w, &d->b_md, bias, &wm, &bm)) return 0;
    size_t in = (size_t)g->h * g->w * g->c, out = maas_conv_out_floats(g);
    int done = 0;
    for (int b = C_BUCKETS - 1; b >= 0 && !d->failed; b--) {
        int n = 8 << b;
        while (rows - done >= n) {
            if (!d->prim[b] && !make_cprim(d, b)) {
                d->failed = 1;
                break;
            }
            dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, wm}, {DNNL_ARG_TO, d->wk[b]}};
            int stale = !d->fresh[b] || d->gen[b] != gen; /* the weights may have changed */
            if ((stale &&
                 (d->api.dnnl_primitive_execute(d->reorder[b], d->stream, 2, ra) != dnnl_success ||
                  d->api.dnnl_stream_wait(d->stream) != dnnl_success)) ||
                !exec_chunk(&d->api, d->engine, d->stream, d->prim[b], &d->src_md[b],
                            x + (size_t)done * in, &d->dst_md[b], y + (size_t)done * out, d->wk[b],
                            bm)) {
                d->failed = 1;
                break;
            }
            d->fresh[b] = 1;
            d->gen[b] = gen;
            done += n;
        }
    }
    d->api.dnnl_memory_destroy(wm);
    if (bm) d->api.dnnl_memory_destroy(bm);
    return done;
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
maas_fdnnl *maas__fdnnl_new(void) {
    return NULL;
}
void maas__fdnnl_free(maas_fdnnl *d) {
    (void)d;
}
int maas__fdnnl_run(maas_fdnnl *d, int k, int n, const float *x, int ldx, int rows, const float *w,
                    const float *bias, float *y, int ldy) {
    (void)d, (void)k, (void)n, (void)x, (void)ldx, (void)rows, (void)w, (void)bias, (void)y,
        (void)ldy;
    return 0;
}
maas_cdnnl *maas__cdnnl_new(void) {
    return NULL;
}
void maas__cdnnl_free(maas_cdnnl *d) {
    (void)d;
}
int maas__cdnnl_run(maas_cdnnl *d, const maas_conv_geom *g, const float *x, int rows,
                    const float *w, const float *bias, int relu, float *y, unsigned gen) {
    (void)d, (void)g, (void)x, (void)rows, (void)w, (void)bias, (void)relu, (void)y, (void)gen;
    return 0;
}
#endif
