/* The broker's logic: client requests, worker messages, dispatch by credit,
 * heartbeats, leases, deadlines, retries and the record in the store. It
 * owns no socket: messages go out through a send callback and time comes in
 * as an argument, so tests drive it directly. This header is the broker's
 * whole API (broker/main.c and broker_metrics.c use nothing else).
 *
 * Every `now` is monotonic milliseconds (nr_clock_mono_ms): heartbeats,
 * leases, deadlines, backoff and rate limits run on it, so a step of the
 * system clock neither revokes leases nor hides dead workers. The broker
 * reads the wall clock itself only for the record's created_ms and
 * updated_ms, which are stored and shown. No timer is stored: a restarted
 * broker requeues leased jobs at once (attempts kept).
 *
 * Not thread-safe: one thread drives a broker (narrator-broker's poll
 * loop). Messages passed in are borrowed for the call; the broker may take
 * payload frames out of them. Pointers it returns (nr_broker_find_job)
 * stay valid until the next call into the broker. */
#ifndef NR_BROKER_H
#define NR_BROKER_H

#include "broker/job.h"
#include "broker/store.h"
#include "proto/proto.h"

#include <stddef.h>
#include <stdint.h>

typedef enum { NR_BROKER_CLIENTS = 0, NR_BROKER_WORKERS = 1 } nr_broker_side_t;

/* Sends msg to the peer `identity` on one side. The broker keeps ownership
 * of msg. Returns 0, NR_ECONNECT when the peer is gone (a worker is then
 * removed and its jobs requeued at once), or another negative code (logged). */
typedef int (*nr_broker_send_fn)(void *ctx, nr_broker_side_t side, const uint8_t *identity,
                                 size_t identity_size, const nr_msg_t *msg);

typedef struct {
    long heartbeat_ms;        /* both ways */
    long heartbeat_liveness;  /* a worker is dead after this many missed heartbeats */
    long job_deadline_ms;     /* per stage default */
    char stage_deadlines[256];/* "vision=30000,text=60000": overrides per stage */
    long max_attempts;        /* per stage */
    long queue_bound;         /* queued jobs at a route's first stage before SUBMIT gets NR_EBUSY */
    long retry_backoff_ms;    /* first retry delay; doubles per attempt, with jitter */
    long retry_backoff_max_ms;
    unsigned seed;            /* jitter; 0 picks one */
    long client_rate;         /* new jobs per second per client (msg peer); 0 = no limit */
    long client_burst;        /* new jobs a client may submit at once before client_rate applies */
    int pipelined;            /* 1: commit does not wait for Redis (see nr_broker_commit) */
    /* The stages this broker serves, "vision,text,speech": READY or SUBMIT
     * naming another is refused (NR_EINVAL) and creates nothing. At most
     * NR_BROKER_STAGES_MAX, so STATS always holds every entry. */
    char stages[256];
    long queue_bound_total;   /* queued jobs at all stages together before SUBMIT gets NR_EBUSY */
    long unserved_timeout_ms; /* a job queued this long at a stage with no live worker fails
                               * with NR_ENOWORKER */
    long max_worker_credit;   /* a READY's capacity is cut to this */
    long worker_strikes;      /* leases expiring in a row, without an answer, before a
                               * worker is set aside */
    long worker_cooldown_ms;  /* how long a set-aside worker gets no new JOB (or until it answers) */
    long client_reply_bytes;  /* reply bytes a client may leave unread before it gets NR_EBUSY;
                               * 0 = no limit (needs nr_broker_set_backlog) */
} nr_broker_params_t;

#define NR_BROKER_STAGES_MAX 12 /* 4 STATS entries each, beside 16 for the totals */

typedef struct nr_broker nr_broker_t;

void nr_broker_default_params(nr_broker_params_t *params);
/* New broker, or NULL (bad params or out of memory; err says which). The
 * store is borrowed and may be NULL (memory only, for tests). */
nr_broker_t *nr_broker_new(const nr_broker_params_t *params, nr_store_t *store,
                           nr_broker_send_fn send, void *send_ctx, char *err, size_t errlen);
void nr_broker_destroy(nr_broker_t **p);

/* Connects the store and resumes every unfinished job it holds (running
 * ones go back to queued, attempts kept). With Redis down this returns
 * NR_EREDIS and the broker resumes when tick() gets it back. */
int nr_broker_start(nr_broker_t *self, int64_t now);

/* Group commit. Between begin and commit the broker handles any number of
 * messages but writes nothing yet: their Redis writes are queued into one
 * pipeline, and the replies and JOBs that depend on them are held. commit
 * writes them all in one round trip, then sends what was held (a SUBMIT is
 * acknowledged only once its write succeeded, refused if it failed). Every
 * other entry point below is a batch of its own when called outside. */
void nr_broker_begin(nr_broker_t *self, int64_t now);
void nr_broker_commit(nr_broker_t *self, int64_t now);
/* With params.pipelined, commit sends the writes and returns at once; what
 * depends on them goes out on a later commit (or tick) once Redis has
 * answered, and the messages read meanwhile have their writes sent in the
 * next round trip, so the broker and Redis work at the same time. Wait
 * for this socket to be readable (-1: nothing in flight) and call
 * begin/commit again. Requests that need a settled job (STATUS of a job
 * being written, a second SUBMIT of it, shutdown) still wait. */
int nr_broker_store_fd(const nr_broker_t *self);

/* Handles one decoded client request; answers with REPLY. The broker may
 * take payload frames out of msg. */
void nr_broker_client_message(nr_broker_t *self, const uint8_t *identity, size_t identity_size,
                              nr_msg_t *msg, int64_t now);
/* Answers a client message that failed to decode with an error REPLY. */
void nr_broker_client_error(nr_broker_t *self, const uint8_t *identity, size_t identity_size,
                            int code, const char *message);
/* Handles one decoded worker message. */
void nr_broker_worker_message(nr_broker_t *self, const uint8_t *identity, size_t identity_size,
                              nr_msg_t *msg, int64_t now);

/* Sends heartbeats, buries silent workers, requeues jobs past their
 * deadline, reconnects the store and flushes unsaved state, dispatches.
 * Returns the time by which it wants to be called again. */
int64_t nr_broker_tick(nr_broker_t *self, int64_t now);

/* Stops accepting SUBMIT (answered NR_EBUSY). */
void nr_broker_stop_accepting(nr_broker_t *self);
/* Shutdown: DISCONNECT to every worker, running jobs back to queued in the
 * store (attempts kept), last flush of unsaved state. */
void nr_broker_shutdown(nr_broker_t *self, int64_t now);

/* For tests and logs. */
nr_broker_job_t *nr_broker_find_job(nr_broker_t *self, const char *id);
size_t nr_broker_queued(nr_broker_t *self, const char *stage);
size_t nr_broker_workers(nr_broker_t *self, const char *stage);
/* Workers set aside for leases that keep expiring (see worker_strikes):
 * now, and since start. */
size_t nr_broker_workers_set_aside(nr_broker_t *self, const char *stage);
/* Credit left on the worker with this identity, or -1 if unknown. */
long nr_broker_worker_credit_of(nr_broker_t *self, const uint8_t *identity, size_t size);

/* Bytes of replies queued for a client and not yet written to its
 * connection (the transport counts them: main.c through libzmq's free
 * callbacks). With params.client_reply_bytes set, a client over it gets
 * NR_EBUSY instead of more replies, so one that sends FETCHes without
 * reading cannot grow the broker without bound. fn NULL: not counted. */
typedef size_t (*nr_broker_backlog_fn)(void *ctx, const uint8_t *identity, size_t identity_size);
void nr_broker_set_backlog(nr_broker_t *self, nr_broker_backlog_fn fn, void *ctx);
/* The socket to wait on for blob reads (FETCH) in flight; -1 when none.
 * When it is readable, call begin/commit (or tick): they answer what came. */
int nr_broker_fetch_fd(const nr_broker_t *self);

/* Metrics (broker_metrics.h lists the families). Borrows the registry
 * (NULL: none); the hooks then count into it. */
typedef struct nr_metrics nr_metrics_t;
void nr_broker_set_metrics(nr_broker_t *self, nr_metrics_t *metrics);
/* Calls fn once per stage the broker knows. */
void nr_broker_each_stage(nr_broker_t *self,
                          void (*fn)(const char *stage, size_t queued, size_t running,
                                     size_t workers, void *arg),
                          void *arg);
/* Jobs done, failed and cancelled: the store's counters when it answers,
 * else the broker's own counts since start. */
void nr_broker_final_counts(nr_broker_t *self, uint64_t *done, uint64_t *failed,
                            uint64_t *cancelled);

#endif
