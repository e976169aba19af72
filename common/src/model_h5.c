/*
 * Keras model.h5 files (the only file that includes hdf5.h). The layout is
 * documented in schemas/model-h5.md.
 * Size (~1250 lines): one adapter file per library; loading runs in a forked
 * child with its own wire format, which shares this file's readers.
 */
#include "maas/base.h"
#include "maas/clock.h"
#include "maas/dataset.h"
#include "maas/model_io.h"
#include "maas/quant.h"
#include "keras_json.h"
#include "layers_internal.h"
#include "model_h5_internal.h"

#include <hdf5.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KERAS_DIALECT_VERSION "2.15.0" /* the tf.keras dialect we write, see schemas/ */
#define MAX_NAMES 4096                 /* entries in layer_names / weight_names */
#define MAX_NAME_LEN 1024

/*
 * Debian's serial HDF5 is not thread-safe and keeps process-wide state (the
 * error-printing hook), so every entry point holds this lock. It is the one
 * piece of global mutable state in common/, forced by the library.
 */
static pthread_mutex_t h5_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct h5_guard {
    H5E_auto2_t func;
    void *data;
} h5_guard;

static void guard_enter(h5_guard *g) {
    pthread_mutex_lock(&h5_lock);
    H5Eget_auto2(H5E_DEFAULT, &g->func, &g->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* our messages replace HDF5's printing */
}

static void guard_leave(h5_guard *g) {
    H5Eclear2(H5E_DEFAULT);
    H5Eset_auto2(H5E_DEFAULT, g->func, g->data);
    pthread_mutex_unlock(&h5_lock);
}

#define CLOSE(fn, id)                                                                              \
    do {                                                                                           \
        if ((id) >= 0) fn(id);                                                                     \
        (id) = H5I_INVALID_HID;                                                                    \
    } while (0)

/* ---------------------------------------------------------------- writing */

static int attr_write_str(hid_t obj, const char *name, const char *value, H5T_cset_t cset) {
    hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate(H5S_SCALAR), a = H5I_INVALID_HID;
    int ok = t >= 0 && s >= 0 && H5Tset_size(t, H5T_VARIABLE) >= 0 && H5Tset_cset(t, cset) >= 0;
    if (ok) a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    ok = ok && a >= 0 && H5Awrite(a, t, &value) >= 0;
    CLOSE(H5Aclose, a);
    CLOSE(H5Sclose, s);
    CLOSE(H5Tclose, t);
    return ok;
}

/* A 1-D list of strings; an empty list is a zero-length float64 array, as h5py writes it. */
static int attr_write_list(hid_t obj, const char *name, const char *const *v, hsize_t n) {
    hid_t t = n ? H5Tcopy(H5T_C_S1) : H5Tcopy(H5T_NATIVE_DOUBLE);
    hid_t s = H5Screate_simple(1, &n, NULL), a = H5I_INVALID_HID;
    int ok = t >= 0 && s >= 0;
    if (ok && n) ok = H5Tset_size(t, H5T_VARIABLE) >= 0 && H5Tset_cset(t, H5T_CSET_UTF8) >= 0;
    if (ok) a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    ok = ok && a >= 0;
    if (ok && n) ok = H5Awrite(a, t, v) >= 0;
    CLOSE(H5Aclose, a);
    CLOSE(H5Sclose, s);
    CLOSE(H5Tclose, t);
    return ok;
}

/*
 * Object creation properties without timestamps: HDF5 records creation and
 * modification times in object headers by default, which would make two saves
 * of the same model differ. Without them a version's bytes (and its sha256)
 * depend on the model only.
 */
static hid_t no_times(hid_t cls) {
    hid_t p = H5Pcreate(cls);
    if (p >= 0) H5Pset_obj_track_times(p, 0);
    return p;
}

static hid_t group_create(hid_t parent, const char *name) {
    hid_t gcpl = no_times(H5P_GROUP_CREATE);
    hid_t g = gcpl >= 0 ? H5Gcreate2(parent, name, H5P_DEFAULT, gcpl, H5P_DEFAULT) : -1;
    CLOSE(H5Pclose, gcpl);
    return g;
}

static int write_dataset_as(hid_t group, const char *name, int rank, const hsize_t *dims,
                            const float *data, int compact) {
    hid_t dcpl = no_times(H5P_DATASET_CREATE), s = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5I_INVALID_HID;
    int ok = dcpl >= 0 && s >= 0 && (!compact || H5Pset_layout(dcpl, H5D_COMPACT) >= 0);
    if (ok) d = H5Dcreate2(group, name, H5T_IEEE_F32LE, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    ok = ok && d >= 0 && H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0;
    CLOSE(H5Dclose, d);
    CLOSE(H5Sclose, s);
    CLOSE(H5Pclose, dcpl);
    return ok;
}

static int write_dataset(hid_t group, const char *name, int rank, const hsize_t *dims,
                         const float *data) {
    return write_dataset_as(group, name, rank, dims, data, 0);
}

/*
 * bfloat16 as an HDF5 floating-point type: 2 bytes little-endian, sign bit 15, exponent bits
 * 7-14 (bias 127), mantissa bits 0-6 with an implied leading 1 - the upper half of a float32.
 * HDF5 converts it to float32 exactly, so h5py (and Keras through it) read these kernels as
 * float32 arrays (schemas/model-h5.md, "bf16 versions"). The caller closes it.
 */
static hid_t bf16_type(void) {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    if (t >= 0 && (H5Tset_fields(t, 15, 7, 8, 0, 7) < 0 || H5Tset_precision(t, 16) < 0 ||
                   H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, 127) < 0)) {
        H5Tclose(t);
        t = H5I_INVALID_HID;
    }
    return t;
}

/* 1 when t is exactly bf16_type()'s layout. */
static int is_bf16_type(hid_t t) {
    size_t spos, epos, esize, mpos, msize;
    return H5Tget_class(t) == H5T_FLOAT && H5Tget_size(t) == 2 && H5Tget_precision(t) == 16 &&
           H5Tget_offset(t) == 0 && H5Tget_order(t) == H5T_ORDER_LE &&
           H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize) >= 0 && spos == 15 && epos == 7 &&
           esize == 8 && mpos == 0 && msize == 7 && H5Tget_ebias(t) == 127 &&
           H5Tget_norm(t) == H5T_NORM_IMPLIED;
}

/*
 * A kernel, float32 or bf16 (file_type H5T_IEEE_F32LE or bf16_type(); data in the matching
 * memory type). A pruned one (a quarter or more of exact zeros, and big enough to matter) is
 * chunked as one piece, byte-shuffled and deflated: h5py and so Keras read it as usual, and the
 * zeros cost next to nothing. Every other kernel keeps the plain contiguous layout.
 */
static size_t dims_count(int rank, const hsize_t *dims) {
    size_t n = 1;
    for (int r = 0; r < rank; r++) n *= (size_t)dims[r];
    return n;
}

static int write_kernel_as(hid_t group, int rank, const hsize_t *dims, hid_t file_type,
                           hid_t mem_type, const void *data, size_t zeros) {
    size_t n = dims_count(rank, dims);
    int packed = n >= 16384 && zeros * 4 >= n && H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0 &&
                 H5Zfilter_avail(H5Z_FILTER_SHUFFLE) > 0;
    hid_t dcpl = no_times(H5P_DATASET_CREATE), s = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5I_INVALID_HID;
    int ok = dcpl >= 0 && s >= 0 &&
             (!packed || (H5Pset_chunk(dcpl, rank, dims) >= 0 && H5Pset_shuffle(dcpl) >= 0 &&
                          H5Pset_deflate(dcpl, 6) >= 0));
    if (ok) d = H5Dcreate2(group, "kernel:0", file_type, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    ok = ok && d >= 0 && H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0;
    CLOSE(H5Dclose, d);
    CLOSE(H5Sclose, s);
    CLOSE(H5Pclose, dcpl);
    return ok;
}

static int write_kernel(hid_t group, int rank, const hsize_t *dims, const float *w) {
    size_t n = dims_count(rank, dims), zeros = 0;
    for (size_t k = 0; k < n; k++) zeros += w[k] == 0.0f;
    return write_kernel_as(group, rank, dims, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, w, zeros);
}

/* A bf16 model's kernel: its float32 values are bf16 values, stored as such. */
static int write_kernel_bf16(hid_t group, const hsize_t *dims, const float *w) {
    size_t n = (size_t)dims[0] * (size_t)dims[1], zeros = 0;
    uint16_t *b = malloc(n * sizeof(uint16_t));
    hid_t t = b ? bf16_type() : H5I_INVALID_HID;
    for (size_t k = 0; b && k < n; k++) {
        b[k] = maas_bf16_from_float(w[k]); /* exact: the value is a bf16 */
        zeros += w[k] == 0.0f;
    }
    int ok = t >= 0 && write_kernel_as(group, 2, dims, t, t, b, zeros);
    CLOSE(H5Tclose, t);
    free(b);
    return ok;
}

/*
 * An int8 kernel: a large one chunked as one piece and deflated (pruned
 * weights are zero, so zlib takes a share off); a small one compact, inside
 * its object header.
 */
static int write_dataset_i8(hid_t group, const char *name, int rank, const hsize_t *dims,
                            const int8_t *data) {
    hid_t dcpl = no_times(H5P_DATASET_CREATE), s = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5I_INVALID_HID;
    int ok = dcpl >= 0 && s >= 0;
    if (dims_count(rank, dims) <= 16384) { /* small: in the object header, no chunk index */
        ok = ok && H5Pset_layout(dcpl, H5D_COMPACT) >= 0;
    } else {
        ok = ok && H5Pset_chunk(dcpl, rank, dims) >= 0;
        if (ok && H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) ok = H5Pset_deflate(dcpl, 6) >= 0;
    }
    if (ok) d = H5Dcreate2(group, name, H5T_STD_I8LE, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    ok = ok && d >= 0 && H5Dwrite(d, H5T_NATIVE_SCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0;
    CLOSE(H5Dclose, d);
    CLOSE(H5Sclose, s);
    CLOSE(H5Pclose, dcpl);
    return ok;
}

static const char *norm_layer_name(const maas_model *m) {
    for (int i = 0; i < m->n_layers; i++)
        if (!strcmp(m->layers[i].spec.name, "normalization")) return "maas_normalization";
    return "normalization";
}

/* Writes the model into an open file. */
static maas_err write_model(hid_t f, const maas_model *m, const maas_compile *c, char *errstr,
                            size_t errstr_size) {
    const char *norm = norm_layer_name(m);
    char *cfg = NULL, *train = NULL;
    maas_err err = maas__keras_arch_write(m, norm, &cfg, errstr, errstr_size);
    if (!err && c) err = maas__keras_training_write(c, &train, errstr, errstr_size);
    if (err) {
        free(cfg);
        return err;
    }
    int ok = attr_write_str(f, "keras_version", KERAS_DIALECT_VERSION, H5T_CSET_UTF8) &&
             attr_write_str(f, "backend", "tensorflow", H5T_CSET_UTF8) &&
             attr_write_str(f, "maas_version", "0.1.0", H5T_CSET_UTF8) &&
             attr_write_str(f, "model_config", cfg, H5T_CSET_ASCII) &&
             (!train || attr_write_str(f, "training_config", train, H5T_CSET_ASCII)) &&
             (!maas_model_is_quantized(m) ||
              attr_write_str(f, "maas_quantization", maas_quant_kind_name(maas_model_quant_kind(m)),
                             H5T_CSET_UTF8));
    free(cfg);
    free(train);
    hid_t mw = ok ? group_create(f, "model_weights") : -1;
    ok = ok && mw >= 0;
    const char *names[MAAS_MAX_LAYERS + 1];
    int n = 0;
    if (m->feat_mean) names[n++] = norm;
    for (int i = 0; i < m->n_layers; i++) names[n++] = m->layers[i].spec.name;
    ok = ok && attr_write_list(mw, "layer_names", names, (hsize_t)n) &&
         attr_write_str(mw, "keras_version", KERAS_DIALECT_VERSION, H5T_CSET_UTF8) &&
         attr_write_str(mw, "backend", "tensorflow", H5T_CSET_UTF8);
    for (int i = 0; ok && i < n; i++) {
        hid_t g = group_create(mw, names[i]);
        ok = g >= 0;
        const maas_layer *l = NULL;
        for (int j = 0; j < m->n_layers; j++)
            if (m->layers[j].spec.name == names[i]) l = &m->layers[j];
        const maas_qlayer *ql = NULL;
        if (l && m->quant && m->quant->layers[l - m->layers].wq)
            ql = &m->quant->layers[l - m->layers];
        if (ok && ql) {
            /* int8: <layer>/<layer>/kernel_q:0, kernel_scale:0, bias:0 (schemas/model-h5.md) */
            char qname[2 * MAAS_LAYER_NAME_MAX + 16], sname[2 * MAAS_LAYER_NAME_MAX + 16];
            char bname[2 * MAAS_LAYER_NAME_MAX + 16];
            snprintf(qname, sizeof(qname), "%s/kernel_q:0", names[i]);
            snprintf(sname, sizeof(sname), "%s/kernel_scale:0", names[i]);
            snprintf(bname, sizeof(bname), "%s/bias:0", names[i]);
            const char *w[3] = {qname, sname, bname};
            const maas_weight *kw = &l->weights[0]; /* Dense (in, units), Conv (kh, kw, c, f) */
            hsize_t kd[4], bd[1] = {(hsize_t)ql->n_out};
            for (int r = 0; r < kw->rank; r++) kd[r] = (hsize_t)kw->dims[r];
            int compact = ql->n_out <= 4096; /* per-unit vectors in the object header */
            hid_t inner = group_create(g, names[i]);
            ok = inner >= 0 && attr_write_list(g, "weight_names", w, l->spec.use_bias ? 3 : 2) &&
                 write_dataset_i8(inner, "kernel_q:0", kw->rank, kd, ql->wq) &&
                 write_dataset_as(inner, "kernel_scale:0", 1, bd, ql->scale, compact) &&
                 (!l->spec.use_bias ||
                  write_dataset_as(inner, "bias:0", 1, bd, m->params + l->b_off, compact));
            CLOSE(H5Gclose, inner);
        } else if (ok && l && l->spec.kind == MAAS_LAYER_DENSE) {
            /* tf.keras 2.x names: <layer>/<layer>/kernel:0 */
            char kname[2 * MAAS_LAYER_NAME_MAX + 16], bname[2 * MAAS_LAYER_NAME_MAX + 16];
            snprintf(kname, sizeof(kname), "%s/kernel:0", names[i]);
            snprintf(bname, sizeof(bname), "%s/bias:0", names[i]);
            const char *w[2] = {kname, bname};
            hsize_t kd[2] = {(hsize_t)l->n_in, (hsize_t)l->n_out}, bd[1] = {(hsize_t)l->n_out};
            hid_t inner = group_create(g, names[i]);
            ok = inner >= 0 && attr_write_list(g, "weight_names", w, l->spec.use_bias ? 2 : 1) &&
                 (m->bf16 ? write_kernel_bf16(inner, kd, m->params + l->w_off)
                          : write_kernel(inner, 2, kd, m->params + l->w_off)) &&
                 (!l->spec.use_bias || write_dataset(inner, "bias:0", 1, bd, m->params + l->b_off));
            CLOSE(H5Gclose, inner);
        } else if (ok && l && l->n_weights > 0) {
            /* tf.keras 2.x names: <layer>/<layer>/gamma:0, ..., in Keras's order */
            char wn[MAAS_LAYER_MAX_WEIGHTS][2 * MAAS_LAYER_NAME_MAX + 32];
            const char *w[MAAS_LAYER_MAX_WEIGHTS];
            for (int k = 0; k < l->n_weights; k++) {
                snprintf(wn[k], sizeof(wn[k]), "%s/%s:0", names[i], l->weights[k].name);
                w[k] = wn[k];
            }
            hid_t inner = group_create(g, names[i]);
            ok = inner >= 0 && attr_write_list(g, "weight_names", w, (hsize_t)l->n_weights);
            for (int k = 0; ok && k < l->n_weights; k++) {
                const maas_weight *mw_ = &l->weights[k];
                hsize_t d[4];
                for (int r = 0; r < mw_->rank; r++) d[r] = (hsize_t)mw_->dims[r];
                char dn[MAAS_LAYER_NAME_MAX];
                snprintf(dn, sizeof(dn), "%s:0", mw_->name);
                /* a convolution's kernel as Dense's: a pruned one deflated */
                ok = !strcmp(mw_->name, "kernel")
                         ? write_kernel(inner, mw_->rank, d, m->params + mw_->off)
                         : write_dataset(inner, dn, mw_->rank, d, m->params + mw_->off);
            }
            CLOSE(H5Gclose, inner);
        } else if (ok) {
            ok = attr_write_list(g, "weight_names", NULL, 0);
        }
        CLOSE(H5Gclose, g);
    }
    CLOSE(H5Gclose, mw);
    if (!ok)
        return maas_errf(errstr, errstr_size, MAAS_ERR_IO, "HDF5 failed while writing the model");
    return MAAS_OK;
}

static maas_err save_image_locked(const maas_model *m, const maas_compile *c, unsigned char **buf,
                                  size_t *len, char *errstr, size_t errstr_size) {
    *buf = NULL;
    *len = 0;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), fcpl = no_times(H5P_FILE_CREATE);
    hid_t f = H5I_INVALID_HID;
    maas_err err = MAAS_OK;
    /* The core driver without a backing store keeps the whole file in memory. */
    if (fapl < 0 || fcpl < 0 || H5Pset_fapl_core(fapl, 64 * 1024, 0) < 0 ||
        (f = H5Fcreate("maas-model.h5", H5F_ACC_TRUNC, fcpl, fapl)) < 0) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_IO, "cannot create an in-memory HDF5 file");
        goto done;
    }
    if ((err = write_model(f, m, c, errstr, errstr_size))) goto done;
    H5Fflush(f, H5F_SCOPE_GLOBAL);
    ssize_t size = H5Fget_file_image(f, NULL, 0);
    if (size <= 0 || (size_t)size > MAAS_H5_MAX_IMAGE) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED, "model file image size %zd",
                        size);
        goto done;
    }
    *buf = malloc((size_t)size);
    if (!*buf) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY,
                        "out of memory for the model file");
        goto done;
    }
    if (H5Fget_file_image(f, *buf, (size_t)size) != size) {
        free(*buf);
        *buf = NULL;
        err = maas_errf(errstr, errstr_size, MAAS_ERR_IO, "cannot copy the HDF5 file image");
        goto done;
    }
    *len = (size_t)size;
done:
    CLOSE(H5Fclose, f);
    CLOSE(H5Pclose, fcpl);
    CLOSE(H5Pclose, fapl);
    return err;
}

maas_err maas_model_save_image(const maas_model *m, const maas_compile *c, unsigned char **buf,
                               size_t *len, char *errstr, size_t errstr_size) {
    if (c && maas_compile_check(m, c, errstr, errstr_size)) return MAAS_ERR_INVALID_ARGUMENT;
    h5_guard g;
    guard_enter(&g);
    maas_err err = save_image_locked(m, c, buf, len, errstr, errstr_size);
    guard_leave(&g);
    return err;
}

maas_err maas_model_save(const maas_model *m, const maas_compile *c, const char *path, char *errstr,
                         size_t errstr_size) {
    unsigned char *buf;
    size_t len;
    maas_err err = maas_model_save_image(m, c, &buf, &len, errstr, errstr_size);
    if (err) return err;
    /* Same bytes as the image; written beside the target and renamed into place. */
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp)) {
        free(buf);
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT, "path too long: %s", path);
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(buf);
        return maas_errf(errstr, errstr_size, MAAS_ERR_IO, "cannot write '%s': %s", path,
                         strerror(errno));
    }
    int ok = fwrite(buf, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    free(buf);
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return maas_errf(errstr, errstr_size, MAAS_ERR_IO, "cannot write '%s': %s", path,
                         strerror(e));
    }
    return MAAS_OK;
}

/* ---------------------------------------------------------------- reading */

typedef struct strlist {
    int n;
    char **v;
} strlist;

static void strlist_release(strlist *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    l->n = 0;
    l->v = NULL;
}

/*
 * Reads a string attribute (vlen or fixed-length, scalar or 1-D) as a list.
 * A missing attribute, an empty dataspace or a zero-length non-string array
 * (h5py's empty list) gives an empty list. Returns 0 on a malformed attribute.
 */
static int attr_read_list(hid_t obj, const char *name, size_t max_len, strlist *out) {
    memset(out, 0, sizeof(*out));
    if (H5Aexists(obj, name) <= 0) return 1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT), t = -1, s = -1, mt = -1;
    int ok = 0;
    char **vbuf = NULL;
    char *fbuf = NULL;
    if (a < 0 || (t = H5Aget_type(a)) < 0 || (s = H5Aget_space(a)) < 0) goto done;
    hssize_t npts = H5Sget_simple_extent_npoints(s);
    int rank = H5Sget_simple_extent_ndims(s);
    if (H5Sget_simple_extent_type(s) == H5S_NULL || npts == 0) {
        ok = 1;
        goto done;
    }
    if (npts < 0 || npts > MAX_NAMES || rank > 1 || H5Tget_class(t) != H5T_STRING) goto done;
    out->v = calloc((size_t)npts, sizeof(char *));
    if (!out->v) goto done;
    htri_t vlen = H5Tis_variable_str(t);
    if (vlen > 0) {
        mt = H5Tcopy(H5T_C_S1);
        if (mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0)
            goto done;
        vbuf = calloc((size_t)npts, sizeof(char *));
        if (!vbuf || H5Aread(a, mt, vbuf) < 0) goto done;
        ok = 1;
        for (hssize_t i = 0; i < npts; i++) {
            size_t len = vbuf[i] ? strlen(vbuf[i]) : 0;
            if (len > max_len || !(out->v[i] = malloc(len + 1))) {
                ok = 0;
                break;
            }
            memcpy(out->v[i], vbuf[i] ? vbuf[i] : "", len + 1);
            out->n++;
        }
        H5Dvlen_reclaim(mt, s, H5P_DEFAULT, vbuf);
    } else if (vlen == 0) {
        size_t w = H5Tget_size(t);
        if (w == 0 || w > max_len || (size_t)npts * w > MAAS_H5_MAX_JSON) goto done;
        mt = H5Tcopy(t);
        fbuf = malloc((size_t)npts * w);
        if (mt < 0 || !fbuf || H5Aread(a, mt, fbuf) < 0) goto done;
        H5T_str_t pad = H5Tget_strpad(t);
        ok = 1;
        for (hssize_t i = 0; i < npts; i++) {
            const char *p = fbuf + (size_t)i * w;
            size_t len = 0;
            while (len < w && p[len]) len++;
            if (pad == H5T_STR_SPACEPAD)
                while (len > 0 && p[len - 1] == ' ') len--;
            if (!(out->v[i] = malloc(len + 1))) {
                ok = 0;
                break;
            }
            memcpy(out->v[i], p, len);
            out->v[i][len] = '\0';
            out->n++;
        }
    }
done:
    free(vbuf);
    free(fbuf);
    CLOSE(H5Tclose, mt);
    CLOSE(H5Sclose, s);
    CLOSE(H5Tclose, t);
    CLOSE(H5Aclose, a);
    if (!ok) strlist_release(out);
    return ok;
}

/* A list attribute, or Keras's chunked form name0, name1, ... for long lists. */
static int attr_read_names(hid_t obj, const char *name, strlist *out) {
    if (!attr_read_list(obj, name, MAX_NAME_LEN, out)) return 0;
    if (out->n > 0 || H5Aexists(obj, name) > 0) return 1;
    for (int chunk = 0; chunk < 64; chunk++) {
        char cname[128];
        snprintf(cname, sizeof(cname), "%s%d", name, chunk);
        if (H5Aexists(obj, cname) <= 0) break;
        strlist part;
        if (!attr_read_list(obj, cname, MAX_NAME_LEN, &part)) return strlist_release(out), 0;
        if (out->n + part.n > MAX_NAMES) {
            strlist_release(&part);
            strlist_release(out);
            return 0;
        }
        char **nv = realloc(out->v, (size_t)(out->n + part.n) * sizeof(char *));
        if (!nv) {
            strlist_release(&part);
            strlist_release(out);
            return 0;
        }
        out->v = nv;
        memcpy(out->v + out->n, part.v, (size_t)part.n * sizeof(char *));
        out->n += part.n;
        free(part.v);
    }
    return 1;
}

/* A scalar string attribute into a malloc'ed string (NULL if absent or malformed). */
static char *attr_read_string(hid_t obj, const char *name, size_t max_len, int *malformed) {
    strlist l;
    *malformed = 0;
    if (!attr_read_list(obj, name, max_len, &l)) {
        *malformed = 1;
        return NULL;
    }
    char *s = l.n == 1 ? l.v[0] : NULL;
    if (l.n == 1) l.n = 0;
    if (l.n > 1) *malformed = 1;
    strlist_release(&l);
    return s;
}

/*
 * Every component of a relative path must be a hard link: soft links can point
 * anywhere in the file and external links out of it (Keras 3 refuses both).
 */
static int path_is_hard(hid_t loc, const char *path) {
    char buf[MAX_NAME_LEN + 1];
    size_t len = strlen(path);
    if (len == 0 || len > MAX_NAME_LEN || path[0] == '/' || strstr(path, "//") ||
        path[len - 1] == '/')
        return 0;
    memcpy(buf, path, len + 1);
    for (size_t i = 0; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char saved = buf[i];
        buf[i] = '\0';
        H5L_info_t info;
        int ok = H5Lexists(loc, buf, H5P_DEFAULT) > 0 &&
                 H5Lget_info(loc, buf, &info, H5P_DEFAULT) >= 0 && info.type == H5L_TYPE_HARD;
        buf[i] = saved;
        if (!ok) return 0;
    }
    return 1;
}

/* Opens a float dataset of the given rank after the safety checks; fills dims. */
/* What a weight dataset must hold: float of any width, int8, or exactly bf16. */
enum { W_FLOAT = 0, W_INT8, W_BF16 };

static hid_t open_weights_as(hid_t g, const char *path, int rank, hsize_t *dims, const char *layer,
                             int want, maas_err *err, char *errstr, size_t errstr_size) {
    if (!path_is_hard(g, path)) {
        *err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                         "layer '%s': weight '%s' is missing or is a link", layer, path);
        return H5I_INVALID_HID;
    }
    hid_t d = H5Dopen2(g, path, H5P_DEFAULT), t = -1, s = -1, dcpl = -1;
    int ok = 0;
    if (d < 0 || (t = H5Dget_type(d)) < 0 || (s = H5Dget_space(d)) < 0 ||
        (dcpl = H5Dget_create_plist(d)) < 0) {
        *err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                         "layer '%s': cannot open weight '%s'", layer, path);
        goto done;
    }
    if (want == W_FLOAT && H5Tget_class(t) != H5T_FLOAT) {
        *err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                         "layer '%s': weight '%s' is not floating point", layer, path);
        goto done;
    }
    if (want == W_BF16 && !is_bf16_type(t)) {
        *err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                         "layer '%s': weight '%s' is not bf16 (schemas/model-h5.md)", layer, path);
        goto done;
    }
    if (want == W_INT8 &&
        (H5Tget_class(t) != H5T_INTEGER || H5Tget_size(t) != 1 || H5Tget_sign(t) != H5T_SGN_2)) {
        *err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                         "layer '%s': weight '%s' is not int8", layer, path);
        goto done;
    }
    if (H5Pget_layout(dcpl) == H5D_VIRTUAL || H5Pget_external_count(dcpl) != 0) {
        *err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                         "layer '%s': weight '%s' is stored outside the file", layer, path);
        goto done;
    }
    if (H5Sget_simple_extent_type(s) != H5S_SIMPLE || H5Sget_simple_extent_ndims(s) != rank) {
        *err = maas_errf(errstr, errstr_size, MAAS_ERR_SHAPE_MISMATCH,
                         "layer '%s': weight '%s' is not %d-D", layer, path, rank);
        goto done;
    }
    H5Sget_simple_extent_dims(s, dims, NULL);
    for (int i = 0; i < rank; i++)
        if (dims[i] < 1 || dims[i] > MAAS_MAX_PARAMS) {
            *err = maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                             "layer '%s': weight '%s' has dimension %llu, outside 1..%u", layer,
                             path, (unsigned long long)dims[i], MAAS_MAX_PARAMS);
            goto done;
        }
    ok = 1;
done:
    CLOSE(H5Pclose, dcpl);
    CLOSE(H5Sclose, s);
    CLOSE(H5Tclose, t);
    if (!ok) CLOSE(H5Dclose, d);
    return d;
}

static hid_t open_weights(hid_t g, const char *path, int rank, hsize_t *dims, const char *layer,
                          maas_err *err, char *errstr, size_t errstr_size) {
    return open_weights_as(g, path, rank, dims, layer, W_FLOAT, err, errstr, errstr_size);
}

/* A bf16 kernel (checked by open_weights_as) into n float32s, exactly; 1 on success. */
static int read_kernel_bf16(hid_t d, float *w, size_t n) {
    uint16_t *b = malloc((n ? n : 1) * sizeof(uint16_t));
    hid_t t = b ? bf16_type() : H5I_INVALID_HID;
    int ok = t >= 0 && H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, b) >= 0;
    for (size_t k = 0; ok && k < n; k++) w[k] = maas_bf16_to_float(b[k]);
    CLOSE(H5Tclose, t);
    free(b);
    return ok;
}

/* One layer group listed in layer_names that carries weights. */
typedef struct weighted {
    char *name;
    strlist w;
} weighted;

typedef struct load_state {
    hid_t f, mw;
    maas_keras_arch arch;
    int arch_ok;
    weighted *wl;
    int n_wl;
} load_state;

static void load_state_release(load_state *st) {
    for (int i = 0; i < st->n_wl; i++) {
        free(st->wl[i].name);
        strlist_release(&st->wl[i].w);
    }
    free(st->wl);
    if (st->arch_ok) maas__keras_arch_release(&st->arch);
    CLOSE(H5Gclose, st->mw);
    CLOSE(H5Fclose, st->f);
}

/* Collects the layer groups that have weights, in layer_names order. */
static maas_err collect_weighted(load_state *st, char *errstr, size_t errstr_size) {
    strlist names;
    if (!attr_read_names(st->mw, "layer_names", &names))
        return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                         "model_weights has a malformed layer_names attribute");
    maas_err err = MAAS_OK;
    st->wl = calloc((size_t)names.n + 1, sizeof(weighted));
    if (!st->wl) err = maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; !err && i < names.n; i++) {
        if (!path_is_hard(st->mw, names.v[i]) || strchr(names.v[i], '/')) {
            err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                            "layer '%s' is listed in layer_names but has no group", names.v[i]);
            break;
        }
        hid_t g = H5Gopen2(st->mw, names.v[i], H5P_DEFAULT);
        strlist w;
        int ok = g >= 0 && attr_read_names(g, "weight_names", &w);
        CLOSE(H5Gclose, g);
        if (!ok) {
            err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                            "layer '%s' has a malformed weight_names attribute", names.v[i]);
            break;
        }
        if (w.n == 0) continue;
        st->wl[st->n_wl].name = names.v[i];
        st->wl[st->n_wl++].w = w;
        names.v[i] = NULL;
    }
    strlist_release(&names); /* the names moved into wl are NULL here */
    return err;
}

static maas_err load_locked(const void *buf, size_t len, maas_model **out, maas_model_info *info,
                            char *errstr, size_t errstr_size) {
    maas_err err = MAAS_OK;
    *out = NULL;
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    if (len < 8 || memcmp(buf, sig, 8) != 0) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "not an HDF5 file");
        return err;
    }
    if (len > MAAS_H5_MAX_IMAGE) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                        "model file is larger than %zu bytes", MAAS_H5_MAX_IMAGE);
        return err;
    }
    load_state st = {.f = H5I_INVALID_HID, .mw = H5I_INVALID_HID};
    maas_model *m = NULL;
    maas_layer *planned = NULL; /* the config's layers, shapes checked before the model is made */
    char *cfg = NULL, *train = NULL, *kv = NULL, *be = NULL;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fapl_core(fapl, 64 * 1024, 0) < 0 ||
        H5Pset_file_image(fapl, (void *)buf, len) < 0 ||
        (st.f = H5Fopen("maas-model.h5", H5F_ACC_RDONLY, fapl)) < 0) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                        "the HDF5 file is truncated or corrupt (%zu bytes)", len);
        goto done;
    }
    int bad;
    cfg = attr_read_string(st.f, "model_config", MAAS_H5_MAX_JSON, &bad);
    if (!cfg) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                        bad ? "the model_config attribute is malformed or too large"
                            : "no model_config attribute: not a Keras model file");
        goto done;
    }
    if ((err = maas__keras_arch_parse(cfg, strlen(cfg), &st.arch, errstr, errstr_size))) goto done;
    st.arch_ok = 1;
    if (!path_is_hard(st.f, "model_weights") ||
        (st.mw = H5Gopen2(st.f, "model_weights", H5P_DEFAULT)) < 0) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                        "the file has no model_weights group");
        goto done;
    }
    if ((err = collect_weighted(&st, errstr, errstr_size))) goto done;
    /* maas's int8 versions (schemas/model-h5.md): kernel_q + kernel_scale per Dense layer;
     * bf16 versions: kernel:0 stored as bf16 */
    int quant = 0, bf16 = 0;
    {
        char *qa = attr_read_string(st.f, "maas_quantization", 64, &bad);
        if (qa && strcmp(qa, "int8") && strcmp(qa, "bf16")) {
            err = maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                            "unsupported maas_quantization '%.32s' (known: int8, bf16)", qa);
            free(qa);
            goto done;
        }
        quant = qa && !strcmp(qa, "int8");
        bf16 = qa && !strcmp(qa, "bf16");
        free(qa);
    }
    int kernel_as = quant ? W_INT8 : bf16 ? W_BF16 : W_FLOAT;

    /* Pair the file's weighted layers with the config's, in order, as Keras does. */
    maas_keras_arch *a = &st.arch;
    int norm_weights = a->norm && !a->norm_mean;
    /* Shapes first: everything is checked before the model is allocated. */
    int w_idx = 0, width = a->n_inputs;
    hsize_t dims[2];
    if (norm_weights) {
        weighted *e = &st.wl[w_idx++];
        if (e->w.n < 2) {
            err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                            "Normalization layer '%s' needs mean and variance weights", e->name);
            goto done;
        }
        hid_t g = H5Gopen2(st.mw, e->name, H5P_DEFAULT);
        hid_t dm = g >= 0 ? open_weights(g, e->w.v[0], 1, dims, e->name, &err, errstr, errstr_size)
                          : H5I_INVALID_HID;
        hsize_t vd[2];
        hid_t dv = dm >= 0 ? open_weights(g, e->w.v[1], 1, vd, e->name, &err, errstr, errstr_size)
                           : H5I_INVALID_HID;
        int ok = dm >= 0 && dv >= 0 && vd[0] == dims[0];
        if (ok && (width == 0 || (hsize_t)width == dims[0])) {
            width = a->n_inputs = (int)dims[0];
            a->n_norm = width;
            a->norm_mean = malloc((size_t)width * sizeof(float));
            a->norm_var = malloc((size_t)width * sizeof(float));
            ok = a->norm_mean && a->norm_var &&
                 H5Dread(dm, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a->norm_mean) >= 0 &&
                 H5Dread(dv, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a->norm_var) >= 0;
        } else if (ok) {
            err = maas_errf(errstr, errstr_size, MAAS_ERR_SHAPE_MISMATCH,
                            "Normalization layer '%s' has %llu features, the input has %d", e->name,
                            (unsigned long long)dims[0], width);
            ok = 0;
        }
        CLOSE(H5Dclose, dm);
        CLOSE(H5Dclose, dv);
        CLOSE(H5Gclose, g);
        if (!ok) {
            if (!errstr || !errstr[0])
                err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                                "Normalization layer '%s' has unreadable statistics", e->name);
            goto done;
        }
    }
    /* The input width from the first kernel when the config does not say (a Dense first) */
    if (width == 0 && st.n_wl > w_idx && a->n_layers > 0 && a->layers[0].kind == MAAS_LAYER_DENSE &&
        st.wl[w_idx].w.n > 0) {
        weighted *e = &st.wl[w_idx];
        hid_t g = H5Gopen2(st.mw, e->name, H5P_DEFAULT);
        hid_t d = g >= 0 ? open_weights_as(g, e->w.v[0], 2, dims, e->name, kernel_as, &err, errstr,
                                           errstr_size)
                         : H5I_INVALID_HID;
        int found = d >= 0;
        if (found) width = a->n_inputs = (int)dims[0];
        CLOSE(H5Dclose, d);
        CLOSE(H5Gclose, g);
        if (!found) {
            if (!err)
                err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                                "layer '%s' has no readable kernel", e->name);
            goto done;
        }
    }
    if (width == 0) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                        "model_config does not give the input's shape");
        goto done;
    }
    maas_net_size ns;
    if (!(planned = malloc((size_t)a->n_layers * sizeof(*planned)))) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    if ((err =
             maas__layers_plan(width, a->layers, a->n_layers, planned, &ns, errstr, errstr_size))) {
        if (err != MAAS_ERR_OUT_OF_MEMORY) err = MAAS_ERR_BAD_FORMAT;
        goto done;
    }
    int expect = norm_weights;
    for (int i = 0; i < a->n_layers; i++) expect += planned[i].n_weights > 0;
    if (st.n_wl != expect) {
        err = maas_errf(
            errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
            "the file has weights for %d layers but model_config has %d layers with weights",
            st.n_wl, expect);
        goto done;
    }
    int mlp = 1; /* bf16 files: kernels of Dense layers only */
    for (int i = 0; i < a->n_layers; i++)
        mlp &= planned[i].n_weights == 0 || a->layers[i].kind == MAAS_LAYER_DENSE;
    if (bf16 && !mlp) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                        "maas_quantization bf16 on a model with weights outside Dense layers");
        goto done;
    }
    for (int i = 0, k = w_idx; i < a->n_layers; i++) {
        const maas_layer *pl = &planned[i];
        const maas_layer_spec *s = &pl->spec;
        if (pl->n_weights == 0) continue;
        weighted *e = &st.wl[k++];
        /* int8 files: every Dense and convolution kernel is int8 (kernel_q + kernel_scale) */
        int cols, takes_q = quant && maas__layer_kernel_matrix(pl, NULL, &cols);
        int is_kernel = takes_q || s->kind == MAAS_LAYER_DENSE, want_n = pl->n_weights + takes_q;
        const char *cls = maas_layer_class(s);
        if (e->w.n != want_n) {
            err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                            "%s layer '%s' has %d weights in the file, expected %d", cls, s->name,
                            e->w.n, want_n);
            goto done;
        }
        hid_t g = H5Gopen2(st.mw, e->name, H5P_DEFAULT);
        int ok = g >= 0;
        for (int w = 0; ok && w < e->w.n; w++) {
            /* an int8 kernel: kernel_q (the kernel's shape), kernel_scale and bias (units) */
            const maas_weight *pw = &pl->weights[takes_q && w > 0 ? w - 1 : w];
            if (takes_q && w == 1) pw = &pl->weights[pl->n_weights - 1];
            int rank = pw->rank, want_dims[4];
            for (int r = 0; r < rank; r++) want_dims[r] = pw->dims[r];
            if (takes_q && w == 1) { /* kernel_scale: one per unit or filter */
                rank = 1;
                want_dims[0] = cols;
            }
            hsize_t d4[4];
            hid_t d = open_weights_as(g, e->w.v[w], rank, d4, e->name,
                                      w == 0 && is_kernel ? kernel_as : W_FLOAT, &err, errstr,
                                      errstr_size);
            ok = d >= 0;
            CLOSE(H5Dclose, d);
            for (int r = 0; ok && r < rank; r++)
                if (d4[r] != (hsize_t)want_dims[r]) {
                    char got[96] = "", want[96] = "";
                    for (int q = 0; q < rank; q++) {
                        size_t gl = strlen(got), wl = strlen(want);
                        snprintf(got + gl, sizeof(got) - gl, "%s%llu", q ? "x" : "",
                                 (unsigned long long)d4[q]);
                        snprintf(want + wl, sizeof(want) - wl, "%s%d", q ? "x" : "", want_dims[q]);
                    }
                    err = maas_errf(errstr, errstr_size, MAAS_ERR_SHAPE_MISMATCH,
                                    "%s layer '%s': %s is %s, the model needs %s", cls, s->name,
                                    takes_q && w == 1 ? "kernel_scale" : pw->name, got, want);
                    ok = 0;
                }
        }
        CLOSE(H5Gclose, g);
        if (!ok) goto done;
    }
    /* Build with zero initializers (weights come from the file), then restore the specs. */
    maas_layer_spec specs[MAAS_MAX_LAYERS];
    for (int i = 0; i < a->n_layers; i++) {
        specs[i] = a->layers[i];
        specs[i].kernel_init = specs[i].bias_init = MAAS_INIT_ZEROS;
    }
    if ((err = maas_model_create(&m, a->n_inputs, specs, a->n_layers, NULL, errstr, errstr_size))) {
        /* the file describes a model maas cannot build; out of memory stays what it is */
        if (err != MAAS_ERR_OUT_OF_MEMORY) err = MAAS_ERR_BAD_FORMAT;
        goto done;
    }
    for (int i = 0; i < m->n_layers; i++) { /* keep the default names assigned by new */
        if (a->layers[i].name[0] == '\0')
            snprintf(a->layers[i].name, sizeof(a->layers[i].name), "%s", m->layers[i].spec.name);
        m->layers[i].spec = a->layers[i];
    }
    for (int i = 0, k = w_idx; i < m->n_layers; i++) {
        maas_layer *l = &m->layers[i];
        if (l->n_weights == 0) continue;
        weighted *e = &st.wl[k++];
        int rows, cols; /* the kernel as a matrix (int8 files: Dense and convolutions) */
        int takes_q = quant && maas__layer_kernel_matrix(l, &rows, &cols);
        if (l->spec.kind != MAAS_LAYER_DENSE && !takes_q) { /* float weights, Keras's order */
            hid_t g = H5Gopen2(st.mw, e->name, H5P_DEFAULT);
            int ok = g >= 0;
            for (int w = 0; ok && w < l->n_weights; w++) {
                hsize_t d4[4];
                hid_t d = open_weights(g, e->w.v[w], l->weights[w].rank, d4, e->name, &err, errstr,
                                       errstr_size);
                ok = d >= 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                       m->params + l->weights[w].off) >= 0;
                CLOSE(H5Dclose, d);
            }
            CLOSE(H5Gclose, g);
            if (!ok) {
                err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                                "%s layer '%s': cannot read its weights",
                                maas_layer_class(&l->spec), l->spec.name);
                maas_model_free(m);
                m = NULL;
                goto done;
            }
            continue;
        }
        hid_t g = H5Gopen2(st.mw, e->name, H5P_DEFAULT);
        int8_t *wq = NULL;
        float *scale = NULL;
        if (takes_q) {
            wq = malloc((size_t)rows * (size_t)cols);
            scale = malloc((size_t)cols * sizeof(float));
        }
        for (int w = 0; w < e->w.n; w++) {
            hsize_t d4[4];
            hid_t d = open_weights_as(g, e->w.v[w], w == 0 ? l->weights[0].rank : 1, d4, e->name,
                                      w == 0 ? kernel_as : W_FLOAT, &err, errstr, errstr_size);
            int ok = d >= 0 && (!takes_q || (wq && scale));
            if (ok && bf16 && w == 0)
                ok = read_kernel_bf16(d, m->params + l->w_off, (size_t)l->n_in * l->n_out);
            else if (ok && takes_q && w == 0)
                ok = H5Dread(d, H5T_NATIVE_SCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, wq) >= 0;
            else if (ok && takes_q && w == 1)
                ok = H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, scale) >= 0;
            else if (ok)
                ok = H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                             m->params + (w == 0 ? l->w_off : l->b_off)) >= 0;
            CLOSE(H5Dclose, d);
            if (ok && takes_q && w == e->w.n - 1) {
                maas_err qe = maas_quant_set_layer(m, i, wq, scale, errstr, errstr_size);
                if (qe) {
                    free(wq);
                    free(scale);
                    CLOSE(H5Gclose, g);
                    err = qe;
                    maas_model_free(m);
                    m = NULL;
                    goto done;
                }
            }
            if (!ok) {
                free(wq);
                free(scale);
                CLOSE(H5Gclose, g);
                err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                                "%s layer '%s': cannot read weight '%s'",
                                maas_layer_class(&l->spec), l->spec.name, e->w.v[w]);
                maas_model_free(m);
                m = NULL;
                goto done;
            }
        }
        free(wq);
        free(scale);
        CLOSE(H5Gclose, g);
    }
    if ((err = maas_model_check_finite(m, errstr, errstr_size)) ||
        (bf16 && (err = maas_bf16_attach(m, errstr, errstr_size)))) {
        maas_model_free(m);
        m = NULL;
        goto done;
    }
    if (a->norm) {
        int n = m->n_inputs;
        float *mean = malloc((size_t)n * sizeof(float)), *std = malloc((size_t)n * sizeof(float));
        int ok = mean && std && (a->n_norm == 1 || a->n_norm == n);
        for (int i = 0; ok && i < n; i++) {
            int j = a->n_norm == 1 ? 0 : i;
            mean[i] = a->norm_mean[j];
            std[i] = sqrtf(a->norm_var[j]);
            ok = isfinite(mean[i]) && isfinite(std[i]);
        }
        if (!ok || (err = maas_model_set_standardization(m, mean, std, errstr, errstr_size))) {
            if (!ok)
                err = maas_errf(errstr, errstr_size, MAAS_ERR_NON_FINITE,
                                "Normalization layer '%s' has invalid statistics", a->norm_name);
            maas_model_free(m);
            m = NULL;
        }
        free(mean);
        free(std);
        if (!m) goto done;
    }
    if (info) {
        memset(info, 0, sizeof(*info));
        snprintf(info->name, sizeof(info->name), "%s", a->name);
        kv = attr_read_string(st.f, "keras_version", 64, &bad);
        be = attr_read_string(st.f, "backend", 64, &bad);
        snprintf(info->keras_version, sizeof(info->keras_version), "%s", kv ? kv : "");
        snprintf(info->backend, sizeof(info->backend), "%s", be ? be : "");
        train = attr_read_string(st.f, "training_config", MAAS_H5_MAX_JSON, &bad);
        if (train) {
            /* A training config we don't understand does not stop serving the model. */
            char note[MAAS_ERRSTR_SIZE];
            if (maas__keras_training_parse(train, strlen(train), &info->compile, note,
                                           sizeof(note)) == MAAS_OK &&
                maas_compile_check(m, &info->compile, note, sizeof(note)) == MAAS_OK)
                info->has_compile = 1;
            else
                snprintf(info->compile_note, sizeof(info->compile_note), "%s", note);
        }
    }
done:
    free(planned);
    free(cfg);
    free(train);
    free(kv);
    free(be);
    CLOSE(H5Pclose, fapl);
    load_state_release(&st);
    if (!m && !err) err = MAAS_ERR_BAD_FORMAT;
    *out = m;
    return err;
}

maas_err maas__model_load_image_direct(const void *buf, size_t len, maas_model **out,
                                       maas_model_info *info, char *errstr, size_t errstr_size) {
    h5_guard g;
    guard_enter(&g);
    maas_err err = load_locked(buf, len, out, info, errstr, errstr_size);
    guard_leave(&g);
    return err;
}

/*
 * Isolation. HDF5 1.10 can crash on corrupted files (seen here: a flipped byte
 * in a global-heap string makes H5Aread copy out of bounds), and model files
 * are untrusted. So the file is parsed in a forked child that sends the model
 * back through a pipe; a child that crashes or hangs becomes a BAD_FORMAT
 * error instead of taking the worker down. A model load is rare (versions are
 * cached), so the fork is cheap by comparison.
 */
#define ISOLATE_MAGIC 0x6d616173u /* "maas" */
/* A healthy load takes well under a second per 100 MiB; a file that keeps HDF5
 * busy longer than this is treated as corrupt. */
#define ISOLATE_TIMEOUT_MS(len) (5000LL + (long long)((len) >> 20) * 20)

typedef struct iso_header {
    uint32_t magic;
    int32_t err;
    char errstr[MAAS_ERRSTR_SIZE];
    int32_t n_inputs, n_layers, has_std, has_quant, has_bf16;
    uint64_t n_params;
    maas_model_info info;
} iso_header;

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return 0;
        c += w;
        n -= (size_t)w;
    }
    return 1;
}

/* Reads exactly n bytes before the deadline (CLOCK_MONOTONIC ms). */
static int read_all(int fd, void *p, size_t n, long long deadline_ms) {
    char *c = p;
    while (n > 0) {
        long long left = deadline_ms - (long long)maas_mono_ms();
        if (left <= 0) return 0;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) return 0;
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return 0;
        c += r;
        n -= (size_t)r;
    }
    return 1;
}

static void child_load(int fd, const void *buf, size_t len) {
    /* A crash must end this child, not run the parent's handlers (a test
     * framework's would resume the parent's work in here). */
    const int fatal[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    for (size_t i = 0; i < MAAS_ARRAY_LEN(fatal); i++) signal(fatal[i], SIG_DFL);
    iso_header h;
    memset(&h, 0, sizeof(h));
    h.magic = ISOLATE_MAGIC;
    maas_model *m = NULL;
    h.err = load_locked(buf, len, &m, &h.info, h.errstr, sizeof(h.errstr));
    int ok;
    if (m) {
        h.n_inputs = m->n_inputs;
        h.n_layers = m->n_layers;
        h.n_params = m->n_params;
        h.has_std = m->feat_mean != NULL;
        h.has_quant = m->quant != NULL;
        h.has_bf16 = m->bf16 != NULL;
        ok = write_all(fd, &h, sizeof(h));
        for (int i = 0; ok && i < m->n_layers; i++)
            ok = write_all(fd, &m->layers[i].spec, sizeof(maas_layer_spec));
        ok = ok && write_all(fd, m->params, m->n_params * sizeof(float));
        if (ok && h.has_std)
            ok = write_all(fd, m->feat_mean, (size_t)m->n_inputs * sizeof(float)) &&
                 write_all(fd, m->feat_std, (size_t)m->n_inputs * sizeof(float));
        for (int i = 0; ok && h.has_quant && i < m->n_layers; i++) {
            const maas_qlayer *ql = &m->quant->layers[i];
            if (!ql->wq) continue;
            ok = write_all(fd, ql->wq, (size_t)ql->n_in * (size_t)ql->n_out) &&
                 write_all(fd, ql->scale, (size_t)ql->n_out * sizeof(float));
        }
    } else {
        ok = write_all(fd, &h, sizeof(h));
    }
    _exit(ok ? 0 : 1);
}

static maas_err parent_receive(int fd, size_t len, maas_model **out, maas_model_info *info,
                               char *errstr, size_t errstr_size) {
    long long deadline = (long long)maas_mono_ms() + ISOLATE_TIMEOUT_MS(len);
    iso_header *h = malloc(sizeof(*h));
    maas_layer_spec *specs = malloc(MAAS_MAX_LAYERS * sizeof(*specs));
    float *mean = NULL, *std = NULL;
    maas_model *m = NULL;
    maas_err err = MAAS_ERR_BAD_FORMAT;
    if (!h || !specs) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    if (!read_all(fd, h, sizeof(*h), deadline) || h->magic != ISOLATE_MAGIC) {
        maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                  "the HDF5 library failed on this file (corrupt file)");
        goto done;
    }
    h->errstr[sizeof(h->errstr) - 1] = '\0';
    if (h->err != MAAS_OK) {
        err = (h->err > 0 && h->err < MAAS_ERR__COUNT) ? (maas_err)h->err : MAAS_ERR_BAD_FORMAT;
        maas_errf(errstr, errstr_size, err, "%s", h->errstr);
        goto done;
    }
    /* The child is our code, but it read untrusted bytes: check what it sends. */
    if (h->n_layers < 1 || h->n_layers > MAAS_MAX_LAYERS || h->n_inputs < 1 ||
        h->n_inputs > MAAS_MAX_UNITS || h->n_params > MAAS_MAX_PARAMS ||
        !read_all(fd, specs, (size_t)h->n_layers * sizeof(*specs), deadline)) {
        maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "the model loader sent a bad reply");
        goto done;
    }
    maas_layer_spec zeroed[MAAS_MAX_LAYERS];
    for (int i = 0; i < h->n_layers; i++) {
        specs[i].name[MAAS_LAYER_NAME_MAX - 1] = '\0';
        zeroed[i] = specs[i];
        zeroed[i].kernel_init = zeroed[i].bias_init = MAAS_INIT_ZEROS;
    }
    m = maas_model_new(h->n_inputs, zeroed, h->n_layers, NULL, errstr, errstr_size);
    if (!m || m->n_params != h->n_params ||
        !read_all(fd, m->params, m->n_params * sizeof(float), deadline)) {
        if (m)
            maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                      "the model loader sent a bad reply");
        maas_model_free(m);
        m = NULL;
        goto done;
    }
    for (int i = 0; i < m->n_layers; i++) m->layers[i].spec = specs[i];
    if (h->has_std) {
        size_t n = (size_t)m->n_inputs;
        mean = malloc(n * sizeof(float));
        std = malloc(n * sizeof(float));
        if (!mean || !std || !read_all(fd, mean, n * sizeof(float), deadline) ||
            !read_all(fd, std, n * sizeof(float), deadline) ||
            maas_model_set_standardization(m, mean, std, errstr, errstr_size) != MAAS_OK) {
            maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                      "the model loader sent a bad reply");
            maas_model_free(m);
            m = NULL;
            goto done;
        }
    }
    /* int8 versions: every Dense and convolution kernel of a quantized file is quantized */
    for (int i = 0; h->has_quant && i < m->n_layers; i++) {
        int rows, cols;
        if (!maas__layer_kernel_matrix(&m->layers[i], &rows, &cols)) continue;
        size_t nw = (size_t)rows * (size_t)cols;
        int8_t *wq = malloc(nw ? nw : 1);
        float *scale = malloc((size_t)cols * sizeof(float));
        int ok = wq && scale && read_all(fd, wq, nw, deadline) &&
                 read_all(fd, scale, (size_t)cols * sizeof(float), deadline);
        maas_err qe = ok ? maas_quant_set_layer(m, i, wq, scale, errstr, errstr_size)
                         : maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                                     "the model loader sent a bad reply");
        free(wq);
        free(scale);
        if (qe) {
            maas_model_free(m);
            m = NULL;
            err = qe;
            goto done;
        }
    }
    if (maas_model_check_finite(m, errstr, errstr_size)) {
        maas_model_free(m);
        m = NULL;
        err = MAAS_ERR_NON_FINITE;
        goto done;
    }
    if (h->has_bf16 && maas_bf16_attach(m, errstr, errstr_size)) {
        maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "the model loader sent a bad reply");
        maas_model_free(m);
        m = NULL;
        goto done;
    }
    if (info) {
        *info = h->info;
        info->compile_note[sizeof(info->compile_note) - 1] = '\0';
        info->keras_version[sizeof(info->keras_version) - 1] = '\0';
        info->backend[sizeof(info->backend) - 1] = '\0';
        info->name[sizeof(info->name) - 1] = '\0';
    }
    err = MAAS_OK;
done:
    free(mean);
    free(std);
    free(specs);
    free(h);
    *out = m;
    return err;
}

/* One load in a child process; *hung when the child was still at it at the deadline (killed). */
static maas_err load_isolated(const void *buf, size_t len, maas_model **out, maas_model_info *info,
                              int *hung, char *errstr, size_t errstr_size) {
    *hung = 0;
    long long t0 = (long long)maas_mono_ms();
    int fds[2];
    if (pipe(fds) != 0)
        return maas_errf(errstr, errstr_size, MAAS_ERR_IO, "pipe: %s", strerror(errno));
    h5_guard g;
    guard_enter(&g); /* no other thread is inside HDF5 while we fork */
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        child_load(fds[1], buf, len); /* does not return */
    }
    guard_leave(&g);
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "fork: %s", strerror(errno));
    }
    maas_err err = parent_receive(fds[0], len, out, info, errstr, errstr_size);
    close(fds[0]);
    int status = 0;
    if (err == MAAS_OK) {
        waitpid(pid, &status, 0);
    } else {
        /* a hung or crashed child: make sure it is gone */
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        /* still running at the deadline (not a header that said no, nor a crash) */
        *hung = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL &&
                (long long)maas_mono_ms() >= t0 + ISOLATE_TIMEOUT_MS(len);
        if (WIFSIGNALED(status) && WTERMSIG(status) != SIGKILL)
            maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                      "the file is corrupt (the HDF5 library crashed reading it: signal %d)",
                      WTERMSIG(status));
    }
    return err;
}

maas_err maas_model_load_image(const void *buf, size_t len, maas_model **out, maas_model_info *info,
                               char *errstr, size_t errstr_size) {
    if (errstr && errstr_size) errstr[0] = '\0';
    *out = NULL;
    /* A child that hung may not be the file's doing: it is forked from a process whose other
     * threads (the broker client's) may hold a lock at that instant that the child then waits
     * for forever (seen once under ASan, whose allocator takes no lock around fork: a valid
     * model read as corrupt). One more try; a file that hangs HDF5 hangs it twice. */
    int hung = 0;
    maas_err err = load_isolated(buf, len, out, info, &hung, errstr, errstr_size);
    if (err && hung) err = load_isolated(buf, len, out, info, &hung, errstr, errstr_size);
    return err;
}

maas_err maas_model_load(const char *path, maas_model **out, maas_model_info *info, char *errstr,
                         size_t errstr_size) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return maas_errf(errstr, errstr_size, MAAS_ERR_IO, "cannot open '%s': %s", path,
                         strerror(errno));
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || (size_t)size > MAAS_H5_MAX_IMAGE || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return maas_errf(errstr, errstr_size, size < 0 ? MAAS_ERR_IO : MAAS_ERR_LIMIT_EXCEEDED,
                         "'%s': unreadable or larger than %zu bytes", path, MAAS_H5_MAX_IMAGE);
    }
    unsigned char *buf = malloc(size ? (size_t)size : 1);
    size_t got = buf ? fread(buf, 1, (size_t)size, f) : 0;
    fclose(f);
    if (!buf || got != (size_t)size) {
        free(buf);
        return maas_errf(errstr, errstr_size, buf ? MAAS_ERR_IO : MAAS_ERR_OUT_OF_MEMORY,
                         "cannot read '%s'", path);
    }
    char sub[MAAS_ERRSTR_SIZE];
    maas_err err = maas_model_load_image(buf, (size_t)size, out, info, sub, sizeof(sub));
    free(buf);
    if (err) maas_errf(errstr, errstr_size, err, "%s: %s", path, sub);
    return err;
}

maas_err maas_model_image_for_keras(const void *buf, size_t len, unsigned char **out,
                                    size_t *out_len, int *converted, char *errstr,
                                    size_t errstr_size) {
    *out = NULL;
    *out_len = 0;
    if (converted) *converted = 0;
    maas_model *m;
    maas_model_info info;
    maas_err err = maas_model_load_image(buf, len, &m, &info, errstr, errstr_size);
    if (err) return err;
    if (!maas_model_is_quantized(m)) {
        maas_model_free(m);
        if (!(*out = malloc(len ? len : 1)))
            return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
        memcpy(*out, buf, len);
        *out_len = len;
        return MAAS_OK;
    }
    maas_model_dequantize(m);
    err = maas_model_save_image(m, info.has_compile ? &info.compile : NULL, out, out_len, errstr,
                                errstr_size);
    maas_model_free(m);
    if (!err && converted) *converted = 1;
    return err;
}

/* ---------------------------------------------------------------- datasets */

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* Asks the kernel to back a large fresh buffer at once rather than a page per fault while it
 * is filled (188 MB: ~20 ms less of a ~0.13 s read, measured); a kernel without it says
 * EINVAL and the pages come by faults as before. */
static void prefault(void *p, size_t len) {
    const uintptr_t page = 4096;
    if (len < ((size_t)16 << 20)) return;
    uintptr_t a = ((uintptr_t)p + page - 1) & ~(page - 1), e = ((uintptr_t)p + len) & ~(page - 1);
    if (e > a) (void)madvise((void *)a, e - a, MADV_POPULATE_WRITE);
}

maas_err maas_h5_read_matrix(const char *path, const char *dataset, maas_table *out, char *errstr,
                             size_t errstr_size) {
    memset(out, 0, sizeof(*out));
    h5_guard g;
    guard_enter(&g);
    maas_err err = MAAS_OK;
    hid_t f = H5I_INVALID_HID, d = H5I_INVALID_HID, s = H5I_INVALID_HID, t = H5I_INVALID_HID;
    hid_t dcpl = H5I_INVALID_HID;
    const char *rel = dataset[0] == '/' ? dataset + 1 : dataset;
    if ((f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_IO, "cannot open '%s' as HDF5", path);
        goto done;
    }
    if (!path_is_hard(f, rel) || (d = H5Dopen2(f, rel, H5P_DEFAULT)) < 0) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "'%s' has no dataset '%s'", path,
                        dataset);
        goto done;
    }
    s = H5Dget_space(d);
    t = H5Dget_type(d);
    dcpl = H5Dget_create_plist(d);
    int rank = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
    H5T_class_t cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    if (rank < 1 || rank > 4 || (cls != H5T_FLOAT && cls != H5T_INTEGER) || dcpl < 0 ||
        H5Pget_layout(dcpl) == H5D_VIRTUAL || H5Pget_external_count(dcpl) != 0) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                        "'%s:%s' must be a numeric dataset of 1 to 4 dimensions stored in the file",
                        path, dataset);
        goto done;
    }
    /* rows x the rest: an image set (n, 28, 28) or (n, h, w, c) gives flat rows, row-major -
     * channels last, as the layers take them (README, "Layers") */
    hsize_t all[4] = {0, 1, 1, 1}, dims[2];
    H5Sget_simple_extent_dims(s, all, NULL);
    dims[0] = all[0];
    dims[1] = 1;
    for (int i = 1; i < rank; i++) {
        if (all[i] == 0 || all[i] > MAAS_DATA_MAX_COLS) dims[1] = 0;
        if (dims[1] <= MAAS_DATA_MAX_COLS) dims[1] *= all[i];
    }
    if (dims[0] == 0 || dims[1] == 0 || dims[1] > MAAS_DATA_MAX_COLS ||
        dims[0] > MAAS_DATA_MAX_CELLS / dims[1]) {
        err = maas_errf(errstr, errstr_size, dims[0] ? MAAS_ERR_LIMIT_EXCEEDED : MAAS_ERR_EMPTY,
                        "'%s:%s' is %llux%llu, empty or too large", path, dataset,
                        (unsigned long long)dims[0], (unsigned long long)dims[1]);
        goto done;
    }
    out->rows = (size_t)dims[0];
    out->cols = (int)dims[1];
    out->data = malloc(out->rows * (size_t)out->cols * sizeof(float));
    out->names = calloc((size_t)out->cols, sizeof(char *));
    if (!out->data || !out->names) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory reading '%s'",
                        path);
        goto done;
    }
    for (int i = 0; i < out->cols; i++) {
        char name[16];
        snprintf(name, sizeof(name), "%d", i);
        if (!(out->names[i] = malloc(strlen(name) + 1))) {
            err = maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
            goto done;
        }
        memcpy(out->names[i], name, strlen(name) + 1);
    }
    prefault(out->data, out->rows * (size_t)out->cols * sizeof(float));
    if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out->data) < 0) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "cannot read '%s:%s'", path,
                        dataset);
        goto done;
    }
    size_t bad = maas_find_nonfinite(out->data, out->rows * (size_t)out->cols);
    if (bad < out->rows * (size_t)out->cols)
        err = maas_errf(errstr, errstr_size, MAAS_ERR_NON_FINITE,
                        "'%s:%s' row %zu, column %zu is not finite", path, dataset,
                        bad / (size_t)out->cols, bad % (size_t)out->cols);
done:
    CLOSE(H5Pclose, dcpl);
    CLOSE(H5Tclose, t);
    CLOSE(H5Sclose, s);
    CLOSE(H5Dclose, d);
    CLOSE(H5Fclose, f);
    guard_leave(&g);
    if (err) maas_table_release(out);
    return err;
}
