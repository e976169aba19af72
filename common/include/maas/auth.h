/*
 * auth.h - API keys: who may call the coordinator's HTTP API, as which tenant,
 * and for what (scopes). A key is shown once, when it is made, as a token
 *
 *     maas_<ID>_<SECRET>        ID: 16 hex digits, SECRET: 64 (256 random bits)
 *
 * and stored only as its ID, tenant, scopes and the SHA-256 of SECRET (Redis:
 * maas:apikey:{ID}, kv.h). A presented token is looked up by its ID and its
 * secret's hash compared in constant time; the ID alone grants nothing.
 */
#ifndef MAAS_AUTH_H
#define MAAS_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "maas/err.h"
#include "maas/names.h"

#define MAAS_SCOPE_READ 1u   /* read records, results, models, datasets */
#define MAAS_SCOPE_SUBMIT 2u /* submit and cancel jobs, move aliases, put datasets */
#define MAAS_SCOPE_ADMIN 4u  /* tenants and keys; with no tenant: every tenant */

#define MAAS_API_KEY_ID_LEN 16
#define MAAS_API_TOKEN_MAX 96

typedef struct maas_api_key {
    char id[MAAS_API_KEY_ID_LEN + 1];
    char tenant[MAAS_TENANT_MAX + 1]; /* "": an operator's key, bound to no tenant */
    unsigned scopes;
    char hash[65];      /* SHA-256 of the secret, 64 hex digits */
    int64_t created_ms; /* Unix ms */
    int64_t expires_ms; /* 0: never */
} maas_api_key;

/*
 * Makes a key for tenant ("" for none) with scopes: fills k and writes the
 * token (to hand out once; it is not kept) into token. UNAVAILABLE when the
 * system has no randomness to give.
 */
maas_err maas_api_key_new(const char *tenant, unsigned scopes, maas_api_key *k,
                          char token[MAAS_API_TOKEN_MAX], char *errstr, size_t errstr_size);

/* Splits a presented token into its ID and secret; UNAUTHENTICATED when malformed. */
maas_err maas_api_token_split(const char *token, char id[MAAS_API_KEY_ID_LEN + 1], char secret[65],
                              char *errstr, size_t errstr_size);

/* 1 when secret is k's (its SHA-256 equals k->hash, compared in constant time). */
int maas_api_key_matches(const maas_api_key *k, const char *secret);

/* "read,submit" -> MAAS_SCOPE_READ | MAAS_SCOPE_SUBMIT; INVALID_ARGUMENT naming a bad one. */
maas_err maas_scopes_parse(const char *text, unsigned *scopes, char *errstr, size_t errstr_size);
/* The reverse, e.g. "read,submit" ("" for none). */
void maas_scopes_format(unsigned scopes, char *out, size_t size);

#endif
