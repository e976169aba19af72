/*
 * A job's record as Redis stores it: one JSON object in a string (schemas/redis-keys.md,
 * "Job record"). Written whole here when a job is submitted and when a worker's result is
 * the record's first write (the hot path of lua/job_transition.lua: SET ... NX EX); every
 * other change is made by the scripts (lua/job_*.lua, with Redis's cjson). Read here.
 */
#include "maas/base.h"
#include "maas/cost.h"
#include "maas/json.h"
#include "internal.h"

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* ,"key": - the comma unless first (b holds just the opening brace). Appended raw, no
 * printf: a worker builds a record per job, and formatting was most of its cost. */
static void put_key(maas_strbuf *b, const char *key) {
    if (b->len > 1) maas_strbuf_put(b, ",", 1);
    maas_strbuf_put(b, "\"", 1);
    maas_strbuf_put(b, key, strlen(key));
    maas_strbuf_put(b, "\":", 2);
}

/* "key": "value", with JSON's escapes (control characters as \u00XX). */
static void put_str(maas_strbuf *b, const char *key, const char *s) {
    put_key(b, key);
    maas_strbuf_put(b, "\"", 1);
    for (const char *run = s;; s++) {
        unsigned char c = (unsigned char)*s;
        if (c && c >= 0x20 && c != '"' && c != '\\') continue;
        maas_strbuf_put(b, run, (size_t)(s - run));
        if (!c) break;
        char esc[8];
        int n = c == '"' || c == '\\' ? snprintf(esc, sizeof(esc), "\\%c", c)
                                      : snprintf(esc, sizeof(esc), "\\u%04x", c);
        maas_strbuf_put(b, esc, (size_t)n);
        run = s + 1;
    }
    maas_strbuf_put(b, "\"", 1);
}

static void put_i64(maas_strbuf *b, const char *key, long long v) {
    char num[24];
    put_key(b, key);
    maas_strbuf_put(b, num, kv_fmt_i64(num, v));
}

void kv_b64_put(maas_strbuf *b, const unsigned char *p, size_t n) {
    char q[4];
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        q[0] = b64_chars[v >> 18 & 63], q[1] = b64_chars[v >> 12 & 63];
        q[2] = i + 1 < n ? b64_chars[v >> 6 & 63] : '=';
        q[3] = i + 2 < n ? b64_chars[v & 63] : '=';
        maas_strbuf_put(b, q, 4);
    }
}

static int b64_val(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* base64 -> bytes (malloc'ed, at least 1 byte); -1 when not base64. */
static int b64_decode(const char *s, unsigned char **out, size_t *len) {
    size_t n = strlen(s);
    while (n && s[n - 1] == '=') n--;
    unsigned char *p = malloc(n * 3 / 4 + 1);
    if (!p) return -1;
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_val((unsigned char)s[i]);
        if (v < 0) {
            free(p);
            return -1;
        }
        acc = acc << 6 | (unsigned)v;
        if ((bits += 6) >= 8) p[o++] = (unsigned char)(acc >> (bits -= 8));
    }
    *out = p, *len = o;
    return 0;
}

void kv_record_new(maas_strbuf *b, const maas_job_record *r, const char *state, int attempts,
                   int64_t created_ms, int ttl_s) {
    if (b->cap < 512 && !b->oom) { /* a record's fields, before any result */
        char *p = realloc(b->p, 512);
        if (p) b->p = p, b->cap = 512;
    }
    maas_strbuf_put(b, "{", 1);
    put_str(b, "id", r->id);
    put_str(b, "type", r->type);
    put_str(b, "model", r->model);
    put_str(b, "state", state);
    put_i64(b, "attempts", attempts);
    put_i64(b, "created_ms", created_ms);
    put_i64(b, "deadline_ms", r->deadline_ms);
    put_i64(b, "ttl_s", ttl_s);
    if (r->digest[0]) put_str(b, "digest", r->digest);
}

int kv_record_hot(maas_strbuf *b, const char *id, const maas_job_update *u, int64_t now) {
    const maas_job_record *c = u->create;
    if (!c || u->to != MAAS_JOB_SUCCEEDED || !u->result || !u->worker || !u->worker[0] ||
        (u->error_code && u->error_code[0]) || !(u->from_mask & (1u << MAAS_JOB_QUEUED)) ||
        !u->started_ms || !u->cost || u->ttl_s <= 0)
        return 0;
    maas_job_record r = *c;
    snprintf(r.id, sizeof(r.id), "%s", id);
    kv_record_new(b, &r, "succeeded", 1, c->created_ms ? c->created_ms : now, u->ttl_s);
    put_str(b, "worker", u->worker);
    put_i64(b, "started_ms", u->started_ms);
    put_i64(b, "finished_ms", now);
    char cost[256];
    int n = maas_job_cost_json(u->cost, cost, sizeof(cost));
    if (n > 0 && (size_t)n < sizeof(cost)) {
        put_key(b, "cost");
        maas_strbuf_put(b, cost, (size_t)n);
    }
    put_key(b, "result");
    maas_strbuf_put(b, "\"", 1);
    kv_b64_put(b, u->result, u->result_len);
    maas_strbuf_put(b, "\"}", 2);
    return !b->oom;
}

static void copy(char *dst, size_t size, const maas_json *doc, const char *key) {
    const char *s;
    if (maas_json_string(doc, key, &s)) snprintf(dst, size, "%s", s);
}

static int64_t num(const maas_json *doc, const char *key) {
    double v = 0; /* a number out of int64_t's range (or not one) reads as 0 */
    return maas_json_number(doc, key, &v) && v > -9e18 && v < 9e18 ? (int64_t)v : 0;
}

maas_err kv_record_parse(const char *text, size_t len, maas_job_record *r, char *errstr,
                         size_t errstr_size) {
    maas_json *doc;
    char sub[MAAS_ERRSTR_SIZE];
    if (maas_json_parse_object(text, len, &doc, sub, sizeof(sub)))
        return maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                         "job '%s': its record is not a JSON object", r->id);
    const char *s;
    if (maas_json_string(doc, "state", &s)) r->state = maas_job_state_from_name(s);
    copy(r->type, sizeof(r->type), doc, "type");
    copy(r->model, sizeof(r->model), doc, "model");
    copy(r->worker, sizeof(r->worker), doc, "worker");
    copy(r->error_code, sizeof(r->error_code), doc, "error_code");
    copy(r->error_message, sizeof(r->error_message), doc, "error_message");
    copy(r->digest, sizeof(r->digest), doc, "digest");
    r->attempts = (int)num(doc, "attempts");
    r->created_ms = num(doc, "created_ms");
    r->started_ms = num(doc, "started_ms");
    r->finished_ms = num(doc, "finished_ms");
    r->heartbeat_ms = num(doc, "heartbeat_ms");
    r->deadline_ms = num(doc, "deadline_ms");
    r->cancel_requested = num(doc, "cancel_requested") != 0;
    char *t = maas_json_member_text(doc, "cost");
    if (t) r->has_cost = maas_job_cost_parse(t, strlen(t), &r->cost, NULL, 0) == MAAS_OK;
    free(t);
    r->progress = maas_json_member_text(doc, "progress");
    maas_err err = MAAS_OK;
    if (maas_json_string(doc, "result", &s) && b64_decode(s, &r->result, &r->result_len)) {
        err = maas_errf(errstr, errstr_size, MAAS_ERR_BAD_FORMAT,
                        "job '%s': the record's result is not base64", r->id);
        free(r->progress);
        r->progress = NULL;
    }
    maas_json_free(doc);
    return err;
}
