/* Broker logic: requests, dispatch by credit, leases, retries, the record.
 * This file holds the helpers the others share, the lifecycle and
 * recovery, the group commit and the timers (see internal.h). */
#include "broker/internal.h"
#include "broker/broker_metrics.h"
#include "common/backoff.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define S_FLIGHT_WAIT_MS 500 /* pipelined writes unanswered this long: wait for them */

/* ---- helpers ---------------------------------------------------------- */

nr_broker_worker_t *nr_bk_worker(nr_broker_t *self, const uint8_t *identity, size_t size) {
    for (nr_broker_stage_t *s = self->stages; s; s = s->next)
        for (nr_broker_worker_t *w = s->workers; w; w = w->next)
            if (w->identity_size == size && !memcmp(w->identity, identity, size)) return w;
    return NULL;
}

long nr_bk_stage_workers(nr_broker_t *self, const char *name) {
    nr_broker_stage_t *s = nr_bk_stage(self, name);
    return s ? (long)s->workers_len : 0;
}

void nr_bk_random_id(nr_broker_t *self, char *out, size_t size) {
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

int nr_bk_send(nr_broker_t *self, nr_broker_side_t side, const uint8_t *identity, size_t size,
                  const nr_msg_t *msg) {
    int rc = self->send(self->send_ctx, side, identity, size, msg);
    if (rc && rc != NR_ECONNECT)
        nr_log(NR_LOG_WARN, "sending %s to a %s failed: %s", nr_proto_cmd_name(msg->cmd),
               side == NR_BROKER_CLIENTS ? "client" : "worker", nr_strerror(rc));
    return rc;
}

/* Makes room for one more held message. 0 or NR_ENOMEM. */
int nr_bk_reserve(nr_broker_t *self) {
    nr_bk_outbox_t *o = &self->out;
    if (o->len < o->cap) return 0;
    size_t cap = o->cap ? o->cap * 2 : 64;
    nr_bk_out_t *v = realloc(o->v, cap * sizeof *v);
    if (!v) return NR_ENOMEM;
    o->v = v;
    o->cap = cap;
    return 0;
}

/* Holds msg (taken: left empty) for a peer until the next commit. */
int nr_bk_post(nr_broker_t *self, nr_bk_out_kind_t kind, const uint8_t *identity, size_t size,
                  nr_msg_t *msg) {
    if (nr_bk_reserve(self)) return NR_ENOMEM;
    nr_bk_out_t *e = &self->out.v[self->out.len++];
    e->kind = kind;
    e->identity_size = size < sizeof e->identity ? size : sizeof e->identity;
    memcpy(e->identity, identity, e->identity_size);
    e->msg = *msg;
    nr_proto_msg_init(msg);
    return 0;
}

static void s_outbox_free(nr_bk_outbox_t *o) {
    for (size_t i = 0; i < o->len; i++) nr_proto_msg_clear(&o->v[i].msg);
    free(o->v);
    memset(o, 0, sizeof *o);
}

/* Returns nr_bk_send's code: NR_ECONNECT means the worker is gone. */
int nr_bk_send_cmd(nr_broker_t *self, nr_broker_worker_t *w, nr_cmd_t cmd, int64_t now) {
    w->sent = 1;
    w->heartbeat_ms = now + self->params.heartbeat_ms;
    nr_msg_t m;
    nr_proto_msg_init(&m);
    m.cmd = cmd;
    int rc = nr_bk_send(self, NR_BROKER_WORKERS, w->identity, w->identity_size, &m);
    nr_proto_msg_clear(&m);
    return rc;
}

void nr_bk_reply(nr_broker_t *self, const uint8_t *identity, size_t size, const nr_msg_t *req,
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
    if (nr_bk_post(self, NR_BK_OUT_REPLY, identity, size, rep))
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
int nr_bk_save(nr_broker_t *self, nr_broker_job_t *job, int out_index, uint8_t **out,
               size_t out_size, nr_store_counter_t counter) {
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
void nr_bk_release(nr_broker_t *self, nr_broker_job_t *job) {
    if (job->state == NR_JOB_RUNNING) {
        nr_broker_stage_t *s = nr_bk_stage(self, nr_broker_job_stage(job));
        if (s && s->running) s->running--;
        if (job->worker) nr_broker_worker_revoke(job->worker, job);
        job->worker = NULL;
    } else if (job->state == NR_JOB_QUEUED && job->in_queue) {
        nr_broker_stage_t *s = nr_bk_stage(self, nr_broker_job_stage(job));
        if (s) nr_broker_stage_remove(s, job);
    }
}

void nr_bk_fail(nr_broker_t *self, nr_broker_job_t *job, int code, const char *message,
                   int64_t now) {
    nr_bk_release(self, job);
    job->state = NR_JOB_FAILED;
    job->error = code;
    snprintf(job->error_message, sizeof job->error_message, "%s", message);
    job->updated_ms = self->wall_ms;
    free(job->input);
    job->input = NULL;
    self->count_failed++;
    nr_metrics_add(self->metrics, NR_BM_FAILURES, 1, "stage", nr_broker_job_stage(job), "code",
                   nr_errname(code), NULL);
    nr_log(NR_LOG_INFO, "job %s failed at %s: %s: %s", job->id, nr_broker_job_stage(job),
           nr_errname(code), message);
    nr_bk_save(self, job, -1, NULL, 0, NR_STORE_FAILED); /* leaves memory once written (s_on_saved) */
}

/* An attempt went wrong (worker lost, deadline, retryable FAIL): queue it
 * again after a backoff, or fail it when the attempts are used up. */
void nr_bk_retry(nr_broker_t *self, nr_broker_job_t *job, int code, const char *message,
                    int64_t now) {
    if (job->attempts >= (uint32_t)self->params.max_attempts) {
        char text[NR_PROTO_MESSAGE_MAX + 1];
        snprintf(text, sizeof text, "attempt limit reached (%" PRIu32 "); last error: %s: %.900s",
                 job->attempts, nr_errname(code), message);
        nr_bk_fail(self, job, NR_EATTEMPTS, text, now);
        return;
    }
    /* The next attempt goes to another worker when one has room. */
    job->avoid_worker = job->worker ? job->worker->serial : 0;
    nr_bk_release(self, job);
    nr_broker_stage_t *s = nr_bk_stage(self, nr_broker_job_stage(job));
    job->state = NR_JOB_QUEUED;
    job->error = code;
    snprintf(job->error_message, sizeof job->error_message, "%s", message);
    job->updated_ms = self->wall_ms;
    job->since_ms = now;
    job->ready_ms = now + s_backoff(self, job->attempts);
    if (s) nr_broker_stage_push(s, job, 0);
    nr_metrics_add(self->metrics, NR_BM_RETRIES, 1, "stage", nr_broker_job_stage(job), NULL);
    nr_log(NR_LOG_INFO, "job %s: %s attempt %" PRIu32 " failed (%s: %s); retry in %" PRId64 " ms",
           job->id, nr_broker_job_stage(job), job->attempts, nr_errname(code), message,
           job->ready_ms - now);
    nr_bk_save(self, job, -1, NULL, 0, NR_STORE_RETRIED);
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
    snprintf(p->stages, sizeof p->stages, "vision,text,speech");
    p->queue_bound_total = 10000;
    p->unserved_timeout_ms = 600000;
    p->max_worker_credit = 256;
    p->worker_strikes = 3;
    p->worker_cooldown_ms = 60000;
}

nr_broker_t *nr_broker_new(const nr_broker_params_t *params, nr_store_t *store,
                           nr_broker_send_fn send, void *send_ctx, char *err, size_t errlen) {
    if (!params || !send || params->heartbeat_ms < 1 || params->heartbeat_liveness < 1 ||
        params->job_deadline_ms < 1 || params->max_attempts < 1 || params->queue_bound < 1 ||
        params->retry_backoff_ms < 0 || params->retry_backoff_max_ms < params->retry_backoff_ms ||
        params->client_rate < 0 || params->client_burst < 1 || params->queue_bound_total < 1 ||
        params->unserved_timeout_ms < 1 || params->max_worker_credit < 1 ||
        params->max_worker_credit > 1024 || params->worker_strikes < 1 ||
        params->worker_cooldown_ms < 0 || params->client_reply_bytes < 0) {
        nr_seterr(err, errlen, NR_EINVAL, "broker parameters out of range");
        return NULL;
    }
    if (nr_bk_check_stage_settings(params, err, errlen)) return NULL;
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
    if (!self->jobs || nr_bk_make_stages(self)) goto err;
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
    for (size_t i = 0; i < NR_BK_FLIGHTS_MAX; i++) s_outbox_free(&self->flights[i].out);
    s_outbox_free(&self->spare);
    for (size_t i = 0; i < self->fetches_len; i++)
        nr_proto_msg_clear(&self->fetches[(self->fetch_first + i) % NR_STORE_READS_MAX].rep);
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

void nr_bk_recover_one(const char *id, void *arg) {
    nr_bk_recover_t *r = arg;
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
    for (uint32_t i = job->stage_index; i < job->route_len && !nr_job_is_final(job); i++) {
        if (nr_bk_stage(self, job->route[i])) continue;
        /* Configured away since it was submitted: it would wait forever. */
        char text[NR_PROTO_MESSAGE_MAX];
        snprintf(text, sizeof text, "unknown stage '%s': this broker serves %s (setting stages)",
                 job->route[i], nr_bk_stage_list(self));
        nr_broker_jobs_add(self->jobs, job);
        nr_bk_fail(self, job, NR_EINVAL, text, r->now);
        return;
    }
    if (nr_job_is_final(job)) {
        /* A stale pending entry: saving the final state removes it (the job
         * leaves memory once that is written). */
        nr_broker_jobs_add(self->jobs, job);
        nr_bk_save(self, job, -1, NULL, 0, NR_STORE_COUNT_NONE);
        return;
    }
    if (job->state == NR_JOB_RUNNING) {
        job->state = NR_JOB_QUEUED; /* attempts kept */
        job->updated_ms = self->wall_ms;
        nr_broker_jobs_add(self->jobs, job);
        nr_bk_save(self, job, -1, NULL, 0, NR_STORE_COUNT_NONE);
    } else {
        nr_broker_jobs_add(self->jobs, job);
    }
    /* Nothing of the old run's timers is stored (its lease died with it):
     * the job is ready now, and waits in the queue from now on. */
    job->ready_ms = 0;
    job->since_ms = r->now;
    nr_broker_stage_t *s = nr_bk_stage(self, nr_broker_job_stage(job));
    if (s) nr_broker_stage_push(s, job, 0);
    r->resumed++;
}

static int s_recover(nr_broker_t *self, int64_t now) {
    nr_bk_recover_t r = {self, now, 0};
    int rc = nr_store_pending(self->store, nr_bk_recover_one, &r);
    if (rc) return rc;
    self->recovered = 1;
    nr_log(NR_LOG_INFO, "resumed %zu unfinished job(s) from redis", r.resumed);
    return 0;
}

/* Every entry point runs between nr_bk_enter and nr_bk_leave: the outermost
 * nr_bk_leave commits (nr_broker_begin/commit make one batch of many). */
void nr_bk_enter(nr_broker_t *self, int64_t now) {
    self->depth++;
    self->now = now;
    self->wall_ms = nr_clock_wall_ms();
}

void nr_bk_leave(nr_broker_t *self) {
    if (self->depth > 0 && --self->depth == 0) {
        if (self->fetches_len) nr_bk_fetch_answers(self, !self->params.pipelined);
        nr_bk_commit(self, !self->params.pipelined);
    }
}

void nr_broker_set_backlog(nr_broker_t *self, nr_broker_backlog_fn fn, void *ctx) {
    self->backlog = fn;
    self->backlog_ctx = ctx;
}

int nr_broker_fetch_fd(const nr_broker_t *self) {
    return self->fetches_len ? nr_store_read_fd(self->store) : -1;
}

void nr_broker_begin(nr_broker_t *self, int64_t now) { nr_bk_enter(self, now); }

void nr_broker_commit(nr_broker_t *self, int64_t now) {
    self->now = now;
    nr_bk_leave(self);
}

int nr_broker_start(nr_broker_t *self, int64_t now) {
    if (!self->store) return 0;
    int rc = nr_store_connect(self->store);
    if (rc) return rc;
    nr_bk_enter(self, now);
    rc = s_recover(self, now);
    nr_bk_leave(self);
    return rc;
}

void nr_broker_stop_accepting(nr_broker_t *self) { self->accepting = 0; }

/* ---- group commit ------------------------------------------------------ */

/* Called by the store for each save once its reply is read. */
static void s_on_saved(nr_broker_job_t *job, int rc, void *arg) {
    nr_broker_t *self = arg;
    if (job->submitting) return; /* nr_bk_ack acknowledges or refuses it */
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
static void s_out_flush(nr_broker_t *self, nr_bk_outbox_t *box) {
    nr_bk_outbox_t cur = *box;
    *box = self->spare;
    box->len = 0;
    for (size_t i = 0; i < cur.len; i++) {
        nr_bk_out_t *e = &cur.v[i];
        if (e->kind == NR_BK_OUT_REPLY) nr_bk_send(self, NR_BROKER_CLIENTS, e->identity, e->identity_size, &e->msg);
        else if (e->kind == NR_BK_OUT_ACK) nr_bk_ack(self, e);
        else nr_bk_send_job(self, e);
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
void nr_bk_commit(nr_broker_t *self, int wait) {
    if (self->committing) return;
    self->committing = 1;
    for (;;) {
        struct nr_bk_flight *f = &self->flights[self->flight_first];
        if (self->flights_len && (wait || nr_store_answered(self->store, f->saves))) {
            nr_store_settle(self->store, f->saves, s_on_saved, self); /* flights need a store */
            self->flight_first = (self->flight_first + 1) % NR_BK_FLIGHTS_MAX;
            self->flights_len--;
            s_out_flush(self, &f->out); /* may queue more: the next turn of the loop */
        } else if (self->out.len || nr_store_queued(self->store)) {
            if (!self->flights_len && !nr_store_queued(self->store)) {
                s_out_flush(self, &self->out); /* waits for nothing */
                continue;
            }
            if (self->flights_len == NR_BK_FLIGHTS_MAX) {
                if (!wait) break; /* the next turn sends it */
                continue;         /* (wait: the oldest is settled above) */
            }
            /* A batch (possibly of replies only, behind the batches in
             * flight) with what waits for it. */
            struct nr_bk_flight *t =
                &self->flights[(self->flight_first + self->flights_len) % NR_BK_FLIGHTS_MAX];
            t->saves = self->store ? nr_store_send(self->store) : 0;
            t->sent_ms = self->now;
            nr_bk_outbox_t waiting = self->out; /* t->out is empty here */
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
        if (nr_bk_save(self, list[i], -1, NULL, 0, NR_STORE_COUNT_NONE)) {
            if (!nr_store_is_up(self->store)) break;
        } else {
            queued++;
        }
    }
    free(list);
    if (queued) nr_log(NR_LOG_INFO, "writing %zu job state(s) kept while redis was down", queued);
}

/* A lease of w expired without an answer: after worker_strikes in a row
 * the worker gets no new JOB for worker_cooldown_ms (or until it answers),
 * so one that holds and never answers cannot burn every attempt. */
static void s_strike(nr_broker_t *self, nr_broker_worker_t *w, int64_t now) {
    if (++w->strikes < (uint32_t)self->params.worker_strikes || w->aside_until_ms > now ||
        self->params.worker_cooldown_ms == 0)
        return;
    w->aside_until_ms = now + self->params.worker_cooldown_ms;
    nr_metrics_add(self->metrics, NR_BM_WORKERS_SET_ASIDE, 1, "stage", w->stage->name, NULL);
    nr_log(NR_LOG_WARN, "worker %s set aside for %ld ms: %" PRIu32 " leases in a row expired "
           "without an answer (settings worker-strikes, worker-cooldown-ms)", w->label,
           self->params.worker_cooldown_ms, w->strikes);
}

/* Fails the jobs that waited unserved-timeout-ms at a stage no live worker
 * serves (counted from when they were queued or the last worker left,
 * whichever is later): they would otherwise wait, and be kept, forever. */
static void s_expire_unserved(nr_broker_t *self, nr_broker_stage_t *s, int64_t now) {
    if (s->workers_len) {
        s->unserved_since_ms = INT64_MIN;
        return;
    }
    if (s->unserved_since_ms == INT64_MIN) s->unserved_since_ms = now;
    if (now - s->unserved_since_ms < self->params.unserved_timeout_ms) return;
    nr_broker_job_t *j = s->head;
    while (j) {
        nr_broker_job_t *next = j->qnext;
        /* since_ms (monotonic): when a queued job entered its queue */
        int64_t since = j->since_ms > s->unserved_since_ms ? j->since_ms : s->unserved_since_ms;
        if (now - since >= self->params.unserved_timeout_ms) {
            char text[NR_PROTO_MESSAGE_MAX];
            snprintf(text, sizeof text, "no worker serves stage %s (waited %" PRId64 " ms; "
                     "setting unserved-timeout-ms)", s->name, now - since);
            nr_bk_fail(self, j, NR_ENOWORKER, text, now);
        }
        j = next;
    }
}

int64_t nr_broker_tick(nr_broker_t *self, int64_t now) {
    nr_bk_enter(self, now);
    /* Writes unanswered for a while: wait for them, so the store's timeout
     * decides whether Redis is gone. */
    if (self->flights_len && now - self->flights[self->flight_first].sent_ms > S_FLIGHT_WAIT_MS)
        nr_bk_commit(self, 1);
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

    /* A broker that was itself late (ticks further apart than a heartbeat
     * interval, the longest it waits) did not read the heartbeats queued
     * meanwhile: that silence is its own, not its workers', so their
     * expiry moves by the stall. */
    int64_t stall = self->last_tick_ms ? now - self->last_tick_ms - self->params.heartbeat_ms : 0;
    if (stall > 0) {
        static nr_log_limit_t limit;
        if (stall >= self->params.heartbeat_ms)
            nr_log_limited(&limit, NR_LOG_WARN, "the broker's loop stalled for %" PRId64
                           " ms: workers' liveness extended by as much", stall);
        for (nr_broker_stage_t *s = self->stages; s; s = s->next)
            for (nr_broker_worker_t *w = s->workers; w; w = w->next) w->expires_ms += stall;
    }
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
                    nr_bk_worker_delete(self, w, NR_ECONNECT, reason, now);
                    w = next;
                    continue;
                }
                if (now >= w->heartbeat_ms &&
                    nr_bk_send_cmd(self, w, NR_CMD_HEARTBEAT, now) == NR_ECONNECT) {
                    nr_log(NR_LOG_WARN, "worker %s is gone (unroutable)", w->label);
                    nr_bk_worker_delete(self, w, NR_ECONNECT, "is gone (unroutable)", now);
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
                        nr_bk_retry(self, job, NR_EDEADLINE, text, now);
                        s_strike(self, w, now);
                    } else if (!l->job && now > l->expires_ms) {
                        nr_broker_worker_drop_lease(w, l);
                    }
                }
                w = next;
            }
            s_expire_unserved(self, s, now);
        }
    }
    int64_t wake = self->next_timer_ms;
    for (nr_broker_stage_t *s = self->stages; s; s = s->next) {
        /* Jobs left queued while a worker has room wait out a retry
         * backoff: wake when the first is due (not a scan per turn when
         * every worker is simply full). */
        if (nr_bk_dispatch(self, s, now) && s->queued) {
            int64_t t = nr_broker_stage_next_ready_ms(s);
            if (t > now && t < wake) wake = t;
        }
    }
    nr_bk_leave(self);
    self->last_tick_ms = now;
    if (self->store) {
        int64_t t = nr_store_next_retry_ms(self->store);
        if (t < wake) wake = t;
    }
    return wake;
}

void nr_broker_shutdown(nr_broker_t *self, int64_t now) {
    nr_bk_enter(self, now);
    self->accepting = 0;
    size_t requeued = 0;
    for (nr_broker_stage_t *s = self->stages; s; s = s->next) {
        while (s->workers) {
            nr_broker_worker_t *w = s->workers;
            nr_bk_send_cmd(self, w, NR_CMD_DISCONNECT, now);
            for (uint32_t i = 0; i < w->leases_len; i++) {
                nr_broker_job_t *job = w->leases[i].job;
                if (!job || job->state != NR_JOB_RUNNING) continue;
                /* Back to queued with the attempt kept: a restart resumes it. */
                if (s->running) s->running--;
                job->worker = NULL;
                job->state = NR_JOB_QUEUED;
                job->updated_ms = self->wall_ms;
                nr_broker_stage_push(s, job, 1);
                nr_bk_save(self, job, -1, NULL, 0, NR_STORE_COUNT_NONE);
                requeued++;
            }
            nr_broker_stage_remove_worker(s, w);
            nr_broker_worker_destroy(&w);
        }
    }
    nr_bk_commit(self, 1);
    if (self->need_flush) s_flush(self);
    nr_bk_commit(self, 1);
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
    nr_bk_leave(self);
}

nr_broker_job_t *nr_broker_find_job(nr_broker_t *self, const char *id) {
    return nr_broker_jobs_find(self->jobs, id);
}

size_t nr_broker_queued(nr_broker_t *self, const char *stage) {
    nr_broker_stage_t *s = nr_bk_stage(self, stage);
    return s ? s->queued : 0;
}

size_t nr_broker_workers(nr_broker_t *self, const char *stage) {
    nr_broker_stage_t *s = nr_bk_stage(self, stage);
    return s ? s->workers_len : 0;
}

size_t nr_broker_workers_set_aside(nr_broker_t *self, const char *stage) {
    nr_broker_stage_t *s = nr_bk_stage(self, stage);
    size_t n = 0;
    for (nr_broker_worker_t *w = s ? s->workers : NULL; w; w = w->next)
        n += w->aside_until_ms > self->now;
    return n;
}

long nr_broker_worker_credit_of(nr_broker_t *self, const uint8_t *identity, size_t size) {
    nr_broker_worker_t *w = nr_bk_worker(self, identity, size);
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
