/* IDX reader (MNIST format), gzip or plain, through zlib (the only file that includes zlib.h). */
#include "maas/base.h"
#include "maas/dataset.h"

#include <zlib.h>

static int read_full(gzFile f, void *buf, size_t n) {
    unsigned char *p = buf;
    while (n > 0) {
        unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
        int got = gzread(f, p, chunk);
        if (got <= 0) return -1;
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

maas_err maas_idx_read(const char *path, maas_idx *out, char *errstr, size_t errstr_size) {
    memset(out, 0, sizeof(*out));
    gzFile f = gzopen(path, "rb"); /* reads plain files too */
    if (!f)
        return maas_errf(errstr, errstr_size, MAAS_ERR_IO, "cannot open '%s': %s", path,
                         strerror(errno));
    maas_err err = MAAS_OK;
    unsigned char magic[4];
    unsigned char *raw = NULL;
    if (read_full(f, magic, 4) != 0) {
        err =
            maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "'%s' is too short for IDX", path);
        goto done;
    }
    if (magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] < 1 || magic[3] > 4) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                        "'%s' is not an unsigned-byte IDX file of rank 1..4", path);
        goto done;
    }
    out->ndim = magic[3];
    size_t count = 1;
    for (int i = 0; i < out->ndim; i++) {
        unsigned char d[4];
        if (read_full(f, d, 4) != 0) {
            err =
                maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "'%s': truncated header", path);
            goto done;
        }
        out->dims[i] = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
        if (out->dims[i] == 0 || count > MAAS_DATA_MAX_CELLS / out->dims[i]) {
            err = maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                            "'%s': dimension %d (%u) is zero or too large", path, i, out->dims[i]);
            goto done;
        }
        count *= out->dims[i];
    }
    raw = malloc(count);
    out->data = malloc(count * sizeof(float));
    if (!raw || !out->data) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory reading '%s'",
                        path);
        goto done;
    }
    if (read_full(f, raw, count) != 0) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "'%s': truncated data", path);
        goto done;
    }
    for (size_t i = 0; i < count; i++) out->data[i] = raw[i];
    out->count = count;
done:
    free(raw);
    gzclose(f);
    if (err) maas_idx_release(out);
    return err;
}

void maas_idx_release(maas_idx *t) {
    if (!t) return;
    free(t->data);
    memset(t, 0, sizeof(*t));
}
