/* Connections and the deadline for a request head (head_timeout_s).
 *
 * libmicrohttpd's connection timeout is an idle timeout: every byte resets
 * it, so a client that trickles one header byte a second holds its slot
 * for ever. Here every connection is tracked from libmicrohttpd's
 * NOTIFY_CONNECTION (started / closed) with the time its current request
 * head began: the connection's start, then the end of each answer on it.
 * When the head is complete (the first s_access call) the clock stops. A
 * reaper thread shuts down the socket of a connection whose head is past
 * the deadline; libmicrohttpd then sees the end of the stream and closes
 * it in its own thread. The socket stays valid while it is in the list:
 * libmicrohttpd calls NOTIFY_CONNECTION closed (which unlinks it under the
 * same lock) before it closes the socket. */
#include "client/gateway/internal.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

struct nr_gw_conn_t {
    nr_gw_conn_t *prev, *next;
    int fd;
    int64_t head_since_ms; /* monotonic; when the current request head began */
    int in_request;        /* the head is complete: no deadline until the answer ends */
    int shut;              /* past the deadline: shut down, waiting for libmicrohttpd */
};

#define S_REAP_MIN_MS 100
#define S_REAP_MAX_MS 1000

void nr_gw_conn_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                       enum MHD_ConnectionNotificationCode code) {
    nr_gateway_t *gw = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        nr_gw_conn_t *c = info ? calloc(1, sizeof *c) : NULL;
        *socket_context = c;
        if (!c) return; /* untracked: only the idle timeout applies */
        c->fd = info->connect_fd;
        c->head_since_ms = nr_clock_mono_ms();
        pthread_mutex_lock(&gw->conns_lock);
        c->next = gw->conns;
        if (gw->conns) gw->conns->prev = c;
        gw->conns = c;
        pthread_mutex_unlock(&gw->conns_lock);
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        nr_gw_conn_t *c = *socket_context;
        if (!c) return;
        pthread_mutex_lock(&gw->conns_lock);
        if (c->prev) c->prev->next = c->next;
        else gw->conns = c->next;
        if (c->next) c->next->prev = c->prev;
        pthread_mutex_unlock(&gw->conns_lock);
        free(c);
        *socket_context = NULL;
    }
}

void nr_gw_conn_in_request(nr_gateway_t *gw, struct MHD_Connection *conn, int in_request) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    nr_gw_conn_t *c = info ? info->socket_context : NULL;
    if (!c) return;
    pthread_mutex_lock(&gw->conns_lock);
    c->in_request = in_request;
    if (!in_request) c->head_since_ms = nr_clock_mono_ms();
    pthread_mutex_unlock(&gw->conns_lock);
}

/* Shuts down every connection whose head is past the deadline. */
static void s_reap(nr_gateway_t *gw, int64_t now) {
    int64_t limit = (int64_t)gw->params.head_timeout_s * 1000;
    unsigned long long n = 0;
    pthread_mutex_lock(&gw->conns_lock);
    for (nr_gw_conn_t *c = gw->conns; c; c = c->next) {
        if (c->in_request || c->shut || now - c->head_since_ms < limit) continue;
        shutdown(c->fd, SHUT_RDWR);
        c->shut = 1;
        n++;
    }
    gw->head_timeouts += n;
    pthread_mutex_unlock(&gw->conns_lock);
    if (n)
        nr_log(NR_LOG_DEBUG, "closed %llu connection%s whose request head took over %d s (setting "
               "head-timeout-s)", n, n == 1 ? "" : "s", gw->params.head_timeout_s);
}

static void *s_reaper(void *arg) {
    nr_gateway_t *gw = arg;
    int64_t every = (int64_t)gw->params.head_timeout_s * 1000 / 8;
    if (every < S_REAP_MIN_MS) every = S_REAP_MIN_MS;
    if (every > S_REAP_MAX_MS) every = S_REAP_MAX_MS;
    pthread_mutex_lock(&gw->conns_lock);
    while (!gw->reaper_stop) {
        /* nr_clock_mono_ns is CLOCK_MONOTONIC, the condition's clock. */
        int64_t at = nr_clock_mono_ns() + every * 1000000;
        struct timespec until = {(time_t)(at / 1000000000), (long)(at % 1000000000)};
        int rc = pthread_cond_timedwait(&gw->reaper_cond, &gw->conns_lock, &until);
        if (gw->reaper_stop) break;
        if (rc != ETIMEDOUT) continue;
        pthread_mutex_unlock(&gw->conns_lock);
        s_reap(gw, nr_clock_mono_ms());
        pthread_mutex_lock(&gw->conns_lock);
    }
    pthread_mutex_unlock(&gw->conns_lock);
    return NULL;
}

int nr_gw_conns_start(nr_gateway_t *gw) {
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr)) return NR_ENOMEM;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&gw->reaper_cond, &attr);
    pthread_condattr_destroy(&attr);
    if (rc) return NR_ENOMEM;
    if (pthread_mutex_init(&gw->conns_lock, NULL)) {
        pthread_cond_destroy(&gw->reaper_cond);
        return NR_ENOMEM;
    }
    gw->conns_ready = 1;
    if (gw->params.head_timeout_s > 0) {
        if (pthread_create(&gw->reaper, NULL, s_reaper, gw)) return NR_ENOMEM;
        gw->reaper_running = 1;
    }
    return 0;
}

void nr_gw_conns_stop_reaper(nr_gateway_t *gw) {
    if (!gw->reaper_running) return;
    pthread_mutex_lock(&gw->conns_lock);
    gw->reaper_stop = 1;
    pthread_cond_signal(&gw->reaper_cond);
    pthread_mutex_unlock(&gw->conns_lock);
    pthread_join(gw->reaper, NULL);
    gw->reaper_running = 0;
}

void nr_gw_conns_destroy(nr_gateway_t *gw) {
    if (!gw->conns_ready) return;
    nr_gw_conns_stop_reaper(gw);
    /* libmicrohttpd has closed every connection (and freed each entry) by
     * now; anything left was never closed through it. */
    while (gw->conns) {
        nr_gw_conn_t *c = gw->conns;
        gw->conns = c->next;
        free(c);
    }
    pthread_mutex_destroy(&gw->conns_lock);
    pthread_cond_destroy(&gw->reaper_cond);
    gw->conns_ready = 0;
}

unsigned long long nr_gw_conns_head_timeouts(nr_gateway_t *gw) {
    if (!gw->conns_ready) return 0;
    pthread_mutex_lock(&gw->conns_lock);
    unsigned long long n = gw->head_timeouts;
    pthread_mutex_unlock(&gw->conns_lock);
    return n;
}
