/*
 * Keras model_config / training_config JSON (the only file that includes cJSON).
 * Size (~780 lines): one adapter file per library (STYLE.md), and Keras's config
 * dialects (tf.keras 2, Keras 3) are read and written here.
 */
#include "maas/base.h"
#include "keras_json.h"

#include <cjson/cJSON.h>

/* ---- reading ---- */

#define MAX_JSON_DEPTH 64

static int json_depth(const cJSON *j, int depth) {
    if (depth > MAX_JSON_DEPTH) return depth;
    int worst = depth;
    for (const cJSON *c = j ? j->child : NULL; c; c = c->next) {
        int d = json_depth(c, depth + 1);
        if (d > worst) worst = d;
        if (worst > MAX_JSON_DEPTH) break;
    }
    return worst;
}

static maas_err parse(const char *json, size_t len, const char *what, cJSON **out, char *errstr,
                      size_t errstr_size) {
    cJSON *root = cJSON_ParseWithLength(json, len);
    *out = NULL;
    if (!root)
        return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "%s is not valid JSON", what);
    if (json_depth(root, 0) > MAX_JSON_DEPTH) {
        cJSON_Delete(root);
        return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                         "%s nests deeper than %d levels", what, MAX_JSON_DEPTH);
    }
    *out = root;
    return MAAS_OK;
}

/* An integral JSON number within [lo, hi]. */
static int get_int(const cJSON *j, long lo, long hi, long *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double v = j->valuedouble;
    /* hi + 1.0 and "<": (double)LONG_MAX rounds up to 2^63, which does not fit a long */
    if (!(v >= (double)lo && v < (double)hi + 1.0) || v != floor(v)) return 0;
    *out = (long)v;
    return 1;
}

static const char *get_str(const cJSON *obj, const char *key) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(j) ? j->valuestring : NULL;
}

/* [null, n] (or [n]) -> n; 0 if absent; -1 if malformed or of another rank. */
static long input_width(const cJSON *shape) {
    if (!shape || cJSON_IsNull(shape)) return 0;
    if (!cJSON_IsArray(shape)) return -1;
    int n = cJSON_GetArraySize(shape);
    const cJSON *last = cJSON_GetArrayItem(shape, n - 1);
    long w;
    if (n < 1 || n > 2 || !get_int(last, 1, MAAS_MAX_UNITS, &w)) return -1;
    if (n == 2 && !cJSON_IsNull(cJSON_GetArrayItem(shape, 0))) {
        long b;
        if (!get_int(cJSON_GetArrayItem(shape, 0), 1, INT_MAX, &b)) return -1;
    }
    return w;
}

/* [null, d1, ..., dk] (or [d1, ..., dk]) with k in 1..MAAS_MAX_RANK -> *out; 0 if absent, -1 if
 * malformed. */
static int input_shape(const cJSON *shape, maas_shape *out) {
    if (!shape || cJSON_IsNull(shape)) return 0;
    if (!cJSON_IsArray(shape)) return -1;
    int n = cJSON_GetArraySize(shape), first = 0;
    if (n >= 1 && cJSON_IsNull(cJSON_GetArrayItem(shape, 0))) first = 1;
    if (n - first < 1 || n - first > MAAS_MAX_RANK) return -1;
    memset(out, 0, sizeof(*out));
    size_t total = 1;
    for (int i = first; i < n; i++) {
        long d;
        if (!get_int(cJSON_GetArrayItem(shape, i), 1, MAAS_CONV_MAX_DIM, &d)) return -1;
        out->d[out->rank++] = (int)d;
        total *= (size_t)d;
    }
    return total <= MAAS_MAX_UNITS ? 1 : -1;
}

/* A list of dims integers in 1..max (or one integer, repeated) -> v. */
static int get_ints(const cJSON *j, int dims, long max, int *v) {
    long x;
    if (get_int(j, 1, max, &x)) {
        for (int i = 0; i < dims; i++) v[i] = (int)x;
        return 1;
    }
    if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) != dims) return 0;
    for (int i = 0; i < dims; i++) {
        if (!get_int(cJSON_GetArrayItem(j, i), 1, max, &x)) return 0;
        v[i] = (int)x;
    }
    return 1;
}

/* Reads a float list (or a scalar) into a malloc'ed array. */
static int get_floats(const cJSON *j, float **out, int *n) {
    if (cJSON_IsNumber(j)) {
        *out = malloc(sizeof(float));
        if (!*out) return 0;
        if (!isfinite(j->valuedouble) || fabs(j->valuedouble) > FLT_MAX) return 0;
        (*out)[0] = (float)j->valuedouble;
        *n = 1;
        return 1;
    }
    if (!cJSON_IsArray(j)) return 0;
    int size = cJSON_GetArraySize(j);
    if (size < 1 || size > MAAS_MAX_UNITS) return 0;
    *out = malloc((size_t)size * sizeof(float));
    if (!*out) return 0;
    int i = 0;
    for (const cJSON *c = j->child; c; c = c->next, i++) {
        if (!cJSON_IsNumber(c) || !isfinite(c->valuedouble) || fabs(c->valuedouble) > FLT_MAX)
            return 0;
        (*out)[i] = (float)c->valuedouble;
    }
    *n = size;
    return 1;
}

void maas__keras_arch_release(maas_keras_arch *a) {
    if (!a) return;
    free(a->norm_mean);
    free(a->norm_var);
    a->norm_mean = a->norm_var = NULL;
}

static maas_err copy_name(char *dst, size_t size, const char *src, int idx, char *errstr,
                          size_t errstr_size) {
    if (!src) {
        dst[0] = '\0';
        return MAAS_OK;
    }
    if (strlen(src) >= size || strchr(src, '/'))
        return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                         "layer %d has an invalid name (over %zu bytes or containing '/')", idx,
                         size - 1);
    snprintf(dst, size, "%s", src);
    return MAAS_OK;
}

/* A layer's "activation": a built-in's name (or null: linear). */
static maas_err get_activation(const cJSON *cfg, const char *cls, const char *shown, maas_act *out,
                               char *errstr, size_t errstr_size) {
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(cfg, "activation");
    *out = MAAS_ACT_LINEAR;
    if (!act || cJSON_IsNull(act)) return MAAS_OK;
    if (!cJSON_IsString(act))
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                         "%s layer '%s': only built-in activations given by name are supported",
                         cls, shown);
    char sub[MAAS_ERRSTR_SIZE];
    if (maas_act_from_name(act->valuestring, out, sub, sizeof(sub)))
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME, "%s layer '%s': %s", cls,
                         shown, sub);
    return MAAS_OK;
}

/* A boolean key (absent: dflt); -1 if it is not a boolean. */
static int get_bool(const cJSON *cfg, const char *key, int dflt) {
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!b || cJSON_IsNull(b)) return dflt;
    return cJSON_IsBool(b) ? cJSON_IsTrue(b) : -1;
}

/* "channels_last" (or absent) and "valid"/"same" padding; 0 ok, else the error's code. */
static maas_err get_layout(const cJSON *cfg, const char *cls, const char *shown, int *same,
                           char *errstr, size_t errstr_size) {
    const char *df = get_str(cfg, "data_format");
    if (df && strcmp(df, "channels_last"))
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                         "%s layer '%s': data_format '%s' is not supported (channels_last only)",
                         cls, shown, df);
    const char *pad = get_str(cfg, "padding");
    if (same) *same = pad && !strcmp(pad, "same");
    if (pad && strcmp(pad, "same") && strcmp(pad, "valid"))
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                         "%s layer '%s': padding '%s' is not supported (valid, same)", cls, shown,
                         pad);
    return MAAS_OK;
}

/*
 * The layers beyond Dense, Dropout and Normalization: *s filled and MAAS_OK; s->kind Dense
 * (unchanged) when cls is none of them.
 */
static maas_err parse_shaped(const char *cls, const cJSON *cfg, const char *shown,
                             maas_layer_spec *s, char *errstr, size_t errstr_size) {
    maas_err err;
    int dims = 0;
    s->kind = MAAS_LAYER_DENSE;
    size_t len = strlen(cls);
    if (len > 2 && cls[len - 1] == 'D' && (cls[len - 2] == '1' || cls[len - 2] == '2'))
        dims = cls[len - 2] - '0';
    if (!strcmp(cls, "Conv1D") || !strcmp(cls, "Conv2D")) {
        long filters, groups = 1;
        int k[2], st[2] = {1, 1}, dil[2] = {1, 1};
        if (!get_int(cJSON_GetObjectItemCaseSensitive(cfg, "filters"), 1, MAAS_CONV_MAX_DIM,
                     &filters) ||
            !get_ints(cJSON_GetObjectItemCaseSensitive(cfg, "kernel_size"), dims,
                      MAAS_CONV_MAX_WINDOW, k))
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                             "%s layer '%s': filters and kernel_size must be positive integers",
                             cls, shown);
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, "strides");
        if (j && !get_ints(j, dims, MAAS_CONV_MAX_WINDOW, st))
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                             "%s layer '%s': strides are not %d positive integers", cls, shown,
                             dims);
        j = cJSON_GetObjectItemCaseSensitive(cfg, "dilation_rate");
        if ((j && !get_ints(j, dims, MAAS_CONV_MAX_WINDOW, dil)) || dil[0] != 1 ||
            dil[dims - 1] != 1)
            return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                             "%s layer '%s': only dilation_rate 1 is supported", cls, shown);
        j = cJSON_GetObjectItemCaseSensitive(cfg, "groups");
        if (j && (!get_int(j, 1, MAAS_CONV_MAX_DIM, &groups) || groups != 1))
            return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                             "%s layer '%s': only groups 1 is supported", cls, shown);
        maas_act act;
        int same;
        if ((err = get_activation(cfg, cls, shown, &act, errstr, errstr_size)) ||
            (err = get_layout(cfg, cls, shown, &same, errstr, errstr_size)))
            return err;
        *s = maas_conv(dims, (int)filters, k[0], k[dims - 1], act);
        s->sh = dims == 2 ? st[0] : 1;
        s->sw = st[dims - 1];
        s->same = same;
        int bias = get_bool(cfg, "use_bias", 1);
        if (bias < 0)
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                             "%s layer '%s': use_bias is not a boolean", cls, shown);
        s->use_bias = bias;
        return MAAS_OK;
    }
    int max = !strncmp(cls, "MaxPooling", 10), avg = !strncmp(cls, "AveragePooling", 14);
    if ((max || avg) && dims) {
        int k[2], st[2];
        if (!get_ints(cJSON_GetObjectItemCaseSensitive(cfg, "pool_size"), dims,
                      MAAS_CONV_MAX_WINDOW, k))
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                             "%s layer '%s': pool_size must be %d positive integers", cls, shown,
                             dims);
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, "strides");
        if (!j || cJSON_IsNull(j)) {
            st[0] = k[0];
            st[1] = k[dims - 1];
        } else if (!get_ints(j, dims, MAAS_CONV_MAX_WINDOW, st)) {
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                             "%s layer '%s': strides are not %d positive integers", cls, shown,
                             dims);
        }
        int same;
        if ((err = get_layout(cfg, cls, shown, &same, errstr, errstr_size))) return err;
        *s = maas_pool(max ? MAAS_LAYER_MAXPOOL : MAAS_LAYER_AVGPOOL, dims, k[0], k[dims - 1]);
        s->sh = dims == 2 ? st[0] : 1;
        s->sw = st[dims - 1];
        s->same = same;
        return MAAS_OK;
    }
    if (!strncmp(cls, "GlobalAveragePooling", 20) && dims) {
        if ((err = get_layout(cfg, cls, shown, NULL, errstr, errstr_size))) return err;
        if (get_bool(cfg, "keepdims", 0) != 0)
            return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                             "%s layer '%s': keepdims=true is not supported", cls, shown);
        *s = maas_global_avgpool(dims);
        return MAAS_OK;
    }
    if (!strcmp(cls, "Flatten")) {
        if ((err = get_layout(cfg, cls, shown, NULL, errstr, errstr_size))) return err;
        *s = maas_flatten();
        return MAAS_OK;
    }
    if (!strcmp(cls, "Reshape")) {
        maas_shape t;
        if (input_shape(cJSON_GetObjectItemCaseSensitive(cfg, "target_shape"), &t) != 1)
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                             "Reshape layer '%s': target_shape must be 1..%d positive integers "
                             "(-1 is not supported)",
                             shown, MAAS_MAX_RANK);
        *s = maas_reshape(&t);
        return MAAS_OK;
    }
    if (!strcmp(cls, "BatchNormalization")) {
        const cJSON *axis = cJSON_GetObjectItemCaseSensitive(cfg, "axis");
        long ax = -1;
        if (cJSON_IsArray(axis) && cJSON_GetArraySize(axis) == 1) axis = axis->child;
        /* -1, or the positive index of the last axis (tf.keras writes [3] for an image) */
        if (axis && !cJSON_IsNull(axis) && (!get_int(axis, -1, MAAS_MAX_RANK, &ax) || ax == 0))
            return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                             "BatchNormalization layer '%s': only the last axis is supported",
                             shown);
        *s = maas_batchnorm();
        s->dims = (int)ax; /* checked against the input's rank by maas__keras_arch_parse */
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, "momentum");
        if (j && (!cJSON_IsNumber(j) || !(j->valuedouble >= 0.0 && j->valuedouble < 1.0)))
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                             "BatchNormalization layer '%s': momentum must be in [0, 1)", shown);
        if (j) s->momentum = (float)j->valuedouble;
        j = cJSON_GetObjectItemCaseSensitive(cfg, "epsilon");
        if (j && (!cJSON_IsNumber(j) || !(j->valuedouble > 0.0 && j->valuedouble < 1.0)))
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                             "BatchNormalization layer '%s': epsilon must be in (0, 1)", shown);
        if (j) s->epsilon = (float)j->valuedouble;
        s->center = get_bool(cfg, "center", 1);
        s->scale = get_bool(cfg, "scale", 1);
        if (s->center < 0 || s->scale < 0)
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                             "BatchNormalization layer '%s': center and scale are booleans", shown);
        return MAAS_OK;
    }
    if (!strcmp(cls, "Embedding")) {
        long v, d;
        if (!get_int(cJSON_GetObjectItemCaseSensitive(cfg, "input_dim"), 1, MAAS_MAX_PARAMS, &v) ||
            !get_int(cJSON_GetObjectItemCaseSensitive(cfg, "output_dim"), 1, MAAS_MAX_UNITS, &d))
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                             "Embedding layer '%s': input_dim and output_dim must be positive "
                             "integers",
                             shown);
        if (get_bool(cfg, "mask_zero", 0) != 0)
            return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                             "Embedding layer '%s': mask_zero=true is not supported", shown);
        *s = maas_embedding((int)v, (int)d);
        return MAAS_OK;
    }
    return MAAS_OK;
}

static maas_err parse_layer(maas_keras_arch *a, int idx, const cJSON *layer, char *errstr,
                            size_t errstr_size) {
    const char *cls = get_str(layer, "class_name");
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(layer, "config");
    if (!cls || !cJSON_IsObject(cfg))
        return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                         "model_config layer %d lacks class_name or config", idx);
    const char *name = get_str(cfg, "name");
    const char *shown = name ? name : "?";
    /* The input shape may be given on the first layer, Keras 2 style. */
    maas_shape shape = {0};
    int has_shape = 0;
    const char *shape_keys[] = {"batch_input_shape", "batch_shape", "input_shape"};
    for (size_t k = 0; k < MAAS_ARRAY_LEN(shape_keys) && !has_shape; k++) {
        has_shape = input_shape(cJSON_GetObjectItemCaseSensitive(cfg, shape_keys[k]), &shape);
        if (has_shape < 0)
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                             "layer %d ('%s'): %s is not [null, d1, ...] with 1..%d dimensions "
                             "(%d values at most)",
                             idx, shown, shape_keys[k], MAAS_MAX_RANK, MAAS_MAX_UNITS);
    }
    long dim;
    if (!has_shape && strcmp(cls, "Embedding") &&
        get_int(cJSON_GetObjectItemCaseSensitive(cfg, "input_dim"), 1, MAAS_MAX_UNITS, &dim)) {
        shape.rank = 1;
        shape.d[0] = (int)dim;
        has_shape = 1;
    }
    if (has_shape && a->n_inputs == 0) {
        a->n_inputs = 1;
        for (int i = 0; i < shape.rank; i++) a->n_inputs *= shape.d[i];
        /* rows are flat in maas: an input of rank > 1 is a flat row and a Reshape */
        if (shape.rank > 1) {
            if (a->n_layers > 0 || a->norm)
                return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                                 "layer %d ('%s'): an input of rank %d after a Normalization or "
                                 "another layer is not supported",
                                 idx, shown, shape.rank);
            maas_layer_spec r = maas_reshape(&shape);
            snprintf(r.name, sizeof(r.name), "input_reshape");
            a->layers[a->n_layers++] = r;
            a->input_reshape = 1;
        }
    }

    if (!strcmp(cls, "InputLayer")) {
        if (a->n_layers > a->input_reshape || a->norm)
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                             "InputLayer '%s' is not the first layer", shown);
        return MAAS_OK;
    }
    if (a->n_layers >= MAAS_MAX_LAYERS)
        return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                         "model has more than %d layers", MAAS_MAX_LAYERS);
    maas_err err;
    if (!strcmp(cls, "Normalization") && a->input_reshape)
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                         "Normalization layer '%s' on inputs of rank > 1 is not supported", shown);
    maas_layer_spec shaped;
    if ((err = parse_shaped(cls, cfg, shown, &shaped, errstr, errstr_size)) != MAAS_OK) return err;
    if (shaped.kind != MAAS_LAYER_DENSE) {
        if ((err = copy_name(shaped.name, sizeof(shaped.name), name, idx, errstr, errstr_size)))
            return err;
        a->layers[a->n_layers++] = shaped;
        return MAAS_OK;
    }
    if (!strcmp(cls, "Dense")) {
        long units;
        if (!get_int(cJSON_GetObjectItemCaseSensitive(cfg, "units"), 1, MAAS_MAX_UNITS, &units))
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                             "Dense layer '%s': units must be an integer in 1..%d", shown,
                             MAAS_MAX_UNITS);
        const cJSON *act = cJSON_GetObjectItemCaseSensitive(cfg, "activation");
        maas_act ma = MAAS_ACT_LINEAR;
        if (act && !cJSON_IsNull(act)) {
            if (!cJSON_IsString(act))
                return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                                 "Dense layer '%s': only built-in activations given by name are "
                                 "supported",
                                 shown);
            char sub[MAAS_ERRSTR_SIZE];
            if (maas_act_from_name(act->valuestring, &ma, sub, sizeof(sub)))
                return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME, "Dense layer '%s': %s",
                                 shown, sub);
        }
        maas_layer_spec s = maas_dense((int)units, ma);
        const cJSON *bias = cJSON_GetObjectItemCaseSensitive(cfg, "use_bias");
        if (bias && !cJSON_IsBool(bias))
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                             "Dense layer '%s': use_bias is not a boolean", shown);
        if (bias) s.use_bias = cJSON_IsTrue(bias);
        const cJSON *ki = cJSON_GetObjectItemCaseSensitive(cfg, "kernel_initializer");
        const char *kc = cJSON_IsObject(ki) ? get_str(ki, "class_name") : NULL;
        if (kc && !strcmp(kc, "HeNormal")) s.kernel_init = MAAS_INIT_HE_NORMAL;
        if (kc && !strcmp(kc, "Zeros")) s.kernel_init = MAAS_INIT_ZEROS;
        if ((err = copy_name(s.name, sizeof(s.name), name, idx, errstr, errstr_size))) return err;
        a->layers[a->n_layers++] = s;
        return MAAS_OK;
    }
    if (!strcmp(cls, "Dropout")) {
        const cJSON *rate = cJSON_GetObjectItemCaseSensitive(cfg, "rate");
        if (!cJSON_IsNumber(rate) || !(rate->valuedouble >= 0.0 && rate->valuedouble < 1.0))
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                             "Dropout layer '%s': rate must be a number in [0, 1)", shown);
        maas_layer_spec s = maas_dropout((float)rate->valuedouble);
        if ((err = copy_name(s.name, sizeof(s.name), name, idx, errstr, errstr_size))) return err;
        a->layers[a->n_layers++] = s;
        return MAAS_OK;
    }
    if (!strcmp(cls, "Normalization")) {
        if (a->n_layers > 0 || a->norm)
            return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                             "Normalization layer '%s' is supported only as the first layer",
                             shown);
        const cJSON *axis = cJSON_GetObjectItemCaseSensitive(cfg, "axis");
        long ax = -1;
        if (cJSON_IsArray(axis) && cJSON_GetArraySize(axis) == 1) axis = axis->child;
        if (axis && !cJSON_IsNull(axis) && (!get_int(axis, -1, 1, &ax) || ax == 0))
            return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                             "Normalization layer '%s': only axis -1 is supported", shown);
        const cJSON *inv = cJSON_GetObjectItemCaseSensitive(cfg, "invert");
        if (cJSON_IsTrue(inv))
            return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                             "Normalization layer '%s': invert=true is not supported", shown);
        a->norm = 1;
        if ((err = copy_name(a->norm_name, sizeof(a->norm_name), name, idx, errstr, errstr_size)))
            return err;
        const cJSON *mean = cJSON_GetObjectItemCaseSensitive(cfg, "mean");
        const cJSON *var = cJSON_GetObjectItemCaseSensitive(cfg, "variance");
        if ((!mean || cJSON_IsNull(mean)) && (!var || cJSON_IsNull(var)))
            return MAAS_OK; /* adapted: the statistics are weights in the file */
        int nm = 0, nv = 0;
        if (!get_floats(mean, &a->norm_mean, &nm) || !get_floats(var, &a->norm_var, &nv) ||
            nm != nv)
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                             "Normalization layer '%s': mean and variance must be finite number "
                             "lists of equal length",
                             shown);
        for (int i = 0; i < nv; i++)
            if (a->norm_var[i] < 0.0f)
                return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                                 "Normalization layer '%s': variance %d is negative", shown, i);
        a->n_norm = nm;
        return MAAS_OK;
    }
    return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                     "layer %d ('%s') is a %s, which maas does not support (supported: "
                     "InputLayer, Dense, Dropout, Normalization, Conv1D, Conv2D, MaxPooling1D/2D, "
                     "AveragePooling1D/2D, GlobalAveragePooling1D/2D, Flatten, Reshape, "
                     "BatchNormalization, Embedding)",
                     idx, shown, cls);
}

maas_err maas__keras_arch_parse(const char *json, size_t len, maas_keras_arch *a, char *errstr,
                                size_t errstr_size) {
    memset(a, 0, sizeof(*a));
    cJSON *root;
    maas_err err = parse(json, len, "model_config", &root, errstr, errstr_size);
    if (err) return err;
    const char *cls = get_str(root, "class_name");
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(root, "config");
    const cJSON *layers = NULL;
    if (!cls) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "model_config has no class_name");
        goto done;
    }
    if (strcmp(cls, "Sequential")) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                        "model_config is a '%s' model; maas supports Sequential models only", cls);
        goto done;
    }
    if (cJSON_IsArray(cfg)) { /* Keras < 2.2: the config is the layer list */
        layers = cfg;
    } else if (cJSON_IsObject(cfg)) {
        layers = cJSON_GetObjectItemCaseSensitive(cfg, "layers");
        const char *name = get_str(cfg, "name");
        if (name) snprintf(a->name, sizeof(a->name), "%s", name);
        long w = input_width(cJSON_GetObjectItemCaseSensitive(cfg, "build_input_shape"));
        if (w > 0) a->n_inputs = (int)w;
    }
    if (!cJSON_IsArray(layers)) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "model_config has no layer list");
        goto done;
    }
    if (cJSON_GetArraySize(layers) > MAAS_MAX_LAYERS + 2) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                        "model has more than %d layers", MAAS_MAX_LAYERS);
        goto done;
    }
    int idx = 0;
    int width_from_input = a->n_inputs;
    a->n_inputs = 0;
    for (const cJSON *l = layers->child; l; l = l->next, idx++)
        if ((err = parse_layer(a, idx, l, errstr, errstr_size))) goto done;
    if (a->n_inputs == 0) a->n_inputs = width_from_input;
    if (a->n_layers == 0) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "model_config has no layers");
        goto done;
    }
    if (a->norm && a->norm_mean && a->n_inputs && a->n_norm != 1 && a->n_norm != a->n_inputs)
        err = maas_errf(errstr, errstr_size, MAAS_ERR_SHAPE_MISMATCH,
                        "Normalization '%s' has %d statistics for %d input features", a->norm_name,
                        a->n_norm, a->n_inputs);
done:
    cJSON_Delete(root);
    if (err) maas__keras_arch_release(a);
    return err;
}

/* Maps a Keras loss spelling (string or {"class_name": ...}) to ours. */
static maas_err parse_loss(const cJSON *loss, maas_loss *out, char *errstr, size_t errstr_size) {
    static const struct {
        const char *keras;
        maas_loss loss;
    } names[] = {
        {"BinaryCrossentropy", MAAS_LOSS_BINARY_CROSSENTROPY},
        {"CategoricalCrossentropy", MAAS_LOSS_CATEGORICAL_CROSSENTROPY},
        {"SparseCategoricalCrossentropy", MAAS_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY},
        {"MeanSquaredError", MAAS_LOSS_MSE},
        {"MeanAbsoluteError", MAAS_LOSS_MAE},
    };
    if (cJSON_IsString(loss))
        return maas_loss_from_name(loss->valuestring, out, errstr, errstr_size);
    const char *cls = cJSON_IsObject(loss) ? get_str(loss, "class_name") : NULL;
    for (size_t i = 0; cls && i < MAAS_ARRAY_LEN(names); i++) {
        if (strcmp(cls, names[i].keras)) continue;
        const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(loss, "config");
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "from_logits")))
            return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                             "loss %s with from_logits=true is not supported", cls);
        *out = names[i].loss;
        return MAAS_OK;
    }
    return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME, "loss %s is not supported",
                     cls ? cls : "(not a name)");
}

/* True if the metrics list (possibly nested, possibly dicts) asks for accuracy. */
static int wants_accuracy(const cJSON *m) {
    if (cJSON_IsString(m))
        return !strcmp(m->valuestring, "accuracy") || !strcmp(m->valuestring, "acc") ||
               strstr(m->valuestring, "_accuracy") != NULL;
    if (cJSON_IsObject(m)) {
        const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(m, "config");
        const char *name = cJSON_IsObject(cfg) ? get_str(cfg, "name") : NULL;
        return name && (strstr(name, "accuracy") || !strcmp(name, "acc"));
    }
    if (cJSON_IsArray(m))
        for (const cJSON *c = m->child; c; c = c->next)
            if (wants_accuracy(c)) return 1;
    return 0;
}

static int get_float_key(const cJSON *cfg, const char *key, float *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!j || cJSON_IsNull(j)) return 1; /* keep the default */
    if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble) || fabs(j->valuedouble) > FLT_MAX) return 0;
    *out = (float)j->valuedouble;
    return 1;
}

maas_err maas__keras_training_parse(const char *json, size_t len, maas_compile *c, char *errstr,
                                    size_t errstr_size) {
    memset(c, 0, sizeof(*c));
    cJSON *root;
    maas_err err = parse(json, len, "training_config", &root, errstr, errstr_size);
    if (err) return err;
    if (!cJSON_IsObject(root)) {
        err =
            maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "training_config is not an object");
        goto done;
    }
    if ((err = parse_loss(cJSON_GetObjectItemCaseSensitive(root, "loss"), &c->loss, errstr,
                          errstr_size)))
        goto done;
    c->accuracy = wants_accuracy(cJSON_GetObjectItemCaseSensitive(root, "metrics"));
    const cJSON *oc = cJSON_GetObjectItemCaseSensitive(root, "optimizer_config");
    const char *ocls = cJSON_IsObject(oc) ? get_str(oc, "class_name") : NULL;
    const cJSON *ocfg = cJSON_IsObject(oc) ? cJSON_GetObjectItemCaseSensitive(oc, "config") : NULL;
    if (!ocls || !cJSON_IsObject(ocfg)) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                        "training_config has no optimizer_config");
        goto done;
    }
    if (!strncmp(ocls, "Custom>", 7)) ocls += 7; /* tf.keras 2.11+ registered names */
    maas_opt kind;
    if ((err = maas_opt_from_name(ocls, &kind, errstr, errstr_size))) goto done;
    maas_optim_defaults(&c->optim, kind);
    maas_optim_spec *o = &c->optim;
    float nesterov = 0.0f;
    const cJSON *nj = cJSON_GetObjectItemCaseSensitive(ocfg, "nesterov");
    if (cJSON_IsBool(nj)) nesterov = cJSON_IsTrue(nj) ? 1.0f : 0.0f;
    o->nesterov = nesterov != 0.0f;
    const cJSON *lr = cJSON_GetObjectItemCaseSensitive(ocfg, "learning_rate");
    if (!lr) lr = cJSON_GetObjectItemCaseSensitive(ocfg, "lr");
    if (cJSON_IsObject(lr)) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                        "learning-rate schedules are not supported");
        goto done;
    }
    if (lr && cJSON_IsNumber(lr)) {
        if (!(lr->valuedouble > 0.0 && lr->valuedouble <= FLT_MAX)) {
            err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                            "optimizer_config learning_rate must be a positive float32, got %g",
                            lr->valuedouble);
            goto done;
        }
        o->learning_rate = (float)lr->valuedouble;
    }
    if (!get_float_key(ocfg, "beta_1", &o->beta_1) || !get_float_key(ocfg, "beta_2", &o->beta_2) ||
        !get_float_key(ocfg, "epsilon", &o->epsilon) ||
        !get_float_key(ocfg, "momentum", &o->momentum) || !get_float_key(ocfg, "rho", &o->rho)) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                        "optimizer_config has a non-numeric hyper-parameter");
        goto done;
    }
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ocfg, "amsgrad")) ||
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ocfg, "centered")))
        err = maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                        "optimizer variants amsgrad/centered are not supported");
done:
    cJSON_Delete(root);
    return err;
}

/* ---- writing ---- */

static maas_err print_and_free(cJSON *root, char **out, char *errstr, size_t errstr_size) {
    *out = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!*out)
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory writing JSON");
    return MAAS_OK;
}

static const char *const init_class[MAAS_INIT__COUNT] = {
    [MAAS_INIT_GLOROT_UNIFORM] = "GlorotUniform",
    [MAAS_INIT_HE_NORMAL] = "HeNormal",
    [MAAS_INIT_ZEROS] = "Zeros",
    [MAAS_INIT_RANDOM_UNIFORM] = "RandomUniform",
    [MAAS_INIT_ONES] = "Ones",
};

static cJSON *initializer(maas_init init) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "class_name", init_class[init]);
    cJSON *cfg = cJSON_AddObjectToObject(o, "config");
    if (init == MAAS_INIT_RANDOM_UNIFORM) {
        cJSON_AddNumberToObject(cfg, "minval", -0.05);
        cJSON_AddNumberToObject(cfg, "maxval", 0.05);
    }
    if (init != MAAS_INIT_ZEROS && init != MAAS_INIT_ONES) cJSON_AddNullToObject(cfg, "seed");
    return o;
}

static cJSON *float_list(const float *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

/* A kernel layer's regularizers and constraints: none. */
static void add_no_regularizers(cJSON *lc) {
    const char *nulls[] = {"kernel_regularizer", "bias_regularizer", "activity_regularizer",
                           "kernel_constraint", "bias_constraint"};
    for (size_t k = 0; k < MAAS_ARRAY_LEN(nulls); k++) cJSON_AddNullToObject(lc, nulls[k]);
}

static cJSON *int_list(const int *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

/* A window's two numbers as Keras lists them: [h, w] for 2-D, [w] for 1-D. */
static cJSON *window_list(const maas_layer_spec *s, int h, int w) {
    int v[2] = {h, w};
    return s->dims == 2 ? int_list(v, 2) : int_list(v + 1, 1);
}

/* The config of a layer other than Dense and Dropout (tf.keras 2.x dialect). */
static void write_shaped(cJSON *l, const maas_layer *ml) {
    const maas_layer_spec *s = &ml->spec;
    cJSON_AddStringToObject(l, "class_name", maas_layer_class(s));
    cJSON *lc = cJSON_AddObjectToObject(l, "config");
    cJSON_AddStringToObject(lc, "name", s->name);
    cJSON_AddTrueToObject(lc, "trainable");
    cJSON_AddStringToObject(lc, "dtype", "float32");
    switch (s->kind) {
    case MAAS_LAYER_CONV: {
        int one[2] = {1, 1};
        cJSON_AddNumberToObject(lc, "filters", s->units);
        cJSON_AddItemToObject(lc, "kernel_size", window_list(s, s->kh, s->kw));
        cJSON_AddItemToObject(lc, "strides", window_list(s, s->sh, s->sw));
        cJSON_AddStringToObject(lc, "padding", s->same ? "same" : "valid");
        cJSON_AddStringToObject(lc, "data_format", "channels_last");
        cJSON_AddItemToObject(lc, "dilation_rate", int_list(one, s->dims));
        cJSON_AddNumberToObject(lc, "groups", 1);
        cJSON_AddStringToObject(lc, "activation", maas_act_name(s->act));
        cJSON_AddBoolToObject(lc, "use_bias", s->use_bias);
        cJSON_AddItemToObject(lc, "kernel_initializer", initializer(s->kernel_init));
        cJSON_AddItemToObject(lc, "bias_initializer", initializer(s->bias_init));
        add_no_regularizers(lc);
        break;
    }
    case MAAS_LAYER_MAXPOOL:
    case MAAS_LAYER_AVGPOOL:
        cJSON_AddItemToObject(lc, "pool_size", window_list(s, s->kh, s->kw));
        cJSON_AddStringToObject(lc, "padding", s->same ? "same" : "valid");
        cJSON_AddItemToObject(lc, "strides", window_list(s, s->sh, s->sw));
        cJSON_AddStringToObject(lc, "data_format", "channels_last");
        break;
    case MAAS_LAYER_GAP:
        cJSON_AddStringToObject(lc, "data_format", "channels_last");
        cJSON_AddFalseToObject(lc, "keepdims");
        break;
    case MAAS_LAYER_FLATTEN:
        cJSON_AddStringToObject(lc, "data_format", "channels_last");
        break;
    case MAAS_LAYER_RESHAPE:
        cJSON_AddItemToObject(lc, "target_shape", int_list(s->target.d, s->target.rank));
        break;
    case MAAS_LAYER_BATCHNORM:
        cJSON_AddNumberToObject(lc, "axis", -1);
        cJSON_AddNumberToObject(lc, "momentum", s->momentum);
        cJSON_AddNumberToObject(lc, "epsilon", s->epsilon);
        cJSON_AddBoolToObject(lc, "center", s->center);
        cJSON_AddBoolToObject(lc, "scale", s->scale);
        cJSON_AddItemToObject(lc, "beta_initializer", initializer(MAAS_INIT_ZEROS));
        cJSON_AddItemToObject(lc, "gamma_initializer", initializer(MAAS_INIT_ONES));
        cJSON_AddItemToObject(lc, "moving_mean_initializer", initializer(MAAS_INIT_ZEROS));
        cJSON_AddItemToObject(lc, "moving_variance_initializer", initializer(MAAS_INIT_ONES));
        break;
    case MAAS_LAYER_EMBEDDING:
        cJSON_AddNumberToObject(lc, "input_dim", s->vocab);
        cJSON_AddNumberToObject(lc, "output_dim", s->units);
        cJSON_AddItemToObject(lc, "embeddings_initializer", initializer(s->kernel_init));
        cJSON_AddFalseToObject(lc, "mask_zero");
        break;
    default:
        break;
    }
}

maas_err maas__keras_arch_write(const maas_model *m, const char *norm_name, char **out,
                                char *errstr, size_t errstr_size) {
    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer_spec *s = &m->layers[i].spec;
        float alpha = maas_act_alpha(s);
        if ((s->act == MAAS_ACT_LEAKY_RELU && alpha != 0.2f) ||
            (s->act == MAAS_ACT_ELU && alpha != 1.0f)) {
            *out = NULL;
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "layer '%s': %s with alpha %g cannot be written as a Keras "
                             "activation name",
                             s->name, maas_act_name(s->act), (double)alpha);
        }
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "class_name", "Sequential");
    cJSON *cfg = cJSON_AddObjectToObject(root, "config");
    cJSON_AddStringToObject(cfg, "name", "sequential");
    cJSON *layers = cJSON_AddArrayToObject(cfg, "layers");

    cJSON *in = cJSON_CreateObject();
    cJSON_AddStringToObject(in, "class_name", "InputLayer");
    cJSON *icfg = cJSON_AddObjectToObject(in, "config");
    cJSON *shape = cJSON_AddArrayToObject(icfg, "batch_input_shape");
    cJSON_AddItemToArray(shape, cJSON_CreateNull());
    cJSON_AddItemToArray(shape, cJSON_CreateNumber(m->n_inputs));
    cJSON_AddStringToObject(icfg, "dtype", "float32");
    cJSON_AddFalseToObject(icfg, "sparse");
    cJSON_AddFalseToObject(icfg, "ragged");
    cJSON_AddStringToObject(icfg, "name", "input_1");
    cJSON_AddItemToArray(layers, in);

    if (m->feat_mean) {
        /* Standardization as a Keras Normalization layer with constant statistics:
         * Keras computes (x - mean) / max(sqrt(variance), 1e-7), which equals ours
         * because every stored std is >= 1e-7 and sqrt(std * std) == std in float. */
        cJSON *nl = cJSON_CreateObject();
        cJSON_AddStringToObject(nl, "class_name", "Normalization");
        cJSON *ncfg = cJSON_AddObjectToObject(nl, "config");
        cJSON_AddStringToObject(ncfg, "name", norm_name);
        cJSON_AddTrueToObject(ncfg, "trainable");
        cJSON_AddStringToObject(ncfg, "dtype", "float32");
        cJSON_AddNumberToObject(ncfg, "axis", -1);
        cJSON_AddItemToObject(ncfg, "mean", float_list(m->feat_mean, m->n_inputs));
        /* variance = std^2, computed in float so that sqrtf() gives std back exactly */
        float *var = malloc((size_t)m->n_inputs * sizeof(float));
        if (!var) {
            cJSON_Delete(nl);
            cJSON_Delete(root);
            *out = NULL;
            return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
        }
        for (int i = 0; i < m->n_inputs; i++) var[i] = m->feat_std[i] * m->feat_std[i];
        cJSON_AddItemToObject(ncfg, "variance", float_list(var, m->n_inputs));
        free(var);
        cJSON_AddItemToArray(layers, nl);
    }

    for (int i = 0; i < m->n_layers; i++) {
        const maas_layer_spec *s = &m->layers[i].spec;
        cJSON *l = cJSON_CreateObject();
        cJSON *lc;
        if (s->kind == MAAS_LAYER_DENSE) {
            cJSON_AddStringToObject(l, "class_name", "Dense");
            lc = cJSON_AddObjectToObject(l, "config");
            cJSON_AddStringToObject(lc, "name", s->name);
            cJSON_AddTrueToObject(lc, "trainable");
            cJSON_AddStringToObject(lc, "dtype", "float32");
            cJSON_AddNumberToObject(lc, "units", s->units);
            cJSON_AddStringToObject(lc, "activation", maas_act_name(s->act));
            cJSON_AddBoolToObject(lc, "use_bias", s->use_bias);
            cJSON_AddItemToObject(lc, "kernel_initializer", initializer(s->kernel_init));
            cJSON_AddItemToObject(lc, "bias_initializer", initializer(s->bias_init));
            add_no_regularizers(lc);
        } else if (s->kind == MAAS_LAYER_DROPOUT) {
            cJSON_AddStringToObject(l, "class_name", "Dropout");
            lc = cJSON_AddObjectToObject(l, "config");
            cJSON_AddStringToObject(lc, "name", s->name);
            cJSON_AddTrueToObject(lc, "trainable");
            cJSON_AddStringToObject(lc, "dtype", "float32");
            cJSON_AddNumberToObject(lc, "rate", s->rate);
            cJSON_AddNullToObject(lc, "noise_shape");
            cJSON_AddNullToObject(lc, "seed");
        } else {
            write_shaped(l, &m->layers[i]);
        }
        cJSON_AddItemToArray(layers, l);
    }
    return print_and_free(root, out, errstr, errstr_size);
}

maas_err maas__keras_training_write(const maas_compile *c, char **out, char *errstr,
                                    size_t errstr_size) {
    const maas_optim_spec *o = &c->optim;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "loss", maas_loss_name(c->loss));
    cJSON *metrics = cJSON_AddArrayToObject(root, "metrics");
    if (c->accuracy) cJSON_AddItemToArray(metrics, cJSON_CreateString("accuracy"));
    cJSON_AddNullToObject(root, "weighted_metrics");
    cJSON_AddNullToObject(root, "loss_weights");
    cJSON *oc = cJSON_AddObjectToObject(root, "optimizer_config");
    cJSON *cfg;
    switch (o->kind) {
    case MAAS_OPT_SGD:
        cJSON_AddStringToObject(oc, "class_name", "SGD");
        cfg = cJSON_AddObjectToObject(oc, "config");
        cJSON_AddStringToObject(cfg, "name", "SGD");
        cJSON_AddNumberToObject(cfg, "learning_rate", o->learning_rate);
        cJSON_AddNumberToObject(cfg, "momentum", o->momentum);
        cJSON_AddBoolToObject(cfg, "nesterov", o->nesterov);
        break;
    case MAAS_OPT_RMSPROP:
        cJSON_AddStringToObject(oc, "class_name", "RMSprop");
        cfg = cJSON_AddObjectToObject(oc, "config");
        cJSON_AddStringToObject(cfg, "name", "RMSprop");
        cJSON_AddNumberToObject(cfg, "learning_rate", o->learning_rate);
        cJSON_AddNumberToObject(cfg, "rho", o->rho);
        cJSON_AddNumberToObject(cfg, "momentum", o->momentum);
        cJSON_AddNumberToObject(cfg, "epsilon", o->epsilon);
        cJSON_AddFalseToObject(cfg, "centered");
        break;
    default:
        cJSON_AddStringToObject(oc, "class_name", "Adam");
        cfg = cJSON_AddObjectToObject(oc, "config");
        cJSON_AddStringToObject(cfg, "name", "Adam");
        cJSON_AddNumberToObject(cfg, "learning_rate", o->learning_rate);
        cJSON_AddNumberToObject(cfg, "beta_1", o->beta_1);
        cJSON_AddNumberToObject(cfg, "beta_2", o->beta_2);
        cJSON_AddNumberToObject(cfg, "epsilon", o->epsilon);
        cJSON_AddFalseToObject(cfg, "amsgrad");
        break;
    }
    return print_and_free(root, out, errstr, errstr_size);
}

/* ---- the protocol's JSON view -> msgpack ---- */

/* A tiny msgpack writer: the JSON view needs only these types. */
typedef struct mp_out {
    unsigned char *p;
    size_t len, cap;
    int oom;
} mp_out;

static void mp_put(mp_out *o, const void *src, size_t n) {
    if (o->oom) return;
    if (o->len + n > o->cap) {
        size_t cap = (o->len + n) * 2 + 64;
        unsigned char *np = realloc(o->p, cap);
        if (!np) {
            o->oom = 1;
            return;
        }
        o->p = np;
        o->cap = cap;
    }
    memcpy(o->p + o->len, src, n);
    o->len += n;
}

static void mp_be(mp_out *o, uint8_t tag, uint64_t v, int bytes) {
    unsigned char b[9];
    b[0] = tag;
    for (int i = 0; i < bytes; i++) b[1 + i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
    mp_put(o, b, (size_t)bytes + 1);
}

static void mp_len(mp_out *o, size_t n, uint8_t fix, size_t fix_max, uint8_t t8, uint8_t t16,
                   uint8_t t32) {
    if (n <= fix_max && fix) {
        unsigned char b = (unsigned char)(fix | n);
        mp_put(o, &b, 1);
    } else if (n < 256 && t8) {
        mp_be(o, t8, n, 1);
    } else if (n < 65536) {
        mp_be(o, t16, n, 2);
    } else {
        mp_be(o, t32, n, 4);
    }
}

static void mp_str(mp_out *o, const char *s, size_t n) {
    mp_len(o, n, 0xa0, 31, 0xd9, 0xda, 0xdb);
    mp_put(o, s, n);
}

static int b64_value(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* base64 -> msgpack bin; 0 on bad input. */
static int mp_bin_b64(mp_out *o, const char *s) {
    size_t n = strlen(s), bits = 0, out = 0;
    while (n > 0 && s[n - 1] == '=') n--;
    unsigned char *buf = malloc(n * 3 / 4 + 3);
    if (!buf) return 0;
    uint32_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0) {
            free(buf);
            return 0;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[out++] = (unsigned char)(acc >> bits);
        }
    }
    mp_len(o, out, 0, 0, 0xc4, 0xc5, 0xc6);
    mp_put(o, buf, out);
    free(buf);
    return 1;
}

static int mp_value(mp_out *o, const cJSON *j, int in_matrix, const char *key) {
    if (cJSON_IsObject(j)) {
        size_t n = (size_t)cJSON_GetArraySize(j);
        int matrix = cJSON_GetObjectItemCaseSensitive(j, "shape") != NULL;
        mp_len(o, n, 0x80, 15, 0, 0xde, 0xdf);
        for (const cJSON *c = j->child; c; c = c->next) {
            mp_str(o, c->string, strlen(c->string));
            if (!mp_value(o, c, matrix, c->string)) return 0;
        }
    } else if (cJSON_IsArray(j)) {
        mp_len(o, (size_t)cJSON_GetArraySize(j), 0x90, 15, 0, 0xdc, 0xdd);
        for (const cJSON *c = j->child; c; c = c->next)
            if (!mp_value(o, c, 0, NULL)) return 0;
    } else if (cJSON_IsString(j)) {
        if (in_matrix && key && !strcmp(key, "data")) return mp_bin_b64(o, j->valuestring);
        mp_str(o, j->valuestring, strlen(j->valuestring));
    } else if (cJSON_IsNumber(j)) {
        double v = j->valuedouble;
        if (v == floor(v) && fabs(v) < 9007199254740992.0) {
            if (v >= 0)
                mp_be(o, 0xcf, (uint64_t)v, 8);
            else
                mp_be(o, 0xd3, (uint64_t)(int64_t)v, 8);
        } else {
            uint64_t bits;
            memcpy(&bits, &v, sizeof(bits));
            mp_be(o, 0xcb, bits, 8);
        }
    } else if (cJSON_IsBool(j)) {
        unsigned char b = cJSON_IsTrue(j) ? 0xc3 : 0xc2;
        mp_put(o, &b, 1);
    } else {
        unsigned char b = 0xc0;
        mp_put(o, &b, 1);
    }
    return 1;
}

/* Body -> msgpack bytes, or BAD_FORMAT / OUT_OF_MEMORY. */
static maas_err to_msgpack(const cJSON *root, unsigned char **out, size_t *out_len, char *errstr,
                           size_t errstr_size) {
    *out = NULL;
    *out_len = 0;
    mp_out o = {0};
    int ok = mp_value(&o, root, 0, NULL);
    if (!ok || o.oom) {
        free(o.p);
        return o.oom ? maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory")
                     : maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                                 "a matrix's data is not valid base64");
    }
    *out = o.p;
    *out_len = o.len;
    return MAAS_OK;
}

maas_err maas_json_to_msgpack(const char *json, size_t len, unsigned char **out, size_t *out_len,
                              char *errstr, size_t errstr_size) {
    *out = NULL;
    *out_len = 0;
    if (len > ((size_t)64 << 20))
        return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED, "request body over 64 MiB");
    cJSON *root;
    maas_err err = parse(json, len, "the request body", &root, errstr, errstr_size);
    if (err) return err;
    err = to_msgpack(root, out, out_len, errstr, errstr_size);
    cJSON_Delete(root);
    return err;
}

/* ---- a request body parsed once (maas_json is a cJSON object) ---- */

#define DOC(d) ((cJSON *)(d))
#define CDOC(d) ((const cJSON *)(d))

maas_err maas_json_parse_object(const char *text, size_t len, maas_json **doc, char *errstr,
                                size_t errstr_size) {
    cJSON *root;
    *doc = NULL;
    maas_err err = parse(text, len, "the request body", &root, errstr, errstr_size);
    if (err) return err;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                         "the request body is not an object");
    }
    *doc = (maas_json *)root;
    return MAAS_OK;
}

void maas_json_free(maas_json *doc) {
    cJSON_Delete(DOC(doc));
}

int maas_json_has(const maas_json *doc, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(CDOC(doc), key) != NULL;
}

int maas_json_string(const maas_json *doc, const char *key, const char **s) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(CDOC(doc), key);
    if (!cJSON_IsString(v)) return 0;
    *s = v->valuestring;
    return 1;
}

int maas_json_number(const maas_json *doc, const char *key, double *v) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(CDOC(doc), key);
    if (!cJSON_IsNumber(j)) return 0;
    *v = j->valuedouble;
    return 1;
}

char *maas_json_member_text(const maas_json *doc, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(CDOC(doc), key);
    return v ? cJSON_PrintUnformatted(v) : NULL;
}

void maas_json_drop(maas_json *doc, const char *const *keys, int n) {
    for (int i = 0; i < n; i++) cJSON_DeleteItemFromObjectCaseSensitive(DOC(doc), keys[i]);
}

static maas_err set_item(maas_json *doc, const char *key, cJSON *item, char *errstr,
                         size_t errstr_size) {
    cJSON_DeleteItemFromObjectCaseSensitive(DOC(doc), key);
    if (!item || !cJSON_AddItemToObject(DOC(doc), key, item)) {
        cJSON_Delete(item);
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    }
    return MAAS_OK;
}

maas_err maas_json_set_string(maas_json *doc, const char *key, const char *value, char *errstr,
                              size_t errstr_size) {
    return set_item(doc, key, cJSON_CreateString(value), errstr, errstr_size);
}

maas_err maas_json_set_number(maas_json *doc, const char *key, double value, char *errstr,
                              size_t errstr_size) {
    return set_item(doc, key, cJSON_CreateNumber(value), errstr, errstr_size);
}

maas_err maas_json_take_object(maas_json *doc, const char *key, maas_json **out, char *errstr,
                               size_t errstr_size) {
    *out = NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(CDOC(doc), key);
    if (!v) return MAAS_OK;
    if (!cJSON_IsObject(v))
        return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT, "field %s: expected an object",
                         key);
    *out = (maas_json *)cJSON_DetachItemFromObjectCaseSensitive(DOC(doc), key);
    return MAAS_OK;
}

maas_err maas_json_doc_to_msgpack(const maas_json *doc, unsigned char **out, size_t *out_len,
                                  char *errstr, size_t errstr_size) {
    return to_msgpack(CDOC(doc), out, out_len, errstr, errstr_size);
}

maas_err maas_json_list(const maas_json *doc, const char *key, double *nums, char *strs,
                        size_t str_size, int max, int *n, char *errstr, size_t errstr_size) {
    *n = 0;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(CDOC(doc), key);
    if (!v) return MAAS_OK;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > max)
        return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                         "field %s: expected a list of at most %d %s", key, max,
                         nums ? "numbers" : "strings");
    const cJSON *it;
    cJSON_ArrayForEach(it, v) {
        if (nums && cJSON_IsNumber(it)) {
            nums[(*n)++] = it->valuedouble;
        } else if (strs && cJSON_IsString(it) && strlen(it->valuestring) < str_size) {
            snprintf(strs + (size_t)*n * str_size, str_size, "%s", it->valuestring);
            (*n)++;
        } else {
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                             "field %s[%d]: expected a %s", key, *n,
                             nums ? "number" : "string (shorter than the limit)");
        }
    }
    return MAAS_OK;
}
