/* Hostile and heavy clients against a real redis-server, narrator-broker
 * and worker processes (issue 16, "The broker"): a flood of garbage frames
 * does not flood the log; pipelined FETCHes of a big output neither stall
 * the broker's loop (no worker declared dead, a long job ends done in one
 * attempt) nor grow its memory without bound; a frame over the largest
 * message is dropped by ZeroMQ before it is allocated.
 *
 * Waits have generous limits; what is asserted is outcomes (states,
 * attempts, codes) and bounds (log bytes, resident memory). */
#include "client/client.h"
#include "common/error.h"
#include "proto/proto.h"
#include "tests/harness.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

#define S_WAIT_MS 120000

typedef struct {
    nr_harness_cluster_t cl;
    char *broker_bin, *test_bin;
    nr_client_t *client;
} s_cluster_t;

static s_cluster_t C; /* Criterion runs each test in its own process */

static void s_dump_logs(void) {
    if (!C.cl.dir) return;
    char *log = nr_harness_path(C.cl.dir, "broker.log");
    nr_harness_dump_log(log, 6000);
    free(log);
    for (int i = 0; i < C.cl.n_workers; i++) {
        log = nr_harness_path(C.cl.dir, "worker-%d.log", i);
        nr_harness_dump_log(log, 3000);
        free(log);
    }
}

#define s_require(cond, ...) NR_HARNESS_REQUIRE(s_dump_logs, cond, __VA_ARGS__)

/* Starts redis and a broker with the extra flags (NULL-ended). */
static void s_start(const char *const *extra) {
    memset(&C, 0, sizeof C);
    C.broker_bin = nr_harness_program("narrator-broker");
    if (!C.broker_bin) cr_skip_test("narrator-broker is not built: %s", nr_harness_error());
    C.test_bin = nr_harness_program("narrator-worker-test");
    if (!C.test_bin) cr_skip_test("narrator-worker-test is not built: %s", nr_harness_error());
    cr_assert_eq(nr_harness_cluster_start(&C.cl, "load", NULL), 0, "%s", nr_harness_error());
    static const char *const worker_args[] = {"--heartbeat-ms", "250", "--reconnect-ms", "100",
                                              "--reconnect-max-ms", "1000", NULL};
    C.cl.worker_args = worker_args;
    s_require(nr_harness_cluster_spawn_broker(&C.cl, C.broker_bin, "broker.log", extra) == 0, "%s",
              nr_harness_error());
    C.client = nr_client_new(C.cl.client_ep, 10000);
    cr_assert_not_null(C.client);
    nr_client_set_busy_wait(C.client, 60000);
}

static void s_end(void) {
    nr_client_destroy(&C.client);
    s_require(nr_harness_proc_running(C.cl.broker), "the broker died");
    nr_harness_cluster_stop(&C.cl);
    free(C.broker_bin);
    free(C.test_bin);
}

static off_t s_log_size(void) {
    char *log = nr_harness_path(C.cl.dir, "broker.log");
    struct stat st;
    off_t n = stat(log, &st) ? -1 : st.st_size;
    free(log);
    return n;
}

static char *s_log_text(void) {
    char *log = nr_harness_path(C.cl.dir, "broker.log");
    char *text = nr_harness_read_file(log, NULL);
    free(log);
    return text ? text : calloc(1, 1);
}

/* A DEALER (or ROUTER-facing) socket connected to endpoint. */
static void *s_dealer(void *ctx, const char *endpoint) {
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    cr_assert_eq(zmq_connect(s, endpoint), 0);
    return s;
}

/* ---- item 6: a flood of garbage frames is a few log lines ---- */

/* 10,000 garbage frames on each socket used to write one log line each
 * (about 1 MB of log); now a call site writes at most NR_LOG_LIMIT_LINES
 * lines per interval, then counts the rest in one line. */
Test(load, garbage_flood_is_rate_limited_in_the_log) {
    const char *extra[] = {"--log-level", "info", NULL};
    s_start(extra);
    off_t before = s_log_size();
    void *ctx = zmq_ctx_new();
    void *cs = s_dealer(ctx, C.cl.client_ep), *ws = s_dealer(ctx, C.cl.worker_ep);
    uint8_t junk[] = {0x93, 0x01, 0x02, 0x03}; /* an array, not a map */
    for (int i = 0; i < 10000; i++) {
        cr_assert_eq(zmq_send(cs, junk, sizeof junk, 0), (int)sizeof junk);
        cr_assert_eq(zmq_send(ws, junk, sizeof junk, 0), (int)sizeof junk);
    }
    /* The broker has read them all once it answers STATS. */
    long workers = -1;
    for (int t = 0; t < 200 && workers < 0; t++) workers = nr_harness_stat(C.client, "workers");
    s_require(workers >= 0, "no STATS answer after the flood");
    nr_harness_sleep_ms(5200); /* past the interval: the next line brings the count */
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(zmq_send(cs, junk, sizeof junk, 0), (int)sizeof junk);
        cr_assert_eq(zmq_send(ws, junk, sizeof junk, 0), (int)sizeof junk);
    }
    s_require(nr_harness_stat(C.client, "workers") >= 0, "no STATS answer");
    nr_harness_sleep_ms(200);
    off_t grew = s_log_size() - before;
    char *text = s_log_text();
    s_require(grew < 20000, "the broker log grew by %lld bytes for 20,000 garbage frames",
              (long long)grew);
    s_require(strstr(text, "similar messages in the last") != NULL,
              "no 'suppressed K similar messages' line");
    s_require(strstr(text, "malformed client message") && strstr(text, "malformed worker message"),
              "the first garbage frames are still logged");
    free(text);
    zmq_close(cs);
    zmq_close(ws);
    zmq_ctx_term(ctx);
    s_end();
}

/* ---- helpers for the FETCH floods ---- */

/* Submits a job to the test stage; its id in id_out. */
static void s_submit(const char *id, const char *behave, const void *input, size_t size,
                     char *id_out) {
    nr_kv_t kv[1] = {{(char *)"behave", (char *)behave}};
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = nr_client_submit(C.client, id, "test", kv, behave ? 1 : 0, input, size, &reply);
    s_require(rc == 0, "submit %s: %s (%s)", id, nr_strerror(rc), nr_client_error(C.client));
    snprintf(id_out, NR_PROTO_ID_MAX + 1, "%s", reply.id);
    nr_proto_msg_clear(&reply);
}

/* Waits until the job is final; its record in *record. */
static void s_wait_final(const char *id, nr_msg_t *record) {
    long long end = nr_harness_now_ms() + S_WAIT_MS;
    while (nr_harness_now_ms() < end) {
        int rc = nr_client_status(C.client, id, record);
        if (rc == 0 && nr_harness_job_final(nr_harness_kv(record, "state"))) return;
        nr_harness_sleep_ms(100);
    }
    s_require(0, "job %s never finished", id);
}

/* Sends n FETCHes of the job's output on s, back to back, reading nothing. */
static void s_send_fetches(void *s, const char *id, int n) {
    for (int i = 0; i < n; i++) {
        nr_msg_t m;
        nr_proto_msg_init(&m);
        m.cmd = NR_CMD_FETCH;
        m.seq = (uint64_t)i + 1;
        snprintf(m.id, sizeof m.id, "%s", id);
        snprintf(m.stage, sizeof m.stage, "test");
        char err[256];
        cr_assert_eq(nr_proto_send(s, NULL, 0, &m, err, sizeof err), 0, "%s", err);
        nr_proto_msg_clear(&m);
    }
}

/* Reads up to n REPLYs from s (each within timeout_ms); counts those with
 * the output (ok) and those answered busy. */
static void s_read_replies(void *s, int n, int timeout_ms, size_t want_size, int *ok, int *busy) {
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    *ok = *busy = 0;
    for (int i = 0; i < n; i++) {
        nr_msg_t r;
        nr_proto_msg_init(&r);
        char err[256];
        int rc = nr_proto_recv(s, NULL, NULL, &r, err, sizeof err);
        if (rc) {
            nr_proto_msg_clear(&r);
            break;
        }
        if (r.code == 0 && r.frames_len == 1 && r.frames[0].size == want_size) (*ok)++;
        if (r.code == NR_EBUSY) (*busy)++;
        nr_proto_msg_clear(&r);
    }
}

/* Resident memory of a process in kB (VmRSS), or -1. */
static long s_rss_kb(int pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

static uint8_t *s_big_input(size_t size) {
    uint8_t *big = malloc(size);
    cr_assert_not_null(big);
    for (size_t i = 0; i < size; i++) big[i] = (uint8_t)(i * 2654435761u >> 13);
    return big;
}

/* ---- item 1: FETCHes do not starve worker heartbeats ---- */

/* 64 pipelined FETCHes of a 32 MiB output while a worker runs a long job
 * and heartbeats every 250 ms (dead after 750 ms of silence). The blob
 * reads used to run synchronously in the broker's loop: it stalled for
 * seconds, declared the worker lost and re-leased (then exhausted) the
 * healthy job. Now the reads go on in the background: nobody is declared
 * dead and the job ends done in its first attempt. */
Test(load, fetch_flood_does_not_starve_heartbeats) {
    const char *extra[] = {"--heartbeat-ms", "250", "--heartbeat-liveness", "3",
                           "--max-attempts", "1", "--log-level", "info", NULL};
    s_start(extra);
    nr_harness_cluster_spawn_worker(&C.cl, C.test_bin, "busy", NULL);
    nr_harness_cluster_spawn_worker(&C.cl, C.test_bin, "echo", NULL);
    s_require(nr_harness_wait_workers(C.client, "test", 2, S_WAIT_MS) >= 2, "workers not ready");
    const size_t big_size = 32u << 20;
    uint8_t *big = s_big_input(big_size);
    char big_id[NR_PROTO_ID_MAX + 1], long_id[NR_PROTO_ID_MAX + 1];
    s_submit("big", NULL, big, big_size, big_id);
    free(big);
    nr_msg_t record;
    nr_proto_msg_init(&record);
    s_wait_final(big_id, &record);
    s_require(!strcmp(nr_harness_kv(&record, "state"), "done"), "big job: %s",
              nr_harness_kv(&record, "error_message"));
    s_submit("long", "sleep:6000", "x", 1, long_id);

    void *ctx = zmq_ctx_new();
    long long end = nr_harness_now_ms() + 5000;
    int ok_total = 0, rounds = 0;
    while (nr_harness_now_ms() < end) { /* floods for as long as the job runs */
        void *s = s_dealer(ctx, C.cl.client_ep);
        s_send_fetches(s, big_id, 64);
        int ok = 0, busy = 0;
        s_read_replies(s, 64, 20000, big_size, &ok, &busy);
        ok_total += ok;
        rounds++;
        zmq_close(s);
    }
    zmq_ctx_term(ctx);
    s_require(ok_total > 0, "no FETCH answered with the output in %d rounds", rounds);
    s_wait_final(long_id, &record);
    char *text = s_log_text();
    s_require(!strstr(text, "no heartbeat for"), "a worker was declared dead during the flood");
    free(text);
    s_require(!strcmp(nr_harness_kv(&record, "state"), "done") &&
                  nr_harness_kv_long(&record, "attempts") == 1,
              "long job: %s, attempts %s, %s", nr_harness_kv(&record, "state"),
              nr_harness_kv(&record, "attempts"), nr_harness_kv(&record, "error_message"));
    nr_proto_msg_clear(&record);
    s_end();
}

/* ---- item 2: unread replies do not grow the broker without bound ---- */

/* A client sends 100 FETCHes of an 8 MiB output and reads nothing. The
 * broker used to queue all 100 replies (800 MB, freed only when the client
 * went away); now it queues up to client-reply-bytes (16 MiB here) for
 * that client and answers the rest busy. Another client is served
 * meanwhile. A 300 MiB frame is refused by ZeroMQ (maximum message size)
 * before it is allocated: that peer is disconnected, the broker serves on. */
Test(load, unread_replies_are_bounded_and_huge_frames_dropped) {
    const char *extra[] = {"--client-reply-bytes", "16777216", "--log-level", "info", NULL};
    s_start(extra);
    nr_harness_cluster_spawn_worker(&C.cl, C.test_bin, "echo", NULL);
    s_require(nr_harness_wait_workers(C.client, "test", 1, S_WAIT_MS) >= 1, "worker not ready");
    const size_t big_size = 8u << 20;
    uint8_t *big = s_big_input(big_size);
    char big_id[NR_PROTO_ID_MAX + 1];
    s_submit("wav", NULL, big, big_size, big_id);
    free(big);
    nr_msg_t record;
    nr_proto_msg_init(&record);
    s_wait_final(big_id, &record);
    s_require(!strcmp(nr_harness_kv(&record, "state"), "done"), "job: %s",
              nr_harness_kv(&record, "error_message"));
    int pid = nr_harness_proc_pid(C.cl.broker);
    long before = s_rss_kb(pid);

    void *ctx = zmq_ctx_new();
    /* It reads nothing, and its ZeroMQ takes one message off the
     * connection at most: the rest stays queued in the broker. */
    void *lazy = zmq_socket(ctx, ZMQ_DEALER);
    int one = 1, linger = 0, rcvbuf = 65536;
    zmq_setsockopt(lazy, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(lazy, ZMQ_RCVHWM, &one, sizeof one);
    zmq_setsockopt(lazy, ZMQ_RCVBUF, &rcvbuf, sizeof rcvbuf);
    cr_assert_eq(zmq_connect(lazy, C.cl.client_ep), 0);
    s_send_fetches(lazy, big_id, 100);
    /* Served meanwhile: STATS from another client. */
    long peak = before;
    for (int i = 0; i < 30; i++) {
        s_require(nr_harness_stat(C.client, "workers") >= 0, "the broker stopped answering");
        long rss = s_rss_kb(pid);
        if (rss > peak) peak = rss;
        nr_harness_sleep_ms(100);
    }
    cr_log_info("broker RSS %ld kB before, peak %ld kB with 100 unread 8 MiB FETCHes", before, peak);
    s_require(peak - before < 150 * 1024, "broker grew from %ld to %ld kB for 100 unread FETCHes",
              before, peak);
    int ok = 0, busy = 0;
    s_read_replies(lazy, 100, 10000, big_size, &ok, &busy);
    s_require(ok >= 1 && busy >= 50, "%d outputs and %d busy answers to 100 FETCHes", ok, busy);
    zmq_close(lazy);

    /* A 300 MiB frame: dropped by ZeroMQ, others served. */
    void *huge = s_dealer(ctx, C.cl.client_ep);
    size_t huge_size = 300u << 20;
    zmq_msg_t m;
    cr_assert_eq(zmq_msg_init_size(&m, huge_size), 0);
    memset(zmq_msg_data(&m), 0xc1, huge_size);
    cr_assert_geq(zmq_msg_send(&m, huge, 0), 0);
    long huge_peak = s_rss_kb(pid);
    for (int i = 0; i < 20; i++) {
        long rss = s_rss_kb(pid);
        if (rss > huge_peak) huge_peak = rss;
        nr_harness_sleep_ms(100);
    }
    s_require(nr_harness_stat(C.client, "workers") >= 0, "the broker stopped answering");
    cr_log_info("broker RSS %ld kB after a 300 MiB frame", huge_peak);
    s_require(huge_peak - before < 150 * 1024, "a 300 MiB frame took the broker from %ld to %ld kB",
              before, huge_peak);
    zmq_close(huge);
    zmq_ctx_term(ctx);
    nr_proto_msg_clear(&record);
    s_end();
}
