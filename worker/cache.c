/*
 * The model cache: versions loaded from Redis (their h5 bytes), keyed by the
 * immutable (tenant, name, version) triple, bounded by a memory budget with LRU
 * eviction. Aliases are resolved per job, so moving `production` takes effect
 * on the next job (the resolution is cached by the Redis adapter and kept true
 * by Redis's invalidation messages: maas_kv_cache_versions).
 */
#include "maas/base.h"
#include "worker.h"

/* An inference context's buffers per cached model, at most (one row at least). */
#define CACHE_CTX_BYTES ((size_t)32 << 20)

void cache_init(model_cache *c, size_t budget_bytes) {
    memset(c, 0, sizeof(*c));
    c->budget = budget_bytes;
}

static void drop(model_cache *c, int i) {
    maas_infer_free(c->e[i].infer);
    maas_model_free(c->e[i].model);
    c->bytes -= c->e[i].bytes;
    c->e[i] = c->e[--c->n];
}

void cache_release(model_cache *c) {
    while (c->n) drop(c, c->n - 1);
}

maas_err cache_get(worker *w, const char *tenant, const char *name, const char *ref,
                   cache_entry **entry, char *errstr, size_t errstr_size) {
    model_cache *c = &w->cache;
    int version;
    maas_kv *kv = worker_kv(w, tenant);
    maas_err err = maas_kv_version_resolve(kv, name, ref, &version, errstr, errstr_size);
    if (err) return err;
    for (int i = 0; i < c->n; i++)
        if (c->e[i].version == version && !strcmp(c->e[i].name, name) &&
            !strcmp(c->e[i].tenant, tenant)) {
            c->e[i].last_used = ++c->tick;
            c->hits++;
            *entry = &c->e[i];
            return MAAS_OK;
        }
    c->misses++;
    unsigned char *h5;
    size_t len;
    if ((err = maas_kv_version_get(kv, name, version, &h5, &len, NULL, errstr, errstr_size)))
        return err;
    maas_model *m;
    maas_model_info info;
    char sub[MAAS_ERRSTR_SIZE];
    err = maas_model_load_image(h5, len, &m, &info, sub, sizeof(sub));
    free(h5);
    if (err)
        return maas_errf(errstr, errstr_size, err, "model %s version %d: %s", name, version, sub);
    /* The inference context's rows: up to 64 per job of a full batch (4096 at most), fewer
     * for a wide model, so that its buffers stay within CACHE_CTX_BYTES. */
    int widest = m->n_inputs;
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].n_out > widest) widest = m->layers[i].n_out;
    size_t row_bytes = ((size_t)2 * widest + (size_t)m->n_inputs) * sizeof(float) + 64;
    size_t ctx_rows = CACHE_CTX_BYTES / row_bytes;
    size_t want = w->cfg.batch_max * 64 > 4096 ? 4096 : (size_t)w->cfg.batch_max * 64;
    if (ctx_rows > want) ctx_rows = want;
    if (ctx_rows < 1) ctx_rows = 1;
    /* charged: the weights (and the loader's copies), the h5 bytes and the context */
    size_t bytes = m->n_params * sizeof(float) * 2 + len + ctx_rows * row_bytes +
                   maas_infer_scratch_bytes(m, (int)ctx_rows);
    if (bytes > c->budget) {
        maas_model_free(m);
        return maas_errf(errstr, errstr_size, MAAS_ERR_LIMIT_EXCEEDED,
                         "model %s version %d needs %zu MiB in memory, over the worker's model "
                         "cache budget of %zu MiB (--cache-mb)",
                         name, version, bytes >> 20, c->budget >> 20);
    }
    while (c->n > 0 && (c->bytes + bytes > c->budget || c->n == (int)MAAS_ARRAY_LEN(c->e))) {
        int lru = 0;
        for (int i = 1; i < c->n; i++)
            if (c->e[i].last_used < c->e[lru].last_used) lru = i;
        wlog(w, "info", NULL, "model cache: evicting %s:%d", c->e[lru].name, c->e[lru].version);
        drop(c, lru);
        c->evictions++;
    }
    maas_infer *inf;
    if ((err = maas_infer_create(&inf, m, (int)ctx_rows, errstr, errstr_size))) {
        maas_model_free(m);
        return err;
    }
    cache_entry *e = &c->e[c->n++];
    memset(e, 0, sizeof(*e));
    snprintf(e->tenant, sizeof(e->tenant), "%s", tenant);
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->version = version;
    e->model = m;
    e->info = info;
    e->infer = inf;
    e->bytes = bytes;
    e->last_used = ++c->tick;
    c->bytes += bytes;
    wlog(w, "info", NULL, "model cache: loaded %s:%d (%zu parameters, %zu bytes of h5)", name,
         version, m->n_params, len);
    *entry = e;
    return MAAS_OK;
}

const char *model_label(const cache_entry *ce, char *buf, size_t size) {
    snprintf(buf, size, "%s:%d", ce->name, ce->version);
    return buf;
}
