/* The broker's record in Redis: every Redis call the broker makes is here.
 *
 * Keys (P = prefix, default "narrator"):
 *   P:job:<id>           hash: the job record (CONTRACTS.md fields + stage_index)
 *   P:input:<id>         string: the submitted input frame
 *   P:out:<stage>:<id>   string: that stage's output frame; stage "thumbnail"
 *                        (reserved): the job's thumbnail (RESULT frame 1, job.h)
 *   P:pending:<stage>    sorted set: ids of unfinished jobs at that stage
 *                        (queued or running), score = enqueue time in ms
 *   P:stages             set: every stage name that ever had a pending job
 *   P:events             stream (capped): id, state, stage, attempts, error
 *   P:stats              hash: counters submitted, done, failed, cancelled, retried
 *   P:run:<run>          sorted set: ids of the jobs submitted in a run (SUBMIT's
 *                        `run`), score = the job's created_ms; kept like job hashes
 * Binary keys have no TTL while their job is unfinished and get the
 * retention TTL when it finishes; the job hashes are kept.
 *
 * Reads are synchronous with a short timeout, but blobs (outputs, inputs)
 * are read in the background (nr_store_read_blob); saves are pipelined and may
 * be answered while the broker works on (see nr_store_save and
 * nr_store_send). When Redis is unreachable every call returns NR_EREDIS
 * at once and nr_store_maintain() reconnects with backoff (1 s doubling
 * to 32 s).
 *
 * Not thread-safe: the store belongs to the broker's one thread. Strings
 * it returns (nr_store_error) live until the next call into the store;
 * blobs and jobs it hands out (nr_store_get_blob, nr_store_load) are the
 * caller's. */
#ifndef NR_BROKER_STORE_H
#define NR_BROKER_STORE_H

#include "broker/job.h"
#include "proto/proto.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char host[256];
    long port;
    char password[256];
    char prefix[64];
    long retention_s;   /* TTL of binary keys once their job is finished */
    long timeout_ms;    /* connect and command timeout */
    long events_max;    /* approximate cap of the event stream */
} nr_store_params_t;

typedef struct nr_store nr_store_t;

void nr_store_default_params(nr_store_params_t *params);
/* New store (not connected yet), or NULL. */
nr_store_t *nr_store_new(const nr_store_params_t *params);
void nr_store_destroy(nr_store_t **p);

/* Connects (and authenticates); logs the outcome. On the first success it
 * warns when maxmemory-policy is not noeviction or appendonly is off.
 * Returns 0 or NR_EREDIS. */
int nr_store_connect(nr_store_t *self);
int nr_store_is_up(const nr_store_t *self);
/* Reconnects when down and the backoff has passed. Returns 1 when it just
 * came back up, 0 otherwise. */
int nr_store_maintain(nr_store_t *self, int64_t now);
/* Earliest time maintain() wants to run (INT64_MAX when up). */
int64_t nr_store_next_retry_ms(const nr_store_t *self);
/* Last error text. */
const char *nr_store_error(const nr_store_t *self);
/* Failed Redis operations so far (lost connections, failed connects,
 * commands answered with an error), for metrics. */
uint64_t nr_store_errors(const nr_store_t *self);

/* The P:stats counters a save can raise by one (their names in Redis are
 * the lower-case words: "submitted", "done", ...). An enum rather than a
 * name, so a misspelt counter does not compile instead of counting
 * nothing. */
typedef enum {
    NR_STORE_COUNT_NONE = -1,
    NR_STORE_SUBMITTED = 0,
    NR_STORE_DONE,
    NR_STORE_FAILED,
    NR_STORE_CANCELLED,
    NR_STORE_RETRIED,
    NR_STORE_COUNTERS
} nr_store_counter_t;

/* Group commit. A save queues the commands of the job's state (the
 * whole record the first time and after any failed save; afterwards only
 * what changed since the last landed save: job.h stored.record_saved), its
 * pending-set membership, the input if unsaved, the output
 * *out of route index out_index (-1 for none) and any outputs kept from
 * earlier failed writes, TTLs when final, one event, and `counter` (+1 in
 * P:stats, or NR_STORE_COUNT_NONE) into the open transaction (MULTI ... EXEC, the
 * counters summed into one HINCRBY each at its end); nothing is sent until
 * nr_store_send (or nr_store_commit), which sends every queued save at once,
 * so N state changes cost one round trip. A read (load, get_blob,
 * pending, stats) first sends and reads what is queued.
 *
 * nr_store_save takes ownership of *out (set to NULL; may be NULL). It
 * returns 0 when the save is queued (job->saving is raised, job->dirty
 * cleared: what the job kept from failed writes now travels with this save),
 * or NR_EREDIS at once when Redis is down (the job is dirty and keeps the
 * output for a later save). */
int nr_store_save(nr_store_t *self, nr_broker_job_t *job, int out_index, uint8_t **out,
                  size_t out_size, nr_store_counter_t counter);
/* A job whose job->guard is NR_STORE_GUARD when saved (a SUBMIT of an id
 * not in the broker's memory) is only checked: the save is one HGET of the
 * state of the record that has the id, and writes nothing (its counter is
 * owed to the next save). Once committed without error, job->guard says
 * what Redis holds; the broker then writes the job with a second save
 * (job->reset set when it replaces a failed or cancelled record), or
 * answers with the live job that has the id. The broker is the record's
 * only writer, so nothing comes between the check and the write. */
#define NR_STORE_GUARD 1    /* asked: is the id free? */
#define NR_STORE_NEW 2      /* free: no record has it */
#define NR_STORE_REPLACED 3 /* free: a failed or cancelled job's record has it */
#define NR_STORE_EXISTS 4   /* taken: a live job has it */

/* Sends the queued saves, reads their replies and settles each job in queue
 * order: on success nothing more is owed; on failure the job is dirty again
 * and keeps what that save carried (outputs, counts, input) for a later
 * save. After each save is settled, fn(job, rc, arg) is called with
 * job->saving already lowered; fn may destroy the job when job->saving is 0
 * and must not call the store. */
void nr_store_commit(nr_store_t *self, void (*fn)(nr_broker_job_t *job, int rc, void *arg),
                     void *arg);
/* Saves queued and not yet sent. */
size_t nr_store_queued(const nr_store_t *self);

/* The same commit in two halves, so the broker works on while Redis
 * writes: nr_store_send sends every queued save (returns how many; sends
 * may follow each other before any is answered, Redis answers in order);
 * nr_store_answered reads the replies that have come, never waiting, and
 * returns 1 once the first n sent saves have theirs (or the connection is
 * lost); meanwhile nr_store_fd is the socket to wait on (-1 when nothing
 * is in flight). nr_store_settle waits for what is still missing of the
 * first n sent saves and settles them, as nr_store_commit does; the rest
 * stay. nr_store_commit = nr_store_send + nr_store_settle of all sent. */
size_t nr_store_send(nr_store_t *self);
int nr_store_answered(nr_store_t *self, size_t n);
int nr_store_fd(const nr_store_t *self);
void nr_store_settle(nr_store_t *self, size_t n, void (*fn)(nr_broker_job_t *job, int rc, void *arg),
                     void *arg);
/* Sends and reads what is queued but settles no job (their jobs are about
 * to be destroyed: a broker going away). */
void nr_store_discard(nr_store_t *self);
/* Loads the record of `id` into a new job (no input). NR_ENOTFOUND when there
 * is no such job, NR_EREDIS, NR_ENOMEM. */
int nr_store_load(nr_store_t *self, const char *id, nr_broker_job_t **job);
/* Reads a binary value: the job's input (stage NULL) or a stage's output.
 * *data is malloc'd (the caller frees it). NR_ENOTFOUND or NR_EREDIS. */
int nr_store_get_blob(nr_store_t *self, const char *id, const char *stage, uint8_t **data,
                      size_t *size);
/* Blob reads that never wait, for FETCH: a 32 MiB output read at once
 * held the broker's loop for the whole transfer. nr_store_read_blob sends
 * a GET of the job's input (stage NULL) or a stage's output on the store's
 * second connection (opened on first use) and returns: 0, NR_EBUSY when
 * NR_STORE_READS_MAX reads are in flight, or NR_EREDIS. nr_store_read_fd
 * is the socket to wait on (-1: no read in flight). nr_store_read_next
 * reads what has come, at most about max_bytes from the socket, and never
 * waits unless `wait` (then up to the store's timeout): it returns 1 with
 * the oldest read's tag, *rc (0, NR_ENOTFOUND or NR_EREDIS) and, when 0,
 * *data (malloc'd, the caller's) and *size once its reply is whole; 0 when
 * no reply is whole yet. A lost connection answers every read in flight
 * with NR_EREDIS. */
#define NR_STORE_READS_MAX 8
int nr_store_read_blob(nr_store_t *self, const char *id, const char *stage, uint64_t tag);
int nr_store_read_fd(const nr_store_t *self);
int nr_store_read_next(nr_store_t *self, size_t max_bytes, int wait, uint64_t *tag, int *rc,
                       uint8_t **data, size_t *size);
/* Calls fn for every id in the pending sets, oldest first. */
int nr_store_pending(nr_store_t *self, void (*fn)(const char *id, void *arg), void *arg);
/* Adds id to the jobs of run (score: when the job was created) unless it
 * is there already: for a SUBMIT that found its job existing (a new job
 * joins its run with its first save). 0 or NR_EREDIS. */
int nr_store_run_add(nr_store_t *self, const char *run, const char *id, int64_t score);
/* One page of a run, in the order its jobs joined: up to max ids from
 * position offset and each one's stored state ("" when its record is
 * gone), plus *total, the jobs in the run (0: no such run). One round
 * trip for the page (SORT BY nosort ... GET), one for the count. 0,
 * NR_EREDIS or NR_ENOMEM. */
typedef struct {
    char id[NR_PROTO_ID_MAX + 1];
    char state[16];
} nr_store_run_entry_t;
int nr_store_run_page(nr_store_t *self, const char *run, uint32_t offset, size_t max,
                      nr_store_run_entry_t *out, size_t *n, uint64_t *total);
/* Sets fields of the record of an existing job (HSET, then a read back of
 * nothing: the caller checked the job exists and is final, so no save of
 * the broker's races it). For a person's review of a done job. 0 or
 * NR_EREDIS. */
int nr_store_set_fields(nr_store_t *self, const char *id, const nr_kv_t *fields, size_t n);
/* Adds the P:stats counters to msg: jobs.done|failed|cancelled, total.<other>. */
int nr_store_stats(nr_store_t *self, nr_msg_t *msg);

#endif
