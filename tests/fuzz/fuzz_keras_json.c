/*
 * libFuzzer target: Keras model_config and training_config JSON parsing.
 * The first byte picks the parser; the rest is the JSON text.
 */
#include "maas/base.h"
#include "keras_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    char err[MAAS_ERRSTR_SIZE];
    const char *json = (const char *)data + 1;
    if (data[0] & 1) {
        maas_compile c;
        maas__keras_training_parse(json, size - 1, &c, err, sizeof(err));
    } else {
        maas_keras_arch a;
        if (maas__keras_arch_parse(json, size - 1, &a, err, sizeof(err)) == MAAS_OK)
            maas__keras_arch_release(&a);
    }
    return 0;
}
