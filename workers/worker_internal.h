/* The worker runtime's insides, shared by its files (not an API: worker.h
 * is). worker.c runs the socket thread (connect, heartbeat, reconnect,
 * receive, reply) and the lifecycle; handler.c runs the handler threads
 * that call the stage's functions. What both touch is under self->mu. */
#ifndef NR_WORKERS_WORKER_INTERNAL_H
#define NR_WORKERS_WORKER_INTERNAL_H

#include "workers/worker.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#define NR_WK_ERRLEN (NR_PROTO_MESSAGE_MAX + 1)

/* One job, from the broker's JOB to our RESULT or FAIL. */
typedef struct nr_wk_item {
    struct nr_wk_item *next;
    nr_msg_t job;
    nr_msg_t reply;
    long long received_ms; /* when the JOB arrived: its lease runs from about then */
} nr_wk_item_t;

typedef struct {
    nr_wk_item_t *head, *tail;
    size_t len;
} nr_wk_list_t;

struct nr_worker_t {
    /* What the stage gave us (strings copied). */
    char stage[NR_PROTO_NAME_MAX + 1];
    char model[NR_PROTO_VALUE_MAX > 256 ? 256 : NR_PROTO_VALUE_MAX];
    char version[64];
    char voices[NR_PROTO_VOICES_BYTES + 1];
    void *ctx;
    nr_worker_run_fn run;
    nr_worker_run_batch_fn run_batch;
    nr_worker_retryable_fn retryable;
    nr_worker_thread_init_fn thread_init;
    nr_worker_thread_fini_fn thread_fini;
    nr_worker_settings_t settings;
    char name[NR_PROTO_NAME_MAX + 1];
    int capacity;   /* credit announced in READY */
    int curve;      /* CURVE settings given (proto/secure.h) */
    int batch;      /* jobs per handler call (1 unless batching) */
    int nthreads;

    /* Shared between the socket thread and the handler threads. */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    nr_wk_list_t pending; /* received, not started */
    nr_wk_list_t done;    /* replies to send */
    int busy;         /* jobs inside a handler */
    int quit;         /* handler threads: leave when nothing is pending */
    pthread_t *threads;
    int threads_started;
    int next_index;   /* handler thread numbers, 0.. */
    int inited;       /* handler threads past thread_init */
    int init_rc;      /* first thread_init failure */
    char init_err[256];
    int abandoned;    /* grace ran out: threads left running */

    int pipe[2];                        /* wakes the socket thread */
    volatile sig_atomic_t stop_requested;
    atomic_ulong jobs_done;
    int ran;

    /* Socket thread only. */
    void *zctx;
    void *sock;
};

/* ---- worker.c, used by handler.c too ---- */

void nr_wk_list_push(nr_wk_list_t *l, nr_wk_item_t *it);
nr_wk_item_t *nr_wk_list_pop(nr_wk_list_t *l);
void nr_wk_wake(nr_worker_t *self);
void nr_wk_make_fail(nr_msg_t *reply, const nr_msg_t *job, int code, int retry,
                     const char *message);
/* Turns a handler's outcome into the reply to send. */
void nr_wk_finish(nr_worker_t *self, nr_wk_item_t *it, int code, const char *err, long long ms);

/* ---- handler.c ---- */

/* A handler thread's body (arg: the worker). */
void *nr_wk_handler_thread(void *arg);

#endif
