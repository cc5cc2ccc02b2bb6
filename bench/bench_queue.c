/* bench_queue: the queue overhead of narrator, measured end to end.
 *
 * For each worker count it starts its own redis-server (AOF on,
 * noeviction), narrator-broker and that many narrator-worker-test
 * processes (one job at a time each), then:
 *   1. throughput: N jobs submitted through the client library with a window
 *      of W jobs in flight (each client sends the free slots, up to its
 *      share of W, as one pipelined nr_client_submit_batch); a job is
 *      finished when its "done" entry appears in the broker's Redis event
 *      stream (P:events, read with XREAD BLOCK on a second thread, so
 *      completion costs the broker nothing);
 *   2. latency: S jobs one at a time, submit to "done" event;
 *   3. a durability check: every job's hash in Redis says state=done and
 *      the event stream holds its queued, running and done entries.
 * Per setting it also reports the CPU each process spent per job (from
 * /proc, robust to a busy machine) and Redis commands and socket reads per
 * job (INFO stats; reads ~ round trips, the benchmark's own XREADs included).
 * The job is the test stage's `behave` option: echo (a no-op) by default,
 * sleep:<ms> for a fixed service time. One JSON object per setting goes to
 * stdout; logs of every process stay in the run folder on failure.
 *
 *   bench_queue --workers 1,2,4,8 --jobs 5000 --window 64 --latency 300
 *
 * This is a benchmark, not a test: nothing here is run by ctest. */
#include "client/client.h"
#include "common/error.h"
#include "proto/proto.h"
#include "tests/harness.h"

#include <hiredis/hiredis.h>

#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S_MAX_WORKERS 64
#define S_STAGE "test"

typedef struct {
    int workers[32];
    int n_settings;
    int jobs;
    int window;
    int latency;
    int warmup;
    int payload;
    char behave[64];
    char appendfsync[16];
    char broker[PATH_MAX];
    char worker[PATH_MAX];
    char label[64];
    int keep;
    int ipc;      /* ipc:// endpoints (one host) instead of TCP on loopback */
    int clients;
    int capacity;    /* each worker's credit (Celery's prefetch is 4 per process) */
    int concurrency; /* each worker's jobs running at once; 0 = its capacity */
} s_args_t;

typedef struct {
    int ok;
    double jobs_per_s;
    double p50, p99, mean;          /* one job at a time, ms */
    double load_p50, load_p99;      /* under the window, ms */
    long durable_done, events;
    double us_broker, us_redis, us_workers, us_client; /* CPU per job, throughput run */
    double redis_cmds;   /* Redis commands per job in the throughput run (all clients) */
    double redis_calls;  /* Redis socket reads per job: about one per round trip */
    char error[512];
} s_result_t;

/* ---- small helpers ---- */

static double s_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int s_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Percentile q (0..1) of a sorted array, nearest rank. */
static double s_pct(const double *v, int n, double q) {
    if (n <= 0) return 0;
    int i = (int)(q * n);
    if (i >= n) i = n - 1;
    return v[i];
}

static void s_usage(FILE *f) {
    fprintf(f,
            "Usage: bench_queue [options]\n"
            "Queue overhead of narrator: its own redis-server, narrator-broker and N\n"
            "narrator-worker-test workers; jobs/s with a window, then one-job latency.\n\n"
            "  --workers LIST       worker counts, comma-separated (default 1,2,4,8)\n"
            "  --jobs N             jobs in the throughput run (default 5000)\n"
            "  --window W           jobs in flight (default 64; 0 = 8 x workers)\n"
            "  --clients K          submitting clients (threads) sharing the window (default 1, max 16)\n"
            "  --capacity C         each worker's credit, jobs it holds at once (default 1)\n"
            "  --concurrency N      each worker's jobs running at once (default 0 = capacity)\n"
            "  --latency S          single-job samples (default 300; 0 skips)\n"
            "  --warmup N           jobs before measuring (default 200)\n"
            "  --payload BYTES      input frame size (default 16)\n"
            "  --behave B           echo | sleep:<ms> (default echo)\n"
            "  --appendfsync P      redis AOF policy: everysec | always (default everysec)\n"
            "  --broker PATH        narrator-broker binary (default: next to this program)\n"
            "  --worker PATH        narrator-worker-test binary (default: next to this program)\n"
            "  --label NAME         name in the output (default narrator)\n"
            "  --keep               keep the run folder (logs) after success\n"
            "  --ipc                the broker's endpoints as ipc:// (Unix sockets) instead of TCP\n");
}

static int s_parse_args(int argc, char **argv, s_args_t *a) {
    memset(a, 0, sizeof *a);
    a->workers[0] = 1, a->workers[1] = 2, a->workers[2] = 4, a->workers[3] = 8;
    a->n_settings = 4;
    a->jobs = 5000;
    a->window = 64;
    a->latency = 300;
    a->warmup = 200;
    a->payload = 16;
    a->clients = 1;
    a->capacity = 1;
    snprintf(a->behave, sizeof a->behave, "echo");
    snprintf(a->appendfsync, sizeof a->appendfsync, "everysec");
    snprintf(a->label, sizeof a->label, "narrator");
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return -1;
    self[n] = '\0';
    char *dir = dirname(self);
    snprintf(a->broker, sizeof a->broker, "%s/narrator-broker", dir);
    snprintf(a->worker, sizeof a->worker, "%s/narrator-worker-test", dir);
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            s_usage(stdout);
            exit(0); /* a program's main, not library code */
        }
        if (!strcmp(o, "--ipc")) {
            a->ipc = 1;
            continue;
        }
        if (!strcmp(o, "--keep")) {
            a->keep = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "bench_queue: %s needs a value (see --help)\n", o);
            return -1;
        }
        i++;
        if (!strcmp(o, "--workers")) {
            a->n_settings = 0;
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *t = strtok(buf, ","); t && a->n_settings < 32; t = strtok(NULL, ",")) {
                int w = atoi(t);
                if (w < 1 || w > S_MAX_WORKERS) {
                    fprintf(stderr, "bench_queue: worker count %s out of 1..%d\n", t, S_MAX_WORKERS);
                    return -1;
                }
                a->workers[a->n_settings++] = w;
            }
        } else if (!strcmp(o, "--jobs")) a->jobs = atoi(v);
        else if (!strcmp(o, "--window")) a->window = atoi(v);
        else if (!strcmp(o, "--clients")) a->clients = atoi(v);
        else if (!strcmp(o, "--capacity")) a->capacity = atoi(v);
        else if (!strcmp(o, "--concurrency")) a->concurrency = atoi(v);
        else if (!strcmp(o, "--latency")) a->latency = atoi(v);
        else if (!strcmp(o, "--warmup")) a->warmup = atoi(v);
        else if (!strcmp(o, "--payload")) a->payload = atoi(v);
        else if (!strcmp(o, "--behave")) snprintf(a->behave, sizeof a->behave, "%s", v);
        else if (!strcmp(o, "--appendfsync")) snprintf(a->appendfsync, sizeof a->appendfsync, "%s", v);
        else if (!strcmp(o, "--broker")) snprintf(a->broker, sizeof a->broker, "%s", v);
        else if (!strcmp(o, "--worker")) snprintf(a->worker, sizeof a->worker, "%s", v);
        else if (!strcmp(o, "--label")) snprintf(a->label, sizeof a->label, "%s", v);
        else {
            fprintf(stderr, "bench_queue: unknown option %s (see --help)\n", o);
            return -1;
        }
    }
    if (a->jobs < 1 || a->window < 0 || a->latency < 0 || a->warmup < 0 || a->payload < 0 ||
        a->payload > (1 << 26) || a->n_settings == 0 || a->clients < 1 || a->clients > 16 || a->capacity < 1 || a->capacity > 1024 ||
        a->concurrency < 0 || a->concurrency > 1024) {
        fprintf(stderr, "bench_queue: bad numbers (see --help)\n");
        return -1;
    }
    return 0;
}

/* CPU seconds (user + system, all threads) a process has used so far. */
static double s_cpu_s(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p) return 0;
    unsigned long ut = 0, st = 0;
    /* fields after the name: state(3) ... utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* A counter from INFO stats ("total_commands_processed"), or -1. */
static long long s_redis_stat(int port, const char *name) {
    redisContext *rc = redisConnect("127.0.0.1", port);
    redisReply *r = rc && !rc->err ? redisCommand(rc, "INFO stats") : NULL;
    long long v = -1;
    const char *p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, name) : NULL;
    if (p && p[strlen(name)] == ':') v = atoll(p + strlen(name) + 1);
    if (r) freeReplyObject(r);
    if (rc) redisFree(rc);
    return v;
}

/* ---- the event stream ---- */

/* Last entry id of the stream, or "0-0". */
static void s_stream_tail(redisContext *rc, char *out, size_t size) {
    snprintf(out, size, "0-0");
    redisReply *r = redisCommand(rc, "XREVRANGE narrator:events + - COUNT 1");
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements >= 1)
        snprintf(out, size, "%s", r->element[0]->element[0]->str);
    if (r) freeReplyObject(r);
}

/* Calls fn(job id, state) for each entry after *last (updated), waiting up
 * to block_ms. Returns entries read, or -1 on a Redis error. */
static int s_stream_read(redisContext *rc, char *last, size_t last_size, int block_ms,
                         void (*fn)(const char *id, const char *state, void *arg), void *arg) {
    redisReply *r = redisCommand(rc, "XREAD COUNT 1024 BLOCK %d STREAMS narrator:events %s",
                                 block_ms, last);
    if (!r) return -1;
    int n = 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
        redisReply *entries = r->element[0]->element[1];
        for (size_t i = 0; i < entries->elements; i++) {
            redisReply *e = entries->element[i];
            snprintf(last, last_size, "%s", e->element[0]->str);
            redisReply *kv = e->element[1];
            const char *id = NULL, *state = NULL;
            for (size_t k = 0; k + 1 < kv->elements; k += 2) {
                if (!strcmp(kv->element[k]->str, "id")) id = kv->element[k + 1]->str;
                else if (!strcmp(kv->element[k]->str, "state")) state = kv->element[k + 1]->str;
            }
            if (id && state) fn(id, state, arg);
            n++;
        }
    } else if (r->type == REDIS_REPLY_ERROR) {
        n = -1;
    }
    freeReplyObject(r);
    return n;
}

/* ---- one setting ---- */

typedef struct {
    const char *prefix; /* job ids are <prefix><index> */
    size_t prefix_len;
    int total;
    double *submitted; /* submit time per job */
    double *latency;   /* submit to done, ms */
    int done, failed;
    double last_done;
    sem_t slots;
    redisContext *rc;
    char last[64];
    int stop;
    int error;
    int nap_us; /* pause after each read of the stream */
} s_flow_t;

static void s_on_event(const char *id, const char *state, void *arg) {
    s_flow_t *f = arg;
    if (strncmp(id, f->prefix, f->prefix_len)) return;
    int done = !strcmp(state, "done");
    if (!done && strcmp(state, "failed") && strcmp(state, "cancelled")) return;
    int i = atoi(id + f->prefix_len);
    if (i < 0 || i >= f->total) return;
    double now = s_now();
    f->latency[i] = (now - f->submitted[i]) * 1e3;
    if (done) f->done++;
    else f->failed++;
    f->last_done = now;
    sem_post(&f->slots);
}

static void *s_reader(void *arg) {
    s_flow_t *f = arg;
    while (!f->stop && f->done + f->failed < f->total) {
        int n = s_stream_read(f->rc, f->last, sizeof f->last, 200, s_on_event, f);
        if (n < 0) {
            f->error = 1;
            break;
        }
        /* With a window, let entries gather between reads (one XREAD per
         * state change would load Redis with the benchmark's own reads);
         * one job at a time reads at once. */
        if (f->nap_us > 0 && n > 0) {
            struct timespec ts = {0, f->nap_us * 1000L};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

/* One submitting client: waits for a free window slot, takes every other
 * free one up to its share of the window, and submits that many jobs (the
 * next indexes) in one pipelined batch. */
typedef struct {
    s_flow_t *f;
    const s_args_t *a;
    const char *endpoint;
    const uint8_t *input;
    int *next;
    int share; /* most jobs one batch puts in flight */
    int rc;
} s_submitter_t;

static void *s_submitter(void *arg) {
    s_submitter_t *s = arg;
    s_flow_t *f = s->f;
    int share = s->share > 0 ? s->share : 1;
    nr_client_t *client = nr_client_new(s->endpoint, 30000);
    char (*ids)[64] = calloc((size_t)share, sizeof *ids);
    nr_client_job_t *jobs = calloc((size_t)share, sizeof *jobs);
    nr_msg_t *replies = calloc((size_t)share, sizeof *replies);
    int *codes = calloc((size_t)share, sizeof *codes);
    if (!client || !ids || !jobs || !replies || !codes) {
        s->rc = NR_ENOMEM;
        goto done;
    }
    nr_kv_t opt = {(char *)"behave", (char *)s->a->behave};
    for (;;) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 60;
        while (sem_timedwait(&f->slots, &until) != 0) {
            if (errno == ETIMEDOUT || f->error) {
                s->rc = NR_ETIMEDOUT;
                break;
            }
        }
        if (s->rc) break;
        int take = 1;
        while (take < share && sem_trywait(&f->slots) == 0) take++;
        int i = __atomic_fetch_add(s->next, take, __ATOMIC_SEQ_CST);
        int n = i >= f->total ? 0 : (f->total - i < take ? f->total - i : take);
        for (int k = n; k < take; k++) sem_post(&f->slots); /* slots past the last job */
        if (n == 0) break;
        for (int k = 0; k < n; k++) {
            snprintf(ids[k], sizeof ids[k], "%s%d", f->prefix, i + k);
            jobs[k] = (nr_client_job_t){ids[k], S_STAGE, &opt, 1, s->input, (size_t)s->a->payload, NULL};
            f->submitted[i + k] = s_now();
        }
        s->rc = nr_client_submit_batch(client, jobs, (size_t)n, replies, codes);
        if (s->rc) {
            for (int k = 0; k < n; k++)
                if (codes[k]) {
                    fprintf(stderr, "bench_queue: submit %s: %s (%s)\n", ids[k],
                            nr_strerror(codes[k]), replies[k].message);
                    break;
                }
            break;
        }
    }
done:
    if (replies)
        for (int k = 0; k < share; k++) nr_proto_msg_clear(&replies[k]);
    free(ids);
    free(jobs);
    free(replies);
    free(codes);
    nr_client_destroy(&client);
    return NULL;
}

/* Runs `total` jobs with `window` in flight from `clients` submitting
 * clients (threads); fills the flow's times. */
static int s_flow(const char *endpoint, int clients, int port, const s_args_t *a,
                  const char *prefix, int total, int window, const uint8_t *input,
                  double *elapsed, s_flow_t *f) {
    memset(f, 0, sizeof *f);
    f->prefix = prefix;
    f->prefix_len = strlen(prefix);
    f->total = total;
    f->nap_us = window > 1 ? 500 : 0;
    f->submitted = calloc((size_t)total, sizeof(double));
    f->latency = calloc((size_t)total, sizeof(double));
    struct timeval tv = {5, 0};
    f->rc = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!f->submitted || !f->latency || !f->rc || f->rc->err) return NR_ENOMEM;
    s_stream_tail(f->rc, f->last, sizeof f->last);
    sem_init(&f->slots, 0, (unsigned)window);
    pthread_t th, sub[16];
    s_submitter_t subs[16];
    if (clients < 1) clients = 1;
    if (clients > 16) clients = 16;
    if (pthread_create(&th, NULL, s_reader, f)) return NR_ENOMEM;
    int next = 0, started = 0, rc = 0;
    double t0 = s_now();
    for (int k = 0; k < clients; k++) {
        subs[k] = (s_submitter_t){f, a, endpoint, input, &next, (window + clients - 1) / clients, 0};
        if (pthread_create(&sub[k], NULL, s_submitter, &subs[k])) break;
        started++;
    }
    for (int k = 0; k < started; k++) {
        pthread_join(sub[k], NULL);
        if (!rc && subs[k].rc) rc = subs[k].rc;
    }
    if (!started) rc = NR_ENOMEM;
    /* Wait for the rest (60 s without progress is a failure). */
    double idle_since = s_now();
    int seen = -1;
    while (!rc && !f->error && __atomic_load_n(&f->done, __ATOMIC_SEQ_CST) +
                                       __atomic_load_n(&f->failed, __ATOMIC_SEQ_CST) < total) {
        int now_seen = f->done + f->failed;
        if (now_seen != seen) seen = now_seen, idle_since = s_now();
        if (s_now() - idle_since > 60) {
            rc = NR_ETIMEDOUT;
            break;
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    f->stop = 1;
    pthread_join(th, NULL);
    if (!rc && f->error) rc = NR_EREDIS;
    if (!rc && f->failed) rc = NR_EINTERNAL;
    *elapsed = f->last_done - t0;
    sem_destroy(&f->slots);
    return rc;
}

static void s_flow_free(s_flow_t *f) {
    free(f->submitted);
    free(f->latency);
    if (f->rc) redisFree(f->rc);
    memset(f, 0, sizeof *f);
}

/* Waits until STATS says `workers` workers serve the stage. */
static int s_wait_workers(nr_client_t *client, int workers, int timeout_ms) {
    long long end = nr_harness_now_ms() + timeout_ms;
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = NR_ETIMEDOUT;
    while (nr_harness_now_ms() < end) {
        if (nr_client_stats(client, &reply) == 0) {
            const char *w = nr_proto_kv_get(&reply, "workers." S_STAGE);
            if (w && atoi(w) >= workers) {
                rc = 0;
                break;
            }
        }
        nr_harness_sleep_ms(50);
    }
    nr_proto_msg_clear(&reply);
    return rc;
}

/* Counts jobs <prefix>0..n-1 whose hash says state=done (pipelined HGET). */
static long s_count_done(redisContext *rc, const char *prefix, int n) {
    long done = 0;
    for (int base = 0; base < n; base += 1000) {
        int m = n - base < 1000 ? n - base : 1000;
        for (int i = 0; i < m; i++)
            redisAppendCommand(rc, "HGET narrator:job:%s%d state", prefix, base + i);
        for (int i = 0; i < m; i++) {
            redisReply *r = NULL;
            if (redisGetReply(rc, (void **)&r) != REDIS_OK) return -1;
            if (r->type == REDIS_REPLY_STRING && !strcmp(r->str, "done")) done++;
            freeReplyObject(r);
        }
    }
    return done;
}

static void s_run_setting(const s_args_t *a, int workers, s_result_t *res) {
    memset(res, 0, sizeof *res);
    char *dir = nr_harness_tempdir("bench");
    nr_harness_redis_t *redis = NULL;
    nr_harness_proc_t *broker = NULL, *procs[S_MAX_WORKERS] = {0};
    nr_client_t *client = NULL;
    uint8_t *input = NULL;
    s_flow_t flow;
    memset(&flow, 0, sizeof flow);
    if (!dir) {
        snprintf(res->error, sizeof res->error, "tempdir: %s", nr_harness_error());
        return;
    }
    nr_harness_redis_params_t rp;
    nr_harness_redis_default_params(&rp);
    const char *extra[] = {"--appendfsync", a->appendfsync, NULL};
    rp.args = extra;
    redis = nr_harness_redis_new(&rp);
    if (!redis) {
        snprintf(res->error, sizeof res->error, "redis: %s", nr_harness_error());
        goto done;
    }
    int cport = a->ipc ? 0 : nr_harness_free_port(), wport = a->ipc ? 0 : nr_harness_free_port();
    char cep[PATH_MAX], wep[PATH_MAX], rport[16];
    if (a->ipc) {
        snprintf(cep, sizeof cep, "ipc://%s/clients.sock", dir);
        snprintf(wep, sizeof wep, "ipc://%s/workers.sock", dir);
    } else {
        snprintf(cep, sizeof cep, "tcp://127.0.0.1:%d", cport);
        snprintf(wep, sizeof wep, "tcp://127.0.0.1:%d", wport);
    }
    snprintf(rport, sizeof rport, "%d", nr_harness_redis_port(redis));
    char *blog = nr_harness_path(dir, "broker.log");
    const char *bargv[] = {a->broker, "--client-endpoint", cep, "--worker-endpoint", wep,
                           "--redis-port", rport, "--queue-bound", "1000000",
                           "--log-level", "warn", NULL};
    /* The stage served (in the environment: an older broker ignores it). */
    const char *benv[] = {"NARRATOR_BROKER_STAGES=" S_STAGE, NULL};
    broker = nr_harness_spawn(bargv, benv, blog);
    free(blog);
    /* (ipc: the workers' registration below shows the broker is up) */
    if (!broker ||
        (!a->ipc && (nr_harness_wait_port(cport, 10000) || nr_harness_wait_port(wport, 10000)))) {
        snprintf(res->error, sizeof res->error, "broker: %s", nr_harness_error());
        goto done;
    }
    for (int i = 0; i < workers; i++) {
        char *wlog = nr_harness_path(dir, "worker-%d.log", i);
        char name[32];
        snprintf(name, sizeof name, "bench-%d", i);
        char capacity[16], concurrency[16];
        snprintf(capacity, sizeof capacity, "%d", a->capacity);
        snprintf(concurrency, sizeof concurrency, "%d", a->concurrency);
        const char *wargv[] = {a->worker, "--broker", wep, "--stage", S_STAGE, "--name", name,
                               "--capacity", capacity, "--concurrency", concurrency,
                               "--log-level", "warn", NULL};
        procs[i] = nr_harness_spawn(wargv, NULL, wlog);
        free(wlog);
        if (!procs[i]) {
            snprintf(res->error, sizeof res->error, "worker: %s", nr_harness_error());
            goto done;
        }
    }
    client = nr_client_new(cep, 30000);
    if (!client || s_wait_workers(client, workers, 15000)) {
        snprintf(res->error, sizeof res->error, "workers did not register in 15 s");
        goto done;
    }
    input = malloc((size_t)a->payload + 1);
    if (!input) goto done;
    for (int i = 0; i < a->payload; i++) input[i] = (uint8_t)(i * 131 + 7);
    int window = a->window ? a->window : 8 * workers;
    int port = nr_harness_redis_port(redis);
    double elapsed = 0;
    int rc;
    if (a->warmup > 0) {
        rc = s_flow(cep, a->clients, port, a, "w", a->warmup, window, input, &elapsed, &flow);
        s_flow_free(&flow);
        if (rc) {
            snprintf(res->error, sizeof res->error, "warmup: %s", nr_strerror(rc));
            goto done;
        }
    }
    /* 1. throughput, with the CPU each process spent on it */
    pid_t rpid = 0;
    {
        redisContext *rc0 = redisConnect("127.0.0.1", port);
        redisReply *r = rc0 ? redisCommand(rc0, "INFO server") : NULL;
        const char *pp = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "process_id:") : NULL;
        if (pp) rpid = (pid_t)atoi(pp + 11);
        if (r) freeReplyObject(r);
        if (rc0) redisFree(rc0);
    }
    long long cmds0 = s_redis_stat(port, "total_commands_processed");
    long long reads0 = s_redis_stat(port, "total_reads_processed");
    double c0[4] = {s_cpu_s(nr_harness_proc_pid(broker)), rpid ? s_cpu_s(rpid) : 0, 0, s_cpu_s(getpid())};
    for (int i = 0; i < workers; i++) c0[2] += s_cpu_s(nr_harness_proc_pid(procs[i]));
    rc = s_flow(cep, a->clients, port, a, "t", a->jobs, window, input, &elapsed, &flow);
    double c1[4] = {s_cpu_s(nr_harness_proc_pid(broker)), rpid ? s_cpu_s(rpid) : 0, 0, s_cpu_s(getpid())};
    for (int i = 0; i < workers; i++) c1[2] += s_cpu_s(nr_harness_proc_pid(procs[i]));
    res->us_broker = (c1[0] - c0[0]) * 1e6 / a->jobs;
    res->us_redis = (c1[1] - c0[1]) * 1e6 / a->jobs;
    res->us_workers = (c1[2] - c0[2]) * 1e6 / a->jobs;
    res->us_client = (c1[3] - c0[3]) * 1e6 / a->jobs;
    /* Includes the benchmark's own XREADs of the event stream (a few per
     * read batch) and these INFO calls. */
    long long cmds1 = s_redis_stat(port, "total_commands_processed");
    long long reads1 = s_redis_stat(port, "total_reads_processed");
    res->redis_cmds = cmds0 >= 0 && cmds1 >= 0 ? (double)(cmds1 - cmds0) / a->jobs : -1;
    res->redis_calls = reads0 >= 0 && reads1 >= 0 ? (double)(reads1 - reads0) / a->jobs : -1;
    if (rc) {
        snprintf(res->error, sizeof res->error, "throughput run: %s (%d done, %d failed)",
                 nr_strerror(rc), flow.done, flow.failed);
        goto done;
    }
    res->jobs_per_s = a->jobs / elapsed;
    qsort(flow.latency, (size_t)a->jobs, sizeof(double), s_cmp_double);
    res->load_p50 = s_pct(flow.latency, a->jobs, 0.50);
    res->load_p99 = s_pct(flow.latency, a->jobs, 0.99);
    res->durable_done = s_count_done(flow.rc, "t", a->jobs);
    {
        redisReply *r = redisCommand(flow.rc, "XLEN narrator:events");
        if (r && r->type == REDIS_REPLY_INTEGER) res->events = r->integer;
        if (r) freeReplyObject(r);
    }
    s_flow_free(&flow);
    /* 2. latency, one job at a time */
    if (a->latency > 0) {
        rc = s_flow(cep, 1, port, a, "l", a->latency, 1, input, &elapsed, &flow);
        if (rc) {
            snprintf(res->error, sizeof res->error, "latency run: %s", nr_strerror(rc));
            goto done;
        }
        double sum = 0;
        for (int i = 0; i < a->latency; i++) sum += flow.latency[i];
        res->mean = sum / a->latency;
        qsort(flow.latency, (size_t)a->latency, sizeof(double), s_cmp_double);
        res->p50 = s_pct(flow.latency, a->latency, 0.50);
        res->p99 = s_pct(flow.latency, a->latency, 0.99);
        s_flow_free(&flow);
    }
    res->ok = 1;
done:
    s_flow_free(&flow);
    free(input);
    nr_client_destroy(&client);
    for (int i = 0; i < workers; i++) {
        if (procs[i]) nr_harness_proc_stop(procs[i], SIGTERM, 5000, NULL);
        nr_harness_proc_destroy(&procs[i]);
    }
    if (broker) nr_harness_proc_stop(broker, SIGTERM, 5000, NULL);
    if (!res->ok) {
        fprintf(stderr, "bench_queue: %d workers failed: %s\n", workers, res->error);
        if (broker) nr_harness_dump_log(nr_harness_proc_log(broker), 3000);
    }
    nr_harness_proc_destroy(&broker);
    nr_harness_redis_destroy(&redis);
    if (res->ok && !a->keep) nr_harness_rmtree(dir);
    else fprintf(stderr, "bench_queue: logs kept in %s\n", dir);
    free(dir);
}

int main(int argc, char **argv) {
    s_args_t a;
    if (s_parse_args(argc, argv, &a)) return 2;
    signal(SIGPIPE, SIG_IGN);
    int failures = 0;
    for (int s = 0; s < a.n_settings; s++) {
        s_result_t r;
        s_run_setting(&a, a.workers[s], &r);
        if (!r.ok) {
            printf("{\"system\": \"%s\", \"workers\": %d, \"behave\": \"%s\", \"error\": \"%s\"}\n",
                   a.label, a.workers[s], a.behave, r.error);
            failures++;
            continue;
        }
        printf("{\"system\": \"%s\", \"workers\": %d, \"behave\": \"%s\", \"jobs\": %d, "
               "\"window\": %d, \"clients\": %d, \"transport\": \"%s\", \"appendfsync\": \"%s\", "
               "\"jobs_per_s\": %.1f, "
               "\"latency_p50_ms\": %.3f, \"latency_p99_ms\": %.3f, \"latency_mean_ms\": %.3f, "
               "\"loaded_p50_ms\": %.3f, \"loaded_p99_ms\": %.3f, \"durable_done\": %ld, "
               "\"events\": %ld, \"cpu_us_per_job\": {\"broker\": %.0f, \"redis\": %.0f, "
               "\"workers\": %.0f, \"client\": %.0f}, \"redis_cmds_per_job\": %.1f, "
               "\"redis_reads_per_job\": %.2f}\n",
               a.label, a.workers[s], a.behave, a.jobs, a.window ? a.window : 8 * a.workers[s],
               a.clients, a.ipc ? "ipc" : "tcp", a.appendfsync, r.jobs_per_s, r.p50, r.p99, r.mean, r.load_p50, r.load_p99,
               r.durable_done, r.events, r.us_broker, r.us_redis, r.us_workers, r.us_client,
               r.redis_cmds, r.redis_calls);
        fflush(stdout);
    }
    return failures ? 1 : 0;
}
