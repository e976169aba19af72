/* The HTTP adapter (the only file that includes microhttpd.h). */
#include "maas/base.h"
#include "maas/http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>

struct maas_http {
    struct MHD_Daemon *d;
    maas_http_handler handler;
    void *ud;
    int port;
    maas_http_limits limits;
};

maas_http_limits maas_http_limits_default(void) {
    return (maas_http_limits){(size_t)8 << 20, 64, 16, 30};
}

/* 413 in the protocol's error shape; the connection is closed after it. */
static enum MHD_Result too_large(struct MHD_Connection *conn, size_t max) {
    char body[160];
    int n = snprintf(body, sizeof(body),
                     "{\"error\": {\"code\": \"LIMIT_EXCEEDED\", \"message\": \"request body "
                     "over %zu bytes\"}}\n",
                     max);
    struct MHD_Response *r =
        MHD_create_response_from_buffer((size_t)n, body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Connection", "close");
    enum MHD_Result ret = MHD_queue_response(conn, 413, r);
    MHD_destroy_response(r);
    return ret;
}

typedef struct conn_state {
    char *body;
    size_t len, cap;
    int too_big;
} conn_state;

static const char *get_header(const maas_http_request *req, const char *name) {
    return MHD_lookup_connection_value(req->conn_, MHD_HEADER_KIND, name);
}

static const char *get_arg(const maas_http_request *req, const char *name) {
    return MHD_lookup_connection_value(req->conn_, MHD_GET_ARGUMENT_KIND, name);
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls) {
    (void)version;
    maas_http *h = cls;
    conn_state *st = *con_cls;
    if (!st) { /* first call: headers only */
        st = calloc(1, sizeof(*st));
        if (!st) return MHD_NO;
        *con_cls = st;
        /* a declared length over the limit is refused before a byte of the body is read */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno || *end || n > h->limits.max_body) {
                st->too_big = 1;
                return too_large(conn, h->limits.max_body);
            }
        }
        return MHD_YES;
    }
    if (st->too_big && *upload_size) { /* answered already: the rest is dropped */
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) { /* body chunks */
        if (st->too_big || st->len + *upload_size > h->limits.max_body) {
            st->too_big = 1;
        } else {
            if (st->len + *upload_size + 1 > st->cap) { /* + 1: the body is NUL-terminated */
                size_t cap = (st->len + *upload_size) * 2 + 1;
                char *nb = realloc(st->body, cap);
                if (!nb) return MHD_NO;
                st->body = nb;
                st->cap = cap;
            }
            memcpy(st->body + st->len, upload, *upload_size);
            st->len += *upload_size;
            st->body[st->len] = '\0';
        }
        *upload_size = 0;
        return MHD_YES;
    }
    maas_http_response res = {.status = 500};
    snprintf(res.content_type, sizeof(res.content_type), "text/plain");
    if (st->too_big) {
        free(st->body);
        st->body = NULL;
        return too_large(conn, h->limits.max_body);
    } else {
        const char *q = strchr(url, '?');
        char path[1024];
        snprintf(path, sizeof(path), "%.*s", q ? (int)(q - url) : (int)strlen(url), url);
        maas_http_request req = {.method = method,
                                 .path = path,
                                 .body = st->body ? st->body : "",
                                 .body_len = st->len,
                                 .header = get_header,
                                 .arg = get_arg,
                                 .conn_ = conn};
        h->handler(h->ud, &req, &res);
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(
        res.body_len, res.body ? res.body : (void *)"", MHD_RESPMEM_MUST_COPY);
    free(res.body);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", res.content_type);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)res.status, r);
    MHD_destroy_response(r);
    return ret;
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)conn;
    (void)toe;
    conn_state *st = *con_cls;
    if (st) {
        free(st->body);
        free(st);
    }
    *con_cls = NULL;
}

maas_http *maas_http_start(const char *addr, int port, maas_http_handler handler, void *ud,
                           const maas_http_limits *limits, char *errstr, size_t errstr_size) {
    maas_http *h = calloc(1, sizeof(*h));
    if (!h) {
        maas_errf(errstr, errstr_size, MAAS_ERR_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    h->handler = handler;
    h->ud = ud;
    h->limits = limits ? *limits : maas_http_limits_default();
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, addr && *addr ? addr : "127.0.0.1", &sa.sin_addr) != 1) {
        free(h);
        maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT, "'%s' is not an IPv4 address",
                  addr);
        return NULL;
    }
    /* a thread per connection: a handler may block (a synchronous predict waits for its job);
     * an inter-thread channel (ITC) wakes the threads when the server stops, instead of their
     * waiting out a poll (a coordinator's stop once took over 30 s, in the secure test) */
    h->d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ITC |
            MHD_USE_ERROR_LOG,
        (uint16_t)port, NULL, NULL, answer, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_CONNECTION_TIMEOUT,
        h->limits.timeout_s, MHD_OPTION_CONNECTION_LIMIT, h->limits.max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, h->limits.max_per_client, MHD_OPTION_END);
    if (!h->d) {
        free(h);
        maas_errf(errstr, errstr_size, MAAS_ERR_UNAVAILABLE,
                  "cannot listen on %s:%d (in use, or not allowed)", addr ? addr : "127.0.0.1",
                  port);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : port;
    return h;
}

int maas_http_port(const maas_http *h) {
    return h->port;
}

void maas_http_stop(maas_http *h) {
    if (!h) return;
    MHD_stop_daemon(h->d);
    free(h);
}

void maas_http_reply(maas_http_response *res, int status, const char *content_type, const char *fmt,
                     ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    free(res->body);
    res->body = malloc((size_t)n + 1);
    res->body_len = 0;
    if (res->body) {
        va_start(ap, fmt);
        vsnprintf(res->body, (size_t)n + 1, fmt, ap);
        va_end(ap);
        res->body_len = (size_t)n;
    }
    res->status = status;
    snprintf(res->content_type, sizeof(res->content_type), "%s", content_type);
}
