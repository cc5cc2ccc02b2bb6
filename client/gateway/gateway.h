/* narrator-gateway: an HTTP/JSON front end to narrator-broker.
 *
 * The gateway is a client of the broker like `narrate`: it talks to it only
 * through nr_client (client/client.h), never to Redis (probe.c only
 * watches a ZeroMQ handshake to explain a refusal; it sends nothing). With
 * curve-* settings every link to the broker is CURVE. It serves the JSON
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
#define NR_GATEWAY_KEY_MAX 512 /* a CURVE setting: Z85 key text or a file path */
#define NR_GATEWAY_LIST_MAX 1024 /* a comma-separated list setting */

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
    /* CURVE (proto/secure.h), as narrate's settings of the same names: the
     * broker's public key (Z85 text or a .pub file) and this gateway's
     * NAME.key from narrator-keygen. Both "" = plain text; one without the
     * other is an error. Every per-thread nr_client uses them. */
    char curve_server_key[NR_GATEWAY_KEY_MAX];
    char curve_secret_key_file[NR_GATEWAY_KEY_MAX];
    /* Per HTTP client (its IP address) token bucket on POSTs: client_rate
     * new jobs per second after a burst of client_burst; 0 = no limit.
     * Over it: 429 with Retry-After, before the body is read. */
    int client_rate;
    int client_burst;
    /* Who may talk to the gateway from a browser (DNS rebinding, cross-site
     * requests). allowed_hosts: Host header values, comma-separated
     * ("name" any port, "name:port" that port, "*" any host); "" is the
     * default: localhost, 127.0.0.1, [::1] and the listen address, each
     * with the port, and any IP address with the port when listening on
     * 0.0.0.0 or ::. allowed_origins: Origin values ("https://app.example")
     * taken besides the gateway's own (an Origin whose host and port are
     * the request's Host); "*" any. Refused: 403. */
    char allowed_hosts[NR_GATEWAY_LIST_MAX];
    char allowed_origins[NR_GATEWAY_LIST_MAX];
    /* The whole request head (request line and headers) must arrive within
     * this many seconds of the connection's start or of the previous
     * answer on it, however it trickles in; past it the connection is
     * closed. 0: no deadline (only connection_timeout_s, which each byte
     * resets). */
    int head_timeout_s;
    /* Request body bytes held in memory by all connections together. A
     * request whose declared body does not fit gets 503 busy with
     * Retry-After before its body is read (a chunked one when it outgrows
     * what is left). At least max_body_bytes. */
    size_t max_buffered_bytes;
} nr_gateway_params_t;

/* Defaults: 127.0.0.1:8080, broker tcp://127.0.0.1:5555, 20 MiB bodies,
 * 64 MiB buffered in all, 5000 ms broker timeout, 30 s idle connections,
 * 10 s for a request head, no static folder, 4 threads, 256 connections,
 * 200 recent jobs, no rate limit (burst 20 when one is set), the default
 * hosts and no other origins. */
void nr_gateway_default_params(nr_gateway_params_t *params);

/* Checks the params without starting anything: ranges, the listen
 * address, the static folder, and the CURVE settings (both or neither; the
 * key file readable, mode 0600 and a valid pair; the broker's key valid;
 * this libzmq able to do CURVE). Returns 0 or NR_EINVAL / NR_EUNSUPPORTED
 * with the reason in err. nr_gateway_new calls it too. */
int nr_gateway_check_params(const nr_gateway_params_t *params, char *err, size_t errlen);

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

/* Why a broker request failed with NR_ECONNECT, found by connecting one
 * extra ZeroMQ socket to the broker (with the same CURVE settings) and
 * watching its handshake; nothing is sent over it. */
typedef enum {
    NR_GATEWAY_PROBE_UNREACHABLE = 0, /* no TCP connection, or no answer in time */
    NR_GATEWAY_PROBE_OK,              /* the handshake succeeded (the failure was passing) */
    NR_GATEWAY_PROBE_REFUSED,         /* CURVE: the broker's ZAP handler refused this key */
    NR_GATEWAY_PROBE_MECHANISM,       /* one side uses CURVE and the other does not */
    NR_GATEWAY_PROBE_HANDSHAKE,       /* the broker hung up mid-handshake (wrong server key?) */
} nr_gateway_probe_t;

/* Probes `endpoint` for up to timeout_ms, with CURVE when both keys are
 * set. Returns the outcome; `detail` gets the ZAP status code (REFUSED)
 * or the libzmq error value, else 0. Never fails: trouble making the
 * socket reads as UNREACHABLE. */
nr_gateway_probe_t nr_gateway_probe(const char *endpoint, const char *curve_server_key,
                                    const char *curve_secret_key_file, int timeout_ms, int *detail);

#endif
