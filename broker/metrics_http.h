/* A minimal HTTP/1.1 listener for Prometheus scrapes, served from the
 * broker's own poll loop: non-blocking sockets, no threads. It answers
 * GET or HEAD of /metrics (200, the rendered text) and / (a short pointer
 * to /metrics); any other path is 404, any other method 405. Every answer
 * closes the connection. At most NR_METRICS_HTTP_CONNS connections at once
 * (more are closed at accept); a request must arrive whole, within 8 KiB
 * and NR_METRICS_HTTP_TIMEOUT_MS, or the connection is dropped. */
#ifndef NR_BROKER_METRICS_HTTP_H
#define NR_BROKER_METRICS_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define NR_METRICS_HTTP_CONNS 16
#define NR_METRICS_HTTP_TIMEOUT_MS 5000

/* Called for each /metrics request: returns a malloc'd body (the listener
 * frees it) and its length, or NULL (answered 500). */
typedef char *(*nr_metrics_http_render_fn)(void *ctx, size_t *len);

typedef struct nr_metrics_http nr_metrics_http_t;

/* Listens on "host:port" ("127.0.0.1:9464", "[::1]:9464", "0.0.0.0:9464";
 * port 0 picks a free one). Returns NULL with the reason in err. */
nr_metrics_http_t *nr_metrics_http_new(const char *address, nr_metrics_http_render_fn render,
                                       void *ctx, char *err, size_t errlen);
void nr_metrics_http_destroy(nr_metrics_http_t **p);
/* The port it listens on (useful after port 0). */
int nr_metrics_http_port(const nr_metrics_http_t *self);

/* File descriptors to poll and, for each, whether it waits to write (1) or
 * to read (0). Returns how many were written (at most max). */
size_t nr_metrics_http_fds(const nr_metrics_http_t *self, int *fds, int *want_write, size_t max);
/* Accepts, reads, answers and closes what is ready; never blocks. Call it
 * when a polled fd is ready, and at least every second while
 * nr_metrics_http_busy() (for the timeouts). */
void nr_metrics_http_service(nr_metrics_http_t *self, int64_t now_ms);
/* 1 when connections are open. */
int nr_metrics_http_busy(const nr_metrics_http_t *self);
/* Requests answered with 200 so far (for tests and logs). */
uint64_t nr_metrics_http_served(const nr_metrics_http_t *self);

#endif
