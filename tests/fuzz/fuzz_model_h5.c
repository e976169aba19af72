/*
 * libFuzzer target: the model-file loader on structurally valid HDF5 files
 * with fuzzed contents. HDF5 itself writes each file (so the fuzzer explores
 * our code, not HDF5's parser, whose crashes on corrupt bytes the isolated
 * loader contains); the input supplies:
 *
 *   model_config JSON \0 training_config JSON \0 layer program
 *
 * A training_config of exactly "int8" or "bf16" writes no training config but
 * the root attribute maas_quantization with that value (maas's int8 and bf16
 * files). The layer program: per layer group, one byte for the number of
 * weights (0..3), then per weight a rank byte (0..4), dimension bytes (0..20)
 * and a dtype byte (float32, float64, int32, int8, float32 > 0 - int8 files'
 * scales). Layers are named from the config's
 * order ("dense", "dense_1", ...) or "g<i>"; weights "<layer>/w<j>".
 *
 * This test is the one place outside model_h5.c that includes hdf5.h: it
 * has to write files the adapter is not willing to write.
 */
#include "maas/base.h"
#include "maas/model.h"
#include "model_h5_internal.h"

#include <hdf5.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void put_str_attr(hid_t obj, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate(H5S_SCALAR);
    H5Tset_size(t, H5T_VARIABLE);
    hid_t a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, &v);
    H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
}

static void put_list_attr(hid_t obj, const char *name, const char **v, hsize_t n) {
    hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate_simple(1, &n, NULL);
    H5Tset_size(t, H5T_VARIABLE);
    hid_t a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    if (n) H5Awrite(a, t, v);
    H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 16) return 0;
    char *buf = malloc(size + 3);
    memcpy(buf, data, size);
    buf[size] = buf[size + 1] = buf[size + 2] = '\0';
    const char *cfg = buf;
    const char *train = cfg + strlen(cfg) + 1;
    const uint8_t *prog = (const uint8_t *)train + strlen(train) + 1;
    const uint8_t *end = (const uint8_t *)buf + size;
    if ((const char *)prog > buf + size) prog = end;

    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_core(fapl, 4096, 0);
    hid_t f = H5Fcreate("fuzz.h5", H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    put_str_attr(f, "model_config", cfg);
    if (!strcmp(train, "int8") || !strcmp(train, "bf16"))
        put_str_attr(f, "maas_quantization", train);
    else if (*train)
        put_str_attr(f, "training_config", train);
    hid_t mw = H5Gcreate2(f, "model_weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    static const char *const lnames[] = {"dense", "dense_1", "dense_2", "normalization",
                                         "g4",    "dropout", "g6",      "g7"};
    const char *names[8];
    int n_layers = 0;
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    while (prog < end && n_layers < 8) {
        const char *lname = lnames[n_layers];
        names[n_layers++] = lname;
        hid_t g = H5Gcreate2(mw, lname, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        int nw = *prog++ % 4;
        char wn[3][64];
        const char *wp[3];
        for (int j = 0; j < nw; j++) {
            snprintf(wn[j], sizeof(wn[j]), "%s/w%d", lname, j);
            wp[j] = wn[j];
            int rank = prog < end ? *prog++ % 5 : 1;
            hsize_t dims[4] = {1, 1, 1, 1}, cells = 1;
            for (int r = 0; r < rank; r++) {
                dims[r] = prog < end ? *prog++ % 21 : 1;
                cells *= dims[r];
            }
            int dt = prog < end ? *prog++ % 5 : 0;
            hid_t type = dt == 1   ? H5T_NATIVE_DOUBLE
                         : dt == 2 ? H5T_NATIVE_INT
                         : dt == 3 ? H5T_NATIVE_SCHAR
                                   : H5T_NATIVE_FLOAT;
            hid_t sp = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
            hid_t d = H5Dcreate2(g, wn[j], type, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
            double *vals = calloc(cells ? cells : 1, sizeof(double));
            for (hsize_t k = 0; k < cells; k++) /* int8: whole values in [-126, 126] */
                vals[k] = dt == 3   ? (double)(k % 7) * 42.0 - 126.0
                          : dt == 4 ? (double)(k % 7) * 0.25 + 0.25
                                    : (double)(k % 7) * 0.25 - 0.5;
            H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, vals);
            free(vals);
            H5Dclose(d);
            H5Sclose(sp);
        }
        put_list_attr(g, "weight_names", wp, (hsize_t)nw);
        H5Gclose(g);
    }
    put_list_attr(mw, "layer_names", names, (hsize_t)n_layers);
    H5Pclose(lcpl);
    H5Gclose(mw);
    H5Fflush(f, H5F_SCOPE_GLOBAL);
    ssize_t len = H5Fget_file_image(f, NULL, 0);
    unsigned char *img = len > 0 ? malloc((size_t)len) : NULL;
    if (img) H5Fget_file_image(f, img, (size_t)len);
    H5Fclose(f);
    H5Pclose(fapl);
    free(buf);
    if (!img) return 0;

    maas_model *m;
    maas_model_info info;
    char err[MAAS_ERRSTR_SIZE];
    if (maas__model_load_image_direct(img, (size_t)len, &m, &info, err, sizeof(err)) == MAAS_OK) {
        /* whatever loads must be usable */
        float *x = calloc((size_t)m->n_inputs, sizeof(float));
        float *y = calloc((size_t)m->n_outputs, sizeof(float));
        if (maas_model_predict(m, x, 1, y, err, sizeof(err)) != MAAS_OK) abort();
        free(x);
        free(y);
        maas_model_free(m);
    }
    free(img);
    return 0;
}
