/* Chaos tests: a real redis-server (appendonly yes, appendfsync always), a
 * real narrator-broker, several narrator-worker-test workers and speech
 * workers; while jobs run, workers are SIGKILLed and restarted, the broker
 * is SIGKILLed and restarted, and redis-server is restarted (SIGTERM and
 * SIGKILL, AOF on). Afterwards every job must be DONE or FAILED with a
 * reason, none lost, and each id must have exactly one final transition in
 * Redis (the P:events stream and the P:stats counters). Also: a worker that
 * stops answering (SIGSTOP) is declared dead, its job runs elsewhere, and
 * its late result after SIGCONT does not make a second one.
 *
 * Sizes come from the environment so that bench/soak.sh can run the same
 * checks on 100,000 jobs:
 *   NR_CHAOS_JOBS       jobs (default 1500)
 *   NR_CHAOS_SPREAD_MS  submissions are spread over this long, so faults hit
 *                       a busy system (default 30000; 0 = as fast as possible)
 *   NR_CHAOS_SEED       random seed (default 1)
 *
 * The test process is the parent of every process (so that they die with
 * it); jobs are submitted from a second thread with its own client. */
#include "client/client.h"
#include "common/error.h"
#include "proto/proto.h"
#include "tests/harness.h"

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_TEST_WORKERS 4
#define S_SPEECH_WORKERS 2
#define S_MAX_WORKERS (S_TEST_WORKERS + S_SPEECH_WORKERS)
#define S_WAIT_MS 240000
#define S_PREFIX "narrator"

typedef struct {
    char *dir;
    nr_harness_redis_t *redis;
    nr_harness_proc_t *broker;
    int broker_starts;
    int client_port, worker_port;
    char client_ep[64], worker_ep[64];
    char *broker_bin, *test_bin, *speech_bin;
    nr_harness_proc_t *workers[S_MAX_WORKERS];
    int worker_starts[S_MAX_WORKERS];
    nr_client_t *client; /* main thread's */
    /* figures */
    int worker_kills, broker_kills, redis_term, redis_kill, restarts;
} s_cluster_t;

static s_cluster_t C;

static void s_dump_logs(void) {
    if (C.redis) {
        char *log = nr_harness_path(nr_harness_redis_dir(C.redis), "redis.log");
        nr_harness_dump_log(log, 2000);
        free(log);
    }
    if (!C.dir) return;
    char *log = nr_harness_path(C.dir, "broker.log");
    nr_harness_dump_log(log, 8000);
    free(log);
    for (int i = 0; i < S_MAX_WORKERS; i++) {
        log = nr_harness_path(C.dir, "worker-%d.log", i);
        if (access(log, F_OK) == 0) nr_harness_dump_log(log, 2000);
        free(log);
    }
}

#define s_require(cond, ...) NR_HARNESS_REQUIRE(s_dump_logs, cond, __VA_ARGS__)

static long s_env_long(const char *name, long def) {
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : def;
}

/* ---- processes ---- */

static void s_broker_start(void) {
    char redis_port[16];
    snprintf(redis_port, sizeof redis_port, "%d", nr_harness_redis_port(C.redis));
    char *log = nr_harness_path(C.dir, "broker.log");
    const char *argv[] = {C.broker_bin,
                          "--client-endpoint", C.client_ep,
                          "--worker-endpoint", C.worker_ep,
                          "--redis-host", "127.0.0.1",
                          "--redis-port", redis_port,
                          "--max-attempts", "20",
                          "--retry-backoff-ms", "20",
                          "--heartbeat-ms", "250",
                          "--queue-bound", "10000000",
                          "--job-deadline-ms", "60000",
                          "--log-level", "info",
                          "--stages", NR_HARNESS_STAGES,
                          NULL};
    C.broker = nr_harness_spawn(argv, NULL, log);
    free(log);
    s_require(C.broker != NULL, "broker did not start: %s", nr_harness_error());
    C.broker_starts++;
    int rc = nr_harness_wait_port(C.client_port, 30000);
    if (rc == 0) rc = nr_harness_wait_port(C.worker_port, 30000);
    s_require(rc == 0, "broker is not listening: %s", nr_harness_error());
}

/* Starts (or restarts) worker slot i: test workers first, then speech. */
static void s_worker_start(int i, const char *behave_stage) {
    char name[64];
    int speech = i >= S_TEST_WORKERS;
    snprintf(name, sizeof name, "%s-%d-r%d", speech ? "speech" : "test", i, C.worker_starts[i]++);
    char *log = nr_harness_path(C.dir, "worker-%d.log", i);
    const char *argv[24];
    int n = 0;
    argv[n++] = speech ? C.speech_bin : C.test_bin;
    argv[n++] = "--broker", argv[n++] = C.worker_ep;
    argv[n++] = "--name", argv[n++] = name;
    argv[n++] = "--heartbeat-ms", argv[n++] = "250";
    argv[n++] = "--reconnect-ms", argv[n++] = "100";
    argv[n++] = "--reconnect-max-ms", argv[n++] = "1000";
    argv[n++] = "--log-level", argv[n++] = "info";
    if (!speech && behave_stage) argv[n++] = "--stage", argv[n++] = behave_stage;
    if (!speech) argv[n++] = "--capacity", argv[n++] = "2";
    argv[n] = NULL;
    C.workers[i] = nr_harness_spawn(argv, NULL, log);
    free(log);
    s_require(C.workers[i] != NULL, "worker %s did not start: %s", name, nr_harness_error());
}

static void s_setup(void) {
    memset(&C, 0, sizeof C);
    C.broker_bin = nr_harness_program("narrator-broker");
    if (!C.broker_bin) cr_skip_test("narrator-broker is not built: %s", nr_harness_error());
    C.test_bin = nr_harness_program("narrator-worker-test");
    if (!C.test_bin) cr_skip_test("narrator-worker-test is not built: %s", nr_harness_error());
    C.speech_bin = nr_harness_program("narrator-worker-speech");
    if (!C.speech_bin) cr_skip_test("narrator-worker-speech is not built: %s", nr_harness_error());
    C.dir = nr_harness_tempdir("chaos");
    cr_assert_not_null(C.dir, "%s", nr_harness_error());
    nr_harness_redis_params_t rp;
    nr_harness_redis_default_params(&rp); /* appendonly yes, appendfsync always */
    rp.timeout_ms = 120000;               /* a soak's AOF takes a while to load */
    C.redis = nr_harness_redis_new(&rp);
    cr_assert_not_null(C.redis, "redis-server did not start: %s", nr_harness_error());
    C.client_port = nr_harness_free_port();
    C.worker_port = nr_harness_free_port();
    cr_assert(C.client_port > 0 && C.worker_port > 0);
    snprintf(C.client_ep, sizeof C.client_ep, "tcp://127.0.0.1:%d", C.client_port);
    snprintf(C.worker_ep, sizeof C.worker_ep, "tcp://127.0.0.1:%d", C.worker_port);
    s_broker_start();
    C.client = nr_client_new(C.client_ep, 3000);
    cr_assert_not_null(C.client);
}

static void s_teardown(void) {
    nr_client_destroy(&C.client);
    for (int i = 0; i < S_MAX_WORKERS; i++) {
        if (C.workers[i]) {
            nr_harness_proc_kill(C.workers[i], SIGCONT);
            nr_harness_proc_stop(C.workers[i], SIGTERM, 5000, NULL);
        }
        nr_harness_proc_destroy(&C.workers[i]);
    }
    if (C.broker) nr_harness_proc_stop(C.broker, SIGTERM, 10000, NULL);
    nr_harness_proc_destroy(&C.broker);
    nr_harness_redis_destroy(&C.redis);
    if (C.dir && !getenv("NR_TEST_KEEP")) nr_harness_rmtree(C.dir);
    free(C.dir);
    free(C.broker_bin);
    free(C.test_bin);
    free(C.speech_bin);
    memset(&C, 0, sizeof C);
}

/* ---- client helpers ---- */

/* Waits until STATS reports at least n live workers for stage. */
static void s_wait_workers(const char *stage, long n) {
    long have = nr_harness_wait_workers(C.client, stage, n, S_WAIT_MS);
    s_require(have >= n, "stage %s has %ld live workers, wanted %ld", stage, have, n);
}

/* ---- Redis, read directly (the record the broker wrote) ---- */

static redisContext *s_redis(void) {
    struct timeval tv = {10, 0};
    redisContext *r = redisConnectWithTimeout("127.0.0.1", nr_harness_redis_port(C.redis), tv);
    s_require(r && !r->err, "cannot connect to redis: %s", r ? r->errstr : "no memory");
    return r;
}

static long s_hget_long(redisContext *r, const char *key, const char *field) {
    redisReply *rep = redisCommand(r, "HGET %s %s", key, field);
    long v = rep && rep->type == REDIS_REPLY_STRING ? strtol(rep->str, NULL, 10) : 0;
    freeReplyObject(rep);
    return v;
}

/* Final transitions per job, from the event stream. `index_of` maps an id to
 * its index (or -1). Returns how many stream entries were read; *first_seen
 * counts jobs whose first (queued) event is still in the stream, i.e. the
 * stream has not been trimmed past them. */
typedef int (*s_index_fn)(const char *id);

static long s_scan_events(redisContext *r, s_index_fn index_of, int *finals, int *queued_seen) {
    char start[64] = "-";
    long entries = 0;
    for (;;) {
        redisReply *rep = redisCommand(r, "XRANGE %s:events %s + COUNT 5000", S_PREFIX, start);
        s_require(rep && rep->type == REDIS_REPLY_ARRAY, "XRANGE failed: %s",
                  rep && rep->type == REDIS_REPLY_ERROR ? rep->str : r->errstr);
        size_t n = rep->elements;
        for (size_t i = 0; i < n; i++) {
            redisReply *e = rep->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) continue;
            snprintf(start, sizeof start, "(%s", e->element[0]->str);
            redisReply *f = e->element[1];
            const char *id = NULL, *state = NULL;
            for (size_t k = 0; k + 1 < f->elements; k += 2) {
                if (!strcmp(f->element[k]->str, "id")) id = f->element[k + 1]->str;
                if (!strcmp(f->element[k]->str, "state")) state = f->element[k + 1]->str;
            }
            entries++;
            int j = id ? index_of(id) : -1;
            if (j < 0 || !state) continue;
            if (!strcmp(state, "queued")) queued_seen[j] = 1;
            if (nr_harness_job_final(state)) finals[j]++;
        }
        freeReplyObject(rep);
        if (n < 5000) break;
    }
    return entries;
}

/* ---- the chaos run ---- */

static long s_jobs;

/* 1 when every chaos job's hash in Redis is in a final state. */
static int s_all_final_in_redis(void) {
    redisContext *r = s_redis();
    long pending = 0;
    for (long i = 0; i < s_jobs; i++) redisAppendCommand(r, "HGET %s:job:chaos-%ld state", S_PREFIX, i);
    for (long i = 0; i < s_jobs; i++) {
        redisReply *rep = NULL;
        if (redisGetReply(r, (void **)&rep) != REDIS_OK || !rep) {
            pending = 1;
            break;
        }
        if (rep->type != REDIS_REPLY_STRING || !nr_harness_job_final(rep->str)) pending++;
        freeReplyObject(rep);
    }
    redisFree(r);
    return pending == 0;
}

static long s_spread_ms;
static atomic_long s_submitted;
static atomic_int s_submit_failed;
static char s_submit_error[512];

static int s_index(const char *id) {
    if (strncmp(id, "chaos-", 6) != 0) return -1;
    char *end;
    long i = strtol(id + 6, &end, 10);
    return *end || i < 0 || i >= s_jobs ? -1 : (int)i;
}

/* Job i: every 10th goes to the speech workers, every 50th fails at once
 * (behave=fail-final, so FAILED bad_option is expected), the rest echo. */
static int s_is_speech(long i) { return i % 10 == 3; }
static int s_is_failing(long i) { return i % 50 == 7; }

static void s_input(long i, char *buf, size_t size) {
    if (s_is_speech(i)) snprintf(buf, size, "Chaos job %ld is spoken.", i);
    else snprintf(buf, size, "chaos input %ld", i);
}

static void *s_submitter(void *arg) {
    (void)arg;
    nr_client_t *client = nr_client_new(C.client_ep, 3000);
    if (!client) {
        snprintf(s_submit_error, sizeof s_submit_error, "no client");
        atomic_store(&s_submit_failed, 1);
        return NULL;
    }
    nr_client_set_busy_wait(client, 60000);
    long long start = nr_harness_now_ms();
    for (long i = 0; i < s_jobs; i++) {
        if (s_spread_ms > 0) {
            long long due = start + (long long)((double)s_spread_ms * (double)i / (double)s_jobs);
            long long now = nr_harness_now_ms();
            if (due > now) nr_harness_sleep_ms((int)(due - now));
        }
        char id[32], input[64];
        snprintf(id, sizeof id, "chaos-%ld", i);
        s_input(i, input, sizeof input);
        nr_kv_t kv = {"behave", s_is_failing(i) ? "fail-final" : "sleep:5"};
        nr_msg_t reply;
        nr_proto_msg_init(&reply);
        long long end = nr_harness_now_ms() + S_WAIT_MS;
        int rc = NR_ETIMEDOUT;
        /* SUBMIT with an id is idempotent: retry through broker and Redis
         * restarts until it is acknowledged. */
        int tries = 0;
        while (nr_harness_now_ms() < end) {
            /* A retry after a lost reply must not resubmit a job that the
             * first try created and that has FAILED since: SUBMIT of a
             * failed id runs it again (by design). So look first. */
            if (tries++ > 0 && nr_client_status(client, id, &reply) == 0) {
                rc = 0;
                break;
            }
            rc = nr_client_submit(client, id, s_is_speech(i) ? "speech" : "test", &kv,
                                  s_is_speech(i) ? 0 : 1, input, strlen(input), &reply);
            if (rc == 0) break;
            if (rc != NR_ECONNECT && rc != NR_ETIMEDOUT && rc != NR_EREDIS && rc != NR_EBUSY) break;
            nr_harness_sleep_ms(50);
        }
        nr_proto_msg_clear(&reply);
        if (rc != 0) {
            snprintf(s_submit_error, sizeof s_submit_error, "submit %s: %s (%s)", id, nr_strerror(rc),
                     nr_client_error(client));
            atomic_store(&s_submit_failed, 1);
            break;
        }
        atomic_store(&s_submitted, i + 1);
    }
    nr_client_destroy(&client);
    return NULL;
}

/* jobs.done + jobs.failed + jobs.cancelled from STATS (P:stats), or -1. */
static long s_finished(void) {
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    long v = -1;
    if (nr_client_stats(C.client, &reply) == 0) {
        v = nr_harness_kv_long(&reply, "jobs.done") + nr_harness_kv_long(&reply, "jobs.failed") +
            nr_harness_kv_long(&reply, "jobs.cancelled");
    }
    nr_proto_msg_clear(&reply);
    return v;
}

static long long s_last_broker_kill, s_last_redis_restart;

static void s_chaos_step(unsigned *seed) {
    int pick = rand_r(seed) % 100;
    /* The broker and Redis take seconds to come back (Redis reloads its
     * AOF, which grows to hundreds of MB in a soak): at most one broker
     * kill per 3 s and one Redis restart per 10 s, so the system spends
     * its time working under faults rather than restarting. */
    long long now = nr_harness_now_ms();
    if (pick >= 65 && pick < 80 && now - s_last_broker_kill < 3000) pick = rand_r(seed) % 65;
    if (pick >= 80 && now - s_last_redis_restart < 10000) pick = rand_r(seed) % 65;
    /* Force each kind of fault at least twice. */
    if (C.broker_kills < 2 && C.worker_kills > 4) pick = 70;
    if (C.redis_term + C.redis_kill < 2 && C.worker_kills > 8) pick = 90;
    if (pick < 50) { /* a test worker */
        int i = rand_r(seed) % S_TEST_WORKERS;
        nr_harness_proc_stop(C.workers[i], SIGKILL, 5000, NULL);
        nr_harness_proc_destroy(&C.workers[i]);
        C.worker_kills++;
        if (rand_r(seed) % 2) nr_harness_sleep_ms(rand_r(seed) % 500);
        s_worker_start(i, NULL);
        C.restarts++;
    } else if (pick < 65) { /* a speech worker */
        int i = S_TEST_WORKERS + rand_r(seed) % S_SPEECH_WORKERS;
        nr_harness_proc_stop(C.workers[i], SIGKILL, 5000, NULL);
        nr_harness_proc_destroy(&C.workers[i]);
        C.worker_kills++;
        s_worker_start(i, NULL);
        C.restarts++;
    } else if (pick < 80) { /* the broker */
        nr_harness_proc_stop(C.broker, SIGKILL, 5000, NULL);
        nr_harness_proc_destroy(&C.broker);
        C.broker_kills++;
        s_last_broker_kill = nr_harness_now_ms();
        nr_harness_sleep_ms(rand_r(seed) % 300);
        s_broker_start();
        C.restarts++;
    } else { /* redis-server: SIGTERM and SIGKILL in turn */
        int hard = (C.redis_term + C.redis_kill) % 2;
        s_require(nr_harness_redis_stop(C.redis, hard) == 0, "redis stop: %s", nr_harness_error());
        if (hard) C.redis_kill++;
        else C.redis_term++;
        nr_harness_sleep_ms(200 + rand_r(seed) % 800);
        s_require(nr_harness_redis_start(C.redis) == 0, "redis restart: %s", nr_harness_error());
        s_last_redis_restart = nr_harness_now_ms();
        C.restarts++;
    }
}

TestSuite(chaos, .init = s_setup, .fini = s_teardown, .timeout = 3600);

Test(chaos, kills_and_restarts_lose_nothing_and_finish_each_job_once) {
    s_jobs = s_env_long("NR_CHAOS_JOBS", 1500);
    s_spread_ms = s_env_long("NR_CHAOS_SPREAD_MS", 30000);
    unsigned seed = (unsigned)s_env_long("NR_CHAOS_SEED", 1);
    cr_assert(s_jobs > 0 && s_jobs < 100000000);
    for (int i = 0; i < S_MAX_WORKERS; i++) s_worker_start(i, NULL);
    s_wait_workers("test", S_TEST_WORKERS);
    s_wait_workers("speech", S_SPEECH_WORKERS);
    long long t0 = nr_harness_now_ms();
    atomic_store(&s_submitted, 0);
    atomic_store(&s_submit_failed, 0);
    pthread_t submitter;
    cr_assert_eq(pthread_create(&submitter, NULL, s_submitter, NULL), 0);

    /* Faults every 150..650 ms while jobs run: until everything is submitted
     * and 90% is finished, with at least 2 broker kills and 2 Redis restarts. */
    long long end = t0 + S_WAIT_MS * 10L;
    for (;;) {
        nr_harness_sleep_ms(150 + rand_r(&seed) % 500);
        long submitted = atomic_load(&s_submitted);
        long finished = s_finished();
        int enough = C.broker_kills >= 2 && C.redis_term + C.redis_kill >= 2;
        if (atomic_load(&s_submit_failed)) break;
        if (submitted == s_jobs && finished >= s_jobs * 9 / 10 && enough) break;
        s_require(nr_harness_now_ms() < end, "chaos: %ld submitted, %ld finished after %lld ms",
                  submitted, finished, nr_harness_now_ms() - t0);
        s_chaos_step(&seed);
    }
    long long chaos_ms = nr_harness_now_ms() - t0;
    pthread_join(submitter, NULL);
    s_require(!atomic_load(&s_submit_failed), "%s", s_submit_error);

    /* Let everything finish, then read the record straight from Redis. */
    long long drain_end = nr_harness_now_ms() + S_WAIT_MS;
    long finished = -1;
    int polls = 0;
    while (nr_harness_now_ms() < drain_end) {
        finished = s_finished();
        if (finished >= s_jobs) break;
        /* The counters could be wrong (that is checked below): every few
         * seconds, also look at the job hashes themselves. */
        if (++polls % 30 == 0 && s_all_final_in_redis()) break;
        nr_harness_sleep_ms(100);
    }
    nr_harness_sleep_ms(500); /* any late duplicate would show up now */
    redisContext *r = s_redis();
    long lost = 0, bad_final = 0, wrong_output = 0, done = 0, failed = 0, unexpected_fail = 0;
    char first_bad[256] = "";
    for (long i = 0; i < s_jobs; i++) {
        char key[96];
        snprintf(key, sizeof key, "%s:job:chaos-%ld", S_PREFIX, i);
        redisReply *rep = redisCommand(r, "HMGET %s state error error_message", key);
        s_require(rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3, "HMGET %s", key);
        const char *state = rep->element[0]->type == REDIS_REPLY_STRING ? rep->element[0]->str : "";
        const char *error = rep->element[1]->type == REDIS_REPLY_STRING ? rep->element[1]->str : "";
        const char *message = rep->element[2]->type == REDIS_REPLY_STRING ? rep->element[2]->str : "";
        if (!strcmp(state, "done")) {
            done++;
            if (s_is_failing(i)) unexpected_fail++;
            /* The stored output is this job's own, not another's. */
            char okey[96], want[64];
            snprintf(okey, sizeof okey, "%s:out:%s:chaos-%ld", S_PREFIX, s_is_speech(i) ? "speech" : "test", i);
            redisReply *out = redisCommand(r, "GET %s", okey);
            s_input(i, want, sizeof want);
            int ok = out && out->type == REDIS_REPLY_STRING &&
                     (s_is_speech(i) ? out->len > 44 && !memcmp(out->str, "RIFF", 4)
                                     : out->len == strlen(want) && !memcmp(out->str, want, out->len));
            if (!ok) {
                wrong_output++;
                if (!first_bad[0]) snprintf(first_bad, sizeof first_bad, "chaos-%ld: wrong output", i);
            }
            freeReplyObject(out);
        } else if (!strcmp(state, "failed")) {
            failed++;
            if (!*error || !*message) {
                bad_final++;
                if (!first_bad[0]) snprintf(first_bad, sizeof first_bad, "chaos-%ld: failed without a reason", i);
            } else if (!s_is_failing(i)) {
                unexpected_fail++;
                if (!first_bad[0])
                    snprintf(first_bad, sizeof first_bad, "chaos-%ld failed: %s: %s", i, error, message);
            } else if (strcmp(error, "bad_option") != 0) {
                bad_final++;
                if (!first_bad[0]) snprintf(first_bad, sizeof first_bad, "chaos-%ld: %s, wanted bad_option", i, error);
            }
        } else {
            lost++;
            if (!first_bad[0]) snprintf(first_bad, sizeof first_bad, "chaos-%ld is '%s'", i, state);
        }
        freeReplyObject(rep);
    }
    int *finals = calloc((size_t)s_jobs, sizeof *finals);
    int *queued_seen = calloc((size_t)s_jobs, sizeof *queued_seen);
    cr_assert(finals && queued_seen);
    long entries = s_scan_events(r, s_index, finals, queued_seen);
    long covered = 0, duplicated = 0, no_final_event = 0;
    for (long i = 0; i < s_jobs; i++) {
        if (!queued_seen[i]) continue; /* the stream was trimmed past this job */
        covered++;
        if (finals[i] > 1) {
            duplicated++;
            if (!first_bad[0]) snprintf(first_bad, sizeof first_bad, "chaos-%ld: %d final events", i, finals[i]);
        }
        if (finals[i] == 0) no_final_event++;
    }
    long stat_done = s_hget_long(r, S_PREFIX ":stats", "done");
    long stat_failed = s_hget_long(r, S_PREFIX ":stats", "failed");
    long stat_submitted = s_hget_long(r, S_PREFIX ":stats", "submitted");
    long stat_retried = s_hget_long(r, S_PREFIX ":stats", "retried");
    redisFree(r);
    free(finals);
    free(queued_seen);
    long long total_ms = nr_harness_now_ms() - t0;
    fprintf(stderr,
            "chaos: jobs %ld (done %ld, failed %ld of which expected %ld), %lld ms (%lld ms of faults); "
            "worker kills %d, broker kills %d, redis SIGTERM %d, redis SIGKILL %d, restarts %d; "
            "lost %ld, duplicated %ld, failed without reason %ld, wrong output %ld, unexpected failures %ld; "
            "P:stats submitted %ld done %ld failed %ld retried %ld; events read %ld covering %ld jobs\n",
            s_jobs, done, failed, (s_jobs + 42) / 50, total_ms, chaos_ms, C.worker_kills,
            C.broker_kills, C.redis_term, C.redis_kill, C.restarts, lost, duplicated, bad_final,
            wrong_output, unexpected_fail, stat_submitted, stat_done, stat_failed, stat_retried,
            entries, covered);
    s_require(lost == 0 && duplicated == 0 && bad_final == 0 && wrong_output == 0 &&
                  unexpected_fail == 0 && no_final_event == 0,
              "chaos found %ld lost, %ld duplicated, %ld bad failures, %ld wrong outputs, %ld "
              "unexpected failures, %ld without a final event; first: %s",
              lost, duplicated, bad_final, wrong_output, unexpected_fail, no_final_event, first_bad);
    /* The counters count transitions: one final one per job, no more. */
    s_require(stat_done + stat_failed == s_jobs, "P:stats done %ld + failed %ld != %ld jobs",
              stat_done, stat_failed, s_jobs);
    s_require(stat_submitted == s_jobs, "P:stats submitted %ld != %ld jobs", stat_submitted, s_jobs);
    s_require(C.broker_kills >= 2 && C.redis_term + C.redis_kill >= 2 && C.worker_kills >= 2,
              "too few faults: %d broker, %d redis, %d worker", C.broker_kills,
              C.redis_term + C.redis_kill, C.worker_kills);
}

/* A worker that stops answering (SIGSTOP) is declared dead after the missed
 * heartbeats and its job runs on another worker; when it is continued
 * (SIGCONT) its late RESULT is dropped: one final transition, the record
 * names the other worker, and the stopped worker comes back as a fresh one. */
Test(chaos, stopped_worker_is_dead_and_its_late_result_is_dropped) {
    s_worker_start(0, NULL);
    s_wait_workers("test", 1);
    nr_kv_t kv = {"behave", "sleep:1500"};
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = nr_client_submit(C.client, "stuck-1", "test", &kv, 1, "stuck input", 11, &reply);
    s_require(rc == 0, "submit: %s", nr_client_error(C.client));
    long long end = nr_harness_now_ms() + S_WAIT_MS;
    while (nr_harness_now_ms() < end) {
        cr_assert_eq(nr_client_status(C.client, "stuck-1", &reply), 0);
        if (!strcmp(nr_harness_kv(&reply, "state"), "running")) break;
        nr_harness_sleep_ms(20);
    }
    s_require(!strcmp(nr_harness_kv(&reply, "state"), "running"), "job is %s", nr_harness_kv(&reply, "state"));
    nr_harness_sleep_ms(100); /* the worker is inside its 1.5 s sleep */
    cr_assert_eq(nr_harness_proc_kill(C.workers[0], SIGSTOP), 0);
    s_worker_start(1, NULL);
    /* Declared dead (heartbeat 250 ms x 3), requeued, finished by worker 1. */
    while (nr_harness_now_ms() < end) {
        cr_assert_eq(nr_client_status(C.client, "stuck-1", &reply), 0);
        if (!strcmp(nr_harness_kv(&reply, "state"), "done")) break;
        nr_harness_sleep_ms(20);
    }
    s_require(!strcmp(nr_harness_kv(&reply, "state"), "done"), "job is %s", nr_harness_kv(&reply, "state"));
    s_require(!strncmp(nr_harness_kv(&reply, "test.worker"), "test-1-", 7), "finished by '%s'",
              nr_harness_kv(&reply, "test.worker"));
    s_require(nr_harness_kv_long(&reply, "attempts") == 2, "attempts %s", nr_harness_kv(&reply, "attempts"));
    /* Continue the stopped worker: it finishes its sleep and sends its RESULT
     * for a lease the broker has revoked; the broker drops it and tells the
     * worker to reconnect, after which it serves again. */
    cr_assert_eq(nr_harness_proc_kill(C.workers[0], SIGCONT), 0);
    s_wait_workers("test", 2);
    nr_harness_sleep_ms(2000); /* the late RESULT has been sent and handled */
    /* The late RESULT did reach the broker, which dropped it: as a stale
     * answer when the worker had registered again first, or as a message
     * from an unregistered worker when it came before the new READY. */
    char *log = nr_harness_path(C.dir, "broker.log");
    char *text = nr_harness_read_file(log, NULL);
    free(log);
    cr_assert_not_null(text);
    int sent_late = strstr(text, "stale RESULT for job stuck-1 attempt 1") != NULL ||
                    strstr(text, "RESULT from an unregistered worker") != NULL;
    free(text);
    s_require(sent_late, "the stopped worker's RESULT never reached the broker");
    cr_assert_eq(nr_client_status(C.client, "stuck-1", &reply), 0);
    s_require(!strcmp(nr_harness_kv(&reply, "state"), "done"), "job is now %s", nr_harness_kv(&reply, "state"));
    s_require(!strncmp(nr_harness_kv(&reply, "test.worker"), "test-1-", 7),
              "the late result replaced the record: worker '%s'", nr_harness_kv(&reply, "test.worker"));
    s_require(nr_harness_proc_running(C.workers[0]), "the continued worker died");
    nr_proto_msg_clear(&reply);
    redisContext *r = s_redis();
    s_jobs = 0;
    long done_events = 0;
    redisReply *rep = redisCommand(r, "XRANGE %s:events - +", S_PREFIX);
    cr_assert(rep && rep->type == REDIS_REPLY_ARRAY);
    for (size_t i = 0; i < rep->elements; i++) {
        redisReply *f = rep->element[i]->element[1];
        for (size_t k = 0; k + 1 < f->elements; k += 2)
            if (!strcmp(f->element[k]->str, "state") && !strcmp(f->element[k + 1]->str, "done")) done_events++;
    }
    freeReplyObject(rep);
    long stat_done = s_hget_long(r, S_PREFIX ":stats", "done");
    redisFree(r);
    fprintf(stderr, "chaos/sigstop: done events %ld, P:stats done %ld, late RESULT dropped: %d\n",
            done_events, stat_done, sent_late);
    s_require(done_events == 1 && stat_done == 1, "%ld done events, P:stats done %ld", done_events, stat_done);
    /* And the continued worker still does work. */
    cr_assert_eq(nr_harness_proc_kill(C.workers[1], SIGKILL), 0);
    nr_proto_msg_init(&reply);
    kv.value = "echo";
    rc = nr_client_submit(C.client, "stuck-2", "test", &kv, 1, "after", 5, &reply);
    s_require(rc == 0, "submit: %s", nr_client_error(C.client));
    while (nr_harness_now_ms() < end) {
        cr_assert_eq(nr_client_status(C.client, "stuck-2", &reply), 0);
        if (!strcmp(nr_harness_kv(&reply, "state"), "done")) break;
        nr_harness_sleep_ms(20);
    }
    s_require(!strcmp(nr_harness_kv(&reply, "state"), "done"), "job is %s", nr_harness_kv(&reply, "state"));
    nr_proto_msg_clear(&reply);
}
