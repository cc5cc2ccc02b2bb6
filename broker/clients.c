/* Client requests: SUBMIT (checked, rate-limited, bounded, written before it
 * is acknowledged), STATUS, FETCH, CANCEL, STATS and JOBS (a run's jobs). */
#include "broker/internal.h"
#include "broker/broker_metrics.h"
#include "common/error.h"
#include "common/log.h"
#include "common/utf8.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- clients ---------------------------------------------------------- */

static void s_reply_job(nr_broker_t *self, const uint8_t *identity, size_t size,
                        const nr_msg_t *req, const nr_broker_job_t *job, int code,
                        const char *message, int existing) {
    nr_msg_t rep;
    nr_proto_msg_init(&rep);
    snprintf(rep.id, sizeof rep.id, "%s", job->id);
    nr_broker_job_record(job, &rep, nr_bk_stage_workers(self, nr_broker_job_stage(job)));
    if (existing) nr_proto_kv_add(&rep, "existing", "1");
    nr_bk_reply(self, identity, size, req, &rep, code, "%s", message ? message : "");
    nr_proto_msg_clear(&rep);
}

static void s_reply_error(nr_broker_t *self, const uint8_t *identity, size_t size,
                          const nr_msg_t *req, int code, const char *message) {
    nr_msg_t rep;
    nr_proto_msg_init(&rep);
    nr_bk_reply(self, identity, size, req, &rep, code, "%s", message);
    nr_proto_msg_clear(&rep);
}

/* The job held in memory with this id, or NULL. When its last change is
 * still queued it is settled first, so the answer (or a second SUBMIT, or
 * a CANCEL) sees what Redis holds. */
static nr_broker_job_t *s_find_settled(nr_broker_t *self, const char *id) {
    nr_broker_job_t *job = nr_broker_jobs_find(self->jobs, id);
    if (job && (job->saving || job->submitting)) {
        nr_bk_commit(self, 1);
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
    if ((long)msg->kv_len > NR_BROKER_MAX_OPTIONS(msg->route_len)) {
        /* The record would be cut and the job's results lost from it. */
        snprintf(text, sizeof text,
                 "SUBMIT has %" PRIu32 " options; a job of %" PRIu32 " stage(s) holds at most "
                 "%ld (its record has %d fields: %d of the broker's, %d per stage for results)",
                 msg->kv_len, msg->route_len, NR_BROKER_MAX_OPTIONS(msg->route_len),
                 NR_PROTO_KV_MAX, NR_BROKER_RECORD_OWN, NR_BROKER_RECORD_PER_STAGE);
        s_reply_error(self, identity, size, msg, NR_EOPTION, text);
        return;
    }
    if (msg->frames_len < 1) {
        s_reply_error(self, identity, size, msg, NR_EINVAL, "SUBMIT needs the input as frame 0");
        return;
    }
    for (uint32_t i = 0; i < msg->route_len; i++) {
        if (nr_bk_stage(self, msg->route[i])) continue;
        snprintf(text, sizeof text, "unknown stage '%s' in the route: this broker serves %s",
                 msg->route[i], nr_bk_stage_list(self));
        s_reply_error(self, identity, size, msg, NR_EINVAL, text);
        return;
    }
    if (!msg->id[0]) nr_bk_random_id(self, msg->id, sizeof msg->id);

    /* A job held here is answered here; any other id is looked up in Redis
     * first (a check in the turn's pipeline; the write follows in nr_bk_ack). */
    nr_broker_job_t *old = s_find_settled(self, msg->id);
    if (old && old->state != NR_JOB_FAILED && old->state != NR_JOB_CANCELLED) {
        if (msg->run[0] && self->store && nr_store_run_add(self->store, msg->run, old->id, old->created_ms)) {
            s_reply_error(self, identity, size, msg, NR_EREDIS, "could not add the job to its run in redis");
            return;
        }
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
    nr_broker_stage_t *first = nr_bk_stage(self, msg->route[0]); /* known: checked above */
    if (first->queued + first->submitting >= (size_t)self->params.queue_bound) {
        snprintf(text, sizeof text, "queue of stage %s is full (%zu jobs); retry later",
                 first->name, first->queued);
        s_reply_error(self, identity, size, msg, NR_EBUSY, text);
        return;
    }
    size_t total = 0;
    for (nr_broker_stage_t *s = self->stages; s; s = s->next) total += s->queued + s->submitting;
    if (total >= (size_t)self->params.queue_bound_total) {
        snprintf(text, sizeof text, "queues are full (%zu jobs at all stages, setting "
                 "queue-bound-total); retry later", total);
        s_reply_error(self, identity, size, msg, NR_EBUSY, text);
        return;
    }
    if (nr_bk_reserve(self)) {
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
    if (msg->run[0] && nr_broker_job_set(job, "run", msg->run)) goto nomem;
    job->created_ms = job->updated_ms = self->wall_ms;
    job->ready_ms = job->since_ms = now;
    job->reset = reset;
    job->guard = self->store && !reset ? NR_STORE_GUARD : 0;
    job->input_unsaved = 1;
    nr_broker_job_take_input(job, &msg->frames[0].data, msg->frames[0].size);
    if (!job->input && !(job->input = calloc(1, 1))) goto nomem;
    nr_broker_jobs_add(self->jobs, job);
    if (nr_bk_save(self, job, -1, NULL, 0, NR_STORE_SUBMITTED)) {
        /* Not acknowledged, so not kept. */
        nr_broker_jobs_remove(self->jobs, job);
        nr_broker_job_destroy(&job);
        s_reply_error(self, identity, size, msg, NR_EREDIS, "could not write the job to redis");
        return;
    }
    /* Acknowledged (and queued) by nr_bk_ack once the write is settled. */
    job->submitting = 1;
    first->submitting++;
    nr_msg_t ack;
    nr_proto_msg_init(&ack);
    ack.seq = msg->seq;
    snprintf(ack.id, sizeof ack.id, "%s", job->id);
    snprintf(ack.run, sizeof ack.run, "%s", msg->run); /* for a job found existing meanwhile */
    if (reset) snprintf(ack.message, sizeof ack.message, "rerun");
    nr_bk_post(self, NR_BK_OUT_ACK, identity, size, &ack); /* room reserved above */
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
static void s_ack_existing(nr_broker_t *self, nr_bk_out_t *e, nr_msg_t *rep) {
    nr_broker_job_t *loaded = NULL;
    int rc = nr_store_load(self->store, e->msg.id, &loaded);
    if (rc) {
        rep->code = rc;
        snprintf(rep->message, sizeof rep->message, "cannot read the job record from redis");
        return;
    }
    if (e->msg.run[0] && nr_store_run_add(self->store, e->msg.run, e->msg.id, loaded->created_ms)) {
        rep->code = NR_EREDIS;
        snprintf(rep->message, sizeof rep->message, "could not add the job to its run in redis");
        nr_broker_job_destroy(&loaded);
        return;
    }
    nr_broker_job_t *shown = loaded;
    nr_broker_stage_t *adopted_at = NULL;
    if (!nr_job_is_final(loaded)) {
        nr_bk_recover_t r = {self, self->now, 0};
        nr_bk_recover_one(e->msg.id, &r);
        nr_broker_job_t *adopted = nr_broker_jobs_find(self->jobs, e->msg.id);
        if (adopted) {
            nr_log(NR_LOG_INFO, "job %s was unfinished in redis but not queued here: resumed",
                   e->msg.id);
            shown = adopted;
            adopted_at = nr_bk_stage(self, nr_broker_job_stage(adopted));
        }
    }
    nr_broker_job_record(shown, rep, nr_bk_stage_workers(self, nr_broker_job_stage(shown)));
    nr_proto_kv_add(rep, "existing", "1");
    snprintf(rep->message, sizeof rep->message, "job exists");
    nr_broker_job_destroy(&loaded);
    if (adopted_at) nr_bk_dispatch(self, adopted_at, self->now);
}

/* Goes on with a SUBMIT whose save is settled. After the check of a new
 * id: when free, writes the job and comes back here once that landed; when
 * taken by a live job, forgets this one and answers with that job. After
 * the write: acknowledged and queued, or refused and forgotten when the
 * write failed. */
void nr_bk_ack(nr_broker_t *self, nr_bk_out_t *e) {
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
        if (!nr_bk_reserve(self) && !nr_bk_save(self, job, -1, NULL, 0, NR_STORE_COUNT_NONE)) {
            nr_bk_post(self, NR_BK_OUT_ACK, e->identity, e->identity_size, &e->msg); /* room reserved */
            return;
        }
        job->dirty = 1; /* not written: refused below */
    }
    nr_broker_stage_t *first = nr_bk_stage(self, job->route[0]);
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
        nr_bk_send(self, NR_BROKER_CLIENTS, e->identity, e->identity_size, &rep);
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
    nr_bk_send(self, NR_BROKER_CLIENTS, e->identity, e->identity_size, &rep);
    nr_proto_msg_clear(&rep);
    nr_bk_dispatch(self, first, self->now);
}

/* s_lookup, answering the request with the error when it fails. */
static int s_lookup_or_reply(nr_broker_t *self, const uint8_t *identity, size_t size,
                             nr_msg_t *msg, nr_broker_job_t **job, nr_broker_job_t **loaded) {
    int rc = s_lookup(self, msg->id, job, loaded);
    if (rc)
        s_reply_error(self, identity, size, msg, rc,
                      rc == NR_ENOTFOUND ? "no such job" : "cannot read the job record from redis");
    return rc;
}

static void s_on_status(nr_broker_t *self, const uint8_t *identity, size_t size, nr_msg_t *msg) {
    nr_broker_job_t *job = NULL, *loaded = NULL;
    if (s_lookup_or_reply(self, identity, size, msg, &job, &loaded)) return;
    s_reply_job(self, identity, size, msg, job, 0, NULL, 0);
    nr_broker_job_destroy(&loaded);
}

/* Reads a job's stored input (stage NULL) or output in the background for
 * a FETCH whose REPLY, rep, is ready but for its frame: the REPLY goes once
 * the blob came (nr_bk_fetch_answers), the loop serving workers meanwhile.
 * Returns 0 (rep taken), NR_EBUSY or NR_EREDIS. */
static int s_fetch_start(nr_broker_t *self, const uint8_t *identity, size_t size, const nr_msg_t *msg,
                         nr_msg_t *rep, const char *id, const char *stage) {
    uint64_t tag = ++self->fetch_tag;
    int rc = nr_store_read_blob(self->store, id, stage, tag);
    if (rc) return rc;
    nr_bk_fetch_t *f = &self->fetches[(self->fetch_first + self->fetches_len++) % NR_STORE_READS_MAX];
    f->tag = tag;
    f->identity_size = size < sizeof f->identity ? size : sizeof f->identity;
    memcpy(f->identity, identity, f->identity_size);
    if (!stage) snprintf(f->what, sizeof f->what, "input");
    else if (!strcmp(stage, NR_BROKER_THUMB_STAGE)) snprintf(f->what, sizeof f->what, "thumbnail");
    else snprintf(f->what, sizeof f->what, "stage %s", stage);
    rep->cmd = NR_CMD_REPLY;
    rep->seq = msg->seq;
    f->rep = *rep;
    nr_proto_msg_init(rep);
    return 0;
}

#define S_NO_THUMBNAIL "this job has no thumbnail (none was made, or it is no longer stored)"

/* FETCH of stage "input" (the job's submitted input) or "thumbnail" (the
 * JPEG a worker sent with its RESULT), as Redis keeps them (until the
 * retention after the job finished), or from memory: the input while the
 * first stage has it and there is no Redis, the thumbnail until it is
 * written (or for good without Redis). */
static void s_fetch_kept(nr_broker_t *self, const uint8_t *identity, size_t size, const nr_msg_t *msg,
                         const nr_broker_job_t *job) {
    const int thumb = !strcmp(msg->stage, NR_BROKER_THUMB_STAGE);
    nr_msg_t rep;
    nr_proto_msg_init(&rep);
    snprintf(rep.id, sizeof rep.id, "%s", job->id);
    nr_broker_job_record(job, &rep, nr_bk_stage_workers(self, nr_broker_job_stage(job)));
    int rc;
    if (thumb && job->unsaved[NR_BROKER_THUMB_SLOT]) {
        rc = nr_proto_frame_add(&rep, job->unsaved[NR_BROKER_THUMB_SLOT], job->unsaved_size[NR_BROKER_THUMB_SLOT]);
    } else if (!thumb && job->stage_index == 0 && job->input && (!self->store || job->input_unsaved)) {
        rc = nr_proto_frame_add(&rep, job->input, job->input_size);
    } else if (!self->store) {
        rc = NR_ENOTFOUND;
    } else if (self->fetches_len == NR_STORE_READS_MAX) {
        rc = NR_EBUSY;
    } else if (!(rc = s_fetch_start(self, identity, size, msg, &rep, job->id, thumb ? msg->stage : NULL))) {
        return;
    }
    if (rc) {
        nr_proto_msg_clear(&rep);
        snprintf(rep.id, sizeof rep.id, "%s", job->id);
    }
    nr_bk_reply(self, identity, size, msg, &rep, rc, "%s",
                rc == NR_EBUSY ? "too many outputs being read; retry later"
                : rc == NR_ENOTFOUND && thumb ? S_NO_THUMBNAIL
                : rc == NR_ENOTFOUND ? "the input of this job is no longer stored"
                : rc ? nr_strerror(rc) : "");
    nr_proto_msg_clear(&rep);
}

static void s_on_fetch(nr_broker_t *self, const uint8_t *identity, size_t size, nr_msg_t *msg) {
    nr_broker_job_t *job = NULL, *loaded = NULL;
    if (s_lookup_or_reply(self, identity, size, msg, &job, &loaded)) return;
    int rc;
    int index = -1;
    if (!strcmp(msg->stage, "input") || !strcmp(msg->stage, NR_BROKER_THUMB_STAGE)) {
        s_fetch_kept(self, identity, size, msg, job);
        nr_broker_job_destroy(&loaded);
        return;
    }
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
        nr_bk_reply(self, identity, size, msg, &rep, NR_ENOTFOUND, "job %s has no output for stage '%s'",
                    job->id, msg->stage);
        goto done;
    }
    int finished = job->state == NR_JOB_DONE || (int)job->stage_index > index;
    if (!finished) {
        nr_bk_reply(self, identity, size, msg, &rep, NR_ENOTFOUND, "stage %s of job %s has not finished",
                    job->route[index], job->id);
        goto done;
    }
    nr_broker_job_record(job, &rep, nr_bk_stage_workers(self, nr_broker_job_stage(job)));
    if (job->unsaved[index]) {
        rc = nr_proto_frame_add(&rep, job->unsaved[index], job->unsaved_size[index]);
    } else if (!self->store) {
        rc = NR_ENOTFOUND;
    } else if (self->fetches_len == NR_STORE_READS_MAX) {
        rc = NR_EBUSY;
    } else if (!(rc = s_fetch_start(self, identity, size, msg, &rep, job->id, job->route[index]))) {
        goto done;
    }
    if (rc == NR_EBUSY) {
        nr_proto_msg_clear(&rep);
        snprintf(rep.id, sizeof rep.id, "%s", job->id);
        nr_bk_reply(self, identity, size, msg, &rep, rc, "too many outputs being read; retry later");
        goto done;
    }
    if (rc) {
        nr_proto_msg_clear(&rep);
        snprintf(rep.id, sizeof rep.id, "%s", job->id);
        nr_bk_reply(self, identity, size, msg, &rep, rc, "output of stage %s: %s", job->route[index],
                    rc == NR_ENOTFOUND ? "expired or missing" : nr_strerror(rc));
        goto done;
    }
    nr_bk_reply(self, identity, size, msg, &rep, 0, NULL);
done:
    nr_proto_msg_clear(&rep);
    nr_broker_job_destroy(&loaded);
}

static void s_on_cancel(nr_broker_t *self, const uint8_t *identity, size_t size, nr_msg_t *msg,
                        int64_t now) {
    nr_broker_job_t *job = NULL, *loaded = NULL;
    if (s_lookup_or_reply(self, identity, size, msg, &job, &loaded)) return;
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
    nr_bk_release(self, job);
    job->state = NR_JOB_CANCELLED;
    job->error = NR_ECANCELLED;
    snprintf(job->error_message, sizeof job->error_message, "cancelled by a client");
    job->updated_ms = self->wall_ms;
    free(job->input);
    job->input = NULL;
    self->count_cancelled++;
    nr_log(NR_LOG_INFO, "job %s cancelled at %s", job->id, nr_broker_job_stage(job));
    nr_bk_save(self, job, -1, NULL, 0, NR_STORE_CANCELLED);
    s_reply_job(self, identity, size, msg, job, 0, NULL, 0); /* sent once written */
}

/* STATS: the totals first, then four entries per known stage; the known
 * stages are at most NR_BROKER_STAGES_MAX, so every entry fits the reply's
 * NR_PROTO_KV_MAX. */
static void s_on_stats(nr_broker_t *self, const uint8_t *identity, size_t size, nr_msg_t *msg) {
    nr_msg_t rep;
    nr_proto_msg_init(&rep);
    char key[NR_PROTO_KEY_MAX + 1], num[32];
    size_t queued = 0, running = 0, workers = 0, aside = 0;
    for (nr_broker_stage_t *s = self->stages; s; s = s->next) {
        queued += s->queued;
        running += s->running;
        workers += s->workers_len;
        aside += nr_broker_workers_set_aside(self, s->name);
    }
    snprintf(num, sizeof num, "%zu", queued);
    nr_proto_kv_add(&rep, "jobs.queued", num);
    snprintf(num, sizeof num, "%zu", running);
    nr_proto_kv_add(&rep, "jobs.running", num);
    snprintf(num, sizeof num, "%zu", workers);
    nr_proto_kv_add(&rep, "workers", num);
    snprintf(num, sizeof num, "%zu", aside);
    nr_proto_kv_add(&rep, "workers_set_aside", num);
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
        snprintf(key, sizeof key, "set_aside.%s", s->name);
        snprintf(num, sizeof num, "%zu", nr_broker_workers_set_aside(self, s->name));
        nr_proto_kv_add(&rep, key, num);
    }
    /* The voices each stage's live workers offer, while the reply has room
     * (a speech stage in practice; proto bounds each worker's list). */
    char voices[4 * NR_PROTO_VOICES_BYTES];
    for (nr_broker_stage_t *s = self->stages; s && rep.kv_len < NR_PROTO_KV_MAX; s = s->next) {
        if (nr_broker_stage_voices(s, voices, sizeof voices) || !*voices) continue;
        snprintf(key, sizeof key, "voices.%s", s->name);
        nr_proto_kv_add(&rep, key, voices);
    }
    nr_bk_reply(self, identity, size, msg, &rep, 0, NULL);
    nr_proto_msg_clear(&rep);
}

/* JOBS: one page of a run's jobs from Redis, in the order they joined it:
 * "total", "next" (the next page's offset, when there is one), then per job
 * its position in the run -> "<state> <id>". A job held here shows its state
 * here (Redis may not have the latest yet). */
static void s_on_jobs(nr_broker_t *self, const uint8_t *identity, size_t size, nr_msg_t *msg) {
    if (!self->store) {
        s_reply_error(self, identity, size, msg, NR_EUNSUPPORTED, "runs are kept in redis; this broker runs without it");
        return;
    }
    nr_store_run_entry_t page[NR_BROKER_JOBS_PAGE];
    size_t n = 0;
    uint64_t total = 0;
    int rc = nr_store_run_page(self->store, msg->run, msg->offset, NR_BROKER_JOBS_PAGE, page, &n, &total);
    if (rc) {
        s_reply_error(self, identity, size, msg, rc, "cannot read the run from redis");
        return;
    }
    if (total == 0) {
        s_reply_error(self, identity, size, msg, NR_ENOTFOUND, "no such run");
        return;
    }
    nr_msg_t rep;
    nr_proto_msg_init(&rep);
    char key[32], value[NR_PROTO_ID_MAX + 24];
    snprintf(value, sizeof value, "%" PRIu64, total);
    nr_proto_kv_add(&rep, "total", value);
    if (msg->offset + (uint64_t)n < total) {
        snprintf(value, sizeof value, "%" PRIu64, msg->offset + (uint64_t)n);
        nr_proto_kv_add(&rep, "next", value);
    }
    for (size_t i = 0; i < n; i++) {
        const nr_broker_job_t *held = nr_broker_jobs_find(self->jobs, page[i].id);
        const char *state = held ? nr_job_state_name(held->state) : page[i].state[0] ? page[i].state : "unknown";
        snprintf(key, sizeof key, "%" PRIu64, msg->offset + (uint64_t)i);
        snprintf(value, sizeof value, "%s %s", state, page[i].id);
        nr_proto_kv_add(&rep, key, value);
    }
    nr_bk_reply(self, identity, size, msg, &rep, 0, NULL);
    nr_proto_msg_clear(&rep);
}

/* The review.* fields of a REVIEW's kv (caption, approved, speech_job), in
 * out[0..4) with review.ms. Returns the count, or NR_EINVAL with why. */
static int s_review_fields(const nr_msg_t *msg, int64_t wall_ms, nr_kv_t out[4], char ms[24], char *why,
                           size_t whylen) {
    int n = 0;
    if (msg->kv_len == 0) return nr_seterr(why, whylen, NR_EINVAL, "REVIEW carries nothing to review");
    for (uint32_t i = 0; i < msg->kv_len; i++) {
        const char *k = msg->kv[i].key, *v = msg->kv[i].value;
        if (!strcmp(k, "caption")) {
            size_t len = strlen(v);
            if (len == 0 || len > NR_BROKER_REVIEW_CAPTION_MAX || nr_utf8_validate((const uint8_t *)v, len, NULL))
                return nr_seterr(why, whylen, NR_EINVAL, "review caption must be 1..%d bytes of UTF-8",
                                 NR_BROKER_REVIEW_CAPTION_MAX);
            out[n++] = (nr_kv_t){"review.caption", (char *)v};
        } else if (!strcmp(k, "approved")) {
            if (strcmp(v, "0") && strcmp(v, "1"))
                return nr_seterr(why, whylen, NR_EINVAL, "review approved must be 0 or 1");
            out[n++] = (nr_kv_t){"review.approved", (char *)v};
        } else if (!strcmp(k, "speech_job")) {
            if (!nr_proto_id_valid(v))
                return nr_seterr(why, whylen, NR_EINVAL, "review speech_job must be a job id");
            out[n++] = (nr_kv_t){"review.speech_job", (char *)v};
        } else {
            return nr_seterr(why, whylen, NR_EINVAL, "REVIEW takes caption, approved and speech_job, not '%s'",
                             k);
        }
    }
    snprintf(ms, 24, "%" PRId64, wall_ms);
    out[n++] = (nr_kv_t){"review.ms", ms};
    return n;
}

/* REVIEW: a person's review of a done job (an edited caption, the job that
 * speaks it, approval) stored beside the worker's results in its record;
 * the answer is the record. */
static void s_on_review(nr_broker_t *self, const uint8_t *identity, size_t size, nr_msg_t *msg) {
    char why[160], ms[24];
    nr_kv_t fields[4];
    int n = s_review_fields(msg, self->wall_ms, fields, ms, why, sizeof why);
    if (n < 0) {
        s_reply_error(self, identity, size, msg, n, why);
        return;
    }
    nr_broker_job_t *job = NULL, *loaded = NULL;
    if (s_lookup_or_reply(self, identity, size, msg, &job, &loaded)) return;
    if (job->state != NR_JOB_DONE) {
        s_reply_job(self, identity, size, msg, job, NR_ESTATE, "only a done job can be reviewed", 0);
    } else if (self->store && nr_store_set_fields(self->store, job->id, fields, (size_t)n)) {
        s_reply_error(self, identity, size, msg, NR_EREDIS, "could not write the review to redis");
    } else {
        int rc = 0;
        for (int i = 0; i < n && !rc; i++) rc = nr_broker_job_set(job, fields[i].key, fields[i].value);
        if (rc) s_reply_error(self, identity, size, msg, rc, "out of memory");
        else s_reply_job(self, identity, size, msg, job, 0, NULL, 0);
    }
    nr_broker_job_destroy(&loaded);
}

/* Sends a FETCH's REPLY whose blob came (or failed: rc), unless the client
 * already has more unread than it may: then busy. */
static void s_fetch_answer(nr_broker_t *self, nr_bk_fetch_t *f, int rc, uint8_t **data,
                           size_t n) {
    nr_msg_t *rep = &f->rep;
    size_t queued = self->backlog && self->params.client_reply_bytes > 0
                        ? self->backlog(self->backlog_ctx, f->identity, f->identity_size) : 0;
    if (!rc && queued && queued + n > (size_t)self->params.client_reply_bytes) rc = NR_EBUSY;
    if (!rc) rc = nr_proto_frame_take(rep, data, n);
    if (rc) {
        char id[sizeof rep->id];
        memcpy(id, rep->id, sizeof id);
        uint64_t seq = rep->seq;
        nr_proto_msg_clear(rep);
        rep->cmd = NR_CMD_REPLY;
        rep->seq = seq;
        memcpy(rep->id, id, sizeof id);
        rep->code = rc;
        if (rc == NR_EBUSY)
            snprintf(rep->message, sizeof rep->message,
                     "%zu bytes of replies to this client are unread (limit %ld, setting "
                     "client-reply-bytes); read them and retry", queued,
                     self->params.client_reply_bytes);
        else if (rc == NR_ENOTFOUND && !strcmp(f->what, "thumbnail"))
            snprintf(rep->message, sizeof rep->message, "%s", S_NO_THUMBNAIL);
        else
            snprintf(rep->message, sizeof rep->message, "output of %s: %s", f->what,
                     rc == NR_ENOTFOUND ? "expired or missing" : nr_strerror(rc));
    }
    nr_bk_send(self, NR_BROKER_CLIENTS, f->identity, f->identity_size, rep);
    nr_proto_msg_clear(rep);
}

void nr_bk_fetch_answers(nr_broker_t *self, int wait) {
    uint64_t tag;
    int rc;
    uint8_t *data;
    size_t n;
    while (self->fetches_len &&
           nr_store_read_next(self->store, NR_BK_FETCH_TURN_BYTES, wait, &tag, &rc, &data, &n)) {
        nr_bk_fetch_t *f = &self->fetches[self->fetch_first];
        self->fetch_first = (self->fetch_first + 1) % NR_STORE_READS_MAX;
        self->fetches_len--;
        if (f->tag != tag) { /* cannot happen: both are in send order */
            nr_log(NR_LOG_ERROR, "blob read %" PRIu64 " answered for %" PRIu64, tag, f->tag);
            rc = NR_EINTERNAL;
        }
        s_fetch_answer(self, f, rc, &data, n);
        free(data);
    }
}

void nr_broker_client_message(nr_broker_t *self, const uint8_t *identity, size_t identity_size,
                              nr_msg_t *msg, int64_t now) {
    nr_bk_enter(self, now);
    size_t queued = self->backlog && self->params.client_reply_bytes > 0
                        ? self->backlog(self->backlog_ctx, identity, identity_size) : 0;
    if (queued >= (size_t)self->params.client_reply_bytes && queued) {
        /* Its replies pile up in the broker: no more until it reads them. */
        char text[200];
        snprintf(text, sizeof text,
                 "%zu bytes of replies to this client are unread (limit %ld, setting "
                 "client-reply-bytes); read them and retry", queued, self->params.client_reply_bytes);
        s_reply_error(self, identity, identity_size, msg, NR_EBUSY, text);
        nr_bk_leave(self);
        return;
    }
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
    case NR_CMD_JOBS:
        s_on_jobs(self, identity, identity_size, msg);
        break;
    case NR_CMD_REVIEW:
        s_on_review(self, identity, identity_size, msg);
        break;
    default: {
        char text[96];
        snprintf(text, sizeof text, "%s is not a client command", nr_proto_cmd_name(msg->cmd));
        s_reply_error(self, identity, identity_size, msg, NR_EPROTO, text);
    }
    }
    nr_bk_leave(self);
}

void nr_broker_client_error(nr_broker_t *self, const uint8_t *identity, size_t identity_size,
                            int code, const char *message) {
    static nr_log_limit_t limit; /* a flood of garbage is not a flood of log lines */
    nr_log_limited(&limit, NR_LOG_INFO, "malformed client message: %s", message);
    nr_bk_enter(self, self->now);
    s_reply_error(self, identity, identity_size, NULL, code, message);
    nr_bk_leave(self);
}

