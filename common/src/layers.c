/*
 * Layer specs: their constructors, Keras's names, the compact grammar (maas_layers_parse) and
 * planning (maas__layer_plan: the shape a layer gets and gives, its geometry and weights).
 */
#include "maas/base.h"
#include "maas/model.h"
#include "maas/strbuf.h"

#include <ctype.h>

#include "layers_internal.h"

/* ------------------------------------------------------------ constructors */

maas_layer_spec maas_dense(int units, maas_act act) {
    maas_layer_spec s;
    memset(&s, 0, sizeof(s));
    s.kind = MAAS_LAYER_DENSE;
    s.units = units;
    s.use_bias = 1;
    s.act = act;
    s.kernel_init = MAAS_INIT_GLOROT_UNIFORM;
    s.bias_init = MAAS_INIT_ZEROS;
    return s;
}

maas_layer_spec maas_dropout(float rate) {
    maas_layer_spec s;
    memset(&s, 0, sizeof(s));
    s.kind = MAAS_LAYER_DROPOUT;
    s.rate = rate;
    return s;
}

maas_layer_spec maas_conv(int dims, int filters, int kh, int kw, maas_act act) {
    maas_layer_spec s = maas_dense(filters, act);
    s.kind = MAAS_LAYER_CONV;
    s.dims = dims;
    s.kh = dims == 1 ? 1 : kh;
    s.kw = kw;
    s.sh = s.sw = 1;
    return s;
}

maas_layer_spec maas_pool(maas_layer_kind kind, int dims, int kh, int kw) {
    maas_layer_spec s;
    memset(&s, 0, sizeof(s));
    s.kind = kind;
    s.dims = dims;
    s.kh = s.sh = dims == 1 ? 1 : kh;
    s.kw = s.sw = kw;
    return s;
}

maas_layer_spec maas_global_avgpool(int dims) {
    maas_layer_spec s;
    memset(&s, 0, sizeof(s));
    s.kind = MAAS_LAYER_GAP;
    s.dims = dims;
    return s;
}

maas_layer_spec maas_flatten(void) {
    maas_layer_spec s;
    memset(&s, 0, sizeof(s));
    s.kind = MAAS_LAYER_FLATTEN;
    return s;
}

maas_layer_spec maas_reshape(const maas_shape *target) {
    maas_layer_spec s;
    memset(&s, 0, sizeof(s));
    s.kind = MAAS_LAYER_RESHAPE;
    s.target = *target;
    return s;
}

maas_layer_spec maas_batchnorm(void) {
    maas_layer_spec s;
    memset(&s, 0, sizeof(s));
    s.kind = MAAS_LAYER_BATCHNORM;
    s.epsilon = 0.001f;
    s.momentum = 0.99f;
    s.center = s.scale = 1;
    return s;
}

maas_layer_spec maas_embedding(int vocab, int dim) {
    maas_layer_spec s;
    memset(&s, 0, sizeof(s));
    s.kind = MAAS_LAYER_EMBEDDING;
    s.vocab = vocab;
    s.units = dim;
    s.kernel_init = MAAS_INIT_RANDOM_UNIFORM;
    return s;
}

/* ------------------------------------------------------------ names */

/* Keras's class and default-name stem of each kind, 1-D and 2-D where they differ. */
static const struct {
    const char *cls[2], *stem[2];
} layer_names[MAAS_LAYER__COUNT] = {
    [MAAS_LAYER_DENSE] = {{"Dense", "Dense"}, {"dense", "dense"}},
    [MAAS_LAYER_DROPOUT] = {{"Dropout", "Dropout"}, {"dropout", "dropout"}},
    [MAAS_LAYER_CONV] = {{"Conv1D", "Conv2D"}, {"conv1d", "conv2d"}},
    [MAAS_LAYER_MAXPOOL] = {{"MaxPooling1D", "MaxPooling2D"}, {"max_pooling1d", "max_pooling2d"}},
    [MAAS_LAYER_AVGPOOL] = {{"AveragePooling1D", "AveragePooling2D"},
                            {"average_pooling1d", "average_pooling2d"}},
    [MAAS_LAYER_GAP] = {{"GlobalAveragePooling1D", "GlobalAveragePooling2D"},
                        {"global_average_pooling1d", "global_average_pooling2d"}},
    [MAAS_LAYER_FLATTEN] = {{"Flatten", "Flatten"}, {"flatten", "flatten"}},
    [MAAS_LAYER_RESHAPE] = {{"Reshape", "Reshape"}, {"reshape", "reshape"}},
    [MAAS_LAYER_BATCHNORM] = {{"BatchNormalization", "BatchNormalization"},
                              {"batch_normalization", "batch_normalization"}},
    [MAAS_LAYER_EMBEDDING] = {{"Embedding", "Embedding"}, {"embedding", "embedding"}},
};

const char *maas_layer_class(const maas_layer_spec *s) {
    if ((int)s->kind < 0 || s->kind >= MAAS_LAYER__COUNT) return "?";
    return layer_names[s->kind].cls[s->dims == 2];
}

const char *maas__layer_stem(const maas_layer_spec *s) {
    if ((int)s->kind < 0 || s->kind >= MAAS_LAYER__COUNT) return "layer";
    return layer_names[s->kind].stem[s->dims == 2];
}

void maas_shape_format(const maas_shape *s, char *buf, size_t size) {
    int n = snprintf(buf, size, "(None");
    for (int i = 0; i < s->rank && i < MAAS_MAX_RANK && n >= 0 && (size_t)n < size; i++)
        n += snprintf(buf + n, size - (size_t)n, ", %d", s->d[i]);
    if (n >= 0 && (size_t)n < size) snprintf(buf + n, size - (size_t)n, ")");
}

/* "3x3" or "3" (1-D) */
static void window_text(maas_strbuf *b, int dims, int h, int w) {
    if (dims == 1)
        maas_strbuf_printf(b, "%d", w);
    else
        maas_strbuf_printf(b, "%dx%d", h, w);
}

int maas_layer_format(const maas_layer_spec *s, char *buf, size_t size) {
    maas_strbuf b = {0};
    switch (s->kind) {
    case MAAS_LAYER_DENSE:
        maas_strbuf_printf(&b, "%d:%s%s", s->units, maas_act_name(s->act),
                           s->use_bias ? "" : ":nobias");
        break;
    case MAAS_LAYER_DROPOUT:
        maas_strbuf_printf(&b, "dropout:%g", (double)s->rate);
        break;
    case MAAS_LAYER_CONV:
        maas_strbuf_printf(&b, "conv%dd:%d:", s->dims, s->units);
        window_text(&b, s->dims, s->kh, s->kw);
        maas_strbuf_printf(&b, ":%s", maas_act_name(s->act));
        if (s->sh != 1 || s->sw != 1) {
            maas_strbuf_printf(&b, ":s");
            window_text(&b, s->dims, s->sh, s->sw);
        }
        maas_strbuf_printf(&b, "%s%s", s->same ? ":same" : "", s->use_bias ? "" : ":nobias");
        break;
    case MAAS_LAYER_MAXPOOL:
    case MAAS_LAYER_AVGPOOL:
        maas_strbuf_printf(&b, "%s:", s->kind == MAAS_LAYER_MAXPOOL ? "maxpool" : "avgpool");
        window_text(&b, s->dims, s->kh, s->kw);
        if (s->sh != s->kh || s->sw != s->kw) {
            maas_strbuf_printf(&b, ":s");
            window_text(&b, s->dims, s->sh, s->sw);
        }
        maas_strbuf_printf(&b, "%s", s->same ? ":same" : "");
        break;
    case MAAS_LAYER_GAP:
        maas_strbuf_printf(&b, "gap%dd", s->dims);
        break;
    case MAAS_LAYER_FLATTEN:
        maas_strbuf_printf(&b, "flatten");
        break;
    case MAAS_LAYER_RESHAPE:
        maas_strbuf_printf(&b, "reshape:");
        for (int i = 0; i < s->target.rank && i < MAAS_MAX_RANK; i++)
            maas_strbuf_printf(&b, "%s%d", i ? "x" : "", s->target.d[i]);
        break;
    case MAAS_LAYER_BATCHNORM:
        maas_strbuf_printf(&b, "batchnorm");
        if (s->momentum != 0.99f) maas_strbuf_printf(&b, ":momentum=%g", (double)s->momentum);
        if (s->epsilon != 0.001f) maas_strbuf_printf(&b, ":epsilon=%g", (double)s->epsilon);
        break;
    case MAAS_LAYER_EMBEDDING:
        maas_strbuf_printf(&b, "embedding:%d:%d", s->vocab, s->units);
        break;
    default:
        maas_strbuf_printf(&b, "?");
    }
    int n = b.oom || !b.p || b.len >= size ? -1 : (int)b.len;
    if (n >= 0) memcpy(buf, b.p, b.len + 1);
    free(b.p);
    return n;
}

/* ------------------------------------------------------------ the grammar */

/* "28x28x1" (1..3 dims, each 1..MAAS_CONV_MAX_DIM) */
static int parse_dims(const char *t, int *d, int max) {
    int n = 0;
    while (*t) {
        char *e;
        errno = 0;
        long v = strtol(t, &e, 10);
        if (e == t || errno || v < 1 || v > MAAS_CONV_MAX_DIM || n == max) return 0;
        d[n++] = (int)v;
        t = e;
        if (*t == 'x') {
            t++;
            if (!*t) return 0;
        } else if (*t) {
            return 0;
        }
    }
    return n;
}

/* Parses one item's options after its fixed fields: ACT, sSTRIDES, same, valid, nobias,
 * momentum=M, epsilon=E - whichever the kind takes. */
static maas_err parse_options(int idx, char *opts, maas_layer_spec *s, char *errstr,
                              size_t errstr_size) {
    int conv = s->kind == MAAS_LAYER_CONV,
        pool = conv || s->kind == MAAS_LAYER_MAXPOOL || s->kind == MAAS_LAYER_AVGPOOL;
    int bn = s->kind == MAAS_LAYER_BATCHNORM;
    for (char *o = opts; o && *o;) {
        char *next = strchr(o, ':');
        if (next) *next++ = '\0';
        int d[2];
        char *e;
        if (pool && o[0] == 's' && isdigit((unsigned char)o[1])) {
            int n = parse_dims(o + 1, d, 2);
            if (n != s->dims)
                return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                                 "layer %d: strides '%s' must have %d number%s", idx, o + 1,
                                 s->dims, s->dims == 2 ? "s (e.g. s2x2)" : " (e.g. s2)");
            s->sh = n == 2 ? d[0] : 1;
            s->sw = d[n - 1];
        } else if (pool && !strcmp(o, "same")) {
            s->same = 1;
        } else if (pool && !strcmp(o, "valid")) {
            s->same = 0;
        } else if (conv && !strcmp(o, "nobias")) {
            s->use_bias = 0;
        } else if (bn && !strncmp(o, "momentum=", 9)) {
            double v = strtod(o + 9, &e);
            if (*e || e == o + 9 || !(v >= 0.0 && v < 1.0))
                return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                                 "layer %d: momentum must be in [0, 1)", idx);
            s->momentum = (float)v;
        } else if (bn && !strncmp(o, "epsilon=", 8)) {
            double v = strtod(o + 8, &e);
            if (*e || e == o + 8 || !(v > 0.0 && v < 1.0))
                return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                                 "layer %d: epsilon must be in (0, 1)", idx);
            s->epsilon = (float)v;
        } else if (conv) {
            char sub[MAAS_ERRSTR_SIZE];
            if (maas_act_from_name(o, &s->act, sub, sizeof(sub)))
                return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                                 "layer %d: '%s' is not an option of %s (an activation, sHxW, "
                                 "same, valid, nobias): %s",
                                 idx, o, maas_layer_class(s), sub);
        } else {
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "layer %d: '%s' is not an option of %s", idx, o, maas_layer_class(s));
        }
        o = next;
    }
    return MAAS_OK;
}

/* One item other than Dense and Dropout; 0 when item names none of them. */
static int parse_shaped(int idx, const char *item, maas_layer_spec *s, maas_err *err, char *errstr,
                        size_t errstr_size) {
    char buf[96];
    snprintf(buf, sizeof(buf), "%s", item);
    char *rest = strchr(buf, ':');
    if (rest) *rest++ = '\0';
    int d[3], n;
    *err = MAAS_OK;
    if (!strcmp(buf, "conv2d") || !strcmp(buf, "conv1d")) {
        int dims = buf[4] - '0';
        char *win = rest ? strchr(rest, ':') : NULL;
        if (win) *win++ = '\0';
        char *opts = win ? strchr(win, ':') : NULL;
        if (opts) *opts++ = '\0';
        char *e = NULL;
        long f = rest ? strtol(rest, &e, 10) : 0;
        n = win ? parse_dims(win, d, 2) : 0;
        if (!rest || *e || f < 1 || f > MAAS_CONV_MAX_DIM || n != dims) {
            *err = maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "layer %d: '%s' is not %s:FILTERS:%s[:ACTIVATION][:sSTRIDES][:same]"
                             "[:nobias]",
                             idx, item, buf, dims == 2 ? "KHxKW" : "K");
            return 1;
        }
        *s = maas_conv(dims, (int)f, d[0], d[n - 1], MAAS_ACT_LINEAR);
        *err = parse_options(idx, opts, s, errstr, errstr_size);
        return 1;
    }
    if (!strcmp(buf, "maxpool") || !strcmp(buf, "avgpool")) {
        char *opts = rest ? strchr(rest, ':') : NULL;
        if (opts) *opts++ = '\0';
        n = rest ? parse_dims(rest, d, 2) : 0;
        if (n < 1) {
            *err = maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "layer %d: '%s' is not %s:KHxKW (2-D) or %s:K (1-D), then "
                             "[:sSTRIDES][:same]",
                             idx, item, buf, buf);
            return 1;
        }
        *s = maas_pool(buf[0] == 'm' ? MAAS_LAYER_MAXPOOL : MAAS_LAYER_AVGPOOL, n, d[0], d[n - 1]);
        *err = parse_options(idx, opts, s, errstr, errstr_size);
        return 1;
    }
    if (!strcmp(buf, "gap2d") || !strcmp(buf, "gap1d")) {
        if (rest)
            *err = maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "layer %d: %s takes no options", idx, buf);
        *s = maas_global_avgpool(buf[3] - '0');
        return 1;
    }
    if (!strcmp(buf, "flatten")) {
        if (rest)
            *err = maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "layer %d: flatten takes no options", idx);
        *s = maas_flatten();
        return 1;
    }
    if (!strcmp(buf, "reshape")) {
        maas_shape t = {0};
        t.rank = rest ? parse_dims(rest, t.d, MAAS_MAX_RANK) : 0;
        if (t.rank < 1)
            *err = maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "layer %d: '%s' is not reshape:DxDxD (1 to %d dimensions, e.g. "
                             "reshape:28x28x1)",
                             idx, item, MAAS_MAX_RANK);
        *s = maas_reshape(&t);
        return 1;
    }
    if (!strcmp(buf, "batchnorm")) {
        *s = maas_batchnorm();
        *err = parse_options(idx, rest, s, errstr, errstr_size);
        return 1;
    }
    if (!strcmp(buf, "embedding")) {
        long v = 0, dim = 0;
        char *e = NULL, *e2 = NULL;
        if (rest) v = strtol(rest, &e, 10);
        if (e && *e == ':') dim = strtol(e + 1, &e2, 10);
        if (!e2 || *e2 || v < 1 || v > MAAS_MAX_PARAMS || dim < 1 || dim > MAAS_MAX_UNITS)
            *err = maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "layer %d: '%s' is not embedding:VOCAB:DIM", idx, item);
        else
            *s = maas_embedding((int)v, (int)dim);
        return 1;
    }
    return 0;
}

maas_err maas_layers_parse(const char *text, maas_layer_spec *out, int max, int *n, char *errstr,
                           size_t errstr_size) {
    *n = 0;
    if (!text || !*text)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT, "the layer list is empty");
    const char *p = text;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[96];
        if (len == 0 || len >= sizeof(item))
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "layer %d of '%s' is empty or too long", *n + 1, text);
        if (*n >= max)
            return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED, "more than %d layers",
                             max);
        memcpy(item, p, len);
        item[len] = '\0';
        maas_layer_spec s;
        maas_err err;
        if (parse_shaped(*n + 1, item, &s, &err, errstr, errstr_size)) {
            if (err) return err;
            out[(*n)++] = s;
            p += len;
            if (*p == ',') p++;
            continue;
        }
        char *colon = strchr(item, ':');
        if (colon) *colon = '\0';
        const char *arg = colon ? colon + 1 : NULL;
        char *e;
        if (!strcmp(item, "dropout")) {
            double rate = arg ? strtod(arg, &e) : -1.0;
            if (!arg || *e || !(rate >= 0.0 && rate < 1.0))
                return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                                 "layer %d: dropout needs a rate in [0, 1), e.g. dropout:0.2",
                                 *n + 1);
            s = maas_dropout((float)rate);
        } else {
            errno = 0;
            long units = strtol(item, &e, 10);
            if (*e || e == item || units < 1 || units > MAAS_MAX_UNITS || errno)
                return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                                 "layer %d: '%s' is not UNITS[:ACTIVATION[:nobias]], dropout:RATE, "
                                 "conv2d, conv1d, maxpool, avgpool, gap2d, gap1d, flatten, "
                                 "reshape, batchnorm or embedding (units in 1..%d)",
                                 *n + 1, item, MAAS_MAX_UNITS);
            maas_act act = MAAS_ACT_LINEAR;
            int bias = 1;
            if (arg) {
                char a[64];
                snprintf(a, sizeof(a), "%s", arg);
                char *opt = strchr(a, ':');
                if (opt) {
                    *opt++ = '\0';
                    if (strcmp(opt, "nobias"))
                        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                                         "layer %d: unknown option '%s' (known: nobias)", *n + 1,
                                         opt);
                    bias = 0;
                }
                char sub[MAAS_ERRSTR_SIZE];
                if (maas_act_from_name(a, &act, sub, sizeof(sub)))
                    return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME, "layer %d: %s",
                                     *n + 1, sub);
            }
            s = maas_dense((int)units, act);
            s.use_bias = bias;
        }
        out[(*n)++] = s;
        p += len;
        if (*p == ',') p++;
    }
    return MAAS_OK;
}

/* ------------------------------------------------------------ planning */

static size_t shape_size(const maas_shape *s) {
    size_t n = 1;
    for (int i = 0; i < s->rank; i++) n *= (size_t)s->d[i];
    return n;
}

static maas_err check_common(int idx, const maas_layer_spec *s, char *errstr, size_t errstr_size) {
    if ((int)s->kind < 0 || s->kind >= MAAS_LAYER__COUNT)
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                         "layer %d: unknown layer kind %d", idx, (int)s->kind);
    if (memchr(s->name, '\0', sizeof(s->name)) == NULL)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "layer %d: name not terminated", idx);
    if (strchr(s->name, '/'))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "layer %d: name '%s' must not contain '/'", idx, s->name);
    int weighted = s->kind == MAAS_LAYER_DENSE || s->kind == MAAS_LAYER_CONV ||
                   s->kind == MAAS_LAYER_EMBEDDING;
    if (weighted && ((int)s->kernel_init < 0 || s->kernel_init >= MAAS_INIT__COUNT ||
                     (int)s->bias_init < 0 || s->bias_init >= MAAS_INIT__COUNT))
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                         "layer %d: unknown initializer", idx);
    if (s->kind == MAAS_LAYER_DENSE || s->kind == MAAS_LAYER_CONV) {
        if ((int)s->act < 0 || s->act >= MAAS_ACT__COUNT)
            return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                             "layer %d: unknown activation %d", idx, (int)s->act);
        if (!isfinite(s->act_alpha))
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "layer %d: activation alpha is not finite", idx);
    }
    return MAAS_OK;
}

static void add_weight(maas_layer *l, size_t *off, const char *name, int rank, const int *dims,
                       int trainable) {
    maas_weight *w = &l->weights[l->n_weights++];
    w->name = name;
    w->rank = rank;
    w->n = 1;
    for (int i = 0; i < rank; i++) w->n *= (size_t)(w->dims[i] = dims[i]);
    w->off = *off;
    w->trainable = trainable;
    *off += w->n;
}

/* Conv, pooling and GAP: the input as a 2-D geometry (1-D: one row of steps). */
static maas_err plan_window(int idx, const maas_layer_spec *s, const maas_shape *in, maas_layer *l,
                            char *errstr, size_t errstr_size) {
    const char *cls = maas_layer_class(s);
    if (s->dims != 1 && s->dims != 2)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "layer %d: a %s must be 1-D or 2-D", idx, cls);
    if (in->rank != s->dims + 1) {
        char sh[64];
        maas_shape_format(in, sh, sizeof(sh));
        return maas_errf(
            errstr, errstr_size, MAAS_ERR_SHAPE_MISMATCH,
            "layer %d (%s) needs inputs of %s, it gets %s%s", idx, cls,
            s->dims == 2 ? "(height, width, channels)" : "(steps, channels)", sh,
            idx == 0 || in->rank == 1 ? ": give them a shape first, e.g. reshape:28x28x1" : "");
    }
    maas_conv_geom *g = &l->geom;
    memset(g, 0, sizeof(*g));
    g->h = s->dims == 2 ? in->d[0] : 1;
    g->w = in->d[s->dims == 2 ? 1 : 0];
    g->c = in->d[s->dims];
    if (s->kind == MAAS_LAYER_GAP) {
        g->kh = g->sh = g->h;
        g->kw = g->sw = g->w;
    } else {
        g->kh = s->dims == 2 ? s->kh : 1;
        g->sh = s->dims == 2 ? s->sh : 1;
        g->kw = s->kw;
        g->sw = s->sw;
        g->same = s->same;
    }
    g->f = s->kind == MAAS_LAYER_CONV ? s->units : g->c;
    char sub[MAAS_ERRSTR_SIZE];
    maas_err err = maas_conv_geom_init(g, sub, sizeof(sub));
    if (err) return maas_errf(errstr, errstr_size, err, "layer %d (%s): %s", idx, cls, sub);
    if (s->kind == MAAS_LAYER_GAP) {
        l->out.rank = 1;
        l->out.d[0] = g->c;
    } else if (s->dims == 2) {
        l->out.rank = 3;
        l->out.d[0] = g->oh;
        l->out.d[1] = g->ow;
        l->out.d[2] = g->f;
    } else {
        l->out.rank = 2;
        l->out.d[0] = g->ow;
        l->out.d[1] = g->f;
    }
    return MAAS_OK;
}

maas_err maas__layer_plan(int idx, const maas_layer_spec *s, const maas_shape *in, size_t *off,
                          maas_layer *l, char *errstr, size_t errstr_size) {
    memset(l, 0, sizeof(*l));
    maas_err err = check_common(idx, s, errstr, errstr_size);
    if (err) return err;
    l->spec = *s;
    l->in = *in;
    l->out = *in;
    l->n_in = (int)shape_size(in);
    char sh[64];
    switch (s->kind) {
    case MAAS_LAYER_DENSE: {
        if (s->units < 1 || s->units > MAAS_MAX_UNITS)
            return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                             "layer %d: units must be in 1..%d, got %d", idx, MAAS_MAX_UNITS,
                             s->units);
        if (in->rank != 1) {
            maas_shape_format(in, sh, sizeof(sh));
            return maas_errf(errstr, errstr_size, MAAS_ERR_SHAPE_MISMATCH,
                             "layer %d (Dense) gets inputs of %s; put a flatten (or a global "
                             "average pooling) before it",
                             idx, sh);
        }
        int kd[2] = {l->n_in, s->units};
        add_weight(l, off, "kernel", 2, kd, 1);
        if (s->use_bias) add_weight(l, off, "bias", 1, &kd[1], 1);
        l->out.rank = 1;
        l->out.d[0] = s->units;
        break;
    }
    case MAAS_LAYER_DROPOUT:
        if (!(s->rate >= 0.0f && s->rate < 1.0f))
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "layer %d: dropout rate must be in [0, 1), got %g", idx,
                             (double)s->rate);
        break;
    case MAAS_LAYER_CONV:
    case MAAS_LAYER_MAXPOOL:
    case MAAS_LAYER_AVGPOOL:
    case MAAS_LAYER_GAP:
        if ((err = plan_window(idx, s, in, l, errstr, errstr_size))) return err;
        if (s->kind == MAAS_LAYER_CONV) {
            const maas_conv_geom *g = &l->geom;
            int kd[4] = {g->kh, g->kw, g->c, g->f};
            if (s->dims == 2)
                add_weight(l, off, "kernel", 4, kd, 1);
            else
                add_weight(l, off, "kernel", 3, kd + 1, 1);
            if (s->use_bias) add_weight(l, off, "bias", 1, &kd[3], 1);
        }
        break;
    case MAAS_LAYER_FLATTEN:
        l->out.rank = 1;
        l->out.d[0] = l->n_in;
        break;
    case MAAS_LAYER_RESHAPE: {
        const maas_shape *t = &s->target;
        int ok = t->rank >= 1 && t->rank <= MAAS_MAX_RANK;
        for (int i = 0; ok && i < t->rank; i++) ok = t->d[i] >= 1 && t->d[i] <= MAAS_CONV_MAX_DIM;
        if (!ok)
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "layer %d: a Reshape needs 1..%d dimensions in 1..%d", idx,
                             MAAS_MAX_RANK, MAAS_CONV_MAX_DIM);
        if (shape_size(t) != (size_t)l->n_in) {
            char ts[64];
            maas_shape_format(in, sh, sizeof(sh));
            maas_shape_format(t, ts, sizeof(ts));
            return maas_errf(errstr, errstr_size, MAAS_ERR_SHAPE_MISMATCH,
                             "layer %d: cannot reshape %s (%d values) into %s", idx, sh, l->n_in,
                             ts);
        }
        l->out = *t;
        break;
    }
    case MAAS_LAYER_BATCHNORM: {
        if (!(s->epsilon > 0.0f && s->epsilon < 1.0f) ||
            !(s->momentum >= 0.0f && s->momentum < 1.0f))
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "layer %d: BatchNormalization needs epsilon in (0, 1) and momentum "
                             "in [0, 1)",
                             idx);
        if (s->dims > 0 && s->dims != in->rank) /* a Keras file's positive axis */
            return maas_errf(errstr, errstr_size, MAAS_ERR_UNSUPPORTED,
                             "layer %d: BatchNormalization over axis %d of a rank-%d input: only "
                             "the last axis is supported",
                             idx, s->dims, in->rank);
        int c = in->d[in->rank - 1];
        if (s->scale) add_weight(l, off, "gamma", 1, &c, 1);
        if (s->center) add_weight(l, off, "beta", 1, &c, 1);
        add_weight(l, off, "moving_mean", 1, &c, 0);
        add_weight(l, off, "moving_variance", 1, &c, 0);
        break;
    }
    case MAAS_LAYER_EMBEDDING: {
        if (idx != 0 || in->rank != 1)
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "layer %d: an Embedding must be the first layer (its inputs are "
                             "indices)",
                             idx);
        if (s->vocab < 1 || s->vocab > (int)MAAS_MAX_PARAMS || s->units < 1 ||
            s->units > MAAS_MAX_UNITS)
            return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                             "layer %d: an Embedding needs a vocabulary in 1..%u and a dimension "
                             "in 1..%d",
                             idx, MAAS_MAX_PARAMS, MAAS_MAX_UNITS);
        if ((size_t)s->vocab * (size_t)s->units > MAAS_MAX_PARAMS)
            return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                             "layer %d: the embedding table exceeds %u parameters", idx,
                             MAAS_MAX_PARAMS);
        int kd[2] = {s->vocab, s->units};
        add_weight(l, off, "embeddings", 2, kd, 1);
        l->out.rank = 2;
        l->out.d[0] = l->n_in;
        l->out.d[1] = s->units;
        break;
    }
    default:
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNKNOWN_NAME,
                         "layer %d: unknown layer kind %d", idx, (int)s->kind);
    }
    size_t out = shape_size(&l->out);
    if (out > MAAS_MAX_WIDTH)
        return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                         "layer %d (%s) would give %zu values per row, over %d", idx,
                         maas_layer_class(s), out, MAAS_MAX_WIDTH);
    l->n_out = (int)out;
    l->w_off = l->n_weights ? l->weights[0].off : 0;
    for (int i = 0; i < l->n_weights; i++)
        if (!strcmp(l->weights[i].name, "bias")) l->b_off = l->weights[i].off;
    return MAAS_OK;
}

int maas__conv_chunk_rows(const maas_layer *l, int max_rows) {
    size_t per = maas_conv_col_floats(&l->geom, 1);
    size_t rows = per ? MAAS_CONV_COL_CAP / per : (size_t)max_rows;
    if (rows < 1) rows = 1;
    return rows > (size_t)max_rows ? max_rows : (int)rows;
}

size_t maas__layer_scratch_per_row(const maas_layer *l) {
    switch (l->spec.kind) {
    case MAAS_LAYER_CONV:
        return maas_conv_col_floats(&l->geom, 1);
    case MAAS_LAYER_MAXPOOL:   /* the argmax */
    case MAAS_LAYER_BATCHNORM: /* the normalized values */
        return (size_t)l->n_out;
    default:
        return 0;
    }
}

int maas__layer_has_weights(const maas_layer *l) {
    return l->n_weights > 0;
}

int maas__layer_kernel_matrix(const maas_layer *l, int *rows, int *cols) {
    int r = 0, c = 0;
    if (l->spec.kind == MAAS_LAYER_DENSE) {
        r = l->n_in;
        c = l->n_out;
    } else if (l->spec.kind == MAAS_LAYER_CONV) {
        r = l->geom.kh * l->geom.kw * l->geom.c;
        c = l->geom.f;
    }
    if (rows) *rows = r;
    if (cols) *cols = c;
    return r > 0;
}

void maas__layer_bn_extent(const maas_layer *l, size_t *s, int *c) {
    *c = l->in.d[l->in.rank - 1];
    *s = (size_t)l->n_in / (size_t)*c;
}

const maas_weight *maas__layer_weight(const maas_layer *l, const char *name) {
    for (int i = 0; i < l->n_weights; i++)
        if (!strcmp(l->weights[i].name, name)) return &l->weights[i];
    return NULL;
}

maas_bn_params maas__layer_bn_params(const maas_layer *l, const float *params) {
    const maas_weight *g = maas__layer_weight(l, "gamma"), *b = maas__layer_weight(l, "beta");
    maas_bn_params p = {.c = l->in.d[l->in.rank - 1],
                        .epsilon = l->spec.epsilon,
                        .momentum = l->spec.momentum,
                        .gamma = g ? params + g->off : NULL,
                        .beta = b ? params + b->off : NULL};
    return p;
}
