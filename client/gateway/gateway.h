/* narrator-gateway: an HTTP/JSON front end to narrator-broker.
 *
 * The gateway is a client of the broker like `narrate`: it talks to it only
 * through nr_client (client/client.h), never to Redis. It serves the JSON
 * API documented in client/gateway/API.md, the static web page from a
 * folder, health and readiness checks and Prometheus metrics.
 *
 * Threads: libmicrohttpd runs a pool of `threads` internal polling threads
 * (MHD_OPTION_THREAD_POOL_SIZE); each connection lives on one of them. An
 * nr_client is not thread-safe, so every pool thread makes its own on first
 * use (one DEALER socket per thread); a request blocked on the broker only
 * holds up the connections of its own thread. The recent-jobs ring and the
 * metrics are shared and guarded by one mutex each. */
#ifndef NR_GATEWAY_H
#define NR_GATEWAY_H

#include <stddef.h>

typedef struct nr_gateway_t nr_gateway_t;

#define NR_GATEWAY_ADDRESS_MAX 64
#define NR_GATEWAY_ENDPOINT_MAX 256
#define NR_GATEWAY_PATH_MAX 1024

typedef struct {
    char listen_address[NR_GATEWAY_ADDRESS_MAX]; /* numeric IPv4 or IPv6 address */
    int port;                                    /* 0: any free port (see nr_gateway_port) */
    char broker_endpoint[NR_GATEWAY_ENDPOINT_MAX];
    size_t max_body_bytes;      /* largest request body; checked while it streams in */
    int request_timeout_ms;     /* one broker request */
    int connection_timeout_s;   /* idle HTTP connection */
    char static_dir[NR_GATEWAY_PATH_MAX]; /* web page folder; "" serves none */
    int threads;                /* MHD pool threads, each with its own nr_client */
    int max_connections;
    int recent_jobs;            /* size of the GET /v1/jobs ring */
} nr_gateway_params_t;

/* Defaults: 127.0.0.1:8080, broker tcp://127.0.0.1:5555, 20 MiB bodies,
 * 5000 ms broker timeout, 30 s idle connections, no static folder,
 * 4 threads, 256 connections, 200 recent jobs. */
void nr_gateway_default_params(nr_gateway_params_t *params);

/* Checks the params, binds the listening socket and starts serving in
 * background threads. Returns NULL with the reason in err (bad address,
 * port in use, bad params, no memory). The broker is not contacted here:
 * a gateway starts, and answers /healthz, while the broker is down. */
nr_gateway_t *nr_gateway_new(const nr_gateway_params_t *params, char *err, size_t errlen);
/* Stops accepting, closes every connection, joins the threads and frees
 * every per-thread client; safe to call twice. */
void nr_gateway_destroy(nr_gateway_t **self_p);

/* The TCP port the gateway listens on (the chosen one when params.port
 * was 0), or 0. */
int nr_gateway_port(const nr_gateway_t *self);

#endif
