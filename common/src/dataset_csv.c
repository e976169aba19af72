/* The CSV adapter (the only file that includes csv.h). */
#include "maas/base.h"
#include "maas/dataset.h"

#include <csv.h>

typedef struct csv_state {
    maas_table *t;
    size_t cap;    /* floats allocated in t->data */
    int col;       /* column within the current record */
    size_t record; /* 0 = header */
    maas_err err;
    char *errstr;
    size_t errstr_size;
    int header_cap;
} csv_state;

static void on_field(void *s, size_t len, void *ud) {
    csv_state *st = ud;
    maas_table *t = st->t;
    if (st->err) return;
    if (st->record == 0) {
        if (st->col >= MAAS_DATA_MAX_COLS) {
            st->err = maas_errf(st->errstr, st->errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                                "csv header has more than %d columns", MAAS_DATA_MAX_COLS);
            return;
        }
        if (st->col >= st->header_cap) {
            int cap = st->header_cap ? st->header_cap * 2 : 16;
            char **n = realloc(t->names, (size_t)cap * sizeof(char *));
            if (!n) goto oom;
            t->names = n;
            st->header_cap = cap;
        }
        if (len == 0) { /* libcsv passes NULL for an empty field: nothing to name it by */
            st->err = maas_errf(st->errstr, st->errstr_size, MAAS_ERR_BAD_FORMAT,
                                "csv header, column %d: empty name (every column needs one)",
                                st->col + 1);
            return;
        }
        char *name = malloc(len + 1);
        if (!name) goto oom;
        memcpy(name, s, len);
        name[len] = '\0';
        t->names[st->col++] = name;
        t->cols = st->col;
        return;
    }
    if (st->col >= t->cols) {
        st->err =
            maas_errf(st->errstr, st->errstr_size, MAAS_ERR_BAD_FORMAT,
                      "csv row %zu has more than the header's %d columns", st->record, t->cols);
        return;
    }
    char buf[64];
    if (len == 0 || len >= sizeof(buf)) {
        st->err = maas_errf(st->errstr, st->errstr_size, MAAS_ERR_BAD_FORMAT,
                            "csv row %zu, column '%s': %s", st->record, t->names[st->col],
                            len == 0 ? "empty value" : "value too long for a number");
        return;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    while (*end == ' ' || *end == '\t' || *end == '\r') end++;
    if (end == buf || *end != '\0' || !isfinite(v) || fabs(v) > FLT_MAX) {
        st->err = maas_errf(st->errstr, st->errstr_size, MAAS_ERR_BAD_FORMAT,
                            "csv row %zu, column '%s': '%s' is not a finite number", st->record,
                            t->names[st->col], buf);
        return;
    }
    size_t cell = (st->record - 1) * (size_t)t->cols + (size_t)st->col;
    if (cell >= MAAS_DATA_MAX_CELLS) {
        st->err = maas_errf(st->errstr, st->errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                            "csv has more than %zu values", MAAS_DATA_MAX_CELLS);
        return;
    }
    if (cell >= st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 4096;
        float *d = realloc(t->data, cap * sizeof(float));
        if (!d) goto oom;
        t->data = d;
        st->cap = cap;
    }
    t->data[cell] = (float)v;
    st->col++;
    return;
oom:
    st->err =
        maas_errf(st->errstr, st->errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory reading csv");
}

static void on_record(int c, void *ud) {
    (void)c;
    csv_state *st = ud;
    if (st->err) return;
    if (st->record == 0) {
        if (st->col == 0)
            st->err =
                maas_errf(st->errstr, st->errstr_size, MAAS_ERR_BAD_FORMAT, "csv header is empty");
    } else if (st->col != st->t->cols) {
        st->err = maas_errf(st->errstr, st->errstr_size, MAAS_ERR_BAD_FORMAT,
                            "csv row %zu has %d columns, the header has %d", st->record, st->col,
                            st->t->cols);
        return;
    } else {
        st->t->rows++;
    }
    st->record++;
    st->col = 0;
}

maas_err maas_csv_parse(const char *text, size_t len, maas_table *out, char *errstr,
                        size_t errstr_size) {
    memset(out, 0, sizeof(*out));
    struct csv_parser p;
    if (csv_init(&p, CSV_APPEND_NULL | CSV_EMPTY_IS_NULL) != 0)
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY,
                         "cannot initialize the csv parser");
    csv_state st = {.t = out, .errstr = errstr, .errstr_size = errstr_size};
    if (csv_parse(&p, text, len, on_field, on_record, &st) != len && !st.err)
        st.err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "csv is malformed: %s",
                           csv_strerror(csv_error(&p)));
    if (!st.err) csv_fini(&p, on_field, on_record, &st);
    csv_free(&p);
    if (!st.err && out->rows == 0)
        st.err = maas_errf(errstr, errstr_size, MAAS_ERR_EMPTY, "csv has no data rows");
    if (st.err) maas_table_release(out);
    return st.err;
}

maas_err maas_csv_read(const char *path, maas_table *out, char *errstr, size_t errstr_size) {
    memset(out, 0, sizeof(*out));
    FILE *f = fopen(path, "rb");
    if (!f)
        return maas_errf(errstr, errstr_size, MAAS_ERR_IO, "cannot open '%s': %s", path,
                         strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    maas_err err = MAAS_OK;
    while (buf) {
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) break;
        if (len == cap) {
            if (cap > MAAS_DATA_MAX_CELLS * 4) {
                err = maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED, "'%s' is too large",
                                path);
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (!buf)
        err = maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory reading csv");
    if (!err && ferror(f))
        err = maas_errf(errstr, errstr_size, MAAS_ERR_IO, "cannot read '%s'", path);
    fclose(f);
    if (!err) {
        err = maas_csv_parse(buf, len, out, errstr, errstr_size);
        if (err && errstr && errstr_size > 0) {
            char tmp[MAAS_ERRSTR_SIZE];
            snprintf(tmp, sizeof(tmp), "%s", errstr);
            snprintf(errstr, errstr_size, "%s: %s", path, tmp);
        }
    }
    free(buf);
    return err;
}

void maas_table_release(maas_table *t) {
    if (!t) return;
    for (int i = 0; t->names && i < t->cols; i++) free(t->names[i]);
    free(t->names);
    free(t->data);
    memset(t, 0, sizeof(*t));
}

int maas_table_col(const maas_table *t, const char *name) {
    for (int i = 0; i < t->cols; i++)
        if (!strcmp(t->names[i], name)) return i;
    char *end;
    long v = strtol(name, &end, 10);
    if (end != name && *end == '\0' && v >= 0 && v < t->cols) return (int)v;
    if (end != name && *end == '\0' && v < 0 && -v <= t->cols) return t->cols + (int)v;
    return -1;
}

maas_err maas_table_split(const maas_table *t, int label_col, float **x, float **y, char *errstr,
                          size_t errstr_size) {
    *x = *y = NULL;
    if (label_col < 0 || label_col >= t->cols || t->cols < 2)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "label column %d is not one of the table's %d columns", label_col,
                         t->cols);
    int nf = t->cols - 1;
    *x = malloc(t->rows * (size_t)nf * sizeof(float));
    *y = malloc(t->rows * sizeof(float));
    if (!*x || !*y) {
        free(*x);
        free(*y);
        *x = *y = NULL;
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (size_t r = 0; r < t->rows; r++) {
        const float *src = t->data + r * (size_t)t->cols;
        float *dst = *x + r * (size_t)nf;
        for (int j = 0, k = 0; j < t->cols; j++)
            if (j == label_col)
                (*y)[r] = src[j];
            else
                dst[k++] = src[j];
    }
    return MAAS_OK;
}
