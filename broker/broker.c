/* Broker logic: requests, dispatch by credit, leases, retries, the record. */
#include "broker/broker.h"
#include "broker/broker_metrics.h"
#include "broker/queue.h"
#include "common/error.h"
#include "common/backoff.h"
#include "common/log.h"
#include "common/ratelimit.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* A message held until the Redis writes it depends on are settled: a
 * client REPLY (sent as is), the answer to a SUBMIT (built once its write
 * is settled: acknowledged, or refused) and a JOB (built from the lease,
 * which may have been revoked meanwhile). */
typedef enum { S_OUT_REPLY, S_OUT_ACK, S_OUT_JOB } s_out_kind_t;

typedef struct {
    s_out_kind_t kind;
    uint8_t identity[NR_BROKER_IDENTITY_MAX];
    size_t identity_size;
    nr_msg_t msg; /* REPLY: the reply; ACK: seq, id, message; JOB: id, attempt, deadline_ms */
} s_out_t;

typedef struct {
    s_out_t *v;
    size_t len, cap;
} s_outbox_t;

#define S_FLIGHTS_MAX 8 /* pipelined batches sent to Redis before the oldest is answered */

struct nr_broker {
    nr_broker_params_t params;
    nr_store_t *store; /* borrowed; NULL = memory only */
    nr_broker_send_fn send;
    void *send_ctx;
    nr_broker_jobs_t *jobs;    /* unfinished jobs, and finished ones not yet saved */
    nr_broker_stage_t *stages;
    int accepting;
    int recovered;             /* the store's pending jobs are loaded */
    int need_flush;            /* some job is dirty */
    int64_t next_timer_ms;
    uint64_t dispatch_seq;
    unsigned rand_state;
    /* Counters since start, for STATS when the store cannot answer. */
    uint64_t count_done, count_failed, count_cancelled;
    nr_metrics_t *metrics;     /* borrowed; NULL = no metrics (broker_metrics.h) */
    /* Group commit (see s_commit): out waits for the queued Redis writes;
     * each flight, oldest first, for a batch sent and not yet answered. */
    s_outbox_t out, spare;     /* spare: the outbox being sent, kept for reuse */
    struct s_flight {
        size_t saves;          /* how many saves the batch holds */
        s_outbox_t out;        /* what waits for them */
        int64_t sent_ms;
    } flights[S_FLIGHTS_MAX];
    size_t flight_first, flights_len; /* a ring */
    int depth;                 /* nested entry points; the outermost commits */
    int committing;
    int64_t now;               /* time of the current entry point */
    nr_ratelimit_t *limit;     /* new jobs per client; NULL = no limit */
};

#define S_FLIGHT_WAIT_MS 500 /* pipelined writes unanswered this long: wait for them */

static int s_save(nr_broker_t *self, nr_broker_job_t *job, int out_index, uint8_t **out,
                  size_t out_size, const char *counter);
static int s_dispatch(nr_broker_t *self, nr_broker_stage_t *stage, int64_t now);
static void s_commit(nr_broker_t *self, int wait);

/* ---- helpers ---------------------------------------------------------- */

static long s_stage_deadline(const nr_broker_params_t *p, const char *name) {
    size_t len = strlen(name);
    const char *s = p->stage_deadlines;
    while (s && *s) {
        const char *eq = strchr(s, '=');
        if (!eq) break;
        if ((size_t)(eq - s) == len && !strncmp(s, name, len)) {
            long v = strtol(eq + 1, NULL, 10);
            if (v > 0) return v;
        }
        s = strchr(eq, ',');
        if (s) s++;
    }
    return p->job_deadline_ms;
}

static int s_check_deadlines(const char *spec, char *err, size_t errlen) {
    const char *s = spec;
    while (s && *s) {
        const char *eq = strchr(s, '=');
        const char *comma = strchr(s, ',');
        if (!eq || (comma && comma < eq) || eq == s)
            return nr_seterr(err, errlen, NR_EINVAL, "stage-deadlines: expected stage=ms[,...]");
        char *end;
        long v = strtol(eq + 1, &end, 10);
        if (v <= 0 || (end != comma && *end))
            return nr_seterr(err, errlen, NR_EINVAL, "stage-deadlines: bad value after '%.*s='",
                             (int)(eq - s), s);
        s = comma ? comma + 1 : NULL;
    }
    return 0;
}

static nr_broker_stage_t *s_stage(nr_broker_t *self, const char *name, int create) {
    for (nr_broker_stage_t *s = self->stages; s; s = s->next)
        if (!strcmp(s->name, name)) return s;
    if (!create) return NULL;
    nr_broker_stage_t *s = nr_broker_stage_new(name, s_stage_deadline(&self->params, name));
    if (!s) return NULL;
    s->next = self->stages;
    self->stages = s;
    return s;
}

static nr_broker_worker_t *s_worker(nr_broker_t *self, const uint8_t *identity, size_t size) {
    for (nr_broker_stage_t *s = self->stages; s; s = s->next)
        for (nr_broker_worker_t *w = s->workers; w; w = w->next)
            if (w->identity_size == size && !memcmp(w->identity, identity, size)) return w;
    return NULL;
}

static long s_stage_workers(nr_broker_t *self, const char *name) {
    nr_broker_stage_t *s = s_stage(self, name, 0);
    return s ? (long)s->workers_len : 0;
}

static void s_random_id(nr_broker_t *self, char *out, size_t size) {
    uint8_t bytes[16];
    if (getrandom(bytes, sizeof bytes, 0) != (ssize_t)sizeof bytes)
        for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (uint8_t)rand_r(&self->rand_state);
    for (size_t i = 0; i < sizeof bytes && 2 * i + 2 < size; i++)
        snprintf(out + 2 * i, 3, "%02x", bytes[i]);
}

/* Retry delay before attempt n+1: base * 2^(n-1), capped, half of it jittered. */
static int64_t s_backoff(nr_broker_t *self, uint32_t attempts) {
    int64_t d = nr_backoff_nth(self->params.retry_backoff_ms, self->params.retry_backoff_max_ms, attempts);
    return d <= 1 ? d : nr_backoff_jitter(d, (uint32_t)rand_r(&self->rand_state));
}

static int s_send(nr_broker_t *self, nr_broker_side_t side, const uint8_t *identity, size_t size,
                  const nr_msg_t *msg) {
    int rc = self->send(self->send_ctx, side, identity, size, msg);
    if (rc && rc != NR_ECONNECT)
        nr_log(NR_LOG_WARN, "sending %s to a %s failed: %s", nr_proto_cmd_name(msg->cmd),
               side == NR_BROKER_CLIENTS ? "client" : "worker", nr_strerror(rc));
    return rc;
}

/* Makes room for one more held message. 0 or NR_ENOMEM. */
static int s_reserve(nr_broker_t *self) {
    s_outbox_t *o = &self->out;
    if (o->len < o->cap) return 0;
    size_t cap = o->cap ? o->cap * 2 : 64;
    s_out_t *v = realloc(o->v, cap * sizeof *v);
    if (!v) return NR_ENOMEM;
    o->v = v;
    o->cap = cap;
    return 0;
}

/* Holds msg (taken: left empty) for a peer until the next commit. */
static int s_post(nr_broker_t *self, s_out_kind_t kind, const uint8_t *identity, size_t size,
                  nr_msg_t *msg) {
    if (s_reserve(self)) return NR_ENOMEM;
    s_out_t *e = &self->out.v[self->out.len++];
    e->kind = kind;
    e->identity_size = size < sizeof e->identity ? size : sizeof e->identity;
    memcpy(e->identity, identity, e->identity_size);
    e->msg = *msg;
    nr_proto_msg_init(msg);
    return 0;
}

static void s_outbox_free(s_outbox_t *o) {
    for (size_t i = 0; i < o->len; i++) nr_proto_msg_clear(&o->v[i].msg);
    free(o->v);
    memset(o, 0, sizeof *o);
}

/* Returns s_send's code: NR_ECONNECT means the worker is gone. */
static int s_send_cmd(nr_broker_t *self, nr_broker_worker_t *w, nr_cmd_t cmd, int64_t now) {
    w->sent = 1;
    w->heartbeat_ms = now + self->params.heartbeat_ms;
    nr_msg_t m;
    nr_proto_msg_init(&m);
    m.cmd = cmd;
    int rc = s_send(self, NR_BROKER_WORKERS, w->identity, w->identity_size, &m);
    nr_proto_msg_clear(&m);
    return rc;
}

static void s_reply(nr_broker_t *self, const uint8_t *identity, size_t size, const nr_msg_t *req,
                    nr_msg_t *rep, int code, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static void s_reply(nr_broker_t *self, const uint8_t *identity, size_t size, const nr_msg_t *req,
                    nr_msg_t *rep, int code, const char *fmt, ...) {
    rep->cmd = NR_CMD_REPLY;
    rep->seq = req ? req->seq : 0;
    if (req && !rep->id[0]) snprintf(rep->id, sizeof rep->id, "%s", req->id);
    rep->code = code;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(rep->message, sizeof rep->message, fmt, ap);
        va_end(ap);
    }
    if (s_post(self, S_OUT_REPLY, identity, size, rep))
        nr_log(NR_LOG_ERROR, "out of memory: %s reply dropped (the client retries)",
               nr_errname(code));
}

/* A finished job that is safely stored leaves memory. */
static void s_maybe_evict(nr_broker_t *self, nr_broker_job_t *job) {
    if (!self->store || !nr_job_is_final(job) || job->dirty || job->saving) return;
    nr_broker_jobs_remove(self->jobs, job);
    nr_broker_job_destroy(&job);
}

/* Queues the job's state change (and takes *out, the output of route index
 * out_index); it is written at the next commit, before anything that
 * depends on it is sent. Memory only: kept at once. */
static int s_save(nr_broker_t *self, nr_broker_job_t *job, int out_index, uint8_t **out,
                  size_t out_size, const char *counter) {
    if (!self->store) {
        /* Memory only: keep outputs so FETCH works. */
        if (out && *out && out_index >= 0 && out_index < NR_PROTO_ROUTE_MAX) {
            free(job->unsaved[out_index]);
            job->unsaved[out_index] = *out;
            job->unsaved_size[out_index] = out_size;
            *out = NULL;
        }
        if (out) free(*out), *out = NULL;
        job->dirty = job->input_unsaved = job->reset = 0;
        return 0;
    }
    int rc = nr_store_save(self->store, job, out_index, out, out_size, counter);
    if (rc) {
        self->need_flush = 1;
        nr_log(NR_LOG_WARN, "job %s: state %s kept in memory until redis is back (%s)", job->id,
               nr_job_state_name(job->state), nr_store_error(self->store));
    }
    return rc;
}

/* Takes a running job off its worker; the worker's slot stays taken until
 * it answers (or the lease's grace passes). */
static void s_release(nr_broker_t *self, nr_broker_job_t *job) {
    if (job->state == NR_JOB_RUNNING) {
        nr_broker_stage_t *s = s_stage(self, nr_broker_job_stage(job), 0);
        if (s && s->running) s->running--;
        if (job->worker) nr_broker_worker_revoke(job->worker, job);
        job->worker = NULL;
    } else if (job->state == NR_JOB_QUEUED && job->in_queue) {
        nr_broker_stage_t *s = s_stage(self, nr_broker_job_stage(job), 0);
        if (s) nr_broker_stage_remove(s, job);
    }
}

static void s_fail(nr_broker_t *self, nr_broker_job_t *job, int code, const char *message,
                   int64_t now) {
    s_release(self, job);
    job->state = NR_JOB_FAILED;
    job->error = code;
    snprintf(job->error_message, sizeof job->error_message, "%s", message);
    job->updated_ms = now;
    free(job->input);
    job->input = NULL;
    self->count_failed++;
    nr_metrics_add(self->metrics, NR_BM_FAILURES, 1, "stage", nr_broker_job_stage(job), "code",
                   nr_errname(code), NULL);
    nr_log(NR_LOG_INFO, "job %s failed at %s: %s: %s", job->id, nr_broker_job_stage(job),
           nr_errname(code), message);
    s_save(self, job, -1, NULL, 0, "failed"); /* leaves memory once written (s_on_saved) */
}

/* An attempt went wrong (worker lost, deadline, retryable FAIL): queue it
 * again after a backoff, or fail it when the attempts are used up. */
static void s_retry(nr_broker_t *self, nr_broker_job_t *job, int code, const char *message,
                    int64_t now) {
    if (job->attempts >= (uint32_t)self->params.max_attempts) {
        char text[NR_PROTO_MESSAGE_MAX + 1];
        snprintf(text, sizeof text, "attempt limit reached (%" PRIu32 "); last error: %s: %.900s",
                 job->attempts, nr_errname(code), message);
        s_fail(self, job, NR_EATTEMPTS, text, now);
        return;
    }
    s_release(self, job);
    nr_broker_stage_t *s = s_stage(self, nr_broker_job_stage(job), 1);
    job->state = NR_JOB_QUEUED;
    job->error = code;
    snprintf(job->error_message, sizeof job->error_message, "%s", message);
    job->updated_ms = now;
    job->ready_ms = now + s_backoff(self, job->attempts);
    if (s) nr_broker_stage_push(s, job, 0);
    nr_metrics_add(self->metrics, NR_BM_RETRIES, 1, "stage", nr_broker_job_stage(job), NULL);
    nr_log(NR_LOG_INFO, "job %s: %s attempt %" PRIu32 " failed (%s: %s); retry in %" PRId64 " ms",
           job->id, nr_broker_job_stage(job), job->attempts, nr_errname(code), message,
           job->ready_ms - now);
    s_save(self, job, -1, NULL, 0, "retried");
}

/* ---- lifecycle -------------------------------------------------------- */

void nr_broker_default_params(nr_broker_params_t *p) {
    memset(p, 0, sizeof *p);
    p->heartbeat_ms = 1000;
    p->heartbeat_liveness = 3;
    p->job_deadline_ms = 60000;
    p->max_attempts = 3;
    p->queue_bound = 1000;
    p->retry_backoff_ms = 1000;
    p->retry_backoff_max_ms = 32000;
    p->client_burst = 100;
}

nr_broker_t *nr_broker_new(const nr_broker_params_t *params, nr_store_t *store,
                           nr_broker_send_fn send, void *send_ctx, char *err, size_t errlen) {
    if (!params || !send || params->heartbeat_ms < 1 || params->heartbeat_liveness < 1 ||
        params->job_deadline_ms < 1 || params->max_attempts < 1 || params->queue_bound < 1 ||
        params->retry_backoff_ms < 0 || params->retry_backoff_max_ms < params->retry_backoff_ms ||
        params->client_rate < 0 || params->client_burst < 1) {
        nr_seterr(err, errlen, NR_EINVAL, "broker parameters out of range");
        return NULL;
    }
    if (s_check_deadlines(params->stage_deadlines, err, errlen)) return NULL;
    nr_broker_t *self = calloc(1, sizeof *self);
    if (!self) goto err;
    self->params = *params;
    self->store = store;
    self->send = send;
    self->send_ctx = send_ctx;
    self->accepting = 1;
    self->recovered = store == NULL;
    self->rand_state = params->seed;
    if (!self->rand_state) {
        if (getrandom(&self->rand_state, sizeof self->rand_state, 0) != sizeof self->rand_state)
            self->rand_state = 0x9e3779b9u;
    }
    self->jobs = nr_broker_jobs_new();
    if (!self->jobs) goto err;
    if (params->client_rate > 0 &&
        !(self->limit = nr_ratelimit_new((double)params->client_rate, (double)params->client_burst, 65536)))
        goto err;
    return self;
err:
    nr_seterr(err, errlen, NR_ENOMEM, "creating the broker");
    nr_broker_destroy(&self);
    return NULL;
}

void nr_broker_destroy(nr_broker_t **p) {
    if (!p || !*p) return;
    nr_broker_t *self = *p;
    /* Saves still queued point at jobs about to go (a broker dropped
     * mid-batch, as tests do to mimic a crash). */
    if (self->store) nr_store_discard(self->store);
    s_outbox_free(&self->out);
    for (size_t i = 0; i < S_FLIGHTS_MAX; i++) s_outbox_free(&self->flights[i].out);
    s_outbox_free(&self->spare);
    while (self->stages) {
        nr_broker_stage_t *s = self->stages;
        self->stages = s->next;
        while (s->head) nr_broker_stage_remove(s, s->head);
        nr_broker_stage_destroy(&s);
    }
    nr_broker_jobs_destroy(&self->jobs);
    nr_ratelimit_destroy(&self->limit);
    free(self);
    *p = NULL;
}

typedef struct {
    nr_broker_t *self;
    int64_t now;
    size_t resumed;
} s_recover_t;

static void s_recover_one(const char *id, void *arg) {
    s_recover_t *r = arg;
    nr_broker_t *self = r->self;
    if (nr_broker_jobs_find(self->jobs, id)) return;
    nr_broker_job_t *job = NULL;
    int rc = nr_store_load(self->store, id, &job);
    if (rc) {
        if (rc != NR_EREDIS)
            nr_log(NR_LOG_WARN, "pending job %s has no usable record (%s); skipped", id,
                   nr_strerror(rc));
        return;
    }
    if (nr_job_is_final(job)) {
        /* A stale pending entry: saving the final state removes it (the job
         * leaves memory once that is written). */
        nr_broker_jobs_add(self->jobs, job);
        s_save(self, job, -1, NULL, 0, NULL);
        return;
    }
    if (job->state == NR_JOB_RUNNING) {
        job->state = NR_JOB_QUEUED; /* attempts kept */
        job->updated_ms = r->now;
        nr_broker_jobs_add(self->jobs, job);
        s_save(self, job, -1, NULL, 0, NULL);
    } else {
        nr_broker_jobs_add(self->jobs, job);
    }
    job->ready_ms = 0;
    nr_broker_stage_t *s = s_stage(self, nr_broker_job_stage(job), 1);
    if (s) nr_broker_stage_push(s, job, 0);
    r->resumed++;
}

static int s_recover(nr_broker_t *self, int64_t now) {
    s_recover_t r = {self, now, 0};
    int rc = nr_store_pending(self->store, s_recover_one, &r);
    if (rc) return rc;
    self->recovered = 1;
    nr_log(NR_LOG_INFO, "resumed %zu unfinished job(s) from redis", r.resumed);
    return 0;
}

/* Every entry point runs between s_enter and s_leave: the outermost
 * s_leave commits (nr_broker_begin/commit make one batch of many). */
static void s_enter(nr_broker_t *self, int64_t now) {
    self->depth++;
    self->now = now;
}

static void s_leave(nr_broker_t *self) {
    if (self->depth > 0 && --self->depth == 0) s_commit(self, !self->params.pipelined);
}

void nr_broker_begin(nr_broker_t *self, int64_t now) { s_enter(self, now); }

void nr_broker_commit(nr_broker_t *self, int64_t now) {
    self->now = now;
    s_leave(self);
}

int nr_broker_start(nr_broker_t *self, int64_t now) {
    if (!self->store) return 0;
    int rc = nr_store_connect(self->store);
    if (rc) return rc;
    s_enter(self, now);
    rc = s_recover(self, now);
    s_leave(self);
    return rc;
}

void nr_broker_stop_accepting(nr_broker_t *self) { self->accepting = 0; }

/* ---- workers ---------------------------------------------------------- */

/* Removes a worker; jobs it held are retried. */
static void s_worker_delete(nr_broker_t *self, nr_broker_worker_t *w, int code,
                            const char *reason, int64_t now) {
    char msg[256];
    snprintf(msg, sizeof msg, "worker %s %s", w->label, reason);
    for (uint32_t i = 0; i < w->leases_len; i++) {
        nr_broker_job_t *job = w->leases[i].job;
        w->leases[i].job = NULL;
        if (job && job->state == NR_JOB_RUNNING && job->worker == w) s_retry(self, job, code, msg, now);
    }
    nr_broker_stage_t *s = w->stage;
    if (s) nr_broker_stage_remove_worker(s, w);
    nr_broker_worker_destroy(&w);
}

static void s_on_ready(nr_broker_t *self, const uint8_t *identity, size_t size, nr_msg_t *msg,
                       nr_broker_worker_t *w, int64_t now) {
    if (msg->capacity < 1 || msg->capacity > 1024 || !msg->stage[0]) {
        nr_log(NR_LOG_WARN, "READY with capacity %" PRIu32 " and stage '%s' dropped",
               msg->capacity, msg->stage);
        return;
    }
    if (w && strcmp(w->stage->name, msg->stage)) {
        nr_log(NR_LOG_INFO, "worker %s moves from stage %s to %s", w->label, w->stage->name,
               msg->stage);
        s_worker_delete(self, w, NR_ECONNECT, "changed stage", now);
        w = NULL;
    }
    if (w) {
        nr_broker_worker_set_capacity(w, msg->capacity);
    } else {
        nr_broker_stage_t *s = s_stage(self, msg->stage, 1);
        w = s ? nr_broker_worker_new(identity, size, msg->name, msg->capacity) : NULL;
        if (!w) {
            nr_log(NR_LOG_ERROR, "out of memory registering a worker");
            return;
        }
        nr_broker_stage_add_worker(s, w);
        w->heartbeat_ms = now + self->params.heartbeat_ms;
        nr_log(NR_LOG_INFO, "worker %s ready for stage %s (capacity %" PRIu32 ")", w->label,
               msg->stage, msg->capacity);
    }
    w->expires_ms = now + self->params.heartbeat_ms * self->params.heartbeat_liveness;
    s_dispatch(self, w->stage, now);
}

/* Finds and drops the lease of a RESULT/FAIL. Returns the job when the
 * answer is current, NULL (logged) when it is stale. */
static nr_broker_job_t *s_take_answer(nr_broker_t *self, nr_broker_worker_t *w,
                                      const nr_msg_t *msg) {
    if (strcmp(msg->stage, w->stage->name)) {
        nr_log(NR_LOG_WARN, "%s for job %s names stage %s but worker %s serves %s: dropped",
               nr_proto_cmd_name(msg->cmd), msg->id, msg->stage, w->label, w->stage->name);
        return NULL;
    }
    nr_broker_lease_t *l = nr_broker_worker_find_lease(w, msg->id, msg->attempt);
    nr_broker_job_t *job = l ? l->job : NULL;
    if (l) nr_broker_worker_drop_lease(w, l);
    if (!job) {
        nr_log(NR_LOG_INFO, "stale %s for job %s attempt %" PRIu32 " from %s dropped "
               "(lease revoked or unknown)", nr_proto_cmd_name(msg->cmd), msg->id, msg->attempt,
               w->label);
        return NULL;
    }
    if (job->state != NR_JOB_RUNNING || job->attempts != msg->attempt ||
        strcmp(nr_broker_job_stage(job), msg->stage) || job->worker != w) {
        nr_log(NR_LOG_INFO, "stale %s for job %s (%s attempt %" PRIu32 ", job is %s at %s "
               "attempt %" PRIu32 ") dropped", nr_proto_cmd_name(msg->cmd), msg->id, msg->stage,
               msg->attempt, nr_job_state_name(job->state), nr_broker_job_stage(job),
               job->attempts);
        return NULL;
    }
    return job;
}

static void s_on_result(nr_broker_t *self, nr_broker_worker_t *w, nr_msg_t *msg, int64_t now) {
    nr_broker_job_t *job = s_take_answer(self, w, msg);
    if (!job) return;
    nr_broker_stage_t *s = w->stage;
    if (s->running) s->running--;
    job->worker = NULL;
    const char *stage = msg->stage;
    char key[NR_PROTO_NAME_MAX + NR_PROTO_KEY_MAX + 2], num[32];
    for (uint32_t i = 0; i < msg->kv_len; i++) {
        snprintf(key, sizeof key, "%s.%s", stage, msg->kv[i].key);
        nr_broker_job_set(job, key, msg->kv[i].value);
    }
    snprintf(key, sizeof key, "%s.attempts", stage);
    snprintf(num, sizeof num, "%" PRIu32, job->attempts);
    nr_broker_job_set(job, key, num);
    snprintf(key, sizeof key, "%s.worker", stage);
    nr_broker_job_set(job, key, w->label);

    /* The output frame becomes the next stage's input. */
    uint8_t *out = NULL;
    size_t out_size = 0;
    if (msg->frames_len > 0) {
        out = msg->frames[0].data;
        out_size = msg->frames[0].size;
        msg->frames[0].data = NULL;
    }
    if (!out) out = calloc(1, 1); /* no frame: an empty output */
    int out_index = (int)job->stage_index;
    /* updated_ms is the dispatch time while a job runs. */
    nr_metrics_observe(self->metrics, NR_BM_STAGE_DURATION, (double)(now - job->updated_ms) / 1000.0,
                       "stage", stage, NULL);
    job->updated_ms = now;
    job->error = 0;
    job->error_message[0] = '\0';
    if (job->stage_index + 1 >= job->route_len) {
        job->state = NR_JOB_DONE;
        self->count_done++;
        nr_log(NR_LOG_DEBUG, "job %s done", job->id);
        s_save(self, job, out_index, &out, out_size, "done"); /* takes out */
        free(job->input);
        job->input = NULL;
    } else {
        job->stage_index++;
        job->attempts = 0;
        job->state = NR_JOB_QUEUED;
        job->ready_ms = now;
        nr_log(NR_LOG_DEBUG, "job %s: %s done, next %s", job->id, stage, nr_broker_job_stage(job));
        /* The output is saved and is the next stage's input: keep a copy
         * (without memory for one, dispatch reads it back from Redis). */
        uint8_t *input = out ? malloc(out_size ? out_size : 1) : NULL;
        if (input) memcpy(input, out, out_size);
        s_save(self, job, out_index, &out, out_size, NULL); /* takes out */
        nr_broker_job_take_input(job, &input, out_size);
        nr_broker_stage_t *next = s_stage(self, nr_broker_job_stage(job), 1);
        if (next) {
            nr_broker_stage_push(next, job, 0);
            s_dispatch(self, next, now);
        }
    }
    s_dispatch(self, s, now);
}

static void s_on_fail(nr_broker_t *self, nr_broker_worker_t *w, nr_msg_t *msg, int64_t now) {
    nr_broker_job_t *job = s_take_answer(self, w, msg);
    if (!job) return;
    int code = msg->code < 0 && msg->code >= NR_ERRNO_MIN ? msg->code : NR_EINTERNAL;
    char text[NR_PROTO_MESSAGE_MAX + 1];
    snprintf(text, sizeof text, "%s", msg->message[0] ? msg->message : nr_strerror(code));
    nr_broker_stage_t *s = w->stage;
    if (msg->retry) s_retry(self, job, code, text, now);
    else s_fail(self, job, code, text, now);
    s_dispatch(self, s, now);
}

static void s_worker_message(nr_broker_t *self, const uint8_t *identity, size_t identity_size,
                             nr_msg_t *msg, int64_t now) {
    nr_broker_worker_t *w = s_worker(self, identity, identity_size);
    if (msg->cmd == NR_CMD_READY) {
        s_on_ready(self, identity, identity_size, msg, w, now);
        return;
    }
    if (!w) {
        /* Unknown peer (for example after a broker restart): tell it to
         * start over with READY. */
        if (msg->cmd != NR_CMD_DISCONNECT) {
            nr_log(NR_LOG_INFO, "%s from an unregistered worker: sent DISCONNECT",
                   nr_proto_cmd_name(msg->cmd));
            nr_msg_t m;
            nr_proto_msg_init(&m);
            m.cmd = NR_CMD_DISCONNECT;
            s_send(self, NR_BROKER_WORKERS, identity, identity_size, &m);
        }
        return;
    }
    w->expires_ms = now + self->params.heartbeat_ms * self->params.heartbeat_liveness;
    int sent_before = w->sent;
    w->sent = 0;
    switch (msg->cmd) {
    case NR_CMD_HEARTBEAT:
        /* Answer in kind unless something else went out since its last
         * message: a worker with a shorter interval than ours then still
         * hears from us once per its interval. */
        if (!sent_before) s_send_cmd(self, w, NR_CMD_HEARTBEAT, now);
        w->sent = 0;
        break;
    case NR_CMD_RESULT:
        s_on_result(self, w, msg, now);
        break;
    case NR_CMD_FAIL:
        s_on_fail(self, w, msg, now);
        break;
    case NR_CMD_DISCONNECT:
        nr_log(NR_LOG_INFO, "worker %s disconnected", w->label);
        nr_broker_stage_t *s = w->stage;
        s_worker_delete(self, w, NR_ECONNECT, "disconnected", now);
        s_dispatch(self, s, now);
        break;
    default:
        nr_log(NR_LOG_WARN, "unexpected %s from worker %s dropped", nr_proto_cmd_name(msg->cmd),
               w->label);
        break;
    }
}

void nr_broker_worker_message(nr_broker_t *self, const uint8_t *identity, size_t identity_size,
                              nr_msg_t *msg, int64_t now) {
    s_enter(self, now);
    s_worker_message(self, identity, identity_size, msg, now);
    s_leave(self);
}

/* ---- dispatch --------------------------------------------------------- */

/* Hands one job to one worker. Returns 0, or NR_EREDIS when its input
 * cannot be read now (the stage stops dispatching until later). */
static int s_dispatch_one(nr_broker_t *self, nr_broker_stage_t *s, nr_broker_job_t *job,
                          nr_broker_worker_t *w, int64_t now) {
    if (!job->input) {
        const char *from = job->stage_index ? job->route[job->stage_index - 1] : NULL;
        int rc = NR_ENOTFOUND;
        if (self->store) rc = nr_store_get_blob(self->store, job->id, from, &job->input,
                                                &job->input_size);
        if (rc == NR_ENOTFOUND || rc == NR_ENOMEM) {
            char text[200];
            snprintf(text, sizeof text, "input of stage %s is missing from the store", s->name);
            s_fail(self, job, NR_EINTERNAL, text, now);
            return 0;
        }
        if (rc) return rc;
    }
    /* The stage's deadline, or the job's own option deadline_ms. */
    long deadline = s->deadline_ms;
    const char *opt = nr_broker_job_get(job, "opt.deadline_ms");
    if (opt) {
        char *end;
        long v = strtol(opt, &end, 10);
        if (end != opt && !*end && v > 0 && v <= 86400000) deadline = v;
    }
    nr_broker_stage_remove(s, job);
    /* updated_ms is the time a queued job entered its queue. */
    nr_metrics_observe(self->metrics, NR_BM_QUEUE_WAIT,
                       (double)(now > job->updated_ms ? now - job->updated_ms : 0) / 1000.0,
                       "stage", s->name, NULL);
    job->attempts++;
    job->state = NR_JOB_RUNNING;
    job->worker = w;
    job->updated_ms = now;
    job->deadline_ms = now + deadline;
    s->running++;
    /* A revoked lease keeps the worker's slot until it answers, or for one
     * more deadline at most. */
    nr_broker_worker_add_lease(w, job, job->attempts, job->deadline_ms + deadline);
    w->last_dispatch = ++self->dispatch_seq;
    w->sent = 1;
    w->heartbeat_ms = now + self->params.heartbeat_ms;

    char key[NR_PROTO_NAME_MAX + 16], num[32];
    snprintf(key, sizeof key, "%s.attempts", s->name);
    snprintf(num, sizeof num, "%" PRIu32, job->attempts);
    nr_broker_job_set(job, key, num);
    s_save(self, job, -1, NULL, 0, NULL);

    /* The JOB leaves once the running state is written (s_send_job). */
    nr_msg_t m;
    nr_proto_msg_init(&m);
    snprintf(m.id, sizeof m.id, "%s", job->id);
    m.attempt = job->attempts;
    m.deadline_ms = (uint32_t)deadline;
    nr_log(NR_LOG_DEBUG, "job %s: %s attempt %" PRIu32 " to %s", job->id, s->name, job->attempts,
           w->label);
    if (s_post(self, S_OUT_JOB, w->identity, w->identity_size, &m))
        nr_log(NR_LOG_ERROR, "out of memory: JOB %s not sent (its deadline requeues it)", job->id);
    return 0;
}

/* Sends a held JOB, built from its lease: a lease revoked meanwhile
 * (cancel, requeue) is dropped unsent, so the worker's slot is free. */
static void s_send_job(nr_broker_t *self, s_out_t *e) {
    nr_broker_worker_t *w = s_worker(self, e->identity, e->identity_size);
    nr_broker_lease_t *l = w ? nr_broker_worker_find_lease(w, e->msg.id, e->msg.attempt) : NULL;
    if (!l) return; /* the worker is gone and its jobs requeued */
    nr_broker_stage_t *s = w->stage;
    if (!l->job) {
        nr_broker_worker_drop_lease(w, l);
        s_dispatch(self, s, self->now);
        return;
    }
    nr_broker_job_t *job = l->job;
    nr_msg_t m;
    nr_proto_msg_init(&m);
    m.cmd = NR_CMD_JOB;
    snprintf(m.id, sizeof m.id, "%s", job->id);
    snprintf(m.stage, sizeof m.stage, "%s", s->name);
    m.attempt = e->msg.attempt;
    m.deadline_ms = e->msg.deadline_ms;
    for (uint32_t i = 0; i < job->fields_len; i++)
        if (!strncmp(job->fields[i].key, "opt.", 4))
            nr_proto_kv_add(&m, job->fields[i].key + 4, job->fields[i].value);
    /* Lend the input to the message without a copy. */
    m.frames[0].data = job->input;
    m.frames[0].size = job->input_size;
    m.frames_len = 1;
    int rc = s_send(self, NR_BROKER_WORKERS, w->identity, w->identity_size, &m);
    m.frames[0].data = NULL;
    m.frames_len = 0;
    nr_proto_msg_clear(&m);
    if (rc == NR_ECONNECT) {
        s_worker_delete(self, w, NR_ECONNECT, "is gone (unroutable)", self->now);
        s_dispatch(self, s, self->now);
    }
}

/* Hands ready jobs to workers with room. Returns 1 when a worker still
 * has room (so the jobs left queued wait for a retry time), else 0. */
static int s_dispatch(nr_broker_t *self, nr_broker_stage_t *s, int64_t now) {
    if (!s) return 0;
    for (;;) {
        nr_broker_worker_t *w = nr_broker_stage_pick_worker(s);
        if (!w) return 0;
        nr_broker_job_t *job = nr_broker_stage_next_ready(s, now);
        if (!job) return 1;
        if (s_dispatch_one(self, s, job, w, now)) return 1; /* not leased: w still has room */
    }
}

/* ---- clients ---------------------------------------------------------- */

static void s_reply_job(nr_broker_t *self, const uint8_t *identity, size_t size,
                        const nr_msg_t *req, const nr_broker_job_t *job, int code,
                        const char *message, int existing) {
    nr_msg_t rep;
    nr_proto_msg_init(&rep);
    snprintf(rep.id, sizeof rep.id, "%s", job->id);
    nr_broker_job_record(job, &rep, s_stage_workers(self, nr_broker_job_stage(job)));
    if (existing) nr_proto_kv_add(&rep, "existing", "1");
    s_reply(self, identity, size, req, &rep, code, "%s", message ? message : "");
    nr_proto_msg_clear(&rep);
}

static void s_reply_error(nr_broker_t *self, const uint8_t *identity, size_t size,
                          const nr_msg_t *req, int code, const char *message) {
    nr_msg_t rep;
    nr_proto_msg_init(&rep);
    s_reply(self, identity, size, req, &rep, code, "%s", message);
    nr_proto_msg_clear(&rep);
}

/* The job held in memory with this id, or NULL. When its last change is
 * still queued it is settled first, so the answer (or a second SUBMIT, or
 * a CANCEL) sees what Redis holds. */
static nr_broker_job_t *s_find_settled(nr_broker_t *self, const char *id) {
    nr_broker_job_t *job = nr_broker_jobs_find(self->jobs, id);
    if (job && (job->saving || job->submitting)) {
        s_commit(self, 1);
        job = nr_broker_jobs_find(self->jobs, id);
    }
    return job;
}

/* Finds a job in memory or, failing that, in the store (*loaded is then the
 * caller's to destroy). Returns 0, NR_ENOTFOUND or NR_EREDIS. */
static int s_lookup(nr_broker_t *self, const char *id, nr_broker_job_t **job,
                    nr_broker_job_t **loaded) {
    *loaded = NULL;
    *job = s_find_settled(self, id);
    if (*job) return 0;
    if (!self->store) return NR_ENOTFOUND;
    int rc = nr_store_load(self->store, id, loaded);
    *job = *loaded;
    return rc;
}

static void s_on_submit(nr_broker_t *self, const uint8_t *identity, size_t size, nr_msg_t *msg,
                        int64_t now) {
    char text[NR_PROTO_MESSAGE_MAX];
    if (!self->accepting) {
        s_reply_error(self, identity, size, msg, NR_EBUSY, "broker is shutting down; retry later");
        return;
    }
    if (self->store && (!nr_store_is_up(self->store) || !self->recovered)) {
        snprintf(text, sizeof text, "redis unreachable (%s); retry later",
                 nr_store_error(self->store));
        s_reply_error(self, identity, size, msg, NR_EREDIS, text);
        return;
    }
    if (msg->route_len == 0) {
        s_reply_error(self, identity, size, msg, NR_EINVAL, "SUBMIT needs a route");
        return;
    }
    if (msg->frames_len < 1) {
        s_reply_error(self, identity, size, msg, NR_EINVAL, "SUBMIT needs the input as frame 0");
        return;
    }
    if (!msg->id[0]) s_random_id(self, msg->id, sizeof msg->id);

    /* A job held here is answered here; any other id is looked up in Redis
     * first (a check in the turn's pipeline; the write follows in s_ack). */
    nr_broker_job_t *old = s_find_settled(self, msg->id);
    if (old && old->state != NR_JOB_FAILED && old->state != NR_JOB_CANCELLED) {
        s_reply_job(self, identity, size, msg, old, 0, "job exists", 1);
        return;
    }
    int64_t retry_ms = 0;
    if (self->limit && !nr_ratelimit_take(self->limit, msg->peer, now, &retry_ms)) {
        snprintf(text, sizeof text,
                 "client %s is over its limit of %ld new jobs per second (burst %ld, setting "
                 "client-rate); retry in %lld ms",
                 msg->peer[0] ? msg->peer : "(local)", self->params.client_rate, self->params.client_burst,
                 (long long)retry_ms);
        nr_metrics_add(self->metrics, NR_BM_RATE_LIMITED, 1, NULL);
        s_reply_error(self, identity, size, msg, NR_EBUSY, text);
        return;
    }
    nr_broker_stage_t *first = s_stage(self, msg->route[0], 1);
    if (!first) {
        s_reply_error(self, identity, size, msg, NR_ENOMEM, "out of memory");
        return;
    }
    if (first->queued + first->submitting >= (size_t)self->params.queue_bound) {
        snprintf(text, sizeof text, "queue of stage %s is full (%zu jobs); retry later",
                 first->name, first->queued);
        s_reply_error(self, identity, size, msg, NR_EBUSY, text);
        return;
    }
    if (s_reserve(self)) {
        s_reply_error(self, identity, size, msg, NR_ENOMEM, "out of memory");
        return;
    }
    int reset = old != NULL;
    if (old) {
        nr_broker_jobs_remove(self->jobs, old);
        nr_broker_job_destroy(&old);
    }

    nr_broker_job_t *job = nr_broker_job_new(msg->id);
    if (!job) goto nomem;
    for (uint32_t i = 0; i < msg->route_len; i++)
        snprintf(job->route[i], sizeof job->route[i], "%s", msg->route[i]);
    job->route_len = msg->route_len;
    char key[NR_PROTO_KEY_MAX + 8];
    for (uint32_t i = 0; i < msg->kv_len; i++) {
        snprintf(key, sizeof key, "opt.%s", msg->kv[i].key);
        if (nr_broker_job_set(job, key, msg->kv[i].value)) goto nomem;
    }
    job->created_ms = job->updated_ms = now;
    job->ready_ms = now;
    job->reset = reset;
    job->guard = self->store && !reset ? NR_STORE_GUARD : 0;
    job->input_unsaved = 1;
    nr_broker_job_take_input(job, &msg->frames[0].data, msg->frames[0].size);
    if (!job->input && !(job->input = calloc(1, 1))) goto nomem;
    nr_broker_jobs_add(self->jobs, job);
    if (s_save(self, job, -1, NULL, 0, "submitted")) {
        /* Not acknowledged, so not kept. */
        nr_broker_jobs_remove(self->jobs, job);
        nr_broker_job_destroy(&job);
        s_reply_error(self, identity, size, msg, NR_EREDIS, "could not write the job to redis");
        return;
    }
    /* Acknowledged (and queued) by s_ack once the write is settled. */
    job->submitting = 1;
    first->submitting++;
    nr_msg_t ack;
    nr_proto_msg_init(&ack);
    ack.seq = msg->seq;
    snprintf(ack.id, sizeof ack.id, "%s", job->id);
    if (reset) snprintf(ack.message, sizeof ack.message, "rerun");
    s_post(self, S_OUT_ACK, identity, size, &ack); /* room reserved above */
    return;
nomem:
    nr_broker_job_destroy(&job);
    s_reply_error(self, identity, size, msg, NR_ENOMEM, "out of memory");
}

/* Answers a SUBMIT whose id Redis found taken by a live job (the check
 * found it; nothing was written): that job's record with existing=1, as
 * for a job held here. One unfinished in Redis but not held here is a SUBMIT whose write
 * Redis applied although the broker saw it fail: it is resumed as a
 * restart would, or it would wait for the next restart. */
static void s_ack_existing(nr_broker_t *self, s_out_t *e, nr_msg_t *rep) {
    nr_broker_job_t *loaded = NULL;
    int rc = nr_store_load(self->store, e->msg.id, &loaded);
    if (rc) {
        rep->code = rc;
        snprintf(rep->message, sizeof rep->message, "cannot read the job record from redis");
        return;
    }
    nr_broker_job_t *shown = loaded;
    nr_broker_stage_t *adopted_at = NULL;
    if (!nr_job_is_final(loaded)) {
        s_recover_t r = {self, self->now, 0};
        s_recover_one(e->msg.id, &r);
        nr_broker_job_t *adopted = nr_broker_jobs_find(self->jobs, e->msg.id);
        if (adopted) {
            nr_log(NR_LOG_INFO, "job %s was unfinished in redis but not queued here: resumed",
                   e->msg.id);
            shown = adopted;
            adopted_at = s_stage(self, nr_broker_job_stage(adopted), 0);
        }
    }
    nr_broker_job_record(shown, rep, s_stage_workers(self, nr_broker_job_stage(shown)));
    nr_proto_kv_add(rep, "existing", "1");
    snprintf(rep->message, sizeof rep->message, "job exists");
    nr_broker_job_destroy(&loaded);
    if (adopted_at) s_dispatch(self, adopted_at, self->now);
}

/* Goes on with a SUBMIT whose save is settled. After the check of a new
 * id: when free, writes the job and comes back here once that landed; when
 * taken by a live job, forgets this one and answers with that job. After
 * the write: acknowledged and queued, or refused and forgotten when the
 * write failed. */
static void s_ack(nr_broker_t *self, s_out_t *e) {
    nr_broker_job_t *job = nr_broker_jobs_find(self->jobs, e->msg.id);
    if (!job || !job->submitting) return; /* nothing else touches it: cannot happen */
    if ((job->guard == NR_STORE_NEW || job->guard == NR_STORE_REPLACED) && !job->dirty &&
        !job->saving) {
        /* The id is free: write the job now, acknowledge once that landed. */
        if (job->guard == NR_STORE_REPLACED) {
            job->reset = 1;
            snprintf(e->msg.message, sizeof e->msg.message, "rerun");
        }
        job->guard = 0;
        if (!s_reserve(self) && !s_save(self, job, -1, NULL, 0, NULL)) {
            s_post(self, S_OUT_ACK, e->identity, e->identity_size, &e->msg); /* room reserved */
            return;
        }
        job->dirty = 1; /* not written: refused below */
    }
    nr_broker_stage_t *first = s_stage(self, job->route[0], 0);
    if (first && first->submitting) first->submitting--;
    job->submitting = 0;
    nr_msg_t rep;
    nr_proto_msg_init(&rep);
    rep.cmd = NR_CMD_REPLY;
    rep.seq = e->msg.seq;
    snprintf(rep.id, sizeof rep.id, "%s", job->id);
    if (job->dirty || job->saving || !first || job->guard == NR_STORE_EXISTS) {
        int exists = job->guard == NR_STORE_EXISTS && !job->dirty && !job->saving;
        nr_broker_jobs_remove(self->jobs, job);
        nr_broker_job_destroy(&job);
        if (exists) {
            s_ack_existing(self, e, &rep);
        } else {
            rep.code = NR_EREDIS;
            snprintf(rep.message, sizeof rep.message, "could not write the job to redis");
        }
        s_send(self, NR_BROKER_CLIENTS, e->identity, e->identity_size, &rep);
        nr_proto_msg_clear(&rep);
        return;
    }
    int rerun = e->msg.message[0] != '\0';
    nr_broker_stage_push(first, job, 0);
    nr_metrics_add(self->metrics, NR_BM_SUBMITTED, 1, NULL);
    nr_log(NR_LOG_DEBUG, "job %s submitted (%s, %zu bytes)%s", job->id, first->name,
           job->input_size, rerun ? ", rerun" : "");
    nr_broker_job_record(job, &rep, (long)first->workers_len);
    if (rerun) snprintf(rep.message, sizeof rep.message, "rerun");
    s_send(self, NR_BROKER_CLIENTS, e->identity, e->identity_size, &rep);
    nr_proto_msg_clear(&rep);
    s_dispatch(self, first, self->now);
}

static void s_on_status(nr_broker_t *self, const uint8_t *identity, size_t size, nr_msg_t *msg) {
    nr_broker_job_t *job = NULL, *loaded = NULL;
    int rc = s_lookup(self, msg->id, &job, &loaded);
    if (rc) {
        s_reply_error(self, identity, size, msg, rc,
                      rc == NR_ENOTFOUND ? "no such job" : "cannot read the job record from redis");
        return;
    }
    s_reply_job(self, identity, size, msg, job, 0, NULL, 0);
    nr_broker_job_destroy(&loaded);
}

static void s_on_fetch(nr_broker_t *self, const uint8_t *identity, size_t size, nr_msg_t *msg) {
    nr_broker_job_t *job = NULL, *loaded = NULL;
    int rc = s_lookup(self, msg->id, &job, &loaded);
    if (rc) {
        s_reply_error(self, identity, size, msg, rc,
                      rc == NR_ENOTFOUND ? "no such job" : "cannot read the job record from redis");
        return;
    }
    int index = -1;
    if (msg->stage[0]) {
        for (uint32_t i = 0; i < job->route_len; i++)
            if (!strcmp(job->route[i], msg->stage)) index = (int)i;
    } else {
        index = job->state == NR_JOB_DONE ? (int)job->route_len - 1 : (int)job->stage_index - 1;
    }
    nr_msg_t rep;
    nr_proto_msg_init(&rep);
    snprintf(rep.id, sizeof rep.id, "%s", job->id);
    if (index < 0) {
        s_reply(self, identity, size, msg, &rep, NR_ENOTFOUND, "job %s has no output for stage '%s'",
                job->id, msg->stage);
        goto done;
    }
    int finished = job->state == NR_JOB_DONE || (int)job->stage_index > index;
    if (!finished) {
        s_reply(self, identity, size, msg, &rep, NR_ENOTFOUND, "stage %s of job %s has not finished",
                job->route[index], job->id);
        goto done;
    }
    nr_broker_job_record(job, &rep, s_stage_workers(self, nr_broker_job_stage(job)));
    if (job->unsaved[index]) {
        rc = nr_proto_frame_add(&rep, job->unsaved[index], job->unsaved_size[index]);
    } else if (!self->store) {
        rc = NR_ENOTFOUND;
    } else {
        uint8_t *data = NULL;
        size_t n = 0;
        rc = nr_store_get_blob(self->store, job->id, job->route[index], &data, &n);
        if (!rc) rc = nr_proto_frame_take(&rep, &data, n);
        free(data);
    }
    if (rc) {
        nr_proto_msg_clear(&rep);
        snprintf(rep.id, sizeof rep.id, "%s", job->id);
        s_reply(self, identity, size, msg, &rep, rc, "output of stage %s: %s", job->route[index],
                rc == NR_ENOTFOUND ? "expired or missing" : nr_strerror(rc));
        goto done;
    }
    s_reply(self, identity, size, msg, &rep, 0, NULL);
done:
    nr_proto_msg_clear(&rep);
    nr_broker_job_destroy(&loaded);
}

static void s_on_cancel(nr_broker_t *self, const uint8_t *identity, size_t size, nr_msg_t *msg,
                        int64_t now) {
    nr_broker_job_t *job = NULL, *loaded = NULL;
    int rc = s_lookup(self, msg->id, &job, &loaded);
    if (rc) {
        s_reply_error(self, identity, size, msg, rc,
                      rc == NR_ENOTFOUND ? "no such job" : "cannot read the job record from redis");
        return;
    }
    if (nr_job_is_final(job)) {
        s_reply_job(self, identity, size, msg, job, NR_ESTATE, "job has already finished", 0);
        nr_broker_job_destroy(&loaded);
        return;
    }
    if (loaded) {
        /* Unfinished in the store but not in memory: not resumed yet. */
        nr_broker_job_destroy(&loaded);
        s_reply_error(self, identity, size, msg, NR_EREDIS, "job not resumed yet; retry later");
        return;
    }
    s_release(self, job);
    job->state = NR_JOB_CANCELLED;
    job->error = NR_ECANCELLED;
    snprintf(job->error_message, sizeof job->error_message, "cancelled by a client");
    job->updated_ms = now;
    free(job->input);
    job->input = NULL;
    self->count_cancelled++;
    nr_log(NR_LOG_INFO, "job %s cancelled at %s", job->id, nr_broker_job_stage(job));
    s_save(self, job, -1, NULL, 0, "cancelled");
    s_reply_job(self, identity, size, msg, job, 0, NULL, 0); /* sent once written */
}

static void s_on_stats(nr_broker_t *self, const uint8_t *identity, size_t size, nr_msg_t *msg) {
    nr_msg_t rep;
    nr_proto_msg_init(&rep);
    char key[NR_PROTO_KEY_MAX + 1], num[32];
    size_t queued = 0, running = 0, workers = 0;
    for (nr_broker_stage_t *s = self->stages; s; s = s->next) {
        snprintf(key, sizeof key, "queue.%s", s->name);
        snprintf(num, sizeof num, "%zu", s->queued);
        nr_proto_kv_add(&rep, key, num);
        snprintf(key, sizeof key, "running.%s", s->name);
        snprintf(num, sizeof num, "%zu", s->running);
        nr_proto_kv_add(&rep, key, num);
        snprintf(key, sizeof key, "workers.%s", s->name);
        snprintf(num, sizeof num, "%zu", s->workers_len);
        nr_proto_kv_add(&rep, key, num);
        queued += s->queued;
        running += s->running;
        workers += s->workers_len;
    }
    snprintf(num, sizeof num, "%zu", queued);
    nr_proto_kv_add(&rep, "jobs.queued", num);
    snprintf(num, sizeof num, "%zu", running);
    nr_proto_kv_add(&rep, "jobs.running", num);
    snprintf(num, sizeof num, "%zu", workers);
    nr_proto_kv_add(&rep, "workers", num);
    nr_proto_kv_add(&rep, "redis", !self->store ? "none" : nr_store_is_up(self->store) ? "up" : "down");
    nr_proto_kv_add(&rep, "jobs.done", "0");
    nr_proto_kv_add(&rep, "jobs.failed", "0");
    nr_proto_kv_add(&rep, "jobs.cancelled", "0");
    if (!self->store || nr_store_stats(self->store, &rep)) {
        snprintf(num, sizeof num, "%" PRIu64, self->count_done);
        nr_proto_kv_add(&rep, "jobs.done", num);
        snprintf(num, sizeof num, "%" PRIu64, self->count_failed);
        nr_proto_kv_add(&rep, "jobs.failed", num);
        snprintf(num, sizeof num, "%" PRIu64, self->count_cancelled);
        nr_proto_kv_add(&rep, "jobs.cancelled", num);
    }
    s_reply(self, identity, size, msg, &rep, 0, NULL);
    nr_proto_msg_clear(&rep);
}

void nr_broker_client_message(nr_broker_t *self, const uint8_t *identity, size_t identity_size,
                              nr_msg_t *msg, int64_t now) {
    s_enter(self, now);
    switch (msg->cmd) {
    case NR_CMD_SUBMIT:
        s_on_submit(self, identity, identity_size, msg, now);
        break;
    case NR_CMD_STATUS:
        s_on_status(self, identity, identity_size, msg);
        break;
    case NR_CMD_FETCH:
        s_on_fetch(self, identity, identity_size, msg);
        break;
    case NR_CMD_CANCEL:
        s_on_cancel(self, identity, identity_size, msg, now);
        break;
    case NR_CMD_STATS:
        s_on_stats(self, identity, identity_size, msg);
        break;
    default: {
        char text[96];
        snprintf(text, sizeof text, "%s is not a client command", nr_proto_cmd_name(msg->cmd));
        s_reply_error(self, identity, identity_size, msg, NR_EPROTO, text);
    }
    }
    s_leave(self);
}

void nr_broker_client_error(nr_broker_t *self, const uint8_t *identity, size_t identity_size,
                            int code, const char *message) {
    nr_log(NR_LOG_INFO, "malformed client message: %s", message);
    s_enter(self, self->now);
    s_reply_error(self, identity, identity_size, NULL, code, message);
    s_leave(self);
}

/* ---- group commit ------------------------------------------------------ */

/* Called by the store for each save once its reply is read. */
static void s_on_saved(nr_broker_job_t *job, int rc, void *arg) {
    nr_broker_t *self = arg;
    if (job->submitting) return; /* s_ack acknowledges or refuses it */
    if (rc) {
        self->need_flush = 1;
        nr_log(NR_LOG_WARN, "job %s: state %s kept in memory until redis is back (%s)", job->id,
               nr_job_state_name(job->state), nr_store_error(self->store));
        return;
    }
    s_maybe_evict(self, job);
}

/* Sends what *box holds, in order. What this queues (the JOBs of jobs
 * dispatched now) goes to self->out and waits for the next round. */
static void s_out_flush(nr_broker_t *self, s_outbox_t *box) {
    s_outbox_t cur = *box;
    *box = self->spare;
    box->len = 0;
    for (size_t i = 0; i < cur.len; i++) {
        s_out_t *e = &cur.v[i];
        if (e->kind == S_OUT_REPLY) s_send(self, NR_BROKER_CLIENTS, e->identity, e->identity_size, &e->msg);
        else if (e->kind == S_OUT_ACK) s_ack(self, e);
        else s_send_job(self, e);
        nr_proto_msg_clear(&e->msg);
    }
    cur.len = 0;
    self->spare = cur;
}

/* Group commit: every state change queued since the last send is written
 * in one pipelined round trip, each job is settled, and only then go the
 * replies and JOBs that depend on them (an acknowledged SUBMIT is in Redis).
 * Sending can queue more (the first dispatch of new jobs; the requeue when
 * a worker turns out gone): repeat until nothing waits. Without `wait`
 * (params.pipelined) it sends the batch and returns while Redis has
 * batches in flight, so the broker reads the next messages meanwhile and
 * their batch follows at once (Redis answers in order); a later call, when
 * nr_broker_store_fd is readable, settles what was answered. */
static void s_commit(nr_broker_t *self, int wait) {
    if (self->committing) return;
    self->committing = 1;
    for (;;) {
        struct s_flight *f = &self->flights[self->flight_first];
        if (self->flights_len && (wait || nr_store_answered(self->store, f->saves))) {
            nr_store_settle(self->store, f->saves, s_on_saved, self); /* flights need a store */
            self->flight_first = (self->flight_first + 1) % S_FLIGHTS_MAX;
            self->flights_len--;
            s_out_flush(self, &f->out); /* may queue more: the next turn of the loop */
        } else if (self->out.len || nr_store_queued(self->store)) {
            if (!self->flights_len && !nr_store_queued(self->store)) {
                s_out_flush(self, &self->out); /* waits for nothing */
                continue;
            }
            if (self->flights_len == S_FLIGHTS_MAX) {
                if (!wait) break; /* the next turn sends it */
                continue;         /* (wait: the oldest is settled above) */
            }
            /* A batch (possibly of replies only, behind the batches in
             * flight) with what waits for it. */
            struct s_flight *t =
                &self->flights[(self->flight_first + self->flights_len) % S_FLIGHTS_MAX];
            t->saves = self->store ? nr_store_send(self->store) : 0;
            t->sent_ms = self->now;
            s_outbox_t waiting = self->out; /* t->out is empty here */
            self->out = t->out;
            t->out = waiting;
            self->flights_len++;
        } else {
            break;
        }
    }
    self->committing = 0;
}

int nr_broker_store_fd(const nr_broker_t *self) {
    return nr_store_fd(self->store); /* -1 when nothing sent waits for an answer */
}

/* ---- timers ----------------------------------------------------------- */

/* Writes again the jobs whose last write failed (s_on_saved raises
 * need_flush again for any that fail once more). */
static void s_flush(nr_broker_t *self) {
    if (!self->store || !nr_store_is_up(self->store)) return;
    size_t n = nr_broker_jobs_count(self->jobs), queued = 0;
    nr_broker_job_t **list = malloc((n ? n : 1) * sizeof *list);
    if (!list) return;
    n = nr_broker_jobs_list(self->jobs, list, n);
    self->need_flush = 0;
    for (size_t i = 0; i < n; i++) {
        if (!list[i]->dirty) continue;
        if (s_save(self, list[i], -1, NULL, 0, NULL)) {
            if (!nr_store_is_up(self->store)) break;
        } else {
            queued++;
        }
    }
    free(list);
    if (queued) nr_log(NR_LOG_INFO, "writing %zu job state(s) kept while redis was down", queued);
}

int64_t nr_broker_tick(nr_broker_t *self, int64_t now) {
    s_enter(self, now);
    /* Writes unanswered for a while: wait for them, so the store's timeout
     * decides whether Redis is gone. */
    if (self->flights_len && now - self->flights[self->flight_first].sent_ms > S_FLIGHT_WAIT_MS)
        s_commit(self, 1);
    if (self->store && nr_store_maintain(self->store, now)) {
        /* After every reconnect, not only the first: a write whose reply
         * was lost with the connection (Redis applied a SUBMIT the broker
         * then refused) leaves a pending job this broker does not hold.
         * Jobs already in memory are skipped. Found by tests/test_chaos. */
        s_recover(self, now);
        self->need_flush = 1;
    }
    if (self->store && !self->recovered && nr_store_is_up(self->store)) s_recover(self, now);
    if (self->need_flush) s_flush(self);

    int64_t period = self->params.heartbeat_ms / 4 > 10 ? self->params.heartbeat_ms / 4 : 10;
    if (now >= self->next_timer_ms) {
        self->next_timer_ms = now + period;
        for (nr_broker_stage_t *s = self->stages; s; s = s->next) {
            nr_broker_worker_t *w = s->workers;
            while (w) {
                nr_broker_worker_t *next = w->next;
                if (now > w->expires_ms) {
                    char reason[96];
                    snprintf(reason, sizeof reason, "lost (no heartbeat for %ld ms)",
                             self->params.heartbeat_ms * self->params.heartbeat_liveness);
                    nr_log(NR_LOG_WARN, "worker %s %s", w->label, reason);
                    s_worker_delete(self, w, NR_ECONNECT, reason, now);
                    w = next;
                    continue;
                }
                if (now >= w->heartbeat_ms &&
                    s_send_cmd(self, w, NR_CMD_HEARTBEAT, now) == NR_ECONNECT) {
                    nr_log(NR_LOG_WARN, "worker %s is gone (unroutable)", w->label);
                    s_worker_delete(self, w, NR_ECONNECT, "is gone (unroutable)", now);
                    w = next;
                    continue;
                }
                for (uint32_t i = w->leases_len; i-- > 0;) {
                    nr_broker_lease_t *l = &w->leases[i];
                    if (l->job && now > l->job->deadline_ms) {
                        char text[160];
                        snprintf(text, sizeof text, "stage %s deadline passed on worker %s",
                                 s->name, w->label);
                        nr_broker_job_t *job = l->job;
                        s_retry(self, job, NR_EDEADLINE, text, now);
                    } else if (!l->job && now > l->expires_ms) {
                        nr_broker_worker_drop_lease(w, l);
                    }
                }
                w = next;
            }
        }
    }
    int64_t wake = self->next_timer_ms;
    for (nr_broker_stage_t *s = self->stages; s; s = s->next) {
        /* Jobs left queued while a worker has room wait out a retry
         * backoff: wake when the first is due (not a scan per turn when
         * every worker is simply full). */
        if (s_dispatch(self, s, now) && s->queued) {
            int64_t t = nr_broker_stage_next_ready_ms(s);
            if (t > now && t < wake) wake = t;
        }
    }
    s_leave(self);
    if (self->store) {
        int64_t t = nr_store_next_retry_ms(self->store);
        if (t < wake) wake = t;
    }
    return wake;
}

void nr_broker_shutdown(nr_broker_t *self, int64_t now) {
    s_enter(self, now);
    self->accepting = 0;
    size_t requeued = 0;
    for (nr_broker_stage_t *s = self->stages; s; s = s->next) {
        while (s->workers) {
            nr_broker_worker_t *w = s->workers;
            s_send_cmd(self, w, NR_CMD_DISCONNECT, now);
            for (uint32_t i = 0; i < w->leases_len; i++) {
                nr_broker_job_t *job = w->leases[i].job;
                if (!job || job->state != NR_JOB_RUNNING) continue;
                /* Back to queued with the attempt kept: a restart resumes it. */
                if (s->running) s->running--;
                job->worker = NULL;
                job->state = NR_JOB_QUEUED;
                job->updated_ms = now;
                nr_broker_stage_push(s, job, 1);
                s_save(self, job, -1, NULL, 0, NULL);
                requeued++;
            }
            nr_broker_stage_remove_worker(s, w);
            nr_broker_worker_destroy(&w);
        }
    }
    s_commit(self, 1);
    if (self->need_flush) s_flush(self);
    s_commit(self, 1);
    size_t unsaved = 0;
    nr_broker_job_t **list = NULL;
    size_t n = nr_broker_jobs_count(self->jobs);
    if (n && (list = malloc(n * sizeof *list))) {
        n = nr_broker_jobs_list(self->jobs, list, n);
        for (size_t i = 0; i < n; i++) unsaved += list[i]->dirty != 0;
        free(list);
    }
    nr_log(NR_LOG_INFO, "shutdown: %zu running job(s) back to queued%s", requeued,
           unsaved ? "" : ", record complete");
    if (unsaved)
        nr_log(NR_LOG_ERROR, "shutdown: %zu job state(s) could not be written to redis", unsaved);
    s_leave(self);
}

nr_broker_job_t *nr_broker_find_job(nr_broker_t *self, const char *id) {
    return nr_broker_jobs_find(self->jobs, id);
}

size_t nr_broker_queued(nr_broker_t *self, const char *stage) {
    nr_broker_stage_t *s = s_stage(self, stage, 0);
    return s ? s->queued : 0;
}

size_t nr_broker_workers(nr_broker_t *self, const char *stage) {
    nr_broker_stage_t *s = s_stage(self, stage, 0);
    return s ? s->workers_len : 0;
}

long nr_broker_worker_credit_of(nr_broker_t *self, const uint8_t *identity, size_t size) {
    nr_broker_worker_t *w = s_worker(self, identity, size);
    return w ? (long)nr_broker_worker_credit(w) : -1;
}

/* ---- metrics (broker_metrics.h) ----------------------------------------- */

void nr_broker_set_metrics(nr_broker_t *self, nr_metrics_t *metrics) { self->metrics = metrics; }

void nr_broker_each_stage(nr_broker_t *self,
                          void (*fn)(const char *stage, size_t queued, size_t running,
                                     size_t workers, void *arg),
                          void *arg) {
    for (nr_broker_stage_t *s = self->stages; s; s = s->next)
        fn(s->name, s->queued, s->running, s->workers_len, arg);
}

void nr_broker_final_counts(nr_broker_t *self, uint64_t *done, uint64_t *failed,
                            uint64_t *cancelled) {
    *done = self->count_done;
    *failed = self->count_failed;
    *cancelled = self->count_cancelled;
    if (!self->store || !nr_store_is_up(self->store)) return;
    nr_msg_t m;
    nr_proto_msg_init(&m);
    if (!nr_store_stats(self->store, &m)) {
        const char *v;
        *done = *failed = *cancelled = 0;
        if ((v = nr_proto_kv_get(&m, "jobs.done"))) *done = strtoull(v, NULL, 10);
        if ((v = nr_proto_kv_get(&m, "jobs.failed"))) *failed = strtoull(v, NULL, 10);
        if ((v = nr_proto_kv_get(&m, "jobs.cancelled"))) *cancelled = strtoull(v, NULL, 10);
    }
    nr_proto_msg_clear(&m);
}
