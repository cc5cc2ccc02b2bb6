/* The broker's record in Redis: every Redis call the broker makes is here.
 *
 * Keys (P = prefix, default "narrator"):
 *   P:job:<id>           hash: the job record (CONTRACTS.md fields + stage_index)
 *   P:input:<id>         string: the submitted input frame
 *   P:out:<stage>:<id>   string: that stage's output frame
 *   P:pending:<stage>    sorted set: ids of unfinished jobs at that stage
 *                        (queued or running), score = enqueue time in ms
 *   P:stages             set: every stage name that ever had a pending job
 *   P:events             stream (capped): id, state, stage, attempts, error
 *   P:stats              hash: counters submitted, done, failed, cancelled, retried
 * Binary keys have no TTL while their job is unfinished and get the
 * retention TTL when it finishes; the job hashes are kept.
 *
 * The connection is synchronous with a short timeout. When Redis is
 * unreachable every call returns NR_EREDIS at once and
 * nr_store_maintain() reconnects with backoff (1 s doubling to 32 s). */
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

/* Writes the job's whole state in one MULTI/EXEC round trip: the hash, its
 * pending-set membership, the input if unsaved, the output `out` of route
 * index out_index (-1 for none) and any outputs kept from earlier failed
 * writes, TTLs when final, one event, and `counter` (+1 in P:stats, may be
 * NULL). On success job->dirty is cleared. On failure the job is marked
 * dirty, `out` is copied into the job so a later save writes it, and
 * NR_EREDIS is returned. */
int nr_store_save(nr_store_t *self, nr_broker_job_t *job, int out_index, const uint8_t *out,
                  size_t out_size, const char *counter);
/* Loads the record of `id` into a new job (no input). NR_ENOTFOUND when there
 * is no such job, NR_EREDIS, NR_ENOMEM. */
int nr_store_load(nr_store_t *self, const char *id, nr_broker_job_t **job);
/* Reads a binary value: the job's input (stage NULL) or a stage's output.
 * *data is malloc'd (the caller frees it). NR_ENOTFOUND or NR_EREDIS. */
int nr_store_get_blob(nr_store_t *self, const char *id, const char *stage, uint8_t **data,
                      size_t *size);
/* Calls fn for every id in the pending sets, oldest first. */
int nr_store_pending(nr_store_t *self, void (*fn)(const char *id, void *arg), void *arg);
/* Adds the P:stats counters to msg: jobs.done|failed|cancelled, total.<other>. */
int nr_store_stats(nr_store_t *self, nr_msg_t *msg);

#endif
