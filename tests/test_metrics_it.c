/* Integration check of the broker's /metrics: a real redis-server, a real
 * narrator-broker with --metrics-listen and narrator-worker-test workers.
 * Jobs that succeed, fail for good, and fail until their attempts run out
 * are run to the end; then /metrics is read over a plain socket, parsed
 * line by line (every sample must belong to a family with a # TYPE), and
 * its counts are compared with what was run. Then Redis is killed and the
 * Redis gauges and error counter must show it. */
#include "client/client.h"
#include "common/error.h"
#include "proto/proto.h"
#include "tests/harness.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <zmq.h>

#define S_WAIT_MS 120000

static struct {
    nr_harness_cluster_t cl; /* redis, broker, two workers, folder */
    int metrics_port;
    nr_client_t *client;
} C;

static void s_dump(void) {
    static const char *const names[] = {"broker.log", "worker-0.log", "worker-1.log", NULL};
    nr_harness_dump_logs(C.cl.dir, names, 4000);
}

#define s_require(cond, ...) NR_HARNESS_REQUIRE(s_dump, cond, __VA_ARGS__)

static void s_setup(void) {
    memset(&C, 0, sizeof C);
    char *broker = nr_harness_program("narrator-broker");
    if (!broker) cr_skip_test("narrator-broker is not built: %s", nr_harness_error());
    char *worker = nr_harness_program("narrator-worker-test");
    if (!worker) {
        free(broker);
        cr_skip_test("narrator-worker-test is not built: %s", nr_harness_error());
    }
    cr_assert_eq(nr_harness_cluster_start(&C.cl, "metrics", NULL), 0, "%s", nr_harness_error());
    C.metrics_port = nr_harness_free_port();
    cr_assert(C.metrics_port > 0);
    char metrics[64];
    snprintf(metrics, sizeof metrics, "127.0.0.1:%d", C.metrics_port);
    const char *bargs[] = {"--max-attempts", "3", "--retry-backoff-ms", "20", "--heartbeat-ms", "250",
                           "--metrics-listen", metrics, "--log-level", "debug", NULL};
    s_require(nr_harness_cluster_spawn_broker(&C.cl, broker, "broker.log", bargs) == 0, "%s",
              nr_harness_error());
    s_require(nr_harness_wait_port(C.metrics_port, 20000) == 0, "no metrics listener");
    static const char *const wargs[] = {"--heartbeat-ms", "250", "--stage", "test", NULL};
    C.cl.worker_args = wargs;
    for (int i = 0; i < 2; i++) {
        char name[16];
        snprintf(name, sizeof name, "mtest%d", i);
        s_require(nr_harness_cluster_spawn_worker(&C.cl, worker, name, NULL) >= 0, "%s",
                  nr_harness_error());
    }
    free(broker);
    free(worker);
    C.client = nr_client_new(C.cl.client_ep, 5000);
    cr_assert_not_null(C.client);
}

static void s_teardown(void) {
    nr_client_destroy(&C.client);
    nr_harness_cluster_stop(&C.cl);
    memset(&C, 0, sizeof C);
}

/* ---- /metrics over a plain socket ---- */

/* GET /metrics; returns the body (static buffer) after checking the status
 * line, the content type and the length. */
static char *s_scrape(void) {
    static char buf[1 << 20];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)C.metrics_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s_require(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "cannot connect to /metrics");
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const char req[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n";
    cr_assert_eq(send(fd, req, sizeof req - 1, 0), (ssize_t)(sizeof req - 1));
    size_t got = 0;
    for (;;) {
        ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    s_require(!strncmp(buf, "HTTP/1.1 200 OK\r\n", 17), "scrape answer: %.200s", buf);
    s_require(strstr(buf, "Content-Type: text/plain; version=0.0.4") != NULL, "content type");
    char *body = strstr(buf, "\r\n\r\n");
    s_require(body != NULL, "no header end");
    body += 4;
    const char *cl = strstr(buf, "Content-Length: ");
    s_require(cl && strtoul(cl + 16, NULL, 10) == strlen(body), "Content-Length matches the body");
    return body;
}

/* A parsed exposition: samples "name{labels}" -> value, and the families. */
typedef struct {
    char key[256];
    double value;
} s_sample_t;

static s_sample_t s_samples[1024];
static size_t s_nsamples;
static char s_types[64][128];
static size_t s_ntypes;

/* Parses the text; every sample must come after its family's # TYPE. */
static void s_parse(char *text) {
    s_nsamples = s_ntypes = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "# HELP ", 7)) continue;
        if (!strncmp(line, "# TYPE ", 7)) {
            char name[128], type[32];
            s_require(sscanf(line, "# TYPE %127s %31s", name, type) == 2, "bad TYPE: %s", line);
            s_require(!strcmp(type, "counter") || !strcmp(type, "gauge") ||
                          !strcmp(type, "histogram"), "type %s", type);
            snprintf(s_types[s_ntypes++], sizeof s_types[0], "%s", name);
            continue;
        }
        s_require(line[0] != '#', "unexpected comment: %s", line);
        char *space = strrchr(line, ' ');
        s_require(space != NULL, "sample without value: %s", line);
        *space = '\0';
        char *end;
        double v = strtod(space + 1, &end);
        s_require(*end == '\0', "bad value in: %s", line);
        /* Its family: the name up to '{', less a histogram suffix. */
        char fam[256];
        snprintf(fam, sizeof fam, "%s", line);
        char *brace = strchr(fam, '{');
        if (brace) {
            *brace = '\0';
            s_require(line[strlen(line) - 1] == '}', "labels not closed: %s", line);
        }
        int known = s_ntypes > 0 && !strcmp(s_types[s_ntypes - 1], fam);
        const char *suffixes[] = {"_bucket", "_sum", "_count"};
        for (int i = 0; i < 3 && !known && s_ntypes; i++) {
            size_t fl = strlen(fam), sl = strlen(suffixes[i]);
            if (fl > sl && !strcmp(fam + fl - sl, suffixes[i]) &&
                !strncmp(s_types[s_ntypes - 1], fam, fl - sl) && s_types[s_ntypes - 1][fl - sl] == '\0')
                known = 1;
        }
        s_require(known, "sample %s is not under its family's # TYPE", line);
        s_require(s_nsamples < 1024, "too many samples");
        snprintf(s_samples[s_nsamples].key, sizeof s_samples[0].key, "%s", line);
        s_samples[s_nsamples++].value = v;
    }
}

/* Value of a sample, or NaN when absent. */
static double s_get(const char *key) {
    for (size_t i = 0; i < s_nsamples; i++)
        if (!strcmp(s_samples[i].key, key)) return s_samples[i].value;
    return NAN;
}

static void s_expect(const char *key, double want) {
    double v = s_get(key);
    s_require(v == want, "%s = %g, expected %g", key, v, want);
}

/* ---- jobs ---- */

static void s_submit(const char *id, const char *behave) {
    nr_kv_t kv = {.key = (char *)"behave", .value = (char *)behave};
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = nr_client_submit(C.client, id, "test", &kv, 1, id, strlen(id), &reply);
    nr_proto_msg_clear(&reply);
    s_require(rc == 0, "submit %s: %s (%s)", id, nr_strerror(rc), nr_client_error(C.client));
}

static void s_wait_final(const char *id, const char *state) {
    long long end = nr_harness_now_ms() + S_WAIT_MS;
    char now[32] = "";
    while (nr_harness_now_ms() < end) {
        nr_msg_t r;
        nr_proto_msg_init(&r);
        if (nr_client_status(C.client, id, &r) == 0) snprintf(now, sizeof now, "%s", nr_harness_kv(&r, "state"));
        nr_proto_msg_clear(&r);
        if (nr_harness_job_final(now)) break;
        nr_harness_sleep_ms(20);
    }
    s_require(!strcmp(now, state), "job %s is '%s', expected %s", id, now, state);
}

/* One malformed message to the clients socket (answered with an error). */
static void s_send_garbage(void) {
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0, timeout = 10000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    cr_assert_eq(zmq_connect(s, C.cl.client_ep), 0);
    cr_assert_eq(zmq_send(s, "\xc1\xc1garbage", 9, 0), 9);
    char buf[512];
    s_require(zmq_recv(s, buf, sizeof buf, 0) >= 0, "no error REPLY to garbage");
    zmq_close(s);
    zmq_ctx_term(ctx);
}

Test(metrics_it, counts_match_what_ran, .init = s_setup, .fini = s_teardown, .timeout = 300) {
    long workers = nr_harness_wait_workers(C.client, "test", 2, S_WAIT_MS);
    s_require(workers >= 2, "%ld test workers, wanted 2", workers);
    /* Before any job: the families are there, the stage is known. */
    s_parse(s_scrape());
    s_expect("narrator_jobs_submitted_total", 0);
    s_expect("narrator_workers{stage=\"test\"}", 2);
    s_expect("narrator_redis_up", 1);

    const int n_ok = 6, n_final = 2, n_retry = 1;
    char id[64];
    for (int i = 0; i < n_ok; i++) {
        snprintf(id, sizeof id, "ok-%d", i);
        s_submit(id, i % 2 ? "sleep:30" : "echo");
    }
    for (int i = 0; i < n_final; i++) {
        snprintf(id, sizeof id, "final-%d", i);
        s_submit(id, "fail-final");
    }
    s_submit("retry-0", "fail");
    /* Resubmitting a job that exists is not a new submission. */
    s_submit("ok-0", "echo");
    for (int i = 0; i < n_ok; i++) {
        snprintf(id, sizeof id, "ok-%d", i);
        s_wait_final(id, "done");
    }
    for (int i = 0; i < n_final; i++) {
        snprintf(id, sizeof id, "final-%d", i);
        s_wait_final(id, "failed");
    }
    s_wait_final("retry-0", "failed");
    s_send_garbage();

    s_parse(s_scrape());
    s_expect("narrator_jobs_submitted_total", n_ok + n_final + n_retry);
    s_expect("narrator_jobs{state=\"done\"}", n_ok);
    s_expect("narrator_jobs{state=\"failed\"}", n_final + n_retry);
    s_expect("narrator_jobs{state=\"cancelled\"}", 0);
    s_expect("narrator_jobs{state=\"queued\"}", 0);
    s_expect("narrator_jobs{state=\"running\"}", 0);
    s_expect("narrator_queue_depth{stage=\"test\"}", 0);
    s_expect("narrator_workers{stage=\"test\"}", 2);
    s_expect("narrator_failures_total{stage=\"test\",code=\"bad_option\"}", n_final);
    s_expect("narrator_failures_total{stage=\"test\",code=\"attempts_exhausted\"}", n_retry);
    /* max-attempts 3: two requeues, the third failure ends it. */
    s_expect("narrator_retries_total{stage=\"test\"}", 2 * n_retry);
    /* Every attempt was dispatched once; only successful ones have a duration. */
    double dispatched = n_ok + n_final + 3 * n_retry;
    s_expect("narrator_queue_wait_seconds_count{stage=\"test\"}", dispatched);
    s_expect("narrator_queue_wait_seconds_bucket{stage=\"test\",le=\"+Inf\"}", dispatched);
    s_expect("narrator_stage_duration_seconds_count{stage=\"test\"}", n_ok);
    s_expect("narrator_stage_duration_seconds_bucket{stage=\"test\",le=\"+Inf\"}", n_ok);
    /* Three jobs slept 30 ms: the duration sum is at least that. */
    s_require(s_get("narrator_stage_duration_seconds_sum{stage=\"test\"}") >= 0.09,
              "stage duration sum %g", s_get("narrator_stage_duration_seconds_sum{stage=\"test\"}"));
    /* Buckets are cumulative: never decreasing. */
    double last = 0;
    int buckets = 0;
    for (size_t i = 0; i < s_nsamples; i++) {
        if (strncmp(s_samples[i].key, "narrator_stage_duration_seconds_bucket{stage=\"test\"", 51))
            continue;
        s_require(s_samples[i].value >= last, "bucket %s decreases", s_samples[i].key);
        last = s_samples[i].value;
        buckets++;
    }
    s_require(buckets >= 2, "stage duration buckets found: %d", buckets);
    s_expect("narrator_messages_rejected_total{socket=\"clients\"}", 1);
    s_expect("narrator_messages_rejected_total{socket=\"workers\"}", 0);
    s_expect("narrator_redis_errors_total", 0);

    /* The STATS reply tells the same story. */
    nr_msg_t r;
    nr_proto_msg_init(&r);
    cr_assert_eq(nr_client_stats(C.client, &r), 0);
    s_expect("narrator_jobs{state=\"done\"}", strtod(nr_proto_kv_get(&r, "jobs.done"), NULL));
    nr_proto_msg_clear(&r);

    /* Redis dies: the broker notices (a PING when idle at the latest) and
     * the metrics say so. */
    cr_assert_eq(nr_harness_redis_stop(C.cl.redis, 1), 0);
    long long end = nr_harness_now_ms() + S_WAIT_MS;
    double up = 1;
    while (nr_harness_now_ms() < end) {
        s_parse(s_scrape());
        up = s_get("narrator_redis_up");
        if (up == 0) break;
        nr_harness_sleep_ms(200);
    }
    s_require(up == 0, "narrator_redis_up stays %g after redis died", up);
    s_require(s_get("narrator_redis_errors_total") >= 1, "redis errors %g",
              s_get("narrator_redis_errors_total"));
    /* Final counts fall back to the broker's own since start. */
    s_expect("narrator_jobs{state=\"done\"}", n_ok);
}
