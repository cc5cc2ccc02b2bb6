/* A job as the broker holds it in memory: its route, where it is on the
 * route, its lease count, its record fields and the current stage's input,
 * plus a table of jobs by id. Payloads are opaque bytes here. */
#ifndef NR_BROKER_JOB_H
#define NR_BROKER_JOB_H

#include "proto/proto.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    NR_JOB_QUEUED = 0,
    NR_JOB_RUNNING,
    NR_JOB_DONE,
    NR_JOB_FAILED,
    NR_JOB_CANCELLED
} nr_job_state_t;

typedef struct nr_broker_worker nr_broker_worker_t;

/* A job's thumbnail: a small JPEG a worker sends as frame 1 of a RESULT
 * (the vision stage's), kept like an output under the reserved stage name
 * "thumbnail" (P:out:thumbnail:<id>), in the slot after the route's. At
 * most NR_BROKER_THUMB_MAX bytes; anything else is dropped. */
#define NR_BROKER_THUMB_STAGE "thumbnail"
#define NR_BROKER_THUMB_MAX 65536
#define NR_BROKER_THUMB_SLOT NR_PROTO_ROUTE_MAX
#define NR_BROKER_BLOB_SLOTS (NR_PROTO_ROUTE_MAX + 1)

typedef struct nr_broker_job {
    char id[NR_PROTO_ID_MAX + 1];
    nr_job_state_t state;
    char route[NR_PROTO_ROUTE_MAX][NR_PROTO_NAME_MAX + 1];
    uint32_t route_len;
    uint32_t stage_index;  /* index into route of the current (or last) stage */
    uint32_t attempts;     /* leases handed out for the current stage = wire attempt */
    int error;             /* 0 or NR_E* */
    char error_message[NR_PROTO_MESSAGE_MAX + 1];
    /* Wall clock (Unix ms): stored in Redis and shown to people. */
    int64_t created_ms, updated_ms;
    /* The broker's monotonic clock (its `now`): timers, never stored. */
    int64_t ready_ms;      /* queued: not dispatched before this (retry backoff) */
    int64_t deadline_ms;   /* running: the lease expires at this time */
    int64_t since_ms;      /* queued: entered its queue; running: dispatched (metrics) */
    nr_kv_t *fields;       /* opt.<key>, <stage>.<key>: owned */
    uint32_t fields_len, fields_cap;
    /* Current stage's input when the broker has it in memory (NULL when it
     * must be read from the store first). */
    uint8_t *input;
    size_t input_size;
    /* Outputs not yet written to the store (Redis was down), or kept in
     * memory without a store: by route index, then the thumbnail in slot
     * NR_BROKER_THUMB_SLOT. */
    uint8_t *unsaved[NR_BROKER_BLOB_SLOTS];
    size_t unsaved_size[NR_BROKER_BLOB_SLOTS];
    int input_unsaved;     /* input not yet written to the store */
    int dirty;             /* state not yet written to the store, nor queued to be */
    int reset;             /* the store's old record must be dropped first */
    uint32_t saving;       /* saves queued or in flight in the store, not settled (store.h) */
    int submitting;        /* SUBMIT written but not yet acknowledged (broker.c) */
    int guard;             /* new id: check it is free before the first write; store.h NR_STORE_* */
    /* The store's own bookkeeping (store.c alone writes it; job.c lowers
     * fields_saved when it edits a field). */
    struct {
        int maybe_landed; /* dirty after a lost reply: the write may have been applied */
        /* What the stored record holds: once a whole record has landed, a
         * later save writes only what changed since. */
        int record_saved;       /* a whole record landed and no save failed since */
        uint32_t fields_saved;  /* fields[0, fields_saved) are stored as they are now */
        uint32_t fields_edits;  /* bumped when a field is replaced or dropped */
        uint32_t saved_stage_index;
        int saved_error;
        /* P:stats increments of saves that failed (Redis was down), written
         * with the next save that succeeds; by nr_store_counter_t. */
        uint32_t unsaved_counts[8];
    } stored;
    nr_broker_worker_t *worker; /* running: the lease holder */
    uint64_t avoid_worker; /* serial of the worker of the last failed attempt (0: none) */
    /* Links: stage queue and the table. */
    struct nr_broker_job *qprev, *qnext;
    int in_queue;
    struct nr_broker_job *hnext;
} nr_broker_job_t;

/* Wire name of a state ("queued"), and back (-1 if unknown). */
const char *nr_job_state_name(nr_job_state_t state);
int nr_job_state_parse(const char *name);
/* True for done, failed and cancelled. */
int nr_job_is_final(const nr_broker_job_t *job);

/* New job in state queued at route index 0, or NULL (out of memory). */
nr_broker_job_t *nr_broker_job_new(const char *id);
void nr_broker_job_destroy(nr_broker_job_t **p);

/* Current stage name ("" for an empty route). */
const char *nr_broker_job_stage(const nr_broker_job_t *job);
/* Sets (replaces) a record field; returns 0 or NR_ENOMEM. */
int nr_broker_job_set(nr_broker_job_t *job, const char *key, const char *value);
const char *nr_broker_job_get(const nr_broker_job_t *job, const char *key);
/* Drops every field whose key starts with prefix ("" drops all). */
void nr_broker_job_clear_fields(nr_broker_job_t *job, const char *prefix);
/* Replaces the in-memory input, taking ownership of *data. */
void nr_broker_job_take_input(nr_broker_job_t *job, uint8_t **data, size_t size);
/* The stage name a blob slot is stored under: route[i], or "thumbnail". */
const char *nr_broker_job_slot_name(const nr_broker_job_t *job, int slot);
/* 1 when data is a thumbnail the broker keeps: 4..NR_BROKER_THUMB_MAX
 * bytes that start with a JPEG SOI marker and end with EOI. */
int nr_broker_thumb_valid(const uint8_t *data, size_t size);
/* Writes the route as "vision,text,speech" into buf. */
void nr_broker_job_route_string(const nr_broker_job_t *job, char *buf, size_t size);
/* Parses "a,b,c" into the route; NR_EINVAL if empty, too long or a bad name. */
int nr_broker_job_parse_route(nr_broker_job_t *job, const char *route);
/* Adds the job record (as in CONTRACTS.md) to msg's kv. Entries past the
 * message's limit are left out. */
/* The record a REPLY carries holds at most NR_PROTO_KV_MAX fields: the
 * broker's own (id ... stage_workers, existing), then per stage of the
 * route its results (<stage>.attempts, .worker and up to
 * NR_BROKER_RESULT_KV_MAX kv of the worker's RESULT; a RESULT with more is
 * refused), and the submitted options in what is left. */
#define NR_BROKER_RECORD_OWN 16 /* with `run` and the four review.* fields */
#define NR_BROKER_RESULT_KV_MAX 8
#define NR_BROKER_RECORD_PER_STAGE (2 + NR_BROKER_RESULT_KV_MAX)
#define NR_BROKER_MAX_OPTIONS(route_len)                                                       \
    (NR_PROTO_KV_MAX - NR_BROKER_RECORD_OWN - NR_BROKER_RECORD_PER_STAGE * (long)(route_len))
void nr_broker_job_record(const nr_broker_job_t *job, nr_msg_t *msg, long stage_workers);

/* Jobs in one page of a JOBS reply: "total", "next" and one entry each
 * fit NR_PROTO_KV_MAX. */
#define NR_BROKER_JOBS_PAGE 50
/* Longest reviewed caption a REVIEW may store, in bytes. */
#define NR_BROKER_REVIEW_CAPTION_MAX 2000

/* A table of jobs by id. */
typedef struct nr_broker_jobs nr_broker_jobs_t;
nr_broker_jobs_t *nr_broker_jobs_new(void);
/* Destroys the table and every job in it. */
void nr_broker_jobs_destroy(nr_broker_jobs_t **p);
nr_broker_job_t *nr_broker_jobs_find(nr_broker_jobs_t *self, const char *id);
/* Adds a job (the table owns it); NR_EINVAL if the id is taken. */
int nr_broker_jobs_add(nr_broker_jobs_t *self, nr_broker_job_t *job);
/* Takes a job out of the table (the caller owns it again). */
void nr_broker_jobs_remove(nr_broker_jobs_t *self, nr_broker_job_t *job);
size_t nr_broker_jobs_count(const nr_broker_jobs_t *self);
/* Calls fn for every job; fn may not add or remove jobs. */
void nr_broker_jobs_each(nr_broker_jobs_t *self, void (*fn)(nr_broker_job_t *job, void *arg),
                         void *arg);
/* Fills out with up to max jobs (for loops that remove). Returns the count. */
size_t nr_broker_jobs_list(nr_broker_jobs_t *self, nr_broker_job_t **out, size_t max);

#endif
