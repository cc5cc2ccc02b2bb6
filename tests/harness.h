/* Test harness: real processes for tests. Free loopback ports, temporary
 * folders, a real redis-server as a child process, any program spawned with
 * its own arguments and environment and its output in a log file, the
 * programs of the build found through NR_BUILD_DIR, and the few questions
 * every integration test asks a broker (reply kv values, STATS, live
 * workers).
 *
 * Everything here is for tests: functions return 0 or a negative NR_E*
 * code (or NULL) and put the detail in nr_harness_error(); nothing exits.
 * Children are started so that they die with the test process (Linux
 * PR_SET_PDEATHSIG), so a test that Criterion kills on a timeout leaves no
 * redis-server or broker behind. */
#ifndef NR_TESTS_HARNESS_H
#define NR_TESTS_HARNESS_H

#include "client/client.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Detail of the last error in this thread ("" when none). */
const char *nr_harness_error(void);

/* ---- files and folders ---- */

/* Makes a fresh folder $TMPDIR/nr-<tag>-XXXXXX (tag may be NULL) and
 * returns its path (the caller frees it), or NULL. */
char *nr_harness_tempdir(const char *tag);
/* Removes a folder and everything under it (like rm -rf); 0 or NR_EIO. */
int nr_harness_rmtree(const char *path);
/* Reads a whole file into a malloc'd buffer with a NUL after the data
 * (not counted in *size); NULL when it cannot be read. */
char *nr_harness_read_file(const char *path, size_t *size);
/* Writes size bytes to path (created or truncated); 0 or NR_EIO. */
int nr_harness_write_file(const char *path, const void *data, size_t size);
/* Prints the last `max_bytes` of a file to stderr between marker lines
 * (for a failing test: what did the broker say?). */
void nr_harness_dump_log(const char *path, size_t max_bytes);
/* nr_harness_dump_log of dir/<name> for each name of a NULL-ended list;
 * does nothing when dir is NULL. */
void nr_harness_dump_logs(const char *dir, const char *const names[], size_t max_bytes);
/* malloc'd "dir/name" (printf-style name); NULL on no memory. */
char *nr_harness_path(const char *dir, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* For Criterion tests (criterion.h included before use): when cond is
 * false, calls dump() so the test's logs reach stderr, then
 * cr_assert_fail(...) with the given message. Each integration test wraps
 * it as s_require(cond, ...) with its own log dumper. */
#define NR_HARNESS_REQUIRE(dump, cond, ...)                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            dump();                                                                                \
            cr_assert_fail(__VA_ARGS__);                                                           \
        }                                                                                          \
    } while (0)

/* ---- build and source folders ---- */

/* $NR_BUILD_DIR/bin/<name> when that file is executable (caller frees),
 * else NULL with the reason in nr_harness_error(). */
char *nr_harness_program(const char *name);
/* $NR_SOURCE_DIR/<relative> when it exists (caller frees), else NULL. */
char *nr_harness_source_path(const char *relative);

/* ---- TCP ---- */

/* A TCP port on 127.0.0.1 that is free now (bound and released), or a
 * negative NR_E* code. Two calls in a row never return the same port. */
int nr_harness_free_port(void);
/* Waits until 127.0.0.1:port accepts a connection: 0, or NR_ETIMEDOUT. */
int nr_harness_wait_port(int port, int timeout_ms);
/* Sleeps ms milliseconds (restarted on signals). */
void nr_harness_sleep_ms(int ms);
/* Milliseconds on the monotonic clock. */
long long nr_harness_now_ms(void);

/* ---- processes ---- */

typedef struct nr_harness_proc_t nr_harness_proc_t;

/* Starts argv[0] (a path, or a name looked up in PATH) with argv (NULL-
 * terminated). The child gets this process's environment plus `env`
 * ("KEY=VALUE" strings, NULL-terminated, may be NULL), which override
 * variables of the same name; "KEY" alone (no '=') removes KEY. stdin is
 * /dev/null; stdout and stderr are appended to `log_path` (created), or
 * inherited when log_path is NULL. The child gets SIGKILL when this
 * process dies. It runs in its own process group: nr_harness_proc_stop's
 * SIGKILL and nr_harness_proc_destroy end the whole group (a shell and its
 * children), while nr_harness_proc_kill signals the child alone. Returns
 * NULL when the program cannot be started (missing, not executable: the
 * exec error is detected, not just a fast exit). */
nr_harness_proc_t *nr_harness_spawn(const char *const argv[], const char *const env[],
                                    const char *log_path);
/* Process id of the child. */
pid_t nr_harness_proc_pid(const nr_harness_proc_t *self);
/* Log file of the child, or NULL. */
const char *nr_harness_proc_log(const nr_harness_proc_t *self);
/* 1 while the child has not exited (reaps it when it has). */
int nr_harness_proc_running(nr_harness_proc_t *self);
/* Sends a signal; 0, or NR_ESTATE when the child has already exited. */
int nr_harness_proc_kill(nr_harness_proc_t *self, int sig);
/* Waits up to timeout_ms (< 0: forever) for the child to exit. Returns 0
 * and the raw wait status in *status (may be NULL), or NR_ETIMEDOUT. */
int nr_harness_proc_wait(nr_harness_proc_t *self, int timeout_ms, int *status);
/* Sends sig, waits up to timeout_ms, then SIGKILL and waits; then SIGKILLs
 * whatever is left in the child's process group. Returns 0 and the wait
 * status in *status (may be NULL). */
int nr_harness_proc_stop(nr_harness_proc_t *self, int sig, int timeout_ms, int *status);
/* Exit code when the child exited normally, -1 otherwise; signal number
 * when it was killed by a signal, 0 otherwise (from a wait status). */
int nr_harness_exit_code(int status);
int nr_harness_exit_signal(int status);
/* Kills the child (SIGKILL) if it still runs, reaps it, frees; safe twice. */
void nr_harness_proc_destroy(nr_harness_proc_t **self_p);

/* Runs a program to the end (spawn + wait). Returns 0 with the wait status
 * in *status, NR_ETIMEDOUT (the child is killed) or a spawn error. */
int nr_harness_run(const char *const argv[], const char *const env[], const char *log_path,
                   int timeout_ms, int *status);

/* ---- redis-server ---- */

typedef struct {
    int port;                /* 0: pick a free one */
    int appendonly;          /* 1: appendonly yes (appendfsync always), 0: no */
    const char *dir;         /* data folder; NULL: a fresh temporary one, removed on destroy */
    const char *const *args; /* extra redis-server arguments ("--maxmemory", "10mb", NULL) or NULL */
    const char *program;     /* redis-server binary; NULL: "redis-server" from PATH */
    int timeout_ms;          /* how long start waits for PING (default 10000) */
} nr_harness_redis_params_t;

typedef struct nr_harness_redis_t nr_harness_redis_t;

/* Defaults: port 0, appendonly 1, fresh dir, no extra args. */
void nr_harness_redis_default_params(nr_harness_redis_params_t *params);
/* Starts redis-server bound to 127.0.0.1 (log in <dir>/redis.log) and waits
 * until it answers PING; NULL on failure (the log is dumped to stderr). */
nr_harness_redis_t *nr_harness_redis_new(const nr_harness_redis_params_t *params);
int nr_harness_redis_port(const nr_harness_redis_t *self);
/* "redis://127.0.0.1:<port>" */
const char *nr_harness_redis_url(const nr_harness_redis_t *self);
const char *nr_harness_redis_dir(const nr_harness_redis_t *self);
/* 1 when the server runs and answers PING. */
int nr_harness_redis_alive(nr_harness_redis_t *self);
/* Stops the server, keeping the data folder: SIGTERM (redis writes its AOF
 * / RDB and exits), or SIGKILL when hard is 1 (a crash). 0 or an error. */
int nr_harness_redis_stop(nr_harness_redis_t *self, int hard);
/* Starts it again on the same port and folder (the AOF is loaded); waits
 * for PING (a loading server answers -LOADING, which is waited out). */
int nr_harness_redis_start(nr_harness_redis_t *self);
/* Stops (SIGTERM) and removes the folder if the harness made it; safe twice. */
void nr_harness_redis_destroy(nr_harness_redis_t **self_p);

/* Sends one command (argv, argc arguments) to 127.0.0.1:port and reads the
 * reply as text into out (out_size bytes, NUL-terminated, cut if needed):
 * a status or bulk string as is, an integer in decimal, nil as "(nil)",
 * an array as its elements one per line. Returns 0, or NR_EREDIS when the
 * reply is an error (its text is in out), NR_ECONNECT or NR_EIO. */
int nr_harness_redis_command(int port, int argc, const char *const argv[], char *out,
                             size_t out_size);
/* PING: 0 when the answer is PONG. */
int nr_harness_redis_ping(int port);

/* ---- a cluster: redis-server, narrator-broker and workers ---- */

#define NR_HARNESS_MAX_WORKERS 16

/* The processes of one integration test, on free loopback ports, with
 * their logs in one temporary folder. Tests keep it in a static struct
 * (Criterion runs each test in its own process) and read its fields. */
typedef struct {
    char *dir;                      /* temporary folder for the logs */
    nr_harness_redis_t *redis;
    nr_harness_proc_t *broker;      /* NULL until spawn_broker */
    int client_port, worker_port;
    char client_ep[64], worker_ep[64]; /* "tcp://127.0.0.1:<port>" */
    /* Flags every worker gets after --broker and --name (NULL-ended,
     * borrowed, may be NULL); set after start. */
    const char *const *worker_args;
    nr_harness_proc_t *workers[NR_HARNESS_MAX_WORKERS];
    int n_workers;
} nr_harness_cluster_t;

/* Clears self, makes the folder $TMPDIR/nr-<tag>-XXXXXX, starts a
 * redis-server with redis_params (NULL: the defaults) and picks the
 * broker's two ports. Returns 0 or an error (detail in nr_harness_error());
 * on error, nr_harness_cluster_stop cleans up what was started. */
int nr_harness_cluster_start(nr_harness_cluster_t *self, const char *tag,
                             const nr_harness_redis_params_t *redis_params);
/* Starts the broker `program` on the cluster's endpoints and Redis, with
 * extra flags (NULL-ended, may be NULL) and its output in <dir>/<log_name>,
 * and waits until both endpoints accept connections. 0 or an error (the
 * broker may then be running but not listening: self->broker is set). */
int nr_harness_cluster_spawn_broker(nr_harness_cluster_t *self, const char *program,
                                    const char *log_name, const char *const *extra);
/* Starts the worker `program` with --broker <worker_ep> --name <name>, then
 * self->worker_args, then extra (NULL-ended, may be NULL); its output goes
 * to <dir>/worker-<index>.log. Returns its index in self->workers, or a
 * negative error (no room, too many flags, not started). */
int nr_harness_cluster_spawn_worker(nr_harness_cluster_t *self, const char *program,
                                    const char *name, const char *const *extra);
/* Stops the workers (SIGTERM, 5 s) and the broker (SIGTERM, 10 s), stops
 * Redis, removes the folder unless NR_TEST_KEEP is set, and clears self;
 * safe twice and after a failed start. */
void nr_harness_cluster_stop(nr_harness_cluster_t *self);

/* The stages a broker started by the harness serves: the real ones and
 * narrator-worker-test's "test". */
#define NR_HARNESS_STAGES "vision,text,speech,test"

/* ---- asking the broker through nr_client ---- */

/* The value of key in a reply's kv, or "" when it has none. */
const char *nr_harness_kv(const nr_msg_t *msg, const char *key);
/* The value of key in a reply's kv as an integer, or -1 when it has none. */
long nr_harness_kv_long(const nr_msg_t *msg, const char *key);
/* A raw DEALER connected to a broker's worker endpoint that has said READY
 * for `stage` as `name` with `capacity` (through proto/, like a worker, but
 * then does only what the test makes it do: a hostile or silent worker).
 * NULL with nr_harness_error() set when it cannot connect or send. */
void *nr_harness_fake_worker(void *zctx, const char *endpoint, const char *stage, const char *name,
                             uint32_t capacity);
/* 1 when a job in `state` will not change any more (done, failed, cancelled). */
int nr_harness_job_final(const char *state);
/* A STATS value as an integer, or -1 when the broker does not answer or
 * has no such key. */
long nr_harness_stat(nr_client_t *client, const char *key);
/* Polls STATS until it counts at least n live workers for `stage`, for at
 * most timeout_ms. Returns the last count seen (-1: never answered), which is
 * below n when time ran out: the caller asserts, so that its message says
 * what was wanted and its own logs are dumped. */
long nr_harness_wait_workers(nr_client_t *client, const char *stage, long n, int timeout_ms);

#endif
