/* Integration tests of the client library's pipelined SUBMIT
 * (nr_client_submit_batch) and of `narrate submit`, which uses it, against
 * a real redis-server, narrator-broker and narrator-worker-test on free
 * loopback ports: a batch of 100 is acknowledged job by job with the right
 * ids and runs to the end; a batch mixing good and bad jobs gets a code per
 * job; NR_EBUSY answers from a broker with a small --queue-bound are sent
 * again until the queue has room. Nothing asserts a time. */
#include "client/client.h"
#include "common/error.h"
#include "proto/proto.h"
#include "tests/harness.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define S_WAIT_MS 120000

static struct {
    nr_harness_cluster_t cl;
    nr_client_t *client;
    char *worker_bin;
} C;

static void s_dump(void) {
    static const char *const names[] = {"broker.log", "worker-0.log", "narrate.log", NULL};
    nr_harness_dump_logs(C.cl.dir, names, 4000);
}

#define s_require(cond, ...) NR_HARNESS_REQUIRE(s_dump, cond, __VA_ARGS__)

/* Redis, a broker with `broker_extra` flags and one test-stage worker with
 * `worker_extra` flags (both NULL-ended, may be NULL). */
static void s_start(const char *const *broker_extra, const char *const *worker_extra) {
    memset(&C, 0, sizeof C);
    char *broker = nr_harness_program("narrator-broker");
    if (!broker) cr_skip_test("narrator-broker is not built: %s", nr_harness_error());
    C.worker_bin = nr_harness_program("narrator-worker-test");
    if (!C.worker_bin) {
        free(broker);
        cr_skip_test("narrator-worker-test is not built: %s", nr_harness_error());
    }
    cr_assert_eq(nr_harness_cluster_start(&C.cl, "client-it", NULL), 0, "%s", nr_harness_error());
    int rc = nr_harness_cluster_spawn_broker(&C.cl, broker, "broker.log", broker_extra);
    free(broker);
    s_require(rc == 0, "%s", nr_harness_error());
    static const char *const wargs[] = {"--heartbeat-ms", "250", "--stage", "test", NULL};
    C.cl.worker_args = wargs;
    s_require(nr_harness_cluster_spawn_worker(&C.cl, C.worker_bin, "batch0", worker_extra) >= 0,
              "%s", nr_harness_error());
    C.client = nr_client_new(C.cl.client_ep, 5000);
    cr_assert_not_null(C.client);
}

static void s_teardown(void) {
    nr_client_destroy(&C.client);
    nr_harness_cluster_stop(&C.cl);
    free(C.worker_bin);
    memset(&C, 0, sizeof C);
}

/* Waits until job `id` is done. */
static void s_wait_done(const char *id) {
    long long end = nr_harness_now_ms() + S_WAIT_MS;
    nr_msg_t r;
    nr_proto_msg_init(&r);
    const char *state = "";
    while (nr_harness_now_ms() < end) {
        int rc = nr_client_status(C.client, id, &r);
        s_require(rc == 0, "status %s: %s (%s)", id, nr_strerror(rc), nr_client_error(C.client));
        state = nr_harness_kv(&r, "state");
        if (nr_harness_job_final(state)) break;
        nr_harness_sleep_ms(50);
    }
    s_require(!strcmp(state, "done"), "job %s is %s (%s)", id, state, nr_harness_kv(&r, "error_message"));
    nr_proto_msg_clear(&r);
}

TestSuite(client_it, .fini = s_teardown, .timeout = 280);

/* 100 SUBMITs in one call: each job gets code 0 and its own record (the id
 * it was given, queued or further), and all 100 run to the end. */
Test(client_it, batch_of_100_acknowledged_with_their_ids) {
    s_start(NULL, NULL);
    enum { N = 100 };
    static char ids[N][32], inputs[N][32];
    nr_client_job_t jobs[N];
    nr_msg_t replies[N];
    int codes[N];
    nr_kv_t opt = {"behave", "echo"};
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "batch-%03d", i);
        snprintf(inputs[i], sizeof inputs[i], "input %d", i);
        jobs[i] = (nr_client_job_t){ids[i], "test", &opt, 1, inputs[i], strlen(inputs[i]), NULL};
        nr_proto_msg_init(&replies[i]);
    }
    int rc = nr_client_submit_batch(C.client, jobs, N, replies, codes);
    s_require(rc == 0, "batch: %s (%s)", nr_strerror(rc), nr_client_error(C.client));
    for (int i = 0; i < N; i++) {
        s_require(codes[i] == 0, "job %d: %s", i, replies[i].message);
        s_require(replies[i].cmd == NR_CMD_REPLY, "job %d has no REPLY", i);
        s_require(!strcmp(nr_harness_kv(&replies[i], "id"), ids[i]), "job %d answered as %s", i,
                  nr_harness_kv(&replies[i], "id"));
        s_require(strcmp(nr_harness_kv(&replies[i], "existing"), "1"), "job %d was not new", i);
        s_require(!strcmp(nr_harness_kv(&replies[i], "route"), "test"), "job %d route %s", i,
                  nr_harness_kv(&replies[i], "route"));
    }
    for (int i = 0; i < N; i++) s_wait_done(ids[i]);
    /* The outputs are each job's own input. */
    nr_msg_t r;
    nr_proto_msg_init(&r);
    for (int i = 0; i < N; i += 33) {
        rc = nr_client_fetch(C.client, ids[i], "test", &r);
        s_require(rc == 0, "fetch %s: %s", ids[i], nr_client_error(C.client));
        s_require(r.frames_len == 1 && r.frames[0].size == strlen(inputs[i]) &&
                      !memcmp(r.frames[0].data, inputs[i], strlen(inputs[i])),
                  "job %s has another job's output", ids[i]);
    }
    nr_proto_msg_clear(&r);
    for (int i = 0; i < N; i++) nr_proto_msg_clear(&replies[i]);
}

/* Bad jobs fail alone, before the wire; the good ones around them are
 * queued; an id given twice is one job (existing=1); no id gets a new one. */
Test(client_it, batch_mixes_valid_and_invalid_jobs) {
    s_start(NULL, NULL);
    nr_client_job_t jobs[] = {
        {"mix-0", "test", NULL, 0, "a", 1, NULL},
        {"bad id!", "test", NULL, 0, "b", 1, NULL},
        {"mix-2", "test", NULL, 0, "c", 1, NULL},
        {"mix-3", "test,,test", NULL, 0, "d", 1, NULL},
        {"mix-0", "test", NULL, 0, "a", 1, NULL},
        {NULL, "test", NULL, 0, "e", 1, NULL},
        {"mix-6", NULL, NULL, 0, "f", 1, NULL},
    };
    enum { N = sizeof jobs / sizeof *jobs };
    nr_msg_t replies[N];
    int codes[N];
    for (int i = 0; i < N; i++) nr_proto_msg_init(&replies[i]);
    int rc = nr_client_submit_batch(C.client, jobs, N, replies, codes);
    s_require(rc == NR_EINVAL, "batch returned %d, wanted the first job error", rc);
    s_require(strstr(nr_client_error(C.client), "bad job id"), "error: %s", nr_client_error(C.client));
    const int want[N] = {0, NR_EINVAL, 0, NR_EINVAL, 0, 0, NR_EINVAL};
    for (int i = 0; i < N; i++)
        s_require(codes[i] == want[i], "job %d: code %d (%s), wanted %d", i, codes[i],
                  replies[i].message, want[i]);
    s_require(replies[1].cmd == NR_CMD_NONE && replies[1].code == NR_EINVAL &&
                  strstr(replies[1].message, "bad job id"),
              "job 1: %s", replies[1].message);
    s_require(strstr(replies[3].message, "bad route"), "job 3: %s", replies[3].message);
    s_require(!strcmp(nr_harness_kv(&replies[0], "id"), "mix-0") && !strcmp(nr_harness_kv(&replies[2], "id"), "mix-2"),
              "ids %s %s", nr_harness_kv(&replies[0], "id"), nr_harness_kv(&replies[2], "id"));
    s_require(!strcmp(nr_harness_kv(&replies[4], "id"), "mix-0") &&
                  !strcmp(nr_harness_kv(&replies[4], "existing"), "1"),
              "a second mix-0 is not the same job");
    const char *made = nr_harness_kv(&replies[5], "id");
    s_require(nr_client_id_valid(made) && strncmp(made, "mix-", 4), "the broker's id: '%s'", made);
    s_wait_done("mix-0");
    s_wait_done("mix-2");
    s_wait_done(made);
    nr_msg_t r;
    nr_proto_msg_init(&r);
    s_require(nr_client_status(C.client, "mix-3", &r) == NR_ENOTFOUND, "mix-3 reached the broker");
    nr_proto_msg_clear(&r);
    for (int i = 0; i < N; i++) nr_proto_msg_clear(&replies[i]);
}

/* --queue-bound 2 and one worker that holds one job for 300 ms: of 8 jobs
 * sent at once at most 3 fit. Without a busy wait the rest come back
 * NR_EBUSY; with one they are sent again until all are in, and run. */
Test(client_it, busy_answers_in_a_batch_are_retried) {
    const char *bound[] = {"--queue-bound", "2", "--log-level", "debug", NULL};
    s_start(bound, NULL);
    enum { N = 8 };
    static char ids[N][32];
    nr_client_job_t jobs[N];
    nr_msg_t replies[N];
    int codes[N];
    nr_kv_t opt = {"behave", "sleep:300"};
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "busy-%d", i);
        jobs[i] = (nr_client_job_t){ids[i], "test", &opt, 1, "x", 1, NULL};
        nr_proto_msg_init(&replies[i]);
    }
    int rc = nr_client_submit_batch(C.client, jobs, N, replies, codes);
    int busy = 0, ok = 0;
    for (int i = 0; i < N; i++) {
        if (codes[i] == NR_EBUSY) {
            busy++;
            s_require(strstr(replies[i].message, "full"), "busy job %d: %s", i, replies[i].message);
        } else {
            s_require(codes[i] == 0, "job %d: %s", i, replies[i].message);
            ok++;
        }
    }
    s_require(busy >= 1 && ok >= 1, "%d busy, %d queued of %d (queue bound 2)", busy, ok, N);
    s_require(rc == NR_EBUSY, "batch returned %d", rc);
    /* The same 8 again, waiting: the queued ones answer existing=1, the
     * others get in as the worker drains the queue. */
    nr_client_set_busy_wait(C.client, 60000);
    rc = nr_client_submit_batch(C.client, jobs, N, replies, codes);
    s_require(rc == 0, "batch with a busy wait: %s (%s)", nr_strerror(rc), nr_client_error(C.client));
    for (int i = 0; i < N; i++)
        s_require(codes[i] == 0 && !strcmp(nr_harness_kv(&replies[i], "id"), ids[i]), "job %d: %d %s", i,
                  codes[i], replies[i].message);
    /* 8 new ones: at most 3 fit at a time, so all 8 in means retries. */
    static char more[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(more[i], sizeof more[i], "busy-more-%d", i);
        jobs[i].id = more[i];
    }
    rc = nr_client_submit_batch(C.client, jobs, N, replies, codes);
    s_require(rc == 0, "second batch: %s (%s)", nr_strerror(rc), nr_client_error(C.client));
    for (int i = 0; i < N; i++) {
        s_require(codes[i] == 0 && !strcmp(nr_harness_kv(&replies[i], "id"), more[i]) &&
                      strcmp(nr_harness_kv(&replies[i], "existing"), "1"),
                  "job %d: %d %s", i, codes[i], replies[i].message);
    }
    for (int i = 0; i < N; i++) {
        s_wait_done(ids[i]);
        s_wait_done(more[i]);
    }
    for (int i = 0; i < N; i++) nr_proto_msg_clear(&replies[i]);
}

/* `narrate submit` puts its window in flight as batches: 9 files, window 4,
 * a broker whose queue holds 2 and a worker that takes 300 ms a job. Some
 * SUBMITs of a batch are refused busy and sent again later; every job ends
 * done, each once, and narrate exits 0. */
Test(client_it, narrate_submit_batches_its_window) {
    const char *bound[] = {"--queue-bound", "2", "--log-level", "debug", NULL};
    const char *slow[] = {"--behave", "sleep:300", NULL};
    char *narrate = nr_harness_program("narrate");
    if (!narrate) cr_skip_test("narrate is not built: %s", nr_harness_error());
    s_start(bound, slow);
    char *in = nr_harness_path(C.cl.dir, "in");
    cr_assert_eq(mkdir(in, 0700), 0);
    char *out = nr_harness_path(C.cl.dir, "out");
    char *log = nr_harness_path(C.cl.dir, "narrate.log");
    enum { N = 9 };
    for (int i = 0; i < N; i++) {
        char *p = nr_harness_path(C.cl.dir, "in/img-%d.png", i);
        char body[32];
        snprintf(body, sizeof body, "not really a png %d", i);
        cr_assert_eq(nr_harness_write_file(p, body, strlen(body)), 0, "%s", nr_harness_error());
        free(p);
    }
    const char *argv[] = {narrate, "--broker", C.cl.client_ep, "--timeout", "60", "submit", in,
                          "--route", "test", "--window", "4", "-o", out, NULL};
    int status = 0;
    cr_assert_eq(nr_harness_run(argv, NULL, log, 240000, &status), 0, "%s", nr_harness_error());
    char *text = nr_harness_read_file(log, NULL);
    cr_assert_not_null(text);
    s_require(nr_harness_exit_code(status) == 0, "exit code %d; narrate said: %s",
              nr_harness_exit_code(status), text);
    int done = 0;
    for (const char *p = text; (p = strstr(p, "done ")) != NULL; p += 5)
        if (p == text || p[-1] == '\n') done++;
    s_require(done == N, "%d 'done' lines of %d: %s", done, N, text);
    s_require(strstr(text, "narrate: 9 done, 0 failed, of 9 images"), "narrate said: %s", text);
    s_require(strstr(text, "queue is full; waiting and retrying"),
              "no SUBMIT was refused busy (queue bound 2, window 4): %s", text);
    for (int i = 0; i < N; i++) {
        char *rec = nr_harness_path(out, "img-%d.png.json", i);
        char *json = nr_harness_read_file(rec, NULL);
        s_require(json && strstr(json, "\"done\""), "%s: %s", rec, json ? json : "(missing)");
        free(json);
        free(rec);
    }
    free(text);
    free(log);
    free(out);
    free(in);
    free(narrate);
}

/* Redis stopped for 4 s while `narrate submit` has 40 images on the way:
 * the broker answers "redis unreachable (...); retry later" (NR_EREDIS) to
 * SUBMITs, and to STATUS/FETCH of what it no longer holds; narrate waits
 * and asks again, so every image ends done and every .json says done.
 * Once 283 of 300 images failed this way, and one .json said failed for a
 * job that finished. */
Test(client_it, narrate_submit_rides_out_a_redis_outage) {
    const char *slow[] = {"--behave", "sleep:100", NULL};
    char *narrate = nr_harness_program("narrate");
    if (!narrate) cr_skip_test("narrate is not built: %s", nr_harness_error());
    s_start(NULL, slow);
    char *in = nr_harness_path(C.cl.dir, "in");
    cr_assert_eq(mkdir(in, 0700), 0);
    char *out = nr_harness_path(C.cl.dir, "out");
    char *log = nr_harness_path(C.cl.dir, "narrate.log");
    enum { N = 40 };
    for (int i = 0; i < N; i++) {
        char *p = nr_harness_path(C.cl.dir, "in/img-%02d.png", i);
        char body[32];
        snprintf(body, sizeof body, "outage %d", i);
        cr_assert_eq(nr_harness_write_file(p, body, strlen(body)), 0, "%s", nr_harness_error());
        free(p);
    }
    const char *argv[] = {narrate, "--broker", C.cl.client_ep, "--timeout", "20", "submit", in,
                          "--route", "test", "--window", "4", "-o", out, NULL};
    nr_harness_proc_t *p = nr_harness_spawn(argv, NULL, log);
    cr_assert_not_null(p, "%s", nr_harness_error());
    nr_harness_sleep_ms(700); /* some done, most still to submit */
    cr_assert_eq(nr_harness_redis_stop(C.cl.redis, 1), 0);
    nr_harness_sleep_ms(4000);
    cr_assert_eq(nr_harness_redis_start(C.cl.redis), 0, "%s", nr_harness_error());
    int status = 0;
    int rc = nr_harness_proc_wait(p, 200000, &status);
    nr_harness_proc_destroy(&p);
    char *text = nr_harness_read_file(log, NULL);
    cr_assert_not_null(text);
    s_require(rc == 0, "narrate did not finish: %s", text);
    s_require(nr_harness_exit_code(status) == 0, "exit code %d; narrate said: %s",
              nr_harness_exit_code(status), text);
    s_require(strstr(text, "narrate: 40 done, 0 failed, of 40 images"), "narrate said: %s", text);
    s_require(strstr(text, "cannot use redis"), "redis was never missed (too fast?): %s", text);
    for (int i = 0; i < N; i++) {
        char *rec = nr_harness_path(out, "img-%02d.png.json", i);
        char *json = nr_harness_read_file(rec, NULL);
        s_require(json && strstr(json, "\"state\":\"done\""), "%s: %s", rec, json ? json : "(missing)");
        free(json);
        free(rec);
    }
    free(text);
    free(log);
    free(out);
    free(in);
    free(narrate);
}

/* Runs: `narrate submit` puts its jobs in a new run and says which first;
 * `narrate status --run` counts them by state and lists each failed one
 * with its error (exit 1 then), and an unknown run exits 5. */
Test(client_it, narrate_status_sums_up_a_run) {
    char *narrate = nr_harness_program("narrate");
    if (!narrate) cr_skip_test("narrate is not built: %s", nr_harness_error());
    s_start(NULL, NULL);
    char *in = nr_harness_path(C.cl.dir, "in");
    cr_assert_eq(mkdir(in, 0700), 0);
    char *out = nr_harness_path(C.cl.dir, "out");
    char *log = nr_harness_path(C.cl.dir, "narrate.log");
    for (int i = 0; i < 3; i++) {
        char *p = nr_harness_path(C.cl.dir, "in/run-%d.png", i);
        char body[32];
        snprintf(body, sizeof body, "run image %d", i);
        cr_assert_eq(nr_harness_write_file(p, body, strlen(body)), 0, "%s", nr_harness_error());
        free(p);
    }
    const char *submit[] = {narrate, "--broker", C.cl.client_ep, "submit", in, "--route", "test", "-o", out, NULL};
    int status = 0;
    cr_assert_eq(nr_harness_run(submit, NULL, log, 120000, &status), 0, "%s", nr_harness_error());
    char *text = nr_harness_read_file(log, NULL);
    s_require(text && nr_harness_exit_code(status) == 0, "narrate submit said: %s", text ? text : "");
    char run[NR_PROTO_ID_MAX + 1] = "";
    s_require(sscanf(text, "run %64s", run) == 1 && !strncmp(run, "run-", 4), "no run line first: %s", text);
    free(text);

    const char *sum[] = {narrate, "--broker", C.cl.client_ep, "status", "--run", run, NULL};
    cr_assert_eq(nr_harness_run(sum, NULL, log, 60000, &status), 0, "%s", nr_harness_error());
    text = nr_harness_read_file(log, NULL);
    s_require(text && nr_harness_exit_code(status) == 0, "exit %d: %s", nr_harness_exit_code(status), text);
    s_require(strstr(text, ": 3 jobs") && strstr(text, "  done      3"), "narrate status --run said: %s", text);
    free(text);

    /* A run with a job that fails for good, made with the library. */
    nr_kv_t fail = {"behave", "fail-final"};
    nr_client_job_t jobs[] = {{"mixed-ok", "test", NULL, 0, "a", 1, "mixed"},
                              {"mixed-bad", "test", &fail, 1, "b", 1, "mixed"}};
    nr_msg_t replies[2];
    int codes[2];
    for (int i = 0; i < 2; i++) nr_proto_msg_init(&replies[i]);
    cr_assert_eq(nr_client_submit_batch(C.client, jobs, 2, replies, codes), 0);
    cr_assert_eq(codes[0] | codes[1], 0);
    s_wait_done("mixed-ok");
    for (int i = 0; i < 2; i++) nr_proto_msg_clear(&replies[i]);
    const char *mixed[] = {narrate, "--broker", C.cl.client_ep, "--json", "status", "--run", "mixed", NULL};
    text = NULL;
    for (long long end = nr_harness_now_ms() + S_WAIT_MS;;) { /* until the failing job has failed */
        cr_assert_eq(nr_harness_run(mixed, NULL, log, 60000, &status), 0, "%s", nr_harness_error());
        free(text);
        text = nr_harness_read_file(log, NULL);
        if (!text || strstr(text, "\"failed\":1") || nr_harness_now_ms() > end) break;
        nr_harness_sleep_ms(50);
    }
    s_require(text && nr_harness_exit_code(status) == 1, "exit %d: %s", nr_harness_exit_code(status), text);
    s_require(strstr(text, "\"total\":2") && strstr(text, "\"done\":1") && strstr(text, "\"failed\":1"),
              "%s", text);
    s_require(strstr(text, "\"id\":\"mixed-bad\"") && strstr(text, "\"error\":\"bad_option\""), "%s", text);
    free(text);

    const char *none[] = {narrate, "--broker", C.cl.client_ep, "status", "--run", "no-such-run", NULL};
    cr_assert_eq(nr_harness_run(none, NULL, log, 60000, &status), 0, "%s", nr_harness_error());
    s_require(nr_harness_exit_code(status) == 5, "unknown run: exit %d", nr_harness_exit_code(status));
    free(log);
    free(out);
    free(in);
    free(narrate);
}
