/* Per-stage queues and the workers that serve them: a FIFO of queued jobs,
 * the stage's workers, and each worker's credit (capacity minus the leases
 * it holds). No sockets and no Redis here. */
#ifndef NR_BROKER_QUEUE_H
#define NR_BROKER_QUEUE_H

#include "broker/job.h"

#include <stddef.h>
#include <stdint.h>

#define NR_BROKER_IDENTITY_MAX 256

/* A job handed to a worker. `job` is NULL once the lease was revoked
 * (cancel, deadline): the worker still holds the slot until it answers. */
typedef struct {
    char id[NR_PROTO_ID_MAX + 1];
    uint32_t attempt;
    int64_t expires_ms; /* after this the slot is given back even without an answer */
    nr_broker_job_t *job;
} nr_broker_lease_t;

typedef struct nr_broker_stage nr_broker_stage_t;

struct nr_broker_worker {
    uint8_t identity[NR_BROKER_IDENTITY_MAX];
    size_t identity_size;
    char label[NR_PROTO_NAME_MAX + 24]; /* "name/1a2b3c4d" for logs */
    nr_broker_stage_t *stage;
    uint32_t capacity;
    nr_broker_lease_t *leases; /* capacity slots */
    uint32_t leases_len;
    int64_t expires_ms;     /* dead when nothing was heard by then */
    int64_t heartbeat_ms;   /* next heartbeat to send */
    uint64_t last_dispatch; /* dispatch sequence, to rotate among equals */
    int sent;               /* sent something since the worker's last message */
    uint64_t serial;        /* unique for the broker's life (a job's avoid_worker) */
    uint32_t strikes;       /* leases expired in a row without an answer */
    int64_t aside_until_ms; /* set aside: no new JOB before this (0: not set aside) */
    char *voices;           /* its READY kv "voices" (checked by proto), or NULL */
    nr_broker_worker_t *next;
};

struct nr_broker_stage {
    char name[NR_PROTO_NAME_MAX + 1];
    nr_broker_job_t *head, *tail; /* queued jobs, oldest first */
    size_t queued, running;
    size_t submitting;            /* SUBMITs for this first stage awaiting their write */
    int64_t unserved_since_ms;    /* when its last live worker left (or the broker started) */
    nr_broker_worker_t *workers;
    size_t workers_len;
    long deadline_ms;
    nr_broker_stage_t *next;
};

nr_broker_stage_t *nr_broker_stage_new(const char *name, long deadline_ms);
/* The union of the voices the stage's workers advertise, sorted, joined by
 * "," into out (cap bytes; names that do not fit are left out). "" when
 * none. Returns 0 or NR_ENOMEM. */
int nr_broker_stage_voices(const nr_broker_stage_t *self, char *out, size_t cap);
/* Destroys the stage and its workers (not the jobs). */
void nr_broker_stage_destroy(nr_broker_stage_t **p);
/* Appends a job to the queue (or puts it first when `front`). */
void nr_broker_stage_push(nr_broker_stage_t *self, nr_broker_job_t *job, int front);
/* Takes a job out of the queue; does nothing if it is not queued. */
void nr_broker_stage_remove(nr_broker_stage_t *self, nr_broker_job_t *job);
/* Oldest queued job whose backoff has passed, or NULL. */
nr_broker_job_t *nr_broker_stage_next_ready(nr_broker_stage_t *self, int64_t now);
/* Earliest ready time of a queued job, or INT64_MAX. */
int64_t nr_broker_stage_next_ready_ms(const nr_broker_stage_t *self);
/* The least recently used worker with credit that is not set aside at
 * `now` (round-robin, so jobs spread over the workers with room), other
 * than the one whose serial is `avoid` when another has room; or NULL. */
nr_broker_worker_t *nr_broker_stage_pick_worker(nr_broker_stage_t *self, int64_t now,
                                                uint64_t avoid);
void nr_broker_stage_add_worker(nr_broker_stage_t *self, nr_broker_worker_t *worker);
void nr_broker_stage_remove_worker(nr_broker_stage_t *self, nr_broker_worker_t *worker);

/* New worker (capacity 1..1024), or NULL. */
nr_broker_worker_t *nr_broker_worker_new(const uint8_t *identity, size_t size, const char *name,
                                         uint32_t capacity);
void nr_broker_worker_destroy(nr_broker_worker_t **p);
/* Changes capacity; leases beyond it stay until answered. 0 or NR_ENOMEM. */
int nr_broker_worker_set_capacity(nr_broker_worker_t *self, uint32_t capacity);
uint32_t nr_broker_worker_credit(const nr_broker_worker_t *self);
/* Records a lease; NR_EBUSY when the worker has no credit. */
int nr_broker_worker_add_lease(nr_broker_worker_t *self, nr_broker_job_t *job, uint32_t attempt,
                               int64_t expires_ms);
/* The lease for (id, attempt), or NULL. */
nr_broker_lease_t *nr_broker_worker_find_lease(nr_broker_worker_t *self, const char *id,
                                               uint32_t attempt);
/* Drops a lease (pointer from find_lease or the leases array). */
void nr_broker_worker_drop_lease(nr_broker_worker_t *self, nr_broker_lease_t *lease);
/* Revokes the lease that points at job, if any (the slot stays taken). */
void nr_broker_worker_revoke(nr_broker_worker_t *self, const nr_broker_job_t *job);

#endif
