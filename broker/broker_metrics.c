/* The broker's metric families and their scrape-time gauges (see
 * broker_metrics.h and METRICS.md). */
#include "broker/broker_metrics.h"
#include "broker/broker.h"
#include "broker/store.h"

/* Queue wait spans milliseconds (idle workers) to many minutes (a backlog). */
static const double s_wait_buckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                        2.5,   5,     10,   30,    60,   120, 300,  600, 1800};
/* A stage runs milliseconds (speech on a GPU box) to minutes (beam search on a CPU). */
static const double s_stage_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                         2.5,   5,    10,    20,   30,  60,   120, 300};

int nr_broker_metrics_define(nr_metrics_t *m) {
    int rc = 0;
#define S_DEF(name, type, help, b, n)                                                             \
    if (!rc) rc = nr_metrics_define(m, name, type, help, b, n)
    S_DEF(NR_BM_JOBS, NR_METRIC_GAUGE,
          "Jobs by state: queued and running now (in the broker's memory); done, failed and "
          "cancelled since the Redis record began",
          NULL, 0);
    S_DEF(NR_BM_QUEUE_DEPTH, NR_METRIC_GAUGE,
          "Jobs queued at a stage, waiting for a worker (including those waiting out a retry "
          "backoff)",
          NULL, 0);
    S_DEF(NR_BM_QUEUE_WAIT, NR_METRIC_HISTOGRAM,
          "Seconds a job waited in a stage queue, from entering it to dispatch to a worker",
          s_wait_buckets, sizeof s_wait_buckets / sizeof s_wait_buckets[0]);
    S_DEF(NR_BM_STAGE_DURATION, NR_METRIC_HISTOGRAM,
          "Seconds from dispatch to the worker's RESULT for one stage of a job (broker clock)",
          s_stage_buckets, sizeof s_stage_buckets / sizeof s_stage_buckets[0]);
    S_DEF(NR_BM_WORKERS, NR_METRIC_GAUGE, "Live workers registered for a stage", NULL, 0);
    S_DEF(NR_BM_RETRIES, NR_METRIC_COUNTER,
          "Stage attempts requeued for another try (worker lost, deadline, retryable FAIL)",
          NULL, 0);
    S_DEF(NR_BM_FAILURES, NR_METRIC_COUNTER,
          "Jobs that ended failed, by the stage they failed at and the error's wire name", NULL,
          0);
    S_DEF(NR_BM_REDIS_ERRORS, NR_METRIC_COUNTER,
          "Failed Redis operations: lost connections, failed connects, error replies", NULL, 0);
    S_DEF(NR_BM_REJECTED, NR_METRIC_COUNTER,
          "Messages that failed to decode (malformed, oversized, bad version), by socket", NULL,
          0);
    S_DEF(NR_BM_SUBMITTED, NR_METRIC_COUNTER,
          "SUBMITs accepted as new jobs since the broker started (resubmits of existing jobs "
          "not counted)",
          NULL, 0);
    S_DEF(NR_BM_REDIS_UP, NR_METRIC_GAUGE, "1 when the broker's Redis connection is up, else 0",
          NULL, 0);
    S_DEF(NR_BM_RATE_LIMITED, NR_METRIC_COUNTER,
          "SUBMITs answered busy because their client was over client-rate", NULL, 0);
    S_DEF(NR_BM_WORKERS_SET_ASIDE, NR_METRIC_COUNTER,
          "Times a worker was set aside (no new jobs for worker-cooldown-ms) because "
          "worker-strikes of its leases in a row expired without an answer",
          NULL, 0);
#undef S_DEF
    if (rc) return rc;
    /* Series that exist from the start, so rate() and alerts see a zero. */
    nr_metrics_add(m, NR_BM_REDIS_ERRORS, 0, NULL);
    nr_metrics_add(m, NR_BM_REJECTED, 0, "socket", "clients", NULL);
    nr_metrics_add(m, NR_BM_REJECTED, 0, "socket", "workers", NULL);
    nr_metrics_add(m, NR_BM_SUBMITTED, 0, NULL);
    nr_metrics_add(m, NR_BM_RATE_LIMITED, 0, NULL);
    return 0;
}

typedef struct {
    nr_metrics_t *m;
    size_t queued, running;
} s_collect_t;

static void s_stage(const char *stage, size_t queued, size_t running, size_t workers, void *arg) {
    s_collect_t *c = arg;
    nr_metrics_set(c->m, NR_BM_QUEUE_DEPTH, (double)queued, "stage", stage, NULL);
    nr_metrics_set(c->m, NR_BM_WORKERS, (double)workers, "stage", stage, NULL);
    /* Counters of a stage exist as soon as the stage does. */
    nr_metrics_add(c->m, NR_BM_RETRIES, 0, "stage", stage, NULL);
    nr_metrics_add(c->m, NR_BM_WORKERS_SET_ASIDE, 0, "stage", stage, NULL);
    c->queued += queued;
    c->running += running;
}

void nr_broker_metrics_collect(nr_broker_t *broker, nr_store_t *store, nr_metrics_t *m) {
    if (!m || !broker) return;
    nr_metrics_clear(m, NR_BM_QUEUE_DEPTH);
    nr_metrics_clear(m, NR_BM_WORKERS);
    s_collect_t c = {m, 0, 0};
    nr_broker_each_stage(broker, s_stage, &c);
    uint64_t done = 0, failed = 0, cancelled = 0;
    nr_broker_final_counts(broker, &done, &failed, &cancelled);
    nr_metrics_set(m, NR_BM_JOBS, (double)c.queued, "state", "queued", NULL);
    nr_metrics_set(m, NR_BM_JOBS, (double)c.running, "state", "running", NULL);
    nr_metrics_set(m, NR_BM_JOBS, (double)done, "state", "done", NULL);
    nr_metrics_set(m, NR_BM_JOBS, (double)failed, "state", "failed", NULL);
    nr_metrics_set(m, NR_BM_JOBS, (double)cancelled, "state", "cancelled", NULL);
    if (store) {
        double errors = (double)nr_store_errors(store);
        double have = nr_metrics_value(m, NR_BM_REDIS_ERRORS, NULL);
        if (have != have) have = 0; /* NaN: no series yet */
        if (errors > have) nr_metrics_add(m, NR_BM_REDIS_ERRORS, errors - have, NULL);
        nr_metrics_set(m, NR_BM_REDIS_UP, nr_store_is_up(store) ? 1 : 0, NULL);
    }
}
