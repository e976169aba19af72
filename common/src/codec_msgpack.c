/*
 * The job protocol codec (the only file that includes msgpack.h). No I/O.
 * Wire format: schemas/protocol.md. Every message is one msgpack map.
 * Size (~1290 lines): one adapter file per library; every message type's fields
 * are checked here against their limits before anything is allocated.
 */
#include "maas/base.h"
#include "maas/explain.h"
#include "maas/job.h"
#include "keras_json.h"

#include <msgpack.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the codec assumes a little-endian host for float32 matrices"
#endif

static const char *const type_names[] = {"", "train", "infer", "evaluate", "optimize"};

const char *maas_job_type_name(maas_job_type t) {
    return (int)t >= 0 && t <= MAAS_JOBTYPE_OPTIMIZE ? type_names[t] : "";
}

/* ------------------------------------------------------------ prescan */

/*
 * msgpack-c allocates an array's element slots when it reads the header, so a
 * 6-byte message claiming 2^32 elements would ask for 100 GB. This scan walks
 * the bytes first: every count must fit the bytes left, nesting and the total
 * object count are bounded, and nothing follows the top-level value.
 */
typedef struct scan {
    const uint8_t *p;
    size_t len, pos, objects;
} scan;

static int need(scan *s, size_t n) {
    return s->len - s->pos >= n;
}

static uint64_t be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

static int scan_value(scan *s, int depth) {
    if (depth > MAAS_MSG_MAX_DEPTH || ++s->objects > MAAS_MSG_MAX_OBJECTS || !need(s, 1)) return -1;
    uint8_t t = s->p[s->pos++];
    uint64_t n = 0;
    int items = 0; /* 1 = array of n, 2 = map of n */
    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) return 0;
    if ((t & 0xf0) == 0x80)
        n = t & 0x0f, items = 2;
    else if ((t & 0xf0) == 0x90)
        n = t & 0x0f, items = 1;
    else if ((t & 0xe0) == 0xa0)
        n = t & 0x1f;
    else {
        static const struct {
            uint8_t tag;
            int hdr;  /* bytes of length (or of payload for fixed-size types) */
            int kind; /* 0 fixed payload, 1 length-prefixed bytes, 2 ext (len + 1 type byte),
                         3 array, 4 map */
        } fmt[] = {
            {0xc4, 1, 1}, {0xc5, 2, 1}, {0xc6, 4, 1},  {0xc7, 1, 2}, {0xc8, 2, 2}, {0xc9, 4, 2},
            {0xca, 4, 0}, {0xcb, 8, 0}, {0xcc, 1, 0},  {0xcd, 2, 0}, {0xce, 4, 0}, {0xcf, 8, 0},
            {0xd0, 1, 0}, {0xd1, 2, 0}, {0xd2, 4, 0},  {0xd3, 8, 0}, {0xd4, 2, 0}, {0xd5, 3, 0},
            {0xd6, 5, 0}, {0xd7, 9, 0}, {0xd8, 17, 0}, {0xd9, 1, 1}, {0xda, 2, 1}, {0xdb, 4, 1},
            {0xdc, 2, 3}, {0xdd, 4, 3}, {0xde, 2, 4},  {0xdf, 4, 4},
        };
        size_t k = 0;
        while (k < MAAS_ARRAY_LEN(fmt) && fmt[k].tag != t) k++;
        if (k == MAAS_ARRAY_LEN(fmt)) return -1; /* 0xc1 is never used */
        int h = fmt[k].hdr;
        if (!need(s, (size_t)h)) return -1;
        if (fmt[k].kind == 0) {
            s->pos += (size_t)h;
            return 0;
        }
        n = be(s->p + s->pos, h);
        s->pos += (size_t)h;
        if (fmt[k].kind == 2) n += 1;
        if (fmt[k].kind == 3) items = 1;
        if (fmt[k].kind == 4) items = 2;
    }
    if (!items) {
        if (!need(s, n)) return -1;
        s->pos += n;
        return 0;
    }
    if (n > (s->len - s->pos) / (size_t)items) return -1; /* each item takes >= 1 byte */
    for (uint64_t i = 0; i < n * (uint64_t)items; i++)
        if (scan_value(s, depth + 1)) return -1;
    return 0;
}

/*
 * The top-level map's "id" from a message that failed the pre-scan (truncated, trailing
 * bytes, a bad count or too deep further on), when the bytes up to and including it are
 * intact and it is a valid name: so that its failure can be recorded under it. The walk
 * stops at the first pair it cannot scan.
 */
static void salvage_id(const uint8_t *p, size_t len, char *id, size_t size) {
    scan s = {p, len, 0, 0};
    uint64_t n;
    if (len >= 1 && (p[0] & 0xf0) == 0x80)
        n = p[0] & 0x0f, s.pos = 1;
    else if (len >= 3 && p[0] == 0xde)
        n = be(p + 1, 2), s.pos = 3;
    else if (len >= 5 && p[0] == 0xdf)
        n = be(p + 1, 4), s.pos = 5;
    else
        return;
    for (uint64_t i = 0; i < n; i++) {
        size_t key_at = s.pos;
        if (scan_value(&s, 1)) return;
        int is_id = s.pos - key_at == 3 && !memcmp(p + key_at, "\xa2id", 3);
        size_t val_at = s.pos;
        if (scan_value(&s, 1)) return;
        if (!is_id) continue;
        size_t sl, off;
        if ((p[val_at] & 0xe0) == 0xa0)
            sl = p[val_at] & 0x1f, off = 1;
        else if (p[val_at] == 0xd9)
            sl = p[val_at + 1], off = 2;
        else
            return;
        if (off + sl != s.pos - val_at || sl >= size) return;
        char tmp[MAAS_NAME_MAX + 1];
        if (sl >= sizeof(tmp)) return;
        memcpy(tmp, p + val_at + off, sl);
        tmp[sl] = '\0';
        if (maas_name_check("id", tmp, NULL, 0) == MAAS_OK) memcpy(id, tmp, sl + 1);
        return;
    }
}

/* buf as one msgpack value of at most max bytes (what names it in errors). */
static maas_err unpack_max(const void *buf, size_t len, const char *what, size_t max,
                           msgpack_unpacked *out, char *errstr, size_t errstr_size) {
    if (len == 0) return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "%s is empty", what);
    if (len > max)
        return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                         "%s is %zu bytes, over the %zu limit", what, len, max);
    scan s = {buf, len, 0, 0};
    if (scan_value(&s, 0))
        return maas_errf(errstr, errstr_size,
                         s.objects > MAAS_MSG_MAX_OBJECTS ? MAAS_ERR_LIMIT_EXCEEDED
                                                          : MAAS_ERR_BAD_FORMAT,
                         "%s is not valid msgpack (truncated, a bad count, nested deeper than %d, "
                         "or over %zu objects) at byte %zu",
                         what, MAAS_MSG_MAX_DEPTH, MAAS_MSG_MAX_OBJECTS, s.pos);
    if (s.pos != len)
        return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                         "%s has %zu trailing bytes after the message", what, len - s.pos);
    msgpack_unpacked_init(out);
    size_t off = 0;
    if (msgpack_unpack_next(out, buf, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len) {
        msgpack_unpacked_destroy(out);
        return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "%s could not be unpacked",
                         what);
    }
    if (out->data.type != MSGPACK_OBJECT_MAP) {
        msgpack_unpacked_destroy(out);
        return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "%s is not a msgpack map", what);
    }
    return MAAS_OK;
}

static maas_err unpack(const void *buf, size_t len, const char *what, msgpack_unpacked *out,
                       char *errstr, size_t errstr_size) {
    return unpack_max(buf, len, what, MAAS_MSG_MAX_BYTES, out, errstr, errstr_size);
}

/* ------------------------------------------------------------ reading */

/* dst = a followed by b, cut to fit size: field names on the decode path, without a
 * printf per field (snprintf was a fifth of a worker's time per inference job). */
static void join(char *dst, size_t size, const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    if (na > size - 1) na = size - 1;
    if (nb > size - 1 - na) nb = size - 1 - na;
    memcpy(dst, a, na);
    memcpy(dst + na, b, nb);
    dst[na + nb] = '\0';
}

static void copy(char *dst, size_t size, const char *src) {
    join(dst, size, src, "");
}

typedef struct dec {
    char *errstr;
    size_t errstr_size;
    maas_err err;
    size_t max_bytes; /* a matrix's data at most; 0: MAAS_MSG_MAX_BYTES */
} dec;

static int fail(dec *d, maas_err code, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(dec *d, maas_err code, const char *path, const char *fmt, ...) {
    if (d->err) return -1;
    char msg[MAAS_ERRSTR_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    d->err = maas_errf(d->errstr, d->errstr_size, code, "field %s: %s", path, msg);
    return -1;
}

static int key_is(const msgpack_object *k, const char *name) {
    size_t n = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, name, n) == 0;
}

static const msgpack_object *get(const msgpack_object *map, const char *key) {
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (key_is(&map->via.map.ptr[i].key, key)) return &map->via.map.ptr[i].val;
    return NULL;
}

/* Every key must be a string from `allowed` (NULL-terminated), each at most once. */
static int check_keys(dec *d, const msgpack_object *map, const char *path,
                      const char *const *allowed) {
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        char full[160];
        if (k->type != MSGPACK_OBJECT_STR)
            return fail(d, MAAS_ERR_BAD_FORMAT, path[0] ? path : "(top)",
                        "a map key is not a string");
        int known = 0;
        for (int a = 0; allowed[a] && !known; a++) known = key_is(k, allowed[a]);
            /* the field's full name, only for a message (this runs for every key of every job) */
#define FULL_NAME()                                                                                \
    snprintf(full, sizeof(full), "%s%s%.*s", path, path[0] ? "." : "",                             \
             (int)(k->via.str.size > 64 ? 64 : k->via.str.size), k->via.str.ptr)
        if (!known) {
            FULL_NAME();
            return fail(d, MAAS_ERR_BAD_FORMAT, full, "unknown field");
        }
        for (uint32_t j = 0; j < i; j++)
            if (map->via.map.ptr[j].key.type == MSGPACK_OBJECT_STR &&
                map->via.map.ptr[j].key.via.str.size == k->via.str.size &&
                !memcmp(map->via.map.ptr[j].key.via.str.ptr, k->via.str.ptr, k->via.str.size)) {
                FULL_NAME();
                return fail(d, MAAS_ERR_BAD_FORMAT, full, "appears twice");
            }
#undef FULL_NAME
    }
    return 0;
}

static int as_int(dec *d, const msgpack_object *o, const char *path, int64_t lo, int64_t hi,
                  int64_t *out) {
    int64_t v = 0;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)INT64_MAX)
            return fail(d, MAAS_ERR_BAD_FORMAT, path, "too large");
        v = (int64_t)o->via.u64;
    } else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        v = o->via.i64;
    } else {
        return fail(d, MAAS_ERR_BAD_FORMAT, path, "expected an integer");
    }
    if (v < lo || v > hi)
        return fail(d, MAAS_ERR_BAD_FORMAT, path, "expected %lld..%lld, got %lld", (long long)lo,
                    (long long)hi, (long long)v);
    *out = v;
    return 0;
}

static int as_i32(dec *d, const msgpack_object *o, const char *path, int lo, int hi, int *out) {
    int64_t v = 0;
    if (as_int(d, o, path, lo, hi, &v)) return -1;
    *out = (int)v;
    return 0;
}

/* A msgpack number as a double; 0 when o is not a number. */
static int num_of(const msgpack_object *o, double *v) {
    if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64)
        *v = o->via.f64;
    else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        *v = (double)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *v = (double)o->via.i64;
    else
        return 0;
    return 1;
}

static int as_num(dec *d, const msgpack_object *o, const char *path, double lo, double hi,
                  double *out) {
    double v = 0;
    if (!num_of(o, &v)) return fail(d, MAAS_ERR_BAD_FORMAT, path, "expected a number");
    if (!isfinite(v)) return fail(d, MAAS_ERR_NON_FINITE, path, "is not finite");
    if (v < lo || v > hi)
        return fail(d, MAAS_ERR_BAD_FORMAT, path, "expected %g..%g, got %g", lo, hi, v);
    *out = v;
    return 0;
}

static int as_f32(dec *d, const msgpack_object *o, const char *path, double lo, double hi,
                  float *out) {
    double v = 0;
    if (as_num(d, o, path, lo, hi, &v)) return -1;
    *out = (float)v;
    return 0;
}

static int as_bool(dec *d, const msgpack_object *o, const char *path, int *out) {
    if (o->type != MSGPACK_OBJECT_BOOLEAN)
        return fail(d, MAAS_ERR_BAD_FORMAT, path, "expected true or false");
    *out = o->via.boolean;
    return 0;
}

/* A string into a fixed buffer (size includes the NUL). */
static int as_str(dec *d, const msgpack_object *o, const char *path, char *out, size_t size) {
    if (o->type != MSGPACK_OBJECT_STR)
        return fail(d, MAAS_ERR_BAD_FORMAT, path, "expected a string");
    if (o->via.str.size >= size)
        return fail(d, MAAS_ERR_LIMIT_EXCEEDED, path, "longer than %zu bytes", size - 1);
    if (memchr(o->via.str.ptr, '\0', o->via.str.size))
        return fail(d, MAAS_ERR_BAD_FORMAT, path, "contains a NUL byte");
    memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = '\0';
    return 0;
}

static int as_name(dec *d, const msgpack_object *o, const char *path, char *out, size_t size) {
    if (as_str(d, o, path, out, size)) return -1;
    char sub[MAAS_ERRSTR_SIZE];
    if (maas_name_check(path, out, sub, sizeof(sub)))
        return fail(d, MAAS_ERR_BAD_FORMAT, path,
                    "1..%d characters of letters, digits, '.', '_', "
                    "'-'",
                    MAAS_NAME_MAX);
    return 0;
}

static void matrix_release(maas_matrix *m) {
    free(m->data);
    memset(m, 0, sizeof(*m));
}

/*
 * A matrix: {"shape": [rows, cols], "dtype": "float32", "data": bin} (row-major
 * little-endian float32; a shape of up to MAAS_MATRIX_MAX_RANK dimensions, [rows, h, w, c],
 * gives rows of h*w*c values and keeps the per-row dimensions), or rows as nested arrays of
 * numbers ([[1, 2], [3, 4]]; a flat array is one row).
 */
static int as_matrix(dec *d, const msgpack_object *o, const char *path, maas_matrix *m) {
    char sub[160];
    memset(m, 0, sizeof(*m));
    if (o->type == MSGPACK_OBJECT_MAP) {
        static const char *const keys[] = {"shape", "dtype", "data", NULL};
        if (check_keys(d, o, path, keys)) return -1;
        const msgpack_object *shape = get(o, "shape"), *dtype = get(o, "dtype"),
                             *data = get(o, "data");
        join(sub, sizeof(sub), path, ".shape");
        if (!shape || shape->type != MSGPACK_OBJECT_ARRAY || shape->via.array.size < 2 ||
            shape->via.array.size > MAAS_MATRIX_MAX_RANK)
            return fail(d, MAAS_ERR_BAD_FORMAT, sub,
                        "expected [rows, columns] or [rows, d1, ...] (at most %d dimensions)",
                        MAAS_MATRIX_MAX_RANK);
        int rank = (int)shape->via.array.size;
        int64_t r = 0, c = 1, dim[MAAS_MATRIX_MAX_RANK];
        join(sub, sizeof(sub), path, ".shape[0]");
        if (as_int(d, &shape->via.array.ptr[0], sub, 1, MAAS_MSG_MAX_ROWS, &r)) return -1;
        for (int k = 1; k < rank; k++) { /* a row's values at most MAAS_MAX_UNITS in all */
            char at[24];
            snprintf(at, sizeof(at), ".shape[%d]", k);
            join(sub, sizeof(sub), path, at);
            if (as_int(d, &shape->via.array.ptr[k], sub, 1, MAAS_MAX_UNITS, &dim[k])) return -1;
            c *= dim[k];
            if (c > MAAS_MAX_UNITS)
                return fail(d, MAAS_ERR_LIMIT_EXCEEDED, sub, "a row of more than %d values",
                            MAAS_MAX_UNITS);
        }
        if (dtype) {
            char dt[16];
            join(sub, sizeof(sub), path, ".dtype");
            if (as_str(d, dtype, sub, dt, sizeof(dt))) return -1;
            if (strcmp(dt, "float32"))
                return fail(d, MAAS_ERR_BAD_FORMAT, sub, "expected \"float32\", got \"%s\"", dt);
        }
        join(sub, sizeof(sub), path, ".data");
        if (!data || data->type != MSGPACK_OBJECT_BIN)
            return fail(d, MAAS_ERR_BAD_FORMAT, sub, "expected bin (little-endian float32)");
        uint64_t want = (uint64_t)r * (uint64_t)c * 4;
        if (want > (d->max_bytes ? d->max_bytes : MAAS_MSG_MAX_BYTES))
            return fail(d, MAAS_ERR_LIMIT_EXCEEDED, sub, "matrix too large");
        if (data->via.bin.size != want)
            return fail(d, MAAS_ERR_SHAPE_MISMATCH, sub,
                        "expected %llu bytes (%lld x %lld float32), got %u",
                        (unsigned long long)want, (long long)r, (long long)c, data->via.bin.size);
        m->data = malloc(want);
        if (!m->data) return fail(d, MAAS_ERR_OUT_OF_MEMORY, path, "out of memory");
        memcpy(m->data, data->via.bin.ptr, want);
        m->rows = (uint32_t)r;
        m->cols = (uint32_t)c;
        if (rank > 2) {
            m->sample_rank = rank - 1;
            for (int k = 1; k < rank; k++) m->sample[k - 1] = (uint32_t)dim[k];
        }
    } else if (o->type == MSGPACK_OBJECT_ARRAY) {
        uint32_t rows = o->via.array.size;
        if (rows == 0) return fail(d, MAAS_ERR_EMPTY, path, "has no rows");
        int nested = o->via.array.ptr[0].type == MSGPACK_OBJECT_ARRAY;
        uint32_t cols = nested ? o->via.array.ptr[0].via.array.size : rows;
        if (!nested) rows = 1;
        if (cols == 0 || cols > MAAS_MAX_UNITS)
            return fail(d, MAAS_ERR_BAD_FORMAT, path, "rows must have 1..%d numbers",
                        MAAS_MAX_UNITS);
        /* every row's shape first: the size comes from what the message holds, never from
         * row 0 alone (a million empty rows after one wide row is a few MB asking for TBs) */
        for (uint32_t i = 0; nested && i < rows; i++) {
            const msgpack_object *row = &o->via.array.ptr[i];
            if (row->type != MSGPACK_OBJECT_ARRAY || row->via.array.size != cols) {
                snprintf(sub, sizeof(sub), "%s[%u]", path, i);
                return fail(d, MAAS_ERR_SHAPE_MISMATCH, sub,
                            "expected a row of %u numbers (like row 0)", cols);
            }
        }
        m->data = malloc((size_t)rows * cols * sizeof(float));
        if (!m->data) return fail(d, MAAS_ERR_OUT_OF_MEMORY, path, "out of memory");
        m->rows = rows;
        m->cols = cols;
        for (uint32_t i = 0; i < rows; i++) {
            const msgpack_object *row = nested ? &o->via.array.ptr[i] : o;
            for (uint32_t j = 0; j < cols; j++) {
                const msgpack_object *cell = &row->via.array.ptr[j];
                double v = 0;
                if (!num_of(cell, &v) || !(v >= -FLT_MAX && v <= FLT_MAX)) {
                    /* the cell's name and as_num's message only for a bad cell */
                    snprintf(sub, sizeof(sub), nested ? "%s[%u][%u]" : "%s[%u]", path,
                             nested ? i : j, j);
                    as_num(d, cell, sub, -FLT_MAX, FLT_MAX, &v);
                    matrix_release(m);
                    return -1;
                }
                m->data[(size_t)i * cols + j] = (float)v;
            }
        }
    } else {
        return fail(d, MAAS_ERR_BAD_FORMAT, path,
                    "expected a matrix ({shape, dtype, data} or rows)");
    }
    size_t cells = (size_t)m->rows * m->cols;
    size_t bad = maas_find_nonfinite(m->data, cells);
    if (bad < cells) {
        copy(sub, sizeof(sub), path);
        fail(d, MAAS_ERR_NON_FINITE, sub, "row %zu, column %zu is not finite", bad / m->cols,
             bad % m->cols);
        matrix_release(m);
        return -1;
    }
    return 0;
}

static int as_data(dec *d, const msgpack_object *o, const char *path, maas_data *out) {
    static const char *const keys[] = {"x", "y", "dataset", NULL};
    if (o->type != MSGPACK_OBJECT_MAP) return fail(d, MAAS_ERR_BAD_FORMAT, path, "expected a map");
    if (check_keys(d, o, path, keys)) return -1;
    const msgpack_object *x = get(o, "x"), *y = get(o, "y"), *ds = get(o, "dataset");
    char sub[160];
    if (ds) {
        if (x || y) return fail(d, MAAS_ERR_BAD_FORMAT, path, "give either dataset or x and y");
        join(sub, sizeof(sub), path, ".dataset");
        return as_name(d, ds, sub, out->dataset, sizeof(out->dataset));
    }
    if (!x || !y) return fail(d, MAAS_ERR_BAD_FORMAT, path, "needs x and y, or dataset");
    join(sub, sizeof(sub), path, ".x");
    if (as_matrix(d, x, sub, &out->x)) return -1;
    join(sub, sizeof(sub), path, ".y");
    if (as_matrix(d, y, sub, &out->y)) return -1;
    if (out->x.rows != out->y.rows) {
        join(sub, sizeof(sub), path, ".y");
        return fail(d, MAAS_ERR_SHAPE_MISMATCH, sub, "has %u rows, x has %u", out->y.rows,
                    out->x.rows);
    }
    return 0;
}

static int as_layers(dec *d, const msgpack_object *o, maas_train_spec *t) {
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 1 ||
        o->via.array.size > MAAS_MAX_LAYERS)
        return fail(d, MAAS_ERR_BAD_FORMAT, "layers", "expected 1..%d layer maps", MAAS_MAX_LAYERS);
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        const msgpack_object *l = &o->via.array.ptr[i];
        char path[64], sub[96];
        snprintf(path, sizeof(path), "layers[%u]", i);
        maas_layer_spec s = maas_dropout(0.0f);
        const msgpack_object *v, *spec = l->type == MSGPACK_OBJECT_STR ? l : NULL;
        if (l->type == MSGPACK_OBJECT_MAP && (spec = get(l, "spec"))) {
            static const char *const keys[] = {"spec", "name", NULL};
            if (check_keys(d, l, path, keys)) return -1;
        }
        if (!spec && l->type != MSGPACK_OBJECT_MAP)
            return fail(d, MAAS_ERR_BAD_FORMAT, path,
                        "expected a map or a layer item such as \"conv2d:32:3x3:relu\"");
        if (spec) { /* one item of the --layers grammar (maas_layers_parse) */
            char text[96], e[MAAS_ERRSTR_SIZE];
            int n;
            join(sub, sizeof(sub), path, l == spec ? "" : ".spec");
            if (as_str(d, spec, sub, text, sizeof(text))) return -1;
            if (strchr(text, ',')) return fail(d, MAAS_ERR_BAD_FORMAT, sub, "one layer per item");
            maas_err err = maas_layers_parse(text, &s, 1, &n, e, sizeof(e));
            if (err) return fail(d, err, sub, "%s", e);
        } else if ((v = get(l, "dropout"))) {
            static const char *const keys[] = {"dropout", "name", NULL};
            if (check_keys(d, l, path, keys)) return -1;
            float rate;
            join(sub, sizeof(sub), path, ".dropout");
            if (as_f32(d, v, sub, 0.0, 0.999999, &rate)) return -1;
            s = maas_dropout(rate);
        } else {
            static const char *const keys[] = {"units", "activation",         "use_bias",
                                               "name",  "kernel_initializer", NULL};
            if (check_keys(d, l, path, keys)) return -1;
            int units;
            join(sub, sizeof(sub), path, ".units");
            if (!(v = get(l, "units")))
                return fail(d, MAAS_ERR_BAD_FORMAT, sub, "missing (or give \"dropout\": rate)");
            if (as_i32(d, v, sub, 1, MAAS_MAX_UNITS, &units)) return -1;
            s = maas_dense(units, MAAS_ACT_LINEAR);
            if ((v = get(l, "activation"))) {
                char a[32], e[MAAS_ERRSTR_SIZE];
                join(sub, sizeof(sub), path, ".activation");
                if (as_str(d, v, sub, a, sizeof(a))) return -1;
                if (maas_act_from_name(a, &s.act, e, sizeof(e)))
                    return fail(d, MAAS_ERR_UNKNOWN_NAME, sub, "%s", e);
            }
            if ((v = get(l, "use_bias"))) {
                join(sub, sizeof(sub), path, ".use_bias");
                if (as_bool(d, v, sub, &s.use_bias)) return -1;
            }
            if ((v = get(l, "kernel_initializer"))) {
                char a[32], e[MAAS_ERRSTR_SIZE];
                join(sub, sizeof(sub), path, ".kernel_initializer");
                if (as_str(d, v, sub, a, sizeof(a))) return -1;
                if (maas_init_from_name(a, &s.kernel_init, e, sizeof(e)))
                    return fail(d, MAAS_ERR_UNKNOWN_NAME, sub, "%s", e);
            }
        }
        if (l->type == MSGPACK_OBJECT_MAP && (v = get(l, "name"))) {
            join(sub, sizeof(sub), path, ".name");
            if (as_name(d, v, sub, s.name, sizeof(s.name))) return -1;
        }
        t->layers[t->n_layers++] = s;
    }
    return 0;
}

static int as_optimizer(dec *d, const msgpack_object *o, maas_optim_spec *opt) {
    char name[32], e[MAAS_ERRSTR_SIZE];
    maas_opt kind;
    const msgpack_object *v = o;
    if (o->type == MSGPACK_OBJECT_MAP) {
        static const char *const keys[] = {"name",     "learning_rate", "beta_1",
                                           "beta_2",   "epsilon",       "momentum",
                                           "nesterov", "rho",           NULL};
        if (check_keys(d, o, "optimizer", keys)) return -1;
        if (!(v = get(o, "name"))) return fail(d, MAAS_ERR_BAD_FORMAT, "optimizer.name", "missing");
    }
    if (as_str(d, v, o->type == MSGPACK_OBJECT_MAP ? "optimizer.name" : "optimizer", name,
               sizeof(name)))
        return -1;
    if (maas_opt_from_name(name, &kind, e, sizeof(e)))
        return fail(d, MAAS_ERR_UNKNOWN_NAME, "optimizer", "%s", e);
    maas_optim_defaults(opt, kind);
    if (o->type != MSGPACK_OBJECT_MAP) return 0;
    if ((v = get(o, "learning_rate")) &&
        as_f32(d, v, "optimizer.learning_rate", 1e-12, 10.0, &opt->learning_rate))
        return -1;
    if ((v = get(o, "beta_1")) && as_f32(d, v, "optimizer.beta_1", 0.0, 0.999999, &opt->beta_1))
        return -1;
    if ((v = get(o, "beta_2")) && as_f32(d, v, "optimizer.beta_2", 0.0, 0.999999, &opt->beta_2))
        return -1;
    if ((v = get(o, "epsilon")) && as_f32(d, v, "optimizer.epsilon", 1e-12, 0.5, &opt->epsilon))
        return -1;
    if ((v = get(o, "momentum")) &&
        as_f32(d, v, "optimizer.momentum", 0.0, 0.999999, &opt->momentum))
        return -1;
    if ((v = get(o, "rho")) && as_f32(d, v, "optimizer.rho", 0.0, 0.999999, &opt->rho)) return -1;
    if ((v = get(o, "nesterov")) && as_bool(d, v, "optimizer.nesterov", &opt->nesterov)) return -1;
    return 0;
}

static int as_train(dec *d, const msgpack_object *m, maas_job *j) {
    maas_train_spec *t = &j->train;
    const msgpack_object *v;
    const msgpack_object *layers = get(m, "layers"), *kc = get(m, "keras_config");
    if (!layers == !kc)
        return fail(d, MAAS_ERR_BAD_FORMAT, "layers", "give layers or keras_config");
    if (layers && as_layers(d, layers, t)) return -1;
    if (kc) {
        if (kc->type != MSGPACK_OBJECT_STR || kc->via.str.size > MAAS_MSG_MAX_TEXT)
            return fail(d, MAAS_ERR_BAD_FORMAT, "keras_config",
                        "expected model.to_json() text up to %zu bytes", MAAS_MSG_MAX_TEXT);
        if (memchr(kc->via.str.ptr, '\0', kc->via.str.size))
            return fail(d, MAAS_ERR_BAD_FORMAT, "keras_config", "contains a NUL byte");
        maas_keras_arch a;
        char e[MAAS_ERRSTR_SIZE];
        maas_err err = maas__keras_arch_parse(kc->via.str.ptr, kc->via.str.size, &a, e, sizeof(e));
        if (err) return fail(d, err, "keras_config", "%s", e);
        int has_norm = a.norm;
        maas__keras_arch_release(&a);
        if (has_norm)
            return fail(d, MAAS_ERR_UNKNOWN_NAME, "keras_config",
                        "a Normalization layer is not accepted here; send \"standardize\": true");
        memcpy(t->layers, a.layers, sizeof(a.layers));
        t->n_layers = a.n_layers;
        t->from_keras = 1;
        t->keras_config = malloc(kc->via.str.size + 1);
        if (!t->keras_config)
            return fail(d, MAAS_ERR_OUT_OF_MEMORY, "keras_config", "out of memory");
        memcpy(t->keras_config, kc->via.str.ptr, kc->via.str.size);
        t->keras_config[kc->via.str.size] = '\0';
    }
    if (!(v = get(m, "loss"))) return fail(d, MAAS_ERR_BAD_FORMAT, "loss", "missing");
    char loss[48], e[MAAS_ERRSTR_SIZE];
    if (as_str(d, v, "loss", loss, sizeof(loss))) return -1;
    if (maas_loss_from_name(loss, &t->compile.loss, e, sizeof(e)))
        return fail(d, MAAS_ERR_UNKNOWN_NAME, "loss", "%s", e);
    if ((v = get(m, "optimizer")) && as_optimizer(d, v, &t->compile.optim)) return -1;
    if ((v = get(m, "metrics"))) {
        if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size > 4)
            return fail(d, MAAS_ERR_BAD_FORMAT, "metrics",
                        "expected a list such as [\"accuracy\"]");
        t->compile.accuracy = 0;
        for (uint32_t i = 0; i < v->via.array.size; i++) {
            char name[32], path[32];
            snprintf(path, sizeof(path), "metrics[%u]", i);
            if (as_str(d, &v->via.array.ptr[i], path, name, sizeof(name))) return -1;
            if (strcmp(name, "accuracy") && strcmp(name, "acc"))
                return fail(d, MAAS_ERR_UNKNOWN_NAME, path, "unknown metric '%s' (known: accuracy)",
                            name);
            t->compile.accuracy = 1;
        }
    }
    if ((v = get(m, "epochs")) && as_i32(d, v, "epochs", 1, 1000000, &t->epochs)) return -1;
    if ((v = get(m, "batch_size")) && as_i32(d, v, "batch_size", 1, 1 << 20, &t->batch_size))
        return -1;
    if ((v = get(m, "validation_split")) &&
        as_f32(d, v, "validation_split", 0.0, 0.99, &t->validation_split))
        return -1;
    if ((v = get(m, "shuffle")) && as_bool(d, v, "shuffle", &t->shuffle)) return -1;
    if ((v = get(m, "standardize")) && as_bool(d, v, "standardize", &t->standardize)) return -1;
    if ((v = get(m, "seed"))) {
        int64_t s = 0;
        if (as_int(d, v, "seed", 0, INT64_MAX, &s)) return -1;
        t->seed = (uint64_t)s;
        t->has_seed = 1;
    }
    if ((v = get(m, "early_stopping"))) {
        static const char *const keys[] = {"monitor", "patience", "min_delta", "restore_best",
                                           NULL};
        if (v->type != MSGPACK_OBJECT_MAP)
            return fail(d, MAAS_ERR_BAD_FORMAT, "early_stopping", "expected a map");
        if (check_keys(d, v, "early_stopping", keys)) return -1;
        t->early_stopping = 1;
        const msgpack_object *w;
        if ((w = get(v, "monitor"))) {
            if (as_str(d, w, "early_stopping.monitor", t->monitor, sizeof(t->monitor))) return -1;
            if (strcmp(t->monitor, "loss") && strcmp(t->monitor, "val_loss") &&
                strcmp(t->monitor, "accuracy") && strcmp(t->monitor, "val_accuracy"))
                return fail(d, MAAS_ERR_BAD_FORMAT, "early_stopping.monitor",
                            "expected loss, val_loss, accuracy or val_accuracy");
        }
        if ((w = get(v, "patience")) &&
            as_i32(d, w, "early_stopping.patience", 0, 1000000, &t->patience))
            return -1;
        if ((w = get(v, "min_delta")) &&
            as_f32(d, w, "early_stopping.min_delta", 0.0, 1e30, &t->min_delta))
            return -1;
        if ((w = get(v, "restore_best")) &&
            as_bool(d, w, "early_stopping.restore_best", &t->restore_best))
            return -1;
    }
    if ((v = get(m, "from"))) {
        char text[2 * MAAS_NAME_MAX + 2];
        if (as_str(d, v, "from", text, sizeof(text))) return -1;
        if (maas_model_ref_parse(text, &t->from, e, sizeof(e)))
            return fail(d, MAAS_ERR_BAD_FORMAT, "from", "%s", e);
        t->has_from = 1;
    }
    return 0;
}

void maas_job_init(maas_job *j, maas_job_type type) {
    memset(j, 0, sizeof(*j));
    j->v = MAAS_PROTOCOL_VERSION;
    j->type = type;
    j->priority = 5;
    j->explain_steps = 64;
    j->train.epochs = 10;
    j->train.batch_size = 32;
    j->train.shuffle = 1;
    j->train.patience = 2;
    copy(j->train.monitor, sizeof(j->train.monitor), "val_loss");
    j->train.compile.accuracy = 1;
    maas_optim_defaults(&j->train.compile.optim, MAAS_OPT_ADAM);
    copy(j->model.ref, sizeof(j->model.ref), "latest");
}

void maas_job_release(maas_job *j) {
    if (!j) return;
    matrix_release(&j->inputs);
    matrix_release(&j->baseline);
    matrix_release(&j->data.x);
    matrix_release(&j->data.y);
    free(j->train.keras_config);
    j->train.keras_config = NULL;
}

maas_err maas_model_ref_parse(const char *text, maas_model_ref *out, char *errstr,
                              size_t errstr_size) {
    memset(out, 0, sizeof(*out));
    const char *sep = strpbrk(text, ":@");
    size_t n = sep ? (size_t)(sep - text) : strlen(text);
    if (n == 0 || n > MAAS_NAME_MAX)
        return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                         "model reference '%s' is not NAME, NAME:VERSION or NAME@ALIAS", text);
    memcpy(out->name, text, n);
    copy(out->ref, sizeof(out->ref), "latest");
    maas_err err = maas_name_check("model name", out->name, errstr, errstr_size);
    if (err) return err;
    if (!sep) return MAAS_OK;
    const char *r = sep + 1;
    if (*sep == ':') {
        char *end;
        long v = strtol(r, &end, 10);
        if (end == r || *end || v < 1 || v > INT_MAX)
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                             "model reference '%s': version must be a number >= 1", text);
    } else if (*r >= '0' && *r <= '9') {
        return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                         "model reference '%s': an alias cannot start with a digit", text);
    }
    if (strlen(r) > MAAS_NAME_MAX || maas_name_check("alias", r, errstr, errstr_size))
        return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                         "model reference '%s': bad version or alias", text);
    copy(out->ref, sizeof(out->ref), r);
    return MAAS_OK;
}

void maas_model_ref_format(const maas_model_ref *r, char *out, size_t size) {
    if (!r->ref[0] || !strcmp(r->ref, "latest"))
        snprintf(out, size, "%s", r->name);
    else if (r->ref[0] >= '0' && r->ref[0] <= '9')
        snprintf(out, size, "%s:%s", r->name, r->ref);
    else
        snprintf(out, size, "%s@%s", r->name, r->ref);
}

static maas_err decode_job(const msgpack_object *m, maas_job *j, char *errstr, size_t errstr_size) {
    dec d = {errstr, errstr_size, MAAS_OK};
    const msgpack_object *v;
    /* The id first, so a failure can still be reported against it. */
    if ((v = get(m, "id")) && v->type == MSGPACK_OBJECT_STR) {
        char id[MAAS_NAME_MAX + 1];
        dec quiet = {NULL, 0, MAAS_OK};
        if (as_name(&quiet, v, "id", id, sizeof(id)) == 0) copy(j->id, sizeof(j->id), id);
    }
    int64_t ver = 0;
    if (!(v = get(m, "v")))
        return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                         "field v: missing (the protocol version)");
    if (as_int(&d, v, "v", 0, INT32_MAX, &ver)) return d.err;
    if (ver != MAAS_PROTOCOL_VERSION)
        return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                         "field v: protocol version %lld is not supported (this build speaks %d)",
                         (long long)ver, MAAS_PROTOCOL_VERSION);
    char type[16];
    if (!(v = get(m, "type")))
        return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "field type: missing");
    if (as_str(&d, v, "type", type, sizeof(type))) return d.err;
    maas_job_type t = MAAS_JOBTYPE_NONE;
    for (int i = 1; i <= MAAS_JOBTYPE_OPTIMIZE; i++)
        if (!strcmp(type, type_names[i])) t = (maas_job_type)i;
    if (!t)
        return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                         "field type: unknown job type '%s' (known: train, infer, evaluate, "
                         "optimize)",
                         type);
    /* j is as maas_job_init left it (maas_job_decode), its id set above: the defaults are
     * the same for every type (initializing it again zeroed ~11 KB a job a second time) */
    j->type = t;

    static const char *const common[] = {"v",           "id",    "type",     "model", "created_ms",
                                         "deadline_ms", "ttl_s", "priority", "notify"};
    static const char *const infer_keys[] = {"inputs", "output", "explain", "steps", "baseline"};
    static const char *const train_keys[] = {"layers",      "keras_config", "loss",
                                             "optimizer",   "metrics",      "epochs",
                                             "batch_size",  "shuffle",      "validation_split",
                                             "standardize", "seed",         "early_stopping",
                                             "from",        "data"};
    static const char *const eval_keys[] = {"data"};
    static const char *const opt_keys[] = {"quantize", "prune", "finetune_epochs", "data"};
    const char *allowed[40];
    int na = 0;
    for (size_t i = 0; i < MAAS_ARRAY_LEN(common); i++) allowed[na++] = common[i];
    const char *const *extra = t == MAAS_JOBTYPE_INFER      ? infer_keys
                               : t == MAAS_JOBTYPE_TRAIN    ? train_keys
                               : t == MAAS_JOBTYPE_EVALUATE ? eval_keys
                                                            : opt_keys;
    size_t ne = t == MAAS_JOBTYPE_INFER      ? MAAS_ARRAY_LEN(infer_keys)
                : t == MAAS_JOBTYPE_TRAIN    ? MAAS_ARRAY_LEN(train_keys)
                : t == MAAS_JOBTYPE_EVALUATE ? MAAS_ARRAY_LEN(eval_keys)
                                             : MAAS_ARRAY_LEN(opt_keys);
    for (size_t i = 0; i < ne; i++) allowed[na++] = extra[i];
    allowed[na] = NULL;
    if (check_keys(&d, m, "", allowed)) return d.err;

    if (!j->id[0]) {
        char bad[MAAS_NAME_MAX + 1];
        if (!(v = get(m, "id")))
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "field id: missing");
        as_name(&d, v, "id", bad, sizeof(bad));
        return d.err ? d.err : MAAS_ERR_BAD_FORMAT;
    }
    char text[2 * MAAS_NAME_MAX + 2], e[MAAS_ERRSTR_SIZE];
    if (!(v = get(m, "model")))
        return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "field model: missing");
    if (as_str(&d, v, "model", text, sizeof(text))) return d.err;
    if (maas_model_ref_parse(text, &j->model, e, sizeof(e)))
        return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "field model: %s", e);
    if (t == MAAS_JOBTYPE_TRAIN && strcmp(j->model.ref, "latest"))
        return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                         "field model: a train job names the model only (it makes the next "
                         "version); start from a version with \"from\"");
    if ((v = get(m, "created_ms")) && as_int(&d, v, "created_ms", 0, INT64_MAX, &j->created_ms))
        return d.err;
    if ((v = get(m, "deadline_ms")) && as_int(&d, v, "deadline_ms", 0, INT64_MAX, &j->deadline_ms))
        return d.err;
    if ((v = get(m, "ttl_s")) && as_i32(&d, v, "ttl_s", 0, 365 * 86400, &j->ttl_s)) return d.err;
    if ((v = get(m, "priority")) && as_i32(&d, v, "priority", 0, 9, &j->priority)) return d.err;
    if ((v = get(m, "notify")) && as_bool(&d, v, "notify", &j->notify)) return d.err;

    switch (t) {
    case MAAS_JOBTYPE_INFER:
        if (!(v = get(m, "inputs")))
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "field inputs: missing");
        if (as_matrix(&d, v, "inputs", &j->inputs)) return d.err;
        if ((v = get(m, "output"))) {
            char out[32];
            if (as_str(&d, v, "output", out, sizeof(out))) return d.err;
            if (!strcmp(out, "classes"))
                j->want_classes = 1;
            else if (strcmp(out, "probabilities"))
                return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                                 "field output: expected \"probabilities\" or \"classes\"");
        }
        if ((v = get(m, "explain"))) {
            char name[32];
            maas_explain_method meth;
            if (as_str(&d, v, "explain", name, sizeof(name))) return d.err;
            if (maas_explain_parse(name, &meth, e, sizeof(e)))
                return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "field explain: %s", e);
            j->explain = 1 + (int)meth;
        }
        if ((v = get(m, "steps")) &&
            as_i32(&d, v, "steps", 1, MAAS_EXPLAIN_MAX_STEPS, &j->explain_steps))
            return d.err;
        if ((v = get(m, "baseline"))) {
            if (as_matrix(&d, v, "baseline", &j->baseline)) return d.err;
            if (j->baseline.rows != 1 || j->baseline.cols != j->inputs.cols)
                return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                                 "field baseline: expected one row of %u features, got %ux%u",
                                 j->inputs.cols, j->baseline.rows, j->baseline.cols);
        }
        if ((get(m, "steps") || get(m, "baseline")) &&
            j->explain != 1 + MAAS_EXPLAIN_INTEGRATED_GRADIENTS)
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                             "field %s: only with \"explain\": \"integrated_gradients\"",
                             get(m, "steps") ? "steps" : "baseline");
        break;
    case MAAS_JOBTYPE_TRAIN:
        if (as_train(&d, m, j)) return d.err;
        if (!(v = get(m, "data")))
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "field data: missing");
        if (as_data(&d, v, "data", &j->data)) return d.err;
        break;
    case MAAS_JOBTYPE_EVALUATE:
        if (!(v = get(m, "data")))
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "field data: missing");
        if (as_data(&d, v, "data", &j->data)) return d.err;
        break;
    case MAAS_JOBTYPE_OPTIMIZE:
        if ((v = get(m, "quantize"))) {
            char q[16];
            if (as_str(&d, v, "quantize", q, sizeof(q))) return d.err;
            if (!strcmp(q, "int8"))
                j->optimize.quantize = MAAS_QUANT_INT8;
            else if (!strcmp(q, "bf16"))
                j->optimize.quantize = MAAS_QUANT_BF16;
            else
                return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                                 "field quantize: expected \"int8\" or \"bf16\", got \"%s\"", q);
        }
        if ((v = get(m, "prune")) && as_f32(&d, v, "prune", 0.0, 0.99, &j->optimize.prune))
            return d.err;
        if ((v = get(m, "finetune_epochs")) &&
            as_i32(&d, v, "finetune_epochs", 0, 10000, &j->optimize.finetune_epochs))
            return d.err;
        if ((v = get(m, "data")) && as_data(&d, v, "data", &j->data)) return d.err;
        if (!j->optimize.quantize && j->optimize.prune == 0.0f)
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                             "field quantize: an optimize job needs quantize or prune");
        if (j->optimize.finetune_epochs > 0 && !get(m, "data"))
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                             "field data: fine-tuning needs data");
        break;
    default:
        break;
    }
    return MAAS_OK;
}

maas_err maas_job_decode(const void *buf, size_t len, maas_job *out, char *errstr,
                         size_t errstr_size) {
    maas_job_init(out, MAAS_JOBTYPE_NONE);
    msgpack_unpacked u;
    maas_err err = unpack(buf, len, "job message", &u, errstr, errstr_size);
    if (err) {
        salvage_id(buf, len, out->id, sizeof(out->id));
        return err;
    }
    err = decode_job(&u.data, out, errstr, errstr_size);
    msgpack_unpacked_destroy(&u);
    if (err) {
        char id[MAAS_NAME_MAX + 1];
        copy(id, sizeof(id), out->id);
        maas_job_release(out);
        maas_job_init(out, MAAS_JOBTYPE_NONE);
        copy(out->id, sizeof(out->id), id);
    }
    return err;
}

maas_err maas_job_decode_json(const char *json, size_t len, maas_job *out, char *errstr,
                              size_t errstr_size) {
    unsigned char *mp;
    size_t mp_len;
    maas_job_init(out, MAAS_JOBTYPE_NONE);
    maas_err err = maas_json_to_msgpack(json, len, &mp, &mp_len, errstr, errstr_size);
    if (err) return err;
    err = maas_job_decode(mp, mp_len, out, errstr, errstr_size);
    free(mp);
    return err;
}

maas_err maas_job_decode_json_doc(const maas_json *doc, maas_job *out, char *errstr,
                                  size_t errstr_size) {
    unsigned char *mp;
    size_t mp_len;
    maas_job_init(out, MAAS_JOBTYPE_NONE);
    maas_err err = maas_json_doc_to_msgpack(doc, &mp, &mp_len, errstr, errstr_size);
    if (err) return err;
    err = maas_job_decode(mp, mp_len, out, errstr, errstr_size);
    free(mp);
    return err;
}

/* ------------------------------------------------------------ writing */

static void pk_str(msgpack_packer *pk, const char *s) {
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pk_matrix(msgpack_packer *pk, const maas_matrix *m) {
    msgpack_pack_map(pk, 3);
    pk_str(pk, "shape");
    int per_row = m->sample_rank >= 2 ? m->sample_rank : 1;
    msgpack_pack_array(pk, (size_t)per_row + 1);
    msgpack_pack_uint32(pk, m->rows);
    if (per_row == 1)
        msgpack_pack_uint32(pk, m->cols);
    else
        for (int k = 0; k < per_row; k++) msgpack_pack_uint32(pk, m->sample[k]);
    pk_str(pk, "dtype");
    pk_str(pk, "float32");
    pk_str(pk, "data");
    size_t n = (size_t)m->rows * m->cols * sizeof(float);
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, m->data, n);
}

static void pk_data(msgpack_packer *pk, const maas_data *d) {
    if (d->dataset[0]) {
        msgpack_pack_map(pk, 1);
        pk_str(pk, "dataset");
        pk_str(pk, d->dataset);
        return;
    }
    msgpack_pack_map(pk, 2);
    pk_str(pk, "x");
    pk_matrix(pk, &d->x);
    pk_str(pk, "y");
    pk_matrix(pk, &d->y);
}

/* The encoded bytes of sb, at most max: what names it in the error, hint (may be "") says
 * what to do instead. */
static maas_err finish_max(msgpack_sbuffer *sb, size_t max, const char *what, const char *hint,
                           unsigned char **buf, size_t *len, char *errstr, size_t errstr_size) {
    if (!sb->data)
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory encoding");
    if (sb->size > max) {
        msgpack_sbuffer_destroy(sb);
        return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                         "%s would be %zu bytes, over the %zu limit%s", what, sb->size, max, hint);
    }
    *buf = (unsigned char *)sb->data; /* malloc'ed by the sbuffer */
    *len = sb->size;
    return MAAS_OK;
}

static maas_err finish(msgpack_sbuffer *sb, unsigned char **buf, size_t *len, char *errstr,
                       size_t errstr_size) {
    return finish_max(sb, MAAS_MSG_MAX_BYTES, "the message", " (use a dataset)", buf, len, errstr,
                      errstr_size);
}

static int matrix_ok(const maas_matrix *m) {
    return m->rows >= 1 && m->cols >= 1 && m->data;
}

maas_err maas_job_encode(const maas_job *j, unsigned char **buf, size_t *len, char *errstr,
                         size_t errstr_size) {
    *buf = NULL;
    *len = 0;
    maas_err err = maas_name_check("job id", j->id, errstr, errstr_size);
    if (err) return err;
    if (j->type < MAAS_JOBTYPE_TRAIN || j->type > MAAS_JOBTYPE_OPTIMIZE)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT, "unknown job type %d",
                         (int)j->type);
    int has_data = j->data.dataset[0] || matrix_ok(&j->data.x);
    if (j->type == MAAS_JOBTYPE_INFER && !matrix_ok(&j->inputs))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "an infer job needs inputs");
    if ((j->type == MAAS_JOBTYPE_TRAIN || j->type == MAAS_JOBTYPE_EVALUATE) && !has_data)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT, "a %s job needs data",
                         maas_job_type_name(j->type));
    if (j->type == MAAS_JOBTYPE_TRAIN && j->train.n_layers < 1 && !j->train.keras_config)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "a train job needs layers");
    char ref[2 * MAAS_NAME_MAX + 2];
    maas_model_ref_format(&j->model, ref, sizeof(ref));
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int n = 6 + (j->deadline_ms > 0) + (j->ttl_s > 0) + (j->notify != 0);
    const maas_train_spec *t = &j->train;
    switch (j->type) {
    case MAAS_JOBTYPE_INFER:
        n += 1 + j->want_classes + (j->explain != 0) +
             (j->explain == 1 + MAAS_EXPLAIN_INTEGRATED_GRADIENTS) * (1 + (j->baseline.rows > 0));
        break;
    case MAAS_JOBTYPE_TRAIN:
        n += 10 + t->has_seed + t->early_stopping + t->has_from;
        break;
    case MAAS_JOBTYPE_EVALUATE:
        n += 1;
        break;
    default:
        n += 2 + has_data + (j->optimize.quantize != MAAS_QUANT_NONE);
        break;
    }
    msgpack_pack_map(&pk, (size_t)n);
    pk_str(&pk, "v");
    msgpack_pack_int(&pk, MAAS_PROTOCOL_VERSION);
    pk_str(&pk, "id");
    pk_str(&pk, j->id);
    pk_str(&pk, "type");
    pk_str(&pk, maas_job_type_name(j->type));
    pk_str(&pk, "model");
    pk_str(&pk, ref);
    pk_str(&pk, "created_ms");
    msgpack_pack_int64(&pk, j->created_ms);
    pk_str(&pk, "priority");
    msgpack_pack_int(&pk, j->priority);
    if (j->deadline_ms > 0) {
        pk_str(&pk, "deadline_ms");
        msgpack_pack_int64(&pk, j->deadline_ms);
    }
    if (j->ttl_s > 0) {
        pk_str(&pk, "ttl_s");
        msgpack_pack_int(&pk, j->ttl_s);
    }
    if (j->notify) {
        pk_str(&pk, "notify");
        msgpack_pack_true(&pk);
    }
    switch (j->type) {
    case MAAS_JOBTYPE_INFER:
        pk_str(&pk, "inputs");
        pk_matrix(&pk, &j->inputs);
        if (j->want_classes) {
            pk_str(&pk, "output");
            pk_str(&pk, "classes");
        }
        if (j->explain) {
            pk_str(&pk, "explain");
            pk_str(&pk, maas_explain_name((maas_explain_method)(j->explain - 1)));
        }
        if (j->explain == 1 + MAAS_EXPLAIN_INTEGRATED_GRADIENTS) {
            pk_str(&pk, "steps");
            msgpack_pack_int(&pk, j->explain_steps);
            if (j->baseline.rows > 0) {
                pk_str(&pk, "baseline");
                pk_matrix(&pk, &j->baseline);
            }
        }
        break;
    case MAAS_JOBTYPE_TRAIN: {
        if (t->keras_config) {
            pk_str(&pk, "keras_config");
            pk_str(&pk, t->keras_config);
        } else {
            pk_str(&pk, "layers");
            msgpack_pack_array(&pk, (size_t)t->n_layers);
            for (int i = 0; i < t->n_layers; i++) {
                const maas_layer_spec *s = &t->layers[i];
                char item[96];
                if (s->kind != MAAS_LAYER_DENSE && s->kind != MAAS_LAYER_DROPOUT &&
                    maas_layer_format(s, item, sizeof(item)) > 0) {
                    if (s->name[0]) {
                        msgpack_pack_map(&pk, 2);
                        pk_str(&pk, "spec");
                        pk_str(&pk, item);
                        pk_str(&pk, "name");
                        pk_str(&pk, s->name);
                    } else {
                        pk_str(&pk, item);
                    }
                    continue;
                }
                if (s->kind == MAAS_LAYER_DROPOUT) {
                    msgpack_pack_map(&pk, 1 + (s->name[0] != 0));
                    pk_str(&pk, "dropout");
                    msgpack_pack_double(&pk, s->rate);
                } else {
                    msgpack_pack_map(&pk, 4 + (s->name[0] != 0));
                    pk_str(&pk, "units");
                    msgpack_pack_int(&pk, s->units);
                    pk_str(&pk, "activation");
                    pk_str(&pk, maas_act_name(s->act));
                    pk_str(&pk, "use_bias");
                    s->use_bias ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
                    pk_str(&pk, "kernel_initializer");
                    pk_str(&pk, maas_init_name(s->kernel_init));
                }
                if (s->name[0]) {
                    pk_str(&pk, "name");
                    pk_str(&pk, s->name);
                }
            }
        }
        const maas_optim_spec *o = &t->compile.optim;
        pk_str(&pk, "loss");
        pk_str(&pk, maas_loss_name(t->compile.loss));
        pk_str(&pk, "optimizer");
        msgpack_pack_map(&pk, 8);
        pk_str(&pk, "name");
        pk_str(&pk, maas_opt_name(o->kind));
        pk_str(&pk, "learning_rate");
        msgpack_pack_double(&pk, o->learning_rate);
        pk_str(&pk, "beta_1");
        msgpack_pack_double(&pk, o->beta_1);
        pk_str(&pk, "beta_2");
        msgpack_pack_double(&pk, o->beta_2);
        pk_str(&pk, "epsilon");
        msgpack_pack_double(&pk, o->epsilon);
        pk_str(&pk, "momentum");
        msgpack_pack_double(&pk, o->momentum);
        pk_str(&pk, "nesterov");
        o->nesterov ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
        pk_str(&pk, "rho");
        msgpack_pack_double(&pk, o->rho);
        pk_str(&pk, "metrics");
        msgpack_pack_array(&pk, t->compile.accuracy ? 1 : 0);
        if (t->compile.accuracy) pk_str(&pk, "accuracy");
        pk_str(&pk, "epochs");
        msgpack_pack_int(&pk, t->epochs);
        pk_str(&pk, "batch_size");
        msgpack_pack_int(&pk, t->batch_size);
        pk_str(&pk, "shuffle");
        t->shuffle ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
        pk_str(&pk, "validation_split");
        msgpack_pack_double(&pk, t->validation_split);
        pk_str(&pk, "standardize");
        t->standardize ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
        if (t->has_seed) {
            pk_str(&pk, "seed");
            msgpack_pack_uint64(&pk, t->seed);
        }
        if (t->early_stopping) {
            pk_str(&pk, "early_stopping");
            msgpack_pack_map(&pk, 4);
            pk_str(&pk, "monitor");
            pk_str(&pk, t->monitor[0] ? t->monitor : "val_loss");
            pk_str(&pk, "patience");
            msgpack_pack_int(&pk, t->patience);
            pk_str(&pk, "min_delta");
            msgpack_pack_double(&pk, t->min_delta);
            pk_str(&pk, "restore_best");
            t->restore_best ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
        }
        if (t->has_from) {
            char from[2 * MAAS_NAME_MAX + 2];
            maas_model_ref_format(&t->from, from, sizeof(from));
            pk_str(&pk, "from");
            pk_str(&pk, from);
        }
        pk_str(&pk, "data");
        pk_data(&pk, &j->data);
        break;
    }
    case MAAS_JOBTYPE_EVALUATE:
        pk_str(&pk, "data");
        pk_data(&pk, &j->data);
        break;
    default:
        if (j->optimize.quantize) {
            pk_str(&pk, "quantize");
            pk_str(&pk, j->optimize.quantize == MAAS_QUANT_BF16 ? "bf16" : "int8");
        }
        pk_str(&pk, "prune");
        msgpack_pack_double(&pk, j->optimize.prune);
        pk_str(&pk, "finetune_epochs");
        msgpack_pack_int(&pk, j->optimize.finetune_epochs);
        if (has_data) {
            pk_str(&pk, "data");
            pk_data(&pk, &j->data);
        }
        break;
    }
    return finish(&sb, buf, len, errstr, errstr_size);
}

/* ------------------------------------------------------------ results */

void maas_result_init(maas_result *r, maas_job_type type) {
    memset(r, 0, sizeof(*r));
    r->v = MAAS_PROTOCOL_VERSION;
    r->type = type;
    r->loss = r->accuracy = NAN;
}

void maas_result_release(maas_result *r) {
    if (!r) return;
    matrix_release(&r->outputs);
    matrix_release(&r->attributions);
    free(r->classes);
    free(r->history);
    r->classes = NULL;
    r->history = NULL;
    r->n_history = 0;
}

static void pk_num_opt(msgpack_packer *pk, const char *key, double v, int *n_written) {
    if (isnan(v)) return;
    pk_str(pk, key);
    msgpack_pack_double(pk, v);
    (*n_written)++;
}

maas_err maas_result_encode(const maas_result *r, unsigned char **buf, size_t *len, char *errstr,
                            size_t errstr_size) {
    *buf = NULL;
    *len = 0;
    if (r->type < MAAS_JOBTYPE_TRAIN || r->type > MAAS_JOBTYPE_OPTIMIZE)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT, "unknown result type");
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int infer = r->type == MAAS_JOBTYPE_INFER;
    int n = 4;
    if (infer)
        n += 1 + (r->classes != NULL) + (r->attributions.rows > 0);
    else
        n += 1 + !isnan(r->loss) + !isnan(r->accuracy) +
             (r->type == MAAS_JOBTYPE_TRAIN || r->type == MAAS_JOBTYPE_OPTIMIZE ? 2 : 0);
    msgpack_pack_map(&pk, (size_t)n);
    pk_str(&pk, "v");
    msgpack_pack_int(&pk, r->v);
    pk_str(&pk, "type");
    pk_str(&pk, maas_job_type_name(r->type));
    pk_str(&pk, "model");
    pk_str(&pk, r->model);
    pk_str(&pk, "version");
    msgpack_pack_int(&pk, r->version);
    if (infer) {
        pk_str(&pk, "outputs");
        pk_matrix(&pk, &r->outputs);
        if (r->classes) {
            pk_str(&pk, "classes");
            msgpack_pack_array(&pk, r->outputs.rows);
            for (uint32_t i = 0; i < r->outputs.rows; i++) msgpack_pack_int32(&pk, r->classes[i]);
        }
        if (r->attributions.rows > 0) {
            pk_str(&pk, "attributions");
            pk_matrix(&pk, &r->attributions);
        }
    } else {
        int w = 0;
        pk_str(&pk, "rows");
        msgpack_pack_uint64(&pk, r->rows);
        pk_num_opt(&pk, "loss", r->loss, &w);
        pk_num_opt(&pk, "accuracy", r->accuracy, &w);
        if (r->type == MAAS_JOBTYPE_TRAIN || r->type == MAAS_JOBTYPE_OPTIMIZE) {
            pk_str(&pk, "created");
            r->created ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
            pk_str(&pk, "history");
            msgpack_pack_array(&pk, (size_t)r->n_history);
            for (int i = 0; i < r->n_history; i++) {
                const maas_history_entry *h = &r->history[i];
                int m = 2 + !isnan(h->accuracy) + !isnan(h->val_loss) + !isnan(h->val_accuracy);
                msgpack_pack_map(&pk, (size_t)m);
                pk_str(&pk, "epoch");
                msgpack_pack_int(&pk, h->epoch);
                int dummy = 0;
                pk_str(&pk, "loss");
                msgpack_pack_double(&pk, h->loss);
                pk_num_opt(&pk, "accuracy", h->accuracy, &dummy);
                pk_num_opt(&pk, "val_loss", h->val_loss, &dummy);
                pk_num_opt(&pk, "val_accuracy", h->val_accuracy, &dummy);
            }
        }
    }
    return finish(&sb, buf, len, errstr, errstr_size);
}

maas_err maas_result_decode(const void *buf, size_t len, maas_result *out, char *errstr,
                            size_t errstr_size) {
    maas_result_init(out, MAAS_JOBTYPE_NONE);
    msgpack_unpacked u;
    maas_err err = unpack(buf, len, "result", &u, errstr, errstr_size);
    if (err) return err;
    const msgpack_object *m = &u.data, *v;
    dec d = {errstr, errstr_size, MAAS_OK};
    static const char *const keys[] = {"v",       "type",         "model", "version",  "outputs",
                                       "classes", "rows",         "loss",  "accuracy", "created",
                                       "history", "attributions", NULL};
    char type[16];
    int64_t ver = 0;
    if (check_keys(&d, m, "", keys)) goto done;
    if (!(v = get(m, "v")) || as_int(&d, v, "v", 1, 1, &ver)) {
        if (!d.err) fail(&d, MAAS_ERR_BAD_FORMAT, "v", "missing");
        goto done;
    }
    if (!(v = get(m, "type")) || as_str(&d, v, "type", type, sizeof(type))) {
        if (!d.err) fail(&d, MAAS_ERR_BAD_FORMAT, "type", "missing");
        goto done;
    }
    for (int i = 1; i <= MAAS_JOBTYPE_OPTIMIZE; i++)
        if (!strcmp(type, type_names[i])) out->type = (maas_job_type)i;
    if (!out->type) {
        fail(&d, MAAS_ERR_BAD_FORMAT, "type", "unknown result type '%s'", type);
        goto done;
    }
    if ((v = get(m, "model")) && as_name(&d, v, "model", out->model, sizeof(out->model))) goto done;
    if ((v = get(m, "version")) && as_i32(&d, v, "version", 0, INT32_MAX, &out->version)) goto done;
    if ((v = get(m, "outputs")) && as_matrix(&d, v, "outputs", &out->outputs)) goto done;
    if ((v = get(m, "attributions")) && as_matrix(&d, v, "attributions", &out->attributions))
        goto done;
    if ((v = get(m, "classes"))) {
        if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size != out->outputs.rows) {
            fail(&d, MAAS_ERR_SHAPE_MISMATCH, "classes", "expected one class per output row");
            goto done;
        }
        out->classes = malloc((out->outputs.rows ? out->outputs.rows : 1) * sizeof(int32_t));
        for (uint32_t i = 0; out->classes && i < v->via.array.size; i++)
            if (as_i32(&d, &v->via.array.ptr[i], "classes[]", 0, MAAS_MAX_UNITS, &out->classes[i]))
                goto done;
    }
    int64_t rows = 0;
    if ((v = get(m, "rows")) && as_int(&d, v, "rows", 0, INT64_MAX, &rows)) goto done;
    out->rows = (size_t)rows;
    if ((v = get(m, "loss")) && as_num(&d, v, "loss", -1e300, 1e300, &out->loss)) goto done;
    if ((v = get(m, "accuracy")) && as_num(&d, v, "accuracy", 0, 1, &out->accuracy)) goto done;
    if ((v = get(m, "created")) && as_bool(&d, v, "created", &out->created)) goto done;
    if ((v = get(m, "history"))) {
        if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size > 1000000) {
            fail(&d, MAAS_ERR_BAD_FORMAT, "history", "expected a list");
            goto done;
        }
        out->history = calloc(v->via.array.size + 1, sizeof(*out->history));
        if (!out->history) {
            fail(&d, MAAS_ERR_OUT_OF_MEMORY, "history", "out of memory");
            goto done;
        }
        for (uint32_t i = 0; i < v->via.array.size; i++) {
            const msgpack_object *h = &v->via.array.ptr[i], *w;
            maas_history_entry *e = &out->history[out->n_history++];
            e->accuracy = e->val_loss = e->val_accuracy = NAN;
            static const char *const hk[] = {"epoch",    "loss",         "accuracy",
                                             "val_loss", "val_accuracy", NULL};
            if (h->type != MSGPACK_OBJECT_MAP || check_keys(&d, h, "history[]", hk)) {
                if (!d.err) fail(&d, MAAS_ERR_BAD_FORMAT, "history[]", "expected a map");
                goto done;
            }
            if ((w = get(h, "epoch")) && as_i32(&d, w, "history[].epoch", 1, INT32_MAX, &e->epoch))
                goto done;
            if ((w = get(h, "loss")) && as_num(&d, w, "history[].loss", -1e300, 1e300, &e->loss))
                goto done;
            if ((w = get(h, "accuracy")) && as_num(&d, w, "history[].accuracy", 0, 1, &e->accuracy))
                goto done;
            if ((w = get(h, "val_loss")) &&
                as_num(&d, w, "history[].val_loss", -1e300, 1e300, &e->val_loss))
                goto done;
            if ((w = get(h, "val_accuracy")) &&
                as_num(&d, w, "history[].val_accuracy", 0, 1, &e->val_accuracy))
                goto done;
        }
    }
done:
    msgpack_unpacked_destroy(&u);
    if (d.err) maas_result_release(out);
    return d.err;
}

/* ------------------------------------------------------------ datasets */

void maas_matrix_release(maas_matrix *m) {
    matrix_release(m);
}

maas_err maas_dataset_encode(const maas_matrix *x, const maas_matrix *y, unsigned char **buf,
                             size_t *len, char *errstr, size_t errstr_size) {
    *buf = NULL;
    *len = 0;
    if (!matrix_ok(x) || !matrix_ok(y) || x->rows != y->rows)
        return maas_errf(errstr, errstr_size, MAAS_ERR_SHAPE_MISMATCH,
                         "a dataset needs x and y with the same number of rows");
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    pk_str(&pk, "x");
    pk_matrix(&pk, x);
    pk_str(&pk, "y");
    pk_matrix(&pk, y);
    return finish_max(&sb, MAAS_DATASET_MAX_BYTES, "the dataset", "", buf, len, errstr,
                      errstr_size);
}

maas_err maas_dataset_decode(const void *buf, size_t len, maas_data *data, char *errstr,
                             size_t errstr_size) {
    msgpack_unpacked u;
    maas_err err = unpack_max(buf, len, "dataset", MAAS_DATASET_MAX_BYTES, &u, errstr, errstr_size);
    if (err) return err;
    dec d = {errstr, errstr_size, MAAS_OK, MAAS_DATASET_MAX_BYTES};
    maas_data tmp;
    memset(&tmp, 0, sizeof(tmp));
    as_data(&d, &u.data, "dataset", &tmp);
    msgpack_unpacked_destroy(&u);
    if (d.err || tmp.dataset[0]) {
        matrix_release(&tmp.x);
        matrix_release(&tmp.y);
        return d.err ? d.err
                     : maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                                 "a dataset must hold x and y, not another dataset's name");
    }
    data->x = tmp.x;
    data->y = tmp.y;
    return MAAS_OK;
}
