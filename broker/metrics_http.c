/* Minimal non-blocking HTTP listener for /metrics (see metrics_http.h). */
#include "broker/metrics_http.h"
#include "common/metrics.h"
#include "common/error.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#define S_REQUEST_MAX 8192

typedef struct {
    int fd;            /* -1: free slot */
    int64_t since_ms;  /* accepted at */
    char req[S_REQUEST_MAX + 1];
    size_t req_len;
    char *out;         /* response being written (NULL while reading) */
    size_t out_len, out_off;
} s_conn_t;

struct nr_metrics_http {
    int fd;
    int port;
    nr_metrics_http_render_fn render;
    void *ctx;
    s_conn_t conns[NR_METRICS_HTTP_CONNS];
    uint64_t served;
};

static int s_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL, 0);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Splits "host:port" / "[v6]:port" into host and port strings. */
static int s_split(const char *spec, char *host, size_t hsize, char *port, size_t psize) {
    const char *colon;
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (!close || close[1] != ':') return NR_EINVAL;
        if ((size_t)(close - spec - 1) >= hsize) return NR_EINVAL;
        memcpy(host, spec + 1, (size_t)(close - spec - 1));
        host[close - spec - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(spec, ':');
        if (!colon || (size_t)(colon - spec) >= hsize) return NR_EINVAL;
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
    }
    const char *p = colon + 1;
    if (!*p || strlen(p) >= psize) return NR_EINVAL;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9') return NR_EINVAL;
    if (strtol(p, NULL, 10) > 65535) return NR_EINVAL;
    snprintf(port, psize, "%s", p);
    return 0;
}

nr_metrics_http_t *nr_metrics_http_new(const char *address, nr_metrics_http_render_fn render,
                                       void *ctx, char *err, size_t errlen) {
    char host[256], port[16];
    if (!address || !render || s_split(address, host, sizeof host, port, sizeof port)) {
        nr_seterr(err, errlen, NR_EINVAL, "metrics-listen '%s': expected host:port",
                  address ? address : "");
        return NULL;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (gai) {
        nr_seterr(err, errlen, NR_EINVAL, "metrics-listen '%s': %s", address, gai_strerror(gai));
        return NULL;
    }
    nr_metrics_http_t *self = calloc(1, sizeof *self);
    if (!self) {
        freeaddrinfo(res);
        nr_seterr(err, errlen, NR_ENOMEM, "metrics listener");
        return NULL;
    }
    self->fd = -1;
    for (int i = 0; i < NR_METRICS_HTTP_CONNS; i++) self->conns[i].fd = -1;
    self->render = render;
    self->ctx = ctx;
    int saved = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 16) || s_nonblock(fd)) {
            saved = errno;
            close(fd);
            continue;
        }
        self->fd = fd;
        break;
    }
    freeaddrinfo(res);
    if (self->fd < 0) {
        nr_seterr(err, errlen, NR_EIO, "metrics-listen '%s': %s", address,
                  strerror(saved ? saved : EADDRNOTAVAIL));
        free(self);
        return NULL;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (!getsockname(self->fd, (struct sockaddr *)&ss, &sl))
        self->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                              : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return self;
}

static void s_close(s_conn_t *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    free(c->out);
    c->out = NULL;
    c->req_len = c->out_len = c->out_off = 0;
}

void nr_metrics_http_destroy(nr_metrics_http_t **p) {
    if (!p || !*p) return;
    nr_metrics_http_t *self = *p;
    for (int i = 0; i < NR_METRICS_HTTP_CONNS; i++) s_close(&self->conns[i]);
    if (self->fd >= 0) close(self->fd);
    free(self);
    *p = NULL;
}

int nr_metrics_http_port(const nr_metrics_http_t *self) { return self ? self->port : 0; }

uint64_t nr_metrics_http_served(const nr_metrics_http_t *self) { return self ? self->served : 0; }

int nr_metrics_http_busy(const nr_metrics_http_t *self) {
    for (int i = 0; self && i < NR_METRICS_HTTP_CONNS; i++)
        if (self->conns[i].fd >= 0) return 1;
    return 0;
}

size_t nr_metrics_http_fds(const nr_metrics_http_t *self, int *fds, int *want_write, size_t max) {
    size_t n = 0;
    if (!self || self->fd < 0) return 0;
    if (n < max) {
        fds[n] = self->fd;
        want_write[n++] = 0;
    }
    for (int i = 0; i < NR_METRICS_HTTP_CONNS && n < max; i++) {
        if (self->conns[i].fd < 0) continue;
        fds[n] = self->conns[i].fd;
        want_write[n++] = self->conns[i].out != NULL;
    }
    return n;
}

/* Prepares the response: status line, headers, body (body may be NULL). */
static void s_respond(s_conn_t *c, int status, const char *reason, const char *type,
                      const char *body, size_t body_len, int head, const char *extra) {
    char hdr[512];
    int n = snprintf(hdr, sizeof hdr,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n",
                     status, reason, type, body_len, extra ? extra : "");
    if (n < 0 || (size_t)n >= sizeof hdr) n = 0;
    size_t total = (size_t)n + (head ? 0 : body_len);
    c->out = malloc(total ? total : 1);
    if (!c->out) {
        s_close(c);
        return;
    }
    memcpy(c->out, hdr, (size_t)n);
    if (!head && body_len) memcpy(c->out + n, body, body_len);
    c->out_len = total;
    c->out_off = 0;
}

/* A whole request head arrived: decide the answer. */
static void s_handle(nr_metrics_http_t *self, s_conn_t *c) {
    static const char text[] = "text/plain; charset=utf-8";
    char method[16] = "", target[1024] = "";
    const char *sp1 = strchr(c->req, ' ');
    const char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    const char *eol = strstr(c->req, "\r\n");
    if (!eol) eol = strchr(c->req, '\n');
    if (!sp1 || !sp2 || !eol || sp2 > eol || (size_t)(sp1 - c->req) >= sizeof method ||
        (size_t)(sp2 - sp1 - 1) >= sizeof target || strncmp(sp2 + 1, "HTTP/1.", 7)) {
        static const char msg[] = "bad request\n";
        s_respond(c, 400, "Bad Request", text, msg, sizeof msg - 1, 0, NULL);
        return;
    }
    memcpy(method, c->req, (size_t)(sp1 - c->req));
    memcpy(target, sp1 + 1, (size_t)(sp2 - sp1 - 1));
    char *q = strchr(target, '?');
    if (q) *q = '\0';
    int head = !strcmp(method, "HEAD");
    if (!head && strcmp(method, "GET")) {
        static const char msg[] = "only GET and HEAD\n";
        s_respond(c, 405, "Method Not Allowed", text, msg, sizeof msg - 1, 0,
                  "Allow: GET, HEAD\r\n");
        return;
    }
    if (!strcmp(target, "/metrics")) {
        size_t len = 0;
        char *body = self->render(self->ctx, &len);
        if (!body) {
            static const char msg[] = "cannot render metrics\n";
            s_respond(c, 500, "Internal Server Error", text, msg, sizeof msg - 1, head, NULL);
            return;
        }
        s_respond(c, 200, "OK", NR_METRICS_CONTENT_TYPE, body, len, head, NULL);
        free(body);
        self->served++;
        return;
    }
    if (!strcmp(target, "/")) {
        static const char msg[] = "narrator-broker: metrics at /metrics\n";
        s_respond(c, 200, "OK", text, msg, sizeof msg - 1, head, NULL);
        return;
    }
    static const char msg[] = "not found; metrics are at /metrics\n";
    s_respond(c, 404, "Not Found", text, msg, sizeof msg - 1, head, NULL);
}

static void s_service_conn(nr_metrics_http_t *self, s_conn_t *c, int64_t now) {
    if (!c->out) {
        for (;;) {
            ssize_t n = recv(c->fd, c->req + c->req_len, S_REQUEST_MAX - c->req_len, 0);
            if (n > 0) {
                c->req_len += (size_t)n;
                c->req[c->req_len] = '\0';
                if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n")) {
                    s_handle(self, c);
                    break;
                }
                if (c->req_len >= S_REQUEST_MAX) {
                    static const char msg[] = "request too large\n";
                    s_respond(c, 431, "Request Header Fields Too Large",
                              "text/plain; charset=utf-8", msg, sizeof msg - 1, 0, NULL);
                    break;
                }
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
            s_close(c); /* peer closed before a whole request, or an error */
            return;
        }
    }
    if (c->fd >= 0 && c->out) {
        while (c->out_off < c->out_len) {
            ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
            if (n > 0) {
                c->out_off += (size_t)n;
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
            s_close(c);
            return;
        }
        if (c->out_off >= c->out_len) {
            shutdown(c->fd, SHUT_WR);
            s_close(c);
            return;
        }
    }
    if (c->fd >= 0 && now - c->since_ms > NR_METRICS_HTTP_TIMEOUT_MS) {
        nr_log(NR_LOG_DEBUG, "metrics: connection timed out");
        s_close(c);
    }
}

void nr_metrics_http_service(nr_metrics_http_t *self, int64_t now_ms) {
    if (!self || self->fd < 0) return;
    for (int k = 0; k < NR_METRICS_HTTP_CONNS * 2; k++) {
        int fd = accept4(self->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                nr_log(NR_LOG_DEBUG, "metrics: accept: %s", strerror(errno));
            break;
        }
        s_conn_t *slot = NULL;
        for (int i = 0; i < NR_METRICS_HTTP_CONNS && !slot; i++)
            if (self->conns[i].fd < 0) slot = &self->conns[i];
        if (!slot) {
            close(fd); /* too many at once */
            continue;
        }
        slot->fd = fd;
        slot->since_ms = now_ms;
        slot->req_len = 0;
    }
    for (int i = 0; i < NR_METRICS_HTTP_CONNS; i++)
        if (self->conns[i].fd >= 0) s_service_conn(self, &self->conns[i], now_ms);
}
