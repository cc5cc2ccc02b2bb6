/* The broker's insides, shared by its files (not an API: broker.h is).
 *
 *   broker.c   helpers, lifecycle and recovery, group commit, timers
 *   workers.c  worker messages (READY, HEARTBEAT, RESULT, FAIL) and dispatch
 *   clients.c  client requests (SUBMIT, STATUS, FETCH, CANCEL, STATS)
 *
 * Single-threaded: one nr_broker_t is driven by one thread. */
#ifndef NR_BROKER_INTERNAL_H
#define NR_BROKER_INTERNAL_H

#include "broker/broker.h"
#include "broker/queue.h"
#include "common/metrics.h"
#include "common/ratelimit.h"

#include <stddef.h>
#include <stdint.h>

/* A message held until the Redis writes it depends on are settled: a
 * client REPLY (sent as is), the answer to a SUBMIT (built once its write
 * is settled: acknowledged, or refused) and a JOB (built from the lease,
 * which may have been revoked meanwhile). */
typedef enum { NR_BK_OUT_REPLY, NR_BK_OUT_ACK, NR_BK_OUT_JOB } nr_bk_out_kind_t;

typedef struct {
    nr_bk_out_kind_t kind;
    uint8_t identity[NR_BROKER_IDENTITY_MAX];
    size_t identity_size;
    nr_msg_t msg; /* REPLY: the reply; ACK: seq, id, message; JOB: id, attempt, deadline_ms */
} nr_bk_out_t;

typedef struct {
    nr_bk_out_t *v;
    size_t len, cap;
} nr_bk_outbox_t;

#define NR_BK_FLIGHTS_MAX 8 /* pipelined batches sent to Redis before the oldest is answered */
#define NR_BK_FETCH_TURN_BYTES (8u << 20) /* blob bytes read from Redis per loop turn */

/* A FETCH whose output is being read from Redis (nr_store_read_blob): its
 * REPLY but the frame, sent once the read is answered. */
typedef struct {
    uint64_t tag;
    uint8_t identity[NR_BROKER_IDENTITY_MAX];
    size_t identity_size;
    char what[NR_PROTO_NAME_MAX + 8]; /* "stage <name>" for an error message */
    nr_msg_t rep;
} nr_bk_fetch_t;

struct nr_broker {
    nr_broker_params_t params;
    nr_store_t *store; /* borrowed; NULL = memory only */
    nr_broker_send_fn send;
    void *send_ctx;
    nr_broker_jobs_t *jobs;    /* unfinished jobs, and finished ones not yet saved */
    nr_broker_stage_t *stages;
    int accepting;
    int recovered;             /* the store's pending jobs are loaded */
    int need_flush;            /* some job is dirty */
    int64_t next_timer_ms;
    uint64_t dispatch_seq;
    unsigned rand_state;
    /* Counters since start, for STATS when the store cannot answer. */
    uint64_t count_done, count_failed, count_cancelled;
    nr_metrics_t *metrics;     /* borrowed; NULL = no metrics (broker_metrics.h) */
    /* Group commit (see nr_bk_commit): out waits for the queued Redis writes;
     * each flight, oldest first, for a batch sent and not yet answered. */
    nr_bk_outbox_t out, spare;     /* spare: the outbox being sent, kept for reuse */
    struct nr_bk_flight {
        size_t saves;          /* how many saves the batch holds */
        nr_bk_outbox_t out;        /* what waits for them */
        int64_t sent_ms;
    } flights[NR_BK_FLIGHTS_MAX];
    size_t flight_first, flights_len; /* a ring */
    int depth;                 /* nested entry points; the outermost commits */
    int committing;
    int64_t now;               /* time of the current entry point (monotonic: timers) */
    int64_t wall_ms;           /* wall clock then (the record's created_ms/updated_ms) */
    nr_ratelimit_t *limit;     /* new jobs per client; NULL = no limit */
    uint64_t worker_serial;    /* last nr_broker_worker_t.serial given */
    /* FETCHes waiting for their blob, in the order the store answers. */
    nr_bk_fetch_t fetches[NR_STORE_READS_MAX];
    size_t fetch_first, fetches_len;
    uint64_t fetch_tag;
    nr_broker_backlog_fn backlog;  /* reply bytes queued per client; NULL = not counted */
    void *backlog_ctx;
    int64_t last_tick_ms;      /* end of the last tick: a longer gap is the broker's stall */
};

typedef struct {
    nr_broker_t *self;
    int64_t now;
    size_t resumed;
} nr_bk_recover_t;

/* ---- shared between the broker's files ---- */

/* Goes on with a SUBMIT whose save is settled. After the check of a new
 * id: when free, writes the job and comes back here once that landed; when
 * taken by a live job, forgets this one and answers with that job. After
 * the write: acknowledged and queued, or refused and forgotten when the
 * write failed. */
void nr_bk_ack(nr_broker_t *self, nr_bk_out_t *e);
void nr_bk_commit(nr_broker_t *self, int wait);
int nr_bk_dispatch(nr_broker_t *self, nr_broker_stage_t *s, int64_t now);
/* Answers the FETCHes whose blob came (all of them when wait). */
void nr_bk_fetch_answers(nr_broker_t *self, int wait);
/* Every entry point runs between nr_bk_enter and nr_bk_leave: the outermost
 * nr_bk_leave commits (nr_broker_begin/commit make one batch of many). */
void nr_bk_enter(nr_broker_t *self, int64_t now);
void nr_bk_fail(nr_broker_t *self, nr_broker_job_t *job, int code, const char *message,
                int64_t now);
void nr_bk_leave(nr_broker_t *self);
/* Holds msg (taken: left empty) for a peer until the next commit. */
int nr_bk_post(nr_broker_t *self, nr_bk_out_kind_t kind, const uint8_t *identity, size_t size,
               nr_msg_t *msg);
void nr_bk_random_id(nr_broker_t *self, char *out, size_t size);
void nr_bk_recover_one(const char *id, void *arg);
/* Takes a running job off its worker; the worker's slot stays taken until
 * it answers (or the lease's grace passes). */
void nr_bk_release(nr_broker_t *self, nr_broker_job_t *job);
/* Fills rep as the REPLY to req (code, message) and sends it at once. */
void nr_bk_reply(nr_broker_t *self, const uint8_t *identity, size_t size, const nr_msg_t *req,
                 nr_msg_t *rep, int code, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
/* Makes room for one more held message. 0 or NR_ENOMEM. */
int nr_bk_reserve(nr_broker_t *self);
/* An attempt went wrong (worker lost, deadline, retryable FAIL): queue it
 * again after a backoff, or fail it when the attempts are used up. */
void nr_bk_retry(nr_broker_t *self, nr_broker_job_t *job, int code, const char *message,
                 int64_t now);
/* Queues the job's state change (and takes *out, the output of route index
 * out_index); it is written at the next commit, before anything that
 * depends on it is sent. Memory only: kept at once. */
int nr_bk_save(nr_broker_t *self, nr_broker_job_t *job, int out_index, uint8_t **out,
               size_t out_size, nr_store_counter_t counter);
int nr_bk_send(nr_broker_t *self, nr_broker_side_t side, const uint8_t *identity, size_t size,
               const nr_msg_t *msg);
/* Returns nr_bk_send's code: NR_ECONNECT means the worker is gone. */
int nr_bk_send_cmd(nr_broker_t *self, nr_broker_worker_t *w, nr_cmd_t cmd, int64_t now);
/* Sends a held JOB, built from its lease: a lease revoked meanwhile
 * (cancel, requeue) is dropped unsent, so the worker's slot is free. */
void nr_bk_send_job(nr_broker_t *self, nr_bk_out_t *e);
/* Checks params' stages and stage-deadlines. 0 or NR_EINVAL (err says why). */
int nr_bk_check_stage_settings(const nr_broker_params_t *params, char *err, size_t errlen);
/* Makes the known stages, in the order listed. 0 or NR_ENOMEM. */
int nr_bk_make_stages(nr_broker_t *self);
/* The known stage of that name (params.stages), or NULL. */
nr_broker_stage_t *nr_bk_stage(nr_broker_t *self, const char *name);
/* The known stages as "vision,text,speech", for error messages. */
const char *nr_bk_stage_list(const nr_broker_t *self);
long nr_bk_stage_workers(nr_broker_t *self, const char *name);
nr_broker_worker_t *nr_bk_worker(nr_broker_t *self, const uint8_t *identity, size_t size);
/* Removes a worker; jobs it held are retried. */
void nr_bk_worker_delete(nr_broker_t *self, nr_broker_worker_t *w, int code, const char *reason,
                         int64_t now);

#endif
