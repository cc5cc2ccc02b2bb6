/* The worker runtime: one socket thread talks to the broker (READY,
 * heartbeats, reconnects, replies), handler threads run the stage's jobs.
 *
 * The thread that calls nr_worker_run owns the DEALER socket; nothing else
 * touches it. Jobs go to the handler threads through a queue under one
 * mutex; finished replies come back through a second list under the same
 * mutex, and a byte on a pipe wakes the socket thread (the same pipe carries
 * the stop request from the signal handler). So a worker whose handlers are
 * all busy keeps heartbeating and never looks dead to the broker. */
#include "workers/worker_internal.h"
#include "proto/secure.h"

#include "common/backoff.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#ifndef NR_VERSION
#define NR_VERSION "0.0.0"
#endif

static nr_worker_t *s_signal_worker;

/* ---- small helpers ---------------------------------------------------- */

void nr_wk_list_push(nr_wk_list_t *l, nr_wk_item_t *it) {
    it->next = NULL;
    if (l->tail) l->tail->next = it;
    else l->head = it;
    l->tail = it;
    l->len++;
}

nr_wk_item_t *nr_wk_list_pop(nr_wk_list_t *l) {
    nr_wk_item_t *it = l->head;
    if (!it) return NULL;
    l->head = it->next;
    if (!l->head) l->tail = NULL;
    l->len--;
    it->next = NULL;
    return it;
}

static nr_wk_item_t *s_item_new(void) {
    nr_wk_item_t *it = calloc(1, sizeof *it);
    if (!it) return NULL;
    nr_proto_msg_init(&it->job);
    nr_proto_msg_init(&it->reply);
    return it;
}

static void s_item_destroy(nr_wk_item_t **it_p) {
    if (!it_p || !*it_p) return;
    nr_proto_msg_clear(&(*it_p)->job);
    nr_proto_msg_clear(&(*it_p)->reply);
    free(*it_p);
    *it_p = NULL;
}

void nr_wk_wake(nr_worker_t *self) {
    int saved = errno;
    ssize_t n = write(self->pipe[1], "w", 1); /* a full pipe already wakes us */
    (void)n;
    errno = saved;
}

/* Copies id, stage and attempt from the job into a reply. */
static void s_reply_head(nr_msg_t *reply, const nr_msg_t *job, nr_cmd_t cmd) {
    reply->cmd = cmd;
    snprintf(reply->id, sizeof reply->id, "%s", job->id);
    snprintf(reply->stage, sizeof reply->stage, "%s", job->stage);
    reply->attempt = job->attempt;
}

void nr_wk_make_fail(nr_msg_t *reply, const nr_msg_t *job, int code, int retry,
                        const char *message) {
    nr_proto_msg_clear(reply);
    s_reply_head(reply, job, NR_CMD_FAIL);
    reply->code = code;
    reply->retry = retry ? 1 : 0;
    snprintf(reply->message, sizeof reply->message, "%s",
             message && *message ? message : nr_strerror(code));
}

/* Turns a handler's outcome into the reply to send. */
void nr_wk_finish(nr_worker_t *self, nr_wk_item_t *it, int code, const char *err, long long ms) {
    if (code > 0 || code < NR_ERRNO_MIN) code = NR_EINTERNAL;
    if (code == 0) {
        s_reply_head(&it->reply, &it->job, NR_CMD_RESULT);
        it->reply.code = 0;
        if (!nr_proto_kv_get(&it->reply, "ms")) {
            char buf[32];
            snprintf(buf, sizeof buf, "%lld", ms);
            if (nr_proto_kv_add(&it->reply, "ms", buf) != 0)
                nr_log(NR_LOG_DEBUG, "job %s: no room for kv ms", it->job.id);
        }
        if (it->job.deadline_ms && ms > (long long)it->job.deadline_ms)
            nr_log(NR_LOG_WARN, "job %s took %lld ms, past its %u ms deadline", it->job.id, ms,
                   (unsigned)it->job.deadline_ms);
        nr_log(NR_LOG_DEBUG, "job %s attempt %u done in %lld ms", it->job.id,
               (unsigned)it->job.attempt, ms);
    } else {
        int retry = self->retryable(code);
        nr_log(NR_LOG_WARN, "job %s attempt %u failed (%s, retry=%d): %s", it->job.id,
               (unsigned)it->job.attempt, nr_errname(code), retry,
               err && *err ? err : nr_strerror(code));
        nr_wk_make_fail(&it->reply, &it->job, code, retry, err);
    }
}

/* ---- public: settings and construction --------------------------------- */

int nr_worker_retryable(int code) {
    switch (code) {
    case NR_ENOTIMAGE:
    case NR_EIMAGE:
    case NR_EIMAGEBOMB:
    case NR_ETEXT:
    case NR_EVOICE:
    case NR_EOPTION:
    case NR_ETOOBIG:
    case NR_EPROTO:
        return 0;
    default:
        return 1;
    }
}

nr_worker_stage_t nr_worker_stage_default(void) {
    nr_worker_stage_t s;
    memset(&s, 0, sizeof s);
    s.capacity = 1;
    s.retryable = nr_worker_retryable;
    return s;
}

int nr_worker_config_load(const nr_config_option_t *table, void *settings, int argc, char **argv,
                          const char *program, const char *usage) {
    int about = usage && *usage;
    return nr_config_start(table, settings, NR_WORKER_ENV_PREFIX, argc, argv, program,
                           "usage: %s [options]\n%s%s", program, about ? usage : "", about ? "\n" : "");
}

static int s_valid_name(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

/* "<stage>-<host>-<pid>" squeezed into [a-z0-9_-] and NR_PROTO_NAME_MAX. */
static void s_default_name(char *out, size_t size, const char *stage) {
    char host[256] = "host", pid[24];
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "host");
    host[sizeof host - 1] = '\0';
    snprintf(pid, sizeof pid, "-%d", (int)getpid());
    size_t room = size - 1 - strlen(stage) - 1 - strlen(pid);
    char h[256];
    size_t j = 0;
    for (size_t i = 0; host[i] && j < room && j + 1 < sizeof h; i++) {
        unsigned char c = (unsigned char)tolower((unsigned char)host[i]);
        if (c == '.') break; /* short host name */
        h[j++] = (char)(isalnum(c) || c == '-' || c == '_' ? c : '_');
    }
    h[j] = '\0';
    snprintf(out, size, "%s-%s%s", stage, j ? h : "w", pid);
}

nr_worker_t *nr_worker_new(const nr_worker_stage_t *stage, const nr_worker_settings_t *settings,
                           char *err, size_t errlen) {
    if (!stage || !settings || !stage->run || !stage->name || !s_valid_name(stage->name) ||
        strlen(stage->name) > NR_PROTO_NAME_MAX / 2) {
        nr_seterr(err, errlen, NR_EINVAL, "a stage needs a name [a-z0-9_-] (up to %d bytes) and a run handler",
                  NR_PROTO_NAME_MAX / 2);
        return NULL;
    }
    if (*settings->name && (!s_valid_name(settings->name) || strlen(settings->name) > NR_PROTO_NAME_MAX)) {
        nr_seterr(err, errlen, NR_EINVAL, "worker name '%s' must be 1..%d bytes of [a-z0-9_-]",
                  settings->name, NR_PROTO_NAME_MAX);
        return NULL;
    }
    if (*settings->log_level && nr_log_set_level(settings->log_level) != 0) {
        nr_seterr(err, errlen, NR_EINVAL, "log-level must be error, warn, info or debug, not '%s'",
                  settings->log_level);
        return NULL;
    }
    if (stage->voices && *stage->voices && nr_proto_voices_check(stage->voices, NULL, err, errlen)) return NULL;
    nr_worker_t *self = calloc(1, sizeof *self);
    if (!self) {
        nr_seterr(err, errlen, NR_ENOMEM, "worker");
        return NULL;
    }
    self->pipe[0] = self->pipe[1] = -1;
    pthread_mutex_init(&self->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&self->cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&self->jobs_done, 0);

    snprintf(self->stage, sizeof self->stage, "%s", stage->name);
    snprintf(self->model, sizeof self->model, "%s", stage->model ? stage->model : "");
    snprintf(self->version, sizeof self->version, "%s", stage->version ? stage->version : NR_VERSION);
    if (stage->voices && *stage->voices) snprintf(self->voices, sizeof self->voices, "%s", stage->voices);
    self->ctx = stage->ctx;
    self->run = stage->run;
    self->run_batch = stage->run_batch;
    self->retryable = stage->retryable ? stage->retryable : nr_worker_retryable;
    self->thread_init = stage->thread_init;
    self->thread_fini = stage->thread_fini;
    self->settings = *settings;
    if (*settings->name) snprintf(self->name, sizeof self->name, "%s", settings->name);
    else s_default_name(self->name, sizeof self->name, stage->name);

    long cap = settings->capacity > 0 ? settings->capacity : stage->capacity;
    if (cap < 1) cap = 1;
    if (cap > 1024) cap = 1024;
    self->capacity = (int)cap;
    self->batch = 1;
    if (settings->batch_size > 1) {
        if (stage->run_batch) self->batch = (int)(settings->batch_size < cap ? settings->batch_size : cap);
        else nr_log(NR_LOG_WARN, "stage %s has no batch handler: batch-size %ld ignored",
                    stage->name, settings->batch_size);
    }
    self->nthreads = (self->capacity + self->batch - 1) / self->batch;
    if (settings->concurrency > 0 && settings->concurrency < self->nthreads)
        self->nthreads = (int)settings->concurrency;
    if (self->settings.reconnect_ms < 1) self->settings.reconnect_ms = 1;
    if (self->settings.reconnect_max_ms < self->settings.reconnect_ms)
        self->settings.reconnect_max_ms = self->settings.reconnect_ms;
    if (self->settings.heartbeat_ms < 1) self->settings.heartbeat_ms = 1000;
    if (self->settings.heartbeat_liveness < 1) self->settings.heartbeat_liveness = 3;

    char comp[48];
    snprintf(comp, sizeof comp, "worker-%s", self->stage);
    nr_log_set_component(comp);

    {
        /* CURVE (proto/secure.h): both settings or neither; keys checked now. */
        nr_secure_settings_t sec;
        memset(&sec, 0, sizeof sec);
        snprintf(sec.server_key, sizeof sec.server_key, "%s", settings->curve_server_key);
        snprintf(sec.secret_key_file, sizeof sec.secret_key_file, "%s", settings->curve_secret_key_file);
        int on = nr_secure_enabled(&sec, 0, err, errlen);
        if (on < 0) goto err;
        if (on) {
            char pub[NR_SECURE_KEY_Z85 + 1];
            if (nr_secure_read_keyfile(sec.secret_key_file, pub, NULL, err, errlen) ||
                nr_secure_read_public(sec.server_key, pub, err, errlen))
                goto err;
            self->curve = 1;
        }
    }

    if (pipe(self->pipe) != 0) {
        nr_seterr(err, errlen, NR_EIO, "pipe: %s", strerror(errno));
        goto err;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(self->pipe[i], F_SETFL, fcntl(self->pipe[i], F_GETFL) | O_NONBLOCK);
        fcntl(self->pipe[i], F_SETFD, FD_CLOEXEC);
    }
    self->zctx = zmq_ctx_new();
    if (!self->zctx) {
        nr_seterr(err, errlen, NR_EIO, "zmq_ctx_new: %s", zmq_strerror(errno));
        goto err;
    }
    self->threads = calloc((size_t)self->nthreads, sizeof *self->threads);
    if (!self->threads) {
        nr_seterr(err, errlen, NR_ENOMEM, "worker threads");
        goto err;
    }
    return self;
err:
    nr_worker_destroy(&self);
    return NULL;
}

void nr_worker_stop(nr_worker_t *self) {
    if (!self) return;
    self->stop_requested = 1;
    if (self->pipe[1] >= 0) nr_wk_wake(self);
}

static void s_on_signal(int sig) {
    (void)sig;
    if (s_signal_worker) nr_worker_stop(s_signal_worker);
}

int nr_worker_handle_signals(nr_worker_t *self) {
    s_signal_worker = self;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0) return NR_EIO;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

unsigned long nr_worker_jobs_done(const nr_worker_t *self) {
    return self ? atomic_load(&((nr_worker_t *)self)->jobs_done) : 0;
}

/* ---- socket thread ------------------------------------------------------ */

static void s_close_socket(nr_worker_t *self, int linger_ms) {
    if (!self->sock) return;
    zmq_setsockopt(self->sock, ZMQ_LINGER, &linger_ms, sizeof linger_ms);
    zmq_close(self->sock);
    self->sock = NULL;
}

/* Sends one message; a send error is logged and the message dropped (the
 * broker's lease requeues a job whose reply got lost). */
static int s_send(nr_worker_t *self, const nr_msg_t *msg) {
    char err[NR_WK_ERRLEN] = "";
    if (!self->sock) return NR_EIO;
    int rc = nr_proto_send(self->sock, NULL, 0, msg, err, sizeof err);
    if (rc) nr_log(NR_LOG_WARN, "send %s%s%s failed: %s", nr_proto_cmd_name(msg->cmd),
                   *msg->id ? " " : "", msg->id, *err ? err : nr_strerror(rc));
    return rc;
}

static int s_send_simple(nr_worker_t *self, nr_cmd_t cmd) {
    nr_msg_t m;
    nr_proto_msg_init(&m);
    m.cmd = cmd;
    int rc = s_send(self, &m);
    nr_proto_msg_clear(&m);
    return rc;
}

static int s_connect(nr_worker_t *self) {
    self->sock = zmq_socket(self->zctx, ZMQ_DEALER);
    if (!self->sock) {
        nr_log(NR_LOG_ERROR, "zmq_socket: %s", zmq_strerror(errno));
        return NR_EIO;
    }
    int linger = 0, sndtimeo = (int)self->settings.heartbeat_ms;
    zmq_setsockopt(self->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(self->sock, ZMQ_SNDTIMEO, &sndtimeo, sizeof sndtimeo);
    if (self->curve) {
        char err[512];
        nr_secure_settings_t sec;
        memset(&sec, 0, sizeof sec);
        snprintf(sec.server_key, sizeof sec.server_key, "%s", self->settings.curve_server_key);
        snprintf(sec.secret_key_file, sizeof sec.secret_key_file, "%s", self->settings.curve_secret_key_file);
        int rc = nr_secure_client(self->sock, &sec, err, sizeof err);
        if (rc) {
            nr_log(NR_LOG_ERROR, "%s", err);
            s_close_socket(self, 0);
            return NR_EINVAL; /* bad keys do not get better with retries */
        }
    }
    if (zmq_connect(self->sock, self->settings.broker) != 0) {
        nr_log(NR_LOG_ERROR, "bad broker endpoint '%s': %s", self->settings.broker, zmq_strerror(errno));
        s_close_socket(self, 0);
        return NR_EINVAL; /* a bad endpoint does not get better with retries */
    }
    nr_msg_t m;
    nr_proto_msg_init(&m);
    m.cmd = NR_CMD_READY;
    snprintf(m.stage, sizeof m.stage, "%s", self->stage);
    snprintf(m.name, sizeof m.name, "%s", self->name);
    m.capacity = (uint32_t)self->capacity;
    char batch[16];
    snprintf(batch, sizeof batch, "%d", self->batch);
    int rc = 0;
    if (*self->model) rc = rc ? rc : nr_proto_kv_add(&m, "model", self->model);
    rc = rc ? rc : nr_proto_kv_add(&m, "device", self->settings.device);
    rc = rc ? rc : nr_proto_kv_add(&m, "version", self->version);
    rc = rc ? rc : nr_proto_kv_add(&m, "batch_size", batch);
    if (*self->voices) rc = rc ? rc : nr_proto_kv_add(&m, "voices", self->voices);
    if (!rc) rc = s_send(self, &m);
    nr_proto_msg_clear(&m);
    if (rc) {
        s_close_socket(self, 0);
        return rc;
    }
    nr_log(NR_LOG_INFO, "connected to %s as %s (stage %s, capacity %d, batch %d)",
           self->settings.broker, self->name, self->stage, self->capacity, self->batch);
    return 0;
}

/* Sends every finished reply (when connected). */
static void s_flush_done(nr_worker_t *self) {
    for (;;) {
        pthread_mutex_lock(&self->mu);
        nr_wk_item_t *it = self->sock ? nr_wk_list_pop(&self->done) : NULL;
        pthread_mutex_unlock(&self->mu);
        if (!it) return;
        char err[NR_WK_ERRLEN] = "";
        atomic_fetch_add(&self->jobs_done, 1); /* before the send: a peer may look at once */
        int rc = nr_proto_send(self->sock, NULL, 0, &it->reply, err, sizeof err);
        if (rc && rc != NR_EIO && it->reply.cmd == NR_CMD_RESULT) {
            /* The result itself is not sendable (too big, bad kv): fail the job. */
            char msg[NR_WK_ERRLEN];
            snprintf(msg, sizeof msg, "result not sendable: %s", *err ? err : nr_strerror(rc));
            nr_log(NR_LOG_WARN, "job %s: %s", it->job.id, msg);
            nr_wk_make_fail(&it->reply, &it->job, rc, self->retryable(rc), msg);
            rc = nr_proto_send(self->sock, NULL, 0, &it->reply, err, sizeof err);
        }
        if (rc) nr_log(NR_LOG_WARN, "job %s: reply lost: %s", it->job.id, *err ? err : nr_strerror(rc));
        s_item_destroy(&it);
    }
}

/* Fails every job not started yet with a retryable NR_EBUSY. */
static void s_fail_pending(nr_worker_t *self, const char *why) {
    pthread_mutex_lock(&self->mu);
    nr_wk_item_t *it;
    while ((it = nr_wk_list_pop(&self->pending))) {
        nr_wk_make_fail(&it->reply, &it->job, NR_EBUSY, 1, why);
        nr_wk_list_push(&self->done, it);
    }
    pthread_mutex_unlock(&self->mu);
}

typedef struct {
    long long last_recv;  /* last message from the broker */
    int healthy;          /* got a real message since connecting */
    nr_backoff_t delay;   /* reconnect delays */
    long long reconnect_at;
} s_link_t;

static void s_drop_link(nr_worker_t *self, s_link_t *link, long long now, long long delay) {
    s_close_socket(self, 0);
    link->reconnect_at = now + delay;
}

/* Reads and handles one message from the broker. */
static void s_handle_incoming(nr_worker_t *self, s_link_t *link) {
    nr_wk_item_t *it = s_item_new();
    if (!it) {
        nr_log(NR_LOG_ERROR, "out of memory receiving a message");
        return;
    }
    char err[NR_WK_ERRLEN] = "";
    int rc = nr_proto_recv(self->sock, NULL, NULL, &it->job, err, sizeof err);
    long long now = nr_clock_mono_ms();
    it->received_ms = now;
    if (rc == NR_EIO) {
        if (errno != EAGAIN && errno != EINTR)
            nr_log(NR_LOG_WARN, "receive failed: %s", zmq_strerror(errno));
        s_item_destroy(&it);
        return;
    }
    link->last_recv = now; /* even a bad message shows the broker is alive */
    if (rc) {
        nr_log(NR_LOG_WARN, "dropped a malformed message from the broker (%s): %s", nr_errname(rc),
               *err ? err : nr_strerror(rc));
        s_item_destroy(&it);
        return;
    }
    nr_msg_t *m = &it->job;
    switch (m->cmd) {
    case NR_CMD_HEARTBEAT:
        break;
    case NR_CMD_DISCONNECT:
        if (m->message[0]) /* a refusal, e.g. a stage the broker does not serve */
            nr_log(NR_LOG_WARN, "broker sent DISCONNECT: %s; registering again", m->message);
        else
            nr_log(NR_LOG_INFO, "broker sent DISCONNECT; registering again");
        if (link->healthy) {
            s_drop_link(self, link, now, 0);
        } else {
            s_drop_link(self, link, now, nr_backoff_next(&link->delay));
        }
        s_item_destroy(&it);
        return;
    case NR_CMD_JOB:
        if (self->stop_requested) {
            nr_wk_make_fail(&it->reply, m, NR_EBUSY, 1, "worker is shutting down");
        } else if (strcmp(m->stage, self->stage) != 0) {
            char msg[128];
            snprintf(msg, sizeof msg, "worker serves stage '%s', not '%s'", self->stage, m->stage);
            nr_log(NR_LOG_WARN, "job %s: %s", m->id, msg);
            nr_wk_make_fail(&it->reply, m, NR_EINVAL, 1, msg);
        } else {
            nr_log(NR_LOG_DEBUG, "job %s attempt %u received", m->id, (unsigned)m->attempt);
            pthread_mutex_lock(&self->mu);
            /* The broker keeps to our credit; twice that waiting means it
             * does not (or a reconnect overlapped running jobs twice). */
            int full = self->pending.len >= (size_t)self->capacity * 2;
            if (!full) {
                nr_wk_list_push(&self->pending, it);
                it = NULL;
            }
            pthread_mutex_unlock(&self->mu);
            /* Outside the lock, which the woken thread takes at once. */
            if (!full) pthread_cond_signal(&self->cond);
            if (full) {
                nr_log(NR_LOG_WARN, "job %s: over capacity %d, handed back", m->id, self->capacity);
                nr_wk_make_fail(&it->reply, m, NR_EBUSY, 1, "worker over capacity");
            }
        }
        if (it) {
            pthread_mutex_lock(&self->mu);
            nr_wk_list_push(&self->done, it);
            pthread_mutex_unlock(&self->mu);
            it = NULL;
        }
        break;
    default:
        nr_log(NR_LOG_WARN, "dropped unexpected %s from the broker", nr_proto_cmd_name(m->cmd));
        break;
    }
    if (!link->healthy) {
        link->healthy = 1;
        nr_backoff_reset(&link->delay);
    }
    s_item_destroy(&it);
}

static void s_drain_pipe(nr_worker_t *self) {
    char buf[256];
    while (read(self->pipe[0], buf, sizeof buf) > 0) {
    }
}

int nr_worker_run(nr_worker_t *self) {
    if (!self || self->ran) return NR_EINVAL;
    self->ran = 1;
    for (int i = 0; i < self->nthreads; i++) {
        if (pthread_create(&self->threads[i], NULL, nr_wk_handler_thread, self) != 0) {
            nr_log(NR_LOG_ERROR, "cannot start handler thread: %s", strerror(errno));
            return NR_EINTERNAL;
        }
        self->threads_started++;
    }
    /* Stage setup on every handler thread (CUDA device, run state) first. */
    pthread_mutex_lock(&self->mu);
    while (self->inited < self->threads_started) pthread_cond_wait(&self->cond, &self->mu);
    int irc = self->init_rc;
    pthread_mutex_unlock(&self->mu);
    if (irc) {
        nr_log(NR_LOG_ERROR, "handler thread setup failed: %s", self->init_err);
        return irc;
    }
    const long long hb = self->settings.heartbeat_ms;
    const long long dead_after = hb * self->settings.heartbeat_liveness;
    s_link_t link = {.reconnect_at = nr_clock_mono_ms()};
    nr_backoff_init(&link.delay, self->settings.reconnect_ms, self->settings.reconnect_max_ms);
    long long next_hb = 0, stop_deadline = 0;
    int stopping = 0, rc = 0;
    nr_log(NR_LOG_INFO, "starting: stage %s, capacity %d, %d handler thread(s), broker %s",
           self->stage, self->capacity, self->nthreads, self->settings.broker);

    for (;;) {
        long long now = nr_clock_mono_ms();
        if (self->stop_requested && !stopping) {
            stopping = 1;
            stop_deadline = now + self->settings.grace_ms;
            nr_log(NR_LOG_INFO, "stopping: finishing running jobs (grace %ld ms)",
                   self->settings.grace_ms);
            s_fail_pending(self, "worker is shutting down");
        }
        if (!self->sock && now >= link.reconnect_at) {
            int crc = s_connect(self);
            if (crc == 0) {
                link.last_recv = now;
                link.healthy = 0;
                next_hb = now + hb;
            } else if (crc == NR_EINVAL) {
                rc = crc;
                self->stop_requested = 1;
                break;
            } else {
                link.reconnect_at = now + nr_backoff_next(&link.delay);
            }
        }
        s_flush_done(self);
        if (self->sock && now >= next_hb) {
            s_send_simple(self, NR_CMD_HEARTBEAT);
            next_hb = now + hb;
        }
        if (self->sock && now - link.last_recv > dead_after) {
            nr_log(NR_LOG_WARN, "broker silent for %lld ms; reconnecting in %lld ms",
                   now - link.last_recv, (long long)link.delay.delay_ms);
            s_drop_link(self, &link, now, nr_backoff_next(&link.delay));
        }
        if (stopping) {
            pthread_mutex_lock(&self->mu);
            int idle = self->busy == 0 && !self->pending.head && (!self->done.head || !self->sock);
            pthread_mutex_unlock(&self->mu);
            if (idle) break;
            if (now >= stop_deadline) {
                nr_log(NR_LOG_WARN, "grace period over with jobs still running; leaving them");
                self->abandoned = 1;
                rc = NR_ETIMEDOUT;
                break;
            }
        }

        long long wake = self->sock ? next_hb : link.reconnect_at;
        if (self->sock && link.last_recv + dead_after + 1 < wake) wake = link.last_recv + dead_after + 1;
        if (stopping && stop_deadline < wake) wake = stop_deadline;
        long long timeout = wake - now;
        if (timeout < 0) timeout = 0;
        zmq_pollitem_t items[2] = {{NULL, self->pipe[0], ZMQ_POLLIN, 0},
                                   {self->sock, 0, ZMQ_POLLIN, 0}};
        int n = zmq_poll(items, self->sock ? 2 : 1, (long)timeout);
        if (n < 0) {
            if (errno == EINTR) continue;
            nr_log(NR_LOG_ERROR, "zmq_poll: %s", zmq_strerror(errno));
            rc = NR_EIO;
            break;
        }
        if (items[0].revents & ZMQ_POLLIN) s_drain_pipe(self);
        if (self->sock && (items[1].revents & ZMQ_POLLIN)) {
            /* Read everything queued; a DISCONNECT may close the socket. */
            for (int guard = 0; self->sock && guard < 1000; guard++) {
                int events = 0;
                size_t len = sizeof events;
                if (zmq_getsockopt(self->sock, ZMQ_EVENTS, &events, &len) != 0 ||
                    !(events & ZMQ_POLLIN))
                    break;
                s_handle_incoming(self, &link);
            }
        }
    }

    s_flush_done(self);
    if (self->sock) {
        s_send_simple(self, NR_CMD_DISCONNECT);
        s_close_socket(self, 1000);
    }
    nr_log(NR_LOG_INFO, "stopped after %lu job(s)", nr_worker_jobs_done(self));
    return rc;
}

void nr_worker_destroy(nr_worker_t **self_p) {
    if (!self_p || !*self_p) return;
    nr_worker_t *self = *self_p;
    *self_p = NULL;
    if (s_signal_worker == self) s_signal_worker = NULL;
    if (self->abandoned) {
        /* Handler threads still use the worker: keep its memory. */
        s_close_socket(self, 0);
        return;
    }
    pthread_mutex_lock(&self->mu);
    self->quit = 1;
    nr_wk_item_t *it;
    while ((it = nr_wk_list_pop(&self->pending))) s_item_destroy(&it); /* threads never saw them */
    pthread_cond_broadcast(&self->cond);
    pthread_mutex_unlock(&self->mu);
    for (int i = 0; i < self->threads_started; i++) pthread_join(self->threads[i], NULL);
    while ((it = nr_wk_list_pop(&self->done))) s_item_destroy(&it);
    s_close_socket(self, 0);
    if (self->zctx) zmq_ctx_term(self->zctx);
    for (int i = 0; i < 2; i++)
        if (self->pipe[i] >= 0) close(self->pipe[i]);
    free(self->threads);
    pthread_cond_destroy(&self->cond);
    pthread_mutex_destroy(&self->mu);
    free(self);
}

int nr_worker_main(const nr_worker_stage_t *stage, const nr_worker_settings_t *settings) {
    char err[512] = "";
    nr_worker_t *w = nr_worker_new(stage, settings, err, sizeof err);
    if (!w) {
        nr_log(NR_LOG_ERROR, "%s", err);
        return 1;
    }
    nr_worker_handle_signals(w);
    int rc = nr_worker_run(w);
    nr_worker_destroy(&w);
    return rc == 0 ? 0 : 1;
}
