/* Private to the compute core and its fuzz tests. */
#ifndef MAAS_MODEL_H5_INTERNAL_H
#define MAAS_MODEL_H5_INTERNAL_H

#include "maas/model_io.h"

/*
 * maas_model_load_image() without the forked child: parses in this process.
 * For fuzzing our own loader code, where a crash must be seen, not contained.
 */
maas_err maas__model_load_image_direct(const void *buf, size_t len, maas_model **out,
                                       maas_model_info *info, char *errstr, size_t errstr_size);

#endif
