/*
 * keras_json.h - JSON, private to common/: Keras model_config and
 * training_config. keras_json.c is the only file that includes cJSON; the
 * JSON helpers the programs use are public, in maas/json.h.
 */
#ifndef MAAS_KERAS_JSON_H
#define MAAS_KERAS_JSON_H

#include "maas/json.h"
#include "maas/model.h"
#include "maas/train.h"

/* A Sequential architecture as read from model_config. */
typedef struct maas_keras_arch {
    char name[64];
    int n_inputs; /* 0 when the config does not say (then: the first kernel's rows) */
    int n_layers;
    maas_layer_spec layers[MAAS_MAX_LAYERS];
    int input_reshape; /* layers[0] is the Reshape an input of rank > 1 became */
    /* A leading Normalization layer (feature standardization). */
    int norm;
    char norm_name[MAAS_LAYER_NAME_MAX];
    int n_norm;       /* entries in norm_mean/norm_var (1 = broadcast scalar) */
    float *norm_mean; /* owned; NULL when the statistics are weights in the file */
    float *norm_var;
} maas_keras_arch;

maas_err maas__keras_arch_parse(const char *json, size_t len, maas_keras_arch *a, char *errstr,
                                size_t errstr_size);
void maas__keras_arch_release(maas_keras_arch *a);

/* model_config JSON for m (tf.keras 2.x dialect) into *out (free with free()). */
maas_err maas__keras_arch_write(const maas_model *m, const char *norm_name, char **out,
                                char *errstr, size_t errstr_size);

maas_err maas__keras_training_parse(const char *json, size_t len, maas_compile *c, char *errstr,
                                    size_t errstr_size);
/* training_config JSON for c into *out (free with free()). */
maas_err maas__keras_training_write(const maas_compile *c, char **out, char *errstr,
                                    size_t errstr_size);

#endif
