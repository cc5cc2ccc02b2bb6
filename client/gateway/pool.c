/* One broker client per libmicrohttpd thread: a client is one DEALER
 * socket, which is not thread-safe, so each thread makes its own on first
 * use; the gateway keeps them all to destroy them when it stops. */
#include "client/gateway/internal.h"
#include "common/error.h"
#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local nr_client_t *s_tls_client;
static _Thread_local const nr_gateway_t *s_tls_owner;
static _Thread_local char s_tls_client_err[600]; /* why this thread has no client */
static _Thread_local int s_tls_client_code;       /* and its code */

nr_client_t *nr_gw_client(nr_gateway_t *gw) {
    if (s_tls_client && s_tls_owner == gw) return s_tls_client;
    snprintf(s_tls_client_err, sizeof s_tls_client_err, "out of memory");
    s_tls_client_code = NR_ENOMEM;
    nr_client_t *c = nr_client_new(gw->params.broker_endpoint, gw->params.request_timeout_ms);
    if (!c) return NULL;
    if (gw->curve &&
        nr_client_set_curve(c, gw->params.curve_server_key, gw->params.curve_secret_key_file) != 0) {
        /* The keys were checked at start: a key file changed since. */
        snprintf(s_tls_client_err, sizeof s_tls_client_err, "CURVE settings: %s", nr_client_error(c));
        s_tls_client_code = NR_EINVAL;
        nr_log(NR_LOG_ERROR, "cannot make a broker client: %s", s_tls_client_err);
        nr_client_destroy(&c);
        return NULL;
    }
    pthread_mutex_lock(&gw->lock);
    if (gw->n_clients == gw->cap_clients) {
        size_t cap = gw->cap_clients ? gw->cap_clients * 2 : 8;
        nr_client_t **p = realloc(gw->clients, cap * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&gw->lock);
            nr_client_destroy(&c);
            return NULL;
        }
        gw->clients = p;
        gw->cap_clients = cap;
    }
    gw->clients[gw->n_clients++] = c;
    pthread_mutex_unlock(&gw->lock);
    s_tls_client = c;
    s_tls_owner = gw;
    return c;
}


nr_client_t *nr_gw_client_current(const nr_gateway_t *gw) {
    return s_tls_owner == gw ? s_tls_client : NULL;
}

const char *nr_gw_client_failure(int *code) {
    *code = s_tls_client_code ? s_tls_client_code : NR_ENOMEM;
    return s_tls_client_err;
}

void nr_gw_clients_destroy(nr_gateway_t *gw) {
    for (size_t i = 0; i < gw->n_clients; i++) nr_client_destroy(&gw->clients[i]);
    free(gw->clients);
    gw->clients = NULL;
    gw->n_clients = gw->cap_clients = 0;
}
