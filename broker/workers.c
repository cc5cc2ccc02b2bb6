/* Worker messages (READY, HEARTBEAT, RESULT, FAIL, DISCONNECT) and dispatch
 * of queued jobs to workers by credit, under a lease. */
#include "broker/internal.h"
#include "broker/broker_metrics.h"
#include "common/error.h"
#include "common/log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- workers ---------------------------------------------------------- */

/* Removes a worker; jobs it held are retried. */
void nr_bk_worker_delete(nr_broker_t *self, nr_broker_worker_t *w, int code,
                            const char *reason, int64_t now) {
    char msg[256];
    snprintf(msg, sizeof msg, "worker %s %s", w->label, reason);
    for (uint32_t i = 0; i < w->leases_len; i++) {
        nr_broker_job_t *job = w->leases[i].job;
        w->leases[i].job = NULL;
        if (job && job->state == NR_JOB_RUNNING && job->worker == w) nr_bk_retry(self, job, code, msg, now);
    }
    nr_broker_stage_t *s = w->stage;
    if (s) nr_broker_stage_remove_worker(s, w);
    nr_broker_worker_destroy(&w);
}

static void s_on_ready(nr_broker_t *self, const uint8_t *identity, size_t size, nr_msg_t *msg,
                       nr_broker_worker_t *w, int64_t now) {
    if (msg->capacity < 1 || msg->capacity > 1024 || !msg->stage[0]) {
        static nr_log_limit_t limit;
        nr_log_limited(&limit, NR_LOG_WARN, "READY with capacity %" PRIu32 " and stage '%s' dropped",
               msg->capacity, msg->stage);
        return;
    }
    nr_broker_stage_t *known = nr_bk_stage(self, msg->stage);
    if (!known) {
        /* Refused: made-up stages would fill STATS and memory. A worker
         * already registered keeps its old registration. */
        nr_msg_t m;
        nr_proto_msg_init(&m);
        m.cmd = NR_CMD_DISCONNECT;
        snprintf(m.message, sizeof m.message,
                 "%s: unknown stage '%s'; this broker serves %s (setting stages)",
                 nr_errname(NR_EINVAL), msg->stage, nr_bk_stage_list(self));
        nr_log(NR_LOG_WARN, "READY from %s refused: %s", msg->name[0] ? msg->name : "a worker",
               m.message);
        nr_bk_send(self, NR_BROKER_WORKERS, identity, size, &m);
        nr_proto_msg_clear(&m);
        return;
    }
    uint32_t capacity = msg->capacity;
    if (capacity > (uint32_t)self->params.max_worker_credit) {
        capacity = (uint32_t)self->params.max_worker_credit;
        nr_log(NR_LOG_INFO, "worker %s asked for capacity %" PRIu32 ": given %" PRIu32
               " (setting max-worker-credit)", msg->name, msg->capacity, capacity);
    }
    if (w && strcmp(w->stage->name, msg->stage)) {
        nr_log(NR_LOG_INFO, "worker %s moves from stage %s to %s", w->label, w->stage->name,
               msg->stage);
        nr_bk_worker_delete(self, w, NR_ECONNECT, "changed stage", now);
        w = NULL;
    }
    if (w) {
        nr_broker_worker_set_capacity(w, capacity);
    } else {
        w = nr_broker_worker_new(identity, size, msg->name, capacity);
        if (!w) {
            nr_log(NR_LOG_ERROR, "out of memory registering a worker");
            return;
        }
        w->serial = ++self->worker_serial;
        nr_broker_stage_add_worker(known, w);
        w->heartbeat_ms = now + self->params.heartbeat_ms;
        nr_log(NR_LOG_INFO, "worker %s ready for stage %s (capacity %" PRIu32 ")", w->label,
               msg->stage, capacity);
    }
    /* The voices it offers (proto checked the list); a new READY replaces them. */
    const char *voices = nr_proto_kv_get(msg, "voices");
    free(w->voices);
    w->voices = voices && *voices ? strdup(voices) : NULL;
    w->expires_ms = now + self->params.heartbeat_ms * self->params.heartbeat_liveness;
    nr_bk_dispatch(self, w->stage, now);
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
    if (l) {
        nr_broker_worker_drop_lease(w, l);
        /* It answers (even late): no longer suspected of holding jobs. */
        w->strikes = 0;
        if (w->aside_until_ms) {
            w->aside_until_ms = 0;
            nr_log(NR_LOG_INFO, "worker %s answered: no longer set aside", w->label);
        }
    }
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

/* A RESULT's frame 1, when there is one, is the job's thumbnail (job.h):
 * kept (replacing any earlier) when it is a JPEG within the bound, else
 * dropped with a log line; the result stands either way. The job's next
 * save carries it, as it does an output. */
static void s_keep_thumbnail(nr_broker_job_t *job, const nr_broker_worker_t *w, nr_msg_t *msg) {
    if (msg->frames_len < 2) return;
    uint8_t *data = msg->frames[1].data;
    size_t size = msg->frames[1].size;
    if (!nr_broker_thumb_valid(data, size)) {
        static nr_log_limit_t limit;
        nr_log_limited(&limit, NR_LOG_WARN, "job %s: thumbnail from %s dropped (%zu bytes; a JPEG of at most %d "
                       "bytes is kept)", job->id, w->label, size, NR_BROKER_THUMB_MAX);
        return;
    }
    free(job->unsaved[NR_BROKER_THUMB_SLOT]);
    job->unsaved[NR_BROKER_THUMB_SLOT] = data;
    job->unsaved_size[NR_BROKER_THUMB_SLOT] = size;
    msg->frames[1].data = NULL;
}

static void s_on_result(nr_broker_t *self, nr_broker_worker_t *w, nr_msg_t *msg, int64_t now) {
    nr_broker_job_t *job = s_take_answer(self, w, msg);
    if (!job) return;
    nr_broker_stage_t *s = w->stage;
    if (s->running) s->running--;
    job->worker = NULL;
    if (msg->kv_len > NR_BROKER_RESULT_KV_MAX) {
        /* More than the record keeps for a stage: storing it would push the
         * job's options or other results out of the record. The attempt is
         * retried (on another worker when there is one), as a crash is. */
        char text[96];
        snprintf(text, sizeof text, "worker %s sent a result of %" PRIu32 " fields; at most %d are kept",
                 w->label, msg->kv_len, NR_BROKER_RESULT_KV_MAX);
        nr_bk_retry(self, job, NR_EPROTO, text, now);
        nr_bk_dispatch(self, s, now);
        return;
    }
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

    s_keep_thumbnail(job, w, msg);
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
    /* since_ms is the dispatch time while a job runs. */
    nr_metrics_observe(self->metrics, NR_BM_STAGE_DURATION, (double)(now - job->since_ms) / 1000.0,
                       "stage", stage, NULL);
    job->updated_ms = self->wall_ms;
    job->since_ms = now;
    job->error = 0;
    job->error_message[0] = '\0';
    if (job->stage_index + 1 >= job->route_len) {
        job->state = NR_JOB_DONE;
        self->count_done++;
        nr_log(NR_LOG_DEBUG, "job %s done", job->id);
        nr_bk_save(self, job, out_index, &out, out_size, NR_STORE_DONE); /* takes out */
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
        nr_bk_save(self, job, out_index, &out, out_size, NR_STORE_COUNT_NONE); /* takes out */
        nr_broker_job_take_input(job, &input, out_size);
        nr_broker_stage_t *next = nr_bk_stage(self, nr_broker_job_stage(job));
        if (next) {
            nr_broker_stage_push(next, job, 0);
            nr_bk_dispatch(self, next, now);
        }
    }
    nr_bk_dispatch(self, s, now);
}

static void s_on_fail(nr_broker_t *self, nr_broker_worker_t *w, nr_msg_t *msg, int64_t now) {
    nr_broker_job_t *job = s_take_answer(self, w, msg);
    if (!job) return;
    int code = msg->code < 0 && msg->code >= NR_ERRNO_MIN ? msg->code : NR_EINTERNAL;
    char text[NR_PROTO_MESSAGE_MAX + 1];
    snprintf(text, sizeof text, "%s", msg->message[0] ? msg->message : nr_strerror(code));
    nr_broker_stage_t *s = w->stage;
    if (msg->retry) nr_bk_retry(self, job, code, text, now);
    else nr_bk_fail(self, job, code, text, now);
    nr_bk_dispatch(self, s, now);
}

static void s_worker_message(nr_broker_t *self, const uint8_t *identity, size_t identity_size,
                             nr_msg_t *msg, int64_t now) {
    nr_broker_worker_t *w = nr_bk_worker(self, identity, identity_size);
    if (msg->cmd == NR_CMD_READY) {
        s_on_ready(self, identity, identity_size, msg, w, now);
        return;
    }
    if (!w) {
        /* Unknown peer (for example after a broker restart): tell it to
         * start over with READY. */
        if (msg->cmd != NR_CMD_DISCONNECT) {
            static nr_log_limit_t limit;
            nr_log_limited(&limit, NR_LOG_INFO, "%s from an unregistered worker: sent DISCONNECT",
                   nr_proto_cmd_name(msg->cmd));
            nr_msg_t m;
            nr_proto_msg_init(&m);
            m.cmd = NR_CMD_DISCONNECT;
            nr_bk_send(self, NR_BROKER_WORKERS, identity, identity_size, &m);
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
        if (!sent_before) nr_bk_send_cmd(self, w, NR_CMD_HEARTBEAT, now);
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
        nr_bk_worker_delete(self, w, NR_ECONNECT, "disconnected", now);
        nr_bk_dispatch(self, s, now);
        break;
    default: {
        static nr_log_limit_t limit;
        nr_log_limited(&limit, NR_LOG_WARN, "unexpected %s from worker %s dropped", nr_proto_cmd_name(msg->cmd),
                       w->label);
        break;
    }
    }
}

void nr_broker_worker_message(nr_broker_t *self, const uint8_t *identity, size_t identity_size,
                              nr_msg_t *msg, int64_t now) {
    nr_bk_enter(self, now);
    s_worker_message(self, identity, identity_size, msg, now);
    nr_bk_leave(self);
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
            nr_bk_fail(self, job, NR_EINTERNAL, text, now);
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
    /* since_ms is the time a queued job entered its queue. */
    nr_metrics_observe(self->metrics, NR_BM_QUEUE_WAIT,
                       (double)(now > job->since_ms ? now - job->since_ms : 0) / 1000.0,
                       "stage", s->name, NULL);
    job->attempts++;
    job->state = NR_JOB_RUNNING;
    job->worker = w;
    job->updated_ms = self->wall_ms;
    job->since_ms = now;
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
    nr_bk_save(self, job, -1, NULL, 0, NR_STORE_COUNT_NONE);

    /* The JOB leaves once the running state is written (nr_bk_send_job). */
    nr_msg_t m;
    nr_proto_msg_init(&m);
    snprintf(m.id, sizeof m.id, "%s", job->id);
    m.attempt = job->attempts;
    m.deadline_ms = (uint32_t)deadline;
    nr_log(NR_LOG_DEBUG, "job %s: %s attempt %" PRIu32 " to %s", job->id, s->name, job->attempts,
           w->label);
    if (nr_bk_post(self, NR_BK_OUT_JOB, w->identity, w->identity_size, &m))
        nr_log(NR_LOG_ERROR, "out of memory: JOB %s not sent (its deadline requeues it)", job->id);
    return 0;
}

/* Sends a held JOB, built from its lease: a lease revoked meanwhile
 * (cancel, requeue) is dropped unsent, so the worker's slot is free. */
void nr_bk_send_job(nr_broker_t *self, nr_bk_out_t *e) {
    nr_broker_worker_t *w = nr_bk_worker(self, e->identity, e->identity_size);
    nr_broker_lease_t *l = w ? nr_broker_worker_find_lease(w, e->msg.id, e->msg.attempt) : NULL;
    if (!l) return; /* the worker is gone and its jobs requeued */
    nr_broker_stage_t *s = w->stage;
    if (!l->job) {
        nr_broker_worker_drop_lease(w, l);
        nr_bk_dispatch(self, s, self->now);
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
    int rc = nr_bk_send(self, NR_BROKER_WORKERS, w->identity, w->identity_size, &m);
    m.frames[0].data = NULL;
    m.frames_len = 0;
    nr_proto_msg_clear(&m);
    if (rc == NR_ECONNECT) {
        nr_bk_worker_delete(self, w, NR_ECONNECT, "is gone (unroutable)", self->now);
        nr_bk_dispatch(self, s, self->now);
    }
}

/* Hands ready jobs to workers with room. Returns 1 when a worker still
 * has room (so the jobs left queued wait for a retry time), else 0. */
int nr_bk_dispatch(nr_broker_t *self, nr_broker_stage_t *s, int64_t now) {
    if (!s) return 0;
    for (;;) {
        if (!nr_broker_stage_pick_worker(s, now, 0)) return 0;
        nr_broker_job_t *job = nr_broker_stage_next_ready(s, now);
        if (!job) return 1;
        /* A retry goes to another worker than the last one, when one has room. */
        nr_broker_worker_t *w = nr_broker_stage_pick_worker(s, now, job->avoid_worker);
        if (s_dispatch_one(self, s, job, w, now)) return 1; /* not leased: w still has room */
    }
}

