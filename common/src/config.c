/* Program settings: options from defaults, environment, file and flags. See config.h. */
#include "maas/base.h"
#include "maas/config.h"
#include "maas/strbuf.h"

static const maas_option *find(const maas_config *c, const char *name) {
    for (int i = 0; i < c->n_opts; i++)
        if (!strcmp(c->opts[i].name, name)) return &c->opts[i];
    return NULL;
}

/* Sets one option from text; `from` names where the value came from, for the message. */
static maas_err apply(maas_config *c, const maas_option *o, const char *v, const char *from,
                      char *errstr, size_t errstr_size) {
    if (o->type == MAAS_OPTION_STRING) {
        if (strlen(v) >= o->size)
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "%s: %s is longer than %zu characters", c->program, from, o->size - 1);
        snprintf((char *)o->dst, o->size, "%s", v);
        return MAAS_OK;
    }
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (!*v || *end || errno || n < o->lo || n > o->hi)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "%s: %s must be an integer in %ld..%ld, got '%s'", c->program, from, o->lo,
                         o->hi, v);
    if (o->type == MAAS_OPTION_INT)
        *(int *)o->dst = (int)n;
    else
        *(long *)o->dst = n;
    return MAAS_OK;
}

maas_err maas_config_init(maas_config *c, const char *program, const maas_option *opts, int n_opts,
                          char *errstr, size_t errstr_size) {
    memset(c, 0, sizeof(*c));
    c->program = program;
    c->opts = opts;
    c->n_opts = n_opts;
    for (int i = 0; i < n_opts; i++) {
        const char *v = opts[i].env ? getenv(opts[i].env) : NULL;
        if (!v) continue;
        maas_err err = apply(c, &opts[i], v, opts[i].env, errstr, errstr_size);
        if (err) return err;
    }
    /* credentials for every program of a deployment, kept out of argv and the environment */
    const char *file = getenv("MAAS_CONFIG");
    return file && *file ? maas_config_load_file(c, file, errstr, errstr_size) : MAAS_OK;
}

static maas_err add_setting(maas_config *c, const char *key, size_t key_len, const char *value,
                            char *errstr, size_t errstr_size) {
    if (c->n_settings == MAAS_CONFIG_MAX_SETTINGS)
        return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED, "%s: more than %d settings",
                         c->program, MAAS_CONFIG_MAX_SETTINGS);
    char *k = strndup(key, key_len), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
    }
    c->settings[c->n_settings++] = (maas_setting){k, v};
    return MAAS_OK;
}

static int adapter_key(const char *key) {
    return !strncmp(key, "kafka.", 6) || !strncmp(key, "redis.", 6);
}

maas_err maas_config_set(maas_config *c, const char *name, const char *value, char *errstr,
                         size_t errstr_size) {
    const maas_option *o = find(c, name);
    if (o) {
        char from[80];
        snprintf(from, sizeof(from), "--%s", name);
        return apply(c, o, value, from, errstr, errstr_size);
    }
    if (adapter_key(name) && name[6])
        return add_setting(c, name, strlen(name), value, errstr, errstr_size);
    return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT, "%s: unknown setting '%s'",
                     c->program, name);
}

maas_err maas_config_setting(maas_config *c, const char *key_value, char *errstr,
                             size_t errstr_size) {
    const char *eq = strchr(key_value, '=');
    if (!eq || eq == key_value || !adapter_key(key_value) || eq - key_value <= 6)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "%s: -X needs kafka.KEY=VALUE or redis.KEY=VALUE, got '%s'", c->program,
                         key_value);
    return add_setting(c, key_value, (size_t)(eq - key_value), eq + 1, errstr, errstr_size);
}

maas_err maas_config_load_file(maas_config *c, const char *path, char *errstr, size_t errstr_size) {
    FILE *f = fopen(path, "r");
    if (!f)
        return maas_errf(errstr, errstr_size, MAAS_ERR_IO, "%s: cannot read config '%s': %s",
                         c->program, path, strerror(errno));
    char line[1024];
    int ln = 0;
    maas_err err = MAAS_OK;
    while (!err && fgets(line, sizeof(line), f)) {
        ln++;
        if (!strchr(line, '\n') && !feof(f)) {
            err = maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                            "%s: %s:%d: line too long", c->program, path, ln);
            break;
        }
        line[strcspn(line, "\r\n")] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (!*p || *p == '#') continue;
        char *eq = strchr(p, '=');
        if (!eq) {
            err = maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                            "%s: %s:%d: expected name=value", c->program, path, ln);
            break;
        }
        *eq = '\0';
        char *k = p, *v = eq + 1;
        for (char *q = eq - 1; q >= k && (*q == ' ' || *q == '\t'); q--) *q = '\0';
        while (*v == ' ' || *v == '\t') v++;
        err = maas_config_set(c, k, v, errstr, errstr_size);
    }
    fclose(f);
    return err;
}

maas_err maas_config_parse_args(maas_config *c, int argc, char **argv, int *help, char *errstr,
                                size_t errstr_size) {
    *help = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            *help = 1;
            return MAAS_OK;
        }
        if (c->checkable && !strcmp(a, "--check-config")) {
            c->check = 1;
            continue;
        }
        maas_err err;
        if (a[0] != '-')
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "%s: unexpected argument '%s'", c->program, a);
        if (i + 1 >= argc)
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "%s: option '%s' takes a value", c->program, a);
        if (!strcmp(a, "-X"))
            err = maas_config_setting(c, argv[++i], errstr, errstr_size);
        else if (!strcmp(a, "--config"))
            err = maas_config_load_file(c, argv[++i], errstr, errstr_size);
        else if (!strncmp(a, "--", 2) && find(c, a + 2))
            err = maas_config_set(c, a + 2, argv[++i], errstr, errstr_size);
        else
            err = maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                            "%s: unknown option '%s'", c->program, a);
        if (err) return err;
    }
    return MAAS_OK;
}

void maas_config_release(maas_config *c) {
    for (int i = 0; i < c->n_settings; i++) {
        free((char *)c->settings[i].key);
        free((char *)c->settings[i].value);
    }
    c->n_settings = 0;
}

int maas_config_secret(const char *key) {
    /* ssl.key.pem / ssl.key.location / ssl.keystore.*: a private key or where it is */
    return strstr(key, "password") || strstr(key, "secret") || strstr(key, "sasl.oauthbearer") ||
           strstr(key, "token") || strstr(key, "ssl.key") || strstr(key, "private");
}

void maas_config_mask_url(const char *url, char *out, size_t size) {
    snprintf(out, size, "%s", url);
    char *scheme = strstr(out, "://"), *at = strrchr(out, '@');
    if (!scheme || !at || at < scheme) return;
    char *colon = memchr(scheme + 3, ':', (size_t)(at - (scheme + 3)));
    char *from = colon ? colon + 1 : scheme + 3; /* a password alone ("redis://pw@h") too */
    char tail[512];
    snprintf(tail, sizeof(tail), "%s", at);
    snprintf(from, size - (size_t)(from - out), "***%s", tail);
}

void maas_config_describe(const maas_config *c, maas_strbuf *out) {
    const char *sep = "";
    for (int i = 0; i < c->n_opts; i++, sep = " ") {
        const maas_option *o = &c->opts[i];
        if (o->type != MAAS_OPTION_STRING) {
            maas_strbuf_printf(out, "%s%s=%ld", sep, o->name,
                               o->type == MAAS_OPTION_INT ? (long)*(int *)o->dst : *(long *)o->dst);
            continue;
        }
        char v[1024];
        if (maas_config_secret(o->name))
            snprintf(v, sizeof(v), "***");
        else
            maas_config_mask_url((const char *)o->dst, v, sizeof(v));
        maas_strbuf_printf(out, "%s%s=%s", sep, o->name, v);
    }
    for (int i = 0; i < c->n_settings; i++, sep = " ")
        maas_strbuf_printf(out, "%s%s=%s", sep, c->settings[i].key,
                           maas_config_secret(c->settings[i].key) ? "***" : c->settings[i].value);
}
