/* narrator-broker: settings, sockets, signals and the poll loop around the
 * broker logic in broker.c. */
#include "broker/broker.h"
#include "broker/broker_metrics.h"
#include "broker/metrics_http.h"
#include "broker/store.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/error.h"
#include "common/hash.h"
#include "common/log.h"
#include "proto/proto.h"
#include "proto/secure.h"

#include <zmq.h>

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define S_ENV_PREFIX "NARRATOR_BROKER_"

typedef struct {
    char client_endpoint[256];
    char worker_endpoint[256];
    char redis_host[256];
    long redis_port;
    char redis_password[256];
    char redis_prefix[64];
    long heartbeat_ms;
    long heartbeat_liveness;
    long job_deadline_ms;
    char stage_deadlines[256];
    long max_attempts;
    long queue_bound;
    long retry_backoff_ms;
    long retention_s;
    char log_level[16];
    char metrics_listen[256];
    char curve_secret_key_file[512];
    char curve_allow_dir[512];
    long client_rate;
    long client_burst;
    char stages[256];
    long queue_bound_total;
    long unserved_timeout_ms;
    long max_worker_credit;
    long worker_strikes;
    long worker_cooldown_ms;
    long client_reply_bytes;
} s_settings_t;

#define S_OPT(...) NR_CONFIG_OPT(s_settings_t, __VA_ARGS__)

static const nr_config_option_t s_options[] = {
    S_OPT("client-endpoint", NR_CONFIG_STRING, 0, 0, "tcp://127.0.0.1:5555", client_endpoint,
          "ZeroMQ endpoint to bind for clients"),
    S_OPT("worker-endpoint", NR_CONFIG_STRING, 0, 0, "tcp://127.0.0.1:5556", worker_endpoint,
          "ZeroMQ endpoint to bind for workers"),
    S_OPT("redis-host", NR_CONFIG_STRING, 0, 0, "127.0.0.1", redis_host, "Redis host"),
    S_OPT("redis-port", NR_CONFIG_INT, 1, 65535, "6379", redis_port, "Redis port"),
    S_OPT("redis-password", NR_CONFIG_STRING, 0, 0, "", redis_password,
          "Redis password (config file or environment only, never a flag)"),
    S_OPT("redis-prefix", NR_CONFIG_STRING, 0, 0, "narrator", redis_prefix,
          "prefix of every Redis key"),
    S_OPT("heartbeat-ms", NR_CONFIG_INT, 10, 600000, "1000", heartbeat_ms,
          "heartbeat interval, both ways"),
    S_OPT("heartbeat-liveness", NR_CONFIG_INT, 1, 100, "3", heartbeat_liveness,
          "missed heartbeats before a worker is dead"),
    S_OPT("job-deadline-ms", NR_CONFIG_INT, 1, 86400000, "60000", job_deadline_ms,
          "time a worker has for one stage of a job"),
    S_OPT("stage-deadlines", NR_CONFIG_STRING, 0, 0, "", stage_deadlines,
          "per-stage deadlines overriding job-deadline-ms, e.g. vision=30000,text=60000"),
    S_OPT("max-attempts", NR_CONFIG_INT, 1, 100, "3", max_attempts,
          "attempts per stage before a job fails with attempts_exhausted"),
    S_OPT("queue-bound", NR_CONFIG_INT, 1, 100000000, "1000", queue_bound,
          "queued jobs at a route's first stage before SUBMIT is refused as busy"),
    S_OPT("retry-backoff-ms", NR_CONFIG_INT, 0, 3600000, "1000", retry_backoff_ms,
          "first retry delay; doubles per attempt up to 32x, with jitter"),
    S_OPT("retention-s", NR_CONFIG_INT, 1, 31536000, "86400", retention_s,
          "TTL of inputs and outputs once a job finishes"),
    S_OPT("log-level", NR_CONFIG_STRING, 0, 0, "info", log_level, "error, warn, info or debug"),
    S_OPT("metrics-listen", NR_CONFIG_STRING, 0, 0, "", metrics_listen,
          "host:port serving Prometheus /metrics over HTTP, e.g. 127.0.0.1:9464; empty = off"),
    S_OPT("curve-secret-key-file", NR_CONFIG_STRING, 0, 0, "", curve_secret_key_file,
          "CURVE: the broker's key file from narrator-keygen (mode 0600); with curve-allow-dir"),
    S_OPT("curve-allow-dir", NR_CONFIG_STRING, 0, 0, "", curve_allow_dir,
          "CURVE: folder of NAME.pub files of the clients and workers let in (others refused, logged)"),
    S_OPT("client-rate", NR_CONFIG_INT, 0, 1000000, "0", client_rate,
          "new jobs per second per client (its CURVE key name, else its IP address), after client-burst; "
          "over it SUBMIT is answered busy; 0: no limit"),
    S_OPT("client-burst", NR_CONFIG_INT, 1, 1000000, "100", client_burst,
          "new jobs a client may submit at once before client-rate applies"),
    S_OPT("stages", NR_CONFIG_STRING, 0, 0, "vision,text,speech", stages,
          "the stages this broker serves, comma-separated (at most 12); READY or SUBMIT naming "
          "another is refused"),
    S_OPT("queue-bound-total", NR_CONFIG_INT, 1, 100000000, "10000", queue_bound_total,
          "queued jobs at all stages together before SUBMIT is refused as busy"),
    S_OPT("unserved-timeout-ms", NR_CONFIG_INT, 1, 604800000, "600000", unserved_timeout_ms,
          "a job queued this long at a stage no live worker serves fails with no_worker"),
    S_OPT("max-worker-credit", NR_CONFIG_INT, 1, 1024, "256", max_worker_credit,
          "most jobs the broker leases to one worker at once, whatever capacity it announces"),
    S_OPT("worker-strikes", NR_CONFIG_INT, 1, 1000, "3", worker_strikes,
          "leases of a worker expiring in a row without an answer before it is set aside"),
    S_OPT("worker-cooldown-ms", NR_CONFIG_INT, 0, 86400000, "60000", worker_cooldown_ms,
          "how long a set-aside worker gets no new jobs (it is back at once when it answers); "
          "0: never set aside"),
    S_OPT("client-reply-bytes", NR_CONFIG_INT, 0, 1L << 40, "67108864", client_reply_bytes,
          "bytes of replies a client may leave unread (queued in the broker) before its "
          "requests are answered busy; 0: no limit"),
    NR_CONFIG_END,
};

static volatile sig_atomic_t s_stop = 0;

static void s_on_signal(int sig) {
    (void)sig;
    s_stop = 1;
}

#define S_BACKLOG_SLOTS 4096 /* clients whose unread reply bytes are counted apart */

/* The sockets, and the bytes of replies queued in ZeroMQ per client
 * identity (hashed into a slot; clients that share a slot share a limit),
 * counted down by libzmq's I/O thread as it writes them. */
typedef struct {
    void *clients, *workers;
    _Atomic size_t *backlog; /* S_BACKLOG_SLOTS */
} s_sockets_t;

static _Atomic size_t *s_backlog_slot(s_sockets_t *sk, const uint8_t *identity, size_t size) {
    return &sk->backlog[nr_hash_bytes(identity, size) % S_BACKLOG_SLOTS];
}

static size_t s_backlog(void *ctx, const uint8_t *identity, size_t size) {
    return atomic_load(s_backlog_slot(ctx, identity, size));
}

/* What the metrics listener needs to render a scrape. */
typedef struct {
    nr_broker_t *broker;
    nr_store_t *store;
    nr_metrics_t *metrics;
} s_scrape_t;

static char *s_render(void *ctx, size_t *len) {
    s_scrape_t *sc = ctx;
    nr_broker_metrics_collect(sc->broker, sc->store, sc->metrics);
    return nr_metrics_render(sc->metrics, len);
}

static int s_send(void *ctx, nr_broker_side_t side, const uint8_t *identity, size_t size,
                  const nr_msg_t *msg) {
    s_sockets_t *sk = ctx;
    char err[256];
    int rc = side == NR_BROKER_CLIENTS
                 ? nr_proto_send_counted(sk->clients, identity, size, msg,
                                         s_backlog_slot(sk, identity, size), err, sizeof err)
                 : nr_proto_send(sk->workers, identity, size, msg, err, sizeof err);
    if (rc == NR_EIO && errno == EHOSTUNREACH) return NR_ECONNECT; /* peer gone */
    if (rc) nr_log(NR_LOG_DEBUG, "send: %s", err);
    return rc;
}

static void *s_bind(void *zctx, const char *endpoint, const nr_secure_settings_t *secure) {
    void *s = zmq_socket(zctx, ZMQ_ROUTER);
    if (!s) return NULL;
    char err[512];
    if (secure && nr_secure_server(s, secure, err, sizeof err)) {
        nr_log(NR_LOG_ERROR, "%s", err);
        zmq_close(s);
        return NULL;
    }
    int linger = 1000, one = 1, hwm = 100000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    /* Unroutable replies (peer gone) fail with EHOSTUNREACH instead of vanishing. */
    zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    /* No valid frame is larger than the payload limit (bodies are far
     * smaller): ZeroMQ drops a peer announcing a larger one before it
     * allocates it (a 300 MiB frame used to be read whole, then refused). */
    int64_t maxmsg = NR_PROTO_PAYLOAD_MAX;
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    int timeout = 0;
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &timeout, sizeof timeout);
    if (zmq_bind(s, endpoint)) {
        nr_log(NR_LOG_ERROR, "cannot bind %s: %s", endpoint, zmq_strerror(zmq_errno()));
        zmq_close(s);
        return NULL;
    }
    return s;
}

/* Reads the settings: file, environment, flags (a password flag refused).
 * Returns -1 to go on, else the exit code (0 after --help). */
static int s_settings(int argc, char **argv, s_settings_t *st) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        if (!strncmp(argv[i], "--redis-password", 16) &&
            (argv[i][16] == '\0' || argv[i][16] == '=')) {
            fprintf(stderr, "narrator-broker: --redis-password is refused on the command line "
                            "(other users can read it); put redis-password in the --config file "
                            "or set " S_ENV_PREFIX "REDIS_PASSWORD\n");
            return 2;
        }
    }
    memset(st, 0, sizeof *st);
    int rc = nr_config_start(s_options, st, S_ENV_PREFIX, argc, argv, "narrator-broker",
                             "Usage: narrator-broker [options]\n"
                             "Routes jobs between narrate clients and stage workers; records them "
                             "in Redis.\n\n");
    if (rc == 1) return 0;
    if (rc) return 2;
    if (nr_log_set_level(st->log_level)) {
        fprintf(stderr, "narrator-broker: log-level must be error, warn, info or debug\n");
        return 2;
    }
    return -1;
}

/* The store's and the broker's params from the settings (the Redis
 * password is wiped from st once copied). */
static void s_params(s_settings_t *st, nr_store_params_t *sp, nr_broker_params_t *bp) {
    nr_store_default_params(sp);
    snprintf(sp->host, sizeof sp->host, "%s", st->redis_host);
    sp->port = st->redis_port;
    snprintf(sp->password, sizeof sp->password, "%s", st->redis_password);
    snprintf(sp->prefix, sizeof sp->prefix, "%s", st->redis_prefix);
    sp->retention_s = st->retention_s;
    memset(st->redis_password, 0, sizeof st->redis_password);

    nr_broker_default_params(bp);
    bp->heartbeat_ms = st->heartbeat_ms;
    bp->heartbeat_liveness = st->heartbeat_liveness;
    bp->job_deadline_ms = st->job_deadline_ms;
    snprintf(bp->stage_deadlines, sizeof bp->stage_deadlines, "%s", st->stage_deadlines);
    bp->max_attempts = st->max_attempts;
    bp->queue_bound = st->queue_bound;
    bp->retry_backoff_ms = st->retry_backoff_ms;
    bp->client_rate = st->client_rate;
    bp->client_burst = st->client_burst;
    snprintf(bp->stages, sizeof bp->stages, "%s", st->stages);
    bp->queue_bound_total = st->queue_bound_total;
    bp->unserved_timeout_ms = st->unserved_timeout_ms;
    bp->max_worker_credit = st->max_worker_credit;
    bp->worker_strikes = st->worker_strikes;
    bp->worker_cooldown_ms = st->worker_cooldown_ms;
    bp->client_reply_bytes = st->client_reply_bytes;
    bp->pipelined = 1; /* the broker reads on while Redis writes */
    if (bp->retry_backoff_max_ms < bp->retry_backoff_ms * 32)
        bp->retry_backoff_max_ms = bp->retry_backoff_ms * 32;
}

/* Everything the running broker holds; s_close frees what s_open made. */
typedef struct {
    void *zctx;
    nr_secure_zap_t *zap;
    s_sockets_t sk;
    nr_store_t *store;
    nr_broker_t *broker;
    nr_metrics_t *metrics;
    nr_metrics_http_t *http;
    s_scrape_t scrape;
    long heartbeat_ms;
} s_app_t;

/* The Prometheus registry and its HTTP listener. 0, or -1 (logged). */
static int s_open_metrics(s_app_t *app, const char *listen) {
    char err[512];
    app->metrics = nr_metrics_new();
    if (!app->metrics || nr_broker_metrics_define(app->metrics)) {
        nr_log(NR_LOG_ERROR, "cannot set up metrics (out of memory)");
        return -1;
    }
    app->scrape = (s_scrape_t){app->broker, app->store, app->metrics};
    app->http = nr_metrics_http_new(listen, s_render, &app->scrape, err, sizeof err);
    if (!app->http) {
        nr_log(NR_LOG_ERROR, "%s", err);
        return -1;
    }
    nr_broker_set_metrics(app->broker, app->metrics);
    nr_log(NR_LOG_INFO, "metrics on http://%s/metrics", listen);
    return 0;
}

/* ZeroMQ, CURVE's ZAP handler, both sockets, the store, the broker and
 * metrics. 0, or -1 (logged; s_close frees what was made). */
static int s_open(s_app_t *app, const s_settings_t *st, const nr_secure_settings_t *secure,
                  int curve, const nr_store_params_t *sp, const nr_broker_params_t *bp) {
    char err[512];
    app->heartbeat_ms = bp->heartbeat_ms;
    app->zctx = zmq_ctx_new();
    if (!app->zctx) return -1;
    if (curve) {
        app->zap = nr_secure_zap_new(app->zctx, secure->allow_dir, err, sizeof err);
        if (!app->zap) {
            nr_log(NR_LOG_ERROR, "%s", err);
            return -1;
        }
        nr_log(NR_LOG_INFO, "CURVE on: peers allowed from %s", secure->allow_dir);
    }
    app->sk.clients = s_bind(app->zctx, st->client_endpoint, curve ? secure : NULL);
    app->sk.workers = app->sk.clients ? s_bind(app->zctx, st->worker_endpoint, curve ? secure : NULL)
                                      : NULL;
    if (!app->sk.workers) return -1;
    app->sk.backlog = calloc(S_BACKLOG_SLOTS, sizeof *app->sk.backlog);
    if (!app->sk.backlog) return -1;
    app->store = nr_store_new(sp);
    app->broker = app->store ? nr_broker_new(bp, app->store, s_send, &app->sk, err, sizeof err) : NULL;
    if (!app->broker) {
        nr_log(NR_LOG_ERROR, "%s", app->store ? err : "out of memory");
        return -1;
    }
    nr_broker_set_backlog(app->broker, s_backlog, &app->sk);
    if (st->metrics_listen[0] && s_open_metrics(app, st->metrics_listen)) return -1;
    return 0;
}

static void s_close(s_app_t *app) {
    nr_metrics_http_destroy(&app->http);
    nr_broker_destroy(&app->broker);
    nr_metrics_destroy(&app->metrics);
    nr_store_destroy(&app->store);
    if (app->sk.clients) zmq_close(app->sk.clients);
    if (app->sk.workers) zmq_close(app->sk.workers);
    nr_secure_zap_destroy(&app->zap);
    if (app->zctx) zmq_ctx_term(app->zctx); /* after it, libzmq counts nothing down */
    free((void *)app->sk.backlog);
}

static void s_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

#define S_TURN_MESSAGES 64         /* messages read from one side per loop turn */
#define S_TURN_BYTES (64u << 20)   /* payload bytes read from one side per loop turn */

/* Reads up to a batch of messages (S_TURN_MESSAGES, S_TURN_BYTES) from one
 * side (0: clients, 1: workers) and hands each to the broker, so one turn's
 * work is bounded and neither side starves the other. */
static void s_read_side(s_app_t *app, int side, void *socket, nr_msg_t *msg) {
    uint8_t identity[256];
    size_t identity_size;
    char err[512];
    size_t bytes = 0;
    for (int k = 0; k < S_TURN_MESSAGES && bytes < S_TURN_BYTES && !s_stop; k++) {
        int events = 0;
        size_t elen = sizeof events;
        if (k > 0 && (zmq_getsockopt(socket, ZMQ_EVENTS, &events, &elen) || !(events & ZMQ_POLLIN)))
            break;
        identity_size = 0;
        nr_proto_msg_clear(msg);
        int rc = nr_proto_recv(socket, identity, &identity_size, msg, err, sizeof err);
        int64_t now = nr_clock_mono_ms();
        if (rc == NR_EIO) {
            if (zmq_errno() == EAGAIN || zmq_errno() == EINTR) break;
            static nr_log_limit_t limit;
            nr_log_limited(&limit, NR_LOG_WARN, "receive: %s", err);
            break;
        }
        for (uint32_t i = 0; !rc && i < msg->frames_len; i++) bytes += msg->frames[i].size;
        if (side == 0) {
            if (rc) {
                nr_metrics_add(app->metrics, NR_BM_REJECTED, 1, "socket", "clients", NULL);
                nr_broker_client_error(app->broker, identity, identity_size, rc, err);
            }
            else nr_broker_client_message(app->broker, identity, identity_size, msg, now);
        } else {
            if (rc) {
                nr_metrics_add(app->metrics, NR_BM_REJECTED, 1, "socket", "workers", NULL);
                static nr_log_limit_t limit; /* one line per garbage frame is a flood */
                nr_log_limited(&limit, NR_LOG_WARN, "malformed worker message dropped: %s", err);
            }
            else nr_broker_worker_message(app->broker, identity, identity_size, msg, now);
        }
    }
}

/* One turn of the loop: tick, wait on both sockets, Redis's answer and
 * the metrics listener, then read. 0, or -1 when polling failed. */
static int s_turn(s_app_t *app, nr_msg_t *msg) {
    int64_t now = nr_clock_mono_ms();
    int64_t wake = nr_broker_tick(app->broker, now);
    long timeout = wake > now ? (long)(wake - now) : 0;
    if (timeout > app->heartbeat_ms) timeout = app->heartbeat_ms;
    zmq_pollitem_t items[2 + 3 + NR_METRICS_HTTP_CONNS] = {{app->sk.clients, 0, ZMQ_POLLIN, 0},
                                                           {app->sk.workers, 0, ZMQ_POLLIN, 0}};
    int nitems = 2;
    int redis_fd = nr_broker_store_fd(app->broker); /* writes in flight: their answer */
    if (redis_fd >= 0) items[nitems++] = (zmq_pollitem_t){NULL, redis_fd, ZMQ_POLLIN, 0};
    int fetch_fd = nr_broker_fetch_fd(app->broker); /* blob reads in flight */
    if (fetch_fd >= 0) items[nitems++] = (zmq_pollitem_t){NULL, fetch_fd, ZMQ_POLLIN, 0};
    const int first_http = nitems;
    if (app->http) {
        int fds[1 + NR_METRICS_HTTP_CONNS], wr[1 + NR_METRICS_HTTP_CONNS];
        size_t nf = nr_metrics_http_fds(app->http, fds, wr, 1 + NR_METRICS_HTTP_CONNS);
        for (size_t i = 0; i < nf; i++)
            items[nitems++] = (zmq_pollitem_t){NULL, fds[i], wr[i] ? ZMQ_POLLOUT : ZMQ_POLLIN, 0};
        if (nr_metrics_http_busy(app->http) && timeout > 1000) timeout = 1000;
    }
    int n = zmq_poll(items, nitems, timeout);
    if (n < 0) {
        if (zmq_errno() == EINTR) return 0;
        nr_log(NR_LOG_ERROR, "zmq_poll: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    if (app->http) {
        int ready = nr_metrics_http_busy(app->http);
        for (int i = first_http; i < nitems; i++) ready |= items[i].revents != 0;
        if (ready) nr_metrics_http_service(app->http, nr_clock_mono_ms());
    }
    /* Up to a batch from each side per turn, so neither starves the
     * other; their Redis writes go out together at the commit. */
    nr_broker_begin(app->broker, nr_clock_mono_ms());
    for (int side = 0; side < 2; side++)
        if (items[side].revents & ZMQ_POLLIN) s_read_side(app, side, items[side].socket, msg);
    nr_broker_commit(app->broker, nr_clock_mono_ms());
    return 0;
}

int main(int argc, char **argv) {
    nr_log_set_component("broker");
#ifdef __GLIBC__
    /* Payload frames (images, encoder states, audio) are allocated and freed
     * for every job. With glibc's defaults each one above the mmap threshold
     * is a fresh mmap whose pages the kernel zeroes and faults in on first
     * touch (page faults were half the broker's time with 256 KiB inputs);
     * keep them in the heap, and keep up to 64 MiB of freed heap for reuse. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
    s_settings_t st;
    int rc = s_settings(argc, argv, &st);
    if (rc >= 0) return rc;

    /* CURVE + ZAP on both sockets (proto/secure.h): both settings or none. */
    char err[512];
    nr_secure_settings_t secure;
    memset(&secure, 0, sizeof secure);
    snprintf(secure.secret_key_file, sizeof secure.secret_key_file, "%s", st.curve_secret_key_file);
    snprintf(secure.allow_dir, sizeof secure.allow_dir, "%s", st.curve_allow_dir);
    int curve = nr_secure_enabled(&secure, 1, err, sizeof err);
    if (curve < 0) {
        fprintf(stderr, "narrator-broker: %s\n", err);
        return 2;
    }
    nr_store_params_t sp;
    nr_broker_params_t bp;
    s_params(&st, &sp, &bp);

    int status = 1;
    s_app_t app;
    memset(&app, 0, sizeof app);
    if (s_open(&app, &st, &secure, curve, &sp, &bp)) goto done;
    s_signals();
    nr_log(NR_LOG_INFO, "clients on %s, workers on %s, redis %s:%ld prefix '%s'",
           st.client_endpoint, st.worker_endpoint, sp.host, sp.port, sp.prefix);
    nr_broker_start(app.broker, nr_clock_mono_ms()); /* Redis down: logged, retried by tick */

    nr_msg_t msg;
    nr_proto_msg_init(&msg);
    while (!s_stop && s_turn(&app, &msg) == 0) {
    }
    nr_proto_msg_clear(&msg);
    nr_log(NR_LOG_INFO, "signal received: stopping");
    nr_broker_stop_accepting(app.broker);
    nr_broker_shutdown(app.broker, nr_clock_mono_ms());
    status = 0;
done:
    s_close(&app);
    return status;
}
