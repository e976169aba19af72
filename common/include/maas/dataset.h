/*
 * dataset.h - reading numeric datasets: CSV with a header row (libcsv) and
 * IDX files such as MNIST/Fashion-MNIST, plain or gzip-compressed (zlib).
 *
 * Files are untrusted: every count is checked against MAAS_DATA_MAX_CELLS
 * before it is allocated, and errors name the file, row and column.
 */
#ifndef MAAS_DATASET_H
#define MAAS_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "maas/err.h"

#define MAAS_DATA_MAX_CELLS ((size_t)1 << 30) /* 4 GiB of float32 */
#define MAAS_DATA_MAX_COLS 65536

/* A dense numeric table, row-major. Release with maas_table_release(). */
typedef struct maas_table {
    size_t rows;
    int cols;
    float *data;  /* rows x cols, owned */
    char **names; /* cols column names from the header, owned */
} maas_table;

/* Parses CSV text (header row, then numeric rows) already in memory. */
maas_err maas_csv_parse(const char *text, size_t len, maas_table *out, char *errstr,
                        size_t errstr_size);
/* Reads and parses a CSV file. */
maas_err maas_csv_read(const char *path, maas_table *out, char *errstr, size_t errstr_size);
void maas_table_release(maas_table *t);

/* Column index by header name, or by a decimal index string; -1 if absent. */
int maas_table_col(const maas_table *t, const char *name_or_index);

/*
 * Splits a table into features (every column but label_col) and a one-column
 * label vector. *x and *y are malloc'ed; the caller frees them.
 */
maas_err maas_table_split(const maas_table *t, int label_col, float **x, float **y, char *errstr,
                          size_t errstr_size);

/*
 * Reads a numeric dataset of 1 to 4 dimensions from an HDF5 file (path, dataset path
 * such as "/x") as a table with columns named "0", "1", ... (HDF5 adapter): the first
 * dimension is the rows, the rest flattened row-major (an (n, 28, 28) image set gives 784
 * columns, channels last).
 */
maas_err maas_h5_read_matrix(const char *path, const char *dataset, maas_table *out, char *errstr,
                             size_t errstr_size);

/* An IDX tensor (unsigned byte data), converted to float. */
typedef struct maas_idx {
    int ndim;
    uint32_t dims[4];
    size_t count;
    float *data; /* count floats, owned; free with maas_idx_release() */
} maas_idx;

maas_err maas_idx_read(const char *path, maas_idx *out, char *errstr, size_t errstr_size);
void maas_idx_release(maas_idx *t);

#endif
