/* The worker runtime shared by every stage program (vision, text, speech).
 *
 * A stage program describes itself with an nr_worker_stage_t (name, default
 * capacity, a job handler and optionally a batch handler) and hands it to
 * the runtime, which does everything else: one DEALER socket to the broker,
 * READY, heartbeats both ways (also while handlers run: handlers run on their
 * own threads, the socket stays on the thread that called nr_worker_run),
 * reconnect with backoff when the broker goes quiet, RESULT / FAIL replies
 * with the attempt echoed, and a clean stop on SIGTERM.
 *
 * Threads: the runtime starts ceil(capacity / batch) handler threads, or
 * `concurrency` of them when that is set and smaller (the other jobs held
 * wait, ready to start the moment a thread is free: Celery's prefetch). With
 * more than one thread the handlers run concurrently, so `run` must be
 * thread-safe for the stage's ctx (or the stage keeps its own lock and
 * documents it).
 *
 *     static const nr_config_option_t s_options[] = {
 *         NR_WORKER_CONFIG_OPTIONS(my_settings_t, worker),
 *         {"model-dir", NR_CONFIG_STRING, 0, 0, "", offsetof(my_settings_t, model_dir), ...},
 *         NR_CONFIG_END};
 *     ...
 *     rc = nr_worker_config_load(s_options, &settings, argc, argv, "narrator-worker-vision", usage);
 *     nr_worker_stage_t stage = nr_worker_stage_default();
 *     stage.name = "vision"; stage.ctx = model; stage.run = s_run; stage.model = "vit-gpt2";
 *     return nr_worker_main(&stage, &settings.worker);
 */
#ifndef NR_WORKERS_WORKER_H
#define NR_WORKERS_WORKER_H

#include <stddef.h>

#include "common/config.h"
#include "proto/proto.h"

/* Settings every stage program shares; embed it in the program's own
 * settings struct and put NR_WORKER_CONFIG_OPTIONS in its config table. */
typedef struct {
    char broker[256];                 /* broker's worker endpoint */
    char name[NR_PROTO_NAME_MAX + 1]; /* worker name for logs; "" = stage-host-pid */
    long capacity;                    /* jobs held at once; 0 = the stage's default */
    long concurrency;                 /* handler calls running at once; 0 = capacity / batch size */
    long heartbeat_ms;                /* heartbeat period, both ways */
    long heartbeat_liveness;          /* broker dead after this many silent periods */
    long reconnect_ms;                /* first reconnect delay, doubled each time */
    long reconnect_max_ms;            /* ceiling for the reconnect delay */
    long grace_ms;                    /* on stop: how long running jobs may finish */
    long batch_size;                  /* jobs per run_batch call (1 = no batching) */
    long batch_wait_ms;               /* how long to wait for a batch to fill */
    char device[32];                  /* "cpu" or "cuda:N"; the stage interprets it */
    char log_level[16];               /* error|warn|info|debug */
    char curve_server_key[512];       /* broker's public key (Z85 or .pub path); "" = no CURVE */
    char curve_secret_key_file[512];  /* this worker's NAME.key (narrator-keygen) */
} nr_worker_settings_t;

#define NR_WORKER_ENV_PREFIX "NARRATOR_WORKER_"

/* Table entries for nr_worker_settings_t living in field `member` of the
 * settings struct `type`. */
#define NR_WORKER_CONFIG_OPTIONS(type, member)                                                     \
    {"broker", NR_CONFIG_STRING, 0, 0, "tcp://127.0.0.1:5556", offsetof(type, member.broker),     \
     sizeof(((type *)0)->member.broker), "broker endpoint for workers"},                           \
    {"name", NR_CONFIG_STRING, 0, 0, "", offsetof(type, member.name),                              \
     sizeof(((type *)0)->member.name), "worker name [a-z0-9_-] (default: stage-host-pid)"},       \
    {"capacity", NR_CONFIG_INT, 0, 1024, "0", offsetof(type, member.capacity), 0,                  \
     "jobs held at once (credit); 0 = the stage's default"},                                       \
    {"concurrency", NR_CONFIG_INT, 0, 1024, "0", offsetof(type, member.concurrency), 0,            \
     "handler calls running at once; the other held jobs wait ready; 0 = capacity / batch-size"},   \
    {"heartbeat-ms", NR_CONFIG_INT, 10, 60000, "1000", offsetof(type, member.heartbeat_ms), 0,     \
     "heartbeat period in ms"},                                                                    \
    {"heartbeat-liveness", NR_CONFIG_INT, 1, 100, "3", offsetof(type, member.heartbeat_liveness), \
     0, "missed heartbeats before the broker counts as dead"},                                     \
    {"reconnect-ms", NR_CONFIG_INT, 1, 600000, "1000", offsetof(type, member.reconnect_ms), 0,     \
     "first reconnect delay in ms (doubles on each failure)"},                                     \
    {"reconnect-max-ms", NR_CONFIG_INT, 1, 3600000, "32000",                                       \
     offsetof(type, member.reconnect_max_ms), 0, "longest reconnect delay in ms"},                 \
    {"grace-ms", NR_CONFIG_INT, 0, 3600000, "30000", offsetof(type, member.grace_ms), 0,          \
     "on SIGTERM, how long running jobs may take to finish"},                                      \
    {"batch-size", NR_CONFIG_INT, 1, 1024, "1", offsetof(type, member.batch_size), 0,              \
     "jobs per batch (stages with a batch handler)"},                                              \
    {"batch-wait-ms", NR_CONFIG_INT, 0, 10000, "10", offsetof(type, member.batch_wait_ms), 0,      \
     "how long to wait for a batch to fill"},                                                      \
    {"device", NR_CONFIG_STRING, 0, 0, "cpu", offsetof(type, member.device),                       \
     sizeof(((type *)0)->member.device), "compute device: cpu or cuda:N"},                         \
    {"log-level", NR_CONFIG_STRING, 0, 0, "info", offsetof(type, member.log_level),                \
     sizeof(((type *)0)->member.log_level), "error, warn, info or debug"},                         \
    {"curve-server-key", NR_CONFIG_STRING, 0, 0, "", offsetof(type, member.curve_server_key),      \
     sizeof(((type *)0)->member.curve_server_key),                                                 \
     "CURVE: the broker's public key (Z85 text or a .pub file); with curve-secret-key-file"},      \
    {"curve-secret-key-file", NR_CONFIG_STRING, 0, 0, "",                                          \
     offsetof(type, member.curve_secret_key_file), sizeof(((type *)0)->member.curve_secret_key_file), \
     "CURVE: this worker's key file from narrator-keygen (mode 0600)"}

/* Handles one job. Reads options with nr_proto_kv_get(job, "voice"), the
 * input from job->frames[0] (check job->frames_len), adds results with
 * nr_proto_kv_add(result, ...) and the output with nr_proto_frame_add /
 * nr_proto_frame_take(result, ...). The runtime fills in cmd, id, stage and
 * attempt, and adds "ms" (handler time) unless the handler did. Returns 0,
 * or an NR_E* code with a message in err; the job then FAILs (retry decided
 * by the stage's `retryable`), the worker keeps running. */
typedef int (*nr_worker_run_fn)(void *ctx, const nr_msg_t *job, nr_msg_t *result, char *err,
                                size_t errlen);

/* Handles n (1..batch-size) jobs at once: the same contract as run, per job:
 * fill results[i], set codes[i] to 0 or an NR_E* code, and on error a message
 * in errs[i] (errlen bytes each). One bad job should fail only itself. */
typedef void (*nr_worker_run_batch_fn)(void *ctx, const nr_msg_t *const *jobs, size_t n,
                                       nr_msg_t *const *results, int *codes, char *const *errs,
                                       size_t errlen);

/* 1 if another attempt may succeed for this error code, 0 if it is final. */
typedef int (*nr_worker_retryable_fn)(int code);

/* Optional per-thread setup, run on each handler thread (index 0..threads-1)
 * before it takes a job: the place for cudaSetDevice, CUDA streams, or a
 * per-thread run state (KV cache, scratch buffers). Store the context that
 * run / run_batch get on this thread in *thread_ctx (it starts as ctx).
 * Returns 0, or an NR_E* code with a message: nr_worker_run then returns
 * that code before connecting. thread_fini undoes it when the thread ends. */
typedef int (*nr_worker_thread_init_fn)(void *ctx, int index, void **thread_ctx, char *err,
                                        size_t errlen);
typedef void (*nr_worker_thread_fini_fn)(void *ctx, void *thread_ctx);

typedef struct {
    const char *name;                 /* stage: "vision", "text", "speech" */
    int capacity;                     /* default capacity when the setting is 0 */
    void *ctx;                        /* handed to run / run_batch */
    nr_worker_run_fn run;             /* required */
    nr_worker_run_batch_fn run_batch; /* optional; used when batch-size > 1 */
    nr_worker_retryable_fn retryable; /* optional; default nr_worker_retryable */
    nr_worker_thread_init_fn thread_init; /* optional */
    nr_worker_thread_fini_fn thread_fini; /* optional */
    const char *model;                /* READY kv "model" (may be NULL) */
    const char *version;              /* READY kv "version" (NULL = narrator's) */
    const char *voices;               /* READY kv "voices": "v1,v2" (NULL/"" = none; see
                                       * nr_proto_voices_check) */
} nr_worker_stage_t;

typedef struct nr_worker_t nr_worker_t;

/* The default rule: input errors (NR_ENOTIMAGE, NR_EIMAGE, NR_EIMAGEBOMB,
 * NR_ETEXT, NR_EVOICE, NR_EOPTION, NR_ETOOBIG, NR_EPROTO) are final (0),
 * everything else may be retried (1). */
int nr_worker_retryable(int code);

/* A stage with capacity 1 and the default retry rule; fill in the rest. */
nr_worker_stage_t nr_worker_stage_default(void);

/* Loads settings with nr_config_load (prefix NARRATOR_WORKER_) and prints
 * usage + the table on --help. Returns 0, 1 after --help (exit 0), or
 * NR_EINVAL after printing the error to stderr (exit 2). */
int nr_worker_config_load(const nr_config_option_t *table, void *settings, int argc, char **argv,
                          const char *program, const char *usage);

/* Makes a worker; copies what it needs from stage and settings (stage->ctx
 * is borrowed and must outlive the worker). Sets the log level and
 * component. Returns NULL on failure with a message in err. */
nr_worker_t *nr_worker_new(const nr_worker_stage_t *stage, const nr_worker_settings_t *settings,
                           char *err, size_t errlen);

/* Runs until stopped: connects, serves jobs, reconnects. Returns 0 after a
 * clean stop (running jobs finished, DISCONNECT sent), NR_ETIMEDOUT when the
 * grace period ran out with handlers still busy (then exit the process
 * without freeing the stage's ctx: those threads still use it), or another
 * NR_E* code on a setup failure. Call once per worker. */
int nr_worker_run(nr_worker_t *self);

/* Asks a running worker to stop: no new jobs, finish the running ones.
 * Async-signal-safe and thread-safe; may be called before nr_worker_run. */
void nr_worker_stop(nr_worker_t *self);

/* Installs SIGTERM and SIGINT handlers that call nr_worker_stop(self), and
 * ignores SIGPIPE. One worker per process. */
int nr_worker_handle_signals(nr_worker_t *self);

/* Jobs finished since start (RESULT and FAIL) - for tests and logs. */
unsigned long nr_worker_jobs_done(const nr_worker_t *self);

/* Frees the worker; safe to call twice. Joins handler threads unless the
 * grace period ran out (then they are left running and their memory kept). */
void nr_worker_destroy(nr_worker_t **self_p);

/* The usual main(): new, handle_signals, run, destroy. Returns the exit
 * status: 0 on a clean stop, 1 otherwise. */
int nr_worker_main(const nr_worker_stage_t *stage, const nr_worker_settings_t *settings);

#endif
