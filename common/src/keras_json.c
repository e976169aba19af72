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

static maas_err parse_layer(maas_keras_arch *a, int idx, const cJSON *layer, char *errstr,
                            size_t errstr_size) {
    const char *cls = get_str(layer, "class_name");
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(layer, "config");
    if (!cls || !cJSON_IsObject(cfg))
        return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                         "model_config layer %d lacks class_name or config", idx);
    const char *name = get_str(cfg, "name");
    const char *shown = name ? name : "?";
    /* The input width may be given on the first layer, Keras 2 style. */
    long w = 0;
    const char *shape_keys[] = {"batch_input_shape", "batch_shape", "input_shape"};
    for (size_t k = 0; k < MAAS_ARRAY_LEN(shape_keys) && w == 0; k++) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(cfg, shape_keys[k]);
        w = input_width(s);
        if (w < 0)
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                             "layer %d ('%s'): %s is not [null, features] (only flat feature "
                             "vectors are supported)",
                             idx, shown, shape_keys[k]);
    }
    long dim;
    if (w == 0 &&
        get_int(cJSON_GetObjectItemCaseSensitive(cfg, "input_dim"), 1, MAAS_MAX_UNITS, &dim))
        w = dim;
    if (w > 0 && a->n_inputs == 0) a->n_inputs = (int)w;

    if (!strcmp(cls, "InputLayer")) {
        if (a->n_layers > 0 || a->norm)
            return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                             "InputLayer '%s' is not the first layer", shown);
        return MAAS_OK;
    }
    if (a->n_layers >= MAAS_MAX_LAYERS)
        return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                         "model has more than %d layers", MAAS_MAX_LAYERS);
    maas_err err;
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
                     "InputLayer, Dense, Dropout, Normalization)",
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
};

static cJSON *initializer(maas_init init) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "class_name", init_class[init]);
    cJSON *cfg = cJSON_AddObjectToObject(o, "config");
    if (init != MAAS_INIT_ZEROS) cJSON_AddNullToObject(cfg, "seed");
    return o;
}

static cJSON *float_list(const float *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
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
            const char *nulls[] = {"kernel_regularizer", "bias_regularizer", "activity_regularizer",
                                   "kernel_constraint", "bias_constraint"};
            for (size_t k = 0; k < MAAS_ARRAY_LEN(nulls); k++) cJSON_AddNullToObject(lc, nulls[k]);
        } else {
            cJSON_AddStringToObject(l, "class_name", "Dropout");
            lc = cJSON_AddObjectToObject(l, "config");
            cJSON_AddStringToObject(lc, "name", s->name);
            cJSON_AddTrueToObject(lc, "trainable");
            cJSON_AddStringToObject(lc, "dtype", "float32");
            cJSON_AddNumberToObject(lc, "rate", s->rate);
            cJSON_AddNullToObject(lc, "noise_shape");
            cJSON_AddNullToObject(lc, "seed");
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
