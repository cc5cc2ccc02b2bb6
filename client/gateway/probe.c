/* The gateway's handshake probe: when a broker request fails with
 * NR_ECONNECT ("no live connection"), says whether the broker is down or
 * up but refusing this gateway (a CURVE key not in its allow-list, CURVE on
 * one side only, a wrong server key). One DEALER socket in its own ZeroMQ
 * context connects with the gateway's CURVE settings (through
 * proto/secure.c, as nr_client does) and a socket monitor reports the
 * handshake's outcome; no message is ever sent on it. */
#include "client/gateway/gateway.h"
#include "common/clock.h"
#include "proto/secure.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

/* Reads one monitor event (two frames: event id + value, then the
 * address). 0, or -1 when none could be read. */
static int s_event(void *monitor, uint16_t *event, uint32_t *value) {
    uint8_t head[6];
    int n = zmq_recv(monitor, head, sizeof head, 0);
    if (n < (int)sizeof head) return -1;
    memcpy(event, head, 2);
    memcpy(value, head + 2, 4);
    int more = 0;
    size_t size = sizeof more;
    while (zmq_getsockopt(monitor, ZMQ_RCVMORE, &more, &size) == 0 && more) {
        char address[256];
        if (zmq_recv(monitor, address, sizeof address, 0) < 0) break;
    }
    return 0;
}

nr_gateway_probe_t nr_gateway_probe(const char *endpoint, const char *curve_server_key,
                                    const char *curve_secret_key_file, int timeout_ms, int *detail) {
    if (detail) *detail = 0;
    if (!endpoint || !*endpoint) return NR_GATEWAY_PROBE_UNREACHABLE;
    nr_gateway_probe_t outcome = NR_GATEWAY_PROBE_UNREACHABLE;
    void *ctx = zmq_ctx_new(), *sock = NULL, *monitor = NULL;
    if (!ctx) return outcome;
    sock = zmq_socket(ctx, ZMQ_DEALER);
    monitor = zmq_socket(ctx, ZMQ_PAIR);
    if (!sock || !monitor) goto done;
    int zero = 0, ivl = 100;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(monitor, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    if (curve_server_key && *curve_server_key && curve_secret_key_file && *curve_secret_key_file) {
        nr_secure_settings_t sec;
        memset(&sec, 0, sizeof sec);
        snprintf(sec.server_key, sizeof sec.server_key, "%s", curve_server_key);
        snprintf(sec.secret_key_file, sizeof sec.secret_key_file, "%s", curve_secret_key_file);
        char err[256];
        if (nr_secure_client(sock, &sec, err, sizeof err) != 0) goto done;
    }
    char address[64];
    snprintf(address, sizeof address, "inproc://nr-gateway-probe-%p", (void *)sock);
    if (zmq_socket_monitor(sock, address, ZMQ_EVENT_ALL) != 0 || zmq_connect(monitor, address) != 0 ||
        zmq_connect(sock, endpoint) != 0)
        goto done;
    int connected = 0;
    long long deadline = nr_clock_mono_ms() + (timeout_ms > 0 ? timeout_ms : 1);
    for (;;) {
        long long left = deadline - nr_clock_mono_ms();
        if (left <= 0) break;
        zmq_pollitem_t item = {monitor, 0, ZMQ_POLLIN, 0};
        int n = zmq_poll(&item, 1, (long)left);
        if (n < 0) continue; /* EINTR */
        if (n == 0) break;
        uint16_t event = 0;
        uint32_t value = 0;
        if (s_event(monitor, &event, &value) != 0) break;
        if (event == ZMQ_EVENT_CONNECTED) {
            connected = 1;
        } else if (event == ZMQ_EVENT_CONNECT_RETRIED && !connected) {
            break; /* connection refused: nobody listens there */
        } else if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            outcome = NR_GATEWAY_PROBE_OK;
            break;
        } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
            outcome = NR_GATEWAY_PROBE_REFUSED;
            if (detail) *detail = (int)value;
            break;
        } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
            outcome = value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH ? NR_GATEWAY_PROBE_MECHANISM
                                                                          : NR_GATEWAY_PROBE_HANDSHAKE;
            if (detail) *detail = (int)value;
            break;
        } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL ||
                   (event == ZMQ_EVENT_DISCONNECTED && connected)) {
            outcome = NR_GATEWAY_PROBE_HANDSHAKE;
            if (detail) *detail = (int)value;
            break;
        }
    }
done:
    if (sock) {
        zmq_socket_monitor(sock, NULL, 0);
        zmq_close(sock);
    }
    if (monitor) zmq_close(monitor);
    zmq_ctx_term(ctx);
    return outcome;
}
