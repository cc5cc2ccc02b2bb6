/* Integration tests: a real redis-server, a real narrator-broker and real
 * worker processes per test, on free loopback ports, driven through the
 * nr_client library (and the real `narrate` binary where the CLI is what
 * is tested). Faults are real too: SIGKILL of workers and of the broker,
 * SIGTERM, garbage on both broker sockets.
 *
 * Every assertion is about outcomes (states, error codes, attempt counts,
 * output bytes); waits have generous limits but nothing asserts a time.
 * On a failed check the tails of every process's log are printed. */
#include "client/client.h"
#include "common/error.h"
#include "proto/proto.h"
#include "tests/harness.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define S_MAX_PROCS 16
#define S_WAIT_MS 120000 /* the most any one wait may take before the test fails */
#define S_MAX_ATTEMPTS "3"

typedef struct {
    nr_harness_cluster_t cl; /* redis, broker, workers, folder */
    int broker_starts;
    char *broker_bin, *test_bin, *speech_bin, *narrate_bin;
    nr_client_t *client;
} s_cluster_t;

static s_cluster_t C; /* Criterion runs each test in its own process */

/* ---- diagnostics ---- */

static void s_dump_logs(void) {
    if (C.cl.redis) {
        char *log = nr_harness_path(nr_harness_redis_dir(C.cl.redis), "redis.log");
        nr_harness_dump_log(log, 2000);
        free(log);
    }
    if (!C.cl.dir) return;
    for (int i = 0; i < C.broker_starts; i++) {
        char *log = nr_harness_path(C.cl.dir, "broker-%d.log", i);
        nr_harness_dump_log(log, 6000);
        free(log);
    }
    for (int i = 0; i < C.cl.n_workers; i++) {
        char *log = nr_harness_path(C.cl.dir, "worker-%d.log", i);
        nr_harness_dump_log(log, 3000);
        free(log);
    }
}

/* cr_assert that prints every log first when it fails. */
#define s_require(cond, ...) NR_HARNESS_REQUIRE(s_dump_logs, cond, __VA_ARGS__)

/* ---- the cluster ---- */

static void s_broker_start(void) {
    char log_name[32];
    snprintf(log_name, sizeof log_name, "broker-%d.log", C.broker_starts++);
    const char *extra[] = {"--max-attempts", S_MAX_ATTEMPTS, "--retry-backoff-ms", "50",
                           "--heartbeat-ms", "250", "--log-level", "debug", NULL};
    s_require(nr_harness_cluster_spawn_broker(&C.cl, C.broker_bin, log_name, extra) == 0, "%s",
              nr_harness_error());
}

/* Stops the broker with sig (SIGKILL, SIGTERM) and returns its wait status. */
static int s_broker_stop(int sig) {
    int status = 0;
    cr_assert_eq(nr_harness_proc_stop(C.cl.broker, sig, 30000, &status), 0);
    nr_harness_proc_destroy(&C.cl.broker);
    return status;
}

static void s_setup(void) {
    memset(&C, 0, sizeof C);
    C.broker_bin = nr_harness_program("narrator-broker");
    if (!C.broker_bin) cr_skip_test("narrator-broker is not built: %s", nr_harness_error());
    C.test_bin = nr_harness_program("narrator-worker-test");
    C.speech_bin = nr_harness_program("narrator-worker-speech");
    C.narrate_bin = nr_harness_program("narrate");
    cr_assert_eq(nr_harness_cluster_start(&C.cl, "it", NULL), 0, "%s", nr_harness_error());
    static const char *const worker_args[] = {"--heartbeat-ms", "250", "--reconnect-ms", "100",
                                              "--reconnect-max-ms", "1000", "--log-level", "debug",
                                              NULL};
    C.cl.worker_args = worker_args;
    s_broker_start();
    C.client = nr_client_new(C.cl.client_ep, 3000);
    cr_assert_not_null(C.client);
    nr_client_set_busy_wait(C.client, 60000);
}

/* The name of a log that reports a sanitizer error (ASan, UBSan, LSan in a
 * -DNR_SANITIZE=ON build), or NULL. Returns a malloc'd path. */
static char *s_sanitizer_report(void) {
    static const char *marks[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"};
    char *found = NULL;
    for (int i = 0; i < C.broker_starts + C.cl.n_workers && !found; i++) {
        char *log = i < C.broker_starts ? nr_harness_path(C.cl.dir, "broker-%d.log", i)
                                        : nr_harness_path(C.cl.dir, "worker-%d.log", i - C.broker_starts);
        char *text = log ? nr_harness_read_file(log, NULL) : NULL;
        for (size_t m = 0; text && m < sizeof marks / sizeof *marks && !found; m++) {
            if (strstr(text, marks[m])) found = log;
        }
        free(text);
        if (!found) free(log);
    }
    return found;
}

/* The end of every test: stops the workers and the broker cleanly
 * (SIGTERM), then checks that the broker exited 0 and that no process
 * reported a sanitizer error (in a -DNR_SANITIZE=ON build). Assertions in
 * a Criterion .fini do not fail the test, so this runs in the test body. */
static void s_end(void) {
    for (int i = 0; i < C.cl.n_workers; i++) {
        if (C.cl.workers[i]) nr_harness_proc_stop(C.cl.workers[i], SIGTERM, 10000, NULL);
    }
    if (C.cl.broker) {
        int status = 0;
        nr_harness_proc_stop(C.cl.broker, SIGTERM, 20000, &status);
        nr_harness_proc_destroy(&C.cl.broker);
        s_require(nr_harness_exit_code(status) == 0,
                  "the broker's clean stop exited with status %d (signal %d)",
                  nr_harness_exit_code(status), nr_harness_exit_signal(status));
    }
    char *report = s_sanitizer_report();
    if (report) {
        nr_harness_dump_log(report, 12000);
        cr_assert_fail("a sanitizer reported an error in %s", report);
    }
}

static void s_teardown(void) {
    nr_client_destroy(&C.client);
    nr_harness_cluster_stop(&C.cl);
    free(C.broker_bin);
    free(C.test_bin);
    free(C.speech_bin);
    free(C.narrate_bin);
    memset(&C, 0, sizeof C);
}

/* Skips the rest of a test whose program is not built. Criterion runs no
 * .fini after a skip, so this cleans up first. */
#define s_skip(...)                                                                                \
    do {                                                                                           \
        s_teardown();                                                                              \
        cr_skip_test(__VA_ARGS__);                                                                 \
    } while (0)

/* Starts a worker program; returns its index in C.cl.workers. */
static int s_worker_start(const char *bin, const char *name, const char *const *extra) {
    cr_assert_lt(C.cl.n_workers, S_MAX_PROCS);
    int index = nr_harness_cluster_spawn_worker(&C.cl, bin, name, extra);
    s_require(index >= 0, "%s", nr_harness_error());
    return index;
}

static int s_test_worker(const char *name) {
    if (!C.test_bin) s_skip("narrator-worker-test is not built");
    return s_worker_start(C.test_bin, name, NULL);
}

static int s_speech_worker(const char *name) {
    if (!C.speech_bin) s_skip("narrator-worker-speech is not built");
    return s_worker_start(C.speech_bin, name, NULL);
}

/* A vision or text worker on checkpoint folder `model`, one thread. */
static int s_model_worker_on(const char *stage, const char *name, const char *model) {
    char prog[64];
    snprintf(prog, sizeof prog, "narrator-worker-%s", stage);
    char *bin = nr_harness_program(prog);
    if (!bin) s_skip("%s is not built", prog);
    const char *extra[] = {"--model", model, "--threads", "1", NULL};
    int index = s_worker_start(bin, name, extra);
    free(bin);
    return index;
}

/* A vision or text worker on the tiny fixture checkpoint, one thread. */
static int s_model_worker(const char *stage, const char *name) {
    char *model = nr_harness_source_path("tests/fixtures/vit-gpt2-tiny");
    cr_assert_not_null(model, "%s", nr_harness_error());
    int index = s_model_worker_on(stage, name, model);
    free(model);
    return index;
}

/* Waits until STATS reports at least n live workers for stage. */
static void s_wait_workers(const char *stage, long n) {
    long have = nr_harness_wait_workers(C.client, stage, n, S_WAIT_MS);
    s_require(have >= n, "stage %s has %ld live workers, wanted %ld", stage, have, n);
}

/* Submits one job (id may be NULL); `options` is "k1", "v1", "k2", "v2", ..., NULL.
 * Returns the job id in id_out (NR_PROTO_ID_MAX + 1 bytes). */
static void s_submit(const char *id, const char *route, const char *const *options,
                     const void *input, size_t size, char *id_out) {
    nr_kv_t kv[16];
    size_t n = 0;
    for (size_t i = 0; options && options[i] && options[i + 1] && n < 16; i += 2, n++) {
        kv[n].key = (char *)options[i];
        kv[n].value = (char *)options[i + 1];
    }
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = NR_ETIMEDOUT;
    long long end = nr_harness_now_ms() + S_WAIT_MS;
    /* A broker restarting under us is answered by retrying; SUBMIT with an
     * id is idempotent, so a lost reply does no harm. */
    while (nr_harness_now_ms() < end) {
        rc = nr_client_submit(C.client, id, route, kv, n, input, size, &reply);
        if (rc != NR_ECONNECT && rc != NR_ETIMEDOUT) break;
        nr_harness_sleep_ms(100);
    }
    s_require(rc == 0, "submit %s: %s (%s)", id ? id : "(new)", nr_strerror(rc),
              nr_client_error(C.client));
    snprintf(id_out, NR_PROTO_ID_MAX + 1, "%s", nr_harness_kv(&reply, "id"));
    nr_proto_msg_clear(&reply);
    s_require(id_out[0] != '\0', "the SUBMIT reply carries no id");
}

/* STATUS, retrying through broker and Redis restarts. Returns the broker's code. */
static int s_status(const char *id, nr_msg_t *record) {
    int rc = NR_ETIMEDOUT;
    long long end = nr_harness_now_ms() + S_WAIT_MS;
    while (nr_harness_now_ms() < end) {
        rc = nr_client_status(C.client, id, record);
        /* Redis down is "retry later" too: a settled job is read from it. */
        if (rc != NR_ECONNECT && rc != NR_ETIMEDOUT && !nr_client_retryable(rc)) return rc;
        nr_harness_sleep_ms(100);
    }
    return rc;
}

/* Waits until the job is in `state` (or, with state NULL, any final one);
 * leaves the record in *record. */
static void s_wait_state(const char *id, const char *state, nr_msg_t *record) {
    long long end = nr_harness_now_ms() + S_WAIT_MS;
    const char *now = "";
    while (nr_harness_now_ms() < end) {
        int rc = s_status(id, record);
        s_require(rc == 0, "status %s: %s (%s)", id, nr_strerror(rc), nr_client_error(C.client));
        now = nr_harness_kv(record, "state");
        if (state ? !strcmp(now, state) : nr_harness_job_final(now)) return;
        if (state && nr_harness_job_final(now)) break;
        nr_harness_sleep_ms(50);
    }
    s_require(0, "job %s is %s (error %s: %s), wanted %s", id, now, nr_harness_kv(record, "error"),
              nr_harness_kv(record, "error_message"), state ? state : "a final state");
}

/* ---- WAV ---- */

static uint32_t s_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint16_t s_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Checks a 16-bit PCM mono WAV with real sound; returns NULL or what is wrong. */
static const char *s_check_wav(const uint8_t *wav, size_t size, char *why, size_t whylen) {
    if (size < 44 || memcmp(wav, "RIFF", 4) || memcmp(wav + 8, "WAVE", 4)) return "not RIFF/WAVE";
    if (s_le32(wav + 4) != size - 8) {
        snprintf(why, whylen, "RIFF size %u, file %zu bytes", s_le32(wav + 4), size);
        return why;
    }
    size_t pos = 12;
    int have_fmt = 0;
    while (pos + 8 <= size) {
        uint32_t len = s_le32(wav + pos + 4);
        const uint8_t *body = wav + pos + 8;
        if (len > size - pos - 8) return "chunk runs past the end of the file";
        if (!memcmp(wav + pos, "fmt ", 4)) {
            if (len < 16) return "fmt chunk too short";
            if (s_le16(body) != 1) return "not PCM";
            if (s_le16(body + 2) != 1) return "not mono";
            if (s_le32(body + 4) < 8000 || s_le32(body + 4) > 48000) return "odd sample rate";
            if (s_le16(body + 14) != 16) return "not 16-bit";
            have_fmt = 1;
        } else if (!memcmp(wav + pos, "data", 4)) {
            if (!have_fmt) return "data before fmt";
            if (len < 2 || len % 2) return "empty or odd data chunk";
            size_t n = len / 2, loud = 0;
            int peak = 0;
            for (size_t i = 0; i < n; i++) {
                int v = (int16_t)s_le16(body + 2 * i);
                if (v < 0) v = -v;
                if (v > peak) peak = v;
                if (v > 500) loud++;
            }
            if (peak < 1000 || loud < n / 100) {
                snprintf(why, whylen, "silent: peak %d, %zu of %zu samples above 500", peak, loud, n);
                return why;
            }
            return NULL;
        }
        pos += 8 + len + (len & 1);
    }
    return "no data chunk";
}

/* ---- tests ---- */

TestSuite(integration, .init = s_setup, .fini = s_teardown, .timeout = 280);

/* (a) 200 `speak` jobs over three speech workers: all DONE, each WAV valid
 * and not silent, and the workers shared the work. */
Test(integration, speak_200_jobs_three_speech_workers) {
    s_speech_worker("speech-a");
    s_speech_worker("speech-b");
    s_speech_worker("speech-c");
    s_wait_workers("speech", 3);
    enum { N = 200 };
    static char ids[N][NR_PROTO_ID_MAX + 1];
    for (int i = 0; i < N; i++) {
        char text[128];
        snprintf(text, sizeof text, "Job number %d: a cat sits on the warm window sill.", i);
        s_submit(NULL, "speech", NULL, text, strlen(text), ids[i]);
    }
    for (int i = 0; i < N; i++) {
        nr_msg_t record;
        nr_proto_msg_init(&record);
        s_wait_state(ids[i], "done", &record);
        s_require(nr_harness_kv_long(&record, "speech.duration_ms") > 0, "job %d: no speech.duration_ms", i);
        nr_proto_msg_clear(&record);

        nr_msg_t reply;
        nr_proto_msg_init(&reply);
        int rc = nr_client_fetch(C.client, ids[i], "speech", &reply);
        s_require(rc == 0, "fetch %s: %s", ids[i], nr_client_error(C.client));
        s_require(reply.frames_len == 1, "fetch %s: %u frames", ids[i], reply.frames_len);
        char why[128];
        const char *bad = s_check_wav(reply.frames[0].data, reply.frames[0].size, why, sizeof why);
        s_require(bad == NULL, "job %d WAV (%zu bytes): %s", i, reply.frames[0].size, bad);
        nr_proto_msg_clear(&reply);
    }
    nr_msg_t stats;
    nr_proto_msg_init(&stats);
    cr_assert_eq(nr_client_stats(C.client, &stats), 0);
    s_require(nr_harness_kv_long(&stats, "jobs.done") >= N, "jobs.done = %s", nr_harness_kv(&stats, "jobs.done"));
    nr_proto_msg_clear(&stats);
    for (int i = 0; i < C.cl.n_workers; i++) {
        cr_assert(nr_harness_proc_running(C.cl.workers[i]), "speech worker %d died", i);
    }
    s_end();
}

/* (b) A worker SIGKILLed while it holds a job: the job finishes on another
 * worker, with its attempts counted. */
Test(integration, worker_killed_mid_job_job_finishes_elsewhere) {
    int a = s_test_worker("test-a");
    s_wait_workers("test", 1);
    const char *opts[] = {"behave", "sleep:2000", NULL};
    char id[NR_PROTO_ID_MAX + 1];
    s_submit("kill-me-1", "test", opts, "hello", 5, id);
    nr_msg_t record;
    nr_proto_msg_init(&record);
    s_wait_state(id, "running", &record);
    cr_assert_eq(nr_harness_proc_kill(C.cl.workers[a], SIGKILL), 0);
    nr_harness_proc_wait(C.cl.workers[a], 10000, NULL);
    s_test_worker("test-b");
    s_wait_state(id, NULL, &record);
    s_require(!strcmp(nr_harness_kv(&record, "state"), "done"), "state %s error %s: %s",
              nr_harness_kv(&record, "state"), nr_harness_kv(&record, "error"),
              nr_harness_kv(&record, "error_message"));
    s_require(nr_harness_kv_long(&record, "attempts") == 2,
              "attempts = %s (one lease lost with the killed worker, one that finished)",
              nr_harness_kv(&record, "attempts"));
    nr_proto_msg_clear(&record);

    /* The output is the echo of the input, from the second worker. */
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    cr_assert_eq(nr_client_fetch(C.client, id, "test", &reply), 0, "%s", nr_client_error(C.client));
    cr_assert_eq(reply.frames_len, 1);
    cr_assert_eq(reply.frames[0].size, 5);
    cr_assert_eq(memcmp(reply.frames[0].data, "hello", 5), 0);
    nr_proto_msg_clear(&reply);
    s_end();
}

/* (b') A job that kills its worker every time (behave=crash) uses up its
 * attempts, one dead worker each, and ends FAILED attempts_exhausted. */
Test(integration, crashing_job_fails_after_attempt_limit) {
    int n = atoi(S_MAX_ATTEMPTS);
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "crash-%d", i);
        s_test_worker(name);
    }
    s_wait_workers("test", n);
    const char *opts[] = {"behave", "crash", NULL};
    char id[NR_PROTO_ID_MAX + 1];
    s_submit("crash-1", "test", opts, "x", 1, id);
    nr_msg_t record;
    nr_proto_msg_init(&record);
    s_wait_state(id, "failed", &record);
    s_require(!strcmp(nr_harness_kv(&record, "error"), "attempts_exhausted"), "error %s: %s",
              nr_harness_kv(&record, "error"), nr_harness_kv(&record, "error_message"));
    s_require(nr_harness_kv_long(&record, "attempts") == n, "attempts = %s", nr_harness_kv(&record, "attempts"));
    nr_proto_msg_clear(&record);
    int dead = 0;
    for (int i = 0; i < C.cl.n_workers; i++) dead += !nr_harness_proc_running(C.cl.workers[i]);
    cr_assert_eq(dead, n, "each attempt killed one worker");
    s_end();
}

/* (c) The broker SIGKILLed and restarted (same Redis) in the middle of a
 * run: every job still finishes, exactly once. */
Test(integration, broker_killed_and_restarted_mid_run) {
    s_test_worker("test-a");
    s_test_worker("test-b");
    s_wait_workers("test", 2);
    enum { N = 60 };
    static char ids[N][NR_PROTO_ID_MAX + 1];
    const char *opts[] = {"behave", "sleep:100", NULL};
    for (int i = 0; i < N; i++) {
        char id[32], input[32];
        snprintf(id, sizeof id, "bk-%d", i);
        snprintf(input, sizeof input, "input %d", i);
        s_submit(id, "test", opts, input, strlen(input), ids[i]);
    }
    /* Kill it once some, but not all, jobs are done. */
    long long end = nr_harness_now_ms() + S_WAIT_MS;
    int done_before = 0;
    while (nr_harness_now_ms() < end) {
        nr_msg_t stats;
        nr_proto_msg_init(&stats);
        if (nr_client_stats(C.client, &stats) == 0) done_before = (int)nr_harness_kv_long(&stats, "jobs.done");
        nr_proto_msg_clear(&stats);
        if (done_before >= 5) break;
        nr_harness_sleep_ms(20);
    }
    s_require(done_before >= 5 && done_before < N, "%d of %d done before the kill", done_before, N);
    s_broker_stop(SIGKILL);
    s_broker_start();
    for (int i = 0; i < N; i++) {
        nr_msg_t record;
        nr_proto_msg_init(&record);
        s_wait_state(ids[i], "done", &record);
        char want[32];
        snprintf(want, sizeof want, "input %d", i);
        nr_proto_msg_clear(&record);
        nr_msg_t reply;
        nr_proto_msg_init(&reply);
        cr_assert_eq(nr_client_fetch(C.client, ids[i], "test", &reply), 0);
        cr_assert_eq(reply.frames_len, 1);
        s_require(reply.frames[0].size == strlen(want) &&
                      !memcmp(reply.frames[0].data, want, strlen(want)),
                  "job %s has someone else's output", ids[i]);
        nr_proto_msg_clear(&reply);
    }
    /* Exactly once: Redis counted N jobs done, no more, and re-submitting
     * a finished id queues nothing new. */
    char out[64];
    const char *hget[] = {"HGET", "narrator:stats", "done"};
    cr_assert_eq(nr_harness_redis_command(nr_harness_redis_port(C.cl.redis), 3, hget, out, sizeof out), 0);
    s_require(atol(out) == N, "narrator:stats done = %s, wanted %d", out, N);
    char again[NR_PROTO_ID_MAX + 1];
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    nr_kv_t kv = {"behave", "sleep:100"};
    cr_assert_eq(nr_client_submit(C.client, ids[0], "test", &kv, 1, "input 0", 7, &reply), 0);
    cr_assert_str_eq(nr_harness_kv(&reply, "existing"), "1");
    cr_assert_str_eq(nr_harness_kv(&reply, "state"), "done");
    snprintf(again, sizeof again, "%s", nr_harness_kv(&reply, "id"));
    cr_assert_str_eq(again, ids[0]);
    nr_proto_msg_clear(&reply);
    s_end();
}

/* Sends a raw multipart message (n frames) on a DEALER socket, without waiting. */
static void s_raw_send(void *sock, const void *const *frames, const size_t *sizes, int n) {
    for (int i = 0; i < n; i++) {
        int rc = zmq_send(sock, frames[i], sizes[i], (i + 1 < n ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT);
        (void)rc; /* a peer that hung up on us is fine */
    }
}

/* MessagePack map {"v": version, "cmd": cmd} with an optional extra pair. */
static size_t s_mp_header(uint8_t *buf, int version, const char *cmd) {
    size_t n = 0;
    buf[n++] = 0x82;
    buf[n++] = 0xa1;
    buf[n++] = 'v';
    buf[n++] = (uint8_t)version;
    buf[n++] = 0xa3;
    memcpy(buf + n, "cmd", 3);
    n += 3;
    size_t len = strlen(cmd);
    buf[n++] = (uint8_t)(0xa0 | len);
    memcpy(buf + n, cmd, len);
    return n + len;
}

/* Sends garbage on endpoint. With `replies` (the client socket) it also
 * collects the broker's answers: counts of REPLY codes NR_EVERSION and
 * NR_EPROTO in replies[0] and replies[1]. */
static void s_garbage(const char *endpoint, int *replies) {
    void *ctx = zmq_ctx_new();
    for (int round = 0; round < 3; round++) {
        void *s = zmq_socket(ctx, ZMQ_DEALER);
        int linger = 0;
        zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
        cr_assert_eq(zmq_connect(s, endpoint), 0);
        uint8_t junk[512];
        for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)(i * 131 + round * 7);
        const void *f1[] = {junk};
        size_t s1[] = {sizeof junk};
        s_raw_send(s, f1, s1, 1);
        s_raw_send(s, (const void *[]){""}, (size_t[]){0}, 1); /* empty body */
        uint8_t nomap[] = {0x93, 0x01, 0x02, 0x03};         /* an array, not a map */
        s_raw_send(s, (const void *[]){nomap}, (size_t[]){sizeof nomap}, 1);
        uint8_t trunc[] = {0x82, 0xa1, 'v', 0x01, 0xa3, 'c'}; /* cut short */
        s_raw_send(s, (const void *[]){trunc}, (size_t[]){sizeof trunc}, 1);
        uint8_t hdr[64];
        size_t hn = s_mp_header(hdr, 99, "STATS"); /* wrong version */
        s_raw_send(s, (const void *[]){hdr}, (size_t[]){hn}, 1);
        hn = s_mp_header(hdr, 1, "NOSUCHCMD");
        s_raw_send(s, (const void *[]){hdr}, (size_t[]){hn}, 1);
        hn = s_mp_header(hdr, 1, "RESULT"); /* missing every field */
        s_raw_send(s, (const void *[]){hdr}, (size_t[]){hn}, 1);
        /* Many frames: far past NR_PROTO_FRAMES_MAX. */
        const void *many[200];
        size_t many_sizes[200];
        for (int i = 0; i < 200; i++) {
            many[i] = junk;
            many_sizes[i] = 16;
        }
        s_raw_send(s, many, many_sizes, 200);
        if (round == 0) {
            /* A 100 MB frame, past every limit. */
            size_t big_size = 100u << 20;
            uint8_t *big = malloc(big_size);
            cr_assert_not_null(big);
            memset(big, 0xc1, big_size); /* 0xc1 is never valid MessagePack */
            s_raw_send(s, (const void *[]){big}, (size_t[]){big_size}, 1);
            s_raw_send(s, (const void *[]){hdr, big}, (size_t[]){hn, big_size}, 2);
            nr_harness_sleep_ms(500); /* let ZeroMQ push it out before closing */
            free(big);
        }
        if (replies) {
            int timeout = 2000;
            zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
            for (;;) {
                nr_msg_t reply;
                nr_proto_msg_init(&reply);
                char err[256];
                int rc = nr_proto_recv(s, NULL, NULL, &reply, err, sizeof err);
                if (rc == NR_ETIMEDOUT || rc == NR_EIO) break;
                if (rc == 0 && reply.cmd == NR_CMD_REPLY) {
                    replies[0] += reply.code == NR_EVERSION;
                    replies[1] += reply.code == NR_EPROTO;
                }
                nr_proto_msg_clear(&reply);
            }
        }
        nr_harness_sleep_ms(50);
        zmq_close(s);
    }
    zmq_ctx_term(ctx);
}

/* (d) Garbage and oversized frames on both broker sockets while jobs keep
 * completing; the broker and workers keep running. */
Test(integration, garbage_on_both_sockets_while_jobs_complete) {
    s_test_worker("test-a");
    s_test_worker("test-b");
    s_wait_workers("test", 2);
    enum { N = 30 };
    static char ids[N][NR_PROTO_ID_MAX + 1];
    const char *opts[] = {"behave", "sleep:20", NULL};
    int replies[2] = {0, 0};
    for (int i = 0; i < N; i++) {
        char input[32];
        snprintf(input, sizeof input, "payload %d", i);
        s_submit(NULL, "test", opts, input, strlen(input), ids[i]);
        if (i == N / 3) s_garbage(C.cl.client_ep, replies);
        if (i == 2 * N / 3) s_garbage(C.cl.worker_ep, NULL);
    }
    /* A client that sent junk hears why: wrong version, malformed. */
    s_require(replies[0] > 0 && replies[1] > 0, "REPLYs to junk: %d unsupported_version, %d malformed",
              replies[0], replies[1]);
    for (int i = 0; i < N; i++) {
        nr_msg_t record;
        nr_proto_msg_init(&record);
        s_wait_state(ids[i], "done", &record);
        nr_proto_msg_clear(&record);
    }
    s_require(nr_harness_proc_running(C.cl.broker), "the broker died");
    for (int i = 0; i < C.cl.n_workers; i++) cr_assert(nr_harness_proc_running(C.cl.workers[i]));
    /* And it still answers new work. */
    char id[NR_PROTO_ID_MAX + 1];
    s_submit(NULL, "test", NULL, "after", 5, id);
    nr_msg_t record;
    nr_proto_msg_init(&record);
    s_wait_state(id, "done", &record);
    nr_proto_msg_clear(&record);
    s_end();
}

/* (e) Cancel of a queued job and of a running one: both end CANCELLED, and
 * the running job's late result does not revive it. */
Test(integration, cancel_queued_and_running) {
    int w = s_test_worker("test-a");
    s_wait_workers("test", 1);
    const char *slow[] = {"behave", "sleep:3000", NULL};
    char running[NR_PROTO_ID_MAX + 1], queued[NR_PROTO_ID_MAX + 1];
    s_submit("cancel-running", "test", slow, "r", 1, running);
    nr_msg_t record;
    nr_proto_msg_init(&record);
    s_wait_state(running, "running", &record);
    /* The only worker is busy (capacity 1), so this one waits in the queue. */
    s_submit("cancel-queued", "test", slow, "q", 1, queued);
    cr_assert_eq(s_status(queued, &record), 0);
    cr_assert_str_eq(nr_harness_kv(&record, "state"), "queued");

    cr_assert_eq(nr_client_cancel(C.client, queued, &record), 0, "%s", nr_client_error(C.client));
    cr_assert_str_eq(nr_harness_kv(&record, "state"), "cancelled");
    cr_assert_eq(nr_client_cancel(C.client, running, &record), 0, "%s", nr_client_error(C.client));
    cr_assert_str_eq(nr_harness_kv(&record, "state"), "cancelled");
    long long cancelled_at = nr_harness_now_ms();

    /* A job submitted after both runs on the same worker, which means the
     * cancelled job's sleep (and its late RESULT) is over by then. */
    char after[NR_PROTO_ID_MAX + 1];
    s_submit("cancel-after", "test", NULL, "a", 1, after);
    s_wait_state(after, "done", &record);
    /* Also wait out the sleep itself, in case the worker took the new job
     * on a second thread: by then its RESULT for the cancelled job is sent. */
    long long left = cancelled_at + 3500 - nr_harness_now_ms();
    if (left > 0) nr_harness_sleep_ms((int)left);
    nr_harness_sleep_ms(500);
    cr_assert_eq(s_status(running, &record), 0);
    s_require(!strcmp(nr_harness_kv(&record, "state"), "cancelled"), "cancelled job is now %s",
              nr_harness_kv(&record, "state"));
    cr_assert_eq(s_status(queued, &record), 0);
    cr_assert_str_eq(nr_harness_kv(&record, "state"), "cancelled");
    /* Cancelling a finished job is refused and changes nothing. */
    int rc = nr_client_cancel(C.client, after, &record);
    cr_assert_neq(rc, 0, "cancel of a done job succeeded");
    cr_assert_eq(s_status(after, &record), 0);
    cr_assert_str_eq(nr_harness_kv(&record, "state"), "done");
    nr_proto_msg_clear(&record);
    cr_assert(nr_harness_proc_running(C.cl.workers[w]));
    s_end();
}

/* (f) behave=fail (retryable) ends FAILED attempts_exhausted after the
 * limit, with the worker's reason kept; behave=fail-final fails at once
 * with its own code. */
Test(integration, failing_jobs) {
    s_test_worker("test-a");
    s_test_worker("test-b");
    s_wait_workers("test", 2);
    const char *fail[] = {"behave", "fail", NULL};
    const char *final[] = {"behave", "fail-final", NULL};
    char a[NR_PROTO_ID_MAX + 1], b[NR_PROTO_ID_MAX + 1];
    s_submit("fails-always", "test", fail, "x", 1, a);
    s_submit("fails-final", "test", final, "y", 1, b);

    nr_msg_t record;
    nr_proto_msg_init(&record);
    s_wait_state(a, NULL, &record);
    s_require(!strcmp(nr_harness_kv(&record, "state"), "failed"), "state %s", nr_harness_kv(&record, "state"));
    s_require(!strcmp(nr_harness_kv(&record, "error"), "attempts_exhausted"), "error %s: %s",
              nr_harness_kv(&record, "error"), nr_harness_kv(&record, "error_message"));
    s_require(nr_harness_kv_long(&record, "attempts") == atoi(S_MAX_ATTEMPTS), "attempts = %s",
              nr_harness_kv(&record, "attempts"));
    s_require(strstr(nr_harness_kv(&record, "error_message"), "test failure (retryable)") != NULL,
              "the worker's reason is lost: error_message '%s'", nr_harness_kv(&record, "error_message"));

    s_wait_state(b, NULL, &record);
    s_require(!strcmp(nr_harness_kv(&record, "state"), "failed"), "state %s", nr_harness_kv(&record, "state"));
    /* narrator-worker-test fails fail-final with NR_EOPTION, retry=0. */
    s_require(!strcmp(nr_harness_kv(&record, "error"), "bad_option"), "fail-final gave error '%s': %s",
              nr_harness_kv(&record, "error"), nr_harness_kv(&record, "error_message"));
    s_require(nr_harness_kv_long(&record, "attempts") == 1, "fail-final took %s attempts",
              nr_harness_kv(&record, "attempts"));
    nr_proto_msg_clear(&record);
    s_end();
}

/* A 1x1 PNG: `narrate submit` sends files as they are, and nothing decodes
 * it here because no vision worker runs. */
static const uint8_t s_png[] = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
    0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90,
    0x77, 0x53, 0xde, 0x00, 0x00, 0x00, 0x0c, 0x49, 0x44, 0x41, 0x54, 0x08, 0xd7, 0x63, 0xf8,
    0xcf, 0xc0, 0x00, 0x00, 0x03, 0x01, 0x01, 0x00, 0x18, 0xdd, 0x8d, 0xb0, 0x00, 0x00, 0x00,
    0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};

/* (g) `narrate submit` of an image when no vision worker runs: a clear
 * "no worker serves stage vision" and exit code 1 (the job counts as
 * failed, see narrate --help), within its short --timeout. */
Test(integration, narrate_submit_without_vision_worker) {
    if (!C.narrate_bin) s_skip("narrate is not built");
    char *png = nr_harness_path(C.cl.dir, "pixel.png");
    cr_assert_eq(nr_harness_write_file(png, s_png, sizeof s_png), 0);
    char *out = nr_harness_path(C.cl.dir, "out");
    char *log = nr_harness_path(C.cl.dir, "narrate.log");
    const char *argv[] = {C.narrate_bin, "--broker", C.cl.client_ep, "--timeout", "2", "submit", png,
                          "-o", out, NULL};
    int status = 0;
    cr_assert_eq(nr_harness_run(argv, NULL, log, 60000, &status), 0, "%s", nr_harness_error());
    char *text = nr_harness_read_file(log, NULL);
    cr_assert_not_null(text);
    s_require(strstr(text, "no worker serves stage vision") != NULL, "narrate said: %s", text);
    s_require(nr_harness_exit_code(status) == 1, "exit code %d; narrate said: %s",
              nr_harness_exit_code(status), text);
    free(text);
    free(log);
    free(out);
    free(png);
    s_end();
}

/* client-rate through real sockets: the broker keys the limit on the peer
 * address nr_proto_recv reports (127.0.0.1 here), answers busy past the
 * burst, and a client that waits gets in once a token is back. */
Test(integration, client_rate_limit_is_per_peer_and_busy) {
    s_broker_stop(SIGTERM);
    char log_name[32];
    snprintf(log_name, sizeof log_name, "broker-%d.log", C.broker_starts++);
    const char *extra[] = {"--client-rate", "1", "--client-burst", "3", "--log-level", "debug", NULL};
    s_require(nr_harness_cluster_spawn_broker(&C.cl, C.broker_bin, log_name, extra) == 0, "%s",
              nr_harness_error());
    nr_client_set_busy_wait(C.client, 0);
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    for (int i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof id, "rate-%d", i);
        s_require(nr_client_submit(C.client, id, "speech", NULL, 0, "hello", 5, &reply) == 0, "submit %d: %s", i,
                  nr_client_error(C.client));
    }
    int rc = nr_client_submit(C.client, "rate-3", "speech", NULL, 0, "hello", 5, &reply);
    s_require(rc == NR_EBUSY, "the 4th submit within a second: %d (%s)", rc, nr_client_error(C.client));
    s_require(strstr(nr_client_error(C.client), "127.0.0.1") && strstr(nr_client_error(C.client), "client-rate"),
              "the refusal does not name the client and the setting: %s", nr_client_error(C.client));
    nr_client_set_busy_wait(C.client, 10000);
    s_require(nr_client_submit(C.client, "rate-3", "speech", NULL, 0, "hello", 5, &reply) == 0,
              "a waiting client is not let in: %s", nr_client_error(C.client));
    nr_proto_msg_clear(&reply);
    s_end();
}

/* (h) SIGTERM: the broker exits 0; a restarted broker resumes the pending
 * jobs from Redis and they finish. */
Test(integration, broker_sigterm_exits_zero_and_restart_resumes) {
    enum { N = 10 };
    static char ids[N][NR_PROTO_ID_MAX + 1];
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof id, "resume-%d", i);
        s_submit(id, "test", NULL, id, strlen(id), ids[i]);
    }
    nr_msg_t record;
    nr_proto_msg_init(&record);
    cr_assert_eq(s_status(ids[0], &record), 0);
    cr_assert_str_eq(nr_harness_kv(&record, "state"), "queued");
    int status = s_broker_stop(SIGTERM);
    s_require(nr_harness_exit_code(status) == 0, "broker exit status %d (signal %d)",
              nr_harness_exit_code(status), nr_harness_exit_signal(status));
    s_broker_start();
    s_test_worker("test-a");
    for (int i = 0; i < N; i++) {
        s_wait_state(ids[i], "done", &record);
        s_require(nr_harness_kv_long(&record, "attempts") == 1, "job %s attempts %s", ids[i],
                  nr_harness_kv(&record, "attempts"));
    }
    nr_proto_msg_clear(&record);
    s_end();
}

/* Copies a fixture image into dir; returns 0. */
static void s_copy_fixture(const char *name, const char *dir) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/images/%s", name);
    char *src = nr_harness_source_path(rel);
    cr_assert_not_null(src, "%s", nr_harness_error());
    size_t size = 0;
    char *data = nr_harness_read_file(src, &size);
    cr_assert_not_null(data);
    char *dst = nr_harness_path(dir, "%s", name);
    cr_assert_eq(nr_harness_write_file(dst, data, size), 0);
    free(dst);
    free(data);
    free(src);
}

/* Runs narrate with the test broker; returns its exit code, output in *text. */
static int s_narrate(const char *const *args, const char *log_name, char **text) {
    const char *argv[32];
    int n = 0;
    argv[n++] = C.narrate_bin;
    argv[n++] = "--broker";
    argv[n++] = C.cl.client_ep;
    for (int i = 0; args[i] && n < 31; i++) argv[n++] = args[i];
    argv[n] = NULL;
    char *log = nr_harness_path(C.cl.dir, "%s", log_name);
    int status = 0;
    cr_assert_eq(nr_harness_run(argv, NULL, log, 240000, &status), 0, "%s", nr_harness_error());
    *text = nr_harness_read_file(log, NULL);
    free(log);
    cr_assert_not_null(*text);
    return nr_harness_exit_code(status);
}

static long s_redis_stat(const char *field) {
    char out[64];
    const char *argv[] = {"HGET", "narrator:stats", field};
    cr_assert_eq(nr_harness_redis_command(nr_harness_redis_port(C.cl.redis), 3, argv, out, sizeof out), 0);
    return strcmp(out, "(nil)") ? atol(out) : 0;
}

/* The whole route with real programs: `narrate submit` of a folder of
 * images through vision, text and speech workers on the tiny fixture
 * checkpoint; captions, valid WAVs and JSON records come out; a second
 * run submits nothing new; a corrupt image fails alone with bad_image. */
Test(integration, narrate_submit_full_route_tiny_checkpoint) {
    if (!C.narrate_bin) s_skip("narrate is not built");
    s_model_worker("vision", "vision-a");
    s_model_worker("text", "text-a");
    s_speech_worker("speech-a");
    s_wait_workers("vision", 1);
    s_wait_workers("text", 1);
    s_wait_workers("speech", 1);
    char *in = nr_harness_path(C.cl.dir, "in");
    char *out = nr_harness_path(C.cl.dir, "out");
    cr_assert_eq(mkdir(in, 0755), 0);
    const char *images[] = {"chelsea_317x211.jpg", "rocket_palette_trns.png", "astronaut_rgba_webp.webp"};
    const char *const *stems = images; /* outputs keep the image's whole name */
    for (int i = 0; i < 3; i++) s_copy_fixture(images[i], in);

    const char *args[] = {"--timeout", "60", "submit", in, "-o", out, "--max-length", "8", NULL};
    char *text = NULL;
    int code = s_narrate(args, "narrate-1.log", &text);
    s_require(code == 0, "narrate submit exited %d: %s", code, text);
    free(text);
    for (int i = 0; i < 3; i++) {
        char *txt = nr_harness_path(out, "%s.txt", stems[i]);
        char *wav = nr_harness_path(out, "%s.wav", stems[i]);
        char *json = nr_harness_path(out, "%s.json", stems[i]);
        size_t size = 0;
        char *caption = nr_harness_read_file(txt, &size);
        s_require(caption && size > 0, "%s: no caption", txt);
        char *audio = nr_harness_read_file(wav, &size);
        s_require(audio != NULL, "%s: missing", wav);
        char why[128];
        const char *bad = s_check_wav((const uint8_t *)audio, size, why, sizeof why);
        s_require(bad == NULL, "%s: %s", wav, bad);
        char *record = nr_harness_read_file(json, NULL);
        s_require(record && strstr(record, "\"done\""), "%s: %s", json, record ? record : "missing");
        free(record);
        free(audio);
        free(caption);
        free(json);
        free(wav);
        free(txt);
    }
    long submitted = s_redis_stat("submitted");
    s_require(submitted == 3, "narrator:stats submitted = %ld", submitted);

    /* Again: same content ids, so nothing new is queued, and it succeeds. */
    code = s_narrate(args, "narrate-2.log", &text);
    s_require(code == 0, "second narrate submit exited %d: %s", code, text);
    free(text);
    s_require(s_redis_stat("submitted") == 3, "resubmission queued new jobs: submitted = %ld",
              s_redis_stat("submitted"));

    /* A corrupt image fails alone, with its reason; the worker lives on. */
    char *bad_dir = nr_harness_path(C.cl.dir, "bad");
    cr_assert_eq(mkdir(bad_dir, 0755), 0);
    s_copy_fixture("bad_truncated_header.jpg", bad_dir);
    s_copy_fixture("rocket_223x225.jpg", bad_dir);
    const char *bad_args[] = {"--timeout", "60", "submit", bad_dir, "-o", out, "--max-length", "8", NULL};
    code = s_narrate(bad_args, "narrate-3.log", &text);
    s_require(code == 1, "narrate with a bad image exited %d: %s", code, text);
    s_require(strstr(text, "bad_image") || strstr(text, "not_an_image"), "narrate said: %s", text);
    free(text);
    char *good = nr_harness_path(out, "rocket_223x225.jpg.txt");
    s_require(access(good, F_OK) == 0, "the good image next to the bad one has no caption");
    free(good);
    for (int i = 0; i < C.cl.n_workers; i++) s_require(nr_harness_proc_running(C.cl.workers[i]), "worker %d died", i);
    free(bad_dir);
    free(out);
    free(in);
    s_end();
}

/* Copies tests/fixtures/image_formats/<name> into dir as <as>. */
static void s_copy_format_fixture(const char *name, const char *dir, const char *as) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/image_formats/%s", name);
    char *src = nr_harness_source_path(rel);
    cr_assert_not_null(src, "%s", nr_harness_error());
    size_t size = 0;
    char *data = nr_harness_read_file(src, &size);
    cr_assert_not_null(data);
    char *dst = nr_harness_path(dir, "%s", as);
    cr_assert_eq(nr_harness_write_file(dst, data, size), 0);
    free(dst);
    free(data);
    free(src);
}

/* TIFF (tiled, CMYK, multi-page), GIF, BMP, HEIC and AVIF files found by
 * the folder walk (any case of extension) go through real vision, text
 * and speech workers and come out captioned and spoken; a truncated HEIC
 * and a TIFF bomb fail alone with their codes. */
Test(integration, new_formats_are_captioned) {
    if (!C.narrate_bin) s_skip("narrate is not built");
    s_model_worker("vision", "vision-a");
    s_model_worker("text", "text-a");
    s_speech_worker("speech-a");
    s_wait_workers("vision", 1);
    s_wait_workers("text", 1);
    s_wait_workers("speech", 1);
    char *in = nr_harness_path(C.cl.dir, "in");
    char *out = nr_harness_path(C.cl.dir, "out");
    cr_assert_eq(mkdir(in, 0755), 0);
    const char *files[7][2] = {{"tiff_tiles.tif", "SCAN.TIF"},       {"tiff_cmyk.tif", "print.tiff"},
                              {"tiff_multipage.tif", "pages.tif"},  {"heic_photo.heic", "IMG_0001.HEIC"},
                              {"avif_alpha.avif", "web.avif"},      {"gif_animated.gif", "anim.gif"},
                              {"bmp_565_bitfields.bmp", "old.bmp"}};
#ifdef NR_TEST_NO_HEIF
    const int n = 4; /* built with NR_HEIF=OFF: the HEIC and AVIF files are left out */
    memmove(files[3], files[5], 2 * sizeof files[0]);
#else
    const int n = (int)(sizeof files / sizeof files[0]);
#endif
    for (int i = 0; i < n; i++) s_copy_format_fixture(files[i][0], in, files[i][1]);
    const char *args[] = {"--timeout", "60", "submit", in, "-o", out, "--max-length", "8", NULL};
    char *text = NULL;
    int code = s_narrate(args, "narrate-formats.log", &text);
    s_require(code == 0, "narrate submit exited %d: %s", code, text);
    free(text);
    for (int i = 0; i < n; i++) {
        char stem[64]; /* outputs keep the image's whole name: SCAN.TIF.txt */
        snprintf(stem, sizeof stem, "%s", files[i][1]);
        char *txt = nr_harness_path(out, "%s.txt", stem);
        char *wav = nr_harness_path(out, "%s.wav", stem);
        char *json = nr_harness_path(out, "%s.json", stem);
        size_t size = 0;
        char *caption = nr_harness_read_file(txt, &size);
        s_require(caption && size > 0, "%s (%s): no caption", txt, files[i][0]);
        char *audio = nr_harness_read_file(wav, &size);
        s_require(audio != NULL, "%s: missing", wav);
        char why[128];
        const char *bad = s_check_wav((const uint8_t *)audio, size, why, sizeof why);
        s_require(bad == NULL, "%s: %s", wav, bad);
        char *record = nr_harness_read_file(json, NULL);
        s_require(record && strstr(record, "\"done\""), "%s: %s", json, record ? record : "missing");
        cr_log_info("%s: %s", files[i][1], caption);
        free(record);
        free(audio);
        free(caption);
        free(json);
        free(wav);
        free(txt);
    }
    s_require(s_redis_stat("submitted") == n, "narrator:stats submitted = %ld", s_redis_stat("submitted"));

    /* --all-pages: each page of the 3-page TIFF is a job of its own (the
     * page is a job option, so its id differs), written as pages@p1..3;
     * a one-page TIFF keeps its plain name. */
    char *pin = nr_harness_path(C.cl.dir, "pages-in");
    char *pout = nr_harness_path(C.cl.dir, "pages-out");
    cr_assert_eq(mkdir(pin, 0755), 0);
    s_copy_format_fixture("tiff_multipage.tif", pin, "pages.tif");
    s_copy_format_fixture("tiff_tiles.tif", pin, "one.tif");
    const char *pargs[] = {"--timeout", "60", "submit", pin, "-o", pout, "--max-length", "8", "--all-pages", NULL};
    code = s_narrate(pargs, "narrate-pages.log", &text);
    s_require(code == 0, "narrate submit --all-pages exited %d: %s", code, text);
    free(text);
    const char *pstems[] = {"pages.tif@p1", "pages.tif@p2", "pages.tif@p3", "one.tif"};
    for (int i = 0; i < 4; i++) {
        char *json = nr_harness_path(pout, "%s.json", pstems[i]);
        char *record = nr_harness_read_file(json, NULL);
        s_require(record && strstr(record, "\"done\""), "%s: %s", json, record ? record : "missing");
        free(record);
        free(json);
    }
    /* one.tif's job is the same as SCAN.TIF's (same bytes and options). */
    s_require(s_redis_stat("submitted") == n + 3, "--all-pages: submitted = %ld, want %d",
              s_redis_stat("submitted"), n + 3);
    free(pin);
    free(pout);

    char *bad_dir = nr_harness_path(C.cl.dir, "bad");
    cr_assert_eq(mkdir(bad_dir, 0755), 0);
#ifdef NR_TEST_NO_HEIF
    s_copy_format_fixture("bad_truncated.tif", bad_dir, "cut.tif");
#else
    s_copy_format_fixture("bad_truncated.heic", bad_dir, "cut.heic");
#endif
    s_copy_format_fixture("bomb_100000x100000.tif", bad_dir, "bomb.tif");
    s_copy_format_fixture("bmp_4.bmp", bad_dir, "fine.bmp");
    const char *bad_args[] = {"--timeout", "60", "submit", bad_dir, "-o", out, "--max-length", "8", NULL};
    code = s_narrate(bad_args, "narrate-formats-bad.log", &text);
    s_require(code == 1, "narrate with bad images exited %d: %s", code, text);
    s_require(strstr(text, "bad_image") && strstr(text, "image_too_large"), "narrate said: %s", text);
    free(text);
    char *good = nr_harness_path(out, "fine.bmp.txt");
    s_require(access(good, F_OK) == 0, "the good BMP next to the bad files has no caption");
    free(good);
    for (int i = 0; i < C.cl.n_workers; i++) s_require(nr_harness_proc_running(C.cl.workers[i]), "worker %d died", i);
    free(bad_dir);
    free(out);
    free(in);
    s_end();
}

/* A checkpoint folder under the cluster's folder: the tiny fixture's config
 * and tokenizer files plus `weights` (fixture paths), linked. */
static char *s_checkpoint_dir(const char *name, const char *const *weights) {
    static const char *const side[] = {"config.json", "generation_config.json", "preprocessor_config.json",
                                       "vocab.json", "merges.txt"};
    char *dir = nr_harness_path(C.cl.dir, "%s", name);
    cr_assert_eq(mkdir(dir, 0755), 0);
    char *fix = nr_harness_source_path("tests/fixtures/vit-gpt2-tiny");
    cr_assert_not_null(fix, "%s", nr_harness_error());
    for (size_t i = 0; i < sizeof side / sizeof side[0]; i++) {
        char *src = nr_harness_path(fix, "%s", side[i]), *dst = nr_harness_path(dir, "%s", side[i]);
        cr_assert_eq(symlink(src, dst), 0);
        free(src);
        free(dst);
    }
    for (size_t i = 0; weights[i]; i += 2) {
        char *src = nr_harness_source_path(weights[i]), *dst = nr_harness_path(dir, "%s", weights[i + 1]);
        cr_assert_not_null(src, "%s", nr_harness_error());
        cr_assert_eq(symlink(src, dst), 0);
        free(src);
        free(dst);
    }
    free(fix);
    return dir;
}

/* Captions of `narrate submit in -o out flag value` by vision
 * and text workers on checkpoint folder `model`, stopped afterwards. */
static void s_caption_with(const char *model, const char *in, const char *out, const char *flag, const char *value,
                           char captions[][256]) {
    int v = s_model_worker_on("vision", "vision-x", model);
    int t = s_model_worker_on("text", "text-x", model);
    s_wait_workers("vision", 1);
    s_wait_workers("text", 1);
    const char *args[] = {"--timeout", "60", "submit", in, "-o", out, flag, value, NULL};
    char *text = NULL;
    int code = s_narrate(args, "narrate-bin.log", &text);
    s_require(code == 0, "narrate submit with %s exited %d: %s", model, code, text);
    free(text);
    static const char *const stems[] = {"chelsea_317x211.jpg", "rocket_palette_trns.png"};
    for (int i = 0; i < 2; i++) {
        char *txt = nr_harness_path(out, "%s.txt", stems[i]);
        char *caption = nr_harness_read_file(txt, NULL);
        s_require(caption && caption[0], "%s: no caption", txt);
        snprintf(captions[i], 256, "%s", caption);
        free(caption);
        free(txt);
    }
    cr_assert_eq(nr_harness_proc_stop(C.cl.workers[v], SIGTERM, 10000, NULL), 0);
    cr_assert_eq(nr_harness_proc_stop(C.cl.workers[t], SIGTERM, 10000, NULL), 0);
}

/* The Hub publishes most checkpoints as pytorch_model.bin: workers on the
 * fixture's F16 .bin shards (tensors as views into one storage, written by
 * torch.save) caption exactly as workers on the same values as safetensors. */
Test(integration, bin_only_checkpoint_captions_as_its_safetensors_form) {
    if (!C.narrate_bin) s_skip("narrate is not built");
    s_speech_worker("speech-a");
    s_wait_workers("speech", 1);
    const char *bin_files[] = {"tests/fixtures/vit-gpt2-tiny-bin-f16/pytorch_model.bin.index.json",
                               "pytorch_model.bin.index.json",
                               "tests/fixtures/vit-gpt2-tiny-bin-f16/pytorch_model-00001-of-00002.bin",
                               "pytorch_model-00001-of-00002.bin",
                               "tests/fixtures/vit-gpt2-tiny-bin-f16/pytorch_model-00002-of-00002.bin",
                               "pytorch_model-00002-of-00002.bin", NULL};
    const char *st_files[] = {"tests/fixtures/vit-gpt2-tiny-f16.safetensors", "model.safetensors", NULL};
    char *bin = s_checkpoint_dir("bin-f16", bin_files), *st = s_checkpoint_dir("st-f16", st_files);
    char *in = nr_harness_path(C.cl.dir, "in");
    cr_assert_eq(mkdir(in, 0755), 0);
    s_copy_fixture("chelsea_317x211.jpg", in);
    s_copy_fixture("rocket_palette_trns.png", in);
    char *out_bin = nr_harness_path(C.cl.dir, "out-bin"), *out_st = nr_harness_path(C.cl.dir, "out-st");
    char from_bin[2][256], from_st[2][256];
    /* The same settings spelt two ways (the checkpoint's own num_beams 4),
     * so the second run gets new job ids instead of the first run's results. */
    s_caption_with(bin, in, out_bin, "--max-length", "16", from_bin);
    s_caption_with(st, in, out_st, "--beams", "4", from_st);
    for (int i = 0; i < 2; i++)
        s_require(strcmp(from_bin[i], from_st[i]) == 0, "caption %d: \"%s\" from .bin, \"%s\" from safetensors", i,
                  from_bin[i], from_st[i]);
    free(out_st);
    free(out_bin);
    free(in);
    free(st);
    free(bin);
    s_end();
}

/* Redis SIGKILLed mid-run and restarted (AOF, fsync always): the broker
 * reconnects and every acknowledged job still finishes. */
Test(integration, redis_killed_and_restarted_mid_run) {
    s_test_worker("test-a");
    s_test_worker("test-b");
    s_wait_workers("test", 2);
    enum { N = 40 };
    static char ids[N][NR_PROTO_ID_MAX + 1];
    const char *opts[] = {"behave", "sleep:100", NULL};
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof id, "rk-%d", i);
        s_submit(id, "test", opts, id, strlen(id), ids[i]);
    }
    cr_assert_eq(nr_harness_redis_stop(C.cl.redis, 1), 0);
    nr_harness_sleep_ms(500); /* let the broker notice */
    cr_assert_eq(nr_harness_redis_start(C.cl.redis), 0, "%s", nr_harness_error());
    for (int i = 0; i < N; i++) {
        nr_msg_t record;
        nr_proto_msg_init(&record);
        s_wait_state(ids[i], "done", &record);
        nr_proto_msg_clear(&record);
    }
    s_require(nr_harness_proc_running(C.cl.broker), "the broker died with Redis");
    s_end();
}

/* A fake worker at the cluster's worker endpoint (tests/harness.h). */
static void *s_fake_worker(void *zctx, const char *stage, const char *name, uint32_t capacity) {
    void *s = nr_harness_fake_worker(zctx, C.cl.worker_ep, stage, name, capacity);
    cr_assert_not_null(s, "%s", nr_harness_error());
    return s;
}

/* Issue 16, through real sockets: 25 READYs and 25 SUBMITs with made-up
 * stages are refused and STATS still reports the workers, jobs and redis;
 * then a fake worker announcing capacity 1024 that heartbeats and never
 * answers, beside a real test worker: all 20 jobs finish done, and the
 * fake is set aside (before: the made-up stages pushed workers.* and redis
 * out of STATS, and the fake took every attempt: attempts_exhausted). */
Test(integration, made_up_stages_refused_and_a_worker_that_never_answers_set_aside) {
    s_broker_stop(SIGTERM);
    char log_name[32];
    snprintf(log_name, sizeof log_name, "broker-%d.log", C.broker_starts++);
    const char *extra[] = {"--max-attempts", S_MAX_ATTEMPTS, "--retry-backoff-ms", "50",
                           "--heartbeat-ms", "250", "--job-deadline-ms", "1000",
                           "--log-level", "debug", NULL};
    s_require(nr_harness_cluster_spawn_broker(&C.cl, C.broker_bin, log_name, extra) == 0, "%s",
              nr_harness_error());
    s_test_worker("test-a");
    s_wait_workers("test", 1);
    void *zctx = zmq_ctx_new();
    void *made_up[25];
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    for (int i = 0; i < 25; i++) {
        char stage[32];
        snprintf(stage, sizeof stage, "made-up-%d", i);
        made_up[i] = s_fake_worker(zctx, stage, "liar", 1);
        int rc = nr_client_submit(C.client, NULL, stage, NULL, 0, "x", 1, &reply);
        s_require(rc == NR_EINVAL, "SUBMIT to %s: %s (%s)", stage, nr_strerror(rc), nr_client_error(C.client));
        s_require(strstr(nr_client_error(C.client), "unknown stage"), "%s", nr_client_error(C.client));
    }
    nr_harness_sleep_ms(300);
    s_require(nr_client_stats(C.client, &reply) == 0, "STATS: %s", nr_client_error(C.client));
    s_require(!strcmp(nr_harness_kv(&reply, "redis"), "up"), "redis entry: '%s'", nr_harness_kv(&reply, "redis"));
    s_require(nr_harness_kv_long(&reply, "workers.test") == 1, "workers.test %ld",
              nr_harness_kv_long(&reply, "workers.test"));
    s_require(nr_harness_kv_long(&reply, "workers.vision") == 0 && nr_harness_kv_long(&reply, "workers.speech") == 0,
              "real stages missing from STATS");
    s_require(nr_harness_kv_long(&reply, "jobs.queued") == 0 && nr_harness_kv_long(&reply, "workers") == 1,
              "totals missing from STATS");
    for (uint32_t i = 0; i < reply.kv_len; i++)
        s_require(!strstr(reply.kv[i].key, "made-up"), "STATS names %s", reply.kv[i].key);
    for (int i = 0; i < 25; i++) zmq_close(made_up[i]);

    void *fake = s_fake_worker(zctx, "test", "fake", 1024);
    s_wait_workers("test", 2);
    enum { N = 20 };
    static char ids[N][NR_PROTO_ID_MAX + 1];
    for (int i = 0; i < N; i++) {
        char input[32];
        snprintf(input, sizeof input, "job %d", i);
        s_submit(NULL, "test", NULL, input, strlen(input), ids[i]);
    }
    long long end = nr_harness_now_ms() + S_WAIT_MS, next_beat = 0, next_check = 0;
    int done = 0, fake_jobs = 0;
    while (done < N && nr_harness_now_ms() < end) {
        zmq_pollitem_t it = {fake, 0, ZMQ_POLLIN, 0};
        zmq_poll(&it, 1, 50);
        nr_msg_t m;
        nr_proto_msg_init(&m);
        char err[256];
        while ((it.revents & ZMQ_POLLIN) &&
               nr_proto_recv(fake, NULL, NULL, &m, err, sizeof err) == 0) {
            fake_jobs += m.cmd == NR_CMD_JOB; /* held, never answered */
            nr_proto_msg_clear(&m);
            int events = 0;
            size_t elen = sizeof events;
            zmq_getsockopt(fake, ZMQ_EVENTS, &events, &elen);
            if (!(events & ZMQ_POLLIN)) break;
        }
        long long now = nr_harness_now_ms();
        if (now >= next_beat) {
            m.cmd = NR_CMD_HEARTBEAT;
            nr_proto_send(fake, NULL, 0, &m, err, sizeof err);
            next_beat = now + 250;
        }
        nr_proto_msg_clear(&m);
        if (now >= next_check) {
            next_check = now + 300;
            done = 0;
            for (int i = 0; i < N; i++) {
                s_require(s_status(ids[i], &reply) == 0, "status %s", ids[i]);
                const char *state = nr_harness_kv(&reply, "state");
                s_require(strcmp(state, "failed"), "job %s failed: %s: %s", ids[i],
                          nr_harness_kv(&reply, "error"), nr_harness_kv(&reply, "error_message"));
                done += !strcmp(state, "done");
            }
        }
    }
    s_require(done == N, "%d of %d jobs done", done, N);
    s_require(fake_jobs >= 3, "the fake worker got %d jobs", fake_jobs);
    s_require(nr_client_stats(C.client, &reply) == 0, "STATS: %s", nr_client_error(C.client));
    s_require(nr_harness_kv_long(&reply, "set_aside.test") == 1, "set_aside.test %ld",
              nr_harness_kv_long(&reply, "set_aside.test"));
    nr_proto_msg_clear(&reply);
    zmq_close(fake);
    zmq_ctx_term(zctx);
    s_end();
}
