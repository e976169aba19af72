/* API keys (see auth.h). */
#include "maas/base.h"
#include "maas/auth.h"

#include <sys/random.h>

#include "maas/clock.h"
#include "maas/digest.h"

static const struct {
    const char *name;
    unsigned bit;
} scope_names[] = {
    {"read", MAAS_SCOPE_READ}, {"submit", MAAS_SCOPE_SUBMIT}, {"admin", MAAS_SCOPE_ADMIN}};

static int random_hex(char *out, size_t n_bytes) {
    unsigned char b[64];
    if (n_bytes > sizeof(b)) return -1;
    size_t got = 0;
    while (got < n_bytes) { /* no fallback: a secret needs the kernel's randomness */
        ssize_t r = getrandom(b + got, n_bytes - got, 0);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    for (size_t i = 0; i < n_bytes; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
    return 0;
}

maas_err maas_api_key_new(const char *tenant, unsigned scopes, maas_api_key *k,
                          char token[MAAS_API_TOKEN_MAX], char *errstr, size_t errstr_size) {
    memset(k, 0, sizeof(*k));
    if (tenant && *tenant) {
        maas_err err = maas_tenant_check(tenant, errstr, errstr_size);
        if (err) return err;
    }
    if (!scopes || (scopes & ~(MAAS_SCOPE_READ | MAAS_SCOPE_SUBMIT | MAAS_SCOPE_ADMIN)))
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "a key needs one or more of the scopes read, submit, admin");
    char secret[65];
    if (random_hex(k->id, MAAS_API_KEY_ID_LEN / 2) || random_hex(secret, 32))
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE,
                         "no randomness from the kernel (getrandom) for a key");
    snprintf(k->tenant, sizeof(k->tenant), "%s", tenant ? tenant : "");
    k->scopes = scopes;
    maas_sha256_hex(secret, 64, k->hash);
    k->created_ms = maas_wall_ms();
    snprintf(token, MAAS_API_TOKEN_MAX, "maas_%s_%s", k->id, secret);
    memset(secret, 0, sizeof(secret));
    return MAAS_OK;
}

static int all_hex(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

maas_err maas_api_token_split(const char *token, char id[MAAS_API_KEY_ID_LEN + 1], char secret[65],
                              char *errstr, size_t errstr_size) {
    size_t n = token ? strlen(token) : 0;
    if (n != 5 + MAAS_API_KEY_ID_LEN + 1 + 64 || strncmp(token, "maas_", 5) ||
        token[5 + MAAS_API_KEY_ID_LEN] != '_' || !all_hex(token + 5, MAAS_API_KEY_ID_LEN) ||
        !all_hex(token + 6 + MAAS_API_KEY_ID_LEN, 64))
        return maas_errf(errstr, errstr_size, MAAS_ERR_UNAUTHENTICATED,
                         "malformed API key: expected maas_<16 hex digits>_<64 hex digits>");
    memcpy(id, token + 5, MAAS_API_KEY_ID_LEN);
    id[MAAS_API_KEY_ID_LEN] = '\0';
    memcpy(secret, token + 6 + MAAS_API_KEY_ID_LEN, 64);
    secret[64] = '\0';
    return MAAS_OK;
}

int maas_api_key_matches(const maas_api_key *k, const char *secret) {
    char h[65];
    maas_sha256_hex(secret, strlen(secret), h);
    return strlen(k->hash) == 64 && maas_digest_equal(h, k->hash, 64);
}

maas_err maas_scopes_parse(const char *text, unsigned *scopes, char *errstr, size_t errstr_size) {
    *scopes = 0;
    const char *p = text ? text : "";
    while (*p) {
        size_t n = strcspn(p, ",");
        unsigned bit = 0;
        for (size_t i = 0; i < MAAS_ARRAY_LEN(scope_names); i++)
            if (strlen(scope_names[i].name) == n && !strncmp(p, scope_names[i].name, n))
                bit = scope_names[i].bit;
        if (!bit)
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "scope '%.*s': expected read, submit or admin", (int)(n > 32 ? 32 : n),
                             p);
        *scopes |= bit;
        p += n;
        if (*p == ',' && !*++p) /* a trailing comma: a scope left out */
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "scopes '%.60s': a name after each comma", text);
    }
    if (!*scopes)
        return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                         "no scope: expected read, submit and/or admin");
    return MAAS_OK;
}

void maas_scopes_format(unsigned scopes, char *out, size_t size) {
    size_t at = 0;
    if (size) out[0] = '\0';
    for (size_t i = 0; i < MAAS_ARRAY_LEN(scope_names); i++)
        if (scopes & scope_names[i].bit) {
            int w = snprintf(out + at, size - at, "%s%s", at ? "," : "", scope_names[i].name);
            if (w < 0 || (size_t)w >= size - at) return;
            at += (size_t)w;
        }
}
