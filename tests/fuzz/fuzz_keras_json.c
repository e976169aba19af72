/*
 * libFuzzer target: the JSON parsers — Keras model_config (and the planning of the layers it
 * describes) and training_config,
 * and the HTTP API's JSON view of a job (JSON -> msgpack -> the job decoder).
 * The first byte picks the parser; the rest is the JSON text.
 */
#include "maas/base.h"
#include "maas/job.h"
#include "keras_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    char err[MAAS_ERRSTR_SIZE];
    const char *json = (const char *)data + 1;
    if (data[0] % 3 == 2) {
        maas_job j;
        maas_job_decode_json(json, size - 1, &j, err, sizeof(err));
        maas_job_release(&j);
    } else if (data[0] & 1) {
        maas_compile c;
        maas__keras_training_parse(json, size - 1, &c, err, sizeof(err));
    } else {
        maas_keras_arch a;
        if (maas__keras_arch_parse(json, size - 1, &a, err, sizeof(err)) == MAAS_OK) {
            maas_net_size ns; /* the layers' planning: shapes, windows, sizes */
            if (a.n_inputs > 0)
                maas_layers_size(a.n_inputs, a.layers, a.n_layers, &ns, err, sizeof(err));
            maas__keras_arch_release(&a);
        }
    }
    return 0;
}
