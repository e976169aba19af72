/*
 * model_io.h - models as Keras legacy `model.h5` files, on disk or in memory.
 *
 * In maas a model version *is* such a file: the same bytes live on disk, in
 * Redis and in a user's Keras program. We write the tf.keras 2.x dialect with
 * an explicit InputLayer, which tf.keras 2.12+ and Keras 3 both load; feature
 * standardization becomes a Keras Normalization layer whose mean and variance
 * sit in its config. We read what tf.keras 2.x and Keras 3 write (see
 * schemas/model-h5.md for the exact layout, and the limits below).
 *
 * Files are untrusted: every shape and size is checked before allocation;
 * links that leave the file, external and virtual datasets are refused; HDF5's
 * own error printing is silenced and turned into one message naming the
 * problem. The HDF5 library Debian ships is not thread-safe, so these calls
 * serialize on an internal lock.
 */
#ifndef MAAS_MODEL_IO_H
#define MAAS_MODEL_IO_H

#include <stddef.h>

#include "maas/err.h"
#include "maas/model.h"
#include "maas/train.h"

#define MAAS_H5_MAX_IMAGE ((size_t)1 << 30) /* largest model file accepted, 1 GiB */
#define MAAS_H5_MAX_JSON ((size_t)16 << 20) /* largest model_config/training_config */

/* What a model file says besides its layers and weights. */
typedef struct maas_model_info {
    int has_compile;                     /* training_config was present and understood */
    maas_compile compile;                /* valid when has_compile */
    char compile_note[MAAS_ERRSTR_SIZE]; /* why training_config was ignored, or "" */
    char keras_version[32];
    char backend[32];
    char name[64]; /* the Sequential's name */
} maas_model_info;

/*
 * Writes m as a Keras model.h5 at path (replaced if it exists). With c, a
 * training_config (loss, metrics, optimizer) is written too, so Keras loads the
 * model compiled; with c == NULL it loads uncompiled.
 */
maas_err maas_model_save(const maas_model *m, const maas_compile *c, const char *path, char *errstr,
                         size_t errstr_size);

/* The same file as an in-memory image (no temporary file). *buf: free with free(). */
maas_err maas_model_save_image(const maas_model *m, const maas_compile *c, unsigned char **buf,
                               size_t *len, char *errstr, size_t errstr_size);

/*
 * Loads a model file into *out (free with maas_model_free()); info (optional)
 * receives the file's metadata and training config. On error *out is NULL and
 * the code says why: BAD_FORMAT (broken file), UNKNOWN_NAME (something maas
 * does not support), SHAPE_MISMATCH, NON_FINITE, LIMIT_EXCEEDED, IO, OUT_OF_MEMORY.
 */
maas_err maas_model_load(const char *path, maas_model **out, maas_model_info *info, char *errstr,
                         size_t errstr_size);

/* Loads from an in-memory image (borrowed; copied as needed). */
maas_err maas_model_load_image(const void *buf, size_t len, maas_model **out, maas_model_info *info,
                               char *errstr, size_t errstr_size);

/*
 * The Keras rendering of a stored version: an int8 file (maas's own, see
 * schemas/model-h5.md) becomes the float file of its dequantized weights, with
 * its training config; any other file is copied as it is. *out: free() it;
 * *converted (optional) says whether it was int8.
 */
maas_err maas_model_image_for_keras(const void *buf, size_t len, unsigned char **out,
                                    size_t *out_len, int *converted, char *errstr,
                                    size_t errstr_size);

#endif
