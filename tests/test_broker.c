/* Tests of the broker logic (nr_broker_core): dispatch by credit, leases,
 * attempts, retries, deadlines, cancel, bounds, resubmission, malformed
 * input; without sockets (messages are captured from the send callback and
 * time is passed in). The store tests run against a real redis-server. */
#include "broker/broker.h"
#include "broker/job.h"
#include "broker/queue.h"
#include "broker/store.h"
#include "broker/broker_metrics.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"
#include "proto/proto.h"
#include "tests/harness.h"

#include <criterion/criterion.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- capture of what the broker sends ---- */

#define S_CAP_MAX 512

typedef struct {
    nr_broker_side_t side;
    char peer[64];
    nr_msg_t msg;
} s_sent_t;

static s_sent_t s_sent[S_CAP_MAX];
static int s_nsent;
static const char *s_gone; /* sends to this peer fail with NR_ECONNECT */
static void (*s_on_send)(const nr_msg_t *msg); /* looks at each message as it leaves */

static void s_sent_clear(void) {
    for (int i = 0; i < s_nsent; i++) nr_proto_msg_clear(&s_sent[i].msg);
    s_nsent = 0;
}

static int s_capture(void *ctx, nr_broker_side_t side, const uint8_t *identity, size_t size,
                     const nr_msg_t *msg) {
    (void)ctx;
    cr_assert_lt(s_nsent, S_CAP_MAX);
    s_sent_t *o = &s_sent[s_nsent++];
    o->side = side;
    snprintf(o->peer, sizeof o->peer, "%.*s", (int)size, (const char *)identity);
    if (s_gone && !strcmp(o->peer, s_gone)) {
        s_nsent--;
        return NR_ECONNECT;
    }
    o->msg = *msg;
    o->msg.kv = NULL;
    o->msg.kv_len = 0;
    memset(o->msg.frames, 0, sizeof o->msg.frames);
    o->msg.frames_len = 0;
    for (uint32_t i = 0; i < msg->kv_len; i++) nr_proto_kv_add(&o->msg, msg->kv[i].key, msg->kv[i].value);
    for (uint32_t i = 0; i < msg->frames_len; i++)
        nr_proto_frame_add(&o->msg, msg->frames[i].data, msg->frames[i].size);
    if (s_on_send) s_on_send(msg);
    return 0;
}

/* The last message of cmd sent to peer (NULL: any peer), or NULL. */
static nr_msg_t *s_last(const char *peer, nr_cmd_t cmd) {
    for (int i = s_nsent - 1; i >= 0; i--)
        if (s_sent[i].msg.cmd == cmd && (!peer || !strcmp(s_sent[i].peer, peer)))
            return &s_sent[i].msg;
    return NULL;
}

static int s_count(const char *peer, nr_cmd_t cmd) {
    int n = 0;
    for (int i = 0; i < s_nsent; i++)
        if (s_sent[i].msg.cmd == cmd && (!peer || !strcmp(s_sent[i].peer, peer))) n++;
    return n;
}

static const char *s_kv(const nr_msg_t *m, const char *key) {
    const char *v = m ? nr_proto_kv_get(m, key) : NULL;
    return v ? v : "";
}

/* ---- driving the broker ---- */

static nr_broker_t *s_new(nr_store_t *store, void (*tweak)(nr_broker_params_t *)) {
    nr_broker_params_t p;
    nr_broker_default_params(&p);
    p.seed = 42;
    p.retry_backoff_ms = 100;
    p.retry_backoff_max_ms = 400;
    if (tweak) tweak(&p);
    char err[256];
    nr_broker_t *b = nr_broker_new(&p, store, s_capture, NULL, err, sizeof err);
    cr_assert_not_null(b, "%s", err);
    return b;
}

static void s_ready(nr_broker_t *b, const char *w, const char *stage, uint32_t cap, int64_t now) {
    nr_msg_t m;
    nr_proto_msg_init(&m);
    m.cmd = NR_CMD_READY;
    snprintf(m.stage, sizeof m.stage, "%s", stage);
    snprintf(m.name, sizeof m.name, "%s", w);
    m.capacity = cap;
    nr_broker_worker_message(b, (const uint8_t *)w, strlen(w), &m, now);
    nr_proto_msg_clear(&m);
}

static void s_worker_cmd(nr_broker_t *b, const char *w, nr_cmd_t cmd, int64_t now) {
    nr_msg_t m;
    nr_proto_msg_init(&m);
    m.cmd = cmd;
    nr_broker_worker_message(b, (const uint8_t *)w, strlen(w), &m, now);
    nr_proto_msg_clear(&m);
}

/* Submits and returns the REPLY (valid until the next s_sent_clear). */
static nr_msg_t *s_submit_opts(nr_broker_t *b, const char *id, const char *route,
                               const char *input, const char *opt_key, const char *opt_value,
                               int64_t now) {
    nr_msg_t m;
    nr_proto_msg_init(&m);
    m.cmd = NR_CMD_SUBMIT;
    m.seq = 7;
    snprintf(m.id, sizeof m.id, "%s", id);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", route);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
        snprintf(m.route[m.route_len++], sizeof m.route[0], "%s", t);
    if (opt_key) nr_proto_kv_add(&m, opt_key, opt_value);
    if (input) nr_proto_frame_add(&m, input, strlen(input));
    nr_broker_client_message(b, (const uint8_t *)"client", 6, &m, now);
    nr_proto_msg_clear(&m);
    nr_msg_t *rep = s_last("client", NR_CMD_REPLY);
    cr_assert_not_null(rep);
    cr_assert_eq(rep->seq, 7u);
    return rep;
}

static nr_msg_t *s_submit(nr_broker_t *b, const char *id, const char *route, const char *input,
                          int64_t now) {
    return s_submit_opts(b, id, route, input, NULL, NULL, now);
}

/* A SUBMIT of input to route speech from peer (NULL: none; nr_proto_recv
 * fills msg.peer from the link), whose REPLY may be held (in a batch). */
static void s_submit_peer(nr_broker_t *b, const char *peer, const char *id, const char *input,
                          uint64_t seq, int64_t now) {
    nr_msg_t m;
    nr_proto_msg_init(&m);
    m.cmd = NR_CMD_SUBMIT;
    m.seq = seq;
    snprintf(m.id, sizeof m.id, "%s", id);
    snprintf(m.route[m.route_len++], sizeof m.route[0], "speech");
    if (peer) snprintf(m.peer, sizeof m.peer, "%s", peer);
    nr_proto_frame_add(&m, input, strlen(input));
    nr_broker_client_message(b, (const uint8_t *)"client", 6, &m, now);
    nr_proto_msg_clear(&m);
}

static void s_submit_held(nr_broker_t *b, const char *id, const char *input, uint64_t seq,
                          int64_t now) {
    s_submit_peer(b, NULL, id, input, seq, now);
}

static nr_msg_t *s_client(nr_broker_t *b, nr_cmd_t cmd, const char *id, const char *stage,
                          int64_t now) {
    nr_msg_t m;
    nr_proto_msg_init(&m);
    m.cmd = cmd;
    m.seq = 9;
    if (id) snprintf(m.id, sizeof m.id, "%s", id);
    if (stage) snprintf(m.stage, sizeof m.stage, "%s", stage);
    nr_broker_client_message(b, (const uint8_t *)"client", 6, &m, now);
    nr_proto_msg_clear(&m);
    nr_msg_t *rep = s_last("client", NR_CMD_REPLY);
    cr_assert_not_null(rep);
    cr_assert_eq(rep->seq, 9u);
    return rep;
}

static void s_result(nr_broker_t *b, const char *w, const char *id, const char *stage,
                     uint32_t attempt, const char *output, const char *key, const char *value,
                     int64_t now) {
    nr_msg_t m;
    nr_proto_msg_init(&m);
    m.cmd = NR_CMD_RESULT;
    snprintf(m.id, sizeof m.id, "%s", id);
    snprintf(m.stage, sizeof m.stage, "%s", stage);
    m.attempt = attempt;
    if (key) nr_proto_kv_add(&m, key, value);
    nr_proto_frame_add(&m, output, strlen(output));
    nr_broker_worker_message(b, (const uint8_t *)w, strlen(w), &m, now);
    nr_proto_msg_clear(&m);
}

static void s_fail(nr_broker_t *b, const char *w, const char *id, const char *stage,
                   uint32_t attempt, int code, int retry, const char *message, int64_t now) {
    nr_msg_t m;
    nr_proto_msg_init(&m);
    m.cmd = NR_CMD_FAIL;
    snprintf(m.id, sizeof m.id, "%s", id);
    snprintf(m.stage, sizeof m.stage, "%s", stage);
    m.attempt = attempt;
    m.code = code;
    m.retry = retry;
    snprintf(m.message, sizeof m.message, "%s", message);
    nr_broker_worker_message(b, (const uint8_t *)w, strlen(w), &m, now);
    nr_proto_msg_clear(&m);
}

static long s_credit(nr_broker_t *b, const char *w) {
    return nr_broker_worker_credit_of(b, (const uint8_t *)w, strlen(w));
}

static void s_setup(void) { nr_log_set_level("error"); }
static void s_teardown(void) {
    s_sent_clear();
    s_gone = NULL;
}

TestSuite(broker, .init = s_setup, .fini = s_teardown);

/* ---- logic without a store ---- */

Test(broker, route_parse_and_record) {
    nr_broker_job_t *j = nr_broker_job_new("j1");
    cr_assert_eq(nr_broker_job_parse_route(j, "vision,text,speech"), 0);
    cr_assert_eq(j->route_len, 3u);
    cr_assert_str_eq(nr_broker_job_stage(j), "vision");
    cr_assert_eq(nr_broker_job_parse_route(j, ""), NR_EINVAL);
    cr_assert_eq(nr_broker_job_parse_route(j, "Vision"), NR_EINVAL);
    cr_assert_eq(nr_broker_job_parse_route(j, "a,,b"), NR_EINVAL);
    cr_assert_eq(nr_broker_job_parse_route(j, "a,b,c,d,e,f,g,h,i"), NR_EINVAL);
    cr_assert_eq(nr_broker_job_set(j, "opt.voice", "kal"), 0);
    cr_assert_eq(nr_broker_job_set(j, "opt.voice", "awb"), 0);
    cr_assert_str_eq(nr_broker_job_get(j, "opt.voice"), "awb");
    nr_msg_t m;
    nr_proto_msg_init(&m);
    nr_broker_job_record(j, &m, 2);
    cr_assert_str_eq(s_kv(&m, "state"), "queued");
    cr_assert_str_eq(s_kv(&m, "stage_workers"), "2");
    cr_assert_str_eq(s_kv(&m, "opt.voice"), "awb");
    nr_proto_msg_clear(&m);
    nr_broker_job_destroy(&j);
    nr_broker_job_destroy(&j);
}

Test(broker, job_table_grows_and_removes) {
    nr_broker_jobs_t *t = nr_broker_jobs_new();
    char id[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof id, "job-%d", i);
        cr_assert_eq(nr_broker_jobs_add(t, nr_broker_job_new(id)), 0);
    }
    cr_assert_eq(nr_broker_jobs_count(t), 1000u);
    nr_broker_job_t *dup = nr_broker_job_new("job-5");
    cr_assert_eq(nr_broker_jobs_add(t, dup), NR_EINVAL);
    nr_broker_job_destroy(&dup);
    nr_broker_job_t *j = nr_broker_jobs_find(t, "job-500");
    cr_assert_not_null(j);
    nr_broker_jobs_remove(t, j);
    nr_broker_job_destroy(&j);
    cr_assert_null(nr_broker_jobs_find(t, "job-500"));
    cr_assert_not_null(nr_broker_jobs_find(t, "job-999"));
    cr_assert_eq(nr_broker_jobs_count(t), 999u);
    nr_broker_jobs_destroy(&t);
    nr_broker_jobs_destroy(&t);
}

Test(broker, worker_credit_and_leases) {
    nr_broker_worker_t *w = nr_broker_worker_new((const uint8_t *)"w", 1, "w", 2);
    nr_broker_job_t *a = nr_broker_job_new("a"), *b = nr_broker_job_new("b");
    cr_assert_eq(nr_broker_worker_credit(w), 2u);
    cr_assert_eq(nr_broker_worker_add_lease(w, a, 1, 100), 0);
    cr_assert_eq(nr_broker_worker_add_lease(w, b, 1, 100), 0);
    cr_assert_eq(nr_broker_worker_credit(w), 0u);
    cr_assert_eq(nr_broker_worker_add_lease(w, a, 2, 100), NR_EBUSY);
    cr_assert_null(nr_broker_worker_find_lease(w, "a", 2));
    nr_broker_worker_revoke(w, a);
    nr_broker_lease_t *l = nr_broker_worker_find_lease(w, "a", 1);
    cr_assert_not_null(l);
    cr_assert_null(l->job, "revoked lease keeps its slot without the job");
    cr_assert_eq(nr_broker_worker_credit(w), 0u);
    nr_broker_worker_drop_lease(w, l);
    cr_assert_eq(nr_broker_worker_credit(w), 1u);
    cr_assert_eq(nr_broker_worker_find_lease(w, "b", 1)->job, b);
    cr_assert_null(nr_broker_worker_new((const uint8_t *)"w", 1, "w", 0));
    nr_broker_worker_destroy(&w);
    nr_broker_worker_destroy(&w);
    nr_broker_job_destroy(&a);
    nr_broker_job_destroy(&b);
}

Test(broker, dispatch_by_credit_and_route_moves_output_to_next_stage) {
    nr_broker_t *b = s_new(NULL, NULL);
    s_ready(b, "v1", "vision", 2, 0);
    s_ready(b, "t1", "text", 1, 0);
    for (int i = 0; i < 3; i++) {
        char id[16], in[16];
        snprintf(id, sizeof id, "j%d", i);
        snprintf(in, sizeof in, "image-%d", i);
        nr_msg_t *rep = s_submit_opts(b, id, "vision,text", in, "num_beams", "4", 1);
        cr_assert_eq(rep->code, 0, "%s", rep->message);
        cr_assert_str_eq(s_kv(rep, "state"), "queued");
        cr_assert_str_eq(s_kv(rep, "opt.num_beams"), "4");
    }
    /* Capacity 2: two jobs out, one waits. */
    cr_assert_eq(s_count("v1", NR_CMD_JOB), 2);
    cr_assert_eq(s_credit(b, "v1"), 0);
    cr_assert_eq(nr_broker_queued(b, "vision"), 1u);
    nr_msg_t *job = s_last("v1", NR_CMD_JOB);
    cr_assert_str_eq(job->stage, "vision");
    cr_assert_eq(job->attempt, 1u);
    cr_assert_eq(job->deadline_ms, 60000u);
    cr_assert_str_eq(s_kv(job, "num_beams"), "4", "options travel without the opt. prefix");
    cr_assert_eq(job->frames_len, 1u);
    char first[NR_PROTO_ID_MAX + 1];
    snprintf(first, sizeof first, "%s", s_sent[1].msg.id);
    cr_assert_eq(s_sent[1].msg.cmd, NR_CMD_JOB);

    /* The result frees credit (third job goes out) and moves to text. */
    s_result(b, "v1", first, "vision", 1, "STATES", "model", "vit", 5);
    cr_assert_eq(s_count("v1", NR_CMD_JOB), 3);
    nr_msg_t *tj = s_last("t1", NR_CMD_JOB);
    cr_assert_not_null(tj);
    cr_assert_str_eq(tj->id, first);
    cr_assert_str_eq(tj->stage, "text");
    cr_assert_eq(tj->attempt, 1u);
    cr_assert_eq(tj->frames[0].size, 6u);
    cr_assert_eq(memcmp(tj->frames[0].data, "STATES", 6), 0);
    s_result(b, "t1", first, "text", 1, "a cat", "caption", "a cat", 6);

    nr_msg_t *st = s_client(b, NR_CMD_STATUS, first, NULL, 7);
    cr_assert_eq(st->code, 0);
    cr_assert_str_eq(s_kv(st, "state"), "done");
    cr_assert_str_eq(s_kv(st, "stage"), "text");
    cr_assert_str_eq(s_kv(st, "text.caption"), "a cat");
    cr_assert_str_eq(s_kv(st, "vision.model"), "vit");
    cr_assert_str_eq(s_kv(st, "vision.attempts"), "1");
    cr_assert_str_eq(s_kv(st, "route"), "vision,text");
    nr_msg_t *f = s_client(b, NR_CMD_FETCH, first, "vision", 8);
    cr_assert_eq(f->code, 0, "%s", f->message);
    cr_assert_eq(f->frames_len, 1u);
    cr_assert_eq(memcmp(f->frames[0].data, "STATES", 6), 0);
    f = s_client(b, NR_CMD_FETCH, first, "text", 8);
    cr_assert_eq(memcmp(f->frames[0].data, "a cat", 5), 0);
    f = s_client(b, NR_CMD_FETCH, first, "speech", 8);
    cr_assert_eq(f->code, NR_ENOTFOUND);

    nr_msg_t *stats = s_client(b, NR_CMD_STATS, NULL, NULL, 9);
    cr_assert_str_eq(s_kv(stats, "queue.vision"), "0");
    cr_assert_str_eq(s_kv(stats, "running.vision"), "2");
    cr_assert_str_eq(s_kv(stats, "workers.vision"), "1");
    cr_assert_str_eq(s_kv(stats, "workers.text"), "1");
    cr_assert_str_eq(s_kv(stats, "jobs.done"), "1");
    cr_assert_str_eq(s_kv(stats, "jobs.running"), "2");
    nr_broker_destroy(&b);
    nr_broker_destroy(&b);
}

Test(broker, status_reports_stage_workers_zero_when_nobody_serves) {
    nr_broker_t *b = s_new(NULL, NULL);
    s_submit(b, "x", "vision", "img", 0);
    nr_msg_t *st = s_client(b, NR_CMD_STATUS, "x", NULL, 1);
    cr_assert_str_eq(s_kv(st, "stage_workers"), "0");
    nr_msg_t *stats = s_client(b, NR_CMD_STATS, NULL, NULL, 1);
    cr_assert_str_eq(s_kv(stats, "queue.vision"), "1");
    cr_assert_str_eq(s_kv(stats, "workers.vision"), "0");
    cr_assert_str_eq(s_kv(stats, "jobs.done"), "0");
    cr_assert_str_eq(s_kv(st, "state"), "queued");
    st = s_client(b, NR_CMD_STATUS, "nope", NULL, 1);
    cr_assert_eq(st->code, NR_ENOTFOUND);
    /* A worker arriving later gets the queued job. */
    s_ready(b, "v", "vision", 1, 2);
    cr_assert_eq(s_count("v", NR_CMD_JOB), 1);
    nr_broker_destroy(&b);
}

Test(broker, stale_and_unknown_answers_are_dropped) {
    nr_broker_t *b = s_new(NULL, NULL);
    s_ready(b, "w", "speech", 1, 0);
    s_submit(b, "s1", "speech", "hello", 0);
    cr_assert_eq(s_count("w", NR_CMD_JOB), 1);
    /* Wrong attempt: dropped, job still running. */
    s_result(b, "w", "s1", "speech", 7, "WAV", NULL, NULL, 1);
    cr_assert_eq(nr_broker_find_job(b, "s1")->state, NR_JOB_RUNNING);
    cr_assert_eq(s_credit(b, "w"), 0);
    /* Unknown id and wrong stage: dropped. */
    s_result(b, "w", "zz", "speech", 1, "WAV", NULL, NULL, 1);
    s_result(b, "w", "s1", "text", 1, "WAV", NULL, NULL, 1);
    cr_assert_eq(nr_broker_find_job(b, "s1")->state, NR_JOB_RUNNING);
    /* From a worker that never said READY: told to DISCONNECT, no effect. */
    s_result(b, "ghost", "s1", "speech", 1, "WAV", NULL, NULL, 1);
    cr_assert_eq(s_count("ghost", NR_CMD_DISCONNECT), 1);
    cr_assert_eq(nr_broker_find_job(b, "s1")->state, NR_JOB_RUNNING);
    s_result(b, "w", "s1", "speech", 1, "WAV", NULL, NULL, 2);
    cr_assert_eq(nr_broker_find_job(b, "s1")->state, NR_JOB_DONE);
    /* A duplicate of the accepted result changes nothing. */
    s_result(b, "w", "s1", "speech", 1, "OTHER", NULL, NULL, 3);
    nr_msg_t *f = s_client(b, NR_CMD_FETCH, "s1", "speech", 4);
    cr_assert_eq(memcmp(f->frames[0].data, "WAV", 3), 0);
    nr_broker_destroy(&b);
}

Test(broker, missed_heartbeats_requeue_then_attempts_exhausted) {
    nr_broker_t *b = s_new(NULL, NULL); /* heartbeat 1000 ms x 3, max 3 attempts */
    s_submit(b, "h", "vision", "img", 0);
    int64_t now = 0;
    for (int attempt = 1; attempt <= 3; attempt++) {
        char w[16];
        snprintf(w, sizeof w, "w%d", attempt);
        now += 1000; /* past any backoff */
        s_ready(b, w, "vision", 1, now);
        nr_broker_tick(b, now);
        nr_msg_t *job = s_last(w, NR_CMD_JOB);
        cr_assert_not_null(job, "attempt %d dispatched", attempt);
        cr_assert_eq(job->attempt, (uint32_t)attempt);
        /* The broker heartbeats the worker while it is silent. */
        nr_broker_tick(b, now + 1000);
        cr_assert_geq(s_count(w, NR_CMD_HEARTBEAT), 1);
        /* 3 heartbeats missed, the broker ticking as its loop does (a
         * broker that was not ticked for that long blames itself). */
        for (int64_t end = now + 3500; now < end;) {
            now = now + 250 < end ? now + 250 : end;
            nr_broker_tick(b, now);
        }
        cr_assert_eq(nr_broker_workers(b, "vision"), 0u, "worker %s buried", w);
    }
    nr_msg_t *st = s_client(b, NR_CMD_STATUS, "h", NULL, now);
    cr_assert_str_eq(s_kv(st, "state"), "failed");
    cr_assert_str_eq(s_kv(st, "error"), "attempts_exhausted");
    cr_assert(strstr(s_kv(st, "error_message"), "unreachable"), "last error kept: %s",
              s_kv(st, "error_message"));
    cr_assert_str_eq(s_kv(st, "attempts"), "3");
    nr_broker_destroy(&b);
}

/* A broker that was itself late (its loop held by other work for longer
 * than the worker's liveness) does not bury a worker whose heartbeats wait
 * unread: before, the first tick after a 5 s stall declared it lost and
 * requeued its job. A worker silent after that is still buried. */
Test(broker, a_stalled_broker_does_not_blame_its_workers) {
    nr_broker_t *b = s_new(NULL, NULL); /* heartbeat 1000 ms x 3 */
    s_ready(b, "w", "text", 1, 0);
    s_submit(b, "t", "text", "states", 0);
    int64_t now = 0;
    for (; now <= 2000; now += 250) {
        if (now % 1000 == 0) s_worker_cmd(b, "w", NR_CMD_HEARTBEAT, now);
        nr_broker_tick(b, now);
    }
    now += 5000; /* the stall: no tick, no message read */
    nr_broker_tick(b, now);
    s_worker_cmd(b, "w", NR_CMD_HEARTBEAT, now); /* read after the tick, as the loop does */
    cr_assert_eq(nr_broker_workers(b, "text"), 1u, "worker buried for the broker's own stall");
    cr_assert_eq(nr_broker_find_job(b, "t")->state, NR_JOB_RUNNING);
    cr_assert_eq(nr_broker_find_job(b, "t")->attempts, 1u);
    for (int64_t end = now + 3500; now < end;) {
        now += 250;
        nr_broker_tick(b, now);
    }
    cr_assert_eq(nr_broker_workers(b, "text"), 0u, "a silent worker is still buried");
    nr_broker_destroy(&b);
}

Test(broker, heartbeats_keep_a_busy_worker_alive) {
    nr_broker_t *b = s_new(NULL, NULL);
    s_ready(b, "w", "text", 1, 0);
    s_submit(b, "t", "text", "states", 0);
    for (int64_t now = 500; now < 10000; now += 500) {
        s_worker_cmd(b, "w", NR_CMD_HEARTBEAT, now);
        nr_broker_tick(b, now);
    }
    cr_assert_eq(nr_broker_workers(b, "text"), 1u);
    cr_assert_eq(nr_broker_find_job(b, "t")->state, NR_JOB_RUNNING);
    nr_broker_destroy(&b);
}

Test(broker, worker_heartbeats_are_answered_unless_something_else_went_out) {
    nr_broker_t *b = s_new(NULL, NULL);
    s_ready(b, "w", "speech", 1, 0);
    s_worker_cmd(b, "w", NR_CMD_HEARTBEAT, 200);
    cr_assert_eq(s_count("w", NR_CMD_HEARTBEAT), 1);
    s_worker_cmd(b, "w", NR_CMD_HEARTBEAT, 400);
    cr_assert_eq(s_count("w", NR_CMD_HEARTBEAT), 2);
    s_submit(b, "j", "speech", "x", 500); /* a JOB goes out */
    s_worker_cmd(b, "w", NR_CMD_HEARTBEAT, 600);
    cr_assert_eq(s_count("w", NR_CMD_HEARTBEAT), 2, "the JOB was proof of life enough");
    nr_broker_destroy(&b);
}

Test(broker, unroutable_worker_is_removed_and_its_job_requeued) {
    nr_broker_t *b = s_new(NULL, NULL);
    s_ready(b, "ok", "speech", 1, 0);
    s_ready(b, "gone", "speech", 1, 0);
    s_gone = "gone";
    s_submit(b, "u", "speech", "x", 1); /* to "gone" (least recently used): fails */
    s_submit(b, "v", "speech", "y", 1);
    cr_assert_eq(nr_broker_workers(b, "speech"), 1u);
    nr_broker_tick(b, 1000);
    cr_assert_eq(s_count("ok", NR_CMD_JOB), 1);
    nr_broker_job_t *j = nr_broker_find_job(b, "u");
    cr_assert_eq(j->error, NR_ECONNECT);
    cr_assert_eq(j->attempts, 1u);
    nr_broker_destroy(&b);
}

Test(broker, disconnect_requeues_to_another_worker_with_backoff) {
    nr_broker_t *b = s_new(NULL, NULL);
    s_ready(b, "a", "speech", 1, 0);
    s_submit(b, "d", "speech", "hi", 0);
    cr_assert_eq(s_count("a", NR_CMD_JOB), 1);
    s_ready(b, "b", "speech", 1, 10);
    s_worker_cmd(b, "a", NR_CMD_DISCONNECT, 20);
    /* Backoff (50..100 ms at attempt 1): not yet. */
    nr_broker_tick(b, 21);
    cr_assert_eq(s_count("b", NR_CMD_JOB), 0);
    nr_broker_job_t *j = nr_broker_find_job(b, "d");
    cr_assert_eq(j->state, NR_JOB_QUEUED);
    cr_assert_eq(j->error, NR_ECONNECT);
    cr_assert_geq(j->ready_ms, 20 + 50);
    cr_assert_leq(j->ready_ms, 20 + 100);
    nr_broker_tick(b, 200);
    nr_msg_t *job = s_last("b", NR_CMD_JOB);
    cr_assert_not_null(job);
    cr_assert_eq(job->attempt, 2u);
    nr_broker_destroy(&b);
}

Test(broker, deadline_requeues_and_late_result_is_dropped) {
    nr_broker_t *b = s_new(NULL, NULL);
    s_ready(b, "slow", "vision", 1, 0);
    s_submit(b, "dl", "vision", "img", 0);
    s_ready(b, "fast", "vision", 1, 0);
    /* Keep both alive past the 60 s deadline. */
    int64_t now = 0;
    for (; now <= 61500; now += 500) {
        s_worker_cmd(b, "slow", NR_CMD_HEARTBEAT, now);
        s_worker_cmd(b, "fast", NR_CMD_HEARTBEAT, now);
        nr_broker_tick(b, now);
    }
    nr_broker_job_t *j = nr_broker_find_job(b, "dl");
    nr_msg_t *job = s_last("fast", NR_CMD_JOB);
    cr_assert_not_null(job, "requeued after the deadline and sent to the free worker");
    cr_assert_eq(job->attempt, 2u);
    cr_assert_str_eq(nr_errname(j->error), "deadline_exceeded");
    /* The slow worker's slot stays taken until it answers. */
    cr_assert_eq(s_credit(b, "slow"), 0);
    s_result(b, "slow", "dl", "vision", 1, "LATE", NULL, NULL, now);
    cr_assert_eq(j->state, NR_JOB_RUNNING, "late result of attempt 1 dropped");
    cr_assert_eq(s_credit(b, "slow"), 1);
    s_result(b, "fast", "dl", "vision", 2, "GOOD", NULL, NULL, now + 1);
    cr_assert_eq(j->state, NR_JOB_DONE);
    nr_msg_t *f = s_client(b, NR_CMD_FETCH, "dl", "vision", now + 2);
    cr_assert_eq(memcmp(f->frames[0].data, "GOOD", 4), 0);
    nr_broker_destroy(&b);
}

Test(broker, fail_without_retry_fails_at_once_with_its_code) {
    nr_broker_t *b = s_new(NULL, NULL);
    s_ready(b, "v", "vision", 1, 0);
    s_submit(b, "bad", "vision,text,speech", "not an image", 0);
    s_fail(b, "v", "bad", "vision", 1, NR_ENOTIMAGE, 0, "no JPEG/PNG/WebP signature", 1);
    nr_msg_t *st = s_client(b, NR_CMD_STATUS, "bad", NULL, 2);
    cr_assert_str_eq(s_kv(st, "state"), "failed");
    cr_assert_str_eq(s_kv(st, "error"), "not_an_image");
    cr_assert_str_eq(s_kv(st, "error_message"), "no JPEG/PNG/WebP signature");
    cr_assert_str_eq(s_kv(st, "attempts"), "1");
    cr_assert_eq(s_credit(b, "v"), 1);
    nr_broker_destroy(&b);
}

Test(broker, retryable_fail_retries_then_exhausts) {
    nr_broker_t *b = s_new(NULL, NULL);
    s_ready(b, "v", "vision", 1, 0);
    s_submit(b, "r", "vision", "img", 0);
    int64_t now = 0;
    for (uint32_t a = 1; a <= 3; a++) {
        nr_msg_t *job = s_last("v", NR_CMD_JOB);
        cr_assert_eq(job->attempt, a);
        s_fail(b, "v", "r", "vision", a, NR_EDEVICE, 1, "cuda out of memory", now);
        now += 1000;
        s_worker_cmd(b, "v", NR_CMD_HEARTBEAT, now);
        nr_broker_tick(b, now);
    }
    nr_msg_t *st = s_client(b, NR_CMD_STATUS, "r", NULL, now);
    cr_assert_str_eq(s_kv(st, "state"), "failed");
    cr_assert_str_eq(s_kv(st, "error"), "attempts_exhausted");
    cr_assert(strstr(s_kv(st, "error_message"), "device_error: cuda out of memory"), "%s",
              s_kv(st, "error_message"));
    nr_broker_destroy(&b);
}

/* A RESULT with more fields than the record keeps for a stage would push
 * the job's options and other results out of it: the attempt is retried,
 * the fields are not stored, and a RESULT of the most it keeps is. */
Test(broker, result_with_more_fields_than_the_record_keeps_is_retried) {
    nr_broker_t *b = s_new(NULL, NULL);
    s_ready(b, "v", "vision", 1, 0);
    s_submit(b, "wide", "vision", "img", 0);
    for (int pass = 0; pass < 2; pass++) {
        nr_msg_t *job = s_last("v", NR_CMD_JOB);
        cr_assert_not_null(job);
        nr_msg_t m;
        nr_proto_msg_init(&m);
        m.cmd = NR_CMD_RESULT;
        snprintf(m.id, sizeof m.id, "wide");
        snprintf(m.stage, sizeof m.stage, "vision");
        m.attempt = job->attempt;
        for (int i = 0; i < NR_BROKER_RESULT_KV_MAX + !pass; i++) {
            char k[16];
            snprintf(k, sizeof k, "f%d", i);
            cr_assert_eq(nr_proto_kv_add(&m, k, "x"), 0);
        }
        nr_proto_frame_add(&m, "out", 3);
        nr_broker_worker_message(b, (const uint8_t *)"v", 1, &m, 1 + pass * 100000);
        nr_proto_msg_clear(&m);
        nr_msg_t *st = s_client(b, NR_CMD_STATUS, "wide", NULL, 2 + pass * 100000);
        if (!pass) {
            cr_assert_str_eq(s_kv(st, "state"), "queued");
            cr_assert_str_eq(s_kv(st, "error"), "malformed_message");
            cr_assert(strstr(s_kv(st, "error_message"), "at most"), "%s", s_kv(st, "error_message"));
            cr_assert_str_eq(s_kv(st, "vision.f0"), "");
            s_worker_cmd(b, "v", NR_CMD_HEARTBEAT, 100000);
            nr_broker_tick(b, 100000); /* past the retry backoff: leased again */
        } else {
            cr_assert_str_eq(s_kv(st, "state"), "done");
            cr_assert_str_eq(s_kv(st, "vision.f7"), "x");
        }
    }
    nr_broker_destroy(&b);
}

Test(broker, cancel_queued_and_running_jobs) {
    nr_broker_t *b = s_new(NULL, NULL);
    s_ready(b, "w", "speech", 1, 0);
    s_submit(b, "run", "speech", "a", 0);
    s_submit(b, "wait", "speech", "b", 0);
    nr_msg_t *rep = s_client(b, NR_CMD_CANCEL, "wait", NULL, 1);
    cr_assert_eq(rep->code, 0);
    cr_assert_str_eq(s_kv(rep, "state"), "cancelled");
    cr_assert_eq(nr_broker_queued(b, "speech"), 0u);
    rep = s_client(b, NR_CMD_CANCEL, "run", NULL, 2);
    cr_assert_str_eq(s_kv(rep, "state"), "cancelled");
    cr_assert_str_eq(s_kv(rep, "error"), "cancelled");
    /* Late result dropped; the slot comes back then. */
    cr_assert_eq(s_credit(b, "w"), 0);
    s_result(b, "w", "run", "speech", 1, "WAV", NULL, NULL, 3);
    cr_assert_eq(nr_broker_find_job(b, "run")->state, NR_JOB_CANCELLED);
    cr_assert_eq(s_credit(b, "w"), 1);
    rep = s_client(b, NR_CMD_CANCEL, "run", NULL, 4);
    cr_assert_eq(rep->code, NR_ESTATE);
    rep = s_client(b, NR_CMD_CANCEL, "none", NULL, 4);
    cr_assert_eq(rep->code, NR_ENOTFOUND);
    nr_broker_destroy(&b);
}

static void s_bound2(nr_broker_params_t *p) { p->queue_bound = 2; }

Test(broker, queue_bound_refuses_submit_with_busy) {
    nr_broker_t *b = s_new(NULL, s_bound2);
    cr_assert_eq(s_submit(b, "q1", "vision", "a", 0)->code, 0);
    cr_assert_eq(s_submit(b, "q2", "vision", "b", 0)->code, 0);
    nr_msg_t *rep = s_submit(b, "q3", "vision", "c", 0);
    cr_assert_eq(rep->code, NR_EBUSY);
    cr_assert_null(nr_broker_find_job(b, "q3"));
    /* Another first stage has its own queue. */
    cr_assert_eq(s_submit(b, "q4", "speech", "d", 0)->code, 0);
    /* Once a worker takes one, there is room again. */
    s_ready(b, "w", "vision", 1, 1);
    cr_assert_eq(s_submit(b, "q3", "vision", "c", 2)->code, 0);
    nr_broker_destroy(&b);
}

static void s_rate1_burst2(nr_broker_params_t *p) {
    p->client_rate = 1;
    p->client_burst = 2;
}

/* SUBMIT from a named peer, answered at once. */
static nr_msg_t *s_submit_from(nr_broker_t *b, const char *peer, const char *id, int64_t now) {
    s_submit_peer(b, peer, id, "text", 7, now);
    nr_msg_t *rep = s_last("client", NR_CMD_REPLY);
    cr_assert_not_null(rep);
    return rep;
}

Test(broker, client_over_its_rate_gets_busy_and_others_are_served) {
    nr_broker_t *b = s_new(NULL, s_rate1_burst2);
    cr_assert_eq(s_submit_from(b, "alice", "a1", 1000)->code, 0);
    cr_assert_eq(s_submit_from(b, "alice", "a2", 1000)->code, 0);
    nr_msg_t *rep = s_submit_from(b, "alice", "a3", 1000);
    cr_assert_eq(rep->code, NR_EBUSY);
    cr_assert(strstr(rep->message, "alice") && strstr(rep->message, "client-rate"), "%s", rep->message);
    cr_assert_null(nr_broker_find_job(b, "a3"), "a refused SUBMIT leaves nothing behind");
    cr_assert_eq(s_submit_from(b, "bob", "b1", 1000)->code, 0, "another client has its own bucket");
    rep = s_submit_from(b, "alice", "a1", 1000);
    cr_assert_eq(rep->code, 0, "asking again for a job it has is not new work");
    cr_assert_str_eq(s_kv(rep, "existing"), "1");
    cr_assert_eq(s_submit_from(b, "alice", "a3", 2000)->code, 0, "a token is back after a second");
    nr_broker_destroy(&b);
}

Test(broker, resubmit_returns_existing_and_reruns_failed) {
    nr_broker_t *b = s_new(NULL, NULL);
    s_ready(b, "w", "speech", 1, 0);
    s_submit(b, "same", "speech", "hello", 0);
    nr_msg_t *rep = s_submit(b, "same", "speech", "hello", 1);
    cr_assert_eq(rep->code, 0);
    cr_assert_str_eq(s_kv(rep, "existing"), "1");
    cr_assert_str_eq(s_kv(rep, "state"), "running");
    cr_assert_eq(s_count("w", NR_CMD_JOB), 1);
    s_fail(b, "w", "same", "speech", 1, NR_ETEXT, 0, "bad text", 2);
    rep = s_submit(b, "same", "speech", "hello again", 3);
    cr_assert_eq(rep->code, 0);
    cr_assert_str_eq(s_kv(rep, "existing"), "");
    nr_msg_t *job = s_last("w", NR_CMD_JOB);
    cr_assert_eq(s_count("w", NR_CMD_JOB), 2);
    cr_assert_eq(job->attempt, 1u, "a rerun starts its attempts afresh");
    cr_assert_eq(memcmp(job->frames[0].data, "hello again", 11), 0);
    /* No id: the broker makes one. */
    rep = s_submit(b, "", "speech", "x", 4);
    cr_assert_eq(rep->code, 0);
    cr_assert_eq(strlen(rep->id), 32u);
    cr_assert_str_eq(s_kv(rep, "id"), rep->id);
    nr_broker_destroy(&b);
}

Test(broker, bad_client_requests_get_error_replies) {
    nr_broker_t *b = s_new(NULL, NULL);
    nr_broker_client_error(b, (const uint8_t *)"client", 6, NR_EPROTO, "garbage body");
    nr_msg_t *rep = s_last("client", NR_CMD_REPLY);
    cr_assert_eq(rep->code, NR_EPROTO);
    cr_assert_eq(rep->seq, 0u);
    cr_assert_str_eq(rep->message, "garbage body");
    cr_assert_eq(s_submit(b, "noinput", "vision", NULL, 0)->code, NR_EINVAL);
    cr_assert_eq(s_submit(b, "noroute", "", "x", 0)->code, NR_EINVAL);
    rep = s_client(b, NR_CMD_HEARTBEAT, NULL, NULL, 0);
    cr_assert_eq(rep->code, NR_EPROTO);
    /* A worker-side READY with a bad capacity is dropped. */
    s_ready(b, "w", "vision", 0, 0);
    cr_assert_eq(nr_broker_workers(b, "vision"), 0u);
    nr_broker_destroy(&b);
}

Test(broker, shutdown_disconnects_workers_and_requeues_running) {
    nr_broker_t *b = s_new(NULL, NULL);
    s_ready(b, "w", "speech", 2, 0);
    s_submit(b, "a", "speech", "a", 0);
    s_submit(b, "b", "speech", "b", 0);
    nr_broker_shutdown(b, 5);
    cr_assert_eq(s_count("w", NR_CMD_DISCONNECT), 1);
    cr_assert_eq(nr_broker_find_job(b, "a")->state, NR_JOB_QUEUED);
    cr_assert_eq(nr_broker_find_job(b, "a")->attempts, 1u, "attempt kept");
    cr_assert_eq(nr_broker_queued(b, "speech"), 2u);
    cr_assert_eq(s_submit(b, "c", "speech", "c", 6)->code, NR_EBUSY);
    nr_broker_destroy(&b);
}

Test(broker, stage_deadlines_override_the_default) {
    nr_broker_params_t p;
    nr_broker_default_params(&p);
    snprintf(p.stage_deadlines, sizeof p.stage_deadlines, "vision=5000,text=x");
    char err[256];
    cr_assert_null(nr_broker_new(&p, NULL, s_capture, NULL, err, sizeof err));
    snprintf(p.stage_deadlines, sizeof p.stage_deadlines, "vision=5000,text=7000");
    nr_broker_t *b = nr_broker_new(&p, NULL, s_capture, NULL, err, sizeof err);
    cr_assert_not_null(b, "%s", err);
    s_ready(b, "t", "text", 1, 0);
    s_ready(b, "s", "speech", 1, 0);
    s_submit(b, "x", "text", "a", 0);
    s_submit(b, "y", "speech", "a", 0);
    cr_assert_eq(s_last("t", NR_CMD_JOB)->deadline_ms, 7000u);
    cr_assert_eq(s_last("s", NR_CMD_JOB)->deadline_ms, 60000u);
    /* A job's own deadline_ms option wins over the stage's. */
    s_ready(b, "s2", "speech", 1, 0);
    s_submit_opts(b, "z", "speech", "a", "deadline_ms", "1500", 1);
    cr_assert_eq(s_last("s2", NR_CMD_JOB)->deadline_ms, 1500u);
    nr_broker_destroy(&b);
}

/* Group commit without a store: in one batch, a JOB whose lease is revoked
 * before the commit (a CANCEL) is never sent and the worker's slot comes
 * back; a second SUBMIT of an id first settles the first one, and is
 * answered existing=1. */
Test(broker, batch_drops_a_revoked_job_unsent_and_settles_a_duplicate_submit) {
    nr_broker_t *b = s_new(NULL, NULL);
    s_submit(b, "c1", "speech", "a", 0);
    nr_broker_begin(b, 1);
    s_ready(b, "w", "speech", 1, 1);            /* c1 goes to w: held */
    cr_assert_eq(s_count("w", NR_CMD_JOB), 0, "held until the commit");
    nr_msg_t m;
    nr_proto_msg_init(&m);
    m.cmd = NR_CMD_CANCEL;
    m.seq = 3;
    snprintf(m.id, sizeof m.id, "c1");
    nr_broker_client_message(b, (const uint8_t *)"client", 6, &m, 1);
    nr_proto_msg_clear(&m);
    for (int k = 0; k < 2; k++) s_submit_held(b, "d1", "x", 10 + (uint64_t)k, 1);
    nr_broker_commit(b, 2);
    /* c1 was never sent; d1 took its slot once the revoked lease was dropped. */
    nr_msg_t *job = s_last("w", NR_CMD_JOB);
    cr_assert_not_null(job);
    cr_assert_str_eq(job->id, "d1");
    cr_assert_eq(s_count("w", NR_CMD_JOB), 1);
    cr_assert_eq(nr_broker_find_job(b, "c1")->state, NR_JOB_CANCELLED);
    int seen = 0;
    for (int i = 0; i < s_nsent; i++) {
        const nr_msg_t *r = &s_sent[i].msg;
        if (r->cmd != NR_CMD_REPLY) continue;
        if (r->seq == 3) {
            cr_assert_str_eq(s_kv(r, "state"), "cancelled");
            seen |= 1;
        }
        if (r->seq == 10) {
            cr_assert_str_eq(s_kv(r, "existing"), "");
            seen |= 2;
        }
        if (r->seq == 11) {
            cr_assert_str_eq(s_kv(r, "existing"), "1");
            seen |= 4;
        }
    }
    cr_assert_eq(seen, 7, "every request answered");
    nr_broker_destroy(&b);
}

/* ---- with a real redis-server ---- */

static nr_harness_redis_t *s_redis;
static nr_store_t *s_store;

static nr_store_t *s_store_new(int port) {
    nr_store_params_t sp;
    nr_store_default_params(&sp);
    sp.port = port;
    sp.timeout_ms = 500;
    snprintf(sp.prefix, sizeof sp.prefix, "t");
    nr_store_t *st = nr_store_new(&sp);
    cr_assert_not_null(st);
    return st;
}

static void s_redis_setup(void) {
    nr_log_set_level("error");
    nr_harness_redis_params_t rp;
    nr_harness_redis_default_params(&rp);
    rp.appendonly = 0;
    s_redis = nr_harness_redis_new(&rp);
    cr_assert_not_null(s_redis, "redis-server: %s", nr_harness_error());
    s_store = s_store_new(nr_harness_redis_port(s_redis));
}

static void s_redis_teardown(void) {
    s_sent_clear();
    s_on_send = NULL;
    nr_store_destroy(&s_store);
    nr_harness_redis_destroy(&s_redis);
}

static void s_redis_cmd(char *out, size_t size, int argc, const char *const argv[]) {
    int rc = nr_harness_redis_command(nr_harness_redis_port(s_redis), argc, argv, out, size);
    cr_assert_eq(rc, 0, "%s: %s", argv[0], out);
}

static void s_hget(const char *id, const char *field, char *out, size_t size) {
    char key[128];
    snprintf(key, sizeof key, "t:job:%s", id);
    const char *argv[] = {"HGET", key, field};
    s_redis_cmd(out, size, 3, argv);
}

TestSuite(store, .init = s_redis_setup, .fini = s_redis_teardown, .timeout = 60);

Test(store, submit_writes_record_input_pending_and_event) {
    nr_broker_t *b = s_new(s_store, NULL);
    cr_assert_eq(nr_broker_start(b, 0), 0, "%s", nr_store_error(s_store));
    int64_t wall0 = nr_clock_wall_ms();
    nr_msg_t *rep = s_submit_opts(b, "r1", "vision,text", "IMG", "max_length", "16", 1000);
    int64_t wall1 = nr_clock_wall_ms();
    cr_assert_eq(rep->code, 0, "%s", rep->message);
    char out[4096];
    s_hget("r1", "state", out, sizeof out);
    cr_assert_str_eq(out, "queued");
    s_hget("r1", "route", out, sizeof out);
    cr_assert_str_eq(out, "vision,text");
    s_hget("r1", "opt.max_length", out, sizeof out);
    cr_assert_str_eq(out, "16");
    const char *get[] = {"GET", "t:input:r1"};
    s_redis_cmd(out, sizeof out, 2, get);
    cr_assert_str_eq(out, "IMG");
    const char *ttl[] = {"TTL", "t:input:r1"};
    s_redis_cmd(out, sizeof out, 2, ttl);
    cr_assert_str_eq(out, "-1", "no TTL while unfinished");
    const char *zs[] = {"ZSCORE", "t:pending:vision", "r1"};
    s_redis_cmd(out, sizeof out, 3, zs);
    /* Stored times are wall clock (now, 1000, is the monotonic clock). */
    long long score = strtoll(out, NULL, 10);
    cr_assert(score >= wall0 && score <= wall1, "pending score %s is not the wall clock", out);
    s_hget("r1", "created_ms", out, sizeof out);
    cr_assert_eq(strtoll(out, NULL, 10), score);
    const char *xl[] = {"XLEN", "t:events"};
    s_redis_cmd(out, sizeof out, 2, xl);
    cr_assert_str_eq(out, "1");
    const char *stats[] = {"HGET", "t:stats", "submitted"};
    s_redis_cmd(out, sizeof out, 3, stats);
    cr_assert_str_eq(out, "1");

    /* Through both stages: outputs stored, TTLs set, pending emptied. */
    s_ready(b, "v", "vision", 1, 1001);
    s_result(b, "v", "r1", "vision", 1, "STATES", "model", "vit", 1002);
    s_hget("r1", "stage", out, sizeof out);
    cr_assert_str_eq(out, "text");
    const char *zv[] = {"ZSCORE", "t:pending:vision", "r1"};
    s_redis_cmd(out, sizeof out, 3, zv);
    cr_assert_str_eq(out, "(nil)");
    const char *zt[] = {"ZSCORE", "t:pending:text", "r1"};
    s_redis_cmd(out, sizeof out, 3, zt);
    cr_assert_str_neq(out, "(nil)");
    s_ready(b, "t", "text", 1, 1003);
    s_result(b, "t", "r1", "text", 1, "a dog", "caption", "a dog", 1004);
    cr_assert_null(nr_broker_find_job(b, "r1"), "a stored finished job leaves memory");
    s_hget("r1", "state", out, sizeof out);
    cr_assert_str_eq(out, "done");
    s_hget("r1", "text.caption", out, sizeof out);
    cr_assert_str_eq(out, "a dog");
    const char *go[] = {"GET", "t:out:vision:r1"};
    s_redis_cmd(out, sizeof out, 2, go);
    cr_assert_str_eq(out, "STATES");
    const char *to[] = {"TTL", "t:out:text:r1"};
    s_redis_cmd(out, sizeof out, 2, to);
    cr_assert_gt(atol(out), 0);
    s_redis_cmd(out, sizeof out, 2, ttl);
    cr_assert_gt(atol(out), 0, "input expires once finished");
    s_redis_cmd(out, sizeof out, 3, zt);
    cr_assert_str_eq(out, "(nil)");

    /* STATUS / FETCH / resubmit served from Redis. */
    nr_msg_t *st = s_client(b, NR_CMD_STATUS, "r1", NULL, 1005);
    cr_assert_eq(st->code, 0);
    cr_assert_str_eq(s_kv(st, "state"), "done");
    cr_assert_str_eq(s_kv(st, "vision.model"), "vit");
    nr_msg_t *f = s_client(b, NR_CMD_FETCH, "r1", "text", 1006);
    cr_assert_eq(f->code, 0, "%s", f->message);
    cr_assert_eq(memcmp(f->frames[0].data, "a dog", 5), 0);
    rep = s_submit(b, "r1", "vision,text", "IMG", 1007);
    cr_assert_str_eq(s_kv(rep, "existing"), "1");
    cr_assert_str_eq(s_kv(rep, "state"), "done");
    nr_msg_t *stt = s_client(b, NR_CMD_STATS, NULL, NULL, 1008);
    cr_assert_str_eq(s_kv(stt, "jobs.done"), "1");
    cr_assert_str_eq(s_kv(stt, "total.submitted"), "1");
    cr_assert_str_eq(s_kv(stt, "redis"), "up");
    nr_broker_destroy(&b);
}

Test(store, restarted_broker_resumes_queued_and_running_jobs) {
    nr_broker_t *b = s_new(s_store, NULL);
    cr_assert_eq(nr_broker_start(b, 0), 0);
    s_ready(b, "v", "vision", 1, 0);
    s_submit(b, "run", "vision,text", "IMG-A", 10);
    s_submit(b, "wait", "vision,text", "IMG-B", 20);
    s_submit(b, "mid", "text", "STATES-C", 30);
    cr_assert_eq(nr_broker_find_job(b, "run")->state, NR_JOB_RUNNING);
    /* A crash: the broker goes away without a word. */
    nr_broker_destroy(&b);
    s_sent_clear();
    nr_store_t *st2 = s_store_new(nr_harness_redis_port(s_redis));
    b = s_new(st2, NULL);
    cr_assert_eq(nr_broker_start(b, 100), 0);
    nr_broker_job_t *run = nr_broker_find_job(b, "run");
    cr_assert_not_null(run);
    cr_assert_eq(run->state, NR_JOB_QUEUED);
    cr_assert_eq(run->attempts, 1u, "attempt kept");
    cr_assert_eq(nr_broker_queued(b, "vision"), 2u);
    cr_assert_eq(nr_broker_queued(b, "text"), 1u);
    char out[64];
    s_hget("run", "state", out, sizeof out);
    cr_assert_str_eq(out, "queued");
    /* Inputs come back from Redis at dispatch, oldest first. */
    s_ready(b, "v2", "vision", 2, 101);
    cr_assert_eq(s_count("v2", NR_CMD_JOB), 2);
    cr_assert_str_eq(s_sent[0].msg.id, "run");
    cr_assert_eq(s_sent[0].msg.attempt, 2u);
    cr_assert_eq(memcmp(s_sent[0].msg.frames[0].data, "IMG-A", 5), 0);
    cr_assert_eq(memcmp(s_sent[1].msg.frames[0].data, "IMG-B", 5), 0);
    s_ready(b, "t", "text", 1, 102);
    nr_msg_t *tj = s_last("t", NR_CMD_JOB);
    cr_assert_eq(memcmp(tj->frames[0].data, "STATES-C", 8), 0);
    /* The old broker's worker answering the new broker is told to re-register. */
    s_result(b, "v", "run", "vision", 1, "X", NULL, NULL, 103);
    cr_assert_eq(s_count("v", NR_CMD_DISCONNECT), 1);
    nr_broker_destroy(&b);
    nr_store_destroy(&st2);
}

Test(store, redis_down_refuses_submit_keeps_results_and_flushes_on_return) {
    nr_broker_t *b = s_new(s_store, NULL);
    cr_assert_eq(nr_broker_start(b, 0), 0);
    s_ready(b, "w", "speech", 1, 0);
    s_submit(b, "keep", "speech", "hello", 1);
    cr_assert_eq(nr_harness_redis_stop(s_redis, 0), 0);
    /* The first write finds Redis gone: not acknowledged, not kept. */
    cr_assert_eq(s_submit(b, "lost", "speech", "x", 2)->code, NR_EREDIS);
    cr_assert_null(nr_broker_find_job(b, "lost"));
    /* A result arrives while Redis is away: accepted and kept. */
    s_result(b, "w", "keep", "speech", 1, "RIFF-WAV", "duration_ms", "900", 2);
    cr_assert(!nr_store_is_up(s_store));
    nr_broker_job_t *j = nr_broker_find_job(b, "keep");
    cr_assert_not_null(j, "an unsaved finished job stays in memory");
    cr_assert_eq(j->state, NR_JOB_DONE);
    cr_assert(j->dirty);
    nr_msg_t *rep = s_submit(b, "new", "speech", "x", 3);
    cr_assert_eq(rep->code, NR_EREDIS);
    cr_assert(strstr(rep->message, "redis"), "%s", rep->message);
    nr_msg_t *st = s_client(b, NR_CMD_STATUS, "keep", NULL, 4);
    cr_assert_eq(st->code, 0, "status of a job in memory still works");
    nr_msg_t *f = s_client(b, NR_CMD_FETCH, "keep", "speech", 4);
    cr_assert_eq(f->code, 0, "unsaved output still served: %s", f->message);
    nr_msg_t *stats = s_client(b, NR_CMD_STATS, NULL, NULL, 4);
    cr_assert_str_eq(s_kv(stats, "redis"), "down");
    /* Redis comes back (no persistence here: the old record is gone, the
     * kept state is written again). */
    cr_assert_eq(nr_harness_redis_start(s_redis), 0, "%s", nr_harness_error());
    int64_t t = nr_harness_now_ms() + 40000;
    while (nr_harness_now_ms() < t && !nr_store_is_up(s_store)) {
        nr_broker_tick(b, nr_harness_now_ms() + 100000);
        nr_harness_sleep_ms(50);
    }
    cr_assert(nr_store_is_up(s_store));
    cr_assert_null(nr_broker_find_job(b, "keep"), "flushed and evicted");
    char out[64];
    s_hget("keep", "state", out, sizeof out);
    cr_assert_str_eq(out, "done");
    s_hget("keep", "speech.duration_ms", out, sizeof out);
    cr_assert_str_eq(out, "900");
    const char *get[] = {"GET", "t:out:speech:keep"};
    s_redis_cmd(out, sizeof out, 2, get);
    cr_assert_str_eq(out, "RIFF-WAV");
    cr_assert_eq(s_submit(b, "new", "speech", "x", 5)->code, 0);
    nr_broker_destroy(&b);
}

Test(store, start_with_redis_down_resumes_when_it_appears) {
    int port = nr_harness_redis_port(s_redis);
    nr_broker_t *b = s_new(s_store, NULL);
    s_submit(b, "early", "speech", "x", 0); /* not started: refused */
    cr_assert_eq(s_last("client", NR_CMD_REPLY)->code, NR_EREDIS);
    cr_assert_eq(nr_broker_start(b, 0), 0);
    s_submit(b, "p", "speech", "x", 0);
    nr_broker_destroy(&b);
    cr_assert_eq(nr_harness_redis_stop(s_redis, 0), 0);
    nr_store_t *st2 = s_store_new(port);
    b = s_new(st2, NULL);
    cr_assert_eq(nr_broker_start(b, 0), NR_EREDIS);
    cr_assert_eq(s_submit(b, "q", "speech", "x", 1)->code, NR_EREDIS);
    (void)port;
    nr_broker_destroy(&b);
    nr_store_destroy(&st2);
}

Test(store, load_of_unknown_and_stale_pending_entries) {
    cr_assert_eq(nr_store_connect(s_store), 0);
    nr_broker_job_t *j = NULL;
    cr_assert_eq(nr_store_load(s_store, "nothing", &j), NR_ENOTFOUND);
    cr_assert_null(j);
    uint8_t *data = NULL;
    size_t n = 0;
    cr_assert_eq(nr_store_get_blob(s_store, "nothing", NULL, &data, &n), NR_ENOTFOUND);
    /* A pending entry whose job is already done (say a crash between two
     * writes of an older version) is cleaned up at start. */
    char out[64];
    const char *sadd[] = {"SADD", "t:stages", "speech"};
    s_redis_cmd(out, sizeof out, 3, sadd);
    const char *zadd[] = {"ZADD", "t:pending:speech", "5", "old"};
    s_redis_cmd(out, sizeof out, 4, zadd);
    const char *hset[] = {"HSET", "t:job:old", "id", "old", "state", "done", "route", "speech",
                          "stage_index", "0", "attempts", "1"};
    s_redis_cmd(out, sizeof out, 12, hset);
    const char *zadd2[] = {"ZADD", "t:pending:speech", "6", "ghost"};
    s_redis_cmd(out, sizeof out, 4, zadd2);
    nr_broker_t *b = s_new(s_store, NULL);
    cr_assert_eq(nr_broker_start(b, 0), 0);
    cr_assert_null(nr_broker_find_job(b, "old"));
    cr_assert_eq(nr_broker_queued(b, "speech"), 0u);
    const char *zs[] = {"ZSCORE", "t:pending:speech", "old"};
    s_redis_cmd(out, sizeof out, 3, zs);
    cr_assert_str_eq(out, "(nil)");
    /* A queued job whose input vanished fails clearly at dispatch. */
    const char *hset2[] = {"HSET", "t:job:lost", "id", "lost", "state", "queued", "route",
                           "speech", "stage_index", "0", "attempts", "0"};
    s_redis_cmd(out, sizeof out, 12, hset2);
    const char *zadd3[] = {"ZADD", "t:pending:speech", "7", "lost"};
    s_redis_cmd(out, sizeof out, 4, zadd3);
    nr_broker_destroy(&b);
    b = s_new(s_store, NULL);
    cr_assert_eq(nr_broker_start(b, 0), 0);
    s_ready(b, "w", "speech", 1, 1);
    s_hget("lost", "state", out, sizeof out);
    cr_assert_str_eq(out, "failed");
    s_hget("lost", "error", out, sizeof out);
    cr_assert_str_eq(out, "internal_error");
    cr_assert_eq(s_count("w", NR_CMD_JOB), 0);
    nr_broker_destroy(&b);
}

/* With AOF on (appendfsync always), an acknowledged SUBMIT survives a Redis
 * crash and a broker restart. */
Test(store, acknowledged_submit_survives_redis_crash_with_aof) {
    nr_store_destroy(&s_store);
    nr_harness_redis_destroy(&s_redis);
    nr_harness_redis_params_t rp;
    nr_harness_redis_default_params(&rp);
    rp.appendonly = 1;
    s_redis = nr_harness_redis_new(&rp);
    cr_assert_not_null(s_redis, "%s", nr_harness_error());
    s_store = s_store_new(nr_harness_redis_port(s_redis));
    nr_broker_t *b = s_new(s_store, NULL);
    cr_assert_eq(nr_broker_start(b, 0), 0);
    cr_assert_eq(s_submit(b, "durable", "vision,text", "IMG", 1)->code, 0);
    nr_broker_destroy(&b);
    cr_assert_eq(nr_harness_redis_stop(s_redis, 1), 0);
    cr_assert_eq(nr_harness_redis_start(s_redis), 0, "%s", nr_harness_error());
    nr_store_t *st2 = s_store_new(nr_harness_redis_port(s_redis));
    b = s_new(st2, NULL);
    cr_assert_eq(nr_broker_start(b, 10), 0);
    cr_assert_eq(nr_broker_queued(b, "vision"), 1u);
    s_ready(b, "v", "vision", 1, 11);
    nr_msg_t *job = s_last("v", NR_CMD_JOB);
    cr_assert_not_null(job);
    cr_assert_str_eq(job->id, "durable");
    cr_assert_eq(memcmp(job->frames[0].data, "IMG", 3), 0);
    nr_broker_destroy(&b);
    nr_store_destroy(&st2);
}

/* nr_store_save sends SADD P:stages once per stage and connection, and the
 * job's own fields in the record's HSET: a Redis that comes back empty
 * gets the stage again, and a record with every option is complete. */
Test(store, stages_set_rewritten_after_reconnect_and_many_fields_saved) {
    nr_broker_t *b = s_new(s_store, NULL);
    cr_assert_eq(nr_broker_start(b, 0), 0);
    cr_assert_eq(s_submit(b, "s1", "speech", "x", 1)->code, 0);
    char out[4096];
    const char *ism[] = {"SISMEMBER", "t:stages", "speech"};
    s_redis_cmd(out, sizeof out, 3, ism);
    cr_assert_str_eq(out, "1");
    /* Redis restarts without persistence: the set is gone. */
    cr_assert_eq(nr_harness_redis_stop(s_redis, 0), 0);
    cr_assert_eq(nr_harness_redis_start(s_redis), 0, "%s", nr_harness_error());
    int64_t t = nr_harness_now_ms() + 40000;
    while (nr_harness_now_ms() < t) {
        nr_msg_t *rep = s_submit(b, "s2", "speech", "x", 2);
        if (rep->code == 0) break;
        nr_broker_tick(b, nr_harness_now_ms() + 100000);
        nr_harness_sleep_ms(50);
    }
    s_redis_cmd(out, sizeof out, 3, ism);
    cr_assert_str_eq(out, "1", "stage added again after the reconnect");

    /* One more option than the record holds beside the broker's fields and
     * the stage's results: refused, nothing written (it used to be
     * accepted and the record cut at 64 fields, the results left out of
     * it). The most it holds: accepted, the record's HSET spills over. */
    const long most = NR_BROKER_MAX_OPTIONS(1);
    cr_assert_gt(most, 0);
    nr_msg_t *rep = NULL;
    for (int pass = 0; pass < 2; pass++) {
        nr_msg_t m;
        nr_proto_msg_init(&m);
        m.cmd = NR_CMD_SUBMIT;
        m.seq = 7;
        snprintf(m.id, sizeof m.id, pass ? "many" : "toomany");
        snprintf(m.route[m.route_len++], sizeof m.route[0], "speech");
        for (int i = 0; i < most + !pass; i++) {
            char k[32], v[32];
            snprintf(k, sizeof k, "k%02d", i);
            snprintf(v, sizeof v, "v%02d", i);
            cr_assert_eq(nr_proto_kv_add(&m, k, v), 0);
        }
        nr_proto_frame_add(&m, "x", 1);
        nr_broker_client_message(b, (const uint8_t *)"client", 6, &m, 3);
        nr_proto_msg_clear(&m);
        if (pass) break;
        rep = s_last("client", NR_CMD_REPLY);
        cr_assert_not_null(rep);
        cr_assert_eq(rep->code, NR_EOPTION, "%d %s", rep->code, rep->message);
        cr_assert(strstr(rep->message, "at most"), "%s", rep->message);
        const char *exists[] = {"EXISTS", "t:job:toomany"};
        s_redis_cmd(out, sizeof out, 2, exists);
        cr_assert_str_eq(out, "0");
    }
    rep = s_last("client", NR_CMD_REPLY);
    cr_assert_not_null(rep);
    cr_assert_eq(rep->code, 0, "%s", rep->message);
    const char *hlen[] = {"HLEN", "t:job:many"};
    s_redis_cmd(out, sizeof out, 2, hlen);
    cr_assert_geq(atol(out), 10 + most, "every field stored (HLEN %s)", out);
    s_hget("many", "opt.k01", out, sizeof out);
    cr_assert_str_eq(out, "v01");
    char last[32], want[32];
    snprintf(last, sizeof last, "opt.k%02ld", most - 1);
    snprintf(want, sizeof want, "v%02ld", most - 1);
    s_hget("many", last, out, sizeof out);
    cr_assert_str_eq(out, want);
    s_hget("many", "state", out, sizeof out);
    cr_assert_str_eq(out, "queued");
    nr_broker_destroy(&b);
}

/* Group commit: SUBMITs handled in one batch (nr_broker_begin/commit) go to
 * Redis in one pipeline at the commit, and none is acknowledged before it;
 * a broker that dies right after the acknowledgements loses none. A batch
 * whose pipeline meets a dead Redis refuses every SUBMIT in it and keeps
 * the other state changes for later. */
Test(store, batch_of_submits_is_written_before_any_ack_and_survives_a_crash) {
    nr_broker_t *b = s_new(s_store, NULL);
    cr_assert_eq(nr_broker_start(b, 0), 0);
    s_sent_clear();
    enum { N = 300 };
    nr_broker_begin(b, 1);
    for (int i = 0; i < N; i++) {
        char id[16], in[32];
        snprintf(id, sizeof id, "g%03d", i);
        snprintf(in, sizeof in, "in-%03d", i);
        s_submit_held(b, id, in, (uint64_t)i, 1);
    }
    cr_assert_eq(s_count("client", NR_CMD_REPLY), 0, "no acknowledgement before the write");
    char out[256];
    /* No SUBMIT reads Redis first (the write checks the id itself), so
     * nothing at all is sent before the commit. */
    const char *ex[] = {"EXISTS", "t:job:g000", "t:job:g299"};
    s_redis_cmd(out, sizeof out, 3, ex);
    cr_assert_str_eq(out, "0", "nothing sent before the commit");
    nr_broker_commit(b, 2);
    cr_assert_eq(s_count("client", NR_CMD_REPLY), N);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(s_sent[i].msg.seq, (uint64_t)i, "replies in request order");
        cr_assert_eq(s_sent[i].msg.code, 0, "%s", s_sent[i].msg.message);
    }
    const char *xl[] = {"XLEN", "t:events"};
    s_redis_cmd(out, sizeof out, 2, xl);
    cr_assert_eq(atoi(out), N, "one event per state change");
    const char *st[] = {"HGET", "t:stats", "submitted"};
    s_redis_cmd(out, sizeof out, 3, st);
    cr_assert_eq(atoi(out), N);
    /* A crash right after the acknowledgements. */
    nr_broker_destroy(&b);
    s_sent_clear();
    nr_store_t *st2 = s_store_new(nr_harness_redis_port(s_redis));
    b = s_new(st2, NULL);
    cr_assert_eq(nr_broker_start(b, 3), 0);
    cr_assert_eq(nr_broker_queued(b, "speech"), (size_t)N, "every acknowledged job resumed");
    const char *in[] = {"GET", "t:input:g299"};
    s_redis_cmd(out, sizeof out, 2, in);
    cr_assert_str_eq(out, "in-299");

    /* Results and SUBMITs in one batch, and Redis dies before the commit. */
    s_ready(b, "w", "speech", 2, 4);
    cr_assert_eq(s_count("w", NR_CMD_JOB), 2);
    cr_assert_eq(nr_harness_redis_stop(s_redis, 0), 0);
    s_sent_clear();
    nr_broker_begin(b, 5);
    s_result(b, "w", "g000", "speech", 1, "WAV-0", NULL, NULL, 5);
    s_result(b, "w", "g001", "speech", 1, "WAV-1", NULL, NULL, 5);
    s_submit_held(b, "late-1", "x", 1, 5);
    s_submit_held(b, "late-2", "y", 2, 5);
    nr_broker_commit(b, 6);
    cr_assert_eq(s_count("client", NR_CMD_REPLY), 2);
    for (int i = 0; i < s_nsent; i++)
        if (!strcmp(s_sent[i].peer, "client"))
            cr_assert_eq(s_sent[i].msg.code, NR_EREDIS, "refused: not written");
    cr_assert_null(nr_broker_find_job(b, "late-1"));
    cr_assert_null(nr_broker_find_job(b, "late-2"));
    nr_broker_job_t *j = nr_broker_find_job(b, "g001");
    cr_assert_not_null(j, "an unwritten result stays in memory");
    cr_assert_eq(j->state, NR_JOB_DONE);
    cr_assert(j->dirty);
    cr_assert_eq(nr_harness_redis_start(s_redis), 0, "%s", nr_harness_error());
    int64_t t = nr_harness_now_ms() + 40000;
    while (nr_harness_now_ms() < t && (nr_broker_find_job(b, "g001") || !nr_store_is_up(st2))) {
        nr_broker_tick(b, nr_harness_now_ms() + 100000);
        nr_harness_sleep_ms(50);
    }
    cr_assert_null(nr_broker_find_job(b, "g001"), "written once Redis is back, then evicted");
    const char *go[] = {"GET", "t:out:speech:g001"};
    s_redis_cmd(out, sizeof out, 2, go);
    cr_assert_str_eq(out, "WAV-1");
    nr_broker_destroy(&b);
    nr_store_destroy(&st2);
}

/* A SUBMIT's large input is stored whole and without a TTL; a second
 * SUBMIT of the id, found taken in Redis by the check, writes nothing. */
Test(store, large_submit_input_is_stored_and_a_taken_id_writes_nothing) {
    nr_broker_t *b = s_new(s_store, NULL);
    cr_assert_eq(nr_broker_start(b, 0), 0);
    static char big[20001];
    for (size_t i = 0; i < sizeof big - 1; i++) big[i] = (char)('a' + i % 26);
    cr_assert_eq(s_submit(b, "big", "speech", big, 1)->code, 0);
    char out[32768];
    const char *get[] = {"GET", "t:input:big"};
    s_redis_cmd(out, sizeof out, 2, get);
    cr_assert_str_eq(out, big);
    const char *ttl[] = {"TTL", "t:input:big"};
    s_redis_cmd(out, sizeof out, 2, ttl);
    cr_assert_str_eq(out, "-1", "no TTL while unfinished");
    s_ready(b, "w", "speech", 1, 2);
    s_result(b, "w", "big", "speech", 1, "WAV", NULL, NULL, 3);
    cr_assert_null(nr_broker_find_job(b, "big"), "done and evicted");
    /* Again, from Redis: taken by a live (done) job, nothing written. */
    nr_msg_t *rep = s_submit(b, "big", "speech", big, 4);
    cr_assert_eq(rep->code, 0, "%s", rep->message);
    cr_assert_str_eq(s_kv(rep, "existing"), "1");
    cr_assert_str_eq(s_kv(rep, "state"), "done");
    const char *xl[] = {"XLEN", "t:events"};
    s_redis_cmd(out, sizeof out, 2, xl);
    cr_assert_str_eq(out, "3", "queued, running, done: the refused write added nothing");
    nr_broker_destroy(&b);
}

/* Every field of the job as the broker holds it (its STATUS reply, from
 * memory) equals the stored record's, after saves that write only what
 * changed. */
static void s_record_matches(nr_broker_t *b, const char *id, int64_t now) {
    nr_msg_t *st = s_client(b, NR_CMD_STATUS, id, NULL, now);
    cr_assert_eq(st->code, 0, "%s", st->message);
    cr_assert_not_null(nr_broker_find_job(b, id), "still in memory");
    for (uint32_t i = 0; i < st->kv_len; i++) { /* s_hget reads Redis only: st stays */
        if (!strcmp(st->kv[i].key, "stage_workers")) continue;
        char out[4096];
        s_hget(id, st->kv[i].key, out, sizeof out);
        cr_assert_str_eq(out, st->kv[i].value, "field %s: stored '%s', broker '%s'",
                         st->kv[i].key, out, st->kv[i].value);
    }
}

Test(store, saves_of_changes_keep_the_whole_record) {
    nr_broker_t *b = s_new(s_store, NULL);
    cr_assert_eq(nr_broker_start(b, 0), 0, "%s", nr_store_error(s_store));
    cr_assert_eq(s_submit_opts(b, "d1", "vision,text", "IMG", "max_length", "16", 10)->code, 0);
    s_record_matches(b, "d1", 11);
    s_ready(b, "v", "vision", 1, 12); /* running */
    s_record_matches(b, "d1", 13);
    s_fail(b, "v", "d1", "vision", 1, NR_EDEVICE, 1, "cuda out of memory", 14); /* queued, error */
    s_record_matches(b, "d1", 15);
    s_worker_cmd(b, "v", NR_CMD_HEARTBEAT, 2000);
    nr_broker_tick(b, 2000); /* backoff over: running again, attempt 2 */
    cr_assert_eq(s_last("v", NR_CMD_JOB)->attempt, 2u);
    s_record_matches(b, "d1", 2001);
    s_result(b, "v", "d1", "vision", 2, "STATES", "model", "vit", 2002); /* next stage */
    s_record_matches(b, "d1", 2003);
    char out[256];
    const char *zv[] = {"ZSCORE", "t:pending:vision", "d1"};
    s_redis_cmd(out, sizeof out, 3, zv);
    cr_assert_str_eq(out, "(nil)");
    const char *zt[] = {"ZSCORE", "t:pending:text", "d1"};
    s_redis_cmd(out, sizeof out, 3, zt);
    cr_assert_str_neq(out, "(nil)");
    s_ready(b, "t", "text", 1, 2004);
    s_record_matches(b, "d1", 2005);
    const char *xl[] = {"XLEN", "t:events"};
    s_redis_cmd(out, sizeof out, 2, xl);
    cr_assert_str_eq(out, "6", "queued, running, queued, running, queued, running");
    nr_broker_destroy(&b);
}

Test(store, a_field_changed_after_a_save_is_written_again) {
    cr_assert_eq(nr_store_connect(s_store), 0, "%s", nr_store_error(s_store));
    nr_broker_job_t *job = nr_broker_job_new("f1");
    cr_assert_eq(nr_broker_job_parse_route(job, "speech"), 0);
    cr_assert_eq(nr_broker_job_set(job, "opt.a", "1"), 0);
    cr_assert_eq(nr_broker_job_set(job, "opt.b", "1"), 0);
    cr_assert_eq(nr_store_save(s_store, job, -1, NULL, 0, NR_STORE_COUNT_NONE), 0);
    nr_store_commit(s_store, NULL, NULL);
    cr_assert(job->stored.record_saved);
    /* Replaced after a landed save: the next (partial) save writes it. */
    cr_assert_eq(nr_broker_job_set(job, "opt.a", "2"), 0);
    job->state = NR_JOB_RUNNING;
    cr_assert_eq(nr_store_save(s_store, job, -1, NULL, 0, NR_STORE_COUNT_NONE), 0);
    /* Replaced while that save is queued: not in it, so written later. */
    cr_assert_eq(nr_broker_job_set(job, "opt.b", "3"), 0);
    nr_store_commit(s_store, NULL, NULL);
    char out[256];
    s_hget("f1", "opt.a", out, sizeof out);
    cr_assert_str_eq(out, "2");
    s_hget("f1", "state", out, sizeof out);
    cr_assert_str_eq(out, "running");
    cr_assert_eq(nr_store_save(s_store, job, -1, NULL, 0, NR_STORE_COUNT_NONE), 0);
    nr_store_commit(s_store, NULL, NULL);
    s_hget("f1", "opt.b", out, sizeof out);
    cr_assert_str_eq(out, "3");
    s_hget("f1", "route", out, sizeof out);
    cr_assert_str_eq(out, "speech");
    nr_broker_job_destroy(&job);
}

/* What leaves the broker is already in Redis: an acknowledged SUBMIT's
 * record, a JOB's running state. */
static void s_check_durable(const nr_msg_t *msg) {
    char out[256];
    if (msg->cmd == NR_CMD_REPLY && msg->code == 0 && msg->id[0]) {
        s_hget(msg->id, "state", out, sizeof out);
        cr_assert_str_neq(out, "(nil)", "SUBMIT %s acknowledged before its record landed", msg->id);
    } else if (msg->cmd == NR_CMD_JOB) {
        s_hget(msg->id, "state", out, sizeof out);
        cr_assert_str_eq(out, "running", "JOB %s sent before its running state landed", msg->id);
    }
}

static void s_pipelined(nr_broker_params_t *p) { p->pipelined = 1; }

/* Waits for the writes in flight and lets the broker go on (main.c's loop). */
static void s_turn(nr_broker_t *b, int64_t now) {
    int fd = nr_broker_store_fd(b);
    if (fd >= 0) {
        struct pollfd p = {fd, POLLIN, 0};
        poll(&p, 1, 1000);
    }
    nr_broker_begin(b, now);
    nr_broker_commit(b, now);
}

Test(store, pipelined_commit_sends_nothing_before_its_write_lands) {
    nr_broker_t *b = s_new(s_store, s_pipelined);
    cr_assert_eq(nr_broker_start(b, 0), 0, "%s", nr_store_error(s_store));
    s_on_send = s_check_durable;
    s_ready(b, "w", "speech", 8, 1);
    enum { N = 40 };
    char id[N][16];
    /* Two batches: the second is read while the first is in flight. */
    for (int half = 0; half < 2; half++) {
        nr_broker_begin(b, 2);
        for (int i = half * N / 2; i < (half + 1) * N / 2; i++) {
            snprintf(id[i], sizeof id[i], "p%02d", i);
            s_submit_held(b, id[i], "x", (uint64_t)i, 2);
        }
        nr_broker_commit(b, 2);
    }
    int done = 0;
    for (int turn = 0; turn < 1000 && done < N; turn++) {
        /* Answer every JOB not answered yet. */
        for (int i = 0; i < s_nsent; i++) {
            nr_msg_t *m = &s_sent[i].msg;
            if (m->cmd != NR_CMD_JOB || m->seq == 1) continue;
            m->seq = 1; /* answered */
            char output[32];
            snprintf(output, sizeof output, "out-%s", m->id);
            s_result(b, "w", m->id, "speech", m->attempt, output, "k", "v", 3);
            done++;
        }
        s_turn(b, 3);
    }
    for (int k = 0; k < 100 && nr_broker_store_fd(b) >= 0; k++) s_turn(b, 3);
    cr_assert_eq(done, N, "every job dispatched (%d)", done);
    cr_assert_eq(s_count("client", NR_CMD_REPLY), N);
    for (int i = 0; i < N; i++) {
        char out[256];
        s_hget(id[i], "state", out, sizeof out);
        cr_assert_str_eq(out, "done", "%s", id[i]);
        s_hget(id[i], "speech.k", out, sizeof out);
        cr_assert_str_eq(out, "v");
    }
    nr_broker_destroy(&b);
}

/* The saves of one round trip share a transaction; a command that fails
 * inside it (here the job hash turned into a string) fails that job's
 * save only, which is written again later, and every counter counts once. */
Test(store, a_failed_command_fails_only_its_own_save_in_a_shared_transaction) {
    nr_broker_t *b = s_new(s_store, NULL);
    cr_assert_eq(nr_broker_start(b, 0), 0, "%s", nr_store_error(s_store));
    cr_assert_eq(s_submit(b, "j1", "speech", "x", 1)->code, 0);
    cr_assert_eq(s_submit(b, "j2", "speech", "y", 1)->code, 0);
    char out[256];
    const char *del[] = {"DEL", "t:job:j1"};
    const char *spoil[] = {"SET", "t:job:j1", "not a hash"};
    s_redis_cmd(out, sizeof out, 2, del);
    s_redis_cmd(out, sizeof out, 3, spoil);
    s_ready(b, "w", "speech", 2, 2); /* both dispatched: one transaction */
    cr_assert_eq(s_count("w", NR_CMD_JOB), 2);
    s_hget("j2", "state", out, sizeof out);
    cr_assert_str_eq(out, "running");
    const char *get[] = {"GET", "t:job:j1"};
    s_redis_cmd(out, sizeof out, 2, get);
    cr_assert_str_eq(out, "not a hash", "j1's write failed, j2's landed");
    cr_assert(nr_broker_find_job(b, "j1")->dirty, "j1 keeps its state for a later write");
    cr_assert(!nr_broker_find_job(b, "j2")->dirty, "j2's save stands");
    s_redis_cmd(out, sizeof out, 2, del);
    nr_broker_begin(b, 3);
    s_result(b, "w", "j1", "speech", 1, "WAV1", NULL, NULL, 3);
    s_result(b, "w", "j2", "speech", 1, "WAV2", NULL, NULL, 3);
    nr_broker_commit(b, 3);
    s_hget("j1", "state", out, sizeof out);
    cr_assert_str_eq(out, "done");
    s_hget("j1", "route", out, sizeof out);
    cr_assert_str_eq(out, "speech", "written whole after the failure");
    s_hget("j2", "state", out, sizeof out);
    cr_assert_str_eq(out, "done");
    const char *done[] = {"HGET", "t:stats", "done"};
    s_redis_cmd(out, sizeof out, 3, done);
    cr_assert_str_eq(out, "2");
    const char *sub[] = {"HGET", "t:stats", "submitted"};
    s_redis_cmd(out, sizeof out, 3, sub);
    cr_assert_str_eq(out, "2");
    nr_broker_destroy(&b);
}

/* Pipelined: a Redis that stops answering (CLIENT PAUSE) is waited for
 * only so long: the SUBMIT in flight is refused once the store's timeout
 * passes, and the broker takes SUBMITs again when Redis answers again. */
Test(store, pipelined_broker_refuses_in_flight_submits_when_redis_hangs_then_recovers) {
    nr_broker_t *b = s_new(s_store, s_pipelined);
    cr_assert_eq(nr_broker_start(b, 0), 0, "%s", nr_store_error(s_store));
    char out[256];
    int64_t t0 = nr_harness_now_ms();
    nr_broker_tick(b, t0); /* its idle PING is done: the next one is 5 s away */
    const char *pause[] = {"CLIENT", "PAUSE", "1500", "ALL"};
    s_redis_cmd(out, sizeof out, 4, pause);
    nr_broker_begin(b, t0);
    s_submit_held(b, "h1", "x", 11, t0);
    nr_broker_commit(b, t0);
    cr_assert_null(s_last("client", NR_CMD_REPLY), "not answered while its check is in flight");
    nr_broker_tick(b, t0 + 600); /* in flight too long: waits, then gives up */
    nr_msg_t *rep = s_last("client", NR_CMD_REPLY);
    cr_assert_not_null(rep);
    cr_assert_eq(rep->seq, 11u);
    cr_assert_eq(rep->code, NR_EREDIS, "refused, not acknowledged: %s", rep->message);
    cr_assert_null(nr_broker_find_job(b, "h1"));
    /* Redis answers again: after the reconnect backoff SUBMIT works. */
    int code = -1;
    for (int i = 0; i < 100 && code != 0; i++) {
        nr_harness_sleep_ms(50);
        int64_t now = nr_harness_now_ms() + 60000; /* past any backoff */
        nr_broker_tick(b, now);
        s_sent_clear();
        nr_broker_begin(b, now);
        s_submit_held(b, "h2", "x", 12, now);
        nr_broker_commit(b, now);
        for (int k = 0; k < 20 && !s_last("client", NR_CMD_REPLY); k++) s_turn(b, now);
        rep = s_last("client", NR_CMD_REPLY);
        if (rep) code = rep->code;
    }
    cr_assert_eq(code, 0);
    s_hget("h2", "state", out, sizeof out);
    cr_assert_str_eq(out, "queued");
    s_hget("h1", "state", out, sizeof out);
    cr_assert_str_eq(out, "(nil)", "the refused SUBMIT wrote nothing");
    nr_broker_destroy(&b);
}

/* ---- hostile peers (issue 16): made-up stages, a worker that never answers ---- */

/* 25 READYs and 25 SUBMITs naming made-up stages are refused and create
 * nothing; STATS still holds the totals and the real stages (before, each
 * made-up stage took 3 of STATS' 64 entries and pushed workers, jobs.* and
 * redis out of it). */
Test(broker, made_up_stages_are_refused_and_stats_keeps_every_entry) {
    nr_broker_t *b = s_new(NULL, NULL);
    s_ready(b, "v", "vision", 1, 0);
    for (int i = 0; i < 25; i++) {
        char w[32], stage[32], id[32];
        snprintf(w, sizeof w, "fake-w%d", i);
        snprintf(stage, sizeof stage, "fake-%d", i);
        s_ready(b, w, stage, 1, 0);
        nr_msg_t *d = s_last(w, NR_CMD_DISCONNECT);
        cr_assert_not_null(d, "READY for %s is answered DISCONNECT", stage);
        cr_assert(strstr(d->message, "unknown stage 'fake-"), "%s", d->message);
        cr_assert_eq(nr_broker_workers(b, stage), 0u);
        snprintf(id, sizeof id, "fake-job-%d", i);
        nr_msg_t *rep = s_submit(b, id, i % 2 ? stage : "speech,fake-x", "x", 0);
        cr_assert_eq(rep->code, NR_EINVAL, "SUBMIT to %s: %d %s", stage, rep->code, rep->message);
        cr_assert(strstr(rep->message, "unknown stage 'fake-") &&
                  strstr(rep->message, "vision,text,speech"), "%s", rep->message);
        cr_assert_null(nr_broker_find_job(b, id));
        s_sent_clear();
    }
    nr_msg_t *st = s_client(b, NR_CMD_STATS, NULL, NULL, 0);
    cr_assert_str_eq(s_kv(st, "workers.vision"), "1");
    cr_assert_str_eq(s_kv(st, "workers.text"), "0");
    cr_assert_str_eq(s_kv(st, "workers.speech"), "0");
    cr_assert_str_eq(s_kv(st, "queue.speech"), "0");
    cr_assert_str_eq(s_kv(st, "workers"), "1");
    cr_assert_str_eq(s_kv(st, "jobs.queued"), "0");
    cr_assert_str_eq(s_kv(st, "redis"), "none");
    for (uint32_t i = 0; i < st->kv_len; i++)
        cr_assert_null(strstr(st->kv[i].key, "fake"), "STATS names %s", st->kv[i].key);
    nr_broker_destroy(&b);
}

static void s_twelve_stages(nr_broker_params_t *p) {
    snprintf(p->stages, sizeof p->stages, "a,b,c,d,e,f,g,h,i,j,k,l");
}

/* The stages setting is checked; its most stages still fit in STATS. */
Test(broker, stages_setting_is_checked_and_stats_fits_the_most_stages) {
    const char *bad[] = {"", "vision,", "Vision", "a,b,a", "a,b,c,d,e,f,g,h,i,j,k,l,m", "vision,input",
                         "thumbnail,text", NULL};
    for (int i = 0; bad[i]; i++) {
        nr_broker_params_t p;
        nr_broker_default_params(&p);
        snprintf(p.stages, sizeof p.stages, "%s", bad[i]);
        char err[256] = "";
        nr_broker_t *b = nr_broker_new(&p, NULL, s_capture, NULL, err, sizeof err);
        cr_assert_null(b, "stages '%s' accepted", bad[i]);
        cr_assert(strstr(err, "stages"), "%s", err);
    }
    nr_broker_t *b = s_new(NULL, s_twelve_stages);
    for (int i = 0; i < 12; i++) {
        char w[8], stage[2] = {(char)('a' + i), 0};
        snprintf(w, sizeof w, "w%d", i);
        s_ready(b, w, stage, 1, 0);
    }
    nr_msg_t *st = s_client(b, NR_CMD_STATS, NULL, NULL, 0);
    cr_assert_str_eq(s_kv(st, "workers.l"), "1", "the last stage's entries are there");
    cr_assert_str_eq(s_kv(st, "set_aside.l"), "0");
    cr_assert_str_eq(s_kv(st, "workers"), "12");
    cr_assert_str_eq(s_kv(st, "redis"), "none");
    nr_broker_destroy(&b);
}

static void s_total3(nr_broker_params_t *p) {
    p->queue_bound = 2;
    p->queue_bound_total = 3;
}

/* queue-bound-total counts every stage: the per-stage bound alone let jobs
 * spread over stages past any bound. */
Test(broker, queue_bound_total_refuses_past_all_stages_together) {
    nr_broker_t *b = s_new(NULL, s_total3);
    cr_assert_eq(s_submit(b, "v1", "vision", "x", 0)->code, 0);
    cr_assert_eq(s_submit(b, "v2", "vision", "x", 0)->code, 0);
    cr_assert_eq(s_submit(b, "v3", "vision", "x", 0)->code, NR_EBUSY, "per-stage bound");
    cr_assert_eq(s_submit(b, "t1", "text", "x", 0)->code, 0);
    nr_msg_t *rep = s_submit(b, "s1", "speech", "x", 0);
    cr_assert_eq(rep->code, NR_EBUSY, "4th queued job accepted: %s", rep->message);
    cr_assert(strstr(rep->message, "queue-bound-total"), "%s", rep->message);
    cr_assert_null(nr_broker_find_job(b, "s1"));
    nr_broker_destroy(&b);
}

static void s_unserved5s(nr_broker_params_t *p) { p->unserved_timeout_ms = 5000; }

/* A job queued at a stage no live worker serves fails with no_worker after
 * unserved-timeout-ms (it used to wait, and be kept, forever); a stage with
 * a worker keeps its queue; the time counts from when the last worker left. */
Test(broker, job_at_an_unserved_stage_expires_with_no_worker) {
    nr_broker_t *b = s_new(NULL, s_unserved5s);
    s_ready(b, "v", "vision", 1, 0);
    s_submit(b, "busy", "vision", "x", 0);
    s_submit(b, "waits", "vision", "x", 0); /* queued behind it, served */
    s_submit(b, "u1", "text", "x", 0);
    s_submit(b, "u2", "text", "x", 3000);
    int64_t now = 0;
    for (; now <= 5200; now += 200) {
        s_worker_cmd(b, "v", NR_CMD_HEARTBEAT, now);
        nr_broker_tick(b, now);
        if (now < 5000) cr_assert_eq(nr_broker_find_job(b, "u1")->state, NR_JOB_QUEUED, "at %ld", (long)now);
    }
    nr_broker_job_t *u1 = nr_broker_find_job(b, "u1");
    cr_assert_eq(u1->state, NR_JOB_FAILED);
    cr_assert_eq(u1->error, NR_ENOWORKER);
    cr_assert(strstr(u1->error_message, "no worker serves stage text"), "%s", u1->error_message);
    cr_assert_eq(nr_broker_find_job(b, "u2")->state, NR_JOB_QUEUED, "waited 2 s only");
    cr_assert_eq(nr_broker_find_job(b, "waits")->state, NR_JOB_QUEUED, "vision has a worker");
    /* A text worker comes and goes: u2 waits 5 s from then. */
    s_ready(b, "t", "text", 1, now);
    s_worker_cmd(b, "t", NR_CMD_DISCONNECT, now);
    int64_t left = now;
    cr_assert_eq(nr_broker_find_job(b, "u2")->state, NR_JOB_QUEUED);
    cr_assert_eq(nr_broker_find_job(b, "u2")->attempts, 1u, "it ran on t and was requeued");
    for (; now <= left + 5400; now += 200) {
        s_worker_cmd(b, "v", NR_CMD_HEARTBEAT, now);
        nr_broker_tick(b, now);
        if (now < left + 4000)
            cr_assert_eq(nr_broker_find_job(b, "u2")->state, NR_JOB_QUEUED, "at %ld", (long)now);
    }
    cr_assert_eq(nr_broker_find_job(b, "u2")->state, NR_JOB_FAILED);
    cr_assert_eq(nr_broker_find_job(b, "waits")->state, NR_JOB_QUEUED);
    nr_broker_destroy(&b);
}

static void s_short_deadline(nr_broker_params_t *p) { p->job_deadline_ms = 1000; }

/* A worker announcing capacity 1024 that heartbeats but never answers,
 * beside a real worker of capacity 1: its credit is cut to 256, jobs are
 * spread, retries go to the real worker, and after 3 expired leases in a
 * row it is set aside (log, metric, STATS). All 20 jobs finish done
 * (before: it took all 3 attempts of every job, attempts_exhausted). */
Test(broker, worker_that_never_answers_is_set_aside_and_jobs_finish_elsewhere) {
    nr_metrics_t *m = nr_metrics_new();
    cr_assert_not_null(m);
    cr_assert_eq(nr_broker_metrics_define(m), 0);
    nr_broker_t *b = s_new(NULL, s_short_deadline);
    nr_broker_set_metrics(b, m);
    s_ready(b, "real", "speech", 1, 0);
    s_ready(b, "fake", "speech", 1024, 0);
    cr_assert_eq(s_credit(b, "fake"), 256, "capacity cut to max-worker-credit");
    enum { N = 20 };
    for (int i = 0; i < N; i++) {
        char id[16];
        snprintf(id, sizeof id, "j%d", i);
        cr_assert_eq(s_submit(b, id, "speech", "x", 0)->code, 0);
    }
    int64_t now = 0;
    int done = 0, to_real = 0;
    for (; now <= 60000 && done < N; now += 100) {
        s_worker_cmd(b, "fake", NR_CMD_HEARTBEAT, now);
        s_worker_cmd(b, "real", NR_CMD_HEARTBEAT, now);
        nr_broker_tick(b, now);
        char ids[S_CAP_MAX][NR_PROTO_ID_MAX + 1];
        uint32_t attempts[S_CAP_MAX];
        int n = 0;
        for (int i = 0; i < s_nsent; i++) {
            if (s_sent[i].msg.cmd != NR_CMD_JOB || strcmp(s_sent[i].peer, "real")) continue;
            snprintf(ids[n], sizeof ids[n], "%s", s_sent[i].msg.id);
            attempts[n++] = s_sent[i].msg.attempt;
        }
        s_sent_clear();
        to_real += n;
        for (int i = 0; i < n; i++) s_result(b, "real", ids[i], "speech", attempts[i], "WAV", NULL, NULL, now);
        done = 0;
        for (int i = 0; i < N; i++) {
            char id[16];
            snprintf(id, sizeof id, "j%d", i);
            nr_broker_job_t *j = nr_broker_find_job(b, id);
            cr_assert_not_null(j);
            cr_assert_neq(j->state, NR_JOB_FAILED, "%s failed: %s", id, j->error_message);
            done += j->state == NR_JOB_DONE;
        }
    }
    cr_assert_eq(done, N, "%d of %d done by %ld ms", done, N, (long)now);
    cr_assert_eq(to_real, N, "the real worker ran each job once");
    cr_assert_eq(nr_broker_workers_set_aside(b, "speech"), 1u);
    cr_assert_eq(nr_metrics_value(m, NR_BM_WORKERS_SET_ASIDE, "stage", "speech", NULL), 1.0);
    nr_msg_t *st = s_client(b, NR_CMD_STATS, NULL, NULL, now);
    cr_assert_str_eq(s_kv(st, "set_aside.speech"), "1");
    cr_assert_str_eq(s_kv(st, "workers_set_aside"), "1");
    nr_broker_destroy(&b);
    nr_metrics_destroy(&m);
}

/* The expiry of a job at an unserved stage is recorded in Redis: FAILED,
 * no_worker, and it leaves the pending set. */
Test(store, unserved_expiry_is_recorded_as_failed) {
    nr_broker_t *b = s_new(s_store, s_unserved5s);
    cr_assert_eq(nr_broker_start(b, 0), 0, "%s", nr_store_error(s_store));
    cr_assert_eq(s_submit(b, "lost", "text", "x", 1000)->code, 0);
    for (int64_t now = 1000; now <= 6400; now += 200) nr_broker_tick(b, now);
    char out[4096];
    s_hget("lost", "state", out, sizeof out);
    cr_assert_str_eq(out, "failed");
    s_hget("lost", "error", out, sizeof out);
    cr_assert_str_eq(out, "no_worker");
    s_hget("lost", "error_message", out, sizeof out);
    cr_assert(strstr(out, "no worker serves stage text"), "%s", out);
    const char *zs[] = {"ZSCORE", "t:pending:text", "lost"};
    s_redis_cmd(out, sizeof out, 3, zs);
    cr_assert_str_eq(out, "(nil)", "still pending: %s", out);
    nr_broker_destroy(&b);
}

/* A SUBMIT of input to route speech in a run; returns the REPLY. */
static nr_msg_t *s_submit_run(nr_broker_t *b, const char *id, const char *run, int64_t now) {
    nr_msg_t m;
    nr_proto_msg_init(&m);
    m.cmd = NR_CMD_SUBMIT;
    m.seq = 7;
    snprintf(m.id, sizeof m.id, "%s", id);
    snprintf(m.run, sizeof m.run, "%s", run);
    snprintf(m.route[m.route_len++], sizeof m.route[0], "speech");
    nr_proto_frame_add(&m, id, strlen(id));
    nr_broker_client_message(b, (const uint8_t *)"client", 6, &m, now);
    nr_proto_msg_clear(&m);
    nr_msg_t *rep = s_last("client", NR_CMD_REPLY);
    cr_assert_not_null(rep);
    return rep;
}

static nr_msg_t *s_jobs(nr_broker_t *b, const char *run, uint32_t offset, int64_t now) {
    nr_msg_t m;
    nr_proto_msg_init(&m);
    m.cmd = NR_CMD_JOBS;
    m.seq = 11;
    snprintf(m.run, sizeof m.run, "%s", run);
    m.offset = offset;
    nr_broker_client_message(b, (const uint8_t *)"client", 6, &m, now);
    nr_proto_msg_clear(&m);
    nr_msg_t *rep = s_last("client", NR_CMD_REPLY);
    cr_assert_not_null(rep);
    cr_assert_eq(rep->seq, 11u);
    return rep;
}

Test(store, a_run_lists_its_jobs_page_by_page) {
    nr_broker_t *b = s_new(s_store, NULL);
    cr_assert_eq(nr_broker_start(b, 0), 0, "%s", nr_store_error(s_store));
    char id[16], key[16], want[64];
    for (int i = 0; i < 120; i++) {
        snprintf(id, sizeof id, "j%03d", i);
        nr_msg_t *rep = s_submit_run(b, id, "batch-1", 1000 + i);
        cr_assert_eq(rep->code, 0, "%s", rep->message);
        cr_assert_str_eq(s_kv(rep, "run"), "batch-1");
    }
    /* Three pages: 50, 50, 20, each naming where the next begins. */
    uint32_t offset = 0;
    for (int page = 0; page < 3; page++) {
        nr_msg_t *rep = s_jobs(b, "batch-1", offset, 2000);
        cr_assert_eq(rep->code, 0, "%s", rep->message);
        cr_assert_str_eq(s_kv(rep, "total"), "120");
        uint32_t n = page < 2 ? 50 : 20;
        cr_assert_eq(rep->kv_len, n + (page < 2 ? 2 : 1));
        if (page < 2) {
            snprintf(want, sizeof want, "%u", offset + n);
            cr_assert_str_eq(s_kv(rep, "next"), want);
        } else {
            cr_assert_null(nr_proto_kv_get(rep, "next"), "the last page has no next");
        }
        for (uint32_t k = 0; k < n; k++) {
            snprintf(key, sizeof key, "%u", offset + k);
            snprintf(want, sizeof want, "queued j%03u", offset + k);
            cr_assert_str_eq(s_kv(rep, key), want);
        }
        offset += n;
    }
    cr_assert_eq(s_jobs(b, "batch-1", 120, 2001)->kv_len, 1, "past the end: the total only");

    /* A job finished and gone from memory shows its state from Redis. */
    s_ready(b, "w", "speech", 1, 2002);
    s_result(b, "w", "j000", "speech", 1, "WAV", "voice", "slt", 2003);
    cr_assert_null(nr_broker_find_job(b, "j000"));
    cr_assert_str_eq(s_kv(s_jobs(b, "batch-1", 0, 2004), "0"), "done j000");

    /* Submitted again in another run, an existing job joins that run too
     * and keeps its place (and record) in the first. */
    nr_msg_t *rep = s_submit_run(b, "j000", "batch-2", 2005);
    cr_assert_str_eq(s_kv(rep, "existing"), "1");
    cr_assert_str_eq(s_kv(rep, "run"), "batch-1", "the record names the run that made the job");
    rep = s_submit_run(b, "j005", "batch-2", 2006); /* held in memory: still queued */
    cr_assert_str_eq(s_kv(rep, "existing"), "1");
    rep = s_jobs(b, "batch-2", 0, 2007);
    cr_assert_str_eq(s_kv(rep, "total"), "2");
    cr_assert_str_eq(s_kv(rep, "0"), "done j000");
    cr_assert_str_eq(s_kv(rep, "1"), "queued j005");
    cr_assert_str_eq(s_kv(s_jobs(b, "batch-1", 0, 2008), "total"), "120");

    rep = s_jobs(b, "no-such-run", 0, 2009);
    cr_assert_eq(rep->code, NR_ENOTFOUND);
    nr_broker_destroy(&b);
}

Test(broker, runs_need_redis) {
    nr_broker_t *b = s_new(NULL, NULL);
    nr_msg_t *rep = s_jobs(b, "batch-1", 0, 1000);
    cr_assert_eq(rep->code, NR_EUNSUPPORTED);
    cr_assert(strstr(rep->message, "redis"), "%s", rep->message);
    nr_broker_destroy(&b);
}

static nr_msg_t *s_review(nr_broker_t *b, const char *id, const char *k1, const char *v1, const char *k2,
                          const char *v2, int64_t now) {
    nr_msg_t m;
    nr_proto_msg_init(&m);
    m.cmd = NR_CMD_REVIEW;
    m.seq = 13;
    snprintf(m.id, sizeof m.id, "%s", id);
    if (k1) nr_proto_kv_add(&m, k1, v1);
    if (k2) nr_proto_kv_add(&m, k2, v2);
    nr_broker_client_message(b, (const uint8_t *)"client", 6, &m, now);
    nr_proto_msg_clear(&m);
    nr_msg_t *rep = s_last("client", NR_CMD_REPLY);
    cr_assert_not_null(rep);
    cr_assert_eq(rep->seq, 13u);
    return rep;
}

/* A person's review of a done job lands in its record beside the worker's
 * caption (both kept); FETCH of stage "input" gives the submitted bytes. */
Test(store, review_keeps_both_captions_and_fetch_input_reads_the_submitted_bytes) {
    nr_broker_t *b = s_new(s_store, NULL);
    cr_assert_eq(nr_broker_start(b, 0), 0, "%s", nr_store_error(s_store));
    cr_assert_eq(s_submit_run(b, "rv1", "batch-r", 1000)->code, 0);
    nr_msg_t *rep = s_review(b, "rv1", "approved", "1", NULL, NULL, 1001);
    cr_assert_eq(rep->code, NR_ESTATE, "a queued job cannot be reviewed: %s", rep->message);
    s_ready(b, "w", "speech", 1, 1002);
    s_result(b, "w", "rv1", "speech", 1, "WAV", "caption", "a dgo on grass", 1003);

    rep = s_client(b, NR_CMD_FETCH, "rv1", "input", 1004);
    cr_assert_eq(rep->code, 0, "%s", rep->message);
    cr_assert_eq(rep->frames_len, 1);
    cr_assert_eq(rep->frames[0].size, 3);
    cr_assert_eq(memcmp(rep->frames[0].data, "rv1", 3), 0);

    rep = s_review(b, "rv1", "caption", "a dog on grass", "approved", "1", 1005);
    cr_assert_eq(rep->code, 0, "%s", rep->message);
    cr_assert_str_eq(s_kv(rep, "speech.caption"), "a dgo on grass", "the worker's caption stays");
    cr_assert_str_eq(s_kv(rep, "review.caption"), "a dog on grass");
    cr_assert_str_eq(s_kv(rep, "review.approved"), "1");
    cr_assert_str_neq(s_kv(rep, "review.ms"), "");
    char out[256];
    s_hget("rv1", "review.caption", out, sizeof out);
    cr_assert_str_eq(out, "a dog on grass");
    rep = s_client(b, NR_CMD_STATUS, "rv1", NULL, 1006);
    cr_assert_str_eq(s_kv(rep, "review.approved"), "1", "read back from redis");

    cr_assert_eq(s_review(b, "rv1", "approved", "2", NULL, NULL, 1007)->code, NR_EINVAL);
    cr_assert_eq(s_review(b, "rv1", "state", "done", NULL, NULL, 1008)->code, NR_EINVAL);
    cr_assert_eq(s_review(b, "rv1", "caption", "bad \xff utf-8", NULL, NULL, 1009)->code, NR_EINVAL);
    cr_assert_eq(s_review(b, "rv1", "speech_job", "no spaces", NULL, NULL, 1010)->code, NR_EINVAL);
    cr_assert_eq(s_review(b, "rv1", NULL, NULL, NULL, NULL, 1011)->code, NR_EINVAL);
    cr_assert_eq(s_review(b, "missing", "approved", "1", NULL, NULL, 1012)->code, NR_ENOTFOUND);
    nr_broker_destroy(&b);
}

static void s_ready_voices(nr_broker_t *b, const char *w, const char *voices) {
    nr_msg_t m;
    nr_proto_msg_init(&m);
    m.cmd = NR_CMD_READY;
    snprintf(m.stage, sizeof m.stage, "speech");
    snprintf(m.name, sizeof m.name, "%s", w);
    m.capacity = 1;
    if (voices) cr_assert_eq(nr_proto_kv_add(&m, "voices", voices), 0);
    nr_broker_worker_message(b, (const uint8_t *)w, strlen(w), &m, 0);
    nr_proto_msg_clear(&m);
}

/* STATS reports the union of the voices the live workers of a stage
 * advertised in READY: sorted, each once; a new READY replaces a worker's
 * list and a worker that leaves takes its voices with it. */
Test(broker, stats_lists_the_union_of_live_workers_voices) {
    nr_broker_t *b = s_new(NULL, NULL);
    s_ready(b, "v", "vision", 1, 0);
    s_ready_voices(b, "a", "slt,kal");
    s_ready_voices(b, "k", "af_heart,kal,bf_emma");
    s_ready_voices(b, "n", NULL);
    nr_msg_t *st = s_client(b, NR_CMD_STATS, NULL, NULL, 0);
    cr_assert_str_eq(s_kv(st, "voices.speech"), "af_heart,bf_emma,kal,slt");
    cr_assert_null(nr_proto_kv_get(st, "voices.vision"));
    cr_assert_str_eq(s_kv(st, "workers.speech"), "3");
    s_sent_clear();
    s_ready_voices(b, "a", "awb");
    st = s_client(b, NR_CMD_STATS, NULL, NULL, 0);
    cr_assert_str_eq(s_kv(st, "voices.speech"), "af_heart,awb,bf_emma,kal");
    s_sent_clear();
    s_worker_cmd(b, "k", NR_CMD_DISCONNECT, 0);
    st = s_client(b, NR_CMD_STATS, NULL, NULL, 0);
    cr_assert_str_eq(s_kv(st, "voices.speech"), "awb");
    s_sent_clear();
    s_worker_cmd(b, "a", NR_CMD_DISCONNECT, 0);
    st = s_client(b, NR_CMD_STATS, NULL, NULL, 0);
    cr_assert_null(nr_proto_kv_get(st, "voices.speech"));
    nr_broker_destroy(&b);
}

/* A RESULT with frame 1 (a vision worker's thumbnail), memory only. */
static void s_result_thumb(nr_broker_t *b, const char *w, const char *id, const char *stage, const char *output,
                           const void *thumb, size_t size, int64_t now) {
    nr_msg_t m;
    nr_proto_msg_init(&m);
    m.cmd = NR_CMD_RESULT;
    snprintf(m.id, sizeof m.id, "%s", id);
    snprintf(m.stage, sizeof m.stage, "%s", stage);
    m.attempt = 1;
    nr_proto_frame_add(&m, output, strlen(output));
    nr_proto_frame_add(&m, thumb, size);
    nr_broker_worker_message(b, (const uint8_t *)w, strlen(w), &m, now);
    nr_proto_msg_clear(&m);
}

/* Without Redis the thumbnail stays with the job in memory: FETCH
 * thumbnail returns it, FETCH of a stage still its output, the next stage
 * gets the output alone; a frame 1 that is no JPEG or over 64 KiB is
 * dropped and the job goes on. */
Test(broker, thumbnail_kept_in_memory_and_hostile_ones_dropped) {
    nr_broker_t *b = s_new(NULL, NULL);
    s_ready(b, "v1", "vision", 4, 0);
    s_ready(b, "t1", "text", 4, 0);
    static const uint8_t jpeg[] = {0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 0xFF, 0xD9};
    uint8_t *big = calloc(1, NR_BROKER_THUMB_MAX + 1);
    memcpy(big, jpeg, 4);
    big[NR_BROKER_THUMB_MAX - 1] = 0xFF, big[NR_BROKER_THUMB_MAX] = 0xD9;
    const struct {
        const char *id;
        const void *thumb;
        size_t size;
        int kept;
    } cases[] = {{"good", jpeg, sizeof jpeg, 1}, {"text", "not a jpeg", 10, 0},
                 {"big", big, NR_BROKER_THUMB_MAX + 1, 0}, {"cut", jpeg, sizeof jpeg - 1, 0}};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(s_submit(b, cases[i].id, "vision,text", "image", 1 + i)->code, 0);
        s_result_thumb(b, "v1", cases[i].id, "vision", "STATES", cases[i].thumb, cases[i].size, 1);
        nr_msg_t *tj = s_last("t1", NR_CMD_JOB);
        cr_assert(tj && !strcmp(tj->id, cases[i].id) && tj->frames_len == 1 && tj->frames[0].size == 6,
                  "%s: the next stage gets the output alone", cases[i].id);
        nr_msg_t *f = s_client(b, NR_CMD_FETCH, cases[i].id, "thumbnail", 10 + i);
        if (cases[i].kept) {
            cr_assert_eq(f->code, 0, "%s", f->message);
            cr_assert(f->frames_len == 1 && f->frames[0].size == sizeof jpeg &&
                      !memcmp(f->frames[0].data, jpeg, sizeof jpeg));
        } else {
            cr_assert_eq(f->code, NR_ENOTFOUND, "%s: %d", cases[i].id, f->code);
            cr_assert(strstr(f->message, "no thumbnail"), "%s", f->message);
        }
        f = s_client(b, NR_CMD_FETCH, cases[i].id, "vision", 20 + i);
        cr_assert(f->code == 0 && f->frames_len == 1 && !memcmp(f->frames[0].data, "STATES", 6),
                  "%s: FETCH vision is the output", cases[i].id);
        s_result(b, "t1", cases[i].id, "text", 1, "a cat", "caption", "a cat", 2);
        cr_assert_str_eq(s_kv(s_client(b, NR_CMD_STATUS, cases[i].id, NULL, 30 + i), "state"), "done");
    }
    nr_msg_t *f = s_client(b, NR_CMD_FETCH, "good", "thumbnail", 40);
    cr_assert_eq(f->code, 0, "still there once the job is done: %s", f->message);
    free(big);
    nr_broker_destroy(&b);
}

/* The thumbnail travels with the job's saves like an output: kept in
 * memory (and served) while Redis is down, written with the retention
 * TTL when it is back, then read from Redis. */
Test(store, thumbnail_kept_while_redis_is_down_then_stored_with_the_retention) {
    nr_broker_t *b = s_new(s_store, NULL);
    cr_assert_eq(nr_broker_start(b, 0), 0, "%s", nr_store_error(s_store));
    s_ready(b, "v", "vision", 1, 0);
    cr_assert_eq(s_submit(b, "th", "vision", "image", 1)->code, 0);
    cr_assert_eq(nr_harness_redis_stop(s_redis, 0), 0);
    static const uint8_t jpeg[] = {0xFF, 0xD8, 0xFF, 0xDB, 9, 9, 0xFF, 0xD9};
    s_result_thumb(b, "v", "th", "vision", "STATES", jpeg, sizeof jpeg, 2);
    nr_msg_t *f = s_client(b, NR_CMD_FETCH, "th", "thumbnail", 3);
    cr_assert_eq(f->code, 0, "unsaved thumbnail served from memory: %s", f->message);
    cr_assert(f->frames_len == 1 && f->frames[0].size == sizeof jpeg);
    cr_assert_eq(nr_harness_redis_start(s_redis), 0, "%s", nr_harness_error());
    int64_t t = nr_harness_now_ms() + 40000;
    while (nr_harness_now_ms() < t && (!nr_store_is_up(s_store) || nr_broker_find_job(b, "th"))) {
        nr_broker_tick(b, nr_harness_now_ms() + 100000);
        nr_harness_sleep_ms(50);
    }
    cr_assert_null(nr_broker_find_job(b, "th"), "flushed and evicted");
    char out[64];
    const char *ttl[] = {"TTL", "t:out:thumbnail:th"};
    s_redis_cmd(out, sizeof out, 2, ttl);
    cr_assert(atol(out) > 0, "TTL %s", out);
    f = s_client(b, NR_CMD_FETCH, "th", "thumbnail", 4);
    cr_assert_eq(f->code, 0, "read back from redis: %s", f->message);
    cr_assert(f->frames_len == 1 && f->frames[0].size == sizeof jpeg && !memcmp(f->frames[0].data, jpeg, sizeof jpeg));
    nr_broker_destroy(&b);
}
