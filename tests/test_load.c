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
