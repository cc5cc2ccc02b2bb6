/* The store's insides, shared by its files (not an API: store.h is).
 *
 *   store.c         connection, command building, queuing saves
 *   store_commit.c  sending saves, reading their replies, settling jobs
 *   store_read.c    loads, blobs, pending sets and counters
 *
 * Single-threaded, like the broker that owns the store. */
#ifndef NR_BROKER_STORE_INTERNAL_H
#define NR_BROKER_STORE_INTERNAL_H

#include "broker/store.h"
#include "common/backoff.h"

#include <hiredis/hiredis.h>

#include <stddef.h>
#include <stdint.h>

struct nr_store {
    nr_store_params_t params;
    redisContext *ctx;
    int checked;         /* config warnings done */
    int64_t retry_ms;    /* next reconnect attempt */
    nr_backoff_t backoff;
    int64_t ping_ms;     /* next liveness check while idle */
    char err[512];
    uint64_t errors;     /* failed operations, for metrics */
    /* Stage names SADDed to P:stages on this connection (not sent again
     * until the connection is lost or a save fails). */
    char stages_known[NR_PROTO_ROUTE_MAX][NR_PROTO_NAME_MAX + 1];
    int n_stages_known;
    void *cmd;           /* nr_st_cmd_t reused by nr_store_save */
    char *resp;          /* one command in RESP, reused by s_append */
    size_t resp_cap;
    /* Saves not settled yet, in order: the first n_sent were sent by
     * nr_store_send; replies are read for the first n_read of them. */
    struct nr_st_save *saves;
    size_t n_saves, cap_saves, n_sent, n_read;
    /* The saves since the last send share one transaction, MULTI ... EXEC,
     * opened by their first command and closed (with their counters, one
     * HINCRBY each) by the send or by a read that must come after them. */
    struct nr_st_tx {
        size_t saves, cmds; /* saves in it; commands between MULTI and EXEC */
        int multi;          /* MULTI/EXEC sent (0: its saves wrote nothing) */
    } tx, *sent_txs;        /* tx: the open one; sent_txs: closed, oldest first */
    size_t n_sent_txs, cap_sent_txs;
    uint32_t tx_counts[8];  /* P:stats increments of the open transaction */
    size_t rd_n;            /* replies read of the oldest closed one (MULTI, QUEUED..., EXEC) */
    /* Blob reads (nr_store_read_blob) on a connection of their own, so a
     * big output neither waits behind the saves nor holds them up: the
     * tags of the GETs sent, oldest first (a ring). */
    redisContext *rctx;
    uint64_t read_tags[NR_STORE_READS_MAX];
    size_t read_first, n_reads;
};

/* One queued save: its job, how many replies it waits for, and what it
 * carries that the job must keep again if it fails. */
struct nr_st_save {
    nr_broker_job_t *job;
    int replies;         /* its commands in the transaction (0: none sent) */
    int applied;         /* its transaction ran (its counters were written) */
    int check;           /* is a new job's id free? (HGET of its state; see nr_store_save) */
    int check_result;    /* NR_STORE_NEW, NR_STORE_REPLACED or NR_STORE_EXISTS */
    int rc;              /* 0 or NR_EREDIS once read */
    int unsure;          /* failed on a lost connection: may have been applied */
    uint32_t counts[8]; /* by s_counters index */
    uint8_t *outs[NR_BROKER_BLOB_SLOTS]; /* by route index, then the thumbnail */
    size_t out_sizes[NR_BROKER_BLOB_SLOTS];
    int input, reset;
    /* What the record holds once this save lands (job.h stored.record_saved),
     * when it writes the record: it sent commands and is no id check. */
    uint32_t fields_upto, fields_edits, stage_index;
    int error;
};

/* A growing argv for one command. */
typedef struct {
    const char *argv[160];
    size_t len[160];
    char bufs[160][192]; /* formatted numbers and keys (the longest key, prefix + ":out:" +
                          * stage + ":" + id, is 165 bytes) */
    int argc;
} nr_st_cmd_t;

void nr_st_str(nr_st_cmd_t *c, const char *s);

void nr_st_fmt(nr_st_cmd_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Drops the connection after an error and schedules a reconnect. */
int nr_st_down(nr_store_t *self, const char *what);

/* Closes the open transaction and reads the replies of every queued save
 * (a read must come after them). */
int nr_st_drain(nr_store_t *self);

/* Runs one command and returns its reply (caller frees), or NULL. */
redisReply *nr_st_run(nr_store_t *self, nr_st_cmd_t *c);

/* Closes the open transaction: its counters, then EXEC. 0, or NR_EREDIS
 * when it cannot be queued (the connection is then given up, failing its
 * saves). */
int nr_st_close_tx(nr_store_t *self);

/* Gives the job back what failed save s carried. An output the job kept
 * meanwhile (a later save that failed at once) is newer and stays. */
void nr_st_give_back(struct nr_st_save *s, nr_broker_job_t *job);

#endif
