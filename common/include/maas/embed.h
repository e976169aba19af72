/*
 * embed.h - Embedding's kernels (issue 23): integer inputs, carried as float32 like every
 * input, each replaced by its row of a (vocab x dim) table, row-major (Keras's `embeddings`).
 * A row of l indices becomes l x dim floats.
 */
#ifndef MAAS_EMBED_H
#define MAAS_EMBED_H

#include <stddef.h>

#include "maas/err.h"

/* Every one of n indices integral and in 0..vocab-1: MAAS_OK, else INVALID_ARGUMENT naming the
 * first bad one (its position and value). */
maas_err maas_embed_check(const float *idx, size_t n, int vocab, char *errstr, size_t errstr_size);

/* y (n x dim) = the table rows of n checked indices. */
void maas_embed_forward(const float *idx, size_t n, const float *table, int dim, float *y);

/* dtable (vocab x dim, overwritten) = the sum of dy's rows per index. */
void maas_embed_backward(const float *idx, size_t n, const float *dy, int vocab, int dim,
                         float *dtable);

#endif
