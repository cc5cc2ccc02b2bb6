/* All of the broker's Redis I/O (hiredis, synchronous, pipelined): the
 * connection, building commands and queuing saves (store_internal.h says
 * which file does the rest). */
#include "broker/store_internal.h"
#include "common/error.h"
#include "common/log.h"

#include <hiredis/hiredis.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_BACKOFF_MIN_MS 1000
#define S_BACKOFF_MAX_MS 32000


static void s_arg(nr_st_cmd_t *c, const void *data, size_t len) {
    if (c->argc >= 160) return;
    c->argv[c->argc] = data;
    c->len[c->argc] = len;
    c->argc++;
}

void nr_st_str(nr_st_cmd_t *c, const char *s) { s_arg(c, s, strlen(s)); }

/* Writes v in decimal at p; returns the end. */
static char *s_put_int(char *p, int64_t v) {
    char tmp[24];
    int n = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do tmp[n++] = (char)('0' + u % 10); while (u /= 10);
    if (v < 0) *p++ = '-';
    while (n) *p++ = tmp[--n];
    return p;
}

/* An integer argument (the hot path's numbers, without printf). */
static void s_int(nr_st_cmd_t *c, int64_t v) {
    if (c->argc >= 160) return;
    char *end = s_put_int(c->bufs[c->argc], v);
    s_arg(c, c->bufs[c->argc], (size_t)(end - c->bufs[c->argc]));
}

/* A key made of the NULL-ended parts, e.g. s_key(c, P, ":job:", id, NULL). */
static void s_key(nr_st_cmd_t *c, ...) __attribute__((sentinel));
static void s_key(nr_st_cmd_t *c, ...) {
    if (c->argc >= 160) return;
    char *buf = c->bufs[c->argc];
    size_t len = 0;
    va_list ap;
    va_start(ap, c);
    for (const char *part; (part = va_arg(ap, const char *));) {
        size_t n = strlen(part);
        if (n > sizeof c->bufs[0] - 1 - len) n = sizeof c->bufs[0] - 1 - len; /* cannot happen */
        memcpy(buf + len, part, n);
        len += n;
    }
    va_end(ap);
    s_arg(c, buf, len);
}

void nr_st_fmt(nr_st_cmd_t *c, const char *fmt, ...) {
    if (c->argc >= 160) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->bufs[c->argc], sizeof c->bufs[0], fmt, ap);
    va_end(ap);
    nr_st_str(c, c->bufs[c->argc]);
}

void nr_store_default_params(nr_store_params_t *p) {
    memset(p, 0, sizeof *p);
    snprintf(p->host, sizeof p->host, "127.0.0.1");
    p->port = 6379;
    snprintf(p->prefix, sizeof p->prefix, "narrator");
    p->retention_s = 86400;
    p->timeout_ms = 2000;
    p->events_max = 100000;
}

nr_store_t *nr_store_new(const nr_store_params_t *params) {
    nr_store_t *self = calloc(1, sizeof *self);
    if (!self) return NULL;
    if (params) self->params = *params;
    else nr_store_default_params(&self->params);
    nr_backoff_init(&self->backoff, S_BACKOFF_MIN_MS, S_BACKOFF_MAX_MS);
    return self;
}

void nr_store_destroy(nr_store_t **p) {
    if (!p || !*p) return;
    if ((*p)->ctx) redisFree((*p)->ctx);
    if ((*p)->rctx) redisFree((*p)->rctx);
    for (size_t i = 0; i < (*p)->n_saves; i++)
        for (int k = 0; k < NR_BROKER_BLOB_SLOTS; k++) free((*p)->saves[i].outs[k]);
    free((*p)->saves);
    free((*p)->sent_txs);
    free((*p)->cmd);
    free((*p)->resp);
    free(*p);
    *p = NULL;
}

int nr_store_is_up(const nr_store_t *self) { return self && self->ctx != NULL; }
const char *nr_store_error(const nr_store_t *self) { return self->err; }

int64_t nr_store_next_retry_ms(const nr_store_t *self) {
    return self->ctx ? INT64_MAX : self->retry_ms;
}

/* Drops the connection after an error and schedules a reconnect. */
int nr_st_down(nr_store_t *self, const char *what) {
    self->errors++;
    if (self->ctx) {
        snprintf(self->err, sizeof self->err, "%s: %s", what,
                 self->ctx->errstr[0] ? self->ctx->errstr : "connection lost");
        nr_log(NR_LOG_ERROR, "redis %s:%ld unreachable (%s); retrying with backoff, "
               "SUBMIT refused meanwhile", self->params.host, self->params.port, self->err);
        redisFree(self->ctx);
        self->ctx = NULL;
    }
    self->n_stages_known = 0;
    self->retry_ms = 0; /* maintain() schedules the reconnect on its clock */
    /* Saves whose replies are lost with the connection failed, but Redis
     * may have applied them. */
    for (size_t k = self->n_read; k < self->n_saves; k++) {
        self->saves[k].rc = NR_EREDIS;
        self->saves[k].unsure = self->saves[k].replies > 0;
    }
    self->n_read = self->n_saves;
    memset(&self->tx, 0, sizeof self->tx);
    memset(self->tx_counts, 0, sizeof self->tx_counts);
    self->n_sent_txs = 0;
    self->rd_n = 0;
    return NR_EREDIS;
}


/* Runs one command and returns its reply (caller frees), or NULL. */
redisReply *nr_st_run(nr_store_t *self, nr_st_cmd_t *c) {
    if (nr_st_drain(self) || !self->ctx) return NULL; /* queued saves first */
    redisReply *r = redisCommandArgv(self->ctx, c->argc, c->argv, c->len);
    if (!r) nr_st_down(self, c->argv[0]);
    return r;
}

static void s_check_config(nr_store_t *self) {
    static const char *names[] = {"maxmemory-policy", "appendonly"};
    static const char *want[] = {"noeviction", "yes"};
    for (int i = 0; i < 2; i++) {
        nr_st_cmd_t c = {.argc = 0};
        nr_st_str(&c, "CONFIG");
        nr_st_str(&c, "GET");
        nr_st_str(&c, names[i]);
        redisReply *r = nr_st_run(self, &c);
        if (!r) return;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
            r->element[1]->type == REDIS_REPLY_STRING) {
            if (strcmp(r->element[1]->str, want[i]))
                nr_log(NR_LOG_WARN, "redis %s is '%s', not '%s': the job record is not durable "
                       "(set %s %s)", names[i], r->element[1]->str, want[i], names[i], want[i]);
        } else {
            nr_log(NR_LOG_WARN, "cannot read redis %s (CONFIG GET refused?): check it is %s",
                   names[i], want[i]);
        }
        freeReplyObject(r);
    }
    self->checked = 1;
}

int nr_store_connect(nr_store_t *self) {
    if (self->ctx) return 0;
    struct timeval tv = {self->params.timeout_ms / 1000, (self->params.timeout_ms % 1000) * 1000};
    redisContext *ctx = redisConnectWithTimeout(self->params.host, (int)self->params.port, tv);
    if (!ctx || ctx->err) {
        snprintf(self->err, sizeof self->err, "connect %s:%ld: %s", self->params.host,
                 self->params.port, ctx ? ctx->errstr : "out of memory");
        if (ctx) redisFree(ctx);
        goto err;
    }
    redisSetTimeout(ctx, tv);
    self->ctx = ctx;
    nr_st_cmd_t c = {.argc = 0};
    if (self->params.password[0]) {
        nr_st_str(&c, "AUTH");
        nr_st_str(&c, self->params.password);
    } else {
        nr_st_str(&c, "PING");
    }
    redisReply *r = nr_st_run(self, &c);
    if (!r) goto err;
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(self->err, sizeof self->err, "%s: %s", c.argv[0], r->str);
        freeReplyObject(r);
        redisFree(self->ctx);
        self->ctx = NULL;
        goto err;
    }
    freeReplyObject(r);
    nr_log(NR_LOG_INFO, "redis %s:%ld connected (prefix '%s')", self->params.host,
           self->params.port, self->params.prefix);
    nr_backoff_reset(&self->backoff);
    if (!self->checked) s_check_config(self);
    return self->ctx ? 0 : NR_EREDIS;
err:
    self->errors++;
    nr_log(NR_LOG_ERROR, "redis unreachable: %s; retrying in %" PRId64 " ms (SUBMIT refused "
           "meanwhile)", self->err, self->backoff.delay_ms);
    self->retry_ms = 0;
    return NR_EREDIS;
}

int nr_store_maintain(nr_store_t *self, int64_t now) {
    if (self->ctx) {
        /* A PING now and then, so an idle broker notices a lost Redis too. */
        if (now < self->ping_ms) return 0;
        self->ping_ms = now + 5000;
        nr_st_cmd_t c = {.argc = 0};
        nr_st_str(&c, "PING");
        redisReply *r = nr_st_run(self, &c);
        if (r) freeReplyObject(r);
        return 0;
    }
    if (self->retry_ms == 0) {
        self->retry_ms = now + nr_backoff_next(&self->backoff);
        return 0;
    }
    if (now < self->retry_ms) return 0;
    self->retry_ms = 0;
    return nr_store_connect(self) == 0 ? 1 : 0;
}

/* Names in P:stats of the counters (nr_store_counter_t order), which index
 * job->stored.unsaved_counts. */
static const char *const s_counters[NR_STORE_COUNTERS] = {"submitted", "done", "failed",
                                                          "cancelled", "retried"};
#define S_N_COUNTERS ((size_t)NR_STORE_COUNTERS)

/* A save that failed on a lost connection may still have been applied by
 * Redis (EXEC ran, the reply was lost). Before writing a kept state again,
 * look: when the stored record already has this job's state, attempts and
 * updated_ms, that write landed, and writing it again would add a second
 * event and count the transition twice. Returns 1 when it landed. */
static int s_already_saved(nr_store_t *self, const nr_broker_job_t *job) {
    if (nr_st_drain(self) || !self->ctx) return 0;
    redisReply *r = redisCommand(self->ctx, "HMGET %s:job:%s state attempts updated_ms",
                                 self->params.prefix, job->id);
    int landed = 0;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING &&
        r->element[2]->type == REDIS_REPLY_STRING) {
        char attempts[32], updated[32];
        snprintf(attempts, sizeof attempts, "%" PRIu32, job->attempts);
        snprintf(updated, sizeof updated, "%" PRId64, job->updated_ms);
        landed = !strcmp(r->element[0]->str, nr_job_state_name(job->state)) &&
                 !strcmp(r->element[1]->str, attempts) && !strcmp(r->element[2]->str, updated);
    }
    if (r) freeReplyObject(r);
    else nr_st_down(self, "HMGET");
    return landed;
}

static void s_append_raw(nr_store_t *self, nr_st_cmd_t *c, int *queued);

/* Appends a save's command to the open transaction and counts it. */
static void s_append(nr_store_t *self, nr_st_cmd_t *c, int *queued) {
    if (!self->tx.multi) {
        static const char multi[] = "*1\r\n$5\r\nMULTI\r\n";
        if (redisAppendFormattedCommand(self->ctx, multi, sizeof multi - 1) != REDIS_OK)
            return; /* not queued: the save fails as if Redis were down */
        self->tx.multi = 1;
    }
    int n = 0;
    s_append_raw(self, c, &n);
    self->tx.cmds += (size_t)n;
    *queued += n;
}

/* Appends a command to the pipeline and counts it. It is written in RESP
 * here, as redisAppendCommandArgv would with its generic formatter (which
 * was a tenth of the broker's time). */
static void s_append_raw(nr_store_t *self, nr_st_cmd_t *c, int *queued) {
    size_t need = 16;
    for (int i = 0; i < c->argc; i++) need += c->len[i] + 24;
    if (need > self->resp_cap) {
        char *b = realloc(self->resp, need);
        if (!b) return; /* not queued: the save fails as if Redis were down */
        self->resp = b, self->resp_cap = need;
    }
    char *p = self->resp;
    *p++ = '*';
    p = s_put_int(p, c->argc);
    *p++ = '\r', *p++ = '\n';
    for (int i = 0; i < c->argc; i++) {
        *p++ = '$';
        p = s_put_int(p, (int64_t)c->len[i]);
        *p++ = '\r', *p++ = '\n';
        memcpy(p, c->argv[i], c->len[i]);
        p += c->len[i];
        *p++ = '\r', *p++ = '\n';
    }
    if (redisAppendFormattedCommand(self->ctx, self->resp, (size_t)(p - self->resp)) == REDIS_OK)
        (*queued)++;
    if (self->resp_cap > (1u << 20)) { /* a large payload went through: do not keep its room */
        free(self->resp);
        self->resp = NULL, self->resp_cap = 0;
    }
}

/* A new queued save for job, or NULL (out of memory). */
static struct nr_st_save *s_save_new(nr_store_t *self, nr_broker_job_t *job) {
    if (self->n_saves == self->cap_saves) {
        size_t cap = self->cap_saves ? self->cap_saves * 2 : 64;
        struct nr_st_save *v = realloc(self->saves, cap * sizeof *v);
        if (!v) return NULL;
        self->saves = v;
        self->cap_saves = cap;
    }
    struct nr_st_save *s = &self->saves[self->n_saves++];
    memset(s, 0, sizeof *s);
    s->job = job;
    self->tx.saves++;
    return s;
}

/* Takes back the last save, which queued no command. */
static void s_save_drop_last(nr_store_t *self) {
    self->n_saves--;
    self->tx.saves--;
}

/* Closes the open transaction: its counters, then EXEC. 0, or NR_EREDIS
 * when it cannot be queued (the connection is then given up, failing its
 * saves). */
int nr_st_close_tx(nr_store_t *self) {
    /* A MULTI whose only save was taken back is closed too, or the next
     * transaction's MULTI would nest in it. */
    if (!self->tx.saves && !self->tx.multi) return 0;
    if (self->n_sent_txs == self->cap_sent_txs) {
        size_t cap = self->cap_sent_txs ? 2 * self->cap_sent_txs : 16;
        struct nr_st_tx *v = realloc(self->sent_txs, cap * sizeof *v);
        if (!v) return nr_st_down(self, "out of memory");
        self->sent_txs = v, self->cap_sent_txs = cap;
    }
    if (self->tx.multi) {
        nr_st_cmd_t *c = self->cmd;
        for (size_t k = 0; k < S_N_COUNTERS; k++) {
            if (!self->tx_counts[k]) continue;
            int n = 0;
            c->argc = 0;
            nr_st_str(c, "HINCRBY");
            s_key(c, self->params.prefix, ":stats", NULL);
            nr_st_str(c, s_counters[k]);
            s_int(c, self->tx_counts[k]);
            s_append_raw(self, c, &n);
            if (!n) return nr_st_down(self, "out of memory");
            self->tx.cmds++;
        }
        static const char exec[] = "*1\r\n$4\r\nEXEC\r\n";
        if (redisAppendFormattedCommand(self->ctx, exec, sizeof exec - 1) != REDIS_OK)
            return nr_st_down(self, "out of memory");
    }
    self->sent_txs[self->n_sent_txs++] = self->tx;
    memset(&self->tx, 0, sizeof self->tx);
    memset(self->tx_counts, 0, sizeof self->tx_counts);
    return 0;
}

/* Moves what the job kept from failed writes into save s: from here on it
 * travels with s, and comes back to the job only if s fails. */
static void s_take_kept(struct nr_st_save *s, nr_broker_job_t *job) {
    for (size_t k = 0; k < S_N_COUNTERS; k++) s->counts[k] += job->stored.unsaved_counts[k];
    memset(job->stored.unsaved_counts, 0, sizeof job->stored.unsaved_counts);
    for (int i = 0; i < NR_BROKER_BLOB_SLOTS; i++) {
        s->outs[i] = job->unsaved[i], s->out_sizes[i] = job->unsaved_size[i];
        job->unsaved[i] = NULL, job->unsaved_size[i] = 0;
    }
    s->input = job->input_unsaved;
    s->reset = job->reset;
    job->input_unsaved = job->reset = 0;
    job->dirty = job->stored.maybe_landed = 0;
    job->saving++;
}

/* Gives the job back what failed save s carried. An output the job kept
 * meanwhile (a later save that failed at once) is newer and stays. */
void nr_st_give_back(struct nr_st_save *s, nr_broker_job_t *job) {
    for (size_t k = 0; k < S_N_COUNTERS; k++) job->stored.unsaved_counts[k] += s->counts[k];
    for (int i = 0; i < NR_BROKER_BLOB_SLOTS; i++) {
        if (!s->outs[i]) continue;
        if (job->unsaved[i]) {
            free(s->outs[i]);
        } else {
            job->unsaved[i] = s->outs[i], job->unsaved_size[i] = s->out_sizes[i];
        }
        s->outs[i] = NULL;
    }
    if (s->input) job->input_unsaved = 1;
    if (s->reset) job->reset = 1;
    /* Only a lost reply may have landed, and only if nothing earlier of
     * this job surely failed (its data would be skipped with it). */
    job->stored.maybe_landed = s->unsure && (!job->dirty || job->stored.maybe_landed);
    job->dirty = 1;
}

/* The first step of a new job's first save: one HGET of the state of the
 * record that has its id. Nothing is written: the broker then writes (or
 * answers with the job that has the id) when it reads job->guard. The
 * counter is owed to that write. */
static int s_check(nr_store_t *self, nr_broker_job_t *job, int owed) {
    struct nr_st_save *s = s_save_new(self, job);
    if (!s) return NR_EREDIS;
    s->check = 1;
    nr_st_cmd_t *c = self->cmd;
    c->argc = 0;
    nr_st_str(c, "HGET");
    s_key(c, self->params.prefix, ":job:", job->id, NULL);
    nr_st_str(c, "state");
    int queued = 0;
    s_append(self, c, &queued);
    if (!queued) {
        s_save_drop_last(self);
        return NR_EREDIS;
    }
    s->replies = queued;
    if (owed >= 0) job->stored.unsaved_counts[owed]++;
    job->saving++;
    return 0;
}

/* A save that could not be queued: the job keeps its state, its output
 * and the count (SUBMIT is refused when its save fails, so it never owes
 * one). Returns NR_EREDIS. */
static int s_fail_err(nr_broker_job_t *job, int owed) {
    if (owed >= 0 && owed != NR_STORE_SUBMITTED) job->stored.unsaved_counts[owed]++;
    job->dirty = 1;
    job->stored.maybe_landed = 0;
    return NR_EREDIS;
}

/* A save being written: the commands go into self->cmd one at a time and
 * are appended to the open transaction; `queued` counts them. */
typedef struct {
    nr_store_t *self;
    nr_broker_job_t *job;
    struct nr_st_save *s;
    nr_st_cmd_t *c;
    const char *P;          /* key prefix */
    const char *stage_name; /* the job's current stage */
    char key[256];          /* P:job:<id> */
    int delta;              /* only what changed since the last landed save */
    int stage_moved;        /* the stage (and pending sets) need writing */
    int final;
    long ttl;
    int queued;
    unsigned wrote_out;     /* outputs SET here (with their TTL when final) */
} s_write_t;

static void s_begin(s_write_t *w) { w->c->argc = 0; }
static void s_end(s_write_t *w) { s_append(w->self, w->c, &w->queued); }

/* The job hash: DEL first when the old record must go, then one HSET (or
 * more when the fields outgrow one argv) of what changed. */
static void s_write_record(s_write_t *w) {
    nr_broker_job_t *job = w->job;
    nr_st_cmd_t *c = w->c;
    char route[512]; /* argv keeps pointers: it must live until s_end */
    if (w->s->reset) {
        s_begin(w);
        nr_st_str(c, "DEL");
        nr_st_str(c, w->key);
        s_end(w);
    }
    s_begin(w);
    nr_st_str(c, "HSET");
    nr_st_str(c, w->key);
    nr_st_str(c, "state"), nr_st_str(c, nr_job_state_name(job->state));
    nr_st_str(c, "attempts"), s_int(c, job->attempts);
    nr_st_str(c, "updated_ms"), s_int(c, job->updated_ms);
    if (w->stage_moved) {
        nr_st_str(c, "stage"), nr_st_str(c, w->stage_name);
        nr_st_str(c, "stage_index"), s_int(c, job->stage_index);
    }
    if (!w->delta || job->error || job->stored.saved_error || job->error_message[0]) {
        nr_st_str(c, "error"), nr_st_str(c, job->error ? nr_errname(job->error) : "");
        nr_st_str(c, "error_message"), nr_st_str(c, job->error_message);
    }
    if (!w->delta) {
        nr_st_str(c, "id"), nr_st_str(c, job->id);
        nr_broker_job_route_string(job, route, sizeof route);
        nr_st_str(c, "route"), nr_st_str(c, route);
        nr_st_str(c, "created_ms"), s_int(c, job->created_ms);
    }
    /* The job's own fields go into the same HSET while they fit, so any
     * number fits the argv but a usual job is one command. */
    for (uint32_t i = w->delta ? job->stored.fields_saved : 0; i < job->fields_len; i++) {
        if (c->argc >= 150) {
            s_end(w);
            s_begin(w);
            nr_st_str(c, "HSET");
            nr_st_str(c, w->key);
        }
        nr_st_str(c, job->fields[i].key);
        nr_st_str(c, job->fields[i].value);
    }
    s_end(w);
    /* A job submitted in a run joins the run's list with its whole record
     * (NX: a rewrite after a failed save keeps its place). */
    const char *run = nr_broker_job_get(job, "run");
    if (!w->delta && run && *run) {
        s_begin(w);
        nr_st_str(c, "ZADD");
        s_key(c, w->P, ":run:", run, NULL);
        nr_st_str(c, "NX");
        s_int(c, job->created_ms);
        nr_st_str(c, job->id);
        s_end(w);
    }
}

/* The input when unsaved, and the outputs this save carries. */
static void s_write_blobs(s_write_t *w) {
    nr_broker_job_t *job = w->job;
    nr_st_cmd_t *c = w->c;
    if (w->s->input && job->input) {
        s_begin(w);
        nr_st_str(c, "SET");
        s_key(c, w->P, ":input:", job->id, NULL);
        s_arg(c, job->input, job->input_size);
        if (w->final) nr_st_str(c, "EX"), s_int(c, w->ttl);
        s_end(w);
    }
    for (int i = 0; i < NR_BROKER_BLOB_SLOTS; i++) {
        if (!w->s->outs[i] || (i != NR_BROKER_THUMB_SLOT && (uint32_t)i >= job->route_len)) continue;
        s_begin(w);
        nr_st_str(c, "SET");
        s_key(c, w->P, ":out:", nr_broker_job_slot_name(job, i), ":", job->id, NULL);
        s_arg(c, w->s->outs[i], w->s->out_sizes[i]);
        if (w->final) nr_st_str(c, "EX"), s_int(c, w->ttl);
        s_end(w);
        w->wrote_out |= 1u << i;
    }
}

/* Pending-set membership when the stage moved or the job ended; the stage
 * name in P:stages; the retention TTLs of a finished job's blobs. */
static void s_write_pending(s_write_t *w) {
    nr_store_t *self = w->self;
    nr_broker_job_t *job = w->job;
    nr_st_cmd_t *c = w->c;
    for (uint32_t i = 0; i < job->route_len && (w->stage_moved || w->final); i++) {
        s_begin(w);
        if (!w->final && i == job->stage_index) {
            nr_st_str(c, "ZADD");
            s_key(c, w->P, ":pending:", job->route[i], NULL);
            nr_st_str(c, "NX");
            s_int(c, job->updated_ms);
        } else {
            nr_st_str(c, "ZREM");
            s_key(c, w->P, ":pending:", job->route[i], NULL);
        }
        nr_st_str(c, job->id);
        s_end(w);
    }
    if (!w->final) {
        int stage_known = 0;
        for (int k = 0; k < self->n_stages_known && !stage_known; k++)
            stage_known = !strcmp(self->stages_known[k], w->stage_name);
        if (stage_known) return;
        s_begin(w);
        nr_st_str(c, "SADD");
        s_key(c, w->P, ":stages", NULL);
        nr_st_str(c, w->stage_name);
        s_end(w);
        /* Known from now on; any failed save forgets every stage. */
        if (self->n_stages_known < NR_PROTO_ROUTE_MAX) {
            snprintf(self->stages_known[self->n_stages_known], sizeof self->stages_known[0], "%s",
                     w->stage_name);
            self->n_stages_known++;
        }
        return;
    }
    if (!(w->s->input && job->input)) {
        s_begin(w);
        nr_st_str(c, "EXPIRE");
        s_key(c, w->P, ":input:", job->id, NULL);
        s_int(c, w->ttl);
        s_end(w);
    }
    for (int i = 0; i < NR_BROKER_BLOB_SLOTS; i++) {
        if ((w->wrote_out & (1u << i)) || (i != NR_BROKER_THUMB_SLOT && (uint32_t)i >= job->route_len)) continue;
        s_begin(w);
        nr_st_str(c, "EXPIRE");
        s_key(c, w->P, ":out:", nr_broker_job_slot_name(job, i), ":", job->id, NULL);
        s_int(c, w->ttl);
        s_end(w);
    }
}

/* One event in P:events. */
static void s_write_event(s_write_t *w) {
    nr_broker_job_t *job = w->job;
    nr_st_cmd_t *c = w->c;
    s_begin(w);
    nr_st_str(c, "XADD");
    s_key(c, w->P, ":events", NULL);
    nr_st_str(c, "MAXLEN"), nr_st_str(c, "~"), s_int(c, w->self->params.events_max);
    nr_st_str(c, "*");
    nr_st_str(c, "id"), nr_st_str(c, job->id);
    nr_st_str(c, "state"), nr_st_str(c, nr_job_state_name(job->state));
    nr_st_str(c, "stage"), nr_st_str(c, w->stage_name);
    nr_st_str(c, "attempts"), s_int(c, job->attempts);
    nr_st_str(c, "error"), nr_st_str(c, job->error ? nr_errname(job->error) : "");
    s_end(w);
}

/* The job keeps a new output (data, of route index out_index) until a save
 * carries it; a stale kept copy is replaced. Returns data, or NULL when
 * out_index is out of range (then data is freed). */
static uint8_t *s_keep_output(nr_broker_job_t *job, int out_index, uint8_t *data, size_t size) {
    if (!data) return NULL;
    if (out_index < 0 || out_index >= NR_PROTO_ROUTE_MAX) {
        free(data);
        return NULL;
    }
    free(job->unsaved[out_index]);
    job->unsaved[out_index] = data;
    job->unsaved_size[out_index] = size;
    return data;
}

/* A kept state whose write may have landed (its reply was lost) and did:
 * queues a save that writes nothing and settles as saved at commit,
 * dropping what the job kept. 0, or NR_EREDIS. */
static int s_save_landed(nr_store_t *self, nr_broker_job_t *job) {
    struct nr_st_save *s = s_save_new(self, job);
    if (!s) return NR_EREDIS;
    s_take_kept(s, job);
    job->stored.record_saved = 0; /* what landed is not known field by field */
    for (int i = 0; i < NR_BROKER_BLOB_SLOTS; i++) free(s->outs[i]), s->outs[i] = NULL;
    memset(s->counts, 0, sizeof s->counts);
    s->input = s->reset = 0;
    return 0;
}

int nr_store_save(nr_store_t *self, nr_broker_job_t *job, int out_index, uint8_t **out,
                  size_t out_size, nr_store_counter_t counter) {
    uint8_t *data = s_keep_output(job, out_index, out ? *out : NULL, out_size);
    if (out) *out = NULL;
    int owed = counter >= 0 && counter < NR_STORE_COUNTERS ? (int)counter : -1;
    if (!self->ctx || (!self->cmd && !(self->cmd = malloc(sizeof(nr_st_cmd_t))))) goto err;
    /* Only a flush (no new output, no counter) can find its state landed;
     * it then settles as saved at commit, dropping what the job kept. */
    if (job->dirty && job->stored.maybe_landed && !job->reset && !data && owed < 0 &&
        s_already_saved(self, job))
        return s_save_landed(self, job) ? s_fail_err(job, owed) : 0;
    if (!self->ctx) goto err;
    if (job->guard == NR_STORE_GUARD) return s_check(self, job, owed);
    /* Only what changed since the last landed save, when that one holds
     * the whole record and nothing failed or is in flight since. */
    const int delta = job->stored.record_saved && !job->dirty && !job->saving && !job->reset;
    struct nr_st_save *s = s_save_new(self, job);
    if (!s) goto err;
    s_take_kept(s, job);
    s->fields_upto = job->fields_len;
    s->fields_edits = job->stored.fields_edits;
    s->stage_index = job->stage_index;
    s->error = job->error;
    if (owed >= 0) s->counts[owed]++;

    s_write_t w = {.self = self, .job = job, .s = s, .c = self->cmd, .P = self->params.prefix,
                   .stage_name = nr_broker_job_stage(job), .delta = delta,
                   .stage_moved = !delta || job->stage_index != job->stored.saved_stage_index,
                   .final = nr_job_is_final(job), .ttl = self->params.retention_s};
    snprintf(w.key, sizeof w.key, "%s:job:%s", w.P, job->id);
    s_write_record(&w);
    s_write_blobs(&w);
    s_write_pending(&w);
    s_write_event(&w);
    if (!w.queued) { /* out of memory: not written, as if Redis were down */
        s_save_drop_last(self);
        job->saving--;
        nr_st_give_back(s, job);
        return NR_EREDIS;
    }
    /* Counted once per transaction, in the same MULTI/EXEC. */
    for (size_t k = 0; k < S_N_COUNTERS; k++) self->tx_counts[k] += s->counts[k];
    s->replies = w.queued;
    return 0;
err:
    return s_fail_err(job, owed);
}
