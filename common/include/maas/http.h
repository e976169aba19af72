/*
 * http.h - a small embedded HTTP server (libmicrohttpd; http_mhd.c is its one
 * adapter) for /metrics, health checks and JSON APIs. Each connection is
 * served on a thread of its own, so a handler may block; handlers must be
 * thread-safe with respect to whatever they share.
 */
#ifndef MAAS_HTTP_H
#define MAAS_HTTP_H

#include <stddef.h>

#include "maas/err.h"

/* What one server accepts; maas_http_limits_default() gives the defaults in brackets. */
typedef struct maas_http_limits {
    size_t max_body;          /* request body bytes [8 MiB]: a larger Content-Length gets
                               * 413 before the body is read; a chunked one is cut off */
    unsigned max_connections; /* open connections in all [64]; more are refused */
    unsigned max_per_client;  /* open connections from one IP address [16] */
    unsigned timeout_s;       /* an idle connection is closed after [30] s */
} maas_http_limits;

maas_http_limits maas_http_limits_default(void);

typedef struct maas_http_request {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* "/metrics" (no query string) */
    const char *body;   /* the request body, NUL-terminated ("" when there is none) */
    size_t body_len;
    /* a request header by name (case-insensitive), or NULL; valid during the handler */
    const char *(*header)(const struct maas_http_request *req, const char *name);
    /* a query-string argument by name ("?from=10": "10"), decoded, or NULL; likewise */
    const char *(*arg)(const struct maas_http_request *req, const char *name);
    void *conn_;
} maas_http_request;

typedef struct maas_http_response {
    int status;
    char content_type[64];
    char *body; /* malloc'ed by the handler; the server frees it */
    size_t body_len;
} maas_http_response;

typedef void (*maas_http_handler)(void *ud, const maas_http_request *req, maas_http_response *res);

typedef struct maas_http maas_http;

/*
 * Serves on addr:port (addr "127.0.0.1" by default; port 0 picks a free one,
 * see maas_http_port) until maas_http_stop(), within limits (NULL: the
 * defaults). Bodies over limits->max_body get 413 without reaching the handler.
 */
maas_http *maas_http_start(const char *addr, int port, maas_http_handler handler, void *ud,
                           const maas_http_limits *limits, char *errstr, size_t errstr_size);
int maas_http_port(const maas_http *h);
void maas_http_stop(maas_http *h);

/* Convenience: sets a response from a printf-style text. */
void maas_http_reply(maas_http_response *res, int status, const char *content_type, const char *fmt,
                     ...) __attribute__((format(printf, 4, 5)));

#endif
