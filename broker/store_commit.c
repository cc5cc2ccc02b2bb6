/* Sending the queued saves (one MULTI ... EXEC per batch), reading their
 * replies as they come and settling each save's job in order. */
#include "broker/store_internal.h"
#include "common/error.h"
#include "common/log.h"

#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Marks save s failed with `bad`. */
static void s_fail_save(nr_store_t *self, struct nr_st_save *s, const char *bad) {
    if (s->rc) return;
    s->rc = NR_EREDIS;
    snprintf(self->err, sizeof self->err, "saving job %s: %s", s->job->id, bad);
    self->errors++;
    nr_log(NR_LOG_ERROR, "redis: %s", self->err);
}

/* One result of save s's commands, from its transaction's EXEC reply. */
static void s_take_result(nr_store_t *self, struct nr_st_save *s, const redisReply *r) {
    if (r->type == REDIS_REPLY_ERROR) {
        s_fail_save(self, s, r->str);
    } else if (s->check) {
        /* The state of the record that has this id, if any. */
        if (r->type == REDIS_REPLY_NIL) s->check_result = NR_STORE_NEW;
        else if (r->type == REDIS_REPLY_STRING)
            s->check_result = !strcmp(r->str, "failed") || !strcmp(r->str, "cancelled")
                                  ? NR_STORE_REPLACED : NR_STORE_EXISTS;
        else s_fail_save(self, s, "unexpected reply to the id check");
    }
}

/* Takes the EXEC reply r of the oldest closed transaction and settles the
 * reading of its saves: each gets its commands' results; an aborted
 * transaction (EXECABORT: a command refused when queued, e.g. OOM) fails
 * them all. */
static void s_take_exec(nr_store_t *self, const redisReply *r) {
    const struct nr_st_tx *t = &self->sent_txs[0];
    const char *bad = r->type == REDIS_REPLY_ERROR ? r->str
                      : r->type != REDIS_REPLY_ARRAY || r->elements != t->cmds
                          ? "transaction aborted" : NULL;
    size_t e = 0;
    for (size_t i = 0; i < t->saves; i++) {
        struct nr_st_save *s = &self->saves[self->n_read + i];
        if (bad) {
            if (s->replies) s_fail_save(self, s, bad);
            continue;
        }
        s->applied = 1;
        for (int k = 0; k < s->replies; k++) s_take_result(self, s, r->element[e++]);
    }
    for (; !bad && e < r->elements; e++) /* the counters */
        if (r->element[e]->type == REDIS_REPLY_ERROR)
            nr_log(NR_LOG_ERROR, "redis: counting in %s:stats: %s", self->params.prefix,
                   r->element[e]->str);
}

/* Takes reply r (freed here) of the oldest closed transaction: MULTI's
 * +OK, a +QUEUED per command (an error there makes EXEC abort), then
 * EXEC's. The transaction's saves are read once EXEC's reply is in. */
static void s_consume(nr_store_t *self, redisReply *r) {
    struct nr_st_tx *t = &self->sent_txs[0];
    if (self->rd_n++ == t->cmds + 1) { /* EXEC's, after MULTI's and t->cmds QUEUED */
        s_take_exec(self, r);
        self->n_read += t->saves;
        memmove(self->sent_txs, self->sent_txs + 1, --self->n_sent_txs * sizeof *t);
        self->rd_n = 0;
    }
    freeReplyObject(r);
}

/* Skips the closed transactions that sent nothing (their saves wrote
 * nothing: settled without a write). */
static void s_skip_silent(nr_store_t *self) {
    while (self->n_sent_txs && !self->sent_txs[0].multi) {
        self->n_read += self->sent_txs[0].saves;
        memmove(self->sent_txs, self->sent_txs + 1, --self->n_sent_txs * sizeof *self->sent_txs);
    }
}

/* Reads the replies of the first `upto` saves, waiting for them (their
 * transactions are closed). A lost connection fails every save still
 * unread (maybe applied). Returns 0 or NR_EREDIS (connection lost). */
static int s_read_upto(nr_store_t *self, size_t upto) {
    for (;;) {
        s_skip_silent(self);
        if (self->n_read >= upto || !self->n_sent_txs) return self->ctx ? 0 : NR_EREDIS;
        redisReply *r = NULL;
        if (!self->ctx || redisGetReply(self->ctx, (void **)&r) != REDIS_OK || !r)
            return nr_st_down(self, "MULTI/EXEC"); /* fails every save still unread */
        s_consume(self, r);
    }
}

/* Closes the open transaction and reads the replies of every queued save
 * (a read must come after them). */
int nr_st_drain(nr_store_t *self) {
    if (nr_st_close_tx(self)) return NR_EREDIS;
    return s_read_upto(self, self->n_saves);
}

size_t nr_store_send(nr_store_t *self) {
    const size_t n = self->n_saves - self->n_sent;
    self->n_sent = self->n_saves;
    if (nr_st_close_tx(self)) return n;
    int done = 0;
    while (self->ctx && !done)
        if (redisBufferWrite(self->ctx, &done) != REDIS_OK) nr_st_down(self, "MULTI/EXEC");
    return n;
}

int nr_store_fd(const nr_store_t *self) {
    return self && self->ctx && self->n_read < self->n_sent ? self->ctx->fd : -1;
}

int nr_store_answered(nr_store_t *self, size_t n) {
    if (n > self->n_sent) n = self->n_sent;
    for (;;) {
        s_skip_silent(self);
        if (self->n_read >= n || !self->ctx || !self->n_sent_txs) return 1;
        redisReply *r = NULL;
        if (redisGetReplyFromReader(self->ctx, (void **)&r) != REDIS_OK) {
            nr_st_down(self, "MULTI/EXEC");
            return 1;
        }
        if (r) {
            s_consume(self, r);
            continue;
        }
        /* Nothing whole in the buffer: read once more only if that cannot block. */
        struct pollfd p = {self->ctx->fd, POLLIN, 0};
        if (poll(&p, 1, 0) != 1) return 0;
        if (redisBufferRead(self->ctx) != REDIS_OK) {
            nr_st_down(self, "MULTI/EXEC");
            return 1;
        }
    }
}

/* After save s settled: what the record now holds, for the next save. */
static void s_note_record(const struct nr_st_save *s, nr_broker_job_t *job) {
    if (s->rc || !s->replies || s->check) {
        job->stored.record_saved = 0;
        return;
    }
    job->stored.record_saved = 1;
    job->stored.saved_stage_index = s->stage_index;
    job->stored.saved_error = s->error;
    /* A field replaced or dropped after this save was queued is not in it. */
    job->stored.fields_saved = job->stored.fields_edits == s->fields_edits ? s->fields_upto : 0;
}

void nr_store_settle(nr_store_t *self, size_t n, void (*fn)(nr_broker_job_t *job, int rc, void *arg),
                     void *arg) {
    if (n > self->n_sent) n = self->n_sent;
    s_read_upto(self, n);
    for (size_t i = 0; i < n; i++) {
        struct nr_st_save *s = &self->saves[i];
        nr_broker_job_t *job = s->job;
        if (s->rc) {
            self->n_stages_known = 0; /* a SADD may not have happened */
            /* Its transaction ran (one of its commands failed): its counts
             * were written with the transaction's, so they are not owed. */
            if (s->applied) memset(s->counts, 0, sizeof s->counts);
            nr_st_give_back(s, job);
        } else if (s->check) {
            job->guard = s->check_result;
        }
        s_note_record(s, job);
        for (int k = 0; k < NR_BROKER_BLOB_SLOTS; k++) free(s->outs[k]);
        if (job->saving) job->saving--;
        if (fn) fn(job, s->rc, arg);
    }
    /* The saves queued after the send stay, first in line now. */
    memmove(self->saves, self->saves + n, (self->n_saves - n) * sizeof *self->saves);
    self->n_saves -= n;
    self->n_read -= n;
    self->n_sent -= n;
}

void nr_store_commit(nr_store_t *self, void (*fn)(nr_broker_job_t *job, int rc, void *arg),
                     void *arg) {
    nr_store_send(self);
    nr_store_settle(self, self->n_sent, fn, arg);
}

size_t nr_store_queued(const nr_store_t *self) { return self ? self->n_saves - self->n_sent : 0; }

void nr_store_discard(nr_store_t *self) {
    nr_st_drain(self);
    for (size_t i = 0; i < self->n_saves; i++)
        for (int k = 0; k < NR_BROKER_BLOB_SLOTS; k++) free(self->saves[i].outs[k]);
    self->n_saves = self->n_read = self->n_sent = 0;
}
