/* Checks of a request's head before it is routed: its framing (one
 * Content-Length, not with Transfer-Encoding; no %00 in the target) and
 * who sent it (the Host among the allowed names, against DNS rebinding; an
 * Origin that is the gateway's own or allowed; no cross-site
 * state-changing request). Each refusal is a JSON error; the connection is
 * closed after it, so nothing after a bad head is read as a request. */
#include "client/gateway/internal.h"
#include "common/error.h"
#include "common/log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- host names ---- */

/* "name", "name:port", "[v6]" or "[v6]:port" into host (lower case, IPv6
 * kept in brackets) and *port (0 when not given). 0, or -1 when malformed. */
static int s_split_host(const char *v, size_t n, char *host, size_t size, int *port) {
    while (n && (*v == ' ' || *v == '\t')) v++, n--;
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
    if (!n) return -1;
    size_t h = 0;
    if (v[0] == '[') {
        const char *close = memchr(v, ']', n);
        if (!close) return -1;
        h = (size_t)(close - v) + 1;
    } else {
        const char *colon = memchr(v, ':', n);
        h = colon ? (size_t)(colon - v) : n;
    }
    if (h == 0 || h >= size) return -1;
    for (size_t i = 0; i < h; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c <= ' ' || c >= 0x7f || c == '/' || c == '@' || c == '?' || c == '#') return -1;
        host[i] = (char)tolower(c);
    }
    host[h] = '\0';
    *port = 0;
    if (h == n) return 0;
    if (v[h] != ':' || h + 1 == n || n - h - 1 > 5) return -1;
    int p = 0;
    for (size_t i = h + 1; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') return -1;
        p = p * 10 + (v[i] - '0');
    }
    if (p < 1 || p > 65535) return -1;
    *port = p;
    return 0;
}

/* The address of an IP literal host ("127.0.0.1", "[::1]"): 4 or 16 bytes
 * in out, or 0 when it is a name. */
static int s_host_ip(const char *host, unsigned char out[16]) {
    if (inet_pton(AF_INET, host, out) == 1) return 4;
    size_t n = strlen(host);
    if (n < 3 || host[0] != '[' || host[n - 1] != ']' || n - 2 >= INET6_ADDRSTRLEN) return 0;
    char bare[INET6_ADDRSTRLEN];
    memcpy(bare, host + 1, n - 2);
    bare[n - 2] = '\0';
    return inet_pton(AF_INET6, bare, out) == 1 ? 16 : 0;
}

/* The same host: equal names, or IP literals of the same address. */
static int s_host_equal(const char *a, const char *b) {
    if (!strcmp(a, b)) return 1;
    unsigned char x[16], y[16];
    int nx = s_host_ip(a, x), ny = s_host_ip(b, y);
    return nx && nx == ny && !memcmp(x, y, (size_t)nx);
}

static int s_add_host(nr_gateway_t *gw, const char *host, int port) {
    if (gw->n_hosts == gw->cap_hosts) {
        size_t cap = gw->cap_hosts ? gw->cap_hosts * 2 : 8;
        nr_gw_host_t *p = realloc(gw->hosts, cap * sizeof *p);
        if (!p) return NR_ENOMEM;
        gw->hosts = p;
        gw->cap_hosts = cap;
    }
    nr_gw_host_t *h = &gw->hosts[gw->n_hosts++];
    snprintf(h->host, sizeof h->host, "%s", host);
    h->port = port;
    return 0;
}

/* Calls fn for each comma-separated entry of list (trimmed, non-empty). */
static int s_each(const char *list, int (*fn)(void *, const char *, size_t), void *cls) {
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *v = p;
        size_t k = n;
        while (k && (*v == ' ' || *v == '\t')) v++, k--;
        while (k && (v[k - 1] == ' ' || v[k - 1] == '\t')) k--;
        if (k) {
            int rc = fn(cls, v, k);
            if (rc) return rc;
        }
        p += n;
        if (*p == ',') p++;
    }
    return 0;
}

typedef struct {
    nr_gateway_t *gw; /* NULL: only check */
    char *err;
    size_t errlen;
} s_parse_t;

static int s_host_entry(void *cls, const char *v, size_t n) {
    s_parse_t *ps = cls;
    if (n == 1 && v[0] == '*') {
        if (ps->gw) ps->gw->any_host = 1;
        return 0;
    }
    char host[NR_GW_HOST_MAX];
    int port;
    if (s_split_host(v, n, host, sizeof host, &port))
        return nr_seterr(ps->err, ps->errlen, NR_EINVAL,
                         "allowed-hosts: '%.*s' is not a host name, host:port or [IPv6]:port", (int)n, v);
    return ps->gw ? s_add_host(ps->gw, host, port) : 0;
}

static int s_origin_entry(void *cls, const char *v, size_t n) {
    s_parse_t *ps = cls;
    while (n > 1 && v[n - 1] == '/') n--;
    const char *sep = n > 3 ? strstr(v, "://") : NULL;
    int star = n == 1 && v[0] == '*', null = n == 4 && !strncasecmp(v, "null", 4);
    char host[NR_GW_HOST_MAX];
    int port;
    if (!star && !null &&
        (!sep || (size_t)(sep - v) + 3 >= n ||
         s_split_host(sep + 3, n - (size_t)(sep - v) - 3, host, sizeof host, &port)))
        return nr_seterr(ps->err, ps->errlen, NR_EINVAL,
                         "allowed-origins: '%.*s' is not an origin (scheme://host[:port], or *)", (int)n, v);
    if (n >= NR_GW_ORIGIN_MAX)
        return nr_seterr(ps->err, ps->errlen, NR_EINVAL, "allowed-origins: '%.*s' is too long", (int)n, v);
    if (!ps->gw) return 0;
    nr_gateway_t *gw = ps->gw;
    if (star) {
        gw->any_origin = 1;
        return 0;
    }
    if (gw->n_origins == gw->cap_origins) {
        size_t cap = gw->cap_origins ? gw->cap_origins * 2 : 4;
        char(*p)[NR_GW_ORIGIN_MAX] = realloc(gw->origins, cap * sizeof *p);
        if (!p) return NR_ENOMEM;
        gw->origins = p;
        gw->cap_origins = cap;
    }
    char *o = gw->origins[gw->n_origins++];
    for (size_t i = 0; i < n; i++) o[i] = (char)tolower((unsigned char)v[i]);
    o[n] = '\0';
    return 0;
}

int nr_gw_guard_check(const nr_gateway_params_t *p, char *err, size_t errlen) {
    s_parse_t ps = {NULL, err, errlen};
    int rc = s_each(p->allowed_hosts, s_host_entry, &ps);
    return rc ? rc : s_each(p->allowed_origins, s_origin_entry, &ps);
}

int nr_gw_guard_init(nr_gateway_t *gw, char *err, size_t errlen) {
    s_parse_t ps = {gw, err, errlen};
    const nr_gateway_params_t *p = &gw->params;
    int rc = s_each(p->allowed_origins, s_origin_entry, &ps);
    if (rc) return rc;
    if (p->allowed_hosts[0]) return s_each(p->allowed_hosts, s_host_entry, &ps);
    /* The defaults: the loopback names and the listen address, with the
     * port; any IP address with the port when listening on all of them (an
     * address cannot be rebound: only a name the attacker owns can). */
    static const char *const loopback[] = {"localhost", "127.0.0.1", "[::1]"};
    for (size_t i = 0; i < sizeof loopback / sizeof loopback[0]; i++)
        if ((rc = s_add_host(gw, loopback[i], gw->port))) return rc;
    unsigned char any[16];
    if (!strcmp(p->listen_address, "0.0.0.0") || !strcmp(p->listen_address, "::")) {
        gw->any_ip_host = 1;
    } else if (inet_pton(AF_INET, p->listen_address, any) == 1) {
        rc = s_add_host(gw, p->listen_address, gw->port);
    } else {
        char v6[NR_GW_HOST_MAX];
        snprintf(v6, sizeof v6, "[%s]", p->listen_address);
        rc = s_add_host(gw, v6, gw->port);
    }
    return rc;
}

void nr_gw_guard_destroy(nr_gateway_t *gw) {
    free(gw->hosts);
    free(gw->origins);
    gw->hosts = NULL;
    gw->origins = NULL;
    gw->n_hosts = gw->n_origins = gw->cap_hosts = gw->cap_origins = 0;
}

/* 1 when the Host header value names this gateway. */
static int s_host_allowed(const nr_gateway_t *gw, const char *value) {
    if (gw->any_host) return 1;
    char host[NR_GW_HOST_MAX];
    int port;
    if (s_split_host(value, strlen(value), host, sizeof host, &port)) return 0;
    /* A Host without a port (the default port, or a client that leaves it
     * out) is taken for any port of an allowed name: the name is what a
     * rebinding page cannot fake. */
    unsigned char ip[16];
    if (gw->any_ip_host && (!port || port == gw->port) && s_host_ip(host, ip)) return 1;
    for (size_t i = 0; i < gw->n_hosts; i++)
        if (s_host_equal(gw->hosts[i].host, host) &&
            (!port || !gw->hosts[i].port || gw->hosts[i].port == port))
            return 1;
    return 0;
}

/* 1 when the origin is one listed in allowed-origins. */
static int s_origin_listed(const nr_gateway_t *gw, const char *origin) {
    if (gw->any_origin) return 1;
    size_t n = strlen(origin);
    while (n > 1 && origin[n - 1] == '/') n--;
    for (size_t i = 0; i < gw->n_origins; i++)
        if (strlen(gw->origins[i]) == n && !strncasecmp(gw->origins[i], origin, n)) return 1;
    return 0;
}

/* 1 when the origin is the gateway's own: its host[:port] is the Host. */
static int s_origin_same(const char *origin, const char *host) {
    const char *sep = strstr(origin, "://");
    if (!sep || !host) return 0;
    const char *a = sep + 3;
    size_t n = strlen(a);
    while (n && a[n - 1] == '/') n--;
    return n && strlen(host) == n && !strncasecmp(a, host, n);
}

/* ---- framing ---- */

typedef struct {
    int content_length, transfer_encoding, host, origin;
} s_count_t;

static enum MHD_Result s_count(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    (void)kind;
    (void)value;
    s_count_t *c = cls;
    if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH)) c->content_length++;
    else if (!strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING)) c->transfer_encoding++;
    else if (!strcasecmp(key, MHD_HTTP_HEADER_HOST)) c->host++;
    else if (!strcasecmp(key, "Origin")) c->origin++;
    return MHD_YES;
}

int nr_gw_guard(struct MHD_Connection *conn, nr_gw_req_t *req, enum MHD_Result *ret) {
    nr_gateway_t *gw = req->gw;
    /* Framing first: every header as sent, not the first of each name that
     * MHD_lookup_connection_value gives. */
    s_count_t c = {0, 0, 0, 0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, s_count, &c);
    const char *twice = c.content_length > 1 ? MHD_HTTP_HEADER_CONTENT_LENGTH
                        : c.host > 1           ? MHD_HTTP_HEADER_HOST
                        : c.origin > 1         ? "Origin"
                                               : NULL;
    if (twice) {
        *ret = nr_gw_send_error(conn, req, MHD_HTTP_BAD_REQUEST, NR_EINVAL, NULL,
                                "the request has more than one %s header: send one", twice);
        return 1;
    }
    if (c.content_length && c.transfer_encoding) {
        *ret = nr_gw_send_error(conn, req, MHD_HTTP_BAD_REQUEST, NR_EINVAL, NULL,
                                "the request has both Content-Length and Transfer-Encoding: send one");
        return 1;
    }
    if (req->nul_in_target) {
        *ret = nr_gw_send_error(conn, req, MHD_HTTP_BAD_REQUEST, NR_EINVAL, NULL,
                                "the request target holds %%00 (a NUL byte): refused");
        return 1;
    }
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    /* No Host at all is HTTP/1.0 (libmicrohttpd refuses a 1.1 request
     * without one): not a browser, so not a rebinding page. */
    if (host && !s_host_allowed(gw, host)) {
        *ret = nr_gw_send_error(conn, req, MHD_HTTP_FORBIDDEN, NR_EINVAL, NULL,
                                "Host '%.200s' is not a name of this gateway (setting allowed-hosts)",
                                host);
        return 1;
    }
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    int listed = origin && s_origin_listed(gw, origin);
    if (origin && !listed && !s_origin_same(origin, host)) {
        *ret = nr_gw_send_error(conn, req, MHD_HTTP_FORBIDDEN, NR_EINVAL, NULL,
                                "cross-origin request from '%.200s' refused (setting allowed-origins)",
                                origin);
        return 1;
    }
    const char *site = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-Fetch-Site");
    int safe = req->method == NR_GW_M_GET || req->method == NR_GW_M_HEAD;
    if (!safe && !listed && site && !strcasecmp(site, "cross-site")) {
        *ret = nr_gw_send_error(conn, req, MHD_HTTP_FORBIDDEN, NR_EINVAL, NULL,
                                "cross-site %s refused (Sec-Fetch-Site: cross-site; setting "
                                "allowed-origins)",
                                req->method_text);
        return 1;
    }
    return 0;
}
