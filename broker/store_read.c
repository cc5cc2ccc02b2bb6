/* What the broker reads back from Redis: a job's record, its input and
 * outputs, the pending sets (at recovery) and the P:stats counters. */
#include "broker/store_internal.h"
#include "common/error.h"
#include "common/log.h"

#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int s_parse_u32(const char *s, uint32_t *out) {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || *end || v > UINT32_MAX) return NR_EINVAL;
    *out = (uint32_t)v;
    return 0;
}

int nr_store_load(nr_store_t *self, const char *id, nr_broker_job_t **out) {
    *out = NULL;
    nr_st_cmd_t c = {.argc = 0};
    nr_st_str(&c, "HGETALL");
    nr_st_fmt(&c, "%s:job:%s", self->params.prefix, id);
    redisReply *r = nr_st_run(self, &c);
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
    nr_st_cmd_t c = {.argc = 0};
    nr_st_str(&c, "GET");
    if (stage) nr_st_fmt(&c, "%s:out:%s:%s", self->params.prefix, stage, id);
    else nr_st_fmt(&c, "%s:input:%s", self->params.prefix, id);
    redisReply *r = nr_st_run(self, &c);
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
    nr_st_cmd_t c = {.argc = 0};
    nr_st_str(&c, "SMEMBERS");
    nr_st_fmt(&c, "%s:stages", self->params.prefix);
    redisReply *stages = nr_st_run(self, &c);
    if (!stages) return NR_EREDIS;
    int rc = 0;
    s_pending_t *list = NULL;
    size_t n = 0, cap = 0;
    if (stages->type != REDIS_REPLY_ARRAY) rc = NR_EREDIS;
    for (size_t s = 0; !rc && s < stages->elements; s++) {
        if (stages->element[s]->type != REDIS_REPLY_STRING) continue;
        c.argc = 0;
        nr_st_str(&c, "ZRANGE");
        nr_st_fmt(&c, "%s:pending:%s", self->params.prefix, stages->element[s]->str);
        nr_st_str(&c, "0"), nr_st_str(&c, "-1"), nr_st_str(&c, "WITHSCORES");
        redisReply *r = nr_st_run(self, &c);
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
    nr_st_cmd_t c = {.argc = 0};
    nr_st_str(&c, "HGETALL");
    nr_st_fmt(&c, "%s:stats", self->params.prefix);
    redisReply *r = nr_st_run(self, &c);
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

int nr_store_run_add(nr_store_t *self, const char *run, const char *id, int64_t score) {
    nr_st_cmd_t c = {.argc = 0};
    nr_st_str(&c, "ZADD");
    nr_st_fmt(&c, "%s:run:%s", self->params.prefix, run);
    nr_st_str(&c, "NX");
    nr_st_fmt(&c, "%lld", (long long)score);
    nr_st_str(&c, id);
    redisReply *r = nr_st_run(self, &c);
    if (!r) return NR_EREDIS;
    int rc = r->type == REDIS_REPLY_INTEGER ? 0 : NR_EREDIS;
    freeReplyObject(r);
    return rc;
}

int nr_store_set_fields(nr_store_t *self, const char *id, const nr_kv_t *fields, size_t n) {
    nr_st_cmd_t c = {.argc = 0};
    nr_st_str(&c, "HSET");
    nr_st_fmt(&c, "%s:job:%s", self->params.prefix, id);
    for (size_t i = 0; i < n && c.argc + 2 <= 150; i++) {
        nr_st_str(&c, fields[i].key);
        nr_st_str(&c, fields[i].value);
    }
    redisReply *r = nr_st_run(self, &c);
    if (!r) return NR_EREDIS;
    int rc = r->type == REDIS_REPLY_INTEGER ? 0 : NR_EREDIS;
    freeReplyObject(r);
    return rc;
}

int nr_store_run_page(nr_store_t *self, const char *run, uint32_t offset, size_t max,
                      nr_store_run_entry_t *out, size_t *n, uint64_t *total) {
    *n = 0;
    *total = 0;
    nr_st_cmd_t c = {.argc = 0};
    nr_st_str(&c, "ZCARD");
    nr_st_fmt(&c, "%s:run:%s", self->params.prefix, run);
    redisReply *r = nr_st_run(self, &c);
    if (!r) return NR_EREDIS;
    if (r->type != REDIS_REPLY_INTEGER || r->integer < 0) {
        freeReplyObject(r);
        return NR_EREDIS;
    }
    *total = (uint64_t)r->integer;
    freeReplyObject(r);
    if (max == 0 || offset >= *total) return 0;
    /* A sorted set sorted BY nosort keeps its own order, so LIMIT pages it
     * and GET reads each job's state in the same round trip. */
    c.argc = 0;
    nr_st_str(&c, "SORT");
    nr_st_fmt(&c, "%s:run:%s", self->params.prefix, run);
    nr_st_str(&c, "BY"), nr_st_str(&c, "nosort");
    nr_st_str(&c, "LIMIT"), nr_st_fmt(&c, "%" PRIu32, offset), nr_st_fmt(&c, "%zu", max);
    nr_st_str(&c, "GET"), nr_st_str(&c, "#");
    nr_st_str(&c, "GET"), nr_st_fmt(&c, "%s:job:*->state", self->params.prefix);
    r = nr_st_run(self, &c);
    if (!r) return NR_EREDIS;
    int rc = r->type == REDIS_REPLY_ARRAY ? 0 : NR_EREDIS;
    for (size_t i = 0; !rc && i + 1 < r->elements && *n < max; i += 2) {
        const redisReply *id = r->element[i], *state = r->element[i + 1];
        if (id->type != REDIS_REPLY_STRING || id->len == 0 || id->len > NR_PROTO_ID_MAX) continue;
        nr_store_run_entry_t *e = &out[(*n)++];
        snprintf(e->id, sizeof e->id, "%s", id->str);
        snprintf(e->state, sizeof e->state, "%s",
                 state->type == REDIS_REPLY_STRING && state->len < sizeof e->state ? state->str : "");
    }
    freeReplyObject(r);
    return rc;
}

uint64_t nr_store_errors(const nr_store_t *self) { return self ? self->errors : 0; }

/* ---- blob reads in the background --------------------------------------- */

/* Drops the read connection: every read in flight is answered NR_EREDIS. */
static void s_read_down(nr_store_t *self, const char *what) {
    self->errors++;
    if (self->rctx) {
        nr_log(NR_LOG_ERROR, "redis: reading blobs: %s: %s", what,
               self->rctx->errstr[0] ? self->rctx->errstr : "connection lost");
        redisFree(self->rctx);
        self->rctx = NULL;
    }
}

/* Opens the read connection (and authenticates). 0 or NR_EREDIS. */
static int s_read_connect(nr_store_t *self) {
    if (self->rctx) return 0;
    struct timeval tv = {self->params.timeout_ms / 1000, (self->params.timeout_ms % 1000) * 1000};
    redisContext *ctx = redisConnectWithTimeout(self->params.host, (int)self->params.port, tv);
    if (!ctx || ctx->err) {
        snprintf(self->err, sizeof self->err, "connect %s:%ld for reads: %s", self->params.host,
                 self->params.port, ctx ? ctx->errstr : "out of memory");
        if (ctx) redisFree(ctx);
        self->errors++;
        return NR_EREDIS;
    }
    redisSetTimeout(ctx, tv);
    if (self->params.password[0]) {
        redisReply *r = redisCommand(ctx, "AUTH %s", self->params.password);
        int ok = r && r->type != REDIS_REPLY_ERROR;
        if (r) freeReplyObject(r);
        if (!ok) {
            snprintf(self->err, sizeof self->err, "AUTH for reads refused");
            redisFree(ctx);
            self->errors++;
            return NR_EREDIS;
        }
    }
    self->rctx = ctx;
    return 0;
}

int nr_store_read_blob(nr_store_t *self, const char *id, const char *stage, uint64_t tag) {
    if (self->n_reads == NR_STORE_READS_MAX) return NR_EBUSY;
    if (s_read_connect(self)) return NR_EREDIS;
    nr_st_cmd_t c = {.argc = 0};
    nr_st_str(&c, "GET");
    if (stage) nr_st_fmt(&c, "%s:out:%s:%s", self->params.prefix, stage, id);
    else nr_st_fmt(&c, "%s:input:%s", self->params.prefix, id);
    if (redisAppendCommandArgv(self->rctx, c.argc, c.argv, c.len) != REDIS_OK) {
        s_read_down(self, "GET");
        return self->n_reads ? NR_EBUSY : NR_EREDIS; /* those in flight are answered first */
    }
    int done = 0;
    while (!done)
        if (redisBufferWrite(self->rctx, &done) != REDIS_OK) {
            s_read_down(self, "GET");
            return NR_EREDIS;
        }
    self->read_tags[(self->read_first + self->n_reads++) % NR_STORE_READS_MAX] = tag;
    return 0;
}

int nr_store_read_fd(const nr_store_t *self) {
    return self && self->rctx && self->n_reads ? self->rctx->fd : -1;
}

/* Hands out the oldest read with its result. */
static int s_read_pop(nr_store_t *self, redisReply *r, uint64_t *tag, int *rc, uint8_t **data,
                      size_t *size) {
    *tag = self->read_tags[self->read_first];
    self->read_first = (self->read_first + 1) % NR_STORE_READS_MAX;
    self->n_reads--;
    *data = NULL;
    *size = 0;
    if (!r) *rc = NR_EREDIS;
    else if (r->type == REDIS_REPLY_NIL) *rc = NR_ENOTFOUND;
    else if (r->type != REDIS_REPLY_STRING) *rc = NR_EREDIS;
    else if (!(*data = malloc(r->len ? r->len : 1))) *rc = NR_ENOMEM;
    else memcpy(*data, r->str, r->len), *size = r->len, *rc = 0;
    if (r) freeReplyObject(r);
    return 1;
}

int nr_store_read_next(nr_store_t *self, size_t max_bytes, int wait, uint64_t *tag, int *rc,
                       uint8_t **data, size_t *size) {
    size_t reads = max_bytes / 16384 + 1; /* hiredis reads 16 KiB a call */
    for (;;) {
        if (!self->n_reads) return 0;
        if (!self->rctx) return s_read_pop(self, NULL, tag, rc, data, size);
        redisReply *r = NULL;
        if (redisGetReplyFromReader(self->rctx, (void **)&r) != REDIS_OK) {
            s_read_down(self, "GET");
            continue;
        }
        if (r) return s_read_pop(self, r, tag, rc, data, size);
        if (!wait && !reads--) return 0; /* the rest on a later turn */
        struct pollfd p = {self->rctx->fd, POLLIN, 0};
        int n = poll(&p, 1, wait ? (int)self->params.timeout_ms : 0);
        if (n != 1) {
            if (!wait) return 0;
            s_read_down(self, "GET timed out");
            continue;
        }
        if (redisBufferRead(self->rctx) != REDIS_OK) s_read_down(self, "GET");
    }
}
