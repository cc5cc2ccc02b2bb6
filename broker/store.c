/* All of the broker's Redis I/O (hiredis, synchronous, pipelined). */
#include "broker/store.h"
#include "common/backoff.h"
#include "common/error.h"
#include "common/log.h"

#include <hiredis/hiredis.h>

#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_BACKOFF_MIN_MS 1000
#define S_BACKOFF_MAX_MS 32000

struct nr_store {
    nr_store_params_t params;
    redisContext *ctx;
    int checked;         /* config warnings done */
    int64_t retry_ms;    /* next reconnect attempt */
    nr_backoff_t backoff;
    int64_t ping_ms;     /* next liveness check while idle */
    char err[512];
    uint64_t errors;     /* failed operations, for metrics */
    /* Stage names SADDed to P:stages on this connection (not sent again
     * until the connection is lost or a save fails). */
    char stages_known[NR_PROTO_ROUTE_MAX][NR_PROTO_NAME_MAX + 1];
    int n_stages_known;
    void *cmd;           /* s_cmd_t reused by nr_store_save */
    char *resp;          /* one command in RESP, reused by s_append */
    size_t resp_cap;
    /* Saves not settled yet, in order: the first n_sent were sent by
     * nr_store_send; replies are read for the first n_read of them. */
    struct s_save *saves;
    size_t n_saves, cap_saves, n_sent, n_read;
    /* The saves since the last send share one transaction, MULTI ... EXEC,
     * opened by their first command and closed (with their counters, one
     * HINCRBY each) by the send or by a read that must come after them. */
    struct s_tx {
        size_t saves, cmds; /* saves in it; commands between MULTI and EXEC */
        int multi;          /* MULTI/EXEC sent (0: its saves wrote nothing) */
    } tx, *sent_txs;        /* tx: the open one; sent_txs: closed, oldest first */
    size_t n_sent_txs, cap_sent_txs;
    uint32_t tx_counts[8];  /* P:stats increments of the open transaction */
    size_t rd_n;            /* replies read of the oldest closed one (MULTI, QUEUED..., EXEC) */
};

/* One queued save: its job, how many replies it waits for, and what it
 * carries that the job must keep again if it fails. */
struct s_save {
    nr_broker_job_t *job;
    int replies;         /* its commands in the transaction (0: none sent) */
    int applied;         /* its transaction ran (its counters were written) */
    int check;           /* is a new job's id free? (HGET of its state; see nr_store_save) */
    int check_result;    /* NR_STORE_NEW, NR_STORE_REPLACED or NR_STORE_EXISTS */
    int rc;              /* 0 or NR_EREDIS once read */
    int unsure;          /* failed on a lost connection: may have been applied */
    uint32_t counts[8]; /* by s_counters index */
    uint8_t *outs[NR_PROTO_ROUTE_MAX];
    size_t out_sizes[NR_PROTO_ROUTE_MAX];
    int input, reset;
    /* What the record holds once this save lands (job.h record_saved),
     * when it writes the record: it sent commands and is no id check. */
    uint32_t fields_upto, fields_edits, stage_index;
    int error;
};


/* A growing argv for one command. */
typedef struct {
    const char *argv[160];
    size_t len[160];
    char bufs[160][192]; /* formatted numbers and keys (the longest key, prefix + ":out:" +
                          * stage + ":" + id, is 165 bytes) */
    int argc;
} s_cmd_t;

static void s_arg(s_cmd_t *c, const void *data, size_t len) {
    if (c->argc >= 160) return;
    c->argv[c->argc] = data;
    c->len[c->argc] = len;
    c->argc++;
}

static void s_str(s_cmd_t *c, const char *s) { s_arg(c, s, strlen(s)); }

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
static void s_int(s_cmd_t *c, int64_t v) {
    if (c->argc >= 160) return;
    char *end = s_put_int(c->bufs[c->argc], v);
    s_arg(c, c->bufs[c->argc], (size_t)(end - c->bufs[c->argc]));
}

/* A key made of the NULL-ended parts, e.g. s_key(c, P, ":job:", id, NULL). */
static void s_key(s_cmd_t *c, ...) __attribute__((sentinel));
static void s_key(s_cmd_t *c, ...) {
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

static void s_fmt(s_cmd_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_fmt(s_cmd_t *c, const char *fmt, ...) {
    if (c->argc >= 160) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->bufs[c->argc], sizeof c->bufs[0], fmt, ap);
    va_end(ap);
    s_str(c, c->bufs[c->argc]);
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
    for (size_t i = 0; i < (*p)->n_saves; i++)
        for (int k = 0; k < NR_PROTO_ROUTE_MAX; k++) free((*p)->saves[i].outs[k]);
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
static int s_down(nr_store_t *self, const char *what) {
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

static int s_drain(nr_store_t *self);

/* Runs one command and returns its reply (caller frees), or NULL. */
static redisReply *s_run(nr_store_t *self, s_cmd_t *c) {
    if (s_drain(self) || !self->ctx) return NULL; /* queued saves first */
    redisReply *r = redisCommandArgv(self->ctx, c->argc, c->argv, c->len);
    if (!r) s_down(self, c->argv[0]);
    return r;
}

static void s_check_config(nr_store_t *self) {
    static const char *names[] = {"maxmemory-policy", "appendonly"};
    static const char *want[] = {"noeviction", "yes"};
    for (int i = 0; i < 2; i++) {
        s_cmd_t c = {.argc = 0};
        s_str(&c, "CONFIG");
        s_str(&c, "GET");
        s_str(&c, names[i]);
        redisReply *r = s_run(self, &c);
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
    s_cmd_t c = {.argc = 0};
    if (self->params.password[0]) {
        s_str(&c, "AUTH");
        s_str(&c, self->params.password);
    } else {
        s_str(&c, "PING");
    }
    redisReply *r = s_run(self, &c);
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
        s_cmd_t c = {.argc = 0};
        s_str(&c, "PING");
        redisReply *r = s_run(self, &c);
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

/* P:stats counters that a job can owe (job->unsaved_counts index). */
static const char *const s_counters[] = {"submitted", "done", "failed", "cancelled", "retried"};
#define S_N_COUNTERS (sizeof s_counters / sizeof s_counters[0])
#define S_SUBMITTED 0

static int s_counter_index(const char *name) {
    for (size_t i = 0; name && i < S_N_COUNTERS; i++)
        if (!strcmp(s_counters[i], name)) return (int)i;
    return -1;
}

/* A save that failed on a lost connection may still have been applied by
 * Redis (EXEC ran, the reply was lost). Before writing a kept state again,
 * look: when the stored record already has this job's state, attempts and
 * updated_ms, that write landed, and writing it again would add a second
 * event and count the transition twice. Returns 1 when it landed. */
static int s_already_saved(nr_store_t *self, const nr_broker_job_t *job) {
    if (s_drain(self) || !self->ctx) return 0;
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
    else s_down(self, "HMGET");
    return landed;
}

static void s_append_raw(nr_store_t *self, s_cmd_t *c, int *queued);

/* Appends a save's command to the open transaction and counts it. */
static void s_append(nr_store_t *self, s_cmd_t *c, int *queued) {
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
static void s_append_raw(nr_store_t *self, s_cmd_t *c, int *queued) {
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
static struct s_save *s_save_new(nr_store_t *self, nr_broker_job_t *job) {
    if (self->n_saves == self->cap_saves) {
        size_t cap = self->cap_saves ? self->cap_saves * 2 : 64;
        struct s_save *v = realloc(self->saves, cap * sizeof *v);
        if (!v) return NULL;
        self->saves = v;
        self->cap_saves = cap;
    }
    struct s_save *s = &self->saves[self->n_saves++];
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
static int s_close_tx(nr_store_t *self) {
    /* A MULTI whose only save was taken back is closed too, or the next
     * transaction's MULTI would nest in it. */
    if (!self->tx.saves && !self->tx.multi) return 0;
    if (self->n_sent_txs == self->cap_sent_txs) {
        size_t cap = self->cap_sent_txs ? 2 * self->cap_sent_txs : 16;
        struct s_tx *v = realloc(self->sent_txs, cap * sizeof *v);
        if (!v) return s_down(self, "out of memory");
        self->sent_txs = v, self->cap_sent_txs = cap;
    }
    if (self->tx.multi) {
        s_cmd_t *c = self->cmd;
        for (size_t k = 0; k < S_N_COUNTERS; k++) {
            if (!self->tx_counts[k]) continue;
            int n = 0;
            c->argc = 0;
            s_str(c, "HINCRBY");
            s_key(c, self->params.prefix, ":stats", NULL);
            s_str(c, s_counters[k]);
            s_int(c, self->tx_counts[k]);
            s_append_raw(self, c, &n);
            if (!n) return s_down(self, "out of memory");
            self->tx.cmds++;
        }
        static const char exec[] = "*1\r\n$4\r\nEXEC\r\n";
        if (redisAppendFormattedCommand(self->ctx, exec, sizeof exec - 1) != REDIS_OK)
            return s_down(self, "out of memory");
    }
    self->sent_txs[self->n_sent_txs++] = self->tx;
    memset(&self->tx, 0, sizeof self->tx);
    memset(self->tx_counts, 0, sizeof self->tx_counts);
    return 0;
}

/* Moves what the job kept from failed writes into save s: from here on it
 * travels with s, and comes back to the job only if s fails. */
static void s_take_kept(struct s_save *s, nr_broker_job_t *job) {
    for (size_t k = 0; k < S_N_COUNTERS; k++) s->counts[k] += job->unsaved_counts[k];
    memset(job->unsaved_counts, 0, sizeof job->unsaved_counts);
    for (int i = 0; i < NR_PROTO_ROUTE_MAX; i++) {
        s->outs[i] = job->unsaved[i], s->out_sizes[i] = job->unsaved_size[i];
        job->unsaved[i] = NULL, job->unsaved_size[i] = 0;
    }
    s->input = job->input_unsaved;
    s->reset = job->reset;
    job->input_unsaved = job->reset = 0;
    job->dirty = job->maybe_landed = 0;
    job->saving++;
}

/* Gives the job back what failed save s carried. An output the job kept
 * meanwhile (a later save that failed at once) is newer and stays. */
static void s_give_back(struct s_save *s, nr_broker_job_t *job) {
    for (size_t k = 0; k < S_N_COUNTERS; k++) job->unsaved_counts[k] += s->counts[k];
    for (int i = 0; i < NR_PROTO_ROUTE_MAX; i++) {
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
    job->maybe_landed = s->unsure && (!job->dirty || job->maybe_landed);
    job->dirty = 1;
}

/* The first step of a new job's first save: one HGET of the state of the
 * record that has its id. Nothing is written: the broker then writes (or
 * answers with the job that has the id) when it reads job->guard. The
 * counter is owed to that write. */
static int s_check(nr_store_t *self, nr_broker_job_t *job, int owed) {
    struct s_save *s = s_save_new(self, job);
    if (!s) return NR_EREDIS;
    s->check = 1;
    s_cmd_t *c = self->cmd;
    c->argc = 0;
    s_str(c, "HGET");
    s_key(c, self->params.prefix, ":job:", job->id, NULL);
    s_str(c, "state");
    int queued = 0;
    s_append(self, c, &queued);
    if (!queued) {
        s_save_drop_last(self);
        return NR_EREDIS;
    }
    s->replies = queued;
    if (owed >= 0) job->unsaved_counts[owed]++;
    job->saving++;
    return 0;
}

int nr_store_save(nr_store_t *self, nr_broker_job_t *job, int out_index, uint8_t **out,
                  size_t out_size, const char *counter) {
    uint8_t *data = out ? *out : NULL;
    if (out) *out = NULL;
    if (data) {
        if (out_index >= 0 && out_index < NR_PROTO_ROUTE_MAX) {
            /* Written below with what the job kept; a stale kept copy is replaced. */
            free(job->unsaved[out_index]);
            job->unsaved[out_index] = data;
            job->unsaved_size[out_index] = out_size;
        } else {
            free(data);
            data = NULL;
        }
    }
    int owed = s_counter_index(counter);
    if (!self->ctx || (!self->cmd && !(self->cmd = malloc(sizeof(s_cmd_t))))) goto err;
    /* Only a flush (no new output, no counter) can find its state landed;
     * it then settles as saved at commit, dropping what the job kept. */
    if (job->dirty && job->maybe_landed && !job->reset && !data && !counter &&
        s_already_saved(self, job)) {
        struct s_save *s = s_save_new(self, job);
        if (!s) goto err;
        s_take_kept(s, job);
        job->record_saved = 0; /* what landed is not known field by field */
        for (int i = 0; i < NR_PROTO_ROUTE_MAX; i++) free(s->outs[i]), s->outs[i] = NULL;
        memset(s->counts, 0, sizeof s->counts);
        s->input = s->reset = 0;
        return 0;
    }
    if (!self->ctx) goto err;
    if (job->guard == NR_STORE_GUARD) return s_check(self, job, owed);
    /* Only what changed since the last landed save, when that one holds
     * the whole record and nothing failed or is in flight since. */
    const int delta = job->record_saved && !job->dirty && !job->saving && !job->reset;
    struct s_save *s = s_save_new(self, job);
    if (!s) goto err;
    s_take_kept(s, job);
    s->fields_upto = job->fields_len;
    s->fields_edits = job->fields_edits;
    s->stage_index = job->stage_index;
    s->error = job->error;
    const int stage_moved = !delta || job->stage_index != job->saved_stage_index;
    if (owed >= 0) s->counts[owed]++;

    const char *P = self->params.prefix;
    const int final = nr_job_is_final(job);
    const long ttl = self->params.retention_s;
    int queued = 0;
    s_cmd_t *c = self->cmd;
    const char *stage_name = nr_broker_job_stage(job);
    int stage_known = 0;
    for (int k = 0; k < self->n_stages_known && !stage_known; k++)
        stage_known = !strcmp(self->stages_known[k], stage_name);
    unsigned wrote_out = 0; /* outputs SET (with their TTL when final) below */
    char key[256], route[512];

#define S_BEGIN() (c->argc = 0)
    snprintf(key, sizeof key, "%s:job:%s", P, job->id);
    if (s->reset) {
        S_BEGIN();
        s_str(c, "DEL");
        s_str(c, key);
        s_append(self, c, &queued);
    }
    S_BEGIN();
    s_str(c, "HSET");
    s_str(c, key);
    s_str(c, "state"), s_str(c, nr_job_state_name(job->state));
    s_str(c, "attempts"), s_int(c, job->attempts);
    s_str(c, "updated_ms"), s_int(c, job->updated_ms);
    if (stage_moved) {
        s_str(c, "stage"), s_str(c, stage_name);
        s_str(c, "stage_index"), s_int(c, job->stage_index);
    }
    if (!delta || job->error || job->saved_error || job->error_message[0]) {
        s_str(c, "error"), s_str(c, job->error ? nr_errname(job->error) : "");
        s_str(c, "error_message"), s_str(c, job->error_message);
    }
    if (!delta) {
        s_str(c, "id"), s_str(c, job->id);
        nr_broker_job_route_string(job, route, sizeof route);
        s_str(c, "route"), s_str(c, route);
        s_str(c, "created_ms"), s_int(c, job->created_ms);
    }
    /* The job's own fields go into the same HSET while they fit, so any
     * number fits the argv but a usual job is one command. */
    for (uint32_t i = delta ? job->fields_saved : 0; i < job->fields_len; i++) {
        if (c->argc >= 150) {
            s_append(self, c, &queued);
            S_BEGIN();
            s_str(c, "HSET");
            s_str(c, key);
        }
        s_str(c, job->fields[i].key);
        s_str(c, job->fields[i].value);
    }
    s_append(self, c, &queued);
    if (s->input && job->input) {
        S_BEGIN();
        s_str(c, "SET");
        s_key(c, P, ":input:", job->id, NULL);
        s_arg(c, job->input, job->input_size);
        if (final) s_str(c, "EX"), s_int(c, ttl);
        s_append(self, c, &queued);
    }
    for (uint32_t i = 0; i < job->route_len; i++) {
        if (!s->outs[i]) continue;
        S_BEGIN();
        s_str(c, "SET");
        s_key(c, P, ":out:", job->route[i], ":", job->id, NULL);
        s_arg(c, s->outs[i], s->out_sizes[i]);
        if (final) s_str(c, "EX"), s_int(c, ttl);
        s_append(self, c, &queued);
        wrote_out |= 1u << i;
    }
    for (uint32_t i = 0; i < job->route_len && (stage_moved || final); i++) {
        S_BEGIN();
        if (!final && i == job->stage_index) {
            s_str(c, "ZADD");
            s_key(c, P, ":pending:", job->route[i], NULL);
            s_str(c, "NX");
            s_int(c, job->updated_ms);
        } else {
            s_str(c, "ZREM");
            s_key(c, P, ":pending:", job->route[i], NULL);
        }
        s_str(c, job->id);
        s_append(self, c, &queued);
    }
    if (!final) {
        if (!stage_known) {
            S_BEGIN();
            s_str(c, "SADD");
            s_key(c, P, ":stages", NULL);
            s_str(c, stage_name);
            s_append(self, c, &queued);
            /* Known from now on; any failed save forgets every stage. */
            if (self->n_stages_known < NR_PROTO_ROUTE_MAX) {
                snprintf(self->stages_known[self->n_stages_known], sizeof self->stages_known[0],
                         "%s", stage_name);
                self->n_stages_known++;
            }
        }
    } else {
        if (!(s->input && job->input)) {
            S_BEGIN();
            s_str(c, "EXPIRE");
            s_key(c, P, ":input:", job->id, NULL);
            s_int(c, ttl);
            s_append(self, c, &queued);
        }
        for (uint32_t i = 0; i < job->route_len; i++) {
            if (wrote_out & (1u << i)) continue;
            S_BEGIN();
            s_str(c, "EXPIRE");
            s_key(c, P, ":out:", job->route[i], ":", job->id, NULL);
            s_int(c, ttl);
            s_append(self, c, &queued);
        }
    }
    S_BEGIN();
    s_str(c, "XADD");
    s_key(c, P, ":events", NULL);
    s_str(c, "MAXLEN"), s_str(c, "~"), s_int(c, self->params.events_max);
    s_str(c, "*");
    s_str(c, "id"), s_str(c, job->id);
    s_str(c, "state"), s_str(c, nr_job_state_name(job->state));
    s_str(c, "stage"), s_str(c, stage_name);
    s_str(c, "attempts"), s_int(c, job->attempts);
    s_str(c, "error"), s_str(c, job->error ? nr_errname(job->error) : "");
    s_append(self, c, &queued);
#undef S_BEGIN
    if (!queued) { /* out of memory: not written, as if Redis were down */
        s_save_drop_last(self);
        job->saving--;
        s_give_back(s, job);
        return NR_EREDIS;
    }
    /* Counted once per transaction, in the same MULTI/EXEC. */
    for (size_t k = 0; k < S_N_COUNTERS; k++) self->tx_counts[k] += s->counts[k];
    s->replies = queued;
    return 0;
err:
    /* Not written: the job keeps the state, its output and the count
     * (SUBMIT is refused when its save fails, so it never owes one). */
    if (owed >= 0 && owed != S_SUBMITTED) job->unsaved_counts[owed]++;
    job->dirty = 1;
    job->maybe_landed = 0;
    return NR_EREDIS;
}

/* Marks save s failed with `bad`. */
static void s_fail_save(nr_store_t *self, struct s_save *s, const char *bad) {
    if (s->rc) return;
    s->rc = NR_EREDIS;
    snprintf(self->err, sizeof self->err, "saving job %s: %s", s->job->id, bad);
    self->errors++;
    nr_log(NR_LOG_ERROR, "redis: %s", self->err);
}

/* One result of save s's commands, from its transaction's EXEC reply. */
static void s_take_result(nr_store_t *self, struct s_save *s, const redisReply *r) {
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
    const struct s_tx *t = &self->sent_txs[0];
    const char *bad = r->type == REDIS_REPLY_ERROR ? r->str
                      : r->type != REDIS_REPLY_ARRAY || r->elements != t->cmds
                          ? "transaction aborted" : NULL;
    size_t e = 0;
    for (size_t i = 0; i < t->saves; i++) {
        struct s_save *s = &self->saves[self->n_read + i];
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
    struct s_tx *t = &self->sent_txs[0];
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
            return s_down(self, "MULTI/EXEC"); /* fails every save still unread */
        s_consume(self, r);
    }
}

/* Closes the open transaction and reads the replies of every queued save
 * (a read must come after them). */
static int s_drain(nr_store_t *self) {
    if (s_close_tx(self)) return NR_EREDIS;
    return s_read_upto(self, self->n_saves);
}

size_t nr_store_send(nr_store_t *self) {
    const size_t n = self->n_saves - self->n_sent;
    self->n_sent = self->n_saves;
    if (s_close_tx(self)) return n;
    int done = 0;
    while (self->ctx && !done)
        if (redisBufferWrite(self->ctx, &done) != REDIS_OK) s_down(self, "MULTI/EXEC");
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
            s_down(self, "MULTI/EXEC");
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
            s_down(self, "MULTI/EXEC");
            return 1;
        }
    }
}

/* After save s settled: what the record now holds, for the next save. */
static void s_note_record(const struct s_save *s, nr_broker_job_t *job) {
    if (s->rc || !s->replies || s->check) {
        job->record_saved = 0;
        return;
    }
    job->record_saved = 1;
    job->saved_stage_index = s->stage_index;
    job->saved_error = s->error;
    /* A field replaced or dropped after this save was queued is not in it. */
    job->fields_saved = job->fields_edits == s->fields_edits ? s->fields_upto : 0;
}

void nr_store_settle(nr_store_t *self, size_t n, void (*fn)(nr_broker_job_t *job, int rc, void *arg),
                     void *arg) {
    if (n > self->n_sent) n = self->n_sent;
    s_read_upto(self, n);
    for (size_t i = 0; i < n; i++) {
        struct s_save *s = &self->saves[i];
        nr_broker_job_t *job = s->job;
        if (s->rc) {
            self->n_stages_known = 0; /* a SADD may not have happened */
            /* Its transaction ran (one of its commands failed): its counts
             * were written with the transaction's, so they are not owed. */
            if (s->applied) memset(s->counts, 0, sizeof s->counts);
            s_give_back(s, job);
        } else if (s->check) {
            job->guard = s->check_result;
        }
        s_note_record(s, job);
        for (int k = 0; k < NR_PROTO_ROUTE_MAX; k++) free(s->outs[k]);
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
    s_drain(self);
    for (size_t i = 0; i < self->n_saves; i++)
        for (int k = 0; k < NR_PROTO_ROUTE_MAX; k++) free(self->saves[i].outs[k]);
    self->n_saves = self->n_read = self->n_sent = 0;
}

static int s_parse_u32(const char *s, uint32_t *out) {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || *end || v > UINT32_MAX) return NR_EINVAL;
    *out = (uint32_t)v;
    return 0;
}

int nr_store_load(nr_store_t *self, const char *id, nr_broker_job_t **out) {
    *out = NULL;
    s_cmd_t c = {.argc = 0};
    s_str(&c, "HGETALL");
    s_fmt(&c, "%s:job:%s", self->params.prefix, id);
    redisReply *r = s_run(self, &c);
    if (!r) return NR_EREDIS;
    int rc = 0;
    nr_broker_job_t *job = NULL;
    if (r->type != REDIS_REPLY_ARRAY) {
        rc = NR_EREDIS;
        goto done;
    }
    if (r->elements == 0) {
        rc = NR_ENOTFOUND;
        goto done;
    }
    job = nr_broker_job_new(id);
    if (!job) {
        rc = NR_ENOMEM;
        goto done;
    }
    int have_route = 0, have_state = 0;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const char *k = r->element[i]->str, *v = r->element[i + 1]->str;
        if (!k || !v) continue;
        if (!strcmp(k, "id") || !strcmp(k, "stage")) continue;
        if (!strcmp(k, "state")) {
            int s = nr_job_state_parse(v);
            if (s >= 0) job->state = (nr_job_state_t)s, have_state = 1;
        } else if (!strcmp(k, "route")) {
            have_route = nr_broker_job_parse_route(job, v) == 0;
        } else if (!strcmp(k, "stage_index")) {
            s_parse_u32(v, &job->stage_index);
        } else if (!strcmp(k, "attempts")) {
            s_parse_u32(v, &job->attempts);
        } else if (!strcmp(k, "error")) {
            job->error = *v ? nr_errcode(v) : 0;
        } else if (!strcmp(k, "error_message")) {
            snprintf(job->error_message, sizeof job->error_message, "%s", v);
        } else if (!strcmp(k, "created_ms")) {
            job->created_ms = strtoll(v, NULL, 10);
        } else if (!strcmp(k, "updated_ms")) {
            job->updated_ms = strtoll(v, NULL, 10);
        } else if (nr_broker_job_set(job, k, v)) {
            rc = NR_ENOMEM;
            goto done;
        }
    }
    if (!have_route || !have_state || job->stage_index >= job->route_len) {
        snprintf(self->err, sizeof self->err, "job %s: record in redis is incomplete", id);
        nr_log(NR_LOG_WARN, "redis: %s", self->err);
        if (!have_route) {
            rc = NR_ENOTFOUND;
            goto done;
        }
        if (job->stage_index >= job->route_len) job->stage_index = job->route_len - 1;
    }
done:
    freeReplyObject(r);
    if (rc) nr_broker_job_destroy(&job);
    *out = job;
    return rc;
}

int nr_store_get_blob(nr_store_t *self, const char *id, const char *stage, uint8_t **data,
                      size_t *size) {
    *data = NULL;
    *size = 0;
    s_cmd_t c = {.argc = 0};
    s_str(&c, "GET");
    if (stage) s_fmt(&c, "%s:out:%s:%s", self->params.prefix, stage, id);
    else s_fmt(&c, "%s:input:%s", self->params.prefix, id);
    redisReply *r = s_run(self, &c);
    if (!r) return NR_EREDIS;
    int rc = 0;
    if (r->type == REDIS_REPLY_NIL) {
        rc = NR_ENOTFOUND;
    } else if (r->type != REDIS_REPLY_STRING) {
        rc = NR_EREDIS;
    } else {
        *data = malloc(r->len ? r->len : 1);
        if (!*data) rc = NR_ENOMEM;
        else memcpy(*data, r->str, r->len), *size = r->len;
    }
    freeReplyObject(r);
    return rc;
}

typedef struct {
    char id[NR_PROTO_ID_MAX + 1];
    double score;
} s_pending_t;

static int s_by_score(const void *a, const void *b) {
    const s_pending_t *x = a, *y = b;
    return x->score < y->score ? -1 : x->score > y->score ? 1 : strcmp(x->id, y->id);
}

int nr_store_pending(nr_store_t *self, void (*fn)(const char *id, void *arg), void *arg) {
    s_cmd_t c = {.argc = 0};
    s_str(&c, "SMEMBERS");
    s_fmt(&c, "%s:stages", self->params.prefix);
    redisReply *stages = s_run(self, &c);
    if (!stages) return NR_EREDIS;
    int rc = 0;
    s_pending_t *list = NULL;
    size_t n = 0, cap = 0;
    if (stages->type != REDIS_REPLY_ARRAY) rc = NR_EREDIS;
    for (size_t s = 0; !rc && s < stages->elements; s++) {
        if (stages->element[s]->type != REDIS_REPLY_STRING) continue;
        c.argc = 0;
        s_str(&c, "ZRANGE");
        s_fmt(&c, "%s:pending:%s", self->params.prefix, stages->element[s]->str);
        s_str(&c, "0"), s_str(&c, "-1"), s_str(&c, "WITHSCORES");
        redisReply *r = s_run(self, &c);
        if (!r) {
            rc = NR_EREDIS;
            break;
        }
        for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
            if (!r->element[i]->str || r->element[i]->len > NR_PROTO_ID_MAX) continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 256;
                s_pending_t *l = realloc(list, cap * sizeof *l);
                if (!l) {
                    rc = NR_ENOMEM;
                    break;
                }
                list = l;
            }
            snprintf(list[n].id, sizeof list[n].id, "%s", r->element[i]->str);
            list[n].score = r->element[i + 1]->str ? strtod(r->element[i + 1]->str, NULL) : 0;
            n++;
        }
        freeReplyObject(r);
    }
    freeReplyObject(stages);
    if (!rc) {
        if (n) qsort(list, n, sizeof *list, s_by_score);
        for (size_t i = 0; i < n; i++) fn(list[i].id, arg);
    }
    free(list);
    return rc;
}

int nr_store_stats(nr_store_t *self, nr_msg_t *msg) {
    s_cmd_t c = {.argc = 0};
    s_str(&c, "HGETALL");
    s_fmt(&c, "%s:stats", self->params.prefix);
    redisReply *r = s_run(self, &c);
    if (!r) return NR_EREDIS;
    char key[128];
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        if (!r->element[i]->str || !r->element[i + 1]->str) continue;
        const char *name = r->element[i]->str;
        int per_state = !strcmp(name, "done") || !strcmp(name, "failed") ||
                        !strcmp(name, "cancelled");
        snprintf(key, sizeof key, "%s.%s", per_state ? "jobs" : "total", name);
        nr_proto_kv_add(msg, key, r->element[i + 1]->str);
    }
    freeReplyObject(r);
    return 0;
}

uint64_t nr_store_errors(const nr_store_t *self) { return self ? self->errors : 0; }
