/* Embedding's kernels (maas/embed.h): a gather and its scatter-add. */
#include "maas/embed.h"

#include <math.h>
#include <string.h>

maas_err maas_embed_check(const float *idx, size_t n, int vocab, char *errstr, size_t errstr_size) {
    for (size_t i = 0; i < n; i++)
        if (!(idx[i] >= 0 && idx[i] < (float)vocab) || idx[i] != floorf(idx[i]))
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "embedding input %zu: %g is not an index in 0..%d", i, (double)idx[i],
                             vocab - 1);
    return MAAS_OK;
}

void maas_embed_forward(const float *idx, size_t n, const float *table, int dim, float *y) {
    for (size_t i = 0; i < n; i++)
        memcpy(y + i * (size_t)dim, table + (size_t)idx[i] * (size_t)dim,
               (size_t)dim * sizeof(float));
}

void maas_embed_backward(const float *idx, size_t n, const float *dy, int vocab, int dim,
                         float *dtable) {
    memset(dtable, 0, (size_t)vocab * (size_t)dim * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        float *d = dtable + (size_t)idx[i] * (size_t)dim;
        const float *g = dy + i * (size_t)dim;
        for (int k = 0; k < dim; k++) d[k] += g[k];
    }
}
